/* Private to the time-series layers (ts_*.c): the pieces in ts_common.c they share. Every ts
 * layer has two sets of ops from the same fields: the layer ops proper, which copy the rest of
 * each row after the active prefix (rf_ts_*_tail), and the "prefix" ops that the flow engine
 * runs, which leave the rest of the row alone (rf_layer_prefix_ops, flow_internal.h). */
#ifndef RF_FLOW_TS_INTERNAL_H
#define RF_FLOW_TS_INTERNAL_H

#include <cjson/cJSON.h>

#include "renflow/tsflow.h"

int rf_ts_check_shape(const char *who, int D, int C, int T, rf_err *e);
cJSON *rf_ts_json_new(const char *kind, int D, int C, int T);
int rf_ts_shape_from_json(const cJSON *j, const char *who, int D, int *C, int *T, rf_err *e);

/* The layer ops proper: the layer's prefix ops, then the rest of each row copied. */
void rf_ts_forward_tail(const rf_layer *l, const float *p, int n, const float *x, float *y, float *logdet,
                        float *cache, float *scratch);
void rf_ts_inverse_tail(const rf_layer *l, const float *p, int n, const float *y, float *x, float *logdet,
                        float *scratch);
void rf_ts_backward_tail(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                         const float *dlogdet, float *dx, float *dp, const float *cache, float *scratch);

/* Defines the layer ops `layer_ops`, the prefix ops `prefix_ops` (forward / inverse / backward =
 * fwd, inv, bwd) with the other fields given, and `getter`, which returns the prefix ops of a
 * layer whose ops are `layer_ops` (NULL for any other layer). */
#define RF_TS_DEFINE_OPS(layer_ops, prefix_ops, getter, fwd, inv, bwd, ...)                                 \
    static const rf_layer_ops layer_ops = {__VA_ARGS__, .forward = rf_ts_forward_tail,                      \
                                           .inverse = rf_ts_inverse_tail, .backward = rf_ts_backward_tail}; \
    static const rf_layer_ops prefix_ops = {__VA_ARGS__, .forward = fwd, .inverse = inv, .backward = bwd};  \
    const rf_layer_ops *getter(const rf_layer *l);                                                           \
    const rf_layer_ops *getter(const rf_layer *l) { return l->ops == &layer_ops ? &prefix_ops : NULL; }

#endif
