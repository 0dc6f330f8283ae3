/* Winograd minimal filtering F(4, K) for the grid convolution (conv1d.h), kernel 3 or 5 at
 * dilation 1.
 *
 * For one input channel x and one filter g of K taps, the 4 outputs of a tile,
 * y[j] = sum_k g[k] x[j + k - half] (j < 4), are y = AT [(G g) . (BT d)], with d the tile's
 * a = K + 3 inputs x[-half .. 3 + half] and three constant matrices: a products instead of 4 K.
 * Over channels the products become a matrix products, one per Winograd point xi:
 *   U_xi = sum_k G[xi][k] W[., k, .]   (O x C, once per call: rf_conv1d_wino_pack)
 *   V_xi = sum_i BT[xi][i] X_i          (C x tiles: the input transform)
 *   M_xi = U_xi V_xi                    (O x tiles: rf_conv1d_grid_matmul, the direct kernel's
 *                                        register tiles with one tap)
 *   z[4 t + j] = sum_xi AT[j][xi] M_xi[t] (+ bias, ReLU, residual: the output transform)
 * With kernel 5 that is 8 products per 4 outputs instead of 20.
 *
 * Matrices: the Cook-Toom construction at the points 0, 1, -1, 2, -2 (and 1/2, -1/2 for K = 5)
 * and infinity (as in Lavin & Gray, "Fast algorithms for convolutional neural networks", 2016),
 * exact rationals; G is applied in double. The float32 error of a layer is a few times that of
 * the direct sum (tests/test_conv1d_fast.c compares both with a double-precision reference).
 *
 * Layout. Positions are processed in chunks of WINO_CHUNK tiles, so V and M (a x channels x
 * WINO_CHUNK floats each) stay in L2. Vectors hold 16 tiles: 64 consecutive positions are split
 * into their 4 phases (x[4 t + q], q < 4) by two rounds of two-vector shuffles, the shifted
 * inputs of the tiles are those phases or their one- or two-lane shifts into the next group's,
 * and the outputs are interleaved back the same way. Reads stop at J + half (the end of what the
 * grid guarantees to be readable); the last group's inputs are staged through a zero-filled
 * buffer. The summation order is fixed: results depend on the sizes only. */
#pragma GCC optimize("fp-contract=fast")

#include <stddef.h>
#include <string.h>

#include "conv1d.h"

#define WINO_CHUNK 128 /* tiles per chunk (a multiple of 16) */
#define WINO_DW_CHUNK 512 /* tiles per chunk of the weight gradient (fewer lane reductions) */
#define WINO_AMAX 8    /* a = K + 3 for K <= 5 */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WINO_HAVE 1
#define WINO_TARGET __attribute__((target("arch=x86-64-v4")))
#else
#define WINO_HAVE 0
#define WINO_TARGET
#endif

typedef float wv __attribute__((vector_size(64)));
typedef float wvu __attribute__((vector_size(64), aligned(4), may_alias));
typedef int wvi __attribute__((vector_size(64)));
#define wv_load(p) (*(const wvu *)(p))
#define wv_store(p, v) (*(wvu *)(p) = (v))

/* The transforms (the hand-factored wino_bt / wino_at below evaluate exactly these):
 * F(4, 3), points 0, 1, -1, 2, -2, infinity:
 *   BT = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   AT = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 * F(4, 5), points 0, 1, -1, 2, -2, 1/2, -1/2, infinity:
 *   BT = [1 0 -21/4 0 21/4 0 -1 0;  0 1 1 -17/4 -17/4 1 1 0;  0 -1 1 17/4 -17/4 -1 1 0;
 *         0 1/2 1/4 -5/2 -5/4 2 1 0;  0 -1/2 1/4 5/2 -5/4 -2 1 0;  0 2 4 -5/2 -5 1/2 1 0;
 *         0 -2 4 5/2 -5 -1/2 1 0;  0 -1 0 21/4 0 -21/4 0 1]
 *   AT = [1 1 1 1 1 1 1 0; 0 1 -1 2 -2 1/2 -1/2 0; 0 1 1 4 4 1/4 1/4 0; 0 1 -1 8 -8 1/8 -1/8 1]
 * and G (applied to the weights, in double): */
