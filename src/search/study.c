/* Study storage: one SQLite file (WAL mode, busy timeout) holding the study (space, objectives,
 * sampler, seed) and every trial. Claiming a trial happens inside a BEGIN IMMEDIATE transaction
 * (one writer at a time), so numbers are unique across processes; a trial is finished only while
 * it is still `running`, so no result is counted twice; a process killed with SIGKILL leaves only
 * its running trial behind, which rf_study_requeue_stale marks failed (and queues again). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "search_internal.h"

#define STUDY_FORMAT 1
#define BUSY_TIMEOUT_MS 60000

struct rf_study {
    sqlite3 *db;
    char *path;
    rf_space *space;
    char name[128];
    char sampler[64];
    uint64_t seed;
    double created;
    int n_obj;
    rf_objective obj[RF_MAX_OBJECTIVES];
    char host[64];
    long pid;
    long long pid_start;
    /* cache of finished trials, ordered by number */
    rf_trial **fin;
    int n_fin, cap_fin;
    long long last_seq;
};

/* ---------------------------------------------------------------------------------------
 * small helpers
 * --------------------------------------------------------------------------------------- */

const char *rf_trial_status_name(rf_trial_status s) {
    switch (s) {
    case RF_TRIAL_QUEUED: return "queued";
    case RF_TRIAL_RUNNING: return "running";
    case RF_TRIAL_COMPLETE: return "complete";
    case RF_TRIAL_FAILED: return "failed";
    case RF_TRIAL_PRUNED: return "pruned";
    }
    return "?";
}

int rf_trial_status_parse(const char *s, rf_trial_status *out) {
    for (int k = 0; k < RF_TRIAL_NSTATUS; k++)
        if (s && strcmp(s, rf_trial_status_name((rf_trial_status)k)) == 0) {
            *out = (rf_trial_status)k;
            return RF_OK;
        }
    return RF_EARG;
}

void rf_trial_free(rf_trial *t) {
    if (!t) return;
    rf_config_free(&t->cfg);
    free(t->error);
    free(t);
}

static double now_unix(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static uint64_t trial_seed(uint64_t study_seed, int number) { return mix64(study_seed ^ mix64((uint64_t)number + 1)); }
static uint64_t sampler_seed(uint64_t study_seed, int number) {
    return mix64(trial_seed(study_seed, number) ^ 0x5a4d504c45520001ull);
}

/* Start time (clock ticks since boot) of process pid from /proc, or -1 if unknown. */
static long long proc_start_time(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p++;
    /* fields after the command: 3 (state) ... 22 (starttime) */
    for (int field = 3; field < 22; field++) {
        while (*p == ' ') p++;
        while (*p && *p != ' ') p++;
        if (!*p) return -1;
    }
    return strtoll(p, NULL, 10);
}

static int db_fail(rf_study *st, int rc, const char *what, rf_err *e) {
    const char *m = st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc);
    int code = (rc == SQLITE_NOTADB || rc == SQLITE_CORRUPT) ? RF_EFORMAT : RF_EIO;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return rf_err_set(e, RF_EIO, "study %s: %s: database is locked (another process held it for over %d s)",
                          st->path, what, BUSY_TIMEOUT_MS / 1000);
    return rf_err_set(e, code, "study %s: %s: %s", st->path, what, m);
}

static int exec_sql(rf_study *st, const char *sql, const char *what, rf_err *e) {
    int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? RF_OK : db_fail(st, rc, what, e);
}

static int prep(rf_study *st, const char *sql, sqlite3_stmt **s, rf_err *e) {
    int rc = sqlite3_prepare_v2(st->db, sql, -1, s, NULL);
    return rc == SQLITE_OK ? RF_OK : db_fail(st, rc, "preparing a statement", e);
}

static int begin(rf_study *st, rf_err *e) { return exec_sql(st, "BEGIN IMMEDIATE", "starting a write transaction", e); }
static int commit(rf_study *st, rf_err *e) { return exec_sql(st, "COMMIT", "committing", e); }
static void rollback(rf_study *st) {
    if (!sqlite3_get_autocommit(st->db)) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *t) {
    if (t) sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(s, i);
}
static void bind_real_or_null(sqlite3_stmt *s, int i, double v) {
    if (isfinite(v)) sqlite3_bind_double(s, i, v);
    else sqlite3_bind_null(s, i);
}
static double col_real(sqlite3_stmt *s, int i) {
    return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

/* ---------------------------------------------------------------------------------------
 * open / create
 * --------------------------------------------------------------------------------------- */

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS study ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " format INTEGER NOT NULL,"
    " name TEXT NOT NULL,"
    " space TEXT NOT NULL,"
    " objectives TEXT NOT NULL,"
    " sampler TEXT NOT NULL,"
    " seed INTEGER NOT NULL,"
    " created REAL NOT NULL,"
    " created_text TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS trials ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " number INTEGER UNIQUE,"
    " status TEXT NOT NULL CHECK (status IN ('queued','running','complete','failed','pruned')),"
    " config TEXT NOT NULL,"
    " seed INTEGER,"
    " budget REAL NOT NULL DEFAULT 0,"
    " value REAL,"
    " values_json TEXT,"
    " error TEXT,"
    " lost INTEGER NOT NULL DEFAULT 0,"
    " requeued_from INTEGER,"
    " sampler TEXT,"
    " host TEXT,"
    " pid INTEGER,"
    " pid_start INTEGER,"
    " queued REAL,"
    " started REAL,"
    " finished REAL,"
    " duration REAL,"
    " seq INTEGER UNIQUE);"
    "CREATE INDEX IF NOT EXISTS trials_status ON trials(status);"
    "CREATE TABLE IF NOT EXISTS intermediate ("
    " trial_id INTEGER NOT NULL REFERENCES trials(id),"
    " step INTEGER NOT NULL,"
    " value REAL,"
    " PRIMARY KEY (trial_id, step));";

static cJSON *objectives_json(int n, const rf_objective *o) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < n; k++) {
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", o[k].name);
        cJSON_AddStringToObject(x, "direction", o[k].direction == RF_MAXIMIZE ? "maximize" : "minimize");
        cJSON_AddItemToArray(a, x);
    }
    return a;
}

