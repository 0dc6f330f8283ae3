/* renflow EEG simulator: seeded, labelled multichannel EEG windows with known ground truth, so that
 * the EEG jobs run with no files and tests can check what a model learned.
 *
 * Output: n windows of channels x T samples (float32, microvolts), a class label, a subject id and
 * an artefact bit mask per window, plus the drawn per-subject parameters.
 *
 * Signal model. Every window is a sum of sources projected onto the channels by fixed scalp
 * topographies (Gaussian fields around a source position on a flat 10-20 layout, with a floor for
 * volume conduction), times a per-subject amplitude and per-channel gain, plus artefacts and white
 * amplifier noise. Stationary rhythms are Gaussian processes drawn in the frequency domain (FFTW)
 * with an absolute power spectral density (so band powers do not depend on rate or window length);
 * transients are analytic waveforms placed at random times.
 *   background   1/f^beta noise (knee 1 Hz, high-passed below 0.3 Hz), half common to all
 *                channels, half local; deeper sleep = steeper slope and more power.
 *   alpha        narrow band (sd 0.6 Hz) at the subject's alpha peak (8-12 Hz), occipital field.
 *   theta        band around the subject's theta frequency (4.5-6.5 Hz, sd 0.8 Hz), central field.
 *   beta / EMG   15-25 Hz band (fronto-central) and broadband > 20 Hz tonic muscle activity
 *                (frontal and temporal channels).
 * Rhythm amplitudes also vary from window to window (log-normal, sd 0.1-0.25).
 *
 * Sleep mode (RF_EEGSIM_SLEEP, 5 classes W, N1, N2, N3, REM; default 2 channels "Fpz-Cz" (frontal)
 * and "Pz-Oz" (posterior) at 100 Hz, 30 s windows):
 *   W    relaxed wake. Eyes closed (1 - eyes_open_frac of the W windows, 75 % by default): strong
 *        posterior alpha, slow eye movements in 10 %. Eyes open: alpha blocked (x0.25), blinks
 *        (~15/min, 100-250 uV at the eyes) and saccades (~10/min) on frontal channels, more beta
 *        and EMG.
 *   N1   alpha reduced and intermittent (present in 10-45 % of the window), theta, vertex sharp
 *        waves (~2/min, central), slow rolling eye movements (70 % of windows, 0.1-0.5 Hz, frontal).
 *   N2   spindles (~6/min, 11-15 Hz around the subject's spindle frequency, 0.5-2 s, Gaussian
 *        waxing-waning envelope at 13 % of its peak at the ends, 20-40 uV peak, central) and
 *        K-complexes (~1.5/min, sharp negative then positive wave over ~1 s, 90-200 uV
 *        peak-to-peak, frontal); at least one of the two in every N2 window; slow waves cover
 *        < 8 % of the window.
 *   N3   slow waves 0.5-2 Hz (each one cycle of 110-250 uV peak-to-peak at the source, frontal
 *        maximum, >= 80 uV on the channel where they are largest) covering 30-85 % of the window;
 *        few spindles (~1.5/min).
 *   REM  low-amplitude mixed frequency (lowest background), theta, saw-tooth wave trains (2-5 Hz),
 *        rapid eye movements (~4 bursts/min of 1-4 fast deflections of 150-400 uV at the eyes,
 *        decaying over 0.2-0.6 s; seen on frontal channels, not posteriorly), minimal EMG.
 * Arithmetic mode (RF_EEGSIM_ARITHMETIC, 2 classes rest, arithmetic; eegmat-like, eyes closed;
 * default 19 channels at 128 Hz, 4 s windows): both classes share the resting background; the task
 * multiplies posterior alpha by subject_param.task_alpha (< 1, about 0.7) and frontal-midline theta
 * (field around Fz) by task_theta (> 1, about 1.4), and beta by ~1.15; per-window state
 * fluctuations and subject differences overlap the effect, as in real data.
 *
 * Channels: sleep mode with 1-2 channels uses the Sleep-EDF bipolar names; otherwise the first
 * `channels` of the 10-20 list Fz, Pz, O1, O2, Fp1, Fp2, F3, F4, C3, C4, Cz, P3, P4, F7, F8, T3, T4,
 * T5, T6 (ordered so that any prefix covers front and back).
 *
 * Per-subject variability (scaled by subject_var): alpha peak frequency (10 +- 0.8 Hz, within
 * 8-12), theta and spindle frequencies, global amplitude (x0.65-1.55), alpha strength, 1/f slope,
 * per-channel gains (x0.85-1.18), spindle density and (arithmetic) the size of the task effect.
 *
 * Artefacts, independent of the class, Poisson with artifact_rate per minute: muscle bursts
 * (0.5-3 s of broadband > 20 Hz activity, 20-60 uV rms, frontal/temporal channels), electrode pops
 * (one channel: fast step of 150-400 uV decaying over 0.1-0.5 s), spikes (one channel, 1-3 samples,
 * 100-500 uV) and slow drifts (3-15 s half-cycle deflections of 30-150 uV on some channels).
 *
 * Randomness comes only from the rf_rng passed in (one child stream per subject and per window), so
 * a seed gives identical output, whatever the number of threads. The windows of a subject are
 * generated in parallel with OpenMP (omp_get_max_threads(), see rf_set_threads). FFTW plans are
 * made once per call: do not call it concurrently with other FFTW planning in other threads. */
