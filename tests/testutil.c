#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

double rf_test_logabsdet(int D, const double *Ain) {
    double *A = malloc(sizeof(double) * D * D);
    memcpy(A, Ain, sizeof(double) * D * D);
    double ld = 0;
    for (int c = 0; c < D; c++) {
        int p = c;
        for (int r = c + 1; r < D; r++)
            if (fabs(A[r * D + c]) > fabs(A[p * D + c])) p = r;
        if (p != c)
            for (int k = 0; k < D; k++) {
                double t = A[c * D + k];
                A[c * D + k] = A[p * D + k];
                A[p * D + k] = t;
            }
        double piv = A[c * D + c];
        if (piv == 0) {
            free(A);
            return -INFINITY;
        }
        ld += log(fabs(piv));
        for (int r = c + 1; r < D; r++) {
            double f = A[r * D + c] / piv;
            for (int k = c; k < D; k++) A[r * D + k] -= f * A[c * D + k];
        }
    }
    free(A);
    return ld;
}

typedef struct {
    const rf_layer *l;
    const float *params;
    int n, D;
    float *y, *ld, *cache, *scratch;
    const double *wy, *wld;
} lc_ctx;

/* L = sum wy * y + sum wld * logdet, accumulated in double. */
static double lc_loss(lc_ctx *c, const float *x) {
    memset(c->ld, 0, sizeof(float) * c->n);
    c->l->ops->forward(c->l, c->params, c->n, x, c->y, c->ld, c->cache, c->scratch);
    double L = 0;
    for (int i = 0; i < c->n * c->D; i++) L += c->wy[i] * c->y[i];
    for (int i = 0; i < c->n; i++) L += c->wld[i] * c->ld[i];
    return L;
}

/* ||a - b|| / max(||b||, floor); *norm_b (may be NULL) = ||b||. */
static double rel_err_floor(const double *a, const double *b, size_t n, double *norm_b, double floor) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    if (norm_b) *norm_b = sqrt(den);
    return sqrt(num) / fmax(sqrt(den), floor);
}

static double rel_err(const double *a, const double *b, size_t n, double *norm_b) {
    return rel_err_floor(a, b, n, norm_b, 1e-6);
}

