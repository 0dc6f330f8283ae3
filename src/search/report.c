/* Study reports of `renflow search` / `renflow study`: the optimisation history, fANOVA importance
 * and Pareto figures of a study, the best architecture as a block diagram, the study as JSON and
 * report.json. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../viz/draw.h"
#include "renflow/importance.h"
#include "renflow/pareto.h"
#include "renflow/search_job.h"
#include "renflow/tsflow.h"

/* ======================================================================================
 * Optimisation history
 * ====================================================================================== */

#define HIST_W 780.0
#define HIST_H 480.0

static int cmp_dbl(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile_sorted(const double *v, int n, double q) {
    if (n == 1) return v[0];
    double p = q * (n - 1);
    int i = (int)floor(p);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (p - i) * (v[i + 1] - v[i]);
}

/* A triangle marker pointing up (dir = 1) or down (dir = -1) at (x, y). */
static void triangle(cairo_t *cr, double x, double y, double r, int dir) {
    cairo_move_to(cr, x, y - dir * r);
    cairo_line_to(cr, x - r, y + dir * r * 0.7);
    cairo_line_to(cr, x + r, y + dir * r * 0.7);
    cairo_close_path(cr);
}

int rf_plot_search_history(const char *path, const char *title, const int *number, const double *value,
                           const int *status, int n, rf_direction dir, const char *ylabel, rf_err *e) {
    if (!path) return rf_err_set(e, RF_EARG, "history plot: no output path");
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    if (n < 1 || !number || !value || !status) return rf_err_set(e, RF_EARG, "%s: no trials to plot", path);
    const int maxim = dir == RF_MAXIMIZE;

    /* finite values of complete and pruned trials set the range; far outliers on the bad side are
     * drawn at the edge (beyond Q3 + 3 IQR when minimising, below Q1 - 3 IQR when maximising) */
    double *v = malloc(sizeof(double) * (size_t)n);
    if (!v) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int nv = 0, nfail = 0, ncomplete = 0, npruned = 0, xmin = number[0], xmax = number[0];
    for (int i = 0; i < n; i++) {
        if (number[i] < xmin) xmin = number[i];
        if (number[i] > xmax) xmax = number[i];
        if ((status[i] == RF_TRIAL_COMPLETE || status[i] == RF_TRIAL_PRUNED) && isfinite(value[i])) {
            v[nv++] = value[i];
            ncomplete += status[i] == RF_TRIAL_COMPLETE;
            npruned += status[i] == RF_TRIAL_PRUNED;
        } else {
            nfail++;
        }
    }
    double lo = 0, hi = 1, cap = NAN;
    int nclipped = 0;
    if (nv > 0) {
        qsort(v, (size_t)nv, sizeof *v, cmp_dbl);
        lo = v[0];
        hi = v[nv - 1];
        if (nv >= 5) {
            double q1 = quantile_sorted(v, nv, 0.25), q3 = quantile_sorted(v, nv, 0.75), iqr = q3 - q1;
            if (iqr > 0) {
                if (!maxim && hi > q3 + 3 * iqr) {
                    cap = q3 + 3 * iqr;
                    for (int k = 0; k < nv; k++) nclipped += v[k] > cap;
                    hi = cap;
                } else if (maxim && lo < q1 - 3 * iqr) {
                    cap = q1 - 3 * iqr;
                    for (int k = 0; k < nv; k++) nclipped += v[k] < cap;
                    lo = cap;
                }
            }
        }
    }
    free(v);
    if (!(hi > lo)) {
        double m = fabs(lo) > 0 ? 0.05 * fabs(lo) : 0.5;
        lo -= m;
        hi += m;
    }
    double pad = 0.07 * (hi - lo);
    /* room at the bottom for the failed-trial ticks */
    double ylo = lo - pad - (nfail > 0 ? 0.06 * (hi - lo) : 0), yhi = hi + pad;
    double xpad = xmax > xmin ? 0.03 * (xmax - xmin) : 0.6;

    viz_fig fig;
    rc = viz_fig_open(&fig, path, HIST_W, HIST_H, e);
    if (rc != RF_OK) return rc;
    cairo_t *cr = fig.cr;
    double top = viz_fig_title(&fig, title);
    viz_font(cr, VIZ_FS_LEGEND, 0);
    double legend_h = viz_line_height(cr) + 16;
    viz_font(cr, VIZ_FS_TICK, 0);
    double note_h = nclipped ? viz_line_height(cr) + 6 : 0;
    viz_axes a;
    viz_axes_init(&a, xmin - xpad, xmax + xpad, ylo, yhi);
    a.xlabel = "trial number";
    char yl[160];
    snprintf(yl, sizeof yl, "%s (%s is better)", ylabel && *ylabel ? ylabel : "objective", maxim ? "higher" : "lower");
    a.ylabel = yl;
    a.integer_x = 1;
    viz_axes_layout(cr, &a, 14, top, HIST_W - 30, HIST_H - top - 8 - legend_h - note_h);
    viz_axes_back(cr, &a);
    viz_axes_clip(cr, &a);

    /* best so far: a step line over the complete trials in number order */
    int *ord = malloc(sizeof(int) * (size_t)n);
    int best_i = -1;
    if (ord) {
        int m = 0;
        for (int i = 0; i < n; i++)
            if (status[i] == RF_TRIAL_COMPLETE && isfinite(value[i])) ord[m++] = i;
        /* insertion sort by number (n is small) */
        for (int p = 1; p < m; p++) {
            int x = ord[p], q = p - 1;
            while (q >= 0 && number[ord[q]] > number[x]) {
                ord[q + 1] = ord[q];
                q--;
            }
            ord[q + 1] = x;
        }
        if (m > 0) {
            cairo_set_line_width(cr, 2.2);
            viz_set_rgb(cr, VIZ_ORANGE, 1);
            double bv = value[ord[0]];
            best_i = ord[0];
            cairo_move_to(cr, viz_px(&a, number[ord[0]]), viz_py(&a, bv));
            for (int p = 1; p < m; p++) {
                double x = value[ord[p]];
                if (maxim ? x > bv : x < bv) {
                    cairo_line_to(cr, viz_px(&a, number[ord[p]]), viz_py(&a, bv));
                    bv = x;
                    best_i = ord[p];
                    cairo_line_to(cr, viz_px(&a, number[ord[p]]), viz_py(&a, bv));
                }
            }
            cairo_line_to(cr, viz_px(&a, xmax + xpad), viz_py(&a, bv));
            cairo_stroke(cr);
        }
        free(ord);
    }
    /* trials */
    const double r = n <= 200 ? 3.6 : 2.4;
    for (int i = 0; i < n; i++) {
        double px = viz_px(&a, number[i]);
        if (!((status[i] == RF_TRIAL_COMPLETE || status[i] == RF_TRIAL_PRUNED) && isfinite(value[i]))) {
            double py = viz_py(&a, ylo) - 9;
            cairo_set_line_width(cr, 1.8);
            viz_set_rgb(cr, VIZ_RED, 0.9);
            cairo_move_to(cr, px - 3.5, py - 3.5);
            cairo_line_to(cr, px + 3.5, py + 3.5);
            cairo_move_to(cr, px - 3.5, py + 3.5);
            cairo_line_to(cr, px + 3.5, py - 3.5);
            cairo_stroke(cr);
            continue;
        }
        int clipped = isfinite(cap) && (maxim ? value[i] < cap : value[i] > cap);
        double py = viz_py(&a, clipped ? (maxim ? lo - pad * 0.5 : hi + pad * 0.5) : value[i]);
        viz_rgb c = status[i] == RF_TRIAL_PRUNED ? VIZ_MUTED : VIZ_BLUE;
        if (clipped) {
            triangle(cr, px, py, 4.5, maxim ? -1 : 1);
            viz_set_rgb(cr, c, 0.8);
            cairo_fill(cr);
        } else if (status[i] == RF_TRIAL_PRUNED) {
            cairo_arc(cr, px, py, r, 0, 2 * M_PI);
            cairo_set_line_width(cr, 1.4);
            viz_set_rgb(cr, c, 0.9);
            cairo_stroke(cr);
        } else {
            cairo_arc(cr, px, py, r, 0, 2 * M_PI);
            viz_set_rgb(cr, c, 0.75);
            cairo_fill(cr);
        }
    }
    if (best_i >= 0) { /* ring around the best trial and its label */
        double px = viz_px(&a, number[best_i]), py = viz_py(&a, value[best_i]);
        cairo_arc(cr, px, py, r + 3.2, 0, 2 * M_PI);
        cairo_set_line_width(cr, 2.0);
        viz_set_rgb(cr, VIZ_ORANGE, 1);
        cairo_stroke(cr);
        char lab[96];
        snprintf(lab, sizeof lab, "best: trial %d = %.5g", number[best_i], value[best_i]);
        viz_font(cr, VIZ_FS_TICK, 1);
        double tw = viz_text_width(cr, lab);
        double tx = px + 10, ty = maxim ? py + 14 : py - 12;
        if (tx + tw > a.x + a.w - 4) tx = px - 10 - tw;
        if (ty < a.y + 10) ty = py + 16;
        if (ty > a.y + a.h - 10) ty = py - 14;
        cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
        cairo_rectangle(cr, tx - 2, ty - 8, tw + 4, 16);
        cairo_fill(cr);
        viz_set_rgb(cr, VIZ_TEXT, 1);
        viz_text(cr, tx, ty, lab, VIZ_HLEFT, VIZ_VMIDDLE, 0);
    }
    cairo_restore(cr);
    viz_axes_front(cr, &a);

    /* legend row under the plot */
    char l_trials[64], l_pruned[64], l_failed[64], l_clip[96];
    snprintf(l_trials, sizeof l_trials, "complete trial (%d)", ncomplete);
    snprintf(l_pruned, sizeof l_pruned, "pruned (%d)", npruned);
    snprintf(l_failed, sizeof l_failed, "failed (%d, marked at the bottom)", nfail);
    viz_key keys[5];
    int nk = 0;
    keys[nk++] = (viz_key){l_trials, VIZ_BLUE, VIZ_KEY_MARKER, 0.75, 0};
    keys[nk++] = (viz_key){"best so far", VIZ_ORANGE, VIZ_KEY_LINE, 1, 0};
    if (npruned) keys[nk++] = (viz_key){l_pruned, VIZ_MUTED, VIZ_KEY_MARKER, 0.6, 0};
    if (nfail) keys[nk++] = (viz_key){l_failed, VIZ_RED, VIZ_KEY_MARKER, 0.9, 0};
    if (nclipped) { /* a note next to the edge where the clipped trials are drawn */
        snprintf(l_clip, sizeof l_clip, "%s %d trial%s off the scale (%s %s %.4g)", maxim ? "\xe2\x96\xbc" : "\xe2\x96\xb2",
                 nclipped, nclipped == 1 ? "" : "s", ylabel && *ylabel ? ylabel : "value", maxim ? "<" : ">", cap);
        viz_font(cr, VIZ_FS_TICK, 0);
        viz_set_rgb(cr, VIZ_MUTED, 1);
        viz_text(cr, HIST_W / 2, HIST_H - note_h / 2 - 4, l_clip, VIZ_HCENTER, VIZ_VMIDDLE, 0);
    }
    viz_font(cr, VIZ_FS_LEGEND, 0);
    double lw = viz_legend_row_width(cr, keys, nk);
    (void)lw;
    viz_legend_row(cr, keys, nk, HIST_W / 2, HIST_H - note_h - legend_h / 2 - 2);
    return viz_fig_close(&fig, e);
}

/* ======================================================================================
 * Architecture block diagram
 * ====================================================================================== */

#define ARCH_PAD 8.0       /* text padding inside a box */
#define ARCH_BOX_H 40.0
#define ARCH_GAP 26.0      /* between boxes of a row (arrow) */
#define ARCH_ROW_GAP 18.0
#define ARCH_LABEL_W 96.0  /* "blocks 12-60" */
#define ARCH_MAX_ROWS 36

typedef enum { BOX_NORM = 0, BOX_LINEAR = 1, BOX_COUPLING = 2, BOX_SQUEEZE = 3, BOX_OTHER = 4 } box_kind;

typedef struct arch_box {
    box_kind kind;
    char l1[96], l2[160];
    double w;
} arch_box;

typedef struct arch_row {
    int squeeze;       /* a scale separator row */
    char label[48];
    int first, count;  /* blocks first .. first + count - 1 drawn as this one row */
    int nb;
    arch_box b[8];
    double w;
} arch_row;

static int same_row(const arch_row *a, const arch_row *b) {
    if (a->squeeze || b->squeeze || a->nb != b->nb) return 0;
    for (int q = 0; q < a->nb; q++)
        if (a->b[q].kind != b->b[q].kind || strcmp(a->b[q].l1, b->b[q].l1) || strcmp(a->b[q].l2, b->b[q].l2)) return 0;
    return 1;
}

static viz_rgb box_fill(box_kind k) {
    switch (k) {
    case BOX_NORM: return (viz_rgb){0.87, 0.91, 0.97};
    case BOX_LINEAR: return (viz_rgb){0.88, 0.95, 0.88};
    case BOX_COUPLING: return (viz_rgb){0.99, 0.90, 0.80};
    case BOX_SQUEEZE: return (viz_rgb){0.92, 0.88, 0.96};
    default: return (viz_rgb){0.93, 0.93, 0.93};
    }
}
static viz_rgb box_edge(box_kind k) {
    switch (k) {
    case BOX_NORM: return VIZ_BLUE;
    case BOX_LINEAR: return VIZ_GREEN;
    case BOX_COUPLING: return VIZ_ORANGE;
    case BOX_SQUEEZE: return (viz_rgb){0.46, 0.33, 0.64};
    default: return VIZ_MUTED;
    }
}

static const char *jstr(const cJSON *j, const char *k, const char *dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}
static double jnum(const cJSON *j, const char *k, double dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static void fmt_count(size_t n, char *buf, size_t len) {
    if (n >= 10000000) snprintf(buf, len, "%.1fM", n / 1e6);
    else if (n >= 1000000) snprintf(buf, len, "%.2fM", n / 1e6);
    else if (n >= 10000) snprintf(buf, len, "%.1fk", n / 1e3);
    else snprintf(buf, len, "%zu", n);
}

/* Text of one layer's box. */
static void describe_layer(const rf_flow *f, int k, arch_box *b) {
    const rf_layer *l = f->layers[k];
    const char *kind = l->ops->kind;
    cJSON *j = l->ops->to_json ? l->ops->to_json(l) : NULL;
    char np[32];
    fmt_count(l->n_params, np, sizeof np);
    b->l2[0] = '\0';
    if (!strcmp(kind, "actnorm") || !strcmp(kind, "ts_actnorm")) {
        b->kind = BOX_NORM;
        snprintf(b->l1, sizeof b->l1, "ActNorm%s", kind[0] == 't' ? " (per channel)" : "");
        snprintf(b->l2, sizeof b->l2, "%s params", np);
    } else if (!strcmp(kind, "lu_linear")) {
        b->kind = BOX_LINEAR;
        snprintf(b->l1, sizeof b->l1, "LU 1\xc3\x97" "1 linear");
        snprintf(b->l2, sizeof b->l2, "%d\xc3\x97%d, %s params", l->dim, l->dim, np);
    } else if (!strcmp(kind, "ts_conv1x1")) {
        b->kind = BOX_LINEAR;
        int C = (int)jnum(j, "channels", 0);
        snprintf(b->l1, sizeof b->l1, "1\xc3\x97" "1 conv");
        snprintf(b->l2, sizeof b->l2, "%d channels, %s params", C, np);
    } else if (!strcmp(kind, "permute")) {
        b->kind = BOX_LINEAR;
        snprintf(b->l1, sizeof b->l1, "permutation");
        snprintf(b->l2, sizeof b->l2, "fixed, %d dims", l->dim);
    } else if (!strcmp(kind, "coupling") || !strcmp(kind, "autoregressive") || !strcmp(kind, "ts_coupling")) {
        b->kind = BOX_COUPLING;
        const char *tf = jstr(j, "transform", "affine");
        char tr[48];
        if (!strcmp(tf, "rqs")) snprintf(tr, sizeof tr, "RQ-spline");
        else snprintf(tr, sizeof tr, "affine");
        char bins[24] = "";
        if (!strcmp(tf, "rqs")) snprintf(bins, sizeof bins, ", %d bins", (int)jnum(j, "bins", 0));
        snprintf(b->l1, sizeof b->l1, "%s %s%s", tr, !strcmp(kind, "autoregressive") ? "autoregressive" : "coupling", bins);
        rf_morph_cond ci;
        if (rf_morph_cond_info(f, k, &ci, NULL) == RF_OK) {
            char widths[96] = "";
            size_t o = 0;
            o += (size_t)snprintf(widths + o, sizeof widths - o, "%d", ci.n_in);
            if (ci.n_hidden <= 4) {
                for (int h = 0; h < ci.n_hidden && o < sizeof widths; h++)
                    o += (size_t)snprintf(widths + o, sizeof widths - o, "\xe2\x86\x92%d", ci.hidden);
            } else {
                o += (size_t)snprintf(widths + o, sizeof widths - o, "\xe2\x86\x92%d\xc3\x97%d", ci.hidden, ci.n_hidden);
            }
            if (o < sizeof widths) snprintf(widths + o, sizeof widths - o, "\xe2\x86\x92%d", ci.n_out);
            const char *net = ci.kind == RF_MORPH_COND_MADE ? "MADE" : ci.kind == RF_MORPH_COND_CONV ? "conv" : "MLP";
            char kern[32] = "";
            if (ci.kind == RF_MORPH_COND_CONV) {
                const cJSON *cj = cJSON_GetObjectItemCaseSensitive(j, "conditioner");
                snprintf(kern, sizeof kern, " k%d d%d", ci.kernel, (int)jnum(cj, "dilation", 1));
            }
            snprintf(b->l2, sizeof b->l2, "%s%s %s, %s%s, %s params", net, kern, widths, rf_act_name(ci.act),
                     ci.residual ? ", residual" : "", np);
        } else {
            snprintf(b->l2, sizeof b->l2, "%s params", np);
        }
    } else if (!strcmp(kind, "ts_squeeze")) {
        b->kind = BOX_SQUEEZE;
        int C = (int)jnum(j, "channels", 0), T = (int)jnum(j, "length", 0);
        snprintf(b->l1, sizeof b->l1, "Haar squeeze");
        snprintf(b->l2, sizeof b->l2, "%d\xc3\x97%d \xe2\x86\x92 %d\xc3\x97%d", C, T, 2 * C, T / 2);
        /* the channels factored out before this squeeze: the previous squeeze's output less C */
        for (int q = k - 1; q >= 0; q--) {
            if (strcmp(f->layers[q]->ops->kind, "ts_squeeze")) continue;
            int pc = 0, pt = 0;
            if (rf_ts_layer_shape(f->layers[q], &pc, &pt) && 2 * pc > C) {
                size_t o = strlen(b->l2);
                snprintf(b->l2 + o, sizeof b->l2 - o, " (%d channels factored out before)", 2 * pc - C);
            }
            break;
        }
    } else {
        b->kind = BOX_OTHER;
        snprintf(b->l1, sizeof b->l1, "%s", kind);
        snprintf(b->l2, sizeof b->l2, "%s params", np);
    }
    cJSON_Delete(j);
}

static int is_conditioned(const char *kind) {
    return !strcmp(kind, "coupling") || !strcmp(kind, "autoregressive") || !strcmp(kind, "ts_coupling");
}

int rf_plot_architecture(const char *path, const char *title, const rf_flow *f, rf_err *e) {
    if (!path) return rf_err_set(e, RF_EARG, "architecture plot: no output path");
    viz_format fmt;
    int rc = viz_format_of(path, &fmt, e);
    if (rc != RF_OK) return rc;
    if (!f || f->n_layers < 1) return rf_err_set(e, RF_EARG, "%s: no flow to draw", path);

    /* rows: a block ends after its conditioned layer (and a permutation right after it); a
     * squeeze is a row of its own */
    int cap = f->n_layers + 2;
    arch_row *rows = calloc((size_t)cap, sizeof *rows);
    if (!rows) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int nr = 0, block = 0, scale = 0;
    arch_row *cur = NULL;
    for (int k = 0; k < f->n_layers; k++) {
        const char *kind = f->layers[k]->ops->kind;
        if (!strcmp(kind, "ts_squeeze")) {
            arch_row *r = &rows[nr++];
            r->squeeze = 1;
            snprintf(r->label, sizeof r->label, "scale %d", ++scale);
            describe_layer(f, k, &r->b[r->nb++]);
            cur = NULL;
            continue;
        }
        if (!cur || cur->nb >= 8) {
            cur = &rows[nr++];
            cur->first = ++block;
            cur->count = 1;
        }
        describe_layer(f, k, &cur->b[cur->nb++]);
        if (is_conditioned(kind)) {
            if (k + 1 < f->n_layers && !strcmp(f->layers[k + 1]->ops->kind, "permute")) {
                describe_layer(f, k + 1, &cur->b[cur->nb++]);
                k++;
            }
            cur = NULL;
        }
    }
    /* runs of 3 or more identical blocks become one row "blocks a-b" with a repeat count */
    int w = 0;
    for (int i = 0; i < nr;) {
        int j = i;
        while (j + 1 < nr && same_row(&rows[i], &rows[j + 1])) j++;
        if (j - i + 1 >= 3) {
            rows[w] = rows[i];
            rows[w].count = j - i + 1;
            w++;
            i = j + 1;
        } else {
            for (; i <= j; i++) rows[w++] = rows[i];
        }
    }
    nr = w;
    for (int i = 0; i < nr; i++) {
        arch_row *r = &rows[i];
        if (r->squeeze) continue;
        if (r->count > 1) snprintf(r->label, sizeof r->label, "blocks %d\xe2\x80\x93%d", r->first, r->first + r->count - 1);
        else snprintf(r->label, sizeof r->label, "block %d", r->first);
    }
    /* rows shown: all, or the first and last ones around an ellipsis */
    int show_head = nr, show_tail = 0;
    if (nr > ARCH_MAX_ROWS) {
        show_head = ARCH_MAX_ROWS / 2;
        show_tail = ARCH_MAX_ROWS / 2 - 1;
    }

    /* measure */
    cairo_t *s = viz_scratch();
    double maxw = 0;
    for (int i = 0; i < nr; i++) {
        arch_row *r = &rows[i];
        r->w = 0;
        for (int q = 0; q < r->nb; q++) {
            arch_box *b = &r->b[q];
            viz_font(s, VIZ_FS_LABEL, 1);
            double w1 = viz_text_width(s, b->l1);
            viz_font(s, VIZ_FS_TICK, 0);
            double w2 = viz_text_width(s, b->l2);
            b->w = ceil(fmax(w1, w2) + 2 * ARCH_PAD);
            if (b->w < 84) b->w = 84;
            r->w += b->w + (q ? ARCH_GAP : 0);
        }
        if (r->count > 1) {
            char rep[32];
            snprintf(rep, sizeof rep, "\xc3\x97 %d", r->count);
            viz_font(s, VIZ_FS_LABEL, 1);
            r->w += 10 + viz_text_width(s, rep) + 4;
        }
        if (r->w > maxw) maxw = r->w;
    }
    char head[256], base[160], sub[200];
    char np[32];
    fmt_count(f->n_params, np, sizeof np);
    int nc = rf_morph_conditioned_layers(f, NULL);
    snprintf(sub, sizeof sub, "%s flow \xc2\xb7 %d layers, %d conditioned \xc2\xb7 %s parameters", rf_flow_type_name(f->spec.type),
             f->n_layers, nc, np);
    snprintf(head, sizeof head, "input x: %d dimension%s%s", f->D, f->D == 1 ? "" : "s",
             f->spec.type == RF_FLOW_TS ? "" : ", standardised");
    if (f->spec.type == RF_FLOW_TS)
        snprintf(head, sizeof head, "input x: %d channels \xc3\x97 %d samples", f->spec.channels, f->spec.length);
    if (f->base.kind == RF_BASE_CLASS)
        snprintf(base, sizeof base, "base: class-conditional Gaussian, %d classes", f->base.n_classes);
    else if (f->base.kind == RF_BASE_DIAG)
        snprintf(base, sizeof base, "base: diagonal Gaussian (learned mean and scale)");
    else
        snprintf(base, sizeof base, "base: standard normal N(0, I)");
    viz_font(s, VIZ_FS_LABEL, 0);
    double hw = fmax(viz_text_width(s, head), viz_text_width(s, base)) + 2 * ARCH_PAD;
    viz_font(s, VIZ_FS_LABEL, 0);
    double subw = viz_text_width(s, sub);
    double title_h = viz_title_height(s, title);
    cairo_destroy(s);

    const double margin = 16;
    double content_w = ARCH_LABEL_W + fmax(maxw, hw);
    double W = ceil(fmax(fmax(content_w, subw) + 2 * margin, 560));
    int drawn = show_head + show_tail + (show_tail ? 1 : 0);
    double H = ceil(title_h + 24 + 26 + ARCH_ROW_GAP + drawn * (ARCH_BOX_H + ARCH_ROW_GAP) + 26 + margin);

    viz_fig fig;
    rc = viz_fig_open(&fig, path, W, H, e);
    if (rc != RF_OK) {
        free(rows);
        return rc;
    }
    cairo_t *cr = fig.cr;
    double y = viz_fig_title(&fig, title);
    viz_font(cr, VIZ_FS_LABEL, 0);
    viz_set_rgb(cr, VIZ_MUTED, 1);
    viz_text(cr, W / 2, y + 9, sub, VIZ_HCENTER, VIZ_VMIDDLE, 0);
    y += 24;
    const double x0 = margin + ARCH_LABEL_W;
    const double spine = x0 + 14; /* where rows connect */

    /* input pill */
    viz_font(cr, VIZ_FS_LABEL, 0);
    double pw = viz_text_width(cr, head) + 2 * ARCH_PAD;
    cairo_rectangle(cr, x0, y, pw, 26);
    viz_set_rgb(cr, VIZ_TEXT, 0.06);
    cairo_fill_preserve(cr);
    viz_set_rgb(cr, VIZ_TEXT, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    viz_set_rgb(cr, VIZ_TEXT, 1);
    viz_text(cr, x0 + ARCH_PAD, y + 13, head, VIZ_HLEFT, VIZ_VMIDDLE, 0);
    double prev_bottom = y + 26;
    y += 26 + ARCH_ROW_GAP;

    for (int i = 0; i < nr; i++) {
        if (show_tail && i == show_head) {
            /* the elided middle */
            char more[96];
            snprintf(more, sizeof more, "\xe2\x8b\xae  %d more blocks  \xe2\x8b\xae", nr - show_head - show_tail);
            viz_font(cr, VIZ_FS_LABEL, 0);
            viz_set_rgb(cr, VIZ_MUTED, 1);
            viz_text(cr, x0 + 6, y + ARCH_BOX_H / 2, more, VIZ_HLEFT, VIZ_VMIDDLE, 0);
            cairo_set_line_width(cr, 1.4);
            static const double dash[2] = {3.0, 3.0};
            cairo_set_dash(cr, dash, 2, 0);
            cairo_move_to(cr, spine - 20, prev_bottom);
            cairo_line_to(cr, spine - 20, y + ARCH_BOX_H);
            cairo_stroke(cr);
            cairo_set_dash(cr, NULL, 0, 0);
            prev_bottom = y + ARCH_BOX_H;
            y += ARCH_BOX_H + ARCH_ROW_GAP;
            i = nr - show_tail - 1;
            continue;
        }
        arch_row *r = &rows[i];
        /* arrow down from the previous row to this one */
        cairo_set_line_width(cr, 1.4);
        viz_set_rgb(cr, VIZ_TEXT, 0.7);
        cairo_move_to(cr, spine, prev_bottom);
        cairo_line_to(cr, spine, y - 2);
        cairo_stroke(cr);
        cairo_move_to(cr, spine, y);
        cairo_line_to(cr, spine - 4, y - 7);
        cairo_line_to(cr, spine + 4, y - 7);
        cairo_close_path(cr);
        cairo_fill(cr);
        /* row label */
        viz_font(cr, VIZ_FS_TICK, r->squeeze);
        viz_set_rgb(cr, r->squeeze ? box_edge(BOX_SQUEEZE) : VIZ_MUTED, 1);
        viz_text(cr, x0 - 10, y + ARCH_BOX_H / 2, r->label, VIZ_HRIGHT, VIZ_VMIDDLE, 0);
        double x = x0;
        for (int q = 0; q < r->nb; q++) {
            arch_box *b = &r->b[q];
            if (q) { /* arrow between boxes */
                double ay = y + ARCH_BOX_H / 2;
                viz_set_rgb(cr, VIZ_TEXT, 0.7);
                cairo_set_line_width(cr, 1.4);
                cairo_move_to(cr, x + 3, ay);
                cairo_line_to(cr, x + ARCH_GAP - 8, ay);
                cairo_stroke(cr);
                cairo_move_to(cr, x + ARCH_GAP - 2, ay);
                cairo_line_to(cr, x + ARCH_GAP - 9, ay - 4);
                cairo_line_to(cr, x + ARCH_GAP - 9, ay + 4);
                cairo_close_path(cr);
                cairo_fill(cr);
                x += ARCH_GAP;
            }
            cairo_rectangle(cr, x + 0.5, y + 0.5, b->w - 1, ARCH_BOX_H - 1);
            viz_set_rgb(cr, box_fill(b->kind), 1);
            cairo_fill_preserve(cr);
            viz_set_rgb(cr, box_edge(b->kind), 1);
            cairo_set_line_width(cr, 1.2);
            cairo_stroke(cr);
            viz_set_rgb(cr, VIZ_TEXT, 1);
            viz_font(cr, VIZ_FS_LABEL, 1);
            viz_text(cr, x + ARCH_PAD, y + (b->l2[0] ? 13 : ARCH_BOX_H / 2), b->l1, VIZ_HLEFT, VIZ_VMIDDLE, 0);
            if (b->l2[0]) {
                viz_font(cr, VIZ_FS_TICK, 0);
                viz_set_rgb(cr, VIZ_TEXT, 0.85);
                viz_text(cr, x + ARCH_PAD, y + 29, b->l2, VIZ_HLEFT, VIZ_VMIDDLE, 0);
            }
            x += b->w;
        }
        if (r->count > 1) { /* repeat badge */
            char rep[32];
            snprintf(rep, sizeof rep, "\xc3\x97 %d", r->count);
            viz_font(cr, VIZ_FS_LABEL, 1);
            viz_set_rgb(cr, VIZ_TEXT, 1);
            viz_text(cr, x + 10, y + ARCH_BOX_H / 2, rep, VIZ_HLEFT, VIZ_VMIDDLE, 0);
        }
        prev_bottom = y + ARCH_BOX_H;
        y += ARCH_BOX_H + ARCH_ROW_GAP;
    }
    /* base */
    cairo_set_line_width(cr, 1.4);
    viz_set_rgb(cr, VIZ_TEXT, 0.7);
    cairo_move_to(cr, spine, prev_bottom);
    cairo_line_to(cr, spine, y - 2);
    cairo_stroke(cr);
    cairo_move_to(cr, spine, y);
    cairo_line_to(cr, spine - 4, y - 7);
    cairo_line_to(cr, spine + 4, y - 7);
    cairo_close_path(cr);
    cairo_fill(cr);
    viz_font(cr, VIZ_FS_LABEL, 0);
    pw = viz_text_width(cr, base) + 2 * ARCH_PAD;
    cairo_rectangle(cr, x0, y, pw, 26);
    viz_set_rgb(cr, VIZ_TEXT, 0.06);
    cairo_fill_preserve(cr);
    viz_set_rgb(cr, VIZ_TEXT, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    viz_set_rgb(cr, VIZ_TEXT, 1);
    viz_text(cr, x0 + ARCH_PAD, y + 13, base, VIZ_HLEFT, VIZ_VMIDDLE, 0);
    free(rows);
    return viz_fig_close(&fig, e);
}

/* ======================================================================================
 * Study-level pieces
 * ====================================================================================== */

int rf_study_importance(rf_study *st, int k, const rf_fanova_opts *o, rf_importance *imp, rf_err *e) {
    memset(imp, 0, sizeof *imp);
    int rc = rf_study_refresh(st, e);
    if (rc) return rc;
    if (k < 0 || k >= rf_study_n_objectives(st))
        return rf_err_set(e, RF_EARG, "importance: objective %d of a study with %d", k, rf_study_n_objectives(st));
    const rf_space *sp = rf_study_space(st);
    const int d = sp->n, N = rf_study_n_finished(st);
    double *X = malloc(sizeof(double) * (size_t)(N > 0 ? N : 1) * (size_t)d);
    double *y = malloc(sizeof(double) * (size_t)(N > 0 ? N : 1));
    rf_feature_kind *kinds = malloc(sizeof(rf_feature_kind) * (size_t)d);
    int *ncat = malloc(sizeof(int) * (size_t)d);
    if (!X || !y || !kinds || !ncat) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < d; i++) {
        int cat = sp->p[i].kind == RF_PARAM_CAT;
        kinds[i] = cat && sp->p[i].n_choices <= RF_FOREST_MAX_CATEGORIES ? RF_FEATURE_CATEGORICAL : RF_FEATURE_CONTINUOUS;
        ncat[i] = cat ? sp->p[i].n_choices : 0;
    }
    int n = 0;
    for (int t = 0; t < N; t++) {
        const rf_trial *tr = rf_study_finished(st, t);
        if (tr->status != RF_TRIAL_COMPLETE || tr->n_values <= k || !isfinite(tr->values[k])) continue;
        double *row = X + (size_t)n * d;
        rf_space_encode(sp, &tr->cfg, row);
        for (int i = 0; i < d; i++) /* a categorical with too many choices: its index scaled to [0, 1] */
            if (sp->p[i].kind == RF_PARAM_CAT && kinds[i] == RF_FEATURE_CONTINUOUS && isfinite(row[i]))
                row[i] = sp->p[i].n_choices > 1 ? row[i] / (sp->p[i].n_choices - 1) : 0;
        y[n++] = tr->values[k];
    }
    if (n < 2) {
        rc = rf_err_set(e, RF_EARG, "importance: the study has %d complete trial%s; fANOVA needs at least 2", n, n == 1 ? "" : "s");
        goto out;
    }
    int varies = 0;
    for (int i = 1; i < n; i++) varies |= y[i] != y[0];
    if (!varies) {
        rc = rf_err_set(e, RF_EARG, "importance: all %d complete trials have the same %s (%g); nothing to attribute", n,
                        rf_study_objective(st, k)->name, y[0]);
        goto out;
    }
    rc = rf_fanova_compute(X, y, n, d, kinds, ncat, o, imp, e);
out:
    free(X);
    free(y);
    free(kinds);
    free(ncat);
    return rc;
}

/* Parameter names of the study's space (pointers into it). */
static const char **param_names(rf_study *st) {
    const rf_space *sp = rf_study_space(st);
    const char **names = malloc(sizeof(char *) * (size_t)(sp->n > 0 ? sp->n : 1));
    for (int i = 0; names && i < sp->n; i++) names[i] = sp->p[i].name;
    return names;
}

int rf_study_plot_pareto(rf_study *st, const char *path, int **front, int *n_front, rf_err *e) {
    if (front) *front = NULL;
    if (n_front) *n_front = 0;
    int rc = rf_study_refresh(st, e);
    if (rc) return rc;
    if (rf_study_n_objectives(st) < 2)
        return rf_err_set(e, RF_EARG, "pareto: study %s has one objective (%s); a Pareto front needs two (e.g. --objective nll,time)",
                          rf_study_path(st), rf_study_objective(st, 0)->name);
    const int N = rf_study_n_finished(st);
    double *F = malloc(sizeof(double) * 2 * (size_t)(N > 0 ? N : 1));
    int *num = malloc(sizeof(int) * (size_t)(N > 0 ? N : 1)), *idx = malloc(sizeof(int) * (size_t)(N > 0 ? N : 1));
    if (!F || !num || !idx) {
        free(F);
        free(num);
        free(idx);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    int n = 0;
    for (int t = 0; t < N; t++) {
        const rf_trial *tr = rf_study_finished(st, t);
        if (tr->status != RF_TRIAL_COMPLETE || tr->n_values < 2) continue;
        F[2 * n] = tr->values[0];
        F[2 * n + 1] = tr->values[1];
        num[n++] = tr->number;
    }
    rf_pareto_dir dirs[2];
    const char *names[2];
    for (int k = 0; k < 2; k++) {
        const rf_objective *o = rf_study_objective(st, k);
        dirs[k] = o->direction == RF_MAXIMIZE ? RF_PARETO_MAXIMIZE : RF_PARETO_MINIMIZE;
        names[k] = o->name;
    }
    if (n < 1) rc = rf_err_set(e, RF_EARG, "pareto: study %s has no complete trial", rf_study_path(st));
    char title[160];
    snprintf(title, sizeof title, "Pareto front: %s vs %s (%d trials)", names[0], names[1], n);
    if (!rc && path) rc = rf_plot_pareto(path, title, F, n, dirs, names, e);
    int nf = 0;
    if (!rc) rc = rf_pareto_front(F, n, 2, dirs, idx, &nf, e);
    if (!rc && front) {
        *front = malloc(sizeof(int) * (size_t)(nf > 0 ? nf : 1));
        if (!*front) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        for (int k = 0; !rc && k < nf; k++) (*front)[k] = num[idx[k]];
        if (n_front) *n_front = nf;
    }
    free(F);
    free(num);
    free(idx);
    return rc;
}

static cJSON *values_json(rf_study *st, const rf_trial *t) {
    cJSON *v = cJSON_CreateObject();
    for (int k = 0; k < t->n_values && k < rf_study_n_objectives(st); k++)
        cJSON_AddNumberToObject(v, rf_study_objective(st, k)->name, t->values[k]);
    return v;
}

static cJSON *trial_json(rf_study *st, const rf_trial *t) {
    cJSON *j = cJSON_CreateObject();
    char sd[32];
    cJSON_AddNumberToObject(j, "number", t->number);
    cJSON_AddStringToObject(j, "status", rf_trial_status_name(t->status));
    if (t->status == RF_TRIAL_COMPLETE) {
        cJSON_AddNumberToObject(j, "value", t->values[0]);
        cJSON_AddItemToObject(j, "values", values_json(st, t));
    } else if (t->status == RF_TRIAL_PRUNED && t->last_step >= 0) {
        cJSON_AddNumberToObject(j, "last_step", (double)t->last_step);
        cJSON_AddNumberToObject(j, "last_value", t->last_value);
    }
    if (isfinite(t->duration)) cJSON_AddNumberToObject(j, "duration", t->duration);
    cJSON_AddItemToObject(j, "config", rf_config_to_json(rf_study_space(st), &t->cfg));
    cJSON_AddNumberToObject(j, "budget", t->budget);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)t->seed);
    cJSON_AddStringToObject(j, "seed", sd);
    cJSON_AddStringToObject(j, "sampler", t->sampler);
    if (t->error) cJSON_AddStringToObject(j, "error", t->error);
    if (t->lost) cJSON_AddBoolToObject(j, "lost", 1);
    if (t->requeued_from >= 0) cJSON_AddNumberToObject(j, "requeued_from", t->requeued_from);
    cJSON_AddStringToObject(j, "host", t->host);
    cJSON_AddNumberToObject(j, "pid", (double)t->pid);
    if (isfinite(t->started)) cJSON_AddNumberToObject(j, "started", t->started);
    if (isfinite(t->finished)) cJSON_AddNumberToObject(j, "finished", t->finished);
    return j;
}

/* The study's header: path, name, sampler, seed, objectives, counts, best trial per objective. */
static cJSON *study_head_json(rf_study *st, rf_err *e) {
    int counts[RF_TRIAL_NSTATUS];
    if (rf_study_counts(st, counts, e) != RF_OK) return NULL;
    cJSON *j = cJSON_CreateObject();
    char sd[32];
    cJSON_AddStringToObject(j, "study", rf_study_path(st));
    cJSON_AddStringToObject(j, "name", rf_study_name(st));
    cJSON_AddStringToObject(j, "sampler", rf_study_sampler_name(st));
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)rf_study_seed(st));
    cJSON_AddStringToObject(j, "seed", sd);
    cJSON_AddNumberToObject(j, "created", rf_study_created(st));
    cJSON *ob = cJSON_AddArrayToObject(j, "objectives");
    for (int k = 0; k < rf_study_n_objectives(st); k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", rf_study_objective(st, k)->name);
        cJSON_AddStringToObject(o, "direction", rf_study_objective(st, k)->direction == RF_MAXIMIZE ? "maximize" : "minimize");
        const rf_trial *b = rf_study_best(st, k);
        if (b) {
            cJSON_AddNumberToObject(o, "best_trial", b->number);
            cJSON_AddNumberToObject(o, "best_value", b->values[k]);
        }
        cJSON_AddItemToArray(ob, o);
    }
    cJSON *c = cJSON_AddObjectToObject(j, "counts");
    int total = 0;
    for (int s = 0; s < RF_TRIAL_NSTATUS; s++) {
        cJSON_AddNumberToObject(c, rf_trial_status_name((rf_trial_status)s), counts[s]);
        total += counts[s];
    }
    cJSON_AddNumberToObject(c, "total", total);
    return j;
}

