/* 1-D convolutional conditioner (for the time-series coupling layers), forward and backward side
 * by side. Sequences are position-major ("NTC"): x[(i * T + t) * C + c], so a convolution is a
 * dense layer applied to every position's receptive field:
 *   col[(i*T + t), k * C + c] = in[i, t + (k - half) * dilation, c]   (0 outside [0, T)),
 *   z = col W^T + b          (one rf_gemm over all n * T positions),
 * with half = (kernel - 1) / 2 ('same' zero padding). The backward forms dW = dz^T col (im2col
 * recomputed from the cached layer input), db = column sums of dz, and the input gradient
 * dcol = dz W scattered back by col2im (a gather over taps, so rows never race).
 * kernel = 1 skips im2col entirely (col is the input itself).
 * Cache: per hidden layer z_l then h_l (n*T x hidden each). Forward scratch: one im2col buffer.
 * Backward scratch: im2col / dcol buffer, dh and dz (n*T x hidden each). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dense.h"
#include "renflow/tsflow.h"

struct rf_conv1d {
    rf_conv1d_cfg cfg;
    size_t n_params;
};

typedef struct {
    int in, out;
    size_t w, b;
} conv_layer;

static conv_layer layer_at(const rf_conv1d_cfg *c, int l) {
    conv_layer L;
    size_t off = 0;
    for (int k = 0; k <= l; k++) {
        L.in = k == 0 ? c->c_in : c->hidden;
        L.out = k == c->n_hidden ? c->c_out : c->hidden;
        L.w = off;
        L.b = off + (size_t)L.out * c->kernel * L.in;
        off = L.b + (size_t)L.out;
    }
    return L;
}

static int conv_check(const rf_conv1d_cfg *c, rf_err *e) {
    const int W = RF_NN_MAX_WIDTH, mi = c->c_in > c->hidden ? c->c_in : c->hidden;
    if (c->c_in < 1 || c->c_in > W)
        return rf_err_set(e, RF_EARG, "conv1d: input channels %d out of range [1, %d]", c->c_in, W);
    if (c->c_out < 1 || c->c_out > W)
        return rf_err_set(e, RF_EARG, "conv1d: output channels %d out of range [1, %d]", c->c_out, W);
    if (c->hidden < 1 || c->hidden > W)
        return rf_err_set(e, RF_EARG, "conv1d: hidden channels %d out of range [1, %d]", c->hidden, W);
    if (c->n_hidden < 1 || c->n_hidden > 64)
        return rf_err_set(e, RF_EARG, "conv1d: hidden layers %d out of range [1, 64]", c->n_hidden);
    if (c->length < 1 || c->length > W)
        return rf_err_set(e, RF_EARG, "conv1d: length %d out of range [1, %d]", c->length, W);
    if (c->kernel < 1 || c->kernel > 63 || c->kernel % 2 == 0)
        return rf_err_set(e, RF_EARG, "conv1d: kernel size must be odd and in [1, 63], got %d", c->kernel);
    if (c->dilation < 1 || c->dilation > 4096)
        return rf_err_set(e, RF_EARG, "conv1d: dilation must be in [1, 4096], got %d", c->dilation);
    if (c->act != RF_ACT_RELU && c->act != RF_ACT_GELU && c->act != RF_ACT_TANH)
        return rf_err_set(e, RF_EARG, "conv1d: unknown activation %d", (int)c->act);
    if ((size_t)c->kernel * (size_t)mi > (size_t)W)
        return rf_err_set(e, RF_EARG, "conv1d: kernel x channels too large (%d x %d)", c->kernel, mi);
    return RF_OK;
}

rf_conv1d *rf_conv1d_create(const rf_conv1d_cfg *cfg, rf_err *e) {
    if (!cfg) {
        rf_err_set(e, RF_EARG, "conv1d: no configuration");
        return NULL;
    }
    const rf_conv1d_cfg *c = cfg;
    if (conv_check(c, e) != RF_OK) return NULL;
    rf_conv1d *m = rf_zalloc(sizeof *m, e);
    if (!m) return NULL;
    m->cfg = *c;
    m->cfg.residual = c->residual != 0;
    const conv_layer last = layer_at(&m->cfg, m->cfg.n_hidden);
    m->n_params = last.b + (size_t)last.out;
    return m;
}

void rf_conv1d_free(rf_conv1d *m) { free(m); }
const rf_conv1d_cfg *rf_conv1d_config(const rf_conv1d *m) { return &m->cfg; }
size_t rf_conv1d_n_params(const rf_conv1d *m) { return m->n_params; }

void rf_conv1d_init_params(const rf_conv1d *m, float *p, rf_rng *rng) {
    const rf_conv1d_cfg *c = &m->cfg;
    for (int l = 0; l <= c->n_hidden; l++) {
        const conv_layer L = layer_at(c, l);
        const size_t nw = (size_t)L.out * c->kernel * L.in;
        if (l == c->n_hidden) {
            memset(p + L.w, 0, sizeof(float) * (nw + (size_t)L.out));
            break;
        }
        const double a = sqrt(3.0 / ((double)c->kernel * L.in));
        for (size_t k = 0; k < nw; k++) p[L.w + k] = (float)((2.0 * rf_rng_uniform(rng) - 1.0) * a);
        memset(p + L.b, 0, sizeof(float) * (size_t)L.out);
    }
}

static size_t rows(const rf_conv1d *m, int n) { return (size_t)(n > 0 ? n : 0) * (size_t)m->cfg.length; }
static int max_in(const rf_conv1d_cfg *c) { return c->c_in > c->hidden ? c->c_in : c->hidden; }

size_t rf_conv1d_cache_floats(const rf_conv1d *m, int n) {
    return 2 * (size_t)m->cfg.n_hidden * rows(m, n) * (size_t)m->cfg.hidden;
}

size_t rf_conv1d_forward_scratch_floats(const rf_conv1d *m, int n) {
    return m->cfg.kernel == 1 ? 0 : rows(m, n) * (size_t)m->cfg.kernel * (size_t)max_in(&m->cfg);
}

size_t rf_conv1d_backward_scratch_floats(const rf_conv1d *m, int n) {
    return rf_conv1d_forward_scratch_floats(m, n) + 2 * rows(m, n) * (size_t)m->cfg.hidden;
}

/* col (n*T x K*C) from in (n*T x C). */
static void im2col(const rf_conv1d_cfg *c, int n, int C, const float *in, float *col) {
    const int T = c->length, K = c->kernel, half = (K - 1) / 2, d = c->dilation;
    const size_t nr = (size_t)n * T, KC = (size_t)K * C;
#pragma omp parallel for schedule(static) if (nr * KC >= RF_NN_PAR_MIN)
    for (size_t r = 0; r < nr; r++) {
        const int t = (int)(r % (size_t)T);
        const size_t base = r - (size_t)t; /* row of position 0 of this sequence */
        float *o = col + r * KC;
        for (int k = 0; k < K; k++) {
            const int s = t + (k - half) * d;
            if (s < 0 || s >= T) memset(o + (size_t)k * C, 0, sizeof(float) * C);
            else memcpy(o + (size_t)k * C, in + (base + (size_t)s) * C, sizeof(float) * C);
        }
    }
}

