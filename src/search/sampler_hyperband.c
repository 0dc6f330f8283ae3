/* Multi-fidelity samplers on a study: asynchronous successive halving (ASHA, Li et al. 2020),
 * Hyperband (Li et al. 2018) and BOHB (Falkner et al. 2018, with sampler_bohb.c), plus a pruner
 * that applies the same rule to intermediate values.
 *
 * The planner keeps no state of its own: every rf_sampler_ask reads all trials of the study file
 * (one read transaction on a second SQLite connection, so running and queued trials are seen
 * too), replays them into brackets, rungs and configurations, decides the next job and creates it
 * with rf_study_ask_fixed. The read, the decision and the creation happen under an exclusive
 * flock on STUDY-mf.lock, so processes sharing a study decide one at a time on the same, complete
 * picture: no configuration is promoted twice, and a resumed study goes on where it stopped.
 *
 * Replay: trials are taken in the order of their numbers (queued rows last). A trial with sampler
 * "fixed" whose configuration is new to the study is a new configuration; it takes the next slot
 * of the lowest rung (bracket after bracket: Hyperband iteration j runs bracket
 * s = s_max - j mod (s_max + 1)). A trial with the configuration of a known one (also a
 * re-queued copy) is a job of that configuration at the rung of its budget. Configurations are
 * compared by their stored canonical text, so new configurations are drawn until they differ from
 * every configuration of the study. Other trials (enqueued, or made by plain rf_study_ask) are
 * not part of the brackets; BOHB's model still learns from them. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "mf_internal.h"

#define READ_BUSY_MS 60000
#define NEW_CONFIG_TRIES 200

/* ---------------------------------------------------------------------------------------
 * Hyperband's brackets
 * --------------------------------------------------------------------------------------- */

int rf_hyperband_brackets(double min_budget, double max_budget, double eta, int integer_budgets,
                          rf_mf_bracket *out, int max_out, int *n_out, rf_err *e) {
    if (n_out) *n_out = 0;
    if (!(min_budget > 0) || !isfinite(min_budget) || !(max_budget >= min_budget) || !isfinite(max_budget))
        return rf_err_set(e, RF_EARG, "multi-fidelity: need 0 < min_budget <= max_budget, got min_budget %g, max_budget %g",
                          min_budget, max_budget);
    if (!(eta > 1) || !isfinite(eta) || eta > 1000)
        return rf_err_set(e, RF_EARG, "multi-fidelity: eta must be in (1, 1000], got %g", eta);
    if (integer_budgets && min_budget < 1)
        return rf_err_set(e, RF_EARG, "multi-fidelity: whole-number budgets need min_budget >= 1, got %g", min_budget);
    const double R = max_budget / min_budget;
    int smax = (int)floor(log(R) / log(eta) + 1e-9);
    if (smax < 0) smax = 0;
    if (smax + 1 > RF_MF_MAX_RUNGS)
        return rf_err_set(e, RF_EARG,
                          "multi-fidelity: max_budget / min_budget = %g needs %d rungs with eta %g; at most %d "
                          "(use a larger eta or a narrower range)", R, smax + 1, eta, RF_MF_MAX_RUNGS);
    if (max_out < smax + 1)
        return rf_err_set(e, RF_EARG, "multi-fidelity: room for %d brackets, %d needed", max_out, smax + 1);
    for (int j = 0; j <= smax; j++) {
        const int s = smax - j;
        rf_mf_bracket *B = &out[j];
        memset(B, 0, sizeof *B);
        B->s = s;
        B->n_rungs = s + 1;
        /* n = ceil((s_max + 1) / (s + 1) * eta^s), guarded against 27.000000001 */
        const double n0 = (double)(smax + 1) / (double)(s + 1) * pow(eta, s);
        double nn = ceil(n0 - 1e-9 * n0);
        if (nn > 1e8) return rf_err_set(e, RF_EARG, "multi-fidelity: bracket %d would hold %g configurations", s, nn);
        for (int i = 0; i <= s; i++) {
            double ni = floor(nn * pow(eta, -i) + 1e-9);
            B->n[i] = ni < 1 ? 1 : (int)ni;
            double b = max_budget * pow(eta, i - s);
            if (i == s) b = max_budget;
            if (integer_budgets) b = floor(b + 0.5);
            B->budget[i] = b;
            if (i > 0 && !(B->budget[i] > B->budget[i - 1]))
                return rf_err_set(e, RF_EARG,
                                  "multi-fidelity: bracket %d: budgets %g and %g coincide once rounded to whole "
                                  "numbers (use a larger eta or range)", s, B->budget[i - 1], B->budget[i]);
        }
    }
    if (n_out) *n_out = smax + 1;
    return RF_OK;
}

/* ---------------------------------------------------------------------------------------
 * options, creation
 * --------------------------------------------------------------------------------------- */

void rf_mf_opts_default(rf_mf_opts *o, rf_mf_kind kind) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->min_budget = 1;
    o->max_budget = 27;
    o->eta = 3;
    o->integer_budgets = 1;
    o->asynchronous = kind == RF_MF_ASHA;
    o->model = 0;
    o->random_fraction = 1.0 / 3.0;
    o->min_points_in_model = 0;
    rf_tpe_opts_default(&o->tpe);
    o->tpe.gamma_frac = 0.15;
    o->tpe.gamma_cap = INT_MAX / 4;
    o->tpe.n_startup_trials = 0; /* the model is only fitted with enough points (see above) */
}

typedef struct mf_impl {
    rf_mf_opts o;
    rf_mf_bracket br[RF_MF_MAX_RUNGS];
    int n_br;
    rf_sampler *tpe; /* BOHB's model, or NULL */
    /* parsed configurations by trial row id (the model's history), per process and study */
    char *cache_path;
    long cache_pid;
    rf_config **cfg_by_id;
    long cap_id;
} mf_impl;

