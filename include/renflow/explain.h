/* renflow explain: explanations of class-conditional flows (base RF_BASE_CLASS), for EEG
 * windows (rows of channels x samples, channel-major, e.g. a tsflow on `renflow eeg prepare`
 * output) and for feature vectors (any flow type).
 *
 * Notation: f maps data x to latent z (the model's standardisation included, so every x here is
 * in data units); the base of class c is N(mu_c, diag(sigma_c^2)); pi_c is a class prior (uniform
 * unless given); log p(x | c) = log N(f(x); mu_c, sigma_c) + log|det df/dx|;
 * log p(x) = log sum_c pi_c p(x | c); log p(c | x) = log pi_c + log p(x | c) - log p(x).
 * mu_c and sigma_c are per latent dimension (a base with tied parameters is expanded with
 * rf_base_class_moments).
 *
 * 1. Prototypes. The decoded class mean x_c = f^-1(mu_c): the point of class c whose latent
 *    code is the class centre (the mode of the class in latent space, not the mean of the class
 *    in data space; for stationary signals it is usually much quieter than real windows, so
 *    class-conditional samples are reported beside it).
 * 2. Out-of-distribution score: log p(x) per row (marginal over classes with the prior); the
 *    least likely rows are the candidates for artefacts.
 * 3. Counterfactuals: z = f(x) is moved from class a towards class b and decoded,
 *      shift:      z_t = z + t (mu_b - mu_a),
 *      transport:  z_t = z + t [(mu_b - mu_a) + (sigma_b / sigma_a - 1) (z - mu_a)]
 *    (at t = 1 transport maps N(mu_a, sigma_a) exactly onto N(mu_b, sigma_b): z_1 sits where z
 *    sat, in units of the class sd, relative to the other class), x_t = f^-1(z_t). Classes of
 *    stationary EEG differ mostly in power, i.e. in sigma rather than mu: shift then barely
 *    changes the class (measured on simulated rest vs arithmetic), transport does; transport is
 *    the default of rf_explain_run. A row that is extreme within its class (e.g. the most
 *    confidently classified one) stays extreme, in class-sd units, after transport.
 * 4. Contributions.
 *    Per scale: rf_flow_scale_report (renflow/tsflow.h) splits log p(x) exactly into per-scale
 *    parts (plus a class term for the marginal); dense flows have one scale.
 *    Per frequency band (windows): band Shapley values. Each channel of a window is split by
 *    FFT masking into disjoint band components x_1..x_B (the rfft bins with lo_b <= f < hi_b)
 *    and a residual r (every other bin: below the first band, between bands, above the last),
 *    so x = r + sum_b x_b exactly. For a set S of bands, x_S = r + sum_{b in S} x_b (bands not
 *    in S removed), and for a target v (log p(x), log p(x | c) or log p(c | x)) the Shapley
 *    value of band b is
 *      phi_b = sum_{S not containing b} |S|! (B - |S| - 1)! / B! [v(x_{S+b}) - v(x_S)],
 *    computed exactly from all 2^B subsets. Properties: sum_b phi_b = v(x) - v(r) (efficiency;
 *    the baseline r is the window with every band removed); a band with no content in the
 *    window has phi_b = 0; each phi_b is the average gain in v from adding band b's content
 *    over all orders of adding the bands. For a flow that is an orthogonal map with a standard
 *    normal base and no standardisation, v = log p(x) is additive over orthogonal band
 *    components and phi_b = -||x_b||^2 / 2 exactly (tested). phi for log p(c | x) equals
 *    phi for log p(x | c) minus phi for log p(x) (Shapley values are linear in v).
 *    Per feature (feature vectors): integrated gradients (Aumann-Shapley values) along the
 *    straight path from a baseline b (default: the model's standardisation centre, the training
 *    mean or median) to x,
 *      IG_j = (x_j - b_j) * integral_0^1 dv/dx_j (b + a (x - b)) da   (midpoint rule),
 *    with exact input gradients (every layer's backward). sum_j IG_j = v(x) - v(b) up to the
 *    quadrature error, which is reported (zero up to rounding when v is quadratic along the
 *    path, e.g. log p(x | c) of a linear flow).
 *    Unlike occlusion (setting one feature to its mean), the path never leaves the segment
 *    between b and x, so strongly correlated features do not produce points far outside the
 *    data (measured on Sleep-EDF features: occlusion gave changes of 10^6 nats). */
