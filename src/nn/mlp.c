/* Dense network (shared with MADE through dense.h) and the public rf_mlp wrapper.
 *
 * Layer l = 0..n_hidden computes z_l = in_l W_l^T + b_l with W_l row-major [out][in], stored
 * layer after layer as W_l then b_l. Hidden layers (l < n_hidden) output h_l = act(z_l), or with
 * residual and l >= 1, h_l = h_{l-1} + act(z_l); in_0 = x, in_l = h_{l-1}; the last layer is
 * linear: out = z_{n_hidden}.
 * Cache (per hidden layer l, each n x hidden): A_l then h_l, where A_l = act'(z_l) for tanh and
 * GELU and for residual ReLU layers (1 or 0), saved by the forward pass for the backward; a plain
 * ReLU layer leaves A_l unused (its derivative is [h_l > 0]). The pre-activation z_l is never
 * stored: it is computed in place of h_l. Scratch: dh and dz (n x hidden). */
#include <math.h>
#include <string.h>

#include "dense.h"

int rf_dense_check(const rf_mlp_cfg *c, const char *who, rf_err *e) {
    if (c->n_in < 0 || c->n_in > RF_NN_MAX_WIDTH)
        return rf_err_set(e, RF_EARG, "%s: input width %d out of range", who, c->n_in);
    if (c->n_out < 1 || c->n_out > RF_NN_MAX_WIDTH)
        return rf_err_set(e, RF_EARG, "%s: output width %d out of range", who, c->n_out);
    if (c->hidden < 1 || c->hidden > RF_NN_MAX_WIDTH)
        return rf_err_set(e, RF_EARG, "%s: hidden width %d out of range", who, c->hidden);
    if (c->n_hidden < 1 || c->n_hidden > RF_NN_MAX_DEPTH)
        return rf_err_set(e, RF_EARG, "%s: number of hidden layers %d out of range [1, %d]",
                          who, c->n_hidden, RF_NN_MAX_DEPTH);
    if (c->act != RF_ACT_RELU && c->act != RF_ACT_GELU && c->act != RF_ACT_TANH)
        return rf_err_set(e, RF_EARG, "%s: unknown activation %d", who, (int)c->act);
    return RF_OK;
}

size_t rf_dense_n_params(const rf_mlp_cfg *c) {
    return rf_dense_layer_at(c, c->n_hidden).b + (size_t)c->n_out;
}

size_t rf_dense_cache_floats(const rf_mlp_cfg *c, int n) {
    return 2 * (size_t)c->n_hidden * (size_t)(n > 0 ? n : 0) * (size_t)c->hidden;
}

size_t rf_dense_scratch_floats(const rf_mlp_cfg *c, int n) {
    return 2 * (size_t)(n > 0 ? n : 0) * (size_t)c->hidden;
}

void rf_dense_init(const rf_mlp_cfg *c, float *params, rf_rng *rng, const uint8_t *mask) {
    for (int l = 0; l < c->n_hidden; l++) {
        const rf_dense_layer L = rf_dense_layer_at(c, l);
        for (int r = 0; r < L.out; r++) {
            const size_t row = L.w + (size_t)r * L.in;
            int fan = L.in;
            if (mask) {
                fan = 0;
                for (int k = 0; k < L.in; k++) fan += mask[row + k] != 0;
            }
            const double a = sqrt(3.0 / (fan > 0 ? fan : 1));
            for (int k = 0; k < L.in; k++) {
                const double u = rf_rng_uniform(rng); /* drawn for every weight: stable stream */
                params[row + k] = (mask && !mask[row + k]) ? 0.0f : (float)((2.0 * u - 1.0) * a);
            }
        }
        memset(params + L.b, 0, sizeof(float) * (size_t)L.out);
    }
    const rf_dense_layer last = rf_dense_layer_at(c, c->n_hidden);
    memset(params + last.w, 0, sizeof(float) * ((size_t)last.out * last.in + last.out));
}

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

