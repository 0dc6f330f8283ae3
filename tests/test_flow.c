/* Whole flows: gradients of the training loss, memory-saving backprop, sampling/inversion,
 * class-conditional base, and training that recovers a correlated Gaussian. */
#include "testutil.h"

#include <cjson/cJSON.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rf_flow *make_flow(rf_flow_type t, int D, int blocks, rf_base_kind base, int C, uint64_t seed) {
    rf_flow_spec s;
    rf_flow_spec_default(&s, t, D);
    s.blocks = blocks;
    s.hidden = 12;
    s.act = RF_ACT_TANH;
    s.bound = 3.0f;
    s.bins = 5;
    s.base = base;
    s.n_classes = C;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_err e;
    rf_flow *f = rf_flow_create(&s, &rng, &e);
    if (!f) fail_msg("flow create: %s", e.msg);
    /* move away from the identity initialisation so every parameter matters */
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.2f * (float)rf_rng_normal(&rng);
    for (int k = 0; k < f->n_layers; k++)
        if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], f->params + f->layers[k]->offset);
    for (int j = 0; j < D; j++) {
        f->shift[j] = 0.1f * j;
        f->scale[j] = 1.0f + 0.1f * j;
    }
    return f;
}

static void random_x(float *x, int n, float s, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) x[i] = s * (float)rf_rng_normal(&r);
}

/* Mean loss computed independently of the backward path: -mean log p (+ CE). */
static double loss_eval(rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *y, float ce) {
    float lp[64], post[64 * 8];
    rf_flow_log_prob(f, w, n, x, y, lp);
    double L = 0;
    for (int i = 0; i < n; i++) L -= lp[i];
    if (ce > 0 && y) {
        rf_flow_class_log_posterior(f, w, n, x, NULL, post);
        for (int i = 0; i < n; i++) L -= ce * post[i * f->base.n_classes + y[i]];
    }
    return L / n;
}

static void grad_check_flow(rf_flow_type t, rf_base_kind base, int C, float ce, int memsave) {
    const int D = 4, n = 10;
    rf_flow *f = make_flow(t, D, 2, base, C, 42);
    rf_flow_ws *w = rf_flow_ws_create(f, n, memsave, NULL);
    float x[40];
    int y[10];
    random_x(x, n * D, 1.2f, 7);
    for (int i = 0; i < n; i++) y[i] = i % (C > 0 ? C : 1);
    const int *lab = base == RF_BASE_CLASS ? y : NULL;
    memset(f->grads, 0, sizeof(float) * f->n_params);
    double L = rf_flow_loss_grad(f, w, n, x, lab, ce);
    double L2 = loss_eval(f, w, n, x, lab, ce);
    assert_true(fabs(L - L2) < 1e-4 * (1 + fabs(L)));
    double num = 0, den = 0;
    for (size_t i = 0; i < f->n_params; i++) {
        const float h = 1e-3f * fmaxf(1.0f, fabsf(f->params[i]));
        const float v = f->params[i];
        f->params[i] = v + h;
        double Lp = loss_eval(f, w, n, x, lab, ce);
        f->params[i] = v - h;
        double Lm = loss_eval(f, w, n, x, lab, ce);
        f->params[i] = v;
        double g = (Lp - Lm) / ((double)(v + h) - (double)(v - h));
        /* MADE's masked weights are structurally zero: their gradient is defined as zero */
        if (f->grads[i] == 0.0f && f->params[i] == 0.0f) g = 0;
        num += (g - f->grads[i]) * (g - f->grads[i]);
        den += g * g;
    }
    const double rel = sqrt(num) / fmax(sqrt(den), 1e-8);
    printf("[flow %-8s base %-6s ce %.1f memsave %d] loss %.4f  grad rel err %.2e (|g| %.3g, %zu params)\n",
           rf_flow_type_name(t), rf_base_kind_name(base), ce, memsave, L, rel, sqrt(den), f->n_params);
    assert_true(rel < 1e-2);
    rf_flow_ws_free(w);
    rf_flow_free(f);
}

static void test_flow_gradients(void **s) {
    (void)s;
    for (int t = 0; t <= RF_FLOW_NSF_AR; t++) grad_check_flow((rf_flow_type)t, RF_BASE_NORMAL, 0, 0, 0);
    grad_check_flow(RF_FLOW_GLOW, RF_BASE_DIAG, 0, 0, 0);
    grad_check_flow(RF_FLOW_REALNVP, RF_BASE_CLASS, 3, 0.0f, 0);
    grad_check_flow(RF_FLOW_NSF, RF_BASE_CLASS, 3, 0.7f, 1);
}

