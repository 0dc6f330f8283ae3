/* Invertible 1x1 convolution over channels (Glow) for time series: on the active block
 * X (C channels x T samples, channel-major) of each row, Y = W X, i.e. y[:, t] = W x[:, t] at
 * every time step, with W in LU form as in lu_linear.c:
 *   W = P L (U + diag(sign * exp(logs))),   log|det| = T * sum(logs).
 * Params: one C x C matrix whose strict lower triangle is L (unit diagonal implied), strict
 * upper triangle U and diagonal logs. The row permutation P (W[r] = (L U1)[p[r]]) and sign are
 * fixed at creation from the LU factorisation of a random rotation (LAPACK), so a fresh layer
 * is a rotation (log|det| = 0).
 * Y = W X (forward) and W^T dY, dW (backward) run over all rows at once with the pointwise
 * convolution kernels of src/nn/conv1d.h when T is a multiple of 16, else as one small GEMM per
 * row. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "../nn/conv1d.h"
#include "renflow/tsflow.h"
#include "ts_internal.h"


typedef struct {
    int C, T;
    int *p;       /* row permutation */
    int *sign;    /* +1 / -1 on U1's diagonal */
    double *init; /* params of the random rotation, consumed by init_params */
} c1_impl;

static size_t c1_cache(const rf_layer *l, int n) {
    (void)l;
    (void)n;
    return 0;
}

/* lu | tmp | w | b | packed weights of the pointwise kernel */
static size_t c1_scratch(const rf_layer *l, int n) {
    (void)n;
    const c1_impl *m = l->impl;
    return 5 * (size_t)m->C * m->C;
}

/* lu <- L (strict lower) combined with U1 = U + diag(sign e^logs) (upper incl. diagonal). */
static void c1_combined(const c1_impl *m, const float *p, float *lu) {
    const int C = m->C;
    memcpy(lu, p, sizeof(float) * C * C);
    for (int j = 0; j < C; j++) lu[j * C + j] = (float)m->sign[j] * expf(p[j * C + j]);
}

/* w <- W = P L U1 from the combined lu; tmp: C x C. */
static void c1_weight(const c1_impl *m, const float *lu, float *tmp, float *w) {
    const int C = m->C;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) tmp[i * C + j] = j >= i ? lu[i * C + j] : 0.0f;
    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, C, C, 1.0f, lu, C,
                tmp, C);
    for (int i = 0; i < C; i++) memcpy(w + (size_t)i * C, tmp + (size_t)m->p[i] * C, sizeof(float) * C);
}

static float c1_logdet(const c1_impl *m, const float *p) {
    double t = 0;
    for (int j = 0; j < m->C; j++) t += p[j * m->C + j];
    return (float)(t * m->T);
}

static void c1_init(const rf_layer *l, float *p, rf_rng *rng) {
    (void)rng; /* the rotation was drawn at creation so that P and sign match it */
    const c1_impl *m = l->impl;
    for (int i = 0; i < m->C * m->C; i++) p[i] = m->init ? (float)m->init[i] : 0.0f;
}

static void c1_forward_prefix(const rf_layer *l, const float *p, int n, const float *x, float *y,
                              float *logdet, float *cache, float *scratch) {
    (void)cache;
    const c1_impl *m = l->impl;
    const int D = l->dim, C = m->C, T = m->T;
    float *lu = scratch, *tmp = lu + C * C, *w = tmp + C * C;
    c1_combined(m, p, lu);
    c1_weight(m, lu, tmp, w);
    /* every row's C x T block times W: the pointwise conv kernel when T suits it (all rows in
     * one pass), else one small GEMM per row */
    if (rf_conv1d_pointwise_ok(T))
        rf_conv1d_pointwise(n, C, C, T, w, 0, x, (size_t)D, y, w + 2 * C * C);
    else
        for (int i = 0; i < n; i++)
            rf_gemm(0, 0, C, T, C, 1.0f, w, C, x + (size_t)i * D, T, 0.0f, y + (size_t)i * D, T);
    const float ld = c1_logdet(m, p);
    for (int i = 0; i < n; i++) logdet[i] += ld;
}

