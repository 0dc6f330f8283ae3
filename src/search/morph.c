/* Function-preserving network morphisms of flows (see renflow/morph.h for the maths of each).
 *
 * A morphism is a plan: the new layer stack, each layer with its parameters. Unchanged layers
 * are rebuilt from their own JSON description (rf_layer_from_json: the same code path as the
 * model file) with their parameters copied; changed layers are rebuilt from an edited
 * description (wider / deeper conditioner) with transformed parameters; inserted layers are
 * built from a description and identity-initialised. The flow is then assembled as the model
 * loader does (src/flow/flow_internal.h), so whatever a morphed flow is, the model file can
 * describe it.
 *
 * Conditioner parameters. MLP and MADE (src/nn/dense.h) and the 1-D conv net (src/nn/conv1d.c)
 * share one layout: layer l = 0..L stores W_l (out x K*in, row-major, column k * in + c, K = 1
 * for the dense nets) and then b_l (out). net_layer_at below restates it; cond_shape checks the
 * parameter count it implies against the layer's own, so a change of layout fails loudly
 * (RF_ESTATE) instead of silently scrambling weights. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "../flow/flow_internal.h"
#include "renflow/morph.h"
#include "renflow/tsflow.h"

#define MORPH_MAX_HIDDEN 65536 /* rf_flow_spec_check's bound on spec.hidden */
#define MORPH_MAX_DEPTH 64     /* spec.n_hidden and conv1d depth bound */

/* ------------------------------------------------------------------ conditioner layout */

typedef struct {
    int n_in, n_out, H, L, K;
    rf_act act;
    int residual;
    int period; /* MADE: hidden unit k has degree 1 + k mod period; 0 for the others */
} net_shape;

typedef struct {
    int in, out;
    size_t w, b;
} net_layer;

static net_layer net_layer_at(const net_shape *s, int l) {
    net_layer r = {0, 0, 0, 0};
    size_t off = 0;
    for (int k = 0; k <= l; k++) {
        r.in = k == 0 ? s->n_in : s->H;
        r.out = k == s->L ? s->n_out : s->H;
        r.w = off;
        r.b = off + (size_t)r.out * (size_t)s->K * (size_t)r.in;
        off = r.b + (size_t)r.out;
    }
    return r;
}

static size_t net_n_params(const net_shape *s) {
    const net_layer r = net_layer_at(s, s->L);
    return r.b + (size_t)r.out;
}

static const char *layer_kind(const rf_layer *l) { return l && l->ops && l->ops->kind ? l->ops->kind : ""; }

static int is_conditioned(const rf_layer *l) {
    const char *k = layer_kind(l);
    return !strcmp(k, "coupling") || !strcmp(k, "autoregressive") || !strcmp(k, "ts_coupling");
}

static int is_squeeze(const rf_layer *l) { return !strcmp(layer_kind(l), "ts_squeeze"); }

/* theta values per transformed coordinate, from a layer description's transform fields. */
static int json_n_theta(const cJSON *j, rf_err *e) {
    const char *t = NULL;
    if (rf_json_get_string(j, "transform", &t, e)) return -1;
    if (!strcmp(t, "affine")) return 2;
    int bins = 0;
    if (strcmp(t, "rqs") || rf_json_get_int(j, "bins", &bins, e) || bins < 2 || bins > 64) {
        rf_err_set(e, RF_ESTATE, "morph: layer transform \"%s\" not understood", t);
        return -1;
    }
    return rf_rqs_n_params(bins);
}

/* The conditioner of layer l as a net_shape (and its kind), from the layer's JSON. */
static int cond_shape(const rf_layer *l, net_shape *s, rf_morph_cond_kind *kind, rf_err *e) {
    if (!is_conditioned(l))
        return rf_err_set(e, RF_EARG, "morph: layer of kind \"%s\" has no conditioner", layer_kind(l));
    cJSON *j = l->ops->to_json(l);
    if (!j) return rf_err_set(e, RF_ENOMEM, "morph: cannot describe a layer");
    memset(s, 0, sizeof *s);
    rf_morph_cond_kind k = RF_MORPH_COND_MLP;
    const char *act = NULL;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "conditioner");
    int rc = RF_OK;
    const int nt = json_n_theta(j, e);
    if (nt < 0) {
        rc = e ? e->code : RF_ESTATE;
        goto done;
    }
    rc = rf_json_get_int(c, "hidden", &s->H, e);
    if (!rc) rc = rf_json_get_int(c, "n_hidden", &s->L, e);
    if (!rc) rc = rf_json_get_string(c, "act", &act, e);
    if (rc) goto done;
    if (rf_act_parse(act, &s->act)) {
        rc = rf_err_set(e, RF_ESTATE, "morph: unknown activation \"%s\"", act);
        goto done;
    }
    s->residual = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "residual"));
    s->K = 1;
    const int D = l->dim;
    if (!strcmp(layer_kind(l), "coupling")) {
        int parity = 0;
        if ((rc = rf_json_get_int(j, "parity", &parity, e))) goto done;
        const int da = parity == 0 ? (D + 1) / 2 : D / 2;
        s->n_in = da;
        s->n_out = (D - da) * nt;
    } else if (!strcmp(layer_kind(l), "autoregressive")) {
        k = RF_MORPH_COND_MADE;
        s->n_in = D;
        s->n_out = D * nt;
        s->period = D > 1 ? D - 1 : 1;
    } else {
        k = RF_MORPH_COND_CONV;
        int C = 0;
        if ((rc = rf_json_get_int(j, "channels", &C, e)) || (rc = rf_json_get_int(c, "kernel", &s->K, e)))
            goto done;
        s->n_in = C / 2;
        s->n_out = (C - C / 2) * nt;
    }
    if (net_n_params(s) != l->n_params)
        rc = rf_err_set(e, RF_ESTATE,
                        "morph: the %s conditioner's parameter layout is not the one this code "
                        "knows (%zu parameters expected, the layer has %zu)",
                        layer_kind(l), net_n_params(s), l->n_params);
    if (kind) *kind = k;
