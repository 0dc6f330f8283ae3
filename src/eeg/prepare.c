/* `renflow eeg prepare`: EDF recordings -> windows.npy, labels.npy, subjects.npy,
 * recordings.npy and manifest.json, written atomically as a directory. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prep_internal.h"
#include "renflow/data.h"
#include "renflow/dsp.h"
#include "renflow/edf.h"
#include "renflow/dataset.h"

static const char *const SLEEP_CLASSES[5] = {"W", "N1", "N2", "N3", "REM"};

void rf_prep_cfg_default(rf_prep_cfg *c, rf_prep_mode mode) {
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->highpass = 0.5;
    c->lowpass = 45;
    c->order = 4;
    c->notch = 0;
    c->notch_q = 30;
    c->rate = 128;
    c->window_s = mode == RF_PREP_SLEEP ? 30 : 4;
    c->hop_s = 0;
    c->pre_s = 0;
    c->post_s = 4;
    c->trim_wake_min = mode == RF_PREP_SLEEP ? 30 : -1;
    c->robust = 1;
    c->reject_absz = 20;
    c->reject_ptp = 0;
    c->strict_edf = 0;
    if (mode == RF_PREP_SLEEP) c->lowpass = 35;
}

void rf_prep_cfg_free(rf_prep_cfg *c) {
    for (int i = 0; i < c->n_channels; i++) free(c->channels[i]);
    for (int i = 0; i < c->n_codes; i++) free(c->codes[i]);
    c->n_channels = c->n_codes = 0;
}

static const char *const MODE_NAMES[3] = {"label", "sleep", "events"};
static const char *const STD_NAMES[3] = {"none", "recording", "subject"};

const char *rf_std_scope_name(int scope) { return scope >= 0 && scope < 3 ? STD_NAMES[scope] : "?"; }

int rf_std_scope_parse(const char *s, int *scope) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, STD_NAMES[i])) {
            *scope = i;
            return RF_OK;
        }
    return RF_EARG;
}

cJSON *rf_prep_cfg_to_json(const rf_prep_cfg *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "mode", MODE_NAMES[c->mode]);
    cJSON_AddItemToObject(j, "channels", cJSON_CreateStringArray((const char *const *)c->channels, c->n_channels));
    cJSON_AddNumberToObject(j, "highpass_hz", c->highpass);
    cJSON_AddNumberToObject(j, "lowpass_hz", c->lowpass);
    cJSON_AddNumberToObject(j, "filter_order", c->order);
    cJSON_AddNumberToObject(j, "notch_hz", c->notch);
    cJSON_AddNumberToObject(j, "notch_q", c->notch_q);
    cJSON_AddNumberToObject(j, "rate_hz", c->rate);
    cJSON_AddNumberToObject(j, "window_s", c->window_s);
    cJSON_AddNumberToObject(j, "hop_s", c->hop_s);
    cJSON_AddNumberToObject(j, "pre_s", c->pre_s);
    cJSON_AddNumberToObject(j, "post_s", c->post_s);
    cJSON_AddItemToObject(j, "codes", cJSON_CreateStringArray((const char *const *)c->codes, c->n_codes));
    cJSON_AddNumberToObject(j, "trim_wake_min", c->trim_wake_min);
    cJSON_AddBoolToObject(j, "robust_standardisation", c->robust != RF_STD_NONE);
    cJSON_AddStringToObject(j, "standardisation", rf_std_scope_name(c->robust));
    cJSON_AddNumberToObject(j, "reject_absz", c->reject_absz);
    cJSON_AddNumberToObject(j, "reject_ptp", c->reject_ptp);
    cJSON_AddBoolToObject(j, "strict_edf", c->strict_edf);
    return j;
}

static int get_num(const cJSON *s, const char *path, const char *k, double *v, rf_err *e) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, k);
    if (!cJSON_IsNumber(x)) return rf_err_set(e, RF_EFORMAT, "%s: settings field \"%s\" is missing or not a number", path, k);
    *v = x->valuedouble;
    return RF_OK;
}

static int get_strings(const cJSON *s, const char *path, const char *k, char **out, int max, int *n, rf_err *e) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(s, k), *it;
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) > max)
        return rf_err_set(e, RF_EFORMAT, "%s: settings field \"%s\" must be an array of at most %d strings", path, k, max);
    *n = 0;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it)) return rf_err_set(e, RF_EFORMAT, "%s: settings field \"%s\" holds a non-string", path, k);
        if (!(out[(*n)++] = strdup(it->valuestring))) return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    return RF_OK;
}

int rf_prep_cfg_from_manifest(const char *path, rf_prep_cfg *c, char ***class_names, int *n_classes, rf_err *e) {
    unsigned char *buf;
    size_t len;
    int rc = rf_read_file(path, &buf, &len, e);
    if (rc) return rc;
    cJSON *m = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    const cJSON *s = m ? cJSON_GetObjectItemCaseSensitive(m, "settings") : NULL;
    if (!cJSON_IsObject(s)) {
        cJSON_Delete(m);
        return rf_err_set(e, RF_EFORMAT, "%s: not a renflow manifest (no \"settings\" object)", path);
    }
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(s, "mode");
    int mi = -1;
    for (int i = 0; i < 3; i++)
        if (cJSON_IsString(mode) && !strcmp(mode->valuestring, MODE_NAMES[i])) mi = i;
    if (mi < 0) {
        cJSON_Delete(m);
        return rf_err_set(e, RF_EFORMAT, "%s: settings field \"mode\" must be label, sleep or events", path);
    }
    rf_prep_cfg_default(c, (rf_prep_mode)mi);
    double order = 4, robust_d = 1, strict_d = 0;
    rc = get_num(s, path, "highpass_hz", &c->highpass, e);
    if (!rc) rc = get_num(s, path, "lowpass_hz", &c->lowpass, e);
    if (!rc) rc = get_num(s, path, "filter_order", &order, e);
    if (!rc) rc = get_num(s, path, "notch_hz", &c->notch, e);
    if (!rc) rc = get_num(s, path, "notch_q", &c->notch_q, e);
    if (!rc) rc = get_num(s, path, "rate_hz", &c->rate, e);
    if (!rc) rc = get_num(s, path, "window_s", &c->window_s, e);
    if (!rc) rc = get_num(s, path, "hop_s", &c->hop_s, e);
    if (!rc) rc = get_num(s, path, "pre_s", &c->pre_s, e);
    if (!rc) rc = get_num(s, path, "post_s", &c->post_s, e);
    if (!rc) rc = get_num(s, path, "trim_wake_min", &c->trim_wake_min, e);
    if (!rc) rc = get_num(s, path, "reject_absz", &c->reject_absz, e);
    if (!rc) rc = get_num(s, path, "reject_ptp", &c->reject_ptp, e);
    if (!rc) rc = get_strings(s, path, "channels", c->channels, RF_PREP_MAX_CHANNELS, &c->n_channels, e);
    if (!rc) rc = get_strings(s, path, "codes", c->codes, RF_PREP_MAX_CODES, &c->n_codes, e);
    if (!rc) {
        robust_d = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "robust_standardisation"));
        strict_d = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "strict_edf"));
        c->order = (int)order;
        c->robust = robust_d ? RF_STD_RECORDING : RF_STD_NONE;
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(s, "standardisation");
        if (sc && rf_std_scope_parse(cJSON_IsString(sc) ? sc->valuestring : NULL, &c->robust))
            rc = rf_err_set(e, RF_EFORMAT, "%s: settings field \"standardisation\" must be none, recording or subject", path);
        c->strict_edf = (int)strict_d;
    }
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(m, "class_names"), *it;
    *class_names = NULL;
    *n_classes = 0;
    if (!rc && cJSON_IsArray(cn))
        cJSON_ArrayForEach(it, cn) {
            if (!cJSON_IsString(it) || rf_name_index(class_names, n_classes, it->valuestring, 1, e) < 0) {
                rc = rf_err_set(e, RF_EFORMAT, "%s: field \"class_names\" must hold strings", path);
                break;
            }
        }
    cJSON_Delete(m);
    return rc;
}

/* ------------------------------------------------------------------ accumulation */

