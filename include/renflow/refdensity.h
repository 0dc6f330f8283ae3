/* renflow refdensity: reference density models for certificates (issue 5), behind one interface.
 *
 * Three kinds, each fitted on the same training rows as the model being certified:
 *   "gaussian"  full-covariance Gaussian (wraps rf_gauss, ref.h);
 *   "gmm"       Gaussian mixture fitted by EM in log space (log-sum-exp), full (default) or
 *               diagonal covariances through Cholesky factors (LAPACKE), k-means++ initialisation
 *               with restarts; the number of components K = 1..max_components is chosen by the
 *               validation log-likelihood (one-standard-error rule by default, see k_rule), and
 *               the whole curve is recorded;
 *   "kde"       Gaussian kernel density estimate; the bandwidth is chosen by maximising a held-out
 *               log-likelihood over a log grid anchored at Scott's and Silverman's factors.
 *
 * Common conventions
 * - Every kind works on internally standardised data: each column is shifted by its mean and
 *   divided by its standard deviation over the fitting rows (1 when a column is constant). The
 *   returned log-densities are those of the ORIGINAL units (the Jacobian -sum_d log sd_d is
 *   included), so they are directly comparable with a flow's NLL on the same data.
 * - ridge: added to every covariance diagonal in standardised units, i.e. ridge * var_d in original
 *   units (default 1e-6). It keeps Cholesky factors defined for collinear / quantised columns.
 * - Validation rows: `val` may be NULL. Then, for the kinds that select something (gmm: K, kde:
 *   bandwidth when kde_folds == 0), a seeded split of `train` (val_frac, default 0.2, seed `seed`)
 *   serves as validation and the model is fitted on the rest; the Gaussian selects nothing and is
 *   fitted on all of `train`. The sizes used are recorded in the description. The selected model
 *   is the one fitted on the fitting rows; it is not refitted on train + val.
 * - Reproducible: the result depends only on the data and the options (seed included); rows are
 *   processed in parallel (OpenMP) but every value is computed in a fixed order, so the OpenMP
 *   thread count does not change it. A multi-threaded OpenBLAS may change the last digits
 *   (renflow runs OpenBLAS single-threaded, see rf_set_threads).
 * - Errors: rf_status codes and rf_err messages that name the argument and the value (NaN row and
 *   column, too few rows for K, dimension mismatch, unknown kind).
 *
 * Latency, memory and energy are measured by the certify side (src/cert/); this module reports
 * only analytic counts (parameters, FLOPs) and its own fit time. */
#ifndef RENFLOW_REFDENSITY_H
#define RENFLOW_REFDENSITY_H

#include <stdint.h>

#include "renflow/data.h"

struct cJSON;

typedef enum { RF_GMM_FULL = 0, RF_GMM_DIAG = 1 } rf_gmm_cov;
/* How K is chosen from the validation curve. ONE_SE: the smallest K whose validation NLL is within
 * one standard error of the best (the SE of the mean per-row log-density difference to the best K
 * on the same validation rows; guards against picking a larger K on noise). MIN: the best K. */
typedef enum { RF_KRULE_ONE_SE = 0, RF_KRULE_MIN = 1 } rf_gmm_krule;

