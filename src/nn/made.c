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
    rf_dense_bands bands; /* the output layer's nonzero leading columns, block by block */
    int banded;           /* whether the passes use bands (they save enough multiplications) */
    uint8_t mask[]; /* one per parameter: 1 free, 0 held at zero (biases are always free) */
};

/* Output block i (rows i*P .. i*P + P - 1) reads hidden units k with m(k) <= i only: for
 * hidden <= D - 1, the leading i columns of the output weights. Bands group consecutive blocks
 * by that column count rounded up to BAND_ALIGN (a whole vector of floats per GEMM row, masked
 * weights inside a band are zeros); bands are used when they skip at least a tenth of the
 * output layer's multiplications. */
#define BAND_ALIGN 16

static void made_bands(rf_made *m) {
    const rf_dense_layer L = rf_dense_layer_at(&m->net, m->net.n_hidden);
    const int P = m->cfg.P, D = m->cfg.D, H = L.in;
    rf_dense_bands *b = &m->bands;
    b->n = 0;
    m->banded = 0;
    size_t used = 0;
    for (int i = 0; i < D; i++) {
        const uint8_t *row = m->mask + L.w + (size_t)i * P * H;
        int k = 0;
        for (int c = 0; c < H; c++)
            if (row[c]) k = c + 1;
        k = (k + BAND_ALIGN - 1) / BAND_ALIGN * BAND_ALIGN;
        if (k > H) k = H;
        if (b->n == 0 || b->k[b->n - 1] != k) {
            if (b->n == RF_DENSE_MAX_BANDS) return;
            b->row[b->n] = i * P;
            b->k[b->n++] = k;
        }
        b->row[b->n] = (i + 1) * P;
        used += (size_t)k;
    }
    m->banded = used * 10 <= (size_t)D * H * 9;
}

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
    made_bands(m);
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
    rf_dense_forward_b(&m->net, m->banded ? &m->bands : NULL, params, n, x, out, cache, 1);
}

void rf_made_forward_infer(const rf_made *m, const float *params, int n, const float *x,
                           float *out, float *cache) {
    rf_dense_forward_b(&m->net, m->banded ? &m->bands : NULL, params, n, x, out, cache, 0);
}

/* Free entries accumulate as in the dense network; masked entries are written as 0 (their
 * gradient as constrained parameters), so dparams stays zero there. */
void rf_made_backward(const rf_made *m, const float *params, int n, const float *x,
                      const float *dout, float *dx, float *dparams, const float *cache,
                      float *scratch) {
    rf_dense_backward_b(&m->net, m->banded ? &m->bands : NULL, params, n, x, dout, dx, dparams,
                        cache, scratch);
    rf_made_project(m, dparams);
}
