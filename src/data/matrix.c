/* Float matrices: allocation, row selection, seeded shuffled split. */
#include "data_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void rf_matrix_free(rf_matrix *m) {
    if (!m) return;
    rf_free(m->x);
    memset(m, 0, sizeof *m);
}

int rf_matrix_alloc(rf_matrix *m, int n, int d, rf_err *e) {
    if (!m) return rf_err_set(e, RF_EARG, "rf_matrix_alloc: NULL matrix");
    memset(m, 0, sizeof *m);
    if (n < 0 || d < 0)
        return rf_err_set(e, RF_EARG, "rf_matrix_alloc: negative size %d x %d", n, d);
    if (d > 0 && (size_t)n > SIZE_MAX / sizeof(float) / 2 / (size_t)d)
        return rf_err_set(e, RF_ENOMEM, "cannot allocate a %d x %d matrix", n, d);
    m->x = rf_floats((size_t)n * (size_t)d, e);
    if (!m->x) return e ? e->code : RF_ENOMEM;
    m->n = n;
    m->d = d;
    return RF_OK;
}

int rf_matrix_select_rows(const rf_matrix *m, const unsigned char *keep, rf_matrix *out,
                          rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "rf_matrix_select_rows: NULL output");
    memset(out, 0, sizeof *out);
    if (!m || !keep || (m->n > 0 && m->d > 0 && !m->x))
        return rf_err_set(e, RF_EARG, "rf_matrix_select_rows: NULL matrix or mask");
    int k = 0;
    for (int i = 0; i < m->n; i++) k += keep[i] != 0;
    rf_matrix r;
    int rc = rf_matrix_alloc(&r, k, m->d, e);
    if (rc != RF_OK) return rc;
    size_t row = (size_t)m->d;
    for (int i = 0, j = 0; i < m->n; i++)
        if (keep[i]) memcpy(r.x + (size_t)j++ * row, m->x + (size_t)i * row, row * sizeof(float));
    *out = r;
    return RF_OK;
}

int rf_matrix_split(const rf_matrix *m, double frac, rf_rng *rng, rf_matrix *a, rf_matrix *b,
                    rf_err *e) {
    if (!a || !b) return rf_err_set(e, RF_EARG, "rf_matrix_split: NULL output");
    memset(a, 0, sizeof *a);
    memset(b, 0, sizeof *b);
    if (!m || !rng || m->n < 0 || (m->n > 0 && m->d > 0 && !m->x))
        return rf_err_set(e, RF_EARG, "rf_matrix_split: NULL matrix or rng");
    if (!(frac >= 0.0 && frac <= 1.0))
        return rf_err_set(e, RF_EARG, "rf_matrix_split: fraction %g is not in [0, 1]", frac);
    int n = m->n;
    int nb = (int)floor(frac * (double)n);
    if (nb < 0) nb = 0;
    if (nb > n) nb = n;
    int *perm = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!perm) return rf_err_set(e, RF_ENOMEM, "out of memory for a permutation of %d rows", n);
    for (int i = 0; i < n; i++) perm[i] = i;
    rf_rng_shuffle(rng, perm, n);
    rf_matrix ra, rb;
    int rc = rf_matrix_alloc(&rb, nb, m->d, e);
    if (rc == RF_OK) {
        rc = rf_matrix_alloc(&ra, n - nb, m->d, e);
        if (rc != RF_OK) rf_matrix_free(&rb);
    }
    if (rc != RF_OK) {
        free(perm);
        return rc;
    }
    size_t row = (size_t)m->d;
    for (int i = 0; i < n; i++) {
        float *dst = i < nb ? rb.x + (size_t)i * row : ra.x + (size_t)(i - nb) * row;
        memcpy(dst, m->x + (size_t)perm[i] * row, row * sizeof(float));
    }
    free(perm);
    *a = ra;
    *b = rb;
    return RF_OK;
}
