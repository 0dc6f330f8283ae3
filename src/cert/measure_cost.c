/* Cost measurements: parameters, analytic FLOPs, training time, latency (median and p99 of
 * repeated timed runs, one row and one batch), sampling rate, and the peak resident memory of
 * inference (the growth of the process's peak RSS while a fresh inference state runs one batch,
 * after the peak has been reset through /proc/self/clear_refs).
 *
 * FLOP convention (as refdensity.h): a multiply-add counts 2, exp / log / tanh / sqrt / division
 * 1 each, a ReLU or max 1, GELU 4; memory moves, comparisons and random draws count 0. Per layer
 * (D the dimension; for the time-series layers A = channels x length of the active block):
 *   standardise     2D (subtract, divide) forward and inverse
 *   actnorm         2D / 2D;   ts_actnorm 2A / 2A;   ts_squeeze (Haar) 2A / 2A
 *   permute         0
 *   lu_linear       2D^2 / 2D^2 (x W^T; two triangular solves); forming W from its LU factors is
 *                   once per batch and not counted per sample
 *   ts_conv1x1      2 C A / 2 C A (a C x C matrix at every time step)
 *   coupling        MLP(d_a -> hidden x n_hidden -> d_b n_t) + d_b x transform
 *   autoregressive  forward MLP(D -> ... -> D n_t) + D x transform; inverse D such passes
 *   ts_coupling     T x conv(c_a -> hidden ... -> c_b n_t, kernel k) + c_b T x transform
 *   MLP             2 (n_in h + (L - 1) h^2 + h n_out) + L h act + (residual) (L - 1) h
 *   conv            per position 2 k (c_in h + (L - 1) h^2 + h c_out) + L h act (+ residual)
 *   transform       affine 7 (soft clamp 3, exp 1, scale and shift 2, log-det 1; 4 without a
 *                   clamp) either way; rational-quadratic spline with K bins 16K + 33 forward and
 *                   16K + 43 inverse (softmax of widths and heights, softplus derivatives, knot
 *                   positions, the rational function, its log-derivative; the inverse adds the
 *                   quadratic solve) - an upper bound: points in the identity tails cost less
 *   base log p      normal 2D + 2; diagonal 4D + 2; class-conditional C (4D + 2) + 3C + 2
 *                   (marginal over classes); base draw arithmetic 0 (normal) or 2D */
#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cert_internal.h"

/* ================================================================ FLOPs */
static double act_cost(const char *act) {
    if (!act) return 1;
    return strcmp(act, "gelu") == 0 ? 4 : 1;
}

static int jint(const cJSON *j, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

static double jnum(const cJSON *j, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static const char *jstr(const cJSON *j, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* per element of a transform, and its parameter count */
static void xform_cost(const cJSON *lj, double *fwd, double *inv, int *nt) {
    const char *t = jstr(lj, "transform");
    if (t && strcmp(t, "rqs") == 0) {
        const int K = jint(lj, "bins", 8);
        *fwd = 16.0 * K + 33;
        *inv = 16.0 * K + 43;
        *nt = 3 * K - 1;
    } else {
        const double clamp = jnum(lj, "clamp", 1);
        *fwd = *inv = clamp > 0 ? 7 : 4;
        *nt = 2;
    }
}

static double dense_cost(const cJSON *cond, double n_in, double n_out) {
    const double h = jint(cond, "hidden", 0), L = jint(cond, "n_hidden", 1);
    const int res = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cond, "residual"));
    return 2 * (n_in * h + (L - 1) * h * h + h * n_out) + L * h * act_cost(jstr(cond, "act")) + (res ? (L - 1) * h : 0);
}

static double conv_cost(const cJSON *cond, double c_in, double c_out) {
    const double h = jint(cond, "hidden", 0), L = jint(cond, "n_hidden", 1), k = jint(cond, "kernel", 1);
    const int res = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cond, "residual"));
    return 2 * k * (c_in * h + (L - 1) * h * h + h * c_out) + L * h * act_cost(jstr(cond, "act")) + (res ? (L - 1) * h : 0);
}

