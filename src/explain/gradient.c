/* Exact input gradients of log p(x) and log p(c | x) through a class-conditional flow (each
 * layer's backward, as in training, with the base's class-wise gradient), and integrated
 * gradients along the straight path from a baseline (definitions in renflow/explain.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"

typedef struct gx {
    const rf_flow *f;
    int cap, L, D, C;
    float **acts, **caches, *scratch, *dparams, *ld, *dld, *dz, *dbuf, *G, *lpc;
    double *prior;
} gx;

static void gx_free(gx *g) {
    for (int k = 0; g->acts && k <= g->L; k++) rf_free(g->acts[k]);
    for (int k = 0; g->caches && k < g->L; k++) rf_free(g->caches[k]);
    free(g->acts);
    free(g->caches);
    rf_free(g->scratch);
    rf_free(g->dparams);
    rf_free(g->ld);
    rf_free(g->dld);
    rf_free(g->dz);
    rf_free(g->dbuf);
    rf_free(g->G);
    rf_free(g->lpc);
    free(g->prior);
    memset(g, 0, sizeof *g);
}

static int gx_init(gx *g, const rf_flow *f, int rows, const float *log_prior, rf_err *e) {
    memset(g, 0, sizeof *g);
    int rc = rf_explain_check_model(f, e);
    if (rc) return rc;
    g->f = f;
    g->L = f->n_layers;
    g->D = f->D;
    g->C = f->base.n_classes;
    /* activations of every layer are kept: bound the batch to ~64 MB of them */
    long cap = (16L << 20) / ((long)g->D * (g->L + 1));
    if (cap > 256) cap = 256;
    if (cap < 1) cap = 1;
    if (cap > rows && rows > 0) cap = rows;
    g->cap = (int)cap;
    const size_t nd = (size_t)g->cap * g->D;
    g->acts = calloc((size_t)g->L + 1, sizeof(float *));
    g->caches = calloc((size_t)(g->L > 0 ? g->L : 1), sizeof(float *));
    int fail = !g->acts || !g->caches;
    size_t max_scratch = 1;
    for (int k = 0; !fail && k <= g->L; k++) fail |= !(g->acts[k] = rf_floats(nd, NULL));
    for (int k = 0; !fail && k < g->L; k++) {
        const rf_layer *l = f->layers[k];
        const size_t c = l->ops->cache_floats(l, g->cap), s = l->ops->scratch_floats(l, g->cap);
        fail |= !(g->caches[k] = rf_floats(c ? c : 1, NULL));
        if (s > max_scratch) max_scratch = s;
    }
    if (!fail) {
        g->scratch = rf_floats(max_scratch, NULL);
        g->dparams = rf_floats(f->n_params ? f->n_params : 1, NULL);
        g->ld = rf_floats((size_t)g->cap, NULL);
        g->dld = rf_floats((size_t)g->cap, NULL);
        g->dz = rf_floats(nd, NULL);
        g->dbuf = rf_floats(nd, NULL);
        g->G = rf_floats((size_t)g->cap * g->C, NULL);
        g->lpc = rf_floats((size_t)g->cap * g->C, NULL);
        g->prior = malloc(sizeof(double) * (size_t)g->C);
        fail = !g->scratch || !g->dparams || !g->ld || !g->dld || !g->dz || !g->dbuf || !g->G || !g->lpc || !g->prior;
    }
    if (fail) {
        gx_free(g);
        return rf_err_set(e, RF_ENOMEM, "input gradients: out of memory (dimension %d, %d layers)", f->D, f->n_layers);
    }
    for (int c = 0; c < g->C; c++) g->prior[c] = log_prior ? log_prior[c] : -log((double)g->C);
    return RF_OK;
}

/* n <= cap rows: grad (n x D) and v (n, may be NULL) of the target. */
static void gx_rows(gx *g, int n, const float *x, rf_explain_target t, const int *cls, float *grad, double *v) {
    const rf_flow *f = g->f;
    const int D = g->D, C = g->C;
    float *u = g->acts[0];
    double lds = 0;
    for (int j = 0; j < D; j++) lds -= log(f->scale[j]);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++) u[(size_t)i * D + j] = (x[(size_t)i * D + j] - f->shift[j]) / f->scale[j];
        g->ld[i] = (float)lds;
    }
    for (int k = 0; k < g->L; k++) {
        const rf_layer *l = f->layers[k];
        l->ops->forward(l, f->params + l->offset, n, g->acts[k], g->acts[k + 1], g->ld, g->caches[k], g->scratch);
    }
    const float *z = g->acts[g->L], *bp = f->params + f->base.offset;
    rf_base_log_prob_classes(&f->base, bp, n, z, g->lpc);
    double *a = malloc(sizeof(double) * (size_t)C);
    for (int i = 0; i < n; i++) {
        const float *lc = g->lpc + (size_t)i * C;
        float *Gi = g->G + (size_t)i * C;
        double lse = 0;
        if (a) {
            for (int c = 0; c < C; c++) a[c] = lc[c] + g->prior[c];
            lse = ex_logsumexp(a, C);
        }
        const int own = t == RF_EXPLAIN_LOGPOST ? cls[i] : -1;
        for (int c = 0; c < C; c++) {
            const double q = a ? exp(a[c] - lse) : 0; /* p(c | x) */
            Gi[c] = (float)(t == RF_EXPLAIN_LOGP ? q : (c == own) - q);
        }
        g->dld[i] = t == RF_EXPLAIN_LOGP ? 1.0f : 0.0f;
        if (v)
            v[i] = t == RF_EXPLAIN_LOGP ? lse + g->ld[i] : (a ? a[own] - lse : NAN);
    }
    free(a);
    rf_base_backward_classes(&f->base, bp, n, z, g->G, g->dz, g->dparams); /* dz = dv/dz */
    float *dy = g->dz, *dx = g->dbuf;
    for (int k = g->L - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[k];
        l->ops->backward(l, f->params + l->offset, n, g->acts[k], dy, g->dld, dx, g->dparams, g->caches[k], g->scratch);
        float *tmp = dy;
        dy = dx;
        dx = tmp;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) grad[(size_t)i * D + j] = dy[(size_t)i * D + j] / f->scale[j];
}

