/* Rational-quadratic spline primitive (Durkan et al. 2019, "Neural Spline Flows") with linear
 * (identity) tails outside [-B, B].
 *
 * Parameters per element, theta[3K-1] = [w_0..w_{K-1}, h_0..h_{K-1}, d_0..d_{K-2}]:
 *   bin widths   W_k = 2B * (MIN_BIN + (1 - MIN_BIN*K) * softmax(w)_k), knots X_0 = -B,
 *                X_j = X_0 + cumulative sum, X_K forced to exactly B;
 *   bin heights  the same from h, knots Y_j;
 *   derivatives  at the K-1 interior knots, d = MIN_DERIV + softplus(raw + c0) with
 *                c0 = log(exp(1 - MIN_DERIV) - 1), so raw = 0 gives d = 1; the two boundary
 *                derivatives are exactly 1 so the spline joins the identity tails in C^1.
 * theta = 0 is the identity map (widths equal heights bit-for-bit, every derivative is exactly 1).
 *
 * Requirements on the caller (not checked by assertions):
 *   1 <= K <= RF_RQS_MAX_BINS (64): per-call work arrays live on the stack. A K outside that
 *   range makes every output NaN (and dtheta NaN) instead of touching memory out of bounds,
 *   so a misconfigured layer fails loudly; layer constructors should reject such K.
 *   bound > 0 (otherwise the map is the identity everywhere).
 *
 * All arithmetic is done in double; inputs and outputs are float. The forward pass costs 2K exp
 * (two softmaxes; a branch-free exp good to about two ulp), two softplus evaluations (only the
 * bin's own derivatives; exp plus log1p) and one log (log and log1p are branch-free versions
 * within one ulp of glibc's, so that they vectorise). The bin is found by counting knots,
 * without a branch per knot. All entry points locate bins and compute knots through the same
 * helpers, so forward, inverse and backward see bit-identical knot positions. For training,
 * rf_rqs_forward_c and rf_rqs_forward_rows keep what the backward needs in a per-coordinate
 * cache (rf_rqs_cache_doubles(K) doubles, src/flow/xform.h), and rf_rqs_backward_c computes from
 * it exactly what rf_rqs_backward computes, without locating the bin again.
 *
 * The batched entry points (rf_rqs_*_rows, used by the layers) process RF_RQS_LANES coordinates
 * at a time in structure-of-arrays form, every step a loop over the lanes that GCC vectorises
 * (AVX-512 / AVX2 versions chosen at load time), with exactly the element-wise operations in the
 * same order: they give the same bits as the element-wise functions, whatever the vector width
 * (tests/test_rqs_fast.c, tests/test_determinism.c). The training pair rf_rqs_forward_rows_t /
 * rf_rqs_backward_rows keeps the cache in blocks of RF_RQS_LANES coordinates, field by field. */
/* No floating-point traps are used: lets GCC if-convert (and so vectorise) the selects of the
 * lane loops below; the arithmetic and its results are unchanged. (The inverse's lane loop stays
 * scalar: GCC keeps a branch for errno around sqrt, which the pragma cannot remove.) */
#pragma GCC optimize("no-trapping-math")

#include "renflow/flow.h"
#include "xform.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define RF_RQS_MAX_BINS 64

/* The helpers called inside the lane loops of the vectorised kernels must be inlined there. */
#define RQS_INLINE static inline __attribute__((always_inline))

/* The float header constants, widened. */
#define RQS_MIN_BIN ((double)RF_RQS_MIN_BIN)
#define RQS_MIN_DERIV ((double)RF_RQS_MIN_DERIV)
/* c0 = log(expm1(1 - MIN_DERIV)) and q = sigmoid(c0) = 1 - exp(MIN_DERIV - 1), for the float
 * value of RF_RQS_MIN_DERIV (0.0010000000474974513), to 35 significant digits. */
#define RQS_C0 0.53974241716176844062944502388453555
#define RQS_Q 0.63175249536884626087112368561112821
/* exp(x) for -708 <= x <= 0 (callers clamp), to about two ulp: x = k ln2 + r with
 * |r| <= ln2 / 2 (Cody-Waite split of ln2; k * LN2_HI is exact), exp(r) by its Taylor series to
 * degree 13 (truncation below 5e-18) evaluated in Estrin's scheme (short dependency chains),
 * times 2^k built from the exponent bits. NaN gives NaN and exp(0) is exactly 1. Free of branches
 * and calls, so the softmax loop below vectorises: 2K of these cost about half of glibc's exp. */
RQS_INLINE double rqs_exp(double x) {
    const double SHIFT = 0x1.8p52, LOG2E = 1.4426950408889634074;
    const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
    const double t = x * LOG2E + SHIFT, kd = t - SHIFT; /* kd = round(x / ln2) */
    const double r = (x - kd * LN2_HI) - kd * LN2_LO;
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const double a01 = 1.0 + r, a23 = 0.5 + r * (1.0 / 6), a45 = 1.0 / 24 + r * (1.0 / 120);
    const double a67 = 1.0 / 720 + r * (1.0 / 5040), a89 = 1.0 / 40320 + r * (1.0 / 362880);
    const double a1011 = 1.0 / 3628800 + r * (1.0 / 39916800);
    const double a1213 = 1.0 / 479001600 + r * (1.0 / 6227020800.0);
    const double b0 = a01 + r2 * a23, b1 = a45 + r2 * a67, b2 = a89 + r2 * a1011;
    const double p = (b0 + r4 * b1) + r8 * (b2 + r4 * a1213);
    uint64_t tb, sb; /* unsigned: defined wrap-around for the garbage bits of a NaN */
    const double shift = SHIFT;
    memcpy(&tb, &t, 8);
    memcpy(&sb, &shift, 8);
    const uint64_t eb = (tb - sb + 1023u) << 52; /* 2^k, k >= -1022 */
    double scale;
    memcpy(&scale, &eb, 8);
    return p * scale;
}

/* Below this exp is replaced by exp(RQS_EXP_MIN) ~ 3e-308: it is only ever added to a sum that
 * holds exp(0) = 1, where the difference from the true (smaller) value cannot show. */
#define RQS_EXP_MIN (-708.0)

