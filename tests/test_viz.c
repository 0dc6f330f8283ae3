/* Figures: every plot writes valid PNG, SVG and PDF files; bad extensions, unwritable targets and
 * wrong flow dimensions fail cleanly; tick generation. With RF_VIZ_KEEP=1 the PNGs are also
 * written to /tmp/viz-check/ for a look. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "renflow/viz.h"
#include "../src/viz/draw.h"

/* LeakSanitizer (RF_SANITIZE builds): fontconfig keeps process-lifetime caches (its parsed
 * configuration, the patterns behind cairo's toy font faces) that only FcFini() would free, and
 * a library must not call that. Suppress leaks with a fontconfig frame only; leaks of our own
 * cairo objects are still reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

static const char *FORMATS[3] = {"png", "svg", "pdf"};

static int keep(void) {
    const char *k = getenv("RF_VIZ_KEEP");
    return k && *k && strcmp(k, "0") != 0;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void tmp_name(char *buf, size_t n, const char *path) {
    snprintf(buf, n, "%s.tmp.%ld", path, (long)getpid());
}

/* Checks the file's signature for its format and a non-trivial size; removes it. */
static void check_file(const char *path, const char *fmt) {
    unsigned char *b = NULL;
    size_t len = 0;
    rf_err e;
    if (rf_read_file(path, &b, &len, &e) != RF_OK) fail_msg("%s", e.msg);
    if (strcmp(fmt, "png") == 0) {
        static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        assert_true(len > 8);
        assert_memory_equal(b, sig, 8);
        assert_true(len > 5000);
    } else if (strcmp(fmt, "svg") == 0) {
        assert_non_null(strstr((const char *)b, "<svg"));
        assert_non_null(strstr((const char *)b, "</svg>"));
        assert_true(len > 5000);
    } else {
        assert_true(len > 4);
        assert_memory_equal(b, "%PDF", 4);
        assert_true(len > 2000);
    }
    free(b);
    char tmp[600];
    tmp_name(tmp, sizeof tmp, path);
    assert_false(file_exists(tmp));
    unlink(path);
}

/* /tmp/viz-check/<name>.<ext> */
static void keep_path(char *buf, size_t n, const char *name, const char *ext) {
    mkdir("/tmp/viz-check", 0755);
    snprintf(buf, n, "/tmp/viz-check/%s.%s", name, ext);
}

/* ------------------------------------------------------------------ fixtures */

static void make_curves(double *tr, double *va, int n) {
    for (int i = 0; i < n; i++) {
        double t = (double)i;
        tr[i] = 1.2 + 2.5 * exp(-t / 8.0) - 0.004 * t;
        va[i] = 1.35 + 2.4 * exp(-t / 8.0) + 0.00012 * (t - 20) * (t - 20) * (t > 20);
    }
    tr[7] = NAN; /* non-finite values are skipped */
    va[12] = INFINITY;
}

static rf_flow *make_flow2(int D) {
    rf_flow_spec s;
    rf_flow_spec_default(&s, RF_FLOW_REALNVP, D);
    rf_rng r;
    rf_rng_seed(&r, 1);
    rf_err e;
    rf_flow *f = rf_flow_create(&s, &r, &e);
    if (!f) fail_msg("flow create: %s", e.msg);
    return f;
}

/* n x d: correlated normals in the first two columns, then a skewed, a bimodal and a uniform
 * column, repeating. */
static void make_data(rf_matrix *m, int n, int d, uint64_t seed) {
    rf_err e;
    if (rf_matrix_alloc(m, n, d, &e) != RF_OK) fail_msg("%s", e.msg);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n; i++) {
        double a = rf_rng_normal(&r), b = rf_rng_normal(&r);
        for (int j = 0; j < d; j++) {
            double v;
            switch (j % 5) {
            case 0: v = 1.5 * a; break;
            case 1: v = 0.8 * a + 0.6 * b; break;
            case 2: v = exp(0.6 * rf_rng_normal(&r)); break;
            case 3: v = (rf_rng_uniform(&r) < 0.4 ? -2.0 : 1.5) + 0.5 * rf_rng_normal(&r); break;
            default: v = 10.0 * rf_rng_uniform(&r) - 5.0; break;
            }
            m->x[(size_t)i * d + j] = (float)v;
        }
    }
}

