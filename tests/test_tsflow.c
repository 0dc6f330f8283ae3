/* The multi-scale time-series flow: the 1-D conv conditioner (against a direct convolution and
 * finite differences), every time-series layer (round trip, brute-force Jacobian log-det,
 * gradients), whole tsflows (round trip, brute-force log-det, identity at initialisation,
 * factor-out, model file, memory-saving backward, per-scale likelihood), the engine's carrying of
 * the factored-out tails (bit for bit against running every layer's own ops), spec validation,
 * and a short training run on coupled AR(2) time series. */
#include "testutil.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/flow/flow_internal.h" /* rf_flow_alloc_layers / rf_flow_assemble: a mixed flow */
#include "renflow/tsflow.h"

#define LOG_2PI 1.8378770664093453

static void randn(float *x, size_t n, float s, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = s * (float)rf_rng_normal(&r);
}


/* ------------------------------------------------------------------ conv1d */

/* Direct 'same' dilated convolution network in double, NTC layout: the reference. */
static void conv_ref(const rf_conv1d_cfg *c, const float *p, int n, const float *x, double *out) {
    const int T = c->length, K = c->kernel, half = (K - 1) / 2;
    const int maxw = c->c_in > c->hidden ? c->c_in : c->hidden;
    double *in = malloc(sizeof(double) * n * T * (maxw > c->c_out ? maxw : c->c_out));
    double *o = malloc(sizeof(double) * n * T * (maxw > c->c_out ? maxw : c->c_out));
    for (int i = 0; i < n * T * c->c_in; i++) in[i] = x[i];
    size_t off = 0;
    for (int l = 0; l <= c->n_hidden; l++) {
        const int ci = l == 0 ? c->c_in : c->hidden, co = l == c->n_hidden ? c->c_out : c->hidden;
        const float *W = p + off, *b = W + (size_t)co * K * ci;
        off += (size_t)co * K * ci + co;
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++)
                for (int q = 0; q < co; q++) {
                    double z = b[q];
                    for (int k = 0; k < K; k++) {
                        const int s = t + (k - half) * c->dilation;
                        if (s < 0 || s >= T) continue;
                        for (int a = 0; a < ci; a++)
                            z += (double)W[(size_t)q * K * ci + k * ci + a] * in[((size_t)i * T + s) * ci + a];
                    }
                    if (l < c->n_hidden) {
                        double h = c->act == RF_ACT_RELU ? (z > 0 ? z : 0)
                                   : c->act == RF_ACT_TANH ? tanh(z)
                                                           : 0.5 * z * (1 + erf(z / sqrt(2.0)));
                        if (c->residual && l > 0) h += in[((size_t)i * T + t) * ci + q];
                        o[((size_t)i * T + t) * co + q] = h;
                    } else {
                        out[((size_t)i * T + t) * co + q] = z;
                    }
                }
        double *tmp = in;
        in = o;
        o = tmp;
    }
    free(in);
    free(o);
}

typedef struct {
    const rf_conv1d *m;
    float *p;
    int n;
    float *out, *cache, *scr;
    const double *w;
} conv_ctx;

static double conv_loss(conv_ctx *c, const float *x) {
    const rf_conv1d_cfg *k = rf_conv1d_config(c->m);
    rf_conv1d_forward(c->m, c->p, c->n, x, c->out, c->cache, c->scr);
    double L = 0;
    for (int i = 0; i < c->n * k->length * k->c_out; i++) L += c->w[i] * c->out[i];
    return L;
}

static void check_conv1d(int kernel, int dilation, int residual, rf_act act) {
    rf_conv1d_cfg cfg = {.c_in = 2, .c_out = 3, .length = 9, .hidden = 5, .n_hidden = 2,
                         .kernel = kernel, .dilation = dilation, .act = act, .residual = residual};
    rf_err e;
    rf_conv1d *m = rf_conv1d_create(&cfg, &e);
    if (!m) fail_msg("conv1d: %s", e.msg);
    const int n = 3, T = cfg.length, NI = n * T * cfg.c_in, NO = n * T * cfg.c_out;
    const size_t P = rf_conv1d_n_params(m);
    float *p = rf_floats(P, NULL), *x = rf_floats(NI, NULL), *out = rf_floats(NO, NULL);
    float *cache = rf_floats(rf_conv1d_cache_floats(m, n), NULL);
    const size_t fs = rf_conv1d_forward_scratch_floats(m, n), bs = rf_conv1d_backward_scratch_floats(m, n);
    float *scr = rf_floats(fs > bs ? fs : bs, NULL);
    rf_rng r;
    rf_rng_seed(&r, 17 + kernel + dilation);
    rf_conv1d_init_params(m, p, &r);
    /* fresh: the zero last layer outputs exactly 0 */
    randn(x, NI, 1.0f, 5);
    rf_conv1d_forward(m, p, n, x, out, cache, scr);
    for (int i = 0; i < NO; i++) assert_true(out[i] == 0.0f);
    for (size_t i = 0; i < P; i++) p[i] += 0.3f * (float)rf_rng_normal(&r);
    /* forward against the direct convolution */
    double *ref = malloc(sizeof(double) * NO), *ga = malloc(sizeof(double) * (P + NI)),
           *gn = malloc(sizeof(double) * (P + NI)), *w = malloc(sizeof(double) * NO);
    rf_conv1d_forward(m, p, n, x, out, cache, scr);
    conv_ref(&cfg, p, n, x, ref);
    double fe = 0;
    for (int i = 0; i < NO; i++) fe = fmax(fe, fabs(out[i] - ref[i]) / fmax(1.0, fabs(ref[i])));
    /* gradients of L = sum w * out */
    float *dout = rf_floats(NO, NULL), *dx = rf_floats(NI, NULL), *dp = rf_floats(P, NULL);
    for (int i = 0; i < NO; i++) dout[i] = (float)(w[i] = rf_rng_normal(&r));
    rf_conv1d_backward(m, p, n, x, dout, dx, dp, cache, scr);
    conv_ctx c = {m, p, n, out, cache, scr, w};
    for (int i = 0; i < NI; i++) {
        const float v = x[i], h = 1e-3f;
        x[i] = v + h;
        const double Lp = conv_loss(&c, x);
        x[i] = v - h;
        const double Lm = conv_loss(&c, x);
        x[i] = v;
        gn[i] = (Lp - Lm) / ((double)(v + h) - (double)(v - h));
        ga[i] = dx[i];
    }
    const double ex = rf_test_rel_err(ga, gn, NI);
    for (size_t i = 0; i < P; i++) {
        const float v = p[i], h = 1e-3f * fmaxf(1.0f, fabsf(v));
        p[i] = v + h;
        const double Lp = conv_loss(&c, x);
        p[i] = v - h;
        const double Lm = conv_loss(&c, x);
        p[i] = v;
        gn[i] = (Lp - Lm) / ((double)(v + h) - (double)(v - h));
        ga[i] = dp[i];
    }
    const double ep = rf_test_rel_err(ga, gn, P);
    printf("[conv1d k%d d%d res%d %-4s] forward vs direct %.2e, grad_x %.2e, grad_p %.2e (%zu params)\n",
           kernel, dilation, residual, rf_act_name(act), fe, ex, ep, P);
    assert_true(fe < 1e-5);
    assert_true(ex < 1e-2);
    assert_true(ep < 1e-2);
    free(ref);
    free(ga);
    free(gn);
    free(w);
    rf_free(dout);
    rf_free(dx);
    rf_free(dp);
    rf_free(p);
    rf_free(x);
    rf_free(out);
    rf_free(cache);
    rf_free(scr);
    rf_conv1d_free(m);
}

static void test_conv1d(void **s) {
    (void)s;
    check_conv1d(3, 1, 0, RF_ACT_TANH);
    check_conv1d(3, 2, 1, RF_ACT_TANH);
    check_conv1d(3, 2, 0, RF_ACT_GELU);
    check_conv1d(5, 3, 1, RF_ACT_GELU);
    check_conv1d(1, 1, 1, RF_ACT_TANH);
    check_conv1d(3, 1, 1, RF_ACT_RELU);
    rf_err e;
    rf_conv1d_cfg bad = {.c_in = 2, .c_out = 3, .length = 9, .hidden = 5, .n_hidden = 2, .kernel = 4, .dilation = 1};
    assert_null(rf_conv1d_create(&bad, &e));
    assert_int_equal(e.code, RF_EARG);
    printf("even kernel rejected: %s\n", e.msg);
    bad.kernel = 3;
    bad.dilation = 0;
    assert_null(rf_conv1d_create(&bad, &e));
    printf("dilation 0 rejected: %s\n", e.msg);
}

/* ------------------------------------------------------------------ layers */

/* log|det J| of the layer at row x (n = 1) by central differences with Richardson
 * extrapolation, for D <= 16. */
