/* Per-row figures: the least likely rows (OOD) and a counterfactual path. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plot_common.h"
#include "renflow/dsp.h"

#define OUTER 14.0
#define LEGEND_H 26.0

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Channels of one window stacked with offsets (first channel on top); names at the left. */
static void draw_stack(cairo_t *cr, const viz_axes *a, const ex_names *nm, const float *x, int T, double fs,
                       double off, viz_rgb col, double width) {
    for (int h = 0; h < nm->n_draw; h++) {
        const float *y = x + (size_t)nm->draw[h] * T;
        viz_axes_clip(cr, a);
        cairo_set_line_width(cr, width);
        viz_set_rgb(cr, col, 1);
        for (int t = 0; t < T; t++) {
            const double v = isfinite(y[t]) ? y[t] - h * off : -h * off;
            const double px = viz_px(a, t / fs), py = viz_py(a, v);
            if (t) cairo_line_to(cr, px, py);
            else cairo_move_to(cr, px, py);
        }
        cairo_stroke(cr);
        cairo_restore(cr);
        /* the channel name in the left margin, beside its trace */
        viz_font(cr, VIZ_FS_TICK, 0);
        viz_set_rgb(cr, VIZ_TEXT, 1);
        viz_text_fit(cr, a->x - 4, viz_py(a, -h * off), nm->chan[h], 34, VIZ_HRIGHT, VIZ_VMIDDLE, 0);
    }
}

/* ---------------------------------------------------------------- OOD */

