/* CSV with a header row: numbers only, ',' separated, blank lines ignored, CRLF tolerated. */
#include "data_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void rf_strings_free(char **s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static const char *num_problem(int code) {
    switch (code) {
    case RFD_NUM_EMPTY: return "is empty";
    case RFD_NUM_NONFINITE: return "is not finite (NaN or Inf)";
    case RFD_NUM_RANGE: return "is out of float32 range";
    default: return "is not a number";
    }
}

/* All fields of a line are numbers (used to detect a missing header row). */
static int all_numeric(const char *s, size_t len) {
    rfd_fields f;
    rfd_fields_init(&f, s, len);
    const char *fs;
    size_t fl;
    double v;
    while (rfd_fields_next(&f, &fs, &fl)) {
        int c = rfd_parse_number(fs, fl, &v);
        if (c != RFD_NUM_OK && c != RFD_NUM_NONFINITE && c != RFD_NUM_RANGE) return 0;
    }
    return 1;
}

static int csv_parse(const char *path, const char *buf, size_t len, rf_matrix *m, char ***names_out,
                     rf_err *e) {
    char ex[96];
    const void *nul = memchr(buf, 0, len);
    if (nul)
        return rf_err_set(e, RF_EFORMAT, "%s: contains a NUL byte at offset %zu; not a text CSV file",
                          path, (size_t)((const char *)nul - buf));
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) { /* UTF-8 byte order mark */
        buf += 3;
        len -= 3;
    }
    rfd_lines it;
    rfd_lines_init(&it, buf, len);
    const char *ls;
    size_t ll;
    int found = 0;
    while (rfd_lines_next(&it, &ls, &ll))
        if (!rfd_is_blank(ls, ll)) {
            found = 1;
            break;
        }
    if (!found)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: empty file: expected a header row of column names and data rows",
                          path);
    int header_line = it.lineno;
    rfd_excerpt(ex, sizeof ex, ls, ll);
    if (all_numeric(ls, ll))
        return rf_err_set(e, RF_EFORMAT,
                          "%s:%d: missing header row: the first line '%s' holds only numbers; the "
                          "first line must name the columns",
                          path, header_line, ex);
    int d = rfd_fields_count(ls, ll);
    char **names = calloc((size_t)d, sizeof *names);
    if (!names) return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
    {
        rfd_fields f;
        rfd_fields_init(&f, ls, ll);
        const char *fs;
        size_t fl;
        for (int j = 0; rfd_fields_next(&f, &fs, &fl); j++) {
            if (fl == 0) {
                rf_strings_free(names, d);
                return rf_err_set(e, RF_EFORMAT, "%s:%d: header column %d has an empty name: '%s'",
                                  path, header_line, j + 1, ex);
            }
            names[j] = malloc(fl + 1);
            if (!names[j]) {
                rf_strings_free(names, d);
                return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
            }
            memcpy(names[j], fs, fl);
            names[j][fl] = 0;
        }
        if (f.bad_quote) {
            rf_strings_free(names, d);
            return rf_err_set(e, RF_EFORMAT, "%s:%d: unterminated quote in the header: '%s'", path,
                              header_line, ex);
        }
    }
    /* count data rows, checking the number of fields of each */
    rfd_lines data_start = it;
    long long n = 0;
    while (rfd_lines_next(&it, &ls, &ll)) {
        if (rfd_is_blank(ls, ll)) continue;
        int k = rfd_fields_count(ls, ll);
        if (k != d) {
            char nm[64];
            rfd_excerpt(ex, sizeof ex, ls, ll);
            rfd_excerpt(nm, sizeof nm, names[k < d ? k : d - 1], strlen(names[k < d ? k : d - 1]));
            rf_err_set(e, RF_EFORMAT,
                       k < d ? "%s:%d: %d fields but the header has %d columns (missing column "
                               "'%s'): '%s'"
                             : "%s:%d: %d fields but the header has %d columns (extra fields after "
                               "column '%s'): '%s'",
                       path, it.lineno, k, d, nm, ex);
            rf_strings_free(names, d);
            return RF_EFORMAT;
        }
        n++;
    }
    if (n == 0) {
        rf_strings_free(names, d);
        return rf_err_set(e, RF_EFORMAT, "%s: no data rows after the header (line %d)", path,
                          header_line);
    }
    if (n > INT_MAX) {
        rf_strings_free(names, d);
        return rf_err_set(e, RF_EFORMAT, "%s: %lld rows are too many", path, n);
    }
    int rc = rf_matrix_alloc(m, (int)n, d, e);
    if (rc != RF_OK) {
        rf_strings_free(names, d);
        return rc;
    }
    it = data_start;
    size_t r = 0;
    while (rc == RF_OK && rfd_lines_next(&it, &ls, &ll)) {
        if (rfd_is_blank(ls, ll)) continue;
        rfd_fields f;
        rfd_fields_init(&f, ls, ll);
        const char *fs;
        size_t fl;
        for (int j = 0; rfd_fields_next(&f, &fs, &fl); j++) {
            double v;
            int c = rfd_parse_number(fs, fl, &v);
            if (c != RFD_NUM_OK) {
                char nm[64];
                rfd_excerpt(ex, sizeof ex, fs, fl);
                rfd_excerpt(nm, sizeof nm, names[j], strlen(names[j]));
                rc = rf_err_set(e, c == RFD_NUM_NONFINITE ? RF_ENONFINITE : RF_EFORMAT,
                                "%s:%d: column '%s' (%d of %d): '%s' %s", path, it.lineno, nm,
                                j + 1, d, ex, num_problem(c));
                break;
            }
            m->x[r * (size_t)d + (size_t)j] = (float)v;
        }
        r++;
    }
    if (rc != RF_OK) {
        rf_matrix_free(m);
        rf_strings_free(names, d);
        return rc;
    }
    if (names_out) *names_out = names;
    else rf_strings_free(names, d);
    return RF_OK;
}

