/* Subject-wise k-fold cross-validation of class-conditional flows. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "renflow/adapt.h"
#include "renflow/crossval.h"

void rf_cv_result_free(rf_cv_result *r) {
    if (!r) return;
    for (int f = 0; r->folds && f < r->k; f++) {
        rf_class_metrics_free(&r->folds[f].metrics);
        free(r->folds[f].test_subjects);
    }
    free(r->folds);
    rf_class_metrics_free(&r->pooled);
    memset(r, 0, sizeof *r);
}

static void metric_values(const rf_class_metrics *m, double v[4]) {
    v[0] = m->accuracy;
    v[1] = m->balanced_accuracy;
    v[2] = m->macro_f1;
    v[3] = m->kappa;
}

/* log p(c | x) - log p_train(c) for every row (log p(x | c) up to a per-row constant); an adapted
 * flow uses each subject's statistics. */
static int class_scores(const rf_flow *model, const rf_disc *dm, const rf_matrix *x, const int *subjects, int C,
                        const float *log_prior, float *out, rf_err *e) {
    int *tmp = malloc(sizeof(int) * (size_t)(x->n > 0 ? x->n : 1)), rc;
    if (!tmp) return rf_err_set(e, RF_ENOMEM, "out of memory");
    if (model) {
        rc = rf_flow_predict_subjects(model, x, subjects, NULL, tmp, out, e);
    } else {
        rc = rf_disc_predict(dm, x, tmp, out, e);
        for (size_t i = 0; !rc && i < (size_t)x->n * C; i++)
            out[i] = logf(out[i] > 1e-30f ? out[i] : 1e-30f) - log_prior[i % C];
    }
    free(tmp);
    return rc;
}

/* HMM decision on one data set: pred from smoothed posteriors. */
static int hmm_predict(const rf_hmm *h, const float *scores, const int *rec, int n, double w, float *post,
                       int *pred, rf_err *e) {
    int rc = rf_hmm_posterior(h, scores, rec, n, w, post, e);
    if (!rc) rf_argmax_rows(post, NULL, n, h->C, pred);
    return rc;
}

