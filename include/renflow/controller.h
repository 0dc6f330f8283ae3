/* renflow controller: an LSTM policy over a sequence of categorical decisions, trained with
 * REINFORCE on a shaped reward (Zoph & Le 2017; ENAS, Pham et al. 2018), and the search
 * strategies built on it and beside it: the "rl" sampler (the controller as an rf_sampler,
 * rebuilt from the study at every ask) and regularised (aging) evolution (Real et al. 2019).
 *
 * Three layers, usable separately:
 *  1. rf_controller: the policy. A fixed list of decision *slots* (slot k has n_choices[k]
 *     options); an episode visits the slots in order and may skip some (conditional decisions).
 *     At each visited slot an LSTM step reads the embedding of the previous decision (a start
 *     token first) and a per-slot softmax head gives the distribution of the slot's choice.
 *     Sampling returns the choices and the sum of their log-probabilities; rf_controller_grad
 *     gives log p(choices) and its exact gradient by back-propagation through time.
 *  2. rf_ctrl_space: the decisions of a search space (rf_space): one slot per parameter;
 *     categorical parameters are decided directly, int parameters by value when they have few
 *     values, float and wide int parameters by bins of their (log) scale; parameters made
 *     inactive by their condition are skipped. Maps decisions <-> configurations.
 *  3. rf_reinforce: REINFORCE with the shaped reward R(x) = C / (1 + exp(-A x + B)), an
 *     exponential-moving-average baseline, an entropy bonus and Adam (or plain SGD).
 *
 * An ENAS-style loop (weight sharing through a supernet) uses them like this:
 *
 *     rf_controller_opts co; rf_controller_opts_default(&co);
 *     rf_ctrl_space *m = rf_ctrl_space_create(sp, &co, &e);         // sp: architecture space
 *     rf_controller *c = rf_controller_create(rf_ctrl_space_n_slots(m),
 *                                             rf_ctrl_space_n_choices(m), &co, seed, &e);
 *     rf_reinforce_opts ro; rf_reinforce_opts_default(&ro);
 *     ro.reward_a = 10; ro.reward_b = 5;                             // threshold x = 0.5
 *     rf_reinforce *r = rf_reinforce_create(c, &ro, &e);
 *     int *ch = malloc(sizeof(int) * rf_ctrl_space_n_slots(m));
 *     rf_config cfg; rf_config_init(&cfg, sp, &e);
 *     for (step...) {
 *         rf_ctrl_space_sample(m, c, &rng, &cfg, ch, NULL, NULL, &e);   // architecture
 *         ... train the shared weights of the supernet on cfg, then score it: x (larger better)
 *         double R = rf_reinforce_reward(r, x);
 *         rf_reinforce_update(r, 1, ch, &R, NULL, &e);                   // one policy step
 *     }
 *     rf_ctrl_space_sample(m, c, NULL, &cfg, ch, NULL, NULL, &e);        // NULL rng: argmax
 *
 * Threading: a controller, an rf_reinforce and an rf_ctrl_space belong to one thread at a time
 * (the controller keeps its forward/backward workspace inside). Everything is deterministic
 * given the seeds and the inputs. Parameters and arithmetic are double precision.
 */
#ifndef RENFLOW_CONTROLLER_H
#define RENFLOW_CONTROLLER_H

#include "renflow/core.h"
#include "renflow/search.h"

/* ======================================================================================
 * The LSTM policy
 * ====================================================================================== */

typedef struct rf_controller_opts {
    int hidden;            /* LSTM hidden size (32) */
    int embed;             /* decision embedding size; 0 = hidden (0) */
    double temperature;    /* logits are divided by this before clipping/softmax (1.0; ENAS 5) */
    double tanh_c;         /* > 0: logits = tanh_c * tanh(logits / temperature) (ENAS 2.5);
                              0: no clipping (0) */
    double init_scale;     /* every weight and embedding ~ U(-init_scale, init_scale); biases 0
                              (0.1, as ENAS) */
    /* rf_ctrl_space only (how parameters become decisions): */
    int bins;              /* float parameters and int parameters with more than
                              max_int_choices values: this many equal bins of the (log) scale
                              (10) */
    int max_int_choices;   /* int parameters with at most this many values: one choice per
                              value (16) */
} rf_controller_opts;
void rf_controller_opts_default(rf_controller_opts *o);

