/* Tests for the rational-quadratic spline primitive (rf_rqs_forward / inverse / backward).
 *
 * Besides self-consistency checks (identity, monotonicity, continuity, round trips, finite
 * differences on the float functions), the library is compared against an independent, plain
 * double-precision reference implementation written straight from the paper's formulas
 * (full knot arrays, binary bin search, standard form of y and dy/dx), and the analytic
 * gradients are checked against double-precision finite differences of that reference. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXK 64

static const double MD = (double)RF_RQS_MIN_DERIV;
static const double MB = (double)RF_RQS_MIN_BIN;

/* ---------------------------------------------------------------- reference implementation */

static double ref_softplus(double a) { return a > 30 ? a + log1p(exp(-a)) : log1p(exp(a)); }
static double ref_c0(void) { return log(expm1(1.0 - MD)); }

typedef struct {
    int K;
    double B;
    double X[MAXK + 1], Y[MAXK + 1], d[MAXK + 1];
} ref_spline;

static void ref_bins(int K, double B, const double *v, double *knots) {
    double m = v[0], S = 0, p[MAXK];
    for (int i = 1; i < K; i++) m = fmax(m, v[i]);
    for (int i = 0; i < K; i++) S += (p[i] = exp(v[i] - m));
    knots[0] = -B;
    for (int i = 0; i < K; i++) knots[i + 1] = knots[i] + 2 * B * (MB + (1 - MB * K) * p[i] / S);
    knots[K] = B;
}

static void ref_setup(ref_spline *r, int K, double B, const double *theta) {
    r->K = K;
    r->B = B;
    ref_bins(K, B, theta, r->X);
    ref_bins(K, B, theta + K, r->Y);
    r->d[0] = r->d[K] = 1;
    for (int j = 1; j < K; j++) r->d[j] = MD + ref_softplus(theta[2 * K + j - 1] + ref_c0());
}

