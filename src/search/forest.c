/* Random-forest regression for the fANOVA surrogate: CART trees grown on bootstrap samples with a
 * random subset of columns tried at each split (variance reduction), stored as arrays of split
 * nodes plus the axis-aligned box of every leaf.
 *
 * Continuous splits are at the midpoint between consecutive distinct values. A categorical split
 * orders the categories present in the node by their mean response and takes the best prefix
 * (optimal for squared error, Breiman et al. 1984); categories of the node's box that no sample
 * of the node has are sent left or right at random, so the children's boxes still partition the
 * parent's box. Trees are grown from independent RNG streams forked in order from opts->seed, so
 * the forest does not depend on the number of threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forest.h"

void rf_forest_opts_default(rf_forest_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_trees = 32;
    o->max_features = 0;
    o->min_samples_split = 2;
    o->min_samples_leaf = 1;
    o->max_depth = 64;
    o->bootstrap = 1;
    o->seed = 1;
}

int forest_encode_row(const rf_forest *f, const double *x, int row, double *out, rf_err *e) {
    for (int j = 0; j < f->d; j++) {
        double v = x[j];
        if (isnan(v)) {
            out[j] = f->kinds[j] == RF_FEATURE_CATEGORICAL ? (double)f->ncat[j] : FOREST_INACTIVE;
            continue;
        }
        if (f->kinds[j] == RF_FEATURE_CATEGORICAL) {
            if (!(v >= 0 && v < f->ncat[j]) || v != floor(v))
                return rf_err_set(e, RF_EARG,
                                  "forest: X[row %d, column %d] = %g: a categorical value must be "
                                  "an integer in [0, %d) (or NaN when inactive)",
                                  row, j, v, f->ncat[j]);
        } else if (!(v >= 0 && v <= 1)) {
            return rf_err_set(e, RF_EARG,
                              "forest: X[row %d, column %d] = %g is outside [0, 1] (continuous "
                              "parameters are encoded in the unit interval; NaN when inactive)",
                              row, j, v);
        }
        out[j] = v;
    }
    return RF_OK;
}

static void tree_free(rf_tree *t) {
    free(t->nodes);
    free(t->lo);
    free(t->hi);
    free(t->mask);
    free(t->value);
    memset(t, 0, sizeof *t);
}

void rf_forest_free(rf_forest *f) {
    if (!f) return;
    for (int t = 0; f->trees && t < f->n_trees; t++) tree_free(&f->trees[t]);
    free(f->trees);
    free(f->kinds);
    free(f->ncat);
    free(f->inactive_frac);
    free(f);
}

int rf_forest_dim(const rf_forest *f) { return f ? f->d : 0; }
int rf_forest_n_trees(const rf_forest *f) { return f ? f->n_trees : 0; }
long rf_forest_n_leaves(const rf_forest *f) {
    long s = 0;
    for (int t = 0; f && t < f->n_trees; t++) s += f->trees[t].n_leaves;
    return s;
}

/* ------------------------------------------------------------------ growing one tree */

typedef struct xy {
    double x, y;
} xy;

static int cmp_xy(const void *a, const void *b) {
    double u = ((const xy *)a)->x, v = ((const xy *)b)->x;
    return (u > v) - (u < v);
}

typedef struct cat_stat {
    int c, n;
    double s, mean;
} cat_stat;

static int cmp_cat(const void *a, const void *b) {
    const cat_stat *p = a, *q = b;
    if (p->mean != q->mean) return (p->mean > q->mean) - (p->mean < q->mean);
    return (p->c > q->c) - (p->c < q->c);
}

typedef struct grow_ctx {
    const rf_forest *f;
    const double *X; /* encoded, n x d */
    const double *y;
    rf_forest_opts o;
    int max_features;
    double pure_var; /* a node whose variance is at most this is a leaf */
    /* work */
    int *idx;    /* bootstrap row indices, partitioned in place */
    xy *buf;     /* nb */
    int *feat;   /* d */
    cat_stat cs[RF_FOREST_MAX_CATEGORIES + 1];
} grow_ctx;

