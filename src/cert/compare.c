/* The comparison page of several certificates (`renflow certify --compare A.json B.json ...`):
 * DIR/index.html (inline CSS) with a side-by-side table of the key measurements (letter badges,
 * best value per row highlighted), the quality-versus-energy Pareto plot (DIR/pareto.svg and
 * DIR/pareto.png, drawn with the viz helpers) and every certificate's label (DIR/labels/). A
 * warning heads the page when the certificates were measured on different test data. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "label_internal.h"

#define MAX_GROUPS 8

typedef struct centry {
    const cJSON *cert;
    char name[200];     /* shown in the page */
    char source[512];   /* names[k] as given */
    char label[256];    /* labels/<file>.svg */
    char sha[65];
    int has_sha, sha_combined;
    char data_name[256];
    int group;          /* test data set: index into the groups */
} centry;

typedef struct ppoint {
    double x, y;        /* energy per 1000 evaluations (J), test NLL (nats) */
    int group;
    int is_ref;
    int estimated;      /* 1 estimated, 0 measured, -1 unknown */
    int front;
    char name[200];
} ppoint;

/* ------------------------------------------------------------------ names */

static const char *base_of(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static void display_name(const char *given, const cJSON *cert, int k, char *buf, size_t n) {
    char tmp[512];
    if (given && *given) {
        snprintf(tmp, sizeof tmp, "%s", given);
        size_t L = strlen(tmp);
        while (L > 1 && tmp[L - 1] == '/') tmp[--L] = '\0';
        const char *b = base_of(tmp);
        if (!strcmp(b, "certificate.json") && b > tmp + 1) {
            /* DIR/certificate.json: the directory names the certificate */
            tmp[b - tmp - 1] = '\0';
            snprintf(buf, n, "%s", base_of(tmp));
            return;
        }
        char nm[256];
        snprintf(nm, sizeof nm, "%s", b);
        L = strlen(nm);
        if (L > 5 && !strcmp(nm + L - 5, ".json")) nm[L - 5] = '\0';
        if (nm[0]) {
            snprintf(buf, n, "%s", nm);
            return;
        }
    }
    char mn[200];
    lbl_model_name(cert, mn, sizeof mn);
    if (strcmp(mn, "unnamed model")) snprintf(buf, n, "%.150s", mn);
    else snprintf(buf, n, "certificate %d", k + 1);
}

static void safe_file(const char *s, char *buf, size_t n) {
    size_t o = 0;
    for (const char *p = s; *p && o + 1 < n && o < 60; p++) {
        const char c = *p;
        buf[o++] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ? c : '_';
    }
    buf[o] = '\0';
}

/* ------------------------------------------------------------------ Pareto plot */

static const viz_rgb GROUP_RGB[MAX_GROUPS] = {{0.122, 0.467, 0.706}, {0.902, 0.435, 0.055}, {0.173, 0.627, 0.173},
                                              {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761},
                                              {0.498, 0.498, 0.498}, {0.737, 0.741, 0.133}};

static void mark_front(ppoint *p, int n) {
    for (int i = 0; i < n; i++) {
        p[i].front = 1;
        for (int j = 0; j < n && p[i].front; j++) {
            if (j == i || p[j].group != p[i].group) continue;
            if (p[j].x <= p[i].x && p[j].y <= p[i].y && (p[j].x < p[i].x || p[j].y < p[i].y)) p[i].front = 0;
        }
    }
}

static int cmp_x(const void *a, const void *b) {
    const ppoint *p = *(const ppoint *const *)a, *q = *(const ppoint *const *)b;
    return (p->x > q->x) - (p->x < q->x);
}

static void marker(cairo_t *cr, double x, double y, int square, double r) {
    if (square) cairo_rectangle(cr, x - r, y - r, 2 * r, 2 * r);
    else cairo_arc(cr, x, y, r, 0, 2 * M_PI);
}

#define PW 760.0
#define PH 500.0

static void draw_pareto(cairo_t *cr, viz_fig *f, const ppoint *pts, int np, int n_groups, int any_est, int all_est,
                        const centry *ce, int n) {
    (void)ce;
    (void)n;
    const double top = viz_fig_title(f, "Quality versus energy: lower left is better");
    int logx = 0;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < np; i++) {
        x0 = fmin(x0, pts[i].x);
        x1 = fmax(x1, pts[i].x);
        y0 = fmin(y0, pts[i].y);
        y1 = fmax(y1, pts[i].y);
    }
    if (np > 0 && x0 > 0 && x1 / x0 > 20) logx = 1;
    const double tx = logx ? log10(x0) : x0, tx1 = logx ? log10(x1) : x1;
    double dx = tx1 - tx, dy = y1 - y0;
    if (!(dx > 0)) dx = logx ? 1 : fmax(fabs(tx) * 0.2, 1e-6);
    if (!(dy > 0)) dy = fmax(fabs(y0) * 0.1, 0.5);
    viz_axes a;
    if (np > 0)
        viz_axes_init(&a, logx ? tx - 0.12 * dx : fmax(0, tx - 0.12 * dx), tx1 + 0.25 * dx, y0 - 0.1 * dy, y1 + 0.12 * dy);
    else
        viz_axes_init(&a, 0, 1, 0, 1);
    char xl[200];
    snprintf(xl, sizeof xl, "energy per 1000 density evaluations (J%s)%s", logx ? ", log scale" : "",
             all_est ? " \xe2\x80\x94 ESTIMATED from CPU time" : any_est ? " \xe2\x80\x94 * = ESTIMATED" : "");
    a.xlabel = xl;
    a.ylabel = "test negative log-likelihood (nats)";
    a.integer_x = logx;
    cairo_t *c = f->cr;
    (void)cr;
    /* room for the legend row at the bottom */
    viz_font(c, VIZ_FS_LEGEND, 0);
    const double leg_h = viz_line_height(c) + 14 + (n_groups > 1 ? viz_line_height(c) + 8 : 0);
    viz_axes_layout(c, &a, 14, top, PW - 28, PH - top - leg_h - 8);
    if (logx) { /* tick labels as plain numbers of joules: 0.001, 0.01, ... */
        for (int i = 0; i < a.xt.n; i++) {
            const double v = pow(10.0, a.xt.v[i]);
            lbl_fmt_sig(v, 2, a.xtl[i], sizeof a.xtl[i]);
        }
    }
    viz_axes_back(c, &a);
    if (np == 0) {
        viz_set_rgb(c, VIZ_MUTED, 1);
        viz_font(c, VIZ_FS_LABEL, 0);
        viz_text(c, a.x + a.w / 2, a.y + a.h / 2, "no certificate has both a test NLL and an energy measurement",
                 VIZ_HCENTER, VIZ_VMIDDLE, 0);
    }
    viz_axes_clip(c, &a);
    /* the fronts: joined in order of energy */
    const ppoint **fr = malloc(sizeof *fr * (size_t)(np > 0 ? np : 1));
    for (int g = 0; g < n_groups && fr; g++) {
        int m = 0;
        for (int i = 0; i < np; i++)
            if (pts[i].group == g && pts[i].front) fr[m++] = &pts[i];
        qsort(fr, (size_t)m, sizeof *fr, cmp_x);
        if (m >= 2) {
            cairo_set_line_width(c, 2.0);
            viz_set_rgb(c, GROUP_RGB[g % MAX_GROUPS], 0.85);
            for (int i = 0; i < m; i++) {
                const double px = viz_px(&a, logx ? log10(fr[i]->x) : fr[i]->x), py = viz_py(&a, fr[i]->y);
                if (i == 0) cairo_move_to(c, px, py);
                else cairo_line_to(c, px, py);
            }
            cairo_stroke(c);
        }
    }
    free(fr);
    /* points, then names */
    for (int i = 0; i < np; i++) {
        const double px = viz_px(&a, logx ? log10(pts[i].x) : pts[i].x), py = viz_py(&a, pts[i].y);
        const viz_rgb col = GROUP_RGB[pts[i].group % MAX_GROUPS];
        const double r = pts[i].is_ref ? 4.5 : 6;
        marker(c, px, py, pts[i].is_ref, r);
        if (pts[i].front) viz_set_rgb(c, col, 1);
        else cairo_set_source_rgb(c, 1, 1, 1);
        cairo_fill_preserve(c);
        cairo_set_line_width(c, pts[i].front ? 1.6 : 1.8);
        viz_set_rgb(c, pts[i].front ? (viz_rgb){0.1, 0.1, 0.1} : col, 1);
        cairo_stroke(c);
    }
    /* names: the first free place among a few around the point, not over another name or the frame */
    double (*boxes)[4] = malloc(sizeof *boxes * (size_t)(np > 0 ? np : 1));
    int nb = 0;
    for (int i = 0; i < np && boxes; i++) {
        const double px = viz_px(&a, logx ? log10(pts[i].x) : pts[i].x), py = viz_py(&a, pts[i].y);
        char lab[240];
        snprintf(lab, sizeof lab, "%s%s", pts[i].name, any_est && !all_est && pts[i].estimated == 1 ? " *" : "");
        viz_font(c, pts[i].is_ref ? 9.5 : 10.5, !pts[i].is_ref);
        viz_set_rgb(c, pts[i].is_ref ? VIZ_MUTED : VIZ_TEXT, 1);
        const double w = viz_text_width(c, lab), h = viz_line_height(c);
        /* candidate anchors: (dx, dy) of the box's left/bottom or right/bottom corner */
        static const double CAND[][3] = {{1, 9, -3},   {1, 9, 14},  {-1, -9, -3}, {-1, -9, 14}, {1, 9, -17},
                                         {1, 9, 28},   {-1, -9, -17}, {-1, -9, 28}, {1, 9, -31}, {1, 9, 42},
                                         {-1, -9, -31}, {-1, -9, 42}};
        const int NC = (int)(sizeof CAND / sizeof *CAND);
        int best = 0;
        double best_cost = INFINITY;
        for (int k = 0; k < NC; k++) {
            const double x0 = CAND[k][0] > 0 ? px + CAND[k][1] : px + CAND[k][1] - w;
            const double y1 = py + CAND[k][2], y0 = y1 - h;
            double cost = k * 0.01;
            if (x0 < a.x + 2 || x0 + w > a.x + a.w - 2 || y0 < a.y + 2 || y1 > a.y + a.h - 2) cost += 1000;
            for (int j = 0; j < nb; j++) {
                const double ox = fmin(x0 + w, boxes[j][2]) - fmax(x0, boxes[j][0]);
                const double oy = fmin(y1, boxes[j][3]) - fmax(y0, boxes[j][1]);
                if (ox > 0 && oy > 0) cost += 10 + ox * oy;
            }
            if (cost < best_cost) {
                best_cost = cost;
                best = k;
            }
        }
        const double x0 = CAND[best][0] > 0 ? px + CAND[best][1] : px + CAND[best][1] - w;
        const double y1 = py + CAND[best][2];
        boxes[nb][0] = x0 - 2;
        boxes[nb][1] = y1 - h - 2;
        boxes[nb][2] = x0 + w + 2;
        boxes[nb][3] = y1 + 2;
        nb++;
        viz_text(c, x0, y1, lab, VIZ_HLEFT, VIZ_VBOTTOM, 0);
    }
    free(boxes);
    cairo_restore(c);
    viz_axes_front(c, &a);
    /* legend: the marker styles, then (several data sets) the colours */
    static const char *const LK[3] = {"model on the Pareto front (joined)", "dominated model (hollow)", "reference model"};
    viz_font(c, VIZ_FS_LEGEND, 0);
    double lw = 0;
    for (int k = 0; k < 3; k++) lw += 22 + viz_text_width(c, LK[k]) + (k ? 24 : 0);
    double lx = PW / 2 - lw / 2;
    const double ly = PH - leg_h + 4 + viz_line_height(c) / 2;
    const viz_rgb c0 = n_groups > 1 ? VIZ_MUTED : GROUP_RGB[0];
    for (int k = 0; k < 3; k++) {
        const double mx = lx + 8;
        if (k == 0) {
            cairo_set_line_width(c, 2.0);
            viz_set_rgb(c, c0, 0.85);
            cairo_move_to(c, mx - 9, ly);
            cairo_line_to(c, mx + 9, ly);
            cairo_stroke(c);
        }
        marker(c, mx, ly, k == 2, k == 2 ? 4.5 : 5.5);
        if (k == 1) cairo_set_source_rgb(c, 1, 1, 1);
        else viz_set_rgb(c, c0, 1);
        cairo_fill_preserve(c);
        cairo_set_line_width(c, 1.6);
        viz_set_rgb(c, k == 1 ? c0 : (viz_rgb){0.1, 0.1, 0.1}, 1);
        cairo_stroke(c);
        viz_set_rgb(c, VIZ_TEXT, 1);
        viz_text(c, lx + 22, ly, LK[k], VIZ_HLEFT, VIZ_VMIDDLE, 0);
        lx += 22 + viz_text_width(c, LK[k]) + 24;
    }
    if (n_groups > 1) {
        viz_key gk[MAX_GROUPS];
        char gl[MAX_GROUPS][64];
        int m = n_groups < MAX_GROUPS ? n_groups : MAX_GROUPS;
        for (int g = 0; g < m; g++) {
            const centry *e0 = NULL;
            for (int i = 0; i < n && !e0; i++)
                if (ce[i].group == g) e0 = &ce[i];
            if (e0 && e0->has_sha) snprintf(gl[g], sizeof gl[g], "data set %d (%.10s\xe2\x80\xa6)", g + 1, e0->sha);
            else snprintf(gl[g], sizeof gl[g], "data set %d (not recorded)", g + 1);
            gk[g] = (viz_key){gl[g], GROUP_RGB[g], VIZ_KEY_MARKER, 1, 0};
        }
        viz_legend_row(c, gk, m, PW / 2, ly + viz_line_height(c) + 8);
    }
}

