/* DARTS over coupling conditioners (renflow/supernet.h): candidate names; the mixed coupling
 * (identity at init, inverse, brute-force log-det, finite-difference gradients of the weights and
 * of alpha); the supernet flow's gradients; exact discretisation (one-hot alpha and path mode
 * give the same log p as the discretised flow, which saves and loads); a synthetic task on which
 * DARTS must put the largest weight on the only candidate that can express the conditional;
 * classification; and the study runner (trials stored, files, resume, stop flag). */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "renflow/supernet.h"
#include "../src/search/search_internal.h"

/* LeakSanitizer (RF_SANITIZE builds): the study report draws with cairo, whose fonts leave
 * fontconfig's process-lifetime caches (see tests/test_viz.c); only fontconfig frames are
 * suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

static void cands_of(const char *list, rf_supernet_cfg *c) {
    rf_err e = {0};
    if (rf_supernet_cands_parse(list, c->cands, &c->n_cands, &e)) fail_msg("candidates %s: %s", list, e.msg);
}

static rf_supernet *make_sn(rf_flow_type t, int D, int B, const char *cands, rf_base_kind base, int C, uint64_t seed) {
    rf_supernet_cfg c;
    rf_supernet_cfg_default(&c, t, D);
    c.spec.blocks = B;
    c.spec.hidden = 8;
    c.spec.bins = 5;
    c.spec.bound = 3.0f;
    c.spec.base = base;
    c.spec.n_classes = C;
    if (cands) cands_of(cands, &c);
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_err e = {0};
    rf_supernet *s = rf_supernet_create(&c, &rng, &e);
    if (!s) fail_msg("supernet: %s", e.msg);
    return s;
}

/* every parameter away from its initial value (alpha by sd_alpha), standardisation non-trivial */
static void perturb(rf_supernet *s, float sd, float sd_alpha, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    rf_flow *f = s->flow;
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += sd * (float)rf_rng_normal(&r);
    for (int b = 0; b < s->blocks; b++) {
        float *a = rf_supernet_alpha(s, b);
        for (int k = 0; k < s->n_cands; k++) a[k] = sd_alpha * (float)rf_rng_normal(&r);
    }
    for (int j = 0; j < f->D; j++) {
        f->shift[j] = 0.1f * j;
        f->scale[j] = 1.0f + 0.1f * j;
    }
}

static void random_x(float *x, int n, float s, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) x[i] = s * (float)rf_rng_normal(&r);
}

/* ------------------------------------------------------------------ candidates */

static void test_candidates(void **state) {
    (void)state;
    rf_err e = {0};
    rf_supernet_cand c;
    char nm[32];
    const char *ok[] = {"zero", "relu-1", "tanh-2x32", "gelu-2-res", "relu-3x7-res"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        assert_int_equal(rf_supernet_cand_parse(ok[i], &c, &e), RF_OK);
        rf_supernet_cand_name(&c, nm, sizeof nm);
        assert_string_equal(nm, ok[i]);
    }
    assert_int_equal(rf_supernet_cand_parse("tanh-2x32", &c, &e), RF_OK);
    assert_int_equal(c.n_hidden, 2);
    assert_int_equal(c.hidden, 32);
    assert_int_equal(c.act, RF_ACT_TANH);
    const char *bad[] = {"", "relu", "foo-1", "relu-0", "relu-9", "relu-1-res", "relu-2x0", "relu-2x", "relu-2-resx", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        e.msg[0] = 0;
        assert_int_equal(rf_supernet_cand_parse(bad[i], &c, &e), RF_EARG);
        assert_true(strlen(e.msg) > 0);
    }
    rf_supernet_cand l[RF_SUPERNET_MAX_CANDS];
    int n = 0;
    assert_int_equal(rf_supernet_cands_parse("zero, relu-1 ,tanh-2x16", l, &n, &e), RF_OK);
    assert_int_equal(n, 3);
    assert_int_equal(rf_supernet_cands_parse("relu-1,relu-1", l, &n, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "twice"));
    assert_int_equal(rf_supernet_cands_parse("relu-1,,tanh-1", l, &n, &e), RF_EARG);
    assert_int_equal(rf_supernet_cands_default(l), 9);
    /* a bad configuration is refused with a message */
    rf_supernet_cfg cfg;
    rf_supernet_cfg_default(&cfg, RF_FLOW_MAF, 4);
    rf_rng rng;
    rf_rng_seed(&rng, 1);
    assert_null(rf_supernet_create(&cfg, &rng, &e));
    assert_non_null(strstr(e.msg, "maf"));
    rf_supernet_cfg_default(&cfg, RF_FLOW_GLOW, 1);
    assert_null(rf_supernet_create(&cfg, &rng, &e));
    rf_supernet_cfg_default(&cfg, RF_FLOW_GLOW, 4);
    cfg.n_cands = 0;
    assert_null(rf_supernet_create(&cfg, &rng, &e));
}

/* ------------------------------------------------------------------ the mixed coupling */

static void test_identity_at_init(void **state) {
    (void)state;
    const int D = 5, n = 7;
    float x[35], z[35], ld[7];
    random_x(x, n * D, 1.5f, 3);
    /* realnvp: ActNorm (b = s = 0) and mixed couplings: the whole fresh supernet is the identity */
    rf_supernet *s = make_sn(RF_FLOW_REALNVP, D, 3, NULL, RF_BASE_NORMAL, 0, 11);
    for (int b = 0; b < s->blocks; b++) { /* whatever alpha is */
        float *a = rf_supernet_alpha(s, b);
        for (int k = 0; k < s->n_cands; k++) a[k] = (float)(k - 3) * 0.7f;
    }
    rf_flow_ws *w = rf_flow_ws_create(s->flow, n, 0, NULL);
    rf_flow_forward(s->flow, w, n, x, z, ld);
    for (int i = 0; i < n * D; i++) assert_true(z[i] == x[i]);
    for (int i = 0; i < n; i++) assert_true(ld[i] == 0.0f);
    rf_flow_ws_free(w);
    rf_supernet_free(s);
    /* glow / nsf: every mixed coupling alone is the identity */
    for (int t = 0; t < 2; t++) {
        s = make_sn(t ? RF_FLOW_NSF : RF_FLOW_GLOW, D, 2, NULL, RF_BASE_NORMAL, 0, 12);
        for (int b = 0; b < s->blocks; b++) {
            const rf_layer *l = s->flow->layers[s->layer[b]];
            float *cache = rf_floats(l->ops->cache_floats(l, n) + 1, NULL), *scr = rf_floats(l->ops->scratch_floats(l, n) + 1, NULL);
            float y[35];
            memset(ld, 0, sizeof ld);
            l->ops->forward(l, s->flow->params + l->offset, n, x, y, ld, cache, scr);
            for (int i = 0; i < n * D; i++) assert_true(fabsf(y[i] - x[i]) <= 1e-6f * fmaxf(1, fabsf(x[i])));
            for (int i = 0; i < n; i++) assert_true(fabsf(ld[i]) <= 1e-6f);
            rf_free(cache);
            rf_free(scr);
        }
        rf_supernet_free(s);
    }
}