typedef struct acc {
    float *x;
    int *y, *subj, *rec;
    long n, cap;
    int C, T;
} acc;

static int acc_push(acc *a, const float *w, int y, int subj, int rec, rf_err *e) {
    if (a->n == a->cap) {
        long cap = a->cap ? 2 * a->cap : 256;
        float *x = realloc(a->x, sizeof(float) * (size_t)cap * a->C * a->T);
        if (x) a->x = x;
        int *yy = realloc(a->y, sizeof(int) * (size_t)cap);
        if (yy) a->y = yy;
        int *ss = realloc(a->subj, sizeof(int) * (size_t)cap);
        if (ss) a->subj = ss;
        int *rr = realloc(a->rec, sizeof(int) * (size_t)cap);
        if (rr) a->rec = rr;
        if (!x || !yy || !ss || !rr) return rf_err_set(e, RF_ENOMEM, "out of memory for %ld windows", cap);
        a->cap = cap;
    }
    memcpy(a->x + (size_t)a->n * a->C * a->T, w, sizeof(float) * (size_t)a->C * a->T);
    a->y[a->n] = y;
    a->subj[a->n] = subj;
    a->rec[a->n] = rec;
    a->n++;
    return RF_OK;
}

static void acc_free(acc *a) {
    free(a->x);
    free(a->y);
    free(a->subj);
    free(a->rec);
}