/* din (n*T x C) += col2im(dcol): din[s] += sum over taps k with t = s - (k - half) d of
 * dcol[t, k]. */
static void col2im_add(const rf_conv1d_cfg *c, int n, int C, const float *dcol, float *din) {
    const int T = c->length, K = c->kernel, half = (K - 1) / 2, d = c->dilation;
    const size_t nr = (size_t)n * T, KC = (size_t)K * C;
#pragma omp parallel for schedule(static) if (nr * KC >= RF_NN_PAR_MIN)
    for (size_t r = 0; r < nr; r++) {
        const int s = (int)(r % (size_t)T);
        const size_t base = r - (size_t)s;
        float *restrict o = din + r * C;
        for (int k = 0; k < K; k++) {
            const int t = s - (k - half) * d;
            if (t < 0 || t >= T) continue;
            const float *restrict g = dcol + (base + (size_t)t) * KC + (size_t)k * C;
            for (int j = 0; j < C; j++) o[j] += g[j];
        }
    }
}

/* z (nr x out) = col W^T + b. */
static void affine(const conv_layer *L, int K, const float *p, size_t nr, const float *col, float *z) {
    const float *b = p + L->b;
#pragma omp parallel for schedule(static) if (nr * (size_t)L->out >= RF_NN_PAR_MIN)
    for (size_t r = 0; r < nr; r++) memcpy(z + r * L->out, b, sizeof(float) * L->out);
    rf_gemm(0, 1, (int)nr, L->out, K * L->in, 1.0f, col, K * L->in, p + L->w, K * L->in, 1.0f, z,
            L->out);
}

