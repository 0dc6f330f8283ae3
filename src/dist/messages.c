/* The coordinator/worker messages: trials out, results back (with the trained model's bytes),
 * each checked field by field when read, since they cross process (and machine) boundaries. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/json_util.h"
#include "../search/search_internal.h"
#include "renflow/dist.h"

void rf_dist_transport_free(rf_dist_transport *tp) {
    if (tp && tp->ops && tp->ops->destroy) tp->ops->destroy(tp);
}

void rf_dist_result_init(rf_dist_result *r, int number) {
    memset(r, 0, sizeof *r);
    r->number = number;
    r->status = RF_TRIAL_COMPLETE;
    for (int k = 0; k < RF_MAX_OBJECTIVES; k++) r->values[k] = NAN;
}

void rf_dist_result_free(rf_dist_result *r) {
    if (!r) return;
    free(r->model);
    r->model = NULL;
    r->model_len = 0;
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

int rf_dist_result_encode(const rf_dist_result *r, unsigned char **buf, size_t *len, rf_err *e) {
    *buf = NULL;
    *len = 0;
    if (r->status != RF_TRIAL_COMPLETE && r->status != RF_TRIAL_FAILED && r->status != RF_TRIAL_PRUNED)
        return rf_err_set(e, RF_EARG, "dist: trial %d: result status must be complete, failed or pruned, not %s", r->number,
                          rf_trial_status_name(r->status));
    if (r->n_values < 0 || r->n_values > RF_MAX_OBJECTIVES)
        return rf_err_set(e, RF_EARG, "dist: trial %d: %d values (at most %d)", r->number, r->n_values, RF_MAX_OBJECTIVES);
    if (r->model_len > RF_DIST_MAX_MESSAGE / 2 || (r->model_len > 0 && !r->model))
        return rf_err_set(e, RF_EARG, "dist: trial %d: model of %zu bytes cannot be sent", r->number, r->model_len);
    cJSON *j = cJSON_CreateObject();
    cJSON *vals = cJSON_CreateArray();
    if (!j || !vals) {
        cJSON_Delete(j);
        cJSON_Delete(vals);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    cJSON_AddNumberToObject(j, "number", r->number);
    cJSON_AddStringToObject(j, "status", rf_trial_status_name(r->status));
    /* non-finite values go as null and are refused when read back for a complete trial */
    for (int k = 0; k < r->n_values; k++)
        cJSON_AddItemToArray(vals, isfinite(r->values[k]) ? cJSON_CreateNumber(r->values[k]) : cJSON_CreateNull());
    cJSON_AddItemToObject(j, "values", vals);
    char reason[sizeof r->reason];
    memcpy(reason, r->reason, sizeof reason);
    reason[sizeof reason - 1] = '\0';
    cJSON_AddStringToObject(j, "reason", reason);
    cJSON_AddNumberToObject(j, "seconds", isfinite(r->seconds) ? r->seconds : 0);
    cJSON_AddNumberToObject(j, "model_bytes", (double)r->model_len);
    char *text = rf__json_print_exact(j);
    cJSON_Delete(j);
    if (!text) return rf_err_set(e, RF_ENOMEM, "out of memory");
    size_t tl = strlen(text);
    size_t n = 8 + tl + r->model_len;
    unsigned char *b = malloc(n);
    if (!b) {
        free(text);
        return rf_err_set(e, RF_ENOMEM, "out of memory (result of %zu bytes)", n);
    }
    memcpy(b, "RFDR", 4);
    put_u32(b + 4, (uint32_t)tl);
    memcpy(b + 8, text, tl);
    if (r->model_len) memcpy(b + 8 + tl, r->model, r->model_len);
    free(text);
    *buf = b;
    *len = n;
    return RF_OK;
}