/* Non-EEG signals left out of the default channel set. */
static int is_non_eeg(const char *label) {
    static const char *const bad[] = {"ECG", "EKG", "EOG", "EMG", "RESP", "TEMP", "EVENT", "MARKER", "STATUS", "A2-A1", "SAO2", "PLETH"};
    char up[64];
    size_t k = 0;
    for (; label[k] && k < sizeof up - 1; k++) up[k] = (char)toupper((unsigned char)label[k]);
    up[k] = 0;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (strstr(up, bad[i])) return 1;
    return 0;
}

/* ------------------------------------------------------------------ one recording */

typedef struct rec_out {
    long windows, dropped_artefact, dropped_unlabelled, dropped_edge, dropped_trimmed;
    double duration_s, rate_in;
    char warning[512];
} rec_out;

/* Per-window labels and start times (seconds) for one recording. */
static int recording_windows(const rf_prep_cfg *c, const rf_prep_row *row, rf_edf *rec, double dur, int label,
                             double **onsets, int **labels, int64_t *nw, rec_out *ro, rf_err *e) {
    *onsets = NULL;
    *labels = NULL;
    *nw = 0;
    int rc = RF_OK;
    if (c->mode == RF_PREP_LABEL) {
        const double hop = c->hop_s > 0 ? c->hop_s : c->window_s;
        const int64_t n = dur >= c->window_s ? (int64_t)floor((dur - c->window_s) / hop + 1e-9) + 1 : 0;
        *onsets = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
        *labels = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
        if (!*onsets || !*labels) return rf_err_set(e, RF_ENOMEM, "out of memory");
        for (int64_t k = 0; k < n; k++) {
            (*onsets)[k] = k * hop;
            (*labels)[k] = label;
        }
        *nw = n;
        return RF_OK;
    }
    if (c->mode == RF_PREP_SLEEP) {
        rf_annotations an = {0};
        int *st = NULL, ns = 0;
        if (!row->hypnogram)
            return rf_err_set(e, RF_EARG, "line %d (%s): sleep mode needs a hypnogram column entry", row->line, row->file);
        if ((rc = rf_annotations_read(row->hypnogram, &an, e))) return rc;
        if ((rc = rf_hypnogram_check_against(&an, dur, 30.0, e)) ||
            (rc = rf_hypnogram_epochs(&an, 30.0, (int)floor(dur / 30.0 + 1e-9), &st, &ns, e))) {
            rf_annotations_free(&an);
            return rc;
        }
        rf_annotations_free(&an);
        rf_hypnogram_to_aasm(st, ns);
        int first = -1, last = -1;
        for (int k = 0; k < ns; k++)
            if (st[k] > 0) {
                if (first < 0) first = k;
                last = k;
            }
        const int keepw = c->trim_wake_min >= 0 ? (int)(c->trim_wake_min * 2 + 1e-9) : -1;
        *onsets = malloc(sizeof(double) * (size_t)(ns > 0 ? ns : 1));
        *labels = malloc(sizeof(int) * (size_t)(ns > 0 ? ns : 1));
        if (!*onsets || !*labels) {
            free(st);
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        }
        for (int k = 0; k < ns; k++) {
            if (st[k] < 0) {
                ro->dropped_unlabelled++;
                continue;
            }
            if (keepw >= 0 && st[k] == 0 && (first < 0 || k < first - keepw || k > last + keepw)) {
                ro->dropped_trimmed++;
                continue;
            }
            (*onsets)[*nw] = 30.0 * k;
            (*labels)[*nw] = st[k];
            (*nw)++;
        }
        free(st);
        return RF_OK;
    }
    /* events: EDF+ annotations of the recording itself */
    rf_event *ev = NULL;
    int ne = 0;
    const double fs = 1000.0; /* millisecond resolution for onsets */
    if ((rc = rf_events_from_annotations(rf_edf_annotations(rec), fs, (const char *const *)c->codes, c->n_codes,
                                         (int64_t)floor(dur * fs), &ev, &ne, e)))
        return rc;
    *onsets = malloc(sizeof(double) * (size_t)(ne > 0 ? ne : 1));
    *labels = malloc(sizeof(int) * (size_t)(ne > 0 ? ne : 1));
    if (!*onsets || !*labels) {
        free(ev);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int k = 0; k < ne; k++) {
        (*onsets)[k] = ev[k].onset / fs - c->pre_s;
        (*labels)[k] = ev[k].code;
    }
    *nw = ne;
    free(ev);
    return RF_OK;
}

