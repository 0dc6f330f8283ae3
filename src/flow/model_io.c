/* The .rf model file: magic, format version, architecture JSON, parameters, standardisation,
 * SHA-256. Written atomically; every field is checked on load. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "flow_internal.h"
#include "renflow/adapt.h"
#include "renflow/model.h"

static const unsigned char MAGIC[8] = {'R', 'E', 'N', 'F', 'L', 'O', 'W', 0};

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static char *header_json(const rf_flow *f) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "renflow-model");
    cJSON_AddStringToObject(j, "library_version", RF_VERSION_STRING);
    cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&f->spec));
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int k = 0; k < f->n_layers; k++) cJSON_AddItemToArray(layers, f->layers[k]->ops->to_json(f->layers[k]));
    cJSON_AddNumberToObject(j, "n_params", (double)f->n_params);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)f->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    if (f->meta) cJSON_AddItemToObject(j, "meta", cJSON_Duplicate(f->meta, 1));
    if (f->adapt_mean && f->adapt_log_scale) {
        const int G = rf_adapt_n_groups(f);
        cJSON *a = cJSON_AddObjectToObject(j, "subject_adapt");
        cJSON_AddNumberToObject(a, "groups", G);
        cJSON_AddItemToObject(a, "mean", cJSON_CreateFloatArray(f->adapt_mean, G));
        cJSON_AddItemToObject(a, "log_scale", cJSON_CreateFloatArray(f->adapt_log_scale, G));
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

int rf_flow_to_bytes(const rf_flow *f, unsigned char **out, size_t *out_len, rf_err *e) {
    char *js = header_json(f);
    if (!js) return rf_err_set(e, RF_ENOMEM, "cannot serialise the model header");
    const size_t jl = strlen(js), D = (size_t)f->D;
    const size_t body = 16 + jl + 8 + 4 * (f->n_params + 2 * D);
    unsigned char *buf = malloc(body + 32);
    if (!buf) {
        free(js);
        return rf_err_set(e, RF_ENOMEM, "out of memory serialising the model");
    }
    unsigned char *p = buf;
    memcpy(p, MAGIC, 8);
    put_u32(p + 8, f->adapt_mean ? 2u : 1u); /* version 2 only for the fields it added */
    put_u32(p + 12, (uint32_t)jl);
    memcpy(p + 16, js, jl);
    p += 16 + jl;
    put_u64(p, f->n_params);
    p += 8;
    memcpy(p, f->params, 4 * f->n_params); /* little-endian hosts only (checked at build) */
    p += 4 * f->n_params;
    memcpy(p, f->shift, 4 * D);
    p += 4 * D;
    memcpy(p, f->scale, 4 * D);
    rf_sha256(buf, body, buf + body);
    free(js);
    *out = buf;
    *out_len = body + 32;
    return RF_OK;
}

int rf_flow_save(const rf_flow *f, const char *path, rf_err *e) {
    unsigned char *buf;
    size_t len;
    int rc = rf_flow_to_bytes(f, &buf, &len, e);
    if (rc) return rf_err_prefix(e, rc, "%s", path);
    rc = rf_write_file_atomic(path, buf, len, e);
    free(buf);
    return rc;
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "renflow model files assume a little-endian host");

