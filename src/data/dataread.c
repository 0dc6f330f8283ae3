/* Reading data and label files by extension. */
#include "data_internal.h"

#include <stdlib.h>
#include <string.h>

#define RF_DATA_EXTS ".npy, .npz (member X), .csv, .arff"
#define RF_LABEL_EXTS ".npy, .npz (member y), .csv (one column), .arff (nominal class)"

static int from_npy_like(const char *path, const char *member, rf_ndarray *a, rf_err *e) {
    return member ? rf_npz_read(path, member, a, e) : rf_npy_read(path, a, e);
}

/* channels / length (may be NULL) receive the window shape of a 3-D array, else 0. */
static int data_read(const char *path, rf_matrix *m, int *channels, int *length, rf_err *e) {
    if (channels) *channels = 0;
    if (length) *length = 0;
    if (!m) return rf_err_set(e, RF_EARG, "rf_data_read: NULL matrix");
    memset(m, 0, sizeof *m);
    if (!path) return rf_err_set(e, RF_EARG, "rf_data_read: NULL path");
    if (rfd_has_ext(path, ".npy") || rfd_has_ext(path, ".npz")) {
        int npz = rfd_has_ext(path, ".npz");
        rf_ndarray a;
        int rc = from_npy_like(path, npz ? "X" : NULL, &a, e);
        if (rc != RF_OK) return rc;
        size_t nl = strlen(path) + 8;
        char *name = malloc(nl);
        if (!name) {
            rf_ndarray_free(&a);
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        }
        snprintf(name, nl, "%s%s", path, npz ? ":X.npy" : "");
        rc = rf_matrix_from_ndarray(&a, name, m, e);
        if (!rc && a.ndim == 3 && channels && length && a.shape[1] <= 100000 && a.shape[2] <= 100000000) {
            *channels = (int)a.shape[1];
            *length = (int)a.shape[2];
        }
        free(name);
        rf_ndarray_free(&a);
        return rc;
    }
    if (rfd_has_ext(path, ".csv")) return rf_csv_read(path, m, NULL, e);
    if (rfd_has_ext(path, ".arff")) return rf_arff_read(path, NULL, m, NULL, e);
    const char *ext = rfd_ext(path);
    return rf_err_set(e, RF_EARG, "%s: unsupported data file extension '%s'; supported: %s", path,
                      *ext ? ext : "(none)", RF_DATA_EXTS);
}

int rf_data_read(const char *path, rf_matrix *m, rf_err *e) {
    return data_read(path, m, NULL, NULL, e);
}

int rf_data_read_windows(const char *path, rf_matrix *m, int *channels, int *length, rf_err *e) {
    return data_read(path, m, channels, length, e);
}

int rf_labels_read(const char *path, int **labels, int *n, rf_err *e) {
    if (!labels || !n) return rf_err_set(e, RF_EARG, "rf_labels_read: NULL output");
    *labels = NULL;
    *n = 0;
    if (!path) return rf_err_set(e, RF_EARG, "rf_labels_read: NULL path");
    if (rfd_has_ext(path, ".npy") || rfd_has_ext(path, ".npz")) {
        int npz = rfd_has_ext(path, ".npz");
        rf_ndarray a;
        int rc = from_npy_like(path, npz ? "y" : NULL, &a, e);
        if (rc != RF_OK) return rc;
        size_t nl = strlen(path) + 8;
        char *name = malloc(nl);
        if (!name) {
            rf_ndarray_free(&a);
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        }
        snprintf(name, nl, "%s%s", path, npz ? ":y.npy" : "");
        rc = rf_labels_from_ndarray(&a, name, labels, n, e);
        free(name);
        rf_ndarray_free(&a);
        return rc;
    }
    if (rfd_has_ext(path, ".csv")) {
        rf_matrix m;
        int rc = rf_csv_read(path, &m, NULL, e);
        if (rc != RF_OK) return rc;
        if (m.d != 1) {
            int d = m.d;
            rf_matrix_free(&m);
            return rf_err_set(e, RF_EFORMAT,
                              "%s: a label CSV needs exactly one column, but this one has %d",
                              path, d);
        }
        rf_ndarray a = {.ndim = 1, .shape = {m.n}, .dtype = RF_DT_F32, .data = m.x};
        rc = rf_labels_from_ndarray(&a, path, labels, n, e);
        rf_matrix_free(&m);
        return rc;
    }
    if (rfd_has_ext(path, ".arff")) {
        rf_matrix m;
        int rc = rf_arff_read(path, NULL, &m, labels, e);
        if (rc != RF_OK) return rc;
        if (!*labels) {
            rf_matrix_free(&m);
            return rf_err_set(e, RF_EFORMAT, "%s: no nominal class attribute to read labels from",
                              path);
        }
        *n = m.n;
        rf_matrix_free(&m);
        return RF_OK;
    }
    const char *ext = rfd_ext(path);
    return rf_err_set(e, RF_EARG, "%s: unsupported label file extension '%s'; supported: %s", path,
                      *ext ? ext : "(none)", RF_LABEL_EXTS);
}
