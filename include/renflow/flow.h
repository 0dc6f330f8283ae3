/* renflow flow: invertible layers, base distributions, and the flow container.
 *
 * Direction convention: forward maps data x to latent z (the density direction);
 * log p(x) = log p_base(z) + sum_layers log|det dz/dx|. inverse maps z back to x (sampling).
 *
 * Every layer implements, side by side in its own file:
 *   forward  (x -> y, logdet[i] += log|det J_i|, optional cache for backward)
 *   inverse  (y -> x, logdet[i] -= log|det J_i| of the forward at x)
 *   backward (given x, its forward cache, dL/dy and dL/dlogdet per sample:
 *             writes dL/dx, accumulates dL/dparams)
 * Buffers are sized up front through cache_floats / scratch_floats: nothing is allocated in the
 * training step. */
#ifndef RENFLOW_FLOW_H
#define RENFLOW_FLOW_H

#include "renflow/core.h"
#include "renflow/nn.h"

struct cJSON;
typedef struct rf_layer rf_layer;

typedef struct rf_layer_ops {
    const char *kind;
    size_t (*cache_floats)(const rf_layer *l, int n);
    size_t (*scratch_floats)(const rf_layer *l, int n);
    void (*init_params)(const rf_layer *l, float *params, rf_rng *rng);
    /* Data-dependent initialisation from a batch of inputs (may be NULL). */
    void (*data_init)(const rf_layer *l, float *params, int n, const float *x);
    void (*forward)(const rf_layer *l, const float *params, int n, const float *x, float *y,
                    float *logdet, float *cache, float *scratch);
    void (*inverse)(const rf_layer *l, const float *params, int n, const float *y, float *x,
                    float *logdet, float *scratch);
    void (*backward)(const rf_layer *l, const float *params, int n, const float *x,
                     const float *dy, const float *dlogdet, float *dx, float *dparams,
                     const float *cache, float *scratch);
    /* Re-imposes structural constraints on params (e.g. MADE masks); may be NULL. */
    void (*project)(const rf_layer *l, float *params);
    /* Architecture (not parameters) as JSON, enough for rf_layer_from_json to rebuild it. */
    struct cJSON *(*to_json)(const rf_layer *l);
    void (*free_impl)(void *impl);
} rf_layer_ops;

struct rf_layer {
    const rf_layer_ops *ops;
    int dim;
    size_t n_params;
    size_t offset; /* into the flow's parameter buffer */
    void *impl;
};

void rf_layer_free(rf_layer *l);
rf_layer *rf_layer_from_json(const struct cJSON *j, rf_err *e);
/* Common helper for layers: allocates the rf_layer shell. */
rf_layer *rf_layer_new(const rf_layer_ops *ops, int dim, size_t n_params, void *impl, rf_err *e);

/* ---- layers ---- */
/* y = (x + b) * exp(s); data_init sets b = -mean, s = -log(std). */
rf_layer *rf_actnorm_create(int D, rf_err *e);
/* Fixed permutation y[i] = x[perm[i]]; rf_reverse_create uses perm[i] = D-1-i. */
rf_layer *rf_permute_create(int D, const int *perm, rf_err *e);
rf_layer *rf_reverse_create(int D, rf_err *e);
/* Invertible linear y = x W^T with W = P L (U + diag(sign * exp(logs))), Glow's LU 1x1.
 * Initialised from a random rotation (rng) as in Glow; P and sign are fixed. */
rf_layer *rf_lu_linear_create(int D, rf_rng *rng, rf_err *e);

/* Coupling: dimensions with (i % 2 == parity) pass through (a), the others are transformed (b).
 * cond->n_in / n_out are filled in by the layer. */
typedef struct rf_coupling_cfg {
    int D;
    int parity;
    rf_mlp_cfg cond;
    float clamp; /* affine: s = clamp * tanh(raw / clamp) */
    int bins;    /* spline: K bins */
    float bound; /* spline: tails are identity outside [-bound, bound] */
} rf_coupling_cfg;
rf_layer *rf_affine_coupling_create(const rf_coupling_cfg *cfg, rf_err *e);
rf_layer *rf_spline_coupling_create(const rf_coupling_cfg *cfg, rf_err *e);

/* Masked autoregressive transforms (MADE conditioner). Forward (density) is one pass; inverse
 * (sampling) takes D passes. made->D and made->P are filled in by the layer. */
