/* renflow eeg prepare: EDF recordings -> a cached data set directory. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"

static const char USAGE[] =
    "usage: renflow eeg prepare --recordings LIST.csv --out DIR [settings]\n"
    "       renflow eeg prepare --like DIR/manifest.json --recordings NEW.csv --out DIR2\n"
    "\n"
    "Reads EDF/EDF+/BDF recordings, filters (zero-phase Butterworth band-pass, optional notch),\n"
    "resamples, standardises robustly (median, 1.4826 MAD per channel; no labels used), cuts\n"
    "labelled windows, drops artefacts and writes DIR/windows.npy (N x channels x\n"
    "samples, float32), labels.npy, subjects.npy, recordings.npy and manifest.json.\n"
    "LIST.csv has a header with columns file,subject,label[,hypnogram] (paths relative to it).\n"
    "\n"
    "  --mode M          label (one class per recording, from the label column; default) |\n"
    "                    sleep (30 s epochs labelled by the hypnogram column: W N1 N2 N3 REM;\n"
    "                    stage 4 -> N3; '?' and movement time dropped) |\n"
    "                    events (EDF+ annotations --codes become classes, event-locked windows)\n"
    "  --channels A,B    channel labels (default: the EEG channels of the first recording)\n"
    "  --highpass F      Hz, 0 = off (default 0.5)     --lowpass F   Hz, 0 = off (default 45; sleep 35)\n"
    "  --order N         Butterworth order (default 4)\n"
    "  --notch F         notch frequency in Hz, 0 = off (default 0)  --notch-q Q (default 30)\n"
    "  --rate R          target sampling rate in Hz, 0 = keep (default 128)\n"
    "  --window S        label mode: window length in s (default 4; sleep 30)\n"
    "  --hop S           label mode: hop in s (default = window)\n"
    "  --pre S, --post S events mode: window = [onset - pre, onset + post) (default 0, 4)\n"
    "  --codes T1,T2     events mode: annotation texts that become classes, in class order\n"
    "  --trim-wake MIN   sleep: keep at most MIN minutes of wake before the first and after the\n"
    "                    last sleep epoch; -1 keeps all (default 30)\n"
    "  --standardise S   robust standardisation per recording (default) | subject (statistics\n"
    "                    pooled over a subject's recordings: level differences between its\n"
    "                    recordings survive) | none (physical units)\n"
    "  --no-robust       the same as --standardise none\n"
    "  --reject-z Z      drop windows with |z| > Z in any channel, 0 = off (default 20; off\n"
    "                    without standardisation)\n"
    "  --reject-ptp V    drop windows whose peak-to-peak exceeds V, 0 = off (default 0)\n"
    "  --strict-edf      a truncated EDF is an error (default: use its complete records, warn)\n"
    "  --like MANIFEST   take every setting (and the class order) from an earlier manifest\n"
    "  --json            summary as JSON on stdout     --quiet   no progress\n";

enum {
    O_REC = 256, O_OUT, O_LIKE, O_MODE, O_CH, O_HP, O_LP, O_ORDER, O_NOTCH, O_NQ, O_RATE, O_WIN, O_HOP, O_PRE,
    O_POST, O_CODES, O_TRIM, O_NOROBUST, O_STD, O_REJZ, O_REJPTP, O_STRICT, O_JSON, O_QUIET
};
static const struct option LONGOPTS[] = {
    {"recordings", 1, 0, O_REC}, {"out", 1, 0, O_OUT}, {"like", 1, 0, O_LIKE}, {"mode", 1, 0, O_MODE},
    {"channels", 1, 0, O_CH}, {"highpass", 1, 0, O_HP}, {"lowpass", 1, 0, O_LP}, {"order", 1, 0, O_ORDER},
    {"notch", 1, 0, O_NOTCH}, {"notch-q", 1, 0, O_NQ}, {"rate", 1, 0, O_RATE}, {"window", 1, 0, O_WIN},
    {"hop", 1, 0, O_HOP}, {"pre", 1, 0, O_PRE}, {"post", 1, 0, O_POST}, {"codes", 1, 0, O_CODES},
    {"trim-wake", 1, 0, O_TRIM}, {"no-robust", 0, 0, O_NOROBUST}, {"standardise", 1, 0, O_STD}, {"reject-z", 1, 0, O_REJZ},
    {"reject-ptp", 1, 0, O_REJPTP}, {"strict-edf", 0, 0, O_STRICT}, {"json", 0, 0, O_JSON},
    {"quiet", 0, 0, O_QUIET}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};

/* Splits "a,b,c" into out (strdup'd); returns the count or -1 when there are too many. */
static int split_list(const char *s, char **out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        const char *c = strchr(p, ',');
        const size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len > 0) {
            if (n == max) return -1;
            out[n] = strndup(p, len);
            n++;
        }
        if (!c) break;
        p = c + 1;
    }
    return n;
}

