/* EEG simulator: configuration, channel layout and topographies, per-subject parameters, the
 * stage/task profiles, the hypnogram Markov chain and window assembly (see renflow/eegsim.h). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

static const char *const SLEEP_NAMES[5] = {"W", "N1", "N2", "N3", "REM"};
static const char *const ARITH_NAMES[2] = {"rest", "arithmetic"};

/* 10-20 positions on a flat disc: x lateral (left -1 .. right 1), y posterior -1 .. anterior 1.
 * Ordered so that every prefix covers the front and the back of the head. */
typedef struct {
    const char *name;
    double x, y;
} sim_pos;
static const sim_pos POS1020[RF_EEGSIM_MAX_CHANNELS] = {
    {"Fz", 0, 0.5},     {"Pz", 0, -0.5},    {"O1", -0.3, -0.95}, {"O2", 0.3, -0.95}, {"Fp1", -0.3, 0.95},
    {"Fp2", 0.3, 0.95}, {"F3", -0.4, 0.5},  {"F4", 0.4, 0.5},    {"C3", -0.5, 0},    {"C4", 0.5, 0},
    {"Cz", 0, 0},       {"P3", -0.4, -0.5}, {"P4", 0.4, -0.5},   {"F7", -0.8, 0.55}, {"F8", 0.8, 0.55},
    {"T3", -1, 0},      {"T4", 1, 0},       {"T5", -0.8, -0.55}, {"T6", 0.8, -0.55}};
/* Sleep-EDF bipolar derivations, approximated by one position between their two electrodes. */
static const sim_pos POS_SLEEP[2] = {{"Fpz-Cz", 0, 0.75}, {"Pz-Oz", 0, -0.8}};

/* Source fields: centre, width and floor (volume conduction). */
typedef struct {
    double cx, cy, w, floor;
} sim_field;
static const sim_field FIELDS[SIM_N_SRC] = {
    [SIM_ALPHA] = {0, -1.0, 0.55, 0.15}, [SIM_THETA] = {0, 0.2, 0.8, 0.3},
    [SIM_FMTHETA] = {0, 0.5, 0.4, 0.05}, [SIM_BETA] = {0, 0.3, 0.9, 0.3},
    [SIM_SPINDLE] = {0, 0, 0.9, 0.3},    [SIM_KC] = {0, 0.4, 0.7, 0.2},
    [SIM_SW] = {0, 0.5, 0.9, 0.3},       [SIM_VERTEX] = {0, 0, 0.5, 0.1},
    [SIM_SAW] = {0, 0.2, 0.6, 0.2},      [SIM_EYEV] = {0, 1.25, 0.4, 0},
    [SIM_EYEH] = {0, 1.0, 0.45, 0}, /* signed: times x */
};

/* Stationary rhythms (rms in uV at the field maximum) and event rates (per minute) per class. */
typedef struct {
    double bg_rms, bg_beta, alpha_rms, theta_rms, fmtheta_rms, beta_rms, emg_rms;
    double spindles_pm, kc_pm, vertex_pm, rem_pm, saw_pm, sem_prob, sw_lo, sw_hi;
} sim_profile;
static const sim_profile SLEEP_PROF[5] = {
    /*          bg   beta alpha theta fmth beta emg  spin kc   vert rem  saw  sem  sw_lo sw_hi */
    /* W   */ {9.0, 1.0, 14.0, 2.5, 0, 3.5, 4.0, 0, 0, 0, 0, 0, 0.1, 0, 0},
    /* N1  */ {10.0, 1.3, 8.0, 7.0, 0, 1.8, 2.5, 0, 0, 2.0, 0, 0, 0.7, 0, 0},
    /* N2  */ {11.0, 1.6, 1.5, 5.0, 0, 1.2, 1.5, 6.0, 1.5, 0.5, 0, 0, 0, 0, 0.08},
    /* N3  */ {13.0, 1.9, 1.0, 5.0, 0, 0.8, 1.2, 1.5, 0, 0, 0, 0, 0, 0.30, 0.85},
    /* REM */ {7.0, 1.2, 2.5, 6.0, 0, 2.0, 0.4, 0, 0, 0, 4.0, 2.0, 0, 0, 0},
};
static const sim_profile REST_PROF = {9.0, 1.0, 14.0, 3.0, 3.0, 3.0, 2.0, 0, 0, 0, 0, 0, 0, 0, 0};

