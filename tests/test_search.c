/* Search spaces (parsing, bad files, conditions, encoding), samplers (random coverage; TPE on
 * Branin, Hartmann-6 and a conditional function against random search; overhead at 1000
 * trials), and the SQLite study (persistence, deterministic resume, SIGKILL of a worker,
 * two processes on one study, failing objectives). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static void rm_study(const char *path) {
    char b[1200];
    unlink(path);
    snprintf(b, sizeof b, "%s-wal", path);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", path);
    unlink(b);
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    fclose(f);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * spaces
 * --------------------------------------------------------------------------------------- */

static const char SPACE1[] =
    "{\"name\": \"s1\", \"parameters\": ["
    "{\"name\": \"lr\", \"type\": \"float\", \"low\": 1e-4, \"high\": 1e-2, \"log\": true},"
    "{\"name\": \"drop\", \"type\": \"float\", \"low\": 0, \"high\": 0.5},"
    "{\"name\": \"epochs\", \"type\": \"int\", \"low\": 5, \"high\": 50},"
    "{\"name\": \"width\", \"type\": \"int\", \"low\": 8, \"high\": 512, \"log\": true},"
    "{\"name\": \"batch\", \"type\": \"categorical\", \"choices\": [64, 128, 256]},"
    "{\"name\": \"coupling\", \"type\": \"categorical\", \"choices\": [\"affine\", \"spline\", \"additive\"], \"default\": \"spline\"},"
    "{\"name\": \"bins\", \"type\": \"int\", \"low\": 4, \"high\": 16, \"condition\": {\"parent\": \"coupling\", \"values\": [\"spline\"]}},"
    "{\"name\": \"tails\", \"type\": \"categorical\", \"choices\": [\"linear\", \"none\"], \"condition\": {\"parent\": \"coupling\", \"values\": [\"spline\"]}},"
    "{\"name\": \"bound\", \"type\": \"float\", \"low\": 1, \"high\": 8, \"condition\": {\"parent\": \"tails\", \"values\": [\"linear\"]}},"
    "{\"name\": \"scale\", \"type\": \"float\", \"low\": 0.1, \"high\": 10, \"log\": true, \"condition\": {\"parent\": \"epochs\", \"values\": [5, 6, 7]}}"
    "]}";

static void test_space_parse(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse(SPACE1, "test", &e);
    assert_non_null(sp);
    assert_int_equal(sp->n, 10);
    assert_int_equal(sp->p[0].kind, RF_PARAM_FLOAT);
    assert_true(sp->p[0].log);
    assert_int_equal(sp->p[2].kind, RF_PARAM_INT);
    assert_int_equal(sp->p[4].kind, RF_PARAM_CAT);
    assert_int_equal(sp->p[4].n_choices, 3);
    assert_true(sp->p[4].choice_is_num[1] && sp->p[4].choice_num[1] == 128);
    assert_string_equal(sp->p[5].choice_label[1], "spline");
    assert_int_equal(sp->p[6].parent, 5);
    assert_int_equal(sp->p[8].parent, 7);
    assert_int_equal(sp->p[9].parent, 2);
    assert_int_equal(rf_space_find(sp, "bins"), 6);
    assert_int_equal(rf_space_find(sp, "nope"), -1);
    /* canonical text round trip */
    char *s1 = rf_space_to_string(sp);
    rf_space *sp2 = rf_space_parse(s1, "canonical", &e);
    assert_non_null(sp2);
    char *s2 = rf_space_to_string(sp2);
    assert_string_equal(s1, s2);
    assert_int_equal(rf_space_compare(sp, sp2, &e), RF_OK);
    free(s1);
    free(s2);
    rf_space_free(sp2);
    /* a changed bound is a difference naming the parameter */
    char *mod = strdup(SPACE1);
    char *at = strstr(mod, "\"high\": 50");
    memcpy(at, "\"high\": 60", 10);
    sp2 = rf_space_parse(mod, "mod", &e);
    assert_non_null(sp2);
    assert_int_equal(rf_space_compare(sp, sp2, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "'epochs'"));
    rf_space_free(sp2);
    free(mod);

    /* the built-in spaces */
    rf_space *tr = rf_space_default_training(&e), *ar = rf_space_default_architecture(&e);
    assert_non_null(tr);
    assert_non_null(ar);
    const char *tn[] = {"lr", "batch", "weight-decay", "schedule", "warmup", "epochs", "clip", "ce-weight"};
    for (int i = 0; i < 8; i++) assert_true(rf_space_find(tr, tn[i]) >= 0);
    const char *an[] = {"flow", "blocks", "hidden", "hidden-layers", "act", "bins", "permutation", "actnorm"};
    for (int i = 0; i < 8; i++) assert_true(rf_space_find(ar, an[i]) >= 0);
    assert_int_equal(ar->p[rf_space_find(ar, "bins")].parent, rf_space_find(ar, "flow"));
    rf_space *both = rf_space_concat(tr, ar, "both", &e);
    assert_non_null(both);
    assert_int_equal(both->n, tr->n + ar->n);
    /* concatenating a space with itself repeats names */
    assert_null(rf_space_concat(tr, tr, NULL, &e));
    assert_non_null(strstr(e.msg, "declared twice"));

    /* default configuration = `renflow train` defaults, applied to spec + training config */
    rf_config c;
    assert_int_equal(rf_config_default(both, &c, &e), RF_OK);
    rf_flow_spec spec;
    rf_flow_spec_default(&spec, RF_FLOW_REALNVP, 4);
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.lr = 0.5f;
    tc.batch = 7;
    char un[256];
    assert_int_equal(rf_space_apply(both, &c, &spec, &tc, un, sizeof un, &e), RF_OK);
    assert_true(fabsf(tc.lr - 1e-3f) < 1e-9f);
    assert_int_equal(tc.batch, 256);
    assert_int_equal(tc.epochs, 50);
    assert_int_equal(tc.cosine, 1);
    assert_true(fabsf(tc.ce_weight - 1.0f) < 1e-6f);
    assert_int_equal(spec.type, RF_FLOW_NSF);
    assert_int_equal(spec.blocks, 5);
    assert_int_equal(spec.hidden, 64);
    assert_int_equal(spec.n_hidden, 2);
    assert_int_equal(spec.bins, 8);
    assert_string_equal(un, "");
    assert_int_equal(spec.perm, RF_PERM_LU);
    assert_int_equal(spec.no_actnorm, 0);
    assert_int_equal(rf_config_set(both, &c, "permutation", 0, "random", &e), RF_OK);
    assert_int_equal(rf_config_set(both, &c, "actnorm", 0, "off", &e), RF_OK);
    assert_int_equal(rf_space_apply(both, &c, &spec, &tc, NULL, 0, &e), RF_OK);
    assert_int_equal(spec.perm, RF_PERM_RANDOM);
    assert_int_equal(spec.no_actnorm, 1);
    assert_int_equal(rf_config_set(both, &c, "permutation", 0, "lu", &e), RF_OK);
    assert_int_equal(rf_config_set(both, &c, "actnorm", 0, "on", &e), RF_OK);
    /* a changed configuration reaches the fields */
    assert_int_equal(rf_config_set(both, &c, "flow", 0, "glow", &e), RF_OK);
    assert_int_equal(rf_config_set(both, &c, "blocks", 9, NULL, &e), RF_OK);
    assert_int_equal(rf_config_set(both, &c, "schedule", 0, "constant", &e), RF_OK);
    assert_int_equal(rf_config_set(both, &c, "act", 0, "tanh", &e), RF_OK);
    assert_int_equal(rf_config_set(both, &c, "hidden", 128, NULL, &e), RF_OK);
    assert_int_equal(rf_space_apply(both, &c, &spec, &tc, NULL, 0, &e), RF_OK);
    assert_int_equal(spec.type, RF_FLOW_GLOW);
    assert_int_equal(spec.blocks, 9);
    assert_int_equal(spec.hidden, 128);
    assert_int_equal(spec.act, RF_ACT_TANH);
    assert_int_equal(tc.cosine, 0);
    /* setting a value outside the space names it */
    assert_int_equal(rf_config_set(both, &c, "blocks", 40, NULL, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "'blocks'"));
    assert_non_null(strstr(e.msg, "40"));
    rf_config_free(&c);
    rf_space_free(both);
    rf_space_free(tr);
    rf_space_free(ar);
    rf_space_free(sp);
}

