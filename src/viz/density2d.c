/* 2-D flows: data scatter | model density heat map | samples scatter, on the same axes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "draw.h"
#include "renflow/viz.h"

#define GRID 200
#define BATCH 1024
#define FIG_W 1150.0
#define PLOT_MAX 330.0
#define OUTER 14.0
#define GAP 26.0
#define CBAR_W 12.0
#define CBAR_GAP 12.0

/* lp[r * GRID + c] = log p at the centre of cell (c, r); row 0 is the top (y1). *lmax is the
 * largest finite value (-INFINITY when there is none). */
static int grid_log_density(const rf_flow *f, double x0, double x1, double y0, double y1,
                            double *lpg, double *lmax, rf_err *e) {
    rf_flow_ws *w = rf_flow_ws_create(f, BATCH, 1, e);
    if (!w) return e ? e->code : RF_ENOMEM;
    float *xy = malloc(sizeof(float) * 2 * BATCH);
    float *lp = malloc(sizeof(float) * BATCH);
    if (!xy || !lp) {
        free(xy);
        free(lp);
        rf_flow_ws_free(w);
        return rf_err_set(e, RF_ENOMEM, "out of memory for the density grid");
    }
    double dx = (x1 - x0) / GRID, dy = (y1 - y0) / GRID;
    *lmax = -INFINITY;
    for (int k0 = 0; k0 < GRID * GRID; k0 += BATCH) {
        int m = GRID * GRID - k0 < BATCH ? GRID * GRID - k0 : BATCH;
        for (int j = 0; j < m; j++) {
            int r = (k0 + j) / GRID, c = (k0 + j) % GRID;
            xy[2 * j] = (float)(x0 + (c + 0.5) * dx);
            xy[2 * j + 1] = (float)(y1 - (r + 0.5) * dy);
        }
        rf_flow_log_prob(f, w, m, xy, NULL, lp);
        for (int j = 0; j < m; j++) {
            double v = isfinite(lp[j]) ? (double)lp[j] : -INFINITY;
            lpg[k0 + j] = v;
            if (v > *lmax) *lmax = v;
        }
    }
    free(xy);
    free(lp);
    rf_flow_ws_free(w);
    return RF_OK;
}

/* The density grid as an opaque image: colour exp(log p - lmax), i.e. density / max density,
 * computed in the log domain so that tiny densities do not underflow. */
static cairo_surface_t *density_image(const double *lpg, double lmax) {
    cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, GRID, GRID);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) return img;
    cairo_surface_flush(img);
    unsigned char *px = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    for (int r = 0; r < GRID; r++) {
        uint32_t *row = (uint32_t *)(void *)(px + (size_t)r * stride);
        for (int c = 0; c < GRID; c++) {
            double l = lpg[r * GRID + c];
            viz_rgb v = viz_cmap(isfinite(lmax) && l > -INFINITY ? exp(l - lmax) : 0);
            uint32_t R = (uint32_t)lround(v.r * 255), G = (uint32_t)lround(v.g * 255),
                     B = (uint32_t)lround(v.b * 255);
            row[c] = 0xFF000000u | R << 16 | G << 8 | B;
        }
    }
    cairo_surface_mark_dirty(img);
    return img;
}

static int check_xy(const char *path, const rf_matrix *m, const char *what, rf_err *e) {
    if (m->d != 2)
        return rf_err_set(e, RF_EARG, "%s: %s must have 2 columns (got %d)", path, what, m->d);
    if (m->n > 0 && !m->x) return rf_err_set(e, RF_EARG, "%s: %s has no values", path, what);
    return RF_OK;
}

