/* Private to src/search: multi-fidelity samplers (sampler_hyperband.c, sampler_bohb.c). */
#ifndef RF_MF_INTERNAL_H
#define RF_MF_INTERNAL_H

#include "search_internal.h"

/* "asha" | "hyperband" | "hyperband-async" | "bohb": a multi-fidelity sampler with default
 * options; NULL without touching e when the name is none of these (rf_sampler_create goes on). */
rf_sampler *rf__sampler_create_mf(const char *name, rf_err *e);

/* "tpe" | "tpe-optuna" | "tpe-sdw" | "tpe-univariate" | "tpe-univariate-sdw" (sampler_tpe.c);
 * NULL without touching e for other names. */
rf_sampler *rf__sampler_create_tpe(const char *name, rf_err *e);

/* A new configuration for a multi-fidelity sampler. model = 0: uniform. model = 1 (BOHB): with
 * probability o->random_fraction uniform, otherwise `tpe` on the complete trials of h at the
 * largest budget (budget 0 read as o->max_budget) with at least min_points + 2 complete trials
 * (uniform while there is none). *model_budget = that budget or NAN, *model_n its observations. */
int rf__mf_new_config(const rf_mf_opts *o, rf_sampler *tpe, const rf_space *sp, const rf_history *h, rf_rng *rng,
                      rf_config *out, double *model_budget, int *model_n, rf_err *e);

/* Minimum number of complete trials at a budget before BOHB fits a model there. */
int rf__mf_min_model_points(const rf_mf_opts *o, const rf_space *sp);

/* Relative comparison of budgets. */
static inline int rf__budget_eq(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1.0, fmax(fabs(a), fabs(b))); }

#endif