/* Inverse round trip, log-det against a brute-force Jacobian, and finite-difference gradients of
 * inputs and every parameter (alpha included) of single mixed couplings. */
static void test_layer_checks(void **state) {
    (void)state;
    const rf_flow_type types[3] = {RF_FLOW_REALNVP, RF_FLOW_GLOW, RF_FLOW_NSF};
    for (int t = 0; t < 3; t++)
        for (int pm = 0; pm < 2; pm++) {
            rf_supernet *s = make_sn(types[t], 5, 2, "zero,relu-1,tanh-2x6,gelu-2-res", RF_BASE_NORMAL, 0, 20 + t);
            if (pm) {
                const int path[2] = {2, 3};
                assert_int_equal(rf_supernet_set_path(s, path, NULL), RF_OK);
            }
            for (int b = 0; b < 2; b++) {
                const rf_layer *l = s->flow->layers[s->layer[b]];
                rf_layer_check c;
                /* perturbations as tests/test_layers.c uses for the plain couplings */
                rf_check_layer(l, 100 + b, t == 2 ? 1.5f : 1.0f, t == 2 ? 0.1f : 0.3f, &c);
                char name[64];
                snprintf(name, sizeof name, "%s b%d %s", rf_flow_type_name(types[t]), b, pm ? "path" : "mixed");
                rf_assert_layer_ok(name, &c);
                assert_true(c.grad_p_norm > 0);
            }
            rf_supernet_free(s);
        }
}

/* ------------------------------------------------------------------ whole-flow gradients */

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

static void grad_check(rf_flow_type t, rf_base_kind base, int C, float ce, int memsave) {
    const int D = 4, n = 10;
    rf_supernet *s = make_sn(t, D, 2, "zero,relu-1,tanh-2x6,gelu-2-res", base, C, 42);
    perturb(s, 0.2f, 1.0f, 43);
    rf_flow *f = s->flow;
    rf_flow_ws *w = rf_flow_ws_create(f, n, memsave, NULL);
    float x[40];
    int y[10];
    random_x(x, n * D, 1.2f, 7);
    for (int i = 0; i < n; i++) y[i] = i % (C > 0 ? C : 1);
    const int *lab = base == RF_BASE_CLASS ? y : NULL;
    memset(f->grads, 0, sizeof(float) * f->n_params);
    const double L = rf_flow_loss_grad(f, w, n, x, lab, ce);
    assert_true(fabs(L - loss_eval(f, w, n, x, lab, ce)) < 1e-4 * (1 + fabs(L)));
    unsigned char *is_alpha = calloc(f->n_params, 1);
    for (int b = 0; b < s->blocks; b++) memset(is_alpha + s->alpha_off[b], 1, (size_t)s->n_cands);
    double num[2] = {0, 0}, den[2] = {0, 0};
    for (size_t i = 0; i < f->n_params; i++) {
        const float h = 1e-3f * fmaxf(1.0f, fabsf(f->params[i])), v = f->params[i];
        f->params[i] = v + h;
        const double Lp = loss_eval(f, w, n, x, lab, ce);
        f->params[i] = v - h;
        const double Lm = loss_eval(f, w, n, x, lab, ce);
        f->params[i] = v;
        const double g = (Lp - Lm) / ((double)(v + h) - (double)(v - h));
        const int a = is_alpha[i];
        num[a] += (g - f->grads[i]) * (g - f->grads[i]);
        den[a] += g * g;
    }
    const double rw = sqrt(num[0]) / fmax(sqrt(den[0]), 1e-8), ra = sqrt(num[1]) / fmax(sqrt(den[1]), 1e-8);
    printf("[supernet %-7s base %-6s ce %.1f memsave %d] loss %.4f  weights: rel err %.2e (|g| %.3g)  alpha: rel err "
           "%.2e (|g| %.3g, %d values)\n",
           rf_flow_type_name(t), rf_base_kind_name(base), ce, memsave, L, rw, sqrt(den[0]), ra, sqrt(den[1]),
           s->blocks * s->n_cands);
    assert_true(rw < 1e-2);
    assert_true(ra < 1e-2);
    assert_true(sqrt(den[1]) > 1e-3); /* alpha matters: the check is not vacuous */
    free(is_alpha);
    rf_flow_ws_free(w);
    rf_supernet_free(s);
}

static void test_flow_gradients(void **state) {
    (void)state;
    grad_check(RF_FLOW_REALNVP, RF_BASE_NORMAL, 0, 0, 0);
    grad_check(RF_FLOW_GLOW, RF_BASE_DIAG, 0, 0, 1);
    grad_check(RF_FLOW_NSF, RF_BASE_NORMAL, 0, 0, 0);
    grad_check(RF_FLOW_GLOW, RF_BASE_CLASS, 3, 0.7f, 0);
}

/* The whole supernet flow: inverse round trip and total log-det against a brute-force Jacobian
 * (standardisation, ActNorm, LU and mixed couplings). */
