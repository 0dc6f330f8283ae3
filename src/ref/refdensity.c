/* Reference density models for certificates: one interface over the full-covariance Gaussian
 * (rf_gauss, gaussian.c), the EM Gaussian mixture (gmm.c) and the kernel density estimate (kde.c).
 * This file owns the common parts: argument checks, the validation split, standardisation (with
 * its Jacobian), model selection over K / bandwidths, counts and the JSON description. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refdensity_internal.h"
#include "renflow/ref.h"
#include "renflow/refdensity.h"

#define RD_BLOCK 4096

enum { KIND_GAUSS = 0, KIND_GMM = 1, KIND_KDE = 2 };
static const char *const kind_names[3] = {"gaussian", "gmm", "kde"};

struct rf_refdensity {
    int kind, D;
    rf_refdensity_opts o;
    double *shift, *scale; /* standardisation of the fitting rows */
    double log_jac;        /* -sum_d log scale_d */
    rf_gauss gauss;        /* standardised units */
    rf_gmm gmm;
    rf_kde kde;
    int train_rows, fit_rows, val_rows;
    const char *val_source;
    double val_nll, fit_seconds;
    cJSON *detail; /* kind-specific part of the description */
};

void rf_refdensity_opts_default(rf_refdensity_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->val_frac = 0.2;
    o->ridge = 1e-6;
    o->max_components = 8;
    o->gmm_cov = RF_GMM_FULL;
    o->em_tol = 1e-3;
    o->em_max_iter = 300;
    o->restarts = 2;
    o->kmeans_iter = 10;
    o->k_patience = 0;
    o->k_rule = RF_KRULE_ONE_SE;
    o->kde_n_bandwidths = 16;
    o->kde_bw_lo = 0.02;
    o->kde_bw_hi = 3.0;
    o->kde_refine = 8;
    o->kde_folds = 0;
    o->kde_max_rows = 10000;
    o->kde_max_val_rows = 5000;
}

void rf_refdensity_free(rf_refdensity *m) {
    if (!m) return;
    free(m->shift);
    free(m->scale);
    if (m->kind == KIND_GAUSS && m->gauss.mean) rf_gauss_free(&m->gauss);
    rf_gmm_free(&m->gmm);
    rf_kde_free(&m->kde);
    cJSON_Delete(m->detail);
    free(m);
}

static int check_matrix(const rf_matrix *x, const char *name, int D, rf_err *e) {
    if (!x) return rf_err_set(e, RF_EARG, "%s: NULL matrix", name);
    if (x->n <= 0) return rf_err_set(e, RF_EARG, "%s: has %d rows; at least one is needed", name, x->n);
    if (x->d <= 0) return rf_err_set(e, RF_EARG, "%s: has %d columns", name, x->d);
    if (!x->x) return rf_err_set(e, RF_EARG, "%s: NULL data", name);
    if (D > 0 && x->d != D)
        return rf_err_set(e, RF_EARG, "%s: has %d columns but the reference density is %d-dimensional", name, x->d, D);
    for (int i = 0; i < x->n; i++)
        for (int j = 0; j < x->d; j++) {
            const float v = x->x[(size_t)i * x->d + j];
            if (!isfinite(v))
                return rf_err_set(e, RF_ENONFINITE, "%s: row %d, column %d: value %g is not finite", name, i, j,
                                  (double)v);
        }
    return RF_OK;
}

