/* The one-page certificate label (SVG / PDF / PNG), drawn with cairo like the other figures
 * (src/viz/draw.h): a header with the model and its test data, the compound rating on the
 * coloured A..E scale, one row per measurement with its letter and reference value, the numerical
 * guarantees, and a footer with the scale and the provenance. Layout in points, 595 wide; the
 * height follows the content (measured in a first pass on a scratch surface). */
#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "label_internal.h"

#define M 22.0                 /* page margin */
#define COL_VALUE 262.0        /* value column */
#define COL_REF 400.0          /* reference column */
#define COL_BADGE 542.0        /* badge centre */
#define ROW_H 29.0

static const viz_rgb INK = {0.11, 0.12, 0.14};
static const viz_rgb GREY = {0.42, 0.43, 0.46};
static const viz_rgb LIGHT = {0.90, 0.91, 0.93};
static const viz_rgb HEAD_BG = {0.13, 0.19, 0.29};
static const viz_rgb PASS_GREEN = {0.0, 0.50, 0.23};
static const viz_rgb FAIL_RED = {0.80, 0.07, 0.07};
static const viz_rgb WARN_ORANGE = {0.80, 0.38, 0.0};

typedef struct ld {
    cairo_t *cr;
    lbl_buf *log;
} ld;

static void logtext(ld *d, const char *s) {
    if (!d->log || !s || !*s) return;
    lbl_buf_puts(d->log, s);
    lbl_buf_puts(d->log, "\n");
}

static void text(ld *d, double x, double y, const char *s, viz_halign ha, viz_valign va) {
    viz_text(d->cr, x, y, s, ha, va, 0);
    logtext(d, s);
}

static void text_fit(ld *d, double x, double y, const char *s, double max_w, viz_halign ha, viz_valign va) {
    viz_text_fit(d->cr, x, y, s, max_w, ha, va, 0);
    logtext(d, s);
}

static void rgb(ld *d, viz_rgb c) { viz_set_rgb(d->cr, c, 1); }

/* Word-wrapped text from (x, y) (top of the first line), lines lh apart; returns the y below. */
static double wrap(ld *d, double x, double y, const char *s, double max_w, double lh) {
    if (!s || !*s) return y;
    cairo_t *cr = d->cr;
    const size_t L = strlen(s);
    char *line = malloc(L + 1), *cand = malloc(L + 1);
    if (!line || !cand) {
        free(line);
        free(cand);
        return y;
    }
    line[0] = '\0';
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        const char *w = p;
        while (*p && *p != ' ') p++;
        const size_t wl = (size_t)(p - w);
        if (line[0]) snprintf(cand, L + 1, "%s %.*s", line, (int)wl, w);
        else snprintf(cand, L + 1, "%.*s", (int)wl, w);
        if (line[0] && viz_text_width(cr, cand) > max_w) {
            viz_text_fit(cr, x, y, line, max_w, VIZ_HLEFT, VIZ_VTOP, 0);
            y += lh;
            snprintf(line, L + 1, "%.*s", (int)wl, w);
        } else {
            memcpy(line, cand, strlen(cand) + 1);
        }
    }
    if (line[0]) {
        viz_text_fit(cr, x, y, line, max_w, VIZ_HLEFT, VIZ_VTOP, 0);
        y += lh;
    }
    logtext(d, s);
    free(line);
    free(cand);
    return y;
}

static void round_rect(cairo_t *cr, double x, double y, double w, double h, double r) {
    cairo_new_sub_path(cr);
    cairo_arc(cr, x + w - r, y + r, r, -M_PI / 2, 0);
    cairo_arc(cr, x + w - r, y + h - r, r, 0, M_PI / 2);
    cairo_arc(cr, x + r, y + h - r, r, M_PI / 2, M_PI);
    cairo_arc(cr, x + r, y + r, r, M_PI, 1.5 * M_PI);
    cairo_close_path(cr);
}

/* A letter badge centred on (cx, cy); letter 0: a grey outlined dash ("not rated"). */
static void badge(ld *d, double cx, double cy, char letter, double w, double h, double fs) {
    cairo_t *cr = d->cr;
    round_rect(cr, cx - w / 2, cy - h / 2, w, h, 3);
    if (letter) {
        rgb(d, lbl_letter_rgb(letter));
        cairo_fill(cr);
        viz_set_rgb(cr, lbl_letter_dark_text(letter) ? INK : (viz_rgb){1, 1, 1}, 1);
        viz_font(cr, fs, 1);
        char s[2] = {letter, 0};
        text(d, cx, cy, s, VIZ_HCENTER, VIZ_VMIDDLE);
    } else {
        cairo_set_line_width(cr, 1);
        rgb(d, (viz_rgb){0.75, 0.75, 0.77});
        cairo_stroke(cr);
        rgb(d, GREY);
        viz_font(cr, fs * 0.8, 0);
        viz_text(cr, cx, cy, "\xe2\x80\x93", VIZ_HCENTER, VIZ_VMIDDLE, 0);
    }
}

/* Tick, cross or dash in a filled circle. */
static void check_icon(cairo_t *cr, double cx, double cy, int status) {
    const double r = 8;
    cairo_arc(cr, cx, cy, r, 0, 2 * M_PI);
    viz_set_rgb(cr, status > 0 ? PASS_GREEN : status == 0 ? FAIL_RED : (viz_rgb){0.62, 0.62, 0.64}, 1);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_set_line_width(cr, 2.2);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    if (status > 0) {
        cairo_move_to(cr, cx - 4, cy + 0.3);
        cairo_line_to(cr, cx - 1.2, cy + 3.3);
        cairo_line_to(cr, cx + 4.2, cy - 3.2);
    } else if (status == 0) {
        cairo_move_to(cr, cx - 3.5, cy - 3.5);
        cairo_line_to(cr, cx + 3.5, cy + 3.5);
        cairo_move_to(cr, cx + 3.5, cy - 3.5);
        cairo_line_to(cr, cx - 3.5, cy + 3.5);
    } else {
        cairo_move_to(cr, cx - 4, cy);
        cairo_line_to(cr, cx + 4, cy);
    }
    cairo_stroke(cr);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
}

/* ------------------------------------------------------------------ header */

