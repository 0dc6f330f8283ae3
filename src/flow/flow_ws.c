/* Running a flow: workspaces sized once, forward / inverse / log-density / loss + gradient /
 * sampling. With memory_saving the forward keeps no per-layer activations and the backward
 * rebuilds each layer's input from its output through the inverse (exact up to round-off). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/model.h"

struct rf_flow_ws {
    int max_batch, memory_saving, L, D, C;
    size_t bytes;
    float **acts;   /* store: L+1 activations; memory-saving: 3 rotating buffers */
    float **caches; /* store: one per layer; memory-saving: caches[0] shared */
    float *scratch;
    float *ld, *tmp_ld, *logp, *dld, *dz, *dbuf, *G, *lpc;
};

static float *ws_take(rf_flow_ws *w, size_t n, int *fail) {
    float *p = rf_floats(n, NULL);
    if (!p) *fail = 1;
    w->bytes += (n ? n : 1) * sizeof(float);
    return p;
}

rf_flow_ws *rf_flow_ws_create(const rf_flow *f, int max_batch, int memory_saving, rf_err *e) {
    if (max_batch < 1) {
        rf_err_set(e, RF_EARG, "workspace batch must be >= 1, got %d", max_batch);
        return NULL;
    }
    rf_flow_ws *w = rf_zalloc(sizeof *w, e);
    if (!w) return NULL;
    const int n = max_batch, L = f->n_layers, D = f->D;
    w->max_batch = n;
    w->memory_saving = memory_saving;
    w->L = L;
    w->D = D;
    w->C = f->base.kind == RF_BASE_CLASS ? f->base.n_classes : 1;
    int fail = 0;
    const int n_acts = memory_saving ? 3 : L + 1, n_caches = memory_saving ? 1 : (L > 0 ? L : 1);
    w->acts = rf_zalloc(sizeof(float *) * n_acts, e);
    w->caches = rf_zalloc(sizeof(float *) * n_caches, e);
    if (!w->acts || !w->caches) {
        free(w->acts);
        free(w->caches);
        free(w);
        return NULL;
    }
    for (int k = 0; k < n_acts; k++) w->acts[k] = ws_take(w, (size_t)n * D, &fail);
    size_t max_cache = 0, max_scratch = 0;
    for (int k = 0; k < L; k++) {
        const rf_layer *l = f->layers[k];
        size_t c = l->ops->cache_floats(l, n), s = l->ops->scratch_floats(l, n);
        if (!memory_saving) w->caches[k] = ws_take(w, c, &fail);
        if (c > max_cache) max_cache = c;
        if (s > max_scratch) max_scratch = s;
    }
    if (memory_saving) w->caches[0] = ws_take(w, max_cache, &fail);
    w->scratch = ws_take(w, max_scratch, &fail);
    w->ld = ws_take(w, n, &fail);
    w->tmp_ld = ws_take(w, n, &fail);
    w->logp = ws_take(w, n, &fail);
    w->dld = ws_take(w, n, &fail);
    w->dz = ws_take(w, (size_t)n * D, &fail);
    w->dbuf = ws_take(w, (size_t)n * D, &fail);
    w->G = ws_take(w, (size_t)n * w->C, &fail);
    w->lpc = ws_take(w, (size_t)n * w->C, &fail);
    if (fail) {
        rf_flow_ws_free(w);
        rf_err_set(e, RF_ENOMEM, "out of memory allocating a workspace for batch %d", n);
        return NULL;
    }
    return w;
}

void rf_flow_ws_free(rf_flow_ws *w) {
    if (!w) return;
    const int n_acts = w->memory_saving ? 3 : w->L + 1, n_caches = w->memory_saving ? 1 : (w->L > 0 ? w->L : 1);
    for (int k = 0; k < n_acts; k++) rf_free(w->acts[k]);
    for (int k = 0; k < n_caches; k++) rf_free(w->caches[k]);
    free(w->acts);
    free(w->caches);
    rf_free(w->scratch);
    rf_free(w->ld);
    rf_free(w->tmp_ld);
    rf_free(w->logp);
    rf_free(w->dld);
    rf_free(w->dz);
    rf_free(w->dbuf);
    rf_free(w->G);
    rf_free(w->lpc);
    free(w);
}

size_t rf_flow_ws_bytes(const rf_flow_ws *w) { return w->bytes; }

static float std_logdet(const rf_flow *f) {
    double t = 0;
    for (int j = 0; j < f->D; j++) t -= log(f->scale[j]);
    return (float)t;
}

/* Forward of one chunk (n <= max_batch): returns the buffer holding z; ld filled. With
 * `keep` (store mode, training) every activation and cache is kept. */
