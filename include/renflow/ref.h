/* renflow ref: reference density models for comparison (full-covariance Gaussian). */
#ifndef RENFLOW_REF_H
#define RENFLOW_REF_H

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

#endif
