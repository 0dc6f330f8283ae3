/* The optimisation loop: ask, evaluate, tell; progress (trials done, best so far, ETA) on
 * stderr. Several processes may run it on one study at once. With a multi-fidelity sampler
 * (ASHA, Hyperband, BOHB) trials are claimed through rf_sampler_ask, so each carries its budget
 * (t->budget, e.g. epochs) to the objective, and max_total_budget can bound the study's total
 * budget. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mf_internal.h"

void rf_optimize_opts_default(rf_optimize_opts *o) {
    memset(o, 0, sizeof *o);
    o->progress = 1;
    o->requeue_stale = 1;
}

static void fmt_dur(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "?");
    } else if (s < 60) {
        snprintf(buf, n, "%.0fs", s);
    } else if (s < 3600) {
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    } else {
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    }
}

static void progress_line(rf_study *st, const rf_trial *t, const rf_optimize_opts *o, int done, double elapsed,
                          int counted, const rf_mf_info *mf, int is_mf) {
    const rf_objective *ob = rf_study_objective(st, 0);
    char what[160];
    if (t->status == RF_TRIAL_COMPLETE)
        snprintf(what, sizeof what, "complete %s=%.6g", ob->name, t->values[0]);
    else
        snprintf(what, sizeof what, "%s%s%.100s", rf_trial_status_name(t->status), t->error ? ": " : "",
                 t->error ? t->error : "");
    const rf_trial *b = is_mf ? rf_study_incumbent(st, 0) : rf_study_best(st, 0);
    char best[128] = "best -";
    if (b && is_mf)
        snprintf(best, sizeof best, "best %.6g (#%d, budget %g)", b->values[0], b->number, b->budget);
    else if (b)
        snprintf(best, sizeof best, "best %.6g (#%d)", b->values[0], b->number);
    char bud[128] = "";
    if (is_mf && mf->bracket >= 0)
        snprintf(bud, sizeof bud, " [budget %g, bracket %d rung %d%s]", t->budget, mf->bracket, mf->rung,
                 mf->promoted_from >= 0 ? ", promoted" : mf->reissued ? ", again" : "");
    else if (t->budget > 0)
        snprintf(bud, sizeof bud, " [budget %g]", t->budget);
    /* remaining trials of this call, as far as the limits tell */
    double per = done > 0 ? elapsed / done : NAN;
    double left = NAN;
    if (o->n_trials > 0) left = (o->n_trials - done) * per;
    if (o->max_total > 0) {
        double l2 = (o->max_total - counted) * per;
        if (l2 < 0) l2 = 0;
        left = isnan(left) || l2 < left ? l2 : left;
    }
    if (is_mf && o->max_total_budget > 0 && mf->total_budget > 0 && isfinite(mf->total_budget)) {
        /* elapsed time per unit of budget */
        double l4 = (o->max_total_budget - mf->total_budget) * elapsed / mf->total_budget;
        if (l4 < 0) l4 = 0;
        left = isnan(left) || l4 < left ? l4 : left;
    }
    if (o->time_budget > 0) {
        double l3 = o->time_budget - elapsed;
        if (l3 < 0) l3 = 0;
        left = isnan(left) || l3 < left ? l3 : left;
    }
    char eta[32], el[32];
    fmt_dur(left, eta, sizeof eta);
    fmt_dur(elapsed, el, sizeof el);
    char total[48] = "";
    if (o->n_trials > 0) snprintf(total, sizeof total, "/%d", o->n_trials);
    fprintf(stderr, "search: trial %d%s %s (%.2fs) | %d%s done, %s | %s | ETA %s\n", t->number, bud, what,
            isfinite(t->duration) ? t->duration : 0.0, done, total, el, best, isnan(left) ? "?" : eta);
    fflush(stderr);
}

