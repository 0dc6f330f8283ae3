/* EEG simulator (renflow/eegsim.h): argument checks, determinism, spectral ground truth per sleep
 * stage (alpha, sigma, delta, REM amplitude, eye movements, slow-wave coverage), per-subject
 * ground truth (alpha peak frequency, subject effects), the arithmetic task effect, separability
 * of the classes across subjects with a logistic regression on log band powers (and chance level
 * with shuffled labels or no effect), artefacts, the hypnogram chain, rates and channel layouts,
 * and the data-set export. Spectra use a Hann periodogram written here with FFTW. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <fftw3.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "renflow/dataset.h"
#include "renflow/eegsim.h"

/* ---------- helpers ---------- */

static __attribute__((noinline)) void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static void expect_fail(int rc, const rf_err *e, int code, const char *sub1, const char *sub2) {
    if (rc != code)
        fail_msg("expected %s, got rc=%d (%s): %s", rf_status_name(code), rc, rf_status_name(rc), e->msg);
    if (sub1 && !strstr(e->msg, sub1)) fail_msg("error message \"%s\" lacks \"%s\"", e->msg, sub1);
    if (sub2 && !strstr(e->msg, sub2)) fail_msg("error message \"%s\" lacks \"%s\"", e->msg, sub2);
    printf("  rejected as expected: %s\n", e->msg);
}

/* Every simulation seed is shifted by SEED_OFF (compile with -DSEED_OFF=k to rerun the checks on
 * other draws). */
#ifndef SEED_OFF
#define SEED_OFF 0
#endif

static void gen(const rf_eegsim_config *c, int subjects, int per_class, uint64_t seed, rf_eegsim_data *d) {
    rf_rng r;
    rf_rng_seed(&r, seed + SEED_OFF);
    rf_err e;
    double t0 = rf_now();
    if (rf_eegsim_generate(c, subjects, per_class, &r, d, &e)) fail_msg("generate: %s", e.msg);
    printf("  generated %d windows of %d x %d (%s) in %.2f s\n", d->n, d->channels, d->T,
           rf_eegsim_mode_name(c->mode), rf_now() - t0);
}

/* Hann-windowed periodogram (one-sided PSD, uV^2/Hz, bins k = 0..T/2 at k * fs / T). */
typedef struct {
    int T;
    double fs, wsum2;
    double *in, *w;
    fftw_complex *out;
    fftw_plan plan;
} pgram;

static void pgram_init(pgram *p, int T, double fs) {
    p->T = T;
    p->fs = fs;
    p->in = fftw_malloc(sizeof(double) * T);
    p->w = malloc(sizeof(double) * T);
    p->out = fftw_malloc(sizeof(fftw_complex) * (T / 2 + 1));
    assert_non_null(p->in);
    assert_non_null(p->w);
    assert_non_null(p->out);
    p->plan = fftw_plan_dft_r2c_1d(T, p->in, p->out, FFTW_ESTIMATE);
    p->wsum2 = 0;
    for (int t = 0; t < T; t++) {
        p->w[t] = 0.5 - 0.5 * cos(2 * M_PI * t / T);
        p->wsum2 += p->w[t] * p->w[t];
    }
}

static void pgram_free(pgram *p) {
    fftw_destroy_plan(p->plan);
    fftw_free(p->in);
    fftw_free(p->out);
    free(p->w);
}

static void pgram_run(pgram *p, const float *x, double *P) {
    double mean = 0;
    for (int t = 0; t < p->T; t++) mean += x[t];
    mean /= p->T;
    for (int t = 0; t < p->T; t++) p->in[t] = (x[t] - mean) * p->w[t];
    fftw_execute(p->plan);
    for (int k = 0; k <= p->T / 2; k++) {
        const double m2 = p->out[k][0] * p->out[k][0] + p->out[k][1] * p->out[k][1];
        P[k] = m2 / (p->fs * p->wsum2) * ((k == 0 || 2 * k == p->T) ? 1 : 2);
    }
}

/* Power in [lo, hi) Hz. */
static double band(const pgram *p, const double *P, double lo, double hi) {
    const double df = p->fs / p->T;
    double s = 0;
    for (int k = 0; k <= p->T / 2; k++) {
        const double f = k * df;
        if (f >= lo && f < hi) s += P[k] * df;
    }
    return s;
}

/* Mean PSD per class and channel: mp[(k * C + c) * K + bin]. */
static double *class_mean_psd(const rf_eegsim_data *d, pgram *p) {
    const int nb = d->T / 2 + 1, C = d->channels;
    double *mp = calloc((size_t)d->n_classes * C * nb, sizeof(double)), *P = malloc(sizeof(double) * nb);
    int cnt[RF_EEGSIM_MAX_CLASSES] = {0};
    for (int i = 0; i < d->n; i++) {
        cnt[d->labels[i]]++;
        for (int c = 0; c < C; c++) {
            pgram_run(p, d->x + ((size_t)i * C + c) * d->T, P);
            double *m = mp + ((size_t)d->labels[i] * C + c) * nb;
            for (int k = 0; k < nb; k++) m[k] += P[k];
        }
    }
    for (int k = 0; k < d->n_classes; k++)
        for (size_t j = 0; j < (size_t)C * nb; j++) mp[(size_t)k * C * nb + j] /= cnt[k] ? cnt[k] : 1;
    free(P);
    return mp;
}

static const double *cpsd(const double *mp, const rf_eegsim_data *d, int cls, int ch) {
    return mp + ((size_t)cls * d->channels + ch) * (d->T / 2 + 1);
}

/* ---------- log band-power features and a multinomial logistic regression ---------- */

#define NBANDS 7
static const double BANDS[NBANDS][2] = {{0.5, 2}, {2, 4}, {4, 8}, {8, 12}, {12, 15}, {15, 30}, {30, 45}};

/* n x (C * NBANDS) features; bands above Nyquist are skipped (set to 0). */
static double *features(const rf_eegsim_data *d, int *nf) {
    pgram p;
    pgram_init(&p, d->T, d->rate);
    const int F = d->channels * NBANDS;
    double *X = calloc((size_t)d->n * F, sizeof(double)), *P = malloc(sizeof(double) * (d->T / 2 + 1));
    for (int i = 0; i < d->n; i++)
        for (int c = 0; c < d->channels; c++) {
            pgram_run(&p, d->x + ((size_t)i * d->channels + c) * d->T, P);
            for (int b = 0; b < NBANDS; b++)
                if (BANDS[b][1] <= d->rate / 2) X[(size_t)i * F + c * NBANDS + b] = log(band(&p, P, BANDS[b][0], BANDS[b][1]) + 1e-6);
        }
    free(P);
    pgram_free(&p);
    *nf = F;
    return X;
}