done:
    cJSON_Delete(j);
    return rc;
}

int rf_morph_cond_info(const rf_flow *f, int k, rf_morph_cond *c, rf_err *e) {
    if (!f || k < 0 || k >= f->n_layers)
        return rf_err_set(e, RF_EARG, "morph: layer index %d out of range [0, %d)", k, f ? f->n_layers : 0);
    net_shape s;
    rf_morph_cond_kind kind;
    int rc = cond_shape(f->layers[k], &s, &kind, e);
    if (rc) return rc;
    c->kind = kind;
    c->n_in = s.n_in;
    c->n_out = s.n_out;
    c->hidden = s.H;
    c->n_hidden = s.L;
    c->kernel = s.K;
    c->act = s.act;
    c->residual = s.residual;
    c->n_params = f->layers[k]->n_params;
    return RF_OK;
}

int rf_morph_conditioned_layers(const rf_flow *f, int *idx) {
    int n = 0;
    for (int k = 0; k < f->n_layers; k++)
        if (is_conditioned(f->layers[k])) {
            if (idx) idx[n] = k;
            n++;
        }
    return n;
}

/* ------------------------------------------------------------------ parameter transforms */

/* Widens every hidden layer of a conditioner from s->H to H2 units (see morph.h). p: old
 * parameters, q: new ones (net_n_params with H2). */
static int widen_params(const net_shape *s, int H2, rf_morph_widen_mode mode, float scale, rf_rng *rng,
                        const float *p, float *q, rf_err *e) {
    const int H = s->H, extra = H2 - H, K = s->K;
    int *g = malloc(sizeof(int) * (size_t)extra), *cnt = malloc(sizeof(int) * (size_t)H);
    if (!g || !cnt) {
        free(g);
        free(cnt);
        return rf_err_set(e, RF_ENOMEM, "morph: out of memory widening a conditioner");
    }
    for (int u = 0; u < H; u++) cnt[u] = 1;
    for (int j = 0; j < extra; j++) {
        g[j] = -1;
        if (mode != RF_MORPH_WIDEN_NET2NET) continue;
        const int unit = H + j, per = s->period > 0 ? s->period : 1, r = unit % per;
        if (r >= H) continue; /* no old unit has this MADE degree: zero scheme */
        const int m = (H - r + per - 1) / per;
        g[j] = r + per * (int)rf_rng_below(rng, (uint64_t)m);
        cnt[g[j]]++;
    }
    net_shape s2 = *s;
    s2.H = H2;
    for (int l = 0; l <= s->L; l++) {
        const net_layer a = net_layer_at(s, l), b = net_layer_at(&s2, l);
        for (int o = 0; o < b.out; o++) {
            const int r = (l == s->L || o < H) ? o : g[o - H];
            float *row = q + b.w + (size_t)o * K * b.in;
            if (r < 0) { /* a new unit: fresh incoming weights; nothing reads it yet */
                const double amp = (scale > 0 ? scale : 1.0f) * sqrt(3.0 / ((double)K * b.in));
                for (size_t i = 0; i < (size_t)K * b.in; i++) row[i] = (float)((2.0 * rf_rng_uniform(rng) - 1.0) * amp);
                q[b.b + o] = 0.0f;
                continue;
            }
            const float *src = p + a.w + (size_t)r * K * a.in;
            for (int c = 0; c < b.in; c++) {
                int cs = c;
                float div = 1.0f;
                if (l > 0 && c >= H) cs = g[c - H];
                if (l > 0 && cs >= 0) div = (float)cnt[cs];
                for (int k = 0; k < K; k++)
                    row[(size_t)k * b.in + c] = cs < 0 ? 0.0f : src[(size_t)k * a.in + cs] / div;
            }
            q[b.b + o] = p[a.b + r];
        }
    }
    free(g);
    free(cnt);
    return RF_OK;
}

typedef enum { DEEPEN_IDENTITY, DEEPEN_ZERO, DEEPEN_DOUBLE } deepen_kind;

static int deepen_kind_of(const net_shape *s, deepen_kind *k, rf_err *e) {
    if (s->residual) *k = s->act == RF_ACT_RELU ? DEEPEN_DOUBLE : DEEPEN_ZERO;
    else if (s->act == RF_ACT_RELU) *k = DEEPEN_IDENTITY;
    else
        return rf_err_set(e, RF_EARG,
                          "deepen: a plain (non-residual) %s conditioner has no exact identity hidden "
                          "layer (%s(x) != x); only ReLU or residual conditioners can be deepened",
                          rf_act_name(s->act), rf_act_name(s->act));
    return RF_OK;
}

