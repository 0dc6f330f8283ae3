/* The coordinator (rank 0): owns the study and the sampler, hands one trial at a time to each
 * idle worker, stores what the workers send back, and watches them: a worker whose process is
 * gone (on this host) or that has been silent for longer than the timeout is dead; its running
 * trial is marked failed + lost and queued again (rf_study_fail_lost), so a live worker runs it
 * and the study counts it once. It never blocks on a worker: messages are polled with a short
 * timeout and sends are queued. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "../core/json_util.h"
#include "../search/search_internal.h"
#include "renflow/dist.h"

void rf_dist_opts_default(rf_dist_opts *o) {
    memset(o, 0, sizeof *o);
    o->progress = 1;
    o->requeue_stale = 1;
    o->timeout = 30;
    o->fence = 1;
    o->check_pids = 1;
}

typedef enum { W_SETUP = 0, W_IDLE, W_BUSY, W_DEAD } wstate;

typedef struct worker {
    wstate state;
    char host[64];
    long pid;
    long long pid_start;
    int same_host;
    rf_trial *trial;
    int n_done;
} worker;

typedef struct coord {
    rf_study *st;
    rf_sampler *s;
    rf_dist_transport *tp;
    const rf_dist_opts *o;
    rf_dist_stats *stats;
    worker *w; /* w[1..size-1] */
    int n;
    char host[64];
    int M, is_mf;
    double t0;
    int n_started;       /* trials handed out (lost ones included) */
    int limit_reached;   /* the sampler gave no trial: the study is at its limits */
} coord;

static const char *peer_desc(const coord *c, int w, char *buf, size_t n) {
    const worker *x = &c->w[w];
    if (x->pid > 0) snprintf(buf, n, "rank %d (pid %ld on %s)", w, x->pid, x->host);
    else snprintf(buf, n, "rank %d", w);
    return buf;
}

