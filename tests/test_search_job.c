/* The search job (src/search/objective.c) and study reports (src/search/report.c):
 *   - task splits: subject-wise parts share no subject, sizes follow the fractions, every row is
 *     used once, the fingerprint follows the data and the seed;
 *   - default spaces hold only what a trial can apply; space checks name the parameter;
 *   - objective words, directions and errors;
 *   - the trial objective in a study: every trial's model file, best.rf = the best trial's model,
 *     intermediate values per epoch, failures with reasons (unbuildable flow, parameter limit,
 *     divergence) while the study goes on;
 *   - fANOVA of a study recovers the one parameter that matters; the Pareto front of a study;
 *   - figures (history, architecture of every flow type) and report.json;
 *   - the morph strategy stores every child as a trial and resumes from the best one. */
#include "testutil.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* LeakSanitizer (RF_SANITIZE builds): fontconfig's process-lifetime caches behind cairo's fonts
 * are not leaks of ours (see tests/test_viz.c); only frames in fontconfig are suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

static void rm_rf(const char *path) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", path);
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 ? (long)sb.st_size : -1;
}

static int file_starts(const char *p, const char *magic, size_t n) {
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    char buf[16] = {0};
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    return got == n && memcmp(buf, magic, n) == 0;
}

/* ------------------------------------------------------------------ tasks */

static void test_task_split_subjects(void **state) {
    (void)state;
    /* 10 subjects x 20 rows, labels alternate */
    const int n = 200, d = 3;
    char dir[256], xp[300], yp[300], sp[300];
    rf_test_tmp(dir, sizeof dir, "split");
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(xp, sizeof xp, "%s/x.npy", dir);
    snprintf(yp, sizeof yp, "%s/y.npy", dir);
    snprintf(sp, sizeof sp, "%s/s.npy", dir);
    float *x = malloc(sizeof(float) * n * d);
    int *y = malloc(sizeof(int) * n), *s = malloc(sizeof(int) * n);
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < d; k++) x[i * d + k] = (float)(i * d + k); /* row i is identifiable by x[0] / 3 */
        y[i] = i % 2;
        s[i] = 100 + i / 20;
    }
    rf_ndarray ax = {.ndim = 2, .shape = {n, d}, .dtype = RF_DT_F32, .data = x};
    rf_ndarray ay = {.ndim = 1, .shape = {n}, .dtype = RF_DT_I32, .data = y};
    rf_ndarray as = {.ndim = 1, .shape = {n}, .dtype = RF_DT_I32, .data = s};
    rf_err e = {0};
    assert_int_equal(rf_npy_write(xp, &ax, &e), RF_OK);
    assert_int_equal(rf_npy_write(yp, &ay, &e), RF_OK);
    assert_int_equal(rf_npy_write(sp, &as, &e), RF_OK);

    rf_search_task_opts o;
    rf_search_task_opts_default(&o);
    o.kind = RF_TASK_CLASSIFY;
    o.seed = 7;
    rf_search_task t, t2, t3;
    assert_int_equal(rf_search_task_load(xp, yp, sp, &o, &t, &e), RF_OK);
    assert_true(t.by_subject);
    /* 10 subjects: 2 test, round(0.2 * 8) = 2 validation, 6 training */
    assert_int_equal(t.n_subjects[2], 2);
    assert_int_equal(t.n_subjects[1], 2);
    assert_int_equal(t.n_subjects[0], 6);
    assert_int_equal(t.test.n, 40);
    assert_int_equal(t.val.n, 40);
    assert_int_equal(t.train.n, 120);
    assert_int_equal(t.n_classes, 2);
    /* every row exactly once; a subject in exactly one part; labels follow their rows */
    int *seen = calloc(n, sizeof(int)), part_of[10];
    for (int k = 0; k < 10; k++) part_of[k] = -1;
    const rf_matrix *m[3] = {&t.train, &t.val, &t.test};
    const int *ly[3] = {t.ytrain, t.yval, t.ytest};
    for (int p = 0; p < 3; p++)
        for (int r = 0; r < m[p]->n; r++) {
            int row = (int)(m[p]->x[r * d] / d);
            assert_true(row >= 0 && row < n);
            seen[row]++;
            assert_int_equal(ly[p][r], row % 2);
            int subj = row / 20;
            assert_true(part_of[subj] == -1 || part_of[subj] == p);
            part_of[subj] = p;
        }
    for (int i = 0; i < n; i++) assert_int_equal(seen[i], 1);
    free(seen);
    /* deterministic; another seed another split (and fingerprint) */
    assert_int_equal(rf_search_task_load(xp, yp, sp, &o, &t2, &e), RF_OK);
    assert_string_equal(t.fingerprint, t2.fingerprint);
    assert_memory_equal(t.test.x, t2.test.x, sizeof(float) * t.test.n * d);
    o.seed = 8;
    assert_int_equal(rf_search_task_load(xp, yp, sp, &o, &t3, &e), RF_OK);
    assert_string_not_equal(t.fingerprint, t3.fingerprint);
    rf_search_task_free(&t2);
    rf_search_task_free(&t3);
    /* density without subjects: rows */
    rf_search_task_opts od;
    rf_search_task_opts_default(&od);
    od.test_frac = 0.1;
    assert_int_equal(rf_search_task_load(xp, NULL, NULL, &od, &t2, &e), RF_OK);
    assert_false(t2.by_subject);
    assert_null(t2.ytrain);
    assert_int_equal(t2.test.n, 20);
    assert_int_equal(t2.val.n, 36);
    assert_int_equal(t2.train.n, 144);
    rf_search_task_free(&t2);
    /* no test part */
    od.test_frac = 0;
    assert_int_equal(rf_search_task_load(xp, NULL, NULL, &od, &t2, &e), RF_OK);
    assert_int_equal(t2.test.n, 0);
    assert_int_equal(t2.val.n + t2.train.n, n);
    rf_search_task_free(&t2);
    /* classification without labels, bad fractions, a missing file */
    assert_int_equal(rf_search_task_load(xp, NULL, NULL, &o, &t2, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "labels"));
    od.val_frac = 1.5;
    assert_int_equal(rf_search_task_load(xp, NULL, NULL, &od, &t2, &e), RF_EARG);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.npy", dir);
    assert_int_not_equal(rf_search_task_load(missing, NULL, NULL, NULL, &t2, &e), RF_OK);
    assert_non_null(strstr(e.msg, "none.npy"));
    rf_search_task_free(&t);
    free(x);
    free(y);
    free(s);
    rm_rf(dir);
}

