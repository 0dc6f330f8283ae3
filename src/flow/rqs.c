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
 * (two softmaxes), two softplus evaluations (only the bin's own derivatives) and one log.
 * The three entry points locate bins and compute knots through the same helper, so forward,
 * inverse and backward see bit-identical knot positions. */
#include "renflow/flow.h"

#include <math.h>
#include <string.h>

#define RF_RQS_MAX_BINS 64

/* The float header constants, widened. */
#define RQS_MIN_BIN ((double)RF_RQS_MIN_BIN)
#define RQS_MIN_DERIV ((double)RF_RQS_MIN_DERIV)
/* c0 = log(expm1(1 - MIN_DERIV)) and q = sigmoid(c0) = 1 - exp(MIN_DERIV - 1), for the float
 * value of RF_RQS_MIN_DERIV (0.0010000000474974513), to 35 significant digits. */
#define RQS_C0 0.53974241716176844062944502388453555
#define RQS_Q 0.63175249536884626087112368561112821
/* Above this raw value the derivative uses the direct softplus form (expm1 would overflow). */
#define RQS_RAW_BIG 30.0

/* Interior knot derivative d(raw) = MIN_DERIV + softplus(raw + c0), written as
 * 1 + [softplus(raw + c0) - softplus(c0)] = 1 + log1p(q * expm1(raw)), which is exactly 1 at
 * raw = 0 (so theta = 0 is the exact identity) and is accurate for all raw. */
static inline double rqs_deriv(float raw) {
    double r = (double)raw;
    if (r > RQS_RAW_BIG) {
        double a = r + RQS_C0;
        return RQS_MIN_DERIV + a + log1p(exp(-a));
    }
    return 1.0 + log1p(RQS_Q * expm1(r));
}

/* d'(raw) = sigmoid(raw + c0). */
static inline double rqs_deriv_grad(float raw) {
    double a = (double)raw + RQS_C0;
    if (a >= 0) return 1.0 / (1.0 + exp(-a));
    double e = exp(a);
    return e / (1.0 + e);
}

/* Softmax-normalised bins of one coordinate (widths or heights).
 * Fills e[0..K-1] with exp(v - max v) and returns their sum. */
static inline double rqs_exps(int K, const float *v, double *e) {
    double m = (double)v[0];
    for (int i = 1; i < K; i++)
        if ((double)v[i] > m) m = (double)v[i];
    double S = 0;
    for (int i = 0; i < K; i++) {
        e[i] = exp((double)v[i] - m);
        S += e[i];
    }
    return S;
}

/* Knots of bin k: lo = X_k, hi = X_{k+1}. With search set, k is the bin holding t
 * (X_k <= t < X_{k+1}, clamped to [0, K-1]) and is returned; otherwise k = k_in.
 * X_j = -B + j * 2B*MIN_BIN + (2B*(1 - K*MIN_BIN)/S) * (e_0 + ... + e_{j-1}), X_K = B. */
static inline int rqs_knots(int K, double B, const double *e, double S, int search, double t,
                            int k_in, double *lo, double *hi) {
    const double step = 2.0 * B * RQS_MIN_BIN;
    const double scale = 2.0 * B * (1.0 - (double)K * RQS_MIN_BIN) / S;
    double C = 0, a = -B, b = B;
    int j = 0;
    for (;; j++) {
        C += e[j];
        b = (j == K - 1) ? B : -B + (double)(j + 1) * step + scale * C;
        if (j == K - 1 || (search ? t < b : j == k_in)) break;
        a = b;
    }
    *lo = a;
    *hi = b;
    return j;
}

/* The bin containing x (forward) or y (inverse), with its local quantities. */
typedef struct {
    int k;
    double xk, w, yk, h, d0, d1;
} rqs_bin;

/* Locates the bin from x (by_y = 0) or from y (by_y = 1); ew and eh receive the exps. */
static inline void rqs_locate(int K, double B, const float *theta, double t, int by_y,
                              double *ew, double *Sw, double *eh, double *Sh, rqs_bin *bin) {
    double x0, x1, y0, y1;
    *Sw = rqs_exps(K, theta, ew);
    *Sh = rqs_exps(K, theta + K, eh);
    if (!by_y) {
        bin->k = rqs_knots(K, B, ew, *Sw, 1, t, 0, &x0, &x1);
        rqs_knots(K, B, eh, *Sh, 0, 0, bin->k, &y0, &y1);
    } else {
        bin->k = rqs_knots(K, B, eh, *Sh, 1, t, 0, &y0, &y1);
        rqs_knots(K, B, ew, *Sw, 0, 0, bin->k, &x0, &x1);
    }
    const float *draw = theta + 2 * K; /* draw[j - 1] is the raw derivative at knot j */
    bin->xk = x0;
    bin->w = x1 - x0;
    bin->yk = y0;
    bin->h = y1 - y0;
    bin->d0 = bin->k == 0 ? 1.0 : rqs_deriv(draw[bin->k - 1]);
    bin->d1 = bin->k == K - 1 ? 1.0 : rqs_deriv(draw[bin->k]);
}

/* log dy/dx at local position xi of the bin. */
static inline double rqs_logdet_at(const rqs_bin *b, double xi) {
    const double s = b->h / b->w, t = xi * (1.0 - xi), omx = 1.0 - xi;
    const double D = s + (b->d0 + b->d1 - 2.0 * s) * t;
    const double M = b->d1 * xi * xi + 2.0 * s * t + b->d0 * omx * omx;
    return log(s * s * M / (D * D));
}

static inline int rqs_bad_k(int K) { return K < 1 || K > RF_RQS_MAX_BINS; }

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
    const double s = b.h / b.w;
    const double xi = (xd - b.xk) / b.w, omx = 1.0 - xi, t = xi * omx;
    const double D = s + (b.d0 + b.d1 - 2.0 * s) * t;
    /* y = y_k + h (s xi^2 + d0 t) / D, rearranged as y_k + h xi + a correction that is exactly
     * zero when d0 = d1 = s (the identity). */
    const double corr = b.h * t * ((b.d0 - s) * omx - (b.d1 - s) * xi) / D;
    const double M = b.d1 * xi * xi + 2.0 * s * t + b.d0 * omx * omx;
    /* s (x - x_k) rather than h xi: with s = 1 and x_k = y_k (theta = 0) this is x - x_k + x_k,
     * which reproduces x exactly whenever x - x_k is exact (all but |x| << |x_k|) */
    double yd = b.yk + s * (xd - b.xk) + corr;
    if (yd < -B) yd = -B;
    if (yd > B) yd = B;
    *y = (float)yd;
    *logdet = (float)log(s * s * M / (D * D));
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
    const double s = b.h / b.w, dy = yd - b.yk, dd = b.d0 + b.d1 - 2.0 * s;
    /* a xi^2 + b xi + c = 0 for the root xi in [0, 1] */
    const double qa = b.h * (s - b.d0) + dy * dd;
    const double qb = b.h * b.d0 - dy * dd;
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
        dx = den > 0 ? dy * (2.0 * b.h / den) : 0.0;
    } else {
        dx = b.w * ((-qb + sq) / (2.0 * qa));
    }
    if (!(dx >= 0)) dx = 0; /* also catches NaN from degenerate input */
    if (dx > b.w) dx = b.w;
    const double xi = dx / b.w;
    double xd = b.xk + dx;
    if (xd < -B) xd = -B;
    if (xd > B) xd = B;
    *x = (float)xd;
    *logdet = (float)(-rqs_logdet_at(&b, xi));
}