typedef struct bad_case {
    const char *text;
    const char *expect[3]; /* substrings of the message */
} bad_case;

static void test_space_bad_files(void **state) {
    (void)state;
    static const bad_case cases[] = {
        {"{\"parameters\": [", {"not valid JSON", NULL, NULL}},
        {"[1, 2]", {"expected a JSON object", NULL, NULL}},
        {"{\"params\": []}", {"unknown top-level field 'params'", NULL, NULL}},
        {"{\"parameters\": []}", {"'parameters'", "non-empty", NULL}},
        {"{\"parameters\": [{\"name\": \"lr\", \"type\": \"float\", \"low\": 1, \"hi\": 2}]}",
         {"parameter 'lr'", "unknown field 'hi'", NULL}},
        {"{\"parameters\": [{\"name\": \"lr\", \"type\": \"double\", \"low\": 1, \"high\": 2}]}",
         {"parameter 'lr'", "field 'type'", "\"double\""}},
        {"{\"parameters\": [{\"name\": \"lr\", \"type\": \"float\", \"low\": 2, \"high\": 1}]}",
         {"parameter 'lr'", "field 'high'", "greater than low"}},
        {"{\"parameters\": [{\"name\": \"lr\", \"type\": \"float\", \"low\": 0, \"high\": 1, \"log\": true}]}",
         {"parameter 'lr'", "field 'low'", "log"}},
        {"{\"parameters\": [{\"name\": \"lr\", \"type\": \"float\", \"low\": \"small\", \"high\": 1}]}",
         {"parameter 'lr'", "field 'low'", "\"small\""}},
        {"{\"parameters\": [{\"name\": \"n\", \"type\": \"int\", \"low\": 1.5, \"high\": 4}]}",
         {"parameter 'n'", "field 'low'", "1.5"}},
        {"{\"parameters\": [{\"name\": \"n\", \"type\": \"int\", \"low\": 0, \"high\": 4, \"log\": true}]}",
         {"parameter 'n'", "low >= 1", NULL}},
        {"{\"parameters\": [{\"name\": \"c\", \"type\": \"categorical\"}]}", {"parameter 'c'", "field 'choices'", NULL}},
        {"{\"parameters\": [{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"a\", \"b\", \"a\"]}]}",
         {"parameter 'c'", "choices'[2]", "repeats"}},
        {"{\"parameters\": [{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"a\", null]}]}",
         {"parameter 'c'", "choices'[1]", "null"}},
        {"{\"parameters\": [{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1}, {\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1}]}",
         {"parameter 'x'", "declared twice", NULL}},
        {"{\"parameters\": [{\"name\": \"bad name\", \"type\": \"float\", \"low\": 0, \"high\": 1}]}",
         {"parameters[0]", "\"bad name\"", "not a valid name"}},
        {"{\"parameters\": [{\"name\": \"b\", \"type\": \"int\", \"low\": 1, \"high\": 4, \"condition\": {\"parent\": \"c\", \"values\": [\"x\"]}}, "
         "{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"x\"]}]}",
         {"parameter 'b'", "condition.parent", "\"c\""}},
        {"{\"parameters\": [{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"x\", \"y\"]}, "
         "{\"name\": \"b\", \"type\": \"int\", \"low\": 1, \"high\": 4, \"condition\": {\"parent\": \"c\", \"values\": [\"z\"]}}]}",
         {"parameter 'b'", "condition.values[0]", "\"z\""}},
        {"{\"parameters\": [{\"name\": \"f\", \"type\": \"float\", \"low\": 0, \"high\": 1}, "
         "{\"name\": \"b\", \"type\": \"int\", \"low\": 1, \"high\": 4, \"condition\": {\"parent\": \"f\", \"values\": [0.5]}}]}",
         {"parameter 'b'", "is a float", NULL}},
        {"{\"parameters\": [{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [\"x\"]}, "
         "{\"name\": \"b\", \"type\": \"int\", \"low\": 1, \"high\": 4, \"condition\": {\"parent\": \"c\", \"value\": [\"x\"]}}]}",
         {"parameter 'b'", "unknown field 'value'", NULL}},
        {"{\"parameters\": [{\"name\": \"lr\", \"type\": \"float\", \"low\": 0, \"high\": 1, \"default\": 3}]}",
         {"parameter 'lr'", "field 'default'", "outside [0, 1]"}},
        {"{\"parameters\": [{\"name\": \"c\", \"type\": \"categorical\", \"choices\": [1, 2], \"default\": \"1\"}]}",
         {"parameter 'c'", "field 'default'", "not one of the choices"}},
    };
    char path[256];
    rf_test_tmp(path, sizeof path, "bad-space.json");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_int_equal(write_text(path, cases[i].text), 0);
        rf_err e = {0};
        rf_space *sp = rf_space_load(path, &e);
        if (sp) fprintf(stderr, "case %zu parsed: %s\n", i, cases[i].text);
        assert_null(sp);
        assert_int_equal(e.code, RF_EFORMAT);
        int ok = strstr(e.msg, path) != NULL;
        for (int k = 0; k < 3; k++)
            if (cases[i].expect[k] && !strstr(e.msg, cases[i].expect[k])) ok = 0;
        if (!ok) fprintf(stderr, "case %zu: message \"%s\"\n", i, e.msg);
        assert_true(ok);
    }
    unlink(path);
    rf_err e = {0};
    assert_null(rf_space_load("/nonexistent/space.json", &e));
    assert_non_null(strstr(e.msg, "/nonexistent/space.json"));
}

