/* Private helpers shared by the data readers (src/data only; not part of the public API). */
#ifndef RF_DATA_INTERNAL_H
#define RF_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "renflow/data.h"

/* ---- dtypes and byte order ---- */
/* The .npy descr of a dtype ("<f4", "|u1", ...); "?" for an invalid value. */
const char *rfd_dtype_descr(rf_dtype t);
int rfd_dtype_valid(rf_dtype t);
int rfd_host_is_le(void);
void rfd_bswap(void *data, size_t count, size_t itemsize);
/* Formats a shape as Python does: "()", "(5,)", "(3, 4)". */
void rfd_fmt_shape(char *buf, size_t cap, int ndim, const int64_t *shape);
/* Element count of a shape, or -1 when the product overflows int64 (0 if any dim is 0). */
int64_t rfd_shape_count(int ndim, const int64_t *shape);

/* ---- .npy streaming loader (used for files, memory buffers and zip members) ----
 * A reader copies up to n bytes into buf and sets *got; it returns RF_OK, or an error (already
 * set in e) for a hard read failure. A short read is not an error: the loader reports it. */
typedef int (*rfd_read_fn)(void *ctx, void *buf, size_t n, size_t *got, rf_err *e);
int rfd_npy_load(rfd_read_fn rd, void *ctx, uint64_t total, const char *name, rf_ndarray *out,
                 rf_err *e);

/* ---- text helpers (CSV, ARFF) ---- */
typedef struct rfd_lines {
    const char *p, *end;
    int lineno; /* 1-based number of the line last returned */
} rfd_lines;
void rfd_lines_init(rfd_lines *it, const char *buf, size_t len);
/* Next line without its '\n' and trailing '\r'; returns 0 at the end of the buffer. */
int rfd_lines_next(rfd_lines *it, const char **s, size_t *len);
/* Trims spaces and tabs (and stray '\r') on both sides. */
void rfd_trim(const char **s, size_t *len);
int rfd_is_blank(const char *s, size_t len);

/* Comma-separated fields; a field wrapped in '...' or "..." may contain commas and has its
 * quotes removed. Fields are trimmed. */
typedef struct rfd_fields {
    const char *p, *end;
    int done;
    int bad_quote; /* set when a field opens a quote that is never closed */
} rfd_fields;
void rfd_fields_init(rfd_fields *f, const char *s, size_t len);
int rfd_fields_next(rfd_fields *f, const char **s, size_t *len);
/* Number of fields on a line (as rfd_fields_next would return them). */
int rfd_fields_count(const char *s, size_t len);

enum { RFD_NUM_OK = 0, RFD_NUM_EMPTY, RFD_NUM_BAD, RFD_NUM_NONFINITE, RFD_NUM_RANGE };
/* Parses all of s[0..len) as a decimal number representable as a finite float32. */
int rfd_parse_number(const char *s, size_t len, double *out);
/* A short, printable copy of s[0..len) for messages ("..." appended when cut). */
void rfd_excerpt(char *dst, size_t cap, const char *s, size_t len);
/* Case-insensitive file name extension test: rfd_has_ext("a/B.NPY", ".npy") == 1. */
int rfd_has_ext(const char *path, const char *ext);
/* The extension of path (from the last '.' of the last component), or "" when none. */
const char *rfd_ext(const char *path);

#endif
