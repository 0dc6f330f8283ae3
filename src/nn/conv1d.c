/* 1-D convolutional conditioner (for the time-series coupling layers), forward and backward side
 * by side. Sequences are position-major ("NTC"): x[(i * T + t) * C + c], so a convolution is a
 * dense layer applied to every position's receptive field:
 *   col[(i*T + t), k * C + c] = in[i, t + (k - half) * dilation, c]   (0 outside [0, T)),
 *   z = col W^T + b,
 * with half = (kernel - 1) / 2 ('same' zero padding). The backward forms dW = dz^T col (im2col
 * recomputed from the cached layer input), db = column sums of dz, and the input gradient
 * dcol = dz W scattered back by col2im (a gather over taps, so rows never race).
 * kernel = 1 skips im2col entirely (col is the input itself).
 *
 * Blocking. Sequences are independent, so the whole network runs on blocks of whole sequences
 * (about CONV_BLOCK_ROWS positions each): every layer of a block, forward or backward, before the
 * next block. A block's im2col buffer, activations and gradients stay in the core's L2 cache
 * instead of streaming n*T x kernel*C floats through memory per layer; the GEMMs per block are
 * still large enough for OpenBLAS (hundreds of rows). Bias, activation and residual are applied to
 * a block right after its GEMM, while it is in cache. dW and db accumulate block after block in a
 * fixed order, so results depend on the sizes only (deterministic).
 *
 * Output layout: position-major (n*T x c_out), or with cfg.out_channel_major channel-major over
 * the whole batch, out[q * (n*T) + i*T + t], which the last layer's GEMM writes directly (W col^T)
 * and whose gradient it reads directly; the coupling layer's elementwise transform then runs
 * along contiguous time steps.
 *
 * Cache: per hidden layer z_l then h_l (n*T x hidden each). Forward scratch: one block's im2col
 * buffer. Backward scratch: a block's im2col / dcol buffer, dh and dz (block rows x hidden each).
 * No OpenMP here: the flow runs one shard of rows per thread (src/flow/flow_ws.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dense.h"
#include "renflow/tsflow.h"

/* Positions per block (a block holds max(1, CONV_BLOCK_ROWS / length) whole sequences). */
#define CONV_BLOCK_ROWS 256

/* The elementwise loops below are additions and copies only, so wider vectors give the same bits;
 * they are compiled for AVX-512 and AVX2 as well and chosen when the library is loaded. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CONV_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CONV_CLONES
#endif

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
    m->cfg.out_channel_major = c->out_channel_major != 0;
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

/* Sequences per block. */
static int block_seqs(const rf_conv1d_cfg *c) {
    const int s = CONV_BLOCK_ROWS / c->length;
    return s < 1 ? 1 : s;
}

/* Positions of the largest block of a batch of n sequences. */
static size_t block_rows(const rf_conv1d *m, int n) {
    const int s = block_seqs(&m->cfg);
    return (size_t)(n < s ? (n > 0 ? n : 0) : s) * (size_t)m->cfg.length;
}

size_t rf_conv1d_cache_floats(const rf_conv1d *m, int n) {
    return 2 * (size_t)m->cfg.n_hidden * rows(m, n) * (size_t)m->cfg.hidden;
}

size_t rf_conv1d_forward_scratch_floats(const rf_conv1d *m, int n) {
    return m->cfg.kernel == 1 ? 0 : block_rows(m, n) * (size_t)m->cfg.kernel * (size_t)max_in(&m->cfg);
}

size_t rf_conv1d_backward_scratch_floats(const rf_conv1d *m, int n) {
    return rf_conv1d_forward_scratch_floats(m, n) + 2 * block_rows(m, n) * (size_t)m->cfg.hidden;
}

/* col (ns*T x K*C) from in (ns*T x C), ns whole sequences. With dilation 1 an interior
 * position's receptive field is one contiguous run of K*C floats. */
static void im2col(const rf_conv1d_cfg *c, int ns, int C, const float *in, float *col) {
    const int T = c->length, K = c->kernel, half = (K - 1) / 2, d = c->dilation;
    const size_t KC = (size_t)K * C;
    const int lo = d == 1 ? half : T, hi = T - half; /* interior [lo, hi) when d == 1 */
    for (int i = 0; i < ns; i++) {
        const float *src = in + (size_t)i * T * C;
        float *o = col + (size_t)i * T * KC;
        for (int t = 0; t < T; t++, o += KC) {
            if (t >= lo && t < hi) {
                memcpy(o, src + (size_t)(t - half) * C, sizeof(float) * KC);
                continue;
            }
            for (int k = 0; k < K; k++) {
                const int s = t + (k - half) * d;
                if (s < 0 || s >= T) memset(o + (size_t)k * C, 0, sizeof(float) * C);
                else memcpy(o + (size_t)k * C, src + (size_t)s * C, sizeof(float) * C);
            }
        }
    }
}

