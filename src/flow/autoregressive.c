/* Masked autoregressive transform (MAF, Papamakarios et al. 2017; spline variant of Durkan
 * et al. 2019): y_i = T(x_i; theta_i(x_<i)) with theta from a MADE. The density direction is one
 * MADE pass; the inverse (sampling) needs D passes, one per coordinate. */
/* No floating-point traps are used: lets GCC vectorise the exp/tanh loops of xform.h. */
#pragma GCC optimize("no-trapping-math")

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/flow.h"
#include "xform.h"

int rf_cond_from_json(const cJSON *j, rf_mlp_cfg *m, rf_err *e);
cJSON *rf_cond_to_json(const rf_mlp_cfg *m);

typedef struct {
    rf_xform xf;
    int nt;
    rf_made *made;
} ar_impl;

static const ar_impl *AI(const rf_layer *l) { return l->impl; }

/* Cache: theta (n x D*nt), the MADE's cache, then (spline) the transform's per-coordinate
 * training cache (rf_xform_cache_floats). */
static size_t ar_cache_base(const rf_layer *l, int n) {
    const ar_impl *a = AI(l);
    return (size_t)n * l->dim * a->nt + rf_made_cache_floats(a->made, n);
}

static size_t ar_cache(const rf_layer *l, int n) {
    return ar_cache_base(l, n) + rf_xform_cache_floats(&AI(l)->xf, (size_t)n * l->dim);
}

static size_t ar_scratch(const rf_layer *l, int n) {
    const ar_impl *a = AI(l);
    return ar_cache_base(l, n) + (size_t)n * l->dim * a->nt + (size_t)n * l->dim +
           rf_made_scratch_floats(a->made, n);
}

/* The vectorised affine blocks of xform.h, compiled for wider vectors too (RF_XFORM_CLONES). */
RF_XFORM_CLONES RF_XFORM_FLATTEN static void ar_affine_fwd(const rf_xform *t, size_t m, float *th, const float *x,
                                          float *y, float *ld, int keep) {
    rf_xform_affine_block(t, m, th, x, y, ld, keep);
}

/* Backward of the affine transform for n rows of D coordinates from the cached (tanh, exp(s))
 * pairs: the arithmetic of rf_xform_affine_backward_c, vectorised across a row's coordinates. */
RF_XFORM_CLONES static void ar_affine_bwd(float clamp, int n, int D, const float *restrict c,
                                          const float *restrict x, const float *restrict dy,
                                          const float *restrict dlogdet, float *restrict dx,
                                          float *restrict dth) {
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * D;
        const float gld = dlogdet[i];
        const float *ci = c + 2 * o, *xi = x + o, *gi = dy + o;
        float *di = dx + o, *ti = dth + 2 * o;
        if (clamp > 0) {
#pragma omp simd
            for (int j = 0; j < D; j++) {
                const float es = ci[2 * j + 1], gy = gi[j], h = ci[2 * j];
                const float ds = gy * xi[j] * es + gld;
                ti[2 * j] = ds * (1.0f - h * h);
                ti[2 * j + 1] = gy;
                di[j] = gy * es;
            }
        } else {
#pragma omp simd
            for (int j = 0; j < D; j++) {
                const float es = ci[2 * j + 1], gy = gi[j];
                const float ds = gy * xi[j] * es + gld;
                ti[2 * j] = ds * 1.0f;
                ti[2 * j + 1] = gy;
                di[j] = gy * es;
            }
        }
    }
}

static void ar_init(const rf_layer *l, float *p, rf_rng *rng) {
    rf_made_init_params(AI(l)->made, p, rng);
}

static void ar_project(const rf_layer *l, float *p) { rf_made_project(AI(l)->made, p); }

/* With a cache (training), an affine layer keeps (tanh(raw / clamp), exp(s)) in place of theta
 * for its backward (rf_xform_affine_forward_c). */
static void ar_forward(const rf_layer *l, const float *p, int n, const float *x, float *y,
                       float *logdet, float *cache, float *scratch) {
    const ar_impl *a = AI(l);
    const int D = l->dim, nt = a->nt;
    float *th = cache ? cache : scratch, *mc = th + (size_t)n * D * nt;
    if (cache) rf_made_forward(a->made, p, n, x, th, mc);
    else rf_made_forward_infer(a->made, p, n, x, th, mc);
    /* all coordinates at once: vectorised exp/tanh (affine), vectorised across coordinates
     * (spline; for training into the blocked cache of rf_rqs_forward_rows_t); see xform.h */
    float *ldv = cache ? scratch : scratch + ar_cache_base(l, n);
    const size_t m = (size_t)n * D;
    if (a->xf.kind == RF_XFORM_AFFINE)
        ar_affine_fwd(&a->xf, m, th, x, y, ldv, cache != NULL);
    else if (cache)
        rf_rqs_forward_rows_t(a->xf.bins, a->xf.bound, m, th, x, y, ldv,
                              rf_xform_cache_at(cache + ar_cache_base(l, n)));
    else
        rf_rqs_forward_rows(a->xf.bins, a->xf.bound, m, th, x, y, ldv, NULL);
    for (int i = 0; i < n; i++) {
        double ld = 0;
        for (int j = 0; j < D; j++) ld += ldv[(size_t)i * D + j];
        logdet[i] += (float)ld;
    }
}

