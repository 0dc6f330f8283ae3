/* Tests for the vectorised (structure-of-arrays) spline kernels of src/flow/rqs.c:
 * rf_rqs_forward_rows / rf_rqs_inverse_rows (element-wise cache or none), rf_rqs_forward_rows_t
 * (blocked training cache) and rf_rqs_backward_rows, against the element-wise reference
 * rf_rqs_forward / rf_rqs_inverse / rf_rqs_backward, which tests/test_rqs.c checks against an
 * independent double-precision implementation. The fast paths must give the same bits (outputs,
 * log-determinants, gradients) on random inputs that include the identity tails, inputs exactly
 * at -B / B and just outside, NaN and infinities, zero and subnormal inputs, raw derivatives that
 * are exactly 0 (the exact-identity case), edge bins, tiny and huge bin widths (softmax inputs
 * spread by up to 1e4), and every position of a partial block of RF_RQS_LANES coordinates. */
#include "testutil.h"
#include "../src/flow/xform.h" /* the spline's batched and cached training paths (private) */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Same bits, or both NaN (a NaN's payload is not part of the contract). */
static int same(float a, float b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0; }

static long n_mismatch;

static void expect_same(float a, float b, const char *what, int K, size_t e) {
    if (!same(a, b)) {
        if (n_mismatch < 10)
            printf("[rqs_fast] mismatch %s K=%d element %zu: %.9g (fast) vs %.9g (element-wise)\n", what, K,
                   e, (double)a, (double)b);
        n_mismatch++;
    }
}

/* Random spline parameters of one coordinate, in one of several regimes. */
static void fill_theta(rf_rng *r, int K, int regime, float *th) {
    const int P = rf_rqs_n_params(K);
    for (int i = 0; i < P; i++) {
        double v;
        switch (regime) {
        case 0: v = 1.5 * rf_rng_normal(r); break;        /* typical */
        case 1: v = 20.0 * rf_rng_normal(r); break;       /* near-degenerate bins and slopes */
        case 2: v = 0.0; break;                           /* the identity */
        case 3: v = (i % 3 == 0) ? 1e4 : -1e4; break;     /* bins at the minimum width, huge raw */
        default: v = rf_rng_uniform(r) < 0.5 ? 0.0 : rf_rng_normal(r); break; /* some raw exactly 0 */
        }
        th[i] = (float)v;
    }
    if (regime == 1 && K > 1) th[(size_t)(rf_rng_uniform(r) * K)] = 60.0f; /* one bin nearly 2B wide */
}

/* Inputs: mostly inside [-B, B], with the special values mixed in. */
static float pick_x(rf_rng *r, float B, size_t e) {
    switch (e % 23) {
    case 3: return B;
    case 5: return -B;
    case 7: return nextafterf(B, INFINITY);
    case 9: return -nextafterf(B, INFINITY);
    case 11: return 0.0f;
    case 13: return 1e-40f; /* subnormal */
    case 15: return NAN;
    case 17: return (e & 32) ? INFINITY : -INFINITY;
    case 19: return (float)(B * (1.0 - 1e-7));
    case 21: return 3.0f * B;
    default: return (float)(1.2 * B * (2 * rf_rng_uniform(r) - 1));
    }
}