static int mf_sample(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng, rf_config *out, rf_err *e) {
    mf_impl *M = s->impl;
    double mb;
    int mn;
    return rf__mf_new_config(&M->o, M->tpe, sp, h, rng, out, &mb, &mn, e);
}

static void cache_clear(mf_impl *M) {
    if (M->cfg_by_id) {
        for (long i = 0; i < M->cap_id; i++)
            if (M->cfg_by_id[i]) {
                rf_config_free(M->cfg_by_id[i]);
                free(M->cfg_by_id[i]);
            }
    }
    free(M->cfg_by_id);
    M->cfg_by_id = NULL;
    M->cap_id = 0;
    free(M->cache_path);
    M->cache_path = NULL;
}

static void mf_destroy(rf_sampler *s) {
    mf_impl *M = s->impl;
    if (!M) return;
    rf_sampler_free(M->tpe);
    cache_clear(M);
    free(M);
}

static const rf_sampler_ops ASHA_OPS = {"asha", mf_sample, mf_destroy};
static const rf_sampler_ops HB_OPS = {"hyperband", mf_sample, mf_destroy};
static const rf_sampler_ops HB_ASYNC_OPS = {"hyperband-async", mf_sample, mf_destroy};
static const rf_sampler_ops BOHB_OPS = {"bohb", mf_sample, mf_destroy};
static const rf_sampler_ops BOHB_ASYNC_OPS = {"bohb-async", mf_sample, mf_destroy};
static const rf_sampler_ops ASHA_TPE_OPS = {"asha-tpe", mf_sample, mf_destroy};

int rf_sampler_is_multifidelity(const rf_sampler *s) {
    return s && (s->ops == &ASHA_OPS || s->ops == &HB_OPS || s->ops == &HB_ASYNC_OPS || s->ops == &BOHB_OPS ||
                 s->ops == &BOHB_ASYNC_OPS || s->ops == &ASHA_TPE_OPS);
}

const rf_mf_opts *rf_sampler_mf_opts(const rf_sampler *s) {
    return rf_sampler_is_multifidelity(s) ? &((const mf_impl *)s->impl)->o : NULL;
}

static int check_opts(const rf_mf_opts *o, rf_err *e) {
    if (o->kind != RF_MF_ASHA && o->kind != RF_MF_HYPERBAND)
        return rf_err_set(e, RF_EARG, "multi-fidelity: unknown kind %d", (int)o->kind);
    if (o->model != 0 && o->model != 1) return rf_err_set(e, RF_EARG, "multi-fidelity: model must be 0 or 1, got %d", o->model);
    if (!(o->random_fraction >= 0 && o->random_fraction <= 1))
        return rf_err_set(e, RF_EARG, "multi-fidelity: random_fraction must be in [0, 1], got %g", o->random_fraction);
    if (o->min_points_in_model < 0)
        return rf_err_set(e, RF_EARG, "multi-fidelity: min_points_in_model must be >= 0, got %d", o->min_points_in_model);
    return RF_OK;
}

rf_sampler *rf_sampler_mf_create(const rf_mf_opts *o, rf_err *e) {
    rf_mf_opts d;
    if (!o) {
        rf_mf_opts_default(&d, RF_MF_HYPERBAND);
        o = &d;
    }
    if (check_opts(o, e)) return NULL;
    rf_sampler *s = rf_zalloc(sizeof *s, e);
    mf_impl *M = rf_zalloc(sizeof *M, e);
    if (!s || !M) {
        free(s);
        free(M);
        return NULL;
    }
    M->o = *o;
    if (rf_hyperband_brackets(o->min_budget, o->max_budget, o->eta, o->integer_budgets, M->br, RF_MF_MAX_RUNGS, &M->n_br, e)) {
        free(s);
        free(M);
        return NULL;
    }
    if (o->model) {
        M->tpe = rf_sampler_tpe_create(&o->tpe, e);
        if (!M->tpe) {
            free(s);
            free(M);
            return NULL;
        }
    }
    s->impl = M;
    if (o->kind == RF_MF_ASHA) s->ops = o->model ? &ASHA_TPE_OPS : &ASHA_OPS;
    else if (o->model) s->ops = o->asynchronous ? &BOHB_ASYNC_OPS : &BOHB_OPS;
    else s->ops = o->asynchronous ? &HB_ASYNC_OPS : &HB_OPS;
    return s;
}

int rf_sampler_mf_set_budgets(rf_sampler *s, double min_budget, double max_budget, double eta, rf_err *e) {
    if (!rf_sampler_is_multifidelity(s)) return rf_err_set(e, RF_EARG, "sampler %s is not a multi-fidelity sampler", rf_sampler_name(s));
    mf_impl *M = s->impl;
    rf_mf_bracket br[RF_MF_MAX_RUNGS];
    int nb = 0;
    int rc = rf_hyperband_brackets(min_budget, max_budget, eta, M->o.integer_budgets, br, RF_MF_MAX_RUNGS, &nb, e);
    if (rc) return rc;
    memcpy(M->br, br, sizeof br);
    M->n_br = nb;
    M->o.min_budget = min_budget;
    M->o.max_budget = max_budget;
    M->o.eta = eta;
    return RF_OK;
}

