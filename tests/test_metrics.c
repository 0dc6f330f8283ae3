/* Classification metrics against hand-computed values; subject-wise folds and hold-outs never
 * leak a subject; prepared data set directories are read and validated. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* truth/pred of 10 examples, 3 classes; confusion (rows = truth):
 *   [3 1 0]
 *   [0 2 1]
 *   [1 0 2]
 * accuracy 7/10; recalls 3/4, 2/3, 2/3 -> balanced 25/36; precisions 3/4, 2/3, 2/3;
 * F1 = 2tp/(row+col): 6/8, 4/6, 4/6 -> macro 25/36;
 * pe = (4*4 + 3*3 + 3*3)/100 = 0.34 -> kappa = (0.7 - 0.34)/0.66 = 0.545454... */
static void test_metrics_hand_computed(void **state) {
    (void)state;
    const int truth[10] = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2};
    const int pred[10] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 0};
    rf_class_metrics m;
    rf_err e = {0};
    assert_int_equal(rf_class_metrics_compute(truth, pred, 10, 3, &m, &e), RF_OK);
    const long conf[9] = {3, 1, 0, 0, 2, 1, 1, 0, 2};
    for (int i = 0; i < 9; i++) assert_int_equal(m.confusion[i], conf[i]);
    assert_true(fabs(m.accuracy - 0.7) < 1e-12);
    assert_true(fabs(m.balanced_accuracy - 25.0 / 36) < 1e-12);
    assert_true(fabs(m.macro_f1 - 25.0 / 36) < 1e-12);
    assert_true(fabs(m.kappa - 0.36 / 0.66) < 1e-12);
    assert_true(fabs(m.precision[0] - 0.75) < 1e-12);
    cJSON *j = rf_class_metrics_to_json(&m, NULL);
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(strstr(s, "\"confusion\":[[3,1,0],[0,2,1],[1,0,2]]"));
    free(s);
    cJSON_Delete(j);
    rf_class_metrics_free(&m);
}

/* Unbalanced case: always predicting the majority class gives accuracy 0.9 but balanced
 * accuracy 0.5, kappa 0, macro-F1 = (F1 majority + 0)/2. */
static void test_metrics_majority_baseline(void **state) {
    (void)state;
    int truth[100], pred[100];
    for (int i = 0; i < 100; i++) {
        truth[i] = i < 90 ? 0 : 1;
        pred[i] = 0;
    }
    rf_class_metrics m;
    assert_int_equal(rf_class_metrics_compute(truth, pred, 100, 2, &m, NULL), RF_OK);
    assert_true(fabs(m.accuracy - 0.9) < 1e-12);
    assert_true(fabs(m.balanced_accuracy - 0.5) < 1e-12);
    assert_true(fabs(m.kappa) < 1e-12);
    assert_true(fabs(m.macro_f1 - (180.0 / 190) / 2) < 1e-12);
    assert_true(isnan(m.precision[1]));
    rf_class_metrics_free(&m);
    /* a label outside the range is an error naming row and value */
    rf_err e = {0};
    truth[7] = 5;
    assert_int_equal(rf_class_metrics_compute(truth, pred, 100, 2, &m, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "row 7"));
}