/* Memory-saving backprop reproduces the stored-activation gradients. */
static void test_memory_saving_same_gradients(void **s) {
    (void)s;
    const int D = 6, n = 32;
    float x[32 * 6];
    random_x(x, n * D, 1.0f, 3);
    for (int t = 0; t <= RF_FLOW_NSF_AR; t++) {
        rf_flow *f = make_flow((rf_flow_type)t, D, 4, RF_BASE_DIAG, 0, 9);
        rf_flow_ws *w0 = rf_flow_ws_create(f, n, 0, NULL), *w1 = rf_flow_ws_create(f, n, 1, NULL);
        float *g0 = rf_floats(f->n_params, NULL);
        memset(f->grads, 0, sizeof(float) * f->n_params);
        double L0 = rf_flow_loss_grad(f, w0, n, x, NULL, 0);
        memcpy(g0, f->grads, sizeof(float) * f->n_params);
        memset(f->grads, 0, sizeof(float) * f->n_params);
        double L1 = rf_flow_loss_grad(f, w1, n, x, NULL, 0);
        double num = 0, den = 0;
        for (size_t i = 0; i < f->n_params; i++) {
            num += (double)(g0[i] - f->grads[i]) * (g0[i] - f->grads[i]);
            den += (double)g0[i] * g0[i];
        }
        printf("[memsave %-8s] loss %.6f vs %.6f, grad rel diff %.2e; workspace %zu vs %zu bytes\n",
               rf_flow_type_name((rf_flow_type)t), L0, L1, sqrt(num / den), rf_flow_ws_bytes(w0), rf_flow_ws_bytes(w1));
        assert_true(L0 == L1);
        assert_true(sqrt(num / den) < 1e-4);
        assert_true(rf_flow_ws_bytes(w1) < rf_flow_ws_bytes(w0));
        rf_free(g0);
        rf_flow_ws_free(w0);
        rf_flow_ws_free(w1);
        rf_flow_free(f);
    }
}

/* Whole-flow inverse and log-det consistency: log p(x) from forward equals the sampler's. */
static void test_flow_inverse_and_sampling(void **s) {
    (void)s;
    const int D = 5, n = 200;
    for (int t = 0; t <= RF_FLOW_NSF_AR; t++) {
        rf_flow *f = make_flow((rf_flow_type)t, D, 3, RF_BASE_DIAG, 0, 5);
        rf_flow_ws *w = rf_flow_ws_create(f, 64, 0, NULL);
        float *x = rf_floats(n * D, NULL), *z = rf_floats(n * D, NULL), *x2 = rf_floats(n * D, NULL);
        float *ldf = rf_floats(n, NULL), *ldi = rf_floats(n, NULL);
        random_x(x, n * D, 1.0f, 1);
        rf_flow_forward(f, w, n, x, z, ldf);
        rf_flow_inverse(f, w, n, z, x2, ldi);
        double err = 0, lde = 0;
        for (int i = 0; i < n * D; i++) err = fmax(err, fabs(x[i] - x2[i]) / fmax(1, fabs(x[i])));
        for (int i = 0; i < n; i++) lde = fmax(lde, fabs(ldf[i] - ldi[i]));
        rf_rng r;
        rf_rng_seed(&r, 2);
        rf_flow_sample(f, w, n, NULL, &r, x2);
        printf("[flow %-8s] whole-flow round trip %.2e, logdet agreement %.2e, samples finite %d\n",
               rf_flow_type_name((rf_flow_type)t), err, lde, rf_all_finite(x2, (size_t)n * D));
        assert_true(err < 1e-5);
        assert_true(lde < 1e-3);
        assert_true(rf_all_finite(x2, (size_t)n * D));
        rf_free(x);
        rf_free(z);
        rf_free(x2);
        rf_free(ldf);
        rf_free(ldi);
        rf_flow_ws_free(w);
        rf_flow_free(f);
    }
}

/* Block options: explicit permutations and blocks without ActNorm. Each combination has the
 * layers it names, inverts, has the log-determinant of its brute-force Jacobian, and survives a
 * save / load; a tsflow refuses permutations other than its 1x1. */
