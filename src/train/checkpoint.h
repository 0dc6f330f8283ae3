/* Private: the training state saved for --resume. One file, written atomically and streamed
 * (no copy of the parameters is assembled in memory):
 *   "RFCKPT02" | u32 json_len | JSON {"arch": spec, layers (with their fixed permutations, LU
 *   pivots and signs), n_params, dim; "state": epoch, batch, step, RNG, best, curves}
 *   | float32 params[n] | float32 shift[D] | float32 scale[D] | float32 adam_m[n]
 *   | float32 adam_v[n] | float32 best_params[n] | SHA-256 of all before.
 * Format 01 (which embedded a whole model file) is recognised and refused with a message. */
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