/* Hypnogram: transition probabilities per epoch (rows: from W, N1, N2, N3, REM). */
static const double HYP[5][5] = {
    {0.86, 0.11, 0.03, 0.00, 0.00},   {0.06, 0.56, 0.33, 0.00, 0.05},   {0.02, 0.03, 0.875, 0.045, 0.03},
    {0.01, 0.00, 0.10, 0.89, 0.00},   {0.025, 0.025, 0.04, 0.00, 0.91},
};

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

void rf_eegsim_config_default(rf_eegsim_config *c, rf_eegsim_mode mode) {
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->channels = mode == RF_EEGSIM_ARITHMETIC ? 19 : 2;
    c->rate = mode == RF_EEGSIM_ARITHMETIC ? 128 : 100;
    c->window_s = mode == RF_EEGSIM_ARITHMETIC ? 4 : 30;
    c->artifact_rate = 1.0;
    c->noise_uv = 0.5;
    c->subject_var = 1.0;
    c->eyes_open_frac = 0.25;
    c->task_effect = 1.0;
    c->hypnogram = 0;
}

const char *rf_eegsim_mode_name(rf_eegsim_mode m) {
    return m == RF_EEGSIM_SLEEP ? "sleep" : m == RF_EEGSIM_ARITHMETIC ? "arithmetic" : "unknown";
}

int rf_eegsim_mode_parse(const char *name, rf_eegsim_mode *m, rf_err *e) {
    if (name && !strcmp(name, "sleep")) *m = RF_EEGSIM_SLEEP;
    else if (name && !strcmp(name, "arithmetic")) *m = RF_EEGSIM_ARITHMETIC;
    else return rf_err_set(e, RF_EARG, "unknown simulator mode '%s' (sleep, arithmetic)", name ? name : "(null)");
    return RF_OK;
}

static int bad_range(rf_err *e, const char *field, double v, double lo, double hi, const char *unit) {
    return rf_err_set(e, RF_EARG, "EEG simulator config: field %s: value %g%s is outside %g..%g%s", field, v, unit,
                      lo, hi, unit);
}