static int check_opts(const rf_refdensity_opts *o, rf_err *e) {
    if (!(o->val_frac > 0 && o->val_frac < 1))
        return rf_err_set(e, RF_EARG, "refdensity option val_frac: %g is not in (0, 1)", o->val_frac);
    if (!(o->ridge >= 0 && isfinite(o->ridge)))
        return rf_err_set(e, RF_EARG, "refdensity option ridge: %g must be finite and >= 0", o->ridge);
    if (o->max_components < 1 || o->max_components > 1000)
        return rf_err_set(e, RF_EARG, "refdensity option max_components: %d is not in [1, 1000]", o->max_components);
    if (o->gmm_cov != RF_GMM_FULL && o->gmm_cov != RF_GMM_DIAG)
        return rf_err_set(e, RF_EARG, "refdensity option gmm_cov: %d is neither RF_GMM_FULL (0) nor RF_GMM_DIAG (1)",
                          o->gmm_cov);
    if (!(o->em_tol >= 0 && isfinite(o->em_tol)))
        return rf_err_set(e, RF_EARG, "refdensity option em_tol: %g must be finite and >= 0", o->em_tol);
    if (o->em_max_iter < 1) return rf_err_set(e, RF_EARG, "refdensity option em_max_iter: %d < 1", o->em_max_iter);
    if (o->restarts < 1) return rf_err_set(e, RF_EARG, "refdensity option restarts: %d < 1", o->restarts);
    if (o->kmeans_iter < 0) return rf_err_set(e, RF_EARG, "refdensity option kmeans_iter: %d < 0", o->kmeans_iter);
    if (o->k_patience < 0) return rf_err_set(e, RF_EARG, "refdensity option k_patience: %d < 0", o->k_patience);
    if (o->k_rule != RF_KRULE_ONE_SE && o->k_rule != RF_KRULE_MIN)
        return rf_err_set(
            e, RF_EARG, "refdensity option k_rule: %d is neither RF_KRULE_ONE_SE (0) nor RF_KRULE_MIN (1)", o->k_rule);
    if (o->kde_n_bandwidths < 1 || o->kde_n_bandwidths > 1000)
        return rf_err_set(e, RF_EARG, "refdensity option kde_n_bandwidths: %d is not in [1, 1000]",
                          o->kde_n_bandwidths);
    if (!(o->kde_bw_lo > 0 && o->kde_bw_hi > o->kde_bw_lo && isfinite(o->kde_bw_hi)))
        return rf_err_set(e, RF_EARG, "refdensity options kde_bw_lo %g, kde_bw_hi %g: need 0 < lo < hi", o->kde_bw_lo,
                          o->kde_bw_hi);
    if (o->kde_refine < 0 || o->kde_refine > 1000)
        return rf_err_set(e, RF_EARG, "refdensity option kde_refine: %d is not in [0, 1000]", o->kde_refine);
    if (o->kde_folds < 0 || o->kde_folds == 1)
        return rf_err_set(e, RF_EARG, "refdensity option kde_folds: %d (use 0 for the validation rows or >= 2 folds)",
                          o->kde_folds);
    if (o->kde_max_rows < 2) return rf_err_set(e, RF_EARG, "refdensity option kde_max_rows: %d < 2", o->kde_max_rows);
    if (o->kde_max_val_rows < 1)
        return rf_err_set(e, RF_EARG, "refdensity option kde_max_val_rows: %d < 1", o->kde_max_val_rows);
    return RF_OK;
}

/* Standardised double copy of rows [i0, i0 + n) of x. */
static void to_std(const rf_refdensity *m, const rf_matrix *x, int i0, int n, double *out) {
    const int D = m->D;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            out[(size_t)i * D + j] = ((double)x->x[(size_t)(i0 + i) * D + j] - m->shift[j]) / m->scale[j];
}

/* log p (original units) of rows [i0, i0 + n) of x, n <= RD_BLOCK; buf holds n * D doubles. */
static int logpdf_block(const rf_refdensity *m, const rf_matrix *x, int i0, int n, double *buf, double *lp, rf_err *e) {
    const int D = m->D;
    int rc = RF_OK;
    if (m->kind == KIND_GAUSS) {
        rf_matrix f;
        if ((rc = rf_matrix_alloc(&f, n, D, e))) return rc;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < D; j++)
                f.x[(size_t)i * D + j] = (float)(((double)x->x[(size_t)(i0 + i) * D + j] - m->shift[j]) / m->scale[j]);
        const double r = rf_gauss_nll(&m->gauss, &f, lp);
        rf_matrix_free(&f);
        if (isnan(r)) return rf_err_set(e, RF_ENOMEM, "out of memory in the Gaussian log-density");
    } else {
        to_std(m, x, i0, n, buf);
        rc =
            m->kind == KIND_GMM ? rf_gmm_logpdf_std(&m->gmm, buf, n, lp, e) : rf_kde_logpdf_std(&m->kde, buf, n, lp, e);
        if (rc) return rc;
    }
    for (int i = 0; i < n; i++) lp[i] += m->log_jac;
    return RF_OK;
}