static double bf_layer_logdet(const rf_layer *l, const float *p, const float *x) {
    const int D = l->dim;
    float *xp = rf_floats(D, NULL), *yp = rf_floats(D, NULL), *ym = rf_floats(D, NULL);
    float *cache = rf_floats(l->ops->cache_floats(l, 1) + 1, NULL);
    float *scr = rf_floats(l->ops->scratch_floats(l, 1) + 1, NULL);
    double *J = malloc(sizeof(double) * D * D), *J2 = malloc(sizeof(double) * D * D);
    const float hs[2] = {8e-3f, 4e-3f};
    float tmp;
    for (int q = 0; q < 2; q++) {
        double *JJ = q == 0 ? J2 : J;
        for (int j = 0; j < D; j++) {
            memcpy(xp, x, sizeof(float) * D);
            volatile float up = x[j] + hs[q], dn = x[j] - hs[q];
            xp[j] = up;
            tmp = 0;
            l->ops->forward(l, p, 1, xp, yp, &tmp, cache, scr);
            xp[j] = dn;
            l->ops->forward(l, p, 1, xp, ym, &tmp, cache, scr);
            for (int i = 0; i < D; i++) JJ[i * D + j] = ((double)yp[i] - ym[i]) / ((double)up - (double)dn);
        }
    }
    for (int i = 0; i < D * D; i++) J[i] = (4.0 * J[i] - J2[i]) / 3.0;
    const double ld = rf_test_logabsdet(D, J);
    free(J);
    free(J2);
    rf_free(xp);
    rf_free(yp);
    rf_free(ym);
    rf_free(cache);
    rf_free(scr);
    return ld;
}

/* rf_check_layer (round trip, inverse log-det, gradients) plus a brute-force log-det on a few
 * rows at D <= 16, with the layer's parameters initialised and perturbed. */
static void check_ts_layer(const char *name, rf_layer *l, float scale, float perturb) {
    if (!l) fail_msg("%s: create failed", name);
    rf_layer_check c;
    rf_check_layer(l, 4321, scale, perturb, &c);
    rf_assert_layer_ok(name, &c);
    if (l->n_params > 0) assert_true(c.grad_p_norm > 1e-3);
    const int D = l->dim;
    if (D <= 16) {
        rf_rng r;
        rf_rng_seed(&r, 99);
        float *p = rf_floats(l->n_params + 1, NULL), *x = rf_floats(4 * D, NULL), *y = rf_floats(4 * D, NULL);
        float *cache = rf_floats(l->ops->cache_floats(l, 4) + 1, NULL), *scr = rf_floats(l->ops->scratch_floats(l, 4) + 1, NULL);
        float ld[4] = {0};
        randn(x, 4 * D, scale, 3);
        if (l->ops->init_params) l->ops->init_params(l, p, &r);
        if (l->ops->data_init) l->ops->data_init(l, p, 4, x);
        for (size_t i = 0; i < l->n_params; i++) p[i] += perturb * (float)rf_rng_normal(&r);
        l->ops->forward(l, p, 4, x, y, ld, cache, scr);
        double err = 0;
        for (int i = 0; i < 4; i++) err = fmax(err, fabs(bf_layer_logdet(l, p, x + i * D) - ld[i]));
        printf("    brute-force log-det (D = %d): max error %.2e\n", D, err);
        assert_true(err < 5e-3);
        rf_free(p);
        rf_free(x);
        rf_free(y);
        rf_free(cache);
        rf_free(scr);
    }
    rf_layer_free(l);
}

static void test_squeeze(void **s) {
    (void)s;
    /* exact values: 2 channels x 4 samples -> 4 channels x 2 */
    rf_layer *l = rf_ts_squeeze_create(10, 2, 4, NULL);
    const float x[10] = {1, 2, 3, 5, 10, 20, 30, 50, 7, 8};
    float y[10], back[10], ld = 0;
    l->ops->forward(l, NULL, 1, x, y, &ld, NULL, NULL);
    const float r = (float)M_SQRT1_2;
    const float expect[10] = {3 * r, 8 * r, 30 * r, 80 * r, -1 * r, -2 * r, -10 * r, -20 * r, 7, 8};
    for (int i = 0; i < 10; i++) assert_true(fabsf(y[i] - expect[i]) < 1e-5f);
    assert_true(ld == 0.0f);
    l->ops->inverse(l, NULL, 1, y, back, &ld, NULL);
    for (int i = 0; i < 10; i++) assert_true(fabsf(back[i] - x[i]) < 1e-5f);
    rf_layer_free(l);
    check_ts_layer("ts_squeeze 2x8", rf_ts_squeeze_create(16, 2, 8, NULL), 1.0f, 0.0f);
    check_ts_layer("ts_squeeze 3x4 +tail", rf_ts_squeeze_create(15, 3, 4, NULL), 1.0f, 0.0f);
    rf_err e;
    assert_null(rf_ts_squeeze_create(15, 3, 5, &e));
    assert_int_equal(e.code, RF_EARG);
    printf("odd length rejected: %s\n", e.msg);
    assert_null(rf_ts_squeeze_create(10, 3, 4, &e));
    printf("shape larger than the row rejected: %s\n", e.msg);
}

static void test_ts_actnorm(void **s) {
    (void)s;
    check_ts_layer("ts_actnorm 2x4", rf_ts_actnorm_create(8, 2, 4, NULL), 2.0f, 0.3f);
    check_ts_layer("ts_actnorm 3x4 +tail", rf_ts_actnorm_create(16, 3, 4, NULL), 2.0f, 0.3f);
    check_ts_layer("ts_actnorm 4x8", rf_ts_actnorm_create(32, 4, 8, NULL), 2.0f, 0.3f);
}

static void test_ts_conv1x1(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 8);
    check_ts_layer("ts_conv1x1 2x4", rf_ts_conv1x1_create(8, 2, 4, &r, NULL), 1.0f, 0.2f);
    check_ts_layer("ts_conv1x1 3x4 +tail", rf_ts_conv1x1_create(14, 3, 4, &r, NULL), 1.0f, 0.2f);
    check_ts_layer("ts_conv1x1 4x3", rf_ts_conv1x1_create(12, 4, 3, &r, NULL), 1.0f, 0.2f);
    check_ts_layer("ts_conv1x1 6x8", rf_ts_conv1x1_create(48, 6, 8, &r, NULL), 1.0f, 0.2f);
    /* a fresh layer is a rotation at every time step: norms and log-det 0 */
    rf_layer *l = rf_ts_conv1x1_create(20, 5, 4, &r, NULL);
    float p[25], x[20], y[20], ld = 0, scr[100];
    l->ops->init_params(l, p, &r);
    randn(x, 20, 1.0f, 4);
    l->ops->forward(l, p, 1, x, y, &ld, NULL, scr);
    for (int t = 0; t < 4; t++) {
        double nx = 0, ny = 0;
        for (int c = 0; c < 5; c++) {
            nx += (double)x[c * 4 + t] * x[c * 4 + t];
            ny += (double)y[c * 4 + t] * y[c * 4 + t];
        }
        assert_true(fabs(nx - ny) < 1e-5 * (1 + nx));
    }
    assert_true(fabsf(ld) < 1e-5f);
    rf_layer_free(l);
}

static rf_ts_coupling_cfg tc_cfg(int D, int C, int T, int kernel, int dilation, int residual,
                                 int spline) {
    rf_ts_coupling_cfg c = {.D = D, .channels = C, .length = T,
                            .cond = {.hidden = 6, .n_hidden = 2, .kernel = kernel, .dilation = dilation,
                                     .act = RF_ACT_TANH, .residual = residual},
                            .spline = spline, .clamp = 2.0f, .bins = 5, .bound = 3.0f};
    return c;
}

static void test_ts_coupling(void **s) {
    (void)s;
    char name[96];
    for (int spline = 0; spline < 2; spline++)
        for (int dil = 1; dil <= 2; dil++)
            for (int res = 0; res < 2; res++) {
                rf_ts_coupling_cfg c = tc_cfg(16, 2, 8, 3, dil, res, spline);
                snprintf(name, sizeof name, "ts_coupling %s k3 d%d r%d 2x8", spline ? "spline" : "affine", dil, res);
                /* spline: inputs partly outside [-B, B] exercise the tails; a small perturbation
                 * keeps the slopes invertible in float32 (as in test_layers.c) */
                check_ts_layer(name, rf_ts_coupling_create(&c, NULL), spline ? 1.5f : 1.0f, spline ? 0.1f : 0.3f);
            }
    rf_ts_coupling_cfg c = tc_cfg(15, 3, 4, 3, 2, 1, 0); /* odd channels and a tail */
    check_ts_layer("ts_coupling affine 3x4 +tail", rf_ts_coupling_create(&c, NULL), 1.0f, 0.3f);
    c = tc_cfg(8, 2, 4, 3, 1, 0, 1);
    check_ts_layer("ts_coupling spline 2x4", rf_ts_coupling_create(&c, NULL), 1.5f, 0.1f);
    /* Spline log-dets have kinks (their x-derivative jumps at the knots and at +-bound), so a
     * central difference straddling one disagrees with the (one-sided) analytic gradient; the
     * more transformed elements, the likelier. Shapes here are kept to ~100 elements (checked
     * by hand: where a larger layer disagreed, the analytic value matched one side). */
    c = tc_cfg(32, 4, 8, 5, 2, 1, 1);
    c.cond.act = RF_ACT_GELU;
    check_ts_layer("ts_coupling spline k5 4x8", rf_ts_coupling_create(&c, NULL), 1.5f, 0.1f);
    /* fresh: exactly the identity */
    for (int spline = 0; spline < 2; spline++) {
        c = tc_cfg(24, 3, 8, 3, 2, 1, spline);
        rf_layer *l = rf_ts_coupling_create(&c, NULL);
        rf_rng r;
        rf_rng_seed(&r, 1);
        float *p = rf_floats(l->n_params, NULL), *x = rf_floats(5 * 24, NULL), *y = rf_floats(5 * 24, NULL);
        float *sc = rf_floats(l->ops->scratch_floats(l, 5), NULL), ld[5] = {0};
        l->ops->init_params(l, p, &r);
        randn(x, 5 * 24, 2.0f, 2);
        l->ops->forward(l, p, 5, x, y, ld, NULL, sc);
        for (int i = 0; i < 5 * 24; i++) assert_true(fabsf(x[i] - y[i]) < 1e-6f);
        for (int i = 0; i < 5; i++) assert_true(fabsf(ld[i]) < 1e-6f);
        rf_free(p);
        rf_free(x);
        rf_free(y);
        rf_free(sc);
        rf_layer_free(l);
    }
    rf_err e;
    c = tc_cfg(8, 1, 8, 3, 1, 0, 0);
    assert_null(rf_ts_coupling_create(&c, &e));
    printf("one channel rejected: %s\n", e.msg);
}