/* Subtracts each subject's feature mean (label-free normalisation). */
static void center_by_subject(double *X, const int *subj, int n, int F) {
    int ns = 0;
    for (int i = 0; i < n; i++) ns = subj[i] + 1 > ns ? subj[i] + 1 : ns;
    double *m = calloc((size_t)ns * F, sizeof(double));
    int *cnt = calloc((size_t)ns, sizeof(int));
    for (int i = 0; i < n; i++) {
        cnt[subj[i]]++;
        for (int f = 0; f < F; f++) m[(size_t)subj[i] * F + f] += X[(size_t)i * F + f];
    }
    for (int i = 0; i < n; i++)
        for (int f = 0; f < F; f++) X[(size_t)i * F + f] -= m[(size_t)subj[i] * F + f] / cnt[subj[i]];
    free(m);
    free(cnt);
}

/* Trains softmax regression (standardised on the training rows, L2 1e-3, 400 full-batch gradient
 * steps) on rows with train[i] = 1 using labels y, and returns the balanced accuracy on the others. */
static double logreg_bal_acc(const double *X, const int *y, const unsigned char *train, int n, int F, int K) {
    double *mu = calloc(F, sizeof(double)), *sd = calloc(F, sizeof(double));
    int ntr = 0;
    for (int i = 0; i < n; i++)
        if (train[i]) {
            ntr++;
            for (int f = 0; f < F; f++) mu[f] += X[(size_t)i * F + f];
        }
    for (int f = 0; f < F; f++) mu[f] /= ntr;
    for (int i = 0; i < n; i++)
        if (train[i])
            for (int f = 0; f < F; f++) sd[f] += pow(X[(size_t)i * F + f] - mu[f], 2);
    for (int f = 0; f < F; f++) sd[f] = sqrt(sd[f] / ntr) + 1e-9;
    const int D = F + 1;
    double *Z = malloc(sizeof(double) * (size_t)n * D), *Wt = calloc((size_t)K * D, sizeof(double));
    double *G = malloc(sizeof(double) * K * D), pr[RF_EEGSIM_MAX_CLASSES];
    for (int i = 0; i < n; i++) {
        for (int f = 0; f < F; f++) Z[(size_t)i * D + f] = (X[(size_t)i * F + f] - mu[f]) / sd[f];
        Z[(size_t)i * D + F] = 1;
    }
    for (int it = 0; it < 400; it++) {
        for (int j = 0; j < K * D; j++) G[j] = 1e-3 * Wt[j];
        for (int i = 0; i < n; i++) {
            if (!train[i]) continue;
            const double *z = Z + (size_t)i * D;
            double mx = -1e300, s = 0;
            for (int k = 0; k < K; k++) {
                pr[k] = 0;
                for (int j = 0; j < D; j++) pr[k] += Wt[k * D + j] * z[j];
                mx = fmax(mx, pr[k]);
            }
            for (int k = 0; k < K; k++) s += (pr[k] = exp(pr[k] - mx));
            for (int k = 0; k < K; k++) {
                const double g = (pr[k] / s - (y[i] == k)) / ntr;
                for (int j = 0; j < D; j++) G[k * D + j] += g * z[j];
            }
        }
        for (int j = 0; j < K * D; j++) Wt[j] -= 0.5 * G[j];
    }
    long hit[RF_EEGSIM_MAX_CLASSES] = {0}, tot[RF_EEGSIM_MAX_CLASSES] = {0};
    for (int i = 0; i < n; i++) {
        if (train[i]) continue;
        int best = 0;
        double bv = -1e300;
        for (int k = 0; k < K; k++) {
            double v = 0;
            for (int j = 0; j < D; j++) v += Wt[k * D + j] * Z[(size_t)i * D + j];
            if (v > bv) bv = v, best = k;
        }
        tot[y[i]]++;
        hit[y[i]] += best == y[i];
    }
    double ba = 0;
    int nk = 0;
    for (int k = 0; k < K; k++)
        if (tot[k]) ba += (double)hit[k] / tot[k], nk++;
    free(mu);
    free(sd);
    free(Z);
    free(Wt);
    free(G);
    return ba / nk;
}

/* Two-fold cross-validation over subjects (the lower half of the subject ids, then the upper half,
 * held out); returns the mean balanced accuracy. With shuffle != NULL the training labels are
 * permuted among the training rows of each fold (the test rows keep their true labels). */
static double cv2_bal_acc(const double *X, const int *y, const int *subj, int n, int F, int K, int S,
                          rf_rng *shuffle) {
    unsigned char *train = xmalloc((size_t)n);
    int *yy = xmalloc(sizeof(int) * (size_t)n), *idx = xmalloc(sizeof(int) * (size_t)n), *lab = xmalloc(sizeof(int) * (size_t)n);
    double acc = 0;
    for (int fold = 0; fold < 2; fold++) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            train[i] = (subj[i] < S / 2) == (fold == 1);
            yy[i] = y[i];
            if (train[i]) idx[m] = i, lab[m++] = y[i];
        }
        if (shuffle) {
            rf_rng_shuffle(shuffle, lab, m);
            for (int j = 0; j < m; j++) yy[idx[j]] = lab[j];
        }
        acc += logreg_bal_acc(X, yy, train, n, F, K) / 2;
    }
    free(train);
    free(yy);
    free(idx);
    free(lab);
    return acc;
}

/* ---------- tests ---------- */