int rf_eegsim_config_check(const rf_eegsim_config *c, rf_err *e) {
    if (!c) return rf_err_set(e, RF_EARG, "EEG simulator: NULL config");
    if (c->mode != RF_EEGSIM_SLEEP && c->mode != RF_EEGSIM_ARITHMETIC)
        return rf_err_set(e, RF_EARG, "EEG simulator config: field mode: value %d is not sleep (0) or arithmetic (1)",
                          (int)c->mode);
    if (c->channels < 1 || c->channels > RF_EEGSIM_MAX_CHANNELS)
        return rf_err_set(e, RF_EARG, "EEG simulator config: field channels: value %d is outside 1..%d", c->channels,
                          RF_EEGSIM_MAX_CHANNELS);
    if (!isfinite(c->rate) || c->rate > RF_EEGSIM_MAX_RATE || c->rate <= 0)
        return bad_range(e, "rate", c->rate, RF_EEGSIM_MIN_RATE, RF_EEGSIM_MAX_RATE, " Hz");
    if (c->rate < RF_EEGSIM_MIN_RATE)
        return rf_err_set(e, RF_EARG,
                          "EEG simulator config: field rate: value %g Hz is too low: sleep spindles (11-15 Hz) and "
                          "alpha need a Nyquist frequency above 15 Hz, i.e. a rate of at least %g Hz",
                          c->rate, RF_EEGSIM_MIN_RATE);
    if (!isfinite(c->window_s) || c->window_s < RF_EEGSIM_MIN_WINDOW || c->window_s > RF_EEGSIM_MAX_WINDOW)
        return bad_range(e, "window_s", c->window_s, RF_EEGSIM_MIN_WINDOW, RF_EEGSIM_MAX_WINDOW, " s");
    if (lround(c->window_s * c->rate) > RF_EEGSIM_MAX_SAMPLES)
        return rf_err_set(e, RF_EARG,
                          "EEG simulator config: fields window_s and rate: %g s at %g Hz is %ld samples per window, "
                          "more than the limit of %d",
                          c->window_s, c->rate, lround(c->window_s * c->rate), RF_EEGSIM_MAX_SAMPLES);
    if (!isfinite(c->artifact_rate) || c->artifact_rate < 0 || c->artifact_rate > 600)
        return bad_range(e, "artifact_rate", c->artifact_rate, 0, 600, " per minute");
    if (!isfinite(c->noise_uv) || c->noise_uv < 0 || c->noise_uv > 1000)
        return bad_range(e, "noise_uv", c->noise_uv, 0, 1000, " uV");
    if (!isfinite(c->subject_var) || c->subject_var < 0 || c->subject_var > 5)
        return bad_range(e, "subject_var", c->subject_var, 0, 5, "");
    if (!isfinite(c->eyes_open_frac) || c->eyes_open_frac < 0 || c->eyes_open_frac > 1)
        return bad_range(e, "eyes_open_frac", c->eyes_open_frac, 0, 1, "");
    if (!isfinite(c->task_effect) || c->task_effect < 0 || c->task_effect > 5)
        return bad_range(e, "task_effect", c->task_effect, 0, 5, "");
    if (c->hypnogram != 0 && c->hypnogram != 1)
        return rf_err_set(e, RF_EARG, "EEG simulator config: field hypnogram: value %d is not 0 or 1", c->hypnogram);
    if (c->hypnogram && c->mode != RF_EEGSIM_SLEEP)
        return rf_err_set(e, RF_EARG, "EEG simulator config: field hypnogram: value 1 applies to the sleep mode only, "
                                      "not to mode %s", rf_eegsim_mode_name(c->mode));
    return RF_OK;
}

/* ---- context ---- */

static double field_gain(const sim_field *f, double x, double y) {
    const double dx = x - f->cx, dy = y - f->cy;
    return f->floor + (1 - f->floor) * exp(-(dx * dx + dy * dy) / (2 * f->w * f->w));
}

static void ctx_free(sim_ctx *x) {
    if (x->plan && x->own_plan) fftw_destroy_plan(x->plan);
    fftw_free(x->spec);
    fftw_free(x->tbuf);
    free(x->src);
    free(x->chan);
    free(x->tmp);
    free(x->tmp2);
    free(x->sw_per);
    free(x->sw_cut);
    memset(x, 0, sizeof *x);
}

/* shared: a plan of another context (FFTW's new-array execute is thread safe for arrays with the
 * same alignment, which fftw_malloc guarantees), or NULL to plan here. */
