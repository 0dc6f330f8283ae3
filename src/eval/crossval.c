/* Subject-wise k-fold cross-validation of class-conditional flows. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "renflow/adapt.h"
#include "renflow/crossval.h"

/* seed offset between ensemble members (member 0 keeps the single-model seed) */
#define MEMBER_SEED_STRIDE 7919u

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

/* Splits fold f: test = its subjects; the rest into training and a seeded 10 % of the training
 * subjects for validation. */
static int split_fold(const rf_dataset *d, const int *fold_of, int f, uint64_t seed, rf_dataset *test,
                      rf_dataset *tr, rf_dataset *va, rf_err *e) {
    const int n = d->x.n;
    int rc = RF_OK;
    unsigned char *in_tr = malloc((size_t)n + 1), *in_te = malloc((size_t)n + 1), *keep = NULL;
    rf_dataset rest = {0};
    if (!in_tr || !in_te) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        in_te[i] = fold_of[i] == f;
        in_tr[i] = !in_te[i];
    }
    if ((rc = rf_dataset_select(d, in_tr, &rest, e)) || (rc = rf_dataset_select(d, in_te, test, e))) goto done;
    if (!(keep = malloc((size_t)rest.x.n + 1))) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = rf_subject_holdout(rest.subjects, rest.x.n, 0.1, seed + 1000 + (uint64_t)f, keep, e))) goto done;
    if ((rc = rf_dataset_select(&rest, keep, tr, e))) goto done;
    for (int i = 0; i < rest.x.n; i++) keep[i] = !keep[i];
    rc = rf_dataset_select(&rest, keep, va, e);
done:
    free(in_tr);
    free(in_te);
    free(keep);
    rf_dataset_free(&rest);
    return rc;
}

/* Member m's model file for fold f (member 0 keeps the single-model name). */
static void member_path(const rf_cv_cfg *cfg, int f, int m, char *path, size_t size) {
    char member[32] = "";
    if (m > 0) snprintf(member, sizeof member, "-m%d", m);
    if (cfg->model_prefix) snprintf(path, size, "%s-fold%d%s.rf", cfg->model_prefix, f, member);
    else snprintf(path, size, "/tmp/renflow-cv-%ld-fold%d%s.rf", (long)getpid(), f, member);
}

/* Trains ensemble member m of fold f on its view's training rows tr (validation va): a
 * class-conditional flow (returned in *model) or, with cfg->disc, a discriminative reference (in
 * *dm). Members differ in their seeds (and views). */