static int ref_find(const double *knots, int K, double t) {
    int lo = 0, hi = K - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (knots[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static void ref_forward(const ref_spline *r, double x, double *y, double *ld) {
    if (x < -r->B || x > r->B) {
        *y = x;
        *ld = 0;
        return;
    }
    int k = ref_find(r->X, r->K, x);
    double w = r->X[k + 1] - r->X[k], h = r->Y[k + 1] - r->Y[k], s = h / w;
    double xi = (x - r->X[k]) / w, d0 = r->d[k], d1 = r->d[k + 1];
    double num = h * (s * xi * xi + d0 * xi * (1 - xi));
    double den = s + (d1 + d0 - 2 * s) * xi * (1 - xi);
    *y = r->Y[k] + num / den;
    double dnum = s * s * (d1 * xi * xi + 2 * s * xi * (1 - xi) + d0 * (1 - xi) * (1 - xi));
    *ld = log(dnum) - 2 * log(den);
}

static double ref_loss(int K, double B, const double *theta, double x, double gy, double gld) {
    ref_spline r;
    ref_setup(&r, K, B, theta);
    double y, ld;
    ref_forward(&r, x, &y, &ld);
    return gy * y + gld * ld;
}

/* distance from x to the nearest interior knot */
static double knot_dist(const ref_spline *r, double x) {
    double dm = INFINITY;
    for (int j = 1; j < r->K; j++) dm = fmin(dm, fabs(x - r->X[j]));
    return dm;
}

/* ---------------------------------------------------------------- helpers */

static void rand_theta(rf_rng *rng, int K, double sd, float *th) {
    for (int i = 0; i < 3 * K - 1; i++) th[i] = (float)(sd * rf_rng_normal(rng));
}

static void to_double(int n, const float *a, double *b) {
    for (int i = 0; i < n; i++) b[i] = a[i];
}

static double ulp_of(float v) {
    float a = fabsf(v);
    return (double)nextafterf(a, INFINITY) - a;
}

static double rel_l2(double num, double den) { return sqrt(num) / fmax(sqrt(den), 1e-12); }

static const int KS[] = {1, 2, 3, 4, 8, 16, 64};
#define NKS ((int)(sizeof KS / sizeof KS[0]))
static const float BS[] = {1.0f, 3.0f, 5.0f};
#define NBS ((int)(sizeof BS / sizeof BS[0]))

/* ---------------------------------------------------------------- tests */

static void test_identity(void **state) {
    (void)state;
    float th[3 * MAXK];
    memset(th, 0, sizeof th);
    rf_rng rng;
    rf_rng_seed(&rng, 1);
    long n = 0, exact = 0, n_big = 0, exact_big = 0;
    double max_abs = 0, max_ld = 0, max_inv = 0, max_gx = 0, max_gth = 0;
    for (int ki = 0; ki < NKS; ki++)
        for (int bi = 0; bi < NBS; bi++) {
            const int K = KS[ki];
            const float B = BS[bi];
            for (int i = 0; i < 4000; i++) {
                float x;
                if (i < 2001) x = -1.5f * B + 3.0f * B * (float)i / 2000.0f;
                else if (i < 3000) x = (float)(2.5 * B * (rf_rng_uniform(&rng) - 0.5));
                else x = (float)(B * 1e-6 * rf_rng_normal(&rng) * pow(10, -(double)(i % 30)));
                float y, ld, x2, ld2, dth[3 * MAXK];
                rf_rqs_forward(K, B, th, x, &y, &ld);
                rf_rqs_inverse(K, B, th, x, &x2, &ld2);
                float gx = rf_rqs_backward(K, B, th, x, 0.7f, -1.3f, dth);
                n++;
                if (y == x && x2 == x) exact++;
                if (fabsf(x) >= 1e-6f * B) {
                    n_big++;
                    if (y == x && x2 == x) exact_big++;
                }
                double err = fabs((double)y - x);
                max_abs = fmax(max_abs, err);
                /* exact up to one ulp, or (for |x| far below the knot spacing) 1e-12 * B */
                assert_true(err <= ulp_of(x) || err <= 1e-12 * B);
                assert_true(fabs((double)x2 - x) <= ulp_of(x) || fabs((double)x2 - x) <= 1e-12 * B);
                max_ld = fmax(max_ld, fabs(ld));
                max_inv = fmax(max_inv, fabs(ld2));
                max_gx = fmax(max_gx, fabs(gx - 0.7));
                for (int j = 0; j < 3 * K - 1; j++) max_gth = fmax(max_gth, fabs(dth[j]));
            }
        }
    printf("[rqs] identity (theta=0): %ld points, fwd and inv bit-exact for %.3f%% (%.3f%% of the %ld "
           "with |x| >= 1e-6 B), max |y-x| = %.3g, max |logdet| = %.3g, max |inv logdet| = %.3g, "
           "max |dx-gy| = %.3g (|dtheta| up to %.3g)\n",
           n, 100.0 * exact / n, 100.0 * exact_big / n_big, n_big, max_abs, max_ld, max_inv,
           max_gx, max_gth);
    assert_true(max_ld <= 1e-6);
    assert_true(max_inv <= 1e-6);
    assert_true(max_gx <= 1e-5);
    /* bit-exact away from 0 */
    assert_true(exact_big == n_big);
}

static void test_tails(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 2);
    long n = 0;
    for (int ki = 0; ki < NKS; ki++)
        for (int bi = 0; bi < NBS; bi++) {
            const int K = KS[ki];
            const float B = BS[bi];
            float th[3 * MAXK], dth[3 * MAXK];
            for (int rep = 0; rep < 20; rep++) {
                rand_theta(&rng, K, rep < 10 ? 1.0 : 5.0, th);
                const float xs[] = {nextafterf(B, INFINITY), -nextafterf(B, INFINITY), B * 1.5f,
                                    -B * 1.5f, B * 100.0f, -B * 1e6f, 1e30f, -1e30f,
                                    INFINITY, -INFINITY};
                for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
                    float x = xs[i], y, ld, x2, ld2;
                    rf_rqs_forward(K, B, th, x, &y, &ld);
                    rf_rqs_inverse(K, B, th, x, &x2, &ld2);
                    for (int j = 0; j < 3 * K - 1; j++) dth[j] = 123.0f;
                    float gx = rf_rqs_backward(K, B, th, x, 0.25f, 3.0f, dth);
                    assert_true(y == x);
                    assert_true(x2 == x);
                    assert_true(ld == 0.0f && ld2 == 0.0f);
                    assert_true(gx == 0.25f);
                    for (int j = 0; j < 3 * K - 1; j++) assert_true(dth[j] == 0.0f);
                    n++;
                }
            }
        }
    printf("[rqs] tails: %ld points outside [-B, B]: y == x, logdet == 0, dx == gy, dtheta == 0 "
           "(forward and inverse)\n", n);
}

static void test_reference(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 3);
    double max_y = 0, max_ld = 0;
    long n = 0;
    for (int ki = 0; ki < NKS; ki++)
        for (int bi = 0; bi < NBS; bi++) {
            const int K = KS[ki];
            const float B = BS[bi];
            float th[3 * MAXK];
            double thd[3 * MAXK];
            for (int rep = 0; rep < 50; rep++) {
                rand_theta(&rng, K, rep < 40 ? 1.0 : 3.0, th);
                to_double(3 * K - 1, th, thd);
                ref_spline r;
                ref_setup(&r, K, B, thd);
                for (int i = 0; i < 200; i++) {
                    float x = (float)(1.1 * B * (2 * rf_rng_uniform(&rng) - 1));
                    if (i < K + 1) x = (float)r.X[i]; /* exactly at (float-rounded) knots */
                    float y, ld;
                    double yr, ldr;
                    rf_rqs_forward(K, B, th, x, &y, &ld);
                    ref_forward(&r, x, &yr, &ldr);
                    max_y = fmax(max_y, fabs(y - yr) / B);
                    max_ld = fmax(max_ld, fabs(ld - ldr) / fmax(1.0, fabs(ldr)));
                    n++;
                }
            }
        }
    printf("[rqs] reference (independent double implementation): %ld points, max |y - y_ref| / B "
           "= %.3g, max logdet error (rel to max(1,|ld|)) = %.3g\n", n, max_y, max_ld);
    assert_true(max_y < 1e-6);
    assert_true(max_ld < 1e-6);
}