int ex_plot_ood(const char *path, const ex_names *nm, const ex_ood_plot *p, rf_err *e) {
    const int n = p->n, K = p->k, cols = 4, rows = (K + cols - 1) / cols;
    const int win = p->channels > 0;
    const double W = 1000, HH = 250, PH = win ? 60.0 + 36.0 * nm->n_draw : 170, pw = (W - 2 * OUTER) / cols;
    const char *title = "Out-of-distribution score: log-likelihood of every row, and the least likely rows";
    cairo_t *m = viz_scratch();
    const double top = viz_title_height(m, title);
    cairo_destroy(m);
    const double H = top + HH + rows * PH + OUTER;
    double *s = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!s) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(p->logp[i])) s[k++] = p->logp[i];
    qsort(s, (size_t)k, sizeof *s, cmp_d);
    double lo = k ? s[0] : 0, hi = k ? s[k - 1] : 1;
    if (k > 3) {
        const double med = s[k / 2], iqr = s[(3 * k) / 4] - s[k / 4];
        lo = fmax(lo, med - 12 * fmax(iqr, 1e-9));
    }
    if (!(hi > lo)) {
        lo -= 0.5;
        hi += 0.5;
    }
    enum { NB = 50 };
    double cnt[NB] = {0}, edges[NB + 1], cmax = 0;
    int below = n - k;
    for (int i = 0; i < k; i++) {
        if (s[i] < lo) {
            below++;
            continue;
        }
        int b = (int)((s[i] - lo) / (hi - lo) * NB);
        if (b >= NB) b = NB - 1;
        cnt[b]++;
    }
    for (int b = 0; b < NB; b++) cmax = fmax(cmax, cnt[b]);
    for (int b = 0; b <= NB; b++) edges[b] = lo + (hi - lo) * b / NB;
    free(s);
    viz_fig fig;
    int rc = viz_fig_open(&fig, path, W, H, e);
    if (rc) return rc;
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    viz_axes a;
    viz_axes_init(&a, lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo), 0, cmax * 1.08 + 1e-9);
    char xl[160];
    snprintf(xl, sizeof xl, "log p(x) (nats per row; bits/dim = -log p / (%g ln 2))", p->dim);
    a.xlabel = xl;
    a.ylabel = "rows";
    a.title = win ? "histogram of log p(x) (red: the least likely rows, drawn below)"
                  : "histogram of log p(x) (red: the least likely rows, drawn below over all rows' mean \xc2\xb1 sd in grey)";
    viz_axes_layout(cr, &a, OUTER, top, W - 2 * OUTER, HH - 8);
    viz_axes_back(cr, &a);
    viz_axes_clip(cr, &a);
    viz_set_rgb(cr, VIZ_BLUE, 0.55);
    for (int b = 0; b < NB; b++) {
        if (cnt[b] <= 0) continue;
        const double xl0 = viz_px(&a, edges[b]), xr = viz_px(&a, edges[b + 1]);
        cairo_rectangle(cr, xl0, viz_py(&a, cnt[b]), xr - xl0 - 0.5, viz_py(&a, 0) - viz_py(&a, cnt[b]));
    }
    cairo_fill(cr);
    cairo_set_line_width(cr, 2.0);
    viz_set_rgb(cr, VIZ_RED, 1);
    for (int j = 0; j < K; j++) {
        const double v = p->logp[p->idx[j]];
        const double px = isfinite(v) && v >= lo ? viz_px(&a, v) : a.x + 2;
        cairo_move_to(cr, px, a.y + a.h);
        cairo_line_to(cr, px, a.y + a.h - 14);
    }
    cairo_stroke(cr);
    cairo_restore(cr);
    viz_axes_front(cr, &a);
    if (below > 0) {
        char note[128];
        snprintf(note, sizeof note, "%d row%s below the range shown (or non-finite), marked at the left edge", below,
                 below == 1 ? "" : "s");
        ex_note(cr, &a, note);
    }
    const int D = (int)p->dim;
    double *xf = NULL, *lo_b = NULL, *hi_b = NULL;
    if (!win) {
        xf = malloc(sizeof(double) * (size_t)D * 3);
        if (xf) {
            lo_b = xf + D;
            hi_b = xf + 2 * (size_t)D;
            for (int j = 0; j < D; j++) {
                const double sh = p->shift ? p->shift[j] : 0, sc = p->scale ? p->scale[j] : 1;
                xf[j] = j;
                lo_b[j] = (p->all->mean[j] - p->all->sd[j] - sh) / sc;
                hi_b[j] = (p->all->mean[j] + p->all->sd[j] - sh) / sc;
            }
        }
    }
    for (int j = 0; j < K; j++) {
        const int i = p->idx[j], r = j / cols, c = j % cols;
        const float *x = p->x + (size_t)i * D;
        char t[160], sub[64] = "";
        if (p->subjects) {
            const cJSON *sn = p->subject_names ? cJSON_GetObjectItemCaseSensitive(p->subject_names, "subjects") : NULL;
            const cJSON *it = cJSON_IsArray(sn) ? cJSON_GetArrayItem(sn, p->subjects[i]) : NULL;
            if (cJSON_IsString(it)) snprintf(sub, sizeof sub, ", %s", it->valuestring);
            else snprintf(sub, sizeof sub, ", subj %d", p->subjects[i]);
        }
        snprintf(t, sizeof t, "#%d: row %d (%s%s)", j + 1, i, nm->cls[p->labels ? p->labels[i] : p->pred[i]], sub);
        double ylo = INFINITY, yhi = -INFINITY;
        viz_axes b;
        if (win) {
            double off = 0;
            for (int h = 0; h < nm->n_draw; h++) {
                double l = INFINITY, u = -INFINITY;
                ex_range_f(x + (size_t)nm->draw[h] * p->T, (size_t)p->T, &l, &u);
                if (isfinite(u)) off = fmax(off, u - l);
                ex_range(l - h * 0, &ylo, &yhi);
            }
            if (!(off > 0)) off = 1;
            off *= 1.05;
            double l = INFINITY, u = -INFINITY;
            for (int h = 0; h < nm->n_draw; h++) {
                double a0 = INFINITY, a1 = -INFINITY;
                ex_range_f(x + (size_t)nm->draw[h] * p->T, (size_t)p->T, &a0, &a1);
                ex_range(a0 - h * off, &l, &u);
                ex_range(a1 - h * off, &l, &u);
            }
            ex_pad(&l, &u, 0.05);
            u += 0.45 * off; /* room for the note */
            viz_axes_init(&b, 0, p->T / p->fs, l, u);
            b.hide_ytick_labels = 1;
            b.ylabel = NULL;
            b.xlabel = "time (s)";
            b.title = t;
            viz_axes_layout(cr, &b, OUTER + c * pw + 30, top + HH + r * PH, pw - 38, PH - 6);
            viz_axes_back(cr, &b);
            draw_stack(cr, &b, nm, x, p->T, p->fs, off, VIZ_RED, 0.9);
            viz_axes_front(cr, &b);
            char note[128];
            snprintf(note, sizeof note, "log p %.4g; range %.3g %s", p->logp[i], off / 1.05, nm->units);
            ex_note(cr, &b, note);
        } else {
            float *xz = malloc(sizeof(float) * (size_t)D);
            if (!xz) continue;
            for (int q = 0; q < D; q++) xz[q] = (float)((x[q] - (p->shift ? p->shift[q] : 0)) / (p->scale ? p->scale[q] : 1));
            x = xz;
            for (int q = 0; q < D; q++) {
                ex_range(x[q], &ylo, &yhi);
                if (lo_b) {
                    ex_range(lo_b[q], &ylo, &yhi);
                    ex_range(hi_b[q], &ylo, &yhi);
                }
            }
            ex_pad(&ylo, &yhi, 0.05);
            viz_axes_init(&b, -0.5, D - 0.5, ylo, yhi);
            b.integer_x = 1;
            b.xlabel = "feature index";
            b.ylabel = c == 0 ? (p->shift ? "standardised units" : nm->units) : NULL;
            b.title = t;
            viz_axes_layout(cr, &b, OUTER + c * pw, top + HH + r * PH, pw - 8, PH - 6);
            viz_axes_back(cr, &b);
            if (xf) ex_band(cr, &b, xf, lo_b, hi_b, D, VIZ_MUTED, 0.22);
            ex_line_f(cr, &b, 0, 1, x, D, VIZ_RED, 1.2, 1);
            viz_axes_front(cr, &b);
            char note[96];
            snprintf(note, sizeof note, "log p %.4g", p->logp[i]);
            ex_note(cr, &b, note);
            free(xz);
        }
    }
    free(xf);
    return viz_fig_close(&fig, e);
}

