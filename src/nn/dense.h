/* Private to src/nn: the plain dense network shared by rf_mlp (mlp.c) and rf_made (made.c).
 * An rf_mlp_cfg describes the architecture; MADE reuses it with n_in = D, n_out = D * P and
 * keeps its masked weights at exactly zero in params, so the dense passes serve both. */
#ifndef RF_NN_DENSE_H
#define RF_NN_DENSE_H

#include <stdint.h>

#include "renflow/nn.h"

#define RF_NN_INTERNAL __attribute__((visibility("hidden")))

/* Public elementwise entry points (rf_act_*) run under OpenMP from this many floats on. The dense
 * network's own loops never open a parallel region: renflow parallelises over the rows of a batch
 * one level up (one shard of rows per thread, see src/flow/flow_ws.c). */
#define RF_NN_PAR_MIN 32768
/* Upper bound on every width (n_in, n_out, hidden, D * P): keeps index arithmetic in range. */
#define RF_NN_MAX_WIDTH (1 << 20)
#define RF_NN_MAX_DEPTH 1024

/* Layer l in 0..n_hidden maps `in` to `out` features; W (out x in, row-major) starts at params[w],
 * the bias (out) at params[b]. Layer n_hidden is the linear output layer. */
typedef struct rf_dense_layer {
    int in, out;
    size_t w, b;
} rf_dense_layer;

static inline rf_dense_layer rf_dense_layer_at(const rf_mlp_cfg *c, int l) {
    const size_t H = (size_t)c->hidden;
    rf_dense_layer L;
    L.in = l == 0 ? c->n_in : c->hidden;
    L.out = l == c->n_hidden ? c->n_out : c->hidden;
    L.w = l == 0 ? 0 : ((size_t)c->n_in + 1) * H + (size_t)(l - 1) * (H + 1) * H;
    L.b = L.w + (size_t)L.out * (size_t)L.in;
    return L;
}

/* Validates c (who names the caller in messages); RF_OK or RF_EARG. */
RF_NN_INTERNAL int rf_dense_check(const rf_mlp_cfg *c, const char *who, rf_err *e);
RF_NN_INTERNAL size_t rf_dense_n_params(const rf_mlp_cfg *c);
RF_NN_INTERNAL size_t rf_dense_cache_floats(const rf_mlp_cfg *c, int n);
RF_NN_INTERNAL size_t rf_dense_scratch_floats(const rf_mlp_cfg *c, int n);
/* Hidden weights ~ U(-a, a), a = sqrt(3 / fan_in) (Kaiming-uniform with gain 1, variance
 * 1 / fan_in), where fan_in counts the unit's free inputs (mask[i] != 0; all when mask is
 * NULL). Masked weights, all biases and the whole last layer are set to 0. */
RF_NN_INTERNAL void rf_dense_init(const rf_mlp_cfg *c, float *params, rf_rng *rng,
                                  const uint8_t *mask);
/* Optional structure of the last layer (MADE): its output rows in n consecutive bands, band g
 * covering rows [row[g], row[g + 1]) (row[0] = 0, row[n] = n_out) whose weights are exactly zero
 * outside input columns [0, k[g]). The passes then multiply only those leading columns (k[g] = 0:
 * the band is its bias). NULL: one band, all columns. */
#define RF_DENSE_MAX_BANDS 16
typedef struct rf_dense_bands {
    int n;
    int row[RF_DENSE_MAX_BANDS + 1];
    int k[RF_DENSE_MAX_BANDS];
} rf_dense_bands;

/* need_grad = 0: only the output is wanted (no backward follows), so the derivative half of the
 * cache is not written. */
RF_NN_INTERNAL void rf_dense_forward(const rf_mlp_cfg *c, const float *params, int n,
                                     const float *x, float *out, float *cache, int need_grad);
RF_NN_INTERNAL void rf_dense_backward(const rf_mlp_cfg *c, const float *params, int n,
                                      const float *x, const float *dout, float *dx,
                                      float *dparams, const float *cache, float *scratch);
/* The same with the last layer in bands (b may be NULL). Free weights get the same gradient;
 * weights outside a band's columns are neither read nor written (dparams keeps its value there). */
RF_NN_INTERNAL void rf_dense_forward_b(const rf_mlp_cfg *c, const rf_dense_bands *b,
                                       const float *params, int n, const float *x, float *out,
                                       float *cache, int need_grad);
RF_NN_INTERNAL void rf_dense_backward_b(const rf_mlp_cfg *c, const rf_dense_bands *b,
                                        const float *params, int n, const float *x,
                                        const float *dout, float *dx, float *dparams,
                                        const float *cache, float *scratch);

#endif
