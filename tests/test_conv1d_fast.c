/* The blocked 1-D conv conditioner (src/nn/conv1d.c: whole sequences per block, fused bias /
 * activation / residual, channel-major output option) against a plain reference in double: the
 * unblocked im2col network forward and its analytic backward, written out loop by loop. Kernels
 * 1..7, dilations 1..3, odd channel counts and lengths, batches that end in a partial block, a
 * sequence longer than a block, both output layouts, dparams accumulation (+=) and dx == NULL;
 * the Winograd layers (kernels 3 and 5) inside the grid network and on their own.
 * Then the time-series coupling layer's vectorised affine path (channel-major theta, kept
 * tanh / exp for the backward), with and without the soft clamp, and the spline path: round trip,
 * log-det of forward and inverse, and the backward against finite differences. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/nn/conv1d.h"
#include "renflow/tsflow.h"

static void randn(float *x, size_t n, float s, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = s * (float)rf_rng_normal(&r);
}

static double act_f(rf_act a, double z) {
    if (a == RF_ACT_RELU) return z > 0 ? z : 0;
    if (a == RF_ACT_TANH) return tanh(z);
    return 0.5 * z * (1 + erf(z / sqrt(2.0)));
}

static double act_d(rf_act a, double z) {
    if (a == RF_ACT_RELU) return z > 0 ? 1 : 0;
    if (a == RF_ACT_TANH) return 1 - tanh(z) * tanh(z);
    return 0.5 * (1 + erf(z / sqrt(2.0))) + z * exp(-0.5 * z * z) / sqrt(2 * M_PI);
}

/* Backward of one reference layer (co x K*ci weights W at p): dW, db += ..., gin = dL/d input. */
static void ref_layer_back(const rf_conv1d_cfg *c, int n, int ci, int co, const float *Wl,
                           const double *in, const double *dz, double *dW, double *db, double *gin) {
    const int T = c->length, K = c->kernel, half = (K - 1) / 2, d = c->dilation;
    memset(gin, 0, sizeof(double) * (size_t)n * T * ci);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < T; t++)
            for (int q = 0; q < co; q++) {
                const double g = dz[((size_t)i * T + t) * co + q];
                db[q] += g;
                for (int k = 0; k < K; k++) {
                    const int u = t + (k - half) * d;
                    if (u < 0 || u >= T) continue;
                    for (int a = 0; a < ci; a++) {
                        const size_t wi = (size_t)q * K * ci + (size_t)k * ci + a;
                        const size_t xi = ((size_t)i * T + u) * ci + a;
                        dW[wi] += g * in[xi];
                        gin[xi] += g * Wl[wi];
                    }
                }
            }
}

/* Reference network in double, position-major, unblocked: forward (out: n*T x c_out) and, given
 * dout, the gradients dx (n*T x c_in) and dp (P). */
static void conv_reference(const rf_conv1d_cfg *c, const float *p, size_t P, int n, const float *x,
                           const float *dout, double *out, double *dx, double *dp) {
    const int T = c->length, K = c->kernel, half = (K - 1) / 2, d = c->dilation, L = c->n_hidden;
    const size_t nr = (size_t)n * T;
    const int W = c->c_in > c->hidden ? c->c_in : c->hidden;
    const int WO = W > c->c_out ? W : c->c_out;
    double **acts = calloc((size_t)L + 1, sizeof *acts), **zs = calloc((size_t)L, sizeof *zs);
    size_t *off = calloc((size_t)L + 1, sizeof *off);
    acts[0] = malloc(sizeof(double) * nr * c->c_in);
    for (size_t i = 0; i < nr * (size_t)c->c_in; i++) acts[0][i] = x[i];
    size_t o = 0;
    for (int l = 0; l <= L; l++) {
        const int ci = l == 0 ? c->c_in : c->hidden, co = l == L ? c->c_out : c->hidden;
        off[l] = o;
        const float *Wl = p + o, *b = Wl + (size_t)co * K * ci;
        o += (size_t)co * K * ci + co;
        double *z = l == L ? out : malloc(sizeof(double) * nr * co);
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++)
                for (int q = 0; q < co; q++) {
                    double s = b[q];
                    for (int k = 0; k < K; k++) {
                        const int u = t + (k - half) * d;
                        if (u < 0 || u >= T) continue;
                        for (int a = 0; a < ci; a++)
                            s += (double)Wl[(size_t)q * K * ci + (size_t)k * ci + a] *
                                 acts[l][((size_t)i * T + u) * ci + a];
                    }
                    z[((size_t)i * T + t) * co + q] = s;
                }
        if (l == L) break;
        zs[l] = z;
        acts[l + 1] = malloc(sizeof(double) * nr * co);
        for (size_t r = 0; r < nr * (size_t)co; r++)
            acts[l + 1][r] = act_f(c->act, z[r]) + (c->residual && l > 0 ? acts[l][r] : 0);
    }
    assert_int_equal(o, P);
    memset(dp, 0, sizeof(double) * P);
    double *dz = malloc(sizeof(double) * nr * WO), *g = malloc(sizeof(double) * nr * W);
    double *gin = malloc(sizeof(double) * nr * W);
    for (size_t r = 0; r < nr * (size_t)c->c_out; r++) dz[r] = dout[r];
    /* g = dL/dh_{L-1} */
    ref_layer_back(c, n, c->hidden, c->c_out, p + off[L], acts[L], dz, dp + off[L],
                   dp + off[L] + (size_t)c->c_out * K * c->hidden, g);
    for (int l = L - 1; l >= 0; l--) {
        const int ci = l == 0 ? c->c_in : c->hidden, co = c->hidden;
        for (size_t r = 0; r < nr * (size_t)co; r++) dz[r] = g[r] * act_d(c->act, zs[l][r]);
        ref_layer_back(c, n, ci, co, p + off[l], acts[l], dz, dp + off[l],
                       dp + off[l] + (size_t)co * K * ci, gin);
        /* h_l = h_{l-1} + act(z_l) for residual l >= 1: dL/dh_{l-1} also gets g directly */
        for (size_t r = 0; r < nr * (size_t)ci; r++) g[r] = gin[r] + (c->residual && l > 0 ? g[r] : 0);
    }
    memcpy(dx, g, sizeof(double) * nr * c->c_in);
    free(gin);
    free(g);
    free(dz);
    for (int l = 0; l <= L; l++) free(acts[l]);
    for (int l = 0; l < L; l++) free(zs[l]);
    free(acts);
    free(zs);
    free(off);
    (void)half;
    (void)d;
}