static void test_flow_block_options(void **s) {
    (void)s;
    const int D = 4, n = 6;
    const rf_perm_kind perms[] = {RF_PERM_DEFAULT, RF_PERM_LU, RF_PERM_REVERSE, RF_PERM_RANDOM, RF_PERM_NONE};
    const char *perm_kind[] = {NULL, "lu_linear", "permute", "permute", NULL};
    char path[256];
    rf_test_tmp(path, sizeof path, "blockopts.rf");
    for (int t = 0; t <= RF_FLOW_NSF_AR; t++)
        for (int pi = 0; pi < 5; pi++)
            for (int an = 0; an < 2; an++) {
                rf_flow_spec sp;
                rf_flow_spec_default(&sp, (rf_flow_type)t, D);
                sp.blocks = 2;
                sp.hidden = 8;
                sp.act = RF_ACT_TANH;
                sp.bound = 3.0f;
                sp.perm = perms[pi];
                sp.no_actnorm = an;
                rf_rng rng;
                rf_rng_seed(&rng, 11 + pi);
                rf_err e = {0};
                rf_flow *f = rf_flow_create(&sp, &rng, &e);
                if (!f) fail_msg("create %s perm %s: %s", rf_flow_type_name((rf_flow_type)t), rf_perm_kind_name(perms[pi]), e.msg);
                for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.2f * (float)rf_rng_normal(&rng);
                for (int k = 0; k < f->n_layers; k++)
                    if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], f->params + f->layers[k]->offset);
                /* the layers named */
                const rf_perm_kind eff = rf_flow_spec_perm(&sp);
                int n_actnorm = 0, n_perm = 0;
                for (int k = 0; k < f->n_layers; k++) {
                    const char *kind = f->layers[k]->ops->kind;
                    n_actnorm += !strcmp(kind, "actnorm");
                    n_perm += !strcmp(kind, "lu_linear") || !strcmp(kind, "permute");
                    if (perm_kind[eff] && (!strcmp(kind, "lu_linear") || !strcmp(kind, "permute")))
                        assert_string_equal(kind, perm_kind[eff]);
                }
                assert_int_equal(n_actnorm, an ? 0 : 2);
                assert_int_equal(n_perm, eff == RF_PERM_NONE ? 0 : 2);
                if (pi == 0) assert_int_equal(eff, t == RF_FLOW_REALNVP ? RF_PERM_NONE : t == RF_FLOW_MAF ? RF_PERM_REVERSE : RF_PERM_LU);
                /* inverse and brute-force log-determinant */
                rf_flow_ws *w = rf_flow_ws_create(f, 2 * D + 1, 0, NULL);
                float x[6 * 4], z[6 * 4], x2[6 * 4], ld[6], ld2[6];
                random_x(x, n * D, 1.0f, 3 + pi);
                rf_flow_forward(f, w, n, x, z, ld);
                rf_flow_inverse(f, w, n, z, x2, ld2);
                double err = 0, bf = 0;
                for (int i = 0; i < n * D; i++) err = fmax(err, fabs(x[i] - x2[i]));
                for (int i = 0; i < n; i++) {
                    float xp[9 * 4], zp[9 * 4], l9[9];
                    const float h = 3e-3f;
                    for (int k = 0; k < 2 * D; k++) {
                        memcpy(xp + k * D, x + i * D, sizeof(float) * D);
                        xp[k * D + k / 2] += k % 2 ? -h : h;
                    }
                    rf_flow_forward(f, w, 2 * D, xp, zp, l9);
                    double J[16];
                    for (int a = 0; a < D; a++)
                        for (int b = 0; b < D; b++) J[a * D + b] = ((double)zp[2 * b * D + a] - zp[(2 * b + 1) * D + a]) / (2.0 * h);
                    bf = fmax(bf, fabs(rf_test_logabsdet(D, J) - ld[i]));
                }
                /* save / load keeps the layers and log p */
                assert_int_equal(rf_flow_save(f, path, &e), RF_OK);
                rf_flow *g = rf_flow_load(path, &e);
                if (!g) fail_msg("load: %s", e.msg);
                assert_int_equal(g->spec.perm, sp.perm);
                assert_int_equal(g->spec.no_actnorm, an);
                assert_int_equal(g->n_layers, f->n_layers);
                rf_flow_ws *wg = rf_flow_ws_create(g, n, 0, NULL);
                float lp[6], lq[6];
                rf_flow_log_prob(f, w, n, x, NULL, lp);
                rf_flow_log_prob(g, wg, n, x, NULL, lq);
                for (int i = 0; i < n; i++) assert_true(lp[i] == lq[i]);
                printf("[blocks %-8s perm %-7s actnorm %-3s] %d layers, round trip %.1e, log-det vs Jacobian %.1e\n",
                       rf_flow_type_name((rf_flow_type)t), rf_perm_kind_name(perms[pi]), an ? "off" : "on", f->n_layers, err, bf);
                assert_true(err < 1e-5);
                assert_true(bf < 1e-2);
                rf_flow_ws_free(wg);
                rf_flow_free(g);
                rf_flow_ws_free(w);
                rf_flow_free(f);
            }
    remove(path);
    /* a tsflow keeps its 1x1 */
    rf_flow_spec ts;
    rf_err e = {0};
    assert_int_equal(rf_tsflow_spec_default(&ts, 2, 8, &e), RF_OK);
    ts.perm = RF_PERM_REVERSE;
    assert_int_equal(rf_flow_spec_check(&ts, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "reverse"));
    /* a file naming an unknown permutation is refused */
    rf_flow_spec back;
    cJSON *j = rf_flow_spec_to_json(&(rf_flow_spec){.type = RF_FLOW_GLOW, .D = 2, .blocks = 1, .hidden = 4, .n_hidden = 1,
                                                     .bins = 8, .bound = 3, .clamp = 3, .perm = RF_PERM_RANDOM});
    assert_int_equal(rf_flow_spec_from_json(j, &back, &e), RF_OK);
    assert_int_equal(back.perm, RF_PERM_RANDOM);
    cJSON_ReplaceItemInObject(j, "permutation", cJSON_CreateString("shuffle"));
    assert_int_equal(rf_flow_spec_from_json(j, &back, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "permutation"));
    cJSON_Delete(j);
}

