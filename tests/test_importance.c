/* Hyperparameter importance (fANOVA on a random forest) and multi-objective ranking.
 *
 * fANOVA is checked against functions whose variance decomposition on the uniform unit cube is
 * known in closed form, and, on a single tree, against Monte Carlo integration of that same tree
 * (which checks the exact leaf-box computation independently of how well the forest fits).
 * Non-dominated sorting is checked against a brute-force definition of the fronts, the crowding
 * distance and the hypervolume against hand computations and exact cell counting. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* LeakSanitizer (RF_SANITIZE builds): fontconfig keeps process-lifetime caches behind cairo's toy
 * font faces that only FcFini() would free (see tests/test_viz.c); suppress leaks with a
 * fontconfig frame only. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

/* ------------------------------------------------------------------ helpers */

static double *uniform_X(int n, int d, uint64_t seed) {
    double *X = malloc((size_t)n * d * sizeof *X);
    assert_non_null(X);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)n * d; i++) X[i] = rf_rng_uniform(&r);
    return X;
}

static int pair_index(const rf_importance *imp, int i, int j) {
    for (int q = 0; q < imp->n_pairs; q++)
        if (imp->pair_i[q] == i && imp->pair_j[q] == j) return q;
    fail_msg("pair (%d, %d) not found", i, j);
    return -1;
}

static void print_importance(const char *what, const rf_importance *imp) {
    printf("%s: %d trees used, total variance %.4g\n", what, imp->n_trees_used,
           imp->total_variance);
    for (int i = 0; i < imp->d; i++)
        printf("  x%d: %.4f +- %.4f\n", i + 1, imp->main_mean[i], imp->main_sd[i]);
    for (int q = 0; q < imp->n_pairs; q++)
        printf("  x%d x x%d: %.4f +- %.4f\n", imp->pair_i[q] + 1, imp->pair_j[q] + 1,
               imp->pair_mean[q], imp->pair_sd[q]);
}

static int file_starts_with(const char *path, const char *magic, size_t n) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    char buf[64] = {0};
    size_t got = fread(buf, 1, n, fp);
    fclose(fp);
    return got == n && memcmp(buf, magic, n) == 0;
}

static int file_contains(const char *path, const char *needle) {
    unsigned char *buf = NULL;
    size_t len = 0;
    if (rf_read_file(path, &buf, &len, NULL) != RF_OK) return 0;
    int found = strstr((const char *)buf, needle) != NULL;
    free(buf);
    return found;
}

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* ------------------------------------------------------------------ fANOVA: known decompositions */

/* f(x) = a x1 + b x2^2 + c x1 x3 on U[0,1]^4 (x4 irrelevant). With E x = 1/2, Var x = 1/12,
 * E x^2 = 1/3, Var x^2 = 1/5 - 1/9 = 4/45:
 *   f0          = a/2 + b/3 + c/4
 *   f1(x1)      = E[f | x1] - f0 = (a + c/2)(x1 - 1/2)      V1  = (a + c/2)^2 / 12
 *   f2(x2)      = b (x2^2 - 1/3)                            V2  = 4 b^2 / 45
 *   f3(x3)      = (c/2)(x3 - 1/2)                           V3  = c^2 / 48
 *   f13(x1, x3) = c x1 x3 - c x1/2 - c x3/2 + c/4
 *               = c (x1 - 1/2)(x3 - 1/2)                    V13 = c^2 / 144
 * and every other term is 0; V = V1 + V2 + V3 + V13. With a = 1, b = 1, c = 4 the fractions are
 * 0.584, 0.069, 0.260 and 0.087 (pair 1-3). */
static void test_fanova_known_decomposition(void **state) {
    (void)state;
    const double a = 1, b = 1, c = 4;
    const double V1 = (a + c / 2) * (a + c / 2) / 12, V2 = 4 * b * b / 45, V3 = c * c / 48,
                 V13 = c * c / 144, V = V1 + V2 + V3 + V13;
    enum { N = 1500, D = 4 };
    double *X = uniform_X(N, D, 11);
    double y[N];
    for (int i = 0; i < N; i++) {
        const double *x = X + (size_t)i * D;
        y[i] = a * x[0] + b * x[1] * x[1] + c * x[0] * x[2];
    }
    rf_fanova_opts o;
    rf_fanova_opts_default(&o);
    o.forest.seed = 5;
    rf_importance imp;
    rf_err e = {0};
    double t0 = rf_now();
    assert_int_equal(rf_fanova_compute(X, y, N, D, NULL, NULL, &o, &imp, &e), RF_OK);
    printf("fanova on %d x %d, %d trees: %.2f s\n", N, D, o.forest.n_trees, rf_now() - t0);
    print_importance("a x1 + b x2^2 + c x1 x3", &imp);
    printf("  analytic: x1 %.4f, x2 %.4f, x3 %.4f, x1 x x3 %.4f\n", V1 / V, V2 / V, V3 / V,
           V13 / V);
    assert_int_equal(imp.d, D);
    assert_int_equal(imp.n_pairs, D * (D - 1) / 2);
    assert_int_equal(imp.n_trees_used, o.forest.n_trees);
    const double tol = 0.05;
    assert_true(fabs(imp.main_mean[0] - V1 / V) < tol);
    assert_true(fabs(imp.main_mean[1] - V2 / V) < tol);
    assert_true(fabs(imp.main_mean[2] - V3 / V) < tol);
    int q13 = pair_index(&imp, 0, 2);
    assert_true(fabs(imp.pair_mean[q13] - V13 / V) < tol);
    /* the irrelevant parameter and the pairs without an interaction get (almost) nothing */
    assert_true(imp.main_mean[3] < 0.01);
    for (int q = 0; q < imp.n_pairs; q++)
        if (q != q13) assert_true(imp.pair_mean[q] < 0.02);
    /* the total of a pair's marginal includes its main effects */
    assert_true(fabs(imp.pair_total_mean[q13] - (V1 + V3 + V13) / V) < tol);
    /* uncertainty across trees: finite, non-negative, not zero for the big terms */
    for (int i = 0; i < D; i++) assert_true(imp.main_sd[i] >= 0 && isfinite(imp.main_sd[i]));
    assert_true(imp.main_sd[0] > 0);
    /* mains + pairs explain (nearly) everything: there are no higher-order terms */
    double sum = 0;
    for (int i = 0; i < D; i++) sum += imp.main_mean[i];
    for (int q = 0; q < imp.n_pairs; q++) sum += imp.pair_mean[q];
    assert_true(sum > 0.95 && sum < 1.0 + 1e-9);
    /* the total variance of the surrogate is close to the function's */
    assert_true(fabs(imp.total_variance - V) < 0.1 * V);
    rf_importance_free(&imp);
    free(X);
}