typedef struct rf_ar_cfg {
    int D;
    rf_made_cfg made;
    float clamp;
    int bins;
    float bound;
} rf_ar_cfg;
rf_layer *rf_maf_affine_create(const rf_ar_cfg *cfg, rf_err *e);
rf_layer *rf_maf_spline_create(const rf_ar_cfg *cfg, rf_err *e);

/* ---- rational-quadratic spline primitive (Durkan et al. 2019), linear tails ----
 * Unnormalised parameters per element: K widths, K heights, K-1 interior derivatives
 * (layout [w_0..w_{K-1}, h_0..h_{K-1}, d_0..d_{K-2}], 3K-1 floats). Widths/heights go through
 * softmax with a minimum bin size, derivatives through softplus plus a minimum; boundary
 * derivatives are 1 so the spline joins the identity tails smoothly. Interior derivatives are
 * d = MIN_DERIV + softplus(raw + c0) with c0 chosen so that raw = 0 gives d = 1: theta = 0 is
 * exactly the identity map (zero-initialised conditioners give identity blocks). */
#define RF_RQS_MIN_BIN 1e-3f
#define RF_RQS_MIN_DERIV 1e-3f
static inline int rf_rqs_n_params(int K) { return 3 * K - 1; }
/* y and log|dy/dx| for one element. */
void rf_rqs_forward(int K, float bound, const float *theta, float x, float *y, float *logdet);
void rf_rqs_inverse(int K, float bound, const float *theta, float y, float *x, float *logdet);
/* Gradients of L = gy * y + gld * logdet w.r.t. x (returned) and theta (dtheta, overwritten). */
float rf_rqs_backward(int K, float bound, const float *theta, float x, float gy, float gld,
                      float *dtheta);

/* ---- base distributions ---- */
typedef enum { RF_BASE_NORMAL = 0, RF_BASE_DIAG = 1, RF_BASE_CLASS = 2 } rf_base_kind;
typedef struct rf_base {
    rf_base_kind kind;
    int D;
    int n_classes; /* RF_BASE_CLASS only */
    size_t n_params;
    size_t offset;
    /* Tied parameters (class-conditional base only): dimension j uses the mean and scale of
     * group[j] in [0, n_groups); NULL: one group per dimension (n_groups = D). Parameter layout
     * [mu (classes x n_groups), log sigma (classes x n_groups)]. Owned. */
    int n_groups;
    int *group;
} rf_base;
int rf_base_init(rf_base *b, rf_base_kind kind, int D, int n_classes, rf_err *e);
/* Ties the class parameters of dimensions that share a group (copies group; before the
 * parameters are allocated: it changes n_params). */
int rf_base_set_groups(rf_base *b, const int *group, int n_groups, rf_err *e);
void rf_base_free(rf_base *b);
/* The class-c mean and log scale of every dimension (D floats each; either may be NULL). */
void rf_base_class_moments(const rf_base *b, const float *params, int c, float *mu, float *ls);
void rf_base_init_params(const rf_base *b, float *params, rf_rng *rng);
/* logp[i] = log p(z_i) (or log p(z_i | y_i) for class-conditional; labels required then). */
void rf_base_log_prob(const rf_base *b, const float *params, int n, const float *z,
                      const int *labels, float *logp);
/* out[i * C + c] = log p(z_i | c), class-conditional only. */
void rf_base_log_prob_classes(const rf_base *b, const float *params, int n, const float *z,
                              float *out);
/* Given dlogp[i] = dL/dlogp_i: overwrites dz with dL/dz and accumulates dparams. */
void rf_base_backward(const rf_base *b, const float *params, int n, const float *z,
                      const int *labels, const float *dlogp, float *dz, float *dparams);
/* Class-conditional: given G[i*C + c] = dL/dlog p(z_i | c) for every class: overwrites dz
 * and accumulates dparams. */
void rf_base_backward_classes(const rf_base *b, const float *params, int n, const float *z,
                              const float *G, float *dz, float *dparams);
/* Class-conditional: sets every class's mean and log scale (per parameter group) to the moments
 * of its rows of z (n x D), shrunk towards the pooled moments for small classes (weight
 * n_c / (n_c + 10)), variances floored at 1e-2. Rows with labels outside [0, C) are ignored. */
int rf_base_fit_moments(const rf_base *b, float *params, int n, const float *z, const int *labels,
                        rf_err *e);
/* Draws z (labels may be NULL for class-conditional: then classes drawn uniformly). */
void rf_base_sample(const rf_base *b, const float *params, int n, const int *labels, rf_rng *rng,
                    float *z);
const char *rf_base_kind_name(rf_base_kind k);
int rf_base_kind_parse(const char *s, rf_base_kind *out);

#endif