/* z = in W^T + b: rows of z start as b, then GEMM accumulates (beta = 1; OpenBLAS would
 * otherwise spend a pass zeroing z). */
static void affine_forward(const rf_dense_layer *L, const float *p, int n, const float *in,
                           float *z) {
    const float *b = p + L->b;
    const size_t out = (size_t)L->out;
    for (int i = 0; i < n; i++) memcpy(z + (size_t)i * out, b, sizeof(float) * out);
    rf_gemm(0, 1, n, L->out, L->in, 1.0f, in, L->in, p + L->w, L->in, 1.0f, z, L->out);
}

/* The last layer's z = in W^T + b, band by band (b non-NULL): each band's GEMM reads only its
 * leading k columns of W and of in. */
static void banded_forward(const rf_dense_layer *L, const rf_dense_bands *b, const float *p, int n,
                           const float *in, float *z) {
    const float *bias = p + L->b;
    const size_t out = (size_t)L->out;
    for (int i = 0; i < n; i++) memcpy(z + (size_t)i * out, bias, sizeof(float) * out);
    for (int g = 0; g < b->n; g++) {
        const int r0 = b->row[g], rows = b->row[g + 1] - r0;
        if (b->k[g] > 0)
            rf_gemm(0, 1, n, rows, b->k[g], 1.0f, in, L->in, p + L->w + (size_t)r0 * L->in, L->in,
                    1.0f, z + r0, L->out);
    }
}

/* One pass over a hidden layer's pre-activations, in place: h holds z on entry and
 * act(z) (+ prev, residual) on exit; A, when non-NULL, receives act'(z), so that the backward
 * pass needs no transcendental function. Plain ReLU needs no A: its derivative is [h > 0]. */
static void act_pass(rf_act act, size_t m, float *restrict h, const float *restrict prev,
                     float *restrict A) {
    switch (act) {
    case RF_ACT_RELU: /* z < 0 ? 0 : z keeps NaN visible */
        if (!prev) {
#pragma omp simd
            for (size_t i = 0; i < m; i++) h[i] = h[i] < 0.0f ? 0.0f : h[i];
        } else if (!A) {
#pragma omp simd
            for (size_t i = 0; i < m; i++) h[i] = prev[i] + (h[i] < 0.0f ? 0.0f : h[i]);
        } else {
#pragma omp simd
            for (size_t i = 0; i < m; i++) {
                const float z = h[i];
                A[i] = z > 0.0f ? 1.0f : 0.0f;
                h[i] = prev[i] + (z < 0.0f ? 0.0f : z);
            }
        }
        break;
    case RF_ACT_GELU:
        for (size_t i = 0; i < m; i++) {
            const float z = h[i], e = erff(z * INV_SQRT2);
            const float y = 0.5f * z * (1.0f + e);
            if (A) A[i] = 0.5f * (1.0f + e) + z * (INV_SQRT_2PI * expf(-0.5f * z * z));
            h[i] = prev ? prev[i] + y : y;
        }
        break;
    case RF_ACT_TANH:
        for (size_t i = 0; i < m; i++) {
            const float t = tanhf(h[i]);
            if (A) A[i] = 1.0f - t * t;
            h[i] = prev ? prev[i] + t : t;
        }
        break;
    }
}

/* dz = dh * act'(z) and db += column sums of dz, in one pass. The derivative comes from A
 * (act'(z) saved by the forward pass) or, for plain ReLU (A == NULL), from the output h. */
static void dact_pass(int n, int m, const float *restrict dh, const float *restrict A,
                      const float *restrict h, int relu, float *restrict dz, float *restrict db) {
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * m;
        const float *g = dh + o;
        float *d = dz + o;
        if (!A) {
            const float *hr = h + o;
#pragma omp simd
            for (int j = 0; j < m; j++) {
                const float gj = g[j], v = hr[j] > 0.0f ? gj : 0.0f; /* load first: if-convertible */
                d[j] = v;
                db[j] += v;
            }
        } else if (relu) {
            const float *a = A + o;
#pragma omp simd
            for (int j = 0; j < m; j++) {
                const float gj = g[j], v = a[j] > 0.0f ? gj : 0.0f;
                d[j] = v;
                db[j] += v;
            }
        } else {
            const float *a = A + o;
#pragma omp simd
            for (int j = 0; j < m; j++) {
                const float v = g[j] * a[j];
                d[j] = v;
                db[j] += v;
            }
        }
    }
}

