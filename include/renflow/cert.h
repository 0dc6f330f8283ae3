/* renflow cert: model certificates (`renflow certify`, issue 5).
 *
 * A certificate measures one trained flow on a named test set, and the same quantities for
 * reference densities fitted on the same training rows (renflow/refdensity.h: Gaussian, GMM,
 * KDE), then rates every comparable metric A-E by index scaling against one reference:
 *   quality     test NLL (nats, bits/dim, perplexity per dimension), coverage of highest-density
 *               regions, and for class-conditional models with labels accuracy, balanced
 *               accuracy, macro-F1, Cohen's kappa and the expected calibration error of p(y|x);
 *   cost        parameters, analytic FLOPs per sample (forward / inverse), training time (when
 *               the model file records it), latency per sample and per batch (median, p99),
 *               sampling rate, peak resident memory of inference;
 *   energy      RAPL (powercap energy_uj, or perf power events) where readable, otherwise
 *               estimated from CPU time x a per-core power figure, marked "estimated";
 *   guarantees  invertibility error on the test set, on model samples and on uniform points of
 *               the test data's bounding box; log-determinant against a finite-difference
 *               Jacobian; local Lipschitz constants of every layer, of the flow and of its
 *               inverse; each with its threshold and a pass/fail;
 *   provenance  SHA-256 of the model and data files, the model's spec and meta, seed, library
 *               version, compiler and flags, CPU, date.
 * The certificate is one JSON document, schema "renflow-certificate/1"
 * (docs/certificate.schema.json, explained field by field in docs/certificates.md). */
#ifndef RENFLOW_CERT_H
#define RENFLOW_CERT_H

#include <stdint.h>

#include "renflow/core.h"
#include "renflow/data.h"
#include "renflow/model.h"
#include "renflow/refdensity.h"

struct cJSON;

#define RF_CERT_SCHEMA_ID "renflow-certificate/1"
/* Per-core power used when no energy counter is readable: of the order of TDP / cores of current
 * x86 server and desktop CPUs (e.g. 85 W / 8 cores = 10.6 W); override with watts_per_core. */
#define RF_CERT_DEFAULT_WATTS_PER_CORE 10.0

typedef struct rf_cert_opts {
    uint64_t seed;            /* subsamples, model samples, box points, references: default 1 */
    /* ---- quality ---- */
    int n_model_samples;      /* samples for the HDR thresholds and invertibility: 2000 */
    int hdr_n_levels;         /* levels used from hdr_levels: 5 */
    double hdr_levels[8];     /* 0.5 0.8 0.9 0.95 0.99 */
    int ece_bins;             /* equal-width confidence bins: 15 */
    /* ---- cost ---- */
    int batch;                /* rows of a batch (batch latency, sampling, memory): 256 */
    int latency_reps;         /* at most this many timed runs per latency: 200 */
    int latency_min_reps;     /* at least this many (even past the budget): 5 */
    double latency_budget_s;  /* time budget per latency measurement: 1.0 */
    /* ---- energy ---- */
    const char *rapl_root;    /* powercap root; NULL: $RF_RAPL_ROOT, else /sys/class/powercap */
    const char *perf_root;    /* perf power PMU; NULL: $RF_PERF_POWER_ROOT, else
                                 /sys/bus/event_source/devices/power */
    double watts_per_core;    /* <= 0: RF_CERT_DEFAULT_WATTS_PER_CORE */
    double energy_budget_s;   /* seconds of each energy workload: 1.0 */
    /* ---- guarantees ---- */
    int guarantee_points;     /* test rows for the log-det and Lipschitz checks: 8 */
    int box_points;           /* uniform points in the test data's bounding box: 4 */
    int max_rows;             /* test rows for invertibility (0 = all): 0 */
    int jacobian_max_dim;     /* full finite-difference Jacobians up to this D (above: the
                                 log-det check is not verified, Lipschitz by Lanczos): 512 */
    int lanczos_steps;        /* Krylov (Golub-Kahan-Lanczos) steps for D > jacobian_max_dim: 50 */
    double fd_step;           /* finite-difference step relative to each input's scale: 1e-2 */
    double inv_tol;           /* invertibility: max |f^-1(f(x)) - x| <= inv_tol * max(1, max|x|): 1e-3 */
    double logdet_tol;        /* log-det: |error| <= logdet_tol * max(1, D) nats: 1e-2 */
    double cond_max;          /* Lipschitz: local condition sigma_max / sigma_min <= cond_max: 1e7 */
    /* ---- references ---- */
    const rf_refdensity_opts *ref_opts; /* NULL: defaults (seed = seed) */
    int ref_max_dim;          /* no references above this dimension (full covariances): 1024 */
    const char *rating_reference; /* "gaussian" (default) | "gmm" | "kde" */
    /* ---- provenance (any may be NULL) ---- */
    const char *model_path, *data_path, *labels_path, *train_path, *train_labels_path;
    const char *command;      /* the command line, recorded as given */
    int progress;             /* progress lines on stderr: 0 */
} rf_cert_opts;
void rf_cert_opts_default(rf_cert_opts *o);

