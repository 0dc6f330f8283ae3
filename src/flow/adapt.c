/* Subject-adaptive latent normalisation (see renflow/adapt.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/adapt.h"
#include "renflow/dataset.h"
#include "renflow/metrics.h"

int rf_adapt_n_groups(const rf_flow *f) {
    return f->base.group ? f->base.n_groups : f->D;
}

static int group_of(const rf_flow *f, int j) {
    return f->base.group ? f->base.group[j] : j;
}

/* z = f(x) and log|det df/dx| for every row, in batches. */
static int encode_all(const rf_flow *f, const rf_matrix *x, float *z, float *ld, rf_err *e) {
    const int B = 256;
    rf_flow_ws_opts o = {.max_batch = B, .memory_saving = 1, .threads = 0, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &o, e);
    if (!w) return e ? e->code : RF_ENOMEM;
    for (int i0 = 0; i0 < x->n; i0 += B) {
        const int nb = x->n - i0 < B ? x->n - i0 : B;
        rf_flow_forward(f, w, nb, x->x + (size_t)i0 * f->D, z + (size_t)i0 * f->D, ld ? ld + i0 : NULL);
    }
    rf_flow_ws_free(w);
    return RF_OK;
}

/* Per-subject statistics of the latents: S subjects (sorted ids), row_s[i] the subject index of
 * row i, mean[s * G + g] and lsd[s * G + g] (log standard deviation). */
typedef struct stats {
    int S, G, *ids, *row_s;
    double *mean, *lsd;
} stats;

static void stats_free(stats *st) {
    free(st->ids);
    free(st->row_s);
    free(st->mean);
    free(st->lsd);
    memset(st, 0, sizeof *st);
}

static int cmp_int(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int subject_stats(const rf_flow *f, int n, const float *z, const int *subjects, stats *st, rf_err *e) {
    memset(st, 0, sizeof *st);
    if (!subjects) return rf_err_set(e, RF_EARG, "subject adaptation needs a subject id per row");
    int rc = rf_subjects_unique(subjects, n, &st->ids, &st->S, e);
    if (rc) return rc;
    const int D = f->D, G = rf_adapt_n_groups(f), S = st->S;
    st->G = G;
    st->row_s = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    st->mean = calloc((size_t)S * G, sizeof(double));
    st->lsd = calloc((size_t)S * G, sizeof(double));
    long *rows = calloc((size_t)S, sizeof(long)), *gsize = calloc((size_t)G, sizeof(long));
    if (!st->row_s || !st->mean || !st->lsd || !rows || !gsize) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto out;
    }
    for (int j = 0; j < D; j++) gsize[group_of(f, j)]++;
    for (int i = 0; i < n; i++) {
        const int *p = bsearch(&subjects[i], st->ids, (size_t)S, sizeof(int), cmp_int);
        st->row_s[i] = (int)(p - st->ids);
        rows[st->row_s[i]]++;
    }
    for (int s = 0; s < S; s++)
        if (rows[s] < 2) {
            rc = rf_err_set(e, RF_EARG, "subject adaptation: subject %d has %ld row%s; it needs at least 2", st->ids[s],
                            rows[s], rows[s] == 1 ? "" : "s");
            goto out;
        }
    /* two passes (mean, then squared deviations) in double */
    for (int i = 0; i < n; i++) {
        double *m = st->mean + (size_t)st->row_s[i] * G;
        const float *zi = z + (size_t)i * D;
        for (int j = 0; j < D; j++) m[group_of(f, j)] += zi[j];
    }
    for (int s = 0; s < S; s++)
        for (int g = 0; g < G; g++) st->mean[(size_t)s * G + g] /= (double)rows[s] * gsize[g];
    for (int i = 0; i < n; i++) {
        const double *m = st->mean + (size_t)st->row_s[i] * G;
        double *v = st->lsd + (size_t)st->row_s[i] * G;
        const float *zi = z + (size_t)i * D;
        for (int j = 0; j < D; j++) {
            const int g = group_of(f, j);
            const double d = zi[j] - m[g];
            v[g] += d * d;
        }
    }
    for (int s = 0; s < S; s++)
        for (int g = 0; g < G; g++) {
            const double var = st->lsd[(size_t)s * G + g] / ((double)rows[s] * gsize[g]);
            if (!(var > 1e-20) || !isfinite(var)) {
                rc = rf_err_set(e, RF_EARG, "subject adaptation: subject %d: latent group %d has variance %g; cannot normalise it",
                                st->ids[s], g, var);
                goto out;
            }
            st->lsd[(size_t)s * G + g] = 0.5 * log(var);
        }
out:
    free(rows);
    free(gsize);
    if (rc) stats_free(st);
    return rc;
}

