/* renflow demo: the built-in default job (no data files needed). */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "args.h"

static const char USAGE[] =
    "usage: renflow demo [--out-dir DIR] [--dataset ring|moons] [--flow TYPE] [--epochs E] [--seed S] [--json]\n"
    "\n"
    "Trains a flow on a built-in 2-D synthetic density, prints the test NLL and writes\n"
    "DIR/model.rf, DIR/samples.npy, DIR/density.png|svg and DIR/training-curve.png\n"
    "(default DIR: renflow-demo).\n";

enum { O_DIR = 256, O_DATASET, O_FLOW, O_EPOCHS, O_SEED, O_THREADS, O_JSON, O_QUIET };
static const struct option LONGOPTS[] = {{"out-dir", 1, 0, O_DIR}, {"dataset", 1, 0, O_DATASET}, {"flow", 1, 0, O_FLOW},
                                         {"epochs", 1, 0, O_EPOCHS}, {"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS},
                                         {"json", 0, 0, O_JSON}, {"quiet", 0, 0, O_QUIET}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};

int rf_cli_demo(int argc, char **argv) {
    static const char *C = "demo";
    rf_demo_cfg cfg;
    rf_demo_cfg_default(&cfg);
    int json = 0, help = 0, c, rc = 0;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    while (!rc && (c = rf_next_opt(&o, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case O_DIR: cfg.out_dir = optarg; break;
        case O_DATASET: cfg.dataset = optarg; break;
        case O_FLOW:
            if (rf_flow_type_parse(optarg, &cfg.flow)) return rf_usage_error(C, "option --flow: unknown flow '%s'", optarg);
            break;
        case O_EPOCHS: rc = rf_arg_int(C, "epochs", optarg, 1, 100000, &cfg.epochs); break;
        case O_SEED: rc = rf_arg_u64(C, "seed", optarg, &cfg.seed); break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &cfg.threads); break;
        case O_JSON: json = 1; break;
        case O_QUIET: cfg.progress = 0; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind < argc) return rf_usage_error(C, "unexpected argument '%s'", argv[optind]);
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