rf_sampler *rf__sampler_create_mf(const char *name, rf_err *e) {
    if (!name) return NULL;
    rf_mf_opts o;
    if (!strcmp(name, "asha")) {
        rf_mf_opts_default(&o, RF_MF_ASHA);
    } else if (!strcmp(name, "hyperband") || !strcmp(name, "hyperband-async")) {
        rf_mf_opts_default(&o, RF_MF_HYPERBAND);
        o.asynchronous = name[9] != '\0';
    } else if (!strcmp(name, "bohb") || !strcmp(name, "bohb-async")) {
        rf_mf_opts_default(&o, RF_MF_HYPERBAND);
        o.model = 1;
        o.asynchronous = name[4] != '\0';
    } else if (!strcmp(name, "asha-tpe")) {
        rf_mf_opts_default(&o, RF_MF_ASHA);
        o.model = 1;
    } else {
        return NULL;
    }
    return rf_sampler_mf_create(&o, e);
}

/* ---------------------------------------------------------------------------------------
 * reading the study file: every trial, in one read transaction
 * --------------------------------------------------------------------------------------- */

enum { TAG_FIXED = 0, TAG_REQUEUED = 1, TAG_OTHER = 2 };

typedef struct snap_row {
    long id;
    int number; /* -1: queued */
    rf_trial_status status;
    double budget;
    double value; /* objective 0 of a complete trial, else NAN */
    int lost;
    int tag;
    char *cfg;  /* stored configuration text */
    uint64_t h;
    int ent;    /* configuration (entity) index, -1: not part of the brackets */
    int rung;
} snap_row;

typedef struct snapshot {
    snap_row *r;
    int n, cap;
    int next_number;
} snapshot;

static void snap_free(snapshot *S) {
    for (int i = 0; i < S->n; i++) free(S->r[i].cfg);
    free(S->r);
    memset(S, 0, sizeof *S);
}