static int train_member(const rf_dataset *tr, const rf_dataset *va, int f, int m, int view, int C,
                        const double *cnt, const rf_flow_spec *spec0, const rf_train_cfg *tc0,
                        const rf_cv_cfg *cfg, rf_cv_fold *out, rf_flow **model, rf_disc **dm, rf_err *e) {
    const uint64_t seed = tc0->seed + (uint64_t)f + MEMBER_SEED_STRIDE * (uint64_t)m;
    if (cfg->disc) {
        rf_disc_cfg dc = *cfg->disc;
        dc.seed = seed;
        *dm = rf_disc_train(&tr->x, tr->labels, C, &va->x, va->labels, &dc, e);
        return *dm ? RF_OK : (e ? e->code : RF_EARG);
    }
    rf_flow_spec spec = *spec0;
    spec.D = tr->x.d;
    spec.base = RF_BASE_CLASS;
    spec.n_classes = C;
    rf_train_cfg tc = *tc0;
    tc.seed = seed;
    char path[4096];
    member_path(cfg, f, m, path, sizeof path);
    tc.out_path = path;
    tc.resume = 0;
    if (cfg->subject_adapt == 2) {
        tc.subject_adapt = 1;
        tc.train_subjects = tr->subjects;
        tc.val_subjects = va->subjects;
    }
    rf_rng rng;
    rf_rng_seed(&rng, tc.seed);
    if (!(*model = rf_flow_create(&spec, &rng, e))) return e ? e->code : RF_EARG;
    /* record the training class counts so the model can classify with them later */
    (*model)->meta = cJSON_CreateObject();
    cJSON_AddItemToObject((*model)->meta, "class_counts", cJSON_CreateDoubleArray(cnt, C));
    cJSON_AddNumberToObject((*model)->meta, "cv_fold", f);
    cJSON_AddNumberToObject((*model)->meta, "cv_folds", cfg->folds);
    if (cfg->ensemble > 1) {
        cJSON_AddNumberToObject((*model)->meta, "cv_member", m);
        cJSON_AddNumberToObject((*model)->meta, "cv_members", cfg->ensemble);
    }
    if (cfg->n_views > 0) cJSON_AddNumberToObject((*model)->meta, "cv_view", view);
    if (cfg->input) cJSON_AddItemToObject((*model)->meta, "input", cJSON_Duplicate(cfg->input, 1));
    rf_train_result tres;
    int rc = rf_train(*model, &tr->x, tr->labels, &va->x, va->labels, &tc, &tres, e);
    if (m == 0) out->best_epoch = tres.best_epoch;
    rf_train_result_free(&tres);
    if (!cfg->model_prefix) {
        unlink(path);
        char ck[4200];
        snprintf(ck, sizeof ck, "%s.ckpt", path);
        unlink(ck);
    }
    if (rc) return rc;
    if (cfg->subject_adapt == 1) {
        if ((rc = rf_adapt_fit(*model, &tr->x, tr->labels, tr->subjects, e))) return rc;
        if (cfg->model_prefix && (rc = rf_flow_save(*model, path, e))) return rc;
    }
    return RF_OK;
}

/* Per-row log p(x) of the test rows under a trained flow (with its subject adaptation, if any). */
static int member_log_px(const rf_flow *model, const rf_dataset *test, float *lp, rf_err *e) {
    if (model->adapt_mean) return isnan(rf_adapt_nll(model, &test->x, NULL, test->subjects, lp, e)) ? (e ? e->code : RF_EARG) : RF_OK;
    rf_flow_ws *w = rf_flow_ws_create(model, 1024, 1, e);
    if (!w) return e ? e->code : RF_ENOMEM;
    rf_eval_nll(model, w, &test->x, NULL, lp);
    rf_flow_ws_free(w);
    return RF_OK;
}

/* acc += p(c | x) under a uniform prior (log_pool: log p(c | x)), from class scores s (log p(x | c)
 * + a per-row constant). */
static void add_posteriors(const float *s, int n, int C, int log_pool, double *acc) {
    for (int i = 0; i < n; i++) {
        const float *r = s + (size_t)i * C;
        float mx = r[0];
        for (int c = 1; c < C; c++) mx = r[c] > mx ? r[c] : mx;
        double z = 0;
        for (int c = 0; c < C; c++) z += exp((double)r[c] - mx);
        for (int c = 0; c < C; c++) {
            const double lp = (double)r[c] - mx - log(z);
            acc[(size_t)i * C + c] += log_pool ? lp : exp(lp);
        }
    }
}

/* The ensemble's class scores: log of the members' mean posterior (linear pool), or the mean of
 * their log posteriors (log-linear pool). */
static void ensemble_scores(const double *acc, size_t len, int K, int log_pool, float *s) {
    for (size_t i = 0; i < len; i++) {
        const double p = acc[i] / K;
        s[i] = (float)(log_pool ? p : log(p > 1e-300 ? p : 1e-300));
    }
}

/* Trains and tests one fold (cfg->ensemble members, averaged in probability). pred receives the
 * test predictions. */