static const double wino_g3[6][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};

static const double wino_g5[8][5] = {
    {1, 0, 0, 0, 0},
    {-2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9},
    {-2.0 / 9, 2.0 / 9, -2.0 / 9, 2.0 / 9, -2.0 / 9},
    {1.0 / 90, 1.0 / 45, 2.0 / 45, 4.0 / 45, 8.0 / 45},
    {1.0 / 90, -1.0 / 45, 2.0 / 45, -4.0 / 45, 8.0 / 45},
    {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45, 2.0 / 45},
    {32.0 / 45, -16.0 / 45, 8.0 / 45, -4.0 / 45, 2.0 / 45},
    {0, 0, 0, 0, 1},
};

static size_t round16(size_t v) { return (v + 15) / 16 * 16; }

int rf_conv1d_wino_ok(int kernel, int dilation) {
#if WINO_HAVE
    return dilation == 1 && (kernel == 3 || kernel == 5) && __builtin_cpu_supports("avx512f");
#else
    (void)kernel;
    (void)dilation;
    return 0;
#endif
}

size_t rf_conv1d_wino_pack_floats(int O, int C, int K) { return (size_t)(K + 3) * round16((size_t)O * C); }

size_t rf_conv1d_wino_work_floats(int cmax, int K) {
    const size_t a = (size_t)(K + 3), vm = 2 * a * (size_t)cmax * WINO_CHUNK;
    const size_t dw = 2 * a * (size_t)cmax * WINO_DW_CHUNK + a * round16((size_t)cmax * cmax);
    return vm > dw ? vm : dw;
}

void rf_conv1d_wino_pack(int O, int C, int K, const float *W, int transposed, float *up, float *tmp) {
    const int a = K + 3, Co = transposed ? C : O, Ci = transposed ? O : C;
    const size_t per = round16((size_t)O * C);
    for (int xi = 0; xi < a; xi++) {
        for (int r = 0; r < Co; r++)
            for (int s = 0; s < Ci; s++) {
                double u = 0;
                for (int k = 0; k < K; k++) {
                    const double gk = K == 5 ? wino_g5[xi][k] : wino_g3[xi][k];
                    /* forward: U[r = o][s = c] from W[o][k][c]; transposed: U[r = c][s = o] from
                     * W[o][K - 1 - k][c] */
                    const float w = transposed ? W[(size_t)s * K * C + (size_t)(K - 1 - k) * C + (size_t)r]
                                               : W[(size_t)r * K * C + (size_t)k * C + (size_t)s];
                    u += gk * (double)w;
                }
                tmp[(size_t)r * Ci + s] = (float)u;
            }
        rf_conv1d_grid_pack1(Co, Ci, tmp, up + (size_t)xi * per);
    }
}

#if WINO_HAVE

/* The 4 phases of 64 consecutive floats at s: P[q][t] = s[4 t + q]. */
static inline __attribute__((always_inline)) WINO_TARGET void wino_deint(const float *s, wv P[4]) {
    const wvi ev = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    const wvi od = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    const wv v0 = wv_load(s), v1 = wv_load(s + 16), v2 = wv_load(s + 32), v3 = wv_load(s + 48);
    const wv a = __builtin_shuffle(v0, v1, ev), b = __builtin_shuffle(v0, v1, od);
    const wv c = __builtin_shuffle(v2, v3, ev), d = __builtin_shuffle(v2, v3, od);
    P[0] = __builtin_shuffle(a, c, ev);
    P[2] = __builtin_shuffle(a, c, od);
    P[1] = __builtin_shuffle(b, d, ev);
    P[3] = __builtin_shuffle(b, d, od);
}