static void test_task_builtin(void **state) {
    (void)state;
    rf_err e = {0};
    rf_search_task t;
    assert_int_equal(rf_search_task_builtin("ring", 1, NULL, &t, &e), RF_OK);
    assert_int_equal(t.kind, RF_TASK_DENSITY);
    assert_int_equal(t.train.n, 600);
    assert_int_equal(t.val.n, 200);
    assert_int_equal(t.test.n, 200);
    assert_int_equal(t.train.d, 2);
    assert_int_equal(t.default_epochs, 3);
    assert_int_equal((int)strlen(t.fingerprint), 16);
    rf_search_task_free(&t);
    assert_int_equal(rf_search_task_builtin("eeg", 1, NULL, &t, &e), RF_OK);
    assert_int_equal(t.kind, RF_TASK_CLASSIFY);
    assert_int_equal(t.n_classes, 2);
    assert_int_equal(t.train.d, 8 * RF_BAND_COUNT);
    assert_true(t.by_subject);
    assert_int_equal(t.n_subjects[0] + t.n_subjects[1] + t.n_subjects[2], 6);
    assert_int_equal(t.train.n + t.val.n + t.test.n, 6 * 2 * 12);
    assert_true(t.input.bandpower);
    rf_search_task_free(&t);
    assert_int_equal(rf_search_task_builtin("spiral", 1, NULL, &t, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "spiral"));
}

/* ------------------------------------------------------------------ spaces and objectives */

