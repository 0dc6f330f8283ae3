/* EEG signal processing (include/renflow/dsp.h): filter design against the analytic Butterworth
 * magnitude, notch, zero-phase filtering (no lag, |H|^2 gain, symmetric impulse response, edges
 * against the same filter run on a longer recording), empirical response of white noise,
 * polyphase resampling (passband, aliasing, DC, lengths), windows, robust standardisation,
 * artefact rejection, Welch PSD and band powers, bad arguments, and the whole chain on a real
 * recording (eegmat, read with EDFlib directly). Measured errors are printed. */
#include "testutil.h"

#include <edflib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/core.h"
#include "renflow/dsp.h"

#define PI 3.14159265358979323846

static void eeg_like(double *x, int64_t n, double fs, uint64_t seed);

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Error message must contain every given substring. */
static void expect_err(int rc, const rf_err *e, int code, const char *s1, const char *s2,
                       const char *s3) {
    if (rc != code) fail_msg("expected status %d, got %d (%s)", code, rc, e->msg);
    const char *ss[3] = {s1, s2, s3};
    for (int i = 0; i < 3; i++)
        if (ss[i] && !strstr(e->msg, ss[i]))
            fail_msg("error message '%s' lacks '%s'", e->msg, ss[i]);
}

/* Analytic |H|^2 of a digital Butterworth filter (bilinear transform with prewarping):
 * W = tan(pi f / fs); low-pass 1/(1+(W/Wc)^2N), high-pass 1/(1+(Wc/W)^2N), band-pass
 * 1/(1+((W^2-W1 W2)/(W (W2-W1)))^2N), band-stop 1/(1+(W (W2-W1)/(W^2-W1 W2))^2N). */
static double butter_h2(rf_filter_kind k, int N, double f1, double f2, double fs, double f) {
    const double W = tan(PI * f / fs), W1 = tan(PI * f1 / fs), W2 = tan(PI * f2 / fs);
    double r = 0;
    switch (k) {
    case RF_FILTER_LOWPASS: r = W / W1; break;
    case RF_FILTER_HIGHPASS: r = W1 / W; break;
    case RF_FILTER_BANDPASS: r = (W * W - W1 * W2) / (W * (W2 - W1)); break;
    case RF_FILTER_BANDSTOP: r = (W * (W2 - W1)) / (W * W - W1 * W2); break;
    }
    return 1 / (1 + pow(r * r, N));
}

/* Max deviation in dB between the designed |H|^2 and the analytic one over a frequency grid
 * (ignoring points below -250 dB and the exact zeros of the formula). */
static double butter_max_db_err(const rf_sos *s, rf_filter_kind k, int N, double f1, double f2,
                                double fs) {
    enum { NF = 400 };
    double f[NF], mag[NF], worst = 0;
    for (int i = 0; i < NF; i++) f[i] = (i + 0.5) * (fs / 2) / NF;
    rf_err e;
    assert_int_equal(rf_filter_response(s, f, NF, mag, NULL, &e), RF_OK);
    for (int i = 0; i < NF; i++) {
        double h2 = butter_h2(k, N, f1, f2, fs, f[i]);
        if (h2 < 1e-25 || mag[i] * mag[i] < 1e-25) continue;
        double d = fabs(10 * log10(mag[i] * mag[i]) - 10 * log10(h2));
        if (d > worst) worst = d;
    }
    return worst;
}

static void test_butter_design(void **state) {
    (void)state;
    rf_err e;
    const double fs = 250;
    double worst_db = 0, worst_cut = 0;
    for (int N = 1; N <= 10; N++) {
        for (int kind = 0; kind < 4; kind++) {
            rf_filter_kind k = (rf_filter_kind)kind;
            int band = k == RF_FILTER_BANDPASS || k == RF_FILTER_BANDSTOP;
            double f1 = band ? 8 : 30, f2 = band ? 30 : 0;
            rf_sos s;
            assert_int_equal(rf_butter(k, N, f1, f2, fs, &s, &e), RF_OK);
            assert_int_equal(s.n, band ? N : (N + 1) / 2);
            assert_true(s.fs == fs);
            /* -3 dB exactly at the cutoffs (single pass) */
            double fc[2] = {f1, f2}, mc[2];
            assert_int_equal(rf_filter_response(&s, fc, band ? 2 : 1, mc, NULL, &e), RF_OK);
            for (int j = 0; j < (band ? 2 : 1); j++) {
                double d = fabs(mc[j] - 1 / sqrt(2));
                if (d > worst_cut) worst_cut = d;
            }
            /* the magnitude follows the Butterworth formula everywhere */
            double db = butter_max_db_err(&s, k, N, f1, f2, fs);
            if (db > worst_db) worst_db = db;
            if (db > 1e-6)
                fail_msg("%s order %d: |H|^2 deviates from the formula by %g dB",
                         rf_filter_kind_name(k), N, db);
            /* stable: every pole strictly inside the unit circle (a2 = product of radii) */
            for (int j = 0; j < s.n; j++) {
                double a1 = s.c[6 * j + 4], a2 = s.c[6 * j + 5];
                assert_true(fabs(a2) < 1 && fabs(a1) < 1 + a2);
            }
            rf_sos_free(&s);
        }
    }
    /* very wide bands (the transformed real prototype pole stays real: two real poles in one
     * section), narrow bands and low cutoffs at high rates */
    const double extra[][4] = {
        {RF_FILTER_BANDPASS, 0.1, 100, 250}, {RF_FILTER_BANDSTOP, 0.1, 100, 250},
        {RF_FILTER_BANDPASS, 49, 51, 500},   {RF_FILTER_BANDSTOP, 48, 52, 500},
        {RF_FILTER_HIGHPASS, 0.05, 0, 1000}, {RF_FILTER_LOWPASS, 0.5, 0, 1000},
        {RF_FILTER_LOWPASS, 499, 0, 1000}};
    for (int i = 0; i < 7; i++)
        for (int N = 1; N <= 10; N++) {
            rf_filter_kind k = (rf_filter_kind)extra[i][0];
            rf_sos s;
            assert_int_equal(rf_butter(k, N, extra[i][1], extra[i][2], extra[i][3], &s, &e),
                             RF_OK);
            double db = butter_max_db_err(&s, k, N, extra[i][1], extra[i][2], extra[i][3]);
            double fc = extra[i][1], m;
            assert_int_equal(rf_filter_response(&s, &fc, 1, &m, NULL, &e), RF_OK);
            /* 1e-8: a 0.05 Hz high-pass at 1 kHz has poles within 3e-4 of z = 1 */
            if (db > 1e-6 || fabs(m - M_SQRT1_2) > 1e-8)
                fail_msg("%s %g-%g Hz at %g Hz order %d: %g dB from the formula, |H(f1)| = %.12f",
                         rf_filter_kind_name(k), extra[i][1], extra[i][2], extra[i][3], N, db, m);
            worst_db = fmax(worst_db, db);
            rf_sos_free(&s);
        }
    printf("butterworth orders 1..10, 4 kinds + wide/narrow/extreme bands: max |H| error at "
           "cutoffs %.2e, max |H|^2 deviation from the formula %.2e dB\n",
           worst_cut, worst_db);
    assert_true(worst_cut < 1e-9);
}

