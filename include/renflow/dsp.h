/* renflow dsp: EEG signal processing for window preparation.
 *
 * All functions work on double arrays: one channel (n samples) or a row-major
 * channels x samples array ("rows"). Sampling rates are in Hz, times in seconds.
 *
 * - filters: Butterworth low/high/band-pass/band-stop of order 1..10 as second-order sections
 *   (analog prototype -> frequency transform -> bilinear transform with prewarping), an IIR
 *   notch, magnitude/phase response, causal filtering and zero-phase forward-backward filtering
 *   with reflection padding and steady-state initial conditions (as scipy's sosfiltfilt; even
 *   instead of odd reflection for DC-blocking filters by default, see rf_padtype).
 * - resampling by a rational factor up/down with a polyphase Kaiser-windowed-sinc FIR
 *   (as scipy's resample_poly, with odd-reflection edges and exact DC gain).
 * - windows: fixed length + hop, or aligned to onsets (epochs, event-locked); windows that do not
 *   fit inside the recording are dropped and counted.
 * - robust per-recording standardisation (median, 1.4826 * MAD, floor for flat channels).
 * - amplitude-based artefact rejection with a keep mask and per-reason counts.
 * - Welch PSD (Hann, 50 % overlap, FFTW3) and band powers in the standard EEG bands. */
#ifndef RENFLOW_DSP_H
#define RENFLOW_DSP_H

#include "renflow/core.h"

/* ======================= filters ======================= */

typedef enum {
    RF_FILTER_LOWPASS = 0,  /* f1 = cutoff, f2 ignored */
    RF_FILTER_HIGHPASS = 1, /* f1 = cutoff, f2 ignored */
    RF_FILTER_BANDPASS = 2, /* f1 < f2 */
    RF_FILTER_BANDSTOP = 3  /* f1 < f2 */
} rf_filter_kind;
const char *rf_filter_kind_name(rf_filter_kind k);

/* A cascade of second-order sections, scipy's "sos" layout: c[6 s + 0..5] = b0 b1 b2 a0 a1 a2
 * with a0 = 1. A first-order section has b2 = a2 = 0. The overall gain is in the first section. */
typedef struct rf_sos {
    int n;     /* number of sections */
    double *c; /* n x 6 */
    double fs; /* sampling rate the filter was designed for */
} rf_sos;
void rf_sos_free(rf_sos *s);
/* Appends the sections of src to dst (same fs required): the cascade dst then src. */
int rf_sos_append(rf_sos *dst, const rf_sos *src, rf_err *e);

/* Digital Butterworth filter of `order` (1..10) with the zeros, poles and gain of
 * scipy.signal.butter (the pairing into sections may differ from scipy's zpk2sos): cutoffs f1
 * (and f2 for band filters) in (0, fs/2) are the -3 dB points of one pass (|H| = 1/sqrt(2));
 * band filters have 2*order poles. Errors name the values. */
int rf_butter(rf_filter_kind kind, int order, double f1, double f2, double fs, rf_sos *out,
              rf_err *e);
/* Second-order IIR notch at f0 (0 < f0 < fs/2) with quality factor Q = f0 / (-3 dB bandwidth),
 * as scipy.signal.iirnotch: zeros on the unit circle at f0 (|H(f0)| = 0), |H| = 1 at DC and
 * Nyquist, and the -3 dB points exactly f0/Q apart. */
int rf_notch(double f0, double Q, double fs, rf_sos *out, rf_err *e);
/* Convenience for EEG: highpass > 0 and/or lowpass > 0 give a Butterworth high-, low- or
 * band-pass of `order`; notch > 0 appends a notch at that frequency with quality notch_q.
 * At least one stage is required. */
int rf_eeg_filter_design(double fs, double highpass, double lowpass, int order, double notch,
                         double notch_q, rf_sos *out, rf_err *e);

