/* renflow supernet: gradient-based (DARTS) and weight-sharing (ENAS) architecture search over the
 * conditioners of coupling flows.
 *
 * The supernet is a dense coupling flow for vector data (D dimensions, B blocks) with the block
 * layout of the flow types it mirrors:
 *   realnvp: ActNorm + coupling (parity b % 2)
 *   glow:    ActNorm + LU 1x1 + affine coupling (parity 0)
 *   nsf:     ActNorm + LU 1x1 + rational-quadratic spline coupling (parity 0)
 * Each coupling's conditioner is MIXED: K candidate operations, each an rf_mlp with its own
 * configuration (depth, width, activation, residual) or the zero op, and
 *     theta_b(x_a) = sum_k w_bk mlp_bk(x_a),   w_b = softmax(alpha_b)
 * (Liu, Simonyan & Yang 2019). The conditioner only reads the untouched half x_a, so every
 * block stays invertible whatever alpha is, with the exact inverse and log-determinant of the
 * coupling transform. Every candidate's last layer is zero-initialised: a fresh supernet's
 * couplings are the identity.
 *
 * The supernet is an ordinary rf_flow (rf_supernet.flow) whose parameter buffer holds the
 * architecture parameters too: block b's alpha (K floats) sits at flow->params[alpha_off[b]],
 * followed by the K candidates' weights. rf_flow_forward / inverse / log_prob / loss_grad /
 * sample all work on it; rf_flow_loss_grad fills flow->grads with the gradients of the weights
 * AND of alpha (d/dalpha_bj = w_bj (g_bj - sum_k w_bk g_bk), g_bk = <dL/dtheta_b, mlp_bk(x_a)>).
 * The supernet flow cannot be saved as a .rf file (its layers are not in the model format);
 * the discretised flow can.
 *
 * Path mode (ENAS, and evaluation of one architecture inside the supernet): with a path set
 * (rf_supernet_set_path), block b uses only candidate path[b] with weight exactly 1; the other
 * candidates are not evaluated and alpha is not used (its gradient is 0).
 *
 * Discretisation (rf_supernet_discretize): a regular rf_flow with the same layers, in which block
 * b's coupling has candidate path[b]'s conditioner (blocks whose choice is the zero op have no
 * coupling layer), ActNorm / LU / base / standardisation copied, and the chosen candidates'
 * weights copied (optionally with the last layer scaled by w_bk, so that the block computes
 * w_bk mlp_bk(x_a): the chosen candidate's contribution to the mixture). With one-hot weights
 * (path mode, or alpha with -inf elsewhere) the discretised flow's log p equals the supernet's.
 * Its file describes every block (per-block conditioner configurations, as network morphisms
 * produce); spec.hidden / spec.n_hidden are the largest width / depth, spec.blocks the number of
 * coupling layers. */
#ifndef RENFLOW_SUPERNET_H
#define RENFLOW_SUPERNET_H

#include "renflow/controller.h"
#include "renflow/core.h"
#include "renflow/data.h"
#include "renflow/model.h"
#include "renflow/search.h"
#include "renflow/search_job.h"

struct cJSON;

/* ======================================================================================
 * Candidate operations
 * ====================================================================================== */

#define RF_SUPERNET_MAX_CANDS 32

typedef struct rf_supernet_cand {
    int zero;      /* 1: the zero op (theta = 0: the coupling is the identity; no parameters) */
    int n_hidden;  /* hidden layers, 1..8 */
    int hidden;    /* width; 0: the supernet's width */
    rf_act act;
    int residual;  /* residual hidden layers (needs n_hidden >= 2) */
} rf_supernet_cand;

/* Names: "zero", or "<act>-<depth>[x<width>][-res]" with act relu | tanh | gelu, e.g. "relu-1",
 * "tanh-2x32", "gelu-2-res". RF_EARG naming the text otherwise. */
int rf_supernet_cand_parse(const char *s, rf_supernet_cand *c, rf_err *e);
/* The canonical name (what rf_supernet_cand_parse reads back). */
void rf_supernet_cand_name(const rf_supernet_cand *c, char *buf, size_t n);
/* A comma-separated list of names (at most RF_SUPERNET_MAX_CANDS, no duplicates). */
int rf_supernet_cands_parse(const char *list, rf_supernet_cand *c, int *n, rf_err *e);
/* The default set, {1, 2 hidden layers} x {relu, tanh, gelu} x {plain, residual} (residual only
 * with 2 layers: one hidden layer has no residual connection): relu-1, tanh-1, gelu-1, relu-2,
 * tanh-2, gelu-2, relu-2-res, tanh-2-res, gelu-2-res. Returns the count (9). */