/* Inserts hidden layer `at` (1..L) into a conditioner (see morph.h for the three cases). */
static void deepen_params(const net_shape *s, int at, deepen_kind kind, const float *p, float *q) {
    net_shape s2 = *s;
    s2.L = s->L + 1;
    const int K = s->K, half = (K - 1) / 2;
    for (int l2 = 0; l2 <= s2.L; l2++) {
        const net_layer b = net_layer_at(&s2, l2);
        const size_t nw = (size_t)b.out * K * b.in;
        if (l2 == at) {
            memset(q + b.w, 0, sizeof(float) * (nw + (size_t)b.out));
            if (kind != DEEPEN_ZERO)
                for (int o = 0; o < b.out; o++) q[b.w + (size_t)o * K * b.in + (size_t)half * b.in + o] = 1.0f;
            continue;
        }
        const net_layer a = net_layer_at(s, l2 < at ? l2 : l2 - 1);
        memcpy(q + b.w, p + a.w, sizeof(float) * (nw + (size_t)b.out));
        if (kind == DEEPEN_DOUBLE && l2 > at) {
            if (l2 == s2.L)
                for (size_t i = 0; i < nw; i++) q[b.w + i] *= 0.5f;
            else
                for (int o = 0; o < b.out; o++) q[b.b + o] *= 2.0f;
        }
    }
}

/* ------------------------------------------------------------------ plans */

typedef struct {
    rf_layer *l;
    float *p; /* l->n_params floats */
} slot;

typedef struct {
    slot *s;
    int n, cap;
} plan;

static void plan_free(plan *pl) {
    for (int i = 0; i < pl->n; i++) {
        rf_layer_free(pl->s[i].l);
        free(pl->s[i].p);
    }
    free(pl->s);
    memset(pl, 0, sizeof *pl);
}

/* Takes ownership of l and p (frees them on failure). */
static int plan_push(plan *pl, rf_layer *l, float *p, rf_err *e) {
    if (pl->n == pl->cap) {
        const int cap = pl->cap ? 2 * pl->cap : 16;
        slot *s = realloc(pl->s, sizeof(slot) * (size_t)cap);
        if (!s) {
            rf_layer_free(l);
            free(p);
            return rf_err_set(e, RF_ENOMEM, "morph: out of memory");
        }
        pl->s = s;
        pl->cap = cap;
    }
    pl->s[pl->n].l = l;
    pl->s[pl->n].p = p;
    pl->n++;
    return RF_OK;
}

static float *param_buf(size_t n, rf_err *e) {
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) rf_err_set(e, RF_ENOMEM, "morph: out of memory for %zu parameters", n);
    return p;
}

/* Builds a layer from a description (consumed). */
static rf_layer *layer_from(cJSON *j, rf_err *e) {
    if (!j) {
        rf_err_set(e, RF_ENOMEM, "morph: out of memory describing a layer");
        return NULL;
    }
    rf_layer *l = rf_layer_from_json(j, e);
    cJSON_Delete(j);
    if (!l && e) e->code = RF_EARG; /* a description this code wrote: a morphism that does not fit */
    return l;
}

/* Layer k of f, rebuilt from its description, with its parameters. */
static int push_clone(plan *pl, const rf_flow *f, int k, rf_err *e) {
    const rf_layer *o = f->layers[k];
    rf_layer *l = layer_from(o->ops->to_json(o), e);
    if (!l) return rf_err_prefix(e, e ? e->code : RF_ESTATE, "morph: rebuilding layer %d", k);
    if (l->n_params != o->n_params) {
        rf_layer_free(l);
        return rf_err_set(e, RF_ESTATE, "morph: layer %d (%s) does not rebuild from its description", k, layer_kind(o));
    }
    float *p = param_buf(l->n_params, e);
    if (!p) {
        rf_layer_free(l);
        return RF_ENOMEM;
    }
    memcpy(p, f->params + o->offset, sizeof(float) * l->n_params);
    return plan_push(pl, l, p, e);
}

static void json_set_num(cJSON *j, const char *key, double v) {
    if (cJSON_GetObjectItemCaseSensitive(j, key)) cJSON_ReplaceItemInObjectCaseSensitive(j, key, cJSON_CreateNumber(v));
    else cJSON_AddNumberToObject(j, key, v);
}

/* Appends desc to meta["morphs"] (meta is created, or wrapped when it is not an object). */
static int meta_add(rf_flow *f, const rf_flow *old, const char *desc, rf_err *e) {
    cJSON *m = old->meta ? cJSON_Duplicate(old->meta, 1) : cJSON_CreateObject();
    if (m && !cJSON_IsObject(m)) {
        cJSON *w = cJSON_CreateObject();
        if (w) cJSON_AddItemToObject(w, "previous", m);
        else cJSON_Delete(m);
        m = w;
    }
    if (!m) return rf_err_set(e, RF_ENOMEM, "morph: out of memory");
    cJSON *a = cJSON_GetObjectItemCaseSensitive(m, "morphs");
    if (!cJSON_IsArray(a)) {
        cJSON_DeleteItemFromObjectCaseSensitive(m, "morphs");
        a = cJSON_AddArrayToObject(m, "morphs");
    }
    if (!a || !cJSON_AddItemToArray(a, cJSON_CreateString(desc))) {
        cJSON_Delete(m);
        return rf_err_set(e, RF_ENOMEM, "morph: out of memory");
    }
    f->meta = m;
    return RF_OK;
}