static void test_derivative_param(void **state) {
    (void)state;
    /* K = 2 with zero widths/heights: one interior knot near 0 with s = 1 on both sides, and
     * dy/dx at the knot equals its derivative parameter d = MIN_DERIV + softplus(raw + c0). */
    const float raws[] = {-1e4f, -200.0f, -30.0f, -5.0f, -1.0f, 0.0f, 0.5f, 3.0f,
                          29.9f, 30.0f, 30.1f, 60.0f, 200.0f, 1e4f};
    double max_err = 0;
    for (size_t i = 0; i < sizeof raws / sizeof raws[0]; i++) {
        float th[5] = {0, 0, 0, 0, raws[i]};
        double thd[5];
        to_double(5, th, thd);
        ref_spline r;
        ref_setup(&r, 2, 3.0, thd);
        float x = (float)r.X[1], y, ld;
        rf_rqs_forward(2, 3.0f, th, x, &y, &ld);
        double d = MD + ref_softplus((double)raws[i] + ref_c0());
        double err = fabs(ld - log(d)) / fmax(1.0, fabs(log(d)));
        max_err = fmax(max_err, err);
        assert_true(isfinite(y) && isfinite(ld));
        assert_true(err < 1e-5);
        float x2, ld2;
        rf_rqs_inverse(2, 3.0f, th, 0.37f, &x2, &ld2);
        assert_true(isfinite(x2) && isfinite(ld2));
    }
    printf("[rqs] derivative parametrisation: slope at the knot = MIN_DERIV + softplus(raw + c0) "
           "for raw in [-1e4, 1e4], max rel logdet error = %.3g\n", max_err);
}

/* How much the reference logdet changes within one float ulp of x (for error bounds where
 * the log-derivative is steep). */
static double ref_ld_var(const ref_spline *r, float x) {
    double y, l0, lm, lp;
    ref_forward(r, x, &y, &l0);
    ref_forward(r, nextafterf(x, -INFINITY), &y, &lm);
    ref_forward(r, nextafterf(x, INFINITY), &y, &lp);
    return fmax(fabs(lp - l0), fabs(lm - l0));
}

