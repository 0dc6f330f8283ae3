/* Private to the certificate label and comparison page (label_data.c, label.c, compare.c):
 * defensive accessors of the certificate JSON, number formatting in plain units, the metric
 * table, and the label's document model (everything the label shows, as text). */
#ifndef RF_CERT_LABEL_INTERNAL_H
#define RF_CERT_LABEL_INTERNAL_H

#include <stddef.h>

#include "../viz/draw.h"
#include "renflow/cert.h"
#include "renflow/cert_label.h"

struct cJSON;

/* ---- accessors: dotted paths ("rating.model.compound_rating"); NULL / NAN / -1 when a step is
 * missing or of another type ---- */
const struct cJSON *lbl_get(const struct cJSON *o, const char *path);
double lbl_num(const struct cJSON *o, const char *path);
const char *lbl_str(const struct cJSON *o, const char *path); /* non-empty string or NULL */
int lbl_bool(const struct cJSON *o, const char *path);        /* 1, 0, or -1 */
/* The rating letter 'A'..'E' at path, 0 when missing or not a letter. */
char lbl_letter(const struct cJSON *o, const char *path);

/* ---- formatting (UTF-8) ---- */
/* Replaces every byte that does not start a valid UTF-8 sequence by '?', in place. A truncated
 * multi-byte sequence at the end (from snprintf) counts as invalid. */
void lbl_utf8_clean(char *s);
/* v with `sig` significant digits, scientific as "3.1 × 10⁻⁷" for tiny or huge magnitudes. */
void lbl_fmt_sig(double v, int sig, char *buf, size_t n);
/* 12,345 (whole numbers below a million), 1.23 million, 4.5 billion */
void lbl_fmt_count(double v, char *buf, size_t n);
void lbl_fmt_seconds(double s, char *buf, size_t n);        /* 45.2 µs, 1.2 ms, 3.4 s, 2 min 5 s */
void lbl_fmt_bytes(double b, char *buf, size_t n);          /* 512 B, 3.4 kB, 2.1 MB, 1.5 GB */
void lbl_fmt_si(double v, const char *unit, char *buf, size_t n); /* 4.2 MFLOP, 35 mJ, 2.1 kJ */

/* ---- the metrics the label and the page show ---- */
typedef enum {
    LBL_F_NATS,    /* 12.34 nats */
    LBL_F_BITS,    /* 1.23 bits/dim */
    LBL_F_PERCENT, /* fraction as 87.3 % */
    LBL_F_PLAIN,   /* 0.712 */
    LBL_F_COUNT,   /* 12,345 */
    LBL_F_FLOP,    /* 4.2 MFLOP */
    LBL_F_SECONDS, /* 45 µs */
    LBL_F_BYTES,   /* 2.1 MB */
    LBL_F_RATE,    /* 120,000 per second */
    LBL_F_JOULE    /* J per example, shown per 1000 examples: 0.42 J */
} lbl_fmt_kind;

typedef enum { LBL_SEC_QUALITY = 0, LBL_SEC_COST = 1, LBL_SEC_ENERGY = 2, LBL_N_SEC = 3 } lbl_section_id;

typedef struct lbl_metric_desc {
    const char *key;        /* field of "metrics" */
    const char *rating_key; /* field whose rating / index stands for this row (NULL: key) */
    const char *title;      /* plain words */
    const char *sub;        /* what it means, a few words (may be NULL) */
    lbl_fmt_kind fmt;
    lbl_section_id sec;
    int higher_better;      /* for "best" in the comparison table */
    int classifier_only;    /* drawn only when the certificate has it */
} lbl_metric_desc;

extern const lbl_metric_desc lbl_metrics[];
extern const int lbl_n_metrics;

/* The value of metric desc d of `metrics` (an object of metric objects) formatted with its unit,
 * or "" when there is no finite value. */
void lbl_fmt_metric(const lbl_metric_desc *d, double v, char *buf, size_t n);

/* ---- certificate facts shared by the label and the page ---- */
/* Display name of the reference kind ("gaussian" -> "full-covariance Gaussian"). */
const char *lbl_ref_display(const char *kind);
const char *lbl_ref_short(const char *kind); /* "Gaussian", "mixture", "KDE" */
/* SHA-256 (hex) identifying the test data: the file's, or for a directory a SHA-256 over its
 * files' "name sha256" lines; *combined = 1 in that case. 0 when unknown. */
int lbl_data_sha(const struct cJSON *cert, char hex[65], int *combined);
/* Test data file name (basename), "" when unknown. */
void lbl_data_name(const struct cJSON *cert, char *buf, size_t n);
/* Model name and a one-line description ("normalizing flow (RealNVP), 6 layers, ..."). */
void lbl_model_name(const struct cJSON *cert, char *buf, size_t n);
void lbl_model_kind(const struct cJSON *cert, char *buf, size_t n);
/* energy: 1 measured, 0 estimated, -1 unknown; text in buf ("measured (RAPL, powercap)" or
 * "ESTIMATED (CPU time x 10 W per core)"). */
int lbl_energy_method(const struct cJSON *cert, char *buf, size_t n);
/* guarantees verdict: 1 every check passed, 2 none failed but *n_unverified (may be NULL) were
 * not verified, 0 one failed (*n_fail failing checks), -1 nothing checked. */
int lbl_guarantees_verdict(const struct cJSON *cert, int *n_fail, int *n_unverified);

/* ---- colours ---- */
viz_rgb lbl_letter_rgb(char letter);  /* A dark green .. E red; grey for anything else */
int lbl_letter_dark_text(char letter); /* 1: draw the letter in dark text on this colour */
void lbl_letter_hex(char letter, char out[8]);

/* ---- growing string (for SVG/HTML) ---- */
typedef struct lbl_buf {
    char *s;
    size_t len, cap;
    int oom;
} lbl_buf;
void lbl_buf_add(lbl_buf *b, const char *s, size_t n);
void lbl_buf_puts(lbl_buf *b, const char *s);
void lbl_buf_printf(lbl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lbl_buf_xml(lbl_buf *b, const char *s); /* XML/HTML-escaped */
void lbl_buf_free(lbl_buf *b);

/* ---- label drawing (label.c) ---- */
/* Draws the label at the top of cr (page width LBL_W) and returns its height; log (may be NULL)
 * receives every text drawn, one per line. */
#define LBL_W 595.0
double lbl_draw(cairo_t *cr, const struct cJSON *cert, lbl_buf *log);

/* mkdir -p */
int lbl_mkdir_p(const char *dir, rf_err *e);

#endif
