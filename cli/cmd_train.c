/* renflow train: parse options, load data, build the flow, call rf_train, report. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "train_opts.h"

static volatile int g_stop = 0; /* set by SIGINT/SIGTERM: checkpoint and stop */
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static const char USAGE[] =
    "usage: renflow train --data TRAIN.npy|.csv|.arff|DIR [--val VAL] --out MODEL.rf [options]\n"
    "       renflow cv --data DIR|X.npy [--labels y.npy --subjects s.npy] --folds K [options]\n"
    "\n"
    "Trains a normalizing flow by maximum likelihood and writes the best (validation) model.\n"
    "Without --val, a seeded 10% of the rows is held out for validation.\n"
    "\n"
    "data:\n"
    "  --data FILE|DIR       training data (.npy float32/float64, .csv with header, .arff),\n"
    "                        or a directory written by `renflow eeg prepare`\n"
    "  --val FILE            validation data\n"
    "  --labels FILE         class labels (.npy/.csv) for --task classify\n"
    "  --val-labels FILE     validation labels\n"
    "  --subjects FILE       subject id per row (.npy/.csv): validation then holds out whole\n"
    "                        subjects (a prepared directory brings its own)\n"
    "  --standardize MODE    none | zscore | robust (median/IQR; default zscore), fitted on train\n"
    "  --features F          raw (default) | bandpower: log10 Welch band powers (delta, theta,\n"
    "                        alpha, sigma, beta, gamma) of each window of a prepared directory\n"
    "  --subject-standardise standardise each subject's windows per channel (median, MAD) first\n"
    "  --subject-standardise-features  after --features, standardise each subject's feature\n"
    "                        columns (mean, sd over the subject's rows; no labels): the feature\n"
    "                        counterpart of --subject-adapt, e.g. for --model logreg|mlp\n"
    "                        (for windows not prepared with --standardise subject; no labels)\n"
    "  --context K           add the K previous and K next rows of the same recording to each\n"
    "                        row (sequence data such as sleep epochs; needs recording ids)\n"
    "  --drop-outliers Z     drop training rows whose robust z-score exceeds Z in any column\n"
    "model:\n"
    "  --flow TYPE           realnvp | glow | maf | nsf | nsf-ar | tsflow (default nsf; for a\n"
    "                        prepared EEG directory: tsflow, shaped for its windows)\n"
    "  --scales S            tsflow: scales (Haar squeeze + blocks + factor-out each)\n"
    "  --kernel K            tsflow: conv kernel size (odd)   --dilation D   conv dilation\n"
    "  --coupling T          tsflow: affine | spline\n"
    "  --class-init I        class-conditional base start: auto (default: data for tsflow, random\n"
    "                        for dense flows) | random (class means drawn apart) | data (each\n"
    "                        class at its latent moments: samples match the classes better)\n"
    "  --class-tie T         tsflow classifier: time (default; one class mean and scale per latent\n"
    "                        channel, shared over time) | none (one per latent dimension)\n"
    "  --blocks N            flow blocks (default 5)\n"
    "  --hidden H            conditioner width (default 64)\n"
    "  --hidden-layers K     conditioner hidden layers (default 2)\n"
    "  --act A               relu | gelu | tanh (default relu)\n"
    "  --residual            residual connections in conditioners\n"
    "  --permutation P       each block's linear layer: lu | reverse | random | none (default:\n"
    "                        the flow type's own; tsflow: lu only)\n"
    "  --no-actnorm          blocks without ActNorm\n"
    "  --bins K              spline bins (default 8)\n"
    "  --bound B             spline interval [-B, B], identity outside (default 5)\n"
    "  --clamp C             affine soft clamp of log-scales (default 3)\n"
    "  --base KIND           normal | diag (default normal); class with --task classify\n"
    "  --task T              density (default) | classify (class-conditional base)\n"
    "  --ce-weight L         classify: loss = NLL + L * cross-entropy (default 1)\n"
    "  --subject-adapt M     classify: normalise each subject's latents with its own statistics\n"
    "                        (mean and scale per latent group over all its rows; no labels), so\n"
    "                        eval and cv classify every subject in a common space (needs subject\n"
    "                        ids). M = fit: after training, map subjects onto the training\n"
    "                        subjects' average and refit the class Gaussians there; M = train:\n"
    "                        standardise them in every epoch of training already\n"
    "optimisation:\n"
    "  --epochs E            (default 50)      --batch B      (default 256)\n"
    "  --lr LR               (default 1e-3)    --weight-decay (default 0, AdamW)\n"
    "  --clip G              max gradient norm, 0 = off (default 5)\n"
    "  --warmup F            warm-up fraction of steps (default 0.05)\n"
    "  --no-cosine           constant learning rate after warm-up\n"
    "  --patience P          early stopping patience in epochs, 0 = off (default 10)\n"
    "  --memory-saving       reconstruct activations by inversion in the backward pass\n"
    "  --max-steps N         stop after N steps with a checkpoint (resume later)\n"
    "run:\n"
    "  --out MODEL.rf        best model (written atomically); checkpoint at MODEL.rf.ckpt\n"
    "  --resume              continue from MODEL.rf.ckpt (after Ctrl-C or --max-steps)\n"
    "  --seed S              RNG seed (default 1)     --threads T   (default 2)\n"
    "  --curve FIG           training-curve figure (.svg/.png/.pdf)\n"
    "  --json                machine-readable summary on stdout\n"
    "cross-validation (renflow cv; always a class-conditional flow, folds by subject):\n"
    "  --folds K             subject-wise folds; each fold's validation = 10% of its training subjects\n"
    "  --prior P             uniform (default) | train (training class frequencies)\n"
    "  --out PREFIX          keep each fold's model as PREFIX-fold<f>.rf\n"
    "  --model M             flow (default) | logreg | mlp: discriminative references on the same\n"
    "                        folds (softmax cross-entropy; --lr, --weight-decay, --epochs, --batch,\n"
    "                        --hidden, --hidden-layers, --patience apply)\n"
    "  --class-balanced      logreg/mlp: weight the loss by inverse class frequency\n"
    "  --hmm                 smooth each recording's predictions with a Markov chain over the\n"
    "                        labels fitted on the training folds (sleep staging); needs\n"
    "                        recording ids (recordings.npy in DIR, or --recordings FILE)\n"
    "  --recordings FILE     recording id per row (rows of a recording in temporal order)\n"
    "  --ensemble K          train K models per fold (different seeds, same data) and classify\n"
    "                        with their mean posterior p(c|x) (default 1); test NLL is that of\n"
    "                        their equal mixture; with --out, member m > 0 is PREFIX-fold<f>-m<m>.rf\n"
    "  --pool P              ensemble: mean (default; mean posterior) | log (mean log posterior,\n"
    "                        a product of experts: for flows, whose posteriors are nearly one-hot)\n"
    "  --view FILE           (repeatable) another version of --data: the same rows and columns,\n"
    "                        e.g. features normalised another way; ensemble members take --data\n"
    "                        and the views in turn (at least one member each); the input\n"
    "                        transforms apply to every view\n"
    "  --quiet               no progress on stderr\n";

