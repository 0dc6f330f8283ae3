/* Checkpoints for exact resume (see checkpoint.h for the layout). */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"

static const char CK_MAGIC[8] = {'R', 'F', 'C', 'K', 'P', 'T', '0', '1'};

static cJSON *state_json(const rf_adam *a, const rf_train_state *s) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "epoch", s->epoch);
    cJSON_AddNumberToObject(j, "batch_pos", (double)s->batch_pos);
    cJSON_AddNumberToObject(j, "step", (double)s->step);
    cJSON_AddNumberToObject(j, "adam_step", (double)a->step);
    char buf[32];
    cJSON *r = cJSON_AddArrayToObject(j, "epoch_rng");
    for (int i = 0; i < 4; i++) {
        snprintf(buf, sizeof buf, "%" PRIu64, s->epoch_rng.s[i]);
        cJSON_AddItemToArray(r, cJSON_CreateString(buf));
    }
    snprintf(buf, sizeof buf, "%" PRIu64, s->epoch_rng.seed);
    cJSON_AddStringToObject(j, "seed", buf);
    cJSON_AddNumberToObject(j, "best_val", s->best_val);
    cJSON_AddNumberToObject(j, "best_epoch", s->best_epoch);
    cJSON_AddNumberToObject(j, "bad_epochs", s->bad_epochs);
    cJSON_AddNumberToObject(j, "skipped", (double)s->skipped);
    cJSON_AddNumberToObject(j, "epoch_loss_sum", s->epoch_loss_sum);
    cJSON_AddNumberToObject(j, "epoch_loss_n", (double)s->epoch_loss_n);
    cJSON_AddItemToObject(j, "train_curve", cJSON_CreateDoubleArray(s->train_curve, s->n_curve));
    cJSON_AddItemToObject(j, "val_curve", cJSON_CreateDoubleArray(s->val_curve, s->n_curve));
    return j;
}

int rf_checkpoint_save(const char *path, const rf_flow *f, const rf_adam *a,
                       const rf_train_state *s, rf_err *e) {
    unsigned char *model;
    size_t mlen;
    int rc = rf_flow_to_bytes(f, &model, &mlen, e);
    if (rc) return rc;
    cJSON *j = state_json(a, s);
    char *js = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    const size_t jl = strlen(js), n = f->n_params;
    const size_t body = 8 + 8 + mlen + 4 + jl + 3 * 4 * n;
    unsigned char *buf = malloc(body + 32);
    if (!buf) {
        free(model);
        free(js);
        return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
    }
    unsigned char *p = buf;
    memcpy(p, CK_MAGIC, 8);
    uint64_t ml = mlen;
    uint32_t jl32 = (uint32_t)jl;
    memcpy(p + 8, &ml, 8);
    memcpy(p + 16, model, mlen);
    p += 16 + mlen;
    memcpy(p, &jl32, 4);
    memcpy(p + 4, js, jl);
    p += 4 + jl;
    memcpy(p, a->m, 4 * n);
    memcpy(p + 4 * n, a->v, 4 * n);
    memcpy(p + 8 * n, s->best_params, 4 * n);
    rf_sha256(buf, body, buf + body);
    rc = rf_write_file_atomic(path, buf, body + 32, e);
    free(buf);
    free(model);
    free(js);
    return rc;
}

static int get_u64_str(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsString(v)) return -1;
    char *end;
    *out = strtoull(v->valuestring, &end, 10);
    return *end ? -1 : 0;
}

static int load_curve(const cJSON *j, const char *key, double *out, int n, rf_err *e) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return rf_err_set(e, RF_EFORMAT, "field \"%s\" is not an array of %d numbers", key, n);
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) out[i++] = cJSON_IsNumber(v) ? v->valuedouble : 0.0;
    return RF_OK;
}

