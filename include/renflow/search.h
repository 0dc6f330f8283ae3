/* renflow search: search spaces, configurations, studies stored in SQLite, samplers (random,
 * TPE) and benchmark functions.
 *
 * A search space is a list of parameters (float, int, categorical), some of them conditional on
 * another (categorical or int) parameter. A configuration holds one value per parameter plus an
 * active flag; inactive parameters have no value. A study (one SQLite file, WAL mode) stores the
 * space, the objectives and every trial; several processes may work on one study at once, and a
 * process killed with SIGKILL loses only the trial it was running (rf_study_requeue_stale marks
 * it failed and can queue its configuration again).
 *
 * Typical use (a worker loop; rf_study_optimize does this with progress on stderr):
 *
 *     rf_space *sp = rf_space_load("space.json", &e);      // or rf_space_default_training()
 *     rf_study_def d = {.name = "nll", .space = sp, .n_objectives = 1,
 *                       .objectives = {{"nll", RF_MINIMIZE}}, .sampler = "tpe", .seed = 1};
 *     rf_study *st = rf_study_open("study.db", &d, &e);   // creates or resumes
 *     rf_study_requeue_stale(st, 1, NULL, &e);            // trials of dead workers
 *     rf_tpe_opts o; rf_tpe_opts_default(&o);
 *     rf_sampler *s = rf_sampler_tpe_create(&o, &e);
 *     for (...) {
 *         rf_trial *t;
 *         rf_study_ask(st, s, &t, &e);                      // running row, unique number
 *         ... evaluate t->cfg, rf_study_report(st, t, step, value, &e) ...
 *         double v = ...; rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &e);
 *         rf_trial_free(t);
 *     }
 */
#ifndef RENFLOW_SEARCH_H
#define RENFLOW_SEARCH_H

#include "renflow/core.h"
#include "renflow/model.h"
#include "renflow/train.h"

struct cJSON;

/* ======================================================================================
 * Search spaces
 * ====================================================================================== */

#define RF_PARAM_NAME_MAX 64
#define RF_SPACE_MAX_PARAMS 256
#define RF_PARAM_MAX_CHOICES 1024

typedef enum { RF_PARAM_FLOAT = 0, RF_PARAM_INT = 1, RF_PARAM_CAT = 2 } rf_param_kind;
const char *rf_param_kind_name(rf_param_kind k); /* "float" | "int" | "categorical" */

/* One parameter. Read-only outside space.c. */
typedef struct rf_param {
    char name[RF_PARAM_NAME_MAX];
    rf_param_kind kind;
    int log;            /* float/int: log scale (low > 0; int: low >= 1) */
    double low, high;   /* float: low < high; int: integers, low <= high */
    /* categorical */
    int n_choices;
    char **choice_label;  /* every choice as text (a number in shortest round-trip form) */
    double *choice_num;   /* numeric value of each choice, NAN for a string choice */
    unsigned char *choice_is_num;
    /* condition: active only when parameter `parent` (an earlier one; categorical or int) is
     * active and takes one of the cond values (categorical: choice indices; int: values) */
    int parent;         /* -1: unconditional */
    int n_cond;
    double *cond;
    /* optional default value (internal representation, see rf_config); has_default = 0: none */
    int has_default;
    double def;
} rf_param;

typedef struct rf_space {
    char name[RF_PARAM_NAME_MAX];
    int n;
    rf_param *p;
} rf_space;

/* Parses the JSON format:
 *   {"name": "optional",
 *    "parameters": [
 *      {"name": "lr", "type": "float", "low": 1e-4, "high": 1e-2, "log": true, "default": 1e-3},
 *      {"name": "blocks", "type": "int", "low": 2, "high": 12},
 *      {"name": "flow", "type": "categorical", "choices": ["realnvp", "nsf"]},
 *      {"name": "batch", "type": "categorical", "choices": [64, 128, 256]},
 *      {"name": "bins", "type": "int", "low": 4, "high": 16,
 *       "condition": {"parent": "flow", "values": ["nsf"]}}]}
 * Every error names the source (file name or `what`), the parameter and the field/value;
 * unknown fields are errors (typos do not pass silently). A condition's parent must come
 * earlier in the list. */
