/* Private to the library (src/nn/conv1d.c, used by src/flow/ts_coupling.c and the tests): the
 * 1-D conv conditioner on the "grid" layout, a padded channel-major layout in which a convolution
 * needs no im2col / col2im buffers.
 *
 * Grid layout of a batch of n sequences (length T) with C channels: the sequences are grouped in
 * blocks of `seqs` whole sequences (the last block may hold fewer); block b is a C x row matrix
 * (channel-major, `row` floats per channel, a multiple of 16), blocks one after the other. In a
 * channel's row, sequence s of the block starts at front + s * (T + pad) and its T samples are
 * contiguous; pad = (kernel - 1) / 2 * dilation. Every other position of a row (the first `front`
 * floats, the pad floats after each sequence, the rest of the row after the last one) is a
 * padding position. A tap of the convolution at time t reads t + (k - half) * dilation, which for
 * positions outside [0, T) lands on padding positions; as those hold zeros in every input the
 * net reads (x, dout and its own activations), 'same' zero padding needs no special cases, and a
 * layer is computed for all positions of a block at once, 16 at a time.
 *
 * Inputs (x of the forward, x and dout of the backward) must hold zeros at every padding position
 * (rf_conv1d_grid_clear); outputs (out, dx) hold unspecified values there. */
#ifndef RF_NN_CONV1D_H
#define RF_NN_CONV1D_H

#include <stddef.h>

#include "renflow/tsflow.h"

#define RF_CONV1D_INTERNAL __attribute__((visibility("hidden")))

typedef struct rf_conv1d_grid {
    int n;       /* sequences */
    int T;       /* samples per sequence */
    int seqs;    /* sequences per block */
    int blocks;  /* ceil(n / seqs) */
    int pad;     /* (kernel - 1) / 2 * dilation */
    int front;   /* offset of the first sequence in a row: pad rounded up to a multiple of 16 */
    size_t row;  /* floats per channel row of a block (a multiple of 16) */
} rf_conv1d_grid;

/* The grid of m for a batch of n >= 0 sequences. */
RF_CONV1D_INTERNAL rf_conv1d_grid rf_conv1d_grid_of(const rf_conv1d *m, int n);
/* Floats of a grid buffer with C channels (a multiple of 16). */
static inline size_t rf_conv1d_grid_floats(const rf_conv1d_grid *g, int C) {
    return (size_t)g->blocks * (size_t)C * g->row;
}
/* Offset of sample 0 of sequence i, channel 0, in a grid buffer with C channels; channel c is
 * c * row further. */
static inline size_t rf_conv1d_grid_at(const rf_conv1d_grid *g, int C, int i) {
    return (size_t)(i / g->seqs) * (size_t)C * g->row + (size_t)g->front +
           (size_t)(i % g->seqs) * (size_t)(g->T + g->pad);
}
/* Sets every padding position of a grid buffer with C channels to 0. */
RF_CONV1D_INTERNAL void rf_conv1d_grid_clear(const rf_conv1d_grid *g, int C, float *buf);

/* Buffer sizes of the grid passes for n sequences (floats). */
RF_CONV1D_INTERNAL size_t rf_conv1d_grid_cache_floats(const rf_conv1d *m, int n);
RF_CONV1D_INTERNAL size_t rf_conv1d_grid_forward_scratch_floats(const rf_conv1d *m, int n);
RF_CONV1D_INTERNAL size_t rf_conv1d_grid_backward_scratch_floats(const rf_conv1d *m, int n);
/* The network on grid buffers: x (c_in channels, zero padding) -> out (c_out channels). The same
 * function as rf_conv1d_forward up to float round-off (other summation order, FMA). */
RF_CONV1D_INTERNAL void rf_conv1d_grid_forward(const rf_conv1d *m, const float *params, int n,
                                               const float *x, float *out, float *cache,
                                               float *scratch);
/* Given dout (c_out channels, zero padding) and the cache of the grid forward on x: accumulates
 * dparams (+=) and writes dx (c_in channels) unless dx == NULL. */
RF_CONV1D_INTERNAL void rf_conv1d_grid_backward(const rf_conv1d *m, const float *params, int n,
                                                const float *x, const float *dout, float *dx,
                                                float *dparams, const float *cache,
                                                float *scratch);

/* Pointwise (1x1) convolution over the rows of a batch, for T a multiple of 16
 * (rf_conv1d_pointwise_ok): row i's C x T block (channel-major, T apart) starts at x + i * ldr,
 * its O x T result at y + i * ldr; y_i = W x_i with W (O x C, row-major), or with transposed
 * y_i = W^T x_i with W (C x O). scratch: O * C floats. */