static int parse_state(const cJSON *j, rf_adam *a, rf_train_state *s, int max_epochs, rf_err *e) {
    double d;
    int rc = rf_json_get_int(j, "epoch", &s->epoch, e);
    if (!rc) rc = rf_json_get_number(j, "batch_pos", &d, e), s->batch_pos = (long)d;
    if (!rc) rc = rf_json_get_number(j, "step", &d, e), s->step = (long)d;
    if (!rc) rc = rf_json_get_number(j, "adam_step", &d, e), a->step = (long)d;
    if (!rc) rc = rf_json_get_number(j, "best_val", &s->best_val, e);
    if (!rc) rc = rf_json_get_int(j, "best_epoch", &s->best_epoch, e);
    if (!rc) rc = rf_json_get_int(j, "bad_epochs", &s->bad_epochs, e);
    if (!rc) rc = rf_json_get_number(j, "skipped", &d, e), s->skipped = (long)d;
    if (!rc) rc = rf_json_get_number(j, "epoch_loss_sum", &s->epoch_loss_sum, e);
    if (!rc) rc = rf_json_get_number(j, "epoch_loss_n", &d, e), s->epoch_loss_n = (long)d;
    if (rc) return rc;
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "epoch_rng");
    if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != 4 ||
        get_u64_str(cJSON_GetObjectItemCaseSensitive(j, "seed"), &s->epoch_rng.seed))
        return rf_err_set(e, RF_EFORMAT, "field \"epoch_rng\" is malformed");
    for (int i = 0; i < 4; i++)
        if (get_u64_str(cJSON_GetArrayItem(r, i), &s->epoch_rng.s[i]))
            return rf_err_set(e, RF_EFORMAT, "field \"epoch_rng\"[%d] is malformed", i);
    if (s->epoch < 0 || s->epoch > max_epochs)
        return rf_err_set(e, RF_EFORMAT, "field \"epoch\" = %d outside [0, %d]", s->epoch, max_epochs);
    s->n_curve = s->epoch;
    rc = load_curve(j, "train_curve", s->train_curve, s->n_curve, e);
    if (!rc) rc = load_curve(j, "val_curve", s->val_curve, s->n_curve, e);
    return rc;
}

int rf_checkpoint_load(const char *path, rf_flow *f, rf_adam *a, rf_train_state *s, int max_epochs,
                       rf_err *e) {
    unsigned char *buf;
    size_t len;
    int rc = rf_read_file(path, &buf, &len, e);
    if (rc) return rc;
    rc = RF_EFORMAT;
    uint64_t ml = 0;
    uint32_t jl = 0;
    const size_t n = f->n_params;
    if (len < 16 + 32 || memcmp(buf, CK_MAGIC, 8) != 0) {
        rf_err_set(e, rc, "%s: not a renflow checkpoint", path);
        goto out;
    }
    uint8_t md[32];
    rf_sha256(buf, len - 32, md);
    if (memcmp(md, buf + len - 32, 32) != 0) {
        rf_err_set(e, rc, "%s: checkpoint checksum mismatch (corrupted or truncated)", path);
        goto out;
    }
    memcpy(&ml, buf + 8, 8);
    if (ml > len - 16 - 32 - 4) {
        rf_err_set(e, rc, "%s: embedded model length %llu exceeds the file", path, (unsigned long long)ml);
        goto out;
    }
    rf_flow *saved = rf_flow_load_mem(buf + 16, (size_t)ml, path, e);
    if (!saved) goto out;
    int same = saved->n_params == n && saved->n_layers == f->n_layers;
    for (int k = 0; same && k < f->n_layers; k++) {
        /* fixed structure (permutations, LU pivots and signs) must match, not just the sizes */
        cJSON *a1 = saved->layers[k]->ops->to_json(saved->layers[k]), *a2 = f->layers[k]->ops->to_json(f->layers[k]);
        same = cJSON_Compare(a1, a2, 1);
        cJSON_Delete(a1);
        cJSON_Delete(a2);
    }
    if (!same) {
        rf_err_set(e, rc, "%s: the checkpoint was written for a different architecture or seed than this run "
                   "(resume with the same options and --seed)", path);
        rf_flow_free(saved);
        goto out;
    }
    memcpy(f->params, saved->params, 4 * n);
    memcpy(f->shift, saved->shift, 4 * (size_t)f->D);
    memcpy(f->scale, saved->scale, 4 * (size_t)f->D);
    rf_flow_free(saved);
    const unsigned char *p = buf + 16 + ml;
    memcpy(&jl, p, 4);
    if ((size_t)jl + 3 * 4 * n != len - 32 - 16 - ml - 4) {
        rf_err_set(e, rc, "%s: checkpoint sections do not add up to the file size", path);
        goto out;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)p + 4, jl);
    if (!j) {
        rf_err_set(e, rc, "%s: checkpoint state is not valid JSON", path);
        goto out;
    }
    rc = parse_state(j, a, s, max_epochs, e);
    cJSON_Delete(j);
    if (rc) {
        rf_err_prefix(e, rc, "%s", path);
        goto out;
    }
    p += 4 + jl;
    memcpy(a->m, p, 4 * n);
    memcpy(a->v, p + 4 * n, 4 * n);
    memcpy(s->best_params, p + 8 * n, 4 * n);
    rc = RF_OK;
out:
    free(buf);
    return rc;
}
