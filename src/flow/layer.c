/* The layer shell, transform JSON helpers, and rebuilding a layer from its JSON description. */
#include "renflow/flow.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "xform.h"

rf_layer *rf_layer_new(const rf_layer_ops *ops, int dim, size_t n_params, void *impl, rf_err *e) {
    rf_layer *l = rf_zalloc(sizeof *l, e);
    if (!l) return NULL;
    l->ops = ops;
    l->dim = dim;
    l->n_params = n_params;
    l->impl = impl;
    return l;
}

void rf_layer_free(rf_layer *l) {
    if (!l) return;
    if (l->ops && l->ops->free_impl) l->ops->free_impl(l->impl);
    free(l);
}

void rf_xform_to_json(const rf_xform *t, cJSON *j) {
    cJSON_AddStringToObject(j, "transform", t->kind == RF_XFORM_AFFINE ? "affine" : "rqs");
    if (t->kind == RF_XFORM_AFFINE) {
        cJSON_AddNumberToObject(j, "clamp", t->clamp);
    } else {
        cJSON_AddNumberToObject(j, "bins", t->bins);
        cJSON_AddNumberToObject(j, "bound", t->bound);
    }
}

int rf_xform_check(const rf_xform *t, rf_err *e) {
    if (t->kind == RF_XFORM_RQS) {
        if (t->bins < 2 || t->bins > 64)
            return rf_err_set(e, RF_EARG, "spline bins must be in [2, 64], got %d", t->bins);
        if (!(t->bound > 0 && t->bound < 1e4f))
            return rf_err_set(e, RF_EARG, "spline bound must be in (0, 1e4), got %g",
                              (double)t->bound);
    } else if (!(t->clamp >= 0 && t->clamp < 100)) {
        return rf_err_set(e, RF_EARG, "affine clamp must be in [0, 100), got %g",
                          (double)t->clamp);
    }
    return RF_OK;
}

int rf_xform_from_json(const cJSON *j, rf_xform *t, rf_err *e) {
    const char *kind = NULL;
    int rc = rf_json_get_string(j, "transform", &kind, e);
    if (rc) return rc;
    memset(t, 0, sizeof *t);
    if (strcmp(kind, "affine") == 0) {
        t->kind = RF_XFORM_AFFINE;
        double c;
        if ((rc = rf_json_get_number(j, "clamp", &c, e))) return rc;
        t->clamp = (float)c;
    } else if (strcmp(kind, "rqs") == 0) {
        t->kind = RF_XFORM_RQS;
        double b;
        if ((rc = rf_json_get_int(j, "bins", &t->bins, e))) return rc;
        if ((rc = rf_json_get_number(j, "bound", &b, e))) return rc;
        t->bound = (float)b;
    } else {
        return rf_err_set(e, RF_EFORMAT, "field \"transform\": unknown value \"%s\"", kind);
    }
    return rf_xform_check(t, e);
}

/* Layer kinds that can be rebuilt from JSON; each file provides its loader. */
rf_layer *rf_actnorm_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_permute_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_lu_linear_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_coupling_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_autoregressive_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_ts_squeeze_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_ts_actnorm_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_ts_conv1x1_from_json(const cJSON *j, int dim, rf_err *e);
rf_layer *rf_ts_coupling_from_json(const cJSON *j, int dim, rf_err *e);

rf_layer *rf_layer_from_json(const cJSON *j, rf_err *e) {
    const char *kind = NULL;
    int dim = 0;
    if (!cJSON_IsObject(j)) {
        rf_err_set(e, RF_EFORMAT, "layer description is not a JSON object");
        return NULL;
    }
    if (rf_json_get_string(j, "kind", &kind, e) || rf_json_get_int(j, "dim", &dim, e))
        return NULL;
    if (dim < 1 || dim > 1 << 20) {
        rf_err_set(e, RF_EFORMAT, "layer \"%s\": field \"dim\" out of range: %d", kind, dim);
        return NULL;
    }
    static const struct {
        const char *kind;
        rf_layer *(*load)(const cJSON *, int, rf_err *);
    } table[] = {{"actnorm", rf_actnorm_from_json},
                 {"permute", rf_permute_from_json},
                 {"lu_linear", rf_lu_linear_from_json},
                 {"coupling", rf_coupling_from_json},
                 {"autoregressive", rf_autoregressive_from_json},
                 {"ts_squeeze", rf_ts_squeeze_from_json},
                 {"ts_actnorm", rf_ts_actnorm_from_json},
                 {"ts_conv1x1", rf_ts_conv1x1_from_json},
                 {"ts_coupling", rf_ts_coupling_from_json}};
    for (size_t i = 0; i < sizeof table / sizeof *table; i++)
        if (strcmp(kind, table[i].kind) == 0) return table[i].load(j, dim, e);
    rf_err_set(e, RF_EFORMAT, "field \"kind\": unknown layer kind \"%s\"", kind);
    return NULL;
}