enum {
    O_DATA = 256, O_VAL, O_LABELS, O_SUBJECTS, O_VAL_LABELS, O_STD, O_DROP, O_FLOW, O_BLOCKS, O_HIDDEN, O_HLAYERS, O_ACT,
    O_RESIDUAL, O_BINS, O_BOUND, O_CLAMP, O_BASE, O_TASK, O_CE, O_EPOCHS, O_BATCH, O_LR, O_WD, O_CLIP, O_WARMUP,
    O_NOCOS, O_PATIENCE, O_MEMSAVE, O_MAXSTEPS, O_OUT, O_RESUME, O_SEED, O_THREADS, O_CURVE, O_JSON, O_QUIET, O_FOLDS, O_PRIOR, O_SCALES, O_KERNEL, O_DILATION, O_COUPLING, O_MODEL, O_BALANCED, O_HMM, O_RECORDINGS, O_FEATURES, O_CONTEXT, O_CLASSTIE, O_SUBJSTD, O_CLASSINIT, O_PERM, O_NOACTNORM, O_ADAPT, O_SUBJSTDF, O_ENSEMBLE, O_VIEW, O_POOL
};

static const struct option LONGOPTS[] = {
    {"data", 1, 0, O_DATA}, {"val", 1, 0, O_VAL}, {"labels", 1, 0, O_LABELS}, {"val-labels", 1, 0, O_VAL_LABELS}, {"subjects", 1, 0, O_SUBJECTS},
    {"standardize", 1, 0, O_STD}, {"drop-outliers", 1, 0, O_DROP}, {"flow", 1, 0, O_FLOW},
    {"blocks", 1, 0, O_BLOCKS}, {"hidden", 1, 0, O_HIDDEN}, {"hidden-layers", 1, 0, O_HLAYERS},
    {"act", 1, 0, O_ACT}, {"residual", 0, 0, O_RESIDUAL}, {"bins", 1, 0, O_BINS}, {"bound", 1, 0, O_BOUND},
    {"clamp", 1, 0, O_CLAMP}, {"base", 1, 0, O_BASE}, {"task", 1, 0, O_TASK}, {"ce-weight", 1, 0, O_CE},
    {"epochs", 1, 0, O_EPOCHS}, {"batch", 1, 0, O_BATCH}, {"lr", 1, 0, O_LR}, {"weight-decay", 1, 0, O_WD},
    {"clip", 1, 0, O_CLIP}, {"warmup", 1, 0, O_WARMUP}, {"no-cosine", 0, 0, O_NOCOS},
    {"patience", 1, 0, O_PATIENCE}, {"memory-saving", 0, 0, O_MEMSAVE}, {"max-steps", 1, 0, O_MAXSTEPS},
    {"out", 1, 0, O_OUT}, {"resume", 0, 0, O_RESUME}, {"seed", 1, 0, O_SEED}, {"threads", 1, 0, O_THREADS},
    {"curve", 1, 0, O_CURVE}, {"json", 0, 0, O_JSON}, {"quiet", 0, 0, O_QUIET}, {"folds", 1, 0, O_FOLDS}, {"scales", 1, 0, O_SCALES}, {"kernel", 1, 0, O_KERNEL}, {"dilation", 1, 0, O_DILATION}, {"coupling", 1, 0, O_COUPLING}, {"prior", 1, 0, O_PRIOR}, {"model", 1, 0, O_MODEL}, {"class-balanced", 0, 0, O_BALANCED}, {"hmm", 0, 0, O_HMM}, {"recordings", 1, 0, O_RECORDINGS}, {"features", 1, 0, O_FEATURES}, {"context", 1, 0, O_CONTEXT}, {"class-tie", 1, 0, O_CLASSTIE}, {"subject-standardise", 0, 0, O_SUBJSTD}, {"class-init", 1, 0, O_CLASSINIT}, {"permutation", 1, 0, O_PERM}, {"no-actnorm", 0, 0, O_NOACTNORM}, {"subject-adapt", 1, 0, O_ADAPT}, {"subject-standardise-features", 0, 0, O_SUBJSTDF}, {"ensemble", 1, 0, O_ENSEMBLE}, {"view", 1, 0, O_VIEW}, {"pool", 1, 0, O_POOL}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};