static double max_rel(const double *ref, const float *got, size_t n, int stride_cm, int nr, int co) {
    /* got is position-major unless stride_cm, then got[q * nr + r] for ref[r * co + q] */
    double m = 0, s = 1;
    for (size_t i = 0; i < n; i++) s = fmax(s, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        const size_t r = i / (size_t)co, q = i % (size_t)co;
        const double g = stride_cm ? got[q * (size_t)nr + r] : got[i];
        m = fmax(m, fabs(g - ref[i]));
    }
    return m / s;
}

static void check_case(int c_in, int hidden, int c_out, int n_hidden, int T, int kernel,
                       int dilation, rf_act act, int residual, int cm, int n) {
    rf_conv1d_cfg cfg = {.c_in = c_in, .c_out = c_out, .length = T, .hidden = hidden,
                         .n_hidden = n_hidden, .kernel = kernel, .dilation = dilation, .act = act,
                         .residual = residual, .out_channel_major = cm};
    rf_err e;
    rf_conv1d *m = rf_conv1d_create(&cfg, &e);
    if (!m) fail_msg("conv1d: %s", e.msg);
    assert_int_equal(rf_conv1d_config(m)->out_channel_major, cm);
    const size_t P = rf_conv1d_n_params(m), nr = (size_t)n * T, NI = nr * c_in, NO = nr * c_out;
    float *p = rf_floats(P, NULL), *x = rf_floats(NI, NULL), *out = rf_floats(NO, NULL);
    float *out2 = rf_floats(NO, NULL), *dout = rf_floats(NO, NULL), *doutl = rf_floats(NO, NULL);
    float *cache = rf_floats(rf_conv1d_cache_floats(m, n), NULL);
    float *fs = rf_floats(rf_conv1d_forward_scratch_floats(m, n) + 1, NULL);
    float *bs = rf_floats(rf_conv1d_backward_scratch_floats(m, n), NULL);
    float *dx = rf_floats(NI, NULL), *dx2 = rf_floats(NI, NULL), *dp = rf_floats(P, NULL);
    float *dp2 = rf_floats(P, NULL), *dp3 = rf_floats(P, NULL);
    double *ref = malloc(sizeof(double) * NO), *rdx = malloc(sizeof(double) * NI);
    double *rdp = malloc(sizeof(double) * P);
    randn(p, P, 0.4f, 100 + (uint64_t)kernel * 7 + (uint64_t)dilation);
    randn(x, NI, 1.0f, 200 + (uint64_t)T);
    randn(dout, NO, 1.0f, 300 + (uint64_t)n);
    /* dout in the layer's layout */
    for (size_t r = 0; r < nr; r++)
        for (int q = 0; q < c_out; q++)
            doutl[cm ? (size_t)q * nr + r : r * c_out + q] = dout[r * c_out + q];
    rf_conv1d_forward(m, p, n, x, out, cache, fs);
    conv_reference(&cfg, p, P, n, x, dout, ref, rdx, rdp);
    const double ef = max_rel(ref, out, NO, cm, (int)nr, c_out);
    /* dparams accumulate: start from 0.5 everywhere */
    for (size_t i = 0; i < P; i++) dp[i] = 0.5f;
    rf_conv1d_backward(m, p, n, x, doutl, dx, dp, cache, bs);
    for (size_t i = 0; i < P; i++) dp[i] -= 0.5f;
    const double ex = max_rel(rdx, dx, NI, 0, (int)nr, c_in);
    const double ep = max_rel(rdp, dp, P, 0, 1, 1);
    printf("[conv1d %dx%d->%d h%d L%d k%d d%d %s res%d %s n%d] forward %.1e, dx %.1e, dparams %.1e\n",
           c_in, T, c_out, hidden, n_hidden, kernel, dilation, rf_act_name(act), residual,
           cm ? "channel-major" : "position-major", n, ef, ex, ep);
    assert_true(ef < 2e-5);
    assert_true(ex < 1e-4);
    assert_true(ep < 1e-4);
    /* same inputs, same bits; dx == NULL leaves dparams as they were with dx */
    rf_conv1d_forward(m, p, n, x, out2, cache, fs);
    assert_memory_equal(out, out2, sizeof(float) * NO);
    memset(dp2, 0, sizeof(float) * P);
    memset(dp3, 0, sizeof(float) * P);
    rf_conv1d_backward(m, p, n, x, doutl, dx2, dp2, cache, bs);
    rf_conv1d_backward(m, p, n, x, doutl, NULL, dp3, cache, bs);
    assert_memory_equal(dp2, dp3, sizeof(float) * P);
    assert_memory_equal(dx, dx2, sizeof(float) * NI);
    free(ref);
    free(rdx);
    free(rdp);
    rf_free(p);
    rf_free(x);
    rf_free(out);
    rf_free(out2);
    rf_free(dout);
    rf_free(doutl);
    rf_free(cache);
    rf_free(fs);
    rf_free(bs);
    rf_free(dx);
    rf_free(dx2);
    rf_free(dp);
    rf_free(dp2);
    rf_free(dp3);
    rf_conv1d_free(m);
}

