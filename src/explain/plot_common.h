/* Private to src/explain: small drawing helpers on top of src/viz/draw.h. */
#ifndef RF_EXPLAIN_PLOT_COMMON_H
#define RF_EXPLAIN_PLOT_COMMON_H

#include "../viz/draw.h"
#include "explain_internal.h"

/* Colour of class c (a 10-colour qualitative palette, repeating). */
viz_rgb ex_class_color(int c);
/* Polyline through (x[i], y[i]) clipped to the axes, broken at non-finite values. */
void ex_line(cairo_t *cr, const viz_axes *a, const double *x, const double *y, int n, viz_rgb c,
             double width, double alpha, int dashed);
/* The same for y given as floats with x = x0 + i * dx. */
void ex_line_f(cairo_t *cr, const viz_axes *a, double x0, double dx, const float *y, int n,
               viz_rgb c, double width, double alpha);
/* Filled band between lo and hi (both finite where drawn). */
void ex_band(cairo_t *cr, const viz_axes *a, const double *x, const double *lo, const double *hi,
             int n, viz_rgb c, double alpha);
/* Grouped bars: G groups x S series, value v[g * S + s] (NaN: no bar), optional whiskers se;
 * series colours col[s]. Call inside the clip. */
void ex_bars(cairo_t *cr, const viz_axes *a, int G, int S, const double *v, const double *se,
             const viz_rgb *col, double alpha);
/* Replaces the x ticks by G category labels at 0..G-1 (after layout). */
void ex_category_ticks(viz_axes *a, int G, const char *const *labels);
/* Running finite min / max. */
void ex_range(double v, double *lo, double *hi);
void ex_range_f(const float *v, size_t n, double *lo, double *hi);
/* Pads [lo, hi] by frac on both sides (widens degenerate or empty ranges). */
void ex_pad(double *lo, double *hi, double frac);
/* A text note in the top-left corner of the plot area. */
void ex_note(cairo_t *cr, const viz_axes *a, const char *s);
/* Vertical dashed line at x. */
void ex_vline(cairo_t *cr, const viz_axes *a, double x, viz_rgb c);
/* Horizontal line at y. */
void ex_hline(cairo_t *cr, const viz_axes *a, double y, viz_rgb c);

#endif
