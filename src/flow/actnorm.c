/* ActNorm (Kingma & Dhariwal 2018): y = (x + b) * exp(s), per dimension.
 * Params [b(D), s(D)]. Data-dependent init: b = -mean(x), s = -log(std(x)). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>

#include "renflow/flow.h"

static size_t an_none(const rf_layer *l, int n) {
    (void)l;
    (void)n;
    return 0;
}

/* Scratch: exp(+-s), one per dimension, so that the row loops need no exp; for the backward
 * also two double sums per dimension (+1 float to align them). */
static size_t an_scratch(const rf_layer *l, int n) {
    (void)n;
    return 5 * (size_t)l->dim + 1;
}

static void an_init(const rf_layer *l, float *p, rf_rng *rng) {
    (void)rng;
    for (int i = 0; i < 2 * l->dim; i++) p[i] = 0.0f;
}

static void an_data_init(const rf_layer *l, float *p, int n, const float *x) {
    const int D = l->dim;
    for (int j = 0; j < D; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += x[(size_t)i * D + j];
        m /= n > 0 ? n : 1;
        for (int i = 0; i < n; i++) {
            double d = x[(size_t)i * D + j] - m;
            v += d * d;
        }
        v /= n > 1 ? n - 1 : 1;
        p[j] = (float)-m;
        p[D + j] = (float)-log(sqrt(v) + 1e-6);
    }
}

static float an_logdet(const float *s, int D) {
    double t = 0;
    for (int j = 0; j < D; j++) t += s[j];
    return (float)t;
}

/* Rows are independent and the flow already runs one shard of rows per thread: no OpenMP. */
static void an_forward(const rf_layer *l, const float *p, int n, const float *x, float *y,
                       float *logdet, float *cache, float *scratch) {
    (void)cache;
    const int D = l->dim;
    const float *b = p, *s = p + D;
    float *es = scratch;
    const float ld = an_logdet(s, D);
    for (int j = 0; j < D; j++) es[j] = expf(s[j]);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        float *yi = y + (size_t)i * D;
#pragma omp simd
        for (int j = 0; j < D; j++) yi[j] = (xi[j] + b[j]) * es[j];
        logdet[i] += ld;
    }
}

static void an_inverse(const rf_layer *l, const float *p, int n, const float *y, float *x,
                       float *logdet, float *scratch) {
    const int D = l->dim;
    const float *b = p, *s = p + D;
    float *ies = scratch;
    const float ld = an_logdet(s, D);
    for (int j = 0; j < D; j++) ies[j] = expf(-s[j]);
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * D;
        float *xi = x + (size_t)i * D;
#pragma omp simd
        for (int j = 0; j < D; j++) xi[j] = yi[j] * ies[j] - b[j];
        logdet[i] -= ld;
    }
}

/* dL/dx = dy e^s;  dL/db = sum_i dy e^s;  dL/ds = sum_i dy (x + b) e^s + sum_i dlogdet.
 * Row by row (vectorised over the dimensions) with per-dimension double sums in scratch; each
 * sum still runs over the rows in order, as a column-by-column loop would. */
static void an_backward(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                        const float *dlogdet, float *dx, float *dp, const float *cache,
                        float *scratch) {
    (void)cache;
    const int D = l->dim;
    const float *b = p, *s = p + D;
    float *db = dp, *ds = dp + D, *es = scratch;
    double *gb = (double *)(((uintptr_t)(scratch + D) + 7u) & ~(uintptr_t)7u), *gs = gb + D;
    double gld = 0;
    for (int i = 0; i < n; i++) gld += dlogdet[i];
    for (int j = 0; j < D; j++) {
        es[j] = expf(s[j]);
        gb[j] = gs[j] = 0.0;
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D, *gi = dy + (size_t)i * D;
        float *dxi = dx + (size_t)i * D;
#pragma omp simd
        for (int j = 0; j < D; j++) {
            const float g = gi[j] * es[j];
            dxi[j] = g;
            gb[j] += g;
            gs[j] += (double)g * (xi[j] + b[j]);
        }
    }
    for (int j = 0; j < D; j++) {
        db[j] += (float)gb[j];
        ds[j] += (float)(gs[j] + gld);
    }
}

static cJSON *an_to_json(const rf_layer *l) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "actnorm");
    cJSON_AddNumberToObject(j, "dim", l->dim);
    return j;
}

static const rf_layer_ops actnorm_ops = {
    .kind = "actnorm",
    .cache_floats = an_none,
    .scratch_floats = an_scratch,
    .init_params = an_init,
    .data_init = an_data_init,
    .forward = an_forward,
    .inverse = an_inverse,
    .backward = an_backward,
    .to_json = an_to_json,
};

rf_layer *rf_actnorm_create(int D, rf_err *e) {
    if (D < 1) {
        rf_err_set(e, RF_EARG, "actnorm: dimension must be >= 1, got %d", D);
        return NULL;
    }
    return rf_layer_new(&actnorm_ops, D, 2 * (size_t)D, NULL, e);
}

rf_layer *rf_actnorm_from_json(const cJSON *j, int dim, rf_err *e) {
    (void)j;
    return rf_actnorm_create(dim, e);
}
