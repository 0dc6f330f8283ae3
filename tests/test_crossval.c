/* Subject-wise cross-validation: every subject is tested exactly once, never trained on in the
 * same fold, and a separable problem is classified well above chance (a shuffled one is not). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Two classes in 4-D, class means +-1.5 on the first two axes, plus a per-subject offset. */
static void make_data(rf_dataset *d, int n_subj, int per, int shuffle_labels, uint64_t seed) {
    memset(d, 0, sizeof *d);
    const int n = n_subj * per, D = 4;
    assert_int_equal(rf_matrix_alloc(&d->x, n, D, NULL), RF_OK);
    d->labels = malloc(sizeof(int) * n);
    d->subjects = malloc(sizeof(int) * n);
    d->n_classes = 2;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    for (int s = 0; s < n_subj; s++) {
        double off[4];
        for (int j = 0; j < D; j++) off[j] = 0.3 * rf_rng_normal(&rng);
        for (int i = 0; i < per; i++) {
            const int r = s * per + i, y = (int)rf_rng_below(&rng, 2);
            d->labels[r] = y;
            d->subjects[r] = 10 + s;
            for (int j = 0; j < D; j++)
                d->x.x[(size_t)r * D + j] = (float)(off[j] + (j < 2 ? (y ? 1.5 : -1.5) : 0) + rf_rng_normal(&rng));
        }
    }
    if (shuffle_labels) {
        int *p = malloc(sizeof(int) * n);
        for (int i = 0; i < n; i++) p[i] = d->labels[i];
        rf_rng_shuffle(&rng, p, n);
        memcpy(d->labels, p, sizeof(int) * n);
        free(p);
    }
}

static void run_cv(const rf_dataset *d, rf_cv_result *r) {
    rf_flow_spec spec;
    rf_flow_spec_default(&spec, RF_FLOW_REALNVP, d->x.d);
    spec.blocks = 2;
    spec.hidden = 16;
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.epochs = 30;
    tc.batch = 32;
    tc.lr = 5e-3f;
    tc.progress = 0;
    tc.threads = 1;
    rf_cv_cfg cfg = {.folds = 3, .seed = 5};
    rf_err e = {0};
    assert_int_equal(rf_crossval(d, &spec, &tc, &cfg, r, &e), RF_OK);
}

static void test_cv_subjects_and_accuracy(void **state) {
    (void)state;
    rf_dataset d;
    make_data(&d, 7, 60, 0, 11);
    rf_cv_result r;
    run_cv(&d, &r);
    assert_int_equal(r.k, 3);
    int seen[7] = {0}, total = 0;
    for (int f = 0; f < r.k; f++) {
        const rf_cv_fold *F = &r.folds[f];
        total += F->n_test;
        assert_int_equal(F->n_train + F->n_val + F->n_test, d.x.n);
        for (int i = 0; i < F->n_test_subjects; i++) seen[F->test_subjects[i] - 10]++;
        print_message("fold %d: accuracy %.3f n_test %d best_epoch %d\n", f, F->metrics.accuracy, F->n_test, F->best_epoch);
        /* Bayes accuracy of this problem is Phi(1.5 * sqrt 2) = 0.983; allow for subject offsets */
        assert_true(F->metrics.accuracy > 0.85);
    }
    for (int s = 0; s < 7; s++) assert_int_equal(seen[s], 1);
    assert_int_equal(total, d.x.n);
    assert_int_equal(r.pooled.n, d.x.n);
    assert_true(r.mean[3] > 0.7 && r.sd[3] >= 0);
    cJSON *j = rf_cv_result_to_json(&r, NULL);
    assert_non_null(j);
    cJSON_Delete(j);
    rf_cv_result_free(&r);
    rf_dataset_free(&d);
    /* shuffled labels: nothing to learn, balanced accuracy near 0.5 */
    make_data(&d, 7, 60, 1, 11);
    run_cv(&d, &r);
    assert_true(fabs(r.pooled.balanced_accuracy - 0.5) < 0.12);
    rf_cv_result_free(&r);
    rf_dataset_free(&d);
}

/* The discriminative references on the same folds: logistic regression and an MLP. */
static void test_cv_discriminative(void **state) {
    (void)state;
    rf_dataset d;
    make_data(&d, 6, 80, 0, 21);
    for (int nh = 0; nh <= 1; nh++) {
        rf_disc_cfg dc;
        rf_disc_cfg_default(&dc);
        dc.n_hidden = nh;
        dc.hidden = 16;
        dc.epochs = 30;
        dc.batch = 32;
        rf_train_cfg tc;
        rf_train_cfg_default(&tc);
        tc.progress = 0;
        rf_cv_cfg cfg = {.folds = 3, .seed = 2, .disc = &dc};
        rf_cv_result r;
        rf_err e = {0};
        assert_int_equal(rf_crossval(&d, NULL, &tc, &cfg, &r, &e), RF_OK);
        assert_true(r.pooled.accuracy > 0.85);
        assert_true(isnan(r.folds[0].test_nll));
        rf_cv_result_free(&r);
    }
    /* bad labels are an error, not a crash */
    d.labels[3] = 7;
    rf_disc_cfg dc;
    rf_disc_cfg_default(&dc);
    rf_err e = {0};
    assert_null(rf_disc_train(&d.x, d.labels, 2, NULL, NULL, &dc, &e));
    assert_non_null(strstr(e.msg, "row 3"));
    rf_dataset_free(&d);
}

static void test_cv_needs_subjects(void **state) {
    (void)state;
    rf_dataset d;
    make_data(&d, 3, 10, 0, 1);
    free(d.subjects);
    d.subjects = NULL;
    rf_flow_spec spec;
    rf_flow_spec_default(&spec, RF_FLOW_REALNVP, 4);
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    rf_cv_cfg cfg = {.folds = 3, .seed = 5};
    rf_cv_result r;
    rf_err e = {0};
    assert_int_equal(rf_crossval(&d, &spec, &tc, &cfg, &r, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "subject"));
    rf_dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cv_subjects_and_accuracy),
        cmocka_unit_test(test_cv_discriminative),
        cmocka_unit_test(test_cv_needs_subjects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
