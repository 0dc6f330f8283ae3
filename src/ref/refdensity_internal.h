/* Private: the mixture and kernel estimators behind rf_refdensity (refdensity.h). Everything here
 * works on standardised data in double precision, rows of D values, row-major. */
#ifndef RF_REFDENSITY_INTERNAL_H
#define RF_REFDENSITY_INTERNAL_H

#include "renflow/core.h"

#define RF_LOG_2PI 1.8378770664093454836

/* ---- Gaussian mixture (gmm.c) ---- */
typedef struct rf_gmm {
    int D, K, cov;  /* cov: rf_gmm_cov */
    double *logw;   /* K log weights */
    double *mu;     /* K x D means */
    double *chol;   /* K x D x D lower Cholesky factors of the covariances (diag: only the diagonal) */
    double *logdet; /* K: log det of each covariance */
    double *icf;    /* K x D x D inverse Cholesky factors L_k^{-1} (full covariances) */
    double *b;      /* K x D: L_k^{-1} mu_k */
} rf_gmm;

typedef struct rf_gmm_cfg {
    int K, cov, max_iter, restarts, kmeans_iter;
    double tol, ridge;
} rf_gmm_cfg;

typedef struct rf_gmm_info {
    int K_final;          /* components left (< K when some were removed) */
    int iterations;       /* EM iterations of the kept restart */
    int converged;        /* the kept restart met tol before max_iter */
    int reseeded;         /* degenerate components re-seeded in the kept restart */
    int removed;          /* components removed in the kept restart */
    double train_ll;      /* mean log-likelihood per row (standardised units) of the kept restart */
    int total_iterations; /* EM iterations over all restarts */
} rf_gmm_info;

/* Fits K components to X (n x D) by EM with cfg->restarts k-means++ initialisations; keeps the
 * restart with the highest training likelihood. Degenerate components (fewer than D+1 (full) or
 * 2 (diag) effective rows, or a covariance that is not positive definite) are re-seeded at the
 * worst-explained row with the pooled covariance; a component degenerate more than 3 times is
 * removed. */
int rf_gmm_fit_std(const double *X, int n, int D, const rf_gmm_cfg *cfg, rf_rng *rng, rf_gmm *g, rf_gmm_info *info,
                   rf_err *e);
/* log p(x_i) for the n rows of X. */
int rf_gmm_logpdf_std(const rf_gmm *g, const double *X, int n, double *logp, rf_err *e);
/* One draw into out (D); z is D doubles of scratch. */
void rf_gmm_sample_std(const rf_gmm *g, rf_rng *r, double *out, double *z);
void rf_gmm_free(rf_gmm *g);

/* ---- Gaussian kernel density estimate (kde.c) ---- */
typedef struct rf_kde {
    int D, n;   /* n centres */
    double *c;  /* n x D centres */
    double *cn; /* n squared norms */
    double h;   /* kernel N(0, h^2 I) */
} rf_kde;

/* Takes ownership of c (n x D, malloc'd); computes the norms. */
int rf_kde_init(rf_kde *k, double *c, int n, int D, double h, rf_err *e);
void rf_kde_free(rf_kde *k);
/* Held-out log-likelihood: ll_sum[j] = sum over the nq rows of Q of log p_{h_j}(q) under the
 * kernel estimate with the nc centres C and bandwidth h[j], for the nh bandwidths at once (one
 * blocked distance computation). */
int rf_kde_heldout(const double *C, int nc, const double *Q, int nq, int D, const double *h, int nh, double *ll_sum,
                   rf_err *e);
int rf_kde_logpdf_std(const rf_kde *k, const double *X, int n, double *logp, rf_err *e);
void rf_kde_sample_std(const rf_kde *k, rf_rng *r, double *out);

#endif
