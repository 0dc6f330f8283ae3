/* fANOVA: exact variance decomposition of a random forest's trees (Hutter, Hoos and Leyton-Brown
 * 2014, Algorithm 2), with the measure described in include/renflow/importance.h.
 *
 * For one tree with leaf boxes B_l and values v_l, let m_lj be the measure of B_l's side in
 * column j (so the leaf's weight is prod_j m_lj, and the weights sum to 1). Then
 *   f0 = sum_l v_l prod_j m_lj,   V = sum_l prod_j m_lj (v_l - f0)^2.
 * The split points of the tree in column i cut its range into cells; every leaf covers whole
 * cells. The marginal of column i on cell c is
 *   a_i(c) = sum_{l covers c} v_l prod_{j != i} m_lj
 * (the leaves covering c restricted to c partition the other columns), and
 *   V_i = sum_c w_c (a_i(c) - f0)^2,
 * with w_c the measure of the cell. Pairs are the same on the grid of cells of columns i and j.
 * Each leaf adds a constant to a range of cells (a rectangle for pairs), so the marginals are
 * accumulated with (2-D) difference arrays: O(leaves + cells) per column or pair and tree. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forest.h"

void rf_fanova_opts_default(rf_fanova_opts *o) {
    memset(o, 0, sizeof *o);
    rf_forest_opts_default(&o->forest);
    o->pairs = 1;
    o->inactive_weight = -1;
}

void rf_importance_free(rf_importance *imp) {
    if (!imp) return;
    free(imp->main_mean);
    free(imp->main_sd);
    free(imp->pair_i);
    free(imp->pair_j);
    free(imp->pair_mean);
    free(imp->pair_sd);
    free(imp->pair_total_mean);
    free(imp->inactive_weight);
    memset(imp, 0, sizeof *imp);
}

static double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* Measure of [a, b] in a continuous column: p * delta(inactive at -1) + (1 - p) * U[0, 1]. */
static double cont_measure(double a, double b, double p) {
    return (a <= FOREST_LO ? p : 0) + (1 - p) * (clamp01(b) - clamp01(a));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* index of v in the sorted cut points (exact match expected; nearest otherwise) */
static int find_cut(const double *cut, int n, double v) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cut[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

typedef struct tree_work {
    int *k;         /* d: number of cells per column */
    double **cut;   /* d: k + 1 cut points (continuous) */
    double **w;     /* d: k cell measures */
    double *m;      /* L x d: leaf side measures */
    int *ra, *rb;   /* L x d: leaf cell range [ra, rb) (continuous) */
    double *pnz;    /* L: product of non-zero m */
    int *nz;        /* L: number of zero m */
    double *buf;    /* marginal accumulation */
    size_t buf_n;
} tree_work;

static void work_free(tree_work *w, int d) {
    if (w->cut)
        for (int j = 0; j < d; j++) free(w->cut[j]);
    if (w->w)
        for (int j = 0; j < d; j++) free(w->w[j]);
    free(w->k);
    free(w->cut);
    free(w->w);
    free(w->m);
    free(w->ra);
    free(w->rb);
    free(w->pnz);
    free(w->nz);
    free(w->buf);
    memset(w, 0, sizeof *w);
}

static int work_buf(tree_work *w, size_t n) {
    if (n <= w->buf_n) return 0;
    double *b = realloc(w->buf, n * sizeof *b);
    if (!b) return -1;
    w->buf = b;
    w->buf_n = n;
    return 0;
}

/* prod_{j not in {i1, i2}} m_lj (i2 may equal i1 or be -1) */
static double prod_excl(const tree_work *w, int d, int l, int i1, int i2) {
    const double *m = w->m + (size_t)l * d;
    int z = w->nz[l];
    double p = w->pnz[l];
    if (m[i1] == 0)
        z--;
    else
        p /= m[i1];
    if (i2 >= 0 && i2 != i1) {
        if (m[i2] == 0)
            z--;
        else
            p /= m[i2];
    }
    return z > 0 ? 0 : p;
}

/* Cell ranges of leaf l in column j: continuous: one range; categorical: one per category of the
 * mask. Returns the count; ranges in r0/r1 (room for 64). */
static int leaf_ranges(const rf_forest *f, const rf_tree *t, const tree_work *w, int l, int j,
                       int *r0, int *r1) {
    int d = f->d;
    if (f->kinds[j] != RF_FEATURE_CATEGORICAL) {
        r0[0] = w->ra[(size_t)l * d + j];
        r1[0] = w->rb[(size_t)l * d + j];
        return 1;
    }
    uint64_t mk = t->mask[(size_t)l * d + j];
    int n = 0;
    while (mk) {
        int c = __builtin_ctzll(mk);
        mk &= mk - 1;
        r0[n] = c;
        r1[n] = c + 1;
        n++;
    }
    return n;
}

/* Variance decomposition of one tree: V, V_i (d), V_ij total (np, when pairs). 0 or -1 (memory). */
static int tree_fanova(const rf_forest *f, const rf_tree *t, const double *p, int pairs, double *V,
                       double *Vi, double *Vij) {
    int d = f->d, L = t->n_leaves;
    tree_work w;
    memset(&w, 0, sizeof w);
    w.k = calloc((size_t)d, sizeof *w.k);
    w.cut = calloc((size_t)d, sizeof *w.cut);
    w.w = calloc((size_t)d, sizeof *w.w);
    w.m = malloc((size_t)L * d * sizeof *w.m);
    w.ra = malloc((size_t)L * d * sizeof *w.ra);
    w.rb = malloc((size_t)L * d * sizeof *w.rb);
    w.pnz = malloc((size_t)L * sizeof *w.pnz);
    w.nz = malloc((size_t)L * sizeof *w.nz);
    if (!w.k || !w.cut || !w.w || !w.m || !w.ra || !w.rb || !w.pnz || !w.nz) goto oom;

    /* cells of every column */
    for (int j = 0; j < d; j++) {
        if (f->kinds[j] == RF_FEATURE_CATEGORICAL) {
            int K = f->ncat[j];
            w.k[j] = K + 1;
            w.w[j] = malloc((size_t)(K + 1) * sizeof **w.w);
            if (!w.w[j]) goto oom;
            for (int c = 0; c < K; c++) w.w[j][c] = (1 - p[j]) / K;
            w.w[j][K] = p[j];
            continue;
        }
        int nt = 0;
        for (int q = 0; q < t->n_nodes; q++)
            if (t->nodes[q].feature == j) nt++;
        double *cut = malloc((size_t)(nt + 2) * sizeof *cut);
        if (!cut) goto oom;
        w.cut[j] = cut;
        int c = 0;
        cut[c++] = FOREST_LO;
        for (int q = 0; q < t->n_nodes; q++)
            if (t->nodes[q].feature == j) cut[c++] = t->nodes[q].threshold;
        qsort(cut + 1, (size_t)nt, sizeof *cut, cmp_double);
        int u = 1;
        for (int q = 1; q <= nt; q++)
            if (cut[q] != cut[u - 1]) cut[u++] = cut[q];
        if (cut[u - 1] != FOREST_HI) cut[u++] = FOREST_HI;
        w.k[j] = u - 1;
        w.w[j] = malloc((size_t)(u - 1) * sizeof **w.w);
        if (!w.w[j]) goto oom;
        for (int q = 0; q < u - 1; q++) w.w[j][q] = cont_measure(cut[q], cut[q + 1], p[j]);
    }

    /* leaf measures, f0, V */
    double tw = 0, f0 = 0;
    for (int l = 0; l < L; l++) {
        double prod = 1, pnz = 1;
        int nz = 0;
        for (int j = 0; j < d; j++) {
            size_t o = (size_t)l * d + j;
            double mj;
            if (f->kinds[j] == RF_FEATURE_CATEGORICAL) {
                mj = 0;
                uint64_t mk = t->mask[o];
                while (mk) {
                    mj += w.w[j][__builtin_ctzll(mk)];
                    mk &= mk - 1;
                }
                w.ra[o] = w.rb[o] = 0;
            } else {
                w.ra[o] = find_cut(w.cut[j], w.k[j] + 1, t->lo[o]);
                w.rb[o] = find_cut(w.cut[j], w.k[j] + 1, t->hi[o]);
                mj = cont_measure(t->lo[o], t->hi[o], p[j]);
            }
            w.m[o] = mj;
            prod *= mj;
            if (mj == 0)
                nz++;
            else
                pnz *= mj;
        }
        w.pnz[l] = pnz;
        w.nz[l] = nz;
        tw += prod;
        f0 += prod * t->value[l];
    }
    if (!(tw > 0)) { /* cannot happen for a partition of the domain */
        *V = 0;
        goto done;
    }
    f0 /= tw;
    double var = 0;
    for (int l = 0; l < L; l++) {
        double wl = w.nz[l] ? 0 : w.pnz[l], r = t->value[l] - f0;
        var += wl * r * r;
    }
    *V = var / tw;

    int r0[64], r1[64], s0[64], s1[64];
    /* main effects */
    for (int i = 0; i < d; i++) {
        int K = w.k[i];
        if (work_buf(&w, (size_t)K + 1)) goto oom;
        double *A = w.buf;
        memset(A, 0, ((size_t)K + 1) * sizeof *A);
        for (int l = 0; l < L; l++) {
            double val = t->value[l] * prod_excl(&w, d, l, i, -1);
            int nr = leaf_ranges(f, t, &w, l, i, r0, r1);
            for (int a = 0; a < nr; a++) {
                A[r0[a]] += val;
                A[r1[a]] -= val;
            }
        }
        double run = 0, vi = 0;
        for (int c = 0; c < K; c++) {
            run += A[c];
            double r = run - f0;
            vi += w.w[i][c] * r * r;
        }
        Vi[i] = vi;
    }
    if (!pairs) goto done;
    /* pairs */
    int q = 0;
    for (int i = 0; i < d; i++)
        for (int j = i + 1; j < d; j++, q++) {
            int Ki = w.k[i], Kj = w.k[j];
            size_t stride = (size_t)Kj + 1, sz = ((size_t)Ki + 1) * stride;
            if (work_buf(&w, sz)) goto oom;
            double *D = w.buf;
            memset(D, 0, sz * sizeof *D);
            for (int l = 0; l < L; l++) {
                double val = t->value[l] * prod_excl(&w, d, l, i, j);
                int na = leaf_ranges(f, t, &w, l, i, r0, r1);
                int nb = leaf_ranges(f, t, &w, l, j, s0, s1);
                for (int a = 0; a < na; a++)
                    for (int b = 0; b < nb; b++) {
                        D[r0[a] * stride + s0[b]] += val;
                        D[r0[a] * stride + s1[b]] -= val;
                        D[r1[a] * stride + s0[b]] -= val;
                        D[r1[a] * stride + s1[b]] += val;
                    }
            }
            /* 2-D prefix sums in place */
            for (int a = 0; a < Ki; a++)
                for (int b = 1; b < Kj; b++) D[a * stride + b] += D[a * stride + b - 1];
            for (int a = 1; a < Ki; a++)
                for (int b = 0; b < Kj; b++) D[a * stride + b] += D[(a - 1) * stride + b];
            double vij = 0;
            for (int a = 0; a < Ki; a++) {
                double wa = w.w[i][a];
                if (wa == 0) continue;
                for (int b = 0; b < Kj; b++) {
                    double r = D[a * stride + b] - f0;
                    vij += wa * w.w[j][b] * r * r;
                }
            }
            Vij[q] = vij;
        }
done:
    work_free(&w, d);
    return 0;
oom:
    work_free(&w, d);
    return -1;
}

int rf_fanova_forest(const rf_forest *f, const rf_fanova_opts *o, rf_importance *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "fanova: no output");
    memset(out, 0, sizeof *out);
    if (!f) return rf_err_set(e, RF_EARG, "fanova: no forest");
    rf_fanova_opts dflt;
    if (!o) {
        rf_fanova_opts_default(&dflt);
        o = &dflt;
    }
    if (isnan(o->inactive_weight) || o->inactive_weight >= 1)
        return rf_err_set(e, RF_EARG,
                          "fanova: inactive_weight = %g must be < 0 (fraction of inactive rows) "
                          "or in [0, 1)",
                          o->inactive_weight);
    int d = f->d, T = f->n_trees;
    int np = o->pairs && d > 1 ? d * (d - 1) / 2 : 0;
    double *V = calloc((size_t)T, sizeof *V);
    double *Vi = calloc((size_t)T * d, sizeof *Vi);
    double *Vij = calloc((size_t)T * (np ? np : 1), sizeof *Vij);
    double *p = calloc((size_t)d, sizeof *p);
    out->main_mean = calloc((size_t)d, sizeof *out->main_mean);
    out->main_sd = calloc((size_t)d, sizeof *out->main_sd);
    out->inactive_weight = calloc((size_t)d, sizeof *out->inactive_weight);
    size_t npa = np ? (size_t)np : 1;
    out->pair_i = calloc(npa, sizeof *out->pair_i);
    out->pair_j = calloc(npa, sizeof *out->pair_j);
    out->pair_mean = calloc(npa, sizeof *out->pair_mean);
    out->pair_sd = calloc(npa, sizeof *out->pair_sd);
    out->pair_total_mean = calloc(npa, sizeof *out->pair_total_mean);
    int rc = RF_OK;
    if (!V || !Vi || !Vij || !p || !out->main_mean || !out->main_sd || !out->inactive_weight ||
        !out->pair_i || !out->pair_j || !out->pair_mean || !out->pair_sd ||
        !out->pair_total_mean) {
        rc = rf_err_set(e, RF_ENOMEM, "fanova: out of memory (%d trees, %d parameters)", T, d);
        goto end;
    }
    for (int j = 0; j < d; j++) {
        if (o->inactive_weight < 0)
            p[j] = f->inactive_frac[j];
        else
            p[j] = f->inactive_frac[j] > 0 ? o->inactive_weight : 0;
        out->inactive_weight[j] = p[j];
    }

    int fail = 0;
#pragma omp parallel for schedule(dynamic, 1) if (T > 1 && rf_forest_n_leaves(f) * d > 20000)
    for (int t = 0; t < T; t++) {
        if (tree_fanova(f, &f->trees[t], p, np > 0, &V[t], Vi + (size_t)t * d,
                        Vij + (size_t)t * npa)) {
#pragma omp atomic write
            fail = 1;
        }
    }
    if (fail) {
        rc = rf_err_set(e, RF_ENOMEM, "fanova: out of memory computing marginals");
        goto end;
    }

    out->d = d;
    out->n = f->n;
    out->n_trees = T;
    out->n_pairs = np;
    int used = 0;
    double tv = 0;
    /* a tree counts when its variance is not just rounding noise of its values */
    for (int t = 0; t < T; t++) {
        double vmax = 0;
        for (int l = 0; l < f->trees[t].n_leaves; l++)
            vmax = fmax(vmax, fabs(f->trees[t].value[l]));
        if (V[t] > 1e-24 * (vmax * vmax) && V[t] > 0) {
            used++;
            tv += V[t];
        } else {
            V[t] = 0;
        }
    }
    out->n_trees_used = used;
    if (used == 0) {
        rc = rf_err_set(e, RF_EARG,
                        "fanova: every tree of the forest is constant: no split separates the "
                        "%d trials (the objective or the parameters do not vary), so there is "
                        "no variance to decompose",
                        f->n);
        goto end;
    }
    out->total_variance = tv / used;
    /* mean and population sd of the fractions over used trees */
    for (int i = 0; i < d; i++) {
        double mu = 0, m2 = 0;
        int c = 0;
        for (int t = 0; t < T; t++) {
            if (V[t] == 0) continue;
            double fr = fmax(0, Vi[(size_t)t * d + i]) / V[t], dv = fr - mu;
            c++;
            mu += dv / c;
            m2 += dv * (fr - mu);
        }
        out->main_mean[i] = mu;
        out->main_sd[i] = sqrt(fmax(0, m2 / c));
    }
    int q = 0;
    for (int i = 0; i < d && np; i++)
        for (int j = i + 1; j < d; j++, q++) {
            out->pair_i[q] = i;
            out->pair_j[q] = j;
            double mu = 0, m2 = 0, tot = 0;
            int c = 0;
            for (int t = 0; t < T; t++) {
                if (V[t] == 0) continue;
                double vij = Vij[(size_t)t * npa + q];
                double ind = vij - Vi[(size_t)t * d + i] - Vi[(size_t)t * d + j];
                double fr = fmax(0, ind) / V[t], dv = fr - mu;
                c++;
                mu += dv / c;
                m2 += dv * (fr - mu);
                tot += fmax(0, vij) / V[t];
            }
            out->pair_mean[q] = mu;
            out->pair_sd[q] = sqrt(fmax(0, m2 / c));
            out->pair_total_mean[q] = tot / c;
        }
end:
    free(V);
    free(Vi);
    free(Vij);
    free(p);
    if (rc != RF_OK) rf_importance_free(out);
    return rc;
}

int rf_fanova_compute(const double *X, const double *y, int n, int d,
                      const rf_feature_kind *kinds, const int *n_categories,
                      const rf_fanova_opts *o, rf_importance *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "fanova: no output");
    memset(out, 0, sizeof *out);
    rf_fanova_opts dflt;
    if (!o) {
        rf_fanova_opts_default(&dflt);
        o = &dflt;
    }
    if (n >= 2 && y) {
        int all_finite = 1, constant = 1;
        for (int i = 0; i < n; i++) {
            if (!isfinite(y[i])) all_finite = 0;
            if (y[i] != y[0]) constant = 0;
        }
        if (all_finite && constant)
            return rf_err_set(e, RF_EARG,
                              "fanova: the objective is constant (all %d values are %g): no "
                              "variance to decompose",
                              n, y[0]);
    }
    rf_forest *f = NULL;
    int rc = rf_forest_fit(X, y, n, d, kinds, n_categories, &o->forest, &f, e);
    if (rc != RF_OK) return rf_err_prefix(e, rc, "fanova");
    rc = rf_fanova_forest(f, o, out, e);
    rf_forest_free(f);
    return rc;
}

