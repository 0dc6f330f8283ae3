/* Aligned, zeroed allocations with error messages. */
#include "renflow/core.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float *rf_floats(size_t n, rf_err *e) {
    if (n == 0) n = 1;
    if (n > SIZE_MAX / sizeof(float) - 64) {
        rf_err_set(e, RF_ENOMEM, "cannot allocate %zu floats", n);
        return NULL;
    }
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0 || !p) {
        rf_err_set(e, RF_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    memset(p, 0, bytes);
    return p;
}

void *rf_zalloc(size_t bytes, rf_err *e) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) rf_err_set(e, RF_ENOMEM, "out of memory allocating %zu bytes", bytes);
    return p;
}

void rf_free(void *p) { free(p); }

int rf_all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}
