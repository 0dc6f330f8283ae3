/* Windowing (fixed hop, onset-aligned), robust per-recording standardisation (median and
 * 1.4826 * MAD from GSL's selection-based statistics) and amplitude-based artefact rejection. */
#include "renflow/dsp.h"

#include <gsl/gsl_statistics_double.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- windows ---------------- */

void rf_windows_free(rf_windows *w) {
    if (!w) return;
    rf_free(w->start);
    rf_free(w->source);
    memset(w, 0, sizeof *w);
}

static int windows_alloc(rf_windows *w, int64_t cap, rf_err *e) {
    size_t c = (size_t)(cap > 0 ? cap : 1);
    w->start = rf_zalloc(sizeof(int64_t) * c, e);
    w->source = rf_zalloc(sizeof(int64_t) * c, e);
    if (!w->start || !w->source) {
        rf_windows_free(w);
        return RF_ENOMEM;
    }
    return RF_OK;
}

int rf_windows_fixed(int64_t n_samples, int64_t len, int64_t hop, rf_windows *w, rf_err *e) {
    if (!w) return rf_err_set(e, RF_EARG, "rf_windows_fixed: NULL output");
    memset(w, 0, sizeof *w);
    if (n_samples < 0)
        return rf_err_set(e, RF_EARG, "windows: recording length = %lld samples must be >= 0",
                          (long long)n_samples);
    if (len < 1)
        return rf_err_set(e, RF_EARG, "windows: window length = %lld samples must be >= 1",
                          (long long)len);
    if (hop < 1)
        return rf_err_set(e, RF_EARG, "windows: hop = %lld samples must be >= 1", (long long)hop);
    const int64_t steps = n_samples > 0 ? (n_samples - 1) / hop + 1 : 0; /* starts inside */
    const int64_t fit = n_samples >= len ? (n_samples - len) / hop + 1 : 0;
    int rc = windows_alloc(w, fit, e);
    if (rc) return rc;
    w->len = len;
    for (int64_t k = 0; k < fit; k++) {
        w->start[k] = k * hop;
        w->source[k] = k;
    }
    w->n = fit;
    w->dropped_end = steps - fit;
    w->dropped = w->dropped_end;
    return RF_OK;
}

int rf_windows_at_onsets(int64_t n_samples, double fs, const double *onsets, int64_t n_onsets,
                         double pre, double post, rf_windows *w, rf_err *e) {
    if (!w) return rf_err_set(e, RF_EARG, "rf_windows_at_onsets: NULL output");
    memset(w, 0, sizeof *w);
    if (n_samples < 0)
        return rf_err_set(e, RF_EARG, "windows: recording length = %lld samples must be >= 0",
                          (long long)n_samples);
    if (!isfinite(fs) || fs <= 0)
        return rf_err_set(e, RF_EARG, "windows: sampling rate fs = %g Hz must be > 0", fs);
    if (n_onsets < 0 || (n_onsets > 0 && !onsets))
        return rf_err_set(e, RF_EARG, "windows: invalid onset list (count %lld)",
                          (long long)n_onsets);
    if (!isfinite(pre) || !isfinite(post) || !(pre + post > 0))
        return rf_err_set(e, RF_EARG,
                          "windows: pre = %g s and post = %g s must be finite with pre + post > 0",
                          pre, post);
    const double lenf = round((pre + post) * fs);
    if (lenf < 1 || lenf > 9e15)
        return rf_err_set(e, RF_EARG,
                          "windows: pre + post = %g s at %g Hz gives %g samples (need >= 1)",
                          pre + post, fs, lenf);
    const int64_t len = (int64_t)lenf;
    for (int64_t i = 0; i < n_onsets; i++)
        if (!isfinite(onsets[i]) || fabs(onsets[i] * fs) > 9e15)
            return rf_err_set(e, RF_EARG, "windows: onset %lld = %g s is not a usable time",
                              (long long)i, onsets[i]);
    int rc = windows_alloc(w, n_onsets, e);
    if (rc) return rc;
    w->len = len;
    for (int64_t i = 0; i < n_onsets; i++) {
        const int64_t s = (int64_t)round((onsets[i] - pre) * fs);
        if (s < 0) w->dropped_start++;
        else if (s + len > n_samples) w->dropped_end++;
        else {
            w->start[w->n] = s;
            w->source[w->n] = i;
            w->n++;
        }
    }
    w->dropped = w->dropped_start + w->dropped_end;
    return RF_OK;
}

