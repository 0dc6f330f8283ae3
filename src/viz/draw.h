/* Private drawing helpers shared by the plots: figure files (format by extension, atomic write),
 * text, "nice" axis ticks, axes with grid and labels, legends, colour map and colour bar,
 * scatter points. All coordinates are in figure units (points); PNG output is rendered at
 * VIZ_PNG_SCALE pixels per unit. */
#ifndef RF_VIZ_DRAW_H
#define RF_VIZ_DRAW_H

#include <cairo.h>

#include "renflow/core.h"
#include "renflow/data.h"

#define VIZ_PNG_SCALE 2.0
#define VIZ_FONT "sans-serif"

/* font sizes */
#define VIZ_FS_TITLE 15.0
#define VIZ_FS_PANEL 12.5
#define VIZ_FS_LABEL 12.0
#define VIZ_FS_TICK 10.5
#define VIZ_FS_LEGEND 11.0

typedef struct viz_rgb {
    double r, g, b;
} viz_rgb;

/* palette */
extern const viz_rgb VIZ_BLUE, VIZ_ORANGE, VIZ_GREEN, VIZ_RED, VIZ_TEXT, VIZ_GRID, VIZ_FRAME,
    VIZ_MUTED;

void viz_set_rgb(cairo_t *cr, viz_rgb c, double alpha);

/* ---- figure: a surface for one output file ---- */
typedef enum { VIZ_PNG = 0, VIZ_SVG = 1, VIZ_PDF = 2 } viz_format;

typedef struct viz_fig {
    cairo_surface_t *surf;
    cairo_t *cr;
    viz_format fmt;
    double w, h;
    rf_afile *af;
    const char *path;
    rf_err werr; /* first error reported by the stream writer */
    int werr_set;
} viz_fig;

/* Format from the extension; RF_EARG naming the path when it is not .svg/.png/.pdf. */
int viz_format_of(const char *path, viz_format *fmt, rf_err *e);
/* Creates "<path>.tmp.<pid>" and a w x h figure with a white background. */
int viz_fig_open(viz_fig *f, const char *path, double w, double h, rf_err *e);
/* Finishes the drawing, writes the file and renames it into place; on failure the temporary
 * file is removed. Always releases the figure. */
int viz_fig_close(viz_fig *f, rf_err *e);
/* Releases the figure and removes the temporary file. */
void viz_fig_abort(viz_fig *f);
/* A throw-away context for measuring text before the figure size is known (cairo_destroy it).
 * Same font options as a figure, so measurements match. */
cairo_t *viz_scratch(void);
/* Draws the figure title (may be NULL) centred at the top; returns the y where content starts. */
double viz_fig_title(viz_fig *f, const char *title);
/* The same height without drawing. */
double viz_title_height(cairo_t *cr, const char *title);

/* ---- text ---- */
typedef enum { VIZ_HLEFT = 0, VIZ_HCENTER = 1, VIZ_HRIGHT = 2 } viz_halign;
typedef enum { VIZ_VTOP = 0, VIZ_VMIDDLE = 1, VIZ_VBASELINE = 2, VIZ_VBOTTOM = 3 } viz_valign;

void viz_font(cairo_t *cr, double size, int bold);
double viz_text_width(cairo_t *cr, const char *s);
/* Height of a line (ascent + descent) of the current font. */
double viz_line_height(cairo_t *cr);
/* Draws s anchored at (x, y), rotated by angle (radians, counter-clockwise positive is
 * -angle on screen: use -M_PI/2 for text reading upwards). */
void viz_text(cairo_t *cr, double x, double y, const char *s, viz_halign ha, viz_valign va,
              double angle);
/* Like viz_text, but shrinks the font (down to 70%) and then elides the end with "..." so the
 * text is at most max_w long. Restores the font size afterwards. */
void viz_text_fit(cairo_t *cr, double x, double y, const char *s, double max_w, viz_halign ha,
                  viz_valign va, double angle);

/* ---- ticks ---- */
#define VIZ_MAX_TICKS 24
typedef struct viz_ticks {
    int n;
    double v[VIZ_MAX_TICKS];
    double step;
} viz_ticks;
/* "Nice" tick positions (1, 2, 2.5, 5 x 10^k) inside [lo, hi], about `target` of them.
 * integer = 1 restricts the step to whole numbers. */