int rf_supernet_cands_default(rf_supernet_cand *c);

/* ======================================================================================
 * The supernet
 * ====================================================================================== */

typedef struct rf_supernet_cfg {
    /* type realnvp | glow | nsf; D; blocks; hidden (the candidates' default width); clamp
     * (affine), bins and bound (spline); base and n_classes. n_hidden, act and residual are not
     * used (each candidate has its own). */
    rf_flow_spec spec;
    int n_cands;
    rf_supernet_cand cands[RF_SUPERNET_MAX_CANDS];
    float alpha_init; /* alpha ~ alpha_init * N(0, 1) (1e-3, as DARTS) */
} rf_supernet_cfg;
/* spec = rf_flow_spec_default(type, D) with 4 blocks, the default candidates, alpha_init 1e-3. */
void rf_supernet_cfg_default(rf_supernet_cfg *c, rf_flow_type type, int D);

typedef struct rf_supernet {
    rf_flow *flow;       /* the supernet as a flow; params = alpha + weights + base */
    rf_flow_spec spec;
    int blocks, n_cands;
    rf_supernet_cand cands[RF_SUPERNET_MAX_CANDS]; /* widths resolved (hidden > 0) */
    char names[RF_SUPERNET_MAX_CANDS][32];         /* canonical names as given */
    int *layer;          /* flow->layers[layer[b]] is block b's mixed coupling */
    size_t *alpha_off;   /* block b's alpha: flow->params[alpha_off[b] .. + n_cands) */
    int *path;           /* current path (blocks entries) or NULL: mixed */
} rf_supernet;

/* Builds the supernet and initialises its parameters from rng (hidden weights as rf_mlp, last
 * layers 0, alpha ~ alpha_init N(0, 1), LU as glow). RF_EARG for a type other than realnvp /
 * glow / nsf, D < 2, no candidates, or a bad candidate. */
rf_supernet *rf_supernet_create(const rf_supernet_cfg *cfg, rf_rng *rng, rf_err *e);
void rf_supernet_free(rf_supernet *s);
/* Block b's alpha (n_cands floats, inside flow->params) and its gradient (inside flow->grads). */
float *rf_supernet_alpha(rf_supernet *s, int b);
const float *rf_supernet_alpha_grad(const rf_supernet *s, int b);
/* softmax(alpha_b) in double (n_cands values). */
void rf_supernet_weights(const rf_supernet *s, int b, double *w);
/* Path mode: path[b] in [0, n_cands) for every block; NULL returns to the mixture. */
int rf_supernet_set_path(rf_supernet *s, const int *path, rf_err *e);
/* Where candidate k of block b keeps its weights: flow->params[*off .. *off + *n) (*n = 0 for the
 * zero op). RF_EARG for indices out of range. */
int rf_supernet_cand_range(const rf_supernet *s, int b, int k, size_t *off, size_t *n);
/* Standardisation fitted on the training rows (standardize: 0 none, 1 mean/std, 2 robust) and
 * the data-dependent ActNorm initialisation on a seeded subset of init_batch rows, as rf_train
 * does for a dense flow (the class means of a class-conditional base keep their random start). */
int rf_supernet_prepare(rf_supernet *s, const rf_matrix *train, int standardize, int init_batch, rf_rng *rng,
                        rf_err *e);
/* Candidate dropout (mixture only): bit k of drop[b] leaves candidate k of block b out; the
 * weights are the softmax over the others (every candidate left out is RF_EARG). NULL: none. */
int rf_supernet_set_drop(rf_supernet *s, const uint32_t *drop, rf_err *e);
/* argmax_k alpha_bk per block (ties: the lower index). */
void rf_supernet_argmax(const rf_supernet *s, int *path);
/* The flow of a path (see the top of this file). scale_by_weight = 1: the chosen candidate's
 * last layer is multiplied by its current softmax weight w_b,path[b] (the DARTS warm start);
 * 0: copied as is (path mode, ENAS). The new flow's meta gets "supernet" (candidate names per
 * block, alpha and weights per block). */
rf_flow *rf_supernet_discretize(const rf_supernet *s, const int *path, int scale_by_weight, rf_err *e);
/* {"flow", "blocks", "candidates": [...], "alpha": [[...] per block], "weights": [[...]],
 *  "path": [names] (argmax when path is NULL)}. Caller frees. */
struct cJSON *rf_supernet_to_json(const rf_supernet *s, const int *path);

