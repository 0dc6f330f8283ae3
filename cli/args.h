/* Private to the CLI: option tables, value parsing with usage errors, JSON printing. */
#ifndef RF_CLI_ARGS_H
#define RF_CLI_ARGS_H

#include <getopt.h>

#include "cli.h"

struct cJSON;

/* Each returns 0, or prints "renflow CMD: option --NAME: ..." and returns RF_EXIT_USAGE. */
int rf_arg_int(const char *cmd, const char *name, const char *s, long lo, long hi, int *out);
int rf_arg_long(const char *cmd, const char *name, const char *s, long lo, long hi, long *out);
int rf_arg_float(const char *cmd, const char *name, const char *s, double lo, double hi, float *out);
int rf_arg_u64(const char *cmd, const char *name, const char *s, uint64_t *out);
/* Prints "renflow CMD: MSG" and a hint to --help; returns RF_EXIT_USAGE. */
int rf_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "renflow CMD: error: MSG" from e; returns RF_EXIT_ERROR. */
int rf_runtime_error(const char *cmd, const rf_err *e);
/* Prints the JSON (pretty) on stdout and deletes it. */
void rf_print_json(struct cJSON *j);
/* getopt_long over argv with the given long options; unknown option -> usage error. */
typedef struct rf_cli_opts {
    const char *cmd;
    const struct option *longopts;
    const char *usage; /* full --help text */
} rf_cli_opts;
/* Returns the next option (getopt_long value), -1 at the end, or -2 after printing an error
 * (or after printing --help: then *help is set). */
int rf_next_opt(const rf_cli_opts *o, int argc, char **argv, int *help);
/* Loads a model for a subcommand, printing an error and returning NULL on failure. */
rf_flow *rf_cli_load_model(const char *cmd, const char *path);

#endif
