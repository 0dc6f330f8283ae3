/* Reference density models (refdensity.h): the full-covariance Gaussian, the EM Gaussian mixture and
 * the kernel density estimate, checked against known answers:
 * - Gaussian data: the Gaussian's test NLL equals the analytic entropy;
 * - a well-separated 3-component mixture: validation picks K = 3 and the means/weights come back;
 * - the mixture and kernel densities integrate to 1 (quadrature in 1-D and 2-D);
 * - the cross-validated KDE bandwidth is close to the bandwidth minimising the true test NLL
 *   (brute-force grid, with an independent naive KDE written here);
 * - samples of each model match its moments and its own log-density (cross-entropy by quadrature);
 * - bad input gives clear errors; a seed gives the same model twice;
 * - real data (EEG Eye State, 14-D): the mixture beats the single Gaussian on held-out NLL. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/refdensity.h"

#define LOG2PI 1.8378770664093454836

/* n rows of N(mu, L L^T) into m. */
static void gauss_rows(rf_matrix *m, int n, int D, const double *mu, const double *L, rf_rng *r) {
    assert_int_equal(rf_matrix_alloc(m, n, D, NULL), RF_OK);
    double z[16];
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) z[j] = rf_rng_normal(r);
        for (int a = 0; a < D; a++) {
            double v = mu[a];
            for (int b = 0; b <= a; b++) v += L[a * D + b] * z[b];
            m->x[(size_t)i * D + a] = (float)v;
        }
    }
}

/* A well-separated 2-D mixture of 3 Gaussians. */
static const double MIX_W[3] = {0.5, 0.3, 0.2};
static const double MIX_MU[3][2] = {{-6, 0}, {6, 1}, {0, 9}};
static const double MIX_L[3][4] = {{1.0, 0, 0.5, 0.8}, {0.7, 0, -0.3, 1.2}, {1.5, 0, 0, 0.6}};

static double mix_logpdf(const double *x) {
    double l[3], m = -INFINITY;
    for (int k = 0; k < 3; k++) {
        const double *L = MIX_L[k];
        const double u0 = (x[0] - MIX_MU[k][0]) / L[0];
        const double u1 = (x[1] - MIX_MU[k][1] - L[2] * u0) / L[3];
        l[k] = log(MIX_W[k]) - LOG2PI - log(L[0] * L[3]) - 0.5 * (u0 * u0 + u1 * u1);
        if (l[k] > m) m = l[k];
    }
    double s = 0;
    for (int k = 0; k < 3; k++) s += exp(l[k] - m);
    return m + log(s);
}

static void mix_rows(rf_matrix *m, int n, rf_rng *r) {
    assert_int_equal(rf_matrix_alloc(m, n, 2, NULL), RF_OK);
    for (int i = 0; i < n; i++) {
        const double u = rf_rng_uniform(r);
        const int k = u < MIX_W[0] ? 0 : u < MIX_W[0] + MIX_W[1] ? 1 : 2;
        const double z0 = rf_rng_normal(r), z1 = rf_rng_normal(r);
        const double *L = MIX_L[k];
        m->x[2 * i] = (float)(MIX_MU[k][0] + L[0] * z0);
        m->x[2 * i + 1] = (float)(MIX_MU[k][1] + L[2] * z0 + L[3] * z1);
    }
}

static rf_refdensity *fit_ok(const char *kind, const rf_matrix *tr, const rf_matrix *va, const rf_refdensity_opts *o) {
    rf_err e;
    rf_err_clear(&e);
    rf_refdensity *m = rf_refdensity_fit(kind, tr, va, o, &e);
    if (!m) fail_msg("fit %s: %s", kind, e.msg);
    return m;
}

static double nll_of(const rf_refdensity *m, const rf_matrix *x) {
    double nll;
    rf_err e;
    if (rf_refdensity_logpdf(m, x, NULL, &nll, &e)) fail_msg("logpdf: %s", e.msg);
    return nll;
}

/* Integral of exp(logpdf) over a regular grid (midpoint rule); lo/hi per dimension, D = 1 or 2. */
static double integrate(const rf_refdensity *m, int D, const double *lo, const double *hi, int n) {
    const int rows = D == 1 ? n : n * n;
    rf_matrix g;
    assert_int_equal(rf_matrix_alloc(&g, rows, D, NULL), RF_OK);
    const double h0 = (hi[0] - lo[0]) / n, h1 = D == 2 ? (hi[1] - lo[1]) / n : 1;
    for (int i = 0; i < rows; i++) {
        g.x[(size_t)i * D] = (float)(lo[0] + (i % n + 0.5) * h0);
        if (D == 2) g.x[(size_t)i * D + 1] = (float)(lo[1] + (i / n + 0.5) * h1);
    }
    double *lp = malloc(sizeof(double) * rows);
    rf_err e;
    if (rf_refdensity_logpdf(m, &g, lp, NULL, &e)) fail_msg("%s", e.msg);
    double s = 0;
    for (int i = 0; i < rows; i++) s += exp(lp[i]);
    free(lp);
    rf_matrix_free(&g);
    return s * h0 * h1;
}