/* The phases of r[s .. s + 64), reading nothing before lo or at or past lim (zeros instead). */
static inline __attribute__((always_inline)) WINO_TARGET void wino_phases(const float *r, ptrdiff_t s, ptrdiff_t lo,
                                                                          ptrdiff_t lim, wv P[4]) {
    if (s >= lo && s + 64 <= lim) {
        wino_deint(r + s, P);
        return;
    }
    float loc[64];
    memset(loc, 0, sizeof loc);
    for (ptrdiff_t i = s > lo ? s : lo; i < lim && i < s + 64; i++) loc[i - s] = r[i];
    wino_deint(loc, P);
}

/* V = BT X and Y = AT m, with the rows of BT (columns of AT) that differ only in the signs of
 * the odd taps evaluated as even part +- odd part (the matrices above, factored by hand). */
static inline __attribute__((always_inline)) WINO_TARGET void wino_bt(int K, const wv *X, wv *V) {
    if (K == 5) {
        V[0] = (X[0] - X[6]) + 5.25f * (X[4] - X[2]);
        const wv e1 = (X[2] + X[6]) - 4.25f * X[4], o1 = (X[1] + X[5]) - 4.25f * X[3];
        const wv e3 = (X[6] + 0.25f * X[2]) - 1.25f * X[4], o3 = (0.5f * X[1] + 2.0f * X[5]) - 2.5f * X[3];
        const wv e5 = (X[6] + 4.0f * X[2]) - 5.0f * X[4], o5 = (2.0f * X[1] + 0.5f * X[5]) - 2.5f * X[3];
        V[1] = e1 + o1, V[2] = e1 - o1, V[3] = e3 + o3, V[4] = e3 - o3, V[5] = e5 + o5, V[6] = e5 - o5;
        V[7] = (X[7] - X[1]) + 5.25f * (X[3] - X[5]);
    } else {
        V[0] = (4.0f * X[0] + X[4]) - 5.0f * X[2];
        const wv e1 = X[4] - 4.0f * X[2], o1 = X[3] - 4.0f * X[1];
        const wv e3 = X[4] - X[2], o3 = 2.0f * (X[3] - X[1]);
        V[1] = e1 + o1, V[2] = e1 - o1, V[3] = e3 + o3, V[4] = e3 - o3;
        V[5] = (4.0f * X[1] + X[5]) - 5.0f * X[3];
    }
}

static inline __attribute__((always_inline)) WINO_TARGET void wino_at(int K, const wv *m, wv *Y) {
    const wv s1 = m[1] + m[2], d1 = m[1] - m[2], s2 = m[3] + m[4], d2 = m[3] - m[4];
    if (K == 5) {
        const wv s3 = m[5] + m[6], d3 = m[5] - m[6];
        Y[0] = ((m[0] + s1) + s2) + s3;
        Y[1] = (d1 + 2.0f * d2) + 0.5f * d3;
        Y[2] = (s1 + 4.0f * s2) + 0.25f * s3;
        Y[3] = ((d1 + 8.0f * d2) + 0.125f * d3) + m[7];
    } else {
        Y[0] = (m[0] + s1) + s2;
        Y[1] = d1 + 2.0f * d2;
        Y[2] = s1 + 4.0f * s2;
        Y[3] = (d1 + 8.0f * d2) + m[5];
    }
}

/* D = A P, the transpose of wino_at: the a Winograd-domain values of a tile's 4 output gradients. */
static inline __attribute__((always_inline)) WINO_TARGET void wino_a(int K, const wv *P, wv *D) {
    const wv e1 = P[0] + P[2], o1 = P[1] + P[3], e3 = P[0] + 4.0f * P[2], o3 = 2.0f * P[1] + 8.0f * P[3];
    D[0] = P[0];
    D[1] = e1 + o1, D[2] = e1 - o1, D[3] = e3 + o3, D[4] = e3 - o3;
    if (K == 5) {
        const wv e5 = P[0] + 0.25f * P[2], o5 = 0.5f * P[1] + 0.125f * P[3];
        D[5] = e5 + o5, D[6] = e5 - o5, D[7] = P[3];
    } else {
        D[5] = P[3];
    }
}