typedef struct rf_controller rf_controller;

/* A policy over n_slots decisions, slot k with n_choices[k] >= 1 options (at most
 * RF_PARAM_MAX_CHOICES); weights drawn from `seed`. Invalid options are RF_EARG naming the
 * field. */
rf_controller *rf_controller_create(int n_slots, const int *n_choices, const rf_controller_opts *o,
                                    uint64_t seed, rf_err *e);
void rf_controller_free(rf_controller *c);
/* A deep copy (parameters, options; not the workspace contents). */
rf_controller *rf_controller_clone(const rf_controller *c, rf_err *e);
int rf_controller_n_slots(const rf_controller *c);
int rf_controller_n_choices(const rf_controller *c, int slot);
const rf_controller_opts *rf_controller_get_opts(const rf_controller *c);

/* All parameters as one flat vector (mutable view, owned by the controller), so that callers
 * can save, restore or perturb them (finite differences). Layout, in this order:
 *   embedding   (1 + sum_k n_choices[k]) x E   row 0 = start token, then slot 0's choices,
 *                                                slot 1's choices, ...
 *   lstm W      4H x (E + H)                    gates i, f, g, o; columns [input; h_prev]
 *   lstm b      4H
 *   head W_k    n_choices[k] x H                for k = 0..n_slots-1, each followed by
 *   head b_k    n_choices[k]
 * with E = embed, H = hidden. */
size_t rf_controller_n_params(const rf_controller *c);
double *rf_controller_params(rf_controller *c);

/* Which slots an episode visits. Called for slot k in increasing order with choice[0..k-1]
 * already filled (-1 for skipped slots); returns 1 when slot k is decided, 0 to skip it.
 * NULL: every slot is decided. */
typedef int (*rf_ctrl_active_fn)(void *ctx, int slot, const int *choice);

/* One episode: choice[k] in [0, n_choices[k]) for visited slots, -1 for skipped ones.
 * rng != NULL: choices drawn from the policy; rng == NULL: the most likely choice at every
 * step (greedy decoding, e.g. the final architecture). *logp (may be NULL) = sum over visited
 * slots of log p(choice | previous choices); *entropy (may be NULL) = sum over visited slots of
 * the entropy of that step's distribution (nats). */
int rf_controller_sample(rf_controller *c, rf_rng *rng, rf_ctrl_active_fn active, void *ctx, int *choice,
                         double *logp, double *entropy, rf_err *e);

/* log p(choice) and the summed step entropy of a given episode (choice as rf_controller_sample
 * gives: -1 = skipped slot, the visited slots' choices in range, else RF_EARG). */
int rf_controller_logprob(rf_controller *c, const int *choice, double *logp, double *entropy, rf_err *e);

/* Back-propagation through time: ADDS d(w_logp * log p(choice) + w_entropy * entropy)/dtheta
 * to grad (rf_controller_n_params entries, same layout as rf_controller_params; the caller
 * zeroes it), where entropy is the summed step entropy along this episode (the choices held
 * fixed). logp/entropy (may be NULL) receive the values. */
int rf_controller_grad(rf_controller *c, const int *choice, double w_logp, double w_entropy, double *logp,
                       double *entropy, double *grad, rf_err *e);

/* ======================================================================================
 * Decisions of a search space
 * ====================================================================================== */

typedef struct rf_ctrl_space rf_ctrl_space;

/* One slot per parameter of sp (slot i = parameter i), using o->bins and o->max_int_choices:
 *  - categorical: its choices;
 *  - int with (high - low + 1) <= max_int_choices: one choice per value, low..high;
 *  - float: `bins` equal bins of [low, high] on its scale (log for log parameters);
 *  - wider int: the integers grouped by the same bins of [low - 0.5, high + 0.5] (log scale
 *    for log parameters), empty groups dropped (so every choice holds >= 1 integer).
 * The space is borrowed: it must outlive m. A parameter is decided only while active
 * (rf_config_update_active on the decisions so far). */
rf_ctrl_space *rf_ctrl_space_create(const rf_space *sp, const rf_controller_opts *o, rf_err *e);
void rf_ctrl_space_free(rf_ctrl_space *m);
int rf_ctrl_space_n_slots(const rf_ctrl_space *m);
const int *rf_ctrl_space_n_choices(const rf_ctrl_space *m); /* n_slots entries */

