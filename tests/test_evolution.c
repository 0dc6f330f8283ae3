/* Regularised (aging) evolution (include/renflow/controller.h): better than random search on
 * Branin and Hartmann-6 in median over seeds, a mutation changes exactly one active parameter
 * (conditions, types, bounds, log scale respected), aging drops the oldest member, and a
 * study resumed through its file draws what an uninterrupted one draws. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "renflow/controller.h"
#include "testutil.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* n trials of s on an in-memory history of test function tf; the best value. */
static double run_tf(rf_sampler *s, const rf_testfunc *tf, const rf_space *sp, int n, uint64_t seed) {
    rf_err e = {0};
    rf_trial *tr = calloc((size_t)n, sizeof *tr);
    const rf_trial **items = malloc(sizeof *items * (size_t)n);
    rf_history h = {.n = 0, .items = items, .n_objectives = 1, .directions = {RF_MINIMIZE}};
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
        rf_rng rng;
        rf_rng_seed(&rng, seed * 1000003 + (uint64_t)i);
        rf_config_init(&tr[i].cfg, sp, &e);
        assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &tr[i].cfg, &e), RF_OK);
        tr[i].number = i;
        tr[i].status = RF_TRIAL_COMPLETE;
        tr[i].n_values = 1;
        assert_int_equal(rf_testfunc_eval(tf, sp, &tr[i].cfg, &tr[i].values[0], &e), RF_OK);
        best = fmin(best, tr[i].values[0]);
        items[i] = &tr[i];
        h.n = i + 1;
    }
    for (int i = 0; i < n; i++) rf_config_free(&tr[i].cfg);
    free(tr);
    free(items);
    return best;
}

static void compare(const char *name, int n, int seeds, double *med_evo, double *med_rnd, int *wins) {
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find(name);
    rf_space *sp = rf_testfunc_space(tf, &e);
    assert_non_null(sp);
    rf_sampler *evo = rf_sampler_create_strategy("evolution", &e), *rnd = rf_sampler_create("random", &e);
    assert_non_null(evo);
    assert_string_equal(rf_sampler_name(evo), "evolution");
    double be[32], br[32];
    *wins = 0;
    for (int sd = 0; sd < seeds; sd++) {
        be[sd] = run_tf(evo, tf, sp, n, 500 + (uint64_t)sd);
        br[sd] = run_tf(rnd, tf, sp, n, 500 + (uint64_t)sd);
        assert_true(be[sd] >= tf->fmin - 1e-9);
        *wins += be[sd] < br[sd];
    }
    qsort(be, (size_t)seeds, sizeof(double), cmp_d);
    qsort(br, (size_t)seeds, sizeof(double), cmp_d);
    *med_evo = 0.5 * (be[(seeds - 1) / 2] + be[seeds / 2]);
    *med_rnd = 0.5 * (br[(seeds - 1) / 2] + br[seeds / 2]);
    printf("  %-9s %d trials x %d seeds (P 20, S 5): median best evolution %.5f, random %.5f (min %.5f); evolution better "
           "in %d/%d seeds\n",
           name, n, seeds, *med_evo, *med_rnd, tf->fmin, *wins, seeds);
    rf_sampler_free(evo);
    rf_sampler_free(rnd);
    rf_space_free(sp);
}

static void test_beats_random(void **state) {
    (void)state;
    double me, mr;
    int wins;
    compare("branin", 100, 15, &me, &mr, &wins);
    assert_true(me < mr);
    assert_true(wins >= 10);
    compare("hartmann6", 150, 15, &me, &mr, &wins);
    assert_true(me < mr);
    assert_true(wins >= 10);
}

static const char *SPACE =
    "{\"parameters\": ["
    "{\"name\": \"lr\", \"type\": \"float\", \"low\": 1e-5, \"high\": 1e-1, \"log\": true},"
    "{\"name\": \"blocks\", \"type\": \"int\", \"low\": 2, \"high\": 4},"
    "{\"name\": \"one\", \"type\": \"int\", \"low\": 3, \"high\": 3},"
    "{\"name\": \"width\", \"type\": \"int\", \"low\": 8, \"high\": 1024, \"log\": true},"
    "{\"name\": \"flow\", \"type\": \"categorical\", \"choices\": [\"realnvp\", \"nsf\", \"maf\"]},"
    "{\"name\": \"bins\", \"type\": \"int\", \"low\": 4, \"high\": 16, \"condition\": {\"parent\": \"flow\", \"values\": [\"nsf\"]}},"
    "{\"name\": \"tail\", \"type\": \"float\", \"low\": 1, \"high\": 5, \"condition\": {\"parent\": \"bins\", \"values\": [4, 5, 6, 7, 8]}},"
    "{\"name\": \"fixed\", \"type\": \"categorical\", \"choices\": [\"only\"]}"
    "]}";

