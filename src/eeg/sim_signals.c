/* EEG simulator signals: Gaussian processes with a given power spectral density (drawn in the
 * frequency domain with FFTW), analytic transients (spindles, K-complexes, slow waves, vertex waves,
 * saw-tooth waves, eye movements) and artefacts. */
#include <math.h>
#include <string.h>

#include "sim_internal.h"

double rf_eegsim__unif(rf_rng *r, double a, double b) { return a + (b - a) * rf_rng_uniform(r); }

double rf_eegsim__poisson(rf_rng *r, double lambda) {
    if (!(lambda > 0)) return 0;
    if (lambda > 30) {
        double v = floor(lambda + sqrt(lambda) * rf_rng_normal(r) + 0.5);
        return v < 0 ? 0 : v;
    }
    const double L = exp(-lambda);
    double p = 1;
    int k = -1;
    do {
        k++;
        p *= rf_rng_uniform(r);
    } while (p > L);
    return k;
}

static double psd_eval(const sim_psd *s, double f) {
    switch (s->kind) {
    case SIM_PSD_PINK: {
        const double f4 = f * f * f * f, c4 = 0.3 * 0.3 * 0.3 * 0.3;
        return f4 / (f4 + c4) * pow(1 + f * f, -0.5 * s->p1);
    }
    case SIM_PSD_BUMP: {
        const double z = (f - s->p1) / s->p2;
        return exp(-0.5 * z * z);
    }
    case SIM_PSD_HIGH: {
        const double r = pow(f / s->p1, 4);
        return r / (1 + r) / (1 + (f / 150) * (f / 150));
    }
    }
    return 0;
}

/* Integral of the spectrum shape over [lo, hi] (Simpson's rule, 256 intervals; the shapes are
 * smooth on the scale of (hi - lo) / 256). */
static double psd_integral(const sim_psd *s) {
    enum { N = 256 };
    if (!(s->hi > s->lo)) return 0;
    const double h = (s->hi - s->lo) / N;
    double acc = psd_eval(s, s->lo) + psd_eval(s, s->hi);
    for (int i = 1; i < N; i++) acc += (i % 2 ? 4 : 2) * psd_eval(s, s->lo + i * h);
    return acc * h / 3;
}

/* A real Gaussian process whose one-sided PSD is norm * S(f): with X_k = a_k (z1 + i z2) and the
 * unnormalised c2r transform, x = X_0 + 2 Re sum_k X_k e^(2 pi i k t / T) has variance
 * 4 sum_k a_k^2, so a_k^2 = S(f_k) df norm / 4 gives sum_k S(f_k) df norm ~ integral of the PSD.
 * DC and the Nyquist bin are left at zero. */
void rf_eegsim__noise(sim_ctx *x, const sim_psd *s, double rms, rf_rng *r, double *out, double scale) {
    if (!(rms > 0) || scale == 0) return;
    const int T = x->T, K = T / 2 + 1;
    const double df = x->fs / T, integ = psd_integral(s);
    if (!(integ > 0)) return;
    const double norm = rms * rms / integ;
    x->spec[0][0] = x->spec[0][1] = 0;
    for (int k = 1; k < K; k++) {
        const double f = k * df;
        const double a = (T % 2 == 0 && k == K - 1) ? 0 : 0.5 * sqrt(psd_eval(s, f) * df * norm);
        x->spec[k][0] = a * rf_rng_normal(r);
        x->spec[k][1] = a * rf_rng_normal(r);
    }
    fftw_execute_dft_c2r(x->plan, x->spec, x->tbuf);
    for (int t = 0; t < T; t++) out[t] += scale * x->tbuf[t];
}

/* Moving average over w samples (in place, via a scratch copy). */
static void smooth(sim_ctx *x, double *v, int w) {
    if (w < 2) return;
    const int T = x->T;
    memcpy(x->tmp2, v, sizeof(double) * T);
    double acc = 0;
    int lo = 0, hi = 0; /* window [lo, hi) centred on t */
    for (int t = 0; t < T; t++) {
        const int a = t - w / 2 < 0 ? 0 : t - w / 2, b = t + w / 2 + 1 > T ? T : t + w / 2 + 1;
        while (hi < b) acc += x->tmp2[hi++];
        while (lo < a) acc -= x->tmp2[lo++];
        v[t] = acc / (b - a);
    }
}

void rf_eegsim__intermittent(sim_ctx *x, rf_rng *r, double p, double *env) {
    const int T = x->T;
    int t = 0;
    while (t < T) {
        const double dur = 0.5 + 1.5 * -log(1 - rf_rng_uniform(r)); /* mean 2 s */
        const double on = rf_rng_uniform(r) < p ? 1 : 0;
        int n = (int)(dur * x->fs);
        if (n < 1) n = 1;
        for (int i = 0; i < n && t < T; i++) env[t++] = on;
    }
    smooth(x, env, (int)(0.3 * x->fs));
}