/* log(x) to within one ulp of glibc's (fdlibm's reduction x = 2^k m, m in [sqrt(1/2), sqrt(2)),
 * and its degree-14 polynomial in s = (m - 1) / (m + 1)), free of branches and calls so that it
 * vectorises; subnormals are scaled first; 0 gives -inf, +inf gives +inf, negative and NaN give
 * NaN. log(1) is exactly 0. Used by the scalar and the vectorised spline alike. */
/* log(x) for a positive normal x, minus kadj * ln 2. */
RQS_INLINE double rqs_log_core(double x, double kadj) {
    const double LN2_HI = 6.93147180369123816490e-01, LN2_LO = 1.90821492927058770002e-10;
    const double LG1 = 6.666666666666735130e-01, LG2 = 3.999999999940941908e-01;
    const double LG3 = 2.857142874366239149e-01, LG4 = 2.222219843214978396e-01;
    const double LG5 = 1.818357216161805012e-01, LG6 = 1.531383769920937332e-01;
    const double LG7 = 1.479819860511658591e-01;
    uint64_t u;
    memcpy(&u, &x, 8);
    u += (uint64_t)(0x3ff00000 - 0x3fe6a09e) << 32; /* m >= sqrt(2) moves to the next exponent */
    const uint64_t eb = (u >> 52) | 0x4330000000000000u; /* 2^52 + biased exponent, as a double */
    double kd;
    memcpy(&kd, &eb, 8);
    kd = (kd - (0x1p52 + 1023.0)) - kadj;
    const uint64_t mb = (u & 0x000fffffffffffffu) + ((uint64_t)0x3fe6a09e << 32);
    double m;
    memcpy(&m, &mb, 8);
    const double f = m - 1.0, hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
    const double t1 = w * (LG2 + w * (LG4 + w * LG6));
    const double t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    return s * (hfsq + (t2 + t1)) + kd * LN2_LO - hfsq + f + kd * LN2_HI;
}

RQS_INLINE double rqs_log(double x) {
    const double xs = x < 0x1p-1022 ? x * 0x1p54 : x, kadj = x < 0x1p-1022 ? 54.0 : 0.0;
    double r = rqs_log_core(xs, kadj);
    r = x == 0 ? -INFINITY : r;
    r = x == INFINITY ? INFINITY : r;
    r = x < 0 ? NAN : r;
    return x != x ? x : r;
}

/* log1p(e) for 0 <= e <= 1 (within one ulp of glibc's): log(1 + e) plus the rounding error of
 * 1 + e (exact) divided by 1 + e. */
RQS_INLINE double rqs_log1p01(double e) {
    const double u = 1.0 + e; /* in [1, 2] (or NaN, which propagates) */
    return rqs_log_core(u, 0.0) + (e - (u - 1.0)) / u;
}

/* Interior knot derivative d(raw) = MIN_DERIV + softplus(raw + c0), exactly 1 at raw = 0 (so
 * theta = 0 is the exact identity), and in *sg its slope d'(raw) = sigmoid(raw + c0), both from
 * one exp(-|a|) <= 1 (a = raw + c0): softplus(a) = max(a, 0) + log1p(exp(-|a|)). raw is a float
 * widened to double. Without branches (both cases computed, one selected), so that it
 * vectorises. */
RQS_INLINE double rqs_deriv(double raw, double *sg) {
    const double a = raw + RQS_C0, na = a > 0 ? -a : a;
    const double ex = rqs_exp(na < RQS_EXP_MIN ? RQS_EXP_MIN : na);
    const double e = na < RQS_EXP_MIN ? 0.0 : ex;
    const double sgv = (a >= 0 ? 1.0 : e) / (1.0 + e); /* one division for both cases */
    const double d = RQS_MIN_DERIV + ((a > 0 ? a : 0.0) + rqs_log1p01(e));
    *sg = raw == 0.0 ? RQS_Q : sgv;
    return raw == 0.0 ? 1.0 : d;
}

/* Softmax-normalised bins of one coordinate, in three steps:
 * rqs_exp_args: e[0..K-1] = w - max w and e[K..2K-1] = h - max h (theta = [w, h, ...]), clamped;
 * rqs_exp_all:  e = exp(e), n values;
 * rqs_sums:     Sw, Sh, each taken in index order.
 * The vectorised kernel below (rqs_chunk_*) does the same operations in the same order, lane by
 * lane. */
static inline void rqs_exp_args(int K, const float *theta, double *e) {
    double mw = (double)theta[0], mh = (double)theta[K];
    for (int i = 1; i < K; i++) {
        const double a = (double)theta[i], b = (double)theta[K + i];
        mw = a > mw ? a : mw;
        mh = b > mh ? b : mh;
    }
    for (int i = 0; i < 2 * K; i++) {
        const double d = (double)theta[i] - (i < K ? mw : mh);
        e[i] = d < RQS_EXP_MIN ? RQS_EXP_MIN : d;
    }
}

static inline void rqs_exp_all(size_t n, double *e) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) e[i] = rqs_exp(e[i]);
}

static inline void rqs_sums(int K, const double *e, double *Sw, double *Sh) {
    double a = 0, b = 0;
    for (int i = 0; i < K; i++) {
        a += e[i];
        b += e[K + i];
    }
    *Sw = a;
    *Sh = b;
}

/* ew[0..K-1], eh[0..K-1] = the exps of widths and heights, with their sums. */
static inline void rqs_exps(int K, const float *theta, double *ew, double *Sw, double *eh, double *Sh) {
    double e[2 * RF_RQS_MAX_BINS];
    rqs_exp_args(K, theta, e);
    rqs_exp_all(2 * (size_t)K, e);
    rqs_sums(K, e, Sw, Sh);
    memcpy(ew, e, sizeof(double) * (size_t)K);
    memcpy(eh, e + K, sizeof(double) * (size_t)K);
}

/* The scale of the knot positions: 2B (1 - K MIN_BIN) / S. */
RQS_INLINE double rqs_knot_scale(int K, double B, double S) {
    return 2.0 * B * (1.0 - (double)K * RQS_MIN_BIN) / S;
}

/* Knot j (0 < j < K) given C = e_0 + ... + e_{j-1}: X_j = -B + j * 2B*MIN_BIN + scale * C. */
RQS_INLINE double rqs_knot(int j, double B, double scale, double C) {
    return -B + (double)j * (2.0 * B * RQS_MIN_BIN) + scale * C;
}