static int check_extract(const double *x, int channels, int64_t n_samples, const rf_windows *w,
                         const void *out, rf_err *e) {
    if (!x || !w || !out || channels < 1 || w->len < 1 || (w->n > 0 && !w->start))
        return rf_err_set(e, RF_EARG, "windows: NULL input or no channels (channels = %d)",
                          channels);
    for (int64_t k = 0; k < w->n; k++)
        if (w->start[k] < 0 || w->start[k] + w->len > n_samples)
            return rf_err_set(e, RF_EARG,
                              "windows: window %lld [%lld, %lld) lies outside the recording of "
                              "%lld samples",
                              (long long)k, (long long)w->start[k],
                              (long long)(w->start[k] + w->len), (long long)n_samples);
    return RF_OK;
}

int rf_windows_extract(const double *x, int channels, int64_t n_samples, const rf_windows *w,
                       double *out, rf_err *e) {
    int rc = check_extract(x, channels, n_samples, w, out, e);
    if (rc) return rc;
    const size_t L = (size_t)w->len;
    for (int64_t k = 0; k < w->n; k++)
        for (int c = 0; c < channels; c++)
            memcpy(out + ((size_t)k * (size_t)channels + (size_t)c) * L,
                   x + (size_t)c * (size_t)n_samples + (size_t)w->start[k], sizeof(double) * L);
    return RF_OK;
}

int rf_windows_extract_f32(const double *x, int channels, int64_t n_samples,
                           const rf_windows *w, float *out, rf_err *e) {
    int rc = check_extract(x, channels, n_samples, w, out, e);
    if (rc) return rc;
    const size_t L = (size_t)w->len;
    for (int64_t k = 0; k < w->n; k++)
        for (int c = 0; c < channels; c++) {
            const double *src = x + (size_t)c * (size_t)n_samples + (size_t)w->start[k];
            float *dst = out + ((size_t)k * (size_t)channels + (size_t)c) * L;
            for (size_t i = 0; i < L; i++) dst[i] = (float)src[i];
        }
    return RF_OK;
}

/* ---------------- robust standardisation ---------------- */

void rf_robust_stats_free(rf_robust_stats *s) {
    if (!s) return;
    rf_free(s->median);
    rf_free(s->scale);
    rf_free(s->flat);
    memset(s, 0, sizeof *s);
}

int rf_robust_fit(const double *x, int channels, int64_t n, double min_scale,
                  rf_robust_stats *s, rf_err *e) {
    if (!s) return rf_err_set(e, RF_EARG, "rf_robust_fit: NULL output");
    memset(s, 0, sizeof *s);
    if (!x || channels < 1 || n < 1)
        return rf_err_set(e, RF_EARG,
                          "robust standardisation: need channels >= 1 and samples >= 1 "
                          "(channels = %d, n = %lld)",
                          channels, (long long)n);
    if (!isfinite(min_scale) || min_scale <= 0)
        return rf_err_set(e, RF_EARG, "robust standardisation: min_scale = %g must be > 0",
                          min_scale);
    for (int c = 0; c < channels; c++)
        for (int64_t i = 0; i < n; i++) {
            double v = x[(size_t)c * (size_t)n + (size_t)i];
            if (!isfinite(v))
                return rf_err_set(e, RF_ENONFINITE,
                                  "robust standardisation: non-finite value %g in channel %d at "
                                  "sample %lld",
                                  v, c, (long long)i);
        }
    s->median = rf_zalloc(sizeof(double) * (size_t)channels, e);
    s->scale = rf_zalloc(sizeof(double) * (size_t)channels, e);
    s->flat = rf_zalloc((size_t)channels, e);
    double *buf = malloc(sizeof(double) * (size_t)n * 2);
    if (!s->median || !s->scale || !s->flat || !buf) {
        free(buf);
        rf_robust_stats_free(s);
        return rf_err_set(e, RF_ENOMEM, "robust standardisation: out of memory for %lld samples",
                          (long long)n);
    }
    s->channels = channels;
    for (int c = 0; c < channels; c++) {
        const double *xc = x + (size_t)c * (size_t)n;
        memcpy(buf, xc, sizeof(double) * (size_t)n);
        const double med = gsl_stats_median(buf, 1, (size_t)n);  /* reorders buf */
        const double mad = gsl_stats_mad0(xc, 1, (size_t)n, buf + n); /* median |x - median| */
        const double sc = 1.4826 * mad;
        s->median[c] = med;
        if (sc < min_scale) {
            s->flat[c] = 1;
            s->n_flat++;
            s->scale[c] = min_scale;
        } else {
            s->scale[c] = sc;
        }
    }
    free(buf);
    return RF_OK;
}