static void fmt_dur(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void progress_line(coord *c, const rf_trial *t, int w) {
    const rf_objective *ob = rf_study_objective(c->st, 0);
    char what[160];
    if (t->status == RF_TRIAL_COMPLETE)
        snprintf(what, sizeof what, "complete %s=%.6g", ob->name, t->values[0]);
    else
        snprintf(what, sizeof what, "%s%s%.100s", rf_trial_status_name(t->status), t->error ? ": " : "",
                 t->error ? t->error : "");
    const rf_trial *b = c->is_mf ? rf_study_incumbent(c->st, 0) : rf_study_best(c->st, 0);
    char best[128] = "best -";
    if (b) snprintf(best, sizeof best, "best %.6g (#%d)", b->values[0], b->number);
    char bud[48] = "";
    if (t->budget > 0) snprintf(bud, sizeof bud, " [budget %g]", t->budget);
    const double elapsed = rf_now() - c->t0;
    const int done = c->stats->n_run;
    const double per = done > 0 ? elapsed / done : NAN;
    double left = NAN;
    if (c->o->n_trials > 0) left = (c->o->n_trials - done) * per;
    if (c->o->max_total > 0) {
        int counted = 0;
        for (int i = 0; i < rf_study_n_finished(c->st); i++) counted += !rf_study_finished(c->st, i)->lost;
        double l2 = (c->o->max_total - counted) * per;
        if (l2 < 0) l2 = 0;
        left = isnan(left) || l2 < left ? l2 : left;
    }
    if (c->o->time_budget > 0) {
        double l3 = c->o->time_budget - elapsed;
        if (l3 < 0) l3 = 0;
        left = isnan(left) || l3 < left ? l3 : left;
    }
    char eta[32], el[32];
    fmt_dur(left, eta, sizeof eta);
    fmt_dur(elapsed, el, sizeof el);
    fprintf(stderr, "search: trial %d%s %s (%.2fs, rank %d) | %d done, %s | %s | ETA %s\n", t->number, bud, what,
            isfinite(t->duration) ? t->duration : 0.0, w, done, el, best, isnan(left) ? "?" : eta);
    fflush(stderr);
}

/* 1 when the process of worker w runs on this host and is gone (or its pid now belongs to a later
 * process). */
static int process_gone(const coord *c, int w) {
    const worker *x = &c->w[w];
    if (!x->same_host || x->pid <= 0) return 0;
    if (kill((pid_t)x->pid, 0) == -1 && errno == ESRCH) return 1;
    long long ps = rf_dist_pid_start(x->pid);
    return x->pid_start >= 0 && ps >= 0 && ps != x->pid_start;
}

/* Worker w is dead: its running trial is lost and queued again; a process that still runs on
 * this host is killed (fence), so that it cannot hold the job open. */
static int declare_dead(coord *c, int w, const char *why, rf_err *e) {
    worker *x = &c->w[w];
    char d[160];
    peer_desc(c, w, d, sizeof d);
    int rc = RF_OK;
    if (x->state == W_BUSY && x->trial) {
        char reason[400];
        snprintf(reason, sizeof reason, "worker died: %s %s", d, why);
        rc = rf_study_fail_lost(c->st, x->trial->number, reason, 1, e);
        if (rc == RF_ESTATE) rc = RF_OK; /* no longer running: nothing to give back */
        else if (!rc) {
            c->stats->n_lost++;
            c->limit_reached = 0; /* the queued trial is counted anew: ask again */
        }
        if (c->o->progress)
            fprintf(stderr, "search: %s %s: trial %d is queued again for another worker\n", d, why, x->trial->number);
        rf_trial_free(x->trial);
        x->trial = NULL;
    } else if (c->o->progress) {
        fprintf(stderr, "search: %s %s\n", d, why);
    }
    if (c->o->fence && x->same_host && x->pid > 0 && x->pid != (long)getpid() && kill((pid_t)x->pid, 0) == 0) {
        long long ps = rf_dist_pid_start(x->pid);
        if (x->pid_start < 0 || ps == x->pid_start) {
            kill((pid_t)x->pid, SIGKILL);
            if (c->o->progress) fprintf(stderr, "search: %s still ran: killed it, so that the job can end\n", d);
        }
    }
    c->tp->ops->forget(c->tp, w);
    x->state = W_DEAD;
    c->stats->n_dead++;
    fflush(stderr);
    return rc;
}

static int send_text(coord *c, int w, int tag, const char *text, rf_err *e) {
    return c->tp->ops->send(c->tp, w, tag, text, text ? strlen(text) : 0, e);
}

/* Hands the next trial to idle worker w. *none = 1 when the study is at its limits. */
static int dispatch(coord *c, int w, int *none, rf_err *e) {
    *none = 0;
    rf_trial *t = NULL;
    int rc = rf_sampler_ask(c->s, c->st, c->o->max_total, c->o->max_total_budget, &t, NULL, e);
    if (rc) return rc;
    if (!t) {
        *none = 1;
        return RF_OK;
    }
    worker *x = &c->w[w];
    rc = rf_dist_study_set_worker(rf_study_path(c->st), t, x->host, x->pid, x->pid_start, e);
    char *msg = rc ? NULL : rf_dist_trial_encode(rf_study_space(c->st), t);
    if (!rc && !msg) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
    if (rc) { /* give the trial back: a resumed study runs it */
        rf_err le = {0};
        rf_study_fail_lost(c->st, t->number, "not handed out: the coordinator failed", 1, &le);
        rf_trial_free(t);
        return rc;
    }
    c->n_started++;
    x->trial = t;
    x->state = W_BUSY;
    rf_err se = {0};
    int src = send_text(c, w, RF_DIST_TRIAL, msg, &se);
    free(msg);
    if (src) {
        char why[1100];
        snprintf(why, sizeof why, "cannot be reached (%.1000s)", se.msg);
        return declare_dead(c, w, why, e);
    }
    return RF_OK;
}

static int on_hello(coord *c, int w, const unsigned char *buf, size_t len, rf_err *e) {
    worker *x = &c->w[w];
    cJSON *j = buf ? cJSON_ParseWithLength((const char *)buf, len) : NULL;
    int rc = RF_OK;
    if (!cJSON_IsObject(j)) {
        rc = rf_err_set(e, RF_EFORMAT, "rank %d: its HELLO is not a JSON object", w);
    } else if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"))) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "host");
        rc = rf_err_set(e, RF_EARG, "rank %d%s%s: setup failed: %.800s", w, cJSON_IsString(h) ? " on " : "",
                        cJSON_IsString(h) ? h->valuestring : "", cJSON_IsString(m) ? m->valuestring : "(no message)");
    } else {
        const char *host = NULL, *check = NULL;
        double pid = 0, ps = -1;
        rc = rf_json_get_string(j, "host", &host, e);
        if (!rc) rc = rf_json_get_number(j, "pid", &pid, e);
        if (!rc) rc = rf_json_get_number(j, "pid_start", &ps, e);
        if (!rc) rc = rf_json_get_string(j, "check", &check, e);
        if (rc) {
            rf_err_prefix(e, rc, "rank %d: HELLO", w);
        } else {
            snprintf(x->host, sizeof x->host, "%s", host);
            x->pid = (long)pid;
            x->pid_start = (long long)ps;
            x->same_host = strcmp(x->host, c->host) == 0;
            if (c->o->check && strcmp(check, c->o->check) != 0)
                rc = rf_err_set(e, RF_EARG, "rank %d on %s: its task differs from rank 0's (%.100s, not %.100s): every "
                                "host needs the same data files", w, x->host, check, c->o->check);
        }
    }
    cJSON_Delete(j);
    if (!rc) {
        x->state = W_IDLE;
        c->stats->n_workers++;
    }
    return rc;
}

