/* renflow eeg prepare: windows, labels, subjects and manifest from EDF+ files written here
 * (label and sleep modes), --like reproduces the settings, bad inputs give clear errors; and the
 * real eegmat recordings give the expected number of 4 s windows. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

#include "testutil.h"

/* Writes a 2-channel EDF+ file at 200 Hz of `secs` seconds: a sinusoid of freq Hz plus noise;
 * a spike of 5000 uV at second `spike_at` (< 0: none). */
static void write_edf_amp(const char *path, double secs, double freq, double spike_at, uint64_t seed, double amp) {
    const int fs = 200;
    const int64_t n = (int64_t)(secs * fs);
    double *a = malloc(sizeof(double) * n), *b = malloc(sizeof(double) * n);
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    for (int64_t i = 0; i < n; i++) {
        a[i] = amp * (20 * sin(2 * M_PI * freq * i / fs) + 5 * rf_rng_normal(&rng));
        b[i] = amp * (10 * sin(2 * M_PI * 3.0 * i / fs) + 5 * rf_rng_normal(&rng));
    }
    if (spike_at >= 0) a[(int64_t)(spike_at * fs)] = 5000;
    rf_edf_wsignal s[2] = {{.label = "EEG C3", .unit = "uV", .rate_hz = fs, .phys_min = -6000, .phys_max = 6000, .data = a, .n = n},
                           {.label = "EEG C4", .unit = "uV", .rate_hz = fs, .phys_min = -6000, .phys_max = 6000, .data = b, .n = n}};
    rf_edf_wspec w = {.record_s = 1, .n_signals = 2, .signals = s};
    rf_err e = {0};
    assert_int_equal(rf_edf_write(path, &w, &e), RF_OK);
    free(a);
    free(b);
}

static void write_edf(const char *path, double secs, double freq, double spike_at, uint64_t seed) {
    write_edf_amp(path, secs, freq, spike_at, seed, 1.0);
}

static void write_text(const char *path, const char *txt) {
    assert_int_equal(rf_write_file_atomic(path, txt, strlen(txt), NULL), RF_OK);
}

