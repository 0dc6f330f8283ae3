/* The DARTS / ENAS supernet (renflow/supernet.h): a dense coupling flow whose couplings have
 * mixed conditioners, theta = sum_k softmax(alpha)_k mlp_k(x_a), and its discretisation into a
 * regular rf_flow.
 *
 * The mixed coupling is an rf_layer like the couplings of src/flow/coupling.c, with the same
 * transform code (xform.h) applied in the same order, so that a one-hot mixture computes
 * bit for bit what the discretised coupling computes. Its parameters are
 *     [alpha (K)] [candidate 0's MLP] ... [candidate K-1's MLP]   (the zero op has none)
 * so the flow's optimiser, workspaces and gradient buffers carry alpha with the weights.
 *
 * Forward, with weights w = softmax(alpha) (or one-hot in path mode):
 *     theta = sum_k w_k out_k,  out_k = mlp_k(x_a)
 * Backward, given dL/dtheta (from the transform's backward):
 *     dL/dout_k = w_k dL/dtheta            (into each MLP's backward: weights and dL/dx_a)
 *     g_k = <dL/dtheta, out_k>,  dL/dalpha_j = w_j (g_j - sum_k w_k g_k)   (softmax Jacobian)
 * Candidates whose weight is exactly 0 are skipped (their contribution and every gradient
 * through them is 0). */
#pragma GCC optimize("no-trapping-math")

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../flow/flow_internal.h"
#include "../flow/xform.h"
#include "renflow/supernet.h"
#include "search_internal.h"

#define SN_MAX_DEPTH 8

/* ======================================================================================
 * Candidates
 * ====================================================================================== */

int rf_supernet_cand_parse(const char *s, rf_supernet_cand *c, rf_err *e) {
    memset(c, 0, sizeof *c);
    if (!s || !*s) return rf_err_set(e, RF_EARG, "supernet candidate: empty name");
    if (!strcmp(s, "zero")) {
        c->zero = 1;
        return RF_OK;
    }
    const char *dash = strchr(s, '-');
    char act[16];
    const size_t len = dash ? (size_t)(dash - s) : 0;
    if (!dash || len == 0 || len >= sizeof act)
        return rf_err_set(e, RF_EARG,
                          "supernet candidate \"%s\": expected \"zero\" or <act>-<depth>[x<width>][-res], "
                          "e.g. relu-2, tanh-1x32, gelu-2-res", s);
    memcpy(act, s, len);
    act[len] = 0;
    if (rf_act_parse(act, &c->act) != RF_OK)
        return rf_err_set(e, RF_EARG, "supernet candidate \"%s\": unknown activation \"%s\" (relu, tanh, gelu)", s, act);
    const char *p = dash + 1;
    char *end = NULL;
    if (!isdigit((unsigned char)*p)) return rf_err_set(e, RF_EARG, "supernet candidate \"%s\": missing depth after \"%s-\"", s, act);
    long d = strtol(p, &end, 10);
    if (d < 1 || d > SN_MAX_DEPTH)
        return rf_err_set(e, RF_EARG, "supernet candidate \"%s\": depth %ld out of range [1, %d]", s, d, SN_MAX_DEPTH);
    c->n_hidden = (int)d;
    p = end;
    if (*p == 'x') {
        if (!isdigit((unsigned char)p[1])) return rf_err_set(e, RF_EARG, "supernet candidate \"%s\": missing width after 'x'", s);
        long w = strtol(p + 1, &end, 10);
        if (w < 1 || w > 65536) return rf_err_set(e, RF_EARG, "supernet candidate \"%s\": width %ld out of range [1, 65536]", s, w);
        c->hidden = (int)w;
        p = end;
    }
    if (!strcmp(p, "-res")) {
        c->residual = 1;
        p += 4;
    }
    if (*p) return rf_err_set(e, RF_EARG, "supernet candidate \"%s\": unexpected \"%s\"", s, p);
    if (c->residual && c->n_hidden < 2)
        return rf_err_set(e, RF_EARG, "supernet candidate \"%s\": a residual conditioner needs at least 2 hidden layers", s);
    return RF_OK;
}

void rf_supernet_cand_name(const rf_supernet_cand *c, char *buf, size_t n) {
    if (c->zero) {
        snprintf(buf, n, "zero");
        return;
    }
    char w[24] = "";
    if (c->hidden > 0) snprintf(w, sizeof w, "x%d", c->hidden);
    snprintf(buf, n, "%s-%d%s%s", rf_act_name(c->act), c->n_hidden, w, c->residual ? "-res" : "");
}