static void test_space_conditional(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse(SPACE1, "test", &e);
    assert_non_null(sp);
    rf_config c;
    assert_int_equal(rf_config_default(sp, &c, &e), RF_OK);
    const int i_coup = rf_space_find(sp, "coupling"), i_bins = 6, i_tails = 7, i_bound = 8, i_scale = 9;
    /* default coupling = spline: bins and tails active; tails default "linear" -> bound active */
    assert_int_equal((int)c.v[i_coup], 1);
    assert_true(c.active[i_bins] && c.active[i_tails] && c.active[i_bound]);
    /* epochs default 28 (middle): scale inactive */
    assert_false(c.active[i_scale]);
    assert_true(isnan(c.v[i_scale]));
    /* parent changes: children (and grandchildren) inactive */
    assert_int_equal(rf_config_set(sp, &c, "coupling", 0, "affine", &e), RF_OK);
    assert_false(c.active[i_bins]);
    assert_false(c.active[i_tails]);
    assert_false(c.active[i_bound]);
    assert_true(isnan(c.v[i_bins]) && isnan(c.v[i_bound]));
    assert_int_equal(rf_config_check(sp, &c, &e), RF_OK);
    char *txt = rf_config_to_string(sp, &c);
    assert_null(strstr(txt, "bins"));
    assert_null(strstr(txt, "bound"));
    assert_non_null(strstr(txt, "\"coupling\":\"affine\""));
    assert_non_null(strstr(txt, "\"batch\":"));
    rf_config c2;
    assert_int_equal(rf_config_parse(sp, txt, &c2, &e), RF_OK);
    assert_true(rf_config_equal(&c, &c2));
    rf_config_free(&c2);
    free(txt);
    /* int parent */
    assert_int_equal(rf_config_set(sp, &c, "epochs", 6, NULL, &e), RF_OK);
    assert_true(c.active[i_scale]);
    assert_int_equal(rf_config_set(sp, &c, "epochs", 8, NULL, &e), RF_OK);
    assert_false(c.active[i_scale]);
    /* an inactive parameter given a value, a missing active one, an unknown one: errors */
    const char *bad1 = "{\"lr\":0.001,\"drop\":0.1,\"epochs\":10,\"width\":16,\"batch\":64,\"coupling\":\"affine\",\"bins\":5}";
    assert_int_equal(rf_config_parse(sp, bad1, &c2, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "'bins'"));
    assert_non_null(strstr(e.msg, "inactive"));
    const char *bad2 = "{\"lr\":0.001,\"drop\":0.1,\"epochs\":10,\"width\":16,\"batch\":64,\"coupling\":\"spline\",\"tails\":\"none\"}";
    assert_int_equal(rf_config_parse(sp, bad2, &c2, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "'bins'"));
    assert_non_null(strstr(e.msg, "no value"));
    const char *bad3 = "{\"lr\":0.001,\"drop\":0.1,\"epochs\":10,\"width\":16,\"batch\":64,\"coupling\":\"affine\",\"extra\":1}";
    assert_int_equal(rf_config_parse(sp, bad3, &c2, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "'extra'"));
    const char *bad4 = "{\"lr\":0.5,\"drop\":0.1,\"epochs\":10,\"width\":16,\"batch\":64,\"coupling\":\"affine\"}";
    assert_int_equal(rf_config_parse(sp, bad4, &c2, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "'lr'"));
    assert_non_null(strstr(e.msg, "0.5"));
    const char *bad5 = "{\"lr\":0.001,\"drop\":0.1,\"epochs\":10,\"width\":16,\"batch\":100,\"coupling\":\"affine\"}";
    assert_int_equal(rf_config_parse(sp, bad5, &c2, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "'batch'"));
    assert_non_null(strstr(e.msg, "100"));
    /* an active flag that contradicts the condition fails the check */
    c.active[i_bins] = 1;
    c.v[i_bins] = 5;
    assert_int_equal(rf_config_check(sp, &c, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "'bins'"));
    rf_config_free(&c);

    /* architecture space: bins only for nsf */
    rf_space *ar = rf_space_default_architecture(&e);
    rf_config a;
    assert_int_equal(rf_config_default(ar, &a, &e), RF_OK);
    int ib = rf_space_find(ar, "bins");
    assert_true(a.active[ib]);
    const char *fl[] = {"realnvp", "glow", "maf"};
    for (int k = 0; k < 3; k++) {
        assert_int_equal(rf_config_set(ar, &a, "flow", 0, fl[k], &e), RF_OK);
        assert_false(a.active[ib]);
        double u[16];
        rf_space_encode(ar, &a, u);
        assert_true(isnan(u[ib]));
    }
    assert_int_equal(rf_config_set(ar, &a, "flow", 0, "nsf", &e), RF_OK);
    assert_true(a.active[ib]);
    assert_int_equal((int)a.v[ib], 8); /* default given back */
    rf_config_free(&a);
    rf_space_free(ar);
    rf_space_free(sp);
}

static void test_space_encode_roundtrip(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse(SPACE1, "test", &e);
    rf_rng rng;
    rf_rng_seed(&rng, 11);
    rf_config c, d;
    rf_config_init(&c, sp, &e);
    rf_config_init(&d, sp, &e);
    double u[10];
    for (int it = 0; it < 2000; it++) {
        rf_space_sample_uniform(sp, &rng, &c);
        assert_int_equal(rf_config_check(sp, &c, &e), RF_OK);
        rf_space_encode(sp, &c, u);
        for (int i = 0; i < sp->n; i++) {
            if (!c.active[i]) {
                assert_true(isnan(u[i]));
            } else if (sp->p[i].kind == RF_PARAM_CAT) {
                assert_true(u[i] == c.v[i]);
            } else {
                assert_true(u[i] >= 0 && u[i] <= 1);
            }
        }
        rf_space_decode(sp, u, &d);
        for (int i = 0; i < sp->n; i++) {
            assert_int_equal(c.active[i], d.active[i]);
            if (!c.active[i]) continue;
            if (sp->p[i].kind == RF_PARAM_FLOAT) assert_true(fabs(c.v[i] - d.v[i]) <= 1e-12 * fmax(1, fabs(c.v[i])));
            else assert_true(c.v[i] == d.v[i]);
        }
        /* JSON round trip is exact */
        char *s = rf_config_to_string(sp, &c);
        rf_config j;
        assert_int_equal(rf_config_parse(sp, s, &j, &e), RF_OK);
        assert_true(rf_config_equal(&c, &j));
        rf_config_free(&j);
        free(s);
    }
    /* decoding uniform u gives uniform integers (epochs 5..50: 46 values, ends included) */
    int cnt[46] = {0};
    const int ie = rf_space_find(sp, "epochs");
    for (int it = 0; it < 46000; it++) {
        for (int i = 0; i < sp->n; i++) u[i] = sp->p[i].kind == RF_PARAM_CAT ? 0 : rf_rng_uniform(&rng);
        rf_space_decode(sp, u, &d);
        cnt[(int)d.v[ie] - 5]++;
    }
    for (int k = 0; k < 46; k++) assert_true(cnt[k] > 800 && cnt[k] < 1200);
    /* encoding of the ends */
    c.v[0] = 1e-4;
    c.active[0] = 1;
    rf_space_encode(sp, &c, u);
    assert_true(fabs(u[0]) < 1e-12);
    rf_config_free(&c);
    rf_config_free(&d);
    rf_space_free(sp);
}

static void test_random_covers(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse(SPACE1, "test", &e);
    rf_sampler *s = rf_sampler_create("random", &e);
    assert_non_null(s);
    rf_rng rng;
    rf_rng_seed(&rng, 5);
    rf_config c;
    rf_config_init(&c, sp, &e);
    enum { N = 6000 };
    int dec[10][10] = {{0}};
    int ints[46] = {0}, cats[3] = {0}, bins_active = 0;
    for (int it = 0; it < N; it++) {
        assert_int_equal(rf_sampler_sample(s, sp, NULL, &rng, &c, &e), RF_OK);
        double u[10];
        rf_space_encode(sp, &c, u);
        for (int i = 0; i < 4; i++) dec[i][(int)fmin(9, u[i] * 10)]++;
        ints[(int)c.v[2] - 5]++;
        cats[(int)c.v[4]]++;
        bins_active += c.active[6];
    }
    /* floats (linear and log) and log ints fill every decile of their scale */
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 10; k++) assert_true(dec[i][k] > N / 10 * 0.8 && dec[i][k] < N / 10 * 1.2);
    for (int k = 0; k < 46; k++) assert_true(ints[k] > 0);
    for (int k = 0; k < 3; k++) assert_true(cats[k] > N / 3 * 0.9);
    /* one coupling in three is a spline */
    assert_true(bins_active > N / 3 * 0.9 && bins_active < N / 3 * 1.1);
    rf_config_free(&c);
    rf_sampler_free(s);
    rf_space_free(sp);
    assert_null(rf_sampler_create("bayes", &e));
    assert_non_null(strstr(e.msg, "bayes"));
}

/* ---------------------------------------------------------------------------------------
 * samplers on benchmark functions (histories in memory, no study file)
 * --------------------------------------------------------------------------------------- */

typedef double (*cfg_fn)(const rf_space *sp, const rf_config *c, const void *ctx);

static double tf_obj(const rf_space *sp, const rf_config *c, const void *ctx) {
    double v = NAN;
    rf_testfunc_eval(ctx, sp, c, &v, NULL);
    return v;
}