#ifndef RENFLOW_EEGSIM_H
#define RENFLOW_EEGSIM_H

#include "renflow/core.h"

typedef enum { RF_EEGSIM_SLEEP = 0, RF_EEGSIM_ARITHMETIC = 1 } rf_eegsim_mode;

/* Class indices. */
enum { RF_EEGSIM_W = 0, RF_EEGSIM_N1 = 1, RF_EEGSIM_N2 = 2, RF_EEGSIM_N3 = 3, RF_EEGSIM_REM = 4 };
enum { RF_EEGSIM_REST = 0, RF_EEGSIM_TASK = 1 };

#define RF_EEGSIM_MAX_CHANNELS 19
#define RF_EEGSIM_MAX_CLASSES 5
#define RF_EEGSIM_MIN_RATE 32.0    /* Hz: spindles reach 15 Hz, the Nyquist frequency must exceed it */
#define RF_EEGSIM_MAX_RATE 5000.0  /* Hz */
#define RF_EEGSIM_MIN_WINDOW 2.0   /* s: one slow wave (0.5 Hz) */
#define RF_EEGSIM_MAX_WINDOW 3600.0
#define RF_EEGSIM_MAX_SAMPLES 2097152 /* samples per window and channel (window_s * rate) */

/* Artefact bits in rf_eegsim_data.artifacts. */
#define RF_EEGSIM_ART_MUSCLE 1u
#define RF_EEGSIM_ART_POP 2u
#define RF_EEGSIM_ART_SPIKE 4u
#define RF_EEGSIM_ART_DRIFT 8u

typedef struct rf_eegsim_config {
    rf_eegsim_mode mode;
    int channels;          /* 1..RF_EEGSIM_MAX_CHANNELS */
    double rate;           /* sampling rate, Hz */
    double window_s;       /* window length, s; T = round(window_s * rate) */
    double artifact_rate;  /* expected artefacts per minute of signal (0 = none) */
    double noise_uv;       /* sd of white amplifier noise per sample, uV */
    double subject_var;    /* scale of between-subject variability (0 = identical subjects) */
    double eyes_open_frac; /* sleep: fraction of W windows with eyes open, in [0, 1] */
    double task_effect;    /* arithmetic: scale of the task effect (0 = rest and task identical) */
    int hypnogram;         /* sleep: 0 = balanced classes; 1 = each subject's windows follow a
                              Markov-chain hypnogram (see rf_eegsim_generate) */
} rf_eegsim_config;