int rf_refdensity_logpdf(const rf_refdensity *m, const rf_matrix *x, double *per_sample_logp, double *mean_nll,
                         rf_err *e) {
    if (!m) return rf_err_set(e, RF_EARG, "rf_refdensity_logpdf: NULL model");
    int rc = check_matrix(x, "rf_refdensity_logpdf: input", m->D, e);
    if (rc) return rc;
    double *buf = malloc(sizeof(double) * (size_t)RD_BLOCK * m->D), *lp = malloc(sizeof(double) * RD_BLOCK);
    if (!buf || !lp) {
        free(buf);
        free(lp);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    double total = 0;
    for (int i0 = 0; i0 < x->n && rc == RF_OK; i0 += RD_BLOCK) {
        const int nb = x->n - i0 < RD_BLOCK ? x->n - i0 : RD_BLOCK;
        rc = logpdf_block(m, x, i0, nb, buf, lp, e);
        if (rc) break;
        for (int i = 0; i < nb; i++) total += lp[i];
        if (per_sample_logp) memcpy(per_sample_logp + i0, lp, sizeof(double) * nb);
    }
    free(buf);
    free(lp);
    if (rc == RF_OK && mean_nll) *mean_nll = -total / x->n;
    return rc;
}

int rf_refdensity_sample(const rf_refdensity *m, int n, rf_rng *rng, rf_matrix *out, rf_err *e) {
    if (out) memset(out, 0, sizeof *out);
    if (!m || !rng || !out) return rf_err_set(e, RF_EARG, "rf_refdensity_sample: NULL model, rng or output");
    if (n < 0) return rf_err_set(e, RF_EARG, "rf_refdensity_sample: n = %d samples is negative", n);
    const int D = m->D;
    int rc = rf_matrix_alloc(out, n, D, e);
    if (rc) return rc;
    double *z = malloc(sizeof(double) * D), *t = malloc(sizeof(double) * D);
    if (!z || !t) {
        free(z);
        free(t);
        rf_matrix_free(out);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (m->kind == KIND_GAUSS) {
            for (int j = 0; j < D; j++) z[j] = rf_rng_normal(rng);
            for (int a = 0; a < D; a++) {
                double v = m->gauss.mean[a];
                for (int b = 0; b <= a; b++) v += m->gauss.chol[(size_t)a * D + b] * z[b];
                t[a] = v;
            }
        } else if (m->kind == KIND_GMM) {
            rf_gmm_sample_std(&m->gmm, rng, t, z);
        } else {
            rf_kde_sample_std(&m->kde, rng, t);
        }
        for (int j = 0; j < D; j++) out->x[(size_t)i * D + j] = (float)(m->shift[j] + m->scale[j] * t[j]);
    }
    free(z);
    free(t);
    return RF_OK;
}

/* ---- fitting ---- */

static int fit_gauss(rf_refdensity *m, const rf_matrix *fit, rf_err *e) {
    const int D = m->D;
    rf_matrix f;
    int rc = rf_matrix_alloc(&f, fit->n, D, e);
    if (rc) return rc;
    for (int i = 0; i < fit->n; i++)
        for (int j = 0; j < D; j++)
            f.x[(size_t)i * D + j] = (float)(((double)fit->x[(size_t)i * D + j] - m->shift[j]) / m->scale[j]);
    rc = rf_gauss_fit(&f, m->o.ridge, &m->gauss, e);
    rf_matrix_free(&f);
    if (rc) return rf_err_prefix(e, rc, "gaussian reference");
    cJSON_AddNumberToObject(m->detail, "logdet_cov", m->gauss.logdet_cov - 2 * m->log_jac);
    return RF_OK;
}

/* K = 1..max_components fitted on the fitting rows and scored on the validation rows. With the
 * one-standard-error rule the smallest K whose validation NLL is within one standard error of the
 * best is chosen; the standard error is that of the mean per-row difference of log-densities
 * between that K and the best K (a paired comparison on the same validation rows). */
static int fit_gmm(rf_refdensity *m, const double *Xf, int nf, const double *Xv, int nv, rf_rng *rng, rf_err *e) {
    const rf_refdensity_opts *o = &m->o;
    const int D = m->D, Kmax = o->max_components;
    double *lp = malloc(sizeof(double) * (size_t)(nv > 0 ? nv : 1) * Kmax), *vn = malloc(sizeof(double) * Kmax);
    rf_gmm *gs = calloc((size_t)Kmax, sizeof(rf_gmm));
    cJSON *curve = cJSON_CreateArray();
    int rc = RF_OK, nk = 0;
    if (!lp || !vn || !gs || !curve) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    rf_gmm_cfg cfg = {.K = 1,
                      .cov = o->gmm_cov,
                      .max_iter = o->em_max_iter,
                      .restarts = o->restarts,
                      .kmeans_iter = o->kmeans_iter,
                      .tol = o->em_tol,
                      .ridge = o->ridge};
    double best = INFINITY;
    int best_i = -1, since = 0;
    for (int K = 1; K <= Kmax; K++) {
        rf_rng rk;
        rf_rng_fork(rng, &rk); /* one child stream per K: the fit for K does not depend on max_components */
        cfg.K = K;
        rf_gmm_info info;
        if ((rc = rf_gmm_fit_std(Xf, nf, D, &cfg, &rk, &gs[nk], &info, e))) {
            rf_err_prefix(e, rc, "gmm reference, K = %d", K);
            break;
        }
        nk++;
        double *l = lp + (size_t)(K - 1) * nv;
        if ((rc = rf_gmm_logpdf_std(&gs[K - 1], Xv, nv, l, e))) break;
        double sum = 0;
        for (int i = 0; i < nv; i++) sum += l[i];
        vn[K - 1] = -(sum / nv + m->log_jac);
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "k", K);
        cJSON_AddNumberToObject(pt, "k_final", info.K_final);
        cJSON_AddNumberToObject(pt, "val_nll", vn[K - 1]);
        cJSON_AddNumberToObject(pt, "train_nll", -(info.train_ll + m->log_jac));
        cJSON_AddNumberToObject(pt, "iterations", info.iterations);
        cJSON_AddNumberToObject(pt, "iterations_all_restarts", info.total_iterations);
        cJSON_AddBoolToObject(pt, "converged", info.converged);
        cJSON_AddNumberToObject(pt, "reseeded", info.reseeded);
        cJSON_AddNumberToObject(pt, "removed", info.removed);
        cJSON_AddItemToArray(curve, pt);
        if (isfinite(vn[K - 1]) && vn[K - 1] < best) {
            best = vn[K - 1];
            best_i = K - 1;
            since = 0;
        } else {
            since++;
        }
        if (o->k_patience > 0 && since >= o->k_patience) break;
    }
    if (rc == RF_OK && best_i < 0)
        rc = rf_err_set(e, RF_ENONFINITE, "gmm reference: no K in 1..%d gave a finite validation NLL", Kmax);
    if (rc) goto done;
    /* standard errors against the best K, and the choice */
    int chosen = best_i;
    const double *lb = lp + (size_t)best_i * nv;
    for (int q = 0; q < nk; q++) {
        const double *l = lp + (size_t)q * nv;
        double mean = 0, ss = 0;
        for (int i = 0; i < nv; i++) mean += lb[i] - l[i];
        mean /= nv;
        for (int i = 0; i < nv; i++) ss += (lb[i] - l[i] - mean) * (lb[i] - l[i] - mean);
        const double se = nv > 1 ? sqrt(ss / (nv - 1) / nv) : 0;
        cJSON *pt = cJSON_GetArrayItem(curve, q);
        cJSON_AddNumberToObject(pt, "val_nll_minus_best", vn[q] - best);
        cJSON_AddNumberToObject(pt, "se_vs_best", se);
        if (o->k_rule == RF_KRULE_ONE_SE && q < chosen && isfinite(vn[q]) && vn[q] - best <= se) chosen = q;
    }
    m->gmm = gs[chosen];
    memset(&gs[chosen], 0, sizeof gs[chosen]);
    cJSON *d = m->detail;
    cJSON_AddStringToObject(d, "covariance", o->gmm_cov == RF_GMM_FULL ? "full" : "diag");
    cJSON_AddNumberToObject(d, "components", m->gmm.K);
    cJSON_AddNumberToObject(d, "chosen_k", chosen + 1);
    cJSON_AddNumberToObject(d, "best_val_k", best_i + 1);
    cJSON_AddStringToObject(d, "k_rule", o->k_rule == RF_KRULE_ONE_SE ? "one-standard-error" : "min");
    cJSON *w = cJSON_AddArrayToObject(d, "weights");
    for (int k = 0; k < m->gmm.K; k++) cJSON_AddItemToArray(w, cJSON_CreateNumber(exp(m->gmm.logw[k])));
    cJSON_AddNumberToObject(d, "max_components", Kmax);
    cJSON_AddNumberToObject(d, "k_patience", o->k_patience);
    cJSON_AddNumberToObject(d, "em_tol", o->em_tol);
    cJSON_AddNumberToObject(d, "em_max_iter", o->em_max_iter);
    cJSON_AddNumberToObject(d, "restarts", o->restarts);
    cJSON_AddNumberToObject(d, "kmeans_iter", o->kmeans_iter);
    cJSON_AddStringToObject(d, "init", "k-means++ then Lloyd; best training likelihood over restarts");
    cJSON_AddItemToObject(d, "curve", curve);
    curve = NULL;
done:
    for (int q = 0; q < nk; q++) rf_gmm_free(&gs[q]);
    free(gs);
    free(lp);
    free(vn);
    cJSON_Delete(curve);
    return rc;
}