void rf_check_layer(const rf_layer *l, uint64_t seed, float scale, float perturb,
                    rf_layer_check *out) {
    memset(out, 0, sizeof *out);
    const int n = 6, D = l->dim;
    const size_t P = l->n_params;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    float *params = rf_floats(P + 1, NULL);
    float *x = rf_floats((size_t)n * D, NULL), *x2 = rf_floats((size_t)n * D, NULL);
    float *y = rf_floats((size_t)n * D, NULL);
    float *ld = rf_floats(n, NULL), *ld2 = rf_floats(n, NULL);
    size_t cf = l->ops->cache_floats(l, n), sf = l->ops->scratch_floats(l, n);
    float *cache = rf_floats(cf + 1, NULL), *scratch = rf_floats(sf + 1, NULL);
    for (int i = 0; i < n * D; i++) x[i] = scale * (float)rf_rng_normal(&rng);
    if (l->ops->init_params) l->ops->init_params(l, params, &rng);
    if (l->ops->data_init) l->ops->data_init(l, params, n, x);
    for (size_t i = 0; i < P; i++) params[i] += perturb * (float)rf_rng_normal(&rng);
    if (l->ops->project) l->ops->project(l, params);

    /* round trip and inverse log-det */
    l->ops->forward(l, params, n, x, y, ld, cache, scratch);
    l->ops->inverse(l, params, n, y, x2, ld2, scratch);
    double maxabs = 1, maxerr = 0, lderr = 0;
    for (int i = 0; i < n * D; i++) {
        maxabs = fmax(maxabs, fabs(x[i]));
        maxerr = fmax(maxerr, fabs(x[i] - x2[i]));
    }
    for (int i = 0; i < n; i++) lderr = fmax(lderr, fabs(ld[i] + ld2[i]));
    out->roundtrip_rel = maxerr / maxabs;
    out->logdet_inv_err = lderr;

    /* brute-force Jacobian by central differences, per sample */
    if (D <= 8) {
        double *J = malloc(sizeof(double) * D * D);
        float *xp = rf_floats((size_t)n * D, NULL), *yp = rf_floats((size_t)n * D, NULL);
        float *ym = rf_floats((size_t)n * D, NULL), *tmp = rf_floats(n, NULL);
        /* central differences at steps h and h/2, combined by Richardson extrapolation
         * (truncation error O(h^4)); the actual float steps are used as the denominators */
        const float hs[2] = {2e-3f, 1e-3f};
        double *J2 = malloc(sizeof(double) * D * D);
        for (int s = 0; s < n; s++) {
            for (int q = 0; q < 2; q++) {
                double *JJ = q == 0 ? J2 : J;
                for (int j = 0; j < D; j++) {
                    memcpy(xp, x, sizeof(float) * n * D);
                    const float v = x[s * D + j];
                    volatile float up = v + hs[q], dn = v - hs[q];
                    xp[s * D + j] = up;
                    l->ops->forward(l, params, n, xp, yp, tmp, cache, scratch);
                    xp[s * D + j] = dn;
                    l->ops->forward(l, params, n, xp, ym, tmp, cache, scratch);
                    for (int i = 0; i < D; i++)
                        JJ[i * D + j] = ((double)yp[s * D + i] - ym[s * D + i]) / ((double)up - (double)dn);
                }
            }
            for (int i = 0; i < D * D; i++) J[i] = (4.0 * J[i] - J2[i]) / 3.0;
            double bf = rf_test_logabsdet(D, J);
            if (getenv("RF_DEBUG_BF")) printf("  sample %d: logdet %.6f brute force %.6f\n", s, ld[s], bf);
            out->logdet_bf_err = fmax(out->logdet_bf_err, fabs(bf - ld[s]));
        }
        free(J);
        free(J2);
        rf_free(xp);
        rf_free(yp);
        rf_free(ym);
        rf_free(tmp);
    }

    /* finite-difference gradients of L = sum wy*y + sum wld*logdet */
    double *wy = malloc(sizeof(double) * n * D), *wld = malloc(sizeof(double) * n);
    float *dy = rf_floats((size_t)n * D, NULL), *dld = rf_floats(n, NULL);
    for (int i = 0; i < n * D; i++) dy[i] = (float)(wy[i] = rf_rng_normal(&rng));
    for (int i = 0; i < n; i++) dld[i] = (float)(wld[i] = rf_rng_normal(&rng));
    lc_ctx c = {l, params, n, D, y, ld, cache, scratch, wy, wld};
    float *dx = rf_floats((size_t)n * D, NULL), *dp = rf_floats(P + 1, NULL);
    lc_loss(&c, x); /* fills cache for x */
    l->ops->backward(l, params, n, x, dy, dld, dx, dp, cache, scratch);

    double *ga = malloc(sizeof(double) * (n * D + P + 1)), *gn = malloc(sizeof(double) * (n * D + P + 1));
    float *xw = rf_floats((size_t)n * D, NULL);
    memcpy(xw, x, sizeof(float) * n * D);
    for (int i = 0; i < n * D; i++) {
        float h = 1e-3f * fmaxf(1.0f, fabsf(x[i]));
        float v = xw[i];
        xw[i] = v + h;
        double Lp = lc_loss(&c, xw);
        xw[i] = v - h;
        double Lm = lc_loss(&c, xw);
        xw[i] = v;
        double hh = (double)(v + h) - (double)(v - h);
        gn[i] = (Lp - Lm) / hh;
        ga[i] = dx[i];
    }
    out->grad_x_rel = rel_err(ga, gn, (size_t)n * D, NULL);
    if (P > 0) {
        /* parameters the layer keeps fixed (masked) show zero in both; that is fine */
        float *pw = params;
        for (size_t i = 0; i < P; i++) {
            float h = 1e-3f * fmaxf(1.0f, fabsf(pw[i]));
            float v = pw[i];
            pw[i] = v + h;
            double Lp = lc_loss(&c, x);
            pw[i] = v - h;
            double Lm = lc_loss(&c, x);
            pw[i] = v;
            double hh = (double)(v + h) - (double)(v - h);
            gn[i] = (Lp - Lm) / hh;
            ga[i] = dp[i];
        }
        /* masked entries: FD sees a real derivative the layer deliberately ignores; compare only
         * where the projection keeps the parameter free */
        if (l->ops->project) {
            float *probe = rf_floats(P + 1, NULL);
            for (size_t i = 0; i < P; i++) probe[i] = 1.0f;
            l->ops->project(l, probe);
            for (size_t i = 0; i < P; i++)
                if (probe[i] == 0.0f) gn[i] = ga[i] = 0;
            rf_free(probe);
        }
        out->grad_p_rel = rel_err(ga, gn, P, &out->grad_p_norm);
    }
    free(ga);
    free(gn);
    free(wy);
    free(wld);
    rf_free(xw);
    rf_free(dx);
    rf_free(dp);
    rf_free(dy);
    rf_free(dld);
    rf_free(params);
    rf_free(x);
    rf_free(x2);
    rf_free(y);
    rf_free(ld);
    rf_free(ld2);
    rf_free(cache);
    rf_free(scratch);
}

void rf_check_layer_print(const char *name, const rf_layer_check *c) {
    printf("[layer %-22s] roundtrip %.2e  ld(inv) %.2e  ld(bf) %.2e  grad_x %.2e  grad_p %.2e "
           "(|g_p| %.3g)\n",
           name, c->roundtrip_rel, c->logdet_inv_err, c->logdet_bf_err, c->grad_x_rel,
           c->grad_p_rel, c->grad_p_norm);
}

void rf_assert_layer_ok(const char *name, const rf_layer_check *c) {
    rf_check_layer_print(name, c);
    assert_true(c->roundtrip_rel < 1e-5);
    assert_true(c->logdet_inv_err < 1e-4);
    assert_true(c->logdet_bf_err < 5e-3);
    assert_true(c->grad_x_rel < 1e-2);
    assert_true(c->grad_p_rel < 1e-2);
}

const char *rf_test_data_dir(void) {
    const char *d = getenv("RF_SHARED_DATA");
    static const char *fallbacks[] = {"../shared/data", "../../shared/data", "../../../shared/data"};
    struct stat st;
    if (d && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return d;
    for (size_t i = 0; i < sizeof fallbacks / sizeof *fallbacks; i++)
        if (stat(fallbacks[i], &st) == 0 && S_ISDIR(st.st_mode)) return fallbacks[i];
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "FATAL: shared data directory (../shared/data) missing in CI\n");
        fail_msg("shared data directory missing in CI (RF_SHARED_DATA=%s)", d ? d : "(unset)");
    }
    fprintf(stderr, "note: ../shared/data not found; skipping real-data test\n");
    return NULL;
}

void rf_test_tmp(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/rf-test-%ld-%s", (long)getpid(), tag);
}

double rf_test_rel_err(const double *a, const double *b, size_t n) {
    return rel_err_floor(a, b, n, NULL, 1e-9);
}
