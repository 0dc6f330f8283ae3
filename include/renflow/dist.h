/* renflow dist: a search spread over processes, e.g. the ranks of `mpirun -np N renflow search`.
 *
 * One coordinator (rank 0) owns the study file and the sampler: it claims trials
 * (rf_sampler_ask), sends each configuration to an idle worker, stores the intermediate values
 * and results the workers send back (rf_study_report, rf_study_tell) and records in each trial
 * the host and pid of the worker that evaluated it. Workers (ranks 1..N-1) never open the study:
 * they build their task from the setup text rank 0 sends (each loads the data itself), evaluate
 * trials and send results. A worker that dies, or is silent for longer than the timeout, has its
 * running trial marked failed + lost and queued again (rf_study_fail_lost), so the trial runs
 * again on a live worker: it is neither lost nor counted twice; anything the dead worker sends
 * later is ignored.
 *
 * Messages go through an rf_dist_transport: MPI (rf_dist_mpi_start) or any other
 * implementation of its operations (the tests use an in-process one). Protocol, worker w:
 *   0 -> w  SETUP   {"protocol", "space", "objectives", "payload"}   once, first
 *   w -> 0  HELLO   {"ok", "host", "pid", "pid_start", "check"} or {"ok": false, "error"}
 *   0 -> w  TRIAL   {"number", "seed", "budget", "config"}           (rf_dist_trial_encode)
 *   w -> 0  REPORT  {"number", "step", "value"}                      intermediate values
 *   w -> 0  RESULT  "RFDR", u32 length, JSON, model bytes            (rf_dist_result_encode)
 *   0 -> w  STOP    the run is over (also before SETUP: the coordinator never started); the
 *                   text "peer-lost" when a worker died (rf_dist_mpi_skip_finalize)
 *   both    KEEPALIVE, handled inside the transport (rf_dist_transport_ops.silence)
 *
 * With Open MPI, a rank that dies takes the whole job down unless mpirun runs with
 * --enable-recovery (MCA orte_enable_recovery=1); the study then resumes where it was (the dead
 * workers' trials are re-queued by rf_study_requeue_stale, since they record the workers' pids).
 */
#ifndef RENFLOW_DIST_H
#define RENFLOW_DIST_H

#include "renflow/search.h"
#include "renflow/search_job.h"

enum {
    RF_DIST_SETUP = 1,
    RF_DIST_HELLO = 2,
    RF_DIST_TRIAL = 3,
    RF_DIST_REPORT = 4,
    RF_DIST_RESULT = 5,
    RF_DIST_STOP = 6,
    RF_DIST_KEEPALIVE = 7
};
#define RF_DIST_PROTOCOL 1
#define RF_DIST_CHECK_MAX 128
/* Messages larger than this are refused (a model file of a few hundred MB fits). */
#define RF_DIST_MAX_MESSAGE ((size_t)1 << 30)

/* ======================================================================================
 * Transport
 * ====================================================================================== */

typedef struct rf_dist_transport rf_dist_transport;
typedef struct rf_dist_transport_ops {
    const char *name;
    /* Queues a message of len bytes (copied) for peer; never waits for the peer, so a dead peer
     * cannot block the caller. An error means the peer cannot be reached. Thread-safe. */
    int (*send)(rf_dist_transport *tp, int peer, int tag, const void *buf, size_t len, rf_err *e);
    /* The next message from `from` (-1: any peer), waiting at most timeout seconds; keepalives
     * are consumed inside. *peer = -1 (RF_OK) when none came. *buf is malloc'd (NULL for an
     * empty message; the caller frees it). */
    int (*recv)(rf_dist_transport *tp, int from, double timeout, int *peer, int *tag, unsigned char **buf,
                size_t *len, rf_err *e);
    /* Seconds since anything (a keepalive included) was last heard from peer. */
    double (*silence)(rf_dist_transport *tp, int peer);
    /* The peer is dead: no more keepalives to it; what was queued for it is dropped. */
    void (*forget)(rf_dist_transport *tp, int peer);
    /* Frees the transport (MPI: and finalises MPI). */
    void (*destroy)(rf_dist_transport *tp);
} rf_dist_transport_ops;

struct rf_dist_transport {
    const rf_dist_transport_ops *ops;
    void *impl;
    int rank; /* 0: the coordinator */
    int size; /* processes, the coordinator included */
};
void rf_dist_transport_free(rf_dist_transport *tp);

/* 1 when this library was built with MPI (RF_HAVE_MPI). */
int rf_dist_have_mpi(void);
/* The size of the MPI job this process was started in and its rank, read from the launcher's
 * environment (Open MPI, MPICH/Hydra and other PMI launchers, MVAPICH) without starting MPI;
 * 1 and 0 outside one. */
int rf_dist_launch_size(int *rank);
/* Starts MPI (MPI_Init_thread; MPI_THREAD_SERIALIZED at least; errors on MPI_COMM_WORLD return
 * instead of aborting) and a transport over MPI_COMM_WORLD whose keepalive thread sends a
 * keepalive every `interval` seconds (rank 0 to every worker, a worker to rank 0) and drains the
 * incoming ones. A worker that hears nothing from rank 0 for `orphan_timeout` seconds (> 0)
 * writes a line on stderr and exits with status 1: rank 0 is gone. Messages are polled (short
 * sleeps), so waiting ranks leave the cores to the working ones. RF_EARG in a build without
 * MPI. Free with rf_dist_transport_free (which finalises MPI). */