typedef struct split {
    int feature;
    double gain, threshold;
    uint64_t left_mask, present_mask; /* categorical */
} split;

/* Best split of rows idx[s..t) on continuous column j; updates best when better. Returns 1 when the
 * column is not constant in the node. */
static int best_continuous(grow_ctx *g, int j, int s, int t, double mean, split *best) {
    int nn = t - s, d = g->f->d;
    xy *b = g->buf;
    for (int k = 0; k < nn; k++) {
        int r = g->idx[s + k];
        b[k].x = g->X[(size_t)r * d + j];
        b[k].y = g->y[r] - mean;
    }
    qsort(b, (size_t)nn, sizeof *b, cmp_xy);
    if (b[0].x == b[nn - 1].x) return 0;
    double tot = 0;
    for (int k = 0; k < nn; k++) tot += b[k].y;
    double sl = 0;
    int msl = g->o.min_samples_leaf;
    for (int k = 0; k < nn - 1; k++) {
        sl += b[k].y;
        int nl = k + 1, nr = nn - nl;
        if (b[k].x == b[k + 1].x || nl < msl) continue;
        if (nr < msl) break;
        double sr = tot - sl;
        double gain = sl * sl / nl + sr * sr / nr - tot * tot / nn;
        if (gain > best->gain) {
            double thr = 0.5 * (b[k].x + b[k + 1].x);
            if (!(thr < b[k + 1].x)) thr = b[k].x;
            best->gain = gain;
            best->feature = j;
            best->threshold = thr;
        }
    }
    return 1;
}

static int best_categorical(grow_ctx *g, int j, int s, int t, double mean, split *best) {
    int nn = t - s, d = g->f->d, slots = g->f->ncat[j] + 1;
    cat_stat *cs = g->cs;
    for (int c = 0; c < slots; c++) cs[c] = (cat_stat){c, 0, 0, 0};
    for (int k = 0; k < nn; k++) {
        int r = g->idx[s + k];
        int c = (int)g->X[(size_t)r * d + j];
        cs[c].n++;
        cs[c].s += g->y[r] - mean;
    }
    int p = 0;
    uint64_t present = 0;
    for (int c = 0; c < slots; c++)
        if (cs[c].n > 0) {
            cs[c].mean = cs[c].s / cs[c].n;
            cs[p++] = cs[c];
            present |= (uint64_t)1 << c;
        }
    if (p < 2) return 0;
    qsort(cs, (size_t)p, sizeof *cs, cmp_cat);
    double tot = 0;
    for (int k = 0; k < p; k++) tot += cs[k].s;
    double sl = 0;
    int nl = 0, msl = g->o.min_samples_leaf;
    uint64_t lm = 0;
    for (int k = 0; k < p - 1; k++) {
        sl += cs[k].s;
        nl += cs[k].n;
        lm |= (uint64_t)1 << cs[k].c;
        int nr = nn - nl;
        if (nl < msl || nr < msl) continue;
        double sr = tot - sl;
        double gain = sl * sl / nl + sr * sr / nr - tot * tot / nn;
        if (gain > best->gain) {
            best->gain = gain;
            best->feature = j;
            best->left_mask = lm;
            best->present_mask = present;
        }
    }
    return 1;
}

typedef struct frame {
    int node, s, t, depth;
} frame;

/* Grows one tree on the rows g->idx[0..nb). Boxes travel with the stack frames: frame k's box is
 * slot k of blo/bhi/bmask (d values each). */
