/* The flow container: spec -> layer stack + base distribution, one contiguous parameter
 * buffer and one gradient buffer, and the data standardisation in front. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "flow_internal.h"
#include "renflow/model.h"
#include "renflow/tsflow.h"

/* ts_flow.c: the multi-scale time-series stack */
int rf_tsflow_n_layers(const rf_flow_spec *s);
int rf_tsflow_add_layers(const rf_flow_spec *s, rf_rng *rng, rf_layer **out, int *k, rf_err *e);

static const char *const flow_names[] = {"realnvp", "glow", "maf", "nsf", "nsf-ar", "tsflow"};

const char *rf_flow_type_name(rf_flow_type t) {
    return (unsigned)t < sizeof flow_names / sizeof *flow_names ? flow_names[t] : "?";
}

int rf_flow_type_parse(const char *s, rf_flow_type *out) {
    for (size_t i = 0; i < sizeof flow_names / sizeof *flow_names; i++)
        if (strcmp(s, flow_names[i]) == 0) {
            *out = (rf_flow_type)i;
            return RF_OK;
        }
    return RF_EARG;
}

void rf_flow_spec_default(rf_flow_spec *s, rf_flow_type type, int D) {
    memset(s, 0, sizeof *s);
    s->type = type;
    s->D = D;
    s->blocks = 5;
    s->hidden = 64;
    s->n_hidden = 2;
    s->act = RF_ACT_RELU;
    s->residual = 0;
    s->bins = 8;
    s->bound = 5.0f;
    s->clamp = 3.0f;
    s->base = RF_BASE_NORMAL;
    s->n_classes = 0;
    /* tsflow: one channel of D samples, as many scales (up to 3) as D's factors of 2 allow */
    s->channels = 1;
    s->length = D;
    s->scales = 1;
    if (type == RF_FLOW_TS)
        while (s->scales < 3 && D % (2 << s->scales) == 0 && D / (2 << s->scales) >= 2) s->scales++;
    s->kernel = 3;
    s->dilation = 1;
    s->spline = 0;
}

static int ts_spec_check(const rf_flow_spec *s, rf_err *e) {
    if (s->channels < 1 || s->length < 2 || (long long)s->channels * s->length != s->D)
        return rf_err_set(e, RF_EARG,
                          "tsflow: channels x length must equal the dimension with channels >= 1 "
                          "and length >= 2, got %d x %d for dimension %d", s->channels, s->length, s->D);
    if (s->scales < 1 || s->scales > RF_TS_MAX_SCALES)
        return rf_err_set(e, RF_EARG, "tsflow: scales must be in [1, %d], got %d", RF_TS_MAX_SCALES, s->scales);
    if (s->length % (1 << s->scales) != 0)
        return rf_err_set(e, RF_EARG,
                          "tsflow: length %d is not divisible by 2^scales = %d (each scale halves "
                          "the length); use fewer scales or another window length",
                          s->length, 1 << s->scales);
    if (s->kernel < 1 || s->kernel > 63 || s->kernel % 2 == 0)
        return rf_err_set(e, RF_EARG, "tsflow: kernel must be odd and in [1, 63], got %d", s->kernel);
    if (s->dilation < 1 || s->dilation > 4096)
        return rf_err_set(e, RF_EARG, "tsflow: dilation must be in [1, 4096], got %d", s->dilation);
    if (s->spline != 0 && s->spline != 1)
        return rf_err_set(e, RF_EARG, "tsflow: coupling transform must be 0 (affine) or 1 (spline), got %d", s->spline);
    return RF_OK;
}

