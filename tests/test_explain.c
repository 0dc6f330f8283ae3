/* renflow explain: band split and band Shapley values (analytic Gaussian case), scores against
 * the flow, ranking, prototypes round trip, counterfactual paths, OOD ranking of injected
 * artefacts and counterfactuals on a small tsflow trained on simulated EEG, the whole report
 * (JSON + PNG/SVG figures) for windows and for feature vectors, and bad input. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

/* LeakSanitizer (RF_SANITIZE builds): fontconfig keeps process-lifetime caches behind cairo's
 * toy fonts (see tests/test_viz.c); suppress leaks with a fontconfig frame only. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

#define LOG_2PI 1.8378770664093453

/* ---------------------------------------------------------------- helpers */

/* A fresh tsflow with a class-conditional base: ActNorm (identity before data init), random
 * rotations over channels, Haar squeezes and identity couplings: an orthogonal map. */
static rf_flow *ortho_tsflow(int C, int T, int classes, uint64_t seed) {
    rf_err e = {0};
    rf_flow_spec sp;
    assert_int_equal(rf_tsflow_spec_default(&sp, C, T, &e), RF_OK);
    sp.scales = 2;
    sp.blocks = 2;
    sp.hidden = 8;
    sp.kernel = 3;
    sp.base = RF_BASE_CLASS;
    sp.n_classes = classes;
    rf_rng r;
    rf_rng_seed(&r, seed);
    rf_flow *f = rf_flow_create(&sp, &r, &e);
    if (!f) fail_msg("create: %s", e.msg);
    return f;
}

static float *base_mu(rf_flow *f, int c) { return f->params + f->base.offset + (size_t)c * f->D; }
static float *base_ls(rf_flow *f, int c) {
    return f->params + f->base.offset + f->base.n_params / 2 + (size_t)c * f->D;
}

/* every parameter of the layers perturbed, so that couplings are not the identity */
static void perturb_layers(rf_flow *f, double sd, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (size_t i = 0; i < f->base.offset; i++) f->params[i] += (float)(sd * rf_rng_normal(&r));
    for (int k = 0; k < f->n_layers; k++)
        if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], f->params + f->layers[k]->offset);
}

static rf_flow *dense_class_flow(rf_flow_type t, int D, int classes, uint64_t seed) {
    rf_err e = {0};
    rf_flow_spec sp;
    rf_flow_spec_default(&sp, t, D);
    sp.blocks = 3;
    sp.hidden = 16;
    sp.base = RF_BASE_CLASS;
    sp.n_classes = classes;
    rf_rng r;
    rf_rng_seed(&r, seed);
    rf_flow *f = rf_flow_create(&sp, &r, &e);
    if (!f) fail_msg("create: %s", e.msg);
    return f;
}

static int file_starts_with(const char *path, const void *magic, size_t n) {
    unsigned char buf[64];
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    size_t k = fread(buf, 1, n, fp);
    fclose(fp);
    return k == n && memcmp(buf, magic, n) == 0;
}

static int file_contains(const char *path, const char *s) {
    unsigned char *buf = NULL;
    size_t len = 0;
    if (rf_read_file(path, &buf, &len, NULL)) return 0;
    int found = strstr((const char *)buf, s) != NULL;
    free(buf);
    return found;
}

static cJSON *read_json(const char *path) {
    unsigned char *buf = NULL;
    size_t len = 0;
    if (rf_read_file(path, &buf, &len, NULL)) return NULL;
    cJSON *j = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    return j;
}

static void rm_tree(const char *dir) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
}

/* ---------------------------------------------------------------- bands */

static void test_bands(void **state) {
    (void)state;
    rf_err e = {0};
    rf_explain_bands b;
    rf_explain_bands_default(&b);
    assert_int_equal(b.n, 5);
    assert_string_equal(b.name[2], "alpha");
    assert_true(b.lo[2] == 8 && b.hi[2] == 13);
    assert_int_equal(rf_explain_bands_check(&b, 128, &e), RF_OK);
    assert_int_equal(rf_explain_bands_check(&b, 64, &e), RF_OK); /* gamma 30-45 starts below 32 */
    assert_int_equal(rf_explain_bands_check(&b, 50, &e), RF_EARG); /* gamma from 30 >= 25 Hz */
    assert_non_null(strstr(e.msg, "gamma"));
    rf_explain_bands o = b;
    o.lo[3] = 12; /* beta overlaps alpha */
    assert_int_equal(rf_explain_bands_check(&o, 128, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "overlaps"));
    o = b;
    o.n = 0;
    assert_int_equal(rf_explain_bands_check(&o, 128, &e), RF_EARG);
}

/* FFT-mask split: components add up to the window; an on-grid 10 Hz sine lies entirely in
 * alpha; a 0.5 Hz component goes to the residual. */
static void test_band_split(void **state) {
    (void)state;
    rf_err e = {0};
    const int C = 2, T = 128;
    const double fs = 64; /* bins every 0.5 Hz */
    rf_explain_bands b;
    rf_explain_bands_default(&b);
    float *x = malloc(sizeof(float) * C * T);
    double *comp = malloc(sizeof(double) * (size_t)(b.n + 1) * C * T);
    rf_rng r;
    rf_rng_seed(&r, 5);
    for (int t = 0; t < T; t++) {
        x[t] = (float)(2 * sin(2 * M_PI * 10 * t / fs) + 0.7 * cos(2 * M_PI * 0.5 * t / fs));
        x[T + t] = (float)rf_rng_normal(&r);
    }
    assert_int_equal(rf_explain_band_split(x, C, T, fs, &b, comp, &e), RF_OK);
    double maxerr = 0, e_alpha = 0, e_other = 0, e_res = 0;
    for (int ch = 0; ch < C; ch++)
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int k = 0; k <= b.n; k++) s += comp[((size_t)k * C + ch) * T + t];
            maxerr = fmax(maxerr, fabs(s - x[ch * T + t]));
        }
    for (int t = 0; t < T; t++) {
        e_alpha += pow(comp[((size_t)2 * C) * T + t] - 2 * sin(2 * M_PI * 10 * t / fs), 2);
        e_res += pow(comp[((size_t)b.n * C) * T + t] - 0.7 * cos(2 * M_PI * 0.5 * t / fs), 2);
        for (int k = 0; k < b.n; k++)
            if (k != 2) e_other += pow(comp[((size_t)k * C) * T + t], 2);
    }
    print_message("band split: max |sum - x| %.2e, alpha err %.2e, residual err %.2e, other bands %.2e\n", maxerr,
                  e_alpha, e_res, e_other);
    assert_true(maxerr < 1e-5);
    assert_true(e_alpha < 1e-8 && e_res < 1e-8 && e_other < 1e-8);
    assert_int_equal(rf_explain_band_split(x, C, T, 0, &b, comp, &e), RF_EARG);
    free(x);
    free(comp);
}

