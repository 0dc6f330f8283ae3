/* renflow search job: what `renflow search` evaluates and reports.
 *
 *  - tasks: a data set split once into training, validation and test rows (whole subjects when
 *    subject ids are known), for density estimation or classification; built-in tasks need no
 *    files ("ring" and "moons": 2-D densities; "eeg": simulated rest vs mental-arithmetic EEG as
 *    band-power features, classified across subjects).
 *  - the trial objective (an rf_objective_fn): trains a flow with the trial's configuration on
 *    the training rows and scores it on the validation rows (validation NLL, macro-F1, and
 *    optionally training time or parameter count as further objectives); every trial's model is
 *    kept as OUTDIR/trials/trial-<n>.rf and the best one as OUTDIR/best.rf (atomic writes).
 *    The test rows are never seen by a trial: they score the best and the default configuration
 *    once the search is over.
 *  - reports: the optimisation history, fANOVA importance, the Pareto front and the best
 *    architecture as figures (SVG/PNG/PDF by extension) plus report.json.
 *
 * Typical use (what cli/cmd_search.c does):
 *
 *     rf_search_task task;  rf_search_task_builtin("ring", 0, &topts, &task, &e);
 *     rf_space *sp = rf_search_default_space(&task, 12, &e);
 *     rf_search_job job;    rf_search_job_init(&job, &task, sp, metrics, n_metrics);
 *     job.out_dir = ".";    rf_search_job_prepare(&job, &e);     // creates ./trials
 *     ... rf_study_optimize(st, sampler, rf_search_objective, &job, &opts, &res, &e) ...
 *     rf_search_sync_best(st, &job, &best, &e);                  // ./best.rf = best trial's model
 *     rf_search_report_write(st, "report", "best.rf", &task, &json, &e);
 */
#ifndef RENFLOW_SEARCH_JOB_H
#define RENFLOW_SEARCH_JOB_H

#include "renflow/features.h"
#include "renflow/importance.h"
#include "renflow/model.h"
#include "renflow/morph.h"
#include "renflow/search.h"
#include "renflow/train.h"

struct cJSON;

/* ======================================================================================
 * Tasks
 * ====================================================================================== */

typedef enum { RF_TASK_DENSITY = 0, RF_TASK_CLASSIFY = 1 } rf_task_kind;
const char *rf_task_kind_name(rf_task_kind k); /* "density" | "classify" */

typedef struct rf_search_task_opts {
    rf_task_kind kind;
    double val_frac;    /* of the rows (or subjects) left after the test part; default 0.2 */
    double test_frac;   /* default 0.2; 0: no test part */
    uint64_t seed;      /* the split (and the built-in data); default 1 */
    rf_input_tf input;  /* band power / context applied to the data set (none by default) */
    const char *recordings; /* recording ids for --context (may be NULL) */
} rf_search_task_opts;
void rf_search_task_opts_default(rf_search_task_opts *o);

typedef struct rf_search_task {
    rf_task_kind kind;
    rf_matrix train, val, test;   /* test has 0 rows without a test part */
    int *ytrain, *yval, *ytest;   /* classify only (NULL for density) */
    int n_classes;                /* classify: number of classes (labels in [0, n_classes)) */
    int channels, length;         /* rows are channel-major windows (0: plain feature vectors) */
    int by_subject;               /* validation and test hold out whole subjects */
    int n_subjects[3];            /* subjects in train, val, test (0 when unknown) */
    int default_epochs;           /* built-in tasks: the fixed training budget (0: none) */
    rf_input_tf input;            /* transform applied (recorded in every model's meta) */
    char source[1024];            /* "built-in ring" or the data path */
    char fingerprint[17];         /* 16 hex digits of SHA-256 over the kind and the three parts */
} rf_search_task;

/* Reads data (an array file or a prepared directory; labels and subjects files may be NULL),
 * applies o->input, and splits: with subject ids (>= 3 distinct) a seeded shuffle of the
 * subjects gives round(test_frac * m) test subjects (at least 1 when test_frac > 0) and
 * round(val_frac * rest) validation subjects (at least 1), otherwise the same on rows.
 * Classification needs labels. Errors name the file and what is wrong. */
int rf_search_task_load(const char *data, const char *labels, const char *subjects,
                        const rf_search_task_opts *o, rf_search_task *t, rf_err *e);