static void test_config_and_args(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_err e;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    assert_int_equal(c.channels, 2);
    assert_true(c.rate == 100 && c.window_s == 30);
    assert_int_equal(rf_eegsim_config_check(&c, &e), RF_OK);
    rf_eegsim_config_default(&c, RF_EEGSIM_ARITHMETIC);
    assert_int_equal(c.channels, 19);
    assert_true(c.rate == 128 && c.window_s == 4);
    assert_int_equal(rf_eegsim_config_check(&c, &e), RF_OK);

    rf_eegsim_data d;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    gen(&c, 1, 1, 1, &d);
    assert_int_equal(d.n, 5);
    assert_int_equal(d.T, 3000);
    assert_int_equal(d.n_classes, 5);
    assert_string_equal(d.class_names[RF_EEGSIM_W], "W");
    assert_string_equal(d.class_names[RF_EEGSIM_REM], "REM");
    assert_string_equal(d.channel_names[0], "Fpz-Cz");
    assert_string_equal(d.channel_names[1], "Pz-Oz");
    int seen[5] = {0};
    for (int i = 0; i < 5; i++) seen[d.labels[i]]++;
    for (int k = 0; k < 5; k++) assert_int_equal(seen[k], 1);
    assert_true(rf_all_finite(d.x, (size_t)d.n * d.channels * d.T));
    rf_eegsim_free(&d);
    rf_eegsim_free(&d); /* idempotent */

    rf_eegsim_mode m;
    assert_int_equal(rf_eegsim_mode_parse("arithmetic", &m, &e), RF_OK);
    assert_int_equal(m, RF_EEGSIM_ARITHMETIC);
    expect_fail(rf_eegsim_mode_parse("banana", &m, &e), &e, RF_EARG, "banana", "sleep");

    rf_rng r;
    rf_rng_seed(&r, 1);
    /* one edit per case, on a fresh default config */
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.channels = 0;
    expect_fail(rf_eegsim_generate(&c, 2, 2, &r, &d, &e), &e, RF_EARG, "channels", "value 0");
    assert_null(d.x);
    rf_eegsim_free(&d);
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.channels = 20;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "channels", "value 20");
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.rate = 20;
    expect_fail(rf_eegsim_generate(&c, 2, 2, &r, &d, &e), &e, RF_EARG, "rate", "spindles");
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "value 20 Hz", "32");
    c.rate = NAN;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "rate", "nan");
    c.rate = -100;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "rate", "-100");
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.window_s = -1;
    expect_fail(rf_eegsim_generate(&c, 2, 2, &r, &d, &e), &e, RF_EARG, "window_s", "value -1 s");
    c.window_s = 1;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "window_s", "value 1 s");
    c.window_s = 3600;
    c.rate = 1000;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "3600000 samples", "limit");
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.artifact_rate = -0.5;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "artifact_rate", "-0.5");
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.eyes_open_frac = 1.5;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "eyes_open_frac", "1.5");
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.noise_uv = INFINITY;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "noise_uv", "inf");
    rf_eegsim_config_default(&c, RF_EEGSIM_ARITHMETIC);
    c.hypnogram = 1;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "hypnogram", "arithmetic");
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.mode = (rf_eegsim_mode)7;
    expect_fail(rf_eegsim_config_check(&c, &e), &e, RF_EARG, "mode", "7");
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    expect_fail(rf_eegsim_generate(&c, 0, 2, &r, &d, &e), &e, RF_EARG, "n_subjects", "value 0");
    expect_fail(rf_eegsim_generate(&c, 2, -3, &r, &d, &e), &e, RF_EARG, "windows_per_class", "-3");
    expect_fail(rf_eegsim_generate(&c, 100000, 100000, &r, &d, &e), &e, RF_EARG, "limit", "GiB");
    expect_fail(rf_eegsim_generate(&c, 2, 2, NULL, &d, &e), &e, RF_EARG, "random", NULL);
    expect_fail(rf_eegsim_generate(NULL, 2, 2, &r, &d, &e), &e, RF_EARG, "config", NULL);
    rf_eegsim_free(&d);
}

static void test_determinism(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.window_s = 10;
    c.artifact_rate = 6;
    rf_eegsim_data a, b, o, p;
    gen(&c, 3, 2, 42, &a);
    gen(&c, 3, 2, 42, &b);
    const size_t nx = (size_t)a.n * a.channels * a.T;
    assert_int_equal(a.n, b.n);
    assert_memory_equal(a.x, b.x, nx * sizeof(float));
    assert_memory_equal(a.labels, b.labels, a.n * sizeof(int));
    assert_memory_equal(a.subjects, b.subjects, a.n * sizeof(int));
    assert_memory_equal(a.artifacts, b.artifacts, a.n * sizeof(unsigned));
    assert_memory_equal(a.subject_params, b.subject_params, a.n_subjects * sizeof(rf_eegsim_subject));
    /* a different seed: different signals everywhere */
    gen(&c, 3, 2, 43, &o);
    size_t diff = 0;
    for (size_t i = 0; i < nx; i++) diff += a.x[i] != o.x[i];
    printf("  seed 42 vs 43: %.4f of the values differ\n", (double)diff / nx);
    assert_true(diff > 0.99 * nx);
    assert_true(a.subject_params[0].alpha_hz != o.subject_params[0].alpha_hz);
    /* one child stream per subject: the first two subjects do not depend on how many follow */
    gen(&c, 2, 2, 42, &p);
    assert_memory_equal(a.x, p.x, (size_t)p.n * p.channels * p.T * sizeof(float));
    assert_memory_equal(a.labels, p.labels, p.n * sizeof(int));
    /* the same output with 1 and 3 threads (one child stream per window) */
    const int prev = rf_get_threads();
    rf_eegsim_free(&b);
    rf_set_threads(1);
    gen(&c, 3, 2, 42, &b);
    assert_memory_equal(a.x, b.x, nx * sizeof(float));
    rf_eegsim_free(&b);
    rf_set_threads(3);
    gen(&c, 3, 2, 42, &b);
    assert_memory_equal(a.x, b.x, nx * sizeof(float));
    assert_memory_equal(a.artifacts, b.artifacts, a.n * sizeof(unsigned));
    rf_set_threads(prev);
    rf_eegsim_free(&a);
    rf_eegsim_free(&b);
    rf_eegsim_free(&o);
    rf_eegsim_free(&p);
}

/* Fraction of the window covered by slow waves on one channel: the signal band-passed 0.3-2.5 Hz
 * (FFT mask), waves between successive negative-going zero crossings with a period of 0.4-2.5 s and
 * a peak-to-peak amplitude >= 75 uV (the AASM N3 criterion uses 0.5-2 Hz, > 75 uV, > 20 %). */
static double slow_wave_cover(const float *x, int T, double fs) {
    double *in = fftw_malloc(sizeof(double) * T);
    fftw_complex *sp = fftw_malloc(sizeof(fftw_complex) * (T / 2 + 1));
    fftw_plan f = fftw_plan_dft_r2c_1d(T, in, sp, FFTW_ESTIMATE), b = fftw_plan_dft_c2r_1d(T, sp, in, FFTW_ESTIMATE);
    for (int t = 0; t < T; t++) in[t] = x[t];
    fftw_execute(f);
    for (int k = 0; k <= T / 2; k++) {
        const double fk = k * fs / T;
        if (fk < 0.3 || fk > 2.5) sp[k][0] = sp[k][1] = 0;
    }
    fftw_execute(b);
    for (int t = 0; t < T; t++) in[t] /= T;
    double covered = 0;
    int last = -1;
    for (int t = 1; t < T; t++) {
        if (!(in[t - 1] >= 0 && in[t] < 0)) continue;
        if (last >= 0) {
            const double per = (t - last) / fs;
            double mn = 1e300, mx = -1e300;
            for (int u = last; u < t; u++) mn = fmin(mn, in[u]), mx = fmax(mx, in[u]);
            if (per >= 0.4 && per <= 2.5 && mx - mn >= 75) covered += per;
        }
        last = t;
    }
    fftw_destroy_plan(f);
    fftw_destroy_plan(b);
    fftw_free(in);
    fftw_free(sp);
    return covered / (T / fs);
}