static cJSON *describe(const rf_refdensity *m) {
    cJSON *j = rf_refdensity_describe_json(m);
    assert_non_null(j);
    return j;
}

static double jnum(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    if (!cJSON_IsNumber(v)) fail_msg("description field %s missing or not a number", k);
    return v->valuedouble;
}

/* ---- Gaussian: analytic entropy ---- */
static void test_gaussian_entropy(void **s) {
    (void)s;
    const int D = 4, n = 20000;
    const double mu[4] = {1000, -3, 0.5, 40};
    /* covariance L L^T with very different scales (a raw-units check of the standardisation) */
    const double L[16] = {50, 0, 0, 0, 0.3, 0.8, 0, 0, -1, 0.5, 2, 0, 10, 0, 3, 7};
    rf_rng r;
    rf_rng_seed(&r, 11);
    rf_matrix tr, te;
    gauss_rows(&tr, n, D, mu, L, &r);
    gauss_rows(&te, n, D, mu, L, &r);
    double logdet = 0;
    for (int a = 0; a < D; a++) logdet += 2 * log(L[a * D + a]);
    const double H = 0.5 * D * (1 + LOG2PI) + 0.5 * logdet;
    rf_refdensity *m = fit_ok("gaussian", &tr, NULL, NULL);
    const double nll = nll_of(m, &te);
    printf("gaussian: test NLL %.4f nats, analytic entropy %.4f (diff %.4f)\n", nll, H, nll - H);
    assert_true(fabs(nll - H) < 0.03);
    /* the fitted covariance is the sample covariance: log-det within sampling error */
    cJSON *j = describe(m);
    printf("  logdet_cov %.4f (true %.4f); n_params %.0f, flops logpdf %.0f\n", jnum(j, "logdet_cov"), logdet,
           jnum(j, "n_params"), jnum(j, "flops_logpdf"));
    assert_true(fabs(jnum(j, "logdet_cov") - logdet) < 0.05);
    assert_int_equal((int)jnum(j, "n_params"), D + D * (D + 1) / 2);
    assert_int_equal((int)jnum(j, "flops_logpdf"), D * D + 5 * D + 3);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "val_nll"))); /* no validation rows given */
    assert_string_equal(cJSON_GetObjectItem(j, "val_source")->valuestring, "none");
    assert_int_equal((int)jnum(j, "fit_rows"), n);
    assert_true(jnum(j, "fit_seconds") >= 0);
    cJSON_Delete(j);
    /* with val rows: val_nll is the mean NLL on them */
    rf_refdensity *m2 = fit_ok("gaussian", &tr, &te, NULL);
    assert_true(fabs(rf_refdensity_val_nll(m2) - nll) < 1e-9);
    rf_refdensity_free(m2);
    rf_refdensity_free(m);
    rf_matrix_free(&tr);
    rf_matrix_free(&te);
}