static void test_conv1d_kernels(void **s) {
    (void)s;
    /* kernel 1..7 (odd), dilation 1..3, odd sizes; n = 45 sequences of 13: blocks of 19, 19, 7 */
    for (int k = 1; k <= 7; k += 2)
        for (int d = 1; d <= 3; d++) {
            if (k == 1 && d > 1) continue;
            check_case(3, 5, 4, 2, 13, k, d, RF_ACT_RELU, 1, (k + d) % 2, 45);
        }
}

static void test_conv1d_layouts(void **s) {
    (void)s;
    for (int cm = 0; cm <= 1; cm++) {
        check_case(5, 7, 6, 2, 13, 5, 1, RF_ACT_TANH, 1, cm, 45);
        check_case(5, 7, 6, 3, 9, 3, 2, RF_ACT_GELU, 0, cm, 31); /* 3 hidden layers */
        check_case(2, 3, 2, 1, 300, 7, 3, RF_ACT_RELU, 0, cm, 3); /* a sequence longer than a block */
        check_case(19, 38, 38, 2, 128, 5, 1, RF_ACT_RELU, 1, cm, 5); /* a benchmark shape */
        check_case(1, 1, 1, 1, 1, 3, 1, RF_ACT_TANH, 1, cm, 2); /* length 1: every tap but one pads */
        check_case(3, 5, 4, 2, 6, 7, 3, RF_ACT_RELU, 1, cm, 1); /* taps reach past both ends */
    }
}

/* ------------------------------------------------------------------ grid path */

/* Position-major (n*T x C) -> grid buffer (conv1d.h) with zero padding. */
static void to_grid(const rf_conv1d_grid *g, int C, const float *pm, float *buf) {
    rf_conv1d_grid_clear(g, C, buf);
    for (int i = 0; i < g->n; i++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < g->T; t++)
                buf[rf_conv1d_grid_at(g, C, i) + (size_t)c * g->row + t] = pm[((size_t)i * g->T + t) * C + c];
}

/* Grid buffer -> position-major, the samples only. */
static void from_grid(const rf_conv1d_grid *g, int C, const float *buf, float *pm) {
    for (int i = 0; i < g->n; i++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < g->T; t++)
                pm[((size_t)i * g->T + t) * C + c] = buf[rf_conv1d_grid_at(g, C, i) + (size_t)c * g->row + t];
}

static void fill_nan(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = NAN;
}

/* The grid forward / backward (direct convolution kernels) against the double reference. Every
 * buffer the net may write or read besides its inputs' samples starts as NaN (outputs, cache,
 * scratch), so a read of a padding position that is not zero, or of something never written,
 * shows up. min_blocks: the batch must span at least that many blocks. */