/* Partial Fisher-Yates: the first k entries of idx (0..n-1) become a uniform subset, then sorted. */
static int cmp_int(const void *a, const void *b) {
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}
static int *subset(int n, int k, rf_rng *r) {
    int *idx = malloc(sizeof(int) * (n > 0 ? n : 1));
    if (!idx) return NULL;
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < k && i < n - 1; i++) {
        const int j = i + (int)rf_rng_below(r, (uint64_t)(n - i));
        const int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
    qsort(idx, (size_t)k, sizeof(int), cmp_int);
    return idx;
}

static int cmp_dbl(const void *a, const void *b) {
    return (*(const double *)a > *(const double *)b) - (*(const double *)a < *(const double *)b);
}

/* Mean held-out log-likelihood per row for each of the nh bandwidths: K-fold over the centres, or
 * the query rows Q. */
static int kde_select_eval(const double *C, int nc, const double *Q, int nq, int D, int folds, const int *fold_of,
                           const double *h, int nh, double *mean_ll, rf_err *e) {
    if (folds == 0) {
        int rc = rf_kde_heldout(C, nc, Q, nq, D, h, nh, mean_ll, e);
        if (rc) return rc;
        for (int j = 0; j < nh; j++) mean_ll[j] /= nq;
        return RF_OK;
    }
    double *Ct = malloc(sizeof(double) * (size_t)nc * D), *Qf = malloc(sizeof(double) * (size_t)nc * D);
    double *s = malloc(sizeof(double) * nh);
    if (!Ct || !Qf || !s) {
        free(Ct);
        free(Qf);
        free(s);
        return rf_err_set(e, RF_ENOMEM, "out of memory for %d-fold bandwidth selection", folds);
    }
    for (int j = 0; j < nh; j++) mean_ll[j] = 0;
    int rc = RF_OK;
    for (int f = 0; f < folds && rc == RF_OK; f++) {
        int a = 0, b = 0;
        for (int i = 0; i < nc; i++) {
            double *dst = fold_of[i] == f ? Qf + (size_t)b++ * D : Ct + (size_t)a++ * D;
            memcpy(dst, C + (size_t)i * D, sizeof(double) * D);
        }
        if (b == 0) continue;
        rc = rf_kde_heldout(Ct, a, Qf, b, D, h, nh, s, e);
        for (int j = 0; j < nh && rc == RF_OK; j++) mean_ll[j] += s[j];
    }
    for (int j = 0; j < nh; j++) mean_ll[j] /= nc;
    free(Ct);
    free(Qf);
    free(s);
    return rc;
}

