/* Training mechanics: optimiser and schedule against hand computations, exact resume after a
 * stop, non-finite steps never reaching the model, memory use of memory-saving backprop. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void test_adam_and_schedule(void **s) {
    (void)s;
    rf_adam a;
    assert_int_equal(rf_adam_init(&a, 2, NULL), RF_OK);
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -1.0f};
    rf_adam_step(&a, p, g, 0.1f, 0.0f);
    /* first Adam step moves each parameter by lr * sign(g) (bias-corrected m/sqrt(v) = +-1) */
    assert_true(fabsf(p[0] - 0.9f) < 1e-6f && fabsf(p[1] + 1.9f) < 1e-6f);
    rf_adam_step(&a, p, g, 0.1f, 0.5f); /* decoupled weight decay adds lr * wd * p */
    assert_true(fabsf(p[0] - (0.9f - 0.1f * (1.0f + 0.5f * 0.9f))) < 1e-5f);
    rf_adam_free(&a);
    float gg[3] = {3, 4, 0};
    assert_true(fabs(rf_clip_grad_norm(gg, 3, 1.0) - 5.0) < 1e-9);
    assert_true(fabsf(gg[0] - 0.6f) < 1e-6f && fabsf(gg[1] - 0.8f) < 1e-6f);
    assert_true(fabs(rf_lr_schedule(1.0, 0, 100, 10, 1, 0.0) - 0.1) < 1e-12);
    assert_true(fabs(rf_lr_schedule(1.0, 9, 100, 10, 1, 0.0) - 1.0) < 1e-12);
    assert_true(fabs(rf_lr_schedule(1.0, 55, 100, 10, 1, 0.0) - 0.5) < 1e-12); /* cosine midpoint */
    assert_true(fabs(rf_lr_schedule(1.0, 100, 100, 10, 1, 0.01) - 0.01) < 1e-12);
}

static rf_matrix gaussian_data(int n, uint64_t seed) {
    rf_matrix m;
    rf_matrix_alloc(&m, n, 3, NULL);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        double a = rf_rng_normal(&r), b = rf_rng_normal(&r), c = rf_rng_normal(&r);
        m.x[i * 3] = (float)a;
        m.x[i * 3 + 1] = (float)(0.7 * a + 0.3 * b);
        m.x[i * 3 + 2] = (float)(a * b + 0.2 * c);
    }
    return m;
}

static rf_flow *fresh(uint64_t seed) {
    rf_flow_spec s;
    rf_flow_spec_default(&s, RF_FLOW_NSF, 3);
    s.blocks = 2;
    s.hidden = 16;
    rf_rng r;
    rf_rng_seed(&r, seed);
    return rf_flow_create(&s, &r, NULL);
}

/* Stopping after k steps and resuming gives exactly the uninterrupted result. */
static void test_exact_resume(void **s) {
    (void)s;
    rf_matrix tr = gaussian_data(1000, 1), va = gaussian_data(300, 2);
    char p1[256], p2[256], ck[300];
    rf_test_tmp(p1, sizeof p1, "straight.rf");
    rf_test_tmp(p2, sizeof p2, "resumed.rf");
    snprintf(ck, sizeof ck, "%s.ckpt", p2);
    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 4;
    c.batch = 64;
    c.progress = 0;
    c.threads = 1;
    c.patience = 0;
    rf_train_result r1, r2;
    rf_err e;
    rf_flow *a = fresh(3), *b = fresh(3);
    c.out_path = p1;
    assert_int_equal(rf_train(a, &tr, NULL, &va, NULL, &c, &r1, &e), RF_OK);
    c.out_path = p2;
    c.max_steps = 23; /* stops mid-epoch 2 (16 steps per epoch) */
    assert_int_equal(rf_train(b, &tr, NULL, &va, NULL, &c, &r2, &e), RF_EINTERRUPTED);
    assert_true(r2.interrupted);
    struct stat st;
    assert_int_equal(stat(ck, &st), 0);
    rf_train_result_free(&r2);
    rf_flow_free(b);
    /* without an output path a stop cannot checkpoint: it is reported as an interruption */
    b = fresh(3);
    c.out_path = NULL;
    assert_int_equal(rf_train(b, &tr, NULL, &va, NULL, &c, &r2, &e), RF_EINTERRUPTED);
    assert_non_null(strstr(e.msg, "no checkpoint"));
    rf_train_result_free(&r2);
    rf_flow_free(b);
    c.out_path = p2;
    /* a run with another seed has other LU pivots: resuming into it must be refused */
    b = fresh(777);
    c.max_steps = 0;
    c.resume = 1;
    assert_int_equal(rf_train(b, &tr, NULL, &va, NULL, &c, &r2, &e), RF_EFORMAT);
    printf("mismatched resume: %s\n", e.msg);
    rf_train_result_free(&r2);
    rf_flow_free(b);
    /* same architecture, scrambled parameters: everything must come from the checkpoint */
    b = fresh(3);
    for (size_t i = 0; i < b->n_params; i++) b->params[i] = 1e3f;
    assert_int_equal(rf_train(b, &tr, NULL, &va, NULL, &c, &r2, &e), RF_OK);
    printf("straight: best val %.6f @%d; resumed: best val %.6f @%d\n", r1.best_val_nll, r1.best_epoch, r2.best_val_nll,
           r2.best_epoch);
    assert_memory_equal(a->params, b->params, sizeof(float) * a->n_params);
    assert_true(r1.best_val_nll == r2.best_val_nll);
    assert_int_not_equal(stat(ck, &st), 0); /* the checkpoint is removed after a complete run */
    rf_flow *la = rf_flow_load(p1, NULL), *lb = rf_flow_load(p2, NULL);
    assert_non_null(la);
    assert_non_null(lb);
    assert_memory_equal(la->params, lb->params, sizeof(float) * la->n_params);
    rf_flow_free(la);
    rf_flow_free(lb);
    rf_train_result_free(&r1);
    rf_train_result_free(&r2);
    rf_flow_free(a);
    rf_flow_free(b);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
    remove(p1);
    remove(p2);
}