/* ======================================================================================
 * DARTS: bilevel search
 * ====================================================================================== */

typedef struct rf_darts_opts {
    /* the supernet (rf_search_darts_run; rf_darts_search takes a built supernet) */
    rf_flow_type flow;       /* realnvp | glow | nsf (nsf) */
    int blocks;              /* B (4) */
    int hidden;              /* the candidates' default width (64) */
    int n_cands;             /* candidates (0: the default set) */
    rf_supernet_cand cands[RF_SUPERNET_MAX_CANDS];
    float alpha_init;        /* 1e-3 */
    /* the search */
    int epochs;              /* passes over the training rows (20) */
    int min_steps;           /* at least this many steps: more epochs on small data sets (400) */
    int batch;               /* rows per step, for both levels (256) */
    float lr;                /* weights: AdamW, cosine to 1% over the search (1e-3) */
    float weight_decay;      /* weights (0) */
    float clip;              /* weights: gradient norm clip (5; 0 = off) */
    float alpha_lr;          /* architecture: Adam (3e-3, as DARTS) */
    float alpha_weight_decay;/* architecture (1e-3, as DARTS) */
    int warmup_epochs;       /* epochs of weight steps only before alpha moves (0) */
    float drop_prob;         /* candidate dropout in the weight steps: each candidate of each
                                block is left out with this probability (at least one stays),
                                the others' weights renormalised, so that candidates cannot
                                rely on each other (co-adaptation); alpha steps see the full
                                mixture (0.5; 0: plain DARTS) */
    float ce_weight;         /* classification: both levels minimise NLL + ce_weight CE (1) */
    int init_batch;          /* rows for the data-dependent ActNorm init (1024; 0: none) */
    int standardize;         /* 0 none, 1 mean/std, 2 robust, fitted on the training rows (1) */
    int threads;             /* 0: as set */
    /* after the search (rf_search_darts_run) */
    int warm_start;          /* 1: the discretised flow starts from the supernet weights (with
                                the last layer scaled by the block's weight); 0: freshly
                                initialised (retrained from scratch, as DARTS does) (1) */
    int trials;              /* rf_search_darts_run: stop once the study holds this many trials;
                                0: run one search (0) */
    double time_budget;      /* seconds; no new search starts after it (0: none) */
    uint64_t seed;           /* rf_darts_search: the shuffles (1); rf_search_darts_run derives
                                each search's seed from the study seed */
    int progress;            /* per-epoch lines on stderr (1) */
    volatile int *stop_flag; /* set: the search stops after the current step */
} rf_darts_opts;
void rf_darts_opts_default(rf_darts_opts *o);

typedef struct rf_darts_result {
    int epochs_run;
    long steps;              /* weight steps (each followed by an alpha step after warm-up) */
    long skipped_steps;      /* non-finite losses/gradients, never applied */
    double seconds;
    double rows_per_sec;     /* training + validation rows processed per second */
    int interrupted;         /* the stop flag ended the search early */
    /* per epoch (epochs_run values each, malloc'd): mean training loss of the weight steps
     * (under candidate dropout), mean validation loss of the alpha steps (NAN without any), the
     * validation NLL of the supernet at the epoch's end (full mixture), and the softmax weights
     * (epochs_run x blocks x n_cands) */
    double *train_curve, *val_curve, *val_nll_curve, *weights_curve;
    int blocks, n_cands;
    int *path;               /* argmax per block at the end (blocks entries, malloc'd) */
} rf_darts_result;
void rf_darts_result_free(rf_darts_result *r);
struct cJSON *rf_darts_result_to_json(const rf_darts_result *r, const rf_supernet *s);

/* First-order DARTS (the architecture gradient is taken at the current weights, xi = 0; the
 * second-order unrolled step is not implemented). Per step: one Adam step on alpha with the
 * gradient of the validation loss on the next validation batch (cycling through shuffled
 * validation rows; full mixture), then one AdamW step on the weights (everything but alpha; cosine
 * schedule) with the gradient of the training loss on the next training batch, under candidate
 * dropout (o->drop_prob). Losses: mean NLL, plus ce_weight x mean cross-entropy of p(y|x) for a
 * class-conditional base (labels required then). With o->standardize / o->init_batch the
 * supernet is first standardised on the training rows and its ActNorm layers initialised from a
 * seeded subset (rf_supernet_prepare). Non-finite steps are skipped (20 in a row:
 * RF_ENONFINITE). Progress: one line per epoch (at most ~25) on stderr with o->progress. The
 * supernet is left in mixed mode. res may be NULL.
 *
 * Why candidate dropout: with the plain mixture, candidates co-adapt. On a task where only a
 * 2-layer tanh net can express the conditional (tests/test_darts.c: x1 = 2 sin(2.5 x0) + noise,
 * candidates zero, relu-1x1, tanh-2x32), plain DARTS put the largest weight on relu-1x1 for 2
 * of 10 seeds, and the tanh net alone (path mode) was then useless (NLL 7.2 against 1.9); with
 * drop_prob 0.5 all 10 seeds chose tanh-2x32. */
