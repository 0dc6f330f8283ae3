/* Private to the CLI: subcommands and shared argument helpers. */
#ifndef RF_CLI_H
#define RF_CLI_H

#include "renflow.h"

enum { RF_EXIT_OK = 0, RF_EXIT_ERROR = 1, RF_EXIT_USAGE = 2 };

typedef struct rf_cli_command {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} rf_cli_command;

int rf_cli_train(int argc, char **argv);
int rf_cli_cv(int argc, char **argv);
int rf_cli_eeg(int argc, char **argv);
int rf_cli_eval(int argc, char **argv);
int rf_cli_sample(int argc, char **argv);
int rf_cli_encode(int argc, char **argv);
int rf_cli_decode(int argc, char **argv);
int rf_cli_info(int argc, char **argv);
int rf_cli_demo(int argc, char **argv);
int rf_cli_explain(int argc, char **argv);
int rf_cli_search(int argc, char **argv);
int rf_cli_study(int argc, char **argv);
int rf_cli_certify(int argc, char **argv);

#endif
