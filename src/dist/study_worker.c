/* The evaluating worker of a trial in the study file. The study's own API records the claiming
 * process (rank 0) as a trial's host and pid; in a distributed search the trial runs elsewhere,
 * so rank 0 rewrites those fields for the running row, through a connection of its own (the
 * study file is in WAL mode and serialises writers; the busy timeout matches study.c's).
 * rf_study_requeue_stale then judges the worker's process, not rank 0's, after a crash. */
#include <sqlite3.h>
#include <stdio.h>

#include "renflow/dist.h"

int rf_dist_study_set_worker(const char *study_path, rf_trial *t, const char *host, long pid, long long pid_start,
                             rf_err *e) {
    if (!study_path || !t || !host) return rf_err_set(e, RF_EARG, "dist: set_worker needs a study path, a trial and a host");
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(study_path, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        int r = rf_err_set(e, RF_EIO, "study %s: opening to record trial %d's worker: %s", study_path, t->number,
                           db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return r;
    }
    sqlite3_busy_timeout(db, 60000);
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(db, "UPDATE trials SET host = ?, pid = ?, pid_start = ? WHERE id = ? AND status = 'running'", -1,
                            &s, NULL);
    int out = RF_OK;
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(s, 1, host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 2, pid);
        if (pid_start >= 0) sqlite3_bind_int64(s, 3, pid_start);
        else sqlite3_bind_null(s, 3);
        sqlite3_bind_int64(s, 4, t->id);
        rc = sqlite3_step(s);
        if (rc != SQLITE_DONE)
            out = rf_err_set(e, RF_EIO, "study %s: recording trial %d's worker: %s", study_path, t->number, sqlite3_errmsg(db));
        else if (sqlite3_changes(db) != 1)
            out = rf_err_set(e, RF_ESTATE, "study %s: trial %d (row %ld) is not running", study_path, t->number, t->id);
    } else {
        out = rf_err_set(e, RF_EIO, "study %s: recording trial %d's worker: %s", study_path, t->number, sqlite3_errmsg(db));
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    if (!out) {
        snprintf(t->host, sizeof t->host, "%s", host);
        t->pid = pid;
    }
    return out;
}