int rf_robust_apply(const rf_robust_stats *s, double *x, int channels, int64_t n, rf_err *e) {
    if (!s || !s->median || !s->scale || !x || n < 0)
        return rf_err_set(e, RF_EARG, "rf_robust_apply: NULL or invalid argument");
    if (channels != s->channels)
        return rf_err_set(e, RF_EARG,
                          "robust standardisation: data has %d channels, statistics have %d",
                          channels, s->channels);
    for (int c = 0; c < channels; c++) {
        double *xc = x + (size_t)c * (size_t)n;
        const double m = s->median[c], inv = 1.0 / s->scale[c];
        for (int64_t i = 0; i < n; i++) xc[i] = (xc[i] - m) * inv;
    }
    return RF_OK;
}

/* ---------------- artefact rejection ---------------- */

int rf_reject_windows(const double *w, int64_t nw, int channels, int64_t len,
                      const rf_reject_opts *o, unsigned char *keep, rf_reject_counts *c,
                      rf_err *e) {
    if (!o || !keep || !c || nw < 0 || (nw > 0 && !w) || channels < 1 || len < 1)
        return rf_err_set(e, RF_EARG,
                          "artefact rejection: NULL or invalid argument (windows = %lld, channels "
                          "= %d, length = %lld)",
                          (long long)nw, channels, (long long)len);
    if (isnan(o->max_ptp) || isnan(o->max_absz))
        return rf_err_set(e, RF_EARG, "artefact rejection: thresholds max_ptp = %g, max_absz = %g "
                                      "must not be NaN",
                          o->max_ptp, o->max_absz);
    memset(c, 0, sizeof *c);
    c->total = nw;
    const size_t L = (size_t)len;
    for (int64_t k = 0; k < nw; k++) {
        int nonfinite = 0, over_ptp = 0, over_z = 0;
        for (int ch = 0; ch < channels && !nonfinite; ch++) {
            const double *v = w + ((size_t)k * (size_t)channels + (size_t)ch) * L;
            double lo = INFINITY, hi = -INFINITY, amax = 0;
            for (size_t i = 0; i < L; i++) {
                const double x = v[i];
                if (!isfinite(x)) {
                    nonfinite = 1;
                    break;
                }
                if (x < lo) lo = x;
                if (x > hi) hi = x;
                if (fabs(x) > amax) amax = fabs(x);
            }
            if (nonfinite) break;
            if (o->max_ptp > 0 && hi - lo > o->max_ptp) over_ptp = 1;
            if (o->max_absz > 0 && amax > o->max_absz) over_z = 1;
        }
        if (nonfinite) c->dropped_nonfinite++;
        else {
            c->dropped_ptp += over_ptp;
            c->dropped_absz += over_z;
        }
        keep[k] = !(nonfinite || over_ptp || over_z);
        if (keep[k]) c->kept++;
        else c->dropped++;
    }
    return RF_OK;
}