/* Defaults. Sleep: 2 channels, 100 Hz, 30 s, 1 artefact/min, noise 0.5 uV, subject_var 1,
 * eyes_open_frac 0.25, balanced. Arithmetic: 19 channels, 128 Hz, 4 s, task_effect 1, otherwise the
 * same. An unknown mode gives the sleep defaults with that mode (rejected by generate). */
void rf_eegsim_config_default(rf_eegsim_config *c, rf_eegsim_mode mode);
/* Checks every field; the message names the field, the value and the allowed range. */
int rf_eegsim_config_check(const rf_eegsim_config *c, rf_err *e);
const char *rf_eegsim_mode_name(rf_eegsim_mode m); /* "sleep", "arithmetic" */
int rf_eegsim_mode_parse(const char *name, rf_eegsim_mode *m, rf_err *e);

/* Ground truth drawn for one subject. */
typedef struct rf_eegsim_subject {
    double alpha_hz;   /* alpha peak frequency */
    double theta_hz;   /* centre of theta */
    double spindle_hz; /* centre of spindle frequencies (each spindle within +-0.8 Hz, in 11-15) */
    double amp_scale;  /* global amplitude factor */
    double alpha_gain; /* alpha amplitude factor */
    double slope_shift; /* added to the 1/f exponent */
    double spindle_density; /* factor on the spindle rate */
    double task_alpha, task_theta; /* arithmetic: amplitude factors of the task (1 in sleep mode) */
    double chan_gain[RF_EEGSIM_MAX_CHANNELS];
} rf_eegsim_subject;

typedef struct rf_eegsim_data {
    float *x;            /* n x channels x T, row-major, microvolts (rf_floats) */
    int *labels;         /* n class indices */
    int *subjects;       /* n subject ids in [0, n_subjects) */
    unsigned *artifacts; /* n bit masks of RF_EEGSIM_ART_* present in the window */
    int n, channels, T;
    double rate;
    int n_classes;
    const char *class_names[RF_EEGSIM_MAX_CLASSES]; /* static strings */
    char channel_names[RF_EEGSIM_MAX_CHANNELS][16];
    int n_subjects;
    rf_eegsim_subject *subject_params; /* n_subjects */
} rf_eegsim_data;

/* Generates windows for n_subjects subjects (rows grouped by subject, subject 0 first).
 * Balanced (hypnogram = 0, and arithmetic mode): windows_per_class windows of every class per
 * subject, in a seeded random order within the subject.
 * Hypnogram (sleep only): n_classes * windows_per_class consecutive epochs per subject whose stages
 * follow a Markov chain from W with typical transition probabilities (N2 most frequent, N3 more
 * likely early in the night, REM late; W does not jump to N3/REM, N3 does not jump to REM).
 * All memory of out is owned by it; free with rf_eegsim_free (also after an error). */
int rf_eegsim_generate(const rf_eegsim_config *c, int n_subjects, int windows_per_class, rf_rng *rng,
                       rf_eegsim_data *out, rf_err *e);
void rf_eegsim_free(rf_eegsim_data *d);

/* A prepared data set (see renflow/dataset.h) from simulated windows: rows of channels * T floats,
 * labels, subjects, class names and a manifest (source "simulator", mode, channel names, rate,
 * window, every config field, n_subjects, per-class counts, artefact counts, seed, the subject
 * parameters). With hypnogram = 1, recordings = subject ids (one night per subject, epochs in
 * temporal order). Copies. */
struct rf_dataset;
int rf_eegsim_to_dataset(const rf_eegsim_data *d, const rf_eegsim_config *c, uint64_t seed,
                         struct rf_dataset *out, rf_err *e);
/* Writes the prepared-data-set directory DIR (created if missing): windows.npy (n x channels x T,
 * float32), labels.npy and subjects.npy (int32), artifacts.npy (int32 bit masks), with
 * hypnogram = 1 recordings.npy, and manifest.json, each atomically. Readable with
 * rf_dataset_read_dir. */
int rf_eegsim_write_dir(const rf_eegsim_data *d, const rf_eegsim_config *c, uint64_t seed,
                        const char *dir, rf_err *e);

#endif