static double draw_header(ld *d, const cJSON *cert) {
    cairo_t *cr = d->cr;
    const double H = 80;
    cairo_rectangle(cr, 0, 0, LBL_W, H);
    rgb(d, HEAD_BG);
    cairo_fill(cr);
    char name[256], kind[256], date[64] = "";
    lbl_model_name(cert, name, sizeof name);
    lbl_model_kind(cert, kind, sizeof kind);
    const char *created = lbl_str(cert, "created");
    if (!created) created = lbl_str(cert, "provenance.environment.created");
    if (created) {
        /* 2025-11-23T15:40:02Z -> 2025-11-23 15:40 UTC */
        if (strlen(created) >= 16 && created[10] == 'T')
            snprintf(date, sizeof date, "%.10s %.5s%s", created, created + 11, created[strlen(created) - 1] == 'Z' ? " UTC" : "");
        else
            snprintf(date, sizeof date, "%s", created);
    }
    viz_set_rgb(cr, (viz_rgb){0.72, 0.80, 0.90}, 1);
    viz_font(cr, 9, 1);
    text(d, M, 13, "CERTIFICATE OF A PROBABILITY MODEL", VIZ_HLEFT, VIZ_VTOP);
    viz_font(cr, 9, 0);
    char dl[96];
    snprintf(dl, sizeof dl, "issued %s", date[0] ? date : "(date not recorded)");
    text(d, LBL_W - M, 13, dl, VIZ_HRIGHT, VIZ_VTOP);
    cairo_set_source_rgb(cr, 1, 1, 1);
    viz_font(cr, 20, 1);
    text_fit(d, M, 31, name, LBL_W - 2 * M, VIZ_HLEFT, VIZ_VTOP);
    viz_set_rgb(cr, (viz_rgb){0.86, 0.89, 0.94}, 1);
    viz_font(cr, 10.5, 0);
    text_fit(d, M, 58, kind, LBL_W - 2 * M, VIZ_HLEFT, VIZ_VTOP);

    /* test data */
    double y = H + 11;
    char dn[256], line[512];
    lbl_data_name(cert, dn, sizeof dn);
    const double rows = lbl_num(cert, "data.test.rows"), dim = lbl_num(cert, "data.test.dim");
    const int labelled = lbl_bool(cert, "data.test.labels_used");
    size_t k = (size_t)snprintf(line, sizeof line, "Test data: %s", dn[0] ? dn : "(file not recorded)");
    if (isfinite(rows) && k < sizeof line) {
        char r[48];
        lbl_fmt_count(rows, r, sizeof r);
        k += (size_t)snprintf(line + k, sizeof line - k, "  \xe2\x80\x94  %s rows", r);
        if (isfinite(dim) && k < sizeof line) k += (size_t)snprintf(line + k, sizeof line - k, " of %.0f values", dim);
    }
    if (labelled == 1 && k < sizeof line) snprintf(line + k, sizeof line - k, ", with class labels");
    rgb(d, INK);
    viz_font(cr, 10.5, 1);
    text_fit(d, M, y, line, LBL_W - 2 * M, VIZ_HLEFT, VIZ_VTOP);
    y += 16;
    char hex[65];
    int combined = 0;
    rgb(d, GREY);
    viz_font(cr, 9, 0);
    if (lbl_data_sha(cert, hex, &combined))
        snprintf(line, sizeof line, "SHA-256 fingerprint%s: %.16s\xe2\x80\xa6  (identifies the exact data; equal fingerprints = same data)",
                 combined ? " of the data files" : "", hex);
    else
        snprintf(line, sizeof line, "SHA-256 fingerprint of the data: not recorded");
    text_fit(d, M, y, line, LBL_W - 2 * M, VIZ_HLEFT, VIZ_VTOP);
    return y + 20;
}

/* ------------------------------------------------------------------ rating block */

static const char *ref_kind(const cJSON *cert) {
    const char *r = lbl_str(cert, "rating.reference");
    if (!r) r = lbl_str(cert, "provenance.settings.rating_reference");
    return r;
}

static double bound(const cJSON *cert, int k) {
    const cJSON *b = lbl_get(cert, "rating.boundaries");
    if (cJSON_IsArray(b)) {
        const cJSON *it = cJSON_GetArrayItem(b, k);
        const double v = lbl_num(it, "min_index");
        if (isfinite(v)) return v;
    }
    return k < RF_CERT_N_BOUNDS ? rf_cert_bounds[k] : 0;
}

static double draw_rating_at(ld *d, const cJSON *cert, double y0) {
    cairo_t *cr = d->cr;
    const char compound = lbl_letter(cert, "rating.model.compound_rating");
    const char q = lbl_letter(cert, "rating.model.quality_rating"), r = lbl_letter(cert, "rating.model.resource_rating");
    const double qi = lbl_num(cert, "rating.model.quality_index"), ri = lbl_num(cert, "rating.model.resource_index");
    const double ci = lbl_num(cert, "rating.model.compound_index");
    const int capped = lbl_bool(cert, "rating.model.capped_by_guarantees") == 1;
    rgb(d, INK);
    viz_font(cr, 11, 1);
    text(d, M, y0, "OVERALL RATING", VIZ_HLEFT, VIZ_VTOP);
    const double hw = viz_text_width(cr, "OVERALL RATING");
    rgb(d, GREY);
    viz_font(cr, 9, 0);
    text(d, M + hw + 10, y0 + 1.5, "A = much better than the reference model, E = much worse", VIZ_HLEFT, VIZ_VTOP);
    const double top = y0 + 20, bh = 22, gap = 5;
    int arrow_row = compound ? compound - 'A' : -1;
    for (int k = 0; k < 5; k++) {
        const char L = (char)('A' + k);
        const double by = top + k * (bh + gap), bw = 128 + 24 * k, tip = 11;
        cairo_move_to(cr, M, by);
        cairo_line_to(cr, M + bw, by);
        cairo_line_to(cr, M + bw + tip, by + bh / 2);
        cairo_line_to(cr, M + bw, by + bh);
        cairo_line_to(cr, M, by + bh);
        cairo_close_path(cr);
        rgb(d, lbl_letter_rgb(L));
        cairo_fill(cr);
        viz_set_rgb(cr, lbl_letter_dark_text(L) ? INK : (viz_rgb){1, 1, 1}, 1);
        viz_font(cr, 15, 1);
        char s[2] = {L, 0};
        text(d, M + 9, by + bh / 2, s, VIZ_HLEFT, VIZ_VMIDDLE);
        char rng[64], a[24], b[24];
        if (k < 4) {
            lbl_fmt_sig(bound(cert, k), 3, a, sizeof a);
            snprintf(rng, sizeof rng, "index \xe2\x89\xa5 %s", a);
        } else {
            lbl_fmt_sig(bound(cert, 3), 3, b, sizeof b);
            snprintf(rng, sizeof rng, "index < %s", b);
        }
        viz_font(cr, 9, 0);
        text(d, M + bw - 4, by + bh / 2, rng, VIZ_HRIGHT, VIZ_VMIDDLE);
    }
    /* arrow with the compound letter */
    const double ax = M + 128 + 24 * 4 + 11 + 22, aw = 74, ah = 36;
    if (arrow_row >= 0) {
        const double cy = top + arrow_row * (bh + gap) + bh / 2;
        cairo_move_to(cr, ax, cy);
        cairo_line_to(cr, ax + 18, cy - ah / 2);
        cairo_line_to(cr, ax + aw, cy - ah / 2);
        cairo_line_to(cr, ax + aw, cy + ah / 2);
        cairo_line_to(cr, ax + 18, cy + ah / 2);
        cairo_close_path(cr);
        rgb(d, capped ? FAIL_RED : INK);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 1, 1, 1);
        viz_font(cr, 27, 1);
        char s[2] = {compound, 0};
        text(d, ax + 18 + (aw - 18) / 2, cy, s, VIZ_HCENTER, VIZ_VMIDDLE);
    } else {
        const double cy = top + 2 * (bh + gap) + bh / 2;
        round_rect(cr, ax, cy - ah / 2, aw, ah, 4);
        cairo_set_line_width(cr, 1.2);
        rgb(d, GREY);
        cairo_stroke(cr);
        viz_font(cr, 10, 1);
        text(d, ax + aw / 2, cy, "not rated", VIZ_HCENTER, VIZ_VMIDDLE);
    }
    /* right column: group ratings, the reference, caps */
    const double tx = ax + aw + 16, tw = LBL_W - M - tx;
    double y = top;
    char line[512], num[32];
    rgb(d, INK);
    viz_font(cr, 10, 1);
    text(d, tx, y, "Overall", VIZ_HLEFT, VIZ_VTOP);
    viz_font(cr, 9, 0);
    rgb(d, GREY);
    if (isfinite(ci)) {
        lbl_fmt_sig(ci, 3, num, sizeof num);
        snprintf(line, sizeof line, capped ? "index %s before the cap" : "index %s", num);
        text(d, tx + tw, y, line, VIZ_HRIGHT, VIZ_VTOP);
    }
    y += 17;
    const char *gl[2] = {"Quality", "Resources"};
    const char gv[2] = {q, r};
    const double gi[2] = {qi, ri};
    for (int g = 0; g < 2; g++) {
        rgb(d, INK);
        viz_font(cr, 10, 0);
        text(d, tx, y + 8, gl[g], VIZ_HLEFT, VIZ_VMIDDLE);
        badge(d, tx + 80, y + 8, gv[g], 22, 16, 11);
        rgb(d, GREY);
        viz_font(cr, 9, 0);
        if (isfinite(gi[g])) {
            lbl_fmt_sig(gi[g], 3, num, sizeof num);
            snprintf(line, sizeof line, "index %s", num);
            text(d, tx + tw, y + 8, line, VIZ_HRIGHT, VIZ_VMIDDLE);
        } else {
            text(d, tx + tw, y + 8, "not rated", VIZ_HRIGHT, VIZ_VMIDDLE);
        }
        y += 21;
    }
    y += 3;
    const int avail = lbl_bool(cert, "rating.reference_available");
    const char *rk = ref_kind(cert);
    viz_font(cr, 9, 0);
    if (avail == 1 || (avail < 0 && compound)) {
        rgb(d, INK);
        snprintf(line, sizeof line, "Reference: a %s fitted on the same training data.", lbl_ref_display(rk));
        y = wrap(d, tx, y, line, tw, 11.5);
    } else {
        rgb(d, GREY);
        const char *why = lbl_str(cert, "rating.unrated_reason");
        snprintf(line, sizeof line, "Not rated: %s.", why ? why : "no reference model in this certificate");
        y = wrap(d, tx, y, line, tw, 11.5);
    }
    if (capped) {
        y += 3;
        rgb(d, FAIL_RED);
        viz_font(cr, 9.5, 1);
        y = wrap(d, tx, y, "CAPPED AT E: a numerical guarantee failed (see below).", tw, 12);
    }
    const double bottom = top + 5 * (bh + gap) - gap;
    return (y > bottom ? y : bottom) + 14;
}