static void test_spaces(void **state) {
    (void)state;
    rf_err e = {0};
    rf_search_task t;
    assert_int_equal(rf_search_task_builtin("ring", 1, NULL, &t, &e), RF_OK);
    rf_space *sp = rf_search_default_space(&t, 3, &e);
    assert_non_null(sp);
    assert_true(rf_space_find(sp, "lr") >= 0 && rf_space_find(sp, "flow") >= 0 && rf_space_find(sp, "bins") >= 0);
    assert_true(rf_space_find(sp, "permutation") >= 0);
    assert_true(rf_space_find(sp, "actnorm") >= 0);
    assert_int_equal(rf_space_find(sp, "ce-weight"), -1);
    assert_int_equal(rf_space_find(sp, "epochs"), -1);
    assert_true(sp->p[rf_space_find(sp, "bins")].parent == rf_space_find(sp, "flow"));
    assert_int_equal(rf_search_space_check(sp, "default", &e), RF_OK);
    rf_space_free(sp);
    sp = rf_search_default_space(&t, 0, &e);
    assert_true(rf_space_find(sp, "epochs") >= 0);
    rf_space_free(sp);
    t.kind = RF_TASK_CLASSIFY;
    sp = rf_search_default_space(&t, 0, &e);
    assert_true(rf_space_find(sp, "ce-weight") >= 0);
    rf_space_free(sp);
    /* windows: a tsflow space whose scales fit the window length */
    t.channels = 2;
    t.length = 12; /* 12 -> 6 -> 3: at most 2 scales */
    sp = rf_search_default_space(&t, 0, &e);
    assert_non_null(sp);
    int k = rf_space_find(sp, "scales");
    assert_true(k >= 0);
    assert_int_equal((int)sp->p[k].high, 2);
    assert_true(rf_space_find(sp, "kernel") >= 0 && rf_space_find(sp, "coupling") >= 0);
    assert_int_equal(rf_search_space_check(sp, "tsflow", &e), RF_OK);
    rf_space_free(sp);
    rf_search_task_free(&t);

    /* checks name the source and the parameter */
    sp = rf_space_parse("{\"parameters\": [{\"name\": \"lr\", \"type\": \"float\", \"low\": 0.001, \"high\": 0.01},"
                        "{\"name\": \"dropout\", \"type\": \"float\", \"low\": 0, \"high\": 0.5}]}", "s.json", &e);
    assert_non_null(sp);
    assert_int_equal(rf_search_space_check(sp, "s.json", &e), RF_EARG);
    assert_non_null(strstr(e.msg, "s.json"));
    assert_non_null(strstr(e.msg, "'dropout'"));
    rf_space_free(sp);
    sp = rf_space_parse("{\"parameters\": [{\"name\": \"act\", \"type\": \"categorical\", \"choices\": [\"relu\", \"swish\"]}]}",
                        "a.json", &e);
    assert_int_equal(rf_search_space_check(sp, "a.json", &e), RF_EARG);
    assert_non_null(strstr(e.msg, "'act'"));
    assert_non_null(strstr(e.msg, "swish"));
    rf_space_free(sp);
    sp = rf_space_parse("{\"parameters\": [{\"name\": \"blocks\", \"type\": \"int\", \"low\": 0, \"high\": 4}]}", "b.json", &e);
    assert_int_equal(rf_search_space_check(sp, "b.json", &e), RF_EARG);
    assert_non_null(strstr(e.msg, "'blocks'"));
    rf_space_free(sp);
}