int rf_darts_search(rf_supernet *s, const rf_matrix *train, const int *ytrain, const rf_matrix *val,
                    const int *yval, const rf_darts_opts *o, rf_darts_result *res, rf_err *e);

/* ---- DARTS stored as a study ----
 * The study's space (rf_search_darts_space): "flow" {realnvp, glow, nsf}, "op-1".."op-B"
 * (categorical over the candidate names: the operation chosen for each block), "hidden" (widest
 * chosen conditioner), "hidden-layers" (deepest), "params" (log int). It depends on o->blocks and
 * the candidate list, so a resumed study must use the same ones.
 *
 * rf_search_darts_run: for each new trial (until the study holds o->trials trials, the time
 * budget is spent or the stop flag is set): builds the supernet for the job's task (D, and the
 * class-conditional base of a classification task; clamp / bins / bound from job->base_spec),
 * runs rf_darts_search on the task's training and validation rows with a seed derived from the
 * study seed and the trial count, discretises the argmax path, then trains that flow with the
 * job's training settings (job->base_train: epochs, batch, lr, ...; with warm_start no
 * re-standardisation or ActNorm re-initialisation) and stores it as a complete trial: the
 * summary configuration, intermediate values (validation NLL per retraining epoch), values in
 * the job's metric order (train_seconds counts the search too), the model file
 * (rf_search_keep_model: OUT/trials/trial-<n>.rf and OUT/best.rf) with meta "darts" (alpha and
 * weights per block, the chosen operations, the search curves). A search stopped by the flag
 * stores nothing; a retraining that fails is a failed trial with its reason. job->space must
 * be the study's space (rf_search_darts_space of the same options). n_run: trials stored. */
rf_space *rf_search_darts_space(const rf_darts_opts *o, rf_err *e);
int rf_search_darts_run(rf_study *st, const rf_search_job *job, const rf_darts_opts *o, int *n_run, rf_err *e);

/* ---- shared by the DARTS and ENAS study runners ----
 * The supernet configuration for a job (type, blocks, hidden, candidates from o; D, base,
 * classes, clamp, bins, bound from the job). */
int rf_search_supernet_cfg(const rf_search_job *job, const rf_darts_opts *o, rf_supernet_cfg *c, rf_err *e);
/* RF_EARG (with the difference) unless job->space is rf_search_darts_space(o). */
int rf_search_supernet_check_space(const rf_search_job *job, const rf_darts_opts *o, rf_err *e);
/* The summary configuration of a discretised path in the darts space (c initialised here). */
int rf_search_darts_config(const rf_space *sp, const rf_supernet *s, const int *path, const rf_flow *f,
                           rf_config *c, rf_err *e);
/* Numbered trials that count towards a trial limit (all but those lost with a dead worker);
 * -1 on error. */
int rf_search_supernet_counted_trials(rf_study *st, rf_err *e);
/* Asks a trial with the summary configuration of (s, path, f), trains f with the job's training
 * settings (seed: the trial's; warm_start: no re-standardisation or ActNorm re-initialisation),
 * reports the validation NLL per epoch, and tells it complete (values in the job's metric
 * order, train_seconds + search_seconds for the time metric; model kept with
 * rf_search_keep_model, meta "search" as rf_search_objective writes it and `info` under `key`)
 * or failed with the reason (divergence, parameter limit, non-finite value). info is consumed.
 * Errors of the study or the model file are returned (the trial is then marked failed). */
int rf_search_supernet_store(rf_study *st, const rf_search_job *job, const rf_supernet *s, const int *path,
                             rf_flow *f, int warm_start, double search_seconds, const char *key,
                             struct cJSON *info, int progress, rf_err *e);

/* ======================================================================================
 * ENAS: an LSTM controller picks one candidate per block; weights shared through the supernet
 * ====================================================================================== */