/* Built-in tasks (no files): "ring" (8 Gaussians on a circle) and "moons", 2-D densities with
 * 3000 / 1000 / 2000 rows (tiny: 600 / 200 / 200); "eeg": simulated rest vs arithmetic EEG,
 * 8 channels at 64 Hz, 4 s windows, 12 subjects x 2 classes x 30 windows (tiny: 6 subjects x
 * 2 x 12), as 48 log band powers, classified across subjects (o->kind is ignored; the task is
 * classify). default_epochs: 12 (tiny: 3). */
int rf_search_task_builtin(const char *name, int tiny, const rf_search_task_opts *o,
                           rf_search_task *t, rf_err *e);
void rf_search_task_free(rf_search_task *t);
/* A one-line description: "density on built-in ring: 3000 train / 1000 val / 2000 test rows". */
void rf_search_task_describe(const rf_search_task *t, char *buf, size_t n);

/* ======================================================================================
 * Search spaces for a task
 * ====================================================================================== */

/* The default space of a task: rf_space_default_training + rf_space_default_architecture, less
 * what a trial does not use: ce-weight for density tasks, epochs when fixed_epochs > 0 (the budget is then fixed).
 * For windows (t->channels > 0) the architecture part is a tsflow space instead: blocks (1..6),
 * scales (1..the most the window length allows, at most 3), hidden {16, 32, 64},
 * hidden-layers (1..2), kernel {3, 5, 7}, dilation {1, 2}, coupling {affine, spline}, bins
 * (4..16, spline only), act, actnorm {on, off} (its blocks' permutation is always the LU 1x1). */
rf_space *rf_search_default_space(const rf_search_task *t, int fixed_epochs, rf_err *e);
/* Checks that a trial can apply every parameter of sp (names known to rf_space_apply) and every
 * value of each (each choice of a categorical, both ends of a range): RF_EARG naming `what`
 * (e.g. the space file), the parameter and the value otherwise. */
int rf_search_space_check(const rf_space *sp, const char *what, rf_err *e);
/* The space of morph studies: each trial records the architecture its flow ended up with:
 * flow (categorical), layers, blocks (conditioned layers), hidden (widest conditioner),
 * hidden-layers (deepest conditioner), params (log). */
rf_space *rf_search_morph_space(rf_err *e);
/* The summary of a flow in the morph space (c initialised here). */
int rf_search_morph_config(const rf_space *sp, const rf_flow *f, rf_config *c, rf_err *e);

/* ======================================================================================
 * Objectives
 * ====================================================================================== */

typedef enum {
    RF_METRIC_NLL = 0,    /* "val_nll": mean validation NLL (nats per row), minimised */
    RF_METRIC_F1 = 1,     /* "val_macro_f1": validation macro-F1 (classify), maximised */
    RF_METRIC_TIME = 2,   /* "train_seconds": wall-clock training time, minimised */
    RF_METRIC_PARAMS = 3  /* "n_params": parameters of the flow, minimised */
} rf_search_metric;
#define RF_SEARCH_N_METRICS 4
const char *rf_search_metric_name(rf_search_metric m); /* the study's objective name */

/* Parses "nll", "f1", "nll,time", "f1,params", ... (words nll | f1 | time | params, each at
 * most once, the first one nll or f1; f1 needs a classification task). RF_EARG naming the word
 * otherwise. Fills metrics and the study objectives (names and directions). */
int rf_search_objectives_parse(const char *text, rf_task_kind kind, rf_search_metric *metrics,
                               int *n, rf_objective *objectives, rf_err *e);
/* The metrics of an existing study's objectives (RF_EFORMAT when a name is not one of ours). */
int rf_search_objectives_of_study(const rf_study *st, rf_search_metric *metrics, int *n,
                                  rf_err *e);

/* ======================================================================================
 * The trial objective
 * ====================================================================================== */

typedef struct rf_search_job {
    const rf_search_task *task;
    const rf_space *space;
    int n_metrics;
    rf_search_metric metrics[RF_MAX_OBJECTIVES];
    rf_flow_spec base_spec;    /* defaults before the configuration is applied (D and classes
                                  are set from the task) */
    rf_train_cfg base_train;   /* defaults: epochs (when the space has no "epochs" parameter and
                                  the trial no budget), threads, patience, ... progress off */
    const char *out_dir;       /* OUT/trials/trial-<n>.rf and OUT/best.rf; NULL: no files */
    size_t max_params;         /* a configuration with more parameters fails (0: no limit) */
    const char *study_name;    /* recorded in each model's meta (may be NULL) */
    int verbose;               /* one line per trial on stderr with the trial's configuration */
} rf_search_job;

