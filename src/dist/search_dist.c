/* renflow search on workers: the setup payload (where the task comes from, the job's defaults),
 * a worker's setup (each worker loads the data itself and must arrive at rank 0's task
 * fingerprint), the trial objective without a study (rf_search_objective's steps, with the
 * intermediate values and the model sent to rank 0) and, on rank 0, keeping the models. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/json_util.h"
#include "../search/search_internal.h"
#include "renflow/dist.h"
#include "renflow/features.h"

/* ---------------------------------------------------------------------------------------
 * the job's defaults, field by field (exact: numbers round-trip through cJSON's printing)
 * --------------------------------------------------------------------------------------- */

static cJSON *spec_json(const rf_flow_spec *s) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
#define PUT(f) cJSON_AddNumberToObject(j, #f, (double)s->f)
    PUT(type); PUT(D); PUT(blocks); PUT(hidden); PUT(n_hidden); PUT(act); PUT(residual); PUT(bins); PUT(bound);
    PUT(clamp); PUT(base); PUT(n_classes); PUT(channels); PUT(length); PUT(scales); PUT(kernel); PUT(dilation);
    PUT(spline); PUT(class_tie); PUT(perm); PUT(no_actnorm);
#undef PUT
    return j;
}

static int get_int(const cJSON *j, const char *k, int *out, rf_err *e) { return rf_json_get_int(j, k, out, e); }

static int spec_from(const cJSON *j, rf_flow_spec *s, rf_err *e) {
    memset(s, 0, sizeof *s);
    if (!cJSON_IsObject(j)) return rf_err_set(e, RF_EFORMAT, "field \"base_spec\": missing or not an object");
    int v = 0, rc = RF_OK;
    double d = 0;
#define GETI(f, T) if (!rc && !(rc = get_int(j, #f, &v, e))) s->f = (T)v
#define GETF(f) if (!rc && !(rc = rf_json_get_number(j, #f, &d, e))) s->f = (float)d
    GETI(type, rf_flow_type); GETI(D, int); GETI(blocks, int); GETI(hidden, int); GETI(n_hidden, int);
    GETI(act, rf_act); GETI(residual, int); GETI(bins, int); GETF(bound); GETF(clamp); GETI(base, rf_base_kind);
    GETI(n_classes, int); GETI(channels, int); GETI(length, int); GETI(scales, int); GETI(kernel, int);
    GETI(dilation, int); GETI(spline, int); GETI(class_tie, int); GETI(perm, rf_perm_kind); GETI(no_actnorm, int);
#undef GETI
#undef GETF
    return rc ? rf_err_prefix(e, rc, "base_spec") : RF_OK;
}

static cJSON *train_json(const rf_train_cfg *c) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
#define PUT(f) cJSON_AddNumberToObject(j, #f, (double)c->f)
    PUT(epochs); PUT(batch); PUT(lr); PUT(weight_decay); PUT(clip); PUT(warmup_frac); PUT(cosine); PUT(patience);
    PUT(memory_saving); PUT(max_bad_steps); PUT(ce_weight); PUT(standardize); PUT(init_batch); PUT(class_init);
    PUT(max_steps); PUT(threads);
#undef PUT
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, c->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    return j;
}

static int u64_from(const cJSON *j, const char *k, uint64_t *out, rf_err *e) {
    const char *s = NULL;
    int rc = rf_json_get_string(j, k, &s, e);
    if (rc) return rc;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !s[0] || *end || s[0] == '-')
        return rf_err_set(e, RF_EFORMAT, "field \"%s\": \"%.40s\" is not an unsigned 64-bit integer", k, s);
    *out = (uint64_t)v;
    return RF_OK;
}

static int train_from(const cJSON *j, rf_train_cfg *c, rf_err *e) {
    rf_train_cfg_default(c);
    if (!cJSON_IsObject(j)) return rf_err_set(e, RF_EFORMAT, "field \"base_train\": missing or not an object");
    int rc = RF_OK, v = 0;
    double d = 0;
#define GETI(f) if (!rc && !(rc = get_int(j, #f, &v, e))) c->f = v
#define GETF(f) if (!rc && !(rc = rf_json_get_number(j, #f, &d, e))) c->f = (float)d
    GETI(epochs); GETI(batch); GETF(lr); GETF(weight_decay); GETF(clip); GETF(warmup_frac); GETI(cosine);
    GETI(patience); GETI(memory_saving); GETI(max_bad_steps); GETF(ce_weight); GETI(standardize); GETI(init_batch);
    GETI(class_init); GETI(threads);
#undef GETI
#undef GETF
    if (!rc && !(rc = rf_json_get_number(j, "max_steps", &d, e))) {
        if (d != floor(d) || d < 0 || d > 9e15) rc = rf_err_set(e, RF_EFORMAT, "field \"max_steps\": %g", d);
        c->max_steps = (long)d;
    }
    if (!rc) rc = u64_from(j, "seed", &c->seed, e);
    c->out_path = c->checkpoint_path = NULL;
    c->resume = 0;
    c->progress = 0;
    c->stop_flag = NULL;
    return rc ? rf_err_prefix(e, rc, "base_train") : RF_OK;
}