/* ------------------------------------------------------------------ metric rows */

static const cJSON *metric(const cJSON *cert, const char *key) {
    const cJSON *m = lbl_get(lbl_get(cert, "metrics"), key);
    return cJSON_IsObject(m) ? m : NULL;
}

static int has_metric(const cJSON *cert, const char *key) { return metric(cert, key) != NULL; }

/* Secondary line of a value (p99, batch size, coverage example, energy method, ...). *warn = 1:
 * draw it as a warning (ESTIMATED). */
static void value_note(const cJSON *cert, const lbl_metric_desc *dsc, const cJSON *m, char *buf, size_t n,
                       int *warn, int *good) {
    char t[64];
    buf[0] = '\0';
    *warn = 0;
    *good = 0;
    if (!m) return;
    if (!strcmp(dsc->key, "nll")) {
        const double b = lbl_num(cert, "metrics.bits_per_dim.value");
        if (isfinite(b)) {
            lbl_fmt_sig(b, 3, t, sizeof t);
            snprintf(buf, n, "= %s bits per value", t);
        }
    } else if (!strcmp(dsc->key, "latency_sample") || !strcmp(dsc->key, "latency_batch")) {
        const double p = lbl_num(m, "p99"), bsz = lbl_num(m, "batch");
        if (isfinite(p)) {
            lbl_fmt_seconds(p, t, sizeof t);
            if (isfinite(bsz)) snprintf(buf, n, "%.0f rows; 99 %% within %s", bsz, t);
            else snprintf(buf, n, "99 %% of calls within %s", t);
        }
    } else if (!strcmp(dsc->key, "sampling_rate")) {
        const double bsz = lbl_num(m, "batch");
        if (isfinite(bsz)) snprintf(buf, n, "in batches of %.0f", bsz);
    } else if (!strcmp(dsc->key, "peak_memory")) {
        const double pb = lbl_num(m, "parameter_bytes");
        if (isfinite(pb)) {
            lbl_fmt_bytes(pb, t, sizeof t);
            snprintf(buf, n, "of which parameters %s", t);
        }
    } else if (!strcmp(dsc->key, "hdr_calibration_error")) {
        const cJSON *lv = lbl_get(m, "levels"), *cv = lbl_get(m, "coverage");
        const int L = cJSON_IsArray(lv) && cJSON_IsArray(cv) ? cJSON_GetArraySize(lv) : 0;
        int best = -1;
        for (int k = 0; k < L; k++) {
            const cJSON *a = cJSON_GetArrayItem(lv, k), *c = cJSON_GetArrayItem(cv, k);
            if (!cJSON_IsNumber(a) || !cJSON_IsNumber(c)) continue;
            if (best < 0 || fabs(a->valuedouble - 0.9) < fabs(cJSON_GetArrayItem(lv, best)->valuedouble - 0.9)) best = k;
        }
        if (best >= 0) {
            char a[24], c[24];
            lbl_fmt_sig(100 * cJSON_GetArrayItem(lv, best)->valuedouble, 3, a, sizeof a);
            lbl_fmt_sig(100 * cJSON_GetArrayItem(cv, best)->valuedouble, 3, c, sizeof c);
            snprintf(buf, n, "%s %% region holds %s %%", a, c);
        }
    } else if (dsc->sec == LBL_SEC_ENERGY) {
        const int est = lbl_bool(m, "estimated");
        const char *meth = lbl_str(m, "energy_method");
        if (est == 1 || (est < 0 && meth && !strncmp(meth, "estimated", 9))) {
            const double w = lbl_num(cert, "energy.watts_per_core");
            if (isfinite(w)) {
                lbl_fmt_sig(w, 3, t, sizeof t);
                snprintf(buf, n, "ESTIMATED (%s W/core)", t);
            } else {
                snprintf(buf, n, "ESTIMATED");
            }
            *warn = 1;
        } else if (est == 0 || meth) {
            snprintf(buf, n, "measured (RAPL)");
            *good = 1;
        }
    }
}

static double draw_section_head(ld *d, double y, const char *title, const char *caption, char letter, int show_badge) {
    cairo_t *cr = d->cr;
    cairo_rectangle(cr, M, y, LBL_W - 2 * M, 22);
    rgb(d, LIGHT);
    cairo_fill(cr);
    rgb(d, INK);
    viz_font(cr, 10.5, 1);
    text(d, M + 8, y + 11, title, VIZ_HLEFT, VIZ_VMIDDLE);
    if (show_badge) {
        badge(d, COL_BADGE, y + 11, letter, 24, 16, 11);
        rgb(d, GREY);
        viz_font(cr, 8.5, 0);
        text(d, COL_BADGE - 17, y + 11, caption, VIZ_HRIGHT, VIZ_VMIDDLE);
    }
    return y + 22;
}