int rf_cli_train_parse(int cv, int argc, char **argv, train_args *a, int *help) {
    const char *C = cv ? "cv" : "train";
    rf_flow_spec_default(&a->spec, RF_FLOW_NSF, 1);
    rf_train_cfg_default(&a->cfg);
    a->cfg.threads = 2;
    a->flow = "nsf";
    a->task = "density";
    a->ts_class_tie = -1;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    int c, rc = 0;
    while (!rc && (c = rf_next_opt(&o, argc, argv, help)) != -1) {
        switch (c) {
        case -2: return RF_EXIT_USAGE;
        case O_DATA: a->data = optarg; break;
        case O_VAL: a->val = optarg; break;
        case O_LABELS: a->labels = optarg; break;
        case O_VAL_LABELS: a->val_labels = optarg; break;
        case O_SUBJECTS: a->subjects = optarg; break;
        case O_STD: a->standardize = optarg; break;
        case O_DROP: rc = rf_arg_float(C, "drop-outliers", optarg, 1, 1e9, &a->drop); break;
        case O_FLOW: a->flow = optarg; a->flow_given = 1; break;
        case O_SCALES: rc = rf_arg_int(C, "scales", optarg, 1, 16, &a->ts_scales); break;
        case O_KERNEL: rc = rf_arg_int(C, "kernel", optarg, 1, 63, &a->ts_kernel); break;
        case O_DILATION: rc = rf_arg_int(C, "dilation", optarg, 1, 64, &a->ts_dilation); break;
        case O_COUPLING: a->ts_coupling = optarg; break;
        case O_CLASSTIE:
            if (strcmp(optarg, "time") && strcmp(optarg, "none"))
                rc = rf_usage_error(C, "option --class-tie: expected time or none, got '%s'", optarg);
            a->ts_class_tie = !strcmp(optarg, "none") ? 0 : 1;
            break;
        case O_BLOCKS: rc = rf_arg_int(C, "blocks", optarg, 1, 1000, &a->spec.blocks); a->blocks_given = 1; break;
        case O_HIDDEN: rc = rf_arg_int(C, "hidden", optarg, 1, 65536, &a->spec.hidden); a->hidden_given = 1; break;
        case O_HLAYERS: rc = rf_arg_int(C, "hidden-layers", optarg, 1, 64, &a->spec.n_hidden); break;
        case O_ACT: a->act = optarg; break;
        case O_RESIDUAL: a->spec.residual = 1; break;
        case O_PERM:
            if (rf_perm_kind_parse(optarg, &a->spec.perm))
                rc = rf_usage_error(C, "option --permutation: expected lu, reverse, random or none, got '%s'", optarg);
            break;
        case O_NOACTNORM: a->spec.no_actnorm = 1; break;
        case O_ADAPT:
            if (!strcmp(optarg, "fit")) a->subject_adapt = 1;
            else if (!strcmp(optarg, "train")) a->subject_adapt = 2;
            else rc = rf_usage_error(C, "option --subject-adapt: expected fit or train, got '%s'", optarg);
            break;
        case O_BINS: rc = rf_arg_int(C, "bins", optarg, 2, 64, &a->spec.bins); break;
        case O_BOUND: rc = rf_arg_float(C, "bound", optarg, 1e-3, 1e4, &a->spec.bound); break;
        case O_CLAMP: rc = rf_arg_float(C, "clamp", optarg, 0, 99, &a->spec.clamp); break;
        case O_BASE: a->base = optarg; break;
        case O_TASK: a->task = optarg; break;
        case O_CE: rc = rf_arg_float(C, "ce-weight", optarg, 0, 1e6, &a->cfg.ce_weight); break;
        case O_EPOCHS: rc = rf_arg_int(C, "epochs", optarg, 1, 1000000, &a->cfg.epochs); break;
        case O_BATCH: rc = rf_arg_int(C, "batch", optarg, 1, 1 << 20, &a->cfg.batch); break;
        case O_LR: rc = rf_arg_float(C, "lr", optarg, 1e-12, 10, &a->cfg.lr); break;
        case O_WD: rc = rf_arg_float(C, "weight-decay", optarg, 0, 10, &a->cfg.weight_decay); break;
        case O_CLIP: rc = rf_arg_float(C, "clip", optarg, 0, 1e9, &a->cfg.clip); break;
        case O_WARMUP: rc = rf_arg_float(C, "warmup", optarg, 0, 1, &a->cfg.warmup_frac); break;
        case O_NOCOS: a->cfg.cosine = 0; break;
        case O_PATIENCE: rc = rf_arg_int(C, "patience", optarg, 0, 1000000, &a->cfg.patience); break;
        case O_MEMSAVE: a->cfg.memory_saving = 1; break;
        case O_MAXSTEPS: rc = rf_arg_long(C, "max-steps", optarg, 1, 1L << 40, &a->cfg.max_steps); break;
        case O_OUT: a->out = optarg; break;
        case O_RESUME: a->cfg.resume = 1; break;
        case O_SEED: rc = rf_arg_u64(C, "seed", optarg, &a->cfg.seed); break;
        case O_THREADS: rc = rf_arg_int(C, "threads", optarg, 1, 256, &a->cfg.threads); break;
        case O_CURVE: a->curve = optarg; break;
        case O_JSON: a->json = 1; break;
        case O_QUIET: a->quiet = 1; break;
        case O_FOLDS: rc = cv ? rf_arg_int(C, "folds", optarg, 2, 100000, &a->folds) : rf_usage_error(C, "--folds belongs to `renflow cv`"); break;
        case O_MODEL: a->model = optarg; if (!cv) rc = rf_usage_error(C, "--model belongs to `renflow cv`"); break;
        case O_BALANCED: a->class_balanced = 1; break;
        case O_ENSEMBLE: rc = cv ? rf_arg_int(C, "ensemble", optarg, 1, 64, &a->ensemble) : rf_usage_error(C, "--ensemble belongs to `renflow cv`"); break;
        case O_POOL:
            if (!cv) rc = rf_usage_error(C, "--pool belongs to `renflow cv`");
            else if (!strcmp(optarg, "mean")) a->log_pool = 0;
            else if (!strcmp(optarg, "log")) a->log_pool = 1;
            else rc = rf_usage_error(C, "option --pool: expected mean or log, got '%s'", optarg);
            break;
        case O_VIEW:
            if (!cv) rc = rf_usage_error(C, "--view belongs to `renflow cv`");
            else if (a->n_views >= RF_CLI_MAX_VIEWS) rc = rf_usage_error(C, "at most %d --view options", RF_CLI_MAX_VIEWS);
            else a->views[a->n_views++] = optarg;
            break;
        case O_HMM: a->hmm = 1; if (!cv) rc = rf_usage_error(C, "--hmm belongs to `renflow cv`"); break;
        case O_RECORDINGS: a->recordings = optarg; break;
        case O_FEATURES:
            if (!strcmp(optarg, "bandpower")) a->input.bandpower = 1;
            else if (strcmp(optarg, "raw")) rc = rf_usage_error(C, "option --features: expected raw or bandpower, got '%s'", optarg);
            break;
        case O_SUBJSTD: a->input.std_subject = 1; break;
        case O_SUBJSTDF: a->input.std_subject_features = 1; break;
        case O_CLASSINIT:
            if (!strcmp(optarg, "auto")) a->cfg.class_init = -1;
            else if (!strcmp(optarg, "random")) a->cfg.class_init = 0;
            else if (!strcmp(optarg, "data")) a->cfg.class_init = 1;
            else rc = rf_usage_error(C, "option --class-init: expected auto, random or data, got '%s'", optarg);
            break;
        case O_CONTEXT: rc = rf_arg_int(C, "context", optarg, 0, 64, &a->input.context); break;
        case O_PRIOR: a->prior = optarg; if (!cv) rc = rf_usage_error(C, "--prior belongs to `renflow cv` and `renflow eval`"); break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind < argc) return rf_usage_error(C, "unexpected argument '%s'", argv[optind]);
    if (!a->data) return rf_usage_error(C, "--data is required");
    if (!a->out && !cv) return rf_usage_error(C, "--out is required");
    if (cv) {
        if (a->folds < 2) return rf_usage_error(C, "--folds K (K >= 2) is required");
        if (a->val) return rf_usage_error(C, "--val is not used by cv: each fold holds out subjects for validation");
        if (a->prior && strcmp(a->prior, "uniform") && strcmp(a->prior, "train"))
            return rf_usage_error(C, "option --prior: expected uniform or train, got '%s'", a->prior);
        a->task = "classify";
        if (!a->model) a->model = "flow";
        if (strcmp(a->model, "flow") && strcmp(a->model, "logreg") && strcmp(a->model, "mlp"))
            return rf_usage_error(C, "option --model: expected flow, logreg or mlp, got '%s'", a->model);
    }
    if (rf_flow_type_parse(a->flow, &a->spec.type))
        return rf_usage_error(C, "option --flow: unknown flow '%s' (realnvp, glow, maf, nsf, nsf-ar, tsflow)", a->flow);
    /* the tsflow options imply --flow tsflow and make no sense with another type */
    const char *ts_opt = a->ts_scales > 0 ? "--scales" : a->ts_kernel > 0 ? "--kernel" : a->ts_dilation > 0 ? "--dilation"
                         : a->ts_coupling ? "--coupling" : a->ts_class_tie >= 0 ? "--class-tie" : NULL;
    if (ts_opt && a->flow_given && a->spec.type != RF_FLOW_TS)
        return rf_usage_error(C, "option %s applies to --flow tsflow only, not --flow %s", ts_opt, a->flow);
    if (ts_opt) {
        a->spec.type = RF_FLOW_TS;
        a->flow_given = 1;
    }
    if (a->spec.type == RF_FLOW_TS && a->spec.perm != RF_PERM_DEFAULT && a->spec.perm != RF_PERM_LU)
        return rf_usage_error(C, "option --permutation: a tsflow mixes channels with its learned 1x1 (lu) only, got '%s'",
                              rf_perm_kind_name(a->spec.perm));
    if (a->ts_coupling && strcmp(a->ts_coupling, "affine") && strcmp(a->ts_coupling, "spline"))
        return rf_usage_error(C, "option --coupling: expected affine or spline, got '%s'", a->ts_coupling);
    if (a->act && rf_act_parse(a->act, &a->spec.act))
        return rf_usage_error(C, "option --act: unknown activation '%s' (relu, gelu, tanh)", a->act);
    if (strcmp(a->task, "density") && strcmp(a->task, "classify"))
        return rf_usage_error(C, "option --task: expected density or classify, got '%s'", a->task);
    if (a->base && rf_base_kind_parse(a->base, &a->spec.base))
        return rf_usage_error(C, "option --base: unknown base '%s' (normal, diag, class)", a->base);
    if (!strcmp(a->task, "classify")) {
        a->spec.base = RF_BASE_CLASS;
    } else if (a->spec.base == RF_BASE_CLASS) {
        return rf_usage_error(C, "--base class needs --task classify and --labels");
    }
    if (a->subject_adapt && strcmp(a->task, "classify")) return rf_usage_error(C, "--subject-adapt needs --task classify");
    if (a->subject_adapt && cv && strcmp(a->model, "flow"))
        return rf_usage_error(C, "--subject-adapt applies to flows, not --model %s", a->model);
    if (a->val_labels && !a->val) return rf_usage_error(C, "--val-labels needs --val");
    if (a->labels && a->val && !a->val_labels) return rf_usage_error(C, "--val with --labels needs --val-labels");
    if (a->standardize) {
        if (!strcmp(a->standardize, "none")) a->cfg.standardize = 0;
        else if (!strcmp(a->standardize, "zscore")) a->cfg.standardize = 1;
        else if (!strcmp(a->standardize, "robust")) a->cfg.standardize = 2;
        else return rf_usage_error(C, "option --standardize: expected none, zscore or robust, got '%s'", a->standardize);
    }
    a->cfg.progress = !a->quiet;
    a->cfg.out_path = a->out;
    return 0;
}

typedef struct {
    rf_matrix tr, va;
    int *ytr, *yva;
    int n_dropped;
    int channels, length, n_classes; /* from a prepared data set (0 when unknown) */
    int subject_split;               /* validation holds out whole subjects */
    int *str, *sva;                  /* subject id of each training / validation row (NULL when unknown) */
} train_data;

static void data_free(train_data *d) {
    rf_matrix_free(&d->tr);
    rf_matrix_free(&d->va);
    free(d->ytr);
    free(d->yva);
    free(d->str);
    free(d->sva);
}

/* The entries of v (n) whose keep flag is set, in order. */
static int select_ints(const int *v, const unsigned char *keep, int n, int **out, rf_err *e) {
    int m = 0;
    for (int i = 0; i < n; i++) m += keep[i] != 0;
    if (!(*out = malloc(sizeof(int) * (size_t)(m > 0 ? m : 1)))) return rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int i = 0, k = 0; i < n; i++)
        if (keep[i]) (*out)[k++] = v[i];
    return RF_OK;
}

