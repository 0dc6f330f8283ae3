/* Certificate labels and the comparison page (src/cert/label*.c, compare.c).
 *
 * Certificates are built here as JSON in the layout rf_certify writes (and rated by the real
 * rf_cert_rate): a passing classifier with measured (RAPL) energy, a model failing a guarantee,
 * and one with most fields missing and estimated energy. Each is rendered to SVG, PDF and PNG;
 * the PNG is decoded with cairo (size, not blank, red pixels of a failure), the SVG's words
 * (<title>/<desc>, a transcript of every text drawn) are checked. The comparison page: table,
 * best values, Pareto front, different-data warning, labels and plot files. Bad input: errors
 * name the file. One certificate comes from rf_certify on a small flow (end to end).
 *
 * `test_cert_label --demo DIR` writes demonstration certificates, labels and a comparison page
 * to DIR and exits (used by tests/cli_cert_view.sh to look at them in headless Chromium). With
 * RF_CERT_KEEP=DIR the tests also leave their PNG labels there. */
#include "testutil.h"

#include <cairo.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../src/cert/label_internal.h"
#include "renflow/cert.h"
#include "renflow/cert_label.h"

/* LeakSanitizer: fontconfig's process-lifetime caches (behind cairo's fonts) are not our leaks. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

#define SHA_A "3fa2c1d94e7b05a1c2d3e4f5061728394a5b6c7d8e9f00112233445566778899"
#define SHA_B "aa00bb11cc22dd33ee44ff5566778899aabbccddeeff00112233445566778899"

/* ------------------------------------------------------------------ certificate builder */

typedef struct cspec {
    const char *model;      /* model file name */
    const char *sha;        /* test data SHA-256 */
    int D;
    int classifier;         /* class-conditional with labels: accuracy, F1, kappa, ECE */
    int fail;               /* the bi-Lipschitz guarantee fails */
    int estimated;          /* energy estimated from CPU time (else RAPL) */
    double nll;             /* model test NLL (nats) */
    double energy;          /* J per example */
    double speed;           /* > 1: faster than the Gaussian reference by this factor */
} cspec;

static cJSON *metric(cJSON *metrics, const char *key, double v, const char *unit, const char *better) {
    cJSON *m = cJSON_CreateObject();
    if (isfinite(v)) cJSON_AddNumberToObject(m, "value", v);
    else cJSON_AddNullToObject(m, "value");
    cJSON_AddStringToObject(m, "unit", unit);
    cJSON_AddStringToObject(m, "better", better);
    cJSON_AddStringToObject(m, "method", "built by the test");
    cJSON_AddItemToObject(metrics, key, m);
    return m;
}

/* The measured metrics of one subject (the model or a reference); q scales the quality, c the
 * cost (larger = worse). */
static cJSON *subject_metrics(const cspec *s, double nll, double q, double c, double energy) {
    cJSON *m = cJSON_CreateObject();
    const int D = s->D;
    metric(m, "nll", nll, "nats per example", "lower");
    metric(m, "bits_per_dim", nll / (D * log(2)), "bits per dimension", "lower");
    metric(m, "perplexity_per_dim", exp(nll / D), "ratio (dimensionless)", "lower");
    cJSON *h = metric(m, "hdr_calibration_error", 0.012 * q, "fraction", "lower");
    const double lv[5] = {0.5, 0.8, 0.9, 0.95, 0.99}, cv[5] = {0.51, 0.79, 0.91, 0.95, 0.985};
    cJSON_AddItemToObject(h, "levels", cJSON_CreateDoubleArray(lv, 5));
    cJSON_AddItemToObject(h, "coverage", cJSON_CreateDoubleArray(cv, 5));
    if (s->classifier) {
        metric(m, "accuracy", 1 - 0.12 * q, "fraction", "higher");
        metric(m, "balanced_accuracy", 1 - 0.13 * q, "fraction", "higher");
        metric(m, "macro_f1", 1 - 0.14 * q, "fraction", "higher");
        metric(m, "kappa", 1 - 0.3 * q, "dimensionless", "higher");
        metric(m, "ece", 0.03 * q, "fraction", "lower");
    }
    metric(m, "n_params", 12544 * c, "parameters", "lower");
    metric(m, "flops_log_density", 51000 * c, "FLOP per example", "lower");
    metric(m, "flops_sample", 50200 * c, "FLOP per sample", "lower");
    metric(m, "train_seconds", 83.5 * c, "s", "lower");
    cJSON *l = metric(m, "latency_sample", 4.2e-5 * c, "s", "lower");
    cJSON_AddNumberToObject(l, "p99", 6.1e-5 * c);
    l = metric(m, "latency_batch", 1.9e-3 * c, "s per batch", "lower");
    cJSON_AddNumberToObject(l, "p99", 2.6e-3 * c);
    cJSON_AddNumberToObject(l, "batch", 256);
    l = metric(m, "sampling_rate", 1.3e5 / c, "samples/s", "higher");
    cJSON_AddNumberToObject(l, "batch", 256);
    l = metric(m, "peak_memory", 2.4e6 * c, "bytes", "lower");
    cJSON_AddNumberToObject(l, "parameter_bytes", 5.1e4 * c);
    for (int k = 0; k < 2; k++) {
        l = metric(m, k ? "energy_sample" : "energy_log_density", energy * (k ? 1.3 : 1), "J per example", "lower");
        cJSON_AddStringToObject(l, "energy_method", s->estimated ? "estimated-cpu-time" : "rapl-powercap");
        cJSON_AddBoolToObject(l, "estimated", s->estimated);
    }
    return m;
}

