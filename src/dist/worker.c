/* A worker's loop: setup from rank 0's SETUP (space, objectives, payload), HELLO back (host, pid,
 * the check text), then one TRIAL at a time: evaluate, send the intermediate values (REPORT) and
 * the result (RESULT), until STOP. It talks only to rank 0 and never opens the study. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/json_util.h"
#include "../search/search_internal.h"
#include "renflow/dist.h"

typedef struct report_ctx {
    rf_dist_transport *tp;
    int number;
} report_ctx;

static int send_json(rf_dist_transport *tp, int tag, cJSON *j, rf_err *e) {
    char *text = j ? rf__json_print_exact(j) : NULL;
    cJSON_Delete(j);
    if (!text) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int rc = tp->ops->send(tp, 0, tag, text, strlen(text), e);
    free(text);
    return rc;
}

static int send_report(void *rctx, long step, double value, rf_err *e) {
    report_ctx *r = rctx;
    cJSON *j = cJSON_CreateObject();
    if (!j) return rf_err_set(e, RF_ENOMEM, "out of memory");
    cJSON_AddNumberToObject(j, "number", r->number);
    cJSON_AddNumberToObject(j, "step", (double)step);
    if (isfinite(value)) cJSON_AddNumberToObject(j, "value", value);
    else cJSON_AddNullToObject(j, "value");
    return send_json(r->tp, RF_DIST_REPORT, j, e);
}

static int send_hello(rf_dist_transport *tp, int ok, const char *check, const char *error, rf_err *e) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return rf_err_set(e, RF_ENOMEM, "out of memory");
    char host[64];
    rf_dist_hostname(host, sizeof host);
    long pid = (long)getpid();
    cJSON_AddBoolToObject(j, "ok", ok);
    cJSON_AddStringToObject(j, "host", host);
    cJSON_AddNumberToObject(j, "pid", (double)pid);
    cJSON_AddNumberToObject(j, "pid_start", (double)rf_dist_pid_start(pid));
    cJSON_AddStringToObject(j, "check", check ? check : "");
    if (error) cJSON_AddStringToObject(j, "error", error);
    return send_json(tp, RF_DIST_HELLO, j, e);
}

/* Waits for a message from rank 0 (the keepalive thread ends an orphaned worker). */
static int next_message(rf_dist_transport *tp, int *tag, unsigned char **buf, size_t *len, rf_err *e) {
    for (;;) {
        int peer = -1;
        int rc = tp->ops->recv(tp, 0, 1.0, &peer, tag, buf, len, e);
        if (rc) return rc;
        if (peer == 0) return RF_OK;
    }
}

