/* ARFF (Weka) reader: NUMERIC/REAL/INTEGER attributes -> columns, one nominal class -> labels. */
#include "data_internal.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    char *name;
    int nominal;
    int nvalues;
    char **values;
} arff_attr;

typedef struct {
    arff_attr *a;
    int n, cap;
} arff_attrs;

static void attrs_free(arff_attrs *as) {
    for (int i = 0; i < as->n; i++) {
        free(as->a[i].name);
        rf_strings_free(as->a[i].values, as->a[i].nvalues);
    }
    free(as->a);
    memset(as, 0, sizeof *as);
}

static char *dup_n(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

/* Compares a keyword case-insensitively; the keyword must be followed by a blank or the end. */
static int kw(const char *s, size_t len, const char *word, size_t *used) {
    size_t n = strlen(word);
    if (len < n || strncasecmp(s, word, n) != 0) return 0;
    if (len > n && !isspace((unsigned char)s[n]) && s[n] != '{') return 0;
    *used = n;
    return 1;
}

/* Reads an attribute name: '...' or "..." quoted, or a token up to a blank or '{'. */
static int attr_name(const char **s, size_t *len, const char **name, size_t *nlen) {
    const char *p = *s, *end = *s + *len;
    if (p < end && (*p == '\'' || *p == '"')) {
        char q = *p++;
        const char *a = p;
        while (p < end && *p != q) p += (*p == '\\' && p + 1 < end) ? 2 : 1;
        if (p >= end) return 0;
        *name = a;
        *nlen = (size_t)(p - a);
        p++;
    } else {
        const char *a = p;
        while (p < end && !isspace((unsigned char)*p) && *p != '{') p++;
        *name = a;
        *nlen = (size_t)(p - a);
    }
    *s = p;
    *len = (size_t)(end - p);
    return *nlen > 0;
}

static int add_attr(const char *path, int line, const char *rest, size_t rl, arff_attrs *as,
                    rf_err *e) {
    char ex[96];
    rfd_excerpt(ex, sizeof ex, rest, rl);
    rfd_trim(&rest, &rl);
    const char *nm;
    size_t nl;
    if (!attr_name(&rest, &rl, &nm, &nl))
        return rf_err_set(e, RF_EFORMAT, "%s:%d: @ATTRIBUTE without a valid name: '%s'", path,
                          line, ex);
    rfd_trim(&rest, &rl);
    if (as->n == as->cap) {
        int nc = as->cap ? as->cap * 2 : 16;
        arff_attr *na = realloc(as->a, sizeof *na * (size_t)nc);
        if (!na) return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
        as->a = na;
        as->cap = nc;
    }
    arff_attr *at = &as->a[as->n];
    memset(at, 0, sizeof *at);
    at->name = dup_n(nm, nl);
    if (!at->name) return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
    as->n++;
    char shown[64];
    rfd_excerpt(shown, sizeof shown, nm, nl);
    if (rl > 0 && rest[0] == '{') {
        if (rest[rl - 1] != '}')
            return rf_err_set(e, RF_EFORMAT,
                              "%s:%d: attribute '%s': nominal value list lacks its closing '}': "
                              "'%s'",
                              path, line, shown, ex);
        at->nominal = 1;
        const char *vs = rest + 1;
        size_t vl = rl - 2;
        int cnt = rfd_is_blank(vs, vl) ? 0 : rfd_fields_count(vs, vl);
        if (cnt == 0)
            return rf_err_set(e, RF_EFORMAT, "%s:%d: attribute '%s' has an empty value list {}",
                              path, line, shown);
        at->values = calloc((size_t)cnt, sizeof *at->values);
        if (!at->values) return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
        at->nvalues = cnt;
        rfd_fields f;
        rfd_fields_init(&f, vs, vl);
        const char *fs;
        size_t fl;
        for (int k = 0; rfd_fields_next(&f, &fs, &fl); k++)
            if (!(at->values[k] = dup_n(fs, fl)))
                return rf_err_set(e, RF_ENOMEM, "%s: out of memory", path);
        if (f.bad_quote)
            return rf_err_set(e, RF_EFORMAT, "%s:%d: attribute '%s': unterminated quote in '%s'",
                              path, line, shown, ex);
        return RF_OK;
    }
    size_t used;
    const char *type = rest;
    size_t tl = 0;
    while (tl < rl && !isspace((unsigned char)type[tl])) tl++;
    char tshow[40];
    rfd_excerpt(tshow, sizeof tshow, type, tl);
    if (kw(type, tl, "numeric", &used) || kw(type, tl, "real", &used) ||
        kw(type, tl, "integer", &used))
        return RF_OK;
    if (kw(type, tl, "string", &used) || kw(type, tl, "date", &used) ||
        kw(type, tl, "relational", &used))
        return rf_err_set(e, RF_EFORMAT,
                          "%s:%d: attribute '%s' has type %s, which renflow cannot use; only "
                          "NUMERIC/REAL/INTEGER and a nominal class {..} are supported",
                          path, line, shown, tshow);
    return rf_err_set(e, RF_EFORMAT, "%s:%d: attribute '%s' has an unknown type '%s'", path, line,
                      shown, tshow);
}

static int is_comment(const char *s, size_t len) {
    rfd_trim(&s, &len);
    return len > 0 && s[0] == '%';
}

static int arff_parse(const char *path, const char *buf, size_t len, const char *class_attr,
                      rf_matrix *x, int **labels_out, rf_err *e) {
    const void *nul = memchr(buf, 0, len);
    if (nul)
        return rf_err_set(e, RF_EFORMAT, "%s: contains a NUL byte at offset %zu; not a text ARFF file",
                          path, (size_t)((const char *)nul - buf));
    arff_attrs as = {0};
    rfd_lines it;
    rfd_lines_init(&it, buf, len);
    const char *ls;
    size_t ll;
    int rc = RF_OK, in_data = 0;
    char ex[96];
    while (!in_data && rc == RF_OK && rfd_lines_next(&it, &ls, &ll)) {
        if (rfd_is_blank(ls, ll) || is_comment(ls, ll)) continue;
        const char *s = ls;
        size_t sl = ll, used;
        rfd_trim(&s, &sl);
        rfd_excerpt(ex, sizeof ex, s, sl);
        if (kw(s, sl, "@relation", &used)) continue;
        if (kw(s, sl, "@attribute", &used)) {
            rc = add_attr(path, it.lineno, s + used, sl - used, &as, e);
        } else if (kw(s, sl, "@data", &used)) {
            in_data = 1;
        } else {
            rc = rf_err_set(e, RF_EFORMAT,
                            "%s:%d: expected @RELATION, @ATTRIBUTE or @DATA in the ARFF header, "
                            "found '%s'",
                            path, it.lineno, ex);
        }
    }
    if (rc == RF_OK && !in_data)
        rc = rf_err_set(e, RF_EFORMAT, "%s: no @DATA section (not an ARFF file?)", path);
    if (rc == RF_OK && as.n == 0)
        rc = rf_err_set(e, RF_EFORMAT, "%s: no @ATTRIBUTE declarations before @DATA", path);
    int cls = -1;
    if (rc == RF_OK && class_attr) {
        for (int i = 0; i < as.n; i++)
            if (strcmp(as.a[i].name, class_attr) == 0) cls = i;
        if (cls < 0) {
            char names[400];
            size_t k = 0;
            names[0] = 0;
            for (int i = 0; i < as.n && k + 1 < sizeof names; i++) {
                int w = snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "", as.a[i].name);
                if (w < 0) break;
                k += (size_t)w;
            }
            rc = rf_err_set(e, RF_EARG,
                            "%s: no attribute named '%s' for the class labels (attributes: %s)",
                            path, class_attr, names);
        }
        else if (!as.a[cls].nominal)
            rc = rf_err_set(e, RF_EFORMAT,
                            "%s: class attribute '%s' is numeric; the class must be nominal {..}",
                            path, class_attr);
    } else if (rc == RF_OK) {
        for (int i = 0; i < as.n; i++)
            if (as.a[i].nominal) cls = i;
    }
    int d = 0;
    for (int i = 0; rc == RF_OK && i < as.n; i++) {
        if (i == cls) continue;
        if (as.a[i].nominal)
            rc = rf_err_set(e, RF_EFORMAT,
                            "%s: attribute '%s' is nominal but not the class attribute ('%s'); "
                            "renflow reads only NUMERIC/REAL/INTEGER columns",
                            path, as.a[i].name, cls >= 0 ? as.a[cls].name : "?");
        d++;
    }
    if (rc == RF_OK && d == 0)
        rc = rf_err_set(e, RF_EFORMAT, "%s: no NUMERIC attributes to read as columns", path);
    /* count rows, checking the field count of each */
    rfd_lines data_start = it;
    long long n = 0;
    while (rc == RF_OK && rfd_lines_next(&it, &ls, &ll)) {
        if (rfd_is_blank(ls, ll) || is_comment(ls, ll)) continue;
        const char *s = ls;
        size_t sl = ll;
        rfd_trim(&s, &sl);
        rfd_excerpt(ex, sizeof ex, s, sl);
        if (s[0] == '{') {
            rc = rf_err_set(e, RF_EFORMAT, "%s:%d: sparse ARFF rows are not supported: '%s'", path,
                            it.lineno, ex);
            break;
        }
        int k = rfd_fields_count(s, sl);
        if (k != as.n) {
            const char *which = as.a[k < as.n ? k : as.n - 1].name;
            rc = rf_err_set(e, RF_EFORMAT,
                            k < as.n ? "%s:%d: %d values but %d attributes (missing attribute "
                                       "'%s'): '%s'"
                                     : "%s:%d: %d values but %d attributes (extra values after "
                                       "attribute '%s'): '%s'",
                            path, it.lineno, k, as.n, which, ex);
            break;
        }
        n++;
    }
    if (rc == RF_OK && n == 0) rc = rf_err_set(e, RF_EFORMAT, "%s: no data rows after @DATA", path);
    if (rc == RF_OK && n > INT_MAX) rc = rf_err_set(e, RF_EFORMAT, "%s: too many rows", path);
    int *labels = NULL;
    if (rc == RF_OK) rc = rf_matrix_alloc(x, (int)n, d, e);
    if (rc == RF_OK && labels_out && cls >= 0) {
        labels = malloc(sizeof(int) * (size_t)n);
        if (!labels) rc = rf_err_set(e, RF_ENOMEM, "%s: out of memory for %lld labels", path, n);
    }
    it = data_start;
    size_t r = 0;
    while (rc == RF_OK && rfd_lines_next(&it, &ls, &ll)) {
        if (rfd_is_blank(ls, ll) || is_comment(ls, ll)) continue;
        rfd_fields f;
        rfd_fields_init(&f, ls, ll);
        const char *fs;
        size_t fl;
        int col = 0;
        for (int j = 0; rc == RF_OK && rfd_fields_next(&f, &fs, &fl); j++) {
            const arff_attr *at = &as.a[j];
            rfd_excerpt(ex, sizeof ex, fs, fl);
            if (fl == 1 && fs[0] == '?') {
                rc = rf_err_set(e, RF_EFORMAT,
                                "%s:%d: missing value '?' for attribute '%s' (field %d); renflow "
                                "needs complete data (drop or impute such rows first)",
                                path, it.lineno, at->name, j + 1);
            } else if (j == cls) {
                int k = -1;
                for (int v = 0; v < at->nvalues && k < 0; v++)
                    if (strlen(at->values[v]) == fl && memcmp(at->values[v], fs, fl) == 0) k = v;
                if (k < 0)
                    rc = rf_err_set(e, RF_EFORMAT,
                                    "%s:%d: class attribute '%s' has value '%s', which is not in "
                                    "its declared list",
                                    path, it.lineno, at->name, ex);
                else if (labels)
                    labels[r] = k;
            } else {
                double v;
                int c = rfd_parse_number(fs, fl, &v);
                if (c != RFD_NUM_OK)
                    rc = rf_err_set(e, c == RFD_NUM_NONFINITE ? RF_ENONFINITE : RF_EFORMAT,
                                    "%s:%d: attribute '%s' (field %d): '%s' %s", path, it.lineno,
                                    at->name, j + 1, ex,
                                    c == RFD_NUM_EMPTY       ? "is empty"
                                    : c == RFD_NUM_NONFINITE ? "is not finite"
                                    : c == RFD_NUM_RANGE     ? "is out of float32 range"
                                                             : "is not a number");
                else
                    x->x[r * (size_t)d + (size_t)col] = (float)v;
                col++;
            }
        }
        if (rc == RF_OK && f.bad_quote)
            rc = rf_err_set(e, RF_EFORMAT, "%s:%d: unterminated quote", path, it.lineno);
        r++;
    }
    attrs_free(&as);
    if (rc != RF_OK) {
        rf_matrix_free(x);
        free(labels);
        return rc;
    }
    if (labels_out) *labels_out = labels;
    return RF_OK;
}

int rf_arff_read(const char *path, const char *class_attr, rf_matrix *x, int **labels,
                 rf_err *e) {
    if (!x) return rf_err_set(e, RF_EARG, "rf_arff_read: NULL matrix");
    memset(x, 0, sizeof *x);
    if (labels) *labels = NULL;
    if (!path) return rf_err_set(e, RF_EARG, "rf_arff_read: NULL path");
    unsigned char *buf;
    size_t len;
    int rc = rf_read_file(path, &buf, &len, e);
    if (rc != RF_OK) return rc;
    rc = arff_parse(path, (const char *)buf, len, class_attr, x, labels, e);
    free(buf);
    return rc;
}