static int write_pareto(const char *dir, const ppoint *pts, int np, int n_groups, int any_est, int all_est,
                        const centry *ce, int n, rf_err *e) {
    static const char *const EXT[2] = {"svg", "png"};
    for (int k = 0; k < 2; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/pareto.%s", dir, EXT[k]);
        viz_fig f;
        int rc = viz_fig_open(&f, path, PW, PH, e);
        if (rc) return rc;
        draw_pareto(f.cr, &f, pts, np, n_groups, any_est, all_est, ce, n);
        if ((rc = viz_fig_close(&f, e))) return rc;
    }
    return RF_OK;
}

/* ------------------------------------------------------------------ HTML */

static const char *CSS =
    "body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;color:#1c1e22;margin:24px auto;max-width:1240px;"
    "padding:0 16px;line-height:1.4}\n"
    "h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:2px solid #223049;"
    "padding-bottom:4px}\n"
    ".lead{color:#555;margin:0 0 16px}\n"
    ".warn{background:#fff1d6;border:2px solid #d98200;padding:10px 14px;border-radius:6px;margin:14px 0}\n"
    ".warn b{color:#a85a00}\n"
    ".bad{background:#ffe5e5;border:2px solid #cc1212;padding:10px 14px;border-radius:6px;margin:14px 0}\n"
    "table.cmp{border-collapse:collapse;width:100%;font-size:14px}\n"
    "table.cmp th,table.cmp td{border-bottom:1px solid #dde0e5;padding:6px 9px;text-align:left;vertical-align:middle}\n"
    "table.cmp thead th{background:#223049;color:#fff;font-size:14px}\n"
    "table.cmp tr.sec td{background:#e8eaee;font-weight:bold;font-size:13px;letter-spacing:.04em}\n"
    "table.cmp td.what{color:#333;width:24%}\n"
    "table.cmp td.what small{color:#777;display:block;font-size:11px}\n"
    "td.best{background:#dcf3e2;font-weight:bold}\n"
    ".na{color:#999;font-style:italic}\n"
    ".badge{display:inline-block;min-width:20px;padding:1px 5px;margin-left:6px;border-radius:3px;color:#fff;"
    "font-weight:bold;text-align:center;font-size:13px}\n"
    ".badge.big{font-size:20px;min-width:30px;padding:2px 8px;margin-left:0}\n"
    ".badge.none{background:#fff;color:#999;border:1px solid #bbb}\n"
    ".pass{color:#00803b;font-weight:bold}.fail{color:#cc1212;font-weight:bold}.est{color:#cc6100;font-weight:bold}\n"
    ".sha{font-family:'DejaVu Sans Mono',monospace;font-size:12px}\n"
    "img.plot{width:760px;max-width:100%;border:1px solid #dde0e5}\n"
    ".labels{display:flex;flex-wrap:wrap;gap:18px}\n"
    ".labels figure{margin:0;width:380px}.labels img{width:100%;border:1px solid #ccd}\n"
    ".labels figcaption{font-size:13px;color:#444;margin-top:4px}\n"
    "footer{margin-top:30px;font-size:12.5px;color:#555;border-top:1px solid #ccd;padding-top:10px}\n";