static int ctx_init(sim_ctx *x, const rf_eegsim_config *c, rf_eegsim_data *out, fftw_plan shared, rf_err *e) {
    memset(x, 0, sizeof *x);
    x->cfg = c;
    x->C = c->channels;
    x->fs = c->rate;
    x->T = (int)lround(c->window_s * c->rate);
    x->W = x->T / x->fs;
    const size_t T = (size_t)x->T;
    x->spec = fftw_malloc(sizeof(fftw_complex) * (T / 2 + 1));
    x->tbuf = fftw_malloc(sizeof(double) * T);
    x->src = calloc((size_t)SIM_N_SRC * T, sizeof(double));
    x->chan = calloc((size_t)x->C * T, sizeof(double));
    x->tmp = calloc(T, sizeof(double));
    x->tmp2 = calloc(T, sizeof(double));
    x->max_waves = (int)(x->W / 0.5) + 2; /* slow waves last at least 0.5 s */
    x->sw_per = calloc((size_t)x->max_waves, sizeof(double));
    x->sw_cut = calloc((size_t)x->max_waves, sizeof(double));
    if (!x->spec || !x->tbuf || !x->src || !x->chan || !x->tmp || !x->tmp2 || !x->sw_per || !x->sw_cut) {
        ctx_free(x);
        return rf_err_set(e, RF_ENOMEM, "EEG simulator: out of memory for windows of %d samples", x->T);
    }
    x->own_plan = shared == NULL;
    x->plan = shared ? shared : fftw_plan_dft_c2r_1d(x->T, x->spec, x->tbuf, FFTW_ESTIMATE);
    if (!x->plan) {
        ctx_free(x);
        return rf_err_set(e, RF_ENOMEM, "EEG simulator: FFTW could not plan a transform of %d samples", x->T);
    }
    const sim_pos *pos = (c->mode == RF_EEGSIM_SLEEP && x->C <= 2) ? POS_SLEEP : POS1020;
    for (int ch = 0; ch < x->C; ch++) {
        snprintf(out->channel_names[ch], sizeof out->channel_names[ch], "%s", pos[ch].name);
        const double px = pos[ch].x, py = pos[ch].y;
        x->px[ch] = px;
        x->py[ch] = py;
        for (int s = 0; s < SIM_N_SRC; s++) x->gain[s][ch] = field_gain(&FIELDS[s], px, py);
        const sim_field *h = &FIELDS[SIM_EYEH];
        x->gain[SIM_EYEH][ch] = px * exp(-(py - h->cy) * (py - h->cy) / (2 * h->w * h->w));
        const double fr = exp(-(px * px + (py - 1.0) * (py - 1.0)) / (2 * 0.4 * 0.4));
        x->gain_emg[ch] = 0.3 + 0.7 * fmax(fr, px * px);
    }
    return RF_OK;
}

/* ---- subjects ---- */

static void draw_subject(const rf_eegsim_config *c, rf_rng *r, rf_eegsim_subject *s) {
    const double v = c->subject_var;
    memset(s, 0, sizeof *s);
    s->alpha_hz = clampd(10 + 0.8 * v * rf_rng_normal(r), 8, 12);
    s->theta_hz = clampd(5.5 + 0.5 * v * rf_rng_normal(r), 4.5, 6.5);
    s->spindle_hz = clampd(13 + 0.5 * v * rf_rng_normal(r), 12.2, 13.8);
    s->amp_scale = clampd(exp(0.2 * v * rf_rng_normal(r)), 0.65, 1.55);
    s->alpha_gain = clampd(exp(0.35 * v * rf_rng_normal(r)), 0.3, 2.5);
    s->slope_shift = clampd(0.15 * v * rf_rng_normal(r), -0.4, 0.4);
    s->spindle_density = clampd(exp(0.3 * v * rf_rng_normal(r)), 0.4, 2.5);
    const double za = rf_rng_normal(r), zt = rf_rng_normal(r);
    if (c->mode == RF_EEGSIM_ARITHMETIC) {
        s->task_alpha = exp(-c->task_effect * clampd(0.35 + 0.2 * v * za, 0, 0.9));
        s->task_theta = exp(c->task_effect * clampd(0.35 + 0.2 * v * zt, 0, 0.9));
    } else {
        s->task_alpha = s->task_theta = 1;
    }
    for (int ch = 0; ch < RF_EEGSIM_MAX_CHANNELS; ch++) {
        const double z = rf_rng_normal(r);
        s->chan_gain[ch] = ch < c->channels ? clampd(exp(0.08 * v * z), 0.85, 1.18) : 0;
    }
}

/* ---- one window ---- */

/* State fluctuation of a rhythm's amplitude from window to window. */
static double jitter(rf_rng *r, double sd) { return exp(sd * rf_rng_normal(r)); }

