/* The two kinds of certified subject behind cert_subject: a renflow flow, and a reference
 * density (refdensity.h), class-conditional (one density per class, uniform class prior) when
 * the certified model is a classifier. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cert_internal.h"

/* ================================================================ flow */
struct cert_flow_ctx {
    const rf_flow *f;
    rf_flow_ws *w;
    int B;
    float *lp;   /* B */
    float *post; /* B x C */
};

static int flow_logp(void *vc, const rf_matrix *x, const int *labels, double *out, rf_err *e) {
    cert_flow_ctx *c = vc;
    const rf_flow *f = c->f;
    if (x->d != f->D) return rf_err_set(e, RF_EARG, "data has %d columns, the model dimension %d", x->d, f->D);
    const int *y = f->base.kind == RF_BASE_CLASS ? labels : NULL;
    for (int i0 = 0; i0 < x->n; i0 += c->B) {
        const int nb = x->n - i0 < c->B ? x->n - i0 : c->B;
        rf_flow_log_prob(f, c->w, nb, x->x + (size_t)i0 * f->D, y ? y + i0 : NULL, c->lp);
        for (int i = 0; i < nb; i++) out[i0 + i] = c->lp[i];
    }
    return RF_OK;
}

static int flow_class_prob(void *vc, const rf_matrix *x, double *out, rf_err *e) {
    cert_flow_ctx *c = vc;
    const rf_flow *f = c->f;
    const int C = f->base.n_classes;
    if (f->base.kind != RF_BASE_CLASS) return rf_err_set(e, RF_EARG, "the model is not class-conditional");
    for (int i0 = 0; i0 < x->n; i0 += c->B) {
        const int nb = x->n - i0 < c->B ? x->n - i0 : c->B;
        rf_flow_class_log_posterior(f, c->w, nb, x->x + (size_t)i0 * f->D, NULL, c->post);
        for (int i = 0; i < nb; i++) {
            double s = 0;
            for (int k = 0; k < C; k++) s += (out[(size_t)(i0 + i) * C + k] = exp((double)c->post[(size_t)i * C + k]));
            /* renormalise the float posteriors (rows sum to 1 up to rounding) */
            for (int k = 0; k < C; k++) out[(size_t)(i0 + i) * C + k] = s > 0 && isfinite(s) ? out[(size_t)(i0 + i) * C + k] / s : NAN;
        }
    }
    return RF_OK;
}

static int flow_sample(void *vc, int n, rf_rng *rng, float *out, rf_err *e) {
    (void)e;
    cert_flow_ctx *c = vc;
    rf_flow_sample(c->f, c->w, n, NULL, rng, out);
    return RF_OK;
}

static int flow_infer_fresh(void *vc, const rf_matrix *x, rf_err *e) {
    cert_flow_ctx *c = vc;
    rf_flow_ws_opts wo = {.max_batch = x->n > 0 ? x->n : 1, .memory_saving = 1, .threads = 0, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(c->f, &wo, e);
    float *lp = rf_floats((size_t)(x->n > 0 ? x->n : 1), e);
    if (!w || !lp) {
        rf_flow_ws_free(w);
        rf_free(lp);
        return e ? e->code : RF_ENOMEM;
    }
    rf_flow_log_prob(c->f, w, x->n, x->x, NULL, lp);
    rf_flow_ws_free(w);
    rf_free(lp);
    return RF_OK;
}

static double meta_train_seconds(const rf_flow *f, const char **how) {
    const cJSON *m = f->meta;
    const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, "train_seconds") : NULL;
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0) {
        *how = "recorded by training in the model file (meta.train_seconds)";
        return v->valuedouble;
    }
    const cJSON *t = m ? cJSON_GetObjectItemCaseSensitive(m, "training") : NULL;
    v = t ? cJSON_GetObjectItemCaseSensitive(t, "seconds") : NULL;
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0) {
        *how = "recorded by training in the model file (meta.training.seconds)";
        return v->valuedouble;
    }
    *how = "unknown: the model file does not record its training time (meta.train_seconds)";
    return NAN;
}