/* X = U1^{-1} L^{-1} (P^T Y), with (P^T Y)[p[r]] = Y[r]; solved in place in x. */
static void c1_inverse_prefix(const rf_layer *l, const float *p, int n, const float *y, float *x,
                              float *logdet, float *scratch) {
    const c1_impl *m = l->impl;
    const int D = l->dim, C = m->C, T = m->T;
    float *lu = scratch;
    c1_combined(m, p, lu);
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * D;
        float *xi = x + (size_t)i * D;
        for (int r = 0; r < C; r++) memcpy(xi + (size_t)m->p[r] * T, yi + (size_t)r * T, sizeof(float) * T);
        cblas_strsm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, C, T, 1.0f, lu,
                    C, xi, T);
        cblas_strsm(CblasRowMajor, CblasLeft, CblasUpper, CblasNoTrans, CblasNonUnit, C, T, 1.0f,
                    lu, C, xi, T);
    }
    const float ld = c1_logdet(m, p);
    for (int i = 0; i < n; i++) logdet[i] -= ld;
}

/* dX = W^T dY; dW = sum_i dY_i X_i^T; dM = P^T dW; dL = strict_lower(dM U1^T); dU1 = L^T dM;
 * dlogs_j = dU1_jj * sign_j e^{logs_j} + T * sum dlogdet. */
static void c1_backward_prefix(const rf_layer *l, const float *p, int n, const float *x,
                               const float *dy, const float *dlogdet, float *dx, float *dp,
                               const float *cache, float *scratch) {
    (void)cache;
    const c1_impl *m = l->impl;
    const int D = l->dim, C = m->C, T = m->T;
    float *lu = scratch, *a = lu + C * C, *w = a + C * C, *b = w + C * C;
    c1_combined(m, p, lu);
    c1_weight(m, lu, a, w);
    const int pw = rf_conv1d_pointwise_ok(T);
    if (pw)
        rf_conv1d_pointwise(n, C, C, T, w, 1, dy, (size_t)D, dx, b + C * C);
    else
        for (int i = 0; i < n; i++)
            rf_gemm(1, 0, C, T, C, 1.0f, w, C, dy + (size_t)i * D, T, 0.0f, dx + (size_t)i * D, T);
    /* w <- dW */
    memset(w, 0, sizeof(float) * C * C);
    if (pw)
        rf_conv1d_pointwise_dw(n, C, C, T, dy, x, (size_t)D, w);
    else
        for (int i = 0; i < n; i++)
            rf_gemm(0, 1, C, C, T, 1.0f, dy + (size_t)i * D, T, x + (size_t)i * D, T, 1.0f, w, C);
    for (int i = 0; i < C; i++) memcpy(a + (size_t)m->p[i] * C, w + (size_t)i * C, sizeof(float) * C);
    memcpy(b, a, sizeof(float) * C * C);
    cblas_strmm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, C, C, 1.0f, lu, C,
                a, C); /* a = dM U1^T */
    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasUnit, C, C, 1.0f, lu, C, b,
                C); /* b = L^T dM */
    double gld = 0;
    for (int i = 0; i < n; i++) gld += dlogdet[i];
    gld *= T;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            if (j < i) dp[i * C + j] += a[i * C + j];
            else if (j > i) dp[i * C + j] += b[i * C + j];
            else dp[i * C + j] += (float)(b[i * C + j] * lu[i * C + j] + gld);
        }
}

static cJSON *c1_to_json(const rf_layer *l) {
    const c1_impl *m = l->impl;
    cJSON *j = rf_ts_json_new("ts_conv1x1", l->dim, m->C, m->T);
    cJSON_AddItemToObject(j, "perm", rf_json_int_array(m->p, m->C));
    cJSON_AddItemToObject(j, "sign", rf_json_int_array(m->sign, m->C));
    return j;
}

static void c1_free(void *impl) {
    c1_impl *m = impl;
    if (!m) return;
    free(m->p);
    free(m->sign);
    free(m->init);
    free(m);
}

RF_TS_DEFINE_OPS(ts_conv1x1_ops, ts_conv1x1_prefix_ops, rf_ts_conv1x1_prefix_ops, c1_forward_prefix, c1_inverse_prefix, c1_backward_prefix,
                 .kind = "ts_conv1x1",
                 .cache_floats = c1_cache,
                 .scratch_floats = c1_scratch,
                 .init_params = c1_init,
                 .to_json = c1_to_json,
                 .free_impl = c1_free)