/* ---- GMM: K by validation, means and weights ---- */
static void test_gmm_selects_three(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 5);
    rf_matrix tr, te;
    mix_rows(&tr, 4000, &r);
    mix_rows(&te, 4000, &r);
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    o.max_components = 6;
    rf_refdensity *m = fit_ok("gmm", &tr, NULL, &o); /* validation: a seeded 20 % split of train */
    cJSON *j = describe(m);
    const cJSON *curve = cJSON_GetObjectItem(j, "curve");
    assert_int_equal(cJSON_GetArraySize(curve), 6);
    printf("gmm validation curve (K: val NLL / train NLL):");
    for (int k = 0; k < 6; k++) {
        const cJSON *p = cJSON_GetArrayItem(curve, k);
        printf(" %d: %.4f/%.4f", (int)jnum(p, "k"), jnum(p, "val_nll"), jnum(p, "train_nll"));
    }
    printf("\n");
    assert_int_equal(rf_refdensity_components(m), 3);
    assert_int_equal((int)jnum(j, "components"), 3);
    assert_int_equal((int)jnum(j, "chosen_k"), 3);
    assert_string_equal(cJSON_GetObjectItem(j, "k_rule")->valuestring, "one-standard-error");
    /* the one-standard-error rule: K = 3 is within one SE of the curve's minimum, K = 2 is not */
    {
        const cJSON *p2 = cJSON_GetArrayItem(curve, 1), *p3 = cJSON_GetArrayItem(curve, 2);
        assert_true(jnum(p3, "val_nll_minus_best") <= jnum(p3, "se_vs_best"));
        assert_true(jnum(p2, "val_nll_minus_best") > jnum(p2, "se_vs_best"));
        int argmin = 0;
        for (int k = 1; k < 6; k++)
            if (jnum(cJSON_GetArrayItem(curve, k), "val_nll") < jnum(cJSON_GetArrayItem(curve, argmin), "val_nll"))
                argmin = k;
        assert_int_equal((int)jnum(j, "best_val_k"), argmin + 1);
        /* k_rule MIN keeps the minimum of the same curve (same seed: same fits) */
        rf_refdensity_opts om = o;
        om.k_rule = RF_KRULE_MIN;
        rf_refdensity *mm = fit_ok("gmm", &tr, NULL, &om);
        printf("  k_rule min: K %d (curve minimum at K %d)\n", rf_refdensity_components(mm), argmin + 1);
        assert_int_equal(rf_refdensity_components(mm), argmin + 1);
        rf_refdensity_free(mm);
    }
    assert_int_equal((int)jnum(j, "fit_rows"), 3200);
    assert_int_equal((int)jnum(j, "val_rows"), 800);
    /* recovered means (matched to the nearest true one) and weights */
    int used[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        double w, mu[2], cov[4];
        assert_int_equal(rf_refdensity_gmm_component(m, k, &w, mu, cov, NULL), RF_OK);
        int t = 0;
        double bd = INFINITY;
        for (int q = 0; q < 3; q++) {
            const double d = hypot(mu[0] - MIX_MU[q][0], mu[1] - MIX_MU[q][1]);
            if (d < bd) bd = d, t = q;
        }
        used[t]++;
        const double *L = MIX_L[t];
        printf("  component %d: w %.3f (true %.2f), mean (%.3f, %.3f) (true (%g, %g)), var (%.3f, %.3f) (true (%.3f, "
               "%.3f))\n",
               k, w, MIX_W[t], mu[0], mu[1], MIX_MU[t][0], MIX_MU[t][1], cov[0], cov[3], L[0] * L[0],
               L[2] * L[2] + L[3] * L[3]);
        assert_true(bd < 0.15);
        assert_true(fabs(w - MIX_W[t]) < 0.03);
        assert_true(fabs(cov[0] / (L[0] * L[0]) - 1) < 0.15);
        assert_true(fabs(cov[3] / (L[2] * L[2] + L[3] * L[3]) - 1) < 0.15);
    }
    assert_true(used[0] == 1 && used[1] == 1 && used[2] == 1);
    /* close to the true density on test rows; far better than one Gaussian */
    double truth = 0;
    for (int i = 0; i < te.n; i++) {
        const double x[2] = {te.x[2 * i], te.x[2 * i + 1]};
        truth -= mix_logpdf(x);
    }
    truth /= te.n;
    rf_refdensity *g = fit_ok("gaussian", &tr, NULL, NULL);
    const double gm = nll_of(m, &te), gn = nll_of(g, &te);
    printf("  test NLL: true density %.4f, gmm %.4f, gaussian %.4f\n", truth, gm, gn);
    assert_true(fabs(gm - truth) < 0.03);
    assert_true(gn > gm + 0.5);
    assert_int_equal((int)rf_refdensity_n_params(m), 2 + 3 * 2 + 3 * 3);
    assert_int_equal((int)rf_refdensity_flops_per_sample(m, RF_REF_FLOPS_LOGPDF), 4 + 3 * (6 + 2 + 4 + 2) + 9 + 3);
    cJSON_Delete(j);
    rf_refdensity_free(g);
    rf_refdensity_free(m);
    rf_matrix_free(&tr);
    rf_matrix_free(&te);
}

/* ---- the mixture log-density equals the one written from its components (full and diagonal) ---- */
static void test_gmm_components_logpdf(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 13);
    rf_matrix tr, te;
    mix_rows(&tr, 2000, &r);
    mix_rows(&te, 500, &r);
    for (int cov = 0; cov < 2; cov++) {
        rf_refdensity_opts o;
        rf_refdensity_opts_default(&o);
        o.max_components = 5;
        o.gmm_cov = cov ? RF_GMM_DIAG : RF_GMM_FULL;
        rf_refdensity *m = fit_ok("gmm", &tr, NULL, &o);
        const int K = rf_refdensity_components(m);
        double w[8], mu[8][2], cv[8][4];
        for (int k = 0; k < K; k++)
            assert_int_equal(rf_refdensity_gmm_component(m, k, &w[k], mu[k], cv[k], NULL), RF_OK);
        double *lp = malloc(sizeof(double) * te.n), maxerr = 0;
        assert_int_equal(rf_refdensity_logpdf(m, &te, lp, NULL, NULL), RF_OK);
        for (int i = 0; i < te.n; i++) {
            double acc = 0;
            for (int k = 0; k < K; k++) {
                const double det = cv[k][0] * cv[k][3] - cv[k][1] * cv[k][2];
                const double d0 = te.x[2 * i] - mu[k][0], d1 = te.x[2 * i + 1] - mu[k][1];
                const double q = (cv[k][3] * d0 * d0 - 2 * cv[k][1] * d0 * d1 + cv[k][0] * d1 * d1) / det;
                acc += w[k] * exp(-0.5 * q) / (2 * M_PI * sqrt(det));
            }
            const double err = fabs(log(acc) - lp[i]);
            if (err > maxerr) maxerr = err;
        }
        if (cov) /* diagonal: no off-diagonal covariance */
            for (int k = 0; k < K; k++) assert_true(cv[k][1] == 0 && cv[k][2] == 0);
        const int64_t np = cov ? (K - 1) + 2 * K * 2 : (K - 1) + K * 2 + K * 3;
        printf("gmm %s: K %d, max |log p - log p(components)| = %.2e, n_params %lld\n", cov ? "diag" : "full", K,
               maxerr, (long long)rf_refdensity_n_params(m));
        assert_true(maxerr < 1e-9);
        assert_int_equal(rf_refdensity_n_params(m), np);
        /* the quadrature check for the diagonal mixture too */
        const double lo2[2] = {-30, -20}, hi2[2] = {30, 30};
        assert_true(fabs(integrate(m, 2, lo2, hi2, 600) - 1) < 5e-3);
        free(lp);
        rf_refdensity_free(m);
    }
    /* k_patience stops the scan after that many K without a better validation NLL */
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    o.max_components = 8;
    o.k_patience = 1;
    rf_refdensity *m = fit_ok("gmm", &tr, NULL, &o);
    cJSON *j = describe(m);
    const int n_curve = cJSON_GetArraySize(cJSON_GetObjectItem(j, "curve"));
    printf("k_patience 1: the scan stopped after K = %d\n", n_curve);
    assert_true(n_curve >= 4 && n_curve < 8);
    cJSON_Delete(j);
    rf_refdensity_free(m);
    rf_matrix_free(&tr);
    rf_matrix_free(&te);
}

