/* renflow cert label: the one-page certificate label (SVG / PDF / PNG) and the HTML page that
 * compares several certificates side by side (issue 5).
 *
 * Both read a certificate JSON document (schema "renflow-certificate/1", renflow/cert.h,
 * docs/certificates.md) defensively: a field that is missing, null or of the wrong type is drawn
 * as "not measured" / "not rated", never an error; only a document that is not a certificate
 * (no object, no or another "schema") is refused.
 *
 * The label (an energy-label-like tall page, 595 pt wide): the model, its test data (file name,
 * SHA-256 prefix, rows x dimensions) and the date; the compound rating on the coloured A..E
 * scale with an arrow at the model's letter, the quality and resource ratings and the reference
 * model; one row per measurement (quality, cost, energy) with its value and unit, its letter and
 * the reference value it was rated against; energy marked "measured (RAPL ...)" or "ESTIMATED
 * (x W per core ...)"; the numerical guarantees with a tick or a red cross each (a failed one
 * also prints the "capped at E" note); a footer explaining the scale and the provenance
 * (library version, compiler, CPU, seed, model SHA-256). An SVG label carries its words in
 * <title>/<desc> (cairo draws text as glyph outlines), so it can be searched and read aloud.
 *
 * The comparison page (DIR/index.html, self-contained CSS; labels and the plot are image files
 * next to it): a warning when the certificates were measured on different test data (different
 * SHA-256), a table of the key measurements with letter badges and the best value of each row
 * highlighted, the quality-versus-energy Pareto plot (DIR/pareto.svg and pareto.png: test NLL
 * against energy per 1000 density evaluations; non-dominated models marked and joined; one front
 * per test data set; reference models drawn as squares), and every label (DIR/labels/). */
#ifndef RENFLOW_CERT_LABEL_H
#define RENFLOW_CERT_LABEL_H

struct cJSON;

#include "renflow/core.h"

/* Checks that cert is a certificate this code understands: a JSON object whose "schema" is
 * RF_CERT_SCHEMA_ID ("renflow-certificate/1"). name (a file name; may be NULL) starts the
 * error message. RF_EFORMAT otherwise. */
int rf_cert_check_schema(const struct cJSON *cert, const char *name, rf_err *e);

/* Reads and parses a certificate file (or DIR/certificate.json for a directory written by renflow
 * certify) and checks its schema; errors name the file (missing,
 * not JSON, not a certificate, another schema). Returns the document (cJSON_Delete) or NULL. */
struct cJSON *rf_cert_read(const char *path, rf_err *e);

/* Writes the one-page label of cert to path, the format from the extension (.svg, .pdf, .png;
 * anything else is RF_EARG naming the path). Atomic: a temporary file renamed into place. */
int rf_cert_label_write(const struct cJSON *cert, const char *path, rf_err *e);

/* The rf_cert_render_fn hook of rf_cert_write (renflow/cert.h): writes out_dir/label.svg,
 * out_dir/label.pdf and out_dir/label.png (out_dir must exist). ctx is unused (may be NULL). */
int rf_cert_label_render(const struct cJSON *cert, const char *out_dir, void *ctx, rf_err *e);

/* The comparison page of n >= 1 certificates: creates out_dir (and parents) and writes
 * out_dir/index.html, out_dir/pareto.svg, out_dir/pareto.png and out_dir/labels/<k>-<name>.svg.
 * names[k] (may be NULL, or an entry NULL) names certificate k in the page and in errors: give
 * the file it was read from; "DIR/certificate.json" is shown as "DIR", "a.json" as "a".
 * Each certificate is checked with rf_cert_check_schema (the error names names[k]). */
int rf_cert_compare_write(const struct cJSON *const *certs, const char *const *names, int n,
                          const char *out_dir, rf_err *e);

/* rf_cert_read on every path, then rf_cert_compare_write with the paths as names. */
int rf_cert_compare_files(const char *const *paths, int n, const char *out_dir, rf_err *e);

#endif