static int grow_tree(grow_ctx *g, int nb, rf_rng *rng, rf_tree *tr, rf_err *e) {
    const rf_forest *f = g->f;
    int d = f->d;
    int cap = 2 * nb + 1;
    int stack_cap = g->o.max_depth + 3;
    memset(tr, 0, sizeof *tr);
    tr->nodes = malloc((size_t)cap * sizeof *tr->nodes);
    tr->lo = malloc((size_t)(nb + 1) * d * sizeof *tr->lo);
    tr->hi = malloc((size_t)(nb + 1) * d * sizeof *tr->hi);
    tr->mask = malloc((size_t)(nb + 1) * d * sizeof *tr->mask);
    tr->value = malloc((size_t)(nb + 1) * sizeof *tr->value);
    frame *st = malloc((size_t)stack_cap * sizeof *st);
    double *blo = malloc((size_t)stack_cap * d * sizeof *blo);
    double *bhi = malloc((size_t)stack_cap * d * sizeof *bhi);
    uint64_t *bm = malloc((size_t)stack_cap * d * sizeof *bm);
    double *clo = malloc((size_t)d * sizeof *clo), *chi = malloc((size_t)d * sizeof *chi);
    uint64_t *cm = malloc((size_t)d * sizeof *cm);
    int rc = RF_OK;
    if (!tr->nodes || !tr->lo || !tr->hi || !tr->mask || !tr->value || !st || !blo || !bhi ||
        !bm || !clo || !chi || !cm) {
        rc = rf_err_set(e, RF_ENOMEM, "forest: out of memory growing a tree on %d rows", nb);
        goto done;
    }
    for (int j = 0; j < d; j++) {
        blo[j] = FOREST_LO;
        bhi[j] = FOREST_HI;
        bm[j] = f->kinds[j] == RF_FEATURE_CATEGORICAL
                    ? (f->ncat[j] + 1 >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << (f->ncat[j] + 1)) - 1))
                    : 0;
    }
    int top = 0;
    st[top++] = (frame){0, 0, nb, 0};
    tr->n_nodes = 1;
    while (top > 0) {
        frame fr = st[--top];
        memcpy(clo, blo + (size_t)top * d, (size_t)d * sizeof *clo);
        memcpy(chi, bhi + (size_t)top * d, (size_t)d * sizeof *chi);
        memcpy(cm, bm + (size_t)top * d, (size_t)d * sizeof *cm);
        int nn = fr.t - fr.s;
        double sum = 0, sq = 0;
        for (int k = fr.s; k < fr.t; k++) sum += g->y[g->idx[k]];
        double mean = sum / nn;
        for (int k = fr.s; k < fr.t; k++) {
            double r = g->y[g->idx[k]] - mean;
            sq += r * r;
        }
        rf_tnode *nd = &tr->nodes[fr.node];
        *nd = (rf_tnode){-1, -1, -1, -1, nn, 0, 0, mean};
        split best = {-1, 0, 0, 0, 0};
        int can_split = nn >= g->o.min_samples_split && nn >= 2 * g->o.min_samples_leaf &&
                        fr.depth < g->o.max_depth && sq / nn > g->pure_var && top + 2 <= stack_cap;
        if (can_split) {
            /* try columns in random order until max_features non-constant ones were tried */
            for (int j = 0; j < d; j++) g->feat[j] = j;
            int tried = 0;
            best.gain = 1e-12 * sq; /* a split must reduce the squared error by more than this */
            for (int k = 0; k < d && tried < g->max_features; k++) {
                int r = k + (int)rf_rng_below(rng, (uint64_t)(d - k));
                int tmp = g->feat[k];
                g->feat[k] = g->feat[r];
                g->feat[r] = tmp;
                int j = g->feat[k];
                tried += f->kinds[j] == RF_FEATURE_CATEGORICAL
                             ? best_categorical(g, j, fr.s, fr.t, mean, &best)
                             : best_continuous(g, j, fr.s, fr.t, mean, &best);
            }
        }
        if (best.feature < 0) { /* leaf */
            int l = tr->n_leaves++;
            nd->leaf = l;
            memcpy(tr->lo + (size_t)l * d, clo, (size_t)d * sizeof *clo);
            memcpy(tr->hi + (size_t)l * d, chi, (size_t)d * sizeof *chi);
            memcpy(tr->mask + (size_t)l * d, cm, (size_t)d * sizeof *cm);
            tr->value[l] = mean;
            continue;
        }
        int j = best.feature;
        nd->feature = j;
        if (f->kinds[j] == RF_FEATURE_CATEGORICAL) {
            /* categories of the box that no sample of the node has go left or right at random */
            uint64_t lm = best.left_mask;
            for (int c = 0; c <= f->ncat[j]; c++) {
                uint64_t bit = (uint64_t)1 << c;
                if ((cm[j] & bit) && !(best.present_mask & bit) && (rf_rng_u64(rng) >> 63))
                    lm |= bit;
            }
            nd->left_mask = lm;
        } else {
            nd->threshold = best.threshold;
        }
        /* partition idx[s..t): left rows first */
        int a = fr.s, b = fr.t - 1;
        while (a <= b) {
            double v = g->X[(size_t)g->idx[a] * d + j];
            int left = f->kinds[j] == RF_FEATURE_CATEGORICAL ? (int)((nd->left_mask >> (int)v) & 1)
                                                             : v <= nd->threshold;
            if (left) {
                a++;
            } else {
                int tmp = g->idx[a];
                g->idx[a] = g->idx[b];
                g->idx[b--] = tmp;
            }
        }
        nd->left = tr->n_nodes++;
        nd->right = tr->n_nodes++;
        int mid = a;
        /* push right then left (left is processed first); boxes go to the frames' slots */
        for (int side = 1; side >= 0; side--) {
            double *lo = blo + (size_t)top * d, *hi = bhi + (size_t)top * d;
            uint64_t *m = bm + (size_t)top * d;
            memcpy(lo, clo, (size_t)d * sizeof *lo);
            memcpy(hi, chi, (size_t)d * sizeof *hi);
            memcpy(m, cm, (size_t)d * sizeof *m);
            if (f->kinds[j] == RF_FEATURE_CATEGORICAL)
                m[j] = side == 0 ? (cm[j] & nd->left_mask) : (cm[j] & ~nd->left_mask);
            else if (side == 0)
                hi[j] = nd->threshold;
            else
                lo[j] = nd->threshold;
            st[top++] = side == 0 ? (frame){nd->left, fr.s, mid, fr.depth + 1}
                                  : (frame){nd->right, mid, fr.t, fr.depth + 1};
        }
    }
    /* give back the unused capacity */
    if (rc == RF_OK) {
        rf_tnode *nn = realloc(tr->nodes, (size_t)tr->n_nodes * sizeof *nn);
        if (nn) tr->nodes = nn;
        size_t L = (size_t)tr->n_leaves;
        double *lo = realloc(tr->lo, L * d * sizeof *lo);
        if (lo) tr->lo = lo;
        double *hi = realloc(tr->hi, L * d * sizeof *hi);
        if (hi) tr->hi = hi;
        uint64_t *mk = realloc(tr->mask, L * d * sizeof *mk);
        if (mk) tr->mask = mk;
        double *val = realloc(tr->value, L * sizeof *val);
        if (val) tr->value = val;
    }