/* For an orthogonal flow with a standard-normal base (every class mean 0, sd 1) and no
 * standardisation, log p(x) = -||x||^2 / 2 - D/2 log 2 pi is additive over orthogonal band
 * components: the band Shapley value of band b is exactly -||x_b||^2 / 2. */
static void test_band_shapley_gaussian(void **state) {
    (void)state;
    rf_err e = {0};
    const int C = 2, T = 64, D = C * T, K = 3, n = 3;
    const double fs = 64;
    rf_flow *f = ortho_tsflow(C, T, 2, 11);
    for (int c = 0; c < 2; c++)
        for (int j = 0; j < D; j++) base_mu(f, c)[j] = base_ls(f, c)[j] = 0;
    rf_explain_bands b;
    rf_explain_bands_default(&b);
    const int B = b.n;
    float *x = malloc(sizeof(float) * n * D), *lp = malloc(sizeof(float) * n);
    rf_rng r;
    rf_rng_seed(&r, 3);
    for (int i = 0; i < n * D; i++) x[i] = (float)(1.5 * rf_rng_normal(&r));
    /* row 2: only delta..alpha content (sines on the bin grid): gamma and beta are empty */
    for (int ch = 0; ch < C; ch++)
        for (int t = 0; t < T; t++)
            x[2 * D + ch * T + t] = (float)(sin(2 * M_PI * 2 * t / fs + ch) + 0.5 * sin(2 * M_PI * 6 * t / fs) +
                                            0.8 * cos(2 * M_PI * 10 * t / fs));
    /* the flow is orthogonal: check log p against the closed form first */
    assert_int_equal(rf_explain_scores(f, n, x, NULL, lp, NULL, &e), RF_OK);
    for (int i = 0; i < n; i++) {
        double q = 0;
        for (int j = 0; j < D; j++) q += (double)x[i * D + j] * x[i * D + j];
        assert_true(fabs(lp[i] - (-0.5 * q - 0.5 * D * LOG_2PI)) < 1e-3 * (1 + fabs(lp[i])));
    }
    double *phi = malloc(sizeof(double) * n * K * B), *vf = malloc(sizeof(double) * n * K), *vb = malloc(sizeof(double) * n * K);
    double *comp = malloc(sizeof(double) * (size_t)(B + 1) * D);
    assert_int_equal(rf_explain_band_shapley(f, n, x, C, T, fs, &b, NULL, phi, vf, vb, &e), RF_OK);
    double worst = 0, worst_eff = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(rf_explain_band_split(x + (size_t)i * D, C, T, fs, &b, comp, &e), RF_OK);
        for (int k = 0; k < K; k++) {
            double sum = 0;
            for (int bb = 0; bb < B; bb++) {
                double q = 0;
                for (int j = 0; j < D; j++) q += comp[(size_t)bb * D + j] * comp[(size_t)bb * D + j];
                const double ph = phi[((size_t)i * K + k) * B + bb];
                worst = fmax(worst, fabs(ph - (-0.5 * q)) / (1 + 0.5 * q));
                sum += ph;
            }
            worst_eff = fmax(worst_eff, fabs(sum - (vf[i * K + k] - vb[i * K + k])));
        }
        /* v_full is log p(x) */
        assert_true(fabs(vf[i * K + 2] - lp[i]) < 1e-3 * (1 + fabs(lp[i])));
    }
    print_message("band Shapley (Gaussian): max rel error vs -||x_b||^2/2 %.2e, efficiency error %.2e\n", worst, worst_eff);
    assert_true(worst < 1e-4);
    assert_true(worst_eff < 1e-6);
    /* empty bands get nothing */
    assert_true(fabs(phi[((size_t)2 * K + 2) * B + 3]) < 1e-3 && fabs(phi[((size_t)2 * K + 2) * B + 4]) < 1e-3);
    assert_true(phi[((size_t)2 * K + 2) * B + 2] < -1); /* alpha content costs likelihood here */

    /* with a non-linear flow the values are not additive, but efficiency holds */
    perturb_layers(f, 0.05, 9);
    assert_int_equal(rf_explain_band_shapley(f, n, x, C, T, fs, &b, NULL, phi, vf, vb, &e), RF_OK);
    assert_int_equal(rf_explain_scores(f, n, x, NULL, lp, NULL, &e), RF_OK);
    for (int i = 0; i < n; i++) {
        double sum = 0;
        for (int bb = 0; bb < B; bb++) sum += phi[((size_t)i * K + 2) * B + bb];
        assert_true(fabs(sum - (vf[i * K + 2] - vb[i * K + 2])) < 1e-6 * (1 + fabs(sum)));
        assert_true(fabs(vf[i * K + 2] - lp[i]) < 1e-3 * (1 + fabs(lp[i])));
    }
    /* shape mismatch */
    assert_int_equal(rf_explain_band_shapley(f, n, x, C, T / 2, fs, &b, NULL, phi, vf, vb, &e), RF_EARG);
    free(x);
    free(lp);
    free(phi);
    free(vf);
    free(vb);
    free(comp);
    rf_flow_free(f);
}