/* Frequency response of one pass at freqs[0..nf) (Hz): mag[i] = |H|, phase[i] = arg H in
 * radians (either output may be NULL). Frequencies must be finite and in [0, fs/2]. */
int rf_filter_response(const rf_sos *s, const double *freqs, int nf, double *mag, double *phase,
                       rf_err *e);

/* Steady-state section states for a unit-step input (scipy.signal.sosfilt_zi): zi is n x 2. */
void rf_sosfilt_zi(const rf_sos *s, double *zi);
/* Causal filtering in place (transposed direct form II). zi (n x 2, may be NULL for zero state)
 * is the initial state and receives the final state. */
void rf_sosfilt(const rf_sos *s, double *x, int64_t n, double *zi);
/* Default pad length of rf_sosfiltfilt: the larger of scipy's sosfiltfilt default
 * 3 * (2 * sections + 1 - trailing zero coefficients) and 6 time constants of the slowest pole
 * (so that slow high-pass filters settle inside the padding). */
int64_t rf_sosfiltfilt_padlen(const rf_sos *s);

/* How the signal is extended before forward-backward filtering.
 * ODD  (scipy's default): 2 x[0] - x[k]. Keeps level and slope; best for filters that pass DC.
 * EVEN: x[k] (mirror). Keeps the local level without the step 2 (x[0] - local mean) that odd
 *       reflection puts in front of a noisy signal; much smaller edge transients for high-pass
 *       and band-pass filters (measured in tests/test_dsp.c: ~4x at the edge on EEG-like data).
 * AUTO: EVEN when the cascade blocks DC (|H(0)| < 1/2), otherwise ODD. */
typedef enum { RF_PAD_AUTO = 0, RF_PAD_ODD = 1, RF_PAD_EVEN = 2 } rf_padtype;

/* Zero-phase forward-backward filtering in place (as scipy.signal.sosfiltfilt): the signal is
 * extended by `padlen` reflected samples at both ends (padlen < 0: the default above, reduced to
 * n - 1 for short signals; padlen >= n is an error) and each pass starts from the steady state
 * for its first value (sosfilt_zi times that value). The result has response |H|^2 and no phase
 * shift. Non-finite samples are an error naming the sample. */
int rf_sosfiltfilt(const rf_sos *s, double *x, int64_t n, int64_t padlen, rf_padtype pad,
                   rf_err *e);
/* The same on each row of a rows x n array (rows filtered in parallel with OpenMP). */
int rf_sosfiltfilt_rows(const rf_sos *s, double *x, int rows, int64_t n, int64_t padlen,
                        rf_padtype pad, rf_err *e);

/* ======================= resampling ======================= */

typedef struct rf_resample_opts {
    int max_factor;      /* largest allowed up or down factor (default 1024) */
    double tol;          /* relative tolerance of up/down against fs_out/fs_in (default 1e-6) */
    int downsample_only; /* 1: fs_out > fs_in is an error (default 0) */
    int half_len;        /* FIR half-length in units of max(up, down) (default 10, as scipy) */
    double kaiser_beta;  /* Kaiser window shape (default 5.0, as scipy) */
} rf_resample_opts;
void rf_resample_opts_default(rf_resample_opts *o);

/* up/down in lowest terms with up/down = fs_out/fs_in: exact for integer rates, otherwise the
 * smallest denominator within o->tol. Errors name both rates. o may be NULL (defaults). */
int rf_resample_factors(double fs_in, double fs_out, const rf_resample_opts *o, int *up,
                        int *down, rf_err *e);
/* Output length: ceil(n * up / down). */
int64_t rf_resample_len(int64_t n, int up, int down);

