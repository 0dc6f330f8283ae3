/* Dense network (shared with MADE through dense.h) and the public rf_mlp wrapper.
 *
 * Layer l = 0..n_hidden computes z_l = in_l W_l^T + b_l with W_l row-major [out][in], stored
 * layer after layer as W_l then b_l. Hidden layers (l < n_hidden) output h_l = act(z_l), or with
 * residual and l >= 1, h_l = h_{l-1} + act(z_l); in_0 = x, in_l = h_{l-1}; the last layer is
 * linear: out = z_{n_hidden}.
 * Cache (per hidden layer l, each n x hidden): z_l then h_l. Scratch: dh and dz (n x hidden). */
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

/* z = in W^T + b: rows of z start as b, then GEMM accumulates (beta = 1). */
static void affine_forward(const rf_dense_layer *L, const float *p, int n, const float *in,
                           float *z) {
    const float *b = p + L->b;
    const size_t out = (size_t)L->out;
#pragma omp parallel for schedule(static) if ((size_t)n * out >= RF_NN_PAR_MIN)
    for (int i = 0; i < n; i++) memcpy(z + (size_t)i * out, b, sizeof(float) * out);
    rf_gemm(0, 1, n, L->out, L->in, 1.0f, in, L->in, p + L->w, L->in, 1.0f, z, L->out);
}

/* Backward of z = in W^T + b given dz: dW += dz^T in, db += column sums of dz and, when din is
 * non-NULL, din = dz W + beta * din. */
static void affine_backward(const rf_dense_layer *L, const float *p, int n, const float *in,
                            const float *dz, float *dp, float *din, float beta) {
    rf_gemm(1, 0, L->out, L->in, n, 1.0f, dz, L->out, in, L->in, 1.0f, dp + L->w, L->in);
    float *db = dp + L->b;
    for (int i = 0; i < n; i++) {
        const float *row = dz + (size_t)i * L->out;
        for (int j = 0; j < L->out; j++) db[j] += row[j];
    }
    if (din) rf_gemm(0, 0, n, L->in, L->out, 1.0f, dz, L->out, p + L->w, L->in, beta, din, L->in);
}

void rf_dense_forward(const rf_mlp_cfg *c, const float *params, int n, const float *x,
                      float *out, float *cache) {
    const size_t nh = (size_t)(n > 0 ? n : 0) * (size_t)c->hidden;
    const float *in = x;
    for (int l = 0; l < c->n_hidden; l++) {
        const rf_dense_layer L = rf_dense_layer_at(c, l);
        float *z = cache + 2 * (size_t)l * nh, *h = z + nh;
        affine_forward(&L, params, n, in, z);
        rf_act_forward(c->act, nh, z, h);
        if (c->residual && l > 0) {
#pragma omp parallel for schedule(static) if (nh >= RF_NN_PAR_MIN)
            for (size_t i = 0; i < nh; i++) h[i] += in[i];
        }
        in = h;
    }
    const rf_dense_layer last = rf_dense_layer_at(c, c->n_hidden);
    affine_forward(&last, params, n, in, out);
}

/* Reverse pass: dh holds dL/dh_l, dz = dh * act'(z_l). A residual layer passes dh straight to
 * h_{l-1} as well, hence beta = 1 when forming dL/dh_{l-1} = dz W_l (+ dh). */
void rf_dense_backward(const rf_mlp_cfg *c, const float *params, int n, const float *x,
                       const float *dout, float *dx, float *dparams, const float *cache,
                       float *scratch) {
    const size_t nh = (size_t)(n > 0 ? n : 0) * (size_t)c->hidden;
    float *dh = scratch, *dz = scratch + nh;
    const rf_dense_layer last = rf_dense_layer_at(c, c->n_hidden);
    const float *h_last = cache + (2 * (size_t)c->n_hidden - 1) * nh;
    affine_backward(&last, params, n, h_last, dout, dparams, dh, 0.0f);
    for (int l = c->n_hidden - 1; l >= 0; l--) {
        const rf_dense_layer L = rf_dense_layer_at(c, l);
        const float *z = cache + 2 * (size_t)l * nh;
        const float *in = l > 0 ? z - nh : x; /* h_{l-1} sits just before z_l */
        rf_act_backward(c->act, nh, z, dh, dz);
        if (l > 0)
            affine_backward(&L, params, n, in, dz, dparams, dh, c->residual ? 1.0f : 0.0f);
        else
            affine_backward(&L, params, n, in, dz, dparams, dx, 0.0f);
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
    rf_dense_forward(&m->cfg, params, n, x, out, cache);
}

void rf_mlp_backward(const rf_mlp *m, const float *params, int n, const float *x,
                     const float *dout, float *dx, float *dparams, const float *cache,
                     float *scratch) {
    rf_dense_backward(&m->cfg, params, n, x, dout, dx, dparams, cache, scratch);
}