/* Trains and tests one fold. pred receives the test predictions. */
static int run_fold(const rf_dataset *d, const int *fold_of, int f, const rf_flow_spec *spec0,
                    const rf_train_cfg *tc0, const rf_cv_cfg *cfg, rf_cv_fold *out, int *pred, rf_err *e) {
    const int n = d->x.n, C = d->n_classes;
    int rc = RF_OK, *vpred = NULL;
    unsigned char *in_tr = malloc((size_t)n), *in_te = malloc((size_t)n), *tr_keep = NULL;
    rf_dataset rest = {0}, test = {0}, tr = {0}, va = {0};
    rf_flow *model = NULL;
    rf_disc *dm = NULL;
    rf_hmm hmm = {0};
    float *log_prior = malloc(sizeof(float) * (size_t)C), *ts = NULL, *vs = NULL, *post = NULL;
    char path[4096];
    if (!in_tr || !in_te || !log_prior) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        in_te[i] = fold_of[i] == f;
        in_tr[i] = !in_te[i];
    }
    if ((rc = rf_dataset_select(d, in_tr, &rest, e)) || (rc = rf_dataset_select(d, in_te, &test, e))) goto done;
    if (!(tr_keep = malloc((size_t)rest.x.n))) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = rf_subject_holdout(rest.subjects, rest.x.n, 0.1, cfg->seed + 1000 + (uint64_t)f, tr_keep, e))) goto done;
    if ((rc = rf_dataset_select(&rest, tr_keep, &tr, e))) goto done;
    for (int i = 0; i < rest.x.n; i++) tr_keep[i] = !tr_keep[i];
    if ((rc = rf_dataset_select(&rest, tr_keep, &va, e))) goto done;
    /* training class frequencies (add-one) */
    double *cnt = calloc((size_t)C, sizeof *cnt), tot = 0;
    if (!cnt) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < tr.x.n; i++) cnt[tr.labels[i]]++;
    for (int c = 0; c < C; c++) tot += cnt[c] + 1;
    for (int c = 0; c < C; c++) log_prior[c] = (float)log((cnt[c] + 1) / tot);
    const double t0 = rf_now();
    if (cfg->disc) {
        rf_disc_cfg dc = *cfg->disc;
        dc.seed = tc0->seed + (uint64_t)f;
        dm = rf_disc_train(&tr.x, tr.labels, C, &va.x, va.labels, &dc, e);
        out->seconds = rf_now() - t0;
        out->test_nll = NAN;
        free(cnt);
        if (!dm) {
            rc = e ? e->code : RF_EARG;
            goto done;
        }
    } else {
        rf_flow_spec spec = *spec0;
        spec.D = d->x.d;
        spec.base = RF_BASE_CLASS;
        spec.n_classes = C;
        rf_train_cfg tc = *tc0;
        tc.seed = tc0->seed + (uint64_t)f;
        if (cfg->model_prefix) snprintf(path, sizeof path, "%s-fold%d.rf", cfg->model_prefix, f);
        else snprintf(path, sizeof path, "/tmp/renflow-cv-%ld-fold%d.rf", (long)getpid(), f);
        tc.out_path = path;
        tc.resume = 0;
        if (cfg->subject_adapt == 2) {
            tc.subject_adapt = 1;
            tc.train_subjects = tr.subjects;
            tc.val_subjects = va.subjects;
        }
        rf_rng rng;
        rf_rng_seed(&rng, tc.seed);
        if (!(model = rf_flow_create(&spec, &rng, e))) {
            free(cnt);
            rc = e ? e->code : RF_EARG;
            goto done;
        }
        /* record the training class counts so the model can classify with them later */
        model->meta = cJSON_CreateObject();
        cJSON_AddItemToObject(model->meta, "class_counts", cJSON_CreateDoubleArray(cnt, C));
        cJSON_AddNumberToObject(model->meta, "cv_fold", f);
        cJSON_AddNumberToObject(model->meta, "cv_folds", cfg->folds);
        if (cfg->input) cJSON_AddItemToObject(model->meta, "input", cJSON_Duplicate(cfg->input, 1));
        free(cnt);
        rf_train_result tres;
        rc = rf_train(model, &tr.x, tr.labels, &va.x, va.labels, &tc, &tres, e);
        out->seconds = rf_now() - t0;
        out->best_epoch = tres.best_epoch;
        rf_train_result_free(&tres);
        if (!cfg->model_prefix) {
            unlink(path);
            char ck[4200];
            snprintf(ck, sizeof ck, "%s.ckpt", path);
            unlink(ck);
        }
        if (rc) goto done;
        if (cfg->subject_adapt) {
            if (cfg->subject_adapt == 1 && (rc = rf_adapt_fit(model, &tr.x, tr.labels, tr.subjects, e))) goto done;
            if (cfg->subject_adapt == 1 && cfg->model_prefix && (rc = rf_flow_save(model, path, e))) goto done;
            out->test_nll = rf_adapt_nll(model, &test.x, NULL, test.subjects, NULL, e);
            if (isnan(out->test_nll)) {
                rc = e ? e->code : RF_EARG;
                goto done;
            }
        } else {
            rf_flow_ws *w = rf_flow_ws_create(model, 1024, 1, e);
            if (!w) {
                rc = e ? e->code : RF_ENOMEM;
                goto done;
            }
            out->test_nll = rf_eval_nll(model, w, &test.x, NULL, NULL);
            rf_flow_ws_free(w);
        }
    }
    if (!(ts = malloc(sizeof(float) * (size_t)test.x.n * C + 1))) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = class_scores(model, dm, &test.x, test.subjects, C, log_prior, ts, e))) goto done;
    if (cfg->hmm) {
        if (!d->recordings) {
            rc = rf_err_set(e, RF_EARG, "--hmm needs recording ids (recordings.npy or --recordings)");
            goto done;
        }
        if ((rc = rf_hmm_fit(tr.labels, tr.recordings, tr.x.n, C, 1.0, &hmm, e))) goto done;
        /* emission weight: the best validation macro-F1 over a small grid */
        static const double grid[] = {1.0, 0.5, 0.2, 0.1, 0.05, 0.02};
        const int ng = (int)(sizeof grid / sizeof *grid);
        vs = malloc(sizeof(float) * (size_t)va.x.n * C + 1);
        post = malloc(sizeof(float) * (size_t)(va.x.n > test.x.n ? va.x.n : test.x.n) * C + 1);
        vpred = malloc(sizeof(int) * (size_t)va.x.n + 1);
        if (!vs || !post || !vpred) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = class_scores(model, dm, &va.x, va.subjects, C, log_prior, vs, e))) goto done;
        double best = -1;
        for (int g = 0; g < ng; g++) {
            rf_class_metrics vm;
            if ((rc = hmm_predict(&hmm, vs, va.recordings, va.x.n, grid[g], post, vpred, e)) ||
                (rc = rf_class_metrics_compute(va.labels, vpred, va.x.n, C, &vm, e)))
                goto done;
            if (vm.macro_f1 > best) {
                best = vm.macro_f1;
                out->hmm_weight = grid[g];
            }
            rf_class_metrics_free(&vm);
        }
        if ((rc = hmm_predict(&hmm, ts, test.recordings, test.x.n, out->hmm_weight, post, pred, e))) goto done;
    } else {
        rf_argmax_rows(ts, (dm || cfg->use_train_prior) ? log_prior : NULL, test.x.n, C, pred);
    }
    if ((rc = rf_class_metrics_compute(test.labels, pred, test.x.n, C, &out->metrics, e))) goto done;
    out->n_train = tr.x.n;
    out->n_val = va.x.n;
    out->n_test = test.x.n;
    int *ids, m;
    if ((rc = rf_subjects_unique(test.subjects, test.x.n, &ids, &m, e))) goto done;
    out->test_subjects = ids;
    out->n_test_subjects = m;
