/* Figures for a search study: fANOVA importance bars and the Pareto front of two objectives. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../viz/draw.h"
#include "renflow/importance.h"
#include "renflow/pareto.h"

/* ------------------------------------------------------------------ importance bars */

#define IMP_W 760.0
#define IMP_ROW 26.0
#define IMP_OUTER 14.0
#define IMP_LABEL_MAX 300.0
#define IMP_DEFAULT_BARS 20

typedef struct bar {
    double mean, sd; /* percent */
    int pair;        /* 0: main effect; 1: interaction */
    int a, b;        /* parameter indices (b = -1 for a main effect) */
    char label[200];
} bar;

static int cmp_bar(const void *a, const void *b) {
    const bar *p = a, *q = b;
    if (p->mean != q->mean) return (p->mean < q->mean) - (p->mean > q->mean);
    if (p->pair != q->pair) return p->pair - q->pair;
    if (p->a != q->a) return p->a - q->a;
    return p->b - q->b;
}

static const char *pname(const char *const *names, int i, char *buf, size_t n) {
    if (names && names[i] && *names[i]) return names[i];
    snprintf(buf, n, "x%d", i + 1);
    return buf;
}

static void fmt_pct(double v, char *buf, size_t n) {
    if (v >= 9.95)
        snprintf(buf, n, "%.0f%%", v);
    else if (v >= 0.995)
        snprintf(buf, n, "%.1f%%", v);
    else
        snprintf(buf, n, "%.2f%%", v);
}

/* Copies s into out, shortened with a middle ellipsis until it is at most max_w wide in the
 * current font (the start and the end of a name are what tell names apart). */
static void fit_middle(cairo_t *cr, const char *s, double max_w, char *out, size_t n) {
    snprintf(out, n, "%s", s);
    if (viz_text_width(cr, out) <= max_w) return;
    int len = (int)strlen(s);
    for (int keep = len - 1; keep >= 2; keep--) {
        int h = (keep + 1) / 2, t = keep - h;
        while (h > 0 && ((unsigned char)s[h] & 0xC0) == 0x80) h--; /* UTF-8 boundaries */
        int ts = len - t;
        while (ts < len && ((unsigned char)s[ts] & 0xC0) == 0x80) ts++;
        snprintf(out, n, "%.*s\xe2\x80\xa6%s", h, s, s + ts);
        if (viz_text_width(cr, out) <= max_w) return;
    }
}

/* Row label of a bar: a name, or "a x b" with both sides shortened as needed. */
static void bar_label(cairo_t *cr, const char *a, const char *b, double max_w, char *out,
                      size_t n) {
    if (!b) {
        fit_middle(cr, a, max_w, out, n);
        return;
    }
    static const char *sep = " \xc3\x97 ";
    snprintf(out, n, "%s%s%s", a, sep, b);
    if (viz_text_width(cr, out) <= max_w) return;
    double room = max_w - viz_text_width(cr, sep);
    char fa[96], fb[96];
    fit_middle(cr, b, room / 2, fb, sizeof fb);
    fit_middle(cr, a, room - viz_text_width(cr, fb), fa, sizeof fa);
    fit_middle(cr, b, room - viz_text_width(cr, fa), fb, sizeof fb);
    snprintf(out, n, "%s%s%s", fa, sep, fb);
}

