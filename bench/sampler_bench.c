/* renflow's samplers against Optuna (bench/optuna_ref.py writes the Optuna side in the same
 * format) and BOHB against random search on a flow-training task.
 *
 * build: the CMake target sampler_bench (bench block at the end of CMakeLists.txt), or
 *   cc -O2 -fopenmp -Iinclude -Isrc/viz -o build/sampler_bench bench/sampler_bench.c \
 *      build/librenflow.a -lopenblas -llapacke -lcjson -lzip -lcrypto -lcairo -lfftw3 -lsqlite3 \
 *      -lgsl -lgslcblas -ledf -lm
 *
 * usage:
 *   sampler_bench suite [--seeds N] [--seed0 S] [--trials N] [--samplers a,b,..] [--functions f,g]
 *       best value after N trials (default 100) of each sampler (random,tpe) on each function
 *       (branin,hartmann6; also hartmann3, styblinski5, rosenbrock4, levy4, ackley5, camel,
 *       goldstein = log Goldstein-Price) for seeds S..S+N-1 (default 0..19), histories in memory:
 *       lines "suite renflow FUNCTION SAMPLER SEED BEST"
 *   sampler_bench overhead [--trials N] [--asks K] [--samplers a,b,..] [--work DIR]
 *       CPU time per trial with N (1000) completed trials on Hartmann-6: the sampler alone (history
 *       in memory, K asks) and a whole study round (rf_study_ask + rf_study_tell, SQLite file in
 *       DIR): lines "overhead renflow SAMPLER sampler|study MS_PER_TRIAL"; multi-fidelity
 *       samplers (bohb, asha, ...) only the study round, after N trials of their own
 *   sampler_bench flow [--seeds N] [--seed0 S] [--task ring|moons] [--tiny] [--min B] [--max B] [--eta E]
 *                      [--iterations I] [--samplers bohb,random] [--work DIR]
 *       validation NLL of flows trained on a built-in task (renflow's search objective, budget =
 *       epochs; --tiny: the task's small version, 600 training rows instead of 3000);
 *       multi-fidelity samplers run I Hyperband iterations of budget (default 2), random
 *       search trains at --max epochs for the same total: lines
 *       "flow SAMPLER SEED TRIAL BUDGET CUMULATIVE_EPOCHS VALUE BEST_SO_FAR CUMULATIVE_SECONDS"
 *   sampler_bench table FILE... [--png PATH] [--md PATH]
 *       reads the lines above (from any mix of files) and prints the side-by-side tables
 *       (Markdown with --md); --png draws the flow anytime curves (median and IQR over seeds). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "draw.h"
#include "renflow/search.h"
#include "renflow/search_job.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Quantile (linear interpolation, as numpy's default) of sorted v[0..n-1]. */
static double quantile(const double *v, int n, double q) {
    if (n <= 0) return NAN;
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    double f = pos - i;
    return v[i] + f * (v[i + 1] - v[i]);
}

static int split_list(char *s, char **out, int max) {
    int n = 0;
    for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = tok;
    return n;
}