static void check_grid_case(int c_in, int hidden, int c_out, int n_hidden, int T, int kernel,
                            int dilation, rf_act act, int residual, int n, int min_blocks) {
    rf_conv1d_cfg cfg = {.c_in = c_in, .c_out = c_out, .length = T, .hidden = hidden,
                         .n_hidden = n_hidden, .kernel = kernel, .dilation = dilation, .act = act,
                         .residual = residual};
    rf_err e;
    rf_conv1d *m = rf_conv1d_create(&cfg, &e);
    if (!m) fail_msg("conv1d: %s", e.msg);
    const rf_conv1d_grid g = rf_conv1d_grid_of(m, n);
    assert_true(g.blocks >= min_blocks);
    assert_int_equal(g.row % 16, 0);
    assert_true(g.front >= g.pad);
    const size_t P = rf_conv1d_n_params(m), nr = (size_t)n * T, NI = nr * c_in, NO = nr * c_out;
    const size_t GI = rf_conv1d_grid_floats(&g, c_in), GO = rf_conv1d_grid_floats(&g, c_out);
    const size_t NC = rf_conv1d_grid_cache_floats(m, n);
    const size_t fsn = rf_conv1d_grid_forward_scratch_floats(m, n);
    const size_t bsn = rf_conv1d_grid_backward_scratch_floats(m, n);
    float *p = rf_floats(P, NULL), *x = rf_floats(NI, NULL), *dout = rf_floats(NO, NULL);
    float *xg = rf_floats(GI, NULL), *og = rf_floats(GO, NULL), *og2 = rf_floats(GO, NULL);
    float *dg = rf_floats(GO, NULL), *dxg = rf_floats(GI, NULL), *dxg2 = rf_floats(GI, NULL);
    float *cache = rf_floats(NC, NULL), *fs = rf_floats(fsn, NULL), *bs = rf_floats(bsn, NULL);
    float *out = rf_floats(NO, NULL), *dx = rf_floats(NI, NULL), *dp = rf_floats(P, NULL);
    float *dp2 = rf_floats(P, NULL), *dp3 = rf_floats(P, NULL);
    double *ref = malloc(sizeof(double) * NO), *rdx = malloc(sizeof(double) * NI);
    double *rdp = malloc(sizeof(double) * P);
    randn(p, P, 0.4f, 500 + (uint64_t)kernel * 7 + (uint64_t)dilation);
    randn(x, NI, 1.0f, 600 + (uint64_t)T);
    randn(dout, NO, 1.0f, 700 + (uint64_t)n);
    fill_nan(xg, GI);
    fill_nan(dg, GO);
    to_grid(&g, c_in, x, xg);
    to_grid(&g, c_out, dout, dg);
    fill_nan(og, GO);
    fill_nan(cache, NC);
    fill_nan(fs, fsn);
    fill_nan(bs, bsn);
    fill_nan(dxg, GI);
    rf_conv1d_grid_forward(m, p, n, xg, og, cache, fs);
    conv_reference(&cfg, p, P, n, x, dout, ref, rdx, rdp);
    from_grid(&g, c_out, og, out);
    const double ef = max_rel(ref, out, NO, 0, (int)nr, c_out);
    for (size_t i = 0; i < P; i++) dp[i] = 0.5f;
    rf_conv1d_grid_backward(m, p, n, xg, dg, dxg, dp, cache, bs);
    for (size_t i = 0; i < P; i++) dp[i] -= 0.5f;
    from_grid(&g, c_in, dxg, dx);
    const double ex = max_rel(rdx, dx, NI, 0, (int)nr, c_in);
    const double ep = max_rel(rdp, dp, P, 0, 1, 1);
    printf("[grid %dx%d->%d h%d L%d k%d d%d %s res%d n%d: %d blocks of %d, row %zu] forward %.1e, "
           "dx %.1e, dparams %.1e\n",
           c_in, T, c_out, hidden, n_hidden, kernel, dilation, rf_act_name(act), residual, n,
           g.blocks, g.seqs, g.row, ef, ex, ep);
    assert_true(ef < 2e-5);
    assert_true(ex < 1e-4);
    assert_true(ep < 1e-4);
    /* same inputs, same bits; dx == NULL leaves dparams as they were with dx */
    fill_nan(og2, GO);
    rf_conv1d_grid_forward(m, p, n, xg, og2, cache, fs);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < c_out; c++) {
            const size_t o = rf_conv1d_grid_at(&g, c_out, i) + (size_t)c * g.row;
            assert_memory_equal(og + o, og2 + o, sizeof(float) * (size_t)T);
        }
    memset(dp2, 0, sizeof(float) * P);
    memset(dp3, 0, sizeof(float) * P);
    fill_nan(dxg2, GI);
    rf_conv1d_grid_backward(m, p, n, xg, dg, dxg2, dp2, cache, bs);
    rf_conv1d_grid_backward(m, p, n, xg, dg, NULL, dp3, cache, bs);
    assert_memory_equal(dp2, dp3, sizeof(float) * P);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < c_in; c++) {
            const size_t o = rf_conv1d_grid_at(&g, c_in, i) + (size_t)c * g.row;
            assert_memory_equal(dxg + o, dxg2 + o, sizeof(float) * (size_t)T);
        }
    free(ref);
    free(rdx);
    free(rdp);
    rf_free(p);
    rf_free(x);
    rf_free(dout);
    rf_free(xg);
    rf_free(og);
    rf_free(og2);
    rf_free(dg);
    rf_free(dxg);
    rf_free(dxg2);
    rf_free(cache);
    rf_free(fs);
    rf_free(bs);
    rf_free(out);
    rf_free(dx);
    rf_free(dp);
    rf_free(dp2);
    rf_free(dp3);
    rf_conv1d_free(m);
}

static void test_conv1d_grid_kernels(void **s) {
    (void)s;
    /* kernels 1..7, dilations 1..3, odd channel counts (7 hidden: a register tile of 6 and one
     * of 1; 5 outputs: one tile of 5), ReLU with its fused epilogues */
    for (int k = 1; k <= 7; k += 2)
        for (int d = 1; d <= 3; d++) {
            if (k == 1 && d > 1) continue;
            check_grid_case(3, 7, 5, 2, 13, k, d, RF_ACT_RELU, (k + d) % 2, 45, 1);
        }
}

static void test_conv1d_grid_shapes(void **s) {
    (void)s;
    /* several blocks (sequences of 301: 3 blocks of 8, 8, 7 at 3072 positions), the last one
     * partial */
    check_grid_case(5, 9, 4, 2, 301, 5, 2, RF_ACT_RELU, 1, 23, 2);
    check_grid_case(5, 9, 4, 2, 301, 3, 1, RF_ACT_TANH, 1, 23, 2);
    check_grid_case(5, 7, 6, 3, 9, 3, 2, RF_ACT_GELU, 0, 31, 1); /* 3 hidden layers, no residual */
    check_grid_case(4, 6, 3, 1, 70, 7, 3, RF_ACT_RELU, 0, 50, 2); /* 1 hidden layer */
    check_grid_case(2, 3, 2, 1, 3100, 7, 3, RF_ACT_RELU, 1, 3, 3); /* a sequence longer than a block */
    check_grid_case(19, 38, 38, 2, 128, 5, 1, RF_ACT_RELU, 1, 30, 2); /* the benchmark shape */
    check_grid_case(1, 1, 1, 1, 1, 3, 1, RF_ACT_TANH, 1, 2, 1); /* length 1: every tap but one pads */
    check_grid_case(3, 5, 4, 2, 6, 7, 3, RF_ACT_RELU, 1, 1, 1); /* taps reach past both ends */
    check_grid_case(13, 17, 11, 2, 33, 5, 1, RF_ACT_RELU, 1, 7, 1); /* odd everything */
}