static int fit_kde(rf_refdensity *m, const double *Xf, int nf, const double *Xv, int nv, rf_rng *rng, rf_err *e) {
    const rf_refdensity_opts *o = &m->o;
    const int D = m->D, folds = o->kde_folds;
    const int nc = nf > o->kde_max_rows ? o->kde_max_rows : nf;
    double *C = malloc(sizeof(double) * (size_t)nc * D), *Q = NULL, *h = NULL, *ll = NULL;
    int *fold_of = NULL, nq = 0, rc = RF_OK;
    if (!C) return rf_err_set(e, RF_ENOMEM, "out of memory for %d kernel centres", nc);
    if (nc < nf) {
        int *idx = subset(nf, nc, rng);
        if (!idx) {
            free(C);
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        }
        for (int i = 0; i < nc; i++) memcpy(C + (size_t)i * D, Xf + (size_t)idx[i] * D, sizeof(double) * D);
        free(idx);
    } else {
        memcpy(C, Xf, sizeof(double) * (size_t)nc * D);
    }
    if (folds == 0) {
        nq = nv > o->kde_max_val_rows ? o->kde_max_val_rows : nv;
        Q = malloc(sizeof(double) * (size_t)nq * D);
        if (!Q) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
        if (nq < nv) {
            int *idx = subset(nv, nq, rng);
            if (!idx) {
                rc = rf_err_set(e, RF_ENOMEM, "out of memory");
                goto done;
            }
            for (int i = 0; i < nq; i++) memcpy(Q + (size_t)i * D, Xv + (size_t)idx[i] * D, sizeof(double) * D);
            free(idx);
        } else {
            memcpy(Q, Xv, sizeof(double) * (size_t)nq * D);
        }
    } else {
        fold_of = malloc(sizeof(int) * nc);
        int *perm = malloc(sizeof(int) * nc);
        if (!fold_of || !perm) {
            free(perm);
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < nc; i++) perm[i] = i;
        rf_rng_shuffle(rng, perm, nc);
        for (int i = 0; i < nc; i++) fold_of[perm[i]] = i % folds;
        free(perm);
        nq = nc;
    }
    /* grid: log-spaced multiples of Scott's factor, plus Scott and Silverman themselves */
    const double scott = pow((double)nc, -1.0 / (D + 4)), silver = pow(nc * (D + 2) / 4.0, -1.0 / (D + 4));
    const int ng = o->kde_n_bandwidths + 2, nr = o->kde_refine;
    h = malloc(sizeof(double) * (ng + nr));
    ll = malloc(sizeof(double) * (ng + nr));
    if (!h || !ll) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    const double l0 = log(o->kde_bw_lo * scott), l1 = log(o->kde_bw_hi * scott);
    for (int j = 0; j < o->kde_n_bandwidths; j++)
        h[j] = o->kde_n_bandwidths == 1 ? scott : exp(l0 + (l1 - l0) * j / (o->kde_n_bandwidths - 1));
    h[ng - 2] = scott;
    h[ng - 1] = silver;
    qsort(h, (size_t)ng, sizeof(double), cmp_dbl);
    if ((rc = kde_select_eval(C, nc, Q, nq, D, folds, fold_of, h, ng, ll, e))) goto done;
    int bj = 0;
    for (int j = 1; j < ng; j++)
        if (ll[j] > ll[bj]) bj = j;
    int nt = ng;
    if (nr > 0) {
        /* refine between the neighbours of the best grid value (one grid step out at the ends) */
        const double step = ng > 1 ? log(h[ng - 1] / h[0]) / (ng - 1) : log(2.0);
        const double a = bj > 0 ? log(h[bj - 1]) : log(h[0]) - step;
        const double b = bj < ng - 1 ? log(h[bj + 1]) : log(h[ng - 1]) + step;
        for (int j = 0; j < nr; j++) h[ng + j] = exp(a + (b - a) * (j + 1) / (nr + 1));
        if ((rc = kde_select_eval(C, nc, Q, nq, D, folds, fold_of, h + ng, nr, ll + ng, e))) goto done;
        nt = ng + nr;
    }
    /* sort the whole curve by h, pick the best */
    int *ord = calloc((size_t)nt + 1, sizeof(int));
    if (!ord) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int j = 0; j < nt; j++) ord[j] = j;
    for (int i = 1; i < nt; i++) /* insertion sort by h (nt is small) */
        for (int j = i; j > 0 && h[ord[j]] < h[ord[j - 1]]; j--) {
            const int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    int best = ord[0];
    cJSON *curve = cJSON_CreateArray();
    for (int j = 0; j < nt; j++) {
        const int q = ord[j];
        if (ll[q] > ll[best]) best = q;
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "h", h[q]);
        cJSON_AddNumberToObject(pt, "val_nll", -(ll[q] + m->log_jac));
        cJSON_AddItemToArray(curve, pt);
    }
    const int at_edge = best == ord[0] || best == ord[nt - 1];
    free(ord);
    if (!isfinite(ll[best])) {
        cJSON_Delete(curve);
        rc = rf_err_set(e, RF_ENONFINITE, "kde reference: no bandwidth gave a finite held-out likelihood");
        goto done;
    }
    const double h_sel = h[best];
    /* K-fold selected h for (folds-1)/folds of the centres: rescale to all of them (h ~ n^(-1/(D+4))) */
    const double h_final = folds ? h_sel * pow((folds - 1.0) / folds, 1.0 / (D + 4)) : h_sel;
    cJSON *d = m->detail;
    cJSON_AddNumberToObject(d, "bandwidth", h_final);
    cJSON_AddNumberToObject(d, "bandwidth_selected", h_sel);
    cJSON_AddNumberToObject(d, "bandwidth_scott", scott);
    cJSON_AddNumberToObject(d, "bandwidth_silverman", silver);
    cJSON_AddStringToObject(d, "kernel", "Gaussian N(0, h^2 I) on standardised columns");
    cJSON_AddStringToObject(d, "bandwidth_selection", folds ? "kfold" : "validation");
    cJSON_AddNumberToObject(d, "folds", folds);
    cJSON_AddNumberToObject(d, "selection_rows", nq);
    cJSON_AddNumberToObject(d, "centres", nc);
    cJSON_AddBoolToObject(d, "subsampled", nc < nf);
    cJSON_AddNumberToObject(d, "max_rows", o->kde_max_rows);
    cJSON_AddNumberToObject(d, "max_val_rows", o->kde_max_val_rows);
    cJSON_AddBoolToObject(d, "at_grid_edge", at_edge);
    cJSON_AddItemToObject(d, "curve", curve);
    rc = rf_kde_init(&m->kde, C, nc, D, h_final, e);
    C = NULL; /* owned by the model now (freed by rf_kde_init on failure) */