int rf_plot_importance(const char *path, const char *title, const rf_importance *imp,
                       const char *const *names, int max_bars, rf_err *e) {
    if (!path) return rf_err_set(e, RF_EARG, "importance plot: no output path");
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    if (!imp || imp->d < 1 || !imp->main_mean || !imp->main_sd)
        return rf_err_set(e, RF_EARG, "%s: no importance result to plot", path);
    if (max_bars <= 0) max_bars = IMP_DEFAULT_BARS;

    int total = imp->d + imp->n_pairs;
    bar *bars = calloc((size_t)total, sizeof *bars);
    if (!bars) return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
    for (int i = 0; i < imp->d; i++)
        bars[i] = (bar){100 * imp->main_mean[i], 100 * imp->main_sd[i], 0, i, -1, ""};
    for (int q = 0; q < imp->n_pairs; q++)
        bars[imp->d + q] = (bar){100 * imp->pair_mean[q], 100 * imp->pair_sd[q], 1, imp->pair_i[q],
                                 imp->pair_j[q], ""};
    for (int k = 0; k < total; k++) {
        if (!isfinite(bars[k].mean)) bars[k].mean = 0;
        if (!isfinite(bars[k].sd)) bars[k].sd = 0;
    }
    qsort(bars, (size_t)total, sizeof *bars, cmp_bar);
    int nb = total < max_bars ? total : max_bars;
    char b1[32], b2[32];
    cairo_t *s = viz_scratch();
    viz_font(s, VIZ_FS_LABEL, 0);
    for (int k = 0; k < nb; k++)
        bar_label(s, pname(names, bars[k].a, b1, sizeof b1),
                  bars[k].b >= 0 ? pname(names, bars[k].b, b2, sizeof b2) : NULL, IMP_LABEL_MAX,
                  bars[k].label, sizeof bars[k].label);

    /* layout, measured on a scratch context */
    char xlabel[128];
    snprintf(xlabel, sizeof xlabel,
             "variance explained (%%): mean \xc2\xb1 sd over %d trees, %d trials",
             imp->n_trees_used, imp->n);
    viz_font(s, VIZ_FS_LABEL, 0);
    double labw = 0;
    for (int k = 0; k < nb; k++) labw = fmax(labw, viz_text_width(s, bars[k].label));
    labw = fmin(ceil(labw), IMP_LABEL_MAX);
    double title_h = viz_title_height(s, title);
    viz_key keys[2] = {{"main effect", VIZ_BLUE, VIZ_KEY_BOX, 0.85, 0},
                       {"interaction (pair)", VIZ_ORANGE, VIZ_KEY_BOX, 0.85, 0}};
    int nkeys = imp->n_pairs > 0 ? 2 : 1;
    viz_font(s, VIZ_FS_LEGEND, 0);
    double legend_h = viz_line_height(s) + 14;
    viz_font(s, VIZ_FS_TICK, 0);
    double plot_h = nb * IMP_ROW;
    viz_axes a;
    viz_axes_init(&a, 0, 1, 0, nb);
    a.xlabel = xlabel;
    a.hide_ytick_labels = 1;
    double ml, mt, mr, mb;
    viz_axes_margins(s, &a, plot_h, &ml, &mt, &mr, &mb);
    double px0 = IMP_OUTER + labw + 10;
    double plot_w = IMP_W - px0 - IMP_OUTER;
    /* x range: the value labels next to the bars must fit inside the plot area */
    double xmax = 1;
    for (int k = 0; k < nb; k++) {
        char t[32];
        fmt_pct(bars[k].mean, t, sizeof t);
        double tw = viz_text_width(s, t) + 12;
        double v = bars[k].mean + bars[k].sd;
        if (plot_w - tw > 20) xmax = fmax(xmax, v * plot_w / (plot_w - tw));
    }
    cairo_destroy(s);
    if (xmax > 100) xmax = 100;
    double H = ceil(title_h + mt + plot_h + mb + legend_h + 6);

    viz_fig fig;
    rc = viz_fig_open(&fig, path, IMP_W, H, e);
    if (rc != RF_OK) {
        free(bars);
        return rc;
    }
    cairo_t *cr = fig.cr;
    double top = viz_fig_title(&fig, title);
    a.x1 = xmax;
    viz_axes_place(cr, &a, px0, top + mt, plot_w, plot_h);
    a.yt.n = 0; /* rows, not a numeric y axis: no horizontal grid or ticks */
    viz_axes_back(cr, &a);

    viz_axes_clip(cr, &a);
    double bh = IMP_ROW * 0.62;
    for (int k = 0; k < nb; k++) {
        const bar *b = &bars[k];
        double cy = a.y + (k + 0.5) * IMP_ROW;
        double x0 = viz_px(&a, 0), x1 = viz_px(&a, b->mean);
        viz_rgb col = b->pair ? VIZ_ORANGE : VIZ_BLUE;
        if (x1 - x0 > 0.2) {
            cairo_rectangle(cr, x0, cy - bh / 2, x1 - x0, bh);
            viz_set_rgb(cr, col, 0.85);
            cairo_fill(cr);
        }
        /* error bar: mean +- sd, clipped at 0 */
        if (b->sd > 0) {
            double lo = viz_px(&a, fmax(0, b->mean - b->sd)), hi = viz_px(&a, b->mean + b->sd);
            cairo_set_line_width(cr, 1.3);
            viz_set_rgb(cr, VIZ_TEXT, 0.9);
            cairo_move_to(cr, lo, cy);
            cairo_line_to(cr, hi, cy);
            cairo_move_to(cr, lo, cy - 4.5);
            cairo_line_to(cr, lo, cy + 4.5);
            cairo_move_to(cr, hi, cy - 4.5);
            cairo_line_to(cr, hi, cy + 4.5);
            cairo_stroke(cr);
        }
        char t[32];
        fmt_pct(b->mean, t, sizeof t);
        viz_font(cr, VIZ_FS_TICK, 0);
        double tx = viz_px(&a, b->mean + b->sd) + 6;
        if (tx + viz_text_width(cr, t) <= a.x + a.w - 2) {
            viz_set_rgb(cr, VIZ_TEXT, 1);
            viz_text(cr, tx, cy, t, VIZ_HLEFT, VIZ_VMIDDLE, 0);
        } else { /* no room right of the bar: inside it */
            cairo_set_source_rgb(cr, 1, 1, 1);
            viz_text(cr, x1 - 6, cy, t, VIZ_HRIGHT, VIZ_VMIDDLE, 0);
        }
    }
    cairo_restore(cr);
    viz_axes_front(cr, &a);

    /* row labels */
    viz_set_rgb(cr, VIZ_TEXT, 1);
    viz_font(cr, VIZ_FS_LABEL, 0);
    for (int k = 0; k < nb; k++)
        viz_text(cr, a.x - 8, a.y + (k + 0.5) * IMP_ROW, bars[k].label, VIZ_HRIGHT, VIZ_VMIDDLE,
                 0);
    if (total > nb) {
        char more[64];
        snprintf(more, sizeof more, "(%d smaller terms not shown)", total - nb);
        viz_font(cr, VIZ_FS_TICK, 0);
        viz_set_rgb(cr, VIZ_MUTED, 1);
        viz_text(cr, a.x + a.w, H - legend_h / 2 - 3, more, VIZ_HRIGHT, VIZ_VMIDDLE, 0);
    }
    viz_legend_row(cr, keys, nkeys, a.x + viz_legend_row_width(cr, keys, nkeys) / 2,
                   H - legend_h / 2 - 3);
    free(bars);
    return viz_fig_close(&fig, e);
}

