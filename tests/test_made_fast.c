/* MADE's banded output layer (src/nn/made.c, src/nn/mlp.c): when hidden <= D - 1 the output
 * block i reads only the leading hidden units, and the passes multiply only those columns. Checked
 * against the plain dense network (rf_mlp, the same parameter layout, every column multiplied)
 * with the same masked parameters, against float32 central differences, for the autoregressive
 * property, and for bit-identical repeats. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    assert_non_null(p);
    return p;
}

static void fill(rf_rng *r, float *x, size_t n, float s) {
    for (size_t i = 0; i < n; i++) x[i] = s * (float)rf_rng_normal(r);
}

/* max |a - b| / max(max |b|, tiny) */
static double rel_max(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / fmax(m, 1e-30);
}

/* Random masked parameters (the last layer too) for m. */
static float *made_params(const rf_made *m, rf_rng *r) {
    const size_t np = rf_made_n_params(m);
    float *p = falloc(np);
    rf_made_init_params(m, p, r);
    for (size_t i = 0; i < np; i++) p[i] += 0.2f * (float)rf_rng_normal(r);
    rf_made_project(m, p);
    return p;
}

static const rf_made_cfg CFGS[] = {
    {72, 23, 64, 1, RF_ACT_RELU, 0},  /* sleep nsf-ar: banded */
    {72, 2, 64, 2, RF_ACT_RELU, 1},   /* sleep maf: banded */
    {40, 5, 32, 2, RF_ACT_GELU, 0},   /* banded */
    {20, 3, 16, 3, RF_ACT_TANH, 1},   /* banded */
    {33, 2, 48, 1, RF_ACT_TANH, 0},   /* banded, widths not multiples of the band alignment */
    {72, 2, 256, 1, RF_ACT_RELU, 0},  /* hidden > D - 1: degrees cycle, no bands */
    {5, 4, 10, 2, RF_ACT_GELU, 1},    /* small D */
    {1, 3, 4, 2, RF_ACT_RELU, 0},     /* D == 1: constant output */
};
#define N_CFGS (sizeof CFGS / sizeof CFGS[0])

/* Forward, inference forward and backward agree with the dense network on masked parameters. */
static void test_matches_dense(void **state) {
    (void)state;
    for (size_t ci = 0; ci < N_CFGS; ci++) {
        const rf_made_cfg *c = &CFGS[ci];
        rf_made *m = rf_made_create(c, NULL);
        assert_non_null(m);
        rf_mlp_cfg mc = {c->D, c->D * c->P, c->hidden, c->n_hidden, c->act, c->residual};
        rf_mlp *d = rf_mlp_create(&mc, NULL);
        assert_non_null(d);
        const size_t np = rf_made_n_params(m);
        assert_int_equal(np, rf_mlp_n_params(d));
        rf_rng r;
        rf_rng_seed(&r, 900 + ci);
        const int n = 37, D = c->D, O = c->D * c->P;
        float *p = made_params(m, &r), *x = falloc((size_t)n * D), *g = falloc((size_t)n * O);
        fill(&r, x, (size_t)n * D, 1.0f);
        fill(&r, g, (size_t)n * O, 1.0f);
        float *o1 = falloc((size_t)n * O), *o2 = falloc((size_t)n * O), *o3 = falloc((size_t)n * O);
        float *c1 = falloc(rf_made_cache_floats(m, n)), *c2 = falloc(rf_mlp_cache_floats(d, n));
        float *c3 = falloc(rf_made_cache_floats(m, n));
        float *s1 = falloc(rf_made_scratch_floats(m, n)), *s2 = falloc(rf_mlp_scratch_floats(d, n));
        rf_made_forward(m, p, n, x, o1, c1);
        rf_mlp_forward(d, p, n, x, o2, c2);
        rf_made_forward_infer(m, p, n, x, o3, c3);
        const double ef = rel_max(o1, o2, (size_t)n * O);
        assert_memory_equal(o1, o3, sizeof(float) * (size_t)n * O);
        /* gradients accumulate onto the same (masked) starting values */
        float *dp1 = falloc(np), *dp2 = falloc(np), *dx1 = falloc((size_t)n * D),
              *dx2 = falloc((size_t)n * D);
        fill(&r, dp1, np, 0.5f);
        rf_made_project(m, dp1);
        memcpy(dp2, dp1, sizeof(float) * np);
        rf_made_backward(m, p, n, x, g, dx1, dp1, c1, s1);
        rf_mlp_backward(d, p, n, x, g, dx2, dp2, c2, s2);
        rf_made_project(m, dp2);
        const double ex = rel_max(dx1, dx2, (size_t)n * D), ep = rel_max(dp1, dp2, np);
        printf("made %zu (D %d P %d H %d L %d): forward %.2e dx %.2e dparams %.2e\n", ci, D,
               c->P, c->hidden, c->n_hidden, ef, ex, ep);
        assert_true(ef < 1e-5);
        assert_true(ex < 1e-5);
        assert_true(ep < 1e-5);
        /* masked gradients stay exactly zero */
        float *q = falloc(np);
        memcpy(q, dp1, sizeof(float) * np);
        rf_made_project(m, q);
        assert_memory_equal(q, dp1, sizeof(float) * np);
        if (D == 1)
            for (int i = 0; i < n; i++) assert_true(dx1[i] == 0.0f);
        free(q);
        free(dp1), free(dp2), free(dx1), free(dx2), free(s1), free(s2), free(c1), free(c2),
            free(c3), free(o1), free(o2), free(o3), free(p), free(x), free(g);
        rf_mlp_free(d);
        rf_made_free(m);
    }
}