/* Input transform of channel row r for tiles [0, nt) of a chunk starting at position p (tile t
 * covers p + 4 t .. p + 4 t + 3): V[xi * ldv + t], xi < a. */
static inline __attribute__((always_inline)) WINO_TARGET void
wino_input(int K, const float *r, ptrdiff_t p, ptrdiff_t lim, int nt, float *V, size_t ldv) {
    const int a = K + 3, half = (K - 1) / 2;
    const wvi sh1 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    const wvi sh2 = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    wv P0[4], P1[4];
    /* group g's tiles read p + 64 g + 4 t + i - half, i < a: with s = p + 64 g - 4 that is phase
     * (i + 4 - half) % 4 of tile t + (i + 4 - half) / 4 of the phases from s on */
    wino_phases(r, p - 4, -half, lim, P0);
    for (int g = 0; g * 16 < nt; g++) {
        wino_phases(r, p + 64 * (ptrdiff_t)g + 60, -half, lim, P1);
        wv X[WINO_AMAX];
        _Pragma("GCC unroll 8") for (int i = 0; i < a; i++) {
            const int o = i + 4 - half, q = o & 3, u = o >> 2;
            X[i] = u == 0 ? P0[q] : u == 1 ? __builtin_shuffle(P0[q], P1[q], sh1) : __builtin_shuffle(P0[q], P1[q], sh2);
        }
        wv Vx[WINO_AMAX];
        wino_bt(K, X, Vx);
        _Pragma("GCC unroll 8") for (int xi = 0; xi < a; xi++) wv_store(V + (size_t)xi * ldv + 16 * (size_t)g, Vx[xi]);
        _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) P0[q] = P1[q];
    }
}

/* Output transform of output row o, M[xi * ldm + t], for tiles [0, nt) of the chunk at p, then the
 * epilogue; writes positions p .. p + 4 nt - 1 only. */
static inline __attribute__((always_inline)) WINO_TARGET void
wino_output(int K, const float *M, size_t ldm, int o, size_t p, int nt, const rf_conv1d_epi *ep,
            float *z, size_t ldz) {
    const int a = K + 3;
    const wvi lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
    const wvi hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    /* the epilogue's fields in locals: the stores below could alias *ep */
    const int has_b = ep->b != NULL, acc = ep->accumulate, epi = ep->epi;
    const float bias = has_b ? ep->b[o] : 0, *const e1 = ep->e1;
    float *const e2 = ep->e2;
    for (int g = 0; g * 16 < nt; g++) {
        wv m[WINO_AMAX], Y[4];
        _Pragma("GCC unroll 8") for (int xi = 0; xi < a; xi++) m[xi] = wv_load(M + (size_t)xi * ldm + 16 * (size_t)g);
        wino_at(K, m, Y);
        /* positions 4 t + j: even positions from Y0 / Y2, odd from Y1 / Y3, then the two merged */
        const wv el = __builtin_shuffle(Y[0], Y[2], lo), eh = __builtin_shuffle(Y[0], Y[2], hi);
        const wv ol = __builtin_shuffle(Y[1], Y[3], lo), oh = __builtin_shuffle(Y[1], Y[3], hi);
        const wv w[4] = {__builtin_shuffle(el, ol, lo), __builtin_shuffle(el, ol, hi),
                         __builtin_shuffle(eh, oh, lo), __builtin_shuffle(eh, oh, hi)};
        const int left = nt - 16 * g, nv = left >= 16 ? 4 : left / 4;
        const size_t at0 = (size_t)o * ldz + p + 64 * (size_t)g;
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
            if (k >= nv) break;
            const size_t at_ = at0 + 16 * (size_t)k;
            wv v = w[k];
            if (has_b) v += bias;
            else if (acc) v += (wv)wv_load(z + at_);
            wv_store(z + at_, v);
            if (epi == RF_CONV1D_EPI_RELU) {
                wv h = (wv)((wvi)v & ~(v < 0));
                if (e1) h += (wv)wv_load(e1 + at_);
                wv_store(e2 + at_, h);
            } else if (epi == RF_CONV1D_EPI_DRELU) {
                const wv pre = wv_load(e1 + at_);
                wv_store(e2 + at_, (wv)((wvi)v & (pre > 0)));
            }
        }
    }
}

