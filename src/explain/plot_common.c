/* Drawing helpers for the explanation figures. */
#include <math.h>
#include <stdio.h>

#include "plot_common.h"

/* Tableau 10 */
static const viz_rgb PALETTE[10] = {
    {0.122, 0.467, 0.706}, {0.902, 0.435, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812},
};

viz_rgb ex_class_color(int c) { return PALETTE[(c % 10 + 10) % 10]; }

void ex_line(cairo_t *cr, const viz_axes *a, const double *x, const double *y, int n, viz_rgb c,
             double width, double alpha, int dashed) {
    viz_axes_clip(cr, a);
    cairo_set_line_width(cr, width);
    viz_set_rgb(cr, c, alpha);
    if (dashed) {
        static const double dash[2] = {5.0, 3.0};
        cairo_set_dash(cr, dash, 2, 0);
    }
    int pen = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            pen = 0;
            continue;
        }
        /* keep cairo's coordinates bounded for far out-of-range values */
        double py = viz_py(a, y[i]);
        if (py < a->y - 1e4) py = a->y - 1e4;
        if (py > a->y + a->h + 1e4) py = a->y + a->h + 1e4;
        if (pen) cairo_line_to(cr, viz_px(a, x[i]), py);
        else cairo_move_to(cr, viz_px(a, x[i]), py);
        pen = 1;
    }
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_restore(cr);
}

void ex_line_f(cairo_t *cr, const viz_axes *a, double x0, double dx, const float *y, int n,
               viz_rgb c, double width, double alpha) {
    viz_axes_clip(cr, a);
    cairo_set_line_width(cr, width);
    viz_set_rgb(cr, c, alpha);
    int pen = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) {
            pen = 0;
            continue;
        }
        double py = viz_py(a, y[i]);
        if (py < a->y - 1e4) py = a->y - 1e4;
        if (py > a->y + a->h + 1e4) py = a->y + a->h + 1e4;
        const double px = viz_px(a, x0 + i * dx);
        if (pen) cairo_line_to(cr, px, py);
        else cairo_move_to(cr, px, py);
        pen = 1;
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

void ex_band(cairo_t *cr, const viz_axes *a, const double *x, const double *lo, const double *hi,
             int n, viz_rgb c, double alpha) {
    viz_axes_clip(cr, a);
    viz_set_rgb(cr, c, alpha);
    int i = 0;
    while (i < n) {
        while (i < n && !(isfinite(lo[i]) && isfinite(hi[i]))) i++;
        int j = i;
        while (j < n && isfinite(lo[j]) && isfinite(hi[j])) j++;
        if (j > i) {
            for (int k = i; k < j; k++) {
                const double px = viz_px(a, x[k]), py = fmax(fmin(viz_py(a, hi[k]), a->y + a->h + 1e4), a->y - 1e4);
                if (k == i) cairo_move_to(cr, px, py);
                else cairo_line_to(cr, px, py);
            }
            for (int k = j - 1; k >= i; k--)
                cairo_line_to(cr, viz_px(a, x[k]), fmax(fmin(viz_py(a, lo[k]), a->y + a->h + 1e4), a->y - 1e4));
            cairo_close_path(cr);
            cairo_fill(cr);
        }
        i = j;
    }
    cairo_restore(cr);
}