static void test_monotone_continuity(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 4);
    const int NG = 40001;
    double max_jump_y = 0, max_jump_ld = 0, max_jump_ld_rel = 0, max_knot_y = 0, max_edge_ld = 0;
    long n_grid = 0, n_knots = 0, n_flat = 0, n_flat1 = 0;
    for (int ki = 0; ki < NKS; ki++)
        for (int bi = 0; bi < NBS; bi++) {
            const int K = KS[ki];
            const float B = BS[bi];
            float th[3 * MAXK];
            double thd[3 * MAXK];
            for (int rep = 0; rep < 6; rep++) {
                const double sd = rep < 4 ? 1.0 : 5.0;
                rand_theta(&rng, K, sd, th);
                to_double(3 * K - 1, th, thd);
                ref_spline r;
                ref_setup(&r, K, B, thd);
                float prev = -INFINITY, xprev = -INFINITY;
                for (int i = 0; i < NG; i++) {
                    float x = -1.25f * B + 2.5f * B * (float)i / (float)(NG - 1), y, ld;
                    rf_rqs_forward(K, B, th, x, &y, &ld);
                    assert_true(isfinite(y) && isfinite(ld));
                    /* strictly increasing, except that a step smaller than the float spacing
                     * of y (a very flat region) may round to equal values */
                    assert_true(y >= prev);
                    if (y == prev) {
                        double yr0, yr1, l0;
                        ref_forward(&r, xprev, &yr0, &l0);
                        ref_forward(&r, x, &yr1, &l0);
                        assert_true(yr1 > yr0);
                        assert_true(yr1 - yr0 < 2 * ulp_of(y));
                        n_flat++;
                        if (sd == 1.0) n_flat1++;
                    }
                    prev = y;
                    xprev = x;
                    n_grid++;
                }
                /* continuity at interior knots, just below / at / just above */
                for (int j = 1; j < K; j++) {
                    float xk = (float)r.X[j];
                    float xm = nextafterf(xk, -INFINITY), xp = nextafterf(xk, INFINITY);
                    float ym, yk, yp, lm, lk, lp;
                    rf_rqs_forward(K, B, th, xm, &ym, &lm);
                    rf_rqs_forward(K, B, th, xk, &yk, &lk);
                    rf_rqs_forward(K, B, th, xp, &yp, &lp);
                    double g = exp(lk);
                    double tol_y = 4 * ulp_of(xk) * g + 4 * ulp_of(yk);
                    max_jump_y = fmax(max_jump_y, fabs(yp - ym) / tol_y);
                    assert_true(ym <= yk && yk <= yp);
                    assert_true(fabs(yp - ym) <= tol_y);
                    /* logdet is continuous too; where it is steep (extreme theta) the change
                     * over one ulp is bounded by the reference's own change there */
                    double jl = fmax(fabs(lp - lk), fabs(lk - lm));
                    double tl = 1e-5 * fmax(1.0, fabs(lk)) + ref_ld_var(&r, xk);
                    max_jump_ld_rel = fmax(max_jump_ld_rel, jl / tl);
                    assert_true(jl <= tl);
                    if (sd == 1.0) max_jump_ld = fmax(max_jump_ld, jl);
                    /* y at the knot is the height knot */
                    double ky = fabs(yk - (r.Y[j] + g * ((double)xk - r.X[j])));
                    max_knot_y = fmax(max_knot_y, ky);
                    assert_true(ky <= 1e-6 * B);
                    n_knots++;
                }
                /* boundaries: y(+-B) = +-B, unit slope just inside, identity just outside */
                float y, ld;
                rf_rqs_forward(K, B, th, B, &y, &ld);
                assert_true(y == B);
                rf_rqs_forward(K, B, th, -B, &y, &ld);
                assert_true(y == -B);
                const float edges[] = {nextafterf(B, 0), nextafterf(-B, 0), B, -B};
                for (int e = 0; e < 4; e++) {
                    rf_rqs_forward(K, B, th, edges[e], &y, &ld);
                    double tl = 1e-5 + 2 * ref_ld_var(&r, edges[e]);
                    max_jump_ld_rel = fmax(max_jump_ld_rel, fabs(ld) / tl);
                    assert_true(fabs(ld) <= tl);
                    if (sd == 1.0) max_edge_ld = fmax(max_edge_ld, fabs(ld));
                    assert_true(fabs(y - edges[e]) <= 4 * ulp_of(edges[e]));
                }
                rf_rqs_forward(K, B, th, nextafterf(B, INFINITY), &y, &ld);
                assert_true(y == nextafterf(B, INFINITY) && ld == 0);
            }
        }
    printf("[rqs] monotone/continuous: %ld grid points increasing (%ld steps equal in float, %ld of "
           "them with theta~N(0,1), all with true step < 2 ulp), %ld knots: max y jump across knot = "
           "%.3g of tolerance, max |y(X_j) - Y_j| = %.3g; theta~N(0,1): max logdet jump over 1 ulp "
           "at a knot = %.3g, max |logdet| at +-B = %.3g; all theta: logdet jumps within %.3g of "
           "the reference's own change\n",
           n_grid, n_flat, n_flat1, n_knots, max_jump_y, max_knot_y, max_jump_ld, max_edge_ld,
           max_jump_ld_rel);
    assert_true(max_edge_ld < 1e-3);
}