static double draw_columns(ld *d, double y, const char *ref_col) {
    cairo_t *cr = d->cr;
    rgb(d, GREY);
    viz_font(cr, 8, 0);
    text(d, M + 8, y + 4, "measurement", VIZ_HLEFT, VIZ_VTOP);
    text(d, COL_VALUE, y + 4, "this model", VIZ_HLEFT, VIZ_VTOP);
    text_fit(d, COL_REF, y + 4, ref_col, COL_BADGE - 20 - COL_REF, VIZ_HLEFT, VIZ_VTOP);
    text(d, COL_BADGE, y + 4, "rating", VIZ_HCENTER, VIZ_VTOP);
    return y + 15;
}

static double draw_row(ld *d, const cJSON *cert, const lbl_metric_desc *dsc, const char *rk, double y) {
    cairo_t *cr = d->cr;
    const cJSON *m = metric(cert, dsc->key);
    const cJSON *rm = dsc->rating_key ? metric(cert, dsc->rating_key) : m;
    const double v = lbl_num(m, "value");
    char val[96], note[160], ref[96] = "", refnote[96] = "";
    lbl_fmt_metric(dsc, v, val, sizeof val);
    int warn = 0, good = 0;
    value_note(cert, dsc, m, note, sizeof note, &warn, &good);
    const char letter = lbl_letter(rm, "rating");
    const double idx = lbl_num(rm, "index");
    if (rk) {
        char key[96];
        snprintf(key, sizeof key, "references.%s", rk);
        const double rv = lbl_num(m, key);
        lbl_fmt_metric(dsc, rv, ref, sizeof ref);
    }
    if (isfinite(idx)) {
        char t[32];
        lbl_fmt_sig(idx, 3, t, sizeof t);
        snprintf(refnote, sizeof refnote, "index %s", t);
    } else if (m && lbl_bool(rm, "rated") == 1) {
        snprintf(refnote, sizeof refnote, "not rated");
    }
    /* title and explanation */
    rgb(d, INK);
    viz_font(cr, 10, 0);
    text_fit(d, M + 8, y + 5, dsc->title, COL_VALUE - M - 16, VIZ_HLEFT, VIZ_VTOP);
    if (dsc->sub) {
        rgb(d, GREY);
        viz_font(cr, 8, 0);
        text_fit(d, M + 8, y + 17, dsc->sub, COL_VALUE - M - 14, VIZ_HLEFT, VIZ_VTOP);
    }
    /* value */
    if (val[0]) {
        rgb(d, INK);
        viz_font(cr, 10.5, 1);
        text_fit(d, COL_VALUE, y + 4, val, COL_REF - COL_VALUE - 8, VIZ_HLEFT, VIZ_VTOP);
    } else {
        rgb(d, GREY);
        viz_font(cr, 10, 0);
        const char *why = !m ? "not measured"
                          : !strcmp(dsc->key, "train_seconds") ? "not recorded"
                                                              : "not measured";
        text(d, COL_VALUE, y + 5, why, VIZ_HLEFT, VIZ_VTOP);
    }
    if (note[0]) {
        viz_set_rgb(cr, warn ? WARN_ORANGE : good ? PASS_GREEN : GREY, 1);
        viz_font(cr, 8, warn || good);
        text_fit(d, COL_VALUE, y + 17, note, COL_REF - COL_VALUE - 6, VIZ_HLEFT, VIZ_VTOP);
    }
    /* reference */
    rgb(d, GREY);
    viz_font(cr, 9.5, 0);
    if (ref[0]) text_fit(d, COL_REF, y + 5, ref, COL_BADGE - 18 - COL_REF, VIZ_HLEFT, VIZ_VTOP);
    else if (m) text(d, COL_REF, y + 5, "\xe2\x80\x94", VIZ_HLEFT, VIZ_VTOP);
    if (refnote[0]) {
        viz_font(cr, 8, 0);
        text(d, COL_REF, y + 17, refnote, VIZ_HLEFT, VIZ_VTOP);
    }
    /* metrics outside the rating scheme ("rated": false) get no badge; rated ones without a letter a dash */
    if (letter || lbl_bool(rm, "rated") != 0) badge(d, COL_BADGE, y + ROW_H / 2, letter, 24, 18, 12);
    cairo_set_line_width(cr, 0.6);
    rgb(d, LIGHT);
    cairo_move_to(cr, M, y + ROW_H);
    cairo_line_to(cr, LBL_W - M, y + ROW_H);
    cairo_stroke(cr);
    return y + ROW_H;
}

static double draw_metrics(ld *d, const cJSON *cert, double y) {
    cairo_t *cr = d->cr;
    const char *rk = ref_kind(cert);
    const int avail = lbl_bool(cert, "rating.reference_available") != 0;
    char refcol[96];
    snprintf(refcol, sizeof refcol, "reference (%s)", avail && rk ? lbl_ref_short(rk) : "none");
    const char *titles[LBL_N_SEC] = {"QUALITY", "COST: SIZE, ARITHMETIC, TIME, MEMORY", "ENERGY"};
    for (int s = 0; s < LBL_N_SEC; s++) {
        char letter = 0;
        const char *cap = NULL;
        int show = 1;
        if (s == LBL_SEC_QUALITY) {
            letter = lbl_letter(cert, "rating.model.quality_rating");
            cap = "quality rating";
        } else if (s == LBL_SEC_COST) {
            letter = lbl_letter(cert, "rating.model.resource_rating");
            cap = "resource rating (cost and energy)";
        } else {
            show = 0;
        }
        y = draw_section_head(d, y, titles[s], cap, letter, show);
        if (s == LBL_SEC_ENERGY) {
            char em[160];
            const int meas = lbl_energy_method(cert, em, sizeof em);
            viz_set_rgb(cr, meas == 1 ? PASS_GREEN : meas == 0 ? WARN_ORANGE : GREY, 1);
            viz_font(cr, 10, meas >= 0);
            text_fit(d, LBL_W - M - 8, y - 11, em, LBL_W - 2 * M - 100, VIZ_HRIGHT, VIZ_VMIDDLE);
        }
        y = draw_columns(d, y, refcol);
        for (int k = 0; k < lbl_n_metrics; k++) {
            const lbl_metric_desc *dsc = &lbl_metrics[k];
            if (dsc->sec != (lbl_section_id)s) continue;
            if (!strcmp(dsc->key, "bits_per_dim")) continue; /* shown under the NLL */
            if (dsc->classifier_only && !has_metric(cert, dsc->key)) continue;
            y = draw_row(d, cert, dsc, avail ? rk : NULL, y);
        }
        if (s == LBL_SEC_ENERGY) {
            char em[160];
            const int meas = lbl_energy_method(cert, em, sizeof em);
            const char *scope = lbl_str(cert, "energy.scope");
            char line[600];
            if (meas == 0) {
                const double w = lbl_num(cert, "energy.watts_per_core");
                char t[32] = "a fixed";
                if (isfinite(w)) lbl_fmt_sig(w, 3, t, sizeof t);
                snprintf(line, sizeof line,
                         "ESTIMATED, not measured: no energy counter (RAPL) could be read on this machine, so energy = "
                         "CPU time \xc3\x97 %s%s per core, a rough figure. Compare such numbers only with other estimates.",
                         t, isfinite(w) ? " W" : " power");
                viz_set_rgb(cr, WARN_ORANGE, 1);
                viz_font(cr, 8.5, 1);
            } else if (meas == 1) {
                snprintf(line, sizeof line, "Measured with the CPU's energy counters (RAPL)%s%s.", scope ? "; scope: " : "",
                         scope ? scope : "");
                rgb(d, GREY);
                viz_font(cr, 8.5, 0);
            } else {
                snprintf(line, sizeof line, "How the energy was obtained is not recorded.");
                rgb(d, GREY);
                viz_font(cr, 8.5, 0);
            }
            y = wrap(d, M + 8, y + 5, line, LBL_W - 2 * M - 16, 11) + 2;
        }
        y += 10;
    }
    return y;
}

