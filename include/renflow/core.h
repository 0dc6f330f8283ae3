/* renflow core: errors, RNG, aligned memory, atomic files, hashing, timing.
 * Every fallible function returns an rf_status and fills an rf_err (which may be NULL). */
#ifndef RENFLOW_CORE_H
#define RENFLOW_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define RF_VERSION_MAJOR 0
#define RF_VERSION_MINOR 1
#define RF_VERSION_PATCH 0
#define RF_VERSION_STRING "0.1.0"

typedef enum {
    RF_OK = 0,
    RF_EARG = 1,         /* invalid argument or configuration */
    RF_EIO = 2,          /* file system error */
    RF_EFORMAT = 3,      /* malformed / unsupported input file */
    RF_ENOMEM = 4,       /* allocation failed */
    RF_ENONFINITE = 5,   /* NaN or Inf where a finite number is required */
    RF_EINTERRUPTED = 6, /* stopped by a signal (checkpoint written) */
    RF_ESTATE = 7        /* operation not valid in the current state */
} rf_status;

typedef struct rf_err {
    int code;
    char msg[1024];
} rf_err;

/* Sets e (if non-NULL) and returns code. */
int rf_err_set(rf_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prepends "context: " to an existing message; returns e->code (or code when e is NULL). */
int rf_err_prefix(rf_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void rf_err_clear(rf_err *e);
const char *rf_status_name(int code);

/* ---- RNG: xoshiro256** seeded by splitmix64; one per run, passed explicitly. ---- */
typedef struct rf_rng {
    uint64_t s[4];
    uint64_t seed;
} rf_rng;

void rf_rng_seed(rf_rng *r, uint64_t seed);
uint64_t rf_rng_u64(rf_rng *r);
double rf_rng_uniform(rf_rng *r);            /* [0, 1) */
double rf_rng_normal(rf_rng *r);             /* N(0, 1), polar Box-Muller without cached state */
uint64_t rf_rng_below(rf_rng *r, uint64_t n); /* uniform in [0, n), unbiased */
void rf_rng_shuffle(rf_rng *r, int *a, int n);
/* Derives an independent child stream (for per-component RNGs) without disturbing reproducibility. */
void rf_rng_fork(rf_rng *parent, rf_rng *child);

/* ---- memory: 64-byte aligned, zeroed float buffers ---- */
float *rf_floats(size_t n, rf_err *e);   /* aligned, zeroed; NULL + error on failure */
void *rf_zalloc(size_t bytes, rf_err *e); /* calloc with error message */
void rf_free(void *p);

/* ---- atomic files: write to PATH.tmp.<pid>, fsync, rename over PATH ---- */
typedef struct rf_afile rf_afile;
rf_afile *rf_afile_open(const char *path, rf_err *e);
FILE *rf_afile_fp(rf_afile *f);
int rf_afile_write(rf_afile *f, const void *buf, size_t n, rf_err *e);
int rf_afile_commit(rf_afile *f, rf_err *e); /* always frees f */
void rf_afile_abort(rf_afile *f);            /* removes the temp file, frees f */
/* Whole-file helpers. rf_read_file returns a malloc'd buffer (NUL-terminated, *len excludes NUL). */
int rf_read_file(const char *path, unsigned char **buf, size_t *len, rf_err *e);
int rf_write_file_atomic(const char *path, const void *buf, size_t len, rf_err *e);

/* ---- hashing (OpenSSL libcrypto) ---- */
void rf_sha256(const void *buf, size_t n, uint8_t out[32]);
int rf_sha256_file(const char *path, char hex[65], rf_err *e);
void rf_hex(const uint8_t *bytes, size_t n, char *out); /* out has 2n+1 chars */

/* ---- timing and resources ---- */
double rf_now(void);          /* monotonic seconds */
double rf_cpu_seconds(void);  /* process CPU time */
long rf_peak_rss_kb(void);    /* VmHWM from /proc/self/status, -1 if unknown */

/* ---- threads: n worker threads for renflow (OpenMP and the flow workspaces, which split each
 * batch into per-thread shards); OpenBLAS is set to 1 thread so the shards do not
 * oversubscribe the cores (0 = leave as is) ---- */
void rf_set_threads(int n);
int rf_get_threads(void);

/* Returns 1 when every value is finite. */
int rf_all_finite(const float *x, size_t n);

#endif