static int parse_objectives(rf_study *st, const char *text, rf_err *e) {
    cJSON *a = cJSON_Parse(text);
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
    if (n < 1 || n > RF_MAX_OBJECTIVES) {
        cJSON_Delete(a);
        return rf_err_set(e, RF_EFORMAT, "study %s: field 'objectives' is damaged: %.200s", st->path, text);
    }
    int k = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(x, "name");
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(x, "direction");
        if (!cJSON_IsString(nm) || !cJSON_IsString(d) ||
            (strcmp(d->valuestring, "minimize") && strcmp(d->valuestring, "maximize"))) {
            cJSON_Delete(a);
            return rf_err_set(e, RF_EFORMAT, "study %s: objective %d is damaged: %.200s", st->path, k, text);
        }
        snprintf(st->obj[k].name, sizeof st->obj[k].name, "%s", nm->valuestring);
        st->obj[k].direction = strcmp(d->valuestring, "maximize") == 0 ? RF_MAXIMIZE : RF_MINIMIZE;
        k++;
    }
    st->n_obj = n;
    cJSON_Delete(a);
    return RF_OK;
}

static int check_def(const rf_study_def *d, rf_err *e) {
    if (!d->space || d->space->n < 1) return rf_err_set(e, RF_EARG, "study: a search space with at least one parameter is required");
    if (d->n_objectives < 1 || d->n_objectives > RF_MAX_OBJECTIVES)
        return rf_err_set(e, RF_EARG, "study: objectives must be 1..%d, got %d", RF_MAX_OBJECTIVES, d->n_objectives);
    for (int k = 0; k < d->n_objectives; k++) {
        if (!d->objectives[k].name[0]) return rf_err_set(e, RF_EARG, "study: objective %d has no name", k);
        if (d->objectives[k].direction != RF_MINIMIZE && d->objectives[k].direction != RF_MAXIMIZE)
            return rf_err_set(e, RF_EARG, "study: objective '%s': direction must be minimize or maximize", d->objectives[k].name);
    }
    return RF_OK;
}

/* Sets WAL mode, retrying while another process holds the file. */
static int set_wal(rf_study *st, rf_err *e) {
    for (int attempt = 0;; attempt++) {
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            const char *m = (const char *)sqlite3_column_text(s, 0);
            int ok = m && strcmp(m, "wal") == 0;
            sqlite3_finalize(s);
            if (!ok) return rf_err_set(e, RF_EIO, "study %s: cannot use WAL journal mode on this file system (got %s)", st->path, m ? m : "?");
            return RF_OK;
        }
        sqlite3_finalize(s);
        if ((rc == SQLITE_BUSY || rc == SQLITE_LOCKED) && attempt < 600) {
            usleep(100000);
            continue;
        }
        return db_fail(st, rc, "setting WAL mode", e);
    }
}

static int load_study_row(rf_study *st, const rf_study_def *def, int *found, rf_err *e) {
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT format, name, space, objectives, sampler, seed, created FROM study WHERE id = 1", &s, e);
    if (rc) return rc;
    int step = sqlite3_step(s);
    *found = 0;
    if (step == SQLITE_DONE) {
        sqlite3_finalize(s);
        return RF_OK;
    }
    if (step != SQLITE_ROW) {
        sqlite3_finalize(s);
        return db_fail(st, step, "reading the study", e);
    }
    *found = 1;
    int format = sqlite3_column_int(s, 0);
    if (format > STUDY_FORMAT || format < 1) {
        sqlite3_finalize(s);
        return rf_err_set(e, RF_EFORMAT, "study %s: format %d, this renflow reads format %d (written by a newer version?)",
                          st->path, format, STUDY_FORMAT);
    }
    snprintf(st->name, sizeof st->name, "%s", (const char *)sqlite3_column_text(s, 1));
    const char *space_text = (const char *)sqlite3_column_text(s, 2);
    const char *obj_col = (const char *)sqlite3_column_text(s, 3);
    char obj_text[2048];
    snprintf(obj_text, sizeof obj_text, "%s", obj_col ? obj_col : "");
    snprintf(st->sampler, sizeof st->sampler, "%s", (const char *)sqlite3_column_text(s, 4));
    st->seed = (uint64_t)sqlite3_column_int64(s, 5);
    st->created = sqlite3_column_double(s, 6);
    char what[1200];
    snprintf(what, sizeof what, "study %s: stored search space", st->path);
    st->space = rf_space_parse(space_text ? space_text : "", what, e);
    rc = st->space ? parse_objectives(st, obj_text, e) : (e ? e->code : RF_EFORMAT);
    sqlite3_finalize(s);
    if (rc) return rc;
    if (def) {
        rf_err e2 = {0};
        if (rf_space_compare(def->space, st->space, &e2) != RF_OK)
            return rf_err_set(e, RF_EARG,
                              "study %s already holds a study with a different search space (%s); use another "
                              "--study file or the original space", st->path, e2.msg);
        int same = def->n_objectives == st->n_obj;
        for (int k = 0; same && k < st->n_obj; k++)
            same = strcmp(def->objectives[k].name, st->obj[k].name) == 0 && def->objectives[k].direction == st->obj[k].direction;
        if (!same) {
            cJSON *a = objectives_json(def->n_objectives, def->objectives);
            char *t = cJSON_PrintUnformatted(a);
            rc = rf_err_set(e, RF_EARG, "study %s: objectives %.200s differ from the study's %.200s", st->path, t ? t : "?",
                            obj_text);
            free(t);
            cJSON_Delete(a);
            return rc;
        }
    }
    return RF_OK;
}

