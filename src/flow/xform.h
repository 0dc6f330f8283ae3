/* Private: the elementwise monotone transforms that coupling and autoregressive layers apply to
 * each transformed coordinate, given per-coordinate parameters theta from a conditioner.
 *   affine: theta = (raw_s, t), s = clamp * tanh(raw_s / clamp), y = x * exp(s) + t
 *   rqs:    theta = 3K-1 spline parameters (see rf_rqs_* in renflow/flow.h)
 * theta = 0 is the identity for both. */
#ifndef RF_FLOW_XFORM_H
#define RF_FLOW_XFORM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "renflow/flow.h"

typedef enum { RF_XFORM_AFFINE = 0, RF_XFORM_RQS = 1 } rf_xform_kind;

typedef struct rf_xform {
    rf_xform_kind kind;
    float clamp; /* affine; <= 0 means no soft clamp */
    int bins;    /* rqs */
    float bound; /* rqs */
} rf_xform;

static inline int rf_xform_n_theta(const rf_xform *t) {
    return t->kind == RF_XFORM_AFFINE ? 2 : rf_rqs_n_params(t->bins);
}

/* exp and tanh in float, branch-free so that loops over them vectorise (in files compiled with
 * no-trapping-math, see coupling.c): glibc's expf and tanhf were a quarter of an affine flow's
 * step. rf_fexp: Cephes' expf reduction and polynomial, within 2 ulp of expf on [-87, 88]
 * (clamped outside); rf_ftanh: Cephes' polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1)
 * above, within 4 ulp of tanhf. Both are exact at 0 (a zero-initialised conditioner gives the
 * identity), and NaN propagates. */
static inline float rf_fexp(float x) {
    const float SH = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    float xc = 88.72283f < x ? 88.72283f : x;
    xc = -87.33654f > xc ? -87.33654f : xc;
    const float t = xc * 1.44269504088896341f + SH, n = t - SH;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    uint32_t tb, sb;
    const float sh = SH;
    memcpy(&tb, &t, 4);
    memcpy(&sb, &sh, 4);
    const uint32_t eb = (tb - sb + 127u) << 23; /* 2^n */
    float sc;
    memcpy(&sc, &eb, 4);
    return p * sc;
}

static inline float rf_ftanh(float x) {
    const float a = fabsf(x), z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z + -5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z + -3.33332819422e-1f;
    const float small = x + x * z * p;
    const float e = rf_fexp(2.0f * (a > 9.0f ? 9.0f : a)); /* tanh(9) rounds to 1 */
    const float big = 1.0f - 2.0f / (e + 1.0f);
    return a < 0.625f ? small : (x < 0.0f ? -big : big);
}

static inline float rf_xform_affine_s(const rf_xform *t, float raw) {
    return t->clamp > 0 ? t->clamp * rf_ftanh(raw / t->clamp) : raw;
}

static inline void rf_xform_forward(const rf_xform *t, const float *theta, float x, float *y,
                                    float *ld) {
    if (t->kind == RF_XFORM_AFFINE) {
        float s = rf_xform_affine_s(t, theta[0]);
        *y = x * rf_fexp(s) + theta[1];
        *ld = s;
    } else {
        rf_rqs_forward(t->bins, t->bound, theta, x, y, ld);
    }
}

static inline void rf_xform_inverse(const rf_xform *t, const float *theta, float y, float *x,
                                    float *ld) {
    if (t->kind == RF_XFORM_AFFINE) {
        float s = rf_xform_affine_s(t, theta[0]);
        *x = (y - theta[1]) * rf_fexp(-s);
        *ld = -s;
    } else {
        rf_rqs_inverse(t->bins, t->bound, theta, y, x, ld);
    }
}

