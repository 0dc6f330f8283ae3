/* Determinism: for a fixed seed and thread count, training gives bit-identical model files, with
 * one thread and with two (where each batch is split into two shards of rows that run in
 * parallel and whose gradients are summed in a fixed order), for stored-activation and
 * memory-saving backprop, and across a stop / resume. Also: the sharded gradient is the
 * single-shard gradient up to round-off, the optimiser's clipping norm does not depend on the
 * thread count, and a workspace really uses the threads it was given. Also: the streamed
 * checkpoint format rejects damaged files. */
#include "testutil.h"

#include "../src/flow/xform.h" /* the spline's batched and cached training paths (private) */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A non-Gaussian 5-D data set (a curved, correlated cloud). */
static rf_matrix make_data(int n, uint64_t seed) {
    rf_matrix m;
    assert_int_equal(rf_matrix_alloc(&m, n, 5, NULL), RF_OK);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        const double a = rf_rng_normal(&r), b = rf_rng_normal(&r), c = rf_rng_normal(&r);
        float *x = m.x + (size_t)i * 5;
        x[0] = (float)a;
        x[1] = (float)(0.6 * a + 0.4 * b);
        x[2] = (float)(a * a - 1 + 0.3 * c);
        x[3] = (float)(b * c);
        x[4] = (float)(2 + 0.5 * rf_rng_normal(&r));
    }
    return m;
}

static rf_flow *make_flow(rf_flow_type t, uint64_t seed) {
    rf_flow_spec s;
    rf_flow_spec_default(&s, t, 5);
    s.blocks = 3;
    s.hidden = 24;
    rf_rng r;
    rf_rng_seed(&r, seed);
    rf_err e;
    rf_flow *f = rf_flow_create(&s, &r, &e);
    if (!f) fail_msg("flow: %s", e.msg);
    return f;
}

typedef struct run_out {
    unsigned char *file;
    size_t len;
    double best_val;
} run_out;

/* Trains a fresh flow and returns the bytes of the model file it wrote. */
static run_out train_once(rf_flow_type t, int threads, int memory_saving, const rf_matrix *tr,
                          const rf_matrix *va, const char *tag) {
    char path[256];
    rf_test_tmp(path, sizeof path, tag);
    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 3;
    c.batch = 128;
    c.progress = 0;
    c.patience = 0;
    c.threads = threads;
    c.memory_saving = memory_saving;
    c.seed = 11;
    c.out_path = path;
    rf_flow *f = make_flow(t, 11);
    rf_train_result res;
    rf_err e;
    if (rf_train(f, tr, NULL, va, NULL, &c, &res, &e) != RF_OK) fail_msg("train: %s", e.msg);
    run_out o = {NULL, 0, res.best_val_nll};
    assert_int_equal(rf_read_file(path, &o.file, &o.len, &e), RF_OK);
    assert_true(res.steps == 3 * ((tr->n + 127) / 128));
    assert_true(res.train_seconds > 0 && res.train_seconds <= res.seconds);
    assert_true(res.samples_per_sec >= res.samples_per_sec_wall);
    rf_train_result_free(&res);
    rf_flow_free(f);
    remove(path);
    return o;
}

