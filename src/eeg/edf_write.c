/* A small EDF+/BDF+ writer over EDFlib, atomic (temp file in the same directory + fsync + rename).
 *
 * Physical ranges are stored in 8-character header fields; EDFlib converts samples with the
 * double it is given but readers use the 8-character text, so every range handed to EDFlib is
 * first made exactly representable in 8 characters (automatic ranges are rounded outwards,
 * explicit ones that do not fit are an error). */
#include "edf_internal.h"

#include <edflib.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rounds v to the value with the most decimals that prints in at most 8 characters, towards
 * +inf (dir > 0), -inf (dir < 0) or to nearest (dir == 0). Returns 0 when nothing fits. */
static int fit8(double v, int dir, double *out) {
    for (int d = 7; d >= 0; d--) {
        double p = pow(10.0, d);
        double s = v * p;
        double r = dir > 0 ? ceil(s - 1e-9) : dir < 0 ? floor(s + 1e-9) : nearbyint(s);
        double x = r / p;
        char buf[64];
        int len = snprintf(buf, sizeof buf, "%.*f", d, x);
        if (len <= 8) {
            *out = strtod(buf, NULL);
            return 1;
        }
    }
    return 0;
}

static int check_text(const char *what, const char *s, size_t maxlen, const char *path, int sig,
                      rf_err *e) {
    if (!s) return RF_OK;
    size_t n = strlen(s);
    if (n > maxlen)
        return rf_err_set(e, RF_EARG, "%s: signal %d: %s '%s' is %zu characters; EDF allows %zu", path,
                          sig + 1, what, s, n, maxlen);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 32 || (unsigned char)s[i] > 126)
            return rf_err_set(e, RF_EARG, "%s: signal %d: %s '%s' has a non-ASCII or control character",
                              path, sig + 1, what, s);
    return RF_OK;
}

typedef struct wsig {
    int spr;
    double pmin, pmax;
    int dmin, dmax;
} wsig;

static int cmp_onset(const void *a, const void *b) {
    const rf_annotation *const *x = a, *const *y = b;
    if ((*x)->onset_s != (*y)->onset_s) return (*x)->onset_s < (*y)->onset_s ? -1 : 1;
    return *x < *y ? -1 : *x > *y;
}

