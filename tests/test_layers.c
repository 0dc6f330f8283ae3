/* Every invertible layer: round trip, inverse log-det, brute-force Jacobian log-det (D <= 8),
 * and backward against finite differences for inputs and parameters. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static rf_mlp_cfg cond(rf_act act, int residual, int n_hidden) {
    rf_mlp_cfg c = {.hidden = 16, .n_hidden = n_hidden, .act = act, .residual = residual};
    return c;
}

static void check(const char *name, rf_layer *l, float scale, float perturb) {
    assert_non_null(l);
    rf_layer_check c;
    rf_check_layer(l, 1234, scale, perturb, &c);
    rf_assert_layer_ok(name, &c);
    if (l->n_params > 0) assert_true(c.grad_p_norm > 1e-3); /* the check saw real gradients */
    rf_layer_free(l);
}

static void test_actnorm(void **s) {
    (void)s;
    check("actnorm D=5", rf_actnorm_create(5, NULL), 2.0f, 0.3f);
}

static void test_permutations(void **s) {
    (void)s;
    int perm[6] = {3, 0, 5, 1, 4, 2};
    check("permute D=6", rf_permute_create(6, perm, NULL), 1.0f, 0.0f);
    check("reverse D=7", rf_reverse_create(7, NULL), 1.0f, 0.0f);
    int bad[3] = {0, 0, 2};
    rf_err e;
    assert_null(rf_permute_create(3, bad, &e));
    assert_int_equal(e.code, RF_EARG);
}

static void test_lu_linear(void **s) {
    (void)s;
    rf_rng rng;
    rf_rng_seed(&rng, 7);
    for (int D = 1; D <= 8; D += 3) check("lu_linear", rf_lu_linear_create(D, &rng, NULL), 1.0f, 0.2f);
}

static void test_lu_init_is_rotation(void **s) {
    (void)s;
    rf_rng rng;
    rf_rng_seed(&rng, 11);
    rf_layer *l = rf_lu_linear_create(6, &rng, NULL);
    float *p = rf_floats(l->n_params, NULL), *x = rf_floats(6 * 6, NULL), *y = rf_floats(36, NULL);
    float ld[6] = {0};
    float *scr = rf_floats(l->ops->scratch_floats(l, 6), NULL);
    l->ops->init_params(l, p, &rng);
    for (int i = 0; i < 6; i++) x[i * 6 + i] = 1.0f;
    l->ops->forward(l, p, 6, x, y, ld, NULL, scr);
    /* rows of y are W^T e_i: orthonormal columns => y y^T = I, log|det| = 0 */
    for (int i = 0; i < 6; i++) {
        assert_true(fabsf(ld[i]) < 1e-5f);
        for (int j = 0; j < 6; j++) {
            double d = 0;
            for (int k = 0; k < 6; k++) d += (double)y[i * 6 + k] * y[j * 6 + k];
            assert_true(fabs(d - (i == j)) < 1e-5);
        }
    }
    rf_free(p);
    rf_free(x);
    rf_free(y);
    rf_free(scr);
    rf_layer_free(l);
}

static void test_affine_coupling(void **s) {
    (void)s;
    const rf_act acts[3] = {RF_ACT_TANH, RF_ACT_GELU, RF_ACT_RELU};
    for (int a = 0; a < 3; a++)
        for (int parity = 0; parity < 2; parity++)
            for (int res = 0; res < 2; res++) {
                rf_coupling_cfg c = {.D = 5, .parity = parity, .cond = cond(acts[a], res, 2), .clamp = 2.0f};
                char name[64];
                snprintf(name, sizeof name, "affine %s p%d r%d", rf_act_name(acts[a]), parity, res);
                check(name, rf_affine_coupling_create(&c, NULL), 1.0f, 0.3f);
            }
    rf_coupling_cfg c = {.D = 4, .parity = 0, .cond = cond(RF_ACT_TANH, 0, 1), .clamp = 0.0f};
    check("affine unclamped", rf_affine_coupling_create(&c, NULL), 1.0f, 0.3f);
}

static void test_spline_coupling(void **s) {
    (void)s;
    const int bins[3] = {2, 5, 8};
    for (int b = 0; b < 3; b++)
        for (int parity = 0; parity < 2; parity++) {
            rf_coupling_cfg c = {.D = 6, .parity = parity, .cond = cond(RF_ACT_GELU, b == 1, 2), .bins = bins[b], .bound = 3.0f};
            char name[64];
            snprintf(name, sizeof name, "spline K=%d p%d", bins[b], parity);
            /* inputs partly outside [-B, B] exercise the linear tails. The perturbation (0.1) keeps theta
             * within a few units: much larger theta gives slopes near 1e-7 that no float32 spline
             * can invert (the derivative itself is checked either way in test_rqs). */
            check(name, rf_spline_coupling_create(&c, NULL), 1.5f, 0.1f);
        }
}