static const char *arg_val(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "sampler_bench: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

static void die(const rf_err *e, const char *what) {
    fprintf(stderr, "sampler_bench: %s: %s\n", what, e->msg);
    exit(1);
}

/* ---------------------------------------------------------------------------------------
 * further test functions (a check that a sampler default tuned on Branin and Hartmann-6 is
 * not fitted to them; bench/optuna_ref.py has the same ones)
 * --------------------------------------------------------------------------------------- */

static double f_hartmann3(const double *x) {
    static const double A[4][3] = {{3, 10, 30}, {0.1, 10, 35}, {3, 10, 30}, {0.1, 10, 35}};
    static const double P[4][3] = {{3689, 1170, 2673}, {4699, 4387, 7470}, {1091, 8732, 5547}, {381, 5743, 8828}};
    static const double al[4] = {1, 1.2, 3, 3.2};
    double s = 0;
    for (int i = 0; i < 4; i++) {
        double t = 0;
        for (int j = 0; j < 3; j++) t += A[i][j] * pow(x[j] - 1e-4 * P[i][j], 2);
        s -= al[i] * exp(-t);
    }
    return s;
}
static double f_styblinski5(const double *x) {
    double s = 0;
    for (int j = 0; j < 5; j++) s += pow(x[j], 4) - 16 * x[j] * x[j] + 5 * x[j];
    return 0.5 * s;
}
static double f_rosenbrock4(const double *x) {
    double s = 0;
    for (int j = 0; j < 3; j++) s += 100 * pow(x[j + 1] - x[j] * x[j], 2) + pow(1 - x[j], 2);
    return s;
}
static double f_levy4(const double *x) {
    double w[4];
    for (int j = 0; j < 4; j++) w[j] = 1 + (x[j] - 1) / 4;
    double s = pow(sin(M_PI * w[0]), 2);
    for (int j = 0; j < 3; j++) s += pow(w[j] - 1, 2) * (1 + 10 * pow(sin(M_PI * w[j] + 1), 2));
    return s + pow(w[3] - 1, 2) * (1 + pow(sin(2 * M_PI * w[3]), 2));
}
static double f_ackley5(const double *x) {
    double a = 0, b = 0;
    for (int j = 0; j < 5; j++) {
        a += x[j] * x[j];
        b += cos(2 * M_PI * x[j]);
    }
    return -20 * exp(-0.2 * sqrt(a / 5)) - exp(b / 5) + 20 + M_E;
}
static double f_camel(const double *x) {
    double a = x[0], b = x[1];
    return (4 - 2.1 * a * a + pow(a, 4) / 3) * a * a + a * b + (-4 + 4 * b * b) * b * b;
}
static double f_goldstein(const double *x) { /* log of Goldstein-Price */
    double a = x[0], b = x[1];
    double t1 = 1 + pow(a + b + 1, 2) * (19 - 14 * a + 3 * a * a - 14 * b + 6 * a * b + 3 * b * b);
    double t2 = 30 + pow(2 * a - 3 * b, 2) * (18 - 32 * a + 12 * a * a + 48 * b - 36 * a * b + 27 * b * b);
    return log(t1 * t2);
}

typedef struct bench_fn {
    const char *name;
    int dim;
    double lo, hi;
    double (*f)(const double *);
} bench_fn;
static const bench_fn EXTRA[] = {{"hartmann3", 3, 0, 1, f_hartmann3},         {"styblinski5", 5, -5, 5, f_styblinski5},
                                 {"rosenbrock4", 4, -2, 2, f_rosenbrock4},    {"levy4", 4, -10, 10, f_levy4},
                                 {"ackley5", 5, -32.768, 32.768, f_ackley5}, {"camel", 2, -2, 2, f_camel},
                                 {"goldstein", 2, -2, 2, f_goldstein}};
#define N_EXTRA ((int)(sizeof EXTRA / sizeof EXTRA[0]))

/* A function of the suite: renflow's (rf_testfunc) or one of EXTRA. */
typedef struct suite_fn {
    const rf_testfunc *tf;
    const bench_fn *bf;
} suite_fn;

static double suite_eval(const suite_fn *F, const rf_space *sp, const rf_config *c) {
    if (F->tf) {
        double v = NAN;
        rf_err e = {0};
        if (rf_testfunc_eval(F->tf, sp, c, &v, &e)) die(&e, "evaluate");
        return v;
    }
    return F->bf->f(c->v); /* parameters x1..x<dim>, all floats */
}

static rf_space *suite_space(const suite_fn *F, rf_err *e) {
    if (F->tf) return rf_testfunc_space(F->tf, e);
    char js[4096];
    int off = snprintf(js, sizeof js, "{\"parameters\": [");
    for (int j = 0; j < F->bf->dim; j++)
        off += snprintf(js + off, sizeof js - (size_t)off, "%s{\"name\": \"x%d\", \"type\": \"float\", \"low\": %.17g, \"high\": %.17g}",
                        j ? "," : "", j + 1, F->bf->lo, F->bf->hi);
    snprintf(js + off, sizeof js - (size_t)off, "]}");
    return rf_space_parse(js, F->bf->name, e);
}

/* ---------------------------------------------------------------------------------------
 * suite: best value after n trials, histories in memory
 * --------------------------------------------------------------------------------------- */

static double run_in_memory(rf_sampler *s, const suite_fn *F, const rf_space *sp, int n, uint64_t seed) {
    rf_trial *tr = calloc((size_t)n, sizeof *tr);
    const rf_trial **items = calloc((size_t)n, sizeof *items);
    if (!tr || !items) exit(1);
    rf_history h = {0};
    h.n_objectives = 1;
    h.directions[0] = RF_MINIMIZE;
    h.items = items;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_err e = {0};
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
        rf_config_init(&tr[i].cfg, sp, &e);
        h.n = i;
        if (rf_sampler_sample(s, sp, &h, &rng, &tr[i].cfg, &e)) die(&e, "sample");
        tr[i].number = i;
        tr[i].status = RF_TRIAL_COMPLETE;
        tr[i].n_values = 1;
        tr[i].last_step = -1;
        tr[i].values[0] = suite_eval(F, sp, &tr[i].cfg);
        items[i] = &tr[i];
        if (tr[i].values[0] < best) best = tr[i].values[0];
    }
    for (int i = 0; i < n; i++) rf_config_free(&tr[i].cfg);
    free(tr);
    free(items);
    return best;
}

