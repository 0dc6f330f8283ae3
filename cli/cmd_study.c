/* renflow study show|importance|pareto|report: look at a search study. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"

static const char USAGE[] =
    "usage: renflow study show STUDY.db [--json]\n"
    "       renflow study importance STUDY.db [--out FIG] [--objective K] [--trees N] [--json]\n"
    "       renflow study pareto STUDY.db [--out FIG] [--json]\n"
    "       renflow study report STUDY.db --out DIR [--model BEST.rf] [--json]\n"
    "\n"
    "show        every finished trial: number, status, objective values, duration, configuration;\n"
    "            counts by status and the best trial\n"
    "importance  fANOVA on a random-forest surrogate of the complete trials: the share of the\n"
    "            objective's variance due to each parameter and each pair (mean and sd over trees)\n"
    "pareto      the non-dominated trials of objectives 1 and 2 (studies made with e.g.\n"
    "            --objective nll,time)\n"
    "report      DIR/history, importance, pareto and architecture figures (.svg and .png) and\n"
    "            DIR/report.json\n"
    "\n"
    "  --out FIG|DIR   figure file (.svg/.png/.pdf), or the report directory\n"
    "  --objective K   objective index (0 = first) or name, for importance (default 0)\n"
    "  --trees N       random-forest trees for fANOVA (default 32)\n"
    "  --model FILE    report: the model drawn as the best architecture (default: best.rf next\n"
    "                  to the study, when it is that study's best trial)\n"
    "  --json          machine-readable output on stdout\n";

enum { O_OUT = 256, O_OBJECTIVE, O_TREES, O_MODEL, O_JSON };
static const struct option LONGOPTS[] = {{"out", 1, 0, O_OUT},     {"objective", 1, 0, O_OBJECTIVE},
                                         {"trees", 1, 0, O_TREES}, {"model", 1, 0, O_MODEL},
                                         {"json", 0, 0, O_JSON},   {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};

typedef struct study_args {
    const char *sub, *path, *out, *objective, *model;
    int trees, json;
} study_args;

static int parse(int argc, char **argv, study_args *a, int *help) {
    static const char *C = "study";
    memset(a, 0, sizeof *a);
    a->trees = 32;
    if (argc < 2) return rf_usage_error(C, "expected a subcommand: show, importance, pareto or report");
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(USAGE, stdout);
        *help = 1;
        return 0;
    }
    a->sub = argv[1];
    if (strcmp(a->sub, "show") && strcmp(a->sub, "importance") && strcmp(a->sub, "pareto") && strcmp(a->sub, "report"))
        return rf_usage_error(C, "unknown subcommand '%s' (show, importance, pareto, report)", a->sub);
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    int c, rc = 0;
    argc--;
    argv++;
    while (!rc && (c = rf_next_opt(&o, argc, argv, help)) != -1) {
        switch (c) {
        case -2: return *help ? 0 : RF_EXIT_USAGE;
        case O_OUT: a->out = optarg; break;
        case O_OBJECTIVE: a->objective = optarg; break;
        case O_TREES: rc = rf_arg_int(C, "trees", optarg, 2, 10000, &a->trees); break;
        case O_MODEL: a->model = optarg; break;
        case O_JSON: a->json = 1; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind != argc - 1) return rf_usage_error(C, "%s: expected exactly one STUDY.db argument", a->sub);
    a->path = argv[optind];
    if (!strcmp(a->sub, "report") && !a->out) return rf_usage_error(C, "report: --out DIR is required");
    if (strcmp(a->sub, "report") && a->model) return rf_usage_error(C, "--model belongs to `study report`");
    if (strcmp(a->sub, "importance") && (a->objective || a->trees != 32))
        return rf_usage_error(C, "--objective and --trees belong to `study importance`");
    if (!strcmp(a->sub, "show") && a->out) return rf_usage_error(C, "show: --out is not used (try --json)");
    return 0;
}

static void fmt_value(double v, char *buf, size_t n) {
    if (!isfinite(v)) snprintf(buf, n, "-");
    else if (fabs(v) >= 1e5 && fabs(v - floor(v)) == 0) snprintf(buf, n, "%.0f", v);
    else snprintf(buf, n, "%.5g", v);
}

static int cmd_show(rf_study *st, const study_args *a) {
    rf_err e = {0};
    cJSON *j = rf_study_to_json(st, &e);
    if (!j) return rf_runtime_error("study", &e);
    if (a->json) {
        rf_print_json(j);
        return RF_EXIT_OK;
    }
    const int M = rf_study_n_objectives(st);
    printf("study %s: %s\n", rf_study_path(st), rf_study_name(st));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "counts");
    printf("sampler %s, seed %s; trials: %d complete, %d failed, %d pruned, %d running, %d queued\n",
           rf_study_sampler_name(st)[0] ? rf_study_sampler_name(st) : "?",
           cJSON_GetObjectItemCaseSensitive(j, "seed")->valuestring,
           (int)cJSON_GetObjectItemCaseSensitive(c, "complete")->valuedouble,
           (int)cJSON_GetObjectItemCaseSensitive(c, "failed")->valuedouble,
           (int)cJSON_GetObjectItemCaseSensitive(c, "pruned")->valuedouble,
           (int)cJSON_GetObjectItemCaseSensitive(c, "running")->valuedouble,
           (int)cJSON_GetObjectItemCaseSensitive(c, "queued")->valuedouble);
    int budgets = 0;
    for (int i = 0; i < rf_study_n_finished(st); i++) budgets |= rf_study_finished(st, i)->budget > 0;
    printf("\n%6s  %-8s", "trial", "status");
    if (budgets) printf("  %7s", "budget");
    for (int k = 0; k < M; k++) printf("  %14.14s", rf_study_objective(st, k)->name);
    printf("  %9s  %s\n", "seconds", "configuration");
    const rf_trial *best = rf_study_incumbent(st, 0);
    for (int i = 0; i < rf_study_n_finished(st); i++) {
        const rf_trial *t = rf_study_finished(st, i);
        printf("%5d%s  %-8s", t->number, t == best ? "*" : " ", rf_trial_status_name(t->status));
        if (budgets) printf("  %7.4g", t->budget);
        for (int k = 0; k < M; k++) {
            char v[32];
            fmt_value(t->status == RF_TRIAL_COMPLETE && k < t->n_values ? t->values[k] : NAN, v, sizeof v);
            printf("  %14s", v);
        }
        char d[32] = "-";
        if (isfinite(t->duration)) snprintf(d, sizeof d, "%.2f", t->duration);
        char *cs = rf_config_to_string(rf_study_space(st), &t->cfg);
        printf("  %9s  %s", d, cs ? cs : "?");
        free(cs);
        if (t->error) printf("  [%s%s]", t->lost ? "lost: " : "", t->error);
        printf("\n");
    }
    if (best) printf("\n* best: trial %d, %s = %.6g\n", best->number, rf_study_objective(st, 0)->name, best->values[0]);
    cJSON_Delete(j);
    return RF_EXIT_OK;
}

static int objective_index(rf_study *st, const char *s, int *k) {
    *k = 0;
    if (!s) return 0;
    for (int q = 0; q < rf_study_n_objectives(st); q++)
        if (!strcmp(rf_study_objective(st, q)->name, s)) {
            *k = q;
            return 0;
        }
    char *end;
    long v = strtol(s, &end, 10);
    if (end != s && !*end && v >= 0 && v < rf_study_n_objectives(st)) {
        *k = (int)v;
        return 0;
    }
    return rf_usage_error("study", "option --objective: '%s' is neither an objective name nor an index in [0, %d]", s,
                          rf_study_n_objectives(st) - 1);
}

static int cmp_desc(const void *a, const void *b) {
    const double *x = a, *y = b;
    return (x[0] < y[0]) - (x[0] > y[0]);
}

static int cmd_importance(rf_study *st, const study_args *a) {
    int k, rc = objective_index(st, a->objective, &k);
    if (rc) return rc;
    rf_err e = {0};
    rf_fanova_opts fo;
    rf_fanova_opts_default(&fo);
    fo.forest.n_trees = a->trees;
    fo.forest.seed = rf_study_seed(st) ^ 0xfa0aULL;
    rf_importance imp;
    if (rf_study_importance(st, k, &fo, &imp, &e)) return rf_runtime_error("study", &e);
    const rf_space *sp = rf_study_space(st);
    const char **names = malloc(sizeof(char *) * (size_t)sp->n);
    if (!names) {
        rf_importance_free(&imp);
        return RF_EXIT_ERROR;
    }
    for (int i = 0; i < sp->n; i++) names[i] = sp->p[i].name;
    int exit_code = RF_EXIT_OK;
    if (a->out) {
        char title[200];
        snprintf(title, sizeof title, "hyperparameter importance (fANOVA) for %s", rf_study_objective(st, k)->name);
        if (rf_plot_importance(a->out, title, &imp, names, 20, &e)) exit_code = rf_runtime_error("study", &e);
    }
    if (exit_code == RF_EXIT_OK) {
        if (a->json) {
            cJSON *j = rf_importance_to_json(&imp, names);
            cJSON_AddStringToObject(j, "objective", rf_study_objective(st, k)->name);
            if (a->out) cJSON_AddStringToObject(j, "figure", a->out);
            rf_print_json(j);
        } else {
            printf("fANOVA of %s over %d complete trials (%d of %d trees with variance)\n", rf_study_objective(st, k)->name,
                   imp.n, imp.n_trees_used, imp.n_trees);
            double(*ord)[2] = malloc(sizeof *ord * (size_t)(imp.d + imp.n_pairs));
            for (int i = 0; ord && i < imp.d; i++) ord[i][0] = imp.main_mean[i], ord[i][1] = i;
            if (ord) qsort(ord, (size_t)imp.d, sizeof *ord, cmp_desc);
            printf("\n%-24s %10s %10s\n", "parameter", "share %", "sd %");
            for (int i = 0; ord && i < imp.d; i++) {
                int p = (int)ord[i][1];
                printf("%-24s %10.2f %10.2f\n", names[p], 100 * imp.main_mean[p], 100 * imp.main_sd[p]);
            }
            if (imp.n_pairs > 0 && ord) {
                for (int q = 0; q < imp.n_pairs; q++) ord[q][0] = imp.pair_mean[q], ord[q][1] = q;
                qsort(ord, (size_t)imp.n_pairs, sizeof *ord, cmp_desc);
                int show = imp.n_pairs < 10 ? imp.n_pairs : 10;
                printf("\n%-40s %10s %10s   (interaction alone; top %d of %d pairs)\n", "pair", "share %", "sd %", show,
                       imp.n_pairs);
                for (int q = 0; q < show; q++) {
                    int p = (int)ord[q][1];
                    char pn[160];
                    snprintf(pn, sizeof pn, "%s x %s", names[imp.pair_i[p]], names[imp.pair_j[p]]);
                    printf("%-40s %10.2f %10.2f\n", pn, 100 * imp.pair_mean[p], 100 * imp.pair_sd[p]);
                }
            }
            free(ord);
            if (a->out) printf("\nfigure: %s\n", a->out);
        }
    }
    free(names);
    rf_importance_free(&imp);
    return exit_code;
}

static int cmd_pareto(rf_study *st, const study_args *a) {
    rf_err e = {0};
    int *front = NULL, nf = 0;
    if (rf_study_plot_pareto(st, a->out, &front, &nf, &e)) return rf_runtime_error("study", &e);
    const rf_objective *o0 = rf_study_objective(st, 0), *o1 = rf_study_objective(st, 1);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "study", rf_study_path(st));
    cJSON *ob = cJSON_AddArrayToObject(j, "objectives");
    cJSON_AddItemToArray(ob, cJSON_CreateString(o0->name));
    cJSON_AddItemToArray(ob, cJSON_CreateString(o1->name));
    cJSON *arr = cJSON_AddArrayToObject(j, "front");
    if (!a->json) printf("Pareto front of %s (%s) and %s (%s): %d trials\n\n%6s  %14.14s  %14.14s  %s\n", o0->name,
                         o0->direction == RF_MAXIMIZE ? "max" : "min", o1->name, o1->direction == RF_MAXIMIZE ? "max" : "min",
                         nf, "trial", o0->name, o1->name, "configuration");
    for (int q = 0; q < nf; q++) {
        for (int i = 0; i < rf_study_n_finished(st); i++) {
            const rf_trial *t = rf_study_finished(st, i);
            if (t->number != front[q]) continue;
            cJSON *tj = cJSON_CreateObject();
            cJSON_AddNumberToObject(tj, "trial", t->number);
            cJSON_AddNumberToObject(tj, o0->name, t->values[0]);
            cJSON_AddNumberToObject(tj, o1->name, t->values[1]);
            cJSON_AddItemToObject(tj, "config", rf_config_to_json(rf_study_space(st), &t->cfg));
            cJSON_AddItemToArray(arr, tj);
            if (!a->json) {
                char v0[32], v1[32];
                fmt_value(t->values[0], v0, sizeof v0);
                fmt_value(t->values[1], v1, sizeof v1);
                char *cs = rf_config_to_string(rf_study_space(st), &t->cfg);
                printf("%6d  %14s  %14s  %s\n", t->number, v0, v1, cs ? cs : "?");
                free(cs);
            }
        }
    }
    free(front);
    if (a->out) cJSON_AddStringToObject(j, "figure", a->out);
    if (a->json) rf_print_json(j);
    else {
        if (a->out) printf("\nfigure: %s\n", a->out);
        cJSON_Delete(j);
    }
    return RF_EXIT_OK;
}

/* best.rf next to the study, when it holds this study's best trial. */
static int guess_model(rf_study *st, char *buf, size_t n) {
    const rf_trial *b = rf_study_incumbent(st, 0);
    if (!b) return 0;
    const char *p = rf_study_path(st), *slash = strrchr(p, '/');
    if (slash) snprintf(buf, n, "%.*s/best.rf", (int)(slash - p), p);
    else snprintf(buf, n, "best.rf");
    struct stat sb;
    if (stat(buf, &sb) != 0) return 0;
    rf_flow *f = rf_flow_load(buf, NULL);
    if (!f) return 0;
    const cJSON *s = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, "search") : NULL;
    const cJSON *nm = s ? cJSON_GetObjectItemCaseSensitive(s, "study_name") : NULL;
    const cJSON *tr = s ? cJSON_GetObjectItemCaseSensitive(s, "trial") : NULL;
    int ok = cJSON_IsString(nm) && !strcmp(nm->valuestring, rf_study_name(st)) && cJSON_IsNumber(tr) &&
             (int)tr->valuedouble == b->number;
    rf_flow_free(f);
    return ok;
}

