/* EEG files: EDF+/BDF+ round trip through EDFlib, the built-in reader against EDFlib, real
 * Sleep-EDF hypnograms against independently obtained counts, eegmat and eegmmidb recordings
 * (including the two truncated files), hypnogram/event checks, and a corrupted-EDF corpus. */
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "renflow/edf.h"

/* ------------------------------------------------------------------ helpers */

static unsigned char *slurp(const char *path, size_t *n) {
    unsigned char *b = NULL;
    rf_err e;
    if (rf_read_file(path, &b, n, &e)) fail_msg("%s", e.msg);
    return b;
}

static void spit(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static char tmpdir[512];

static void make_tmpdir(void) {
    if (tmpdir[0]) return;
    rf_test_tmp(tmpdir, sizeof tmpdir, "edf");
    mkdir(tmpdir, 0700);
}

static void tmp_path(char *buf, size_t n, const char *name) {
    make_tmpdir();
    snprintf(buf, n, "%s/%s", tmpdir, name);
}

/* The corrupted-file corpus rewrites one small file ~2000 times: on /dev/shm (tmpfs) when there
 * is one, since a disk mounted with 'discard' makes every truncating rewrite slow. */
static char fuzzdir[512];

static void fuzz_path(char *buf, size_t n, const char *name) {
    if (!fuzzdir[0]) {
        struct stat stt;
        if (stat("/dev/shm", &stt) == 0 && S_ISDIR(stt.st_mode) && access("/dev/shm", W_OK) == 0) {
            snprintf(fuzzdir, sizeof fuzzdir, "/dev/shm/rf-test-%ld-edf", (long)getpid());
            if (mkdir(fuzzdir, 0700) != 0) fuzzdir[0] = '\0';
        }
        if (!fuzzdir[0]) {
            make_tmpdir();
            snprintf(fuzzdir, sizeof fuzzdir, "%s", tmpdir);
        }
    }
    snprintf(buf, n, "%s/%s", fuzzdir, name);
}

static void rm_dir(const char *dir) {
    if (!dir[0]) return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        char p[1024];
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void rm_tmpdir(void) {
    if (fuzzdir[0] && strcmp(fuzzdir, tmpdir) != 0) rm_dir(fuzzdir);
    rm_dir(tmpdir);
}

static int count_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static double *read_all(rf_edf *r, int i) {
    int64_t n = rf_edf_n_samples(r, i);
    double *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    rf_err e;
    if (rf_edf_read_channel(r, i, 0, n, x, &e)) fail_msg("%s", e.msg);
    return x;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* ------------------------------------------------------------------ round trip */

#define RT_SECONDS 10

typedef struct rt_file {
    double *x[3];
    int64_t n[3];
    double rate[3];
    rf_annotations ann;
} rt_file;

static void rt_make(rt_file *f) {
    const double rate[3] = {256, 100, 10};
    for (int s = 0; s < 3; s++) {
        f->rate[s] = rate[s];
        f->n[s] = (int64_t)(rate[s] * RT_SECONDS);
        f->x[s] = malloc((size_t)f->n[s] * sizeof(double));
        for (int64_t k = 0; k < f->n[s]; k++) {
            double t = (double)k / rate[s];
            f->x[s][k] = s == 0   ? 80 * sin(2 * M_PI * 10 * t) + 20 * sin(2 * M_PI * 1.3 * t)
                         : s == 1 ? 300 * cos(2 * M_PI * 0.7 * t) - 12.5
                                  : 0.25 + 0.2 * sin(2 * M_PI * 0.25 * t);
        }
    }
    memset(&f->ann, 0, sizeof f->ann);
    rf_err e;
    /* deliberately not sorted; 0.1 ms onset resolution; one without duration; UTF-8 text */
    assert_int_equal(rf_annotations_add(&f->ann, 4.5, 30, "Sleep stage 2", &e), RF_OK);
    assert_int_equal(rf_annotations_add(&f->ann, 0, 4.5, "Sleep stage W", &e), RF_OK);
    assert_int_equal(rf_annotations_add(&f->ann, 1.2345, -1, "T1", &e), RF_OK);
    assert_int_equal(rf_annotations_add(&f->ann, 7.0001, 0.25, "Elektrode gelöst", &e), RF_OK);
    for (int k = 0; k < 14; k++) /* more annotations than records: needs 2 annotation signals */
        assert_int_equal(rf_annotations_add(&f->ann, 0.5 * k + 0.05, 0.1, "marker", &e), RF_OK);
}

static void rt_free(rt_file *f) {
    for (int s = 0; s < 3; s++) free(f->x[s]);
    rf_annotations_free(&f->ann);
}

static void rt_spec(rt_file *f, rf_edf_wsignal sig[3], rf_edf_wspec *sp, int bdf) {
    memset(sig, 0, 3 * sizeof *sig);
    sig[0] = (rf_edf_wsignal){.label = "EEG Fpz-Cz", .unit = "uV", .prefilter = "HP:0.5Hz LP:35Hz",
                              .rate_hz = f->rate[0], .phys_min = -200, .phys_max = 200,
                              .data = f->x[0], .n = f->n[0]};
    sig[1] = (rf_edf_wsignal){.label = "EOG horizontal", .unit = "uV", .rate_hz = f->rate[1],
                              .data = f->x[1], .n = f->n[1]}; /* automatic range */
    sig[2] = (rf_edf_wsignal){.label = "Resp oro-nasal", .unit = "mV", .transducer = "thermistor",
                              .rate_hz = f->rate[2], .phys_min = -1, .phys_max = 1,
                              .dig_min = -2000, .dig_max = 2000, .data = f->x[2], .n = f->n[2]};
    memset(sp, 0, sizeof *sp);
    sp->bdf = bdf;
    sp->n_signals = 3;
    sp->signals = sig;
    sp->annots = &f->ann;
    sp->start = (rf_edf_datetime){2021, 3, 14, 22, 30, 5, 0.25};
    sp->patient_code = "P001";
}

static void rt_check(const char *path, rt_file *f, rf_edf_wsignal *sig, int bdf, rf_edf_reader reader) {
    rf_edf_opts o;
    rf_edf_opts_default(&o);
    o.reader = reader;
    rf_edf *r;
    rf_err e;
    if (rf_edf_open_opts(path, &o, &r, &e)) fail_msg("%s", e.msg);
    assert_int_equal(rf_edf_uses_edflib(r), reader != RF_EDF_READER_BUILTIN);
    assert_string_equal(rf_edf_warning(r), "");
    assert_int_equal(rf_edf_filetype(r), bdf ? RF_EDF_TYPE_BDFPLUS : RF_EDF_TYPE_EDFPLUS);
    assert_int_equal(rf_edf_n_signals(r), 3); /* the 2 annotation signals are not data channels */
    assert_true(fabs(rf_edf_duration(r) - RT_SECONDS) < 1e-12);
    rf_edf_datetime t = rf_edf_start(r);
    assert_int_equal(t.year, 2021);
    assert_int_equal(t.month, 3);
    assert_int_equal(t.day, 14);
    assert_int_equal(t.hour, 22);
    assert_int_equal(t.minute, 30);
    assert_int_equal(t.second, 5);
    assert_true(fabs(t.subsecond - 0.25) < 1e-12); /* annotation onsets stay relative to it */
    double worst = 0;
    for (int s = 0; s < 3; s++) {
        const rf_edf_signal *g = rf_edf_signal_info(r, s);
        assert_string_equal(g->label, sig[s].label);
        assert_string_equal(rf_edf_unit(r, s), sig[s].unit);
        assert_true(rf_edf_rate(r, s) == f->rate[s]);
        assert_int_equal(rf_edf_n_samples(r, s), f->n[s]);
        double step = (g->phys_max - g->phys_min) / (g->dig_max - g->dig_min);
        if (s == 2) {
            assert_int_equal(g->dig_min, -2000);
            assert_int_equal(g->dig_max, 2000);
        } else {
            assert_int_equal(g->dig_max, bdf ? 8388607 : 32767);
        }
        double *y = read_all(r, s);
        double md = 0;
        for (int64_t k = 0; k < f->n[s]; k++) md = fmax(md, fabs(y[k] - f->x[s][k]));
        /* rounding to the nearest digital value: at most half a quantisation step */
        if (md > 0.5 * step * (1 + 1e-9)) fail_msg("signal %d: max error %g > step/2 = %g", s, md, step / 2);
        worst = fmax(worst, md / step);
        /* a segment read equals the slice of the whole */
        double seg[37];
        assert_int_equal(rf_edf_read_channel(r, s, f->n[s] - 40, 37, seg, &e), RF_OK);
        assert_memory_equal(seg, y + f->n[s] - 40, sizeof seg);
        free(y);
    }
    printf("  %s %s: max error %.3f quantisation steps\n", bdf ? "BDF+" : "EDF+",
           reader == RF_EDF_READER_BUILTIN ? "built-in reader" : "EDFlib", worst);
    assert_true(worst > 0.05); /* the comparison is not vacuous: values were quantised */
    /* signal 2: explicit digital range 4000 levels over 2 mV */
    assert_true(fabs(rf_edf_signal_info(r, 2)->phys_max - 1) < 1e-15);

    const rf_annotations *a = rf_edf_annotations(r);
    assert_int_equal(a->n, f->ann.n);
    assert_string_equal(a->source, path);
    /* sorted by onset; find each written annotation */
    int matched = 0;
    for (int i = 0; i < f->ann.n; i++)
        for (int j = 0; j < a->n; j++)
            if (strcmp(a->items[j].text, f->ann.items[i].text) == 0 &&
                fabs(a->items[j].onset_s - f->ann.items[i].onset_s) < 1e-9 &&
                fabs(a->items[j].duration_s - f->ann.items[i].duration_s) < 1e-9) {
                matched++;
                break;
            }
    assert_int_equal(matched, f->ann.n);
    for (int j = 1; j < a->n; j++) assert_true(a->items[j].onset_s >= a->items[j - 1].onset_s);
    rf_edf_free(r);
}

static void test_roundtrip(void **st) {
    (void)st;
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600];
    for (int bdf = 0; bdf <= 1; bdf++) {
        tmp_path(path, sizeof path, bdf ? "rt.bdf" : "rt.edf");
        rt_spec(&f, sig, &sp, bdf);
        if (rf_edf_write(path, &sp, &e)) fail_msg("%s", e.msg);
        rt_check(path, &f, sig, bdf, RF_EDF_READER_AUTO);
        rt_check(path, &f, sig, bdf, RF_EDF_READER_BUILTIN);
        /* the two readers agree bit for bit */
        rf_edf_opts o;
        rf_edf_opts_default(&o);
        o.reader = RF_EDF_READER_BUILTIN;
        rf_edf *a, *b;
        assert_int_equal(rf_edf_open(path, &a, &e), RF_OK);
        assert_int_equal(rf_edf_open_opts(path, &o, &b, &e), RF_OK);
        for (int s = 0; s < 3; s++) {
            double *x = read_all(a, s), *y = read_all(b, s);
            assert_memory_equal(x, y, (size_t)f.n[s] * sizeof *x);
            free(x);
            free(y);
        }
        rf_edf_free(a);
        rf_edf_free(b);
    }
    /* half-second records: 256 Hz x 0.5 s = 128 samples per record */
    tmp_path(path, sizeof path, "rt_half.edf");
    rt_spec(&f, sig, &sp, 0);
    sp.record_s = 0.5;
    sp.annots = NULL;
    if (rf_edf_write(path, &sp, &e)) fail_msg("%s", e.msg);
    rf_edf *r;
    assert_int_equal(rf_edf_open(path, &r, &e), RF_OK);
    assert_int_equal(rf_edf_n_records(r), 2 * RT_SECONDS);
    assert_int_equal(rf_edf_signal_info(r, 0)->samples_per_record, 128);
    assert_true(rf_edf_rate(r, 0) == 256.0 && rf_edf_rate(r, 2) == 10.0);
    assert_int_equal(rf_edf_annotations(r)->n, 0);
    rf_edf_free(r);
    /* nothing left behind but the files written */
    assert_int_equal(count_dir_entries(tmpdir), 3);
    rt_free(&f);
}

/* ------------------------------------------------------------------ writer errors, atomicity */

static void test_write_errors(void **st) {
    (void)st;
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600];
    tmp_path(path, sizeof path, "werr.edf");
    rt_spec(&f, sig, &sp, 0);
    sp.annots = NULL;
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    size_t n0;
    unsigned char *orig = slurp(path, &n0);
    int before = count_dir_entries(tmpdir);

    /* each case modifies a fresh spec; the target file must stay untouched */
    for (int c = 0; c < 9; c++) {
        rt_spec(&f, sig, &sp, 0);
        sp.annots = NULL;
        rf_annotations big = {0};
        double nanv[256];
        const char *expect = NULL;
        switch (c) {
        case 0: f.x[0][5] = 250; expect = "exceeds the physical range"; break;
        case 1:
            for (int k = 0; k < 256; k++) nanv[k] = k == 17 ? NAN : 0;
            sig[0].data = nanv;
            sig[0].n = 256;
            expect = "sample 17";
            break;
        case 2: sig[2].rate_hz = 12.5; expect = "whole number"; break;
        case 3: sig[1].n -= 100; expect = "records"; break;
        case 4:
            rf_annotations_add(&big, 1, 1, "this annotation text is much longer than forty bytes", &e);
            sp.annots = &big;
            expect = "40 bytes";
            break;
        case 5: sig[0].label = "a label that is far too long"; expect = "label"; break;
        case 6: sig[0].phys_max = 123.456789; expect = "8 characters"; break;
        case 7: sp.record_s = 0.0001; expect = "record duration"; break;
        case 8: sig[2].dig_min = -40000; expect = "digital range"; break;
        }
        int rc = rf_edf_write(path, &sp, &e);
        if (c == 0) f.x[0][5] = 0;
        rf_annotations_free(&big);
        assert_int_not_equal(rc, RF_OK);
        if (!contains(e.msg, expect)) fail_msg("case %d: '%s' lacks '%s'", c, e.msg, expect);
        assert_true(contains(e.msg, path));
        size_t n1;
        unsigned char *now = slurp(path, &n1);
        assert_int_equal(n1, n0);
        assert_memory_equal(now, orig, n0);
        free(now);
        assert_int_equal(count_dir_entries(tmpdir), before); /* no temporary left behind */
    }
    /* a directory that does not exist */
    rt_spec(&f, sig, &sp, 0);
    assert_int_not_equal(rf_edf_write("/nonexistent-dir-rf/x.edf", &sp, &e), RF_OK);
    assert_true(contains(e.msg, "/nonexistent-dir-rf/x.edf"));
    free(orig);
    rt_free(&f);
}

/* ------------------------------------------------------------------ channels and ranges */

static void test_channels(void **st) {
    (void)st;
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600];
    tmp_path(path, sizeof path, "ch.edf");
    rt_spec(&f, sig, &sp, 0);
    sig[1].label = "Fc5.";
    sig[2].label = "C3..";
    sig[2].rate_hz = 256;
    sig[2].n = f.n[0];
    sig[2].data = f.x[0];
    sig[2].phys_min = -200;
    sig[2].phys_max = 200;
    sig[2].dig_min = sig[2].dig_max = 0;
    double *eog = malloc((size_t)f.n[0] * sizeof *eog);
    for (int64_t k = 0; k < f.n[0]; k++) eog[k] = -f.x[0][k];
    sig[1].rate_hz = 256;
    sig[1].n = f.n[0];
    sig[1].data = eog;
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    rf_edf *r;
    assert_int_equal(rf_edf_open(path, &r, &e), RF_OK);
    assert_int_equal(rf_edf_find_channel(r, "EEG Fpz-Cz"), 0);
    assert_int_equal(rf_edf_find_channel(r, "fpz-cz"), 0);
    assert_int_equal(rf_edf_find_channel(r, "  FPZ-CZ "), 0);
    assert_int_equal(rf_edf_find_channel(r, "FC5"), 1);
    assert_int_equal(rf_edf_find_channel(r, "Fc5."), 1);
    assert_int_equal(rf_edf_find_channel(r, "c3"), 2);
    assert_int_equal(rf_edf_find_channel(r, "C4"), -1);
    assert_int_equal(rf_edf_find_channel(r, ""), -1);
    const char *want[] = {"C3", "fc5", "Fpz-Cz"};
    int idx[3];
    assert_int_equal(rf_edf_select_channels(r, want, 3, idx, &e), RF_OK);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 0);
    const char *bad[] = {"C3", "Cz"};
    assert_int_equal(rf_edf_select_channels(r, bad, 2, idx, &e), RF_EARG);
    assert_true(contains(e.msg, path) && contains(e.msg, "'Cz' not found") && contains(e.msg, "'Fc5.'"));
    /* several channels at once: row c = channel idx[c] */
    int64_t n = rf_edf_n_samples(r, 0);
    double *m = malloc(3 * (size_t)n * sizeof *m);
    assert_int_equal(rf_edf_read_channels(r, idx, 3, 0, n, m, &e), RF_OK);
    for (int64_t k = 0; k < n; k++) {
        assert_true(m[k] == m[2 * n + k]);                 /* C3 is the same data as Fpz-Cz */
        assert_true(fabs(m[n + k] + m[k]) < 400.0 / 65535); /* Fc5 is its negative, automatic range */
    }
    /* ranges: never past the end */
    double buf[8];
    assert_int_equal(rf_edf_read_channel(r, 0, n - 4, 4, buf, &e), RF_OK);
    assert_int_equal(rf_edf_read_channel(r, 0, n - 4, 5, buf, &e), RF_EARG);
    assert_true(contains(e.msg, path) && contains(e.msg, "2560 samples"));
    assert_int_equal(rf_edf_read_channel(r, 0, -1, 2, buf, &e), RF_EARG);
    assert_int_equal(rf_edf_read_channel(r, 3, 0, 2, buf, &e), RF_EARG);
    assert_int_equal(rf_edf_read_channel(r, 0, INT64_MAX, 2, buf, &e), RF_EARG);
    assert_null(rf_edf_signal_info(r, 3));
    rf_edf_free(r);
    /* channels with different rates cannot be read as one block */
    tmp_path(path, sizeof path, "ch2.edf");
    rt_spec(&f, sig, &sp, 0);
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    assert_int_equal(rf_edf_open(path, &r, &e), RF_OK);
    int two[2] = {0, 1};
    assert_int_equal(rf_edf_read_channels(r, two, 2, 0, 10, m, &e), RF_EARG);
    assert_true(contains(e.msg, "different sampling rates"));
    rf_edf_free(r);
    free(m);
    free(eog);
    rt_free(&f);
}