/* The reference of the subjects of st: the average of their means and log standard deviations. */
static void average_reference(const stats *st, float *rm, float *rl) {
    const int G = st->G;
    for (int g = 0; g < G; g++) {
        double m = 0, l = 0;
        for (int s = 0; s < st->S; s++) {
            m += st->mean[(size_t)s * G + g];
            l += st->lsd[(size_t)s * G + g];
        }
        rm[g] = (float)(m / st->S);
        rl[g] = (float)(l / st->S);
    }
}

/* Maps every row's latent onto the reference subject; ld[i] (may be NULL) += the map's
 * log-determinant. */
static int apply_map(const rf_flow *f, int n, float *z, float *ld, const stats *st, const float *ref_m,
                     const float *ref_l, rf_err *e) {
    const int D = f->D, G = st->G;
    double *a = malloc(sizeof(double) * (size_t)G), *b = malloc(sizeof(double) * (size_t)G);
    double *ldg = malloc(sizeof(double) * (size_t)st->S);
    if (!a || !b || !ldg) {
        free(a);
        free(b);
        free(ldg);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int s = 0; s < st->S; s++) {
        double t = 0;
        for (int j = 0; j < D; j++) {
            const int g = group_of(f, j);
            t += ref_l[g] - st->lsd[(size_t)s * G + g];
        }
        ldg[s] = t;
    }
    int last = -1;
    for (int i = 0; i < n; i++) {
        const int s = st->row_s[i];
        if (s != last) {
            for (int g = 0; g < G; g++) {
                a[g] = exp(ref_l[g] - st->lsd[(size_t)s * G + g]);
                b[g] = ref_m[g] - a[g] * st->mean[(size_t)s * G + g];
            }
            last = s;
        }
        float *zi = z + (size_t)i * D;
        for (int j = 0; j < D; j++) {
            const int g = group_of(f, j);
            zi[j] = (float)(a[g] * zi[j] + b[g]);
        }
        if (ld) ld[i] += (float)ldg[s];
    }
    free(a);
    free(b);
    free(ldg);
    return RF_OK;
}

static int check_model(const rf_flow *f, const rf_matrix *x, rf_err *e) {
    if (f->base.kind != RF_BASE_CLASS)
        return rf_err_set(e, RF_EARG, "subject adaptation needs a class-conditional model (this one has base \"%s\")",
                          rf_base_kind_name(f->base.kind));
    if (x->d != f->D) return rf_err_set(e, RF_EARG, "data has %d columns but the model has dimension %d", x->d, f->D);
    return RF_OK;
}

int rf_adapt_fit_ex(rf_flow *f, const rf_matrix *x, const int *labels, const int *subjects, int standard,
                    int refit_classes, rf_err *e) {
    int rc = check_model(f, x, e);
    if (rc) return rc;
    if (refit_classes && !labels) return rf_err_set(e, RF_EARG, "subject adaptation: fitting needs the training labels");
    const int G = rf_adapt_n_groups(f);
    float *z = rf_floats((size_t)x->n * f->D + 1, e);
    float *rm = rf_floats((size_t)G, e), *rl = rf_floats((size_t)G, e);
    stats st = {0};
    if (!z || !rm || !rl) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    if ((rc = encode_all(f, x, z, NULL, e)) || (rc = subject_stats(f, x->n, z, subjects, &st, e))) goto out;
    if (!standard) average_reference(&st, rm, rl);
    if ((rc = apply_map(f, x->n, z, NULL, &st, rm, rl, e))) goto out;
    if (refit_classes && (rc = rf_base_fit_moments(&f->base, f->params + f->base.offset, x->n, z, labels, e))) goto out;
    rf_free(f->adapt_mean);
    rf_free(f->adapt_log_scale);
    f->adapt_mean = rm;
    f->adapt_log_scale = rl;
    rm = rl = NULL;
out:
    stats_free(&st);
    rf_free(z);
    rf_free(rm);
    rf_free(rl);
    if (rc) rf_err_prefix(e, rc, "subject adaptation");
    return rc;
}