/* ------------------------------------------------------------------ whole flows */

static rf_flow *make_ts_h(int C, int T, int S, int blocks, int hidden, int spline, rf_base_kind base,
                          int ncls, float perturb, uint64_t seed, int tie) {
    rf_flow_spec s;
    rf_err e;
    if (rf_tsflow_spec_default(&s, C, T, &e)) fail_msg("spec: %s", e.msg);
    s.scales = S;
    s.blocks = blocks;
    s.hidden = hidden;
    s.n_hidden = 2;
    s.kernel = 3;
    s.dilation = 1 + (int)(seed % 2);
    s.act = RF_ACT_TANH;
    s.spline = spline;
    s.bins = 5;
    s.bound = 3.0f;
    s.base = base;
    s.n_classes = ncls;
    s.class_tie = tie;
    rf_rng r;
    rf_rng_seed(&r, seed);
    rf_flow *f = rf_flow_create(&s, &r, &e);
    if (!f) fail_msg("tsflow create: %s", e.msg);
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += perturb * (float)rf_rng_normal(&r);
    for (int j = 0; j < f->D; j++) {
        f->shift[j] = 0.05f * (j % 7);
        f->scale[j] = 1.0f + 0.03f * (j % 5);
    }
    return f;
}

static rf_flow *make_ts(int C, int T, int S, int blocks, int spline, rf_base_kind base, int ncls,
                        float perturb, uint64_t seed) {
    return make_ts_h(C, T, S, blocks, 8, spline, base, ncls, perturb, seed, 0);
}

static void test_tsflow_structure(void **s) {
    (void)s;
    rf_flow *f = make_ts(3, 16, 3, 2, 0, RF_BASE_NORMAL, 0, 0.0f, 1);
    assert_int_equal(f->n_layers, 3 * (1 + 3 * 2));
    /* scale s: squeeze of 3 x 16/2^s, then blocks on 6 x 16/2^(s+1) (the active prefix halves) */
    int k = 0;
    for (int sc = 0; sc < 3; sc++) {
        int C, T;
        assert_true(rf_ts_layer_shape(f->layers[k], &C, &T));
        assert_string_equal(f->layers[k]->ops->kind, "ts_squeeze");
        assert_int_equal(C, 3);
        assert_int_equal(T, 16 >> sc);
        k++;
        for (int b = 0; b < 6; b++, k++) {
            assert_true(rf_ts_layer_shape(f->layers[k], &C, &T));
            assert_int_equal(C, 6);
            assert_int_equal(T, 16 >> (sc + 1));
        }
    }
    /* factor-out: after scale 0 the tail [D/2, D) never changes again */
    const int D = f->D, n = 4;
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.2f * (float)sin(1.0 + i);
    float *x = rf_floats(n * D, NULL), *a = rf_floats(n * D, NULL), *b = rf_floats(n * D, NULL);
    float *z = rf_floats(n * D, NULL), ld[4] = {0};
    size_t ms = 0;
    for (int j = 0; j < f->n_layers; j++) {
        size_t q = f->layers[j]->ops->scratch_floats(f->layers[j], n);
        if (q > ms) ms = q;
    }
    float *scr = rf_floats(ms, NULL);
    randn(x, n * D, 1.0f, 9);
    memcpy(a, x, sizeof(float) * n * D);
    for (int j = 0; j < 7; j++) { /* scale 0 */
        f->layers[j]->ops->forward(f->layers[j], f->params + f->layers[j]->offset, n, a, b, ld, NULL, scr);
        memcpy(a, b, sizeof(float) * n * D);
    }
    memset(f->shift, 0, sizeof(float) * D);
    for (int j = 0; j < D; j++) f->scale[j] = 1;
    rf_flow_ws *w = rf_flow_ws_create(f, n, 0, NULL);
    rf_flow_forward(f, w, n, x, z, NULL);
    int changed_tail = 0, changed_head = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) {
            if (j >= D / 2) changed_tail += z[i * D + j] != a[i * D + j];
            else changed_head += z[i * D + j] != a[i * D + j];
        }
    printf("[tsflow 3x16 S=3] layers %d; factored-out half unchanged by later scales (%d changed), head changed %d\n",
           f->n_layers, changed_tail, changed_head);
    assert_int_equal(changed_tail, 0);
    assert_true(changed_head > 0);
    rf_free(x);
    rf_free(a);
    rf_free(b);
    rf_free(z);
    rf_free(scr);
    rf_flow_ws_free(w);
    rf_flow_free(f);
}