/* The pointwise (1x1) kernels against double loops: y_i = W x_i (and W^T x_i), dW += sum dy_i
 * x_i^T, over rows ldr floats apart whose floats past the block are left alone. */
static void check_pointwise(int n, int O, int C, int T) {
    assert_true(rf_conv1d_pointwise_ok(T));
    const int M = O > C ? O : C;
    const size_t ldr = (size_t)M * T + 7, N = (size_t)n * ldr;
    float *W = rf_floats((size_t)O * C, NULL), *x = rf_floats(N, NULL), *y = rf_floats(N, NULL);
    float *yt = rf_floats(N, NULL), *dy = rf_floats(N, NULL), *dW = rf_floats((size_t)O * C, NULL);
    float *scr = rf_floats((size_t)O * C, NULL);
    randn(W, (size_t)O * C, 0.5f, 901);
    randn(x, N, 1.0f, 902);
    randn(dy, N, 1.0f, 903);
    for (size_t i = 0; i < N; i++) y[i] = yt[i] = 12345.0f;
    rf_conv1d_pointwise(n, O, C, T, W, 0, x, ldr, y, scr);
    /* transposed: W read as (O x C) gives W^T (C x O) times an O-channel input */
    rf_conv1d_pointwise(n, C, O, T, W, 1, dy, ldr, yt, scr);
    for (int i = 0; i < O * C; i++) dW[i] = 0.25f;
    rf_conv1d_pointwise_dw(n, O, C, T, dy, x, ldr, dW);
    double ef = 0, et = 0, ew = 0, sc = 1;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < T; t++) {
            for (int o = 0; o < O; o++) {
                double r = 0;
                for (int c = 0; c < C; c++) r += (double)W[o * C + c] * x[i * ldr + (size_t)c * T + t];
                ef = fmax(ef, fabs(r - y[i * ldr + (size_t)o * T + t]));
                sc = fmax(sc, fabs(r));
            }
            for (int c = 0; c < C; c++) {
                double r = 0;
                for (int o = 0; o < O; o++) r += (double)W[o * C + c] * dy[i * ldr + (size_t)o * T + t];
                et = fmax(et, fabs(r - yt[i * ldr + (size_t)c * T + t]));
            }
        }
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++) {
            double r = 0.25;
            for (int i = 0; i < n; i++)
                for (int t = 0; t < T; t++)
                    r += (double)dy[i * ldr + (size_t)o * T + t] * x[i * ldr + (size_t)c * T + t];
            ew = fmax(ew, fabs(r - dW[o * C + c]) / fmax(1.0, fabs(r)));
        }
    printf("[pointwise n%d %d<-%d T%d] forward %.1e, transposed %.1e, dW %.1e\n", n, O, C, T, ef / sc,
           et / sc, ew);
    assert_true(ef / sc < 1e-5);
    assert_true(et / sc < 1e-5);
    assert_true(ew < 1e-4);
    for (int i = 0; i < n; i++) {
        for (size_t j = (size_t)O * T; j < ldr; j++) assert_true(y[i * ldr + j] == 12345.0f);
        for (size_t j = (size_t)C * T; j < ldr; j++) assert_true(yt[i * ldr + j] == 12345.0f);
    }
    rf_free(W);
    rf_free(x);
    rf_free(y);
    rf_free(yt);
    rf_free(dy);
    rf_free(dW);
    rf_free(scr);
}

/* Winograd F(4, K) layers (src/nn/conv1d_wino.c) on their own, on input buffers that hold exactly
 * the readable positions [-half, J + half) of each row (a read outside shows under ASan): the
 * forward and the transposed (input-gradient) packing against a correlation in double, every
 * epilogue, the weight gradient (dW +=, with dz rows of exactly J floats), lengths that end in a partial vector group or chunk, and nothing written at or past J.
 * (The grid tests above run the same layers inside the network for kernels 3 and 5 at dilation 1.) */