void viz_nice_ticks(double lo, double hi, int target, int integer, viz_ticks *t);
/* Tick label with as many decimals as the step needs; scientific notation for very large or
 * very small magnitudes. */
void viz_tick_label(double v, double step, char *buf, size_t n);

/* ---- axes ---- */
typedef struct viz_axes {
    /* set by the caller before viz_axes_layout */
    double x0, x1, y0, y1;        /* data ranges */
    const char *title;             /* panel title (may be NULL) */
    const char *xlabel, *ylabel;   /* may be NULL */
    int integer_x;                 /* whole-number x ticks */
    int hide_ytick_labels;
    int square;                    /* plot area with equal width and height */
    /* computed */
    double x, y, w, h;             /* plot area */
    viz_ticks xt, yt;
    double ytl_w;                  /* widest y tick label */
    char xtl[VIZ_MAX_TICKS][32], ytl[VIZ_MAX_TICKS][32];
} viz_axes;

/* Clears a and sets the data ranges (degenerate ranges are widened). */
void viz_axes_init(viz_axes *a, double x0, double x1, double y0, double y1);
/* Room needed around the plot area for the title, tick labels and axis labels; plot_h is an
 * estimate of the plot height (it sets the number of y ticks, hence the tick label width). */
void viz_axes_margins(cairo_t *cr, viz_axes *a, double plot_h, double *left, double *top,
                      double *right, double *bottom);
/* Sets the plot area directly and computes ticks and labels. */
void viz_axes_place(cairo_t *cr, viz_axes *a, double x, double y, double w, double h);
/* Places the plot area inside the box (bx, by, bw, bh), leaving room for the title, tick labels
 * and axis labels. */
void viz_axes_layout(cairo_t *cr, viz_axes *a, double bx, double by, double bw, double bh);
static inline double viz_px(const viz_axes *a, double v) {
    return a->x + (v - a->x0) / (a->x1 - a->x0) * a->w;
}
static inline double viz_py(const viz_axes *a, double v) {
    return a->y + a->h - (v - a->y0) / (a->y1 - a->y0) * a->h;
}
/* Plot-area background and grid lines. */
void viz_axes_back(cairo_t *cr, const viz_axes *a);
/* Frame, ticks, tick labels, axis labels and panel title. */
void viz_axes_front(cairo_t *cr, const viz_axes *a);
/* cairo_save + clip to the plot area; pair with cairo_restore. */
void viz_axes_clip(cairo_t *cr, const viz_axes *a);

/* ---- legend ---- */
typedef enum { VIZ_KEY_LINE = 0, VIZ_KEY_BOX = 1, VIZ_KEY_MARKER = 2 } viz_key_kind;
typedef struct viz_key {
    const char *label;
    viz_rgb color;
    viz_key_kind kind;
    double alpha; /* fill alpha for boxes/markers */
    int dashed;   /* lines */
} viz_key;
void viz_legend_size(cairo_t *cr, const viz_key *k, int n, double *w, double *h);
/* Draws the legend box with its top-left corner at (x, y). */
void viz_legend(cairo_t *cr, const viz_key *k, int n, double x, double y);
/* A frameless legend on one line, centred on (cx, cy). */
double viz_legend_row_width(cairo_t *cr, const viz_key *k, int n);
void viz_legend_row(cairo_t *cr, const viz_key *k, int n, double cx, double cy);

/* ---- colour map (viridis) ---- */
viz_rgb viz_cmap(double t); /* t in [0, 1], clamped */
/* Vertical colour bar at (x, y, w, h) for values vmin..vmax, ticks and labels on the right,
 * label (may be NULL) rotated further right. Returns the total width used. */
double viz_colorbar(cairo_t *cr, double x, double y, double w, double h, double vmin, double vmax,
                    const char *label);
/* Width a colour bar of bar width w would take for this range and label. */
double viz_colorbar_width(cairo_t *cr, double w, double vmin, double vmax, const char *label);

/* ---- scatter: columns cx, cy of m, at most RF_VIZ_MAX_POINTS points, clipped ---- */
void viz_scatter(cairo_t *cr, const viz_axes *a, const rf_matrix *m, int cx, int cy, viz_rgb c,
                 double radius, double alpha);
/* Alpha for n translucent scatter points (more points, fainter). */
double viz_scatter_alpha(int n);

/* Finite min/max of column c over the rows of m; returns 0 when no value is finite. */
int viz_col_range(const rf_matrix *m, int c, double *lo, double *hi);

#endif