static int max_label(const int *y, int n) {
    int m = -1;
    for (int i = 0; i < n; i++)
        if (y[i] > m) m = y[i];
    return m;
}

/* Rows of `all` with keep[i] set (and their labels). */
static int take_rows(const rf_matrix *all, const int *y, const unsigned char *keep, rf_matrix *out,
                     int **yout, rf_err *e) {
    int rc = rf_matrix_select_rows(all, keep, out, e);
    if (rc || !y) return rc;
    if (!(*yout = malloc(sizeof(int) * (size_t)(out->n > 0 ? out->n : 1))))
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int i = 0, k = 0; i < all->n; i++)
        if (keep[i]) (*yout)[k++] = y[i];
    return RF_OK;
}

static int load_data(train_args *a, train_data *d, rf_err *e) {
    memset(d, 0, sizeof *d);
    rf_dataset ds = {0};
    int rc;
    if ((rc = rf_dataset_read(a->data, a->labels, a->subjects, &ds, e))) return rc;
    if (a->recordings && (rc = rf_dataset_set_recordings(&ds, a->recordings, e))) goto fail;
    if ((rc = rf_input_apply(&ds, &a->input, e))) goto fail;
    if (!strcmp(a->task, "classify") && !ds.labels) {
        rc = rf_err_set(e, RF_EARG, "--task classify: %s has no labels (give --labels, or a prepared directory with labels.npy)", a->data);
        goto fail;
    }
    d->channels = ds.channels;
    d->length = ds.length;
    d->n_classes = ds.n_classes;
    unsigned char *keep = malloc((size_t)(ds.x.n > 0 ? ds.x.n : 1));
    if (!keep) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < ds.x.n; i++) keep[i] = 1;
    if (a->drop > 0) d->n_dropped = rf_outlier_rows(&ds.x, a->drop, keep);
    if (a->val) {
        rc = take_rows(&ds.x, strcmp(a->task, "classify") ? NULL : ds.labels, keep, &d->tr, strcmp(a->task, "classify") ? NULL : &d->ytr, e);
        if (!rc && ds.subjects) rc = select_ints(ds.subjects, keep, ds.x.n, &d->str, e);
        free(keep);
        if (rc) goto fail;
        rf_dataset dv = {0};
        if ((rc = rf_dataset_read(a->val, a->val_labels, NULL, &dv, e))) goto fail;
        rf_input_tf vt = a->input;
        if ((rc = rf_input_apply(&dv, &vt, e))) {
            rf_dataset_free(&dv);
            goto fail;
        }
        d->va = dv.x;
        dv.x = (rf_matrix){0};
        if (d->ytr) {
            if (!dv.labels) {
                rf_dataset_free(&dv);
                rc = rf_err_set(e, RF_EARG, "--val %s has no labels (give --val-labels)", a->val);
                goto fail;
            }
            d->yva = dv.labels;
            dv.labels = NULL;
        }
        rf_dataset_free(&dv);
        goto done;
    }
    /* Hold out 10 % for validation: whole subjects when subject ids are known, else rows. */
    const int *y = strcmp(a->task, "classify") ? NULL : ds.labels;
    if (ds.subjects) {
        unsigned char *tr = malloc((size_t)(ds.x.n > 0 ? ds.x.n : 1)), *va = malloc((size_t)(ds.x.n > 0 ? ds.x.n : 1));
        if (!tr || !va) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        if (!rc) rc = rf_subject_holdout(ds.subjects, ds.x.n, 0.1, a->cfg.seed ^ 0x5eedULL, tr, e);
        if (!rc) {
            for (int i = 0; i < ds.x.n; i++) {
                va[i] = keep[i] && !tr[i];
                tr[i] = keep[i] && tr[i];
            }
            rc = take_rows(&ds.x, y, tr, &d->tr, y ? &d->ytr : NULL, e);
            if (!rc) rc = take_rows(&ds.x, y, va, &d->va, y ? &d->yva : NULL, e);
            if (!rc) rc = select_ints(ds.subjects, tr, ds.x.n, &d->str, e);
            if (!rc) rc = select_ints(ds.subjects, va, ds.x.n, &d->sva, e);
            d->subject_split = 1;
        }
        free(tr);
        free(va);
        free(keep);
        goto done;
    }
    rf_matrix kept = {0};
    int *ykept = NULL;
    rc = take_rows(&ds.x, y, keep, &kept, y ? &ykept : NULL, e);
    free(keep);
    if (!rc) {
        rf_rng rng;
        rf_rng_seed(&rng, a->cfg.seed ^ 0x5eedULL);
        rc = rf_holdout_split(&kept, ykept, 0.1, &rng, &d->tr, ykept ? &d->ytr : NULL, &d->va, ykept ? &d->yva : NULL, e);
    }
    rf_matrix_free(&kept);
    free(ykept);
