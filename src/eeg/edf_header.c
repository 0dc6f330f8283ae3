/* The built-in EDF/BDF reader: header validation (used for every file, before EDFlib sees it),
 * EDF+ TAL parsing and record-wise sample reading (used when EDFlib refuses a file).
 *
 * Header layout (bytes): version 8, patient 80, recording 80, startdate 8, starttime 8,
 * header bytes 8, reserved 44, number of data records 8, record duration 8, number of signals 4;
 * then per signal (ns entries each): label 16, transducer 80, physical dimension 8, physical
 * minimum 8, physical maximum 8, digital minimum 8, digital maximum 8, prefiltering 80, samples
 * per record 8, reserved 32. Numbers are parsed without the C locale's help (a program that sets
 * LC_NUMERIC to a comma locale still reads "0.5" correctly). */
#include "edf_internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void rf__edf_show(const unsigned char *p, size_t w, char *out, size_t n) {
    if (!n) return;
    while (w > 0 && (p[w - 1] == ' ' || p[w - 1] == '\0')) w--;
    size_t k = 0;
    for (size_t i = 0; i < w && k + 5 < n; i++) {
        unsigned char c = p[i];
        if (c >= 32 && c < 127) out[k++] = (char)c;
        else k += (size_t)snprintf(out + k, n - k, "\\x%02X", c);
    }
    out[k] = '\0';
}

void rf__edf_dev(edf_hdr *h, const char *fmt, ...) {
    h->n_dev++;
    if (h->dev_len > 3000) return; /* enough to explain; the count is kept */
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t need = h->dev_len + strlen(msg) + 3;
    if (need > h->dev_cap) {
        size_t cap = need * 2 + 256;
        char *d = realloc(h->dev, cap);
        if (!d) return;
        h->dev = d;
        h->dev_cap = cap;
    }
    if (h->dev_len) {
        memcpy(h->dev + h->dev_len, "; ", 2);
        h->dev_len += 2;
    }
    memcpy(h->dev + h->dev_len, msg, strlen(msg) + 1);
    h->dev_len += strlen(msg);
}

void rf__edf_hdr_free(edf_hdr *h) {
    if (!h) return;
    free(h->sig);
    free(h->dev);
    memset(h, 0, sizeof *h);
}

/* ---- numbers ---- */

/* Trimmed copy of a fixed-width field (w <= 80). */
static void field_str(const unsigned char *p, size_t w, char *out) {
    size_t a = 0, b = w;
    while (a < b && p[a] == ' ') a++;
    while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\0')) b--;
    memcpy(out, p + a, b - a);
    out[b - a] = '\0';
}

static int parse_i64(const char *s, int64_t *v) {
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    if (!*p) return 0;
    int64_t x = 0;
    int nd = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9' || ++nd > 18) return 0;
        x = x * 10 + (*p - '0');
    }
    *v = neg ? -x : x;
    return 1;
}

/* [+-]digits[.digits] (at least one digit). Exponent notation is refused: EDFlib reads "1e3" as
 * 1, so such a header has two readings. */
static int parse_num(const char *s, double *v) {
    const char *p = s;
    int neg = 0;
    if (*p == '+' || *p == '-') neg = *p++ == '-';
    double ip = 0, scale = 1;
    int nd = 0;
    while (*p >= '0' && *p <= '9') {
        ip = ip * 10 + (*p++ - '0');
        nd++;
    }
    uint64_t frac = 0;
    int nf = 0;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nf < 18) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                scale *= 10;
                nf++;
            }
            p++;
            nd++;
        }
    }
    if (!nd || nd > 40 || *p) return 0;
    double x = ip + (nf ? (double)frac / scale : 0);
    if (!isfinite(x)) return 0;
    *v = neg ? -x : x;
    return 1;
}

/* ---- header ---- */

static const char *const sig_field[10] = {"label", "transducer type", "physical dimension",
                                          "physical minimum", "physical maximum", "digital minimum",
                                          "digital maximum", "prefiltering",
                                          "nr of samples in each data record", "reserved"};
static const int sig_width[10] = {16, 80, 8, 8, 8, 8, 8, 80, 8, 32};

static int printable(const unsigned char *p, size_t w, size_t *bad) {
    for (size_t i = 0; i < w; i++)
        if (p[i] < 32 || p[i] > 126) {
            *bad = i;
            return 0;
        }
    return 1;
}