/* f(x) = 4 (x1 - 1/2)(x2 - 1/2): both main effects are 0 (E over the other factor is 0), so all
 * of the variance (16 / 144) is in the pair; x3 is irrelevant. */
static void test_fanova_pure_interaction(void **state) {
    (void)state;
    enum { N = 1200, D = 3 };
    double *X = uniform_X(N, D, 12);
    double y[N];
    for (int i = 0; i < N; i++) y[i] = 4 * (X[i * D] - 0.5) * (X[i * D + 1] - 0.5);
    rf_fanova_opts o;
    rf_fanova_opts_default(&o);
    o.forest.max_features = D; /* greedy splits need both columns to find an interaction */
    rf_importance imp;
    rf_err e = {0};
    assert_int_equal(rf_fanova_compute(X, y, N, D, NULL, NULL, &o, &imp, &e), RF_OK);
    print_importance("4 (x1 - 1/2)(x2 - 1/2)", &imp);
    int q12 = pair_index(&imp, 0, 1);
    assert_true(imp.pair_mean[q12] > 0.9);
    assert_true(imp.main_mean[0] < 0.05);
    assert_true(imp.main_mean[1] < 0.05);
    assert_true(imp.main_mean[2] < 0.01);
    rf_importance_free(&imp);
    free(X);
}

/* A categorical parameter c with 4 equally likely categories and effects e = (0, 1, 3, -1), plus
 * 2 x2: f = e[c] + 2 x2. V_c = mean(e^2) - mean(e)^2 = 11/4 - 9/16 = 35/16; V_2 = 4/12; no
 * interaction. Fractions 0.868 and 0.132. */
static void test_fanova_categorical(void **state) {
    (void)state;
    enum { N = 1000, D = 3 };
    const double eff[4] = {0, 1, 3, -1};
    const double Vc = 35.0 / 16, V2 = 4.0 / 12, V = Vc + V2;
    double *X = uniform_X(N, D, 13);
    double y[N];
    for (int i = 0; i < N; i++) {
        int cat = i % 4; /* balanced categories */
        X[i * D] = cat;
        y[i] = eff[cat] + 2 * X[i * D + 1];
    }
    const rf_feature_kind kinds[D] = {RF_FEATURE_CATEGORICAL, RF_FEATURE_CONTINUOUS,
                                      RF_FEATURE_CONTINUOUS};
    const int ncat[D] = {4, 0, 0};
    rf_importance imp;
    rf_err e = {0};
    assert_int_equal(rf_fanova_compute(X, y, N, D, kinds, ncat, NULL, &imp, &e), RF_OK);
    print_importance("e[c] + 2 x2", &imp);
    printf("  analytic: c %.4f, x2 %.4f\n", Vc / V, V2 / V);
    assert_true(fabs(imp.main_mean[0] - Vc / V) < 0.05);
    assert_true(fabs(imp.main_mean[1] - V2 / V) < 0.05);
    assert_true(imp.main_mean[2] < 0.01);
    for (int q = 0; q < imp.n_pairs; q++) assert_true(imp.pair_mean[q] < 0.02);
    rf_importance_free(&imp);

    /* a category that never occurs in the data still gets a share of the measure: with 5
     * categories of which the 5th is unseen, the forest's prediction there is one of the seen
     * effects, so the result stays a valid decomposition (fractions in [0, 1], sum <= 1) */
    const int ncat5[D] = {5, 0, 0};
    assert_int_equal(rf_fanova_compute(X, y, N, D, kinds, ncat5, NULL, &imp, &e), RF_OK);
    double sum = 0;
    for (int i = 0; i < D; i++) {
        assert_true(imp.main_mean[i] >= 0 && imp.main_mean[i] <= 1);
        sum += imp.main_mean[i];
    }
    for (int q = 0; q < imp.n_pairs; q++) sum += imp.pair_mean[q];
    assert_true(sum <= 1 + 1e-9);
    assert_true(imp.main_mean[0] > 0.6);
    rf_importance_free(&imp);
    free(X);
}

/* A conditional parameter x2 that is inactive (NaN) in half of the trials, independently of x1:
 * f = 4 x1 + g, g = 3 x2 when x2 is active and c0 = -2 when it is inactive. Under the measure
 * p delta(inactive) + (1 - p) U[0, 1] of x2:
 *   E g = (1 - p) 3/2 + p c0,  E g^2 = (1 - p) E[9 x^2] + p c0^2 = 3 (1 - p) + p c0^2,
 *   V_g = E g^2 - (E g)^2,     V_1 = 16/12.
 * p = 1/2 (the fraction of inactive rows, the default): V_g = 3.4375, fractions 0.279 / 0.721;
 * p = 1/4 (fixed by the option): V_g = 2.859, fractions 0.318 / 0.682; a measure ignoring the
 * inactive state would give V_g = 0.75, fraction 0.36 for g. */