/* ---- densities integrate to 1 ---- */
static void test_integrates_to_one(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 3);
    /* 1-D: a bimodal sample */
    rf_matrix x1;
    assert_int_equal(rf_matrix_alloc(&x1, 600, 1, NULL), RF_OK);
    for (int i = 0; i < 600; i++) x1.x[i] = (float)(i % 3 ? 2 + 0.5 * rf_rng_normal(&r) : -1 + 1.5 * rf_rng_normal(&r));
    rf_matrix x2;
    mix_rows(&x2, 1500, &r);
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    o.max_components = 4;
    const char *kinds[3] = {"gaussian", "gmm", "kde"};
    for (int q = 0; q < 3; q++) {
        rf_refdensity *m1 = fit_ok(kinds[q], &x1, NULL, &o);
        const double lo1[1] = {-12}, hi1[1] = {12};
        const double i1 = integrate(m1, 1, lo1, hi1, 24000);
        rf_refdensity *m2 = fit_ok(kinds[q], &x2, NULL, &o);
        const double lo2[2] = {-30, -20}, hi2[2] = {30, 30};
        const double i2 = integrate(m2, 2, lo2, hi2, 700);
        printf("%-8s integral of the density: 1-D %.6f (K/centres %d), 2-D %.6f (K/centres %d)\n", kinds[q], i1,
               rf_refdensity_components(m1), i2, rf_refdensity_components(m2));
        assert_true(fabs(i1 - 1) < 1e-3);
        assert_true(fabs(i2 - 1) < 5e-3);
        rf_refdensity_free(m1);
        rf_refdensity_free(m2);
    }
    rf_matrix_free(&x1);
    rf_matrix_free(&x2);
}

/* ---- KDE bandwidth vs the true-test-NLL optimum ---- */

/* Naive KDE (written independently here): kernel N(0, h^2 diag(sd^2)) with the training rows'
 * mean / population sd, mean NLL over the rows of te. */
static double naive_kde_nll(const rf_matrix *tr, const rf_matrix *te, double h) {
    const int D = tr->d;
    double sd[2] = {0, 0}, mean[2] = {0, 0};
    for (int i = 0; i < tr->n; i++)
        for (int j = 0; j < D; j++) mean[j] += tr->x[i * D + j];
    for (int j = 0; j < D; j++) mean[j] /= tr->n;
    for (int i = 0; i < tr->n; i++)
        for (int j = 0; j < D; j++) sd[j] += (tr->x[i * D + j] - mean[j]) * (tr->x[i * D + j] - mean[j]);
    for (int j = 0; j < D; j++) sd[j] = sqrt(sd[j] / tr->n);
    double *l = malloc(sizeof(double) * tr->n), tot = 0;
    for (int q = 0; q < te->n; q++) {
        double m = -INFINITY;
        for (int i = 0; i < tr->n; i++) {
            double s = 0;
            for (int j = 0; j < D; j++) {
                const double u = (te->x[q * D + j] - tr->x[i * D + j]) / (h * sd[j]);
                s += u * u;
            }
            l[i] = -0.5 * s;
            if (l[i] > m) m = l[i];
        }
        double acc = 0;
        for (int i = 0; i < tr->n; i++) acc += exp(l[i] - m);
        double lp = m + log(acc) - log((double)tr->n) - 0.5 * D * LOG2PI;
        for (int j = 0; j < D; j++) lp -= log(h * sd[j]);
        tot -= lp;
    }
    free(l);
    return tot / te->n;
}