done:
fail:
    rf_dataset_free(&ds);
    return rc;
}

static cJSON *provenance(const train_args *a, const train_data *d) {
    cJSON *m = cJSON_CreateObject();
    char hex[65], seed[32], date[32];
    cJSON_AddStringToObject(m, "train_data", a->data);
    if (rf_sha256_file(a->data, hex, NULL) == RF_OK) cJSON_AddStringToObject(m, "train_sha256", hex);
    cJSON_AddNumberToObject(m, "train_rows", d->tr.n);
    cJSON_AddNumberToObject(m, "val_rows", d->va.n);
    cJSON_AddNumberToObject(m, "dropped_outliers", d->n_dropped);
    cJSON_AddBoolToObject(m, "validation_by_subject", d->subject_split);
    cJSON *in = rf_input_to_json(&a->input);
    if (in) cJSON_AddItemToObject(m, "input", in);
    if (d->ytr && d->n_classes > 0) {
        double *cnt = calloc((size_t)d->n_classes, sizeof *cnt);
        for (int i = 0; cnt && i < d->tr.n; i++)
            if (d->ytr[i] < d->n_classes) cnt[d->ytr[i]]++;
        if (cnt) cJSON_AddItemToObject(m, "class_counts", cJSON_CreateDoubleArray(cnt, d->n_classes));
        free(cnt);
    }
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->cfg.seed);
    cJSON_AddStringToObject(m, "seed", seed);
    cJSON_AddNumberToObject(m, "threads", a->cfg.threads);
    cJSON_AddStringToObject(m, "standardize", a->cfg.standardize == 2 ? "robust" : a->cfg.standardize ? "zscore" : "none");
    cJSON_AddNumberToObject(m, "epochs", a->cfg.epochs);
    cJSON_AddNumberToObject(m, "batch", a->cfg.batch);
    cJSON_AddNumberToObject(m, "lr", a->cfg.lr);
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
    cJSON_AddStringToObject(m, "created", date);
    return m;
}