static void test_bandpass_eeg(void **state) {
    (void)state;
    rf_err e;
    /* the typical EEG band-pass: 0.5-45 Hz, order 4, at 500 Hz */
    const double fs = 500, f1 = 0.5, f2 = 45;
    rf_sos s;
    assert_int_equal(rf_butter(RF_FILTER_BANDPASS, 4, f1, f2, fs, &s, &e), RF_OK);
    assert_int_equal(s.n, 4);
    double f[] = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 40, 45, 60, 90, 150, 249.9};
    const int nf = sizeof f / sizeof *f;
    double mag[sizeof f / sizeof *f], ph[sizeof f / sizeof *f];
    assert_int_equal(rf_filter_response(&s, f, nf, mag, ph, &e), RF_OK);
    for (int i = 0; i < nf; i++) {
        double h = sqrt(butter_h2(RF_FILTER_BANDPASS, 4, f1, f2, fs, f[i]));
        printf("  f = %6.2f Hz: |H| = %.6f (formula %.6f, %.1f dB)\n", f[i], mag[i], h,
               20 * log10(mag[i]));
        assert_true(fabs(mag[i] - h) <= 1e-9 * fmax(h, 1e-6));
    }
    assert_true(fabs(mag[3] - M_SQRT1_2) < 1e-9 && fabs(mag[11] - M_SQRT1_2) < 1e-9);
    /* flat passband 2..20 Hz within 0.01 dB; stopband: 50 dB down at 0.1 Hz and 150 Hz */
    for (double q = 2; q <= 20; q += 0.5) {
        double m;
        assert_int_equal(rf_filter_response(&s, &q, 1, &m, NULL, &e), RF_OK);
        assert_true(fabs(20 * log10(m)) < 0.01);
    }
    assert_true(20 * log10(mag[1]) < -50 && 20 * log10(mag[14]) < -50);
    rf_sos_free(&s);
}

static void test_notch(void **state) {
    (void)state;
    rf_err e;
    const double cases[][3] = {{50, 30, 500}, {60, 30, 250}, {50, 10, 160}};
    for (int c = 0; c < 3; c++) {
        const double f0 = cases[c][0], Q = cases[c][1], fs = cases[c][2];
        rf_sos s;
        assert_int_equal(rf_notch(f0, Q, fs, &s, &e), RF_OK);
        double f[] = {f0, f0 - 5, f0 + 5, 0, fs / 2, f0 - 0.01};
        double m[6];
        assert_int_equal(rf_filter_response(&s, f, 6, m, NULL, &e), RF_OK);
        /* -3 dB points by bisection on each side: exactly f0/Q apart */
        double edge[2];
        for (int side = 0; side < 2; side++) {
            double a = side ? f0 : 1e-9, b = side ? fs / 2 - 1e-9 : f0; /* |H| decreasing/incr. */
            for (int it = 0; it < 200; it++) {
                double mid = 0.5 * (a + b), mm;
                assert_int_equal(rf_filter_response(&s, &mid, 1, &mm, NULL, &e), RF_OK);
                int below = mm < M_SQRT1_2;
                if (side == 0) (below ? (b = mid) : (a = mid));
                else (below ? (a = mid) : (b = mid));
            }
            edge[side] = 0.5 * (a + b);
        }
        const double width = edge[1] - edge[0];
        printf("notch %g Hz Q %g fs %g: |H(f0)| = %.1e (%.0f dB), |H(f0-5)| = %.4f, "
               "|H(f0+5)| = %.4f, -3 dB width %.6f Hz (f0/Q = %.6f)\n",
               f0, Q, fs, m[0], 20 * log10(m[0] + 1e-300), m[1], m[2], width, f0 / Q);
        assert_true(20 * log10(m[0] + 1e-300) < -40);
        if (Q >= 30) assert_true(m[1] > 0.98 && m[2] > 0.98);
        assert_true(fabs(m[3] - 1) < 1e-12 && fabs(m[4] - 1) < 1e-12);
        assert_true(m[5] < 0.02);
        assert_true(fabs(width - f0 / Q) < 1e-6);
        rf_sos_free(&s);
    }
}

/* Least-squares amplitude and phase of a sinusoid of frequency f (cycles/sample) in y[a..b). */
static void fit_sine(const double *y, int64_t a, int64_t b, double f, double *amp, double *ph) {
    double sc = 0, ss = 0, cc = 0, sn = 0, cs = 0;
    for (int64_t i = a; i < b; i++) {
        double c = cos(2 * PI * f * i), s = sin(2 * PI * f * i);
        sc += y[i] * c;
        ss += y[i] * s;
        cc += c * c;
        sn += s * s;
        cs += c * s;
    }
    /* solve [cc cs; cs sn] [A; B] = [sc; ss] for y ~ A cos + B sin */
    double det = cc * sn - cs * cs, A = (sc * sn - ss * cs) / det, B = (ss * cc - sc * cs) / det;
    *amp = hypot(A, B);
    *ph = atan2(-B, A); /* y ~ amp cos(w i + ph) */
}

static void test_filtfilt_zero_phase(void **state) {
    (void)state;
    rf_err e;
    const double fs = 250, f0 = 10;
    const int64_t n = 5000;
    rf_sos s;
    assert_int_equal(rf_butter(RF_FILTER_BANDPASS, 4, 1, 40, fs, &s, &e), RF_OK);
    double *x = xmalloc(sizeof(double) * n), *y = xmalloc(sizeof(double) * n);
    for (int64_t i = 0; i < n; i++) x[i] = 100 + cos(2 * PI * f0 / fs * i + 0.3);
    memcpy(y, x, sizeof(double) * n);
    assert_int_equal(rf_sosfiltfilt(&s, y, n, -1, RF_PAD_AUTO, &e), RF_OK);
    double h;
    assert_int_equal(rf_filter_response(&s, &f0, 1, &h, NULL, &e), RF_OK);
    /* amplitude |H|^2, phase unchanged (fit over the middle 80 %) */
    double amp, ph;
    fit_sine(y, n / 10, n - n / 10, f0 / fs, &amp, &ph);
    /* cross-correlation with the input sinusoid peaks at lag 0 */
    int best = 99;
    double bc = -INFINITY;
    for (int lag = -10; lag <= 10; lag++) {
        double c = 0;
        for (int64_t i = n / 10; i < n - n / 10; i++) c += (x[i] - 100) * y[i + lag];
        if (c > bc) bc = c, best = lag;
    }
    /* whole signal, edges included: y vs |H|^2 times the sinusoid (the offset 100 removed) */
    double err_mid = 0, err_all = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(y[i] - h * h * (x[i] - 100));
        if (d > err_all) err_all = d;
        if (i >= n / 10 && i < n - n / 10 && d > err_mid) err_mid = d;
    }
    printf("filtfilt 10 Hz through 1-40 Hz: amplitude %.6f (|H|^2 = %.6f), phase %.2e rad, "
           "xcorr lag %d, max error middle %.2e, whole signal incl. edges %.2e\n",
           amp, h * h, ph - 0.3, best, err_mid, err_all);
    assert_int_equal(best, 0);
    assert_true(fabs(amp - h * h) < 1e-4);
    assert_true(fabs(ph - 0.3) < 1e-4);
    assert_true(err_mid < 1e-4);
    assert_true(err_all < 0.05);

    /* impulse response of filtfilt is symmetric about the impulse */
    const int64_t m = 4001, c = 2000;
    double *d = xmalloc(sizeof(double) * m);
    memset(d, 0, sizeof(double) * m);
    d[c] = 1;
    assert_int_equal(rf_sosfiltfilt(&s, d, m, -1, RF_PAD_AUTO, &e), RF_OK);
    double asym = 0, peak = 0;
    for (int64_t k = 1; k <= c; k++) asym = fmax(asym, fabs(d[c + k] - d[c - k]));
    for (int64_t i = 0; i < m; i++)
        if (fabs(d[i]) > peak) peak = fabs(d[i]);
    printf("filtfilt impulse response: peak %.4f at the impulse %.4f, max asymmetry %.2e\n", peak,
           d[c], asym);
    assert_true(fabs(d[c]) == peak);
    assert_true(asym < 1e-12 * peak);
    /* the causal single pass is not symmetric (the test can tell) */
    memset(d, 0, sizeof(double) * m);
    d[c] = 1;
    rf_sosfilt(&s, d, m, NULL);
    double asym1 = 0;
    for (int64_t k = 1; k <= c; k++) asym1 = fmax(asym1, fabs(d[c + k] - d[c - k]));
    assert_true(asym1 > 1e-3);
    free(d);
    free(x);
    free(y);
    rf_sos_free(&s);
}

/* Steady-state initial conditions: a constant input stays constant (times the DC gain) from the
 * first sample; the pad type AUTO is even reflection for a band-pass and odd for a low-pass; the
 * rows variants (OpenMP over rows) give exactly the single-row results. */