/* Copies a text field, trimmed, non-printable bytes replaced by '?'. */
static void text_field(const unsigned char *p, size_t w, char *out) {
    char tmp[96];
    field_str(p, w, tmp);
    for (char *c = tmp; *c; c++)
        if ((unsigned char)*c < 32 || (unsigned char)*c > 126) *c = '?';
    strcpy(out, tmp);
}

static int two_digits(const unsigned char *p, int *v) {
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9') return 0;
    *v = (p[0] - '0') * 10 + (p[1] - '0');
    return 1;
}

static int parse_startdate(const unsigned char *d, const unsigned char *t, const char *name,
                           edf_hdr *h, rf_err *e) {
    char show[64];
    int dd, mm, yy, hh, mi, ss;
    if (!(two_digits(d, &dd) && d[2] == '.' && two_digits(d + 3, &mm) && d[5] == '.' &&
          two_digits(d + 6, &yy)) ||
        dd < 1 || dd > 31 || mm < 1 || mm > 12) {
        rf__edf_show(d, 8, show, sizeof show);
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'startdate' (bytes 168-175): value '%s' is not a "
                          "date dd.mm.yy",
                          name, show);
    }
    if (!(two_digits(t, &hh) && (t[2] == '.' || t[2] == ':') && two_digits(t + 3, &mi) &&
          (t[5] == '.' || t[5] == ':') && two_digits(t + 6, &ss)) ||
        hh > 23 || mi > 59 || ss > 59) {
        rf__edf_show(t, 8, show, sizeof show);
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'starttime' (bytes 176-183): value '%s' is not a "
                          "time hh.mm.ss",
                          name, show);
    }
    if (t[2] == ':' || t[5] == ':') rf__edf_dev(h, "starttime uses ':' instead of '.'");
    int year = yy >= 85 ? 1900 + yy : 2000 + yy; /* the EDF clipping date */
    /* EDF+: "Startdate dd-MMM-yyyy ..." in the recording field carries the 4-digit year */
    if (h->plus && strncmp(h->recording, "Startdate ", 10) == 0) {
        const char *s = h->recording + 10;
        static const char *mon[12] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                      "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
        int d2, m2 = 0, y2;
        if (strlen(s) >= 11 && two_digits((const unsigned char *)s, &d2) && s[2] == '-' &&
            s[6] == '-' && sscanf(s + 7, "%4d", &y2) == 1) {
            for (int k = 0; k < 12; k++)
                if (strncmp(s + 3, mon[k], 3) == 0) m2 = k + 1;
            if (m2 == mm && d2 == dd && y2 % 100 == yy) year = y2;
            else rf__edf_dev(h, "recording field 'Startdate %.11s' disagrees with startdate %02d.%02d.%02d", s, dd, mm, yy);
        } else if (s[0] != 'X') {
            rf__edf_dev(h, "recording field start date '%.11s' is not dd-MMM-yyyy", s);
        }
    }
    h->start.year = year;
    h->start.month = mm;
    h->start.day = dd;
    h->start.hour = hh;
    h->start.minute = mi;
    h->start.second = ss;
    h->start.subsecond = 0;
    return RF_OK;
}

static int fixed_int(const unsigned char *b, int off, int w, const char *field, const char *name,
                     int64_t *v, rf_err *e) {
    char s[96], show[160];
    field_str(b + off, (size_t)w, s);
    if (!parse_i64(s, v)) {
        rf__edf_show(b + off, (size_t)w, show, sizeof show);
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field '%s' (bytes %d-%d): value '%s' is not an integer",
                          name, field, off, off + w - 1, show);
    }
    return RF_OK;
}