/* The spec summarises the layers: widest / deepest conditioner, conditioned layers (per scale). */
static int refresh_spec(rf_flow *f, rf_err *e) {
    int nb = 0, maxb = 0, H = 0, L = 0;
    for (int k = 0; k < f->n_layers; k++) {
        const rf_layer *l = f->layers[k];
        if (is_squeeze(l)) {
            if (nb > maxb) maxb = nb;
            nb = 0;
        }
        if (!is_conditioned(l)) continue;
        net_shape s;
        int rc = cond_shape(l, &s, NULL, e);
        if (rc) return rc;
        if (s.H > H) H = s.H;
        if (s.L > L) L = s.L;
        nb++;
    }
    if (nb > maxb) maxb = nb;
    if (maxb > 0) f->spec.blocks = maxb;
    if (H > 0) f->spec.hidden = H;
    if (L > 0) f->spec.n_hidden = L;
    int rc = rf_flow_spec_check(&f->spec, e);
    return rc ? rf_err_prefix(e, RF_EARG, "morph: the morphed flow's spec") : RF_OK;
}

/* Assembles the new flow from the plan (consumed) with old's standardisation, base, seed and
 * meta (+ desc). */
static rf_flow *plan_build(const rf_flow *old, plan *pl, const char *desc, rf_err *e) {
    rf_flow *f = rf_flow_alloc_layers(&old->spec, pl->n, e);
    if (!f) {
        plan_free(pl);
        return NULL;
    }
    for (int i = 0; i < pl->n; i++) {
        f->layers[i] = pl->s[i].l;
        pl->s[i].l = NULL;
    }
    f->n_layers = pl->n;
    if (rf_flow_assemble(f, e) != RF_OK) goto fail;
    for (int i = 0; i < pl->n; i++)
        memcpy(f->params + f->layers[i]->offset, pl->s[i].p, sizeof(float) * f->layers[i]->n_params);
    if (f->base.n_params != old->base.n_params) {
        rf_err_set(e, RF_ESTATE, "morph: base distribution changed size");
        goto fail;
    }
    memcpy(f->params + f->base.offset, old->params + old->base.offset, sizeof(float) * f->base.n_params);
    memcpy(f->shift, old->shift, sizeof(float) * (size_t)f->D);
    memcpy(f->scale, old->scale, sizeof(float) * (size_t)f->D);
    f->seed = old->seed;
    if (meta_add(f, old, desc, e) != RF_OK || refresh_spec(f, e) != RF_OK) goto fail;
    plan_free(pl);
    return f;
fail:
    plan_free(pl);
    rf_flow_free(f);
    return NULL;
}

/* ------------------------------------------------------------------ insert */

static int is_ts(const rf_flow *f) { return f->spec.type == RF_FLOW_TS; }

/* Active shape of a tsflow at `pos` (what the layer before it outputs). */
static int ts_shape_at(const rf_flow *f, int pos, int *C, int *T, rf_err *e) {
    if (pos == 0) {
        *C = f->spec.channels;
        *T = f->spec.length;
        return RF_OK;
    }
    const rf_layer *l = f->layers[pos - 1];
    int c, t;
    if (!rf_ts_layer_shape(l, &c, &t))
        return rf_err_set(e, RF_EARG, "insert: layer %d (%s) is not a time-series layer", pos - 1, layer_kind(l));
    *C = is_squeeze(l) ? 2 * c : c;
    *T = is_squeeze(l) ? t / 2 : t;
    return RF_OK;
}

static cJSON *ts_desc(const char *kind, int D, int C, int T) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", kind);
    cJSON_AddNumberToObject(j, "dim", D);
    cJSON_AddNumberToObject(j, "channels", C);
    cJSON_AddNumberToObject(j, "length", T);
    return j;
}

/* Identity permutation and signs +1: with zero parameters W = P L U = I. */
static void add_identity_lu(cJSON *j, int n) {
    int *v = malloc(sizeof(int) * (size_t)n);
    if (!v) return; /* the description is then incomplete and rf_layer_from_json says so */
    for (int i = 0; i < n; i++) v[i] = i;
    cJSON_AddItemToObject(j, "perm", rf_json_int_array(v, n));
    for (int i = 0; i < n; i++) v[i] = 1;
    cJSON_AddItemToObject(j, "sign", rf_json_int_array(v, n));
    free(v);
}

/* Nearest conditioned layer to position pos (layers before it first at equal distance). */
static int nearest_conditioned(const rf_flow *f, int pos) {
    for (int d = 0; d < f->n_layers; d++) {
        if (pos - 1 - d >= 0 && is_conditioned(f->layers[pos - 1 - d])) return pos - 1 - d;
        if (pos + d < f->n_layers && is_conditioned(f->layers[pos + d])) return pos + d;
    }
    return -1;
}

/* The parity a coupling inserted at pos gets: the opposite of the previous coupling's (of the
 * next one's when there is none before). */