/* A file opened twice: EDFlib refuses the second open, the built-in reader takes over. */
static void test_open_twice(void **st) {
    (void)st;
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600];
    tmp_path(path, sizeof path, "twice.edf");
    rt_spec(&f, sig, &sp, 0);
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    rf_edf *a, *b;
    assert_int_equal(rf_edf_open(path, &a, &e), RF_OK);
    assert_int_equal(rf_edf_open(path, &b, &e), RF_OK);
    assert_int_equal(rf_edf_uses_edflib(a), 1);
    assert_int_equal(rf_edf_uses_edflib(b), 0);
    assert_true(contains(rf_edf_warning(b), "EDFLIB_FILE_ALREADY_OPENED"));
    double *x = read_all(a, 0), *y = read_all(b, 0);
    assert_memory_equal(x, y, (size_t)f.n[0] * sizeof *x);
    assert_int_equal(rf_edf_annotations(a)->n, rf_edf_annotations(b)->n);
    free(x);
    free(y);
    rf_edf_free(a);
    rf_edf_free(b);
    rt_free(&f);
}

/* Plain EDF and BDF (no '+'): the annotation signal is an ordinary signal, as in EDFlib. */
static void test_plain_edf_bdf(void **st) {
    (void)st;
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600];
    for (int bdf = 0; bdf <= 1; bdf++) {
        tmp_path(path, sizeof path, bdf ? "plain.bdf" : "plain.edf");
        rt_spec(&f, sig, &sp, bdf);
        assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
        size_t n;
        unsigned char *b = slurp(path, &n);
        memset(b + 192, ' ', 44);
        if (bdf) memcpy(b + 192, "24BIT", 5);
        spit(path, b, n);
        free(b);
        rf_edf *r, *q;
        rf_edf_opts o;
        rf_edf_opts_default(&o);
        o.reader = RF_EDF_READER_BUILTIN;
        if (rf_edf_open(path, &r, &e)) fail_msg("%s", e.msg);
        if (rf_edf_open_opts(path, &o, &q, &e)) fail_msg("%s", e.msg);
        assert_int_equal(rf_edf_uses_edflib(r), 1);
        assert_int_equal(rf_edf_filetype(r), bdf ? RF_EDF_TYPE_BDF : RF_EDF_TYPE_EDF);
        assert_int_equal(rf_edf_filetype(q), rf_edf_filetype(r));
        assert_int_equal(rf_edf_n_signals(r), 5); /* 3 + the 2 former annotation signals */
        assert_int_equal(rf_edf_n_signals(q), 5);
        assert_string_equal(rf_edf_label(r, 3), bdf ? "BDF Annotations" : "EDF Annotations");
        assert_int_equal(rf_edf_annotations(r)->n, 0);
        assert_int_equal(rf_edf_annotations(q)->n, 0);
        assert_int_equal(rf_edf_start(r).year, 2021); /* no "Startdate" year: from dd.mm.yy */
        for (int s = 0; s < 5; s++) {
            double *x = read_all(r, s), *y = read_all(q, s);
            assert_memory_equal(x, y, (size_t)rf_edf_n_samples(r, s) * sizeof *x);
            free(x);
            free(y);
        }
        rf_edf_free(r);
        rf_edf_free(q);
    }
    rt_free(&f);
}