/* ---------------------------------------------------------------- counterfactual */

static void path_panel(cairo_t *cr, const ex_names *nm, const rf_counterfactual *cf, double bx, double by, double bw,
                       double bh) {
    const int C = nm->C, n = cf->steps;
    viz_key k[10];
    memset(k, 0, sizeof k);
    int nk = 0;
    for (int c = 0; c < C && nk < 10; c++) k[nk++] = (viz_key){nm->cls[c], ex_class_color(c), VIZ_KEY_LINE, 1, 0};
    double lw = 0, lh = 0;
    viz_legend_size(cr, k, nk, &lw, &lh);
    viz_axes a;
    viz_axes_init(&a, -0.02, 1.02, -0.02, 1.02);
    a.title = "p(class | x_t) along the path";
    a.xlabel = "t (0 = original, 1 = moved to the target class)";
    a.ylabel = "posterior probability";
    viz_axes_layout(cr, &a, bx, by, bw - lw - 10, bh); /* the class legend on the right */
    viz_axes_back(cr, &a);
    double *y = malloc(sizeof(double) * (size_t)n);
    if (y) {
        for (int c = 0; c < C; c++) {
            for (int s = 0; s < n; s++) y[s] = exp(cf->log_post[(size_t)s * C + c]);
            const int key = c == cf->from || c == cf->to;
            ex_line(cr, &a, cf->t, y, n, ex_class_color(c), key ? 2.2 : 1.1, key ? 1 : 0.6, 0);
            viz_axes_clip(cr, &a);
            viz_set_rgb(cr, ex_class_color(c), key ? 1 : 0.6);
            for (int s = 0; s < n; s++) {
                cairo_arc(cr, viz_px(&a, cf->t[s]), viz_py(&a, y[s]), key ? 3.2 : 2.2, 0, 2 * M_PI);
                cairo_fill(cr);
            }
            cairo_restore(cr);
        }
        free(y);
    }
    ex_hline(cr, &a, 0.5, VIZ_MUTED);
    viz_axes_front(cr, &a);
    viz_legend(cr, k, nk, a.x + a.w + 8, a.y + a.h / 2 - lh / 2);
}