static void make_normal(rf_matrix *m, int n, int d, uint64_t seed) {
    rf_err e;
    if (rf_matrix_alloc(m, n, d, &e) != RF_OK) fail_msg("%s", e.msg);
    rf_rng r;
    rf_rng_seed(&r, seed);
    for (int i = 0; i < n * d; i++) m->x[i] = (float)rf_rng_normal(&r);
}

/* ------------------------------------------------------------------ tests */

static void test_curves_formats(void **state) {
    (void)state;
    enum { N = 60 };
    double tr[N], va[N];
    make_curves(tr, va, N);
    for (int k = 0; k < 3; k++) {
        char tag[32], path[512];
        snprintf(tag, sizeof tag, "curves.%s", FORMATS[k]);
        rf_test_tmp(path, sizeof path, tag);
        rf_err e;
        int rc = rf_plot_curves(path, "Training of a RealNVP flow", tr, va, N,
                                "NLL (nats / example)", &e);
        if (rc != RF_OK) fail_msg("%s", e.msg);
        check_file(path, FORMATS[k]);
    }
    /* no validation curve, a single epoch, no title */
    char path[512];
    rf_test_tmp(path, sizeof path, "curves1.png");
    rf_err e;
    double one = 3.5;
    assert_int_equal(rf_plot_curves(path, NULL, &one, NULL, 1, NULL, &e), RF_OK);
    check_file(path, "png");
    /* nothing finite at all still draws (empty axes) */
    double bad[3] = {NAN, INFINITY, -INFINITY};
    assert_int_equal(rf_plot_curves(path, "empty", bad, bad, 3, NULL, &e), RF_OK);
    check_file(path, "png");
    assert_int_equal(rf_plot_curves(path, NULL, NULL, NULL, 3, NULL, &e), RF_EARG);
    assert_int_equal(rf_plot_curves(path, NULL, tr, NULL, 0, NULL, &e), RF_EARG);
    assert_false(file_exists(path));

    if (keep()) {
        char kp[256];
        for (int k = 0; k < 3; k++) {
            keep_path(kp, sizeof kp, "curves", FORMATS[k]);
            assert_int_equal(rf_plot_curves(kp, "Training of a RealNVP flow", tr, va, N,
                                            "NLL (nats / example)", &e), RF_OK);
        }
        keep_path(kp, sizeof kp, "curves_short", "png");
        assert_int_equal(rf_plot_curves(kp, NULL, va, NULL, 9, NULL, &e), RF_OK);
        double big[30];
        for (int i = 0; i < 30; i++) big[i] = 123456.0 / (i + 1) + 2e4;
        keep_path(kp, sizeof kp, "curves_big", "png");
        assert_int_equal(rf_plot_curves(kp, "Large values", big, tr, 30, "loss", &e), RF_OK);
        keep_path(kp, sizeof kp, "curves_empty", "png");
        assert_int_equal(rf_plot_curves(kp, "empty", bad, bad, 3, NULL, &e), RF_OK);
    }
}

static void test_density2d_formats(void **state) {
    (void)state;
    rf_flow *f = make_flow2(2);
    rf_matrix data, samples;
    make_data(&data, 1500, 2, 7);
    rf_err e;
    if (rf_matrix_alloc(&samples, 1500, 2, &e) != RF_OK) fail_msg("%s", e.msg);
    rf_flow_ws *w = rf_flow_ws_create(f, 1500, 0, &e);
    assert_non_null(w);
    rf_rng r;
    rf_rng_seed(&r, 3);
    rf_flow_sample(f, w, 1500, NULL, &r, samples.x);
    rf_flow_ws_free(w);
    for (int k = 0; k < 3; k++) {
        char tag[32], path[512];
        snprintf(tag, sizeof tag, "dens.%s", FORMATS[k]);
        rf_test_tmp(path, sizeof path, tag);
        int rc = rf_plot_density2d(path, "RealNVP on a correlated Gaussian", f, &data, &samples,
                                   &e);
        if (rc != RF_OK) fail_msg("%s", e.msg);
        check_file(path, FORMATS[k]);
    }
    /* samples are optional */
    char path[512];
    rf_test_tmp(path, sizeof path, "dens-nosamples.png");
    assert_int_equal(rf_plot_density2d(path, NULL, f, &data, NULL, &e), RF_OK);
    check_file(path, "png");
    if (keep()) {
        char kp[256];
        for (int k = 0; k < 3; k++) {
            keep_path(kp, sizeof kp, "density2d", FORMATS[k]);
            assert_int_equal(rf_plot_density2d(kp, "RealNVP on a correlated Gaussian", f, &data,
                                               &samples, &e), RF_OK);
        }
        keep_path(kp, sizeof kp, "density2d_nosamples", "png");
        assert_int_equal(rf_plot_density2d(kp, NULL, f, &data, NULL, &e), RF_OK);
    }
    rf_matrix_free(&data);
    rf_matrix_free(&samples);
    rf_flow_free(f);
}