/* ------------------------------------------------------------------ truncated files (synthetic) */

static int n_warn_calls;
static char last_warn[4096];
static void on_warn(void *ctx, const char *msg) {
    (void)ctx;
    n_warn_calls++;
    snprintf(last_warn, sizeof last_warn, "%s", msg);
}

static void test_truncated_synthetic(void **st) {
    (void)st;
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600], cut[600];
    tmp_path(path, sizeof path, "full.edf");
    tmp_path(cut, sizeof cut, "cut.edf");
    rt_spec(&f, sig, &sp, 0);
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    size_t n;
    unsigned char *b = slurp(path, &n);
    /* header 256 x (1 + 3 + 2); record = 2 x (256 + 100 + 10 + 2 x annotation samples) */
    rf_edf *full;
    assert_int_equal(rf_edf_open(path, &full, &e), RF_OK);
    const size_t hdr = 256 * 6, rec = (n - hdr) / RT_SECONDS;
    assert_int_equal(hdr + rec * RT_SECONDS, n);
    spit(cut, b, hdr + 6 * rec + rec / 2); /* 6.5 records of 10 */
    rf_edf_opts o;
    rf_edf_opts_default(&o);
    o.warn = on_warn;
    n_warn_calls = 0;
    rf_edf *r;
    assert_int_equal(rf_edf_open_opts(cut, &o, &r, &e), RF_OK);
    assert_int_equal(n_warn_calls, 1);
    assert_string_equal(last_warn, rf_edf_warning(r));
    assert_true(contains(last_warn, cut) && contains(last_warn, "says 10") && contains(last_warn, "only 6 complete"));
    assert_int_equal(rf_edf_n_records(r), 6);
    assert_int_equal(rf_edf_n_records_header(r), 10);
    assert_int_equal(rf_edf_n_samples(r, 0), 6 * 256);
    assert_true(rf_edf_duration(r) == 6.0);
    /* the complete records are exactly those of the full file */
    for (int s = 0; s < 3; s++) {
        double *x = read_all(r, s);
        double *y = malloc((size_t)rf_edf_n_samples(r, s) * sizeof *y);
        assert_int_equal(rf_edf_read_channel(full, s, 0, rf_edf_n_samples(r, s), y, &e), RF_OK);
        assert_memory_equal(x, y, (size_t)rf_edf_n_samples(r, s) * sizeof *x);
        free(x);
        free(y);
    }
    double v;
    assert_int_equal(rf_edf_read_channel(r, 0, 6 * 256, 1, &v, &e), RF_EARG);
    /* annotations of the missing records are gone; the others are intact */
    const rf_annotations *a = rf_edf_annotations(r);
    assert_true(a->n > 0 && a->n < f.ann.n);
    rf_edf_free(r);
    /* strict: an error with the file, the header count and the count present */
    o.strict_size = 1;
    assert_int_equal(rf_edf_open_opts(cut, &o, &r, &e), RF_EFORMAT);
    assert_true(contains(e.msg, cut) && contains(e.msg, "says 10") && contains(e.msg, "only 6 complete"));
    o.strict_size = 0;
    o.reader = RF_EDF_READER_EDFLIB;
    n_warn_calls = 0;
    assert_int_equal(rf_edf_open_opts(cut, &o, &r, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "EDFlib cannot read it") && contains(e.msg, "only 6 complete"));
    assert_int_equal(n_warn_calls, 0); /* a failed open does not also warn */
    /* trailing garbage: a warning, the announced records are read */
    unsigned char *big = malloc(n + 100);
    memcpy(big, b, n);
    memset(big + n, 0x55, 100);
    spit(cut, big, n + 100);
    assert_int_equal(rf_edf_open(cut, &r, &e), RF_OK);
    assert_true(contains(rf_edf_warning(r), "100 unexpected bytes") && contains(rf_edf_warning(r), "ignored"));
    assert_int_equal(rf_edf_n_records(r), RT_SECONDS);
    rf_edf_free(r);
    /* not there, not a file */
    assert_int_equal(rf_edf_open("/nonexistent-rf/none.edf", &r, &e), RF_EIO);
    assert_true(contains(e.msg, "/nonexistent-rf/none.edf") && contains(e.msg, "cannot open"));
    assert_null(r);
    assert_int_equal(rf_edf_open(tmpdir, &r, &e), RF_EIO);
    assert_true(contains(e.msg, "not a regular file"));
    rf_annotations none;
    assert_int_equal(rf_annotations_read("/nonexistent-rf/none.edf", &none, &e), RF_EIO);
    assert_int_equal(none.n, 0);
    /* no complete record */
    spit(cut, b, hdr + rec / 3);
    assert_int_equal(rf_edf_open(cut, &r, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "only 0 complete"));
    free(big);
    free(b);
    rf_edf_free(full);
    rt_free(&f);
}