/* The layer for a constant K (so that the transforms unroll with their coefficients folded). */
static inline __attribute__((always_inline)) WINO_TARGET void
wino_conv_k(int K, int O, int C, const float *up,
            const float *x, size_t ldx, const rf_conv1d_epi *ep, float *z, size_t ldz, size_t J, float *work) {
    const int a = K + 3, half = (K - 1) / 2;
    const size_t per = round16((size_t)O * C);
    float *V = work, *M = work + (size_t)a * C * WINO_CHUNK;
    const ptrdiff_t lim = (ptrdiff_t)J + half;
    for (size_t p = 0; p < J; p += 4 * WINO_CHUNK) {
        const int nt = (int)((J - p) / 4 < WINO_CHUNK ? (J - p) / 4 : WINO_CHUNK), nt16 = (nt + 15) / 16 * 16;
        /* V[xi][c][.], M[xi][o][.] */
        for (int c = 0; c < C; c++)
            wino_input(K, x + (size_t)c * ldx, (ptrdiff_t)p, lim, nt, V + (size_t)c * WINO_CHUNK,
                       (size_t)C * WINO_CHUNK);
        for (int xi = 0; xi < a; xi++)
            rf_conv1d_grid_matmul(O, C, up + (size_t)xi * per, V + (size_t)xi * C * WINO_CHUNK, WINO_CHUNK,
                                  M + (size_t)xi * O * WINO_CHUNK, WINO_CHUNK, (size_t)nt16);
        for (int o = 0; o < O; o++)
            wino_output(K, M + (size_t)o * WINO_CHUNK, (size_t)O * WINO_CHUNK, o, p, nt, ep, z, ldz);
    }
}

static WINO_TARGET void wino_conv_k3(int O, int C, const float *up, const float *x, size_t ldx,
                                     const rf_conv1d_epi *ep, float *z, size_t ldz, size_t J, float *work) {
    wino_conv_k(3, O, C, up, x, ldx, ep, z, ldz, J, work);
}

static WINO_TARGET void wino_conv_k5(int O, int C, const float *up, const float *x, size_t ldx,
                                     const rf_conv1d_epi *ep, float *z, size_t ldz, size_t J, float *work) {
    wino_conv_k(5, O, C, up, x, ldx, ep, z, ldz, J, work);
}

/* The weight gradient for a constant K: per chunk, V = BT x (as in the forward) and D = A dz for
 * every channel, then S_xi += D_xi V_xi^T (O x C per point, summed over the tiles); at the end
 * dW[., k, .] += sum_xi G[xi][k] S_xi. */