rf_dist_transport *rf_dist_mpi_start(int *argc, char ***argv, double interval, double orphan_timeout, rf_err *e);
/* After a rank of the job died, Open MPI 4.1's MPI_Finalize can hang in its closing fence (PMIx)
 * waiting for the dead rank, even under mpirun --enable-recovery (seen in about one run of
 * three); a transport so marked ends without MPI_Finalize, which mpirun --enable-recovery
 * accepts (exit status 0). forget() marks the transport itself; a worker learns it from STOP.
 * No-op without MPI. */
void rf_dist_mpi_skip_finalize(rf_dist_transport *tp);

/* ======================================================================================
 * Messages
 * ====================================================================================== */

/* A worker's result for one trial. */
typedef struct rf_dist_result {
    int number;                       /* the trial's number */
    rf_trial_status status;           /* COMPLETE, FAILED or PRUNED */
    int n_values;
    double values[RF_MAX_OBJECTIVES]; /* COMPLETE: the objectives' values */
    char reason[256];                 /* FAILED / PRUNED */
    double seconds;                   /* evaluation time on the worker */
    unsigned char *model;             /* the trained model's file bytes, or NULL */
    size_t model_len;
} rf_dist_result;
/* number, status COMPLETE, values NAN, nothing else. */
void rf_dist_result_init(rf_dist_result *r, int number);
void rf_dist_result_free(rf_dist_result *r); /* frees the model bytes */
/* Framing: "RFDR", u32 (little endian) JSON length, JSON {"number", "status", "values",
 * "reason", "seconds", "model_bytes"}, then the model bytes. */
int rf_dist_result_encode(const rf_dist_result *r, unsigned char **buf, size_t *len, rf_err *e);
/* Checks everything (magic, lengths, status, value count, numbers); r is initialised here. */
int rf_dist_result_decode(const unsigned char *buf, size_t len, rf_dist_result *r, rf_err *e);

/* {"number", "seed" (decimal string: 64 bits), "budget", "config"} (malloc'd text). */
char *rf_dist_trial_encode(const rf_space *sp, const rf_trial *t);
/* Fills t (zeroed first; t->cfg initialised: free with rf_config_free) with number, seed,
 * budget, configuration (checked against sp), status running, requeued_from -1. */
int rf_dist_trial_decode(const rf_space *sp, const char *text, size_t len, rf_trial *t, rf_err *e);

/* ======================================================================================
 * Coordinator (rank 0)
 * ====================================================================================== */

typedef struct rf_dist_opts {
    /* limits, as rf_optimize_opts */
    int n_trials;            /* trials to run in this call (0: no limit); lost ones do not count */
    int max_total;           /* the study's counted trials (0: no limit) */
    double time_budget;      /* seconds: no new trial after this (0: none) */
    double max_total_budget; /* multi-fidelity samplers (0: no limit) */
    volatile int *stop_flag; /* set: no new trial; the running ones are waited for */
    int progress;            /* lines on stderr (1) */
    int requeue_stale;       /* first re-queue dead processes' trials (1) */
    /* workers */
    double timeout;          /* a worker silent this long is dead (30 s) */
    double setup_timeout;    /* ... and one that has not said HELLO after this long (0: none) */
    int fence;               /* 1: a worker declared dead whose process still runs on this host
                                (e.g. stopped) is killed with SIGKILL, so that the job can end */
    int check_pids;          /* 1: a worker on this host whose pid is gone is dead at once */
    const char *payload;     /* sent to every worker in SETUP (may be NULL) */
    const char *check;       /* every worker's HELLO check must equal this (NULL: unchecked) */
} rf_dist_opts;
void rf_dist_opts_default(rf_dist_opts *o);

/* Called on rank 0 with a worker's result before the trial is told (e.g. to keep its model).
 * May set r->status to FAILED (with r->reason) to fail the trial. A non-zero return stops the
 * run and fails the trial with the message, as an objective's error does in rf_study_optimize. */
typedef int (*rf_dist_result_fn)(void *ctx, rf_study *st, const rf_trial *t, rf_dist_result *r, rf_err *e);

typedef struct rf_dist_stats {
    int n_run, n_complete, n_failed, n_pruned; /* trials told in this call */
    int n_lost;            /* trials whose worker died (queued again) */
    int n_workers;         /* workers that said HELLO */
    int n_dead;            /* workers declared dead */
    double seconds;
    double budget_used;    /* sum of the budgets of the trials told */
    int best_number;       /* as rf_optimize_result */
    double best_value;
    int workers_stopped;   /* 1: every live worker was sent STOP (0 after an argument error) */
} rf_dist_stats;

