/* EDF/EDF+/BDF/BDF+ recordings: header validation, then EDFlib, or the built-in reader when
 * EDFlib refuses a file that is safe to read (see include/renflow/edf.h). */
#include "edf_internal.h"

#include <ctype.h>
#include <edflib.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* EDFlib keeps its open files in a static table: open and close are not thread-safe. */
static pthread_mutex_t edflib_mutex = PTHREAD_MUTEX_INITIALIZER;
void rf__edflib_lock(void) { pthread_mutex_lock(&edflib_mutex); }
void rf__edflib_unlock(void) { pthread_mutex_unlock(&edflib_mutex); }

struct rf_edf {
    char *path;
    edf_hdr h;
    int edflib; /* 1: read through EDFlib handle */
    int handle;
    FILE *fp; /* built-in reader */
    int n;    /* data signals */
    int *map; /* data signal -> header signal */
    rf_edf_signal *sig;
    rf_annotations ann;
    rf_edf_datetime start;
    char *warning;
    size_t warning_len;
    unsigned char *scratch;
    rf_edf_opts opts;
};

const char *rf_edf_type_name(rf_edf_type t) {
    switch (t) {
    case RF_EDF_TYPE_EDF: return "EDF";
    case RF_EDF_TYPE_EDFPLUS: return "EDF+";
    case RF_EDF_TYPE_BDF: return "BDF";
    case RF_EDF_TYPE_BDFPLUS: return "BDF+";
    default: return "?";
    }
}

void rf_edf_opts_default(rf_edf_opts *o) {
    memset(o, 0, sizeof *o);
    o->reader = RF_EDF_READER_AUTO;
}

/* Readable text for EDFlib's edfopen_file_readonly error codes (hdr.filetype). */
static const char *edflib_error_text(int code) {
    switch (code) {
    case EDFLIB_MALLOC_ERROR: return "EDFlib could not allocate memory (EDFLIB_MALLOC_ERROR)";
    case EDFLIB_NO_SUCH_FILE_OR_DIRECTORY: return "no such file or directory (EDFLIB_NO_SUCH_FILE_OR_DIRECTORY)";
    case EDFLIB_FILE_CONTAINS_FORMAT_ERRORS:
        return "the file does not conform to the EDF/EDF+/BDF/BDF+ specification "
               "(EDFLIB_FILE_CONTAINS_FORMAT_ERRORS)";
    case EDFLIB_MAXFILES_REACHED: return "too many files open in EDFlib (EDFLIB_MAXFILES_REACHED)";
    case EDFLIB_FILE_READ_ERROR: return "read error (EDFLIB_FILE_READ_ERROR)";
    case EDFLIB_FILE_ALREADY_OPENED: return "the file is already open in EDFlib (EDFLIB_FILE_ALREADY_OPENED)";
    case EDFLIB_FILETYPE_ERROR: return "unknown file type (EDFLIB_FILETYPE_ERROR)";
    case EDFLIB_FILE_WRITE_ERROR: return "write error (EDFLIB_FILE_WRITE_ERROR)";
    case EDFLIB_NUMBER_OF_SIGNALS_INVALID:
        return "the number of signals is invalid or above EDFlib's limit of 640 "
               "(EDFLIB_NUMBER_OF_SIGNALS_INVALID)";
    case EDFLIB_FILE_IS_DISCONTINUOUS:
        return "discontinuous EDF+D/BDF+D files are not supported (EDFLIB_FILE_IS_DISCONTINUOUS)";
    case EDFLIB_INVALID_READ_ANNOTS_VALUE: return "invalid annotation mode (EDFLIB_INVALID_READ_ANNOTS_VALUE)";
    case EDFLIB_ARCH_ERROR: return "unsupported architecture (EDFLIB_ARCH_ERROR)";
    default: return "unknown EDFlib error";
    }
}