/* Training on a correlated Gaussian recovers its mean and covariance. */
static void test_train_correlated_gaussian(void **s) {
    (void)s;
    const int D = 3, n = 6000;
    const double mu[3] = {1.0, -2.0, 0.5};
    const double Lc[9] = {1.0, 0, 0, 0.8, 0.6, 0, -0.5, 0.3, 0.7}; /* Cholesky factor */
    rf_matrix tr, va;
    rf_matrix_alloc(&tr, n, D, NULL);
    rf_matrix_alloc(&va, 2000, D, NULL);
    rf_rng r;
    rf_rng_seed(&r, 77);
    rf_matrix *ms[2] = {&tr, &va};
    for (int m = 0; m < 2; m++)
        for (int i = 0; i < ms[m]->n; i++) {
            double e[3] = {rf_rng_normal(&r), rf_rng_normal(&r), rf_rng_normal(&r)};
            for (int a = 0; a < D; a++) {
                double v = mu[a];
                for (int b = 0; b < D; b++) v += Lc[a * D + b] * e[b];
                ms[m]->x[i * D + a] = (float)v;
            }
        }
    const rf_flow_type types[2] = {RF_FLOW_GLOW, RF_FLOW_NSF};
    for (int t = 0; t < 2; t++) {
        rf_flow_spec sp;
        rf_flow_spec_default(&sp, types[t], D);
        sp.blocks = 3;
        sp.hidden = 32;
        rf_rng rr;
        rf_rng_seed(&rr, 5);
        rf_flow *f = rf_flow_create(&sp, &rr, NULL);
        rf_train_cfg c;
        rf_train_cfg_default(&c);
        c.epochs = 12;
        c.batch = 128;
        c.lr = 3e-3f;
        c.progress = 0;
        c.threads = 2;
        rf_train_result res;
        rf_err e;
        int rc = rf_train(f, &tr, NULL, &va, NULL, &c, &res, &e);
        if (rc) fail_msg("train: %s", e.msg);
        /* true entropy of N(mu, L L^T) in nats: 0.5 log det(2 pi e Sigma) */
        double logdetL = log(1.0) + log(0.6) + log(0.7);
        double H = 0.5 * D * log(2 * M_PI * M_E) + logdetL;
        /* samples reproduce mean and covariance */
        const int m = 20000;
        float *xs = rf_floats((size_t)m * D, NULL);
        rf_flow_ws *w = rf_flow_ws_create(f, 1024, 1, NULL);
        rf_rng_seed(&rr, 6);
        rf_flow_sample(f, w, m, NULL, &rr, xs);
        double mean[3] = {0}, cov[9] = {0}, maxm = 0, maxc = 0;
        for (int i = 0; i < m; i++)
            for (int a = 0; a < D; a++) mean[a] += xs[i * D + a] / m;
        for (int i = 0; i < m; i++)
            for (int a = 0; a < D; a++)
                for (int b = 0; b < D; b++) cov[a * D + b] += (xs[i * D + a] - mean[a]) * (xs[i * D + b] - mean[b]) / (m - 1);
        for (int a = 0; a < D; a++) {
            maxm = fmax(maxm, fabs(mean[a] - mu[a]));
            for (int b = 0; b < D; b++) {
                double tc = 0;
                for (int k = 0; k < D; k++) tc += Lc[a * D + k] * Lc[b * D + k];
                maxc = fmax(maxc, fabs(cov[a * D + b] - tc));
            }
        }
        printf("[gaussian %-5s] val NLL %.4f vs true entropy %.4f; max |mean err| %.3f, max |cov err| %.3f, %.0f samples/s\n",
               rf_flow_type_name(types[t]), res.best_val_nll, H, maxm, maxc, res.samples_per_sec);
        assert_true(res.best_val_nll < H + 0.05);
        assert_true(maxm < 0.05);
        assert_true(maxc < 0.08);
        rf_free(xs);
        rf_flow_ws_free(w);
        rf_train_result_free(&res);
        rf_flow_free(f);
    }
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flow_gradients),
        cmocka_unit_test(test_memory_saving_same_gradients),
        cmocka_unit_test(test_flow_inverse_and_sampling),
        cmocka_unit_test(test_flow_block_options),
        cmocka_unit_test(test_train_correlated_gaussian),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