static void test_conv1d_winograd(void **s) {
    (void)s;
    if (!rf_conv1d_wino_ok(5, 1) || !rf_conv1d_wino_ok(3, 1)) {
        printf("Winograd layers need AVX-512; this CPU runs the direct kernels only: skipped\n");
        return;
    }
    assert_false(rf_conv1d_wino_ok(5, 2));
    assert_false(rf_conv1d_wino_ok(7, 1));
    const int shapes[4][2] = {{7, 5}, {38, 19}, {1, 1}, {13, 38}};
    const size_t Js[6] = {16, 48, 64, 112, 528, 1040};
    double worst = 0, worst_dw = 0;
    int runs = 0, epis[5] = {0};
    for (int K = 3; K <= 5; K += 2)
        for (int q = 0; q < 4; q++)
            for (int ji = 0; ji < 6; ji++)
                for (int tr = 0; tr < 2; tr++) {
                    const int OL = shapes[q][0], CL = shapes[q][1], half = (K - 1) / 2;
                    const int Co = tr ? CL : OL, Ci = tr ? OL : CL, epi = (ji + tr + q + K) % 5;
                    const size_t J = Js[ji], ldx = J + 2 * (size_t)half, ldz = J + 16;
                    float *W = rf_floats((size_t)OL * K * CL, NULL), *b = rf_floats((size_t)Co, NULL);
                    float *xb = malloc(sizeof(float) * (size_t)Ci * ldx); /* exactly the readable floats */
                    float *z = rf_floats((size_t)Co * ldz, NULL), *e1 = rf_floats((size_t)Co * ldz, NULL);
                    float *e2 = rf_floats((size_t)Co * ldz, NULL), *z0 = rf_floats((size_t)Co * ldz, NULL);
                    float *up = rf_floats(rf_conv1d_wino_pack_floats(OL, CL, K), NULL);
                    const int cm = Co > Ci ? Co : Ci;
                    float *work = rf_floats(rf_conv1d_wino_work_floats(cm, K), NULL);
                    assert_non_null(xb);
                    randn(W, (size_t)OL * K * CL, 0.3f, 11 + (uint64_t)runs);
                    randn(b, (size_t)Co, 0.5f, 12 + (uint64_t)runs);
                    randn(xb, (size_t)Ci * ldx, 1.0f, 13 + (uint64_t)runs);
                    randn(z0, (size_t)Co * ldz, 1.0f, 14 + (uint64_t)runs);
                    randn(e1, (size_t)Co * ldz, 1.0f, 15 + (uint64_t)runs);
                    const float nan = NAN;
                    for (size_t i = 0; i < (size_t)Co * ldz; i++) {
                        z[i] = epi == 1 ? z0[i] : nan;
                        e2[i] = nan;
                    }
                    const float *x = xb + half;
                    rf_conv1d_wino_pack(OL, CL, K, W, tr, up, work);
                    rf_conv1d_epi ep = {0};
                    if (epi == 0 || epi == 2 || epi == 3) ep.b = b;
                    if (epi == 1) ep.accumulate = 1;
                    if (epi == 2 || epi == 3) ep.epi = RF_CONV1D_EPI_RELU, ep.e1 = epi == 2 ? e1 : NULL, ep.e2 = e2;
                    if (epi == 4) ep.epi = RF_CONV1D_EPI_DRELU, ep.e1 = e1, ep.e2 = e2;
                    rf_conv1d_wino_conv(Co, Ci, K, up, x, ldx, &ep, z, ldz, J, work);
                    double err = 0, err2 = 0, scale = 1;
                    for (int o = 0; o < Co; o++)
                        for (size_t p = 0; p < J; p++) {
                            double r = ep.b ? b[o] : epi == 1 ? z0[(size_t)o * ldz + p] : 0;
                            for (int c = 0; c < Ci; c++)
                                for (int k = 0; k < K; k++) {
                                    const double w = tr ? W[(size_t)c * K * CL + (size_t)(K - 1 - k) * CL + (size_t)o]
                                                        : W[(size_t)o * K * CL + (size_t)k * CL + (size_t)c];
                                    r += w * x[(size_t)c * ldx + p + (size_t)k - (size_t)half];
                                }
                            const size_t at = (size_t)o * ldz + p;
                            scale = fmax(scale, fabs(r));
                            err = fmax(err, fabs(z[at] - r));
                            if (epi == 2 || epi == 3) err2 = fmax(err2, fabs(e2[at] - ((r > 0 ? r : 0) + (epi == 2 ? e1[at] : 0))));
                            if (epi == 4) err2 = fmax(err2, fabs(e2[at] - (e1[at] > 0 ? z[at] : 0)));
                            if (epi < 2) assert_true(isnan(e2[at]));
                        }
                    for (int o = 0; o < Co; o++)
                        for (size_t p = J; p < ldz; p++) {
                            const size_t at = (size_t)o * ldz + p;
                            assert_true(epi == 1 ? z[at] == z0[at] : isnan(z[at]));
                            assert_true(isnan(e2[at]));
                        }
                    if (!tr) { /* the weight gradient of the same layer, dz with rows of exactly J floats */
                        float *dz = malloc(sizeof(float) * (size_t)Co * J), *dW = rf_floats((size_t)OL * K * CL, NULL);
                        assert_non_null(dz);
                        randn(dz, (size_t)Co * J, 1.0f, 16 + (uint64_t)runs);
                        randn(dW, (size_t)OL * K * CL, 1.0f, 17 + (uint64_t)runs);
                        double *ref = malloc(sizeof(double) * (size_t)OL * K * CL);
                        assert_non_null(ref);
                        for (int o = 0; o < OL; o++)
                            for (int k = 0; k < K; k++)
                                for (int c = 0; c < CL; c++) {
                                    double r = 0;
                                    for (size_t p = 0; p < J; p++)
                                        r += (double)dz[(size_t)o * J + p] * x[(size_t)c * ldx + p + (size_t)k - (size_t)half];
                                    ref[((size_t)o * K + k) * CL + c] = r + dW[((size_t)o * K + k) * CL + c];
                                }
                        rf_conv1d_wino_dw(OL, CL, K, dz, J, x, ldx, J, dW, work);
                        double ew = 0, sw = 1;
                        for (size_t i = 0; i < (size_t)OL * K * CL; i++) {
                            ew = fmax(ew, fabs(dW[i] - ref[i]));
                            sw = fmax(sw, fabs(ref[i]));
                        }
                        worst_dw = fmax(worst_dw, ew / sw);
                        assert_true(ew / sw < 2e-5);
                        free(dz), free(ref), rf_free(dW);
                    }
                    worst = fmax(worst, fmax(err, err2) / scale);
                    assert_true(err / scale < 1e-5);
                    assert_true(err2 / scale < 1e-5);
                    epis[epi]++;
                    runs++;
                    rf_free(W), rf_free(b), free(xb), rf_free(z), rf_free(e1), rf_free(e2), rf_free(z0), rf_free(up), rf_free(work);
                }
    for (int i = 0; i < 5; i++) assert_true(epis[i] > 0);
    printf("[winograd F(4,3) and F(4,5)] %d layers (forward and transposed, 5 epilogues): max error %.1e of max |z|; "
           "weight gradients: max error %.1e of max |dW|\n", runs, worst, worst_dw);
}