static void test_subject_folds_never_leak(void **state) {
    (void)state;
    enum { N = 997 };
    int subj[N], fold[N];
    rf_rng rng;
    rf_rng_seed(&rng, 3);
    for (int i = 0; i < N; i++) subj[i] = 100 + (int)rf_rng_below(&rng, 23); /* 23 subjects */
    int k = 0;
    assert_int_equal(rf_subject_folds(subj, N, 5, 42, fold, &k, NULL), RF_OK);
    assert_int_equal(k, 5);
    int fold_of[200];
    for (int s = 0; s < 200; s++) fold_of[s] = -1;
    int per_fold[5] = {0};
    for (int i = 0; i < N; i++) {
        assert_true(fold[i] >= 0 && fold[i] < 5);
        if (fold_of[subj[i]] < 0) {
            fold_of[subj[i]] = fold[i];
            per_fold[fold[i]]++;
        }
        assert_int_equal(fold_of[subj[i]], fold[i]); /* one subject, one fold */
    }
    for (int f = 0; f < 5; f++) assert_true(per_fold[f] == 4 || per_fold[f] == 5); /* 23 = 4*5 + 3 */
    /* deterministic for a seed, different for another */
    int fold2[N], diff = 0;
    assert_int_equal(rf_subject_folds(subj, N, 5, 42, fold2, NULL, NULL), RF_OK);
    assert_memory_equal(fold, fold2, sizeof fold);
    assert_int_equal(rf_subject_folds(subj, N, 5, 43, fold2, NULL, NULL), RF_OK);
    for (int i = 0; i < N; i++) diff += fold[i] != fold2[i];
    assert_true(diff > 0);
    /* hold-out: whole subjects only, never all of them */
    unsigned char keep[N];
    assert_int_equal(rf_subject_holdout(subj, N, 0.2, 7, keep, NULL), RF_OK);
    int state_of[200];
    for (int s = 0; s < 200; s++) state_of[s] = -1;
    int n_a = 0;
    for (int i = 0; i < N; i++) {
        if (state_of[subj[i]] < 0) state_of[subj[i]] = keep[i];
        assert_int_equal(state_of[subj[i]], keep[i]);
        n_a += keep[i];
    }
    assert_true(n_a > 0 && n_a < N);
    rf_err e = {0};
    int one[3] = {4, 4, 4};
    assert_int_equal(rf_subject_folds(one, 3, 2, 1, fold, NULL, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "at least 2 subjects"));
}

static void write_npy_f32(const char *path, int ndim, const int64_t *shape, const float *v) {
    rf_ndarray a = {.ndim = ndim, .dtype = RF_DT_F32, .data = (void *)v};
    for (int i = 0; i < ndim; i++) a.shape[i] = shape[i];
    assert_int_equal(rf_npy_write(path, &a, NULL), RF_OK);
}
static void write_npy_i32(const char *path, int n, const int *v) {
    rf_ndarray a = {.ndim = 1, .shape = {n}, .dtype = RF_DT_I32, .data = (void *)v};
    assert_int_equal(rf_npy_write(path, &a, NULL), RF_OK);
}