/* ------------------------------------------------------------------ hypnograms and events (synthetic) */

static void test_hypnogram_rules(void **st) {
    (void)st;
    rf_err e;
    rf_annotations a = {0};
    a.source = strdup("night.edf");
    rf_annotations_add(&a, 0, 60, "Sleep stage W", &e);
    rf_annotations_add(&a, 60, 30, "Sleep stage 1", &e);
    rf_annotations_add(&a, 150, 90, "Sleep stage 4", &e); /* gap 90..150: unknown */
    rf_annotations_add(&a, 120, 0, "Lights off", &e);     /* not a stage: ignored */
    rf_annotations_add(&a, 240, 30, "Movement time", &e);
    rf_annotations_add(&a, 270, 30, "Sleep stage R", &e);
    rf_annotations_add(&a, 300, 60, "Sleep stage ?", &e);
    rf_annotations_add(&a, 90, 30, "Sleep stage 3", &e); /* out of order */
    int *s, n;
    assert_int_equal(rf_hypnogram_epochs(&a, 30, 0, &s, &n, &e), RF_OK);
    const int want[12] = {RF_STAGE_W,  RF_STAGE_W,  RF_STAGE_N1,       RF_STAGE_N3,
                          RF_STAGE_UNKNOWN, RF_STAGE_N4, RF_STAGE_N4, RF_STAGE_N4,
                          RF_STAGE_MOVEMENT, RF_STAGE_REM, RF_STAGE_UNKNOWN, RF_STAGE_UNKNOWN};
    assert_int_equal(n, 12);
    assert_memory_equal(s, want, sizeof want);
    assert_int_equal(rf_hypnogram_to_aasm(s, n), 4); /* ? x 3, MT */
    const int aasm[12] = {0, 0, 1, 3, -1, 3, 3, 3, -1, 4, -1, -1};
    assert_memory_equal(s, aasm, sizeof aasm);
    free(s);
    assert_int_equal(rf_hypnogram_epochs(&a, 30, 5, &s, &n, &e), RF_OK); /* capped */
    assert_int_equal(n, 5);
    free(s);
    /* checks against the recording: staged part must fit, trailing '?' may run on */
    assert_int_equal(rf_hypnogram_check_against(&a, 300, 30, &e), RF_OK);
    assert_int_equal(rf_hypnogram_check_against(&a, 280, 30, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "night.edf") && contains(e.msg, "Sleep stage R") && contains(e.msg, "280"));
    assert_int_equal(rf_annotations_check_within(&a, 300, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "night.edf") && contains(e.msg, "Sleep stage ?") && contains(e.msg, "outside"));
    assert_int_equal(rf_annotations_check_within(&a, 360, &e), RF_OK);
    /* durations that are not multiples of the epoch */
    rf_annotations_add(&a, 360, 45, "Sleep stage 2", &e);
    assert_int_equal(rf_hypnogram_epochs(&a, 30, 0, &s, &n, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "night.edf") && contains(e.msg, "duration 45") && contains(e.msg, "30 s epoch"));
    assert_int_equal(rf_hypnogram_check_against(&a, 1000, 30, &e), RF_EFORMAT);
    a.items[a.n - 1].duration_s = 60;
    assert_int_equal(rf_hypnogram_epochs(&a, 30, 0, &s, &n, &e), RF_OK);
    free(s);
    /* overlap, missing duration */
    rf_annotations_add(&a, 390, 30, "Sleep stage 3", &e);
    assert_int_equal(rf_hypnogram_epochs(&a, 30, 0, &s, &n, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "overlaps"));
    a.items[a.n - 1].onset_s = 420;
    a.items[a.n - 1].duration_s = -1;
    assert_int_equal(rf_hypnogram_epochs(&a, 30, 0, &s, &n, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "no duration"));
    /* a hypnogram that belongs to a later part: starts after the recording */
    rf_annotations late = {0};
    rf_annotations_add(&late, 5010, 30, "Sleep stage W", &e);
    assert_int_equal(rf_hypnogram_check_against(&late, 3000, 30, &e), RF_EFORMAT);
    if (!contains(e.msg, "starts at 5010")) fail_msg("%s", e.msg);
    rf_annotations none = {0};
    rf_annotations_add(&none, 0, 1, "T0", &e);
    assert_int_equal(rf_hypnogram_epochs(&none, 30, 0, &s, &n, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "no sleep-stage annotation"));
    assert_int_equal(rf_hypnogram_epochs(&a, 0, 0, &s, &n, &e), RF_EARG);
    /* stage names */
    assert_int_equal(rf_sleep_stage_from_text("Sleep stage W"), RF_STAGE_W);
    assert_int_equal(rf_sleep_stage_from_text(" sleep stage r "), RF_STAGE_REM);
    assert_int_equal(rf_sleep_stage_from_text("Sleep stage N3"), RF_STAGE_N3);
    assert_int_equal(rf_sleep_stage_from_text("Sleep stage 5"), -1);
    assert_int_equal(rf_sleep_stage_from_text("Movement time"), RF_STAGE_MOVEMENT);
    assert_string_equal(rf_sleep_stage_name(RF_STAGE_UNKNOWN), "?");
    rf_annotations_free(&a);
    rf_annotations_free(&late);
    rf_annotations_free(&none);

    /* events */
    rf_annotations m = {0};
    m.source = strdup("run.edf");
    rf_annotations_add(&m, 0, 4.2, "T0", &e);
    rf_annotations_add(&m, 4.2, 4.1, "T2", &e);
    rf_annotations_add(&m, 8.3, 4.2, " T1 ", &e);
    rf_annotations_add(&m, 9, -1, "T3", &e); /* not a code */
    rf_event *ev;
    int ne;
    assert_int_equal(rf_mi_events(&m, 160, 2000, &ev, &ne, &e), RF_OK);
    assert_int_equal(ne, 3);
    assert_true(ev[0].onset == 0 && ev[0].duration == 672 && ev[0].code == 0);
    assert_true(ev[1].onset == 672 && ev[1].duration == 656 && ev[1].code == 2);
    assert_true(ev[2].onset == 1328 && ev[2].duration == 672 && ev[2].code == 1);
    free(ev);
    assert_int_equal(rf_mi_events(&m, 160, 1900, &ev, &ne, &e), RF_EFORMAT); /* T1 ends at 2000 */
    assert_true(contains(e.msg, "run.edf") && contains(e.msg, "T1") && contains(e.msg, "outside"));
    assert_int_equal(rf_mi_events(&m, 0, 1900, &ev, &ne, &e), RF_EARG);
    rf_annotations_free(&m);
}

/* An EDF+ file whose annotations lie outside the recording is read, and the check names it. */
static void test_annotations_outside(void **st) {
    (void)st;
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600];
    tmp_path(path, sizeof path, "outside.edf");
    rt_spec(&f, sig, &sp, 0);
    rf_annotations_free(&f.ann);
    rf_annotations_add(&f.ann, 0, 10, "whole recording", &e);
    rf_annotations_add(&f.ann, 9.5, -1, "inside", &e);
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    rf_annotations in;
    assert_int_equal(rf_annotations_read(path, &in, &e), RF_OK);
    assert_int_equal(rf_annotations_check_within(&in, RT_SECONDS, &e), RF_OK);
    rf_annotations_free(&in);
    rf_annotations_add(&f.ann, 12.5, 1, "after the end", &e);
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    rf_annotations a;
    assert_int_equal(rf_annotations_read(path, &a, &e), RF_OK);
    assert_int_equal(a.n, f.ann.n);
    assert_int_equal(rf_annotations_check_within(&a, RT_SECONDS, &e), RF_EFORMAT);
    if (!(contains(e.msg, path) && contains(e.msg, "after the end") && contains(e.msg, "12.5"))) fail_msg("%s", e.msg);
    rf_annotations_free(&a);
    rt_free(&f);
}

/* ------------------------------------------------------------------ real data: Sleep-EDF hypnograms */

/* Per-file counts of 30-s epochs per stage (W, 1, 2, 3, 4, R, ?, movement time). Obtained
 * independently of this code base by a 60-line python3 script (standard library only) that
 * parses each file's EDF header and splits the raw bytes of the "EDF Annotations" signal into
 * TALs (0x00 / 0x14 / 0x15 separators), summing duration / 30 per stage text; the same script
 * confirmed that every file's stage annotations are contiguous from 0 to 86400 s (2880 epochs)
 * with no other annotation texts. */