cJSON *rf_study_to_json(rf_study *st, rf_err *e) {
    if (rf_study_refresh(st, e) != RF_OK) return NULL;
    cJSON *j = study_head_json(st, e);
    if (!j) return NULL;
    cJSON_AddItemToObject(j, "space", rf_space_to_json(rf_study_space(st)));
    cJSON *arr = cJSON_AddArrayToObject(j, "trials");
    for (int i = 0; i < rf_study_n_finished(st); i++) cJSON_AddItemToArray(arr, trial_json(st, rf_study_finished(st, i)));
    return j;
}

/* ======================================================================================
 * report.json and every figure
 * ====================================================================================== */

static int mkdir_1(const char *path, rf_err *e) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return rf_err_set(e, RF_EIO, "%s: cannot create directory: %s", path, strerror(errno));
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return rf_err_set(e, RF_EIO, "%s: not a directory", path);
    return RF_OK;
}

/* Draws one figure as SVG and PNG; records the files or the reason it was skipped. */
typedef int (*fig_fn)(void *ctx, const char *path, rf_err *e);
static int both_formats(const char *dir, const char *stem, fig_fn fn, void *ctx, cJSON *figs, cJSON *skipped, rf_err *e) {
    static const char *const ext[2] = {"svg", "png"};
    for (int k = 0; k < 2; k++) {
        char p[4400];
        snprintf(p, sizeof p, "%s/%s.%s", dir, stem, ext[k]);
        rf_err fe = {0};
        int rc = fn(ctx, p, &fe);
        if (rc == RF_EIO || rc == RF_ENOMEM) {
            if (e) *e = fe;
            return rc;
        }
        if (rc) {
            cJSON_AddStringToObject(skipped, stem, fe.msg);
            return RF_OK;
        }
        cJSON_AddItemToArray(figs, cJSON_CreateString(p));
    }
    return RF_OK;
}