static void test_flow_inverse_logdet(void **state) {
    (void)state;
    const int D = 4, n = 5;
    for (int t = 0; t < 2; t++) {
        rf_supernet *s = make_sn(t ? RF_FLOW_NSF : RF_FLOW_GLOW, D, 3, NULL, RF_BASE_NORMAL, 0, 50 + t);
        perturb(s, t ? 0.1f : 0.2f, 1.0f, 51);
        rf_flow *f = s->flow;
        rf_flow_ws *w = rf_flow_ws_create(f, n, 0, NULL);
        float x[20], z[20], x2[20], ld[5], ld2[5];
        random_x(x, n * D, 1.0f, 52);
        rf_flow_forward(f, w, n, x, z, ld);
        rf_flow_inverse(f, w, n, z, x2, ld2);
        double rt = 0, bf = 0, inv = 0;
        for (int i = 0; i < n * D; i++) rt = fmax(rt, fabs(x[i] - x2[i]));
        for (int i = 0; i < n; i++) inv = fmax(inv, fabs(ld[i] - ld2[i]));
        float xp[20], zp[20], zm[20], tmp[5];
        for (int r = 0; r < n; r++) {
            double J[16], J2[16];
            const float hs[2] = {2e-3f, 1e-3f};
            for (int q = 0; q < 2; q++)
                for (int j = 0; j < D; j++) {
                    memcpy(xp, x, sizeof x);
                    volatile float up = x[r * D + j] + hs[q], dn = x[r * D + j] - hs[q];
                    xp[r * D + j] = up;
                    rf_flow_forward(f, w, n, xp, zp, tmp);
                    xp[r * D + j] = dn;
                    rf_flow_forward(f, w, n, xp, zm, tmp);
                    for (int i = 0; i < D; i++) (q ? J : J2)[i * D + j] = ((double)zp[r * D + i] - zm[r * D + i]) / ((double)up - dn);
                }
            for (int i = 0; i < D * D; i++) J[i] = (4 * J[i] - J2[i]) / 3;
            bf = fmax(bf, fabs(rf_test_logabsdet(D, J) - ld[r]));
        }
        printf("[supernet %s flow] round trip %.2e  log-det (inverse) %.2e  log-det vs brute force %.2e\n",
               rf_flow_type_name(f->spec.type), rt, inv, bf);
        assert_true(rt < 1e-4);
        assert_true(inv < 1e-3);
        assert_true(bf < 5e-3);
        rf_flow_ws_free(w);
        rf_supernet_free(s);
    }
}

/* ------------------------------------------------------------------ discretisation */

static void log_prob_of(rf_flow *f, int n, const float *x, const int *y, float *lp) {
    rf_flow_ws *w = rf_flow_ws_create(f, n, 0, NULL);
    assert_non_null(w);
    rf_flow_log_prob(f, w, n, x, y, lp);
    rf_flow_ws_free(w);
}

static double max_rel_diff(const float *a, const float *b, int n) {
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]) / fmax(1, fabs(a[i])));
    return m;
}

static void test_discretize_exact(void **state) {
    (void)state;
    const int D = 5, n = 40;
    float x[200], lp_s[40], lp_d[40];
    int y[40];
    random_x(x, n * D, 1.0f, 61);
    for (int i = 0; i < n; i++) y[i] = i % 3;
    const rf_flow_type types[3] = {RF_FLOW_REALNVP, RF_FLOW_GLOW, RF_FLOW_NSF};
    char path_file[256];
    rf_test_tmp(path_file, sizeof path_file, "darts-disc.rf");
    for (int t = 0; t < 3; t++) {
        rf_supernet *s = make_sn(types[t], D, 3, "zero,relu-1x5,tanh-2x7,gelu-2-res", t == 1 ? RF_BASE_CLASS : RF_BASE_NORMAL,
                                 t == 1 ? 3 : 0, 70 + t);
        perturb(s, types[t] == RF_FLOW_NSF ? 0.1f : 0.2f, 1.0f, 71);
        const int *lab = t == 1 ? y : NULL;
        rf_err e = {0};
        /* (a) one-hot alpha in mixed mode (the others at -1e30: weight exactly 0) */
        const int path[3] = {1, 3, 2};
        for (int b = 0; b < 3; b++) {
            float *a = rf_supernet_alpha(s, b);
            for (int k = 0; k < s->n_cands; k++) a[k] = k == path[b] ? 0.5f : -1e30f;
        }
        log_prob_of(s->flow, n, x, lab, lp_s);
        rf_flow *d = rf_supernet_discretize(s, path, 1, &e);
        if (!d) fail_msg("discretize: %s", e.msg);
        assert_int_equal(d->n_layers, s->flow->n_layers);
        log_prob_of(d, n, x, lab, lp_d);
        double diff = max_rel_diff(lp_s, lp_d, n);
        printf("[discretise %-7s] one-hot alpha: max |log p diff| %.2e (%zu -> %zu parameters)\n", rf_flow_type_name(types[t]),
               diff, s->flow->n_params, d->n_params);
        assert_true(diff <= 1e-6);
        assert_int_equal(d->spec.blocks, 3);
        assert_int_equal(d->spec.hidden, 8); /* gelu-2-res at the supernet's width */
        assert_int_equal(d->spec.n_hidden, 2);
        /* the file describes the per-block conditioners: it loads and gives the same log p */
        assert_int_equal(rf_flow_save(d, path_file, &e), RF_OK);
        rf_flow *g = rf_flow_load(path_file, &e);
        if (!g) fail_msg("load: %s", e.msg);
        log_prob_of(g, n, x, lab, lp_d);
        assert_true(max_rel_diff(lp_s, lp_d, n) <= 1e-6);
        assert_non_null(cJSON_GetObjectItemCaseSensitive(g->meta, "supernet"));
        rf_flow_free(g);
        rf_flow_free(d);

        /* (b) path mode with arbitrary alpha, a zero op included (that block loses its coupling) */
        perturb(s, 0.0f, 1.0f, 72);
        const int path2[3] = {2, 0, 1};
        assert_int_equal(rf_supernet_set_path(s, path2, &e), RF_OK);
        log_prob_of(s->flow, n, x, lab, lp_s);
        d = rf_supernet_discretize(s, path2, 0, &e);
        if (!d) fail_msg("discretize: %s", e.msg);
        assert_int_equal(d->n_layers, s->flow->n_layers - 1);
        assert_int_equal(d->spec.blocks, 2);
        log_prob_of(d, n, x, lab, lp_d);
        diff = max_rel_diff(lp_s, lp_d, n);
        printf("[discretise %-7s] path mode with a zero op: max |log p diff| %.2e\n", rf_flow_type_name(types[t]), diff);
        assert_true(diff <= 1e-5);
        rf_flow_free(d);

        /* (c) mixed weights: the chosen conditioner's last layer is scaled by its weight */
        assert_int_equal(rf_supernet_set_path(s, NULL, &e), RF_OK);
        d = rf_supernet_discretize(s, path, 1, &e);
        assert_non_null(d);
        int cl[8];
        assert_int_equal(rf_morph_conditioned_layers(d, cl), 3);
        rf_morph_cond ci;
        assert_int_equal(rf_morph_cond_info(d, cl[0], &ci, &e), RF_OK);
        double wts[RF_SUPERNET_MAX_CANDS];
        rf_supernet_weights(s, 0, wts);
        const rf_layer *ld = d->layers[cl[0]];
        const float *q = d->params + ld->offset + ld->n_params - 1; /* the last bias */
        rf_flow *d1 = rf_supernet_discretize(s, path, 0, &e);
        const float *q1 = d1->params + d1->layers[cl[0]]->offset + d1->layers[cl[0]]->n_params - 1;
        assert_true(fabsf(*q - (float)wts[path[0]] * *q1) <= 1e-6f * fmaxf(1, fabsf(*q1)));
        assert_true(fabsf(*q1) > 0);
        rf_flow_free(d1);
        rf_flow_free(d);
        /* bad paths are refused */
        const int badp[3] = {0, 4, 0};
        assert_null(rf_supernet_discretize(s, badp, 0, &e));
        assert_int_equal(rf_supernet_set_path(s, badp, &e), RF_EARG);
        rf_supernet_free(s);
    }
    unlink(path_file);
}

