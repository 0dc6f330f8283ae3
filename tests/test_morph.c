/* Network morphisms (src/search/morph.c) and the NASH-style hill climber
 * (src/search/morph_hillclimb.c).
 *
 * For every flow type (realnvp, glow, nsf, maf, nsf-ar, tsflow) with randomised parameters
 * (every parameter perturbed, non-trivial standardisation) and every morphism (insert a block /
 * ActNorm / linear / coupling; widen with both schemes, one conditioner or all; deepen, one or
 * all, at the start and at the end; a spline coupling with more bins):
 *   - log p(x) of the new flow equals the old one's on random rows:
 *     |log p_new - log p_old| <= 1e-5 * max(1, |log p_old|)  (absolute below |log p| = 1,
 *     relative above; the measured maxima are printed);
 *   - the old flow is untouched (parameters byte-identical);
 *   - the new flow round-trips through the model file (same log p, same architecture JSON);
 *   - the gradient of the new parameter group (inserted layers; the new units' weights; the new
 *     hidden layer) matches central finite differences and is non-zero;
 *   - 30 Adam steps on a batch lower the loss.
 * Chains of random morphisms stay exact; morphisms that cannot be exact are refused with a
 * reason; hill climbing on a small synthetic set improves the validation NLL over its parent. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_ROWS 48
#define TOL 1e-5

static double g_max_abs = 0, g_max_rel = 0;

static void randn(float *x, size_t n, float s, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = s * (float)rf_rng_normal(&r);
}

/* A flow of spec s with every parameter moved away from its initialisation. */
static rf_flow *make_flow(const rf_flow_spec *s, uint64_t seed) {
    /* smaller for the deeper tsflow, whose log p would otherwise be in the thousands */
    const float perturb = s->type == RF_FLOW_TS ? 0.05f : 0.2f;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_err e = {0};
    rf_flow *f = rf_flow_create(s, &rng, &e);
    if (!f) fail_msg("flow create: %s", e.msg);
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += perturb * (float)rf_rng_normal(&rng);
    for (int k = 0; k < f->n_layers; k++)
        if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], f->params + f->layers[k]->offset);
    for (int j = 0; j < f->D; j++) {
        f->shift[j] = 0.05f * (float)(j % 7);
        f->scale[j] = 1.0f + 0.1f * (float)(j % 5);
    }
    return f;
}

static void spec_dense(rf_flow_spec *s, rf_flow_type t, int D, rf_act act, int residual) {
    rf_flow_spec_default(s, t, D);
    s->blocks = 2;
    s->hidden = 8;
    s->n_hidden = 2;
    s->act = act;
    s->residual = residual;
    s->bins = 5;
    s->bound = 3.0f;
}

static void spec_ts(rf_flow_spec *s, rf_act act, int residual, int spline) {
    rf_err e = {0};
    if (rf_tsflow_spec_default(s, 2, 16, &e)) fail_msg("%s", e.msg);
    s->scales = 2;
    s->blocks = 1;
    s->hidden = 6;
    s->n_hidden = 2;
    s->kernel = 3;
    s->act = act;
    s->residual = residual;
    s->spline = spline;
    s->bins = 4;
    s->bound = 3.0f;
}

static void log_prob(const rf_flow *f, int n, const float *x, float *lp) {
    rf_err e = {0};
    const rf_flow_ws_opts o = {.max_batch = n, .memory_saving = 1, .threads = 1, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &o, &e);
    if (!w) fail_msg("workspace: %s", e.msg);
    rf_flow_log_prob(f, w, n, x, NULL, lp);
    rf_flow_ws_free(w);
}

/* Asserts that b computes a's log p on x; returns the largest scaled difference. */
static double assert_same_logp(const rf_flow *a, const rf_flow *b, int n, const float *x, const char *what) {
    float *la = malloc(sizeof(float) * n), *lb = malloc(sizeof(float) * n);
    log_prob(a, n, x, la);
    log_prob(b, n, x, lb);
    double worst = 0, mabs = 0, mrel = 0, mag = 0;
    for (int i = 0; i < n; i++) {
        assert_true(isfinite(la[i]) && isfinite(lb[i]));
        const double d = fabs((double)la[i] - lb[i]), sc = fmax(1.0, fabs(la[i]));
        if (d / sc > worst) worst = d / sc;
        if (d > mabs) mabs = d;
        if (d / fabs(la[i]) > mrel) mrel = d / fabs(la[i]);
        mag += fabs(la[i]) / n;
    }
    printf("    %-44s |dlogp| max %.2e abs, %.2e rel (mean |logp| %.1f)\n", what, mabs, mrel, mag);
    if (mabs > g_max_abs) g_max_abs = mabs;
    if (mrel > g_max_rel) g_max_rel = mrel;
    if (worst > TOL) fail_msg("%s: log p changed by %.3e (scaled), more than %.0e", what, worst, TOL);
    free(la);
    free(lb);
    return worst;
}