static void add_check(cJSON *checks, const char *id, const char *name, double v, double thr, int pass) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddNumberToObject(c, "value", v);
    cJSON_AddStringToObject(c, "unit", "input units");
    cJSON_AddNumberToObject(c, "threshold", thr);
    cJSON_AddStringToObject(c, "comparison", "<=");
    cJSON_AddStringToObject(c, "status", pass ? "pass" : "fail");
    cJSON_AddBoolToObject(c, "pass", pass);
    cJSON_AddItemToArray(checks, c);
}

static cJSON *make_cert(const cspec *s) {
    cJSON *cert = cJSON_CreateObject();
    cJSON_AddStringToObject(cert, "schema", RF_CERT_SCHEMA_ID);
    cJSON_AddStringToObject(cert, "created", "2025-11-23T15:40:02Z");
    cJSON *model = cJSON_AddObjectToObject(cert, "model");
    cJSON_AddStringToObject(model, "kind", "normalizing flow (renflow)");
    cJSON_AddStringToObject(model, "name", s->model);
    cJSON_AddStringToObject(model, "flow", "realnvp");
    cJSON_AddNumberToObject(model, "dim", s->D);
    cJSON_AddBoolToObject(model, "class_conditional", s->classifier);
    cJSON_AddNumberToObject(model, "n_classes", s->classifier ? 2 : 0);
    cJSON_AddNumberToObject(model, "n_layers", 9);
    cJSON_AddStringToObject(model, "seed", "7");
    cJSON *test = cJSON_AddObjectToObject(cJSON_AddObjectToObject(cert, "data"), "test");
    cJSON *file = cJSON_AddObjectToObject(test, "file");
    cJSON_AddStringToObject(file, "path", "/data/eeg_eye_state/test.npy");
    cJSON_AddStringToObject(file, "kind", "file");
    cJSON_AddStringToObject(file, "sha256", s->sha);
    cJSON_AddNumberToObject(test, "rows", 2996);
    cJSON_AddNumberToObject(test, "dim", s->D);
    cJSON_AddBoolToObject(test, "labels_used", s->classifier);
    cJSON_AddItemToObject(cert, "metrics", subject_metrics(s, s->nll, 0.8, 1.0 / s->speed, s->energy));
    cJSON *en = cJSON_AddObjectToObject(cert, "energy");
    cJSON_AddStringToObject(en, "method", s->estimated ? "estimated-cpu-time" : "rapl-powercap");
    cJSON_AddBoolToObject(en, "measured", !s->estimated);
    cJSON_AddNumberToObject(en, "watts_per_core", 10);
    cJSON_AddStringToObject(en, "scope", s->estimated ? "this process's CPU time only" : "whole CPU package(s)");
    /* guarantees */
    cJSON *g = cJSON_AddObjectToObject(cert, "guarantees");
    cJSON *checks = cJSON_AddArrayToObject(g, "checks");
    add_check(checks, "invertibility_test", "invertibility on the test rows", 3.1e-7, 4.2e-3, 1);
    add_check(checks, "invertibility_samples", "invertibility on model samples", 5.5e-7, 6.0e-3, 1);
    add_check(checks, "invertibility_box", "invertibility on uniform points of the input range", 8.0e-7, 4.2e-3, 1);
    add_check(checks, "finite_log_density", "finite log-density on every test row", 0, 0, 1);
    add_check(checks, "logdet_agreement", "log-determinant agrees with a numerical Jacobian", 2.3e-5, 0.014, 1);
    add_check(checks, "lipschitz_condition", "bi-Lipschitz: L(f) x L(f^-1) bounded", s->fail ? 3.4e7 : 41.5, 1e5,
              !s->fail);
    cJSON *inv = cJSON_AddObjectToObject(g, "invertibility");
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(inv, "test"), "mean_abs_error", 2.0e-8);
    cJSON *lip = cJSON_AddObjectToObject(g, "lipschitz");
    cJSON_AddNumberToObject(lip, "forward", s->fail ? 5.8e3 : 4.6);
    cJSON_AddNumberToObject(lip, "inverse", s->fail ? 5.9e3 : 9.02);
    cJSON *rg = cJSON_AddObjectToObject(g, "input_range");
    cJSON_AddNumberToObject(rg, "min_over_dims", -3.9);
    cJSON_AddNumberToObject(rg, "max_over_dims", 4.2);
    cJSON *pt = cJSON_AddObjectToObject(g, "points");
    cJSON_AddNumberToObject(pt, "test_rows", 2996);
    cJSON_AddNumberToObject(pt, "model_samples", 2000);
    cJSON_AddNumberToObject(pt, "box_uniform", 4);
    cJSON_AddBoolToObject(g, "pass", !s->fail);
    cJSON_AddBoolToObject(g, "complete", 1);
    /* references: a Gaussian (the rating reference), a mixture, a KDE */
    cJSON *refs = cJSON_AddArrayToObject(cert, "references");
    static const char *const K[3] = {"gaussian", "gmm", "kde"};
    const double rq[3] = {1.0, 0.9, 1.1}, rc[3] = {1.0, 3.0, 40.0}, rn[3] = {s->nll + 2.5, s->nll + 1.0, s->nll + 1.8};
    for (int k = 0; k < 3; k++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddStringToObject(r, "name", K[k]);
        cJSON_AddItemToObject(r, "metrics", subject_metrics(s, rn[k], rq[k], rc[k], 2e-6 * rc[k]));
        cJSON_AddItemToArray(refs, r);
    }
    cJSON *prov = cJSON_AddObjectToObject(cert, "provenance");
    cJSON *env = cJSON_AddObjectToObject(prov, "environment");
    cJSON_AddStringToObject(env, "library", "renflow");
    cJSON_AddStringToObject(env, "version", RF_VERSION_STRING);
    cJSON_AddStringToObject(env, "compiler", "gcc 12.2.0");
    cJSON_AddStringToObject(env, "cpu_model", "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz");
    cJSON_AddNumberToObject(env, "logical_cpus", 2);
    cJSON_AddNumberToObject(env, "threads", 2);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(prov, "model_file"), "sha256", SHA_B);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(prov, "settings"), "seed", "1");
    rf_err e;
    assert_int_equal(rf_cert_rate(cert, "gaussian", &e), RF_OK);
    return cert;
}