/* All knots X_0..X_K of one coordinate, X_0 = -B, X_K = B. */
static inline void rqs_all_knots(int K, double B, const double *e, double S, double *X) {
    const double scale = rqs_knot_scale(K, B, S);
    double C = 0;
    X[0] = -B;
    for (int j = 0; j < K - 1; j++) {
        C += e[j];
        X[j + 1] = rqs_knot(j + 1, B, scale, C);
    }
    X[K] = B;
}

/* The bin holding t: X_k <= t < X_{k+1}, clamped to [0, K-1]. Counted without branches: the
 * bin is unpredictable, and a mispredicted search loop was a large part of a spline call. */
static inline int rqs_find(int K, const double *X, double t) {
    int k = 0;
    for (int j = 1; j < K; j++) k += X[j] <= t;
    return k;
}

/* The bin containing x (forward) or y (inverse), with its local quantities; sg0, sg1 are the
 * slopes of d0, d1 with respect to their raw parameters (0 at the boundary knots). */
typedef struct {
    double k, xk, w, yk, h, d0, d1, sg0, sg1;
} rqs_bin;

/* The derivatives at the bin's two knots from their raw parameters r0 (knot k, used when k > 0)
 * and r1 (knot k + 1, used when k < K - 1); the boundary derivatives are exactly 1, slope 0. */
RQS_INLINE void rqs_bin_derivs(int K, rqs_bin *b, double r0, double r1) {
    double s0, s1;
    const double d0 = rqs_deriv(r0, &s0), d1 = rqs_deriv(r1, &s1);
    b->d0 = b->k == 0 ? 1.0 : d0;
    b->sg0 = b->k == 0 ? 0.0 : s0;
    b->d1 = b->k == (double)(K - 1) ? 1.0 : d1;
    b->sg1 = b->k == (double)(K - 1) ? 0.0 : s1;
}

/* Locates the bin from x (by_y = 0) or from y (by_y = 1), given the exps (ew, eh) and their
 * sums. */
static inline void rqs_locate_e(int K, double B, const float *theta, double t, int by_y,
                                const double *ew, double Sw, const double *eh, double Sh,
                                rqs_bin *bin) {
    double X[RF_RQS_MAX_BINS + 1], Y[RF_RQS_MAX_BINS + 1];
    rqs_all_knots(K, B, ew, Sw, X);
    rqs_all_knots(K, B, eh, Sh, Y);
    const int k = rqs_find(K, by_y ? Y : X, t);
    const float *draw = theta + 2 * K; /* draw[j - 1] is the raw derivative at knot j */
    bin->k = k;
    bin->xk = X[k];
    bin->w = X[k + 1] - X[k];
    bin->yk = Y[k];
    bin->h = Y[k + 1] - Y[k];
    rqs_bin_derivs(K, bin, k > 0 ? (double)draw[k - 1] : 0.0, k < K - 1 ? (double)draw[k] : 0.0);
}

/* Locates the bin from x (by_y = 0) or from y (by_y = 1); ew and eh receive the exps. */
static inline void rqs_locate(int K, double B, const float *theta, double t, int by_y,
                              double *ew, double *Sw, double *eh, double *Sh, rqs_bin *bin) {
    rqs_exps(K, theta, ew, Sw, eh, Sh);
    rqs_locate_e(K, B, theta, t, by_y, ew, *Sw, eh, *Sh, bin);
}

/* log dy/dx at local position xi of the bin. */
RQS_INLINE double rqs_logdet_at(const rqs_bin *b, double xi) {
    const double s = b->h / b->w, t = xi * (1.0 - xi), omx = 1.0 - xi;
    const double D = s + (b->d0 + b->d1 - 2.0 * s) * t;
    const double M = b->d1 * xi * xi + 2.0 * s * t + b->d0 * omx * omx;
    return rqs_log(s * s * M / (D * D));
}

static inline int rqs_bad_k(int K) { return K < 1 || K > RF_RQS_MAX_BINS; }

/* Forward inside [-B, B] once the bin is known. */
RQS_INLINE void rqs_forward_bin(const rqs_bin *b, double B, double xd, float *y, float *logdet) {
    const double s = b->h / b->w;
    const double xi = (xd - b->xk) / b->w, omx = 1.0 - xi, t = xi * omx;
    const double D = s + (b->d0 + b->d1 - 2.0 * s) * t;
    /* y = y_k + h (s xi^2 + d0 t) / D, rearranged as y_k + h xi + a correction that is exactly
     * zero when d0 = d1 = s (the identity). */
    const double corr = b->h * t * ((b->d0 - s) * omx - (b->d1 - s) * xi) / D;
    const double M = b->d1 * xi * xi + 2.0 * s * t + b->d0 * omx * omx;
    /* s (x - x_k) rather than h xi: with s = 1 and x_k = y_k (theta = 0) this is x - x_k + x_k,
     * which reproduces x exactly whenever x - x_k is exact (all but |x| << |x_k|) */
    double yd = b->yk + s * (xd - b->xk) + corr;
    yd = yd < -B ? -B : yd;
    yd = yd > B ? B : yd;
    *y = (float)yd;
    *logdet = (float)rqs_log(s * s * M / (D * D));
}

void rf_rqs_forward(int K, float bound, const float *theta, float x, float *y, float *logdet) {
    if (rqs_bad_k(K)) {
        *y = NAN;
        *logdet = NAN;
        return;
    }
    const double B = (double)bound, xd = (double)x;
    if (!(xd >= -B && xd <= B) || !(B > 0)) { /* tails (and NaN) */
        *y = x;
        *logdet = 0.0f;
        return;
    }
    double ew[RF_RQS_MAX_BINS], eh[RF_RQS_MAX_BINS], Sw, Sh;
    rqs_bin b;
    rqs_locate(K, B, theta, xd, 0, ew, &Sw, eh, &Sh, &b);
    rqs_forward_bin(&b, B, xd, y, logdet);
}

/* Cache of one element (rf_rqs_cache_doubles(K) doubles, see xform.h):
 *   c[0] bin (-1: identity tail, so the backward passes gy through), c[1..6] x_k, w, y_k, h, d0,
 *   d1, c[7..8] Sw, Sh, c[9..10] the derivative parameters' sigmoids (0 where unused),
 *   c[11..11+K) exp of the widths, c[11+K..11+2K) exp of the heights.
 * The blocked cache of rf_rqs_forward_rows_t holds the same fields for RF_RQS_LANES coordinates
 * at a time, field by field (c[f * RF_RQS_LANES + lane]). */