static int check_target(const rf_flow *f, int n, rf_explain_target t, const int *cls, rf_err *e) {
    if (t != RF_EXPLAIN_LOGP && t != RF_EXPLAIN_LOGPOST) return rf_err_set(e, RF_EARG, "input gradients: unknown target %d", (int)t);
    if (t == RF_EXPLAIN_LOGPOST) {
        if (!cls) return rf_err_set(e, RF_EARG, "input gradients: log p(c | x) needs a class per row");
        for (int i = 0; i < n; i++)
            if (cls[i] < 0 || cls[i] >= f->base.n_classes)
                return rf_err_set(e, RF_EARG, "input gradients: class %d of row %d outside [0, %d)", cls[i], i,
                                  f->base.n_classes);
    }
    return RF_OK;
}

int rf_explain_input_grad(const rf_flow *f, int n, const float *x, rf_explain_target t, const int *cls,
                          const float *log_prior, float *grad, double *v, rf_err *e) {
    int rc = rf_explain_check_model(f, e);
    if (rc || (rc = check_target(f, n, t, cls, e))) return rc;
    gx g;
    if ((rc = gx_init(&g, f, n, log_prior, e))) return rc;
    const int D = f->D;
    for (int i0 = 0; i0 < n; i0 += g.cap) {
        const int m = n - i0 < g.cap ? n - i0 : g.cap;
        gx_rows(&g, m, x + (size_t)i0 * D, t, cls ? cls + i0 : NULL, grad + (size_t)i0 * D, v ? v + i0 : NULL);
    }
    gx_free(&g);
    return RF_OK;
}

int rf_explain_integrated_gradients(const rf_flow *f, int n, const float *x, const float *baseline,
                                    rf_explain_target t, const int *cls, const float *log_prior, int steps,
                                    double *ig, double *gap, rf_err *e) {
    int rc = rf_explain_check_model(f, e);
    if (rc || (rc = check_target(f, n, t, cls, e))) return rc;
    if (steps < 1 || steps > 4096) return rf_err_set(e, RF_EARG, "integrated gradients: steps must be in [1, 4096], got %d", steps);
    if (!baseline) baseline = f->shift;
    const int D = f->D;
    gx g;
    if ((rc = gx_init(&g, f, steps, log_prior, e))) return rc;
    float *path = rf_floats((size_t)g.cap * D, e), *gr = rf_floats((size_t)g.cap * D, e);
    int *cc = malloc(sizeof(int) * (size_t)g.cap);
    double *acc = malloc(sizeof(double) * (size_t)D), ve[2];
    if (!path || !gr || !cc || !acc) {
        rc = rf_err_set(e, RF_ENOMEM, "integrated gradients: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        memset(acc, 0, sizeof(double) * (size_t)D);
        for (int s0 = 0; s0 < steps; s0 += g.cap) { /* midpoint rule: alpha = (s + 1/2) / steps */
            const int m = steps - s0 < g.cap ? steps - s0 : g.cap;
            for (int s = 0; s < m; s++) {
                const double al = (s0 + s + 0.5) / steps;
                for (int j = 0; j < D; j++) path[(size_t)s * D + j] = (float)(baseline[j] + al * (xi[j] - baseline[j]));
                cc[s] = cls ? cls[i] : 0;
            }
            gx_rows(&g, m, path, t, cc, gr, NULL);
            for (int s = 0; s < m; s++)
                for (int j = 0; j < D; j++) acc[j] += gr[(size_t)s * D + j];
        }
        double sum = 0;
        for (int j = 0; j < D; j++) {
            ig[(size_t)i * D + j] = (xi[j] - baseline[j]) * acc[j] / steps;
            sum += ig[(size_t)i * D + j];
        }
        if (gap) { /* completeness: sum_j IG_j = v(x) - v(baseline) */
            for (int j = 0; j < D; j++) {
                path[j] = xi[j];
                path[D + j] = baseline[j];
            }
            cc[0] = cc[1] = cls ? cls[i] : 0;
            if (g.cap >= 2) {
                gx_rows(&g, 2, path, t, cc, gr, ve);
            } else {
                gx_rows(&g, 1, path, t, cc, gr, ve);
                gx_rows(&g, 1, path + D, t, cc, gr, ve + 1);
            }
            gap[i] = sum - (ve[0] - ve[1]);
        }
    }
done:
    rf_free(path);
    rf_free(gr);
    free(cc);
    free(acc);
    gx_free(&g);
    return rc;
}