/* Certifies f on test (rows in the model's input units; labels may be NULL) and, with train
 * (may be NULL), fits and measures the references on it (train_labels: class-conditional
 * references for a class-conditional model). Returns the certificate (cJSON_Delete), or NULL
 * and e. Failures of the model itself (NaN output, non-invertible layers) are measurements, not
 * errors: they appear as failing guarantees. */
struct cJSON *rf_certify(const rf_flow *f, const rf_matrix *test, const int *labels,
                         const rf_matrix *train, const int *train_labels, const rf_cert_opts *o,
                         rf_err *e);

/* Hook for further outputs made from the certificate (the one-page label): called after
 * certificate.json is in place. */
typedef int (*rf_cert_render_fn)(const struct cJSON *cert, const char *out_dir, void *ctx,
                                 rf_err *e);
/* Creates out_dir (and parents), writes out_dir/certificate.json atomically, then calls render
 * (may be NULL). */
int rf_cert_write(const struct cJSON *cert, const char *out_dir, rf_cert_render_fn render,
                  void *ctx, rf_err *e);

/* ---- pieces (used by rf_certify; public for tests and other tools) ---- */

/* Highest-density-region coverage. For each level a, thresholds[k] is the (1 - a) quantile of
 * the model-sample log-densities (so a fraction a of the model's mass lies above it) and
 * coverage[k] the fraction of test log-densities >= thresholds[k]. A calibrated model gives
 * coverage ~ a. Non-finite test values count as outside; non-finite sample values as lowest. */
int rf_cert_hdr_coverage(const double *sample_logp, int m, const double *test_logp, int n,
                         const double *levels, int n_levels, double *thresholds,
                         double *coverage, rf_err *e);

/* Expected calibration error of class probabilities prob (n x C, rows sum to 1) against truth:
 * sum over `bins` equal-width bins of max-probability of (n_b / n) |accuracy_b - confidence_b|.
 * noise_floor (may be NULL): the ECE a perfectly calibrated model would show on average from the
 * finite sample alone, sum_b (n_b / n) sqrt(2 / pi) sqrt(conf_b (1 - conf_b) / n_b). */
int rf_cert_ece(const double *prob, const int *truth, int n, int C, int bins, double *ece,
                double *noise_floor, rf_err *e);

/* Analytic floating-point operations per sample (a multiply-add counts 2; exp, log, tanh, sqrt,
 * division 1 each), forward (x -> z plus the base log-density) and inverse (z -> x, the base
 * draw's arithmetic excluded). breakdown (may be NULL) receives a JSON array with one entry per
 * layer: {index, kind, forward, inverse, formula}. */
int rf_cert_flow_flops(const rf_flow *f, double *forward, double *inverse,
                       struct cJSON **breakdown, rf_err *e);

/* Energy meter. Method, in order of preference: "rapl-powercap" (sum of the package zones
 * intel-rapl:N/energy_uj under rapl_root, wrap-around from max_energy_range_uj), "perf-power"
 * (perf_event_open on the power PMU's energy-pkg event), else "estimated-cpu-time" (process CPU
 * seconds x watts_per_core). */
