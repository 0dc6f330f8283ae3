/* Private: pieces of the flow container shared by flow.c, flow_ws.c and model_io.c. */
#ifndef RF_FLOW_INTERNAL_H
#define RF_FLOW_INTERNAL_H

#include "renflow/model.h"

/* An empty flow with room for n_layers layers (the caller fills f->layers / f->n_layers). */
rf_flow *rf_flow_alloc_layers(const rf_flow_spec *spec, int n_layers, rf_err *e);
/* Sets up the base, parameter offsets and buffers once the layers are in place. */
int rf_flow_assemble(rf_flow *f, rf_err *e);

/* The floats at the start of each row that layer l reads and writes (its "active prefix"), and
 * ops for running it: for a time-series layer (ts_*.c) C * T and ops whose forward / inverse /
 * backward touch only that prefix of x, y, dy and dx (the rest of each output row is left as it
 * was, none of the rest of an input row is read; cache and scratch as the layer's own ops); for
 * any other layer l->dim and l->ops. Everything else in the returned ops is as in l->ops. */
int rf_layer_prefix_ops(const rf_layer *l, const rf_layer_ops **ops);

#endif
