/* renflow search: hyperparameter and architecture search over flows, stored in an SQLite study
 * that a later run resumes. */
#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "renflow/controller.h"
#include "renflow/supernet.h"
#include "search_mpi.h"

static const char USAGE[] =
    "usage: renflow search [--space SPACE.json] [--data X.npy|DIR [--labels y.npy] [--subjects s.npy]]\n"
    "                      [--task density|classify] [--study STUDY.db] [--trials N] [--time-budget S]\n"
    "                      [--objective nll|f1|nll,time|nll,params] [--strategy tpe|random|morph|rl|evolution|darts|enas|...]\n"
    "                      [--seed S] [--out DIR] [--json] [--quiet]\n"
    "\n"
    "Searches training hyperparameters and flow architectures. Every trial trains a flow on the\n"
    "training rows and is scored on the validation rows; a test part (whole subjects when subject\n"
    "ids are known) is held out from every trial and scores the best and the default\n"
    "configuration at the end. Trials are stored in an SQLite study: a search that is stopped\n"
    "(Ctrl-C, kill -9) continues where it was when run again with the same --study.\n"
    "With no arguments: the built-in task (a 2-D density, 8 Gaussians on a ring), 30 trials;\n"
    "writes renflow-study.db, best.rf, trials/ and report/ in the current directory.\n"
    "\n"
    "task:\n"
    "  --data FILE|DIR       data (.npy/.csv/.arff, or a directory from `renflow eeg prepare`)\n"
    "  --labels FILE         class labels (.npy/.csv)    --subjects FILE   subject ids\n"
    "  --recordings FILE     recording ids (for --context)\n"
    "  --features F          raw (default) | bandpower (log band powers of prepared windows)\n"
    "  --context K           add the K previous and next rows of each recording\n"
    "  --task T              density (default) | classify (class-conditional flow; needs labels)\n"
    "  --builtin NAME        ring (default) | moons | eeg (simulated rest vs arithmetic EEG,\n"
    "                        band powers, classified across subjects); used without --data\n"
    "  --tiny                a small version of the built-in task (tests, smoke runs)\n"
    "  --val-frac F          validation share of what is left after the test part (default 0.2)\n"
    "  --test-frac F         test share of the rows or subjects, 0 = none (default 0.2)\n"
    "search:\n"
    "  --space FILE          search space (JSON; see docs); default: training + architecture\n"
    "                        (built-in tasks: epochs fixed at 12, --tiny 3)\n"
    "  --study FILE          the study (default renflow-study.db); resumed when it exists\n"
    "  --trials N            the study's total number of trials (a resumed study runs the rest;\n"
    "                        default 30 for built-in tasks, 50 otherwise, 3 for darts/enas,\n"
    "                        none with --time-budget)\n"
    "  --time-budget S       no new trial after S seconds\n"
    "  --objective O         nll (default) | f1 (classify) | nll,time | nll,params | f1,time ...\n"
    "                        (time: training seconds; params: parameter count; minimised)\n"
    "  --strategy S          tpe (default) | random | morph (NASH hill climbing by network\n"
    "                        morphisms, every child a trial) | hyperband | bohb | asha\n"
    "                        (multi-fidelity: the budget is the epochs, up to --epochs or the\n"
    "                        task's fixed epochs, rungs a factor 3 apart) | rl (an LSTM\n"
    "                        controller trained by REINFORCE on the finished trials) |\n"
    "                        evolution (regularised aging evolution) | darts (gradient-based:\n"
    "                        a supernet whose coupling conditioners mix candidate operations,\n"
    "                        softmax weights learned on the validation rows, then discretised\n"
    "                        and retrained; each trial is one whole search) | enas (the same\n"
    "                        supernet with shared weights trained on paths that an LSTM\n"
    "                        controller picks by REINFORCE); a resumed study keeps its\n"
    "                        strategy unless this is given (give its options again)\n"
    "  --candidates LIST     darts/enas: the conditioner candidates of every coupling, e.g.\n"
    "                        zero,relu-1,tanh-2x32,gelu-2-res (default: a set of 9 MLPs)\n"
    "  --supernet-flow F     darts/enas: realnvp | glow | nsf (default nsf)\n"
    "  --supernet-blocks B   darts/enas: coupling blocks (default 4)\n"
    "  --search-epochs E     darts/enas: passes over the training rows in each search (20)\n"
    "  --children K          morph: children per round (default 4)\n"
    "  --population P        evolution: the last P complete trials are the population (default\n"
    "                        20, or a third of the trials when that is smaller, at least 4);\n"
    "                        random configurations until P trials are complete\n"
    "  --sample-size S       evolution: tournament size; the best of S random members is the\n"
    "                        parent of a one-parameter mutation (default min(5, P))\n"
    "  --reward-a A, --reward-b B, --reward-c C\n"
    "                        rl: the shaped reward R(x) = C / (1 + exp(-A x + B)) of x = the\n"
    "                        first objective oriented so that larger is better (-NLL, macro-F1);\n"
    "                        R = C/2 at the threshold x = B/A. Default: C = 1, and A, B set from\n"
    "                        the first 10 complete trials (B/A = their median x; R goes from\n"
    "                        0.1 C to 0.9 C between their 10% and 90% quantiles)\n"
    "                        enas: the same reward of x = -(validation loss of a path);\n"
    "                        default: A, B recalibrated from the policy's spread every epoch\n"
    "  --epochs E            epochs per trial when the space has no epochs parameter\n"
    "  --max-params N        a configuration with more parameters fails (default: no limit)\n"
    "  --seed S              study seed (default 1; a resumed study keeps its own)\n"
    "  --threads T           threads per trial (default 2)\n"
    "output:\n"
    "  --out DIR             best.rf, trials/trial-<n>.rf and report/ (default .)\n"
    "  --no-report           no report figures at the end\n"
    "  --json                summary as JSON on stdout\n"
    "  --quiet               no progress on stderr    --verbose   each trial's configuration\n"
    "many processes or machines (Open MPI; sampler strategies, not morph/darts/enas):\n"
    "  mpirun --enable-recovery -np 4 renflow search ...   rank 0 owns the study and the\n"
    "                        sampler, ranks 1-3 evaluate trials and send results and models back;\n"
    "                        a worker that dies (or is silent RENFLOW_MPI_TIMEOUT s, default 30)\n"
    "                        has its trial queued again and run by another. Without\n"
    "                        --enable-recovery Open MPI ends the job when a rank dies: run the\n"
    "                        same command again and the study resumes. Every host needs the\n"
    "                        same data files at the same paths.\n"
    "Exit codes: 0 done, 1 runtime or data error, 2 usage error, 130 stopped by Ctrl-C (a second\n"
    "Ctrl-C stops at once; the running trial is run again when the study is resumed).\n";

