/* Ratings by index scaling (as in machine-learning energy labels, e.g. Fischer et al., "Towards
 * more sustainable and trustworthy reporting in machine learning", and their elex labels): every
 * rated metric is turned into an index against one reference model, index > 1 meaning better than
 * the reference, and the index into a letter by fixed boundaries. A compound index is the weighted
 * geometric mean of the indices (the indices are ratios), half the weight on quality and half on
 * resources, split evenly over the rated metrics of each group. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cert_internal.h"

const double rf_cert_bounds[RF_CERT_N_BOUNDS] = {2.0, 1.25, 0.8, 0.5};

typedef struct rated_metric {
    const char *id;
    const char *group;  /* "quality" | "resources" */
    int higher_better;  /* on the basis */
    int one_minus;      /* basis = 1 - value (scores in [0, 1]: their error) */
    double floor;       /* added to value and reference */
} rated_metric;

static const rated_metric RATED[] = {
    {"perplexity_per_dim", "quality", 0, 0, 0},
    {"hdr_calibration_error", "quality", 0, 0, 0.01},
    {"accuracy", "quality", 0, 1, 0.01},
    {"macro_f1", "quality", 0, 1, 0.01},
    {"kappa", "quality", 0, 1, 0.01},
    {"ece", "quality", 0, 0, 0.01},
    {"latency_sample", "resources", 0, 0, 0},
    {"latency_batch", "resources", 0, 0, 0},
    {"sampling_rate", "resources", 1, 0, 0},
    {"peak_memory", "resources", 0, 0, 0},
    {"n_params", "resources", 0, 0, 0},
    {"flops_log_density", "resources", 0, 0, 0},
    {"energy_log_density", "resources", 0, 0, 0},
    {"train_seconds", "resources", 0, 0, 0},
};
#define N_RATED ((int)(sizeof RATED / sizeof *RATED))

double rf_cert_index(double value, double ref, int higher_better, double floor) {
    if (!isfinite(value) || !isfinite(ref)) return NAN;
    const double v = value + floor, r = ref + floor;
    if (!(v > 0) || !(r > 0)) return NAN;
    double idx = higher_better ? v / r : r / v;
    if (idx < 1e-6) idx = 1e-6;
    if (idx > 1e6) idx = 1e6;
    return idx;
}

char rf_cert_rating(double index) {
    if (isnan(index)) return '?';
    for (int k = 0; k < RF_CERT_N_BOUNDS; k++)
        if (index >= rf_cert_bounds[k]) return (char)('A' + k);
    return 'E';
}

static const rated_metric *find_rated(const char *id) {
    for (int k = 0; k < N_RATED; k++)
        if (!strcmp(RATED[k].id, id)) return &RATED[k];
    return NULL;
}

static double metric_field(const cJSON *metrics, const char *id, const char *field) {
    const cJSON *m = metrics ? cJSON_GetObjectItemCaseSensitive(metrics, id) : NULL;
    const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, field) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static double metric_value(const cJSON *metrics, const char *id) { return metric_field(metrics, id, "value"); }

static void set_item(cJSON *o, const char *key, cJSON *v) {
    if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
    else cJSON_AddItemToObject(o, key, v);
}

static cJSON *letter(double idx) {
    if (isnan(idx)) return cJSON_CreateNull();
    char s[2] = {rf_cert_rating(idx), 0};
    return cJSON_CreateString(s);
}

