/* Per-class figures: feature profiles, prototype waveforms, spectra with band powers, and the
 * per-scale / per-band contributions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"
#include "plot_common.h"
#include "renflow/dsp.h"
#include "renflow/tsflow.h"

#define OUTER 14.0
#define LEGEND_H 26.0


/* ---------------------------------------------------------------- feature profiles */

int ex_plot_profiles(const char *path, const ex_names *nm, int D, const float *proto,
                     const rf_class_moments *dm, const rf_class_moments *sm, rf_err *e) {
    const int C = nm->C;
    const double W = 1000, PH = 170;
    cairo_t *m = viz_scratch();
    const char *title = "Class prototypes and class-conditional samples: feature profiles (model-standardised)";
    const double top = viz_title_height(m, title);
    cairo_destroy(m);
    const double H = top + LEGEND_H + C * PH + OUTER;
    double *x = malloc(sizeof(double) * (size_t)D * 4);
    if (!x) return rf_err_set(e, RF_ENOMEM, "out of memory");
    double *lo = x + D, *hi = x + 2 * (size_t)D, *pv = x + 3 * (size_t)D;
    for (int j = 0; j < D; j++) x[j] = j;
    viz_fig fig;
    int rc = viz_fig_open(&fig, path, W, H, e);
    if (rc) {
        free(x);
        return rc;
    }
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    viz_key keys[3];
    int nk = 0;
    if (dm) keys[nk++] = (viz_key){"data: class mean \xc2\xb1 sd", VIZ_BLUE, VIZ_KEY_BOX, 0.45, 0};
    keys[nk++] = (viz_key){"class-conditional samples: mean \xc2\xb1 sd", VIZ_ORANGE, VIZ_KEY_BOX, 0.45, 0};
    keys[nk++] = (viz_key){"decoded class mean f\xe2\x81\xbb\xc2\xb9(\xce\xbc_c) (prototype)", VIZ_TEXT, VIZ_KEY_LINE, 1, 1};
    viz_legend_row(cr, keys, nk, W / 2, top + LEGEND_H / 2 - 4);
    for (int c = 0; c < C; c++) {
        const double *smu = sm->mean + (size_t)c * D, *ssd = sm->sd + (size_t)c * D;
        const double *dmu = dm ? dm->mean + (size_t)c * D : NULL, *dsd = dm ? dm->sd + (size_t)c * D : NULL;
        double ylo = INFINITY, yhi = -INFINITY;
        for (int j = 0; j < D; j++) {
            pv[j] = proto[(size_t)c * D + j];
            ex_range(pv[j], &ylo, &yhi);
            ex_range(smu[j], &ylo, &yhi);
            if (dm) {
                ex_range(dmu[j] - dsd[j], &ylo, &yhi);
                ex_range(dmu[j] + dsd[j], &ylo, &yhi);
            } else {
                ex_range(smu[j] - ssd[j], &ylo, &yhi);
                ex_range(smu[j] + ssd[j], &ylo, &yhi);
            }
        }
        ex_pad(&ylo, &yhi, 0.05);
        char t[256];
        if (dm)
            snprintf(t, sizeof t, "class %s (%ld rows): r(sample mean, data mean) = %.3f, r(prototype, data mean) = %.3f",
                     nm->cls[c], dm->count[c], rf_explain_pearson(smu, dmu, D), rf_explain_pearson(pv, dmu, D));
        else
            snprintf(t, sizeof t, "class %s", nm->cls[c]);
        viz_axes a;
        viz_axes_init(&a, -0.5, D - 0.5, ylo, yhi);
        a.title = t;
        a.integer_x = 1;
        a.xlabel = c == C - 1 ? "feature index" : NULL;
        a.ylabel = nm->units;
        viz_axes_layout(cr, &a, OUTER, top + LEGEND_H + c * PH, W - 2 * OUTER, PH - 4);
        viz_axes_back(cr, &a);
        if (dm) {
            for (int j = 0; j < D; j++) {
                lo[j] = dmu[j] - dsd[j];
                hi[j] = dmu[j] + dsd[j];
            }
            ex_band(cr, &a, x, lo, hi, D, VIZ_BLUE, 0.16);
        }
        for (int j = 0; j < D; j++) {
            lo[j] = smu[j] - ssd[j];
            hi[j] = smu[j] + ssd[j];
        }
        ex_band(cr, &a, x, lo, hi, D, VIZ_ORANGE, 0.14);
        if (dm) ex_line(cr, &a, x, dmu, D, VIZ_BLUE, 1.8, 1, 0);
        ex_line(cr, &a, x, smu, D, VIZ_ORANGE, 1.5, 1, 0);
        ex_line(cr, &a, x, pv, D, VIZ_TEXT, 1.2, 0.9, 1);
        viz_axes_front(cr, &a);
    }
    free(x);
    return viz_fig_close(&fig, e);
}