static void gen_events(sim_ctx *x, const sim_profile *p, const rf_eegsim_subject *s, int cls, int eyes_open,
                       rf_rng *r) {
    const rf_eegsim_config *c = x->cfg;
    const double W = x->W, minutes = W / 60;
    double *src = x->src;
    const size_t T = (size_t)x->T;
    if (c->mode != RF_EEGSIM_SLEEP) return;
    /* spindles and K-complexes (N2, N3) */
    int ns = (int)rf_eegsim__poisson(r, p->spindles_pm * s->spindle_density * minutes);
    const int nk = (int)rf_eegsim__poisson(r, p->kc_pm * minutes);
    if (cls == RF_EEGSIM_N2 && ns == 0 && nk == 0) ns = 1;
    for (int i = 0; i < ns; i++) {
        const double dur = fmin(rf_eegsim__unif(r, 0.5, 2.0), W);
        const double t0 = rf_eegsim__unif(r, dur / 2, W - dur / 2);
        const double f = clampd(s->spindle_hz + rf_eegsim__unif(r, -0.8, 0.8), 11, 15);
        rf_eegsim__spindle(x, src + SIM_SPINDLE * T, t0, dur, f, rf_eegsim__unif(r, 20, 40),
                           rf_eegsim__unif(r, 0, 2 * M_PI));
    }
    for (int i = 0; i < nk; i++) {
        const double t0 = rf_eegsim__unif(r, 0.3, W - 1.0);
        rf_eegsim__kcomplex(x, src + SIM_KC * T, t0, rf_eegsim__unif(r, 90, 200), r);
        if (rf_rng_uniform(r) < 0.4 && t0 + 1.7 < W) /* a spindle often follows */
            rf_eegsim__spindle(x, src + SIM_SPINDLE * T, t0 + 1.2, 1.0,
                               clampd(s->spindle_hz + rf_eegsim__unif(r, -0.8, 0.8), 11, 15),
                               rf_eegsim__unif(r, 20, 35), rf_eegsim__unif(r, 0, 2 * M_PI));
    }
    /* slow waves */
    if (p->sw_hi > 0) { /* 110-250 uV at the source, and >= 80 uV where they are largest */
        double f = 0;
        for (int ch = 0; ch < x->C; ch++) f = fmax(f, x->gain[SIM_SW][ch] * s->chan_gain[ch]);
        const double lo = fmax(110, 80 / (f * s->amp_scale));
        rf_eegsim__slow_wave_train(x, r, rf_eegsim__unif(r, p->sw_lo, p->sw_hi), lo, fmax(250, 1.5 * lo));
    }
    /* vertex sharp waves */
    const int nv = (int)rf_eegsim__poisson(r, p->vertex_pm * minutes);
    for (int i = 0; i < nv; i++)
        rf_eegsim__gauss(x, src + SIM_VERTEX * T, rf_eegsim__unif(r, 0.2, W - 0.2), rf_eegsim__unif(r, 0.05, 0.08),
                         -rf_eegsim__unif(r, 50, 100));
    /* saw-tooth trains (REM) */
    const int nsaw = (int)rf_eegsim__poisson(r, p->saw_pm * minutes);
    for (int i = 0; i < nsaw; i++) {
        const double f = rf_eegsim__unif(r, 2, 5);
        const int nw = 3 + (int)rf_rng_below(r, 6);
        const double dur = fmin(nw / f, W);
        rf_eegsim__sawtooth(x, src + SIM_SAW * T, rf_eegsim__unif(r, 0, W - dur), f, nw, rf_eegsim__unif(r, 20, 40));
    }
    /* rapid eye movements (REM): bursts of 1-4 back-and-forth saccades */
    const int nb = (int)rf_eegsim__poisson(r, p->rem_pm * minutes);
    for (int i = 0; i < nb; i++) {
        double t = rf_eegsim__unif(r, 0, W - 1.0), th = rf_eegsim__unif(r, 0, 2 * M_PI);
        const int k = 1 + (int)rf_rng_below(r, 4);
        for (int j = 0; j < k && t < W; j++) {
            rf_eegsim__eye_move(x, t, rf_eegsim__unif(r, 150, 400), th, rf_eegsim__unif(r, 0.03, 0.08),
                                rf_eegsim__unif(r, 0.2, 0.6));
            if (rf_rng_uniform(r) < 0.6) th += M_PI;
            t += rf_eegsim__unif(r, 0.3, 1.0);
        }
    }
    /* slow rolling eye movements (N1, drowsy eyes-closed W) */
    if (!eyes_open && rf_rng_uniform(r) < p->sem_prob) {
        const double dur = fmin(rf_eegsim__unif(r, 4, 12), W);
        rf_eegsim__slow_eye(x, rf_eegsim__unif(r, 0, W - dur), dur, rf_eegsim__unif(r, 0.1, 0.5),
                            rf_eegsim__unif(r, 40, 100), rf_eegsim__unif(r, 0, 2 * M_PI));
    }
    /* eyes open wake: blinks and saccades */
    if (eyes_open) {
        const int nbl = (int)rf_eegsim__poisson(r, 15 * minutes), nsa = (int)rf_eegsim__poisson(r, 10 * minutes);
        for (int i = 0; i < nbl; i++)
            rf_eegsim__gauss(x, src + SIM_EYEV * T, rf_eegsim__unif(r, 0, W), rf_eegsim__unif(r, 0.05, 0.08),
                             rf_eegsim__unif(r, 100, 250));
        for (int i = 0; i < nsa; i++)
            rf_eegsim__eye_move(x, rf_eegsim__unif(r, 0, W), rf_eegsim__unif(r, 50, 150),
                                rf_eegsim__unif(r, 0, 2 * M_PI), rf_eegsim__unif(r, 0.03, 0.08),
                                rf_eegsim__unif(r, 0.2, 0.6));
    }
}

