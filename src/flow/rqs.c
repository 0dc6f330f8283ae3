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
 * (two softmaxes; a branch-free exp good to about two ulp, vectorised over the 2K values and,
 * in rf_rqs_forward_rows, over many coordinates), two softplus evaluations (only the bin's own
 * derivatives) and one log. The bin is found by counting knots, without a branch per knot.
 * All entry points locate bins and compute knots through the same helpers, so forward, inverse
 * and backward see bit-identical knot positions. For training, rf_rqs_forward_c and
 * rf_rqs_forward_rows keep what the backward needs in a per-coordinate cache
 * (rf_rqs_cache_doubles(K) doubles, src/flow/xform.h), and rf_rqs_backward_c computes from it
 * exactly what rf_rqs_backward computes, without locating the bin again. */
#include "renflow/flow.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define RF_RQS_MAX_BINS 64

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
static inline double rqs_exp(double x) {
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

/* Interior knot derivative d(raw) = MIN_DERIV + softplus(raw + c0), exactly 1 at raw = 0 (so
 * theta = 0 is the exact identity), and in *sg its slope d'(raw) = sigmoid(raw + c0), both from
 * one exp(-|a|) <= 1 (a = raw + c0): softplus(a) = max(a, 0) + log1p(exp(-|a|)). */
static inline double rqs_deriv(float raw, double *sg) {
    if (raw == 0.0f) {
        *sg = RQS_Q;
        return 1.0;
    }
    const double a = (double)raw + RQS_C0, na = a > 0 ? -a : a;
    const double e = na < RQS_EXP_MIN ? 0.0 : rqs_exp(na);
    *sg = a >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    return RQS_MIN_DERIV + ((a > 0 ? a : 0.0) + log1p(e));
}

/* Softmax-normalised bins of one coordinate, in three steps so that the exps of many
 * coordinates can go through one vectorised loop (rf_rqs_forward_rows):
 * rqs_exp_args: e[0..K-1] = w - max w and e[K..2K-1] = h - max h (theta = [w, h, ...]), clamped;
 * rqs_exp_all:  e = exp(e), n values;
 * rqs_sums:     Sw, Sh, each taken in index order. */
static inline void rqs_exp_args(int K, const float *theta, double *e) {
    double mw = (double)theta[0], mh = (double)theta[K];
    for (int i = 1; i < K; i++) {
        if ((double)theta[i] > mw) mw = (double)theta[i];
        if ((double)theta[K + i] > mh) mh = (double)theta[K + i];
    }
    for (int i = 0; i < 2 * K; i++) {
        const double d = (double)theta[i] - (i < K ? mw : mh);
        e[i] = d < RQS_EXP_MIN ? RQS_EXP_MIN : d;
    }
}

/* Compiled for AVX-512 and AVX2 as well, chosen when the library is loaded: the same operations
 * (no FMA contraction in ISO C mode), so every version computes the same bits, 4 or 8 at a time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
static void rqs_exp_many(size_t n, double *e) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) e[i] = rqs_exp(e[i]);
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

/* All knots X_0..X_K of one coordinate: X_j = -B + j * 2B*MIN_BIN + (2B*(1 - K*MIN_BIN)/S) *
 * (e_0 + ... + e_{j-1}), X_0 = -B, X_K = B. */
static inline void rqs_all_knots(int K, double B, const double *e, double S, double *X) {
    const double step = 2.0 * B * RQS_MIN_BIN;
    const double scale = 2.0 * B * (1.0 - (double)K * RQS_MIN_BIN) / S;
    double C = 0;
    X[0] = -B;
    for (int j = 0; j < K - 1; j++) {
        C += e[j];
        X[j + 1] = -B + (double)(j + 1) * step + scale * C;
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
    int k;
    double xk, w, yk, h, d0, d1, sg0, sg1;
} rqs_bin;

/* Locates the bin from x (by_y = 0) or from y (by_y = 1), given the exps (ew, eh) and their
 * sums. */
static inline void rqs_locate_e(int K, double B, const float *theta, double t, int by_y,
                                const double *ew, double Sw, const double *eh, double Sh,
                                rqs_bin *bin) {
    double X[RF_RQS_MAX_BINS + 1], Y[RF_RQS_MAX_BINS + 1];
    rqs_all_knots(K, B, ew, Sw, X);
    rqs_all_knots(K, B, eh, Sh, Y);
    bin->k = rqs_find(K, by_y ? Y : X, t);
    const double x0 = X[bin->k], x1 = X[bin->k + 1], y0 = Y[bin->k], y1 = Y[bin->k + 1];
    const float *draw = theta + 2 * K; /* draw[j - 1] is the raw derivative at knot j */
    bin->xk = x0;
    bin->w = x1 - x0;
    bin->yk = y0;
    bin->h = y1 - y0;
    bin->sg0 = bin->sg1 = 0.0;
    bin->d0 = bin->k == 0 ? 1.0 : rqs_deriv(draw[bin->k - 1], &bin->sg0);
    bin->d1 = bin->k == K - 1 ? 1.0 : rqs_deriv(draw[bin->k], &bin->sg1);
}

/* Locates the bin from x (by_y = 0) or from y (by_y = 1); ew and eh receive the exps. */
static inline void rqs_locate(int K, double B, const float *theta, double t, int by_y,
                              double *ew, double *Sw, double *eh, double *Sh, rqs_bin *bin) {
    rqs_exps(K, theta, ew, Sw, eh, Sh);
    rqs_locate_e(K, B, theta, t, by_y, ew, *Sw, eh, *Sh, bin);
}

/* log dy/dx at local position xi of the bin. */
static inline double rqs_logdet_at(const rqs_bin *b, double xi) {
    const double s = b->h / b->w, t = xi * (1.0 - xi), omx = 1.0 - xi;
    const double D = s + (b->d0 + b->d1 - 2.0 * s) * t;
    const double M = b->d1 * xi * xi + 2.0 * s * t + b->d0 * omx * omx;
    return log(s * s * M / (D * D));
}

static inline int rqs_bad_k(int K) { return K < 1 || K > RF_RQS_MAX_BINS; }

/* Forward inside [-B, B] once the bin is known. */
static inline void rqs_forward_bin(const rqs_bin *b, double B, double xd, float *y, float *logdet) {
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
    if (yd < -B) yd = -B;
    if (yd > B) yd = B;
    *y = (float)yd;
    *logdet = (float)log(s * s * M / (D * D));
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
 *   c[11..11+K) exp of the widths, c[11+K..11+2K) exp of the heights. */
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
    double *ew = c + 11, *eh = ew + K;
    rqs_bin b;
    rqs_locate(K, B, theta, xd, 0, ew, &c[7], eh, &c[8], &b);
    rqs_forward_bin(&b, B, xd, y, logdet);
    c[0] = b.k;
    c[1] = b.xk;
    c[2] = b.w;
    c[3] = b.yk;
    c[4] = b.h;
    c[5] = b.d0;
    c[6] = b.d1;
    c[9] = b.sg0;
    c[10] = b.sg1;
}

/* Inverse inside [-B, B] once the bin is known. */
static inline void rqs_inverse_bin(const rqs_bin *b, double B, double yd, float *x, float *logdet) {
    const double s = b->h / b->w, dy = yd - b->yk, dd = b->d0 + b->d1 - 2.0 * s;
    /* a xi^2 + b xi + c = 0 for the root xi in [0, 1] */
    const double qa = b->h * (s - b->d0) + dy * dd;
    const double qb = b->h * b->d0 - dy * dd;
    const double qc = -s * dy;
    double disc = qb * qb - 4.0 * qa * qc;
    if (disc < 0) disc = 0;
    const double sq = sqrt(disc);
    /* The root xi = 2c / (-b - sqrt(disc)), written without cancellation for either sign of b.
     * For b >= 0 the offset x - x_k = xi w = 2h (y - y_k) / (b + sqrt(disc)) is formed as
     * (y - y_k) * [2h / (b + sqrt(disc))]; the bracket is exactly 1 at theta = 0 (b = h,
     * sqrt(h^2) = h), which makes the identity exact as in the forward pass. */
    double dx;
    if (qb >= 0) {
        const double den = qb + sq;
        dx = den > 0 ? dy * (2.0 * b->h / den) : 0.0;
    } else {
        dx = b->w * ((-qb + sq) / (2.0 * qa));
    }
    if (!(dx >= 0)) dx = 0; /* also catches NaN from degenerate input */
    if (dx > b->w) dx = b->w;
    const double xi = dx / b->w;
    double xd = b->xk + dx;
    if (xd < -B) xd = -B;
    if (xd > B) xd = B;
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

/* Gradients once the bin, the exps and the derivative parameters' sigmoids sg0, sg1 (of the raw
 * derivatives at knots k and k + 1, where they exist) are known. */
static inline float rqs_backward_bin(int K, double B, const rqs_bin *bp, const double *ew, double Sw,
                                     const double *eh, double Sh, double sg0, double sg1, double xd,
                                     float gy, float gld, float *dtheta) {
    const rqs_bin b = *bp;
    const int k = b.k;
    const double Gy = (double)gy, Gl = (double)gld;

    /* local quantities */
    const double w = b.w, h = b.h, d0 = b.d0, d1 = b.d1;
    if (K > 1) memset(dtheta + 2 * K, 0, sizeof(float) * (size_t)(K - 1)); /* all but d_k, d_k+1 */
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
    const double gX0 = G_xk - G_w, gX1 = (k + 1 < K) ? G_w : 0.0;
    const double gY0 = G_yk - G_h, gY1 = (k + 1 < K) ? G_h : 0.0;
    /* X_j = -B + j*step + 2B(1 - K*MIN_BIN) * sum_{i<j} p_i: dL/dp_i = c (gX0 [i<k] + gX1 [i<=k]),
     * then softmax: dL/dv_i = p_i (dL/dp_i - sum_j p_j dL/dp_j). */
    const double c = 2.0 * B * (1.0 - (double)K * RQS_MIN_BIN);
    const double iSw = 1.0 / Sw, iSh = 1.0 / Sh;
    /* sum_{i<k} p_i, and the loops below, without branches on k (which is unpredictable): adding
     * the masked-out terms as exact zeros changes no bit */
    double Pw = 0, Ph = 0;
    for (int i = 0; i < K; i++) {
        Pw += i < k ? ew[i] : 0.0;
        Ph += i < k ? eh[i] : 0.0;
    }
    Pw *= iSw;
    Ph *= iSh;
    const double pwk = ew[k] * iSw, phk = eh[k] * iSh;
    const double meanX = c * (gX0 * Pw + gX1 * (Pw + pwk));
    const double meanY = c * (gY0 * Ph + gY1 * (Ph + phk));
    const double gxl = c * (gX0 + gX1), gxk = c * gX1, gyl = c * (gY0 + gY1), gyk = c * gY1;
    for (int i = 0; i < K; i++) {
        const double gpx = i < k ? gxl : (i == k ? gxk : 0.0);
        const double gpy = i < k ? gyl : (i == k ? gyk : 0.0);
        dtheta[i] = (float)(ew[i] * iSw * (gpx - meanX));
        dtheta[K + i] = (float)(eh[i] * iSh * (gpy - meanY));
    }
    /* interior derivatives: d_k is raw index k-1, d_{k+1} is raw index k */
    float *gd = dtheta + 2 * K;
    if (k > 0) gd[k - 1] = (float)(G_d0 * sg0);
    if (k + 1 < K) gd[k] = (float)(G_d1 * sg1);
    return (float)gx;
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
    return rqs_backward_bin(K, B, &b, ew, Sw, eh, Sh, b.sg0, b.sg1, xd, gy, gld, dtheta);
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
    const rqs_bin b = {(int)c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[9], c[10]};
    return rqs_backward_bin(K, (double)bound, &b, c + 11, c[7], c + 11 + K, c[8], c[9], c[10], (double)x,
                            gy, gld, dtheta);
}


/* ---- many coordinates at once ----
 * The exps of RQS_CHUNK coordinates go through one vectorised loop; everything else is as in
 * rf_rqs_forward(_c) / rf_rqs_inverse, element by element, with the same arithmetic in the same
 * order, so the results are bit-identical to theirs. */
#define RQS_CHUNK 32

static void rqs_rows(int K, float bound, size_t m, const float *theta, const float *in, float *out,
                     float *ld, double *c, int inv) {
    const size_t P = (size_t)rf_rqs_n_params(K), cd = (size_t)(11 + 2 * K);
    if (rqs_bad_k(K)) {
        for (size_t e = 0; e < m; e++) {
            out[e] = ld[e] = NAN;
            if (c) c[e * cd] = -1;
        }
        return;
    }
    const double B = (double)bound;
    double E[RQS_CHUNK * 2 * RF_RQS_MAX_BINS];
    for (size_t e0 = 0; e0 < m; e0 += RQS_CHUNK) {
        const size_t nc = m - e0 < RQS_CHUNK ? m - e0 : RQS_CHUNK;
        for (size_t e = 0; e < nc; e++) rqs_exp_args(K, theta + (e0 + e) * P, E + e * 2 * (size_t)K);
        rqs_exp_many(nc * 2 * (size_t)K, E);
        for (size_t e = 0; e < nc; e++) {
            const size_t g = e0 + e;
            const double t = (double)in[g];
            double *ce = c ? c + g * cd : NULL;
            if (!(t >= -B && t <= B) || !(B > 0)) { /* tails (and NaN) */
                out[g] = in[g];
                ld[g] = 0.0f;
                if (ce) ce[0] = -1;
                continue;
            }
            const double *ew = E + e * 2 * (size_t)K, *eh = ew + K;
            double Sw, Sh;
            rqs_sums(K, ew, &Sw, &Sh);
            rqs_bin b;
            rqs_locate_e(K, B, theta + g * P, t, inv, ew, Sw, eh, Sh, &b);
            if (inv) {
                rqs_inverse_bin(&b, B, t, &out[g], &ld[g]);
                continue;
            }
            rqs_forward_bin(&b, B, t, &out[g], &ld[g]);
            if (ce) {
                ce[0] = b.k;
                ce[1] = b.xk;
                ce[2] = b.w;
                ce[3] = b.yk;
                ce[4] = b.h;
                ce[5] = b.d0;
                ce[6] = b.d1;
                ce[7] = Sw;
                ce[8] = Sh;
                ce[9] = b.sg0;
                ce[10] = b.sg1;
                memcpy(ce + 11, ew, sizeof(double) * 2 * (size_t)K);
            }
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