static int insert_study_row(rf_study *st, const rf_study_def *d, rf_err *e) {
    char *space = rf_space_to_string(d->space);
    cJSON *oj = objectives_json(d->n_objectives, d->objectives);
    char *obj = cJSON_PrintUnformatted(oj);
    cJSON_Delete(oj);
    double now = now_unix();
    time_t tt = (time_t)now;
    struct tm tmv;
    char iso[64];
    gmtime_r(&tt, &tmv);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    sqlite3_stmt *s = NULL;
    int rc = space && obj ? prep(st, "INSERT INTO study (id, format, name, space, objectives, sampler, seed, created, created_text) "
                                     "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)", &s, e)
                          : rf_err_set(e, RF_ENOMEM, "out of memory");
    if (!rc) {
        sqlite3_bind_int(s, 1, STUDY_FORMAT);
        sqlite3_bind_text(s, 2, d->name ? d->name : "study", -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 3, space, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 4, obj, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 5, d->sampler ? d->sampler : "", -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 6, (sqlite3_int64)d->seed);
        sqlite3_bind_double(s, 7, now);
        sqlite3_bind_text(s, 8, iso, -1, SQLITE_TRANSIENT);
        int step = sqlite3_step(s);
        if (step != SQLITE_DONE) rc = db_fail(st, step, "creating the study", e);
    }
    sqlite3_finalize(s);
    free(space);
    free(obj);
    return rc;
}

/* 1 when the database has tables but none of ours (someone else's SQLite file). */
static int foreign_db(rf_study *st) {
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "SELECT SUM(name = 'study'), COUNT(*) FROM sqlite_master WHERE type = 'table' "
                           "AND name NOT LIKE 'sqlite_%'", -1, &s, NULL) != SQLITE_OK)
        return 0;
    int r = 0;
    if (sqlite3_step(s) == SQLITE_ROW) r = sqlite3_column_int(s, 0) == 0 && sqlite3_column_int(s, 1) > 0;
    sqlite3_finalize(s);
    return r;
}

