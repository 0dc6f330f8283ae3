/* Subject-wise splits: folds and hold-outs over distinct subject ids, never over rows. */
#include <stdlib.h>
#include <string.h>

#include "renflow/dataset.h"

static int cmp_int(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int rf_subjects_unique(const int *subjects, int n, int **ids, int *n_ids, rf_err *e) {
    *ids = NULL;
    *n_ids = 0;
    if (n < 1) return rf_err_set(e, RF_EARG, "no rows to split");
    int *s = malloc(sizeof(int) * (size_t)n);
    if (!s) return rf_err_set(e, RF_ENOMEM, "out of memory for %d subject ids", n);
    memcpy(s, subjects, sizeof(int) * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_int);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || s[i] != s[k - 1]) s[k++] = s[i];
    *ids = s;
    *n_ids = k;
    return RF_OK;
}

/* Position of id in the sorted array ids[0..m). */
static int find_id(const int *ids, int m, int id) {
    const int *p = bsearch(&id, ids, (size_t)m, sizeof *ids, cmp_int);
    return p ? (int)(p - ids) : -1;
}

/* Seeded order of the m distinct subjects: order[j] = index into ids. */
static int *shuffled_order(int m, uint64_t seed, rf_err *e) {
    int *order = malloc(sizeof(int) * (size_t)m);
    if (!order) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    for (int j = 0; j < m; j++) order[j] = j;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_rng_shuffle(&rng, order, m);
    return order;
}

int rf_subject_folds(const int *subjects, int n, int k, uint64_t seed, int *fold_of_row, int *k_used,
                     rf_err *e) {
    if (k < 2) return rf_err_set(e, RF_EARG, "folds must be at least 2, got %d", k);
    int *ids, m, rc = rf_subjects_unique(subjects, n, &ids, &m, e);
    if (rc) return rc;
    if (m < 2) {
        free(ids);
        return rf_err_set(e, RF_EARG, "subject-wise folds need at least 2 subjects, the data has %d", m);
    }
    if (k > m) k = m;
    int *order = shuffled_order(m, seed, e), *fold = malloc(sizeof(int) * (size_t)m);
    if (!order || !fold) {
        free(ids);
        free(order);
        free(fold);
        return e ? e->code : RF_ENOMEM;
    }
    for (int j = 0; j < m; j++) fold[order[j]] = j % k;
    for (int i = 0; i < n; i++) fold_of_row[i] = fold[find_id(ids, m, subjects[i])];
    if (k_used) *k_used = k;
    free(ids);
    free(order);
    free(fold);
    return RF_OK;
}

int rf_subject_holdout(const int *subjects, int n, double frac, uint64_t seed, unsigned char *keep_a,
                       rf_err *e) {
    if (!(frac > 0 && frac < 1)) return rf_err_set(e, RF_EARG, "hold-out fraction must be in (0, 1), got %g", frac);
    int *ids, m, rc = rf_subjects_unique(subjects, n, &ids, &m, e);
    if (rc) return rc;
    if (m < 2) {
        free(ids);
        return rf_err_set(e, RF_EARG, "a subject-wise hold-out needs at least 2 subjects, the data has %d", m);
    }
    int nb = (int)(frac * m + 0.5);
    if (nb < 1) nb = 1;
    if (nb > m - 1) nb = m - 1;
    int *order = shuffled_order(m, seed, e);
    unsigned char *in_b = calloc((size_t)m, 1);
    if (!order || !in_b) {
        free(ids);
        free(order);
        free(in_b);
        return e ? e->code : RF_ENOMEM;
    }
    for (int j = 0; j < nb; j++) in_b[order[j]] = 1;
    for (int i = 0; i < n; i++) keep_a[i] = !in_b[find_id(ids, m, subjects[i])];
    free(ids);
    free(order);
    free(in_b);
    return RF_OK;
}