static inline __attribute__((always_inline)) WINO_TARGET void
wino_dw_k(int K, int O, int C, const float *dz, size_t ldz, const float *x, size_t ldx, size_t J, float *dW,
          float *work) {
    const int a = K + 3, half = (K - 1) / 2;
    const size_t OC = (size_t)O * C;
    float *V = work, *D = V + (size_t)a * C * WINO_DW_CHUNK, *S = D + (size_t)a * O * WINO_DW_CHUNK;
    memset(S, 0, sizeof(float) * (size_t)a * OC);
    const ptrdiff_t lim = (ptrdiff_t)J + half;
    for (size_t p = 0; p < J; p += 4 * WINO_DW_CHUNK) {
        const int nt = (int)((J - p) / 4 < WINO_DW_CHUNK ? (J - p) / 4 : WINO_DW_CHUNK), nt16 = (nt + 15) / 16 * 16;
        for (int c = 0; c < C; c++)
            wino_input(K, x + (size_t)c * ldx, (ptrdiff_t)p, lim, nt, V + (size_t)c * WINO_DW_CHUNK,
                       (size_t)C * WINO_DW_CHUNK);
        /* tiles past nt (in the last group) get zero gradients, so they add nothing to S */
        for (int o = 0; o < O; o++) {
            const float *r = dz + (size_t)o * ldz;
            for (int g = 0; g * 16 < nt; g++) {
                wv P[4], Dv[WINO_AMAX];
                wino_phases(r, (ptrdiff_t)p + 64 * (ptrdiff_t)g, 0, (ptrdiff_t)J, P);
                wino_a(K, P, Dv);
                _Pragma("GCC unroll 8") for (int xi = 0; xi < a; xi++)
                    wv_store(D + ((size_t)xi * O + (size_t)o) * WINO_DW_CHUNK + 16 * (size_t)g, Dv[xi]);
            }
        }
        for (int xi = 0; xi < a; xi++)
            rf_conv1d_grid_matmul_dw(O, C, D + (size_t)xi * O * WINO_DW_CHUNK, V + (size_t)xi * C * WINO_DW_CHUNK,
                                     WINO_DW_CHUNK, (size_t)nt16, S + (size_t)xi * OC);
    }
    for (int o = 0; o < O; o++)
        for (int k = 0; k < K; k++)
            for (int c = 0; c < C; c++) {
                double t = 0;
                for (int xi = 0; xi < a; xi++)
                    t += (K == 5 ? wino_g5[xi][k] : wino_g3[xi][k]) * (double)S[(size_t)xi * OC + (size_t)o * C + c];
                dW[((size_t)o * K + k) * C + c] += (float)t;
            }
}

static WINO_TARGET void wino_dw_k3(int O, int C, const float *dz, size_t ldz, const float *x, size_t ldx, size_t J,
                                   float *dW, float *work) {
    wino_dw_k(3, O, C, dz, ldz, x, ldx, J, dW, work);
}

static WINO_TARGET void wino_dw_k5(int O, int C, const float *dz, size_t ldz, const float *x, size_t ldx, size_t J,
                                   float *dW, float *work) {
    wino_dw_k(5, O, C, dz, ldz, x, ldx, J, dW, work);
}

#endif

void rf_conv1d_wino_dw(int O, int C, int K, const float *dz, size_t ldz, const float *x, size_t ldx, size_t J,
                       float *dW, float *work) {
#if WINO_HAVE
    if (K == 5) wino_dw_k5(O, C, dz, ldz, x, ldx, J, dW, work);
    else wino_dw_k3(O, C, dz, ldz, x, ldx, J, dW, work);
#else
    (void)O, (void)C, (void)K, (void)dz, (void)ldz, (void)x, (void)ldx, (void)J, (void)dW, (void)work;
#endif
}

void rf_conv1d_wino_conv(int O, int C, int K, const float *up, const float *x, size_t ldx,
                         const rf_conv1d_epi *ep, float *z, size_t ldz, size_t J, float *work) {
#if WINO_HAVE
    if (K == 5) wino_conv_k5(O, C, up, x, ldx, ep, z, ldz, J, work);
    else wino_conv_k3(O, C, up, x, ldx, ep, z, ldz, J, work);
#else
    (void)O, (void)C, (void)K, (void)up, (void)x, (void)ldx, (void)ep, (void)z, (void)ldz, (void)J, (void)work;
#endif
}