static char *arch_string(const rf_flow *f) {
    cJSON *j = rf_morph_arch_json(f);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

/* Model file round trip: same architecture description, same log p. */
static void assert_file_roundtrip(const rf_flow *f, int n, const float *x, int via_disk) {
    rf_err e = {0};
    rf_flow *g = NULL;
    if (via_disk) {
        char path[256];
        rf_test_tmp(path, sizeof path, "morph.rf");
        if (rf_flow_save(f, path, &e)) fail_msg("save: %s", e.msg);
        g = rf_flow_load(path, &e);
        remove(path);
    } else {
        unsigned char *buf;
        size_t len;
        if (rf_flow_to_bytes(f, &buf, &len, &e)) fail_msg("to_bytes: %s", e.msg);
        g = rf_flow_load_mem(buf, len, "morphed", &e);
        free(buf);
    }
    if (!g) fail_msg("load of a morphed flow: %s", e.msg);
    assert_int_equal(g->n_params, f->n_params);
    assert_int_equal(g->n_layers, f->n_layers);
    char *a = arch_string(f), *b = arch_string(g);
    assert_string_equal(a, b);
    free(a);
    free(b);
    float *la = malloc(sizeof(float) * n), *lb = malloc(sizeof(float) * n);
    log_prob(f, n, x, la);
    log_prob(g, n, x, lb);
    for (int i = 0; i < n; i++) assert_true(fabs((double)la[i] - lb[i]) <= 1e-6 * fmax(1.0, fabs(la[i])));
    free(la);
    free(lb);
    rf_flow_free(g);
}

static double mean_nll(const rf_flow *f, int n, const float *x) {
    float *lp = malloc(sizeof(float) * n);
    log_prob(f, n, x, lp);
    double s = 0;
    for (int i = 0; i < n; i++) s -= lp[i];
    free(lp);
    return s / n;
}

/* Structurally free parameters: 0 where a layer's projection (MADE masks) holds them at 0. */
static unsigned char *free_mask(const rf_flow *f) {
    float *ones = malloc(sizeof(float) * f->n_params);
    unsigned char *m = malloc(f->n_params);
    for (size_t i = 0; i < f->n_params; i++) ones[i] = 1.0f;
    for (int k = 0; k < f->n_layers; k++)
        if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], ones + f->layers[k]->offset);
    for (size_t i = 0; i < f->n_params; i++) m[i] = ones[i] != 0.0f;
    free(ones);
    return m;
}

/* The new parameter group idx[0..m) of f: (1) central finite differences of the mean NLL
 * against the analytic gradient, on a copy whose group is moved by N(0, 0.1^2) (a generic
 * point next to the morphed one: at the morphed point itself an identity ReLU layer puts units
 * exactly on the kink, where a difference quotient is not a derivative); masked MADE weights
 * are left out; (2) from the morphed point itself, 30 Adam steps on a batch lower the loss. */