static int cmd_suite(int argc, char **argv) {
    int seeds = 20, seed0 = 0, trials = 100;
    char samplers[256] = "random,tpe", functions[256] = "branin,hartmann6";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds")) seeds = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--seed0")) seed0 = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--trials")) trials = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--samplers")) snprintf(samplers, sizeof samplers, "%s", arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--functions")) snprintf(functions, sizeof functions, "%s", arg_val(argc, argv, &i));
        else {
            fprintf(stderr, "sampler_bench suite: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char *sn[16], *fn[16];
    int ns = split_list(samplers, sn, 16), nf = split_list(functions, fn, 16);
    rf_err e = {0};
    for (int f = 0; f < nf; f++) {
        suite_fn F = {rf_testfunc_find(fn[f]), NULL};
        for (int q = 0; q < N_EXTRA && !F.tf && !F.bf; q++)
            if (!strcmp(EXTRA[q].name, fn[f])) F.bf = &EXTRA[q];
        if (!F.tf && !F.bf) {
            fprintf(stderr, "sampler_bench: unknown function %s (branin, hartmann6, hartmann3, styblinski5, rosenbrock4, "
                            "levy4, ackley5, camel, goldstein)\n", fn[f]);
            return 2;
        }
        rf_space *sp = suite_space(&F, &e);
        if (!sp) die(&e, "space");
        for (int k = 0; k < ns; k++) {
            rf_sampler *s = rf_sampler_create(sn[k], &e);
            if (!s) die(&e, "sampler");
            for (int sd = seed0; sd < seed0 + seeds; sd++) {
                double b = run_in_memory(s, &F, sp, trials, (uint64_t)sd);
                printf("suite\trenflow\t%s\t%s\t%d\t%.17g\n", fn[f], sn[k], sd, b);
                fflush(stdout);
            }
            rf_sampler_free(s);
        }
        rf_space_free(sp);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * overhead at 1000 trials
 * --------------------------------------------------------------------------------------- */

static void rm_study(const char *path) {
    char b[1200];
    unlink(path);
    snprintf(b, sizeof b, "%s-wal", path);
    unlink(b);
    snprintf(b, sizeof b, "%s-shm", path);
    unlink(b);
    snprintf(b, sizeof b, "%s-mf.lock", path);
    unlink(b);
}

static int cmd_overhead(int argc, char **argv) {
    int n = 1000, asks = 50;
    char samplers[256] = "random,tpe";
    const char *work = "/tmp";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--trials")) n = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--asks")) asks = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--samplers")) snprintf(samplers, sizeof samplers, "%s", arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--work")) work = arg_val(argc, argv, &i);
        else {
            fprintf(stderr, "sampler_bench overhead: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    char *sn[16];
    int ns = split_list(samplers, sn, 16);
    rf_err e = {0};
    const rf_testfunc *tf = rf_testfunc_find("hartmann6");
    rf_space *sp = rf_testfunc_space(tf, &e);
    /* n completed random trials */
    rf_trial *tr = calloc((size_t)n + (size_t)asks, sizeof *tr);
    const rf_trial **items = calloc((size_t)n + (size_t)asks, sizeof *items);
    rf_rng rng;
    rf_rng_seed(&rng, 12345);
    for (int i = 0; i < n + asks; i++) {
        rf_config_init(&tr[i].cfg, sp, &e);
        rf_space_sample_uniform(sp, &rng, &tr[i].cfg);
        tr[i].number = i;
        tr[i].status = RF_TRIAL_COMPLETE;
        tr[i].n_values = 1;
        tr[i].last_step = -1;
        rf_testfunc_eval(tf, sp, &tr[i].cfg, &tr[i].values[0], &e);
        items[i] = &tr[i];
    }
    for (int k = 0; k < ns; k++) {
        rf_sampler *s = rf_sampler_create(sn[k], &e);
        if (!s) die(&e, "sampler");
        if (rf_sampler_is_multifidelity(s)) {
            /* the planner needs its own trials: fill the study with n of them (Hartmann-6 plus
             * 0.1 / budget), then time K more rounds of rf_sampler_ask + tell */
            char path[1024];
            snprintf(path, sizeof path, "%s/sampler_bench_overhead_%d.db", work, (int)getpid());
            rm_study(path);
            rf_study_def d;
            memset(&d, 0, sizeof d);
            d.space = sp;
            d.n_objectives = 1;
            snprintf(d.objectives[0].name, sizeof d.objectives[0].name, "value");
            d.sampler = sn[k];
            d.seed = 7;
            rf_study *st = rf_study_open(path, &d, &e);
            if (!st) die(&e, "study");
            double t0 = 0;
            for (int i = 0; i < n + asks; i++) {
                if (i == n) t0 = rf_cpu_seconds();
                rf_trial *t = NULL;
                if (rf_sampler_ask(s, st, 0, 0, &t, NULL, &e)) die(&e, "ask");
                double v, x[6];
                for (int j = 0; j < 6; j++) x[j] = t->cfg.v[j];
                v = tf->f(x) + 0.1 / (t->budget > 0 ? t->budget : 27);
                if (rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &e)) die(&e, "tell");
                rf_trial_free(t);
            }
            double per = (rf_cpu_seconds() - t0) / asks;
            printf("overhead\trenflow\t%s\tstudy\t%.4f\n", sn[k], 1e3 * per);
            fflush(stdout);
            rf_study_close(st);
            rm_study(path);
            rf_sampler_free(s);
            continue;
        }
        /* the sampler alone: ask K times with n, n+1, ... trials in the history */
        rf_history h = {0};
        h.n_objectives = 1;
        h.items = items;
        rf_config c;
        rf_config_init(&c, sp, &e);
        double t0 = rf_cpu_seconds();
        for (int a = 0; a < asks; a++) {
            h.n = n + a;
            if (rf_sampler_sample(s, sp, &h, &rng, &c, &e)) die(&e, "sample");
        }
        double per = (rf_cpu_seconds() - t0) / asks;
        rf_config_free(&c);
        printf("overhead\trenflow\t%s\tsampler\t%.4f\n", sn[k], 1e3 * per);
        fflush(stdout);
        /* a study round: ask + tell on an SQLite study of n trials */
        char path[1024];
        snprintf(path, sizeof path, "%s/sampler_bench_overhead_%d.db", work, (int)getpid());
        rm_study(path);
        rf_study_def d;
        memset(&d, 0, sizeof d);
        d.space = sp;
        d.n_objectives = 1;
        snprintf(d.objectives[0].name, sizeof d.objectives[0].name, "value");
        d.sampler = sn[k];
        d.seed = 7;
        rf_study *st = rf_study_open(path, &d, &e);
        if (!st) die(&e, "study");
        for (int i = 0; i < n; i++) {
            rf_trial *t = NULL;
            if (rf_study_ask_fixed(st, &tr[i].cfg, 0, &t, &e)) die(&e, "fill");
            if (rf_study_tell(st, t, RF_TRIAL_COMPLETE, &tr[i].values[0], 1, NULL, &e)) die(&e, "fill");
            rf_trial_free(t);
        }
        t0 = rf_cpu_seconds();
        for (int a = 0; a < asks; a++) {
            rf_trial *t = NULL;
            if (rf_study_ask(st, s, &t, &e)) die(&e, "ask");
            double v;
            rf_testfunc_eval(tf, sp, &t->cfg, &v, &e);
            if (rf_study_tell(st, t, RF_TRIAL_COMPLETE, &v, 1, NULL, &e)) die(&e, "tell");
            rf_trial_free(t);
        }
        per = (rf_cpu_seconds() - t0) / asks;
        printf("overhead\trenflow\t%s\tstudy\t%.4f\n", sn[k], 1e3 * per);
        fflush(stdout);
        rf_study_close(st);
        rm_study(path);
        rf_sampler_free(s);
    }
    for (int i = 0; i < n + asks; i++) rf_config_free(&tr[i].cfg);
    free(tr);
    free(items);
    rf_space_free(sp);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * flow: BOHB against random search, budget = epochs
 * --------------------------------------------------------------------------------------- */

static int cmd_flow(int argc, char **argv) {
    int seeds = 5, seed0 = 1, iterations = 2, tiny = 0;
    double bmin = 1, bmax = 27, eta = 3;
    const char *task_name = "ring", *work = "/tmp";
    char samplers[256] = "bohb,random";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--seeds")) seeds = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--seed0")) seed0 = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--iterations")) iterations = atoi(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--min")) bmin = atof(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--max")) bmax = atof(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--eta")) eta = atof(arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--task")) task_name = arg_val(argc, argv, &i);
        else if (!strcmp(argv[i], "--tiny")) tiny = 1;
        else if (!strcmp(argv[i], "--samplers")) snprintf(samplers, sizeof samplers, "%s", arg_val(argc, argv, &i));
        else if (!strcmp(argv[i], "--work")) work = arg_val(argc, argv, &i);
        else {
            fprintf(stderr, "sampler_bench flow: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    rf_err e = {0};
    rf_mf_bracket br[RF_MF_MAX_RUNGS];
    int nb = 0;
    if (rf_hyperband_brackets(bmin, bmax, eta, 1, br, RF_MF_MAX_RUNGS, &nb, &e)) die(&e, "brackets");
    double per_iter = 0;
    for (int b = 0; b < nb; b++)
        for (int i = 0; i < br[b].n_rungs; i++) per_iter += br[b].n[i] * br[b].budget[i];
    const double total = iterations * per_iter;
    fprintf(stderr, "sampler_bench flow: task %s%s, budgets %g..%g (eta %g), %d Hyperband iterations = %g epochs "
            "(random search: %d trainings of %g epochs)\n", task_name, tiny ? " (tiny)" : "", bmin, bmax, eta, iterations, total,
            (int)floor(total / bmax + 1e-9), bmax);
    char *sn[16];
    int ns = split_list(samplers, sn, 16);
    for (int sd = seed0; sd < seed0 + seeds; sd++) {
        /* one task (data and split) per seed, shared by the samplers */
        rf_search_task_opts to;
        rf_search_task_opts_default(&to);
        to.seed = (uint64_t)sd;
        rf_search_task task;
        if (rf_search_task_builtin(task_name, tiny, &to, &task, &e)) die(&e, "task");
        rf_space *sp = rf_search_default_space(&task, (int)bmax, &e); /* epochs are the budget */
        if (!sp) die(&e, "space");
        rf_search_metric m = RF_METRIC_NLL;
        rf_search_job job;
        rf_search_job_init(&job, &task, sp, &m, 1);
        job.base_train.epochs = (int)bmax; /* trials without a budget: the full budget */
        job.base_train.patience = 0;
        for (int k = 0; k < ns; k++) {
            rf_sampler *s = rf_sampler_create(sn[k], &e);
            if (!s) die(&e, "sampler");
            const int mf = rf_sampler_is_multifidelity(s);
            if (mf && rf_sampler_mf_set_budgets(s, bmin, bmax, eta, &e)) die(&e, "budgets");
            char path[1024];
            snprintf(path, sizeof path, "%s/sampler_bench_flow_%s_%d_%d.db", work, sn[k], sd, (int)getpid());
            rm_study(path);
            rf_study_def d;
            memset(&d, 0, sizeof d);
            d.name = "sampler_bench flow";
            d.space = sp;
            d.n_objectives = 1;
            snprintf(d.objectives[0].name, sizeof d.objectives[0].name, "%s", rf_search_metric_name(RF_METRIC_NLL));
            d.sampler = sn[k];
            d.seed = (uint64_t)sd;
            rf_study *st = rf_study_open(path, &d, &e);
            if (!st) die(&e, "study");
            rf_optimize_opts o;
            rf_optimize_opts_default(&o);
            o.progress = 0;
            if (mf) o.max_total_budget = total;
            else o.n_trials = (int)floor(total / bmax + 1e-9);
            rf_optimize_result res;
            double t0 = rf_now();
            if (rf_study_optimize(st, s, rf_search_objective, &job, &o, &res, &e)) die(&e, "optimize");
            fprintf(stderr, "  %s seed %d: %d trials (%d complete, %d failed), %.0f s\n", sn[k], sd, res.n_run,
                    res.n_complete, res.n_failed, rf_now() - t0);
            rf_study_refresh(st, &e);
            double cum = 0, best = INFINITY, secs = 0;
            for (int i = 0; i < rf_study_n_finished(st); i++) {
                const rf_trial *t = rf_study_finished(st, i);
                double b = t->budget > 0 ? t->budget : bmax;
                cum += b;
                if (isfinite(t->duration)) secs += t->duration;
                double v = t->status == RF_TRIAL_COMPLETE ? t->values[0] : NAN;
                if (isfinite(v) && v < best) best = v;
                printf("flow\t%s\t%d\t%d\t%g\t%g\t%.17g\t%.17g\t%.3f\n", sn[k], sd, t->number, b, cum, v, best, secs);
            }
            fflush(stdout);
            rf_study_close(st);
            rm_study(path);
            rf_sampler_free(s);
        }
        rf_space_free(sp);
        rf_search_task_free(&task);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * table: read the lines, print side by side, draw the anytime curves
 * --------------------------------------------------------------------------------------- */

typedef struct row {
    char kind[32], impl[32], a[32], b[32];
    int seed;
    double x, y, z, w; /* suite: x = best; overhead: x = ms; flow: x = budget, y = cum, z = value, w = best */
    double secs;       /* flow: cumulative seconds of the trials (NAN when not recorded) */
} row;

typedef struct rows {
    row *r;
    int n, cap;
} rows;

static void add_row(rows *R, const row *x) {
    if (R->n == R->cap) {
        R->cap = R->cap ? 2 * R->cap : 1024;
        R->r = realloc(R->r, sizeof(row) * (size_t)R->cap);
        if (!R->r) exit(1);
    }
    R->r[R->n++] = *x;
}

static void read_rows(const char *path, rows *R) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "sampler_bench table: %s: cannot open\n", path);
        exit(1);
    }
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        row x;
        memset(&x, 0, sizeof x);
        char c1[32], c2[32], c3[32], c4[32], c5[64], c6[64], c7[64], c8[64], c9[64];
        int n = sscanf(line, "%31s %31s %31s %31s %63s %63s %63s %63s %63s", c1, c2, c3, c4, c5, c6, c7, c8, c9);
        if (n >= 6 && !strcmp(c1, "suite")) {
            snprintf(x.kind, sizeof x.kind, "suite");
            snprintf(x.impl, sizeof x.impl, "%s", c2);
            snprintf(x.a, sizeof x.a, "%s", c3);
            snprintf(x.b, sizeof x.b, "%s", c4);
            x.seed = atoi(c5);
            x.x = atof(c6);
        } else if (n >= 5 && !strcmp(c1, "overhead")) {
            snprintf(x.kind, sizeof x.kind, "overhead");
            snprintf(x.impl, sizeof x.impl, "%s", c2);
            snprintf(x.a, sizeof x.a, "%s", c3);
            snprintf(x.b, sizeof x.b, "%s", c4);
            x.x = atof(c5);
        } else if (n >= 8 && !strcmp(c1, "flow")) {
            snprintf(x.kind, sizeof x.kind, "flow");
            snprintf(x.a, sizeof x.a, "%s", c2);
            x.seed = atoi(c3);
            x.x = atof(c5);
            x.y = atof(c6);
            x.z = strcmp(c7, "nan") ? atof(c7) : NAN;
            x.w = strcmp(c8, "inf") ? atof(c8) : INFINITY;
            x.secs = n >= 9 ? atof(c9) : NAN;
        } else {
            continue;
        }
        add_row(R, &x);
    }
    fclose(f);
}