static void rm_prepared(const char *dir) {
    static const char *const names[] = {"windows.npy", "labels.npy", "subjects.npy", "recordings.npy", "manifest.json"};
    char p[2048];
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void test_label_mode_and_like(void **state) {
    (void)state;
    char dir[256], p[700], list[512], out[512], out2[512];
    rf_test_tmp(dir, sizeof dir, "prep");
    mkdir(dir, 0755);
    /* subject A: rest 20 s (10 Hz), task 12 s (6 Hz) with a spike at 5.5 s; subject B likewise */
    const char *files[4] = {"a_rest.edf", "a_task.edf", "b_rest.edf", "b_task.edf"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        write_edf(p, i % 2 ? 12 : 20, i % 2 ? 6 : 10, i == 1 ? 5.5 : -1, 7 + i);
    }
    snprintf(list, sizeof list, "%s/list.csv", dir);
    write_text(list, "file,subject,label\na_rest.edf,A,rest\na_task.edf,A,task\n# comment\nb_rest.edf,B,rest\nb_task.edf,B,task\n");
    snprintf(out, sizeof out, "%s/out", dir);
    rf_prep_cfg cfg;
    rf_prep_cfg_default(&cfg, RF_PREP_LABEL);
    cfg.rate = 100;
    cfg.window_s = 4;
    cfg.reject_absz = 20;
    rf_prep_summary s;
    rf_err e = {0};
    if (rf_eeg_prepare(list, &cfg, NULL, 0, out, 0, &s, &e)) print_message("%s\n", e.msg);
    assert_int_equal(e.code, RF_OK);
    /* 20 s -> 5 windows, 12 s -> 3; the spike (z far above 20) removes one window of a_task */
    assert_int_equal(s.windows, 5 + 2 + 5 + 3);
    assert_int_equal(s.dropped_artefact, 1);
    assert_int_equal(s.subjects, 2);
    rf_dataset d;
    assert_int_equal(rf_dataset_read_dir(out, &d, &e), RF_OK);
    assert_int_equal(d.channels, 2);
    assert_int_equal(d.length, 400);
    assert_int_equal(d.n_classes, 2);
    assert_string_equal(d.class_names[0], "rest");
    assert_string_equal(d.class_names[1], "task");
    assert_non_null(d.recordings);
    int n_task = 0;
    for (int i = 0; i < d.x.n; i++) {
        n_task += d.labels[i];
        assert_int_equal(d.subjects[i], i < 7 ? 0 : 1);
    }
    assert_int_equal(n_task, 5);
    /* robust standardisation: values are z-scores (median 0 per channel and recording) */
    double mx = 0;
    for (size_t i = 0; i < (size_t)d.x.n * d.x.d; i++) mx = fmax(mx, fabs(d.x.x[i]));
    assert_true(mx > 1 && mx < 20);
    /* the 10 Hz rest signal dominates channel C3 of a rest window: check its spectrum peak */
    {
        const float *w = d.x.x; /* first window, channel 0 */
        double best = 0;
        int bf = 0;
        for (int f = 1; f < 40; f++) {
            double re = 0, im = 0;
            for (int t = 0; t < 400; t++) {
                re += w[t] * cos(2 * M_PI * f * t / 100.0);
                im += w[t] * sin(2 * M_PI * f * t / 100.0);
            }
            if (re * re + im * im > best) {
                best = re * re + im * im;
                bf = f;
            }
        }
        assert_int_equal(bf, 10);
    }
    cJSON *man = d.manifest;
    assert_non_null(cJSON_GetObjectItem(man, "settings"));
    const cJSON *dr = cJSON_GetObjectItem(man, "dropped");
    assert_int_equal(cJSON_GetObjectItem(dr, "artefact")->valueint, 1);
    rf_dataset_free(&d);
    /* --like: the same settings and class order reproduce the same windows bit for bit */
    rf_prep_cfg like;
    char **cls = NULL;
    int nc = 0;
    snprintf(p, sizeof p, "%s/manifest.json", out);
    assert_int_equal(rf_prep_cfg_from_manifest(p, &like, &cls, &nc, &e), RF_OK);
    assert_int_equal(nc, 2);
    assert_int_equal(like.n_channels, 2);
    snprintf(out2, sizeof out2, "%s/out2", dir);
    assert_int_equal(rf_eeg_prepare(list, &like, (const char *const *)cls, nc, out2, 0, &s, &e), RF_OK);
    rf_dataset d1, d2;
    assert_int_equal(rf_dataset_read_dir(out, &d1, &e), RF_OK);
    assert_int_equal(rf_dataset_read_dir(out2, &d2, &e), RF_OK);
    assert_int_equal(d1.x.n, d2.x.n);
    assert_memory_equal(d1.x.x, d2.x.x, sizeof(float) * (size_t)d1.x.n * d1.x.d);
    rf_dataset_free(&d1);
    rf_dataset_free(&d2);
    /* a label unknown to the reference manifest is an error naming it */
    write_text(list, "file,subject,label\na_rest.edf,A,sleepy\n");
    rf_eeg_prepare(list, &like, (const char *const *)cls, nc, out2, 0, &s, &e);
    print_message("%s\n", e.msg);
    assert_int_equal(e.code, RF_EFORMAT);
    assert_non_null(strstr(e.msg, "sleepy"));
    /* the failed run left the earlier output intact */
    assert_int_equal(rf_dataset_read_dir(out2, &d2, &e), RF_OK);
    rf_dataset_free(&d2);
    for (int i = 0; i < nc; i++) free(cls[i]);
    free(cls);
    rf_prep_cfg_free(&like);
    /* bad inputs */
    write_text(list, "file,subject,label\na_rest.edf,A,rest\n");
    cfg.n_channels = 1;
    cfg.channels[0] = (char *)"Pz";
    assert_int_not_equal(rf_eeg_prepare(list, &cfg, NULL, 0, out2, 0, &s, &e), RF_OK);
    assert_non_null(strstr(e.msg, "Pz"));
    assert_non_null(strstr(e.msg, "a_rest.edf"));
    cfg.n_channels = 0;
    write_text(list, "file,label\na_rest.edf,rest\n");
    assert_int_equal(rf_eeg_prepare(list, &cfg, NULL, 0, out2, 0, &s, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "subject"));
    write_text(list, "file,subject,label\nmissing.edf,A,rest\n");
    assert_int_not_equal(rf_eeg_prepare(list, &cfg, NULL, 0, out2, 0, &s, &e), RF_OK);
    assert_non_null(strstr(e.msg, "missing.edf"));
    write_text(list, "file,subject,label\na_rest.edf,A,rest,extra\n");
    assert_int_equal(rf_eeg_prepare(list, &cfg, NULL, 0, out2, 0, &s, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "line 2"));
    rm_prepared(out);
    rm_prepared(out2);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    unlink(list);
    rmdir(dir);
}

static void test_sleep_mode(void **state) {
    (void)state;
    char dir[256], p[512], hyp[512], list[512], out[512];
    rf_test_tmp(dir, sizeof dir, "prepsleep");
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/psg.edf", dir);
    write_edf(p, 330, 10, -1, 3); /* 11 epochs of 30 s */
    /* hypnogram: W 90 s, 1 30 s, 2 60 s, 4 30 s, ? 30 s, R 30 s, Movement 30 s, W 30 s */
    rf_annotations an = {0};
    const char *st[] = {"Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 4", "Sleep stage ?", "Sleep stage R", "Movement time", "Sleep stage W"};
    const double dur[] = {90, 30, 60, 30, 30, 30, 30, 30};
    double t = 0;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(rf_annotations_add(&an, t, dur[i], st[i], NULL), RF_OK);
        t += dur[i];
    }
    static double z[330];
    rf_edf_wsignal s = {.label = "Dummy", .rate_hz = 1, .phys_min = -1, .phys_max = 1, .data = z, .n = 330};
    rf_edf_wspec w = {.record_s = 1, .n_signals = 1, .signals = &s, .annots = &an};
    snprintf(hyp, sizeof hyp, "%s/hyp.edf", dir);
    rf_err e = {0};
    if (rf_edf_write(hyp, &w, &e)) print_message("%s\n", e.msg);
    assert_int_equal(e.code, RF_OK);
    rf_annotations_free(&an);
    snprintf(list, sizeof list, "%s/list.csv", dir);
    write_text(list, "file,subject,label,hypnogram\npsg.edf,S1,,hyp.edf\n");
    snprintf(out, sizeof out, "%s/out", dir);
    rf_prep_cfg cfg;
    rf_prep_cfg_default(&cfg, RF_PREP_SLEEP);
    cfg.rate = 100;
    cfg.n_channels = 1;
    cfg.channels[0] = (char *)"C3";
    cfg.trim_wake_min = 1.0; /* keep two wake epochs on each side of sleep */
    rf_prep_summary sum;
    assert_int_equal(rf_eeg_prepare(list, &cfg, NULL, 0, out, 0, &sum, &e), RF_OK);
    /* epochs: W W W N1 N2 N2 N3(4) ? REM MT W; ?/MT unlabelled (2); the first W is more than two
     * epochs before sleep: trimmed (1); the last W is two epochs after the last sleep epoch: kept */
    assert_int_equal(sum.dropped_unlabelled, 2);
    assert_int_equal(sum.dropped_trimmed_wake, 1);
    assert_int_equal(sum.windows, 8);
    rf_dataset d;
    assert_int_equal(rf_dataset_read_dir(out, &d, &e), RF_OK);
    const int expect[8] = {0, 0, 1, 2, 2, 3, 4, 0};
    for (int i = 0; i < 8; i++) assert_int_equal(d.labels[i], expect[i]);
    assert_int_equal(d.length, 3000);
    assert_string_equal(d.class_names[4], "REM");
    rf_dataset_free(&d);
    /* a hypnogram longer than the recording is refused, naming the hypnogram */
    snprintf(p, sizeof p, "%s/psg.edf", dir);
    write_edf(p, 120, 10, -1, 3);
    assert_int_not_equal(rf_eeg_prepare(list, &cfg, NULL, 0, out, 0, &sum, &e), RF_OK);
    assert_non_null(strstr(e.msg, "hyp.edf"));
    rm_prepared(out);
    unlink(p);
    unlink(hyp);
    unlink(list);
    rmdir(dir);
}

