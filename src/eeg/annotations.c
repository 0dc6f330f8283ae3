/* EDF+ annotation lists, Sleep-EDF hypnograms (per-epoch stages, AASM mapping, checks against
 * the recording) and event lists (eegmmidb T0/T1/T2). */
#include "edf_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *src_name(const rf_annotations *a) {
    return a && a->source ? a->source : "(annotations)";
}

void rf_annotations_free(rf_annotations *a) {
    if (!a) return;
    for (int i = 0; i < a->n; i++) free(a->items[i].text);
    free(a->items);
    free(a->source);
    memset(a, 0, sizeof *a);
}

int rf_annotations_add(rf_annotations *a, double onset_s, double duration_s, const char *text,
                       rf_err *e) {
    if (!a || !text) return rf_err_set(e, RF_EARG, "rf_annotations_add: NULL argument");
    if (!isfinite(onset_s) || !isfinite(duration_s) || (duration_s < 0 && duration_s != -1.0))
        return rf_err_set(e, RF_EARG,
                          "annotation '%s': onset %g s / duration %g s must be finite, duration >= 0 "
                          "or -1 (none)",
                          text, onset_s, duration_s);
    rf_annotation *it = realloc(a->items, (size_t)(a->n + 1) * sizeof *it);
    if (!it) return rf_err_set(e, RF_ENOMEM, "out of memory for annotations");
    a->items = it;
    char *t = strdup(text);
    if (!t) return rf_err_set(e, RF_ENOMEM, "out of memory for annotations");
    it[a->n].onset_s = onset_s;
    it[a->n].duration_s = duration_s;
    it[a->n].text = t;
    a->n++;
    return RF_OK;
}