static int on_report(coord *c, int w, const unsigned char *buf, size_t len, rf_err *e) {
    worker *x = &c->w[w];
    cJSON *j = buf ? cJSON_ParseWithLength((const char *)buf, len) : NULL;
    int number = -1, rc = RF_OK;
    double step = 0;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
    rf_err pe = {0};
    if (!cJSON_IsObject(j) || rf_json_get_int(j, "number", &number, &pe) || rf_json_get_number(j, "step", &step, &pe) ||
        step != floor(step) || !(cJSON_IsNumber(v) || cJSON_IsNull(v))) {
        if (c->o->progress) fprintf(stderr, "search: rank %d sent a damaged intermediate value (ignored)\n", w);
    } else if (x->state == W_BUSY && x->trial && x->trial->number == number) {
        rc = rf_study_report(c->st, x->trial, (long)step, cJSON_IsNumber(v) ? v->valuedouble : NAN, e);
        if (rc == RF_ESTATE) rc = RF_OK; /* the trial is no longer running */
    }
    cJSON_Delete(j);
    return rc;
}

static int on_result(coord *c, int w, const unsigned char *buf, size_t len, rf_dist_result_fn fn, void *ctx,
                     rf_err *e) {
    worker *x = &c->w[w];
    if (x->state != W_BUSY || !x->trial) return RF_OK; /* nothing asked: stale */
    rf_trial *t = x->trial;
    rf_dist_result r;
    rf_err de = {0};
    if (rf_dist_result_decode(buf, len, &r, &de)) {
        rf_dist_result_init(&r, t->number);
        r.status = RF_TRIAL_FAILED;
        snprintf(r.reason, sizeof r.reason, "damaged result from rank %d: %.200s", w, de.msg);
    } else if (r.number != t->number) {
        rf_dist_result_free(&r);
        return RF_OK; /* a result for an earlier trial (already given away): ignored */
    }
    if (r.status == RF_TRIAL_COMPLETE && r.n_values != c->M) {
        r.status = RF_TRIAL_FAILED;
        snprintf(r.reason, sizeof r.reason, "rank %d sent %d values for %d objectives", w, r.n_values, c->M);
    }
    int rc = RF_OK;
    if (fn) {
        rf_err fe = {0};
        int frc = fn(ctx, c->st, t, &r, &fe);
        if (frc) { /* the run stops; the trial is failed with the message */
            rf_err te = {0};
            rf_study_tell(c->st, t, RF_TRIAL_FAILED, NULL, 0, fe.msg[0] ? fe.msg : rf_status_name(frc), &te);
            rc = rf_err_set(e, frc, "trial %d: %s", t->number, fe.msg[0] ? fe.msg : rf_status_name(frc));
        }
    }
    if (!rc) {
        r.reason[sizeof r.reason - 1] = '\0';
        const int complete = r.status == RF_TRIAL_COMPLETE;
        rc = rf_study_tell(c->st, t, r.status, complete ? r.values : NULL, complete ? c->M : 0,
                           complete ? NULL : (r.reason[0] ? r.reason : "failed on the worker"), e);
        if (rc == RF_ESTATE) { /* someone else finished it (e.g. declared it lost): not counted twice */
            if (c->o->progress) fprintf(stderr, "search: rank %d: result of trial %d dropped: %s\n", w, t->number, e->msg);
            rf_err_clear(e);
            rc = RF_OK;
        } else if (!rc) {
            c->stats->n_run++;
            c->stats->budget_used += t->budget;
            if (t->status == RF_TRIAL_COMPLETE) c->stats->n_complete++;
            else if (t->status == RF_TRIAL_FAILED) c->stats->n_failed++;
            else c->stats->n_pruned++;
            rc = rf_study_refresh(c->st, e);
            if (!rc && c->o->progress) progress_line(c, t, w);
        }
    }
    rf_dist_result_free(&r);
    rf_trial_free(t);
    x->trial = NULL;
    x->state = W_IDLE;
    x->n_done++;
    return rc;
}