rf_space *rf_space_from_json(const struct cJSON *j, const char *what, rf_err *e);
rf_space *rf_space_parse(const char *text, const char *what, rf_err *e);
rf_space *rf_space_load(const char *path, rf_err *e);
void rf_space_free(rf_space *sp);
rf_space *rf_space_clone(const rf_space *sp, rf_err *e);
/* Canonical JSON (every field, fixed order): the study stores it, and two spaces are the same
 * exactly when their canonical texts are equal. Caller frees (cJSON_Delete / free). */
struct cJSON *rf_space_to_json(const rf_space *sp);
char *rf_space_to_string(const rf_space *sp); /* unformatted canonical text, malloc'd */
/* RF_OK when equal; otherwise RF_EARG with a message naming the first differing parameter. */
int rf_space_compare(const rf_space *a, const rf_space *b, rf_err *e);
/* Index of a parameter (exact name), or -1. */
int rf_space_find(const rf_space *sp, const char *name);

/* Built-in spaces. Parameter names follow the `renflow train` options:
 * training: lr (log 1e-4..1e-2), batch {64,128,256,512}, weight-decay (log 1e-6..1e-2),
 *   schedule {constant,cosine}, warmup (0..0.2), epochs (int 5..100), clip (0.5..10),
 *   ce-weight (the hybrid loss weight lambda, log 0.01..100);
 * architecture: flow {realnvp,glow,nsf,maf}, blocks (int 2..12), hidden {32,64,128,256},
 *   hidden-layers (conditioner depth, int 1..3), act {relu,gelu,tanh}, bins (int 4..16, only
 *   when flow = nsf), permutation {reverse,lu,random}, actnorm {on,off}.
 * Defaults are the `renflow train` defaults. */
rf_space *rf_space_default_training(rf_err *e);
rf_space *rf_space_default_architecture(rf_err *e);
/* Concatenation (names must be unique); e.g. training + architecture. */
rf_space *rf_space_concat(const rf_space *a, const rf_space *b, const char *name, rf_err *e);

/* ======================================================================================
 * Configurations
 * ====================================================================================== */

/* Values in the internal representation: float -> value, int -> integer value (as double),
 * categorical -> choice index. active[i] = 0: parameter i is inactive (its condition fails);
 * v[i] is then NAN. */
typedef struct rf_config {
    int n;
    double *v;
    unsigned char *active;
} rf_config;

int rf_config_init(rf_config *c, const rf_space *sp, rf_err *e); /* all inactive, NAN */
void rf_config_free(rf_config *c);
int rf_config_copy(rf_config *dst, const rf_config *src, rf_err *e); /* dst initialised or zeroed */
/* Recomputes active flags from the conditions (in parameter order); inactive values -> NAN.
 * Values of active parameters are left as they are. */
void rf_config_update_active(const rf_space *sp, rf_config *c);
/* Checks every active value (in range, integral, valid index) and the active flags. */
int rf_config_check(const rf_space *sp, const rf_config *c, rf_err *e);
/* Configuration of the parameters' defaults (a parameter without "default": the middle of its
 * range in its scale, rounded for ints; categorical: the first choice). */
int rf_config_default(const rf_space *sp, rf_config *c, rf_err *e);
/* 1 when both have the same active parameters and values. */
int rf_config_equal(const rf_config *a, const rf_config *b);

/* JSON object {"name": value, ...} with only the active parameters; categorical values as
 * given in the space (string or number). */
struct cJSON *rf_config_to_json(const rf_space *sp, const rf_config *c);
char *rf_config_to_string(const rf_space *sp, const rf_config *c); /* malloc'd, unformatted */
/* Strict: every active parameter present and valid, no inactive or unknown key. c is
 * initialised here (free with rf_config_free). */
int rf_config_from_json(const rf_space *sp, const struct cJSON *j, rf_config *c, rf_err *e);
int rf_config_parse(const rf_space *sp, const char *text, rf_config *c, rf_err *e);

/* Unit-hypercube encoding for samplers and fANOVA: float/int -> (log-)scaled to [0, 1] (ints
 * over [low - 0.5, high + 0.5], so uniform u decodes to uniform integers); categorical -> the
 * choice index (0..n_choices-1) as a double; inactive -> NAN. u has sp->n entries. */