static const struct {
    const char *file;
    int c[8];
    double first_dur[3]; /* durations of the first three annotations (onsets 0, d0, d0+d1) */
} hyp_table[16] = {
    {"SC4001EC-Hypnogram.edf", {1997, 58, 250, 101, 119, 125, 230, 0}, {30630, 120, 390}},
    {"SC4002EC-Hypnogram.edf", {1885, 59, 373, 94, 203, 215, 50, 1}, {26070, 90, 510}},
    {"SC4011EH-Hypnogram.edf", {1856, 109, 562, 96, 9, 170, 78, 0}, {21540, 360, 60}},
    {"SC4012EC-Hypnogram.edf", {1824, 92, 660, 80, 16, 176, 32, 0}, {19290, 150, 900}},
    {"SC4021EH-Hypnogram.edf", {1907, 94, 545, 73, 22, 163, 76, 0}, {21870, 780, 30}},
    {"SC4022EJ-Hypnogram.edf", {1871, 184, 402, 81, 38, 179, 124, 1}, {22710, 990, 540}},
    {"SC4031EC-Hypnogram.edf", {2008, 61, 485, 56, 1, 209, 60, 0}, {26130, 30, 60}},
    {"SC4032EP-Hypnogram.edf", {1957, 45, 400, 54, 77, 199, 148, 0}, {27630, 270, 150}},
    {"SC4041EC-Hypnogram.edf", {1534, 166, 620, 53, 0, 196, 310, 1}, {24360, 270, 120}},
    {"SC4042EC-Hypnogram.edf", {1773, 137, 514, 88, 6, 270, 88, 4}, {32220, 150, 210}},
    {"SC4051EC-Hypnogram.edf", {2258, 44, 217, 116, 19, 68, 158, 0}, {38670, 180, 900}},
    {"SC4052EC-Hypnogram.edf", {1780, 114, 616, 106, 8, 180, 74, 2}, {32430, 300, 570}},
    {"SC4061EC-Hypnogram.edf", {2069, 56, 407, 35, 101, 102, 110, 0}, {28050, 180, 120}},
    {"SC4062EC-Hypnogram.edf", {2007, 90, 417, 96, 33, 187, 50, 0}, {25410, 30, 390}},
    {"SC4071EC-Hypnogram.edf", {1958, 89, 403, 80, 82, 198, 70, 0}, {27990, 660, 270}},
    {"SC4072EH-Hypnogram.edf", {1904, 84, 392, 59, 163, 168, 110, 0}, {19200, 30, 390}},
};
/* The last annotation of each file ("Sleep stage ?", running to 86400 s) starts here (script). */
static const double hyp_last_onset[16] = {79500, 84900, 84060, 85440, 84120, 82680, 84600, 81960,
                                          77100, 83760, 81660, 84180, 83100, 84900, 84300, 83100};
static const int hyp_n_annot[16] = {154, 152, 126, 171, 161, 179, 119, 123,
                                    161, 178, 130, 139, 78, 98, 116, 179};

static void test_sleep_hypnograms(void **st) {
    (void)st;
    const char *dir = rf_test_data_dir();
    if (!dir) skip();
    double t0 = rf_now();
    long total[8] = {0};
    for (int f = 0; f < 16; f++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/sleep-edf/hypnograms/%s", dir, hyp_table[f].file);
        rf_err e;
        rf_edf *r;
        if (rf_edf_open(path, &r, &e)) fail_msg("%s", e.msg);
        assert_int_equal(rf_edf_uses_edflib(r), 1);
        assert_int_equal(rf_edf_n_signals(r), 0); /* annotation-only file */
        assert_int_equal(rf_edf_filetype(r), RF_EDF_TYPE_EDFPLUS);
        const rf_annotations *a = rf_edf_annotations(r);
        assert_int_equal(a->n, hyp_n_annot[f]);
        /* the built-in reader parses the same TALs identically */
        rf_edf_opts o;
        rf_edf_opts_default(&o);
        o.reader = RF_EDF_READER_BUILTIN;
        rf_edf *b;
        if (rf_edf_open_opts(path, &o, &b, &e)) fail_msg("%s", e.msg);
        const rf_annotations *ab = rf_edf_annotations(b);
        assert_int_equal(ab->n, a->n);
        for (int i = 0; i < a->n; i++) {
            assert_true(ab->items[i].onset_s == a->items[i].onset_s);
            assert_true(ab->items[i].duration_s == a->items[i].duration_s);
            assert_string_equal(ab->items[i].text, a->items[i].text);
        }
        rf_edf_free(b);
        /* spot checks of exact onsets and durations */
        double on = 0;
        for (int k = 0; k < 3; k++) {
            assert_true(a->items[k].onset_s == on);
            assert_true(a->items[k].duration_s == hyp_table[f].first_dur[k]);
            on += hyp_table[f].first_dur[k];
        }
        assert_string_equal(a->items[0].text, "Sleep stage W");
        assert_true(a->items[a->n - 1].onset_s == hyp_last_onset[f]);
        assert_string_equal(a->items[a->n - 1].text, "Sleep stage ?");
        int *s, n;
        if (rf_hypnogram_epochs(a, 30, 0, &s, &n, &e)) fail_msg("%s", e.msg);
        assert_int_equal(n, 2880);
        int c[8] = {0};
        for (int i = 0; i < n; i++) c[s[i]]++;
        for (int k = 0; k < 8; k++) {
            if (c[k] != hyp_table[f].c[k])
                fail_msg("%s: stage %s: %d epochs, expected %d", hyp_table[f].file, rf_sleep_stage_name(k), c[k],
                         hyp_table[f].c[k]);
            total[k] += c[k];
        }
        /* AASM: N3 = R&K 3 + 4; ? and movement unmapped */
        int unm = rf_hypnogram_to_aasm(s, n);
        assert_int_equal(unm, c[RF_STAGE_UNKNOWN] + c[RF_STAGE_MOVEMENT]);
        int n3 = 0;
        for (int i = 0; i < n; i++) n3 += s[i] == 3;
        assert_int_equal(n3, c[RF_STAGE_N3] + c[RF_STAGE_N4]);
        free(s);
        /* capped at the recording length: the trailing '?' is cut */
        int cap = (int)(hyp_last_onset[f] / 30);
        assert_int_equal(rf_hypnogram_epochs(a, 30, cap, &s, &n, &e), RF_OK);
        assert_int_equal(n, cap);
        assert_int_not_equal(s[n - 1], RF_STAGE_UNKNOWN);
        free(s);
        /* against a recording: fits when it lasts until the trailing '?', not when shorter */
        assert_int_equal(rf_hypnogram_check_against(a, hyp_last_onset[f], 30, &e), RF_OK);
        assert_int_equal(rf_hypnogram_check_against(a, hyp_last_onset[f] - 30, 30, &e), RF_EFORMAT);
        assert_true(contains(e.msg, hyp_table[f].file) && contains(e.msg, "does not match"));
        rf_edf_free(r);
    }
    printf("  16 hypnograms: W %ld, N1 %ld, N2 %ld, N3 %ld, N4 %ld, REM %ld, ? %ld, MT %ld epochs (%.2f s)\n", total[0],
           total[1], total[2], total[3], total[4], total[5], total[6], total[7], rf_now() - t0);
}

/* ------------------------------------------------------------------ real data: eegmat */

