/* Frequency bands, per-class spectra, the FFT-mask band split, band Shapley values
 * (definitions in renflow/explain.h). */
#include <fftw3.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"
#include "renflow/dsp.h"

void rf_explain_bands_default(rf_explain_bands *b) {
    static const double lo[5] = {1, 4, 8, 13, 30}, hi[5] = {4, 8, 13, 30, 45};
    static const char *names[5] = {"delta", "theta", "alpha", "beta", "gamma"};
    memset(b, 0, sizeof *b);
    b->n = 5;
    for (int i = 0; i < 5; i++) {
        b->lo[i] = lo[i];
        b->hi[i] = hi[i];
        snprintf(b->name[i], sizeof b->name[i], "%s", names[i]);
    }
}

int rf_explain_bands_check(const rf_explain_bands *b, double fs, rf_err *e) {
    if (!b || b->n < 1 || b->n > RF_EXPLAIN_MAX_BANDS)
        return rf_err_set(e, RF_EARG, "bands: need 1 to %d bands, got %d", RF_EXPLAIN_MAX_BANDS, b ? b->n : 0);
    for (int i = 0; i < b->n; i++) {
        if (!(b->lo[i] >= 0) || !(b->hi[i] > b->lo[i]))
            return rf_err_set(e, RF_EARG, "bands: band %d (%s) has range [%g, %g) Hz; need 0 <= lo < hi", i,
                              b->name[i], b->lo[i], b->hi[i]);
        if (i > 0 && b->lo[i] < b->hi[i - 1])
            return rf_err_set(e, RF_EARG, "bands: band %d (%s, from %g Hz) overlaps or precedes band %d (%s, to %g Hz)",
                              i, b->name[i], b->lo[i], i - 1, b->name[i - 1], b->hi[i - 1]);
        if (fs > 0 && b->lo[i] >= fs / 2)
            return rf_err_set(e, RF_EARG, "bands: band %s starts at %g Hz, at or above the Nyquist frequency %g Hz of rate %g Hz",
                              b->name[i], b->lo[i], fs / 2, fs);
    }
    return RF_OK;
}

/* ---------------------------------------------------------------- spectra */

int64_t rf_explain_seg_len(int T, double fs) {
    int64_t s = (int64_t)llround(2.0 * fs);
    if (s < 8) s = 8;
    if (s > T) s = T;
    return s;
}

void rf_class_spectra_free(rf_class_spectra *s) {
    if (!s) return;
    free(s->count);
    free(s->psd);
    memset(s, 0, sizeof *s);
}

