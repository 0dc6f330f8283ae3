/* Base distributions of the latent space:
 *   normal: N(0, I), no parameters;
 *   diag:   N(mu, diag(sigma^2)), params [mu(D), log sigma(D)];
 *   class:  one diagonal Gaussian per class, params [mu(C x D), log sigma(C x D)], so that
 *           log p(x | y) and p(y | x) follow from the flow (a generative classifier). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/flow.h"

#define LOG_2PI 1.8378770664093453

const char *rf_base_kind_name(rf_base_kind k) {
    switch (k) {
    case RF_BASE_NORMAL: return "normal";
    case RF_BASE_DIAG: return "diag";
    case RF_BASE_CLASS: return "class";
    }
    return "?";
}

int rf_base_kind_parse(const char *s, rf_base_kind *out) {
    for (int k = 0; k <= RF_BASE_CLASS; k++)
        if (strcmp(s, rf_base_kind_name((rf_base_kind)k)) == 0) {
            *out = (rf_base_kind)k;
            return RF_OK;
        }
    return RF_EARG;
}

int rf_base_init(rf_base *b, rf_base_kind kind, int D, int n_classes, rf_err *e) {
    memset(b, 0, sizeof *b);
    if (D < 1) return rf_err_set(e, RF_EARG, "base: dimension must be >= 1, got %d", D);
    b->kind = kind;
    b->D = D;
    switch (kind) {
    case RF_BASE_NORMAL: break;
    case RF_BASE_DIAG:
        b->n_groups = D;
        b->n_params = 2 * (size_t)D;
        break;
    case RF_BASE_CLASS:
        if (n_classes < 2 || n_classes > 1000)
            return rf_err_set(e, RF_EARG, "class-conditional base: classes must be in [2, 1000], got %d",
                              n_classes);
        b->n_classes = n_classes;
        b->n_groups = D;
        b->n_params = 2 * (size_t)D * n_classes;
        break;
    default: return rf_err_set(e, RF_EARG, "base: unknown kind %d", (int)kind);
    }
    return RF_OK;
}

int rf_base_set_groups(rf_base *b, const int *group, int n_groups, rf_err *e) {
    if (b->kind != RF_BASE_CLASS) return rf_err_set(e, RF_EARG, "base: only a class-conditional base has tied parameters");
    if (n_groups < 1 || n_groups > b->D) return rf_err_set(e, RF_EARG, "base: %d groups for %d dimensions", n_groups, b->D);
    int *g = malloc(sizeof(int) * (size_t)b->D);
    if (!g) return rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int j = 0; j < b->D; j++) {
        if (group[j] < 0 || group[j] >= n_groups) {
            free(g);
            return rf_err_set(e, RF_EARG, "base: dimension %d has group %d, outside [0, %d)", j, group[j], n_groups);
        }
        g[j] = group[j];
    }
    free(b->group);
    b->group = g;
    b->n_groups = n_groups;
    b->n_params = 2 * (size_t)n_groups * b->n_classes;
    return RF_OK;
}

void rf_base_free(rf_base *b) {
    free(b->group);
    b->group = NULL;
}

/* Class means start spread out (N(0, 1) draws) so classes are separable from the first step;
 * scales start at 1. The diagonal base starts as N(0, I). */
void rf_base_init_params(const rf_base *b, float *p, rf_rng *rng) {
    if (b->kind == RF_BASE_NORMAL) return;
    const size_t m = b->n_params / 2;
    for (size_t i = 0; i < m; i++) {
        p[i] = b->kind == RF_BASE_CLASS ? (float)rf_rng_normal(rng) : 0.0f;
        p[m + i] = 0.0f;
    }
}

/* log N(z; mu, sigma) summed over dimensions; mu/ls may be NULL for the standard normal;
 * grp (may be NULL) maps dimensions to the entries of mu/ls. */
