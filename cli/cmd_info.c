/* renflow info: describe a model file (architecture, parameters, provenance, checksum). */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "args.h"

static const char USAGE[] = "usage: renflow info MODEL.rf [--json]\nPrints the architecture, parameter count and provenance of a model.\n";
enum { O_JSON = 256 };
static const struct option LONGOPTS[] = {{"json", 0, 0, O_JSON}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};

int rf_cli_info(int argc, char **argv) {
    static const char *C = "info";
    int json = 0, help = 0, c;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    while ((c = rf_next_opt(&o, argc, argv, &help)) != -1) {
        if (c == -2) return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        if (c == O_JSON) json = 1;
        else return rf_usage_error(C, "unexpected option");
    }
    if (optind != argc - 1) return rf_usage_error(C, "expected exactly one MODEL.rf argument");
    const char *path = argv[optind];
    rf_flow *f = rf_cli_load_model(C, path);
    if (!f) return RF_EXIT_ERROR;
    char hex[65] = "";
    rf_sha256_file(path, hex, NULL);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", path);
    cJSON_AddStringToObject(j, "sha256", hex);
    cJSON_AddNumberToObject(j, "format_version", RF_MODEL_FORMAT_VERSION);
    cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&f->spec));
    cJSON_AddNumberToObject(j, "n_params", (double)f->n_params);
    cJSON_AddNumberToObject(j, "n_layers", f->n_layers);
    cJSON *layers = cJSON_AddArrayToObject(j, "layers");
    for (int k = 0; k < f->n_layers; k++) cJSON_AddItemToArray(layers, cJSON_CreateString(f->layers[k]->ops->kind));
    if (f->meta) cJSON_AddItemToObject(j, "meta", cJSON_Duplicate(f->meta, 1));
    if (json) {
        rf_print_json(j);
    } else {
        printf("%s\n  sha256 %s\n  flow %s, D=%d, %d blocks, hidden %d x %d (%s%s), base %s\n  %d layers, %zu parameters\n",
               path, hex, rf_flow_type_name(f->spec.type), f->D, f->spec.blocks, f->spec.hidden, f->spec.n_hidden,
               rf_act_name(f->spec.act), f->spec.residual ? ", residual" : "", rf_base_kind_name(f->spec.base),
               f->n_layers, f->n_params);
        printf("  blocks: %s permutation, ActNorm %s\n", rf_perm_kind_name(rf_flow_spec_perm(&f->spec)),
               f->spec.no_actnorm ? "off" : "on");
        if (f->meta) {
            char *m = cJSON_Print(f->meta);
            printf("  provenance %s\n", m);
            cJSON_free(m);
        }
        cJSON_Delete(j);
    }
    rf_flow_free(f);
    return RF_EXIT_OK;
}