void rf_space_encode(const rf_space *sp, const rf_config *c, double *u);
/* Inverse: u (values as rf_space_encode gives; numeric entries clamped to [0, 1], categorical
 * rounded and clamped) -> c (initialised), then active flags from the conditions. */
void rf_space_decode(const rf_space *sp, const double *u, rf_config *c);
/* 1 when parameter i is encoded as a category index. */
static inline int rf_space_is_categorical(const rf_space *sp, int i) { return sp->p[i].kind == RF_PARAM_CAT; }

/* Value access by name. number: float/int value, or a numeric category; choice: the label of a
 * categorical (any categorical), or the printed number of a float/int. Errors name the
 * parameter and say when it is missing or inactive. */
int rf_config_get_number(const rf_space *sp, const rf_config *c, const char *name, double *out, rf_err *e);
int rf_config_get_choice(const rf_space *sp, const rf_config *c, const char *name, const char **out, rf_err *e);
/* Sets one value by name (number for float/int, choice label for categorical; NULL label with
 * a categorical uses `number` to match a numeric choice), then updates the active flags. */
int rf_config_set(const rf_space *sp, rf_config *c, const char *name, double number, const char *label, rf_err *e);

/* Applies a configuration to a flow spec and a training configuration (either may be NULL).
 * Names are matched with '_' read as '-', and these aliases: lambda = ce-weight,
 * flow-type = flow, conditioner-depth = hidden-layers, activation = act, warmup-frac = warmup.
 * Known names: lr, batch, weight-decay, schedule (constant|cosine), warmup, epochs, clip,
 * ce-weight, patience; flow, blocks, hidden, hidden-layers, act, bins, bound, clamp, residual
 * (on|off|0|1), scales, kernel, dilation, coupling (affine|spline), permutation
 * (lu|reverse|random|none|default: rf_perm_kind), actnorm (on|off).
 * Active parameters whose names rf_flow_spec / rf_train_cfg cannot express (e.g. a benchmark's
 * x1) are listed comma-separated in `unapplied` (may be NULL), so a
 * caller can warn or refuse. Inactive parameters are skipped. A value that does not fit the
 * target field (a non-integer for blocks, an unknown flow type) is an error naming both. */
int rf_space_apply(const rf_space *sp, const rf_config *c, rf_flow_spec *spec, rf_train_cfg *tc,
                   char *unapplied, size_t unapplied_len, rf_err *e);

/* ======================================================================================
 * Trials and studies
 * ====================================================================================== */

#define RF_MAX_OBJECTIVES 8

typedef enum {
    RF_TRIAL_QUEUED = 0,   /* waiting: the next ask takes it first (re-queued or enqueued) */
    RF_TRIAL_RUNNING = 1,
    RF_TRIAL_COMPLETE = 2,
    RF_TRIAL_FAILED = 3,
    RF_TRIAL_PRUNED = 4
} rf_trial_status;
#define RF_TRIAL_NSTATUS 5
const char *rf_trial_status_name(rf_trial_status s);
int rf_trial_status_parse(const char *s, rf_trial_status *out);

typedef enum { RF_MINIMIZE = 0, RF_MAXIMIZE = 1 } rf_direction;

typedef struct rf_objective {
    char name[RF_PARAM_NAME_MAX];
    rf_direction direction;
} rf_objective;

typedef struct rf_trial {
    long id;           /* row id in the study file */
    int number;        /* 0, 1, 2, ... in the order trials were claimed; -1 while queued */
    rf_trial_status status;
    rf_config cfg;
    uint64_t seed;     /* derived from the study seed and the number: the trial's training seed */
    double budget;     /* e.g. epochs for multi-fidelity; 0 = full */
    int n_values;
    double values[RF_MAX_OBJECTIVES];
    long last_step;    /* last intermediate value (step, value) of a finished trial; -1: none */
    double last_value;
    int lost;          /* failed because its worker died (not the configuration's fault) */
    int requeued_from; /* number of the trial this one re-runs, -1 if none */
    char *error;       /* failure / pruning reason, or NULL */
    char host[64];
    long pid;
    double started, finished, duration; /* Unix seconds; duration in seconds (wall clock) */
    char sampler[32];  /* what produced the configuration: the sampler's name ("tpe", "random"),
                          "enqueued" (rf_study_enqueue), "requeued" (a dead worker's trial
                          again) or "fixed" (rf_study_ask_fixed) */
} rf_trial;
void rf_trial_free(rf_trial *t); /* frees a trial returned by rf_study_ask* */