done:
    free(C);
    free(Q);
    free(h);
    free(ll);
    free(fold_of);
    return rc;
}

rf_refdensity *rf_refdensity_fit(const char *kind, const rf_matrix *train, const rf_matrix *val,
                                 const rf_refdensity_opts *opts, rf_err *e) {
    const double t0 = rf_now();
    rf_refdensity_opts o;
    if (opts)
        o = *opts;
    else
        rf_refdensity_opts_default(&o);
    int k = -1;
    for (int i = 0; i < 3 && kind; i++)
        if (!strcmp(kind, kind_names[i])) k = i;
    if (k < 0) {
        rf_err_set(e, RF_EARG, "reference density kind '%s': expected gaussian, gmm or kde", kind ? kind : "(null)");
        return NULL;
    }
    if (check_matrix(train, "train", 0, e) || (val && check_matrix(val, "val", train->d, e)) || check_opts(&o, e))
        return NULL;
    const int D = train->d;
    rf_refdensity *m = calloc(1, sizeof *m);
    if (!m) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    m->kind = k;
    m->D = D;
    m->o = o;
    m->val_nll = NAN;
    m->train_rows = train->n;
    rf_rng rng;
    rf_rng_seed(&rng, o.seed);
    rf_matrix split_fit = {0}, split_val = {0};
    const rf_matrix *fit = train, *v = val;
    double *Xf = NULL, *Xv = NULL;
    int rc = RF_OK;
    if (val)
        m->val_source = "given";
    else if (k == KIND_GAUSS)
        m->val_source = "none";
    else if (k == KIND_KDE && o.kde_folds >= 2)
        m->val_source = "kfold";
    else {
        m->val_source = "split";
        if ((rc = rf_matrix_split(train, o.val_frac, &rng, &split_fit, &split_val, e))) goto fail;
        if (split_val.n < 1 || split_fit.n < 1) {
            rc = rf_err_set(e, RF_EARG,
                            "%s reference: %d training rows are too few to hold out val_frac %g for validation "
                            "(pass val rows)",
                            kind_names[k], train->n, o.val_frac);
            goto fail;
        }
        fit = &split_fit;
        v = &split_val;
    }
    m->fit_rows = fit->n;
    m->val_rows = v ? v->n : 0;
    const int nf = fit->n, nv = v ? v->n : 0;
    /* row-count requirements */
    if (k == KIND_GAUSS && nf < D + 1)
        rc = rf_err_set(e, RF_EARG,
                        "gaussian reference: a full covariance in %d dimensions needs at least %d rows, got %d", D,
                        D + 1, nf);
    /* gmm: K goes up to what the fitting rows support (a full covariance needs D + 1 rows per
     * component): fewer rows lower the largest K tried (recorded), instead of failing */
    int k_requested = 0;
    if (k == KIND_GMM) {
        const int per = o.gmm_cov == RF_GMM_FULL ? D + 1 : 2;
        const int k_fit = nf / per;
        if (k_fit < 1)
            rc = rf_err_set(e, RF_EARG,
                            "gmm reference: one component with %s covariances in %d dimensions needs at least %d "
                            "fitting rows, got %d (%d training rows, %d held out for validation)",
                            o.gmm_cov == RF_GMM_FULL ? "full" : "diagonal", D, per, nf, train->n, val ? 0 : nv);
        else if (k_fit < o.max_components) {
            k_requested = o.max_components;
            m->o.max_components = k_fit;
        }
    }
    if (k == KIND_KDE && (nf < 2 || (o.kde_folds >= 2 &&
                                     (nf < o.kde_folds || (o.kde_max_rows < nf ? o.kde_max_rows : nf) < o.kde_folds))))
        rc = rf_err_set(e, RF_EARG, "kde reference: %d fitting rows are too few (need >= 2 and >= kde_folds %d)", nf,
                        o.kde_folds);
    if (rc) goto fail;
    /* standardisation of the fitting rows */
    m->shift = calloc((size_t)D, sizeof(double));
    m->scale = calloc((size_t)D, sizeof(double));
    m->detail = cJSON_CreateObject();
    Xf = malloc(sizeof(double) * (size_t)nf * D);
    Xv = malloc(sizeof(double) * (size_t)(nv > 0 ? nv : 1) * D);
    if (!m->shift || !m->scale || !m->detail || !Xf || !Xv) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory for %d x %d training rows", nf, D);
        goto fail;
    }
    for (int i = 0; i < nf; i++)
        for (int j = 0; j < D; j++) m->shift[j] += fit->x[(size_t)i * D + j];
    for (int j = 0; j < D; j++) m->shift[j] /= nf;
    for (int i = 0; i < nf; i++)
        for (int j = 0; j < D; j++) {
            const double t = fit->x[(size_t)i * D + j] - m->shift[j];
            m->scale[j] += t * t;
        }
    m->log_jac = 0;
    for (int j = 0; j < D; j++) {
        m->scale[j] = sqrt(m->scale[j] / nf);
        if (!(m->scale[j] > 0)) m->scale[j] = 1; /* constant column */
        m->log_jac -= log(m->scale[j]);
    }
    to_std(m, fit, 0, nf, Xf);
    if (v) to_std(m, v, 0, nv, Xv);
    if (k == KIND_GAUSS)
        rc = fit_gauss(m, fit, e);
    else if (k == KIND_GMM) {
        rc = fit_gmm(m, Xf, nf, Xv, nv, &rng, e);
        if (!rc && k_requested) {
            cJSON_AddNumberToObject(m->detail, "max_components_requested", k_requested);
            char note[200];
            snprintf(note, sizeof note, "K tried up to %d, not %d: %d fitting rows support at most %d component%s of %s",
                     m->o.max_components, k_requested, nf, m->o.max_components, m->o.max_components == 1 ? "" : "s",
                     o.gmm_cov == RF_GMM_FULL ? "full covariance (D + 1 rows each)" : "diagonal covariance");
            cJSON_AddStringToObject(m->detail, "max_components_note", note);
        }
    }
    else
        rc = fit_kde(m, Xf, nf, Xv, nv, &rng, e);
    if (rc) goto fail;
    if (v && (rc = rf_refdensity_logpdf(m, v, NULL, &m->val_nll, e))) goto fail;
    free(Xf);
    free(Xv);
    rf_matrix_free(&split_fit);
    rf_matrix_free(&split_val);
    m->fit_seconds = rf_now() - t0;
    return m;