static void add_str_or_null(cJSON *j, const char *k, const char *s) {
    if (s) cJSON_AddStringToObject(j, k, s);
    else cJSON_AddNullToObject(j, k);
}

/* NULL for a JSON null or an absent key; RF_EFORMAT for anything else but a string. */
static int str_or_null(const cJSON *j, const char *k, const char **out, rf_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return RF_OK;
    if (!cJSON_IsString(v)) return rf_err_set(e, RF_EFORMAT, "field \"%s\": not a string", k);
    *out = v->valuestring;
    return RF_OK;
}

char *rf_dist_search_payload(const rf_search_job *j, const rf_dist_task_src *src, const char *study_path,
                             const char *study_name, int keep_models, rf_err *e) {
    if (!j || !j->task || !src || (!src->data && !src->builtin)) {
        rf_err_set(e, RF_EARG, "dist: a search payload needs the job and the task's source (data or a built-in task)");
        return NULL;
    }
    cJSON *p = cJSON_CreateObject();
    cJSON *t = cJSON_AddObjectToObject(p, "task");
    if (!p || !t) {
        cJSON_Delete(p);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    add_str_or_null(t, "data", src->data);
    add_str_or_null(t, "labels", src->labels);
    add_str_or_null(t, "subjects", src->subjects);
    add_str_or_null(t, "recordings", src->opts.recordings);
    add_str_or_null(t, "builtin", src->data ? NULL : src->builtin);
    cJSON_AddBoolToObject(t, "tiny", src->tiny != 0);
    cJSON_AddStringToObject(t, "kind", rf_task_kind_name(src->opts.kind));
    cJSON_AddNumberToObject(t, "val_frac", src->opts.val_frac);
    cJSON_AddNumberToObject(t, "test_frac", src->opts.test_frac);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, src->opts.seed);
    cJSON_AddStringToObject(t, "seed", seed);
    cJSON *in = cJSON_AddObjectToObject(t, "input");
    cJSON_AddNumberToObject(in, "std_subject", src->opts.input.std_subject);
    cJSON_AddNumberToObject(in, "bandpower", src->opts.input.bandpower);
    cJSON_AddNumberToObject(in, "rate", src->opts.input.rate);
    cJSON_AddNumberToObject(in, "seg_s", src->opts.input.seg_s);
    cJSON_AddNumberToObject(in, "context", src->opts.input.context);
    cJSON_AddStringToObject(p, "fingerprint", j->task->fingerprint);
    cJSON *m = cJSON_AddArrayToObject(p, "metrics");
    for (int k = 0; k < j->n_metrics; k++) cJSON_AddItemToArray(m, cJSON_CreateNumber((double)j->metrics[k]));
    cJSON_AddItemToObject(p, "base_spec", spec_json(&j->base_spec));
    cJSON_AddItemToObject(p, "base_train", train_json(&j->base_train));
    cJSON_AddNumberToObject(p, "max_params", (double)j->max_params);
    cJSON_AddBoolToObject(p, "verbose", j->verbose != 0);
    add_str_or_null(p, "study", study_path);
    add_str_or_null(p, "study_name", study_name ? study_name : j->study_name);
    cJSON_AddBoolToObject(p, "keep_models", keep_models != 0);
    char *text = rf__json_print_exact(p);
    cJSON_Delete(p);
    if (!text) rf_err_set(e, RF_ENOMEM, "out of memory");
    return text;
}

/* ---------------------------------------------------------------------------------------
 * a worker's state
 * --------------------------------------------------------------------------------------- */

typedef struct search_worker {
    rf_search_task task;
    rf_space *space;
    rf_search_job job;
    char study[1024];
    char study_name[256];
    int keep_models;
} search_worker;