static uint64_t text_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int read_fail(sqlite3 *db, const char *path, int rc, const char *what, rf_err *e) {
    return rf_err_set(e, RF_EIO, "study %s: %s: %s", path, what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

/* Opens a second connection to the study file (schema of study.c, format 1). */
static int open_reader(const char *path, sqlite3 **db, rf_err *e) {
    *db = NULL;
    int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK) {
        int r = read_fail(*db, path, rc, "opening a second connection", e);
        sqlite3_close(*db);
        *db = NULL;
        return r;
    }
    sqlite3_busy_timeout(*db, READ_BUSY_MS);
    return RF_OK;
}

static int read_snapshot(rf_study *st, snapshot *S, rf_err *e) {
    memset(S, 0, sizeof *S);
    const char *path = rf_study_path(st);
    sqlite3 *db = NULL;
    int rc = open_reader(path, &db, e);
    if (rc) return rc;
    sqlite3_stmt *q = NULL;
    int sr = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    if (sr == SQLITE_OK)
        sr = sqlite3_prepare_v2(db,
                                "SELECT id, number, status, config, budget, value, lost, sampler FROM trials "
                                "ORDER BY number IS NULL, number, id", -1, &q, NULL);
    if (sr != SQLITE_OK) {
        rc = read_fail(db, path, sr, "reading the trials", e);
        sqlite3_finalize(q);
        sqlite3_close(db);
        return rc;
    }
    int step;
    long long maxnum = -1;
    while ((step = sqlite3_step(q)) == SQLITE_ROW) {
        if (S->n == S->cap) {
            int cap = S->cap ? 2 * S->cap : 256;
            snap_row *p = realloc(S->r, sizeof *p * (size_t)cap);
            if (!p) {
                rc = rf_err_set(e, RF_ENOMEM, "out of memory (%d trials)", S->n);
                break;
            }
            S->r = p;
            S->cap = cap;
        }
        snap_row *R = &S->r[S->n];
        memset(R, 0, sizeof *R);
        R->id = (long)sqlite3_column_int64(q, 0);
        R->number = sqlite3_column_type(q, 1) == SQLITE_NULL ? -1 : sqlite3_column_int(q, 1);
        if (R->number > maxnum) maxnum = R->number;
        const char *stt = (const char *)sqlite3_column_text(q, 2);
        if (rf_trial_status_parse(stt, &R->status) != RF_OK) {
            rc = rf_err_set(e, RF_EFORMAT, "study %s: trial row %ld: unknown status \"%s\"", path, R->id, stt ? stt : "");
            break;
        }
        const char *cfg = (const char *)sqlite3_column_text(q, 3);
        R->cfg = strdup(cfg ? cfg : "");
        if (!R->cfg) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            break;
        }
        R->h = text_hash(R->cfg);
        R->budget = sqlite3_column_double(q, 4);
        R->value = sqlite3_column_type(q, 5) == SQLITE_NULL ? NAN : sqlite3_column_double(q, 5);
        R->lost = sqlite3_column_int(q, 6);
        const char *smp = (const char *)sqlite3_column_text(q, 7);
        R->tag = smp && !strcmp(smp, "fixed") ? TAG_FIXED : smp && !strcmp(smp, "requeued") ? TAG_REQUEUED : TAG_OTHER;
        R->ent = -1;
        R->rung = -1;
        S->n++;
    }
    if (!rc && step != SQLITE_DONE) rc = read_fail(db, path, step, "reading the trials", e);
    sqlite3_finalize(q);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    S->next_number = (int)(maxnum + 1);
    if (rc) snap_free(S);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * replay: configurations, brackets, rungs
 * --------------------------------------------------------------------------------------- */

typedef struct mf_job {
    int issued;
    int n_complete, n_pending, n_failed, n_pruned, n_lost;
    double value;  /* of the first complete trial */
    int number;    /* its number */
} mf_job;

typedef struct mf_ent {
    const char *cfg;
    uint64_t h;
    int bracket;   /* index into the opened brackets */
    int slot;
    int first_number;
    mf_job job[RF_MF_MAX_RUNGS];
} mf_ent;

typedef struct mf_open {
    const rf_mf_bracket *B;
    int iter;
    int unlimited; /* ASHA */
    int *ents;     /* entities by slot */
    int n_ents, cap;
} mf_open;

typedef struct mf_state {
    const mf_impl *M;
    mf_ent *ent;
    int n_ent, cap_ent;
    int *table; /* open addressing: entity index + 1, 0 = empty */
    int tsize;
    mf_open *br;
    int n_open, cap_open;
    double sign; /* objective 0: +1 minimise, -1 maximise */
} mf_state;

static void state_free(mf_state *G) {
    free(G->ent);
    free(G->table);
    for (int i = 0; i < G->n_open; i++) free(G->br[i].ents);
    free(G->br);
    memset(G, 0, sizeof *G);
}

static int find_ent(const mf_state *G, const char *cfg, uint64_t h) {
    if (!G->tsize) return -1;
    for (size_t k = (size_t)(h & (uint64_t)(G->tsize - 1));; k = (k + 1) & (size_t)(G->tsize - 1)) {
        int v = G->table[k];
        if (!v) return -1;
        const mf_ent *E = &G->ent[v - 1];
        if (E->h == h && !strcmp(E->cfg, cfg)) return v - 1;
    }
}

static int table_put(mf_state *G, int idx, rf_err *e) {
    if (2 * (G->n_ent + 1) > G->tsize) {
        int ns = G->tsize ? 2 * G->tsize : 1024;
        int *t = calloc((size_t)ns, sizeof(int));
        if (!t) return rf_err_set(e, RF_ENOMEM, "out of memory");
        for (int i = 0; i < G->tsize; i++) {
            int v = G->table[i];
            if (!v) continue;
            size_t k = (size_t)(G->ent[v - 1].h & (uint64_t)(ns - 1));
            while (t[k]) k = (k + 1) & (size_t)(ns - 1);
            t[k] = v;
        }
        free(G->table);
        G->table = t;
        G->tsize = ns;
    }
    size_t k = (size_t)(G->ent[idx].h & (uint64_t)(G->tsize - 1));
    while (G->table[k]) k = (k + 1) & (size_t)(G->tsize - 1);
    G->table[k] = idx + 1;
    return RF_OK;
}

static const rf_mf_bracket *bracket_of_iter(const mf_impl *M, int iter) {
    if (M->o.kind == RF_MF_ASHA) return &M->br[0];
    return &M->br[iter % M->n_br];
}

static int open_bracket(mf_state *G, rf_err *e) {
    if (G->n_open == G->cap_open) {
        int cap = G->cap_open ? 2 * G->cap_open : 8;
        mf_open *p = realloc(G->br, sizeof *p * (size_t)cap);
        if (!p) return rf_err_set(e, RF_ENOMEM, "out of memory");
        G->br = p;
        G->cap_open = cap;
    }
    mf_open *O = &G->br[G->n_open];
    memset(O, 0, sizeof *O);
    O->iter = G->n_open;
    O->B = bracket_of_iter(G->M, O->iter);
    O->unlimited = G->M->o.kind == RF_MF_ASHA;
    G->n_open++;
    return RF_OK;
}

static int cap_of(const mf_open *O, int rung) { return O->unlimited ? INT_MAX : O->B->n[rung]; }

static int rung_of_budget(const rf_mf_bracket *B, double b) {
    for (int i = 0; i < B->n_rungs; i++)
        if (rf__budget_eq(B->budget[i], b)) return i;
    return -1;
}

/* A new configuration (first trial of `row`): the next free slot on the lowest rung. */
static int new_entity(mf_state *G, snap_row *row, rf_err *e) {
    if (G->n_open == 0 || G->br[G->n_open - 1].n_ents >= cap_of(&G->br[G->n_open - 1], 0)) {
        int rc = open_bracket(G, e);
        if (rc) return rc;
    }
    mf_open *O = &G->br[G->n_open - 1];
    if (G->n_ent == G->cap_ent) {
        int cap = G->cap_ent ? 2 * G->cap_ent : 256;
        mf_ent *p = realloc(G->ent, sizeof *p * (size_t)cap);
        if (!p) return rf_err_set(e, RF_ENOMEM, "out of memory");
        G->ent = p;
        G->cap_ent = cap;
    }
    if (O->n_ents == O->cap) {
        int cap = O->cap ? 2 * O->cap : 64;
        int *p = realloc(O->ents, sizeof *p * (size_t)cap);
        if (!p) return rf_err_set(e, RF_ENOMEM, "out of memory");
        O->ents = p;
        O->cap = cap;
    }
    const int idx = G->n_ent;
    mf_ent *E = &G->ent[idx];
    memset(E, 0, sizeof *E);
    E->cfg = row->cfg;
    E->h = row->h;
    E->bracket = G->n_open - 1;
    E->slot = O->n_ents;
    E->first_number = row->number;
    O->ents[O->n_ents++] = idx;
    G->n_ent++;
    return table_put(G, idx, e);
}

static void job_add(mf_job *J, const snap_row *R) {
    J->issued = 1;
    switch (R->status) {
    case RF_TRIAL_COMPLETE:
        if (J->n_complete++ == 0) {
            J->value = R->value;
            J->number = R->number;
        }
        break;
    case RF_TRIAL_QUEUED:
    case RF_TRIAL_RUNNING: J->n_pending++; break;
    case RF_TRIAL_PRUNED: J->n_pruned++; break;
    case RF_TRIAL_FAILED:
        if (R->lost) J->n_lost++;
        else J->n_failed++;
        break;
    }
}

static int job_finished(const mf_job *J) { return J->n_complete > 0 || (J->n_pending == 0 && (J->n_failed > 0 || J->n_pruned > 0)); }
static int job_orphan(const mf_job *J) {
    return J->issued && J->n_complete == 0 && J->n_pending == 0 && J->n_failed == 0 && J->n_pruned == 0;
}

static int replay(mf_state *G, const mf_impl *M, snapshot *S, const char *path, rf_err *e) {
    for (int i = 0; i < S->n; i++) {
        snap_row *R = &S->r[i];
        if (R->tag == TAG_OTHER) continue;
        int idx = find_ent(G, R->cfg, R->h);
        if (idx < 0) {
            if (R->tag != TAG_FIXED) continue; /* a re-queued copy of a trial outside the brackets */
            int rc = new_entity(G, R, e);
            if (rc) return rc;
            idx = G->n_ent - 1;
            const rf_mf_bracket *B = G->br[G->ent[idx].bracket].B;
            if (!rf__budget_eq(R->budget, B->budget[0]))
                return rf_err_set(e, RF_ESTATE,
                                  "study %s: trial %d starts a configuration at budget %g where the schedule (min %g, "
                                  "max %g, eta %g) expects %g; was the study run with other budgets?",
                                  path, R->number, R->budget, M->o.min_budget, M->o.max_budget, M->o.eta, B->budget[0]);
        }
        mf_ent *E = &G->ent[idx];
        const rf_mf_bracket *B = G->br[E->bracket].B;
        int k = rung_of_budget(B, R->budget);
        if (k < 0)
            return rf_err_set(e, RF_ESTATE,
                              "study %s: trial %d runs a configuration of bracket %d at budget %g, which is none of its "
                              "rungs (min %g, max %g, eta %g); was the study run with other budgets?",
                              path, R->number, G->br[E->bracket].iter, R->budget, M->o.min_budget, M->o.max_budget, M->o.eta);
        R->ent = idx;
        R->rung = k;
        job_add(&E->job[k], R);
    }
    return RF_OK;
}

/* ---------------------------------------------------------------------------------------
 * decisions
 * --------------------------------------------------------------------------------------- */

enum { DEC_STOP = 0, DEC_CLAIM, DEC_REISSUE, DEC_PROMOTE, DEC_NEW };

typedef struct mf_decision {
    int kind;
    int ent;
    int rung;
    int bracket;
    int from_number;
    double budget;
} mf_decision;

typedef struct { double v; int number; int ent; } ranked;
static int cmp_ranked(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return x->number - y->number;
}

/* Rung statistics of bracket O at rung k. */
typedef struct rung_stat {
    int jobs, finished, complete, pending;
} rung_stat;

static rung_stat rung_stats(const mf_state *G, const mf_open *O, int k) {
    rung_stat r = {0, 0, 0, 0};
    for (int i = 0; i < O->n_ents; i++) {
        const mf_job *J = &G->ent[O->ents[i]].job[k];
        if (!J->issued) continue;
        r.jobs++;
        if (job_finished(J)) r.finished++;
        else r.pending++;
        if (J->n_complete > 0) r.complete++;
    }
    return r;
}

/* Rung k of O will take no more jobs and has all of them finished. */
static int rung_closed(const mf_state *G, const mf_open *O, int k) {
    if (O->unlimited) return 0;
    rung_stat r = rung_stats(G, O, k);
    if (r.pending > 0 || r.finished < r.jobs) return 0;
    if (k == 0) return O->n_ents >= O->B->n[0];
    if (!rung_closed(G, O, k - 1)) return 0;
    rung_stat below = rung_stats(G, O, k - 1);
    int target = below.complete < O->B->n[k] ? below.complete : O->B->n[k];
    return r.jobs >= target;
}

/* The best configuration of rung k of O that may move to rung k + 1 now, or -1. */
static int promotable(const mf_state *G, const mf_open *O, int k, int async, ranked *buf, int *from_number) {
    const int cap_next = cap_of(O, k + 1);
    rung_stat next = rung_stats(G, O, k + 1);
    if (next.jobs >= cap_next) return -1;
    int n = 0;
    for (int i = 0; i < O->n_ents; i++) {
        const int idx = O->ents[i];
        const mf_job *J = &G->ent[idx].job[k];
        if (J->issued && J->n_complete > 0) buf[n++] = (ranked){G->sign * J->value, J->number, idx};
    }
    if (n == 0) return -1;
    int top;
    if (async) {
        rung_stat r = rung_stats(G, O, k);
        top = (int)floor(r.finished / G->M->o.eta + 1e-9);
    } else {
        if (!rung_closed(G, O, k)) return -1;
        top = O->B->n[k + 1];
    }
    if (top > n) top = n;
    if (top > cap_next) top = cap_next;
    if (top <= 0) return -1;
    qsort(buf, (size_t)n, sizeof *buf, cmp_ranked);
    for (int i = 0; i < top; i++)
        if (!G->ent[buf[i].ent].job[k + 1].issued) {
            *from_number = buf[i].number;
            return buf[i].ent;
        }
    return -1;
}

static int decide(const mf_state *G, const snapshot *S, mf_decision *d, rf_err *e) {
    memset(d, 0, sizeof *d);
    d->from_number = -1;
    /* 1. queued trials go first (rf_study_ask claims the oldest) */
    for (int i = 0; i < S->n; i++)
        if (S->r[i].status == RF_TRIAL_QUEUED) {
            d->kind = DEC_CLAIM;
            d->ent = S->r[i].ent;
            d->rung = S->r[i].rung;
            d->budget = S->r[i].budget;
            d->bracket = d->ent >= 0 ? G->br[G->ent[d->ent].bracket].iter : -1;
            return RF_OK;
        }
    /* 2. jobs whose only trials were lost with their workers */
    for (int b = 0; b < G->n_open; b++) {
        const mf_open *O = &G->br[b];
        for (int k = O->B->n_rungs - 1; k >= 0; k--)
            for (int i = 0; i < O->n_ents; i++) {
                const mf_ent *E = &G->ent[O->ents[i]];
                if (job_orphan(&E->job[k])) {
                    d->kind = DEC_REISSUE;
                    d->ent = O->ents[i];
                    d->rung = k;
                    d->bracket = O->iter;
                    d->budget = O->B->budget[k];
                    return RF_OK;
                }
            }
    }
    /* 3. promotions: oldest bracket first, highest rung first */
    ranked *buf = malloc(sizeof *buf * (size_t)(G->n_ent > 0 ? G->n_ent : 1));
    if (!buf) return rf_err_set(e, RF_ENOMEM, "out of memory");
    const int async = G->M->o.kind == RF_MF_ASHA || G->M->o.asynchronous;
    for (int b = 0; b < G->n_open; b++) {
        const mf_open *O = &G->br[b];
        for (int k = O->B->n_rungs - 2; k >= 0; k--) {
            int from = -1;
            int idx = promotable(G, O, k, async, buf, &from);
            if (idx >= 0) {
                free(buf);
                d->kind = DEC_PROMOTE;
                d->ent = idx;
                d->rung = k + 1;
                d->bracket = O->iter;
                d->budget = O->B->budget[k + 1];
                d->from_number = from;
                return RF_OK;
            }
        }
    }
    free(buf);
    /* 4. a new configuration: the current bracket, or the next one when it is full */
    int iter = G->n_open;
    if (G->n_open > 0 && G->br[G->n_open - 1].n_ents < cap_of(&G->br[G->n_open - 1], 0)) iter = G->n_open - 1;
    const rf_mf_bracket *B = bracket_of_iter(G->M, iter);
    d->kind = DEC_NEW;
    d->ent = -1;
    d->rung = 0;
    d->bracket = iter;
    d->budget = B->budget[0];
    return RF_OK;
}

/* ---------------------------------------------------------------------------------------
 * the lock
 * --------------------------------------------------------------------------------------- */

static int lock_study(const char *path, int *fd, rf_err *e) {
    size_t n = strlen(path);
    char *lp = malloc(n + 16);
    if (!lp) return rf_err_set(e, RF_ENOMEM, "out of memory");
    snprintf(lp, n + 16, "%s-mf.lock", path);
    int f = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) {
        int rc = rf_err_set(e, RF_EIO, "study %s: lock file %s: %s", path, lp, strerror(errno));
        free(lp);
        return rc;
    }
    while (flock(f, LOCK_EX) != 0) {
        if (errno == EINTR) continue;
        int rc = rf_err_set(e, RF_EIO, "study %s: locking %s: %s", path, lp, strerror(errno));
        close(f);
        free(lp);
        return rc;
    }
    free(lp);
    *fd = f;
    return RF_OK;
}