#define RQS_NF 11

RQS_INLINE void rqs_cache_put(double *c, size_t stride, const rqs_bin *b, double Sw, double Sh) {
    c[0 * stride] = b->k;
    c[1 * stride] = b->xk;
    c[2 * stride] = b->w;
    c[3 * stride] = b->yk;
    c[4 * stride] = b->h;
    c[5 * stride] = b->d0;
    c[6 * stride] = b->d1;
    c[7 * stride] = Sw;
    c[8 * stride] = Sh;
    c[9 * stride] = b->sg0;
    c[10 * stride] = b->sg1;
}

RQS_INLINE void rqs_cache_get(const double *c, size_t stride, rqs_bin *b) {
    b->k = c[0 * stride];
    b->xk = c[1 * stride];
    b->w = c[2 * stride];
    b->yk = c[3 * stride];
    b->h = c[4 * stride];
    b->d0 = c[5 * stride];
    b->d1 = c[6 * stride];
    b->sg0 = c[9 * stride];
    b->sg1 = c[10 * stride];
}

void rf_rqs_forward_c(int K, float bound, const float *theta, float x, float *y, float *logdet,
                      double *c) {
    if (rqs_bad_k(K)) {
        *y = NAN;
        *logdet = NAN;
        c[0] = -1;
        return;
    }
    const double B = (double)bound, xd = (double)x;
    if (!(xd >= -B && xd <= B) || !(B > 0)) {
        *y = x;
        *logdet = 0.0f;
        c[0] = -1;
        return;
    }
    double *ew = c + RQS_NF, *eh = ew + K, Sw, Sh;
    rqs_bin b;
    rqs_locate(K, B, theta, xd, 0, ew, &Sw, eh, &Sh, &b);
    rqs_forward_bin(&b, B, xd, y, logdet);
    rqs_cache_put(c, 1, &b, Sw, Sh);
}

/* Inverse inside [-B, B] once the bin is known. */
RQS_INLINE void rqs_inverse_bin(const rqs_bin *b, double B, double yd, float *x, float *logdet) {
    const double s = b->h / b->w, dy = yd - b->yk, dd = b->d0 + b->d1 - 2.0 * s;
    /* a xi^2 + b xi + c = 0 for the root xi in [0, 1] */
    const double qa = b->h * (s - b->d0) + dy * dd;
    const double qb = b->h * b->d0 - dy * dd;
    const double qc = -s * dy;
    double disc = qb * qb - 4.0 * qa * qc;
    disc = disc < 0 ? 0 : disc;
    const double sq = sqrt(disc);
    /* The root xi = 2c / (-b - sqrt(disc)), written without cancellation for either sign of b.
     * For b >= 0 the offset x - x_k = xi w = 2h (y - y_k) / (b + sqrt(disc)) is formed as
     * (y - y_k) * [2h / (b + sqrt(disc))]; the bracket is exactly 1 at theta = 0 (b = h,
     * sqrt(h^2) = h), which makes the identity exact as in the forward pass. Both candidates
     * are computed and one is selected (no branch, so that it vectorises). */
    const double den = qb + sq;
    const double dxp = den > 0 ? dy * (2.0 * b->h / den) : 0.0;
    const double dxn = b->w * ((-qb + sq) / (2.0 * qa));
    double dx = qb >= 0 ? dxp : dxn;
    dx = dx >= 0 ? dx : 0; /* also catches NaN from degenerate input */
    dx = dx > b->w ? b->w : dx;
    const double xi = dx / b->w;
    double xd = b->xk + dx;
    xd = xd < -B ? -B : xd;
    xd = xd > B ? B : xd;
    *x = (float)xd;
    *logdet = (float)(-rqs_logdet_at(b, xi));
}

void rf_rqs_inverse(int K, float bound, const float *theta, float y, float *x, float *logdet) {
    if (rqs_bad_k(K)) {
        *x = NAN;
        *logdet = NAN;
        return;
    }
    const double B = (double)bound, yd = (double)y;
    if (!(yd >= -B && yd <= B) || !(B > 0)) {
        *x = y;
        *logdet = 0.0f;
        return;
    }
    double ew[RF_RQS_MAX_BINS], eh[RF_RQS_MAX_BINS], Sw, Sh;
    rqs_bin b;
    rqs_locate(K, B, theta, yd, 1, ew, &Sw, eh, &Sh, &b);
    rqs_inverse_bin(&b, B, yd, x, logdet);
}

/* The backward's per-element part: everything but the loops over the K bins. */
typedef struct {
    double gx;             /* dL/dx */
    double gX0, gX1;       /* dL/dX_k, dL/dX_{k+1} (0 for the constant X_K) */
    double gY0, gY1;       /* the same for the Y knots */
    double gd0, gd1;       /* dL/d(raw derivative) at knots k and k + 1 */
} rqs_grad;

RQS_INLINE void rqs_backward_local(int K, const rqs_bin *bp, double xd, double Gy, double Gl,
                                      rqs_grad *g) {
    const rqs_bin b = *bp;
    /* local quantities */
    const double w = b.w, h = b.h, d0 = b.d0, d1 = b.d1;
    const double s = h / w;
    const double xi = (xd - b.xk) / w, omx = 1.0 - xi, t = xi * omx, u = 1.0 - 2.0 * xi;
    const double dd = d0 + d1 - 2.0 * s;
    const double D = s + dd * t, iD = 1.0 / D;
    const double N = s * xi * xi + d0 * t, R = N * iD; /* y = y_k + h R */
    const double M = d1 * xi * xi + 2.0 * s * t + d0 * omx * omx, iM = 1.0 / M;
    /* partials of R = N/D and of logdet = 2 log s + log M - 2 log D */
    const double Np = 2.0 * s * xi + d0 * u, Dp = dd * u, Mp = 2.0 * (d1 * xi + s * u - d0 * omx);
    const double R_xi = (Np - R * Dp) * iD, R_s = (xi * xi - R * (1.0 - 2.0 * t)) * iD;
    const double R_d0 = t * (1.0 - R) * iD, R_d1 = -t * R * iD;
    const double l_xi = Mp * iM - 2.0 * Dp * iD;
    const double l_s = 2.0 / s + 2.0 * t * iM - 2.0 * (1.0 - 2.0 * t) * iD;
    const double l_d0 = omx * omx * iM - 2.0 * t * iD, l_d1 = xi * xi * iM - 2.0 * t * iD;
    /* dL w.r.t. (xi, s, d0, d1, h explicit, y_k) */
    const double G_xi = Gy * h * R_xi + Gl * l_xi;
    const double G_s = Gy * h * R_s + Gl * l_s;
    const double G_d0 = Gy * h * R_d0 + Gl * l_d0;
    const double G_d1 = Gy * h * R_d1 + Gl * l_d1;
    /* xi = (x - x_k) / w, s = h / w */
    const double gx = G_xi / w;
    const double G_w = -(G_xi * xi + G_s * s) / w;
    const double G_xk = -gx;
    const double G_h = Gy * R + G_s / w;
    const double G_yk = Gy;
    /* w = X_{k+1} - X_k, h = Y_{k+1} - Y_k; X_0, Y_0 = -B and X_K, Y_K = B are constants */
    g->gx = gx;
    g->gX0 = G_xk - G_w;
    g->gX1 = b.k + 1 >= (double)K ? 0.0 : G_w;
    g->gY0 = G_yk - G_h;
    g->gY1 = b.k + 1 >= (double)K ? 0.0 : G_h;
    g->gd0 = G_d0 * b.sg0;
    g->gd1 = G_d1 * b.sg1;
}

