/* Subject-adaptive latent normalisation: test-time adaptation to a new subject without labels.
 *
 * EEG statistics move from subject to subject (skull, electrode impedance, individual alpha
 * power), and a classifier fitted on some subjects meets another subject's latents shifted and
 * scaled. With adaptation, every subject s is mapped onto a reference subject in the latent
 * space. For a latent group g (the dimensions that share one class mean and scale: a latent
 * channel of one scale for a tsflow tied over time, else a single dimension), let m_sg and s_sg be
 * the mean and standard deviation of the subject's latents z = f(x) over all its rows and the
 * group's dimensions. The adapted latent is
 *
 *     z'_j = mref_g + exp(lref_g) * (z_j - m_sg) / s_sg,      j in g,
 *
 * an affine map per subject, so log p(x | y, s) = log N(z'; class y) + log|det df/dx| +
 * sum_j (lref_g(j) - log s_s,g(j)) is an exact density of x given the subject's statistics. The
 * reference (mref, lref) is the average of the training subjects' statistics, stored in the
 * model; the class Gaussians are refitted to the moments of the adapted training latents.
 *
 * The statistics use no labels, but they use all of a subject's rows at once: results assume
 * that each subject contributes rows of every class in similar proportions (true of eegmat: one
 * rest and one task recording per subject). A model without adaptation behaves as before; an
 * adapted model applied without subject ids treats every row as coming from the reference
 * subject (its class Gaussians live in the reference subject's latent space). */
#ifndef RENFLOW_ADAPT_H
#define RENFLOW_ADAPT_H

#include "renflow/data.h"
#include "renflow/model.h"

/* Latent groups of the adaptation: the base's groups when tied, else D. */
int rf_adapt_n_groups(const rf_flow *f);

/* Fits the adaptation of a trained class-conditional flow on its training rows: per-subject
 * latent statistics, their average as the reference, and the class Gaussians refitted on the
 * adapted latents (overwriting the trained class means and scales). Every subject needs at
 * least 2 rows. Replaces an earlier adaptation. */
int rf_adapt_fit(rf_flow *f, const rf_matrix *x, const int *labels, const int *subjects, rf_err *e);

/* The same with a choice of reference: standard = 1 maps every subject to zero mean and unit
 * scale per group (the reference of training with adaptation in the loop, where the class
 * Gaussians live in that space) instead of the training subjects' average; refit_classes = 0
 * keeps the class Gaussians as they are. */
int rf_adapt_fit_ex(rf_flow *f, const rf_matrix *x, const int *labels, const int *subjects, int standard,
                    int refit_classes, rf_err *e);

/* Moves an adapted model's reference to (mean, log_scale) (G each) and re-expresses its class
 * Gaussians there (mu' = mean + e^(log_scale - lref) (mu - mref), log sigma' = log sigma +
 * log_scale - lref): every log p(x | c, subject) is unchanged; only the space in which the class
 * Gaussians are written (and sampled without a subject) moves. */
int rf_adapt_rereference(rf_flow *f, const float *mean, const float *log_scale, rf_err *e);
/* The same with the average statistics of the subjects of x as the new reference (after
 * training with adaptation in the loop, so that sampling and explanations without a subject use
 * a typical training subject rather than the standard one). */
int rf_adapt_reference_to_average(rf_flow *f, const rf_matrix *x, const int *subjects, rf_err *e);

/* Per-subject maps for training with adaptation (rf_flow_ws_set_latent_affine): for the rows of
 * x and the model's current parameters and reference (f->adapt_mean / adapt_log_scale),
 * row_s[i] is row i's subject index and a, b, ld (S x G, S x G, S) the maps onto the reference. */
typedef struct rf_adapt_tables {
    int S, G;
    int *row_s;
    float *a, *b, *ld;
} rf_adapt_tables;
int rf_adapt_tables_compute(const rf_flow *f, const rf_matrix *x, const int *subjects, rf_adapt_tables *t,
                            rf_err *e);
void rf_adapt_tables_free(rf_adapt_tables *t);

/* For an adapted class-conditional model: logpc[i * C + c] = log p(x_i | c, subject_i) and, when
 * logpx is not NULL, logpx[i] = log p(x_i | subject_i) with uniform classes. The subjects'
 * statistics come from the rows of x (each subject needs at least 2). */
int rf_adapt_log_likelihood(const rf_flow *f, const rf_matrix *x, const int *subjects, float *logpc,
                            float *logpx, rf_err *e);

/* rf_flow_predict with per-subject adaptation when the model has it (subjects required then);
 * plain rf_flow_predict otherwise (subjects may be NULL). post (n x C, may be NULL) receives
 * log p(c | x). */
int rf_flow_predict_subjects(const rf_flow *f, const rf_matrix *x, const int *subjects, const float *log_prior,
                             int *pred, float *post, rf_err *e);

/* Mean negative log-likelihood (nats per row) with adaptation: of log p(x_i | y_i, subject_i)
 * with labels, else of log p(x_i | subject_i) with uniform classes; per_row (may be NULL)
 * receives the per-row values. NAN with an error on failure. */
double rf_adapt_nll(const rf_flow *f, const rf_matrix *x, const int *labels, const int *subjects, float *per_row,
                    rf_err *e);

#endif