#ifndef RENFLOW_EXPLAIN_H
#define RENFLOW_EXPLAIN_H

#include "renflow/core.h"
#include "renflow/model.h"

struct rf_dataset;
struct cJSON;

/* ---------------- frequency bands ---------------- */
#define RF_EXPLAIN_MAX_BANDS 8
typedef struct rf_explain_bands {
    int n;
    double lo[RF_EXPLAIN_MAX_BANDS], hi[RF_EXPLAIN_MAX_BANDS]; /* Hz, [lo, hi) */
    char name[RF_EXPLAIN_MAX_BANDS][16];
} rf_explain_bands;
/* delta 1-4, theta 4-8, alpha 8-13, beta 13-30, gamma 30-45 Hz. */
void rf_explain_bands_default(rf_explain_bands *b);
/* 1 <= n <= RF_EXPLAIN_MAX_BANDS, 0 <= lo < hi, bands sorted and not overlapping; bands above
 * the Nyquist frequency fs / 2 are an error naming the band (fs <= 0: not checked). */
int rf_explain_bands_check(const rf_explain_bands *b, double fs, rf_err *e);

/* ---------------- scores ---------------- */
/* RF_OK for a class-conditional flow, else RF_EARG with a message naming the base. */
int rf_explain_check_model(const rf_flow *f, rf_err *e);
/* For n rows: logp[i] = log p(x_i) (marginal over classes with log_prior, NULL = uniform) and,
 * when log_post is non-NULL, log_post[i * C + c] = log p(c | x_i). Either output may be NULL.
 * Class-conditional flows only. */
int rf_explain_scores(const rf_flow *f, int n, const float *x, const float *log_prior,
                      float *logp, float *log_post, rf_err *e);
/* order[0..n) = row indices by ascending v (NaN first: treated as least likely); ties by index. */
void rf_explain_rank_ascending(const float *v, int n, int *order);

/* ---------------- 1. prototypes and class statistics ---------------- */
/* proto (C x D): the decoded class means f^-1(mu_c) in data units. latent_err (C values, may be
 * NULL): max_j |f(proto_c)_j - mu_cj| (round-trip check). */
int rf_explain_prototypes(const rf_flow *f, float *proto, double *latent_err, rf_err *e);
/* n_per_class class-conditional samples of every class: x (C * n_per_class x D, class after
 * class) and labels (may be NULL). */
int rf_explain_sample_classes(const rf_flow *f, int n_per_class, rf_rng *rng, float *x,
                              int *labels, rf_err *e);

/* Per-class mean and sd (population, 1/n) of every column; rows with a non-finite value are
 * skipped and counted in `skipped`. labels NULL: every row is class 0 (C must be 1). */
typedef struct rf_class_moments {
    int C, D;
    long *count;  /* C rows used */
    long skipped; /* rows with non-finite values */
    double *mean; /* C x D */
    double *sd;   /* C x D */
} rf_class_moments;
int rf_class_moments_compute(const float *x, const int *labels, int n, int D, int C,
                             rf_class_moments *m, rf_err *e);
void rf_class_moments_free(rf_class_moments *m);

/* Per-class mean Welch PSD (rf_welch_psd: Hann, 50 % overlap, density) of windows of
 * `channels` x T samples at rate fs with segments of seg_len samples. Windows with non-finite
 * values are skipped and counted. labels NULL: all windows are class 0 (C must be 1). */