static void test_tsflow_roundtrip(void **s) {
    (void)s;
    const int shapes[4][3] = {{2, 16, 2}, {3, 8, 2}, {1, 32, 3}, {4, 8, 1}};
    for (int q = 0; q < 4; q++)
        for (int spline = 0; spline < 2; spline++) {
            const int C = shapes[q][0], T = shapes[q][1], S = shapes[q][2], D = C * T, n = 50;
            rf_flow *f = make_ts(C, T, S, 2, spline, RF_BASE_DIAG, 0, spline ? 0.05f : 0.1f, 10 + q);
            rf_flow_ws *w = rf_flow_ws_create(f, 32, 0, NULL);
            float *x = rf_floats(n * D, NULL), *z = rf_floats(n * D, NULL), *x2 = rf_floats(n * D, NULL);
            float *ldf = rf_floats(n, NULL), *ldi = rf_floats(n, NULL);
            randn(x, n * D, 1.0f, 3);
            rf_flow_forward(f, w, n, x, z, ldf);
            rf_flow_inverse(f, w, n, z, x2, ldi);
            double err = 0, lde = 0, maxx = 1;
            for (int i = 0; i < n * D; i++) {
                err = fmax(err, fabs(x[i] - x2[i]));
                maxx = fmax(maxx, fabs(x[i]));
            }
            for (int i = 0; i < n; i++) lde = fmax(lde, fabs(ldf[i] - ldi[i]) / fmax(1, fabs(ldf[i])));
            printf("[tsflow %dx%d S=%d %s] round trip %.2e (relative), log-det agreement %.2e\n", C, T, S,
                   spline ? "spline" : "affine", err / maxx, lde);
            assert_true(err / maxx < 1e-5);
            assert_true(lde < 5e-5);
            rf_rng r;
            rf_rng_seed(&r, 4);
            rf_flow_sample(f, w, n, NULL, &r, x2);
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

/* Whole-flow log-det against the brute-force Jacobian of rf_flow_forward (D <= 16). */
static void test_tsflow_bruteforce_logdet(void **s) {
    (void)s;
    const int shapes[3][3] = {{2, 4, 2}, {1, 8, 3}, {2, 8, 2}};
    for (int q = 0; q < 3; q++)
        for (int spline = 0; spline < 2; spline++) {
            const int C = shapes[q][0], T = shapes[q][1], S = shapes[q][2], D = C * T;
            rf_flow *f = make_ts(C, T, S, 2, spline, RF_BASE_NORMAL, 0, spline ? 0.05f : 0.15f, 20 + q);
            rf_flow_ws *w = rf_flow_ws_create(f, 1, 0, NULL);
            float x[16], z[16], zp[16], zm[16], xp[16], ld;
            double J[256], J2[256], worst = 0;
            for (int row = 0; row < 3; row++) {
                randn(x, D, 1.0f, 100 + row);
                rf_flow_forward(f, w, 1, x, z, &ld);
                /* central differences at h and h/2, Richardson-extrapolated; h large enough that the
                 * forward's float round-off (a few times larger with the Winograd conv layers)
                 * divided by h stays well below the tolerance */
                const float hs[2] = {8e-3f, 4e-3f};
                for (int h = 0; h < 2; h++) {
                    double *JJ = h == 0 ? J2 : J;
                    for (int j = 0; j < D; j++) {
                        memcpy(xp, x, sizeof xp);
                        volatile float up = x[j] + hs[h], dn = x[j] - hs[h];
                        xp[j] = up;
                        rf_flow_forward(f, w, 1, xp, zp, NULL);
                        xp[j] = dn;
                        rf_flow_forward(f, w, 1, xp, zm, NULL);
                        for (int i = 0; i < D; i++) JJ[i * D + j] = ((double)zp[i] - zm[i]) / ((double)up - (double)dn);
                    }
                }
                for (int i = 0; i < D * D; i++) J[i] = (4.0 * J[i] - J2[i]) / 3.0;
                worst = fmax(worst, fabs(rf_test_logabsdet(D, J) - ld));
            }
            printf("[tsflow %dx%d S=%d %s] whole-flow log-det vs brute-force Jacobian: max error %.2e\n", C, T, S,
                   spline ? "spline" : "affine", worst);
            assert_true(worst < 5e-3);
            rf_flow_ws_free(w);
            rf_flow_free(f);
        }
}

/* A fresh tsflow is orthogonal after standardisation (Haar squeezes and random rotations,
 * identity ActNorm and couplings): |z| = |u| and log p(x) = log N(u; 0, I) + std log-det. */
static void test_tsflow_fresh_identity(void **s) {
    (void)s;
    const int C = 2, T = 16, D = C * T, n = 20;
    rf_flow *f = make_ts(C, T, 3, 2, 1, RF_BASE_NORMAL, 0, 0.0f, 3);
    rf_flow_ws *w = rf_flow_ws_create(f, n, 0, NULL);
    float *x = rf_floats(n * D, NULL), *z = rf_floats(n * D, NULL), lp[20];
    randn(x, n * D, 1.5f, 8);
    rf_flow_forward(f, w, n, x, z, NULL);
    rf_flow_log_prob(f, w, n, x, NULL, lp);
    double lds = 0, worst_norm = 0, worst_lp = 0;
    for (int j = 0; j < D; j++) lds -= log(f->scale[j]);
    for (int i = 0; i < n; i++) {
        double nu = 0, nz = 0;
        for (int j = 0; j < D; j++) {
            const double u = (x[i * D + j] - f->shift[j]) / f->scale[j];
            nu += u * u;
            nz += (double)z[i * D + j] * z[i * D + j];
        }
        worst_norm = fmax(worst_norm, fabs(nu - nz) / nu);
        worst_lp = fmax(worst_lp, fabs(lp[i] - (-0.5 * nu - 0.5 * D * LOG_2PI + lds)));
    }
    printf("[fresh tsflow 2x16 S=3] | |z|^2 - |u|^2 | / |u|^2 <= %.2e, |log p - log N(u) - logdet_std| <= %.2e\n",
           worst_norm, worst_lp);
    assert_true(worst_norm < 1e-5);
    assert_true(worst_lp < 1e-3);
    rf_free(x);
    rf_free(z);
    rf_flow_ws_free(w);
    rf_flow_free(f);
}

static void test_tsflow_model_file(void **s) {
    (void)s;
    char path[256];
    rf_test_tmp(path, sizeof path, "tsflow.rf");
    const int C = 3, T = 8, D = C * T, n = 12;
    for (int spline = 0; spline < 2; spline++) {
        rf_flow *f = make_ts(C, T, 2, 2, spline, spline ? RF_BASE_CLASS : RF_BASE_DIAG, spline ? 3 : 0, 0.1f, 6);
        rf_err e;
        assert_int_equal(rf_flow_save(f, path, &e), RF_OK);
        rf_flow *g = rf_flow_load(path, &e);
        if (!g) fail_msg("load: %s", e.msg);
        assert_int_equal(g->spec.type, RF_FLOW_TS);
        assert_int_equal(g->spec.channels, C);
        assert_int_equal(g->spec.length, T);
        assert_int_equal(g->spec.scales, 2);
        assert_int_equal(g->spec.spline, spline);
        assert_int_equal(g->spec.dilation, f->spec.dilation);
        assert_int_equal(g->n_layers, f->n_layers);
        float x[12 * 24], lp1[12], lp2[12];
        randn(x, n * D, 1.0f, 5);
        rf_flow_ws *w1 = rf_flow_ws_create(f, 16, 0, NULL), *w2 = rf_flow_ws_create(g, 16, 0, NULL);
        rf_flow_log_prob(f, w1, n, x, NULL, lp1);
        rf_flow_log_prob(g, w2, n, x, NULL, lp2);
        assert_memory_equal(lp1, lp2, sizeof lp1);
        printf("[tsflow file %s] saved and reloaded: log p identical bit for bit (%zu params)\n",
               spline ? "spline/class" : "affine/diag", g->n_params);
        rf_flow_ws_free(w1);
        rf_flow_ws_free(w2);
        rf_flow_free(g);
        rf_flow_free(f);
    }
    /* a damaged architecture: the tsflow spec without its window shape, a layer with an
     * impossible shape */
    rf_flow *f = make_ts(2, 8, 2, 1, 0, RF_BASE_NORMAL, 0, 0.0f, 2);
    cJSON *sj = rf_flow_spec_to_json(&f->spec);
    cJSON_DeleteItemFromObject(sj, "length");
    rf_flow_spec sp;
    rf_err e;
    assert_int_not_equal(rf_flow_spec_from_json(sj, &sp, &e), RF_OK);
    printf("spec without \"length\": %s\n", e.msg);
    assert_non_null(strstr(e.msg, "length"));
    cJSON_Delete(sj);
    cJSON *lj = f->layers[2]->ops->to_json(f->layers[2]);
    cJSON_ReplaceItemInObject(lj, "channels", cJSON_CreateNumber(40));
    assert_null(rf_layer_from_json(lj, &e));
    printf("layer with 40 channels in 16 floats: %s\n", e.msg);
    assert_int_equal(e.code, RF_EFORMAT);
    cJSON_Delete(lj);
    rf_flow_free(f);
    remove(path);
}

static double loss_eval(rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *y, float ce) {
    float lp[16], post[16 * 4];
    rf_flow_log_prob(f, w, n, x, y, lp);
    double L = 0;
    for (int i = 0; i < n; i++) L -= lp[i];
    if (ce > 0 && y) {
        rf_flow_class_log_posterior(f, w, n, x, NULL, post);
        for (int i = 0; i < n; i++) L -= ce * post[i * f->base.n_classes + y[i]];
    }
    return L / n;
}

/* Training-loss gradients of whole tsflows against finite differences, and the memory-saving
 * backward against the stored-activation one. */
static void test_tsflow_gradients(void **s) {
    (void)s;
    const int C = 2, T = 8, D = C * T, n = 10;
    for (int v = 0; v < 4; v++) { /* affine, spline, class base, class base tied over time */
        const int spline = v == 1;
        const rf_base_kind base = v >= 2 ? RF_BASE_CLASS : RF_BASE_NORMAL;
        const float ce = v >= 2 ? 0.5f : 0.0f;
        rf_flow *f = make_ts_h(C, T, 2, 1, 4, spline, base, v >= 2 ? 3 : 0, spline ? 0.05f : 0.15f, 30 + v, v == 3);
        rf_flow_ws *w = rf_flow_ws_create(f, n, 0, NULL), *wm = rf_flow_ws_create(f, n, 1, NULL);
        float x[10 * 16];
        int y[10];
        randn(x, n * D, 1.0f, 7);
        for (int i = 0; i < n; i++) y[i] = i % 3;
        const int *lab = base == RF_BASE_CLASS ? y : NULL;
        memset(f->grads, 0, sizeof(float) * f->n_params);
        const double L = rf_flow_loss_grad(f, w, n, x, lab, ce);
        float *g0 = rf_floats(f->n_params, NULL);
        memcpy(g0, f->grads, sizeof(float) * f->n_params);
        memset(f->grads, 0, sizeof(float) * f->n_params);
        const double Lm = rf_flow_loss_grad(f, wm, n, x, lab, ce);
        /* The spline's log-det is only piecewise smooth in the parameters (kinks where a knot
         * passes an input), so next to the central difference the one-sided ones are formed
         * too: at a kink the analytic gradient is one of the one-sided derivatives. */
        double num = 0, numk = 0, den = 0, mnum = 0;
        for (size_t i = 0; i < f->n_params; i++) mnum += (double)(g0[i] - f->grads[i]) * (g0[i] - f->grads[i]);
        const double L0 = loss_eval(f, w, n, x, lab, ce);
        for (size_t i = 0; i < f->n_params; i++) {
            const float h = 1e-3f * fmaxf(1.0f, fabsf(f->params[i])), pv = f->params[i];
            f->params[i] = pv + h;
            const double Lp = loss_eval(f, w, n, x, lab, ce);
            f->params[i] = pv - h;
            const double Lq = loss_eval(f, w, n, x, lab, ce);
            f->params[i] = pv;
            const double g = (Lp - Lq) / ((double)(pv + h) - (double)(pv - h));
            const double gr = (Lp - L0) / ((double)(pv + h) - pv), gl = (L0 - Lq) / (pv - (double)(pv - h));
            const double d = g - g0[i];
            double dk = fabs(d);
            if (spline) dk = fmin(dk, fmin(fabs(gr - g0[i]), fabs(gl - g0[i])));
            num += d * d;
            numk += dk * dk;
            den += g * g;
        }
        const double rel = sqrt(num) / fmax(sqrt(den), 1e-8), relk = sqrt(numk) / fmax(sqrt(den), 1e-8);
        const double mrel = sqrt(mnum) / fmax(sqrt(den), 1e-8);
        printf("[tsflow grads %s base %s ce %.1f] loss %.4f (memsave %.4f), grad rel err vs central FD %.2e "
               "(kink-aware %.2e), memsave vs stored %.2e, workspace %zu vs %zu bytes (%zu params)\n",
               spline ? "spline" : "affine", rf_base_kind_name(base), ce, L, Lm, rel, relk, mrel,
               rf_flow_ws_bytes(w), rf_flow_ws_bytes(wm), f->n_params);
        assert_true(fabs(L - loss_eval(f, w, n, x, lab, ce)) < 1e-4 * (1 + fabs(L)));
        assert_true(L == Lm);
        assert_true(relk < 1e-2);
        if (!spline) assert_true(rel < 1e-2);
        assert_true(mrel < 1e-4);
        rf_free(g0);
        rf_flow_ws_free(w);
        rf_flow_ws_free(wm);
        rf_flow_free(f);
    }
}

/* A class base tied over time: one mean and scale per latent channel of each scale (groups
 * counted by hand), the same log p as an untied base holding the expanded values, sampling from
 * the tied moments, and a model file that keeps the tie. */
static void test_tied_class_base(void **s) {
    (void)s;
    const int C = 2, T = 8, D = C * T, n = 6, K = 3;
    rf_flow *ft = make_ts_h(C, T, 2, 1, 4, 0, RF_BASE_CLASS, K, 0.1f, 77, 1);
    rf_flow *fu = make_ts_h(C, T, 2, 1, 4, 0, RF_BASE_CLASS, K, 0.1f, 77, 0);
    /* scale 0 factors out 2 channels of T/2 = 4 samples (z[8..16)); the last scale keeps
     * 4 channels of T/4 = 2 samples (z[0..8)): 6 groups */
    assert_int_equal(ft->base.n_groups, 6);
    assert_int_equal(ft->base.n_params, 2 * 6 * K);
    assert_int_equal(fu->base.n_params, 2 * D * K);
    const int want[16] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5};
    assert_memory_equal(ft->base.group, want, sizeof want);
    /* same layers, untied base = expanded tied moments */
    memcpy(fu->params, ft->params, sizeof(float) * ft->base.offset);
    memcpy(fu->shift, ft->shift, sizeof(float) * D);
    memcpy(fu->scale, ft->scale, sizeof(float) * D);
    for (int c = 0; c < K; c++)
        rf_base_class_moments(&ft->base, ft->params + ft->base.offset, c, fu->params + fu->base.offset + (size_t)c * D,
                              fu->params + fu->base.offset + (size_t)(K + c) * D);
    float x[6 * 16], lt[6], lu[6], pt[6 * 3], pu[6 * 3];
    int y[6];
    randn(x, (size_t)n * D, 1.0f, 5);
    for (int i = 0; i < n; i++) y[i] = i % K;
    rf_flow_ws *wt = rf_flow_ws_create(ft, n, 0, NULL), *wu = rf_flow_ws_create(fu, n, 0, NULL);
    rf_flow_log_prob(ft, wt, n, x, y, lt);
    rf_flow_log_prob(fu, wu, n, x, y, lu);
    rf_flow_class_log_posterior(ft, wt, n, x, NULL, pt);
    rf_flow_class_log_posterior(fu, wu, n, x, NULL, pu);
    for (int i = 0; i < n; i++) assert_true(fabsf(lt[i] - lu[i]) < 1e-4f * (1 + fabsf(lu[i])));
    for (int i = 0; i < n * K; i++) assert_true(fabsf(pt[i] - pu[i]) < 1e-4f);
    /* samples of class 1 in latent space: per group, the spread follows that group's scale */
    rf_rng r;
    rf_rng_seed(&r, 3);
    const int m = 4000;
    float *z = rf_floats((size_t)m * D, NULL);
    int *lab = malloc(sizeof(int) * m);
    for (int i = 0; i < m; i++) lab[i] = 1;
    rf_base_sample(&ft->base, ft->params + ft->base.offset, m, lab, &r, z);
    float mu[16], ls[16];
    rf_base_class_moments(&ft->base, ft->params + ft->base.offset, 1, mu, ls);
    for (int j = 0; j < D; j++) {
        double s1 = 0, s2 = 0;
        for (int i = 0; i < m; i++) {
            s1 += z[(size_t)i * D + j];
            s2 += (double)z[(size_t)i * D + j] * z[(size_t)i * D + j];
        }
        const double mean = s1 / m, sd = sqrt(s2 / m - mean * mean);
        assert_true(fabs(mean - mu[j]) < 0.1 * exp(ls[j]));
        assert_true(fabs(sd / exp(ls[j]) - 1) < 0.08);
    }
    /* the model file keeps the tie */
    char path[512];
    rf_test_tmp(path, sizeof path, "tied.rf");
    rf_err e = {0};
    assert_int_equal(rf_flow_save(ft, path, &e), RF_OK);
    rf_flow *g = rf_flow_load(path, &e);
    assert_non_null(g);
    assert_int_equal(g->spec.class_tie, 1);
    assert_int_equal(g->base.n_groups, 6);
    rf_flow_ws *wg = rf_flow_ws_create(g, n, 0, NULL);
    float lg[6];
    rf_flow_log_prob(g, wg, n, x, y, lg);
    assert_memory_equal(lg, lt, sizeof lt);
    unlink(path);
    rf_free(z);
    free(lab);
    rf_flow_ws_free(wt);
    rf_flow_ws_free(wu);
    rf_flow_ws_free(wg);
    rf_flow_free(ft);
    rf_flow_free(fu);
    rf_flow_free(g);
}

/* Per-scale parts sum to log p(x) for every base; on a fresh flow whose only non-trivial layer
 * is one ActNorm of scale 1, each part equals the base density of that scale's latent block
 * (plus the known log-dets), computed here from z independently. */
static void test_scale_report(void **s) {
    (void)s;
    const int C = 2, T = 16, D = C * T, n = 300; /* n > 256: more than one internal batch */
    float *x = rf_floats((size_t)n * D, NULL), *lp = rf_floats(n, NULL), *z = rf_floats((size_t)n * D, NULL);
    int *y = malloc(sizeof(int) * n);
    randn(x, (size_t)n * D, 1.0f, 12);
    for (int i = 0; i < n; i++) y[i] = (i * 7) % 3;
    const rf_base_kind bases[4] = {RF_BASE_NORMAL, RF_BASE_DIAG, RF_BASE_CLASS, RF_BASE_CLASS};
    for (int v = 0; v < 4; v++) {
        const int with_labels = v == 2;
        rf_flow *f = make_ts(C, T, 3, 2, v % 2, bases[v], bases[v] == RF_BASE_CLASS ? 3 : 0, 0.05f, 40 + v);
        rf_flow_ws *w = rf_flow_ws_create(f, 64, 0, NULL);
        const int S = rf_flow_n_scales(f);
        assert_int_equal(S, 3);
        double *ps = malloc(sizeof(double) * n * (S + 1));
        rf_scale_report r;
        rf_err e;
        if (rf_flow_scale_report(f, n, x, with_labels ? y : NULL, &r, ps, &e)) fail_msg("report: %s", e.msg);
        rf_flow_log_prob(f, w, n, x, with_labels ? y : NULL, lp);
        double worst = 0, mean_lp = 0, bpd = 0;
        for (int i = 0; i < n; i++) {
            double t = 0;
            for (int k = 0; k <= S; k++) t += ps[i * (S + 1) + k];
            worst = fmax(worst, fabs(t - lp[i]) / fmax(1, fabs(lp[i])));
            mean_lp += lp[i] / n;
        }
        int dsum = 0;
        for (int k = 0; k < S; k++) {
            dsum += r.dims[k];
            bpd += r.share_bits_per_dim[k];
        }
        bpd += r.class_nats / (D * log(2.0));
        printf("[scale report %-6s%s] dims %d/%d/%d; bits/dim per scale %.3f %.3f %.3f (class term %.3f nats); "
               "total %.4f nats vs -mean log p %.4f; max per-row rel diff %.1e\n",
               rf_base_kind_name(bases[v]), with_labels ? "+y" : "  ", r.dims[0], r.dims[1], r.dims[2],
               r.bits_per_dim[0], r.bits_per_dim[1], r.bits_per_dim[2], r.class_nats, r.total_nll_nats, -mean_lp,
               worst);
        assert_int_equal(dsum, D);
        assert_int_equal(r.dims[0], D / 2);
        assert_int_equal(r.dims[1], D / 4);
        assert_int_equal(r.dims[2], D / 4);
        assert_true(worst < 2e-5);
        assert_true(fabs(r.total_nll_nats + mean_lp) < 1e-4 * (1 + fabs(mean_lp)));
        assert_true(fabs(bpd - r.total_bits_per_dim) < 1e-9);
        if (bases[v] == RF_BASE_CLASS && !with_labels) assert_true(r.class_nats != 0.0);
        else assert_true(r.class_nats == 0.0);
        free(ps);
        rf_flow_ws_free(w);
        rf_flow_free(f);
    }
    /* independent check of the split */
    rf_flow *f = make_ts(C, T, 3, 2, 0, RF_BASE_NORMAL, 0, 0.0f, 50);
    int k1 = -1;
    for (int k = 0; k < f->n_layers && k1 < 0; k++) {
        int c, t;
        rf_ts_layer_shape(f->layers[k], &c, &t);
        if (strcmp(f->layers[k]->ops->kind, "ts_actnorm") == 0 && c * t == D / 2) k1 = k;
    }
    assert_true(k1 > 0);
    const int ch = 4, len = 4; /* scale 1: 2C channels x T/4 samples */
    for (int c = 0; c < ch; c++) f->params[f->layers[k1]->offset + ch + c] = 0.1f * (c + 1);
    const double ld1 = len * 0.1 * (1 + 2 + 3 + 4);
    rf_flow_ws *w = rf_flow_ws_create(f, 64, 0, NULL);
    rf_flow_forward(f, w, n, x, z, NULL);
    double *ps = malloc(sizeof(double) * n * 4), lds = 0, worst = 0;
    rf_scale_report r;
    assert_int_equal(rf_flow_scale_report(f, n, x, NULL, &r, ps, NULL), RF_OK);
    for (int j = 0; j < D; j++) lds -= log(f->scale[j]);
    const int lo[3] = {D / 2, D / 4, 0}, hi[3] = {D, D / 2, D / 4};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 3; k++) {
            double b = 0;
            for (int j = lo[k]; j < hi[k]; j++) b += -0.5 * z[i * D + j] * z[i * D + j] - 0.5 * LOG_2PI;
            const double expect = b + (k == 0 ? lds : 0) + (k == 1 ? ld1 : 0);
            worst = fmax(worst, fabs(ps[i * 4 + k] - expect));
        }
    printf("[scale report, known split] max |part - (base density of the block + known log-dets)| = %.2e\n", worst);
    assert_true(worst < 1e-4);
    /* a non-tsflow model reports one scale */
    rf_flow_spec sp;
    rf_flow_spec_default(&sp, RF_FLOW_GLOW, D);
    sp.blocks = 1;
    sp.hidden = 4;
    rf_rng rr;
    rf_rng_seed(&rr, 1);
    rf_flow *g = rf_flow_create(&sp, &rr, NULL);
    assert_int_equal(rf_flow_scale_report(g, 10, x, NULL, &r, NULL, NULL), RF_OK);
    assert_int_equal(r.n_scales, 1);
    assert_int_equal(r.dims[0], D);
    rf_err e;
    int bad[3] = {0, 5, 1};
    rf_flow *h = make_ts(C, T, 2, 1, 0, RF_BASE_CLASS, 3, 0.0f, 2);
    assert_int_equal(rf_flow_scale_report(h, 3, x, bad, &r, NULL, &e), RF_EARG);
    printf("bad label rejected: %s\n", e.msg);
    rf_flow_free(h);
    rf_flow_free(g);
    free(ps);
    rf_flow_ws_free(w);
    rf_flow_free(f);
    rf_free(x);
    rf_free(lp);
    rf_free(z);
    free(y);
}