done:
    free(st);
    free(blo);
    free(bhi);
    free(bm);
    free(clo);
    free(chi);
    free(cm);
    if (rc != RF_OK) tree_free(tr);
    return rc;
}

/* ------------------------------------------------------------------ fitting */

int rf_forest_fit(const double *X, const double *y, int n, int d, const rf_feature_kind *kinds,
                  const int *n_categories, const rf_forest_opts *opts, rf_forest **out,
                  rf_err *e) {
    if (out) *out = NULL;
    if (!out) return rf_err_set(e, RF_EARG, "forest: no output");
    if (n < 2) return rf_err_set(e, RF_EARG, "forest: need at least 2 rows (trials), got %d", n);
    if (d < 1) return rf_err_set(e, RF_EARG, "forest: need at least 1 column (parameter), got %d", d);
    if (!X || !y) return rf_err_set(e, RF_EARG, "forest: X or y is NULL");
    rf_forest_opts o;
    if (opts)
        o = *opts;
    else
        rf_forest_opts_default(&o);
    if (o.n_trees < 1 || o.n_trees > 100000)
        return rf_err_set(e, RF_EARG, "forest: n_trees = %d must be in [1, 100000]", o.n_trees);
    if (o.max_features < 0)
        return rf_err_set(e, RF_EARG, "forest: max_features = %d must be >= 0", o.max_features);
    if (o.min_samples_leaf < 1) o.min_samples_leaf = 1;
    if (o.min_samples_split < 2) o.min_samples_split = 2;
    if (o.max_depth < 0 || o.max_depth > 4096)
        return rf_err_set(e, RF_EARG, "forest: max_depth = %d must be in [0, 4096]", o.max_depth);
    for (int i = 0; i < n; i++)
        if (!isfinite(y[i]))
            return rf_err_set(e, RF_ENONFINITE, "forest: y[%d] = %g is not finite", i, y[i]);
    for (int j = 0; j < d; j++) {
        if (kinds && kinds[j] != RF_FEATURE_CONTINUOUS && kinds[j] != RF_FEATURE_CATEGORICAL)
            return rf_err_set(e, RF_EARG, "forest: column %d: unknown kind %d", j, (int)kinds[j]);
        if (kinds && kinds[j] == RF_FEATURE_CATEGORICAL) {
            if (!n_categories)
                return rf_err_set(e, RF_EARG,
                                  "forest: column %d is categorical but n_categories is NULL", j);
            if (n_categories[j] < 1 || n_categories[j] > RF_FOREST_MAX_CATEGORIES)
                return rf_err_set(e, RF_EARG,
                                  "forest: column %d: n_categories = %d must be in [1, %d]", j,
                                  n_categories[j], RF_FOREST_MAX_CATEGORIES);
        }
    }

    rf_forest *f = rf_zalloc(sizeof *f, e);
    if (!f) return RF_ENOMEM;
    f->d = d;
    f->n = n;
    f->n_trees = o.n_trees;
    f->kinds = calloc((size_t)d, sizeof *f->kinds);
    f->ncat = calloc((size_t)d, sizeof *f->ncat);
    f->inactive_frac = calloc((size_t)d, sizeof *f->inactive_frac);
    f->trees = calloc((size_t)o.n_trees, sizeof *f->trees);
    double *Xe = malloc((size_t)n * d * sizeof *Xe);
    if (!f->kinds || !f->ncat || !f->inactive_frac || !f->trees || !Xe) {
        free(Xe);
        rf_forest_free(f);
        return rf_err_set(e, RF_ENOMEM, "forest: out of memory (%d x %d)", n, d);
    }
    for (int j = 0; j < d; j++) {
        f->kinds[j] = kinds ? kinds[j] : RF_FEATURE_CONTINUOUS;
        f->ncat[j] = f->kinds[j] == RF_FEATURE_CATEGORICAL ? n_categories[j] : 0;
    }
    for (int i = 0; i < n; i++) {
        int rc = forest_encode_row(f, X + (size_t)i * d, i, Xe + (size_t)i * d, e);
        if (rc != RF_OK) {
            free(Xe);
            rf_forest_free(f);
            return rc;
        }
        for (int j = 0; j < d; j++)
            if (isnan(X[(size_t)i * d + j])) f->inactive_frac[j] += 1.0 / n;
    }

    /* purity threshold relative to the variance of y */
    double my = 0, vy = 0;
    for (int i = 0; i < n; i++) my += y[i];
    my /= n;
    for (int i = 0; i < n; i++) vy += (y[i] - my) * (y[i] - my);
    vy /= n;
    int mf = o.max_features > 0 ? o.max_features : (int)ceil(0.7 * d);
    if (mf > d) mf = d;
    if (mf < 1) mf = 1;

    rf_rng master, *rngs = malloc((size_t)o.n_trees * sizeof *rngs);
    if (!rngs) {
        free(Xe);
        rf_forest_free(f);
        return rf_err_set(e, RF_ENOMEM, "forest: out of memory");
    }
    rf_rng_seed(&master, o.seed);
    for (int t = 0; t < o.n_trees; t++) rf_rng_fork(&master, &rngs[t]);

    int fail = 0;
    rf_err terr = {0};
#pragma omp parallel if (o.n_trees > 1 && (long)n * d * o.n_trees > 20000)
    {
        grow_ctx g;
        memset(&g, 0, sizeof g);
        g.f = f;
        g.X = Xe;
        g.y = y;
        g.o = o;
        g.max_features = mf;
        g.pure_var = 1e-14 * vy;
        g.idx = malloc((size_t)n * sizeof *g.idx);
        g.buf = malloc((size_t)n * sizeof *g.buf);
        g.feat = malloc((size_t)d * sizeof *g.feat);
        int ok = g.idx && g.buf && g.feat;
        if (!ok) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < o.n_trees; t++) {
            int skip;
#pragma omp atomic read
            skip = fail;
            if (skip || !ok) continue;
            rf_rng *r = &rngs[t];
            for (int i = 0; i < n; i++) g.idx[i] = o.bootstrap ? (int)rf_rng_below(r, (uint64_t)n) : i;
            rf_err le = {0};
            if (grow_tree(&g, n, r, &f->trees[t], &le) != RF_OK) {
#pragma omp critical(rf_forest_err)
                {
                    if (!terr.code) terr = le;
                }
#pragma omp atomic write
                fail = 1;
            }
        }
        free(g.idx);
        free(g.buf);
        free(g.feat);
    }
    free(rngs);
    free(Xe);
    if (fail) {
        rf_forest_free(f);
        if (terr.code) {
            if (e) *e = terr;
            return terr.code;
        }
        return rf_err_set(e, RF_ENOMEM, "forest: out of memory");
    }
    *out = f;
    return RF_OK;
}