void ex_bars(cairo_t *cr, const viz_axes *a, int G, int S, const double *v, const double *se,
             const viz_rgb *col, double alpha) {
    const double gw = 0.8, bw = gw / (S > 0 ? S : 1);
    const double y0 = fmin(fmax(0.0, a->y0), a->y1); /* bars start at 0 (or the nearer edge) */
    viz_axes_clip(cr, a);
    for (int g = 0; g < G; g++)
        for (int s = 0; s < S; s++) {
            const double val = v[(size_t)g * S + s];
            if (!isfinite(val)) continue;
            const double xl = g - gw / 2 + s * bw, xr = xl + bw * 0.92;
            const double pl = viz_px(a, xl), pr = viz_px(a, xr);
            const double pt = viz_py(a, fmax(val, y0)), pb = viz_py(a, fmin(val, y0));
            cairo_rectangle(cr, pl, pt, pr - pl, pb - pt);
            viz_set_rgb(cr, col[s], alpha);
            cairo_fill(cr);
            if (se && isfinite(se[(size_t)g * S + s]) && se[(size_t)g * S + s] > 0) {
                const double e = se[(size_t)g * S + s], pm = (pl + pr) / 2;
                cairo_set_line_width(cr, 1.0);
                viz_set_rgb(cr, VIZ_TEXT, 0.8);
                cairo_move_to(cr, pm, viz_py(a, val - e));
                cairo_line_to(cr, pm, viz_py(a, val + e));
                cairo_stroke(cr);
            }
        }
    cairo_restore(cr);
}

void ex_category_ticks(viz_axes *a, int G, const char *const *labels) {
    if (G > VIZ_MAX_TICKS) G = VIZ_MAX_TICKS;
    a->xt.n = G;
    a->xt.step = 1;
    for (int g = 0; g < G; g++) {
        a->xt.v[g] = g;
        snprintf(a->xtl[g], sizeof a->xtl[g], "%s", labels[g]);
    }
}

void ex_range(double v, double *lo, double *hi) {
    if (!isfinite(v)) return;
    if (!(v >= *lo)) *lo = v;
    if (!(v <= *hi)) *hi = v;
}

void ex_range_f(const float *v, size_t n, double *lo, double *hi) {
    for (size_t i = 0; i < n; i++) ex_range(v[i], lo, hi);
}

void ex_pad(double *lo, double *hi, double frac) {
    if (!isfinite(*lo) || !isfinite(*hi)) {
        *lo = 0;
        *hi = 1;
        return;
    }
    if (!(*hi > *lo)) {
        const double d = fmax(fabs(*lo) * 0.1, 0.5);
        *lo -= d;
        *hi += d;
        return;
    }
    const double d = (*hi - *lo) * frac;
    *lo -= d;
    *hi += d;
}

void ex_note(cairo_t *cr, const viz_axes *a, const char *s) {
    cairo_save(cr);
    viz_font(cr, VIZ_FS_TICK, 0);
    const double w = viz_text_width(cr, s) + 6, h = viz_line_height(cr) + 4;
    cairo_rectangle(cr, a->x + 4, a->y + 4, w, h);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill(cr);
    viz_set_rgb(cr, VIZ_TEXT, 1);
    viz_text(cr, a->x + 7, a->y + 6, s, VIZ_HLEFT, VIZ_VTOP, 0);
    cairo_restore(cr);
}

void ex_vline(cairo_t *cr, const viz_axes *a, double x, viz_rgb c) {
    if (!isfinite(x) || x < a->x0 || x > a->x1) return;
    static const double dash[2] = {3.0, 3.0};
    cairo_save(cr);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_set_line_width(cr, 1.0);
    viz_set_rgb(cr, c, 1);
    const double px = round(viz_px(a, x)) + 0.5;
    cairo_move_to(cr, px, a->y);
    cairo_line_to(cr, px, a->y + a->h);
    cairo_stroke(cr);
    cairo_restore(cr);
}

void ex_hline(cairo_t *cr, const viz_axes *a, double y, viz_rgb c) {
    if (!isfinite(y) || y < a->y0 || y > a->y1) return;
    cairo_save(cr);
    cairo_set_line_width(cr, 1.0);
    viz_set_rgb(cr, c, 1);
    const double py = round(viz_py(a, y)) + 0.5;
    cairo_move_to(cr, a->x, py);
    cairo_line_to(cr, a->x + a->w, py);
    cairo_stroke(cr);
    cairo_restore(cr);
}
