/* Per-channel ActNorm for time series: y[c, t] = (x[c, t] + b_c) exp(s_c) on the active
 * C x T block (channel-major), log|det| = T * sum_c s_c. Params [b(C), s(C)].
 * Data-dependent init: b = -mean, s = -log std, each over all n * T values of a channel. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "renflow/tsflow.h"
#include "ts_internal.h"


typedef struct {
    int C, T;
} tan_impl;

/* The loops over a channel's samples are compiled for AVX-512 and AVX2 as well (chosen when the
 * library is loaded); they compute the same bits in every version (no contraction in ISO C). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define TAN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define TAN_CLONES
#endif

typedef float tan_f8 __attribute__((vector_size(32)));
typedef float tan_f8u __attribute__((vector_size(32), aligned(4), may_alias));
typedef double tan_d8 __attribute__((vector_size(64)));

/* y = (x + b) e^s along T samples. */
TAN_CLONES static void tan_fwd_run(int T, const float *restrict x, float bc, float es, float *restrict y) {
#pragma omp simd
    for (int t = 0; t < T; t++) y[t] = (x[t] + bc) * es;
}

/* Over n rows (D apart) of one channel's T samples: dx = dy e^s, and in double gb += sum dx,
 * gs += sum dx (x + b); the sums run in 8 lanes (t mod 8 over the runs of 8 samples, the rest in
 * lane 0), added up in lane order at the end. */
TAN_CLONES static void tan_bwd_rows(int n, int D, int T, const float *dy, const float *x, float bc,
                                    float es, float *dx, double *gb, double *gs) {
    tan_d8 ab = {0}, as = {0};
    double rb = 0, rs = 0;
    for (int i = 0; i < n; i++) {
        const float *g = dy + (size_t)i * D, *xi = x + (size_t)i * D;
        float *o = dx + (size_t)i * D;
        int t = 0;
        for (; t + 8 <= T; t += 8) {
            const tan_f8 v = *(const tan_f8u *)(g + t) * es;
            *(tan_f8u *)(o + t) = v;
            const tan_d8 vd = __builtin_convertvector(v, tan_d8);
            ab += vd;
            as += vd * __builtin_convertvector(*(const tan_f8u *)(xi + t) + bc, tan_d8);
        }
        for (; t < T; t++) {
            const float v = g[t] * es;
            o[t] = v;
            rb += v;
            rs += (double)v * (xi[t] + bc);
        }
    }
    double sb = rb, ss = rs;
    for (int k = 0; k < 8; k++) {
        sb += ab[k];
        ss += as[k];
    }
    *gb = sb;
    *gs = ss;
}

static size_t tan_none(const rf_layer *l, int n) {
    (void)l;
    (void)n;
    return 0;
}

static void tan_init(const rf_layer *l, float *p, rf_rng *rng) {
    (void)rng;
    const tan_impl *a = l->impl;
    for (int i = 0; i < 2 * a->C; i++) p[i] = 0.0f;
}

static void tan_data_init(const rf_layer *l, float *p, int n, const float *x) {
    const tan_impl *a = l->impl;
    const int D = l->dim, C = a->C, T = a->T;
    const double m_count = (double)n * T;
    for (int c = 0; c < C; c++) {
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) {
            const float *xc = x + (size_t)i * D + (size_t)c * T;
            for (int t = 0; t < T; t++) m += xc[t];
        }
        m /= m_count > 0 ? m_count : 1;
        for (int i = 0; i < n; i++) {
            const float *xc = x + (size_t)i * D + (size_t)c * T;
            for (int t = 0; t < T; t++) v += (xc[t] - m) * (xc[t] - m);
        }
        v /= m_count > 1 ? m_count - 1 : 1;
        p[c] = (float)-m;
        p[C + c] = (float)-log(sqrt(v) + 1e-6);
    }
}

static float tan_logdet(const tan_impl *a, const float *s) {
    double t = 0;
    for (int c = 0; c < a->C; c++) t += s[c];
    return (float)(t * a->T);
}