/* Median and quartiles of the suite values of (impl, function, sampler); n = 0 if none. */
static int suite_stats(const rows *R, const char *impl, const char *fn, const char *smp, double *med, double *q1,
                       double *q3) {
    double *v = malloc(sizeof(double) * (size_t)(R->n + 1));
    int n = 0;
    for (int i = 0; i < R->n; i++) {
        const row *x = &R->r[i];
        if (!strcmp(x->kind, "suite") && !strcmp(x->impl, impl) && !strcmp(x->a, fn) && !strcmp(x->b, smp)) v[n++] = x->x;
    }
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    *med = quantile(v, n, 0.5);
    *q1 = quantile(v, n, 0.25);
    *q3 = quantile(v, n, 0.75);
    free(v);
    return n;
}

static int has_name(char names[][32], int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return 1;
    return 0;
}

/* Best value of one (sampler, seed) run after `epochs` cumulative epochs (INFINITY before any). */
static double best_at(const rows *R, const char *smp, int seed, double epochs) {
    double best = INFINITY;
    for (int i = 0; i < R->n; i++) {
        const row *x = &R->r[i];
        if (strcmp(x->kind, "flow") || strcmp(x->a, smp) || x->seed != seed) continue;
        if (x->y <= epochs + 1e-9 && isfinite(x->z) && x->z < best) best = x->z;
    }
    return best;
}