static const cspec PASSING = {"eyestate-realnvp.rf", SHA_A, 14, 1, 0, 0, 11.2, 3.0e-6, 2.5};
static const cspec FAILING = {"broken-flow.rf", SHA_A, 14, 0, 1, 1, 10.9, 8.0e-6, 0.7};

/* Most fields missing, energy estimated, no ratings, no guarantees. */
static cJSON *make_sparse(void) {
    cJSON *c = cJSON_Parse("{\"schema\": \"renflow-certificate/1\", \"model\": {\"name\": \"sparse.rf\"},"
                           " \"metrics\": {\"nll\": {\"value\": 3.25, \"unit\": \"nats per example\"},"
                           "   \"n_params\": {\"value\": null}, \"latency_sample\": \"garbage\","
                           "   \"energy_log_density\": {\"value\": 4.5e-6, \"estimated\": true,"
                           "                           \"energy_method\": \"estimated-cpu-time\"}},"
                           " \"energy\": {\"method\": \"estimated-cpu-time\", \"measured\": false, \"watts_per_core\": 12.5},"
                           " \"guarantees\": {\"checks\": 17}, \"rating\": [1, 2]}");
    assert_non_null(c);
    return c;
}

/* ------------------------------------------------------------------ file checks */

static char *slurp(const char *path, size_t *len) {
    unsigned char *b = NULL;
    size_t n = 0;
    rf_err e;
    if (rf_read_file(path, &b, &n, &e) != RF_OK) fail_msg("%s", e.msg);
    if (len) *len = n;
    return (char *)b;
}

typedef struct png_stats {
    int w, h;
    double nonwhite; /* fraction of pixels not near white */
    long red;        /* strongly red pixels */
    long colours;    /* distinct colours among a coarse 4-bit quantisation */
} png_stats;

static void png_check(const char *path, png_stats *st) {
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    assert_int_equal(cairo_surface_status(s), CAIRO_STATUS_SUCCESS);
    cairo_surface_flush(s);
    st->w = cairo_image_surface_get_width(s);
    st->h = cairo_image_surface_get_height(s);
    const int stride = cairo_image_surface_get_stride(s);
    const unsigned char *d = cairo_image_surface_get_data(s);
    const cairo_format_t f = cairo_image_surface_get_format(s);
    assert_true(f == CAIRO_FORMAT_ARGB32 || f == CAIRO_FORMAT_RGB24);
    long nw = 0, red = 0;
    static unsigned char seen[4096];
    memset(seen, 0, sizeof seen);
    long colours = 0;
    for (int y = 0; y < st->h; y++) {
        const uint32_t *row = (const uint32_t *)(d + (size_t)y * stride);
        for (int x = 0; x < st->w; x++) {
            const uint32_t p = row[x];
            const int r = (p >> 16) & 255, g = (p >> 8) & 255, b = p & 255;
            if (r < 235 || g < 235 || b < 235) nw++;
            if (r > 170 && g < 70 && b < 70) red++;
            const int q = (r >> 4) << 8 | (g >> 4) << 4 | (b >> 4);
            if (!seen[q]) {
                seen[q] = 1;
                colours++;
            }
        }
    }
    st->nonwhite = (double)nw / ((double)st->w * st->h);
    st->red = red;
    st->colours = colours;
    cairo_surface_destroy(s);
}

static int no_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *ent;
    int ok = 1;
    while ((ent = readdir(d)))
        if (strstr(ent->d_name, ".tmp.")) ok = 0;
    closedir(d);
    return ok;
}

static void rm_rf(const char *dir) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void keep_copy(const char *path, const char *name) {
    const char *k = getenv("RF_CERT_KEEP");
    if (!k || !*k) return;
    mkdir(k, 0755);
    size_t n;
    char *b = slurp(path, &n);
    char dst[600];
    snprintf(dst, sizeof dst, "%s/%s", k, name);
    rf_err e;
    assert_int_equal(rf_write_file_atomic(dst, b, n, &e), RF_OK);
    free(b);
}

/* Renders cert into dir/label.{svg,pdf,png} through the rf_cert_write hook; returns the SVG text
 * and fills the PNG statistics. */