/* ------------------------------------------------------------------ factored-out tails
 * The workspace runs ts layers through ops that leave the floats after their active prefix alone
 * and carries those (the factored-out tails) itself, once per scale. The reference below runs
 * every layer through its own ops, which copy the rest of the row, as the engine did before:
 * stored activations, or (memory-saving) each layer's input rebuilt from its output by the
 * inverse. z, log-dets, inverses, samples, loss and gradients must agree bit for bit. Before each
 * check the workspace processes another batch, so a float the engine failed to carry would be
 * that batch's, not a leftover of the same computation. */

static float ref_std_logdet(const rf_flow *f) {
    double t = 0;
    for (int j = 0; j < f->D; j++) t -= log(f->scale[j]);
    return (float)t;
}

static size_t ref_max_floats(const rf_flow *f, int n, int scratch) {
    size_t m = 1;
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        const size_t q = scratch ? l->ops->scratch_floats(l, n) : l->ops->cache_floats(l, n);
        if (q > m) m = q;
    }
    return m;
}

/* acts[k] = input of layer k (k = 0..L, acts[L] = z); caches[k] filled unless caches is NULL. */
static void ref_forward(const rf_flow *f, int n, const float *x, float *acts, float **caches,
                        float *scr, float *ld) {
    const int D = f->D;
    const size_t nD = (size_t)n * D;
    const float lds = ref_std_logdet(f);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) acts[(size_t)i * D + j] = (x[(size_t)i * D + j] - f->shift[j]) / f->scale[j];
        ld[i] = lds;
    }
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        l->ops->forward(l, f->params + l->offset, n, acts + k * nD, acts + (k + 1) * nD, ld,
                        caches ? caches[k] : NULL, scr);
    }
}