/* ---------------------------------------------------------------- waveforms */

int ex_plot_waveforms(const char *path, const ex_names *nm, int channels, int T, double fs,
                      const float *proto, const float *sample, rf_err *e) {
    const int C = nm->C, Cs = C < 6 ? C : 6, R = nm->n_draw;
    const double pw = Cs <= 3 ? 330 : 250, PH = 150, W = 2 * OUTER + Cs * pw;
    char title[160];
    snprintf(title, sizeof title, "Decoded class means (prototypes) and one class-conditional sample per class%s",
             C > Cs ? " (first 6 classes)" : "");
    cairo_t *m = viz_scratch();
    const double top = viz_title_height(m, title);
    cairo_destroy(m);
    const double H = top + LEGEND_H + R * PH + OUTER;
    const size_t D = (size_t)channels * T;
    viz_fig fig;
    int rc = viz_fig_open(&fig, path, W, H, e);
    if (rc) return rc;
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    viz_key keys[2] = {{"prototype f\xe2\x81\xbb\xc2\xb9(\xce\xbc_c) (class colour)", VIZ_TEXT, VIZ_KEY_LINE, 1, 0},
                       {"a class-conditional sample", VIZ_MUTED, VIZ_KEY_LINE, 1, 0}};
    viz_legend_row(cr, keys, sample ? 2 : 1, W / 2, top + LEGEND_H / 2 - 4);
    for (int r = 0; r < R; r++) {
        const int ch = nm->draw[r];
        double ylo = INFINITY, yhi = -INFINITY;
        for (int c = 0; c < Cs; c++) {
            ex_range_f(proto + c * D + (size_t)ch * T, (size_t)T, &ylo, &yhi);
            if (sample) ex_range_f(sample + c * D + (size_t)ch * T, (size_t)T, &ylo, &yhi);
        }
        const double amp = fmax(fabs(ylo), fabs(yhi));
        ylo = -amp;
        yhi = amp;
        ex_pad(&ylo, &yhi, 0.05);
        for (int c = 0; c < Cs; c++) {
            viz_axes a;
            char yl[96], t[96];
            snprintf(yl, sizeof yl, "%s (%s)", nm->chan[r], nm->units);
            snprintf(t, sizeof t, "%s", nm->cls[c]);
            viz_axes_init(&a, 0, T / fs, ylo, yhi);
            a.title = r == 0 ? t : NULL;
            a.xlabel = r == R - 1 ? "time (s)" : NULL;
            a.ylabel = c == 0 ? yl : NULL;
            a.hide_ytick_labels = c > 0;
            viz_axes_layout(cr, &a, OUTER + c * pw, top + LEGEND_H + r * PH, pw - 6, PH - 4);
            viz_axes_back(cr, &a);
            if (sample) ex_line_f(cr, &a, 0, 1 / fs, sample + c * D + (size_t)ch * T, T, VIZ_MUTED, 0.8, 0.75);
            ex_line_f(cr, &a, 0, 1 / fs, proto + c * D + (size_t)ch * T, T, ex_class_color(c), 1.6, 1);
            viz_axes_front(cr, &a);
        }
    }
    return viz_fig_close(&fig, e);
}

