/* renflow ref: reference models for comparison: full-covariance Gaussian density, and
 * discriminative classifiers (multinomial logistic regression, MLP) trained by softmax
 * cross-entropy. */
#ifndef RENFLOW_REF_H
#define RENFLOW_REF_H

#include <stdint.h>

#include "renflow/data.h"

typedef struct rf_gauss {
    int D;
    double *mean; /* D */
    double *chol; /* D x D lower Cholesky factor of the covariance */
    double logdet_cov;
} rf_gauss;

/* Maximum-likelihood fit (covariance + ridge * I for numerical safety). */
int rf_gauss_fit(const rf_matrix *m, double ridge, rf_gauss *g, rf_err *e);
/* Mean negative log-likelihood in nats per example; per_sample (may be NULL) gets log p. */
double rf_gauss_nll(const rf_gauss *g, const rf_matrix *m, double *per_sample);
void rf_gauss_free(rf_gauss *g);

/* ---- discriminative classifiers ----
 * Inputs are z-scored with statistics of the training rows (never labels). n_hidden = 0 is
 * multinomial logistic regression with L2 penalty weight_decay; n_hidden >= 1 an MLP.
 * Mini-batch AdamW; the epoch with the lowest validation cross-entropy is kept. */
typedef struct rf_disc_cfg {
    int n_hidden, hidden;
    int act;             /* rf_act */
    float lr, weight_decay;
    int epochs, batch, patience;
    int class_balanced;  /* weight each class's loss by n / (C * n_c) */
    uint64_t seed;
} rf_disc_cfg;
void rf_disc_cfg_default(rf_disc_cfg *c);
typedef struct rf_disc rf_disc;
/* val may be NULL (then the last epoch is kept). */
rf_disc *rf_disc_train(const rf_matrix *x, const int *y, int n_classes, const rf_matrix *val,
                       const int *yval, const rf_disc_cfg *cfg, rf_err *e);
/* pred[i] = argmax; proba (n x C, may be NULL) = softmax probabilities. */
int rf_disc_predict(const rf_disc *m, const rf_matrix *x, int *pred, float *proba, rf_err *e);
void rf_disc_free(rf_disc *m);

#endif
