/* Invertible linear layer in LU form (Glow's invertible 1x1 convolution on a vector):
 *   y = x W^T,  W = P L (U + diag(sign * exp(logs))),  log|det| = sum(logs).
 * Params: one D x D matrix whose strict lower triangle is L (unit diagonal implied), strict upper
 * triangle is U and diagonal is logs. P (a permutation: W[i] = (L U1)[p[i]]) and sign are fixed.
 * Initialised as in Glow from the LU decomposition of a random rotation (LAPACK). */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "renflow/flow.h"

typedef struct {
    int *p;    /* row permutation */
    int *sign; /* +1 / -1 on U's diagonal */
    double *init; /* params of the random rotation, consumed by init_params */
} lu_impl;

static size_t lu_cache(const rf_layer *l, int n) {
    (void)l;
    (void)n;
    return 0;
}

static size_t lu_scratch(const rf_layer *l, int n) {
    (void)n;
    return 4 * (size_t)l->dim * l->dim;
}

/* lu <- combined L (strict lower) and U1 = U + diag(sign e^logs) (upper with diagonal). */
static void lu_combined(const rf_layer *l, const float *p, float *lu) {
    const int D = l->dim;
    const int *sign = ((const lu_impl *)l->impl)->sign;
    memcpy(lu, p, sizeof(float) * D * D);
    for (int j = 0; j < D; j++) lu[j * D + j] = (float)sign[j] * expf(p[j * D + j]);
}

/* w <- W = P L U1, using lu (combined) and tmp (D x D). */
static void lu_weight(const rf_layer *l, const float *lu, float *tmp, float *w) {
    const int D = l->dim;
    const int *perm = ((const lu_impl *)l->impl)->p;
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) tmp[i * D + j] = j >= i ? lu[i * D + j] : 0.0f;
    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasNoTrans, CblasUnit, D, D, 1.0f, lu, D,
                tmp, D);
    for (int i = 0; i < D; i++) memcpy(w + (size_t)i * D, tmp + (size_t)perm[i] * D, sizeof(float) * D);
}

static float lu_logdet(const float *p, int D) {
    double t = 0;
    for (int j = 0; j < D; j++) t += p[j * D + j];
    return (float)t;
}

static void lu_init(const rf_layer *l, float *p, rf_rng *rng) {
    (void)rng; /* the rotation was drawn at creation so that P and sign match it */
    const int D = l->dim;
    const double *init = ((const lu_impl *)l->impl)->init;
    for (int i = 0; i < D * D; i++) p[i] = init ? (float)init[i] : 0.0f;
}

static void lu_forward(const rf_layer *l, const float *p, int n, const float *x, float *y,
                       float *logdet, float *cache, float *scratch) {
    (void)cache;
    const int D = l->dim;
    float *lu = scratch, *tmp = lu + D * D, *w = tmp + D * D;
    lu_combined(l, p, lu);
    lu_weight(l, lu, tmp, w);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, D, D, 1.0f, x, D, w, D, 0.0f, y, D);
    const float ld = lu_logdet(p, D);
    for (int i = 0; i < n; i++) logdet[i] += ld;
}

/* x = y P L^{-T} U1^{-T}, with (y P)[:, p[i]] = y[:, i]. */
static void lu_inverse(const rf_layer *l, const float *p, int n, const float *y, float *x,
                       float *logdet, float *scratch) {
    const int D = l->dim;
    const int *perm = ((const lu_impl *)l->impl)->p;
    float *lu = scratch;
    lu_combined(l, p, lu);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) x[(size_t)i * D + perm[j]] = y[(size_t)i * D + j];
    cblas_strsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasUnit, n, D, 1.0f, lu, D,
                x, D);
    cblas_strsm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, n, D, 1.0f, lu,
                D, x, D);
    const float ld = lu_logdet(p, D);
    for (int i = 0; i < n; i++) logdet[i] -= ld;
}

/* dx = dy W; dW = dy^T x; dM = P^T dW; dL = strict_lower(dM U1^T); dU1 = L^T dM;
 * dlogs_j = dU1_jj * sign_j e^{logs_j} + sum dlogdet. */
static void lu_backward(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                        const float *dlogdet, float *dx, float *dp, const float *cache,
                        float *scratch) {
    (void)cache;
    const int D = l->dim;
    const int *perm = ((const lu_impl *)l->impl)->p;
    float *lu = scratch, *a = lu + D * D, *w = a + D * D, *b = w + D * D;
    lu_combined(l, p, lu);
    lu_weight(l, lu, a, w);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, D, 1.0f, dy, D, w, D, 0.0f, dx, D);
    /* w <- dW = dy^T x */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, D, n, 1.0f, dy, D, x, D, 0.0f, w, D);
    for (int i = 0; i < D; i++) memcpy(a + (size_t)perm[i] * D, w + (size_t)i * D, sizeof(float) * D);
    memcpy(b, a, sizeof(float) * D * D);
    cblas_strmm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, D, D, 1.0f, lu, D,
                a, D); /* a = dM U1^T */
    cblas_strmm(CblasRowMajor, CblasLeft, CblasLower, CblasTrans, CblasUnit, D, D, 1.0f, lu, D, b,
                D); /* b = L^T dM */
    double gld = 0;
    for (int i = 0; i < n; i++) gld += dlogdet[i];
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            if (j < i) dp[i * D + j] += a[i * D + j];
            else if (j > i) dp[i * D + j] += b[i * D + j];
            else dp[i * D + j] += (float)(b[i * D + j] * lu[i * D + j] + gld);
        }
}