static char *render(const cJSON *cert, const char *tag, png_stats *st) {
    char dir[256], path[400];
    rf_test_tmp(dir, sizeof dir, tag);
    rf_err e;
    if (rf_cert_write(cert, dir, rf_cert_label_render, NULL, &e) != RF_OK) fail_msg("%s", e.msg);
    size_t n;
    snprintf(path, sizeof path, "%s/label.pdf", dir);
    char *pdf = slurp(path, &n);
    assert_true(n > 5000);
    assert_memory_equal(pdf, "%PDF", 4);
    free(pdf);
    snprintf(path, sizeof path, "%s/label.png", dir);
    png_check(path, st);
    char kn[128];
    snprintf(kn, sizeof kn, "%s.png", tag);
    keep_copy(path, kn);
    snprintf(path, sizeof path, "%s/label.svg", dir);
    char *svg = slurp(path, &n);
    assert_true(n > 20000);
    assert_non_null(strstr(svg, "<svg"));
    assert_non_null(strstr(svg, "</svg>"));
    snprintf(path, sizeof path, "%s/certificate.json", dir);
    char *js = slurp(path, &n);
    free(js);
    assert_true(no_temp_files(dir));
    rm_rf(dir);
    return svg;
}

static void assert_has(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("expected to find \"%s\"", needle);
}

/* ------------------------------------------------------------------ tests */

static void test_formatting(void **state) {
    (void)state;
    char b[64];
    lbl_fmt_sig(3.14159e-7, 2, b, sizeof b);
    assert_string_equal(b, "3.1 \xc3\x97 10\xe2\x81\xbb\xe2\x81\xb7");
    lbl_fmt_sig(12.3456, 4, b, sizeof b);
    assert_string_equal(b, "12.35");
    lbl_fmt_sig(9.9996, 3, b, sizeof b);
    assert_string_equal(b, "10");
    lbl_fmt_sig(-0.25, 3, b, sizeof b);
    assert_string_equal(b, "-0.25");
    lbl_fmt_sig(NAN, 3, b, sizeof b);
    assert_string_equal(b, "not a number");
    lbl_fmt_count(12345, b, sizeof b);
    assert_string_equal(b, "12,345");
    lbl_fmt_count(2.5e6, b, sizeof b);
    assert_string_equal(b, "2.5 million");
    lbl_fmt_seconds(4.52e-5, b, sizeof b);
    assert_string_equal(b, "45.2 \xc2\xb5s");
    lbl_fmt_seconds(125, b, sizeof b);
    assert_string_equal(b, "2 min 5 s");
    lbl_fmt_bytes(2.4e6, b, sizeof b);
    assert_string_equal(b, "2.4 MB");
    lbl_fmt_si(51000, "FLOP", b, sizeof b);
    assert_string_equal(b, "51 kFLOP");
    lbl_fmt_si(999.7, "J", b, sizeof b);
    assert_string_equal(b, "1 kJ");
    lbl_fmt_si(3e-3, "J", b, sizeof b);
    assert_string_equal(b, "3 mJ");
}

static void test_label_passing(void **state) {
    (void)state;
    cJSON *cert = make_cert(&PASSING);
    const char L = lbl_letter(cert, "rating.model.compound_rating");
    assert_true(L >= 'A' && L <= 'D'); /* better than the reference in this build */
    png_stats st;
    char *svg = render(cert, "pass", &st);
    /* PNG: 595 pt at 2 px/pt, a tall page, plenty of ink and colour */
    assert_int_equal(st.w, 1190);
    assert_true(st.h > 1600 && st.h < 3200);
    assert_true(st.nonwhite > 0.15);
    assert_true(st.colours > 40);
    char title[160];
    snprintf(title, sizeof title, "overall rating %c</title>", L);
    assert_has(svg, title);
    assert_has(svg, "eyestate-realnvp.rf");
    assert_has(svg, "Test data: test.npy");
    assert_has(svg, "3fa2c1d94e7b05a1");              /* data SHA-256 prefix */
    assert_has(svg, "2025-11-23 15:40 UTC");
    assert_has(svg, "ALL PASSED");
    assert_has(svg, "measured (RAPL");
    assert_has(svg, "Classification accuracy");
    assert_has(svg, "90.4 %");                         /* 1 - 0.12 x 0.8 */
    assert_has(svg, "reference (Gaussian)");
    assert_has(svg, "a full-covariance Gaussian fitted on the same training data");
    assert_has(svg, "index \xe2\x89\xa5 1.25");        /* the scale */
    assert_has(svg, "Intel(R) Xeon(R) Platinum 8481C"); /* provenance */
    assert_has(svg, "Random seed: 1");
    assert_null(strstr(svg, "FAILED"));
    assert_null(strstr(svg, "ESTIMATED"));
    assert_null(strstr(svg, "CAPPED"));
    free(svg);
    cJSON_Delete(cert);
}

static void test_label_failing(void **state) {
    (void)state;
    cJSON *pass = make_cert(&PASSING), *fail = make_cert(&FAILING);
    assert_int_equal(lbl_letter(fail, "rating.model.compound_rating"), 'E');
    png_stats sp, sf;
    char *svp = render(pass, "pass2", &sp);
    char *svf = render(fail, "fail", &sf);
    assert_has(svf, "overall rating E</title>");
    assert_has(svf, "NUMERICAL GUARANTEES: 1 FAILED");
    assert_has(svf, "Stable in both directions (bi-Lipschitz)");
    assert_has(svf, "FAILED");
    assert_has(svf, "CAPPED AT E");
    assert_has(svf, "product 3.4 \xc3\x97 10\xe2\x81\xb7 (limit 100,000)");
    assert_has(svf, "ESTIMATED (CPU time \xc3\x97 10 W per core)");
    /* the failure is unmistakable: far more strong red than on the passing label */
    print_message("red pixels: passing %ld, failing %ld\n", sp.red, sf.red);
    assert_true(sf.red > 2 * sp.red + 20000);
    free(svp);
    free(svf);
    cJSON_Delete(pass);
    cJSON_Delete(fail);
}