int rf_supernet_cands_parse(const char *list, rf_supernet_cand *c, int *n, rf_err *e) {
    *n = 0;
    if (!list) return rf_err_set(e, RF_EARG, "supernet candidates: empty list");
    const char *p = list;
    while (1) {
        while (*p == ' ') p++;
        const char *q = p;
        while (*q && *q != ',') q++;
        size_t len = (size_t)(q - p);
        while (len > 0 && p[len - 1] == ' ') len--;
        char item[64];
        if (len == 0 || len >= sizeof item)
            return rf_err_set(e, RF_EARG, "supernet candidates \"%s\": %s item %d", list, len ? "overlong" : "empty", *n + 1);
        if (*n >= RF_SUPERNET_MAX_CANDS)
            return rf_err_set(e, RF_EARG, "supernet candidates \"%s\": more than %d", list, RF_SUPERNET_MAX_CANDS);
        memcpy(item, p, len);
        item[len] = 0;
        int rc = rf_supernet_cand_parse(item, &c[*n], e);
        if (rc) return rc;
        char a[32], b[32];
        rf_supernet_cand_name(&c[*n], a, sizeof a);
        for (int k = 0; k < *n; k++) {
            rf_supernet_cand_name(&c[k], b, sizeof b);
            if (!strcmp(a, b)) return rf_err_set(e, RF_EARG, "supernet candidates \"%s\": \"%s\" given twice", list, a);
        }
        (*n)++;
        if (!*q) break;
        p = q + 1;
    }
    return RF_OK;
}

int rf_supernet_cands_default(rf_supernet_cand *c) {
    static const rf_act acts[3] = {RF_ACT_RELU, RF_ACT_TANH, RF_ACT_GELU};
    int n = 0;
    for (int d = 1; d <= 2; d++)
        for (int r = 0; r <= (d >= 2); r++)
            for (int a = 0; a < 3; a++) c[n++] = (rf_supernet_cand){.n_hidden = d, .act = acts[a], .residual = r};
    return n;
}

void rf_supernet_cfg_default(rf_supernet_cfg *c, rf_flow_type type, int D) {
    memset(c, 0, sizeof *c);
    rf_flow_spec_default(&c->spec, type, D);
    c->spec.blocks = 4;
    c->n_cands = rf_supernet_cands_default(c->cands);
    c->alpha_init = 1e-3f;
}

/* ======================================================================================
 * The mixed coupling layer
 * ====================================================================================== */

typedef struct {
    int parity;
    rf_xform xf;
    int nt, da, db, m; /* m = db * nt: theta values per row */
    int *ia, *ib;
    int K;
    rf_supernet_cand cand[RF_SUPERNET_MAX_CANDS];
    rf_mlp *mlp[RF_SUPERNET_MAX_CANDS];  /* NULL: the zero op */
    size_t poff[RF_SUPERNET_MAX_CANDS];  /* candidate k's parameters start at params + poff[k] */
    float alpha_init;
    int path;                            /* -1: the mixture; k: candidate k alone, weight 1 */
    uint32_t drop;                       /* mixture: candidates left out (bit k), the others
                                            renormalised */
} mix_impl;

static mix_impl *MI(const rf_layer *l) { return l->impl; }

/* Buffers are carved in multiples of 16 floats (64 bytes). */
static size_t al16(size_t n) { return (n + 15) & ~(size_t)15; }

/* Training cache: xa | theta | w (K) | out_k ... | mlp cache_k ... | transform cache. */
typedef struct {
    size_t th, w, out[RF_SUPERNET_MAX_CANDS], mc[RF_SUPERNET_MAX_CANDS], xc, total;
} mix_layout;

static mix_layout cache_layout(const mix_impl *c, int n) {
    mix_layout L;
    memset(&L, 0, sizeof L);
    size_t off = al16((size_t)n * c->da);
    L.th = off;
    off += al16((size_t)n * c->m);
    L.w = off;
    off += al16((size_t)c->K);
    for (int k = 0; k < c->K; k++) {
        L.out[k] = off;
        if (c->mlp[k]) off += al16((size_t)n * c->m);
    }
    for (int k = 0; k < c->K; k++) {
        L.mc[k] = off;
        if (c->mlp[k]) off += al16(rf_mlp_cache_floats(c->mlp[k], n));
    }
    L.xc = off;
    off += rf_xform_cache_floats(&c->xf, (size_t)n * c->db);
    L.total = off;
    return L;
}

static size_t max_mlp_cache(const mix_impl *c, int n) {
    size_t mx = 0;
    for (int k = 0; k < c->K; k++)
        if (c->mlp[k] && rf_mlp_cache_floats(c->mlp[k], n) > mx) mx = rf_mlp_cache_floats(c->mlp[k], n);
    return mx;
}

static size_t max_mlp_scratch(const mix_impl *c, int n) {
    size_t mx = 0;
    for (int k = 0; k < c->K; k++)
        if (c->mlp[k] && rf_mlp_scratch_floats(c->mlp[k], n) > mx) mx = rf_mlp_scratch_floats(c->mlp[k], n);
    return mx;
}

/* Inference scratch: xa | theta | out | mlp cache; the transform's row buffers follow. */
static size_t infer_base(const mix_impl *c, int n) {
    return al16((size_t)n * c->da) + 2 * al16((size_t)n * c->m) + al16(max_mlp_cache(c, n));
}