/* A read-only view of finished trials for samplers (order: by number). Callers may filter
 * (e.g. one budget for multi-fidelity) by building their own items array. */
typedef struct rf_history {
    int n;
    const rf_trial *const *items;
    int n_objectives;
    rf_direction directions[RF_MAX_OBJECTIVES];
} rf_history;

/* ---- samplers ---- */
typedef struct rf_sampler rf_sampler;
typedef struct rf_sampler_ops {
    const char *name;
    /* Draws a configuration (out initialised by the caller with rf_config_init) given the
     * finished trials; all randomness comes from rng. */
    int (*sample)(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng,
                  rf_config *out, rf_err *e);
    void (*destroy)(rf_sampler *s);
} rf_sampler_ops;
struct rf_sampler {
    const rf_sampler_ops *ops;
    void *impl;
};
int rf_sampler_sample(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng,
                      rf_config *out, rf_err *e);
const char *rf_sampler_name(const rf_sampler *s);
void rf_sampler_free(rf_sampler *s);

/* Uniform over the space (log scale for log parameters), conditions applied. */
rf_sampler *rf_sampler_random_create(rf_err *e);
void rf_space_sample_uniform(const rf_space *sp, rf_rng *rng, rf_config *out);

/* Tree-structured Parzen estimator (Bergstra et al. 2011), with Optuna's defaults except the
 * multivariate bandwidth (Scott's rule on the observations' spread; see bandwidth_rule).
 * Complete trials rank first by value, pruned ones after them by their last intermediate value
 * (later steps first); failed and running trials are ignored. Multi-objective histories are
 * split by non-domination rank (ties at the boundary by normalised value sum; no hypervolume
 * subset selection as in Optuna's MOTPE). A parameter (univariate) or group of parameters
 * (multivariate) is estimated from the trials where it is active: the good/bad split
 * gamma(n) counts those trials only, and below n_startup_trials of them it is drawn at random.
 * Cost per sample at 1000 trials: ~1 ms (6 floats) to ~2.5 ms (16 mixed, conditional) CPU. */
typedef struct rf_tpe_opts {
    int n_startup_trials;  /* random until this many usable observations (10) */
    int n_ei_candidates;   /* candidates drawn from l(x) (24) */
    double prior_weight;   /* weight of the prior kernel (1.0) */
    int magic_clip;        /* minimum bandwidth (high - low) / min(100, 1 + n_kernels) (1) */
    int consider_endpoints;/* 0 as Optuna */
    int multivariate;      /* joint KDE over the parameters of a group (1) */
    int group;             /* with multivariate: decompose into groups of parameters that are
                              always active together (conditional spaces) (1) */
    int gamma_cap;         /* gamma(n) = min(ceil(gamma_frac * n), gamma_cap)  (25) */
    double gamma_frac;     /* (0.1) */
    /* 0 (default): each continuous kernel is a normalised truncated Gaussian (current Optuna).
     * 1: its density is not divided by its bandwidth, so wider kernels weigh more, as in
     * Optuna < 3.5 (optuna issue #5109, fixed by PR #5110), e.g. Debian's python3-optuna 3.1. */
    int sd_weighted_kernels;
    /* (appended) Bandwidth of the multivariate kernels of n observations in a group of G
     * parameters, per parameter j: RF_TPE_BW_SCOTT (default): Scott's rule on the observations'
     * own spread, sd_j * n^(-1/(G+4)) (sd_j: their sample standard deviation on the transformed
     * scale; with n < 2 the Optuna rule); RF_TPE_BW_OPTUNA: Optuna's fixed
     * 0.2 * (high - low) * n^(-1/(G+4)). Both then magic-clipped. Univariate TPE keeps Optuna's
     * neighbour rule. See bench/SEARCH_RESULTS.md for why Scott is the default. */
    int bandwidth_rule;
} rf_tpe_opts;
#define RF_TPE_BW_SCOTT 0
#define RF_TPE_BW_OPTUNA 1
void rf_tpe_opts_default(rf_tpe_opts *o);
rf_sampler *rf_sampler_tpe_create(const rf_tpe_opts *o, rf_err *e);
/* By name: "random" | "tpe" (defaults) | "tpe-univariate" | "tpe-optuna" (Optuna >= 3.5:
 * multivariate with Optuna's bandwidth rule) | "tpe-sdw" (Optuna < 3.5, e.g. Debian's 3.1:
 * Optuna's bandwidth rule and sd_weighted_kernels) | "tpe-univariate-sdw"; also the
 * multi-fidelity samplers (see below); NULL + error otherwise. */