/* Gradients once the bin, the exps and their sums are known. X_j = -B + j*step + 2B(1 -
 * K*MIN_BIN) * sum_{i<j} p_i: dL/dp_i = c (gX0 [i<k] + gX1 [i<=k]), then softmax: dL/dv_i = p_i
 * (dL/dp_i - sum_j p_j dL/dp_j). Without branches on k (which is unpredictable): adding the
 * masked-out terms as exact zeros changes no bit. */
static inline float rqs_backward_bin(int K, double B, const rqs_bin *b, const double *ew, double Sw,
                                     const double *eh, double Sh, double xd, float gy, float gld,
                                     float *dtheta) {
    rqs_grad g;
    rqs_backward_local(K, b, xd, (double)gy, (double)gld, &g);
    const double k = b->k;
    const double c = 2.0 * B * (1.0 - (double)K * RQS_MIN_BIN);
    const double iSw = 1.0 / Sw, iSh = 1.0 / Sh;
    double Pw = 0, Ph = 0, ewk = 0, ehk = 0;
    for (int i = 0; i < K; i++) {
        Pw += (double)i < k ? ew[i] : 0.0;
        Ph += (double)i < k ? eh[i] : 0.0;
        ewk = (double)i == k ? ew[i] : ewk;
        ehk = (double)i == k ? eh[i] : ehk;
    }
    Pw *= iSw;
    Ph *= iSh;
    const double pwk = ewk * iSw, phk = ehk * iSh;
    const double meanX = c * (g.gX0 * Pw + g.gX1 * (Pw + pwk));
    const double meanY = c * (g.gY0 * Ph + g.gY1 * (Ph + phk));
    const double gxl = c * (g.gX0 + g.gX1), gxk = c * g.gX1, gyl = c * (g.gY0 + g.gY1), gyk = c * g.gY1;
    for (int i = 0; i < K; i++) {
        const double gpx = (double)i < k ? gxl : ((double)i == k ? gxk : 0.0);
        const double gpy = (double)i < k ? gyl : ((double)i == k ? gyk : 0.0);
        dtheta[i] = (float)(ew[i] * iSw * (gpx - meanX));
        dtheta[K + i] = (float)(eh[i] * iSh * (gpy - meanY));
    }
    /* interior derivatives: d_k is raw index k-1, d_{k+1} is raw index k */
    float *gd = dtheta + 2 * K;
    const float g0 = (float)g.gd0, g1 = (float)g.gd1;
    for (int j = 0; j < K - 1; j++) gd[j] = (double)j == k - 1 ? g0 : ((double)j == k ? g1 : 0.0f);
    return (float)g.gx;
}

float rf_rqs_backward(int K, float bound, const float *theta, float x, float gy, float gld,
                      float *dtheta) {
    if (rqs_bad_k(K)) {
        for (int i = 0; i < 3 * K - 1; i++) dtheta[i] = NAN;
        return NAN;
    }
    const double B = (double)bound, xd = (double)x;
    if (!(xd >= -B && xd <= B) || !(B > 0)) {
        memset(dtheta, 0, sizeof(float) * (size_t)(3 * K - 1));
        return gy;
    }
    double ew[RF_RQS_MAX_BINS], eh[RF_RQS_MAX_BINS], Sw, Sh;
    rqs_bin b;
    rqs_locate(K, B, theta, xd, 0, ew, &Sw, eh, &Sh, &b);
    return rqs_backward_bin(K, B, &b, ew, Sw, eh, Sh, xd, gy, gld, dtheta);
}

float rf_rqs_backward_c(int K, float bound, float x, float gy, float gld, float *dtheta,
                        const double *c) {
    if (rqs_bad_k(K)) {
        for (int i = 0; i < 3 * K - 1; i++) dtheta[i] = NAN;
        return NAN;
    }
    if (c[0] < 0) {
        memset(dtheta, 0, sizeof(float) * (size_t)(3 * K - 1));
        return gy;
    }
    rqs_bin b;
    rqs_cache_get(c, 1, &b);
    return rqs_backward_bin(K, (double)bound, &b, c + RQS_NF, c[7], c + RQS_NF + K, c[8], (double)x,
                            gy, gld, dtheta);
}

/* ---- many coordinates at once ----
 * RF_RQS_LANES (L) coordinates at a time in structure-of-arrays form: every quantity of the
 * element-wise code above becomes an array of L doubles, and every step a loop over the L lanes
 * doing exactly the element-wise operations, in the same order (the same inline functions, with
 * selects in place of branches), so the results are bit-identical to rf_rqs_forward / inverse /
 * backward whatever the vector width. Lanes past the last coordinate repeat lane 0's input. The
 * kernels are compiled for AVX-512 and AVX2 as well, chosen when the library is loaded (the same
 * operations: no FMA contraction in ISO C mode). */
#define L RF_RQS_LANES
_Static_assert(RF_RQS_LANES % 8 == 0, "the 8 x 8 transposes need whole groups of 8 lanes");
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define RQS_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RQS_CLONES
#endif