cert_flow_ctx *cert_flow_subject(const rf_flow *f, int batch, cert_subject *s, rf_err *e) {
    cert_flow_ctx *c = rf_zalloc(sizeof *c, e);
    if (!c) return NULL;
    c->f = f;
    c->B = batch > 0 ? batch : 256;
    const int C = f->base.kind == RF_BASE_CLASS ? f->base.n_classes : 0;
    rf_flow_ws_opts wo = {.max_batch = c->B, .memory_saving = 1, .threads = 0, .inference = 1};
    c->w = rf_flow_ws_create_opts(f, &wo, e);
    c->lp = rf_floats((size_t)c->B, e);
    c->post = rf_floats((size_t)c->B * (C > 0 ? C : 1), e);
    if (!c->w || !c->lp || !c->post) {
        cert_flow_ctx_free(c);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->name = "model";
    s->D = f->D;
    s->C = C;
    s->ctx = c;
    s->logp = flow_logp;
    s->class_prob = C > 0 ? flow_class_prob : NULL;
    s->sample = flow_sample;
    s->infer_fresh = flow_infer_fresh;
    s->n_params = (double)f->n_params;
    s->param_bytes = 4.0 * ((double)f->n_params + 2.0 * f->D); /* float32 parameters + standardisation */
    double fw = NAN, inv = NAN;
    rf_err e2 = {0};
    if (rf_cert_flow_flops(f, &fw, &inv, NULL, &e2) != RF_OK) fw = inv = NAN;
    s->flops_logp = fw;
    s->flops_sample = inv;
    s->flops_method = "analytic count from the layer architecture (rf_cert_flow_flops; see flops_breakdown)";
    s->train_seconds = meta_train_seconds(f, &s->train_seconds_method);
    return c;
}

void cert_flow_ctx_free(cert_flow_ctx *c) {
    if (!c) return;
    rf_flow_ws_free(c->w);
    rf_free(c->lp);
    rf_free(c->post);
    free(c);
}

/* ================================================================ references */
struct cert_ref_ctx {
    char kind[16];
    int C;             /* 0: one density */
    int nm;            /* models: max(1, C) */
    rf_refdensity **m; /* nm */
    int *rows;         /* training rows per model */
    int D;
    double fit_s;
};

void cert_ref_ctx_free(cert_ref_ctx *c) {
    if (!c) return;
    for (int k = 0; c->m && k < c->nm; k++) rf_refdensity_free(c->m[k]);
    free(c->m);
    free(c->rows);
    free(c);
}

/* L (n x nm) = log p(x_i | model k) */
static int ref_logp_all(const cert_ref_ctx *c, const rf_matrix *x, double *L, rf_err *e) {
    double *tmp = malloc(sizeof(double) * (size_t)(x->n > 0 ? x->n : 1));
    if (!tmp) return rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int k = 0; k < c->nm; k++) {
        int rc = rf_refdensity_logpdf(c->m[k], x, tmp, NULL, e);
        if (rc) {
            free(tmp);
            return rc;
        }
        for (int i = 0; i < x->n; i++) L[(size_t)i * c->nm + k] = tmp[i];
    }
    free(tmp);
    return RF_OK;
}

static double lse(const double *v, int n) {
    double mx = -INFINITY;
    for (int k = 0; k < n; k++)
        if (v[k] > mx) mx = v[k];
    if (!isfinite(mx)) return mx;
    double s = 0;
    for (int k = 0; k < n; k++) s += exp(v[k] - mx);
    return mx + log(s);
}

