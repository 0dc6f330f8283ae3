/* Coupling layer (RealNVP / Glow / neural spline flows). Coordinates with i % 2 == parity (a)
 * pass through and condition an MLP whose outputs parameterise a monotone elementwise
 * transform (affine or rational-quadratic spline) of the other coordinates (b):
 *   y_a = x_a,   y_b = T(x_b; theta = MLP(x_a)),   log|det| = sum_b log T'(x_b).
 * The MLP's last layer is zero-initialised and theta = 0 is the identity, so a fresh layer is
 * exactly the identity map. */
/* No floating-point traps are used anywhere; without the assumption that they might be, GCC
 * vectorises the branch-free exp/tanh loops of xform.h (results are unchanged: IEEE arithmetic
 * is the same, only if-conversion is allowed). */
#pragma GCC optimize("no-trapping-math")

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "renflow/flow.h"
#include "xform.h"

typedef struct {
    int parity;
    rf_xform xf;
    int nt;     /* theta values per transformed coordinate */
    int da, db; /* pass-through and transformed counts */
    int *ia, *ib;
    rf_mlp *mlp;
} coupling_impl;

static const coupling_impl *CI(const rf_layer *l) { return l->impl; }

/* Cache: x_a (n x da), theta (n x db*nt), the conditioner's cache, then (spline) the
 * transform's per-coordinate training cache (rf_xform_cache_floats). */
static size_t cp_cache_base(const rf_layer *l, int n) {
    const coupling_impl *c = CI(l);
    return (size_t)n * c->da + (size_t)n * c->db * c->nt + rf_mlp_cache_floats(c->mlp, n);
}

static size_t cp_cache(const rf_layer *l, int n) {
    const coupling_impl *c = CI(l);
    return cp_cache_base(l, n) + rf_xform_cache_floats(&c->xf, (size_t)n * c->db);
}

/* Scratch: room for x_a, theta and the conditioner's cache (inference), then dtheta, dx_a and
 * the conditioner's backward scratch, and (spline) x_b, dy_b and dx_b gathered for the backward. */
static size_t cp_scratch(const rf_layer *l, int n) {
    const coupling_impl *c = CI(l);
    const size_t bwd = (size_t)n * c->db * c->nt + (size_t)n * c->da + rf_mlp_scratch_floats(c->mlp, n) +
                       (c->xf.kind == RF_XFORM_RQS ? 3 * (size_t)n * c->db : 0);
    const size_t blk = 3 * (size_t)n * c->db; /* affine: x_b, y_b and log-det terms, gathered */
    return cp_cache_base(l, n) + (bwd > blk ? bwd : blk);
}

/* The vectorised affine blocks of xform.h, compiled for wider vectors too (RF_XFORM_CLONES). */
RF_XFORM_CLONES RF_XFORM_FLATTEN static void cp_affine_fwd(const rf_xform *t, size_t m, float *th, const float *x,
                                          float *y, float *ld, int keep) {
    rf_xform_affine_block(t, m, th, x, y, ld, keep);
}

RF_XFORM_CLONES RF_XFORM_FLATTEN static void cp_affine_inv(const rf_xform *t, size_t m, const float *th,
                                          const float *y, float *x, float *ld) {
    rf_xform_affine_inv_block(t, m, th, y, x, ld);
}

static void cp_init(const rf_layer *l, float *p, rf_rng *rng) {
    rf_mlp_init_params(CI(l)->mlp, p, rng);
}

static void gather(int n, int D, const float *x, int k, const int *idx, float *out) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) out[(size_t)i * k + j] = x[(size_t)i * D + idx[j]];
}

/* The transform of all rows at once, through gathered copies of the transformed coordinates
 * (affine: vectorised exp/tanh; spline: vectorised across coordinates, see xform.h); `inv`
 * selects the inverse, sc (spline, training) receives the blocked cache (rf_rqs_forward_rows_t),
 * keep (affine, training) replaces theta by what the backward needs. The ld terms are summed per
 * row in coordinate order, as the element-wise path does. tmp: 3 n db floats. */
static void cp_rows(const coupling_impl *c, int D, int n, float *th, const float *in, float *out,
                    float *logdet, int keep, double *sc, int inv, float *tmp) {
    const size_t m = (size_t)n * c->db;
    float *a = tmp, *b = a + m, *ld = b + m;
    gather(n, D, in, c->db, c->ib, a);
    if (c->xf.kind == RF_XFORM_AFFINE) {
        if (inv) cp_affine_inv(&c->xf, m, th, a, b, ld);
        else cp_affine_fwd(&c->xf, m, th, a, b, ld, keep);
    } else if (inv) {
        rf_rqs_inverse_rows(c->xf.bins, c->xf.bound, m, th, a, b, ld);
    } else {
        if (sc) rf_rqs_forward_rows_t(c->xf.bins, c->xf.bound, m, th, a, b, ld, sc);
        else rf_rqs_forward_rows(c->xf.bins, c->xf.bound, m, th, a, b, ld, NULL);
    }
    for (int i = 0; i < n; i++) {
        const float *xi = in + (size_t)i * D, *bi = b + (size_t)i * c->db, *li = ld + (size_t)i * c->db;
        float *yi = out + (size_t)i * D;
        for (int j = 0; j < c->da; j++) yi[c->ia[j]] = xi[c->ia[j]];
        double s = 0;
        for (int j = 0; j < c->db; j++) {
            yi[c->ib[j]] = bi[j];
            s += li[j];
        }
        logdet[i] += (float)s;
    }
}