rf_study *rf_study_open(const char *path, const rf_study_def *def, rf_err *e) {
    if (!path || !path[0]) {
        rf_err_set(e, RF_EARG, "study: no file name");
        return NULL;
    }
    if (def && check_def(def, e)) return NULL;
    struct stat sb;
    if (!def && stat(path, &sb) != 0) {
        rf_err_set(e, RF_EIO, "study %s: %s", path, strerror(errno));
        return NULL;
    }
    rf_study *st = rf_zalloc(sizeof *st, e);
    if (!st) return NULL;
    st->path = strdup(path);
    if (!st->path) {
        free(st);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    st->pid = (long)getpid();
    st->pid_start = proc_start_time(st->pid);
    if (gethostname(st->host, sizeof st->host) != 0) snprintf(st->host, sizeof st->host, "unknown");
    st->host[sizeof st->host - 1] = '\0';
    int flags = SQLITE_OPEN_READWRITE | (def ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &st->db, flags, NULL);
    if (rc != SQLITE_OK) {
        db_fail(st, rc, "opening", e);
        rf_study_close(st);
        return NULL;
    }
    sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(st->db, 0);
    /* any statement on a file that is not SQLite fails here with "file is not a database" */
    rc = set_wal(st, e);
    if (!rc) rc = exec_sql(st, "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", "setting pragmas", e);
    if (!rc && foreign_db(st))
        rc = rf_err_set(e, RF_EFORMAT, "study %s: an SQLite file with other tables, not a renflow study", path);
    if (!rc) rc = begin(st, e);
    if (!rc && def) rc = exec_sql(st, SCHEMA, "creating the tables", e);
    int found = 0;
    if (!rc) {
        if (!def) {
            sqlite3_stmt *s = NULL;
            rc = prep(st, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'study'", &s, e);
            if (!rc && sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 0)
                rc = rf_err_set(e, RF_EFORMAT, "study %s: holds no renflow study", path);
            sqlite3_finalize(s);
        }
        if (!rc) rc = load_study_row(st, def, &found, e);
    }
    if (!rc && !found) {
        if (!def) {
            rc = rf_err_set(e, RF_EFORMAT, "study %s: holds no renflow study", path);
        } else {
            rc = insert_study_row(st, def, e);
            if (!rc) {
                snprintf(st->name, sizeof st->name, "%s", def->name ? def->name : "study");
                snprintf(st->sampler, sizeof st->sampler, "%s", def->sampler ? def->sampler : "");
                st->seed = def->seed;
                st->created = now_unix();
                st->n_obj = def->n_objectives;
                memcpy(st->obj, def->objectives, sizeof st->obj);
                st->space = rf_space_clone(def->space, e);
                if (!st->space) rc = e ? e->code : RF_ENOMEM;
            }
        }
    }
    if (!rc) rc = commit(st, e);
    if (rc) {
        rollback(st);
        rf_study_close(st);
        return NULL;
    }
    if (rf_study_refresh(st, e) != RF_OK) {
        rf_study_close(st);
        return NULL;
    }
    return st;
}

void rf_study_close(rf_study *st) {
    if (!st) return;
    if (st->db) sqlite3_close_v2(st->db);
    for (int i = 0; i < st->n_fin; i++) rf_trial_free(st->fin[i]);
    free(st->fin);
    rf_space_free(st->space);
    free(st->path);
    free(st);
}

const rf_space *rf_study_space(const rf_study *st) { return st->space; }
const char *rf_study_name(const rf_study *st) { return st->name; }
const char *rf_study_sampler_name(const rf_study *st) { return st->sampler; }
const char *rf_study_path(const rf_study *st) { return st->path; }
uint64_t rf_study_seed(const rf_study *st) { return st->seed; }
int rf_study_n_objectives(const rf_study *st) { return st->n_obj; }
const rf_objective *rf_study_objective(const rf_study *st, int k) {
    return k >= 0 && k < st->n_obj ? &st->obj[k] : NULL;
}
double rf_study_created(const rf_study *st) { return st->created; }

/* ---------------------------------------------------------------------------------------
 * reading trials
 * --------------------------------------------------------------------------------------- */

#define TRIAL_COLS                                                                                  \
    "t.id, t.number, t.status, t.config, t.seed, t.budget, t.values_json, t.error, t.lost, "       \
    "t.requeued_from, t.sampler, t.host, t.pid, t.started, t.finished, t.duration, t.seq, "       \
    "(SELECT i.step FROM intermediate i WHERE i.trial_id = t.id ORDER BY i.step DESC LIMIT 1), " \
    "(SELECT i.value FROM intermediate i WHERE i.trial_id = t.id ORDER BY i.step DESC LIMIT 1)"

/* Builds a trial from a row selected with TRIAL_COLS. */
static int row_to_trial(rf_study *st, sqlite3_stmt *s, rf_trial **out, long long *seq, rf_err *e) {
    rf_trial *t = rf_zalloc(sizeof *t, e);
    if (!t) return e ? e->code : RF_ENOMEM;
    t->id = (long)sqlite3_column_int64(s, 0);
    t->number = sqlite3_column_type(s, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 1);
    const char *status = (const char *)sqlite3_column_text(s, 2);
    int rc = RF_OK;
    if (rf_trial_status_parse(status, &t->status) != RF_OK)
        rc = rf_err_set(e, RF_EFORMAT, "study %s: trial %d: unknown status \"%s\"", st->path, t->number, status ? status : "");
    const char *cfg = (const char *)sqlite3_column_text(s, 3);
    if (!rc && rf_config_parse(st->space, cfg ? cfg : "", &t->cfg, e) != RF_OK)
        rc = rf_err_prefix(e, RF_EFORMAT, "study %s: trial %d", st->path, t->number);
    t->seed = (uint64_t)sqlite3_column_int64(s, 4);
    t->budget = sqlite3_column_double(s, 5);
    const char *vj = (const char *)sqlite3_column_text(s, 6);
    if (!rc && vj) {
        cJSON *a = cJSON_Parse(vj);
        int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : -1;
        if (n < 0 || n > RF_MAX_OBJECTIVES) {
            rc = rf_err_set(e, RF_EFORMAT, "study %s: trial %d: damaged values %.100s", st->path, t->number, vj);
        } else {
            const cJSON *x;
            int k = 0;
            cJSON_ArrayForEach(x, a) t->values[k++] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            t->n_values = n;
        }
        cJSON_Delete(a);
    }
    const char *err = (const char *)sqlite3_column_text(s, 7);
    if (err) t->error = strdup(err);
    t->lost = sqlite3_column_int(s, 8);
    t->requeued_from = sqlite3_column_type(s, 9) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 9);
    const char *smp = (const char *)sqlite3_column_text(s, 10);
    snprintf(t->sampler, sizeof t->sampler, "%s", smp ? smp : "");
    const char *host = (const char *)sqlite3_column_text(s, 11);
    snprintf(t->host, sizeof t->host, "%s", host ? host : "");
    t->pid = (long)sqlite3_column_int64(s, 12);
    t->started = col_real(s, 13);
    t->finished = col_real(s, 14);
    t->duration = col_real(s, 15);
    if (seq) *seq = sqlite3_column_int64(s, 16);
    t->last_step = sqlite3_column_type(s, 17) == SQLITE_NULL ? -1 : (long)sqlite3_column_int64(s, 17);
    t->last_value = col_real(s, 18);
    if (rc) {
        rf_trial_free(t);
        return rc;
    }
    *out = t;
    return RF_OK;
}

static int cache_insert(rf_study *st, rf_trial *t, rf_err *e) {
    if (st->n_fin == st->cap_fin) {
        int cap = st->cap_fin ? 2 * st->cap_fin : 64;
        rf_trial **p = realloc(st->fin, sizeof *p * (size_t)cap);
        if (!p) return rf_err_set(e, RF_ENOMEM, "out of memory (trial cache)");
        st->fin = p;
        st->cap_fin = cap;
    }
    int i = st->n_fin;
    while (i > 0 && st->fin[i - 1]->number > t->number) {
        st->fin[i] = st->fin[i - 1];
        i--;
    }
    st->fin[i] = t;
    st->n_fin++;
    return RF_OK;
}

int rf_study_refresh(rf_study *st, rf_err *e) {
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT " TRIAL_COLS " FROM trials t WHERE t.seq > ? ORDER BY t.seq", &s, e);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, st->last_seq);
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        rf_trial *t = NULL;
        long long seq = 0;
        rc = row_to_trial(st, s, &t, &seq, e);
        if (!rc) rc = cache_insert(st, t, e);
        if (rc) {
            rf_trial_free(t);
            sqlite3_finalize(s);
            return rc;
        }
        st->last_seq = seq;
    }
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) return db_fail(st, step, "reading trials", e);
    return RF_OK;
}