/* Rates the metrics of one subject against ref_metrics (may be NULL); returns the summary. */
static cJSON *rate_subject(cJSON *metrics, const cJSON *ref_metrics, const char *ref_name, const char *why_none) {
    double lq = 0, lr = 0;
    int nq = 0, nr = 0;
    cJSON *m;
    cJSON_ArrayForEach(m, metrics) {
        const rated_metric *r = find_rated(m->string);
        set_item(m, "rated", cJSON_CreateBool(r != NULL));
        if (!r) continue;
        const double v = metric_value(metrics, r->id), rv = metric_value(ref_metrics, r->id);
        const double bv = r->one_minus ? 1 - v : v, br = r->one_minus ? 1 - rv : rv;
        /* the floor: the table's, or the larger noise floor of value and reference (a calibration
         * error below the sampling noise is indistinguishable from 0) */
        double fl = r->floor;
        const double nv = metric_field(metrics, r->id, "noise_floor"), nr_ = metric_field(ref_metrics, r->id, "noise_floor");
        if (isfinite(nv) && nv > fl) fl = nv;
        if (isfinite(nr_) && nr_ > fl) fl = nr_;
        const double idx = rf_cert_index(bv, br, r->higher_better, fl);
        set_item(m, "group", cJSON_CreateString(r->group));
        set_item(m, "index_basis", cJSON_CreateString(r->one_minus ? "1 - value" : "value"));
        set_item(m, "index_floor", cJSON_CreateNumber(fl));
        set_item(m, "rating_reference", ref_name ? cJSON_CreateString(ref_name) : cJSON_CreateNull());
        set_item(m, "index", cert_num(idx));
        set_item(m, "rating", letter(idx));
        if (isnan(idx)) {
            const char *why = !ref_metrics ? why_none
                              : !isfinite(v) ? "no value for this model"
                              : !isfinite(rv) ? "the reference has no value for this metric"
                                              : "value or reference not positive on the index basis";
            set_item(m, "unrated_reason", cJSON_CreateString(why));
            continue;
        }
        if (!strcmp(r->group, "quality")) {
            lq += log(idx);
            nq++;
        } else {
            lr += log(idx);
            nr++;
        }
    }
    cJSON *s = cJSON_CreateObject();
    const double qi = nq ? exp(lq / nq) : NAN, ri = nr ? exp(lr / nr) : NAN;
    const double wq = nq && nr ? 0.5 : nq ? 1 : 0, wr = nq && nr ? 0.5 : nr ? 1 : 0;
    const double ci = nq || nr ? exp((nq ? wq * lq / nq : 0) + (nr ? wr * lr / nr : 0)) : NAN;
    cert_add_num(s, "quality_index", qi);
    cJSON_AddItemToObject(s, "quality_rating", letter(qi));
    cJSON_AddNumberToObject(s, "quality_metrics", nq);
    cert_add_num(s, "resource_index", ri);
    cJSON_AddItemToObject(s, "resource_rating", letter(ri));
    cJSON_AddNumberToObject(s, "resource_metrics", nr);
    cert_add_num(s, "compound_index", ci);
    cJSON_AddItemToObject(s, "compound_rating", letter(ci));
    cJSON_AddBoolToObject(s, "capped_by_guarantees", 0);
    return s;
}

