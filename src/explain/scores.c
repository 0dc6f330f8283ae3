/* Scores of a class-conditional flow (log p(x | c), log p(x), log p(c | x)), ranking, decoded
 * class means (prototypes), class-conditional samples and per-class moments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"

int rf_explain_check_model(const rf_flow *f, rf_err *e) {
    if (!f) return rf_err_set(e, RF_EARG, "explain: no model");
    if (f->base.kind != RF_BASE_CLASS || f->base.n_classes < 2)
        return rf_err_set(e, RF_EARG,
                          "explain needs a class-conditional model (base \"class\", trained with "
                          "labels, e.g. renflow train --task classify); this one has base \"%s\"",
                          rf_base_kind_name(f->base.kind));
    return RF_OK;
}

double ex_logsumexp(const double *a, int n) {
    double m = -INFINITY;
    for (int i = 0; i < n; i++)
        if (a[i] > m) m = a[i];
    if (!isfinite(m)) return m;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp(a[i] - m);
    return m + log(s);
}

int ex_scorer_init(ex_scorer *s, const rf_flow *f, int cap, const float *log_prior, rf_err *e) {
    memset(s, 0, sizeof *s);
    int rc = rf_explain_check_model(f, e);
    if (rc) return rc;
    if (cap < 1) cap = 1;
    s->f = f;
    s->cap = cap;
    s->C = f->base.n_classes;
    s->D = f->D;
    rf_flow_ws_opts wo = {.max_batch = cap, .memory_saving = 1, .threads = 0, .inference = 1};
    s->w = rf_flow_ws_create_opts(f, &wo, e);
    s->z = rf_floats((size_t)cap * s->D, e);
    s->ld = rf_floats((size_t)cap, e);
    s->lpc = rf_floats((size_t)cap * s->C, e);
    s->prior = malloc(sizeof(double) * (size_t)s->C);
    if (!s->w || !s->z || !s->ld || !s->lpc || !s->prior) {
        ex_scorer_free(s);
        return rf_err_set(e, e && e->code ? e->code : RF_ENOMEM,
                          "explain: out of memory for a batch of %d rows of dimension %d", cap, f->D);
    }
    for (int c = 0; c < s->C; c++) s->prior[c] = log_prior ? log_prior[c] : -log((double)s->C);
    return RF_OK;
}

void ex_scorer_free(ex_scorer *s) {
    rf_flow_ws_free(s->w);
    rf_free(s->z);
    rf_free(s->ld);
    rf_free(s->lpc);
    free(s->prior);
    memset(s, 0, sizeof *s);
}

void ex_scorer_targets(ex_scorer *s, int n, const float *x, double *v) {
    const int C = s->C, K = C + 1, D = s->D;
    const rf_flow *f = s->f;
    double *t = malloc(sizeof(double) * (size_t)C);
    for (int i0 = 0; i0 < n; i0 += s->cap) {
        const int m = n - i0 < s->cap ? n - i0 : s->cap;
        rf_flow_forward(f, s->w, m, x + (size_t)i0 * D, s->z, s->ld);
        rf_base_log_prob_classes(&f->base, f->params + f->base.offset, m, s->z, s->lpc);
        for (int i = 0; i < m; i++) {
            double *vi = v + (size_t)(i0 + i) * K;
            for (int c = 0; c < C; c++) {
                vi[c] = (double)s->lpc[(size_t)i * C + c] + s->ld[i];
                if (t) t[c] = vi[c] + s->prior[c];
            }
            vi[C] = t ? ex_logsumexp(t, C) : NAN;
        }
    }
    free(t);
}

int rf_explain_scores(const rf_flow *f, int n, const float *x, const float *log_prior,
                      float *logp, float *log_post, rf_err *e) {
    if (n < 0) return rf_err_set(e, RF_EARG, "explain: negative row count %d", n);
    ex_scorer s;
    int rc = ex_scorer_init(&s, f, n < 256 ? (n > 0 ? n : 1) : 256, log_prior, e);
    if (rc) return rc;
    const int C = s.C, K = C + 1, B = 1024;
    double *v = malloc(sizeof(double) * (size_t)B * K);
    if (!v) {
        ex_scorer_free(&s);
        return rf_err_set(e, RF_ENOMEM, "explain: out of memory");
    }
    for (int i0 = 0; i0 < n; i0 += B) {
        const int m = n - i0 < B ? n - i0 : B;
        ex_scorer_targets(&s, m, x + (size_t)i0 * f->D, v);
        for (int i = 0; i < m; i++) {
            const double *vi = v + (size_t)i * K;
            if (logp) logp[i0 + i] = (float)vi[C];
            if (log_post)
                for (int c = 0; c < C; c++)
                    log_post[(size_t)(i0 + i) * C + c] = (float)(s.prior[c] + vi[c] - vi[C]);
        }
    }
    free(v);
    ex_scorer_free(&s);
    return RF_OK;
}

static int rank_less(const float *v, int a, int b) {
    const float x = v[a], y = v[b];
    const int nx = isnan(x), ny = isnan(y);
    if (nx != ny) return nx; /* NaN first */
    if (!nx && x != y) return x < y;
    return a < b;
}

