/* renflow morph: function-preserving network morphisms of trained flows, and a NASH-style
 * hill climber (Elsken et al. 2017) that grows a trained flow by random morphisms and short
 * training runs.
 *
 * Every morphism returns a NEW flow (the old one is untouched) whose log p(x) equals the old
 * one's for every x, up to float round-off (most are bit-exact; tests/test_morph.c checks
 * |log p_new - log p_old| <= 1e-5 max(1, |log p_old|) on randomised flows of every type). The
 * new flow keeps the old one's standardisation, base parameters, seed and meta; its "meta"
 * gains a "morphs" array naming every morphism applied. Each layer's own JSON (conditioner
 * width and depth, transform, shape) describes it, so flows whose blocks differ save and load
 * (rf_flow_save / rf_flow_load) unchanged. The spec in the file is then a summary:
 * spec.hidden / spec.n_hidden are the largest conditioner width / depth, spec.blocks the number
 * of conditioned layers (per scale, the largest, for a tsflow).
 *
 * 1. insert (identity-initialised layers at a position of the layer stack):
 *    ActNorm with b = s = 0; a linear layer in LU form (LU 1x1 for dense flows, 1x1 over
 *    channels for a tsflow) with identity permutation, sign +1 and zero parameters (W = I);
 *    a coupling (realnvp / glow / nsf / tsflow) or autoregressive (maf / nsf-ar) layer whose
 *    conditioner has fresh hidden weights and a zero last layer (theta = 0 is the identity).
 *    The conditioner and transform copy the nearest conditioned layer's settings (a spline
 *    coupling may be given more bins: a function-preserving way to add spline resolution).
 *    A tsflow layer takes the active shape at its position (that of its scale).
 * 2. widen (every hidden layer of a conditioner, H -> H' units / channels):
 *    RF_MORPH_WIDEN_ZERO (default): the new units get Kaiming-uniform incoming weights (times
 *    init_scale; masked for MADE) and zero outgoing weights, so no old unit reads them; they
 *    start learning at once (their outgoing weights have non-zero gradients).
 *    RF_MORPH_WIDEN_NET2NET (Net2WiderNet): each new unit replicates a random old unit (for
 *    MADE one of the same degree, so the masks agree; a new unit whose degree no old unit has
 *    falls back to the zero scheme) and every replicated unit's outgoing weights are split
 *    equally among its copies. Exact too, but copies get identical gradients, so under any
 *    optimiser they stay copies unless something else breaks the symmetry: prefer ZERO for
 *    training. Residual conditioners are handled by both (copies are consistent across layers).
 * 3. deepen (insert one hidden layer after hidden layer `at` - 1 of a conditioner; MLP, MADE
 *    and 1-D conv conditioners):
 *      plain ReLU:     W = I (conv: centre tap), b = 0; relu(h) = h since h >= 0.
 *      residual tanh / GELU: W = 0, b = 0; h + act(0) = h, and act'(0) > 0 so it learns.
 *      residual ReLU:  W = I, b = 0 gives h + relu(h) = 2h (h >= 0); every later hidden layer's
 *                      bias is doubled (ReLU is positively homogeneous: those layers then carry
 *                      2h) and the output layer's weights halved: exact, even with zero padding.
 *                      (W = 0 would be exact too but dead: relu'(0) = 0.)
 *      plain tanh / GELU: no exact identity layer exists (act(x) != x); refused with RF_EARG.
 * 4. more spline bins in an existing coupling: not offered, because it cannot be exact.
 *    (a) Splitting a bin: a rational-quadratic segment's denominator s + (d0 + d1 - 2s) xi(1-xi)
 *    is symmetric about the bin centre; restricted to a sub-interval it is not (unless it is
 *    constant), so the piece is not a rational-quadratic segment of the same family.
 *    (b) Adding identity bins in the tails (bound B -> B' > B) would need every old bin's
 *    fraction scaled by B / B' while keeping the minimum bin size, i.e. new logits
 *    log((w B / B' - m) / (1 - K' m)) of the old softmax: not an affine function of the
 *    conditioner's outputs, so the linear last layer cannot produce them. Instead, insert an
 *    identity spline coupling with more bins (insert with `bins`).
 *
 * Positions: a layer index 0..n_layers (the new layers go before that layer);
 * rf_morph_block_position gives the index of a block boundary. Conditioner targets: the index
 * of a conditioned layer (coupling, autoregressive, ts_coupling) or -1 for all of them. */
