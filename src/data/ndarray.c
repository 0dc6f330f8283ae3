/* n-d arrays: dtype names and sizes, element counts, byte order helpers. */
#include "data_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rfd_dtype_valid(rf_dtype t) { return (int)t >= (int)RF_DT_F32 && (int)t <= (int)RF_DT_BOOL; }

const char *rf_dtype_name(rf_dtype t) {
    switch (t) {
    case RF_DT_F32: return "float32";
    case RF_DT_F64: return "float64";
    case RF_DT_I32: return "int32";
    case RF_DT_I64: return "int64";
    case RF_DT_U8: return "uint8";
    case RF_DT_BOOL: return "bool";
    }
    return "invalid";
}

const char *rfd_dtype_descr(rf_dtype t) {
    switch (t) {
    case RF_DT_F32: return "<f4";
    case RF_DT_F64: return "<f8";
    case RF_DT_I32: return "<i4";
    case RF_DT_I64: return "<i8";
    case RF_DT_U8: return "|u1";
    case RF_DT_BOOL: return "|b1";
    }
    return "?";
}

size_t rf_dtype_size(rf_dtype t) {
    switch (t) {
    case RF_DT_F32: return 4;
    case RF_DT_F64: return 8;
    case RF_DT_I32: return 4;
    case RF_DT_I64: return 8;
    case RF_DT_U8: return 1;
    case RF_DT_BOOL: return 1;
    }
    return 0;
}

int64_t rfd_shape_count(int ndim, const int64_t *shape) {
    int64_t c = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (c > INT64_MAX / shape[i]) return -1;
        c *= shape[i];
    }
    return c;
}

int64_t rf_ndarray_count(const rf_ndarray *a) {
    if (!a || a->ndim < 0 || a->ndim > RF_MAX_NDIM) return 0;
    int64_t c = rfd_shape_count(a->ndim, a->shape);
    return c < 0 ? 0 : c;
}

void rf_ndarray_free(rf_ndarray *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

int rfd_host_is_le(void) {
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 1;
}

void rfd_bswap(void *data, size_t count, size_t itemsize) {
    unsigned char *p = data;
    if (itemsize < 2) return;
    for (size_t i = 0; i < count; i++, p += itemsize)
        for (size_t a = 0, b = itemsize - 1; a < b; a++, b--) {
            unsigned char t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

void rfd_fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    if (!cap) return;
    size_t k = 0;
    int w = snprintf(buf, cap, "(");
    k = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < ndim && k < cap; i++) {
        w = snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
        if (w < 0) break;
        k += (size_t)w;
    }
    if (k < cap) snprintf(buf + k, cap - k, "%s)", ndim == 1 ? "," : "");
}