static void tan_forward_prefix(const rf_layer *l, const float *p, int n, const float *x, float *y,
                               float *logdet, float *cache, float *scratch) {
    (void)cache;
    (void)scratch;
    const tan_impl *a = l->impl;
    const int D = l->dim, C = a->C, T = a->T;
    const float *b = p, *s = p + C;
    const float ld = tan_logdet(a, s);
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < C; c++) {
            const float *xc = x + (size_t)i * D + (size_t)c * T;
            float *yc = y + (size_t)i * D + (size_t)c * T;
            tan_fwd_run(T, xc, b[c], expf(s[c]), yc);
        }
        logdet[i] += ld;
    }
}

static void tan_inverse_prefix(const rf_layer *l, const float *p, int n, const float *y, float *x,
                               float *logdet, float *scratch) {
    (void)scratch;
    const tan_impl *a = l->impl;
    const int D = l->dim, C = a->C, T = a->T;
    const float *b = p, *s = p + C;
    const float ld = tan_logdet(a, s);
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < C; c++) {
            const float *yc = y + (size_t)i * D + (size_t)c * T;
            float *xc = x + (size_t)i * D + (size_t)c * T;
            const float bc = b[c], ies = expf(-s[c]);
            for (int t = 0; t < T; t++) xc[t] = yc[t] * ies - bc;
        }
        logdet[i] -= ld;
    }
}

/* dx = dy e^s; db_c = sum dy e^s; ds_c = sum dy (x + b) e^s + T sum_i dlogdet_i. */
static void tan_backward_prefix(const rf_layer *l, const float *p, int n, const float *x,
                                const float *dy, const float *dlogdet, float *dx, float *dp,
                                const float *cache, float *scratch) {
    (void)cache;
    (void)scratch;
    const tan_impl *a = l->impl;
    const int D = l->dim, C = a->C, T = a->T;
    const float *b = p, *s = p + C;
    double gld = 0;
    for (int i = 0; i < n; i++) gld += dlogdet[i];
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int c = 0; c < C; c++) {
        double gb, gs;
        const size_t o = (size_t)c * T;
        tan_bwd_rows(n, D, T, dy + o, x + o, b[c], expf(s[c]), dx + o, &gb, &gs);
        dp[c] += (float)gb;
        dp[C + c] += (float)(gs + gld * T);
    }
}

static cJSON *tan_to_json(const rf_layer *l) {
    const tan_impl *a = l->impl;
    return rf_ts_json_new("ts_actnorm", l->dim, a->C, a->T);
}

RF_TS_DEFINE_OPS(ts_actnorm_ops, ts_actnorm_prefix_ops, rf_ts_actnorm_prefix_ops, tan_forward_prefix, tan_inverse_prefix, tan_backward_prefix,
                 .kind = "ts_actnorm",
                 .cache_floats = tan_none,
                 .scratch_floats = tan_none,
                 .init_params = tan_init,
                 .data_init = tan_data_init,
                 .to_json = tan_to_json,
                 .free_impl = free)

rf_layer *rf_ts_actnorm_create(int D, int channels, int length, rf_err *e) {
    if (rf_ts_check_shape("ts_actnorm", D, channels, length, e) != RF_OK) return NULL;
    tan_impl *a = rf_zalloc(sizeof *a, e);
    if (!a) return NULL;
    a->C = channels;
    a->T = length;
    rf_layer *l = rf_layer_new(&ts_actnorm_ops, D, 2 * (size_t)channels, a, e);
    if (!l) free(a);
    return l;
}

rf_layer *rf_ts_actnorm_from_json(const cJSON *j, int dim, rf_err *e) {
    int C, T;
    if (rf_ts_shape_from_json(j, "ts_actnorm", dim, &C, &T, e) != RF_OK) return NULL;
    return rf_ts_actnorm_create(dim, C, T, e);
}
