/* renflow metrics: classification quality from a confusion matrix (accuracy, balanced
 * accuracy, macro-F1, Cohen's kappa), and prediction with a class-conditional flow. */
#ifndef RENFLOW_METRICS_H
#define RENFLOW_METRICS_H

#include <stdio.h>

#include "renflow/core.h"
#include "renflow/data.h"
#include "renflow/model.h"

typedef struct rf_class_metrics {
    int n_classes;
    long n;                /* examples counted */
    long *confusion;       /* n_classes x n_classes, row = true class, column = predicted */
    double accuracy;
    double balanced_accuracy; /* mean recall over classes present in the truth */
    double macro_f1;          /* mean F1 over classes present in truth or prediction */
    double kappa;             /* Cohen's kappa */
    double *recall, *precision, *f1; /* per class (NaN where undefined) */
} rf_class_metrics;

/* Computes every metric from true and predicted labels in [0, n_classes). */
int rf_class_metrics_compute(const int *truth, const int *pred, int n, int n_classes,
                             rf_class_metrics *m, rf_err *e);
void rf_class_metrics_free(rf_class_metrics *m);
/* JSON object: accuracy, balanced_accuracy, macro_f1, kappa, confusion (rows = truth),
 * per_class {recall, precision, f1}; class_names may be NULL. */
struct cJSON *rf_class_metrics_to_json(const rf_class_metrics *m, const char *const *class_names);

/* pred[i] = argmax_c (s[i*C + c] + add[c]) (add may be NULL); NaN scores never win. */
void rf_argmax_rows(const float *s, const float *add, int n, int C, int *pred);

/* Predicts argmax_c p(c | x) for every row with a class-conditional flow; log_prior (C values)
 * may be NULL (uniform). post (n x C, may be NULL) receives log p(c | x). */
int rf_flow_predict(const rf_flow *f, const rf_matrix *x, const float *log_prior, int *pred,
                    float *post, rf_err *e);

/* Class counts of the training data as recorded by training in f->meta ("class_counts"), as
 * log frequencies (C floats, malloc'd; add-one smoothing). NULL + error when not recorded. */
float *rf_flow_train_log_prior(const rf_flow *f, rf_err *e);
/* Human-readable summary: the four scores and the confusion matrix. */
void rf_class_metrics_print(FILE *fp, const rf_class_metrics *m, const char *const *class_names);

#endif
