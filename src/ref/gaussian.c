/* Full-covariance Gaussian: the baseline every density model must beat. */
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/ref.h"

void rf_gauss_free(rf_gauss *g) {
    free(g->mean);
    free(g->chol);
    memset(g, 0, sizeof *g);
}

int rf_gauss_fit(const rf_matrix *m, double ridge, rf_gauss *g, rf_err *e) {
    memset(g, 0, sizeof *g);
    const int D = m->d, n = m->n;
    if (n < 2) return rf_err_set(e, RF_EARG, "Gaussian fit needs at least 2 rows, got %d", n);
    g->D = D;
    g->mean = calloc((size_t)D, sizeof(double));
    g->chol = calloc((size_t)D * D, sizeof(double));
    if (!g->mean || !g->chol) {
        rf_gauss_free(g);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++)
        for (int a = 0; a < D; a++) g->mean[a] += m->x[(size_t)i * D + a];
    for (int a = 0; a < D; a++) g->mean[a] /= n;
    double *c = g->chol;
    for (int i = 0; i < n; i++) {
        const float *r = m->x + (size_t)i * D;
        for (int a = 0; a < D; a++) {
            const double da = r[a] - g->mean[a];
            for (int b = 0; b <= a; b++) c[a * D + b] += da * (r[b] - g->mean[b]);
        }
    }
    for (int a = 0; a < D; a++) {
        for (int b = 0; b <= a; b++) c[a * D + b] /= n;
        c[a * D + a] += ridge;
        for (int b = a + 1; b < D; b++) c[a * D + b] = 0;
    }
    int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', D, c, D);
    if (info != 0) {
        rf_gauss_free(g);
        return rf_err_set(e, RF_ENONFINITE, "covariance is not positive definite (LAPACK dpotrf info %d)", info);
    }
    for (int a = 0; a < D; a++) g->logdet_cov += 2 * log(c[a * D + a]);
    return RF_OK;
}

double rf_gauss_nll(const rf_gauss *g, const rf_matrix *m, double *per_sample) {
    const int D = g->D;
    double *u = malloc(sizeof(double) * D), total = 0;
    if (!u) return NAN;
    const double k = -0.5 * (D * log(2 * M_PI) + g->logdet_cov);
    for (int i = 0; i < m->n; i++) {
        /* solve L u = x - mean by forward substitution */
        double q = 0;
        for (int a = 0; a < D; a++) {
            double v = m->x[(size_t)i * D + a] - g->mean[a];
            for (int b = 0; b < a; b++) v -= g->chol[a * D + b] * u[b];
            u[a] = v / g->chol[a * D + a];
            q += u[a] * u[a];
        }
        const double lp = k - 0.5 * q;
        if (per_sample) per_sample[i] = lp;
        total -= lp;
    }
    free(u);
    return m->n ? total / m->n : NAN;
}
