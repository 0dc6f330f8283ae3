/* renflow eval: mean NLL (nats per example, bits per dimension), optional per-sample log p. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "args.h"

static const char USAGE[] =
    "usage: renflow eval MODEL.rf --data TEST [--labels y.npy] [--per-sample LOGP.npy] [--json]\n"
    "\n"
    "Evaluates the exact log-likelihood of a data set under a model.\n"
    "  --data FILE         data (.npy, .csv, .arff)\n"
    "  --labels FILE       class labels: log p(x|y) for a class-conditional model\n"
    "  --per-sample FILE   write log p(x_i) per row as float32 .npy\n"
    "  --threads T         (default 2)\n"
    "  --json              machine-readable output: nll_nats, bits_per_dim, n, dim\n";

enum { O_DATA = 256, O_LABELS, O_PER, O_THREADS, O_JSON };
static const struct option LONGOPTS[] = {{"data", 1, 0, O_DATA},       {"labels", 1, 0, O_LABELS},
                                         {"per-sample", 1, 0, O_PER},  {"threads", 1, 0, O_THREADS},
                                         {"json", 0, 0, O_JSON},       {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};

int rf_cli_eval(int argc, char **argv) {
    static const char *C = "eval";
    const char *data = NULL, *labels = NULL, *per = NULL;
    int json = 0, threads = 2, help = 0, c, rc = 0;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    while (!rc && (c = rf_next_opt(&o, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case O_DATA: data = optarg; break;
        case O_LABELS: labels = optarg; break;
        case O_PER: per = optarg; break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &threads); break;
        case O_JSON: json = 1; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind != argc - 1) return rf_usage_error(C, "expected exactly one MODEL.rf argument");
    if (!data) return rf_usage_error(C, "--data is required");
    rf_set_threads(threads);
    const char *model = argv[optind];
    rf_err e = {0};
    rf_flow *f = rf_cli_load_model(C, model);
    if (!f) return RF_EXIT_ERROR;
    rf_matrix m = {0};
    int *y = NULL, ny = 0, code = RF_EXIT_OK;
    float *lp = NULL;
    rf_flow_ws *w = NULL;
    if (rf_data_read(data, &m, &e) || (labels && rf_labels_read(labels, &y, &ny, &e))) goto fail;
    if (m.d != f->D) {
        rf_err_set(&e, RF_EFORMAT, "%s has %d columns but model %s has dimension %d", data, m.d, model, f->D);
        goto fail;
    }
    if (y && ny != m.n) {
        rf_err_set(&e, RF_EFORMAT, "%s has %d labels but %s has %d rows", labels, ny, data, m.n);
        goto fail;
    }
    if (y && f->base.kind == RF_BASE_CLASS)
        for (int i = 0; i < ny; i++)
            if (y[i] >= f->base.n_classes) {
                rf_err_set(&e, RF_EFORMAT, "%s: label %d at row %d, but the model has %d classes", labels, y[i], i, f->base.n_classes);
                goto fail;
            }
    if (!(w = rf_flow_ws_create(f, 1024, 1, &e)) || !(lp = rf_floats((size_t)m.n, &e))) goto fail;
    const double t0 = rf_now();
    const double nll = rf_eval_nll(f, w, &m, f->base.kind == RF_BASE_CLASS ? y : NULL, lp);
    const double secs = rf_now() - t0;
    const double bpd = nll / (f->D * 0.6931471805599453);
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
        rf_print_json(j);
    } else {
        printf("%s on %s: NLL %.6f nats/example, %.6f bits/dim (n=%d, D=%d)\n", model, data, nll, bpd, m.n, f->D);
    }
    goto done;
fail:
    code = rf_runtime_error(C, &e);
done:
    rf_free(lp);
    rf_flow_ws_free(w);
    rf_matrix_free(&m);
    free(y);
    rf_flow_free(f);
    return code;
}