static void test_roundtrip(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 5);
    double max_xyx = 0, max_xyx_cond = 0, max_yxy = 0, max_ld_same = 0, max_ld_raw = 0;
    double max_xyx_k[NKS];
    long n = 0, n_over = 0;
    for (int ki = 0; ki < NKS; ki++) {
        max_xyx_k[ki] = 0;
        for (int bi = 0; bi < NBS; bi++) {
            const int K = KS[ki];
            const float B = BS[bi];
            float th[3 * MAXK];
            double thd[3 * MAXK];
            for (int rep = 0; rep < 40; rep++) {
                rand_theta(&rng, K, 1.0, th);
                to_double(3 * K - 1, th, thd);
                ref_spline r;
                ref_setup(&r, K, B, thd);
                for (int i = 0; i < 400; i++) {
                    float x, yy;
                    int sp = i % 8;
                    int j = (int)rf_rng_below(&rng, (uint64_t)K + 1);
                    if (sp == 0) x = (float)r.X[j], yy = (float)r.Y[j];
                    else if (sp == 1)
                        x = nextafterf((float)r.X[j], -INFINITY),
                        yy = nextafterf((float)r.Y[j], -INFINITY);
                    else if (sp == 2)
                        x = nextafterf((float)r.X[j], INFINITY),
                        yy = nextafterf((float)r.Y[j], INFINITY);
                    else if (sp == 3)
                        x = (float)(r.X[j] + 1e-5 * B * rf_rng_normal(&rng)),
                        yy = (float)(r.Y[j] + 1e-5 * B * rf_rng_normal(&rng));
                    else
                        x = (float)(1.3 * B * (2 * rf_rng_uniform(&rng) - 1)),
                        yy = (float)(1.3 * B * (2 * rf_rng_uniform(&rng) - 1));
                    /* x -> y -> x: y is rounded to float, which alone moves x by up to
                     * ulp(y) / 2 / (dy/dx); the bound allows twice that plus 1e-5 */
                    float y, ld, x2, ld2, y2, ld3, x3, ld4;
                    rf_rqs_forward(K, B, th, x, &y, &ld);
                    rf_rqs_inverse(K, B, th, y, &x2, &ld2);
                    double e = fabs((double)x2 - x) / fmax(1.0, fabs(x));
                    double cond = 0.5 * ulp_of(y) / exp(ld) / fmax(1.0, fabs(x));
                    max_xyx = fmax(max_xyx, e);
                    max_xyx_k[ki] = fmax(max_xyx_k[ki], e);
                    if (e > 1e-5) n_over++;
                    max_xyx_cond = fmax(max_xyx_cond, e / (1e-5 + 2 * cond));
                    assert_true(e <= 1e-5 + 2 * cond);
                    /* inverse logdet = -forward logdet, compared at the same point */
                    rf_rqs_forward(K, B, th, x2, &y2, &ld3);
                    double ldtol = 1e-5 * fmax(1.0, fabs(ld3)) + ref_ld_var(&r, x2);
                    max_ld_same = fmax(max_ld_same, fabs(ld2 + ld3) / ldtol);
                    assert_true(fabs(ld2 + ld3) <= ldtol);
                    max_ld_raw = fmax(max_ld_raw, fabs(ld + ld2));
                    /* y -> x -> y (the well-conditioned direction) */
                    rf_rqs_inverse(K, B, th, yy, &x3, &ld4);
                    rf_rqs_forward(K, B, th, x3, &y2, &ld3);
                    double cond2 = 0.5 * ulp_of(x3) * exp(ld3) / fmax(1.0, fabs(yy));
                    double e2 = fabs((double)y2 - yy) / fmax(1.0, fabs(yy));
                    max_yxy = fmax(max_yxy, e2);
                    assert_true(e2 <= 1e-6 + 2 * cond2);
                    ldtol = 1e-5 * fmax(1.0, fabs(ld3)) + ref_ld_var(&r, x3);
                    max_ld_same = fmax(max_ld_same, fabs(ld4 + ld3) / ldtol);
                    assert_true(fabs(ld4 + ld3) <= ldtol);
                    n++;
                }
            }
        }
    }
    printf("[rqs] round trip: %ld samples per direction (knots, knots +-1ulp, +-B, tails)\n"
           "      x->y->x: max rel err %.3g, > 1e-5 for %ld samples, all within %.3g of the "
           "bound 1e-5 + ulp(y)/(dy/dx) set by rounding y to float\n      max by K:",
           n, max_xyx, n_over, max_xyx_cond);
    for (int ki = 0; ki < NKS; ki++) printf(" K=%d %.2g", KS[ki], max_xyx_k[ki]);
    printf("\n      y->x->y: max rel err %.3g; logdet_inv(y) + logdet_fwd(inv(y)): max %.3g of "
           "tolerance (raw |logdet_fwd(x) + logdet_inv(fwd(x))| up to %.3g)\n",
           max_yxy, max_ld_same, max_ld_raw);
}