static void test_real_eegmat(void **state) {
    (void)state;
    const char *rel = rf_test_data_dir();
    if (!rel) return;
    char data[4096];
    assert_non_null(realpath(rel, data));
    char dir[256], list[512], out[512], csv[8400];
    rf_test_tmp(dir, sizeof dir, "prepreal");
    mkdir(dir, 0755);
    snprintf(list, sizeof list, "%s/list.csv", dir);
    snprintf(csv, sizeof csv, "file,subject,label\n%s/eegmat/Subject00_1.edf,S00,rest\n%s/eegmat/Subject00_2.edf,S00,task\n", data, data);
    write_text(list, csv);
    snprintf(out, sizeof out, "%s/out", dir);
    rf_prep_cfg cfg;
    rf_prep_cfg_default(&cfg, RF_PREP_LABEL);
    rf_prep_summary s;
    rf_err e = {0};
    if (rf_eeg_prepare(list, &cfg, NULL, 0, out, 0, &s, &e)) print_message("%s\n", e.msg);
    assert_int_equal(e.code, RF_OK);
    rf_dataset d;
    assert_int_equal(rf_dataset_read_dir(out, &d, &e), RF_OK);
    /* 19 EEG channels by default (ECG and A2-A1 left out), 4 s at 128 Hz; 182 s + 62 s */
    assert_int_equal(d.channels, 19);
    assert_int_equal(d.length, 512);
    assert_int_equal(s.windows + s.dropped_artefact, 45 + 15);
    assert_true(s.dropped_artefact <= 3);
    rf_dataset_free(&d);
    rm_prepared(out);
    unlink(list);
    rmdir(dir);
}