void rf_conv1d_forward(const rf_conv1d *m, const float *p, int n, const float *x, float *out,
                       float *cache, float *scratch) {
    const rf_conv1d_cfg *c = &m->cfg;
    const size_t nr = rows(m, n), nh = nr * (size_t)c->hidden;
    const float *in = x;
    for (int l = 0; l <= c->n_hidden; l++) {
        const conv_layer L = layer_at(c, l);
        const float *col = in;
        if (c->kernel > 1) {
            im2col(c, n, L.in, in, scratch);
            col = scratch;
        }
        if (l == c->n_hidden) {
            affine(&L, c->kernel, p, nr, col, out);
            break;
        }
        float *z = cache + 2 * (size_t)l * nh, *h = z + nh;
        affine(&L, c->kernel, p, nr, col, z);
        rf_act_forward(c->act, nh, z, h);
        if (c->residual && l > 0) {
#pragma omp parallel for schedule(static) if (nh >= RF_NN_PAR_MIN)
            for (size_t i = 0; i < nh; i++) h[i] += in[i];
        }
        in = h;
    }
}

/* Backward of z = col(in) W^T + b given dz: dW += dz^T col, db += column sums of dz, and, when
 * din != NULL, din = col2im(dz W) + (accumulate ? din : 0). colbuf: im2col / dcol buffer. */
static void affine_backward(const rf_conv1d_cfg *c, const conv_layer *L, const float *p, int n,
                            const float *in, const float *dz, float *dp, float *din,
                            int accumulate, float *colbuf) {
    const size_t nr = (size_t)n * c->length;
    const int K = c->kernel, KC = K * L->in;
    const float *col = in;
    if (K > 1) {
        im2col(c, n, L->in, in, colbuf);
        col = colbuf;
    }
    rf_gemm(1, 0, L->out, KC, (int)nr, 1.0f, dz, L->out, col, KC, 1.0f, dp + L->w, KC);
    float *db = dp + L->b;
    for (size_t r = 0; r < nr; r++) {
        const float *row = dz + r * L->out;
        for (int j = 0; j < L->out; j++) db[j] += row[j];
    }
    if (!din) return;
    if (K == 1) {
        rf_gemm(0, 0, (int)nr, L->in, L->out, 1.0f, dz, L->out, p + L->w, L->in,
                accumulate ? 1.0f : 0.0f, din, L->in);
        return;
    }
    rf_gemm(0, 0, (int)nr, KC, L->out, 1.0f, dz, L->out, p + L->w, KC, 0.0f, colbuf, KC);
    if (!accumulate) memset(din, 0, sizeof(float) * nr * L->in);
    col2im_add(c, n, L->in, colbuf, din);
}

/* Reverse pass: dh = dL/dh_l, dz = dh * act'(z_l); a residual layer also passes dh straight to
 * h_{l-1} (accumulate = 1). */
void rf_conv1d_backward(const rf_conv1d *m, const float *p, int n, const float *x,
                        const float *dout, float *dx, float *dp, const float *cache,
                        float *scratch) {
    const rf_conv1d_cfg *c = &m->cfg;
    const size_t nr = rows(m, n), nh = nr * (size_t)c->hidden;
    float *colbuf = scratch, *dh = scratch + rf_conv1d_forward_scratch_floats(m, n), *dz = dh + nh;
    const conv_layer last = layer_at(c, c->n_hidden);
    const float *h_last = cache + (2 * (size_t)c->n_hidden - 1) * nh;
    affine_backward(c, &last, p, n, h_last, dout, dp, dh, 0, colbuf);
    for (int l = c->n_hidden - 1; l >= 0; l--) {
        const conv_layer L = layer_at(c, l);
        const float *z = cache + 2 * (size_t)l * nh;
        const float *in = l > 0 ? z - nh : x; /* h_{l-1} sits just before z_l */
        rf_act_backward(c->act, nh, z, dh, dz);
        if (l > 0) affine_backward(c, &L, p, n, in, dz, dp, dh, c->residual, colbuf);
        else affine_backward(c, &L, p, n, in, dz, dp, dx, 0, colbuf);
    }
}