static void gen_window(sim_ctx *x, const rf_eegsim_subject *s, int cls, rf_rng *r, float *out, unsigned *art) {
    const rf_eegsim_config *c = x->cfg;
    const int C = x->C;
    const size_t T = (size_t)x->T;
    const int sleep = c->mode == RF_EEGSIM_SLEEP;
    sim_profile p = sleep ? SLEEP_PROF[cls] : REST_PROF;
    const int eyes_open = sleep && cls == RF_EEGSIM_W && rf_rng_uniform(r) < c->eyes_open_frac;
    double alpha = p.alpha_rms * s->alpha_gain, fmtheta = p.fmtheta_rms, beta = p.beta_rms, emg = p.emg_rms;
    if (eyes_open) {
        alpha *= 0.25;
        beta *= 1.3;
        emg *= 1.5;
    }
    if (!sleep && cls == RF_EEGSIM_TASK) {
        alpha *= s->task_alpha;
        fmtheta *= s->task_theta;
        beta *= pow(1.15, c->task_effect);
    }
    memset(x->src, 0, sizeof(double) * SIM_N_SRC * T);
    memset(x->chan, 0, sizeof(double) * (size_t)C * T);

    /* stationary rhythms */
    const sim_psd pink = {SIM_PSD_PINK, p.bg_beta + s->slope_shift, 0, 0.5, 30};
    const sim_psd a_psd = {SIM_PSD_BUMP, s->alpha_hz, 0.6, s->alpha_hz - 3, s->alpha_hz + 3};
    const sim_psd t_psd = {SIM_PSD_BUMP, s->theta_hz, 0.8, s->theta_hz - 4, s->theta_hz + 4};
    const sim_psd b_psd = {SIM_PSD_BUMP, 20, 4, 0, 40};
    const sim_psd emg_psd = {SIM_PSD_HIGH, 20, 0, 20, 50};
    const double bg = p.bg_rms * jitter(r, 0.1);
    rf_eegsim__noise(x, &a_psd, alpha * jitter(r, 0.25), r, x->src + SIM_ALPHA * T, 1.0);
    if (sleep && cls == RF_EEGSIM_N1) { /* alpha in less than half of the window */
        rf_eegsim__intermittent(x, r, rf_eegsim__unif(r, 0.1, 0.45), x->tmp);
        for (size_t t = 0; t < T; t++) x->src[SIM_ALPHA * T + t] *= x->tmp[t];
    }
    rf_eegsim__noise(x, &t_psd, p.theta_rms * jitter(r, 0.2), r, x->src + SIM_THETA * T, 1.0);
    rf_eegsim__noise(x, &t_psd, fmtheta * jitter(r, 0.2), r, x->src + SIM_FMTHETA * T, 1.0);
    rf_eegsim__noise(x, &b_psd, beta * jitter(r, 0.2), r, x->src + SIM_BETA * T, 1.0);
    gen_events(x, &p, s, cls, eyes_open, r);

    /* mixing: background (half common, half local), sources, tonic EMG; then subject scaling */
    memset(x->tmp, 0, sizeof(double) * T);
    rf_eegsim__noise(x, &pink, bg, r, x->tmp, 1.0);
    for (int ch = 0; ch < C; ch++) {
        double *o = x->chan + (size_t)ch * T;
        for (size_t t = 0; t < T; t++) o[t] = M_SQRT1_2 * x->tmp[t];
        rf_eegsim__noise(x, &pink, bg, r, o, M_SQRT1_2);
        for (int k = 0; k < SIM_N_SRC; k++) {
            const double g = x->gain[k][ch];
            if (g == 0) continue;
            const double *sk = x->src + (size_t)k * T;
            for (size_t t = 0; t < T; t++) o[t] += g * sk[t];
        }
        rf_eegsim__noise(x, &emg_psd, emg * x->gain_emg[ch], r, o, 1.0);
        const double sc = s->amp_scale * s->chan_gain[ch];
        for (size_t t = 0; t < T; t++) o[t] *= sc;
    }

    /* artefacts and amplifier noise */
    unsigned a = 0;
    const int na = (int)rf_eegsim__poisson(r, c->artifact_rate * x->W / 60);
    for (int i = 0; i < na; i++) a |= rf_eegsim__artifact(x, r);
    *art = a;
    for (int ch = 0; ch < C; ch++) {
        const double *o = x->chan + (size_t)ch * T;
        float *dst = out + (size_t)ch * T;
        for (size_t t = 0; t < T; t++) dst[t] = (float)(o[t] + c->noise_uv * rf_rng_normal(r));
    }
}

