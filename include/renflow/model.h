/* renflow model: a flow (stack of layers + base distribution), its parameter buffers,
 * data standardisation, workspaces, and the versioned model file. */
#ifndef RENFLOW_MODEL_H
#define RENFLOW_MODEL_H

#include "renflow/core.h"
#include "renflow/flow.h"

typedef enum {
    /* one block of each type: */
    RF_FLOW_REALNVP = 0, /* ActNorm + affine coupling (parity alternates per block) */
    RF_FLOW_GLOW = 1,    /* ActNorm + LU 1x1 + affine coupling                      */
    RF_FLOW_MAF = 2,     /* ActNorm + MADE affine + reversal                        */
    RF_FLOW_NSF = 3,     /* ActNorm + LU 1x1 + RQ-spline coupling                   */
    RF_FLOW_NSF_AR = 4,  /* ActNorm + LU 1x1 + RQ-spline autoregressive (MADE)      */
    /* multi-scale time-series flow ("tsflow", renflow/tsflow.h): per scale a Haar squeeze,
     * `blocks` x (per-channel ActNorm + 1x1 over channels + coupling with a 1-D conv
     * conditioner), then half of the channels factored out */
    RF_FLOW_TS = 5
} rf_flow_type;
const char *rf_flow_type_name(rf_flow_type t);
int rf_flow_type_parse(const char *s, rf_flow_type *out);

/* The linear / permutation layer of each block. RF_PERM_DEFAULT is the type's own (see the
 * table above: none with alternating coupling halves for realnvp, reversal after the MADE layer
 * for maf, LU 1x1 otherwise). An explicit choice puts that layer in the same place (realnvp:
 * before the coupling); with RF_PERM_NONE the coupling halves alternate from block to block.
 * A tsflow supports lu only (its 1x1 over channels). */
typedef enum {
    RF_PERM_DEFAULT = 0,
    RF_PERM_LU = 1,      /* learned LU-form linear layer (Glow's 1x1) */
    RF_PERM_REVERSE = 2, /* fixed reversal */
    RF_PERM_RANDOM = 3,  /* fixed random permutation, drawn per block from the flow's RNG */
    RF_PERM_NONE = 4
} rf_perm_kind;
const char *rf_perm_kind_name(rf_perm_kind p); /* "default" | "lu" | "reverse" | "random" | "none" */
int rf_perm_kind_parse(const char *s, rf_perm_kind *out); /* RF_OK or RF_EARG */

typedef struct rf_flow_spec {
    rf_flow_type type;
    int D;
    int blocks;
    int hidden;
    int n_hidden; /* hidden layers per conditioner */
    rf_act act;
    int residual;
    int bins;
    float bound;
    float clamp;
    rf_base_kind base;
    int n_classes;
    /* tsflow only (ignored by the other types). Rows are windows of `channels` x `length`
     * samples, channel-major (x[c * length + t]), D = channels * length. `hidden` is the conv
     * conditioners' channel count, `blocks` the blocks per scale. */
    int channels, length;
    int scales;   /* >= 1; length must be divisible by 2^scales */
    int kernel;   /* odd conv kernel size */
    int dilation; /* conv dilation */
    int spline;   /* coupling transform: 0 affine (clamp), 1 RQ spline (bins, bound) */
    int class_tie; /* class-conditional base: 0 a mean and scale per latent dimension; 1 one per
                      latent channel of each scale, shared over time (the class statistics
                      become stationary: power per latent channel, as in band-power models) */
    rf_perm_kind perm; /* RF_PERM_DEFAULT: the type's own */
    int no_actnorm;    /* 1: blocks without their leading ActNorm */
} rf_flow_spec;
/* The permutation a spec's blocks actually use (RF_PERM_DEFAULT resolved by type). */
rf_perm_kind rf_flow_spec_perm(const rf_flow_spec *s);
/* Defaults for a given type and dimension (tsflow: 1 channel x D samples; see also
 * rf_tsflow_spec_default in renflow/tsflow.h for a C x T window). */
