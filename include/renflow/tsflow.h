/* renflow tsflow: multi-scale invertible networks for multichannel time-series windows
 * (flow type "tsflow", RF_FLOW_TS).
 *
 * Representation. A window of C channels x T samples is one row of D = C * T floats,
 * channel-major: x[c * T + t]. Every layer keeps dim = D, so the flow container, workspaces,
 * bases, training loop, model file and memory-saving backward work unchanged. A layer built for
 * a scale acts on the ACTIVE prefix of each row, the first A = C_s * T_s floats viewed as C_s
 * channels x T_s samples (channel-major), and copies the rest of the row unchanged.
 *
 * Architecture (rf_flow_create with spec.type = RF_FLOW_TS): for scale s = 0 .. S-1
 *   Haar squeeze (C_s x T_s -> 2 C_s x T_s / 2),
 *   `blocks` x (per-channel ActNorm, invertible 1x1 over channels, coupling over channels),
 *   factor-out (not at the last scale): the last half of the active channels, which is the
 *   contiguous tail [A/2, A) of the active prefix, is left alone by every later layer and goes
 *   straight to the base distribution.
 * With C_0 = C, T_0 = T the active prefix of scale s has D / 2^s floats (2C channels x
 * T / 2^(s+1) samples after its squeeze); the latent variables of scale s < S-1 are
 * z[D / 2^(s+1) .. D / 2^s), those of the last scale z[0 .. D / 2^(S-1)). */
#ifndef RENFLOW_TSFLOW_H
#define RENFLOW_TSFLOW_H

#include "renflow/core.h"
#include "renflow/flow.h"
#include "renflow/model.h"
#include "renflow/nn.h"

/* ---------------- 1-D convolutional conditioner ----------------
 * Layout: n sequences of `length` positions with c_in features each, position-major
 * ("NTC"): x[(i * length + t) * c_in + c]. Output likewise with c_out features.
 * Layers l = 0 .. n_hidden: a convolution with `kernel` taps (odd), `dilation`, 'same' zero
 * padding (tap k reads position t + (k - (kernel-1)/2) * dilation) and a bias; hidden layers
 * output `hidden` channels through `act` (with residual and l >= 1: h_l = h_{l-1} + act(z_l));
 * the last layer is linear with c_out channels and zero-initialised (a fresh net outputs 0).
 * With out_channel_major the output (and dout) is channel-major over the whole batch instead:
 * out[q * (n * length) + i * length + t].
 * Implemented as im2col + rf_gemm on blocks of whole sequences (a few hundred positions, so a
 * block's buffers stay in cache); forward and backward take caller-provided buffers whose sizes
 * are declared up front (nothing is allocated in forward / backward).
 * Parameters, layer after layer: W_l (out x kernel*in, column index k * in + c) then b_l (out). */
typedef struct rf_conv1d_cfg {
    int c_in, c_out;
    int length;   /* samples per sequence */
    int hidden;   /* channels of the hidden layers */
    int n_hidden; /* hidden conv layers, >= 1 */
    int kernel;   /* odd, >= 1 */
    int dilation; /* >= 1 */
    rf_act act;
    int residual;
    int out_channel_major; /* output layout (see above); 0: position-major */
} rf_conv1d_cfg;

typedef struct rf_conv1d rf_conv1d;
rf_conv1d *rf_conv1d_create(const rf_conv1d_cfg *cfg, rf_err *e);
void rf_conv1d_free(rf_conv1d *m);
const rf_conv1d_cfg *rf_conv1d_config(const rf_conv1d *m);
size_t rf_conv1d_n_params(const rf_conv1d *m);
/* Kaiming-uniform hidden weights (fan-in = kernel * in), zero biases, zero last layer. */
void rf_conv1d_init_params(const rf_conv1d *m, float *params, rf_rng *rng);
/* Floats of `cache` the forward fills for a batch of n sequences (pre-activations and
 * activations of the hidden layers); always required. */
size_t rf_conv1d_cache_floats(const rf_conv1d *m, int n);
/* Floats of `scratch` the forward needs (one block's im2col buffer). */
size_t rf_conv1d_forward_scratch_floats(const rf_conv1d *m, int n);
/* Floats of `scratch` the backward needs. */
size_t rf_conv1d_backward_scratch_floats(const rf_conv1d *m, int n);
void rf_conv1d_forward(const rf_conv1d *m, const float *params, int n, const float *x,
                       float *out, float *cache, float *scratch);
/* Given dout and the cache of the forward on x: accumulates dparams (+=) and writes dx unless
 * dx == NULL. */
void rf_conv1d_backward(const rf_conv1d *m, const float *params, int n, const float *x,
                        const float *dout, float *dx, float *dparams, const float *cache,
                        float *scratch);

/* ---------------- time-series layers ----------------
 * `channels` x `length` is the shape of the active prefix the layer sees (channels * length
 * <= D); the rest of each row is copied. */

/* Haar squeeze: per channel, sample pairs (a, b) -> ((a + b) / sqrt 2, (a - b) / sqrt 2); the
 * output is 2 * channels x length / 2 (low-pass channels first, then high-pass). Orthonormal:
 * log|det| = 0. length must be even. */
