/* renflow demo: the built-in default job (no data files needed). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "args.h"

static const char USAGE[] =
    "usage: renflow demo [--out-dir DIR] [--dataset ring|moons] [--flow TYPE] [--epochs E] [--seed S] [--json]\n"
    "       renflow demo --eeg [--mode arithmetic|sleep] [--features bandpower|raw] [--subjects N]\n"
    "                          [--folds K] [--out-dir DIR] ...\n"
    "\n"
    "Trains a flow on a built-in 2-D synthetic density, prints the test NLL and writes\n"
    "DIR/model.rf, DIR/samples.npy, DIR/density.png|svg and DIR/training-curve.png\n"
    "(default DIR: renflow-demo).\n"
    "\n"
    "With --eeg: simulates EEG (rest vs mental arithmetic, or sleep stages; 8 channels at 64 Hz,\n"
    "4 s windows), writes it as a prepared data set, standardises it by subject, cross-validates\n"
    "a class-conditional flow by subject (on log band powers, or with --features raw a time-series\n"
    "flow on the windows) and prints accuracy, balanced accuracy, macro-F1 and kappa\n"
    "(default DIR: renflow-eeg-demo; DIR/simulated-eeg/, DIR/model-fold<k>.rf, DIR/cv.json).\n";

enum { O_DIR = 256, O_DATASET, O_FLOW, O_EPOCHS, O_SEED, O_THREADS, O_JSON, O_QUIET, O_EEG, O_MODE, O_SUBJ, O_FOLDS, O_FEAT };
static const struct option LONGOPTS[] = {{"out-dir", 1, 0, O_DIR}, {"dataset", 1, 0, O_DATASET}, {"flow", 1, 0, O_FLOW},
                                         {"epochs", 1, 0, O_EPOCHS}, {"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS},
                                         {"json", 0, 0, O_JSON}, {"quiet", 0, 0, O_QUIET}, {"eeg", 0, 0, O_EEG}, {"mode", 1, 0, O_MODE},
                                         {"subjects", 1, 0, O_SUBJ}, {"folds", 1, 0, O_FOLDS}, {"features", 1, 0, O_FEAT}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};

static int eeg_demo(const rf_eeg_demo_cfg *cfg, int json) {
    rf_err e = {0};
    rf_eeg_demo_result r;
    if (rf_eeg_demo_run(cfg, &r, &e)) return rf_runtime_error("demo", &e);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        char s[32];
        snprintf(s, sizeof s, "%llu", (unsigned long long)cfg->seed);
        cJSON_AddStringToObject(j, "mode", cfg->mode);
        cJSON_AddStringToObject(j, "seed", s);
        cJSON_AddNumberToObject(j, "windows", r.windows);
        cJSON_AddNumberToObject(j, "folds", r.folds);
        cJSON_AddNumberToObject(j, "accuracy", r.accuracy);
        cJSON_AddNumberToObject(j, "balanced_accuracy", r.balanced_accuracy);
        cJSON_AddNumberToObject(j, "macro_f1", r.macro_f1);
        cJSON_AddNumberToObject(j, "kappa", r.kappa);
        cJSON_AddStringToObject(j, "data", r.data_dir);
        cJSON_AddStringToObject(j, "model", r.model_path);
        cJSON_AddStringToObject(j, "report", r.report_path);
        rf_print_json(j);
    } else {
        printf("simulated %s EEG, %d windows, %d subject-wise folds (seed %llu)\n"
               "held-out subjects: accuracy %.3f, balanced accuracy %.3f, macro-F1 %.3f, kappa %.3f\n"
               "per fold: balanced accuracy %.3f +- %.3f, kappa %.3f +- %.3f\n"
               "data %s\nmodel %s (fold 1)\nreport %s\n",
               cfg->mode, r.windows, r.folds, (unsigned long long)cfg->seed, r.accuracy, r.balanced_accuracy, r.macro_f1,
               r.kappa, r.fold_mean[1], r.fold_sd[1], r.fold_mean[3], r.fold_sd[3], r.data_dir, r.model_path, r.report_path);
    }
    return RF_EXIT_OK;
}

int rf_cli_demo(int argc, char **argv) {
    static const char *C = "demo";
    rf_demo_cfg cfg;
    rf_demo_cfg_default(&cfg);
    rf_eeg_demo_cfg ecfg;
    rf_eeg_demo_cfg_default(&ecfg);
    int json = 0, help = 0, c, rc = 0, eeg = 0, epochs = 0;
    const char *dir = NULL;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    while (!rc && (c = rf_next_opt(&o, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case O_DIR: dir = optarg; break;
        case O_EEG: eeg = 1; break;
        case O_MODE: ecfg.mode = optarg; break;
        case O_FEAT: ecfg.features = optarg; break;
        case O_SUBJ: rc = rf_arg_int(C, "subjects", optarg, 2, 10000, &ecfg.subjects); break;
        case O_FOLDS: rc = rf_arg_int(C, "folds", optarg, 2, 10000, &ecfg.folds); break;
        case O_DATASET: cfg.dataset = optarg; break;
        case O_FLOW:
            if (rf_flow_type_parse(optarg, &cfg.flow)) return rf_usage_error(C, "option --flow: unknown flow '%s'", optarg);
            break;
        case O_EPOCHS: rc = rf_arg_int(C, "epochs", optarg, 1, 100000, &epochs); break;
        case O_SEED: rc = rf_arg_u64(C, "seed", optarg, &cfg.seed); ecfg.seed = cfg.seed; break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &cfg.threads); ecfg.threads = cfg.threads; break;
        case O_JSON: json = 1; break;
        case O_QUIET: cfg.progress = ecfg.progress = 0; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind < argc) return rf_usage_error(C, "unexpected argument '%s'", argv[optind]);
    if (eeg) {
        if (strcmp(ecfg.mode, "arithmetic") && strcmp(ecfg.mode, "sleep"))
            return rf_usage_error(C, "option --mode: expected arithmetic or sleep, got '%s'", ecfg.mode);
        if (strcmp(ecfg.features, "bandpower") && strcmp(ecfg.features, "raw"))
            return rf_usage_error(C, "option --features: expected bandpower or raw, got '%s'", ecfg.features);
        if (epochs) ecfg.epochs = epochs;
        if (dir) ecfg.out_dir = dir;
        return eeg_demo(&ecfg, json);
    }
    if (epochs) cfg.epochs = epochs;
    if (dir) cfg.out_dir = dir;
    rf_err e = {0};
    rf_demo_result r;
    if (rf_demo_run(&cfg, &r, &e)) return rf_runtime_error(C, &e);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "dataset", cfg.dataset);
        cJSON_AddStringToObject(j, "flow", rf_flow_type_name(cfg.flow));
        char s[32];
        snprintf(s, sizeof s, "%llu", (unsigned long long)cfg.seed);
        cJSON_AddStringToObject(j, "seed", s);
        cJSON_AddNumberToObject(j, "test_nll_nats", r.test_nll);
        cJSON_AddNumberToObject(j, "test_bits_per_dim", r.test_bits_per_dim);
        cJSON_AddNumberToObject(j, "train_seconds", r.train_seconds);
        cJSON_AddNumberToObject(j, "samples_per_sec", r.samples_per_sec);
        cJSON_AddStringToObject(j, "model", r.model_path);
        cJSON_AddStringToObject(j, "samples", r.samples_path);
        cJSON_AddStringToObject(j, "density_png", r.density_png);
        cJSON_AddStringToObject(j, "density_svg", r.density_svg);
        cJSON_AddStringToObject(j, "training_curve", r.curve_png);
        rf_print_json(j);
    } else {
        printf("test NLL %.4f nats (%.4f bits/dim) on %d held-out points of '%s' (seed %llu)\n"
               "model %s\nsamples %s\nfigures %s, %s, %s\n",
               r.test_nll, r.test_bits_per_dim, r.test_rows, cfg.dataset, (unsigned long long)cfg.seed, r.model_path,
               r.samples_path, r.density_png, r.density_svg, r.curve_png);
    }
    return RF_EXIT_OK;
}
