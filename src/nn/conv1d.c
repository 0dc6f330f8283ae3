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
 * No OpenMP here: the flow runs one shard of rows per thread (src/flow/flow_ws.c).
 *
 * The second half of the file is another implementation of the same network on the padded
 * channel-major "grid" layout (conv1d.h), with direct convolution kernels instead of im2col +
 * GEMM; the affine time-series coupling uses it. Kernels 3 and 5 at dilation 1 run there by
 * Winograd F(4, K) on CPUs with AVX-512 (conv1d_wino.c: 2.5x fewer multiplications with kernel 5;
 * its matrix products use this file's tiles through rf_conv1d_grid_matmul / _matmul_dw). The
 * pointwise (1x1) kernels at the very end serve the 1x1 convolution over channels
 * (src/flow/ts_conv1x1.c). */
/* The grid path's kernels rely on a * b + c becoming one fused multiply-add (on CPUs that have
 * it); the rest of the file has additions and copies only, which this does not touch. */
#pragma GCC optimize("fp-contract=fast")

#include "conv1d.h"

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

/* ------------------------------------------------------------------------------------------------
 * The grid path (conv1d.h): direct convolution on the padded channel-major layout, no im2col.
 *
 * Forward of a layer on a block: z[o][j] = b[o] + sum_c sum_k W[o][k][c] in[c][j + (k - half) d]
 * for the block's positions j (16 at a time), computed in register tiles of up to 6 output
 * channels x 4 vectors of 16 positions: per (c, k), 4 unaligned loads of in (the shifted taps are
 * just other addresses) and 6 broadcast weights feed 24 fused multiply-adds. The input gradient
 * is the same kernel run on dz with the weights transposed and the taps reversed:
 *   din[c][j] = sum_o sum_k W[o][K-1-k][c] dz[o][j + (k - half) d].
 * The weight gradient dW[o][k * C + c] += sum_j dz[o][j] in[c][j + (k - half) d] runs along the
 * positions in tiles of 4 output channels x 4 (k, c) columns (16 vector accumulators), reduced at
 * the end of a block by a fixed shuffle tree. Padding positions hold zeros in every input, so
 * there is no boundary code; bias, activation, residual and the re-zeroing of the padding are
 * applied to a block's rows right after its layer. Everything runs in a fixed order (results
 * depend on the sizes only).
 * The kernels use GCC vector extensions (16 floats); on CPUs without AVX-512 the same code runs
 * with 1-vector tiles (small enough for 16 AVX2 registers). */

#define GRID_POS 3072 /* positions per block (whole sequences; at least one) */
#define GV 16        /* floats per vector */
#define GRID_R 6     /* output channels per register tile */

typedef float gv __attribute__((vector_size(64)));
typedef float gvu __attribute__((vector_size(64), aligned(4), may_alias));
typedef int gvi __attribute__((vector_size(64)));

/* (macros: a function returning a 64-byte vector would have an ABI that depends on the target) */
#define gv_load(p) (*(const gvu *)(p))
#define gv_store(p, v) (*(gvu *)(p) = (v))

static size_t round16(size_t v) { return (v + 15) / 16 * 16; }

rf_conv1d_grid rf_conv1d_grid_of(const rf_conv1d *m, int n) {
    const rf_conv1d_cfg *c = &m->cfg;
    rf_conv1d_grid g;
    g.n = n > 0 ? n : 0;
    g.T = c->length;
    g.pad = (c->kernel - 1) / 2 * c->dilation;
    const int span = g.T + g.pad;
    int s = GRID_POS / span;
    if (s < 1) s = 1;
    if (g.n > 0) { /* as many blocks as that needs, then sequences spread evenly over them */
        const int nb = (g.n + s - 1) / s;
        s = (g.n + nb - 1) / nb;
    }
    g.seqs = s;
    g.blocks = (g.n + s - 1) / s;
    g.front = (int)round16((size_t)g.pad);
    const size_t used = (size_t)s * span - (size_t)g.pad; /* first sample to the last one's end */
    g.row = round16((size_t)g.front + round16(used) + (size_t)g.pad);
    return g;
}

/* Sequences in block b, and the block's computed span of positions (from front; a multiple of
 * 16 covering all its samples). */
static int grid_block_seqs(const rf_conv1d_grid *g, int b) {
    const int s = g->n - b * g->seqs;
    return s < g->seqs ? s : g->seqs;
}

static size_t grid_used(const rf_conv1d_grid *g, int ns) {
    return (size_t)ns * (size_t)(g->T + g->pad) - (size_t)g->pad;
}

/* Zeros at the padding positions of one block (ns sequences, C channel rows). */
static void grid_zero_block(const rf_conv1d_grid *g, int ns, int C, float *blk) {
    const size_t used = grid_used(g, ns), span = (size_t)g->T + (size_t)g->pad;
    for (int c = 0; c < C; c++) {
        float *r = blk + (size_t)c * g->row;
        memset(r, 0, sizeof(float) * (size_t)g->front);
        if (g->pad > 0)
            for (int s = 0; s + 1 < ns; s++)
                memset(r + (size_t)g->front + (size_t)s * span + (size_t)g->T, 0, sizeof(float) * (size_t)g->pad);
        memset(r + (size_t)g->front + used, 0, sizeof(float) * (g->row - (size_t)g->front - used));
    }
}

void rf_conv1d_grid_clear(const rf_conv1d_grid *g, int C, float *buf) {
    for (int b = 0; b < g->blocks; b++)
        grid_zero_block(g, grid_block_seqs(g, b), C, buf + (size_t)b * C * g->row);
}

/* Whether the layers run by Winograd (conv1d_wino.c) rather than the direct tiles. */
static int grid_wino(const rf_conv1d_cfg *c) { return rf_conv1d_wino_ok(c->kernel, c->dilation); }

/* Floats of one layer's packed weights (the same count for the transposed packing). */
static size_t grid_pack_layer_floats(const rf_conv1d_cfg *c, const conv_layer *L) {
    return grid_wino(c) ? rf_conv1d_wino_pack_floats(L->out, L->in, c->kernel)
                        : round16((size_t)L->out * c->kernel * L->in);
}

/* Floats of all layers' packed weights. */
static size_t grid_weights_floats(const rf_conv1d_cfg *c) {
    size_t t = 0;
    for (int l = 0; l <= c->n_hidden; l++) {
        const conv_layer L = layer_at(c, l);
        t += grid_pack_layer_floats(c, &L);
    }
    return t;
}

/* Floats of the Winograd work buffers (0 with the direct tiles). */
static size_t grid_work_floats(const rf_conv1d_cfg *c) {
    if (!grid_wino(c)) return 0;
    const int cm = c->c_in > c->c_out ? c->c_in : c->c_out;
    return rf_conv1d_wino_work_floats(cm > c->hidden ? cm : c->hidden, c->kernel);
}

/* Floats of all layers' packed weights plus the work buffers. */
static size_t grid_pack_floats(const rf_conv1d_cfg *c) { return grid_weights_floats(c) + grid_work_floats(c); }

size_t rf_conv1d_grid_cache_floats(const rf_conv1d *m, int n) {
    const rf_conv1d_grid g = rf_conv1d_grid_of(m, n);
    return 2 * (size_t)m->cfg.n_hidden * rf_conv1d_grid_floats(&g, m->cfg.hidden);
}

size_t rf_conv1d_grid_forward_scratch_floats(const rf_conv1d *m, int n) {
    (void)n;
    return grid_pack_floats(&m->cfg);
}

size_t rf_conv1d_grid_backward_scratch_floats(const rf_conv1d *m, int n) {
    const rf_conv1d_grid g = rf_conv1d_grid_of(m, n);
    return grid_pack_floats(&m->cfg) + 3 * (size_t)m->cfg.hidden * g.row;
}

/* Packs W (O x K*C, column k * C + c) for the tile kernel: per tile of R <= GRID_R output rows
 * starting at o0, wp[o0 * C * K + (c * K + k) * R + r] = W[o0 + r][k][c]. With `transposed` the
 * packed layer maps O... the other way: output channels c < C, input channels o < O, tap k reversed:
 * wp[c0 * O * K + (o * K + k) * R + r] = W[o][K - 1 - k][c0 + r]. */
static void grid_pack(int O, int C, int K, const float *W, int transposed, float *wp) {
    const int Co = transposed ? C : O, Ci = transposed ? O : C;
    for (int o0 = 0; o0 < Co; o0 += GRID_R) {
        const int R = Co - o0 < GRID_R ? Co - o0 : GRID_R;
        float *w = wp + (size_t)o0 * Ci * K;
        for (int a = 0; a < Ci; a++)
            for (int k = 0; k < K; k++)
                for (int r = 0; r < R; r++)
                    w[((size_t)a * K + k) * R + r] =
                        transposed ? W[(size_t)a * K * C + (size_t)(K - 1 - k) * C + (size_t)(o0 + r)]
                                   : W[(size_t)(o0 + r) * K * C + (size_t)k * C + (size_t)a];
    }
}

/* What a layer does with its tiles besides the convolution: rf_conv1d_epi (conv1d.h). */
typedef rf_conv1d_epi grid_epi;
#define GRID_EPI_NONE RF_CONV1D_EPI_NONE
#define GRID_EPI_RELU RF_CONV1D_EPI_RELU
#define GRID_EPI_DRELU RF_CONV1D_EPI_DRELU

/* One register tile at positions [j, j + 16 V) of rows [o0, o0 + R): z[r][.] = init + sum over
 * input channels c < C and taps k < K of w[(c K + k) R + r] x[c][. + k d], x already shifted by
 * -half d; then the epilogue. */
#define GRID_TILE(R, V)                                                                          \
    static inline __attribute__((always_inline)) void grid_tile_##R##_##V(                      \
        int C, int K, int d, const float *x, size_t ldx, const float *w, const grid_epi *ep,    \
        size_t o0, size_t j, float *z, size_t ldz) {                                            \
        gv acc[R][V];                                                                            \
        const size_t base = o0 * ldz + j;                                                        \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < V; v++)                                  \
                acc[r][v] = ep->b ? (gv){0} + ep->b[o0 + r]                                      \
                            : ep->accumulate ? (gv)gv_load(z + base + r * ldz + GV * v) : (gv){0}; \
        x += j;                                                                                  \
        for (int c = 0; c < C; c++, x += ldx)                                                    \
            for (int k = 0; k < K; k++, w += R) {                                                \
                gv xv[V];                                                                        \
                _Pragma("GCC unroll 4") for (int v = 0; v < V; v++)                              \
                    xv[v] = gv_load(x + (size_t)k * d + GV * v);                                 \
                _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                              \
                    _Pragma("GCC unroll 4") for (int v = 0; v < V; v++)                          \
                        acc[r][v] += xv[v] * w[r];                                               \
            }                                                                                    \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < V; v++) {                                \
                const size_t at = base + r * ldz + GV * v;                                       \
                gv_store(z + at, acc[r][v]);                                                     \
                if (ep->epi == GRID_EPI_RELU) {                                                  \
                    gv h = (gv)((gvi)acc[r][v] & ~(acc[r][v] < 0)); /* x < 0 ? 0 : x */          \
                    if (ep->e1) h += (gv)gv_load(ep->e1 + at);                                   \
                    gv_store(ep->e2 + at, h);                                                    \
                } else if (ep->epi == GRID_EPI_DRELU) {                                          \
                    const gv pre = gv_load(ep->e1 + at);                                         \
                    gv_store(ep->e2 + at, (gv)((gvi)acc[r][v] & (pre > 0)));                     \
                }                                                                                \
            }                                                                                    \
    }