void rf_explain_rank_ascending(const float *v, int n, int *order) {
    for (int i = 0; i < n; i++) order[i] = i;
    if (n < 2) return;
    int *tmp = malloc(sizeof(int) * (size_t)n);
    if (!tmp) { /* insertion sort fallback: correct, only slower */
        for (int i = 1; i < n; i++) {
            const int k = order[i];
            int j = i - 1;
            while (j >= 0 && rank_less(v, k, order[j])) {
                order[j + 1] = order[j];
                j--;
            }
            order[j + 1] = k;
        }
        return;
    }
    for (int w = 1; w < n; w *= 2) { /* bottom-up merge sort (qsort has no context pointer) */
        for (int lo = 0; lo < n; lo += 2 * w) {
            const int mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int a = lo, b = mid, k = lo;
            while (a < mid && b < hi) tmp[k++] = rank_less(v, order[b], order[a]) ? order[b++] : order[a++];
            while (a < mid) tmp[k++] = order[a++];
            while (b < hi) tmp[k++] = order[b++];
        }
        memcpy(order, tmp, sizeof(int) * (size_t)n);
    }
    free(tmp);
}

int rf_explain_prototypes(const rf_flow *f, float *proto, double *latent_err, rf_err *e) {
    int rc = rf_explain_check_model(f, e);
    if (rc) return rc;
    const int C = f->base.n_classes, D = f->D;
    rf_flow_ws_opts wo = {.max_batch = C, .memory_saving = 1, .threads = 1, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &wo, e);
    float *z = rf_floats((size_t)C * D, e), *mu = rf_floats((size_t)C * D, e);
    if (!w || !z || !mu) {
        rf_flow_ws_free(w);
        rf_free(z);
        rf_free(mu);
        return e && e->code ? e->code : RF_ENOMEM;
    }
    /* every dimension's class mean (tied parameters expanded) */
    for (int c = 0; c < C; c++) rf_base_class_moments(&f->base, f->params + f->base.offset, c, mu + (size_t)c * D, NULL);
    rf_flow_inverse(f, w, C, mu, proto, NULL);
    if (latent_err) {
        rf_flow_forward(f, w, C, proto, z, NULL);
        for (int c = 0; c < C; c++) {
            double m = 0;
            for (int j = 0; j < D; j++) {
                const double d = fabs((double)z[(size_t)c * D + j] - mu[(size_t)c * D + j]);
                if (!(d <= m)) m = d; /* NaN propagates */
            }
            latent_err[c] = m;
        }
    }
    rf_flow_ws_free(w);
    rf_free(z);
    rf_free(mu);
    return RF_OK;
}

int rf_explain_sample_classes(const rf_flow *f, int n_per_class, rf_rng *rng, float *x,
                              int *labels, rf_err *e) {
    int rc = rf_explain_check_model(f, e);
    if (rc) return rc;
    if (n_per_class < 1)
        return rf_err_set(e, RF_EARG, "explain: samples per class must be >= 1, got %d", n_per_class);
    const int C = f->base.n_classes, n = C * n_per_class;
    int *y = malloc(sizeof(int) * (size_t)n);
    const int cap = n < 256 ? n : 256;
    rf_flow_ws_opts wo = {.max_batch = cap, .memory_saving = 1, .threads = 0, .inference = 1};
    rf_flow_ws *w = y ? rf_flow_ws_create_opts(f, &wo, e) : NULL;
    if (!y || !w) {
        free(y);
        rf_flow_ws_free(w);
        return rf_err_set(e, e && e->code ? e->code : RF_ENOMEM, "explain: out of memory for %d samples", n);
    }
    for (int i = 0; i < n; i++) y[i] = i / n_per_class;
    rf_flow_sample(f, w, n, y, rng, x);
    if (labels) memcpy(labels, y, sizeof(int) * (size_t)n);
    free(y);
    rf_flow_ws_free(w);
    return RF_OK;
}

void rf_class_moments_free(rf_class_moments *m) {
    if (!m) return;
    free(m->count);
    free(m->mean);
    free(m->sd);
    memset(m, 0, sizeof *m);
}

int rf_class_moments_compute(const float *x, const int *labels, int n, int D, int C,
                             rf_class_moments *m, rf_err *e) {
    memset(m, 0, sizeof *m);
    if (C < 1 || D < 1 || n < 0 || (!labels && C != 1))
        return rf_err_set(e, RF_EARG, "class moments: invalid shape (n=%d, D=%d, C=%d%s)", n, D, C,
                          labels ? "" : ", no labels");
    m->C = C;
    m->D = D;
    m->count = calloc((size_t)C, sizeof(long));
    m->mean = calloc((size_t)C * D, sizeof(double));
    m->sd = calloc((size_t)C * D, sizeof(double));
    if (!m->count || !m->mean || !m->sd) {
        rf_class_moments_free(m);
        return rf_err_set(e, RF_ENOMEM, "class moments: out of memory");
    }
    /* two passes (mean, then squared deviations) for accuracy */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n; i++) {
            const int c = labels ? labels[i] : 0;
            if (c < 0 || c >= C) {
                int k = rf_err_set(e, RF_EARG, "class moments: label %d of row %d outside [0, %d)", c, i, C);
                rf_class_moments_free(m);
                return k;
            }
            const float *r = x + (size_t)i * D;
            if (!rf_all_finite(r, (size_t)D)) {
                if (pass == 0) m->skipped++;
                continue;
            }
            double *mu = m->mean + (size_t)c * D, *sd = m->sd + (size_t)c * D;
            if (pass == 0) {
                m->count[c]++;
                for (int j = 0; j < D; j++) mu[j] += r[j];
            } else {
                for (int j = 0; j < D; j++) sd[j] += (r[j] - mu[j]) * (r[j] - mu[j]);
            }
        }
        for (int c = 0; c < C; c++) {
            double *mu = m->mean + (size_t)c * D, *sd = m->sd + (size_t)c * D;
            for (int j = 0; j < D; j++) {
                if (pass == 0) mu[j] = m->count[c] ? mu[j] / m->count[c] : NAN;
                else sd[j] = m->count[c] ? sqrt(sd[j] / m->count[c]) : NAN;
            }
        }
    }
    return RF_OK;
}