/* Root mean square of channel c over the windows of recording r. */
static double rec_rms(const rf_dataset *d, int r, int c) {
    double ss = 0;
    long n = 0;
    for (int i = 0; i < d->x.n; i++) {
        if (d->recordings[i] != r) continue;
        const float *w = d->x.x + (size_t)i * d->x.d + (size_t)c * d->length;
        for (int t = 0; t < d->length; t++) ss += (double)w[t] * w[t];
        n += d->length;
    }
    return sqrt(ss / n);
}

/* Standardisation by subject pools a subject's recordings: a recording at 3x the amplitude keeps
 * 3x the scale (by recording, both come out alike); the manifest records the scope and --like
 * takes it over. */
static void test_subject_standardisation(void **state) {
    (void)state;
    char dir[256], p[700], list[512], out[3][512];
    rf_test_tmp(dir, sizeof dir, "prepstd");
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/a1.edf", dir);
    write_edf_amp(p, 20, 10, -1, 3, 1.0);
    snprintf(p, sizeof p, "%s/a2.edf", dir);
    write_edf_amp(p, 20, 10, -1, 4, 3.0);
    snprintf(list, sizeof list, "%s/list.csv", dir);
    write_text(list, "file,subject,label\na1.edf,A,rest\na2.edf,A,task\n");
    const int scopes[3] = {RF_STD_RECORDING, RF_STD_SUBJECT, RF_STD_NONE};
    double ratio[3];
    for (int k = 0; k < 3; k++) {
        snprintf(out[k], sizeof out[k], "%s/out%d", dir, k);
        rf_prep_cfg cfg;
        rf_prep_cfg_default(&cfg, RF_PREP_LABEL);
        cfg.rate = 100;
        cfg.robust = scopes[k];
        cfg.reject_absz = 0;
        rf_prep_summary s;
        rf_err e = {0};
        if (rf_eeg_prepare(list, &cfg, NULL, 0, out[k], 0, &s, &e)) print_message("%s\n", e.msg);
        assert_int_equal(e.code, RF_OK);
        rf_dataset d;
        assert_int_equal(rf_dataset_read_dir(out[k], &d, &e), RF_OK);
        ratio[k] = rec_rms(&d, 1, 0) / rec_rms(&d, 0, 0);
        const cJSON *st = cJSON_GetObjectItem(cJSON_GetObjectItem(d.manifest, "settings"), "standardisation");
        assert_true(cJSON_IsString(st));
        assert_string_equal(st->valuestring, rf_std_scope_name(scopes[k]));
        if (k == 1) {
            /* pooled statistics: about unit scale over both recordings together */
            const double r0 = rec_rms(&d, 0, 0), r1 = rec_rms(&d, 1, 0);
            assert_true(r0 < 1 && r1 > 1);
        }
        rf_dataset_free(&d);
    }
    assert_true(fabs(ratio[0] - 1) < 0.1);
    assert_true(fabs(ratio[1] - 3) < 0.3);
    assert_true(fabs(ratio[2] - 3) < 0.3);
    /* --like reads the scope back */
    rf_prep_cfg like;
    char **cn = NULL;
    int ncn = 0;
    rf_err e = {0};
    snprintf(p, sizeof p, "%s/manifest.json", out[1]);
    assert_int_equal(rf_prep_cfg_from_manifest(p, &like, &cn, &ncn, &e), RF_OK);
    assert_int_equal(like.robust, RF_STD_SUBJECT);
    rf_prep_cfg_free(&like);
    for (int i = 0; i < ncn; i++) free(cn[i]);
    free(cn);
    int sc = -1;
    assert_int_equal(rf_std_scope_parse("subject", &sc), RF_OK);
    assert_int_equal(sc, RF_STD_SUBJECT);
    assert_int_not_equal(rf_std_scope_parse("session", &sc), RF_OK);
    for (int k = 0; k < 3; k++) rm_prepared(out[k]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_mode_and_like),
        cmocka_unit_test(test_sleep_mode),
        cmocka_unit_test(test_subject_standardisation),
        cmocka_unit_test(test_real_eegmat),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