static int insert_parity(const rf_flow *f, int pos) {
    for (int d = 1; d <= f->n_layers; d++) {
        const int k = d <= pos ? pos - d : pos + (d - pos) - 1;
        if (k < 0 || k >= f->n_layers || strcmp(layer_kind(f->layers[k]), "coupling")) continue;
        cJSON *j = f->layers[k]->ops->to_json(f->layers[k]);
        int p = 0;
        rf_json_get_int(j, "parity", &p, NULL);
        cJSON_Delete(j);
        return 1 - p;
    }
    return 0;
}

/* One identity-initialised layer for position pos. */
static int push_new_layer(plan *pl, const rf_flow *f, int pos, rf_morph_layer what, int bins, rf_rng *rng,
                          rf_err *e) {
    const int D = f->D, ts = is_ts(f);
    int C = 0, T = 0, rc;
    if (ts && (rc = ts_shape_at(f, pos, &C, &T, e))) return rc;
    cJSON *j = NULL;
    switch (what) {
    case RF_MORPH_ACTNORM:
        if (ts) j = ts_desc("ts_actnorm", D, C, T);
        else {
            j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "kind", "actnorm");
            cJSON_AddNumberToObject(j, "dim", D);
        }
        break;
    case RF_MORPH_LINEAR:
        if (ts) j = ts_desc("ts_conv1x1", D, C, T);
        else {
            j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "kind", "lu_linear");
            cJSON_AddNumberToObject(j, "dim", D);
        }
        if (j) add_identity_lu(j, ts ? C : D);
        break;
    case RF_MORPH_COUPLING: {
        const int k = nearest_conditioned(f, pos);
        if (k < 0) return rf_err_set(e, RF_EARG, "insert: the flow has no conditioned layer to copy settings from");
        j = f->layers[k]->ops->to_json(f->layers[k]);
        if (!j) break;
        if (!strcmp(layer_kind(f->layers[k]), "coupling")) json_set_num(j, "parity", insert_parity(f, pos));
        if (ts) {
            json_set_num(j, "channels", C);
            json_set_num(j, "length", T);
        }
        if (bins) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "transform");
            if (!cJSON_IsString(t) || strcmp(t->valuestring, "rqs")) {
                cJSON_Delete(j);
                return rf_err_set(e, RF_EARG, "insert: bins = %d given but the couplings are not splines", bins);
            }
            if (bins < 2 || bins > 64) {
                cJSON_Delete(j);
                return rf_err_set(e, RF_EARG, "insert: bins must be in [2, 64], got %d", bins);
            }
            json_set_num(j, "bins", bins);
        }
        break;
    }
    default:
        return rf_err_set(e, RF_EARG, "insert: unknown layer kind %d", (int)what);
    }
    rf_layer *l = layer_from(j, e);
    if (!l) return rf_err_prefix(e, e ? e->code : RF_EARG, "insert at %d", pos);
    float *p = param_buf(l->n_params, e);
    if (!p) {
        rf_layer_free(l);
        return RF_ENOMEM;
    }
    /* ActNorm and LU layers are the identity at zero; a conditioned layer gets fresh hidden
     * weights and a zero last layer (theta = 0 is the identity) */
    if (what == RF_MORPH_COUPLING && l->ops->init_params) l->ops->init_params(l, p, rng);
    if (l->ops->project) l->ops->project(l, p);
    return plan_push(pl, l, p, e);
}

static const char *what_name(rf_morph_layer w) {
    switch (w) {
    case RF_MORPH_BLOCK: return "block";
    case RF_MORPH_ACTNORM: return "actnorm";
    case RF_MORPH_LINEAR: return "linear";
    case RF_MORPH_COUPLING: return "coupling";
    }
    return "?";
}

/* Layers of an inserted block for the flow's type. */
static int block_layers(const rf_flow *f, rf_morph_layer *out) {
    int n = 0;
    out[n++] = RF_MORPH_ACTNORM;
    const rf_flow_type t = f->spec.type;
    if (t == RF_FLOW_GLOW || t == RF_FLOW_NSF || t == RF_FLOW_NSF_AR || t == RF_FLOW_TS) out[n++] = RF_MORPH_LINEAR;
    out[n++] = RF_MORPH_COUPLING;
    return n;
}

rf_flow *rf_morph_insert(const rf_flow *f, int position, rf_morph_layer what, int bins, rf_rng *rng, rf_err *e) {
    rf_morph m = {.op = RF_MORPH_INSERT, .position = position, .what = what, .bins = bins};
    return rf_morph_apply(f, &m, rng, e);
}

static rf_flow *do_insert(const rf_flow *f, const rf_morph *m, rf_rng *rng, const char *desc, rf_err *e) {
    const int pos = m->position;
    if (pos < 0 || pos > f->n_layers) {
        rf_err_set(e, RF_EARG, "insert: position %d out of range [0, %d]", pos, f->n_layers);
        return NULL;
    }
    if ((unsigned)m->what > RF_MORPH_COUPLING) {
        rf_err_set(e, RF_EARG, "insert: unknown layer kind %d", (int)m->what);
        return NULL;
    }
    if (m->bins && m->what != RF_MORPH_COUPLING && m->what != RF_MORPH_BLOCK) {
        rf_err_set(e, RF_EARG, "insert: bins only apply to an inserted coupling or block");
        return NULL;
    }
    rf_morph_layer kinds[3];
    int nk = 1;
    kinds[0] = m->what;
    if (m->what == RF_MORPH_BLOCK) nk = block_layers(f, kinds);
    plan pl = {0};
    int rc = RF_OK;
    for (int k = 0; k < pos && !rc; k++) rc = push_clone(&pl, f, k, e);
    for (int i = 0; i < nk && !rc; i++) rc = push_new_layer(&pl, f, pos, kinds[i], m->bins, rng, e);
    for (int k = pos; k < f->n_layers && !rc; k++) rc = push_clone(&pl, f, k, e);
    if (rc) {
        plan_free(&pl);
        return NULL;
    }
    return plan_build(f, &pl, desc, e);
}