/* A check that could not be decided (the finite-difference interval of the log-det too wide at
 * some points) is neither a pass nor a failure: the label and the comparison page say "not
 * verified" and give the point counts, never "all passed". */
static void test_label_unverified(void **state) {
    (void)state;
    cJSON *cert = make_cert(&PASSING);
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(cert, "guarantees"), "checks")) {
        const cJSON *id = cJSON_GetObjectItem(c, "id");
        if (strcmp(id->valuestring, "logdet_agreement")) continue;
        cJSON_ReplaceItemInObject(c, "pass", cJSON_CreateNull());
        cJSON_ReplaceItemInObject(c, "status", cJSON_CreateString("not_verified"));
    }
    cJSON *g = cJSON_GetObjectItem(cert, "guarantees");
    cJSON *lj = cJSON_AddObjectToObject(g, "log_determinant");
    cJSON_AddNumberToObject(lj, "points_pass", 5);
    cJSON_AddNumberToObject(lj, "points_fail", 0);
    cJSON_AddNumberToObject(lj, "points_not_verified", 3);
    cJSON_ReplaceItemInObject(g, "complete", cJSON_CreateFalse());
    int nf = -1, nu = -1;
    assert_int_equal(lbl_guarantees_verdict(cert, &nf, &nu), 2);
    assert_int_equal(nf, 0);
    assert_int_equal(nu, 1);
    png_stats st;
    char *svg = render(cert, "unverified", &st);
    assert_has(svg, "NUMERICAL GUARANTEES: NONE FAILED, 1 NOT VERIFIED");
    assert_has(svg, "too wide to decide at 3 of 8 points (5 pass, 0 fail");
    assert_has(svg, "NOT CHECKED"); /* the row's own mark */
    assert_null(strstr(svg, "ALL PASSED"));
    assert_null(strstr(svg, "too many dimensions"));
    free(svg);
    /* the comparison page: the pass of the other model, this one's "not verified" */
    cJSON *pass = make_cert(&PASSING);
    char dir[256], path[400];
    rf_test_tmp(dir, sizeof dir, "unverified-cmp");
    const cJSON *cs[2] = {pass, cert};
    const char *nm[2] = {"ok.json", "open.json"};
    rf_err e = {0};
    assert_int_equal(rf_cert_compare_write(cs, nm, 2, dir, &e), RF_OK);
    snprintf(path, sizeof path, "%s/index.html", dir);
    size_t n;
    char *html = slurp(path, &n);
    assert_has(html, "&#10004; all passed");
    assert_has(html, "none failed, 1 not verified");
    free(html);
    cJSON_Delete(pass);
    cJSON_Delete(cert);
}

static void test_label_sparse(void **state) {
    (void)state;
    cJSON *c = make_sparse();
    png_stats st;
    char *svg = render(c, "sparse", &st);
    assert_int_equal(st.w, 1190);
    assert_true(st.nonwhite > 0.08);
    assert_has(svg, "sparse.rf");
    assert_has(svg, "not rated</title>");
    assert_has(svg, "not measured");
    assert_has(svg, "3.25 nats");
    assert_has(svg, "4.5 mJ");                           /* 4.5e-6 J x 1000 */
    assert_has(svg, "ESTIMATED (CPU time \xc3\x97 12.5 W per core)");
    assert_has(svg, "NOT CHECKED");
    assert_has(svg, "fingerprint of the data: not recorded");
    free(svg);
    cJSON_Delete(c);
    /* names with markup and invalid UTF-8: the SVG stays well-formed XML in UTF-8 */
    c = cJSON_Parse("{\"schema\": \"renflow-certificate/1\"}");
    cJSON *mo = cJSON_AddObjectToObject(c, "model");
    cJSON_AddStringToObject(mo, "name", "a<b>&\"c\xff\xfe\xc3\xa9.rf");
    svg = render(c, "odd", &st);
    assert_has(svg, "a&lt;b&gt;&amp;&quot;c??\xc3\xa9.rf");
    assert_null(strchr(svg, '\xff'));
    assert_null(strstr(svg, "<b>"));
    free(svg);
    cJSON_Delete(c);
    /* the smallest certificate: just the schema */
    c = cJSON_Parse("{\"schema\": \"renflow-certificate/1\"}");
    svg = render(c, "empty", &st);
    assert_has(svg, "unnamed model");
    free(svg);
    cJSON_Delete(c);
}