/* Runs the study on the transport's workers (tp->rank must be 0, tp->size >= 2) until a limit
 * is reached (or stop_flag), then waits for the running trials and sends STOP to every worker.
 * Errors: a worker's setup failed or its check differs (the message names the rank and host);
 * every worker died with work left (the study keeps what was done); the study or on_result
 * failed. Running trials are never left behind as `running`: at an error they are marked lost
 * and queued again, so a resumed study runs them. */
int rf_dist_coordinate(rf_study *st, rf_sampler *s, rf_dist_transport *tp, const rf_dist_opts *o,
                       rf_dist_result_fn on_result, void *ctx, rf_dist_stats *stats, rf_err *e);

/* ======================================================================================
 * Workers (ranks 1..N-1)
 * ====================================================================================== */

/* Sends an intermediate value of the trial being evaluated to rank 0. */
typedef rf_search_report_fn rf_dist_report_fn;

typedef struct rf_dist_worker_ops {
    /* Builds the worker's state from rank 0's payload; writes a check text (compared by rank 0,
     * e.g. the task's fingerprint) into check. */
    int (*setup)(void *ctx, const char *payload, const rf_space *space, int n_objectives, void **state, char *check,
                 size_t check_len, rf_err *e);
    /* Evaluates t (number, seed, budget, cfg); r is preset (rf_dist_result_init). A non-zero
     * return ends the worker (its trial is then lost and run elsewhere). */
    int (*evaluate)(void *state, const rf_trial *t, rf_dist_report_fn report, void *rctx, rf_dist_result *r,
                    rf_err *e);
    void (*cleanup)(void *state);
} rf_dist_worker_ops;

typedef struct rf_dist_serve_stats {
    int n_trials;          /* trials evaluated */
    int got_setup;         /* 0: rank 0 sent STOP before any setup */
    int peer_lost;         /* rank 0's STOP said a worker died (see rf_dist_mpi_skip_finalize) */
} rf_dist_serve_stats;

/* A worker's loop (tp->rank >= 1): waits for SETUP (or STOP), sets up, says HELLO, then
 * evaluates every TRIAL until STOP. A setup error is sent to rank 0 and returned. */
int rf_dist_serve(rf_dist_transport *tp, const rf_dist_worker_ops *ops, void *ctx, rf_dist_serve_stats *stats,
                  rf_err *e);

/* The host name and the start time of a process (clock ticks since boot, /proc/PID/stat field
 * 22: what rf_study_requeue_stale compares to tell a reused pid), -1 if unknown. */
void rf_dist_hostname(char *buf, size_t n);
long long rf_dist_pid_start(long pid);

/* Records in the study file that the running trial (row t->id) is evaluated by (host, pid,
 * pid_start) and updates t->host, t->pid. Through its own connection to the study file. */
int rf_dist_study_set_worker(const char *study_path, rf_trial *t, const char *host, long pid, long long pid_start,
                             rf_err *e);

/* ======================================================================================
 * The search: renflow search's trial objective on workers
 * ====================================================================================== */

/* Where a worker gets its task: data (rf_search_task_load) or a built-in task. */
typedef struct rf_dist_task_src {
    const char *data, *labels, *subjects; /* data != NULL: files (labels/subjects may be NULL) */
    const char *builtin;                  /* otherwise: "ring" | "moons" | "eeg" */
    int tiny;
    rf_search_task_opts opts;             /* opts.recordings may be NULL */
} rf_dist_task_src;

/* The setup payload of a search (JSON text, malloc'd): the task's source, split and transform,
 * its fingerprint, the job's metrics and defaults (base_spec, base_train), max_params, verbose,
 * the study's path and name (recorded in each model's meta) and whether rank 0 keeps models. */
char *rf_dist_search_payload(const rf_search_job *j, const rf_dist_task_src *src, const char *study_path,
                             const char *study_name, int keep_models, rf_err *e);
/* Worker operations for rf_dist_serve: setup loads the task (check: its fingerprint) and
 * builds the job; evaluate is rf_dist_search_evaluate. ctx is unused (NULL). */
extern const rf_dist_worker_ops rf_dist_search_worker_ops;
/* rf_search_objective without a study: trains the flow of t (seed t->seed, epochs t->budget
 * when > 0), reports the validation NLL of every epoch (steps 1..epochs) through report (may be
 * NULL), fills r->values in the job's metric order, and with keep_model the trained model's
 * bytes (meta as rf_search_objective writes it, naming study_path and study_name). A
 * configuration that cannot be built, diverges or scores non-finite is r->status = FAILED with
 * the reason, as there. */
int rf_dist_search_evaluate(const rf_search_job *j, const rf_trial *t, const char *study_path, const char *study_name,
                            int keep_model, rf_dist_report_fn report, void *rctx, rf_dist_result *r, rf_err *e);
/* rf_dist_result_fn on rank 0 (ctx: the rf_search_job): a result with model bytes has its model
 * loaded (checksum checked) and kept as rf_search_objective keeps it (rf_search_keep_model:
 * OUT/trials/trial-<n>.rf, OUT/best.rf for a new incumbent). A damaged model fails the trial. */
int rf_dist_search_keep(void *ctx, rf_study *st, const rf_trial *t, rf_dist_result *r, rf_err *e);

#endif