static int validate(const char *path, const rf_edf_wspec *s, double rec, wsig *w, int64_t *nrec_out,
                    rf_err *e) {
    int64_t nrec = -1;
    const int dlo = s->bdf ? -8388608 : -32768, dhi = s->bdf ? 8388607 : 32767;
    for (int i = 0; i < s->n_signals; i++) {
        const rf_edf_wsignal *g = &s->signals[i];
        if (!g->label || !g->label[0])
            return rf_err_set(e, RF_EARG, "%s: signal %d has no label", path, i + 1);
        int rc;
        if ((rc = check_text("label", g->label, 16, path, i, e)) || (rc = check_text("unit", g->unit, 8, path, i, e)) ||
            (rc = check_text("prefilter", g->prefilter, 80, path, i, e)) ||
            (rc = check_text("transducer", g->transducer, 80, path, i, e)))
            return rc;
        if (strcmp(g->label, "EDF Annotations") == 0 || strcmp(g->label, "BDF Annotations") == 0)
            return rf_err_set(e, RF_EARG, "%s: signal %d: label '%s' is reserved for annotations", path, i + 1, g->label);
        double spr = g->rate_hz * rec;
        if (!(g->rate_hz > 0) || !isfinite(spr) || spr < 0.5 || fabs(spr - nearbyint(spr)) > 1e-6 * spr ||
            spr > 10000000)
            return rf_err_set(e, RF_EARG,
                              "%s: signal %d ('%s'): rate %g Hz x record %g s = %g samples per record, "
                              "which must be a whole number >= 1 (choose record_s)",
                              path, i + 1, g->label, g->rate_hz, rec, spr);
        w[i].spr = (int)nearbyint(spr);
        if (g->n < 0 || g->n % w[i].spr)
            return rf_err_set(e, RF_EARG,
                              "%s: signal %d ('%s'): %lld samples is not a whole number of %d-sample "
                              "(%g s) records",
                              path, i + 1, g->label, (long long)g->n, w[i].spr, rec);
        int64_t nr = g->n / w[i].spr;
        if (nrec >= 0 && nr != nrec)
            return rf_err_set(e, RF_EARG,
                              "%s: signal %d ('%s') covers %lld records (%g s) but signal 1 covers %lld",
                              path, i + 1, g->label, (long long)nr, (double)nr * rec, (long long)nrec);
        nrec = nr;
        if (g->n > 0 && !g->data) return rf_err_set(e, RF_EARG, "%s: signal %d ('%s'): data is NULL", path, i + 1, g->label);
        double lo = INFINITY, hi = -INFINITY;
        for (int64_t k = 0; k < g->n; k++) {
            double x = g->data[k];
            if (!isfinite(x))
                return rf_err_set(e, RF_ENONFINITE, "%s: signal %d ('%s'): sample %lld is %g", path, i + 1,
                                  g->label, (long long)k, x);
            if (x < lo) lo = x;
            if (x > hi) hi = x;
        }
        if (g->phys_min == 0 && g->phys_max == 0) {
            if (g->n == 0) lo = -1, hi = 1;
            if (hi - lo < 1e-6 * fmax(1.0, fabs(hi))) {
                lo -= fmax(1.0, fabs(lo) * 1e-3);
                hi += fmax(1.0, fabs(hi) * 1e-3);
            }
            if (!fit8(lo, -1, &w[i].pmin) || !fit8(hi, +1, &w[i].pmax))
                return rf_err_set(e, RF_EARG, "%s: signal %d ('%s'): data range [%g, %g] does not fit the 8-character EDF fields",
                                  path, i + 1, g->label, lo, hi);
        } else {
            double a, b;
            if (!isfinite(g->phys_min) || !isfinite(g->phys_max) || g->phys_min == g->phys_max ||
                !fit8(g->phys_min, 0, &a) || !fit8(g->phys_max, 0, &b) || a != g->phys_min || b != g->phys_max)
                return rf_err_set(e, RF_EARG,
                                  "%s: signal %d ('%s'): physical range [%.17g, %.17g] must be two "
                                  "different numbers that print exactly in 8 characters",
                                  path, i + 1, g->label, g->phys_min, g->phys_max);
            w[i].pmin = g->phys_min;
            w[i].pmax = g->phys_max;
            double plo = fmin(a, b), phi = fmax(a, b);
            if (lo < plo || hi > phi)
                return rf_err_set(e, RF_EARG,
                                  "%s: signal %d ('%s'): data range [%g, %g] exceeds the physical range "
                                  "[%g, %g] (EDF would clip it)",
                                  path, i + 1, g->label, lo, hi, plo, phi);
        }
        if (g->dig_min == 0 && g->dig_max == 0) {
            w[i].dmin = dlo;
            w[i].dmax = dhi;
        } else if (g->dig_min < dlo || g->dig_max > dhi || g->dig_min >= g->dig_max) {
            return rf_err_set(e, RF_EARG, "%s: signal %d ('%s'): digital range [%d, %d] must lie within %d..%d, min < max",
                              path, i + 1, g->label, g->dig_min, g->dig_max, dlo, dhi);
        } else {
            w[i].dmin = g->dig_min;
            w[i].dmax = g->dig_max;
        }
    }
    *nrec_out = nrec;
    return RF_OK;
}