static double gauss_logp(int D, const float *z, const float *mu, const float *ls, const int *grp) {
    double t = 0;
    if (!mu) { /* standard normal: no exp per element */
        for (int j = 0; j < D; j++) t += -0.5 * ((double)z[j] * z[j]);
        return t - 0.5 * D * LOG_2PI;
    }
    for (int j = 0; j < D; j++) {
        const int q = grp ? grp[j] : j;
        double m = mu[q], l = ls[q];
        double u = (z[j] - m) * exp(-l);
        t += -0.5 * u * u - l;
    }
    return t - 0.5 * D * LOG_2PI;
}

/* dz += g * d/dz, dmu += g * d/dmu, dls += g * d/dls of gauss_logp (mu/ls NULL: dz only). */
static void gauss_backward(int D, const float *z, const float *mu, const float *ls, const int *grp, double g,
                           float *dz, float *dmu, float *dls) {
    if (!mu) { /* standard normal: d/dz = -z */
        for (int j = 0; j < D; j++) dz[j] += (float)(-g * (double)z[j]);
        return;
    }
    for (int j = 0; j < D; j++) {
        const int q = grp ? grp[j] : j;
        double m = mu[q], l = ls[q];
        double is = exp(-l), u = (z[j] - m) * is;
        dz[j] += (float)(-g * u * is);
        if (dmu) dmu[q] += (float)(g * u * is);
        if (dls) dls[q] += (float)(g * (u * u - 1.0));
    }
}

static void class_params(const rf_base *b, const float *p, int c, const float **mu, const float **ls) {
    const size_t m = b->n_params / 2;
    if (b->kind == RF_BASE_NORMAL) {
        *mu = *ls = NULL;
    } else {
        *mu = p + (size_t)c * b->n_groups;
        *ls = p + m + (size_t)c * b->n_groups;
    }
}

void rf_base_class_moments(const rf_base *b, const float *p, int c, float *mu, float *ls) {
    const float *m, *l;
    class_params(b, p, b->kind == RF_BASE_CLASS ? c : 0, &m, &l);
    for (int j = 0; j < b->D; j++) {
        const int q = b->group ? b->group[j] : j;
        if (mu) mu[j] = m ? m[q] : 0.0f;
        if (ls) ls[j] = l ? l[q] : 0.0f;
    }
}

void rf_base_log_prob(const rf_base *b, const float *p, int n, const float *z, const int *labels,
                      float *logp) {
    const int D = b->D;
    for (int i = 0; i < n; i++) { /* no OpenMP: the flow runs one shard of rows per thread */
        const float *mu, *ls;
        class_params(b, p, b->kind == RF_BASE_CLASS ? labels[i] : 0, &mu, &ls);
        logp[i] = (float)gauss_logp(D, z + (size_t)i * D, mu, ls, b->group);
    }
}

void rf_base_log_prob_classes(const rf_base *b, const float *p, int n, const float *z, float *out) {
    const int D = b->D, C = b->n_classes;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const float *mu, *ls;
            class_params(b, p, c, &mu, &ls);
            out[(size_t)i * C + c] = (float)gauss_logp(D, z + (size_t)i * D, mu, ls, b->group);
        }
}

void rf_base_backward(const rf_base *b, const float *p, int n, const float *z, const int *labels,
                      const float *dlogp, float *dz, float *dp) {
    const int D = b->D;
    const size_t m = b->n_params / 2;
    memset(dz, 0, sizeof(float) * (size_t)n * D);
    for (int i = 0; i < n; i++) {
        const int c = b->kind == RF_BASE_CLASS ? labels[i] : 0;
        const float *mu, *ls;
        class_params(b, p, c, &mu, &ls);
        const size_t G = (size_t)b->n_groups;
        float *dmu = mu ? dp + (size_t)c * G : NULL, *dls = mu ? dp + m + (size_t)c * G : NULL;
        gauss_backward(D, z + (size_t)i * D, mu, ls, b->group, dlogp[i], dz + (size_t)i * D, dmu, dls);
    }
}