static double vg_inactive(double p, double c0) {
    double m = (1 - p) * 1.5 + p * c0, m2 = 3 * (1 - p) + p * c0 * c0;
    return m2 - m * m;
}

static void test_fanova_inactive(void **state) {
    (void)state;
    enum { N = 1600, D = 2 };
    const double c0 = -2;
    double *X = uniform_X(N, D, 14);
    double y[N];
    rf_rng r;
    rf_rng_seed(&r, 99);
    int *perm = malloc(N * sizeof *perm);
    for (int i = 0; i < N; i++) perm[i] = i;
    rf_rng_shuffle(&r, perm, N);
    for (int k = 0; k < N; k++) {
        int i = perm[k];
        int active = k < N / 2;
        if (!active) X[i * D + 1] = NAN;
        y[i] = 4 * X[i * D] + (active ? 3 * X[i * D + 1] : c0);
    }
    free(perm);
    const double V1 = 16.0 / 12;
    for (int variant = 0; variant < 2; variant++) {
        double p = variant == 0 ? 0.5 : 0.25;
        double Vg = vg_inactive(p, c0), V = V1 + Vg;
        rf_fanova_opts o;
        rf_fanova_opts_default(&o);
        if (variant == 1) o.inactive_weight = 0.25;
        rf_importance imp;
        rf_err e = {0};
        assert_int_equal(rf_fanova_compute(X, y, N, D, NULL, NULL, &o, &imp, &e), RF_OK);
        print_importance(variant == 0 ? "inactive half the time (p = empirical)"
                                      : "inactive half the time (p = 1/4)",
                         &imp);
        printf("  analytic: x1 %.4f, x2 %.4f\n", V1 / V, Vg / V);
        assert_true(fabs(imp.inactive_weight[0]) < 1e-12);
        assert_true(fabs(imp.inactive_weight[1] - p) < 1e-12);
        assert_true(fabs(imp.main_mean[0] - V1 / V) < 0.02);
        assert_true(fabs(imp.main_mean[1] - Vg / V) < 0.02);
        assert_true(imp.pair_mean[0] < 0.02);
        rf_importance_free(&imp);
    }

    /* an inactive categorical parameter behaves the same way (extra category): g = 3 c for
     * c in {0, 1}, c0 when inactive, so g = c0 w.p. 1/2, 0 w.p. 1/4, 3 w.p. 1/4 */
    for (int i = 0; i < N; i++)
        if (!isnan(X[i * D + 1])) X[i * D + 1] = X[i * D + 1] < 0.5 ? 0 : 1;
    for (int i = 0; i < N; i++)
        y[i] = 4 * X[i * D] + (isnan(X[i * D + 1]) ? c0 : 3 * X[i * D + 1]);
    double Eg = 0.5 * c0 + 0.25 * 3, Eg2 = 0.5 * c0 * c0 + 0.25 * 9, Vg = Eg2 - Eg * Eg;
    const rf_feature_kind kinds[D] = {RF_FEATURE_CONTINUOUS, RF_FEATURE_CATEGORICAL};
    const int ncat[D] = {0, 2};
    rf_importance imp;
    rf_err e = {0};
    assert_int_equal(rf_fanova_compute(X, y, N, D, kinds, ncat, NULL, &imp, &e), RF_OK);
    double V = V1 + Vg;
    print_importance("inactive categorical", &imp);
    printf("  analytic: x1 %.4f, x2 %.4f\n", V1 / V, Vg / V);
    assert_true(fabs(imp.main_mean[1] - Vg / V) < 0.02);
    rf_importance_free(&imp);
    free(X);
}

/* Monte Carlo reference for one column kind: grid values and their weights under the measure of
 * include/renflow/importance.h (continuous: G midpoints with (1 - p)/G each, plus NaN with p when
 * p > 0; categorical: each category with 1/ncat). */
typedef struct mc_dim {
    int ncat; /* 0: continuous */
    double p; /* inactive weight (continuous columns only here) */
} mc_dim;

static int mc_grid(const mc_dim *m, int G, double *val, double *w) {
    int k = 0;
    if (m->ncat > 0) {
        for (int c = 0; c < m->ncat; c++, k++) {
            val[k] = c;
            w[k] = 1.0 / m->ncat;
        }
        return k;
    }
    if (m->p > 0) {
        val[k] = NAN;
        w[k++] = m->p;
    }
    for (int g = 0; g < G; g++, k++) {
        val[k] = (g + 0.5) / G;
        w[k] = (1 - m->p) / G;
    }
    return k;
}

static void mc_sample(rf_rng *r, const mc_dim *m, int D, double *x) {
    for (int j = 0; j < D; j++) {
        if (m[j].ncat > 0)
            x[j] = (double)rf_rng_below(r, (uint64_t)m[j].ncat);
        else
            x[j] = rf_rng_uniform(r) < m[j].p ? NAN : rf_rng_uniform(r);
    }
}

/* Variance of the marginal of columns u0 (and u1 >= 0) of forest f: cells of the grid of those
 * columns, each predicted on INNER common samples of the other columns. */