/* Runs n trials of a sampler; returns the best value; *late = mean of the last 10 values. */
static double run_sampler(rf_sampler *s, const rf_space *sp, cfg_fn f, const void *ctx, int n, uint64_t seed,
                          rf_trial **keep) {
    rf_trial *tr = calloc((size_t)n, sizeof *tr);
    const rf_trial **items = calloc((size_t)n, sizeof *items);
    rf_history h = {0};
    h.n_objectives = 1;
    h.directions[0] = RF_MINIMIZE;
    h.items = items;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
        rf_config_init(&tr[i].cfg, sp, NULL);
        h.n = i;
        assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &tr[i].cfg, NULL), RF_OK);
        tr[i].number = i;
        tr[i].status = RF_TRIAL_COMPLETE;
        tr[i].n_values = 1;
        tr[i].values[0] = f(sp, &tr[i].cfg, ctx);
        tr[i].last_step = -1;
        items[i] = &tr[i];
        if (tr[i].values[0] < best) best = tr[i].values[0];
    }
    free(items);
    if (keep) {
        *keep = tr;
    } else {
        for (int i = 0; i < n; i++) rf_config_free(&tr[i].cfg);
        free(tr);
    }
    return best;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void compare_on(const char *fname, const char *tpe_name, int n_trials, int n_seeds, double *med_tpe,
                       double *med_rnd, int *n_below, double thr) {
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find(fname);
    assert_non_null(tf);
    rf_space *sp = rf_testfunc_space(tf, &e);
    assert_non_null(sp);
    rf_sampler *tpe = rf_sampler_create(tpe_name, &e), *rnd = rf_sampler_create("random", &e);
    double bt[32], br[32];
    *n_below = 0;
    for (int sd = 0; sd < n_seeds; sd++) {
        bt[sd] = run_sampler(tpe, sp, tf_obj, tf, n_trials, 1000 + sd, NULL);
        br[sd] = run_sampler(rnd, sp, tf_obj, tf, n_trials, 1000 + sd, NULL);
        assert_true(bt[sd] >= tf->fmin - 1e-9 && br[sd] >= tf->fmin - 1e-9);
        *n_below += bt[sd] < thr;
    }
    qsort(bt, (size_t)n_seeds, sizeof(double), cmp_d);
    qsort(br, (size_t)n_seeds, sizeof(double), cmp_d);
    *med_tpe = 0.5 * (bt[(n_seeds - 1) / 2] + bt[n_seeds / 2]);
    *med_rnd = 0.5 * (br[(n_seeds - 1) / 2] + br[n_seeds / 2]);
    printf("  %-9s %-14s %d trials x %d seeds: median best %s %.5f, random %.5f; %d/%d below %g (min %.5f)\n", fname,
           tpe_name, n_trials, n_seeds, tpe_name, *med_tpe, *med_rnd, *n_below, n_seeds, thr, tf->fmin);
    rf_sampler_free(tpe);
    rf_sampler_free(rnd);
    rf_space_free(sp);
}

static void test_testfuncs_known_optima(void **state) {
    (void)state;
    const rf_testfunc *b = rf_testfunc_find("branin"), *h = rf_testfunc_find("hartmann6");
    assert_non_null(b);
    assert_non_null(h);
    assert_null(rf_testfunc_find("rosenbrock"));
    const double bmins[3][2] = {{-M_PI, 12.275}, {M_PI, 2.275}, {9.42478, 2.475}};
    for (int k = 0; k < 3; k++) assert_true(fabs(rf_branin(bmins[k]) - 0.397887) < 1e-5);
    assert_true(fabs(rf_hartmann6(h->argmin) - (-3.32237)) < 1e-4);
    /* nothing on a grid beats the known minima */
    double x[6], lo = INFINITY;
    for (int i = 0; i <= 300; i++)
        for (int j = 0; j <= 300; j++) {
            x[0] = -5 + 15.0 * i / 300;
            x[1] = 15.0 * j / 300;
            double v = rf_branin(x);
            if (v < lo) lo = v;
        }
    assert_true(lo >= b->fmin - 1e-9 && lo < b->fmin + 0.01);
    rf_rng rng;
    rf_rng_seed(&rng, 3);
    for (int it = 0; it < 100000; it++) {
        for (int j = 0; j < 6; j++) x[j] = rf_rng_uniform(&rng);
        assert_true(rf_hartmann6(x) >= h->fmin - 1e-9);
    }
    /* evaluation through a configuration of the function's space */
    rf_err e = {0};
    rf_space *sp = rf_testfunc_space(b, &e);
    rf_config c;
    rf_config_init(&c, sp, &e);
    assert_int_equal(rf_config_set(sp, &c, "x1", M_PI, NULL, &e), RF_OK);
    assert_int_equal(rf_config_set(sp, &c, "x2", 2.275, NULL, &e), RF_OK);
    double v;
    assert_int_equal(rf_testfunc_eval(b, sp, &c, &v, &e), RF_OK);
    assert_true(fabs(v - 0.397887) < 1e-5);
    rf_config_free(&c);
    rf_space_free(sp);
}

static void test_tpe_branin(void **state) {
    (void)state;
    double mt, mr;
    int nb;
    compare_on("branin", "tpe", 100, 10, &mt, &mr, &nb, 0.5);
    assert_true(nb >= 7);
    assert_true(mt < 0.5);
    assert_true(mt < mr - 0.05);
    compare_on("branin", "tpe-univariate", 100, 10, &mt, &mr, &nb, 0.5);
    assert_true(mt < mr);
}

static void test_tpe_hartmann6(void **state) {
    (void)state;
    double mt, mr;
    int nb;
    compare_on("hartmann6", "tpe", 100, 10, &mt, &mr, &nb, -3.0);
    assert_true(mt < mr - 0.1);
    compare_on("hartmann6", "tpe-univariate", 100, 10, &mt, &mr, &nb, -3.0);
    assert_true(mt < mr);
    /* with bandwidth-weighted kernels (as Optuna < 3.5) */
    compare_on("hartmann6", "tpe-sdw", 100, 10, &mt, &mr, &nb, -3.0);
    assert_true(mt < mr - 0.1);
}

/* A conditional function: the optimum lies in branch "b" (f = (xb - 0.7)^2 + (n - 3)^2 / 100);
 * branch "a" is never below 0.5, branch "c" is 2. */
static const char COND_SPACE[] =
    "{\"parameters\": ["
    "{\"name\": \"branch\", \"type\": \"categorical\", \"choices\": [\"a\", \"b\", \"c\"]},"
    "{\"name\": \"xa\", \"type\": \"float\", \"low\": 0, \"high\": 1, \"condition\": {\"parent\": \"branch\", \"values\": [\"a\"]}},"
    "{\"name\": \"xb\", \"type\": \"float\", \"low\": 0, \"high\": 1, \"condition\": {\"parent\": \"branch\", \"values\": [\"b\"]}},"
    "{\"name\": \"n\", \"type\": \"int\", \"low\": 1, \"high\": 20, \"log\": true, \"condition\": {\"parent\": \"branch\", \"values\": [\"b\"]}},"
    "{\"name\": \"noise\", \"type\": \"float\", \"low\": 1e-3, \"high\": 1, \"log\": true}]}";

static double cond_obj(const rf_space *sp, const rf_config *c, const void *ctx) {
    (void)ctx;
    const char *br;
    rf_config_get_choice(sp, c, "branch", &br, NULL);
    double x, n;
    if (!strcmp(br, "a")) {
        rf_config_get_number(sp, c, "xa", &x, NULL);
        return 0.5 + (x - 0.3) * (x - 0.3);
    }
    if (!strcmp(br, "b")) {
        rf_config_get_number(sp, c, "xb", &x, NULL);
        rf_config_get_number(sp, c, "n", &n, NULL);
        return (x - 0.7) * (x - 0.7) + (n - 3) * (n - 3) / 100;
    }
    return 2.0;
}