int rf_flow_spec_check(const rf_flow_spec *s, rf_err *e) {
    if ((unsigned)s->type > RF_FLOW_TS)
        return rf_err_set(e, RF_EARG, "unknown flow type %d", (int)s->type);
    if (s->D < 1 || s->D > 100000) return rf_err_set(e, RF_EARG, "dimension must be in [1, 100000], got %d", s->D);
    if ((s->type == RF_FLOW_REALNVP || s->type == RF_FLOW_GLOW || s->type == RF_FLOW_NSF) && s->D < 2)
        return rf_err_set(e, RF_EARG, "flow %s needs at least 2 dimensions (got %d); use maf or nsf-ar",
                          rf_flow_type_name(s->type), s->D);
    if (s->blocks < 1 || s->blocks > 1000) return rf_err_set(e, RF_EARG, "blocks must be in [1, 1000], got %d", s->blocks);
    if (s->hidden < 1 || s->hidden > 65536) return rf_err_set(e, RF_EARG, "hidden must be in [1, 65536], got %d", s->hidden);
    if (s->n_hidden < 1 || s->n_hidden > 64) return rf_err_set(e, RF_EARG, "hidden layers must be in [1, 64], got %d", s->n_hidden);
    if (s->bins < 2 || s->bins > 64) return rf_err_set(e, RF_EARG, "bins must be in [2, 64], got %d", s->bins);
    if (!(s->bound > 0 && s->bound < 1e4f)) return rf_err_set(e, RF_EARG, "bound must be in (0, 1e4), got %g", (double)s->bound);
    if (!(s->clamp >= 0 && s->clamp < 100)) return rf_err_set(e, RF_EARG, "clamp must be in [0, 100), got %g", (double)s->clamp);
    if (s->base == RF_BASE_CLASS && (s->n_classes < 2 || s->n_classes > 1000))
        return rf_err_set(e, RF_EARG, "class-conditional base needs 2..1000 classes, got %d", s->n_classes);
    if ((unsigned)s->perm > RF_PERM_NONE) return rf_err_set(e, RF_EARG, "unknown permutation kind %d", (int)s->perm);
    if (s->no_actnorm != 0 && s->no_actnorm != 1) return rf_err_set(e, RF_EARG, "no_actnorm must be 0 or 1, got %d", s->no_actnorm);
    if (s->type == RF_FLOW_TS && s->perm != RF_PERM_DEFAULT && s->perm != RF_PERM_LU)
        return rf_err_set(e, RF_EARG, "tsflow: permutation \"%s\" is not available (its blocks mix channels with a "
                          "learned 1x1 convolution: lu)", rf_perm_kind_name(s->perm));
    if (s->type == RF_FLOW_TS) return ts_spec_check(s, e);
    return RF_OK;
}

static const char *const PERM_NAMES[] = {"default", "lu", "reverse", "random", "none"};

const char *rf_perm_kind_name(rf_perm_kind p) {
    return (unsigned)p <= RF_PERM_NONE ? PERM_NAMES[p] : "?";
}

int rf_perm_kind_parse(const char *s, rf_perm_kind *out) {
    for (int k = 0; k <= RF_PERM_NONE; k++)
        if (s && !strcmp(s, PERM_NAMES[k])) {
            *out = (rf_perm_kind)k;
            return RF_OK;
        }
    return RF_EARG;
}

rf_perm_kind rf_flow_spec_perm(const rf_flow_spec *s) {
    if (s->perm != RF_PERM_DEFAULT) return s->perm;
    switch (s->type) {
    case RF_FLOW_REALNVP: return RF_PERM_NONE;
    case RF_FLOW_MAF: return RF_PERM_REVERSE;
    default: return RF_PERM_LU;
    }
}

/* The block's linear / permutation layer (NULL with *none = 1 for RF_PERM_NONE). */
static rf_layer *perm_layer(rf_perm_kind p, int D, rf_rng *rng, rf_err *e) {
    switch (p) {
    case RF_PERM_LU: return rf_lu_linear_create(D, rng, e);
    case RF_PERM_REVERSE: return rf_reverse_create(D, e);
    case RF_PERM_RANDOM: {
        int *perm = malloc(sizeof(int) * (size_t)D);
        if (!perm) {
            rf_err_set(e, RF_ENOMEM, "out of memory");
            return NULL;
        }
        for (int j = 0; j < D; j++) perm[j] = j;
        rf_rng_shuffle(rng, perm, D);
        rf_layer *l = rf_permute_create(D, perm, e);
        free(perm);
        return l;
    }
    default:
        rf_err_set(e, RF_EARG, "no permutation layer for \"%s\"", rf_perm_kind_name(p));
        return NULL;
    }
}

/* Appends the layers of one block to out[*k]: [ActNorm] [permutation] transform, except maf
 * (by default), whose permutation follows its MADE layer. */