int rf__edf_hdr_read(FILE *fp, int64_t file_size, const char *name, edf_hdr *h, rf_err *e) {
    memset(h, 0, sizeof *h);
    h->file_size = file_size;
    unsigned char fixed[256];
    char show[256], s[96];
    if (file_size < 256)
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: %lld bytes, shorter than the 256-byte fixed EDF header", name,
                          (long long)file_size);
    if (fseeko(fp, 0, SEEK_SET) != 0 || fread(fixed, 1, 256, fp) != 256)
        return rf_err_set(e, RF_EIO, "file %s: cannot read the header: %s", name, strerror(errno));

    /* version */
    if (memcmp(fixed, "\xff" "BIOSEMI", 8) == 0) {
        h->bdf = 1;
    } else {
        field_str(fixed, 8, s);
        if (strcmp(s, "0") != 0) {
            rf__edf_show(fixed, 8, show, sizeof show);
            return rf_err_set(e, RF_EFORMAT,
                              "file %s: header field 'version' (bytes 0-7): value '%s' is neither "
                              "'0' (EDF) nor '\\xFFBIOSEMI' (BDF); not an EDF/BDF file",
                              name, show);
        }
        if (fixed[0] != '0') rf__edf_dev(h, "version field is not left-justified");
    }
    h->bps = h->bdf ? 3 : 2;
    size_t bad;
    if (!printable(fixed + 8, 160, &bad))
        rf__edf_dev(h, "patient/recording identification contains a non-printable byte at offset %zu", 8 + bad);
    text_field(fixed + 8, 80, h->patient);
    text_field(fixed + 88, 80, h->recording);

    /* reserved: EDF+C / EDF+D / BDF+C / BDF+D / 24BIT / anything */
    char res[48];
    field_str(fixed + 192, 44, res);
    if (strncmp(res, "EDF+", 4) == 0 || strncmp(res, "BDF+", 4) == 0) {
        if ((res[0] == 'B') != h->bdf) {
            rf__edf_show(fixed + 192, 44, show, sizeof show);
            return rf_err_set(e, RF_EFORMAT,
                              "file %s: header field 'reserved' (bytes 192-235): value '%s' does "
                              "not match the version field (%s)",
                              name, show, h->bdf ? "BDF" : "EDF");
        }
        if (res[4] == 'D')
            return rf_err_set(e, RF_EFORMAT,
                              "file %s: header field 'reserved' (bytes 192-235): value '%s': "
                              "discontinuous (EDF+D/BDF+D) recordings are not supported",
                              name, res);
        if (res[4] != 'C') {
            rf__edf_show(fixed + 192, 44, show, sizeof show);
            return rf_err_set(e, RF_EFORMAT,
                              "file %s: header field 'reserved' (bytes 192-235): value '%s' is "
                              "neither %s+C nor %s+D",
                              name, show, h->bdf ? "BDF" : "EDF", h->bdf ? "BDF" : "EDF");
        }
        h->plus = 1;
    }
    h->type = h->bdf ? (h->plus ? RF_EDF_TYPE_BDFPLUS : RF_EDF_TYPE_BDF)
                     : (h->plus ? RF_EDF_TYPE_EDFPLUS : RF_EDF_TYPE_EDF);

    int rc = parse_startdate(fixed + 168, fixed + 176, name, h, e);
    if (rc) return rc;

    int64_t ns, hb, nrec;
    if ((rc = fixed_int(fixed, 252, 4, "number of signals", name, &ns, e))) return rc;
    if (ns < 1 || ns > RF_EDF_MAX_SIGNALS)
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'number of signals' (bytes 252-255): value %lld "
                          "is outside 1..%d",
                          name, (long long)ns, RF_EDF_MAX_SIGNALS);
    if ((rc = fixed_int(fixed, 184, 8, "number of bytes in header record", name, &hb, e))) return rc;
    if (hb != 256 * (ns + 1))
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'number of bytes in header record' (bytes "
                          "184-191): value %lld, but %lld signals need 256 x (%lld + 1) = %lld",
                          name, (long long)hb, (long long)ns, (long long)ns,
                          (long long)(256 * (ns + 1)));
    if ((rc = fixed_int(fixed, 236, 8, "number of data records", name, &nrec, e))) return rc;
    if (nrec < -1)
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'number of data records' (bytes 236-243): value "
                          "%lld is negative",
                          name, (long long)nrec);
    field_str(fixed + 244, 8, s);
    double rd;
    if (!parse_num(s, &rd) || rd < 0 || rd > 1e6) {
        rf__edf_show(fixed + 244, 8, show, sizeof show);
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'duration of a data record' (bytes 244-251): "
                          "value '%s' is not a number of seconds in 0..1e6",
                          name, show);
    }
    h->ns = (int)ns;
    h->hdr_bytes = hb;
    h->nrec_header = nrec;
    h->rec_dur = rd;
    h->rec_dur_units = llround(rd * (double)RF_EDF_TIME_UNITS);

    if (file_size < hb)
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: %lld bytes, shorter than its %lld-byte header (field 'number "
                          "of signals' = %d)",
                          name, (long long)file_size, (long long)hb, h->ns);
    size_t sbytes = (size_t)(256 * ns);
    unsigned char *b = malloc(sbytes);
    h->sig = calloc((size_t)ns, sizeof *h->sig);
    if (!b || !h->sig) {
        free(b);
        return rf_err_set(e, RF_ENOMEM, "file %s: out of memory for %d signal headers", name, h->ns);
    }
    if (fread(b, 1, sbytes, fp) != sbytes) {
        free(b);
        return rf_err_set(e, RF_EIO, "file %s: cannot read the signal headers: %s", name,
                          strerror(errno));
    }
    size_t foff[10];
    foff[0] = 0;
    for (int k = 1; k < 10; k++) foff[k] = foff[k - 1] + (size_t)sig_width[k - 1] * (size_t)ns;

    const int dlo = h->bdf ? -8388608 : -32768, dhi = h->bdf ? 8388607 : 32767;
    const char *annot_label = h->bdf ? "BDF Annotations" : "EDF Annotations";
    int n_annot = 0, n_data = 0;
    int64_t off = 0;
    rc = RF_OK;
    for (int i = 0; i < h->ns && rc == RF_OK; i++) {
        edf_sig *g = &h->sig[i];
        const unsigned char *f[10];
        for (int k = 0; k < 10; k++) f[k] = b + foff[k] + (size_t)sig_width[k] * (size_t)i;
#define SIGERR(k, what)                                                                       \
    do {                                                                                      \
        rf__edf_show(f[k], (size_t)sig_width[k], show, sizeof show);                          \
        rc = rf_err_set(e, RF_EFORMAT,                                                        \
                        "file %s: header field '%s' of signal %d ('%s', byte %lld): value "  \
                        "'%s' " what,                                                         \
                        name, sig_field[k], i + 1, g->label,                                  \
                        (long long)(256 + foff[k] + (size_t)sig_width[k] * (size_t)i), show); \
    } while (0)
        if (!printable(f[0], 16, &bad)) {
            snprintf(g->label, sizeof g->label, "#%d", i + 1);
            SIGERR(0, "contains a non-printable byte");
            break;
        }
        field_str(f[0], 16, g->label);
        if (!printable(f[2], 8, &bad)) {
            SIGERR(2, "contains a non-printable byte");
            break;
        }
        field_str(f[2], 8, g->unit);
        if (!printable(f[1], 80, &bad) || !printable(f[7], 80, &bad))
            rf__edf_dev(h, "signal %d ('%s'): transducer or prefiltering contains a non-printable byte", i + 1, g->label);
        text_field(f[1], 80, g->transducer);
        text_field(f[7], 80, g->prefilter);
        int64_t v[4];
        double pv[2];
        for (int k = 3; k <= 4; k++) {
            field_str(f[k], 8, s);
            if (!parse_num(s, &pv[k - 3])) SIGERR(k, "is not a decimal number");
            if (rc) break;
        }
        if (rc) break;
        for (int k = 5; k <= 6; k++) {
            field_str(f[k], 8, s);
            if (!parse_i64(s, &v[k - 5])) SIGERR(k, "is not an integer");
            else if (v[k - 5] < dlo || v[k - 5] > dhi) {
                char what[96];
                snprintf(what, sizeof what, "is outside the %s range %d..%d",
                         h->bdf ? "24-bit BDF" : "16-bit EDF", dlo, dhi);
                rf__edf_show(f[k], 8, show, sizeof show);
                rc = rf_err_set(e, RF_EFORMAT,
                                "file %s: header field '%s' of signal %d ('%s'): value '%s' %s",
                                name, sig_field[k], i + 1, g->label, show, what);
            }
            if (rc) break;
        }
        if (rc) break;
        field_str(f[8], 8, s);
        if (!parse_i64(s, &v[2])) {
            SIGERR(8, "is not an integer");
            break;
        }
        if (v[2] < 1 || v[2] > 100000000) {
            SIGERR(8, "is outside 1..100000000");
            break;
        }
        g->pmin = pv[0];
        g->pmax = pv[1];
        g->dmin = (int)v[0];
        g->dmax = (int)v[1];
        g->spr = (int)v[2];
        g->annot = h->plus && strcmp(g->label, annot_label) == 0;
        if (g->annot) {
            n_annot++;
            if (g->unit[0] || g->prefilter[0] || g->transducer[0])
                rf__edf_dev(h, "annotation signal %d: physical dimension '%s', transducer '%s' and prefiltering '%s' should be blank",
                            i + 1, g->unit, g->transducer, g->prefilter);
        } else {
            n_data++;
            if (g->dmin >= g->dmax) {
                char what[128];
                snprintf(what, sizeof what, "(%d) is not below the digital maximum (%d)", g->dmin, g->dmax);
                rf__edf_show(f[5], 8, show, sizeof show);
                rc = rf_err_set(e, RF_EFORMAT,
                                "file %s: header field 'digital minimum' of signal %d ('%s'): "
                                "value '%s' %s",
                                name, i + 1, g->label, show, what);
                break;
            }
            if (g->pmin == g->pmax) {
                SIGERR(4, "equals the physical minimum (the signal would have no resolution)");
                break;
            }
        }
        g->offset = off;
        off += (int64_t)g->spr * h->bps;
#undef SIGERR
    }
    free(b);
    if (rc) return rc;
    h->rec_bytes = off;
    if (off > RF_EDF_MAX_RECORD_BYTES)
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: fields 'nr of samples in each data record' add up to a %lld-byte "
                          "data record, above the %lld-byte limit",
                          name, (long long)off, (long long)RF_EDF_MAX_RECORD_BYTES);
    if (h->plus && n_annot == 0)
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'reserved' says %s but no signal is labelled '%s'",
                          name, h->bdf ? "BDF+" : "EDF+", annot_label);
    if (n_data > 0 && h->rec_dur_units <= 0)
        return rf_err_set(e, RF_EFORMAT,
                          "file %s: header field 'duration of a data record' (bytes 244-251): "
                          "value %g s, but the file has %d data signals (rates would be infinite)",
                          name, h->rec_dur, n_data);

    /* records against the file size: never read past the end */
    int64_t avail = (file_size - hb) / h->rec_bytes;
    int64_t rem = (file_size - hb) % h->rec_bytes;
    if (nrec == -1) {
        h->nrec = avail;
        h->partial_bytes = rem;
    } else if (avail < nrec) {
        h->nrec = avail;
        h->partial_bytes = rem;
    } else {
        h->nrec = nrec;
        h->partial_bytes = (file_size - hb) - nrec * h->rec_bytes; /* trailing bytes */
    }
    return RF_OK;
}

