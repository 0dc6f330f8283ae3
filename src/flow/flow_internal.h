/* Private: pieces of the flow container shared by flow.c, flow_ws.c and model_io.c. */
#ifndef RF_FLOW_INTERNAL_H
#define RF_FLOW_INTERNAL_H

#include "renflow/model.h"

/* An empty flow with room for n_layers layers (the caller fills f->layers / f->n_layers). */
rf_flow *rf_flow_alloc_layers(const rf_flow_spec *spec, int n_layers, rf_err *e);
/* Sets up the base, parameter offsets and buffers once the layers are in place. */
int rf_flow_assemble(rf_flow *f, rf_err *e);

#endif
