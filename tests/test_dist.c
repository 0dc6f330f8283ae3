/* Distributed search (include/renflow/dist.h) without MPI:
 *   - messages: results (with model bytes) and trials round-trip; every truncated prefix and
 *     damaged header of a result is refused with a message; trials with bad fields are refused;
 *   - the launcher's environment (rank and size) is read without starting MPI;
 *   - the search payload rebuilds rank 0's job on a worker (same task fingerprint, same defaults,
 *     field for field); a worker with other data is refused with a message;
 *   - the objective on a worker (rf_dist_search_evaluate) gives what rf_search_objective gives in
 *     a study: the same values, intermediate values and model;
 *   - the coordinator on an in-process transport (worker threads, keepalives from a pacemaker
 *     thread): every trial once, host and pid recorded; a worker that falls silent mid-trial is
 *     declared dead, its trial queued again and completed by another worker, its late result
 *     ignored; a worker's setup error and a worker with another task stop the run with a
 *     message; every worker dead is an error with nothing left running; the stop flag waits for
 *     the running trials. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "renflow/dist.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

static void rm_study(const char *p) {
    char b[600];
    unlink(p);
    snprintf(b, sizeof b, "%s-wal", p);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", p);
    unlink(b);
    snprintf(b, sizeof b, "%s-mf.lock", p);
    unlink(b);
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------ messages */

static void test_result_roundtrip(void **state) {
    (void)state;
    rf_dist_result r, q;
    rf_dist_result_init(&r, 17);
    r.n_values = 2;
    r.values[0] = 1.0 / 3.0;
    r.values[1] = -2.5e-300;
    r.seconds = 0.125;
    r.model_len = 1000;
    r.model = malloc(r.model_len);
    for (size_t i = 0; i < r.model_len; i++) r.model[i] = (unsigned char)(i * 7 + 3);
    unsigned char *buf = NULL;
    size_t len = 0;
    rf_err e = {0};
    assert_int_equal(rf_dist_result_encode(&r, &buf, &len, &e), RF_OK);
    assert_int_equal(rf_dist_result_decode(buf, len, &q, &e), RF_OK);
    assert_int_equal(q.number, 17);
    assert_int_equal(q.status, RF_TRIAL_COMPLETE);
    assert_int_equal(q.n_values, 2);
    assert_true(q.values[0] == r.values[0] && q.values[1] == r.values[1]); /* exact */
    assert_true(q.seconds == 0.125);
    assert_int_equal(q.model_len, r.model_len);
    assert_memory_equal(q.model, r.model, r.model_len);
    rf_dist_result_free(&q);
    /* every truncated prefix is refused (the model length no longer matches, or the header breaks) */
    for (size_t n = 0; n < len; n++) {
        rf_err te = {0};
        assert_int_not_equal(rf_dist_result_decode(buf, n, &q, &te), RF_OK);
        assert_true(te.msg[0] != '\0');
        assert_null(q.model);
    }
    /* damaged header bytes: refused or decoded consistently, never a crash */
    size_t hdr = 8 + (size_t)(buf[4] | buf[5] << 8);
    for (size_t i = 0; i < hdr; i++) {
        unsigned char *d = malloc(len);
        memcpy(d, buf, len);
        d[i] ^= 0x5a;
        rf_err de = {0};
        if (rf_dist_result_decode(d, len, &q, &de) == RF_OK) {
            assert_true(q.n_values <= RF_MAX_OBJECTIVES);
            rf_dist_result_free(&q);
        } else {
            assert_true(de.msg[0] != '\0');
        }
        free(d);
    }
    free(buf);
    /* a complete result with a non-finite value goes out as null and is refused on arrival */
    r.values[1] = NAN;
    assert_int_equal(rf_dist_result_encode(&r, &buf, &len, &e), RF_OK);
    assert_int_equal(rf_dist_result_decode(buf, len, &q, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "not finite"));
    free(buf);
    /* a failed result keeps its reason; a running status cannot be sent */
    rf_dist_result_free(&r);
    rf_dist_result_init(&r, 3);
    r.status = RF_TRIAL_FAILED;
    snprintf(r.reason, sizeof r.reason, "diverged: \"quoted\" reason");
    assert_int_equal(rf_dist_result_encode(&r, &buf, &len, &e), RF_OK);
    assert_int_equal(rf_dist_result_decode(buf, len, &q, &e), RF_OK);
    assert_int_equal(q.status, RF_TRIAL_FAILED);
    assert_string_equal(q.reason, r.reason);
    assert_null(q.model);
    free(buf);
    r.status = RF_TRIAL_RUNNING;
    assert_int_equal(rf_dist_result_encode(&r, &buf, &len, &e), RF_EARG);
    assert_null(buf);
    assert_int_equal(rf_dist_result_decode((const unsigned char *)"XXXX\0\0\0\0", 8, &q, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "RFDR"));
}

