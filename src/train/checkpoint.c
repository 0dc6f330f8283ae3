/* Checkpoints for exact resume (see checkpoint.h for the layout). */
#include "checkpoint.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"

static const char CK_MAGIC[8] = {'R', 'F', 'C', 'K', 'P', 'T', '0', '2'};
static const char CK_MAGIC_V1[8] = {'R', 'F', 'C', 'K', 'P', 'T', '0', '1'};

/* The architecture, as the model file describes it (spec, every layer with its fixed structure,
 * sizes): a checkpoint only resumes into the same architecture. */
static cJSON *arch_json(const rf_flow *f) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&f->spec));
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int k = 0; k < f->n_layers; k++) cJSON_AddItemToArray(layers, f->layers[k]->ops->to_json(f->layers[k]));
    cJSON_AddNumberToObject(j, "n_params", (double)f->n_params);
    cJSON_AddNumberToObject(j, "dim", f->D);
    return j;
}

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
    /* no validated epoch yet (a stop in the first epoch): best_val is +inf, which JSON cannot hold */
    if (isfinite(s->best_val)) cJSON_AddNumberToObject(j, "best_val", s->best_val);
    else cJSON_AddNullToObject(j, "best_val");
    cJSON_AddNumberToObject(j, "best_epoch", s->best_epoch);
    cJSON_AddNumberToObject(j, "bad_epochs", s->bad_epochs);
    cJSON_AddNumberToObject(j, "skipped", (double)s->skipped);
    cJSON_AddNumberToObject(j, "epoch_loss_sum", s->epoch_loss_sum);
    cJSON_AddNumberToObject(j, "epoch_loss_n", (double)s->epoch_loss_n);
    cJSON_AddItemToObject(j, "train_curve", cJSON_CreateDoubleArray(s->train_curve, s->n_curve));
    cJSON_AddItemToObject(j, "val_curve", cJSON_CreateDoubleArray(s->val_curve, s->n_curve));
    return j;
}

/* Streams the checkpoint into the atomic file: every parameter-sized section is written from
 * where it lives, with the SHA-256 computed on the way, so writing one needs no memory beyond a
 * few kilobytes of JSON (it used to assemble the whole file, about six copies of the parameters). */
typedef struct ck_out {
    rf_afile *f;
    EVP_MD_CTX *md;
    rf_err *e;
    int rc;
} ck_out;

static void ck_put(ck_out *o, const void *p, size_t n) {
    if (o->rc) return;
    if (EVP_DigestUpdate(o->md, p, n) != 1) {
        o->rc = rf_err_set(o->e, RF_ENOMEM, "checkpoint: SHA-256 update failed");
        return;
    }
    o->rc = rf_afile_write(o->f, p, n, o->e);
}

int rf_checkpoint_save(const char *path, const rf_flow *f, const rf_adam *a,
                       const rf_train_state *s, rf_err *e) {
    int rc = RF_OK;
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddItemToObject(j, "arch", arch_json(f));
        cJSON_AddItemToObject(j, "state", state_json(a, s));
    }
    char *js = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    ck_out o = {NULL, EVP_MD_CTX_new(), e, RF_OK};
    if (!js || !o.md || EVP_DigestInit_ex(o.md, EVP_sha256(), NULL) != 1) {
        rc = rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (!(o.f = rf_afile_open(path, e))) {
        rc = e ? e->code : RF_EIO;
        goto out;
    }
    const size_t n = f->n_params, D = (size_t)f->D;
    const uint32_t jl32 = (uint32_t)strlen(js);
    ck_put(&o, CK_MAGIC, 8);
    ck_put(&o, &jl32, 4);
    ck_put(&o, js, jl32);
    ck_put(&o, f->params, 4 * n);
    ck_put(&o, f->shift, 4 * D);
    ck_put(&o, f->scale, 4 * D);
    ck_put(&o, a->m, 4 * n);
    ck_put(&o, a->v, 4 * n);
    ck_put(&o, s->best_params, 4 * n);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    if (!o.rc && (EVP_DigestFinal_ex(o.md, md, &mdl) != 1 || mdl != 32))
        o.rc = rf_err_set(e, RF_ENOMEM, "%s: SHA-256 failed", path);
    if (!o.rc) o.rc = rf_afile_write(o.f, md, 32, e);
    if (o.rc) {
        rf_afile_abort(o.f);
        rc = rf_err_prefix(e, o.rc, "checkpoint");
    } else {
        rc = rf_afile_commit(o.f, e);
    }
out:
    EVP_MD_CTX_free(o.md);
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
    cJSON_ArrayForEach(v, a) out[i++] = cJSON_IsNumber(v) ? v->valuedouble : NAN; /* null: a non-finite value */
    return RF_OK;
}