static void test_filter_state_and_rows(void **state) {
    (void)state;
    rf_err e;
    rf_sos lp, bp;
    assert_int_equal(rf_butter(RF_FILTER_LOWPASS, 5, 20, 0, 250, &lp, &e), RF_OK);
    assert_int_equal(rf_eeg_filter_design(250, 1, 40, 4, 50, 30, &bp, &e), RF_OK);
    double zi[12], x[300];
    rf_sosfilt_zi(&lp, zi);
    for (int j = 0; j < 2 * lp.n; j++) zi[j] *= 3.5;
    for (int i = 0; i < 300; i++) x[i] = 3.5;
    rf_sosfilt(&lp, x, 300, zi);
    for (int i = 0; i < 300; i++) assert_true(fabs(x[i] - 3.5) < 1e-12);
    /* without initial conditions the same input starts from 0 */
    for (int i = 0; i < 300; i++) x[i] = 3.5;
    rf_sosfilt(&lp, x, 300, NULL);
    assert_true(fabs(x[0] - 3.5) > 3);

    const int R = 3;
    const int64_t n = 100000;
    double *a = xmalloc(sizeof(double) * R * n), *b = xmalloc(sizeof(double) * R * n),
           *c = xmalloc(sizeof(double) * R * n);
    for (int r = 0; r < R; r++) eeg_like(a + r * n, n, 250, 100 + r);
    const rf_sos *fl[2] = {&lp, &bp};
    for (int f = 0; f < 2; f++) {
        memcpy(b, a, sizeof(double) * R * n);
        memcpy(c, a, sizeof(double) * R * n);
        assert_int_equal(rf_sosfiltfilt_rows(fl[f], b, R, n, -1, RF_PAD_AUTO, &e), RF_OK);
        for (int r = 0; r < R; r++)
            assert_int_equal(rf_sosfiltfilt(fl[f], c + r * n, n, -1,
                                            f == 0 ? RF_PAD_ODD : RF_PAD_EVEN, &e),
                             RF_OK);
        assert_memory_equal(b, c, sizeof(double) * R * n);
        /* and the other pad type gives a different result (near the edges) */
        memcpy(c, a, sizeof(double) * n);
        assert_int_equal(rf_sosfiltfilt(fl[f], c, n, -1, f == 0 ? RF_PAD_EVEN : RF_PAD_ODD, &e),
                         RF_OK);
        assert_true(fabs(c[0] - b[0]) > 1e-6);
    }
    double *y;
    int64_t ny;
    assert_int_equal(rf_resample_rows(a, R, n, 250, 128, NULL, &y, &ny, &e), RF_OK);
    rf_resampler *rs = rf_resampler_create(250, 128, NULL, &e);
    assert_non_null(rs);
    int up, down;
    rf_resampler_factors(rs, &up, &down);
    assert_int_equal(up, 64);
    assert_int_equal(down, 125);
    assert_int_equal(rf_resampler_taps(rs), 2 * 10 * 125 + 1);
    assert_int_equal(ny, rf_resample_len(n, 64, 125));
    for (int r = 0; r < R; r++) {
        assert_int_equal(rf_resampler_run(rs, a + r * n, n, c, &e), RF_OK);
        assert_memory_equal(y + r * ny, c, sizeof(double) * ny);
    }
    rf_resampler_free(rs);
    free(y);
    const int64_t L = 512, nf = rf_welch_nfreq(L);
    double *p = xmalloc(sizeof(double) * R * nf), *q = xmalloc(sizeof(double) * nf);
    assert_int_equal(rf_welch_psd_rows(a, R, n, 250, L, p, &e), RF_OK);
    for (int r = 0; r < R; r++) {
        assert_int_equal(rf_welch_psd(a + r * n, n, 250, L, q, &e), RF_OK);
        assert_memory_equal(p + r * nf, q, sizeof(double) * nf);
    }
    free(p);
    free(q);
    free(a);
    free(b);
    free(c);
    rf_sos_free(&lp);
    rf_sos_free(&bp);
}

/* EEG-like noise: AR(2) resonance near 10 Hz + AR(1) drift + white noise + offset. */
static void eeg_like(double *x, int64_t n, double fs, uint64_t seed) {
    rf_rng r;
    rf_rng_seed(&r, seed);
    double a1 = 2 * 0.97 * cos(2 * PI * 10 / fs), a2 = -0.97 * 0.97, u1 = 0, u2 = 0, drift = 0;
    for (int64_t i = 0; i < n; i++) {
        double u = a1 * u1 + a2 * u2 + rf_rng_normal(&r);
        u2 = u1;
        u1 = u;
        drift = 0.999 * drift + 0.5 * rf_rng_normal(&r);
        x[i] = 40 + u + drift + 0.5 * rf_rng_normal(&r);
    }
}

/* Edges: filtering a 10 s excerpt should give what filtering the whole 60 s recording gives on
 * that excerpt. Errors (max |difference| / rms of the filtered excerpt) by distance from the
 * nearest edge, over 3 recordings x 5 excerpts, for the default (AUTO = even reflection for a
 * band-pass, 6 time constants of padding), scipy's odd reflection with scipy's padlen, and no
 * padding at all. */
static void edge_errors(const rf_sos *s, int64_t padlen, rf_padtype pt, double err[3]) {
    rf_err e;
    const double fs = 250;
    const int64_t n = 60 * 250, L = 10 * 250;
    double *x = xmalloc(sizeof(double) * n), *full = xmalloc(sizeof(double) * n),
           *seg = xmalloc(sizeof(double) * L);
    err[0] = err[1] = err[2] = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        eeg_like(x, n, fs, seed);
        memcpy(full, x, sizeof(double) * n);
        assert_int_equal(rf_sosfiltfilt(s, full, n, -1, RF_PAD_AUTO, &e), RF_OK);
        for (int64_t a = 5 * 250; a + L <= n - 5 * 250; a += 9 * 250 + 17) {
            double rms = 0;
            for (int64_t i = a; i < a + L; i++) rms += full[i] * full[i];
            rms = sqrt(rms / L);
            memcpy(seg, x + a, sizeof(double) * L);
            assert_int_equal(rf_sosfiltfilt(s, seg, L, padlen, pt, &e), RF_OK);
            for (int64_t i = 0; i < L; i++) {
                int64_t dist = i < L - 1 - i ? i : L - 1 - i;
                int b = dist < 125 ? 0 : dist < 500 ? 1 : 2; /* < 0.5 s, < 2 s, >= 2 s */
                err[b] = fmax(err[b], fabs(seg[i] - full[a + i]) / rms);
            }
        }
    }
    free(x);
    free(full);
    free(seg);
}

static void test_filtfilt_edges(void **state) {
    (void)state;
    rf_err e;
    const double hps[] = {0.5, 1.0};
    for (int t = 0; t < 2; t++) {
        rf_sos s;
        assert_int_equal(rf_eeg_filter_design(250, hps[t], 40, 4, 50, 30, &s, &e), RF_OK);
        assert_int_equal(s.n, 5);
        double ea[3], eo[3], e0[3];
        edge_errors(&s, -1, RF_PAD_AUTO, ea);
        edge_errors(&s, 3 * (2 * 5 + 1), RF_PAD_ODD, eo);
        edge_errors(&s, 0, RF_PAD_AUTO, e0);
        printf("filtfilt edges, %.1f-40 Hz + 50 Hz notch, error / rms by distance from the edge "
               "[< 0.5 s, 0.5-2 s, >= 2 s]:\n  default (even, padlen %lld): %.3f %.3f %.4f\n  "
               "scipy (odd, padlen 33):       %.3f %.3f %.4f\n  no padding:                  "
               "%.3f %.3f %.4f\n",
               hps[t], (long long)rf_sosfiltfilt_padlen(&s), ea[0], ea[1], ea[2], eo[0], eo[1],
               eo[2], e0[0], e0[1], e0[2]);
        assert_true(ea[0] < 1.0 && ea[1] < 0.3 && ea[2] < (t == 0 ? 0.06 : 0.01));
        for (int b = 0; b < 3; b++) assert_true(ea[b] < eo[b] && ea[b] < e0[b]);
        assert_true(ea[0] < 0.5 * eo[0]);
        rf_sos_free(&s);
    }
}