/* FLOPs of one layer from its architecture JSON; NAN for an unknown kind. */
static void layer_flops(const cJSON *lj, double *fwd, double *inv, const char **formula) {
    const char *kind = jstr(lj, "kind");
    const double D = jint(lj, "dim", 0);
    const double C = jint(lj, "channels", 1), T = jint(lj, "length", 1), A = C * T;
    const cJSON *cond = cJSON_GetObjectItemCaseSensitive(lj, "conditioner");
    *fwd = *inv = NAN;
    *formula = "unknown layer kind: not counted";
    if (!kind) return;
    if (!strcmp(kind, "actnorm")) {
        *fwd = *inv = 2 * D;
        *formula = "2D";
    } else if (!strcmp(kind, "permute")) {
        *fwd = *inv = 0;
        *formula = "0 (a permutation moves memory only)";
    } else if (!strcmp(kind, "lu_linear")) {
        *fwd = *inv = 2 * D * D;
        *formula = "2D^2 (x W^T; inverse: two triangular solves)";
    } else if (!strcmp(kind, "coupling")) {
        const int parity = jint(lj, "parity", 0);
        const double da = parity ? floor(D / 2) : ceil(D / 2), db = D - da;
        double tf, ti;
        int nt;
        xform_cost(lj, &tf, &ti, &nt);
        const double mlp = dense_cost(cond, da, db * nt);
        *fwd = mlp + db * tf;
        *inv = mlp + db * ti;
        *formula = "MLP(d_a -> d_b n_t) + d_b x transform";
    } else if (!strcmp(kind, "autoregressive")) {
        double tf, ti;
        int nt;
        xform_cost(lj, &tf, &ti, &nt);
        const double made = dense_cost(cond, D, D * nt);
        *fwd = made + D * tf;
        *inv = D * made + D * ti;
        *formula = "MADE(D -> D n_t) + D x transform; inverse: D MADE passes";
    } else if (!strcmp(kind, "ts_squeeze")) {
        *fwd = *inv = 2 * A;
        *formula = "2A (Haar pairs)";
    } else if (!strcmp(kind, "ts_actnorm")) {
        *fwd = *inv = 2 * A;
        *formula = "2A";
    } else if (!strcmp(kind, "ts_conv1x1")) {
        *fwd = *inv = 2 * C * A;
        *formula = "2 C A (C x C at every time step)";
    } else if (!strcmp(kind, "ts_coupling")) {
        const double ca = floor(C / 2), cb = C - ca;
        double tf, ti;
        int nt;
        xform_cost(lj, &tf, &ti, &nt);
        const double conv = T * conv_cost(cond, ca, cb * nt);
        *fwd = conv + cb * T * tf;
        *inv = conv + cb * T * ti;
        *formula = "T x conv(c_a -> c_b n_t, kernel k) + c_b T x transform";
    }
}

int rf_cert_flow_flops(const rf_flow *f, double *forward, double *inverse, cJSON **breakdown, rf_err *e) {
    const double D = f->D;
    double fw = 2 * D, iv = 2 * D; /* standardisation */
    cJSON *arr = breakdown ? cJSON_CreateArray() : NULL;
    if (breakdown && !arr) return rf_err_set(e, RF_ENOMEM, "out of memory");
    if (arr) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", "standardise");
        cJSON_AddNumberToObject(o, "forward", 2 * D);
        cJSON_AddNumberToObject(o, "inverse", 2 * D);
        cJSON_AddStringToObject(o, "formula", "2D");
        cJSON_AddItemToArray(arr, o);
    }
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        cJSON *lj = l->ops->to_json ? l->ops->to_json(l) : NULL;
        double a = NAN, b = NAN;
        const char *formula = "no architecture description";
        if (lj) layer_flops(lj, &a, &b, &formula);
        fw += a;
        iv += b;
        if (arr) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "index", k);
            cJSON_AddStringToObject(o, "kind", l->ops->kind);
            cJSON_AddItemToObject(o, "forward", cert_num(a));
            cJSON_AddItemToObject(o, "inverse", cert_num(b));
            cJSON_AddStringToObject(o, "formula", formula);
            cJSON_AddItemToArray(arr, o);
        }
        cJSON_Delete(lj);
    }
    double bl = 0, bs = 0;
    const char *bf = "";
    switch (f->base.kind) {
    case RF_BASE_NORMAL: bl = 2 * D + 2; bs = 0; bf = "2D + 2"; break;
    case RF_BASE_DIAG: bl = 4 * D + 2; bs = 2 * D; bf = "4D + 2; draw 2D"; break;
    case RF_BASE_CLASS: {
        const double C = f->base.n_classes;
        bl = C * (4 * D + 2) + 3 * C + 2;
        bs = 2 * D;
        bf = "C (4D + 2) + 3C + 2 (marginal over classes); draw 2D";
        break;
    }
    }
    fw += bl;
    iv += bs;
    if (arr) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", "base");
        cJSON_AddNumberToObject(o, "forward", bl);
        cJSON_AddNumberToObject(o, "inverse", bs);
        cJSON_AddStringToObject(o, "formula", bf);
        cJSON_AddItemToArray(arr, o);
        *breakdown = arr;
    }
    *forward = fw;
    *inverse = iv;
    return RF_OK;
}