/* Transposes of 8 x 8 floats (GCC vector extensions: unpack, shuffle and 128-bit permute
 * stages, as with AVX intrinsics; on narrower targets GCC lowers them), used to move spline
 * parameters between the coordinate-major layout of the conditioners (3K - 1 values per
 * coordinate) and the lane-major layout of the kernels. Pure data movement: no bit changes. */
typedef float rqs_f8 __attribute__((vector_size(32)));
typedef int rqs_i8 __attribute__((vector_size(32)));
typedef double rqs_d8 __attribute__((vector_size(64)));

RQS_INLINE void rqs_tr8(rqs_f8 *r) {
    const rqs_i8 lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    const rqs_i8 s44 = {0, 1, 8, 9, 4, 5, 12, 13}, see = {2, 3, 10, 11, 6, 7, 14, 15};
    const rqs_i8 plo = {0, 1, 2, 3, 8, 9, 10, 11}, phi = {4, 5, 6, 7, 12, 13, 14, 15};
    rqs_f8 t[8], u[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k += 2) {
        t[k] = __builtin_shuffle(r[k], r[k + 1], lo);
        t[k + 1] = __builtin_shuffle(r[k], r[k + 1], hi);
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; k += 4) {
        u[k] = __builtin_shuffle(t[k], t[k + 2], s44);
        u[k + 1] = __builtin_shuffle(t[k], t[k + 2], see);
        u[k + 2] = __builtin_shuffle(t[k + 1], t[k + 3], s44);
        u[k + 3] = __builtin_shuffle(t[k + 1], t[k + 3], see);
    }
#pragma GCC unroll 8
    for (int k = 0; k < 4; k++) {
        r[k] = __builtin_shuffle(u[k], u[k + 4], plo);
        r[k + 4] = __builtin_shuffle(u[k], u[k + 4], phi);
    }
}

/* Forward (inv = 0) or inverse (inv = 1) of nc <= L coordinates: theta (nc x (3K-1)), in, out,
 * ld (nc each); st receives the cache fields of the L lanes (RQS_NF x L, as in the blocked cache)
 * and E the exps (2K x L): the blocked cache block is st followed by E. Requires 1 <= K <= 64 and
 * B > 0. */
static inline __attribute__((always_inline)) void rqs_chunk(int K, double B, size_t nc, const float *theta, const float *in,
                             float *out, float *ld, const int inv, double *restrict st,
                             double *restrict E) {
    const size_t P = (size_t)rf_rqs_n_params(K);
    double T[(3 * RF_RQS_MAX_BINS - 1) * L], X[(RF_RQS_MAX_BINS + 1) * L], Y[(RF_RQS_MAX_BINS + 1) * L];
    double t[L], mw[L], mh[L], Sw[L], Sh[L], kd[L], r0[L], r1[L];
    int off[L]; /* theta of lane l starts at theta + off[l] (< L (3K-1), so an int) */
    for (size_t l = 0; l < L; l++) {
        const size_t g = l < nc ? l : 0;
        off[l] = (int)(g * P);
        t[l] = (double)in[g];
    }
    if (P >= 8) { /* transposed, 8 lanes x 8 parameters at a time (the last block overlaps) */
        for (size_t g8 = 0; g8 < L; g8 += 8)
            for (size_t s0 = 0; s0 < P; s0 += 8) {
                const size_t s = s0 + 8 > P ? P - 8 : s0;
                rqs_f8 r[8];
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) memcpy(&r[k], theta + off[g8 + k] + s, sizeof r[k]);
                rqs_tr8(r);
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) {
                    const rqs_d8 d = __builtin_convertvector(r[j], rqs_d8);
                    memcpy(T + (s + j) * L + g8, &d, sizeof d);
                }
            }
    } else {
        for (size_t i = 0; i < P; i++) {
            double *Ti = T + i * L;
            for (size_t l = 0; l < L; l++) Ti[l] = (double)theta[off[l] + (int)i];
        }
    }
    /* softmax exps (rqs_exp_args, rqs_exp_all, rqs_sums) */
#pragma omp simd
    for (size_t l = 0; l < L; l++) {
        mw[l] = T[l];
        mh[l] = T[(size_t)K * L + l];
    }
    for (int i = 1; i < K; i++) {
        const double *a = T + (size_t)i * L, *b = T + (size_t)(K + i) * L;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            mw[l] = a[l] > mw[l] ? a[l] : mw[l];
            mh[l] = b[l] > mh[l] ? b[l] : mh[l];
        }
    }
    for (int i = 0; i < 2 * K; i++) {
        const double *a = T + (size_t)i * L, *m = i < K ? mw : mh;
        double *e = E + (size_t)i * L;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            const double d = a[l] - m[l];
            e[l] = rqs_exp(d < RQS_EXP_MIN ? RQS_EXP_MIN : d);
        }
    }
#pragma omp simd
    for (size_t l = 0; l < L; l++) Sw[l] = Sh[l] = 0;
    for (int i = 0; i < K; i++) {
        const double *a = E + (size_t)i * L, *b = E + (size_t)(K + i) * L;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            Sw[l] += a[l];
            Sh[l] += b[l];
        }
    }
    /* knots (rqs_all_knots) and the bin (rqs_find, counted on X or Y) */
    {
        double scw[L], sch[L], Cw[L], Ch[L];
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            scw[l] = rqs_knot_scale(K, B, Sw[l]);
            sch[l] = rqs_knot_scale(K, B, Sh[l]);
            Cw[l] = Ch[l] = 0;
            X[l] = Y[l] = -B;
            X[(size_t)K * L + l] = Y[(size_t)K * L + l] = B;
            kd[l] = 0;
        }
        for (int j = 0; j < K - 1; j++) {
            const double *a = E + (size_t)j * L, *b = E + (size_t)(K + j) * L;
            double *x = X + (size_t)(j + 1) * L, *y = Y + (size_t)(j + 1) * L;
#pragma omp simd
            for (size_t l = 0; l < L; l++) {
                Cw[l] += a[l];
                Ch[l] += b[l];
                x[l] = rqs_knot(j + 1, B, scw[l], Cw[l]);
                y[l] = rqs_knot(j + 1, B, sch[l], Ch[l]);
                kd[l] += (inv ? y[l] : x[l]) <= t[l] ? 1.0 : 0.0;
            }
        }
    }
    /* the bin's knots and raw derivatives, selected */
    double x0[L], x1[L], y0[L], y1[L];