static int add_block(const rf_flow_spec *s, int b, rf_rng *rng, rf_layer **out, int *k, rf_err *e) {
    const int D = s->D;
    const rf_perm_kind perm = rf_flow_spec_perm(s);
    rf_mlp_cfg cond = {.hidden = s->hidden, .n_hidden = s->n_hidden, .act = s->act, .residual = s->residual};
    rf_coupling_cfg cc = {.D = D, .parity = perm == RF_PERM_NONE ? b % 2 : 0, .cond = cond,
                          .clamp = s->clamp, .bins = s->bins, .bound = s->bound};
    rf_ar_cfg ac = {.D = D, .made = {.hidden = s->hidden, .n_hidden = s->n_hidden, .act = s->act, .residual = s->residual},
                    .clamp = s->clamp, .bins = s->bins, .bound = s->bound};
#define ADD(expr)                                   \
    do {                                            \
        if (!(out[*k] = (expr))) return e ? e->code : RF_EARG; \
        (*k)++;                                     \
    } while (0)
    if (!s->no_actnorm) ADD(rf_actnorm_create(D, e));
    const int perm_after = s->type == RF_FLOW_MAF;
    if (perm != RF_PERM_NONE && !perm_after) ADD(perm_layer(perm, D, rng, e));
    switch (s->type) {
    case RF_FLOW_REALNVP:
    case RF_FLOW_GLOW:
        ADD(rf_affine_coupling_create(&cc, e));
        break;
    case RF_FLOW_MAF:
        ADD(rf_maf_affine_create(&ac, e));
        break;
    case RF_FLOW_NSF:
        ADD(rf_spline_coupling_create(&cc, e));
        break;
    case RF_FLOW_NSF_AR:
        ADD(rf_maf_spline_create(&ac, e));
        break;
    case RF_FLOW_TS: /* built by rf_tsflow_add_layers */
        break;
    }
    if (perm != RF_PERM_NONE && perm_after) ADD(perm_layer(perm, D, rng, e));
#undef ADD
    return RF_OK;
}

/* Assigns offsets, allocates parameters, gradients and standardisation. */
static int flow_finish(rf_flow *f, rf_err *e) {
    size_t off = 0;
    for (int k = 0; k < f->n_layers; k++) {
        f->layers[k]->offset = off;
        off += f->layers[k]->n_params;
    }
    f->base.offset = off;
    off += f->base.n_params;
    f->n_params = off;
    f->params = rf_floats(off, e);
    f->grads = rf_floats(off, e);
    f->shift = rf_floats((size_t)f->D, e);
    f->scale = rf_floats((size_t)f->D, e);
    if (!f->params || !f->grads || !f->shift || !f->scale) return e ? e->code : RF_ENOMEM;
    for (int j = 0; j < f->D; j++) f->scale[j] = 1.0f;
    return RF_OK;
}

rf_flow *rf_flow_alloc_layers(const rf_flow_spec *spec, int n_layers, rf_err *e) {
    rf_flow *f = rf_zalloc(sizeof *f, e);
    if (!f) return NULL;
    f->spec = *spec;
    f->D = spec->D;
    f->layers = rf_zalloc(sizeof(rf_layer *) * (size_t)(n_layers > 0 ? n_layers : 1), e);
    if (!f->layers) {
        free(f);
        return NULL;
    }
    return f;
}

/* Latent channel of every dimension of a tsflow latent (see tsflow.h): the variables factored
 * out at scale s, z[D / 2^(s+1) .. D / 2^s) (the last scale: z[0 .. D / 2^(S-1))), are channels
 * of T / 2^(s+1) samples each, channel-major. */
static int ts_time_groups(const rf_flow_spec *s, int *group) {
    const int D = s->D, S = s->scales;
    int g = 0;
    for (int k = S - 1; k >= 0; k--) {
        const int lo = k == S - 1 ? 0 : D >> (k + 1), hi = D >> k, len = s->length >> (k + 1);
        for (int j = lo; j < hi; j++) group[j] = g + (j - lo) / len;
        g += (hi - lo) / len;
    }
    return g;
}