/* ---------------------------------------------------------------- scores, ranking */

static void test_scores_and_rank(void **state) {
    (void)state;
    rf_err e = {0};
    const int D = 5, C = 3, n = 40;
    rf_flow *f = dense_class_flow(RF_FLOW_NSF, D, C, 4);
    perturb_layers(f, 0.05, 2);
    float *x = malloc(sizeof(float) * n * D), *lp = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
    float *post = malloc(sizeof(float) * n * C), *post_ref = malloc(sizeof(float) * n * C);
    rf_rng r;
    rf_rng_seed(&r, 8);
    for (int i = 0; i < n * D; i++) x[i] = (float)rf_rng_normal(&r);
    assert_int_equal(rf_explain_scores(f, n, x, NULL, lp, post, &e), RF_OK);
    rf_flow_ws *w = rf_flow_ws_create(f, 16, 1, &e);
    rf_flow_log_prob(f, w, n, x, NULL, ref);
    rf_flow_class_log_posterior(f, w, n, x, NULL, post_ref);
    for (int i = 0; i < n; i++) assert_true(fabs(lp[i] - ref[i]) < 1e-4 * (1 + fabs(ref[i])));
    for (int i = 0; i < n * C; i++) assert_true(fabs(post[i] - post_ref[i]) < 1e-4);
    /* a non-uniform prior: log p(x) = log sum_c pi_c p(x | c) */
    const float prior[3] = {logf(0.7f), logf(0.2f), logf(0.1f)};
    assert_int_equal(rf_explain_scores(f, n, x, prior, lp, post, &e), RF_OK);
    rf_flow_class_log_posterior(f, w, n, x, prior, post_ref);
    for (int i = 0; i < n; i++) {
        double m = 0;
        for (int c = 0; c < C; c++) {
            int *y = malloc(sizeof(int));
            float l;
            *y = c;
            rf_flow_log_prob(f, w, 1, x + (size_t)i * D, y, &l);
            m += exp(prior[c] + (double)l);
            free(y);
            assert_true(fabs(post[i * C + c] - post_ref[i * C + c]) < 1e-4);
        }
        assert_true(fabs(lp[i] - log(m)) < 1e-4 * (1 + fabs(lp[i])));
    }
    rf_flow_ws_free(w);
    /* ranking: NaN first, then ascending, ties by index */
    const float v[7] = {3, NAN, -1, 3, -5, NAN, 0};
    int order[7];
    rf_explain_rank_ascending(v, 7, order);
    const int want[7] = {1, 5, 4, 2, 6, 0, 3};
    for (int i = 0; i < 7; i++) assert_int_equal(order[i], want[i]);
    /* a model without classes is refused with a clear message */
    rf_flow_spec sp;
    rf_flow_spec_default(&sp, RF_FLOW_REALNVP, D);
    rf_rng_seed(&r, 1);
    rf_flow *g = rf_flow_create(&sp, &r, &e);
    assert_int_equal(rf_explain_scores(g, n, x, NULL, lp, NULL, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "class-conditional"));
    rf_flow_free(g);
    free(x);
    free(lp);
    free(ref);
    free(post);
    free(post_ref);
    rf_flow_free(f);
}

/* ---------------------------------------------------------------- prototypes */

static void test_prototypes_roundtrip(void **state) {
    (void)state;
    rf_err e = {0};
    for (int kind = 0; kind < 3; kind++) { /* glow; tsflow; tsflow with class statistics tied over time */
        rf_flow *f = NULL;
        if (kind == 0) {
            f = dense_class_flow(RF_FLOW_GLOW, 6, 3, 7);
        } else {
            rf_flow_spec sp;
            assert_int_equal(rf_tsflow_spec_default(&sp, 3, 32, &e), RF_OK);
            sp.scales = 2;
            sp.blocks = 2;
            sp.hidden = 8;
            sp.kernel = 3;
            sp.base = RF_BASE_CLASS;
            sp.n_classes = 3;
            sp.class_tie = kind == 2;
            rf_rng r0;
            rf_rng_seed(&r0, 7);
            if (!(f = rf_flow_create(&sp, &r0, &e))) fail_msg("create: %s", e.msg);
        }
        perturb_layers(f, 0.05, 4);
        const int C = f->base.n_classes, D = f->D;
        if (kind == 2) assert_true(f->base.n_groups < D);
        rf_rng r;
        rf_rng_seed(&r, 31);
        float *bp = f->params + f->base.offset;
        for (size_t i = 0; i < f->base.n_params / 2; i++) bp[i] = (float)rf_rng_normal(&r); /* class means */
        /* a standardisation, so that prototypes must come back in data units */
        for (int j = 0; j < D; j++) {
            f->shift[j] = (float)(0.3 * j - 1);
            f->scale[j] = (float)(0.5 + 0.1 * (j % 4));
        }
        float *proto = malloc(sizeof(float) * C * D), *z = malloc(sizeof(float) * C * D), *mu = malloc(sizeof(float) * D);
        double err[3];
        assert_int_equal(rf_explain_prototypes(f, proto, err, &e), RF_OK);
        rf_flow_ws *w = rf_flow_ws_create(f, 8, 1, &e);
        rf_flow_forward(f, w, C, proto, z, NULL);
        double m = 0, dist = 0;
        for (int c = 0; c < C; c++) {
            assert_true(err[c] < 1e-4);
            rf_base_class_moments(&f->base, bp, c, mu, NULL);
            for (int j = 0; j < D; j++) m = fmax(m, fabs(z[c * D + j] - mu[j]));
            for (int j = 0; j < D; j++) dist += fabs(proto[c * D + j] - proto[((c + 1) % C) * D + j]);
        }
        print_message("prototypes (%s): max |f(proto) - mu| = %.2e\n", kind == 0 ? "glow" : kind == 1 ? "tsflow" : "tsflow, tied", m);
        assert_true(m < 1e-4);
        assert_true(dist > 0.1); /* classes decode to different prototypes */
        rf_flow_ws_free(w);
        free(proto);
        free(z);
        free(mu);
        rf_flow_free(f);
    }
}

