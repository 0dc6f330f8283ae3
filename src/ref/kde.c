/* Gaussian kernel density estimate on standardised data:
 *   p_h(x) = 1/n sum_c N(x; c, h^2 I),
 *   log p_h(x) = -m/(2h^2) + log sum_c exp(-(d_c - m)/(2h^2)) - log n - D log h - D/2 log 2 pi,
 * with d_c = ||x - c||^2 and m = min_c d_c (the log-sum-exp shift; it does not depend on h, so one
 * distance computation serves every bandwidth of a grid). Squared distances come from
 * ||x||^2 + ||c||^2 - 2 x.c with the cross term by cblas_dgemm over blocks of query rows, clamped
 * at 0; kernel terms below exp(-40) of the largest are skipped. Query blocks run in parallel
 * (OpenMP); each row's value is computed by one thread in a fixed order and sums are taken
 * afterwards in row order, so results do not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "refdensity_internal.h"

#define KDE_QBLOCK 64
/* Terms with exp(-t) < exp(-KDE_PRUNE) relative to the largest (which is 1) are skipped: with nc
 * centres the relative error of the sum is below nc * exp(-40) = nc * 4.2e-18. */
#define KDE_PRUNE 40.0

static void row_norms(const double *X, int n, int D, double *out) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += X[(size_t)i * D + j] * X[(size_t)i * D + j];
        out[i] = s;
    }
}

/* out[q * nh + j] = log p_{h_j}(Q_q) for the nq query rows. cn: centre norms. */
static int kde_eval(const double *C, const double *cn, int nc, const double *Q, int nq, int D, const double *h, int nh,
                    double *out) {
    double *inv = malloc(sizeof(double) * nh), *cst = malloc(sizeof(double) * nh);
    if (!inv || !cst) {
        free(inv);
        free(cst);
        return RF_ENOMEM;
    }
    for (int j = 0; j < nh; j++) {
        inv[j] = 0.5 / (h[j] * h[j]);
        cst[j] = -log((double)nc) - D * log(h[j]) - 0.5 * D * RF_LOG_2PI;
    }
    const int nblk = (nq + KDE_QBLOCK - 1) / KDE_QBLOCK;
    int fail = 0;
#pragma omp parallel for schedule(dynamic) reduction(| : fail)
    for (int b = 0; b < nblk; b++) {
        const int q0 = b * KDE_QBLOCK, nb = nq - q0 < KDE_QBLOCK ? nq - q0 : KDE_QBLOCK;
        double *G = malloc(sizeof(double) * (size_t)nb * nc);
        if (!G) {
            fail = 1;
            continue;
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, nc, D, 1.0, Q + (size_t)q0 * D, D, C, D, 0.0, G, nc);
        for (int i = 0; i < nb; i++) {
            const double *x = Q + (size_t)(q0 + i) * D;
            double xn = 0;
            for (int j = 0; j < D; j++) xn += x[j] * x[j];
            double *d = G + (size_t)i * nc, m = INFINITY;
            for (int c = 0; c < nc; c++) {
                double v = xn + cn[c] - 2 * d[c];
                if (v < 0) v = 0;
                d[c] = v;
                if (v < m) m = v;
            }
            for (int j = 0; j < nh; j++) {
                const double a = inv[j];
                double s = 0;
                for (int c = 0; c < nc; c++) {
                    const double t = (d[c] - m) * a;
                    if (t < KDE_PRUNE) s += exp(-t);
                }
                out[(size_t)(q0 + i) * nh + j] = -m * a + log(s) + cst[j];
            }
        }
        free(G);
    }
    free(inv);
    free(cst);
    return fail ? RF_ENOMEM : RF_OK;
}

int rf_kde_init(rf_kde *k, double *c, int n, int D, double h, rf_err *e) {
    memset(k, 0, sizeof *k);
    k->cn = malloc(sizeof(double) * (n > 0 ? n : 1));
    if (!k->cn) {
        free(c);
        return rf_err_set(e, RF_ENOMEM, "out of memory for %d kernel centres", n);
    }
    k->c = c;
    k->n = n;
    k->D = D;
    k->h = h;
    row_norms(c, n, D, k->cn);
    return RF_OK;
}

void rf_kde_free(rf_kde *k) {
    if (!k) return;
    free(k->c);
    free(k->cn);
    memset(k, 0, sizeof *k);
}

int rf_kde_heldout(const double *C, int nc, const double *Q, int nq, int D, const double *h, int nh, double *ll_sum,
                   rf_err *e) {
    double *cn = malloc(sizeof(double) * (nc > 0 ? nc : 1));
    double *out = malloc(sizeof(double) * (size_t)(nq > 0 ? nq : 1) * nh);
    if (!cn || !out) {
        free(cn);
        free(out);
        return rf_err_set(e, RF_ENOMEM, "out of memory for a held-out evaluation of %d rows x %d bandwidths", nq, nh);
    }
    row_norms(C, nc, D, cn);
    int rc = kde_eval(C, cn, nc, Q, nq, D, h, nh, out);
    if (rc)
        rf_err_set(e, rc, "out of memory for kernel distances (%d x %d)", KDE_QBLOCK, nc);
    else
        for (int j = 0; j < nh; j++) {
            double s = 0;
            for (int q = 0; q < nq; q++) s += out[(size_t)q * nh + j];
            ll_sum[j] = s;
        }
    free(cn);
    free(out);
    return rc;
}

int rf_kde_logpdf_std(const rf_kde *k, const double *X, int n, double *logp, rf_err *e) {
    if (n <= 0) return RF_OK;
    if (kde_eval(k->c, k->cn, k->n, X, n, k->D, &k->h, 1, logp))
        return rf_err_set(e, RF_ENOMEM, "out of memory for kernel distances (%d x %d)", KDE_QBLOCK, k->n);
    return RF_OK;
}

void rf_kde_sample_std(const rf_kde *k, rf_rng *r, double *out) {
    const double *c = k->c + (size_t)rf_rng_below(r, (uint64_t)k->n) * k->D;
    for (int j = 0; j < k->D; j++) out[j] = c[j] + k->h * rf_rng_normal(r);
}