int rf_study_n_finished(const rf_study *st) { return st->n_fin; }
const rf_trial *rf_study_finished(const rf_study *st, int i) { return i >= 0 && i < st->n_fin ? st->fin[i] : NULL; }

static int build_history(rf_study *st, rf_history *h, rf_err *e) {
    memset(h, 0, sizeof *h);
    const rf_trial **items = malloc(sizeof *items * (size_t)(st->n_fin > 0 ? st->n_fin : 1));
    if (!items) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < st->n_fin; i++)
        if (st->fin[i]->status == RF_TRIAL_COMPLETE || st->fin[i]->status == RF_TRIAL_PRUNED) items[n++] = st->fin[i];
    h->n = n;
    h->items = items;
    h->n_objectives = st->n_obj;
    for (int k = 0; k < st->n_obj; k++) h->directions[k] = st->obj[k].direction;
    return RF_OK;
}

int rf_study_history(rf_study *st, rf_history *h, rf_err *e) {
    int rc = rf_study_refresh(st, e);
    if (rc) return rc;
    return build_history(st, h, e);
}

void rf_history_free(rf_history *h) {
    free((void *)h->items);
    h->items = NULL;
    h->n = 0;
}

int rf_study_counts(rf_study *st, int counts[RF_TRIAL_NSTATUS], rf_err *e) {
    for (int k = 0; k < RF_TRIAL_NSTATUS; k++) counts[k] = 0;
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT status, COUNT(*) FROM trials GROUP BY status", &s, e);
    if (rc) return rc;
    int step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        rf_trial_status k;
        if (rf_trial_status_parse((const char *)sqlite3_column_text(s, 0), &k) == RF_OK) counts[k] = sqlite3_column_int(s, 1);
    }
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? RF_OK : db_fail(st, step, "counting trials", e);
}

const rf_trial *rf_study_best(const rf_study *st, int k) {
    if (k < 0 || k >= st->n_obj) return NULL;
    const rf_trial *best = NULL;
    double sign = st->obj[k].direction == RF_MAXIMIZE ? -1 : 1;
    for (int i = 0; i < st->n_fin; i++) {
        const rf_trial *t = st->fin[i];
        if (t->status != RF_TRIAL_COMPLETE || t->n_values <= k || !isfinite(t->values[k])) continue;
        if (!best || sign * t->values[k] < sign * best->values[k]) best = t;
    }
    return best;
}

int rf_study_intermediate(rf_study *st, int number, long **steps, double **values, int *n, rf_err *e) {
    *steps = NULL;
    *values = NULL;
    *n = 0;
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT i.step, i.value FROM intermediate i JOIN trials t ON t.id = i.trial_id "
                      "WHERE t.number = ? ORDER BY i.step", &s, e);
    if (rc) return rc;
    sqlite3_bind_int(s, 1, number);
    int cap = 0, step;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            long *a = realloc(*steps, sizeof(long) * (size_t)cap);
            if (a) *steps = a;
            double *b = realloc(*values, sizeof(double) * (size_t)cap);
            if (b) *values = b;
            if (!a || !b) {
                sqlite3_finalize(s);
                free(*steps);
                free(*values);
                *steps = NULL;
                *values = NULL;
                *n = 0;
                return rf_err_set(e, RF_ENOMEM, "out of memory");
            }
        }
        (*steps)[*n] = (long)sqlite3_column_int64(s, 0);
        (*values)[*n] = col_real(s, 1);
        (*n)++;
    }
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? RF_OK : db_fail(st, step, "reading intermediate values", e);
}

/* ---------------------------------------------------------------------------------------
 * claiming trials
 * --------------------------------------------------------------------------------------- */

static int query_int(rf_study *st, const char *sql, long long *out, rf_err *e) {
    sqlite3_stmt *s = NULL;
    int rc = prep(st, sql, &s, e);
    if (rc) return rc;
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return step == SQLITE_ROW ? RF_OK : db_fail(st, step, "querying", e);
}

static rf_trial *new_running(rf_study *st, int number, double budget, const char *sampler, rf_err *e) {
    rf_trial *t = rf_zalloc(sizeof *t, e);
    if (!t) return NULL;
    t->number = number;
    t->status = RF_TRIAL_RUNNING;
    t->seed = trial_seed(st->seed, number);
    t->budget = budget;
    t->requeued_from = -1;
    t->last_step = -1;
    t->last_value = NAN;
    snprintf(t->host, sizeof t->host, "%s", st->host);
    t->pid = st->pid;
    t->started = now_unix();
    t->finished = t->duration = NAN;
    snprintf(t->sampler, sizeof t->sampler, "%s", sampler);
    return t;
}

/* Inserts t (running) with its configuration; sets t->id. */
static int insert_running(rf_study *st, rf_trial *t, rf_err *e) {
    char *cfg = rf_config_to_string(st->space, &t->cfg);
    if (!cfg) return rf_err_set(e, RF_ENOMEM, "out of memory");
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "INSERT INTO trials (number, status, config, seed, budget, sampler, host, pid, pid_start, started) "
                      "VALUES (?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)", &s, e);
    if (!rc) {
        sqlite3_bind_int(s, 1, t->number);
        sqlite3_bind_text(s, 2, cfg, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)t->seed);
        sqlite3_bind_double(s, 4, t->budget);
        sqlite3_bind_text(s, 5, t->sampler, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 6, st->host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 7, st->pid);
        if (st->pid_start >= 0) sqlite3_bind_int64(s, 8, st->pid_start);
        else sqlite3_bind_null(s, 8);
        sqlite3_bind_double(s, 9, t->started);
        int step = sqlite3_step(s);
        if (step != SQLITE_DONE) rc = db_fail(st, step, "inserting a trial", e);
        else t->id = (long)sqlite3_last_insert_rowid(st->db);
    }
    sqlite3_finalize(s);
    free(cfg);
    return rc;
}