typedef struct rf_enas_opts {
    /* the supernet, the shared weights' training (epochs, min_steps, batch, lr, weight_decay,
     * clip, ce_weight, standardize, init_batch, threads) and the study settings (warm_start,
     * trials, time_budget, seed, progress, stop_flag); alpha_*, warmup_epochs and drop_prob are
     * not used (defaults as rf_darts_opts_default) */
    rf_darts_opts net;
    rf_controller_opts ctrl;     /* the policy: rf_controller_opts_default with temperature 5 and
                                    tanh_c 2.5, as ENAS (bounded logits: the policy cannot collapse
                                    on the noisy rewards of an untrained supernet; with 9 candidates
                                    a decision's largest probability is at most ~0.95) */
    rf_reinforce_opts reinforce; /* REINFORCE (rf_reinforce_opts_default; its reward_a / reward_b
                                    are replaced by the two below) */
    /* shaped reward R(x) = C / (1 + exp(-A x + B)) of x = -(validation loss of the path on a
     * validation batch), C = reinforce.reward_c, threshold x = B / A. NAN (default): calibrated
     * at the start of every controller phase from `calibrate` paths drawn from the current
     * policy: B / A = the median of their x, A = 2 ln 9 / (q90 - q10) (1 when they are all
     * equal), so R runs from ~0.1 C to ~0.9 C across the policy's current spread. */
    double reward_a, reward_b;
    int calibrate;               /* 8 */
    int ctrl_steps;              /* controller updates per epoch (10) */
    int ctrl_batch;              /* paths (episodes) per update (4) */
    int final_samples;           /* paths drawn from the trained policy at the end; with the greedy
                                    path, each is scored on all validation rows and the best is the
                                    result (16) */
} rf_enas_opts;
void rf_enas_opts_default(rf_enas_opts *o);

typedef struct rf_enas_result {
    int epochs_run;
    long steps;                  /* shared-weight steps (one sampled path each) */
    long ctrl_updates;
    long skipped_steps;
    double seconds;
    int interrupted;
    /* per epoch (epochs_run values, malloc'd): mean training loss of the sampled paths, mean
     * reward and mean x of the controller's episodes, mean summed policy entropy, and the
     * reward's A and B used in that epoch */
    double *train_curve, *reward_curve, *score_curve, *entropy_curve, *reward_a, *reward_b;
    int blocks;
    int *path;                   /* the best of the final candidates (blocks entries, malloc'd) */
    int *greedy;                 /* the policy's most likely path */
    double path_val_loss;        /* validation loss of `path` (path mode, all validation rows) */
    double greedy_val_loss;
    int n_final;                 /* distinct final candidates scored */
} rf_enas_result;
void rf_enas_result_free(rf_enas_result *r);
struct cJSON *rf_enas_result_to_json(const rf_enas_result *r, const rf_supernet *s);

/* ENAS (Pham et al. 2018) over the supernet's conditioners, with the controller c (slots =
 * blocks, each with n_cands choices; see rf_controller_create). Per epoch:
 *   1. shared weights: for every training batch, a path drawn from the policy is set (path mode)
 *      and one AdamW step is taken on the loss of that path; only the parameters the path uses
 *      move (ActNorm, LU, base and the chosen candidates; the others keep their values and their
 *      optimiser state), so every candidate's weights are shared by all paths that choose it;
 *   2. controller: ctrl_steps REINFORCE updates (rf_reinforce_update), each on ctrl_batch paths
 *      drawn from the policy, each scored on the next validation batch: x = -(mean NLL, plus
 *      ce_weight x mean cross-entropy for a class-conditional base), reward R(x) as above.
 * Finally the greedy path and final_samples drawn paths are scored on all validation rows; the
 * best is res->path. The supernet is left in path mode on res->path. Deterministic given the
 * seeds. res may be NULL. */
int rf_enas_search(rf_supernet *s, rf_controller *c, const rf_matrix *train, const int *ytrain,
                   const rf_matrix *val, const int *yval, const rf_enas_opts *o, rf_enas_result *res,
                   rf_err *e);

/* ENAS stored as a study, in the space of rf_search_darts_space(&o->net) (the same summary
 * configuration: flow, op-1..op-B, hidden, hidden-layers, params): like rf_search_darts_run,
 * each new trial is one ENAS search (supernet and controller seeded from the study seed and the
 * trial count), whose best path is discretised (scale_by_weight 0: the shared weights as they
 * are, or a fresh start without warm_start), trained with the job's settings and stored with
 * meta "enas" (the controller's curves, the final candidates, the supernet). */
int rf_search_enas_run(rf_study *st, const rf_search_job *job, const rf_enas_opts *o, int *n_run, rf_err *e);

#endif
