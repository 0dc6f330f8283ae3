/* Private to src/search: shared helpers of the search space, samplers and study. */
#ifndef RF_SEARCH_INTERNAL_H
#define RF_SEARCH_INTERNAL_H

#include <math.h>

#include "renflow/search.h"

/* The "transformed" scale of a numeric parameter, in which samplers place their kernels:
 * float: value (log: log value) on [low, high]; int: value (log: log value) on
 * [low - 0.5, high + 0.5], so that every integer owns a bin of equal width (log: equal ratio). */
static inline void rf__param_tbounds(const rf_param *p, double *lo, double *hi) {
    double a = p->low, b = p->high;
    if (p->kind == RF_PARAM_INT) {
        a -= 0.5;
        b += 0.5;
    }
    if (p->log) {
        a = log(a);
        b = log(b);
    }
    *lo = a;
    *hi = b;
}
static inline double rf__param_to_t(const rf_param *p, double v) { return p->log ? log(v) : v; }
/* From the transformed scale to a valid value (ints rounded; clamped into [low, high]). */
static inline double rf__param_from_t(const rf_param *p, double t) {
    double v = p->log ? exp(t) : t;
    if (p->kind == RF_PARAM_INT) v = floor(v + 0.5);
    if (v < p->low) v = p->low;
    if (v > p->high) v = p->high;
    return v;
}

/* Active flags from the conditions; fill = 1 gives a newly active parameter without a value its
 * default. */
void rf__config_update_active(const rf_space *sp, rf_config *c, int fill);
/* Default value (internal representation) of parameter i. */
double rf__param_default(const rf_param *p);

/* Unformatted JSON text with every number in its shortest exact form (modifies j: numbers
 * become raw items). malloc'd. */
struct cJSON;
char *rf__json_print_exact(struct cJSON *j);

/* A supernet training step (DARTS, ENAS) with its loss and gradient norm: both finite gives RF_OK,
 * *skip = 0 and *bad = 0; otherwise *skip = 1 (the step is not applied), ++*skipped, ++*bad and a
 * warning on stderr with progress, and after max_bad such steps in a row RF_ENONFINITE, naming
 * `who` ("darts") and `what` diverged ("the search"). */
int rf__supernet_step_check(const char *who, const char *what, double loss, double gnorm, long step, int epoch,
                            long max_bad, long *bad, long *skipped, int progress, int *skip, rf_err *e);

/* Sign to turn objective k into a minimisation: +1 minimise, -1 maximise. */
static inline double rf__dir_sign(const rf_history *h, int k) {
    return h->directions[k] == RF_MAXIMIZE ? -1.0 : 1.0;
}

#endif