static void test_objectives(void **state) {
    (void)state;
    rf_err e = {0};
    rf_search_metric m[RF_MAX_OBJECTIVES];
    rf_objective o[RF_MAX_OBJECTIVES];
    int n;
    assert_int_equal(rf_search_objectives_parse("nll", RF_TASK_DENSITY, m, &n, o, &e), RF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(o[0].name, "val_nll");
    assert_int_equal(o[0].direction, RF_MINIMIZE);
    assert_int_equal(rf_search_objectives_parse("f1, time", RF_TASK_CLASSIFY, m, &n, o, &e), RF_OK);
    assert_int_equal(n, 2);
    assert_int_equal(m[0], RF_METRIC_F1);
    assert_int_equal(o[0].direction, RF_MAXIMIZE);
    assert_string_equal(o[1].name, "train_seconds");
    assert_int_equal(rf_search_objectives_parse("nll,params", RF_TASK_DENSITY, m, &n, o, &e), RF_OK);
    assert_int_equal(m[1], RF_METRIC_PARAMS);
    assert_int_equal(rf_search_objectives_parse("f1", RF_TASK_DENSITY, m, &n, o, &e), RF_EARG);
    assert_int_equal(rf_search_objectives_parse("time", RF_TASK_DENSITY, m, &n, o, &e), RF_EARG);
    assert_int_equal(rf_search_objectives_parse("nll,nll", RF_TASK_DENSITY, m, &n, o, &e), RF_EARG);
    assert_int_equal(rf_search_objectives_parse("nll,loss", RF_TASK_DENSITY, m, &n, o, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "loss"));
    assert_int_equal(rf_search_objectives_parse("", RF_TASK_DENSITY, m, &n, o, &e), RF_EARG);
}

/* ------------------------------------------------------------------ the objective in a study */

typedef struct study_fixture {
    char dir[256], db[320];
    rf_search_task task;
    rf_space *space;
    rf_study *st;
    rf_search_job job;
} study_fixture;

static void fixture_open(study_fixture *f, const char *tag, const char *space_json, const char *objective) {
    memset(f, 0, sizeof *f);
    rf_test_tmp(f->dir, sizeof f->dir, tag);
    rm_rf(f->dir);
    snprintf(f->db, sizeof f->db, "%s/study.db", f->dir);
    rf_err e = {0};
    assert_int_equal(rf_search_task_builtin("ring", 1, NULL, &f->task, &e), RF_OK);
    f->space = space_json ? rf_space_parse(space_json, tag, &e) : rf_search_default_space(&f->task, 2, &e);
    assert_non_null(f->space);
    rf_search_metric m[RF_MAX_OBJECTIVES];
    rf_study_def def = {.name = tag, .space = f->space, .sampler = "random", .seed = 3};
    assert_int_equal(rf_search_objectives_parse(objective, f->task.kind, m, &def.n_objectives, def.objectives, &e), RF_OK);
    rf_search_job_init(&f->job, &f->task, f->space, m, def.n_objectives);
    f->job.out_dir = f->dir;
    f->job.base_train.epochs = 2;
    assert_int_equal(rf_search_job_prepare(&f->job, &e), RF_OK);
    f->st = rf_study_open(f->db, &def, &e);
    assert_non_null(f->st);
}

static void fixture_close(study_fixture *f) {
    rf_study_close(f->st);
    rf_space_free(f->space);
    rf_search_task_free(&f->task);
    rm_rf(f->dir);
}

static int run_trials(study_fixture *f, int n) {
    rf_err e = {0};
    rf_sampler *s = rf_sampler_create("random", &e);
    rf_optimize_opts o;
    rf_optimize_opts_default(&o);
    o.max_total = n;
    o.progress = 0;
    rf_optimize_result r;
    int rc = rf_study_optimize(f->st, s, rf_search_objective, &f->job, &o, &r, &e);
    if (rc) fprintf(stderr, "optimize: %s\n", e.msg);
    rf_sampler_free(s);
    return rc;
}

static void test_objective_study(void **state) {
    (void)state;
    study_fixture f;
    fixture_open(&f, "objective", NULL, "nll,params");
    rf_err e = {0};
    rf_config c;
    assert_int_equal(rf_config_default(f.space, &c, &e), RF_OK);
    assert_int_equal(rf_study_enqueue(f.st, &c, 0, &e), RF_OK);
    rf_config_free(&c);
    assert_int_equal(run_trials(&f, 4), RF_OK);
    assert_int_equal(rf_study_refresh(f.st, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(f.st), 4);
    for (int i = 0; i < 4; i++) {
        const rf_trial *t = rf_study_finished(f.st, i);
        assert_int_equal(t->status, RF_TRIAL_COMPLETE);
        char p[4400];
        rf_search_trial_path(f.dir, t->number, p, sizeof p);
        rf_flow *fl = rf_flow_load(p, &e);
        assert_non_null(fl);
        /* the file is the trial's model: its parameter count is objective 2, its meta the trial */
        assert_true(fabs(t->values[1] - (double)fl->n_params) < 0.5);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(fl->meta, "search");
        assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(s, "trial")->valuedouble, t->number);
        rf_flow_free(fl);
        /* one intermediate value per epoch (2 epochs), the best of them is the value */
        long *steps;
        double *vals;
        int nv;
        assert_int_equal(rf_study_intermediate(f.st, t->number, &steps, &vals, &nv, &e), RF_OK);
        assert_int_equal(nv, 2);
        assert_int_equal(steps[0], 1);
        assert_int_equal(steps[1], 2);
        assert_true(fabs(fmin(vals[0], vals[1]) - t->values[0]) < 1e-9 * (1 + fabs(t->values[0])));
        free(steps);
        free(vals);
    }
    /* best.rf: the best trial's model (same bytes after sync) */
    int best = -1;
    assert_int_equal(rf_search_sync_best(f.st, f.dir, &best, &e), RF_OK);
    assert_int_equal(best, rf_study_best(f.st, 0)->number);
    char bp[4400], tp[4400];
    snprintf(bp, sizeof bp, "%s/best.rf", f.dir);
    rf_search_trial_path(f.dir, best, tp, sizeof tp);
    unsigned char *b1, *b2;
    size_t l1, l2;
    assert_int_equal(rf_read_file(bp, &b1, &l1, &e), RF_OK);
    assert_int_equal(rf_read_file(tp, &b2, &l2, &e), RF_OK);
    assert_int_equal(l1, l2);
    assert_memory_equal(b1, b2, l1);
    free(b1);
    free(b2);
    /* the default trial is trial 0; test scores of its model */
    const rf_trial *d = rf_search_default_trial(f.st);
    assert_non_null(d);
    assert_int_equal(d->number, 0);
    rf_flow *fl = rf_flow_load(tp, &e);
    cJSON *tj = rf_search_test_eval(&f.task, fl, &e);
    assert_non_null(tj);
    assert_int_equal((int)cJSON_GetObjectItemCaseSensitive(tj, "rows")->valuedouble, 200);
    assert_true(isfinite(cJSON_GetObjectItemCaseSensitive(tj, "nll")->valuedouble));
    cJSON_Delete(tj);
    rf_flow_free(fl);
    /* a missing trial file is an error for sync, not a silent success */
    assert_int_equal(unlink(tp), 0);
    assert_int_equal(rf_search_sync_best(f.st, f.dir, &best, &e), RF_EIO);
    assert_non_null(strstr(e.msg, "missing"));
    fixture_close(&f);
}

static void test_objective_failures(void **state) {
    (void)state;
    /* a tsflow with 4 scales on 2-D rows (1 channel x 2 samples) cannot be built, and a realnvp
     * with lr 10 and no clipping diverges: both fail with a reason, the study goes on */
    study_fixture f;
    fixture_open(&f, "failures",
                 "{\"parameters\": [{\"name\": \"flow\", \"type\": \"categorical\", \"choices\": [\"tsflow\", \"realnvp\"]},"
                 "{\"name\": \"lr\", \"type\": \"categorical\", \"choices\": [1e-3, 10]},"
                 "{\"name\": \"clip\", \"type\": \"categorical\", \"choices\": [0]},"
                 "{\"name\": \"scales\", \"type\": \"categorical\", \"choices\": [4]},"
                 "{\"name\": \"schedule\", \"type\": \"categorical\", \"choices\": [\"constant\"]},"
                 "{\"name\": \"warmup\", \"type\": \"categorical\", \"choices\": [0]}]}",
                 "nll");
    rf_err e = {0};
    const char *cfgs[3] = {"{\"flow\": \"tsflow\", \"lr\": 0.001, \"clip\": 0, \"schedule\": \"constant\", \"warmup\": 0, \"scales\": 4}",
                           "{\"flow\": \"realnvp\", \"lr\": 10, \"clip\": 0, \"schedule\": \"constant\", \"warmup\": 0, \"scales\": 4}",
                           "{\"flow\": \"realnvp\", \"lr\": 0.001, \"clip\": 0, \"schedule\": \"constant\", \"warmup\": 0, \"scales\": 4}"};
    for (int k = 0; k < 3; k++) {
        rf_config c;
        assert_int_equal(rf_config_parse(f.space, cfgs[k], &c, &e), RF_OK);
        assert_int_equal(rf_study_enqueue(f.st, &c, 0, &e), RF_OK);
        rf_config_free(&c);
    }
    f.job.base_train.epochs = 3;
    assert_int_equal(run_trials(&f, 3), RF_OK);
    assert_int_equal(rf_study_refresh(f.st, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(f.st), 3);
    const rf_trial *t0 = rf_study_finished(f.st, 0), *t1 = rf_study_finished(f.st, 1), *t2 = rf_study_finished(f.st, 2);
    assert_int_equal(t0->status, RF_TRIAL_FAILED);
    assert_non_null(t0->error);
    assert_non_null(strstr(t0->error, "flow"));
    printf("unbuildable: %s\n", t0->error);
    printf("lr 10: %s %s\n", rf_trial_status_name(t1->status), t1->error ? t1->error : "");
    assert_int_equal(t1->status, RF_TRIAL_FAILED);
    assert_non_null(t1->error);
    assert_int_equal(t2->status, RF_TRIAL_COMPLETE);
    char p[4400];
    rf_search_trial_path(f.dir, t0->number, p, sizeof p);
    assert_int_equal(file_size(p), -1); /* no model for a failed trial */
    /* a parameter limit */
    f.job.max_params = 10;
    rf_config c;
    assert_int_equal(rf_config_parse(f.space, cfgs[2], &c, &e), RF_OK);
    assert_int_equal(rf_study_enqueue(f.st, &c, 0, &e), RF_OK);
    rf_config_free(&c);
    assert_int_equal(run_trials(&f, 4), RF_OK);
    assert_int_equal(rf_study_refresh(f.st, &e), RF_OK);
    const rf_trial *t3 = rf_study_finished(f.st, 3);
    assert_int_equal(t3->status, RF_TRIAL_FAILED);
    assert_non_null(strstr(t3->error, "limit"));
    fixture_close(&f);
}

/* ------------------------------------------------------------------ study analyses */

static void test_study_importance_pareto(void **state) {
    (void)state;
    char dir[256], db[320];
    rf_test_tmp(dir, sizeof dir, "imp");
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(db, sizeof db, "%s/s.db", dir);
    rf_err e = {0};
    rf_space *sp = rf_space_parse("{\"parameters\": ["
                                  "{\"name\": \"a\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
                                  "{\"name\": \"b\", \"type\": \"float\", \"low\": 1, \"high\": 100, \"log\": true},"
                                  "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"x\", \"y\", \"z\"]}]}",
                                  "imp", &e);
    assert_non_null(sp);
    rf_study_def def = {.name = "imp", .space = sp, .n_objectives = 2, .sampler = "random", .seed = 5};
    snprintf(def.objectives[0].name, sizeof def.objectives[0].name, "f");
    snprintf(def.objectives[1].name, sizeof def.objectives[1].name, "g");
    rf_study *st = rf_study_open(db, &def, &e);
    assert_non_null(st);
    rf_sampler *s = rf_sampler_create("random", &e);
    /* f depends on the categorical c only (x: 0, y: 10, z: 5); g = b (log scale) */
    for (int i = 0; i < 60; i++) {
        rf_trial *t;
        assert_int_equal(rf_study_ask(st, s, &t, &e), RF_OK);
        const char *cv;
        double bv;
        assert_int_equal(rf_config_get_choice(sp, &t->cfg, "c", &cv, &e), RF_OK);
        assert_int_equal(rf_config_get_number(sp, &t->cfg, "b", &bv, &e), RF_OK);
        double v[2] = {cv[0] == 'x' ? 0 : cv[0] == 'y' ? 10 : 5, log(bv)};
        assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, v, 2, NULL, &e), RF_OK);
        rf_trial_free(t);
    }
    rf_fanova_opts fo;
    rf_fanova_opts_default(&fo);
    rf_importance imp;
    assert_int_equal(rf_study_importance(st, 0, &fo, &imp, &e), RF_OK);
    printf("importance of c for f: %.3f (a %.3f, b %.3f)\n", imp.main_mean[2], imp.main_mean[0], imp.main_mean[1]);
    assert_true(imp.main_mean[2] > 0.9);
    assert_true(imp.main_mean[0] < 0.05 && imp.main_mean[1] < 0.05);
    rf_importance_free(&imp);
    assert_int_equal(rf_study_importance(st, 1, &fo, &imp, &e), RF_OK);
    printf("importance of b for g: %.3f\n", imp.main_mean[1]);
    assert_true(imp.main_mean[1] > 0.9);
    rf_importance_free(&imp);
    assert_int_equal(rf_study_importance(st, 2, &fo, &imp, &e), RF_EARG);

    /* Pareto: f and g are independent; the front must be non-dominated and complete */
    char pp[400];
    snprintf(pp, sizeof pp, "%s/p.svg", dir);
    int *front = NULL, nf = 0;
    assert_int_equal(rf_study_plot_pareto(st, pp, &front, &nf, &e), RF_OK);
    assert_true(file_size(pp) > 1000);
    assert_true(nf >= 1);
    assert_int_equal(rf_study_refresh(st, &e), RF_OK);
    int n = rf_study_n_finished(st);
    for (int i = 0; i < n; i++) {
        const rf_trial *t = rf_study_finished(st, i);
        int on = 0, dominated = 0;
        for (int q = 0; q < nf; q++) on |= front[q] == t->number;
        for (int k = 0; k < n; k++) {
            const rf_trial *u = rf_study_finished(st, k);
            if (u->values[0] <= t->values[0] && u->values[1] <= t->values[1] &&
                (u->values[0] < t->values[0] || u->values[1] < t->values[1]))
                dominated = 1;
        }
        assert_int_equal(on, !dominated);
    }
    free(front);

    /* JSON of the study and the report */
    cJSON *j = rf_study_to_json(st, &e);
    assert_non_null(j);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "trials")), 60);
    cJSON_Delete(j);
    char rd[400];
    snprintf(rd, sizeof rd, "%s/report", dir);
    cJSON *rep = NULL;
    assert_int_equal(rf_search_report_write(st, rd, NULL, NULL, &rep, &e), RF_OK);
    const char *stems[] = {"history.svg", "history.png", "importance.svg", "importance.png", "pareto.svg", "pareto.png",
                           "report.json"};
    for (size_t k = 0; k < sizeof stems / sizeof *stems; k++) {
        char p[500];
        snprintf(p, sizeof p, "%s/%s", rd, stems[k]);
        assert_true(file_size(p) > 500);
    }
    assert_non_null(cJSON_GetObjectItemCaseSensitive(rep, "importance"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rep, "skipped"), "architecture"));
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(rep, "pareto"),
                                                                    "front_trials")) == nf);
    cJSON_Delete(rep);
    rf_sampler_free(s);
    rf_study_close(st);
    rf_space_free(sp);
    rm_rf(dir);
}

