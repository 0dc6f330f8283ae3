/* Quality measurements: test NLL (nats, bits/dim, perplexity per dimension), coverage of
 * highest-density regions, and for class-conditional subjects with labels accuracy, balanced
 * accuracy, macro-F1, Cohen's kappa (src/eval/metrics.c) and the expected calibration error. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cert_internal.h"
#include "renflow/metrics.h"

#define LN2 0.69314718055994530942

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int rf_cert_hdr_coverage(const double *sample_logp, int m, const double *test_logp, int n,
                         const double *levels, int n_levels, double *thresholds,
                         double *coverage, rf_err *e) {
    if (m < 1 || n < 1) return rf_err_set(e, RF_EARG, "HDR coverage needs samples and test rows (got %d and %d)", m, n);
    for (int k = 0; k < n_levels; k++)
        if (!(levels[k] > 0 && levels[k] < 1))
            return rf_err_set(e, RF_EARG, "HDR level %d is %g, expected a value in (0, 1)", k, levels[k]);
    double *s = malloc(sizeof(double) * (size_t)m);
    if (!s) return rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int i = 0; i < m; i++) s[i] = isfinite(sample_logp[i]) || sample_logp[i] > 0 ? sample_logp[i] : -INFINITY;
    qsort(s, (size_t)m, sizeof *s, cmp_double);
    for (int k = 0; k < n_levels; k++) {
        /* the fraction `level` of the sorted samples lies at or above index floor((1 - level) m) */
        int q = (int)floor((1.0 - levels[k]) * m + 1e-9); /* 1e-9: (1 - 0.9) * 100 is 9.999... */
        if (q < 0) q = 0;
        if (q > m - 1) q = m - 1;
        const double t = s[q];
        long in = 0;
        for (int i = 0; i < n; i++) in += !isnan(test_logp[i]) && test_logp[i] >= t;
        thresholds[k] = t;
        coverage[k] = (double)in / n;
    }
    free(s);
    return RF_OK;
}

int rf_cert_ece(const double *prob, const int *truth, int n, int C, int bins, double *ece, double *noise_floor,
                rf_err *e) {
    if (n < 1 || C < 2 || bins < 1) return rf_err_set(e, RF_EARG, "ECE needs rows, >= 2 classes and >= 1 bin (got %d, %d, %d)", n, C, bins);
    double *conf = calloc((size_t)bins, sizeof(double)), *acc = calloc((size_t)bins, sizeof(double));
    long *cnt = calloc((size_t)bins, sizeof(long));
    if (!conf || !acc || !cnt) {
        free(conf);
        free(acc);
        free(cnt);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const double *p = prob + (size_t)i * C;
        int best = -1;
        for (int c = 0; c < C; c++)
            if (isfinite(p[c]) && (best < 0 || p[c] > p[best])) best = c;
        if (best < 0) {
            bad++; /* no finite probability: counted as a confident error */
            cnt[bins - 1]++;
            conf[bins - 1] += 1.0;
            continue;
        }
        const double pc = p[best] < 0 ? 0 : p[best] > 1 ? 1 : p[best];
        int b = (int)(pc * bins);
        if (b >= bins) b = bins - 1;
        cnt[b]++;
        conf[b] += pc;
        acc[b] += best == truth[i];
    }
    double s = 0, nf = 0;
    for (int b = 0; b < bins; b++)
        if (cnt[b] > 0) {
            s += fabs(acc[b] - conf[b]) / n; /* (n_b / n) |acc_b/n_b - conf_b/n_b| */
            const double c = conf[b] / cnt[b];
            nf += (double)cnt[b] / n * sqrt(2 / M_PI * c * (1 - c) / cnt[b]);
        }
    *ece = s;
    if (noise_floor) *noise_floor = nf;
    free(conf);
    free(acc);
    free(cnt);
    (void)bad;
    return RF_OK;
}