void rf_base_backward_classes(const rf_base *b, const float *p, int n, const float *z,
                              const float *G, float *dz, float *dp) {
    const int D = b->D, C = b->n_classes;
    const size_t m = b->n_params / 2;
    memset(dz, 0, sizeof(float) * (size_t)n * D);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++) {
            const float g = G[(size_t)i * C + c];
            if (g == 0.0f) continue;
            const float *mu, *ls;
            class_params(b, p, c, &mu, &ls);
            gauss_backward(D, z + (size_t)i * D, mu, ls, b->group, g, dz + (size_t)i * D,
                           dp + (size_t)c * b->n_groups, dp + m + (size_t)c * b->n_groups);
        }
}

void rf_base_sample(const rf_base *b, const float *p, int n, const int *labels, rf_rng *rng,
                    float *z) {
    const int D = b->D;
    for (int i = 0; i < n; i++) {
        int c = 0;
        if (b->kind == RF_BASE_CLASS)
            c = labels ? labels[i] : (int)rf_rng_below(rng, (uint64_t)b->n_classes);
        const float *mu, *ls;
        class_params(b, p, c, &mu, &ls);
        for (int j = 0; j < D; j++) {
            double eps = rf_rng_normal(rng);
            const int q = b->group ? b->group[j] : j;
            z[(size_t)i * D + j] = mu ? (float)(mu[q] + exp(ls[q]) * eps) : (float)eps;
        }
    }
}

/* Class-conditional base from latents z (n x D) and their labels: per class and parameter group
 * (a dimension, or the dimensions tied to one group) the mean and log standard deviation, shrunk
 * towards the pooled moments for small classes (weight n_c / (n_c + 10); the log variance is
 * shrunk in log space), variances floored at 1e-2. */
int rf_base_fit_moments(const rf_base *b, float *p, int n, const float *z, const int *labels, rf_err *e) {
    if (b->kind != RF_BASE_CLASS) return rf_err_set(e, RF_EARG, "base: only a class-conditional base has class moments");
    const int D = b->D, C = b->n_classes, G = b->n_groups;
    const size_t half = b->n_params / 2;
    double *s1 = calloc((size_t)G * (C + 1), sizeof *s1), *s2 = calloc((size_t)G * (C + 1), sizeof *s2);
    long *cnt = calloc((size_t)G * (C + 1), sizeof *cnt);
    int rc = RF_OK;
    if (!s1 || !s2 || !cnt) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const int c = labels[i];
        if (c < 0 || c >= C) continue;
        for (int j = 0; j < D; j++) {
            const int q = b->group ? b->group[j] : j;
            const double v = z[(size_t)i * D + j];
            s1[(size_t)c * G + q] += v;
            s2[(size_t)c * G + q] += v * v;
            cnt[(size_t)c * G + q]++;
            s1[(size_t)C * G + q] += v;
            s2[(size_t)C * G + q] += v * v;
            cnt[(size_t)C * G + q]++;
        }
    }
    for (int c = 0; c < C; c++)
        for (int q = 0; q < G; q++) {
            const long np = cnt[(size_t)C * G + q], nc = cnt[(size_t)c * G + q];
            if (np < 2) continue;
            const double pm = s1[(size_t)C * G + q] / np, pv = s2[(size_t)C * G + q] / np - pm * pm;
            double m = pm, lv = log(pv > 1e-2 ? pv : 1e-2);
            if (nc > 0) {
                const double w = nc / (nc + 10.0), cm = s1[(size_t)c * G + q] / nc, cv = s2[(size_t)c * G + q] / nc - cm * cm;
                m = w * cm + (1 - w) * pm;
                lv = w * log(cv > 1e-2 ? cv : 1e-2) + (1 - w) * lv;
            }
            p[(size_t)c * G + q] = (float)m;
            p[half + (size_t)c * G + q] = (float)(0.5 * lv);
        }
out:
    free(s1);
    free(s2);
    free(cnt);
    return rc;
}
