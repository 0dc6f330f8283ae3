/* Private to src/cert: the measured "subject" (the flow or a reference density behind one
 * interface), metric objects, timing. */
#ifndef RF_CERT_INTERNAL_H
#define RF_CERT_INTERNAL_H

#include <stdint.h>

#include "renflow/cert.h"

struct cJSON;

/* Something to certify: log-densities, class posteriors, samples, analytic counts. */
typedef struct cert_subject {
    const char *name;   /* "model", "gaussian", ... */
    int D;
    int C;              /* classes (class-conditional), 0 otherwise */
    void *ctx;
    /* out[i] = log p(x_i | y_i) with labels, else log p(x_i) (class-conditional: uniform prior) */
    int (*logp)(void *ctx, const rf_matrix *x, const int *labels, double *out, rf_err *e);
    /* out (n x C) = p(c | x_i) with a uniform prior; NULL when C == 0 */
    int (*class_prob)(void *ctx, const rf_matrix *x, double *out, rf_err *e);
    /* n samples of the marginal (class-conditional: classes drawn uniformly) into out (n x D) */
    int (*sample)(void *ctx, int n, rf_rng *rng, float *out, rf_err *e);
    /* Everything inference needs that is not yet allocated (flow: a fresh workspace), then one
     * log-density pass over x; for the memory measurement. */
    int (*infer_fresh)(void *ctx, const rf_matrix *x, rf_err *e);
    double n_params;
    double param_bytes;     /* bytes of the stored parameters */
    double flops_logp;      /* per sample, analytic */
    double flops_sample;
    const char *flops_method;
    double train_seconds;   /* NAN: unknown */
    const char *train_seconds_method;
} cert_subject;

/* ---- metric objects: {value, unit, method, better, rated, ...} ---- */
/* better: "lower" | "higher" | "none"; ratings are added by rf_cert_rate */
struct cJSON *cert_metric(double value, const char *unit, const char *better, const char *method);
/* cJSON number, or null for a non-finite value (JSON has no NaN). */
struct cJSON *cert_num(double v);
void cert_add_num(struct cJSON *o, const char *key, double v);

/* ---- timing ---- */
typedef struct cert_timing {
    double median, p99, mean, min, max; /* seconds per run */
    int reps;
} cert_timing;
typedef int (*cert_run_fn)(void *ctx, rf_err *e);
int cert_time(cert_run_fn fn, void *ctx, int min_reps, int max_reps, double budget_s,
              cert_timing *t, rf_err *e);

/* ---- measurements over a subject (measure_quality.c, measure_cost.c) ---- */
/* "quality" metrics into metrics (object), calibration details into calib. */
int cert_measure_quality(const cert_subject *s, const rf_matrix *test, const int *labels,
                         const rf_cert_opts *o, rf_rng *rng, struct cJSON *metrics, rf_err *e);
int cert_measure_cost(const cert_subject *s, const rf_matrix *test, const rf_cert_opts *o,
                      rf_rng *rng, struct cJSON *metrics, rf_err *e);
int cert_measure_energy(const cert_subject *s, const rf_matrix *test, const rf_cert_opts *o,
                        rf_rng *rng, struct cJSON *metrics, struct cJSON **method, rf_err *e);
/* Peak RSS growth (*delta, bytes) while s->infer_fresh runs on x; method text in *how (static).
 * *delta = NAN when not measurable (not an error); errors only from the inference itself. */
int cert_peak_rss_delta(const cert_subject *s, const rf_matrix *x, double *delta, const char **how,
                        rf_err *e);

/* rows [0, n) of m cycled to exactly n rows (copy) */
int cert_rows(const rf_matrix *m, int n, rf_matrix *out, rf_err *e);

/* ---- subjects ---- */
typedef struct cert_flow_ctx cert_flow_ctx;
cert_flow_ctx *cert_flow_subject(const rf_flow *f, int batch, cert_subject *s, rf_err *e);
void cert_flow_ctx_free(cert_flow_ctx *c);

typedef struct cert_ref_ctx cert_ref_ctx;
/* A reference of one kind on train; class-conditional (one density per class) when labels and
 * n_classes > 0. */
cert_ref_ctx *cert_ref_subject(const char *kind, const rf_matrix *train, const int *labels,
                               int n_classes, const rf_refdensity_opts *ro, cert_subject *s,
                               rf_err *e);
void cert_ref_ctx_free(cert_ref_ctx *c);
struct cJSON *cert_ref_describe(const cert_ref_ctx *c);

/* ISO 8601 UTC now into buf (>= 21 chars). */
void cert_utc_now(char *buf, size_t n);

#endif