static int run_fold(const rf_dataset *d, const int *fold_of, int f, const rf_flow_spec *spec0,
                    const rf_train_cfg *tc0, const rf_cv_cfg *cfg, rf_cv_fold *out, int *pred, rf_err *e) {
    const int C = d->n_classes, K0 = cfg->ensemble > 1 ? cfg->ensemble : 1;
    const int K = cfg->n_views > 0 && K0 < cfg->n_views + 1 ? cfg->n_views + 1 : K0;
    int rc = RF_OK, *vpred = NULL;
    rf_dataset test = {0}, tr = {0}, va = {0}, vtest = {0}, vtr = {0}, vva = {0};
    rf_flow *model = NULL;
    rf_disc *dm = NULL;
    rf_hmm hmm = {0};
    float *log_prior = malloc(sizeof(float) * (size_t)C), *ts = NULL, *vs = NULL, *post = NULL, *lp = NULL;
    double *cnt = calloc((size_t)C, sizeof *cnt), *tacc = NULL, *vacc = NULL, *lpx = NULL, tot = 0;
    if (!log_prior || !cnt) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = split_fold(d, fold_of, f, cfg->seed, &test, &tr, &va, e))) goto done;
    if (cfg->hmm && !d->recordings) {
        rc = rf_err_set(e, RF_EARG, "--hmm needs recording ids (recordings.npy or --recordings)");
        goto done;
    }
    /* training class frequencies (add-one) */
    for (int i = 0; i < tr.x.n; i++) cnt[tr.labels[i]]++;
    for (int c = 0; c < C; c++) tot += cnt[c] + 1;
    for (int c = 0; c < C; c++) log_prior[c] = (float)log((cnt[c] + 1) / tot);
    const size_t nt = (size_t)test.x.n, nv = (size_t)va.x.n;
    ts = malloc(sizeof(float) * (nt * C + 1));
    vs = malloc(sizeof(float) * (nv * C + 1));
    tacc = calloc(nt * C + 1, sizeof *tacc);
    vacc = calloc(nv * C + 1, sizeof *vacc);
    lp = malloc(sizeof(float) * (nt + 1));
    lpx = malloc(sizeof(double) * (nt + 1));
    if (!ts || !vs || !tacc || !vacc || !lp || !lpx) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    const double t0 = rf_now();
    out->test_nll = NAN;
    for (int m = 0; m < K; m++) {
        if (K > 1 && tc0->progress) fprintf(stderr, "renflow cv: fold %d, ensemble member %d of %d\n", f + 1, m + 1, K);
        /* the member's view of the rows: d itself, or one of cfg->views (same rows and split) */
        const int v = cfg->n_views > 0 ? m % (cfg->n_views + 1) : 0;
        const rf_dataset *mtest = &test, *mtr = &tr, *mva = &va;
        rf_dataset_free(&vtest);
        rf_dataset_free(&vtr);
        rf_dataset_free(&vva);
        if (v > 0) {
            rf_dataset dv = *d;
            dv.x = cfg->views[v - 1];
            if ((rc = split_fold(&dv, fold_of, f, cfg->seed, &vtest, &vtr, &vva, e))) goto done;
            mtest = &vtest;
            mtr = &vtr;
            mva = &vva;
        }
        if ((rc = train_member(mtr, mva, f, m, v, C, cnt, spec0, tc0, cfg, out, &model, &dm, e))) goto done;
        if ((rc = class_scores(model, dm, &mtest->x, test.subjects, C, log_prior, ts, e))) goto done;
        if (cfg->hmm && (rc = class_scores(model, dm, &mva->x, va.subjects, C, log_prior, vs, e))) goto done;
        if (K > 1) {
            add_posteriors(ts, test.x.n, C, cfg->log_pool, tacc);
            if (cfg->hmm) add_posteriors(vs, va.x.n, C, cfg->log_pool, vacc);
        }
        if (model && cfg->n_views == 0) { /* views: members model different variables */
            /* the ensemble's density is the members' equal mixture: log mean_m p_m(x) */
            if ((rc = member_log_px(model, mtest, lp, e))) goto done;
            for (size_t i = 0; i < nt; i++) {
                const double a = lp[i];
                if (m == 0) lpx[i] = a;
                else lpx[i] = a > lpx[i] ? a + log1p(exp(lpx[i] - a)) : lpx[i] + log1p(exp(a - lpx[i]));
            }
        }
        rf_flow_free(model);
        rf_disc_free(dm);
        model = NULL;
        dm = NULL;
    }
    out->seconds = rf_now() - t0;
    if (!cfg->disc && cfg->n_views == 0 && nt > 0) {
        double s = 0;
        for (size_t i = 0; i < nt; i++) s += lpx[i] - log((double)K);
        out->test_nll = -s / (double)nt;
    }
    if (K > 1) {
        ensemble_scores(tacc, nt * C, K, cfg->log_pool, ts);
        ensemble_scores(vacc, nv * C, K, cfg->log_pool, vs);
    }
    if (cfg->hmm) {
        if ((rc = rf_hmm_fit(tr.labels, tr.recordings, tr.x.n, C, 1.0, &hmm, e))) goto done;
        /* emission weight: the best validation macro-F1 over a small grid */
        static const double grid[] = {1.0, 0.5, 0.2, 0.1, 0.05, 0.02};
        const int ng = (int)(sizeof grid / sizeof *grid);
        post = malloc(sizeof(float) * ((nv > nt ? nv : nt) * C + 1));
        vpred = malloc(sizeof(int) * (nv + 1));
        if (!post || !vpred) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
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
        rf_argmax_rows(ts, (cfg->disc || cfg->use_train_prior) ? log_prior : NULL, test.x.n, C, pred);
    }
    if ((rc = rf_class_metrics_compute(test.labels, pred, test.x.n, C, &out->metrics, e))) goto done;
    out->n_train = tr.x.n;
    out->n_val = va.x.n;
    out->n_test = test.x.n;
    out->members = K;
    int *ids, ns;
    if ((rc = rf_subjects_unique(test.subjects, test.x.n, &ids, &ns, e))) goto done;
    out->test_subjects = ids;
    out->n_test_subjects = ns;