/* din (ns*T x C) += col2im(dcol): din[s] += sum over taps k (in order) with
 * t = s - (k - half) d in [0, T) of dcol[t, k]. */
CONV_CLONES static void col2im_add(const rf_conv1d_cfg *c, int ns, int C, const float *dcol,
                                   float *din) {
    const int T = c->length, K = c->kernel, half = (K - 1) / 2, d = c->dilation;
    const size_t KC = (size_t)K * C;
    for (int i = 0; i < ns; i++) {
        const float *g0 = dcol + (size_t)i * T * KC;
        float *o0 = din + (size_t)i * T * C;
        for (int s = 0; s < T; s++) {
            float *restrict o = o0 + (size_t)s * C;
            for (int k = 0; k < K; k++) {
                const int t = s - (k - half) * d;
                if (t < 0 || t >= T) continue;
                const float *restrict g = g0 + (size_t)t * KC + (size_t)k * C;
                for (int j = 0; j < C; j++) o[j] += g[j];
            }
        }
    }
}

/* z (rc x out) += b on every row. */
CONV_CLONES static void add_bias_rows(size_t rc, int out, const float *restrict b, float *restrict z) {
    for (size_t r = 0; r < rc; r++, z += out)
        for (int j = 0; j < out; j++) z[j] += b[j];
}

/* h += in (residual). */
CONV_CLONES static void add_to(size_t m, const float *restrict in, float *restrict h) {
    for (size_t i = 0; i < m; i++) h[i] += in[i];
}

/* db[j] += sum over rows r (in order) of dz[r * ld + j], j < out (position-major dz). */
CONV_CLONES static void bias_grad_rows(size_t rc, int out, const float *restrict dz, size_t ld,
                                       float *restrict db) {
    for (size_t r = 0; r < rc; r++, dz += ld)
        for (int j = 0; j < out; j++) db[j] += dz[j];
}

/* The layer of one block: z = col(in) W^T (+ b unless the caller adds it). Position-major:
 * z (rc x out); channel-major (cm): z[q * ldz + r]. Returns nothing; col uses colbuf. */
static void layer_gemm(const rf_conv1d_cfg *c, const conv_layer *L, const float *p, int ns,
                       const float *in, float *colbuf, int cm, float *z, size_t ldz) {
    const int K = c->kernel, KC = K * L->in, rc = ns * c->length;
    const float *col = in;
    if (K > 1) {
        im2col(c, ns, L->in, in, colbuf);
        col = colbuf;
    }
    if (cm) rf_gemm(0, 1, L->out, rc, KC, 1.0f, p + L->w, KC, col, KC, 0.0f, z, (int)ldz);
    else rf_gemm(0, 1, rc, L->out, KC, 1.0f, col, KC, p + L->w, KC, 0.0f, z, (int)ldz);
}

void rf_conv1d_forward(const rf_conv1d *m, const float *p, int n, const float *x, float *out,
                       float *cache, float *scratch) {
    const rf_conv1d_cfg *c = &m->cfg;
    const int T = c->length, H = c->hidden, S = block_seqs(c);
    const size_t nr = rows(m, n), nh = nr * (size_t)H;
    for (int i0 = 0; i0 < n; i0 += S) {
        const int ns = n - i0 < S ? n - i0 : S;
        const size_t r0 = (size_t)i0 * T, rc = (size_t)ns * T;
        const float *in = x + r0 * c->c_in;
        for (int l = 0; l <= c->n_hidden; l++) {
            const conv_layer L = layer_at(c, l);
            const float *b = p + L.b;
            if (l == c->n_hidden) {
                if (c->out_channel_major) {
                    float *o = out + r0;
                    layer_gemm(c, &L, p, ns, in, scratch, 1, o, nr);
                    for (int q = 0; q < L.out; q++) {
                        float *oq = o + (size_t)q * nr;
                        for (size_t r = 0; r < rc; r++) oq[r] += b[q];
                    }
                } else {
                    float *o = out + r0 * L.out;
                    layer_gemm(c, &L, p, ns, in, scratch, 0, o, (size_t)L.out);
                    add_bias_rows(rc, L.out, b, o);
                }
                break;
            }
            float *z = cache + 2 * (size_t)l * nh + r0 * H, *h = z + nh;
            layer_gemm(c, &L, p, ns, in, scratch, 0, z, (size_t)H);
            add_bias_rows(rc, H, b, z);
            rf_act_forward(c->act, rc * H, z, h);
            if (c->residual && l > 0) add_to(rc * H, in, h);
            in = h;
        }
    }
}