static void assert_trains(rf_flow *f, const size_t *idx, int m, const char *what) {
    const int n = 8;
    float *x = malloc(sizeof(float) * n * f->D);
    randn(x, (size_t)n * f->D, 1.3f, 77);
    rf_err e = {0};
    unsigned char *buf;
    size_t len;
    if (rf_flow_to_bytes(f, &buf, &len, &e)) fail_msg("%s", e.msg);
    rf_flow *c = rf_flow_load_mem(buf, len, "copy", &e);
    free(buf);
    if (!c) fail_msg("%s", e.msg);
    rf_rng r;
    rf_rng_seed(&r, 99);
    for (int q = 0; q < m; q++) c->params[idx[q]] += 0.1f * (float)rf_rng_normal(&r);
    for (int k = 0; k < c->n_layers; k++)
        if (c->layers[k]->ops->project) c->layers[k]->ops->project(c->layers[k], c->params + c->layers[k]->offset);
    unsigned char *mask = free_mask(c);
    rf_flow_ws *w = rf_flow_ws_create(c, n, 0, &e);
    if (!w) fail_msg("workspace: %s", e.msg);
    memset(c->grads, 0, sizeof(float) * c->n_params);
    const double Lc = rf_flow_loss_grad(c, w, n, x, NULL, 0);
    assert_true(isfinite(Lc));
    assert_true(rf_all_finite(c->grads, c->n_params));
    double num = 0, den = 0;
    int used = 0;
    for (int q = 0; q < m; q++) {
        const size_t i = idx[q];
        if (!mask[i]) {
            assert_true(c->grads[i] == 0.0f); /* a masked weight never moves */
            continue;
        }
        /* three step sizes, the estimate nearer the analytic value: a ReLU kink or a spline knot
         * crossed by one step, or float round-off at another, does not make a correct gradient
         * fail; a wrong one disagrees with all */
        const float v = c->params[i];
        double g = 0;
        for (int z = 0; z < 3; z++) {
            const float h = (z == 0 ? 1e-3f : z == 1 ? 2.5e-4f : 6.25e-5f) * fmaxf(1.0f, fabsf(v));
            c->params[i] = v + h;
            const double Lp = mean_nll(c, n, x);
            c->params[i] = v - h;
            const double Lm = mean_nll(c, n, x);
            c->params[i] = v;
            const double gz = (Lp - Lm) / ((double)(v + h) - (double)(v - h));
            if (z == 0 || fabs(gz - c->grads[i]) < fabs(g - c->grads[i])) g = gz;
        }
        num += (g - c->grads[i]) * (g - c->grads[i]);
        den += g * g;
        used++;
    }
    const double rel = sqrt(num) / fmax(sqrt(den), 1e-8);
    rf_flow_ws_free(w);
    rf_flow_free(c);
    free(mask);

    w = rf_flow_ws_create(f, n, 0, &e);
    if (!w) fail_msg("workspace: %s", e.msg);
    memset(f->grads, 0, sizeof(float) * f->n_params);
    const double L0 = rf_flow_loss_grad(f, w, n, x, NULL, 0);
    double gn = 0;
    for (int q = 0; q < m; q++) gn += (double)f->grads[idx[q]] * f->grads[idx[q]];
    rf_adam adam;
    if (rf_adam_init(&adam, f->n_params, &e)) fail_msg("%s", e.msg);
    for (int t = 0; t < 30; t++) {
        memset(f->grads, 0, sizeof(float) * f->n_params);
        rf_flow_loss_grad(f, w, n, x, NULL, 0);
        rf_adam_step(&adam, f->params, f->grads, 2e-3f, 0.0f);
    }
    const double L = mean_nll(f, n, x);
    printf("    %-44s new group: %d params (%d free), fd rel err %.2e (|g_fd| %.3g); at the morph |g| %.3g; "
           "30 Adam steps: loss %.4f -> %.4f\n", what, m, used, rel, sqrt(den), sqrt(gn), L0, L);
    assert_true(used > 0);
    assert_true(sqrt(den) > 1e-6); /* the new parameters have a gradient */
    assert_true(sqrt(gn) > 1e-6);  /* ... already at the morphed point: they can start learning */
    assert_true(rel < 1e-2);
    assert_true(L < L0);
    rf_adam_free(&adam);
    rf_flow_ws_free(w);
    free(x);
}

/* The layout of a conditioner (restated independently of morph.c): layer l stores W_l
 * (out x K*in, column k*in + c) then b_l. */
static size_t cond_w(const rf_morph_cond *c, int l, int *in, int *out) {
    size_t off = 0;
    for (int k = 0; k <= l; k++) {
        *in = k == 0 ? c->n_in : c->hidden;
        *out = k == c->n_hidden ? c->n_out : c->hidden;
        if (k < l) off += (size_t)*out * c->kernel * *in + *out;
    }
    return off;
}

/* Parameter indices of the new units of a conditioner widened from H0 units: their incoming
 * rows in layer 0 and their outgoing columns in the output layer. */
static int widen_group(const rf_flow *f, int k, int H0, size_t *idx, int cap) {
    rf_morph_cond c;
    rf_err e = {0};
    if (rf_morph_cond_info(f, k, &c, &e)) fail_msg("%s", e.msg);
    const size_t base = f->layers[k]->offset;
    int m = 0, in = 0, out = 0;
    size_t w = cond_w(&c, 0, &in, &out);
    for (int o = H0; o < c.hidden && m < cap; o++)
        for (int i = 0; i < c.kernel * in && m < cap; i++) idx[m++] = base + w + (size_t)o * c.kernel * in + i;
    w = cond_w(&c, c.n_hidden, &in, &out);
    for (int o = 0; o < out; o++)
        for (int kk = 0; kk < c.kernel; kk++)
            for (int ch = H0; ch < in && m < 2 * cap; ch++) idx[m++] = base + w + (size_t)o * c.kernel * in + (size_t)kk * in + ch;
    return m;
}

/* The new hidden layer `at` of conditioner k: its weights and bias. */
static int deepen_group(const rf_flow *f, int k, int at, size_t *idx, int cap) {
    rf_morph_cond c;
    rf_err e = {0};
    if (rf_morph_cond_info(f, k, &c, &e)) fail_msg("%s", e.msg);
    int in = 0, out = 0, m = 0;
    const size_t w = f->layers[k]->offset + cond_w(&c, at, &in, &out);
    const size_t len = (size_t)out * c.kernel * in + out;
    for (size_t i = 0; i < len && m < cap; i++) idx[m++] = w + (i * 7919) % len; /* spread over the layer */
    return m;
}

static int range_group(const rf_flow *f, int k0, int k1, size_t *idx, int cap) {
    const size_t a = f->layers[k0]->offset, b = f->layers[k1 - 1]->offset + f->layers[k1 - 1]->n_params;
    int m = 0;
    const size_t len = b - a;
    if (len == 0) return 0;
    for (size_t i = 0; i < len && m < cap; i++) idx[m++] = a + (len <= (size_t)cap ? i : (i * 7919) % len);
    return m;
}