static void test_trial_roundtrip(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *tr = rf_space_default_training(&e), *ar = rf_space_default_architecture(&e);
    rf_space *sp = rf_space_concat(tr, ar, "both", &e);
    rf_space_free(tr);
    rf_space_free(ar);
    assert_non_null(sp);
    rf_rng rng;
    rf_rng_seed(&rng, 5);
    for (int k = 0; k < 20; k++) {
        rf_trial t;
        memset(&t, 0, sizeof t);
        assert_int_equal(rf_config_init(&t.cfg, sp, &e), RF_OK);
        rf_space_sample_uniform(sp, &rng, &t.cfg);
        t.number = k * 1000;
        t.seed = k == 0 ? UINT64_MAX : rf_rng_u64(&rng);
        t.budget = k % 3;
        char *text = rf_dist_trial_encode(sp, &t);
        assert_non_null(text);
        rf_trial u;
        assert_int_equal(rf_dist_trial_decode(sp, text, strlen(text), &u, &e), RF_OK);
        assert_int_equal(u.number, t.number);
        assert_true(u.seed == t.seed);
        assert_true(u.budget == t.budget);
        assert_true(rf_config_equal(&u.cfg, &t.cfg));
        assert_int_equal(u.status, RF_TRIAL_RUNNING);
        rf_config_free(&u.cfg);
        rf_config_free(&t.cfg);
        free(text);
    }
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[1]", "not a JSON object"},
        {"{\"number\": 1, \"seed\": \"x1\", \"budget\": 0, \"config\": {}}", "seed"},
        {"{\"number\": 1, \"seed\": \"-1\", \"budget\": 0, \"config\": {}}", "seed"},
        {"{\"number\": -4, \"seed\": \"1\", \"budget\": 0, \"config\": {}}", "negative"},
        {"{\"number\": 1.5, \"seed\": \"1\", \"budget\": 0, \"config\": {}}", "number"},
        {"{\"number\": 1, \"seed\": \"1\", \"budget\": -1, \"config\": {}}", "budget"},
        {"{\"number\": 1, \"seed\": \"1\", \"budget\": 0}", "config"},
        {"{\"number\": 1, \"seed\": \"1\", \"budget\": 0, \"config\": {\"frobnicate\": 3}}", "frobnicate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rf_trial u;
        rf_err be = {0};
        assert_int_not_equal(rf_dist_trial_decode(sp, bad[i].text, strlen(bad[i].text), &u, &be), RF_OK);
        if (!strstr(be.msg, bad[i].want)) fail_msg("case %zu: '%s' not in '%s'", i, bad[i].want, be.msg);
    }
    rf_space_free(sp);
}

static void test_launch_env(void **state) {
    (void)state;
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_SIZE", "PMI_RANK",
                                 "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"};
    char *saved[6];
    for (int i = 0; i < 6; i++) {
        const char *v = getenv(vars[i]);
        saved[i] = v ? strdup(v) : NULL;
        unsetenv(vars[i]);
    }
    int rank = -1;
    assert_int_equal(rf_dist_launch_size(&rank), 1);
    assert_int_equal(rank, 0);
    setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    assert_int_equal(rf_dist_launch_size(&rank), 3);
    assert_int_equal(rank, 2);
    setenv("OMPI_COMM_WORLD_SIZE", "three", 1);
    assert_int_equal(rf_dist_launch_size(&rank), 1);
    unsetenv("OMPI_COMM_WORLD_SIZE");
    setenv("PMI_SIZE", "4", 1);
    setenv("PMI_RANK", "9", 1); /* out of range: rank 0 */
    assert_int_equal(rf_dist_launch_size(&rank), 4);
    assert_int_equal(rank, 0);
    for (int i = 0; i < 6; i++) {
        if (saved[i]) setenv(vars[i], saved[i], 1);
        else unsetenv(vars[i]);
        free(saved[i]);
    }
    /* the process's own start time: what rf_study_requeue_stale compares */
    assert_true(rf_dist_pid_start((long)getpid()) > 0);
    assert_int_equal(rf_dist_pid_start(-5), -1);
    /* an MPI transport exists exactly when the build has MPI; bad arguments are refused first */
    rf_err e = {0};
    assert_null(rf_dist_mpi_start(NULL, NULL, 1.0, 0.5, &e));
    assert_int_equal(e.code, RF_EARG);
    printf("MPI in this build: %s\n", rf_dist_have_mpi() ? "yes" : "no");
}

/* ------------------------------------------------------------------ the search on a worker */

typedef struct tiny_setup {
    rf_search_task task;
    rf_space *space;
    rf_search_job job;
    rf_dist_task_src src;
} tiny_setup;

