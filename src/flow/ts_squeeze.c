/* Haar-wavelet squeeze for time series: per channel, consecutive sample pairs (a, b) become a
 * low-pass and a high-pass coefficient,
 *   lo = (a + b) / sqrt 2,   hi = (a - b) / sqrt 2,
 * so an active block of C channels x T samples becomes 2C channels x T/2 samples: the C low-pass
 * channels first, then the C high-pass channels. The map is orthonormal (log|det| = 0), so its
 * inverse is its transpose and the backward applies the inverse to dy. No parameters. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>

#include "renflow/tsflow.h"
#include "ts_internal.h"


typedef struct {
    int C, T; /* input shape (T even) */
} sq_impl;

#define SQ_R 0.70710678118654752f

/* The per-channel loops are compiled for AVX-512 and AVX2 as well (chosen when the library is
 * loaded); the same arithmetic, so the same bits, in every version. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define SQ_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SQ_CLONES
#endif

static size_t sq_none(const rf_layer *l, int n) {
    (void)l;
    (void)n;
    return 0;
}

/* x (C x T) -> y (2C x T/2), channel-major, one row. */
SQ_CLONES static void haar_fwd(int C, int T, const float *restrict x, float *restrict y) {
    const int h = T / 2;
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * T;
        float *lo = y + (size_t)c * h, *hi = y + (size_t)(C + c) * h;
#pragma omp simd
        for (int j = 0; j < h; j++) {
            const float a = xc[2 * j], b = xc[2 * j + 1];
            lo[j] = (a + b) * SQ_R;
            hi[j] = (a - b) * SQ_R;
        }
    }
}

SQ_CLONES static void haar_inv(int C, int T, const float *restrict y, float *restrict x) {
    const int h = T / 2;
    for (int c = 0; c < C; c++) {
        float *xc = x + (size_t)c * T;
        const float *lo = y + (size_t)c * h, *hi = y + (size_t)(C + c) * h;
#pragma omp simd
        for (int j = 0; j < h; j++) {
            xc[2 * j] = (lo[j] + hi[j]) * SQ_R;
            xc[2 * j + 1] = (lo[j] - hi[j]) * SQ_R;
        }
    }
}

/* The map on the active prefix of every row; the floats after it are neither read nor written
 * (the _prefix ops, for the flow engine, which carries the factored-out tail itself). */
static void sq_forward_prefix(const rf_layer *l, const float *p, int n, const float *x, float *y,
                              float *logdet, float *cache, float *scratch) {
    (void)p;
    (void)logdet; /* orthonormal: adds 0 */
    (void)cache;
    (void)scratch;
    const sq_impl *q = l->impl;
    const int D = l->dim;
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++) haar_fwd(q->C, q->T, x + (size_t)i * D, y + (size_t)i * D);
}

static void sq_inverse_prefix(const rf_layer *l, const float *p, int n, const float *y, float *x,
                              float *logdet, float *scratch) {
    (void)p;
    (void)logdet;
    (void)scratch;
    const sq_impl *q = l->impl;
    const int D = l->dim;
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++) haar_inv(q->C, q->T, y + (size_t)i * D, x + (size_t)i * D);
}

/* dx = J^T dy = J^{-1} dy (J orthonormal); no parameters, the log-det is constant. */
static void sq_backward_prefix(const rf_layer *l, const float *p, int n, const float *x,
                               const float *dy, const float *dlogdet, float *dx, float *dp,
                               const float *cache, float *scratch) {
    (void)x;
    (void)dlogdet;
    (void)dp;
    (void)cache;
    sq_inverse_prefix(l, p, n, dy, dx, NULL, scratch);
}

static cJSON *sq_to_json(const rf_layer *l) {
    const sq_impl *q = l->impl;
    return rf_ts_json_new("ts_squeeze", l->dim, q->C, q->T);
}

RF_TS_DEFINE_OPS(squeeze_ops, squeeze_prefix_ops, rf_ts_squeeze_prefix_ops, sq_forward_prefix, sq_inverse_prefix, sq_backward_prefix,
                 .kind = "ts_squeeze",
                 .cache_floats = sq_none,
                 .scratch_floats = sq_none,
                 .to_json = sq_to_json,
                 .free_impl = free)

rf_layer *rf_ts_squeeze_create(int D, int channels, int length, rf_err *e) {
    if (rf_ts_check_shape("ts_squeeze", D, channels, length, e) != RF_OK) return NULL;
    if (length % 2 != 0) {
        rf_err_set(e, RF_EARG, "ts_squeeze: length must be even to pair samples, got %d", length);
        return NULL;
    }
    sq_impl *q = rf_zalloc(sizeof *q, e);
    if (!q) return NULL;
    q->C = channels;
    q->T = length;
    rf_layer *l = rf_layer_new(&squeeze_ops, D, 0, q, e);
    if (!l) free(q);
    return l;
}

rf_layer *rf_ts_squeeze_from_json(const cJSON *j, int dim, rf_err *e) {
    int C, T;
    if (rf_ts_shape_from_json(j, "ts_squeeze", dim, &C, &T, e) != RF_OK) return NULL;
    return rf_ts_squeeze_create(dim, C, T, e);
}