/* base_spec: nsf defaults for the task's dimension (a tsflow shape for windows), class base for
 * classification; base_train: rf_train_cfg_default with the task's default_epochs (when set),
 * 2 threads, no progress. */
void rf_search_job_init(rf_search_job *j, const rf_search_task *t, const rf_space *sp,
                        const rf_search_metric *metrics, int n_metrics);
/* Creates out_dir and out_dir/trials when missing. */
int rf_search_job_prepare(const rf_search_job *j, rf_err *e);

/* The flow spec and training settings of a configuration (rf_space_apply on the job's
 * defaults; a tsflow takes the task's window shape first). RF_EARG for a parameter it cannot
 * apply. */
int rf_search_job_settings(const rf_search_job *j, const rf_config *c, double budget,
                           rf_flow_spec *spec, rf_train_cfg *tc, rf_err *e);

/* rf_objective_fn: ctx is an rf_search_job. Builds the flow from t->cfg (seed t->seed, epochs
 * t->budget when > 0), trains it, reports the validation NLL of every epoch (steps 1..epochs),
 * and fills r->values in the job's metric order. A configuration that cannot be built, diverges
 * or gives a non-finite score is r->status = RF_TRIAL_FAILED with the reason; only I/O errors
 * (the trial's model file) stop the search. */
int rf_search_objective(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r,
                        rf_err *e);

/* An intermediate value of a trial (step: the epoch, from 1; value: its validation NLL). */
typedef int (*rf_search_report_fn)(void *rctx, long step, double value, rf_err *e);
/* The objective's work without a study (rf_search_objective and the MPI workers share it): builds
 * the flow of t (seed t->seed, epochs t->budget when > 0), trains it, reports each epoch's
 * validation NLL through report (may be NULL) and fills r (status preset COMPLETE): values in the
 * job's metric order, or FAILED with the reason. For a complete trial, *model (model may be NULL)
 * receives the trained flow, its meta set as the train command records it plus "search" naming
 * study_path and study_name; the caller frees it. Non-zero only when report fails. */
int rf_search_trial_train(const rf_search_job *j, const rf_trial *t, const char *study_path, const char *study_name,
                          rf_search_report_fn report, void *rctx, rf_eval_result *r, rf_flow **model, rf_err *e);

/* The meta of a search's model (replacing what was there): what the train command records (data
 * source, rows, input transform, class counts, standardisation, epochs, batch, lr, seed, date)
 * and "search": study path and name, task fingerprint, trial, configuration, budget, values (and
 * "morphs" when given). tc, t, values and morphs may be NULL. */
void rf_search_set_meta(const rf_search_job *j, rf_flow *f, const char *study_path, const char *study_name,
                        const rf_trial *t, const rf_train_cfg *tc, const double *values, const char *morphs);

/* Trains and scores one flow as the objective does (used for the parent of a morph search).
 * values: n_metrics values; f is replaced by the trained flow. */
int rf_search_train_eval(const rf_search_job *j, rf_flow *f, const rf_train_cfg *tc,
                         double *values, rf_train_result *res, rf_err *e);
/* Scores a trained flow on the validation rows (train_seconds supplies the time metric). */
int rf_search_score(const rf_search_job *j, const rf_flow *f, double val_nll, double train_seconds,
                    double *values, rf_err *e);
/* Saves f as OUT/trials/trial-<number>.rf and, when it becomes the study's incumbent
 * (rf_study_incumbent: the best first value among the trials of the largest budget, budget 0
 * counting as the largest; so for studies without budgets the best complete trial), as
 * OUT/best.rf. meta gains "search" (study, trial, config, values). Nothing when out_dir is NULL. */
int rf_search_keep_model(const rf_search_job *j, rf_study *st, const rf_trial *t, rf_flow *f,
                         const double *values, rf_err *e);
/* Path of a trial's model file. */
void rf_search_trial_path(const char *out_dir, int number, char *buf, size_t n);

/* Makes OUT/best.rf the model of the study's incumbent (rf_study_incumbent, objective 0; the
 * best complete trial when no trial has a budget), copying OUT/trials/trial-<n>.rf atomically
 * (after checking that it loads). *best_number = -1 (and RF_OK) when no trial completed;
 * RF_EIO when the trial's file is missing. */