static void test_logdet_fd(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 6);
    double max_abs = 0, max_log = 0, max_ref = 0;
    long n = 0, n_ref = 0, n_narrow = 0;
    for (int ki = 0; ki < NKS; ki++)
        for (int bi = 0; bi < NBS; bi++) {
            const int K = KS[ki];
            const float B = BS[bi];
            float th[3 * MAXK];
            double thd[3 * MAXK];
            for (int rep = 0; rep < 20; rep++) {
                rand_theta(&rng, K, 1.0, th);
                to_double(3 * K - 1, th, thd);
                ref_spline r;
                ref_setup(&r, K, B, thd);
                for (int i = 0; i < 100; i++) {
                    float x = (float)(1.2 * B * (2 * rf_rng_uniform(&rng) - 1)), y, ld, yp, ym, t;
                    rf_rqs_forward(K, B, th, x, &y, &ld);
                    const double g = exp(ld);
                    /* double central differences of the reference's y, step small against the bin */
                    if (fabs(x) < B) {
                        int k = ref_find(r.X, K, x);
                        double wk = r.X[k + 1] - r.X[k], hd = 1e-6 * wk, a, b, l;
                        double lo = fmax(r.X[k], x - hd), hi = fmin(r.X[k + 1], x + hd);
                        ref_forward(&r, hi, &b, &l);
                        ref_forward(&r, lo, &a, &l);
                        double gfd = (b - a) / (hi - lo);
                        max_ref = fmax(max_ref, fabs(gfd - g) / g);
                        assert_true(fabs(gfd - g) <= 1e-5 * g);
                        n_ref++;
                    }
                    /* float central differences with h = 1e-3, where the bin is wide enough
                     * for that step */
                    /* h = 2^-10 and x on a 2^-16 grid: every stencil point is exact */
                    const float h = 0x1p-10f;
                    x = (float)ldexp(nearbyint(ldexp(x, 16)), -16);
                    rf_rqs_forward(K, B, th, x, &y, &ld);
                    const double g2 = exp(ld);
                    if (knot_dist(&r, x) < 3 * h || fabs(fabs(x) - B) < 3 * h) continue;
                    if (fabs(x) < B) {
                        int k = ref_find(r.X, K, x);
                        if (r.X[k + 1] - r.X[k] < 100 * h) {
                            n_narrow++;
                            continue;
                        }
                    }
                    /* five-point stencil: truncation error O(h^4) (curvature is large in
                     * narrow bins), float rounding error ~ulp(y)/h */
                    float yp2, ym2;
                    rf_rqs_forward(K, B, th, x + h, &yp, &t);
                    rf_rqs_forward(K, B, th, x - h, &ym, &t);
                    rf_rqs_forward(K, B, th, x + 2 * h, &yp2, &t);
                    rf_rqs_forward(K, B, th, x - 2 * h, &ym2, &t);
                    double gf = (8.0 * ((double)yp - ym) - ((double)yp2 - ym2)) / (12.0 * h);
                    double err = fabs(gf - g2);
                    max_abs = fmax(max_abs, err / fmax(1.0, g2));
                    assert_true(err <= 1e-3 * fmax(1.0, g2));
                    if (g2 > 0.5) max_log = fmax(max_log, fabs(log(gf) - ld));
                    n++;
                }
            }
        }
    printf("[rqs] logdet vs finite differences: double FD of the reference y, %ld points: max "
           "|g_fd/g - 1| = %.3g; float 5-point FD of the library y (h=2^-10), %ld points (%ld in bins "
           "narrower than 0.1 skipped): max |g_fd - g| / max(1,g) = %.3g, max |log g_fd - logdet| "
           "(g > 0.5) = %.3g\n", n_ref, max_ref, n, n_narrow, max_abs, max_log);
    assert_true(max_log < 2e-3);
}