/* ------------------------------------------------------------------ search */

/* x0 ~ N(0, 1), x1 = 2 sin(2.5 x0) + 0.1 eps: the coupling that transforms x1 given x0 needs a
 * smooth, wiggly conditional mean. Candidates: the zero op (no conditioner at all), a width-1
 * ReLU net (one kink: a piecewise-linear mean with two pieces) and a 2-layer width-32 tanh net
 * (can express it). */
static void make_sine(int n, uint64_t seed, rf_matrix *m) {
    assert_int_equal(rf_matrix_alloc(m, n, 2, NULL), RF_OK);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        const double a = rf_rng_normal(&r);
        m->x[2 * i] = (float)a;
        m->x[2 * i + 1] = (float)(2.0 * sin(2.5 * a) + 0.1 * rf_rng_normal(&r));
    }
}

static void test_darts_finds_good_candidate(void **state) {
    (void)state;
    rf_matrix tr, va;
    make_sine(3000, 81, &tr);
    make_sine(1000, 82, &va);
    rf_darts_opts o;
    rf_darts_opts_default(&o);
    o.epochs = 12;
    o.batch = 128;
    o.lr = 3e-3f;
    o.progress = 0;
    o.min_steps = 0;
    rf_darts_result r;
    rf_err e = {0};
    rf_supernet *s = NULL;
    /* three seeds (supernet initialisation and shuffles): all must choose the tanh net. (Without
     * candidate dropout, o.drop_prob = 0, plain DARTS picks relu-1x1 for 2 of 10 seeds: the
     * candidates co-adapt in the mixture and the tanh net alone becomes useless.) */
    for (int rep = 0; rep < 3; rep++) {
        rf_supernet_free(s);
        s = make_sn(RF_FLOW_REALNVP, 2, 1, "zero,relu-1x1,tanh-2x32", RF_BASE_NORMAL, 0, 83 + rep);
        o.seed = 84 + rep;
        const double t0 = rf_now();
        assert_int_equal(rf_darts_search(s, &tr, NULL, &va, NULL, &o, &r, &e), RF_OK);
        double w[RF_SUPERNET_MAX_CANDS];
        rf_supernet_weights(s, 0, w);
        printf("[darts sine seed %d] %.1fs, %ld steps; weights zero %.3f relu-1x1 %.3f tanh-2x32 %.3f; val NLL %.3f -> %.3f\n",
               rep, rf_now() - t0, r.steps, w[0], w[1], w[2], r.val_nll_curve[0], r.val_nll_curve[r.epochs_run - 1]);
        assert_int_equal(r.epochs_run, 12);
        assert_int_equal(r.path[0], 2);
        assert_true(w[2] > 0.5);
        assert_true(r.val_nll_curve[r.epochs_run - 1] < r.val_nll_curve[0]);
        /* the chosen candidate alone (path mode) is good: it was not trained to lean on the others */
        const int p2 = 2, p1 = 1;
        rf_flow_ws *wp = rf_flow_ws_create(s->flow, 256, 0, NULL);
        assert_int_equal(rf_supernet_set_path(s, &p2, &e), RF_OK);
        const double n2 = rf_eval_nll(s->flow, wp, &va, NULL, NULL);
        assert_int_equal(rf_supernet_set_path(s, &p1, &e), RF_OK);
        const double n1 = rf_eval_nll(s->flow, wp, &va, NULL, NULL);
        assert_int_equal(rf_supernet_set_path(s, NULL, &e), RF_OK);
        rf_flow_ws_free(wp);
        printf("[darts sine seed %d] path mode: tanh-2x32 alone %.3f, relu-1x1 alone %.3f\n", rep, n2, n1);
        assert_true(n2 < n1);
        if (rep < 2) rf_darts_result_free(&r);
    }
    /* the curves and the weights per epoch are recorded; weights sum to 1 */
    for (int ep = 0; ep < r.epochs_run; ep++) {
        double sum = 0;
        for (int k = 0; k < 3; k++) sum += r.weights_curve[(size_t)ep * 3 + k];
        assert_true(fabs(sum - 1) < 1e-9);
        assert_true(isfinite(r.train_curve[ep]) && isfinite(r.val_curve[ep]));
    }
    cJSON *j = rf_darts_result_to_json(&r, s);
    cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "path");
    assert_string_equal(cJSON_GetArrayItem(p, 0)->valuestring, "tanh-2x32");
    cJSON_Delete(j);
    /* the discretised flow is as good as the supernet on validation rows (warm start) */
    rf_flow *d = rf_supernet_discretize(s, r.path, 1, &e);
    assert_non_null(d);
    rf_flow_ws *w1 = rf_flow_ws_create(d, 256, 0, NULL);
    const double dn = rf_eval_nll(d, w1, &va, NULL, NULL);
    printf("[darts sine] discretised flow val NLL %.3f (supernet %.3f)\n", dn, r.val_nll_curve[r.epochs_run - 1]);
    assert_true(dn < r.val_nll_curve[r.epochs_run - 1] + 0.5);
    rf_flow_ws_free(w1);
    rf_flow_free(d);
    rf_darts_result_free(&r);

    /* a stop flag ends the search at once, marked interrupted */
    volatile int stop = 1;
    o.stop_flag = &stop;
    assert_int_equal(rf_darts_search(s, &tr, NULL, &va, NULL, &o, &r, &e), RF_OK);
    assert_true(r.interrupted);
    assert_int_equal(r.epochs_run, 0);
    rf_darts_result_free(&r);
    /* bad input is an error, not a crash */
    o.stop_flag = NULL;
    rf_matrix bad = {.n = 10, .d = 3, .x = tr.x};
    assert_int_equal(rf_darts_search(s, &bad, NULL, &va, NULL, &o, &r, &e), RF_EARG);
    o.epochs = 0;
    assert_int_equal(rf_darts_search(s, &tr, NULL, &va, NULL, &o, &r, &e), RF_EARG);
    rf_supernet_free(s);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

