/* ActNorm (Kingma & Dhariwal 2018): y = (x + b) * exp(s), per dimension.
 * Params [b(D), s(D)]. Data-dependent init: b = -mean(x), s = -log(std(x)). */
#include <cjson/cJSON.h>
#include <math.h>

#include "renflow/flow.h"

static size_t an_none(const rf_layer *l, int n) {
    (void)l;
    (void)n;
    return 0;
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

static void an_forward(const rf_layer *l, const float *p, int n, const float *x, float *y,
                       float *logdet, float *cache, float *scratch) {
    (void)cache;
    (void)scratch;
    const int D = l->dim;
    const float *b = p, *s = p + D;
    const float ld = an_logdet(s, D);
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) y[(size_t)i * D + j] = (x[(size_t)i * D + j] + b[j]) * expf(s[j]);
        logdet[i] += ld;
    }
}

static void an_inverse(const rf_layer *l, const float *p, int n, const float *y, float *x,
                       float *logdet, float *scratch) {
    (void)scratch;
    const int D = l->dim;
    const float *b = p, *s = p + D;
    const float ld = an_logdet(s, D);
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) x[(size_t)i * D + j] = y[(size_t)i * D + j] * expf(-s[j]) - b[j];
        logdet[i] -= ld;
    }
}

/* dL/dx = dy e^s;  dL/db = sum_i dy e^s;  dL/ds = sum_i dy (x + b) e^s + sum_i dlogdet. */
static void an_backward(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                        const float *dlogdet, float *dx, float *dp, const float *cache,
                        float *scratch) {
    (void)cache;
    (void)scratch;
    const int D = l->dim;
    const float *b = p, *s = p + D;
    float *db = dp, *ds = dp + D;
    double gld = 0;
    for (int i = 0; i < n; i++) gld += dlogdet[i];
    for (int j = 0; j < D; j++) {
        const float es = expf(s[j]);
        double gb = 0, gs = 0;
        for (int i = 0; i < n; i++) {
            const size_t k = (size_t)i * D + j;
            const float g = dy[k] * es;
            dx[k] = g;
            gb += g;
            gs += (double)g * (x[k] + b[j]);
        }
        db[j] += (float)gb;
        ds[j] += (float)(gs + gld);
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
    .scratch_floats = an_none,
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