/* ---- TALs (time-stamped annotation lists) ---- */

/* Parses [+-]digits[.digits] in 100 ns units (digits beyond the 7th decimal are dropped). */
static int tal_time(const unsigned char *p, size_t n, int sign_required, int64_t *units) {
    size_t i = 0;
    int neg = 0;
    if (i < n && (p[i] == '+' || p[i] == '-')) neg = p[i++] == '-';
    else if (sign_required) return 0;
    int64_t ip = 0, fr = 0;
    int nd = 0, nf = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') {
        if (++nd > 11) return 0; /* > 3000 years */
        ip = ip * 10 + (p[i++] - '0');
    }
    if (!nd) return 0;
    if (i < n && p[i] == '.') {
        i++;
        int any = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9') {
            if (nf < 7) {
                fr = fr * 10 + (p[i] - '0');
                nf++;
            }
            any = 1;
            i++;
        }
        if (!any) return 0;
    }
    if (i != n) return 0;
    while (nf < 7) {
        fr *= 10;
        nf++;
    }
    int64_t u = ip * RF_EDF_TIME_UNITS + fr;
    *units = neg ? -u : u;
    return 1;
}

static int push_ann(rf_annotations *out, int *cap, int64_t onset, int64_t dur, const unsigned char *t,
                    size_t tn, int64_t offset, rf_err *e, const char *name) {
    if (out->n >= 10000000)
        return rf_err_set(e, RF_EFORMAT, "file %s: more than 10 million annotations", name);
    if (out->n == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        rf_annotation *it = realloc(out->items, (size_t)nc * sizeof *it);
        if (!it) return rf_err_set(e, RF_ENOMEM, "file %s: out of memory for annotations", name);
        out->items = it;
        *cap = nc;
    }
    char *txt = malloc(tn + 1);
    if (!txt) return rf_err_set(e, RF_ENOMEM, "file %s: out of memory for annotations", name);
    memcpy(txt, t, tn);
    txt[tn] = '\0';
    rf_annotation *a = &out->items[out->n++];
    a->onset_s = (double)(onset - offset) / (double)RF_EDF_TIME_UNITS;
    a->duration_s = dur < 0 ? -1.0 : (double)dur / (double)RF_EDF_TIME_UNITS;
    a->text = txt;
    return RF_OK;
}