/* Polyphase resampler (filter designed once, reusable, read-only while running so it can be
 * shared between threads). Low-pass FIR: windowed sinc with cutoff at the lower of the two
 * Nyquist rates, length 2 * half_len * max(up, down) + 1, Kaiser window (I0 from GSL); every
 * polyphase branch is normalised to unit DC gain, so constants are preserved exactly. With the
 * defaults the gain is flat within 0.05 dB up to 0.85 of the lower Nyquist rate (-0.7 dB at 0.9);
 * when downsampling, input above 1.2 x the target Nyquist is suppressed by >= 55 dB but input
 * between 1.0 and 1.15 x only by 12-43 dB: low-pass first (e.g. 45 Hz before going to 128 Hz).
 * Output sample m lies at input time m * down / up; the input is extended by odd reflection at
 * both ends (no droop; the first/last ~0.1 s are approximate for fast components). */
typedef struct rf_resampler rf_resampler;
rf_resampler *rf_resampler_create(double fs_in, double fs_out, const rf_resample_opts *o,
                                  rf_err *e);
void rf_resampler_free(rf_resampler *r);
void rf_resampler_factors(const rf_resampler *r, int *up, int *down);
int rf_resampler_taps(const rf_resampler *r); /* FIR length */
/* y must hold rf_resample_len(n, up, down) values; n >= 1. */
int rf_resampler_run(const rf_resampler *r, const double *x, int64_t n, double *y, rf_err *e);
/* Convenience: resamples each row of a rows x n array into a malloc'd rows x *ny array. */
int rf_resample_rows(const double *x, int rows, int64_t n, double fs_in, double fs_out,
                     const rf_resample_opts *o, double **y, int64_t *ny, rf_err *e);

/* ======================= windows ======================= */

typedef struct rf_windows {
    int64_t n;             /* windows kept */
    int64_t len;           /* samples per window */
    int64_t *start;        /* n start samples */
    int64_t *source;       /* n indices: the k-th step (fixed) or onset (onsets) of each window */
    int64_t dropped;       /* dropped_start + dropped_end */
    int64_t dropped_start; /* would begin before sample 0 */
    int64_t dropped_end;   /* would run past the last sample */
} rf_windows;
void rf_windows_free(rf_windows *w);

/* Windows of `len` samples every `hop` samples starting at 0. A step k whose start k*hop lies
 * inside the recording but whose window runs past the end counts as dropped_end. */
int rf_windows_fixed(int64_t n_samples, int64_t len, int64_t hop, rf_windows *w, rf_err *e);
/* Windows around onsets (seconds): start = round((onset - pre) * fs) and
 * len = round((pre + post) * fs) samples (round half away from zero). Sleep epochs: pre = 0,
 * post = 30; event-locked: e.g. pre = 0.5, post = 4. Windows not entirely inside
 * [0, n_samples) are dropped and counted (source[] maps kept windows back to their onsets). */
int rf_windows_at_onsets(int64_t n_samples, double fs, const double *onsets, int64_t n_onsets,
                         double pre, double post, rf_windows *w, rf_err *e);
/* Copies the windows of a channels x n_samples array into out (w->n x channels x w->len). */
int rf_windows_extract(const double *x, int channels, int64_t n_samples, const rf_windows *w,
                       double *out, rf_err *e);
int rf_windows_extract_f32(const double *x, int channels, int64_t n_samples,
                           const rf_windows *w, float *out, rf_err *e);

/* ======================= robust standardisation ======================= */

typedef struct rf_robust_stats {
    int channels;
    double *median;      /* per channel */
    double *scale;       /* per channel: max(1.4826 * MAD, min_scale) */
    unsigned char *flat; /* 1 where 1.4826 * MAD < min_scale (flat or nearly flat channel) */
    int n_flat;
} rf_robust_stats;
void rf_robust_stats_free(rf_robust_stats *s);
/* Per-channel median and MAD of a channels x n array (no labels involved). min_scale > 0 is
 * the floor (in the data's units) below which a channel is reported flat. Non-finite values
 * are an error naming the channel and sample. */
int rf_robust_fit(const double *x, int channels, int64_t n, double min_scale,
                  rf_robust_stats *s, rf_err *e);
