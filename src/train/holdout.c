/* Seeded hold-out split that keeps rows and labels together. */
#include <stdlib.h>
#include <string.h>

#include "renflow/train.h"

int rf_holdout_split(const rf_matrix *x, const int *y, double frac, rf_rng *rng, rf_matrix *tr, int **ytr,
                     rf_matrix *va, int **yva, rf_err *e) {
    memset(tr, 0, sizeof *tr);
    memset(va, 0, sizeof *va);
    if (ytr) *ytr = NULL;
    if (yva) *yva = NULL;
    const int nv = (int)(frac * x->n), nt = x->n - nv;
    if (nv < 1 || nt < 1)
        return rf_err_set(e, RF_EARG, "cannot hold out %.0f%% of %d rows for validation (need at least one row each side)",
                          100 * frac, x->n);
    int *perm = malloc(sizeof(int) * x->n);
    if (!perm) return rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int i = 0; i < x->n; i++) perm[i] = i;
    rf_rng_shuffle(rng, perm, x->n);
    int rc = rf_matrix_alloc(tr, nt, x->d, e);
    if (!rc) rc = rf_matrix_alloc(va, nv, x->d, e);
    if (!rc && y) {
        *ytr = malloc(sizeof(int) * nt);
        *yva = malloc(sizeof(int) * nv);
        if (!*ytr || !*yva) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    if (rc) {
        free(perm);
        rf_matrix_free(tr);
        rf_matrix_free(va);
        if (y) {
            free(*ytr);
            free(*yva);
            *ytr = *yva = NULL;
        }
        return rc;
    }
    for (int i = 0; i < x->n; i++) {
        const int src = perm[i];
        const int to_val = i < nv;
        float *dst = to_val ? va->x + (size_t)i * x->d : tr->x + (size_t)(i - nv) * x->d;
        memcpy(dst, x->x + (size_t)src * x->d, sizeof(float) * x->d);
        if (y) (to_val ? *yva : *ytr)[to_val ? i : i - nv] = y[src];
    }
    free(perm);
    return RF_OK;
}
