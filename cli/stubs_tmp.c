#include "cli.h"
int rf_cli_train(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int rf_cli_eval(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int rf_cli_sample(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int rf_cli_encode(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int rf_cli_decode(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int rf_cli_info(int argc, char **argv) { (void)argc; (void)argv; return 1; }
int rf_cli_demo(int argc, char **argv) { (void)argc; (void)argv; return 1; }