static size_t mx_cache(const rf_layer *l, int n) { return cache_layout(MI(l), n).total; }

static size_t mx_scratch(const rf_layer *l, int n) {
    const mix_impl *c = MI(l);
    const size_t fwd = infer_base(c, n) + 3 * (size_t)n * c->db;
    const size_t bwd = 2 * al16((size_t)n * c->m) + 2 * al16((size_t)n * c->da) + max_mlp_scratch(c, n);
    return fwd > bwd ? fwd : bwd;
}

static void mx_init(const rf_layer *l, float *p, rf_rng *rng) {
    const mix_impl *c = MI(l);
    for (int k = 0; k < c->K; k++) p[k] = c->alpha_init * (float)rf_rng_normal(rng);
    for (int k = 0; k < c->K; k++)
        if (c->mlp[k]) rf_mlp_init_params(c->mlp[k], p + c->poff[k], rng);
}

/* The mixing weights: softmax(alpha) (in double), or one-hot in path mode. */
static void mix_weights(const mix_impl *c, const float *alpha, float *w) {
    if (c->path >= 0) {
        for (int k = 0; k < c->K; k++) w[k] = k == c->path ? 1.0f : 0.0f;
        return;
    }
    double mx = -INFINITY, ex[RF_SUPERNET_MAX_CANDS], s = 0;
    for (int k = 0; k < c->K; k++)
        if (!(c->drop >> k & 1u) && (alpha[k] > mx || mx == -INFINITY)) mx = alpha[k];
    for (int k = 0; k < c->K; k++) s += ex[k] = (c->drop >> k & 1u) ? 0.0 : exp((double)alpha[k] - mx);
    for (int k = 0; k < c->K; k++) w[k] = (float)(ex[k] / s);
}

static void gather(int n, int D, const float *x, int k, const int *idx, float *out) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) out[(size_t)i * k + j] = x[(size_t)i * D + idx[j]];
}

/* theta = sum_k w_k mlp_k(xa). With a layout (training) each candidate's output and cache stay
 * at their cache slots for the backward; otherwise `out` and `mc` are reused. */
static void mix_theta(const mix_impl *c, const float *p, int n, const float *xa, const float *w, float *th,
                      float *cache, const mix_layout *L, float *out, float *mc) {
    const size_t nm = (size_t)n * c->m;
    memset(th, 0, sizeof(float) * nm);
    for (int k = 0; k < c->K; k++) {
        if (!c->mlp[k] || w[k] == 0.0f) continue;
        float *ok = L ? cache + L->out[k] : out;
        if (L) rf_mlp_forward(c->mlp[k], p + c->poff[k], n, xa, ok, cache + L->mc[k]);
        else rf_mlp_forward_infer(c->mlp[k], p + c->poff[k], n, xa, ok, mc);
        const float wk = w[k];
        for (size_t q = 0; q < nm; q++) th[q] += wk * ok[q];
    }
}

/* The affine blocks of xform.h, compiled for wider vectors too (as in coupling.c). */
RF_XFORM_CLONES RF_XFORM_FLATTEN static void mx_affine_fwd(const rf_xform *t, size_t m, float *th, const float *x, float *y, float *ld,
                                          int keep) {
    rf_xform_affine_block(t, m, th, x, y, ld, keep);
}

RF_XFORM_CLONES RF_XFORM_FLATTEN static void mx_affine_inv(const rf_xform *t, size_t m, const float *th, const float *y, float *x,
                                          float *ld) {
    rf_xform_affine_inv_block(t, m, th, y, x, ld);
}