typedef enum { G_INSERT, G_WIDEN, G_DEEPEN } group_kind;

/* Applies m to f and runs every check. gk/gk_layer/gk_arg describe the new parameter group. */
static void check_morph(const rf_flow *f, const rf_morph *m, uint64_t seed, int via_disk) {
    char what[160];
    rf_morph_describe(m, what, sizeof what);
    const int n = N_ROWS;
    float *x = malloc(sizeof(float) * n * f->D);
    randn(x, (size_t)n * f->D, 1.5f, seed);
    float *before = malloc(sizeof(float) * f->n_params);
    memcpy(before, f->params, sizeof(float) * f->n_params);
    rf_rng rng;
    rf_rng_seed(&rng, seed + 1);
    rf_err e = {0};
    rf_flow *g = rf_morph_apply(f, m, &rng, &e);
    if (!g) fail_msg("%s: %s", what, e.msg);
    assert_memory_equal(before, f->params, sizeof(float) * f->n_params); /* the old flow is untouched */
    assert_true(g->n_params > f->n_params);
    assert_same_logp(f, g, n, x, what);
    assert_file_roundtrip(g, n, x, via_disk);
    const cJSON *mm = cJSON_GetObjectItemCaseSensitive(g->meta, "morphs");
    assert_true(cJSON_IsArray(mm) && cJSON_GetArraySize(mm) >= 1);
    /* the new parameter group */
    size_t idx[512];
    int ng = 0;
    if (m->op == RF_MORPH_INSERT) {
        const int added = g->n_layers - f->n_layers;
        ng = range_group(g, m->position, m->position + added, idx, 160);
    } else {
        int k = m->target;
        if (k < 0) {
            int all[64];
            rf_morph_conditioned_layers(g, all);
            k = all[0];
        }
        if (m->op == RF_MORPH_WIDEN) {
            rf_morph_cond c0;
            if (rf_morph_cond_info(f, k, &c0, &e)) fail_msg("%s", e.msg);
            ng = widen_group(g, k, c0.hidden, idx, 160);
        } else {
            rf_morph_cond c0;
            if (rf_morph_cond_info(f, k, &c0, &e)) fail_msg("%s", e.msg);
            ng = deepen_group(g, k, m->at ? m->at : c0.n_hidden, idx, 200);
        }
    }
    assert_true(ng > 0);
    assert_trains(g, idx, ng, what);
    rf_flow_free(g);
    free(before);
    free(x);
}

static rf_morph insert_m(int pos, rf_morph_layer w, int bins) {
    return (rf_morph){.op = RF_MORPH_INSERT, .position = pos, .what = w, .bins = bins};
}
static rf_morph widen_m(int target, int H, rf_morph_widen_mode mode) {
    return (rf_morph){.op = RF_MORPH_WIDEN, .target = target, .hidden = H, .mode = mode, .init_scale = 1.0f};
}
static rf_morph deepen_m(int target, int at) { return (rf_morph){.op = RF_MORPH_DEEPEN, .target = target, .at = at}; }

/* Every morphism on one flow. */
static void check_all_morphs(const rf_flow_spec *s, const char *name, uint64_t seed) {
    rf_flow *f = make_flow(s, seed);
    rf_err e = {0};
    printf("[morph %s: %d layers, %zu params, act %s, residual %d]\n", name, f->n_layers, f->n_params,
           rf_act_name(s->act), s->residual);
    int cond[64];
    const int nc = rf_morph_conditioned_layers(f, cond);
    assert_true(nc >= 2);
    const int S = s->type == RF_FLOW_TS ? s->scales : 1;
    /* insert a whole block at the start, in the middle and at the end of each scale */
    for (int sc = 0; sc < S; sc++) {
        int nb = 0, pos = 0;
        assert_int_equal(rf_morph_block_position(f, sc, 0, &pos, &nb, &e), RF_OK);
        for (int b = 0; b <= nb; b++) {
            assert_int_equal(rf_morph_block_position(f, sc, b, &pos, NULL, &e), RF_OK);
            rf_morph m = insert_m(pos, RF_MORPH_BLOCK, 0);
            check_morph(f, &m, seed + 10 + b, b == nb);
        }
    }
    /* single layers between the first two blocks */
    int pos1 = 0;
    assert_int_equal(rf_morph_block_position(f, S - 1, 1, &pos1, NULL, &e), RF_OK);
    const rf_morph_layer singles[] = {RF_MORPH_ACTNORM, RF_MORPH_LINEAR, RF_MORPH_COUPLING};
    for (int i = 0; i < 3; i++) {
        rf_morph m = insert_m(pos1, singles[i], 0);
        check_morph(f, &m, seed + 20 + i, 0);
    }
    if (s->type == RF_FLOW_NSF || s->type == RF_FLOW_NSF_AR || (s->type == RF_FLOW_TS && s->spline)) {
        rf_morph m = insert_m(pos1, RF_MORPH_COUPLING, 9); /* more spline bins, as a new identity coupling */
        check_morph(f, &m, seed + 25, 0);
    }
    /* widen: all conditioners (zero scheme), one (Net2Net), all (Net2Net) */
    rf_morph w1 = widen_m(-1, s->hidden + 5, RF_MORPH_WIDEN_ZERO);
    check_morph(f, &w1, seed + 30, 1);
    rf_morph w2 = widen_m(cond[1], 2 * s->hidden + 3, RF_MORPH_WIDEN_NET2NET);
    check_morph(f, &w2, seed + 31, 0);
    rf_morph w3 = widen_m(-1, s->hidden + 2, RF_MORPH_WIDEN_NET2NET);
    check_morph(f, &w3, seed + 32, 0);
    /* deepen (when the activation allows it): all at the first position, one at the end */
    if (s->residual || s->act == RF_ACT_RELU) {
        rf_morph d1 = deepen_m(-1, 1);
        check_morph(f, &d1, seed + 40, 1);
        rf_morph d2 = deepen_m(cond[0], 0);
        check_morph(f, &d2, seed + 41, 0);
    } else {
        rf_flow *g = rf_morph_deepen(f, -1, 1, &e);
        assert_null(g);
        assert_int_equal(e.code, RF_EARG);
        assert_non_null(strstr(e.msg, "identity"));
        printf("    deepen refused as expected: %s\n", e.msg);
    }
    rf_flow_free(f);
}