static void test_tpe_conditional(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse(COND_SPACE, "cond", &e);
    assert_non_null(sp);
    const char *names[2] = {"tpe", "tpe-univariate"};
    for (int v = 0; v < 2; v++) {
        rf_sampler *tpe = rf_sampler_create(names[v], &e);
        int good = 0, late_b = 0, late = 0;
        for (int sd = 0; sd < 5; sd++) {
            rf_trial *tr = NULL;
            double best = run_sampler(tpe, sp, cond_obj, NULL, 80, 77 + sd, &tr);
            good += best < 0.01;
            for (int i = 0; i < 80; i++) {
                assert_int_equal(rf_config_check(sp, &tr[i].cfg, &e), RF_OK);
                if (i >= 50) {
                    late++;
                    late_b += (int)tr[i].cfg.v[0] == 1;
                }
                rf_config_free(&tr[i].cfg);
            }
            free(tr);
        }
        printf("  conditional %-14s: %d/5 seeds below 0.01; branch b in %d/%d of trials 50..79\n", names[v], good, late_b,
               late);
        assert_true(good >= 4);
        assert_true(late_b > late * 2 / 3); /* random would give 1/3 */
        rf_sampler_free(tpe);
    }
    rf_space_free(sp);
}

/* Pruned trials count through their last intermediate value; failed ones not at all; two
 * objectives rank by non-domination. */
static void test_tpe_pruned_failed_multiobjective(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse("{\"parameters\": [{\"name\": \"x\", \"type\": \"float\", \"low\": 0, \"high\": 1}]}", "x", &e);
    assert_non_null(sp);
    enum { N = 40 };
    rf_trial t[N];
    const rf_trial *items[N];
    memset(t, 0, sizeof t);
    rf_rng rng;
    rf_rng_seed(&rng, 21);
    for (int i = 0; i < N; i++) {
        rf_config_init(&t[i].cfg, sp, &e);
        rf_space_sample_uniform(sp, &rng, &t[i].cfg);
        t[i].number = i;
        items[i] = &t[i];
    }
    rf_history h = {.n = N, .items = items, .n_objectives = 1};
    rf_sampler *tpe = rf_sampler_create("tpe", &e), *rnd = rf_sampler_create("random", &e);
    rf_config c, d;
    rf_config_init(&c, sp, &e);
    rf_config_init(&d, sp, &e);
    /* all failed: no observation, so TPE draws exactly what the random sampler draws */
    for (int i = 0; i < N; i++) {
        t[i].status = RF_TRIAL_FAILED;
        t[i].n_values = 0;
    }
    rf_rng r1, r2;
    rf_rng_seed(&r1, 5);
    rf_rng_seed(&r2, 5);
    for (int k = 0; k < 20; k++) {
        assert_int_equal(rf_sampler_sample(tpe, sp, &h, &r1, &c, &e), RF_OK);
        assert_int_equal(rf_sampler_sample(rnd, sp, &h, &r2, &d, &e), RF_OK);
        assert_true(c.v[0] == d.v[0]);
    }
    /* all pruned at step 3 with value (x - 0.2)^2: the samples gather near 0.2 */
    for (int i = 0; i < N; i++) {
        t[i].status = RF_TRIAL_PRUNED;
        t[i].last_step = 3;
        t[i].last_value = (t[i].cfg.v[0] - 0.2) * (t[i].cfg.v[0] - 0.2);
    }
    int near = 0;
    for (int k = 0; k < 100; k++) {
        assert_int_equal(rf_sampler_sample(tpe, sp, &h, &r1, &c, &e), RF_OK);
        near += fabs(c.v[0] - 0.2) < 0.2;
    }
    printf("  pruned history: %d/100 samples within 0.2 of the best region (random: ~40)\n", near);
    assert_true(near >= 70);
    /* a pruned trial at a later step ranks before one at an earlier step, whatever the values */
    for (int i = 0; i < N; i++) {
        t[i].last_step = fabs(t[i].cfg.v[0] - 0.8) < 0.1 ? 9 : 3; /* later steps near 0.8 */
        t[i].last_value = t[i].last_step == 9 ? 100.0 : (t[i].cfg.v[0] - 0.2) * (t[i].cfg.v[0] - 0.2);
    }
    int near8 = 0;
    for (int k = 0; k < 100; k++) {
        assert_int_equal(rf_sampler_sample(tpe, sp, &h, &r1, &c, &e), RF_OK);
        near8 += fabs(c.v[0] - 0.8) < 0.15;
    }
    printf("  pruned at later steps first: %d/100 samples near 0.8\n", near8);
    assert_true(near8 >= 50);
    /* two objectives x^2 and (x - 1)^2 on [-2, 3] (Pareto set [0, 1]), sampled sequentially */
    rf_space *sp2 = rf_space_parse("{\"parameters\": [{\"name\": \"x\", \"type\": \"float\", \"low\": -2, \"high\": 3}]}", "x", &e);
    rf_trial m[80];
    const rf_trial *mi[80];
    memset(m, 0, sizeof m);
    rf_history hm = {.n = 0, .items = mi, .n_objectives = 2, .directions = {RF_MINIMIZE, RF_MAXIMIZE}};
    int in_set = 0;
    for (int i = 0; i < 80; i++) {
        rf_config_init(&m[i].cfg, sp2, &e);
        hm.n = i;
        assert_int_equal(rf_sampler_sample(tpe, sp2, &hm, &r1, &m[i].cfg, &e), RF_OK);
        double x = m[i].cfg.v[0];
        m[i].number = i;
        m[i].status = RF_TRIAL_COMPLETE;
        m[i].n_values = 2;
        m[i].values[0] = x * x;
        m[i].values[1] = -(x - 1) * (x - 1); /* maximised */
        m[i].last_step = -1;
        mi[i] = &m[i];
        if (i >= 40) in_set += x >= -0.1 && x <= 1.1;
    }
    printf("  two objectives: %d/40 of trials 40..79 in the Pareto set (random: ~10)\n", in_set);
    assert_true(in_set >= 24);
    for (int i = 0; i < 80; i++) rf_config_free(&m[i].cfg);
    for (int i = 0; i < N; i++) rf_config_free(&t[i].cfg);
    rf_config_free(&c);
    rf_config_free(&d);
    rf_sampler_free(tpe);
    rf_sampler_free(rnd);
    rf_space_free(sp);
    rf_space_free(sp2);
}