/* ------------------------------------------------------------------ reference models */

/* One line per reference model (and this model first): test NLL, energy, overall rating against
 * the rating reference. Nothing when the certificate has no references. */
static double draw_references(ld *d, const cJSON *cert, double y) {
    cairo_t *cr = d->cr;
    const cJSON *refs = lbl_get(cert, "references"), *r;
    int any = 0;
    cJSON_ArrayForEach(r, refs) any |= lbl_str(r, "name") != NULL;
    if (!cJSON_IsArray(refs) || !any) return y;
    y = draw_section_head(d, y, "REFERENCE MODELS, FITTED ON THE SAME TRAINING DATA", NULL, 0, 0);
    rgb(d, GREY);
    viz_font(cr, 8, 0);
    text(d, M + 8, y + 4, "model", VIZ_HLEFT, VIZ_VTOP);
    text(d, COL_VALUE, y + 4, "test negative log-likelihood", VIZ_HLEFT, VIZ_VTOP);
    text(d, COL_REF, y + 4, "energy per 1000 evaluations", VIZ_HLEFT, VIZ_VTOP);
    text(d, COL_BADGE, y + 4, "overall", VIZ_HCENTER, VIZ_VTOP);
    y += 15;
    const lbl_metric_desc *dn = &lbl_metrics[0], *de = NULL;
    for (int k = 0; k < lbl_n_metrics; k++)
        if (!strcmp(lbl_metrics[k].key, "energy_log_density")) de = &lbl_metrics[k];
    const char *rk = ref_kind(cert);
    for (int i = -1; i < cJSON_GetArraySize(refs); i++) {
        const cJSON *ref = i < 0 ? NULL : cJSON_GetArrayItem(refs, i);
        const char *kind = ref ? lbl_str(ref, "name") : NULL;
        if (i >= 0 && !kind) continue;
        const cJSON *mm = i < 0 ? lbl_get(cert, "metrics") : lbl_get(ref, "metrics");
        char name[160], nll[64], en[64], path[160];
        if (i < 0) snprintf(name, sizeof name, "this model");
        else snprintf(name, sizeof name, "%s%s", lbl_ref_display(kind), rk && !strcmp(kind, rk) ? " (the rating reference)" : "");
        lbl_fmt_metric(dn, lbl_num(mm, "nll.value"), nll, sizeof nll);
        en[0] = '\0';
        if (de) lbl_fmt_metric(de, lbl_num(mm, "energy_log_density.value"), en, sizeof en);
        const char *err = ref ? lbl_str(ref, "error") : NULL;
        if (i < 0) snprintf(path, sizeof path, "rating.model.compound_rating");
        else snprintf(path, sizeof path, "rating.references.%s.compound_rating", kind);
        const char L = lbl_letter(cert, path);
        const double rh = 20;
        viz_set_rgb(cr, INK, 1);
        viz_font(cr, 9.5, i < 0);
        text_fit(d, M + 8, y + rh / 2, name, COL_VALUE - M - 16, VIZ_HLEFT, VIZ_VMIDDLE);
        if (err) {
            rgb(d, GREY);
            viz_font(cr, 9, 0);
            char t[300];
            snprintf(t, sizeof t, "not available: %s", err);
            text_fit(d, COL_VALUE, y + rh / 2, t, LBL_W - M - 8 - COL_VALUE, VIZ_HLEFT, VIZ_VMIDDLE);
        } else {
            viz_set_rgb(cr, nll[0] ? INK : GREY, 1);
            text(d, COL_VALUE, y + rh / 2, nll[0] ? nll : "not measured", VIZ_HLEFT, VIZ_VMIDDLE);
            viz_set_rgb(cr, en[0] ? INK : GREY, 1);
            text(d, COL_REF, y + rh / 2, en[0] ? en : "not measured", VIZ_HLEFT, VIZ_VMIDDLE);
            badge(d, COL_BADGE, y + rh / 2, L, 22, 15, 10.5);
        }
        cairo_set_line_width(cr, 0.6);
        rgb(d, LIGHT);
        cairo_move_to(cr, M, y + rh);
        cairo_line_to(cr, LBL_W - M, y + rh);
        cairo_stroke(cr);
        y += rh;
    }
    const char *note = lbl_str(cert, "references_note");
    if (note) {
        rgb(d, GREY);
        viz_font(cr, 8, 0);
        y = wrap(d, M + 8, y + 5, note, LBL_W - 2 * M - 16, 10) + 2;
    }
    return y + 10;
}

/* ------------------------------------------------------------------ guarantees */

typedef struct gcheck {
    char title[128], detail[400];
    int status; /* 1 pass, 0 fail, -1 not verified */
} gcheck;

static void fmt_err(double v, char *buf, size_t n) { lbl_fmt_sig(v, 2, buf, n); }