static int parse_state(const cJSON *j, rf_adam *a, rf_train_state *s, int max_epochs, rf_err *e) {
    double d;
    int rc = rf_json_get_int(j, "epoch", &s->epoch, e);
    if (!rc) rc = rf_json_get_number(j, "batch_pos", &d, e), s->batch_pos = (long)d;
    if (!rc) rc = rf_json_get_number(j, "step", &d, e), s->step = (long)d;
    if (!rc) rc = rf_json_get_number(j, "adam_step", &d, e), a->step = (long)d;
    if (!rc) {
        const cJSON *bv = cJSON_GetObjectItemCaseSensitive(j, "best_val");
        if (cJSON_IsNull(bv)) s->best_val = INFINITY; /* written before the first validation */
        else rc = rf_json_get_number(j, "best_val", &s->best_val, e);
    }
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
    cJSON *j = NULL, *mine = NULL;
    const size_t n = f->n_params, D = (size_t)f->D;
    if (len >= 8 && memcmp(buf, CK_MAGIC_V1, 8) == 0) {
        rf_err_set(e, rc, "%s: checkpoint written by an older renflow (format 01); it cannot be resumed, "
                   "start the training again", path);
        goto out;
    }
    if (len < 8 + 4 + 32 || memcmp(buf, CK_MAGIC, 8) != 0) {
        rf_err_set(e, rc, "%s: not a renflow checkpoint", path);
        goto out;
    }
    uint8_t md[32];
    rf_sha256(buf, len - 32, md);
    if (memcmp(md, buf + len - 32, 32) != 0) {
        rf_err_set(e, rc, "%s: checkpoint checksum mismatch (corrupted or truncated)", path);
        goto out;
    }
    uint32_t jl = 0;
    memcpy(&jl, buf + 8, 4);
    if ((size_t)jl > len - 8 - 4 - 32 || (size_t)jl + (4 * n + 2 * D) * 4 != len - 8 - 4 - 32) {
        rf_err_set(e, rc, "%s: checkpoint sections do not add up to the file size (a different model?)", path);
        goto out;
    }
    j = cJSON_ParseWithLength((const char *)buf + 12, jl);
    if (!j) {
        rf_err_set(e, rc, "%s: checkpoint header is not valid JSON", path);
        goto out;
    }
    /* fixed structure (permutations, LU pivots and signs) must match, not just the sizes */
    mine = arch_json(f);
    if (!cJSON_Compare(cJSON_GetObjectItemCaseSensitive(j, "arch"), mine, 1)) {
        rf_err_set(e, rc, "%s: the checkpoint was written for a different architecture or seed than this run "
                   "(resume with the same options and --seed)", path);
        goto out;
    }
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(j, "state");
    if (!cJSON_IsObject(state)) {
        rf_err_set(e, rc, "%s: checkpoint field \"state\" missing", path);
        goto out;
    }
    rc = parse_state(state, a, s, max_epochs, e);
    if (rc) {
        rf_err_prefix(e, rc, "%s", path);
        goto out;
    }
    const unsigned char *p = buf + 12 + jl;
    memcpy(f->params, p, 4 * n);
    memcpy(f->shift, p + 4 * n, 4 * D);
    memcpy(f->scale, p + 4 * n + 4 * D, 4 * D);
    p += 4 * (n + 2 * D);
    memcpy(a->m, p, 4 * n);
    memcpy(a->v, p + 4 * n, 4 * n);
    memcpy(s->best_params, p + 8 * n, 4 * n);
    rc = RF_OK;
out:
    cJSON_Delete(j);
    cJSON_Delete(mine);
    free(buf);
    return rc;
}
