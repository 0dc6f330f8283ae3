/* Per-column standardisation (robust or mean/std) and robust z-score outlier detection. */
#include "data_internal.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of sorted v[0..n) with linear interpolation (numpy's default). */
static double quantile_sorted(const double *v, size_t n, double q) {
    if (n == 0) return 0;
    double pos = q * (double)(n - 1);
    size_t lo = (size_t)floor(pos);
    size_t hi = lo + 1 < n ? lo + 1 : n - 1;
    return v[lo] + (pos - (double)lo) * (v[hi] - v[lo]);
}

static void mean_std(const double *v, size_t n, double *mean, double *sd) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += v[i];
    double mu = n ? s / (double)n : 0, ss = 0;
    for (size_t i = 0; i < n; i++) ss += (v[i] - mu) * (v[i] - mu);
    *mean = mu;
    *sd = n ? sqrt(ss / (double)n) : 0;
}

/* A usable float32 scale: finite and at least FLT_MIN. */
static int scale_ok(double s) { return isfinite(s) && (float)s >= FLT_MIN; }

int rf_standardizer_fit(const rf_matrix *m, int robust, float *shift, float *scale, rf_err *e) {
    if (!m || !shift || !scale || m->d <= 0 || m->n < 0 || (m->n > 0 && !m->x))
        return rf_err_set(e, RF_EARG, "rf_standardizer_fit: NULL or empty input");
    if (m->n == 0) return rf_err_set(e, RF_EARG, "rf_standardizer_fit: the matrix has no rows");
    size_t n = (size_t)m->n, d = (size_t)m->d;
    for (size_t i = 0; i < n * d; i++)
        if (!isfinite(m->x[i]))
            return rf_err_set(e, RF_ENONFINITE,
                              "rf_standardizer_fit: non-finite value at row %zu, column %zu", i / d,
                              i % d);
    double *col = malloc(sizeof(double) * n);
    if (!col) return rf_err_set(e, RF_ENOMEM, "out of memory for %zu rows", n);
    for (size_t j = 0; j < d; j++) {
        for (size_t i = 0; i < n; i++) col[i] = m->x[i * d + j];
        double mu, sd;
        mean_std(col, n, &mu, &sd);
        double sh = mu, sc = sd;
        if (robust) {
            qsort(col, n, sizeof(double), cmp_double);
            sh = quantile_sorted(col, n, 0.5);
            sc = (quantile_sorted(col, n, 0.75) - quantile_sorted(col, n, 0.25)) / 1.349;
            if (!scale_ok(sc)) sc = sd;
        }
        if (!scale_ok(sc)) sc = 1.0;
        shift[j] = (float)sh;
        scale[j] = (float)sc;
    }
    free(col);
    return RF_OK;
}

int rf_outlier_rows(const rf_matrix *m, double threshold, unsigned char *keep) {
    if (!m || !keep || m->n <= 0) return 0;
    size_t n = (size_t)m->n, d = m->d > 0 ? (size_t)m->d : 0;
    memset(keep, 1, n);
    if (d == 0) return 0;
    if (!m->x) return -1;
    double *v = malloc(sizeof(double) * n), *dev = malloc(sizeof(double) * n);
    if (!v || !dev) {
        free(v);
        free(dev);
        return -1; /* out of memory: nothing flagged */
    }
    for (size_t j = 0; j < d; j++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            float x = m->x[i * d + j];
            if (isfinite(x)) v[k++] = x;
            else keep[i] = 0; /* a non-finite value is always an outlier */
        }
        if (k == 0) continue;
        qsort(v, k, sizeof(double), cmp_double);
        double med = quantile_sorted(v, k, 0.5);
        for (size_t i = 0; i < k; i++) dev[i] = fabs(v[i] - med);
        qsort(dev, k, sizeof(double), cmp_double);
        double sigma = 1.4826 * quantile_sorted(dev, k, 0.5);
        if (!(sigma > 0)) {
            /* more than half the values equal the median: fall back to the standard deviation */
            double mu, sd;
            mean_std(v, k, &mu, &sd);
            sigma = sd;
        }
        if (!(sigma > 0)) continue; /* constant column */
        for (size_t i = 0; i < n; i++) {
            double x = m->x[i * d + j];
            if (isfinite(x) && fabs(x - med) / sigma > threshold) keep[i] = 0;
        }
    }
    free(v);
    free(dev);
    int out = 0;
    for (size_t i = 0; i < n; i++) out += keep[i] == 0;
    return out;
}