static void unlock_study(int fd) {
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}

/* ---------------------------------------------------------------------------------------
 * asking
 * --------------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Parsed configuration of row R (cached by row id for this process and study). */
static const rf_config *row_config(mf_impl *M, const rf_space *sp, const char *path, const snap_row *R, rf_err *e) {
    long pid = (long)getpid();
    if (!M->cache_path || strcmp(M->cache_path, path) != 0 || M->cache_pid != pid) {
        cache_clear(M);
        M->cache_path = strdup(path);
        M->cache_pid = pid;
        if (!M->cache_path) {
            rf_err_set(e, RF_ENOMEM, "out of memory");
            return NULL;
        }
    }
    if (R->id < 0 || R->id > 1000000000L) {
        rf_err_set(e, RF_EFORMAT, "study %s: trial row id %ld out of range", path, R->id);
        return NULL;
    }
    if (R->id >= M->cap_id) {
        long cap = M->cap_id ? M->cap_id : 1024;
        while (cap <= R->id) cap *= 2;
        rf_config **p = realloc(M->cfg_by_id, sizeof *p * (size_t)cap);
        if (!p) {
            rf_err_set(e, RF_ENOMEM, "out of memory");
            return NULL;
        }
        for (long i = M->cap_id; i < cap; i++) p[i] = NULL;
        M->cfg_by_id = p;
        M->cap_id = cap;
    }
    if (!M->cfg_by_id[R->id]) {
        rf_config *c = calloc(1, sizeof *c);
        if (!c) {
            rf_err_set(e, RF_ENOMEM, "out of memory");
            return NULL;
        }
        if (rf_config_parse(sp, R->cfg, c, e) != RF_OK) {
            rf_err_prefix(e, RF_EFORMAT, "study %s: trial %d", path, R->number);
            rf_config_free(c);
            free(c);
            return NULL;
        }
        M->cfg_by_id[R->id] = c;
    }
    return M->cfg_by_id[R->id];
}