/* Sample range [*a, *b) covering [t_lo, t_hi] seconds, clipped to the window. */
static void span(const sim_ctx *x, double t_lo, double t_hi, int *a, int *b) {
    double lo = floor(t_lo * x->fs), hi = ceil(t_hi * x->fs) + 1;
    if (lo < 0) lo = 0;
    if (hi > x->T) hi = x->T;
    *a = (int)lo;
    *b = (int)(hi > lo ? hi : lo);
}

void rf_eegsim__spindle(sim_ctx *x, double *b, double t0, double dur, double f, double amp, double phase) {
    const double sig = dur / 4; /* envelope at +-dur/2 is exp(-2) of the peak */
    int lo, hi;
    span(x, t0 - 3 * sig, t0 + 3 * sig, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const double t = i / x->fs - t0, z = t / sig;
        b[i] += amp * exp(-0.5 * z * z) * sin(2 * M_PI * f * t + phase);
    }
}

void rf_eegsim__gauss(sim_ctx *x, double *b, double t0, double sigma, double amp) {
    int lo, hi;
    span(x, t0 - 5 * sigma, t0 + 5 * sigma, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const double z = (i / x->fs - t0) / sigma;
        b[i] += amp * exp(-0.5 * z * z);
    }
}

/* Sharp negative wave (sd 80-120 ms) then a broader positive wave 0.3-0.45 s later (sd 150-250 ms);
 * 60 % / 40 % of the peak-to-peak amplitude. */
void rf_eegsim__kcomplex(sim_ctx *x, double *b, double t0, double amp, rf_rng *r) {
    const double s1 = rf_eegsim__unif(r, 0.08, 0.12), d = rf_eegsim__unif(r, 0.3, 0.45);
    const double s2 = rf_eegsim__unif(r, 0.15, 0.25);
    rf_eegsim__gauss(x, b, t0, s1, -0.6 * amp);
    rf_eegsim__gauss(x, b, t0 + d, s2, 0.4 * amp);
}

/* One cycle: a negative half-wave (neg_frac of the peak-to-peak amplitude) then a positive one. */
void rf_eegsim__slow_wave(sim_ctx *x, double *b, double t0, double period, double amp, double neg_frac) {
    int lo, hi;
    span(x, t0, t0 + period, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const double t = i / x->fs - t0;
        if (t < 0 || t > period) continue;
        const double s = sin(2 * M_PI * t / period);
        b[i] += t < 0.5 * period ? -neg_frac * amp * s : -(1 - neg_frac) * amp * s;
    }
}

void rf_eegsim__slow_wave_train(sim_ctx *x, rf_rng *r, double cover, double amp_lo, double amp_hi) {
    double *per = x->sw_per, *cut = x->sw_cut;
    const double target = cover * x->W;
    double sum = 0;
    int n = 0;
    while (sum < target && n < x->max_waves) {
        const double p = rf_eegsim__unif(r, 0.5, 2.0);
        if (sum + p > x->W) break;
        per[n++] = p;
        sum += p;
    }
    if (n == 0) return;
    /* Gaps: the free time split at n sorted uniform points (the waves keep their order). */
    const double free_t = x->W - sum;
    for (int i = 0; i < n; i++) cut[i] = rf_rng_uniform(r) * free_t;
    for (int i = 1; i < n; i++) { /* insertion sort */
        double v = cut[i];
        int j = i - 1;
        while (j >= 0 && cut[j] > v) {
            cut[j + 1] = cut[j];
            j--;
        }
        cut[j + 1] = v;
    }
    double *b = x->src + (size_t)SIM_SW * x->T, used = 0;
    for (int i = 0; i < n; i++) {
        const double t0 = cut[i] + used;
        rf_eegsim__slow_wave(x, b, t0, per[i], rf_eegsim__unif(r, amp_lo, amp_hi), rf_eegsim__unif(r, 0.5, 0.65));
        used += per[i];
    }
}

/* Asymmetric triangular waves (slow rise over 80 % of the cycle, fast fall) with a smooth onset. */
void rf_eegsim__sawtooth(sim_ctx *x, double *b, double t0, double f, int n_waves, double amp) {
    const double dur = n_waves / f;
    int lo, hi;
    span(x, t0, t0 + dur, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const double t = i / x->fs - t0;
        if (t < 0 || t > dur) continue;
        const double ph = fmod(t * f, 1.0);
        const double tri = ph < 0.8 ? ph / 0.8 : (1 - ph) / 0.2;
        const double env = sin(M_PI * t / dur);
        b[i] += amp * env * (tri - 0.5);
    }
}

/* A saccade seen through AC coupling: rise with time constant tau_r, decay with tau_d; direction
 * theta splits it between the vertical and horizontal eye sources. */
void rf_eegsim__eye_move(sim_ctx *x, double t0, double amp, double theta, double tau_r, double tau_d) {
    double *v = x->src + (size_t)SIM_EYEV * x->T, *h = x->src + (size_t)SIM_EYEH * x->T;
    const double cv = cos(theta), ch = sin(theta);
    int lo, hi;
    span(x, t0, t0 + 8 * tau_d, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const double t = i / x->fs - t0;
        if (t < 0) continue;
        const double s = amp * (1 - exp(-t / tau_r)) * exp(-t / tau_d);
        v[i] += cv * s;
        h[i] += ch * s;
    }
}