static void add_warning(rf_edf *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warning(rf_edf *r, const char *fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if (*c == '\n') *c = ' '; /* one line per warning */
    size_t k = strlen(msg);
    char *w = realloc(r->warning, r->warning_len + k + 2);
    if (!w) return;
    r->warning = w;
    if (r->warning_len) w[r->warning_len++] = '\n';
    memcpy(w + r->warning_len, msg, k + 1);
    r->warning_len += k;
}

void rf_edf_free(rf_edf *r) {
    if (!r) return;
    if (r->edflib) {
        rf__edflib_lock();
        edfclose_file(r->handle);
        rf__edflib_unlock();
    }
    if (r->fp) fclose(r->fp);
    rf__edf_hdr_free(&r->h);
    rf_annotations_free(&r->ann);
    free(r->map);
    free(r->sig);
    free(r->warning);
    free(r->scratch);
    free(r->path);
    free(r);
}

/* EDFlib must agree with the validated header; a disagreement means one of the two misreads the
 * file, which is an error rather than a guess. */
static int check_edflib_agrees(rf_edf *r, const struct edf_hdr_struct *x, rf_err *e) {
    const char *why = NULL;
    char buf[256];
    if (x->edfsignals != r->n) why = "number of data signals";
    else if (x->datarecords_in_file != r->h.nrec) why = "number of data records";
    for (int i = 0; !why && i < r->n; i++) {
        const edf_sig *g = &r->h.sig[r->map[i]];
        const struct edf_param_struct *p = &x->signalparam[i];
        if (p->smp_in_datarecord != g->spr || p->dig_min != g->dmin || p->dig_max != g->dmax) {
            snprintf(buf, sizeof buf, "samples per record or digital range of signal %d ('%s')", i + 1, g->label);
            why = buf;
        }
    }
    if (why)
        return rf_err_set(e, RF_EFORMAT, "file %s: EDFlib and the header check disagree on the %s",
                          r->path, why);
    return RF_OK;
}

static int open_edflib(rf_edf *r, int *edflib_code, rf_err *e) {
    struct edf_hdr_struct *x = malloc(sizeof *x);
    if (!x) return rf_err_set(e, RF_ENOMEM, "file %s: out of memory", r->path);
    rf__edflib_lock();
    int rc = edfopen_file_readonly(r->path, x, EDFLIB_READ_ALL_ANNOTATIONS);
    rf__edflib_unlock();
    if (rc != 0) {
        *edflib_code = x->filetype;
        free(x);
        return RF_EFORMAT;
    }
    r->edflib = 1;
    r->handle = x->handle;
    int st = check_edflib_agrees(r, x, e);
    if (st == RF_OK) {
        rf_annotations *a = &r->ann;
        long long na = x->annotations_in_file;
        if (na < 0 || na > 10000000) {
            free(x);
            return rf_err_set(e, RF_EFORMAT, "file %s: EDFlib reports %lld annotations", r->path, na);
        }
        a->items = na ? calloc((size_t)na, sizeof *a->items) : NULL;
        if (na && !a->items) st = rf_err_set(e, RF_ENOMEM, "file %s: out of memory for %lld annotations", r->path, na);
        for (long long i = 0; st == RF_OK && i < na; i++) {
            struct edf_annotation_struct an;
            if (edf_get_annotation(x->handle, (int)i, &an) != 0) {
                st = rf_err_set(e, RF_EFORMAT, "file %s: EDFlib cannot return annotation %lld", r->path, i);
                break;
            }
            rf_annotation *it = &a->items[a->n];
            it->onset_s = (double)an.onset / (double)EDFLIB_TIME_DIMENSION;
            it->duration_s = an.duration_l < 0 ? -1.0 : (double)an.duration_l / (double)EDFLIB_TIME_DIMENSION;
            an.annotation[EDFLIB_MAX_ANNOTATION_LEN] = '\0';
            it->text = strdup(an.annotation);
            if (!it->text) st = rf_err_set(e, RF_ENOMEM, "file %s: out of memory", r->path);
            else a->n++;
        }
        r->start.subsecond = (double)x->starttime_subsecond / (double)EDFLIB_TIME_DIMENSION;
    }
    free(x);
    return st;
}

static int open_builtin(rf_edf *r, rf_err *e) {
    int64_t off = 0;
    int rc = rf__edf_read_tals(r->fp, &r->h, r->path, &r->ann, &off, e);
    if (rc) return rc;
    r->start.subsecond = off >= 0 && off < RF_EDF_TIME_UNITS ? (double)off / RF_EDF_TIME_UNITS : 0;
    size_t maxb = 1;
    for (int i = 0; i < r->n; i++) {
        size_t b = (size_t)r->h.sig[r->map[i]].spr * (size_t)r->h.bps;
        if (b > maxb) maxb = b;
    }
    r->scratch = malloc(maxb);
    if (!r->scratch) return rf_err_set(e, RF_ENOMEM, "file %s: out of memory", r->path);
    return RF_OK;
}

int rf_edf_open(const char *path, rf_edf **out, rf_err *e) { return rf_edf_open_opts(path, NULL, out, e); }

int rf_edf_open_opts(const char *path, const rf_edf_opts *o, rf_edf **out, rf_err *e) {
    *out = NULL;
    if (!path) return rf_err_set(e, RF_EARG, "rf_edf_open: path is NULL");
    rf_edf *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return rf_err_set(e, RF_ENOMEM, "file %s: out of memory", path);
    }
    if (o) r->opts = *o;
    else rf_edf_opts_default(&r->opts);
    int rc = RF_OK;
    r->fp = fopen(path, "rb");
    struct stat st;
    if (!r->fp) {
        rc = rf_err_set(e, RF_EIO, "file %s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fileno(r->fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = rf_err_set(e, RF_EIO, "file %s: not a regular file", path);
        goto fail;
    }
    if ((rc = rf__edf_hdr_read(r->fp, (int64_t)st.st_size, path, &r->h, e))) goto fail;

    edf_hdr *h = &r->h;
    for (int s = 0; s < h->ns; s++) r->n += !h->sig[s].annot;
    r->map = calloc((size_t)(r->n ? r->n : 1), sizeof *r->map);
    r->sig = calloc((size_t)(r->n ? r->n : 1), sizeof *r->sig);
    if (!r->map || !r->sig) {
        rc = rf_err_set(e, RF_ENOMEM, "file %s: out of memory", path);
        goto fail;
    }
    for (int s = 0, k = 0; s < h->ns; s++) {
        if (h->sig[s].annot) continue;
        r->map[k] = s;
        rf_edf_signal *g = &r->sig[k++];
        const edf_sig *q = &h->sig[s];
        memcpy(g->label, q->label, sizeof g->label);
        memcpy(g->unit, q->unit, sizeof g->unit);
        memcpy(g->prefilter, q->prefilter, sizeof g->prefilter);
        memcpy(g->transducer, q->transducer, sizeof g->transducer);
        g->samples_per_record = q->spr;
        g->rate_hz = q->spr / h->rec_dur;
        g->n_samples = h->nrec * q->spr;
        g->phys_min = q->pmin;
        g->phys_max = q->pmax;
        g->dig_min = q->dmin;
        g->dig_max = q->dmax;
    }
    r->start = h->start;

    /* the size check: truncated files, trailing bytes, unknown record count. EDFlib refuses all
     * three; the built-in reader uses the complete records (with a warning) unless strict. */
    char sizemsg[1024] = "";
    const char *base = path;
    if (h->nrec_header == -1)
        snprintf(sizemsg, sizeof sizemsg,
                 "file %s: header field 'number of data records' is -1 (unknown; the recording was "
                 "not closed properly); the file holds %lld complete records",
                 base, (long long)h->nrec);
    else if (h->nrec < h->nrec_header)
        snprintf(sizemsg, sizeof sizemsg,
                 "file %s is truncated: header field 'number of data records' says %lld, but only "
                 "%lld complete records are present (%lld bytes = %lld header + %lld x %lld-byte "
                 "records + %lld bytes of an incomplete record)",
                 base, (long long)h->nrec_header, (long long)h->nrec, (long long)h->file_size,
                 (long long)h->hdr_bytes, (long long)h->nrec, (long long)h->rec_bytes,
                 (long long)h->partial_bytes);
    else if (h->partial_bytes > 0)
        snprintf(sizemsg, sizeof sizemsg,
                 "file %s: %lld unexpected bytes after the %lld data records the header announces",
                 base, (long long)h->partial_bytes, (long long)h->nrec_header);
    const int size_issue = sizemsg[0] != '\0';
    if (size_issue) {
        if (r->opts.strict_size) {
            rc = rf_err_set(e, RF_EFORMAT, "%s", sizemsg);
            goto fail;
        }
        if (r->opts.reader == RF_EDF_READER_EDFLIB) {
            rc = rf_err_set(e, RF_EFORMAT, "file %s: EDFlib cannot read it: %s", base, sizemsg);
            goto fail;
        }
        if (h->nrec == 0 && r->n > 0) {
            rc = rf_err_set(e, RF_EFORMAT, "%s; no complete record to read", sizemsg);
            goto fail;
        }
        if (h->partial_bytes > 0 && h->nrec == h->nrec_header)
            add_warning(r, "%s; they are ignored", sizemsg);
        else
            add_warning(r, "%s; using the %lld complete records (%.6g s)", sizemsg, (long long)h->nrec,
                        (double)h->nrec * h->rec_dur);
    }

    int use_builtin = r->opts.reader == RF_EDF_READER_BUILTIN || size_issue;
    if (!use_builtin) {
        int code = 0;
        rc = open_edflib(r, &code, e);
        if (rc == RF_OK) {
            fclose(r->fp);
            r->fp = NULL;
            if (h->n_dev) add_warning(r, "file %s: deviations from the standard: %s", base, h->dev);
            goto done;
        }
        if (r->edflib) goto fail; /* opened, but inconsistent: error already set */
        int fallback = r->opts.reader == RF_EDF_READER_AUTO &&
                       (code == EDFLIB_FILE_CONTAINS_FORMAT_ERRORS || code == EDFLIB_FILE_ALREADY_OPENED ||
                        code == EDFLIB_MAXFILES_REACHED || code == EDFLIB_NUMBER_OF_SIGNALS_INVALID);
        if (!fallback) {
            rc = rf_err_set(e, code == EDFLIB_MALLOC_ERROR ? RF_ENOMEM
                               : code == EDFLIB_NO_SUCH_FILE_OR_DIRECTORY || code == EDFLIB_FILE_READ_ERROR ||
                                       code == EDFLIB_MAXFILES_REACHED || code == EDFLIB_FILE_ALREADY_OPENED
                                   ? RF_EIO
                                   : RF_EFORMAT,
                            "file %s: EDFlib cannot open it: %s%s%s", base, edflib_error_text(code),
                            h->n_dev ? "; deviations found: " : "", h->n_dev ? h->dev : "");
            goto fail;
        }
        add_warning(r, "file %s: EDFlib refuses it (%s); read with the built-in reader%s%s", base,
                    edflib_error_text(code), h->n_dev ? ", which found these deviations: " : "",
                    h->n_dev ? h->dev : "");
        rc = RF_OK;
    }
    {
        /* deviations not reported yet: those of the header unless EDFlib's refusal listed them,
         * and those the TAL parser finds */
        int reported = h->n_dev > 0 && !size_issue && r->opts.reader == RF_EDF_READER_AUTO;
        int ndev = h->n_dev;
        if ((rc = open_builtin(r, e))) goto fail;
        if (h->n_dev > ndev || (h->n_dev > 0 && !reported))
            add_warning(r, "file %s: deviations from the standard: %s", base, h->dev);
    }
done:
    r->ann.source = strdup(path);
    if (r->opts.warn && r->warning) { /* only for an open that succeeds: one call per warning */
        char *w = strdup(r->warning);
        for (char *p = w, *q; p && *p; p = q) {
            q = strchr(p, '\n');
            if (q) *q++ = '\0';
            r->opts.warn(r->opts.warn_ctx, p);
        }
        free(w);
    }
    *out = r;
    return RF_OK;
fail:
    rf_edf_free(r);
    return rc ? rc : RF_EFORMAT;
}

/* ---- accessors ---- */

const char *rf_edf_path(const rf_edf *r) { return r->path; }
rf_edf_type rf_edf_filetype(const rf_edf *r) { return r->h.type; }
int rf_edf_n_signals(const rf_edf *r) { return r->n; }
const rf_edf_signal *rf_edf_signal_info(const rf_edf *r, int i) {
    return i >= 0 && i < r->n ? &r->sig[i] : NULL;
}
const char *rf_edf_label(const rf_edf *r, int i) { return i >= 0 && i < r->n ? r->sig[i].label : ""; }
const char *rf_edf_unit(const rf_edf *r, int i) { return i >= 0 && i < r->n ? r->sig[i].unit : ""; }
double rf_edf_rate(const rf_edf *r, int i) { return i >= 0 && i < r->n ? r->sig[i].rate_hz : 0.0; }
int64_t rf_edf_n_samples(const rf_edf *r, int i) { return i >= 0 && i < r->n ? r->sig[i].n_samples : -1; }
double rf_edf_duration(const rf_edf *r) { return (double)r->h.nrec * r->h.rec_dur; }
double rf_edf_record_duration(const rf_edf *r) { return r->h.rec_dur; }
int64_t rf_edf_n_records(const rf_edf *r) { return r->h.nrec; }
int64_t rf_edf_n_records_header(const rf_edf *r) { return r->h.nrec_header; }
rf_edf_datetime rf_edf_start(const rf_edf *r) { return r->start; }
const char *rf_edf_warning(const rf_edf *r) { return r->warning ? r->warning : ""; }
int rf_edf_uses_edflib(const rf_edf *r) { return r->edflib; }
const rf_annotations *rf_edf_annotations(const rf_edf *r) { return &r->ann; }

/* ---- channel lookup ---- */

static void norm_label(const char *in, char *out, size_t n) {
    char t[64];
    size_t k = 0;
    for (const char *p = in; *p && k + 1 < sizeof t; p++) t[k++] = (char)tolower((unsigned char)*p);
    t[k] = '\0';
    char *s = t;
    while (*s == ' ') s++;
    size_t m = strlen(s);
    while (m && (s[m - 1] == ' ' || s[m - 1] == '.')) s[--m] = '\0';
    static const char *const prefix[] = {"eeg ", "eog ", "emg ", "ecg "};
    for (size_t i = 0; i < sizeof prefix / sizeof *prefix; i++)
        if (strncmp(s, prefix[i], 4) == 0 && s[4]) {
            s += 4;
            while (*s == ' ') s++;
            break;
        }
    snprintf(out, n, "%s", s);
}

int rf_edf_find_channel(const rf_edf *r, const char *label) {
    if (!label) return -1;
    char want[64], tl[64];
    /* exact trimmed match */
    const char *a = label;
    while (*a == ' ') a++;
    size_t m = strlen(a);
    while (m && a[m - 1] == ' ') m--;
    if (m < sizeof tl) {
        memcpy(tl, a, m);
        tl[m] = '\0';
        for (int i = 0; i < r->n; i++)
            if (strcmp(r->sig[i].label, tl) == 0) return i;
    }
    norm_label(label, want, sizeof want);
    if (!want[0]) return -1;
    int found = -1;
    for (int i = 0; i < r->n; i++) {
        char have[64];
        norm_label(r->sig[i].label, have, sizeof have);
        if (strcmp(have, want) == 0) {
            if (found >= 0) return -2;
            found = i;
        }
    }
    return found;
}

int rf_edf_select_channels(const rf_edf *r, const char *const *labels, int n, int *idx, rf_err *e) {
    if (n < 0 || (n > 0 && (!labels || !idx)))
        return rf_err_set(e, RF_EARG, "file %s: invalid channel selection", r->path);
    for (int k = 0; k < n; k++) {
        int i = rf_edf_find_channel(r, labels[k]);
        if (i >= 0) {
            idx[k] = i;
            continue;
        }
        char avail[600];
        size_t len = 0;
        avail[0] = '\0';
        for (int j = 0; j < r->n && len + 24 < sizeof avail; j++)
            len += (size_t)snprintf(avail + len, sizeof avail - len, "%s'%s'", j ? ", " : "", r->sig[j].label);
        if (len + 24 >= sizeof avail) snprintf(avail + len, sizeof avail - len, ", ...");
        return rf_err_set(e, RF_EARG, "file %s: channel '%s' %s; the %d channels are: %s", r->path,
                          labels[k] ? labels[k] : "(null)",
                          i == -2 ? "is ambiguous (several labels match)" : "not found", r->n, avail);
    }
    return RF_OK;
}

/* ---- samples ---- */

int rf_edf_read_channel(rf_edf *r, int idx, int64_t start, int64_t n, double *out, rf_err *e) {
    if (idx < 0 || idx >= r->n)
        return rf_err_set(e, RF_EARG, "file %s: signal index %d is outside 0..%d", r->path, idx, r->n - 1);
    const rf_edf_signal *g = &r->sig[idx];
    if (start < 0 || n < 0 || start > g->n_samples || n > g->n_samples - start)
        return rf_err_set(e, RF_EARG,
                          "file %s: signal %d ('%s'): %lld samples from sample %lld requested, but it "
                          "has %lld samples (%.6g s at %g Hz)",
                          r->path, idx, g->label, (long long)n, (long long)start,
                          (long long)g->n_samples, (double)g->n_samples / g->rate_hz, g->rate_hz);
    if (n == 0) return RF_OK;
    if (!out) return rf_err_set(e, RF_EARG, "file %s: output buffer is NULL", r->path);
    if (!r->edflib)
        return rf__edf_read_samples(r->fp, &r->h, r->path, r->map[idx], start, n, out, r->scratch, e);
    if (edfseek(r->handle, idx, start, EDFSEEK_SET) != start)
        return rf_err_set(e, RF_EIO, "file %s: EDFlib cannot seek signal '%s' to sample %lld", r->path,
                          g->label, (long long)start);
    int64_t done = 0;
    while (done < n) {
        int chunk = n - done > (1 << 24) ? (1 << 24) : (int)(n - done);
        int got = edfread_physical_samples(r->handle, idx, chunk, out + done);
        if (got != chunk)
            return rf_err_set(e, RF_EIO, "file %s: EDFlib read %d of %d samples of signal '%s' at sample %lld",
                              r->path, got, chunk, g->label, (long long)(start + done));
        done += chunk;
    }
    return RF_OK;
}

int rf_edf_read_channels(rf_edf *r, const int *idx, int n_ch, int64_t start, int64_t n, double *out,
                         rf_err *e) {
    if (n_ch < 0 || (n_ch > 0 && !idx)) return rf_err_set(e, RF_EARG, "file %s: invalid channel list", r->path);
    for (int c = 0; c < n_ch; c++) {
        if (idx[c] < 0 || idx[c] >= r->n)
            return rf_err_set(e, RF_EARG, "file %s: signal index %d is outside 0..%d", r->path, idx[c], r->n - 1);
        if (r->sig[idx[c]].rate_hz != r->sig[idx[0]].rate_hz)
            return rf_err_set(e, RF_EARG,
                              "file %s: channels '%s' (%g Hz) and '%s' (%g Hz) have different sampling "
                              "rates; read them separately",
                              r->path, r->sig[idx[0]].label, r->sig[idx[0]].rate_hz, r->sig[idx[c]].label,
                              r->sig[idx[c]].rate_hz);
    }
    for (int c = 0; c < n_ch; c++) {
        int rc = rf_edf_read_channel(r, idx[c], start, n, out + (size_t)c * (size_t)n, e);
        if (rc) return rc;
    }
    return RF_OK;
}