/* Gradient of gy * y + gld * ld w.r.t. x (returned) and theta (dtheta, overwritten). */
static inline float rf_xform_backward(const rf_xform *t, const float *theta, float x, float gy,
                                      float gld, float *dtheta) {
    if (t->kind == RF_XFORM_AFFINE) {
        float s = rf_xform_affine_s(t, theta[0]);
        float es = rf_fexp(s);
        float ds = gy * x * es + gld;
        float dsdraw = 1.0f;
        if (t->clamp > 0) {
            float th = rf_ftanh(theta[0] / t->clamp);
            dsdraw = 1.0f - th * th;
        }
        dtheta[0] = ds * dsdraw;
        dtheta[1] = gy;
        return gy * es;
    }
    return rf_rqs_backward(t->bins, t->bound, theta, x, gy, gld, dtheta);
}

/* Functions marked RF_XFORM_CLONES are compiled for AVX-512 and AVX2 as well, chosen when the
 * library is loaded. The arithmetic is the same (no FMA contraction in ISO C mode), so every
 * version computes the same bits, just 8 or 16 floats at a time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define RF_XFORM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RF_XFORM_CLONES
#endif
/* For a RF_XFORM_CLONES wrapper of the inline blocks below: without it GCC may keep the block out
 * of line, compiled for the baseline ISA only, and every clone just calls it. */
#if defined(__GNUC__)
#define RF_XFORM_FLATTEN __attribute__((flatten))
#else
#define RF_XFORM_FLATTEN
#endif

/* The affine transform of m coordinates at once: theta = m pairs (raw, t), x, y and ld (m
 * values each). With keep, theta is replaced by (tanh(raw / clamp), exp(s)) pairs for the
 * backward. Written as plain loops over rf_ftanh / rf_fexp: they vectorise, and give the same
 * values as rf_xform_forward / rf_xform_affine_forward_c element by element. */
static inline void rf_xform_affine_block(const rf_xform *t, size_t m, float *restrict theta,
                                         const float *restrict x, float *restrict y,
                                         float *restrict ld, int keep) {
    const float c = t->clamp;
    if (c > 0 && keep) {
#pragma omp simd
        for (size_t k = 0; k < m; k++) {
            const float h = rf_ftanh(theta[2 * k] / c), s = c * h, es = rf_fexp(s);
            y[k] = x[k] * es + theta[2 * k + 1];
            ld[k] = s;
            theta[2 * k] = h;
            theta[2 * k + 1] = es;
        }
    } else if (c > 0) {
#pragma omp simd
        for (size_t k = 0; k < m; k++) {
            const float s = c * rf_ftanh(theta[2 * k] / c);
            y[k] = x[k] * rf_fexp(s) + theta[2 * k + 1];
            ld[k] = s;
        }
    } else {
#pragma omp simd
        for (size_t k = 0; k < m; k++) {
            const float s = theta[2 * k], es = rf_fexp(s);
            y[k] = x[k] * es + theta[2 * k + 1];
            ld[k] = s;
            if (keep) theta[2 * k + 1] = es;
        }
    }
}

/* Inverse of the above: x = (y - t) exp(-s), ld = -s. */
static inline void rf_xform_affine_inv_block(const rf_xform *t, size_t m, const float *restrict theta,
                                             const float *restrict y, float *restrict x,
                                             float *restrict ld) {
    const float c = t->clamp;
#pragma omp simd
    for (size_t k = 0; k < m; k++) {
        const float s = c > 0 ? c * rf_ftanh(theta[2 * k] / c) : theta[2 * k];
        x[k] = (y[k] - theta[2 * k + 1]) * rf_fexp(-s);
        ld[k] = -s;
    }
}

/* Training variants of the affine transform. The forward also returns, in c[0..1], what the
 * backward needs: c[0] = tanh(raw / clamp) (unused without a clamp) and c[1] = exp(s); layers keep
 * them in their cache in place of theta, so the backward evaluates no transcendental function.
 * Results are bit-identical to rf_xform_forward / rf_xform_backward. */
static inline void rf_xform_affine_forward_c(const rf_xform *t, const float *theta, float x,
                                             float *y, float *ld, float *c) {
    float th = theta[0], s = theta[0];
    if (t->clamp > 0) {
        th = rf_ftanh(theta[0] / t->clamp);
        s = t->clamp * th;
    }
    const float es = rf_fexp(s);
    *y = x * es + theta[1];
    *ld = s;
    c[0] = th;
    c[1] = es;
}

