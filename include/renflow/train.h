/* renflow train: AdamW, gradient clipping, warm-up + cosine schedule, early stopping,
 * best-model and interrupt checkpoints, resume. */
#ifndef RENFLOW_TRAIN_H
#define RENFLOW_TRAIN_H

#include "renflow/core.h"
#include "renflow/model.h"
#include "renflow/data.h"

typedef struct rf_adam {
    size_t n;
    float *m, *v;
    long step;
    float beta1, beta2, eps;
} rf_adam;
int rf_adam_init(rf_adam *a, size_t n, rf_err *e);
void rf_adam_free(rf_adam *a);
/* One AdamW step: p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p). */
void rf_adam_step(rf_adam *a, float *params, const float *grads, float lr, float weight_decay);
/* The same with the gradient multiplied by gscale (float product, as clipping in place would
 * give), on the threads of workspace w (NULL: the calling thread). The result does not depend on
 * the number of threads. */
void rf_adam_step_scaled(rf_adam *a, float *params, const float *grads, float gscale, float lr,
                         float weight_decay, rf_flow_ws *w);
/* Scales grads so their global L2 norm is at most max_norm (if > 0); returns the norm before. */
double rf_clip_grad_norm(float *grads, size_t n, double max_norm);
/* Global L2 norm (summed in double over a fixed partition: independent of the thread count), on
 * the threads of w (NULL: the calling thread); and the factor clipping to max_norm applies. */
double rf_grad_norm(const float *grads, size_t n, rf_flow_ws *w);
float rf_clip_scale(double norm, double max_norm);
/* Learning rate at step t of total: linear warm-up over `warmup` steps, then cosine to
 * lr * min_ratio (cosine = 0: constant after warm-up). */
double rf_lr_schedule(double lr, long t, long total, long warmup, int cosine, double min_ratio);

typedef struct rf_train_cfg {
    int epochs;
    int batch;
    float lr;
    float weight_decay;
    float clip;          /* max gradient norm, 0 = off */
    float warmup_frac;   /* fraction of total steps */
    int cosine;
    int patience;        /* epochs without validation improvement before stopping; 0 = off */
    int memory_saving;
    int max_bad_steps;   /* consecutive non-finite steps before giving up */
    float ce_weight;     /* hybrid loss weight for class-conditional flows */
    int standardize;     /* 0 none, 1 mean/std, 2 robust (median, IQR) — fitted on train only */
    int init_batch;      /* rows used for the data-dependent (ActNorm) initialisation */
    int class_init;      /* class-conditional base: -1 auto (data for a base tied over time, else
                            random), 0 random means (classes start apart: the better classifier on
                            the Sleep-EDF features), 1 data (each class at the moments of its
                            latents: class-conditional samples then match the data far better) */
    long max_steps;      /* stop (with a checkpoint, as if interrupted) after this many steps; 0 = off */
    uint64_t seed;
    int threads;         /* OpenMP threads (shards of each batch); 0 = as set. BLAS runs single-threaded. */
    const char *out_path;        /* best model written here (atomically) */
    const char *checkpoint_path; /* training state for --resume; NULL = out_path + ".ckpt" */
    int resume;
    int progress;                /* print progress lines on stderr */
    /* Set asynchronously (e.g. by a SIGINT handler) to ask for a checkpoint and stop. */
    volatile int *stop_flag;
    /* Class-conditional flows: train with subject adaptation in the loop (renflow/adapt.h).
     * At the start of every epoch each training subject's latent statistics are computed with
     * the current parameters and every row's latent is standardised with its subject's
     * statistics before the base (zero mean, unit scale per latent group); validation uses its
     * own subjects' statistics. At the end the class Gaussians are re-expressed in the latent
     * space of an average training subject (rf_adapt_reference_to_average: same likelihoods),
     * and eval and cv adapt every new subject the same way. Needs subject ids of the training rows (and of the
     * validation rows when there are any). A resume in the middle of an epoch recomputes the
     * statistics with the parameters at that point, so it is not bit-identical to a run that was
     * not interrupted (one at an epoch boundary is). */
    int subject_adapt;
    const int *train_subjects, *val_subjects;
} rf_train_cfg;
void rf_train_cfg_default(rf_train_cfg *c);

typedef struct rf_train_result {
    int epochs_run;
    int best_epoch;
    double best_val_nll;  /* nats per example */
    double final_train_nll;
    long steps;
    long skipped_steps;   /* non-finite losses/gradients that never reached the model */
    double seconds;         /* wall-clock time of the epoch loop (validation and saves included) */
    double train_seconds;   /* time spent in training steps only (shuffle, batches, updates) */
    double samples_per_sec; /* training examples per train_second (PyTorch bench convention) */
    double samples_per_sec_wall; /* training examples per wall-clock second */
    int interrupted;
    int early_stopped;
    /* per-epoch curves (epochs_run values each, malloc'd) */
    double *train_curve, *val_curve;
} rf_train_result;
void rf_train_result_free(rf_train_result *r);

/* Trains f on train (and labels, may be NULL) and validates on val each epoch. The best
 * validation model is kept in f on return and saved to cfg->out_path. */
int rf_train(rf_flow *f, const rf_matrix *train, const int *train_labels, const rf_matrix *val,
             const int *val_labels, const rf_train_cfg *cfg, rf_train_result *res, rf_err *e);

/* Seeded hold-out: a fraction `frac` of the rows (and their labels, when y != NULL) go to va. */
int rf_holdout_split(const rf_matrix *x, const int *y, double frac, rf_rng *rng, rf_matrix *tr, int **ytr,
                     rf_matrix *va, int **yva, rf_err *e);

/* Mean NLL (nats per example) of a data set, in batches. */
double rf_eval_nll(const rf_flow *f, rf_flow_ws *w, const rf_matrix *m, const int *labels,
                   float *per_sample /* may be NULL */);

#endif