static float *forward_chunk(const rf_flow *f, rf_flow_ws *w, int n, const float *x, float *ld,
                            int keep) {
    const int D = f->D;
    float *u = w->acts[0];
    const float lds = std_logdet(f);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++)
            u[(size_t)i * D + j] = (x[(size_t)i * D + j] - f->shift[j]) / f->scale[j];
        ld[i] = lds;
    }
    float *cur = u;
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        float *next = w->memory_saving ? w->acts[(k + 1) % 2] : w->acts[k + 1];
        float *cache = keep && !w->memory_saving ? w->caches[k] : NULL;
        l->ops->forward(l, f->params + l->offset, n, cur, next, ld, cache, w->scratch);
        cur = next;
    }
    return cur;
}

/* Inverse of one chunk: z (n x D, not modified) -> x; ld = log|det dz/dx| at x. */
static void inverse_chunk(const rf_flow *f, rf_flow_ws *w, int n, const float *z, float *x,
                          float *ld) {
    const int D = f->D;
    const float *cur = z;
    memset(ld, 0, sizeof(float) * n);
    for (int k = f->n_layers - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[k];
        float *next = w->acts[k % 2];
        l->ops->inverse(l, f->params + l->offset, n, cur, next, ld, w->scratch);
        cur = next;
    }
    const float lds = std_logdet(f);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < D; j++)
            x[(size_t)i * D + j] = cur[(size_t)i * D + j] * f->scale[j] + f->shift[j];
        ld[i] = -ld[i] + lds;
    }
}

void rf_flow_forward(const rf_flow *f, rf_flow_ws *w, int n, const float *x, float *z, float *logdet) {
    const int D = f->D;
    for (int s = 0; s < n; s += w->max_batch) {
        const int m = n - s < w->max_batch ? n - s : w->max_batch;
        const float *zz = forward_chunk(f, w, m, x + (size_t)s * D, w->ld, 0);
        memcpy(z + (size_t)s * D, zz, sizeof(float) * (size_t)m * D);
        if (logdet) memcpy(logdet + s, w->ld, sizeof(float) * m);
    }
}

void rf_flow_inverse(const rf_flow *f, rf_flow_ws *w, int n, const float *z, float *x, float *logdet) {
    const int D = f->D;
    for (int s = 0; s < n; s += w->max_batch) {
        const int m = n - s < w->max_batch ? n - s : w->max_batch;
        inverse_chunk(f, w, m, z + (size_t)s * D, x + (size_t)s * D, w->ld);
        if (logdet) memcpy(logdet + s, w->ld, sizeof(float) * m);
    }
}

/* log sum_c exp(a_c) */
static double logsumexp(const float *a, int C) {
    double m = a[0];
    for (int c = 1; c < C; c++)
        if (a[c] > m) m = a[c];
    if (!isfinite(m)) return m;
    double s = 0;
    for (int c = 0; c < C; c++) s += exp(a[c] - m);
    return m + log(s);
}

/* logp[i] from z (n rows): class-conditional with labels -> log p(z|y); without -> marginal
 * under a uniform class prior. */
static void base_logp(const rf_flow *f, rf_flow_ws *w, int n, const float *z, const int *labels,
                      float *logp) {
    const float *bp = f->params + f->base.offset;
    if (f->base.kind == RF_BASE_CLASS && !labels) {
        const int C = f->base.n_classes;
        rf_base_log_prob_classes(&f->base, bp, n, z, w->lpc);
        for (int i = 0; i < n; i++) logp[i] = (float)(logsumexp(w->lpc + (size_t)i * C, C) - log(C));
    } else {
        rf_base_log_prob(&f->base, bp, n, z, labels, logp);
    }
}

void rf_flow_log_prob(const rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *labels,
                      float *logp) {
    const int D = f->D;
    for (int s = 0; s < n; s += w->max_batch) {
        const int m = n - s < w->max_batch ? n - s : w->max_batch;
        const float *z = forward_chunk(f, w, m, x + (size_t)s * D, w->ld, 0);
        base_logp(f, w, m, z, labels ? labels + s : NULL, logp + s);
        for (int i = 0; i < m; i++) logp[s + i] += w->ld[i];
    }
}

void rf_flow_class_log_posterior(const rf_flow *f, rf_flow_ws *w, int n, const float *x,
                                 const float *log_prior, float *out) {
    const int D = f->D, C = f->base.n_classes;
    for (int s = 0; s < n; s += w->max_batch) {
        const int m = n - s < w->max_batch ? n - s : w->max_batch;
        const float *z = forward_chunk(f, w, m, x + (size_t)s * D, w->ld, 0);
        float *o = out + (size_t)s * C;
        rf_base_log_prob_classes(&f->base, f->params + f->base.offset, m, z, o);
        for (int i = 0; i < m; i++) {
            float *r = o + (size_t)i * C;
            if (log_prior)
                for (int c = 0; c < C; c++) r[c] += log_prior[c];
            const float lse = (float)logsumexp(r, C);
            for (int c = 0; c < C; c++) r[c] -= lse;
        }
    }
}