typedef struct hist_ctx {
    rf_study *st;
} hist_ctx;

static int draw_history(void *ctx, const char *path, rf_err *e) {
    rf_study *st = ((hist_ctx *)ctx)->st;
    const int N = rf_study_n_finished(st);
    if (N < 1) return rf_err_set(e, RF_EARG, "no finished trial yet");
    int *num = malloc(sizeof(int) * (size_t)N), *status = malloc(sizeof(int) * (size_t)N);
    double *val = malloc(sizeof(double) * (size_t)N);
    int rc = num && status && val ? RF_OK : rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < N; i++) {
        const rf_trial *t = rf_study_finished(st, i);
        num[i] = t->number;
        status[i] = t->status;
        val[i] = t->status == RF_TRIAL_COMPLETE ? t->values[0] : t->status == RF_TRIAL_PRUNED && t->last_step >= 0 ? t->last_value : NAN;
    }
    const rf_objective *o = rf_study_objective(st, 0);
    char title[200];
    snprintf(title, sizeof title, "optimisation history: %s, %d trials (sampler %s)", o->name, N,
             rf_study_sampler_name(st)[0] ? rf_study_sampler_name(st) : "?");
    if (!rc) rc = rf_plot_search_history(path, title, num, val, status, N, o->direction, o->name, e);
    free(num);
    free(status);
    free(val);
    return rc;
}