#define GRID_TILES(R) GRID_TILE(R, 1) GRID_TILE(R, 2) GRID_TILE(R, 3) GRID_TILE(R, 4)
GRID_TILES(1)
GRID_TILES(2)
GRID_TILES(3)
GRID_TILES(4)
GRID_TILES(5)
GRID_TILES(6)

#define GRID_CALL_V(R, V) grid_tile_##R##_##V(C, K, d, x, ldx, w, ep, (size_t)o0, j, z, ldz)
/* CALLV(R, V) for a run-time vector count V in 1..4 (the tiles are instantiated per (R, V)) */
#define TILE_SWITCH(CALLV, R, V)                                                                 \
    do {                                                                                         \
        switch (V) {                                                                             \
        case 1: CALLV(R, 1); break;                                                              \
        case 2: CALLV(R, 2); break;                                                              \
        case 3: CALLV(R, 3); break;                                                              \
        default: CALLV(R, 4); break;                                                             \
        }                                                                                        \
    } while (0)
#define GRID_CALL(R, V) TILE_SWITCH(GRID_CALL_V, R, V)
/* CALL(R, V) for a run-time row count R in 1..6 */
#define ROW_SWITCH(CALL, R, V)                                                                   \
    do {                                                                                         \
        switch (R) {                                                                             \
        case 1: CALL(1, V); break;                                                               \
        case 2: CALL(2, V); break;                                                               \
        case 3: CALL(3, V); break;                                                               \
        case 4: CALL(4, V); break;                                                               \
        case 5: CALL(5, V); break;                                                               \
        default: CALL(6, V); break;                                                              \
        }                                                                                        \
    } while (0)