/* x[c][i] = (x[c][i] - median[c]) / scale[c] for a channels x n array (windows: call per window
 * or pass channels = s->channels and n = samples of a channels x n recording). */
int rf_robust_apply(const rf_robust_stats *s, double *x, int channels, int64_t n, rf_err *e);

/* ======================= artefact rejection ======================= */

typedef struct rf_reject_opts {
    double max_ptp;  /* drop if max - min of any channel exceeds this (<= 0: off) */
    double max_absz; /* drop if |value| of any channel exceeds this (<= 0: off); for
                        standardised windows this is a z threshold */
} rf_reject_opts;

typedef struct rf_reject_counts {
    int64_t total, kept, dropped;
    int64_t dropped_ptp;       /* windows over max_ptp */
    int64_t dropped_absz;      /* windows over max_absz (a window may count in both) */
    int64_t dropped_nonfinite; /* windows containing NaN or Inf (always dropped) */
} rf_reject_counts;

/* Windows: nw x channels x len. keep[i] = 1 for kept windows, 0 for dropped ones. */
int rf_reject_windows(const double *w, int64_t nw, int channels, int64_t len,
                      const rf_reject_opts *o, unsigned char *keep, rf_reject_counts *c,
                      rf_err *e);

/* ======================= spectra ======================= */

/* Number of one-sided frequencies of a Welch PSD with segments of seg_len samples. */
int64_t rf_welch_nfreq(int64_t seg_len);
/* Welch PSD of one signal (scipy.signal.welch defaults): Hann (periodic) window of seg_len
 * samples, 50 % overlap (step seg_len / 2), per-segment mean removal, one-sided density
 * scaling (units^2 / Hz); psd[k] at frequency k * fs / seg_len, k < rf_welch_nfreq(seg_len).
 * Requires 2 <= seg_len <= n. Parseval: sum(psd) * fs / seg_len equals the mean over segments
 * of sum((w (x - mean))^2) / sum(w^2). */
int rf_welch_psd(const double *x, int64_t n, double fs, int64_t seg_len, double *psd,
                 rf_err *e);
/* The same for each row of a rows x n array: psd is rows x rf_welch_nfreq(seg_len). */
int rf_welch_psd_rows(const double *x, int rows, int64_t n, double fs, int64_t seg_len,
                      double *psd, rf_err *e);

/* Standard EEG bands. */
typedef enum {
    RF_BAND_DELTA = 0, /* 0.5 - 4 Hz */
    RF_BAND_THETA,     /* 4 - 8 */
    RF_BAND_ALPHA,     /* 8 - 13 */
    RF_BAND_SIGMA,     /* 12 - 15 (spindles) */
    RF_BAND_BETA,      /* 13 - 30 */
    RF_BAND_GAMMA,     /* 30 - 45 */
    RF_BAND_COUNT
} rf_band;
const char *rf_band_name(rf_band b);
void rf_band_range(rf_band b, double *lo, double *hi);
/* Power in [lo, hi] Hz from a one-sided Welch PSD of segment length seg_len at rate fs
 * (psd[k] at k * fs / seg_len). The PSD is read as a piecewise-constant density on [0, fs/2]:
 * bin k covers [k df - df/2, k df + df/2] clipped to [0, fs/2] and carries power psd[k] * df,
 * so adjacent bands add up and [0, fs/2] gives sum(psd) * df, the signal's power.
 * Returns 0 for an empty or invalid interval. */
double rf_band_power(const double *psd, double fs, int64_t seg_len, double lo, double hi);
/* Band-power features of a channels x n array: out[c * RF_BAND_COUNT + b] = power of channel c
 * in band b (log10(max(power, 1e-30)) when log10_power != 0), from a Welch PSD with seg_len
 * samples. */
int rf_bandpower_features(const double *x, int channels, int64_t n, double fs, int64_t seg_len,
                          int log10_power, double *out, rf_err *e);

#endif