int rf_plot_density2d(const char *path, const char *title, const rf_flow *f,
                      const rf_matrix *data, const rf_matrix *samples, rf_err *e) {
    if (!path) return rf_err_set(e, RF_EARG, "plot: no output path");
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    if (!f) return rf_err_set(e, RF_EARG, "%s: no flow given", path);
    if (f->D != 2)
        return rf_err_set(e, RF_EARG,
                          "%s: the density plot needs a 2-D flow (this flow has D = %d); use the "
                          "marginals plot instead",
                          path, f->D);
    if (!data || data->n < 1) return rf_err_set(e, RF_EARG, "%s: no data to plot", path);
    if ((rc = check_xy(path, data, "the data", e)) != RF_OK) return rc;
    if (samples && (rc = check_xy(path, samples, "the samples", e)) != RF_OK) return rc;

    double x0, x1, y0, y1;
    if (!viz_col_range(data, 0, &x0, &x1) || !viz_col_range(data, 1, &y0, &y1))
        return rf_err_set(e, RF_ENONFINITE, "%s: the data have no finite values", path);
    if (!(x1 > x0)) {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if (!(y1 > y0)) {
        y0 -= 0.5;
        y1 += 0.5;
    }
    double mx = 0.1 * (x1 - x0), my = 0.1 * (y1 - y0);
    x0 -= mx;
    x1 += mx;
    y0 -= my;
    y1 += my;

    double *lpg = malloc(sizeof(double) * GRID * GRID);
    if (!lpg) return rf_err_set(e, RF_ENOMEM, "%s: out of memory for the density grid", path);
    double lmax = -INFINITY;
    rc = grid_log_density(f, x0, x1, y0, y1, lpg, &lmax, e);
    if (rc != RF_OK) {
        free(lpg);
        return rf_err_prefix(e, rc, "%s", path);
    }
    cairo_surface_t *img = density_image(lpg, lmax);
    free(lpg);
    if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(img);
        return rf_err_set(e, RF_ENOMEM, "%s: out of memory for the density image", path);
    }
    /* colour bar in density units when the peak density is a normal double; relative otherwise */
    double vmax = isfinite(lmax) ? exp(lmax) : 0;
    int relative = !(vmax >= 1e-300 && isfinite(vmax));
    double cbmax = relative ? 1.0 : vmax;
    const char *cblabel = relative ? "density / max" : "density";

    char ta[64], tc[64];
    snprintf(ta, sizeof ta, "Data (n = %d)", data->n);
    if (samples)
        snprintf(tc, sizeof tc, "Samples (n = %d)", samples->n);
    else
        snprintf(tc, sizeof tc, "Samples");
    viz_axes a[3];
    const char *titles[3] = {ta, "Model density", tc};
    for (int p = 0; p < 3; p++) {
        viz_axes_init(&a[p], x0, x1, y0, y1);
        a[p].title = titles[p];
        a[p].xlabel = "x1";
        a[p].ylabel = p == 0 ? "x2" : NULL;
        a[p].hide_ytick_labels = p > 0;
    }

    /* layout, measured before the figure exists so its height fits: the plot side S is set by
     * the width (three squares, the colour bar, margins), at most PLOT_MAX */
    cairo_t *m = viz_scratch();
    double top = viz_title_height(m, title);
    double la, tt, ra, ba, lb, tb, rb, bb, S = PLOT_MAX;
    double cbw = CBAR_GAP + viz_colorbar_width(m, CBAR_W, 0, cbmax, cblabel);
    for (int pass = 0; pass < 2; pass++) { /* the tick labels depend on S, S on their width */
        viz_axes_margins(m, &a[0], S, &la, &tt, &ra, &ba);
        viz_axes_margins(m, &a[1], S, &lb, &tb, &rb, &bb);
        S = floor(fmin(PLOT_MAX, (FIG_W - 2 * OUTER - la - 2 * lb - 2 * GAP - cbw - ra) / 3));
    }
    cairo_destroy(m);
    double used = la + S + GAP + lb + S + cbw + GAP + lb + S + ra;
    double fig_h = ceil(top + tt + S + ba + OUTER);

    viz_fig fig;
    rc = viz_fig_open(&fig, path, FIG_W, fig_h, e);
    if (rc != RF_OK) {
        cairo_surface_destroy(img);
        return rc;
    }
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    double x = (FIG_W - used) / 2 + la, y = top + tt;
    viz_axes_place(cr, &a[0], x, y, S, S);
    x += S + GAP + lb;
    viz_axes_place(cr, &a[1], x, y, S, S);
    x += S + cbw + GAP + lb;
    viz_axes_place(cr, &a[2], x, y, S, S);

    /* (a) data */
    viz_axes_back(cr, &a[0]);
    viz_scatter(cr, &a[0], data, 0, 1, VIZ_BLUE, 1.6, viz_scatter_alpha(data->n));
    viz_axes_front(cr, &a[0]);

    /* (b) density */
    viz_axes_clip(cr, &a[1]);
    cairo_translate(cr, a[1].x, a[1].y);
    cairo_scale(cr, a[1].w / GRID, a[1].h / GRID);
    cairo_set_source_surface(cr, img, 0, 0);
    cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_BILINEAR);
    cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
    cairo_paint(cr);
    cairo_restore(cr);
    viz_axes_front(cr, &a[1]);
    viz_colorbar(cr, a[1].x + a[1].w + CBAR_GAP, a[1].y, CBAR_W, a[1].h, 0, cbmax, cblabel);
    if (!isfinite(lmax)) {
        viz_font(cr, VIZ_FS_LABEL, 0);
        cairo_set_source_rgb(cr, 1, 1, 1);
        viz_text(cr, a[1].x + a[1].w / 2, a[1].y + a[1].h / 2, "log p is not finite here",
                 VIZ_HCENTER, VIZ_VMIDDLE, 0);
    }

    /* (c) samples */
    viz_axes_back(cr, &a[2]);
    if (samples && samples->n > 0) {
        viz_scatter(cr, &a[2], samples, 0, 1, VIZ_ORANGE, 1.6, viz_scatter_alpha(samples->n));
    } else {
        viz_font(cr, VIZ_FS_LABEL, 0);
        viz_set_rgb(cr, VIZ_MUTED, 1);
        viz_text(cr, a[2].x + a[2].w / 2, a[2].y + a[2].h / 2, "no samples", VIZ_HCENTER,
                 VIZ_VMIDDLE, 0);
    }
    viz_axes_front(cr, &a[2]);

    cairo_surface_destroy(img);
    return viz_fig_close(&fig, e);
}