/* ------------------------------------------------------------------ Pareto front */

#define PAR_W 700.0
#define PAR_H 520.0

typedef struct pt {
    double x, y;
    int i;
} pt;

/* orders front points by the first objective, better first */
static int cmp_pt_x(const void *a, const void *b) {
    const pt *p = a, *q = b;
    if (p->x != q->x) return (p->x > q->x) - (p->x < q->x);
    return (p->y > q->y) - (p->y < q->y);
}

int rf_plot_pareto(const char *path, const char *title, const double *F, int n,
                   const rf_pareto_dir dirs[2], const char *const names[2], rf_err *e) {
    if (!path) return rf_err_set(e, RF_EARG, "pareto plot: no output path");
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    if (n < 0 || (n > 0 && !F)) return rf_err_set(e, RF_EARG, "%s: no objective values", path);
    rf_pareto_dir dd[2] = {dirs ? dirs[0] : RF_PARETO_MINIMIZE, dirs ? dirs[1] : RF_PARETO_MINIMIZE};
    int *front = malloc((size_t)(n > 0 ? n : 1) * sizeof *front);
    pt *fp = malloc((size_t)(n > 0 ? n : 1) * sizeof *fp);
    char *on = calloc((size_t)(n > 0 ? n : 1), 1);
    if (!front || !fp || !on) {
        free(front);
        free(fp);
        free(on);
        return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
    }
    int nf = 0;
    rc = rf_pareto_front(F, n, 2, dd, front, &nf, e);
    if (rc != RF_OK) {
        free(front);
        free(fp);
        free(on);
        return rf_err_prefix(e, rc, "%s", path);
    }
    for (int k = 0; k < nf; k++) on[front[k]] = 1;

    double x0 = 0, x1 = 0, y0 = 0, y1 = 0;
    int nfin = 0;
    for (int i = 0; i < n; i++) {
        double x = F[2 * (size_t)i], y = F[2 * (size_t)i + 1];
        if (!isfinite(x) || !isfinite(y)) continue;
        if (!nfin || x < x0) x0 = x;
        if (!nfin || x > x1) x1 = x;
        if (!nfin || y < y0) y0 = y;
        if (!nfin || y > y1) y1 = y;
        nfin++;
    }
    double px = x1 > x0 ? 0.06 * (x1 - x0) : 0, py = y1 > y0 ? 0.06 * (y1 - y0) : 0;

    char xl[200], yl[200];
    const char *n0 = names && names[0] && *names[0] ? names[0] : "objective 1";
    const char *n1 = names && names[1] && *names[1] ? names[1] : "objective 2";
    snprintf(xl, sizeof xl, "%s (%s is better)", n0, dd[0] == RF_PARETO_MAXIMIZE ? "higher" : "lower");
    snprintf(yl, sizeof yl, "%s (%s is better)", n1, dd[1] == RF_PARETO_MAXIMIZE ? "higher" : "lower");

    viz_fig fig;
    rc = viz_fig_open(&fig, path, PAR_W, PAR_H, e);
    if (rc != RF_OK) {
        free(front);
        free(fp);
        free(on);
        return rc;
    }
    cairo_t *cr = fig.cr;
    double top = viz_fig_title(&fig, title);
    viz_axes a;
    viz_axes_init(&a, x0 - px, x1 + px, y0 - py, y1 + py);
    a.xlabel = xl;
    a.ylabel = yl;
    viz_axes_layout(cr, &a, IMP_OUTER, top, PAR_W - 2 * IMP_OUTER, PAR_H - top - 12);
    viz_axes_back(cr, &a);
    viz_axes_clip(cr, &a);

    /* all trials */
    double alpha = viz_scatter_alpha(nfin);
    viz_set_rgb(cr, VIZ_BLUE, alpha < 0.35 ? 0.35 : alpha);
    for (int i = 0; i < n; i++) {
        double x = F[2 * (size_t)i], y = F[2 * (size_t)i + 1];
        if (!isfinite(x) || !isfinite(y) || on[i]) continue;
        cairo_arc(cr, viz_px(&a, x), viz_py(&a, y), 2.8, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    /* the attainment step line of the front, in "minimise both" coordinates g = s * f */
    double s0 = dd[0] == RF_PARETO_MAXIMIZE ? -1 : 1, s1 = dd[1] == RF_PARETO_MAXIMIZE ? -1 : 1;
    for (int k = 0; k < nf; k++) {
        int i = front[k];
        fp[k] = (pt){s0 * F[2 * (size_t)i], s1 * F[2 * (size_t)i + 1], i};
    }
    qsort(fp, (size_t)nf, sizeof *fp, cmp_pt_x);
    /* polyline of the step line in pixels: down from the worse edge of objective 2 to the best
     * point of objective 1, then alternately across and down, out to the worse edge of
     * objective 1 */
    int nl = 0;
    double *lx = malloc((size_t)(2 * nf + 2) * sizeof *lx);
    double *ly = malloc((size_t)(2 * nf + 2) * sizeof *ly);
    if (!lx || !ly) nf = 0;
    if (nf > 0) {
        double xw = s0 > 0 ? a.x1 : a.x0, yw = s1 > 0 ? a.y1 : a.y0;
        lx[nl] = viz_px(&a, s0 * fp[0].x);
        ly[nl++] = viz_py(&a, yw);
        for (int k = 0; k < nf; k++) {
            double fx = s0 * fp[k].x, fy = s1 * fp[k].y;
            lx[nl] = viz_px(&a, fx);
            ly[nl++] = viz_py(&a, fy);
            double nx = k + 1 < nf ? s0 * fp[k + 1].x : xw;
            lx[nl] = viz_px(&a, nx);
            ly[nl++] = viz_py(&a, fy);
        }
        cairo_set_line_width(cr, 1.8);
        viz_set_rgb(cr, VIZ_ORANGE, 1);
        cairo_move_to(cr, lx[0], ly[0]);
        for (int k = 1; k < nl; k++) cairo_line_to(cr, lx[k], ly[k]);
        cairo_stroke(cr);
        for (int k = 0; k < nf; k++) {
            cairo_arc(cr, viz_px(&a, s0 * fp[k].x), viz_py(&a, s1 * fp[k].y), 4.6, 0, 2 * M_PI);
            viz_set_rgb(cr, VIZ_ORANGE, 1);
            cairo_fill_preserve(cr);
            cairo_set_source_rgb(cr, 1, 1, 1);
            cairo_set_line_width(cr, 1.2);
            cairo_stroke(cr);
        }
    }
    if (nfin == 0) {
        viz_font(cr, VIZ_FS_LABEL, 0);
        viz_set_rgb(cr, VIZ_MUTED, 1);
        viz_text(cr, a.x + a.w / 2, a.y + a.h / 2, "no trial with finite objectives", VIZ_HCENTER,
                 VIZ_VMIDDLE, 0);
    }
    cairo_restore(cr);
    viz_axes_front(cr, &a);

    /* legend in the corner with the fewest points */
    char l0[64], l1[64];
    snprintf(l0, sizeof l0, "trials (%d)", nfin);
    snprintf(l1, sizeof l1, "Pareto front (%d)", nf);
    viz_key keys[2] = {{l0, VIZ_BLUE, VIZ_KEY_MARKER, 0.8, 0}, {l1, VIZ_ORANGE, VIZ_KEY_LINE, 1, 0}};
    double lw, lh;
    viz_legend_size(cr, keys, 2, &lw, &lh);
    const double inset = 10;
    double cand[4][2] = {{a.x + a.w - inset - lw, a.y + inset},
                         {a.x + inset, a.y + inset},
                         {a.x + a.w - inset - lw, a.y + a.h - inset - lh},
                         {a.x + inset, a.y + a.h - inset - lh}};
    int pick = 0, best = -1;
    for (int c = 0; c < 4; c++) {
        int hits = 0;
        for (int i = 0; i < n; i++) {
            double x = F[2 * (size_t)i], y = F[2 * (size_t)i + 1];
            if (!isfinite(x) || !isfinite(y)) continue;
            double qx = viz_px(&a, x), qy = viz_py(&a, y);
            if (qx >= cand[c][0] - 5 && qx <= cand[c][0] + lw + 5 && qy >= cand[c][1] - 5 &&
                qy <= cand[c][1] + lh + 5)
                hits += on[i] ? 5 : 1;
        }
        /* the step line, sampled every few pixels */
        for (int k = 0; k + 1 < nl; k++) {
            double len = hypot(lx[k + 1] - lx[k], ly[k + 1] - ly[k]);
            int steps = 1 + (int)(len / 4);
            for (int t = 0; t <= steps; t++) {
                double qx = lx[k] + (lx[k + 1] - lx[k]) * t / steps;
                double qy = ly[k] + (ly[k + 1] - ly[k]) * t / steps;
                if (qx >= cand[c][0] - 3 && qx <= cand[c][0] + lw + 3 && qy >= cand[c][1] - 3 &&
                    qy <= cand[c][1] + lh + 3)
                    hits += 2;
            }
        }
        if (best < 0 || hits < best) {
            best = hits;
            pick = c;
        }
    }
    viz_legend(cr, keys, 2, cand[pick][0], cand[pick][1]);
    free(lx);
    free(ly);
    free(front);
    free(fp);
    free(on);
    return viz_fig_close(&fig, e);
}
