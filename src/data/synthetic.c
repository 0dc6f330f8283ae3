/* Built-in synthetic data sets with known structure (demo, tests, benchmarks). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/data.h"

static void ring(int n, rf_rng *rng, float *x) {
    for (int i = 0; i < n; i++) {
        const int k = (int)rf_rng_below(rng, 8);
        const double a = 2 * M_PI * k / 8;
        x[2 * i] = (float)(2 * cos(a) + 0.2 * rf_rng_normal(rng));
        x[2 * i + 1] = (float)(2 * sin(a) + 0.2 * rf_rng_normal(rng));
    }
}

static void moons(int n, rf_rng *rng, float *x) {
    for (int i = 0; i < n; i++) {
        const double t = M_PI * rf_rng_uniform(rng);
        const int upper = rf_rng_below(rng, 2) == 0;
        double a = upper ? cos(t) : 1 - cos(t), b = upper ? sin(t) : 0.5 - sin(t);
        x[2 * i] = (float)(a + 0.08 * rf_rng_normal(rng));
        x[2 * i + 1] = (float)(b + 0.08 * rf_rng_normal(rng));
    }
}

/* 6 components, means ~ N(0, 3^2 I), Cholesky factors lower-triangular with diagonal in [0.3, 1]
 * and off-diagonal ~ N(0, 0.3^2 / D). */
static int mixture(int n, int D, uint64_t structure_seed, rf_rng *rng, float *x, rf_err *e) {
    enum { K = 6 };
    double *mu = malloc(sizeof(double) * K * D), *L = calloc((size_t)K * D * D, sizeof(double));
    double *eps = malloc(sizeof(double) * D);
    if (!mu || !L || !eps) {
        free(mu);
        free(L);
        free(eps);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    rf_rng s;
    rf_rng_seed(&s, structure_seed);
    for (int k = 0; k < K; k++)
        for (int a = 0; a < D; a++) {
            mu[k * D + a] = 3 * rf_rng_normal(&s);
            for (int b = 0; b < a; b++) L[((size_t)k * D + a) * D + b] = 0.3 * rf_rng_normal(&s) / sqrt(D);
            L[((size_t)k * D + a) * D + a] = 0.3 + 0.7 * rf_rng_uniform(&s);
        }
    for (int i = 0; i < n; i++) {
        const int k = (int)rf_rng_below(rng, K);
        for (int b = 0; b < D; b++) eps[b] = rf_rng_normal(rng);
        for (int a = 0; a < D; a++) {
            double v = mu[k * D + a];
            for (int b = 0; b <= a; b++) v += L[((size_t)k * D + a) * D + b] * eps[b];
            x[(size_t)i * D + a] = (float)v;
        }
    }
    free(mu);
    free(L);
    free(eps);
    return RF_OK;
}

int rf_synthetic(const char *name, int n, int D, uint64_t structure_seed, rf_rng *rng, rf_matrix *out, rf_err *e) {
    memset(out, 0, sizeof *out);
    const int two_d = !strcmp(name, "ring") || !strcmp(name, "moons");
    if (!two_d && strcmp(name, "mixture"))
        return rf_err_set(e, RF_EARG, "unknown synthetic data set '%s' (ring, moons, mixture)", name);
    if (two_d) D = 2;
    if (n < 1 || D < 1 || D > 100000) return rf_err_set(e, RF_EARG, "synthetic '%s': bad size %d x %d", name, n, D);
    int rc = rf_matrix_alloc(out, n, D, e);
    if (rc) return rc;
    if (!strcmp(name, "ring")) ring(n, rng, out->x);
    else if (!strcmp(name, "moons")) moons(n, rng, out->x);
    else if ((rc = mixture(n, D, structure_seed, rng, out->x, e))) rf_matrix_free(out);
    return rc;
}