/* Classification: a class-conditional supernet trained with NLL + CE at both levels; the
 * discretised flow classifies held-out rows. x1 = sin(2 x0) +- 0.6 + 0.2 noise: the class is the
 * sign of x1 - sin(2 x0), so it separates (3 sd apart) only once the coupling that transforms x1
 * given x0 subtracts the wiggle; x1 alone overlaps heavily. */
static void make_two_class(int n, uint64_t seed, rf_matrix *m, int **y) {
    assert_int_equal(rf_matrix_alloc(m, n, 2, NULL), RF_OK);
    *y = malloc(sizeof(int) * (size_t)n);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        const int c = i % 2;
        const double a = rf_rng_normal(&r);
        m->x[2 * i] = (float)a;
        m->x[2 * i + 1] = (float)(sin(2.0 * a) + (c ? 0.6 : -0.6) + 0.2 * rf_rng_normal(&r));
        (*y)[i] = c;
    }
}

static void test_darts_classify(void **state) {
    (void)state;
    rf_matrix tr, va;
    int *ytr, *yva;
    make_two_class(2000, 91, &tr, &ytr);
    make_two_class(600, 92, &va, &yva);
    rf_supernet *s = make_sn(RF_FLOW_REALNVP, 2, 2, "zero,tanh-2x24", RF_BASE_CLASS, 2, 93);
    rf_darts_opts o;
    rf_darts_opts_default(&o);
    o.epochs = 15;
    o.batch = 128;
    o.lr = 3e-3f;
    o.alpha_lr = 1e-2f;
    o.progress = 0;
    o.min_steps = 0;
    rf_darts_result r;
    rf_err e = {0};
    /* labels are required, and checked */
    assert_int_equal(rf_darts_search(s, &tr, NULL, &va, yva, &o, &r, &e), RF_EARG);
    yva[3] = 7;
    assert_int_equal(rf_darts_search(s, &tr, ytr, &va, yva, &o, &r, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "row 3"));
    yva[3] = 1;
    assert_int_equal(rf_darts_search(s, &tr, ytr, &va, yva, &o, &r, &e), RF_OK);
    rf_flow *d = rf_supernet_discretize(s, r.path, 1, &e);
    assert_non_null(d);
    int *pred = malloc(sizeof(int) * (size_t)va.n);
    assert_int_equal(rf_flow_predict(d, &va, NULL, pred, NULL, &e), RF_OK);
    int ok = 0;
    for (int i = 0; i < va.n; i++) ok += pred[i] == yva[i];
    double w0[RF_SUPERNET_MAX_CANDS], w1[RF_SUPERNET_MAX_CANDS];
    rf_supernet_weights(s, 0, w0);
    rf_supernet_weights(s, 1, w1);
    printf("[darts classify] weights tanh-2x24: block 1 %.3f, block 2 %.3f; discretised accuracy %.3f; val loss %.3f -> %.3f\n",
           w0[1], w1[1], (double)ok / va.n, r.val_curve[0], r.val_curve[r.epochs_run - 1]);
    assert_int_equal(r.path[0], 1); /* block 1 transforms x1 given x0: it needs the conditioner */
    assert_true((double)ok / va.n > 0.9);
    free(pred);
    rf_flow_free(d);
    rf_darts_result_free(&r);
    rf_supernet_free(s);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
    free(ytr);
    free(yva);
}

/* ------------------------------------------------------------------ the study runner */

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