static void badge_html(lbl_buf *b, char letter, int big) {
    char hex[8];
    if (!letter) {
        lbl_buf_printf(b, "<span class=\"badge none%s\" title=\"not rated\">&ndash;</span>", big ? " big" : "");
        return;
    }
    lbl_letter_hex(letter, hex);
    lbl_buf_printf(b, "<span class=\"badge%s\" style=\"background:%s%s\">%c</span>", big ? " big" : "", hex,
                   lbl_letter_dark_text(letter) ? ";color:#1c1e22" : "", letter);
}

static const cJSON *cmetric(const cJSON *cert, const char *key) {
    const cJSON *m = lbl_get(lbl_get(cert, "metrics"), key);
    return cJSON_IsObject(m) ? m : NULL;
}

/* best[i] = 1 where v[i] is the best finite value of its test data set (certificates on other data
 * are not compared), the set has at least two finite values and they are not all equal. */
static void best_cells(const double *v, const centry *ce, int n, int higher_better, int *best) {
    for (int i = 0; i < n; i++) best[i] = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        int cnt = 0, better = 0, differ = 0;
        for (int j = 0; j < n; j++) {
            if (ce[j].group != ce[i].group || !isfinite(v[j])) continue;
            cnt++;
            if (v[j] != v[i]) differ = 1;
            if (higher_better ? v[j] > v[i] : v[j] < v[i]) better = 1;
        }
        best[i] = cnt >= 2 && differ && !better;
    }
}