static void test_bad_input(void **state) {
    (void)state;
    char path[256], dir[256];
    rf_test_tmp(path, sizeof path, "bad.svg");
    rf_err e;
    cJSON *c = cJSON_Parse("{\"schema\": \"someone-else/2\"}");
    assert_int_equal(rf_cert_label_write(c, path, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "someone-else/2"));
    assert_non_null(strstr(e.msg, path));
    cJSON_Delete(c);
    c = cJSON_Parse("[1, 2]");
    assert_int_equal(rf_cert_label_write(c, path, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "not a renflow certificate"));
    cJSON_Delete(c);
    c = cJSON_Parse("{\"model\": {}}");
    assert_int_equal(rf_cert_label_write(c, path, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "\"schema\" is missing"));
    cJSON_Delete(c);
    assert_int_equal(rf_cert_label_write(NULL, path, &e), RF_EFORMAT);
    assert_int_equal(access(path, F_OK), -1);
    /* extension and unwritable target */
    c = make_sparse();
    rf_test_tmp(path, sizeof path, "label.jpg");
    assert_int_equal(rf_cert_label_write(c, path, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "label.jpg"));
    assert_int_not_equal(rf_cert_label_write(c, "/nonexistent-dir/x/label.png", &e), RF_OK);
    assert_non_null(strstr(e.msg, "/nonexistent-dir/x/label.png"));
    /* rf_cert_read: missing, not JSON, wrong schema */
    rf_test_tmp(path, sizeof path, "nocert.json");
    assert_null(rf_cert_read(path, &e));
    assert_non_null(strstr(e.msg, "nocert.json"));
    assert_int_equal(rf_write_file_atomic(path, "{\"schema\": ", 11, &e), RF_OK);
    assert_null(rf_cert_read(path, &e));
    assert_int_equal(e.code, RF_EFORMAT);
    assert_non_null(strstr(e.msg, "nocert.json"));
    assert_non_null(strstr(e.msg, "not valid JSON"));
    assert_int_equal(rf_write_file_atomic(path, "{\"schema\": \"x/1\"}", 17, &e), RF_OK);
    assert_null(rf_cert_read(path, &e));
    assert_non_null(strstr(e.msg, "nocert.json"));
    /* the comparison: the bad file is named, nothing is written */
    rf_test_tmp(dir, sizeof dir, "cmp-bad");
    char good[256];
    rf_test_tmp(good, sizeof good, "good.json");
    char *s = cJSON_Print(c);
    assert_int_equal(rf_write_file_atomic(good, s, strlen(s), &e), RF_OK);
    free(s);
    const char *paths[2] = {good, path};
    assert_int_equal(rf_cert_compare_files(paths, 2, dir, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "nocert.json"));
    assert_int_equal(access(dir, F_OK), -1);
    const cJSON *cs[2] = {c, NULL};
    const char *nm[2] = {"a.json", "b.json"};
    assert_int_equal(rf_cert_compare_write(cs, nm, 2, dir, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "b.json"));
    assert_int_equal(rf_cert_compare_write(cs, nm, 0, dir, &e), RF_EARG);
    assert_int_equal(access(dir, F_OK), -1);
    unlink(path);
    unlink(good);
    cJSON_Delete(c);
}

/* The comparison page: four certificates, one of them on other data and one dominated. */
static int write_compare(const char *dir, int with_other_data) {
    cspec a = PASSING, b = PASSING, f = FAILING, o = PASSING;
    a.model = "flow-a.rf";
    b.model = "flow-b.rf"; /* dominated by flow-a: worse NLL, more energy */
    b.nll = 12.5;
    b.energy = 5.0e-6;
    b.speed = 1.2;
    f.model = "flow-c.rf"; /* lowest NLL, most energy: on the front */
    o.model = "other.rf";
    o.sha = SHA_B;
    cJSON *c[4] = {make_cert(&a), make_cert(&b), make_cert(&f), make_cert(&o)};
    const char *names[4] = {"runs/flow-a/certificate.json", "b.json", "/x/flow-c.json", "other.json"};
    rf_err e;
    const int n = with_other_data ? 4 : 3;
    int rc = rf_cert_compare_write((const cJSON *const *)c, names, n, dir, &e);
    if (rc) print_error("%s\n", e.msg);
    for (int k = 0; k < 4; k++) cJSON_Delete(c[k]);
    return rc;
}