typedef struct rf_class_spectra {
    int C, channels, nfreq;
    double fs;
    int64_t seg_len;
    long *count;  /* C windows averaged */
    long skipped;
    double *psd;  /* C x channels x nfreq, units^2 / Hz; psd[k] at k * fs / seg_len */
} rf_class_spectra;
/* The segment length used by explain: min(T, round(2 s * fs)), at least 8 samples (or T). */
int64_t rf_explain_seg_len(int T, double fs);
int rf_class_spectra_compute(const float *x, const int *labels, int n, int channels, int T, int C,
                             double fs, int64_t seg_len, rf_class_spectra *s, rf_err *e);
void rf_class_spectra_free(rf_class_spectra *s);
/* out[(c * channels + ch) * bands->n + b] = power of band b (rf_band_power over [lo, hi]) of the
 * mean PSD of class c and channel ch (NaN for classes without windows). */
void rf_class_spectra_band_powers(const rf_class_spectra *s, const rf_explain_bands *bands,
                                  double *out);

/* ---------------- 3. counterfactuals ---------------- */
typedef enum { RF_CF_SHIFT = 0, RF_CF_TRANSPORT = 1 } rf_cf_mode;
const char *rf_cf_mode_name(rf_cf_mode m);
int rf_cf_mode_parse(const char *s, rf_cf_mode *m);

typedef struct rf_counterfactual {
    int D, C, steps, from, to;
    rf_cf_mode mode;
    double *t;          /* steps values, 0 .. 1 evenly */
    float *x;           /* steps x D, data units (row 0 is the decoded input) */
    float *log_post;    /* steps x C: log p(c | x_t) with the prior */
    float *logp;        /* steps: log p(x_t) */
    double *latent_err; /* steps: max_j |f(x_t)_j - z_tj| (re-encoding check) */
} rf_counterfactual;
/* One row x (D floats), classes from != to, steps >= 2. */
int rf_explain_counterfactual(const rf_flow *f, const float *x, int from, int to, rf_cf_mode mode,
                              int steps, const float *log_prior, rf_counterfactual *cf, rf_err *e);
void rf_counterfactual_free(rf_counterfactual *cf);

/* ---------------- 4. contributions ---------------- */
/* Targets of the attributions: k < C is log p(x | c = k), k = C is log p(x) (prior log_prior).
 * (Attributions for log p(c | x) are the target c minus the target C.) */
static inline int rf_explain_n_targets(const rf_flow *f) { return f->base.n_classes + 1; }

/* FFT-mask band split of one channels x T window (double): comp ((B + 1) x channels x T), comp
 * b < B the content of band b, comp B the residual. Bins: rfft bin k at k * fs / T. */
int rf_explain_band_split(const float *x, int channels, int T, double fs,
                          const rf_explain_bands *bands, double *comp, rf_err *e);
/* Band Shapley values of n windows (channels x T, D = channels * T): phi[(i * K + k) * B + b]
 * for target k (K = rf_explain_n_targets), v_full / v_base (n x K, may be NULL) the targets at
 * x_i and at its residual. 2^B forward passes per window. */
int rf_explain_band_shapley(const rf_flow *f, int n, const float *x, int channels, int T,
                            double fs, const rf_explain_bands *bands, const float *log_prior,
                            double *phi, double *v_full, double *v_base, rf_err *e);
/* Targets of the input gradients: log p(x) (with the prior), or log p(c | x) for a class per row. */
typedef enum { RF_EXPLAIN_LOGP = 0, RF_EXPLAIN_LOGPOST = 1 } rf_explain_target;
/* grad[i * D + j] = dv(x_i) / dx_ij (data units); v (n, may be NULL) the target values. cls
 * (n classes) is needed for RF_EXPLAIN_LOGPOST. */
int rf_explain_input_grad(const rf_flow *f, int n, const float *x, rf_explain_target t,
                          const int *cls, const float *log_prior, float *grad, double *v,
                          rf_err *e);
