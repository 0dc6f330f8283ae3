/* Per-dimension marginal histograms: data vs samples on shared bin edges. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "draw.h"
#include "renflow/viz.h"

#define PANEL_W 255.0
#define PANEL_H 200.0
#define OUTER 14.0
#define HGAP 14.0
#define VGAP 12.0
#define MAX_BINS 60

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Finite values of column j, sorted; returns how many. */
static int column_sorted(const rf_matrix *m, int j, double *buf) {
    int k = 0;
    for (int i = 0; i < m->n; i++) {
        double v = m->x[(size_t)i * m->d + j];
        if (isfinite(v)) buf[k++] = v;
    }
    qsort(buf, (size_t)k, sizeof *buf, cmp_double);
    return k;
}

static double quantile(const double *v, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    double f = pos - i;
    return v[i] + f * (v[i + 1] - v[i]);
}

/* Density histogram of column j over [lo, hi] in `bins` bins: count / (finite total * width). */
static void histogram(const rf_matrix *m, int j, double lo, double hi, int bins, double *h) {
    memset(h, 0, sizeof(double) * bins);
    int total = 0;
    double width = (hi - lo) / bins;
    for (int i = 0; i < m->n; i++) {
        double v = m->x[(size_t)i * m->d + j];
        if (!isfinite(v)) continue;
        total++;
        if (v < lo || v > hi) continue;
        int b = (int)((v - lo) / width);
        if (b >= bins) b = bins - 1;
        if (b < 0) b = 0;
        h[b] += 1;
    }
    for (int b = 0; b < bins; b++) h[b] = total > 0 ? h[b] / (total * width) : 0;
}

static int grid_cols(int k) {
    return k <= 4 ? k : k <= 6 ? 3 : k <= 12 ? 4 : k <= 25 ? 5 : 6;
}