static int cmd_report(rf_study *st, const study_args *a) {
    rf_err e = {0};
    char guess[4400];
    const char *model = a->model;
    if (!model && guess_model(st, guess, sizeof guess)) model = guess;
    cJSON *j = NULL;
    if (rf_search_report_write(st, a->out, model, NULL, &j, &e)) return rf_runtime_error("study", &e);
    if (a->json) {
        rf_print_json(j);
        return RF_EXIT_OK;
    }
    printf("report of %s written to %s/\n", rf_study_path(st), a->out);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(j, "files"), *f;
    cJSON_ArrayForEach(f, files) printf("  %s\n", f->valuestring);
    const cJSON *sk = cJSON_GetObjectItemCaseSensitive(j, "skipped"), *s;
    cJSON_ArrayForEach(s, sk) printf("  (no %s: %s)\n", s->string, s->valuestring);
    cJSON_Delete(j);
    return RF_EXIT_OK;
}

int rf_cli_study(int argc, char **argv) {
    study_args a;
    int help = 0, rc = parse(argc, argv, &a, &help);
    if (help) return RF_EXIT_OK;
    if (rc) return rc;
    rf_err e = {0};
    rf_study *st = rf_study_open(a.path, NULL, &e);
    if (!st) return rf_runtime_error("study", &e);
    if (!strcmp(a.sub, "show")) rc = cmd_show(st, &a);
    else if (!strcmp(a.sub, "importance")) rc = cmd_importance(st, &a);
    else if (!strcmp(a.sub, "pareto")) rc = cmd_pareto(st, &a);
    else rc = cmd_report(st, &a);
    rf_study_close(st);
    return rc;
}