static void test_kde_bandwidth(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 21);
    rf_matrix tr, va, te;
    mix_rows(&tr, 800, &r);
    mix_rows(&va, 800, &r);
    mix_rows(&te, 2000, &r);
    /* the oracle: bandwidth minimising the true test NLL on a fine log grid */
    double best_h = 0, best = INFINITY;
    for (int i = 0; i <= 80; i++) {
        const double h = exp(log(0.02) + (log(1.0) - log(0.02)) * i / 80);
        const double v = naive_kde_nll(&tr, &te, h);
        if (v < best) best = v, best_h = h;
    }
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    rf_refdensity *m = fit_ok("kde", &tr, &va, &o);
    const double h = rf_refdensity_bandwidth(m), at_h = naive_kde_nll(&tr, &te, h), nll = nll_of(m, &te);
    cJSON *j = describe(m);
    printf("kde (validation rows): h %.4f (Scott %.4f, Silverman %.4f); oracle h %.4f; test NLL at h %.4f "
           "(library %.4f), at the oracle %.4f\n",
           h, jnum(j, "bandwidth_scott"), jnum(j, "bandwidth_silverman"), best_h, at_h, nll, best);
    assert_true(fabs(at_h - nll) < 1e-6); /* the library's log-density equals the naive one */
    assert_true(h / best_h < 1.5 && best_h / h < 1.5);
    assert_true(at_h - best < 0.02);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(j, "at_grid_edge")));
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItem(j, "curve")) == o.kde_n_bandwidths + 2 + o.kde_refine);
    assert_true(h < 0.7 * jnum(j, "bandwidth_scott")); /* the multimodal density needs less than Scott */
    assert_int_equal((int)rf_refdensity_n_params(m), 800 * 2 + 2);
    cJSON_Delete(j);
    rf_refdensity_free(m);
    /* 5-fold cross-validation on the training rows */
    o.kde_folds = 5;
    m = fit_ok("kde", &tr, NULL, &o);
    const double hk = rf_refdensity_bandwidth(m), at_hk = naive_kde_nll(&tr, &te, hk);
    j = describe(m);
    printf("kde (5-fold CV): h %.4f, test NLL at h %.4f; val_source %s\n", hk, at_hk,
           cJSON_GetObjectItem(j, "val_source")->valuestring);
    assert_string_equal(cJSON_GetObjectItem(j, "val_source")->valuestring, "kfold");
    assert_int_equal((int)jnum(j, "centres"), 800);
    assert_true(hk / best_h < 1.5 && best_h / hk < 1.5);
    assert_true(at_hk - best < 0.02);
    cJSON_Delete(j);
    rf_refdensity_free(m);
    /* the centre cap subsamples (recorded) */
    o.kde_folds = 0;
    o.kde_max_rows = 300;
    m = fit_ok("kde", &tr, &va, &o);
    j = describe(m);
    assert_int_equal(rf_refdensity_components(m), 300);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "subsampled")));
    assert_int_equal((int)rf_refdensity_n_params(m), 300 * 2 + 2);
    cJSON_Delete(j);
    rf_refdensity_free(m);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
    rf_matrix_free(&te);
}

/* ---- sampling agrees with each model ---- */
static void test_sampling(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 8);
    rf_matrix tr, va;
    mix_rows(&tr, 2000, &r);
    mix_rows(&va, 500, &r);
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    o.max_components = 4;
    const char *kinds[3] = {"gaussian", "gmm", "kde"};
    /* training moments */
    double tm[2] = {0, 0}, tc[4] = {0, 0, 0, 0};
    for (int i = 0; i < tr.n; i++)
        for (int a = 0; a < 2; a++) tm[a] += tr.x[2 * i + a] / (double)tr.n;
    for (int i = 0; i < tr.n; i++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) tc[a * 2 + b] += (tr.x[2 * i + a] - tm[a]) * (tr.x[2 * i + b] - tm[b]) / tr.n;
    for (int q = 0; q < 3; q++) {
        rf_refdensity *m = fit_ok(kinds[q], &tr, &va, &o);
        /* the model's own first two moments */
        double mm[2], mc[4];
        memcpy(mm, tm, sizeof mm);
        memcpy(mc, tc, sizeof mc);
        if (q == 1) { /* mixture moments from the components */
            memset(mm, 0, sizeof mm);
            memset(mc, 0, sizeof mc);
            double w[8], mu[8][2], cv[8][4];
            const int K = rf_refdensity_components(m);
            for (int k = 0; k < K; k++) {
                assert_int_equal(rf_refdensity_gmm_component(m, k, &w[k], mu[k], cv[k], NULL), RF_OK);
                for (int a = 0; a < 2; a++) mm[a] += w[k] * mu[k][a];
            }
            for (int k = 0; k < K; k++)
                for (int a = 0; a < 4; a++)
                    mc[a] += w[k] * (cv[k][a] + (mu[k][a / 2] - mm[a / 2]) * (mu[k][a % 2] - mm[a % 2]));
        } else if (q == 2) { /* centres' moments + the kernel's covariance h^2 sd^2 */
            const double h = rf_refdensity_bandwidth(m);
            mc[0] += h * h * tc[0];
            mc[3] += h * h * tc[3];
        }
        const int ns = 40000;
        rf_matrix smp;
        rf_rng rs;
        rf_rng_seed(&rs, 99);
        rf_err e;
        if (rf_refdensity_sample(m, ns, &rs, &smp, &e)) fail_msg("%s", e.msg);
        double sm[2] = {0, 0}, sc[4] = {0, 0, 0, 0};
        for (int i = 0; i < ns; i++)
            for (int a = 0; a < 2; a++) sm[a] += smp.x[2 * i + a] / (double)ns;
        for (int i = 0; i < ns; i++)
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++)
                    sc[a * 2 + b] += (smp.x[2 * i + a] - sm[a]) * (smp.x[2 * i + b] - sm[b]) / ns;
        /* cross-entropy of the model with itself: mean -log p over its samples vs quadrature */
        const double nll_s = nll_of(m, &smp);
        rf_matrix g;
        const int G = 700;
        assert_int_equal(rf_matrix_alloc(&g, G * G, 2, NULL), RF_OK);
        const double lo[2] = {-30, -20}, hi[2] = {30, 30}, h0 = (hi[0] - lo[0]) / G, h1 = (hi[1] - lo[1]) / G;
        for (int i = 0; i < G * G; i++) {
            g.x[2 * i] = (float)(lo[0] + (i % G + 0.5) * h0);
            g.x[2 * i + 1] = (float)(lo[1] + (i / G + 0.5) * h1);
        }
        double *lp = malloc(sizeof(double) * G * G), H = 0;
        if (rf_refdensity_logpdf(m, &g, lp, NULL, &e)) fail_msg("%s", e.msg);
        for (int i = 0; i < G * G; i++) H -= exp(lp[i]) * lp[i] * h0 * h1;
        printf("%-8s samples: mean (%.3f, %.3f) vs model (%.3f, %.3f); var (%.3f, %.3f) vs (%.3f, %.3f); cov %.3f vs "
               "%.3f; -E log p: samples %.4f, quadrature %.4f\n",
               kinds[q], sm[0], sm[1], mm[0], mm[1], sc[0], sc[3], mc[0], mc[3], sc[1], mc[1], nll_s, H);
        for (int a = 0; a < 2; a++) assert_true(fabs(sm[a] - mm[a]) < 4 * sqrt(mc[a * 3] / ns));
        for (int a = 0; a < 4; a++) assert_true(fabs(sc[a] - mc[a]) < 0.03 * sqrt(mc[0] * mc[3]));
        assert_true(fabs(nll_s - H) < 0.03);
        free(lp);
        rf_matrix_free(&g);
        rf_matrix_free(&smp);
        rf_refdensity_free(m);
    }
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
}