rf_sampler *rf_sampler_create(const char *name, rf_err *e);

/* ---- studies ---- */
typedef struct rf_study rf_study;

typedef struct rf_study_def {
    const char *name;          /* NULL: "study" */
    const rf_space *space;
    int n_objectives;          /* 1..RF_MAX_OBJECTIVES */
    rf_objective objectives[RF_MAX_OBJECTIVES];
    const char *sampler;       /* recorded (NULL: "") */
    uint64_t seed;
} rf_study_def;

/* A handle belongs to one thread of one process: open it after fork(), never carry it across.
 * Creates the study file, or opens an existing one. With def == NULL the file must already
 * hold a study. Reopening with a different space or different objectives is an error naming
 * the difference; the stored seed, name and sampler win (see rf_study_seed). */
rf_study *rf_study_open(const char *path, const rf_study_def *def, rf_err *e);
void rf_study_close(rf_study *st);
const rf_space *rf_study_space(const rf_study *st);
const char *rf_study_name(const rf_study *st);
const char *rf_study_sampler_name(const rf_study *st);
const char *rf_study_path(const rf_study *st);
uint64_t rf_study_seed(const rf_study *st);
int rf_study_n_objectives(const rf_study *st);
const rf_objective *rf_study_objective(const rf_study *st, int k);
double rf_study_created(const rf_study *st); /* Unix seconds */

/* Claims the next trial inside one BEGIN IMMEDIATE transaction: the oldest queued trial if
 * there is one, otherwise a new configuration from the sampler (rng seeded from the study seed
 * and the trial number, so a resumed single-process study draws what an uninterrupted one
 * would). The trial gets the next number and status running (host, pid, start time).
 * max_trials > 0: *t = NULL (and RF_OK) once the study holds that many trials counted for the
 * budget (all numbered trials except those lost with a dead worker). */
int rf_study_ask(rf_study *st, rf_sampler *s, rf_trial **t, rf_err *e);
int rf_study_ask_limit(rf_study *st, rf_sampler *s, int max_trials, rf_trial **t, rf_err *e);
/* A running trial with a given configuration and budget (multi-fidelity promotions). */
int rf_study_ask_fixed(rf_study *st, const rf_config *c, double budget, rf_trial **t, rf_err *e);
/* Adds a queued trial (e.g. the default configuration, to be evaluated first). */
int rf_study_enqueue(rf_study *st, const rf_config *c, double budget, rf_err *e);
/* Finishes a running trial: complete (values: n_objectives finite numbers), failed or pruned
 * (reason may be NULL). Fails with RF_ESTATE if the trial is no longer running (e.g. it was
 * declared dead), so a result is never counted twice. Updates t. */
int rf_study_tell(rf_study *st, rf_trial *t, rf_trial_status status, const double *values,
                  int n_values, const char *reason, rf_err *e);
/* Intermediate value (step, value) of a running trial; a repeated step overwrites. */
int rf_study_report(rf_study *st, const rf_trial *t, long step, double value, rf_err *e);
/* Intermediate values of trial `number`, by step (malloc'd arrays; *n may be 0). */
int rf_study_intermediate(rf_study *st, int number, long **steps, double **values, int *n, rf_err *e);
/* Marks the running trial `number` failed and lost with `reason` (e.g. an MPI rank died) and,
 * with requeue, queues its configuration again. */
int rf_study_fail_lost(rf_study *st, int number, const char *reason, int requeue, rf_err *e);
/* Running trials of this host whose process is gone (kill(pid, 0) fails with ESRCH, or the
 * pid now belongs to a process started later) are marked failed and lost ("worker died");
 * with requeue their configurations are queued again. *n_marked (may be NULL) = how many. */