static void ref_inverse(const rf_flow *f, int n, const float *z, float *x, float *ld, float *scr) {
    const int D = f->D;
    const size_t nD = (size_t)n * D;
    float *a = rf_floats(nD, NULL), *b = rf_floats(nD, NULL);
    memcpy(a, z, sizeof(float) * nD);
    memset(ld, 0, sizeof(float) * n);
    for (int k = f->n_layers - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[k];
        l->ops->inverse(l, f->params + l->offset, n, a, b, ld, scr);
        float *t = a;
        a = b;
        b = t;
    }
    const float lds = ref_std_logdet(f);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) x[(size_t)i * D + j] = a[(size_t)i * D + j] * f->scale[j] + f->shift[j];
        ld[i] = -ld[i] + lds;
    }
    rf_free(a);
    rf_free(b);
}

/* Mean -log p(x) (unconditional base) and its gradient into grads (zeroed by the caller). */
static double ref_loss_grad(const rf_flow *f, int n, const float *x, int memsave, float *grads) {
    const int D = f->D, L = f->n_layers;
    const size_t nD = (size_t)n * D, mc = ref_max_floats(f, n, 0);
    float *acts = rf_floats((size_t)(L + 1) * nD, NULL), *scr = rf_floats(ref_max_floats(f, n, 1), NULL);
    float **caches = calloc((size_t)L + 1, sizeof *caches);
    for (int k = 0; k <= L; k++) caches[k] = rf_floats(mc, NULL);
    float *dy = rf_floats(nD, NULL), *dx = rf_floats(nD, NULL), *y = rf_floats(nD, NULL), *xr = rf_floats(nD, NULL);
    float *yy = rf_floats(nD, NULL), *ld = rf_floats(n, NULL), *tld = rf_floats(n, NULL), *g = rf_floats(n, NULL);
    float *logp = rf_floats(n, NULL), *dld = rf_floats(n, NULL);
    ref_forward(f, n, x, acts, memsave ? NULL : caches, scr, ld);
    const float *z = acts + (size_t)L * nD, *bp = f->params + f->base.offset;
    const double inv_n = 1.0 / n;
    double loss = 0;
    rf_base_log_prob(&f->base, bp, n, z, NULL, logp);
    for (int i = 0; i < n; i++) {
        loss += -(logp[i] + ld[i]);
        g[i] = dld[i] = (float)-inv_n;
    }
    rf_base_backward(&f->base, bp, n, z, NULL, g, dy, grads + f->base.offset);
    memcpy(y, z, sizeof(float) * nD);
    for (int k = L - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[k];
        const float *p = f->params + l->offset, *xin = acts + (size_t)k * nD, *cache = caches[k];
        if (memsave) {
            l->ops->inverse(l, p, n, y, xr, tld, scr);
            l->ops->forward(l, p, n, xr, yy, tld, caches[L], scr);
            xin = xr;
            cache = caches[L];
            float *t = y;
            y = xr;
            xr = t;
        }
        l->ops->backward(l, p, n, xin, dy, dld, dx, grads + l->offset, cache, scr);
        float *t = dy;
        dy = dx;
        dx = t;
    }
    for (int k = 0; k <= L; k++) rf_free(caches[k]);
    free(caches);
    float *bufs[] = {acts, scr, dy, dx, y, xr, yy, ld, tld, g, logp, dld};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) rf_free(bufs[i]);
    return loss * inv_n;
}

static int bits_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, sizeof(float) * n) == 0; }

/* Every engine path of f (memory-saving off and on; 1 and 2 threads) against the reference. With
 * 2 threads (2 shards of rows) only a flow of ts layers alone (exact) computes every row as the
 * reference does; its loss and gradient are sums in another order there. */