static void test_eegmat(void **st) {
    (void)st;
    const char *dir = rf_test_data_dir();
    if (!dir) skip();
    char path[1024];
    snprintf(path, sizeof path, "%s/eegmat/Subject00_1.edf", dir);
    rf_err e;
    rf_edf *r;
    if (rf_edf_open(path, &r, &e)) fail_msg("%s", e.msg);
    assert_int_equal(rf_edf_uses_edflib(r), 1);
    assert_int_equal(rf_edf_filetype(r), RF_EDF_TYPE_EDFPLUS);
    assert_int_equal(rf_edf_n_signals(r), 21); /* 19 EEG + A2-A1 + ECG; the annotation signal excluded */
    /* header: 182 records of 1 s (README: "180 s"; the file itself says 182 s and its only
     * annotation is "[Total time]+182.000") */
    assert_int_equal(rf_edf_n_records(r), 182);
    assert_true(rf_edf_duration(r) == 182.0);
    const rf_annotations *a = rf_edf_annotations(r);
    assert_int_equal(a->n, 1);
    assert_string_equal(a->items[0].text, "[Total time]+182.000");
    rf_edf_datetime t = rf_edf_start(r);
    assert_true(t.year == 2011 && t.month == 1 && t.day == 1 && t.hour == 0);
    const char *ch[19] = {"Fp1", "Fp2", "F3", "F4", "F7", "F8", "T3", "T4", "C3", "C4",
                          "T5",  "T6",  "P3", "P4", "O1", "O2", "Fz", "Cz", "Pz"};
    int idx[19];
    if (rf_edf_select_channels(r, ch, 19, idx, &e)) fail_msg("%s", e.msg);
    for (int k = 0; k < 19; k++) {
        assert_int_equal(idx[k], k);
        char full[32];
        snprintf(full, sizeof full, "EEG %s", ch[k]);
        assert_string_equal(rf_edf_label(r, idx[k]), full);
        assert_string_equal(rf_edf_unit(r, idx[k]), "uV");
        assert_true(rf_edf_rate(r, idx[k]) == 500.0);
        assert_int_equal(rf_edf_n_samples(r, idx[k]), 91000);
    }
    assert_int_equal(rf_edf_find_channel(r, "A2-A1"), 19);
    assert_int_equal(rf_edf_find_channel(r, "ECG"), 20);
    assert_string_equal(rf_edf_unit(r, 20), "mV");
    const char *miss[] = {"Oz"};
    assert_int_equal(rf_edf_select_channels(r, miss, 1, idx, &e), RF_EARG);
    assert_true(contains(e.msg, "Subject00_1.edf") && contains(e.msg, "'Oz' not found"));
    /* one channel: physical values within the header range, an EEG-like spread */
    double *x = read_all(r, 0);
    const rf_edf_signal *g = rf_edf_signal_info(r, 0);
    double m = 0, s2 = 0, lo = 1e9, hi = -1e9;
    for (int k = 0; k < 91000; k++) {
        m += x[k];
        lo = fmin(lo, x[k]);
        hi = fmax(hi, x[k]);
    }
    m /= 91000;
    for (int k = 0; k < 91000; k++) s2 += (x[k] - m) * (x[k] - m);
    double sd = sqrt(s2 / 91000);
    printf("  eegmat Subject00_1 Fp1: mean %.2f uV, sd %.2f uV, range [%.1f, %.1f] (header [%.1f, %.1f])\n", m, sd,
           lo, hi, g->phys_min, g->phys_max);
    assert_true(lo >= g->phys_min - 1e-9 && hi <= g->phys_max + 1e-9);
    assert_true(sd > 1 && sd < 100);
    /* the built-in reader gives the same samples */
    rf_edf_opts o;
    rf_edf_opts_default(&o);
    o.reader = RF_EDF_READER_BUILTIN;
    rf_edf *b;
    if (rf_edf_open_opts(path, &o, &b, &e)) fail_msg("%s", e.msg);
    for (int c = 0; c < 21; c += 10) {
        double *y = read_all(b, c), *z = read_all(r, c);
        assert_memory_equal(y, z, 91000 * sizeof *y);
        free(y);
        free(z);
    }
    assert_string_equal(rf_edf_annotations(b)->items[0].text, a->items[0].text);
    rf_edf_free(b);
    free(x);
    rf_edf_free(r);
}

/* ------------------------------------------------------------------ real data: eegmmidb */

/* PhysioNet WFDB annotation file (the .event sidecar): 16-bit words, type in the top 6 bits, time
 * increment in the low 10; SKIP (59) carries a 32-bit increment (high word first), AUX (63) a
 * string. Returns events whose aux text starts with "T<d> duration: ". */
typedef struct wfdb_ev {
    long t;
    int code;
    double dur;
} wfdb_ev;

static int read_wfdb_events(const char *path, wfdb_ev *ev, int max) {
    size_t n;
    unsigned char *b = slurp(path, &n);
    size_t i = 0;
    long t = 0;
    int m = 0, last = -1;
    while (i + 2 <= n) {
        unsigned w = b[i] | (unsigned)b[i + 1] << 8;
        i += 2;
        unsigned A = w >> 10, I = w & 1023;
        if (A == 0 && I == 0) break;
        if (A == 59) {
            assert_true(i + 4 <= n);
            int32_t hi = (int16_t)(b[i] | b[i + 1] << 8);
            uint32_t lo = b[i + 2] | (uint32_t)b[i + 3] << 8;
            t += (long)((int64_t)hi * 65536 + (int64_t)lo);
            i += 4;
            continue;
        }
        if (A == 63) {
            assert_true(i + I <= n);
            if (last >= 0 && I > 14 && b[i] == 'T' && memcmp(b + i + 2, " duration: ", 11) == 0) {
                char txt[64];
                size_t k = I < 63 ? I : 63;
                memcpy(txt, b + i, k);
                txt[k] = 0;
                assert_true(m < max);
                ev[m].t = ev[last].t;
                ev[m].code = txt[1] - '0';
                ev[m].dur = atof(txt + 13);
                m++;
            }
            i += I + (I & 1);
            continue;
        }
        if (A >= 60) continue;
        t += I;
        ev[m < max ? m : max - 1].t = t; /* tentative slot, filled by its AUX */
        last = m < max ? m : max - 1;
    }
    free(b);
    return m;
}

static void test_eegmmidb(void **st) {
    (void)st;
    const char *dir = rf_test_data_dir();
    if (!dir) skip();
    char path[1024], evp[1024];
    snprintf(path, sizeof path, "%s/eegmmidb/S001/S001R04.edf", dir);
    snprintf(evp, sizeof evp, "%s/eegmmidb/S001/S001R04.edf.event", dir);
    rf_err e;
    rf_edf *r;
    /* EDFlib refuses the file (non-blank fields in the annotation signal) */
    rf_edf_opts o;
    rf_edf_opts_default(&o);
    o.reader = RF_EDF_READER_EDFLIB;
    assert_int_equal(rf_edf_open_opts(path, &o, &r, &e), RF_EFORMAT);
    assert_true(contains(e.msg, "S001R04.edf") && contains(e.msg, "EDFLIB_FILE_CONTAINS_FORMAT_ERRORS") &&
                contains(e.msg, "HP:0Hz LP:0Hz N:0Hz"));
    /* default: read by the built-in reader, with the reason in the warning */
    if (rf_edf_open(path, &r, &e)) fail_msg("%s", e.msg);
    assert_int_equal(rf_edf_uses_edflib(r), 0);
    assert_true(contains(rf_edf_warning(r), "EDFlib refuses it") &&
                contains(rf_edf_warning(r), "prefiltering 'HP:0Hz LP:0Hz N:0Hz' should be blank"));
    assert_int_equal(rf_edf_n_signals(r), 64);
    assert_true(rf_edf_duration(r) == 125.0);
    for (int i = 0; i < 64; i++) {
        assert_true(rf_edf_rate(r, i) == 160.0);
        assert_int_equal(rf_edf_n_samples(r, i), 20000);
        assert_string_equal(rf_edf_unit(r, i), "uV");
    }
    assert_int_equal(rf_edf_find_channel(r, "FC5"), 0);
    assert_int_equal(rf_edf_find_channel(r, "Cz"), 10);
    assert_int_equal(rf_edf_find_channel(r, "iz"), 63);
    assert_string_equal(rf_edf_label(r, 10), "Cz..");
    rf_edf_datetime t = rf_edf_start(r);
    assert_true(t.year == 2009 && t.month == 8 && t.day == 12 && t.hour == 16 && t.minute == 15);

    const rf_annotations *a = rf_edf_annotations(r);
    assert_int_equal(a->n, 30);
    rf_event *ev;
    int ne;
    if (rf_mi_events(a, 160, 20000, &ev, &ne, &e)) fail_msg("%s", e.msg);
    int cnt[3] = {0};
    for (int i = 0; i < ne; i++) cnt[ev[i].code]++;
    /* counts as EDFlib reports them for a copy with the annotation fields blanked (below) */
    assert_int_equal(ne, 30);
    assert_int_equal(cnt[0], 15);
    assert_int_equal(cnt[1], 8);
    assert_int_equal(cnt[2], 7);
    /* against PhysioNet's .event sidecar: same onsets (samples), codes and durations */
    wfdb_ev w[64];
    int nw = read_wfdb_events(evp, w, 64);
    assert_int_equal(nw, 30);
    for (int i = 0; i < 30; i++) {
        if (ev[i].onset != w[i].t || ev[i].code != w[i].code || llabs(ev[i].duration - llround(w[i].dur * 160)) > 0)
            fail_msg("event %d: EDF+ %lld/%d/%lld, sidecar %ld/%d/%g", i, (long long)ev[i].onset, ev[i].code,
                     (long long)ev[i].duration, w[i].t, w[i].code, w[i].dur);
    }
    assert_true(ev[1].onset == 672 && ev[1].code == 2 && ev[1].duration == 656);
    free(ev);
    /* the built-in reader against EDFlib on the same data: a copy with the annotation signal's
     * prefilter and unit fields blanked, which EDFlib accepts */
    size_t n;
    unsigned char *b = slurp(path, &n);
    const int ns = 65;
    memset(b + 256 + ns * (16 + 80) + 64 * 8, ' ', 8);                            /* unit */
    memset(b + 256 + ns * (16 + 80 + 8 + 8 + 8 + 8 + 8) + 64 * 80, ' ', 80);      /* prefilter */
    char cp[600];
    tmp_path(cp, sizeof cp, "S001R04-blanked.edf");
    spit(cp, b, n);
    free(b);
    rf_edf *x;
    if (rf_edf_open(cp, &x, &e)) fail_msg("%s", e.msg);
    assert_int_equal(rf_edf_uses_edflib(x), 1);
    assert_string_equal(rf_edf_warning(x), "");
    for (int c = 0; c < 64; c += 9) {
        double *p = read_all(r, c), *q = read_all(x, c);
        assert_memory_equal(p, q, 20000 * sizeof *p);
        free(p);
        free(q);
    }
    const rf_annotations *ax = rf_edf_annotations(x);
    assert_int_equal(ax->n, a->n);
    for (int i = 0; i < a->n; i++) {
        assert_true(ax->items[i].onset_s == a->items[i].onset_s);
        assert_true(ax->items[i].duration_s == a->items[i].duration_s);
        assert_string_equal(ax->items[i].text, a->items[i].text);
    }
    rf_edf_free(x);
    rf_edf_free(r);

    /* the truncated runs: 61 records promised, 60 complete */
    for (int run = 1; run <= 2; run++) {
        snprintf(path, sizeof path, "%s/eegmmidb/S001/S001R%02d.TRUNCATED.edf", dir, run);
        rf_edf_opts_default(&o);
        n_warn_calls = 0;
        o.warn = on_warn;
        if (rf_edf_open_opts(path, &o, &r, &e)) fail_msg("%s", e.msg);
        assert_int_equal(n_warn_calls, 1); /* truncation (unlike R04, the annotation fields are blank) */
        const char *wmsg = rf_edf_warning(r);
        printf("  warning: %s\n", wmsg);
        assert_true(contains(wmsg, path) && contains(wmsg, "says 61") && contains(wmsg, "only 60 complete"));
        assert_int_equal(rf_edf_n_records_header(r), 61);
        assert_int_equal(rf_edf_n_records(r), 60);
        assert_true(rf_edf_duration(r) == 60.0);
        assert_int_equal(rf_edf_n_signals(r), 64);
        assert_int_equal(rf_edf_n_samples(r, 63), 9600);
        double v[2];
        assert_int_equal(rf_edf_read_channel(r, 63, 9599, 1, v, &e), RF_OK);
        assert_int_equal(rf_edf_read_channel(r, 63, 9599, 2, v, &e), RF_EARG);
        double *y = read_all(r, 0);
        free(y);
        /* the run's one annotation (T0 for the whole baseline run) is in record 0 */
        assert_int_equal(rf_edf_annotations(r)->n, 1);
        assert_string_equal(rf_edf_annotations(r)->items[0].text, "T0");
        rf_edf_free(r);
        o.strict_size = 1;
        assert_int_equal(rf_edf_open_opts(path, &o, &r, &e), RF_EFORMAT);
        assert_true(contains(e.msg, path) && contains(e.msg, "says 61") && contains(e.msg, "only 60 complete"));
    }
}