static void test_dataset_dir(void **state) {
    (void)state;
    char dir[256], p[512];
    rf_test_tmp(dir, sizeof dir, "dsdir");
    mkdir(dir, 0755);
    float w[6 * 2 * 4];
    for (int i = 0; i < 48; i++) w[i] = (float)i;
    const int64_t shape[3] = {6, 2, 4};
    int y[6] = {0, 1, 2, 0, 1, 2}, s[6] = {1, 1, 2, 2, 3, 3};
    snprintf(p, sizeof p, "%s/windows.npy", dir);
    write_npy_f32(p, 3, shape, w);
    snprintf(p, sizeof p, "%s/labels.npy", dir);
    write_npy_i32(p, 6, y);
    snprintf(p, sizeof p, "%s/subjects.npy", dir);
    write_npy_i32(p, 6, s);
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    const char *man = "{\"channels\":[\"C3\",\"C4\"],\"class_names\":[\"W\",\"N1\",\"N2\"]}";
    assert_int_equal(rf_write_file_atomic(p, man, strlen(man), NULL), RF_OK);
    assert_true(rf_is_dataset_dir(dir));
    rf_dataset d;
    rf_err e = {0};
    assert_int_equal(rf_dataset_read_dir(dir, &d, &e), RF_OK);
    assert_int_equal(d.x.n, 6);
    assert_int_equal(d.x.d, 8);
    assert_int_equal(d.channels, 2);
    assert_int_equal(d.length, 4);
    assert_int_equal(d.n_classes, 3);
    assert_string_equal(d.class_names[1], "N1");
    assert_true(d.x.x[8 + 5] == 13.0f);
    unsigned char keep[6] = {0, 0, 1, 1, 0, 0};
    rf_dataset sub;
    assert_int_equal(rf_dataset_select(&d, keep, &sub, &e), RF_OK);
    assert_int_equal(sub.x.n, 2);
    assert_int_equal(sub.subjects[0], 2);
    assert_int_equal(sub.labels[1], 0);
    assert_true(sub.x.x[0] == 16.0f);
    rf_dataset_free(&sub);
    rf_dataset_free(&d);
    /* inconsistent: manifest names 3 channels, a label beyond the class names, short subjects */
    const char *bad = "{\"channels\":[\"C3\",\"C4\",\"Cz\"]}";
    assert_int_equal(rf_write_file_atomic(p, bad, strlen(bad), NULL), RF_OK);
    assert_int_equal(rf_dataset_read_dir(dir, &d, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "\"channels\""));
    const char *two = "{\"class_names\":[\"a\",\"b\"]}";
    assert_int_equal(rf_write_file_atomic(p, two, strlen(two), NULL), RF_OK);
    assert_int_equal(rf_dataset_read_dir(dir, &d, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "labels.npy"));
    assert_int_equal(rf_write_file_atomic(p, man, strlen(man), NULL), RF_OK);
    snprintf(p, sizeof p, "%s/subjects.npy", dir);
    write_npy_i32(p, 5, s);
    assert_int_equal(rf_dataset_read_dir(dir, &d, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "subjects.npy has 5"));
    const char *names[] = {"windows.npy", "labels.npy", "subjects.npy", "manifest.json"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Forward-backward posteriors equal brute-force enumeration of all label paths. */
static void test_hmm_matches_enumeration(void **state) {
    (void)state;
    enum { T = 5, C = 3 };
    int labels[40], seq[40];
    rf_rng rng;
    rf_rng_seed(&rng, 9);
    for (int i = 0; i < 40; i++) {
        labels[i] = i < 20 ? (i / 4) % C : (int)rf_rng_below(&rng, C);
        seq[i] = i < 20 ? 0 : 1;
    }
    rf_hmm h;
    assert_int_equal(rf_hmm_fit(labels, seq, 40, C, 0.5, &h, NULL), RF_OK);
    float ll[T * C], post[T * C];
    for (int i = 0; i < T * C; i++) ll[i] = (float)(2.0 * rf_rng_normal(&rng));
    int s2[T] = {0, 0, 0, 0, 0};
    const double w = 0.7;
    assert_int_equal(rf_hmm_posterior(&h, ll, s2, T, w, post, NULL), RF_OK);
    double marg[T * C] = {0}, Z = 0;
    for (int code = 0; code < 243; code++) {
        int p[T], c = code;
        for (int t = 0; t < T; t++, c /= C) p[t] = c % C;
        double lw = h.log_pi[p[0]] + w * ll[p[0]];
        for (int t = 1; t < T; t++) lw += h.log_A[p[t - 1] * C + p[t]] + w * ll[t * C + p[t]];
        const double pw = exp(lw);
        Z += pw;
        for (int t = 0; t < T; t++) marg[t * C + p[t]] += pw;
    }
    for (int i = 0; i < T * C; i++) assert_true(fabs(exp(post[i]) - marg[i] / Z) < 1e-5);
    /* the transition counts: in sequence 0 a label repeats 3 times out of 4 */
    assert_true(h.log_A[0 * C + 0] > h.log_A[0 * C + 2]);
    /* two sequences are smoothed independently: splitting changes the result */
    int s3[T] = {0, 0, 1, 1, 1};
    float post2[T * C];
    assert_int_equal(rf_hmm_posterior(&h, ll, s3, T, w, post2, NULL), RF_OK);
    int differ = 0;
    for (int i = 0; i < T * C; i++) differ += fabsf(post2[i] - post[i]) > 1e-4f;
    assert_true(differ > 0);
    rf_hmm_free(&h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_hand_computed),
        cmocka_unit_test(test_metrics_majority_baseline),
        cmocka_unit_test(test_subject_folds_never_leak),
        cmocka_unit_test(test_dataset_dir),
        cmocka_unit_test(test_hmm_matches_enumeration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