int ex_plot_counterfactual(const char *path, const ex_names *nm, const rf_counterfactual *cf, int window,
                           int channels, int T, double fs, const rf_explain_bands *bands, const float *shift,
                           const float *scale, rf_err *e) {
    const int D = cf->D, C = nm->C, win = channels > 0, R = win ? nm->n_draw : 0;
    const float *x0 = cf->x, *x1 = cf->x + (size_t)(cf->steps - 1) * D;
    char title[256];
    snprintf(title, sizeof title, "Counterfactual (%s): row %d moved from %s to %s; p(%s | x): %.3f \xe2\x86\x92 %.3f",
             rf_cf_mode_name(cf->mode), window, nm->cls[cf->from], nm->cls[cf->to], nm->cls[cf->to],
             exp(cf->log_post[cf->to]), exp(cf->log_post[(size_t)(cf->steps - 1) * C + cf->to]));
    cairo_t *m = viz_scratch();
    const double top = viz_title_height(m, title);
    cairo_destroy(m);
    const double W = 1000, PH = win ? 150 : 200, BH = 230;
    const double H = top + LEGEND_H + (win ? R * PH : 2 * PH) + BH + OUTER;
    viz_fig fig;
    int rc = viz_fig_open(&fig, path, W, H, e);
    if (rc) return rc;
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    char k0[96], k1[96];
    snprintf(k0, sizeof k0, "original (%s)", nm->cls[cf->from]);
    snprintf(k1, sizeof k1, "counterfactual (t = 1, towards %s)", nm->cls[cf->to]);
    viz_key keys[3] = {{k0, VIZ_BLUE, VIZ_KEY_LINE, 1, 0}, {k1, VIZ_ORANGE, VIZ_KEY_LINE, 1, 0},
                       {"difference (counterfactual - original)", VIZ_RED, VIZ_KEY_LINE, 1, 0}};
    viz_legend_row(cr, keys, 3, W / 2, top + LEGEND_H / 2 - 4);
    const double y0 = top + LEGEND_H;
    const int B = bands->n;
    double *db = NULL; /* drawn channels x bands: dB change at t = 1 */
    if (win) {
        const double pw = (W - 2 * OUTER) / 3;
        const int64_t seg = rf_explain_seg_len(T, fs);
        const int nf = (int)rf_welch_nfreq(seg);
        double *buf = malloc(sizeof(double) * (size_t)T * 2), *p0 = malloc(sizeof(double) * (size_t)nf * 4);
        double *fr = p0 ? p0 + 2 * nf : NULL, *dd = malloc(sizeof(double) * (size_t)T);
        db = calloc((size_t)R * B, sizeof(double));
        for (int r = 0; r < R && buf && p0 && dd && db; r++) {
            const int ch = nm->draw[r];
            const float *a0 = x0 + (size_t)ch * T, *a1 = x1 + (size_t)ch * T;
            double lo = INFINITY, hi = -INFINITY;
            ex_range_f(a0, (size_t)T, &lo, &hi);
            ex_range_f(a1, (size_t)T, &lo, &hi);
            ex_pad(&lo, &hi, 0.05);
            char yl[96], t0[96], t1[96], t2[96];
            snprintf(yl, sizeof yl, "%s (%s)", nm->chan[r], nm->units);
            snprintf(t0, sizeof t0, "%s: original and counterfactual", nm->chan[r]);
            snprintf(t1, sizeof t1, "%s: difference", nm->chan[r]);
            snprintf(t2, sizeof t2, "%s: Welch PSD", nm->chan[r]);
            viz_axes a;
            viz_axes_init(&a, 0, T / fs, lo, hi);
            a.title = t0;
            a.ylabel = yl;
            a.xlabel = r == R - 1 ? "time (s)" : NULL;
            viz_axes_layout(cr, &a, OUTER, y0 + r * PH, pw - 8, PH - 4);
            viz_axes_back(cr, &a);
            ex_line_f(cr, &a, 0, 1 / fs, a0, T, VIZ_BLUE, 1.1, 0.9);
            ex_line_f(cr, &a, 0, 1 / fs, a1, T, VIZ_ORANGE, 1.1, 0.9);
            viz_axes_front(cr, &a);
            double dlo = INFINITY, dhi = -INFINITY;
            for (int t = 0; t < T; t++) {
                dd[t] = (double)a1[t] - a0[t];
                ex_range(dd[t], &dlo, &dhi);
            }
            const double amp = fmax(fabs(dlo), fabs(dhi));
            dlo = -amp;
            dhi = amp;
            ex_pad(&dlo, &dhi, 0.05);
            viz_axes_init(&a, 0, T / fs, dlo, dhi);
            a.title = t1;
            a.xlabel = r == R - 1 ? "time (s)" : NULL;
            viz_axes_layout(cr, &a, OUTER + pw, y0 + r * PH, pw - 8, PH - 4);
            viz_axes_back(cr, &a);
            for (int t = 0; t < T; t++) buf[t] = t / fs;
            ex_line(cr, &a, buf, dd, T, VIZ_RED, 1.0, 0.9, 0);
            viz_axes_front(cr, &a);
            /* spectra */
            for (int t = 0; t < T; t++) {
                buf[t] = a0[t];
                buf[T + t] = a1[t];
            }
            if (rf_welch_psd_rows(buf, 2, T, fs, seg, p0, NULL) == RF_OK) {
                for (int q = 0; q < B; q++) {
                    const double b0 = rf_band_power(p0, fs, seg, bands->lo[q], bands->hi[q]);
                    const double b1 = rf_band_power(p0 + nf, fs, seg, bands->lo[q], bands->hi[q]);
                    db[(size_t)q * R + r] = 10 * log10(fmax(b1, 1e-30) / fmax(b0, 1e-30));
                }
                double l2 = INFINITY, h2 = -INFINITY;
                const double fmaxp = fmin(fs / 2, bands->hi[B - 1] + 5);
                for (int k = 0; k < nf; k++) {
                    fr[k] = k * fs / seg;
                    if (k > 0 && fr[k] <= fmaxp) {
                        ex_range(log10(fmax(p0[k], 1e-30)), &l2, &h2);
                        ex_range(log10(fmax(p0[nf + k], 1e-30)), &l2, &h2);
                    }
                }
                if (l2 < h2 - 6) l2 = h2 - 6;
                ex_pad(&l2, &h2, 0.05);
                for (int k = 0; k < 2 * nf; k++) p0[k] = (k % nf) > 0 ? log10(fmax(p0[k], 1e-30)) : NAN;
                char pyl[96];
                snprintf(pyl, sizeof pyl, "log10 PSD (%s\xc2\xb2/Hz)", nm->units);
                viz_axes_init(&a, 0, fmaxp, l2, h2);
                a.title = t2;
                a.ylabel = pyl;
                a.xlabel = r == R - 1 ? "frequency (Hz)" : NULL;
                viz_axes_layout(cr, &a, OUTER + 2 * pw, y0 + r * PH, pw - 8, PH - 4);
                viz_axes_back(cr, &a);
                for (int q = 0; q < B; q++) {
                    ex_vline(cr, &a, bands->lo[q], VIZ_GRID);
                }
                ex_line(cr, &a, fr, p0, nf, VIZ_BLUE, 1.3, 0.95, 0);
                ex_line(cr, &a, fr, p0 + nf, nf, VIZ_ORANGE, 1.3, 0.95, 0);
                viz_axes_front(cr, &a);
            }
        }
        free(buf);
        free(p0);
        free(dd);
    } else {
        double *xi = malloc(sizeof(double) * (size_t)D * 3);
        if (xi) {
            double *ya = xi + D, *yb = xi + 2 * (size_t)D, lo = INFINITY, hi = -INFINITY;
            const char *units = shift ? "standardised units" : nm->units;
            for (int j = 0; j < D; j++) {
                const double sh = shift ? shift[j] : 0, sc = scale ? scale[j] : 1;
                xi[j] = j;
                ya[j] = (x0[j] - sh) / sc;
                yb[j] = (x1[j] - sh) / sc;
                ex_range(ya[j], &lo, &hi);
                ex_range(yb[j], &lo, &hi);
            }
            ex_pad(&lo, &hi, 0.05);
            viz_axes a;
            viz_axes_init(&a, -0.5, D - 0.5, lo, hi);
            a.integer_x = 1;
            a.title = "original and counterfactual";
            a.ylabel = units;
            viz_axes_layout(cr, &a, OUTER, y0, W - 2 * OUTER, PH - 4);
            viz_axes_back(cr, &a);
            ex_line(cr, &a, xi, ya, D, VIZ_BLUE, 1.6, 1, 0);
            ex_line(cr, &a, xi, yb, D, VIZ_ORANGE, 1.6, 1, 0);
            viz_axes_front(cr, &a);
            lo = 0;
            hi = 0;
            for (int j = 0; j < D; j++) {
                ya[j] = yb[j] - ya[j];
                ex_range(ya[j], &lo, &hi);
            }
            ex_pad(&lo, &hi, 0.05);
            viz_axes_init(&a, -0.5, D - 0.5, lo, hi);
            a.integer_x = 1;
            a.title = "difference (counterfactual - original)";
            a.xlabel = "feature index";
            a.ylabel = units;
            viz_axes_layout(cr, &a, OUTER, y0 + PH, W - 2 * OUTER, PH - 4);
            viz_axes_back(cr, &a);
            viz_rgb red = VIZ_RED;
            ex_bars(cr, &a, D, 1, ya, NULL, &red, 0.8);
            ex_hline(cr, &a, 0, VIZ_FRAME);
            viz_axes_front(cr, &a);
            free(xi);
        }
    }
    const double by = y0 + (win ? R * PH : 2 * PH);
    if (win && db) {
        path_panel(cr, nm, cf, OUTER, by, (W - 2 * OUTER) * 0.55, BH - 6);
        double lo = 0, hi = 0;
        for (size_t q = 0; q < (size_t)R * B; q++) ex_range(db[q], &lo, &hi);
        ex_pad(&lo, &hi, 0.08);
        viz_axes a;
        viz_axes_init(&a, -0.5, B - 0.5, lo, hi);
        char bxl[160] = "bars, left to right:";
        for (int r = 0; r < R; r++) {
            const size_t l = strlen(bxl);
            snprintf(bxl + l, sizeof bxl - l, "%s %s", r ? "," : "", nm->chan[r]);
        }
        a.title = "band power change at t = 1";
        a.ylabel = "dB (counterfactual / original)";
        a.xlabel = bxl;
        viz_axes_layout(cr, &a, OUTER + (W - 2 * OUTER) * 0.57, by, (W - 2 * OUTER) * 0.43, BH - 6);
        const char *bn[RF_EXPLAIN_MAX_BANDS];
        for (int q = 0; q < B; q++) bn[q] = bands->name[q];
        ex_category_ticks(&a, B, bn);
        viz_axes_back(cr, &a);
        viz_rgb col[8];
        static const viz_rgb greys[3] = {{0.25, 0.25, 0.30}, {0.50, 0.50, 0.55}, {0.72, 0.72, 0.76}};
        for (int r = 0; r < R && r < 8; r++) col[r] = r < 3 ? greys[r] : ex_class_color(r);
        ex_bars(cr, &a, B, R, db, NULL, col, 0.9);
        ex_hline(cr, &a, 0, VIZ_FRAME);
        viz_axes_front(cr, &a);
    } else {
        path_panel(cr, nm, cf, OUTER, by, W - 2 * OUTER, BH - 6);
    }
    free(db);
    return viz_fig_close(&fig, e);
}