static void test_marginals_formats(void **state) {
    (void)state;
    rf_matrix data, samples;
    make_data(&data, 2000, 7, 11);
    make_normal(&samples, 1000, 7, 12);
    const char *names[7] = {"Fp1 alpha power", NULL, "C3", "C4", "", "O1", "O2"};
    rf_err e;
    for (int k = 0; k < 3; k++) {
        char tag[32], path[512];
        snprintf(tag, sizeof tag, "marg.%s", FORMATS[k]);
        rf_test_tmp(path, sizeof path, tag);
        int rc = rf_plot_marginals(path, "Marginals: data vs model samples", &data, &samples,
                                   names, 6, &e);
        if (rc != RF_OK) fail_msg("%s", e.msg);
        check_file(path, FORMATS[k]);
    }
    char path[512];
    rf_test_tmp(path, sizeof path, "marg-plain.svg");
    assert_int_equal(rf_plot_marginals(path, NULL, &data, NULL, NULL, 0, &e), RF_OK);
    check_file(path, "svg");
    /* mismatched columns */
    rf_matrix s3;
    make_normal(&s3, 10, 3, 1);
    assert_int_equal(rf_plot_marginals(path, NULL, &data, &s3, NULL, 0, &e), RF_EARG);
    assert_non_null(strstr(e.msg, path));
    assert_false(file_exists(path));
    if (keep()) {
        char kp[256];
        for (int k = 0; k < 3; k++) {
            keep_path(kp, sizeof kp, "marginals", FORMATS[k]);
            assert_int_equal(rf_plot_marginals(kp, "Marginals: data vs model samples", &data,
                                               &samples, names, 6, &e), RF_OK);
        }
        keep_path(kp, sizeof kp, "marginals_all", "png");
        assert_int_equal(rf_plot_marginals(kp, NULL, &data, NULL, NULL, 0, &e), RF_OK);
        keep_path(kp, sizeof kp, "marginals_3", "png");
        assert_int_equal(rf_plot_marginals(kp, "Three dimensions", &data, &samples, NULL, 3, &e),
                         RF_OK);
    }
    rf_matrix_free(&s3);
    rf_matrix_free(&data);
    rf_matrix_free(&samples);
}

static void test_bad_extension(void **state) {
    (void)state;
    const char *bad[] = {"/tmp/rf-viz-figure.jpg", "/tmp/rf-viz-figure", "/tmp/rf.viz.png/figure",
                         "/tmp/rf-viz-figure.png.txt"};
    double tr[3] = {3, 2, 1};
    rf_flow *f = make_flow2(2);
    rf_matrix data;
    make_data(&data, 50, 2, 1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rf_err e;
        rf_err_clear(&e);
        assert_int_equal(rf_plot_curves(bad[i], NULL, tr, tr, 3, NULL, &e), RF_EARG);
        assert_non_null(strstr(e.msg, bad[i]));
        rf_err_clear(&e);
        assert_int_equal(rf_plot_density2d(bad[i], NULL, f, &data, NULL, &e), RF_EARG);
        assert_non_null(strstr(e.msg, bad[i]));
        rf_err_clear(&e);
        assert_int_equal(rf_plot_marginals(bad[i], NULL, &data, NULL, NULL, 0, &e), RF_EARG);
        assert_non_null(strstr(e.msg, bad[i]));
        assert_false(file_exists(bad[i]));
    }
    /* upper-case extensions are fine */
    char path[512];
    rf_test_tmp(path, sizeof path, "upper.PNG");
    rf_err e;
    assert_int_equal(rf_plot_curves(path, NULL, tr, NULL, 3, NULL, &e), RF_OK);
    check_file(path, "png");
    rf_matrix_free(&data);
    rf_flow_free(f);
}