static c1_impl *c1_new(int D, int C, int T, rf_err *e) {
    if (rf_ts_check_shape("ts_conv1x1", D, C, T, e) != RF_OK) return NULL;
    if (C > 4096) {
        rf_err_set(e, RF_EARG, "ts_conv1x1: channels %d out of range [1, 4096]", C);
        return NULL;
    }
    c1_impl *m = rf_zalloc(sizeof *m, e);
    if (!m) return NULL;
    m->C = C;
    m->T = T;
    m->p = malloc(sizeof(int) * C);
    m->sign = malloc(sizeof(int) * C);
    if (!m->p || !m->sign) {
        c1_free(m);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    return m;
}

/* Q from the QR decomposition of a Gaussian matrix, then Q = P L U via getrf. */
static int c1_random_rotation(c1_impl *m, rf_rng *rng, rf_err *e) {
    const int C = m->C;
    double *a = malloc(sizeof(double) * C * C), *tau = malloc(sizeof(double) * C);
    lapack_int *ipiv = malloc(sizeof(lapack_int) * C);
    int *order = malloc(sizeof(int) * C);
    m->init = malloc(sizeof(double) * C * C);
    int rc = RF_OK;
    if (!a || !tau || !ipiv || !order || !m->init) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < C * C; i++) a[i] = rf_rng_normal(rng);
    int lrc = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, C, C, a, C, tau);
    if (lrc == 0) lrc = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, C, C, C, a, C, tau);
    if (lrc == 0) lrc = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, C, C, a, C, ipiv);
    if (lrc != 0) {
        rc = rf_err_set(e, RF_ESTATE, "ts_conv1x1: LAPACK failed to factor a rotation (%d)", lrc);
        goto done;
    }
    /* getrf: rows of (L U) are rows of Q in the order `order`; W[i] = (LU)[p[i]], p = order^-1 */
    for (int i = 0; i < C; i++) order[i] = i;
    for (int i = 0; i < C; i++) {
        int k = ipiv[i] - 1, t = order[i];
        order[i] = order[k];
        order[k] = t;
    }
    for (int i = 0; i < C; i++) m->p[order[i]] = i;
    for (int i = 0; i < C * C; i++) m->init[i] = a[i];
    for (int j = 0; j < C; j++) {
        const double u = a[j * C + j];
        m->sign[j] = u < 0 ? -1 : 1;
        m->init[j * C + j] = log(fabs(u));
    }
done:
    free(a);
    free(tau);
    free(ipiv);
    free(order);
    return rc;
}

rf_layer *rf_ts_conv1x1_create(int D, int channels, int length, rf_rng *rng, rf_err *e) {
    c1_impl *m = c1_new(D, channels, length, e);
    if (!m) return NULL;
    if (c1_random_rotation(m, rng, e) != RF_OK) {
        c1_free(m);
        return NULL;
    }
    rf_layer *l = rf_layer_new(&ts_conv1x1_ops, D, (size_t)channels * channels, m, e);
    if (!l) c1_free(m);
    return l;
}

rf_layer *rf_ts_conv1x1_from_json(const cJSON *j, int dim, rf_err *e) {
    int C, T;
    if (rf_ts_shape_from_json(j, "ts_conv1x1", dim, &C, &T, e) != RF_OK) return NULL;
    c1_impl *m = c1_new(dim, C, T, e);
    if (!m) return NULL;
    unsigned char *seen = NULL;
    if (rf_json_get_int_array(j, "perm", C, 0, C - 1, m->p, e) ||
        rf_json_get_int_array(j, "sign", C, -1, 1, m->sign, e)) {
        rf_err_prefix(e, RF_EFORMAT, "ts_conv1x1");
        goto fail;
    }
    seen = calloc((size_t)C, 1);
    if (!seen) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < C; i++)
        if (m->sign[i] == 0 || seen[m->p[i]]++) {
            rf_err_set(e, RF_EFORMAT, "ts_conv1x1: field \"%s\": invalid value at index %d",
                       m->sign[i] == 0 ? "sign" : "perm", i);
            goto fail;
        }
    free(seen);
    rf_layer *l = rf_layer_new(&ts_conv1x1_ops, dim, (size_t)C * C, m, e);
    if (!l) c1_free(m);
    return l;
fail:
    free(seen);
    c1_free(m);
    return NULL;
}