static cJSON *summary(const train_args *a, const rf_flow *f, const train_data *d, const rf_train_result *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", a->out);
    cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&f->spec));
    cJSON_AddNumberToObject(j, "n_params", (double)f->n_params);
    cJSON_AddNumberToObject(j, "train_rows", d->tr.n);
    cJSON_AddNumberToObject(j, "val_rows", d->va.n);
    cJSON_AddNumberToObject(j, "dropped_outliers", d->n_dropped);
    cJSON_AddNumberToObject(j, "epochs_run", r->epochs_run);
    cJSON_AddNumberToObject(j, "best_epoch", r->best_epoch);
    cJSON_AddNumberToObject(j, "best_val_nll", r->best_val_nll);
    cJSON_AddNumberToObject(j, "best_val_bits_per_dim", r->best_val_nll / (f->D * 0.6931471805599453));
    cJSON_AddNumberToObject(j, "final_train_nll", r->final_train_nll);
    cJSON_AddNumberToObject(j, "steps", (double)r->steps);
    cJSON_AddNumberToObject(j, "skipped_steps", (double)r->skipped_steps);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "samples_per_sec", r->samples_per_sec);
    cJSON_AddNumberToObject(j, "train_seconds", r->train_seconds);
    cJSON_AddNumberToObject(j, "samples_per_sec_wall", r->samples_per_sec_wall);
    cJSON_AddBoolToObject(j, "early_stopped", r->early_stopped);
    cJSON_AddBoolToObject(j, "interrupted", r->interrupted);
    cJSON_AddBoolToObject(j, "memory_saving", a->cfg.memory_saving);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)a->cfg.seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "threads", a->cfg.threads);
    cJSON_AddNumberToObject(j, "peak_rss_kb", (double)rf_peak_rss_kb());
    cJSON_AddItemToObject(j, "train_curve", cJSON_CreateDoubleArray(r->train_curve, r->epochs_run));
    cJSON_AddItemToObject(j, "val_curve", cJSON_CreateDoubleArray(r->val_curve, r->epochs_run));
    return j;
}