/* z (O rows, ldz apart; positions [0, J), J a multiple of 16) = conv of x (C rows, ldx apart,
 * position 0 aligned with z's) with the packed weights wp, then the epilogue ep (whose buffers
 * share z's layout). wide: 4-vector tiles (AVX-512), else 1-vector tiles. */
CONV_CLONES static void grid_conv(int O, int C, int K, int half, int d, const float *x, size_t ldx,
                                  const float *wp, const grid_epi *ep, float *z, size_t ldz,
                                  size_t J, int wide) {
    x -= (size_t)half * d;
    for (int o0 = 0; o0 < O; o0 += GRID_R) {
        const int R = O - o0 < GRID_R ? O - o0 : GRID_R;
        const float *w = wp + (size_t)o0 * C * K;
        for (size_t j = 0; j < J;) {
            const size_t left = (J - j) / GV;
            const int V = wide ? (left < 4 ? (int)left : 4) : 1;
            ROW_SWITCH(GRID_CALL, R, V);
            j += (size_t)V * GV;
        }
    }
}

/* out[m] = the sum of the 16 lanes of a[m], m < 16, by a fixed tree of pairwise shuffles and
 * additions. */
static inline __attribute__((always_inline)) void gv_reduce16(const gv *a, float *out) {
    const gvi l1 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const gvi h1 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
    const gvi l2 = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
    const gvi h2 = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
    const gvi l3 = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29};
    const gvi h3 = {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31};
    const gvi l4 = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    const gvi h4 = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    gv b[8], c[4], e[2];
    for (int i = 0; i < 8; i++)
        b[i] = __builtin_shuffle(a[2 * i], a[2 * i + 1], l1) + __builtin_shuffle(a[2 * i], a[2 * i + 1], h1);
    for (int i = 0; i < 4; i++)
        c[i] = __builtin_shuffle(b[2 * i], b[2 * i + 1], l2) + __builtin_shuffle(b[2 * i], b[2 * i + 1], h2);
    for (int i = 0; i < 2; i++)
        e[i] = __builtin_shuffle(c[2 * i], c[2 * i + 1], l3) + __builtin_shuffle(c[2 * i], c[2 * i + 1], h3);
    gv_store(out, __builtin_shuffle(e[0], e[1], l4) + __builtin_shuffle(e[0], e[1], h4));
}