int rf_csv_read(const char *path, rf_matrix *m, char ***col_names, rf_err *e) {
    if (!m) return rf_err_set(e, RF_EARG, "rf_csv_read: NULL matrix");
    memset(m, 0, sizeof *m);
    if (col_names) *col_names = NULL;
    if (!path) return rf_err_set(e, RF_EARG, "rf_csv_read: NULL path");
    unsigned char *buf;
    size_t len;
    int rc = rf_read_file(path, &buf, &len, e);
    if (rc != RF_OK) return rc;
    rc = csv_parse(path, (const char *)buf, len, m, col_names, e);
    free(buf);
    return rc;
}

int rf_csv_write(const char *path, const rf_matrix *m, const char *const *col_names, rf_err *e) {
    if (!path || !m) return rf_err_set(e, RF_EARG, "rf_csv_write: NULL path or matrix");
    if (m->n < 0 || m->d <= 0 || (m->n > 0 && !m->x))
        return rf_err_set(e, RF_EARG, "%s: cannot write a %d x %d matrix as CSV", path, m->n, m->d);
    int numeric_names = 0;
    if (col_names) {
        for (int j = 0; j < m->d; j++) {
            const char *s = col_names[j];
            if (!s || !*s || strpbrk(s, ",\n\r\"'") || s[0] == ' ' || s[0] == '\t' ||
                s[strlen(s) - 1] == ' ' || s[strlen(s) - 1] == '\t')
                return rf_err_set(e, RF_EARG,
                                  "%s: column %d name '%s' is empty or has a comma, quote, line "
                                  "break or surrounding blanks",
                                  path, j + 1, s ? s : "(null)");
            double v;
            int c = rfd_parse_number(s, strlen(s), &v);
            numeric_names += c == RFD_NUM_OK || c == RFD_NUM_NONFINITE || c == RFD_NUM_RANGE;
        }
        if (numeric_names == m->d)
            return rf_err_set(e, RF_EARG,
                              "%s: every column name is a number; a reader would take the header "
                              "row for data",
                              path);
    }
    size_t total = (size_t)m->n * (size_t)m->d;
    for (size_t i = 0; i < total; i++)
        if (!isfinite(m->x[i]))
            return rf_err_set(e, RF_ENONFINITE, "%s: non-finite value at row %zu, column %zu", path,
                              i / (size_t)m->d, i % (size_t)m->d);
    rf_afile *f = rf_afile_open(path, e);
    if (!f) return e ? e->code : RF_EIO;
    FILE *fp = rf_afile_fp(f);
    int bad = 0;
    for (int j = 0; j < m->d && !bad; j++) {
        if (col_names) bad |= fprintf(fp, "%s%s", j ? "," : "", col_names[j]) < 0;
        else bad |= fprintf(fp, "%sx%d", j ? "," : "", j) < 0;
    }
    bad |= fputc('\n', fp) == EOF;
    for (int i = 0; i < m->n && !bad; i++) {
        const float *row = m->x + (size_t)i * (size_t)m->d;
        for (int j = 0; j < m->d && !bad; j++)
            bad |= fprintf(fp, j ? ",%.9g" : "%.9g", (double)row[j]) < 0;
        bad |= fputc('\n', fp) == EOF;
    }
    if (bad) {
        rf_afile_abort(f);
        return rf_err_set(e, RF_EIO, "%s: write failed", path);
    }
    return rf_afile_commit(f, e);
}