typedef struct rf_refdensity_opts {
    uint64_t seed;   /* all randomness (split, k-means++, subsample): default 1 */
    double val_frac; /* fraction of train held out when val == NULL: default 0.2 */
    double ridge;    /* covariance ridge in standardised units: default 1e-6 */
    /* ---- gmm ---- */
    int max_components; /* K = 1..max_components are fitted and validated: default 8 */
    int gmm_cov;        /* rf_gmm_cov: default RF_GMM_FULL */
    double em_tol;      /* stop when the mean train log-likelihood (nats/row) changes by less
                         * (as scikit-learn's tol): default 1e-3 */
    int em_max_iter;    /* EM iterations per restart: default 300 */
    int restarts;       /* k-means++ restarts per K; the best train likelihood is kept: default 2 */
    int kmeans_iter;    /* Lloyd iterations after k-means++ seeding, before EM: default 10 */
    int k_patience;     /* stop the K scan after this many consecutive K without a better
                         * validation NLL; 0 = fit every K up to max_components: default 0 */
    int k_rule;         /* rf_gmm_krule: default RF_KRULE_ONE_SE */
    /* ---- kde ----
     * Kernel N(0, h^2 I) on standardised data, i.e. N(0, h^2 diag(sd^2)) in original units.
     * Grid: kde_n_bandwidths values log-spaced in [kde_bw_lo * scott, kde_bw_hi * scott], plus
     * Scott's factor n^(-1/(D+4)) and Silverman's (n (D+2) / 4)^(-1/(D+4)) themselves; the best
     * grid value is then refined on a finer log grid between its neighbours (kde_refine points). */
    int kde_n_bandwidths; /* default 16 */
    double kde_bw_lo;     /* default 0.02 */
    double kde_bw_hi;     /* default 3.0 */
    int kde_refine;       /* points of the refinement grid, 0 = none: default 8 */
    int kde_folds;        /* 0: validate on val (or the split); >= 2: K-fold CV over the kernel
                           * centres (the fitting rows after the kde_max_rows cap), and the final
                           * model keeps all of them. Default 0 */
    int kde_max_rows;     /* cap on the kernel centres: more rows are subsampled without replacement
                           * with `seed` (recorded): default 10000 */
    int kde_max_val_rows; /* cap on the held-out rows used to choose h (subsampled with `seed`);
                           * the reported val_nll uses every validation row: default 5000 */
} rf_refdensity_opts;

void rf_refdensity_opts_default(rf_refdensity_opts *o);

typedef struct rf_refdensity rf_refdensity;

/* kind: "gaussian" | "gmm" | "kde". train: n x D rows (all finite), val: m x D or NULL.
 * o may be NULL (defaults). Returns NULL and fills e on failure.
 * Cost with the defaults (one core; measured on a loaded 2-core machine, so indicative only):
 * gmm on EEG Eye State (10.5k rows, 14-D) ~5-10 s; on Sleep-EDF features (30k rows, 72-D) a few
 * minutes (EM is O(n K D^2) per iteration over K = 1..8 and 2 restarts); kde ~1-10 s (O(centres x
 * selection rows x bandwidths) exps); gaussian < 1 s. */
rf_refdensity *rf_refdensity_fit(const char *kind, const rf_matrix *train, const rf_matrix *val,
                                 const rf_refdensity_opts *o, rf_err *e);
void rf_refdensity_free(rf_refdensity *m);

/* log p(x_i) in nats for every row of x (per_sample_logp, may be NULL, x->n doubles) and the mean
 * negative log-likelihood in nats per row (mean_nll, may be NULL). Errors: D mismatch (RF_EARG),
 * a non-finite input value (RF_ENONFINITE, names row and column). Thread-safe on a const model. */
int rf_refdensity_logpdf(const rf_refdensity *m, const rf_matrix *x, double *per_sample_logp, double *mean_nll,
                         rf_err *e);

/* n samples into out (allocated here, n x D, free with rf_matrix_free). */
int rf_refdensity_sample(const rf_refdensity *m, int n, rf_rng *rng, rf_matrix *out, rf_err *e);

/* ---- accessors ---- */
const char *rf_refdensity_kind(const rf_refdensity *m); /* "gaussian" | "gmm" | "kde" */
int rf_refdensity_dim(const rf_refdensity *m);
double rf_refdensity_fit_seconds(const rf_refdensity *m); /* wall seconds of rf_refdensity_fit */
/* Mean validation NLL (nats/row) of the final model; NAN for a Gaussian fitted without val. */
double rf_refdensity_val_nll(const rf_refdensity *m);
int rf_refdensity_components(const rf_refdensity *m);   /* gmm: chosen K; gaussian: 1; kde: centres */
double rf_refdensity_bandwidth(const rf_refdensity *m); /* kde: h (standardised units), else NAN */
/* Component k (0 <= k < rf_refdensity_components) of a gmm, or the single component (k = 0) of a
 * gaussian, in original units: weight, mean (D) and covariance (D x D, row-major, ridge included);
 * each output may be NULL. RF_EARG for a kde or k out of range. */
int rf_refdensity_gmm_component(const rf_refdensity *m, int k, double *weight, double *mean, double *cov, rf_err *e);