/* Whether hidden layer l keeps act'(z) in the first half of its cache slot. */
static int keeps_deriv(const rf_mlp_cfg *c, int l) {
    return c->act != RF_ACT_RELU || (c->residual && l > 0);
}

void rf_dense_forward(const rf_mlp_cfg *c, const float *params, int n, const float *x,
                      float *out, float *cache, int need_grad) {
    rf_dense_forward_b(c, NULL, params, n, x, out, cache, need_grad);
}

void rf_dense_forward_b(const rf_mlp_cfg *c, const rf_dense_bands *b, const float *params, int n,
                        const float *x, float *out, float *cache, int need_grad) {
    const size_t nh = (size_t)(n > 0 ? n : 0) * (size_t)c->hidden;
    const float *in = x;
    for (int l = 0; l < c->n_hidden; l++) {
        const rf_dense_layer L = rf_dense_layer_at(c, l);
        float *A = cache + 2 * (size_t)l * nh, *h = A + nh;
        affine_forward(&L, params, n, in, h);
        act_pass(c->act, nh, h, c->residual && l > 0 ? in : NULL,
                 need_grad && keeps_deriv(c, l) ? A : NULL);
        in = h;
    }
    const rf_dense_layer last = rf_dense_layer_at(c, c->n_hidden);
    if (b) banded_forward(&last, b, params, n, in, out);
    else affine_forward(&last, params, n, in, out);
}

/* Reverse pass: dh holds dL/dh_l, dz = dh * act'(z_l); per layer dW += dz^T in, db += column
 * sums of dz, and dL/dh_{l-1} = dz W_l. A residual layer passes dh straight to h_{l-1} as well,
 * hence beta = 1 when forming dL/dh_{l-1} in place over dh. */
void rf_dense_backward(const rf_mlp_cfg *c, const float *params, int n, const float *x,
                       const float *dout, float *dx, float *dparams, const float *cache,
                       float *scratch) {
    rf_dense_backward_b(c, NULL, params, n, x, dout, dx, dparams, cache, scratch);
}