/* t[m] = the lane sum of acc[m], m < NA <= 32 (in groups of 16, the missing ones as zeros). */
#define GV_REDUCE_ACC(acc, NA, t)                                                                \
    do {                                                                                         \
        for (int g0 = 0; g0 < (NA); g0 += 16) {                                                  \
            gv red[16];                                                                          \
            for (int i = 0; i < 16; i++) red[i] = g0 + i < (NA) ? acc[(g0 + i) % (NA)] : (gv){0}; \
            gv_reduce16(red, (t) + g0);                                                          \
        }                                                                                        \
    } while (0)

/* One weight-gradient tile: RO rows (zr) x 4 columns (xr): t[r * 4 + s] = sum over positions
 * j < J (a multiple of 16) of zr[r][j] xr[s][j], each as 16 lane sums reduced by gv_reduce16
 * (rows are streamed: 4 x vectors and one dz vector live next to the RO * 4 accumulators). */
#define GRID_DW_TILE(RO)                                                                         \
    static inline __attribute__((always_inline)) void grid_dw_tile_##RO(                        \
        const float *const *zr, const float *const *xr, size_t J, float *t) {                   \
        gv acc[RO * 4];                                                                          \
        _Pragma("GCC unroll 32") for (int i = 0; i < RO * 4; i++) acc[i] = (gv){0};             \
        for (size_t j = 0; j < J; j += GV) {                                                     \
            gv xv[4];                                                                            \
            _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) xv[s] = gv_load(xr[s] + j);      \
            _Pragma("GCC unroll 8") for (int r = 0; r < RO; r++) {                               \
                const gv zv = gv_load(zr[r] + j);                                                \
                _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) acc[r * 4 + s] += zv * xv[s]; \
            }                                                                                    \
        }                                                                                        \
        GV_REDUCE_ACC(acc, RO * 4, t);                                                           \
    }
GRID_DW_TILE(2)
GRID_DW_TILE(4)
GRID_DW_TILE(6)

/* dW (O x K*C, row stride K*C) += sum over positions j < J (a multiple of 16) of
 * dz[o][j] x[c][j + (k - half) d], in tiles of up to 6 rows x 4 columns q = k * C + c (rows and
 * columns past the end alias the last one and are not stored); without wide (no AVX-512: 16
 * vector registers) tiles of 2 rows. */