static void check_config(rf_rng *r, int K, float B, size_t m, int regime, size_t per) {
    const size_t P = (size_t)rf_rqs_n_params(K), cd = (size_t)rf_rqs_cache_doubles(K);
    float *th = rf_floats(m * P, NULL), *x = rf_floats(m, NULL), *y = rf_floats(m, NULL);
    float *ld = rf_floats(m, NULL), *y2 = rf_floats(m, NULL), *ld2 = rf_floats(m, NULL);
    float *y3 = rf_floats(m, NULL), *ld3 = rf_floats(m, NULL), *xi = rf_floats(m, NULL);
    float *ldi = rf_floats(m, NULL), *gy = rf_floats(m, NULL), *gl = rf_floats(m / per + 1, NULL);
    float *gx = rf_floats(m, NULL), *dth = rf_floats(m * P, NULL), *ref = rf_floats(P, NULL);
    float *ref2 = rf_floats(P, NULL);
    double *cb = malloc(sizeof(double) * rf_rqs_block_cache_doubles(K, m));
    double *ca = malloc(sizeof(double) * cd * m);
    assert_non_null(cb);
    assert_non_null(ca);
    for (size_t e = 0; e < m; e++) {
        fill_theta(r, K, (regime < 0) ? (int)(e % 5) : regime, th + e * P);
        x[e] = pick_x(r, B, e);
        gy[e] = (float)rf_rng_normal(r);
    }
    for (size_t i = 0; i <= m / per; i++) gl[i] = (float)rf_rng_normal(r);
    rf_rqs_forward_rows_t(K, B, m, th, x, y, ld, cb);
    rf_rqs_forward_rows(K, B, m, th, x, y2, ld2, NULL);
    rf_rqs_forward_rows(K, B, m, th, x, y3, ld3, ca);
    rf_rqs_inverse_rows(K, B, m, th, y, xi, ldi);
    rf_rqs_backward_rows(K, B, m, cb, x, gy, gl, per, gx, dth);
    for (size_t e = 0; e < m; e++) {
        float ye, le, xe, lie;
        rf_rqs_forward(K, B, th + e * P, x[e], &ye, &le);
        expect_same(y[e], ye, "forward_rows_t y", K, e);
        expect_same(ld[e], le, "forward_rows_t logdet", K, e);
        expect_same(y2[e], ye, "forward_rows y", K, e);
        expect_same(ld2[e], le, "forward_rows logdet", K, e);
        expect_same(y3[e], ye, "forward_rows(cache) y", K, e);
        expect_same(ld3[e], le, "forward_rows(cache) logdet", K, e);
        rf_rqs_inverse(K, B, th + e * P, y[e], &xe, &lie);
        expect_same(xi[e], xe, "inverse_rows x", K, e);
        expect_same(ldi[e], lie, "inverse_rows logdet", K, e);
        const float g = rf_rqs_backward(K, B, th + e * P, x[e], gy[e], gl[e / per], ref);
        expect_same(gx[e], g, "backward_rows dx", K, e);
        for (size_t i = 0; i < P; i++) expect_same(dth[e * P + i], ref[i], "backward_rows dtheta", K, e);
        /* the element-wise cache written by rf_rqs_forward_rows still serves rf_rqs_backward_c */
        const float g2 = rf_rqs_backward_c(K, B, x[e], gy[e], gl[e / per], ref2, ca + e * cd);
        expect_same(g2, g, "backward_c dx", K, e);
        for (size_t i = 0; i < P; i++) expect_same(ref2[i], ref[i], "backward_c dtheta", K, e);
    }
    rf_free(th);
    rf_free(x);
    rf_free(y);
    rf_free(ld);
    rf_free(y2);
    rf_free(ld2);
    rf_free(y3);
    rf_free(ld3);
    rf_free(xi);
    rf_free(ldi);
    rf_free(gy);
    rf_free(gl);
    rf_free(gx);
    rf_free(dth);
    rf_free(ref);
    rf_free(ref2);
    free(cb);
    free(ca);
}

static void test_bit_identical_to_elementwise(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 77);
    const int Ks[] = {1, 2, 3, 5, 8, 16, 17, 64};
    const float Bs[] = {1.0f, 3.0f, 5.0f};
    const size_t ms[] = {1, RF_RQS_LANES - 1, RF_RQS_LANES, RF_RQS_LANES + 1, 77, 300};
    long n = 0;
    n_mismatch = 0;
    for (size_t ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
        for (size_t bi = 0; bi < sizeof Bs / sizeof *Bs; bi++)
            for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
                for (int regime = -1; regime < 5; regime++) {
                    check_config(&r, Ks[ki], Bs[bi], ms[mi], regime, 1 + (mi % 4) * 3);
                    n += (long)ms[mi];
                }
    printf("[rqs_fast] forward/inverse rows, blocked-cache forward and backward, element-wise cache: "
           "%ld coordinates (K = 1..64, B = 1, 3, 5, partial blocks, tails, NaN/inf, identity, "
           "extreme widths), %ld mismatches against the element-wise functions\n", n, n_mismatch);
    assert_int_equal(n_mismatch, 0);
}

