/* renflow eval: mean NLL (nats per example, bits per dimension), optional per-sample log p. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

static const char USAGE[] =
    "usage: renflow eval MODEL.rf --data TEST|DIR [--labels y.npy] [--per-sample LOGP.npy] [--json]\n"
    "\n"
    "Evaluates the exact log-likelihood of a data set under a model. For a class-conditional\n"
    "model with labels it also classifies (argmax p(y|x)) and reports accuracy, balanced\n"
    "accuracy, macro-F1, Cohen's kappa and the confusion matrix (rows = true class).\n"
    "  --data FILE|DIR     data (.npy, .csv, .arff) or a prepared data set directory\n"
    "                      (renflow eeg prepare), whose labels are used\n"
    "  --labels FILE       class labels for array data\n"
    "  --subjects FILE     subject id per row for array data; required by a model trained with\n"
    "                      --subject-adapt, which normalises each subject's latents with its own\n"
    "                      statistics (all of the subject's rows, no labels)\n"
    "  --recordings FILE   recording id per row for array data; required by a model trained\n"
    "                      with --context (its rows are stacked with their neighbours)\n"
    "  --prior P           classify: uniform (default) | train (class frequencies of the\n"
    "                      training data, recorded in the model)\n"
    "  --per-sample FILE   write log p(x_i) per row as float32 .npy\n"
    "  --threads T         (default 2)\n"
    "  --json              machine-readable output: nll_nats, bits_per_dim, n, dim and, for\n"
    "                      classifiers, accuracy, balanced_accuracy, macro_f1, kappa, confusion\n";

enum { O_DATA = 256, O_LABELS, O_PER, O_THREADS, O_JSON, O_PRIOR, O_SUBJECTS, O_RECORDINGS };
static const struct option LONGOPTS[] = {{"data", 1, 0, O_DATA},       {"labels", 1, 0, O_LABELS},
                                         {"per-sample", 1, 0, O_PER},  {"threads", 1, 0, O_THREADS},
                                         {"json", 0, 0, O_JSON},       {"prior", 1, 0, O_PRIOR}, {"subjects", 1, 0, O_SUBJECTS}, {"recordings", 1, 0, O_RECORDINGS},
                                         {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};

int rf_cli_eval(int argc, char **argv) {
    static const char *C = "eval";
    const char *data = NULL, *labels = NULL, *subjects = NULL, *recordings = NULL, *per = NULL, *prior = "uniform";
    int json = 0, threads = 2, help = 0, c, rc = 0;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    while (!rc && (c = rf_next_opt(&o, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case O_DATA: data = optarg; break;
        case O_LABELS: labels = optarg; break;
        case O_SUBJECTS: subjects = optarg; break;
        case O_RECORDINGS: recordings = optarg; break;
        case O_PER: per = optarg; break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &threads); break;
        case O_JSON: json = 1; break;
        case O_PRIOR: prior = optarg; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind != argc - 1) return rf_usage_error(C, "expected exactly one MODEL.rf argument");
    if (!data) return rf_usage_error(C, "--data is required");
    if (strcmp(prior, "uniform") && strcmp(prior, "train"))
        return rf_usage_error(C, "option --prior: expected uniform or train, got '%s'", prior);
    rf_set_threads(threads);
    const char *model = argv[optind];
    rf_err e = {0};
    rf_flow *f = rf_cli_load_model(C, model);
    if (!f) return RF_EXIT_ERROR;
    rf_dataset ds = {0};
    int code = RF_EXIT_OK, *pred = NULL;
    float *lp = NULL, *log_prior = NULL;
    rf_flow_ws *w = NULL;
    rf_class_metrics cm = {0};
    if (rf_dataset_read(data, labels, subjects, &ds, &e) ||
        (recordings && rf_dataset_set_recordings(&ds, recordings, &e)) || rf_input_apply_meta(&ds, f->meta, &e)) goto fail;
    const rf_matrix m = ds.x;
    const int *y = ds.labels;
    const char *lab_src = labels ? labels : data;
    if (m.d != f->D) {
        rf_err_set(&e, RF_EFORMAT, "%s has %d columns but model %s has dimension %d", data, m.d, model, f->D);
        goto fail;
    }
    if (y && f->base.kind == RF_BASE_CLASS)
        for (int i = 0; i < m.n; i++)
            if (y[i] >= f->base.n_classes) {
                rf_err_set(&e, RF_EFORMAT, "%s: label %d at row %d, but the model has %d classes", lab_src, y[i], i, f->base.n_classes);
                goto fail;
            }
    if (f->base.kind == RF_BASE_CLASS && !strcmp(prior, "train") &&
        !(log_prior = rf_flow_train_log_prior(f, &e)))
        goto fail;
    if (!(w = rf_flow_ws_create(f, 1024, 1, &e)) || !(lp = rf_floats((size_t)m.n, &e))) goto fail;
    const double t0 = rf_now();
    double nll;
    if (f->adapt_mean) { /* per-subject latent normalisation (renflow/adapt.h) */
        if (!ds.subjects) {
            rf_err_set(&e, RF_EARG, "model %s adapts to each subject (subject_adapt): %s needs subject ids (--subjects FILE, or a prepared directory)",
                       model, data);
            goto fail;
        }
        if (isnan(nll = rf_adapt_nll(f, &m, y, ds.subjects, lp, &e)) && m.n > 0) goto fail;
    } else {
        nll = rf_eval_nll(f, w, &m, f->base.kind == RF_BASE_CLASS ? y : NULL, lp);
    }
    const double secs = rf_now() - t0;
    const double bpd = nll / (f->D * 0.6931471805599453);
    if (y && f->base.kind == RF_BASE_CLASS) {
        if (!(pred = malloc(sizeof(int) * (size_t)(m.n > 0 ? m.n : 1)))) {
            rf_err_set(&e, RF_ENOMEM, "out of memory");
            goto fail;
        }
        if (rf_flow_predict_subjects(f, &m, ds.subjects, log_prior, pred, NULL, &e) ||
            rf_class_metrics_compute(y, pred, m.n, f->base.n_classes, &cm, &e))
            goto fail;
    }
    int nonfinite = 0;
    for (int i = 0; i < m.n; i++) nonfinite += !isfinite(lp[i]);
    if (per) {
        rf_ndarray a = {.ndim = 1, .shape = {m.n}, .dtype = RF_DT_F32, .data = lp};
        if (rf_npy_write(per, &a, &e)) goto fail;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "data", data);
        cJSON_AddNumberToObject(j, "n", m.n);
        cJSON_AddNumberToObject(j, "dim", f->D);
        cJSON_AddNumberToObject(j, "nll_nats", nll);
        cJSON_AddNumberToObject(j, "bits_per_dim", bpd);
        cJSON_AddNumberToObject(j, "nonfinite", nonfinite);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddNumberToObject(j, "examples_per_sec", secs > 0 ? m.n / secs : 0);
        if (cm.confusion) {
            cJSON *mj = rf_class_metrics_to_json(&cm, (const char *const *)ds.class_names);
            cJSON *it;
            cJSON_ArrayForEach(it, mj) cJSON_AddItemToObject(j, it->string, cJSON_Duplicate(it, 1));
            cJSON_Delete(mj);
            cJSON_AddStringToObject(j, "prior", prior);
        }
        rf_print_json(j);
    } else {
        printf("%s on %s: NLL %.6f nats/example, %.6f bits/dim (n=%d, D=%d)\n", model, data, nll, bpd, m.n, f->D);
        if (cm.confusion) rf_class_metrics_print(stdout, &cm, (const char *const *)ds.class_names);
    }
    goto done;
fail:
    code = rf_runtime_error(C, &e);
done:
    rf_free(lp);
    rf_flow_ws_free(w);
    rf_dataset_free(&ds);
    rf_class_metrics_free(&cm);
    free(pred);
    free(log_prior);
    rf_flow_free(f);
    return code;
}