/* ------------------------------------------------------------------ prediction */

static double tree_predict(const rf_forest *f, const rf_tree *t, const double *xe) {
    const rf_tnode *nd = &t->nodes[0];
    while (nd->feature >= 0) {
        double v = xe[nd->feature];
        int left = f->kinds[nd->feature] == RF_FEATURE_CATEGORICAL
                       ? (int)((nd->left_mask >> (int)v) & 1)
                       : v <= nd->threshold;
        nd = &t->nodes[left ? nd->left : nd->right];
    }
    return nd->value;
}

int rf_forest_predict(const rf_forest *f, const double *X, int m, double *mean, double *sd,
                      rf_err *e) {
    if (!f || !X || !mean) return rf_err_set(e, RF_EARG, "forest predict: NULL argument");
    if (m < 0) return rf_err_set(e, RF_EARG, "forest predict: %d rows", m);
    double *xe = malloc((size_t)f->d * sizeof *xe);
    if (!xe) return rf_err_set(e, RF_ENOMEM, "forest predict: out of memory");
    for (int i = 0; i < m; i++) {
        int rc = forest_encode_row(f, X + (size_t)i * f->d, i, xe, e);
        if (rc != RF_OK) {
            free(xe);
            return rc;
        }
        double mu = 0, m2 = 0; /* Welford */
        for (int t = 0; t < f->n_trees; t++) {
            double v = tree_predict(f, &f->trees[t], xe), dv = v - mu;
            mu += dv / (t + 1);
            m2 += dv * (v - mu);
        }
        mean[i] = mu;
        if (sd) sd[i] = m2 > 0 ? sqrt(m2 / f->n_trees) : 0;
    }
    free(xe);
    return RF_OK;
}