/* The transform of all rows (the same code path as coupling.c's cp_rows). tmp: 3 n db floats. */
static void mix_rows(const mix_impl *c, int D, int n, float *th, const float *in, float *out, float *logdet, int keep,
                     double *sc, int inv, float *tmp) {
    const size_t m = (size_t)n * c->db;
    float *a = tmp, *b = a + m, *ld = b + m;
    gather(n, D, in, c->db, c->ib, a);
    if (c->xf.kind == RF_XFORM_AFFINE) {
        if (inv) mx_affine_inv(&c->xf, m, th, a, b, ld);
        else mx_affine_fwd(&c->xf, m, th, a, b, ld, keep);
    } else if (inv) {
        rf_rqs_inverse_rows(c->xf.bins, c->xf.bound, m, th, a, b, ld);
    } else {
        rf_rqs_forward_rows(c->xf.bins, c->xf.bound, m, th, a, b, ld, sc);
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

static void mx_forward(const rf_layer *l, const float *p, int n, const float *x, float *y, float *logdet, float *cache,
                       float *scratch) {
    const mix_impl *c = MI(l);
    const int D = l->dim;
    if (cache) {
        const mix_layout L = cache_layout(c, n);
        float *xa = cache, *th = cache + L.th, *w = cache + L.w;
        gather(n, D, x, c->da, c->ia, xa);
        mix_weights(c, p, w);
        mix_theta(c, p, n, xa, w, th, cache, &L, NULL, NULL);
        double *sc = c->xf.kind == RF_XFORM_RQS ? rf_xform_cache_at(cache + L.xc) : NULL;
        mix_rows(c, D, n, th, x, y, logdet, 1, sc, 0, scratch);
    } else {
        float *xa = scratch, *th = xa + al16((size_t)n * c->da), *out = th + al16((size_t)n * c->m);
        float *mc = out + al16((size_t)n * c->m);
        float w[RF_SUPERNET_MAX_CANDS];
        gather(n, D, x, c->da, c->ia, xa);
        mix_weights(c, p, w);
        mix_theta(c, p, n, xa, w, th, NULL, NULL, out, mc);
        mix_rows(c, D, n, th, x, y, logdet, 0, NULL, 0, scratch + infer_base(c, n));
    }
}

static void mx_inverse(const rf_layer *l, const float *p, int n, const float *y, float *x, float *logdet,
                       float *scratch) {
    const mix_impl *c = MI(l);
    const int D = l->dim;
    float *ya = scratch, *th = ya + al16((size_t)n * c->da), *out = th + al16((size_t)n * c->m);
    float *mc = out + al16((size_t)n * c->m);
    float w[RF_SUPERNET_MAX_CANDS];
    gather(n, D, y, c->da, c->ia, ya); /* y_a = x_a */
    mix_weights(c, p, w);
    mix_theta(c, p, n, ya, w, th, NULL, NULL, out, mc);
    mix_rows(c, D, n, th, y, x, logdet, 0, NULL, 1, scratch + infer_base(c, n));
}

static void mx_backward(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                        const float *dlogdet, float *dx, float *dp, const float *cache, float *scratch) {
    const mix_impl *c = MI(l);
    const int D = l->dim, nt = c->nt;
    const mix_layout L = cache_layout(c, n);
    const float *xa = cache, *th = cache + L.th, *w = cache + L.w;
    const size_t nm = (size_t)n * c->m, na = (size_t)n * c->da;
    float *dth = scratch, *dout = dth + al16(nm), *dxa = dout + al16(nm), *dxk = dxa + al16(na), *ms = dxk + al16(na);
    const int affine = c->xf.kind == RF_XFORM_AFFINE, cd = rf_xform_cache_doubles(&c->xf);
    const double *sc = affine ? NULL : rf_xform_cache_at(cache + L.xc);
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D, *dyi = dy + (size_t)i * D;
        float *dxi = dx + (size_t)i * D;
        for (int j = 0; j < c->db; j++) {
            const size_t e = (size_t)i * c->db + j, k = e * nt;
            const int b = c->ib[j];
            dxi[b] = affine ? rf_xform_affine_backward_c(&c->xf, th + k, xi[b], dyi[b], dlogdet[i], dth + k)
                            : rf_rqs_backward_c(c->xf.bins, c->xf.bound, xi[b], dyi[b], dlogdet[i], dth + k, sc + e * cd);
        }
    }
    memset(dxa, 0, sizeof(float) * na);
    double g[RF_SUPERNET_MAX_CANDS];
    for (int k = 0; k < c->K; k++) {
        g[k] = 0;
        if (!c->mlp[k] || w[k] == 0.0f) continue;
        const float *ok = cache + L.out[k];
        double s = 0;
        for (size_t q = 0; q < nm; q++) s += (double)dth[q] * ok[q];
        g[k] = s;
        const float wk = w[k];
        for (size_t q = 0; q < nm; q++) dout[q] = wk * dth[q];
        rf_mlp_backward(c->mlp[k], p + c->poff[k], n, xa, dout, dxk, dp + c->poff[k], cache + L.mc[k], ms);
        for (size_t q = 0; q < na; q++) dxa[q] += dxk[q];
    }
    if (c->path < 0) { /* softmax Jacobian: dL/dalpha_j = w_j (g_j - sum_k w_k g_k) */
        double sg = 0;
        for (int k = 0; k < c->K; k++) sg += (double)w[k] * g[k];
        for (int k = 0; k < c->K; k++) dp[k] += (float)((double)w[k] * (g[k] - sg));
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c->da; j++)
            dx[(size_t)i * D + c->ia[j]] = dy[(size_t)i * D + c->ia[j]] + dxa[(size_t)i * c->da + j];
}

static cJSON *mx_to_json(const rf_layer *l) {
    const mix_impl *c = MI(l);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "supernet_coupling");
    cJSON_AddNumberToObject(j, "dim", l->dim);
    cJSON_AddNumberToObject(j, "parity", c->parity);
    rf_xform_to_json(&c->xf, j);
    cJSON *a = cJSON_AddArrayToObject(j, "candidates");
    for (int k = 0; k < c->K; k++) {
        char nm[32];
        rf_supernet_cand_name(&c->cand[k], nm, sizeof nm);
        cJSON_AddItemToArray(a, cJSON_CreateString(nm));
    }
    cJSON_AddNumberToObject(j, "path", c->path);
    return j;
}