static void test_conv1d_pointwise(void **s) {
    (void)s;
    assert_false(rf_conv1d_pointwise_ok(8));
    assert_false(rf_conv1d_pointwise_ok(40));
    check_pointwise(9, 7, 3, 16);   /* one vector per row: tiles span rows; 7 = 6 + 1 outputs */
    check_pointwise(5, 13, 38, 48); /* 3 vectors per row, a tile of 4 spans two rows */
    check_pointwise(3, 38, 38, 128);
    check_pointwise(1, 1, 5, 80);
    check_pointwise(300, 5, 4, 32); /* more rows than a dW run holds */
}

/* ------------------------------------------------------------------ ts coupling */

typedef struct {
    rf_layer *l;
    float *p, *cache, *scr, *y, *ld;
    int n;
    const float *w, *v; /* L = sum w * y + sum v * logdet */
} cp_ctx;

static double cp_loss(cp_ctx *c, const float *x) {
    memset(c->ld, 0, sizeof(float) * c->n);
    c->l->ops->forward(c->l, c->p, c->n, x, c->y, c->ld, NULL, c->scr);
    double L = 0;
    for (size_t i = 0; i < (size_t)c->n * c->l->dim; i++) L += (double)c->w[i] * c->y[i];
    for (int i = 0; i < c->n; i++) L += (double)c->v[i] * c->ld[i];
    return L;
}


/* Relative error of the analytic gradient g (N entries) of cp_loss(c, x) with respect to v (x
 * itself or the layer's parameters), by central differences with step h. */
static double fd_rf_test_rel_err(cp_ctx *c, const float *x, float *v, const float *g, size_t N, float h) {
    double *ga = malloc(sizeof(double) * (N ? N : 1)), *gn = malloc(sizeof(double) * (N ? N : 1));
    for (size_t i = 0; i < N; i++) {
        const float s0 = v[i];
        v[i] = s0 + h;
        const double Lp = cp_loss(c, x);
        v[i] = s0 - h;
        const double Lm = cp_loss(c, x);
        v[i] = s0;
        gn[i] = (Lp - Lm) / ((double)(s0 + h) - (double)(s0 - h));
        ga[i] = g[i];
    }
    const double r = rf_test_rel_err(ga, gn, N);
    free(ga);
    free(gn);
    return r;
}

static void check_coupling(int spline, float clamp) {
    const int C = 5, T = 37, D = C * T + 4, n = 7;
    rf_ts_coupling_cfg cfg = {.D = D, .channels = C, .length = T, .spline = spline, .clamp = clamp,
                              .bins = 4, .bound = 3.0f,
                              .cond = {.hidden = 6, .n_hidden = 2, .kernel = 3, .dilation = 2,
                                       .act = RF_ACT_TANH, .residual = 1}};
    rf_err e;
    rf_layer *l = rf_ts_coupling_create(&cfg, &e);
    if (!l) fail_msg("ts_coupling: %s", e.msg);
    const size_t P = l->n_params, N = (size_t)n * D;
    float *p = rf_floats(P, NULL), *x = rf_floats(N, NULL), *y = rf_floats(N, NULL);
    float *y2 = rf_floats(N, NULL), *x2 = rf_floats(N, NULL), *ly = rf_floats(N, NULL);
    float *ld = rf_floats(n, NULL), *ld2 = rf_floats(n, NULL), *ld3 = rf_floats(n, NULL);
    float *cache = rf_floats(l->ops->cache_floats(l, n), NULL);
    float *scr = rf_floats(l->ops->scratch_floats(l, n), NULL);
    float *w = rf_floats(N, NULL), *v = rf_floats(n, NULL), *dx = rf_floats(N, NULL);
    float *dp = rf_floats(P, NULL), *lld = rf_floats(n, NULL);
    rf_rng r;
    rf_rng_seed(&r, 5);
    l->ops->init_params(l, p, &r);
    /* a spline's gradients are piecewise: smaller parameters and steps keep the finite differences
     * inside one bin */
    const float ps = spline ? 0.1f : 0.3f, h = spline ? 1e-3f : 1e-2f;
    for (size_t i = 0; i < P; i++) p[i] += ps * (float)rf_rng_normal(&r);
    randn(x, N, 1.0f, 11);
    randn(w, N, 1.0f, 12);
    randn(v, n, 1.0f, 13);
    /* forward with a cache (training) = forward without; the inverse undoes it */
    memset(ld, 0, sizeof(float) * n);
    memset(ld2, 0, sizeof(float) * n);
    memset(ld3, 0, sizeof(float) * n);
    l->ops->forward(l, p, n, x, y, ld, cache, scr);
    l->ops->forward(l, p, n, x, y2, ld2, NULL, scr);
    assert_memory_equal(y, y2, sizeof(float) * N);
    assert_memory_equal(ld, ld2, sizeof(float) * n);
    l->ops->inverse(l, p, n, y, x2, ld3, scr);
    double erx = 0, eld = 0, moved = 0;
    for (size_t i = 0; i < N; i++) {
        erx = fmax(erx, fabs(x2[i] - x[i]));
        moved = fmax(moved, fabs(y[i] - x[i]));
    }
    for (int i = 0; i < n; i++) eld = fmax(eld, fabs(ld[i] + ld3[i]) / fmax(1.0, fabs(ld[i])));
    /* backward (from the training forward's cache) against finite differences */
    memset(dp, 0, sizeof(float) * P);
    l->ops->forward(l, p, n, x, y, ld, cache, scr);
    l->ops->backward(l, p, n, x, w, v, dx, dp, cache, scr);
    cp_ctx c = {l, p, cache, scr, ly, lld, n, w, v};
    const double gx = fd_rf_test_rel_err(&c, x, x, dx, N, h);
    const double gp = fd_rf_test_rel_err(&c, x, p, dp, P, h);
    printf("[ts_coupling %s clamp %.0f] moved %.2f, round trip %.1e, log-det %.1e, grad_x %.1e, grad_p %.1e\n",
           spline ? "spline" : "affine", clamp, moved, erx, eld, gx, gp);
    assert_true(moved > 0.05); /* not the identity */
    assert_true(erx < 1e-4);
    assert_true(eld < 1e-4);
    assert_true(gx < 1e-2);
    assert_true(gp < 1e-2);
    /* the inactive tail is copied */
    for (int i = 0; i < n; i++)
        for (int j = C * T; j < D; j++) assert_true(y[(size_t)i * D + j] == x[(size_t)i * D + j]);
    rf_free(p);
    rf_free(x);
    rf_free(y);
    rf_free(y2);
    rf_free(x2);
    rf_free(ly);
    rf_free(ld);
    rf_free(ld2);
    rf_free(ld3);
    rf_free(cache);
    rf_free(scr);
    rf_free(w);
    rf_free(v);
    rf_free(dx);
    rf_free(dp);
    rf_free(lld);
    rf_layer_free(l);
}