/* ------------------------------------------------------------------ figures */

static void test_history_plot(void **state) {
    (void)state;
    char dir[256], p[400];
    rf_test_tmp(dir, sizeof dir, "hist");
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    const int n = 40;
    int num[40], status[40];
    double v[40];
    for (int i = 0; i < n; i++) {
        num[i] = i;
        status[i] = i % 11 == 5 ? RF_TRIAL_FAILED : i % 7 == 3 ? RF_TRIAL_PRUNED : RF_TRIAL_COMPLETE;
        v[i] = status[i] == RF_TRIAL_FAILED ? NAN : 2 + 1.0 / (1 + i) + 0.1 * sin(i);
    }
    v[8] = 500; /* an outlier drawn at the edge */
    rf_err e = {0};
    const char *ext[3] = {"png", "svg", "pdf"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/h.%s", dir, ext[k]);
        assert_int_equal(rf_plot_search_history(p, "history", num, v, status, n, RF_MINIMIZE, "val_nll", &e), RF_OK);
        assert_true(file_size(p) > 1000);
    }
    snprintf(p, sizeof p, "%s/h.png", dir);
    assert_true(file_starts(p, "\x89PNG", 4));
    snprintf(p, sizeof p, "%s/hmax.png", dir);
    assert_int_equal(rf_plot_search_history(p, NULL, num, v, status, n, RF_MAXIMIZE, "f1", &e), RF_OK);
    /* one trial, all failed, bad inputs */
    int s1 = RF_TRIAL_FAILED;
    double nan1 = NAN;
    assert_int_equal(rf_plot_search_history(p, NULL, num, &nan1, &s1, 1, RF_MINIMIZE, NULL, &e), RF_OK);
    snprintf(p, sizeof p, "%s/h.txt", dir);
    assert_int_equal(rf_plot_search_history(p, NULL, num, v, status, n, RF_MINIMIZE, NULL, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "h.txt"));
    snprintf(p, sizeof p, "%s/h0.png", dir);
    assert_int_equal(rf_plot_search_history(p, NULL, num, v, status, 0, RF_MINIMIZE, NULL, &e), RF_EARG);
    assert_int_equal(file_size(p), -1);
    rm_rf(dir);
}