static void tiny_init(tiny_setup *s, int threads) {
    memset(s, 0, sizeof *s);
    rf_err e = {0};
    rf_search_task_opts_default(&s->src.opts);
    s->src.opts.seed = 7;
    s->src.builtin = "ring";
    s->src.tiny = 1;
    assert_int_equal(rf_search_task_builtin("ring", 1, &s->src.opts, &s->task, &e), RF_OK);
    s->space = rf_search_default_space(&s->task, 2, &e);
    assert_non_null(s->space);
    rf_search_metric m[2] = {RF_METRIC_NLL, RF_METRIC_PARAMS};
    rf_search_job_init(&s->job, &s->task, s->space, m, 2);
    s->job.base_train.threads = threads;
    s->job.base_train.epochs = 2;
    s->job.base_train.patience = 7;
    s->job.base_train.lr = 0.00123f;
    s->job.base_train.max_steps = 123456789;
    s->job.base_train.seed = UINT64_MAX - 5;
    s->job.base_spec.bound = 3.75f;
    s->job.max_params = 99999;
}

static void tiny_free(tiny_setup *s) {
    rf_space_free(s->space);
    rf_search_task_free(&s->task);
}

static void test_search_payload(void **state) {
    (void)state;
    tiny_setup s;
    tiny_init(&s, 1);
    rf_err e = {0};
    char *payload = rf_dist_search_payload(&s.job, &s.src, "/tmp/x.db", "density on ring", 1, &e);
    assert_non_null(payload);
    void *ws = NULL;
    char check[RF_DIST_CHECK_MAX];
    assert_int_equal(rf_dist_search_worker_ops.setup(NULL, payload, s.space, 2, &ws, check, sizeof check, &e), RF_OK);
    assert_string_equal(check, s.task.fingerprint);
    /* (that the worker's job has rank 0's defaults, field for field, shows in
     * test_evaluate_matches_objective: the same trials give the same values and models) */
    rf_dist_search_worker_ops.cleanup(ws);
    /* a worker that would load other data (another split seed) is refused, naming both fingerprints */
    cJSON *p = cJSON_Parse(payload);
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "task"), "seed", cJSON_CreateString("8"));
    char *other = cJSON_PrintUnformatted(p);
    assert_int_equal(rf_dist_search_worker_ops.setup(NULL, other, s.space, 2, &ws, check, sizeof check, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "differs from rank 0's"));
    assert_non_null(strstr(e.msg, s.task.fingerprint));
    assert_null(ws);
    free(other);
    /* damaged payloads: a message naming the field */
    cJSON_DeleteItemFromObjectCaseSensitive(p, "base_train");
    other = cJSON_PrintUnformatted(p);
    assert_int_equal(rf_dist_search_worker_ops.setup(NULL, other, s.space, 2, &ws, check, sizeof check, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "base_train"));
    free(other);
    cJSON_Delete(p);
    assert_int_equal(rf_dist_search_worker_ops.setup(NULL, payload, s.space, 1, &ws, check, sizeof check, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "metrics"));
    assert_int_equal(rf_dist_search_worker_ops.setup(NULL, "{", s.space, 2, &ws, check, sizeof check, &e), RF_EFORMAT);
    free(payload);
    tiny_free(&s);
}

typedef struct report_log {
    int n;
    long step[64];
    double value[64];
} report_log;

static int log_report(void *ctx, long step, double value, rf_err *e) {
    (void)e;
    report_log *l = ctx;
    if (l->n < 64) {
        l->step[l->n] = step;
        l->value[l->n] = value;
        l->n++;
    }
    return RF_OK;
}

/* The worker's objective gives what rf_search_objective gives: for trials evaluated both ways
 * (threads 1: training is deterministic), values, intermediate values and the model's
 * parameters agree exactly; the worker's job comes from the payload, so this also checks that
 * the payload carries every default the objective uses. */