static void test_morph_realnvp(void **st) {
    (void)st;
    rf_flow_spec s;
    spec_dense(&s, RF_FLOW_REALNVP, 5, RF_ACT_RELU, 0); /* odd D: uneven coupling halves */
    check_all_morphs(&s, "realnvp relu", 101);
    spec_dense(&s, RF_FLOW_REALNVP, 4, RF_ACT_TANH, 0); /* plain tanh: deepen refused */
    check_all_morphs(&s, "realnvp tanh", 102);
}

static void test_morph_glow(void **st) {
    (void)st;
    rf_flow_spec s;
    spec_dense(&s, RF_FLOW_GLOW, 4, RF_ACT_TANH, 1);
    check_all_morphs(&s, "glow residual tanh", 201);
}

static void test_morph_nsf(void **st) {
    (void)st;
    rf_flow_spec s;
    spec_dense(&s, RF_FLOW_NSF, 4, RF_ACT_GELU, 1);
    check_all_morphs(&s, "nsf residual gelu", 301);
    spec_dense(&s, RF_FLOW_NSF_AR, 3, RF_ACT_RELU, 0);
    check_all_morphs(&s, "nsf-ar relu", 302);
}

static void test_morph_maf(void **st) {
    (void)st;
    rf_flow_spec s;
    spec_dense(&s, RF_FLOW_MAF, 5, RF_ACT_RELU, 1); /* residual ReLU MADE: the doubling deepen */
    check_all_morphs(&s, "maf residual relu", 401);
}

static void test_morph_tsflow(void **st) {
    (void)st;
    rf_flow_spec s;
    spec_ts(&s, RF_ACT_RELU, 1, 0); /* the tsflow default: residual ReLU conv conditioners */
    check_all_morphs(&s, "tsflow residual relu", 501);
    spec_ts(&s, RF_ACT_RELU, 0, 1);
    check_all_morphs(&s, "tsflow relu spline", 502);
    spec_ts(&s, RF_ACT_GELU, 1, 0);
    check_all_morphs(&s, "tsflow residual gelu", 503);
}

/* The spec in the file summarises per-layer differences; the layers hold the truth. */
static void test_morph_architecture(void **st) {
    (void)st;
    rf_flow_spec s;
    spec_dense(&s, RF_FLOW_GLOW, 4, RF_ACT_RELU, 0);
    rf_flow *f = make_flow(&s, 7);
    rf_rng rng;
    rf_rng_seed(&rng, 8);
    rf_err e = {0};
    int cond[8];
    rf_morph_conditioned_layers(f, cond);
    rf_flow *g = rf_morph_widen(f, cond[1], 20, RF_MORPH_WIDEN_ZERO, 0.5f, &rng, &e);
    assert_non_null(g);
    rf_flow *h = rf_morph_deepen(g, cond[0], 1, &e);
    assert_non_null(h);
    unsigned char *buf;
    size_t len;
    assert_int_equal(rf_flow_to_bytes(h, &buf, &len, &e), RF_OK);
    rf_flow *l = rf_flow_load_mem(buf, len, "m", &e);
    free(buf);
    assert_non_null(l);
    rf_morph_cond c0, c1;
    assert_int_equal(rf_morph_cond_info(l, cond[0], &c0, &e), RF_OK);
    assert_int_equal(rf_morph_cond_info(l, cond[1], &c1, &e), RF_OK);
    assert_int_equal(c0.hidden, 8);
    assert_int_equal(c0.n_hidden, 3);
    assert_int_equal(c1.hidden, 20);
    assert_int_equal(c1.n_hidden, 2);
    assert_int_equal(l->spec.hidden, 20);   /* widest */
    assert_int_equal(l->spec.n_hidden, 3);  /* deepest */
    assert_int_equal(l->spec.blocks, 2);
    const cJSON *mm = cJSON_GetObjectItemCaseSensitive(l->meta, "morphs");
    assert_int_equal(cJSON_GetArraySize(mm), 2);
    char want[64];
    snprintf(want, sizeof want, "widen layer %d to 20 (zero)", cond[1]);
    assert_string_equal(cJSON_GetArrayItem(mm, 0)->valuestring, want);
    /* inserting a block adds a conditioned layer to the summary */
    int pos;
    assert_int_equal(rf_morph_block_position(l, 0, 2, &pos, NULL, &e), RF_OK);
    assert_int_equal(pos, l->n_layers);
    rf_flow *b = rf_morph_insert(l, pos, RF_MORPH_BLOCK, 0, &rng, &e);
    assert_non_null(b);
    assert_int_equal(b->spec.blocks, 3);
    assert_int_equal(b->n_layers, l->n_layers + 3);
    rf_flow_free(b);
    rf_flow_free(l);
    rf_flow_free(h);
    rf_flow_free(g);
    rf_flow_free(f);
}