int rf_adapt_rereference(rf_flow *f, const float *mean, const float *log_scale, rf_err *e) {
    if (f->base.kind != RF_BASE_CLASS || !f->adapt_mean || !f->adapt_log_scale)
        return rf_err_set(e, RF_EARG, "subject adaptation: the model has no reference to move");
    const int G = rf_adapt_n_groups(f), C = f->base.n_classes;
    if (f->base.n_groups != G) return rf_err_set(e, RF_EARG, "subject adaptation: base groups and latent groups differ");
    for (int g = 0; g < G; g++)
        if (!isfinite(mean[g]) || !isfinite(log_scale[g]))
            return rf_err_set(e, RF_EARG, "subject adaptation: reference of group %d is not finite", g);
    float *p = f->params + f->base.offset;
    const size_t half = f->base.n_params / 2;
    for (int g = 0; g < G; g++) {
        const double dl = (double)log_scale[g] - f->adapt_log_scale[g], a = exp(dl);
        for (int c = 0; c < C; c++) {
            float *mu = p + (size_t)c * G + g, *ls = p + half + (size_t)c * G + g;
            *mu = (float)(mean[g] + a * ((double)*mu - f->adapt_mean[g]));
            *ls = (float)(*ls + dl);
        }
        f->adapt_mean[g] = mean[g];
        f->adapt_log_scale[g] = log_scale[g];
    }
    return RF_OK;
}

int rf_adapt_reference_to_average(rf_flow *f, const rf_matrix *x, const int *subjects, rf_err *e) {
    int rc = check_model(f, x, e);
    if (rc) return rc;
    const int G = rf_adapt_n_groups(f);
    float *z = rf_floats((size_t)x->n * f->D + 1, e), *rm = rf_floats((size_t)G, e), *rl = rf_floats((size_t)G, e);
    stats st = {0};
    if (!z || !rm || !rl) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    if ((rc = encode_all(f, x, z, NULL, e)) || (rc = subject_stats(f, x->n, z, subjects, &st, e))) goto out;
    average_reference(&st, rm, rl);
    rc = rf_adapt_rereference(f, rm, rl, e);
out:
    stats_free(&st);
    rf_free(z);
    rf_free(rm);
    rf_free(rl);
    if (rc) rf_err_prefix(e, rc, "subject adaptation");
    return rc;
}

int rf_adapt_fit(rf_flow *f, const rf_matrix *x, const int *labels, const int *subjects, rf_err *e) {
    return rf_adapt_fit_ex(f, x, labels, subjects, 0, 1, e);
}

void rf_adapt_tables_free(rf_adapt_tables *t) {
    free(t->row_s);
    rf_free(t->a);
    rf_free(t->b);
    rf_free(t->ld);
    memset(t, 0, sizeof *t);
}

int rf_adapt_tables_compute(const rf_flow *f, const rf_matrix *x, const int *subjects, rf_adapt_tables *t,
                            rf_err *e) {
    memset(t, 0, sizeof *t);
    int rc = check_model(f, x, e);
    if (rc) return rc;
    if (!f->adapt_mean || !f->adapt_log_scale) return rf_err_set(e, RF_EARG, "subject adaptation: the model has no reference");
    const int G = rf_adapt_n_groups(f), D = f->D;
    float *z = rf_floats((size_t)x->n * D + 1, e);
    stats st = {0};
    if (!z) return e ? e->code : RF_ENOMEM;
    if ((rc = encode_all(f, x, z, NULL, e)) || (rc = subject_stats(f, x->n, z, subjects, &st, e))) goto out;
    t->S = st.S;
    t->G = G;
    t->a = rf_floats((size_t)st.S * G, e);
    t->b = rf_floats((size_t)st.S * G, e);
    t->ld = rf_floats((size_t)st.S, e);
    if (!t->a || !t->b || !t->ld) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    for (int s = 0; s < st.S; s++) {
        double ld = 0;
        for (int g = 0; g < G; g++) {
            const double a = exp(f->adapt_log_scale[g] - st.lsd[(size_t)s * G + g]);
            t->a[(size_t)s * G + g] = (float)a;
            t->b[(size_t)s * G + g] = (float)(f->adapt_mean[g] - a * st.mean[(size_t)s * G + g]);
        }
        for (int j = 0; j < D; j++) {
            const int g = group_of(f, j);
            ld += f->adapt_log_scale[g] - st.lsd[(size_t)s * G + g];
        }
        t->ld[s] = (float)ld;
    }
    t->row_s = st.row_s;
    st.row_s = NULL;
out:
    stats_free(&st);
    rf_free(z);
    if (rc) {
        rf_adapt_tables_free(t);
        rf_err_prefix(e, rc, "subject adaptation");
    }
    return rc;
}

