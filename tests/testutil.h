/* Shared test helpers: layer checks (round trip, brute-force log-det, finite differences),
 * data-directory lookup, temporary paths. Used with cmocka. */
#ifndef RF_TESTUTIL_H
#define RF_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "renflow.h"

typedef struct rf_layer_check {
    double roundtrip_rel;  /* max |x - inv(fwd(x))| / max(1, max |x|) */
    double logdet_inv_err; /* max |logdet_fwd + logdet_inv| */
    double logdet_bf_err;  /* max |logdet - log|det J_fd|| over samples (D <= 8) */
    double grad_x_rel;     /* ||g_analytic - g_fd|| / max(||g_fd||, tiny), inputs */
    double grad_p_rel;     /* same, parameters */
    double grad_p_norm;    /* ||g_fd|| for parameters: a test must see non-zero gradients */
} rf_layer_check;

/* Runs every check on layer l with random inputs scaled by `scale`, after initialising params
 * with init_params and perturbing all of them by N(0, perturb^2) (then project). */
void rf_check_layer(const rf_layer *l, uint64_t seed, float scale, float perturb,
                    rf_layer_check *out);
void rf_check_layer_print(const char *name, const rf_layer_check *c);
/* Asserts the standard tolerances of the test suite. */
void rf_assert_layer_ok(const char *name, const rf_layer_check *c);

/* ||a - b|| / max(||b||, 1e-9): relative error of a against the reference b (n entries). */
double rf_test_rel_err(const double *a, const double *b, size_t n);

/* log|det A| of a D x D matrix (double, partial pivoting). */
double rf_test_logabsdet(int D, const double *A);

/* Returns the shared data directory, or NULL after printing a skip note; fails the test when
 * CI=true and the data are missing. */
const char *rf_test_data_dir(void);
/* A unique temporary path for this test process: "/tmp/rf-test-<pid>-<tag>". */
void rf_test_tmp(char *buf, size_t n, const char *tag);

#endif