static void check_tail_flow(const char *name, rf_flow *f, int n, int exact, int fd) {
    const int D = f->D;
    const size_t nD = (size_t)n * D, P = f->n_params;
    float *x = rf_floats(nD, NULL), *xo = rf_floats(nD, NULL), *z = rf_floats(nD, NULL), *zr = rf_floats(nD, NULL);
    float *x2 = rf_floats(nD, NULL), *x2r = rf_floats(nD, NULL), *acts = rf_floats((size_t)(f->n_layers + 1) * nD, NULL);
    float *ld = rf_floats(n, NULL), *ldr = rf_floats(n, NULL), *gr = rf_floats(P, NULL), *g0 = rf_floats(P, NULL);
    float *scr = rf_floats(ref_max_floats(f, n, 1), NULL);
    randn(x, nD, 1.0f, 501);
    randn(xo, nD, 3.0f, 502);
    ref_forward(f, n, x, acts, NULL, scr, ldr);
    memcpy(zr, acts + (size_t)f->n_layers * nD, sizeof(float) * nD);
    int changed = 0; /* the flow is not the identity on any part of the row */
    for (int j = 0; j < D; j++) changed += zr[j] != (x[j] - f->shift[j]) / f->scale[j];
    assert_true(changed > D / 2);
    for (int ms = 0; ms < 2; ms++)
        for (int th = 1; th <= 2; th++) {
            rf_flow_ws_opts o = {.max_batch = n, .memory_saving = ms, .threads = th};
            rf_flow_ws *w = rf_flow_ws_create_opts(f, &o, NULL);
            assert_non_null(w);
            /* forward and log-det */
            rf_flow_forward(f, w, n, xo, z, ld);
            rf_flow_forward(f, w, n, x, z, ld);
            if (th > 1 && !exact) { /* dense layers' GEMMs may round differently on fewer rows */
                double dz = 0, dl = 0;
                for (size_t i = 0; i < nD; i++) dz = fmax(dz, fabs(z[i] - zr[i]) / (1 + fabs(zr[i])));
                for (int i = 0; i < n; i++) dl = fmax(dl, fabs(ld[i] - ldr[i]) / (1 + fabs(ldr[i])));
                printf("[tail %s, memory-saving %d, 2 threads] z within %.1e, log-det within %.1e (relative)\n",
                       name, ms, dz, dl);
                assert_true(dz < 1e-5 && dl < 1e-5);
                rf_flow_ws_free(w);
                continue;
            }
            assert_true(bits_equal(z, zr, nD));
            assert_true(bits_equal(ld, ldr, n));
            /* inverse, into another buffer and in place (as sampling does) */
            float *ldi = rf_floats(n, NULL), *ldir = rf_floats(n, NULL);
            ref_inverse(f, n, zr, x2r, ldir, scr);
            rf_flow_inverse(f, w, n, xo, x2, ldi);
            rf_flow_inverse(f, w, n, zr, x2, ldi);
            assert_true(bits_equal(x2, x2r, nD));
            assert_true(bits_equal(ldi, ldir, n));
            memcpy(x2, zr, sizeof(float) * nD);
            rf_flow_inverse(f, w, n, xo, xo, NULL);
            randn(xo, nD, 3.0f, 502);
            rf_flow_inverse(f, w, n, x2, x2, NULL);
            assert_true(bits_equal(x2, x2r, nD));
            double rt = 0;
            for (size_t i = 0; i < nD; i++) rt = fmax(rt, fabs(x2[i] - x[i]));
            assert_true(rt < 1e-4);
            /* samples: the base draws through the reference inverse */
            rf_rng r;
            rf_rng_seed(&r, 77);
            rf_flow_sample(f, w, n, NULL, &r, x2);
            rf_rng_seed(&r, 77);
            rf_base_sample(&f->base, f->params + f->base.offset, n, NULL, &r, z);
            ref_inverse(f, n, z, x2r, ldir, scr);
            assert_true(bits_equal(x2, x2r, nD));
            rf_free(ldi);
            rf_free(ldir);
            /* loss and gradient (with 2 threads the shards' sums differ from one pass's in
             * round-off; there the reference is only approached) */
            memset(f->grads, 0, sizeof(float) * P);
            rf_flow_loss_grad(f, w, n, xo, NULL, 0.0f);
            memset(f->grads, 0, sizeof(float) * P);
            const double Lw = rf_flow_loss_grad(f, w, n, x, NULL, 0.0f);
            memset(gr, 0, sizeof(float) * P);
            const double Lr = ref_loss_grad(f, n, x, ms, gr);
            double num = 0, den = 0;
            for (size_t i = 0; i < P; i++) {
                num += ((double)f->grads[i] - gr[i]) * ((double)f->grads[i] - gr[i]);
                den += (double)gr[i] * gr[i];
            }
            printf("[tail %s, memory-saving %d, %d thread%s] z, log-det, inverse, samples %s; loss %.6f vs %.6f, "
                   "gradient rel. diff %.2e\n",
                   name, ms, th, th > 1 ? "s" : "", "bit-identical", Lw, Lr, sqrt(num / fmax(den, 1e-30)));
            if (th == 1) {
                assert_true(Lw == Lr);
                assert_true(bits_equal(f->grads, gr, P));
            } else {
                assert_true(fabs(Lw - Lr) <= 1e-5 * (1 + fabs(Lr)));
                assert_true(sqrt(num / fmax(den, 1e-30)) < 1e-4);
            }
            if (th == 1 && ms == 0) memcpy(g0, f->grads, sizeof(float) * P);
            /* finite differences of the engine's own log p over a sample of the parameters */
            if (fd && th == 1) {
                double fnum = 0, fden = 0;
                float *lp = rf_floats(n, NULL);
                for (size_t i = (size_t)ms; i < P; i += 5) {
                    const float h = 1e-3f * fmaxf(1.0f, fabsf(f->params[i])), pv = f->params[i];
                    double Lpm[2];
                    for (int sgn = 0; sgn < 2; sgn++) {
                        f->params[i] = sgn ? pv - h : pv + h;
                        rf_flow_log_prob(f, w, n, x, NULL, lp);
                        Lpm[sgn] = 0;
                        for (int q = 0; q < n; q++) Lpm[sgn] -= lp[q];
                        Lpm[sgn] /= n;
                    }
                    f->params[i] = pv;
                    const double gfd = (Lpm[0] - Lpm[1]) / ((double)(pv + h) - (double)(pv - h));
                    fnum += (gfd - f->grads[i]) * (gfd - f->grads[i]);
                    fden += gfd * gfd;
                }
                rf_free(lp);
                printf("[tail %s, memory-saving %d] gradient vs central differences (every 5th parameter): "
                       "rel. error %.2e\n", name, ms, sqrt(fnum / fmax(fden, 1e-30)));
                assert_true(sqrt(fnum / fmax(fden, 1e-30)) < 1e-2);
            }
            rf_flow_ws_free(w);
        }
    /* every layer has a gradient (the tails' gradient reached the earlier scales) */
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        double a = 0;
        for (size_t i = 0; i < l->n_params; i++) a += fabs(g0[l->offset + i]);
        if (l->n_params) assert_true(a > 0);
    }
    float *bufs[] = {x, xo, z, zr, x2, x2r, acts, ld, ldr, gr, g0, scr};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) rf_free(bufs[i]);
}

/* The layers of a tsflow (scales 0 and 1, then 2) with dense layers between and after them: a
 * narrower layer followed by a wider one passes its input's rest through (not in a plain
 * tsflow). */
static rf_flow *make_mixed(const rf_flow *f, uint64_t seed) {
    const int D = f->D, per = f->n_layers / 3; /* layers per scale */
    rf_err e;
    rf_rng r;
    rf_rng_seed(&r, seed);
    rf_flow *g = rf_flow_alloc_layers(&f->spec, f->n_layers + 2, &e);
    assert_non_null(g);
    for (int k = 0; k < f->n_layers; k++) {
        if (k == 2 * per) g->layers[g->n_layers++] = rf_actnorm_create(D, &e);
        cJSON *j = f->layers[k]->ops->to_json(f->layers[k]);
        g->layers[g->n_layers++] = rf_layer_from_json(j, &e);
        cJSON_Delete(j);
    }
    g->layers[g->n_layers++] = rf_lu_linear_create(D, &r, &e);
    for (int k = 0; k < g->n_layers; k++) assert_non_null(g->layers[k]);
    assert_int_equal(rf_flow_assemble(g, &e), RF_OK);
    for (int k = 0, q = 0; k < g->n_layers; k++) {
        rf_layer *l = g->layers[k];
        float *p = g->params + l->offset;
        if (q < f->n_layers && strcmp(l->ops->kind, f->layers[q]->ops->kind) == 0) {
            memcpy(p, f->params + f->layers[q]->offset, sizeof(float) * l->n_params);
            q++;
        } else {
            if (l->ops->init_params) l->ops->init_params(l, p, &r);
            for (size_t i = 0; i < l->n_params; i++) p[i] += 0.1f * (float)rf_rng_normal(&r);
        }
    }
    memcpy(g->params + g->base.offset, f->params + f->base.offset, sizeof(float) * g->base.n_params);
    memcpy(g->shift, f->shift, sizeof(float) * D);
    memcpy(g->scale, f->scale, sizeof(float) * D);
    return g;
}

static void test_tsflow_tails(void **s) {
    (void)s;
    /* shards need single-threaded BLAS (rf_set_threads); restored at the end */
    const int blas = openblas_get_num_threads(), levels = omp_get_max_active_levels();
    rf_set_threads(2);
    rf_flow *f = make_ts_h(3, 16, 3, 2, 6, 0, RF_BASE_DIAG, 0, 0.1f, 41, 0);
    check_tail_flow("affine 3x16 S=3", f, 32, 1, 1);
    rf_flow *g = make_mixed(f, 5);
    /* the plan: scale-1 layers pass [D/2, D) through to the dense ActNorm after them */
    assert_int_equal(g->n_layers, f->n_layers + 2);
    check_tail_flow("mixed: ts scales 0-1, dense ActNorm, ts scale 2, dense LU", g, 32, 0, 1);
    rf_flow_free(g);
    rf_flow_free(f);
    f = make_ts_h(2, 16, 3, 1, 4, 1, RF_BASE_NORMAL, 0, 0.05f, 42, 0);
    check_tail_flow("spline 2x16 S=3", f, 32, 1, 0);
    rf_flow_free(f);
    f = make_ts_h(2, 64, 2, 1, 4, 0, RF_BASE_NORMAL, 0, 0.1f, 43, 0); /* T = 32, 16: pointwise 1x1 path */
    check_tail_flow("affine 2x64 S=2", f, 32, 1, 0);
    rf_flow_free(f);
    openblas_set_num_threads(blas);
    omp_set_max_active_levels(levels);
}

