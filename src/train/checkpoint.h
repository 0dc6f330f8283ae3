/* Private: the training state saved for --resume. One file, written atomically:
 *   "RFCKPT01" | u64 model_len | model file bytes | u32 json_len | state JSON
 *   | float32 adam_m[n] | float32 adam_v[n] | float32 best_params[n] | SHA-256 of all before. */
#ifndef RF_TRAIN_CHECKPOINT_H
#define RF_TRAIN_CHECKPOINT_H

#include "renflow/train.h"

typedef struct rf_train_state {
    int epoch;         /* epoch in progress */
    long batch_pos;    /* next batch within that epoch */
    long step;         /* optimiser steps done */
    rf_rng epoch_rng;  /* RNG state at the start of the epoch (regenerates its shuffle) */
    double best_val;
    int best_epoch, bad_epochs;
    long skipped;
    double epoch_loss_sum;
    long epoch_loss_n;
    int n_curve;
    double *train_curve, *val_curve; /* capacity: epochs */
    float *best_params;
} rf_train_state;

int rf_checkpoint_save(const char *path, const rf_flow *f, const rf_adam *a,
                       const rf_train_state *s, rf_err *e);
/* Restores params (into f, whose architecture must match), adam and state. */
int rf_checkpoint_load(const char *path, rf_flow *f, rf_adam *a, rf_train_state *s, int max_epochs,
                       rf_err *e);

#endif