/* The test must be able to fail: a one-ulp change in one input changes some output bits. */
static void test_detects_difference(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 5);
    const int K = 8;
    const size_t m = 40, P = (size_t)rf_rqs_n_params(K);
    float *th = rf_floats(m * P, NULL), *x = rf_floats(m, NULL), *y = rf_floats(m, NULL), *ld = rf_floats(m, NULL);
    for (size_t e = 0; e < m; e++) {
        fill_theta(&r, K, 0, th + e * P);
        x[e] = (float)(2.0 * rf_rng_uniform(&r) - 1.0);
    }
    rf_rqs_forward_rows(K, 3.0f, m, th, x, y, ld, NULL);
    long differ = 0;
    for (size_t e = 0; e < m; e++) {
        float ye, le;
        rf_rqs_forward(K, 3.0f, th + e * P, nextafterf(x[e], INFINITY), &ye, &le);
        differ += !same(ye, y[e]) || !same(le, ld[e]);
    }
    printf("[rqs_fast] sensitivity: a one-ulp change of x changes y or log-det in %ld of %zu "
           "coordinates\n", differ, m);
    assert_true(differ > (long)m / 2);
    rf_free(th);
    rf_free(x);
    rf_free(y);
    rf_free(ld);
}

/* The per-row log-determinant weights: gld[e / per]. */
static void test_backward_rows_per_row_weights(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 8);
    const int K = 5;
    const size_t m = 45, per = 9, P = (size_t)rf_rqs_n_params(K);
    float *th = rf_floats(m * P, NULL), *x = rf_floats(m, NULL), *y = rf_floats(m, NULL), *ld = rf_floats(m, NULL);
    float *gy = rf_floats(m, NULL), *gx = rf_floats(m, NULL), *dth = rf_floats(m * P, NULL), *ref = rf_floats(P, NULL);
    float gl[5] = {0.5f, -2.0f, 0.0f, 3.0f, 1.0f};
    double *cb = malloc(sizeof(double) * rf_rqs_block_cache_doubles(K, m));
    for (size_t e = 0; e < m; e++) {
        fill_theta(&r, K, 0, th + e * P);
        x[e] = (float)(2.0 * rf_rng_uniform(&r) - 1.0);
        gy[e] = 0.0f; /* only the log-determinant term */
    }
    rf_rqs_forward_rows_t(K, 2.0f, m, th, x, y, ld, cb);
    rf_rqs_backward_rows(K, 2.0f, m, cb, x, gy, gl, per, gx, dth);
    for (size_t e = 0; e < m; e++) {
        const float g = rf_rqs_backward(K, 2.0f, th + e * P, x[e], 0.0f, gl[e / per], ref);
        assert_true(same(g, gx[e]));
        assert_memory_equal(ref, dth + e * P, sizeof(float) * P);
        if (gl[e / per] == 0.0f) assert_true(gx[e] == 0.0f);
    }
    rf_free(th);
    rf_free(x);
    rf_free(y);
    rf_free(ld);
    rf_free(gy);
    rf_free(gx);
    rf_free(dth);
    rf_free(ref);
    free(cb);
}