static void test_same_seed_same_threads_identical_files(void **s) {
    (void)s;
    rf_matrix tr = make_data(1500, 1), va = make_data(300, 2);
    const rf_flow_type types[3] = {RF_FLOW_NSF, RF_FLOW_MAF, RF_FLOW_GLOW};
    for (int k = 0; k < 3; k++)
        for (int threads = 1; threads <= 2; threads++)
            for (int ms = 0; ms < 2; ms++) {
                if (ms && k != 0) continue; /* memory-saving: one flow type is enough */
                run_out a = train_once(types[k], threads, ms, &tr, &va, "det-a.rf");
                run_out b = train_once(types[k], threads, ms, &tr, &va, "det-b.rf");
                printf("[determinism] %-7s threads %d memory-saving %d: model files %zu bytes, %s (best val %.9f)\n",
                       rf_flow_type_name(types[k]), threads, ms, a.len,
                       a.len == b.len && memcmp(a.file, b.file, a.len) == 0 ? "bit-identical" : "DIFFERENT",
                       a.best_val);
                assert_int_equal(a.len, b.len);
                assert_memory_equal(a.file, b.file, a.len);
                assert_true(a.best_val == b.best_val);
                free(a.file);
                free(b.file);
            }
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

/* Two threads: stopping after k steps and resuming gives the uninterrupted run's file. */
static void test_resume_two_threads(void **s) {
    (void)s;
    rf_matrix tr = make_data(1000, 3), va = make_data(200, 4);
    char p1[256], p2[256];
    rf_test_tmp(p1, sizeof p1, "det-straight.rf");
    rf_test_tmp(p2, sizeof p2, "det-resumed.rf");
    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 3;
    c.batch = 96;
    c.progress = 0;
    c.patience = 0;
    c.threads = 2;
    rf_train_result r;
    rf_err e;
    rf_flow *a = make_flow(RF_FLOW_NSF_AR, 5);
    c.out_path = p1;
    assert_int_equal(rf_train(a, &tr, NULL, &va, NULL, &c, &r, &e), RF_OK);
    rf_train_result_free(&r);
    rf_flow *b = make_flow(RF_FLOW_NSF_AR, 5);
    c.out_path = p2;
    c.max_steps = 17; /* mid epoch 2 (11 steps per epoch) */
    assert_int_equal(rf_train(b, &tr, NULL, &va, NULL, &c, &r, &e), RF_EINTERRUPTED);
    rf_train_result_free(&r);
    rf_flow_free(b);
    b = make_flow(RF_FLOW_NSF_AR, 5);
    c.max_steps = 0;
    c.resume = 1;
    assert_int_equal(rf_train(b, &tr, NULL, &va, NULL, &c, &r, &e), RF_OK);
    rf_train_result_free(&r);
    unsigned char *f1, *f2;
    size_t l1, l2;
    assert_int_equal(rf_read_file(p1, &f1, &l1, NULL), RF_OK);
    assert_int_equal(rf_read_file(p2, &f2, &l2, NULL), RF_OK);
    assert_int_equal(l1, l2);
    assert_memory_equal(f1, f2, l1);
    assert_memory_equal(a->params, b->params, sizeof(float) * a->n_params);
    printf("[determinism] nsf-ar, 2 threads: stop after 17 steps + resume == uninterrupted (%zu bytes)\n", l1);
    free(f1);
    free(f2);
    rf_flow_free(a);
    rf_flow_free(b);
    remove(p1);
    remove(p2);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

/* Sharded loss and gradient: repeatable bit for bit, equal to one shard up to round-off; an
 * inference workspace still computes them (on one shard). The optimiser's norm and update do
 * not depend on the thread count. */
static void test_sharded_gradient(void **s) {
    (void)s;
    rf_set_threads(2);
    rf_matrix x = make_data(200, 6);
    const rf_flow_type types[2] = {RF_FLOW_NSF, RF_FLOW_MAF};
    for (int k = 0; k < 2; k++) {
        rf_flow *f = make_flow(types[k], 8);
        rf_rng r;
        rf_rng_seed(&r, 3);
        for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.1f * (float)rf_rng_normal(&r);
        for (int l = 0; l < f->n_layers; l++)
            if (f->layers[l]->ops->project) f->layers[l]->ops->project(f->layers[l], f->params + f->layers[l]->offset);
        rf_flow_ws_opts o1 = {.max_batch = 200, .threads = 1}, o2 = {.max_batch = 200, .threads = 2},
                        oi = {.max_batch = 200, .threads = 2, .inference = 1};
        rf_flow_ws *w1 = rf_flow_ws_create_opts(f, &o1, NULL), *w2 = rf_flow_ws_create_opts(f, &o2, NULL),
                   *wi = rf_flow_ws_create_opts(f, &oi, NULL);
        assert_non_null(w1);
        assert_non_null(w2);
        assert_non_null(wi);
        assert_int_equal(rf_flow_ws_threads(w1), 1);
        assert_int_equal(rf_flow_ws_threads(w2), 2);
        assert_true(rf_flow_ws_grad_bytes(w2) == sizeof(float) * f->n_params);
        assert_true(rf_flow_ws_grad_bytes(wi) == 0);
        const size_t np = f->n_params;
        float *g1 = rf_floats(np, NULL), *g2 = rf_floats(np, NULL), *g3 = rf_floats(np, NULL);
        memset(f->grads, 0, sizeof(float) * np);
        const double L1 = rf_flow_loss_grad(f, w1, x.n, x.x, NULL, 0);
        memcpy(g1, f->grads, sizeof(float) * np);
        memset(f->grads, 0, sizeof(float) * np);
        const double L2 = rf_flow_loss_grad(f, w2, x.n, x.x, NULL, 0);
        memcpy(g2, f->grads, sizeof(float) * np);
        memset(f->grads, 0, sizeof(float) * np);
        const double L3 = rf_flow_loss_grad(f, w2, x.n, x.x, NULL, 0);
        memcpy(g3, f->grads, sizeof(float) * np);
        assert_true(L2 == L3);
        assert_memory_equal(g2, g3, sizeof(float) * np);
        memset(f->grads, 0, sizeof(float) * np);
        const double Li = rf_flow_loss_grad(f, wi, x.n, x.x, NULL, 0);
        double num = 0, den = 0, numi = 0;
        for (size_t i = 0; i < np; i++) {
            num += (double)(g1[i] - g2[i]) * (g1[i] - g2[i]);
            numi += (double)(g1[i] - f->grads[i]) * (g1[i] - f->grads[i]);
            den += (double)g1[i] * g1[i];
        }
        printf("[determinism] %s: 1 vs 2 shards: loss %.9f vs %.9f, gradient rel diff %.2e; inference ws %.2e\n",
               rf_flow_type_name(types[k]), L1, L2, sqrt(num / den), sqrt(numi / den));
        assert_true(fabs(L1 - L2) < 1e-5 * (1 + fabs(L1)));
        assert_true(sqrt(num / den) < 1e-5);
        /* one shard, but in chunks of the rows its buffers hold (100): equal up to round-off */
        assert_true(fabs(Li - L1) < 1e-5 * (1 + fabs(L1)) && sqrt(numi / den) < 1e-5);
        /* gradient norm and the clipped AdamW step: identical with and without threads */
        assert_true(rf_grad_norm(g2, np, w2) == rf_grad_norm(g2, np, NULL));
        rf_adam a1, a2;
        assert_int_equal(rf_adam_init(&a1, np, NULL), RF_OK);
        assert_int_equal(rf_adam_init(&a2, np, NULL), RF_OK);
        float *p1 = rf_floats(np, NULL), *p2 = rf_floats(np, NULL);
        memcpy(p1, f->params, sizeof(float) * np);
        memcpy(p2, f->params, sizeof(float) * np);
        for (int step = 0; step < 3; step++) {
            const float k1 = rf_clip_scale(rf_grad_norm(g2, np, NULL), 0.5);
            assert_true(k1 < 1.0f);
            rf_adam_step_scaled(&a1, p1, g2, k1, 1e-2f, 0.01f, NULL);
            rf_adam_step_scaled(&a2, p2, g2, k1, 1e-2f, 0.01f, w2);
        }
        assert_memory_equal(p1, p2, sizeof(float) * np);
        /* scaling inside the update == clipping in place first */
        float *g4 = rf_floats(np, NULL), *p3 = rf_floats(np, NULL);
        memcpy(g4, g2, sizeof(float) * np);
        memcpy(p3, f->params, sizeof(float) * np);
        rf_adam a3;
        assert_int_equal(rf_adam_init(&a3, np, NULL), RF_OK);
        for (int step = 0; step < 3; step++) {
            memcpy(g4, g2, sizeof(float) * np);
            rf_clip_grad_norm(g4, np, 0.5);
            rf_adam_step(&a3, p3, g4, 1e-2f, 0.01f);
        }
        assert_memory_equal(p1, p3, sizeof(float) * np);
        rf_adam_free(&a1);
        rf_adam_free(&a2);
        rf_adam_free(&a3);
        rf_free(p1);
        rf_free(p2);
        rf_free(p3);
        rf_free(g4);
        rf_free(g1);
        rf_free(g2);
        rf_free(g3);
        rf_flow_ws_free(w1);
        rf_flow_ws_free(w2);
        rf_flow_ws_free(wi);
        rf_flow_free(f);
    }
    rf_matrix_free(&x);
}

/* The streamed checkpoint: a damaged or foreign file is refused with a message naming it, and
 * the model is not touched then. */
static void test_checkpoint_damage(void **s) {
    (void)s;
    rf_matrix tr = make_data(600, 9), va = make_data(100, 10);
    char path[256], ck[300];
    rf_test_tmp(path, sizeof path, "det-ck.rf");
    snprintf(ck, sizeof ck, "%s.ckpt", path);
    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 2;
    c.batch = 64;
    c.progress = 0;
    c.threads = 2;
    c.max_steps = 5;
    c.out_path = path;
    rf_train_result r;
    rf_err e;
    rf_flow *f = make_flow(RF_FLOW_GLOW, 4);
    assert_int_equal(rf_train(f, &tr, NULL, &va, NULL, &c, &r, &e), RF_EINTERRUPTED);
    rf_train_result_free(&r);
    unsigned char *good;
    size_t len;
    assert_int_equal(rf_read_file(ck, &good, &len, NULL), RF_OK);
    assert_true(len > 4 * 4 * f->n_params); /* params, two moments, best: streamed, all there */
    assert_memory_equal(good, "RFCKPT02", 8);
    const struct {
        const char *what, *expect;
        size_t at;
        int truncate;
    } cases[] = {{"flipped byte in the parameters", "checksum", len - 100, 0},
                 {"flipped byte in the header", "checksum", 20, 0},
                 {"truncated", "checksum", len / 2, 1},
                 {"older format", "older renflow", 7, 0},
                 {"not a checkpoint", "not a renflow checkpoint", 0, 0}};
    c.max_steps = 0;
    c.resume = 1;
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        unsigned char *bad = malloc(len);
        memcpy(bad, good, len);
        if (k == 3) bad[7] = '1';
        else if (!cases[k].truncate) bad[cases[k].at] ^= 0x40;
        assert_int_equal(rf_write_file_atomic(ck, bad, cases[k].truncate ? cases[k].at : len, NULL), RF_OK);
        free(bad);
        rf_flow *g = make_flow(RF_FLOW_GLOW, 4);
        float *before = rf_floats(g->n_params, NULL);
        memcpy(before, g->params, sizeof(float) * g->n_params);
        const int rc = rf_train(g, &tr, NULL, &va, NULL, &c, &r, &e);
        printf("[checkpoint] %-31s -> %s: %s\n", cases[k].what, rf_status_name(rc), e.msg);
        assert_int_equal(rc, RF_EFORMAT);
        assert_non_null(strstr(e.msg, cases[k].expect));
        assert_non_null(strstr(e.msg, ck));
        assert_memory_equal(before, g->params, sizeof(float) * g->n_params);
        rf_train_result_free(&r);
        rf_free(before);
        rf_flow_free(g);
    }
    free(good);
    remove(ck);
    remove(path);
    rf_flow_free(f);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

/* The transforms' fast paths give the same bits as the element-wise functions: the spline's
 * batched forward and inverse (rf_rqs_*_rows) and its backward from the forward's cache
 * (rf_rqs_backward_c), on random parameters (including extreme ones), inside and outside
 * [-B, B], for several K; the affine transform's vectorised blocks and cached backward. */
static void test_transform_paths_bit_identical(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 21);
    const int Ks[4] = {2, 5, 8, 17};
    long n_checked = 0;
    for (int ki = 0; ki < 4; ki++) {
        const int K = Ks[ki], P = rf_rqs_n_params(K), cd = rf_rqs_cache_doubles(K);
        const size_t m = 77; /* more than one internal chunk */
        const float B = 3.0f;
        float *th = rf_floats(m * P, NULL), *x = rf_floats(m, NULL), *y = rf_floats(m, NULL), *ld = rf_floats(m, NULL);
        float *x2 = rf_floats(m, NULL), *ld2 = rf_floats(m, NULL), *dth = rf_floats(P, NULL), *dth2 = rf_floats(P, NULL);
        double *c = malloc(sizeof(double) * m * cd);
        for (size_t i = 0; i < m * P; i++) th[i] = (float)((i % 7 == 3 ? 20.0 : 1.5) * rf_rng_normal(&r));
        for (size_t e = 0; e < m; e++) x[e] = (float)(1.3 * B * (2 * rf_rng_uniform(&r) - 1));
        rf_rqs_forward_rows(K, B, m, th, x, y, ld, c);
        rf_rqs_inverse_rows(K, B, m, th, y, x2, ld2);
        for (size_t e = 0; e < m; e++) {
            float ye, le, xe, lie;
            rf_rqs_forward(K, B, th + e * P, x[e], &ye, &le);
            rf_rqs_inverse(K, B, th + e * P, y[e], &xe, &lie);
            assert_memory_equal(&ye, &y[e], sizeof ye);
            assert_memory_equal(&le, &ld[e], sizeof le);
            assert_memory_equal(&xe, &x2[e], sizeof xe);
            assert_memory_equal(&lie, &ld2[e], sizeof lie);
            const float gy = (float)rf_rng_normal(&r), gl = (float)rf_rng_normal(&r);
            const float g1 = rf_rqs_backward(K, B, th + e * P, x[e], gy, gl, dth);
            const float g2 = rf_rqs_backward_c(K, B, x[e], gy, gl, dth2, c + e * cd);
            assert_memory_equal(&g1, &g2, sizeof g1);
            assert_memory_equal(dth, dth2, sizeof(float) * P);
            n_checked++;
        }
        rf_free(th);
        rf_free(x);
        rf_free(y);
        rf_free(ld);
        rf_free(x2);
        rf_free(ld2);
        rf_free(dth);
        rf_free(dth2);
        free(c);
    }
    printf("[determinism] spline: batched forward/inverse and cached backward bit-identical to the "
           "element-wise primitive at %ld points (K = 2, 5, 8, 17)\n", n_checked);
    /* the affine transform's vectorised blocks and cached backward, with and without a clamp */
    for (int ci = 0; ci < 2; ci++) {
        const rf_xform xf = {.kind = RF_XFORM_AFFINE, .clamp = ci ? 3.0f : 0.0f};
        const size_t m = 301;
        float *th = rf_floats(2 * m, NULL), *thk = rf_floats(2 * m, NULL), *x = rf_floats(m, NULL);
        float *y = rf_floats(m, NULL), *ld = rf_floats(m, NULL), *x2 = rf_floats(m, NULL), *ld2 = rf_floats(m, NULL);
        for (size_t i = 0; i < 2 * m; i++) th[i] = (float)(2.0 * rf_rng_normal(&r));
        for (size_t e = 0; e < m; e++) x[e] = (float)(3.0 * rf_rng_normal(&r));
        memcpy(thk, th, sizeof(float) * 2 * m);
        rf_xform_affine_block(&xf, m, thk, x, y, ld, 1);
        rf_xform_affine_inv_block(&xf, m, th, y, x2, ld2);
        for (size_t e = 0; e < m; e++) {
            float ye, le, xe, lie, dt1[2], dt2[2];
            rf_xform_forward(&xf, th + 2 * e, x[e], &ye, &le);
            rf_xform_inverse(&xf, th + 2 * e, y[e], &xe, &lie);
            assert_memory_equal(&ye, &y[e], sizeof ye);
            assert_memory_equal(&le, &ld[e], sizeof le);
            assert_memory_equal(&xe, &x2[e], sizeof xe);
            assert_memory_equal(&lie, &ld2[e], sizeof lie);
            const float g1 = rf_xform_backward(&xf, th + 2 * e, x[e], 0.7f, -0.3f, dt1);
            const float g2 = rf_xform_affine_backward_c(&xf, thk + 2 * e, x[e], 0.7f, -0.3f, dt2);
            assert_memory_equal(&g1, &g2, sizeof g1);
            assert_memory_equal(dt1, dt2, sizeof dt1);
        }
        /* theta = 0 is the identity */
        float z2[2] = {0.0f, 0.0f}, yi, li;
        rf_xform_forward(&xf, z2, 1.2345f, &yi, &li);
        assert_true(yi == 1.2345f && li == 0.0f);
        rf_free(th);
        rf_free(thk);
        rf_free(x);
        rf_free(y);
        rf_free(ld);
        rf_free(x2);
        rf_free(ld2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transform_paths_bit_identical),
        cmocka_unit_test(test_checkpoint_damage),
        cmocka_unit_test(test_same_seed_same_threads_identical_files),
        cmocka_unit_test(test_resume_two_threads),
        cmocka_unit_test(test_sharded_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
