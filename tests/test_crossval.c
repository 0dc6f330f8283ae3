/* Subject-wise cross-validation: every subject is tested exactly once, never trained on in the
 * same fold, and a separable problem is classified well above chance (a shuffled one is not). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* A small RealNVP (2 blocks) and quiet one-thread training with batch 32. */
static void small_setup(int D, int hidden, int epochs, float lr, rf_flow_spec *spec, rf_train_cfg *tc) {
    rf_flow_spec_default(spec, RF_FLOW_REALNVP, D);
    spec->blocks = 2;
    spec->hidden = hidden;
    rf_train_cfg_default(tc);
    tc->epochs = epochs;
    tc->batch = 32;
    tc->lr = lr;
    tc->progress = 0;
    tc->threads = 1;
}

static void run_cv(const rf_dataset *d, rf_cv_result *r) {
    rf_flow_spec spec;
    rf_train_cfg tc;
    small_setup(d->x.d, 16, 30, 5e-3f, &spec, &tc);
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

/* An ensemble of K flows per fold: each member is written, the fold's predictions are the argmax
 * of the members' mean posterior and its test NLL is that of their equal mixture (recomputed here
 * from the saved members). A hard problem (means +-0.35) so that members disagree. With a view
 * (the data with two columns mapped affinely: another version of the same rows), members take
 * the data and the view in turn; the NLL is then not reported (different variables). log_pool:
 * the mean log posterior decides instead of the mean posterior. */
static void run_ensemble(int with_view, int log_pool) {
    rf_dataset d;
    make_data(&d, 6, 50, 0, 31);
    for (int i = 0; i < d.x.n; i++)
        for (int j = 0; j < 2; j++) d.x.x[(size_t)i * 4 + j] *= 0.25f;
    rf_matrix view;
    assert_int_equal(rf_matrix_alloc(&view, d.x.n, 4, NULL), RF_OK);
    for (size_t i = 0; i < (size_t)d.x.n * 4; i++) view.x[i] = (i % 4 == 1 || i % 4 == 2) ? -3 * d.x.x[i] + 2 : d.x.x[i];
    rf_flow_spec spec;
    rf_train_cfg tc;
    small_setup(4, 8, 15, 3e-3f, &spec, &tc);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "/tmp/rf-test-cv-ens-%ld", (long)getpid());
    const int K = 3;
    /* with the view: members 0 and 2 on the data, 1 on the view */
    rf_cv_cfg cfg = {.folds = 2, .seed = 3, .ensemble = K, .model_prefix = prefix, .log_pool = log_pool,
                     .views = with_view ? &view : NULL, .n_views = with_view ? 1 : 0};
    rf_cv_result r;
    rf_err e = {0};
    assert_int_equal(rf_crossval(&d, &spec, &tc, &cfg, &r, &e), RF_OK);
    int differs = 0;
    for (int f = 0; f < r.k; f++) {
        const rf_cv_fold *F = &r.folds[f];
        assert_int_equal(F->members, K);
        /* the fold's test rows, of the data and of the view */
        unsigned char *keep = calloc((size_t)d.x.n, 1);
        for (int i = 0; i < d.x.n; i++)
            for (int s = 0; s < F->n_test_subjects; s++) keep[i] |= d.subjects[i] == F->test_subjects[s];
        rf_dataset t, tv, dv = d;
        dv.x = view;
        assert_int_equal(rf_dataset_select(&d, keep, &t, &e), RF_OK);
        assert_int_equal(rf_dataset_select(&dv, keep, &tv, &e), RF_OK);
        const int n = t.x.n;
        double *acc = calloc((size_t)n * 2, sizeof *acc), *mix = calloc((size_t)n, sizeof *mix);
        float *post = malloc(sizeof(float) * n * 2), *lp = malloc(sizeof(float) * n);
        int *pred = malloc(sizeof(int) * n), *pred0 = malloc(sizeof(int) * n);
        float first_param = 0;
        for (int m = 0; m < K; m++) {
            char path[128];
            if (m == 0) snprintf(path, sizeof path, "%s-fold%d.rf", prefix, f);
            else snprintf(path, sizeof path, "%s-fold%d-m%d.rf", prefix, f, m);
            rf_flow *model = rf_flow_load(path, &e);
            assert_non_null(model);
            const rf_matrix *x = with_view && m % 2 ? &tv.x : &t.x;
            if (with_view) assert_int_equal(cJSON_GetObjectItem(model->meta, "cv_view")->valueint, m % 2);
            /* members are trained from different seeds */
            const float p = model->params[model->n_params / 2];
            if (m == 0) first_param = p;
            else assert_true(p != first_param);
            assert_int_equal(rf_flow_predict(model, x, NULL, m == 0 ? pred0 : pred, post, &e), RF_OK);
            for (int i = 0; i < 2 * n; i++) acc[i] += log_pool ? post[i] : exp(post[i]);
            rf_flow_ws *w = rf_flow_ws_create(model, 256, 1, &e);
            rf_eval_nll(model, w, x, NULL, lp);
            for (int i = 0; i < n; i++) mix[i] += exp((double)lp[i]) / K;
            rf_flow_ws_free(w);
            rf_flow_free(model);
            unlink(path);
        }
        long conf[4] = {0}, conf0[4] = {0};
        double nll = 0;
        for (int i = 0; i < n; i++) {
            conf[t.labels[i] * 2 + (acc[2 * i + 1] > acc[2 * i])]++;
            conf0[t.labels[i] * 2 + pred0[i]]++;
            nll -= log(mix[i]) / n;
        }
        for (int q = 0; q < 4; q++) {
            assert_int_equal(F->metrics.confusion[q], conf[q]);
            differs |= conf[q] != conf0[q];
        }
        print_message("%s fold %d: ensemble accuracy %.3f, test NLL %.6f (recomputed %.6f)\n", with_view ? "views" : "seeds",
                      f, F->metrics.accuracy, F->test_nll, nll);
        if (with_view) assert_true(isnan(F->test_nll));
        else assert_true(fabs(F->test_nll - nll) < 1e-4 * fabs(nll));
        free(keep);
        free(acc);
        free(mix);
        free(post);
        free(lp);
        free(pred);
        free(pred0);
        rf_dataset_free(&t);
        rf_dataset_free(&tv);
    }
    /* the mean posterior decides, not member 0 alone; Bayes accuracy is Phi(0.375 sqrt 2) = 0.70 */
    assert_true(differs);
    assert_true(r.pooled.accuracy > 0.55);
    rf_cv_result_free(&r);
    /* a view of another shape is refused */
    view.d = 3;
    assert_int_equal(rf_crossval(&d, &spec, &tc, &(rf_cv_cfg){.folds = 2, .seed = 3, .views = &view, .n_views = 1}, &r, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "view 1"));
    view.d = 4;
    rf_matrix_free(&view);
    rf_dataset_free(&d);
}

static void test_cv_ensemble(void **state) {
    (void)state;
    run_ensemble(0, 0);
}

static void test_cv_ensemble_views(void **state) {
    (void)state;
    run_ensemble(1, 1); /* and the log-linear pool */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cv_subjects_and_accuracy),
        cmocka_unit_test(test_cv_discriminative),
        cmocka_unit_test(test_cv_needs_subjects),
        cmocka_unit_test(test_cv_ensemble),
        cmocka_unit_test(test_cv_ensemble_views),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