/* Coordinate j of x only needs x_<j, so D passes of the MADE recover x exactly. */
static void ar_inverse(const rf_layer *l, const float *p, int n, const float *y, float *x,
                       float *logdet, float *scratch) {
    const ar_impl *a = AI(l);
    const int D = l->dim, nt = a->nt;
    float *th = scratch, *mc = th + (size_t)n * D * nt;
    /* spline: coordinate j of every row goes through rf_rqs_inverse_rows from gathered copies */
    float *tt = scratch + ar_cache_base(l, n), *yv = tt + (size_t)n * nt, *xv = yv + n, *lv = xv + n;
    memset(x, 0, sizeof(float) * (size_t)n * D);
    for (int j = 0; j < D; j++) {
        rf_made_forward_infer(a->made, p, n, x, th, mc);
        if (a->xf.kind == RF_XFORM_RQS) {
            for (int i = 0; i < n; i++) {
                const size_t k = (size_t)i * D + j;
                memcpy(tt + (size_t)i * nt, th + k * nt, sizeof(float) * nt);
                yv[i] = y[k];
            }
            rf_rqs_inverse_rows(a->xf.bins, a->xf.bound, (size_t)n, tt, yv, xv, lv);
            for (int i = 0; i < n; i++) {
                x[(size_t)i * D + j] = xv[i];
                logdet[i] += lv[i];
            }
            continue;
        }
        for (int i = 0; i < n; i++) {
            const size_t k = (size_t)i * D + j;
            float d;
            rf_xform_inverse(&a->xf, th + k * nt, y[k], &x[k], &d);
            logdet[i] += d;
        }
    }
}

static void ar_backward(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                        const float *dlogdet, float *dx, float *dp, const float *cache,
                        float *scratch) {
    const ar_impl *a = AI(l);
    const int D = l->dim, nt = a->nt;
    const float *th = cache, *mc = th + (size_t)n * D * nt;
    float *dth = scratch, *dxm = dth + (size_t)n * D * nt, *ms = dxm + (size_t)n * D;
    if (a->xf.kind == RF_XFORM_AFFINE) {
        ar_affine_bwd(a->xf.clamp, n, D, th, x, dy, dlogdet, dx, dth);
    } else { /* the spline, vectorised across coordinates */
        rf_rqs_backward_rows(a->xf.bins, a->xf.bound, (size_t)n * D,
                             rf_xform_cache_at(cache + ar_cache_base(l, n)), x, dy, dlogdet, (size_t)D, dx, dth);
    }
    rf_made_backward(a->made, p, n, x, dth, dxm, dp, mc, ms);
    for (size_t k = 0; k < (size_t)n * D; k++) dx[k] += dxm[k];
}

static cJSON *ar_to_json(const rf_layer *l) {
    const ar_impl *a = AI(l);
    const rf_made_cfg *m = rf_made_config(a->made);
    rf_mlp_cfg c = {.hidden = m->hidden, .n_hidden = m->n_hidden, .act = m->act,
                    .residual = m->residual};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "autoregressive");
    cJSON_AddNumberToObject(j, "dim", l->dim);
    rf_xform_to_json(&a->xf, j);
    cJSON_AddItemToObject(j, "conditioner", rf_cond_to_json(&c));
    return j;
}

static void ar_free(void *impl) {
    ar_impl *a = impl;
    if (!a) return;
    rf_made_free(a->made);
    free(a);
}

static const rf_layer_ops ar_ops = {
    .kind = "autoregressive",
    .cache_floats = ar_cache,
    .scratch_floats = ar_scratch,
    .init_params = ar_init,
    .forward = ar_forward,
    .inverse = ar_inverse,
    .backward = ar_backward,
    .project = ar_project,
    .to_json = ar_to_json,
    .free_impl = ar_free,
};

static rf_layer *ar_create(int D, const rf_made_cfg *made, const rf_xform *xf, rf_err *e) {
    if (D < 1) {
        rf_err_set(e, RF_EARG, "autoregressive: dimension must be >= 1, got %d", D);
        return NULL;
    }
    if (rf_xform_check(xf, e) != RF_OK) return NULL;
    ar_impl *a = rf_zalloc(sizeof *a, e);
    if (!a) return NULL;
    a->xf = *xf;
    a->nt = rf_xform_n_theta(xf);
    rf_made_cfg m = *made;
    m.D = D;
    m.P = a->nt;
    a->made = rf_made_create(&m, e);
    if (!a->made) {
        ar_free(a);
        return NULL;
    }
    rf_layer *l = rf_layer_new(&ar_ops, D, rf_made_n_params(a->made), a, e);
    if (!l) ar_free(a);
    return l;
}

rf_layer *rf_maf_affine_create(const rf_ar_cfg *cfg, rf_err *e) {
    rf_xform xf = {.kind = RF_XFORM_AFFINE, .clamp = cfg->clamp};
    return ar_create(cfg->D, &cfg->made, &xf, e);
}

rf_layer *rf_maf_spline_create(const rf_ar_cfg *cfg, rf_err *e) {
    rf_xform xf = {.kind = RF_XFORM_RQS, .bins = cfg->bins, .bound = cfg->bound};
    return ar_create(cfg->D, &cfg->made, &xf, e);
}

rf_layer *rf_autoregressive_from_json(const cJSON *j, int dim, rf_err *e) {
    rf_xform xf;
    rf_mlp_cfg c;
    if (rf_xform_from_json(j, &xf, e) || rf_cond_from_json(j, &c, e)) return NULL;
    rf_made_cfg m = {.hidden = c.hidden, .n_hidden = c.n_hidden, .act = c.act,
                     .residual = c.residual};
    return ar_create(dim, &m, &xf, e);
}