static double mc_marginal_var(const rf_forest *f, const mc_dim *m, int D, int u0, int u1, int G,
                              int inner, uint64_t seed) {
    double v0[512], w0[512], v1[512], w1[512];
    int n0 = mc_grid(&m[u0], G, v0, w0), n1 = 1;
    w1[0] = 1;
    if (u1 >= 0) n1 = mc_grid(&m[u1], G, v1, w1);
    double *Z = malloc((size_t)inner * D * sizeof *Z), *pz = malloc((size_t)inner * sizeof *pz);
    double *a = malloc((size_t)n0 * n1 * sizeof *a);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int k = 0; k < inner; k++) mc_sample(&r, m, D, Z + (size_t)k * D);
    double mean = 0;
    for (int i = 0; i < n0; i++)
        for (int j = 0; j < n1; j++) {
            for (int k = 0; k < inner; k++) {
                Z[(size_t)k * D + u0] = v0[i];
                if (u1 >= 0) Z[(size_t)k * D + u1] = v1[j];
            }
            assert_int_equal(rf_forest_predict(f, Z, inner, pz, NULL, NULL), RF_OK);
            double s = 0;
            for (int k = 0; k < inner; k++) s += pz[k];
            a[i * n1 + j] = s / inner;
            mean += w0[i] * w1[j] * a[i * n1 + j];
        }
    double v = 0;
    for (int i = 0; i < n0; i++)
        for (int j = 0; j < n1; j++) {
            double d = a[i * n1 + j] - mean;
            v += w0[i] * w1[j] * d * d;
        }
    free(Z);
    free(pz);
    free(a);
    return v;
}

/* fANOVA of one tree (no bootstrap) against Monte Carlo integration of that same tree under the
 * same measure: total variance, every main effect and the total of one pair. Column 0 is
 * continuous, column 1 continuous and inactive in 30 % of the rows (p = 0.3), column 2
 * categorical with 3 categories. This checks the exact leaf-box computation, including the
 * inactive atom and the categorical masks, independently of how well the tree fits. */
static void test_fanova_exact_vs_monte_carlo(void **state) {
    (void)state;
    enum { N = 500, D = 3, NV = 200000 };
    double *X = uniform_X(N, D, 15);
    double y[N];
    for (int i = 0; i < N; i++) {
        double *x = X + (size_t)i * D;
        x[2] = (double)(i % 3);
        if (i % 10 < 3) x[1] = NAN;
        double g = isnan(x[1]) ? -1 : x[1];
        y[i] = sin(6 * x[0]) + 2 * g * (x[2] - 1) + 0.5 * x[2] * x[2] + g * g;
    }
    const rf_feature_kind kinds[D] = {RF_FEATURE_CONTINUOUS, RF_FEATURE_CONTINUOUS,
                                      RF_FEATURE_CATEGORICAL};
    const int ncat[D] = {0, 0, 3};
    const mc_dim md[D] = {{0, 0}, {0, 0.3}, {3, 0}};
    rf_forest_opts fo;
    rf_forest_opts_default(&fo);
    fo.n_trees = 1;
    fo.bootstrap = 0;
    fo.min_samples_leaf = 3;
    rf_forest *f = NULL;
    rf_err e = {0};
    assert_int_equal(rf_forest_fit(X, y, N, D, kinds, ncat, &fo, &f, &e), RF_OK);
    rf_importance imp;
    assert_int_equal(rf_fanova_forest(f, NULL, &imp, &e), RF_OK);
    assert_true(fabs(imp.inactive_weight[1] - 0.3) < 1e-12);

    /* total variance under the measure */
    double *U = malloc((size_t)NV * D * sizeof *U), *pv = malloc(NV * sizeof *pv);
    rf_rng r;
    rf_rng_seed(&r, 16);
    for (int i = 0; i < NV; i++) mc_sample(&r, md, D, U + (size_t)i * D);
    assert_int_equal(rf_forest_predict(f, U, NV, pv, NULL, &e), RF_OK);
    double mu = 0, var = 0;
    for (int i = 0; i < NV; i++) mu += pv[i];
    mu /= NV;
    for (int i = 0; i < NV; i++) var += (pv[i] - mu) * (pv[i] - mu);
    var /= NV;
    printf("one tree (%ld leaves): V exact %.5f, MC %.5f\n", rf_forest_n_leaves(f),
           imp.total_variance, var);
    assert_true(fabs(imp.total_variance - var) < 0.03 * var);
    for (int j = 0; j < D; j++) {
        double vj = mc_marginal_var(f, md, D, j, -1, 400, 3000, 17 + j);
        printf("  V%d/V exact %.4f, MC %.4f\n", j + 1, imp.main_mean[j], vj / imp.total_variance);
        assert_true(fabs(imp.main_mean[j] - vj / imp.total_variance) < 0.015);
        assert_true(imp.main_sd[j] == 0); /* one tree: no spread */
    }
    int q = pair_index(&imp, 1, 2);
    double v12 = mc_marginal_var(f, md, D, 1, 2, 150, 1000, 23);
    printf("  V(2,3) total/V exact %.4f, MC %.4f; interaction alone %.4f\n",
           imp.pair_total_mean[q], v12 / imp.total_variance, imp.pair_mean[q]);
    assert_true(fabs(imp.pair_total_mean[q] - v12 / imp.total_variance) < 0.015);
    assert_true(imp.pair_mean[q] > 0.05); /* g (x3 - 1) is a genuine interaction */
    assert_int_equal(imp.n_trees_used, 1);
    rf_importance_free(&imp);
    rf_forest_free(f);
    free(X);
    free(U);
    free(pv);
}

/* The forest predicts held-out points of a smooth function well, and is reproducible: the same
 * seed gives identical predictions with 1 or 2 threads; another seed gives different trees. */