/* 1 when parameter j depends (transitively) on parameter i. */
static int descends(const rf_space *sp, int j, int i) {
    for (int p = sp->p[j].parent; p >= 0; p = sp->p[p].parent)
        if (p == i) return 1;
    return 0;
}

static void test_mutation_one_parameter(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse(SPACE, "test", &e);
    assert_non_null(sp);
    rf_config par, ch;
    rf_config_init(&par, sp, &e);
    rf_config_init(&ch, sp, &e);
    rf_rng rng;
    rf_rng_seed(&rng, 8);
    int count[16] = {0}, activated = 0, deactivated = 0, int_moves = 0, log_small = 0, log_n = 0;
    enum { N = 20000 };
    for (int n = 0; n < N; n++) {
        rf_space_sample_uniform(sp, &rng, &par);
        int mi;
        assert_int_equal(rf_evolution_mutate(sp, &par, 0.1, &rng, &ch, &mi, &e), RF_OK);
        assert_int_equal(rf_config_check(sp, &ch, &e), RF_OK);
        assert_true(mi >= 0 && mi < sp->n);
        assert_true(par.active[mi]);
        count[mi]++;
        /* exactly one parameter active in the parent changed value; every other difference is
         * a parameter that the change activated or deactivated (a descendant of it) */
        int changed = 0;
        for (int j = 0; j < sp->n; j++) {
            if (par.active[j] && ch.active[j]) {
                if (par.v[j] != ch.v[j]) {
                    changed++;
                    assert_int_equal(j, mi);
                }
            } else if (par.active[j] != ch.active[j]) {
                assert_true(descends(sp, j, mi));
                activated += ch.active[j];
                deactivated += par.active[j];
            }
        }
        assert_int_equal(changed, 1);
        if (mi == 1) int_moves += fabs(ch.v[1] - par.v[1]) >= 1;
        if (mi == 0) { /* log scale: the step is relative, in the log domain */
            log_n++;
            log_small += fabs(log(ch.v[0] / par.v[0])) < 0.5 * log(1e4);
        }
    }
    printf("  mutations per parameter:");
    for (int j = 0; j < sp->n; j++) printf(" %s %d", sp->p[j].name, count[j]);
    printf("; conditional parameters activated %d, deactivated %d\n", activated, deactivated);
    /* parameters with one value are never picked */
    assert_int_equal(count[2], 0);
    assert_int_equal(count[7], 0);
    assert_true(count[0] > 1000 && count[1] > 1000 && count[3] > 1000 && count[4] > 1000 && count[5] > 300);
    assert_true(activated > 100 && deactivated > 100);
    assert_int_equal(int_moves, count[1]);
    assert_true(log_small > 0.9 * log_n); /* sd 0.1 of the log range: mostly local */
    /* nothing to mutate: the child is the parent, mutated = -1 */
    rf_space *one = rf_space_parse("{\"parameters\": [{\"name\": \"a\", \"type\": \"int\", \"low\": 1, \"high\": 1}]}", "one", &e);
    rf_config p1, c1;
    rf_config_init(&p1, one, &e);
    rf_config_init(&c1, one, &e);
    rf_space_sample_uniform(one, &rng, &p1);
    int mi;
    assert_int_equal(rf_evolution_mutate(one, &p1, 0.1, &rng, &c1, &mi, &e), RF_OK);
    assert_int_equal(mi, -1);
    assert_true(rf_config_equal(&p1, &c1));
    assert_int_equal(rf_evolution_mutate(one, &p1, 0, &rng, &c1, &mi, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "mutation_sd"));
    p1.v[0] = 2; /* out of range */
    assert_int_equal(rf_evolution_mutate(one, &p1, 0.1, &rng, &c1, &mi, &e), RF_EARG);
    printf("  bad parent: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "'a'"));
    rf_config_free(&p1);
    rf_config_free(&c1);
    rf_space_free(one);
    rf_config_free(&par);
    rf_config_free(&ch);
    rf_space_free(sp);
}

/* Trials 0..n-1 with distinct x; values given. */
static void make_trials(const rf_space *sp, rf_trial *t, int n, const double *values) {
    rf_err e = {0};
    for (int i = 0; i < n; i++) {
        memset(&t[i], 0, sizeof t[i]);
        rf_config_init(&t[i].cfg, sp, &e);
        t[i].cfg.v[0] = 0.05 + 0.1 * i;
        t[i].cfg.v[1] = 0.95 - 0.1 * i;
        t[i].cfg.active[0] = t[i].cfg.active[1] = 1;
        t[i].number = i;
        t[i].status = RF_TRIAL_COMPLETE;
        t[i].n_values = 1;
        t[i].values[0] = values[i];
    }
}

/* Index of the trial whose configuration differs from c in exactly one parameter. */
static int parent_of(const rf_trial *t, int n, const rf_config *c) {
    int found = -1;
    for (int i = 0; i < n; i++) {
        int d = (t[i].cfg.v[0] != c->v[0]) + (t[i].cfg.v[1] != c->v[1]);
        if (d == 1) {
            assert_int_equal(found, -1);
            found = i;
        }
    }
    return found;
}

static void test_aging_and_tournament(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse("{\"parameters\": [{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
                                  "{\"name\": \"y\", \"type\": \"float\", \"low\": 0, \"high\": 1}]}",
                                  "xy", &e);
    assert_non_null(sp);
    enum { N = 8 };
    rf_trial t[N];
    const rf_trial *items[N];
    /* trial 0 is by far the best; then 3 */
    const double vals[N] = {-100, 5, 4, -1, 3, 6, 7, 8};
    make_trials(sp, t, N, vals);
    for (int i = 0; i < N; i++) items[i] = &t[i];
    rf_evolution_opts o;
    rf_evolution_opts_default(&o);
    o.population = 5;
    o.sample_size = 5; /* the tournament sees the whole population: the parent is its best */
    rf_sampler *s = rf_sampler_evolution_create(&o, &e);
    assert_non_null(s);
    rf_config c;
    rf_config_init(&c, sp, &e);
    rf_rng rng;
    rf_rng_seed(&rng, 1);
    /* 4 complete trials < P: random (not a one-parameter mutation of any) */
    rf_history h = {.n = 4, .items = items, .n_objectives = 1, .directions = {RF_MINIMIZE}};
    int random_like = 0;
    for (int k = 0; k < 50; k++) {
        assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
        random_like += parent_of(t, N, &c) < 0;
    }
    assert_int_equal(random_like, 50);
    /* trials 0..4: population {0..4}, parent 0 */
    h.n = 5;
    for (int k = 0; k < 20; k++) {
        assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
        assert_int_equal(parent_of(t, N, &c), 0);
    }
    /* trial 5 completes: trial 0 ages out despite its value; the best left is trial 3 */
    h.n = 6;
    for (int k = 0; k < 20; k++) {
        assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
        assert_int_equal(parent_of(t, N, &c), 3);
    }
    /* failed / pruned trials are not members: with trial 5 failed, trial 0 is back in */
    t[5].status = RF_TRIAL_FAILED;
    assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
    assert_int_equal(parent_of(t, N, &c), 0);
    t[5].status = RF_TRIAL_PRUNED;
    assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
    assert_int_equal(parent_of(t, N, &c), 0);
    t[5].status = RF_TRIAL_COMPLETE;
    /* maximisation: the largest value wins (trial 7 after aging of 0..2) */
    h.n = 8;
    h.directions[0] = RF_MAXIMIZE;
    assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
    assert_int_equal(parent_of(t, N, &c), 7);
    h.directions[0] = RF_MINIMIZE;
    rf_sampler_free(s);
    /* tournament of S = 2 out of P = 5: the parent is never the worst member, and every other
     * member is a parent sometimes (members 3..7, values -1 3 6 7 8: the worst is 7) */
    o.sample_size = 2;
    s = rf_sampler_evolution_create(&o, &e);
    int par_count[N] = {0};
    for (int k = 0; k < 2000; k++) {
        assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
        int p = parent_of(t, N, &c);
        assert_true(p >= 3 && p < N);
        par_count[p]++;
    }
    printf("  tournament S=2 of P=5, parents of trials 3..7 (values -1 3 6 7 8): %d %d %d %d %d\n", par_count[3], par_count[4],
           par_count[5], par_count[6], par_count[7]);
    /* P(member of rank r is the best of 2 distinct of 5) = (5 - r) / 10: 0.4 0.3 0.2 0.1 0 */
    assert_int_equal(par_count[7], 0);
    assert_true(abs(par_count[3] - 800) < 100 && abs(par_count[4] - 600) < 100 && abs(par_count[5] - 400) < 90 &&
                abs(par_count[6] - 200) < 70);
    rf_sampler_free(s);
    /* options and objectives */
    o.sample_size = 6;
    assert_null(rf_sampler_evolution_create(&o, &e));
    assert_non_null(strstr(e.msg, "sample size"));
    o.sample_size = 2;
    o.objective = 1;
    s = rf_sampler_evolution_create(&o, &e);
    assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "objective 1"));
    rf_sampler_free(s);
    rf_config_free(&c);
    for (int i = 0; i < N; i++) rf_config_free(&t[i].cfg);
    rf_space_free(sp);
}

