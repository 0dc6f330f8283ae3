/* Drawing helpers shared by the plots: figure files, text, ticks, axes, legend, colour map. */
#include "draw.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "renflow/viz.h"

const viz_rgb VIZ_BLUE = {0.122, 0.467, 0.706};
const viz_rgb VIZ_ORANGE = {0.902, 0.435, 0.055};
const viz_rgb VIZ_GREEN = {0.173, 0.627, 0.173};
const viz_rgb VIZ_RED = {0.839, 0.153, 0.157};
const viz_rgb VIZ_TEXT = {0.13, 0.13, 0.15};
const viz_rgb VIZ_GRID = {0.89, 0.89, 0.90};
const viz_rgb VIZ_FRAME = {0.35, 0.35, 0.38};
const viz_rgb VIZ_MUTED = {0.45, 0.45, 0.48};

void viz_set_rgb(cairo_t *cr, viz_rgb c, double alpha) {
    if (alpha >= 1.0)
        cairo_set_source_rgb(cr, c.r, c.g, c.b);
    else
        cairo_set_source_rgba(cr, c.r, c.g, c.b, alpha);
}

/* ------------------------------------------------------------------ figure files */

int viz_format_of(const char *path, viz_format *fmt, rf_err *e) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(path, '.');
    if (dot && (!slash || dot > slash)) {
        if (strcasecmp(dot, ".png") == 0) {
            *fmt = VIZ_PNG;
            return RF_OK;
        }
        if (strcasecmp(dot, ".svg") == 0) {
            *fmt = VIZ_SVG;
            return RF_OK;
        }
        if (strcasecmp(dot, ".pdf") == 0) {
            *fmt = VIZ_PDF;
            return RF_OK;
        }
    }
    return rf_err_set(e, RF_EARG,
                      "%s: unsupported figure format (the file name must end in .svg, .png or "
                      ".pdf)",
                      path);
}

static cairo_status_t fig_write(void *closure, const unsigned char *data, unsigned int len) {
    viz_fig *f = closure;
    rf_err we;
    if (rf_afile_write(f->af, data, len, &we) != RF_OK) {
        if (!f->werr_set) {
            f->werr = we;
            f->werr_set = 1;
        }
        return CAIRO_STATUS_WRITE_ERROR;
    }
    return CAIRO_STATUS_SUCCESS;
}

static int cairo_fail(viz_fig *f, cairo_status_t st, rf_err *e) {
    if (f->werr_set) {
        if (e) *e = f->werr;
        return f->werr.code;
    }
    return rf_err_set(e, st == CAIRO_STATUS_NO_MEMORY ? RF_ENOMEM : RF_EIO,
                      "%s: drawing the figure failed: %s", f->path, cairo_status_to_string(st));
}

int viz_fig_open(viz_fig *f, const char *path, double w, double h, rf_err *e) {
    memset(f, 0, sizeof *f);
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    f->fmt = fmt;
    f->w = w;
    f->h = h;
    f->path = path;
    f->af = rf_afile_open(path, e);
    if (!f->af) return e ? e->code : RF_EIO;
    switch (fmt) {
    case VIZ_PNG:
        f->surf = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)ceil(w * VIZ_PNG_SCALE),
                                             (int)ceil(h * VIZ_PNG_SCALE));
        break;
    case VIZ_SVG:
        f->surf = cairo_svg_surface_create_for_stream(fig_write, f, w, h);
        if (cairo_surface_status(f->surf) == CAIRO_STATUS_SUCCESS)
            cairo_svg_surface_set_document_unit(f->surf, CAIRO_SVG_UNIT_PX);
        break;
    case VIZ_PDF:
        f->surf = cairo_pdf_surface_create_for_stream(fig_write, f, w, h);
        if (cairo_surface_status(f->surf) == CAIRO_STATUS_SUCCESS)
            cairo_pdf_surface_set_metadata(f->surf, CAIRO_PDF_METADATA_CREATOR,
                                           "renflow " RF_VERSION_STRING);
        break;
    }
    cairo_status_t st = cairo_surface_status(f->surf);
    if (st == CAIRO_STATUS_SUCCESS) {
        f->cr = cairo_create(f->surf);
        st = cairo_status(f->cr);
    }
    if (st != CAIRO_STATUS_SUCCESS) {
        rc = cairo_fail(f, st, e);
        viz_fig_abort(f);
        return rc;
    }
    cairo_t *cr = f->cr;
    if (fmt == VIZ_PNG) cairo_scale(cr, VIZ_PNG_SCALE, VIZ_PNG_SCALE);
    /* unhinted metrics: the same layout in every format */
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_set_font_options(cr, fo);
    cairo_font_options_destroy(fo);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
    return RF_OK;
}