/* Analytic gradient vs central differences on the float library functions, as the layer tests do. */
static void test_backward_fd_float(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 7);
    const int ks[] = {2, 4, 8};
    double nx = 0, dx2 = 0, nth = 0, dth2 = 0;
    long n = 0, skipped = 0;
    for (int ki = 0; ki < 3; ki++)
        for (int bi = 0; bi < NBS; bi++) {
            const int K = ks[ki];
            const float B = BS[bi];
            const int P = 3 * K - 1;
            float th[3 * MAXK], dth[3 * MAXK];
            double thd[3 * MAXK];
            for (int rep = 0; rep < 20; rep++) {
                rand_theta(&rng, K, 1.0, th);
                to_double(P, th, thd);
                ref_spline r;
                ref_setup(&r, K, B, thd);
                for (int i = 0; i < 25; i++) {
                    float x = (float)(1.1 * B * (2 * rf_rng_uniform(&rng) - 1));
                    /* knots move by up to ~B/2 per unit of theta: keep the bin fixed under FD */
                    if (knot_dist(&r, x) < 1e-3 * B || fabs(fabs(x) - B) < 1e-3 * B) {
                        skipped++;
                        continue;
                    }
                    float gy = (float)rf_rng_normal(&rng), gld = (float)rf_rng_normal(&rng);
                    float gx = rf_rqs_backward(K, B, th, x, gy, gld, dth);
                    float y, ld;
                    /* x */
                    {
                        const float h = 1e-3f;
                        float xp = x + h, xm = x - h;
                        rf_rqs_forward(K, B, th, xp, &y, &ld);
                        double Lp = (double)gy * y + (double)gld * ld;
                        rf_rqs_forward(K, B, th, xm, &y, &ld);
                        double Lm = (double)gy * y + (double)gld * ld;
                        double fd = (Lp - Lm) / ((double)xp - xm);
                        nx += (gx - fd) * (gx - fd);
                        dx2 += fd * fd;
                    }
                    for (int p = 0; p < P; p++) {
                        const float h = 1e-3f;
                        float v = th[p];
                        th[p] = v + h;
                        rf_rqs_forward(K, B, th, x, &y, &ld);
                        double Lp = (double)gy * y + (double)gld * ld;
                        th[p] = v - h;
                        rf_rqs_forward(K, B, th, x, &y, &ld);
                        double Lm = (double)gy * y + (double)gld * ld;
                        double hh = (double)(v + h) - (double)(v - h);
                        th[p] = v;
                        double fd = (Lp - Lm) / hh;
                        nth += (dth[p] - fd) * (dth[p] - fd);
                        dth2 += fd * fd;
                    }
                    n++;
                }
            }
        }
    double ex = rel_l2(nx, dx2), et = rel_l2(nth, dth2);
    printf("[rqs] backward vs float central differences (K in {2,4,8}, h=1e-3): %ld points (%ld "
           "near knots skipped), rel L2 error dx = %.3g, dtheta = %.3g (||g_fd|| = %.3g)\n",
           n, skipped, ex, et, sqrt(dth2));
    assert_true(ex < 1e-2);
    assert_true(et < 1e-2);
    assert_true(sqrt(dth2) > 1.0);
}

/* d/d(x) (p < 0) or d/d(theta_p) of the reference loss, five-point stencil in double with
 * step h. */
static double ref_fd(int K, double B, double *thd, double x, double gy, double gld, int p,
                     double h) {
    double f[4];
    const double off[4] = {h, -h, 2 * h, -2 * h};
    for (int i = 0; i < 4; i++) {
        if (p < 0) {
            f[i] = ref_loss(K, B, thd, x + off[i], gy, gld);
        } else {
            double v = thd[p];
            thd[p] = v + off[i];
            f[i] = ref_loss(K, B, thd, x, gy, gld);
            thd[p] = v;
        }
    }
    return (8 * (f[0] - f[1]) - (f[2] - f[3])) / (12 * h);
}

/* Analytic gradient (float outputs of the library) vs double finite differences of the reference
 * implementation: a much tighter check, per sample. */