/* One-way ICC(1) over subjects of the log broadband (0.5-30 Hz) power of one channel, after
 * removing the class means (balanced design: every subject has k windows). */
static double icc_log_power(const rf_eegsim_data *d, int ch) {
    pgram p;
    pgram_init(&p, d->T, d->rate);
    const int S = d->n_subjects, n = d->n, k = n / S;
    double *P = malloc(sizeof(double) * (d->T / 2 + 1)), *sm = calloc(S, sizeof(double));
    double *v = malloc(sizeof(double) * (size_t)n), cm[RF_EEGSIM_MAX_CLASSES] = {0};
    int cc[RF_EEGSIM_MAX_CLASSES] = {0};
    for (int i = 0; i < n; i++) {
        pgram_run(&p, d->x + ((size_t)i * d->channels + ch) * d->T, P);
        v[i] = log(band(&p, P, 0.5, 30));
        cm[d->labels[i]] += v[i];
        cc[d->labels[i]]++;
    }
    for (int i = 0; i < n; i++) {
        v[i] -= cm[d->labels[i]] / cc[d->labels[i]];
        sm[d->subjects[i]] += v[i] / k;
    }
    double msb = 0, msw = 0; /* the grand mean is 0 after centring */
    for (int s = 0; s < S; s++) msb += k * sm[s] * sm[s];
    for (int i = 0; i < n; i++) msw += pow(v[i] - sm[d->subjects[i]], 2);
    msb /= S - 1;
    msw /= n - S - d->n_classes + 1;
    free(P);
    free(sm);
    free(v);
    pgram_free(&p);
    return (msb - msw) / (msb + (k - 1) * msw);
}