/* Draws a new configuration that differs from every configuration of the study. */
static int draw_new(mf_impl *M, rf_study *st, const snapshot *S, const mf_state *G, rf_config *out, double *model_budget,
                    int *model_n, rf_err *e) {
    const rf_space *sp = rf_study_space(st);
    const char *path = rf_study_path(st);
    /* history: the complete trials (objective 0) */
    int nc = 0;
    for (int i = 0; i < S->n; i++) nc += S->r[i].status == RF_TRIAL_COMPLETE && isfinite(S->r[i].value);
    rf_trial *tr = calloc((size_t)(nc > 0 ? nc : 1), sizeof *tr);
    const rf_trial **items = calloc((size_t)(nc > 0 ? nc : 1), sizeof *items);
    if (!tr || !items) {
        free(tr);
        free(items);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    int m = 0, rc = RF_OK;
    if (M->o.model) {
        for (int i = 0; i < S->n && !rc; i++) {
            const snap_row *R = &S->r[i];
            if (R->status != RF_TRIAL_COMPLETE || !isfinite(R->value)) continue;
            const rf_config *c = row_config(M, sp, path, R, e);
            if (!c) {
                rc = e ? e->code : RF_EFORMAT;
                break;
            }
            rf_trial *t = &tr[m];
            t->cfg = *c; /* shallow: owned by the cache */
            t->number = R->number;
            t->status = RF_TRIAL_COMPLETE;
            t->budget = R->budget;
            t->n_values = 1;
            t->values[0] = R->value;
            t->last_step = -1;
            t->last_value = NAN;
            items[m] = t;
            m++;
        }
    }
    rf_history h = {0};
    h.n = m;
    h.items = items;
    h.n_objectives = 1;
    h.directions[0] = rf_study_objective(st, 0)->direction;
    rf_rng rng;
    rf_rng_seed(&rng, mix64(rf_study_seed(st) ^ mix64(0x4d46000000000000ull + (uint64_t)S->next_number)));
    for (int attempt = 0; !rc; attempt++) {
        /* after a few repeats of known configurations, draw at random */
        rf_mf_opts o = M->o;
        if (attempt >= 10) o.model = 0;
        rc = rf__mf_new_config(&o, M->tpe, sp, &h, &rng, out, model_budget, model_n, e);
        if (rc) break;
        char *txt = rf_config_to_string(sp, out);
        if (!txt) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            break;
        }
        int known = find_ent(G, txt, text_hash(txt)) >= 0;
        for (int i = 0; i < S->n && !known; i++) known = S->r[i].h == text_hash(txt) && !strcmp(S->r[i].cfg, txt);
        free(txt);
        if (!known) break;
        if (attempt + 1 >= NEW_CONFIG_TRIES) {
            rc = rf_err_set(e, RF_ESTATE,
                            "study %s: %d draws gave only configurations already in the study; the search space has too "
                            "few distinct configurations for these brackets", path, NEW_CONFIG_TRIES);
            break;
        }
    }
    free(tr);
    free(items);
    return rc;
}