void rf_flow_spec_default(rf_flow_spec *s, rf_flow_type type, int D);
int rf_flow_spec_check(const rf_flow_spec *s, rf_err *e);

typedef struct rf_flow {
    rf_flow_spec spec;
    int D;
    int n_layers;
    rf_layer **layers;
    rf_base base;
    size_t n_params;
    float *params;
    float *grads;
    /* Standardisation applied before the first layer: u = (x - shift) / scale.
     * Its log-determinant (-sum log scale) is part of log p(x). */
    float *shift;
    float *scale;
    uint64_t seed;       /* the run's seed, recorded in the file */
    struct cJSON *meta;  /* free-form provenance (training summary, data hash, ...) */
    /* Subject-adaptive latent normalisation (renflow/adapt.h): the reference subject's latent
     * mean and log standard deviation per base group; NULL when the model does not adapt. */
    float *adapt_mean, *adapt_log_scale;
} rf_flow;

/* Builds the layer stack for spec and initialises parameters from rng. */
rf_flow *rf_flow_create(const rf_flow_spec *spec, rf_rng *rng, rf_err *e);
void rf_flow_free(rf_flow *f);
/* Runs the data-dependent initialisation (ActNorm) on a batch of data. */
int rf_flow_data_init(rf_flow *f, int n, const float *x, rf_err *e);
/* The same, and for a class-conditional base (labels given) each class's mean and scale are set
 * to the moments of its rows' latents (shrunk towards the pooled moments for small classes), so
 * training starts from a Gaussian classifier in the latent space of the initialised flow. */
int rf_flow_data_init_labels(rf_flow *f, int n, const float *x, const int *labels, rf_err *e);

/* Workspace: everything the flow needs for batches up to max_batch, allocated once.
 * memory_saving = 1: the forward keeps no per-layer activations; the backward reconstructs each
 * layer's input from its output with the inverse and recomputes that layer's cache.
 *
 * Threads: the rows of a batch are split into shards, one per thread (at most one per 16 rows of
 * max_batch). Each shard runs the layers on its own buffers with single-threaded BLAS, and a
 * gradient is the sum of per-shard gradients taken in a fixed order, so for a given thread count
 * every result is reproducible bit for bit. Shards run only while OpenBLAS is single-threaded
 * (rf_set_threads arranges that); otherwise one shard runs on BLAS's own threads. Batches larger
 * than max_batch are processed in chunks. A workspace owns its worker threads (they sleep between
 * calls): create it in the process that uses it, not before a fork, and use it from one thread
 * at a time. */
typedef struct rf_flow_ws rf_flow_ws;
typedef struct rf_flow_ws_opts {
    int max_batch;
    int memory_saving;
    int threads;   /* shards; 0 = rf_get_threads() */
    int inference; /* 1: never used for rf_flow_loss_grad: no per-thread gradient buffers */
} rf_flow_ws_opts;
/* Threads = rf_get_threads(), usable for training. */
rf_flow_ws *rf_flow_ws_create(const rf_flow *f, int max_batch, int memory_saving, rf_err *e);
rf_flow_ws *rf_flow_ws_create_opts(const rf_flow *f, const rf_flow_ws_opts *o, rf_err *e);
void rf_flow_ws_free(rf_flow_ws *w);
/* Bytes of activation buffers (they scale with the batch and, without memory saving, depth). */
size_t rf_flow_ws_bytes(const rf_flow_ws *w);
/* Bytes of the per-thread gradient buffers (shards after the first: (threads - 1) x n_params
 * floats; 0 for an inference workspace). */
size_t rf_flow_ws_grad_bytes(const rf_flow_ws *w);
int rf_flow_ws_threads(const rf_flow_ws *w);
/* Runs fn(ctx, k, T) for k = 0..T-1 on the workspace's T threads (k = 0 on the caller's) and
 * returns when all are done; for passes over the parameters that belong with a training step
 * (the optimiser). */
void rf_flow_ws_run(rf_flow_ws *w, void (*fn)(void *ctx, int k, int T), void *ctx);