/* ------------------------------------------------------------------ widen / deepen */

/* Resolves the targets: one conditioned layer, or all (target -1). */
static int targets(const rf_flow *f, int target, unsigned char *sel, const char *who, rf_err *e) {
    memset(sel, 0, (size_t)f->n_layers);
    if (target == -1) {
        int n = 0;
        for (int k = 0; k < f->n_layers; k++) n += sel[k] = (unsigned char)is_conditioned(f->layers[k]);
        return n ? RF_OK : rf_err_set(e, RF_EARG, "%s: the flow has no conditioned layer", who);
    }
    if (target < 0 || target >= f->n_layers)
        return rf_err_set(e, RF_EARG, "%s: target layer %d out of range [0, %d) (or -1 for all)", who, target, f->n_layers);
    if (!is_conditioned(f->layers[target]))
        return rf_err_set(e, RF_EARG, "%s: layer %d (%s) has no conditioner", who, target, layer_kind(f->layers[target]));
    sel[target] = 1;
    return RF_OK;
}

/* Replaces conditioner fields of layer k's description; builds the layer. */
static rf_layer *edited_layer(const rf_layer *o, const char *key, int value, rf_err *e) {
    cJSON *j = o->ops->to_json(o);
    cJSON *c = j ? cJSON_GetObjectItemCaseSensitive(j, "conditioner") : NULL;
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(j);
        rf_err_set(e, RF_ESTATE, "morph: layer description has no conditioner");
        return NULL;
    }
    json_set_num(c, key, value);
    return layer_from(j, e);
}

static rf_flow *do_widen_deepen(const rf_flow *f, const rf_morph *m, rf_rng *rng, const char *desc, rf_err *e) {
    const int widen = m->op == RF_MORPH_WIDEN;
    const char *who = widen ? "widen" : "deepen";
    unsigned char *sel = malloc((size_t)f->n_layers);
    if (!sel) {
        rf_err_set(e, RF_ENOMEM, "morph: out of memory");
        return NULL;
    }
    plan pl = {0};
    int rc = targets(f, m->target, sel, who, e);
    if (widen && !rc && (m->mode != RF_MORPH_WIDEN_ZERO && m->mode != RF_MORPH_WIDEN_NET2NET))
        rc = rf_err_set(e, RF_EARG, "widen: unknown mode %d", (int)m->mode);
    if (widen && !rc && !(m->init_scale >= 0 && m->init_scale < 100))
        rc = rf_err_set(e, RF_EARG, "widen: init_scale must be in [0, 100), got %g", (double)m->init_scale);
    /* validate every target before building anything */
    for (int k = 0; k < f->n_layers && !rc; k++) {
        if (!sel[k]) continue;
        net_shape s;
        if ((rc = cond_shape(f->layers[k], &s, NULL, e))) break;
        if (widen) {
            if (m->hidden <= s.H || m->hidden > MORPH_MAX_HIDDEN)
                rc = rf_err_set(e, RF_EARG, "widen: layer %d has %d hidden units; the new width must be in [%d, %d], got %d",
                                k, s.H, s.H + 1, MORPH_MAX_HIDDEN, m->hidden);
        } else {
            deepen_kind dk;
            const int at = m->at == 0 ? s.L : m->at;
            if ((rc = deepen_kind_of(&s, &dk, e))) rc = rf_err_prefix(e, rc, "layer %d", k);
            else if (at < 1 || at > s.L)
                rc = rf_err_set(e, RF_EARG, "deepen: layer %d has %d hidden layers; the new one's index must be in [1, %d] (0: after the last), got %d",
                                k, s.L, s.L, m->at);
            else if (s.L + 1 > MORPH_MAX_DEPTH)
                rc = rf_err_set(e, RF_EARG, "deepen: layer %d already has %d hidden layers (at most %d)", k, s.L, MORPH_MAX_DEPTH);
        }
    }
    for (int k = 0; k < f->n_layers && !rc; k++) {
        if (!sel[k]) {
            rc = push_clone(&pl, f, k, e);
            continue;
        }
        const rf_layer *o = f->layers[k];
        net_shape s;
        if ((rc = cond_shape(o, &s, NULL, e))) break;
        rf_layer *l = widen ? edited_layer(o, "hidden", m->hidden, e) : edited_layer(o, "n_hidden", s.L + 1, e);
        if (!l) {
            rc = rf_err_prefix(e, e ? e->code : RF_EARG, "%s layer %d", who, k);
            break;
        }
        net_shape s2 = s;
        if (widen) s2.H = m->hidden;
        else s2.L = s.L + 1;
        float *q = net_n_params(&s2) == l->n_params ? param_buf(l->n_params, e) : NULL;
        if (!q) {
            if (net_n_params(&s2) != l->n_params)
                rc = rf_err_set(e, RF_ESTATE, "%s: layer %d: unexpected parameter count %zu (expected %zu)", who, k,
                                l->n_params, net_n_params(&s2));
            else rc = RF_ENOMEM;
            rf_layer_free(l);
            break;
        }
        const float *p = f->params + o->offset;
        if (widen) {
            rc = widen_params(&s, m->hidden, m->mode, m->init_scale, rng, p, q, e);
        } else {
            deepen_kind dk;
            deepen_kind_of(&s, &dk, NULL);
            deepen_params(&s, m->at == 0 ? s.L : m->at, dk, p, q);
        }
        if (!rc && l->ops->project) l->ops->project(l, q);
        if (rc) {
            rf_layer_free(l);
            free(q);
        } else {
            rc = plan_push(&pl, l, q, e);
        }
    }
    free(sel);
    if (rc) {
        plan_free(&pl);
        return NULL;
    }
    return plan_build(f, &pl, desc, e);
}