static void test_backward_fd_reference(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 8);
    double worst = 0, worst_x = 0, sum_num = 0, sum_den = 0;
    long n = 0;
    for (int ki = 0; ki < NKS; ki++)
        for (int bi = 0; bi < NBS; bi++) {
            const int K = KS[ki];
            const float B = BS[bi];
            const int P = 3 * K - 1;
            float th[3 * MAXK], dth[3 * MAXK];
            double thd[3 * MAXK];
            for (int rep = 0; rep < 12; rep++) {
                /* theta ~ N(0,1), and a few extreme ones (N(0,9), N(0,100)) */
                rand_theta(&rng, K, rep < 8 ? 1.0 : rep < 10 ? 3.0 : 10.0, th);
                to_double(P, th, thd);
                ref_spline r;
                ref_setup(&r, K, B, thd);
                for (int i = 0; i < 10; i++) {
                    float x = (float)(B * (2 * rf_rng_uniform(&rng) - 1));
                    if (knot_dist(&r, x) < 1e-4 * B) continue;
                    double gy = rf_rng_normal(&rng), gld = rf_rng_normal(&rng);
                    float gx = rf_rqs_backward(K, B, th, x, (float)gy, (float)gld, dth);
                    /* steps well inside the distance to the nearest knot (knots move by at
                     * most ~B/2 per unit of theta) */
                    const double h = fmin(1e-5, 0.01 * knot_dist(&r, x) / B);
                    double num = 0, den = 0;
                    for (int p = -1; p < P; p++) {
                        double fd = ref_fd(K, B, thd, x, gy, gld, p, h);
                        double an = p < 0 ? gx : dth[p];
                        num += (an - fd) * (an - fd);
                        den += fd * fd;
                    }
                    double e = sqrt(num) / fmax(sqrt(den), 1e-3);
                    if (rep < 10) worst = fmax(worst, e);
                    else worst_x = fmax(worst_x, e);
                    sum_num += num;
                    sum_den += den;
                    n++;
                }
            }
        }
    printf("[rqs] backward vs double finite differences of the reference (K in {1..64}): %ld "
           "points, worst per-point rel error = %.3g (theta~N(0,1) or N(0,9)), %.3g (theta~N(0,100)), "
           "overall rel L2 = %.3g\n",
           n, worst, worst_x, rel_l2(sum_num, sum_den));
    assert_true(worst < 1e-5);
    assert_true(worst_x < 1e-5);
}

static void test_bad_k(void **state) {
    (void)state;
    float th[3 * 65], dth[3 * 65], y, ld;
    memset(th, 0, sizeof th);
    rf_rqs_forward(65, 3.0f, th, 0.5f, &y, &ld);
    assert_true(isnan(y) && isnan(ld));
    rf_rqs_inverse(65, 3.0f, th, 0.5f, &y, &ld);
    assert_true(isnan(y) && isnan(ld));
    assert_true(isnan(rf_rqs_backward(65, 3.0f, th, 0.5f, 1, 1, dth)));
    assert_true(isnan(dth[0]) && isnan(dth[3 * 65 - 2]));
    rf_rqs_forward(0, 3.0f, th, 0.5f, &y, &ld);
    assert_true(isnan(y));
    /* largest supported K works */
    rf_rqs_forward(64, 3.0f, th, 0.5f, &y, &ld);
    assert_true(y == 0.5f);
    /* NaN input propagates without faults */
    rf_rqs_forward(8, 3.0f, th, NAN, &y, &ld);
    assert_true(isnan(y));
    printf("[rqs] unsupported K (0, 65) gives NaN outputs; K = 64 works; NaN x propagates\n");
}

static void test_speed(void **state) {
    (void)state;
    rf_rng rng;
    rf_rng_seed(&rng, 9);
    const int K = 8, N = 200000;
    const float B = 3.0f;
    float th[3 * 8], dth[3 * 8];
    rand_theta(&rng, K, 1.0, th);
    float *xs = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) xs[i] = (float)(B * (2 * rf_rng_uniform(&rng) - 1));
    volatile float sink = 0;
    double t0 = rf_now();
    for (int i = 0; i < N; i++) {
        float y, ld;
        rf_rqs_forward(K, B, th, xs[i], &y, &ld);
        sink += y + ld;
    }
    double t1 = rf_now();
    for (int i = 0; i < N; i++) {
        float x, ld;
        rf_rqs_inverse(K, B, th, xs[i], &x, &ld);
        sink += x + ld;
    }
    double t2 = rf_now();
    for (int i = 0; i < N; i++) sink += rf_rqs_backward(K, B, th, xs[i], 1.0f, 0.5f, dth) + dth[0];
    double t3 = rf_now();
    free(xs);
    printf("[rqs] timing K=8 (this build): forward %.1f ns, inverse %.1f ns, backward %.1f ns per "
           "element\n", 1e9 * (t1 - t0) / N, 1e9 * (t2 - t1) / N, 1e9 * (t3 - t2) / N);
    assert_true(isfinite(sink));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_tails),
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_derivative_param),
        cmocka_unit_test(test_monotone_continuity),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_logdet_fd),
        cmocka_unit_test(test_backward_fd_float),
        cmocka_unit_test(test_backward_fd_reference),
        cmocka_unit_test(test_bad_k),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests_name("rqs", tests, NULL, NULL);
}