static void test_sleep_spectra(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.artifact_rate = 0;
    rf_eegsim_data d;
    gen(&c, 8, 6, 2024, &d);
    for (int i = 0; i < d.n; i++) assert_int_equal(d.artifacts[i], 0);
    pgram p;
    pgram_init(&p, d.T, d.rate);
    double *mp = class_mean_psd(&d, &p);
    enum { FRONT = 0, BACK = 1 };
    double alpha[5][2], delta[5][2], sigma[5][2], theta_rel[5][2], total[5][2], low[5][2];
    for (int k = 0; k < 5; k++)
        for (int ch = 0; ch < 2; ch++) {
            const double *P = cpsd(mp, &d, k, ch);
            alpha[k][ch] = band(&p, P, 8, 12);
            delta[k][ch] = band(&p, P, 0.5, 2);
            sigma[k][ch] = band(&p, P, 12, 15);
            total[k][ch] = band(&p, P, 0.5, 30);
            theta_rel[k][ch] = band(&p, P, 4, 8) / total[k][ch];
            low[k][ch] = band(&p, P, 0.3, 2);
        }
    printf("  class  alpha(F,B)     delta(F,B)       sigma12-15(F,B) theta_rel(F,B)  rms(F,B) uV\n");
    for (int k = 0; k < 5; k++)
        printf("  %-4s %6.1f %6.1f  %7.1f %7.1f  %6.2f %6.2f  %5.3f %5.3f  %5.1f %5.1f\n", d.class_names[k],
               alpha[k][0], alpha[k][1], delta[k][0], delta[k][1], sigma[k][0], sigma[k][1], theta_rel[k][0],
               theta_rel[k][1], sqrt(total[k][0]), sqrt(total[k][1]));
    /* W: a posterior alpha peak */
    const double *Pw = cpsd(mp, &d, RF_EEGSIM_W, BACK), df = d.rate / d.T;
    int kmax = -1;
    for (int k = (int)(2 / df); k <= (int)(20 / df); k++)
        if (kmax < 0 || Pw[k] > Pw[kmax]) kmax = k;
    printf("  W posterior PSD maximum in 2-20 Hz at %.2f Hz\n", kmax * df);
    assert_true(kmax * df >= 8 && kmax * df <= 12);
    for (int k = 1; k < 5; k++) assert_true(alpha[RF_EEGSIM_W][BACK] > 2 * alpha[k][BACK]);
    assert_true(alpha[RF_EEGSIM_W][BACK] > 2 * alpha[RF_EEGSIM_W][FRONT]); /* topography */
    /* N3: the most delta power, on both channels */
    for (int k = 0; k < 5; k++)
        if (k != RF_EEGSIM_N3)
            for (int ch = 0; ch < 2; ch++) assert_true(delta[RF_EEGSIM_N3][ch] > 2 * delta[k][ch]);
    /* N2: more sigma (12-15 Hz, spindle) power than N1 and REM; posteriorly a fast alpha of N1 can
     * reach 12 Hz, so the margin there is smaller */
    for (int ch = 0; ch < 2; ch++) {
        const double m = ch == FRONT ? 1.5 : 1.2;
        assert_true(sigma[RF_EEGSIM_N2][ch] > m * sigma[RF_EEGSIM_N1][ch]);
        assert_true(sigma[RF_EEGSIM_N2][ch] > m * sigma[RF_EEGSIM_REM][ch]);
    }
    /* N1 and REM: relatively more theta than W */
    assert_true(theta_rel[RF_EEGSIM_N1][BACK] > 1.3 * theta_rel[RF_EEGSIM_W][BACK]);
    assert_true(theta_rel[RF_EEGSIM_REM][BACK] > 1.3 * theta_rel[RF_EEGSIM_W][BACK]);
    /* REM: the lowest posterior amplitude; eye movements make the frontal/posterior low-frequency
     * ratio much larger than in N1 (no rapid eye movements) and W (blinks only with eyes open) */
    for (int k = 0; k < 5; k++)
        if (k != RF_EEGSIM_REM) assert_true(total[RF_EEGSIM_REM][BACK] < total[k][BACK]);
    const double eye_rem = low[RF_EEGSIM_REM][FRONT] / low[RF_EEGSIM_REM][BACK];
    const double eye_n1 = low[RF_EEGSIM_N1][FRONT] / low[RF_EEGSIM_N1][BACK];
    const double eye_w = low[RF_EEGSIM_W][FRONT] / low[RF_EEGSIM_W][BACK];
    printf("  frontal/posterior 0.3-2 Hz power: REM %.2f, N1 %.2f, W %.2f\n", eye_rem, eye_n1, eye_w);
    assert_true(eye_rem > 3);
    assert_true(eye_rem > 2 * eye_n1);
    assert_true(eye_rem > 1.3 * eye_w);
    /* plausible amplitudes: tens of uV */
    for (int k = 0; k < 5; k++)
        for (int ch = 0; ch < 2; ch++) assert_true(sqrt(total[k][ch]) > 5 && sqrt(total[k][ch]) < 100);

    /* slow-wave coverage (frontal channel): > 20 % in N3, < 20 % in N2 */
    int n3 = 0, n3_ok = 0, n2 = 0, n2_ok = 0;
    double c3 = 0, c2 = 0;
    for (int i = 0; i < d.n; i++) {
        if (d.labels[i] != RF_EEGSIM_N3 && d.labels[i] != RF_EEGSIM_N2) continue;
        const double cv = slow_wave_cover(d.x + (size_t)i * 2 * d.T, d.T, d.rate);
        if (d.labels[i] == RF_EEGSIM_N3) n3++, n3_ok += cv > 0.2, c3 += cv;
        else n2++, n2_ok += cv < 0.2, c2 += cv;
    }
    printf("  slow-wave coverage: N3 mean %.2f (%d/%d > 20 %%), N2 mean %.2f (%d/%d < 20 %%)\n", c3 / n3, n3_ok, n3,
           c2 / n2, n2_ok, n2);
    assert_true(n3_ok >= 0.9 * n3);
    assert_true(n2_ok >= 0.85 * n2); /* the scorer also counts K-complexes and background waves */

    /* per-subject alpha peak frequency recovered from the W windows of the posterior channel (centroid
     * around the peak of the mean periodogram above a fitted 1/f line) */
    const int nb = d.T / 2 + 1;
    double *ps = malloc(sizeof(double) * nb), *P = malloc(sizeof(double) * nb), sd = 0, mean = 0;
    double max_err = 0;
    for (int s = 0; s < d.n_subjects; s++) {
        memset(ps, 0, sizeof(double) * nb);
        for (int i = 0; i < d.n; i++) {
            if (d.subjects[i] != s || d.labels[i] != RF_EEGSIM_W) continue;
            pgram_run(&p, d.x + ((size_t)i * 2 + BACK) * d.T, P);
            for (int k = 0; k < nb; k++) ps[k] += P[k];
        }
        /* remove the 1/f background: a line in log-log fitted on 3-6.5 Hz and 14-20 Hz */
        double sx = 0, sy = 0, sxx = 0, sxy = 0;
        int nfit = 0;
        for (int k = 1; k < nb; k++) {
            const double f = k * df;
            if ((f >= 3 && f <= 6.5) || (f >= 14 && f <= 20)) {
                const double lx = log(f), ly = log(ps[k]);
                sx += lx, sy += ly, sxx += lx * lx, sxy += lx * ly, nfit++;
            }
        }
        const double slope = (nfit * sxy - sx * sy) / (nfit * sxx - sx * sx), icpt = (sy - slope * sx) / nfit;
        for (int k = 1; k < nb; k++) ps[k] = fmax(0, ps[k] - exp(icpt + slope * log(k * df)));
        const int h = (int)(0.3 / df); /* smooth over +-0.3 Hz */
        double best = -1, fbest = 0;
        for (int k = (int)(7 / df); k <= (int)(13 / df); k++) {
            double v = 0;
            for (int j = -h; j <= h; j++) v += ps[k + j];
            if (v > best) best = v, fbest = k * df;
        }
        double w = 0, wf = 0; /* refined: the centroid within +-1.2 Hz of the peak */
        for (int k = (int)((fbest - 1.2) / df); k <= (int)((fbest + 1.2) / df); k++) w += ps[k], wf += ps[k] * k * df;
        fbest = wf / w;
        const double truth = d.subject_params[s].alpha_hz;
        printf("  subject %d: alpha %.2f Hz (true %.2f)\n", s, fbest, truth);
        max_err = fmax(max_err, fabs(fbest - truth));
        mean += truth;
        sd += truth * truth;
    }
    mean /= d.n_subjects;
    sd = sqrt(sd / d.n_subjects - mean * mean);
    printf("  alpha peak: max error %.2f Hz, spread of true peaks %.2f Hz\n", max_err, sd);
    assert_true(max_err < 0.3);
    assert_true(sd > 0.3);
    /* subjects differ: a large intra-class correlation of the log power, none without variability */
    const double icc = icc_log_power(&d, BACK);
    /* the subject means follow the drawn amplitude (log power = 2 log(amp_scale * chan_gain) + c) */
    double sub_m[64] = {0}, tru[64];
    assert_true(d.n_subjects <= 64);
    for (int i = 0; i < d.n; i++) {
        pgram_run(&p, d.x + ((size_t)i * 2 + BACK) * d.T, P);
        const double v = log(band(&p, P, 0.5, 30));
        sub_m[d.subjects[i]] += v;
    }
    for (int s = 0; s < d.n_subjects; s++)
        tru[s] = 2 * log(d.subject_params[s].amp_scale * d.subject_params[s].chan_gain[BACK]);
    double mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
    for (int s = 0; s < d.n_subjects; s++) mx += sub_m[s] / d.n_subjects, my += tru[s] / d.n_subjects;
    for (int s = 0; s < d.n_subjects; s++)
        sxy += (sub_m[s] - mx) * (tru[s] - my), sxx += pow(sub_m[s] - mx, 2), syy += pow(tru[s] - my, 2);
    const double corr = sxy / sqrt(sxx * syy);
    rf_eegsim_free(&d);
    c.subject_var = 0;
    gen(&c, 8, 6, 2024, &d);
    const double icc0 = icc_log_power(&d, BACK);
    printf("  ICC of the class-centred log power over subjects: %.2f (subject_var 1), %.2f (subject_var 0)\n", icc, icc0);
    printf("  correlation of subject mean log power with 2 log(amp_scale * gain): %.3f\n", corr);
    assert_true(icc > 0.15); /* only 8 subjects: the estimate varies (0.2-0.8 over seeds) */
    assert_true(corr > 0.8);
    assert_true(icc0 < 0.08);
    free(ps);
    free(P);
    free(mp);
    pgram_free(&p);
    rf_eegsim_free(&d);
}

static void test_sleep_separable(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP); /* with artefacts at the default rate */
    rf_eegsim_data d;
    gen(&c, 10, 8, 77, &d);
    int F;
    double *X = features(&d, &F);
    const double ba = cv2_bal_acc(X, d.labels, d.subjects, d.n, F, 5, d.n_subjects, NULL);
    /* shuffled training labels: with well separated clusters one shuffle can map a cluster or two to
     * their own label by chance, so the mean over 5 shuffles is compared with chance */
    rf_rng r;
    rf_rng_seed(&r, 5);
    double ba_sh = 0;
    for (int k = 0; k < 5; k++) ba_sh += cv2_bal_acc(X, d.labels, d.subjects, d.n, F, 5, d.n_subjects, &r) / 5;
    printf("  sleep, 5 classes, 2-fold over subjects: balanced accuracy %.3f (shuffled training labels, mean of 5: "
           "%.3f, chance 0.2)\n", ba, ba_sh);
    assert_true(ba > 0.7);
    assert_true(ba_sh < 0.3);
    free(X);
    rf_eegsim_free(&d);
}