/* Integrated gradients ig[i * D + j] of the target for n rows with `steps` midpoint points
 * (baseline NULL = f->shift); gap (n, may be NULL) = sum_j ig_ij - (v(x_i) - v(baseline)). */
int rf_explain_integrated_gradients(const rf_flow *f, int n, const float *x,
                                    const float *baseline, rf_explain_target t, const int *cls,
                                    const float *log_prior, int steps, double *ig, double *gap,
                                    rf_err *e);

/* ---------------- the whole report (`renflow explain`) ---------------- */
typedef struct rf_explain_opts {
    const char *format;          /* "svg" (default) or "png" */
    int top_k;                   /* least likely rows drawn and listed (default 8) */
    int window;                  /* counterfactual row; -1: a typical row of class `from`: the
                                    median log p(x | from) among its rows classified as `from` */
    int from, to;                /* counterfactual classes; -1: from = the window's label (its
                                    predicted class without labels, 0 when window = -1), to = the
                                    most probable other class of that window */
    rf_cf_mode cf_mode;          /* default transport */
    int cf_steps;                /* path points (default 5: t = 0, 0.25, ..., 1) */
    int samples_per_class;       /* class-conditional samples (default 200) */
    int max_windows_per_class;   /* rows per class for the band / feature attributions
                                    (default 32, seeded subsample) */
    const int *channels;         /* windows: channels drawn (indices); NULL: the first up to 3 */
    int n_channels;
    double rate;                 /* windows: sampling rate (Hz); 0: from the manifest */
    const float *log_prior;      /* C values, NULL = uniform */
    const char *prior_name;      /* recorded in the JSON ("uniform" when NULL) */
    const rf_explain_bands *bands; /* NULL: rf_explain_bands_default */
    uint64_t seed;
    const char *model_path, *data_path; /* recorded in the JSON (may be NULL) */
    int quiet;                   /* 0: progress lines on stderr */
} rf_explain_opts;
void rf_explain_opts_default(rf_explain_opts *o);

/* Window shape of the rows of d for model f: *channels x *T = f->D. From the data set
 * (prepared directories), else the tsflow spec, else 0 x 0 (feature vectors). RF_EFORMAT when
 * the data and the model disagree (message names both shapes). */
int rf_explain_data_shape(const rf_flow *f, const struct rf_dataset *d, int *channels, int *T,
                          rf_err *e);
/* Sampling rate of d from its manifest ("rate_hz" or "rate"), 0 when absent. */
double rf_explain_manifest_rate(const struct rf_dataset *d);
/* Channel names from the manifest ("channels"), else "ch1", "ch2", ...: name i written to buf. */
void rf_explain_channel_name(const struct rf_dataset *d, int i, char *buf, size_t n);
/* Resolves a class given as a name (d's class names) or a 0-based index below C. RF_EARG naming
 * the value and the known classes. */
int rf_explain_class_index(const struct rf_dataset *d, int C, const char *s, int *out, rf_err *e);
/* Resolves a comma-separated channel list (names, case-insensitive, also without an "EEG "
 * prefix, or 0-based indices) into idx (at most max); RF_EARG naming an unknown channel. */
int rf_explain_channel_list(const struct rf_dataset *d, int channels, const char *list, int *idx,
                            int max, int *n, rf_err *e);

/* Runs every explanation on the rows of d and writes OUTDIR/explain.json and the figures
 * (prototypes, spectra (windows only), ood, counterfactual, contributions; .svg or .png), each
 * atomically; OUTDIR is created when missing. *summary (may be NULL) receives the JSON document
 * (caller frees with cJSON_Delete). */
int rf_explain_run(const rf_flow *f, const struct rf_dataset *d, const rf_explain_opts *o,
                   const char *outdir, struct cJSON **summary, rf_err *e);

#endif