static int flow_seeds(const rows *R, const char *smp, int *seeds, int max) {
    int n = 0;
    for (int i = 0; i < R->n; i++) {
        const row *x = &R->r[i];
        if (strcmp(x->kind, "flow") || strcmp(x->a, smp)) continue;
        int known = 0;
        for (int j = 0; j < n; j++) known |= seeds[j] == x->seed;
        if (!known && n < max) seeds[n++] = x->seed;
    }
    return n;
}

static double flow_total(const rows *R) {
    double t = 0;
    for (int i = 0; i < R->n; i++)
        if (!strcmp(R->r[i].kind, "flow") && R->r[i].y > t) t = R->r[i].y;
    return t;
}

/* Median / quartiles over seeds of the best value at `epochs` (seeds with no value yet are
 * left out). */
static int flow_stats(const rows *R, const char *smp, double epochs, double *med, double *q1, double *q3) {
    int seeds[256];
    int ns = flow_seeds(R, smp, seeds, 256);
    double v[256];
    int n = 0;
    for (int i = 0; i < ns; i++) {
        double b = best_at(R, smp, seeds[i], epochs);
        if (isfinite(b)) v[n++] = b;
    }
    qsort(v, (size_t)n, sizeof(double), cmp_d);
    *med = quantile(v, n, 0.5);
    *q1 = quantile(v, n, 0.25);
    *q3 = quantile(v, n, 0.75);
    return n;
}