/* Backward of one block's layer z = col(in) W^T + b given dz (position-major, or channel-major
 * dz[q * ldz + r] when cm): dW += dz^T col, db += column sums of dz, and, when din != NULL,
 * din = col2im(dz W) + (accumulate ? din : 0). colbuf: im2col / dcol buffer. */
static void layer_backward(const rf_conv1d_cfg *c, const conv_layer *L, const float *p, int ns,
                           const float *in, const float *dz, int cm, size_t ldz, float *dp,
                           float *din, int accumulate, float *colbuf) {
    const int K = c->kernel, KC = K * L->in, rc = ns * c->length;
    const float *col = in;
    if (K > 1) {
        im2col(c, ns, L->in, in, colbuf);
        col = colbuf;
    }
    float *db = dp + L->b;
    if (cm) {
        rf_gemm(0, 0, L->out, KC, rc, 1.0f, dz, (int)ldz, col, KC, 1.0f, dp + L->w, KC);
        for (int q = 0; q < L->out; q++) {
            const float *g = dz + (size_t)q * ldz;
            float s = db[q];
            for (int r = 0; r < rc; r++) s += g[r];
            db[q] = s;
        }
    } else {
        rf_gemm(1, 0, L->out, KC, rc, 1.0f, dz, (int)ldz, col, KC, 1.0f, dp + L->w, KC);
        bias_grad_rows((size_t)rc, L->out, dz, ldz, db);
    }
    if (!din) return;
    if (K == 1) {
        rf_gemm(cm, 0, rc, L->in, L->out, 1.0f, dz, (int)ldz, p + L->w, L->in,
                accumulate ? 1.0f : 0.0f, din, L->in);
        return;
    }
    rf_gemm(cm, 0, rc, KC, L->out, 1.0f, dz, (int)ldz, p + L->w, KC, 0.0f, colbuf, KC);
    if (!accumulate) memset(din, 0, sizeof(float) * (size_t)rc * L->in);
    col2im_add(c, ns, L->in, colbuf, din);
}

/* Reverse pass, block by block: dh = dL/dh_l, dz = dh * act'(z_l); a residual layer also passes
 * dh straight to h_{l-1} (accumulate = 1). */
void rf_conv1d_backward(const rf_conv1d *m, const float *p, int n, const float *x,
                        const float *dout, float *dx, float *dp, const float *cache,
                        float *scratch) {
    const rf_conv1d_cfg *c = &m->cfg;
    const int T = c->length, H = c->hidden, S = block_seqs(c);
    const size_t nr = rows(m, n), nh = nr * (size_t)H;
    float *colbuf = scratch, *dh = scratch + rf_conv1d_forward_scratch_floats(m, n);
    float *dz = dh + block_rows(m, n) * H;
    const conv_layer last = layer_at(c, c->n_hidden);
    for (int i0 = 0; i0 < n; i0 += S) {
        const int ns = n - i0 < S ? n - i0 : S;
        const size_t r0 = (size_t)i0 * T, rc = (size_t)ns * T;
        const float *h_last = cache + (2 * (size_t)c->n_hidden - 1) * nh + r0 * H;
        if (c->out_channel_major)
            layer_backward(c, &last, p, ns, h_last, dout + r0, 1, nr, dp, dh, 0, colbuf);
        else
            layer_backward(c, &last, p, ns, h_last, dout + r0 * last.out, 0, (size_t)last.out, dp,
                           dh, 0, colbuf);
        for (int l = c->n_hidden - 1; l >= 0; l--) {
            const conv_layer L = layer_at(c, l);
            const float *z = cache + 2 * (size_t)l * nh + r0 * H;
            rf_act_backward(c->act, rc * H, z, dh, dz);
            if (l > 0) /* h_{l-1} sits just before z_l */
                layer_backward(c, &L, p, ns, z - nh, dz, 0, (size_t)H, dp, dh, c->residual, colbuf);
            else
                layer_backward(c, &L, p, ns, x + r0 * c->c_in, dz, 0, (size_t)H, dp,
                               dx ? dx + r0 * c->c_in : NULL, 0, colbuf);
        }
    }
}