static void test_evaluate_matches_objective(void **state) {
    (void)state;
    tiny_setup s;
    tiny_init(&s, 1);
    char path[256], out[256], cmd[600];
    rf_test_tmp(path, sizeof path, "dist-eval.db");
    rf_test_tmp(out, sizeof out, "dist-eval-out");
    rm_study(path);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", out);
    assert_int_equal(system(cmd), 0);
    s.job.out_dir = out;
    rf_err e = {0};
    assert_int_equal(rf_search_job_prepare(&s.job, &e), RF_OK);
    rf_study_def def = {.name = "dist eval", .space = s.space, .n_objectives = 2, .sampler = "random", .seed = 3};
    snprintf(def.objectives[0].name, RF_PARAM_NAME_MAX, "val_nll");
    snprintf(def.objectives[1].name, RF_PARAM_NAME_MAX, "n_params");
    rf_study *st = rf_study_open(path, &def, &e);
    assert_non_null(st);
    rf_sampler *smp = rf_sampler_random_create(&e);
    char *payload = rf_dist_search_payload(&s.job, &s.src, path, "dist eval", 1, &e);
    assert_non_null(payload);
    void *ws = NULL;
    char check[RF_DIST_CHECK_MAX];
    assert_int_equal(rf_dist_search_worker_ops.setup(NULL, payload, s.space, 2, &ws, check, sizeof check, &e), RF_OK);
    int n_complete = 0;
    for (int k = 0; k < 4; k++) {
        rf_trial *t = NULL;
        assert_int_equal(rf_study_ask(st, smp, &t, &e), RF_OK);
        rf_eval_result r;
        memset(&r, 0, sizeof r);
        r.status = RF_TRIAL_COMPLETE;
        assert_int_equal(rf_search_objective(&s.job, st, t, &r, &e), RF_OK);
        rf_dist_result d;
        rf_dist_result_init(&d, t->number);
        report_log log = {0};
        assert_int_equal(rf_dist_search_worker_ops.evaluate(ws, t, log_report, &log, &d, &e), RF_OK);
        assert_int_equal(d.status, r.status);
        if (r.status == RF_TRIAL_COMPLETE) {
            n_complete++;
            assert_int_equal(d.n_values, 2);
            assert_true(d.values[0] == r.values[0]);
            assert_true(d.values[1] == r.values[1]);
            /* intermediate values: those the objective stored in the study */
            long *steps = NULL;
            double *vals = NULL;
            int n = 0;
            assert_int_equal(rf_study_intermediate(st, t->number, &steps, &vals, &n, &e), RF_OK);
            assert_int_equal(n, log.n);
            assert_true(n >= 1);
            for (int i = 0; i < n; i++) {
                assert_int_equal(steps[i], log.step[i]);
                assert_true(vals[i] == log.value[i]);
            }
            free(steps);
            free(vals);
            /* the model: the same parameters as the objective's file; meta names the study */
            assert_non_null(d.model);
            rf_flow *fw = rf_flow_load_mem(d.model, d.model_len, "worker model", &e);
            char tp[400];
            rf_search_trial_path(out, t->number, tp, sizeof tp);
            rf_flow *fo = rf_flow_load(tp, &e);
            assert_non_null(fw);
            assert_non_null(fo);
            assert_int_equal(fw->n_params, fo->n_params);
            assert_memory_equal(fw->params, fo->params, sizeof(float) * fw->n_params);
            const cJSON *sm = cJSON_GetObjectItemCaseSensitive(fw->meta, "search");
            assert_int_equal(cJSON_GetObjectItemCaseSensitive(sm, "trial")->valueint, t->number);
            assert_string_equal(cJSON_GetObjectItemCaseSensitive(sm, "study")->valuestring, path);
            rf_flow_free(fw);
            rf_flow_free(fo);
            assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, r.values, 2, NULL, &e), RF_OK);
        } else {
            assert_true(d.reason[0] != '\0');
            assert_int_equal(rf_study_tell(st, t, r.status, NULL, 0, r.reason, &e), RF_OK);
        }
        rf_dist_result_free(&d);
        rf_trial_free(t);
    }
    assert_true(n_complete >= 2);
    /* rank 0 keeps a worker's model as the objective does: trial file, best.rf for the incumbent */
    {
        rf_trial *t = NULL;
        assert_int_equal(rf_study_ask(st, smp, &t, &e), RF_OK);
        rf_dist_result d;
        rf_dist_result_init(&d, t->number);
        assert_int_equal(rf_dist_search_worker_ops.evaluate(ws, t, NULL, NULL, &d, &e), RF_OK);
        if (d.status == RF_TRIAL_COMPLETE) {
            assert_int_equal(rf_dist_search_keep(&s.job, st, t, &d, &e), RF_OK);
            char tp[400];
            rf_search_trial_path(out, t->number, tp, sizeof tp);
            rf_flow *f = rf_flow_load(tp, &e);
            assert_non_null(f);
            rf_flow_free(f);
            /* a damaged model fails the trial instead of the search */
            d.model[d.model_len / 2] ^= 1;
            assert_int_equal(rf_dist_search_keep(&s.job, st, t, &d, &e), RF_OK);
            assert_int_equal(d.status, RF_TRIAL_FAILED);
            assert_non_null(strstr(d.reason, "damaged"));
        }
        rf_dist_result_free(&d);
        rf_trial_free(t);
    }
    rf_dist_search_worker_ops.cleanup(ws);
    free(payload);
    rf_sampler_free(smp);
    rf_study_close(st);
    rm_study(path);
    assert_int_equal(system(cmd), 0);
    tiny_free(&s);
}

/* ------------------------------------------------------------------ an in-process transport */

typedef struct msg {
    int from, tag;
    unsigned char *buf;
    size_t len;
    struct msg *next;
} msg;

typedef struct net {
    int size;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    msg **inbox;           /* per rank, FIFO */
    double *heard;         /* heard[r * size + p]: when rank r last heard from p */
    int *frozen;           /* a frozen rank sends no keepalives (a stopped or hung process) */
    int *gone;             /* gone[r * size + p]: r forgot p */
    int quit;
    pthread_t pacemaker;
    rf_dist_transport *tp; /* one per rank */
} net;