static int draw_flow_png(const rows *R, char names[][32], int nn, const char *path, rf_err *e) {
    const double total = flow_total(R);
    if (!(total > 0) || nn == 0) return rf_err_set(e, RF_EARG, "no flow results to draw");
    enum { NP = 200 };
    double lo = INFINITY, hi = -INFINITY;
    double med[8][NP], q1[8][NP], q3[8][NP], xs[NP];
    for (int p = 0; p < NP; p++) xs[p] = total * (p + 1) / NP;
    for (int k = 0; k < nn && k < 8; k++)
        for (int p = 0; p < NP; p++) {
            int n = flow_stats(R, names[k], xs[p], &med[k][p], &q1[k][p], &q3[k][p]);
            if (n == 0) {
                med[k][p] = q1[k][p] = q3[k][p] = NAN;
                continue;
            }
            if (q1[k][p] < lo) lo = q1[k][p];
            if (p >= NP / 10 && q3[k][p] > hi) hi = q3[k][p]; /* the first tenth may be far above */
            if (med[k][p] > hi && p >= NP / 10) hi = med[k][p];
        }
    if (!isfinite(lo) || !isfinite(hi)) return rf_err_set(e, RF_EARG, "no finite flow results to draw");
    double pad = 0.08 * (hi - lo + 1e-9);
    viz_fig fig;
    int rc = viz_fig_open(&fig, path, 640, 420, e);
    if (rc) return rc;
    cairo_t *cr = fig.cr;
    double top = viz_fig_title(&fig, "Best validation NLL so far vs epochs spent (median over seeds, IQR shaded)");
    viz_axes a;
    viz_axes_init(&a, 0, total, lo - pad, hi + pad);
    a.xlabel = "cumulative training epochs";
    a.ylabel = "best validation NLL so far (nats)";
    viz_axes_layout(cr, &a, 0, top, 640, 420 - top - 30);
    viz_axes_back(cr, &a);
    const viz_rgb cols[4] = {VIZ_BLUE, VIZ_ORANGE, VIZ_GREEN, VIZ_RED};
    viz_key keys[8];
    viz_axes_clip(cr, &a);
    for (int k = 0; k < nn && k < 8; k++) {
        viz_rgb c = cols[k % 4];
        /* IQR band */
        int started = 0;
        for (int p = 0; p < NP; p++) {
            if (isnan(q1[k][p])) continue;
            double x = viz_px(&a, xs[p]), y = viz_py(&a, q3[k][p]);
            if (!started) cairo_move_to(cr, x, y);
            else cairo_line_to(cr, x, y);
            started = 1;
        }
        for (int p = NP - 1; p >= 0 && started; p--) {
            if (isnan(q1[k][p])) continue;
            cairo_line_to(cr, viz_px(&a, xs[p]), viz_py(&a, q1[k][p]));
        }
        if (started) {
            cairo_close_path(cr);
            viz_set_rgb(cr, c, 0.18);
            cairo_fill(cr);
        }
        started = 0;
        for (int p = 0; p < NP; p++) {
            if (isnan(med[k][p])) continue;
            double x = viz_px(&a, xs[p]), y = viz_py(&a, med[k][p]);
            if (!started) cairo_move_to(cr, x, y);
            else cairo_line_to(cr, x, y);
            started = 1;
        }
        viz_set_rgb(cr, c, 1.0);
        cairo_set_line_width(cr, 2.0);
        cairo_stroke(cr);
        keys[k] = (viz_key){names[k], c, VIZ_KEY_LINE, 0.2, 0};
    }
    cairo_restore(cr);
    viz_axes_front(cr, &a);
    double lw, lh;
    viz_legend_size(cr, keys, nn < 8 ? nn : 8, &lw, &lh);
    viz_legend(cr, keys, nn < 8 ? nn : 8, a.x + a.w - lw - 8, a.y + 8);
    return viz_fig_close(&fig, e);
}