/* ---- labels ---- */

static void hypnogram(rf_rng *r, int n, int *lab) {
    int st = RF_EEGSIM_W;
    for (int i = 0; i < n; i++) {
        lab[i] = st;
        const double u = n > 1 ? (double)i / (n - 1) : 0; /* night fraction */
        double row[5], sum = 0;
        for (int j = 0; j < 5; j++) {
            row[j] = HYP[st][j];
            if (j == RF_EEGSIM_N3) row[j] *= 1.8 - 1.6 * u;
            if (j == RF_EEGSIM_REM) row[j] *= 0.3 + 1.4 * u;
            sum += row[j];
        }
        double v = rf_rng_uniform(r) * sum;
        int nx = 4;
        for (int j = 0; j < 5; j++) {
            if (v < row[j]) {
                nx = j;
                break;
            }
            v -= row[j];
        }
        while (row[nx] == 0) nx--; /* rounding at the top end */
        st = nx;
    }
}

void rf_eegsim_free(rf_eegsim_data *d) {
    if (!d) return;
    rf_free(d->x);
    free(d->labels);
    free(d->subjects);
    free(d->artifacts);
    free(d->subject_params);
    memset(d, 0, sizeof *d);
}

int rf_eegsim_generate(const rf_eegsim_config *c, int n_subjects, int windows_per_class, rf_rng *rng,
                       rf_eegsim_data *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "EEG simulator: NULL output");
    memset(out, 0, sizeof *out);
    if (!rng) return rf_err_set(e, RF_EARG, "EEG simulator: NULL random number generator");
    int rc = rf_eegsim_config_check(c, e);
    if (rc) return rc;
    if (n_subjects < 1 || n_subjects > 100000)
        return rf_err_set(e, RF_EARG, "EEG simulator: n_subjects: value %d is outside 1..100000", n_subjects);
    if (windows_per_class < 1)
        return rf_err_set(e, RF_EARG, "EEG simulator: windows_per_class: value %d must be at least 1",
                          windows_per_class);
    const int K = c->mode == RF_EEGSIM_SLEEP ? 5 : 2;
    const int64_t per_subject = (int64_t)K * windows_per_class, n = per_subject * n_subjects;
    const int64_t T = (int64_t)lround(c->window_s * c->rate);
    const double values = (double)n * c->channels * (double)T;
    if (n > 100000000 || values > 2147483648.0)
        return rf_err_set(e, RF_EARG,
                          "EEG simulator: %d subjects x %d classes x %d windows of %d x %lld samples is %.3g values "
                          "(%.1f GiB), more than the limit of 2^31; generate fewer at a time",
                          n_subjects, K, windows_per_class, c->channels, (long long)T, values,
                          values * 4 / 1073741824.0);
    out->n = (int)n;
    out->channels = c->channels;
    out->T = (int)T;
    out->rate = c->rate;
    out->n_classes = K;
    out->n_subjects = n_subjects;
    for (int k = 0; k < K; k++) out->class_names[k] = K == 5 ? SLEEP_NAMES[k] : ARITH_NAMES[k];
    out->x = rf_floats((size_t)n * (size_t)c->channels * (size_t)T, e);
    out->labels = calloc((size_t)n, sizeof(int));
    out->subjects = calloc((size_t)n, sizeof(int));
    out->artifacts = calloc((size_t)n, sizeof(unsigned));
    out->subject_params = calloc((size_t)n_subjects, sizeof(rf_eegsim_subject));
    if (!out->x || !out->labels || !out->subjects || !out->artifacts || !out->subject_params) {
        rf_eegsim_free(out);
        return rf_err_set(e, RF_ENOMEM, "EEG simulator: out of memory for %lld windows", (long long)n);
    }
    /* one context per thread; every window has its own child stream, forked in order, so the output
     * does not depend on the number of threads */
    int nth = omp_get_max_threads();
    if (nth < 1) nth = 1;
    if (nth > 64) nth = 64;
    if (nth > per_subject) nth = (int)per_subject;
    sim_ctx *xs = calloc((size_t)nth, sizeof(sim_ctx));
    rf_rng *rws = malloc(sizeof(rf_rng) * (size_t)per_subject);
    if (!xs || !rws) {
        free(xs);
        free(rws);
        rf_eegsim_free(out);
        return rf_err_set(e, RF_ENOMEM, "EEG simulator: out of memory");
    }
    for (int t = 0; t < nth && !rc; t++) rc = ctx_init(&xs[t], c, out, t ? xs[0].plan : NULL, e);
    if (rc) {
        for (int t = nth - 1; t >= 0; t--) ctx_free(&xs[t]); /* the plan's owner last */
        free(xs);
        free(rws);
        rf_eegsim_free(out);
        return rc;
    }
    const size_t wsz = (size_t)c->channels * (size_t)T;
    for (int s = 0; s < n_subjects; s++) {
        rf_rng rs;
        rf_rng_fork(rng, &rs);
        rf_eegsim_subject *sp = &out->subject_params[s];
        draw_subject(c, &rs, sp);
        int *lab = out->labels + (size_t)s * per_subject;
        if (c->hypnogram) {
            hypnogram(&rs, (int)per_subject, lab);
        } else {
            for (int64_t i = 0; i < per_subject; i++) lab[i] = (int)(i % K);
            rf_rng_shuffle(&rs, lab, (int)per_subject);
        }
        for (int64_t i = 0; i < per_subject; i++) rf_rng_fork(&rs, &rws[i]);
        const size_t row0 = (size_t)s * (size_t)per_subject;
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth)
        for (int64_t i = 0; i < per_subject; i++) {
            const size_t row = row0 + (size_t)i;
            out->subjects[row] = s;
            gen_window(&xs[omp_get_thread_num()], sp, lab[i], &rws[i], out->x + row * wsz, &out->artifacts[row]);
        }
    }
    for (int t = nth - 1; t >= 0; t--) ctx_free(&xs[t]);
    free(xs);
    free(rws);
    return RF_OK;
}
