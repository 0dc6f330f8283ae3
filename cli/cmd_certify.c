/* renflow certify: a certificate (quality, cost, energy, guarantees, provenance, ratings against
 * reference densities) for a model, written as DIR/certificate.json. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "renflow/cert.h"
#include "renflow/cert_label.h"

static const char USAGE[] =
    "usage: renflow certify MODEL.rf --data TEST --out DIR [--labels y.npy] [--train TRAIN\n"
    "                       [--train-labels y.npy]] [--json] [--seed S] [--threads T] [options]\n"
    "       renflow certify --compare A.json B.json ... --out DIR\n"
    "\n"
    "Measures a model on a test set and writes DIR/certificate.json (schema\n"
    "renflow-certificate/1, docs/certificate.schema.json; fields explained in\n"
    "docs/certificates.md): test NLL and density calibration (coverage of highest-density\n"
    "regions); for class-conditional models with labels accuracy, macro-F1, kappa and the\n"
    "calibration error of p(y|x); parameters, FLOPs, latency (median, p99), sampling rate, peak\n"
    "memory; energy (RAPL when readable, else estimated from CPU time, marked so); guarantees\n"
    "(invertibility, log-determinant against a numerical Jacobian, Lipschitz constants of every\n"
    "layer, the flow and its inverse, each with a threshold and pass/fail); provenance (SHA-256 of\n"
    "the files, configuration, compiler, CPU, date). With --train, a Gaussian, a Gaussian mixture\n"
    "(EM) and a kernel density estimate are fitted on the training rows, measured the same way,\n"
    "and every metric is rated A-E against the reference by index scaling. The one-page label is\n"
    "written beside it as DIR/label.svg, label.pdf and label.png.\n"
    "With --compare: DIR/index.html puts the certificates (files, or directories holding\n"
    "certificate.json) side by side, with their labels and a quality-versus-energy Pareto plot\n"
    "(DIR/pareto.svg, .png).\n"
    "  --data FILE|DIR        test data (.npy, .csv, .arff, or a prepared data set directory)\n"
    "  --labels FILE          test labels (class-conditional models)\n"
    "  --train FILE|DIR       training data for the reference models\n"
    "  --train-labels FILE    training labels (class-conditional references)\n"
    "  --out DIR              output directory (created; certificate.json written atomically)\n"
    "  --reference KIND       rating reference: gaussian (default) | gmm | kde\n"
    "  --seed S               samples, subsamples, reference fits (default 1)\n"
    "  --threads T            (default 2)\n"
    "  --watts-per-core W     power figure for the CPU-time energy estimate (default 10)\n"
    "  --rapl-root DIR        powercap root (default $RF_RAPL_ROOT or /sys/class/powercap)\n"
    "  --samples M            model samples for HDR coverage and invertibility (default 2000)\n"
    "  --batch B              batch size for batch latency, sampling and memory (default 256)\n"
    "  --latency-budget S     seconds per latency measurement (default 1)\n"
    "  --energy-budget S      seconds per energy measurement (default 1)\n"
    "  --points P             test rows for the Jacobian checks (default 8)\n"
    "  --box-points Q         uniform points of the input range (default 4)\n"
    "  --jacobian-max-dim N   full Jacobians up to this dimension (default 512)\n"
    "  --quick                short budgets (latency/energy 0.1 s, 500 samples; GMM up to 4\n"
    "                         components, 1 restart, 100 EM iterations): for tests\n"
    "  --quiet                no progress on stderr\n"
    "  --json                 print the certificate on stdout\n"
    "Exit codes: 0 certificate written (also when a guarantee fails: that is a result),\n"
    "1 data/model/IO error, 2 usage error.\n";

enum {
    O_DATA = 256, O_LABELS, O_TRAIN, O_TRAIN_LABELS, O_OUT, O_JSON, O_SEED, O_THREADS, O_WATTS, O_RAPL, O_SAMPLES,
    O_BATCH, O_LAT, O_EN, O_POINTS, O_BOX, O_JMAX, O_QUICK, O_QUIET, O_REF, O_COMPARE
};
static const struct option LONGOPTS[] = {
    {"data", 1, 0, O_DATA},         {"labels", 1, 0, O_LABELS},          {"train", 1, 0, O_TRAIN},
    {"train-labels", 1, 0, O_TRAIN_LABELS}, {"out", 1, 0, O_OUT},        {"json", 0, 0, O_JSON},
    {"seed", 1, 0, O_SEED},         {"threads", 1, 0, O_THREADS},        {"watts-per-core", 1, 0, O_WATTS},
    {"rapl-root", 1, 0, O_RAPL},    {"samples", 1, 0, O_SAMPLES},        {"batch", 1, 0, O_BATCH},
    {"latency-budget", 1, 0, O_LAT}, {"energy-budget", 1, 0, O_EN},      {"points", 1, 0, O_POINTS},
    {"box-points", 1, 0, O_BOX},    {"jacobian-max-dim", 1, 0, O_JMAX},  {"quick", 0, 0, O_QUICK},
    {"quiet", 0, 0, O_QUIET},       {"reference", 1, 0, O_REF},          {"compare", 0, 0, O_COMPARE},
    {"help", 0, 0, 'h'},
    {0, 0, 0, 0}};

/* Outputs made from the certificate once certificate.json is written: the one-page label
 * (DIR/label.svg, .pdf, .png). */
