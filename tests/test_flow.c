/* Whole flows: gradients of the training loss, memory-saving backprop, sampling/inversion,
 * class-conditional base, and training that recovers a correlated Gaussian. */
#include "testutil.h"

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
        cmocka_unit_test(test_train_correlated_gaussian),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
