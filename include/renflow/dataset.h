/* renflow dataset: labelled windows with subject ids (the cached output of `renflow eeg
 * prepare`), and subject-wise splits: a subject's windows never straddle two parts. */
#ifndef RENFLOW_DATASET_H
#define RENFLOW_DATASET_H

#include "renflow/core.h"
#include "renflow/data.h"

struct cJSON;

typedef struct rf_dataset {
    rf_matrix x;      /* n x (channels * length), each row a channel-major window */
    int *labels;      /* n, may be NULL */
    int *subjects;    /* n, may be NULL */
    int *recordings;  /* n, may be NULL: recording id; rows of a recording are consecutive and in
                         temporal order (used by sequence models such as the sleep-stage HMM) */
    int channels;     /* 0 when the rows are plain feature vectors */
    int length;       /* samples per channel */
    int n_classes;    /* from the manifest, else max label + 1 */
    char **class_names; /* n_classes names (may be NULL) */
    struct cJSON *manifest; /* the parsed manifest.json (owned), NULL for plain arrays */
} rf_dataset;
void rf_dataset_free(rf_dataset *d);

/* 1 when path is a directory holding a prepared data set (manifest.json). */
int rf_is_dataset_dir(const char *path);
/* Reads DIR/windows.npy (N x C x T or N x D, float32/64), DIR/labels.npy, DIR/subjects.npy and
 * DIR/manifest.json, checking that they agree. */
int rf_dataset_read_dir(const char *dir, rf_dataset *d, rf_err *e);
/* A data set from a plain array file plus optional label and subject files. */
int rf_dataset_read_arrays(const char *data, const char *labels, const char *subjects, rf_dataset *d,
                           rf_err *e);
/* Either of the above: a directory, or an array file with optional label/subject files
 * (which, given for a directory, replace its own). */
int rf_dataset_read(const char *path, const char *labels, const char *subjects, rf_dataset *d,
                    rf_err *e);
/* Reads recording ids (.npy/.csv) for d's rows. */
int rf_dataset_set_recordings(rf_dataset *d, const char *path, rf_err *e);
/* Copies the rows with keep[i] != 0 into out (labels and subjects follow; metadata copied). */
int rf_dataset_select(const rf_dataset *d, const unsigned char *keep, rf_dataset *out, rf_err *e);

/* Distinct subject ids in ascending order (malloc'd). */
int rf_subjects_unique(const int *subjects, int n, int **ids, int *n_ids, rf_err *e);
/* Assigns every subject to one of k folds (seeded shuffle of the distinct ids, then round robin,
 * so fold sizes differ by at most one subject); fold_of_row[i] is row i's fold. k is clamped to
 * the number of subjects; *k_used receives it. */
int rf_subject_folds(const int *subjects, int n, int k, uint64_t seed, int *fold_of_row, int *k_used,
                     rf_err *e);
/* Seeded subject-wise hold-out: about frac of the subjects (at least one, never all) go to the
 * second part; keep_a[i] = 1 for rows of the first part. */
int rf_subject_holdout(const int *subjects, int n, double frac, uint64_t seed, unsigned char *keep_a,
                       rf_err *e);

#endif