rf_flow *rf_morph_widen(const rf_flow *f, int target, int hidden, rf_morph_widen_mode mode, float init_scale,
                        rf_rng *rng, rf_err *e) {
    rf_morph m = {.op = RF_MORPH_WIDEN, .target = target, .hidden = hidden, .mode = mode, .init_scale = init_scale};
    return rf_morph_apply(f, &m, rng, e);
}

rf_flow *rf_morph_deepen(const rf_flow *f, int target, int at, rf_err *e) {
    rf_morph m = {.op = RF_MORPH_DEEPEN, .target = target, .at = at};
    return rf_morph_apply(f, &m, NULL, e);
}

void rf_morph_describe(const rf_morph *m, char *buf, size_t n) {
    char tg[32];
    if (m->target == -1) snprintf(tg, sizeof tg, "all");
    else snprintf(tg, sizeof tg, "layer %d", m->target);
    switch (m->op) {
    case RF_MORPH_INSERT:
        if (m->bins) snprintf(buf, n, "insert %s at %d (%d bins)", what_name(m->what), m->position, m->bins);
        else snprintf(buf, n, "insert %s at %d", what_name(m->what), m->position);
        break;
    case RF_MORPH_WIDEN:
        snprintf(buf, n, "widen %s to %d (%s)", tg, m->hidden, m->mode == RF_MORPH_WIDEN_NET2NET ? "net2net" : "zero");
        break;
    case RF_MORPH_DEEPEN:
        if (m->at) snprintf(buf, n, "deepen %s at %d", tg, m->at);
        else snprintf(buf, n, "deepen %s at end", tg);
        break;
    default:
        snprintf(buf, n, "unknown morphism %d", (int)m->op);
    }
}

rf_flow *rf_morph_apply(const rf_flow *f, const rf_morph *m, rf_rng *rng, rf_err *e) {
    if (!f || !m) {
        rf_err_set(e, RF_EARG, "morph: no flow or no morphism");
        return NULL;
    }
    if ((m->op == RF_MORPH_INSERT || m->op == RF_MORPH_WIDEN) && !rng) {
        rf_err_set(e, RF_EARG, "morph: %s needs an rng", m->op == RF_MORPH_INSERT ? "insert" : "widen");
        return NULL;
    }
    char desc[160];
    rf_morph_describe(m, desc, sizeof desc);
    switch (m->op) {
    case RF_MORPH_INSERT: return do_insert(f, m, rng, desc, e);
    case RF_MORPH_WIDEN:
    case RF_MORPH_DEEPEN: return do_widen_deepen(f, m, rng, desc, e);
    }
    rf_err_set(e, RF_EARG, "morph: unknown morphism %d", (int)m->op);
    return NULL;
}

/* ------------------------------------------------------------------ positions, random morphisms */

int rf_morph_block_position(const rf_flow *f, int scale, int block, int *position, int *n_blocks, rf_err *e) {
    int lo = 0, hi = f->n_layers;
    if (is_ts(f)) {
        int s = -1;
        lo = -1;
        for (int k = 0; k < f->n_layers; k++)
            if (is_squeeze(f->layers[k])) {
                if (++s == scale) lo = k + 1;
                else if (s == scale + 1) {
                    hi = k;
                    break;
                }
            }
        if (scale < 0 || lo < 0)
            return rf_err_set(e, RF_EARG, "block position: scale %d out of range [0, %d)", scale, s + 1);
    } else if (scale != 0) {
        return rf_err_set(e, RF_EARG, "block position: a %s flow has one scale (0), got %d", rf_flow_type_name(f->spec.type), scale);
    }
    int nb = 0, pos = -1;
    if (block == 0) pos = lo;
    for (int k = lo; k < hi; k++)
        if (is_conditioned(f->layers[k]) && ++nb == block) {
            pos = k + 1;
            /* keep a parameter-free permutation with the block it ends */
            if (pos < hi && !strcmp(layer_kind(f->layers[pos]), "permute")) pos++;
        }
    if (n_blocks) *n_blocks = nb;
    if (block < 0 || block > nb || pos < 0)
        return rf_err_set(e, RF_EARG, "block position: block %d out of range [0, %d]", block, nb);
    *position = pos;
    return RF_OK;
}

static int n_scales_of(const rf_flow *f) {
    if (!is_ts(f)) return 1;
    int s = 0;
    for (int k = 0; k < f->n_layers; k++) s += is_squeeze(f->layers[k]);
    return s > 0 ? s : 1;
}