/* one metric row: values, badges, best highlighted */
static void metric_row(lbl_buf *b, const centry *ce, int n, const lbl_metric_desc *d) {
    int any = 0;
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    if (!v) {
        b->oom = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        v[i] = lbl_num(cmetric(ce[i].cert, d->key), "value");
        any |= cmetric(ce[i].cert, d->key) != NULL;
    }
    if (!any && d->classifier_only) {
        free(v);
        return;
    }
    int *best = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
    if (!best) {
        free(v);
        b->oom = 1;
        return;
    }
    best_cells(v, ce, n, d->higher_better, best);
    lbl_buf_puts(b, "<tr><td class=\"what\">");
    lbl_buf_xml(b, d->title);
    if (d->sub) {
        lbl_buf_puts(b, "<small>");
        lbl_buf_xml(b, d->sub);
        lbl_buf_printf(b, " (%s is better)</small>", d->higher_better ? "higher" : "lower");
    }
    lbl_buf_puts(b, "</td>");
    for (int i = 0; i < n; i++) {
        const cJSON *m = cmetric(ce[i].cert, d->key);
        const cJSON *rm = d->rating_key ? cmetric(ce[i].cert, d->rating_key) : m;
        lbl_buf_printf(b, "<td%s>", best[i] ? " class=\"best\"" : "");
        char t[96];
        lbl_fmt_metric(d, v[i], t, sizeof t);
        if (t[0]) {
            lbl_buf_xml(b, t);
            if (d->sec == LBL_SEC_ENERGY && lbl_bool(m, "estimated") == 1) lbl_buf_puts(b, " <span class=\"est\">(estimated)</span>");
        } else {
            lbl_buf_puts(b, "<span class=\"na\">not measured</span>");
        }
        const char L = lbl_letter(rm, "rating");
        if (L || lbl_bool(rm, "rated") == 1) badge_html(b, L, 0);
        lbl_buf_puts(b, "</td>");
    }
    lbl_buf_puts(b, "</tr>\n");
    free(v);
    free(best);
}