static void test_arithmetic(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_ARITHMETIC);
    c.artifact_rate = 0;
    rf_eegsim_data d;
    double ba[2];
    for (int run = 0; run < 2; run++) {
        c.task_effect = run == 0 ? 1.0 : 0.0;
        gen(&c, 12, 30, 99, &d);
        assert_int_equal(d.channels, 19);
        assert_int_equal(d.T, 512);
        assert_string_equal(d.class_names[RF_EEGSIM_TASK], "arithmetic");
        int ifz = -1, io1 = -1, io2 = -1, ipz = -1;
        for (int ch = 0; ch < d.channels; ch++) {
            if (!strcmp(d.channel_names[ch], "Fz")) ifz = ch;
            if (!strcmp(d.channel_names[ch], "O1")) io1 = ch;
            if (!strcmp(d.channel_names[ch], "O2")) io2 = ch;
            if (!strcmp(d.channel_names[ch], "Pz")) ipz = ch;
        }
        assert_true(ifz >= 0 && io1 >= 0 && io2 >= 0 && ipz >= 0);
        /* mean over windows of log posterior alpha (O1 + O2 + Pz, 8-13 Hz) and log frontal theta
         * (Fz, 4-8 Hz): task minus rest (every subject has as many windows of each class) */
        pgram p;
        pgram_init(&p, d.T, d.rate);
        double *P = malloc(sizeof(double) * (d.T / 2 + 1)), la[2] = {0}, lt[2] = {0}, a_o1 = 0, a_fz = 0;
        int cnt[2] = {0};
        double *X = malloc(sizeof(double) * 3 * (size_t)d.n);
        for (int i = 0; i < d.n; i++) {
            const float *w = d.x + (size_t)i * d.channels * d.T;
            const int k = d.labels[i];
            double a = 0;
            pgram_run(&p, w + (size_t)io1 * d.T, P);
            a += band(&p, P, 8, 13);
            if (k == RF_EEGSIM_REST) a_o1 += band(&p, P, 8, 13);
            pgram_run(&p, w + (size_t)io2 * d.T, P);
            a += band(&p, P, 8, 13);
            pgram_run(&p, w + (size_t)ipz * d.T, P);
            a += band(&p, P, 8, 13);
            pgram_run(&p, w + (size_t)ifz * d.T, P);
            lt[k] += log(band(&p, P, 4, 8));
            if (k == RF_EEGSIM_REST) a_fz += band(&p, P, 8, 13);
            la[k] += log(a);
            cnt[k]++;
            X[3 * i] = log(a);
            X[3 * i + 1] = log(band(&p, P, 4, 8));
            X[3 * i + 2] = log(band(&p, P, 15, 30));
        }
        center_by_subject(X, d.subjects, d.n, 3);
        const double da = la[1] / cnt[1] - la[0] / cnt[0], dt = lt[1] / cnt[1] - lt[0] / cnt[0];
        printf("  task_effect %g: task - rest mean log power: posterior alpha %+.3f, frontal theta %+.3f; rest "
               "O1/Fz alpha %.1f\n",
               c.task_effect, da, dt, a_o1 / a_fz);
        assert_true(a_o1 > 3 * a_fz); /* alpha is posterior */
        if (run == 0) { /* expected about -0.6 and +0.27; the effect varies between subjects */
            assert_true(da < -0.25);
            assert_true(dt > 0.1);
        } else {
            assert_true(fabs(da) < 0.12);
            assert_true(fabs(dt) < 0.12);
        }
        /* cross-subject classification on subject-centred log band powers: posterior alpha, frontal
         * theta and frontal beta */
        const int F = 3;
        ba[run] = cv2_bal_acc(X, d.labels, d.subjects, d.n, F, 2, d.n_subjects, NULL);
        free(X);
        free(P);
        pgram_free(&p);
        rf_eegsim_free(&d);
    }
    printf("  rest vs arithmetic, 2-fold over subjects: balanced accuracy %.3f (no task effect: %.3f)\n", ba[0],
           ba[1]);
    assert_true(ba[0] > 0.62);
    assert_true(fabs(ba[1] - 0.5) < 0.07);
}

static double max_over_ch(const rf_eegsim_data *d, int i, pgram *p, double *P, double lo, double hi) {
    double m = 0;
    for (int c = 0; c < d->channels; c++) {
        pgram_run(p, d->x + ((size_t)i * d->channels + c) * d->T, P);
        m = fmax(m, band(p, P, lo, hi));
    }
    return m;
}

/* Largest mean squared second difference (a high-pass energy) over 1 s blocks and channels. */
static double max_hf_block(const rf_eegsim_data *d, int i) {
    const int B = (int)d->rate;
    double m = 0;
    const float *x = d->x + (size_t)i * d->channels * d->T;
    for (int c = 0; c < d->channels; c++)
        for (int b0 = 1; b0 + B < d->T; b0 += B) {
            double acc = 0;
            for (int t = b0; t < b0 + B; t++) {
                const double v = (double)x[c * d->T + t + 1] - 2.0 * x[c * d->T + t] + x[c * d->T + t - 1];
                acc += v * v;
            }
            m = fmax(m, acc / B);
        }
    return m;
}

static int cmp_d(const void *a, const void *b);

/* Largest |first difference| relative to the channel's robust scale of differences (1.4826 MAD),
 * over channels. */
static double max_jump(const rf_eegsim_data *d, int i) {
    double m = 0, *v = malloc(sizeof(double) * (size_t)d->T);
    const float *x = d->x + (size_t)i * d->channels * d->T;
    for (int c = 0; c < d->channels; c++) {
        double mx = 0;
        for (int t = 1; t < d->T; t++) {
            v[t - 1] = fabs(x[c * d->T + t] - x[c * d->T + t - 1]);
            mx = fmax(mx, v[t - 1]);
        }
        qsort(v, d->T - 1, sizeof(double), cmp_d); /* differences have median ~0: MAD = median |diff| */
        m = fmax(m, mx / (1.4826 * v[(d->T - 1) / 2]));
    }
    free(v);
    return m;
}

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof(double), cmp_d);
    return n ? v[n / 2] : NAN;
}

