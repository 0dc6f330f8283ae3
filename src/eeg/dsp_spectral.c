/* Welch power spectral density (FFTW3 r2c, periodic Hann window, 50 % overlap, per-segment mean
 * removal, one-sided density scaling as scipy.signal.welch) and EEG band powers.
 *
 * FFTW plan creation and destruction are not thread safe: plans are local to each call, created
 * with FFTW_ESTIMATE inside a named OpenMP critical section, and executed with the new-array
 * interface (thread safe) on per-thread buffers. */
#include "renflow/dsp.h"

#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RF_PI 3.14159265358979323846

int64_t rf_welch_nfreq(int64_t seg_len) { return seg_len >= 1 ? seg_len / 2 + 1 : 0; }

static int check_welch(const double *x, int rows, int64_t n, double fs, int64_t seg_len,
                       const double *psd, rf_err *e) {
    if (!x || !psd || rows < 1)
        return rf_err_set(e, RF_EARG, "Welch PSD: NULL input/output or rows = %d < 1", rows);
    if (!isfinite(fs) || fs <= 0)
        return rf_err_set(e, RF_EARG, "Welch PSD: sampling rate fs = %g Hz must be > 0", fs);
    if (seg_len < 2 || seg_len > (int64_t)1 << 30)
        return rf_err_set(e, RF_EARG, "Welch PSD: segment length = %lld samples must be >= 2",
                          (long long)seg_len);
    if (n < seg_len)
        return rf_err_set(e, RF_EARG,
                          "Welch PSD: signal of %lld samples is shorter than the segment length "
                          "%lld",
                          (long long)n, (long long)seg_len);
    for (int r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(x[(size_t)r * (size_t)n + (size_t)i]))
                return rf_err_set(e, RF_ENONFINITE,
                                  "Welch PSD: non-finite value %g in row %d at sample %lld",
                                  x[(size_t)r * (size_t)n + (size_t)i], r, (long long)i);
    return RF_OK;
}

/* One row: in (L reals) and out (L/2 + 1 complex) are buffers from fftw_malloc. */
static void welch_row(fftw_plan plan, const double *x, int64_t n, double fs, int64_t L,
                      const double *win, double s2, double *in, fftw_complex *out, double *psd) {
    const int64_t nf = L / 2 + 1, step = L - L / 2, nseg = (n - L) / step + 1;
    memset(psd, 0, sizeof(double) * (size_t)nf);
    for (int64_t s = 0; s < nseg; s++) {
        const double *seg = x + s * step;
        double mean = 0;
        for (int64_t i = 0; i < L; i++) mean += seg[i];
        mean /= (double)L;
        for (int64_t i = 0; i < L; i++) in[i] = (seg[i] - mean) * win[i];
        fftw_execute_dft_r2c(plan, in, out);
        for (int64_t k = 0; k < nf; k++) psd[k] += out[k][0] * out[k][0] + out[k][1] * out[k][1];
    }
    const double scale = 1.0 / ((double)nseg * fs * s2);
    for (int64_t k = 0; k < nf; k++) {
        double f = scale;
        if (k > 0 && !(L % 2 == 0 && k == L / 2)) f *= 2; /* one-sided: all but DC and Nyquist */
        psd[k] *= f;
    }
}

int rf_welch_psd_rows(const double *x, int rows, int64_t n, double fs, int64_t seg_len,
                      double *psd, rf_err *e) {
    int rc = check_welch(x, rows, n, fs, seg_len, psd, e);
    if (rc) return rc;
    const int64_t L = seg_len, nf = rf_welch_nfreq(L);
    double *win = malloc(sizeof(double) * (size_t)L);
    double *in = fftw_alloc_real((size_t)L);
    fftw_complex *out = fftw_alloc_complex((size_t)nf);
    if (!win || !in || !out) {
        free(win);
        fftw_free(in);
        fftw_free(out);
        return rf_err_set(e, RF_ENOMEM, "Welch PSD: out of memory for segments of %lld samples",
                          (long long)L);
    }
    double s2 = 0;
    for (int64_t i = 0; i < L; i++) {
        win[i] = 0.5 - 0.5 * cos(2 * RF_PI * (double)i / (double)L); /* periodic Hann */
        s2 += win[i] * win[i];
    }
    fftw_plan plan;
#pragma omp critical(rf_fftw_planner)
    plan = fftw_plan_dft_r2c_1d((int)L, in, out, FFTW_ESTIMATE);
    if (!plan) {
        free(win);
        fftw_free(in);
        fftw_free(out);
        return rf_err_set(e, RF_ESTATE, "Welch PSD: FFTW could not plan a transform of %lld",
                          (long long)L);
    }
    int failed = 0;
#pragma omp parallel if (rows > 1 && (double)rows * (double)n > 2e5)
    {
        double *tin = fftw_alloc_real((size_t)L);
        fftw_complex *tout = fftw_alloc_complex((size_t)nf);
        if (!tin || !tout) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic)
        for (int r = 0; r < rows; r++)
            if (tin && tout)
                welch_row(plan, x + (size_t)r * (size_t)n, n, fs, L, win, s2, tin, tout,
                          psd + (size_t)r * (size_t)nf);
        fftw_free(tin);
        fftw_free(tout);
    }