/* A data row that overflows the loss makes every step non-finite: the steps are skipped, the run
 * stops with a clear error, and no model with NaN parameters is written. */
/* A stop inside the first epoch, before any validation (no best value yet: +inf, which JSON
 * cannot hold), still checkpoints and resumes to the uninterrupted run's model. */
static void test_resume_first_epoch(void **s) {
    (void)s;
    rf_matrix tr = gaussian_data(1000, 1), va = gaussian_data(300, 2);
    char p1[256], p2[256];
    rf_test_tmp(p1, sizeof p1, "straight1.rf");
    rf_test_tmp(p2, sizeof p2, "resumed1.rf");
    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 2;
    c.batch = 64;
    c.progress = 0;
    c.threads = 1;
    c.patience = 0;
    rf_train_result r1, r2;
    rf_err e = {0};
    rf_flow *a = fresh(3), *b = fresh(3);
    c.out_path = p1;
    assert_int_equal(rf_train(a, &tr, NULL, &va, NULL, &c, &r1, &e), RF_OK);
    c.out_path = p2;
    c.max_steps = 5; /* epoch 1 of 16 steps */
    assert_int_equal(rf_train(b, &tr, NULL, &va, NULL, &c, &r2, &e), RF_EINTERRUPTED);
    rf_train_result_free(&r2);
    rf_flow_free(b);
    b = fresh(3);
    c.max_steps = 0;
    c.resume = 1;
    const int rc = rf_train(b, &tr, NULL, &va, NULL, &c, &r2, &e);
    if (rc) printf("resume after a first-epoch stop: %s\n", e.msg);
    assert_int_equal(rc, RF_OK);
    assert_memory_equal(a->params, b->params, sizeof(float) * a->n_params);
    assert_true(r1.best_val_nll == r2.best_val_nll);
    rf_train_result_free(&r1);
    rf_train_result_free(&r2);
    rf_flow_free(a);
    rf_flow_free(b);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
    remove(p1);
    remove(p2);
}

static void test_nonfinite_steps_skipped(void **s) {
    (void)s;
    rf_matrix tr = gaussian_data(64, 5), va = gaussian_data(64, 6);
    tr.x[7] = 3e38f;
    char p[256];
    rf_test_tmp(p, sizeof p, "diverge.rf");
    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 10;
    c.batch = 64;
    c.progress = 0;
    c.standardize = 0;
    c.init_batch = 0;
    c.max_bad_steps = 5;
    c.out_path = p;
    rf_flow *f = fresh(1);
    float *before = rf_floats(f->n_params, NULL);
    memcpy(before, f->params, sizeof(float) * f->n_params);
    rf_train_result r;
    rf_err e;
    int rc = rf_train(f, &tr, NULL, &va, NULL, &c, &r, &e);
    printf("non-finite: rc=%d skipped=%ld: %s\n", rc, r.skipped_steps, e.msg);
    assert_int_equal(rc, RF_ENONFINITE);
    assert_int_equal(r.skipped_steps, 5);
    assert_non_null(strstr(e.msg, "non-finite"));
    assert_true(rf_all_finite(f->params, f->n_params));
    assert_memory_equal(before, f->params, sizeof(float) * f->n_params);
    /* the model saved after epoch 1 is the unchanged (finite) one: NaN never reached it */
    rf_flow *saved = rf_flow_load(p, NULL);
    assert_non_null(saved);
    assert_memory_equal(before, saved->params, sizeof(float) * f->n_params);
    rf_flow_free(saved);
    remove(p);
    rf_free(before);
    rf_train_result_free(&r);
    rf_flow_free(f);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
    char ck[300];
    snprintf(ck, sizeof ck, "%s.ckpt", p);
    remove(ck);
}