int viz_fig_close(viz_fig *f, rf_err *e) {
    int rc = RF_OK;
    cairo_status_t st = cairo_status(f->cr);
    if (st != CAIRO_STATUS_SUCCESS) rc = cairo_fail(f, st, e);
    cairo_destroy(f->cr);
    f->cr = NULL;
    if (rc == RF_OK) {
        if (f->fmt == VIZ_PNG) {
            cairo_surface_flush(f->surf);
            st = cairo_surface_write_to_png_stream(f->surf, fig_write, f);
        } else {
            cairo_surface_finish(f->surf);
            st = cairo_surface_status(f->surf);
        }
        if (st != CAIRO_STATUS_SUCCESS) rc = cairo_fail(f, st, e);
    }
    cairo_surface_destroy(f->surf);
    f->surf = NULL;
    if (rc == RF_OK)
        rc = rf_afile_commit(f->af, e);
    else
        rf_afile_abort(f->af);
    f->af = NULL;
    return rc;
}

void viz_fig_abort(viz_fig *f) {
    if (f->cr) cairo_destroy(f->cr);
    if (f->surf) cairo_surface_destroy(f->surf);
    if (f->af) rf_afile_abort(f->af);
    f->cr = NULL;
    f->surf = NULL;
    f->af = NULL;
}

double viz_title_height(cairo_t *cr, const char *title) {
    if (!title || !*title) return 10;
    viz_font(cr, VIZ_FS_TITLE, 1);
    return ceil(14 + viz_line_height(cr) + 12);
}

double viz_fig_title(viz_fig *f, const char *title) {
    if (!title || !*title) return 10;
    cairo_t *cr = f->cr;
    viz_font(cr, VIZ_FS_TITLE, 1);
    viz_set_rgb(cr, VIZ_TEXT, 1);
    viz_text_fit(cr, f->w / 2, 14, title, f->w - 40, VIZ_HCENTER, VIZ_VTOP, 0);
    return viz_title_height(cr, title);
}

cairo_t *viz_scratch(void) {
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, 1, 1);
    cairo_t *cr = cairo_create(s);
    cairo_surface_destroy(s); /* cr holds a reference */
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_set_font_options(cr, fo);
    cairo_font_options_destroy(fo);
    return cr;
}

/* ------------------------------------------------------------------ text */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, at most
 * U+10FFFF), or 0 when it is not valid. */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned min, cp;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        min = 0x80;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        min = 0x800;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        min = 0x10000;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* s itself when it is valid UTF-8 (cairo refuses anything else and would fail the whole
 * figure); otherwise a copy in buf with every invalid byte replaced by '?'. */