static void test_forest_prediction(void **state) {
    (void)state;
    enum { N = 1500, M = 500, D = 4 };
    double *X = uniform_X(N, D, 21), *T = uniform_X(M, D, 22);
    double y[N], yt[M];
    for (int i = 0; i < N; i++) {
        const double *x = X + (size_t)i * D;
        y[i] = x[0] + x[1] * x[1] + 4 * x[0] * x[2];
    }
    double my = 0, vt = 0;
    for (int i = 0; i < M; i++) {
        const double *x = T + (size_t)i * D;
        yt[i] = x[0] + x[1] * x[1] + 4 * x[0] * x[2];
        my += yt[i] / M;
    }
    for (int i = 0; i < M; i++) vt += (yt[i] - my) * (yt[i] - my);
    rf_forest_opts fo;
    rf_forest_opts_default(&fo);
    rf_forest *f = NULL;
    rf_err e = {0};
    int threads = rf_get_threads();
    rf_set_threads(2);
    assert_int_equal(rf_forest_fit(X, y, N, D, NULL, NULL, &fo, &f, &e), RF_OK);
    assert_int_equal(rf_forest_n_trees(f), 32);
    assert_int_equal(rf_forest_dim(f), D);
    double pm[M], ps[M];
    assert_int_equal(rf_forest_predict(f, T, M, pm, ps, &e), RF_OK);
    double sse = 0, sd_mean = 0;
    for (int i = 0; i < M; i++) {
        sse += (pm[i] - yt[i]) * (pm[i] - yt[i]);
        sd_mean += ps[i] / M;
    }
    double r2 = 1 - sse / vt;
    printf("forest: held-out R^2 %.4f, RMSE %.4f, mean sd across trees %.4f\n", r2,
           sqrt(sse / M), sd_mean);
    assert_true(r2 > 0.97);
    assert_true(sd_mean > 0);

    rf_set_threads(1);
    rf_forest *g = NULL;
    assert_int_equal(rf_forest_fit(X, y, N, D, NULL, NULL, &fo, &g, &e), RF_OK);
    double pg[M];
    assert_int_equal(rf_forest_predict(g, T, M, pg, NULL, &e), RF_OK);
    assert_memory_equal(pm, pg, sizeof pm);
    rf_forest_free(g);
    fo.seed = 2;
    assert_int_equal(rf_forest_fit(X, y, N, D, NULL, NULL, &fo, &g, &e), RF_OK);
    assert_int_equal(rf_forest_predict(g, T, M, pg, NULL, &e), RF_OK);
    assert_true(memcmp(pm, pg, sizeof pm) != 0);
    rf_set_threads(threads);

    /* predicting a bad row is an error naming it */
    T[3 * D + 1] = 2.0;
    assert_int_equal(rf_forest_predict(f, T, M, pm, NULL, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "row 3, column 1"));
    rf_forest_free(g);
    rf_forest_free(f);
    free(X);
    free(T);
}

static void test_fanova_bad_inputs(void **state) {
    (void)state;
    double X[8] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8}, y[4] = {1, 2, 3, 4};
    rf_importance imp;
    rf_err e = {0};
    assert_int_equal(rf_fanova_compute(X, y, 1, 2, NULL, NULL, NULL, &imp, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "at least 2 rows"));
    assert_int_equal(rf_fanova_compute(X, y, 4, 0, NULL, NULL, NULL, &imp, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "at least 1 column"));
    double yn[4] = {1, NAN, 3, 4};
    assert_int_equal(rf_fanova_compute(X, yn, 4, 2, NULL, NULL, NULL, &imp, &e), RF_ENONFINITE);
    assert_non_null(strstr(e.msg, "y[1]"));
    double yc[4] = {2, 2, 2, 2};
    assert_int_equal(rf_fanova_compute(X, yc, 4, 2, NULL, NULL, NULL, &imp, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "constant"));
    double Xb[8] = {0.1, 0.2, 0.3, 1.5, 0.5, 0.6, 0.7, 0.8};
    assert_int_equal(rf_fanova_compute(Xb, y, 4, 2, NULL, NULL, NULL, &imp, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "row 1, column 1"));
    Xb[3] = INFINITY;
    assert_int_equal(rf_fanova_compute(Xb, y, 4, 2, NULL, NULL, NULL, &imp, &e), RF_EARG);
    rf_feature_kind kinds[2] = {RF_FEATURE_CATEGORICAL, RF_FEATURE_CONTINUOUS};
    int nc[2] = {3, 0};
    double Xc[8] = {0, 0.2, 1, 0.4, 2.5, 0.6, 2, 0.8};
    assert_int_equal(rf_fanova_compute(Xc, y, 4, 2, kinds, nc, NULL, &imp, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "row 2, column 0"));
    Xc[4] = 3; /* == n_categories */
    assert_int_equal(rf_fanova_compute(Xc, y, 4, 2, kinds, nc, NULL, &imp, &e), RF_EARG);
    Xc[4] = 1;
    assert_int_equal(rf_fanova_compute(Xc, y, 4, 2, kinds, NULL, NULL, &imp, &e), RF_EARG);
    nc[0] = 0;
    assert_int_equal(rf_fanova_compute(Xc, y, 4, 2, kinds, nc, NULL, &imp, &e), RF_EARG);
    nc[0] = 64;
    assert_int_equal(rf_fanova_compute(Xc, y, 4, 2, kinds, nc, NULL, &imp, &e), RF_EARG);
    nc[0] = 3;
    assert_int_equal(rf_fanova_compute(Xc, y, 4, 2, kinds, nc, NULL, &imp, &e), RF_OK);
    rf_importance_free(&imp);
    rf_fanova_opts o;
    rf_fanova_opts_default(&o);
    o.inactive_weight = 1.0;
    assert_int_equal(rf_fanova_compute(X, y, 4, 2, NULL, NULL, &o, &imp, &e), RF_EARG);
    rf_fanova_opts_default(&o);
    o.forest.n_trees = 0;
    assert_int_equal(rf_fanova_compute(X, y, 4, 2, NULL, NULL, &o, &imp, &e), RF_EARG);
    assert_int_equal(rf_fanova_compute(NULL, y, 4, 2, NULL, NULL, NULL, &imp, &e), RF_EARG);
    /* identical configurations with different results: nothing to split on */
    double Xs[8] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
    assert_int_equal(rf_fanova_compute(Xs, y, 4, 2, NULL, NULL, NULL, &imp, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "no split separates"));
    /* two rows are enough */
    assert_int_equal(rf_fanova_compute(X, y, 2, 2, NULL, NULL, NULL, &imp, &e), RF_OK);
    rf_importance_free(&imp);
}