done:
    free(log_prior);
    free(cnt);
    free(ts);
    free(vs);
    free(tacc);
    free(vacc);
    free(lp);
    free(lpx);
    free(post);
    free(vpred);
    rf_hmm_free(&hmm);
    rf_disc_free(dm);
    rf_flow_free(model);
    rf_dataset_free(&test);
    rf_dataset_free(&tr);
    rf_dataset_free(&va);
    rf_dataset_free(&vtest);
    rf_dataset_free(&vtr);
    rf_dataset_free(&vva);
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
    if (cfg->model_prefix) { /* fail before the first fold trains, not after */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", cfg->model_prefix);
        char *slash = strrchr(dir, '/');
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == dir) dir[1] = 0;
        else *slash = 0;
        if (access(dir, W_OK | X_OK))
            return rf_err_set(e, RF_EIO, "%s: cannot write the fold models: directory %s: %s", cfg->model_prefix, dir, strerror(errno));
    }
    for (int v = 0; v < cfg->n_views; v++)
        if (!cfg->views || !cfg->views[v].x || cfg->views[v].n != n || cfg->views[v].d != d->x.d)
            return rf_err_set(e, RF_EARG, "cross-validation view %d is %d x %d, the data %d x %d (a view holds the same rows and columns, e.g. normalised another way)",
                              v + 1, cfg->views ? cfg->views[v].n : 0, cfg->views ? cfg->views[v].d : 0, n, d->x.d);
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
        if (F->members > 1) cJSON_AddNumberToObject(o, "ensemble_members", F->members);
        cJSON_AddNumberToObject(o, "best_epoch", F->best_epoch);
        cJSON_AddNumberToObject(o, "seconds", F->seconds);
        cJSON_AddItemToArray(fa, o);
    }
    cJSON_AddItemToObject(j, "pooled", rf_class_metrics_to_json(&r->pooled, names));
    return j;
}