int cert_measure_quality(const cert_subject *s, const rf_matrix *test, const int *labels,
                         const rf_cert_opts *o, rf_rng *rng, cJSON *metrics, rf_err *e) {
    const int n = test->n, D = s->D;
    const int conditional = s->C > 0 && labels != NULL;
    const int M = o->n_model_samples > 0 ? o->n_model_samples : 2000;
    double *lp = malloc(sizeof(double) * (size_t)n), *lpm = NULL, *slp = malloc(sizeof(double) * (size_t)M);
    double *prob = NULL;
    int *pred = NULL;
    rf_matrix smp = {0};
    rf_class_metrics cm = {0};
    int rc = (!lp || !slp) ? rf_err_set(e, RF_ENOMEM, "out of memory") : RF_OK;
    if (!rc) rc = s->logp(s->ctx, test, conditional ? labels : NULL, lp, e);
    if (rc) goto done;
    /* ---- NLL ---- */
    long nonfinite = 0;
    double sum = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(lp[i])) nonfinite++;
        sum -= lp[i];
    }
    const double nll = nonfinite ? NAN : sum / n;
    const char *cond = conditional ? "log p(x | y) of each test row given its label"
                       : s->C > 0  ? "log p(x) = log mean_c p(x | c) (uniform class prior)"
                                   : "log p(x)";
    char how[512];
    snprintf(how, sizeof how, "mean over the %d test rows of -%s, exact (change of variables for the flow, "
             "closed form for the references); null when a row's log-density is not finite", n, cond);
    cJSON *m = cert_metric(nll, "nats per example", "lower", how);
    cJSON_AddNumberToObject(m, "rows", n);
    cJSON_AddNumberToObject(m, "nonfinite_rows", (double)nonfinite);
    cJSON_AddBoolToObject(m, "conditional_on_label", conditional);
    cJSON_AddItemToObject(metrics, "nll", m);
    cJSON_AddItemToObject(metrics, "bits_per_dim",
                          cert_metric(nll / (D * LN2), "bits per dimension", "lower",
                                      "nll / (D ln 2): the test NLL in bits, per input dimension"));
    cJSON_AddItemToObject(metrics, "perplexity_per_dim",
                          cert_metric(exp(nll / D), "ratio (dimensionless)", "lower",
                                      "exp(nll / D) = 2^bits_per_dim: the per-dimension perplexity; positive "
                                      "whatever the sign of the NLL, so that index scaling applies (the index "
                                      "against a reference is exp((nll_ref - nll) / D), the geometric-mean "
                                      "likelihood ratio per dimension)"));
    /* ---- HDR coverage: thresholds from the subject's own samples, marginal density ---- */
    rc = rf_matrix_alloc(&smp, M, D, e);
    if (!rc) rc = s->sample(s->ctx, M, rng, smp.x, e);
    if (!rc) rc = s->logp(s->ctx, &smp, NULL, slp, e);
    if (!rc && conditional) {
        if (!(lpm = malloc(sizeof(double) * (size_t)n))) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        else rc = s->logp(s->ctx, test, NULL, lpm, e);
    }
    if (rc) goto done;
    {
        const int L = o->hdr_n_levels;
        double thr[8], cov[8], se[8], mad = 0, mx = 0, nf = 0;
        rc = rf_cert_hdr_coverage(slp, M, conditional ? lpm : lp, n, o->hdr_levels, L, thr, cov, e);
        if (rc) goto done;
        long smp_bad = 0;
        for (int i = 0; i < M; i++) smp_bad += !isfinite(slp[i]);
        for (int k = 0; k < L; k++) {
            const double a = o->hdr_levels[k], d = fabs(cov[k] - a);
            se[k] = sqrt(a * (1 - a) * (1.0 / n + 1.0 / M));
            mad += d / L;
            nf += sqrt(2 / M_PI) * se[k] / L;
            if (d > mx) mx = d;
        }
        snprintf(how, sizeof how,
                 "highest-density regions: for each level a the threshold t_a is the (1 - a) quantile of "
                 "log p over %d samples drawn from the model itself, coverage_a = fraction of the %d test rows "
                 "with log p >= t_a (marginal density, no labels); value = mean over the levels of "
                 "|coverage_a - a| (0 for a calibrated density)", M, n);
        m = cert_metric(L > 0 ? mad : NAN, "fraction", "lower", how);
        cJSON_AddItemToObject(m, "levels", cJSON_CreateDoubleArray(o->hdr_levels, L));
        cJSON *ta = cJSON_AddArrayToObject(m, "thresholds");
        for (int k = 0; k < L; k++) cJSON_AddItemToArray(ta, cert_num(thr[k]));
        cJSON_AddItemToObject(m, "coverage", cJSON_CreateDoubleArray(cov, L));
        cJSON_AddItemToObject(m, "standard_error", cJSON_CreateDoubleArray(se, L));
        cert_add_num(m, "max_abs_deviation", L > 0 ? mx : NAN);
        cert_add_num(m, "noise_floor", nf);
        cJSON_AddStringToObject(m, "noise_floor_method", "expected value for a calibrated density from the finite samples alone: "
                                                         "mean over the levels of sqrt(2 / pi) x standard_error");
        cJSON_AddNumberToObject(m, "model_samples", M);
        cJSON_AddNumberToObject(m, "nonfinite_sample_logp", (double)smp_bad);
        cJSON_AddItemToObject(metrics, "hdr_calibration_error", m);
    }
    /* ---- classification ---- */
    if (conditional && s->class_prob) {
        const int C = s->C;
        prob = malloc(sizeof(double) * (size_t)n * C);
        pred = malloc(sizeof(int) * (size_t)n);
        if (!prob || !pred) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
        rc = s->class_prob(s->ctx, test, prob, e);
        if (rc) goto done;
        for (int i = 0; i < n; i++) {
            const double *p = prob + (size_t)i * C;
            int best = 0; /* NaN probabilities never win (all NaN: class 0) */
            for (int c = 1; c < C; c++)
                if (!isnan(p[c]) && (isnan(p[best]) || p[c] > p[best])) best = c;
            pred[i] = best;
        }
        rc = rf_class_metrics_compute(labels, pred, n, C, &cm, e);
        if (rc) goto done;
        static const char *CLS = "argmax_c p(c | x) with a uniform class prior, against the given labels "
                                 "(src/eval/metrics.c)";
        m = cert_metric(cm.accuracy, "fraction", "higher", CLS);
        cJSON *cj = cJSON_AddArrayToObject(m, "confusion");
        for (int a = 0; a < C; a++) {
            cJSON *row = cJSON_CreateArray();
            for (int b = 0; b < C; b++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)cm.confusion[a * C + b]));
            cJSON_AddItemToArray(cj, row);
        }
        cJSON_AddStringToObject(m, "confusion_layout", "rows = true class, columns = predicted class");
        cJSON_AddItemToObject(metrics, "accuracy", m);
        cJSON_AddItemToObject(metrics, "balanced_accuracy",
                              cert_metric(cm.balanced_accuracy, "fraction", "higher",
                                          "mean recall over the classes present in the labels"));
        cJSON_AddItemToObject(metrics, "macro_f1",
                              cert_metric(cm.macro_f1, "fraction", "higher",
                                          "mean F1 over classes present in labels or predictions"));
        cJSON_AddItemToObject(metrics, "kappa",
                              cert_metric(cm.kappa, "dimensionless", "higher", "Cohen's kappa of predictions and labels"));
        double ece = NAN, enf = NAN;
        rc = rf_cert_ece(prob, labels, n, C, o->ece_bins, &ece, &enf, e);
        if (rc) goto done;
        snprintf(how, sizeof how,
                 "expected calibration error of p(y | x) (uniform prior): %d equal-width bins of the "
                 "top-class probability, sum_b (n_b / n) |accuracy_b - mean confidence_b|", o->ece_bins);
        m = cert_metric(ece, "fraction", "lower", how);
        cJSON_AddNumberToObject(m, "bins", o->ece_bins);
        cert_add_num(m, "noise_floor", enf);
        cJSON_AddStringToObject(m, "noise_floor_method", "expected ECE of a perfectly calibrated model on this sample: "
                                                         "sum_b (n_b / n) sqrt(2 / pi) sqrt(conf_b (1 - conf_b) / n_b)");
        cJSON_AddItemToObject(metrics, "ece", m);
    }
done:
    rf_class_metrics_free(&cm);
    rf_matrix_free(&smp);
    free(lp);
    free(lpm);
    free(slp);
    free(prob);
    free(pred);
    return rc;
}