int rf_study_requeue_stale(rf_study *st, int requeue, int *n_marked, rf_err *e);

/* Finished trials (complete, pruned, failed), read incrementally from the file and cached in
 * the handle; ordered by number. Pointers stay valid until the next refresh or close. */
int rf_study_refresh(rf_study *st, rf_err *e);
int rf_study_n_finished(const rf_study *st);
const rf_trial *rf_study_finished(const rf_study *st, int i);
/* History view of the cached finished trials (complete and pruned; failed are left out).
 * items is malloc'd into *h (free with rf_history_free). */
int rf_study_history(rf_study *st, rf_history *h, rf_err *e);
void rf_history_free(rf_history *h);
/* Counts of trials by status (index rf_trial_status), from the file. */
int rf_study_counts(rf_study *st, int counts[RF_TRIAL_NSTATUS], rf_err *e);
/* Best complete trial for objective k (NULL if none); from the cache (refresh first). */
const rf_trial *rf_study_best(const rf_study *st, int k);

/* ---- optimisation loop ---- */
typedef struct rf_eval_result {
    rf_trial_status status;           /* COMPLETE (preset), FAILED or PRUNED; QUEUED = not
                                         evaluated (interrupted): the trial is given back */
    double values[RF_MAX_OBJECTIVES]; /* n_objectives values for COMPLETE */
    char reason[256];                 /* FAILED / PRUNED */
} rf_eval_result;
/* Evaluates trial t (its config, seed, budget); may call rf_study_report. Returns RF_OK, or an
 * error that stops the loop (the trial is marked failed with the message). A trial-level
 * failure (divergence, bad configuration) is r->status = RF_TRIAL_FAILED with a reason. */
typedef int (*rf_objective_fn)(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r,
                               rf_err *e);

typedef struct rf_optimize_opts {
    int n_trials;        /* trials to run in this call (0: no limit) */
    int max_total;       /* stop once the study holds this many trials (0: no limit);
                            checked atomically in ask, so concurrent workers share it */
    double time_budget;  /* seconds (0: none): no new trial after this */
    int progress;        /* lines on stderr */
    int requeue_stale;   /* first re-queue dead workers' trials (1) */
    volatile int *stop_flag; /* set (e.g. by SIGINT): stop after the current trial */
    /* multi-fidelity samplers (rf_sampler_is_multifidelity): stop once the budgets of the
     * study's trials (budget 0 counted as the sampler's max_budget; lost trials not counted) add
     * up to this (0: no limit); checked under the planner's lock, so concurrent workers share it
     * (the last trial may overshoot by at most one budget) */
    double max_total_budget;
} rf_optimize_opts;
void rf_optimize_opts_default(rf_optimize_opts *o);
typedef struct rf_optimize_result {
    int n_run, n_complete, n_failed, n_pruned;
    double seconds;
    int best_number;     /* over the whole study, objective 0; -1 if none (multi-fidelity
                            samplers: rf_study_incumbent, the best at the largest budget) */
    double best_value;
    double budget_used;  /* sum of the budgets of the trials run in this call (0 for trials
                            without a budget) */
} rf_optimize_result;
int rf_study_optimize(rf_study *st, rf_sampler *s, rf_objective_fn fn, void *ctx,
                      const rf_optimize_opts *o, rf_optimize_result *res, rf_err *e);

/* ======================================================================================
 * Benchmark functions (minimisation) on their standard domains
 * ====================================================================================== */
typedef struct rf_testfunc {
    const char *name;       /* "branin", "hartmann6" */
    int dim;                /* parameters x1..x<dim> */
    double fmin;            /* known global minimum */
    const double *argmin;   /* one minimiser (dim values) */
    const char *space_json; /* the domain as a space file */
    double (*f)(const double *x);
} rf_testfunc;
double rf_branin(const double *x);    /* x1 in [-5, 10], x2 in [0, 15]; min 0.397887 */
double rf_hartmann6(const double *x); /* [0, 1]^6; min -3.32237 */
const rf_testfunc *rf_testfunc_find(const char *name); /* NULL if unknown */
rf_space *rf_testfunc_space(const rf_testfunc *tf, rf_err *e);
/* Evaluates tf at a configuration of its space (parameters x1..x<dim>). */
int rf_testfunc_eval(const rf_testfunc *tf, const rf_space *sp, const rf_config *c, double *out,
                     rf_err *e);