fail:
    free(Xf);
    free(Xv);
    rf_matrix_free(&split_fit);
    rf_matrix_free(&split_val);
    rf_refdensity_free(m);
    return NULL;
}

/* ---- accessors, counts, description ---- */

const char *rf_refdensity_kind(const rf_refdensity *m) { return m ? kind_names[m->kind] : NULL; }
int rf_refdensity_dim(const rf_refdensity *m) { return m ? m->D : 0; }
double rf_refdensity_fit_seconds(const rf_refdensity *m) { return m ? m->fit_seconds : NAN; }
double rf_refdensity_val_nll(const rf_refdensity *m) { return m ? m->val_nll : NAN; }
int rf_refdensity_components(const rf_refdensity *m) {
    if (!m) return 0;
    return m->kind == KIND_GAUSS ? 1 : m->kind == KIND_GMM ? m->gmm.K : m->kde.n;
}
double rf_refdensity_bandwidth(const rf_refdensity *m) { return m && m->kind == KIND_KDE ? m->kde.h : NAN; }

int64_t rf_refdensity_n_params(const rf_refdensity *m) {
    if (!m) return 0;
    const int64_t D = m->D;
    if (m->kind == KIND_GAUSS) return D + D * (D + 1) / 2;
    if (m->kind == KIND_GMM) {
        const int64_t K = m->gmm.K;
        return (K - 1) + K * D + (m->gmm.cov == RF_GMM_FULL ? K * D * (D + 1) / 2 : K * D);
    }
    return (int64_t)m->kde.n * D + D;
}