RF_CONV1D_INTERNAL int rf_conv1d_pointwise_ok(int T);
RF_CONV1D_INTERNAL void rf_conv1d_pointwise(int n, int O, int C, int T, const float *W,
                                            int transposed, const float *x, size_t ldr, float *y,
                                            float *scratch);
/* dW (O x C) += sum over rows i of dy_i (O x T) x_i (C x T)^T, rows laid out as above. */
RF_CONV1D_INTERNAL void rf_conv1d_pointwise_dw(int n, int O, int C, int T, const float *dy,
                                               const float *x, size_t ldr, float *dW);

/* What a grid convolution does with its outputs z besides the convolution: init from the bias b
 * (or, without b, from z itself when accumulate, else 0); with RELU also e2 = relu(z) (+ e1, the
 * residual, when given), with DRELU e2 = (e1 > 0 ? z : 0) (the ReLU's backward, e1 the
 * pre-activation). e1 and e2 share z's layout (row stride and positions). */
enum { RF_CONV1D_EPI_NONE, RF_CONV1D_EPI_RELU, RF_CONV1D_EPI_DRELU };
typedef struct {
    const float *b;
    int accumulate, epi;
    const float *e1;
    float *e2;
} rf_conv1d_epi;

/* z (O rows, ldz apart; positions [0, J), J a multiple of 16) = W x for x (C rows, ldx apart),
 * with W (O x C, row-major) packed by rf_conv1d_grid_pack1 (round16(O * C) floats); no epilogue. */
RF_CONV1D_INTERNAL void rf_conv1d_grid_pack1(int O, int C, const float *W, float *wp);
RF_CONV1D_INTERNAL void rf_conv1d_grid_matmul(int O, int C, const float *wp, const float *x,
                                              size_t ldx, float *z, size_t ldz, size_t J);
/* dW (O x C, row-major) += dz x^T over positions [0, J) (J a multiple of 16) of dz (O rows) and x
 * (C rows), both with rows ld apart. */
RF_CONV1D_INTERNAL void rf_conv1d_grid_matmul_dw(int O, int C, const float *dz, const float *x,
                                                 size_t ld, size_t J, float *dW);

/* Winograd F(4, K) minimal filtering for a layer of the grid network (src/nn/conv1d_wino.c), used
 * for kernel 3 and 5 at dilation 1 on CPUs with AVX-512 (rf_conv1d_wino_ok). A tile of 4 outputs
 * of one channel pair costs K + 3 multiplications instead of 4 K: with kernel 5, 8 instead of 20
 * (the transforms around the products add about a fifth of that back). */
RF_CONV1D_INTERNAL int rf_conv1d_wino_ok(int kernel, int dilation);
/* Floats of one layer's transformed weights (O outputs, C inputs), and of the work buffers of a
 * layer with at most cmax channels on either side. */
RF_CONV1D_INTERNAL size_t rf_conv1d_wino_pack_floats(int O, int C, int K);
RF_CONV1D_INTERNAL size_t rf_conv1d_wino_work_floats(int cmax, int K);
/* Transforms W (O x K x C, the layer's weights, O x K*C row-major) for rf_conv1d_wino_conv; with
 * transposed the packed layer maps O channels to C with the taps reversed (the input gradient).
 * tmp: round16(O * C) floats. */
RF_CONV1D_INTERNAL void rf_conv1d_wino_pack(int O, int C, int K, const float *W, int transposed,
                                            float *up, float *tmp);
/* z (O rows) = the 'same' correlation of x (C rows, ldx apart, zeros at the grid's padding
 * positions, readable from -(K-1)/2 to J + (K-1)/2 - 1) with the packed weights, at positions
 * [0, J) (J a multiple of 16), then the epilogue. O and C are the packed layer's output and input
 * channels. work: rf_conv1d_wino_work_floats. */
RF_CONV1D_INTERNAL void rf_conv1d_wino_conv(int O, int C, int K, const float *up, const float *x,
                                            size_t ldx, const rf_conv1d_epi *ep, float *z,
                                            size_t ldz, size_t J, float *work);
/* The weight gradient of such a layer (O outputs, C inputs, weights O x K x C):
 * dW[o][k][c] += sum over positions p < J of dz[o][p] x[c][p + k - (K-1)/2], with dz's rows (ldz
 * apart) readable on [0, J) and x's as above; summed in the Winograd domain (the transposed
 * transforms) and mapped to the K taps once per call. */
RF_CONV1D_INTERNAL void rf_conv1d_wino_dw(int O, int C, int K, const float *dz, size_t ldz,
                                          const float *x, size_t ldx, size_t J, float *dW,
                                          float *work);

#endif