/* ---------------------------------------------------------------- counterfactuals */

static void test_counterfactual_handbuilt(void **state) {
    (void)state;
    rf_err e = {0};
    const int D = 6, C = 3;
    rf_flow *f = dense_class_flow(RF_FLOW_REALNVP, D, C, 21);
    perturb_layers(f, 0.05, 6);
    /* class means differ by 3 along every axis (class 0 at -1.5, class 1 at +1.5, class 2 apart) */
    for (int j = 0; j < D; j++) {
        base_mu(f, 0)[j] = -1.5f;
        base_mu(f, 1)[j] = 1.5f;
        base_mu(f, 2)[j] = j % 2 ? 4.0f : -4.0f;
        for (int c = 0; c < C; c++) base_ls(f, c)[j] = 0;
    }
    rf_rng r;
    rf_rng_seed(&r, 2);
    int y = 0;
    float x[6];
    rf_flow_ws *w = rf_flow_ws_create(f, 8, 1, &e);
    rf_flow_sample(f, w, 1, &y, &r, x);
    rf_flow_ws_free(w);
    rf_counterfactual cf;
    assert_int_equal(rf_explain_counterfactual(f, x, 0, 1, RF_CF_SHIFT, 5, NULL, &cf, &e), RF_OK);
    assert_int_equal(cf.steps, 5);
    double rec = 0;
    for (int j = 0; j < D; j++) rec = fmax(rec, fabs(cf.x[j] - x[j]));
    assert_true(rec < 1e-4);
    for (int s = 0; s < 5; s++) {
        print_message("t=%.2f p(to|x_t)=%.4f latent err %.1e\n", cf.t[s], exp(cf.log_post[s * C + 1]), cf.latent_err[s]);
        assert_true(cf.latent_err[s] < 1e-3);
        if (s) assert_true(cf.log_post[s * C + 1] > cf.log_post[(s - 1) * C + 1]);
    }
    assert_true(exp(cf.log_post[0 * C + 1]) < 0.5);
    assert_true(exp(cf.log_post[4 * C + 1]) > 0.5);
    rf_counterfactual_free(&cf);
    /* transport with different class sds: f(x_1) = mu_b + sigma_b / sigma_a (f(x) - mu_a) */
    for (int j = 0; j < D; j++) base_ls(f, 1)[j] = (float)log(2.0);
    assert_int_equal(rf_explain_counterfactual(f, x, 0, 1, RF_CF_TRANSPORT, 3, NULL, &cf, &e), RF_OK);
    w = rf_flow_ws_create(f, 8, 1, &e);
    float z0[6], z1[6];
    rf_flow_forward(f, w, 1, x, z0, NULL);
    rf_flow_forward(f, w, 1, cf.x + 2 * D, z1, NULL);
    for (int j = 0; j < D; j++) assert_true(fabs(z1[j] - (1.5 + 2.0 * (z0[j] + 1.5))) < 1e-3);
    rf_flow_ws_free(w);
    rf_counterfactual_free(&cf);
    /* bad arguments */
    assert_int_equal(rf_explain_counterfactual(f, x, 1, 1, RF_CF_SHIFT, 5, NULL, &cf, &e), RF_EARG);
    assert_int_equal(rf_explain_counterfactual(f, x, 0, 3, RF_CF_SHIFT, 5, NULL, &cf, &e), RF_EARG);
    assert_int_equal(rf_explain_counterfactual(f, x, 0, 1, RF_CF_SHIFT, 1, NULL, &cf, &e), RF_EARG);
    x[2] = NAN;
    assert_int_equal(rf_explain_counterfactual(f, x, 0, 1, RF_CF_SHIFT, 5, NULL, &cf, &e), RF_ENONFINITE);
    rf_flow_free(f);
}

/* ---------------------------------------------------------------- gradients */

/* Exact input gradients against central finite differences of the scores, and integrated
 * gradients: completeness to rounding for a quadratic log-density (a fresh glow is linear: LU
 * rotations, identity couplings; with all classes alike log p(x) is quadratic), a small
 * quadrature error for a non-linear flow with distinct classes. */