int rf_annotations_copy(const rf_annotations *src, rf_annotations *dst, rf_err *e) {
    memset(dst, 0, sizeof *dst);
    for (int i = 0; i < src->n; i++) {
        int rc = rf_annotations_add(dst, src->items[i].onset_s, src->items[i].duration_s,
                                    src->items[i].text, e);
        if (rc) {
            rf_annotations_free(dst);
            return rc;
        }
    }
    if (src->source && !(dst->source = strdup(src->source))) {
        rf_annotations_free(dst);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    return RF_OK;
}

int rf_annotations_read(const char *path, rf_annotations *out, rf_err *e) {
    memset(out, 0, sizeof *out);
    rf_edf *r;
    int rc = rf_edf_open(path, &r, e);
    if (rc) return rc;
    rc = rf_annotations_copy(rf_edf_annotations(r), out, e);
    rf_edf_free(r);
    return rc;
}

int rf_annotations_check_within(const rf_annotations *a, double duration_s, rf_err *e) {
    const double tol = 1e-6;
    for (int i = 0; i < a->n; i++) {
        const rf_annotation *x = &a->items[i];
        double end = x->onset_s + (x->duration_s > 0 ? x->duration_s : 0);
        if (x->onset_s < -tol || x->onset_s > duration_s + tol || end > duration_s + tol)
            return rf_err_set(e, RF_EFORMAT,
                              "file %s: annotation %d ('%s', onset %.6g s, duration %.6g s) lies "
                              "outside the recording (0 .. %.6g s)",
                              src_name(a), i + 1, x->text, x->onset_s, x->duration_s, duration_s);
    }
    return RF_OK;
}

/* ---- sleep stages ---- */

int rf_sleep_stage_from_text(const char *text) {
    if (!text) return -1;
    char t[64];
    while (*text == ' ') text++;
    size_t n = strlen(text);
    while (n && text[n - 1] == ' ') n--;
    if (n >= sizeof t) return -1;
    memcpy(t, text, n);
    t[n] = '\0';
    if (strcasecmp(t, "Movement time") == 0) return RF_STAGE_MOVEMENT;
    if (strncasecmp(t, "Sleep stage ", 12) != 0) return -1;
    const char *s = t + 12;
    static const struct {
        const char *k;
        int v;
    } map[] = {{"W", RF_STAGE_W},   {"1", RF_STAGE_N1},  {"2", RF_STAGE_N2},   {"3", RF_STAGE_N3},
               {"4", RF_STAGE_N4},  {"R", RF_STAGE_REM}, {"?", RF_STAGE_UNKNOWN}, {"N1", RF_STAGE_N1},
               {"N2", RF_STAGE_N2}, {"N3", RF_STAGE_N3}, {"REM", RF_STAGE_REM}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcasecmp(s, map[i].k) == 0) return map[i].v;
    return -1;
}

const char *rf_sleep_stage_name(int stage) {
    static const char *const names[RF_STAGE_COUNT] = {"W", "N1", "N2", "N3", "N4", "REM", "?", "MT"};
    return stage >= 0 && stage < RF_STAGE_COUNT ? names[stage] : "invalid";
}

int rf_sleep_stage_aasm(int stage) {
    switch (stage) {
    case RF_STAGE_W: return 0;
    case RF_STAGE_N1: return 1;
    case RF_STAGE_N2: return 2;
    case RF_STAGE_N3:
    case RF_STAGE_N4: return 3;
    case RF_STAGE_REM: return 4;
    default: return -1;
    }
}

int rf_hypnogram_to_aasm(int *stages, int n) {
    int unmapped = 0;
    for (int i = 0; i < n; i++) {
        stages[i] = rf_sleep_stage_aasm(stages[i]);
        unmapped += stages[i] < 0;
    }
    return unmapped;
}

/* Number of whole epochs in t seconds; -1 when t is not a multiple of epoch_s (1 ms tolerance). */
static int64_t epochs_of(double t, double epoch_s) {
    double q = t / epoch_s;
    double k = nearbyint(q);
    if (fabs(k * epoch_s - t) > 1e-3 || k > 1e9 || k < -1e9) return -1;
    return (int64_t)k;
}

typedef struct stage_span {
    int64_t first, count;
    int stage;
    int index; /* annotation index (for messages) */
} stage_span;

static int cmp_span(const void *a, const void *b) {
    const stage_span *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->index - y->index;
}

/* The stage annotations as epoch spans, sorted, checked for grid alignment and overlap. */
static int stage_spans(const rf_annotations *a, double epoch_s, stage_span **out, int *n_out, rf_err *e) {
    *out = NULL;
    *n_out = 0;
    if (!(epoch_s > 0) || !isfinite(epoch_s))
        return rf_err_set(e, RF_EARG, "hypnogram %s: epoch length %g s must be positive", src_name(a), epoch_s);
    stage_span *sp = malloc((size_t)(a->n ? a->n : 1) * sizeof *sp);
    if (!sp) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int n = 0;
    for (int i = 0; i < a->n; i++) {
        const rf_annotation *x = &a->items[i];
        int st = rf_sleep_stage_from_text(x->text);
        if (st < 0) continue;
        if (x->duration_s < 0) {
            free(sp);
            return rf_err_set(e, RF_EFORMAT,
                              "hypnogram %s: annotation %d ('%s' at %.6g s) has no duration", src_name(a),
                              i + 1, x->text, x->onset_s);
        }
        int64_t f = epochs_of(x->onset_s, epoch_s), c = epochs_of(x->duration_s, epoch_s);
        if (f < 0 || c < 0) {
            free(sp);
            return rf_err_set(e, RF_EFORMAT,
                              "hypnogram %s: annotation %d ('%s'): %s %.6g s is not a multiple of "
                              "the %g s epoch",
                              src_name(a), i + 1, x->text, f < 0 ? "onset" : "duration",
                              f < 0 ? x->onset_s : x->duration_s, epoch_s);
        }
        sp[n].first = f;
        sp[n].count = c;
        sp[n].stage = st;
        sp[n].index = i;
        n++;
    }
    qsort(sp, (size_t)n, sizeof *sp, cmp_span);
    for (int k = 1; k < n; k++)
        if (sp[k].first < sp[k - 1].first + sp[k - 1].count) {
            const rf_annotation *p = &a->items[sp[k - 1].index], *q = &a->items[sp[k].index];
            int rc = rf_err_set(e, RF_EFORMAT,
                                "hypnogram %s: annotation %d ('%s' at %.6g s for %.6g s) overlaps "
                                "annotation %d ('%s' at %.6g s)",
                                src_name(a), sp[k - 1].index + 1, p->text, p->onset_s, p->duration_s,
                                sp[k].index + 1, q->text, q->onset_s);
            free(sp);
            return rc;
        }
    *out = sp;
    *n_out = n;
    return RF_OK;
}

int rf_hypnogram_epochs(const rf_annotations *a, double epoch_s, int n_epochs_max, int **stages,
                        int *n, rf_err *e) {
    *stages = NULL;
    *n = 0;
    if (n_epochs_max < 0)
        return rf_err_set(e, RF_EARG, "hypnogram %s: n_epochs_max %d is negative", src_name(a), n_epochs_max);
    stage_span *sp;
    int ns;
    int rc = stage_spans(a, epoch_s, &sp, &ns, e);
    if (rc) return rc;
    if (ns == 0) {
        free(sp);
        return rf_err_set(e, RF_EFORMAT, "hypnogram %s: no sleep-stage annotation among its %d annotations",
                          src_name(a), a->n);
    }
    int64_t total = sp[ns - 1].first + sp[ns - 1].count;
    if (sp[0].first < 0) {
        int i0 = sp[0].index;
        free(sp);
        return rf_err_set(e, RF_EFORMAT, "hypnogram %s: annotation %d ('%s') starts before the recording (%.6g s)",
                          src_name(a), i0 + 1, a->items[i0].text, a->items[i0].onset_s);
    }
    if (n_epochs_max > 0 && total > n_epochs_max) total = n_epochs_max;
    if (total > 100000000) {
        free(sp);
        return rf_err_set(e, RF_EFORMAT, "hypnogram %s: %lld epochs is implausibly long", src_name(a),
                          (long long)total);
    }
    int *s = malloc((size_t)(total ? total : 1) * sizeof *s);
    if (!s) {
        free(sp);
        return rf_err_set(e, RF_ENOMEM, "out of memory for %lld epochs", (long long)total);
    }
    for (int64_t i = 0; i < total; i++) s[i] = RF_STAGE_UNKNOWN;
    for (int k = 0; k < ns; k++)
        for (int64_t i = sp[k].first; i < sp[k].first + sp[k].count && i < total; i++) s[i] = sp[k].stage;
    free(sp);
    *stages = s;
    *n = (int)total;
    return RF_OK;
}

int rf_hypnogram_check_against(const rf_annotations *a, double recording_s, double epoch_s,
                               rf_err *e) {
    if (!(recording_s > 0) || !isfinite(recording_s))
        return rf_err_set(e, RF_EARG, "hypnogram %s: recording duration %g s must be positive",
                          src_name(a), recording_s);
    stage_span *sp;
    int ns;
    int rc = stage_spans(a, epoch_s, &sp, &ns, e);
    if (rc) return rc;
    if (ns == 0) {
        free(sp);
        return rf_err_set(e, RF_EFORMAT, "hypnogram %s: no sleep-stage annotation among its %d annotations",
                          src_name(a), a->n);
    }
    const double tol = 1e-6;
    const rf_annotation *first = &a->items[sp[0].index];
    if (first->onset_s < -tol || first->onset_s >= recording_s) {
        rc = rf_err_set(e, RF_EFORMAT,
                        "hypnogram %s does not match the recording: its first stage annotation "
                        "('%s') starts at %.6g s, outside the %.6g s recording",
                        src_name(a), first->text, first->onset_s, recording_s);
        free(sp);
        return rc;
    }
    for (int k = 0; k < ns; k++) {
        const rf_annotation *x = &a->items[sp[k].index];
        if (sp[k].stage == RF_STAGE_UNKNOWN) continue;
        if (x->onset_s + x->duration_s > recording_s + tol) {
            rc = rf_err_set(e, RF_EFORMAT,
                            "hypnogram %s does not match the recording: annotation %d ('%s' at "
                            "%.6g s for %.6g s) ends at %.6g s, after the recording ends (%.6g s)",
                            src_name(a), sp[k].index + 1, x->text, x->onset_s, x->duration_s,
                            x->onset_s + x->duration_s, recording_s);
            free(sp);
            return rc;
        }
    }
    free(sp);
    return RF_OK;
}

/* ---- events ---- */

int rf_events_from_annotations(const rf_annotations *a, double rate_hz, const char *const *codes,
                               int n_codes, int64_t n_samples, rf_event **ev, int *n, rf_err *e) {
    *ev = NULL;
    *n = 0;
    if (!(rate_hz > 0) || !isfinite(rate_hz) || n_codes <= 0 || !codes)
        return rf_err_set(e, RF_EARG, "events from %s: rate %g Hz and %d codes must be positive",
                          src_name(a), rate_hz, n_codes);
    rf_event *out = malloc((size_t)(a->n ? a->n : 1) * sizeof *out);
    if (!out) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int m = 0;
    for (int i = 0; i < a->n; i++) {
        const rf_annotation *x = &a->items[i];
        const char *t = x->text;
        while (*t == ' ') t++;
        size_t tl = strlen(t);
        while (tl && t[tl - 1] == ' ') tl--;
        int code = -1;
        for (int k = 0; k < n_codes && code < 0; k++)
            if (codes[k] && strlen(codes[k]) == tl && strncmp(codes[k], t, tl) == 0) code = k;
        if (code < 0) continue;
        double on = x->onset_s * rate_hz;
        double du = x->duration_s < 0 ? -1 : x->duration_s * rate_hz;
        if (!isfinite(on) || fabs(on) > 9e15 || !isfinite(du) || du > 9e15) {
            free(out);
            return rf_err_set(e, RF_EFORMAT, "file %s: annotation %d ('%s') has an impossible onset %g s",
                              src_name(a), i + 1, x->text, x->onset_s);
        }
        int64_t o = llround(on), d = x->duration_s < 0 ? -1 : llround(du);
        if (n_samples > 0 && (o < 0 || o >= n_samples || (d > 0 && o + d > n_samples))) {
            free(out);
            return rf_err_set(e, RF_EFORMAT,
                              "file %s: annotation %d ('%s' at %.6g s for %.6g s = samples %lld..%lld) "
                              "lies outside the recording (%lld samples, %.6g s at %g Hz)",
                              src_name(a), i + 1, x->text, x->onset_s, x->duration_s, (long long)o,
                              (long long)(o + (d > 0 ? d : 0)), (long long)n_samples,
                              (double)n_samples / rate_hz, rate_hz);
        }
        out[m].onset = o;
        out[m].duration = d;
        out[m].code = code;
        m++;
    }
    if (m == 0) {
        free(out);
        out = NULL;
    }
    *ev = out;
    *n = m;
    return RF_OK;
}

int rf_mi_events(const rf_annotations *a, double rate_hz, int64_t n_samples, rf_event **ev, int *n,
                 rf_err *e) {
    static const char *const codes[3] = {"T0", "T1", "T2"};
    return rf_events_from_annotations(a, rate_hz, codes, 3, n_samples, ev, n, e);
}