/* ---- degenerate data: duplicated points, more components than distinct values ---- */
static void test_degenerate(void **s) {
    (void)s;
    rf_matrix x;
    assert_int_equal(rf_matrix_alloc(&x, 300, 2, NULL), RF_OK);
    rf_rng r;
    rf_rng_seed(&r, 4);
    for (int i = 0; i < 300; i++) { /* 3 distinct points, plus a tiny jitter on a third of the rows */
        const int k = i % 3;
        x.x[2 * i] = (float)(k * 5 + (i % 9 == 0 ? 0.01 * rf_rng_normal(&r) : 0));
        x.x[2 * i + 1] = (float)(k == 1 ? 3 : 0);
    }
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    o.max_components = 6;
    o.em_max_iter = 100;
    rf_refdensity *m = fit_ok("gmm", &x, NULL, &o);
    cJSON *j = describe(m);
    const cJSON *curve = cJSON_GetObjectItem(j, "curve");
    int fixes = 0;
    for (int k = 0; k < cJSON_GetArraySize(curve); k++) {
        const cJSON *p = cJSON_GetArrayItem(curve, k);
        assert_true(isfinite(jnum(p, "val_nll")) && isfinite(jnum(p, "train_nll")));
        fixes += (int)jnum(p, "reseeded") + (int)jnum(p, "removed");
    }
    double *lp = malloc(sizeof(double) * x.n);
    assert_int_equal(rf_refdensity_logpdf(m, &x, lp, NULL, NULL), RF_OK);
    for (int i = 0; i < x.n; i++) assert_true(isfinite(lp[i]));
    printf("degenerate data: chosen K %d, %d re-seeded/removed components over the K scan, val NLL %.3f\n",
           rf_refdensity_components(m), fixes, jnum(j, "val_nll"));
    assert_true(fixes > 0);
    free(lp);
    cJSON_Delete(j);
    rf_refdensity_free(m);
    /* a constant column: finite densities everywhere, for every kind */
    for (int i = 0; i < 300; i++) x.x[2 * i + 1] = 7.0f, x.x[2 * i] = (float)rf_rng_normal(&r);
    const char *kinds[3] = {"gaussian", "gmm", "kde"};
    for (int q = 0; q < 3; q++) {
        o.max_components = 3;
        m = fit_ok(kinds[q], &x, NULL, &o);
        double nll;
        assert_int_equal(rf_refdensity_logpdf(m, &x, NULL, &nll, NULL), RF_OK);
        printf("constant column, %s: NLL %.3f\n", kinds[q], nll);
        assert_true(isfinite(nll));
        rf_refdensity_free(m);
    }
    rf_matrix_free(&x);
}