static const rf_cert_render_fn RENDER = rf_cert_label_render;

static char *join_args(int argc, char **argv) {
    size_t n = 16;
    for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    strcpy(s, "renflow");
    for (int i = 0; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

static const char *str_at(const cJSON *j, const char *a, const char *b) {
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, a);
    const cJSON *v = o && b ? cJSON_GetObjectItemCaseSensitive(o, b) : o;
    return cJSON_IsString(v) ? v->valuestring : "-";
}

static double metric_val(const cJSON *metrics, const char *id) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(metrics, id);
    const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, "value") : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *metric_rating(const cJSON *metrics, const char *id) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(metrics, id);
    const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, "rating") : NULL;
    return cJSON_IsString(v) ? v->valuestring : "-";
}

static void print_summary(const cJSON *c, const char *dir) {
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "metrics");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "rating");
    const cJSON *rm = r ? cJSON_GetObjectItemCaseSensitive(r, "model") : NULL;
    printf("certificate: %s/certificate.json (%s)\n", dir, RF_CERT_SCHEMA_ID);
    printf("model %s, rating reference %s\n", str_at(c, "model", "name"), str_at(c, "rating", "reference"));
    printf("  compound %s   quality %s   resources %s\n", str_at(rm, "compound_rating", NULL), str_at(rm, "quality_rating", NULL),
           str_at(rm, "resource_rating", NULL));
    static const char *const SHOW[][2] = {{"nll", "test NLL (nats)"},
                                          {"bits_per_dim", "bits/dim"},
                                          {"hdr_calibration_error", "HDR calibration error"},
                                          {"accuracy", "accuracy"},
                                          {"macro_f1", "macro-F1"},
                                          {"kappa", "kappa"},
                                          {"ece", "ECE"},
                                          {"latency_sample", "latency, 1 row (s)"},
                                          {"sampling_rate", "sampling rate (1/s)"},
                                          {"peak_memory", "peak memory (bytes)"},
                                          {"energy_log_density", "energy (J per example)"}};
    for (size_t k = 0; k < sizeof SHOW / sizeof *SHOW; k++) {
        if (!cJSON_GetObjectItemCaseSensitive(m, SHOW[k][0])) continue;
        printf("  %-26s %-12.6g %s\n", SHOW[k][1], metric_val(m, SHOW[k][0]), metric_rating(m, SHOW[k][0]));
    }
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(c, "guarantees");
    const cJSON *checks = g ? cJSON_GetObjectItemCaseSensitive(g, "checks") : NULL;
    const cJSON *ch;
    printf("guarantees:\n");
    cJSON_ArrayForEach(ch, checks) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ch, "value"), *t = cJSON_GetObjectItemCaseSensitive(ch, "threshold");
        printf("  %-12s %-52s %-10.3g <= %.3g\n", str_at(ch, "status", NULL), str_at(ch, "name", NULL),
               cJSON_IsNumber(v) ? v->valuedouble : NAN, cJSON_IsNumber(t) ? t->valuedouble : NAN);
    }
    printf("energy: %s\n", str_at(c, "energy", "method"));
}