/* Parses the TALs of one annotation signal in one record. keep_time: the first TAL of the
 * record's first annotation signal is the time-keeping TAL; its onset is returned in *tk. */
static int parse_tal_block(const unsigned char *p, size_t n, int first_signal, int64_t *tk,
                           int *have_tk, const char *name, int64_t rec, int sig, edf_hdr *h,
                           rf_annotations *out, int *cap, int64_t *offset, rf_err *e) {
    size_t i = 0;
    int first = 1;
    char show[96];
#define TALERR(what)                                                                          \
    do {                                                                                      \
        rf__edf_show(p + start, (n - start) < 24 ? n - start : 24, show, sizeof show);        \
        return rf_err_set(e, RF_EFORMAT,                                                      \
                          "file %s: data record %lld, annotation signal %d: TAL at byte %zu " \
                          "(starting '%s'): %s",                                              \
                          name, (long long)rec, sig + 1, start, show, what);                  \
    } while (0)
    while (i < n) {
        if (p[i] == 0) { /* padding after the last TAL */
            i++;
            continue;
        }
        size_t start = i;
        size_t j = i;
        while (j < n && p[j] != 0x14 && p[j] != 0x15 && p[j] != 0) j++;
        int64_t onset, dur = -1;
        if (j >= n || p[j] == 0) TALERR("onset not terminated by 0x14");
        if (!tal_time(p + i, j - i, 1, &onset)) TALERR("onset is not [+-]seconds");
        if (p[j] == 0x15) {
            size_t k = j + 1;
            while (k < n && p[k] != 0x14 && p[k] != 0) k++;
            if (k >= n || p[k] != 0x14) TALERR("duration not terminated by 0x14");
            if (!tal_time(p + j + 1, k - j - 1, 0, &dur)) TALERR("duration is not a number of seconds");
            j = k;
        }
        i = j + 1; /* after the 0x14 that ends onset[/duration] */
        int tk_tal = first && first_signal;
        int n_texts = 0;
        for (;;) {
            if (i >= n) TALERR("not terminated by 0x00");
            if (p[i] == 0) {
                i++;
                break;
            }
            size_t k = i;
            while (k < n && p[k] != 0x14 && p[k] != 0) k++;
            if (k >= n || p[k] != 0x14) TALERR("annotation text not terminated by 0x14");
            if (tk_tal && n_texts == 0) {
                if (k != i)
                    rf__edf_dev(h, "data record %lld: first TAL is not a time-keeping TAL", (long long)rec);
                *tk = onset;
                *have_tk = 1;
                if (rec == 0) *offset = onset; /* time 0 of the recording */
                if (k != i) {
                    int rc = push_ann(out, cap, onset, dur, p + i, k - i, *offset, e, name);
                    if (rc) return rc;
                }
            } else if (k > i) {
                int rc = push_ann(out, cap, onset, dur, p + i, k - i, *offset, e, name);
                if (rc) return rc;
            }
            n_texts++;
            i = k + 1;
        }
        if (n_texts == 0) TALERR("has no annotation field");
        first = 0;
    }
#undef TALERR
    return RF_OK;
}