static void mx_free(void *impl) {
    mix_impl *c = impl;
    if (!c) return;
    for (int k = 0; k < c->K; k++) rf_mlp_free(c->mlp[k]);
    free(c->ia);
    free(c->ib);
    free(c);
}

static const rf_layer_ops mix_ops = {
    .kind = "supernet_coupling",
    .cache_floats = mx_cache,
    .scratch_floats = mx_scratch,
    .init_params = mx_init,
    .forward = mx_forward,
    .inverse = mx_inverse,
    .backward = mx_backward,
    .to_json = mx_to_json,
    .free_impl = mx_free,
};

static rf_layer *mix_create(int D, int parity, const rf_xform *xf, int K, const rf_supernet_cand *cands,
                            float alpha_init, rf_err *e) {
    if (rf_xform_check(xf, e) != RF_OK) return NULL;
    mix_impl *c = rf_zalloc(sizeof *c, e);
    if (!c) return NULL;
    c->parity = parity;
    c->xf = *xf;
    c->nt = rf_xform_n_theta(xf);
    c->K = K;
    c->alpha_init = alpha_init;
    c->path = -1;
    c->ia = malloc(sizeof(int) * (size_t)D);
    c->ib = malloc(sizeof(int) * (size_t)D);
    if (!c->ia || !c->ib) {
        mx_free(c);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < D; i++) {
        if (i % 2 == parity) c->ia[c->da++] = i;
        else c->ib[c->db++] = i;
    }
    c->m = c->db * c->nt;
    size_t np = (size_t)K;
    for (int k = 0; k < K; k++) {
        c->cand[k] = cands[k];
        c->poff[k] = np;
        if (cands[k].zero) continue;
        rf_mlp_cfg mc = {.n_in = c->da, .n_out = c->m, .hidden = cands[k].hidden, .n_hidden = cands[k].n_hidden,
                         .act = cands[k].act, .residual = cands[k].residual};
        if (!(c->mlp[k] = rf_mlp_create(&mc, e))) {
            mx_free(c);
            return NULL;
        }
        np += rf_mlp_n_params(c->mlp[k]);
    }
    rf_layer *l = rf_layer_new(&mix_ops, D, np, c, e);
    if (!l) mx_free(c);
    return l;
}

/* ======================================================================================
 * The supernet
 * ====================================================================================== */

static int supported_type(rf_flow_type t) { return t == RF_FLOW_REALNVP || t == RF_FLOW_GLOW || t == RF_FLOW_NSF; }

void rf_supernet_free(rf_supernet *s) {
    if (!s) return;
    rf_flow_free(s->flow);
    free(s->layer);
    free(s->alpha_off);
    free(s->path);
    free(s);
}