CONV_CLONES static void grid_dw(int O, int C, int K, int half, int d, const float *dz, const float *x,
                                size_t ld, size_t J, float *dW, int wide) {
    const int KC = K * C;
    for (int o0 = 0; o0 < O;) {
        const int left = O - o0, RO = !wide ? 2 : left >= 5 ? 6 : (left >= 3 ? 4 : 2);
        const float *zr[6];
        for (int r = 0; r < RO; r++) zr[r] = dz + (size_t)(o0 + r < O ? o0 + r : O - 1) * ld;
        for (int q0 = 0; q0 < KC; q0 += 4) {
            const float *xr[4];
            for (int s = 0; s < 4; s++) {
                const int q = q0 + s < KC ? q0 + s : KC - 1, k = q / C, c = q % C;
                xr[s] = x + (size_t)c * ld + (ptrdiff_t)(k - half) * d;
            }
            float t[32];
            if (RO == 6) grid_dw_tile_6(zr, xr, J, t);
            else if (RO == 4) grid_dw_tile_4(zr, xr, J, t);
            else grid_dw_tile_2(zr, xr, J, t);
            for (int r = 0; r < RO && o0 + r < O; r++)
                for (int s = 0; s < 4 && q0 + s < KC; s++) dW[(size_t)(o0 + r) * KC + q0 + s] += t[r * 4 + s];
        }
        o0 += RO;
    }
}

/* db[o] += sum of row o (O rows, ld apart) over positions [0, J), J a multiple of 16. */
CONV_CLONES static void grid_db(int O, const float *dz, size_t ld, size_t J, float *db) {
    for (int o = 0; o < O; o++) {
        const float *r = dz + (size_t)o * ld;
        gv a = (gv){0};
        for (size_t j = 0; j < J; j += GV) a += gv_load(r + j);
        float s = 0;
        for (int i = 0; i < GV; i++) s += a[i];
        db[o] += s;
    }
}

/* h += in (residual). */
CONV_CLONES static void grid_add(size_t m, const float *restrict in, float *restrict h) {
    for (size_t i = 0; i < m; i++) h[i] += in[i];
}