int rf_edf_write(const char *path, const rf_edf_wspec *s, rf_err *e) {
    if (!path || !s) return rf_err_set(e, RF_EARG, "rf_edf_write: NULL argument");
    if (s->n_signals < 1 || s->n_signals > 640 || !s->signals)
        return rf_err_set(e, RF_EARG, "%s: %d signals; EDFlib writes 1..640", path, s->n_signals);
    double rec = s->record_s == 0 ? 1.0 : s->record_s;
    double rec_units = rec * 1e5; /* EDFlib: units of 10 us */
    if (!isfinite(rec) || rec_units < 100 - 1e-6 || rec_units > 6000000 + 1e-6 ||
        fabs(rec_units - nearbyint(rec_units)) > 1e-6)
        return rf_err_set(e, RF_EARG, "%s: record duration %g s must be 0.001 .. 60 s in steps of 10 us",
                          path, rec);
    wsig *w = calloc((size_t)s->n_signals, sizeof *w);
    if (!w) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int64_t nrec = 0;
    int rc = validate(path, s, rec, w, &nrec, e);
    if (rc) {
        free(w);
        return rc;
    }
    /* annotations: sorted by onset, text <= 40 bytes without control characters */
    int na = s->annots ? s->annots->n : 0;
    const rf_annotation **ord = calloc((size_t)(na ? na : 1), sizeof *ord);
    if (!ord) {
        free(w);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < na; i++) {
        const rf_annotation *a = &s->annots->items[i];
        ord[i] = a;
        size_t tl = a->text ? strlen(a->text) : 0;
        const char *bad = NULL;
        if (!a->text || tl == 0) bad = "has no text";
        else if (tl > RF_EDF_MAX_ANNOT_TEXT) bad = "text is longer than the 40 bytes EDFlib writes";
        else if (!isfinite(a->onset_s) || a->onset_s < 0 || a->onset_s > 1e9) bad = "onset must be 0 .. 1e9 s";
        else if (!isfinite(a->duration_s) || (a->duration_s < 0 && a->duration_s != -1.0) || a->duration_s > 1e9)
            bad = "duration must be >= 0 s or -1 (none)";
        for (size_t k = 0; !bad && k < tl; k++)
            if ((unsigned char)a->text[k] < 32) bad = "text contains a control character";
        if (bad) {
            rc = rf_err_set(e, RF_EARG, "%s: annotation %d ('%s' at %g s): %s", path, i + 1,
                            a->text ? a->text : "", a->onset_s, bad);
            free(w);
            free(ord);
            return rc;
        }
    }
    qsort(ord, (size_t)na, sizeof *ord, cmp_onset);
    int n_annot_sig = 1;
    if (na > 0) {
        if (nrec == 0) rc = rf_err_set(e, RF_EARG, "%s: annotations need at least one data record", path);
        else {
            int64_t need = (na + nrec - 1) / nrec; /* EDFlib stores one annotation per record and signal */
            if (need > 64)
                rc = rf_err_set(e, RF_EARG, "%s: %d annotations in %lld records need %lld annotation signals; EDFlib allows 64",
                                path, na, (long long)nrec, (long long)need);
            n_annot_sig = need < 1 ? 1 : (int)need;
        }
        if (rc) {
            free(w);
            free(ord);
            return rc;
        }
    }

    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    int maxspr = 1;
    for (int i = 0; i < s->n_signals; i++) maxspr = w[i].spr > maxspr ? w[i].spr : maxspr;
    int *buf = malloc((size_t)maxspr * sizeof *buf);
    if (!tmp || !buf) {
        free(tmp);
        free(buf);
        free(w);
        free(ord);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    rf__edflib_lock();
    int h = edfopen_file_writeonly(tmp, s->bdf ? EDFLIB_FILETYPE_BDFPLUS : EDFLIB_FILETYPE_EDFPLUS, s->n_signals);
    rf__edflib_unlock();
    if (h < 0) {
        rc = rf_err_set(e, RF_EIO, "%s: EDFlib cannot create %s (error %d: %s)", path, tmp, h,
                        h == EDFLIB_NO_SUCH_FILE_OR_DIRECTORY ? "no such directory or not writable"
                        : h == EDFLIB_MAXFILES_REACHED        ? "too many open files"
                        : h == EDFLIB_FILE_ALREADY_OPENED     ? "already open"
                        : h == EDFLIB_MALLOC_ERROR            ? "out of memory"
                                                              : "see edflib.h");
        goto out;
    }
    const char *step = NULL;
    if (nearbyint(rec_units) != 100000 && edf_set_datarecord_duration(h, (int)nearbyint(rec_units)) != 0)
        step = "record duration";
    for (int i = 0; !step && i < s->n_signals; i++) {
        const rf_edf_wsignal *g = &s->signals[i];
        if (edf_set_samplefrequency(h, i, w[i].spr) || edf_set_physical_maximum(h, i, w[i].pmax) ||
            edf_set_physical_minimum(h, i, w[i].pmin) || edf_set_digital_maximum(h, i, w[i].dmax) ||
            edf_set_digital_minimum(h, i, w[i].dmin) || edf_set_label(h, i, g->label) ||
            edf_set_physical_dimension(h, i, g->unit ? g->unit : "") ||
            (g->prefilter && edf_set_prefilter(h, i, g->prefilter)) ||
            (g->transducer && edf_set_transducer(h, i, g->transducer)))
            step = "signal parameters";
    }
    if (!step && edf_set_number_of_annotation_signals(h, n_annot_sig) != 0) step = "number of annotation signals";
    rf_edf_datetime t = s->start;
    if (t.year == 0) t = (rf_edf_datetime){1985, 1, 1, 0, 0, 0, 0};
    if (!step && edf_set_startdatetime(h, t.year, t.month, t.day, t.hour, t.minute, t.second) != 0)
        step = "start date/time (year 1985..2084)";
    if (!step && t.subsecond != 0) {
        double u = t.subsecond * 1e7; /* 100 ns units; EDFlib recommends 100 us resolution */
        if (!(u >= 0 && u < 1e7) || edf_set_subsecond_starttime(h, (int)nearbyint(u)) != 0)
            step = "sub-second start time (0 <= subsecond < 1 s)";
    }
    if (!step && s->patient_code && edf_set_patientcode(h, s->patient_code) != 0) step = "patient code";
    if (!step && s->equipment && edf_set_equipment(h, s->equipment) != 0) step = "equipment";
    /* physical -> digital with rounding to nearest (EDFlib's edfwrite_physical_samples truncates,
     * an error of up to one step); the inverse of the reader's bitvalue * (offset + digital) */
    for (int64_t r = 0; !step && r < nrec; r++)
        for (int i = 0; !step && i < s->n_signals; i++) {
            const double bitvalue = (w[i].pmax - w[i].pmin) / (double)(w[i].dmax - w[i].dmin);
            const double offset = w[i].pmax / bitvalue - (double)w[i].dmax;
            const double *x = s->signals[i].data + r * w[i].spr;
            for (int k = 0; k < w[i].spr; k++) {
                double d = nearbyint(x[k] / bitvalue - offset);
                buf[k] = d < w[i].dmin ? w[i].dmin : d > w[i].dmax ? w[i].dmax : (int)d;
            }
            if (edfwrite_digital_samples(h, buf) != 0) step = "writing samples";
        }
    for (int i = 0; !step && i < na; i++) {
        long long on = llround(ord[i]->onset_s * 1e4); /* EDFlib 1.23: units of 100 us */
        long long du = ord[i]->duration_s < 0 ? -1 : llround(ord[i]->duration_s * 1e4);
        if (edfwrite_annotation_utf8(h, on, du, ord[i]->text) != 0) step = "writing annotations";
    }
    rf__edflib_lock();
    int cl = edfclose_file(h);
    rf__edflib_unlock();
    if (step || cl != 0) {
        rc = rf_err_set(e, RF_EIO, "%s: EDFlib failed at: %s", path, step ? step : "closing the file");
        goto out;
    }
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        rc = rf_err_set(e, RF_EIO, "%s: cannot fsync %s: %s", path, tmp, strerror(errno));
        if (fd >= 0) close(fd);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        rc = rf_err_set(e, RF_EIO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL;
out:
    if (tmp) unlink(tmp);
    free(tmp);
    free(buf);
    free(w);
    free(ord);
    return rc;
}