/* ================================================================ memory */
static long status_kb(const char *key) {
    FILE *fp = fopen("/proc/self/status", "r");
    if (!fp) return -1;
    char line[256];
    long kb = -1;
    const size_t k = strlen(key);
    while (fgets(line, sizeof line, fp))
        if (strncmp(line, key, k) == 0) {
            kb = strtol(line + k, NULL, 10);
            break;
        }
    fclose(fp);
    return kb;
}

static int reset_peak_rss(void) {
    FILE *fp = fopen("/proc/self/clear_refs", "w");
    if (!fp) return 0;
    int ok = fputs("5", fp) >= 0;
    ok &= fclose(fp) == 0;
    return ok;
}

int cert_peak_rss_delta(const cert_subject *s, const rf_matrix *x, double *delta, const char **how, rf_err *e) {
    *delta = NAN;
    malloc_trim(0); /* freed memory goes back to the system, so new allocations show up in RSS */
    if (!reset_peak_rss()) {
        *how = "not measurable: /proc/self/clear_refs could not reset the peak RSS";
        return s->infer_fresh(s->ctx, x, e);
    }
    const long rss0 = status_kb("VmRSS:");
    int rc = s->infer_fresh(s->ctx, x, e);
    const long hwm = status_kb("VmHWM:");
    if (rc) return rc;
    if (rss0 < 0 || hwm < 0) {
        *how = "not measurable: /proc/self/status has no VmRSS / VmHWM";
        return RF_OK;
    }
    *how = "peak RSS reset (/proc/self/clear_refs = 5, after malloc_trim), then VmHWM - VmRSS(before) "
           "across a fresh inference state (flow: a new workspace) and one log-density pass over the batch";
    *delta = 1024.0 * (double)(hwm - rss0 > 0 ? hwm - rss0 : 0);
    return RF_OK;
}

/* ================================================================ latency */
typedef struct run_ctx {
    const cert_subject *s;
    const rf_matrix *x;
    double *out;
    float *smp;
    int n;
    rf_rng *rng;
} run_ctx;

static int run_logp(void *vc, rf_err *e) {
    run_ctx *c = vc;
    return c->s->logp(c->s->ctx, c->x, NULL, c->out, e);
}

static int run_sample(void *vc, rf_err *e) {
    run_ctx *c = vc;
    return c->s->sample(c->s->ctx, c->n, c->rng, c->smp, e);
}

static cJSON *timing_metric(const cert_timing *t, const char *unit, const char *how) {
    cJSON *m = cert_metric(t->median, unit, "lower", how);
    cert_add_num(m, "p99", t->p99);
    cert_add_num(m, "mean", t->mean);
    cert_add_num(m, "min", t->min);
    cert_add_num(m, "max", t->max);
    cJSON_AddNumberToObject(m, "reps", t->reps);
    return m;
}