static void test_architecture_plot(void **state) {
    (void)state;
    char dir[256], p[400];
    rf_test_tmp(dir, sizeof dir, "arch");
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    rf_err e = {0};
    const rf_flow_type types[] = {RF_FLOW_REALNVP, RF_FLOW_GLOW, RF_FLOW_MAF, RF_FLOW_NSF, RF_FLOW_NSF_AR, RF_FLOW_TS};
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        rf_flow_spec s;
        rf_flow_spec_default(&s, types[k], 6);
        s.blocks = 3;
        s.hidden = 16;
        if (types[k] == RF_FLOW_TS) {
            assert_int_equal(rf_tsflow_spec_default(&s, 2, 16, &e), RF_OK);
            s.hidden = 16;
        }
        if (types[k] == RF_FLOW_MAF) {
            s.base = RF_BASE_CLASS;
            s.n_classes = 3;
        }
        rf_rng rng;
        rf_rng_seed(&rng, 1);
        rf_flow *f = rf_flow_create(&s, &rng, &e);
        assert_non_null(f);
        snprintf(p, sizeof p, "%s/a-%s.png", dir, rf_flow_type_name(types[k]));
        assert_int_equal(rf_plot_architecture(p, "architecture", f, &e), RF_OK);
        assert_true(file_size(p) > 2000);
        snprintf(p, sizeof p, "%s/a-%s.svg", dir, rf_flow_type_name(types[k]));
        assert_int_equal(rf_plot_architecture(p, NULL, f, &e), RF_OK);
        /* a morphed flow (blocks of different widths) draws too */
        rf_flow *g = rf_morph_widen(f, -1, 24, RF_MORPH_WIDEN_ZERO, 1, &rng, &e);
        if (!g) printf("widen %s: %s\n", rf_flow_type_name(types[k]), e.msg);
        assert_non_null(g);
        snprintf(p, sizeof p, "%s/w-%s.png", dir, rf_flow_type_name(types[k]));
        assert_int_equal(rf_plot_architecture(p, "widened", g, &e), RF_OK);
        rf_flow_free(g);
        rf_flow_free(f);
    }
    /* many blocks: the middle is elided, the figure stays bounded */
    rf_flow_spec s;
    rf_flow_spec_default(&s, RF_FLOW_REALNVP, 4);
    s.blocks = 60;
    s.hidden = 8;
    rf_rng rng;
    rf_rng_seed(&rng, 2);
    rf_flow *f = rf_flow_create(&s, &rng, &e);
    snprintf(p, sizeof p, "%s/deep.png", dir);
    assert_int_equal(rf_plot_architecture(p, NULL, f, &e), RF_OK);
    assert_true(file_size(p) < 600000);
    snprintf(p, sizeof p, "%s/deep.bmp", dir);
    assert_int_equal(rf_plot_architecture(p, NULL, f, &e), RF_EARG);
    rf_flow_free(f);
    if (!getenv("RF_KEEP_FIGURES")) rm_rf(dir);
    else printf("figures kept in %s\n", dir);
}