static void rating_row(lbl_buf *b, const centry *ce, int n, const char *title, const char *path, int big) {
    double *v = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    int *best = calloc((size_t)(n > 0 ? n : 1), sizeof(int));
    if (!v || !best) {
        free(v);
        free(best);
        b->oom = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const char L = lbl_letter(ce[i].cert, path);
        v[i] = L ? (double)(L - 'A') : NAN;
    }
    best_cells(v, ce, n, 0, best);
    lbl_buf_printf(b, "<tr><td class=\"what\">%s</td>", title);
    for (int i = 0; i < n; i++) {
        const char L = lbl_letter(ce[i].cert, path);
        lbl_buf_printf(b, "<td%s>", best[i] ? " class=\"best\"" : "");
        badge_html(b, L, big);
        if (big && lbl_bool(ce[i].cert, "rating.model.capped_by_guarantees") == 1)
            lbl_buf_puts(b, " <span class=\"fail\">capped: guarantee failed</span>");
        if (!L) lbl_buf_puts(b, " <span class=\"na\">not rated</span>");
        lbl_buf_puts(b, "</td>");
    }
    lbl_buf_puts(b, "</tr>\n");
    free(v);
    free(best);
}

static int build_html(lbl_buf *b, const centry *ce, int n, int n_groups, const ppoint *pts, int np, const char *missing) {
    char date[40];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", &tmv);
    lbl_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                    "<title>Model certificates compared</title>\n<style>\n");
    lbl_buf_puts(b, CSS);
    lbl_buf_puts(b, "</style>\n</head>\n<body>\n<h1>Model certificates compared</h1>\n");
    lbl_buf_printf(b, "<p class=\"lead\">%d certificate%s, side by side. Page made %s by renflow %s.</p>\n", n,
                   n == 1 ? "" : "s", date, RF_VERSION_STRING);
    /* different data */
    int n_known = 0, n_unknown = 0;
    for (int g = 0; g < n_groups; g++) {
        int known = 0;
        for (int i = 0; i < n; i++)
            if (ce[i].group == g) known = ce[i].has_sha;
        if (known) n_known++;
        else n_unknown++;
    }
    if (n_unknown && n > 1) {
        lbl_buf_puts(b, "<div class=\"warn\" id=\"unknown-data\"><b>Note:</b> the test data of ");
        int first = 1;
        for (int i = 0; i < n; i++)
            if (!ce[i].has_sha) {
                lbl_buf_puts(b, first ? "<b>" : ", <b>");
                lbl_buf_xml(b, ce[i].name);
                lbl_buf_puts(b, "</b>");
                first = 0;
            }
        lbl_buf_puts(b, " is not recorded (no SHA-256 fingerprint): this page cannot check that it is the same data "
                        "as the others'.</div>\n");
    }
    if (n_known > 1) {
        lbl_buf_puts(b, "<div class=\"warn\" id=\"different-data\"><b>Warning: these certificates were measured on "
                        "different test data</b> (their SHA-256 fingerprints differ), so their likelihoods and "
                        "ratings are <b>not comparable</b> across groups. Groups:<ul>\n");
        for (int g = 0; g < n_groups; g++) {
            lbl_buf_puts(b, "<li>");
            int first = 1;
            const centry *e0 = NULL;
            for (int i = 0; i < n; i++)
                if (ce[i].group == g) {
                    if (!e0) e0 = &ce[i];
                    lbl_buf_puts(b, first ? "<b>" : ", <b>");
                    lbl_buf_xml(b, ce[i].name);
                    lbl_buf_puts(b, "</b>");
                    first = 0;
                }
            lbl_buf_puts(b, ": ");
            if (e0 && e0->data_name[0]) {
                lbl_buf_xml(b, e0->data_name);
                lbl_buf_puts(b, ", ");
            }
            if (e0 && e0->has_sha) lbl_buf_printf(b, "SHA-256 <span class=\"sha\">%.16s&hellip;</span>", e0->sha);
            else lbl_buf_puts(b, "SHA-256 not recorded");
            lbl_buf_puts(b, "</li>\n");
        }
        lbl_buf_puts(b, "</ul></div>\n");
    }
    int nfail = 0;
    for (int i = 0; i < n; i++) {
        int f = 0;
        if (lbl_guarantees_verdict(ce[i].cert, &f, NULL) == 0) nfail++;
    }
    if (nfail)
        lbl_buf_printf(b, "<div class=\"bad\"><b class=\"fail\">%d model%s failed a numerical guarantee</b> (see the "
                          "Guarantees row and the labels): %s likelihoods or samples cannot be trusted, and %s overall rating "
                          "is capped at E.</div>\n",
                       nfail, nfail == 1 ? "" : "s", nfail == 1 ? "its" : "their", nfail == 1 ? "its" : "their");
    /* table */
    lbl_buf_puts(b, "<h2>Key measurements</h2>\n<table class=\"cmp\">\n<thead><tr><th>measurement</th>");
    for (int i = 0; i < n; i++) {
        lbl_buf_puts(b, "<th>");
        lbl_buf_xml(b, ce[i].name);
        lbl_buf_puts(b, "</th>");
    }
    lbl_buf_puts(b, "</tr></thead>\n<tbody>\n");
    lbl_buf_printf(b, "<tr class=\"sec\"><td colspan=\"%d\">RATINGS (A best &hellip; E worst)</td></tr>\n", n + 1);
    rating_row(b, ce, n, "Overall rating", "rating.model.compound_rating", 1);
    rating_row(b, ce, n, "Quality rating", "rating.model.quality_rating", 0);
    rating_row(b, ce, n, "Resource rating (cost and energy)", "rating.model.resource_rating", 0);
    lbl_buf_puts(b, "<tr><td class=\"what\">Rated against<small>reference model fitted on the same training data</small></td>");
    for (int i = 0; i < n; i++) {
        const char *rk = lbl_str(ce[i].cert, "rating.reference");
        const int av = lbl_bool(ce[i].cert, "rating.reference_available");
        lbl_buf_puts(b, "<td>");
        if (rk && av != 0) lbl_buf_xml(b, lbl_ref_display(rk));
        else lbl_buf_puts(b, "<span class=\"na\">no reference</span>");
        lbl_buf_puts(b, "</td>");
    }
    lbl_buf_puts(b, "</tr>\n<tr><td class=\"what\">Numerical guarantees<small>invertibility, volume change, stability</small></td>");
    for (int i = 0; i < n; i++) {
        int f = 0, u = 0;
        const int v = lbl_guarantees_verdict(ce[i].cert, &f, &u);
        if (v == 1) lbl_buf_puts(b, "<td class=\"pass\">&#10004; all passed</td>");
        else if (v == 2) lbl_buf_printf(b, "<td class=\"est\">&#10004; none failed, %d not verified</td>", u);
        else if (v == 0) lbl_buf_printf(b, "<td class=\"fail\">&#10008; %d FAILED</td>", f);
        else lbl_buf_puts(b, "<td class=\"na\">not checked</td>");
    }
    lbl_buf_puts(b, "</tr>\n");
    static const char *const SEC[LBL_N_SEC] = {"QUALITY", "COST", "ENERGY"};
    for (int s = 0; s < LBL_N_SEC; s++) {
        lbl_buf_printf(b, "<tr class=\"sec\"><td colspan=\"%d\">%s</td></tr>\n", n + 1, SEC[s]);
        for (int k = 0; k < lbl_n_metrics; k++)
            if (lbl_metrics[k].sec == (lbl_section_id)s) metric_row(b, ce, n, &lbl_metrics[k]);
        if (s == LBL_SEC_ENERGY) {
            lbl_buf_puts(b, "<tr><td class=\"what\">How the energy was obtained</td>");
            for (int i = 0; i < n; i++) {
                char em[160];
                const int m = lbl_energy_method(ce[i].cert, em, sizeof em);
                lbl_buf_printf(b, "<td class=\"%s\">", m == 1 ? "pass" : m == 0 ? "est" : "na");
                lbl_buf_xml(b, em);
                lbl_buf_puts(b, "</td>");
            }
            lbl_buf_puts(b, "</tr>\n");
        }
    }
    lbl_buf_printf(b, "<tr class=\"sec\"><td colspan=\"%d\">WHAT WAS MEASURED</td></tr>\n", n + 1);
    lbl_buf_puts(b, "<tr><td class=\"what\">Model</td>");
    for (int i = 0; i < n; i++) {
        char mk[256], mn[200];
        lbl_model_name(ce[i].cert, mn, sizeof mn);
        lbl_model_kind(ce[i].cert, mk, sizeof mk);
        lbl_buf_puts(b, "<td>");
        lbl_buf_xml(b, mn);
        lbl_buf_puts(b, "<br><small>");
        lbl_buf_xml(b, mk);
        lbl_buf_puts(b, "</small></td>");
    }
    lbl_buf_puts(b, "</tr>\n<tr><td class=\"what\">Test data<small>file and SHA-256 fingerprint</small></td>");
    for (int i = 0; i < n; i++) {
        lbl_buf_puts(b, "<td>");
        if (ce[i].data_name[0]) lbl_buf_xml(b, ce[i].data_name);
        else lbl_buf_puts(b, "<span class=\"na\">not recorded</span>");
        if (ce[i].has_sha) lbl_buf_printf(b, "<br><span class=\"sha\">%.16s&hellip;</span>", ce[i].sha);
        if (n_groups > 1) lbl_buf_printf(b, " <b>(data set %d)</b>", ce[i].group + 1);
        lbl_buf_puts(b, "</td>");
    }
    lbl_buf_puts(b, "</tr>\n<tr><td class=\"what\">Certificate file</td>");
    for (int i = 0; i < n; i++) {
        lbl_buf_puts(b, "<td><small>");
        if (ce[i].source[0]) lbl_buf_xml(b, ce[i].source);
        else lbl_buf_puts(b, "&ndash;");
        lbl_buf_puts(b, "</small></td>");
    }
    lbl_buf_puts(b, "</tr>\n</tbody></table>\n");
    lbl_buf_puts(b, "<p class=\"lead\">Green cells: the best value of the row among certificates on the same test data "
                    "(where they differ). The small letters rate each value against the certificate's own reference model.</p>\n");
    /* plot */
    lbl_buf_puts(b, "<h2>Quality versus energy</h2>\n<p>Each point is a model: to the left uses less energy, lower has a "
                    "better test likelihood. Filled points joined by a line are <b>non-dominated</b> (no other model "
                    "is better in both); hollow points are dominated. Squares are the reference models of the "
                    "certificates.");
    if (n_groups > 1) lbl_buf_puts(b, " <b>Colours separate the test data sets; each has its own front.</b>");
    lbl_buf_puts(b, "</p>\n<img class=\"plot\" src=\"pareto.svg\" alt=\"Pareto plot: test negative log-likelihood against "
                    "energy per 1000 evaluations\">\n");
    int nf = 0;
    for (int i = 0; i < np; i++) nf += pts[i].front;
    if (np > 0) {
        lbl_buf_puts(b, "<p>Non-dominated: ");
        int first = 1;
        for (int i = 0; i < np; i++)
            if (pts[i].front) {
                if (!first) lbl_buf_puts(b, ", ");
                lbl_buf_puts(b, "<b>");
                lbl_buf_xml(b, pts[i].name);
                lbl_buf_puts(b, "</b>");
                if (pts[i].is_ref) lbl_buf_puts(b, " (reference model)");
                if (n_groups > 1) lbl_buf_printf(b, " [data set %d]", pts[i].group + 1);
                first = 0;
            }
        lbl_buf_puts(b, ".</p>\n");
    }
    if (missing && *missing) {
        lbl_buf_puts(b, "<p class=\"na\">Not in the plot (no test NLL or no energy): ");
        lbl_buf_xml(b, missing);
        lbl_buf_puts(b, ".</p>\n");
    }
    (void)nf;
    /* labels */
    lbl_buf_puts(b, "<h2>Labels</h2>\n<div class=\"labels\">\n");
    for (int i = 0; i < n; i++) {
        lbl_buf_puts(b, "<figure><a href=\"");
        lbl_buf_xml(b, ce[i].label);
        lbl_buf_puts(b, "\"><img src=\"");
        lbl_buf_xml(b, ce[i].label);
        lbl_buf_puts(b, "\" alt=\"certificate label of ");
        lbl_buf_xml(b, ce[i].name);
        lbl_buf_puts(b, "\"></a><figcaption>");
        lbl_buf_xml(b, ce[i].name);
        lbl_buf_puts(b, "</figcaption></figure>\n");
    }
    lbl_buf_puts(b, "</div>\n<footer><b>How to read the ratings.</b> Every measurement is compared with the same "
                    "measurement of a reference model fitted on the same training data: index = reference / value "
                    "when lower is better, value / reference when higher is better. A: index &ge; 2 (at least twice as "
                    "good), B: &ge; 1.25, C: &ge; 0.8 (about as good as the reference), D: &ge; 0.5, E: below 0.5. The "
                    "overall rating is the geometric mean of the indices, half quality and half resources; a failed "
                    "numerical guarantee caps it at E. Energy marked <span class=\"est\">estimated</span> was computed "
                    "from CPU time and a per-core power figure because no energy counter (RAPL) was readable.</footer>\n"
                    "</body>\n</html>\n");
    return b->oom ? RF_ENOMEM : RF_OK;
}