static void describe_check(const cJSON *cert, const cJSON *c, gcheck *g) {
    const char *id = lbl_str(c, "id");
    const char *name = lbl_str(c, "name");
    const double v = lbl_num(c, "value"), thr = lbl_num(c, "threshold");
    const int p = lbl_bool(c, "pass");
    const char *st = lbl_str(c, "status");
    g->status = p == 1 ? 1 : p == 0 ? 0 : st && !strcmp(st, "fail") ? 0 : st && !strcmp(st, "pass") ? 1 : -1;
    char a[48], b[48], x[48], y[48];
    lbl_fmt_sig(v, 2, a, sizeof a);
    lbl_fmt_sig(thr, 2, b, sizeof b);
    const char *what = NULL;
    const char *sub = NULL;
    if (id && !strncmp(id, "invertibility_", 14)) {
        what = !strcmp(id, "invertibility_test")      ? "Invertible on the test data"
               : !strcmp(id, "invertibility_samples") ? "Invertible on samples drawn from the model"
               : !strcmp(id, "invertibility_box")     ? "Invertible on random points of the input range"
                                                      : NULL;
        sub = !strcmp(id, "invertibility_test") ? "invertibility.test" : !strcmp(id, "invertibility_samples") ? "invertibility.samples"
              : !strcmp(id, "invertibility_box") ? "invertibility.box" : NULL;
        char pm[80], pn[80];
        snprintf(pm, sizeof pm, "%s.mean_abs_error", sub ? sub : "-");
        snprintf(pn, sizeof pn, "%s.nonfinite", sub ? sub : "-");
        const double mean = sub ? lbl_num(lbl_get(cert, "guarantees"), pm) : NAN;
        const double nf = sub ? lbl_num(lbl_get(cert, "guarantees"), pn) : NAN;
        if (isfinite(v)) {
            fmt_err(v, a, sizeof a);
            if (isfinite(mean)) {
                fmt_err(mean, x, sizeof x);
                snprintf(g->detail, sizeof g->detail, "round trip x \xe2\x86\x92 f(x) \xe2\x86\x92 back: largest error %s, mean %s (limit %s)", a, x, b);
            } else {
                snprintf(g->detail, sizeof g->detail, "round trip x \xe2\x86\x92 f(x) \xe2\x86\x92 back: largest error %s (limit %s)", a, b);
            }
        } else if (isfinite(nf) && nf > 0) {
            snprintf(g->detail, sizeof g->detail, "round trip gives NaN or infinity for %.0f points", nf);
        } else {
            snprintf(g->detail, sizeof g->detail, "round-trip error not finite (limit %s)", b);
        }
    } else if (id && !strcmp(id, "finite_log_density")) {
        what = "Finite likelihood on every test row";
        if (isfinite(v)) snprintf(g->detail, sizeof g->detail, "%s %s NaN or infinity", v == 0 ? "no" : a, v == 1 ? "row gives" : "rows give");
    } else if (id && !strcmp(id, "logdet_agreement")) {
        what = "Volume change matches a numerical check";
        const cJSON *lj = lbl_get(cert, "guarantees.log_determinant");
        const double np_ = lbl_num(lj, "points_pass"), nf_ = lbl_num(lj, "points_fail"), nu_ = lbl_num(lj, "points_not_verified");
        if (g->status < 0 && isfinite(nu_))
            snprintf(g->detail, sizeof g->detail,
                     "finite-difference interval too wide to decide at %.0f of %.0f points (%.0f pass, %.0f fail; limit %s nats)",
                     nu_, np_ + nf_ + nu_, np_, nf_, b);
        else if (g->status < 0)
            snprintf(g->detail, sizeof g->detail, "not checked: too many dimensions for a full numerical Jacobian");
        else if (isfinite(v))
            snprintf(g->detail, sizeof g->detail, "log-determinant vs. finite-difference Jacobian: largest difference %s nats (limit %s)", a, b);
        else
            snprintf(g->detail, sizeof g->detail, "log-determinant vs. finite-difference Jacobian: difference not finite (limit %s nats)", b);
    } else if (id && !strcmp(id, "lipschitz_condition")) {
        what = "Stable in both directions (bi-Lipschitz)";
        const double lf = lbl_num(cert, "guarantees.lipschitz.forward"), li = lbl_num(cert, "guarantees.lipschitz.inverse");
        lbl_fmt_sig(lf, 3, x, sizeof x);
        lbl_fmt_sig(li, 3, y, sizeof y);
        if (isfinite(lf) && isfinite(li))
            snprintf(g->detail, sizeof g->detail, "Lipschitz constant of the flow %s, of its inverse %s; product %s (limit %s)", x, y, a, b);
        else
            snprintf(g->detail, sizeof g->detail, "Lipschitz constants not finite: the flow or its inverse blows up (limit %s)", b);
    }
    if (!what) { /* a check this label does not know: its own words */
        what = name ? name : id ? id : "unnamed check";
        const char *unit = lbl_str(c, "unit"), *cmp = lbl_str(c, "comparison");
        snprintf(g->detail, sizeof g->detail, "value %s%s%s (limit %s %s)", a, unit ? " " : "", unit ? unit : "", cmp ? cmp : "", b);
    }
    snprintf(g->title, sizeof g->title, "%s", what);
    if (!g->detail[0]) snprintf(g->detail, sizeof g->detail, "value %s (limit %s)", a, b);
}

static double draw_guarantees(ld *d, const cJSON *cert, double y) {
    cairo_t *cr = d->cr;
    int n_fail = 0, n_unver = 0;
    const int verdict = lbl_guarantees_verdict(cert, &n_fail, &n_unver);
    const double x0 = M, w = LBL_W - 2 * M, top = y;
    char head[128];
    if (verdict == 1) snprintf(head, sizeof head, "NUMERICAL GUARANTEES: ALL PASSED");
    else if (verdict == 2) snprintf(head, sizeof head, "NUMERICAL GUARANTEES: NONE FAILED, %d NOT VERIFIED", n_unver);
    else if (verdict == 0) snprintf(head, sizeof head, "NUMERICAL GUARANTEES: %d FAILED", n_fail);
    else snprintf(head, sizeof head, "NUMERICAL GUARANTEES: NOT CHECKED");
    const viz_rgb hc = verdict == 1 ? PASS_GREEN : verdict == 0 ? FAIL_RED : verdict == 2 ? WARN_ORANGE : GREY;
    cairo_rectangle(cr, x0, y, w, 24);
    rgb(d, hc);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 1, 1, 1);
    viz_font(cr, 11, 1);
    text(d, x0 + 10, y + 12, head, VIZ_HLEFT, VIZ_VMIDDLE);
    viz_font(cr, 8.5, 0);
    text(d, x0 + w - 10, y + 12, "checked by computation on this model", VIZ_HRIGHT, VIZ_VMIDDLE);
    y += 24;
    const cJSON *checks = lbl_get(cert, "guarantees.checks"), *c;
    int rows = 0;
    cJSON_ArrayForEach(c, checks) {
        if (!cJSON_IsObject(c)) continue;
        gcheck g;
        memset(&g, 0, sizeof g);
        describe_check(cert, c, &g);
        const double rh = 31;
        if (g.status == 0) {
            cairo_rectangle(cr, x0, y, w, rh);
            viz_set_rgb(cr, (viz_rgb){1.0, 0.90, 0.90}, 1);
            cairo_fill(cr);
        }
        check_icon(cr, x0 + 16, y + rh / 2, g.status);
        viz_set_rgb(cr, g.status == 0 ? FAIL_RED : INK, 1);
        viz_font(cr, 10, 1);
        text_fit(d, x0 + 32, y + 5, g.title, w - 140, VIZ_HLEFT, VIZ_VTOP);
        viz_set_rgb(cr, g.status == 0 ? FAIL_RED : GREY, 1);
        viz_font(cr, 8.5, 0);
        text_fit(d, x0 + 32, y + 18, g.detail, w - 44, VIZ_HLEFT, VIZ_VTOP);
        viz_set_rgb(cr, g.status > 0 ? PASS_GREEN : g.status == 0 ? FAIL_RED : GREY, 1);
        viz_font(cr, 10, 1);
        text(d, x0 + w - 10, y + 5, g.status > 0 ? "PASSED" : g.status == 0 ? "FAILED" : "NOT CHECKED", VIZ_HRIGHT, VIZ_VTOP);
        cairo_set_line_width(cr, 0.6);
        rgb(d, LIGHT);
        cairo_move_to(cr, x0, y + rh);
        cairo_line_to(cr, x0 + w, y + rh);
        cairo_stroke(cr);
        y += rh;
        rows++;
    }
    if (!rows) {
        rgb(d, GREY);
        viz_font(cr, 9.5, 0);
        text(d, x0 + 10, y + 8, "No guarantee was checked for this model.", VIZ_HLEFT, VIZ_VTOP);
        y += 26;
    }
    /* where they were checked */
    char line[700], t1[48], t2[48], t3[48], lo[48], hi[48];
    const cJSON *g = lbl_get(cert, "guarantees");
    const double nt = lbl_num(g, "points.test_rows"), ns = lbl_num(g, "points.model_samples"), nb = lbl_num(g, "points.box_uniform");
    const double a = lbl_num(g, "input_range.min_over_dims"), b = lbl_num(g, "input_range.max_over_dims");
    if (isfinite(a) && isfinite(b)) {
        lbl_fmt_count(nt, t1, sizeof t1);
        lbl_fmt_count(ns, t2, sizeof t2);
        lbl_fmt_count(nb, t3, sizeof t3);
        lbl_fmt_sig(a, 3, lo, sizeof lo);
        lbl_fmt_sig(b, 3, hi, sizeof hi);
        if (isfinite(nt) && isfinite(ns) && isfinite(nb))
            snprintf(line, sizeof line,
                     "Input range: checked on %s test rows, %s samples from the model and %s random points inside the box "
                     "spanned by the test data (each input value between its minimum and maximum in the test data; overall "
                     "from %s to %s). Outside this range nothing is guaranteed.",
                     t1, t2, t3, lo, hi);
        else
            snprintf(line, sizeof line,
                     "Input range: checked inside the box spanned by the test data (overall from %s to %s). Outside this range "
                     "nothing is guaranteed.", lo, hi);
        rgb(d, INK);
        viz_font(cr, 8.5, 0);
        y = wrap(d, x0 + 10, y + 6, line, w - 20, 11);
    }
    if (verdict == 0) {
        viz_set_rgb(cr, FAIL_RED, 1);
        viz_font(cr, 9.5, 1);
        y = wrap(d, x0 + 10, y + 5,
                 "A FAILED guarantee means this model's likelihoods or samples cannot be trusted in that respect; its "
                 "overall rating is capped at E.", w - 20, 12);
    }
    y += 6;
    cairo_rectangle(cr, x0 + 0.5, top + 0.5, w - 1, y - top - 1);
    cairo_set_line_width(cr, verdict == 0 ? 2.5 : 1);
    rgb(d, hc);
    cairo_stroke(cr);
    return y + 12;
}

