/* renflow explain: prototypes, OOD scores, counterfactuals and contributions of a
 * class-conditional flow (renflow/explain.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

static const char USAGE[] =
    "usage: renflow explain MODEL.rf --data DIR|X.npy [--labels y.npy] --out OUTDIR [options]\n"
    "\n"
    "Explains a class-conditional flow (base \"class\", e.g. trained with --task classify) on a\n"
    "data set: EEG windows (a prepared directory from `renflow eeg prepare`, or N x C x T arrays\n"
    "for a tsflow) or feature vectors (any flow). Writes OUTDIR/explain.json and figures:\n"
    "  prototypes      decoded class means f^-1(mu_c) and class-conditional samples (windows:\n"
    "                  waveforms; features: per-class profiles vs the data's mean +- sd)\n"
    "  spectra         (windows) Welch spectra and band powers per class: data, samples, prototypes\n"
    "  ood             log p(x) of every row (histogram) and the least likely rows\n"
    "  counterfactual  a row moved in latent space from one class to another, decoded: original,\n"
    "                  counterfactual, difference, and p(class | x_t) along the path\n"
    "  contributions   per-scale NLL, and per-band Shapley values (windows) or per-feature\n"
    "                  integrated gradients (features) for log p(x) and log p(class | x)\n"
    "Definitions are in include/renflow/explain.h and in explain.json.\n"
    "\n"
    "  --data DIR|FILE     prepared data set directory or array file (.npy, .csv, .arff)\n"
    "  --labels FILE       class labels for array data (without labels the predicted classes\n"
    "                      group the rows)\n"
    "  --subjects FILE     subject ids for array data (listed with the least likely rows)\n"
    "  --recordings FILE   recording id per row for array data; required by a model trained\n"
    "                      with --context (its rows are stacked with their neighbours)\n"
    "  --class-names LIST  comma-separated class names for array data, e.g. W,N1,N2,N3,REM\n"
    "  --out DIR           output directory (created when missing)\n"
    "  --channels LIST     windows: channels drawn, names or 0-based indices (default: the first 3)\n"
    "  --rate HZ           windows: sampling rate when the data have no manifest\n"
    "  --top K             least likely rows drawn and listed (default 8, at most 64)\n"
    "  --window I          counterfactual row (0-based; default: a typical row of --from: the\n"
    "                      median log p(x | from) among its rows classified as from)\n"
    "  --from CLASS        counterfactual source class, name or index (default: the row's label)\n"
    "  --to CLASS          target class (default: the row's most probable other class)\n"
    "  --cf-mode M         transport (default: z_t maps N(mu_from, sd_from) onto N(mu_to, sd_to)\n"
    "                      at t = 1) | shift (z + t (mu_to - mu_from): means only)\n"
    "  --steps N           points on the counterfactual path (default 5: t = 0, 0.25, ..., 1)\n"
    "  --samples N         class-conditional samples per class (default 200)\n"
    "  --max-rows M        rows per class for the band / feature attributions (default 32)\n"
    "  --prior P           uniform (default) | train (class frequencies recorded in the model)\n"
    "  --format F          svg (default) | png\n"
    "  --seed S            seed of the samples and subsampling (default 1)\n"
    "  --threads T         (default 2)\n"
    "  --quiet             no progress on stderr\n"
    "  --json              print explain.json on stdout\n";

enum {
    O_DATA = 256, O_LABELS, O_SUBJECTS, O_RECORDINGS, O_OUT, O_CHANNELS, O_RATE, O_TOP, O_WINDOW, O_FROM, O_TO, O_CFMODE,
    O_STEPS, O_SAMPLES, O_MAXROWS, O_PRIOR, O_FORMAT, O_SEED, O_THREADS, O_QUIET, O_JSON, O_CNAMES
};
static const struct option LONGOPTS[] = {
    {"data", 1, 0, O_DATA},       {"labels", 1, 0, O_LABELS},     {"subjects", 1, 0, O_SUBJECTS}, {"recordings", 1, 0, O_RECORDINGS},
    {"out", 1, 0, O_OUT},         {"channels", 1, 0, O_CHANNELS}, {"rate", 1, 0, O_RATE},
    {"top", 1, 0, O_TOP},         {"window", 1, 0, O_WINDOW},     {"from", 1, 0, O_FROM},
    {"to", 1, 0, O_TO},           {"cf-mode", 1, 0, O_CFMODE},    {"steps", 1, 0, O_STEPS},
    {"samples", 1, 0, O_SAMPLES}, {"max-rows", 1, 0, O_MAXROWS},  {"prior", 1, 0, O_PRIOR},
    {"format", 1, 0, O_FORMAT},   {"seed", 1, 0, O_SEED},         {"threads", 1, 0, O_THREADS},
    {"quiet", 0, 0, O_QUIET},     {"json", 0, 0, O_JSON},         {"class-names", 1, 0, O_CNAMES},
    {"help", 0, 0, 'h'},
    {0, 0, 0, 0}};

/* Replaces the data set's class names by the K names of a comma-separated list. */
static int set_class_names(rf_dataset *d, int K, const char *list, rf_err *e) {
    char **names = calloc((size_t)K, sizeof(char *));
    char *copy = strdup(list), *save = NULL;
    int n = 0, rc = RF_OK;
    if (!names || !copy) {
        free(names);
        free(copy);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n < K && !(names[n] = strdup(t))) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        n++;
    }
    free(copy);
    if (!rc && n != K)
        rc = rf_err_set(e, RF_EARG, "option --class-names: %d names given, but the model has %d classes", n, K);
    if (rc) {
        rf_strings_free(names, K);
        return rc;
    }
    if (d->class_names) rf_strings_free(d->class_names, d->n_classes);
    d->class_names = names;
    d->n_classes = K;
    return RF_OK;
}