int rf_class_spectra_compute(const float *x, const int *labels, int n, int channels, int T, int C,
                             double fs, int64_t seg_len, rf_class_spectra *s, rf_err *e) {
    memset(s, 0, sizeof *s);
    if (channels < 1 || T < 2 || C < 1 || n < 0 || (!labels && C != 1) || !(fs > 0))
        return rf_err_set(e, RF_EARG, "spectra: invalid shape (n=%d, channels=%d, T=%d, C=%d, fs=%g)", n, channels,
                          T, C, fs);
    if (seg_len < 2 || seg_len > T)
        return rf_err_set(e, RF_EARG, "spectra: segment length %lld outside [2, %d]", (long long)seg_len, T);
    const int nf = (int)rf_welch_nfreq(seg_len);
    const size_t D = (size_t)channels * T;
    s->C = C;
    s->channels = channels;
    s->nfreq = nf;
    s->fs = fs;
    s->seg_len = seg_len;
    s->count = calloc((size_t)C, sizeof(long));
    s->psd = calloc((size_t)C * channels * nf, sizeof(double));
    double *buf = malloc(sizeof(double) * D), *p = malloc(sizeof(double) * (size_t)channels * nf);
    int rc = RF_OK;
    if (!s->count || !s->psd || !buf || !p) {
        rc = rf_err_set(e, RF_ENOMEM, "spectra: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const int c = labels ? labels[i] : 0;
        if (c < 0 || c >= C) {
            rc = rf_err_set(e, RF_EARG, "spectra: label %d of window %d outside [0, %d)", c, i, C);
            goto done;
        }
        const float *r = x + (size_t)i * D;
        if (!rf_all_finite(r, D)) {
            s->skipped++;
            continue;
        }
        for (size_t j = 0; j < D; j++) buf[j] = r[j];
        if ((rc = rf_welch_psd_rows(buf, channels, T, fs, seg_len, p, e))) goto done;
        double *acc = s->psd + (size_t)c * channels * nf;
        for (size_t j = 0; j < (size_t)channels * nf; j++) acc[j] += p[j];
        s->count[c]++;
    }
    for (int c = 0; c < C; c++) {
        double *acc = s->psd + (size_t)c * channels * nf;
        for (size_t j = 0; j < (size_t)channels * nf; j++) acc[j] = s->count[c] ? acc[j] / s->count[c] : NAN;
    }
done:
    free(buf);
    free(p);
    if (rc) rf_class_spectra_free(s);
    return rc;
}

void rf_class_spectra_band_powers(const rf_class_spectra *s, const rf_explain_bands *b, double *out) {
    for (int c = 0; c < s->C; c++)
        for (int ch = 0; ch < s->channels; ch++) {
            const double *p = s->psd + ((size_t)c * s->channels + ch) * s->nfreq;
            for (int k = 0; k < b->n; k++)
                out[((size_t)c * s->channels + ch) * b->n + k] =
                    s->count[c] ? rf_band_power(p, s->fs, s->seg_len, b->lo[k], b->hi[k]) : NAN;
        }
}

/* ---------------------------------------------------------------- band split */

typedef struct ex_fft {
    int T;
    double *in;
    fftw_complex *spec, *work;
    double *out;
    fftw_plan fwd, inv;
} ex_fft;

static void fft_free(ex_fft *q) {
    if (q->fwd) fftw_destroy_plan(q->fwd);
    if (q->inv) fftw_destroy_plan(q->inv);
    fftw_free(q->in);
    fftw_free(q->spec);
    fftw_free(q->work);
    fftw_free(q->out);
    memset(q, 0, sizeof *q);
}

static int fft_init(ex_fft *q, int T, rf_err *e) {
    memset(q, 0, sizeof *q);
    q->T = T;
    const int nb = T / 2 + 1;
    q->in = fftw_malloc(sizeof(double) * (size_t)T);
    q->out = fftw_malloc(sizeof(double) * (size_t)T);
    q->spec = fftw_malloc(sizeof(fftw_complex) * (size_t)nb);
    q->work = fftw_malloc(sizeof(fftw_complex) * (size_t)nb);
    if (q->in && q->out && q->spec && q->work) {
        q->fwd = fftw_plan_dft_r2c_1d(T, q->in, q->spec, FFTW_ESTIMATE);
        q->inv = fftw_plan_dft_c2r_1d(T, q->work, q->out, FFTW_ESTIMATE);
    }
    if (!q->fwd || !q->inv) {
        fft_free(q);
        return rf_err_set(e, RF_ENOMEM, "band split: cannot set up an FFT of length %d", T);
    }
    return RF_OK;
}

/* band of rfft bin k (B for the residual) */
static int bin_band(const rf_explain_bands *b, double f) {
    for (int i = 0; i < b->n; i++)
        if (f >= b->lo[i] && f < b->hi[i]) return i;
    return b->n;
}

static void split_one(ex_fft *q, const float *x, int channels, double fs, const rf_explain_bands *b,
                      double *comp) {
    const int T = q->T, nb = T / 2 + 1, B = b->n;
    for (int ch = 0; ch < channels; ch++) {
        for (int t = 0; t < T; t++) q->in[t] = x[(size_t)ch * T + t];
        fftw_execute(q->fwd);
        for (int k = 0; k <= B; k++) {
            for (int j = 0; j < nb; j++) {
                const int in = bin_band(b, j * fs / T) == k;
                q->work[j][0] = in ? q->spec[j][0] : 0.0;
                q->work[j][1] = in ? q->spec[j][1] : 0.0;
            }
            fftw_execute(q->inv); /* destroys work, which is rebuilt every time */
            double *o = comp + ((size_t)k * channels + ch) * T;
            for (int t = 0; t < T; t++) o[t] = q->out[t] / T;
        }
    }
}

static int split_args(int channels, int T, double fs, const rf_explain_bands *b, rf_err *e) {
    if (channels < 1 || T < 2)
        return rf_err_set(e, RF_EARG, "band split: invalid window shape %d x %d", channels, T);
    if (!(fs > 0)) return rf_err_set(e, RF_EARG, "band split: sampling rate must be > 0, got %g", fs);
    return rf_explain_bands_check(b, fs, e);
}

int rf_explain_band_split(const float *x, int channels, int T, double fs, const rf_explain_bands *b,
                          double *comp, rf_err *e) {
    int rc = split_args(channels, T, fs, b, e);
    if (rc) return rc;
    ex_fft q;
    if ((rc = fft_init(&q, T, e))) return rc;
    split_one(&q, x, channels, fs, b, comp);
    fft_free(&q);
    return RF_OK;
}

/* Shapley weight |S|! (B - |S| - 1)! / B! */
static double shap_weight(int s, int B) {
    return exp(lgamma(s + 1.0) + lgamma(B - s) - lgamma(B + 1.0));
}

int rf_explain_band_shapley(const rf_flow *f, int n, const float *x, int channels, int T, double fs,
                            const rf_explain_bands *b, const float *log_prior, double *phi,
                            double *v_full, double *v_base, rf_err *e) {
    int rc = rf_explain_check_model(f, e);
    if (rc) return rc;
    if ((rc = split_args(channels, T, fs, b, e))) return rc;
    if ((long long)channels * T != f->D)
        return rf_err_set(e, RF_EARG, "band Shapley: windows of %d x %d = %lld values, but the model has dimension %d",
                          channels, T, (long long)channels * T, f->D);
    const int B = b->n, NS = 1 << B, D = f->D, K = rf_explain_n_targets(f);
    ex_scorer sc;
    ex_fft q = {0};
    double *comp = malloc(sizeof(double) * (size_t)(B + 1) * D);
    double *v = malloc(sizeof(double) * (size_t)NS * K);
    float *rows = rf_floats((size_t)NS * D, e);
    if (!comp || !v || !rows) {
        free(comp);
        free(v);
        rf_free(rows);
        return rf_err_set(e, RF_ENOMEM, "band Shapley: out of memory (%d subsets x %d values)", NS, D);
    }
    if ((rc = ex_scorer_init(&sc, f, NS < 256 ? NS : 256, log_prior, e)) || (rc = fft_init(&q, T, e))) goto done;
    double w[RF_EXPLAIN_MAX_BANDS];
    for (int s = 0; s < B; s++) w[s] = shap_weight(s, B);
    for (int i = 0; i < n; i++) {
        split_one(&q, x + (size_t)i * D, channels, fs, b, comp);
        for (int S = 0; S < NS; S++) {
            float *r = rows + (size_t)S * D;
            const double *res = comp + (size_t)B * D;
            for (int j = 0; j < D; j++) {
                double t = res[j];
                for (int k = 0; k < B; k++)
                    if (S >> k & 1) t += comp[(size_t)k * D + j];
                r[j] = (float)t;
            }
        }
        ex_scorer_targets(&sc, NS, rows, v);
        for (int k = 0; k < K; k++) {
            for (int bb = 0; bb < B; bb++) {
                double acc = 0;
                for (int S = 0; S < NS; S++) {
                    if (S >> bb & 1) continue;
                    acc += w[__builtin_popcount((unsigned)S)] * (v[(size_t)(S | 1 << bb) * K + k] - v[(size_t)S * K + k]);
                }
                phi[((size_t)i * K + k) * B + bb] = acc;
            }
            if (v_full) v_full[(size_t)i * K + k] = v[(size_t)(NS - 1) * K + k];
            if (v_base) v_base[(size_t)i * K + k] = v[k];
        }
    }
done:
    ex_scorer_free(&sc);
    fft_free(&q);
    free(comp);
    free(v);
    rf_free(rows);
    return rc;
}