#pragma omp simd
    for (size_t l = 0; l < L; l++) {
        x0[l] = y0[l] = -B;
        x1[l] = y1[l] = B;
        r0[l] = r1[l] = 0;
    }
    for (int j = 0; j <= K; j++) {
        const double *x = X + (size_t)j * L, *y = Y + (size_t)j * L;
        const double dj = (double)j;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            x0[l] = kd[l] == dj ? x[l] : x0[l];
            y0[l] = kd[l] == dj ? y[l] : y0[l];
            x1[l] = kd[l] + 1.0 == dj ? x[l] : x1[l];
            y1[l] = kd[l] + 1.0 == dj ? y[l] : y1[l];
        }
    }
    for (int j = 0; j < K - 1; j++) {
        const double *r = T + (size_t)(2 * K + j) * L;
        const double dj = (double)j;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            r0[l] = kd[l] == dj + 1.0 ? r[l] : r0[l];
            r1[l] = kd[l] == dj ? r[l] : r1[l];
        }
    }
    /* the bin's derivatives and the transform (rqs_locate_e, rqs_forward_bin / rqs_inverse_bin) */
    float ov[L], lv[L];
#pragma omp simd
    for (size_t l = 0; l < L; l++) {
        rqs_bin b;
        b.k = kd[l];
        b.xk = x0[l];
        b.w = x1[l] - x0[l];
        b.yk = y0[l];
        b.h = y1[l] - y0[l];
        rqs_bin_derivs(K, &b, r0[l], r1[l]);
        float o, d;
        if (inv) rqs_inverse_bin(&b, B, t[l], &o, &d);
        else rqs_forward_bin(&b, B, t[l], &o, &d);
        const double in_range = t[l] >= -B ? (t[l] <= B ? 1.0 : 0.0) : 0.0; /* 0: tail or NaN */
        ov[l] = in_range != 0.0 ? o : (float)t[l];
        lv[l] = in_range != 0.0 ? d : 0.0f;
        b.k = in_range != 0.0 ? b.k : -1.0;
        rqs_cache_put(st + l, L, &b, Sw[l], Sh[l]);
    }
    for (size_t l = 0; l < nc; l++) {
        out[l] = ov[l];
        ld[l] = lv[l];
    }
}

/* The two instances of rqs_chunk, with inv a constant. */
RQS_CLONES static void rqs_chunk_fwd(int K, double B, size_t nc, const float *theta, const float *in,
                                     float *out, float *ld, double *restrict st, double *restrict E) {
    rqs_chunk(K, B, nc, theta, in, out, ld, 0, st, E);
}

RQS_CLONES static void rqs_chunk_inv(int K, double B, size_t nc, const float *theta, const float *in,
                                     float *out, float *ld, double *restrict st, double *restrict E) {
    rqs_chunk(K, B, nc, theta, in, out, ld, 1, st, E);
}

/* Backward of nc <= L coordinates from their blocked cache block cb (fields, then exps):
 * x, gy (nc each), gl (nc per-coordinate weights of the log-determinant), gx (nc), dtheta
 * (nc x (3K-1)). */
RQS_CLONES static void rqs_chunk_backward(int K, double B, size_t nc, const double *restrict cb,
                                          const float *x, const float *gy, const float *gl,
                                          float *gx, float *dtheta) {
    const size_t P = (size_t)rf_rqs_n_params(K);
    const double *E = cb + RQS_NF * L;
    const double c = 2.0 * B * (1.0 - (double)K * RQS_MIN_BIN);
    float G[(3 * RF_RQS_MAX_BINS - 1) * L], gxv[L];
    double xv[L], gyv[L], glv[L], Pw[L], Ph[L], ewk[L], ehk[L];
    double gxl[L], gxk[L], gyl[L], gyk[L], mX[L], mY[L], iSw[L], iSh[L], gd0[L], gd1[L];
    for (size_t l = 0; l < L; l++) {
        const size_t g = l < nc ? l : 0;
        xv[l] = (double)x[g];
        gyv[l] = (double)gy[g];
        glv[l] = (double)gl[g];
    }
#pragma omp simd
    for (size_t l = 0; l < L; l++) {
        Pw[l] = Ph[l] = ewk[l] = ehk[l] = 0;
        iSw[l] = 1.0 / cb[7 * L + l];
        iSh[l] = 1.0 / cb[8 * L + l];
    }
    for (int i = 0; i < K; i++) {
        const double *ew = E + (size_t)i * L, *eh = E + (size_t)(K + i) * L, di = (double)i;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            const double k = cb[l];
            Pw[l] += di < k ? ew[l] : 0.0;
            Ph[l] += di < k ? eh[l] : 0.0;
            ewk[l] = di == k ? ew[l] : ewk[l];
            ehk[l] = di == k ? eh[l] : ehk[l];
        }
    }
