/* renflow cv: subject-wise k-fold cross-validation of a class-conditional flow. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "train_opts.h"

static void free_views(rf_dataset *v, int n) {
    for (int i = 0; i < n; i++) rf_dataset_free(&v[i]);
}

/* A view read from a plain array takes the data's subject and recording ids (the input
 * transforms may need them). */
static int adopt_ids(rf_dataset *v, const rf_dataset *d, rf_err *e) {
    int **dst[2] = {&v->subjects, &v->recordings};
    const int *src[2] = {d->subjects, d->recordings};
    for (int k = 0; k < 2; k++) {
        if (*dst[k] || !src[k]) continue;
        if (!(*dst[k] = malloc(sizeof(int) * (size_t)(d->x.n > 0 ? d->x.n : 1)))) return rf_err_set(e, RF_ENOMEM, "out of memory");
        memcpy(*dst[k], src[k], sizeof(int) * (size_t)d->x.n);
    }
    return RF_OK;
}

/* A view holds the data's rows and columns; a plain array of windows takes the data's shape. */
static int view_matches(const char *path, rf_dataset *v, const rf_dataset *d, int channels, int length, int D,
                        rf_err *e) {
    if (v->x.n != d->x.n || v->x.d != D)
        return rf_err_set(e, RF_EARG, "%s: a view must hold the same rows and columns as the data: it is %d x %d, the data %d x %d",
                          path, v->x.n, v->x.d, d->x.n, D);
    if (!v->channels && channels) {
        v->channels = channels;
        v->length = length;
    }
    return RF_OK;
}

int rf_cli_cv(int argc, char **argv) {
    static const char *C = "cv";
    train_args a = {0};
    int help = 0, rc = rf_cli_train_parse(1, argc, argv, &a, &help);
    if (help) return RF_EXIT_OK;
    if (rc) return rc;
    rf_err e = {0};
    rf_dataset d;
    if (rf_dataset_read(a.data, a.labels, a.subjects, &d, &e)) return rf_runtime_error(C, &e);
    if (a.recordings && rf_dataset_set_recordings(&d, a.recordings, &e)) {
        rf_dataset_free(&d);
        return rf_runtime_error(C, &e);
    }
    const int raw_channels = d.channels, raw_length = d.length, raw_d = d.x.d;
    if (rf_input_apply(&d, &a.input, &e)) {
        rf_dataset_free(&d);
        return rf_runtime_error(C, &e);
    }
    if (!d.labels || !d.subjects) {
        rf_err_set(&e, RF_EARG, "%s: cross-validation needs labels and subject ids (a prepared directory, or --labels and --subjects)", a.data);
        rf_dataset_free(&d);
        return rf_runtime_error(C, &e);
    }
    a.spec.D = d.x.d;
    if (rf_cli_shape_spec(&a, d.channels, d.length, d.x.d, &e)) {
        rf_dataset_free(&d);
        return rf_runtime_error(C, &e);
    }
    /* other versions of the data: the same labels, subjects, recordings and transforms */
    rf_dataset views[RF_CLI_MAX_VIEWS] = {0};
    rf_matrix vx[RF_CLI_MAX_VIEWS];
    for (int v = 0; v < a.n_views; v++) {
        rf_input_tf tv = a.input;
        if (rf_dataset_read(a.views[v], a.labels, a.subjects, &views[v], &e) ||
            view_matches(a.views[v], &views[v], &d, raw_channels, raw_length, raw_d, &e) ||
            (a.recordings && rf_dataset_set_recordings(&views[v], a.recordings, &e)) ||
            adopt_ids(&views[v], &d, &e) ||
            rf_input_apply(&views[v], &tv, &e)) {
            for (int u = 0; u <= v; u++) rf_dataset_free(&views[u]);
            rf_dataset_free(&d);
            return rf_runtime_error(C, &e);
        }
        vx[v] = views[v].x;
    }
    rf_cv_cfg cfg = {.views = vx, .n_views = a.n_views, .log_pool = a.log_pool, .folds = a.folds, .seed = a.cfg.seed, .model_prefix = a.out,
                     .use_train_prior = a.prior && !strcmp(a.prior, "train"), .hmm = a.hmm,
                     .ensemble = a.ensemble, .subject_adapt = a.subject_adapt};
    a.cfg.progress = !a.quiet;
    rf_disc_cfg dc;
    rf_disc_cfg_default(&dc);
    if (strcmp(a.model, "flow")) {
        dc.n_hidden = strcmp(a.model, "mlp") ? 0 : a.spec.n_hidden;
        dc.hidden = a.spec.hidden;
        dc.act = (int)a.spec.act;
        dc.lr = a.cfg.lr;
        dc.weight_decay = a.cfg.weight_decay;
        dc.epochs = a.cfg.epochs;
        dc.batch = a.cfg.batch;
        dc.patience = a.cfg.patience;
        dc.class_balanced = a.class_balanced;
        cfg.disc = &dc;
    }
    rf_cv_result r;
    cJSON *input = rf_input_to_json(&a.input);
    cfg.input = input;
    const int cv_rc = rf_crossval(&d, &a.spec, &a.cfg, &cfg, &r, &e);
    cJSON_Delete(input);
    if (cv_rc) {
        free_views(views, a.n_views);
        rf_dataset_free(&d);
        return rf_runtime_error(C, &e);
    }
    const char *const *names = (const char *const *)d.class_names;
    if (a.json) {
        cJSON *j = rf_cv_result_to_json(&r, names);
        cJSON_AddStringToObject(j, "data", a.data);
        cJSON_AddStringToObject(j, "model", a.model);
        cJSON_AddBoolToObject(j, "hmm", a.hmm);
        cJSON_AddNumberToObject(j, "ensemble", r.k > 0 ? r.folds[0].members : 1);
        cJSON_AddStringToObject(j, "pool", a.log_pool ? "log" : "mean");
        if (a.n_views) cJSON_AddItemToObject(j, "views", cJSON_CreateStringArray(a.views, a.n_views));
        cJSON_AddStringToObject(j, "subject_adapt", a.subject_adapt == 2 ? "train" : a.subject_adapt ? "fit" : "none");
        if (!cfg.disc) cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&a.spec));
        char seed[32];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)a.cfg.seed);
        cJSON_AddStringToObject(j, "seed", seed);
        cJSON_AddStringToObject(j, "prior", cfg.use_train_prior ? "train" : "uniform");
        rf_print_json(j);
    } else {
        static const char *const keys[4] = {"accuracy", "balanced accuracy", "macro-F1", "kappa"};
        printf("%d subject-wise folds of %s (%d rows):\n", r.k, a.data, d.x.n);
        for (int q = 0; q < 4; q++) printf("  %-18s %.4f ± %.4f (mean ± sd over folds)\n", keys[q], r.mean[q], r.sd[q]);
        printf("pooled held-out predictions:\n");
        rf_class_metrics_print(stdout, &r.pooled, names);
    }
    rf_cv_result_free(&r);
    free_views(views, a.n_views);
    rf_dataset_free(&d);
    return RF_EXIT_OK;
}