static int ref_logp(void *vc, const rf_matrix *x, const int *labels, double *out, rf_err *e) {
    cert_ref_ctx *c = vc;
    if (c->C == 0) return rf_refdensity_logpdf(c->m[0], x, out, NULL, e);
    double *L = malloc(sizeof(double) * (size_t)(x->n > 0 ? x->n : 1) * c->nm);
    if (!L) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int rc = ref_logp_all(c, x, L, e);
    for (int i = 0; !rc && i < x->n; i++) {
        const double *r = L + (size_t)i * c->nm;
        if (labels) {
            if (labels[i] < 0 || labels[i] >= c->C) {
                rc = rf_err_set(e, RF_EARG, "label %d at row %d is outside [0, %d)", labels[i], i, c->C);
                break;
            }
            out[i] = r[labels[i]];
        } else {
            out[i] = lse(r, c->nm) - log((double)c->C);
        }
    }
    free(L);
    return rc;
}

static int ref_class_prob(void *vc, const rf_matrix *x, double *out, rf_err *e) {
    cert_ref_ctx *c = vc;
    int rc = ref_logp_all(c, x, out, e);
    for (int i = 0; !rc && i < x->n; i++) {
        double *r = out + (size_t)i * c->nm;
        const double z = lse(r, c->nm);
        for (int k = 0; k < c->nm; k++) r[k] = isfinite(z) ? exp(r[k] - z) : NAN;
    }
    return rc;
}

static int ref_sample(void *vc, int n, rf_rng *rng, float *out, rf_err *e) {
    cert_ref_ctx *c = vc;
    const int D = c->D;
    int *cls = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1)), *cnt = calloc((size_t)c->nm, sizeof(int)),
        *at = calloc((size_t)c->nm, sizeof(int));
    rf_matrix *draws = calloc((size_t)c->nm, sizeof(rf_matrix));
    int rc = (!cls || !cnt || !at || !draws) ? rf_err_set(e, RF_ENOMEM, "out of memory") : RF_OK;
    for (int i = 0; !rc && i < n; i++) {
        cls[i] = c->C > 0 ? (int)rf_rng_below(rng, (uint64_t)c->C) : 0;
        cnt[cls[i]]++;
    }
    for (int k = 0; !rc && k < c->nm; k++)
        if (cnt[k] > 0) rc = rf_refdensity_sample(c->m[k], cnt[k], rng, &draws[k], e);
    for (int i = 0; !rc && i < n; i++) {
        const int k = cls[i];
        memcpy(out + (size_t)i * D, draws[k].x + (size_t)at[k]++ * D, sizeof(float) * (size_t)D);
    }
    for (int k = 0; draws && k < c->nm; k++) rf_matrix_free(&draws[k]);
    free(draws);
    free(cls);
    free(cnt);
    free(at);
    return rc;
}

static int ref_infer_fresh(void *vc, const rf_matrix *x, rf_err *e) {
    cert_ref_ctx *c = vc;
    double *lp = malloc(sizeof(double) * (size_t)(x->n > 0 ? x->n : 1));
    if (!lp) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int rc = ref_logp(c, x, NULL, lp, e);
    free(lp);
    return rc;
}

