/* Text helpers for the CSV and ARFF readers: lines, fields, strict number parsing. */
#include "data_internal.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void rfd_lines_init(rfd_lines *it, const char *buf, size_t len) {
    it->p = buf;
    it->end = buf + len;
    it->lineno = 0;
}

int rfd_lines_next(rfd_lines *it, const char **s, size_t *len) {
    if (it->p >= it->end) return 0;
    const char *start = it->p;
    const char *nl = memchr(start, '\n', (size_t)(it->end - start));
    const char *stop = nl ? nl : it->end;
    it->p = nl ? nl + 1 : it->end;
    if (stop > start && stop[-1] == '\r') stop--;
    it->lineno++;
    *s = start;
    *len = (size_t)(stop - start);
    return 1;
}

static int is_sp(char c) { return c == ' ' || c == '\t' || c == '\r'; }

void rfd_trim(const char **s, size_t *len) {
    const char *a = *s, *b = *s + *len;
    while (a < b && is_sp(*a)) a++;
    while (b > a && is_sp(b[-1])) b--;
    *s = a;
    *len = (size_t)(b - a);
}

int rfd_is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (!is_sp(s[i])) return 0;
    return 1;
}

void rfd_fields_init(rfd_fields *f, const char *s, size_t len) {
    f->p = s;
    f->end = s + len;
    f->done = 0;
    f->bad_quote = 0;
}

int rfd_fields_next(rfd_fields *f, const char **s, size_t *len) {
    if (f->done) return 0;
    const char *a = f->p;
    while (a < f->end && is_sp(*a)) a++;
    const char *q = a;
    char quote = 0;
    if (q < f->end && (*q == '"' || *q == '\'')) {
        /* quoted field: find the closing quote (a backslash escapes the next character) */
        quote = *q;
        const char *c = q + 1;
        while (c < f->end && *c != quote) c += (*c == '\\' && c + 1 < f->end) ? 2 : 1;
        if (c >= f->end) {
            f->bad_quote = 1;
            quote = 0;
        } else {
            q = c + 1;
        }
    }
    const char *comma = memchr(q, ',', (size_t)(f->end - q));
    const char *stop = comma ? comma : f->end;
    if (comma) f->p = comma + 1;
    else f->done = 1;
    const char *fs = a;
    size_t fl = (size_t)(stop - a);
    rfd_trim(&fs, &fl);
    if (quote && fl >= 2 && fs[0] == quote && fs[fl - 1] == quote) {
        fs++;
        fl -= 2;
    }
    *s = fs;
    *len = fl;
    return 1;
}

int rfd_fields_count(const char *s, size_t len) {
    rfd_fields f;
    rfd_fields_init(&f, s, len);
    const char *fs;
    size_t fl;
    int n = 0;
    while (rfd_fields_next(&f, &fs, &fl)) n++;
    return n;
}

int rfd_parse_number(const char *s, size_t len, double *out) {
    char buf[128];
    *out = 0;
    if (len == 0) return RFD_NUM_EMPTY;
    if (len >= sizeof buf) return RFD_NUM_BAD;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        /* no hex floats, no embedded blanks or NULs */
        if (c == 'x' || c == 'X' || c == 0 || isspace(c)) return RFD_NUM_BAD;
    }
    memcpy(buf, s, len);
    buf[len] = 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + len) return RFD_NUM_BAD;
    if (errno == ERANGE && fabs(v) > 1.0) return RFD_NUM_RANGE;
    if (!isfinite(v)) return RFD_NUM_NONFINITE;
    if (fabs(v) > (double)FLT_MAX) return RFD_NUM_RANGE;
    *out = v;
    return RFD_NUM_OK;
}

void rfd_excerpt(char *dst, size_t cap, const char *s, size_t len) {
    if (!cap) return;
    size_t keep = len;
    int cut = 0;
    if (keep + 1 > cap) {
        keep = cap > 4 ? cap - 4 : 0;
        cut = 1;
    }
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        dst[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[keep] = 0;
    if (cut && cap > 4) memcpy(dst + keep, "...", 4);
}

const char *rfd_ext(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return (dot && dot != base) ? dot : "";
}

int rfd_has_ext(const char *path, const char *ext) { return strcasecmp(rfd_ext(path), ext) == 0; }
