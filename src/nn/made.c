/* MADE (Germain et al. 2015): a dense network (dense.h) whose masked weights are exact zeros.
 *
 * Degrees: input d has degree d + 1 (1..D). Hidden unit k, in every hidden layer, has degree
 * m(k) = 1 + k mod (D - 1), cycling through 1..D-1; for D == 1 every m(k) = 1. Connections:
 *   input d   -> hidden k       iff m(k) >= d + 1
 *   hidden k1 -> hidden k2      iff m(k2) >= m(k1)   (so the residual identity k -> k is fine)
 *   hidden k  -> output i*P + j iff i + 1 > m(k)
 * Degrees never decrease along a path, starting at d + 1 for x[d] and staying below i + 1
 * before output block i, so block i depends on x[0..i-1] only. Block 0 (and, for D == 1, the whole output) sees no hidden unit: it is the
 * last-layer bias, a learned constant.
 * With masked weights held at 0 the forward pass is the plain dense one; backward zeroes the
 * gradient of masked weights so optimisers keep them at 0. */
#include <string.h>

#include "dense.h"

struct rf_made {
    rf_made_cfg cfg;
    rf_mlp_cfg net; /* D -> hidden x n_hidden -> D * P */
    size_t n_params;
    uint8_t mask[]; /* one per parameter: 1 free, 0 held at zero (biases are always free) */
};

static int hidden_degree(int D, int k) { return 1 + k % (D > 1 ? D - 1 : 1); }

/* Whether weight W_l[r][k] (unit r of layer l reads input k of that layer) is free. */
static int connected(const rf_made *m, int l, int r, int k) {
    const int D = m->cfg.D;
    if (l == 0) return hidden_degree(D, r) >= k + 1;
    if (l < m->net.n_hidden) return hidden_degree(D, r) >= hidden_degree(D, k);
    return r / m->cfg.P + 1 > hidden_degree(D, k);
}

rf_made *rf_made_create(const rf_made_cfg *cfg, rf_err *e) {
    if (!cfg) {
        rf_err_set(e, RF_EARG, "made: no configuration");
        return NULL;
    }
    if (cfg->D < 1 || cfg->P < 1 || cfg->D > RF_NN_MAX_WIDTH / cfg->P) {
        rf_err_set(e, RF_EARG, "made: D = %d, P = %d out of range", cfg->D, cfg->P);
        return NULL;
    }
    rf_mlp_cfg net = {cfg->D, cfg->D * cfg->P, cfg->hidden, cfg->n_hidden, cfg->act,
                      cfg->residual != 0};
    if (rf_dense_check(&net, "made", e) != RF_OK) return NULL;
    const size_t np = rf_dense_n_params(&net);
    rf_made *m = rf_zalloc(sizeof *m + np, e);
    if (!m) return NULL;
    m->cfg = *cfg;
    m->cfg.residual = net.residual;
    m->net = net;
    m->n_params = np;
    for (int l = 0; l <= net.n_hidden; l++) {
        const rf_dense_layer L = rf_dense_layer_at(&net, l);
        for (int r = 0; r < L.out; r++)
            for (int k = 0; k < L.in; k++)
                m->mask[L.w + (size_t)r * L.in + k] = (uint8_t)connected(m, l, r, k);
        memset(m->mask + L.b, 1, (size_t)L.out);
    }
    return m;
}

void rf_made_free(rf_made *m) { rf_free(m); }
const rf_made_cfg *rf_made_config(const rf_made *m) { return &m->cfg; }
size_t rf_made_n_params(const rf_made *m) { return m->n_params; }

void rf_made_init_params(const rf_made *m, float *params, rf_rng *rng) {
    rf_dense_init(&m->net, params, rng, m->mask);
}

void rf_made_project(const rf_made *m, float *params) {
    const uint8_t *mask = m->mask;
#pragma omp simd
    for (size_t i = 0; i < m->n_params; i++) params[i] = mask[i] ? params[i] : 0.0f;
}

size_t rf_made_cache_floats(const rf_made *m, int n) { return rf_dense_cache_floats(&m->net, n); }
size_t rf_made_scratch_floats(const rf_made *m, int n) {
    return rf_dense_scratch_floats(&m->net, n);
}

void rf_made_forward(const rf_made *m, const float *params, int n, const float *x, float *out,
                     float *cache) {
    rf_dense_forward(&m->net, params, n, x, out, cache, 1);
}

void rf_made_forward_infer(const rf_made *m, const float *params, int n, const float *x,
                           float *out, float *cache) {
    rf_dense_forward(&m->net, params, n, x, out, cache, 0);
}

/* Free entries accumulate as in the dense network; masked entries are written as 0 (their
 * gradient as constrained parameters), so dparams stays zero there. */
void rf_made_backward(const rf_made *m, const float *params, int n, const float *x,
                      const float *dout, float *dx, float *dparams, const float *cache,
                      float *scratch) {
    rf_dense_backward(&m->net, params, n, x, dout, dx, dparams, cache, scratch);
    rf_made_project(m, dparams);
}