/* Decisions -> configuration (out initialised for the space): categorical/int-by-value exactly;
 * a bin -> a value inside it: rng != NULL uniform on the bin's (log) scale, kept 1% of the bin
 * width away from its edges (floats), or a uniform integer of the group (ints); rng == NULL the
 * bin's centre (floats) or the group's middle integer. Then the active flags. Skipped slots of
 * parameters that are active (a choice array not from this space) are RF_EARG. */
int rf_ctrl_space_decode(const rf_ctrl_space *m, const int *choice, rf_rng *rng, rf_config *out, rf_err *e);
/* Configuration -> decisions (inactive parameters -1): the inverse of decode (a decoded value
 * encodes to its bin). Values outside the range are RF_EARG naming the parameter. */
int rf_ctrl_space_encode(const rf_ctrl_space *m, const rf_config *c, int *choice, rf_err *e);
/* An episode of controller c over the space: the decisions (choice, n_slots entries) and the
 * configuration (out initialised for the space; bins decoded with rng, or greedy + bin centres
 * when rng is NULL). logp / entropy as rf_controller_sample (may be NULL). c must have been
 * created with rf_ctrl_space_n_choices(m). */
int rf_ctrl_space_sample(const rf_ctrl_space *m, rf_controller *c, rf_rng *rng, rf_config *out, int *choice,
                         double *logp, double *entropy, rf_err *e);

/* ======================================================================================
 * REINFORCE
 * ====================================================================================== */

/* The shaped reward R(x) = c / (1 + exp(-a x + b)): a sigmoid of the objective x (oriented so
 * that larger is better, e.g. macro-F1 or -NLL) that is c/2 at the threshold x = b/a, rises
 * from ~0.1c to ~0.9c over x in b/a -+ ln(9)/a, and lies in (0, c) (computed without
 * overflow; x = -inf gives 0, +inf gives c). */
double rf_shaped_reward(double x, double a, double b, double c);

typedef enum { RF_CTRL_ADAM = 0, RF_CTRL_SGD = 1 } rf_ctrl_optimizer;

typedef struct rf_reinforce_opts {
    /* shaped reward (rf_reinforce_reward): A > 0, C > 0; threshold B/A. Defaults A = 1, B = 0,
     * C = 1 (threshold 0); set them for the objective's scale (the rl sampler calibrates them
     * from the first trials unless given, see rf_rl_opts). */
    double reward_a, reward_b, reward_c;
    double baseline_decay; /* b <- decay b + (1 - decay) R after each reward (0.9) */
    double baseline_init;  /* NAN (default): C/2, the reward at the threshold */
    double entropy_weight; /* beta: the entropy bonus beta * (summed step entropy) (1e-3) */
    rf_ctrl_optimizer optimizer; /* RF_CTRL_ADAM (default) or RF_CTRL_SGD */
    double lr;             /* step size (0.01) */
    double beta1, beta2, eps; /* Adam (0.9, 0.999, 1e-8) */
    double grad_clip;      /* > 0: the gradient's global L2 norm is clipped to this (0: none) */
} rf_reinforce_opts;
void rf_reinforce_opts_default(rf_reinforce_opts *o);

typedef struct rf_reinforce rf_reinforce;
/* Trainer state (baseline, optimiser moments) for controller c (borrowed; must outlive r). */
rf_reinforce *rf_reinforce_create(rf_controller *c, const rf_reinforce_opts *o, rf_err *e);
void rf_reinforce_free(rf_reinforce *r);
/* rf_shaped_reward with r's A, B, C. */
double rf_reinforce_reward(const rf_reinforce *r, double x);
double rf_reinforce_baseline(const rf_reinforce *r);
long rf_reinforce_steps(const rf_reinforce *r); /* updates applied so far */

typedef struct rf_reinforce_info {
    double baseline;   /* b used for the advantages (before this update) */
    double mean_reward;
    double mean_logp, mean_entropy;
    double grad_norm;  /* L2 norm of the (batch-mean) gradient before clipping */
} rf_reinforce_info;

