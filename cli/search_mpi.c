/* renflow search under mpirun: MPI starts before the arguments are read; workers take their
 * task and settings from rank 0 (never from their own arguments or the study file), rank 0 runs
 * the usual search with rf_dist_coordinate in place of rf_study_optimize. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "search_mpi.h"

/* MPI is started once per process and ended at exit: process-wide by nature. */
static struct {
    rf_dist_transport *tp;
    double timeout;
    int stopped; /* the workers were sent STOP */
} g_mpi;

static void mpi_at_exit(void) {
    if (!g_mpi.tp) return;
    if (g_mpi.tp->rank == 0 && !g_mpi.stopped) /* the search never reached the workers: release them */
        for (int w = 1; w < g_mpi.tp->size; w++) g_mpi.tp->ops->send(g_mpi.tp, w, RF_DIST_STOP, NULL, 0, NULL);
    rf_dist_transport_free(g_mpi.tp);
    g_mpi.tp = NULL;
}

int rf_cli_search_mpi_ranks(void) { return g_mpi.tp && g_mpi.tp->rank == 0 ? g_mpi.tp->size : 1; }

int rf_cli_search_mpi_enter(int *argc, char ***argv, int *exit_code) {
    static const char *C = "search";
    *exit_code = RF_EXIT_OK;
    int rank = 0;
    const int size = rf_dist_launch_size(&rank);
    if (size <= 1) return 0;
    if (!rf_dist_have_mpi()) {
        if (rank == 0)
            fprintf(stderr, "renflow %s: error: started by mpirun (or another MPI launcher) with %d processes, but this "
                            "renflow was built without MPI: install libopenmpi-dev and rebuild (CMake finds it), or run "
                            "renflow search without mpirun\n", C, size);
        *exit_code = RF_EXIT_ERROR;
        return 1;
    }
    double timeout = 30;
    const char *ts = getenv("RENFLOW_MPI_TIMEOUT");
    if (ts && *ts) {
        char *end = NULL;
        errno = 0;
        timeout = strtod(ts, &end);
        if (errno || *end || !(timeout >= 0.5) || !(timeout <= 86400)) {
            if (rank == 0)
                fprintf(stderr, "renflow %s: error: RENFLOW_MPI_TIMEOUT: expected seconds in [0.5, 86400], got '%s'\n", C, ts);
            *exit_code = RF_EXIT_USAGE;
            return 1;
        }
    }
    const double interval = timeout / 10 < 1 ? timeout / 10 : 1;
    rf_err e = {0};
    rf_dist_transport *tp = rf_dist_mpi_start(argc, argv, interval, timeout, &e);
    if (!tp) {
        fprintf(stderr, "renflow %s: error: MPI rank %d: %s\n", C, rank, e.msg);
        *exit_code = RF_EXIT_ERROR;
        return 1;
    }
    if (tp->size <= 1) { /* a launcher's variables but a job of one: an ordinary search */
        rf_dist_transport_free(tp);
        return 0;
    }
    g_mpi.tp = tp;
    g_mpi.timeout = timeout;
    if (tp->rank == 0) {
        atexit(mpi_at_exit);
        return 0;
    }
    rf_dist_serve_stats ss;
    int rc = rf_dist_serve(tp, &rf_dist_search_worker_ops, NULL, &ss, &e);
    if (rc) fprintf(stderr, "renflow %s: MPI rank %d: error: %s\n", C, tp->rank, e.msg);
    if (ss.peer_lost) rf_dist_mpi_skip_finalize(tp); /* another worker died: MPI_Finalize may hang */
    g_mpi.tp = NULL;
    rf_dist_transport_free(tp);
    *exit_code = rc ? RF_EXIT_ERROR : RF_EXIT_OK;
    return 1;
}

int rf_cli_search_mpi_optimize(rf_study *st, rf_sampler *s, const rf_search_job *job, const rf_dist_task_src *src,
                               const rf_optimize_opts *o, rf_optimize_result *res, rf_err *e) {
    rf_optimize_result tmp;
    if (!res) res = &tmp;
    memset(res, 0, sizeof *res);
    res->best_number = -1;
    res->best_value = NAN;
    if (!g_mpi.tp || g_mpi.tp->rank != 0) return rf_err_set(e, RF_ESTATE, "search: not rank 0 of an MPI run");
    if (!s) return rf_err_set(e, RF_EARG, "search: this strategy has no sampler, so it cannot run on MPI workers");
    char *payload = rf_dist_search_payload(job, src, rf_study_path(st), rf_study_name(st), job->out_dir != NULL, e);
    if (!payload) return e ? e->code : RF_ENOMEM;
    rf_dist_opts d;
    rf_dist_opts_default(&d);
    if (o) {
        d.n_trials = o->n_trials;
        d.max_total = o->max_total;
        d.time_budget = o->time_budget;
        d.max_total_budget = o->max_total_budget;
        d.stop_flag = o->stop_flag;
        d.progress = o->progress;
        d.requeue_stale = o->requeue_stale;
    }
    d.timeout = g_mpi.timeout;
    d.payload = payload;
    d.check = job->task->fingerprint;
    if (d.progress) {
        fprintf(stderr, "search: MPI: rank 0 coordinates %d worker rank%s (a worker silent for %g s is dead)\n",
                g_mpi.tp->size - 1, g_mpi.tp->size > 2 ? "s" : "", d.timeout);
        const char *rec = getenv("OMPI_MCA_orte_enable_recovery");
        if (getenv("OMPI_COMM_WORLD_SIZE") && !(rec && (!strcmp(rec, "1") || !strcmp(rec, "true"))))
            fprintf(stderr, "search: MPI: note: without mpirun --enable-recovery, Open MPI ends the whole job when a rank "
                            "dies (run the command again: the study resumes and re-runs the lost trials)\n");
    }
    rf_dist_stats ds;
    int rc = rf_dist_coordinate(st, s, g_mpi.tp, &d, rf_dist_search_keep, (void *)job, &ds, e);
    if (ds.workers_stopped) g_mpi.stopped = 1;
    free(payload);
    res->n_run = ds.n_run;
    res->n_complete = ds.n_complete;
    res->n_failed = ds.n_failed;
    res->n_pruned = ds.n_pruned;
    res->seconds = ds.seconds;
    res->best_number = ds.best_number;
    res->best_value = ds.best_value;
    res->budget_used = ds.budget_used;
    if (d.progress && (ds.n_lost || ds.n_dead))
        fprintf(stderr, "search: MPI: %d worker%s died; %d trial%s queued again and run by the others\n", ds.n_dead,
                ds.n_dead == 1 ? "" : "s", ds.n_lost, ds.n_lost == 1 ? " was" : "s were");
    return rc;
}