/* Resume through a study file: stopped after 30 trials and continued, identical to one run. */
static int tf_obj(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r, rf_err *e) {
    (void)st;
    r->status = RF_TRIAL_COMPLETE;
    return rf_testfunc_eval(ctx, rf_study_space(st), &t->cfg, &r->values[0], e);
}

static void run_study(const char *path, const rf_testfunc *tf, rf_space *sp, int total, int stop_at) {
    rf_err e = {0};
    rf_study_def d = {.name = "evo", .space = sp, .n_objectives = 1, .objectives = {{"f", RF_MINIMIZE}},
                      .sampler = "evolution", .seed = 12};
    for (int part = 0; part < 2; part++) {
        rf_study *st = rf_study_open(path, &d, &e);
        assert_non_null(st);
        rf_sampler *s = rf_sampler_create_strategy("evolution", &e);
        rf_optimize_opts oo;
        rf_optimize_opts_default(&oo);
        oo.max_total = part == 0 && stop_at > 0 ? stop_at : total;
        oo.progress = 0;
        rf_optimize_result res;
        assert_int_equal(rf_study_optimize(st, s, tf_obj, (void *)tf, &oo, &res, &e), RF_OK);
        rf_sampler_free(s);
        rf_study_close(st);
        if (stop_at <= 0) break;
    }
}