int rf_cli_certify(int argc, char **argv) {
    static const char *C = "certify";
    const char *data = NULL, *labels = NULL, *train = NULL, *train_labels = NULL, *out = NULL;
    int json = 0, threads = 2, help = 0, c, rc = 0, quick = 0, quiet = 0, compare = 0;
    rf_cert_opts o;
    rf_cert_opts_default(&o);
    int samples = -1, batch = -1, points = -1, box = -1, jmax = -1;
    float watts = -1, lat = -1, en = -1;
    rf_cli_opts co = {C, LONGOPTS, USAGE};
    optind = 1;
    while (!rc && (c = rf_next_opt(&co, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case O_DATA: data = optarg; break;
        case O_LABELS: labels = optarg; break;
        case O_TRAIN: train = optarg; break;
        case O_TRAIN_LABELS: train_labels = optarg; break;
        case O_OUT: out = optarg; break;
        case O_JSON: json = 1; break;
        case O_SEED: rc = rf_arg_u64(C, "seed", optarg, &o.seed); break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &threads); break;
        case O_WATTS: rc = rf_arg_float(C, "watts-per-core", optarg, 0.01, 10000, &watts); break;
        case O_RAPL: o.rapl_root = optarg; break;
        case O_SAMPLES: rc = rf_arg_int(C, "samples", optarg, 10, 10000000, &samples); break;
        case O_BATCH: rc = rf_arg_int(C, "batch", optarg, 1, 1000000, &batch); break;
        case O_LAT: rc = rf_arg_float(C, "latency-budget", optarg, 0, 3600, &lat); break;
        case O_EN: rc = rf_arg_float(C, "energy-budget", optarg, 0, 3600, &en); break;
        case O_POINTS: rc = rf_arg_int(C, "points", optarg, 1, 100000, &points); break;
        case O_BOX: rc = rf_arg_int(C, "box-points", optarg, 0, 100000, &box); break;
        case O_JMAX: rc = rf_arg_int(C, "jacobian-max-dim", optarg, 0, 100000, &jmax); break;
        case O_QUICK: quick = 1; break;
        case O_COMPARE: compare = 1; break;
        case O_QUIET: quiet = 1; break;
        case O_REF:
            if (strcmp(optarg, "gaussian") && strcmp(optarg, "gmm") && strcmp(optarg, "kde"))
                return rf_usage_error(C, "option --reference: expected gaussian, gmm or kde, got '%s'", optarg);
            o.rating_reference = optarg;
            break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (compare) {
        if (optind >= argc) return rf_usage_error(C, "--compare needs one or more certificates (certificate.json or its directory)");
        if (!out) return rf_usage_error(C, "--out is required");
        if (data || labels || train || train_labels)
            return rf_usage_error(C, "--compare takes certificates only (no --data, --labels, --train)");
        rf_err e = {0};
        if (rf_cert_compare_files((const char *const *)(argv + optind), argc - optind, out, &e))
            return rf_runtime_error(C, &e);
        if (!quiet) fprintf(stderr, "renflow certify: comparison of %d certificates written to %s/index.html\n", argc - optind, out);
        return RF_EXIT_OK;
    }
    if (optind != argc - 1) return rf_usage_error(C, "expected exactly one MODEL.rf argument");
    if (!data) return rf_usage_error(C, "--data is required");
    if (!out) return rf_usage_error(C, "--out is required");
    if (train_labels && !train) return rf_usage_error(C, "--train-labels needs --train");
    rf_refdensity_opts ro;
    rf_refdensity_opts_default(&ro);
    ro.seed = o.seed;
    if (quick) {
        o.latency_budget_s = 0.1;
        o.energy_budget_s = 0.1;
        o.n_model_samples = 500;
        o.latency_reps = 50;
        ro.max_components = 4;
        ro.restarts = 1;
        ro.em_max_iter = 100;
    }
    o.ref_opts = &ro;
    if (samples > 0) o.n_model_samples = samples;
    if (batch > 0) o.batch = batch;
    if (lat >= 0) o.latency_budget_s = lat;
    if (en >= 0) o.energy_budget_s = en;
    if (points > 0) o.guarantee_points = points;
    if (box >= 0) o.box_points = box;
    if (jmax >= 0) o.jacobian_max_dim = jmax;
    if (watts > 0) o.watts_per_core = watts;
    o.progress = !quiet;
    rf_set_threads(threads);
    const char *model = argv[optind];
    rf_err e = {0};
    rf_flow *f = rf_cli_load_model(C, model);
    if (!f) return RF_EXIT_ERROR;
    rf_dataset ds = {0}, dt = {0};
    cJSON *cert = NULL;
    char *cmd = join_args(argc, argv);
    int code = RF_EXIT_OK;
    if (rf_dataset_read(data, labels, NULL, &ds, &e) || rf_input_apply_meta(&ds, f->meta, &e)) goto fail;
    if (ds.x.d != f->D) {
        rf_err_set(&e, RF_EFORMAT, "%s has %d columns but model %s has dimension %d", data, ds.x.d, model, f->D);
        goto fail;
    }
    if (train) {
        if (rf_dataset_read(train, train_labels, NULL, &dt, &e) || rf_input_apply_meta(&dt, f->meta, &e)) goto fail;
        if (dt.x.d != f->D) {
            rf_err_set(&e, RF_EFORMAT, "%s has %d columns but model %s has dimension %d", train, dt.x.d, model, f->D);
            goto fail;
        }
    }
    o.model_path = model;
    o.data_path = data;
    o.labels_path = labels;
    o.train_path = train;
    o.train_labels_path = train_labels;
    o.command = cmd;
    cert = rf_certify(f, &ds.x, ds.labels, train ? &dt.x : NULL, train ? dt.labels : NULL, &o, &e);
    if (!cert || rf_cert_write(cert, out, RENDER, NULL, &e)) goto fail;
    if (json) {
        rf_print_json(cert);
        cert = NULL;
    } else {
        print_summary(cert, out);
    }
    goto done;
fail:
    code = rf_runtime_error(C, &e);
done:
    cJSON_Delete(cert);
    free(cmd);
    rf_dataset_free(&ds);
    rf_dataset_free(&dt);
    rf_flow_free(f);
    return code;
}