double rf_refdensity_flops_per_sample(const rf_refdensity *m, rf_ref_flops which) {
    if (!m) return NAN;
    const double D = m->D;
    const int full = m->kind == KIND_GAUSS || (m->kind == KIND_GMM && m->gmm.cov == RF_GMM_FULL);
    const double T = full ? D * (D + 1) : D;
    if (which == RF_REF_FLOPS_LOGPDF) {
        if (m->kind == KIND_GAUSS) return 2 * D + D + D * D + 2 * D + 2 + 1;
        if (m->kind == KIND_GMM) {
            const double K = m->gmm.K;
            const double per = full ? D * (D + 1) + D + 2 * D + 2 : 2 * D + 2 * D + 2;
            return 2 * D + K * per + 3 * K + 3;
        }
        return 2 * D + 2 * D + (double)m->kde.n * (2 * D + 6) + 3;
    }
    if (m->kind == KIND_GAUSS) return T + D + 2 * D;
    if (m->kind == KIND_GMM) return m->gmm.K + T + D + 2 * D;
    return 2 * D + 2 * D;
}

cJSON *rf_refdensity_describe_json(const rf_refdensity *m) {
    if (!m) return NULL;
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "kind", kind_names[m->kind]);
    cJSON_AddNumberToObject(j, "dim", m->D);
    cJSON_AddNumberToObject(j, "fit_seconds", m->fit_seconds);
    if (m->o.seed <= (1ULL << 53))
        cJSON_AddNumberToObject(j, "seed", (double)m->o.seed);
    else {
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)m->o.seed);
        cJSON_AddStringToObject(j, "seed", buf); /* not exactly representable as a JSON number */
    }
    cJSON_AddNumberToObject(j, "n_params", (double)rf_refdensity_n_params(m));
    cJSON_AddNumberToObject(j, "flops_logpdf", rf_refdensity_flops_per_sample(m, RF_REF_FLOPS_LOGPDF));
    cJSON_AddNumberToObject(j, "flops_sample", rf_refdensity_flops_per_sample(m, RF_REF_FLOPS_SAMPLE));
    cJSON_AddNumberToObject(j, "ridge", m->o.ridge);
    cJSON_AddNumberToObject(j, "train_rows", m->train_rows);
    cJSON_AddNumberToObject(j, "fit_rows", m->fit_rows);
    cJSON_AddNumberToObject(j, "val_rows", m->val_rows);
    cJSON_AddStringToObject(j, "val_source", m->val_source);
    if (!strcmp(m->val_source, "split")) cJSON_AddNumberToObject(j, "val_frac", m->o.val_frac);
    if (isfinite(m->val_nll))
        cJSON_AddNumberToObject(j, "val_nll", m->val_nll);
    else
        cJSON_AddNullToObject(j, "val_nll");
    cJSON_AddBoolToObject(j, "standardized", 1);
    for (const cJSON *it = m->detail ? m->detail->child : NULL; it; it = it->next)
        cJSON_AddItemToObject(j, it->string, cJSON_Duplicate(it, 1));
    return j;
}

int rf_refdensity_gmm_component(const rf_refdensity *m, int k, double *weight, double *mean, double *cov, rf_err *e) {
    if (!m) return rf_err_set(e, RF_EARG, "rf_refdensity_gmm_component: NULL model");
    if (m->kind == KIND_KDE)
        return rf_err_set(e, RF_EARG, "rf_refdensity_gmm_component: a kde reference has no mixture components");
    const int K = m->kind == KIND_GAUSS ? 1 : m->gmm.K, D = m->D;
    if (k < 0 || k >= K)
        return rf_err_set(e, RF_EARG, "rf_refdensity_gmm_component: component %d is not in [0, %d)", k, K);
    const double *mu = m->kind == KIND_GAUSS ? m->gauss.mean : m->gmm.mu + (size_t)k * D;
    const double *L = m->kind == KIND_GAUSS ? m->gauss.chol : m->gmm.chol + (size_t)k * D * D;
    const int full = m->kind == KIND_GAUSS || m->gmm.cov == RF_GMM_FULL;
    if (weight) *weight = m->kind == KIND_GAUSS ? 1.0 : exp(m->gmm.logw[k]);
    if (mean)
        for (int j = 0; j < D; j++) mean[j] = m->shift[j] + m->scale[j] * mu[j];
    if (cov)
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++) {
                double s = 0;
                if (full)
                    for (int c = 0; c <= (a < b ? a : b); c++) s += L[(size_t)a * D + c] * L[(size_t)b * D + c];
                else if (a == b)
                    s = L[(size_t)a * D + a] * L[(size_t)a * D + a];
                cov[(size_t)a * D + b] = s * m->scale[a] * m->scale[b];
            }
    return RF_OK;
}