static void worker_cleanup(void *state) {
    search_worker *w = state;
    if (!w) return;
    rf_search_task_free(&w->task);
    rf_space_free(w->space);
    free(w);
}

static int worker_setup(void *ctx, const char *payload, const rf_space *space, int n_objectives, void **state,
                        char *check, size_t check_len, rf_err *e) {
    (void)ctx;
    *state = NULL;
    if (check_len) check[0] = '\0';
    cJSON *p = payload ? cJSON_Parse(payload) : NULL;
    if (!cJSON_IsObject(p)) {
        cJSON_Delete(p);
        return rf_err_set(e, RF_EFORMAT, "search setup: the payload is not a JSON object");
    }
    search_worker *w = rf_zalloc(sizeof *w, e);
    int rc = w ? RF_OK : RF_ENOMEM;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "task");
    if (!rc && !cJSON_IsObject(t)) rc = rf_err_set(e, RF_EFORMAT, "field \"task\": missing or not an object");
    const char *data = NULL, *labels = NULL, *subjects = NULL, *recordings = NULL, *builtin = NULL, *kind = NULL,
               *fp = NULL, *study = NULL, *study_name = NULL;
    rf_search_task_opts o;
    rf_search_task_opts_default(&o);
    if (!rc) rc = str_or_null(t, "data", &data, e);
    if (!rc) rc = str_or_null(t, "labels", &labels, e);
    if (!rc) rc = str_or_null(t, "subjects", &subjects, e);
    if (!rc) rc = str_or_null(t, "recordings", &recordings, e);
    if (!rc) rc = str_or_null(t, "builtin", &builtin, e);
    if (!rc && !data && !builtin) rc = rf_err_set(e, RF_EFORMAT, "field \"task\": neither data nor a built-in task");
    if (!rc) rc = rf_json_get_string(t, "kind", &kind, e);
    if (!rc) {
        if (!strcmp(kind, "density")) o.kind = RF_TASK_DENSITY;
        else if (!strcmp(kind, "classify")) o.kind = RF_TASK_CLASSIFY;
        else rc = rf_err_set(e, RF_EFORMAT, "field \"kind\": \"%s\" is not density or classify", kind);
    }
    if (!rc) rc = rf_json_get_number(t, "val_frac", &o.val_frac, e);
    if (!rc) rc = rf_json_get_number(t, "test_frac", &o.test_frac, e);
    if (!rc) rc = u64_from(t, "seed", &o.seed, e);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(t, "input");
    if (!rc && !cJSON_IsObject(in)) rc = rf_err_set(e, RF_EFORMAT, "field \"input\": missing or not an object");
    if (!rc) rc = get_int(in, "std_subject", &o.input.std_subject, e);
    if (!rc) rc = get_int(in, "bandpower", &o.input.bandpower, e);
    if (!rc) rc = rf_json_get_number(in, "rate", &o.input.rate, e);
    if (!rc) rc = rf_json_get_number(in, "seg_s", &o.input.seg_s, e);
    if (!rc) rc = get_int(in, "context", &o.input.context, e);
    o.recordings = recordings;
    if (!rc) rc = rf_json_get_string(p, "fingerprint", &fp, e);
    int n_metrics = 0;
    rf_search_metric metrics[RF_MAX_OBJECTIVES];
    const cJSON *ma = cJSON_GetObjectItemCaseSensitive(p, "metrics");
    if (!rc && (!cJSON_IsArray(ma) || cJSON_GetArraySize(ma) != n_objectives || n_objectives < 1 ||
                n_objectives > RF_MAX_OBJECTIVES))
        rc = rf_err_set(e, RF_EFORMAT, "field \"metrics\": not an array of %d metrics (the study's objectives)", n_objectives);
    if (!rc) {
        const cJSON *x;
        cJSON_ArrayForEach(x, ma) {
            if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
                x->valuedouble >= RF_SEARCH_N_METRICS) {
                rc = rf_err_set(e, RF_EFORMAT, "field \"metrics\"[%d]: not a metric number", n_metrics);
                break;
            }
            metrics[n_metrics++] = (rf_search_metric)(int)x->valuedouble;
        }
    }
    rf_flow_spec spec;
    rf_train_cfg tc;
    if (!rc) rc = spec_from(cJSON_GetObjectItemCaseSensitive(p, "base_spec"), &spec, e);
    if (!rc) rc = train_from(cJSON_GetObjectItemCaseSensitive(p, "base_train"), &tc, e);
    double maxp = 0;
    if (!rc) rc = rf_json_get_number(p, "max_params", &maxp, e);
    if (!rc && (maxp < 0 || maxp != floor(maxp))) rc = rf_err_set(e, RF_EFORMAT, "field \"max_params\": %g", maxp);
    if (!rc) rc = str_or_null(p, "study", &study, e);
    if (!rc) rc = str_or_null(p, "study_name", &study_name, e);
    if (rc) {
        rf_err_prefix(e, rc, "search setup");
    } else {
        /* the data, as rank 0 loaded it */
        rc = data ? rf_search_task_load(data, labels, subjects, &o, &w->task, e)
                  : rf_search_task_builtin(builtin, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "tiny")), &o, &w->task, e);
        if (!rc && strcmp(w->task.fingerprint, fp) != 0)
            rc = rf_err_set(e, RF_EARG,
                            "the task this worker loaded (%s, fingerprint %s) differs from rank 0's (fingerprint %s): "
                            "every host needs the same data files", w->task.source, w->task.fingerprint, fp);
    }
    if (!rc && !(w->space = rf_space_clone(space, e))) rc = RF_ENOMEM;
    if (!rc) {
        rf_search_job_init(&w->job, &w->task, w->space, metrics, n_metrics);
        w->job.base_spec = spec;
        w->job.base_train = tc;
        w->job.max_params = (size_t)maxp;
        w->job.verbose = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "verbose"));
        w->job.out_dir = NULL; /* rank 0 keeps the models */
        snprintf(w->study, sizeof w->study, "%s", study ? study : "");
        snprintf(w->study_name, sizeof w->study_name, "%s", study_name ? study_name : "");
        w->job.study_name = w->study_name;
        w->keep_models = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "keep_models"));
        if (w->job.base_train.threads > 0) rf_set_threads(w->job.base_train.threads);
        if (check_len) snprintf(check, check_len, "%s", w->task.fingerprint);
    }
    cJSON_Delete(p);
    if (rc) {
        worker_cleanup(w);
        return rc;
    }
    *state = w;
    return RF_OK;
}