static void warn_cb(void *ctx, const char *msg) {
    rec_out *ro = ctx;
    snprintf(ro->warning, sizeof ro->warning, "%s", msg);
}

/* Opens a recording and reads its selected channels, filtered and resampled: *xp is
 * C x *mp samples at *rate_out Hz (caller frees); *rp stays open for the annotations. */
static int load_signal(const rf_prep_cfg *c, const rf_prep_row *row, rf_edf **rp, double **xp, int64_t *mp,
                       double *rate_out, rec_out *ro, rf_err *e) {
    rf_edf_opts o;
    rf_edf_opts_default(&o);
    o.strict_size = c->strict_edf;
    o.warn = warn_cb;
    o.warn_ctx = ro;
    rf_edf *r = NULL;
    *rp = NULL;
    *xp = NULL;
    int rc = rf_edf_open_opts(row->file, &o, &r, e);
    if (rc) return rc;
    int idx[RF_PREP_MAX_CHANNELS];
    double *x = NULL, *y = NULL;
    rf_sos sos = {0};
    const int C = c->n_channels;
    if ((rc = rf_edf_select_channels(r, (const char *const *)c->channels, C, idx, e))) goto done;
    const double fs = rf_edf_rate(r, idx[0]);
    for (int k = 1; k < C; k++)
        if (fabs(rf_edf_rate(r, idx[k]) - fs) > 1e-9) {
            rc = rf_err_set(e, RF_EFORMAT, "%s: channel \"%s\" is sampled at %g Hz but \"%s\" at %g Hz; select channels of one rate",
                            row->file, c->channels[k], rf_edf_rate(r, idx[k]), c->channels[0], fs);
            goto done;
        }
    const int64_t n = rf_edf_n_samples(r, idx[0]);
    ro->rate_in = fs;
    ro->duration_s = n / fs;
    if (!(x = malloc(sizeof(double) * (size_t)C * (size_t)(n > 0 ? n : 1)))) {
        rc = rf_err_set(e, RF_ENOMEM, "%s: out of memory for %d x %lld samples", row->file, C, (long long)n);
        goto done;
    }
    if ((rc = rf_edf_read_channels(r, idx, C, 0, n, x, e))) goto done;
    if (c->highpass > 0 || c->lowpass > 0 || c->notch > 0) {
        if ((rc = rf_eeg_filter_design(fs, c->highpass, c->lowpass, c->order, c->notch, c->notch_q, &sos, e)) ||
            (rc = rf_sosfiltfilt_rows(&sos, x, C, n, -1, RF_PAD_AUTO, e)))
            goto done;
    }
    const double rate = c->rate > 0 ? c->rate : fs;
    int64_t m = n;
    if (fabs(rate - fs) > 1e-9) {
        if ((rc = rf_resample_rows(x, C, n, fs, rate, NULL, &y, &m, e))) goto done;
        free(x);
        x = y;
        y = NULL;
    }
    *rp = r;
    *xp = x;
    *mp = m;
    *rate_out = rate;
    r = NULL;
    x = NULL;
done:
    free(x);
    free(y);
    rf_sos_free(&sos);
    rf_edf_free(r);
    return rc;
}

/* Robust statistics pooled over all recordings of one subject (rows rows[0..n)). */
static int subject_stats(const rf_prep_cfg *c, const rf_prep_list *list, const int *rows, int n, rf_robust_stats *rs,
                         rf_err *e) {
    double *all = NULL;
    int64_t total = 0;
    const int C = c->n_channels;
    int rc = RF_OK;
    for (int k = 0; k < n && !rc; k++) {
        rec_out ro = {0};
        rf_edf *r = NULL;
        double *x = NULL, rate;
        int64_t m;
        const rf_prep_row *row = &list->rows[rows[k]];
        if ((rc = load_signal(c, row, &r, &x, &m, &rate, &ro, e))) {
            rf_err_prefix(e, rc, "recording %s (list line %d)", row->file, row->line);
            break;
        }
        double *grown = realloc(all, sizeof(double) * (size_t)C * (size_t)(total + m));
        if (!grown) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory pooling the recordings of subject %s", list->rows[rows[0]].subject);
        } else {
            all = grown;
            /* channel-major: move the earlier channels apart, then append this recording */
            for (int ch = C - 1; ch >= 0; ch--) {
                memmove(all + (size_t)ch * (total + m), all + (size_t)ch * total, sizeof(double) * (size_t)total);
                memcpy(all + (size_t)ch * (total + m) + total, x + (size_t)ch * m, sizeof(double) * (size_t)m);
            }
            total += m;
        }
        free(x);
        rf_edf_free(r);
    }
    if (!rc && (rc = rf_robust_fit(all, C, total, 1e-6, rs, e)))
        rf_err_prefix(e, rc, "subject %s", list->rows[rows[0]].subject);
    free(all);
    return rc;
}