int rf_search_sync_best(rf_study *st, const char *out_dir, int *best_number, rf_err *e);

/* The trial of the default configuration (rf_config_default of the study's space) with the
 * lowest number that completed, or NULL; in a morph study (sampler "morph") the first complete
 * trial (the start flow). From the study's cache (refresh first). */
const rf_trial *rf_search_default_trial(rf_study *st);

/* Scores a trained flow on the task's test rows: {"rows", "nll", "bits_per_dim"} and for
 * classification the metrics of rf_class_metrics_to_json (uniform class prior). NULL + error
 * when the task has no test rows. */
struct cJSON *rf_search_test_eval(const rf_search_task *t, const rf_flow *f, rf_err *e);

/* ======================================================================================
 * NASH-style morphism search stored as a study
 * ====================================================================================== */

typedef struct rf_search_morph_opts {
    int trials;            /* stop once the study holds this many trials (0: no limit) */
    double time_budget;    /* seconds (0: none) */
    int children;          /* children per round (4) */
    int morphs;            /* morphisms per child (1) */
    volatile int *stop_flag;
    int progress;
    uint64_t seed;
} rf_search_morph_opts;

/* A study in rf_search_morph_space. Fresh study: trains the default configuration of
 * `start_space` as trial 0 (the parent). Resumed study: the parent is the best complete trial's
 * model file. Then rf_morph_hillclimb rounds until the limits, every child (and the parent
 * trained further) stored as a trial with its summary configuration, values in the job's metric
 * order, intermediate values (step 0: before training, step 1: after) and its model file.
 * job->space must be the study's (morph) space. */
int rf_search_morph_run(rf_study *st, const rf_search_job *job, const rf_space *start_space,
                        const rf_search_morph_opts *o, int *n_run, rf_err *e);

/* ======================================================================================
 * Reports
 * ====================================================================================== */

/* Optimisation history: trial number on x, each trial's value (complete: blue points; pruned:
 * grey, at their last intermediate value), the best-so-far line (direction-aware), failed trials
 * as red crosses along the bottom. With 5 or more finite values, values on the bad side beyond
 * 3 interquartile ranges from the quartile (minimising: > Q3 + 3 IQR; maximising: < Q1 - 3 IQR)
 * are drawn as triangles at that edge, with a note, so the bulk stays readable.
 * status: RF_TRIAL_* per trial. n >= 1. */
int rf_plot_search_history(const char *path, const char *title, const int *number,
                           const double *value, const int *status, int n, rf_direction dir,
                           const char *ylabel, rf_err *e);
/* The architecture of f as a block diagram: one row per block (ActNorm, linear/permutation,
 * coupling or autoregressive layer, each a box with its kind, transform and conditioner widths
 * such as "MLP 1 -> 64 -> 64 -> 23, relu"), squeezes of a tsflow as scale separators, the data
 * dimension on top and the base distribution at the bottom. title may be NULL. */
int rf_plot_architecture(const char *path, const char *title, const rf_flow *f, rf_err *e);

/* fANOVA of the study's complete trials for objective k (the configuration encoded with
 * rf_space_encode; categorical parameters as categories). Needs >= 2 complete trials with
 * different values. names (the space's parameter names) stay valid while st is open. */
int rf_study_importance(rf_study *st, int k, const rf_fanova_opts *o, rf_importance *imp,
                        rf_err *e);
/* Pareto figure of objectives 0 and 1 of the complete trials. RF_EARG for a single-objective
 * study. front/n_front (may be NULL): trial numbers on the front (malloc'd). */
int rf_study_plot_pareto(rf_study *st, const char *path, int **front, int *n_front, rf_err *e);

/* Every finished trial (number, status, values, duration, config, sampler, error, budget,
 * host, pid) and the counts by status, as JSON. */
struct cJSON *rf_study_to_json(rf_study *st, rf_err *e);

/* Writes DIR/history.{svg,png}, DIR/importance.{svg,png} (when the study allows it),
 * DIR/pareto.{svg,png} (two or more objectives), DIR/architecture.{svg,png} (when model_path
 * names a readable model file) and DIR/report.json (study, counts, best trial, importance,
 * Pareto front, figures written and why any was skipped; `extra` (may be NULL) is added as
 * "search"). *out (may be NULL) receives a copy of the report. DIR is created when missing. */
int rf_search_report_write(rf_study *st, const char *dir, const char *model_path,
                           const struct cJSON *extra, struct cJSON **out, rf_err *e);

#endif