/* A per-row affine map of the latent before the base, for training with subject adaptation
 * (renflow/adapt.h): row i of the next rf_flow_loss_grad batches gives the base
 * z'_j = a[r * G + g(j)] z_j + b[r * G + g(j)], r = row[i], g(j) the base group of dimension j
 * (j itself for an untied base), and adds ld[r] (the map's log-determinant) to the row's
 * log-likelihood. a, b and ld are constants of the step (no gradient flows into them). The
 * arrays are not copied: they must stay valid while set. la == NULL or la->row == NULL clears
 * it. Training workspaces only. */
typedef struct rf_latent_affine {
    int G;
    const int *row;
    const float *a, *b, *ld;
} rf_latent_affine;
int rf_flow_ws_set_latent_affine(rf_flow_ws *w, const rf_latent_affine *la, rf_err *e);

/* x -> z (standardisation included); logdet[i] = total log|det dz/dx| (may be NULL). */
void rf_flow_forward(const rf_flow *f, rf_flow_ws *w, int n, const float *x, float *z,
                     float *logdet);
/* z -> x; logdet[i] = log|det dz/dx| evaluated at the produced x (may be NULL). */
void rf_flow_inverse(const rf_flow *f, rf_flow_ws *w, int n, const float *z, float *x,
                     float *logdet);
/* logp[i] = log p(x_i) (or log p(x_i | y_i) when labels are given for a class-conditional base;
 * with labels NULL a class-conditional base gives the marginal log sum_c p(x|c) p(c)). */
void rf_flow_log_prob(const rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *labels,
                      float *logp);
/* Mean negative log-likelihood over the batch, and its gradient accumulated into f->grads
 * (which the caller zeroes). Returns the loss (NAN for n < 1). ce_weight > 0 (class-conditional
 * only) adds ce_weight * mean cross-entropy of p(y|x) (hybrid loss). */
double rf_flow_loss_grad(rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *labels,
                         float ce_weight);
/* Draws n samples (labels may be NULL). The base draws come from rng in row order, so the samples
 * do not depend on the workspace's batch size. */
void rf_flow_sample(const rf_flow *f, rf_flow_ws *w, int n, const int *labels, rf_rng *rng,
                    float *x);
/* For class-conditional flows: out[i*C + c] = log p(c | x_i) with uniform class prior
 * unless log_prior (C values) is given. */
void rf_flow_class_log_posterior(const rf_flow *f, rf_flow_ws *w, int n, const float *x,
                                 const float *log_prior, float *out);

/* ---- model file (.rf) ----
 * Layout (little-endian):
 *   "RENFLOW\0" magic (8) | u32 format version | u32 header-json length | header JSON
 *   | u64 n_params | float32 params[n_params] | float32 shift[D] | float32 scale[D]
 *   | 32-byte SHA-256 of everything before it.
 * Written atomically. Loading verifies every field and the checksum.
 * Version 2 adds the optional header field "subject_adapt" (renflow/adapt.h). A file is written
 * as version 2 only when it has that field, so renflow versions that read version 1 keep reading
 * every other file and refuse an adapted model instead of classifying without its adaptation. */
#define RF_MODEL_FORMAT_VERSION 2u
int rf_flow_save(const rf_flow *f, const char *path, rf_err *e);
/* The file's bytes in memory (malloc'd), e.g. to embed in a checkpoint. */
int rf_flow_to_bytes(const rf_flow *f, unsigned char **buf, size_t *len, rf_err *e);
rf_flow *rf_flow_load(const char *path, rf_err *e);
/* Same, from memory (used by the loader and by tests). */
rf_flow *rf_flow_load_mem(const unsigned char *buf, size_t len, const char *name, rf_err *e);
/* Architecture JSON (spec + layers). Caller frees with cJSON_Delete. */
struct cJSON *rf_flow_spec_to_json(const rf_flow_spec *s);
int rf_flow_spec_from_json(const struct cJSON *j, rf_flow_spec *s, rf_err *e);

#endif