static void test_maf(void **s) {
    (void)s;
    for (int D = 1; D <= 7; D += 3) {
        rf_ar_cfg c = {.D = D, .made = {.hidden = 16, .n_hidden = 2, .act = RF_ACT_TANH}, .clamp = 2.0f};
        check("maf affine", rf_maf_affine_create(&c, NULL), 1.0f, 0.3f);
        rf_ar_cfg c2 = {.D = D, .made = {.hidden = 16, .n_hidden = 2, .act = RF_ACT_GELU, .residual = 1}, .bins = 6, .bound = 3.0f};
        check("maf spline", rf_maf_spline_create(&c2, NULL), 1.5f, 0.1f);
    }
}

/* Fresh layers (zero-initialised conditioners) are exactly the identity. */
static void test_fresh_identity(void **s) {
    (void)s;
    rf_rng rng;
    rf_rng_seed(&rng, 3);
    rf_coupling_cfg cc = {.D = 6, .parity = 1, .cond = cond(RF_ACT_RELU, 0, 2), .clamp = 3.0f, .bins = 8, .bound = 4.0f};
    rf_ar_cfg ac = {.D = 6, .made = {.hidden = 12, .n_hidden = 2, .act = RF_ACT_RELU}, .clamp = 3.0f, .bins = 8, .bound = 4.0f};
    rf_layer *ls[4] = {rf_affine_coupling_create(&cc, NULL), rf_spline_coupling_create(&cc, NULL),
                       rf_maf_affine_create(&ac, NULL), rf_maf_spline_create(&ac, NULL)};
    for (int k = 0; k < 4; k++) {
        rf_layer *l = ls[k];
        float *p = rf_floats(l->n_params, NULL), *x = rf_floats(60, NULL), *y = rf_floats(60, NULL);
        float *c = rf_floats(l->ops->cache_floats(l, 10), NULL), *sc = rf_floats(l->ops->scratch_floats(l, 10), NULL);
        float ld[10] = {0};
        l->ops->init_params(l, p, &rng);
        for (int i = 0; i < 60; i++) x[i] = (float)rf_rng_normal(&rng) * 2;
        l->ops->forward(l, p, 10, x, y, ld, c, sc);
        double err = 0, lde = 0;
        for (int i = 0; i < 60; i++) err = fmax(err, fabs(x[i] - y[i]));
        for (int i = 0; i < 10; i++) lde = fmax(lde, fabs(ld[i]));
        printf("[fresh %-14s] max |y - x| %.2e, max |logdet| %.2e\n", l->ops->kind, err, lde);
        assert_true(err < 1e-5 && lde < 1e-5);
        rf_free(p);
        rf_free(x);
        rf_free(y);
        rf_free(c);
        rf_free(sc);
        rf_layer_free(l);
    }
}

/* Round trip on a larger dimension (no brute force) for every layer. */
static void test_roundtrip_large(void **s) {
    (void)s;
    rf_rng rng;
    rf_rng_seed(&rng, 5);
    const int D = 33;
    rf_coupling_cfg cc = {.D = D, .parity = 0, .cond = cond(RF_ACT_GELU, 1, 2), .clamp = 3.0f, .bins = 8, .bound = 4.0f};
    rf_ar_cfg ac = {.D = D, .made = {.hidden = 40, .n_hidden = 2, .act = RF_ACT_GELU}, .clamp = 3.0f, .bins = 8, .bound = 4.0f};
    rf_layer *ls[5] = {rf_affine_coupling_create(&cc, NULL), rf_spline_coupling_create(&cc, NULL),
                       rf_maf_affine_create(&ac, NULL), rf_maf_spline_create(&ac, NULL),
                       rf_lu_linear_create(D, &rng, NULL)};
    for (int k = 0; k < 5; k++) {
        rf_layer_check c;
        rf_check_layer(ls[k], 99 + k, 1.5f, 0.1f, &c);
        rf_check_layer_print(ls[k]->ops->kind, &c);
        assert_true(c.roundtrip_rel < 1e-5);
        assert_true(c.logdet_inv_err < 1e-3);
        assert_true(c.grad_x_rel < 2e-2);
        assert_true(c.grad_p_rel < 2e-2);
        rf_layer_free(ls[k]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_actnorm),         cmocka_unit_test(test_permutations),
        cmocka_unit_test(test_lu_linear),       cmocka_unit_test(test_lu_init_is_rotation),
        cmocka_unit_test(test_affine_coupling), cmocka_unit_test(test_spline_coupling),
        cmocka_unit_test(test_maf),             cmocka_unit_test(test_fresh_identity),
        cmocka_unit_test(test_roundtrip_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