static void net_push(net *n, int to, int from, int tag, const void *buf, size_t len) {
    msg *m = calloc(1, sizeof *m);
    m->from = from;
    m->tag = tag;
    m->len = len;
    if (len) {
        m->buf = malloc(len);
        memcpy(m->buf, buf, len);
    }
    msg **pp = &n->inbox[to];
    while (*pp) pp = &(*pp)->next;
    *pp = m;
}

static int f_send(rf_dist_transport *tp, int peer, int tag, const void *buf, size_t len, rf_err *e) {
    net *n = tp->impl;
    if (peer < 0 || peer >= n->size) return rf_err_set(e, RF_EARG, "no rank %d", peer);
    pthread_mutex_lock(&n->mu);
    int gone = n->gone[tp->rank * n->size + peer];
    if (!gone) net_push(n, peer, tp->rank, tag, buf, len);
    pthread_cond_broadcast(&n->cv);
    pthread_mutex_unlock(&n->mu);
    return gone ? rf_err_set(e, RF_EIO, "rank %d was forgotten", peer) : RF_OK;
}

static int f_recv(rf_dist_transport *tp, int from, double timeout, int *peer, int *tag, unsigned char **buf, size_t *len,
                  rf_err *e) {
    (void)e;
    net *n = tp->impl;
    *peer = -1;
    *buf = NULL;
    *len = 0;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    double t = (double)until.tv_nsec * 1e-9 + timeout;
    until.tv_sec += (time_t)t;
    until.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
    pthread_mutex_lock(&n->mu);
    for (;;) {
        msg **pp = &n->inbox[tp->rank];
        while (*pp && from >= 0 && (*pp)->from != from) pp = &(*pp)->next;
        if (*pp) {
            msg *m = *pp;
            *pp = m->next;
            n->heard[tp->rank * n->size + m->from] = rf_now();
            *peer = m->from;
            *tag = m->tag;
            *buf = m->buf;
            *len = m->len;
            free(m);
            break;
        }
        if (timeout <= 0 || pthread_cond_timedwait(&n->cv, &n->mu, &until) != 0) break;
    }
    pthread_mutex_unlock(&n->mu);
    return RF_OK;
}

static double f_silence(rf_dist_transport *tp, int peer) {
    net *n = tp->impl;
    pthread_mutex_lock(&n->mu);
    double q = rf_now() - n->heard[tp->rank * n->size + peer];
    pthread_mutex_unlock(&n->mu);
    return q;
}

static void f_forget(rf_dist_transport *tp, int peer) {
    net *n = tp->impl;
    pthread_mutex_lock(&n->mu);
    n->gone[tp->rank * n->size + peer] = 1;
    pthread_mutex_unlock(&n->mu);
}

static void f_destroy(rf_dist_transport *tp) { (void)tp; /* the net owns the endpoints */ }

static const rf_dist_transport_ops FAKE_OPS = {"fake", f_send, f_recv, f_silence, f_forget, f_destroy};

/* keepalives: every 10 ms each rank that is not frozen is heard by those who talk to it */
static void *pacemaker_main(void *arg) {
    net *n = arg;
    for (;;) {
        pthread_mutex_lock(&n->mu);
        int quit = n->quit;
        const double now = rf_now();
        for (int r = 1; r < n->size; r++) {
            if (!n->frozen[r]) n->heard[0 * n->size + r] = now;
            if (!n->frozen[0]) n->heard[r * n->size + 0] = now;
        }
        pthread_mutex_unlock(&n->mu);
        if (quit) break;
        sleep_s(0.01);
    }
    return NULL;
}

static net *net_create(int size) {
    net *n = calloc(1, sizeof *n);
    n->size = size;
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    n->inbox = calloc((size_t)size, sizeof *n->inbox);
    n->heard = calloc((size_t)(size * size), sizeof *n->heard);
    n->frozen = calloc((size_t)size, sizeof *n->frozen);
    n->gone = calloc((size_t)(size * size), sizeof *n->gone);
    n->tp = calloc((size_t)size, sizeof *n->tp);
    const double now = rf_now();
    for (int i = 0; i < size * size; i++) n->heard[i] = now;
    for (int r = 0; r < size; r++) {
        n->tp[r].ops = &FAKE_OPS;
        n->tp[r].impl = n;
        n->tp[r].rank = r;
        n->tp[r].size = size;
    }
    pthread_create(&n->pacemaker, NULL, pacemaker_main, n);
    return n;
}

static void net_free(net *n) {
    pthread_mutex_lock(&n->mu);
    n->quit = 1;
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->pacemaker, NULL);
    for (int r = 0; r < n->size; r++)
        for (msg *m = n->inbox[r], *nx; m; m = nx) {
            nx = m->next;
            free(m->buf);
            free(m);
        }
    free(n->inbox);
    free(n->heard);
    free(n->frozen);
    free(n->gone);
    free(n->tp);
    pthread_mutex_destroy(&n->mu);
    pthread_cond_destroy(&n->cv);
    free(n);
}

static void net_freeze(net *n, int r, int on) {
    pthread_mutex_lock(&n->mu);
    n->frozen[r] = on;
    pthread_mutex_unlock(&n->mu);
}