/* ------------------------------------------------------------------ entry points */

static void add_point(ppoint *p, int *np, double x, double y, int group, int is_ref, int est, const char *name) {
    ppoint *q = &p[(*np)++];
    memset(q, 0, sizeof *q);
    q->x = x;
    q->y = y;
    q->group = group;
    q->is_ref = is_ref;
    q->estimated = est;
    snprintf(q->name, sizeof q->name, "%s", name);
}

int rf_cert_compare_write(const cJSON *const *certs, const char *const *names, int n, const char *out_dir, rf_err *e) {
    if (!certs || n < 1) return rf_err_set(e, RF_EARG, "nothing to compare: give at least one certificate");
    if (!out_dir || !*out_dir) return rf_err_set(e, RF_EARG, "no output directory for the comparison page");
    for (int i = 0; i < n; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "certificate %d", i + 1);
        int rc = rf_cert_check_schema(certs[i], names && names[i] ? names[i] : nm, e);
        if (rc) return rc;
    }
    centry *ce = calloc((size_t)n, sizeof *ce);
    /* the model and up to 3 references per certificate */
    ppoint *pts = calloc((size_t)n * 8, sizeof *pts);
    lbl_buf html = {0}, missing = {0};
    char(*gsha)[65] = NULL;
    int rc = !ce || !pts ? rf_err_set(e, RF_ENOMEM, "out of memory") : RF_OK;
    if (rc) goto done;
    if ((rc = lbl_mkdir_p(out_dir, e))) goto done;
    {
        char ld[4096];
        snprintf(ld, sizeof ld, "%s/labels", out_dir);
        if ((rc = lbl_mkdir_p(ld, e))) goto done;
    }
    /* names, data groups */
    int n_groups = 0;
    gsha = calloc((size_t)n, sizeof *gsha);
    if (!gsha) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        centry *c = &ce[i];
        c->cert = certs[i];
        display_name(names ? names[i] : NULL, certs[i], i, c->name, sizeof c->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(ce[j].name, c->name)) {
                char t[200];
                snprintf(t, sizeof t, "%.150s (%d)", c->name, i + 1);
                snprintf(c->name, sizeof c->name, "%s", t);
                break;
            }
        snprintf(c->source, sizeof c->source, "%s", names && names[i] ? names[i] : "");
        char sf[80];
        safe_file(c->name, sf, sizeof sf);
        snprintf(c->label, sizeof c->label, "labels/%d-%s.svg", i + 1, sf);
        c->has_sha = lbl_data_sha(c->cert, c->sha, &c->sha_combined);
        lbl_data_name(c->cert, c->data_name, sizeof c->data_name);
        /* group by SHA-256; certificates without one share the group "unknown" */
        c->group = -1;
        for (int g = 0; g < n_groups; g++)
            if (!strcmp(gsha[g], c->has_sha ? c->sha : "unknown")) c->group = g;
        if (c->group < 0) {
            c->group = n_groups;
            snprintf(gsha[n_groups], 65, "%s", c->has_sha ? c->sha : "unknown");
            n_groups++;
        }
    }
    /* points */
    int np = 0, any_est = 0, all_est = 1, any_pt = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *cert = ce[i].cert;
        const double x = 1000 * lbl_num(cert, "metrics.energy_log_density.value"), y = lbl_num(cert, "metrics.nll.value");
        const int est = lbl_bool(cert, "metrics.energy_log_density.estimated");
        if (isfinite(x) && isfinite(y) && x > 0 && np < n * 8) {
            add_point(pts, &np, x, y, ce[i].group, 0, est, ce[i].name);
            any_pt = 1;
            any_est |= est == 1;
            all_est &= est == 1;
        } else {
            if (missing.len) lbl_buf_puts(&missing, ", ");
            lbl_buf_puts(&missing, ce[i].name);
        }
        const cJSON *refs = lbl_get(cert, "references"), *r;
        cJSON_ArrayForEach(r, refs) {
            const char *rn = lbl_str(r, "name");
            const double rx = 1000 * lbl_num(r, "metrics.energy_log_density.value"), ry = lbl_num(r, "metrics.nll.value");
            if (!rn || !isfinite(rx) || !isfinite(ry) || !(rx > 0) || np >= n * 8) continue;
            /* the same reference on the same data: once */
            char nm[200];
            snprintf(nm, sizeof nm, "%s", lbl_ref_display(rn));
            int dup = 0;
            for (int j = 0; j < np; j++)
                if (pts[j].is_ref && pts[j].group == ce[i].group && !strncmp(pts[j].name, nm, strlen(nm))) dup = 1;
            if (dup) continue;
            const int rest = lbl_bool(r, "metrics.energy_log_density.estimated");
            add_point(pts, &np, rx, ry, ce[i].group, 1, rest, nm);
            any_est |= rest == 1;
            all_est &= rest == 1;
        }
    }
    if (!np) all_est = 0;
    (void)any_pt;
    mark_front(pts, np);
    /* files: labels, plot, page */
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", out_dir, ce[i].label);
        if ((rc = rf_cert_label_write(ce[i].cert, path, e))) goto done;
    }
    if ((rc = write_pareto(out_dir, pts, np, n_groups, any_est, all_est, ce, n, e))) goto done;
    if ((rc = build_html(&html, ce, n, n_groups, pts, np, missing.s))) {
        rf_err_set(e, RF_ENOMEM, "out of memory (building the comparison page)");
        goto done;
    }
    {
        char path[4096];
        snprintf(path, sizeof path, "%s/index.html", out_dir);
        rc = rf_write_file_atomic(path, html.s, html.len, e);
    }
done:
    lbl_buf_free(&html);
    lbl_buf_free(&missing);
    free(gsha);
    free(ce);
    free(pts);
    return rc;
}

int rf_cert_compare_files(const char *const *paths, int n, const char *out_dir, rf_err *e) {
    if (!paths || n < 1) return rf_err_set(e, RF_EARG, "nothing to compare: give at least one certificate file");
    cJSON **certs = calloc((size_t)n, sizeof *certs);
    if (!certs) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int rc = RF_OK;
    for (int i = 0; i < n && !rc; i++)
        if (!(certs[i] = rf_cert_read(paths[i], e))) rc = e ? e->code : RF_EFORMAT;
    if (!rc) rc = rf_cert_compare_write((const cJSON *const *)certs, paths, n, out_dir, e);
    for (int i = 0; i < n; i++) cJSON_Delete(certs[i]);
    free(certs);
    return rc;
}
