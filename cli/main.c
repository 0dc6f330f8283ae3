/* renflow command-line entry: dispatches to one file per subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const rf_cli_command commands[] = {
    {"train", "train a flow on a data set", rf_cli_train},
    {"cv", "subject-wise cross-validation of a class-conditional flow", rf_cli_cv},
    {"eeg", "EEG recordings: `eeg prepare` makes a windowed, labelled data set", rf_cli_eeg},
    {"eval", "mean NLL (nats, bits/dim) of a model on a data set", rf_cli_eval},
    {"sample", "draw samples from a model", rf_cli_sample},
    {"encode", "map data x to latents z", rf_cli_encode},
    {"decode", "map latents z to data x", rf_cli_decode},
    {"info", "describe a model file", rf_cli_info},
    {"explain", "explain a class-conditional flow: prototypes, OOD rows, counterfactuals", rf_cli_explain},
    {"search", "hyperparameter and architecture search, stored in a resumable study", rf_cli_search},
    {"study", "look at a search study: show, importance, pareto, report", rf_cli_study},
    {"certify", "certificate of a model: quality, cost, energy, guarantees, ratings vs references", rf_cli_certify},
    {"demo", "train on a built-in synthetic data set, write samples and a density figure", rf_cli_demo},
};

static void usage(FILE *fp) {
    fprintf(fp, "renflow %s — normalizing flows for EEG and biomedical time series\n\n"
                "usage: renflow <command> [options]   (renflow <command> --help for details)\n\ncommands:\n",
            RF_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(fp, "  %-8s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return RF_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("renflow %s\n", RF_VERSION_STRING);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "renflow: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return RF_EXIT_USAGE;
}