rf_supernet *rf_supernet_create(const rf_supernet_cfg *cfg, rf_rng *rng, rf_err *e) {
    const rf_flow_spec *sp = &cfg->spec;
    if (!supported_type(sp->type)) {
        rf_err_set(e, RF_EARG, "supernet: flow type %s is not supported (realnvp, glow or nsf: coupling flows)",
                   rf_flow_type_name(sp->type));
        return NULL;
    }
    if (sp->D < 2) {
        rf_err_set(e, RF_EARG, "supernet: coupling flows need at least 2 dimensions, got %d", sp->D);
        return NULL;
    }
    rf_flow_spec chk = *sp;
    if (chk.n_hidden < 1) chk.n_hidden = 1;
    if (rf_flow_spec_check(&chk, e) != RF_OK) {
        rf_err_prefix(e, RF_EARG, "supernet");
        return NULL;
    }
    if (cfg->n_cands < 1 || cfg->n_cands > RF_SUPERNET_MAX_CANDS) {
        rf_err_set(e, RF_EARG, "supernet: the number of candidates must be in [1, %d], got %d", RF_SUPERNET_MAX_CANDS,
                   cfg->n_cands);
        return NULL;
    }
    if (!(cfg->alpha_init >= 0 && cfg->alpha_init < 100)) {
        rf_err_set(e, RF_EARG, "supernet: alpha_init must be in [0, 100), got %g", (double)cfg->alpha_init);
        return NULL;
    }
    rf_supernet *s = rf_zalloc(sizeof *s, e);
    if (!s) return NULL;
    s->spec = chk;
    s->blocks = sp->blocks;
    s->n_cands = cfg->n_cands;
    for (int k = 0; k < cfg->n_cands; k++) {
        rf_supernet_cand c = cfg->cands[k];
        rf_supernet_cand_name(&c, s->names[k], sizeof s->names[k]);
        if (!c.zero) {
            if (c.n_hidden < 1 || c.n_hidden > SN_MAX_DEPTH || (c.residual && c.n_hidden < 2) || c.hidden < 0 ||
                c.hidden > 65536) {
                rf_err_set(e, RF_EARG, "supernet: candidate %d (\"%s\") is not valid", k, s->names[k]);
                rf_supernet_free(s);
                return NULL;
            }
            if (c.hidden == 0) c.hidden = sp->hidden;
        }
        for (int j = 0; j < k; j++)
            if (!strcmp(s->names[j], s->names[k])) {
                rf_err_set(e, RF_EARG, "supernet: candidate \"%s\" given twice", s->names[k]);
                rf_supernet_free(s);
                return NULL;
            }
        s->cands[k] = c;
    }
    const int B = sp->blocks, D = sp->D;
    s->layer = malloc(sizeof(int) * (size_t)B);
    s->alpha_off = malloc(sizeof(size_t) * (size_t)B);
    rf_flow *f = rf_flow_alloc_layers(&s->spec, 3 * B, e);
    if (!s->layer || !s->alpha_off || !f) {
        if (f) rf_err_set(e, RF_ENOMEM, "out of memory");
        rf_flow_free(f);
        rf_supernet_free(s);
        return NULL;
    }
    s->flow = f;
    f->seed = rng->seed;
    const rf_xform xf = sp->type == RF_FLOW_NSF ? (rf_xform){.kind = RF_XFORM_RQS, .bins = sp->bins, .bound = sp->bound}
                                                : (rf_xform){.kind = RF_XFORM_AFFINE, .clamp = sp->clamp};
    for (int b = 0; b < B; b++) {
        rf_layer *l;
        if (!(l = rf_actnorm_create(D, e))) goto fail;
        f->layers[f->n_layers++] = l;
        if (sp->type != RF_FLOW_REALNVP) {
            if (!(l = rf_lu_linear_create(D, rng, e))) goto fail;
            f->layers[f->n_layers++] = l;
        }
        if (!(l = mix_create(D, sp->type == RF_FLOW_REALNVP ? b % 2 : 0, &xf, s->n_cands, s->cands, cfg->alpha_init, e)))
            goto fail;
        s->layer[b] = f->n_layers;
        f->layers[f->n_layers++] = l;
    }
    if (rf_flow_assemble(f, e) != RF_OK) goto fail;
    for (int k = 0; k < f->n_layers; k++) {
        rf_layer *l = f->layers[k];
        if (l->ops->init_params) l->ops->init_params(l, f->params + l->offset, rng);
    }
    rf_base_init_params(&f->base, f->params + f->base.offset, rng);
    for (int b = 0; b < B; b++) s->alpha_off[b] = f->layers[s->layer[b]]->offset;
    return s;
fail:
    rf_supernet_free(s);
    return NULL;
}

float *rf_supernet_alpha(rf_supernet *s, int b) { return s->flow->params + s->alpha_off[b]; }

const float *rf_supernet_alpha_grad(const rf_supernet *s, int b) { return s->flow->grads + s->alpha_off[b]; }

void rf_supernet_weights(const rf_supernet *s, int b, double *w) {
    const float *a = s->flow->params + s->alpha_off[b];
    double mx = a[0], sum = 0;
    for (int k = 1; k < s->n_cands; k++)
        if (a[k] > mx) mx = a[k];
    for (int k = 0; k < s->n_cands; k++) sum += w[k] = exp((double)a[k] - mx);
    for (int k = 0; k < s->n_cands; k++) w[k] /= sum;
}

int rf_supernet_set_path(rf_supernet *s, const int *path, rf_err *e) {
    if (path) {
        for (int b = 0; b < s->blocks; b++)
            if (path[b] < 0 || path[b] >= s->n_cands)
                return rf_err_set(e, RF_EARG, "supernet: path[%d] = %d is not a candidate index in [0, %d)", b, path[b],
                                  s->n_cands);
        if (!s->path && !(s->path = malloc(sizeof(int) * (size_t)s->blocks)))
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        memcpy(s->path, path, sizeof(int) * (size_t)s->blocks);
    } else {
        free(s->path);
        s->path = NULL;
    }
    for (int b = 0; b < s->blocks; b++) MI(s->flow->layers[s->layer[b]])->path = path ? path[b] : -1;
    return RF_OK;
}

int rf_supernet_cand_range(const rf_supernet *s, int b, int k, size_t *off, size_t *n) {
    if (b < 0 || b >= s->blocks || k < 0 || k >= s->n_cands) return RF_EARG;
    const rf_layer *l = s->flow->layers[s->layer[b]];
    const mix_impl *c = MI(l);
    *off = l->offset + c->poff[k];
    *n = c->mlp[k] ? rf_mlp_n_params(c->mlp[k]) : 0;
    return RF_OK;
}