static cJSON *lu_to_json(const rf_layer *l) {
    const lu_impl *m = l->impl;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "lu_linear");
    cJSON_AddNumberToObject(j, "dim", l->dim);
    cJSON_AddItemToObject(j, "perm", rf_json_int_array(m->p, l->dim));
    cJSON_AddItemToObject(j, "sign", rf_json_int_array(m->sign, l->dim));
    return j;
}

static void lu_free(void *impl) {
    lu_impl *m = impl;
    if (!m) return;
    free(m->p);
    free(m->sign);
    free(m->init);
    free(m);
}

static const rf_layer_ops lu_ops = {
    .kind = "lu_linear",
    .cache_floats = lu_cache,
    .scratch_floats = lu_scratch,
    .init_params = lu_init,
    .forward = lu_forward,
    .inverse = lu_inverse,
    .backward = lu_backward,
    .to_json = lu_to_json,
    .free_impl = lu_free,
};

static lu_impl *lu_impl_new(int D, rf_err *e) {
    lu_impl *m = rf_zalloc(sizeof *m, e);
    if (!m) return NULL;
    m->p = malloc(sizeof(int) * D);
    m->sign = malloc(sizeof(int) * D);
    if (!m->p || !m->sign) {
        lu_free(m);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    return m;
}

/* Q from the QR decomposition of a Gaussian matrix, then Q = P L U via getrf. */
static int lu_random_rotation(lu_impl *m, int D, rf_rng *rng, rf_err *e) {
    double *a = malloc(sizeof(double) * D * D), *tau = malloc(sizeof(double) * D);
    lapack_int *ipiv = malloc(sizeof(lapack_int) * D);
    m->init = malloc(sizeof(double) * D * D);
    if (!a || !tau || !ipiv || !m->init) {
        free(a);
        free(tau);
        free(ipiv);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < D * D; i++) a[i] = rf_rng_normal(rng);
    int rc = LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, D, D, a, D, tau);
    if (rc == 0) rc = LAPACKE_dorgqr(LAPACK_ROW_MAJOR, D, D, D, a, D, tau);
    if (rc == 0) rc = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, D, D, a, D, ipiv);
    if (rc != 0) {
        free(a);
        free(tau);
        free(ipiv);
        return rf_err_set(e, RF_ESTATE, "lu_linear: LAPACK failed to factor a rotation (%d)", rc);
    }
    /* getrf: rows of (L U) are rows of Q in the order `order`; W[i] = (LU)[p[i]] so p = order^-1 */
    int *order = malloc(sizeof(int) * D);
    for (int i = 0; i < D; i++) order[i] = i;
    for (int i = 0; i < D; i++) {
        int k = ipiv[i] - 1, t = order[i];
        order[i] = order[k];
        order[k] = t;
    }
    for (int i = 0; i < D; i++) m->p[order[i]] = i;
    for (int i = 0; i < D * D; i++) m->init[i] = a[i];
    for (int j = 0; j < D; j++) {
        double u = a[j * D + j];
        m->sign[j] = u < 0 ? -1 : 1;
        m->init[j * D + j] = log(fabs(u));
    }
    free(order);
    free(a);
    free(tau);
    free(ipiv);
    return RF_OK;
}

rf_layer *rf_lu_linear_create(int D, rf_rng *rng, rf_err *e) {
    if (D < 1) {
        rf_err_set(e, RF_EARG, "lu_linear: dimension must be >= 1, got %d", D);
        return NULL;
    }
    lu_impl *m = lu_impl_new(D, e);
    if (!m) return NULL;
    if (lu_random_rotation(m, D, rng, e) != RF_OK) {
        lu_free(m);
        return NULL;
    }
    rf_layer *l = rf_layer_new(&lu_ops, D, (size_t)D * D, m, e);
    if (!l) lu_free(m);
    return l;
}

rf_layer *rf_lu_linear_from_json(const cJSON *j, int dim, rf_err *e) {
    lu_impl *m = lu_impl_new(dim, e);
    if (!m) return NULL;
    if (rf_json_get_int_array(j, "perm", dim, 0, dim - 1, m->p, e) ||
        rf_json_get_int_array(j, "sign", dim, -1, 1, m->sign, e)) {
        lu_free(m);
        return NULL;
    }
    unsigned char *seen = calloc((size_t)dim, 1);
    for (int i = 0; i < dim; i++) {
        if (m->sign[i] == 0 || (seen && seen[m->p[i]]++)) {
            rf_err_set(e, RF_EFORMAT, "lu_linear: invalid perm/sign at index %d", i);
            free(seen);
            lu_free(m);
            return NULL;
        }
    }
    free(seen);
    rf_layer *l = rf_layer_new(&lu_ops, dim, (size_t)dim * dim, m, e);
    if (!l) lu_free(m);
    return l;
}