cert_ref_ctx *cert_ref_subject(const char *kind, const rf_matrix *train, const int *labels,
                               int n_classes, const rf_refdensity_opts *ro, cert_subject *s,
                               rf_err *e) {
    cert_ref_ctx *c = rf_zalloc(sizeof *c, e);
    if (!c) return NULL;
    snprintf(c->kind, sizeof c->kind, "%s", kind);
    c->C = labels && n_classes > 0 ? n_classes : 0;
    c->nm = c->C > 0 ? c->C : 1;
    c->D = train->d;
    c->m = calloc((size_t)c->nm, sizeof *c->m);
    c->rows = calloc((size_t)c->nm, sizeof(int));
    if (!c->m || !c->rows) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        cert_ref_ctx_free(c);
        return NULL;
    }
    if (c->C == 0) {
        c->rows[0] = train->n;
        if (!(c->m[0] = rf_refdensity_fit(kind, train, NULL, ro, e))) {
            rf_err_prefix(e, e ? e->code : RF_EARG, "reference %s", kind);
            cert_ref_ctx_free(c);
            return NULL;
        }
    } else {
        for (int i = 0; i < train->n; i++) {
            if (labels[i] < 0 || labels[i] >= c->C) {
                rf_err_set(e, RF_EARG, "training label %d at row %d is outside [0, %d)", labels[i], i, c->C);
                cert_ref_ctx_free(c);
                return NULL;
            }
            c->rows[labels[i]]++;
        }
        for (int k = 0; k < c->C; k++) {
            rf_matrix sub = {0};
            unsigned char *keep = malloc((size_t)(train->n > 0 ? train->n : 1));
            if (!keep) {
                rf_err_set(e, RF_ENOMEM, "out of memory");
                cert_ref_ctx_free(c);
                return NULL;
            }
            for (int i = 0; i < train->n; i++) keep[i] = labels[i] == k;
            int rc = rf_matrix_select_rows(train, keep, &sub, e);
            free(keep);
            if (!rc && sub.n < 2) rc = rf_err_set(e, RF_EARG, "class %d has %d training rows (at least 2 needed)", k, sub.n);
            if (!rc && !(c->m[k] = rf_refdensity_fit(kind, &sub, NULL, ro, e))) rc = e ? e->code : RF_EARG;
            rf_matrix_free(&sub);
            if (rc) {
                rf_err_prefix(e, rc, "reference %s, class %d", kind, k);
                cert_ref_ctx_free(c);
                return NULL;
            }
        }
    }
    memset(s, 0, sizeof *s);
    s->name = rf_refdensity_kind(c->m[0]);
    s->D = c->D;
    s->C = c->C;
    s->ctx = c;
    s->logp = ref_logp;
    s->class_prob = c->C > 0 ? ref_class_prob : NULL;
    s->sample = ref_sample;
    s->infer_fresh = ref_infer_fresh;
    double np = 0, fl = 0, fs = 0;
    for (int k = 0; k < c->nm; k++) {
        np += (double)rf_refdensity_n_params(c->m[k]);
        fl += rf_refdensity_flops_per_sample(c->m[k], RF_REF_FLOPS_LOGPDF);
        fs += rf_refdensity_flops_per_sample(c->m[k], RF_REF_FLOPS_SAMPLE) / c->nm;
        c->fit_s += rf_refdensity_fit_seconds(c->m[k]);
    }
    if (c->C > 0) fl += 3.0 * c->C + 2; /* log-sum-exp over the classes (marginal / posterior) */
    s->n_params = np;
    s->param_bytes = 8.0 * np; /* double precision */
    s->flops_logp = fl;
    s->flops_sample = fs;
    s->flops_method = c->C > 0 ? "analytic (refdensity.h), summed over the per-class densities for log p(x), "
                                 "plus 3C + 2 for the log-sum-exp over classes; sampling: the mean over classes"
                               : "analytic (refdensity.h: rf_refdensity_flops_per_sample)";
    s->train_seconds = c->fit_s;
    s->train_seconds_method = "measured: wall-clock time of the reference fit (rf_refdensity_fit_seconds, "
                              "model selection included)";
    return c;
}

cJSON *cert_ref_describe(const cert_ref_ctx *c) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "kind", c->kind);
    cJSON_AddBoolToObject(j, "class_conditional", c->C > 0);
    if (c->C == 0) {
        cJSON_AddItemToObject(j, "fit", rf_refdensity_describe_json(c->m[0]));
    } else {
        cJSON_AddNumberToObject(j, "n_classes", c->C);
        cJSON_AddStringToObject(j, "class_prior", "uniform");
        cJSON *a = cJSON_AddArrayToObject(j, "per_class");
        for (int k = 0; a && k < c->C; k++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "class", k);
            cJSON_AddNumberToObject(o, "train_rows", c->rows[k]);
            cJSON_AddItemToObject(o, "fit", rf_refdensity_describe_json(c->m[k]));
            cJSON_AddItemToArray(a, o);
        }
    }
    return j;
}