static int cmd_table(int argc, char **argv) {
    rows R = {0};
    const char *png = NULL, *md = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--png")) png = arg_val(argc, argv, &i);
        else if (!strcmp(argv[i], "--md")) md = arg_val(argc, argv, &i);
        else read_rows(argv[i], &R);
    }
    FILE *out = stdout, *mdf = NULL;
    if (md) {
        mdf = fopen(md, "w");
        if (!mdf) {
            fprintf(stderr, "sampler_bench table: %s: cannot write\n", md);
            return 1;
        }
    }
    /* 1. suite: per function, each sampler of each implementation */
    char fns[16][32], smps[32][48], impls[4][32];
    int nf = 0, nsm = 0, ni = 0;
    for (int i = 0; i < R.n; i++) {
        const row *x = &R.r[i];
        if (strcmp(x->kind, "suite")) continue;
        if (!has_name(fns, nf, x->a) && nf < 16) snprintf(fns[nf++], 32, "%s", x->a);
        if (!has_name(impls, ni, x->impl) && ni < 4) snprintf(impls[ni++], 32, "%s", x->impl);
        char key[48];
        snprintf(key, sizeof key, "%s %s", x->impl, x->b);
        int known = 0;
        for (int j = 0; j < nsm; j++) known |= !strcmp(smps[j], key);
        if (!known && nsm < 32) snprintf(smps[nsm++], 48, "%s", key);
    }
    for (int pass = 0; pass < 2; pass++) {
        FILE *o = pass ? mdf : out;
        if (!o || nf == 0) continue;
        fprintf(o, pass ? "| function | sampler | seeds | median best | IQR (q25 .. q75) |\n|---|---|---|---|---|\n"
                        : "\nBest value after the trial budget (median and interquartile range over seeds)\n"
                          "%-10s %-26s %5s %12s   %s\n", "function", "sampler", "seeds", "median", "IQR (q25 .. q75)");
        for (int f = 0; f < nf; f++)
            for (int j = 0; j < nsm; j++) {
                char impl[32], smp[32];
                sscanf(smps[j], "%31s %31s", impl, smp);
                double med, q1, q3;
                int n = suite_stats(&R, impl, fns[f], smp, &med, &q1, &q3);
                if (n == 0) continue;
                char name[64];
                snprintf(name, sizeof name, "%s %s", impl, smp);
                if (pass)
                    fprintf(o, "| %s | %s | %d | %.4f | %.4f .. %.4f |\n", fns[f], name, n, med, q1, q3);
                else
                    fprintf(o, "%-10s %-26s %5d %12.4f   %.4f .. %.4f\n", fns[f], name, n, med, q1, q3);
            }
    }
    /* 2. overhead */
    int any_over = 0;
    for (int i = 0; i < R.n; i++) any_over |= !strcmp(R.r[i].kind, "overhead");
    for (int pass = 0; pass < 2 && any_over; pass++) {
        FILE *o = pass ? mdf : out;
        if (!o) continue;
        fprintf(o, pass ? "\n| implementation | sampler | measured | CPU ms per trial |\n|---|---|---|---|\n"
                        : "\nSampler overhead per trial with 1000 completed trials (Hartmann-6), CPU time\n%-10s %-16s %-28s %12s\n",
                "implementation", "sampler", "measured", "CPU ms/trial");
        for (int i = 0; i < R.n; i++) {
            const row *x = &R.r[i];
            if (strcmp(x->kind, "overhead")) continue;
            const char *what = !strcmp(x->b, "sampler") ? "sampler alone (in memory)"
                               : !strcmp(x->b, "study")  ? "ask + tell, SQLite study"
                                                        : "ask + suggest + tell (in memory)";
            if (pass) fprintf(o, "| %s | %s | %s | %.2f |\n", x->impl, x->a, what, x->x);
            else fprintf(o, "%-10s %-16s %-28s %12.2f\n", x->impl, x->a, what, x->x);
        }
    }
    /* 3. flow anytime */
    char fsm[8][32];
    int nfs = 0;
    for (int i = 0; i < R.n; i++)
        if (!strcmp(R.r[i].kind, "flow") && !has_name(fsm, nfs, R.r[i].a) && nfs < 8) snprintf(fsm[nfs++], 32, "%s", R.r[i].a);
    if (nfs > 0) {
        const double total = flow_total(&R);
        const double fr[6] = {0.1, 0.2, 0.35, 0.5, 0.75, 1.0};
        for (int pass = 0; pass < 2; pass++) {
            FILE *o = pass ? mdf : out;
            if (!o) continue;
            if (pass) {
                fprintf(o, "\n| epochs spent |");
                for (int k = 0; k < nfs; k++) fprintf(o, " %s: median best val NLL (IQR) |", fsm[k]);
                fprintf(o, "\n|---|");
                for (int k = 0; k < nfs; k++) fprintf(o, "---|");
                fprintf(o, "\n");
            } else {
                fprintf(o, "\nFlow training, best validation NLL so far vs cumulative epochs (median, IQR over seeds)\n%12s", "epochs");
                for (int k = 0; k < nfs; k++) fprintf(o, " %32s", fsm[k]);
                fprintf(o, "\n");
            }
            for (int q = 0; q < 6; q++) {
                double ep = floor(fr[q] * total + 0.5);
                if (pass) fprintf(o, "| %.0f |", ep);
                else fprintf(o, "%12.0f", ep);
                for (int k = 0; k < nfs; k++) {
                    double med, q1, q3;
                    int n = flow_stats(&R, fsm[k], ep, &med, &q1, &q3);
                    char cell[96];
                    if (n == 0) snprintf(cell, sizeof cell, "-");
                    else snprintf(cell, sizeof cell, "%.4f (%.4f .. %.4f) n=%d", med, q1, q3, n);
                    if (pass) fprintf(o, " %s |", cell);
                    else fprintf(o, " %32s", cell);
                }
                fprintf(o, "\n");
            }
        }
        /* training time of a whole run (sum of the trials' durations), median over seeds */
        for (int pass = 0; pass < 2; pass++) {
            FILE *o = pass ? mdf : out;
            if (!o) continue;
            for (int k = 0; k < nfs; k++) {
                int seeds[256];
                int nsd = flow_seeds(&R, fsm[k], seeds, 256), nt = 0;
                double tv[256];
                for (int q = 0; q < nsd; q++) {
                    double mx = NAN;
                    for (int i = 0; i < R.n; i++) {
                        const row *x = &R.r[i];
                        if (!strcmp(x->kind, "flow") && !strcmp(x->a, fsm[k]) && x->seed == seeds[q] && isfinite(x->secs))
                            mx = isnan(mx) || x->secs > mx ? x->secs : mx;
                    }
                    if (isfinite(mx)) tv[nt++] = mx;
                }
                if (nt == 0) continue;
                qsort(tv, (size_t)nt, sizeof(double), cmp_d);
                fprintf(o, "%s%s: training time of a run (sum of trial durations), median over %d seeds: %.0f s\n",
                        pass ? "\n" : "", fsm[k], nt, quantile(tv, nt, 0.5));
            }
        }
        if (png) {
            rf_err e = {0};
            if (draw_flow_png(&R, fsm, nfs, png, &e)) die(&e, png);
            fprintf(out, "\nanytime curves: %s\n", png);
        }
    }
    if (mdf) fclose(mdf);
    free(R.r);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sampler_bench suite|overhead|flow|table [options] (see the top of bench/sampler_bench.c)\n");
        return 2;
    }
    if (!strcmp(argv[1], "suite")) return cmd_suite(argc - 2, argv + 2);
    if (!strcmp(argv[1], "overhead")) return cmd_overhead(argc - 2, argv + 2);
    if (!strcmp(argv[1], "flow")) return cmd_flow(argc - 2, argv + 2);
    if (!strcmp(argv[1], "table")) return cmd_table(argc - 2, argv + 2);
    fprintf(stderr, "sampler_bench: unknown command %s (suite, overhead, flow, table)\n", argv[1]);
    return 2;
}
