#include "args.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rf_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "renflow %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'renflow %s --help')\n", cmd);
    return RF_EXIT_USAGE;
}

int rf_runtime_error(const char *cmd, const rf_err *e) {
    fprintf(stderr, "renflow %s: error: %s\n", cmd, e->msg[0] ? e->msg : rf_status_name(e->code));
    return RF_EXIT_ERROR;
}

int rf_arg_long(const char *cmd, const char *name, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return rf_usage_error(cmd, "option --%s: expected an integer in [%ld, %ld], got '%s'", name, lo, hi, s);
    *out = v;
    return 0;
}

int rf_arg_int(const char *cmd, const char *name, const char *s, long lo, long hi, int *out) {
    long v;
    int rc = rf_arg_long(cmd, name, s, lo, hi, &v);
    if (!rc) *out = (int)v;
    return rc;
}

int rf_arg_float(const char *cmd, const char *name, const char *s, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi)
        return rf_usage_error(cmd, "option --%s: expected a number in [%g, %g], got '%s'", name, lo, hi, s);
    *out = (float)v;
    return 0;
}

int rf_arg_u64(const char *cmd, const char *name, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return rf_usage_error(cmd, "option --%s: expected a non-negative integer, got '%s'", name, s);
    *out = v;
    return 0;
}

void rf_print_json(cJSON *j) {
    char *s = cJSON_Print(j);
    if (s) printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

int rf_next_opt(const rf_cli_opts *o, int argc, char **argv, int *help) {
    opterr = 0;
    int idx = 0;
    int c = getopt_long(argc, argv, "hn:", o->longopts, &idx);
    if (c == 'h') {
        fputs(o->usage, stdout);
        *help = 1;
        return -2;
    }
    if (c == '?' || c == ':') {
        const char *bad = argv[optind - 1];
        if (optopt && c == ':') rf_usage_error(o->cmd, "option %s needs a value", bad);
        else if (c == '?' && optopt) rf_usage_error(o->cmd, "option %s needs a value or is unknown", bad);
        else rf_usage_error(o->cmd, "unknown option '%s'", bad);
        return -2;
    }
    return c;
}

rf_flow *rf_cli_load_model(const char *cmd, const char *path) {
    rf_err e = {0};
    rf_flow *f = rf_flow_load(path, &e);
    if (!f) rf_runtime_error(cmd, &e);
    return f;
}