/* Free parameters of the density in original units (the standardisation is folded in):
 *   gaussian: D + D(D+1)/2
 *   gmm full: (K-1) + K D + K D(D+1)/2;  gmm diag: (K-1) + 2 K D
 *   kde:      n_centres D + D   (the stored centres and the per-column kernel width h * sd_d) */
int64_t rf_refdensity_n_params(const rf_refdensity *m);

/* Analytic floating-point operations for ONE sample, counting the arithmetic the algorithm needs
 * (a multiply-add counts 2; exp, log, sqrt and a division count 1 each; comparisons, random number
 * generation and memory traffic are not counted; a triangular matrix-vector product counts its
 * D(D+1)/2 multiply-adds even where a BLAS call also multiplies the zeros).
 * RF_REF_FLOPS_LOGPDF, per row of rf_refdensity_logpdf:
 *   gaussian:  2D (standardise) + D (centre) + D^2 (forward substitution: D(D-1)/2 multiply-adds,
 *              D divisions) + 2D (squared norm) + 2 (constant) + 1 (Jacobian) = D^2 + 5D + 3
 *   gmm full:  2D + K (D(D+1) (L_k^{-1} x) + D (- L_k^{-1} mu_k) + 2D + 2) + 3K (log-sum-exp:
 *              subtract, exp, add) + 3 (log, shift, Jacobian) = 2D + K (D^2 + 4D + 2) + 3K + 3
 *   gmm diag:  2D + K (2D ((x - mu) / sd) + 2D + 2) + 3K + 3
 *   kde:       2D + 2D (||x||^2) + n_centres (2D (x.c) + 6 (norms, scale, shift, exp, add)) + 3
 *              [distances as ||x||^2 + ||c||^2 - 2 x.c with the centre norms cached; the count
 *              includes every centre, although terms below exp(-40) of the largest are skipped]
 * RF_REF_FLOPS_SAMPLE, per drawn row (T = D(D+1) for L z with a full factor, D for a diagonal):
 *   gaussian:  T + D (mean + L z) + 2D (un-standardise)
 *   gmm:       K (component choice) + T + D + 2D
 *   kde:       2D (c + h z) + 2D */
typedef enum { RF_REF_FLOPS_LOGPDF = 0, RF_REF_FLOPS_SAMPLE = 1 } rf_ref_flops;
double rf_refdensity_flops_per_sample(const rf_refdensity *m, rf_ref_flops which);

/* Description for the certificate (caller frees with cJSON_Delete). Fields:
 *   kind, dim, fit_seconds, seed (a string when above 2^53), n_params, flops_logpdf,
 *   flops_sample, ridge, train_rows (rows given), fit_rows (rows the model was fitted on),
 *   val_rows, val_source ("given" | "split" | "none" | "kfold"), val_frac (split only),
 *   val_nll (mean NLL of the final model on the validation rows; null when none),
 *   standardized: true, and per kind:
 *   gaussian: logdet_cov (original units)
 *   gmm:      covariance ("full" | "diag"), components (K of the model kept), chosen_k,
 *             best_val_k (the minimum of the curve), k_rule, weights [K], max_components (the
 *             largest K tried: lowered to fit_rows / (D + 1), or / 2 for diag, when the rows
 *             support fewer than requested; then also max_components_requested and
 *             max_components_note), k_patience, em_tol, em_max_iter, restarts, kmeans_iter, init,
 *             curve: [{k, k_final, val_nll, train_nll, iterations (kept restart),
 *             iterations_all_restarts, converged, reseeded, removed, val_nll_minus_best,
 *             se_vs_best}] (k_final < k when degenerate components were removed)
 *   kde:      bandwidth (h of the model, standardised units), bandwidth_selected (the grid value;
 *             differs from bandwidth after K-fold, rescaled by ((folds-1)/folds)^(1/(D+4))),
 *             bandwidth_scott, bandwidth_silverman, kernel, bandwidth_selection ("validation" |
 *             "kfold"), folds, selection_rows, centres, subsampled (bool), max_rows, max_val_rows,
 *             at_grid_edge (bool: the best h is the smallest or largest tried; widen the grid),
 *             curve: [{h, val_nll}] (grid + refinement, sorted by h; K-fold: mean held-out NLL)
 * NULL only when out of memory. */
struct cJSON *rf_refdensity_describe_json(const rf_refdensity *m);

#endif