#pragma omp simd
    for (size_t l = 0; l < L; l++) {
        rqs_bin b;
        rqs_cache_get(cb + l, L, &b);
        rqs_grad g;
        rqs_backward_local(K, &b, xv[l], gyv[l], glv[l], &g);
        const double pw = Pw[l] * iSw[l], ph = Ph[l] * iSh[l];
        const double pwk = ewk[l] * iSw[l], phk = ehk[l] * iSh[l];
        mX[l] = c * (g.gX0 * pw + g.gX1 * (pw + pwk));
        mY[l] = c * (g.gY0 * ph + g.gY1 * (ph + phk));
        gxl[l] = c * (g.gX0 + g.gX1);
        gxk[l] = c * g.gX1;
        gyl[l] = c * (g.gY0 + g.gY1);
        gyk[l] = c * g.gY1;
        gd0[l] = g.gd0;
        gd1[l] = g.gd1;
        gxv[l] = b.k < 0 ? (float)gyv[l] : (float)g.gx;
    }
    for (int i = 0; i < K; i++) {
        const double *ew = E + (size_t)i * L, *eh = E + (size_t)(K + i) * L, di = (double)i;
        float *Gw = G + (size_t)i * L, *Gh = G + (size_t)(K + i) * L;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            const double k = cb[l];
            const double gpx = di < k ? gxl[l] : (di == k ? gxk[l] : 0.0);
            const double gpy = di < k ? gyl[l] : (di == k ? gyk[l] : 0.0);
            const float a = (float)(ew[l] * iSw[l] * (gpx - mX[l]));
            const float b = (float)(eh[l] * iSh[l] * (gpy - mY[l]));
            Gw[l] = k < 0 ? 0.0f : a;
            Gh[l] = k < 0 ? 0.0f : b;
        }
    }
    for (int j = 0; j < K - 1; j++) {
        float *Gd = G + (size_t)(2 * K + j) * L;
        const double dj = (double)j;
#pragma omp simd
        for (size_t l = 0; l < L; l++) {
            const double k = cb[l];
            const float g0 = (float)gd0[l], g1 = (float)gd1[l];
            const float v = dj == k - 1.0 ? g0 : (dj == k ? g1 : 0.0f);
            Gd[l] = k < 0 ? 0.0f : v;
        }
    }
    if (nc == L && P >= 8) { /* transposed back, 8 x 8 at a time (the last block overlaps) */
        for (size_t g8 = 0; g8 < L; g8 += 8)
            for (size_t s0 = 0; s0 < P; s0 += 8) {
                const size_t s = s0 + 8 > P ? P - 8 : s0;
                rqs_f8 r[8];
#pragma GCC unroll 8
                for (int j = 0; j < 8; j++) memcpy(&r[j], G + (s + j) * L + g8, sizeof r[j]);
                rqs_tr8(r);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) memcpy(dtheta + (g8 + k) * P + s, &r[k], sizeof r[k]);
            }
    } else {
        for (size_t l = 0; l < nc; l++)
            for (size_t i = 0; i < P; i++) dtheta[l * P + i] = G[i * L + l];
    }
    for (size_t l = 0; l < nc; l++) gx[l] = gxv[l];
}

/* Where B <= 0 (or NaN) or K is out of range: the identity (tails), or NaN. */
static int rqs_rows_trivial(int K, float bound, size_t m, const float *in, float *out, float *ld) {
    if (rqs_bad_k(K)) {
        for (size_t e = 0; e < m; e++) out[e] = ld[e] = NAN;
        return 1;
    }
    if (!((double)bound > 0)) {
        for (size_t e = 0; e < m; e++) {
            out[e] = in[e];
            ld[e] = 0.0f;
        }
        return 1;
    }
    return 0;
}

static void rqs_rows(int K, float bound, size_t m, const float *theta, const float *in, float *out,
                     float *ld, double *c, int inv) {
    const size_t P = (size_t)rf_rqs_n_params(K), cd = (size_t)(RQS_NF + 2 * K);
    if (rqs_rows_trivial(K, bound, m, in, out, ld)) {
        if (c)
            for (size_t e = 0; e < m; e++) c[e * cd] = -1;
        return;
    }
    double st[RQS_NF * L], E[2 * RF_RQS_MAX_BINS * L];
    for (size_t e0 = 0; e0 < m; e0 += L) {
        const size_t nc = m - e0 < L ? m - e0 : L;
        if (inv) rqs_chunk_inv(K, (double)bound, nc, theta + e0 * P, in + e0, out + e0, ld + e0, st, E);
        else rqs_chunk_fwd(K, (double)bound, nc, theta + e0 * P, in + e0, out + e0, ld + e0, st, E);
        if (c)
            for (size_t l = 0; l < nc; l++) { /* the element-wise cache layout */
                double *ce = c + (e0 + l) * cd;
                for (size_t f = 0; f < RQS_NF; f++) ce[f] = st[f * L + l];
                for (size_t i = 0; i < 2 * (size_t)K; i++) ce[RQS_NF + i] = E[i * L + l];
            }
    }
}

void rf_rqs_forward_rows(int K, float bound, size_t m, const float *theta, const float *x, float *y,
                         float *logdet, double *c) {
    rqs_rows(K, bound, m, theta, x, y, logdet, c, 0);
}

void rf_rqs_inverse_rows(int K, float bound, size_t m, const float *theta, const float *y, float *x,
                         float *logdet) {
    rqs_rows(K, bound, m, theta, y, x, logdet, NULL, 1);
}

void rf_rqs_forward_rows_t(int K, float bound, size_t m, const float *theta, const float *x, float *y,
                           float *logdet, double *cb) {
    if (rqs_rows_trivial(K, bound, m, x, y, logdet)) { /* every coordinate an identity tail */
        if (rqs_bad_k(K)) return;
        const size_t cd = (size_t)rf_rqs_cache_doubles(K);
        for (size_t e0 = 0; e0 < m; e0 += L) {
            memset(cb + e0 * cd, 0, sizeof(double) * cd * L);
            for (size_t l = 0; l < L; l++) cb[e0 * cd + l] = -1;
        }
        return;
    }
    const size_t P = (size_t)rf_rqs_n_params(K), cd = (size_t)rf_rqs_cache_doubles(K);
    for (size_t e0 = 0; e0 < m; e0 += L) {
        const size_t nc = m - e0 < L ? m - e0 : L;
        double *blk = cb + e0 * cd;
        rqs_chunk_fwd(K, (double)bound, nc, theta + e0 * P, x + e0, y + e0, logdet + e0, blk, blk + RQS_NF * L);
    }
}

void rf_rqs_backward_rows(int K, float bound, size_t m, const double *cb, const float *x,
                          const float *gy, const float *gld, size_t per, float *gx, float *dtheta) {
    const size_t P = (size_t)rf_rqs_n_params(K);
    if (rqs_bad_k(K)) {
        for (size_t e = 0; e < m; e++) gx[e] = NAN;
        for (size_t i = 0; i < m * P; i++) dtheta[i] = NAN;
        return;
    }
    const size_t cd = (size_t)rf_rqs_cache_doubles(K);
    float gl[L];
    size_t row = 0, col = 0; /* coordinate e0 + l is (row, col) of the per-row layout */
    for (size_t e0 = 0; e0 < m; e0 += L) {
        const size_t nc = m - e0 < L ? m - e0 : L;
        for (size_t l = 0; l < nc; l++) {
            gl[l] = gld[row];
            if (++col == per) {
                col = 0;
                row++;
            }
        }
        rqs_chunk_backward(K, (double)bound, nc, cb + e0 * cd, x + e0, gy + e0, gl, gx + e0, dtheta + e0 * P);
    }
}
#undef L