float rf_rqs_backward(int K, float bound, const float *theta, float x, float gy, float gld,
                      float *dtheta) {
    if (rqs_bad_k(K)) {
        for (int i = 0; i < 3 * K - 1; i++) dtheta[i] = NAN;
        return NAN;
    }
    memset(dtheta, 0, sizeof(float) * (size_t)(3 * K - 1));
    const double B = (double)bound, xd = (double)x;
    if (!(xd >= -B && xd <= B) || !(B > 0)) return gy;

    double ew[RF_RQS_MAX_BINS], eh[RF_RQS_MAX_BINS], Sw, Sh;
    rqs_bin b;
    rqs_locate(K, B, theta, xd, 0, ew, &Sw, eh, &Sh, &b);
    const int k = b.k;
    const double Gy = (double)gy, Gl = (double)gld;

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
    const double gX0 = G_xk - G_w, gX1 = (k + 1 < K) ? G_w : 0.0;
    const double gY0 = G_yk - G_h, gY1 = (k + 1 < K) ? G_h : 0.0;
    /* X_j = -B + j*step + 2B(1 - K*MIN_BIN) * sum_{i<j} p_i: dL/dp_i = c (gX0 [i<k] + gX1 [i<=k]),
     * then softmax: dL/dv_i = p_i (dL/dp_i - sum_j p_j dL/dp_j). */
    const double c = 2.0 * B * (1.0 - (double)K * RQS_MIN_BIN);
    const double iSw = 1.0 / Sw, iSh = 1.0 / Sh;
    double Pw = 0, Ph = 0; /* sum_{i<k} p_i */
    for (int i = 0; i < k; i++) {
        Pw += ew[i];
        Ph += eh[i];
    }
    Pw *= iSw;
    Ph *= iSh;
    const double pwk = ew[k] * iSw, phk = eh[k] * iSh;
    const double meanX = c * (gX0 * Pw + gX1 * (Pw + pwk));
    const double meanY = c * (gY0 * Ph + gY1 * (Ph + phk));
    for (int i = 0; i < K; i++) {
        double gpx = i < k ? c * (gX0 + gX1) : (i == k ? c * gX1 : 0.0);
        double gpy = i < k ? c * (gY0 + gY1) : (i == k ? c * gY1 : 0.0);
        dtheta[i] = (float)(ew[i] * iSw * (gpx - meanX));
        dtheta[K + i] = (float)(eh[i] * iSh * (gpy - meanY));
    }
    /* interior derivatives: d_k is raw index k-1, d_{k+1} is raw index k */
    float *gd = dtheta + 2 * K;
    const float *draw = theta + 2 * K;
    if (k > 0) gd[k - 1] = (float)(G_d0 * rqs_deriv_grad(draw[k - 1]));
    if (k + 1 < K) gd[k] = (float)(G_d1 * rqs_deriv_grad(draw[k]));
    return (float)gx;
}