/* "subject_adapt": {"groups": G, "mean": [G], "log_scale": [G]} (renflow/adapt.h), optional. */
static int adapt_from_header(rf_flow *f, const cJSON *a, const char *name, rf_err *e) {
    if (!a) return RF_OK;
    const int G = rf_adapt_n_groups(f);
    double g = 0;
    if (!cJSON_IsObject(a) || rf_json_get_number(a, "groups", &g, e) != RF_OK || g != G)
        return rf_err_set(e, RF_EFORMAT, "%s: header field subject_adapt.groups must be %d (the model's latent groups)%s",
                          name, G, cJSON_IsObject(a) ? "" : "; subject_adapt is not an object");
    static const char *const keys[2] = {"mean", "log_scale"};
    float *out[2] = {rf_floats((size_t)G, e), rf_floats((size_t)G, e)};
    if (!out[0] || !out[1]) {
        rf_free(out[0]);
        rf_free(out[1]);
        return e ? e->code : RF_ENOMEM;
    }
    for (int k = 0; k < 2; k++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(a, keys[k]);
        int bad = !cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != G, i = 0;
        const cJSON *v;
        if (!bad) cJSON_ArrayForEach(v, arr) {
                if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || fabs(v->valuedouble) > 1e30) {
                    bad = 1;
                    break;
                }
                out[k][i++] = (float)v->valuedouble;
            }
        if (bad) {
            rf_free(out[0]);
            rf_free(out[1]);
            return rf_err_set(e, RF_EFORMAT, "%s: header field subject_adapt.%s must be an array of %d finite numbers", name,
                              keys[k], G);
        }
    }
    f->adapt_mean = out[0];
    f->adapt_log_scale = out[1];
    return RF_OK;
}

static rf_flow *flow_from_header(const cJSON *h, const char *name, rf_err *e) {
    rf_flow_spec spec;
    if (rf_flow_spec_from_json(cJSON_GetObjectItemCaseSensitive(h, "spec"), &spec, e) != RF_OK) {
        rf_err_prefix(e, RF_EFORMAT, "%s: header \"spec\"", name);
        return NULL;
    }
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(h, "layers");
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) < 1 || cJSON_GetArraySize(layers) > 100000) {
        rf_err_set(e, RF_EFORMAT, "%s: header field \"layers\" missing or not a non-empty array", name);
        return NULL;
    }
    rf_flow *f = rf_flow_alloc_layers(&spec, cJSON_GetArraySize(layers), e);
    if (!f) return NULL;
    const cJSON *lj;
    cJSON_ArrayForEach(lj, layers) {
        rf_layer *l = rf_layer_from_json(lj, e);
        if (!l) {
            rf_err_prefix(e, RF_EFORMAT, "%s: layer %d", name, f->n_layers);
            rf_flow_free(f);
            return NULL;
        }
        f->layers[f->n_layers++] = l;
        if (l->dim != spec.D) {
            rf_err_set(e, RF_EFORMAT, "%s: layer %d has dim %d but the model has %d", name, f->n_layers - 1, l->dim, spec.D);
            rf_flow_free(f);
            return NULL;
        }
    }
    if (rf_flow_assemble(f, e) != RF_OK) {
        rf_flow_free(f);
        return NULL;
    }
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(h, "seed");
    if (cJSON_IsString(seed)) f->seed = strtoull(seed->valuestring, NULL, 10);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(h, "meta");
    if (meta) f->meta = cJSON_Duplicate(meta, 1);
    if (adapt_from_header(f, cJSON_GetObjectItemCaseSensitive(h, "subject_adapt"), name, e) != RF_OK) {
        rf_flow_free(f);
        return NULL;
    }
    return f;
}