/* Runs the conditioner on the pass-through part of `in`; returns theta (n x db*nt) in buf.
 * train: a backward may follow (the conditioner keeps its derivatives in its cache). */
static float *cp_condition(const coupling_impl *c, const float *p, int n, int D, const float *in,
                           float *buf, int train) {
    float *xa = buf, *th = xa + (size_t)n * c->da, *mc = th + (size_t)n * c->db * c->nt;
    gather(n, D, in, c->da, c->ia, xa);
    if (train) rf_mlp_forward(c->mlp, p, n, xa, th, mc);
    else rf_mlp_forward_infer(c->mlp, p, n, xa, th, mc);
    return th;
}

/* With a cache (training), an affine layer replaces theta there by (tanh(raw / clamp), exp(s))
 * per coordinate and a spline layer fills its per-coordinate caches: what the backward needs.
 * No OpenMP here: the flow runs one shard of rows per thread. */
static void cp_forward(const rf_layer *l, const float *p, int n, const float *x, float *y,
                       float *logdet, float *cache, float *scratch) {
    const coupling_impl *c = CI(l);
    const int D = l->dim;
    float *th = cp_condition(c, p, n, D, x, cache ? cache : scratch, cache != NULL);
    double *sc = cache && c->xf.kind == RF_XFORM_RQS ? rf_xform_cache_at(cache + cp_cache_base(l, n)) : NULL;
    cp_rows(c, D, n, th, x, y, logdet, cache != NULL, sc, 0, scratch + cp_cache_base(l, n));
}

static void cp_inverse(const rf_layer *l, const float *p, int n, const float *y, float *x,
                       float *logdet, float *scratch) {
    const coupling_impl *c = CI(l);
    const int D = l->dim;
    float *th = cp_condition(c, p, n, D, y, scratch, 0);
    cp_rows(c, D, n, th, y, x, logdet, 0, NULL, 1, scratch + cp_cache_base(l, n));
}

static void cp_backward(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                        const float *dlogdet, float *dx, float *dp, const float *cache,
                        float *scratch) {
    const coupling_impl *c = CI(l);
    const int D = l->dim, nt = c->nt;
    const float *xa = cache, *th = xa + (size_t)n * c->da;
    const float *mc = th + (size_t)n * c->db * nt;
    float *dth = scratch, *dxa = dth + (size_t)n * c->db * nt, *ms = dxa + (size_t)n * c->da;
    if (c->xf.kind == RF_XFORM_AFFINE) {
        for (int i = 0; i < n; i++) {
            const float *xi = x + (size_t)i * D, *dyi = dy + (size_t)i * D;
            float *dxi = dx + (size_t)i * D;
            for (int j = 0; j < c->db; j++) {
                const size_t k = ((size_t)i * c->db + j) * nt;
                const int b = c->ib[j];
                dxi[b] = rf_xform_affine_backward_c(&c->xf, th + k, xi[b], dyi[b], dlogdet[i], dth + k);
            }
        }
    } else { /* the spline, vectorised across coordinates, from gathered x_b and dy_b */
        const size_t m = (size_t)n * c->db;
        const double *sc = rf_xform_cache_at(cache + cp_cache_base(l, n));
        float *xb = ms + rf_mlp_scratch_floats(c->mlp, n), *gyb = xb + m, *gxb = gyb + m;
        gather(n, D, x, c->db, c->ib, xb);
        gather(n, D, dy, c->db, c->ib, gyb);
        rf_rqs_backward_rows(c->xf.bins, c->xf.bound, m, sc, xb, gyb, dlogdet, (size_t)c->db, gxb, dth);
        for (int i = 0; i < n; i++)
            for (int j = 0; j < c->db; j++) dx[(size_t)i * D + c->ib[j]] = gxb[(size_t)i * c->db + j];
    }
    rf_mlp_backward(c->mlp, p, n, xa, dth, dxa, dp, mc, ms);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c->da; j++)
            dx[(size_t)i * D + c->ia[j]] = dy[(size_t)i * D + c->ia[j]] + dxa[(size_t)i * c->da + j];
}