static const char *clean_utf8(const char *s, char *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    int valid = 1;
    for (size_t i = 0; p[i];) {
        int k = utf8_len(p + i);
        if (!k) {
            valid = 0;
            break;
        }
        i += (size_t)k;
    }
    if (valid) return s;
    size_t o = 0;
    for (size_t i = 0; p[i] && o + 5 < n;) {
        int k = utf8_len(p + i);
        if (!k) {
            buf[o++] = '?';
            i++;
        } else {
            memcpy(buf + o, p + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
        }
    }
    buf[o] = '\0';
    return buf;
}

void viz_font(cairo_t *cr, double size, int bold) {
    cairo_select_font_face(cr, VIZ_FONT, CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

double viz_text_width(cairo_t *cr, const char *s) {
    char buf[512];
    cairo_text_extents_t te;
    cairo_text_extents(cr, clean_utf8(s, buf, sizeof buf), &te);
    return te.x_advance;
}

static double cap_height(cairo_t *cr) {
    cairo_text_extents_t te;
    cairo_text_extents(cr, "H", &te);
    return te.height;
}

double viz_line_height(cairo_t *cr) {
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    return cap_height(cr) + fe.descent;
}

void viz_text(cairo_t *cr, double x, double y, const char *s, viz_halign ha, viz_valign va,
              double angle) {
    if (!s || !*s) return;
    char cbuf[512];
    s = clean_utf8(s, cbuf, sizeof cbuf);
    cairo_font_extents_t fe;
    cairo_font_extents(cr, &fe);
    double w = viz_text_width(cr, s), cap = cap_height(cr);
    double dx = ha == VIZ_HLEFT ? 0 : ha == VIZ_HCENTER ? -w / 2 : -w;
    double dy = va == VIZ_VTOP ? cap : va == VIZ_VMIDDLE ? cap / 2 : va == VIZ_VBASELINE ? 0 : -fe.descent;
    cairo_save(cr);
    cairo_translate(cr, x, y);
    if (angle != 0) cairo_rotate(cr, angle);
    cairo_move_to(cr, dx, dy);
    cairo_show_text(cr, s);
    cairo_new_path(cr);
    cairo_restore(cr);
}

void viz_text_fit(cairo_t *cr, double x, double y, const char *s, double max_w, viz_halign ha,
                  viz_valign va, double angle) {
    if (!s || !*s) return;
    char cbuf[512];
    s = clean_utf8(s, cbuf, sizeof cbuf);
    cairo_matrix_t fm;
    cairo_get_font_matrix(cr, &fm);
    double size = fm.yy;
    double w = viz_text_width(cr, s);
    if (w > max_w && w > 0) {
        double ns = size * max_w / w;
        if (ns < 0.7 * size) ns = 0.7 * size;
        cairo_set_font_size(cr, ns);
        w = viz_text_width(cr, s);
    }
    if (w <= max_w) {
        viz_text(cr, x, y, s, ha, va, angle);
    } else {
        char buf[512];
        size_t k = strlen(s);
        if (k > sizeof buf - 4) k = sizeof buf - 4;
        for (;;) {
            while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--; /* UTF-8 boundary */
            memcpy(buf, s, k);
            memcpy(buf + k, "...", 4);
            if (k == 0 || viz_text_width(cr, buf) <= max_w) break;
            k--;
        }
        viz_text(cr, x, y, buf, ha, va, angle);
    }
    cairo_set_font_size(cr, size);
}

/* ------------------------------------------------------------------ ticks */

static int tick_decimals(double step) {
    for (int d = 0; d <= 12; d++) {
        double s = step * pow(10.0, d);
        if (fabs(s - nearbyint(s)) < 1e-6 * fmax(1.0, fabs(s))) return d;
    }
    return 12;
}

void viz_nice_ticks(double lo, double hi, int target, int integer, viz_ticks *t) {
    static const double mant[4] = {1.0, 2.0, 2.5, 5.0};
    t->n = 0;
    t->step = 1;
    if (!isfinite(lo) || !isfinite(hi)) return;
    if (hi < lo) {
        double tmp = lo;
        lo = hi;
        hi = tmp;
    }
    if (!(hi > lo)) {
        t->n = 1;
        t->v[0] = lo;
        return;
    }
    if (target < 2) target = 2;
    double raw = (hi - lo) / target;
    int e0 = (int)floor(log10(raw));
    double best_step = 0;
    int best_cnt = 0;
    double best_score = 1e300;
    for (int ex = e0 - 1; ex <= e0 + 1; ex++) {
        for (int m = 0; m < 4; m++) {
            double step = mant[m] * pow(10.0, ex);
            if (integer && (step < 1 || fabs(step - nearbyint(step)) > 1e-9)) continue;
            double i0 = ceil(lo / step - 1e-9), i1 = floor(hi / step + 1e-9);
            int cnt = (int)(i1 - i0) + 1;
            if (cnt < 2 || cnt > VIZ_MAX_TICKS) continue;
            /* prefer counts near the target; 2.5 is a less friendly step (more decimals) */
            double score = abs(cnt - target) + (m == 2 ? 2.5 : 0.0);
            if (score < best_score - 1e-12 || (fabs(score - best_score) <= 1e-12 && step > best_step)) {
                best_score = score;
                best_step = step;
                best_cnt = cnt;
            }
        }
    }
    if (best_cnt == 0) { /* range too small for integer steps: a single step of 1 */
        best_step = integer ? 1.0 : raw;
    }
    t->step = best_step;
    double i0 = ceil(lo / best_step - 1e-9), i1 = floor(hi / best_step + 1e-9);
    for (double i = i0; i <= i1 && t->n < VIZ_MAX_TICKS; i += 1) {
        double v = i * best_step;
        if (fabs(v) < best_step * 1e-9) v = 0;
        t->v[t->n++] = v;
    }
}

void viz_tick_label(double v, double step, char *buf, size_t n) {
    if (fabs(v) < step * 1e-9) v = 0;
    double av = fabs(v);
    if (v == 0 && step < 1e-4) {
        snprintf(buf, n, "0");
        return;
    }
    if (v != 0 && (av >= 1e6 || step < 1e-4)) {
        int p = (int)floor(log10(av)) - (int)floor(log10(step));
        if (p < 0) p = 0;
        if (p > 6) p = 6;
        snprintf(buf, n, "%.*e", p, v);
        /* drop a redundant exponent sign and zero padding: 1.5e+06 -> 1.5e6 */
        char *ep = strchr(buf, 'e');
        if (ep) {
            char *src = ep + 1, *dst = ep + 1;
            if (*src == '+') src++;
            else if (*src == '-') *dst++ = *src++;
            while (*src == '0' && src[1]) src++;
            memmove(dst, src, strlen(src) + 1);
        }
        return;
    }
    snprintf(buf, n, "%.*f", tick_decimals(step), v);
}

/* ------------------------------------------------------------------ axes */

#define TICK_LEN 4.0
#define TICK_PAD 3.0

void viz_axes_init(viz_axes *a, double x0, double x1, double y0, double y1) {
    memset(a, 0, sizeof *a);
    if (!(x1 > x0)) {
        double c = isfinite(x0) ? x0 : 0, d = fmax(0.5, fabs(c) * 0.1);
        x0 = c - d;
        x1 = c + d;
    }
    if (!(y1 > y0)) {
        double c = isfinite(y0) ? y0 : 0, d = fmax(0.5, fabs(c) * 0.1);
        y0 = c - d;
        y1 = c + d;
    }
    a->x0 = x0;
    a->x1 = x1;
    a->y0 = y0;
    a->y1 = y1;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Ticks whose labels do not collide: fewer ticks until they fit. */
static void fit_x_ticks(cairo_t *cr, viz_axes *a) {
    viz_font(cr, VIZ_FS_TICK, 0);
    for (int target = clampi((int)(a->w / 65), 3, 10); target >= 2; target--) {
        viz_nice_ticks(a->x0, a->x1, target, a->integer_x, &a->xt);
        double maxw = 0;
        for (int i = 0; i < a->xt.n; i++) {
            viz_tick_label(a->xt.v[i], a->xt.step, a->xtl[i], sizeof a->xtl[i]);
            maxw = fmax(maxw, viz_text_width(cr, a->xtl[i]));
        }
        double gap = a->xt.step / (a->x1 - a->x0) * a->w;
        if (a->xt.n < 2 || maxw + 10 <= gap) return;
    }
}

static void fit_y_ticks(cairo_t *cr, viz_axes *a, double h) {
    viz_font(cr, VIZ_FS_TICK, 0);
    double lh = viz_line_height(cr);
    for (int target = clampi((int)(h / 50), 3, 8); target >= 2; target--) {
        viz_nice_ticks(a->y0, a->y1, target, 0, &a->yt);
        double gap = a->yt.step / (a->y1 - a->y0) * h;
        if (a->yt.n < 2 || lh + 8 <= gap) break;
    }
    a->ytl_w = 0;
    for (int i = 0; i < a->yt.n; i++) {
        viz_tick_label(a->yt.v[i], a->yt.step, a->ytl[i], sizeof a->ytl[i]);
        a->ytl_w = fmax(a->ytl_w, viz_text_width(cr, a->ytl[i]));
    }
}

void viz_axes_margins(cairo_t *cr, viz_axes *a, double plot_h, double *left, double *top,
                      double *right, double *bottom) {
    viz_font(cr, VIZ_FS_PANEL, 1);
    double title_h = a->title ? viz_line_height(cr) + 8 : 0;
    viz_font(cr, VIZ_FS_LABEL, 0);
    double label_h = viz_line_height(cr);
    viz_font(cr, VIZ_FS_TICK, 0);
    double tick_h = viz_line_height(cr);
    fit_y_ticks(cr, a, plot_h);
    *top = ceil(fmax(title_h, tick_h / 2 + 2));
    *bottom = ceil(TICK_LEN + TICK_PAD + tick_h + (a->xlabel ? 7 + label_h : 0) + 2);
    *left = ceil(2 + (a->ylabel ? label_h + 8 : 0) +
                 (a->hide_ytick_labels ? 0 : a->ytl_w + TICK_PAD) + TICK_LEN);
    *right = 4;
}

void viz_axes_place(cairo_t *cr, viz_axes *a, double x, double y, double w, double h) {
    /* whole units: crisp frames in PNG */
    double x1 = round(x + w), y1 = round(y + h);
    a->x = round(x);
    a->y = round(y);
    a->w = x1 - a->x;
    a->h = y1 - a->y;
    fit_y_ticks(cr, a, a->h);
    fit_x_ticks(cr, a);
}

void viz_axes_layout(cairo_t *cr, viz_axes *a, double bx, double by, double bw, double bh) {
    double l, t, r, b;
    viz_axes_margins(cr, a, bh - 60, &l, &t, &r, &b);
    viz_axes_margins(cr, a, bh - t - b, &l, &t, &r, &b); /* with the real plot height */
    double x = bx + l, y = by + t, w = bw - l - r, h = bh - t - b;
    if (a->square) {
        double s = fmin(w, h);
        x += (w - s) / 2;
        y += (h - s) / 2;
        w = h = s;
    }
    viz_axes_place(cr, a, x, y, w, h);
    /* the last x tick label may stick out on the right: shrink until it does not */
    for (int it = 0; it < 3 && a->xt.n > 0; it++) {
        double last = viz_px(a, a->xt.v[a->xt.n - 1]);
        double over = last + viz_text_width(cr, a->xtl[a->xt.n - 1]) / 2 - (bx + bw - 1);
        if (over <= 0) break;
        viz_axes_place(cr, a, a->x, a->y, a->w - over, a->h);
    }
}

void viz_axes_back(cairo_t *cr, const viz_axes *a) {
    cairo_save(cr);
    cairo_set_line_width(cr, 1.0);
    viz_set_rgb(cr, VIZ_GRID, 1);
    for (int i = 0; i < a->xt.n; i++) {
        double px = round(viz_px(a, a->xt.v[i]));
        if (px <= a->x + 0.5 || px >= a->x + a->w - 0.5) continue;
        cairo_move_to(cr, px, a->y);
        cairo_line_to(cr, px, a->y + a->h);
    }
    for (int i = 0; i < a->yt.n; i++) {
        double py = round(viz_py(a, a->yt.v[i]));
        if (py <= a->y + 0.5 || py >= a->y + a->h - 0.5) continue;
        cairo_move_to(cr, a->x, py);
        cairo_line_to(cr, a->x + a->w, py);
    }
    cairo_stroke(cr);
    cairo_restore(cr);
}

void viz_axes_front(cairo_t *cr, const viz_axes *a) {
    cairo_save(cr);
    cairo_set_line_width(cr, 1.0);
    viz_set_rgb(cr, VIZ_FRAME, 1);
    cairo_rectangle(cr, a->x, a->y, a->w, a->h);
    for (int i = 0; i < a->xt.n; i++) {
        double px = round(viz_px(a, a->xt.v[i]));
        cairo_move_to(cr, px, a->y + a->h);
        cairo_line_to(cr, px, a->y + a->h + TICK_LEN);
    }
    for (int i = 0; i < a->yt.n; i++) {
        double py = round(viz_py(a, a->yt.v[i]));
        cairo_move_to(cr, a->x, py);
        cairo_line_to(cr, a->x - TICK_LEN, py);
    }
    cairo_stroke(cr);

    viz_set_rgb(cr, VIZ_TEXT, 1);
    viz_font(cr, VIZ_FS_TICK, 0);
    double tick_h = viz_line_height(cr);
    for (int i = 0; i < a->xt.n; i++)
        viz_text(cr, round(viz_px(a, a->xt.v[i])), a->y + a->h + TICK_LEN + TICK_PAD, a->xtl[i],
                 VIZ_HCENTER, VIZ_VTOP, 0);
    if (!a->hide_ytick_labels)
        for (int i = 0; i < a->yt.n; i++)
            viz_text(cr, a->x - TICK_LEN - TICK_PAD, round(viz_py(a, a->yt.v[i])), a->ytl[i],
                     VIZ_HRIGHT, VIZ_VMIDDLE, 0);

    viz_font(cr, VIZ_FS_LABEL, 0);
    if (a->xlabel)
        viz_text_fit(cr, a->x + a->w / 2, a->y + a->h + TICK_LEN + TICK_PAD + tick_h + 7,
                     a->xlabel, a->w, VIZ_HCENTER, VIZ_VTOP, 0);
    if (a->ylabel) {
        double xr = a->x - TICK_LEN - (a->hide_ytick_labels ? 0 : a->ytl_w + TICK_PAD) - 8;
        viz_text_fit(cr, xr, a->y + a->h / 2, a->ylabel, a->h, VIZ_HCENTER, VIZ_VBOTTOM,
                     -M_PI / 2);
    }
    if (a->title) {
        viz_font(cr, VIZ_FS_PANEL, 1);
        viz_text_fit(cr, a->x + a->w / 2, a->y - 8, a->title, a->w + 40, VIZ_HCENTER,
                     VIZ_VBOTTOM, 0);
    }
    cairo_restore(cr);
}

void viz_axes_clip(cairo_t *cr, const viz_axes *a) {
    cairo_save(cr);
    cairo_rectangle(cr, a->x, a->y, a->w, a->h);
    cairo_clip(cr);
}

/* ------------------------------------------------------------------ legend */

#define LEG_PAD 7.0
#define LEG_SWATCH 22.0
#define LEG_GAP 6.0

void viz_legend_size(cairo_t *cr, const viz_key *k, int n, double *w, double *h) {
    viz_font(cr, VIZ_FS_LEGEND, 0);
    double maxw = 0;
    for (int i = 0; i < n; i++) maxw = fmax(maxw, viz_text_width(cr, k[i].label));
    double row = viz_line_height(cr) + 6;
    *w = ceil(LEG_PAD + LEG_SWATCH + LEG_GAP + maxw + LEG_PAD);
    *h = ceil(LEG_PAD - 3 + n * row + LEG_PAD - 3);
}

static void draw_swatch(cairo_t *cr, const viz_key *k, double sx, double cy) {
    switch (k->kind) {
    case VIZ_KEY_LINE:
        cairo_set_line_width(cr, k->dashed ? 1.3 : 2.0);
        viz_set_rgb(cr, k->color, 1);
        if (k->dashed) {
            static const double dash[2] = {4.0, 3.0};
            cairo_set_dash(cr, dash, 2, 0);
        }
        cairo_move_to(cr, sx, cy);
        cairo_line_to(cr, sx + LEG_SWATCH, cy);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        break;
    case VIZ_KEY_BOX:
        cairo_rectangle(cr, sx + 2, cy - 5, LEG_SWATCH - 4, 10);
        viz_set_rgb(cr, k->color, k->alpha > 0 ? k->alpha : 1);
        cairo_fill(cr);
        break;
    case VIZ_KEY_MARKER:
        cairo_arc(cr, sx + LEG_SWATCH / 2, cy, 4.0, 0, 2 * M_PI);
        viz_set_rgb(cr, k->color, k->alpha > 0 ? k->alpha : 1);
        cairo_fill(cr);
        break;
    }
}

void viz_legend(cairo_t *cr, const viz_key *k, int n, double x, double y) {
    double w, h;
    viz_legend_size(cr, k, n, &w, &h);
    double row = viz_line_height(cr) + 6;
    x = round(x);
    y = round(y);
    cairo_save(cr);
    cairo_rectangle(cr, x + 0.5, y + 0.5, w - 1, h - 1);
    cairo_set_source_rgba(cr, 1, 1, 1, 0.92);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.80, 0.80, 0.82);
    cairo_set_line_width(cr, 1.0);
    cairo_stroke(cr);
    for (int i = 0; i < n; i++) {
        double cy = y + LEG_PAD - 3 + (i + 0.5) * row;
        double sx = x + LEG_PAD;
        draw_swatch(cr, &k[i], sx, cy);
        viz_set_rgb(cr, VIZ_TEXT, 1);
        viz_text(cr, sx + LEG_SWATCH + LEG_GAP, cy, k[i].label, VIZ_HLEFT, VIZ_VMIDDLE, 0);
    }
    cairo_restore(cr);
}

#define ROW_SEP 22.0

double viz_legend_row_width(cairo_t *cr, const viz_key *k, int n) {
    viz_font(cr, VIZ_FS_LEGEND, 0);
    double w = 0;
    for (int i = 0; i < n; i++)
        w += (i ? ROW_SEP : 0) + LEG_SWATCH + LEG_GAP + viz_text_width(cr, k[i].label);
    return w;
}

void viz_legend_row(cairo_t *cr, const viz_key *k, int n, double cx, double cy) {
    double x = cx - viz_legend_row_width(cr, k, n) / 2;
    cairo_save(cr);
    for (int i = 0; i < n; i++) {
        draw_swatch(cr, &k[i], x, cy);
        x += LEG_SWATCH + LEG_GAP;
        viz_set_rgb(cr, VIZ_TEXT, 1);
        viz_text(cr, x, cy, k[i].label, VIZ_HLEFT, VIZ_VMIDDLE, 0);
        x += viz_text_width(cr, k[i].label) + ROW_SEP;
    }
    cairo_restore(cr);
}

/* ------------------------------------------------------------------ colour map */

/* viridis at t = 0, 1/8, ..., 1 */
static const double VIRIDIS[9][3] = {
    {0.267, 0.005, 0.329}, {0.283, 0.156, 0.470}, {0.243, 0.287, 0.537},
    {0.192, 0.408, 0.556}, {0.149, 0.510, 0.557}, {0.122, 0.620, 0.537},
    {0.208, 0.718, 0.475}, {0.431, 0.808, 0.345}, {0.993, 0.906, 0.144},
};

viz_rgb viz_cmap(double t) {
    if (!(t > 0)) t = 0;
    if (t > 1) t = 1;
    double u = t * 8;
    int i = (int)u;
    if (i > 7) i = 7;
    double f = u - i;
    viz_rgb c = {VIRIDIS[i][0] + f * (VIRIDIS[i + 1][0] - VIRIDIS[i][0]),
                 VIRIDIS[i][1] + f * (VIRIDIS[i + 1][1] - VIRIDIS[i][1]),
                 VIRIDIS[i][2] + f * (VIRIDIS[i + 1][2] - VIRIDIS[i][2])};
    return c;
}

static void colorbar_ticks(cairo_t *cr, double h, double vmin, double vmax, viz_ticks *t,
                           char labels[][32], double *maxw) {
    viz_font(cr, VIZ_FS_TICK, 0);
    double lh = viz_line_height(cr);
    for (int target = clampi((int)(h / 60), 3, 7); target >= 2; target--) {
        viz_nice_ticks(vmin, vmax, target, 0, t);
        if (t->n < 2 || t->step / (vmax - vmin) * h >= lh + 8) break;
    }
    *maxw = 0;
    for (int i = 0; i < t->n; i++) {
        viz_tick_label(t->v[i], t->step, labels[i], 32);
        *maxw = fmax(*maxw, viz_text_width(cr, labels[i]));
    }
}

double viz_colorbar_width(cairo_t *cr, double w, double vmin, double vmax, const char *label) {
    viz_ticks t;
    char labels[VIZ_MAX_TICKS][32];
    double maxw;
    colorbar_ticks(cr, 300, vmin, vmax, &t, labels, &maxw);
    double total = w + TICK_LEN + TICK_PAD + maxw;
    if (label) {
        viz_font(cr, VIZ_FS_LABEL, 0);
        total += 8 + viz_line_height(cr);
    }
    return ceil(total);
}

double viz_colorbar(cairo_t *cr, double x, double y, double w, double h, double vmin, double vmax,
                    const char *label) {
    if (!(vmax > vmin)) vmax = vmin + 1;
    x = round(x);
    y = round(y);
    h = round(h);
    cairo_save(cr);
    cairo_pattern_t *p = cairo_pattern_create_linear(0, y + h, 0, y);
    for (int i = 0; i <= 8; i++)
        cairo_pattern_add_color_stop_rgb(p, i / 8.0, VIRIDIS[i][0], VIRIDIS[i][1], VIRIDIS[i][2]);
    cairo_rectangle(cr, x, y, w, h);
    cairo_set_source(cr, p);
    cairo_fill(cr);
    cairo_pattern_destroy(p);

    viz_ticks t;
    char labels[VIZ_MAX_TICKS][32];
    double maxw;
    colorbar_ticks(cr, h, vmin, vmax, &t, labels, &maxw);
    cairo_set_line_width(cr, 1.0);
    viz_set_rgb(cr, VIZ_FRAME, 1);
    cairo_rectangle(cr, x, y, w, h);
    for (int i = 0; i < t.n; i++) {
        double py = round(y + h - (t.v[i] - vmin) / (vmax - vmin) * h);
        cairo_move_to(cr, x + w, py);
        cairo_line_to(cr, x + w + TICK_LEN, py);
    }
    cairo_stroke(cr);
    viz_set_rgb(cr, VIZ_TEXT, 1);
    for (int i = 0; i < t.n; i++) {
        double py = round(y + h - (t.v[i] - vmin) / (vmax - vmin) * h);
        viz_text(cr, x + w + TICK_LEN + TICK_PAD, py, labels[i], VIZ_HLEFT, VIZ_VMIDDLE, 0);
    }
    double total = w + TICK_LEN + TICK_PAD + maxw;
    if (label) {
        viz_font(cr, VIZ_FS_LABEL, 0);
        viz_text(cr, x + total + 8, y + h / 2, label, VIZ_HCENTER, VIZ_VTOP, -M_PI / 2);
        total += 8 + viz_line_height(cr);
    }
    cairo_restore(cr);
    return total;
}

/* ------------------------------------------------------------------ scatter */

double viz_scatter_alpha(int n) {
    if (n > RF_VIZ_MAX_POINTS) n = RF_VIZ_MAX_POINTS;
    if (n < 1) n = 1;
    double a = 0.85 * sqrt(250.0 / n);
    return a < 0.12 ? 0.12 : a > 0.8 ? 0.8 : a;
}

void viz_scatter(cairo_t *cr, const viz_axes *a, const rf_matrix *m, int cx, int cy, viz_rgb c,
                 double radius, double alpha) {
    if (!m || m->n <= 0) return;
    int stride = (m->n + RF_VIZ_MAX_POINTS - 1) / RF_VIZ_MAX_POINTS;
    viz_axes_clip(cr, a);
    viz_set_rgb(cr, c, alpha);
    for (int i = 0; i < m->n; i += stride) {
        double x = m->x[(size_t)i * m->d + cx], y = m->x[(size_t)i * m->d + cy];
        if (!isfinite(x) || !isfinite(y)) continue;
        double px = viz_px(a, x), py = viz_py(a, y);
        if (px < a->x - radius || px > a->x + a->w + radius || py < a->y - radius ||
            py > a->y + a->h + radius)
            continue;
        cairo_arc(cr, px, py, radius, 0, 2 * M_PI);
        cairo_fill(cr);
    }
    cairo_restore(cr);
}

int viz_col_range(const rf_matrix *m, int c, double *lo, double *hi) {
    int any = 0;
    double a = 0, b = 0;
    for (int i = 0; m && i < m->n; i++) {
        double v = m->x[(size_t)i * m->d + c];
        if (!isfinite(v)) continue;
        if (!any || v < a) a = v;
        if (!any || v > b) b = v;
        any = 1;
    }
    *lo = a;
    *hi = b;
    return any;
}