enum {
    O_SPACE = 256, O_DATA, O_LABELS, O_SUBJECTS, O_RECORDINGS, O_FEATURES, O_CONTEXT, O_TASK, O_BUILTIN, O_TINY,
    O_VALFRAC, O_TESTFRAC, O_STUDY, O_TRIALS, O_BUDGET, O_OBJECTIVE, O_STRATEGY, O_CHILDREN, O_EPOCHS, O_MAXPARAMS,
    O_SEED, O_THREADS, O_OUT, O_NOREPORT, O_JSON, O_QUIET, O_VERBOSE, O_POPULATION, O_SAMPLESIZE, O_REWARDA, O_REWARDB,
    O_REWARDC, O_CANDIDATES, O_SNFLOW, O_SNBLOCKS, O_SEARCHEPOCHS
};
static const struct option LONGOPTS[] = {
    {"space", 1, 0, O_SPACE}, {"data", 1, 0, O_DATA}, {"labels", 1, 0, O_LABELS}, {"subjects", 1, 0, O_SUBJECTS},
    {"recordings", 1, 0, O_RECORDINGS}, {"features", 1, 0, O_FEATURES}, {"context", 1, 0, O_CONTEXT},
    {"task", 1, 0, O_TASK}, {"builtin", 1, 0, O_BUILTIN}, {"tiny", 0, 0, O_TINY}, {"val-frac", 1, 0, O_VALFRAC},
    {"test-frac", 1, 0, O_TESTFRAC}, {"study", 1, 0, O_STUDY}, {"trials", 1, 0, O_TRIALS},
    {"time-budget", 1, 0, O_BUDGET}, {"objective", 1, 0, O_OBJECTIVE}, {"strategy", 1, 0, O_STRATEGY},
    {"children", 1, 0, O_CHILDREN}, {"epochs", 1, 0, O_EPOCHS}, {"max-params", 1, 0, O_MAXPARAMS},
    {"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS}, {"out", 1, 0, O_OUT}, {"no-report", 0, 0, O_NOREPORT},
    {"json", 0, 0, O_JSON}, {"quiet", 0, 0, O_QUIET}, {"verbose", 0, 0, O_VERBOSE}, {"help", 0, 0, 'h'},
    {"population", 1, 0, O_POPULATION}, {"sample-size", 1, 0, O_SAMPLESIZE}, {"reward-a", 1, 0, O_REWARDA},
    {"reward-b", 1, 0, O_REWARDB}, {"reward-c", 1, 0, O_REWARDC}, {"candidates", 1, 0, O_CANDIDATES},
    {"supernet-flow", 1, 0, O_SNFLOW}, {"supernet-blocks", 1, 0, O_SNBLOCKS}, {"search-epochs", 1, 0, O_SEARCHEPOCHS},
    {0, 0, 0, 0}};

static volatile sig_atomic_t g_signals = 0;
static volatile int g_stop = 0;
static void on_signal(int sig) {
    g_stop = 1;
    if (++g_signals >= 2) { /* second Ctrl-C: stop now; the study re-runs the trial on resume */
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

typedef struct search_args {
    const char *space, *data, *labels, *subjects, *recordings, *task, *builtin, *study, *objective, *strategy, *out;
    int tiny, trials, children, epochs, threads, json, quiet, verbose, no_report, seed_given;
    int population, sample_size;          /* evolution; 0 = default */
    float reward_a, reward_b, reward_c;   /* rl, enas; NAN = default */
    const char *candidates, *sn_flow;     /* darts, enas */
    int sn_blocks, search_epochs;         /* darts, enas; 0 = default */
    float val_frac, test_frac, budget;
    long max_params;
    uint64_t seed;
    rf_input_tf input;
} search_args;

static int parse(int argc, char **argv, search_args *a, int *help) {
    static const char *C = "search";
    memset(a, 0, sizeof *a);
    a->val_frac = 0.2f;
    a->test_frac = 0.2f;
    a->threads = 2;
    a->seed = 1;
    a->children = 4;
    a->reward_a = a->reward_b = a->reward_c = NAN;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    int c, rc = 0;
    while (!rc && (c = rf_next_opt(&o, argc, argv, help)) != -1) {
        switch (c) {
        case -2: return RF_EXIT_USAGE;
        case O_SPACE: a->space = optarg; break;
        case O_DATA: a->data = optarg; break;
        case O_LABELS: a->labels = optarg; break;
        case O_SUBJECTS: a->subjects = optarg; break;
        case O_RECORDINGS: a->recordings = optarg; break;
        case O_FEATURES:
            if (!strcmp(optarg, "bandpower")) a->input.bandpower = 1;
            else if (strcmp(optarg, "raw")) rc = rf_usage_error(C, "option --features: expected raw or bandpower, got '%s'", optarg);
            break;
        case O_CONTEXT: rc = rf_arg_int(C, "context", optarg, 0, 64, &a->input.context); break;
        case O_TASK:
            a->task = optarg;
            if (strcmp(optarg, "density") && strcmp(optarg, "classify"))
                rc = rf_usage_error(C, "option --task: expected density or classify, got '%s'", optarg);
            break;
        case O_BUILTIN:
            a->builtin = optarg;
            if (strcmp(optarg, "ring") && strcmp(optarg, "moons") && strcmp(optarg, "eeg"))
                rc = rf_usage_error(C, "option --builtin: expected ring, moons or eeg, got '%s'", optarg);
            break;
        case O_TINY: a->tiny = 1; break;
        case O_VALFRAC: rc = rf_arg_float(C, "val-frac", optarg, 0.01, 0.9, &a->val_frac); break;
        case O_TESTFRAC: rc = rf_arg_float(C, "test-frac", optarg, 0, 0.9, &a->test_frac); break;
        case O_STUDY: a->study = optarg; break;
        case O_TRIALS: rc = rf_arg_int(C, "trials", optarg, 1, 10000000, &a->trials); break;
        case O_BUDGET: rc = rf_arg_float(C, "time-budget", optarg, 1e-3, 1e9, &a->budget); break;
        case O_OBJECTIVE: a->objective = optarg; break;
        case O_STRATEGY: a->strategy = optarg; break;
        case O_CHILDREN: rc = rf_arg_int(C, "children", optarg, 1, 1000, &a->children); break;
        case O_POPULATION: rc = rf_arg_int(C, "population", optarg, 1, 1000000, &a->population); break;
        case O_SAMPLESIZE: rc = rf_arg_int(C, "sample-size", optarg, 1, 1000000, &a->sample_size); break;
        case O_REWARDA: rc = rf_arg_float(C, "reward-a", optarg, 1e-30, 1e30, &a->reward_a); break;
        case O_REWARDB: rc = rf_arg_float(C, "reward-b", optarg, -1e30, 1e30, &a->reward_b); break;
        case O_REWARDC: rc = rf_arg_float(C, "reward-c", optarg, 1e-30, 1e30, &a->reward_c); break;
        case O_EPOCHS: rc = rf_arg_int(C, "epochs", optarg, 1, 1000000, &a->epochs); break;
        case O_CANDIDATES: a->candidates = optarg; break;
        case O_SNFLOW:
            a->sn_flow = optarg;
            if (strcmp(optarg, "realnvp") && strcmp(optarg, "glow") && strcmp(optarg, "nsf"))
                rc = rf_usage_error(C, "option --supernet-flow: expected realnvp, glow or nsf, got '%s'", optarg);
            break;
        case O_SNBLOCKS: rc = rf_arg_int(C, "supernet-blocks", optarg, 1, 64, &a->sn_blocks); break;
        case O_SEARCHEPOCHS: rc = rf_arg_int(C, "search-epochs", optarg, 1, 1000000, &a->search_epochs); break;
        case O_MAXPARAMS: rc = rf_arg_long(C, "max-params", optarg, 1, 2000000000L, &a->max_params); break;
        case O_SEED: rc = rf_arg_u64(C, "seed", optarg, &a->seed); a->seed_given = 1; break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 1024, &a->threads); break;
        case O_OUT: a->out = optarg; break;
        case O_NOREPORT: a->no_report = 1; break;
        case O_JSON: a->json = 1; break;
        case O_QUIET: a->quiet = 1; break;
        case O_VERBOSE: a->verbose = 1; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind < argc) return rf_usage_error(C, "unexpected argument '%s'", argv[optind]);
    if (a->data && a->builtin) return rf_usage_error(C, "--builtin and --data exclude each other");
    if (!a->data && (a->labels || a->subjects || a->recordings))
        return rf_usage_error(C, "--labels, --subjects and --recordings need --data");
    if (a->tiny && a->data) return rf_usage_error(C, "--tiny applies to the built-in tasks only");
    if (a->builtin && !strcmp(a->builtin, "eeg") && a->task && !strcmp(a->task, "density"))
        return rf_usage_error(C, "--builtin eeg is a classification task (--task classify)");
    if (!a->data && !a->builtin) a->builtin = a->task && !strcmp(a->task, "classify") ? "eeg" : "ring";
    if (a->builtin && strcmp(a->builtin, "eeg") && a->task && !strcmp(a->task, "classify"))
        return rf_usage_error(C, "--builtin %s is a density task; classification has --builtin eeg", a->builtin);
    if (a->sample_size > 0 && a->population > 0 && a->sample_size > a->population)
        return rf_usage_error(C, "option --sample-size: %d is larger than --population %d", a->sample_size, a->population);
    if (!a->study) a->study = "renflow-study.db";
    if (!a->out) a->out = ".";
    return 0;
}

/* A sampler for a strategy name; RF_EXIT_USAGE (after a message) when there is none. The rl
 * controller's initial weights come from the study seed; evolution's default population from the
 * number of trials. */
static int make_sampler(const char *C, const char *name, const search_args *a, uint64_t seed, int trials,
                        rf_sampler **s) {
    *s = NULL;
    const int rl = !strcmp(name, "rl"), evo = !strcmp(name, "evolution");
    const int supernet = !strcmp(name, "darts") || !strcmp(name, "enas");
    if (!rl && strcmp(name, "enas") && (!isnan(a->reward_a) || !isnan(a->reward_b) || !isnan(a->reward_c)))
        return rf_usage_error(C, "options --reward-a/-b/-c are for --strategy rl or enas (the strategy is %s)", name);
    if (!supernet && (a->candidates || a->sn_flow || a->sn_blocks || a->search_epochs))
        return rf_usage_error(C, "options --candidates, --supernet-flow, --supernet-blocks and --search-epochs are for "
                              "--strategy darts or enas (the strategy is %s)", name);
    if (supernet) return 0; /* no sampler: rf_search_darts_run / rf_search_enas_run */
    if (!evo && (a->population > 0 || a->sample_size > 0))
        return rf_usage_error(C, "options --population and --sample-size are for --strategy evolution (the strategy is %s)",
                              name);
    if (!strcmp(name, "morph")) return 0;
    rf_err e = {0};
    if (rl) {
        rf_rl_opts o;
        rf_rl_opts_default(&o);
        o.seed = seed;
        if (!isnan(a->reward_a)) o.reinforce.reward_a = a->reward_a;
        if (!isnan(a->reward_b)) o.reinforce.reward_b = a->reward_b;
        if (!isnan(a->reward_c)) o.reinforce.reward_c = a->reward_c;
        *s = rf_sampler_rl_create(&o, &e);
    } else if (evo) {
        rf_evolution_opts o;
        rf_evolution_opts_default(&o);
        if (a->population > 0) o.population = a->population;
        else if (trials > 0 && trials / 3 < o.population) o.population = trials / 3 < 4 ? 4 : trials / 3;
        o.sample_size = a->sample_size > 0 ? a->sample_size : o.population < 5 ? o.population : 5;
        if (o.sample_size > o.population)
            return rf_usage_error(C, "option --sample-size: %d is larger than the population %d", o.sample_size, o.population);
        *s = rf_sampler_evolution_create(&o, &e);
    } else {
        *s = rf_sampler_create(name, &e);
    }
    if (*s) return 0;
    if (rl || evo) return rf_usage_error(C, "option --strategy %s: %s", name, e.msg);
    if (!strcmp(name, "hyperband") || !strcmp(name, "bohb"))
        return rf_usage_error(C, "option --strategy: '%s' is not available in this build (%s)", name, e.msg);
    return rf_usage_error(C, "option --strategy: unknown strategy '%s' (tpe, random, morph, hyperband, bohb, rl, evolution, darts, enas): %s",
                          name, e.msg);
}

static cJSON *trial_summary(rf_study *st, const rf_trial *t, const char *model) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "trial", t->number);
    cJSON *v = cJSON_AddObjectToObject(j, "values");
    for (int k = 0; k < t->n_values; k++) cJSON_AddNumberToObject(v, rf_study_objective(st, k)->name, t->values[k]);
    cJSON_AddItemToObject(j, "config", rf_config_to_json(rf_study_space(st), &t->cfg));
    if (model) cJSON_AddStringToObject(j, "model", model);
    return j;
}

/* Test scores of a trial's model; NULL when there is no test part or no model. */
static cJSON *test_scores(const rf_search_task *task, const char *out, const rf_trial *t) {
    if (!t || task->test.n < 1) return NULL;
    char p[4400];
    rf_search_trial_path(out, t->number, p, sizeof p);
    rf_err e = {0};
    rf_flow *f = rf_flow_load(p, &e);
    if (!f) {
        fprintf(stderr, "renflow search: warning: trial %d: %s\n", t->number, e.msg);
        return NULL;
    }
    cJSON *j = rf_search_test_eval(task, f, &e);
    if (!j) fprintf(stderr, "renflow search: warning: test scores of trial %d: %s\n", t->number, e.msg);
    else cJSON_AddNumberToObject(j, "trial", t->number);
    rf_flow_free(f);
    return j;
}

static int same_metrics(const rf_search_metric *a, int na, const rf_search_metric *b, int nb) {
    if (na != nb) return 0;
    for (int k = 0; k < na; k++)
        if (a[k] != b[k]) return 0;
    return 1;
}

int rf_cli_search(int argc, char **argv) {
    static const char *C = "search";
    int mpi_exit = RF_EXIT_OK;
    if (rf_cli_search_mpi_enter(&argc, &argv, &mpi_exit)) return mpi_exit; /* an MPI worker rank, done */
    const int mpi_ranks = rf_cli_search_mpi_ranks();
    search_args a;
    int help = 0, rc = parse(argc, argv, &a, &help);
    if (help) return RF_EXIT_OK;
    if (rc) return rc;
    rf_err e = {0};
    int exit_code = RF_EXIT_OK;
    rf_study *st = NULL;
    rf_space *space = NULL, *start_space = NULL;
    rf_sampler *sampler = NULL;
    rf_search_task task;
    memset(&task, 0, sizeof task);
    cJSON *summary = NULL;

    /* an existing study decides the seed, and (unless given) the strategy and the objectives */
    struct stat sb;
    int existing = stat(a.study, &sb) == 0 && sb.st_size > 0;
    rf_search_metric metrics[RF_MAX_OBJECTIVES];
    rf_objective objectives[RF_MAX_OBJECTIVES];
    int n_metrics = 0;
    uint64_t seed = a.seed;
    char stored_name[256] = "", stored_sampler[64] = "";
    rf_space *stored_space = NULL;
    rf_search_metric stored_metrics[RF_MAX_OBJECTIVES];
    int n_stored = 0;
    if (existing) {
        rf_study *s0 = rf_study_open(a.study, NULL, &e);
        if (!s0) return rf_runtime_error(C, &e);
        seed = rf_study_seed(s0);
        snprintf(stored_name, sizeof stored_name, "%s", rf_study_name(s0));
        snprintf(stored_sampler, sizeof stored_sampler, "%s", rf_study_sampler_name(s0));
        stored_space = rf_space_clone(rf_study_space(s0), &e);
        rc = stored_space ? rf_search_objectives_of_study(s0, stored_metrics, &n_stored, &e) : RF_ENOMEM;
        rf_study_close(s0);
        if (rc) {
            rf_space_free(stored_space);
            return rf_runtime_error(C, &e);
        }
        if (a.seed_given && a.seed != seed && !a.quiet)
            fprintf(stderr, "renflow search: note: resuming study %s with its own seed %llu (--seed %llu ignored)\n", a.study,
                    (unsigned long long)seed, (unsigned long long)a.seed);
    }
    const char *strategy = a.strategy ? a.strategy : stored_sampler[0] ? stored_sampler : "tpe";
    if ((rc = make_sampler(C, strategy, &a, seed, a.trials > 0 ? a.trials : a.budget > 0 ? 0 : a.data ? 50 : 30, &sampler)))
        goto done_usage;
    const int morph = !strcmp(strategy, "morph");
    const int darts = !strcmp(strategy, "darts"), enas = !strcmp(strategy, "enas"), supernet = darts || enas;
    if (mpi_ranks > 1 && (morph || supernet)) {
        rc = rf_usage_error(C, "--strategy %s runs in one process (its trials build on each other); under mpirun use a "
                            "sampler strategy (tpe, random, asha, hyperband, bohb, rl, evolution, ...)", strategy);
        goto done_usage;
    }
    rf_darts_opts dopt;
    rf_enas_opts eopt;
    rf_darts_opts_default(&dopt);
    rf_enas_opts_default(&eopt);
    rf_darts_opts *sno = darts ? &dopt : &eopt.net; /* the supernet and its search */
    if (supernet) {
        if (a.sn_flow) rf_flow_type_parse(a.sn_flow, &sno->flow);
        if (a.sn_blocks > 0) sno->blocks = a.sn_blocks;
        if (a.search_epochs > 0) sno->epochs = a.search_epochs;
        if (a.candidates && rf_supernet_cands_parse(a.candidates, sno->cands, &sno->n_cands, &e)) {
            rc = rf_usage_error(C, "option --candidates: %s", e.msg);
            goto done_usage;
        }
        if (!isnan(a.reward_a)) eopt.reward_a = a.reward_a;
        if (!isnan(a.reward_b)) eopt.reward_b = a.reward_b;
        if (!isnan(a.reward_c)) eopt.reinforce.reward_c = a.reward_c;
        if (a.space) {
            rc = rf_usage_error(C, "--space does not apply to --strategy %s (its space is the supernet's candidates: "
                                "--candidates, --supernet-flow, --supernet-blocks)", strategy);
            goto done_usage;
        }
    }

    /* the task */
    rf_search_task_opts to;
    rf_search_task_opts_default(&to);
    to.kind = (a.task && !strcmp(a.task, "classify")) || (a.builtin && !strcmp(a.builtin, "eeg")) ? RF_TASK_CLASSIFY
                                                                                                  : RF_TASK_DENSITY;
    to.val_frac = a.val_frac;
    to.test_frac = a.test_frac;
    to.seed = seed;
    to.input = a.input;
    to.recordings = a.recordings;
    rc = a.data ? rf_search_task_load(a.data, a.labels, a.subjects, &to, &task, &e)
                : rf_search_task_builtin(a.builtin, a.tiny, &to, &task, &e);
    if (rc) goto fail;

    /* objectives */
    if (a.objective || !existing) {
        if (rf_search_objectives_parse(a.objective ? a.objective : "nll", task.kind, metrics, &n_metrics, objectives, &e)) {
            rc = rf_usage_error(C, "option --objective: %s", e.msg);
            goto done_usage;
        }
        if (existing && !same_metrics(metrics, n_metrics, stored_metrics, n_stored)) {
            rc = rf_err_set(&e, RF_EARG, "study %s was made with other objectives (its first: %s); use another --study or "
                            "leave out --objective", a.study, rf_search_metric_name(stored_metrics[0]));
            goto fail;
        }
    } else {
        n_metrics = n_stored;
        memcpy(metrics, stored_metrics, sizeof metrics);
        char text[128] = "";
        for (int k = 0; k < n_metrics; k++) {
            static const char *const w[RF_SEARCH_N_METRICS] = {"nll", "f1", "time", "params"};
            snprintf(text + strlen(text), sizeof text - strlen(text), "%s%s", k ? "," : "", w[metrics[k]]);
        }
        if ((rc = rf_search_objectives_parse(text, task.kind, metrics, &n_metrics, objectives, &e))) goto fail;
    }

    /* multi-fidelity samplers: the budget is the number of epochs, up to the fixed epochs (or the
     * sampler's own maximum); rungs eta = 3 apart */
    int fixed_epochs = a.epochs > 0 ? a.epochs : task.default_epochs;
    if (sampler && rf_sampler_is_multifidelity(sampler)) {
        const rf_mf_opts *mo = rf_sampler_mf_opts(sampler);
        if (fixed_epochs <= 0) fixed_epochs = (int)mo->max_budget;
        double maxb = fixed_epochs, minb = maxb >= 9 ? floor(maxb / 9) : maxb >= 3 ? floor(maxb / 3) : maxb;
        if (maxb < 3 || rf_sampler_mf_set_budgets(sampler, minb, maxb, 3, &e)) {
            rc = rf_usage_error(C, "--strategy %s: the epochs are the budget, from %g to %g: %s", strategy, minb, maxb,
                                maxb < 3 ? "give --epochs 3 or more" : e.msg);
            goto done_usage;
        }
    }

    /* the search space */
    rf_space *user_space = NULL;
    if (a.space) {
        if (!(user_space = rf_space_load(a.space, &e))) goto fail;
        if ((rc = rf_search_space_check(user_space, a.space, &e))) {
            rf_space_free(user_space);
            goto fail;
        }
    }
    if (morph) {
        start_space = user_space ? user_space : rf_search_default_space(&task, fixed_epochs, &e);
        if (!start_space || !(space = rf_search_morph_space(&e))) goto fail;
    } else if (supernet) {
        if (!(space = rf_search_darts_space(sno, &e))) goto fail;
    } else if (user_space) {
        space = user_space;
    } else if (existing) {
        space = stored_space;
        stored_space = NULL;
        if ((rc = rf_search_space_check(space, a.study, &e))) goto fail;
    } else if (!(space = rf_search_default_space(&task, fixed_epochs, &e))) {
        goto fail;
    }

    /* the study */
    char name[256]; /* at most 127 characters: what a study stores */
    snprintf(name, sizeof name, "%s on %.90s [data %s]", rf_task_kind_name(task.kind), task.source, task.fingerprint);
    if (existing) {
        char tag[40];
        snprintf(tag, sizeof tag, "[data %s]", task.fingerprint);
        if (!strstr(stored_name, tag)) {
            rc = rf_err_set(&e, RF_EARG,
                            "study %s was made for other data or another split (\"%s\"); this run's task is \"%s\": use "
                            "another --study, or the same data, task and fractions", a.study, stored_name, name);
            goto fail;
        }
    }
    rf_study_def def = {.name = name, .space = space, .n_objectives = n_metrics, .sampler = strategy, .seed = seed};
    memcpy(def.objectives, objectives, sizeof objectives);
    if (!(st = rf_study_open(a.study, &def, &e))) goto fail;

    rf_search_job job;
    rf_search_job_init(&job, &task, space, metrics, n_metrics);
    job.out_dir = a.out;
    job.base_train.threads = a.threads;
    if (fixed_epochs > 0) job.base_train.epochs = fixed_epochs;
    job.max_params = (size_t)a.max_params;
    job.verbose = a.verbose && !a.quiet;
    if ((rc = rf_search_job_prepare(&job, &e))) goto fail;
    rf_set_threads(a.threads);

    int counts[RF_TRIAL_NSTATUS];
    if ((rc = rf_study_counts(st, counts, &e))) goto fail;
    int total0 = 0;
    for (int s = 0; s < RF_TRIAL_NSTATUS; s++) total0 += counts[s];
    const int trials = a.trials > 0 ? a.trials : a.budget > 0 ? 0 : supernet ? 3 : a.data ? 50 : 30;
    if (!a.quiet) {
        char desc[1400];
        rf_search_task_describe(&task, desc, sizeof desc);
        fprintf(stderr, "renflow search: %s\n", desc);
        fprintf(stderr, "renflow search: study %s (%s), strategy %s, objective %s%s, %d parameters%s", a.study,
                total0 ? "resumed" : "new", strategy, rf_search_metric_name(metrics[0]), n_metrics > 1 ? " (+ more)" : "",
                (morph ? start_space : space)->n, morph ? " in the start configuration" : "");
        if (total0) fprintf(stderr, ", %d trials so far", total0);
        if (trials > 0) fprintf(stderr, "; up to %d trials", trials);
        if (a.budget > 0) fprintf(stderr, "; time budget %gs", (double)a.budget);
        fprintf(stderr, "\n");
        if (n_metrics > 1 && (!strcmp(strategy, "rl") || !strcmp(strategy, "evolution")))
            fprintf(stderr, "renflow search: note: strategy %s optimises the first objective (%s) only\n", strategy,
                    rf_search_metric_name(metrics[0]));
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    int n_run = 0, n_complete = 0, n_failed = 0, n_pruned = 0;
    const double t0 = rf_now();
    if (morph) {
        rf_search_morph_opts mo = {.trials = trials, .time_budget = a.budget, .children = a.children, .morphs = 1,
                                   .stop_flag = &g_stop, .progress = !a.quiet, .seed = seed};
        rc = rf_search_morph_run(st, &job, start_space, &mo, &n_run, &e);
    } else if (supernet) { /* each trial: one whole search, discretised and retrained */
        sno->trials = trials;
        sno->time_budget = a.budget;
        sno->stop_flag = &g_stop;
        sno->progress = !a.quiet;
        sno->threads = a.threads;
        rc = darts ? rf_search_darts_run(st, &job, &dopt, &n_run, &e) : rf_search_enas_run(st, &job, &eopt, &n_run, &e);
    } else {
        if (total0 == 0) { /* the default configuration first: the baseline every study reports */
            rf_config c;
            if ((rc = rf_config_default(space, &c, &e))) goto fail;
            /* multi-fidelity: at the largest budget, so that it competes with the top rung */
            double b0 = sampler && rf_sampler_is_multifidelity(sampler) ? rf_sampler_mf_opts(sampler)->max_budget : 0;
            rc = rf_study_enqueue(st, &c, b0, &e);
            rf_config_free(&c);
            if (rc) goto fail;
        }
        rf_optimize_opts oo;
        rf_optimize_opts_default(&oo);
        oo.max_total = trials;
        oo.time_budget = a.budget;
        oo.progress = !a.quiet;
        oo.requeue_stale = 1;
        oo.stop_flag = &g_stop;
        rf_optimize_result res;
        memset(&res, 0, sizeof res);
        if (mpi_ranks > 1) { /* the trials run on the worker ranks, which load the same task */
            rf_dist_task_src src = {.data = a.data, .labels = a.labels, .subjects = a.subjects, .builtin = a.builtin,
                                    .tiny = a.tiny, .opts = to};
            rc = rf_cli_search_mpi_optimize(st, sampler, &job, &src, &oo, &res, &e);
        } else {
            rc = rf_study_optimize(st, sampler, rf_search_objective, &job, &oo, &res, &e);
        }
        n_run = res.n_run;
        n_complete = res.n_complete;
        n_failed = res.n_failed;
        n_pruned = res.n_pruned;
    }
    const double seconds = rf_now() - t0;
    if (rc) {
        exit_code = rf_runtime_error(C, &e);
        rf_err_clear(&e);
    }

    /* the best model, test scores, report */
    int best_number = -1;
    rf_err be = {0};
    char best_path[4400];
    snprintf(best_path, sizeof best_path, "%s/best.rf", a.out);
    int have_best = rf_search_sync_best(st, a.out, &best_number, &be) == RF_OK && best_number >= 0;
    if (best_number >= 0 && !have_best) fprintf(stderr, "renflow search: warning: best.rf not updated: %s\n", be.msg);
    rf_study_refresh(st, &e);
    const rf_trial *best = rf_study_incumbent(st, 0), *dflt = rf_search_default_trial(st);
    if ((rc = rf_study_counts(st, counts, &e))) {
        exit_code = rf_runtime_error(C, &e);
        goto out;
    }
    summary = cJSON_CreateObject();
    cJSON_AddStringToObject(summary, "study", a.study);
    cJSON_AddStringToObject(summary, "study_name", rf_study_name(st));
    char desc[1400];
    rf_search_task_describe(&task, desc, sizeof desc);
    cJSON *tj = cJSON_AddObjectToObject(summary, "task");
    cJSON_AddStringToObject(tj, "kind", rf_task_kind_name(task.kind));
    cJSON_AddStringToObject(tj, "source", task.source);
    cJSON_AddStringToObject(tj, "description", desc);
    cJSON_AddNumberToObject(tj, "train_rows", task.train.n);
    cJSON_AddNumberToObject(tj, "val_rows", task.val.n);
    cJSON_AddNumberToObject(tj, "test_rows", task.test.n);
    cJSON_AddBoolToObject(tj, "by_subject", task.by_subject);
    cJSON_AddStringToObject(tj, "fingerprint", task.fingerprint);
    cJSON_AddStringToObject(summary, "strategy", strategy);
    cJSON *oj = cJSON_AddArrayToObject(summary, "objectives");
    for (int k = 0; k < n_metrics; k++) cJSON_AddItemToArray(oj, cJSON_CreateString(rf_search_metric_name(metrics[k])));
    cJSON_AddNumberToObject(summary, "trials_run", n_run);
    if (!morph && !supernet) {
        cJSON_AddNumberToObject(summary, "complete", n_complete);
        cJSON_AddNumberToObject(summary, "failed", n_failed);
        cJSON_AddNumberToObject(summary, "pruned", n_pruned);
    }
    cJSON_AddNumberToObject(summary, "seconds", seconds);
    cJSON *cj = cJSON_AddObjectToObject(summary, "counts");
    for (int s = 0; s < RF_TRIAL_NSTATUS; s++) cJSON_AddNumberToObject(cj, rf_trial_status_name((rf_trial_status)s), counts[s]);
    cJSON_AddBoolToObject(summary, "interrupted", g_stop != 0);
    if (best) cJSON_AddItemToObject(summary, "best", trial_summary(st, best, have_best ? best_path : NULL));
    if (dflt) cJSON_AddItemToObject(summary, "default", trial_summary(st, dflt, NULL));
    cJSON *tb = test_scores(&task, a.out, best), *td = dflt ? test_scores(&task, a.out, dflt) : NULL;
    if (tb || td) {
        cJSON *tt = cJSON_AddObjectToObject(summary, "test");
        if (tb) cJSON_AddItemToObject(tt, "best", tb);
        if (td) cJSON_AddItemToObject(tt, "default", td);
    }
    if (!a.no_report && best) {
        char rdir[4400];
        snprintf(rdir, sizeof rdir, "%s/report", a.out);
        rf_err re = {0};
        if (rf_search_report_write(st, rdir, have_best ? best_path : NULL, summary, NULL, &re)) {
            fprintf(stderr, "renflow search: warning: report not written: %s\n", re.msg);
        } else {
            cJSON_AddStringToObject(summary, "report", rdir);
        }
    }

    if (a.json) {
        rf_print_json(summary);
        summary = NULL;
    } else if (best) {
        const rf_objective *o0 = rf_study_objective(st, 0);
        printf("best trial %d: %s = %.6g", best->number, o0->name, best->values[0]);
        if (best->budget > 0) printf(" (budget %g)", best->budget);
        if (dflt) printf(" (default configuration, trial %d: %.6g)", dflt->number, dflt->values[0]);
        printf("\n");
        char *cs = rf_config_to_string(rf_study_space(st), &best->cfg);
        printf("  configuration: %s\n", cs ? cs : "?");
        free(cs);
        if (tb) {
            const cJSON *bn = cJSON_GetObjectItemCaseSensitive(tb, "nll");
            const cJSON *dn = td ? cJSON_GetObjectItemCaseSensitive(td, "nll") : NULL;
            int nt = task.by_subject ? task.n_subjects[2] : task.test.n;
            printf("  test NLL (%d held-out %s%s): best %.4f", nt, task.by_subject ? "subject" : "row", nt == 1 ? "" : "s",
                   bn ? bn->valuedouble : NAN);
            if (dn) printf(", default %.4f", dn->valuedouble);
            const cJSON *bf = cJSON_GetObjectItemCaseSensitive(tb, "macro_f1");
            const cJSON *df = td ? cJSON_GetObjectItemCaseSensitive(td, "macro_f1") : NULL;
            if (bf) printf("; test macro-F1: best %.3f", bf->valuedouble);
            if (bf && df) printf(", default %.3f", df->valuedouble);
            printf("\n");
        }
        printf("%d trials (%d complete, %d failed, %d pruned) in %s; this run: %d in %.1fs\n",
               counts[RF_TRIAL_COMPLETE] + counts[RF_TRIAL_FAILED] + counts[RF_TRIAL_PRUNED] + counts[RF_TRIAL_RUNNING],
               counts[RF_TRIAL_COMPLETE], counts[RF_TRIAL_FAILED], counts[RF_TRIAL_PRUNED], a.study, n_run, seconds);
        if (have_best) printf("best model: %s\n", best_path);
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(summary, "report");
        if (cJSON_IsString(rp)) printf("report: %s/ (history, importance, architecture, report.json)\n", rp->valuestring);
    } else {
        printf("no trial completed yet (%d failed)\n", counts[RF_TRIAL_FAILED]);
    }
    if (exit_code == RF_EXIT_OK && g_stop) {
        if (!a.quiet) fprintf(stderr, "renflow search: stopped by a signal; run the same command again to continue the study\n");
        exit_code = 130;
    }
    goto out;

fail:
    exit_code = rf_runtime_error(C, &e);
    goto out;
done_usage:
    exit_code = rc;
out:
    cJSON_Delete(summary);
    rf_sampler_free(sampler);
    if (start_space != space && start_space) rf_space_free(start_space);
    rf_space_free(space);
    rf_space_free(stored_space);
    rf_study_close(st);
    rf_search_task_free(&task);
    return exit_code;
}