static void test_unwritable_target(void **state) {
    (void)state;
    double tr[4] = {4, 3, 2, 1};
    rf_matrix data;
    make_data(&data, 100, 3, 2);
    rf_err e;
    /* a directory that does not exist */
    char dir[512], path[600], tmp[700];
    rf_test_tmp(dir, sizeof dir, "no-such-dir");
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/fig.%s", dir, FORMATS[k]);
        rf_err_clear(&e);
        assert_int_equal(rf_plot_curves(path, NULL, tr, tr, 4, NULL, &e), RF_EIO);
        assert_non_null(strstr(e.msg, path));
        assert_false(file_exists(dir));
    }
    /* a read-only directory (root may write anyway: then only check the happy outcome) */
    rf_test_tmp(dir, sizeof dir, "ro-dir");
    assert_int_equal(mkdir(dir, 0555), 0);
    snprintf(path, sizeof path, "%s/fig.svg", dir);
    tmp_name(tmp, sizeof tmp, path);
    int rc = rf_plot_marginals(path, NULL, &data, NULL, NULL, 0, &e);
    if (geteuid() != 0) {
        assert_int_equal(rc, RF_EIO);
        assert_false(file_exists(path));
    } else {
        unlink(path);
    }
    assert_false(file_exists(tmp));
    assert_int_equal(rmdir(dir), 0);
    /* the target is a directory: rendering succeeds, the rename fails, the temp file goes */
    rf_test_tmp(dir, sizeof dir, "target-is-dir.pdf");
    assert_int_equal(mkdir(dir, 0755), 0);
    tmp_name(tmp, sizeof tmp, dir);
    for (int k = 0; k < 2; k++) {
        rf_err_clear(&e);
        rc = k == 0 ? rf_plot_curves(dir, "t", tr, NULL, 4, NULL, &e)
                    : rf_plot_marginals(dir, "t", &data, &data, NULL, 2, &e);
        assert_int_equal(rc, RF_EIO);
        assert_non_null(strstr(e.msg, dir));
        assert_false(file_exists(tmp));
        struct stat st;
        assert_int_equal(stat(dir, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
    }
    assert_int_equal(rmdir(dir), 0);
    rf_matrix_free(&data);
}

static void test_density2d_errors(void **state) {
    (void)state;
    rf_flow *f3 = make_flow2(3);
    rf_flow *f2 = make_flow2(2);
    rf_matrix d3, d2, bad;
    make_data(&d3, 40, 3, 1);
    make_data(&d2, 40, 2, 1);
    char path[512];
    rf_test_tmp(path, sizeof path, "dens-err.png");
    rf_err e;
    assert_int_equal(rf_plot_density2d(path, NULL, f3, &d3, NULL, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "D = 3"));
    assert_int_equal(rf_plot_density2d(path, NULL, f2, &d3, NULL, &e), RF_EARG);
    assert_int_equal(rf_plot_density2d(path, NULL, f2, &d2, &d3, &e), RF_EARG);
    assert_int_equal(rf_plot_density2d(path, NULL, NULL, &d2, NULL, &e), RF_EARG);
    assert_int_equal(rf_plot_density2d(path, NULL, f2, NULL, NULL, &e), RF_EARG);
    /* no finite data */
    assert_int_equal(rf_matrix_alloc(&bad, 4, 2, &e), RF_OK);
    for (int i = 0; i < 8; i++) bad.x[i] = NAN;
    assert_int_equal(rf_plot_density2d(path, NULL, f2, &bad, NULL, &e), RF_ENONFINITE);
    assert_false(file_exists(path));
    char tmp[600];
    tmp_name(tmp, sizeof tmp, path);
    assert_false(file_exists(tmp));
    rf_matrix_free(&bad);
    rf_matrix_free(&d3);
    rf_matrix_free(&d2);
    rf_flow_free(f3);
    rf_flow_free(f2);
}

/* Invalid UTF-8 and very long strings must not break a figure (cairo rejects invalid UTF-8). */
static void test_odd_text(void **state) {
    (void)state;
    char path[512], longt[3000];
    rf_test_tmp(path, sizeof path, "odd.svg");
    memset(longt, 'W', sizeof longt - 1);
    longt[sizeof longt - 1] = '\0';
    memcpy(longt + 100, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9); /* valid multi-byte */
    double tr[5] = {5, 4, 3, 2.5, 2.2};
    rf_err e;
    assert_int_equal(rf_plot_curves(path, "bad \xc3\x28 utf8 \xff", tr, tr, 5, "\xe2\x82", &e),
                     RF_OK);
    check_file(path, "svg");
    assert_int_equal(rf_plot_curves(path, longt, tr, NULL, 5, longt, &e), RF_OK);
    check_file(path, "svg");
    rf_matrix data;
    make_data(&data, 300, 3, 4);
    const char *names[3] = {"\xed\xa0\x80 surrogate", longt, "\xc0\xaf overlong"};
    assert_int_equal(rf_plot_marginals(path, longt, &data, &data, names, 0, &e), RF_OK);
    check_file(path, "svg");
    rf_matrix_free(&data);
}

static void test_ticks(void **state) {
    (void)state;
    viz_ticks t;
    char buf[32];
    viz_nice_ticks(0, 1, 5, 0, &t);
    assert_true(t.n >= 4 && t.n <= 7);
    assert_true(fabs(t.v[0]) < 1e-12);
    for (int i = 0; i < t.n; i++) {
        viz_tick_label(t.v[i], t.step, buf, sizeof buf);
        assert_null(strstr(buf, "-0"));
    }
    viz_nice_ticks(-0.3, 0.3, 5, 0, &t);
    for (int i = 0; i < t.n; i++) {
        viz_tick_label(t.v[i], t.step, buf, sizeof buf);
        assert_string_not_equal(buf, "-0.0");
        assert_string_not_equal(buf, "-0.00");
        assert_true(t.v[i] >= -0.3 - 1e-12 && t.v[i] <= 0.3 + 1e-12);
    }
    /* integer ticks for epochs */
    viz_nice_ticks(0.9, 3.1, 8, 1, &t);
    assert_int_equal(t.n, 3);
    assert_true(t.step == 1.0);
    viz_nice_ticks(0.5, 1.5, 5, 1, &t);
    assert_int_equal(t.n, 1);
    assert_true(t.v[0] == 1.0);
    /* labels */
    viz_tick_label(0.25, 0.25, buf, sizeof buf);
    assert_string_equal(buf, "0.25");
    viz_tick_label(2.0, 0.5, buf, sizeof buf);
    assert_string_equal(buf, "2.0");
    viz_tick_label(1500000.0, 500000.0, buf, sizeof buf);
    assert_string_equal(buf, "1.5e6");
    viz_tick_label(2e-5, 1e-5, buf, sizeof buf);
    assert_string_equal(buf, "2e-5");
    viz_tick_label(0, 2e-6, buf, sizeof buf);
    assert_string_equal(buf, "0");
    viz_tick_label(-40, 20, buf, sizeof buf);
    assert_string_equal(buf, "-40");
    /* wide and tiny ranges still give ticks inside the range */
    double ranges[][2] = {{-1e9, 3e9}, {1.0, 1.0 + 1e-7}, {-7.3, -7.1}, {0, 123456}};
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        viz_nice_ticks(ranges[r][0], ranges[r][1], 5, 0, &t);
        assert_true(t.n >= 2 && t.n <= VIZ_MAX_TICKS);
        for (int i = 0; i < t.n; i++) {
            double tol = 1e-9 * (ranges[r][1] - ranges[r][0]);
            assert_true(t.v[i] >= ranges[r][0] - tol && t.v[i] <= ranges[r][1] + tol);
        }
    }
    /* colour map ends */
    viz_rgb lo = viz_cmap(-1), hi = viz_cmap(2);
    assert_true(lo.b > lo.g && hi.r > 0.9 && hi.g > 0.8);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curves_formats),    cmocka_unit_test(test_density2d_formats),
        cmocka_unit_test(test_marginals_formats), cmocka_unit_test(test_bad_extension),
        cmocka_unit_test(test_unwritable_target), cmocka_unit_test(test_density2d_errors),
        cmocka_unit_test(test_odd_text),          cmocka_unit_test(test_ticks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