static void test_gradients(void **state) {
    (void)state;
    rf_err e = {0};
    const int D = 6, C = 3, n = 4;
    rf_flow *f = dense_class_flow(RF_FLOW_GLOW, D, C, 13);
    rf_rng r;
    rf_rng_seed(&r, 77);
    for (int j = 0; j < D; j++) {
        const float m = (float)rf_rng_normal(&r), l = (float)(0.3 * rf_rng_normal(&r));
        for (int c = 0; c < C; c++) {
            base_mu(f, c)[j] = m;
            base_ls(f, c)[j] = l;
        }
    }
    for (int j = 0; j < D; j++) {
        f->shift[j] = (float)(0.5 * j);
        f->scale[j] = (float)(1 + 0.2 * j);
    }
    float x[4 * 6], g[4 * 6], xp[6];
    double v[4], ig[4 * 6], gap[4];
    const int cls[4] = {0, 2, 1, 2};
    for (int i = 0; i < n * D; i++) x[i] = (float)(0.5 * i / D + rf_rng_normal(&r));
    for (int lin = 1; lin >= 0; lin--) {
        if (!lin) {
            perturb_layers(f, 0.08, 3);
            for (int c = 0; c < C; c++)
                for (int j = 0; j < D; j++) {
                    base_mu(f, c)[j] = (float)rf_rng_normal(&r);
                    base_ls(f, c)[j] = (float)(0.3 * rf_rng_normal(&r));
                }
        }
        for (int t = 0; t < 2; t++) {
            const rf_explain_target tg = t ? RF_EXPLAIN_LOGPOST : RF_EXPLAIN_LOGP;
            assert_int_equal(rf_explain_input_grad(f, n, x, tg, cls, NULL, g, v, &e), RF_OK);
            double worst = 0;
            for (int i = 0; i < n; i++) {
                float lp1, lp2, post[2 * 3];
                assert_int_equal(rf_explain_scores(f, 1, x + i * D, NULL, &lp1, post, &e), RF_OK);
                const double v0 = t ? post[cls[i]] : lp1;
                assert_true(fabs(v0 - v[i]) < 1e-3 * (1 + fabs(v0)));
                for (int j = 0; j < D; j++) {
                    const double h = 1e-3 * f->scale[j]; /* truncation error ~h^2, rounding ~1e-7 |v| / h */
                    double fd[2];
                    for (int sgn = 0; sgn < 2; sgn++) {
                        memcpy(xp, x + i * D, sizeof xp);
                        xp[j] += (float)(sgn ? -h : h);
                        assert_int_equal(rf_explain_scores(f, 1, xp, NULL, &lp2, post, &e), RF_OK);
                        fd[sgn] = t ? post[cls[i]] : lp2;
                    }
                    const double num = (fd[0] - fd[1]) / (2 * h);
                    worst = fmax(worst, fabs(num - g[i * D + j]) / (1 + fabs(num)));
                }
            }
            assert_int_equal(rf_explain_integrated_gradients(f, n, x, NULL, tg, cls, NULL, 32, ig, gap, &e), RF_OK);
            double wg = 0;
            for (int i = 0; i < n; i++) wg = fmax(wg, fabs(gap[i]));
            print_message("%s flow, %s: gradient vs finite differences %.2e, IG completeness error %.2e\n",
                          lin ? "linear" : "non-linear", t ? "log p(c|x)" : "log p(x)", worst, wg);
            assert_true(worst < 5e-3);
            if (lin) assert_true(wg < 1e-4); /* quadratic (or constant) v: the midpoint rule is exact */
            else assert_true(wg < 0.05);
        }
    }
    assert_int_equal(rf_explain_input_grad(f, n, x, RF_EXPLAIN_LOGPOST, NULL, NULL, g, v, &e), RF_EARG);
    const int bad[4] = {0, 3, 0, 0};
    assert_int_equal(rf_explain_integrated_gradients(f, n, x, NULL, RF_EXPLAIN_LOGPOST, bad, NULL, 8, ig, gap, &e), RF_EARG);
    rf_flow_free(f);
}

/* ---------------------------------------------------------------- simulated EEG */

typedef struct sim_fixture {
    rf_dataset ds;
    rf_flow *f;
    int channels, T;
    double fs;
} sim_fixture;

/* Rest vs arithmetic windows (3 channels Fz, Pz, O1 at 64 Hz, 2 s) and a small class-conditional
 * tsflow trained on them. */
static void sim_setup(sim_fixture *s) {
    rf_err e = {0};
    memset(s, 0, sizeof *s);
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_ARITHMETIC);
    c.channels = 3;
    c.rate = 64;
    c.window_s = 2;
    c.artifact_rate = 0;
    c.task_effect = 2.5; /* a clear effect so that a tiny model learns it in a few epochs */
    c.subject_var = 0.5;
    rf_rng r;
    rf_rng_seed(&r, 17);
    rf_eegsim_data d;
    if (rf_eegsim_generate(&c, 4, 60, &r, &d, &e)) fail_msg("sim: %s", e.msg);
    if (rf_eegsim_to_dataset(&d, &c, 17, &s->ds, &e)) fail_msg("to_dataset: %s", e.msg);
    s->channels = d.channels;
    s->T = d.T;
    s->fs = d.rate;
    rf_eegsim_free(&d);
    rf_flow_spec sp;
    assert_int_equal(rf_tsflow_spec_default(&sp, s->channels, s->T, &e), RF_OK);
    sp.scales = 2;
    sp.blocks = 2;
    sp.hidden = 12;
    sp.kernel = 3;
    sp.base = RF_BASE_CLASS;
    sp.n_classes = 2;
    sp.class_tie = 1; /* class statistics per latent channel, shared over time (the CLI default) */
    rf_rng_seed(&r, 5);
    s->f = rf_flow_create(&sp, &r, &e);
    if (!s->f) fail_msg("create: %s", e.msg);
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.epochs = getenv("RF_SANITIZED") ? 6 : 10;
    tc.batch = 32;
    tc.lr = 3e-3f;
    tc.progress = 0;
    tc.threads = 2;
    tc.patience = 0;
    tc.ce_weight = 1;
    rf_train_result res;
    if (rf_train(s->f, &s->ds.x, s->ds.labels, &s->ds.x, s->ds.labels, &tc, &res, &e)) fail_msg("train: %s", e.msg);
    rf_train_result_free(&res);
}

static void sim_teardown(sim_fixture *s) {
    rf_flow_free(s->f);
    rf_dataset_free(&s->ds);
}

