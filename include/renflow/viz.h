/* renflow viz: diagnostic figures drawn with cairo.
 *
 * The output format follows the path's extension (case-insensitive): .svg, .png or .pdf; any
 * other extension is an RF_EARG error naming the path. Files are written atomically: the figure
 * is rendered to "<path>.tmp.<pid>" next to the target and renamed over it; on any failure the
 * temporary file is removed and the target is left untouched. PNG files are rendered at twice
 * the nominal size (the figure sizes below are in points / CSS pixels) so they stay sharp.
 *
 * Scatter panels draw at most RF_VIZ_MAX_POINTS points per matrix (an even stride through the
 * rows when there are more), which keeps vector files small. Non-finite values are skipped. */
#ifndef RENFLOW_VIZ_H
#define RENFLOW_VIZ_H

#include "renflow/core.h"
#include "renflow/data.h"
#include "renflow/model.h"

#define RF_VIZ_MAX_POINTS 5000
#define RF_VIZ_MAX_DIMS 64

/* Training curves: epoch (1..n) on the x axis, the training loss and, when val is non-NULL,
 * the validation loss, with a marker at the best (lowest) validation epoch. title and ylabel
 * may be NULL (ylabel defaults to "loss"). n >= 1. */
int rf_plot_curves(const char *path, const char *title, const double *train, const double *val,
                   int n, const char *ylabel, rf_err *e);

/* For 2-D flows (f->D == 2): three panels on the same axes — (a) the data as a scatter,
 * (b) the model density exp(log p(x)) on a 200 x 200 grid covering the data range plus a 10%
 * margin, with a colour bar, (c) the samples as a scatter. data must be n x 2 with n >= 1;
 * samples (n x 2) may be NULL, leaving panel (c) empty. title may be NULL. */
int rf_plot_density2d(const char *path, const char *title, const rf_flow *f,
                      const rf_matrix *data, const rf_matrix *samples, rf_err *e);

/* Per-dimension histograms for the first max_dims dimensions (max_dims <= 0: all of them; never
 * more than RF_VIZ_MAX_DIMS),
 * data and samples overlaid as densities on shared bin edges spanning the data's 0.5% .. 99.5%
 * quantiles of each dimension (values outside are not counted). samples may be NULL; when given
 * it must have as many columns as data. names (may be NULL, as may any entry; otherwise at least
 * as many entries as dimensions plotted) labels the dimensions, default "x1", "x2", ...
 * title may be NULL. */
int rf_plot_marginals(const char *path, const char *title, const rf_matrix *data,
                      const rf_matrix *samples, const char *const *names, int max_dims,
                      rf_err *e);

#endif
