/* renflow features: input transforms of a data set that a model records and re-applies.
 *   - band power: each window (channels x samples at rate Hz) becomes log10 Welch band powers,
 *     channels x RF_BAND_COUNT features (delta, theta, alpha, sigma, beta, gamma; see dsp.h);
 *   - standardisation by subject: each subject's windows robustly standardised per channel;
 *   - context: row t of a recording becomes [x_{t-K}, ..., x_t, ..., x_{t+K}] (edge rows repeat
 *     the first/last row of their recording), for sequence data such as 30 s sleep epochs.
 * Neither uses labels. A model trained on transformed data stores the transform in its meta
 * ("input": {...}); rf_input_apply_meta re-applies it to new data (eval, explain). */
#ifndef RENFLOW_FEATURES_H
#define RENFLOW_FEATURES_H

#include "renflow/dataset.h"

struct cJSON;

typedef struct rf_input_tf {
    int std_subject; /* 1: first standardise each subject's windows (rf_dataset_standardise_subjects) */
    int bandpower;  /* 1: log10 band powers of each window */
    double rate;    /* sampling rate of the windows (Hz), for band power */
    double seg_s;   /* Welch segment length in seconds (0: min(2 s, window)) */
    int context;    /* K >= 0 neighbours on each side (0: none) */
    int std_subject_features; /* 1: after band power, standardise each subject's feature columns
                                 (rf_dataset_standardise_subject_columns) */
} rf_input_tf;

/* In place: d->x becomes n x (channels * RF_BAND_COUNT) log10 powers; d->channels = 0. */
int rf_dataset_bandpower(rf_dataset *d, double rate, double seg_s, rf_err *e);
/* In place: d->x becomes n x ((2K + 1) * d) stacked neighbours within each recording (needs
 * d->recordings, rows of a recording consecutive and in temporal order); d->channels = 0. */
int rf_dataset_context(rf_dataset *d, int K, rf_err *e);

/* In place: each subject's windows robustly standardised per channel (median, 1.4826 MAD over
 * all of that subject's samples; no labels). For windows that did not come from
 * `renflow eeg prepare --standardise subject` (e.g. simulated ones). */
int rf_dataset_standardise_subjects(rf_dataset *d, rf_err *e);

/* In place: each subject's rows standardised per column (mean and standard deviation over that
 * subject's rows; a constant column is only centred; no labels). The feature-space counterpart
 * of subject adaptation (renflow/adapt.h) for discriminative references. */
int rf_dataset_standardise_subject_columns(rf_dataset *d, rf_err *e);

/* Applies standardisation by subject, band power (rate from t->rate, else from the manifest's "rate_hz") then context;
 * fills in the rate and segment length it used, so that rf_input_to_json records them. */
int rf_input_apply(rf_dataset *d, rf_input_tf *t, rf_err *e);
/* JSON for a model's meta ("input"); NULL when the transform is the identity. */
struct cJSON *rf_input_to_json(const rf_input_tf *t);
/* Reads meta["input"] (absent: identity) and applies it; errors name the field. */
int rf_input_apply_meta(rf_dataset *d, const struct cJSON *meta, rf_err *e);

#endif