/* ------------------------------------------------------------------ footer */

static double footer_text(ld *d, const cJSON *cert, double y) {
    cairo_t *cr = d->cr;
    const double x0 = M + 10, w = LBL_W - 2 * M - 20;
    y += 9;
    rgb(d, INK);
    viz_font(cr, 9.5, 1);
    text(d, x0, y, "How to read this label", VIZ_HLEFT, VIZ_VTOP);
    y += 14;
    char b[5][24];
    for (int k = 0; k < 4; k++) lbl_fmt_sig(bound(cert, k), 3, b[k], sizeof b[k]);
    const char *rk = ref_kind(cert);
    char line[1400];
    snprintf(line, sizeof line,
             "Each measurement is compared with the same measurement of a reference model fitted on the same training data "
             "(here: a %s): index = reference / value when lower is better, value / reference when higher is better (for "
             "accuracy, F1 and kappa their errors 1 \xe2\x88\x92 value are compared; the likelihood per input value). "
             "A: index \xe2\x89\xa5 %s (at least twice as good as the reference), B: \xe2\x89\xa5 %s, C: \xe2\x89\xa5 %s "
             "(about as good), D: \xe2\x89\xa5 %s, E: below %s. The overall rating is the geometric mean of the indices, "
             "half quality and half resources; a failed guarantee caps it at E. A dash: not rated (no reference value).",
             lbl_ref_display(rk), b[0], b[1], b[2], b[3], b[3]);
    viz_font(cr, 8.5, 0);
    y = wrap(d, x0, y, line, w, 11);
    y += 5;
    viz_font(cr, 9.5, 1);
    text(d, x0, y, "Provenance", VIZ_HLEFT, VIZ_VTOP);
    y += 14;
    const cJSON *env = lbl_get(cert, "provenance.environment");
    const char *lib = lbl_str(env, "library"), *ver = lbl_str(env, "version");
    if (!ver) ver = lbl_str(cert, "generator.version");
    const char *comp = lbl_str(env, "compiler"), *cpu = lbl_str(env, "cpu_model"), *kern = lbl_str(env, "kernel");
    const double ncpu = lbl_num(env, "logical_cpus"), thr = lbl_num(env, "threads");
    const char *seed = lbl_str(cert, "provenance.settings.seed");
    if (!seed) seed = lbl_str(cert, "model.seed");
    const char *msha = lbl_str(cert, "provenance.model_file.sha256");
    const char *cmd = lbl_str(cert, "provenance.command");
    size_t k = 0;
    k += (size_t)snprintf(line + k, sizeof line - k, "Made by %s %s", lib ? lib : "renflow", ver ? ver : "(version not recorded)");
    if (comp && k < sizeof line) k += (size_t)snprintf(line + k, sizeof line - k, ", compiled with %s", comp);
    if (k < sizeof line)
        k += (size_t)snprintf(line + k, sizeof line - k, ". CPU: %s", cpu ? cpu : "not recorded");
    if (isfinite(ncpu) && k < sizeof line) k += (size_t)snprintf(line + k, sizeof line - k, " (%.0f logical CPUs", ncpu);
    if (isfinite(ncpu) && isfinite(thr) && k < sizeof line) k += (size_t)snprintf(line + k, sizeof line - k, ", %.0f threads used", thr);
    if (isfinite(ncpu) && k < sizeof line) k += (size_t)snprintf(line + k, sizeof line - k, ")");
    if (kern && k < sizeof line) k += (size_t)snprintf(line + k, sizeof line - k, ", %s", kern);
    if (k < sizeof line) k += (size_t)snprintf(line + k, sizeof line - k, ". Random seed: %s.", seed ? seed : "not recorded");
    if (k < sizeof line)
        k += (size_t)snprintf(line + k, sizeof line - k, " Model file SHA-256: %.16s%s", msha ? msha : "not recorded", msha ? "\xe2\x80\xa6" : ".");
    if (cmd && k < sizeof line) snprintf(line + k, sizeof line - k, " Command: %s", cmd);
    rgb(d, GREY);
    viz_font(cr, 8, 0);
    y = wrap(d, x0, y, line, w, 10.5);
    y += 4;
    viz_font(cr, 7.5, 0);
    const char *schema = lbl_str(cert, "schema");
    snprintf(line, sizeof line, "All numbers come from the certificate file (schema %s), which also records how each was measured.",
             schema ? schema : "?");
    y = wrap(d, x0, y, line, w, 10);
    return y + 6;
}

/* The footer on a light background: its height measured first on a scratch surface (no cairo
 * groups: the SVG surface of cairo 1.16 leaks the surfaces behind them). */
static double draw_footer(ld *d, const cJSON *cert, double y) {
    cairo_t *scratch = viz_scratch();
    ld m = {scratch, NULL};
    const double bottom = footer_text(&m, cert, y);
    cairo_destroy(scratch);
    cairo_rectangle(d->cr, M, y, LBL_W - 2 * M, bottom - y);
    viz_set_rgb(d->cr, (viz_rgb){0.955, 0.96, 0.965}, 1);
    cairo_fill(d->cr);
    return footer_text(d, cert, y);
}

double lbl_draw(cairo_t *cr, const cJSON *cert, lbl_buf *log) {
    ld d = {cr, log};
    double y = draw_header(&d, cert);
    y = draw_rating_at(&d, cert, y + 6);
    y = draw_metrics(&d, cert, y);
    y = draw_references(&d, cert, y);
    y = draw_guarantees(&d, cert, y);
    y = draw_footer(&d, cert, y);
    return ceil(y + M * 0.6);
}