/* Out-of-range K and a non-positive bound, through the batched entry points. */
static void test_rows_degenerate(void **s) {
    (void)s;
    const size_t m = 20;
    float th[20 * 200] = {0}, x[20], y[20], ld[20], gx[20], gy[20], gl[20], dth[20 * 200];
    double *cb = malloc(sizeof(double) * rf_rqs_block_cache_doubles(8, m));
    for (size_t e = 0; e < m; e++) {
        x[e] = 0.25f * (float)e - 2.0f;
        gy[e] = 1.0f;
        gl[e] = 1.0f;
    }
    rf_rqs_forward_rows(65, 3.0f, m, th, x, y, ld, NULL);
    for (size_t e = 0; e < m; e++) assert_true(isnan(y[e]) && isnan(ld[e]));
    rf_rqs_forward_rows_t(8, 0.0f, m, th, x, y, ld, cb); /* B = 0: the identity everywhere */
    rf_rqs_backward_rows(8, 0.0f, m, cb, x, gy, gl, 1, gx, dth);
    for (size_t e = 0; e < m; e++) {
        assert_true(y[e] == x[e] && ld[e] == 0.0f && gx[e] == 1.0f);
        for (int i = 0; i < rf_rqs_n_params(8); i++) assert_true(dth[e * rf_rqs_n_params(8) + i] == 0.0f);
    }
    free(cb);
}

/* Speed of the batched training path against the element-wise one (printed, not asserted: the
 * machine is shared). */
static void test_speed(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 9);
    const int K = 8;
    const size_t m = 4608, P = (size_t)rf_rqs_n_params(K), cd = (size_t)rf_rqs_cache_doubles(K); /* 128 rows x 36 */
    float *th = rf_floats(m * P, NULL), *x = rf_floats(m, NULL), *y = rf_floats(m, NULL), *ld = rf_floats(m, NULL);
    float *gy = rf_floats(m, NULL), *gx = rf_floats(m, NULL), *dth = rf_floats(m * P, NULL), gl[128];
    double *cb = malloc(sizeof(double) * rf_rqs_block_cache_doubles(K, m)), *ca = malloc(sizeof(double) * cd * m);
    for (size_t e = 0; e < m; e++) {
        fill_theta(&r, K, 0, th + e * P);
        x[e] = (float)(2.5 * rf_rng_normal(&r));
        gy[e] = (float)rf_rng_normal(&r);
    }
    for (int i = 0; i < 128; i++) gl[i] = 1.0f;
    double best[2][2] = {{1e9, 1e9}, {1e9, 1e9}};
    volatile float sink = 0;
    for (int rep = 0; rep < 7; rep++) {
        double t0 = rf_now();
        for (size_t e = 0; e < m; e++) rf_rqs_forward_c(K, 3.0f, th + e * P, x[e], &y[e], &ld[e], ca + e * cd);
        double t1 = rf_now();
        for (size_t e = 0; e < m; e++)
            gx[e] = rf_rqs_backward_c(K, 3.0f, x[e], gy[e], gl[e / 36], dth + e * P, ca + e * cd);
        double t2 = rf_now();
        sink += y[7] + gx[7];
        rf_rqs_forward_rows_t(K, 3.0f, m, th, x, y, ld, cb);
        double t3 = rf_now();
        rf_rqs_backward_rows(K, 3.0f, m, cb, x, gy, gl, 36, gx, dth);
        double t4 = rf_now();
        sink += y[7] + gx[7];
        best[0][0] = fmin(best[0][0], t1 - t0);
        best[0][1] = fmin(best[0][1], t2 - t1);
        best[1][0] = fmin(best[1][0], t3 - t2);
        best[1][1] = fmin(best[1][1], t4 - t3);
    }
    printf("[rqs_fast] timing K=8, %zu coordinates (best of 7): element-wise forward %.1f + backward %.1f "
           "ns, batched forward %.1f + backward %.1f ns per coordinate\n", m, 1e9 * best[0][0] / m,
           1e9 * best[0][1] / m, 1e9 * best[1][0] / m, 1e9 * best[1][1] / m);
    assert_true(isfinite(sink));
    rf_free(th);
    rf_free(x);
    rf_free(y);
    rf_free(ld);
    rf_free(gy);
    rf_free(gx);
    rf_free(dth);
    free(cb);
    free(ca);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bit_identical_to_elementwise),
        cmocka_unit_test(test_detects_difference),
        cmocka_unit_test(test_backward_rows_per_row_weights),
        cmocka_unit_test(test_rows_degenerate),
        cmocka_unit_test(test_speed),
    };
    return cmocka_run_group_tests_name("rqs_fast", tests, NULL, NULL);
}