/* Sampler time per trial with 1000 completed trials in the history (printed, not asserted). */
static void test_tpe_overhead(void **state) {
    (void)state;
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find("hartmann6");
    rf_space *hs = rf_testfunc_space(tf, &e);
    rf_space *tr = rf_space_default_training(&e), *ar = rf_space_default_architecture(&e);
    rf_space *both = rf_space_concat(tr, ar, "both", &e);
    rf_space *spaces[2] = {hs, both};
    const char *label[2] = {"hartmann6 (6 floats)", "training+architecture (16, conditional)"};
    for (int v = 0; v < 2; v++) {
        rf_space *sp = spaces[v];
        enum { N = 1000 };
        rf_trial *t = calloc(N, sizeof *t);
        const rf_trial **items = calloc(N, sizeof *items);
        rf_rng rng;
        rf_rng_seed(&rng, 9);
        for (int i = 0; i < N; i++) {
            rf_config_init(&t[i].cfg, sp, &e);
            rf_space_sample_uniform(sp, &rng, &t[i].cfg);
            double u[32];
            rf_space_encode(sp, &t[i].cfg, u);
            double s = 0;
            for (int k = 0; k < sp->n; k++) s += isnan(u[k]) ? 0.3 : (u[k] - 0.4) * (u[k] - 0.4);
            t[i].number = i;
            t[i].status = RF_TRIAL_COMPLETE;
            t[i].n_values = 1;
            t[i].values[0] = s;
            t[i].last_step = -1;
            items[i] = &t[i];
        }
        rf_history h = {.n = N, .items = items, .n_objectives = 1};
        const char *names[2] = {"tpe", "tpe-univariate"};
        for (int k = 0; k < 2; k++) {
            rf_sampler *s = rf_sampler_create(names[k], &e);
            rf_config c;
            rf_config_init(&c, sp, &e);
            const int R = 20;
            double t0 = rf_now(), c0 = rf_cpu_seconds();
            for (int r = 0; r < R; r++) assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &c, &e), RF_OK);
            double ms = (rf_now() - t0) / R * 1e3, cms = (rf_cpu_seconds() - c0) / R * 1e3;
            printf("  %s sampler, %s, %d completed trials: %.2f ms CPU (%.2f ms wall) per trial\n", names[k], label[v],
                   N, cms, ms);
            rf_config_free(&c);
            rf_sampler_free(s);
        }
        for (int i = 0; i < N; i++) rf_config_free(&t[i].cfg);
        free(t);
        free(items);
    }
    /* the same through a study file: ask (refresh, sample, insert) + tell at 1000 trials */
    char path[256];
    rf_test_tmp(path, sizeof path, "overhead.db");
    rm_study(path);
    rf_study_def d;
    memset(&d, 0, sizeof d);
    d.space = both;
    d.n_objectives = 1;
    snprintf(d.objectives[0].name, sizeof d.objectives[0].name, "loss");
    rf_study *st = rf_study_open(path, &d, &e);
    assert_non_null(st);
    rf_sampler *rnd = rf_sampler_create("random", &e), *tpe = rf_sampler_create("tpe", &e);
    for (int i = 0; i < 1020; i++) {
        rf_trial *t;
        double t0 = rf_now(), c0 = rf_cpu_seconds();
        static double wall, cpu;
        assert_int_equal(rf_study_ask(st, i < 1000 ? rnd : tpe, &t, &e), RF_OK);
        double u[32], v = 0;
        rf_space_encode(both, &t->cfg, u);
        for (int k = 0; k < both->n; k++) v += isnan(u[k]) ? 0.3 : (u[k] - 0.4) * (u[k] - 0.4);
        assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &e), RF_OK);
        rf_trial_free(t);
        if (i >= 1000) {
            wall += rf_now() - t0;
            cpu += rf_cpu_seconds() - c0;
        }
        if (i == 1019)
            printf("  study ask + tell with tpe, training+architecture, 1000 trials in the file: %.2f ms CPU (%.2f ms wall) per trial\n",
                   cpu / 20 * 1e3, wall / 20 * 1e3);
    }
    rf_sampler_free(rnd);
    rf_sampler_free(tpe);
    rf_study_close(st);
    rm_study(path);
    rf_space_free(both);
    rf_space_free(tr);
    rf_space_free(ar);
    rf_space_free(hs);
}

/* ---------------------------------------------------------------------------------------
 * studies
 * --------------------------------------------------------------------------------------- */

static rf_study_def branin_def(const rf_space *sp, uint64_t seed) {
    rf_study_def d;
    memset(&d, 0, sizeof d);
    d.name = "branin";
    d.space = sp;
    d.n_objectives = 1;
    snprintf(d.objectives[0].name, sizeof d.objectives[0].name, "value");
    d.objectives[0].direction = RF_MINIMIZE;
    d.sampler = "tpe";
    d.seed = seed;
    return d;
}

static void test_study_persist(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "persist.db");
    rm_study(path);
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find("branin");
    rf_space *sp = rf_testfunc_space(tf, &e);
    rf_study_def d = branin_def(sp, 42);
    rf_study *st = rf_study_open(path, &d, &e);
    assert_non_null(st);
    rf_sampler *smp = rf_sampler_create("tpe", &e);
    /* enqueue a fixed configuration: the first ask takes it */
    rf_config q;
    rf_config_init(&q, sp, &e);
    rf_config_set(sp, &q, "x1", M_PI, NULL, &e);
    rf_config_set(sp, &q, "x2", 2.275, NULL, &e);
    assert_int_equal(rf_study_enqueue(st, &q, 0, &e), RF_OK);
    double vals[6];
    char cfgs[6][256];
    for (int i = 0; i < 6; i++) {
        rf_trial *t = NULL;
        assert_int_equal(rf_study_ask(st, smp, &t, &e), RF_OK);
        assert_non_null(t);
        assert_int_equal(t->number, i);
        assert_int_equal(t->status, RF_TRIAL_RUNNING);
        if (i == 0) {
            assert_true(rf_config_equal(&t->cfg, &q));
            assert_string_equal(t->sampler, "enqueued");
        }
        char *s = rf_config_to_string(sp, &t->cfg);
        snprintf(cfgs[i], sizeof cfgs[i], "%s", s);
        free(s);
        assert_int_equal(rf_testfunc_eval(tf, sp, &t->cfg, &vals[i], &e), RF_OK);
        assert_int_equal(rf_study_report(st, t, 1, vals[i] * 2, &e), RF_OK);
        assert_int_equal(rf_study_report(st, t, 2, vals[i] * 1.5, &e), RF_OK);
        if (i == 3) {
            assert_int_equal(rf_study_tell(st, t, RF_TRIAL_FAILED, NULL, 0, "diverged: loss is nan", &e), RF_OK);
        } else if (i == 4) {
            assert_int_equal(rf_study_tell(st, t, RF_TRIAL_PRUNED, NULL, 0, "below median at step 2", &e), RF_OK);
        } else {
            /* a non-finite value is refused (the trial stays running until told properly) */
            double bad = NAN;
            assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, &bad, 1, NULL, &e), RF_ENONFINITE);
            assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, &vals[i], 1, NULL, &e), RF_OK);
            /* telling twice is refused: never counted twice */
            assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, &vals[i], 1, NULL, &e), RF_ESTATE);
            assert_non_null(strstr(e.msg, "not running"));
            assert_int_equal(rf_study_report(st, t, 3, 1.0, &e), RF_ESTATE);
        }
        rf_trial_free(t);
    }
    rf_config_free(&q);
    rf_study_close(st);

    /* reopen without a definition: everything is there */
    st = rf_study_open(path, NULL, &e);
    assert_non_null(st);
    assert_string_equal(rf_study_name(st), "branin");
    assert_int_equal(rf_study_seed(st), 42);
    assert_int_equal(rf_study_n_objectives(st), 1);
    assert_int_equal(rf_space_compare(rf_study_space(st), sp, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(st), 6);
    int counts[RF_TRIAL_NSTATUS];
    assert_int_equal(rf_study_counts(st, counts, &e), RF_OK);
    assert_int_equal(counts[RF_TRIAL_COMPLETE], 4);
    assert_int_equal(counts[RF_TRIAL_FAILED], 1);
    assert_int_equal(counts[RF_TRIAL_PRUNED], 1);
    assert_int_equal(counts[RF_TRIAL_RUNNING], 0);
    for (int i = 0; i < 6; i++) {
        const rf_trial *t = rf_study_finished(st, i);
        assert_int_equal(t->number, i);
        char *s = rf_config_to_string(rf_study_space(st), &t->cfg);
        assert_string_equal(s, cfgs[i]);
        free(s);
        assert_int_equal(t->last_step, 2);
        assert_true(t->last_value == vals[i] * 1.5);
        assert_true(t->duration >= 0);
        assert_int_equal(t->pid, (long)getpid());
        if (i == 3) {
            assert_int_equal(t->status, RF_TRIAL_FAILED);
            assert_string_equal(t->error, "diverged: loss is nan");
            assert_false(t->lost);
        } else if (i == 4) {
            assert_int_equal(t->status, RF_TRIAL_PRUNED);
        } else {
            assert_int_equal(t->status, RF_TRIAL_COMPLETE);
            assert_true(t->values[0] == vals[i]); /* bit for bit */
        }
    }
    long *steps;
    double *iv;
    int ni;
    assert_int_equal(rf_study_intermediate(st, 2, &steps, &iv, &ni, &e), RF_OK);
    assert_int_equal(ni, 2);
    assert_int_equal(steps[0], 1);
    assert_true(iv[0] == vals[2] * 2);
    free(steps);
    free(iv);
    const rf_trial *b = rf_study_best(st, 0);
    assert_non_null(b);
    assert_int_equal(b->number, 0); /* the enqueued optimum */
    rf_history h;
    assert_int_equal(rf_study_history(st, &h, &e), RF_OK);
    assert_int_equal(h.n, 5); /* complete + pruned */
    rf_history_free(&h);
    rf_study_close(st);

    /* reopening with another space or other objectives is a clear error */
    rf_space *hs = rf_testfunc_space(rf_testfunc_find("hartmann6"), &e);
    rf_study_def d2 = branin_def(hs, 42);
    assert_null(rf_study_open(path, &d2, &e));
    assert_non_null(strstr(e.msg, "different search space"));
    assert_non_null(strstr(e.msg, path));
    rf_space_free(hs);
    rf_study_def d3 = branin_def(sp, 42);
    d3.objectives[0].direction = RF_MAXIMIZE;
    assert_null(rf_study_open(path, &d3, &e));
    assert_non_null(strstr(e.msg, "objectives"));
    /* the same definition resumes (numbers continue) */
    st = rf_study_open(path, &d, &e);
    assert_non_null(st);
    rf_trial *t = NULL;
    assert_int_equal(rf_study_ask(st, smp, &t, &e), RF_OK);
    assert_int_equal(t->number, 6);
    rf_trial_free(t);
    rf_study_close(st);
    rm_study(path);

    /* files that are not studies */
    assert_null(rf_study_open(path, NULL, &e));
    assert_non_null(strstr(e.msg, path));
    write_text(path, "this is not an sqlite file, just text that is long enough to have a header..........\n");
    assert_null(rf_study_open(path, &d, &e));
    assert_non_null(strstr(e.msg, path));
    assert_non_null(strstr(e.msg, "not a database"));
    rm_study(path);
    rf_sampler_free(smp);
    rf_space_free(sp);
}