typedef struct imp_ctx {
    rf_importance *imp;
    const char **names;
    const char *title;
} imp_ctx;
static int draw_importance(void *ctx, const char *path, rf_err *e) {
    imp_ctx *c = ctx;
    return rf_plot_importance(path, c->title, c->imp, c->names, 20, e);
}

static int draw_pareto(void *ctx, const char *path, rf_err *e) {
    return rf_study_plot_pareto(((hist_ctx *)ctx)->st, path, NULL, NULL, e);
}

typedef struct arch_ctx {
    const rf_flow *f;
    const char *title;
} arch_ctx;
static int draw_arch(void *ctx, const char *path, rf_err *e) {
    arch_ctx *c = ctx;
    return rf_plot_architecture(path, c->title, c->f, e);
}

int rf_search_report_write(rf_study *st, const char *dir, const char *model_path, const cJSON *extra, cJSON **out, rf_err *e) {
    if (out) *out = NULL;
    int rc = mkdir_1(dir, e);
    if (rc) return rc;
    if ((rc = rf_study_refresh(st, e))) return rc;
    cJSON *j = study_head_json(st, e);
    if (!j) return e ? e->code : RF_ENOMEM;
    cJSON *figs = cJSON_AddArrayToObject(j, "files");
    cJSON *skipped = cJSON_CreateObject();
    const rf_space *sp = rf_study_space(st);

    /* best (the incumbent: the best at the largest budget) and default configurations */
    const rf_trial *b = rf_study_incumbent(st, 0);
    if (b) {
        cJSON *bj = cJSON_AddObjectToObject(j, "best");
        cJSON_AddNumberToObject(bj, "trial", b->number);
        cJSON_AddNumberToObject(bj, "budget", b->budget);
        cJSON_AddItemToObject(bj, "values", values_json(st, b));
        cJSON_AddItemToObject(bj, "config", rf_config_to_json(sp, &b->cfg));
    }
    const rf_trial *d = rf_search_default_trial(st);
    if (d) {
        cJSON *dj = cJSON_AddObjectToObject(j, "default");
        cJSON_AddNumberToObject(dj, "trial", d->number);
        cJSON_AddItemToObject(dj, "values", values_json(st, d));
        if (b) {
            double dv = d->values[0], bv = b->values[0];
            cJSON_AddNumberToObject(dj, "best_minus_default", bv - dv);
        }
    }

    hist_ctx hc = {st};
    if ((rc = both_formats(dir, "history", draw_history, &hc, figs, skipped, e))) goto out;

    rf_importance imp;
    rf_fanova_opts fo;
    rf_fanova_opts_default(&fo);
    fo.forest.seed = rf_study_seed(st) ^ 0xfa0aULL;
    rf_err ie = {0};
    int irc = rf_study_importance(st, 0, &fo, &imp, &ie);
    if (irc == RF_OK) {
        const char **names = param_names(st);
        cJSON_AddItemToObject(j, "importance", rf_importance_to_json(&imp, names));
        char title[200];
        snprintf(title, sizeof title, "hyperparameter importance (fANOVA) for %s", rf_study_objective(st, 0)->name);
        imp_ctx ic = {&imp, names, title};
        rc = both_formats(dir, "importance", draw_importance, &ic, figs, skipped, e);
        free(names);
        rf_importance_free(&imp);
        if (rc) goto out;
    } else if (irc == RF_ENOMEM) {
        rc = irc;
        if (e) *e = ie;
        goto out;
    } else {
        cJSON_AddStringToObject(skipped, "importance", ie.msg);
    }

    if (rf_study_n_objectives(st) >= 2) {
        int *front = NULL, nf = 0;
        rf_err pe = {0};
        if (rf_study_plot_pareto(st, NULL, &front, &nf, &pe) == RF_OK) {
            cJSON *pj = cJSON_AddObjectToObject(j, "pareto");
            cJSON_AddItemToObject(pj, "front_trials", cJSON_CreateIntArray(front, nf));
        }
        free(front);
        if ((rc = both_formats(dir, "pareto", draw_pareto, &hc, figs, skipped, e))) goto out;
    } else {
        cJSON_AddStringToObject(skipped, "pareto", "one objective");
    }

    if (model_path) {
        rf_err me = {0};
        rf_flow *f = rf_flow_load(model_path, &me);
        if (f) {
            char title[160] = "best architecture";
            if (b) snprintf(title, sizeof title, "best architecture (trial %d)", b->number);
            arch_ctx ac = {f, title};
            cJSON *aj = rf_morph_arch_json(f);
            if (aj) {
                cJSON_AddStringToObject(aj, "model", model_path);
                cJSON_AddItemToObject(j, "architecture", aj);
            }
            rc = both_formats(dir, "architecture", draw_arch, &ac, figs, skipped, e);
            rf_flow_free(f);
            if (rc) goto out;
        } else {
            cJSON_AddStringToObject(skipped, "architecture", me.msg);
        }
    } else {
        cJSON_AddStringToObject(skipped, "architecture", "no model file given");
    }
    if (extra) cJSON_AddItemToObject(j, "search", cJSON_Duplicate(extra, 1));
    cJSON_AddItemToObject(j, "skipped", skipped);
    skipped = NULL;
    char p[4400];
    snprintf(p, sizeof p, "%s/report.json", dir);
    cJSON_AddItemToArray(figs, cJSON_CreateString(p));
    char *txt = cJSON_Print(j);
    rc = txt ? rf_write_file_atomic(p, txt, strlen(txt), e) : rf_err_set(e, RF_ENOMEM, "out of memory");
    free(txt);
out:
    cJSON_Delete(skipped);
    if (!rc && out) *out = j;
    else cJSON_Delete(j);
    return rc;
}