/* Claims the oldest queued trial, if any, as number `number`. *t = NULL when none. */
static int claim_queued(rf_study *st, int number, rf_trial **out, rf_err *e) {
    *out = NULL;
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "SELECT id, config, budget, requeued_from, sampler FROM trials WHERE status = 'queued' ORDER BY id LIMIT 1", &s, e);
    if (rc) return rc;
    int step = sqlite3_step(s);
    if (step == SQLITE_DONE) {
        sqlite3_finalize(s);
        return RF_OK;
    }
    if (step != SQLITE_ROW) {
        sqlite3_finalize(s);
        return db_fail(st, step, "reading the queue", e);
    }
    long id = (long)sqlite3_column_int64(s, 0);
    const char *smp = (const char *)sqlite3_column_text(s, 4);
    rf_trial *t = new_running(st, number, sqlite3_column_double(s, 2), smp ? smp : "queued", e);
    if (!t) {
        sqlite3_finalize(s);
        return e ? e->code : RF_ENOMEM;
    }
    t->id = id;
    t->requeued_from = sqlite3_column_type(s, 3) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 3);
    const char *cfg = (const char *)sqlite3_column_text(s, 1);
    rc = rf_config_parse(st->space, cfg ? cfg : "", &t->cfg, e);
    sqlite3_finalize(s);
    if (rc) {
        rf_err_prefix(e, rc, "study %s: queued trial (row %ld)", st->path, id);
        rf_trial_free(t);
        return rc;
    }
    rc = prep(st, "UPDATE trials SET status = 'running', number = ?, seed = ?, host = ?, pid = ?, pid_start = ?, started = ? "
                  "WHERE id = ? AND status = 'queued'", &s, e);
    if (!rc) {
        sqlite3_bind_int(s, 1, number);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)t->seed);
        sqlite3_bind_text(s, 3, st->host, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(s, 4, st->pid);
        if (st->pid_start >= 0) sqlite3_bind_int64(s, 5, st->pid_start);
        else sqlite3_bind_null(s, 5);
        sqlite3_bind_double(s, 6, t->started);
        sqlite3_bind_int64(s, 7, id);
        step = sqlite3_step(s);
        if (step != SQLITE_DONE) rc = db_fail(st, step, "claiming a queued trial", e);
        else if (sqlite3_changes(st->db) != 1) rc = rf_err_set(e, RF_ESTATE, "study %s: queued trial (row %ld) vanished", st->path, id);
        sqlite3_finalize(s);
    }
    if (rc) {
        rf_trial_free(t);
        return rc;
    }
    *out = t;
    return RF_OK;
}

static int ask_impl(rf_study *st, rf_sampler *smp, const rf_config *fixed, double budget, int max_trials,
                    rf_trial **out, rf_err *e) {
    *out = NULL;
    int rc = begin(st, e);
    if (rc) return rc;
    long long next = 0, counted = 0;
    rf_trial *t = NULL;
    rf_history h = {0};
    rc = rf_study_refresh(st, e);
    if (!rc && max_trials > 0)
        rc = query_int(st, "SELECT COUNT(*) FROM trials WHERE number IS NOT NULL AND lost = 0", &counted, e);
    if (!rc && max_trials > 0 && counted >= max_trials) {
        rollback(st);
        return RF_OK;
    }
    if (!rc) rc = query_int(st, "SELECT COALESCE(MAX(number), -1) + 1 FROM trials", &next, e);
    if (!rc && next > 2000000000) rc = rf_err_set(e, RF_ESTATE, "study %s: too many trials", st->path);
    if (!rc && !fixed) rc = claim_queued(st, (int)next, &t, e);
    if (!rc && !t) {
        t = new_running(st, (int)next, fixed ? budget : 0, fixed ? "fixed" : rf_sampler_name(smp), e);
        if (!t) rc = e ? e->code : RF_ENOMEM;
        if (!rc) rc = rf_config_init(&t->cfg, st->space, e);
        if (!rc && fixed) {
            rc = rf_config_check(st->space, fixed, e);
            if (!rc) rc = rf_config_copy(&t->cfg, fixed, e);
        } else if (!rc) {
            rc = build_history(st, &h, e);
            if (!rc) {
                rf_rng rng;
                rf_rng_seed(&rng, sampler_seed(st->seed, t->number));
                rc = rf_sampler_sample(smp, st->space, &h, &rng, &t->cfg, e);
                if (rc) rf_err_prefix(e, rc, "study %s: sampler %s, trial %d", st->path, rf_sampler_name(smp), t->number);
            }
            rf_history_free(&h);
        }
        if (!rc) rc = insert_running(st, t, e);
    }
    if (!rc) rc = commit(st, e);
    if (rc) {
        rollback(st);
        rf_trial_free(t);
        return rc;
    }
    *out = t;
    return RF_OK;
}

int rf_study_ask(rf_study *st, rf_sampler *s, rf_trial **t, rf_err *e) { return ask_impl(st, s, NULL, 0, 0, t, e); }

int rf_study_ask_limit(rf_study *st, rf_sampler *s, int max_trials, rf_trial **t, rf_err *e) {
    return ask_impl(st, s, NULL, 0, max_trials, t, e);
}

