/* renflow sample / encode / decode: draw x from a model, map x -> z, map z -> x. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

enum { O_DATA = 256, O_OUT, O_SEED, O_LABEL, O_THREADS, O_JSON };
static const struct option LONGOPTS[] = {{"data", 1, 0, O_DATA},     {"out", 1, 0, O_OUT},
                                         {"seed", 1, 0, O_SEED},     {"label", 1, 0, O_LABEL},
                                         {"threads", 1, 0, O_THREADS}, {"json", 0, 0, O_JSON},
                                         {"help", 0, 0, 'h'},        {0, 0, 0, 0}};

typedef enum { MAP_SAMPLE, MAP_ENCODE, MAP_DECODE } map_kind;

static const char *const USAGES[] = {
    "usage: renflow sample MODEL.rf -n N --out SAMPLES.npy [--seed S] [--label C] [--json]\n"
    "Draws N samples (float32 .npy). --label draws from one class of a class-conditional model.\n",
    "usage: renflow encode MODEL.rf --data X.npy --out Z.npy [--json]\n"
    "Maps data to latents z = f(x) (float32 .npy).\n",
    "usage: renflow decode MODEL.rf --data Z.npy --out X.npy [--json]\n"
    "Maps latents back to data x = f^-1(z) (float32 .npy).\n"};

static int run_map(map_kind kind, const char *C, int argc, char **argv) {
    const char *data = NULL, *out = NULL;
    int n = -1, label = -1, threads = 2, json = 0, help = 0, c, rc = 0;
    uint64_t seed = 1;
    rf_cli_opts o = {C, LONGOPTS, USAGES[kind]};
    optind = 1;
    while (!rc && (c = rf_next_opt(&o, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case 'n': rc = rf_arg_int(C, "n", optarg, 1, 100000000, &n); break;
        case O_DATA: data = optarg; break;
        case O_OUT: out = optarg; break;
        case O_SEED: rc = rf_arg_u64(C, "seed", optarg, &seed); break;
        case O_LABEL: rc = rf_arg_int(C, "label", optarg, 0, 1000, &label); break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &threads); break;
        case O_JSON: json = 1; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind != argc - 1) return rf_usage_error(C, "expected exactly one MODEL.rf argument");
    if (!out) return rf_usage_error(C, "--out is required");
    if (kind == MAP_SAMPLE && n < 1) return rf_usage_error(C, "-n N is required");
    if (kind != MAP_SAMPLE && !data) return rf_usage_error(C, "--data is required");
    if (kind != MAP_SAMPLE && (n >= 0 || label >= 0)) return rf_usage_error(C, "-n and --label are for 'renflow sample'");
    rf_set_threads(threads);
    const char *model = argv[optind];
    rf_flow *f = rf_cli_load_model(C, model);
    if (!f) return RF_EXIT_ERROR;
    rf_err e = {0};
    rf_matrix in = {0}, res = {0};
    int *labels = NULL, code = RF_EXIT_OK;
    rf_flow_ws *w = rf_flow_ws_create(f, 1024, 1, &e);
    if (!w) goto fail;
    if (label >= 0 && (f->base.kind != RF_BASE_CLASS || label >= f->base.n_classes)) {
        rf_err_set(&e, RF_EARG, "--label %d: model %s has %d classes", label, model, f->base.kind == RF_BASE_CLASS ? f->base.n_classes : 0);
        goto fail;
    }
    if (kind != MAP_SAMPLE) {
        if (rf_data_read(data, &in, &e)) goto fail;
        if (in.d != f->D) {
            rf_err_set(&e, RF_EFORMAT, "%s has %d columns but model %s has dimension %d", data, in.d, model, f->D);
            goto fail;
        }
        n = in.n;
    }
    if (rf_matrix_alloc(&res, n, f->D, &e)) goto fail;
    const double t0 = rf_now();
    if (kind == MAP_SAMPLE) {
        rf_rng rng;
        rf_rng_seed(&rng, seed);
        if (label >= 0) {
            labels = malloc(sizeof(int) * n);
            for (int i = 0; i < n; i++) labels[i] = label;
        }
        rf_flow_sample(f, w, n, labels, &rng, res.x);
    } else if (kind == MAP_ENCODE) {
        rf_flow_forward(f, w, n, in.x, res.x, NULL);
    } else {
        rf_flow_inverse(f, w, n, in.x, res.x, NULL);
    }
    const double secs = rf_now() - t0;
    if (!rf_all_finite(res.x, (size_t)n * f->D)) {
        rf_err_set(&e, RF_ENONFINITE, "%s produced non-finite values (input outside the model's numerical range?); %s not written", C, out);
        goto fail;
    }
    rf_ndarray arr = {.ndim = 2, .shape = {n, f->D}, .dtype = RF_DT_F32, .data = res.x};
    if (rf_npy_write(out, &arr, &e)) goto fail;
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddNumberToObject(j, "n", n);
        cJSON_AddNumberToObject(j, "dim", f->D);
        cJSON_AddNumberToObject(j, "seconds", secs);
        cJSON_AddNumberToObject(j, "samples_per_sec", secs > 0 ? n / secs : 0);
        if (kind == MAP_SAMPLE) {
            char s[32];
            snprintf(s, sizeof s, "%llu", (unsigned long long)seed);
            cJSON_AddStringToObject(j, "seed", s);
        }
        rf_print_json(j);
    }
    goto done;
fail:
    code = rf_runtime_error(C, &e);
done:
    free(labels);
    rf_matrix_free(&in);
    rf_matrix_free(&res);
    rf_flow_ws_free(w);
    rf_flow_free(f);
    return code;
}

int rf_cli_sample(int argc, char **argv) { return run_map(MAP_SAMPLE, "sample", argc, argv); }
int rf_cli_encode(int argc, char **argv) { return run_map(MAP_ENCODE, "encode", argc, argv); }
int rf_cli_decode(int argc, char **argv) { return run_map(MAP_DECODE, "decode", argc, argv); }
