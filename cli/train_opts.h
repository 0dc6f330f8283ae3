/* Private to the CLI: the options shared by `renflow train` and `renflow cv`. */
#ifndef RF_CLI_TRAIN_OPTS_H
#define RF_CLI_TRAIN_OPTS_H

#include "cli.h"

/* For a tsflow: the window shape (channels x length) of the data; picks defaults for the
 * data shape unless given, then applies the tsflow flags. Returns 0 or an error code. */
struct train_args;
int rf_cli_shape_spec(struct train_args *a, int channels, int length, int D, rf_err *e);

typedef struct train_args {
    const char *data, *val, *labels, *val_labels, *subjects, *out, *curve;
    const char *flow, *act, *base, *task, *standardize;
    float drop;
    int json, quiet;
    int folds;          /* renflow cv: subject-wise folds */
    int flow_given, blocks_given, hidden_given;     /* --flow (or an architecture flag of tsflow) was given */
    int ts_scales, ts_kernel, ts_dilation;
    const char *ts_coupling;
    int ts_class_tie;   /* -1: default (time) */
    const char *prior;  /* renflow cv: uniform | train */
    const char *model;  /* renflow cv: flow | logreg | mlp */
    int class_balanced; /* renflow cv: logreg/mlp loss weights */
    int hmm;            /* renflow cv: Markov-chain smoothing */
    int ensemble;       /* renflow cv: models per fold */
    int log_pool;       /* renflow cv: --pool log */
#define RF_CLI_MAX_VIEWS 8
    const char *views[RF_CLI_MAX_VIEWS]; /* renflow cv: other versions of --data */
    int n_views;
    int subject_adapt;  /* fit the subject-adaptive latent normalisation (renflow/adapt.h) */
    const char *recordings;
    rf_input_tf input;  /* --features / --context, recorded in the model's meta */
    rf_flow_spec spec;
    rf_train_cfg cfg;
} train_args;

/* Parses train options (cv = 1: also --folds/--prior, and --out is optional). Returns 0 or an
 * exit code; *help is set after --help. */
int rf_cli_train_parse(int cv, int argc, char **argv, train_args *a, int *help);

#endif