/* ======================================================================================
 * Multi-fidelity search: successive halving (ASHA), Hyperband and BOHB, with the budget (e.g.
 * training epochs) stored per trial. (Appended for issue 4; sampler_hyperband.c, sampler_bohb.c.)
 *
 * Two ways to use a budget:
 *  - promotions (rf_sampler_ask, and rf_study_optimize with such a sampler): every trial runs one
 *    configuration at one budget (t->budget; the objective trains for that many epochs); the
 *    planner starts new configurations on the lowest rung and promotes the best 1/eta of a rung to
 *    the next budget as new trials of the same configuration;
 *  - pruning (rf_pruner): every trial runs to the full budget, reports intermediate values with
 *    rf_pruner_report (which calls rf_study_report) and stops early when it is not among the best
 *    1/eta of the values reported at the same rung step.
 *
 * Budgets (Li et al. 2018, Algorithm 1): with R = max_budget / min_budget, s_max =
 * floor(log_eta R); bracket s (s_max, s_max - 1, ..., 0, then again) starts
 * n = ceil((s_max + 1) / (s + 1) * eta^s) configurations at budget max_budget * eta^-s and keeps
 * n_i = floor(n * eta^-i) of them at budget max_budget * eta^(i - s), i = 0..s. ASHA uses the
 * rungs of bracket s_max, with no limit on the number of configurations.
 * ====================================================================================== */

#define RF_MF_MAX_RUNGS 16

typedef struct rf_mf_bracket {
    int s;                          /* rungs - 1 */
    int n_rungs;
    int n[RF_MF_MAX_RUNGS];         /* configurations on each rung */
    double budget[RF_MF_MAX_RUNGS]; /* budget of each rung (increasing; the last is max_budget) */
} rf_mf_bracket;
/* Hyperband's brackets in the order iterations run them (out[0]: s = s_max, the most
 * aggressive). integer_budgets rounds every budget to the nearest integer (epochs); budgets that
 * then coincide are an error (use a larger eta or range). max_out >= s_max + 1 (at most
 * RF_MF_MAX_RUNGS). */
int rf_hyperband_brackets(double min_budget, double max_budget, double eta, int integer_budgets,
                          rf_mf_bracket *out, int max_out, int *n_out, rf_err *e);

typedef enum { RF_MF_ASHA = 0, RF_MF_HYPERBAND = 1 } rf_mf_kind;

typedef struct rf_mf_opts {
    rf_mf_kind kind;
    double min_budget;      /* 1 */
    double max_budget;      /* 27 */
    double eta;             /* 3 */
    int integer_budgets;    /* 1: budgets are whole numbers (epochs) */
    /* Hyperband: 0 (default) promotes once a rung is finished, exactly its best
     * min(n_(i+1), complete) configurations; meanwhile other workers start the next bracket.
     * 1: asynchronous inside each bracket (a finished configuration among the best
     * floor(finished / eta) of its rung moves up at once, up to n_(i+1)). ASHA is always
     * asynchronous. */
    int asynchronous;
    /* New configurations: 0 uniformly at random; 1 (BOHB, Falkner et al. 2018) a fraction
     * random_fraction at random, the others from TPE fitted on the complete trials of the largest
     * budget that holds at least min_points_in_model + 2 of them (random while none does). */
    int model;
    double random_fraction;  /* 1/3 */
    int min_points_in_model; /* 0: number of parameters + 1 */
    rf_tpe_opts tpe;         /* the model's TPE (defaults with gamma_frac 0.15, as BOHB's top 15%) */
} rf_mf_opts;
/* kind RF_MF_ASHA or RF_MF_HYPERBAND, random new configurations; BOHB = RF_MF_HYPERBAND with
 * model = 1. */
void rf_mf_opts_default(rf_mf_opts *o, rf_mf_kind kind);
rf_sampler *rf_sampler_mf_create(const rf_mf_opts *o, rf_err *e);
/* rf_sampler_create also knows "asha", "hyperband", "hyperband-async", "bohb", "bohb-async" and
 * "asha-tpe" (ASHA with BOHB's model), with the defaults above. */