void rf_eegsim__slow_eye(sim_ctx *x, double t0, double dur, double f, double amp, double theta) {
    double *v = x->src + (size_t)SIM_EYEV * x->T, *h = x->src + (size_t)SIM_EYEH * x->T;
    const double cv = cos(theta), ch = sin(theta);
    int lo, hi;
    span(x, t0, t0 + dur, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const double t = i / x->fs - t0;
        if (t < 0 || t > dur) continue;
        const double s = amp * sin(M_PI * t / dur) * sin(2 * M_PI * f * t);
        v[i] += cv * s;
        h[i] += ch * s;
    }
}

/* ---- artefacts (added to the channel buffers, not scaled by the subject) ---- */

static unsigned muscle(sim_ctx *x, rf_rng *r) {
    const double dur = fmin(rf_eegsim__unif(r, 0.5, 3.0), x->W), t0 = rf_eegsim__unif(r, 0, x->W - dur);
    const double rms = rf_eegsim__unif(r, 20, 60);
    const sim_psd s = {SIM_PSD_HIGH, 20, 0, 20, 50};
    int lo, hi, any = 0;
    span(x, t0, t0 + dur, &lo, &hi);
    const int first = (int)rf_rng_below(r, (uint64_t)x->C);
    for (int c = 0; c < x->C; c++) {
        const double g = x->gain_emg[c];
        if (c != first && rf_rng_uniform(r) > g) continue;
        any = 1;
        memset(x->tmp, 0, sizeof(double) * x->T);
        rf_eegsim__noise(x, &s, rms * g, r, x->tmp, 1.0);
        double *ch = x->chan + (size_t)c * x->T;
        for (int i = lo; i < hi; i++) {
            const double u = (i / x->fs - t0) / dur; /* Tukey-like: 10 % cosine ramps */
            const double env = u < 0.1 ? 0.5 - 0.5 * cos(M_PI * u / 0.1)
                               : u > 0.9 ? 0.5 - 0.5 * cos(M_PI * (1 - u) / 0.1) : 1.0;
            ch[i] += env * x->tmp[i];
        }
    }
    return any ? RF_EEGSIM_ART_MUSCLE : 0;
}

static unsigned pop(sim_ctx *x, rf_rng *r) {
    const int c = (int)rf_rng_below(r, (uint64_t)x->C);
    const double t0 = rf_eegsim__unif(r, 0, x->W), tau = rf_eegsim__unif(r, 0.1, 0.5);
    const double amp = (rf_rng_uniform(r) < 0.5 ? -1 : 1) * rf_eegsim__unif(r, 150, 400);
    double *ch = x->chan + (size_t)c * x->T;
    int lo, hi;
    span(x, t0, t0 + 10 * tau, &lo, &hi);
    for (int i = lo; i < hi; i++) {
        const double t = i / x->fs - t0;
        if (t >= 0) ch[i] += amp * (1 - exp(-t / 0.01)) * exp(-t / tau);
    }
    return RF_EEGSIM_ART_POP;
}

static unsigned spike(sim_ctx *x, rf_rng *r) {
    const int c = (int)rf_rng_below(r, (uint64_t)x->C), len = 1 + (int)rf_rng_below(r, 3);
    const int i0 = (int)rf_rng_below(r, (uint64_t)(x->T - len + 1));
    const double amp = (rf_rng_uniform(r) < 0.5 ? -1 : 1) * rf_eegsim__unif(r, 100, 500);
    double *ch = x->chan + (size_t)c * x->T;
    for (int k = 0; k < len; k++) ch[i0 + k] += amp * (k == len / 2 ? 1.0 : 0.6);
    return RF_EEGSIM_ART_SPIKE;
}

static unsigned drift(sim_ctx *x, rf_rng *r) {
    const double dur = fmin(rf_eegsim__unif(r, 3, 15), x->W), t0 = rf_eegsim__unif(r, 0, x->W - dur);
    const double amp = (rf_rng_uniform(r) < 0.5 ? -1 : 1) * rf_eegsim__unif(r, 30, 150);
    const int first = (int)rf_rng_below(r, (uint64_t)x->C);
    int lo, hi;
    span(x, t0, t0 + dur, &lo, &hi);
    for (int c = 0; c < x->C; c++) {
        if (c != first && rf_rng_uniform(r) < 0.5) continue;
        const double g = c == first ? 1.0 : rf_eegsim__unif(r, 0.5, 1.0);
        double *ch = x->chan + (size_t)c * x->T;
        for (int i = lo; i < hi; i++) {
            const double t = i / x->fs - t0;
            if (t >= 0 && t <= dur) ch[i] += g * amp * sin(M_PI * t / dur);
        }
    }
    return RF_EEGSIM_ART_DRIFT;
}

unsigned rf_eegsim__artifact(sim_ctx *x, rf_rng *r) {
    const double u = rf_rng_uniform(r);
    if (u < 0.4) return muscle(x, r);
    if (u < 0.65) return pop(x, r);
    if (u < 0.8) return spike(x, r);
    return drift(x, r);
}
