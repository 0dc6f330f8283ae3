/* renflow eegprep: EDF recordings -> filtered, resampled, standardised, artefact-checked windows
 * with labels and subject ids, cached as a data set directory (`renflow eeg prepare`):
 *   DIR/windows.npy     N x channels x samples, float32
 *   DIR/labels.npy      N int32 class index (class names in the manifest)
 *   DIR/subjects.npy    N int32 subject index (subject names in the manifest)
 *   DIR/recordings.npy  N int32 recording index (rows of a recording in temporal order)
 *   DIR/manifest.json   every setting, channels, rates, classes, subjects, recordings, and the
 *                       counts of dropped windows per reason.
 * The recordings list is a CSV with a header and columns file,subject,label[,hypnogram]; paths
 * are relative to the CSV's directory. Labels come from the `label` column (one class per
 * recording), from a Sleep-EDF hypnogram (`hypnogram` column, 30 s epochs), or from EDF+ event
 * annotations (mode "events": codes -> classes, event-locked windows). */
#ifndef RENFLOW_EEGPREP_H
#define RENFLOW_EEGPREP_H

#include "renflow/core.h"

struct cJSON;

typedef enum { RF_PREP_LABEL = 0, RF_PREP_SLEEP = 1, RF_PREP_EVENTS = 2 } rf_prep_mode;
typedef enum { RF_STD_NONE = 0, RF_STD_RECORDING = 1, RF_STD_SUBJECT = 2 } rf_std_scope;
const char *rf_std_scope_name(int scope);
int rf_std_scope_parse(const char *s, int *scope); /* "none" | "recording" | "subject" */

#define RF_PREP_MAX_CHANNELS 256
#define RF_PREP_MAX_CODES 16

typedef struct rf_prep_cfg {
    rf_prep_mode mode;
    int n_channels;            /* 0: every data channel of the first recording except the
                                  non-EEG ones (ECG, EOG, EMG, annotations, ...) */
    char *channels[RF_PREP_MAX_CHANNELS];
    double highpass, lowpass;  /* Hz; 0 = off */
    int order;                 /* Butterworth order */
    double notch, notch_q;     /* Hz (0 = off), quality */
    double rate;               /* target rate, Hz (0 = keep the recording's) */
    double window_s, hop_s;    /* label mode: window length and hop (hop 0 = window) */
    double pre_s, post_s;      /* events mode: window = [onset - pre, onset + post) */
    int n_codes;               /* events mode: annotation texts that become classes */
    char *codes[RF_PREP_MAX_CODES];
    double trim_wake_min;      /* sleep: keep at most this many minutes of wake before the first
                                  and after the last sleep epoch (< 0: keep all) */
    int robust;                /* robust standardisation (median, 1.4826 MAD per channel, no
                                  labels involved): RF_STD_NONE, RF_STD_RECORDING (each
                                  recording on its own) or RF_STD_SUBJECT (statistics pooled
                                  over all recordings of a subject, so level differences
                                  between a subject's recordings survive) */
    double reject_absz;        /* drop windows with |z| above this in any channel (0 = off;
                                  on standardised data) */
    double reject_ptp;         /* drop windows whose peak-to-peak exceeds this (0 = off) */
    int strict_edf;            /* 1: a truncated EDF is an error; 0: use its complete records */
} rf_prep_cfg;
void rf_prep_cfg_default(rf_prep_cfg *c, rf_prep_mode mode);
void rf_prep_cfg_free(rf_prep_cfg *c); /* frees the channel and code strings */
struct cJSON *rf_prep_cfg_to_json(const rf_prep_cfg *c);
/* Settings of an earlier manifest (`--like`): the exact same preprocessing. */
int rf_prep_cfg_from_manifest(const char *manifest_path, rf_prep_cfg *c, char ***class_names,
                              int *n_classes, rf_err *e);

typedef struct rf_prep_summary {
    long windows, recordings, subjects;
    long dropped_artefact, dropped_unlabelled, dropped_edge, dropped_trimmed_wake;
} rf_prep_summary;

/* Runs the whole preparation and writes out_dir atomically (built in a temporary directory
 * beside it, then renamed). fixed_classes (may be NULL) fixes the class order (for --like);
 * warn (may be NULL) receives warnings such as truncated files. progress: lines on stderr. */
int rf_eeg_prepare(const char *list_csv, const rf_prep_cfg *cfg, const char *const *fixed_classes,
                   int n_fixed_classes, const char *out_dir, int progress, rf_prep_summary *sum,
                   rf_err *e);

#endif