#ifndef RENFLOW_MORPH_H
#define RENFLOW_MORPH_H

#include "renflow/core.h"
#include "renflow/data.h"
#include "renflow/model.h"
#include "renflow/train.h"

struct cJSON;

typedef enum { RF_MORPH_INSERT = 0, RF_MORPH_WIDEN = 1, RF_MORPH_DEEPEN = 2 } rf_morph_op;
#define RF_MORPH_N_OPS 3

typedef enum {
    RF_MORPH_BLOCK = 0,    /* the flow type's block: ActNorm (+ linear for glow, nsf, nsf-ar, tsflow) + coupling */
    RF_MORPH_ACTNORM = 1,  /* ActNorm (tsflow: per-channel ActNorm) */
    RF_MORPH_LINEAR = 2,   /* LU 1x1 (tsflow: 1x1 over channels) */
    RF_MORPH_COUPLING = 3  /* coupling (autoregressive layer for maf / nsf-ar) */
} rf_morph_layer;

typedef enum { RF_MORPH_WIDEN_ZERO = 0, RF_MORPH_WIDEN_NET2NET = 1 } rf_morph_widen_mode;

typedef struct rf_morph {
    rf_morph_op op;
    /* insert */
    int position;         /* 0..n_layers */
    rf_morph_layer what;
    int bins;             /* spline couplings: bins of the new coupling (0: as its neighbour) */
    /* widen / deepen */
    int target;           /* index of a conditioned layer, or -1: every conditioner */
    int hidden;           /* widen: the new width (> the current width of every target) */
    rf_morph_widen_mode mode;
    float init_scale;     /* widen ZERO: scale of the new units' incoming weights (0 means 1) */
    int at;               /* deepen: new hidden layer index in 1..n_hidden (0: after the last) */
} rf_morph;

/* A conditioner's shape, as its layer's JSON describes it. */
typedef enum { RF_MORPH_COND_MLP = 0, RF_MORPH_COND_MADE = 1, RF_MORPH_COND_CONV = 2 } rf_morph_cond_kind;
typedef struct rf_morph_cond {
    rf_morph_cond_kind kind;
    int n_in, n_out;      /* features (conv: channels) */
    int hidden, n_hidden;
    int kernel;           /* 1 for MLP / MADE */
    rf_act act;
    int residual;
    size_t n_params;
} rf_morph_cond;
/* RF_OK and *c for a conditioned layer; RF_EARG when layer `k` has no conditioner. */
int rf_morph_cond_info(const rf_flow *f, int k, rf_morph_cond *c, rf_err *e);
/* Number of conditioned layers and (idx != NULL, room for them) their layer indices. */
int rf_morph_conditioned_layers(const rf_flow *f, int *idx);

/* Layer index of a block boundary: dense flows: scale must be 0, block b in 0..n_blocks is the
 * position after the b-th conditioned layer (and the parameter-free permutation after it, if
 * any); b = 0 is the start. tsflow: within scale s, b = 0 is right after the scale's squeeze,
 * b > 0 after the b-th coupling of that scale. n_blocks (may be NULL) receives the number of
 * conditioned layers of that scale. */
int rf_morph_block_position(const rf_flow *f, int scale, int block, int *position, int *n_blocks,
                            rf_err *e);

/* The morphisms. Each returns a new flow or NULL with e set (RF_EARG for a morphism that does
 * not apply, with the reason). rng draws the new weights (insert, widen). */
rf_flow *rf_morph_apply(const rf_flow *f, const rf_morph *m, rf_rng *rng, rf_err *e);
rf_flow *rf_morph_insert(const rf_flow *f, int position, rf_morph_layer what, int bins, rf_rng *rng,
                         rf_err *e);
rf_flow *rf_morph_widen(const rf_flow *f, int target, int hidden, rf_morph_widen_mode mode,
                        float init_scale, rf_rng *rng, rf_err *e);
rf_flow *rf_morph_deepen(const rf_flow *f, int target, int at, rf_err *e);
/* One line naming the morphism, e.g. "widen all 16->24 (zero)". */
void rf_morph_describe(const rf_morph *m, char *buf, size_t n);