int rf_flow_assemble(rf_flow *f, rf_err *e) {
    int rc = rf_base_init(&f->base, f->spec.base, f->D, f->spec.n_classes, e);
    if (rc) return rc;
    if (f->spec.type == RF_FLOW_TS && f->spec.base == RF_BASE_CLASS && f->spec.class_tie) {
        int *g = malloc(sizeof(int) * (size_t)f->D);
        if (!g) return rf_err_set(e, RF_ENOMEM, "out of memory");
        const int G = ts_time_groups(&f->spec, g);
        rc = rf_base_set_groups(&f->base, g, G, e);
        free(g);
        if (rc) return rc;
    }
    return flow_finish(f, e);
}

rf_flow *rf_flow_create(const rf_flow_spec *spec, rf_rng *rng, rf_err *e) {
    if (rf_flow_spec_check(spec, e) != RF_OK) return NULL;
    const int ts = spec->type == RF_FLOW_TS;
    rf_flow *f = rf_flow_alloc_layers(spec, ts ? rf_tsflow_n_layers(spec) : 3 * spec->blocks, e);
    if (!f) return NULL;
    f->seed = rng->seed;
    if (ts) {
        if (rf_tsflow_add_layers(spec, rng, f->layers, &f->n_layers, e) != RF_OK) {
            rf_flow_free(f);
            return NULL;
        }
    } else {
        for (int b = 0; b < spec->blocks; b++)
            if (add_block(spec, b, rng, f->layers, &f->n_layers, e) != RF_OK) {
                rf_flow_free(f);
                return NULL;
            }
    }
    if (rf_flow_assemble(f, e) != RF_OK) {
        rf_flow_free(f);
        return NULL;
    }
    for (int k = 0; k < f->n_layers; k++) {
        rf_layer *l = f->layers[k];
        if (l->ops->init_params) l->ops->init_params(l, f->params + l->offset, rng);
    }
    rf_base_init_params(&f->base, f->params + f->base.offset, rng);
    return f;
}

void rf_flow_free(rf_flow *f) {
    if (!f) return;
    for (int k = 0; k < f->n_layers; k++) rf_layer_free(f->layers[k]);
    free(f->layers);
    rf_free(f->params);
    rf_free(f->grads);
    rf_free(f->shift);
    rf_free(f->scale);
    rf_free(f->adapt_mean);
    rf_free(f->adapt_log_scale);
    rf_base_free(&f->base);
    cJSON_Delete(f->meta);
    free(f);
}

cJSON *rf_flow_spec_to_json(const rf_flow_spec *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "flow", rf_flow_type_name(s->type));
    cJSON_AddNumberToObject(j, "dim", s->D);
    cJSON_AddNumberToObject(j, "blocks", s->blocks);
    cJSON_AddNumberToObject(j, "hidden", s->hidden);
    cJSON_AddNumberToObject(j, "n_hidden", s->n_hidden);
    cJSON_AddStringToObject(j, "act", rf_act_name(s->act));
    cJSON_AddBoolToObject(j, "residual", s->residual);
    cJSON_AddNumberToObject(j, "bins", s->bins);
    cJSON_AddNumberToObject(j, "bound", s->bound);
    cJSON_AddNumberToObject(j, "clamp", s->clamp);
    cJSON_AddStringToObject(j, "base", rf_base_kind_name(s->base));
    cJSON_AddNumberToObject(j, "n_classes", s->n_classes);
    if (s->perm != RF_PERM_DEFAULT) cJSON_AddStringToObject(j, "permutation", rf_perm_kind_name(s->perm));
    if (s->no_actnorm) cJSON_AddBoolToObject(j, "actnorm", 0);
    if (s->type == RF_FLOW_TS) {
        cJSON_AddNumberToObject(j, "channels", s->channels);
        cJSON_AddNumberToObject(j, "length", s->length);
        cJSON_AddNumberToObject(j, "scales", s->scales);
        cJSON_AddNumberToObject(j, "kernel", s->kernel);
        cJSON_AddNumberToObject(j, "dilation", s->dilation);
        cJSON_AddStringToObject(j, "transform", s->spline ? "spline" : "affine");
        if (s->base == RF_BASE_CLASS) cJSON_AddStringToObject(j, "class_tie", s->class_tie ? "time" : "none");
    }
    return j;
}