static cJSON *cond_to_json(const rf_mlp_cfg *m) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "hidden", m->hidden);
    cJSON_AddNumberToObject(j, "n_hidden", m->n_hidden);
    cJSON_AddStringToObject(j, "act", rf_act_name(m->act));
    cJSON_AddBoolToObject(j, "residual", m->residual);
    return j;
}

static cJSON *cp_to_json(const rf_layer *l) {
    const coupling_impl *c = CI(l);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "coupling");
    cJSON_AddNumberToObject(j, "dim", l->dim);
    cJSON_AddNumberToObject(j, "parity", c->parity);
    rf_xform_to_json(&c->xf, j);
    cJSON_AddItemToObject(j, "conditioner", cond_to_json(rf_mlp_config(c->mlp)));
    return j;
}

static void cp_free(void *impl) {
    coupling_impl *c = impl;
    if (!c) return;
    rf_mlp_free(c->mlp);
    free(c->ia);
    free(c->ib);
    free(c);
}

static const rf_layer_ops coupling_ops = {
    .kind = "coupling",
    .cache_floats = cp_cache,
    .scratch_floats = cp_scratch,
    .init_params = cp_init,
    .forward = cp_forward,
    .inverse = cp_inverse,
    .backward = cp_backward,
    .to_json = cp_to_json,
    .free_impl = cp_free,
};

static rf_layer *coupling_create(int D, int parity, const rf_mlp_cfg *cond, const rf_xform *xf,
                                 rf_err *e) {
    if (D < 2) {
        rf_err_set(e, RF_EARG, "coupling: dimension must be >= 2, got %d", D);
        return NULL;
    }
    if (parity != 0 && parity != 1) {
        rf_err_set(e, RF_EARG, "coupling: parity must be 0 or 1, got %d", parity);
        return NULL;
    }
    if (rf_xform_check(xf, e) != RF_OK) return NULL;
    coupling_impl *c = rf_zalloc(sizeof *c, e);
    if (!c) return NULL;
    c->parity = parity;
    c->xf = *xf;
    c->nt = rf_xform_n_theta(xf);
    c->ia = malloc(sizeof(int) * D);
    c->ib = malloc(sizeof(int) * D);
    if (!c->ia || !c->ib) {
        cp_free(c);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < D; i++) {
        if (i % 2 == parity) c->ia[c->da++] = i;
        else c->ib[c->db++] = i;
    }
    rf_mlp_cfg m = *cond;
    m.n_in = c->da;
    m.n_out = c->db * c->nt;
    c->mlp = rf_mlp_create(&m, e);
    if (!c->mlp) {
        cp_free(c);
        return NULL;
    }
    rf_layer *l = rf_layer_new(&coupling_ops, D, rf_mlp_n_params(c->mlp), c, e);
    if (!l) cp_free(c);
    return l;
}

rf_layer *rf_affine_coupling_create(const rf_coupling_cfg *cfg, rf_err *e) {
    rf_xform xf = {.kind = RF_XFORM_AFFINE, .clamp = cfg->clamp};
    return coupling_create(cfg->D, cfg->parity, &cfg->cond, &xf, e);
}

rf_layer *rf_spline_coupling_create(const rf_coupling_cfg *cfg, rf_err *e) {
    rf_xform xf = {.kind = RF_XFORM_RQS, .bins = cfg->bins, .bound = cfg->bound};
    return coupling_create(cfg->D, cfg->parity, &cfg->cond, &xf, e);
}

/* Shared with autoregressive.c: conditioner settings from JSON. */
int rf_cond_from_json(const cJSON *j, rf_mlp_cfg *m, rf_err *e) {
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "conditioner");
    const char *act = NULL;
    memset(m, 0, sizeof *m);
    if (!cJSON_IsObject(c)) return rf_err_set(e, RF_EFORMAT, "field \"conditioner\": missing");
    int rc = rf_json_get_int(c, "hidden", &m->hidden, e);
    if (!rc) rc = rf_json_get_int(c, "n_hidden", &m->n_hidden, e);
    if (!rc) rc = rf_json_get_string(c, "act", &act, e);
    if (rc) return rf_err_prefix(e, rc, "conditioner");
    if (rf_act_parse(act, &m->act) != RF_OK)
        return rf_err_set(e, RF_EFORMAT, "conditioner: field \"act\": unknown activation \"%s\"", act);
    m->residual = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "residual"));
    return RF_OK;
}

cJSON *rf_cond_to_json(const rf_mlp_cfg *m) { return cond_to_json(m); }

rf_layer *rf_coupling_from_json(const cJSON *j, int dim, rf_err *e) {
    rf_xform xf;
    rf_mlp_cfg m;
    int parity;
    if (rf_json_get_int(j, "parity", &parity, e) || rf_xform_from_json(j, &xf, e) ||
        rf_cond_from_json(j, &m, e))
        return NULL;
    return coupling_create(dim, parity, &m, &xf, e);
}