/* White noise through the filter: Welch PSD ratio out/in against |H|^2 (one pass) and |H|^4
 * (forward-backward). */
static void test_empirical_response(void **state) {
    (void)state;
    rf_err e;
    const double fs = 250;
    const int64_t n = 1 << 17, L = 512, nf = rf_welch_nfreq(L);
    rf_rng r;
    rf_rng_seed(&r, 3);
    double *x = xmalloc(sizeof(double) * n), *y1 = xmalloc(sizeof(double) * n),
           *y2 = xmalloc(sizeof(double) * n);
    for (int64_t i = 0; i < n; i++) x[i] = rf_rng_normal(&r);
    rf_sos s;
    assert_int_equal(rf_butter(RF_FILTER_BANDPASS, 3, 5, 30, fs, &s, &e), RF_OK);
    memcpy(y1, x, sizeof(double) * n);
    memcpy(y2, x, sizeof(double) * n);
    rf_sosfilt(&s, y1, n, NULL);
    assert_int_equal(rf_sosfiltfilt(&s, y2, n, -1, RF_PAD_AUTO, &e), RF_OK);
    double *px = xmalloc(sizeof(double) * nf), *p1 = xmalloc(sizeof(double) * nf),
           *p2 = xmalloc(sizeof(double) * nf), *f = xmalloc(sizeof(double) * nf),
           *h = xmalloc(sizeof(double) * nf);
    assert_int_equal(rf_welch_psd(x, n, fs, L, px, &e), RF_OK);
    assert_int_equal(rf_welch_psd(y1, n, fs, L, p1, &e), RF_OK);
    assert_int_equal(rf_welch_psd(y2, n, fs, L, p2, &e), RF_OK);
    for (int64_t k = 0; k < nf; k++) f[k] = k * fs / L;
    assert_int_equal(rf_filter_response(&s, f, (int)nf, h, NULL, &e), RF_OK);
    double w1 = 0, w2 = 0;
    int used = 0;
    for (int64_t k = 1; k < nf - 1; k++) {
        double h2 = h[k] * h[k];
        if (h2 < 0.1) continue;
        used++;
        w1 = fmax(w1, fabs(10 * log10(p1[k] / px[k] / h2)));
        if (h2 * h2 >= 0.1) w2 = fmax(w2, fabs(10 * log10(p2[k] / px[k] / (h2 * h2))));
    }
    /* stopband: 60 Hz is ~ -38 dB one pass */
    int64_t k60 = (int64_t)(60.0 * L / fs);
    double stop1 = 10 * log10(p1[k60] / px[k60]), want1 = 20 * log10(h[k60]);
    printf("white noise through 5-30 Hz order 3 (%d bins with |H|^2 >= 0.1): max |PSD ratio - "
           "|H|^2| %.3f dB (one pass), %.3f dB vs |H|^4 (filtfilt); at 60 Hz %.1f dB (|H|^2 "
           "%.1f dB)\n",
           used, w1, w2, stop1, want1);
    assert_true(used > 40);
    assert_true(w1 < 0.5 && w2 < 0.5);
    assert_true(fabs(stop1 - want1) < 1.5);
    free(x);
    free(y1);
    free(y2);
    free(px);
    free(p1);
    free(p2);
    free(f);
    free(h);
    rf_sos_free(&s);
}

static void test_resample_factors(void **state) {
    (void)state;
    rf_err e;
    const double pairs[][4] = {{500, 128, 32, 125}, {160, 128, 4, 5},   {100, 128, 32, 25},
                               {256, 128, 1, 2},    {128, 128, 1, 1},   {44100, 48000, 160, 147},
                               {100.5, 201, 2, 1},  {512.0000000001, 128, 1, 4}};
    for (int i = 0; i < 8; i++) {
        int up = 0, down = 0;
        assert_int_equal(rf_resample_factors(pairs[i][0], pairs[i][1], NULL, &up, &down, &e),
                         RF_OK);
        assert_int_equal(up, (int)pairs[i][2]);
        assert_int_equal(down, (int)pairs[i][3]);
    }
    const int64_t ns[] = {1, 2, 124, 125, 126, 5000, 5001};
    for (int i = 0; i < 7; i++) {
        int64_t want = (int64_t)ceil(ns[i] * 32.0 / 125.0);
        assert_int_equal(rf_resample_len(ns[i], 32, 125), want);
    }
    int up, down;
    expect_err(rf_resample_factors(173.61, 128, NULL, &up, &down, &e), &e, RF_EARG, "173.61",
               "128", "not up/down");
    rf_resample_opts o;
    rf_resample_opts_default(&o);
    o.downsample_only = 1;
    expect_err(rf_resample_factors(100, 128, &o, &up, &down, &e), &e, RF_EARG, "100 Hz",
               "128 Hz", "only downsampling");
    rf_resample_opts_default(&o);
    o.max_factor = 100;
    expect_err(rf_resample_factors(1000, 999, &o, &up, &down, &e), &e, RF_EARG, "1000 Hz",
               "999 Hz", "999/1000");
    expect_err(rf_resample_factors(-5, 128, NULL, &up, &down, &e), &e, RF_EARG, "-5 Hz",
               "128 Hz", NULL);
    expect_err(rf_resample_factors(NAN, 128, NULL, &up, &down, &e), &e, RF_EARG, "nan", NULL,
               NULL);
    assert_null(rf_resampler_create(500, 0, NULL, &e));
    assert_non_null(strstr(e.msg, "500 Hz"));
}

/* y[m] vs the analytic signal at time m / fs_out; errors over the middle (edge margin in s). */
static void resample_check(double fs_in, double fs_out, double f, double dur, double margin,
                           double *err_mid, double *err_all) {
    rf_err e;
    const int64_t n = (int64_t)(dur * fs_in);
    double *x = xmalloc(sizeof(double) * n);
    for (int64_t i = 0; i < n; i++) x[i] = sin(2 * PI * f * i / fs_in + 0.4);
    double *y;
    int64_t ny;
    assert_int_equal(rf_resample_rows(x, 1, n, fs_in, fs_out, NULL, &y, &ny, &e), RF_OK);
    int up, down;
    assert_int_equal(rf_resample_factors(fs_in, fs_out, NULL, &up, &down, &e), RF_OK);
    assert_int_equal(ny, rf_resample_len(n, up, down));
    *err_mid = *err_all = 0;
    for (int64_t m = 0; m < ny; m++) {
        double t = m / fs_out, d = fabs(y[m] - sin(2 * PI * f * t + 0.4));
        *err_all = fmax(*err_all, d);
        if (t >= margin && t <= dur - margin) *err_mid = fmax(*err_mid, d);
    }
    free(x);
    free(y);
}