/* ------------------------------------------------------------------ morph strategy */

static void test_morph_run(void **state) {
    (void)state;
    char dir[256], db[320];
    rf_test_tmp(dir, sizeof dir, "morph");
    rm_rf(dir);
    assert_int_equal(mkdir(dir, 0777), 0);
    snprintf(db, sizeof db, "%s/m.db", dir);
    rf_err e = {0};
    rf_search_task task;
    assert_int_equal(rf_search_task_builtin("ring", 1, NULL, &task, &e), RF_OK);
    rf_space *start = rf_space_parse("{\"parameters\": [{\"name\": \"flow\", \"type\": \"categorical\", \"choices\": [\"realnvp\"]},"
                                     "{\"name\": \"blocks\", \"type\": \"int\", \"low\": 2, \"high\": 2},"
                                     "{\"name\": \"hidden\", \"type\": \"int\", \"low\": 16, \"high\": 16}]}",
                                     "start", &e);
    rf_space *ms = rf_search_morph_space(&e);
    assert_non_null(start);
    assert_non_null(ms);
    rf_search_metric m = RF_METRIC_NLL;
    rf_study_def def = {.name = "morph", .space = ms, .n_objectives = 1, .sampler = "morph", .seed = 9};
    snprintf(def.objectives[0].name, sizeof def.objectives[0].name, "val_nll");
    rf_study *st = rf_study_open(db, &def, &e);
    assert_non_null(st);
    rf_search_job job;
    rf_search_job_init(&job, &task, ms, &m, 1);
    job.out_dir = dir;
    job.base_train.epochs = 2;
    assert_int_equal(rf_search_job_prepare(&job, &e), RF_OK);
    rf_search_morph_opts o = {.trials = 5, .children = 2, .morphs = 1};
    int n_run = 0;
    assert_int_equal(rf_search_morph_run(st, &job, start, &o, &n_run, &e), RF_OK);
    assert_int_equal(n_run, 5);
    assert_int_equal(rf_study_refresh(st, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(st), 5);
    /* trial 0 is the start flow (2 blocks of width 16); children are bigger or equal */
    const rf_trial *t0 = rf_study_finished(st, 0);
    double blocks0, hidden0, params0;
    assert_int_equal(rf_config_get_number(ms, &t0->cfg, "blocks", &blocks0, &e), RF_OK);
    assert_int_equal(rf_config_get_number(ms, &t0->cfg, "hidden", &hidden0, &e), RF_OK);
    assert_int_equal(rf_config_get_number(ms, &t0->cfg, "params", &params0, &e), RF_OK);
    assert_int_equal((int)blocks0, 2);
    assert_int_equal((int)hidden0, 16);
    assert_ptr_equal(rf_search_default_trial(st), t0);
    for (int i = 0; i < 5; i++) {
        const rf_trial *t = rf_study_finished(st, i);
        char p[4400];
        rf_search_trial_path(dir, t->number, p, sizeof p);
        if (t->status != RF_TRIAL_COMPLETE) continue;
        rf_flow *f = rf_flow_load(p, &e);
        assert_non_null(f);
        double np;
        assert_int_equal(rf_config_get_number(ms, &t->cfg, "params", &np, &e), RF_OK);
        assert_int_equal((size_t)np, f->n_params); /* the summary describes the stored flow */
        assert_true(np >= params0);
        rf_flow_free(f);
    }
    /* resume: from the best trial's model, up to 7 trials */
    o.trials = 7;
    assert_int_equal(rf_search_morph_run(st, &job, start, &o, &n_run, &e), RF_OK);
    assert_int_equal(n_run, 2);
    assert_int_equal(rf_study_refresh(st, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(st), 7);
    rf_study_close(st);
    rf_space_free(ms);
    rf_space_free(start);
    rf_search_task_free(&task);
    rm_rf(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_task_split_subjects), cmocka_unit_test(test_task_builtin),
        cmocka_unit_test(test_spaces),              cmocka_unit_test(test_objectives),
        cmocka_unit_test(test_objective_study),     cmocka_unit_test(test_objective_failures),
        cmocka_unit_test(test_study_importance_pareto), cmocka_unit_test(test_history_plot),
        cmocka_unit_test(test_architecture_plot),   cmocka_unit_test(test_morph_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
