/* renflow hmm: temporal smoothing of per-epoch class scores with a first-order Markov chain
 * over the labels (e.g. sleep stages), as in a hidden Markov model whose emission model is a
 * class-conditional flow: p(x_t | y_t) from the flow, p(y_t | y_{t-1}) estimated from the
 * training hypnograms, posteriors p(y_t | x_1..T) by forward-backward. */
#ifndef RENFLOW_HMM_H
#define RENFLOW_HMM_H

#include "renflow/core.h"

typedef struct rf_hmm {
    int C;
    double *log_pi; /* C: initial-state log probabilities */
    double *log_A;  /* C x C: log p(next = k | current = c) at [c*C + k] */
} rf_hmm;
void rf_hmm_free(rf_hmm *h);
/* Counts transitions between consecutive rows of the same sequence (seq[i] == seq[i-1]) with
 * add-alpha smoothing. Rows must be in temporal order within each sequence. */
int rf_hmm_fit(const int *labels, const int *seq, int n, int C, double alpha, rf_hmm *h, rf_err *e);
/* Forward-backward per sequence. loglik (n x C) holds log p(x_t | c) up to a per-row constant,
 * scaled by `weight` (emission temperature 1/weight, 1 = exact HMM). post (n x C) receives
 * log p(y_t = c | x of the whole sequence). */
int rf_hmm_posterior(const rf_hmm *h, const float *loglik, const int *seq, int n, double weight,
                     float *post, rf_err *e);

#endif