int rf_supernet_prepare(rf_supernet *s, const rf_matrix *train, int standardize, int init_batch, rf_rng *rng,
                        rf_err *e) {
    rf_flow *f = s->flow;
    if (!train || train->d != f->D || train->n < 1)
        return rf_err_set(e, RF_EARG, "supernet: the training rows (%d x %d) do not fit the supernet's dimension %d",
                          train ? train->n : 0, train ? train->d : 0, f->D);
    if (standardize) {
        int rc = rf_standardizer_fit(train, standardize == 2, f->shift, f->scale, e);
        if (rc) return rc;
    }
    const int m = train->n < init_batch ? train->n : init_batch;
    if (m < 2) return RF_OK;
    int *idx = malloc(sizeof(int) * (size_t)train->n);
    float *xb = rf_floats((size_t)m * train->d, e);
    if (!idx || !xb) {
        free(idx);
        rf_free(xb);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < train->n; i++) idx[i] = i;
    rf_rng_shuffle(rng, idx, train->n);
    for (int i = 0; i < m; i++) memcpy(xb + (size_t)i * train->d, train->x + (size_t)idx[i] * train->d, sizeof(float) * train->d);
    int rc = rf_flow_data_init(f, m, xb, e);
    free(idx);
    rf_free(xb);
    return rc;
}

int rf_supernet_set_drop(rf_supernet *s, const uint32_t *drop, rf_err *e) {
    const uint32_t all = s->n_cands >= 32 ? 0xffffffffu : (1u << s->n_cands) - 1u;
    for (int b = 0; drop && b < s->blocks; b++)
        if ((drop[b] & all) == all)
            return rf_err_set(e, RF_EARG, "supernet: block %d: every candidate left out", b);
    for (int b = 0; b < s->blocks; b++) MI(s->flow->layers[s->layer[b]])->drop = drop ? drop[b] & all : 0;
    return RF_OK;
}

void rf_supernet_argmax(const rf_supernet *s, int *path) {
    for (int b = 0; b < s->blocks; b++) {
        const float *a = s->flow->params + s->alpha_off[b];
        int best = 0;
        for (int k = 1; k < s->n_cands; k++)
            if (a[k] > a[best]) best = k;
        path[b] = best;
    }
}

cJSON *rf_supernet_to_json(const rf_supernet *s, const int *path) {
    int *am = NULL;
    if (!path) {
        am = malloc(sizeof(int) * (size_t)s->blocks);
        if (!am) return NULL;
        rf_supernet_argmax(s, am);
        path = am;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "flow", rf_flow_type_name(s->spec.type));
    cJSON_AddNumberToObject(j, "blocks", s->blocks);
    cJSON_AddNumberToObject(j, "hidden", s->spec.hidden);
    cJSON *c = cJSON_AddArrayToObject(j, "candidates");
    for (int k = 0; c && k < s->n_cands; k++) cJSON_AddItemToArray(c, cJSON_CreateString(s->names[k]));
    cJSON *a = cJSON_AddArrayToObject(j, "alpha"), *w = cJSON_AddArrayToObject(j, "weights");
    cJSON *p = cJSON_AddArrayToObject(j, "path");
    double wb[RF_SUPERNET_MAX_CANDS], ab[RF_SUPERNET_MAX_CANDS];
    for (int b = 0; b < s->blocks; b++) {
        const float *al = s->flow->params + s->alpha_off[b];
        for (int k = 0; k < s->n_cands; k++) ab[k] = al[k];
        rf_supernet_weights(s, b, wb);
        if (a) cJSON_AddItemToArray(a, cJSON_CreateDoubleArray(ab, s->n_cands));
        if (w) cJSON_AddItemToArray(w, cJSON_CreateDoubleArray(wb, s->n_cands));
        if (p) cJSON_AddItemToArray(p, cJSON_CreateString(s->names[path[b]]));
    }
    free(am);
    return j;
}

static int is_mix(const rf_layer *l) { return l->ops == &mix_ops; }