int rf_flow_spec_from_json(const cJSON *j, rf_flow_spec *s, rf_err *e) {
    const char *flow, *act, *base;
    double bound, clamp;
    memset(s, 0, sizeof *s);
    int rc = rf_json_get_string(j, "flow", &flow, e);
    if (!rc) rc = rf_json_get_int(j, "dim", &s->D, e);
    if (!rc) rc = rf_json_get_int(j, "blocks", &s->blocks, e);
    if (!rc) rc = rf_json_get_int(j, "hidden", &s->hidden, e);
    if (!rc) rc = rf_json_get_int(j, "n_hidden", &s->n_hidden, e);
    if (!rc) rc = rf_json_get_string(j, "act", &act, e);
    if (!rc) rc = rf_json_get_int(j, "bins", &s->bins, e);
    if (!rc) rc = rf_json_get_number(j, "bound", &bound, e);
    if (!rc) rc = rf_json_get_number(j, "clamp", &clamp, e);
    if (!rc) rc = rf_json_get_string(j, "base", &base, e);
    if (!rc) rc = rf_json_get_int(j, "n_classes", &s->n_classes, e);
    if (rc) return rc;
    s->bound = (float)bound;
    s->clamp = (float)clamp;
    s->residual = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "residual"));
    if (rf_flow_type_parse(flow, &s->type)) return rf_err_set(e, RF_EFORMAT, "field \"flow\": unknown flow type \"%s\"", flow);
    if (rf_act_parse(act, &s->act)) return rf_err_set(e, RF_EFORMAT, "field \"act\": unknown activation \"%s\"", act);
    if (rf_base_kind_parse(base, &s->base)) return rf_err_set(e, RF_EFORMAT, "field \"base\": unknown base \"%s\"", base);
    /* absent in older files: the type's permutation, ActNorm on */
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(j, "permutation");
    if (pm && (!cJSON_IsString(pm) || rf_perm_kind_parse(pm->valuestring, &s->perm) != RF_OK))
        return rf_err_set(e, RF_EFORMAT, "field \"permutation\": expected default, lu, reverse, random or none");
    const cJSON *an = cJSON_GetObjectItemCaseSensitive(j, "actnorm");
    if (an && !cJSON_IsBool(an)) return rf_err_set(e, RF_EFORMAT, "field \"actnorm\": expected true or false");
    s->no_actnorm = an && cJSON_IsFalse(an);
    /* tsflow fields: absent in files of the other types (and of older versions), which get the
     * defaults; a tsflow must name its window shape, the conv settings default to 3 / 1 / affine */
    s->channels = 1;
    s->length = s->D;
    s->scales = 1;
    s->kernel = 3;
    s->dilation = 1;
    s->spline = 0;
    if (s->type == RF_FLOW_TS) {
        rc = rf_json_get_int(j, "channels", &s->channels, e);
        if (!rc) rc = rf_json_get_int(j, "length", &s->length, e);
        if (!rc) rc = rf_json_get_int(j, "scales", &s->scales, e);
        if (!rc && cJSON_GetObjectItemCaseSensitive(j, "kernel")) rc = rf_json_get_int(j, "kernel", &s->kernel, e);
        if (!rc && cJSON_GetObjectItemCaseSensitive(j, "dilation")) rc = rf_json_get_int(j, "dilation", &s->dilation, e);
        if (rc) return rf_err_prefix(e, RF_EFORMAT, "tsflow spec");
        const cJSON *tr = cJSON_GetObjectItemCaseSensitive(j, "transform");
        if (tr) {
            if (!cJSON_IsString(tr) || (strcmp(tr->valuestring, "affine") && strcmp(tr->valuestring, "spline")))
                return rf_err_set(e, RF_EFORMAT, "tsflow spec: field \"transform\": expected \"affine\" or \"spline\"");
            s->spline = strcmp(tr->valuestring, "spline") == 0;
        }
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "class_tie");
        if (ct) {
            if (!cJSON_IsString(ct) || (strcmp(ct->valuestring, "none") && strcmp(ct->valuestring, "time")))
                return rf_err_set(e, RF_EFORMAT, "tsflow spec: field \"class_tie\": expected \"none\" or \"time\"");
            s->class_tie = strcmp(ct->valuestring, "time") == 0;
        }
    }
    return rf_flow_spec_check(s, e);
}