static void test_simulated_eeg(void **state) {
    (void)state;
    rf_err e = {0};
    const double t0 = rf_now();
    sim_fixture s;
    sim_setup(&s);
    const double t_train = rf_now() - t0;
    const int n = s.ds.x.n, D = s.f->D;
    /* accuracy of the trained model (the counterfactual test needs a model that learned the classes) */
    float *lp = malloc(sizeof(float) * n), *post = malloc(sizeof(float) * n * 2);
    assert_int_equal(rf_explain_scores(s.f, n, s.ds.x.x, NULL, lp, post, &e), RF_OK);
    int ok = 0;
    for (int i = 0; i < n; i++) ok += (post[i * 2 + 1] > post[i * 2]) == (s.ds.labels[i] == 1);
    print_message("simulated EEG: %d windows, train %.1f s, accuracy %.3f\n", n, t_train, (double)ok / n);
    assert_true(ok > 0.7 * n);

    /* per-scale parts sum to log p(x) (the marginal that explain uses) */
    const int S = rf_flow_n_scales(s.f);
    double *parts = malloc(sizeof(double) * n * (S + 1));
    rf_scale_report rep;
    assert_int_equal(rf_flow_scale_report(s.f, n, s.ds.x.x, NULL, &rep, parts, &e), RF_OK);
    for (int i = 0; i < n; i++) {
        double t = 0;
        for (int k = 0; k <= S; k++) t += parts[(size_t)i * (S + 1) + k];
        assert_true(fabs(t - lp[i]) < 1e-3 * (1 + fabs(lp[i])));
    }
    free(parts);

    /* OOD: 5 windows with huge artefacts are the 5 least likely */
    float *x = malloc(sizeof(float) * (size_t)n * D);
    memcpy(x, s.ds.x.x, sizeof(float) * (size_t)n * D);
    const int bad[5] = {3, 50, 97, 150, 201};
    for (int k = 0; k < 5; k++) {
        float *w = x + (size_t)bad[k] * D;
        if (k % 2 == 0) { /* amplitude x 20 */
            for (int j = 0; j < D; j++) w[j] *= 20;
        } else { /* electrode pop: a 400 uV step on one channel */
            for (int t = s.T / 3; t < s.T; t++) w[(size_t)(k % s.channels) * s.T + t] += 400.0f * expf(-(t - s.T / 3) / 20.0f);
        }
    }
    int *order = malloc(sizeof(int) * n);
    assert_int_equal(rf_explain_scores(s.f, n, x, NULL, lp, NULL, &e), RF_OK);
    rf_explain_rank_ascending(lp, n, order);
    for (int k = 0; k < 5; k++) {
        int found = 0;
        for (int q = 0; q < 5; q++) found |= order[q] == bad[k];
        print_message("artefact window %d: log p %.1f, rank %s\n", bad[k], lp[bad[k]], found ? "top 5" : "NOT top 5");
        assert_true(found);
    }
    print_message("least likely clean window: log p %.1f\n", lp[order[5]]);

    /* OOD on new simulated windows with the simulator's own artefacts (muscle, pops, spikes,
     * drifts; ground truth in d.artifacts): the least likely windows are mostly artefacts */
    {
        rf_eegsim_config c;
        rf_eegsim_config_default(&c, RF_EEGSIM_ARITHMETIC);
        c.channels = 3;
        c.rate = 64;
        c.window_s = 2;
        c.artifact_rate = 1.5;
        c.task_effect = 2.5;
        c.subject_var = 0.5;
        rf_rng r2;
        rf_rng_seed(&r2, 99);
        rf_eegsim_data d;
        if (rf_eegsim_generate(&c, 2, 60, &r2, &d, &e)) fail_msg("sim: %s", e.msg);
        float *l2 = malloc(sizeof(float) * d.n);
        int *o2 = malloc(sizeof(int) * d.n), art = 0, top = 0;
        assert_int_equal(rf_explain_scores(s.f, d.n, d.x, NULL, l2, NULL, &e), RF_OK);
        rf_explain_rank_ascending(l2, d.n, o2);
        for (int i = 0; i < d.n; i++) art += d.artifacts[i] != 0;
        for (int k = 0; k < 10; k++) top += d.artifacts[o2[k]] != 0;
        print_message("simulator artefacts: %d of %d windows; %d of the 10 least likely\n", art, d.n, top);
        assert_true(art < d.n / 3);
        assert_true(top >= 8);
        free(l2);
        free(o2);
        rf_eegsim_free(&d);
    }

    /* counterfactual rest -> arithmetic on a typical rest window: the median log p(x | rest)
     * among the rest windows classified as rest (lp, post: scores of the clean data) */
    assert_int_equal(rf_explain_scores(s.f, n, s.ds.x.x, NULL, lp, post, &e), RF_OK);
    float *lc = malloc(sizeof(float) * n);
    int *cand = malloc(sizeof(int) * n), nc = 0;
    for (int i = 0; i < n; i++)
        if (s.ds.labels[i] == 0 && post[i * 2] > post[i * 2 + 1]) {
            lc[nc] = post[i * 2] + lp[i] + logf(2.0f);
            cand[nc++] = i;
        }
    rf_explain_rank_ascending(lc, nc, order);
    const int win = cand[order[nc / 2]];
    free(lc);
    free(cand);
    rf_counterfactual cf;
    /* shifting the means only hardly changes the class: the classes differ in power */
    assert_int_equal(rf_explain_counterfactual(s.f, s.ds.x.x + (size_t)win * D, 0, 1, RF_CF_SHIFT, 5, NULL, &cf, &e), RF_OK);
    print_message("shift: p(arithmetic) %.4f -> %.4f\n", exp(cf.log_post[1]), exp(cf.log_post[4 * 2 + 1]));
    rf_counterfactual_free(&cf);
    assert_int_equal(rf_explain_counterfactual(s.f, s.ds.x.x + (size_t)win * D, 0, 1, RF_CF_TRANSPORT, 5, NULL, &cf, &e), RF_OK);
    for (int q = 0; q < 5; q++) {
        print_message("t=%.2f p(arithmetic|x_t)=%.4f\n", cf.t[q], exp(cf.log_post[q * 2 + 1]));
        if (q) assert_true(cf.log_post[q * 2 + 1] >= cf.log_post[(q - 1) * 2 + 1]);
        assert_true(cf.latent_err[q] < 1e-2);
    }
    assert_true(exp(cf.log_post[4 * 2 + 1]) > 0.5);
    rf_counterfactual_free(&cf);

    /* the whole report, PNG, with a few artefact windows in the data */
    rf_dataset dd = {0};
    unsigned char *keep = malloc((size_t)n);
    memset(keep, 1, (size_t)n);
    assert_int_equal(rf_dataset_select(&s.ds, keep, &dd, &e), RF_OK);
    memcpy(dd.x.x, x, sizeof(float) * (size_t)n * D);
    char dir[256], p[512];
    rf_test_tmp(dir, sizeof dir, "explain-win");
    rf_explain_opts o;
    rf_explain_opts_default(&o);
    o.format = "png";
    o.samples_per_class = 40;
    o.max_windows_per_class = 6;
    o.top_k = 6;
    o.quiet = 1;
    cJSON *j = NULL;
    const double t1 = rf_now();
    if (rf_explain_run(s.f, &dd, &o, dir, &j, &e)) fail_msg("run: %s", e.msg);
    print_message("explain run (windows): %.1f s\n", rf_now() - t1);
    static const char *figs[5] = {"prototypes", "spectra", "ood", "counterfactual", "contributions"};
    for (int k = 0; k < 5; k++) {
        snprintf(p, sizeof p, "%s/%s.png", dir, figs[k]);
        assert_true(file_starts_with(p, "\x89PNG\r\n\x1a\n", 8));
    }
    snprintf(p, sizeof p, "%s/explain.json", dir);
    cJSON *fj = read_json(p);
    assert_non_null(fj);
    /* the JSON on disk is the summary returned */
    char *a = cJSON_PrintUnformatted(fj), *b = cJSON_PrintUnformatted(j);
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_string_equal(cJSON_GetObjectItem(fj, "kind")->valuestring, "windows");
    /* least likely rows = the artefact windows */
    const cJSON *ll = cJSON_GetObjectItem(cJSON_GetObjectItem(fj, "ood"), "least_likely");
    assert_int_equal(cJSON_GetArraySize(ll), 6);
    for (int k = 0; k < 5; k++) {
        const int idx = cJSON_GetObjectItem(cJSON_GetArrayItem(ll, k), "index")->valueint;
        int found = 0;
        for (int q = 0; q < 5; q++) found |= idx == bad[q];
        assert_true(found);
        assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(ll, k), "band_shapley_log_p"));
        assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(ll, k), "subject"));
    }
    /* band powers per class and band */
    const cJSON *pc = cJSON_GetObjectItem(cJSON_GetObjectItem(fj, "spectra"), "per_class");
    assert_int_equal(cJSON_GetArraySize(pc), 2);
    const cJSON *bp = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(fj, "prototypes"), "per_class"), 0),
                                          "log10_band_power_mean_over_channels");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(bp, "data"), "alpha")));
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(bp, "samples"), "theta")));
    /* the counterfactual path ends in the target class */
    const cJSON *path = cJSON_GetObjectItem(cJSON_GetObjectItem(fj, "counterfactual"), "path");
    assert_int_equal(cJSON_GetArraySize(path), 5);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(path, 4), "p_to")->valuedouble > 0.5);
    const cJSON *pr = cJSON_GetObjectItem(cJSON_GetObjectItem(fj, "prototypes"), "roundtrip_max_abs_latent_error");
    for (int c = 0; c < 2; c++) assert_true(cJSON_GetArrayItem(pr, c)->valuedouble < 1e-3);
    cJSON_Delete(fj);
    cJSON_Delete(j);
    rm_tree(dir);

    /* SVG, chosen channels and classes */
    int chs[2] = {2, 0};
    o.format = "svg";
    o.channels = chs;
    o.n_channels = 2;
    o.from = 1;
    o.to = 0;
    o.window = 10;
    if (rf_explain_run(s.f, &s.ds, &o, dir, NULL, &e)) fail_msg("run svg: %s", e.msg);
    for (int k = 0; k < 5; k++) {
        snprintf(p, sizeof p, "%s/%s.svg", dir, figs[k]);
        assert_true(file_contains(p, "<svg"));
        assert_true(file_contains(p, "</svg>"));
    }
    snprintf(p, sizeof p, "%s/explain.json", dir);
    fj = read_json(p);
    assert_non_null(fj);
    const cJSON *cfj = cJSON_GetObjectItem(fj, "counterfactual");
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(cfj, "window"), "index")->valueint, 10);
    assert_string_equal(cJSON_GetObjectItem(cfj, "from")->valuestring, "arithmetic");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(fj, "channels_drawn"), 0)->valuestring, "O1");
    cJSON_Delete(fj);
    rm_tree(dir);

    /* bad input: no rate, wrong shape, labels beyond the model's classes, channel names */
    rf_dataset bad_ds = {0};
    assert_int_equal(rf_dataset_select(&s.ds, keep, &bad_ds, &e), RF_OK);
    cJSON_DeleteItemFromObject(bad_ds.manifest, "rate");
    cJSON_DeleteItemFromObject(bad_ds.manifest, "rate_hz");
    assert_int_equal(rf_explain_run(s.f, &bad_ds, &o, dir, NULL, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "--rate"));
    o.rate = 64;
    bad_ds.labels[7] = 2;
    assert_int_equal(rf_explain_run(s.f, &bad_ds, &o, dir, NULL, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "row 7"));
    bad_ds.labels[7] = 0;
    bad_ds.length = s.T / 2;
    bad_ds.channels = s.channels * 2;
    assert_int_equal(rf_explain_run(s.f, &bad_ds, &o, dir, NULL, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "was built for"));
    rf_dataset_free(&bad_ds);
    int idx[8], nidx;
    assert_int_equal(rf_explain_channel_list(&s.ds, s.channels, "o1,Fz", idx, 8, &nidx, &e), RF_OK);
    assert_int_equal(nidx, 2);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 0);
    assert_int_equal(rf_explain_channel_list(&s.ds, s.channels, "Fz,Xyz", idx, 8, &nidx, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "Xyz"));
    int cls;
    assert_int_equal(rf_explain_class_index(&s.ds, 2, "arithmetic", &cls, &e), RF_OK);
    assert_int_equal(cls, 1);
    assert_int_equal(rf_explain_class_index(&s.ds, 2, "1", &cls, &e), RF_OK);
    assert_int_equal(rf_explain_class_index(&s.ds, 2, "sleep", &cls, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "rest"));
    struct stat st;
    assert_true(stat(dir, &st) != 0); /* nothing written on errors before the run starts */

    free(keep);
    rf_dataset_free(&dd);
    free(order);
    free(x);
    free(lp);
    free(post);
    sim_teardown(&s);
    print_message("simulated EEG test: %.1f s\n", rf_now() - t0);
}

