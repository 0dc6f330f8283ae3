/* n-d array -> float matrix / integer labels, with checks on every value. */
#include "data_internal.h"

#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int rf_matrix_from_ndarray(const rf_ndarray *a, const char *name, rf_matrix *m, rf_err *e) {
    if (!m) return rf_err_set(e, RF_EARG, "rf_matrix_from_ndarray: NULL matrix");
    memset(m, 0, sizeof *m);
    if (!name) name = "array";
    if (!a || a->ndim < 0 || a->ndim > RF_MAX_NDIM || !rfd_dtype_valid(a->dtype))
        return rf_err_set(e, RF_EARG, "%s: invalid array", name);
    if (a->dtype != RF_DT_F32 && a->dtype != RF_DT_F64)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: dtype %s (%s) is not a float array; renflow reads float32 or "
                          "float64 data (convert with x.astype('float32'))",
                          name, rfd_dtype_descr(a->dtype), rf_dtype_name(a->dtype));
    char sh[200];
    rfd_fmt_shape(sh, sizeof sh, a->ndim, a->shape);
    if (a->ndim == 0)
        return rf_err_set(e, RF_EFORMAT, "%s: shape () is a scalar; expected a 1-D or 2-D array",
                          name);
    int64_t n = a->shape[0];
    int64_t d = rfd_shape_count(a->ndim - 1, a->shape + 1);
    if (n < 0) return rf_err_set(e, RF_EARG, "%s: invalid shape %s", name, sh);
    if (d < 0) return rf_err_set(e, RF_EFORMAT, "%s: shape %s has too many columns", name, sh);
    if (n == 0 || d == 0)
        return rf_err_set(e, RF_EFORMAT, "%s: shape %s holds no data", name, sh);
    if (n > INT_MAX || d > INT_MAX)
        return rf_err_set(e, RF_EFORMAT, "%s: shape %s is too large (%lld x %lld; at most %d each)",
                          name, sh, (long long)n, (long long)d, INT_MAX);
    if (!a->data) return rf_err_set(e, RF_EARG, "%s: array has no data", name);
    int rc = rf_matrix_alloc(m, (int)n, (int)d, e);
    if (rc != RF_OK) return rc;
    size_t total = (size_t)n * (size_t)d;
    if (a->dtype == RF_DT_F32) {
        const float *src = a->data;
        for (size_t i = 0; i < total; i++) {
            if (!isfinite(src[i])) {
                rc = rf_err_set(e, RF_ENONFINITE, "%s: non-finite value %g at row %zu, column %zu",
                                name, (double)src[i], i / (size_t)d, i % (size_t)d);
                break;
            }
            m->x[i] = src[i];
        }
    } else {
        const double *src = a->data;
        for (size_t i = 0; i < total; i++) {
            double v = src[i];
            if (!isfinite(v)) {
                rc = rf_err_set(e, RF_ENONFINITE, "%s: non-finite value %g at row %zu, column %zu",
                                name, v, i / (size_t)d, i % (size_t)d);
                break;
            }
            if (fabs(v) > (double)FLT_MAX) {
                rc = rf_err_set(e, RF_ENONFINITE,
                                "%s: value %g at row %zu, column %zu overflows float32", name, v,
                                i / (size_t)d, i % (size_t)d);
                break;
            }
            m->x[i] = (float)v;
        }
    }
    if (rc != RF_OK) rf_matrix_free(m);
    return rc;
}

int rf_labels_from_ndarray(const rf_ndarray *a, const char *name, int **labels, int *n,
                           rf_err *e) {
    if (!labels || !n) return rf_err_set(e, RF_EARG, "rf_labels_from_ndarray: NULL output");
    *labels = NULL;
    *n = 0;
    if (!name) name = "labels";
    if (!a || a->ndim < 0 || a->ndim > RF_MAX_NDIM || !rfd_dtype_valid(a->dtype))
        return rf_err_set(e, RF_EARG, "%s: invalid array", name);
    char sh[200];
    rfd_fmt_shape(sh, sizeof sh, a->ndim, a->shape);
    /* a column vector (n, 1) is accepted as well as (n,) */
    if (!(a->ndim == 1 || (a->ndim == 2 && a->shape[1] == 1)))
        return rf_err_set(e, RF_EFORMAT, "%s: labels must be a 1-D array, but the shape is %s",
                          name, sh);
    int64_t cnt = a->shape[0];
    if (cnt < 0) return rf_err_set(e, RF_EARG, "%s: invalid shape %s", name, sh);
    if (cnt > INT_MAX)
        return rf_err_set(e, RF_EFORMAT, "%s: %lld labels are too many (at most %d)", name,
                          (long long)cnt, INT_MAX);
    if (cnt > 0 && !a->data) return rf_err_set(e, RF_EARG, "%s: array has no data", name);
    int *out = malloc(sizeof(int) * (size_t)(cnt > 0 ? cnt : 1));
    if (!out) return rf_err_set(e, RF_ENOMEM, "%s: out of memory for %lld labels", name,
                                (long long)cnt);
    int rc = RF_OK;
    for (int64_t i = 0; i < cnt && rc == RF_OK; i++) {
        long long iv = 0;
        double fv = 0;
        int is_float = 0;
        switch (a->dtype) {
        case RF_DT_I32: iv = ((const int32_t *)a->data)[i]; break;
        case RF_DT_I64: iv = ((const int64_t *)a->data)[i]; break;
        case RF_DT_U8: iv = ((const uint8_t *)a->data)[i]; break;
        case RF_DT_BOOL: iv = ((const uint8_t *)a->data)[i] != 0; break;
        case RF_DT_F32: fv = ((const float *)a->data)[i]; is_float = 1; break;
        case RF_DT_F64: fv = ((const double *)a->data)[i]; is_float = 1; break;
        }
        if (is_float) {
            if (!isfinite(fv) || fv != floor(fv)) {
                rc = rf_err_set(e, RF_EFORMAT,
                                "%s: label at index %lld is %.9g, not an integer (labels must be "
                                "integral values >= 0)",
                                name, (long long)i, fv);
                break;
            }
            if (fv < 0) {
                rc = rf_err_set(e, RF_EFORMAT, "%s: label at index %lld is %.9g; labels must be >= 0",
                                name, (long long)i, fv);
                break;
            }
            if (fv > (double)INT_MAX) {
                rc = rf_err_set(e, RF_EFORMAT, "%s: label at index %lld is %.9g, too large", name,
                                (long long)i, fv);
                break;
            }
            iv = (long long)fv;
        }
        if (iv < 0)
            rc = rf_err_set(e, RF_EFORMAT, "%s: label at index %lld is %lld; labels must be >= 0",
                            name, (long long)i, iv);
        else if (iv > INT_MAX)
            rc = rf_err_set(e, RF_EFORMAT, "%s: label at index %lld is %lld, too large", name,
                            (long long)i, iv);
        else
            out[i] = (int)iv;
    }
    if (rc != RF_OK) {
        free(out);
        return rc;
    }
    *labels = out;
    *n = (int)cnt;
    return RF_OK;
}