/* One policy-gradient step on n episodes (choices: n rows of n_slots, as rf_controller_sample
 * gives) with their rewards R_i (already shaped; non-finite is RF_ENONFINITE):
 *   g = (1/n) sum_i [ (R_i - b) grad log p(choice_i) + beta grad H(choice_i) ]
 * with b the baseline before this call; the parameters move UP the gradient:
 *   SGD:  theta += lr g;   Adam: theta += lr mhat / (sqrt(vhat) + eps) (bias-corrected).
 * Then b <- decay b + (1 - decay) R_i for each i in order. info may be NULL. */
int rf_reinforce_update(rf_reinforce *r, int n, const int *choices, const double *rewards, rf_reinforce_info *info,
                        rf_err *e);

/* ======================================================================================
 * Search strategies as samplers (rf_sampler_create also knows "rl" and "evolution" with the
 * defaults below, when the library registers them)
 * ====================================================================================== */

/* "rl": the LSTM controller as a sampler. Stateless over the study: at every sample the
 * controller is rebuilt from `seed` and REINFORCE is replayed over the history's trials in
 * trial order (one update per `batch` trials), then one configuration is drawn from it with the
 * ask's rng. A cache makes this incremental while the history only grows at its end (the
 * result is the same as a full replay). Each trial's configuration is encoded to decisions
 * (rf_ctrl_space_encode), so trials from other samplers (e.g. the enqueued default) count too.
 * Rewards: x = objective `objective` (maximised as is, minimised negated); complete -> R(x);
 * pruned -> R(x of its last intermediate value) (0 when it has none); failed -> 0 (the lowest
 * reward; rf_study_history leaves failed trials out, so in a study they give no update).
 * Shaping: reward_a / reward_b of `reinforce` as given, or NAN (the default) to calibrate from
 * the first n_calibrate complete trials: threshold B/A = their median x, A = 2 ln 9 /
 * (q90 - q10) of their x (A = 1 when they are all equal), so R goes from ~0.1 C at the 10%
 * quantile to ~0.9 C at the 90% one; no update happens before they exist (the controller's
 * initial policy, close to uniform, is sampled). */
typedef struct rf_rl_opts {
    rf_controller_opts ctrl;
    rf_reinforce_opts reinforce; /* defaults, with reward_a = reward_b = NAN (calibrated) */
    int n_calibrate;   /* 10 */
    int batch;         /* trials per REINFORCE update (1) */
    int objective;     /* index of the objective used as the reward (0) */
    uint64_t seed;     /* the controller's initial weights (0; renflow search: the study seed) */
} rf_rl_opts;
void rf_rl_opts_default(rf_rl_opts *o);
rf_sampler *rf_sampler_rl_create(const rf_rl_opts *o, rf_err *e);

/* "evolution": regularised (aging) evolution (Real et al. 2019), stateless over the study.
 * Population = the last `population` complete trials by number (aging: an older trial leaves
 * it, however good). While fewer than `population` trials are complete: uniform random
 * configurations. Then: `sample_size` distinct members drawn uniformly, the best of them
 * (objective `objective`, by its direction; ties: the later trial) is the parent, and the child
 * is the parent with exactly one active, mutable parameter changed:
 *  - categorical: another choice, uniformly;
 *  - float / int: a Gaussian step of sd mutation_sd x (range on the transformed (log) scale),
 *    reflected into the range; an int that rounds back to its old value moves by one step;
 * parameters that the change activates get uniform random values, those it deactivates are
 * dropped. Multi-objective studies: objective `objective` (default the first) alone. */
typedef struct rf_evolution_opts {
    int population;    /* P (20) */
    int sample_size;   /* S, 1..P (5) */
    double mutation_sd;/* 0.1 */
    int objective;     /* 0 */
} rf_evolution_opts;
void rf_evolution_opts_default(rf_evolution_opts *o);
rf_sampler *rf_sampler_evolution_create(const rf_evolution_opts *o, rf_err *e);

/* Mutation alone (as the evolution sampler does it): child = parent with one active mutable
 * parameter changed; *mutated (may be NULL) = its index, or -1 when no parameter can change
 * (then child = parent). child initialised for sp. */
int rf_evolution_mutate(const rf_space *sp, const rf_config *parent, double mutation_sd, rf_rng *rng,
                        rf_config *child, int *mutated, rf_err *e);

/* By name with default options: "rl" | "evolution"; NULL without touching e for other names
 * (for rf_sampler_create). */
rf_sampler *rf_sampler_create_strategy(const char *name, rf_err *e);

#endif
