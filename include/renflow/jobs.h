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

/* The built-in EEG job: simulated EEG (renflow/eegsim.h; no files needed), written as a prepared
 * data set, standardised by subject, then a class-conditional flow on its band powers (or a
 * time-series flow on the raw windows) cross-validated by subject (every fold's model kept). Writes OUT/simulated-eeg/, OUT/model-fold<k>.rf and OUT/cv.json. */
typedef struct rf_eeg_demo_cfg {
    const char *out_dir;  /* created if missing */
    const char *mode;     /* "arithmetic" (rest vs task, default) or "sleep" */
    int subjects, windows_per_class, channels;
    double rate, window_s;
    double task_effect;   /* arithmetic: size of the task effect (simulator default 1 is subtle and
                             varies across subjects; the demo uses 2.5, a clear effect) */
    const char *features; /* "bandpower" (default: log band powers per channel -> glow
                             classifier) or "raw" (the windows -> class-conditional tsflow) */
    int folds, epochs, batch, threads, progress;
    float lr;
    uint64_t seed;
} rf_eeg_demo_cfg;
void rf_eeg_demo_cfg_default(rf_eeg_demo_cfg *c);

typedef struct rf_eeg_demo_result {
    int windows, n_classes, folds;
    double accuracy, balanced_accuracy, macro_f1, kappa; /* pooled over the held-out subjects */
    double fold_mean[4], fold_sd[4];                      /* same order, over folds */
    char data_dir[4096], model_path[4096], report_path[4096];
} rf_eeg_demo_result;
int rf_eeg_demo_run(const rf_eeg_demo_cfg *c, rf_eeg_demo_result *r, rf_err *e);

#endif