static void test_artifacts(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.artifact_rate = 2; /* one per 30 s window on average */
    rf_eegsim_data d;
    gen(&c, 6, 10, 31, &d);
    pgram p;
    pgram_init(&p, d.T, d.rate);
    double *P = malloc(sizeof(double) * (d.T / 2 + 1));
    double *hf[2], *jump[2], *slow[2];
    int nh[2] = {0}, nj[2] = {0}, nsl[2] = {0}, any = 0, per_class[5] = {0};
    for (int g = 0; g < 2; g++) {
        hf[g] = malloc(sizeof(double) * (size_t)d.n);
        jump[g] = malloc(sizeof(double) * (size_t)d.n);
        slow[g] = malloc(sizeof(double) * (size_t)d.n);
    }
    unsigned all = 0;
    for (int i = 0; i < d.n; i++) {
        const unsigned a = d.artifacts[i];
        all |= a;
        any += a != 0;
        per_class[d.labels[i]] += a != 0;
        if (a == 0 || a == RF_EEGSIM_ART_MUSCLE) hf[a != 0][nh[a != 0]++] = max_hf_block(&d, i);
        if (a == 0 || a == RF_EEGSIM_ART_SPIKE || a == RF_EEGSIM_ART_POP) jump[a != 0][nj[a != 0]++] = max_jump(&d, i);
        if (a == 0 || a == RF_EEGSIM_ART_DRIFT) slow[a != 0][nsl[a != 0]++] = max_over_ch(&d, i, &p, P, 0.01, 0.25);
    }
    const double frac = (double)any / d.n, expect = 1 - exp(-1.0);
    printf("  windows with artefacts: %.3f (Poisson expectation %.3f); per class:", frac, expect);
    for (int k = 0; k < 5; k++) printf(" %s %.2f", d.class_names[k], per_class[k] / (d.n / 5.0));
    printf("\n");
    assert_true(fabs(frac - expect) < 0.1);
    for (int k = 0; k < 5; k++) assert_true(fabs(per_class[k] / (d.n / 5.0) - frac) < 0.25);
    assert_int_equal(all, RF_EEGSIM_ART_MUSCLE | RF_EEGSIM_ART_POP | RF_EEGSIM_ART_SPIKE | RF_EEGSIM_ART_DRIFT);
    assert_true(nh[1] >= 5 && nj[1] >= 5 && nsl[1] >= 3 && nh[0] >= 20);
    const double m_hf0 = median(hf[0], nh[0]), m_hf1 = median(hf[1], nh[1]);
    const double m_j0 = median(jump[0], nj[0]), m_j1 = median(jump[1], nj[1]);
    const double m_s0 = median(slow[0], nsl[0]), m_s1 = median(slow[1], nsl[1]);
    printf("  median of the largest 1-s second-difference energy: clean %.2f, muscle %.2f (n=%d); max jump / robust scale: clean %.1f, pop/spike %.1f "
           "(n=%d); < 0.25 Hz power: clean %.1f, drift %.1f (n=%d)\n",
           m_hf0, m_hf1, nh[1], m_j0, m_j1, nj[1], m_s0, m_s1, nsl[1]);
    assert_true(m_hf1 > 5 * m_hf0);
    assert_true(m_j1 > 3 * m_j0);
    assert_true(m_s1 > 5 * m_s0);
    for (int g = 0; g < 2; g++) {
        free(hf[g]);
        free(jump[g]);
        free(slow[g]);
    }
    free(P);
    pgram_free(&p);
    rf_eegsim_free(&d);
}

static void test_hypnogram(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.hypnogram = 1;
    c.window_s = 2; /* the stage sequence does not depend on the window content */
    c.rate = 32;
    rf_eegsim_data d;
    gen(&c, 6, 200, 8, &d);
    const int per = 1000;
    assert_int_equal(d.n, 6 * per);
    long cnt[5] = {0}, half[2][5] = {{0}}, trans[5][5] = {{0}};
    for (int s = 0; s < 6; s++) {
        const int *y = d.labels + s * per;
        assert_int_equal(y[0], RF_EEGSIM_W);
        int seen[5] = {0};
        for (int i = 0; i < per; i++) {
            assert_int_equal(d.subjects[s * per + i], s);
            assert_true(y[i] >= 0 && y[i] < 5);
            cnt[y[i]]++;
            seen[y[i]] = 1;
            half[i >= per / 2][y[i]]++;
            if (i) trans[y[i - 1]][y[i]]++;
        }
        for (int k = 0; k < 5; k++) assert_true(seen[k]);
    }
    printf("  stage shares:");
    for (int k = 0; k < 5; k++) printf(" %s %.3f", d.class_names[k], cnt[k] / (6.0 * per));
    printf("\n  N3 first/second half %ld/%ld, REM %ld/%ld\n", half[0][3], half[1][3], half[0][4], half[1][4]);
    for (int k = 0; k < 5; k++)
        if (k != RF_EEGSIM_N2) assert_true(cnt[RF_EEGSIM_N2] > cnt[k]);
    const double n2 = cnt[2] / (6.0 * per), n1 = cnt[1] / (6.0 * per), rem = cnt[4] / (6.0 * per), n3 = cnt[3] / (6.0 * per);
    assert_true(n2 > 0.3 && n2 < 0.65);
    assert_true(n1 < 0.15);
    assert_true(rem > 0.08 && rem < 0.35);
    assert_true(n3 > 0.05 && n3 < 0.35);
    assert_int_equal(trans[RF_EEGSIM_W][RF_EEGSIM_N3], 0);
    assert_int_equal(trans[RF_EEGSIM_W][RF_EEGSIM_REM], 0);
    assert_int_equal(trans[RF_EEGSIM_N3][RF_EEGSIM_REM], 0);
    assert_true(half[0][RF_EEGSIM_N3] > 1.5 * half[1][RF_EEGSIM_N3]);
    assert_true(half[1][RF_EEGSIM_REM] > 1.5 * half[0][RF_EEGSIM_REM]);
    rf_eegsim_free(&d);
}

/* Other rates, window lengths and channel counts: 10-20 names, alpha posterior, spindles at the
 * minimum rate, and band powers that do not depend on the rate (absolute PSD). */