int rf_study_ask_fixed(rf_study *st, const rf_config *c, double budget, rf_trial **t, rf_err *e) {
    if (!c) return rf_err_set(e, RF_EARG, "study: ask_fixed needs a configuration");
    if (!isfinite(budget) || budget < 0) return rf_err_set(e, RF_EARG, "study: budget must be a finite number >= 0, got %g", budget);
    return ask_impl(st, NULL, c, budget, 0, t, e);
}

int rf_study_enqueue(rf_study *st, const rf_config *c, double budget, rf_err *e) {
    if (!isfinite(budget) || budget < 0) return rf_err_set(e, RF_EARG, "study: budget must be a finite number >= 0, got %g", budget);
    int rc = rf_config_check(st->space, c, e);
    if (rc) return rf_err_prefix(e, rc, "study %s: enqueue", st->path);
    char *cfg = rf_config_to_string(st->space, c);
    if (!cfg) return rf_err_set(e, RF_ENOMEM, "out of memory");
    sqlite3_stmt *s = NULL;
    rc = prep(st, "INSERT INTO trials (status, config, budget, sampler, queued) VALUES ('queued', ?, ?, 'enqueued', ?)", &s, e);
    if (!rc) {
        sqlite3_bind_text(s, 1, cfg, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(s, 2, budget);
        sqlite3_bind_double(s, 3, now_unix());
        int step = sqlite3_step(s);
        if (step != SQLITE_DONE) rc = db_fail(st, step, "queueing a trial", e);
    }
    sqlite3_finalize(s);
    free(cfg);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * finishing trials
 * --------------------------------------------------------------------------------------- */

static int running_status_error(rf_study *st, long id, int number, rf_err *e) {
    sqlite3_stmt *s = NULL;
    char status[32] = "missing";
    if (prep(st, "SELECT status, error FROM trials WHERE id = ?", &s, NULL) == RF_OK) {
        sqlite3_bind_int64(s, 1, id);
        if (sqlite3_step(s) == SQLITE_ROW) {
            const char *x = (const char *)sqlite3_column_text(s, 0);
            const char *er = (const char *)sqlite3_column_text(s, 1);
            snprintf(status, sizeof status, "%s", x ? x : "?");
            int rc = rf_err_set(e, RF_ESTATE, "study %s: trial %d is %s, not running%s%.200s%s", st->path, number, status,
                                er ? " (" : "", er ? er : "", er ? ")" : "");
            sqlite3_finalize(s);
            return rc;
        }
        sqlite3_finalize(s);
    }
    return rf_err_set(e, RF_ESTATE, "study %s: trial %d is %s, not running", st->path, number, status);
}

int rf_study_tell(rf_study *st, rf_trial *t, rf_trial_status status, const double *values, int n_values,
                  const char *reason, rf_err *e) {
    if (status != RF_TRIAL_COMPLETE && status != RF_TRIAL_FAILED && status != RF_TRIAL_PRUNED)
        return rf_err_set(e, RF_EARG, "study: trial %d: tell needs complete, failed or pruned, got %s", t->number,
                          rf_trial_status_name(status));
    char *vj = NULL;
    if (status == RF_TRIAL_COMPLETE) {
        if (n_values != st->n_obj || !values)
            return rf_err_set(e, RF_EARG, "study %s: trial %d: %d values for %d objectives", st->path, t->number, n_values, st->n_obj);
        for (int k = 0; k < n_values; k++)
            if (!isfinite(values[k]))
                return rf_err_set(e, RF_ENONFINITE, "study %s: trial %d: objective '%s' is %g (report the trial as failed)",
                                  st->path, t->number, st->obj[k].name, values[k]);
        cJSON *a = cJSON_CreateDoubleArray(values, n_values);
        vj = rf__json_print_exact(a);
        cJSON_Delete(a);
        if (!vj) return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    double now = now_unix();
    int rc = begin(st, e);
    sqlite3_stmt *s = NULL;
    if (!rc)
        rc = prep(st, "UPDATE trials SET status = ?, value = ?, values_json = ?, error = ?, finished = ?, duration = ?, "
                      "seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM trials) WHERE id = ? AND status = 'running'", &s, e);
    if (!rc) {
        sqlite3_bind_text(s, 1, rf_trial_status_name(status), -1, SQLITE_STATIC);
        if (status == RF_TRIAL_COMPLETE) sqlite3_bind_double(s, 2, values[0]);
        else sqlite3_bind_null(s, 2);
        bind_text_or_null(s, 3, vj);
        bind_text_or_null(s, 4, status == RF_TRIAL_COMPLETE ? NULL : (reason ? reason : ""));
        sqlite3_bind_double(s, 5, now);
        bind_real_or_null(s, 6, now - t->started);
        sqlite3_bind_int64(s, 7, t->id);
        int step = sqlite3_step(s);
        if (step != SQLITE_DONE) rc = db_fail(st, step, "finishing a trial", e);
        else if (sqlite3_changes(st->db) != 1) rc = running_status_error(st, t->id, t->number, e);
    }
    sqlite3_finalize(s);
    if (!rc) rc = commit(st, e);
    if (rc) {
        rollback(st);
        free(vj);
        return rc;
    }
    free(vj);
    t->status = status;
    t->finished = now;
    t->duration = now - t->started;
    t->n_values = status == RF_TRIAL_COMPLETE ? n_values : 0;
    for (int k = 0; k < t->n_values; k++) t->values[k] = values[k];
    free(t->error);
    t->error = status != RF_TRIAL_COMPLETE && reason ? strdup(reason) : NULL;
    return RF_OK;
}

int rf_study_report(rf_study *st, const rf_trial *t, long step, double value, rf_err *e) {
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "INSERT OR REPLACE INTO intermediate (trial_id, step, value) SELECT ?, ?, ? "
                      "WHERE EXISTS (SELECT 1 FROM trials WHERE id = ? AND status = 'running')", &s, e);
    if (rc) return rc;
    sqlite3_bind_int64(s, 1, t->id);
    sqlite3_bind_int64(s, 2, step);
    bind_real_or_null(s, 3, value);
    sqlite3_bind_int64(s, 4, t->id);
    int r = sqlite3_step(s);
    sqlite3_finalize(s);
    if (r != SQLITE_DONE) return db_fail(st, r, "storing an intermediate value", e);
    if (sqlite3_changes(st->db) != 1) return running_status_error(st, t->id, t->number, e);
    return RF_OK;
}

/* Marks running row `id` failed and lost; with requeue, queues its configuration again. Inside a
 * transaction. */
static int mark_lost(rf_study *st, long id, const char *reason, int requeue, rf_err *e) {
    double now = now_unix();
    sqlite3_stmt *s = NULL;
    int rc = prep(st, "UPDATE trials SET status = 'failed', lost = 1, error = ?, finished = ?, duration = ? - started, "
                      "seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM trials) WHERE id = ? AND status = 'running'", &s, e);
    if (rc) return rc;
    sqlite3_bind_text(s, 1, reason, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(s, 2, now);
    sqlite3_bind_double(s, 3, now);
    sqlite3_bind_int64(s, 4, id);
    int step = sqlite3_step(s);
    sqlite3_finalize(s);
    if (step != SQLITE_DONE) return db_fail(st, step, "marking a trial failed", e);
    if (sqlite3_changes(st->db) != 1) return rf_err_set(e, RF_ESTATE, "study %s: trial row %ld is not running", st->path, id);
    if (!requeue) return RF_OK;
    rc = prep(st, "INSERT INTO trials (status, config, budget, requeued_from, sampler, queued) "
                  "SELECT 'queued', config, budget, number, 'requeued', ? FROM trials WHERE id = ?", &s, e);
    if (rc) return rc;
    sqlite3_bind_double(s, 1, now);
    sqlite3_bind_int64(s, 2, id);
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    return step == SQLITE_DONE ? RF_OK : db_fail(st, step, "re-queueing a trial", e);
}

int rf_study_fail_lost(rf_study *st, int number, const char *reason, int requeue, rf_err *e) {
    int rc = begin(st, e);
    if (rc) return rc;
    long long id = -1;
    sqlite3_stmt *s = NULL;
    rc = prep(st, "SELECT id FROM trials WHERE number = ? AND status = 'running'", &s, e);
    if (!rc) {
        sqlite3_bind_int(s, 1, number);
        if (sqlite3_step(s) == SQLITE_ROW) id = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        if (id < 0) rc = rf_err_set(e, RF_ESTATE, "study %s: trial %d is not running", st->path, number);
    }
    if (!rc) rc = mark_lost(st, (long)id, reason ? reason : "worker lost", requeue, e);
    if (!rc) rc = commit(st, e);
    if (rc) rollback(st);
    return rc;
}

int rf_study_requeue_stale(rf_study *st, int requeue, int *n_marked, rf_err *e) {
    if (n_marked) *n_marked = 0;
    int rc = begin(st, e);
    if (rc) return rc;
    sqlite3_stmt *s = NULL;
    rc = prep(st, "SELECT id, number, pid, pid_start FROM trials WHERE status = 'running' AND host = ?", &s, e);
    long *dead = NULL;
    long *dead_pid = NULL;
    int *dead_num = NULL;
    int nd = 0, cap = 0, step = SQLITE_DONE;
    if (!rc) {
        sqlite3_bind_text(s, 1, st->host, -1, SQLITE_TRANSIENT);
        while ((step = sqlite3_step(s)) == SQLITE_ROW) {
            long id = (long)sqlite3_column_int64(s, 0);
            long pid = (long)sqlite3_column_int64(s, 2);
            int gone;
            if (pid <= 0) {
                gone = 1;
            } else if (pid == st->pid) {
                gone = 0; /* our own trial */
            } else if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) {
                gone = 1;
            } else {
                /* alive, unless the pid was reused by a later process */
                long long ps = sqlite3_column_type(s, 3) == SQLITE_NULL ? -1 : sqlite3_column_int64(s, 3);
                long long now_ps = proc_start_time(pid);
                gone = ps >= 0 && now_ps >= 0 && now_ps != ps;
            }
            if (!gone) continue;
            if (nd == cap) {
                cap = cap ? 2 * cap : 16;
                long *a = realloc(dead, sizeof(long) * (size_t)cap);
                if (a) dead = a;
                long *b = realloc(dead_pid, sizeof(long) * (size_t)cap);
                if (b) dead_pid = b;
                int *c = realloc(dead_num, sizeof(int) * (size_t)cap);
                if (c) dead_num = c;
                if (!a || !b || !c) {
                    rc = rf_err_set(e, RF_ENOMEM, "out of memory");
                    break;
                }
            }
            dead[nd] = id;
            dead_pid[nd] = pid;
            dead_num[nd] = sqlite3_column_int(s, 1);
            nd++;
        }
        sqlite3_finalize(s);
        if (!rc && step != SQLITE_DONE) rc = db_fail(st, step, "reading running trials", e);
    }
    for (int i = 0; i < nd && !rc; i++) {
        char reason[160];
        snprintf(reason, sizeof reason, "worker died (pid %ld on %s)", dead_pid[i], st->host);
        rc = mark_lost(st, dead[i], reason, requeue, e);
    }
    if (!rc) rc = commit(st, e);
    if (rc) rollback(st);
    else if (n_marked) *n_marked = nd;
    free(dead);
    free(dead_pid);
    free(dead_num);
    return rc;
}