typedef enum { RF_ENERGY_RAPL = 0, RF_ENERGY_PERF = 1, RF_ENERGY_ESTIMATED = 2 } rf_energy_method;
typedef struct rf_energy_meter {
    rf_energy_method method;
    char root[512];
    int n_zones;
    char zones[8][64];          /* rapl: zone directory names */
    double max_range_uj[8];
    double start_uj[8];
    int perf_fd;
    double perf_scale;          /* joules per count */
    uint64_t perf_start;
    double watts_per_core;
    double wall0, cpu0;
    char note[512];             /* why a measured method was not used, when it was not */
} rf_energy_meter;
typedef struct rf_energy_reading {
    double joules;   /* measured or estimated energy */
    double wall_s, cpu_s;
    double estimated_joules; /* cpu_s x watts_per_core, always given for comparison */
} rf_energy_reading;
/* Chooses the method (NULL roots: the environment, then the system paths) and starts. */
void rf_energy_begin(rf_energy_meter *m, const char *rapl_root, const char *perf_root,
                     double watts_per_core);
/* Reads the counters; the meter may be read again (cumulative from begin). */
int rf_energy_read(rf_energy_meter *m, rf_energy_reading *r, rf_err *e);
void rf_energy_end(rf_energy_meter *m);
const char *rf_energy_method_name(rf_energy_method k);
/* {method, measured (bool), source, watts_per_core (estimated only), note} */
struct cJSON *rf_energy_method_json(const rf_energy_meter *m);

/* Guarantees of f on the test rows: invertibility, log-det agreement, Lipschitz constants,
 * input range; JSON as in the schema ("guarantees"). rng draws the subsample, model samples and
 * box points. */
struct cJSON *rf_cert_guarantees(const rf_flow *f, const rf_matrix *test, const rf_cert_opts *o,
                                 rf_rng *rng, rf_err *e);

/* ---- ratings (index scaling) ----
 * index = ref / value for lower-is-better metrics, value / ref for higher-is-better ones, on the
 * metric's rating basis (value itself, or 1 - value for scores such as accuracy) plus a floor
 * (index = (ref + floor) / (value + floor)); index > 1: better than the reference. The letter
 * comes from fixed boundaries on the index: A >= 2, B >= 1.25, C >= 0.8, D >= 0.5, else E
 * (symmetric on a log scale around the reference, which itself gets C). */
#define RF_CERT_N_BOUNDS 4
extern const double rf_cert_bounds[RF_CERT_N_BOUNDS]; /* {2.0, 1.25, 0.8, 0.5} (constant) */
/* NAN when value or ref is not finite, or either side (with the floor) is <= 0. Clamped to
 * [1e-6, 1e6]. */
double rf_cert_index(double value, double ref, int higher_better, double floor);
/* 'A'..'E' from an index; '?' when the index is NAN. */
char rf_cert_rating(double index);
/* Adds "index" and "rating" to every rated metric of the model and of each reference, and the
 * "rating" section (reference, boundaries, weights, compound, quality and resource indices),
 * against the reference named `reference`. Metrics lacking a value or a reference value stay
 * unrated (rating null, with "unrated_reason"). When a guarantee fails, the compound rating is
 * E ("capped_by_guarantees": true). */
int rf_cert_rate(struct cJSON *cert, const char *reference, rf_err *e);

/* ---- provenance ---- */
/* {library, version, compiler, c_standard, flags{...}, openblas, cpu_model, logical_cpus,
 * kernel, created (UTC ISO 8601)} */
struct cJSON *rf_cert_environment_json(void);
/* {path, kind: "file" | "directory", sha256, bytes; a directory also files: [{name, sha256,
 * bytes}] and sha256_of}; NULL path: NULL. Errors name the path. A directory's sha256 is that of
 * the lines "NAME SHA256\n" (sorted by name) of its .npy files when it has any (the data: the same
 * arrays prepared in another place give the same digest, whatever their manifest records), else
 * of all its regular files. */
struct cJSON *rf_cert_file_json(const char *path, rf_err *e);
/* 1 when a file name ends in ".npy" (the data files of a directory's digest). */
int rf_cert_is_npy_name(const char *name);

#endif