static void draw_panel(cairo_t *cr, viz_axes *a, const double *hd, const double *hs, int bins,
                       double lo, double hi) {
    double width = (hi - lo) / bins;
    viz_axes_back(cr, a);
    viz_axes_clip(cr, a);
    /* data: filled bars */
    viz_set_rgb(cr, VIZ_BLUE, 0.38);
    for (int b = 0; b < bins; b++) {
        if (hd[b] <= 0) continue;
        double xl = viz_px(a, lo + b * width), xr = viz_px(a, lo + (b + 1) * width);
        double yt = viz_py(a, hd[b]), yb = viz_py(a, 0);
        cairo_rectangle(cr, xl, yt, xr - xl, yb - yt);
    }
    cairo_fill(cr);
    /* samples: a step outline */
    if (hs) {
        cairo_set_line_width(cr, 1.7);
        viz_set_rgb(cr, VIZ_ORANGE, 1);
        cairo_move_to(cr, viz_px(a, lo), viz_py(a, 0));
        for (int b = 0; b < bins; b++) {
            double yy = viz_py(a, hs[b]);
            cairo_line_to(cr, viz_px(a, lo + b * width), yy);
            cairo_line_to(cr, viz_px(a, lo + (b + 1) * width), yy);
        }
        cairo_line_to(cr, viz_px(a, hi), viz_py(a, 0));
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    viz_axes_front(cr, a);
}

int rf_plot_marginals(const char *path, const char *title, const rf_matrix *data,
                      const rf_matrix *samples, const char *const *names, int max_dims,
                      rf_err *e) {
    if (!path) return rf_err_set(e, RF_EARG, "plot: no output path");
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    if (!data || data->n < 1 || data->d < 1 || !data->x)
        return rf_err_set(e, RF_EARG, "%s: no data to plot", path);
    if (samples && samples->d != data->d)
        return rf_err_set(e, RF_EARG, "%s: the samples have %d columns but the data have %d",
                          path, samples->d, data->d);
    if (samples && samples->n > 0 && !samples->x)
        return rf_err_set(e, RF_EARG, "%s: the samples have no values", path);
    if (samples && samples->n < 1) samples = NULL;

    int k = max_dims <= 0 || max_dims > data->d ? data->d : max_dims;
    if (k > RF_VIZ_MAX_DIMS) k = RF_VIZ_MAX_DIMS;
    int cols = grid_cols(k), rows = (k + cols - 1) / cols;
    int bins = (int)lround(2.0 * cbrt((double)data->n));
    if (bins < 10) bins = 10;
    if (bins > MAX_BINS) bins = MAX_BINS;

    double *buf = malloc(sizeof(double) * (size_t)data->n);
    double *hist = malloc(sizeof(double) * 2 * (size_t)bins * k);
    double *range = malloc(sizeof(double) * 2 * (size_t)k);
    viz_axes *ax = malloc(sizeof(viz_axes) * (size_t)k);
    char(*label)[16] = malloc(sizeof(*label) * (size_t)k); /* default names */
    if (!buf || !hist || !range || !ax || !label) {
        free(buf);
        free(hist);
        free(range);
        free(ax);
        free(label);
        return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
    }

    /* histograms and axes ranges; range[2j] > range[2j+1] marks a column with no finite value */
    for (int j = 0; j < k; j++) {
        const char *name = names && names[j] && *names[j] ? names[j] : NULL;
        if (!name) {
            snprintf(label[j], sizeof label[j], "x%d", j + 1);
            name = label[j];
        }
        double *hd = hist + (size_t)2 * bins * j, *hs = hd + bins;
        int m = column_sorted(data, j, buf);
        if (m == 0) {
            range[2 * j] = 1;
            range[2 * j + 1] = 0;
            viz_axes_init(&ax[j], 0, 1, 0, 1);
        } else {
            double lo = quantile(buf, m, 0.005), hi = quantile(buf, m, 0.995);
            if (!(hi > lo)) {
                lo = buf[0];
                hi = buf[m - 1];
            }
            if (!(hi > lo)) {
                double d = fmax(0.5, 0.1 * fabs(lo));
                lo -= d;
                hi += d;
            }
            range[2 * j] = lo;
            range[2 * j + 1] = hi;
            histogram(data, j, lo, hi, bins, hd);
            if (samples) histogram(samples, j, lo, hi, bins, hs);
            double ymax = 0;
            for (int b = 0; b < bins; b++) {
                ymax = fmax(ymax, hd[b]);
                if (samples) ymax = fmax(ymax, hs[b]);
            }
            if (!(ymax > 0)) ymax = 1;
            viz_axes_init(&ax[j], lo, hi, 0, ymax * 1.08);
        }
        ax[j].title = name;
        ax[j].ylabel = j % cols == 0 ? "density" : NULL;
    }
    free(buf);

    /* layout: the same plot height everywhere, plot areas aligned within each column */
    cairo_t *mc = viz_scratch();
    double l, t, r, b, left[6] = {0, 0, 0, 0, 0, 0};
    viz_axes_margins(mc, &ax[0], PANEL_H, &l, &t, &r, &b);
    double ph = PANEL_H - t - b;
    for (int j = 0; j < k; j++) {
        viz_axes_margins(mc, &ax[j], ph, &l, &t, &r, &b);
        left[j % cols] = fmax(left[j % cols], l);
    }
    double top = viz_title_height(mc, title);
    cairo_destroy(mc);
    double fig_w = 2 * OUTER + cols * PANEL_W + (cols - 1) * HGAP;
    double legend_h = 26;
    double fig_h = top + legend_h + rows * PANEL_H + (rows - 1) * VGAP + 12;

    viz_fig fig;
    rc = viz_fig_open(&fig, path, fig_w, fig_h, e);
    if (rc != RF_OK) {
        free(hist);
        free(range);
        free(ax);
        free(label);
        return rc;
    }
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    viz_key keys[2] = {{"data", VIZ_BLUE, VIZ_KEY_BOX, 0.38, 0},
                       {"samples", VIZ_ORANGE, VIZ_KEY_LINE, 1, 0}};
    viz_legend_row(cr, keys, samples ? 2 : 1, fig_w / 2, top + 4);
    top += legend_h;

    for (int j = 0; j < k; j++) {
        int row = j / cols, c = j % cols;
        double bx = OUTER + c * (PANEL_W + HGAP), by = top + row * (PANEL_H + VGAP);
        viz_axes *a = &ax[j];
        viz_axes_place(cr, a, bx + left[c], by + t, PANEL_W - left[c] - r, ph);
        double lo = range[2 * j], hi = range[2 * j + 1];
        if (!(hi > lo)) {
            viz_axes_back(cr, a);
            viz_axes_front(cr, a);
            viz_font(cr, VIZ_FS_LABEL, 0);
            viz_set_rgb(cr, VIZ_MUTED, 1);
            viz_text(cr, a->x + a->w / 2, a->y + a->h / 2, "no finite values", VIZ_HCENTER,
                     VIZ_VMIDDLE, 0);
            continue;
        }
        const double *hd = hist + (size_t)2 * bins * j;
        draw_panel(cr, a, hd, samples ? hd + bins : NULL, bins, lo, hi);
    }
    free(hist);
    free(range);
    free(ax);
    free(label);
    return viz_fig_close(&fig, e);
}