/* ------------------------------------------------------------------ corrupted-EDF corpus */

typedef struct fuzz_stats {
    int variants, rejected, accepted, accepted_builtin, accepted_edflib, compared, disagree;
} fuzz_stats;

/* Opens a variant with both readers; must not crash; a rejection carries a message; an accepted
 * file is read completely (every channel, every annotation touched). */
static int try_variant(const char *path, fuzz_stats *fs) {
    int ok_any = 0;
    double *keep[8] = {0};
    int64_t keep_n[8] = {0};
    int keep_ns = -1, keep_na = -1;
    rf_annotations keep_a = {0};
    for (int mode = 0; mode < 2; mode++) {
        rf_edf_opts o;
        rf_edf_opts_default(&o);
        o.reader = mode ? RF_EDF_READER_BUILTIN : RF_EDF_READER_AUTO;
        rf_edf *r = NULL;
        rf_err e;
        rf_err_clear(&e);
        int rc = rf_edf_open_opts(path, &o, &r, &e);
        if (rc != RF_OK) {
            assert_null(r);
            if (!e.msg[0] || e.code == RF_OK) fail_msg("rejection without a message for %s", path);
            if (mode == 0) fs->rejected++;
            if (contains(e.msg, "disagree")) fs->disagree++;
            continue;
        }
        ok_any = 1;
        if (mode == 0) fs->accepted++;
        else fs->accepted_builtin++;
        if (mode == 0 && rf_edf_uses_edflib(r)) fs->accepted_edflib++;
        const int both = mode == 1 && keep_ns >= 0;
        if (both) assert_int_equal(rf_edf_n_signals(r), keep_ns);
        for (int i = 0; i < rf_edf_n_signals(r); i++) {
            int64_t n = rf_edf_n_samples(r, i);
            assert_true(n >= 0 && n <= 50000000);
            double *x = malloc((size_t)(n ? n : 1) * sizeof *x);
            assert_non_null(x);
            int rr = rf_edf_read_channel(r, i, 0, n, x, &e);
            if (rr != RF_OK) assert_true(e.msg[0] != 0);
            assert_true(isfinite(rf_edf_rate(r, i)) && rf_edf_rate(r, i) > 0);
            if (mode == 0 && rf_edf_uses_edflib(r) && i < 8 && rr == RF_OK) {
                keep[i] = x;
                keep_n[i] = n;
                continue;
            }
            if (both && i < 8 && keep[i]) { /* EDFlib and the built-in reader agree bit for bit */
                assert_int_equal(n, keep_n[i]);
                if (memcmp(x, keep[i], (size_t)n * sizeof *x))
                    fail_msg("%s: signal %d: EDFlib and the built-in reader differ", path, i);
                fs->compared++;
            }
            free(x);
        }
        const rf_annotations *a = rf_edf_annotations(r);
        for (int i = 0; i < a->n; i++) assert_non_null(a->items[i].text);
        if (mode == 0 && rf_edf_uses_edflib(r)) {
            keep_ns = rf_edf_n_signals(r);
            keep_na = a->n;
            assert_int_equal(rf_annotations_copy(a, &keep_a, &e), RF_OK);
        } else if (both) {
            assert_int_equal(a->n, keep_na);
            for (int i = 0; i < a->n; i++) {
                assert_true(a->items[i].onset_s == keep_a.items[i].onset_s);
                assert_true(a->items[i].duration_s == keep_a.items[i].duration_s);
                assert_string_equal(a->items[i].text, keep_a.items[i].text);
            }
        }
        rf_edf_free(r);
    }
    for (int i = 0; i < 8; i++) free(keep[i]);
    rf_annotations_free(&keep_a);
    fs->variants++;
    return ok_any;
}

static void put_field(unsigned char *b, size_t off, size_t w, const char *v) {
    size_t n = strlen(v);
    memset(b + off, ' ', w);
    memcpy(b + off, v, n < w ? n : w);
}

static void fuzz_base(const char *name, const unsigned char *base, size_t n, uint64_t seed, int n_flips,
                      fuzz_stats *fs) {
    char path[600];
    fuzz_path(path, sizeof path, "fuzz.edf");
    int ns = atoi((const char *)base + 252);
    size_t hdr = 256 * (size_t)(ns + 1);
    unsigned char *b = malloc(n);
    /* 1. truncated at every header field boundary (and a few places in the data) */
    size_t cuts[2048];
    int nc = 0;
    const size_t fixed[] = {0, 8, 88, 168, 176, 184, 192, 236, 244, 252, 256};
    for (size_t k = 0; k < sizeof fixed / sizeof *fixed; k++) cuts[nc++] = fixed[k];
    const int sw[10] = {16, 80, 8, 8, 8, 8, 8, 80, 8, 32};
    size_t off = 256;
    for (int f = 0; f < 10; f++)
        for (int s = 0; s < ns; s++) {
            cuts[nc++] = off;
            off += (size_t)sw[f];
        }
    cuts[nc++] = hdr + 1;
    cuts[nc++] = hdr + (n - hdr) / 2;
    cuts[nc++] = n - 1;
    for (int k = 0; k < nc; k++) {
        if (cuts[k] >= n) continue;
        spit(path, base, cuts[k]);
        try_variant(path, fs);
    }
    /* 2. random byte changes in the header */
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    const unsigned char pool[] = "0123456789 -+.eE";
    for (int v = 0; v < n_flips; v++) {
        memcpy(b, base, n);
        int k = 1 + (int)rf_rng_below(&rng, 3);
        for (int j = 0; j < k; j++) {
            size_t p = (size_t)rf_rng_below(&rng, hdr);
            uint64_t kind = rf_rng_below(&rng, 3);
            b[p] = kind == 0 ? (unsigned char)rf_rng_below(&rng, 256)
                 : kind == 1 ? pool[rf_rng_below(&rng, sizeof pool - 1)]
                             : (unsigned char)(0x80 + rf_rng_below(&rng, 128));
        }
        spit(path, b, n);
        try_variant(path, fs);
    }
    /* 3. impossible numbers in every numeric field of the fixed header and of signal 1 */
    static const char *vals[] = {"-5", "0", "-1", "99999999", "abc", "1e308", "nan", "", "0x10", "1 2",
                                 "\xff\xfe", "-0", "3.5", "+7", "1e-9", "2147483648"};
    const size_t nf_off[] = {184, 236, 244, 252};
    const size_t nf_w[] = {8, 8, 8, 4};
    for (size_t f = 0; f < 4; f++)
        for (size_t v = 0; v < sizeof vals / sizeof *vals; v++) {
            memcpy(b, base, n);
            put_field(b, nf_off[f], nf_w[f], vals[v]);
            spit(path, b, n);
            try_variant(path, fs);
        }
    for (int f = 3; f <= 8; f++) { /* physical/digital min/max, samples per record */
        size_t fo = 256;
        for (int g = 0; g < f; g++) fo += (size_t)sw[g] * (size_t)ns;
        for (size_t v = 0; v < sizeof vals / sizeof *vals; v++) {
            memcpy(b, base, n);
            put_field(b, fo, 8, vals[v]);
            spit(path, b, n);
            try_variant(path, fs);
        }
    }
    /* 4. data area: annotation bytes scrambled (TAL parser) */
    for (int v = 0; v < 40; v++) {
        memcpy(b, base, n);
        for (int j = 0; j < 4; j++) {
            size_t p = hdr + (size_t)rf_rng_below(&rng, n - hdr);
            static const unsigned char tal[] = {0, 0x14, 0x15, '+', '-', '.', '1', 'x'};
            b[p] = tal[rf_rng_below(&rng, sizeof tal)];
        }
        spit(path, b, n);
        try_variant(path, fs);
    }
    printf("  %s: %d variants so far\n", name, fs->variants);
    free(b);
}