/* Chains of random morphisms stay exact for every type. */
static void test_morph_random_chains(void **st) {
    (void)st;
    rf_flow_spec specs[6];
    spec_dense(&specs[0], RF_FLOW_REALNVP, 4, RF_ACT_RELU, 0);
    spec_dense(&specs[1], RF_FLOW_GLOW, 3, RF_ACT_RELU, 1);
    spec_dense(&specs[2], RF_FLOW_NSF, 4, RF_ACT_TANH, 1);
    spec_dense(&specs[3], RF_FLOW_MAF, 4, RF_ACT_RELU, 0);
    spec_dense(&specs[4], RF_FLOW_NSF_AR, 3, RF_ACT_GELU, 1);
    spec_ts(&specs[5], RF_ACT_RELU, 1, 0);
    const rf_morph_limits lim = {.max_hidden = 24, .max_n_hidden = 5, .max_layers = 40, .widen_factor = 1.5f,
                                 .widen_mode = RF_MORPH_WIDEN_ZERO};
    for (int t = 0; t < 6; t++) {
        rf_flow *f0 = make_flow(&specs[t], 900 + t), *cur = NULL;
        rf_rng rng;
        rf_rng_seed(&rng, 1000 + t);
        const int n = N_ROWS;
        float *x = malloc(sizeof(float) * n * f0->D);
        randn(x, (size_t)n * f0->D, 1.5f, 11 + t);
        int ops[RF_MORPH_N_OPS] = {0};
        for (int i = 0; i < 8; i++) {
            rf_morph m;
            rf_err e = {0};
            const rf_flow *from = cur ? cur : f0;
            assert_int_equal(rf_morph_random(from, &lim, &rng, &m, &e), RF_OK);
            rf_flow *g = rf_morph_apply(from, &m, &rng, &e);
            if (!g) fail_msg("random morphism on %s: %s", rf_flow_type_name(specs[t].type), e.msg);
            ops[m.op]++;
            rf_flow_free(cur);
            cur = g;
        }
        char what[96];
        snprintf(what, sizeof what, "%s: 8 random (%d ins, %d wid, %d dee)", rf_flow_type_name(specs[t].type),
                 ops[0], ops[1], ops[2]);
        assert_same_logp(f0, cur, n, x, what);
        assert_file_roundtrip(cur, n, x, 0);
        rf_flow_free(cur);
        rf_flow_free(f0);
        free(x);
    }
}