/* sum(g * out) in double */
static double loss(const rf_made *m, const float *p, int n, const float *x, const float *g,
                   float *out, float *cache) {
    const int O = rf_made_config(m)->D * rf_made_config(m)->P;
    rf_made_forward(m, p, n, x, out, cache);
    double s = 0;
    for (size_t i = 0; i < (size_t)n * O; i++) s += (double)g[i] * out[i];
    return s;
}

/* Central differences (h = 1e-3) on every free parameter and every input of banded MADEs. */
static void test_finite_differences(void **state) {
    (void)state;
    const rf_made_cfg cfgs[] = {{40, 3, 32, 2, RF_ACT_TANH, 1}, {24, 2, 19, 1, RF_ACT_GELU, 0}};
    for (size_t ci = 0; ci < 2; ci++) {
        const rf_made_cfg *c = &cfgs[ci];
        rf_made *m = rf_made_create(c, NULL);
        rf_rng r;
        rf_rng_seed(&r, 1700 + ci);
        const int n = 3, D = c->D, O = c->D * c->P;
        const size_t np = rf_made_n_params(m);
        float *p = made_params(m, &r), *x = falloc((size_t)n * D), *g = falloc((size_t)n * O);
        fill(&r, x, (size_t)n * D, 1.0f);
        fill(&r, g, (size_t)n * O, 1.0f);
        float *out = falloc((size_t)n * O), *cache = falloc(rf_made_cache_floats(m, n));
        float *scr = falloc(rf_made_scratch_floats(m, n)), *dp = falloc(np),
              *dx = falloc((size_t)n * D), *mask = falloc(np);
        loss(m, p, n, x, g, out, cache);
        rf_made_backward(m, p, n, x, g, dx, dp, cache, scr);
        for (size_t i = 0; i < np; i++) mask[i] = 1.0f;
        rf_made_project(m, mask);
        const float h = 1e-3f;
        double num = 0, den = 0;
        for (size_t i = 0; i < np; i++) {
            if (mask[i] == 0.0f) {
                assert_true(dp[i] == 0.0f);
                continue;
            }
            const float v = p[i];
            p[i] = v + h;
            const double lp = loss(m, p, n, x, g, out, cache);
            p[i] = v - h;
            const double lm = loss(m, p, n, x, g, out, cache);
            p[i] = v;
            const double fd = (lp - lm) / (2.0 * h);
            num += (fd - dp[i]) * (fd - dp[i]);
            den += fd * fd;
        }
        const double ep = sqrt(num) / sqrt(den);
        num = den = 0;
        for (size_t i = 0; i < (size_t)n * D; i++) {
            const float v = x[i];
            x[i] = v + h;
            const double lp = loss(m, p, n, x, g, out, cache);
            x[i] = v - h;
            const double lm = loss(m, p, n, x, g, out, cache);
            x[i] = v;
            const double fd = (lp - lm) / (2.0 * h);
            num += (fd - dx[i]) * (fd - dx[i]);
            den += fd * fd;
        }
        const double ex = sqrt(num) / sqrt(den);
        printf("made fd %zu: params %.2e inputs %.2e\n", ci, ep, ex);
        assert_true(ep < 2e-3);
        assert_true(ex < 2e-3);
        free(p), free(x), free(g), free(out), free(cache), free(scr), free(dp), free(dx), free(mask);
        rf_made_free(m);
    }
}

/* Output block i depends on x[0..i-1] only (bit for bit), and repeats give the same bits. */
static void test_autoregressive_and_repeat(void **state) {
    (void)state;
    for (size_t ci = 0; ci < N_CFGS; ci++) {
        const rf_made_cfg *c = &CFGS[ci];
        rf_made *m = rf_made_create(c, NULL);
        rf_rng r;
        rf_rng_seed(&r, 2300 + ci);
        const int n = 5, D = c->D, P = c->P, O = D * P;
        float *p = made_params(m, &r), *x = falloc((size_t)n * D), *x2 = falloc((size_t)n * D);
        fill(&r, x, (size_t)n * D, 1.0f);
        float *o = falloc((size_t)n * O), *o2 = falloc((size_t)n * O);
        float *cache = falloc(rf_made_cache_floats(m, n));
        rf_made_forward_infer(m, p, n, x, o, cache);
        rf_made_forward_infer(m, p, n, x, o2, cache);
        assert_memory_equal(o, o2, sizeof(float) * (size_t)n * O);
        for (int j = 0; j < D; j++) {
            memcpy(x2, x, sizeof(float) * (size_t)n * D);
            for (int i = 0; i < n; i++) x2[(size_t)i * D + j] += 1.5f;
            rf_made_forward_infer(m, p, n, x2, o2, cache);
            for (int i = 0; i < n; i++) {
                assert_memory_equal(o + (size_t)i * O, o2 + (size_t)i * O,
                                    sizeof(float) * (size_t)(j + 1) * P);
            }
        }
        free(p), free(x), free(x2), free(o), free(o2), free(cache);
        rf_made_free(m);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_dense),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_autoregressive_and_repeat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