int rf_morph_random(const rf_flow *f, const rf_morph_limits *lim, rf_rng *rng, rf_morph *m, rf_err *e) {
    static const rf_morph_limits none = {0};
    if (!lim) lim = &none;
    const unsigned ops = lim->ops ? lim->ops : (1u << RF_MORPH_N_OPS) - 1;
    const int max_h = lim->max_hidden > 0 ? lim->max_hidden : MORPH_MAX_HIDDEN;
    const int max_l = lim->max_n_hidden > 0 && lim->max_n_hidden < MORPH_MAX_DEPTH ? lim->max_n_hidden : MORPH_MAX_DEPTH;
    const double factor = lim->widen_factor > 1 ? lim->widen_factor : 1.5;
    const int nc = rf_morph_conditioned_layers(f, NULL);
    int *idx = malloc(sizeof(int) * (size_t)(nc > 0 ? nc : 1));
    net_shape *sh = malloc(sizeof(net_shape) * (size_t)(nc > 0 ? nc : 1));
    if (!idx || !sh) {
        free(idx);
        free(sh);
        return rf_err_set(e, RF_ENOMEM, "morph: out of memory");
    }
    rf_morph_conditioned_layers(f, idx);
    int rc = RF_OK;
    /* which ops can apply, and to which conditioners */
    int can_widen = 0, can_deepen = 0;
    for (int i = 0; i < nc && !rc; i++) {
        rc = cond_shape(f->layers[idx[i]], &sh[i], NULL, e);
        deepen_kind dk;
        if (!rc && sh[i].H < max_h) can_widen++;
        if (!rc && sh[i].L < max_l && deepen_kind_of(&sh[i], &dk, NULL) == RF_OK) can_deepen++;
    }
    rf_morph_layer kinds[3];
    const int block_len = block_layers(f, kinds);
    const int can_insert = nc > 0 && (lim->max_layers <= 0 || f->n_layers + block_len <= lim->max_layers);
    int cand[RF_MORPH_N_OPS], n_ops = 0;
    if (!rc && (ops & (1u << RF_MORPH_INSERT)) && can_insert) cand[n_ops++] = RF_MORPH_INSERT;
    if (!rc && (ops & (1u << RF_MORPH_WIDEN)) && can_widen) cand[n_ops++] = RF_MORPH_WIDEN;
    if (!rc && (ops & (1u << RF_MORPH_DEEPEN)) && can_deepen) cand[n_ops++] = RF_MORPH_DEEPEN;
    if (!rc && n_ops == 0) rc = rf_err_set(e, RF_EARG, "morph: no morphism applies within the limits");
    if (rc) goto done;
    memset(m, 0, sizeof *m);
    m->op = (rf_morph_op)cand[rf_rng_below(rng, (uint64_t)n_ops)];
    m->mode = lim->widen_mode;
    if (m->op == RF_MORPH_INSERT) {
        const int scale = (int)rf_rng_below(rng, (uint64_t)n_scales_of(f));
        int nb = 0, pos = 0;
        if ((rc = rf_morph_block_position(f, scale, 0, &pos, &nb, e))) goto done;
        if ((rc = rf_morph_block_position(f, scale, (int)rf_rng_below(rng, (uint64_t)nb + 1), &pos, NULL, e))) goto done;
        m->what = RF_MORPH_BLOCK;
        m->position = pos;
        goto done;
    }
    /* eligible conditioners for this op */
    int *el = malloc(sizeof(int) * (size_t)nc), ne = 0;
    if (!el) {
        rc = rf_err_set(e, RF_ENOMEM, "morph: out of memory");
        goto done;
    }
    for (int i = 0; i < nc; i++) {
        deepen_kind dk;
        if (m->op == RF_MORPH_WIDEN ? sh[i].H < max_h
                                     : sh[i].L < max_l && deepen_kind_of(&sh[i], &dk, NULL) == RF_OK)
            el[ne++] = i;
    }
    const int all = ne == nc && rf_rng_uniform(rng) < 0.5;
    const int one = el[rf_rng_below(rng, (uint64_t)ne)];
    m->target = all ? -1 : idx[one];
    if (m->op == RF_MORPH_WIDEN) {
        int H = 0;
        for (int i = 0; i < nc; i++)
            if (all || i == one) H = sh[i].H > H ? sh[i].H : H;
        int H2 = (int)ceil(H * factor);
        if (H2 <= H) H2 = H + 1;
        m->hidden = H2 < max_h ? H2 : max_h;
        m->init_scale = 1.0f;
    } else {
        int L = MORPH_MAX_DEPTH;
        for (int i = 0; i < nc; i++)
            if (all || i == one) L = sh[i].L < L ? sh[i].L : L;
        m->at = 1 + (int)rf_rng_below(rng, (uint64_t)L);
    }
    free(el);
done:
    free(idx);
    free(sh);
    return rc;
}

cJSON *rf_morph_arch_json(const rf_flow *f) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&f->spec));
    cJSON *a = cJSON_AddArrayToObject(j, "layers");
    for (int k = 0; k < f->n_layers && a; k++) cJSON_AddItemToArray(a, f->layers[k]->ops->to_json(f->layers[k]));
    cJSON_AddNumberToObject(j, "n_params", (double)f->n_params);
    return j;
}