rf_layer *rf_ts_squeeze_create(int D, int channels, int length, rf_err *e);
/* Per-channel ActNorm: y[c, t] = (x[c, t] + b_c) exp(s_c); log|det| = length * sum s.
 * Data-dependent init: b = -mean, s = -log std over all samples and time steps of a channel. */
rf_layer *rf_ts_actnorm_create(int D, int channels, int length, rf_err *e);
/* Invertible 1x1 convolution over channels (Glow): y[:, t] = W x[:, t] at every t with
 * W = P L (U + diag(sign exp(logs))) (params: channels x channels, as rf_lu_linear);
 * log|det| = length * sum logs. Initialised from a random rotation (LAPACK) drawn from rng. */
rf_layer *rf_ts_conv1x1_create(int D, int channels, int length, rf_rng *rng, rf_err *e);

/* Coupling over channels: the first floor(channels / 2) channels (a) pass through and feed a
 * 1-D conv net whose outputs parameterise an elementwise monotone transform of every sample of
 * the other channels (b): affine (2 params, s = clamp * tanh(raw / clamp)) or rational-
 * quadratic spline (3 bins - 1 params, identity tails outside [-bound, bound]). The net's last
 * layer is zero-initialised, so a fresh layer is exactly the identity. cond.c_in, cond.c_out
 * and cond.length are filled in by the layer. Needs channels >= 2. */
typedef struct rf_ts_coupling_cfg {
    int D, channels, length;
    rf_conv1d_cfg cond;
    int spline;  /* 0: affine, 1: RQ spline */
    float clamp; /* affine */
    int bins;    /* spline */
    float bound; /* spline */
} rf_ts_coupling_cfg;
rf_layer *rf_ts_coupling_create(const rf_ts_coupling_cfg *cfg, rf_err *e);

/* 1 and the active shape when l is a time-series layer (its input shape for the squeeze), 0
 * otherwise. */
int rf_ts_layer_shape(const rf_layer *l, int *channels, int *length);

/* ---------------- architecture ---------------- */
/* A tsflow spec for windows of C channels x T samples (the CLI's default when no architecture
 * flags are given): scales = the largest S <= 4 with T % 2^S == 0 and T / 2^S >= 2; 4 blocks per
 * scale (3 when C * T > 4096); conv conditioners with 2 hidden layers of
 * clamp(2 * C, 32, 128) channels, kernel 3 (5 when T >= 256), dilation 1, residual, ReLU;
 * affine coupling with clamp 3; normal base. RF_EARG when T is odd or C, T are out of range. */
int rf_tsflow_spec_default(rf_flow_spec *s, int C, int T, rf_err *e);

/* ---------------- per-scale log-likelihood ----------------
 * For a tsflow, log p(x) splits exactly into per-scale parts:
 *   part_s = (base log-density of the latent variables factored out at scale s)
 *          + (log|det| of every layer of scale s),
 * with the standardisation's log-determinant assigned to scale 0. The normal and diagonal
 * bases factorise over dimensions, so this is exact. A class-conditional base is diagonal per
 * class: with labels, log p(z | y) splits the same way; without labels (the marginal over a
 * uniform class prior) the identity log p(z) = sum_c q(c|z) [log p(c) + log p(z|c) - log q(c|z)]
 * gives part_s = sum_c q(c|z) log p(z_s | c) plus a class term
 * sum_c q(c|z) (log p(c) - log q(c|z)) reported separately.
 * Non-tsflow models report one scale holding everything. */
#define RF_TS_MAX_SCALES 16
typedef struct rf_scale_report {
    int n_scales;
    int D;
    int dims[RF_TS_MAX_SCALES];            /* latent variables of each scale (sum = D) */
    double nll_nats[RF_TS_MAX_SCALES];     /* mean over rows of -part_s, nats per example */
    double bits_per_dim[RF_TS_MAX_SCALES]; /* nll_nats[s] / (dims[s] ln 2): that scale's own bpd */
    double share_bits_per_dim[RF_TS_MAX_SCALES]; /* nll_nats[s] / (D ln 2): sums to the total */
    double class_nats;         /* mean -(class term); 0 unless class base without labels */
    double total_nll_nats;     /* sum_s nll_nats[s] + class_nats = mean -log p(x) */
    double total_bits_per_dim; /* total_nll_nats / (D ln 2) */
} rf_scale_report;
/* Number of scales rf_flow_scale_report uses for f (spec.scales for a tsflow, else 1). */
int rf_flow_n_scales(const rf_flow *f);
/* x: n rows of D floats (data units; the model's standardisation is applied). labels may be
 * NULL. per_sample (may be NULL): n x (n_scales + 1) log-likelihood parts in nats, the last
 * column the class term; each row sums to log p(x_i). */
int rf_flow_scale_report(const rf_flow *f, int n, const float *x, const int *labels,
                         rf_scale_report *r, double *per_sample, rf_err *e);

#endif