static void test_resample_signals(void **state) {
    (void)state;
    rf_err e;
    /* sinusoids below the new Nyquist are preserved (amplitude and phase) */
    const double cases[][3] = {{500, 128, 10}, {500, 128, 40}, {160, 128, 25}, {100, 128, 20},
                               {100, 128, 38}, {256, 128, 30}};
    for (int i = 0; i < 6; i++) {
        double em, ea, em1, ea1;
        resample_check(cases[i][0], cases[i][1], cases[i][2], 10, 0.5, &em, &ea);
        resample_check(cases[i][0], cases[i][1], cases[i][2], 10, 0.1, &em1, &ea1);
        printf("resample %g -> %g Hz, %g Hz sine: max error beyond 0.5 s from the edges %.2e, "
               "beyond 0.1 s %.2e, everywhere %.2e\n",
               cases[i][0], cases[i][1], cases[i][2], em, em1, ea);
        assert_true(em < 5e-3);
        assert_true(em1 < 5e-3);
        /* at the very edges the odd reflection is only an approximation of the continuation */
        assert_true(ea < (cases[i][2] <= 10 ? 5e-3 : 0.6));
    }
    /* a sinusoid above the new Nyquist is suppressed (it would alias to 38 Hz) */
    {
        const double fs_in = 500, fs_out = 128;
        const int64_t n = 5000;
        double *x = xmalloc(sizeof(double) * n), *y;
        int64_t ny;
        for (int64_t i = 0; i < n; i++) x[i] = sin(2 * PI * 90 * i / fs_in);
        assert_int_equal(rf_resample_rows(x, 1, n, fs_in, fs_out, NULL, &y, &ny, &e), RF_OK);
        double rms = 0;
        int cnt = 0;
        for (int64_t m = 64; m < ny - 64; m++, cnt++) rms += y[m] * y[m];
        rms = sqrt(rms / cnt);
        printf("resample 500 -> 128 Hz, 90 Hz sine (rms 0.707): output rms %.2e (%.1f dB)\n", rms,
               20 * log10(rms / M_SQRT1_2));
        assert_true(20 * log10(rms / M_SQRT1_2) < -45);
        free(x);
        free(y);
    }
    /* constants exactly, ramps nearly exactly, edges included; several rows at once */
    {
        const int64_t n = 1001;
        double *x = xmalloc(sizeof(double) * 2 * n), *y;
        int64_t ny;
        for (int64_t i = 0; i < n; i++) {
            x[i] = 3.7;
            x[n + i] = -2 + 0.01 * i;
        }
        assert_int_equal(rf_resample_rows(x, 2, n, 500, 128, NULL, &y, &ny, &e), RF_OK);
        assert_int_equal(ny, 257);
        double dc = 0, ramp = 0;
        for (int64_t m = 0; m < ny; m++) {
            dc = fmax(dc, fabs(y[m] - 3.7));
            ramp = fmax(ramp, fabs(y[ny + m] - (-2 + 0.01 * m * 125.0 / 32.0)));
        }
        printf("resample 500 -> 128 Hz: constant max error %.2e, ramp max error %.2e\n", dc, ramp);
        assert_true(dc < 1e-12);
        assert_true(ramp < 1e-3);
        free(x);
        free(y);
    }
    /* short signals and identity */
    {
        double x1 = 5, x3[3] = {1, 2, 3}, *y;
        int64_t ny;
        assert_int_equal(rf_resample_rows(&x1, 1, 1, 500, 128, NULL, &y, &ny, &e), RF_OK);
        assert_int_equal(ny, 1);
        assert_true(fabs(y[0] - 5) < 1e-12);
        free(y);
        assert_int_equal(rf_resample_rows(x3, 1, 3, 128, 128, NULL, &y, &ny, &e), RF_OK);
        assert_int_equal(ny, 3);
        assert_true(y[0] == 1 && y[1] == 2 && y[2] == 3);
        free(y);
        double xn[4] = {1, NAN, 2, 3};
        expect_err(rf_resample_rows(xn, 1, 4, 500, 128, NULL, &y, &ny, &e), &e, RF_ENONFINITE,
                   "sample 1", NULL, NULL);
        assert_null(y);
    }
}