int rf_sampler_is_multifidelity(const rf_sampler *s);
const rf_mf_opts *rf_sampler_mf_opts(const rf_sampler *s); /* NULL for other samplers */
/* Changes the budgets of a multi-fidelity sampler (before its first use on a study). */
int rf_sampler_mf_set_budgets(rf_sampler *s, double min_budget, double max_budget, double eta, rf_err *e);

/* What rf_sampler_ask handed out. */
typedef struct rf_mf_info {
    int bracket;          /* Hyperband iteration of the job (0, 1, ...; ASHA: 0); -1: not a
                             planned job (a queued trial, or not a multi-fidelity sampler) */
    int bracket_s;        /* s of that bracket */
    int rung;             /* 0: a new configuration */
    double budget;        /* the trial's budget */
    int promoted_from;    /* number of the complete trial one rung lower; -1 for new ones */
    int reissued;         /* 1: the job's trial was lost with its worker; run again */
    double model_budget;  /* BOHB: budget of the observations the TPE model was fitted on;
                             NAN: drawn at random (or not new) */
    int model_n;          /* observations at model_budget */
    double total_budget;  /* budgets of the study's counted trials, this one included */
} rf_mf_info;

/* Claims the next trial of a study for sampler s. Other samplers: rf_study_ask_limit (budget 0).
 * Multi-fidelity samplers: under an exclusive lock (flock on the file STUDY-mf.lock next to the
 * study, so several processes can share the study) the planner reads every trial of the file
 * (running and queued ones included) and then, in this order: claims a queued trial (re-queued
 * work of a dead worker, or rf_study_enqueue); runs again a job whose trial was lost; promotes
 * (the oldest bracket first, the highest rung first); or starts a new configuration on the lowest
 * rung of the current bracket (opening the next bracket when it is full). Promotions and new
 * configurations are rf_study_ask_fixed trials, so a configuration never runs twice at one
 * budget. Trials of the planner are those with sampler "fixed"; other trials of the study (e.g.
 * enqueued, or budget 0 = max_budget) only inform BOHB's model. max_trials > 0 and
 * max_total_budget > 0 are limits on the study's counted trials (as rf_study_ask_limit) and on
 * the sum of their budgets: *t = NULL (RF_OK) once reached. Promotions use objective 0. A trial
 * whose worker died stays running (a synchronous rung waits for it) until rf_study_requeue_stale
 * marks it lost (rf_study_optimize does at its start); then it is run again. info may be NULL. */
int rf_sampler_ask(rf_sampler *s, rf_study *st, int max_trials, double max_total_budget, rf_trial **t,
                   rf_mf_info *info, rf_err *e);

/* The best complete trial (objective k) among those with the largest budget that holds a complete
 * trial (budget 0 counts as the largest): Hyperband's incumbent. NULL if none. From the cache
 * (rf_study_refresh first). */
const rf_trial *rf_study_incumbent(const rf_study *st, int k);

/* ---- pruning by intermediate values ---- */
typedef struct rf_pruner rf_pruner;
/* o->kind RF_MF_ASHA: rung steps are the budgets of bracket s_max (successive halving as
 * Optuna's SuccessiveHalvingPruner); RF_MF_HYPERBAND: trial number n belongs to a bracket
 * (round robin weighted by the brackets' sizes) and meets only the trials of its bracket at its
 * bracket's rung steps (as Optuna's HyperbandPruner). Rung steps are the budgets rounded up to
 * whole steps; trials report at least at those steps. */
rf_pruner *rf_pruner_create(const rf_mf_opts *o, rf_err *e);
void rf_pruner_free(rf_pruner *p);
/* Bracket (index into the rf_hyperband_brackets order) of trial `number`; 0 for ASHA. */
int rf_pruner_bracket(const rf_pruner *p, int number);
/* Stores (step, value) of running trial t (rf_study_report) and decides: at a rung step below
 * the top, *prune = 1 unless value is among the best floor(c / eta) of the c values reported at
 * that step by trials of the same bracket (this one included; with c < eta only the best goes
 * on). A non-finite value is pruned. The caller then tells the trial pruned. */
int rf_pruner_report(rf_pruner *p, rf_study *st, const rf_trial *t, long step, double value, int *prune,
                     rf_err *e);

#endif