int rf_cli_train(int argc, char **argv) {
    static const char *C = "train";
    train_args a = {0};
    int help = 0, rc = rf_cli_train_parse(0, argc, argv, &a, &help);
    if (help) return RF_EXIT_OK;
    if (rc) return rc;
    rf_err e = {0};
    train_data d;
    if (load_data(&a, &d, &e)) {
        data_free(&d);
        return rf_runtime_error(C, &e);
    }
    if (a.subject_adapt && !d.str) {
        data_free(&d);
        rf_err_set(&e, RF_EARG, "--subject-adapt: %s has no subject ids (give --subjects, or a prepared directory with subjects.npy)", a.data);
        return rf_runtime_error(C, &e);
    }
    a.spec.D = d.tr.d;
    if (rf_cli_shape_spec(&a, d.channels, d.length, d.tr.d, &e)) {
        data_free(&d);
        return rf_runtime_error(C, &e);
    }
    if (a.spec.base == RF_BASE_CLASS) {
        int m = max_label(d.ytr, d.tr.n);
        if (d.yva && max_label(d.yva, d.va.n) > m) m = max_label(d.yva, d.va.n);
        a.spec.n_classes = m + 1 > d.n_classes ? m + 1 : d.n_classes;
        d.n_classes = a.spec.n_classes;
    }
    rf_rng rng;
    rf_rng_seed(&rng, a.cfg.seed);
    rf_flow *f = rf_flow_create(&a.spec, &rng, &e);
    if (!f) {
        data_free(&d);
        return rf_runtime_error(C, &e);
    }
    f->meta = provenance(&a, &d);
    if (!a.quiet)
        fprintf(stderr, "renflow train: %s flow, D=%d, %d blocks, %zu parameters; %d train / %d validation rows%s; seed %llu\n",
                rf_flow_type_name(a.spec.type), f->D, a.spec.blocks, f->n_params, d.tr.n, d.va.n,
                d.n_dropped ? " (outliers dropped)" : "", (unsigned long long)a.cfg.seed);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    a.cfg.stop_flag = &g_stop;
    if (a.subject_adapt == 2) {
        a.cfg.subject_adapt = 1;
        a.cfg.train_subjects = d.str;
        a.cfg.val_subjects = d.sva;
    }
    rf_train_result r;
    rc = rf_train(f, &d.tr, d.ytr, &d.va, d.yva, &a.cfg, &r, &e);
    if (!rc && a.subject_adapt == 1) {
        rc = rf_adapt_fit(f, &d.tr, d.ytr, d.str, &e);
        if (!rc) rc = rf_flow_save(f, a.out, &e);
        if (!rc && !a.quiet) fprintf(stderr, "renflow train: subject adaptation fitted on %d training rows; model rewritten to %s\n", d.tr.n, a.out);
    }
    int exit_code = RF_EXIT_OK;
    if (rc && rc != RF_EINTERRUPTED) exit_code = rf_runtime_error(C, &e);
    else if (rc == RF_EINTERRUPTED) {
        fprintf(stderr, "renflow train: %s\n", e.msg);
        exit_code = g_stop ? 130 : RF_EXIT_OK;
    }
    if (exit_code != RF_EXIT_ERROR) {
        if (a.curve && r.epochs_run > 0 && rf_plot_curves(a.curve, "training curve", r.train_curve, r.val_curve, r.epochs_run, "NLL (nats)", &e))
            exit_code = rf_runtime_error(C, &e);
        if (a.json) rf_print_json(summary(&a, f, &d, &r));
        else if (!rc)
            printf("best validation NLL %.4f nats (%.4f bits/dim) at epoch %d; model written to %s\n", r.best_val_nll,
                   r.best_val_nll / (f->D * 0.6931471805599453), r.best_epoch, a.out);
    }
    rf_train_result_free(&r);
    rf_flow_free(f);
    data_free(&d);
    return exit_code;
}