done:
    free(in_tr);
    free(in_te);
    free(tr_keep);
    free(log_prior);
    free(ts);
    free(vs);
    free(post);
    free(vpred);
    rf_hmm_free(&hmm);
    rf_disc_free(dm);
    rf_flow_free(model);
    rf_dataset_free(&rest);
    rf_dataset_free(&test);
    rf_dataset_free(&tr);
    rf_dataset_free(&va);
    if (rc) rf_err_prefix(e, rc, "cross-validation fold %d", f);
    return rc;
}

int rf_crossval(const rf_dataset *d, const rf_flow_spec *spec, const rf_train_cfg *train,
                const rf_cv_cfg *cfg, rf_cv_result *res, rf_err *e) {
    memset(res, 0, sizeof *res);
    if (!d->labels) return rf_err_set(e, RF_EARG, "cross-validation needs class labels");
    if (!d->subjects) return rf_err_set(e, RF_EARG, "cross-validation needs a subject id per row (splits are by subject)");
    if (d->n_classes < 2) return rf_err_set(e, RF_EARG, "cross-validation needs at least 2 classes, got %d", d->n_classes);
    const int n = d->x.n;
    int *fold_of = malloc(sizeof(int) * (size_t)n), *pred = malloc(sizeof(int) * (size_t)n);
    int *truth = malloc(sizeof(int) * (size_t)n), *pooled = malloc(sizeof(int) * (size_t)n);
    int k = 0, rc = RF_OK, np = 0;
    if (!fold_of || !pred || !truth || !pooled) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = rf_subject_folds(d->subjects, n, cfg->folds, cfg->seed, fold_of, &k, e))) goto done;
    res->k = k;
    if (!(res->folds = calloc((size_t)k, sizeof *res->folds))) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int f = 0; f < k; f++) {
        if (train->progress) fprintf(stderr, "renflow cv: fold %d of %d\n", f + 1, k);
        if ((rc = run_fold(d, fold_of, f, spec, train, cfg, &res->folds[f], pred, e))) goto done;
        for (int i = 0, j = 0; i < n; i++)
            if (fold_of[i] == f) {
                truth[np] = d->labels[i];
                pooled[np++] = pred[j++];
            }
        if (train->progress) {
            const rf_class_metrics *m = &res->folds[f].metrics;
            fprintf(stderr, "renflow cv: fold %d: accuracy %.4f, balanced %.4f, macro-F1 %.4f, kappa %.4f (%d test rows, %.0f s)\n",
                    f + 1, m->accuracy, m->balanced_accuracy, m->macro_f1, m->kappa, res->folds[f].n_test, res->folds[f].seconds);
        }
    }
    if ((rc = rf_class_metrics_compute(truth, pooled, np, d->n_classes, &res->pooled, e))) goto done;
    for (int q = 0; q < 4; q++) {
        double s = 0, ss = 0, v[4];
        for (int f = 0; f < k; f++) {
            metric_values(&res->folds[f].metrics, v);
            s += v[q];
        }
        res->mean[q] = s / k;
        for (int f = 0; f < k; f++) {
            metric_values(&res->folds[f].metrics, v);
            ss += (v[q] - res->mean[q]) * (v[q] - res->mean[q]);
        }
        res->sd[q] = k > 1 ? sqrt(ss / (k - 1)) : 0;
    }
done:
    free(fold_of);
    free(pred);
    free(truth);
    free(pooled);
    if (rc) rf_cv_result_free(res);
    return rc;
}

cJSON *rf_cv_result_to_json(const rf_cv_result *r, const char *const *names) {
    static const char *const keys[4] = {"accuracy", "balanced_accuracy", "macro_f1", "kappa"};
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "folds", r->k);
    cJSON *mean = cJSON_AddObjectToObject(j, "mean"), *sd = cJSON_AddObjectToObject(j, "sd");
    for (int q = 0; q < 4; q++) {
        cJSON_AddNumberToObject(mean, keys[q], r->mean[q]);
        cJSON_AddNumberToObject(sd, keys[q], r->sd[q]);
    }
    cJSON *fa = cJSON_AddArrayToObject(j, "per_fold");
    for (int f = 0; f < r->k; f++) {
        const rf_cv_fold *F = &r->folds[f];
        cJSON *o = rf_class_metrics_to_json(&F->metrics, names);
        cJSON_AddItemToObject(o, "test_subjects", cJSON_CreateIntArray(F->test_subjects, F->n_test_subjects));
        cJSON_AddNumberToObject(o, "n_train", F->n_train);
        cJSON_AddNumberToObject(o, "n_val", F->n_val);
        if (isfinite(F->test_nll)) cJSON_AddNumberToObject(o, "test_nll", F->test_nll);
        if (F->hmm_weight > 0) cJSON_AddNumberToObject(o, "hmm_emission_weight", F->hmm_weight);
        cJSON_AddNumberToObject(o, "best_epoch", F->best_epoch);
        cJSON_AddNumberToObject(o, "seconds", F->seconds);
        cJSON_AddItemToArray(fa, o);
    }
    cJSON_AddItemToObject(j, "pooled", rf_class_metrics_to_json(&r->pooled, names));
    return j;
}
