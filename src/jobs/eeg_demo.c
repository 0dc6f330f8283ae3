/* The built-in EEG job: simulated rest vs mental-arithmetic EEG (no files needed) -> a
 * class-conditional time-series flow, cross-validated by subject. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "renflow/crossval.h"
#include "renflow/eegsim.h"
#include "renflow/features.h"
#include "renflow/jobs.h"
#include "renflow/tsflow.h"

void rf_eeg_demo_cfg_default(rf_eeg_demo_cfg *c) {
    memset(c, 0, sizeof *c);
    c->out_dir = "renflow-eeg-demo";
    c->mode = "arithmetic";
    c->subjects = 8;
    c->windows_per_class = 40;
    c->channels = 8;
    c->rate = 64;
    c->window_s = 4;
    c->task_effect = 2.5;
    c->features = "bandpower";
    c->folds = 4;
    c->epochs = 30;
    c->batch = 64;
    c->lr = 2e-3f;
    c->threads = 2;
    c->seed = 1;
    c->progress = 1;
}

static int write_json(const char *path, cJSON *j, rf_err *e) {
    char *s = cJSON_Print(j);
    int rc = s ? rf_write_file_atomic(path, s, strlen(s), e) : rf_err_set(e, RF_ENOMEM, "out of memory");
    free(s);
    return rc;
}

int rf_eeg_demo_run(const rf_eeg_demo_cfg *c, rf_eeg_demo_result *r, rf_err *e) {
    memset(r, 0, sizeof *r);
    if (mkdir(c->out_dir, 0777) != 0 && errno != EEXIST)
        return rf_err_set(e, RF_EIO, "%s: cannot create output directory: %s", c->out_dir, strerror(errno));
    rf_eegsim_config sc;
    rf_eegsim_mode mode;
    int rc = rf_eegsim_mode_parse(c->mode, &mode, e);
    if (rc) return rc;
    rf_eegsim_config_default(&sc, mode);
    sc.channels = c->channels;
    sc.rate = c->rate;
    sc.window_s = c->window_s;
    if (mode == RF_EEGSIM_ARITHMETIC) sc.task_effect = c->task_effect;
    rf_rng rng;
    rf_rng_seed(&rng, c->seed);
    rf_eegsim_data sim = {0};
    rf_dataset ds = {0};
    rf_cv_result cv = {0};
    cJSON *j = NULL;
    rf_set_threads(c->threads);
    if ((rc = rf_eegsim_generate(&sc, c->subjects, c->windows_per_class, &rng, &sim, e))) goto out;
    snprintf(r->data_dir, sizeof r->data_dir, "%s/simulated-eeg", c->out_dir);
    if ((rc = rf_eegsim_write_dir(&sim, &sc, c->seed, r->data_dir, e))) goto out;
    if ((rc = rf_eegsim_to_dataset(&sim, &sc, c->seed, &ds, e))) goto out;
    r->windows = ds.x.n;
    r->n_classes = ds.n_classes;
    if (c->progress)
        fprintf(stderr, "renflow demo --eeg: simulated %s EEG, %d subjects, %d windows of %d channels x %d samples (%g Hz) -> %s\n",
                c->mode, c->subjects, ds.x.n, ds.channels, ds.length, sc.rate, r->data_dir);
    rf_flow_spec spec;
    /* standardised by subject (as `eeg prepare --standardise subject`; no labels), then band
     * powers; the models record the transform, so `renflow eval/explain MODEL --data DIR` on the
     * written (microvolt) data set applies it again */
    const int bandpower = !strcmp(c->features, "bandpower");
    rf_input_tf tf = {.std_subject = 1, .bandpower = bandpower, .rate = sc.rate};
    if ((rc = rf_input_apply(&ds, &tf, e))) goto out;
    if (bandpower) {
        rf_flow_spec_default(&spec, RF_FLOW_GLOW, ds.x.d);
        spec.blocks = 4;
        spec.hidden = 64;
    } else if (!strcmp(c->features, "raw")) {
        if ((rc = rf_tsflow_spec_default(&spec, ds.channels, ds.length, e))) goto out;
        spec.class_tie = 1;
    } else {
        rc = rf_err_set(e, RF_EARG, "EEG demo: features must be bandpower or raw, got \"%s\"", c->features);
        goto out;
    }
    spec.base = RF_BASE_CLASS;
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.epochs = c->epochs;
    tc.batch = c->batch;
    tc.lr = c->lr;
    tc.threads = c->threads;
    tc.progress = c->progress;
    tc.patience = 0;
    tc.class_init = 1; /* class-conditional samples that match the classes (explain figures) */
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s/model", c->out_dir);
    cJSON *input = rf_input_to_json(&tf);
    rf_cv_cfg cc = {.folds = c->folds, .seed = c->seed, .model_prefix = prefix, .input = input};
    rc = rf_crossval(&ds, &spec, &tc, &cc, &cv, e);
    cJSON_Delete(input);
    if (rc) goto out;
    snprintf(r->model_path, sizeof r->model_path, "%s/model-fold1.rf", c->out_dir);
    snprintf(r->report_path, sizeof r->report_path, "%s/cv.json", c->out_dir);
    j = rf_cv_result_to_json(&cv, (const char *const *)ds.class_names);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)c->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddStringToObject(j, "data", r->data_dir);
    cJSON_AddStringToObject(j, "features", c->features);
    cJSON_AddStringToObject(j, "standardisation", "subject");
    cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&spec));
    if ((rc = write_json(r->report_path, j, e))) goto out;
    r->folds = cv.k;
    r->accuracy = cv.pooled.accuracy;
    r->balanced_accuracy = cv.pooled.balanced_accuracy;
    r->macro_f1 = cv.pooled.macro_f1;
    r->kappa = cv.pooled.kappa;
    for (int i = 0; i < 4; i++) {
        r->fold_mean[i] = cv.mean[i];
        r->fold_sd[i] = cv.sd[i];
    }
out:
    cJSON_Delete(j);
    rf_cv_result_free(&cv);
    rf_dataset_free(&ds);
    rf_eegsim_free(&sim);
    return rc;
}