int rf_cli_explain(int argc, char **argv) {
    static const char *C = "explain";
    const char *data = NULL, *labels = NULL, *subjects = NULL, *recordings = NULL, *out = NULL, *channels = NULL, *from = NULL,
               *to = NULL, *prior = "uniform", *format = "svg", *cfmode = "transport", *cnames = NULL;
    int json = 0, threads = 2, help = 0, c, rc = 0, window = -1;
    float rate = 0;
    rf_explain_opts o;
    rf_explain_opts_default(&o);
    rf_cli_opts co = {C, LONGOPTS, USAGE};
    optind = 1;
    while (!rc && (c = rf_next_opt(&co, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case O_DATA: data = optarg; break;
        case O_LABELS: labels = optarg; break;
        case O_SUBJECTS: subjects = optarg; break;
        case O_RECORDINGS: recordings = optarg; break;
        case O_OUT: out = optarg; break;
        case O_CHANNELS: channels = optarg; break;
        case O_RATE: rc = rf_arg_float(C, "rate", optarg, 1e-3, 1e6, &rate); break;
        case O_TOP: rc = rf_arg_int(C, "top", optarg, 0, 64, &o.top_k); break;
        case O_WINDOW: rc = rf_arg_int(C, "window", optarg, 0, 2000000000, &window); break;
        case O_FROM: from = optarg; break;
        case O_TO: to = optarg; break;
        case O_CFMODE: cfmode = optarg; break;
        case O_STEPS: rc = rf_arg_int(C, "steps", optarg, 2, 101, &o.cf_steps); break;
        case O_SAMPLES: rc = rf_arg_int(C, "samples", optarg, 2, 100000, &o.samples_per_class); break;
        case O_MAXROWS: rc = rf_arg_int(C, "max-rows", optarg, 1, 100000, &o.max_windows_per_class); break;
        case O_PRIOR: prior = optarg; break;
        case O_FORMAT: format = optarg; break;
        case O_SEED: rc = rf_arg_u64(C, "seed", optarg, &o.seed); break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &threads); break;
        case O_QUIET: o.quiet = 1; break;
        case O_JSON: json = 1; break;
        case O_CNAMES: cnames = optarg; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind != argc - 1) return rf_usage_error(C, "expected exactly one MODEL.rf argument");
    if (!data) return rf_usage_error(C, "--data is required");
    if (!out) return rf_usage_error(C, "--out is required");
    if (strcmp(prior, "uniform") && strcmp(prior, "train"))
        return rf_usage_error(C, "option --prior: expected uniform or train, got '%s'", prior);
    if (strcmp(format, "svg") && strcmp(format, "png"))
        return rf_usage_error(C, "option --format: expected svg or png, got '%s'", format);
    if (rf_cf_mode_parse(cfmode, &o.cf_mode))
        return rf_usage_error(C, "option --cf-mode: expected shift or transport, got '%s'", cfmode);
    rf_set_threads(threads);
    const char *model = argv[optind];
    rf_err e = {0};
    rf_flow *f = rf_cli_load_model(C, model);
    if (!f) return RF_EXIT_ERROR;
    rf_dataset ds = {0};
    float *log_prior = NULL;
    cJSON *summary = NULL;
    int code = RF_EXIT_OK, ch_idx[8], n_ch = 0, nchan = 0, T = 0;
    if (f->adapt_mean)
        fprintf(stderr, "renflow explain: note: %s adapts to each subject; the explanations use its reference latent "
                        "space and do not apply per-subject statistics\n", model);
    if (rf_explain_check_model(f, &e)) {
        rf_err_prefix(&e, RF_EARG, "%s", model);
        goto fail;
    }
    if (rf_dataset_read(data, labels, subjects, &ds, &e) ||
        (recordings && rf_dataset_set_recordings(&ds, recordings, &e)) || rf_input_apply_meta(&ds, f->meta, &e) ||
        rf_explain_data_shape(f, &ds, &nchan, &T, &e))
        goto fail;
    /* option values that depend on the data: usage errors */
    const int K = f->base.n_classes;
    if (cnames && set_class_names(&ds, K, cnames, &e)) goto usage;
    if (from && rf_explain_class_index(&ds, K, from, &o.from, &e)) goto usage;
    if (to && rf_explain_class_index(&ds, K, to, &o.to, &e)) goto usage;
    if (from && to && o.from == o.to) {
        rf_err_set(&e, RF_EARG, "--from and --to name the same class '%s'", from);
        goto usage;
    }
    if (window >= ds.x.n) {
        rf_err_set(&e, RF_EARG, "option --window: %d is out of range, %s has %d rows", window, data, ds.x.n);
        goto usage;
    }
    o.window = window;
    if (channels) {
        if (nchan < 1) {
            rf_err_set(&e, RF_EARG, "option --channels: %s holds feature vectors, not windows of channels", data);
            goto usage;
        }
        if (rf_explain_channel_list(&ds, nchan, channels, ch_idx, 8, &n_ch, &e)) goto usage;
        o.channels = ch_idx;
        o.n_channels = n_ch;
    }
    if (!strcmp(prior, "train") && !(log_prior = rf_flow_train_log_prior(f, &e))) goto fail;
    o.log_prior = log_prior;
    o.prior_name = prior;
    o.rate = rate;
    o.format = format;
    o.model_path = model;
    o.data_path = data;
    if (rf_explain_run(f, &ds, &o, out, &summary, &e)) goto fail;
    if (json) {
        rf_print_json(summary);
        summary = NULL;
    } else {
        const cJSON *figs = cJSON_GetObjectItemCaseSensitive(summary, "figures");
        printf("%s: explanations of %s on %s (%d rows) written to %s/explain.json and", model,
               cJSON_GetObjectItemCaseSensitive(summary, "kind")->valuestring, data, ds.x.n, out);
        const cJSON *it;
        cJSON_ArrayForEach(it, figs) printf(" %s", it->valuestring);
        printf("\n");
    }
    goto done;
usage:
    code = rf_usage_error(C, "%s", e.msg);
    goto done;
fail:
    code = rf_runtime_error(C, &e);
done:
    cJSON_Delete(summary);
    free(log_prior);
    rf_dataset_free(&ds);
    rf_flow_free(f);
    return code;
}