/* Memory-saving workspaces do not grow with depth (activations), unlike stored activations. */
static void test_memory_saving_workspace(void **s) {
    (void)s;
    size_t bytes[2][2];
    const int depths[2] = {4, 32};
    for (int d = 0; d < 2; d++) {
        rf_flow_spec sp;
        rf_flow_spec_default(&sp, RF_FLOW_REALNVP, 16);
        sp.blocks = depths[d];
        rf_rng r;
        rf_rng_seed(&r, 1);
        rf_flow *f = rf_flow_create(&sp, &r, NULL);
        for (int m = 0; m < 2; m++) {
            rf_flow_ws *w = rf_flow_ws_create(f, 512, m, NULL);
            bytes[d][m] = rf_flow_ws_bytes(w);
            rf_flow_ws_free(w);
        }
        rf_flow_free(f);
    }
    printf("workspace bytes: stored %zu -> %zu, memory-saving %zu -> %zu (4 -> 32 blocks)\n", bytes[0][0], bytes[1][0],
           bytes[0][1], bytes[1][1]);
    assert_true(bytes[1][1] == bytes[0][1]);
    assert_true(bytes[1][0] > 6 * bytes[0][0]);
}

/* Labelled data-dependent initialisation: the class-conditional base starts at each class's
 * latent moments, so a fresh model already classifies data whose classes differ in scale (the
 * untrained random-mean base cannot), and the moments match a direct computation. */
static void test_class_base_data_init(void **state) {
    (void)state;
    const int n = 600, D = 4;
    rf_flow_spec s;
    rf_flow_spec_default(&s, RF_FLOW_GLOW, D);
    s.blocks = 2;
    s.base = RF_BASE_CLASS;
    s.n_classes = 2;
    rf_rng r;
    rf_rng_seed(&r, 9);
    rf_flow *f = rf_flow_create(&s, &r, NULL);
    assert_non_null(f);
    float *x = rf_floats((size_t)n * D, NULL);
    int *y = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        y[i] = i % 2;
        for (int j = 0; j < D; j++) x[(size_t)i * D + j] = (float)((y[i] ? 3.0 : 0.5) * rf_rng_normal(&r));
    }
    rf_err e = {0};
    assert_int_equal(rf_flow_data_init_labels(f, n, x, y, &e), RF_OK);
    /* fresh couplings are the identity: latents are the ActNorm/LU images of x; check the base
     * against the moments of the encoded rows of each class */
    rf_flow_ws *w = rf_flow_ws_create(f, n, 0, NULL);
    float *z = rf_floats((size_t)n * D, NULL), *ld = rf_floats((size_t)n, NULL);
    rf_flow_forward(f, w, n, x, z, ld);
    float mu[4], ls[4];
    for (int c = 0; c < 2; c++) {
        rf_base_class_moments(&f->base, f->params + f->base.offset, c, mu, ls);
        for (int j = 0; j < D; j++) {
            double s1 = 0, s2 = 0;
            int m = 0;
            for (int i = 0; i < n; i++)
                if (y[i] == c) {
                    s1 += z[(size_t)i * D + j];
                    s2 += (double)z[(size_t)i * D + j] * z[(size_t)i * D + j];
                    m++;
                }
            const double mean = s1 / m, var = s2 / m - mean * mean;
            /* shrinkage towards the pooled moments weighs the class 300 / 310 */
            assert_true(fabs(mu[j] - mean) < 0.05 + 0.04 * fabs(mean));
            assert_true(fabs(2 * ls[j] - log(var)) < 0.1);
        }
    }
    int *pred = malloc(sizeof(int) * n);
    rf_matrix m = {n, D, x};
    assert_int_equal(rf_flow_predict(f, &m, NULL, pred, NULL, &e), RF_OK);
    int ok = 0;
    for (int i = 0; i < n; i++) ok += pred[i] == y[i];
    printf("[class base data init] accuracy %.3f before training\n", (double)ok / n);
    assert_true(ok > 0.85 * n);
    free(pred);
    rf_free(z);
    rf_free(ld);
    rf_flow_ws_free(w);
    rf_free(x);
    free(y);
    rf_flow_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_and_schedule),
        cmocka_unit_test(test_exact_resume),
        cmocka_unit_test(test_resume_first_epoch),
        cmocka_unit_test(test_nonfinite_steps_skipped),
        cmocka_unit_test(test_memory_saving_workspace),
        cmocka_unit_test(test_class_base_data_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