/* ------------------------------------------------------------------ toy workers: Branin */

typedef struct toy {
    net *n;
    int rank;
    int hang_number;     /* this worker falls silent during its first trial numbered >= this (-1: never) */
    double hang_s;       /* for this long, then sends its (late) result */
    int fail_setup;
    const char *check;   /* what it reports (NULL: "branin") */
    double work_s;       /* per trial */
    int n_evaluated;
    double late_at;      /* when the silent spell ended (rf_now) */
    int serve_rc;
    char serve_msg[1024];
} toy;

typedef struct toy_state {
    toy *t;
    const rf_testfunc *tf;
    rf_space *sp;
} toy_state;

static int toy_setup(void *ctx, const char *payload, const rf_space *space, int n_objectives, void **state, char *check,
                     size_t check_len, rf_err *e) {
    toy *t = ctx;
    if (t->fail_setup) return rf_err_set(e, RF_EIO, "data file /nowhere/x.npy: No such file or directory");
    if (!payload || strcmp(payload, "branin please") || n_objectives != 1)
        return rf_err_set(e, RF_EFORMAT, "unexpected payload");
    toy_state *s = calloc(1, sizeof *s);
    s->t = t;
    s->tf = rf_testfunc_find("branin");
    s->sp = rf_space_clone(space, e);
    snprintf(check, check_len, "%s", t->check ? t->check : "branin");
    *state = s;
    return RF_OK;
}

static int toy_evaluate(void *state, const rf_trial *tr, rf_dist_report_fn report, void *rctx, rf_dist_result *r,
                        rf_err *e) {
    toy_state *s = state;
    toy *t = s->t;
    double v = 0;
    int rc = rf_testfunc_eval(s->tf, s->sp, &tr->cfg, &v, e);
    if (rc) return rc;
    if ((rc = report(rctx, 1, v + 1, e))) return rc;
    if (t->hang_number >= 0 && tr->number >= t->hang_number) {
        t->hang_number = -1; /* once */
        net_freeze(t->n, t->rank, 1);
        sleep_s(t->hang_s);
        net_freeze(t->n, t->rank, 0);
        t->late_at = rf_now();
    } else {
        sleep_s(t->work_s);
    }
    if ((rc = report(rctx, 2, v, e))) return rc;
    r->n_values = 1;
    r->values[0] = v;
    t->n_evaluated++;
    return RF_OK;
}

static void toy_cleanup(void *state) {
    toy_state *s = state;
    if (!s) return;
    rf_space_free(s->sp);
    free(s);
}

static const rf_dist_worker_ops TOY_OPS = {toy_setup, toy_evaluate, toy_cleanup};

static void *toy_main(void *arg) {
    toy *t = arg;
    rf_err e = {0};
    t->serve_rc = rf_dist_serve(&t->n->tp[t->rank], &TOY_OPS, t, NULL, &e);
    snprintf(t->serve_msg, sizeof t->serve_msg, "%s", e.msg);
    return NULL;
}

typedef struct run {
    net *n;
    toy toys[8];
    pthread_t th[8];
    rf_study *st;
    rf_sampler *smp;
    char path[256];
} run;

static void run_start(run *R, const char *tag, int size) {
    memset(R, 0, sizeof *R);
    rf_err e = {0};
    R->n = net_create(size);
    rf_test_tmp(R->path, sizeof R->path, tag);
    rm_study(R->path);
    const rf_testfunc *tf = rf_testfunc_find("branin");
    rf_space *sp = rf_testfunc_space(tf, &e);
    rf_study_def def = {.name = "branin", .space = sp, .n_objectives = 1, .sampler = "random", .seed = 11};
    snprintf(def.objectives[0].name, RF_PARAM_NAME_MAX, "f");
    R->st = rf_study_open(R->path, &def, &e);
    assert_non_null(R->st);
    rf_space_free(sp);
    R->smp = rf_sampler_random_create(&e);
    for (int r = 1; r < size; r++) {
        R->toys[r].n = R->n;
        R->toys[r].rank = r;
        R->toys[r].hang_number = -1;
        R->toys[r].work_s = 0.01;
    }
}

static void run_workers(run *R) {
    for (int r = 1; r < R->n->size; r++) pthread_create(&R->th[r], NULL, toy_main, &R->toys[r]);
}

/* Ends the workers that were not stopped (declared dead ones get STOP from the test) */
static void run_finish(run *R) {
    for (int r = 1; r < R->n->size; r++) {
        pthread_mutex_lock(&R->n->mu);
        net_push(R->n, r, 0, RF_DIST_STOP, NULL, 0);
        pthread_cond_broadcast(&R->n->cv);
        pthread_mutex_unlock(&R->n->mu);
    }
    for (int r = 1; r < R->n->size; r++) pthread_join(R->th[r], NULL);
    rf_sampler_free(R->smp);
    rf_study_close(R->st);
    rm_study(R->path);
    net_free(R->n);
}