/* JSON and the importance figure, with names and pairs. */
static void test_importance_outputs(void **state) {
    (void)state;
    enum { N = 600, D = 5 };
    double *X = uniform_X(N, D, 31);
    double y[N];
    for (int i = 0; i < N; i++) {
        const double *x = X + (size_t)i * D;
        y[i] = 3 * x[0] + x[1] * x[1] + 2 * x[0] * x[2] + 0.3 * x[3];
    }
    rf_importance imp;
    rf_err e = {0};
    assert_int_equal(rf_fanova_compute(X, y, N, D, NULL, NULL, NULL, &imp, &e), RF_OK);
    const char *names[D] = {"learning_rate", "weight_decay", "batch_size", "clip_norm", NULL};
    char path[256];
    rf_test_tmp(path, sizeof path, "importance.json");
    assert_int_equal(rf_importance_write_json(path, &imp, names, &e), RF_OK);
    unsigned char *buf = NULL;
    size_t len = 0;
    assert_int_equal(rf_read_file(path, &buf, &len, &e), RF_OK);
    cJSON *j = cJSON_Parse((const char *)buf);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "method")->valuestring, "fanova");
    assert_int_equal(cJSON_GetObjectItem(j, "n_samples")->valueint, N);
    cJSON *m = cJSON_GetObjectItem(j, "main");
    assert_int_equal(cJSON_GetArraySize(m), D);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "param")->valuestring,
                        "learning_rate");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 4), "param")->valuestring, "x5");
    assert_true(fabs(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "mean")->valuedouble -
                     imp.main_mean[0]) < 1e-9);
    cJSON *pa = cJSON_GetObjectItem(j, "pairs");
    assert_int_equal(cJSON_GetArraySize(pa), D * (D - 1) / 2);
    /* pairs by decreasing mean: the first is learning_rate x batch_size */
    cJSON *p0 = cJSON_GetArrayItem(pa, 0);
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(p0, "params"), 0)->valuestring,
                        "learning_rate");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(p0, "params"), 1)->valuestring,
                        "batch_size");
    for (int k = 1; k < cJSON_GetArraySize(pa); k++)
        assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(pa, k - 1), "mean")->valuedouble >=
                    cJSON_GetObjectItem(cJSON_GetArrayItem(pa, k), "mean")->valuedouble);
    cJSON_Delete(j);
    free(buf);
    unlink(path);

    const char *keep = getenv("RF_KEEP_FIGURES"); /* to look at them */
    const char *exts[2] = {"png", "svg"};
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "importance.%s", exts[k]);
        if (keep)
            snprintf(path, sizeof path, "%s/%s", keep, name);
        else
            rf_test_tmp(path, sizeof path, name);
        assert_int_equal(rf_plot_importance(path, "Hyperparameter importance (fANOVA)", &imp,
                                            names, 8, &e),
                         RF_OK);
        assert_true(file_size(path) > 1000);
        if (k == 0)
            assert_true(file_starts_with(path, "\x89PNG\r\n\x1a\n", 8));
        else
            assert_true(file_contains(path, "<svg"));
        if (!keep) unlink(path);
    }
    rf_test_tmp(path, sizeof path, "importance.bmp");
    assert_int_equal(rf_plot_importance(path, NULL, &imp, names, 0, &e), RF_EARG);
    assert_true(access(path, F_OK) != 0);
    rf_importance_free(&imp);
    free(X);
}

/* ------------------------------------------------------------------ non-dominated sorting */

/* Fronts by definition: front r = rows not dominated by any row not yet ranked. */
static void brute_fronts(const double *F, int n, int m, const rf_pareto_dir *dirs, int *rank) {
    int left = 0;
    for (int i = 0; i < n; i++) {
        int fin = 1;
        for (int k = 0; k < m; k++) fin &= isfinite(F[i * m + k]) != 0;
        rank[i] = fin ? -2 : -1;
        left += fin;
    }
    int *now = malloc((size_t)n * sizeof *now);
    for (int r = 0; left > 0; r++) {
        int c = 0;
        for (int i = 0; i < n; i++) {
            if (rank[i] != -2) continue;
            int dom = 0;
            for (int j = 0; j < n && !dom; j++)
                if (rank[j] == -2 && j != i && rf_pareto_dominates(F + j * m, F + i * m, m, dirs))
                    dom = 1;
            if (!dom) now[c++] = i;
        }
        for (int k = 0; k < c; k++) rank[now[k]] = r;
        left -= c;
    }
    free(now);
}