rf_flow *rf_supernet_discretize(const rf_supernet *s, const int *path, int scale_by_weight, rf_err *e) {
    const rf_flow *sf = s->flow;
    for (int b = 0; b < s->blocks; b++)
        if (!path || path[b] < 0 || path[b] >= s->n_cands) {
            rf_err_set(e, RF_EARG, "supernet: path[%d] = %d is not a candidate index in [0, %d)", b, path ? path[b] : -1,
                       s->n_cands);
            return NULL;
        }
    int n = 0, nb = 0, H = 0, L = 0, first = -1;
    for (int k = 0, b = 0; k < sf->n_layers; k++) {
        if (!is_mix(sf->layers[k])) {
            n++;
            continue;
        }
        const rf_supernet_cand *c = &s->cands[path[b++]];
        if (c->zero) continue;
        n++;
        nb++;
        if (c->hidden > H) H = c->hidden;
        if (c->n_hidden > L) L = c->n_hidden;
        if (first < 0) first = path[b - 1];
    }
    rf_flow_spec spec = s->spec;
    if (nb > 0) {
        spec.blocks = nb;
        spec.hidden = H;
        spec.n_hidden = L;
        spec.act = s->cands[first].act;
        spec.residual = s->cands[first].residual;
    }
    rf_flow *f = rf_flow_alloc_layers(&spec, n, e);
    if (!f) return NULL;
    /* the supernet layer each new layer copies its parameters from, and its parameter offset */
    size_t *src = malloc(sizeof(size_t) * (size_t)(n > 0 ? n : 1));
    float *scl = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    if (!src || !scl) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        goto fail;
    }
    for (int k = 0, b = 0; k < sf->n_layers; k++) {
        const rf_layer *o = sf->layers[k];
        rf_layer *l = NULL;
        if (is_mix(o)) {
            const mix_impl *c = MI(o);
            const int pk = path[b], blk = b++;
            const rf_supernet_cand *cd = &s->cands[pk];
            if (cd->zero) continue;
            rf_coupling_cfg cc = {.D = s->spec.D, .parity = c->parity,
                                  .cond = {.hidden = cd->hidden, .n_hidden = cd->n_hidden, .act = cd->act, .residual = cd->residual},
                                  .clamp = c->xf.clamp, .bins = c->xf.bins, .bound = c->xf.bound};
            l = c->xf.kind == RF_XFORM_AFFINE ? rf_affine_coupling_create(&cc, e) : rf_spline_coupling_create(&cc, e);
            if (!l) goto fail;
            if (l->n_params != rf_mlp_n_params(c->mlp[pk])) {
                rf_layer_free(l);
                rf_err_set(e, RF_ESTATE, "supernet: the coupling's conditioner has %zu parameters, the candidate %zu",
                           l->n_params, rf_mlp_n_params(c->mlp[pk]));
                goto fail;
            }
            src[f->n_layers] = o->offset + c->poff[pk];
            double w[RF_SUPERNET_MAX_CANDS];
            rf_supernet_weights(s, blk, w);
            scl[f->n_layers] = scale_by_weight ? (float)w[pk] : 1.0f;
        } else {
            cJSON *j = o->ops->to_json(o);
            l = j ? rf_layer_from_json(j, e) : NULL;
            if (!j) rf_err_set(e, RF_ENOMEM, "out of memory");
            cJSON_Delete(j);
            if (!l) goto fail;
            if (l->n_params != o->n_params) {
                rf_layer_free(l);
                rf_err_set(e, RF_ESTATE, "supernet: a rebuilt %s layer has %zu parameters, the original %zu", o->ops->kind,
                           l->n_params, o->n_params);
                goto fail;
            }
            src[f->n_layers] = o->offset;
            scl[f->n_layers] = 1.0f;
        }
        f->layers[f->n_layers++] = l;
    }
    if (rf_flow_assemble(f, e) != RF_OK) goto fail;
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        memcpy(f->params + l->offset, sf->params + src[k], sizeof(float) * l->n_params);
        if (scl[k] != 1.0f) { /* the conditioner's last layer (W then b: n_out x (hidden + 1) floats) */
            rf_morph_cond ci;
            if (rf_morph_cond_info(f, k, &ci, e) != RF_OK) goto fail;
            const size_t last = (size_t)ci.n_out * ((size_t)ci.hidden + 1);
            float *q = f->params + l->offset + l->n_params - last;
            for (size_t i = 0; i < last; i++) q[i] *= scl[k];
        }
    }
    if (f->base.n_params != sf->base.n_params) {
        rf_err_set(e, RF_ESTATE, "supernet: the base distribution changed size");
        goto fail;
    }
    memcpy(f->params + f->base.offset, sf->params + sf->base.offset, sizeof(float) * f->base.n_params);
    memcpy(f->shift, sf->shift, sizeof(float) * (size_t)f->D);
    memcpy(f->scale, sf->scale, sizeof(float) * (size_t)f->D);
    f->seed = sf->seed;
    f->meta = cJSON_CreateObject();
    cJSON *sj = rf_supernet_to_json(s, path);
    if (!f->meta || !sj) {
        cJSON_Delete(sj);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        goto fail;
    }
    cJSON_AddItemToObject(f->meta, "supernet", sj);
    if (rf_flow_spec_check(&f->spec, e) != RF_OK) {
        rf_err_prefix(e, RF_ESTATE, "supernet: the discretised flow's spec");
        goto fail;
    }
    free(src);
    free(scl);
    return f;
fail:
    free(src);
    free(scl);
    rf_flow_free(f);
    return NULL;
}

int rf__supernet_step_check(const char *who, const char *what, double loss, double gnorm, long step, int epoch,
                            long max_bad, long *bad, long *skipped, int progress, int *skip, rf_err *e) {
    *skip = !isfinite(loss) || !isfinite(gnorm);
    if (!*skip) {
        *bad = 0;
        return RF_OK;
    }
    ++*skipped;
    if (progress)
        fprintf(stderr, "%s: warning: step %ld skipped: non-finite %s; the supernet was not updated\n", who, step,
                isfinite(loss) ? "gradient" : "loss");
    if (++*bad >= max_bad)
        return rf_err_set(e, RF_ENONFINITE,
                          "%s: %s diverged: %ld consecutive non-finite steps at epoch %d (try a lower learning rate)",
                          who, what, *bad, epoch);
    return RF_OK;
}