/* ---------------------------------------------------------------- spectra */

static double lg(double v) { return log10(fmax(v, 1e-30)); }

int ex_plot_spectra(const char *path, const ex_names *nm, const rf_explain_bands *b,
                    const rf_class_spectra *data, const rf_class_spectra *samp,
                    const rf_class_spectra *proto, rf_err *e) {
    const int C = nm->C, R = nm->n_draw, B = b->n, nf = samp->nfreq;
    const double fs = samp->fs, fmaxp = fmin(fs / 2, b->hi[B - 1] + 5);
    const double pw = 262, PH = 190, W = 2 * OUTER + 4 * pw;
    const char *title = "Welch power spectra per class: data, class-conditional samples, decoded prototypes";
    cairo_t *m = viz_scratch();
    const double top = viz_title_height(m, title);
    cairo_destroy(m);
    const double H = top + LEGEND_H + R * PH + OUTER;
    double *fr = malloc(sizeof(double) * (size_t)nf * 2), *y = fr ? fr + nf : NULL;
    double *bp = malloc(sizeof(double) * (size_t)3 * C * samp->channels * B);
    if (!fr || !bp) {
        free(fr);
        free(bp);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int k = 0; k < nf; k++) fr[k] = k * fs / samp->seg_len;
    const rf_class_spectra *src[3] = {data, samp, proto};
    const size_t nbp = (size_t)C * samp->channels * B;
    for (int q = 0; q < 3; q++)
        if (src[q]) rf_class_spectra_band_powers(src[q], b, bp + q * nbp);
    viz_fig fig;
    int rc = viz_fig_open(&fig, path, W, H, e);
    if (rc) {
        free(fr);
        free(bp);
        return rc;
    }
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    viz_key keys[12];
    int nk = 0;
    for (int c = 0; c < C && nk < 10; c++) keys[nk++] = (viz_key){nm->cls[c], ex_class_color(c), VIZ_KEY_LINE, 1, 0};
    viz_legend_row(cr, keys, nk, W / 2, top + LEGEND_H / 2 - 4);
    char ylab[128], bylab[128];
    snprintf(ylab, sizeof ylab, "log10 PSD (%s\xc2\xb2/Hz)", nm->units);
    snprintf(bylab, sizeof bylab, "log10 band power (%s\xc2\xb2)", nm->units);
    static const char *coltitle[3] = {"data (mean over windows)", "class-conditional samples", "decoded prototypes"};
    for (int r = 0; r < R; r++) {
        const int ch = nm->draw[r];
        /* shared y range of the PSD panels: data and samples, at most 6 decades below the top */
        double ylo = INFINITY, yhi = -INFINITY;
        for (int q = 0; q < 3; q++) {
            if (!src[q]) continue;
            for (int c = 0; c < C; c++)
                for (int k = 1; k < nf; k++)
                    if (fr[k] <= fmaxp) ex_range(lg(src[q]->psd[((size_t)c * samp->channels + ch) * nf + k]), &ylo, &yhi);
        }
        if (isfinite(yhi) && ylo < yhi - 6) ylo = yhi - 6;
        ex_pad(&ylo, &yhi, 0.04);
        for (int q = 0; q < 3; q++) {
            viz_axes a;
            char t[128];
            snprintf(t, sizeof t, "%s: %s", nm->chan[r], coltitle[q]);
            viz_axes_init(&a, 0, fmaxp, ylo, yhi);
            a.title = t;
            a.xlabel = r == R - 1 ? "frequency (Hz)" : NULL;
            a.ylabel = q == 0 ? ylab : NULL;
            a.hide_ytick_labels = q > 0;
            viz_axes_layout(cr, &a, OUTER + q * pw, top + LEGEND_H + r * PH, pw - 6, PH - 4);
            viz_axes_back(cr, &a);
            viz_axes_clip(cr, &a);
            for (int k = 0; k < B; k++) { /* bands: alternate shading, names at the top */
                if (k % 2 == 0) {
                    const double x0 = viz_px(&a, b->lo[k]), x1 = viz_px(&a, fmin(b->hi[k], fmaxp));
                    cairo_rectangle(cr, x0, a.y, x1 - x0, a.h);
                    cairo_set_source_rgba(cr, 0.5, 0.5, 0.55, 0.08);
                    cairo_fill(cr);
                }
                viz_font(cr, 8.5, 0);
                viz_set_rgb(cr, VIZ_MUTED, 1);
                const double bw = viz_px(&a, fmin(b->hi[k], fmaxp)) - viz_px(&a, b->lo[k]);
                if (b->lo[k] < fmaxp && viz_text_width(cr, b->name[k]) <= bw + 6)
                    viz_text(cr, viz_px(&a, (b->lo[k] + fmin(b->hi[k], fmaxp)) / 2), a.y + 3, b->name[k], VIZ_HCENTER,
                             VIZ_VTOP, 0);
            }
            cairo_restore(cr);
            if (!src[q]) {
                ex_note(cr, &a, "no labels: no per-class data");
            } else {
                for (int c = 0; c < C; c++) {
                    const double *p = src[q]->psd + ((size_t)c * samp->channels + ch) * nf;
                    for (int k = 0; k < nf; k++) y[k] = k > 0 ? lg(p[k]) : NAN;
                    ex_line(cr, &a, fr, y, nf, ex_class_color(c), 1.5, 0.95, 0);
                }
            }
            viz_axes_front(cr, &a);
        }
        /* band powers: data (filled circles) and samples (open squares), joined per class */
        double blo = INFINITY, bhi = -INFINITY;
        for (int q = 0; q < 2; q++)
            if (src[q])
                for (int c = 0; c < C; c++)
                    for (int k = 0; k < B; k++) ex_range(lg(bp[q * nbp + ((size_t)c * samp->channels + ch) * B + k]), &blo, &bhi);
        ex_pad(&blo, &bhi, 0.08);
        viz_axes a;
        char t[128];
        snprintf(t, sizeof t, data ? "%s: band power (\xe2\x97\x8f data, \xe2\x96\xa1 samples)" : "%s: band power (\xe2\x96\xa1 samples)",
                 nm->chan[r]);
        viz_axes_init(&a, -0.5, B - 0.5, blo, bhi);
        a.title = t;
        a.ylabel = bylab;
        viz_axes_layout(cr, &a, OUTER + 3 * pw + 8, top + LEGEND_H + r * PH, pw - 14, PH - 4);
        const char *bn[RF_EXPLAIN_MAX_BANDS];
        for (int k = 0; k < B; k++) bn[k] = b->name[k];
        ex_category_ticks(&a, B, bn);
        viz_axes_back(cr, &a);
        viz_axes_clip(cr, &a);
        for (int c = 0; c < C; c++)
            for (int k = 0; k < B; k++) {
                const double xo = k + (C > 1 ? (c - (C - 1) / 2.0) * 0.7 / C : 0), px = viz_px(&a, xo);
                const double vd = data ? lg(bp[((size_t)c * samp->channels + ch) * B + k]) : NAN;
                const double vs = lg(bp[nbp + ((size_t)c * samp->channels + ch) * B + k]);
                viz_set_rgb(cr, ex_class_color(c), 1);
                if (isfinite(vd) && isfinite(vs)) {
                    cairo_set_line_width(cr, 1.0);
                    cairo_move_to(cr, px, viz_py(&a, vd));
                    cairo_line_to(cr, px, viz_py(&a, vs));
                    cairo_stroke(cr);
                }
                if (isfinite(vd)) {
                    cairo_arc(cr, px, viz_py(&a, vd), 3.4, 0, 2 * M_PI);
                    cairo_fill(cr);
                }
                if (isfinite(vs)) {
                    cairo_set_line_width(cr, 1.3);
                    cairo_rectangle(cr, px - 3, viz_py(&a, vs) - 3, 6, 6);
                    cairo_stroke(cr);
                }
            }
        cairo_restore(cr);
        viz_axes_front(cr, &a);
    }
    free(fr);
    free(bp);
    return viz_fig_close(&fig, e);
}

