/* renflow data: n-d arrays from .npy/.npz, CSV with a header row, ARFF, standardisation.
 * Every reader distrusts its input: it checks every header field against the file size and
 * names the file, field and value in its error. */
#ifndef RENFLOW_DATA_H
#define RENFLOW_DATA_H

#include "renflow/core.h"

typedef enum { RF_DT_F32 = 0, RF_DT_F64, RF_DT_I32, RF_DT_I64, RF_DT_U8, RF_DT_BOOL } rf_dtype;
const char *rf_dtype_name(rf_dtype t);
size_t rf_dtype_size(rf_dtype t);

#define RF_MAX_NDIM 8
typedef struct rf_ndarray {
    int ndim;
    int64_t shape[RF_MAX_NDIM];
    rf_dtype dtype;
    void *data; /* C order, native little-endian after reading */
} rf_ndarray;
int64_t rf_ndarray_count(const rf_ndarray *a);
void rf_ndarray_free(rf_ndarray *a);

/* .npy: version 1.0/2.0/3.0 headers; dtypes <f4 <f8 <i4 <i8 |u1 |b1; C order only.
 * `name` is used in messages (the file name, or "archive.npz:member"). */
int rf_npy_parse(const unsigned char *buf, size_t len, const char *name, rf_ndarray *out,
                 rf_err *e);
int rf_npy_read(const char *path, rf_ndarray *out, rf_err *e);
int rf_npy_write(const char *path, const rf_ndarray *a, rf_err *e); /* atomic */
/* .npz (zip, stored or deflated, via libzip): reads one member, e.g. "X" or "X.npy". */
int rf_npz_read(const char *path, const char *member, rf_ndarray *out, rf_err *e);

/* A row-major float32 matrix (n rows x d columns); owns x. */
typedef struct rf_matrix {
    int n, d;
    float *x;
} rf_matrix;
void rf_matrix_free(rf_matrix *m);
int rf_matrix_alloc(rf_matrix *m, int n, int d, rf_err *e);
/* Float arrays only (f32/f64); 1-D becomes n x 1, k-D becomes shape[0] x prod(rest).
 * Non-finite values are an error naming the row and column. */
int rf_matrix_from_ndarray(const rf_ndarray *a, const char *name, rf_matrix *m, rf_err *e);
/* Integer class labels from an integer (or integral float) 1-D array; values must be >= 0. */
int rf_labels_from_ndarray(const rf_ndarray *a, const char *name, int **labels, int *n,
                           rf_err *e);

/* CSV with a header row of column names; numbers only; ',' separated; blank lines ignored.
 * col_names (optional) receives d malloc'd strings (free with rf_strings_free). */
int rf_csv_read(const char *path, rf_matrix *m, char ***col_names, rf_err *e);
int rf_csv_write(const char *path, const rf_matrix *m, const char *const *col_names, rf_err *e);
void rf_strings_free(char **s, int n);

/* ARFF (Weka): NUMERIC attributes become columns; a nominal attribute named `class_attr`
 * (or the last nominal one when NULL) becomes integer labels (index into its value list). */
int rf_arff_read(const char *path, const char *class_attr, rf_matrix *x, int **labels,
                 rf_err *e);

/* Reads any supported data file by extension (.npy, .csv, .arff) into a float matrix. */
int rf_data_read(const char *path, rf_matrix *m, rf_err *e);
/* rf_data_read, and for a 3-D .npy/.npz array (windows x channels x samples) its window shape in
 * channels and length (0 and 0 for any other input). */
int rf_data_read_windows(const char *path, rf_matrix *m, int *channels, int *length, rf_err *e);
int rf_labels_read(const char *path, int **labels, int *n, rf_err *e); /* .npy or .csv */

/* ---- built-in synthetic data (seeded) ----
 * "ring":    2-D, 8 Gaussians (sd 0.2) evenly spaced on a circle of radius 2;
 * "moons":   2-D, two interleaved half circles with noise 0.08;
 * "mixture": D-dim mixture of 6 Gaussians with random means and full covariances (a fixed
 *            structure drawn from `structure_seed`, samples from rng). */
int rf_synthetic(const char *name, int n, int D, uint64_t structure_seed, rf_rng *rng, rf_matrix *out, rf_err *e);

/* ---- standardisation ----
 * robust = 1: shift = median, scale = IQR / 1.349 (falls back to std, then 1, when 0);
 * robust = 0: mean and standard deviation. */
int rf_standardizer_fit(const rf_matrix *m, int robust, float *shift, float *scale, rf_err *e);
/* Rows whose robust z-score |x - median| / (1.4826 MAD) exceeds `threshold` in any column.
 * keep[i] = 0 for outliers; returns the number of outliers. */
int rf_outlier_rows(const rf_matrix *m, double threshold, unsigned char *keep);
/* Copies the rows with keep[i] != 0 into out. */
int rf_matrix_select_rows(const rf_matrix *m, const unsigned char *keep, rf_matrix *out,
                          rf_err *e);
/* Seeded shuffled split: the first floor(frac*n) rows of the permutation go to b, the rest to a. */
int rf_matrix_split(const rf_matrix *m, double frac, rf_rng *rng, rf_matrix *a, rf_matrix *b,
                    rf_err *e);

#endif