static rf_dist_opts toy_opts(int max_total) {
    rf_dist_opts o;
    rf_dist_opts_default(&o);
    o.max_total = max_total;
    o.progress = 0;
    o.timeout = 0.3;
    o.payload = "branin please";
    o.check = "branin";
    return o;
}

/* counts over the study file: numbered trials, complete, lost, running, queued */
typedef struct tally {
    int numbered, complete, lost, running, queued, counted;
} tally;

static tally count(run *R) {
    tally c = {0};
    rf_err e = {0};
    int counts[RF_TRIAL_NSTATUS];
    assert_int_equal(rf_study_counts(R->st, counts, &e), RF_OK);
    c.running = counts[RF_TRIAL_RUNNING];
    c.queued = counts[RF_TRIAL_QUEUED];
    assert_int_equal(rf_study_refresh(R->st, &e), RF_OK);
    for (int i = 0; i < rf_study_n_finished(R->st); i++) {
        const rf_trial *t = rf_study_finished(R->st, i);
        c.numbered++;
        c.complete += t->status == RF_TRIAL_COMPLETE;
        c.lost += t->lost;
        c.counted += !t->lost;
    }
    return c;
}

static void test_coordinate_all_complete(void **state) {
    (void)state;
    run R;
    run_start(&R, "dist-all.db", 4);
    run_workers(&R);
    rf_dist_opts o = toy_opts(15);
    rf_dist_stats ds;
    rf_err e = {0};
    assert_int_equal(rf_dist_coordinate(R.st, R.smp, &R.n->tp[0], &o, NULL, NULL, &ds, &e), RF_OK);
    assert_int_equal(ds.n_workers, 3);
    assert_int_equal(ds.n_complete, 15);
    assert_int_equal(ds.n_lost, 0);
    assert_int_equal(ds.n_dead, 0);
    assert_true(ds.workers_stopped);
    tally c = count(&R);
    assert_int_equal(c.numbered, 15);
    assert_int_equal(c.complete, 15);
    assert_int_equal(c.running + c.queued, 0);
    /* each trial once, with its intermediate values; host/pid recorded (the workers are threads
     * of this process here); every worker took part */
    char host[64];
    rf_dist_hostname(host, sizeof host);
    for (int i = 0; i < rf_study_n_finished(R.st); i++) {
        const rf_trial *t = rf_study_finished(R.st, i);
        assert_int_equal(t->number, i);
        assert_string_equal(t->host, host);
        assert_int_equal(t->pid, (long)getpid());
        assert_int_equal(t->last_step, 2);
        assert_true(t->last_value == t->values[0]);
    }
    const rf_trial *b = rf_study_best(R.st, 0);
    assert_int_equal(ds.best_number, b->number);
    run_finish(&R);
    int total = 0;
    for (int r = 1; r < 4; r++) {
        assert_true(R.toys[r].n_evaluated >= 1);
        assert_int_equal(R.toys[r].serve_rc, RF_OK);
        total += R.toys[r].n_evaluated;
    }
    assert_int_equal(total, 15);
}

static void test_coordinate_worker_dies(void **state) {
    (void)state;
    run R;
    run_start(&R, "dist-dies.db", 4);
    /* worker 2 falls silent during its first trial from number 3 on, for 0.6 s (timeout 0.3 s),
     * then sends its result */
    R.toys[2].hang_number = 3;
    R.toys[2].hang_s = 0.6;
    for (int r = 1; r < 4; r++) R.toys[r].work_s = 0.03;
    run_workers(&R);
    rf_dist_opts o = toy_opts(60); /* about 1 s of work on the two live workers: the late result comes mid-run */
    rf_dist_stats ds;
    rf_err e = {0};
    const double t0 = rf_now();
    assert_int_equal(rf_dist_coordinate(R.st, R.smp, &R.n->tp[0], &o, NULL, NULL, &ds, &e), RF_OK);
    const double t1 = rf_now(), secs = t1 - t0;
    assert_int_equal(ds.n_dead, 1);
    assert_int_equal(ds.n_lost, 1);
    tally c = count(&R);
    assert_int_equal(c.counted, 60);     /* the requested count, the lost trial not counted */
    assert_int_equal(c.complete, 60);
    assert_int_equal(c.lost, 1);
    assert_int_equal(c.numbered, 61);
    assert_int_equal(c.running + c.queued, 0);
    /* the lost trial: its re-run completed on another worker with the same configuration */
    const rf_trial *lost = NULL, *again = NULL;
    for (int i = 0; i < rf_study_n_finished(R.st); i++)
        if (rf_study_finished(R.st, i)->lost) lost = rf_study_finished(R.st, i);
    assert_non_null(lost);
    assert_true(lost->number >= 3);
    for (int i = 0; i < rf_study_n_finished(R.st); i++)
        if (rf_study_finished(R.st, i)->requeued_from == lost->number) again = rf_study_finished(R.st, i);
    assert_int_equal(lost->status, RF_TRIAL_FAILED);
    assert_non_null(strstr(lost->error, "silent"));
    assert_non_null(again);
    assert_int_equal(again->status, RF_TRIAL_COMPLETE);
    assert_true(rf_config_equal(&again->cfg, &lost->cfg));
    /* the lost trial keeps what came before the silence (step 1 = f + 1); its late step 2 and
     * result were ignored */
    assert_int_equal(lost->last_step, 1);
    assert_true(fabs(lost->last_value - 1 - again->values[0]) < 1e-9);
    printf("worker died in trial %d: re-run as trial %d; run took %.2fs\n", lost->number, again->number, secs);
    /* the dead worker sent its late result while the coordinator still ran: dropped (the trial
     * stayed lost, the counts above hold) */
    assert_true(R.toys[2].late_at > 0 && R.toys[2].late_at < t1 - 0.05);
    run_finish(&R);
}