int rf__edf_read_tals(FILE *fp, edf_hdr *h, const char *name, rf_annotations *out,
                      int64_t *start_offset_units, rf_err *e) {
    memset(out, 0, sizeof *out);
    *start_offset_units = 0;
    if (!h->plus) return RF_OK;
    size_t maxb = 0;
    for (int s = 0; s < h->ns; s++)
        if (h->sig[s].annot && (size_t)h->sig[s].spr * (size_t)h->bps > maxb)
            maxb = (size_t)h->sig[s].spr * (size_t)h->bps;
    unsigned char *buf = malloc(maxb ? maxb : 1);
    if (!buf) return rf_err_set(e, RF_ENOMEM, "file %s: out of memory", name);
    int cap = 0, rc = RF_OK, n_bad_tk = 0;
    int64_t offset = 0;
    /* time 0 is the time-keeping onset of record 0 (its first TAL, parsed before any
     * annotation of the file is stored) */
    for (int64_t r = 0; r < h->nrec && rc == RF_OK; r++) {
        int first_signal = 1, have_tk = 0;
        int64_t tk = 0;
        for (int s = 0; s < h->ns && rc == RF_OK; s++) {
            const edf_sig *g = &h->sig[s];
            if (!g->annot) continue;
            size_t nb = (size_t)g->spr * (size_t)h->bps;
            int64_t pos = h->hdr_bytes + r * h->rec_bytes + g->offset;
            if (fseeko(fp, (off_t)pos, SEEK_SET) != 0 || fread(buf, 1, nb, fp) != nb) {
                rc = rf_err_set(e, RF_EIO, "file %s: cannot read data record %lld: %s", name,
                                (long long)r, strerror(errno));
                break;
            }
            rc = parse_tal_block(buf, nb, first_signal, &tk, &have_tk, name, r, s, h, out, &cap,
                                 &offset, e);
            first_signal = 0;
        }
        if (rc) break;
        if (!have_tk) {
            rf__edf_dev(h, "data record %lld has no time-keeping TAL", (long long)r);
        } else if (h->rec_dur_units > 0 && tk != offset + r * h->rec_dur_units) {
            if (n_bad_tk++ < 3)
                rf__edf_dev(h, "data record %lld starts at %.7g s, not %.7g s (EDF+C must be continuous)",
                            (long long)r, (double)tk / RF_EDF_TIME_UNITS,
                            (double)(offset + r * h->rec_dur_units) / RF_EDF_TIME_UNITS);
        }
    }
    free(buf);
    *start_offset_units = offset;
    if (rc) {
        rf_annotations_free(out);
        return rc;
    }
    if (n_bad_tk > 3) rf__edf_dev(h, "%d data records have an unexpected start time", n_bad_tk);
    return RF_OK;
}