int rf_dist_serve(rf_dist_transport *tp, const rf_dist_worker_ops *ops, void *ctx, rf_dist_serve_stats *stats,
                  rf_err *e) {
    rf_dist_serve_stats tmp;
    if (!stats) stats = &tmp;
    memset(stats, 0, sizeof *stats);
    if (!tp || !tp->ops || !ops || !ops->setup || !ops->evaluate)
        return rf_err_set(e, RF_EARG, "dist: serve needs a transport and worker operations");
    if (tp->rank < 1) return rf_err_set(e, RF_EARG, "dist: rank %d is the coordinator, not a worker", tp->rank);
    /* 1. SETUP (or STOP: rank 0 ended before it started the search) */
    int tag = 0, rc;
    unsigned char *buf = NULL;
    size_t len = 0;
    for (;;) {
        rc = next_message(tp, &tag, &buf, &len, e);
        if (rc) return rc;
        if (tag == RF_DIST_SETUP) break;
        free(buf);
        buf = NULL;
        if (tag == RF_DIST_STOP) return RF_OK;
    }
    stats->got_setup = 1;
    cJSON *j = buf ? cJSON_ParseWithLength((const char *)buf, len) : NULL;
    free(buf);
    rf_space *space = NULL;
    void *state = NULL;
    char check[RF_DIST_CHECK_MAX] = "";
    int proto = 0, n_obj = 0;
    rf_err se = {0};
    if (!cJSON_IsObject(j)) {
        rc = rf_err_set(&se, RF_EFORMAT, "the setup message is not a JSON object");
    } else {
        rc = rf_json_get_int(j, "protocol", &proto, &se);
        if (!rc && proto != RF_DIST_PROTOCOL)
            rc = rf_err_set(&se, RF_EFORMAT, "rank 0 speaks protocol %d, this worker %d (different renflow versions?)", proto,
                            RF_DIST_PROTOCOL);
        if (!rc) rc = rf_json_get_int(j, "objectives", &n_obj, &se);
        if (!rc && (n_obj < 1 || n_obj > RF_MAX_OBJECTIVES)) rc = rf_err_set(&se, RF_EFORMAT, "%d objectives", n_obj);
        if (!rc && !(space = rf_space_from_json(cJSON_GetObjectItemCaseSensitive(j, "space"), "the study's space", &se)))
            rc = se.code ? se.code : RF_EFORMAT;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "payload");
        if (!rc && p && !cJSON_IsNull(p) && !cJSON_IsString(p)) rc = rf_err_set(&se, RF_EFORMAT, "field \"payload\": not a string");
        if (!rc) rc = ops->setup(ctx, cJSON_IsString(p) ? p->valuestring : NULL, space, n_obj, &state, check, sizeof check, &se);
    }
    cJSON_Delete(j);
    if (rc) {
        rf_err he = {0};
        send_hello(tp, 0, NULL, se.msg, &he);
        rf_space_free(space);
        if (e) *e = se;
        return rf_err_prefix(e, rc, "setup");
    }
    rc = send_hello(tp, 1, check, NULL, e);
    /* 2. trials until STOP */
    while (!rc) {
        rc = next_message(tp, &tag, &buf, &len, e);
        if (rc) break;
        if (tag == RF_DIST_STOP) {
            stats->peer_lost = buf && len == 9 && !memcmp(buf, "peer-lost", 9);
            free(buf);
            break;
        }
        if (tag != RF_DIST_TRIAL) {
            free(buf);
            continue;
        }
        rf_trial t;
        rf_err te = {0};
        rf_dist_result r;
        int drc = rf_dist_trial_decode(space, (const char *)buf, len, &t, &te);
        if (drc) {
            /* the number alone lets rank 0 fail the trial instead of waiting for it */
            cJSON *tj = cJSON_ParseWithLength((const char *)buf, len);
            const cJSON *num = cJSON_GetObjectItemCaseSensitive(tj, "number");
            int number = cJSON_IsNumber(num) ? num->valueint : -1;
            cJSON_Delete(tj);
            if (number < 0) {
                free(buf);
                rc = rf_err_prefix(&te, drc, "rank %d", tp->rank);
                if (e) *e = te;
                break;
            }
            memset(&t, 0, sizeof t);
            t.number = number;
        }
        free(buf);
        buf = NULL;
        rf_dist_result_init(&r, t.number);
        report_ctx rctx = {tp, t.number};
        const double t0 = rf_now();
        rf_err ee = {0};
        int erc = drc ? drc : ops->evaluate(state, &t, send_report, &rctx, &r, &ee);
        if (drc) ee = te;
        r.seconds = rf_now() - t0;
        if (erc) { /* the trial fails with the message; the worker goes on */
            rf_dist_result_free(&r);
            rf_dist_result_init(&r, t.number);
            r.status = RF_TRIAL_FAILED;
            snprintf(r.reason, sizeof r.reason, "%s on rank %d: %.200s", drc ? "damaged trial message" : "evaluation error", tp->rank,
                     ee.msg[0] ? ee.msg : rf_status_name(erc));
        }
        unsigned char *out = NULL;
        size_t out_len = 0;
        rc = rf_dist_result_encode(&r, &out, &out_len, e);
        if (rc) { /* e.g. too large a model: send the failure instead */
            rf_dist_result_free(&r);
            rf_dist_result_init(&r, t.number);
            r.status = RF_TRIAL_FAILED;
            snprintf(r.reason, sizeof r.reason, "result not sendable: %.200s", e ? e->msg : "");
            rc = rf_dist_result_encode(&r, &out, &out_len, e);
        }
        if (!rc) rc = tp->ops->send(tp, 0, RF_DIST_RESULT, out, out_len, e);
        free(out);
        rf_dist_result_free(&r);
        rf_config_free(&t.cfg);
        stats->n_trials++;
    }
    if (ops->cleanup) ops->cleanup(state);
    rf_space_free(space);
    return rc;
}