static int prepare(int argc, char **argv) {
    static const char *C = "eeg prepare";
    const char *rec = NULL, *out = NULL, *like = NULL, *mode = "label", *channels = NULL, *codes = NULL;
    float hp = -1, lp = -1, notch = -1, nq = -1, rate = -1, win = -1, hop = -1, pre = -1, post = -1, trim = -2, rz = -1, rptp = -1;
    int std_scope = -1;
    int order = -1, norobust = 0, strict = 0, json = 0, quiet = 0, help = 0, c, rc = 0;
    rf_cli_opts o = {C, LONGOPTS, USAGE};
    optind = 1;
    while (!rc && (c = rf_next_opt(&o, argc, argv, &help)) != -1) {
        switch (c) {
        case -2: return help ? RF_EXIT_OK : RF_EXIT_USAGE;
        case O_REC: rec = optarg; break;
        case O_OUT: out = optarg; break;
        case O_LIKE: like = optarg; break;
        case O_MODE: mode = optarg; break;
        case O_CH: channels = optarg; break;
        case O_HP: rc = rf_arg_float(C, "highpass", optarg, 0, 1e5, &hp); break;
        case O_LP: rc = rf_arg_float(C, "lowpass", optarg, 0, 1e5, &lp); break;
        case O_ORDER: rc = rf_arg_int(C, "order", optarg, 1, 10, &order); break;
        case O_NOTCH: rc = rf_arg_float(C, "notch", optarg, 0, 1e5, &notch); break;
        case O_NQ: rc = rf_arg_float(C, "notch-q", optarg, 0.1, 1e4, &nq); break;
        case O_RATE: rc = rf_arg_float(C, "rate", optarg, 0, 1e6, &rate); break;
        case O_WIN: rc = rf_arg_float(C, "window", optarg, 1e-3, 1e5, &win); break;
        case O_HOP: rc = rf_arg_float(C, "hop", optarg, 0, 1e5, &hop); break;
        case O_PRE: rc = rf_arg_float(C, "pre", optarg, 0, 1e5, &pre); break;
        case O_POST: rc = rf_arg_float(C, "post", optarg, 0, 1e5, &post); break;
        case O_CODES: codes = optarg; break;
        case O_TRIM: rc = rf_arg_float(C, "trim-wake", optarg, -1, 1e6, &trim); break;
        case O_NOROBUST: norobust = 1; break;
        case O_STD:
            if (rf_std_scope_parse(optarg, &std_scope))
                return rf_usage_error(C, "option --standardise: expected recording, subject or none, got '%s'", optarg);
            break;
        case O_REJZ: rc = rf_arg_float(C, "reject-z", optarg, 0, 1e9, &rz); break;
        case O_REJPTP: rc = rf_arg_float(C, "reject-ptp", optarg, 0, 1e12, &rptp); break;
        case O_STRICT: strict = 1; break;
        case O_JSON: json = 1; break;
        case O_QUIET: quiet = 1; break;
        default: return rf_usage_error(C, "unexpected option");
        }
    }
    if (rc) return rc;
    if (optind < argc) return rf_usage_error(C, "unexpected argument '%s'", argv[optind]);
    if (!rec) return rf_usage_error(C, "--recordings LIST.csv is required");
    if (!out) return rf_usage_error(C, "--out DIR is required");
    rf_prep_cfg cfg;
    char **fixed = NULL;
    int nfixed = 0;
    rf_err e = {0};
    if (like) {
        if (channels || codes || hp >= 0 || lp >= 0 || order > 0 || notch >= 0 || rate >= 0 || win > 0 || hop >= 0 || pre >= 0 ||
            post >= 0 || trim > -2 || norobust || std_scope >= 0 || rz >= 0 || rptp >= 0 || strcmp(mode, "label"))
            return rf_usage_error(C, "--like takes every setting from the manifest; do not combine it with settings");
        if (rf_prep_cfg_from_manifest(like, &cfg, &fixed, &nfixed, &e)) return rf_runtime_error(C, &e);
    } else {
        rf_prep_mode m;
        if (!strcmp(mode, "label")) m = RF_PREP_LABEL;
        else if (!strcmp(mode, "sleep")) m = RF_PREP_SLEEP;
        else if (!strcmp(mode, "events")) m = RF_PREP_EVENTS;
        else return rf_usage_error(C, "option --mode: expected label, sleep or events, got '%s'", mode);
        rf_prep_cfg_default(&cfg, m);
        if (channels && (cfg.n_channels = split_list(channels, cfg.channels, RF_PREP_MAX_CHANNELS)) < 0)
            return rf_usage_error(C, "option --channels: more than %d channels", RF_PREP_MAX_CHANNELS);
        if (codes && (cfg.n_codes = split_list(codes, cfg.codes, RF_PREP_MAX_CODES)) < 0)
            return rf_usage_error(C, "option --codes: more than %d codes", RF_PREP_MAX_CODES);
        if (hp >= 0) cfg.highpass = hp;
        if (lp >= 0) cfg.lowpass = lp;
        if (order > 0) cfg.order = order;
        if (notch >= 0) cfg.notch = notch;
        if (nq > 0) cfg.notch_q = nq;
        if (rate >= 0) cfg.rate = rate;
        if (win > 0) cfg.window_s = win;
        if (hop >= 0) cfg.hop_s = hop;
        if (pre >= 0) cfg.pre_s = pre;
        if (post >= 0) cfg.post_s = post;
        if (trim > -2) cfg.trim_wake_min = trim;
        if (norobust) cfg.robust = RF_STD_NONE;
        if (std_scope >= 0) cfg.robust = std_scope;
        if (cfg.robust == RF_STD_NONE && rz < 0) cfg.reject_absz = 0; /* a z threshold needs z units */
        if (rz >= 0) cfg.reject_absz = rz;
        if (rptp >= 0) cfg.reject_ptp = rptp;
    }
    cfg.strict_edf = cfg.strict_edf || strict;
    rf_prep_summary s;
    rc = rf_eeg_prepare(rec, &cfg, (const char *const *)fixed, nfixed, out, !quiet, &s, &e);
    rf_prep_cfg_free(&cfg);
    for (int i = 0; i < nfixed; i++) free(fixed[i]);
    free(fixed);
    if (rc) return rf_runtime_error(C, &e);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "out", out);
        cJSON_AddNumberToObject(j, "windows", (double)s.windows);
        cJSON_AddNumberToObject(j, "recordings", (double)s.recordings);
        cJSON_AddNumberToObject(j, "subjects", (double)s.subjects);
        cJSON_AddNumberToObject(j, "dropped_artefact", (double)s.dropped_artefact);
        cJSON_AddNumberToObject(j, "dropped_unlabelled", (double)s.dropped_unlabelled);
        cJSON_AddNumberToObject(j, "dropped_edge", (double)s.dropped_edge);
        cJSON_AddNumberToObject(j, "dropped_trimmed_wake", (double)s.dropped_trimmed_wake);
        rf_print_json(j);
    } else {
        printf("%s: %ld windows from %ld recordings of %ld subjects (dropped: %ld artefact, %ld unlabelled, %ld at the edges, %ld trimmed wake)\n",
               out, s.windows, s.recordings, s.subjects, s.dropped_artefact, s.dropped_unlabelled, s.dropped_edge, s.dropped_trimmed_wake);
    }
    return RF_EXIT_OK;
}

int rf_cli_eeg(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        FILE *fp = argc < 2 ? stderr : stdout;
        fputs("usage: renflow eeg prepare ...   (renflow eeg prepare --help)\n", fp);
        return argc < 2 ? RF_EXIT_USAGE : RF_EXIT_OK;
    }
    if (!strcmp(argv[1], "prepare")) return prepare(argc - 1, argv + 1);
    fprintf(stderr, "renflow eeg: unknown subcommand '%s' (expected prepare)\n", argv[1]);
    return RF_EXIT_USAGE;
}