static double eff_budget(const mf_impl *M, double b) { return b > 0 ? b : M->o.max_budget; }

int rf_sampler_ask(rf_sampler *s, rf_study *st, int max_trials, double max_total_budget, rf_trial **t, rf_mf_info *info,
                   rf_err *e) {
    rf_mf_info dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    info->bracket = -1;
    info->bracket_s = -1;
    info->promoted_from = -1;
    info->model_budget = NAN;
    info->total_budget = NAN;
    *t = NULL;
    if (!s || !st) return rf_err_set(e, RF_EARG, "ask: no sampler or study");
    if (!rf_sampler_is_multifidelity(s)) {
        int rc = rf_study_ask_limit(st, s, max_trials, t, e);
        if (!rc && *t) info->budget = (*t)->budget;
        return rc;
    }
    mf_impl *M = s->impl;
    const char *path = rf_study_path(st);
    int fd = -1;
    int rc = lock_study(path, &fd, e);
    if (rc) return rc;
    snapshot S;
    mf_state G;
    memset(&G, 0, sizeof G);
    G.M = M;
    G.sign = rf_study_objective(st, 0)->direction == RF_MAXIMIZE ? -1.0 : 1.0;
    rc = read_snapshot(st, &S, e);
    if (rc) {
        unlock_study(fd);
        return rc;
    }
    rc = replay(&G, M, &S, path, e);
    /* limits over the counted trials (numbered, not lost) */
    int counted = 0;
    double used = 0;
    for (int i = 0; i < S.n; i++)
        if (S.r[i].number >= 0 && !S.r[i].lost) {
            counted++;
            used += eff_budget(M, S.r[i].budget);
        }
    mf_decision d;
    memset(&d, 0, sizeof d);
    if (!rc && ((max_trials > 0 && counted >= max_trials) || (max_total_budget > 0 && used >= max_total_budget - 1e-9)))
        d.kind = DEC_STOP;
    else if (!rc)
        rc = decide(&G, &S, &d, e);
    rf_config cfg = {0};
    if (!rc && d.kind != DEC_STOP) {
        const rf_space *sp = rf_study_space(st);
        switch (d.kind) {
        case DEC_CLAIM:
            rc = rf_study_ask_limit(st, s, max_trials, t, e);
            break;
        case DEC_REISSUE:
        case DEC_PROMOTE:
            rc = rf_config_parse(sp, G.ent[d.ent].cfg, &cfg, e);
            if (rc) rf_err_prefix(e, rc, "study %s: configuration of trial %d", path, G.ent[d.ent].first_number);
            if (!rc) rc = rf_study_ask_fixed(st, &cfg, d.budget, t, e);
            break;
        case DEC_NEW:
            rc = rf_config_init(&cfg, sp, e);
            if (!rc) rc = draw_new(M, st, &S, &G, &cfg, &info->model_budget, &info->model_n, e);
            if (!rc) rc = rf_study_ask_fixed(st, &cfg, d.budget, t, e);
            break;
        default: break;
        }
    }
    rf_config_free(&cfg);
    unlock_study(fd);
    if (!rc && *t) {
        info->bracket = d.bracket;
        info->bracket_s = d.bracket >= 0 ? bracket_of_iter(M, d.bracket)->s : -1;
        info->rung = d.rung;
        info->budget = (*t)->budget;
        info->promoted_from = d.kind == DEC_PROMOTE ? d.from_number : -1;
        info->reissued = d.kind == DEC_REISSUE;
        info->total_budget = used + eff_budget(M, (*t)->budget);
        if (d.kind != DEC_NEW) {
            info->model_budget = NAN;
            info->model_n = 0;
        }
        if (d.kind == DEC_CLAIM && d.ent < 0) {
            info->bracket = -1;
            info->bracket_s = -1;
            info->rung = 0;
        }
    }
    state_free(&G);
    snap_free(&S);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * incumbent
 * --------------------------------------------------------------------------------------- */

const rf_trial *rf_study_incumbent(const rf_study *st, int k) {
    if (k < 0 || k >= rf_study_n_objectives(st)) return NULL;
    const double sign = rf_study_objective(st, k)->direction == RF_MAXIMIZE ? -1 : 1;
    double top = -INFINITY;
    for (int i = 0; i < rf_study_n_finished(st); i++) {
        const rf_trial *t = rf_study_finished(st, i);
        if (t->status != RF_TRIAL_COMPLETE || t->n_values <= k || !isfinite(t->values[k])) continue;
        double b = t->budget > 0 ? t->budget : INFINITY;
        if (b > top) top = b;
    }
    const rf_trial *best = NULL;
    for (int i = 0; i < rf_study_n_finished(st); i++) {
        const rf_trial *t = rf_study_finished(st, i);
        if (t->status != RF_TRIAL_COMPLETE || t->n_values <= k || !isfinite(t->values[k])) continue;
        double b = t->budget > 0 ? t->budget : INFINITY;
        if (!(b == top || (isfinite(b) && rf__budget_eq(b, top)))) continue;
        if (!best || sign * t->values[k] < sign * best->values[k]) best = t;
    }
    return best;
}

/* ---------------------------------------------------------------------------------------
 * pruner
 * --------------------------------------------------------------------------------------- */

struct rf_pruner {
    rf_mf_opts o;
    rf_mf_bracket br[RF_MF_MAX_RUNGS];
    int n_br;
    long total; /* sum of the brackets' sizes (round robin) */
};

rf_pruner *rf_pruner_create(const rf_mf_opts *o, rf_err *e) {
    rf_mf_opts d;
    if (!o) {
        rf_mf_opts_default(&d, RF_MF_ASHA);
        o = &d;
    }
    if (check_opts(o, e)) return NULL;
    rf_pruner *p = rf_zalloc(sizeof *p, e);
    if (!p) return NULL;
    p->o = *o;
    if (rf_hyperband_brackets(o->min_budget, o->max_budget, o->eta, o->integer_budgets, p->br, RF_MF_MAX_RUNGS, &p->n_br, e)) {
        free(p);
        return NULL;
    }
    for (int b = 0; b < p->n_br; b++) p->total += p->br[b].n[0];
    return p;
}

void rf_pruner_free(rf_pruner *p) { free(p); }

int rf_pruner_bracket(const rf_pruner *p, int number) {
    if (!p || p->o.kind == RF_MF_ASHA || number < 0) return 0;
    long r = (long)number % p->total;
    for (int b = 0; b < p->n_br; b++) {
        if (r < p->br[b].n[0]) return b;
        r -= p->br[b].n[0];
    }
    return p->n_br - 1;
}

static long rung_step(double b) { return (long)ceil(b - 1e-9); }

int rf_pruner_report(rf_pruner *p, rf_study *st, const rf_trial *t, long step, double value, int *prune, rf_err *e) {
    *prune = 0;
    if (!p || !st || !t) return rf_err_set(e, RF_EARG, "pruner: no pruner, study or trial");
    int rc = rf_study_report(st, t, step, value, e);
    if (rc) return rc;
    if (!isfinite(value)) {
        *prune = 1;
        return RF_OK;
    }
    const int b = rf_pruner_bracket(p, t->number);
    const rf_mf_bracket *B = &p->br[b];
    int k = -1;
    for (int i = 0; i + 1 < B->n_rungs; i++)
        if (rung_step(B->budget[i]) == step) k = i;
    if (k < 0) return RF_OK;
    const double sign = rf_study_objective(st, 0)->direction == RF_MAXIMIZE ? -1.0 : 1.0;
    const char *path = rf_study_path(st);
    sqlite3 *db = NULL;
    rc = open_reader(path, &db, e);
    if (rc) return rc;
    sqlite3_stmt *q = NULL;
    int sr = sqlite3_prepare_v2(db,
                                "SELECT t.number, i.value FROM intermediate i JOIN trials t ON t.id = i.trial_id "
                                "WHERE i.step = ? AND i.value IS NOT NULL AND t.number IS NOT NULL AND t.number != ?",
                                -1, &q, NULL);
    if (sr != SQLITE_OK) {
        rc = read_fail(db, path, sr, "reading intermediate values", e);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_bind_int64(q, 1, step);
    sqlite3_bind_int(q, 2, t->number);
    int n = 0, cap = 64;
    double *v = malloc(sizeof(double) * (size_t)cap);
    if (!v) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
    int stp = SQLITE_DONE;
    if (!rc) v[n++] = sign * value;
    while (!rc && (stp = sqlite3_step(q)) == SQLITE_ROW) {
        int num = sqlite3_column_int(q, 0);
        double x = sqlite3_column_double(q, 1);
        if (rf_pruner_bracket(p, num) != b || !isfinite(x)) continue;
        if (n == cap) {
            cap *= 2;
            double *nv = realloc(v, sizeof(double) * (size_t)cap);
            if (!nv) {
                rc = rf_err_set(e, RF_ENOMEM, "out of memory");
                break;
            }
            v = nv;
        }
        v[n++] = sign * x;
    }
    if (!rc && stp != SQLITE_DONE) rc = read_fail(db, path, stp, "reading intermediate values", e);
    sqlite3_finalize(q);
    sqlite3_close(db);
    if (!rc) {
        /* continue when among the best max(1, floor(n / eta)) */
        int top = (int)floor(n / p->o.eta + 1e-9);
        if (top < 1) top = 1;
        int better = 0;
        for (int i = 1; i < n; i++) better += v[i] < v[0];
        *prune = better >= top;
    }
    free(v);
    return rc;
}
