/* renflow crossval: subject-wise k-fold cross-validation of class-conditional flows.
 * Each fold trains a fresh model on the other folds' subjects (validation for early stopping:
 * a seeded 10 % of those subjects), then classifies the held-out subjects. Standardisation is
 * fitted on each fold's training rows only and never sees labels. */
#ifndef RENFLOW_CROSSVAL_H
#define RENFLOW_CROSSVAL_H

#include "renflow/dataset.h"
#include "renflow/hmm.h"
#include "renflow/metrics.h"
#include "renflow/ref.h"
#include "renflow/train.h"

typedef struct rf_cv_fold {
    int n_train, n_val, n_test;
    int n_test_subjects;
    int *test_subjects;     /* ids */
    rf_class_metrics metrics;
    double test_nll;        /* mean -log p(x) (marginal over classes), nats per example */
    double seconds;
    int best_epoch;
    double hmm_weight;      /* chosen emission weight (0 when no HMM) */
    int members;            /* ensemble members trained on this fold */
} rf_cv_fold;

typedef struct rf_cv_result {
    int k;
    rf_cv_fold *folds;
    rf_class_metrics pooled;      /* all held-out predictions together */
    double mean[4], sd[4];        /* accuracy, balanced accuracy, macro-F1, kappa over folds */
} rf_cv_result;
void rf_cv_result_free(rf_cv_result *r);

typedef struct rf_cv_cfg {
    int folds;
    uint64_t seed;              /* fold assignment and per-fold training seeds */
    const char *model_prefix;   /* fold f's model is written to PREFIX-fold<f>.rf; NULL: not kept */
    int use_train_prior;        /* classify with the training class frequencies (else uniform) */
    int hmm;                    /* smooth predictions over each recording with a Markov chain
                                   fitted to the training labels (needs d->recordings); the
                                   emission weight is chosen on the fold's validation subjects */
    int subject_adapt;          /* flows, subject-adaptive latent normalisation (renflow/adapt.h):
                                   1 fit it after training on the fold's training rows, 2 train
                                   with it (rf_train_cfg.subject_adapt); either way every held-out
                                   subject is classified with its own statistics */
    int ensemble;               /* K > 1: train K models per fold (seeds apart, same data) and
                                   classify with their mean posterior p(c | x); the test NLL is
                                   then that of their equal mixture. Files: PREFIX-fold<f>.rf,
                                   PREFIX-fold<f>-m<m>.rf. 0 or 1: one model */
    int log_pool;               /* ensemble: 0 classify with the members' mean posterior (linear
                                   pool), 1 with the mean of their log posteriors (log-linear
                                   pool: a flow's posteriors are nearly one-hot in high
                                   dimension, where the linear pool becomes a vote decided by the
                                   most confident member; the HMM's emission weight then acts
                                   as the pool's temperature) */
    const rf_matrix *views;     /* n_views > 0: other versions of the data (same rows in the same
                                   order, same columns; e.g. the features normalised another way,
                                   so one architecture fits all); member m
                                   trains and classifies on view m % (n_views + 1), view 0 being
                                   d->x, so the ensemble has at least n_views + 1 members; the
                                   test NLL is then not reported (NAN: the members model
                                   different variables) */
    int n_views;
    const rf_disc_cfg *disc;    /* non-NULL: a discriminative reference classifier instead of a flow */
    const struct cJSON *input;  /* the input transform already applied to the data (features.h,
                                   rf_input_to_json), recorded in each fold's model; may be NULL */
} rf_cv_cfg;

/* spec: architecture (D and n_classes are set from the data); train: training settings (its
 * out_path/seed are replaced per fold). */
int rf_crossval(const rf_dataset *d, const rf_flow_spec *spec, const rf_train_cfg *train,
                const rf_cv_cfg *cfg, rf_cv_result *res, rf_err *e);
/* JSON: per-fold metrics, mean and standard deviation, pooled confusion. */
struct cJSON *rf_cv_result_to_json(const rf_cv_result *r, const char *const *class_names);

#endif