static void rm_db(const char *p) {
    char side[300];
    unlink(p);
    snprintf(side, sizeof side, "%s-wal", p);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p);
    unlink(side);
}

static void test_evolution_study_resume(void **state) {
    (void)state;
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find("branin");
    rf_space *sp = rf_testfunc_space(tf, &e);
    char p1[256], p2[256];
    rf_test_tmp(p1, sizeof p1, "evo-whole.db");
    rf_test_tmp(p2, sizeof p2, "evo-resumed.db");
    rm_db(p1);
    rm_db(p2);
    run_study(p1, tf, sp, 60, 0);
    run_study(p2, tf, sp, 60, 30);
    rf_study *a = rf_study_open(p1, NULL, &e), *b = rf_study_open(p2, NULL, &e);
    assert_int_equal(rf_study_refresh(a, &e), RF_OK);
    assert_int_equal(rf_study_refresh(b, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(a), 60);
    assert_int_equal(rf_study_n_finished(b), 60);
    for (int i = 0; i < 60; i++)
        assert_true(rf_config_equal(&rf_study_finished(a, i)->cfg, &rf_study_finished(b, i)->cfg));
    printf("  evolution study of 60 trials resumed after 30: identical trials; best %.4f\n", rf_study_best(a, 0)->values[0]);
    rf_study_close(a);
    rf_study_close(b);
    rm_db(p1);
    rm_db(p2);
    rf_space_free(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beats_random),
        cmocka_unit_test(test_mutation_one_parameter),
        cmocka_unit_test(test_aging_and_tournament),
        cmocka_unit_test(test_evolution_study_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
