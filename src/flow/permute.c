/* Fixed permutation y[i] = x[perm[i]] (no parameters, log-det 0). */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "renflow/flow.h"

typedef struct {
    int *perm;
} permute_impl;

static size_t pm_none(const rf_layer *l, int n) {
    (void)l;
    (void)n;
    return 0;
}

static void pm_forward(const rf_layer *l, const float *p, int n, const float *x, float *y,
                       float *logdet, float *cache, float *scratch) {
    (void)p;
    (void)logdet;
    (void)cache;
    (void)scratch;
    const int D = l->dim;
    const int *perm = ((const permute_impl *)l->impl)->perm;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) y[(size_t)i * D + j] = x[(size_t)i * D + perm[j]];
}

static void pm_inverse(const rf_layer *l, const float *p, int n, const float *y, float *x,
                       float *logdet, float *scratch) {
    (void)p;
    (void)logdet;
    (void)scratch;
    const int D = l->dim;
    const int *perm = ((const permute_impl *)l->impl)->perm;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) x[(size_t)i * D + perm[j]] = y[(size_t)i * D + j];
}

static void pm_backward(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                        const float *dlogdet, float *dx, float *dp, const float *cache,
                        float *scratch) {
    (void)x;
    (void)dlogdet;
    (void)dp;
    (void)cache;
    pm_inverse(l, p, n, dy, dx, NULL, scratch);
}

static cJSON *pm_to_json(const rf_layer *l) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "permute");
    cJSON_AddNumberToObject(j, "dim", l->dim);
    cJSON_AddItemToObject(j, "perm", rf_json_int_array(((const permute_impl *)l->impl)->perm, l->dim));
    return j;
}

static void pm_free(void *impl) {
    permute_impl *m = impl;
    if (!m) return;
    free(m->perm);
    free(m);
}

static const rf_layer_ops permute_ops = {
    .kind = "permute",
    .cache_floats = pm_none,
    .scratch_floats = pm_none,
    .forward = pm_forward,
    .inverse = pm_inverse,
    .backward = pm_backward,
    .to_json = pm_to_json,
    .free_impl = pm_free,
};

rf_layer *rf_permute_create(int D, const int *perm, rf_err *e) {
    if (D < 1) {
        rf_err_set(e, RF_EARG, "permute: dimension must be >= 1, got %d", D);
        return NULL;
    }
    permute_impl *m = rf_zalloc(sizeof *m, e);
    if (!m) return NULL;
    m->perm = malloc(sizeof(int) * D);
    unsigned char *seen = calloc((size_t)D, 1);
    if (!m->perm || !seen) {
        free(seen);
        pm_free(m);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    for (int j = 0; j < D; j++) {
        if (perm[j] < 0 || perm[j] >= D || seen[perm[j]]) {
            rf_err_set(e, RF_EARG, "permute: perm[%d] = %d is not a permutation of 0..%d", j,
                       perm[j], D - 1);
            free(seen);
            pm_free(m);
            return NULL;
        }
        seen[perm[j]] = 1;
        m->perm[j] = perm[j];
    }
    free(seen);
    rf_layer *l = rf_layer_new(&permute_ops, D, 0, m, e);
    if (!l) pm_free(m);
    return l;
}

rf_layer *rf_reverse_create(int D, rf_err *e) {
    int *perm = malloc(sizeof(int) * (D > 0 ? D : 1));
    if (!perm) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    for (int j = 0; j < D; j++) perm[j] = D - 1 - j;
    rf_layer *l = rf_permute_create(D, perm, e);
    free(perm);
    return l;
}

rf_layer *rf_permute_from_json(const cJSON *j, int dim, rf_err *e) {
    int *perm = malloc(sizeof(int) * dim);
    if (!perm) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    rf_layer *l = NULL;
    if (rf_json_get_int_array(j, "perm", dim, 0, dim - 1, perm, e) == RF_OK)
        l = rf_permute_create(dim, perm, e);
    free(perm);
    return l;
}