int rf_cert_rate(cJSON *cert, const char *reference, rf_err *e) {
    if (!cert) return rf_err_set(e, RF_EARG, "no certificate to rate");
    if (!reference) reference = "gaussian";
    cJSON *metrics = cJSON_GetObjectItemCaseSensitive(cert, "metrics");
    if (!cJSON_IsObject(metrics)) return rf_err_set(e, RF_EFORMAT, "certificate: field \"metrics\" missing");
    cJSON *refs = cJSON_GetObjectItemCaseSensitive(cert, "references");
    const cJSON *ref_metrics = NULL;
    const char *why = "no reference models in this certificate (certify with --train to fit them)";
    char why_missing[256];
    cJSON *r;
    int any = 0;
    cJSON_ArrayForEach(r, refs) {
        any = 1;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(r, "name");
        if (cJSON_IsString(nm) && !strcmp(nm->valuestring, reference)) {
            const cJSON *rm = cJSON_GetObjectItemCaseSensitive(r, "metrics");
            if (cJSON_IsObject(rm)) ref_metrics = rm;
        }
    }
    if (any && !ref_metrics) {
        snprintf(why_missing, sizeof why_missing, "the rating reference \"%s\" is not available (not fitted, or its fit failed)", reference);
        why = why_missing;
    }
    const char *ref_name = ref_metrics ? reference : NULL;
    /* reference values on every model metric */
    cJSON *m;
    cJSON_ArrayForEach(m, metrics) {
        cJSON *rv = cJSON_CreateObject();
        cJSON_ArrayForEach(r, refs) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(r, "name");
            const cJSON *rm = cJSON_GetObjectItemCaseSensitive(r, "metrics");
            if (cJSON_IsString(nm) && cJSON_IsObject(rm)) cJSON_AddItemToObject(rv, nm->valuestring, cert_num(metric_value(rm, m->string)));
        }
        set_item(m, "references", rv);
    }
    cJSON *summary = rate_subject(metrics, ref_metrics, ref_name, why);
    /* a model that fails a guarantee is rated E overall */
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(cert, "guarantees");
    const cJSON *gp = g ? cJSON_GetObjectItemCaseSensitive(g, "pass") : NULL;
    if (cJSON_IsFalse(gp)) {
        set_item(summary, "compound_rating", cJSON_CreateString("E"));
        set_item(summary, "capped_by_guarantees", cJSON_CreateBool(1));
    }
    cJSON *sec = cJSON_CreateObject();
    cJSON_AddStringToObject(sec, "scheme", "index scaling");
    cJSON_AddStringToObject(sec, "reference", reference);
    cJSON_AddBoolToObject(sec, "reference_available", ref_metrics != NULL);
    if (!ref_metrics) cJSON_AddStringToObject(sec, "unrated_reason", why);
    cJSON_AddStringToObject(sec, "index_formula",
                            "lower-is-better basis: index = (reference + floor) / (value + floor); higher-is-better: "
                            "(value + floor) / (reference + floor); basis = the value, or 1 - value for scores "
                            "(accuracy, macro-F1, kappa: their error); floor = the metric's fixed floor or, when larger, "
                            "the noise floor of the value or of the reference (calibration errors); index > 1 = better "
                            "than the reference; clamped to [1e-6, 1e6]");
    cJSON *b = cJSON_AddArrayToObject(sec, "boundaries");
    for (int k = 0; k <= RF_CERT_N_BOUNDS; k++) {
        cJSON *o = cJSON_CreateObject();
        char s[2] = {(char)('A' + k), 0};
        cJSON_AddStringToObject(o, "rating", s);
        cJSON_AddNumberToObject(o, "min_index", k < RF_CERT_N_BOUNDS ? rf_cert_bounds[k] : 0);
        cJSON_AddItemToArray(b, o);
    }
    cJSON_AddStringToObject(sec, "compound_formula",
                            "weighted geometric mean of the indices: weight 1/2 on the quality group and 1/2 on the "
                            "resources group (all on one group when the other has no rated metric), split evenly over "
                            "the group's rated metrics; the quality and resource indices are the geometric means within "
                            "each group; a model failing a guarantee gets compound rating E");
    cJSON *tab = cJSON_AddArrayToObject(sec, "rated_metrics");
    for (int k = 0; k < N_RATED; k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", RATED[k].id);
        cJSON_AddStringToObject(o, "group", RATED[k].group);
        cJSON_AddStringToObject(o, "better", RATED[k].higher_better ? "higher" : "lower");
        cJSON_AddStringToObject(o, "basis", RATED[k].one_minus ? "1 - value" : "value");
        cJSON_AddNumberToObject(o, "floor", RATED[k].floor);
        cJSON_AddItemToArray(tab, o);
    }
    cJSON_AddItemToObject(sec, "model", summary);
    cJSON *rs = cJSON_AddObjectToObject(sec, "references");
    cJSON_ArrayForEach(r, refs) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(r, "name");
        cJSON *rm = cJSON_GetObjectItemCaseSensitive(r, "metrics");
        if (cJSON_IsString(nm) && cJSON_IsObject(rm)) cJSON_AddItemToObject(rs, nm->valuestring, rate_subject(rm, ref_metrics, ref_name, why));
    }
    set_item(cert, "rating", sec);
    return RF_OK;
}