static void test_ts_coupling_paths(void **s) {
    (void)s;
    check_coupling(0, 3.0f); /* affine, soft clamp */
    check_coupling(0, 0.0f); /* affine, no clamp */
    check_coupling(1, 0.0f); /* spline */
}

/* ts_conv1x1 on a length that takes the pointwise kernels (T = 32): inverse round trip, log-det,
 * and the backward against finite differences (the whole row, tail included). */
static void test_ts_conv1x1_pointwise(void **s) {
    (void)s;
    const int C = 7, T = 32, D = C * T + 5, n = 4;
    rf_rng r;
    rf_rng_seed(&r, 21);
    rf_layer *l = rf_ts_conv1x1_create(D, C, T, &r, NULL);
    assert_non_null(l);
    const size_t P = l->n_params, N = (size_t)n * D;
    float *p = rf_floats(P, NULL), *x = rf_floats(N, NULL), *y = rf_floats(N, NULL);
    float *x2 = rf_floats(N, NULL), *ly = rf_floats(N, NULL), *ld = rf_floats(n, NULL);
    float *ld2 = rf_floats(n, NULL), *lld = rf_floats(n, NULL);
    float *scr = rf_floats(l->ops->scratch_floats(l, n), NULL);
    float *w = rf_floats(N, NULL), *v = rf_floats(n, NULL), *dx = rf_floats(N, NULL);
    float *dp = rf_floats(P, NULL);
    l->ops->init_params(l, p, &r);
    for (size_t i = 0; i < P; i++) p[i] += 0.1f * (float)rf_rng_normal(&r);
    randn(x, N, 1.0f, 31);
    randn(w, N, 1.0f, 32);
    randn(v, n, 1.0f, 33);
    memset(ld, 0, sizeof(float) * n);
    memset(ld2, 0, sizeof(float) * n);
    l->ops->forward(l, p, n, x, y, ld, NULL, scr);
    l->ops->inverse(l, p, n, y, x2, ld2, scr);
    double erx = 0, moved = 0;
    for (size_t i = 0; i < N; i++) {
        erx = fmax(erx, fabs(x2[i] - x[i]));
        moved = fmax(moved, fabs(y[i] - x[i]));
    }
    memset(dp, 0, sizeof(float) * P);
    l->ops->backward(l, p, n, x, w, v, dx, dp, NULL, scr);
    cp_ctx c = {l, p, NULL, scr, ly, lld, n, w, v};
    const float h = 1e-2f;
    const double gx = fd_rf_test_rel_err(&c, x, x, dx, N, h);
    const double gp = fd_rf_test_rel_err(&c, x, p, dp, P, h);
    printf("[ts_conv1x1 %dx%d] moved %.2f, round trip %.1e, log-det %.1e, grad_x %.1e, grad_p %.1e\n", C, T,
           moved, erx, fabs(ld[0] + ld2[0]), gx, gp);
    assert_true(moved > 0.05);
    assert_true(erx < 1e-4);
    assert_true(fabs(ld[0] + ld2[0]) < 1e-3);
    assert_true(gx < 1e-2);
    assert_true(gp < 1e-2);
    for (int i = 0; i < n; i++)
        for (int j = C * T; j < D; j++) assert_true(y[(size_t)i * D + j] == x[(size_t)i * D + j]);
    rf_free(p);
    rf_free(x);
    rf_free(y);
    rf_free(x2);
    rf_free(ly);
    rf_free(ld);
    rf_free(ld2);
    rf_free(lld);
    rf_free(scr);
    rf_free(w);
    rf_free(v);
    rf_free(dx);
    rf_free(dp);
    rf_layer_free(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv1d_kernels),
        cmocka_unit_test(test_conv1d_layouts),
        cmocka_unit_test(test_conv1d_grid_kernels),
        cmocka_unit_test(test_conv1d_grid_shapes),
        cmocka_unit_test(test_conv1d_winograd),
        cmocka_unit_test(test_conv1d_pointwise),
        cmocka_unit_test(test_ts_coupling_paths),
        cmocka_unit_test(test_ts_conv1x1_pointwise),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
