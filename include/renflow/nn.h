/* renflow nn: dense products (OpenBLAS), activations, MLP and MADE conditioners.
 * Conditioners need not be invertible. Forward and backward sit side by side in each file.
 * Layout: batches are row-major (n x features). Parameters live in one contiguous buffer owned
 * by the model; a conditioner only knows its size and reads/writes at the pointer it is given. */
#ifndef RENFLOW_NN_H
#define RENFLOW_NN_H

#include "renflow/core.h"

/* C[M x N] = alpha * op(A) * op(B) + beta * C, row-major; ta/tb: 0 = as is, 1 = transposed. */
void rf_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc);

typedef enum { RF_ACT_RELU = 0, RF_ACT_GELU = 1, RF_ACT_TANH = 2 } rf_act;
const char *rf_act_name(rf_act a);
int rf_act_parse(const char *s, rf_act *out); /* RF_OK or RF_EARG */
/* y = act(x) elementwise; dx = dy * act'(x) (x is the pre-activation). In place allowed for y==x. */
void rf_act_forward(rf_act a, size_t n, const float *x, float *y);
void rf_act_backward(rf_act a, size_t n, const float *x, const float *dy, float *dx);

/* ---------------- MLP ----------------
 * n_in -> hidden (x n_hidden) -> n_out. Hidden layers use `act`. With residual = 1, hidden
 * layers after the first compute h' = h + act(W h + b). The last layer is zero-initialised, so a
 * fresh MLP outputs exactly 0 (a fresh coupling block is the identity). */
typedef struct rf_mlp_cfg {
    int n_in, n_out;
    int hidden;     /* width */
    int n_hidden;   /* number of hidden layers, >= 1 */
    rf_act act;
    int residual;
} rf_mlp_cfg;

typedef struct rf_mlp rf_mlp;
rf_mlp *rf_mlp_create(const rf_mlp_cfg *cfg, rf_err *e);
void rf_mlp_free(rf_mlp *m);
const rf_mlp_cfg *rf_mlp_config(const rf_mlp *m);
size_t rf_mlp_n_params(const rf_mlp *m);
/* Kaiming-uniform style hidden init from rng; last layer weights and bias = 0. */
void rf_mlp_init_params(const rf_mlp *m, float *params, rf_rng *rng);
/* Floats of `cache` that forward needs for a batch of n (pre-activations and activations). */
size_t rf_mlp_cache_floats(const rf_mlp *m, int n);
/* Floats of `scratch` that backward needs for a batch of n. */
size_t rf_mlp_scratch_floats(const rf_mlp *m, int n);
/* out (n x n_out). cache must hold rf_mlp_cache_floats(n); it is always required (inference too). */
void rf_mlp_forward(const rf_mlp *m, const float *params, int n, const float *x, float *out,
                    float *cache);
/* The same output when no backward follows (inference, inverses): skips what only the backward
 * needs. cache is still required as working memory. */
void rf_mlp_forward_infer(const rf_mlp *m, const float *params, int n, const float *x, float *out,
                          float *cache);
/* Given dout (n x n_out) and the cache of the forward on x: accumulates dparams (+=) and writes
 * dx (n x n_in) unless dx == NULL. */
void rf_mlp_backward(const rf_mlp *m, const float *params, int n, const float *x,
                     const float *dout, float *dx, float *dparams, const float *cache,
                     float *scratch);

/* ---------------- MADE (masked autoencoder for distribution estimation) ----------------
 * Input dimension D in its natural order; output has P values per input dimension, laid out
 * dim-major: out[i * P + j] is parameter j of dimension i, and depends only on x[0..i-1]
 * (out for i = 0 is a learned constant). Hidden degrees cycle through 1..D-1. The last layer is
 * zero-initialised. Residual connections between hidden layers are allowed (masks equal). */
typedef struct rf_made_cfg {
    int D, P;
    int hidden, n_hidden;
    rf_act act;
    int residual;
} rf_made_cfg;

typedef struct rf_made rf_made;
rf_made *rf_made_create(const rf_made_cfg *cfg, rf_err *e);
void rf_made_free(rf_made *m);
const rf_made_cfg *rf_made_config(const rf_made *m);
size_t rf_made_n_params(const rf_made *m);
/* Masked weights are stored as exact zeros in params: init writes them as 0, backward writes 0
 * gradients there, so optimizers keep them 0. rf_made_project re-zeroes them (after loading). */
void rf_made_init_params(const rf_made *m, float *params, rf_rng *rng);
void rf_made_project(const rf_made *m, float *params);
size_t rf_made_cache_floats(const rf_made *m, int n);
size_t rf_made_scratch_floats(const rf_made *m, int n);
void rf_made_forward(const rf_made *m, const float *params, int n, const float *x, float *out,
                     float *cache);
void rf_made_forward_infer(const rf_made *m, const float *params, int n, const float *x,
                           float *out, float *cache);
void rf_made_backward(const rf_made *m, const float *params, int n, const float *x,
                      const float *dout, float *dx, float *dparams, const float *cache,
                      float *scratch);

#endif