/* Morphisms that do not apply are refused with a reason, never a crash. */
static void test_morph_errors(void **st) {
    (void)st;
    rf_flow_spec s;
    spec_dense(&s, RF_FLOW_REALNVP, 4, RF_ACT_GELU, 0);
    rf_flow *f = make_flow(&s, 5);
    rf_rng rng;
    rf_rng_seed(&rng, 6);
    rf_err e = {0};
    int cond[8];
    rf_morph_conditioned_layers(f, cond);
    assert_null(rf_morph_insert(f, -1, RF_MORPH_BLOCK, 0, &rng, &e));
    assert_int_equal(e.code, RF_EARG);
    assert_null(rf_morph_insert(f, f->n_layers + 1, RF_MORPH_ACTNORM, 0, &rng, &e));
    assert_non_null(strstr(e.msg, "position"));
    assert_null(rf_morph_insert(f, 0, RF_MORPH_COUPLING, 8, &rng, &e)); /* bins on affine couplings */
    assert_non_null(strstr(e.msg, "not splines"));
    assert_null(rf_morph_insert(f, 0, (rf_morph_layer)9, 0, &rng, &e));
    assert_int_equal(e.code, RF_EARG);
    assert_null(rf_morph_widen(f, -1, 8, RF_MORPH_WIDEN_ZERO, 1, &rng, &e)); /* not wider */
    assert_non_null(strstr(e.msg, "new width"));
    assert_null(rf_morph_widen(f, 0, 16, RF_MORPH_WIDEN_ZERO, 1, &rng, &e)); /* ActNorm */
    assert_non_null(strstr(e.msg, "no conditioner"));
    assert_null(rf_morph_widen(f, -1, 16, RF_MORPH_WIDEN_ZERO, 1, NULL, &e));
    assert_int_equal(e.code, RF_EARG);
    assert_null(rf_morph_deepen(f, cond[0], 1, &e)); /* plain GELU */
    assert_non_null(strstr(e.msg, "identity"));
    assert_int_equal(rf_morph_block_position(f, 1, 0, &cond[2], NULL, &e), RF_EARG);
    assert_int_equal(rf_morph_block_position(f, 0, 3, &cond[2], NULL, &e), RF_EARG);
    rf_flow_free(f);
    spec_dense(&s, RF_FLOW_NSF, 4, RF_ACT_RELU, 0);
    f = make_flow(&s, 5);
    rf_morph_conditioned_layers(f, cond);
    assert_null(rf_morph_insert(f, 0, RF_MORPH_COUPLING, 65, &rng, &e));
    assert_non_null(strstr(e.msg, "bins"));
    assert_null(rf_morph_deepen(f, cond[0], 3, &e)); /* n_hidden = 2: positions 1..2 */
    assert_non_null(strstr(e.msg, "index"));
    /* no morphism within the limits */
    const rf_morph_limits lim = {.max_hidden = 8, .max_n_hidden = 2, .max_layers = f->n_layers};
    rf_morph m;
    assert_int_equal(rf_morph_random(f, &lim, &rng, &m, &e), RF_EARG);
    rf_flow_free(f);
}

static void count_cb(void *ctx, const rf_morph_hc_entry *x, const rf_flow *child) {
    int *n = ctx;
    assert_true(x->status != RF_OK || child != NULL);
    (*n)++;
}

/* Hill climbing on moons: the result beats its parent on validation NLL; the same seed gives
 * the same result; budgets and bad arguments are handled. */