/* brute-force dominance, written out without rf_pareto_dominates */
static int dominates_bf(const double *a, const double *b, int m, const rf_pareto_dir *d) {
    int all = 1, one = 0;
    for (int k = 0; k < m; k++) {
        double better = d[k] == RF_PARETO_MAXIMIZE ? a[k] - b[k] : b[k] - a[k];
        if (better < 0) all = 0;
        if (better > 0) one = 1;
    }
    return all && one;
}

static void test_nondominated_sort_vs_brute_force(void **state) {
    (void)state;
    enum { N = 300 };
    rf_rng r;
    rf_rng_seed(&r, 41);
    for (int m = 1; m <= 3; m++) {
        for (int trial = 0; trial < 4; trial++) {
            double *F = malloc((size_t)N * m * sizeof *F);
            rf_pareto_dir dirs[3];
            for (int k = 0; k < m; k++)
                dirs[k] = (trial + k) % 2 ? RF_PARETO_MAXIMIZE : RF_PARETO_MINIMIZE;
            for (int i = 0; i < N * m; i++) {
                /* coarse grid in half the trials: many ties and duplicate rows */
                double v = rf_rng_uniform(&r);
                F[i] = trial % 2 ? floor(v * 8) : v;
            }
            F[7 * m] = NAN; /* a failed trial */
            if (m > 1) F[9 * m + 1] = INFINITY;
            int rank[N], bf[N], nf = 0;
            rf_err e = {0};
            assert_int_equal(rf_nondominated_sort(F, N, m, dirs, rank, &nf, &e), RF_OK);
            brute_fronts(F, N, m, dirs, bf);
            int maxr = -1;
            for (int i = 0; i < N; i++) {
                assert_int_equal(rank[i], bf[i]);
                if (rank[i] > maxr) maxr = rank[i];
            }
            assert_int_equal(nf, maxr + 1);
            assert_int_equal(rank[7], -1);
            /* the defining properties, with an independent dominance check */
            for (int i = 0; i < N; i++) {
                if (rank[i] < 0) continue;
                int has_parent = rank[i] == 0;
                for (int j = 0; j < N; j++) {
                    if (rank[j] < 0) continue;
                    int d = dominates_bf(F + j * m, F + i * m, m, dirs);
                    assert_int_equal(d, rf_pareto_dominates(F + j * m, F + i * m, m, dirs));
                    if (d) assert_true(rank[j] < rank[i]);
                    if (d && rank[j] == rank[i] - 1) has_parent = 1;
                }
                assert_true(has_parent);
            }
            /* the front */
            int idx[N], nfr = 0;
            assert_int_equal(rf_pareto_front(F, N, m, dirs, idx, &nfr, &e), RF_OK);
            int c = 0;
            for (int i = 0; i < N; i++)
                if (rank[i] == 0) {
                    assert_true(c < nfr);
                    assert_int_equal(idx[c++], i);
                }
            assert_int_equal(c, nfr);
            /* crowding distances: NaN for unranked, >= 0 otherwise, +inf at the extremes */
            double cd[N];
            assert_int_equal(rf_crowding_distance(F, N, m, rank, cd, &e), RF_OK);
            for (int i = 0; i < N; i++) {
                if (rank[i] < 0)
                    assert_true(isnan(cd[i]));
                else
                    assert_true(cd[i] >= 0);
            }
            free(F);
        }
    }
    /* duplicates share a front and do not dominate each other */
    const double dup[6] = {1, 1, 1, 1, 2, 2};
    int rk[3];
    assert_int_equal(rf_nondominated_sort(dup, 3, 2, NULL, rk, NULL, NULL), RF_OK);
    assert_int_equal(rk[0], 0);
    assert_int_equal(rk[1], 0);
    assert_int_equal(rk[2], 1);
}

/* Front (0,5), (1,3), (3,1), (6,0) (both minimised). Objective 1: range 6; (1,3) gets
 * (3 - 0)/6 = 0.5, (3,1) gets (6 - 1)/6. Objective 2: range 5; (3,1) gets (3 - 0)/5 = 0.6,
 * (1,3) gets (5 - 1)/5 = 0.8. Totals: (1,3) 1.3, (3,1) 5/6 + 0.6; extremes +inf. */
static void test_crowding_distance_hand(void **state) {
    (void)state;
    const double F[10] = {0, 5, 1, 3, 3, 1, 6, 0, 7, 7};
    int rank[5];
    double cd[5];
    assert_int_equal(rf_nondominated_sort(F, 5, 2, NULL, rank, NULL, NULL), RF_OK);
    assert_int_equal(rank[4], 1);
    assert_int_equal(rf_crowding_distance(F, 5, 2, rank, cd, NULL), RF_OK);
    assert_true(isinf(cd[0]) && isinf(cd[3]));
    assert_true(fabs(cd[1] - 1.3) < 1e-12);
    assert_true(fabs(cd[2] - (5.0 / 6 + 0.6)) < 1e-12);
    assert_true(isinf(cd[4])); /* a front of one */
}

/* Minimising both: points (1,3), (2,2), (3,1), the dominated (3,3), and (5,0) beyond the
 * reference (4,4). Area = [1,4]x[3,4] + [2,4]x[2,3] + [3,4]x[1,2] = 3 + 2 + 1 = 6. */