/* Standardisation by subject: (*first)[i] is the first list row of row i's subject, and
 * (*stats)[(*first)[i]] the statistics pooled over that subject's recordings. */
static int pool_subject_stats(const rf_prep_cfg *c, const rf_prep_list *list, int **first, rf_robust_stats **stats,
                              int progress, rf_err *e) {
    int *rows = malloc(sizeof(int) * (size_t)list->n);
    *first = malloc(sizeof(int) * (size_t)list->n);
    *stats = calloc((size_t)list->n, sizeof **stats);
    if (!rows || !*first || !*stats) {
        free(rows);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < list->n; i++) {
        (*first)[i] = i;
        for (int k = 0; k < i; k++)
            if (!strcmp(list->rows[k].subject, list->rows[i].subject)) {
                (*first)[i] = (*first)[k];
                break;
            }
    }
    int rc = RF_OK;
    for (int i = 0; i < list->n && !rc; i++) {
        if ((*first)[i] != i) continue;
        int n = 0;
        for (int k = i; k < list->n; k++)
            if ((*first)[k] == i) rows[n++] = k;
        rc = subject_stats(c, list, rows, n, &(*stats)[i], e);
        if (!rc && progress)
            fprintf(stderr, "renflow eeg prepare: standardisation statistics of subject %s from %d recording%s\n",
                    list->rows[i].subject, n, n == 1 ? "" : "s");
    }
    free(rows);
    return rc;
}

/* subj_rs: the subject's pooled statistics (standardisation by subject), else NULL. */
static int process_recording(const rf_prep_cfg *c, const rf_prep_row *row, int label, int subj, int rec_id,
                             const rf_robust_stats *subj_rs, acc *a, rec_out *ro, rf_err *e) {
    rf_edf *r = NULL;
    double *x = NULL, *onsets = NULL, *wbuf = NULL, rate;
    int64_t m;
    float *wf = NULL;
    int *labs = NULL;
    unsigned char *keep = NULL;
    rf_robust_stats rs = {0};
    rf_windows win = {0};
    const int C = c->n_channels;
    int rc = load_signal(c, row, &r, &x, &m, &rate, ro, e);
    if (rc) goto done;
    if (c->robust == RF_STD_SUBJECT) {
        if ((rc = rf_robust_apply(subj_rs, x, C, m, e))) goto done;
    } else if (c->robust) {
        if ((rc = rf_robust_fit(x, C, m, 1e-6, &rs, e)) || (rc = rf_robust_apply(&rs, x, C, m, e))) goto done;
    }
    int64_t nw;
    if ((rc = recording_windows(c, row, r, m / rate, label, &onsets, &labs, &nw, ro, e))) goto done;
    const double len_s = c->mode == RF_PREP_EVENTS ? c->pre_s + c->post_s : c->window_s;
    const int64_t T = (int64_t)llround(len_s * rate);
    if (T != a->T) {
        rc = rf_err_set(e, RF_EARG, "window of %g s at %g Hz is not a whole number of samples", len_s, rate);
        goto done;
    }
    if ((rc = rf_windows_at_onsets(m, rate, onsets, nw, 0, len_s, &win, e))) goto done;
    ro->dropped_edge += win.dropped;
    if (win.n == 0) goto done;
    wbuf = malloc(sizeof(double) * (size_t)win.n * C * T);
    wf = malloc(sizeof(float) * (size_t)C * T);
    keep = malloc((size_t)win.n);
    if (!wbuf || !wf || !keep) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = rf_windows_extract(x, C, m, &win, wbuf, e))) goto done;
    rf_reject_opts ro_opts = {.max_ptp = c->reject_ptp, .max_absz = c->reject_absz};
    rf_reject_counts cnt;
    if ((rc = rf_reject_windows(wbuf, win.n, C, T, &ro_opts, keep, &cnt, e))) goto done;
    ro->dropped_artefact += cnt.dropped;
    for (int64_t k = 0; k < win.n; k++) {
        if (!keep[k]) continue;
        const double *src = wbuf + (size_t)k * C * T;
        for (int64_t i = 0; i < C * T; i++) wf[i] = (float)src[i];
        if ((rc = acc_push(a, wf, labs[win.source[k]], subj, rec_id, e))) goto done;
        ro->windows++;
    }