/* Loss at the base: fills w->dz with dL/dz and returns the mean loss. */
static double base_loss_grad(rf_flow *f, rf_flow_ws *w, int n, const float *z, const int *labels,
                             float ce_weight) {
    const float *bp = f->params + f->base.offset;
    float *gp = f->grads + f->base.offset;
    const double inv_n = 1.0 / n;
    double loss = 0;
    if (f->base.kind == RF_BASE_CLASS) {
        const int C = f->base.n_classes;
        rf_base_log_prob_classes(&f->base, bp, n, z, w->lpc);
        for (int i = 0; i < n; i++) {
            const float *a = w->lpc + (size_t)i * C;
            float *g = w->G + (size_t)i * C;
            const double lse = logsumexp(a, C);
            if (labels) {
                const int y = labels[i];
                loss += -(a[y] + w->ld[i]);
                if (ce_weight > 0) loss += ce_weight * (lse - a[y]);
                for (int c = 0; c < C; c++) {
                    const double post = exp(a[c] - lse), hot = c == y;
                    g[c] = (float)(inv_n * (-hot + ce_weight * (post - hot)));
                }
            } else {
                loss += -(lse - log(C) + w->ld[i]);
                for (int c = 0; c < C; c++) g[c] = (float)(-inv_n * exp(a[c] - lse));
            }
        }
        rf_base_backward_classes(&f->base, bp, n, z, w->G, w->dz, gp);
    } else {
        rf_base_log_prob(&f->base, bp, n, z, NULL, w->logp);
        for (int i = 0; i < n; i++) {
            loss += -(w->logp[i] + w->ld[i]);
            w->tmp_ld[i] = (float)-inv_n;
        }
        rf_base_backward(&f->base, bp, n, z, NULL, w->tmp_ld, w->dz, gp);
    }
    return loss * inv_n;
}

double rf_flow_loss_grad(rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *labels,
                         float ce_weight) {
    if (n > w->max_batch) n = w->max_batch;
    float *z = forward_chunk(f, w, n, x, w->ld, 1);
    const double loss = base_loss_grad(f, w, n, z, labels, ce_weight);
    for (int i = 0; i < n; i++) w->dld[i] = (float)(-1.0 / n);
    float *dy = w->dz, *dx = w->dbuf;
    float *y = z;
    for (int k = f->n_layers - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[k];
        const float *p = f->params + l->offset;
        const float *xin;
        const float *cache;
        if (w->memory_saving) {
            /* rebuild this layer's input from its output, then its cache */
            /* y lives in acts[0] or acts[1]; the input goes to the other, the recomputed
             * output (discarded) to acts[2] */
            float *xr = w->acts[0] == y ? w->acts[1] : w->acts[0];
            float *yy = w->acts[2];
            l->ops->inverse(l, p, n, y, xr, w->tmp_ld, w->scratch);
            l->ops->forward(l, p, n, xr, yy, w->tmp_ld, w->caches[0], w->scratch);
            xin = xr;
            cache = w->caches[0];
            y = xr;
        } else {
            xin = w->acts[k];
            cache = w->caches[k];
        }
        l->ops->backward(l, p, n, xin, dy, w->dld, dx, f->grads + l->offset, cache, w->scratch);
        float *t = dy;
        dy = dx;
        dx = t;
    }
    return loss;
}

void rf_flow_sample(const rf_flow *f, rf_flow_ws *w, int n, const int *labels, rf_rng *rng, float *x) {
    const int D = f->D;
    for (int s = 0; s < n; s += w->max_batch) {
        const int m = n - s < w->max_batch ? n - s : w->max_batch;
        rf_base_sample(&f->base, f->params + f->base.offset, m, labels ? labels + s : NULL, rng, w->dz);
        inverse_chunk(f, w, m, w->dz, x + (size_t)s * D, w->ld);
    }
}

int rf_flow_data_init(rf_flow *f, int n, const float *x, rf_err *e) {
    rf_flow_ws *w = rf_flow_ws_create(f, n, 1, e);
    if (!w) return e ? e->code : RF_ENOMEM;
    const int D = f->D;
    float *cur = w->acts[0];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            cur[(size_t)i * D + j] = (x[(size_t)i * D + j] - f->shift[j]) / f->scale[j];
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        float *p = f->params + l->offset, *next = w->acts[(k + 1) % 2];
        if (l->ops->data_init) l->ops->data_init(l, p, n, cur);
        memset(w->ld, 0, sizeof(float) * n);
        l->ops->forward(l, p, n, cur, next, w->ld, NULL, w->scratch);
        cur = next;
    }
    rf_flow_ws_free(w);
    return RF_OK;
}
