/* Private to the CLI: the options shared by `renflow train` and `renflow cv`. */
#ifndef RF_CLI_TRAIN_OPTS_H
#define RF_CLI_TRAIN_OPTS_H

#include "cli.h"

typedef struct train_args {
    const char *data, *val, *labels, *val_labels, *subjects, *out, *curve;
    const char *flow, *act, *base, *task, *standardize;
    float drop;
    int json, quiet;
    int folds;          /* renflow cv: subject-wise folds */
    const char *prior;  /* renflow cv: uniform | train */
    const char *model;  /* renflow cv: flow | logreg | mlp */
    int class_balanced; /* renflow cv: logreg/mlp loss weights */
    int hmm;            /* renflow cv: Markov-chain smoothing */
    const char *recordings;
    rf_flow_spec spec;
    rf_train_cfg cfg;
} train_args;

/* Parses train options (cv = 1: also --folds/--prior, and --out is optional). Returns 0 or an
 * exit code; *help is set after --help. */
int rf_cli_train_parse(int cv, int argc, char **argv, train_args *a, int *help);

#endif