static void test_windows(void **state) {
    (void)state;
    rf_err e;
    rf_windows w;
    assert_int_equal(rf_windows_fixed(1000, 100, 50, &w, &e), RF_OK);
    assert_int_equal(w.n, 19);
    assert_int_equal(w.dropped, 1);
    assert_int_equal(w.dropped_end, 1);
    for (int64_t k = 0; k < w.n; k++) assert_int_equal(w.start[k], 50 * k);
    rf_windows_free(&w);
    assert_int_equal(rf_windows_fixed(1000, 100, 100, &w, &e), RF_OK);
    assert_int_equal(w.n, 10);
    assert_int_equal(w.dropped, 0);
    rf_windows_free(&w);
    assert_int_equal(rf_windows_fixed(1050, 100, 100, &w, &e), RF_OK);
    assert_int_equal(w.n, 10);
    assert_int_equal(w.dropped, 1);
    rf_windows_free(&w);
    assert_int_equal(rf_windows_fixed(50, 100, 30, &w, &e), RF_OK);
    assert_int_equal(w.n, 0);
    assert_int_equal(w.dropped, 2);
    rf_windows_free(&w);

    /* sleep epochs: 30 s at 100 Hz in a 305 s recording; onsets 0, 30, ..., 300 */
    const double fs = 100;
    const int64_t n = 30500;
    double on[11];
    for (int i = 0; i < 11; i++) on[i] = 30.0 * i;
    assert_int_equal(rf_windows_at_onsets(n, fs, on, 11, 0, 30, &w, &e), RF_OK);
    assert_int_equal(w.len, 3000);
    assert_int_equal(w.n, 10);
    assert_int_equal(w.dropped_end, 1);
    assert_int_equal(w.dropped_start, 0);
    for (int64_t k = 0; k < w.n; k++) {
        assert_int_equal(w.start[k], 3000 * k);
        assert_int_equal(w.source[k], k);
    }
    /* extract: channel c, sample i has value 1e6 c + i */
    const int C = 3;
    double *x = xmalloc(sizeof(double) * C * n);
    for (int c = 0; c < C; c++)
        for (int64_t i = 0; i < n; i++) x[c * n + i] = 1e6 * c + i;
    double *out = xmalloc(sizeof(double) * w.n * C * w.len);
    float *out32 = xmalloc(sizeof(float) * w.n * C * w.len);
    assert_int_equal(rf_windows_extract(x, C, n, &w, out, &e), RF_OK);
    assert_int_equal(rf_windows_extract_f32(x, C, n, &w, out32, &e), RF_OK);
    for (int64_t k = 0; k < w.n; k++)
        for (int c = 0; c < C; c++)
            for (int64_t i = 0; i < w.len; i += 499) {
                double v = out[(k * C + c) * w.len + i];
                assert_true(v == 1e6 * c + w.start[k] + i);
                assert_true(out32[(k * C + c) * w.len + i] == (float)v);
            }
    rf_windows_free(&w);
    /* event-locked: pre 0.5 s, post 4 s; onsets near both ends are dropped */
    double ev[] = {0.2, 0.5, 10.0, 12.34, 300.4, 301.2, -3, 301.0};
    assert_int_equal(rf_windows_at_onsets(n, fs, ev, 8, 0.5, 4.0, &w, &e), RF_OK);
    assert_int_equal(w.len, 450);
    assert_int_equal(w.n, 5);
    assert_int_equal(w.dropped_start, 2);
    assert_int_equal(w.dropped_end, 1);
    assert_int_equal(w.dropped, 3);
    /* 301.0 s: the window ends exactly at the last sample and is kept */
    const int64_t want_start[] = {0, 950, 1184, 29990, 30050}, want_src[] = {1, 2, 3, 4, 7};
    for (int k = 0; k < 5; k++) {
        assert_int_equal(w.start[k], want_start[k]);
        assert_int_equal(w.source[k], want_src[k]);
    }
    /* a window list from another recording is rejected by extract */
    assert_int_equal(rf_windows_extract(x, C, 1000, &w, out, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "outside"));
    rf_windows_free(&w);
    expect_err(rf_windows_fixed(1000, 0, 10, &w, &e), &e, RF_EARG, "window length = 0", NULL,
               NULL);
    expect_err(rf_windows_fixed(1000, 10, -2, &w, &e), &e, RF_EARG, "hop = -2", NULL, NULL);
    expect_err(rf_windows_at_onsets(n, 0, on, 11, 0, 30, &w, &e), &e, RF_EARG, "fs = 0", NULL,
               NULL);
    double bad[] = {1, NAN};
    expect_err(rf_windows_at_onsets(n, fs, bad, 2, 0, 30, &w, &e), &e, RF_EARG, "onset 1", NULL,
               NULL);
    expect_err(rf_windows_at_onsets(n, fs, on, 11, 0, 0.001, &w, &e), &e, RF_EARG, "0 samples",
               NULL, NULL);
    free(x);
    free(out);
    free(out32);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_sorted_copy(const double *v, int64_t n) {
    double *t = xmalloc(sizeof(double) * n);
    memcpy(t, v, sizeof(double) * n);
    qsort(t, n, sizeof(double), cmp_d);
    double m = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    free(t);
    return m;
}

static void test_robust(void **state) {
    (void)state;
    rf_err e;
    /* a hand example: {1, 2, 3, 4, 100}: median 3, MAD 1 */
    double h[5] = {4, 100, 1, 3, 2};
    rf_robust_stats s;
    assert_int_equal(rf_robust_fit(h, 1, 5, 1e-6, &s, &e), RF_OK);
    assert_true(s.median[0] == 3);
    assert_true(fabs(s.scale[0] - 1.4826) < 1e-12);
    assert_int_equal(s.n_flat, 0);
    rf_robust_stats_free(&s);
    /* random channels with heavy-tailed outliers + one flat channel, even length */
    const int C = 4;
    const int64_t n = 2000;
    rf_rng r;
    rf_rng_seed(&r, 11);
    double *x = xmalloc(sizeof(double) * C * n);
    for (int c = 0; c < C; c++)
        for (int64_t i = 0; i < n; i++)
            x[c * n + i] = c == 2 ? 7.5
                                  : 10 * c + (c + 1) * rf_rng_normal(&r) +
                                        (i % 97 == 0 ? 1e4 : 0); /* spikes */
    assert_int_equal(rf_robust_fit(x, C, n, 1e-3, &s, &e), RF_OK);
    assert_int_equal(s.n_flat, 1);
    double *dev = xmalloc(sizeof(double) * n);
    for (int c = 0; c < C; c++) {
        double med = median_sorted_copy(x + c * n, n);
        for (int64_t i = 0; i < n; i++) dev[i] = fabs(x[c * n + i] - med);
        double mad = median_sorted_copy(dev, n);
        assert_true(fabs(s.median[c] - med) <= 1e-12 * fmax(1, fabs(med)));
        assert_int_equal(s.flat[c], c == 2);
        if (c == 2) assert_true(s.scale[c] == 1e-3);
        else {
            assert_true(fabs(s.scale[c] - 1.4826 * mad) < 1e-12 * s.scale[c]);
            /* the spikes do not inflate the scale: close to the true sd c + 1 */
            assert_true(fabs(s.scale[c] / (c + 1) - 1) < 0.1);
        }
    }
    assert_int_equal(rf_robust_apply(&s, x, C, n, &e), RF_OK);
    for (int c = 0; c < C; c++) {
        double med = median_sorted_copy(x + c * n, n);
        assert_true(fabs(med) < 1e-12);
        for (int64_t i = 0; i < n; i++) dev[i] = fabs(x[c * n + i]);
        double mad = median_sorted_copy(dev, n);
        if (c != 2) assert_true(fabs(mad * 1.4826 - 1) < 1e-12);
        else assert_true(mad == 0);
    }
    expect_err(rf_robust_apply(&s, x, 3, n, &e), &e, RF_EARG, "3 channels", "have 4", NULL);
    rf_robust_stats_free(&s);
    x[1 * n + 17] = NAN;
    expect_err(rf_robust_fit(x, C, n, 1e-3, &s, &e), &e, RF_ENONFINITE, "channel 1",
               "sample 17", NULL);
    expect_err(rf_robust_fit(h, 1, 5, 0, &s, &e), &e, RF_EARG, "min_scale = 0", NULL, NULL);
    free(dev);
    free(x);
}

static void test_reject(void **state) {
    (void)state;
    rf_err e;
    const int64_t nw = 50, L = 256;
    const int C = 4;
    rf_rng r;
    rf_rng_seed(&r, 5);
    double *w = xmalloc(sizeof(double) * nw * C * L);
    for (int64_t i = 0; i < nw * C * L; i++) w[i] = rf_rng_normal(&r);
    /* window 3, channel 1: a noise-free step -8 -> +8 (ptp 16, |z| 8);
     * window 17, channel 3: zeros with one spike of 12 (ptp 12, |z| 12);
     * window 30: a NaN; window 41, channel 2: a noise-free ramp -6.75 -> 6.75 (ptp 13.5, |z| 6.75).
     * Clean N(0, 1) windows have ptp ~ 6 and |z| < 5. */
    for (int64_t i = 0; i < L; i++) {
        w[(3 * C + 1) * L + i] = i < L / 2 ? -8 : 8;
        w[(17 * C + 3) * L + i] = i == 100 ? 12 : 0;
        w[(41 * C + 2) * L + i] = -6.75 + 13.5 * i / (L - 1);
    }
    w[(30 * C + 0) * L + 5] = NAN;
    unsigned char keep[50];
    rf_reject_counts c;
    rf_reject_opts o = {.max_ptp = 13, .max_absz = 10};
    assert_int_equal(rf_reject_windows(w, nw, C, L, &o, keep, &c, &e), RF_OK);
    printf("artefact rejection: total %lld kept %lld dropped %lld (ptp %lld, |z| %lld, "
           "non-finite %lld)\n",
           (long long)c.total, (long long)c.kept, (long long)c.dropped, (long long)c.dropped_ptp,
           (long long)c.dropped_absz, (long long)c.dropped_nonfinite);
    assert_int_equal(c.total, 50);
    assert_int_equal(c.dropped_nonfinite, 1);
    assert_int_equal(c.dropped_ptp, 2);  /* 3 and 41 */
    assert_int_equal(c.dropped_absz, 1); /* 17 */
    assert_int_equal(c.dropped, 4);
    assert_int_equal(c.kept, 46);
    for (int k = 0; k < nw; k++)
        assert_int_equal(keep[k], !(k == 3 || k == 17 || k == 30 || k == 41));
    /* |z| 7.5 as well: window 3 is over both thresholds and counts for both reasons */
    o.max_absz = 7.5;
    assert_int_equal(rf_reject_windows(w, nw, C, L, &o, keep, &c, &e), RF_OK);
    assert_int_equal(c.dropped_ptp, 2);
    assert_int_equal(c.dropped_absz, 2);
    assert_int_equal(c.dropped, 4);
    /* only |z| 7: windows 3 and 17 (the ramp of 41 stays below) */
    o.max_ptp = 0;
    o.max_absz = 7;
    assert_int_equal(rf_reject_windows(w, nw, C, L, &o, keep, &c, &e), RF_OK);
    assert_int_equal(c.dropped_ptp, 0);
    assert_int_equal(c.dropped_absz, 2);
    assert_int_equal(c.dropped, 3);
    assert_true(keep[41] && !keep[3] && !keep[17]);
    /* both off: only the NaN window goes */
    o.max_absz = 0;
    assert_int_equal(rf_reject_windows(w, nw, C, L, &o, keep, &c, &e), RF_OK);
    assert_int_equal(c.dropped, 1);
    assert_int_equal(keep[30], 0);
    o.max_ptp = NAN;
    expect_err(rf_reject_windows(w, nw, C, L, &o, keep, &c, &e), &e, RF_EARG, "max_ptp = nan",
               NULL, NULL);
    free(w);
}

static void test_welch_bands(void **state) {
    (void)state;
    rf_err e;
    const double fs = 128, A = 2, f0 = 12, sigma = 0.5;
    const int64_t n = 128 * 60, L = 256, nf = rf_welch_nfreq(L);
    assert_int_equal(nf, 129);
    rf_rng r;
    rf_rng_seed(&r, 9);
    double *x = xmalloc(sizeof(double) * n * 2);
    for (int64_t i = 0; i < n; i++) {
        x[i] = 5 + A * sin(2 * PI * f0 * i / fs) + sigma * rf_rng_normal(&r);
        x[n + i] = sigma * rf_rng_normal(&r); /* white noise only */
    }
    double *p = xmalloc(sizeof(double) * nf * 2);
    assert_int_equal(rf_welch_psd_rows(x, 2, n, fs, L, p, &e), RF_OK);
    const double df = fs / L;
    int64_t kmax = 0;
    for (int64_t k = 0; k < nf; k++)
        if (p[k] > p[kmax]) kmax = k;
    assert_int_equal(kmax, (int64_t)(f0 / df));
    /* Parseval, exactly: sum(psd) df equals the mean windowed power of the detrended segments */
    const int64_t step = L / 2, nseg = (n - L) / step + 1;
    double s2 = 0, ref = 0, tot = 0;
    for (int64_t i = 0; i < L; i++) s2 += pow(0.5 - 0.5 * cos(2 * PI * i / L), 2);
    for (int64_t s = 0; s < nseg; s++) {
        double mean = 0, acc = 0;
        for (int64_t i = 0; i < L; i++) mean += x[s * step + i];
        mean /= L;
        for (int64_t i = 0; i < L; i++) {
            double v = (x[s * step + i] - mean) * (0.5 - 0.5 * cos(2 * PI * i / L));
            acc += v * v;
        }
        ref += acc / s2;
    }
    ref /= nseg;
    for (int64_t k = 0; k < nf; k++) tot += p[k] * df;
    double tot_bp = rf_band_power(p, fs, L, 0, fs / 2);
    printf("Welch: peak at %.2f Hz, total power %.5f (Parseval reference %.5f, expected A^2/2 + "
           "sigma^2 = %.5f), band power [0, fs/2] %.5f\n",
           kmax * df, tot, ref, A * A / 2 + sigma * sigma, tot_bp);
    assert_true(fabs(tot - ref) < 1e-10 * ref);
    assert_true(fabs(tot_bp - tot) < 1e-12 * tot);
    assert_true(fabs(tot / (A * A / 2 + sigma * sigma) - 1) < 0.02);
    /* the sinusoid's power is in alpha (8-13 Hz): A^2/2 plus the noise share */
    double alpha = rf_band_power(p, fs, L, 8, 13), noise_share = sigma * sigma * 5 / (fs / 2);
    printf("alpha band power %.4f (expected %.4f)\n", alpha, A * A / 2 + noise_share);
    assert_true(fabs(alpha / (A * A / 2 + noise_share) - 1) < 0.02);
    /* adjacent bands add up */
    double d = rf_band_power(p, fs, L, 0.5, 4), t = rf_band_power(p, fs, L, 4, 8),
           dt = rf_band_power(p, fs, L, 0.5, 8);
    assert_true(fabs(d + t - dt) < 1e-12 * dt);
    /* white noise row: flat density sigma^2 / (fs / 2) */
    double flat = 0;
    for (int64_t k = 1; k < nf - 1; k++) flat += p[nf + k];
    flat /= (nf - 2);
    assert_true(fabs(flat / (sigma * sigma / (fs / 2)) - 1) < 0.03);
    /* band-power features: the 12 Hz row has most power in alpha and sigma */
    double feat[2 * RF_BAND_COUNT];
    assert_int_equal(rf_bandpower_features(x, 2, n, fs, L, 1, feat, &e), RF_OK);
    for (int b = 0; b < RF_BAND_COUNT; b++) {
        double lo, hi;
        rf_band_range((rf_band)b, &lo, &hi);
        double want = log10(rf_band_power(p, fs, L, lo, hi));
        assert_true(fabs(feat[b] - want) < 1e-9);
        assert_true(fabs(feat[RF_BAND_COUNT + b] -
                         log10(rf_band_power(p + nf, fs, L, lo, hi))) < 1e-9);
        if (b != RF_BAND_ALPHA && b != RF_BAND_SIGMA)
            assert_true(feat[b] < feat[RF_BAND_ALPHA] - 1);
    }
    assert_string_equal(rf_band_name(RF_BAND_SIGMA), "sigma");
    expect_err(rf_welch_psd(x, 100, fs, 256, p, &e), &e, RF_EARG, "100 samples", "256", NULL);
    expect_err(rf_welch_psd(x, n, -1, 256, p, &e), &e, RF_EARG, "fs = -1", NULL, NULL);
    x[7] = INFINITY;
    expect_err(rf_welch_psd(x, n, fs, 256, p, &e), &e, RF_ENONFINITE, "sample 7", NULL, NULL);
    free(x);
    free(p);
}

static void test_bad_filter_args(void **state) {
    (void)state;
    rf_err e;
    rf_sos s;
    expect_err(rf_butter(RF_FILTER_LOWPASS, 4, 130, 0, 250, &s, &e), &e, RF_EARG, "130 Hz",
               "fs/2 = 125 Hz", NULL);
    expect_err(rf_butter(RF_FILTER_HIGHPASS, 4, 0, 0, 250, &s, &e), &e, RF_EARG, "cutoff = 0 Hz",
               NULL, NULL);
    expect_err(rf_butter(RF_FILTER_BANDPASS, 4, 40, 10, 250, &s, &e), &e, RF_EARG, "f1 = 40 Hz",
               "f2 = 10 Hz", NULL);
    expect_err(rf_butter(RF_FILTER_BANDPASS, 4, 1, 125, 250, &s, &e), &e, RF_EARG,
               "f2 = 125 Hz", NULL, NULL);
    expect_err(rf_butter(RF_FILTER_BANDPASS, 11, 1, 40, 250, &s, &e), &e, RF_EARG, "order = 11",
               "1..10", NULL);
    expect_err(rf_butter(RF_FILTER_LOWPASS, 0, 10, 0, 250, &s, &e), &e, RF_EARG, "order = 0",
               NULL, NULL);
    expect_err(rf_butter(RF_FILTER_LOWPASS, 2, NAN, 0, 250, &s, &e), &e, RF_EARG, "nan", NULL,
               NULL);
    expect_err(rf_butter(RF_FILTER_LOWPASS, 2, 10, 0, -250, &s, &e), &e, RF_EARG, "fs = -250",
               NULL, NULL);
    expect_err(rf_notch(50, 0, 500, &s, &e), &e, RF_EARG, "Q = 0", NULL, NULL);
    expect_err(rf_notch(50, 30, 100, &s, &e), &e, RF_EARG, "50 Hz", "fs/2 = 50 Hz", NULL);
    expect_err(rf_notch(50, 0.1, 500, &s, &e), &e, RF_EARG, "f0/Q = 500 Hz", NULL, NULL);
    expect_err(rf_eeg_filter_design(250, 0, 0, 4, 0, 30, &s, &e), &e, RF_EARG, "all off", NULL,
               NULL);
    /* the stages: notch only, high-pass only, low-pass only, band-pass + notch */
    const double st[4][3] = {{0, 0, 50}, {0.5, 0, 0}, {0, 40, 0}, {0.5, 40, 50}};
    const int want_n[4] = {1, 2, 2, 5};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(rf_eeg_filter_design(250, st[i][0], st[i][1], 4, st[i][2], 30, &s, &e),
                         RF_OK);
        assert_int_equal(s.n, want_n[i]);
        assert_true(s.fs == 250);
        double fq[3] = {0, 50, 125}, mq[3];
        assert_int_equal(rf_filter_response(&s, fq, 3, mq, NULL, &e), RF_OK);
        assert_true(fabs(mq[0] - (st[i][0] > 0 ? 0 : 1)) < 1e-12);
        if (st[i][2] > 0) assert_true(mq[1] < 1e-9);
        rf_sos_free(&s);
    }
    expect_err(rf_eeg_filter_design(250, -1, 40, 4, 0, 30, &s, &e), &e, RF_EARG,
               "highpass = -1 Hz", NULL, NULL);
    expect_err(rf_eeg_filter_design(250, 0.5, 200, 4, 0, 30, &s, &e), &e, RF_EARG, "200 Hz",
               NULL, NULL);
    /* filtering: too short for an explicit padlen, non-finite samples */
    assert_int_equal(rf_butter(RF_FILTER_LOWPASS, 4, 30, 0, 250, &s, &e), RF_OK);
    double x[10] = {0};
    expect_err(rf_sosfiltfilt(&s, x, 10, 27, RF_PAD_AUTO, &e), &e, RF_EARG, "10 samples",
               "padlen = 27", NULL);
    /* default padlen shrinks for short signals; a single sample is filtered to itself */
    for (int i = 0; i < 10; i++) x[i] = 1;
    assert_int_equal(rf_sosfiltfilt(&s, x, 10, -1, RF_PAD_AUTO, &e), RF_OK);
    for (int i = 0; i < 10; i++) assert_true(fabs(x[i] - 1) < 1e-9);
    assert_int_equal(rf_sosfiltfilt(&s, x, 1, -1, RF_PAD_ODD, &e), RF_OK);
    assert_true(fabs(x[0] - 1) < 1e-12);
    x[4] = NAN;
    expect_err(rf_sosfiltfilt(&s, x, 10, -1, RF_PAD_AUTO, &e), &e, RF_ENONFINITE, "sample 4",
               NULL, NULL);
    expect_err(rf_sosfiltfilt(&s, x, 10, -1, (rf_padtype)7, &e), &e, RF_EARG, "pad type 7", NULL,
               NULL);
    double f[2] = {10, 200}, m[2];
    expect_err(rf_filter_response(&s, f, 2, m, NULL, &e), &e, RF_EARG, "200 Hz", NULL, NULL);
    rf_sos n;
    assert_int_equal(rf_notch(50, 30, 500, &n, &e), RF_OK);
    expect_err(rf_sos_append(&s, &n, &e), &e, RF_EARG, "250 Hz", "500 Hz", NULL);
    rf_sos_free(&n);
    rf_sos_free(&s);
}