#pragma omp critical(rf_fftw_planner)
    fftw_destroy_plan(plan);
    free(win);
    fftw_free(in);
    fftw_free(out);
    if (failed) return rf_err_set(e, RF_ENOMEM, "Welch PSD: out of memory");
    return RF_OK;
}

int rf_welch_psd(const double *x, int64_t n, double fs, int64_t seg_len, double *psd,
                 rf_err *e) {
    return rf_welch_psd_rows(x, 1, n, fs, seg_len, psd, e);
}

/* ---------------- bands ---------------- */

static const struct {
    const char *name;
    double lo, hi;
} bands[RF_BAND_COUNT] = {
    {"delta", 0.5, 4}, {"theta", 4, 8},  {"alpha", 8, 13},
    {"sigma", 12, 15}, {"beta", 13, 30}, {"gamma", 30, 45},
};

const char *rf_band_name(rf_band b) {
    return (int)b >= 0 && b < RF_BAND_COUNT ? bands[b].name : "unknown";
}

void rf_band_range(rf_band b, double *lo, double *hi) {
    int ok = (int)b >= 0 && b < RF_BAND_COUNT;
    if (lo) *lo = ok ? bands[b].lo : NAN;
    if (hi) *hi = ok ? bands[b].hi : NAN;
}

double rf_band_power(const double *psd, double fs, int64_t seg_len, double lo, double hi) {
    if (!psd || seg_len < 2 || !(fs > 0) || !isfinite(fs)) return 0;
    const int64_t nf = rf_welch_nfreq(seg_len);
    const double df = fs / (double)seg_len, nyq = fs / 2;
    lo = fmax(lo, 0);
    hi = fmin(hi, nyq);
    if (!(hi > lo)) return 0;
    /* bins overlapping [lo, hi]: k df + df/2 > lo and k df - df/2 < hi */
    const double kf0 = floor(lo / df - 0.5), kf1 = ceil(hi / df + 0.5);
    const int64_t k0 = kf0 < 0 ? 0 : (int64_t)fmin(kf0, (double)nf);
    const int64_t k1 = kf1 >= (double)(nf - 1) ? nf - 1 : (int64_t)kf1;
    double p = 0;
    for (int64_t k = k0; k <= k1; k++) {
        const double a0 = fmax(0, ((double)k - 0.5) * df), b0 = fmin(nyq, ((double)k + 0.5) * df);
        const double a = fmax(lo, a0), b = fmin(hi, b0);
        if (b > a && b0 > a0) p += psd[k] * df * (b - a) / (b0 - a0);
    }
    return p;
}

int rf_bandpower_features(const double *x, int channels, int64_t n, double fs, int64_t seg_len,
                          int log10_power, double *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "band power: NULL output");
    const int64_t nf = rf_welch_nfreq(seg_len);
    if (channels < 1 || nf < 1)
        return rf_err_set(e, RF_EARG, "band power: channels = %d, segment length = %lld",
                          channels, (long long)seg_len);
    double *psd = malloc(sizeof(double) * (size_t)nf * (size_t)channels);
    if (!psd) return rf_err_set(e, RF_ENOMEM, "band power: out of memory");
    int rc = rf_welch_psd_rows(x, channels, n, fs, seg_len, psd, e);
    if (!rc) {
        for (int c = 0; c < channels; c++)
            for (int b = 0; b < RF_BAND_COUNT; b++) {
                double p = rf_band_power(psd + (size_t)c * (size_t)nf, fs, seg_len,
                                         bands[b].lo, bands[b].hi);
                out[c * RF_BAND_COUNT + b] = log10_power ? log10(fmax(p, 1e-30)) : p;
            }
    }
    free(psd);
    return rc;
}