int rf_study_optimize(rf_study *st, rf_sampler *s, rf_objective_fn fn, void *ctx, const rf_optimize_opts *opts,
                      rf_optimize_result *res, rf_err *e) {
    rf_optimize_opts dflt;
    if (!opts) {
        rf_optimize_opts_default(&dflt);
        opts = &dflt;
    }
    rf_optimize_result tmp;
    if (!res) res = &tmp;
    memset(res, 0, sizeof *res);
    res->best_number = -1;
    res->best_value = NAN;
    if (!fn) return rf_err_set(e, RF_EARG, "optimize: no objective function");
    const int is_mf = rf_sampler_is_multifidelity(s);
    if (!(opts->max_total_budget >= 0) || !isfinite(opts->max_total_budget))
        return rf_err_set(e, RF_EARG, "optimize: max_total_budget must be a finite number >= 0, got %g", opts->max_total_budget);
    if (opts->max_total_budget > 0 && !is_mf)
        return rf_err_set(e, RF_EARG, "optimize: max_total_budget needs a multi-fidelity sampler (asha, hyperband, bohb), not %s",
                          rf_sampler_name(s));
    if (opts->n_trials <= 0 && opts->max_total <= 0 && !(opts->time_budget > 0) && !opts->stop_flag &&
        !(opts->max_total_budget > 0))
        return rf_err_set(e, RF_EARG, "optimize: give a number of trials, a total, a total budget, a time budget or a stop flag");
    int rc = RF_OK;
    if (opts->requeue_stale) {
        int n = 0;
        rc = rf_study_requeue_stale(st, 1, &n, e);
        if (rc) return rc;
        if (n > 0 && opts->progress)
            fprintf(stderr, "search: %d trial%s of dead workers marked failed and queued again\n", n, n > 1 ? "s" : "");
    }
    const int M = rf_study_n_objectives(st);
    const double t0 = rf_now();
    for (;;) {
        if (opts->stop_flag && *opts->stop_flag) break;
        if (opts->n_trials > 0 && res->n_run >= opts->n_trials) break;
        if (opts->time_budget > 0 && rf_now() - t0 >= opts->time_budget) break;
        rf_trial *t = NULL;
        rf_mf_info mf;
        rc = rf_sampler_ask(s, st, opts->max_total, opts->max_total_budget, &t, &mf, e);
        if (rc) break;
        if (!t) break; /* the study holds max_total trials (or its budget is spent) */
        rf_eval_result r;
        memset(&r, 0, sizeof r);
        r.status = RF_TRIAL_COMPLETE;
        for (int k = 0; k < RF_MAX_OBJECTIVES; k++) r.values[k] = NAN;
        rf_err fe = {0};
        int frc = fn(ctx, st, t, &r, &fe);
        if (frc) {
            /* the loop stops; the trial is failed with the message */
            rf_err te = {0};
            rf_study_tell(st, t, RF_TRIAL_FAILED, NULL, 0, fe.msg[0] ? fe.msg : rf_status_name(frc), &te);
            rc = rf_err_set(e, frc, "trial %d: %s", t->number, fe.msg[0] ? fe.msg : rf_status_name(frc));
            rf_trial_free(t);
            break;
        }
        if (r.status == RF_TRIAL_QUEUED) {
            /* not evaluated (interrupted): give it back for a later run */
            rc = rf_study_fail_lost(st, t->number, "interrupted", 1, e);
            rf_trial_free(t);
            break;
        }
        if (r.status == RF_TRIAL_COMPLETE) {
            for (int k = 0; k < M; k++)
                if (!isfinite(r.values[k])) {
                    r.status = RF_TRIAL_FAILED;
                    snprintf(r.reason, sizeof r.reason, "objective '%s' is %g", rf_study_objective(st, k)->name, r.values[k]);
                    break;
                }
        } else if (r.status != RF_TRIAL_FAILED && r.status != RF_TRIAL_PRUNED) {
            r.status = RF_TRIAL_FAILED;
            snprintf(r.reason, sizeof r.reason, "objective returned status %d", (int)r.status);
        }
        r.reason[sizeof r.reason - 1] = '\0';
        rc = rf_study_tell(st, t, r.status, r.status == RF_TRIAL_COMPLETE ? r.values : NULL,
                           r.status == RF_TRIAL_COMPLETE ? M : 0, r.reason[0] ? r.reason : NULL, e);
        if (rc) {
            rf_trial_free(t);
            break;
        }
        res->n_run++;
        res->budget_used += t->budget;
        if (r.status == RF_TRIAL_COMPLETE) res->n_complete++;
        else if (r.status == RF_TRIAL_FAILED) res->n_failed++;
        else res->n_pruned++;
        rc = rf_study_refresh(st, e);
        if (rc) {
            rf_trial_free(t);
            break;
        }
        if (opts->progress) {
            int counted = 0;
            for (int i = 0; i < rf_study_n_finished(st); i++) counted += !rf_study_finished(st, i)->lost;
            progress_line(st, t, opts, res->n_run, rf_now() - t0, counted, &mf, is_mf);
        }
        rf_trial_free(t);
    }
    res->seconds = rf_now() - t0;
    const rf_trial *b = rf_study_best(st, 0);
    if (is_mf && rf_study_incumbent(st, 0)) b = rf_study_incumbent(st, 0); /* the best at the largest budget */
    if (b) {
        res->best_number = b->number;
        res->best_value = b->values[0];
    }
    return rc;
}
