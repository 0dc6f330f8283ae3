/* Reading a prepared data set directory (windows.npy, labels.npy, subjects.npy, manifest.json)
 * or plain arrays, and selecting rows subject-wise. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "renflow/dataset.h"

void rf_dataset_free(rf_dataset *d) {
    if (!d) return;
    rf_matrix_free(&d->x);
    free(d->labels);
    free(d->subjects);
    free(d->recordings);
    if (d->class_names) rf_strings_free(d->class_names, d->n_classes);
    cJSON_Delete(d->manifest);
    memset(d, 0, sizeof *d);
}

int rf_is_dataset_dir(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
    char p[4096];
    snprintf(p, sizeof p, "%s/manifest.json", path);
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int read_ints(const char *path, int **v, int *n, rf_err *e) {
    rf_ndarray a = {0};
    int rc = rf_npy_read(path, &a, e);
    if (!rc) rc = rf_labels_from_ndarray(&a, path, v, n, e);
    rf_ndarray_free(&a);
    return rc;
}

static int max_plus_one(const int *y, int n) {
    int m = -1;
    for (int i = 0; i < n; i++)
        if (y[i] > m) m = y[i];
    return m + 1;
}

/* class_names from the manifest (optional array of strings). */
static int manifest_classes(const cJSON *man, const char *path, rf_dataset *d, rf_err *e) {
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(man, "class_names");
    if (!cn) return RF_OK;
    if (!cJSON_IsArray(cn) || cJSON_GetArraySize(cn) < 1)
        return rf_err_set(e, RF_EFORMAT, "%s: field \"class_names\" must be a non-empty array of strings", path);
    const int C = cJSON_GetArraySize(cn);
    d->class_names = calloc((size_t)C, sizeof(char *));
    if (!d->class_names) return rf_err_set(e, RF_ENOMEM, "out of memory");
    d->n_classes = C;
    for (int c = 0; c < C; c++) {
        const cJSON *s = cJSON_GetArrayItem(cn, c);
        if (!cJSON_IsString(s))
            return rf_err_set(e, RF_EFORMAT, "%s: field \"class_names\"[%d] is not a string", path, c);
        if (!(d->class_names[c] = strdup(s->valuestring))) return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    return RF_OK;
}

int rf_dataset_read_dir(const char *dir, rf_dataset *d, rf_err *e) {
    memset(d, 0, sizeof *d);
    char p[4096];
    unsigned char *buf = NULL;
    size_t len = 0;
    rf_ndarray a = {0};
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    int rc = rf_read_file(p, &buf, &len, e);
    if (rc) return rc;
    d->manifest = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    if (!d->manifest || !cJSON_IsObject(d->manifest)) {
        rf_dataset_free(d);
        return rf_err_set(e, RF_EFORMAT, "%s: not a JSON object", p);
    }
    if ((rc = manifest_classes(d->manifest, p, d, e))) goto fail;
    snprintf(p, sizeof p, "%s/windows.npy", dir);
    if ((rc = rf_npy_read(p, &a, e))) goto fail;
    if (a.ndim == 3) {
        if (a.shape[1] > 100000 || a.shape[2] > 100000000) {
            rc = rf_err_set(e, RF_EFORMAT, "%s: window shape %lld x %lld is too large", p, (long long)a.shape[1], (long long)a.shape[2]);
            goto fail;
        }
        d->channels = (int)a.shape[1];
        d->length = (int)a.shape[2];
    } else if (a.ndim != 2) {
        rc = rf_err_set(e, RF_EFORMAT, "%s: expected windows x channels x samples (3-D) or rows x features (2-D), got %d-D", p, a.ndim);
        goto fail;
    }
    if ((rc = rf_matrix_from_ndarray(&a, p, &d->x, e))) goto fail;
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(d->manifest, "channels");
    if (d->channels && cJSON_IsArray(ch) && cJSON_GetArraySize(ch) != d->channels) {
        rc = rf_err_set(e, RF_EFORMAT, "%s/manifest.json: field \"channels\" lists %d channels but windows.npy has %d",
                        dir, cJSON_GetArraySize(ch), d->channels);
        goto fail;
    }
    int n;
    snprintf(p, sizeof p, "%s/subjects.npy", dir);
    if ((rc = read_ints(p, &d->subjects, &n, e))) goto fail;
    if (n != d->x.n) {
        rc = rf_err_set(e, RF_EFORMAT, "%s has %d entries but windows.npy has %d windows", p, n, d->x.n);
        goto fail;
    }
    struct stat st;
    snprintf(p, sizeof p, "%s/recordings.npy", dir);
    if (stat(p, &st) == 0) {
        if ((rc = read_ints(p, &d->recordings, &n, e))) goto fail;
        if (n != d->x.n) {
            rc = rf_err_set(e, RF_EFORMAT, "%s has %d entries but windows.npy has %d windows", p, n, d->x.n);
            goto fail;
        }
    }
    snprintf(p, sizeof p, "%s/labels.npy", dir);
    if (stat(p, &st) == 0) {
        if ((rc = read_ints(p, &d->labels, &n, e))) goto fail;
        if (n != d->x.n) {
            rc = rf_err_set(e, RF_EFORMAT, "%s has %d entries but windows.npy has %d windows", p, n, d->x.n);
            goto fail;
        }
        const int m = max_plus_one(d->labels, n);
        if (d->class_names && m > d->n_classes) {
            rc = rf_err_set(e, RF_EFORMAT, "%s: label %d but manifest.json names only %d classes", p, m - 1, d->n_classes);
            goto fail;
        }
        if (!d->class_names) d->n_classes = m;
    }
    rf_ndarray_free(&a);
    return RF_OK;
fail:
    rf_ndarray_free(&a);
    rf_dataset_free(d);
    return rc;
}

int rf_dataset_read_arrays(const char *data, const char *labels, const char *subjects, rf_dataset *d,
                           rf_err *e) {
    memset(d, 0, sizeof *d);
    int n, rc = rf_data_read_windows(data, &d->x, &d->channels, &d->length, e);
    if (!rc && labels && !(rc = rf_labels_read(labels, &d->labels, &n, e)) && n != d->x.n)
        rc = rf_err_set(e, RF_EFORMAT, "%s has %d labels but %s has %d rows", labels, n, data, d->x.n);
    if (!rc && subjects && !(rc = rf_labels_read(subjects, &d->subjects, &n, e)) && n != d->x.n)
        rc = rf_err_set(e, RF_EFORMAT, "%s has %d subject ids but %s has %d rows", subjects, n, data, d->x.n);
    if (rc) {
        rf_dataset_free(d);
        return rc;
    }
    if (d->labels) d->n_classes = max_plus_one(d->labels, d->x.n);
    return RF_OK;
}

int rf_dataset_select(const rf_dataset *d, const unsigned char *keep, rf_dataset *out, rf_err *e) {
    memset(out, 0, sizeof *out);
    int k = 0, rc = rf_matrix_select_rows(&d->x, keep, &out->x, e);
    if (rc) return rc;
    const size_t nk = (size_t)(out->x.n > 0 ? out->x.n : 1);
    if ((d->labels && !(out->labels = malloc(nk * sizeof(int)))) ||
        (d->recordings && !(out->recordings = malloc(nk * sizeof(int)))) ||
        (d->subjects && !(out->subjects = malloc(nk * sizeof(int))))) {
        rf_dataset_free(out);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < d->x.n; i++)
        if (keep[i]) {
            if (d->labels) out->labels[k] = d->labels[i];
            if (d->subjects) out->subjects[k] = d->subjects[i];
            if (d->recordings) out->recordings[k] = d->recordings[i];
            k++;
        }
    out->channels = d->channels;
    out->length = d->length;
    out->n_classes = d->n_classes;
    if (d->class_names) {
        out->class_names = calloc((size_t)d->n_classes, sizeof(char *));
        if (!out->class_names) {
            rf_dataset_free(out);
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        }
        for (int c = 0; c < d->n_classes; c++) out->class_names[c] = strdup(d->class_names[c]);
    }
    if (d->manifest) out->manifest = cJSON_Duplicate(d->manifest, 1);
    return RF_OK;
}

int rf_dataset_read(const char *path, const char *labels, const char *subjects, rf_dataset *d, rf_err *e) {
    if (!rf_is_dataset_dir(path)) return rf_dataset_read_arrays(path, labels, subjects, d, e);
    int rc = rf_dataset_read_dir(path, d, e);
    if (rc) return rc;
    if (labels || subjects) {
        /* explicit files override the directory's */
        int n, *v = NULL;
        if (labels) {
            if ((rc = rf_labels_read(labels, &v, &n, e))) goto fail;
            if (n != d->x.n) {
                free(v);
                rc = rf_err_set(e, RF_EFORMAT, "%s has %d labels but %s has %d windows", labels, n, path, d->x.n);
                goto fail;
            }
            free(d->labels);
            d->labels = v;
        }
        if (subjects) {
            if ((rc = rf_labels_read(subjects, &v, &n, e))) goto fail;
            if (n != d->x.n) {
                free(v);
                rc = rf_err_set(e, RF_EFORMAT, "%s has %d subject ids but %s has %d windows", subjects, n, path, d->x.n);
                goto fail;
            }
            free(d->subjects);
            d->subjects = v;
        }
    }
    return RF_OK;
fail:
    rf_dataset_free(d);
    return rc;
}

int rf_dataset_set_recordings(rf_dataset *d, const char *path, rf_err *e) {
    int *v = NULL, n = 0, rc = rf_labels_read(path, &v, &n, e);
    if (rc) return rc;
    if (n != d->x.n) {
        free(v);
        return rf_err_set(e, RF_EFORMAT, "%s has %d recording ids but the data have %d rows", path, n, d->x.n);
    }
    free(d->recordings);
    d->recordings = v;
    return RF_OK;
}
