/* renflow importance: hyperparameter importance by functional ANOVA (fANOVA; Hutter, Hoos and
 * Leyton-Brown 2014, "An Efficient Approach for Assessing Hyperparameter Importance") on a
 * random-forest regression surrogate of completed trials.
 *
 * Inputs are plain arrays: X is n x d (row-major doubles), y has n values (the objective).
 *
 * Encoding of a parameter (column of X):
 *   - RF_FEATURE_CONTINUOUS: a value in [0, 1] (the search space's unit-hypercube encoding; a
 *     log-uniform parameter is encoded on its log scale), or NaN when the parameter is inactive.
 *   - RF_FEATURE_CATEGORICAL: an integer category index in [0, n_categories), or NaN when
 *     inactive; 1 <= n_categories <= RF_FOREST_MAX_CATEGORIES.
 *
 * Inactive (conditional) parameters. NaN is a value of its own, not an error. The forest sees it
 * as a point outside the range (continuous: the value -1, so a split can separate inactive from
 * active rows; categorical: an extra category n_categories). fANOVA then integrates over the
 * product measure in which each parameter is inactive with probability p and otherwise uniform
 * on its range ([0, 1], or each of the n_categories with (1 - p)/n_categories):
 *     mu_i = p_i * delta(inactive) + (1 - p_i) * Uniform(range_i).
 * By default p_i is the fraction of the training rows where parameter i is NaN (0 when it is
 * always active, making the measure the plain uniform one of the paper); rf_fanova_opts can fix it
 * instead. Like fANOVA's imputation of inactive values, this treats the parameters as
 * independent: the forest's predictions for combinations never seen in the data (a child
 * parameter active while its parent says it cannot be) are extrapolations.
 *
 * The computation is exact for the fitted forest: every tree is a partition of the domain into
 * axis-aligned leaf boxes; for each tree the total variance, the variance of each single
 * parameter's marginal and of each pair's marginal are sums over the cells of the grid formed by
 * that tree's split points (continuous) and categories (categorical), as in Algorithm 2 of the
 * paper. The pair importance is the interaction alone: V_ij - V_i - V_j (clipped at 0). Fractions
 * are V_U / V per tree; the mean and the (population) standard deviation are over the trees with
 * non-zero total variance, as in automl/fanova. */
#ifndef RENFLOW_IMPORTANCE_H
#define RENFLOW_IMPORTANCE_H

#include <stdint.h>

#include "renflow/core.h"

#define RF_FOREST_MAX_CATEGORIES 63

typedef enum { RF_FEATURE_CONTINUOUS = 0, RF_FEATURE_CATEGORICAL = 1 } rf_feature_kind;

/* ---- random-forest regression ---- */
typedef struct rf_forest_opts {
    int n_trees;           /* default 32 */
    int max_features;      /* features tried at each split; 0 (default): ceil(0.7 d) */
    int min_samples_split; /* a node with fewer (bootstrap) samples is a leaf; default 2 */
    int min_samples_leaf;  /* default 1 */
    int max_depth;         /* default 64 */
    int bootstrap;         /* 1 (default): each tree on n rows drawn with replacement */
    uint64_t seed;         /* default 1 */
} rf_forest_opts;

void rf_forest_opts_default(rf_forest_opts *o);

typedef struct rf_forest rf_forest;

/* Fits the forest. kinds (d entries) may be NULL (all continuous); n_categories (d entries) is
 * read for categorical columns only and may be NULL when there are none. Errors (RF_EARG): n < 2,
 * d < 1, a NULL array, a continuous value outside [0, 1] or infinite, a categorical value that
 * is not an integer in [0, n_categories), bad options; RF_ENONFINITE: a non-finite y. The
 * forest is deterministic given opts->seed, whatever the number of threads. */
int rf_forest_fit(const double *X, const double *y, int n, int d, const rf_feature_kind *kinds,
                  const int *n_categories, const rf_forest_opts *opts, rf_forest **out,
                  rf_err *e);
void rf_forest_free(rf_forest *f);
int rf_forest_dim(const rf_forest *f);
int rf_forest_n_trees(const rf_forest *f);
/* Total number of leaves over all trees. */
long rf_forest_n_leaves(const rf_forest *f);
/* Predicts m rows of X (same encoding as for fitting; NaN = inactive): mean over the trees, and
 * (sd may be NULL) the standard deviation across trees. Values outside the range are an error. */
int rf_forest_predict(const rf_forest *f, const double *X, int m, double *mean, double *sd,
                      rf_err *e);

/* ---- fANOVA ---- */
typedef struct rf_fanova_opts {
    rf_forest_opts forest;
    int pairs;              /* 1 (default): also every pairwise interaction */
    double inactive_weight; /* < 0 (default): p_i = fraction of rows where column i is NaN;
                               otherwise p_i = this value in [0, 1) for every column that has
                               a NaN (0 for the others) */
} rf_fanova_opts;

void rf_fanova_opts_default(rf_fanova_opts *o);

typedef struct rf_importance {
    int d, n;                 /* parameters, training rows */
    int n_trees, n_trees_used; /* trees, and those with non-zero total variance */
    double total_variance;    /* mean over used trees of the tree's total variance */
    double *main_mean, *main_sd; /* d: variance fraction of each parameter's main effect */
    int n_pairs;              /* d (d - 1) / 2 when pairs were computed, else 0 */
    int *pair_i, *pair_j;     /* n_pairs, i < j, in order (0,1), (0,2), ..., (d-2,d-1) */
    double *pair_mean, *pair_sd; /* fraction of the interaction alone (V_ij - V_i - V_j) */
    double *pair_total_mean;  /* fraction of the pair's whole marginal V_ij (mains included) */
    double *inactive_weight;  /* d: p_i used in the measure */
} rf_importance;

/* Fits a forest to (X, y) and decomposes its variance. Errors as rf_forest_fit, plus RF_EARG
 * when y is constant (no variance to decompose). out is zeroed first and must be released
 * with rf_importance_free. */
int rf_fanova_compute(const double *X, const double *y, int n, int d,
                      const rf_feature_kind *kinds, const int *n_categories,
                      const rf_fanova_opts *o, rf_importance *out, rf_err *e);
/* The same for an already fitted forest (pairs and inactive_weight from o, which may be NULL
 * for the defaults). */
int rf_fanova_forest(const rf_forest *f, const rf_fanova_opts *o, rf_importance *out, rf_err *e);
void rf_importance_free(rf_importance *imp);

/* JSON: {"method":"fanova","n_samples","n_trees","n_trees_used","total_variance",
 * "main":[{"param","index","mean","sd","inactive_weight"}...] in parameter order,
 * "pairs":[{"params":[a,b],"indices":[i,j],"mean","sd","total_mean"}...] by decreasing mean}.
 * names (d entries, may be NULL or hold NULLs) default to "x1", "x2", ... */
struct cJSON *rf_importance_to_json(const rf_importance *imp, const char *const *names);
/* Writes rf_importance_to_json to path (pretty-printed, atomically). */
int rf_importance_write_json(const char *path, const rf_importance *imp,
                             const char *const *names, rf_err *e);

/* Importance bars (SVG/PNG/PDF by extension, written atomically like the other figures):
 * horizontal bars of the mean variance fraction with error bars of +-1 sd across trees, main
 * effects and pairwise interactions ("a x b") together, sorted by decreasing mean, at most
 * max_bars of them (<= 0: 20). title may be NULL. */
int rf_plot_importance(const char *path, const char *title, const rf_importance *imp,
                       const char *const *names, int max_bars, rf_err *e);

#endif