static void test_darts_study(void **state) {
    (void)state;
    char dir[256], db[320], p[4400];
    rf_test_tmp(dir, sizeof dir, "darts-study");
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(db, sizeof db, "%s/d.db", dir);
    rf_err e = {0};
    rf_search_task task;
    assert_int_equal(rf_search_task_builtin("ring", 1, NULL, &task, &e), RF_OK);
    rf_darts_opts o;
    rf_darts_opts_default(&o);
    o.flow = RF_FLOW_NSF;
    o.blocks = 2;
    o.hidden = 16;
    assert_int_equal(rf_supernet_cands_parse("zero,relu-1,tanh-2x8", o.cands, &o.n_cands, &e), RF_OK);
    o.epochs = 2;
    o.batch = 128;
    o.progress = 0;
    o.min_steps = 0;
    o.trials = 2;
    rf_space *sp = rf_search_darts_space(&o, &e);
    assert_non_null(sp);
    assert_true(rf_space_find(sp, "op-1") >= 0 && rf_space_find(sp, "op-2") >= 0 && rf_space_find(sp, "op-3") < 0);
    rf_search_metric m[2] = {RF_METRIC_NLL, RF_METRIC_TIME};
    rf_study_def def = {.name = "darts", .space = sp, .n_objectives = 1, .sampler = "darts", .seed = 5};
    snprintf(def.objectives[0].name, sizeof def.objectives[0].name, "val_nll");
    rf_study *st = rf_study_open(db, &def, &e);
    assert_non_null(st);
    rf_search_job job;
    rf_search_job_init(&job, &task, sp, m, 1);
    job.out_dir = dir;
    job.base_train.epochs = 2;
    assert_int_equal(rf_search_job_prepare(&job, &e), RF_OK);
    int n_run = -1;
    /* a job whose space is not this darts space is refused */
    rf_darts_opts o3 = o;
    o3.blocks = 3;
    assert_int_equal(rf_search_darts_run(st, &job, &o3, &n_run, &e), RF_EARG);
    assert_int_equal(n_run, 0);
    const double t0 = rf_now();
    assert_int_equal(rf_search_darts_run(st, &job, &o, &n_run, &e), RF_OK);
    printf("[darts study] 2 trials in %.1fs\n", rf_now() - t0);
    assert_int_equal(n_run, 2);
    assert_int_equal(rf_study_refresh(st, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(st), 2);
    for (int i = 0; i < 2; i++) {
        const rf_trial *t = rf_study_finished(st, i);
        assert_int_equal(t->status, RF_TRIAL_COMPLETE);
        assert_true(isfinite(t->values[0]));
        rf_search_trial_path(dir, t->number, p, sizeof p);
        rf_flow *f = rf_flow_load(p, &e);
        if (!f) fail_msg("trial model: %s", e.msg);
        /* the stored configuration describes the stored flow and the search's choice */
        double np;
        assert_int_equal(rf_config_get_number(sp, &t->cfg, "params", &np, &e), RF_OK);
        assert_int_equal((size_t)np, f->n_params);
        const cJSON *dj = cJSON_GetObjectItemCaseSensitive(f->meta, "darts");
        assert_non_null(dj);
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(dj, "supernet"), "path");
        for (int b = 0; b < 2; b++) {
            const char *op = NULL;
            char nm[16];
            snprintf(nm, sizeof nm, "op-%d", b + 1);
            assert_int_equal(rf_config_get_choice(sp, &t->cfg, nm, &op, &e), RF_OK);
            assert_string_equal(op, cJSON_GetArrayItem(path, b)->valuestring);
        }
        assert_non_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(dj, "search"), "weights_per_epoch"));
        assert_non_null(cJSON_GetObjectItemCaseSensitive(f->meta, "search"));
        /* the reported validation NLL is the stored model's */
        rf_flow_ws *w = rf_flow_ws_create(f, 256, 0, NULL);
        const double v = rf_eval_nll(f, w, &task.val, NULL, NULL);
        assert_true(fabs(v - t->values[0]) < 1e-4 * (1 + fabs(v)));
        rf_flow_ws_free(w);
        rf_flow_free(f);
        long *steps = NULL;
        double *vals = NULL;
        int ni = 0;
        assert_int_equal(rf_study_intermediate(st, t->number, &steps, &vals, &ni, &e), RF_OK);
        assert_int_equal(ni, 2); /* one per training epoch */
        free(steps);
        free(vals);
    }
    snprintf(p, sizeof p, "%s/best.rf", dir);
    rf_flow *best = rf_flow_load(p, &e);
    assert_non_null(best);
    rf_flow_free(best);
    /* resume: up to 3 trials runs one more; a set stop flag runs none */
    o.trials = 3;
    assert_int_equal(rf_search_darts_run(st, &job, &o, &n_run, &e), RF_OK);
    assert_int_equal(n_run, 1);
    volatile int stop = 1;
    o.stop_flag = &stop;
    o.trials = 5;
    assert_int_equal(rf_search_darts_run(st, &job, &o, &n_run, &e), RF_OK);
    assert_int_equal(n_run, 0);
    assert_int_equal(rf_study_refresh(st, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(st), 3);
    /* the search seeds differ per trial: not three copies of one run */
    assert_true(rf_study_finished(st, 0)->values[0] != rf_study_finished(st, 1)->values[0] ||
                rf_study_finished(st, 1)->values[0] != rf_study_finished(st, 2)->values[0]);
    /* the study report works on it */
    char rdir[400];
    snprintf(rdir, sizeof rdir, "%s/report", dir);
    cJSON *rep = NULL;
    assert_int_equal(rf_search_report_write(st, rdir, p, NULL, &rep, &e), RF_OK);
    cJSON_Delete(rep);
    rf_study_close(st);
    rf_space_free(sp);
    rf_search_task_free(&task);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ ENAS */

/* Weight sharing: training the conditioners of path A moves the output of path B, which picks
 * the same candidate in block 1, and leaves path C (no candidate in common with A) exactly as it
 * was; candidates A does not use keep their weights bit for bit. */
static void test_enas_weight_sharing(void **state) {
    (void)state;
    const int D = 4, n = 32;
    rf_supernet *s = make_sn(RF_FLOW_REALNVP, D, 2, "relu-1x4,tanh-2x6,gelu-1x5", RF_BASE_NORMAL, 0, 110);
    perturb(s, 0.3f, 0.0f, 111);
    rf_flow *f = s->flow;
    float x[128], lpB0[32], lpC0[32], lpB[32], lpC[32];
    random_x(x, n * D, 1.0f, 112);
    const int A[2] = {0, 1}, Bp[2] = {0, 2}, Cp[2] = {1, 2};
    rf_err e = {0};
    rf_flow_ws *w = rf_flow_ws_create(f, n, 0, NULL);
    assert_int_equal(rf_supernet_set_path(s, Bp, &e), RF_OK);
    rf_flow_log_prob(f, w, n, x, NULL, lpB0);
    assert_int_equal(rf_supernet_set_path(s, Cp, &e), RF_OK);
    rf_flow_log_prob(f, w, n, x, NULL, lpC0);
    size_t off10, n10, off11, n11, off21, n21;
    assert_int_equal(rf_supernet_cand_range(s, 0, 0, &off10, &n10), RF_OK);
    assert_int_equal(rf_supernet_cand_range(s, 0, 1, &off11, &n11), RF_OK);
    assert_int_equal(rf_supernet_cand_range(s, 1, 1, &off21, &n21), RF_OK);
    assert_int_equal(rf_supernet_cand_range(s, 2, 0, &off21, &n21), RF_EARG);
    assert_int_equal(rf_supernet_cand_range(s, 1, 1, &off21, &n21), RF_OK);
    float *p11 = malloc(sizeof(float) * n11), *p10 = malloc(sizeof(float) * n10);
    memcpy(p11, f->params + off11, sizeof(float) * n11);
    memcpy(p10, f->params + off10, sizeof(float) * n10);
    /* five SGD steps on path A's conditioners */
    assert_int_equal(rf_supernet_set_path(s, A, &e), RF_OK);
    for (int it = 0; it < 5; it++) {
        memset(f->grads, 0, sizeof(float) * f->n_params);
        rf_flow_loss_grad(f, w, n, x, NULL, 0);
        for (int b = 0; b < 2; b++) {
            size_t off, m;
            rf_supernet_cand_range(s, b, A[b], &off, &m);
            for (size_t q = 0; q < m; q++) f->params[off + q] -= 0.05f * f->grads[off + q];
        }
        /* a path gives no gradient to candidates it does not use, nor to alpha */
        for (size_t q = 0; q < n11; q++) assert_true(f->grads[off11 + q] == 0.0f);
        for (int k = 0; k < s->n_cands; k++) assert_true(rf_supernet_alpha_grad(s, 0)[k] == 0.0f);
    }
    assert_int_equal(rf_supernet_set_path(s, Bp, &e), RF_OK);
    rf_flow_log_prob(f, w, n, x, NULL, lpB);
    assert_int_equal(rf_supernet_set_path(s, Cp, &e), RF_OK);
    rf_flow_log_prob(f, w, n, x, NULL, lpC);
    double dB = 0, dC = 0;
    for (int i = 0; i < n; i++) {
        dB = fmax(dB, fabs(lpB[i] - lpB0[i]));
        dC = fmax(dC, fabs(lpC[i] - lpC0[i]));
    }
    printf("[enas sharing] after training path A: path B (shares block 1) log p moved by %.3g, path C (shares none) by %.3g\n",
           dB, dC);
    assert_true(dB > 1e-3);
    assert_true(dC == 0);
    assert_memory_equal(p11, f->params + off11, sizeof(float) * n11);
    assert_memory_not_equal(p10, f->params + off10, sizeof(float) * n10);
    free(p11);
    free(p10);
    rf_flow_ws_free(w);
    rf_supernet_free(s);
}

static rf_controller *make_ctrl(const rf_supernet *s, const rf_controller_opts *co, uint64_t seed) {
    int nc[8];
    for (int b = 0; b < s->blocks; b++) nc[b] = s->n_cands;
    rf_err e = {0};
    rf_controller *c = rf_controller_create(s->blocks, nc, co, seed, &e);
    if (!c) fail_msg("controller: %s", e.msg);
    return c;
}

/* The ENAS loop on the sine task: the controller learns to prefer the tanh net, the chosen path
 * is it, and the shared weights of that path alone are good. */
static void test_enas_sine(void **state) {
    (void)state;
    rf_matrix tr, va;
    make_sine(3000, 81, &tr);
    make_sine(1000, 82, &va);
    rf_supernet *s = make_sn(RF_FLOW_REALNVP, 2, 1, "zero,relu-1x1,tanh-2x32", RF_BASE_NORMAL, 0, 120);
    rf_enas_opts o;
    rf_enas_opts_default(&o); /* the controller as ENAS: temperature 5, logits bounded by 2.5 */
    rf_controller *c = make_ctrl(s, &o.ctrl, 121);
    o.net.epochs = 12;
    o.net.min_steps = 0;
    o.net.batch = 128;
    o.net.lr = 3e-3f;
    o.net.progress = 0;
    o.net.seed = 122;
    o.reinforce.lr = 0.05;
    double lp0;
    const int tanh_path = 2;
    rf_err e = {0};
    assert_int_equal(rf_controller_logprob(c, &tanh_path, &lp0, NULL, &e), RF_OK);
    rf_enas_result r;
    const double t0 = rf_now();
    assert_int_equal(rf_enas_search(s, c, &tr, NULL, &va, NULL, &o, &r, &e), RF_OK);
    double lp1;
    assert_int_equal(rf_controller_logprob(c, &tanh_path, &lp1, NULL, &e), RF_OK);
    printf("[enas sine] %.1fs, %ld steps, %ld controller updates; p(tanh-2x32) %.3f -> %.3f; mean x %.3f -> %.3f; "
           "entropy %.3f -> %.3f; chosen %s (val loss %.3f), greedy %s (%.3f), %d final candidates\n",
           rf_now() - t0, r.steps, r.ctrl_updates, exp(lp0), exp(lp1), r.score_curve[0], r.score_curve[r.epochs_run - 1],
           r.entropy_curve[0], r.entropy_curve[r.epochs_run - 1], s->names[r.path[0]], r.path_val_loss, s->names[r.greedy[0]],
           r.greedy_val_loss, r.n_final);
    assert_int_equal(r.epochs_run, 12);
    assert_int_equal(r.ctrl_updates, 12 * o.ctrl_steps);
    assert_int_equal(r.path[0], 2);
    assert_int_equal(r.greedy[0], 2);
    assert_true(exp(lp1) > 0.6 && lp1 > lp0); /* at most ~0.987 with bounded logits */
    assert_true(r.score_curve[r.epochs_run - 1] > r.score_curve[0]);
    assert_true(r.entropy_curve[r.epochs_run - 1] < r.entropy_curve[0]);
    assert_true(r.path_val_loss <= r.greedy_val_loss);
    /* the supernet is left on the chosen path; its discretisation gives the same log p */
    rf_flow *d = rf_supernet_discretize(s, r.path, 0, &e);
    assert_non_null(d);
    rf_flow_ws *w1 = rf_flow_ws_create(d, 256, 0, NULL), *w2 = rf_flow_ws_create(s->flow, 256, 0, NULL);
    const double dn = rf_eval_nll(d, w1, &va, NULL, NULL), sn = rf_eval_nll(s->flow, w2, &va, NULL, NULL);
    assert_true(fabs(dn - sn) < 1e-5 * (1 + fabs(sn)));
    assert_true(fabs(dn - r.path_val_loss) < 1e-4 * (1 + fabs(dn)));
    rf_flow_ws_free(w1);
    rf_flow_ws_free(w2);
    rf_flow_free(d);
    cJSON *j = rf_enas_result_to_json(&r, s);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "path"), 0)->valuestring, "tanh-2x32");
    cJSON_Delete(j);
    rf_enas_result_free(&r);
    /* bad settings are errors */
    o.reward_a = 2.0; /* B missing */
    assert_int_equal(rf_enas_search(s, c, &tr, NULL, &va, NULL, &o, &r, &e), RF_EARG);
    o.reward_a = NAN;
    rf_supernet *s2 = make_sn(RF_FLOW_REALNVP, 2, 2, "zero,relu-1x1,tanh-2x32", RF_BASE_NORMAL, 0, 120);
    assert_int_equal(rf_enas_search(s2, c, &tr, NULL, &va, NULL, &o, &r, &e), RF_EARG); /* 1 decision, 2 blocks */
    assert_non_null(strstr(e.msg, "controller"));
    rf_supernet_free(s2);
    rf_controller_free(c);
    rf_supernet_free(s);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