void rf_dense_backward_b(const rf_mlp_cfg *c, const rf_dense_bands *b, const float *params, int n,
                         const float *x, const float *dout, float *dx, float *dparams,
                         const float *cache, float *scratch) {
    const size_t nh = (size_t)(n > 0 ? n : 0) * (size_t)c->hidden;
    const int H = c->hidden;
    float *dh = scratch, *dz = scratch + nh;
    const rf_dense_layer last = rf_dense_layer_at(c, c->n_hidden);
    const float *h_last = cache + (2 * (size_t)c->n_hidden - 1) * nh;
    if (!b) {
        rf_gemm(1, 0, last.out, last.in, n, 1.0f, dout, last.out, h_last, last.in, 1.0f,
                dparams + last.w, last.in);
    } else {
        for (int g = 0; g < b->n; g++) {
            const int r0 = b->row[g], rows = b->row[g + 1] - r0;
            if (b->k[g] > 0)
                rf_gemm(1, 0, rows, b->k[g], n, 1.0f, dout + r0, last.out, h_last, last.in, 1.0f,
                        dparams + last.w + (size_t)r0 * last.in, last.in);
        }
    }
    float *db = dparams + last.b;
    for (int i = 0; i < n; i++) {
        const float *row = dout + (size_t)i * last.out;
#pragma omp simd
        for (int j = 0; j < last.out; j++) db[j] += row[j];
    }
    if (!b) {
        rf_gemm(0, 0, n, last.in, last.out, 1.0f, dout, last.out, params + last.w, last.in, 0.0f,
                dh, last.in);
    } else {
        /* dh = sum over bands of dout[:, band] W[band, :k]: a full-width band first (beta = 0),
         * or dh zeroed when there is none */
        int first = -1;
        for (int g = 0; g < b->n && first < 0; g++)
            if (b->k[g] == last.in) first = g;
        if (first < 0) memset(dh, 0, sizeof(float) * nh);
        for (int t = -1; t < b->n; t++) {
            const int g = t < 0 ? first : t;
            if (g < 0 || (t >= 0 && g == first) || b->k[g] <= 0) continue;
            const int r0 = b->row[g], rows = b->row[g + 1] - r0;
            rf_gemm(0, 0, n, b->k[g], rows, 1.0f, dout + r0, last.out,
                    params + last.w + (size_t)r0 * last.in, last.in, t < 0 ? 0.0f : 1.0f, dh,
                    last.in);
        }
    }
    for (int l = c->n_hidden - 1; l >= 0; l--) {
        const rf_dense_layer L = rf_dense_layer_at(c, l);
        const float *A = cache + 2 * (size_t)l * nh, *h = A + nh;
        const float *in = l > 0 ? A - nh : x; /* h_{l-1} sits just before this layer's slot */
        dact_pass(n, H, dh, keeps_deriv(c, l) ? A : NULL, h, c->act == RF_ACT_RELU, dz,
                  dparams + L.b);
        rf_gemm(1, 0, L.out, L.in, n, 1.0f, dz, L.out, in, L.in, 1.0f, dparams + L.w, L.in);
        float *din = l > 0 ? dh : dx;
        if (din)
            rf_gemm(0, 0, n, L.in, L.out, 1.0f, dz, L.out, params + L.w, L.in,
                    l > 0 && c->residual ? 1.0f : 0.0f, din, L.in);
    }
}

/* ---------------- public MLP ---------------- */

struct rf_mlp {
    rf_mlp_cfg cfg;
    size_t n_params;
};

rf_mlp *rf_mlp_create(const rf_mlp_cfg *cfg, rf_err *e) {
    if (!cfg) {
        rf_err_set(e, RF_EARG, "mlp: no configuration");
        return NULL;
    }
    rf_mlp_cfg c = *cfg;
    c.residual = c.residual != 0;
    if (rf_dense_check(&c, "mlp", e) != RF_OK) return NULL;
    rf_mlp *m = rf_zalloc(sizeof *m, e);
    if (!m) return NULL;
    m->cfg = c;
    m->n_params = rf_dense_n_params(&c);
    return m;
}

void rf_mlp_free(rf_mlp *m) { rf_free(m); }
const rf_mlp_cfg *rf_mlp_config(const rf_mlp *m) { return &m->cfg; }
size_t rf_mlp_n_params(const rf_mlp *m) { return m->n_params; }

void rf_mlp_init_params(const rf_mlp *m, float *params, rf_rng *rng) {
    rf_dense_init(&m->cfg, params, rng, NULL);
}

size_t rf_mlp_cache_floats(const rf_mlp *m, int n) { return rf_dense_cache_floats(&m->cfg, n); }
size_t rf_mlp_scratch_floats(const rf_mlp *m, int n) {
    return rf_dense_scratch_floats(&m->cfg, n);
}

void rf_mlp_forward(const rf_mlp *m, const float *params, int n, const float *x, float *out,
                    float *cache) {
    rf_dense_forward(&m->cfg, params, n, x, out, cache, 1);
}

void rf_mlp_forward_infer(const rf_mlp *m, const float *params, int n, const float *x, float *out,
                          float *cache) {
    rf_dense_forward(&m->cfg, params, n, x, out, cache, 0);
}

void rf_mlp_backward(const rf_mlp *m, const float *params, int n, const float *x,
                     const float *dout, float *dx, float *dparams, const float *cache,
                     float *scratch) {
    rf_dense_backward(&m->cfg, params, n, x, dout, dx, dparams, cache, scratch);
}