/* Real EEG (eegmat Subject00_1: 180 s rest, 500 Hz): O1, O2, Fz. The PSD ratio filtered / raw
 * follows |H|^4 of the zero-phase band-pass; resampling to 128 Hz keeps the spectrum; windows,
 * robust standardisation and rejection run on it. Skips without ../shared/data (fails in CI). */
static void test_real_eegmat_chain(void **state) {
    (void)state;
    const char *dir = rf_test_data_dir();
    if (!dir) {
        skip();
        return;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/eegmat/Subject00_1.edf", dir);
    struct edf_hdr_struct *h = calloc(1, sizeof *h);
    assert_non_null(h);
    if (edfopen_file_readonly(path, h, EDFLIB_DO_NOT_READ_ANNOTATIONS))
        fail_msg("cannot open %s (EDFlib file type %d)", path, h->filetype);
    const char *want[3] = {"EEG O1", "EEG O2", "EEG Fz"};
    int idx[3] = {-1, -1, -1};
    for (int i = 0; i < h->edfsignals; i++)
        for (int k = 0; k < 3; k++)
            if (strncmp(h->signalparam[i].label, want[k], strlen(want[k])) == 0 &&
                h->signalparam[i].label[strlen(want[k])] == ' ')
                idx[k] = i;
    const int C = 3;
    const int64_t n = h->signalparam[idx[0]].smp_in_file;
    assert_true(idx[0] >= 0 && idx[1] >= 0 && idx[2] >= 0);
    assert_int_equal(h->signalparam[idx[0]].smp_in_datarecord, 500);
    assert_true(n >= 60 * 500);
    double *x = xmalloc(sizeof(double) * C * n), *y = xmalloc(sizeof(double) * C * n);
    for (int k = 0; k < C; k++) {
        assert_int_equal(edfseek(h->handle, idx[k], 0, EDFSEEK_SET), 0);
        assert_int_equal(edfread_physical_samples(h->handle, idx[k], (int)n, x + k * n), (int)n);
    }
    edfclose_file(h->handle);
    free(h);
    rf_err e;
    rf_sos s;
    assert_int_equal(rf_eeg_filter_design(500, 0.5, 45, 4, 50, 30, &s, &e), RF_OK);
    memcpy(y, x, sizeof(double) * C * n);
    assert_int_equal(rf_sosfiltfilt_rows(&s, y, C, n, -1, RF_PAD_AUTO, &e), RF_OK);
    const int64_t L5 = 1000, nf5 = rf_welch_nfreq(L5), L1 = 256, nf1 = rf_welch_nfreq(L1);
    double *p0 = xmalloc(sizeof(double) * C * nf5), *p1 = xmalloc(sizeof(double) * C * nf5);
    assert_int_equal(rf_welch_psd_rows(x, C, n, 500, L5, p0, &e), RF_OK);
    assert_int_equal(rf_welch_psd_rows(y, C, n, 500, L5, p1, &e), RF_OK);
    double worst_h = 0, worst_r = 0;
    for (int64_t k = 4; k <= 80; k++) { /* 2..40 Hz */
        double f = k * 0.5, m;
        assert_int_equal(rf_filter_response(&s, &f, 1, &m, NULL, &e), RF_OK);
        for (int c = 0; c < C; c++)
            worst_h = fmax(worst_h,
                           fabs(10 * log10(p1[c * nf5 + k] / p0[c * nf5 + k]) - 40 * log10(m)));
    }
    /* resample the filtered signal to 128 Hz: the PSD (same 0.5 Hz resolution) is unchanged */
    double *z;
    int64_t nz;
    assert_int_equal(rf_resample_rows(y, C, n, 500, 128, NULL, &z, &nz, &e), RF_OK);
    assert_int_equal(nz, rf_resample_len(n, 32, 125));
    double *q = xmalloc(sizeof(double) * C * nf1);
    assert_int_equal(rf_welch_psd_rows(z, C, nz, 128, L1, q, &e), RF_OK);
    for (int64_t k = 4; k <= 80; k++)
        for (int c = 0; c < C; c++)
            worst_r = fmax(worst_r, fabs(10 * log10(q[c * nf1 + k] / p1[c * nf5 + k])));
    /* robust standardisation, 4 s windows, rejection at |z| > 20 */
    rf_robust_stats st;
    assert_int_equal(rf_robust_fit(z, C, nz, 0.1, &st, &e), RF_OK);
    assert_int_equal(st.n_flat, 0);
    assert_int_equal(rf_robust_apply(&st, z, C, nz, &e), RF_OK);
    rf_windows w;
    assert_int_equal(rf_windows_fixed(nz, 4 * 128, 4 * 128, &w, &e), RF_OK);
    double *win = xmalloc(sizeof(double) * w.n * C * w.len);
    assert_int_equal(rf_windows_extract(z, C, nz, &w, win, &e), RF_OK);
    unsigned char *keep = xmalloc(w.n);
    rf_reject_counts rc;
    rf_reject_opts ro = {.max_ptp = 0, .max_absz = 20};
    assert_int_equal(rf_reject_windows(win, w.n, C, w.len, &ro, keep, &rc, &e), RF_OK);
    double feat[3 * RF_BAND_COUNT];
    assert_int_equal(rf_bandpower_features(win, C, w.len, 128, 256, 1, feat, &e), RF_OK);
    printf("eegmat Subject00_1 (O1, O2, Fz; %lld samples): PSD ratio vs |H|^4 at 2-40 Hz max "
           "%.3f dB; 500 -> 128 Hz PSD change max %.3f dB; robust scale %.1f %.1f %.1f uV; %lld "
           "windows of 4 s (%lld past the end), %lld rejected; first window O1 log10 band power:",
           (long long)n, worst_h, worst_r, st.scale[0], st.scale[1], st.scale[2], (long long)w.n,
           (long long)w.dropped, (long long)rc.dropped);
    for (int b = 0; b < RF_BAND_COUNT; b++) printf(" %s %.2f", rf_band_name((rf_band)b), feat[b]);
    printf("\n");
    assert_true(worst_h < 0.05);
    assert_true(worst_r < 0.05);
    assert_int_equal(w.n, nz / 512);
    assert_true(rc.kept >= w.n * 9 / 10);
    rf_windows_free(&w);
    rf_robust_stats_free(&st);
    rf_sos_free(&s);
    free(x);
    free(y);
    free(z);
    free(p0);
    free(p1);
    free(q);
    free(win);
    free(keep);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_butter_design),
        cmocka_unit_test(test_bandpass_eeg),
        cmocka_unit_test(test_notch),
        cmocka_unit_test(test_filtfilt_zero_phase),
        cmocka_unit_test(test_filtfilt_edges),
        cmocka_unit_test(test_filter_state_and_rows),
        cmocka_unit_test(test_empirical_response),
        cmocka_unit_test(test_resample_factors),
        cmocka_unit_test(test_resample_signals),
        cmocka_unit_test(test_windows),
        cmocka_unit_test(test_robust),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_welch_bands),
        cmocka_unit_test(test_bad_filter_args),
        cmocka_unit_test(test_real_eegmat_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