static void test_enas_study(void **state) {
    (void)state;
    char dir[256], db[320], p[4400];
    rf_test_tmp(dir, sizeof dir, "enas-study");
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(db, sizeof db, "%s/e.db", dir);
    rf_err e = {0};
    rf_search_task task;
    assert_int_equal(rf_search_task_builtin("ring", 1, NULL, &task, &e), RF_OK);
    rf_enas_opts o;
    rf_enas_opts_default(&o);
    o.net.flow = RF_FLOW_GLOW;
    o.net.blocks = 3;
    o.net.hidden = 16;
    assert_int_equal(rf_supernet_cands_parse("zero,relu-1,tanh-2x8", o.net.cands, &o.net.n_cands, &e), RF_OK);
    o.net.epochs = 3;
    o.net.min_steps = 0;
    o.net.batch = 128;
    o.net.progress = 0;
    o.ctrl_steps = 3;
    rf_space *sp = rf_search_darts_space(&o.net, &e);
    assert_non_null(sp);
    rf_search_metric m = RF_METRIC_NLL;
    rf_study_def def = {.name = "enas", .space = sp, .n_objectives = 1, .sampler = "enas", .seed = 6};
    snprintf(def.objectives[0].name, sizeof def.objectives[0].name, "val_nll");
    rf_study *st = rf_study_open(db, &def, &e);
    assert_non_null(st);
    rf_search_job job;
    rf_search_job_init(&job, &task, sp, &m, 1);
    job.out_dir = dir;
    job.base_train.epochs = 2;
    assert_int_equal(rf_search_job_prepare(&job, &e), RF_OK);
    int n_run = -1;
    const double t0 = rf_now();
    assert_int_equal(rf_search_enas_run(st, &job, &o, &n_run, &e), RF_OK); /* trials 0: one search */
    printf("[enas study] 1 trial in %.1fs\n", rf_now() - t0);
    assert_int_equal(n_run, 1);
    assert_int_equal(rf_study_refresh(st, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(st), 1);
    const rf_trial *t = rf_study_finished(st, 0);
    assert_int_equal(t->status, RF_TRIAL_COMPLETE);
    rf_search_trial_path(dir, t->number, p, sizeof p);
    rf_flow *f = rf_flow_load(p, &e);
    if (!f) fail_msg("trial model: %s", e.msg);
    const cJSON *ej = cJSON_GetObjectItemCaseSensitive(f->meta, "enas");
    assert_non_null(ej);
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ej, "search"), "path");
    for (int b = 0; b < 3; b++) {
        const char *op = NULL;
        char nm[16];
        snprintf(nm, sizeof nm, "op-%d", b + 1);
        assert_int_equal(rf_config_get_choice(sp, &t->cfg, nm, &op, &e), RF_OK);
        assert_string_equal(op, cJSON_GetArrayItem(path, b)->valuestring);
    }
    rf_flow_ws *w = rf_flow_ws_create(f, 256, 0, NULL);
    const double v = rf_eval_nll(f, w, &task.val, NULL, NULL);
    assert_true(fabs(v - t->values[0]) < 1e-4 * (1 + fabs(v)));
    rf_flow_ws_free(w);
    rf_flow_free(f);
    snprintf(p, sizeof p, "%s/best.rf", dir);
    f = rf_flow_load(p, &e);
    assert_non_null(f);
    rf_flow_free(f);
    rf_study_close(st);
    rf_space_free(sp);
    rf_search_task_free(&task);
    rm_rf(dir);
}