int rf_cli_shape_spec(train_args *a, int channels, int length, int D, rf_err *e) {
    if (!a->flow_given && channels > 0) a->spec.type = RF_FLOW_TS;
    if (a->spec.type != RF_FLOW_TS) return RF_OK;
    if (channels <= 0) {
        channels = 1;
        length = D;
    }
    rf_flow_spec s = a->spec;
    int rc = rf_tsflow_spec_default(&s, channels, length, e);
    if (rc) return rc;
    /* keep what the user set explicitly on the command line */
    s.base = a->spec.base;
    s.n_classes = a->spec.n_classes;
    s.act = a->spec.act;
    if (a->ts_scales > 0) s.scales = a->ts_scales;
    if (a->ts_kernel > 0) s.kernel = a->ts_kernel;
    if (a->ts_dilation > 0) s.dilation = a->ts_dilation;
    if (a->ts_coupling) s.spline = !strcmp(a->ts_coupling, "spline");
    s.class_tie = a->ts_class_tie >= 0 ? a->ts_class_tie : 1;
    s.perm = a->spec.perm;
    s.no_actnorm = a->spec.no_actnorm;
    if (a->hidden_given) s.hidden = a->spec.hidden;
    if (a->blocks_given) s.blocks = a->spec.blocks;
    a->spec = s;
    return RF_OK; /* rf_flow_create checks the whole spec once the classes are known */
}
