/* renflow jobs: end-to-end tasks composed from the subsystems (used by the CLI). */
#ifndef RENFLOW_JOBS_H
#define RENFLOW_JOBS_H

#include "renflow/model.h"
#include "renflow/train.h"

typedef struct rf_demo_cfg {
    const char *dataset;  /* "ring" (default) or "moons" */
    const char *out_dir;  /* created if missing */
    rf_flow_type flow;
    int blocks, hidden, epochs, batch, threads, progress;
    float lr;
    uint64_t seed;
} rf_demo_cfg;
void rf_demo_cfg_default(rf_demo_cfg *c);

typedef struct rf_demo_result {
    double test_nll, test_bits_per_dim, train_seconds, samples_per_sec;
    int train_rows, test_rows, epochs_run;
    char model_path[4096], samples_path[4096], density_png[4096], density_svg[4096], curve_png[4096];
} rf_demo_result;

/* Trains a flow on a built-in 2-D synthetic data set, evaluates the test NLL, writes the model,
 * samples (.npy), a density figure (PNG and SVG) and the training curve. */
int rf_demo_run(const rf_demo_cfg *c, rf_demo_result *r, rf_err *e);

#endif
