/* Training curves: training and validation loss per epoch. */
#include <math.h>
#include <stdio.h>

#include "draw.h"
#include "renflow/viz.h"

#define CURVES_W 760.0
#define CURVES_H 470.0

/* Draws one series as a polyline, broken where values are not finite; isolated points and
 * (for short runs) every point get a marker. */
static void draw_series(cairo_t *cr, const viz_axes *a, const double *y, int n, viz_rgb c) {
    cairo_set_line_width(cr, 1.8);
    viz_set_rgb(cr, c, 1);
    int pen = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            pen = 0;
            continue;
        }
        double px = viz_px(a, i + 1), py = viz_py(a, y[i]);
        if (pen)
            cairo_line_to(cr, px, py);
        else
            cairo_move_to(cr, px, py);
        pen = 1;
    }
    cairo_stroke(cr);
    double r = n <= 40 ? 2.6 : 1.8;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) continue;
        int isolated = (i == 0 || !isfinite(y[i - 1])) && (i == n - 1 || !isfinite(y[i + 1]));
        if (n > 40 && !isolated) continue;
        cairo_arc(cr, viz_px(a, i + 1), viz_py(a, y[i]), r, 0, 2 * M_PI);
        cairo_fill(cr);
    }
}

/* How much of the curves a w x h box at (x, y) would cover (sampled along the segments). */
static int covered(const viz_axes *a, const double *y, int n, double bx, double by, double bw,
                   double bh) {
    int hits = 0;
    for (int i = 0; y && i < n; i++) {
        if (!isfinite(y[i])) continue;
        int steps = (i + 1 < n && isfinite(y[i + 1])) ? 12 : 1;
        for (int s = 0; s < steps; s++) {
            double t = (double)s / steps;
            double v = steps > 1 ? y[i] + t * (y[i + 1] - y[i]) : y[i];
            double px = viz_px(a, i + 1 + t), py = viz_py(a, v);
            if (px >= bx - 4 && px <= bx + bw + 4 && py >= by - 4 && py <= by + bh + 4) hits++;
        }
    }
    return hits;
}

int rf_plot_curves(const char *path, const char *title, const double *train, const double *val,
                   int n, const char *ylabel, rf_err *e) {
    if (!path) return rf_err_set(e, RF_EARG, "plot: no output path");
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    if (!train || n < 1)
        return rf_err_set(e, RF_EARG, "%s: no training curve to plot (%d epochs)", path, n);

    double lo = 0, hi = 0;
    int any = 0, best = -1;
    for (int s = 0; s < 2; s++) {
        const double *y = s == 0 ? train : val;
        for (int i = 0; y && i < n; i++) {
            if (!isfinite(y[i])) continue;
            if (!any || y[i] < lo) lo = y[i];
            if (!any || y[i] > hi) hi = y[i];
            any = 1;
            if (s == 1 && (best < 0 || y[i] < val[best])) best = i;
        }
    }
    if (!any) {
        lo = 0;
        hi = 1;
    }
    double ypad = 0.06 * (hi - lo);
    double xpad = n > 1 ? 0.02 * (n - 1) : 0.5;

    viz_fig fig;
    rc = viz_fig_open(&fig, path, CURVES_W, CURVES_H, e);
    if (rc != RF_OK) return rc;
    cairo_t *cr = fig.cr;
    double top = viz_fig_title(&fig, title);

    viz_axes a;
    viz_axes_init(&a, 1 - xpad, n + xpad, lo - ypad, hi + ypad);
    a.xlabel = "epoch";
    a.ylabel = ylabel && *ylabel ? ylabel : "loss";
    a.integer_x = 1;
    viz_axes_layout(cr, &a, 14, top, CURVES_W - 30, CURVES_H - top - 12);
    viz_axes_back(cr, &a);

    viz_axes_clip(cr, &a);
    if (best >= 0) {
        static const double dash[2] = {4.0, 3.0};
        double px = round(viz_px(&a, best + 1)) + 0.5;
        cairo_set_dash(cr, dash, 2, 0);
        cairo_set_line_width(cr, 1.0);
        viz_set_rgb(cr, VIZ_MUTED, 1);
        cairo_move_to(cr, px, a.y);
        cairo_line_to(cr, px, a.y + a.h);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
    }
    draw_series(cr, &a, train, n, VIZ_BLUE);
    if (val) draw_series(cr, &a, val, n, VIZ_ORANGE);
    if (best >= 0) {
        cairo_arc(cr, viz_px(&a, best + 1), viz_py(&a, val[best]), 5.0, 0, 2 * M_PI);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_fill_preserve(cr);
        cairo_set_line_width(cr, 2.0);
        viz_set_rgb(cr, VIZ_ORANGE, 1);
        cairo_stroke(cr);
    }
    if (!any) {
        viz_font(cr, VIZ_FS_LABEL, 0);
        viz_set_rgb(cr, VIZ_MUTED, 1);
        viz_text(cr, a.x + a.w / 2, a.y + a.h / 2, "no finite values", VIZ_HCENTER, VIZ_VMIDDLE,
                 0);
    }
    cairo_restore(cr);
    viz_axes_front(cr, &a);

    char best_label[64];
    viz_key keys[3];
    int nk = 0;
    keys[nk++] = (viz_key){"train", VIZ_BLUE, VIZ_KEY_LINE, 1, 0};
    if (val) keys[nk++] = (viz_key){"validation", VIZ_ORANGE, VIZ_KEY_LINE, 1, 0};
    if (best >= 0) {
        snprintf(best_label, sizeof best_label, "best validation (epoch %d)", best + 1);
        keys[nk++] = (viz_key){best_label, VIZ_MUTED, VIZ_KEY_LINE, 1, 1};
    }
    double lw, lh;
    viz_legend_size(cr, keys, nk, &lw, &lh);
    const double inset = 10;
    double cand[4][2] = {{a.x + a.w - inset - lw, a.y + inset},
                         {a.x + inset, a.y + inset},
                         {a.x + a.w - inset - lw, a.y + a.h - inset - lh},
                         {a.x + inset, a.y + a.h - inset - lh}};
    int pick = 0, best_hits = -1;
    for (int c = 0; c < 4; c++) {
        int hits = covered(&a, train, n, cand[c][0], cand[c][1], lw, lh) +
                   covered(&a, val, n, cand[c][0], cand[c][1], lw, lh);
        if (best >= 0) { /* the best-epoch line counts as a few points */
            double px = viz_px(&a, best + 1);
            if (px >= cand[c][0] - 4 && px <= cand[c][0] + lw + 4) hits += 3;
        }
        if (best_hits < 0 || hits < best_hits) {
            best_hits = hits;
            pick = c;
        }
    }
    viz_legend(cr, keys, nk, cand[pick][0], cand[pick][1]);
    return viz_fig_close(&fig, e);
}