/* ---------------------------------------------------------------- feature vectors */

/* Feature vectors drawn from a known class-conditional flow (class means with different
 * profiles, a non-linear map): the report's class-conditional samples (another seed) must
 * reproduce each class's feature profile of the data, within sampling error. */
static void test_features_report(void **state) {
    (void)state;
    rf_err e = {0};
    const int D = 12, C = 3, per = 300, n = C * per;
    rf_flow *f = dense_class_flow(RF_FLOW_REALNVP, D, C, 3);
    perturb_layers(f, 0.05, 5);
    for (int c = 0; c < C; c++)
        for (int j = 0; j < D; j++) {
            base_mu(f, c)[j] = (float)(2.5 * sin(0.6 * j + 2.1 * c));
            base_ls(f, c)[j] = (float)log(0.6);
        }
    for (int j = 0; j < D; j++) {
        f->shift[j] = (float)(10 + j);
        f->scale[j] = 2.0f;
    }
    rf_dataset ds = {0};
    assert_int_equal(rf_matrix_alloc(&ds.x, n, D, &e), RF_OK);
    ds.labels = malloc(sizeof(int) * n);
    rf_rng r;
    rf_rng_seed(&r, 12);
    assert_int_equal(rf_explain_sample_classes(f, per, &r, ds.x.x, ds.labels, &e), RF_OK);
    ds.n_classes = C;
    char dir[256], p[512];
    rf_test_tmp(dir, sizeof dir, "explain-feat");
    rf_explain_opts o;
    rf_explain_opts_default(&o);
    o.quiet = 1;
    o.samples_per_class = 300;
    o.max_windows_per_class = 8;
    o.seed = 99;
    cJSON *j = NULL;
    if (rf_explain_run(f, &ds, &o, dir, &j, &e)) fail_msg("run: %s", e.msg);
    assert_string_equal(cJSON_GetObjectItem(j, "kind")->valuestring, "features");
    static const char *figs[4] = {"prototypes", "ood", "counterfactual", "contributions"};
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/%s.svg", dir, figs[k]);
        assert_true(file_contains(p, "</svg>"));
    }
    snprintf(p, sizeof p, "%s/spectra.svg", dir);
    struct stat st;
    assert_true(stat(p, &st) != 0); /* no spectra for feature vectors */
    const cJSON *pc = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "prototypes"), "per_class");
    for (int c = 0; c < C; c++) {
        const cJSON *o2 = cJSON_GetArrayItem(pc, c);
        const double rs = cJSON_GetObjectItem(o2, "sample_mean_vs_data_mean_r")->valuedouble;
        const double rm = cJSON_GetObjectItem(o2, "sample_mean_rmse_in_data_sd")->valuedouble;
        const double sr = cJSON_GetObjectItem(o2, "sample_sd_over_data_sd_geomean")->valuedouble;
        print_message("class %d: r(sample mean, data mean) %.3f, rmse %.3f data sd, sd ratio %.3f\n", c, rs, rm, sr);
        assert_true(rs > 0.97 && rm < 0.2 && sr > 0.85 && sr < 1.15);
    }
    /* the profiles differ between classes, so matching them is class-specific */
    const cJSON *m0 = cJSON_GetObjectItem(cJSON_GetArrayItem(pc, 0), "sample_mean");
    const cJSON *d1 = cJSON_GetObjectItem(cJSON_GetArrayItem(pc, 1), "data_mean");
    const cJSON *s1 = cJSON_GetObjectItem(cJSON_GetArrayItem(pc, 1), "data_sd");
    double dist = 0;
    for (int q = 0; q < D; q++)
        dist += fabs(cJSON_GetArrayItem(m0, q)->valuedouble - cJSON_GetArrayItem(d1, q)->valuedouble) /
                cJSON_GetArrayItem(s1, q)->valuedouble;
    assert_true(dist / D > 1);
    const cJSON *cf = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "counterfactual"), "path");
    assert_int_equal(cJSON_GetArraySize(cf), 5);
    for (int q = 1; q < 5; q++)
        assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(cf, q), "p_to")->valuedouble >=
                    cJSON_GetObjectItem(cJSON_GetArrayItem(cf, q - 1), "p_to")->valuedouble);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(cf, 4), "p_to")->valuedouble > 0.5);
    const cJSON *fe = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "contributions"), "features");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(fe, "per_class"), 0), "log_p")), D);
    cJSON_Delete(j);
    /* the shape of the data must match the model */
    rf_dataset small = {0};
    assert_int_equal(rf_matrix_alloc(&small.x, 4, D - 1, &e), RF_OK);
    assert_int_equal(rf_explain_run(f, &small, &o, dir, NULL, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "dimension"));
    rf_dataset_free(&small);
    rm_tree(dir);
    rf_flow_free(f);
    rf_dataset_free(&ds);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bands),
        cmocka_unit_test(test_band_split),
        cmocka_unit_test(test_band_shapley_gaussian),
        cmocka_unit_test(test_scores_and_rank),
        cmocka_unit_test(test_prototypes_roundtrip),
        cmocka_unit_test(test_counterfactual_handbuilt),
        cmocka_unit_test(test_gradients),
        cmocka_unit_test(test_simulated_eeg),
        cmocka_unit_test(test_features_report),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