static inline float rf_xform_affine_backward_c(const rf_xform *t, const float *c, float x,
                                               float gy, float gld, float *dtheta) {
    const float es = c[1];
    const float ds = gy * x * es + gld;
    const float dsdraw = t->clamp > 0 ? 1.0f - c[0] * c[0] : 1.0f;
    dtheta[0] = ds * dsdraw;
    dtheta[1] = gy;
    return gy * es;
}

/* Training variants of the spline: the forward also fills a per-element cache of
 * rf_rqs_cache_doubles(K) doubles (bin, knots, derivatives, the softmax exps), from which the
 * backward computes the same gradients as rf_rqs_backward without locating the bin again. */
static inline int rf_rqs_cache_doubles(int K) { return 11 + 2 * K; }
void rf_rqs_forward_c(int K, float bound, const float *theta, float x, float *y, float *logdet,
                      double *c);
float rf_rqs_backward_c(int K, float bound, float x, float gy, float gld, float *dtheta,
                        const double *c);

/* m coordinates at once: theta (m x (3K-1)), x, y, logdet (m each, contiguous), and, for
 * training, c (m caches as above, or NULL). Bit-identical to the element-wise calls, faster
 * (RF_RQS_LANES coordinates at a time in structure-of-arrays form, vectorised across them). */
void rf_rqs_forward_rows(int K, float bound, size_t m, const float *theta, const float *x, float *y,
                         float *logdet, double *c);
void rf_rqs_inverse_rows(int K, float bound, size_t m, const float *theta, const float *y, float *x,
                         float *logdet);

/* Coordinates per block of the blocked training cache (and lanes of the vectorised kernel). */
#define RF_RQS_LANES 16

/* Doubles of blocked training cache for m coordinates: the per-coordinate fields above, for
 * RF_RQS_LANES coordinates at a time, field by field (so m is rounded up to a whole block). */
static inline size_t rf_rqs_block_cache_doubles(int K, size_t m) {
    return (size_t)rf_rqs_cache_doubles(K) * ((m + RF_RQS_LANES - 1) / RF_RQS_LANES * RF_RQS_LANES);
}

/* Training forward of m coordinates into a blocked cache cb (rf_rqs_block_cache_doubles), and
 * its backward: the gradient of sum_e gy[e] y[e] + gld[e / per] logdet[e] with respect to x (gx,
 * m values) and theta (dtheta, m x (3K-1)). Both bit-identical to rf_rqs_forward /
 * rf_rqs_backward element by element, and vectorised across coordinates. */
void rf_rqs_forward_rows_t(int K, float bound, size_t m, const float *theta, const float *x, float *y,
                           float *logdet, double *cb);
void rf_rqs_backward_rows(int K, float bound, size_t m, const double *cb, const float *x,
                          const float *gy, const float *gld, size_t per, float *gx, float *dtheta);

/* Doubles of training cache per coordinate (0 for the affine transform, which keeps its two
 * values in place of theta). */
static inline int rf_xform_cache_doubles(const rf_xform *t) {
    return t->kind == RF_XFORM_RQS ? rf_rqs_cache_doubles(t->bins) : 0;
}

/* Floats to reserve for m such caches, element-wise or blocked, including room to align them to
 * 8 bytes. */
static inline size_t rf_xform_cache_floats(const rf_xform *t, size_t m) {
    return t->kind == RF_XFORM_RQS ? 2 * rf_rqs_block_cache_doubles(t->bins, m) + 1 : 0;
}

/* The 8-byte aligned start of such a region beginning at p. */
static inline double *rf_xform_cache_at(const float *p) {
    return (double *)(((uintptr_t)p + 7u) & ~(uintptr_t)7u);
}

/* JSON helpers shared by the layers that carry a transform. */
struct cJSON;
void rf_xform_to_json(const rf_xform *t, struct cJSON *j);
int rf_xform_from_json(const struct cJSON *j, rf_xform *t, rf_err *e);
int rf_xform_check(const rf_xform *t, rf_err *e);

#endif