/* A study resumed after close draws the same configurations as an uninterrupted one. */
static void test_study_resume_deterministic(void **state) {
    (void)state;
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find("branin");
    rf_space *sp = rf_testfunc_space(tf, &e);
    rf_study_def d = branin_def(sp, 7);
    rf_sampler *smp = rf_sampler_create("tpe", &e);
    char pa[256], pb[256];
    rf_test_tmp(pa, sizeof pa, "det-a.db");
    rf_test_tmp(pb, sizeof pb, "det-b.db");
    rm_study(pa);
    rm_study(pb);
    char ca[20][200], cb[20][200];
    for (int run = 0; run < 2; run++) {
        const char *p = run ? pb : pa;
        rf_study *st = rf_study_open(p, &d, &e);
        for (int i = 0; i < 20; i++) {
            if (run == 1 && i == 12) { /* close and reopen midway */
                rf_study_close(st);
                st = rf_study_open(p, &d, &e);
                assert_non_null(st);
            }
            rf_trial *t;
            assert_int_equal(rf_study_ask(st, smp, &t, &e), RF_OK);
            char *s = rf_config_to_string(sp, &t->cfg);
            snprintf(run ? cb[i] : ca[i], 200, "%s", s);
            free(s);
            double v;
            rf_testfunc_eval(tf, sp, &t->cfg, &v, &e);
            assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &e), RF_OK);
            rf_trial_free(t);
        }
        rf_study_close(st);
    }
    for (int i = 0; i < 20; i++) assert_string_equal(ca[i], cb[i]);
    rm_study(pa);
    rm_study(pb);
    rf_sampler_free(smp);
    rf_space_free(sp);
}

/* A worker killed with SIGKILL while holding a running trial. */
static void test_study_kill9(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "kill9.db");
    rm_study(path);
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find("branin");
    rf_space *sp = rf_testfunc_space(tf, &e);
    rf_study_def d = branin_def(sp, 3);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        rf_err ce = {0};
        rf_study *st = rf_study_open(path, &d, &ce);
        rf_sampler *smp = rf_sampler_create("random", &ce);
        if (!st || !smp) _exit(3);
        for (int i = 0; i < 3; i++) {
            rf_trial *t;
            if (rf_study_ask(st, smp, &t, &ce)) _exit(4);
            double v;
            rf_testfunc_eval(tf, sp, &t->cfg, &v, &ce);
            if (rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &ce)) _exit(5);
            rf_trial_free(t);
        }
        rf_trial *t;
        if (rf_study_ask(st, smp, &t, &ce)) _exit(6);
        rf_study_report(st, t, 1, 123.0, &ce);
        char *s = rf_config_to_string(sp, &t->cfg);
        size_t len = strlen(s) + 1;
        if (write(fds[1], s, len) != (ssize_t)len) _exit(7);
        for (;;) pause(); /* holding the running trial */
    }
    close(fds[1]);
    char cfg[512] = {0};
    ssize_t got = 0, r;
    while ((r = read(fds[0], cfg + got, sizeof cfg - 1 - (size_t)got)) > 0) {
        got += r;
        if (memchr(cfg, '\0', (size_t)got)) break;
    }
    close(fds[0]);
    assert_true(got > 0);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    rf_study *st = rf_study_open(path, &d, &e);
    assert_non_null(st);
    int counts[RF_TRIAL_NSTATUS];
    rf_study_counts(st, counts, &e);
    assert_int_equal(counts[RF_TRIAL_COMPLETE], 3);
    assert_int_equal(counts[RF_TRIAL_RUNNING], 1);
    int n = -1;
    assert_int_equal(rf_study_requeue_stale(st, 1, &n, &e), RF_OK);
    assert_int_equal(n, 1);
    rf_study_counts(st, counts, &e);
    assert_int_equal(counts[RF_TRIAL_COMPLETE], 3);
    assert_int_equal(counts[RF_TRIAL_RUNNING], 0);
    assert_int_equal(counts[RF_TRIAL_FAILED], 1);
    assert_int_equal(counts[RF_TRIAL_QUEUED], 1);
    /* a second pass finds nothing more */
    assert_int_equal(rf_study_requeue_stale(st, 1, &n, &e), RF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(rf_study_refresh(st, &e), RF_OK);
    const rf_trial *dead = rf_study_finished(st, 3);
    assert_int_equal(dead->number, 3);
    assert_int_equal(dead->status, RF_TRIAL_FAILED);
    assert_true(dead->lost);
    assert_non_null(strstr(dead->error, "worker died"));
    assert_int_equal(dead->pid, (long)pid);
    assert_int_equal(dead->last_step, 1);
    for (int i = 0; i < 3; i++) assert_int_equal(rf_study_finished(st, i)->status, RF_TRIAL_COMPLETE);
    /* the next ask re-runs the dead trial's configuration under a new number */
    rf_sampler *smp = rf_sampler_create("tpe", &e);
    rf_trial *t;
    assert_int_equal(rf_study_ask(st, smp, &t, &e), RF_OK);
    assert_int_equal(t->number, 4);
    assert_int_equal(t->requeued_from, 3);
    char *s = rf_config_to_string(sp, &t->cfg);
    assert_string_equal(s, cfg);
    free(s);
    double v;
    rf_testfunc_eval(tf, sp, &t->cfg, &v, &e);
    assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &e), RF_OK);
    rf_trial_free(t);
    /* the budget counts the lost trial once (as its re-run): 4 counted trials */
    assert_int_equal(rf_study_ask_limit(st, smp, 4, &t, &e), RF_OK);
    assert_null(t);
    assert_int_equal(rf_study_ask_limit(st, smp, 5, &t, &e), RF_OK);
    assert_non_null(t);
    assert_int_equal(t->number, 5);
    /* an MPI-style loss: mark a running trial lost by number, without re-queueing */
    assert_int_equal(rf_study_fail_lost(st, 5, "rank 2 died", 0, &e), RF_OK);
    assert_int_equal(rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &e), RF_ESTATE);
    rf_trial_free(t);
    rf_study_counts(st, counts, &e);
    assert_int_equal(counts[RF_TRIAL_QUEUED], 0);
    assert_int_equal(counts[RF_TRIAL_FAILED], 2);
    rf_sampler_free(smp);
    rf_study_close(st);
    rm_study(path);
    rf_space_free(sp);
}