static void test_morph_hillclimb(void **st) {
    (void)st;
    rf_rng drng;
    rf_rng_seed(&drng, 3);
    rf_matrix tr, va;
    rf_err e = {0};
    assert_int_equal(rf_synthetic("moons", 1200, 2, 0, &drng, &tr, &e), RF_OK);
    assert_int_equal(rf_synthetic("moons", 400, 2, 0, &drng, &va, &e), RF_OK);
    rf_flow_spec s;
    rf_flow_spec_default(&s, RF_FLOW_REALNVP, 2);
    s.blocks = 2;
    s.hidden = 6;
    s.n_hidden = 1;
    rf_rng rng;
    rf_rng_seed(&rng, 4);
    rf_flow *parent = rf_flow_create(&s, &rng, &e);
    assert_non_null(parent);
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.epochs = 15;
    tc.batch = 128;
    tc.lr = 3e-3f;
    tc.patience = 0;
    tc.progress = 0;
    tc.threads = 1;
    rf_train_result res;
    assert_int_equal(rf_train(parent, &tr, NULL, &va, NULL, &tc, &res, &e), RF_OK);
    rf_train_result_free(&res);
    unsigned char *before;
    size_t blen;
    assert_int_equal(rf_flow_to_bytes(parent, &before, &blen, &e), RF_OK);

    for (int keep = 1; keep >= 0; keep--) {
        rf_morph_hc_cfg cfg;
        rf_morph_hc_cfg_default(&cfg);
        cfg.rounds = 2;
        cfg.children = 3;
        cfg.morphs = 2;
        cfg.keep_parent = keep;
        cfg.train.epochs = 4;
        cfg.train.batch = 128;
        cfg.train.lr = 2e-3f;
        cfg.train.threads = 1;
        cfg.limits.max_hidden = 32;
        cfg.limits.max_n_hidden = 3;
        rf_rng hrng;
        rf_rng_seed(&hrng, 42);
        rf_morph_hc_history h;
        const double t0 = rf_now();
        int calls = 0;
        rf_flow *best = rf_morph_hillclimb(parent, &tr, NULL, &va, NULL, &cfg, &hrng, &h, count_cb, &calls, &e);
        if (!best) fail_msg("hill climbing: %s", e.msg);
        const double secs = rf_now() - t0;
        printf("[hillclimb keep_parent=%d] parent val NLL %.4f (%zu params) -> best %.4f (%zu params), %d children, %.2fs\n",
               keep, h.parent_val_nll, parent->n_params, h.best_val_nll, best->n_params, h.n, secs);
        /* the parent is untouched */
        unsigned char *now;
        size_t nlen;
        assert_int_equal(rf_flow_to_bytes(parent, &now, &nlen, &e), RF_OK);
        assert_int_equal(nlen, blen);
        assert_memory_equal(now, before, blen);
        free(now);
        assert_int_equal(h.rounds_run, 2);
        assert_int_equal(h.n, 2 * (3 + keep));
        assert_int_equal(calls, h.n);
        assert_true(h.best_val_nll < h.parent_val_nll - 1e-3);
        /* the returned flow's own validation NLL is the reported one */
        rf_flow_ws *w = rf_flow_ws_create(best, 512, 1, &e);
        const double v = rf_eval_nll(best, w, &va, NULL, NULL);
        rf_flow_ws_free(w);
        assert_true(fabs(v - h.best_val_nll) < 1e-4 * (1 + fabs(v)));
        int selected = 0, morphed = 0;
        double parent_val = h.parent_val_nll;
        for (int i = 0; i < h.n; i++) {
            const rf_morph_hc_entry *x = &h.entries[i];
            assert_int_equal(x->status, RF_OK);
            assert_non_null(x->arch);
            if (x->child > 0) {
                morphed++;
                assert_true(strlen(x->morphs) > 0);
                assert_true(x->n_params > 0);
                /* a morphed child starts exactly where its parent is */
                assert_true(fabs(x->val_nll_before - parent_val) < 1e-4 * (1 + fabs(parent_val)));
            }
            selected += x->selected;
            if (i + 1 < h.n && h.entries[i + 1].round != x->round) /* round ends: next parent */
                for (int j = 0; j <= i; j++)
                    if (h.entries[j].round == x->round && h.entries[j].selected) parent_val = h.entries[j].val_nll;
        }
        assert_int_equal(morphed, 6);
        assert_true(selected >= 1);
        if (!keep) assert_true(best->n_params > parent->n_params); /* a morphed child won */
        cJSON *hj = rf_morph_hc_history_to_json(&h);
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(hj, "children")), h.n);
        cJSON_Delete(hj);
        assert_file_roundtrip(best, va.n < 64 ? va.n : 64, va.x, 1);
        /* the same seed: the same search */
        rf_rng_seed(&hrng, 42);
        cfg.progress = 0;
        rf_flow *again = rf_morph_hillclimb(parent, &tr, NULL, &va, NULL, &cfg, &hrng, NULL, NULL, NULL, &e);
        assert_non_null(again);
        unsigned char *b1, *b2;
        size_t l1, l2;
        assert_int_equal(rf_flow_to_bytes(best, &b1, &l1, &e), RF_OK);
        assert_int_equal(rf_flow_to_bytes(again, &b2, &l2, &e), RF_OK);
        assert_int_equal(l1, l2);
        assert_memory_equal(b1, b2, l1);
        free(b1);
        free(b2);
        rf_flow_free(again);
        rf_morph_hc_history_free(&h);
        rf_flow_free(best);
    }
    /* a spent time budget: the parent comes back, nothing trained */
    rf_morph_hc_cfg cfg;
    rf_morph_hc_cfg_default(&cfg);
    cfg.progress = 0;
    cfg.time_budget = 1e-12;
    rf_rng hrng;
    rf_rng_seed(&hrng, 1);
    rf_morph_hc_history h;
    rf_flow *same = rf_morph_hillclimb(parent, &tr, NULL, &va, NULL, &cfg, &hrng, &h, NULL, NULL, &e);
    assert_non_null(same);
    assert_int_equal(h.n, 0);
    assert_int_equal(h.rounds_run, 0);
    assert_int_equal(same->n_params, parent->n_params);
    assert_true(h.best_val_nll == h.parent_val_nll);
    rf_morph_hc_history_free(&h);
    rf_flow_free(same);
    /* bad arguments */
    assert_null(rf_morph_hillclimb(parent, &tr, NULL, NULL, NULL, &cfg, &hrng, NULL, NULL, NULL, &e));
    assert_int_equal(e.code, RF_EARG);
    cfg.rounds = 0;
    assert_null(rf_morph_hillclimb(parent, &tr, NULL, &va, NULL, &cfg, &hrng, NULL, NULL, NULL, &e));
    assert_int_equal(e.code, RF_EARG);
    rf_matrix wrong = {.n = va.n, .d = 3, .x = va.x};
    cfg.rounds = 1;
    assert_null(rf_morph_hillclimb(parent, &tr, NULL, &wrong, NULL, &cfg, &hrng, NULL, NULL, NULL, &e));
    assert_non_null(strstr(e.msg, "dimension"));
    free(before);
    rf_flow_free(parent);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

static void test_summary(void **st) {
    (void)st;
    printf("[morph] largest |log p_new - log p_old| over all checks: %.2e absolute, %.2e relative\n", g_max_abs, g_max_rel);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_morph_realnvp),      cmocka_unit_test(test_morph_glow),
        cmocka_unit_test(test_morph_nsf),          cmocka_unit_test(test_morph_maf),
        cmocka_unit_test(test_morph_tsflow),       cmocka_unit_test(test_morph_architecture),
        cmocka_unit_test(test_morph_random_chains), cmocka_unit_test(test_morph_errors),
        cmocka_unit_test(test_morph_hillclimb),    cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