int rf_dist_result_decode(const unsigned char *buf, size_t len, rf_dist_result *r, rf_err *e) {
    rf_dist_result_init(r, -1);
    if (!buf || len < 8 || memcmp(buf, "RFDR", 4) != 0)
        return rf_err_set(e, RF_EFORMAT, "dist: result message of %zu bytes does not start with \"RFDR\"", len);
    size_t tl = get_u32(buf + 4);
    if (tl > len - 8)
        return rf_err_set(e, RF_EFORMAT, "dist: result message: JSON length %zu exceeds the %zu bytes that follow", tl, len - 8);
    cJSON *j = cJSON_ParseWithLength((const char *)buf + 8, tl);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return rf_err_set(e, RF_EFORMAT, "dist: result message: the header is not a JSON object");
    }
    int rc = rf_json_get_int(j, "number", &r->number, e);
    const char *status = NULL;
    if (!rc) rc = rf_json_get_string(j, "status", &status, e);
    if (!rc && (rf_trial_status_parse(status, &r->status) != RF_OK ||
                (r->status != RF_TRIAL_COMPLETE && r->status != RF_TRIAL_FAILED && r->status != RF_TRIAL_PRUNED)))
        rc = rf_err_set(e, RF_EFORMAT, "dist: result message: field \"status\": \"%s\" is not complete, failed or pruned",
                        status);
    const cJSON *vals = cJSON_GetObjectItemCaseSensitive(j, "values");
    if (!rc && (!cJSON_IsArray(vals) || cJSON_GetArraySize(vals) > RF_MAX_OBJECTIVES))
        rc = rf_err_set(e, RF_EFORMAT, "dist: result message: field \"values\": not an array of at most %d numbers",
                        RF_MAX_OBJECTIVES);
    if (!rc) {
        const cJSON *v;
        int k = 0;
        cJSON_ArrayForEach(v, vals) {
            if (cJSON_IsNumber(v)) {
                r->values[k++] = v->valuedouble;
            } else if (cJSON_IsNull(v)) {
                r->values[k++] = NAN;
            } else {
                rc = rf_err_set(e, RF_EFORMAT, "dist: result message: field \"values\"[%d]: not a number", k);
                break;
            }
        }
        r->n_values = k;
    }
    if (!rc && r->status == RF_TRIAL_COMPLETE)
        for (int k = 0; k < r->n_values && !rc; k++)
            if (!isfinite(r->values[k]))
                rc = rf_err_set(e, RF_EFORMAT, "dist: result message: trial %d is complete but value %d is not finite",
                                r->number, k);
    const char *reason = NULL;
    if (!rc) rc = rf_json_get_string(j, "reason", &reason, e);
    if (!rc) snprintf(r->reason, sizeof r->reason, "%s", reason);
    double secs = 0, mb = 0;
    if (!rc) rc = rf_json_get_number(j, "seconds", &secs, e);
    if (!rc) rc = rf_json_get_number(j, "model_bytes", &mb, e);
    if (!rc && (mb < 0 || mb != floor(mb) || mb != (double)(len - 8 - tl)))
        rc = rf_err_set(e, RF_EFORMAT, "dist: result message: field \"model_bytes\" is %.0f but %zu bytes follow the header",
                        mb, len - 8 - tl);
    cJSON_Delete(j);
    if (rc) return rf_err_prefix(e, rc, "dist: result message");
    r->seconds = secs;
    r->model_len = len - 8 - tl;
    if (r->model_len) {
        r->model = malloc(r->model_len);
        if (!r->model) {
            r->model_len = 0;
            return rf_err_set(e, RF_ENOMEM, "out of memory (model of %zu bytes)", len - 8 - tl);
        }
        memcpy(r->model, buf + 8 + tl, r->model_len);
    }
    return RF_OK;
}

char *rf_dist_trial_encode(const rf_space *sp, const rf_trial *t) {
    cJSON *j = cJSON_CreateObject();
    cJSON *cfg = rf_config_to_json(sp, &t->cfg);
    if (!j || !cfg) {
        cJSON_Delete(j);
        cJSON_Delete(cfg);
        return NULL;
    }
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, t->seed);
    cJSON_AddNumberToObject(j, "number", t->number);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "budget", t->budget);
    cJSON_AddItemToObject(j, "config", cfg);
    char *text = rf__json_print_exact(j);
    cJSON_Delete(j);
    return text;
}

int rf_dist_trial_decode(const rf_space *sp, const char *text, size_t len, rf_trial *t, rf_err *e) {
    memset(t, 0, sizeof *t);
    t->requeued_from = -1;
    t->last_step = -1;
    t->last_value = NAN;
    t->status = RF_TRIAL_RUNNING;
    t->started = t->finished = t->duration = NAN;
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return rf_err_set(e, RF_EFORMAT, "dist: trial message is not a JSON object");
    }
    int rc = rf_json_get_int(j, "number", &t->number, e);
    if (!rc && t->number < 0) rc = rf_err_set(e, RF_EFORMAT, "field \"number\": %d is negative", t->number);
    const char *seed = NULL;
    if (!rc) rc = rf_json_get_string(j, "seed", &seed, e);
    if (!rc) {
        char *end = NULL;
        errno = 0;
        unsigned long long s = strtoull(seed, &end, 10);
        if (errno || !end || *end || !seed[0] || seed[0] == '-')
            rc = rf_err_set(e, RF_EFORMAT, "field \"seed\": \"%.40s\" is not an unsigned 64-bit integer", seed);
        t->seed = (uint64_t)s;
    }
    if (!rc) rc = rf_json_get_number(j, "budget", &t->budget, e);
    if (!rc && t->budget < 0) rc = rf_err_set(e, RF_EFORMAT, "field \"budget\": %g is negative", t->budget);
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
    if (!rc && !cJSON_IsObject(cfg)) rc = rf_err_set(e, RF_EFORMAT, "field \"config\": missing or not an object");
    if (!rc) rc = rf_config_from_json(sp, cfg, &t->cfg, e);
    cJSON_Delete(j);
    if (rc) {
        rf_config_free(&t->cfg);
        return rf_err_prefix(e, rc, "dist: trial message");
    }
    return RF_OK;
}

void rf_dist_hostname(char *buf, size_t n) {
    if (!n) return;
    if (gethostname(buf, n) != 0) snprintf(buf, n, "unknown");
    buf[n - 1] = '\0';
}

long long rf_dist_pid_start(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return -1;
    p++;
    for (int field = 3; field < 22; field++) { /* 3: state ... 22: starttime */
        while (*p == ' ') p++;
        while (*p && *p != ' ') p++;
        if (!*p) return -1;
    }
    return strtoll(p, NULL, 10);
}

/* Launchers' environment: Open MPI, MPICH/Hydra and PMI, MVAPICH. */
int rf_dist_launch_size(int *rank) {
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", NULL};
    static const char *const ranks[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK", NULL};
    if (rank) *rank = 0;
    for (int k = 0; sizes[k]; k++) {
        const char *s = getenv(sizes[k]);
        if (!s || !*s) continue;
        char *end = NULL;
        long n = strtol(s, &end, 10);
        if (*end || n < 1 || n > 1000000) continue;
        const char *r = getenv(ranks[k]);
        long rk = r ? strtol(r, &end, 10) : 0;
        if (rank) *rank = rk >= 0 && rk < n ? (int)rk : 0;
        return (int)n;
    }
    return 1;
}