static int worker_evaluate(void *state, const rf_trial *t, rf_dist_report_fn report, void *rctx, rf_dist_result *r,
                           rf_err *e) {
    search_worker *w = state;
    return rf_dist_search_evaluate(&w->job, t, w->study, w->study_name, w->keep_models, report, rctx, r, e);
}

const rf_dist_worker_ops rf_dist_search_worker_ops = {worker_setup, worker_evaluate, worker_cleanup};

/* ---------------------------------------------------------------------------------------
 * the objective without a study
 * --------------------------------------------------------------------------------------- */

int rf_dist_search_evaluate(const rf_search_job *j, const rf_trial *t, const char *study_path, const char *study_name,
                            int keep_model, rf_dist_report_fn report, void *rctx, rf_dist_result *r, rf_err *e) {
    rf_eval_result er;
    memset(&er, 0, sizeof er);
    er.status = RF_TRIAL_COMPLETE;
    rf_flow *f = NULL;
    int rc = rf_search_trial_train(j, t, study_path, study_name, report, rctx, &er, keep_model ? &f : NULL, e);
    r->number = t->number;
    r->status = er.status;
    r->n_values = er.status == RF_TRIAL_COMPLETE ? j->n_metrics : 0;
    memcpy(r->values, er.values, sizeof r->values);
    snprintf(r->reason, sizeof r->reason, "%s", er.reason);
    if (!rc && f) rc = rf_flow_to_bytes(f, &r->model, &r->model_len, e);
    rf_flow_free(f);
    return rc;
}

int rf_dist_search_keep(void *ctx, rf_study *st, const rf_trial *t, rf_dist_result *r, rf_err *e) {
    const rf_search_job *j = ctx;
    if (r->status != RF_TRIAL_COMPLETE || !r->model || !j->out_dir) return RF_OK;
    rf_err le = {0};
    char what[64];
    snprintf(what, sizeof what, "the model of trial %d", t->number);
    rf_flow *f = rf_flow_load_mem(r->model, r->model_len, what, &le);
    if (!f) { /* a damaged transfer fails the trial, not the search */
        r->status = RF_TRIAL_FAILED;
        r->n_values = 0;
        snprintf(r->reason, sizeof r->reason, "the model sent by the worker is damaged: %.200s", le.msg);
        return RF_OK;
    }
    int rc = rf_search_keep_model(j, st, t, f, r->values, e);
    rf_flow_free(f);
    return rc;
}