/* ------------------------------------------------------------------ files */

int rf_cert_check_schema(const cJSON *cert, const char *name, rf_err *e) {
    const char *nm = name && *name ? name : "certificate";
    if (!cJSON_IsObject(cert)) return rf_err_set(e, RF_EFORMAT, "%s: not a renflow certificate (not a JSON object)", nm);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(cert, "schema");
    if (!s) return rf_err_set(e, RF_EFORMAT, "%s: not a renflow certificate (field \"schema\" is missing)", nm);
    if (!cJSON_IsString(s) || !s->valuestring)
        return rf_err_set(e, RF_EFORMAT, "%s: not a renflow certificate (field \"schema\" is not a string)", nm);
    if (strcmp(s->valuestring, RF_CERT_SCHEMA_ID) != 0)
        return rf_err_set(e, RF_EFORMAT, "%s: field \"schema\" is \"%.200s\", expected \"%s\" (another program or version)", nm,
                          s->valuestring, RF_CERT_SCHEMA_ID);
    return RF_OK;
}

cJSON *rf_cert_read(const char *path, rf_err *e) {
    if (!path || !*path) {
        rf_err_set(e, RF_EARG, "no certificate file given");
        return NULL;
    }
    /* a directory written by renflow certify: its certificate.json */
    char dpath[4200];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(dpath, sizeof dpath, "%s%scertificate.json", path, path[strlen(path) - 1] == '/' ? "" : "/");
        path = dpath;
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    if (rf_read_file(path, &buf, &len, e) != RF_OK) return NULL;
    const char *at = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts((const char *)buf, len, &at, 0);
    if (!j) {
        long off = at && at >= (const char *)buf && at <= (const char *)buf + len ? (long)(at - (const char *)buf) : -1;
        if (off >= 0) rf_err_set(e, RF_EFORMAT, "%s: not valid JSON (error near byte %ld)", path, off);
        else rf_err_set(e, RF_EFORMAT, "%s: not valid JSON", path);
        free(buf);
        return NULL;
    }
    free(buf);
    if (rf_cert_check_schema(j, path, e) != RF_OK) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

/* text/font setup shared with viz figures (unhinted metrics: same layout in every format) */
static void setup_cr(cairo_t *cr) {
    cairo_font_options_t *fo = cairo_font_options_create();
    cairo_font_options_set_hint_metrics(fo, CAIRO_HINT_METRICS_OFF);
    cairo_font_options_set_hint_style(fo, CAIRO_HINT_STYLE_SLIGHT);
    cairo_font_options_set_antialias(fo, CAIRO_ANTIALIAS_GRAY);
    cairo_set_font_options(cr, fo);
    cairo_font_options_destroy(fo);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
}

static double label_height(const cJSON *cert) {
    cairo_t *cr = viz_scratch();
    setup_cr(cr);
    const double h = lbl_draw(cr, cert, NULL);
    cairo_destroy(cr);
    return h;
}

static cairo_status_t buf_write(void *closure, const unsigned char *data, unsigned int len) {
    lbl_buf *b = closure;
    lbl_buf_add(b, (const char *)data, len);
    return b->oom ? CAIRO_STATUS_NO_MEMORY : CAIRO_STATUS_SUCCESS;
}

/* SVG: drawn into memory, then <title> and <desc> (the words of the label) are inserted after the
 * opening <svg> tag, and the file written atomically. */
static int write_svg(const cJSON *cert, const char *path, double h, rf_err *e) {
    lbl_buf svg = {0}, words = {0}, out = {0};
    cairo_surface_t *s = cairo_svg_surface_create_for_stream(buf_write, &svg, LBL_W, h);
    int rc = RF_OK;
    if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS) cairo_svg_surface_set_document_unit(s, CAIRO_SVG_UNIT_PX);
    cairo_t *cr = cairo_create(s);
    setup_cr(cr);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    lbl_draw(cr, cert, &words);
    cairo_status_t st = cairo_status(cr);
    cairo_destroy(cr);
    cairo_surface_finish(s);
    if (st == CAIRO_STATUS_SUCCESS) st = cairo_surface_status(s);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS || svg.oom || words.oom || !svg.s) {
        rc = rf_err_set(e, svg.oom || words.oom || st == CAIRO_STATUS_NO_MEMORY ? RF_ENOMEM : RF_EIO,
                        "%s: drawing the label failed: %s", path, cairo_status_to_string(st));
        goto done;
    }
    const char *open = strstr(svg.s, "<svg");
    const char *end = open ? strchr(open, '>') : NULL;
    if (!end) {
        rc = rf_err_set(e, RF_EIO, "%s: cairo produced no <svg> element", path);
        goto done;
    }
    char name[256];
    lbl_model_name(cert, name, sizeof name);
    lbl_buf_add(&out, svg.s, (size_t)(end + 1 - svg.s));
    lbl_buf_puts(&out, "\n<title>Certificate label: ");
    lbl_buf_xml(&out, name);
    const char L = lbl_letter(cert, "rating.model.compound_rating");
    if (L) lbl_buf_printf(&out, " \xe2\x80\x94 overall rating %c", L);
    else lbl_buf_puts(&out, " \xe2\x80\x94 not rated");
    lbl_buf_puts(&out, "</title>\n<desc>");
    lbl_buf_xml(&out, words.s ? words.s : "");
    lbl_buf_puts(&out, "</desc>");
    lbl_buf_puts(&out, end + 1);
    if (out.oom) {
        rc = rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    rc = rf_write_file_atomic(path, out.s, out.len, e);
done:
    lbl_buf_free(&svg);
    lbl_buf_free(&words);
    lbl_buf_free(&out);
    return rc;
}

int rf_cert_label_write(const cJSON *cert, const char *path, rf_err *e) {
    if (!path || !*path) return rf_err_set(e, RF_EARG, "no label file name given");
    int rc = rf_cert_check_schema(cert, path, e);
    if (rc) return rc;
    viz_format fmt;
    if ((rc = viz_format_of(path, &fmt, e))) return rc;
    const double h = label_height(cert);
    if (fmt == VIZ_SVG) return write_svg(cert, path, h, e);
    viz_fig f;
    if ((rc = viz_fig_open(&f, path, LBL_W, h, e))) return rc;
    if (fmt == VIZ_PDF) {
        char name[256], title[300];
        lbl_model_name(cert, name, sizeof name);
        snprintf(title, sizeof title, "Certificate label: %s", name);
        cairo_pdf_surface_set_metadata(f.surf, CAIRO_PDF_METADATA_TITLE, title);
    }
    lbl_draw(f.cr, cert, NULL);
    return viz_fig_close(&f, e);
}

int rf_cert_label_render(const cJSON *cert, const char *out_dir, void *ctx, rf_err *e) {
    (void)ctx;
    static const char *const NAMES[3] = {"label.svg", "label.pdf", "label.png"};
    if (!out_dir || !*out_dir) return rf_err_set(e, RF_EARG, "no output directory for the label");
    for (int k = 0; k < 3; k++) {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", out_dir, NAMES[k]) >= (int)sizeof path)
            return rf_err_set(e, RF_EARG, "output directory name too long: %s", out_dir);
        int rc = rf_cert_label_write(cert, path, e);
        if (rc) return rc;
    }
    return RF_OK;
}