int rf_adapt_log_likelihood(const rf_flow *f, const rf_matrix *x, const int *subjects, float *logpc,
                            float *logpx, rf_err *e) {
    int rc = check_model(f, x, e);
    if (rc) return rc;
    if (!f->adapt_mean || !f->adapt_log_scale) return rf_err_set(e, RF_EARG, "the model has no subject adaptation");
    const int C = f->base.n_classes, n = x->n;
    float *z = rf_floats((size_t)n * f->D + 1, e), *ld = rf_floats((size_t)n + 1, e);
    stats st = {0};
    if (!z || !ld) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    if ((rc = encode_all(f, x, z, ld, e)) || (rc = subject_stats(f, n, z, subjects, &st, e))) goto out;
    if ((rc = apply_map(f, n, z, ld, &st, f->adapt_mean, f->adapt_log_scale, e))) goto out;
    rf_base_log_prob_classes(&f->base, f->params + f->base.offset, n, z, logpc);
    for (int i = 0; i < n; i++) {
        float *r = logpc + (size_t)i * C;
        double mx = -INFINITY, s = 0;
        for (int c = 0; c < C; c++) {
            r[c] += ld[i];
            if (r[c] > mx) mx = r[c];
        }
        for (int c = 0; c < C; c++) s += exp(r[c] - mx);
        if (logpx) logpx[i] = (float)(mx + log(s) - log(C));
    }
out:
    stats_free(&st);
    rf_free(z);
    rf_free(ld);
    if (rc) rf_err_prefix(e, rc, "subject adaptation");
    return rc;
}

int rf_flow_predict_subjects(const rf_flow *f, const rf_matrix *x, const int *subjects, const float *log_prior,
                             int *pred, float *post, rf_err *e) {
    if (!f->adapt_mean) return rf_flow_predict(f, x, log_prior, pred, post, e);
    if (!subjects)
        return rf_err_set(e, RF_EARG, "the model adapts to each subject (subject_adapt): its data needs subject ids");
    const int C = f->base.n_classes, n = x->n;
    float *lp = malloc(sizeof(float) * ((size_t)n * C + 1));
    if (!lp) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int rc = rf_adapt_log_likelihood(f, x, subjects, lp, NULL, e);
    if (!rc) {
        for (int i = 0; i < n; i++) {
            float *r = lp + (size_t)i * C;
            double mx = -INFINITY, s = 0;
            for (int c = 0; c < C; c++) {
                r[c] += log_prior ? log_prior[c] : 0.0f;
                if (r[c] > mx) mx = r[c];
            }
            for (int c = 0; c < C; c++) s += exp(r[c] - mx);
            const float lse = (float)(mx + log(s));
            for (int c = 0; c < C; c++) r[c] -= lse;
        }
        rf_argmax_rows(lp, NULL, n, C, pred);
        if (post) memcpy(post, lp, sizeof(float) * (size_t)n * C);
    }
    free(lp);
    return rc;
}

double rf_adapt_nll(const rf_flow *f, const rf_matrix *x, const int *labels, const int *subjects, float *per_row,
                    rf_err *e) {
    const int C = f->base.n_classes > 0 ? f->base.n_classes : 1;
    float *lp = malloc(sizeof(float) * ((size_t)x->n * C + 1)), *px = malloc(sizeof(float) * ((size_t)x->n + 1));
    double r = NAN;
    if (!lp || !px) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
    } else if (!rf_adapt_log_likelihood(f, x, subjects, lp, px, e)) {
        double s = 0;
        for (int i = 0; i < x->n; i++) {
            if (labels) px[i] = lp[(size_t)i * C + labels[i]];
            s += px[i];
        }
        r = x->n > 0 ? -s / x->n : NAN;
        if (per_row) memcpy(per_row, px, sizeof(float) * (size_t)x->n);
    }
    free(lp);
    free(px);
    return r;
}