static void test_compare(void **state) {
    (void)state;
    char dir[256], path[400];
    rf_test_tmp(dir, sizeof dir, "cmp");
    assert_int_equal(write_compare(dir, 1), RF_OK);
    snprintf(path, sizeof path, "%s/index.html", dir);
    size_t n;
    char *html = slurp(path, &n);
    assert_has(html, "<!DOCTYPE html>");
    assert_has(html, "<style>");
    assert_has(html, "different test data");       /* other.json is on SHA_B */
    assert_has(html, "<th>flow-a</th>");             /* DIR/certificate.json -> DIR */
    assert_has(html, "<th>b</th>");
    assert_has(html, "<th>flow-c</th>");
    assert_has(html, "<th>other</th>");
    assert_has(html, "src=\"pareto.svg\"");
    assert_has(html, "1 FAILED");
    assert_has(html, "class=\"best\"");
    /* best values are compared within one test data set: flow-a's 5,018 parameters beat b and
     * flow-c; other.json has the same count but is alone on its data, so it is not marked */
    int nbest = 0;
    for (const char *q = html; (q = strstr(q, "<td class=\"best\">5,018")); q++) nbest++;
    assert_int_equal(nbest, 1);
    assert_non_null(strstr(html, "<td>5,018"));
    assert_has(html, "(estimated)");
    /* the front of the first data set: flow-a and flow-c, not flow-b */
    const char *nd = strstr(html, "Non-dominated: ");
    assert_non_null(nd);
    char front[600];
    snprintf(front, sizeof front, "%.*s", (int)(strchr(nd, '\n') - nd), nd);
    print_message("%s\n", front);
    assert_non_null(strstr(front, "<b>flow-a</b>"));
    assert_non_null(strstr(front, "<b>flow-c</b>"));
    assert_null(strstr(front, "<b>b</b>"));
    /* the labels next to the page */
    const char *q = html;
    int labels = 0;
    while ((q = strstr(q, "<img src=\"labels/"))) {
        char lp[400];
        const char *s = q + 10, *end = strchr(s, '"');
        snprintf(lp, sizeof lp, "%s/%.*s", dir, (int)(end - s), s);
        size_t ln;
        char *l = slurp(lp, &ln);
        assert_non_null(strstr(l, "</svg>"));
        free(l);
        labels++;
        q = end;
    }
    assert_int_equal(labels, 4);
    free(html);
    snprintf(path, sizeof path, "%s/pareto.svg", dir);
    char *svg = slurp(path, &n);
    assert_non_null(strstr(svg, "</svg>"));
    free(svg);
    snprintf(path, sizeof path, "%s/pareto.png", dir);
    png_stats st;
    png_check(path, &st);
    assert_int_equal(st.w, 1520);
    assert_int_equal(st.h, 1000);
    assert_true(st.nonwhite > 0.02);
    assert_true(st.colours > 10);
    keep_copy(path, "pareto.png");
    assert_true(no_temp_files(dir));
    rm_rf(dir);
    /* one certificate without measurements, no names: a page, the plot says why it is empty */
    {
        cJSON *c1 = cJSON_Parse("{\"schema\": \"renflow-certificate/1\"}");
        const cJSON *cs[1] = {c1};
        rf_err e;
        assert_int_equal(rf_cert_compare_write(cs, NULL, 1, dir, &e), RF_OK);
        snprintf(path, sizeof path, "%s/index.html", dir);
        html = slurp(path, &n);
        assert_has(html, "<th>certificate 1</th>");
        assert_has(html, "Not in the plot (no test NLL or no energy): certificate 1");
        assert_has(html, "not measured");
        free(html);
        snprintf(path, sizeof path, "%s/pareto.png", dir);
        png_check(path, &st);
        assert_true(st.nonwhite > 0.01);
        cJSON_Delete(c1);
        rm_rf(dir);
    }
    /* one data set: no warning */
    assert_int_equal(write_compare(dir, 0), RF_OK);
    snprintf(path, sizeof path, "%s/index.html", dir);
    html = slurp(path, &n);
    assert_null(strstr(html, "different test data"));
    free(html);
    rm_rf(dir);
}

/* End to end: rf_certify on a small flow, the label and a comparison from its JSON. */
static void test_end_to_end(void **state) {
    (void)state;
    rf_rng r;
    rf_rng_seed(&r, 5);
    rf_matrix tr, te;
    rf_err e;
    assert_int_equal(rf_synthetic("moons", 400, 2, 1, &r, &tr, &e), RF_OK);
    assert_int_equal(rf_synthetic("moons", 200, 2, 1, &r, &te, &e), RF_OK);
    rf_flow_spec sp;
    rf_flow_spec_default(&sp, RF_FLOW_REALNVP, 2);
    sp.blocks = 2;
    sp.hidden = 8;
    rf_flow *f = rf_flow_create(&sp, &r, &e);
    assert_non_null(f);
    char csv[256];
    rf_test_tmp(csv, sizeof csv, "e2e-test.csv");
    assert_int_equal(rf_csv_write(csv, &te, NULL, &e), RF_OK);
    rf_cert_opts o;
    rf_cert_opts_default(&o);
    o.data_path = csv; /* recorded with its SHA-256 */
    o.n_model_samples = 200;
    o.latency_budget_s = 0.02;
    o.latency_reps = 20;
    o.energy_budget_s = 0.02;
    o.batch = 64;
    cJSON *cert = rf_certify(f, &te, NULL, &tr, NULL, &o, &e);
    if (!cert) fail_msg("rf_certify: %s", e.msg);
    if (getenv("RF_CERT_KEEP") && *getenv("RF_CERT_KEEP")) {
        char kp[600];
        mkdir(getenv("RF_CERT_KEEP"), 0755);
        snprintf(kp, sizeof kp, "%s/e2e.json", getenv("RF_CERT_KEEP"));
        char *js = cJSON_Print(cert);
        assert_int_equal(rf_write_file_atomic(kp, js, strlen(js), &e), RF_OK);
        free(js);
    }
    png_stats st;
    char *svg = render(cert, "e2e", &st);
    assert_int_equal(st.w, 1190);
    assert_true(st.nonwhite > 0.15);
    /* the values drawn are the certificate's */
    char want[96], v[64];
    const lbl_metric_desc *nll = &lbl_metrics[0];
    lbl_fmt_metric(nll, lbl_num(cert, "metrics.nll.value"), v, sizeof v);
    assert_true(v[0] != '\0');
    assert_has(svg, v);
    char shaline[64];
    {
        char hx[65];
        int cb;
        assert_int_equal(lbl_data_sha(cert, hx, &cb), 1);
        snprintf(shaline, sizeof shaline, "%.16s", hx);
    }
    assert_has(svg, shaline);
    const char L = lbl_letter(cert, "rating.model.compound_rating");
    if (L) snprintf(want, sizeof want, "overall rating %c</title>", L);
    else snprintf(want, sizeof want, "not rated</title>");
    assert_has(svg, want);
    int nf = 0, nu = 0;
    const int verdict = lbl_guarantees_verdict(cert, &nf, &nu);
    assert_has(svg, verdict == 1 ? "ALL PASSED" : verdict == 0 ? "FAILED" : verdict == 2 ? "NOT VERIFIED" : "NOT CHECKED");
    char em[160];
    const int meas = lbl_energy_method(cert, em, sizeof em);
    assert_true(meas >= 0); /* the certificate records how energy was obtained */
    assert_has(svg, meas ? "measured (RAPL" : "ESTIMATED");
    free(svg);
    /* compare it with itself under two names: one data set, a page */
    char dir[256], path[400];
    rf_test_tmp(dir, sizeof dir, "e2e-cmp");
    const cJSON *cs[2] = {cert, cert};
    const char *nm[2] = {"one.json", "two.json"};
    assert_int_equal(rf_cert_compare_write(cs, nm, 2, dir, &e), RF_OK);
    snprintf(path, sizeof path, "%s/index.html", dir);
    size_t n;
    char *html = slurp(path, &n);
    assert_null(strstr(html, "different test data"));
    assert_has(html, "<th>one</th>");
    free(html);
    rm_rf(dir);
    /* the test data's fingerprint is on the label */
    char hex[65];
    int comb;
    assert_int_equal(lbl_data_sha(cert, hex, &comb), 1);
    assert_int_equal(comb, 0);
    assert_int_equal(rf_sha256_file(csv, want, &e), RF_OK);
    assert_string_equal(hex, want);
    unlink(csv);
    cJSON_Delete(cert);
    rf_flow_free(f);
    rf_matrix_free(&tr);
    rf_matrix_free(&te);
}