/* A non-finite loss or gradient skips the step (never applied), counts it, and stops the search
 * after max_bad in a row; a finite step resets the run. */
static void test_step_check(void **state) {
    (void)state;
    long bad = 0, skipped = 0;
    int skip = -1;
    rf_err e = {0};
    assert_int_equal(rf__supernet_step_check("darts", "the search", 1.5, 2.0, 1, 1, 3, &bad, &skipped, 0, &skip, &e), RF_OK);
    assert_int_equal(skip, 0);
    assert_int_equal(skipped, 0);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(rf__supernet_step_check("darts", "the search", NAN, 2.0, 2 + k, 1, 3, &bad, &skipped, 0, &skip, &e),
                         RF_OK);
        assert_int_equal(skip, 1);
    }
    assert_int_equal(bad, 2);
    assert_int_equal(rf__supernet_step_check("darts", "the search", 1.0, 1.0, 4, 1, 3, &bad, &skipped, 0, &skip, &e), RF_OK);
    assert_int_equal(bad, 0); /* a good step ends the run of bad ones */
    for (int k = 0; k < 2; k++)
        assert_int_equal(rf__supernet_step_check("enas", "the shared weights", 1.0, INFINITY, 5 + k, 2, 3, &bad, &skipped, 0,
                                                 &skip, &e), RF_OK);
    assert_int_equal(rf__supernet_step_check("enas", "the shared weights", 1.0, INFINITY, 7, 2, 3, &bad, &skipped, 0, &skip, &e),
                     RF_ENONFINITE);
    assert_int_equal(skipped, 5);
    assert_non_null(strstr(e.msg, "enas: the shared weights diverged: 3 consecutive non-finite steps at epoch 2"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_check),
        cmocka_unit_test(test_candidates),
        cmocka_unit_test(test_identity_at_init),
        cmocka_unit_test(test_layer_checks),
        cmocka_unit_test(test_flow_gradients),
        cmocka_unit_test(test_flow_inverse_logdet),
        cmocka_unit_test(test_discretize_exact),
        cmocka_unit_test(test_darts_finds_good_candidate),
        cmocka_unit_test(test_darts_classify),
        cmocka_unit_test(test_darts_study),
        cmocka_unit_test(test_enas_weight_sharing),
        cmocka_unit_test(test_enas_sine),
        cmocka_unit_test(test_enas_study),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