/* ---- bad input ---- */
static void expect_fit_error(const char *kind, const rf_matrix *tr, const rf_matrix *va, const rf_refdensity_opts *o,
                             int code, const char *needle) {
    rf_err e;
    rf_err_clear(&e);
    rf_refdensity *m = rf_refdensity_fit(kind, tr, va, o, &e);
    printf("  %s: %s\n", kind ? kind : "(null)", e.msg);
    assert_null(m);
    assert_int_equal(e.code, code);
    if (!strstr(e.msg, needle)) fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_bad_input(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 1);
    rf_matrix x, v3;
    mix_rows(&x, 200, &r);
    assert_int_equal(rf_matrix_alloc(&v3, 10, 3, NULL), RF_OK);
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    printf("error messages:\n");
    x.x[2 * 7 + 1] = NAN;
    expect_fit_error("gmm", &x, NULL, NULL, RF_ENONFINITE, "row 7, column 1");
    x.x[2 * 7 + 1] = INFINITY;
    expect_fit_error("kde", &x, NULL, NULL, RF_ENONFINITE, "row 7, column 1");
    x.x[2 * 7 + 1] = 0;
    expect_fit_error("gmm", &x, &v3, NULL, RF_EARG, "3 columns");
    expect_fit_error("flow", &x, NULL, NULL, RF_EARG, "'flow'");
    expect_fit_error(NULL, &x, NULL, NULL, RF_EARG, "expected gaussian, gmm or kde");
    expect_fit_error("gaussian", NULL, NULL, NULL, RF_EARG, "NULL");
    /* too few rows for K = 8: 20 rows, 16 after the split, 3 per full 2-D covariance: K goes up
     * to 5 only, and the detail says so; 2 rows cannot fit one component */
    rf_matrix few = {.n = 20, .d = 2, .x = x.x};
    rf_err fe = {0};
    rf_refdensity *fm = rf_refdensity_fit("gmm", &few, NULL, NULL, &fe);
    assert_non_null(fm);
    cJSON *fd = rf_refdensity_describe_json(fm);
    assert_int_equal(cJSON_GetObjectItem(fd, "max_components")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItem(fd, "max_components_requested")->valueint, 8);
    assert_true(cJSON_GetObjectItem(fd, "chosen_k")->valueint <= 5);
    assert_non_null(strstr(cJSON_GetObjectItem(fd, "max_components_note")->valuestring, "16 fitting rows"));
    cJSON_Delete(fd);
    rf_refdensity_free(fm);
    rf_matrix two = {.n = 2, .d = 2, .x = x.x};
    expect_fit_error("gmm", &two, &few, NULL, RF_EARG, "needs at least 3 fitting rows, got 2");
    expect_fit_error("gaussian", &two, NULL, NULL, RF_EARG, "needs at least 3 rows");
    o.val_frac = 1.5;
    expect_fit_error("gmm", &x, NULL, &o, RF_EARG, "val_frac");
    rf_refdensity_opts_default(&o);
    o.kde_folds = 1;
    expect_fit_error("kde", &x, NULL, &o, RF_EARG, "kde_folds");
    rf_refdensity_opts_default(&o);
    o.max_components = 0;
    expect_fit_error("gmm", &x, NULL, &o, RF_EARG, "max_components");
    /* logpdf: D mismatch, NaN input; sample: negative n */
    rf_refdensity *m = fit_ok("gaussian", &x, NULL, NULL);
    rf_err e;
    assert_int_equal(rf_refdensity_logpdf(m, &v3, NULL, NULL, &e), RF_EARG);
    printf("  logpdf: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "2-dimensional"));
    x.x[5] = NAN;
    assert_int_equal(rf_refdensity_logpdf(m, &x, NULL, NULL, &e), RF_ENONFINITE);
    printf("  logpdf: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "row 2, column 1"));
    rf_matrix out;
    assert_int_equal(rf_refdensity_sample(m, -1, &r, &out, &e), RF_EARG);
    printf("  sample: %s\n", e.msg);
    assert_int_equal(rf_refdensity_gmm_component(m, 1, NULL, NULL, NULL, &e), RF_EARG);
    rf_refdensity_free(m);
    rf_refdensity_free(NULL);
    rf_matrix_free(&x);
    rf_matrix_free(&v3);
}

/* ---- determinism ---- */
static void test_determinism(void **s) {
    (void)s;
    rf_rng r;
    rf_rng_seed(&r, 2);
    rf_matrix x, te;
    mix_rows(&x, 1500, &r);
    mix_rows(&te, 300, &r);
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    o.max_components = 4;
    o.seed = 7;
    o.kde_max_rows = 700; /* a seeded subsample of the centres too */
    const char *kinds[2] = {"gmm", "kde"};
    for (int q = 0; q < 2; q++) {
        rf_refdensity *a = fit_ok(kinds[q], &x, NULL, &o), *b = fit_ok(kinds[q], &x, NULL, &o);
        double *la = malloc(sizeof(double) * te.n), *lb = malloc(sizeof(double) * te.n);
        assert_int_equal(rf_refdensity_logpdf(a, &te, la, NULL, NULL), RF_OK);
        assert_int_equal(rf_refdensity_logpdf(b, &te, lb, NULL, NULL), RF_OK);
        assert_memory_equal(la, lb, sizeof(double) * te.n);
        cJSON *ja = describe(a), *jb = describe(b);
        cJSON_DeleteItemFromObject(ja, "fit_seconds");
        cJSON_DeleteItemFromObject(jb, "fit_seconds");
        char *sa = cJSON_PrintUnformatted(ja), *sb = cJSON_PrintUnformatted(jb);
        assert_string_equal(sa, sb);
        rf_matrix ma, mb;
        rf_rng ra, rb;
        rf_rng_seed(&ra, 3);
        rf_rng_seed(&rb, 3);
        assert_int_equal(rf_refdensity_sample(a, 100, &ra, &ma, NULL), RF_OK);
        assert_int_equal(rf_refdensity_sample(b, 100, &rb, &mb, NULL), RF_OK);
        assert_memory_equal(ma.x, mb.x, sizeof(float) * 200);
        /* another seed: another validation split, another model */
        rf_refdensity_opts o2 = o;
        o2.seed = 8;
        rf_refdensity *c = fit_ok(kinds[q], &x, NULL, &o2);
        printf("%s: seed 7 twice -> identical (val NLL %.6f); seed 8 -> val NLL %.6f\n", kinds[q],
               rf_refdensity_val_nll(a), rf_refdensity_val_nll(c));
        assert_true(rf_refdensity_val_nll(a) != rf_refdensity_val_nll(c));
        rf_refdensity_free(c);
        free(sa);
        free(sb);
        cJSON_Delete(ja);
        cJSON_Delete(jb);
        rf_matrix_free(&ma);
        rf_matrix_free(&mb);
        free(la);
        free(lb);
        rf_refdensity_free(a);
        rf_refdensity_free(b);
    }
    rf_matrix_free(&x);
    rf_matrix_free(&te);
}

/* ---- real data: EEG Eye State (14-D), the mixture beats the Gaussian ---- */
static void test_eeg_eye_state(void **s) {
    (void)s;
    const char *dir = rf_test_data_dir();
    if (!dir) skip();
    if (getenv("RF_SANITIZED")) {
        printf("sanitized build: the real-data fit runs in the release build only\n");
        skip();
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/uci-eeg-eye-state/eeg-eye-state.arff", dir);
    rf_matrix all, clean, rest, tr, va, te;
    int *y = NULL;
    rf_err e;
    if (rf_arff_read(path, NULL, &all, &y, &e)) fail_msg("%s", e.msg);
    unsigned char *keep = malloc((size_t)all.n);
    const int dropped = rf_outlier_rows(&all, 20.0, keep); /* the 4 electrode spikes, as in test_realdata */
    assert_int_equal(rf_matrix_select_rows(&all, keep, &clean, NULL), RF_OK);
    rf_rng r;
    rf_rng_seed(&r, 2024);
    assert_int_equal(rf_holdout_split(&clean, NULL, 0.2, &r, &rest, NULL, &te, NULL, NULL), RF_OK);
    assert_int_equal(rf_holdout_split(&rest, NULL, 0.125, &r, &tr, NULL, &va, NULL, NULL), RF_OK);
    rf_refdensity_opts o;
    rf_refdensity_opts_default(&o);
    o.max_components = 8;
    o.restarts = 2;
    o.kde_max_rows = 4000;
    o.kde_max_val_rows = 1000;
    rf_refdensity *g = fit_ok("gaussian", &tr, &va, &o), *m = fit_ok("gmm", &tr, &va, &o),
                  *k = fit_ok("kde", &tr, &va, &o);
    const double gt = nll_of(g, &te), mt = nll_of(m, &te), kt = nll_of(k, &te);
    printf("EEG eye state (%d rows, %d spikes dropped; train %d / val %d / test %d, 14-D):\n", all.n, dropped, tr.n,
           va.n, te.n);
    printf("  gaussian: val %.3f, test %.3f nats (%.2f s)\n", rf_refdensity_val_nll(g), gt,
           rf_refdensity_fit_seconds(g));
    printf("  gmm:      K %d, val %.3f, test %.3f nats (%.2f s)\n", rf_refdensity_components(m),
           rf_refdensity_val_nll(m), mt, rf_refdensity_fit_seconds(m));
    printf("  kde:      h %.3f on %d centres, val %.3f, test %.3f nats (%.2f s)\n", rf_refdensity_bandwidth(k),
           rf_refdensity_components(k), rf_refdensity_val_nll(k), kt, rf_refdensity_fit_seconds(k));
    assert_true(rf_refdensity_components(m) >= 2);
    assert_true(rf_refdensity_val_nll(m) < rf_refdensity_val_nll(g) - 0.5);
    assert_true(mt < gt - 0.5);
    cJSON *j = rf_refdensity_describe_json(m);
    char *txt = cJSON_Print(j);
    if (getenv("RF_VERBOSE")) printf("%s\n", txt);
    free(txt);
    cJSON_Delete(j);
    rf_refdensity_free(g);
    rf_refdensity_free(m);
    rf_refdensity_free(k);
    free(keep);
    free(y);
    rf_matrix_free(&all);
    rf_matrix_free(&clean);
    rf_matrix_free(&rest);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
    rf_matrix_free(&te);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaussian_entropy),
        cmocka_unit_test(test_gmm_selects_three),
        cmocka_unit_test(test_gmm_components_logpdf),
        cmocka_unit_test(test_integrates_to_one),
        cmocka_unit_test(test_kde_bandwidth),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_eeg_eye_state),
    };
    if (getenv("RF_TEST_FILTER")) cmocka_set_test_filter(getenv("RF_TEST_FILTER")); /* e.g. "test_kde*" */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