/* ---------------------------------------------------------------- contributions */

int ex_plot_contributions(const char *path, const ex_names *nm, const ex_contrib_plot *p, rf_err *e) {
    const int C = nm->C, S = p->S, F = p->F;
    const int wide = p->features && F > 0;
    const double W = wide ? 1000 : 3 * 330 + 2 * OUTER, PH = wide ? 230 : 330;
    const char *title = p->features ? "Contributions to the log-likelihood: per scale and per feature (integrated gradients)"
                                    : "Contributions to the log-likelihood: per scale and per frequency band (Shapley)";
    cairo_t *m = viz_scratch();
    const double top = viz_title_height(m, title);
    cairo_destroy(m);
    const double H = wide ? top + LEGEND_H + 3 * PH + OUTER : top + LEGEND_H + PH + OUTER;
    viz_rgb *col = malloc(sizeof(viz_rgb) * (size_t)C);
    double *v = malloc(sizeof(double) * (size_t)(S + 1) * C), *x = malloc(sizeof(double) * (size_t)(F > 0 ? F : 1));
    if (!col || !v || !x) {
        free(col);
        free(v);
        free(x);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int c = 0; c < C; c++) col[c] = ex_class_color(c);
    viz_fig fig;
    int rc = viz_fig_open(&fig, path, W, H, e);
    if (rc) {
        free(col);
        free(v);
        free(x);
        return rc;
    }
    cairo_t *cr = fig.cr;
    viz_fig_title(&fig, title);
    viz_key keys[10];
    int nk = 0;
    for (int c = 0; c < C && nk < 10; c++) keys[nk++] = (viz_key){nm->cls[c], col[c], VIZ_KEY_BOX, 0.85, 0};
    viz_legend_row(cr, keys, nk, W / 2, top + LEGEND_H / 2 - 4);
    /* (1) per scale */
    {
        double lo = 0, hi = 0;
        for (int s = 0; s <= S; s++)
            for (int c = 0; c < C; c++) {
                v[(size_t)s * C + c] = p->scale_bpd ? p->scale_bpd[(size_t)c * (S + 1) + s] : NAN;
                ex_range(v[(size_t)s * C + c], &lo, &hi);
            }
        ex_pad(&lo, &hi, 0.06);
        viz_axes a;
        viz_axes_init(&a, -0.5, S + 0.5, lo, hi);
        a.title = "NLL per scale (bits/dim of the scale)";
        a.ylabel = "bits per dimension";
        a.xlabel = S > 1 ? "scale (1 = finest, factored out first)" : NULL;
        const double bw = wide ? W - 2 * OUTER : 330 - 8;
        viz_axes_layout(cr, &a, OUTER, top + LEGEND_H, wide ? bw / 2.5 : bw, PH - 4);
        char lab[RF_TS_MAX_SCALES + 1][24];
        const char *lp[RF_TS_MAX_SCALES + 1];
        for (int s = 0; s < S; s++) {
            if (S > 1) snprintf(lab[s], sizeof lab[s], "%d", s + 1);
            else snprintf(lab[s], sizeof lab[s], "all");
            lp[s] = lab[s];
        }
        snprintf(lab[S], sizeof lab[S], "class");
        lp[S] = lab[S];
        ex_category_ticks(&a, S + 1, lp);
        viz_axes_back(cr, &a);
        ex_bars(cr, &a, S + 1, C, v, NULL, col, 0.85);
        ex_hline(cr, &a, 0, VIZ_FRAME);
        viz_axes_front(cr, &a);
        if (S == 1) ex_note(cr, &a, "one scale (no multi-scale split)");
        if (wide) { /* what the panels below show, beside the scale panel */
            static const char *lines[4] = {
                "Per feature: integrated gradients along the straight path from the model's",
                "standardisation centre b to each row; summed over features they give v(x) - v(b).",
                "Positive: the feature's value raises the target; negative: it lowers it.",
                "Lines: class means over a seeded subsample of rows (explain.json: max_rows_per_class)."};
            viz_font(cr, VIZ_FS_LEGEND, 0);
            viz_set_rgb(cr, VIZ_TEXT, 1);
            const double lh = viz_line_height(cr) + 5, tx = OUTER + bw / 2.5 + 40;
            for (int k = 0; k < 4; k++) viz_text(cr, tx, a.y + 20 + k * lh, lines[k], VIZ_HLEFT, VIZ_VTOP, 0);
        }
    }
    if (F > 0) {
        for (int panel = 0; panel < 2; panel++) {
            const double *mv = panel == 0 ? p->att_lp : p->att_post, *se = panel == 0 ? p->att_lp_se : p->att_post_se;
            double lo = 0, hi = 0;
            for (size_t q = 0; q < (size_t)C * F; q++) {
                ex_range(mv[q] - (p->features || !isfinite(se[q]) ? 0 : se[q]), &lo, &hi);
                ex_range(mv[q] + (p->features || !isfinite(se[q]) ? 0 : se[q]), &lo, &hi);
            }
            ex_pad(&lo, &hi, 0.06);
            viz_axes a;
            const char *t = panel == 0 ? (p->features ? "integrated gradients of log p(x) (class mean)" : "Shapley values for log p(x)")
                                       : (p->features ? "integrated gradients of log p(own class | x) (class mean)"
                                                      : "Shapley values for log p(own class | x)");
            if (p->features) {
                viz_axes_init(&a, -0.5, F - 0.5, lo, hi);
                a.integer_x = 1;
                a.xlabel = "feature index";
            } else {
                viz_axes_init(&a, -0.5, F - 0.5, lo, hi);
                a.xlabel = "frequency band";
            }
            a.title = t;
            a.ylabel = p->features ? "nats" : "nats (class mean \xc2\xb1 se)";
            if (wide)
                viz_axes_layout(cr, &a, OUTER, top + LEGEND_H + (panel + 1) * PH, W - 2 * OUTER, PH - 4);
            else
                viz_axes_layout(cr, &a, OUTER + (panel + 1) * 330, top + LEGEND_H, 330 - 8, PH - 4);
            if (!p->features) ex_category_ticks(&a, F, p->fnames);
            viz_axes_back(cr, &a);
            if (p->features) {
                for (int j = 0; j < F; j++) x[j] = j;
                for (int c = 0; c < C; c++)
                    if (p->att_n[c] > 0) ex_line(cr, &a, x, mv + (size_t)c * F, F, col[c], 1.5, 0.95, 0);
            } else {
                double *vv = malloc(sizeof(double) * (size_t)F * C * 2);
                if (vv) {
                    for (int j = 0; j < F; j++)
                        for (int c = 0; c < C; c++) {
                            vv[(size_t)j * C + c] = p->att_n[c] > 0 ? mv[(size_t)c * F + j] : NAN;
                            vv[(size_t)F * C + (size_t)j * C + c] = se[(size_t)c * F + j];
                        }
                    ex_bars(cr, &a, F, C, vv, vv + (size_t)F * C, col, 0.85);
                    free(vv);
                }
            }
            ex_hline(cr, &a, 0, VIZ_FRAME);
            viz_axes_front(cr, &a);
        }
    }
    free(col);
    free(v);
    free(x);
    return viz_fig_close(&fig, e);
}