done:
    if (rc) rf_err_prefix(e, rc, "recording %s (list line %d)", row->file, row->line);
    free(x);
    free(onsets);
    free(labs);
    free(wbuf);
    free(wf);
    free(keep);
    rf_windows_free(&win);
    rf_robust_stats_free(&rs);
    rf_edf_free(r);
    return rc;
}

/* ------------------------------------------------------------------ output */

static int write_i32(const char *dir, const char *name, const int *v, long n, rf_err *e) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    rf_ndarray arr = {.ndim = 1, .shape = {n}, .dtype = RF_DT_I32, .data = (void *)v};
    return rf_npy_write(p, &arr, e);
}

static void remove_dir(const char *dir) {
    static const char *const names[] = {"windows.npy", "labels.npy", "subjects.npy", "recordings.npy", "manifest.json"};
    char p[4400];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int rf_eeg_prepare(const char *list_csv, const rf_prep_cfg *cfg0, const char *const *fixed_classes,
                   int n_fixed, const char *out_dir, int progress, rf_prep_summary *sum, rf_err *e) {
    memset(sum, 0, sizeof *sum);
    rf_prep_cfg c = *cfg0; /* channel strings stay owned by cfg0, except defaults added here */
    int own_channels = 0;
    rf_prep_list list;
    int rc = rf_prep_list_read(list_csv, &list, e);
    if (rc) return rc;
    char **classes = NULL, **subjects = NULL, tmpdir[4096];
    int n_classes = 0, n_subjects = 0;
    acc a = {0};
    int *first_row = NULL;
    rf_robust_stats *row_stats = NULL;
    cJSON *recs = cJSON_CreateArray();
    tmpdir[0] = 0;
    if (c.mode == RF_PREP_EVENTS && c.n_codes < 1) {
        rc = rf_err_set(e, RF_EARG, "events mode needs at least one annotation code (e.g. T1,T2)");
        goto done;
    }
    if (!(c.window_s > 0) || !(c.rate >= 0) || (c.mode == RF_PREP_EVENTS && !(c.pre_s + c.post_s > 0))) {
        rc = rf_err_set(e, RF_EARG, "window length must be positive (window %g s, pre %g s, post %g s) and the rate >= 0 (%g)",
                        c.window_s, c.pre_s, c.post_s, c.rate);
        goto done;
    }
    /* class names: fixed (--like), sleep stages, event codes, or the label column */
    const char *const *fixed = fixed_classes;
    int nf = n_fixed;
    if (!fixed && c.mode == RF_PREP_SLEEP) {
        fixed = SLEEP_CLASSES;
        nf = 5;
    } else if (!fixed && c.mode == RF_PREP_EVENTS) {
        fixed = (const char *const *)c.codes;
        nf = c.n_codes;
    }
    for (int k = 0; k < nf; k++)
        if (rf_name_index(&classes, &n_classes, fixed[k], 1, e) < 0) {
            rc = e ? e->code : RF_ENOMEM;
            goto done;
        }
    /* default channels: the EEG channels of the first recording */
    if (c.n_channels == 0) {
        rf_edf *r0 = NULL;
        if ((rc = rf_edf_open(list.rows[0].file, &r0, e))) goto done;
        for (int k = 0; k < rf_edf_n_signals(r0) && c.n_channels < RF_PREP_MAX_CHANNELS; k++)
            if (!is_non_eeg(rf_edf_label(r0, k)) && fabs(rf_edf_rate(r0, k) - rf_edf_rate(r0, 0)) < 1e-9)
                c.channels[c.n_channels++] = strdup(rf_edf_label(r0, k));
        rf_edf_free(r0);
        own_channels = 1;
        if (c.n_channels == 0) {
            rc = rf_err_set(e, RF_EFORMAT, "%s: no EEG channels found; name them with --channels", list.rows[0].file);
            goto done;
        }
    }
    const double rate = c.rate > 0 ? c.rate : 0;
    a.C = c.n_channels;
    const double len_s = c.mode == RF_PREP_EVENTS ? c.pre_s + c.post_s : c.window_s;
    const double t0 = rf_now();
    if (c.robust == RF_STD_SUBJECT && (rc = pool_subject_stats(&c, &list, &first_row, &row_stats, progress, e))) goto done;
    for (int i = 0; i < list.n; i++) {
        const rf_prep_row *row = &list.rows[i];
        int label = -1;
        if (c.mode == RF_PREP_LABEL) {
            if (!*row->label) {
                rc = rf_err_set(e, RF_EFORMAT, "%s line %d: field \"label\" is empty (label mode needs a class per recording)", list_csv, row->line);
                goto done;
            }
            label = rf_name_index(&classes, &n_classes, row->label, fixed_classes == NULL, e);
            if (label < 0) {
                rc = label == -1 ? rf_err_set(e, RF_EFORMAT, "%s line %d: label \"%s\" is not one of the classes of the reference manifest", list_csv, row->line, row->label)
                                 : (e ? e->code : RF_ENOMEM);
                goto done;
            }
        }
        const int subj = rf_name_index(&subjects, &n_subjects, row->subject, 1, e);
        if (subj < 0) {
            rc = e ? e->code : RF_ENOMEM;
            goto done;
        }
        if (a.T == 0) {
            if (rate <= 0) {
                rf_edf *r0 = NULL;
                if ((rc = rf_edf_open(row->file, &r0, e))) goto done;
                int id0 = rf_edf_find_channel(r0, c.channels[0]);
                c.rate = id0 >= 0 ? rf_edf_rate(r0, id0) : 0;
                rf_edf_free(r0);
            }
            a.T = (int)llround(len_s * c.rate);
            if (a.T < 2 || fabs(a.T - len_s * c.rate) > 1e-6) {
                rc = rf_err_set(e, RF_EARG, "window of %g s at %g Hz must be a whole number (>= 2) of samples", len_s, c.rate);
                goto done;
            }
        }
        rec_out ro = {0};
        if ((rc = process_recording(&c, row, label, subj, i, row_stats ? &row_stats[first_row[i]] : NULL, &a, &ro, e)))
            goto done;
        sum->dropped_artefact += ro.dropped_artefact;
        sum->dropped_unlabelled += ro.dropped_unlabelled;
        sum->dropped_edge += ro.dropped_edge;
        sum->dropped_trimmed_wake += ro.dropped_trimmed;
        cJSON *rj = cJSON_CreateObject();
        cJSON_AddStringToObject(rj, "file", row->file);
        if (row->hypnogram) cJSON_AddStringToObject(rj, "hypnogram", row->hypnogram);
        cJSON_AddStringToObject(rj, "subject", row->subject);
        if (*row->label) cJSON_AddStringToObject(rj, "label", row->label);
        cJSON_AddNumberToObject(rj, "rate_in_hz", ro.rate_in);
        cJSON_AddNumberToObject(rj, "duration_s", ro.duration_s);
        cJSON_AddNumberToObject(rj, "windows", (double)ro.windows);
        cJSON_AddNumberToObject(rj, "dropped_artefact", (double)ro.dropped_artefact);
        cJSON_AddNumberToObject(rj, "dropped_unlabelled", (double)ro.dropped_unlabelled);
        cJSON_AddNumberToObject(rj, "dropped_edge", (double)ro.dropped_edge);
        cJSON_AddNumberToObject(rj, "dropped_trimmed_wake", (double)ro.dropped_trimmed);
        if (ro.warning[0]) cJSON_AddStringToObject(rj, "warning", ro.warning);
        cJSON_AddItemToArray(recs, rj);
        if (ro.warning[0]) fprintf(stderr, "renflow eeg prepare: warning: %s\n", ro.warning);
        if (progress) {
            const double el = rf_now() - t0;
            fprintf(stderr, "renflow eeg prepare: %d/%d %s: %ld windows (%ld artefact) | %.1f s elapsed, ETA %.0f s\n", i + 1, list.n,
                    row->file, ro.windows, ro.dropped_artefact, el, el / (i + 1) * (list.n - i - 1));
        }
    }
    if (a.n == 0) {
        rc = rf_err_set(e, RF_EFORMAT, "%s: no windows survived (check labels, window length and rejection thresholds)", list_csv);
        goto done;
    }
    /* write into a temporary directory beside out_dir, then rename */
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp.%ld", out_dir, (long)getpid());
    remove_dir(tmpdir);
    if (mkdir(tmpdir, 0755) != 0) {
        rc = rf_err_set(e, RF_EIO, "cannot create directory %s", tmpdir);
        tmpdir[0] = 0;
        goto done;
    }
    char p[4200];
    snprintf(p, sizeof p, "%s/windows.npy", tmpdir);
    rf_ndarray w = {.ndim = 3, .shape = {a.n, a.C, a.T}, .dtype = RF_DT_F32, .data = a.x};
    if ((rc = rf_npy_write(p, &w, e)) || (rc = write_i32(tmpdir, "labels.npy", a.y, a.n, e)) ||
        (rc = write_i32(tmpdir, "subjects.npy", a.subj, a.n, e)) || (rc = write_i32(tmpdir, "recordings.npy", a.rec, a.n, e)))
        goto done;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "format", "renflow-eeg-windows");
    cJSON_AddNumberToObject(m, "version", 1);
    cJSON_AddStringToObject(m, "renflow_version", RF_VERSION_STRING);
    cJSON_AddStringToObject(m, "recordings_list", list_csv);
    cJSON_AddItemToObject(m, "settings", rf_prep_cfg_to_json(&c));
    cJSON_AddItemToObject(m, "channels", cJSON_CreateStringArray((const char *const *)c.channels, c.n_channels));
    cJSON_AddNumberToObject(m, "rate_hz", c.rate);
    cJSON_AddNumberToObject(m, "window_samples", a.T);
    cJSON_AddStringToObject(m, "units", c.robust == RF_STD_SUBJECT ? "robust z (per subject and channel)"
                                        : c.robust ? "robust z (per recording and channel)" : "physical (uV)");
    cJSON_AddItemToObject(m, "class_names", cJSON_CreateStringArray((const char *const *)classes, n_classes));
    cJSON_AddItemToObject(m, "subjects", cJSON_CreateStringArray((const char *const *)subjects, n_subjects));
    long *per = calloc((size_t)n_classes, sizeof *per);
    for (long k = 0; per && k < a.n; k++) per[a.y[k]]++;
    cJSON *pc = cJSON_AddObjectToObject(m, "windows_per_class");
    for (int k = 0; per && k < n_classes; k++) cJSON_AddNumberToObject(pc, classes[k], (double)per[k]);
    free(per);
    cJSON_AddNumberToObject(m, "n_windows", (double)a.n);
    cJSON *dr = cJSON_AddObjectToObject(m, "dropped");
    cJSON_AddNumberToObject(dr, "artefact", (double)sum->dropped_artefact);
    cJSON_AddNumberToObject(dr, "unlabelled", (double)sum->dropped_unlabelled);
    cJSON_AddNumberToObject(dr, "edge", (double)sum->dropped_edge);
    cJSON_AddNumberToObject(dr, "trimmed_wake", (double)sum->dropped_trimmed_wake);
    cJSON_AddItemToObject(m, "recordings", recs);
    recs = NULL;
    char *txt = cJSON_Print(m);
    cJSON_Delete(m);
    snprintf(p, sizeof p, "%s/manifest.json", tmpdir);
    rc = txt ? rf_write_file_atomic(p, txt, strlen(txt), e) : rf_err_set(e, RF_ENOMEM, "out of memory");
    free(txt);
    if (rc) goto done;
    /* replace out_dir: an existing prepared directory is moved aside first */
    char old[4200];
    snprintf(old, sizeof old, "%s.old.%ld", out_dir, (long)getpid());
    struct stat st;
    int had = stat(out_dir, &st) == 0;
    if (had && !rf_is_dataset_dir(out_dir)) {
        rc = rf_err_set(e, RF_EIO, "%s exists and is not a prepared data set; not replacing it", out_dir);
        goto done;
    }
    if (had && rename(out_dir, old) != 0) {
        rc = rf_err_set(e, RF_EIO, "cannot move the existing %s aside", out_dir);
        goto done;
    }
    if (rename(tmpdir, out_dir) != 0) {
        if (had) rename(old, out_dir);
        rc = rf_err_set(e, RF_EIO, "cannot rename %s to %s", tmpdir, out_dir);
        goto done;
    }
    tmpdir[0] = 0;
    if (had) remove_dir(old);
    sum->windows = a.n;
    sum->recordings = list.n;
    sum->subjects = n_subjects;
done:
    if (tmpdir[0]) remove_dir(tmpdir);
    cJSON_Delete(recs);
    for (int k = 0; k < n_classes; k++) free(classes[k]);
    free(classes);
    for (int k = 0; k < n_subjects; k++) free(subjects[k]);
    free(subjects);
    if (own_channels)
        for (int k = 0; k < c.n_channels; k++) free(c.channels[k]);
    acc_free(&a);
    for (int i = 0; row_stats && i < list.n; i++) rf_robust_stats_free(&row_stats[i]);
    free(row_stats);
    free(first_row);
    rf_prep_list_free(&list);
    return rc;
}