/* Bounds a random morphism keeps to (0 = no bound). */
typedef struct rf_morph_limits {
    int max_hidden;       /* conditioner width */
    int max_n_hidden;     /* conditioner depth (at most 64 in any case) */
    int max_layers;       /* layers of the flow */
    size_t max_params;    /* parameters of the flow: checked by the hill climber once a morphism
                           * is built (rf_morph_random cannot know the size beforehand) */
    unsigned ops;         /* allowed ops: bit (1u << op); 0 = all */
    float widen_factor;   /* new width = ceil(width * factor), at least width + 1; 0 means 1.5 */
    rf_morph_widen_mode widen_mode;
} rf_morph_limits;
/* Draws a random morphism that applies to f within the limits: an op, then a block boundary
 * (insert: a whole block), a target (one conditioner or all, with equal chance) and a depth
 * position. RF_EARG when no morphism fits. */
int rf_morph_random(const rf_flow *f, const rf_morph_limits *lim, rf_rng *rng, rf_morph *m, rf_err *e);

/* Architecture as JSON: {"spec": ..., "layers": [...], "n_params": N}. Caller frees. */
struct cJSON *rf_morph_arch_json(const rf_flow *f);

/* ---------------- NASH-style hill climbing ----------------
 * for round = 1..rounds:
 *   for child = 1..children: apply `morphs` random morphisms to the current parent (drawing again
 *     when one does not apply or breaks a limit), train the child for the budget in cfg->train;
 *   with keep_parent, the parent itself, trained with the same budget, is child 0;
 *   the candidate with the lowest validation NLL becomes the parent, unless none beats the
 *   parent's own validation NLL, in which case the parent stays.
 * Children keep the parent's standardisation and ActNorm values (cfg->train's standardize and
 * init_batch are ignored: nothing is re-initialised), write no files, and train with seeds drawn
 * from rng. A child that fails (diverges) is recorded with its reason; the search goes on.
 * The search stops early (returning the best so far) when cfg->train.stop_flag is set or the
 * time budget is spent; rounds_run counts the rounds in which a child was trained.
 * The result depends only on the inputs, rng's state and the thread count.
 * Progress lines go to stderr when cfg->progress. */
typedef struct rf_morph_hc_cfg {
    int rounds;        /* r */
    int children;      /* n morphed children per round */
    int morphs;        /* k morphisms per child */
    int keep_parent;   /* 1: the parent trained further competes (NASH); default 1 */
    rf_train_cfg train; /* per-child budget: epochs, batch, lr, clip, threads, ...; progress off */
    rf_morph_limits limits;
    double time_budget; /* seconds; no new child starts after it (0 = none) */
    int progress;
} rf_morph_hc_cfg;
/* rounds 3, children 4, morphs 1, keep_parent 1, train = rf_train_cfg_default with 5 epochs,
 * patience 0, no warm-up, constant learning rate 1e-3; limits: max_hidden 512, max_n_hidden 8,
 * max_layers 200. */
void rf_morph_hc_cfg_default(rf_morph_hc_cfg *c);

typedef struct rf_morph_hc_entry {
    int round;              /* 1..rounds */
    int child;              /* 0 = the parent trained further (keep_parent), 1..children */
    char morphs[512];       /* "; "-separated morphism descriptions ("" for child 0) */
    struct cJSON *arch;     /* rf_morph_arch_json of the child */
    size_t n_params;
    double val_nll_before;  /* validation NLL before training (equals the parent's: morphisms preserve it) */
    double val_nll;         /* after training (best epoch); NAN when it failed */
    double seconds;
    int status;             /* RF_OK or the error code */
    char error[256];
    int selected;           /* became the next parent */
} rf_morph_hc_entry;
typedef struct rf_morph_hc_history {
    int n, cap;
    rf_morph_hc_entry *entries;
    double parent_val_nll;  /* the given parent's */
    double best_val_nll;    /* the returned flow's */
    int rounds_run;
} rf_morph_hc_history;
void rf_morph_hc_history_free(rf_morph_hc_history *h);
struct cJSON *rf_morph_hc_history_to_json(const rf_morph_hc_history *h);
/* Called after every child (e.g. to store it as a trial); may be NULL. */
typedef void (*rf_morph_hc_callback)(void *ctx, const rf_morph_hc_entry *entry, const rf_flow *child);

/* Returns the best flow (a new one; the parent is untouched) and fills hist (may be NULL). val
 * is required (selection is by validation NLL); labels may be NULL. */
rf_flow *rf_morph_hillclimb(const rf_flow *parent, const rf_matrix *train, const int *train_labels,
                            const rf_matrix *val, const int *val_labels, const rf_morph_hc_cfg *cfg,
                            rf_rng *rng, rf_morph_hc_history *hist, rf_morph_hc_callback cb,
                            void *cb_ctx, rf_err *e);

#endif