static void test_coordinate_setup_errors(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        run R;
        run_start(&R, variant ? "dist-check.db" : "dist-setup.db", 3);
        if (variant == 0) R.toys[2].fail_setup = 1;
        else R.toys[1].check = "other data";
        run_workers(&R);
        rf_dist_opts o = toy_opts(6);
        rf_dist_stats ds;
        rf_err e = {0};
        int rc = rf_dist_coordinate(R.st, R.smp, &R.n->tp[0], &o, NULL, NULL, &ds, &e);
        assert_int_not_equal(rc, RF_OK);
        printf("%s\n", e.msg);
        if (variant == 0) {
            assert_non_null(strstr(e.msg, "rank 2"));
            assert_non_null(strstr(e.msg, "/nowhere/x.npy"));
        } else {
            assert_non_null(strstr(e.msg, "rank 1"));
            assert_non_null(strstr(e.msg, "other data"));
        }
        assert_true(ds.workers_stopped);
        tally c = count(&R);
        assert_int_equal(c.running, 0); /* whatever was running was given back */
        run_finish(&R);
        if (variant == 0) assert_int_not_equal(R.toys[2].serve_rc, RF_OK);
    }
}

static void test_coordinate_all_die(void **state) {
    (void)state;
    run R;
    run_start(&R, "dist-alldie.db", 3);
    R.toys[1].hang_number = 0;
    R.toys[1].hang_s = 0.8;
    R.toys[2].hang_number = 1;
    R.toys[2].hang_s = 0.8;
    run_workers(&R);
    rf_dist_opts o = toy_opts(10);
    rf_dist_stats ds;
    rf_err e = {0};
    assert_int_equal(rf_dist_coordinate(R.st, R.smp, &R.n->tp[0], &o, NULL, NULL, &ds, &e), RF_ESTATE);
    assert_non_null(strstr(e.msg, "every worker"));
    assert_int_equal(ds.n_dead, 2);
    assert_int_equal(ds.n_lost, 2);
    tally c = count(&R);
    assert_int_equal(c.running, 0);
    assert_int_equal(c.queued, 2); /* both trials wait for the next run */
    assert_int_equal(c.lost, 2);
    run_finish(&R);
}

static volatile int g_stop;

static int stop_after_3(void *ctx, rf_study *st, const rf_trial *t, rf_dist_result *r, rf_err *e) {
    (void)st;
    (void)t;
    (void)r;
    (void)e;
    int *n = ctx;
    if (++*n == 3) g_stop = 1;
    return RF_OK;
}

static void test_coordinate_stop_flag(void **state) {
    (void)state;
    run R;
    run_start(&R, "dist-stop.db", 4);
    run_workers(&R);
    rf_dist_opts o = toy_opts(0);
    g_stop = 0;
    o.stop_flag = &g_stop;
    rf_dist_stats ds;
    rf_err e = {0};
    int n = 0;
    assert_int_equal(rf_dist_coordinate(R.st, R.smp, &R.n->tp[0], &o, stop_after_3, &n, &ds, &e), RF_OK);
    tally c = count(&R);
    assert_true(c.complete >= 3 && c.complete <= 5); /* the running ones were waited for */
    assert_int_equal(c.running, 0);
    assert_int_equal(ds.n_complete, c.complete);
    run_finish(&R);
    /* arguments */
    rf_dist_opts bad = toy_opts(0);
    assert_int_equal(rf_dist_coordinate(NULL, NULL, NULL, &bad, NULL, NULL, NULL, &e), RF_EARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_roundtrip),
        cmocka_unit_test(test_trial_roundtrip),
        cmocka_unit_test(test_launch_env),
        cmocka_unit_test(test_search_payload),
        cmocka_unit_test(test_evaluate_matches_objective),
        cmocka_unit_test(test_coordinate_all_complete),
        cmocka_unit_test(test_coordinate_worker_dies),
        cmocka_unit_test(test_coordinate_setup_errors),
        cmocka_unit_test(test_coordinate_all_die),
        cmocka_unit_test(test_coordinate_stop_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