static int quick_obj(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r, rf_err *e) {
    (void)ctx;
    const rf_space *sp = rf_study_space(st);
    usleep(5000); /* let the other worker interleave */
    int rc = rf_testfunc_eval(rf_testfunc_find("branin"), sp, &t->cfg, &r->values[0], e);
    return rc;
}

/* Two processes on one study file (both create-or-open it at once). */
static void test_study_two_processes(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "two.db");
    rm_study(path);
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find("branin");
    rf_space *sp = rf_testfunc_space(tf, &e);
    rf_study_def d = branin_def(sp, 5);
    enum { TOTAL = 40 };
    pid_t kids[2];
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    fflush(NULL);
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            rf_err ce = {0};
            rf_study *st = rf_study_open(path, &d, &ce);
            rf_sampler *smp = rf_sampler_create("tpe", &ce);
            if (!st || !smp) {
                fprintf(stderr, "worker: %s\n", ce.msg);
                _exit(3);
            }
            /* start together: report ready, wait for the go byte */
            char b = 'r';
            if (write(ready[1], &b, 1) != 1 || read(go[0], &b, 1) != 1) _exit(5);
            rf_optimize_opts o;
            rf_optimize_opts_default(&o);
            o.max_total = TOTAL;
            o.progress = 0;
            rf_optimize_result res;
            int rc = rf_study_optimize(st, smp, quick_obj, NULL, &o, &res, &ce);
            if (rc) fprintf(stderr, "worker: %s\n", ce.msg);
            rf_sampler_free(smp);
            rf_study_close(st);
            _exit(rc ? 4 : 0);
        }
    }
    /* a worker that dies before it is ready closes its end: read gives EOF, no hang */
    close(ready[1]);
    close(go[0]);
    char b[2] = {'g', 'g'};
    int nready = 0;
    for (int k = 0; k < 2; k++) nready += read(ready[0], b, 1) == 1;
    void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN); /* both workers may be gone */
    if (write(go[1], "gg", 2) != 2) nready = -1;
    signal(SIGPIPE, old_pipe);
    close(ready[0]);
    close(go[1]);
    for (int k = 0; k < 2; k++) {
        int status;
        waitpid(kids[k], &status, 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(nready, 2);
    rf_study *st = rf_study_open(path, NULL, &e);
    assert_non_null(st);
    assert_int_equal(rf_study_n_finished(st), TOTAL);
    int by[2] = {0, 0};
    for (int i = 0; i < TOTAL; i++) {
        const rf_trial *t = rf_study_finished(st, i);
        assert_int_equal(t->number, i); /* unique, no gaps */
        assert_int_equal(t->status, RF_TRIAL_COMPLETE);
        for (int k = 0; k < 2; k++) by[k] += t->pid == (long)kids[k];
    }
    int counts[RF_TRIAL_NSTATUS];
    rf_study_counts(st, counts, &e);
    assert_int_equal(counts[RF_TRIAL_COMPLETE], TOTAL);
    assert_int_equal(counts[RF_TRIAL_RUNNING] + counts[RF_TRIAL_QUEUED] + counts[RF_TRIAL_FAILED], 0);
    printf("  two workers: %d + %d trials, numbers 0..%d unique\n", by[0], by[1], TOTAL - 1);
    assert_int_equal(by[0] + by[1], TOTAL);
    assert_true(by[0] > 0 && by[1] > 0);
    rf_study_close(st);
    rm_study(path);
    rf_space_free(sp);
}

typedef struct fail_ctx {
    int calls;
} fail_ctx;

static int flaky_obj(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r, rf_err *e) {
    fail_ctx *c = ctx;
    c->calls++;
    if (t->number % 4 == 1) {
        r->status = RF_TRIAL_FAILED;
        snprintf(r->reason, sizeof r->reason, "diverged at epoch 3");
        return RF_OK;
    }
    if (t->number % 4 == 2) {
        r->values[0] = NAN; /* reported as complete but not finite: failed */
        return RF_OK;
    }
    if (t->number % 4 == 3) {
        rf_study_report(st, t, 5, 9.0, e);
        r->status = RF_TRIAL_PRUNED;
        snprintf(r->reason, sizeof r->reason, "pruned at 5");
        return RF_OK;
    }
    return rf_testfunc_eval(rf_testfunc_find("branin"), rf_study_space(st), &t->cfg, &r->values[0], e);
}

static int error_obj(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r, rf_err *e) {
    (void)ctx;
    (void)st;
    (void)r;
    return rf_err_set(e, RF_EIO, "cannot read data for trial %d", t->number);
}

static void test_optimize_loop(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "opt.db");
    rm_study(path);
    rf_err e = {0};
    rf_space *sp = rf_testfunc_space(rf_testfunc_find("branin"), &e);
    rf_study_def d = branin_def(sp, 9);
    rf_study *st = rf_study_open(path, &d, &e);
    rf_sampler *smp = rf_sampler_create("tpe", &e);
    rf_optimize_opts o;
    rf_optimize_opts_default(&o);
    o.n_trials = 12;
    o.progress = 1;
    fail_ctx fc = {0};
    rf_optimize_result res;
    assert_int_equal(rf_study_optimize(st, smp, flaky_obj, &fc, &o, &res, &e), RF_OK);
    assert_int_equal(res.n_run, 12);
    assert_int_equal(fc.calls, 12);
    assert_int_equal(res.n_complete, 3);
    assert_int_equal(res.n_failed, 6);
    assert_int_equal(res.n_pruned, 3);
    assert_true(res.best_number % 4 == 0);
    const rf_trial *t2 = rf_study_finished(st, 2);
    assert_int_equal(t2->status, RF_TRIAL_FAILED);
    assert_non_null(strstr(t2->error, "nan"));
    assert_string_equal(rf_study_finished(st, 1)->error, "diverged at epoch 3");
    /* a hard error stops the loop and fails that trial with the message */
    o.n_trials = 5;
    assert_int_equal(rf_study_optimize(st, smp, error_obj, NULL, &o, &res, &e), RF_EIO);
    assert_non_null(strstr(e.msg, "cannot read data"));
    assert_int_equal(res.n_run, 0);
    rf_study_refresh(st, &e);
    assert_int_equal(rf_study_n_finished(st), 13);
    assert_non_null(strstr(rf_study_finished(st, 12)->error, "cannot read data"));
    /* no limit at all is refused (it would never stop) */
    o.n_trials = 0;
    assert_int_equal(rf_study_optimize(st, smp, flaky_obj, &fc, &o, &res, &e), RF_EARG);
    /* stop flag: stops before asking */
    volatile int stop = 1;
    o.stop_flag = &stop;
    assert_int_equal(rf_study_optimize(st, smp, flaky_obj, &fc, &o, &res, &e), RF_OK);
    assert_int_equal(res.n_run, 0);
    rf_sampler_free(smp);
    rf_study_close(st);
    rm_study(path);
    rf_space_free(sp);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_space_parse),
        cmocka_unit_test(test_space_bad_files),
        cmocka_unit_test(test_space_conditional),
        cmocka_unit_test(test_space_encode_roundtrip),
        cmocka_unit_test(test_random_covers),
        cmocka_unit_test(test_testfuncs_known_optima),
        cmocka_unit_test(test_tpe_branin),
        cmocka_unit_test(test_tpe_hartmann6),
        cmocka_unit_test(test_tpe_conditional),
        cmocka_unit_test(test_tpe_pruned_failed_multiobjective),
        cmocka_unit_test(test_tpe_overhead),
        cmocka_unit_test(test_study_persist),
        cmocka_unit_test(test_study_resume_deterministic),
        cmocka_unit_test(test_study_kill9),
        cmocka_unit_test(test_study_two_processes),
        cmocka_unit_test(test_optimize_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
