/* The recordings list of `renflow eeg prepare`: a CSV with a header naming the columns
 * file, subject, label and optionally hypnogram. Fields are plain (no quoting); blank lines and
 * lines starting with '#' are skipped. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "prep_internal.h"

void rf_prep_list_free(rf_prep_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->rows[i].file);
        free(l->rows[i].subject);
        free(l->rows[i].label);
        free(l->rows[i].hypnogram);
    }
    free(l->rows);
    memset(l, 0, sizeof *l);
}

static char *trim(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    char *t = s + strlen(s);
    while (t > s && isspace((unsigned char)t[-1])) *--t = 0;
    return s;
}

/* Splits line in place on commas into at most max fields; returns the count. */
static int split(char *line, char **f, int max) {
    int k = 0;
    char *p = line;
    while (k < max) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        f[k++] = trim(p);
        if (!c) break;
        p = c + 1;
    }
    return k;
}

/* dir of path + "/" + rel, unless rel is absolute. */
static char *join(const char *path, const char *rel) {
    if (rel[0] == '/') return strdup(rel);
    const char *slash = strrchr(path, '/');
    const size_t dl = slash ? (size_t)(slash - path + 1) : 0, rl = strlen(rel);
    char *r = malloc(dl + rl + 1);
    if (!r) return NULL;
    memcpy(r, path, dl);
    memcpy(r + dl, rel, rl + 1);
    return r;
}

int rf_prep_list_read(const char *path, rf_prep_list *l, rf_err *e) {
    memset(l, 0, sizeof *l);
    unsigned char *buf;
    size_t len;
    int rc = rf_read_file(path, &buf, &len, e);
    if (rc) return rc;
    if (memchr(buf, 0, len)) {
        free(buf);
        return rf_err_set(e, RF_EFORMAT, "%s: not a text file (contains NUL bytes)", path);
    }
    int col_file = -1, col_subj = -1, col_label = -1, col_hyp = -1, ncol = 0, lineno = 0, cap = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lineno++;
        char *t = trim(line);
        if (!*t || *t == '#') continue;
        if (strchr(t, '"')) {
            rc = rf_err_set(e, RF_EFORMAT, "%s line %d: quoted fields are not supported", path, lineno);
            goto fail;
        }
        char *f[16];
        const int nf = split(t, f, 16);
        if (ncol == 0) {
            ncol = nf;
            for (int k = 0; k < nf; k++) {
                if (!strcmp(f[k], "file")) col_file = k;
                else if (!strcmp(f[k], "subject")) col_subj = k;
                else if (!strcmp(f[k], "label")) col_label = k;
                else if (!strcmp(f[k], "hypnogram")) col_hyp = k;
                else {
                    rc = rf_err_set(e, RF_EFORMAT, "%s line %d: unknown column \"%s\" (expected file, subject, label, hypnogram)", path, lineno, f[k]);
                    goto fail;
                }
            }
            if (col_file < 0 || col_subj < 0) {
                rc = rf_err_set(e, RF_EFORMAT, "%s line %d: the header must name the columns file and subject (and label or hypnogram)", path, lineno);
                goto fail;
            }
            continue;
        }
        if (nf != ncol) {
            rc = rf_err_set(e, RF_EFORMAT, "%s line %d: %d fields, but the header has %d", path, lineno, nf, ncol);
            goto fail;
        }
        if (!*f[col_file] || !*f[col_subj]) {
            rc = rf_err_set(e, RF_EFORMAT, "%s line %d: field \"%s\" is empty", path, lineno, !*f[col_file] ? "file" : "subject");
            goto fail;
        }
        if (l->n == cap) {
            cap = cap ? 2 * cap : 16;
            rf_prep_row *r = realloc(l->rows, sizeof *r * (size_t)cap);
            if (!r) {
                rc = rf_err_set(e, RF_ENOMEM, "out of memory");
                goto fail;
            }
            l->rows = r;
        }
        rf_prep_row *r = &l->rows[l->n++];
        memset(r, 0, sizeof *r);
        r->line = lineno;
        r->file = join(path, f[col_file]);
        r->subject = strdup(f[col_subj]);
        r->label = strdup(col_label >= 0 ? f[col_label] : "");
        r->hypnogram = col_hyp >= 0 && *f[col_hyp] ? join(path, f[col_hyp]) : NULL;
        if (!r->file || !r->subject || !r->label || (col_hyp >= 0 && *f[col_hyp] && !r->hypnogram)) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto fail;
        }
    }
    free(buf);
    if (l->n == 0) return rf_err_set(e, RF_EFORMAT, "%s: no recordings listed", path);
    return RF_OK;
fail:
    free(buf);
    rf_prep_list_free(l);
    return rc;
}

int rf_name_index(char ***names, int *n, const char *name, int add, rf_err *e) {
    for (int i = 0; i < *n; i++)
        if (!strcmp((*names)[i], name)) return i;
    if (!add) return -1;
    char **r = realloc(*names, sizeof(char *) * (size_t)(*n + 1));
    if (!r) return -rf_err_set(e, RF_ENOMEM, "out of memory") - 1;
    *names = r;
    if (!(r[*n] = strdup(name))) return -rf_err_set(e, RF_ENOMEM, "out of memory") - 1;
    return (*n)++;
}