int cert_measure_cost(const cert_subject *s, const rf_matrix *test, const rf_cert_opts *o, rf_rng *rng,
                      cJSON *metrics, rf_err *e) {
    const int B = o->batch > 0 ? o->batch : 256, D = s->D;
    rf_matrix one = {0}, batch = {0};
    double *out = malloc(sizeof(double) * (size_t)B);
    float *smp = rf_floats((size_t)B * D, e);
    int rc = !out || !smp ? rf_err_set(e, RF_ENOMEM, "out of memory") : RF_OK;
    if (!rc) rc = cert_rows(test, 1, &one, e);
    if (!rc) rc = cert_rows(test, B, &batch, e);
    if (rc) goto done;
    char how[600];
    cJSON *m = cert_metric(s->n_params, "parameters", "lower",
                           s->C > 0 || strcmp(s->name, "model") ? "free parameters of the density (all classes)"
                                                                : "trainable parameters (float32), base distribution included; "
                                                                  "the standardisation (2D floats) is not counted");
    cJSON_AddItemToObject(metrics, "n_params", m);
    cJSON_AddItemToObject(metrics, "flops_log_density",
                          cert_metric(s->flops_logp, "FLOP per example", "lower", s->flops_method));
    cJSON_AddItemToObject(metrics, "flops_sample", cert_metric(s->flops_sample, "FLOP per sample", "lower", s->flops_method));
    cJSON_AddItemToObject(metrics, "train_seconds", cert_metric(s->train_seconds, "s", "lower", s->train_seconds_method));
    /* ---- latency ---- */
    run_ctx rc1 = {.s = s, .x = &one, .out = out, .smp = smp, .n = 1, .rng = rng};
    cert_timing t;
    rc = cert_time(run_logp, &rc1, o->latency_min_reps, o->latency_reps, o->latency_budget_s, &t, e);
    if (rc) goto done;
    snprintf(how, sizeof how,
             "wall-clock time of one log-density call on 1 row (a test row), after one warm-up call; %d timed "
             "calls (at most %d, budget %.3g s); value = median, p99 = nearest-rank 99th percentile; %d threads",
             t.reps, o->latency_reps, o->latency_budget_s, rf_get_threads());
    cJSON_AddItemToObject(metrics, "latency_sample", timing_metric(&t, "s", how));
    run_ctx rcb = {.s = s, .x = &batch, .out = out, .smp = smp, .n = B, .rng = rng};
    rc = cert_time(run_logp, &rcb, o->latency_min_reps, o->latency_reps, o->latency_budget_s, &t, e);
    if (rc) goto done;
    snprintf(how, sizeof how,
             "wall-clock time of one log-density call on a batch of %d rows (test rows, cycled when fewer), after "
             "one warm-up call; %d timed calls (at most %d, budget %.3g s); value = median per batch, p99 = "
             "nearest-rank 99th percentile; %d threads", B, t.reps, o->latency_reps, o->latency_budget_s, rf_get_threads());
    m = timing_metric(&t, "s per batch", how);
    cJSON_AddNumberToObject(m, "batch", B);
    cert_add_num(m, "per_row_median", t.median / B);
    cJSON_AddItemToObject(metrics, "latency_batch", m);
    /* ---- sampling ---- */
    rc = cert_time(run_sample, &rcb, o->latency_min_reps, o->latency_reps, o->latency_budget_s, &t, e);
    if (rc) goto done;
    snprintf(how, sizeof how,
             "batch size / median wall-clock time of drawing a batch of %d samples (%d timed calls after one "
             "warm-up; at most %d, budget %.3g s); p99_rate uses the 99th-percentile time; %d threads",
             B, t.reps, o->latency_reps, o->latency_budget_s, rf_get_threads());
    m = cert_metric(t.median > 0 ? B / t.median : NAN, "samples/s", "higher", how);
    cert_add_num(m, "p99_rate", t.p99 > 0 ? B / t.p99 : NAN);
    cJSON_AddNumberToObject(m, "batch", B);
    cJSON_AddNumberToObject(m, "reps", t.reps);
    cJSON_AddItemToObject(metrics, "sampling_rate", m);
    /* ---- memory ---- */
    {
        const char *mhow = "";
        double delta = NAN;
        rc = cert_peak_rss_delta(s, &batch, &delta, &mhow, e);
        if (rc) goto done;
        snprintf(how, sizeof how, "parameter bytes (analytic: %s) + peak RSS growth of inference on a batch of %d rows: %s",
                 strcmp(s->name, "model") ? "n_params x 8, double" : "(n_params + 2D) x 4, float32", B, mhow);
        m = cert_metric(s->param_bytes + delta, "bytes", "lower", how);
        cert_add_num(m, "parameter_bytes", s->param_bytes);
        cert_add_num(m, "inference_rss_growth_bytes", delta);
        cJSON_AddNumberToObject(m, "batch", B);
        cJSON_AddItemToObject(metrics, "peak_memory", m);
    }
done:
    rf_matrix_free(&one);
    rf_matrix_free(&batch);
    free(out);
    rf_free(smp);
    return rc;
}