static void test_rates_and_layouts(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.artifact_rate = 0;
    c.window_s = 10;
    const double rates[3] = {32, 100, 256};
    double theta_n1[3], sig_ratio[3];
    for (int ri = 0; ri < 3; ri++) {
        c.rate = rates[ri];
        c.channels = 6;
        rf_eegsim_data d;
        gen(&c, 6, 6, 3, &d);
        assert_int_equal(d.T, (int)lround(10 * rates[ri]));
        const char *names[6] = {"Fz", "Pz", "O1", "O2", "Fp1", "Fp2"};
        for (int ch = 0; ch < 6; ch++) assert_string_equal(d.channel_names[ch], names[ch]);
        pgram p;
        pgram_init(&p, d.T, d.rate);
        double *mp = class_mean_psd(&d, &p);
        const double aw_o1 = band(&p, cpsd(mp, &d, RF_EEGSIM_W, 2), 8, 12);
        const double aw_fz = band(&p, cpsd(mp, &d, RF_EEGSIM_W, 0), 8, 12);
        theta_n1[ri] = band(&p, cpsd(mp, &d, RF_EEGSIM_N1, 0), 3, 7);
        sig_ratio[ri] = band(&p, cpsd(mp, &d, RF_EEGSIM_N2, 0), 11, 15) / band(&p, cpsd(mp, &d, RF_EEGSIM_N1, 0), 11, 15);
        /* eye movements: REM low-frequency power at Fp1 far above O1 */
        const double eye = band(&p, cpsd(mp, &d, RF_EEGSIM_REM, 4), 0.3, 2) / band(&p, cpsd(mp, &d, RF_EEGSIM_REM, 2), 0.3, 2);
        printf("  %g Hz: W alpha O1/Fz %.1f, N2/N1 sigma at Fz %.2f, N1 3-7 Hz power at Fz %.1f, REM Fp1/O1 "
               "0.3-2 Hz %.1f\n",
               rates[ri], aw_o1 / aw_fz, sig_ratio[ri], theta_n1[ri], eye);
        assert_true(aw_o1 > 2 * aw_fz);
        assert_true(sig_ratio[ri] > 1.5);
        assert_true(eye > 3);
        free(mp);
        pgram_free(&p);
        rf_eegsim_free(&d);
    }
    for (int ri = 1; ri < 3; ri++) assert_true(theta_n1[ri] / theta_n1[0] > 0.75 && theta_n1[ri] / theta_n1[0] < 1.33);
    /* one channel */
    c.channels = 1;
    c.rate = 100;
    rf_eegsim_data d;
    gen(&c, 1, 1, 3, &d);
    assert_string_equal(d.channel_names[0], "Fpz-Cz");
    rf_eegsim_free(&d);
}

static void test_dataset_export(void **state) {
    (void)state;
    rf_eegsim_config c;
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.window_s = 4;
    rf_eegsim_data d;
    gen(&c, 2, 2, 11, &d);
    rf_err e;
    rf_dataset ds;
    assert_int_equal(rf_eegsim_to_dataset(&d, &c, 11, &ds, &e), RF_OK);
    assert_int_equal(ds.x.n, d.n);
    assert_int_equal(ds.x.d, d.channels * d.T);
    assert_int_equal(ds.channels, 2);
    assert_int_equal(ds.length, d.T);
    assert_int_equal(ds.n_classes, 5);
    assert_string_equal(ds.class_names[3], "N3");
    assert_memory_equal(ds.x.x, d.x, sizeof(float) * d.n * d.channels * d.T);
    assert_memory_equal(ds.labels, d.labels, sizeof(int) * d.n);
    assert_null(ds.recordings); /* balanced windows are not in temporal order */
    rf_dataset_free(&ds);

    char dir[256], p[512];
    rf_test_tmp(dir, sizeof dir, "eegsim");
    assert_int_equal(rf_eegsim_write_dir(&d, &c, 11, dir, &e), RF_OK);
    assert_true(rf_is_dataset_dir(dir));
    if (rf_dataset_read_dir(dir, &ds, &e)) fail_msg("read back: %s", e.msg);
    assert_int_equal(ds.x.n, d.n);
    assert_int_equal(ds.channels, 2);
    assert_int_equal(ds.length, d.T);
    assert_int_equal(ds.n_classes, 5);
    assert_string_equal(ds.class_names[4], "REM");
    assert_memory_equal(ds.x.x, d.x, sizeof(float) * d.n * d.channels * d.T);
    assert_memory_equal(ds.labels, d.labels, sizeof(int) * d.n);
    assert_memory_equal(ds.subjects, d.subjects, sizeof(int) * d.n);
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(ds.manifest, "source");
    assert_true(cJSON_IsString(src) && !strcmp(src->valuestring, "simulator"));
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(ds.manifest, "subject_params");
    assert_int_equal(cJSON_GetArraySize(sp), 2);
    rf_dataset_free(&ds);
    const char *files[] = {"windows.npy", "labels.npy", "subjects.npy", "artifacts.npy", "manifest.json"};
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        assert_int_equal(unlink(p), 0);
    }
    assert_int_equal(rmdir(dir), 0);
    /* a regular file in the way, and a mismatched config */
    snprintf(p, sizeof p, "%s-file", dir);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fclose(fp);
    expect_fail(rf_eegsim_write_dir(&d, &c, 11, p, &e), &e, RF_EIO, p, "not a directory");
    unlink(p);
    c.rate = 128;
    expect_fail(rf_eegsim_to_dataset(&d, &c, 11, &ds, &e), &e, RF_EARG, "does not match", "128");
    rf_eegsim_free(&d);
    expect_fail(rf_eegsim_to_dataset(&d, &c, 11, &ds, &e), &e, RF_EARG, "no simulated data", NULL);

    /* hypnogram mode: one recording (night) per subject */
    rf_eegsim_config_default(&c, RF_EEGSIM_SLEEP);
    c.window_s = 4;
    c.hypnogram = 1;
    gen(&c, 3, 2, 12, &d);
    assert_int_equal(rf_eegsim_write_dir(&d, &c, 12, dir, &e), RF_OK);
    if (rf_dataset_read_dir(dir, &ds, &e)) fail_msg("read back: %s", e.msg);
    assert_non_null(ds.recordings);
    assert_memory_equal(ds.recordings, d.subjects, sizeof(int) * d.n);
    const cJSON *sim = cJSON_GetObjectItemCaseSensitive(ds.manifest, "simulator");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sim, "hypnogram")));
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(sim, "seed")->valuedouble, 12);
    rf_dataset_free(&ds);
    const char *files2[] = {"windows.npy", "labels.npy", "subjects.npy", "artifacts.npy", "recordings.npy", "manifest.json"};
    for (int i = 0; i < 6; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files2[i]);
        assert_int_equal(unlink(p), 0);
    }
    assert_int_equal(rmdir(dir), 0);
    rf_eegsim_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_and_args), cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_sleep_spectra),   cmocka_unit_test(test_sleep_separable),
        cmocka_unit_test(test_arithmetic),      cmocka_unit_test(test_artifacts),
        cmocka_unit_test(test_hypnogram),       cmocka_unit_test(test_rates_and_layouts),
        cmocka_unit_test(test_dataset_export),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
