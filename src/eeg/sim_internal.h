/* Internal to the EEG simulator (src/eeg/sim_*.c): the generation context, spectral noise and the
 * analytic waveforms. */
#ifndef RF_EEG_SIM_INTERNAL_H
#define RF_EEG_SIM_INTERNAL_H

#include <fftw3.h>

#include "renflow/eegsim.h"

/* Sources with a scalp topography (gain per channel). */
enum {
    SIM_ALPHA, SIM_THETA, SIM_FMTHETA, SIM_BETA, SIM_SPINDLE, SIM_KC, SIM_SW, SIM_VERTEX, SIM_SAW,
    SIM_EYEV, SIM_EYEH, SIM_N_SRC
};

typedef enum { SIM_PSD_PINK, SIM_PSD_BUMP, SIM_PSD_HIGH } sim_psd_kind;
/* PINK: p1 = exponent beta, S(f) = hp(f) / (1 + f^2)^(beta/2), hp = high-pass below 0.3 Hz;
 * BUMP: Gaussian around p1 with sd p2; HIGH: 4th-order high-pass at p1 (EMG), gentle roll-off
 * above 150 Hz. The spectrum is scaled so that its integral over [lo, hi] is rms^2. */
typedef struct sim_psd {
    sim_psd_kind kind;
    double p1, p2, lo, hi;
} sim_psd;

typedef struct sim_ctx {
    const rf_eegsim_config *cfg;
    int C, T;
    double fs, W; /* rate, window length in s (T / fs) */
    double gain[SIM_N_SRC][RF_EEGSIM_MAX_CHANNELS];
    double gain_emg[RF_EEGSIM_MAX_CHANNELS];
    double px[RF_EEGSIM_MAX_CHANNELS], py[RF_EEGSIM_MAX_CHANNELS];
    fftw_complex *spec; /* T/2 + 1 */
    double *tbuf;       /* T, FFT output */
    fftw_plan plan;     /* c2r, size T */
    int own_plan;       /* 0 when the plan belongs to another context */
    double *src;        /* SIM_N_SRC x T */
    double *chan;       /* C x T */
    double *tmp;        /* T scratch */
    double *tmp2;       /* T scratch */
    double *sw_per, *sw_cut; /* slow-wave train scratch, max_waves each */
    int max_waves;
} sim_ctx;

double rf_eegsim__poisson(rf_rng *r, double lambda);
double rf_eegsim__unif(rf_rng *r, double a, double b);
/* Adds rms * (a Gaussian process with spectrum s) to out (T samples). */
void rf_eegsim__noise(sim_ctx *x, const sim_psd *s, double rms, rf_rng *r, double *out, double scale);
/* 0/1 segments (mean duration 2 s, "on" with probability p), smoothed over 0.3 s, into env. */
void rf_eegsim__intermittent(sim_ctx *x, rf_rng *r, double p, double *env);

/* Waveforms, added to b (T samples at rate fs); times in seconds. */
void rf_eegsim__spindle(sim_ctx *x, double *b, double t0, double dur, double f, double amp, double phase);
void rf_eegsim__kcomplex(sim_ctx *x, double *b, double t0, double amp, rf_rng *r);
void rf_eegsim__slow_wave(sim_ctx *x, double *b, double t0, double period, double amp, double neg_frac);
void rf_eegsim__gauss(sim_ctx *x, double *b, double t0, double sigma, double amp);
void rf_eegsim__sawtooth(sim_ctx *x, double *b, double t0, double f, int n_waves, double amp);
void rf_eegsim__eye_move(sim_ctx *x, double t0, double amp, double theta, double tau_r, double tau_d);
void rf_eegsim__slow_eye(sim_ctx *x, double t0, double dur, double f, double amp, double theta);

/* Slow waves covering about `cover` of the window (periods 0.5-2 s, peak-to-peak amp_lo..amp_hi). */
void rf_eegsim__slow_wave_train(sim_ctx *x, rf_rng *r, double cover, double amp_lo, double amp_hi);

/* One artefact added to the channel buffers; returns its RF_EEGSIM_ART_* bit. */
unsigned rf_eegsim__artifact(sim_ctx *x, rf_rng *r);

#endif