rf_flow *rf_flow_load_mem(const unsigned char *buf, size_t len, const char *name, rf_err *e) {
    if (len < 16 || memcmp(buf, MAGIC, 8) != 0) {
        rf_err_set(e, RF_EFORMAT, "%s: not a renflow model file (%s)", name,
                   len < 16 ? "file too short for the header" : "bad magic bytes");
        return NULL;
    }
    const uint32_t version = get_u32(buf + 8), jl = get_u32(buf + 12);
    if (version == 0 || version > RF_MODEL_FORMAT_VERSION) {
        rf_err_set(e, RF_EFORMAT, "%s: model format version %u is not supported (this renflow %s reads version 1..%u)%s",
                   name, version, RF_VERSION_STRING, RF_MODEL_FORMAT_VERSION,
                   version > RF_MODEL_FORMAT_VERSION ? "; the file was written by a newer renflow" : "");
        return NULL;
    }
    if ((size_t)jl > len - 16 || len - 16 - jl < 8 + 32) {
        rf_err_set(e, RF_EFORMAT, "%s: truncated: header length field is %u bytes but the file has %zu bytes", name, jl, len);
        return NULL;
    }
    cJSON *h = cJSON_ParseWithLength((const char *)buf + 16, jl);
    if (!h) {
        /* a damaged header: report the checksum when it is the cause */
        uint8_t md[32];
        rf_sha256(buf, len - 32, md);
        rf_err_set(e, RF_EFORMAT, "%s: header is not valid JSON%s", name,
                   memcmp(md, buf + len - 32, 32) ? " (checksum mismatch: the file is corrupted)" : "");
        return NULL;
    }
    rf_flow *f = NULL;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(h, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "renflow-model") != 0) {
        rf_err_set(e, RF_EFORMAT, "%s: header field \"format\" is not \"renflow-model\"", name);
        goto done;
    }
    const unsigned char *p = buf + 16 + jl;
    const uint64_t np = get_u64(p);
    if (np > (uint64_t)1 << 34) {
        rf_err_set(e, RF_EFORMAT, "%s: field n_params out of range: %llu", name, (unsigned long long)np);
        goto done;
    }
    double D = 0;
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(h, "spec");
    if (rf_json_get_number(spec, "dim", &D, e) != RF_OK || D < 1 || D > 100000) {
        rf_err_set(e, RF_EFORMAT, "%s: header field spec.dim missing or out of range", name);
        goto done;
    }
    const size_t expect = 16 + (size_t)jl + 8 + 4 * ((size_t)np + 2 * (size_t)D) + 32;
    if (len != expect) {
        rf_err_set(e, RF_EFORMAT, "%s: %s: expected %zu bytes for %llu parameters, the file has %zu", name,
                   len < expect ? "truncated" : "trailing data", expect, (unsigned long long)np, len);
        goto done;
    }
    uint8_t md[32];
    rf_sha256(buf, len - 32, md);
    if (memcmp(md, buf + len - 32, 32) != 0) {
        rf_err_set(e, RF_EFORMAT, "%s: checksum mismatch: the file is corrupted", name);
        goto done;
    }
    if (version < 2 && cJSON_GetObjectItemCaseSensitive(h, "subject_adapt")) {
        rf_err_set(e, RF_EFORMAT, "%s: header field subject_adapt in a format version %u file (it needs version 2)", name, version);
        goto done;
    }
    f = flow_from_header(h, name, e);
    if (!f) goto done;
    if (f->n_params != np) {
        rf_err_set(e, RF_EFORMAT, "%s: architecture needs %zu parameters but the file stores %llu", name, f->n_params,
                   (unsigned long long)np);
        rf_flow_free(f);
        f = NULL;
        goto done;
    }
    p += 8;
    memcpy(f->params, p, 4 * np);
    memcpy(f->shift, p + 4 * np, 4 * (size_t)f->D);
    memcpy(f->scale, p + 4 * np + 4 * (size_t)f->D, 4 * (size_t)f->D);
    if (!rf_all_finite(f->params, np) || !rf_all_finite(f->shift, f->D) || !rf_all_finite(f->scale, f->D)) {
        rf_err_set(e, RF_EFORMAT, "%s: parameters contain NaN or Inf", name);
        rf_flow_free(f);
        f = NULL;
        goto done;
    }
    for (int j = 0; j < f->D; j++)
        if (!(f->scale[j] > 0)) {
            rf_err_set(e, RF_EFORMAT, "%s: standardisation scale[%d] = %g is not positive", name, j, (double)f->scale[j]);
            rf_flow_free(f);
            f = NULL;
            goto done;
        }
    for (int k = 0; k < f->n_layers; k++) {
        rf_layer *l = f->layers[k];
        if (l->ops->project) l->ops->project(l, f->params + l->offset);
    }
done:
    cJSON_Delete(h);
    return f;
}

rf_flow *rf_flow_load(const char *path, rf_err *e) {
    unsigned char *buf;
    size_t len;
    if (rf_read_file(path, &buf, &len, e) != RF_OK) return NULL;
    rf_flow *f = rf_flow_load_mem(buf, len, path, e);
    free(buf);
    return f;
}