static int grid_wide(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* Every layer's packed weights (transposed = 1: for the input gradient) from w on; wl[l] is layer
 * l's. With Winograd, *work is set to its work buffers (after the weights), else to NULL. Returns
 * the end of what it took of w. */
static float *grid_pack_all(const rf_conv1d_cfg *c, const float *p, int transposed, float *w, float **wl,
                            float **work) {
    *work = grid_wino(c) ? w + grid_weights_floats(c) : NULL;
    for (int l = 0; l <= c->n_hidden; l++) {
        const conv_layer L = layer_at(c, l);
        wl[l] = w;
        if (*work) rf_conv1d_wino_pack(L.out, L.in, c->kernel, p + L.w, transposed, w, *work);
        else grid_pack(L.out, L.in, c->kernel, p + L.w, transposed, w);
        w += grid_pack_layer_floats(c, &L);
    }
    return w + grid_work_floats(c);
}

/* One layer: z (O rows) = conv of x (C rows) with the packed weights wp, then ep; by Winograd when
 * work is set (grid_pack_all). */
static void grid_layer(const rf_conv1d_cfg *c, int O, int C, const float *x, size_t ldx, const float *wp,
                       const grid_epi *ep, float *z, size_t ldz, size_t J, int wide, float *work) {
    if (work) rf_conv1d_wino_conv(O, C, c->kernel, wp, x, ldx, ep, z, ldz, J, work);
    else grid_conv(O, C, c->kernel, (c->kernel - 1) / 2, c->dilation, x, ldx, wp, ep, z, ldz, J, wide);
}

/* One layer's weight gradient (dW += ...), by Winograd when work is set. */
static void grid_layer_dw(const rf_conv1d_cfg *c, int O, int C, const float *dz, const float *x, size_t ld,
                          size_t J, float *dW, int wide, float *work) {
    if (work) rf_conv1d_wino_dw(O, C, c->kernel, dz, ld, x, ld, J, dW, work);
    else grid_dw(O, C, c->kernel, (c->kernel - 1) / 2, c->dilation, dz, x, ld, J, dW, wide);
}

void rf_conv1d_grid_pack1(int O, int C, const float *W, float *wp) { grid_pack(O, C, 1, W, 0, wp); }

void rf_conv1d_grid_matmul(int O, int C, const float *wp, const float *x, size_t ldx, float *z, size_t ldz,
                           size_t J) {
    const grid_epi ep = {0};
    grid_conv(O, C, 1, 0, 1, x, ldx, wp, &ep, z, ldz, J, grid_wide());
}

void rf_conv1d_grid_matmul_dw(int O, int C, const float *dz, const float *x, size_t ld, size_t J, float *dW) {
    grid_dw(O, C, 1, 0, 1, dz, x, ld, J, dW, grid_wide());
}

void rf_conv1d_grid_forward(const rf_conv1d *m, const float *p, int n, const float *x, float *out,
                            float *cache, float *scratch) {
    const rf_conv1d_cfg *c = &m->cfg;
    const rf_conv1d_grid g = rf_conv1d_grid_of(m, n);
    const int H = c->hidden, wide = grid_wide();
    const size_t row = g.row, nh = rf_conv1d_grid_floats(&g, H);
    /* every layer's packed weights */
    float *wp[65], *work;
    grid_pack_all(c, p, 0, scratch, wp, &work);
    for (int b = 0; b < g.blocks; b++) {
        const int ns = grid_block_seqs(&g, b);
        const size_t used = grid_used(&g, ns), J = round16(used), f = (size_t)g.front;
        const float *in = x + (size_t)b * c->c_in * row;
        for (int l = 0; l <= c->n_hidden; l++) {
            const conv_layer L = layer_at(c, l);
            if (l == c->n_hidden) {
                const grid_epi ep = {.b = p + L.b};
                grid_layer(c, L.out, L.in, in + f, row, wp[l], &ep, out + (size_t)b * L.out * row + f, row, J,
                           wide, work);
                break;
            }
            float *z = cache + 2 * (size_t)l * nh + (size_t)b * H * row, *h = z + nh;
            const float *res = c->residual && l > 0 ? in + f : NULL;
            if (c->act == RF_ACT_RELU) {
                const grid_epi ep = {.b = p + L.b, .epi = GRID_EPI_RELU, .e1 = res, .e2 = h + f};
                grid_layer(c, L.out, L.in, in + f, row, wp[l], &ep, z + f, row, J, wide, work);
            } else {
                const grid_epi ep = {.b = p + L.b};
                grid_layer(c, L.out, L.in, in + f, row, wp[l], &ep, z + f, row, J, wide, work);
                for (int o = 0; o < H; o++) {
                    const size_t off = (size_t)o * row + f;
                    rf_act_forward(c->act, J, z + off, h + off);
                    if (res) grid_add(J, in + off, h + off);
                }
            }
            grid_zero_block(&g, ns, H, h);
            in = h;
        }
    }
}

void rf_conv1d_grid_backward(const rf_conv1d *m, const float *p, int n, const float *x,
                             const float *dout, float *dx, float *dp, const float *cache,
                             float *scratch) {
    const rf_conv1d_cfg *c = &m->cfg;
    const rf_conv1d_grid g = rf_conv1d_grid_of(m, n);
    const int H = c->hidden, wide = grid_wide();
    const size_t row = g.row, nh = rf_conv1d_grid_floats(&g, H);
    float *wt[65], *work;
    float *w = grid_pack_all(c, p, 1, scratch, wt, &work);
    float *dh = w, *dz0 = dh + (size_t)H * row, *dz1 = dz0 + (size_t)H * row;
    for (int b = 0; b < g.blocks; b++) {
        const int ns = grid_block_seqs(&g, b);
        const size_t used = grid_used(&g, ns), J = round16(used), f = (size_t)g.front;
        const size_t bh = (size_t)b * H * row;
        float *dz = dz0, *dz2 = dz1;
        /* last layer: its input is h_{L-1}, which sits just after z_{L-1} */
        const conv_layer last = layer_at(c, c->n_hidden);
        const float *hl = cache + (2 * (size_t)c->n_hidden - 1) * nh + bh;
        const float *go = dout + (size_t)b * last.out * row;
        grid_layer_dw(c, last.out, last.in, go + f, hl + f, row, J, dp + last.w, wide, work);
        grid_db(last.out, go + f, row, J, dp + last.b);
        /* dh = dL/dh_{L-1}; with ReLU, dz = dL/dz_{L-1} comes out of the same tiles */
        const int relu = c->act == RF_ACT_RELU;
        {
            const float *zl = cache + 2 * (size_t)(c->n_hidden - 1) * nh + bh;
            const grid_epi ep = {.epi = relu ? GRID_EPI_DRELU : GRID_EPI_NONE, .e1 = zl + f, .e2 = dz + f};
            grid_layer(c, last.in, last.out, go + f, row, wt[c->n_hidden], &ep, dh + f, row, J, wide, work);
        }
        for (int l = c->n_hidden - 1; l >= 0; l--) {
            const conv_layer L = layer_at(c, l);
            const float *z = cache + 2 * (size_t)l * nh + bh;
            if (!relu)
                for (int o = 0; o < H; o++) {
                    const size_t off = (size_t)o * row + f;
                    rf_act_backward(c->act, J, z + off, dh + off, dz + off);
                }
            grid_zero_block(&g, ns, H, dz);
            const float *in = l > 0 ? z - nh : x + (size_t)b * c->c_in * row; /* h_{l-1} sits just before z_l */
            grid_layer_dw(c, L.out, L.in, dz + f, in + f, row, J, dp + L.w, wide, work);
            grid_db(L.out, dz + f, row, J, dp + L.b);
            if (l > 0) {
                /* dh_{l-1} = conv^T(dz_l) (+ dh_l through the residual); with ReLU the same tiles
                 * give dz_{l-1} into dz2, which then becomes dz */
                const grid_epi ep = {.accumulate = c->residual, .epi = relu ? GRID_EPI_DRELU : GRID_EPI_NONE,
                                     .e1 = z - 2 * nh + f, .e2 = dz2 + f};
                grid_layer(c, L.in, L.out, dz + f, row, wt[l], &ep, dh + f, row, J, wide, work);
                if (relu) {
                    float *t = dz;
                    dz = dz2;
                    dz2 = t;
                }
            } else if (dx) {
                const grid_epi ep = {0};
                grid_layer(c, L.in, L.out, dz + f, row, wt[0], &ep, dx + (size_t)b * c->c_in * row + f, row, J,
                           wide, work);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------------
 * Pointwise (1x1) convolution over the rows of a batch (conv1d.h), with the same register tiles:
 * a tile's 4 vectors of 16 positions may come from different rows, so short rows (T = 16) still
 * fill a tile. */

int rf_conv1d_pointwise_ok(int T) { return T >= 16 && T % 16 == 0; }

/* One tile: y[v][r * T + .] = sum_c w[c * R + r] x[v][c * T + .], for V vectors at bases x[v],
 * y[v] (16 positions each), R output channels. */
#define PW_TILE(R, V)                                                                            \
    static inline __attribute__((always_inline)) void pw_tile_##R##_##V(                        \
        int C, size_t T, const float *const *xb, const float *w, float *const *yb) {            \
        gv acc[R][V];                                                                            \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < V; v++) acc[r][v] = (gv){0};             \
        for (size_t c = 0; c < (size_t)C; c++, w += R) {                                         \
            gv xv[V];                                                                            \
            _Pragma("GCC unroll 4") for (int v = 0; v < V; v++) xv[v] = gv_load(xb[v] + c * T);  \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                  \
                _Pragma("GCC unroll 4") for (int v = 0; v < V; v++) acc[r][v] += xv[v] * w[r];   \
        }                                                                                        \
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                                      \
            _Pragma("GCC unroll 4") for (int v = 0; v < V; v++)                                  \
                gv_store(yb[v] + (size_t)r * T, acc[r][v]);                                      \
    }
#define PW_TILES(R) PW_TILE(R, 1) PW_TILE(R, 2) PW_TILE(R, 3) PW_TILE(R, 4)
PW_TILES(1)
PW_TILES(2)
PW_TILES(3)
PW_TILES(4)
PW_TILES(5)
PW_TILES(6)

#define PW_CALL_V(R, V) pw_tile_##R##_##V(C, (size_t)T, xb, w, yb)
#define PW_CALL(R, V) TILE_SWITCH(PW_CALL_V, R, V)

CONV_CLONES static void pw_run(int n, int O, int C, int T, const float *wp, const float *x,
                               size_t ldr, float *y, int wide) {
    const size_t per = (size_t)T / GV, chunks = (size_t)n * per;
    const int VM = wide ? 4 : 1;
    for (size_t q0 = 0; q0 < chunks; q0 += (size_t)VM) {
        const int V = chunks - q0 < (size_t)VM ? (int)(chunks - q0) : VM;
        const float *xs[4];
        float *ys[4];
        for (int v = 0; v < V; v++) {
            const size_t q = q0 + (size_t)v, i = q / per, t = (q % per) * GV;
            xs[v] = x + i * ldr + t;
            ys[v] = y + i * ldr + t;
        }
        /* the next group's input, one channel row after another (C streams are more than the
         * hardware prefetchers follow) */
        for (size_t q = q0 + (size_t)VM; q < q0 + 2 * (size_t)VM && q < chunks; q++) {
            const float *nx = x + (q / per) * ldr + (q % per) * GV;
            for (int c = 0; c < C; c++) __builtin_prefetch(nx + (size_t)c * T, 0, 3);
        }
        for (int o0 = 0; o0 < O; o0 += GRID_R) {
            const int R = O - o0 < GRID_R ? O - o0 : GRID_R;
            const float *w = wp + (size_t)o0 * C;
            float *yb[4];
            const float *const *xb = xs;
            for (int v = 0; v < V; v++) yb[v] = ys[v] + (size_t)o0 * T;
            ROW_SWITCH(PW_CALL, R, V);
        }
    }
}

void rf_conv1d_pointwise(int n, int O, int C, int T, const float *W, int transposed,
                         const float *x, size_t ldr, float *y, float *scratch) {
    /* transposed: y = W^T x with W (C x O) */
    if (transposed) grid_pack(C, O, 1, W, 1, scratch);
    else grid_pack(O, C, 1, W, 0, scratch);
    pw_run(n, O, C, T, scratch, x, ldr, y, grid_wide());
}

/* One weight-gradient tile over a run of rows: t[r * 4 + s] = sum over rows i < nrows and
 * positions j < T of dz[r][i ldr + j] x[s][i ldr + j]. */
#define PW_DW_TILE(RO)                                                                           \
    static inline __attribute__((always_inline)) void pw_dw_tile_##RO(                          \
        const float *const *zr, const float *const *xr, int nrows, size_t ldr, size_t T,        \
        float *t) {                                                                             \
        gv acc[RO * 4];                                                                          \
        _Pragma("GCC unroll 32") for (int i = 0; i < RO * 4; i++) acc[i] = (gv){0};             \
        for (int i = 0; i < nrows; i++) {                                                        \
            const size_t o = (size_t)i * ldr;                                                    \
            for (size_t j = o; j < o + T; j += GV) {                                             \
                gv xv[4];                                                                        \
                _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) xv[s] = gv_load(xr[s] + j);  \
                _Pragma("GCC unroll 8") for (int r = 0; r < RO; r++) {                           \
                    const gv zv = gv_load(zr[r] + j);                                            \
                    _Pragma("GCC unroll 4") for (int s = 0; s < 4; s++) acc[r * 4 + s] += zv * xv[s]; \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        GV_REDUCE_ACC(acc, RO * 4, t);                                                           \
    }
PW_DW_TILE(2)
PW_DW_TILE(4)
PW_DW_TILE(6)

#define PW_DW_ROWS 2048 /* positions per run of rows (a run's dy and x stay in L2) */

CONV_CLONES static void pw_dw_run(int n, int O, int C, int T, const float *dy, const float *x,
                                  size_t ldr, float *dW, int wide) {
    const int rows = PW_DW_ROWS / T > 0 ? PW_DW_ROWS / T : 1;
    for (int i0 = 0; i0 < n; i0 += rows) {
        const int nr = n - i0 < rows ? n - i0 : rows;
        const float *dyb = dy + (size_t)i0 * ldr, *xbl = x + (size_t)i0 * ldr;
        for (int o0 = 0; o0 < O;) {
            const int left = O - o0, RO = !wide ? 2 : left >= 5 ? 6 : (left >= 3 ? 4 : 2);
            const float *zr[6];
            for (int r = 0; r < RO; r++) zr[r] = dyb + (size_t)(o0 + r < O ? o0 + r : O - 1) * T;
            for (int c0 = 0; c0 < C; c0 += 4) {
                const float *xr[4];
                for (int s = 0; s < 4; s++) xr[s] = xbl + (size_t)(c0 + s < C ? c0 + s : C - 1) * T;
                float t[32];
                if (RO == 6) pw_dw_tile_6(zr, xr, nr, ldr, (size_t)T, t);
                else if (RO == 4) pw_dw_tile_4(zr, xr, nr, ldr, (size_t)T, t);
                else pw_dw_tile_2(zr, xr, nr, ldr, (size_t)T, t);
                for (int r = 0; r < RO && o0 + r < O; r++)
                    for (int s = 0; s < 4 && c0 + s < C; s++) dW[(size_t)(o0 + r) * C + c0 + s] += t[r * 4 + s];
            }
            o0 += RO;
        }
    }
}

void rf_conv1d_pointwise_dw(int n, int O, int C, int T, const float *dy, const float *x,
                            size_t ldr, float *dW) {
    pw_dw_run(n, O, C, T, dy, x, ldr, dW, grid_wide());
}