static void test_tsflow_spec(void **s) {
    (void)s;
    rf_flow_spec sp;
    rf_err e;
    rf_flow_type t;
    assert_int_equal(rf_flow_type_parse("tsflow", &t), RF_OK);
    assert_int_equal(t, RF_FLOW_TS);
    assert_string_equal(rf_flow_type_name(RF_FLOW_TS), "tsflow");
    const int shapes[5][2] = {{19, 2000}, {2, 32}, {1, 2}, {6, 3000}, {72, 2}};
    for (int q = 0; q < 5; q++) {
        assert_int_equal(rf_tsflow_spec_default(&sp, shapes[q][0], shapes[q][1], &e), RF_OK);
        printf("default for %d x %d: scales %d, blocks %d, hidden %d, kernel %d\n", shapes[q][0], shapes[q][1],
               sp.scales, sp.blocks, sp.hidden, sp.kernel);
        assert_int_equal(rf_flow_spec_check(&sp, &e), RF_OK);
        assert_int_equal(sp.length % (1 << sp.scales), 0);
    }
    rf_tsflow_spec_default(&sp, 19, 2000, NULL);
    assert_int_equal(sp.scales, 4);
    assert_int_equal(rf_tsflow_spec_default(&sp, 4, 101, &e), RF_EARG);
    printf("odd window length: %s\n", e.msg);
    rf_flow_spec_default(&sp, RF_FLOW_TS, 24);
    assert_int_equal(rf_flow_spec_check(&sp, &e), RF_OK);
    assert_int_equal(sp.scales, 3); /* 24 = 3 * 2^3: 3 scales leave 3 samples */
    rf_tsflow_spec_default(&sp, 2, 32, NULL);
    sp.scales = 6;
    assert_int_equal(rf_flow_spec_check(&sp, &e), RF_EARG);
    printf("too many scales: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "divisible"));
    rf_tsflow_spec_default(&sp, 2, 32, NULL);
    sp.length = 16;
    assert_int_equal(rf_flow_spec_check(&sp, &e), RF_EARG);
    printf("shape mismatch: %s\n", e.msg);
    rf_tsflow_spec_default(&sp, 2, 32, NULL);
    sp.kernel = 4;
    assert_int_equal(rf_flow_spec_check(&sp, &e), RF_EARG);
    printf("even kernel: %s\n", e.msg);
    rf_rng r;
    rf_rng_seed(&r, 1);
    assert_null(rf_flow_create(&sp, &r, &e));
    /* an old-style (pre-tsflow) spec still loads, with the defaults */
    rf_flow_spec_default(&sp, RF_FLOW_NSF, 5);
    cJSON *j = rf_flow_spec_to_json(&sp);
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "channels"));
    rf_flow_spec back;
    assert_int_equal(rf_flow_spec_from_json(j, &back, &e), RF_OK);
    assert_int_equal(back.channels, 1);
    assert_int_equal(back.length, 5);
    cJSON_Delete(j);
}

/* ------------------------------------------------------------------ training */

/* Two coupled AR(2) channels (resonances at different frequencies, channel 1 driven by
 * channel 0), 32 samples, stationary start from a burn-in. */
static void ar2_windows(rf_matrix *m, int n, uint64_t seed) {
    const int C = 2, T = 32, burn = 64;
    rf_matrix_alloc(m, n, C * T, NULL);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        double a1 = 0, a2 = 0, b1 = 0, b2 = 0;
        for (int t = -burn; t < T; t++) {
            const double a = 1.5 * a1 - 0.8 * a2 + rf_rng_normal(&r);
            const double b = 0.9 * b1 - 0.6 * b2 + 0.6 * a1 + 0.5 * rf_rng_normal(&r);
            a2 = a1;
            a1 = a;
            b2 = b1;
            b1 = b;
            if (t >= 0) {
                m->x[(size_t)i * C * T + t] = (float)a;
                m->x[(size_t)i * C * T + T + t] = (float)b;
            }
        }
    }
}

static void test_tsflow_training(void **s) {
    (void)s;
    const int C = 2, T = 32, D = C * T;
    rf_matrix tr, va;
    ar2_windows(&tr, 2000, 1);
    ar2_windows(&va, 800, 2);
    /* diagonal Gaussian fitted on the training rows */
    double diag = 0;
    for (int j = 0; j < D; j++) {
        double m = 0, v = 0;
        for (int i = 0; i < tr.n; i++) m += tr.x[(size_t)i * D + j] / tr.n;
        for (int i = 0; i < tr.n; i++) v += (tr.x[(size_t)i * D + j] - m) * (tr.x[(size_t)i * D + j] - m) / tr.n;
        for (int i = 0; i < va.n; i++) {
            const double d = va.x[(size_t)i * D + j] - m;
            diag += (0.5 * d * d / v + 0.5 * log(v) + 0.5 * LOG_2PI) / va.n;
        }
    }
    rf_gauss g;
    rf_err e;
    assert_int_equal(rf_gauss_fit(&tr, 1e-6, &g, &e), RF_OK);
    const double full = rf_gauss_nll(&g, &va, NULL);
    rf_gauss_free(&g);

    rf_flow_spec sp;
    assert_int_equal(rf_tsflow_spec_default(&sp, C, T, &e), RF_OK);
    sp.scales = 2;
    sp.blocks = 2;
    sp.hidden = 16;
    sp.kernel = 3;
    rf_rng r;
    rf_rng_seed(&r, 3);
    rf_flow *f = rf_flow_create(&sp, &r, &e);
    if (!f) fail_msg("create: %s", e.msg);
    /* the fresh model with the training standardisation and ActNorm initialisation */
    assert_int_equal(rf_standardizer_fit(&tr, 0, f->shift, f->scale, &e), RF_OK);
    assert_int_equal(rf_flow_data_init(f, 1024, tr.x, &e), RF_OK);
    rf_flow_ws *w = rf_flow_ws_create(f, 500, 1, NULL);
    const double fresh = rf_eval_nll(f, w, &va, NULL, NULL);
    rf_flow_ws_free(w);

    rf_train_cfg c;
    rf_train_cfg_default(&c);
    c.epochs = 8;
    c.batch = 64;
    c.lr = 3e-3f;
    c.progress = 0;
    c.threads = 2;
    c.patience = 0;
    rf_train_result res;
    const double t0 = rf_now();
    if (rf_train(f, &tr, NULL, &va, NULL, &c, &res, &e)) fail_msg("train: %s", e.msg);
    const double secs = rf_now() - t0;
    w = rf_flow_ws_create(f, 500, 0, NULL);
    const double trained = rf_eval_nll(f, w, &va, NULL, NULL);
    rf_scale_report rep;
    assert_int_equal(rf_flow_scale_report(f, va.n, va.x, NULL, &rep, NULL, &e), RF_OK);
    printf("[tsflow AR(2) 2x32] val NLL (nats/window): fresh %.2f, diagonal Gaussian %.2f, trained %.2f, "
           "full-covariance Gaussian (the true family) %.2f; %d epochs in %.1f s (%.0f windows/s)\n",
           fresh, diag, trained, full, res.epochs_run, secs, res.samples_per_sec);
    printf("  per scale (bits/dim): %.3f (%d dims) %.3f (%d dims); total %.4f bits/dim = %.2f nats\n",
           rep.bits_per_dim[0], rep.dims[0], rep.bits_per_dim[1], rep.dims[1], rep.total_bits_per_dim,
           rep.total_nll_nats);
    assert_true(fabs(rep.total_nll_nats - trained) < 1e-3 * fabs(trained) + 1e-3);
    /* The data are Gaussian, so the full-covariance Gaussian is the best model of its family;
     * the trained flow must close most of the way to it: at least half of the gap left by the
     * fresh model (Haar + per-channel ActNorm already help) and 80 % of the diagonal's. */
    assert_true(trained < fresh - 0.5 * (fresh - full));
    assert_true(trained < diag - 0.8 * (diag - full));
    rf_flow_ws_free(w);
    rf_train_result_free(&res);
    rf_flow_free(f);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv1d),
        cmocka_unit_test(test_squeeze),
        cmocka_unit_test(test_ts_actnorm),
        cmocka_unit_test(test_ts_conv1x1),
        cmocka_unit_test(test_ts_coupling),
        cmocka_unit_test(test_tsflow_structure),
        cmocka_unit_test(test_tsflow_roundtrip),
        cmocka_unit_test(test_tsflow_bruteforce_logdet),
        cmocka_unit_test(test_tsflow_fresh_identity),
        cmocka_unit_test(test_tsflow_model_file),
        cmocka_unit_test(test_tsflow_gradients),
        cmocka_unit_test(test_tsflow_tails),
        cmocka_unit_test(test_scale_report),
        cmocka_unit_test(test_tied_class_base),
        cmocka_unit_test(test_tsflow_spec),
        cmocka_unit_test(test_tsflow_training),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