/* Specific corruptions must be rejected with the field named. */
static void expect_reject(const unsigned char *base, size_t n, size_t off, size_t w, const char *val,
                          const char *field) {
    char path[600];
    fuzz_path(path, sizeof path, "reject.edf");
    unsigned char *b = malloc(n);
    memcpy(b, base, n);
    put_field(b, off, w, val);
    spit(path, b, n);
    free(b);
    for (int mode = 0; mode < 2; mode++) {
        rf_edf_opts o;
        rf_edf_opts_default(&o);
        o.reader = mode ? RF_EDF_READER_BUILTIN : RF_EDF_READER_AUTO;
        rf_edf *r;
        rf_err e;
        int rc = rf_edf_open_opts(path, &o, &r, &e);
        if (rc == RF_OK) fail_msg("value '%s' in field '%s' was accepted", val, field);
        if (!contains(e.msg, field) || !contains(e.msg, path))
            fail_msg("message for '%s' = '%s' does not name the field and file: %s", field, val, e.msg);
    }
}

static void test_corrupted_corpus(void **st) {
    (void)st;
    double t0 = rf_now();
    fuzz_stats fs = {0};
    rt_file f;
    rt_make(&f);
    rf_edf_wsignal sig[3];
    rf_edf_wspec sp;
    rf_err e;
    char path[600];
    /* base A: small EDF+ from the writer (3 records of 0.5 s, 2 annotation signals) */
    tmp_path(path, sizeof path, "baseA.edf");
    rt_spec(&f, sig, &sp, 0);
    for (int s = 0; s < 3; s++) sig[s].n = (int64_t)(f.rate[s] * 1.5);
    sp.record_s = 0.5;
    rf_annotations few = {0};
    rf_annotations_add(&few, 0.25, 0.5, "Sleep stage 1", &e);
    rf_annotations_add(&few, 1.0, -1, "T2", &e);
    sp.annots = &few;
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    size_t na;
    unsigned char *A = slurp(path, &na);
    assert_int_equal(try_variant(path, &fs), 1);
    fuzz_base("EDF+ from the writer", A, na, 11, 300, &fs);
    /* base C: the same as BDF+ */
    tmp_path(path, sizeof path, "baseC.bdf");
    sp.bdf = 1;
    assert_int_equal(rf_edf_write(path, &sp, &e), RF_OK);
    size_t nc;
    unsigned char *C = slurp(path, &nc);
    fuzz_base("BDF+ from the writer", C, nc, 12, 150, &fs);

    /* targeted rejections, with the field named */
    expect_reject(A, na, 236, 8, "-5", "number of data records");
    expect_reject(A, na, 236, 8, "abc", "number of data records");
    expect_reject(A, na, 244, 8, "-1", "duration of a data record");
    expect_reject(A, na, 244, 8, "0", "duration of a data record");
    expect_reject(A, na, 252, 4, "0", "number of signals");
    expect_reject(A, na, 252, 4, "x", "number of signals");
    expect_reject(A, na, 184, 8, "1024", "number of bytes in header record");
    expect_reject(A, na, 0, 8, "1", "version");
    expect_reject(A, na, 168, 8, "32.13.99", "startdate");
    expect_reject(A, na, 176, 8, "25.00.00", "starttime");
    expect_reject(A, na, 192, 44, "EDF+D", "reserved");
    const int ns = atoi((const char *)A + 252); /* 3 data signals + 1 annotation signal */
    assert_int_equal(ns, 4);
    expect_reject(A, na, 184, 8, "1536", "number of bytes in header record");
    const size_t spr0 = 256 + (size_t)ns * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80);
    expect_reject(A, na, spr0, 8, "0", "nr of samples in each data record");
    expect_reject(A, na, spr0, 8, "-3", "nr of samples in each data record");
    expect_reject(A, na, spr0, 8, "99999999", "data record");
    expect_reject(A, na, 256 + (size_t)ns * (16 + 80 + 8 + 8 + 8), 8, "40000", "digital minimum");
    expect_reject(A, na, 256 + (size_t)ns * (16 + 80 + 8 + 8 + 8), 8, "32767", "digital minimum");
    expect_reject(A, na, 256 + (size_t)ns * (16 + 80 + 8), 8, "1.2.3", "physical minimum");
    expect_reject(A, na, 256 + (size_t)ns * (16 + 80 + 8 + 8), 8, "-200", "physical maximum");
    expect_reject(A, na, 256, 16, "Fp\x01z", "label");
    expect_reject(A, na, 256 + 16 * 3, 16, "Not Annotations", "EDF Annotations");
    /* an absurd record count is not an error: the complete records are read, with a warning */
    {
        unsigned char *b = malloc(na);
        memcpy(b, A, na);
        put_field(b, 236, 8, "99999999");
        fuzz_path(path, sizeof path, "absurd.edf");
        spit(path, b, na);
        free(b);
        rf_edf *r;
        assert_int_equal(rf_edf_open(path, &r, &e), RF_OK);
        assert_int_equal(rf_edf_n_records(r), 3);
        assert_true(contains(rf_edf_warning(r), "says 99999999"));
        rf_edf_free(r);
    }

    /* base B: the real eegmat header with its first two records (record count set to 2) */
    const char *dir = rf_test_data_dir();
    if (dir) {
        char rp[1024];
        snprintf(rp, sizeof rp, "%s/eegmat/Subject00_1.edf", dir);
        size_t nr;
        unsigned char *R = slurp(rp, &nr);
        const size_t hdr = 256 * 23; /* 21 signals + the annotation signal */
        assert_int_equal(atoi((const char *)R + 252), 22);
        assert_int_equal((nr - hdr) % 182, 0); /* 182 records */
        const size_t rec = (nr - hdr) / 182;
        assert_true(rec > 2 * 21 * 500);
        unsigned char *B = malloc(hdr + 2 * rec);
        memcpy(B, R, hdr + 2 * rec);
        put_field(B, 236, 8, "2");
        tmp_path(path, sizeof path, "baseB.edf");
        spit(path, B, hdr + 2 * rec);
        assert_int_equal(try_variant(path, &fs), 1);
        fuzz_base("eegmat header", B, hdr + 2 * rec, 13, 300, &fs);
        free(B);
        free(R);
    }
    double secs = rf_now() - t0;
    printf("  corrupted corpus: %d variants, %d rejected with a message, %d read safely (%d of them by EDFlib), "
           "%d read when forced to the built-in reader; %d channels compared EDFlib vs built-in; %.2f s\n",
           fs.variants, fs.rejected, fs.accepted, fs.accepted_edflib, fs.accepted_builtin, fs.compared, secs);
    assert_true(fs.compared > 100);
    assert_int_equal(fs.disagree, 0); /* whenever EDFlib accepts a file, it reads the header as we do */
    assert_true(fs.variants > (dir ? 1600 : 900)); /* base B needs the shared data */
    assert_true(fs.rejected > fs.variants / 2);
    rf_annotations_free(&few);
    free(A);
    free(C);
    rt_free(&f);
}

static int teardown_all(void **st) {
    (void)st;
    rm_tmpdir();
    return 0;
}

int main(void) {
    atexit(rm_tmpdir); /* also when a test fails */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_channels),         cmocka_unit_test(test_open_twice),
        cmocka_unit_test(test_plain_edf_bdf),
        cmocka_unit_test(test_truncated_synthetic), cmocka_unit_test(test_hypnogram_rules),
        cmocka_unit_test(test_annotations_outside), cmocka_unit_test(test_sleep_hypnograms),
        cmocka_unit_test(test_eegmat),           cmocka_unit_test(test_eegmmidb),
        cmocka_unit_test(test_corrupted_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