static int count_state(const coord *c, wstate s) {
    int n = 0;
    for (int w = 1; w < c->n; w++) n += c->w[w].state == s;
    return n;
}

static char *setup_text(const coord *c, rf_err *e) {
    cJSON *j = cJSON_CreateObject();
    cJSON *sp = rf_space_to_json(rf_study_space(c->st));
    if (!j || !sp) {
        cJSON_Delete(j);
        cJSON_Delete(sp);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    cJSON_AddNumberToObject(j, "protocol", RF_DIST_PROTOCOL);
    cJSON_AddItemToObject(j, "space", sp);
    cJSON_AddNumberToObject(j, "objectives", c->M);
    if (c->o->payload) cJSON_AddStringToObject(j, "payload", c->o->payload);
    else cJSON_AddNullToObject(j, "payload");
    char *text = rf__json_print_exact(j);
    cJSON_Delete(j);
    if (!text) rf_err_set(e, RF_ENOMEM, "out of memory");
    return text;
}

int rf_dist_coordinate(rf_study *st, rf_sampler *s, rf_dist_transport *tp, const rf_dist_opts *opts,
                       rf_dist_result_fn fn, void *ctx, rf_dist_stats *stats, rf_err *e) {
    rf_dist_opts dflt;
    if (!opts) {
        rf_dist_opts_default(&dflt);
        opts = &dflt;
    }
    rf_dist_stats tmp;
    if (!stats) stats = &tmp;
    memset(stats, 0, sizeof *stats);
    stats->best_number = -1;
    stats->best_value = NAN;
    if (!st || !s || !tp || !tp->ops) return rf_err_set(e, RF_EARG, "dist: coordinate needs a study, a sampler and a transport");
    if (tp->rank != 0 || tp->size < 2)
        return rf_err_set(e, RF_EARG, "dist: the coordinator is rank 0 of at least 2 (this is rank %d of %d)", tp->rank, tp->size);
    if (!(opts->timeout > 0) || !isfinite(opts->timeout))
        return rf_err_set(e, RF_EARG, "dist: the worker timeout must be a positive number of seconds, got %g", opts->timeout);
    if (!(opts->max_total_budget >= 0) || !isfinite(opts->max_total_budget))
        return rf_err_set(e, RF_EARG, "dist: max_total_budget must be a finite number >= 0, got %g", opts->max_total_budget);
    const int is_mf = rf_sampler_is_multifidelity(s);
    if (opts->max_total_budget > 0 && !is_mf)
        return rf_err_set(e, RF_EARG, "dist: max_total_budget needs a multi-fidelity sampler (asha, hyperband, bohb), not %s",
                          rf_sampler_name(s));
    if (opts->n_trials <= 0 && opts->max_total <= 0 && !(opts->time_budget > 0) && !opts->stop_flag &&
        !(opts->max_total_budget > 0))
        return rf_err_set(e, RF_EARG, "dist: give a number of trials, a total, a total budget, a time budget or a stop flag");
    coord c;
    memset(&c, 0, sizeof c);
    c.st = st;
    c.s = s;
    c.tp = tp;
    c.o = opts;
    c.stats = stats;
    c.n = tp->size;
    c.M = rf_study_n_objectives(st);
    c.is_mf = is_mf;
    rf_dist_hostname(c.host, sizeof c.host);
    c.w = rf_zalloc(sizeof *c.w * (size_t)c.n, e);
    if (!c.w) return RF_ENOMEM;
    for (int w = 1; w < c.n; w++) c.w[w].pid_start = -1;
    int rc = RF_OK;
    if (opts->requeue_stale) {
        int n = 0;
        rc = rf_study_requeue_stale(st, 1, &n, e);
        if (!rc && n > 0 && opts->progress)
            fprintf(stderr, "search: %d trial%s of dead workers marked failed and queued again\n", n, n > 1 ? "s" : "");
    }
    char *setup = rc ? NULL : setup_text(&c, e);
    if (!rc && !setup) rc = RF_ENOMEM;
    c.t0 = rf_now();
    for (int w = 1; w < c.n && !rc; w++) {
        rf_err se = {0};
        if (send_text(&c, w, RF_DIST_SETUP, setup, &se)) {
            char why[1100];
            snprintf(why, sizeof why, "cannot be reached (%.1000s)", se.msg);
            rc = declare_dead(&c, w, why, e);
        }
    }
    free(setup);
    int stopping = 0; /* no new trials: stop flag, time budget or n_trials */
    while (!rc) {
        const double now = rf_now();
        /* 1. who is alive */
        for (int w = 1; w < c.n && !rc; w++) {
            worker *x = &c.w[w];
            if (x->state == W_DEAD) continue;
            char why[128] = "";
            double quiet = tp->ops->silence(tp, w);
            if (opts->check_pids && process_gone(&c, w)) snprintf(why, sizeof why, "died (its process is gone)");
            else if (quiet > opts->timeout) snprintf(why, sizeof why, "has been silent for %.0f s (timeout %g s)", quiet, opts->timeout);
            else if (x->state == W_SETUP && opts->setup_timeout > 0 && now - c.t0 > opts->setup_timeout)
                snprintf(why, sizeof why, "did not finish its setup in %g s", opts->setup_timeout);
            if (why[0]) rc = declare_dead(&c, w, why, e);
        }
        if (rc) break;
        /* 2. limits, then work for the idle workers */
        if (!stopping) {
            if (opts->stop_flag && *opts->stop_flag) stopping = 1;
            if (opts->time_budget > 0 && now - c.t0 >= opts->time_budget) stopping = 1;
        }
        /* this call's quota (lost trials do not count: their re-runs do) */
        int quota_full = opts->n_trials > 0 && c.n_started - stats->n_lost >= opts->n_trials;
        for (int w = 1; w < c.n && !rc && !stopping && !c.limit_reached && !quota_full; w++) {
            if (c.w[w].state != W_IDLE) continue;
            int none = 0;
            rc = dispatch(&c, w, &none, e);
            if (none) c.limit_reached = 1;
            quota_full = opts->n_trials > 0 && c.n_started - stats->n_lost >= opts->n_trials;
        }
        if (rc) break;
        /* 3. the end: nothing running, nothing more to hand out */
        const int n_busy = count_state(&c, W_BUSY), n_setup = count_state(&c, W_SETUP);
        const int n_live = c.n - 1 - count_state(&c, W_DEAD);
        if (n_busy == 0 && n_setup == 0 && (stopping || c.limit_reached || quota_full)) break;
        if (n_live == 0) {
            if (stopping || quota_full) break;
            rc = rf_err_set(e, RF_ESTATE,
                            "every worker rank died (%d trial%s lost with them, queued again); the study keeps every "
                            "finished trial: run the search again to continue", stats->n_lost, stats->n_lost == 1 ? "" : "s");
            break;
        }
        /* 4. messages */
        for (int k = 0; k < 64 && !rc; k++) { /* a burst at most, then the checks again */
            int peer = -1, tag = 0;
            unsigned char *buf = NULL;
            size_t len = 0;
            rc = tp->ops->recv(tp, -1, k == 0 ? 0.05 : 0, &peer, &tag, &buf, &len, e);
            if (rc || peer < 0) {
                free(buf);
                break;
            }
            if (peer >= 1 && peer < c.n && c.w[peer].state != W_DEAD) {
                if (tag == RF_DIST_HELLO && c.w[peer].state == W_SETUP) rc = on_hello(&c, peer, buf, len, e);
                else if (tag == RF_DIST_REPORT) rc = on_report(&c, peer, buf, len, e);
                else if (tag == RF_DIST_RESULT) rc = on_result(&c, peer, buf, len, fn, ctx, e);
            }
            free(buf);
        }
    }
    /* running trials are never left as `running`: a resumed study runs them */
    for (int w = 1; w < c.n; w++) {
        worker *x = &c.w[w];
        if (x->state == W_BUSY && x->trial) {
            rf_err le = {0};
            if (rf_study_fail_lost(st, x->trial->number, "the coordinator stopped before its result came", 1, &le) == RF_OK)
                stats->n_lost++;
            rf_trial_free(x->trial);
            x->trial = NULL;
        }
        if (x->state != W_DEAD) {
            rf_err se = {0};
            static const char lost[] = "peer-lost";
            tp->ops->send(tp, w, RF_DIST_STOP, stats->n_dead ? lost : NULL, stats->n_dead ? sizeof lost - 1 : 0, &se);
        }
    }
    stats->workers_stopped = 1;
    free(c.w);
    stats->seconds = rf_now() - c.t0;
    rf_err re = {0};
    if (rf_study_refresh(st, &re) == RF_OK) {
        const rf_trial *b = rf_study_best(st, 0);
        if (is_mf && rf_study_incumbent(st, 0)) b = rf_study_incumbent(st, 0);
        if (b) {
            stats->best_number = b->number;
            stats->best_value = b->values[0];
        }
    }
    return rc;
}