static void test_hypervolume(void **state) {
    (void)state;
    const double F[10] = {1, 3, 2, 2, 3, 1, 3, 3, 5, 0};
    const double ref[2] = {4, 4};
    double hv = 0;
    rf_err e = {0};
    assert_int_equal(rf_hypervolume_2d(F, 5, NULL, ref, &hv, &e), RF_OK);
    assert_true(fabs(hv - 6) < 1e-12);
    /* the same geometry with objective 2 maximised (values and reference negated) */
    double G[10];
    for (int i = 0; i < 5; i++) {
        G[2 * i] = F[2 * i];
        G[2 * i + 1] = -F[2 * i + 1];
    }
    const rf_pareto_dir dirs[2] = {RF_PARETO_MINIMIZE, RF_PARETO_MAXIMIZE};
    const double ref2[2] = {4, -4};
    assert_int_equal(rf_hypervolume_2d(G, 5, dirs, ref2, &hv, &e), RF_OK);
    assert_true(fabs(hv - 6) < 1e-12);
    /* random integer points against exact counting of unit cells */
    rf_rng r;
    rf_rng_seed(&r, 51);
    enum { NP = 40, S = 20 };
    for (int trial = 0; trial < 5; trial++) {
        double P[2 * NP];
        for (int i = 0; i < 2 * NP; i++) P[i] = (double)rf_rng_below(&r, S + 3);
        P[0] = NAN;
        const double rr[2] = {S, S};
        assert_int_equal(rf_hypervolume_2d(P, NP, NULL, rr, &hv, &e), RF_OK);
        long cells = 0;
        for (int a = 0; a < S; a++)
            for (int b = 0; b < S; b++) {
                int cov = 0;
                for (int i = 1; i < NP && !cov; i++)
                    if (P[2 * i] <= a && P[2 * i + 1] <= b) cov = 1;
                cells += cov;
            }
        assert_true(fabs(hv - (double)cells) < 1e-9);
    }
    /* nothing better than the reference: 0 */
    const double far[2] = {0, 0};
    assert_int_equal(rf_hypervolume_2d(F, 5, NULL, far, &hv, &e), RF_OK);
    assert_true(hv == 0);
    const double bad[2] = {NAN, 1};
    assert_int_equal(rf_hypervolume_2d(F, 5, NULL, bad, &hv, &e), RF_EARG);
}

static void test_pareto_bad_inputs_and_plot(void **state) {
    (void)state;
    rf_err e = {0};
    int rank[4], nf;
    const double F[8] = {1, 2, 2, 1, 3, 3, 0.5, 4};
    assert_int_equal(rf_nondominated_sort(F, 4, 0, NULL, rank, NULL, &e), RF_EARG);
    assert_int_equal(rf_nondominated_sort(NULL, 4, 2, NULL, rank, NULL, &e), RF_EARG);
    const rf_pareto_dir bad[2] = {RF_PARETO_MINIMIZE, (rf_pareto_dir)7};
    assert_int_equal(rf_nondominated_sort(F, 4, 2, bad, rank, NULL, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "objective 1"));
    assert_int_equal(rf_nondominated_sort(F, 0, 2, NULL, rank, &nf, &e), RF_OK);
    assert_int_equal(nf, 0);

    /* figure: 200 trials, NLL (min) against parameter count (min) and against accuracy (max) */
    enum { N = 200 };
    double P[2 * N];
    rf_rng r;
    rf_rng_seed(&r, 61);
    for (int i = 0; i < N; i++) {
        double size = 1e4 + 2e5 * rf_rng_uniform(&r);
        P[2 * i] = 1.2 + 3e4 / size + 0.8 * rf_rng_uniform(&r); /* NLL */
        P[2 * i + 1] = size;
    }
    P[10] = NAN;
    const char *keep = getenv("RF_KEEP_FIGURES");
    const char *names[2] = {"test NLL (nats)", "parameters"};
    const rf_pareto_dir dirs[2] = {RF_PARETO_MINIMIZE, RF_PARETO_MINIMIZE};
    const rf_pareto_dir dirs2[2] = {RF_PARETO_MINIMIZE, RF_PARETO_MAXIMIZE};
    char path[256];
    for (int k = 0; k < 3; k++) {
        const char *name = k == 0 ? "pareto.png" : k == 1 ? "pareto.svg" : "pareto-max.png";
        if (keep)
            snprintf(path, sizeof path, "%s/%s", keep, name);
        else
            rf_test_tmp(path, sizeof path, name);
        assert_int_equal(rf_plot_pareto(path, "NLL against model size", P, N,
                                        k == 2 ? dirs2 : dirs, names, &e),
                         RF_OK);
        assert_true(file_size(path) > 1000);
        if (k == 1)
            assert_true(file_contains(path, "<svg"));
        else
            assert_true(file_starts_with(path, "\x89PNG\r\n\x1a\n", 8));
        if (!keep) unlink(path);
    }
    /* no finite trial: still a valid (empty) figure */
    const double allnan[4] = {NAN, 1, 2, NAN};
    rf_test_tmp(path, sizeof path, "pareto-empty.svg");
    assert_int_equal(rf_plot_pareto(path, NULL, allnan, 2, NULL, NULL, &e), RF_OK);
    assert_true(file_contains(path, "<svg"));
    unlink(path);
    rf_test_tmp(path, sizeof path, "pareto.txt");
    assert_int_equal(rf_plot_pareto(path, NULL, P, N, dirs, names, &e), RF_EARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanova_known_decomposition),
        cmocka_unit_test(test_fanova_pure_interaction),
        cmocka_unit_test(test_fanova_categorical),
        cmocka_unit_test(test_fanova_inactive),
        cmocka_unit_test(test_fanova_exact_vs_monte_carlo),
        cmocka_unit_test(test_forest_prediction),
        cmocka_unit_test(test_fanova_bad_inputs),
        cmocka_unit_test(test_importance_outputs),
        cmocka_unit_test(test_nondominated_sort_vs_brute_force),
        cmocka_unit_test(test_crowding_distance_hand),
        cmocka_unit_test(test_hypervolume),
        cmocka_unit_test(test_pareto_bad_inputs_and_plot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