/* ------------------------------------------------------------------ demo mode */

static int write_json(const cJSON *c, const char *path) {
    char *s = cJSON_Print(c);
    rf_err e;
    int rc = s ? rf_write_file_atomic(path, s, strlen(s), &e) : RF_ENOMEM;
    if (rc) fprintf(stderr, "%s: %s\n", path, s ? e.msg : "out of memory");
    free(s);
    return rc;
}

/* DIR/certs/{flow-a,flow-b,flow-c,other}.json, DIR/label/ (certificate.json + label.*) and
 * DIR/compare/ (the page of all four). */
static int demo(const char *dir) {
    rf_err e;
    char p[600];
    if (lbl_mkdir_p(dir, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    snprintf(p, sizeof p, "%s/certs", dir);
    if (lbl_mkdir_p(p, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    cspec s[4] = {PASSING, PASSING, FAILING, PASSING};
    const char *nm[4] = {"flow-a", "flow-b", "flow-c", "other"};
    s[0].model = "flow-a.rf";
    s[1].model = "flow-b.rf";
    s[1].nll = 12.5;
    s[1].energy = 5.0e-6;
    s[1].speed = 1.2;
    s[2].model = "flow-c.rf";
    s[3].model = "other.rf";
    s[3].sha = SHA_B;
    char paths[4][600];
    const char *pp[4];
    int rc = 0;
    for (int k = 0; k < 4 && !rc; k++) {
        cJSON *c = make_cert(&s[k]);
        snprintf(paths[k], sizeof paths[k], "%s/certs/%s.json", dir, nm[k]);
        pp[k] = paths[k];
        rc = write_json(c, paths[k]);
        if (!rc && k == 0) {
            snprintf(p, sizeof p, "%s/label", dir);
            rc = rf_cert_write(c, p, rf_cert_label_render, NULL, &e);
            if (rc) fprintf(stderr, "%s\n", e.msg);
        }
        if (!rc && k == 2) {
            snprintf(p, sizeof p, "%s/label-failing", dir);
            rc = rf_cert_write(c, p, rf_cert_label_render, NULL, &e);
            if (rc) fprintf(stderr, "%s\n", e.msg);
        }
        cJSON_Delete(c);
    }
    snprintf(p, sizeof p, "%s/compare", dir);
    if (!rc && (rc = rf_cert_compare_files(pp, 4, p, &e))) fprintf(stderr, "%s\n", e.msg);
    snprintf(p, sizeof p, "%s/compare-same-data", dir);
    if (!rc && (rc = rf_cert_compare_files(pp, 3, p, &e))) fprintf(stderr, "%s\n", e.msg);
    return rc ? 1 : 0;
}

/* `--png-stats FILE`: "width height nonwhite_fraction colours red_pixels" of a PNG (decoded by
 * cairo), for the shell test's screenshots; exit 1 when it cannot be read. */
static int png_stats_main(const char *path) {
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    const int ok = cairo_surface_status(s) == CAIRO_STATUS_SUCCESS;
    cairo_surface_destroy(s);
    if (!ok) {
        fprintf(stderr, "%s: not a readable PNG\n", path);
        return 1;
    }
    png_stats st;
    png_check(path, &st);
    printf("%d %d %.4f %ld %ld\n", st.w, st.h, st.nonwhite, st.colours, st.red);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--demo")) return demo(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--png-stats")) return png_stats_main(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formatting),    cmocka_unit_test(test_label_passing), cmocka_unit_test(test_label_failing),
        cmocka_unit_test(test_label_unverified),
        cmocka_unit_test(test_label_sparse),  cmocka_unit_test(test_bad_input),     cmocka_unit_test(test_compare),
        cmocka_unit_test(test_end_to_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