/* ---- samples ---- */

int rf__edf_read_samples(FILE *fp, const edf_hdr *h, const char *name, int s, int64_t start,
                         int64_t n, double *out, unsigned char *scratch, rf_err *e) {
    const edf_sig *g = &h->sig[s];
    const double bitvalue = (g->pmax - g->pmin) / (double)(g->dmax - g->dmin);
    const double offset = g->pmax / bitvalue - (double)g->dmax; /* as EDFlib */
    int64_t done = 0;
    while (done < n) {
        int64_t k = start + done;
        int64_t rec = k / g->spr, within = k % g->spr;
        int64_t cnt = g->spr - within;
        if (cnt > n - done) cnt = n - done;
        if (rec >= h->nrec)
            return rf_err_set(e, RF_EARG, "file %s: sample %lld of signal '%s' is past the last complete record",
                              name, (long long)k, g->label);
        int64_t pos = h->hdr_bytes + rec * h->rec_bytes + g->offset + within * h->bps;
        size_t nb = (size_t)cnt * (size_t)h->bps;
        if (fseeko(fp, (off_t)pos, SEEK_SET) != 0 || fread(scratch, 1, nb, fp) != nb)
            return rf_err_set(e, RF_EIO, "file %s: cannot read data record %lld: %s", name,
                              (long long)rec, ferror(fp) ? strerror(errno) : "unexpected end of file");
        double *o = out + done;
        if (h->bdf) {
            for (int64_t i = 0; i < cnt; i++) {
                const unsigned char *q = scratch + 3 * i;
                int32_t v = (int32_t)((uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16));
                if (v & 0x800000) v -= 0x1000000;
                v = v < g->dmin ? g->dmin : v > g->dmax ? g->dmax : v; /* clipped, as EDFlib */
                o[i] = bitvalue * (offset + (double)v);
            }
        } else {
            for (int64_t i = 0; i < cnt; i++) {
                const unsigned char *q = scratch + 2 * i;
                int v = (int16_t)(uint16_t)((uint16_t)q[0] | ((uint16_t)q[1] << 8));
                v = v < g->dmin ? g->dmin : v > g->dmax ? g->dmax : v; /* clipped, as EDFlib */
                o[i] = bitvalue * (offset + (double)v);
            }
        }
        done += cnt;
    }
    return RF_OK;
}