/* ------------------------------------------------------------------ JSON */

static const char *param_name(const char *const *names, int i, char *buf, size_t n) {
    if (names && names[i]) return names[i];
    snprintf(buf, n, "x%d", i + 1);
    return buf;
}

typedef struct keyed {
    double v;
    int i;
} keyed;

static int cmp_keyed_desc(const void *a, const void *b) {
    const keyed *p = a, *q = b;
    if (p->v != q->v) return (p->v < q->v) - (p->v > q->v);
    return (p->i > q->i) - (p->i < q->i);
}

/* Pair indices by decreasing mean (ties by index). */
static int pair_order(const rf_importance *imp, int *ord) {
    keyed *k = malloc((size_t)imp->n_pairs * sizeof *k);
    if (!k) return -1;
    for (int q = 0; q < imp->n_pairs; q++) k[q] = (keyed){imp->pair_mean[q], q};
    qsort(k, (size_t)imp->n_pairs, sizeof *k, cmp_keyed_desc);
    for (int q = 0; q < imp->n_pairs; q++) ord[q] = k[q].i;
    free(k);
    return 0;
}

cJSON *rf_importance_to_json(const rf_importance *imp, const char *const *names) {
    if (!imp) return NULL;
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    char b1[32], b2[32];
    cJSON_AddStringToObject(j, "method", "fanova");
    cJSON_AddNumberToObject(j, "n_samples", imp->n);
    cJSON_AddNumberToObject(j, "n_trees", imp->n_trees);
    cJSON_AddNumberToObject(j, "n_trees_used", imp->n_trees_used);
    cJSON_AddNumberToObject(j, "total_variance", imp->total_variance);
    cJSON *m = cJSON_AddArrayToObject(j, "main");
    for (int i = 0; m && i < imp->d; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddStringToObject(o, "param", param_name(names, i, b1, sizeof b1));
        cJSON_AddNumberToObject(o, "index", i);
        cJSON_AddNumberToObject(o, "mean", imp->main_mean[i]);
        cJSON_AddNumberToObject(o, "sd", imp->main_sd[i]);
        cJSON_AddNumberToObject(o, "inactive_weight", imp->inactive_weight[i]);
        cJSON_AddItemToArray(m, o);
    }
    cJSON *pa = cJSON_AddArrayToObject(j, "pairs");
    int *ord = imp->n_pairs ? malloc((size_t)imp->n_pairs * sizeof *ord) : NULL;
    if (ord && pair_order(imp, ord)) {
        free(ord);
        ord = NULL;
    }
    for (int k = 0; pa && ord && k < imp->n_pairs; k++) {
        int q = ord[k];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON *ps = cJSON_AddArrayToObject(o, "params");
        cJSON_AddItemToArray(ps, cJSON_CreateString(param_name(names, imp->pair_i[q], b1, sizeof b1)));
        cJSON_AddItemToArray(ps, cJSON_CreateString(param_name(names, imp->pair_j[q], b2, sizeof b2)));
        cJSON *ix = cJSON_AddArrayToObject(o, "indices");
        cJSON_AddItemToArray(ix, cJSON_CreateNumber(imp->pair_i[q]));
        cJSON_AddItemToArray(ix, cJSON_CreateNumber(imp->pair_j[q]));
        cJSON_AddNumberToObject(o, "mean", imp->pair_mean[q]);
        cJSON_AddNumberToObject(o, "sd", imp->pair_sd[q]);
        cJSON_AddNumberToObject(o, "total_mean", imp->pair_total_mean[q]);
        cJSON_AddItemToArray(pa, o);
    }
    free(ord);
    return j;
}

int rf_importance_write_json(const char *path, const rf_importance *imp,
                             const char *const *names, rf_err *e) {
    if (!path || !imp) return rf_err_set(e, RF_EARG, "importance json: NULL path or result");
    cJSON *j = rf_importance_to_json(imp, names);
    char *txt = j ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!txt) return rf_err_set(e, RF_ENOMEM, "%s: out of memory writing JSON", path);
    size_t len = strlen(txt);
    char *t2 = realloc(txt, len + 2);
    if (!t2) {
        free(txt);
        return rf_err_set(e, RF_ENOMEM, "%s: out of memory writing JSON", path);
    }
    t2[len] = '\n';
    t2[len + 1] = 0;
    int rc = rf_write_file_atomic(path, t2, len + 1, e);
    free(t2);
    return rc;
}
