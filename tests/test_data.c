/* Tests for the data module: .npy/.npz readers and writer (round trips, truncation, fuzzed
 * headers, unsupported layouts), CSV and ARFF readers, real data files from ../shared/data,
 * standardisation, outlier detection, row selection and the seeded split. */
#include "testutil.h"
#include "renflow/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

/* ---------- helpers ---------- */

static void expect_msg(const rf_err *e, const char *sub) {
    if (!strstr(e->msg, sub)) fail_msg("error message \"%s\" lacks \"%s\"", e->msg, sub);
}

static void expect_fail(int rc, const rf_err *e, int code, const char *sub1, const char *sub2) {
    if (rc != code)
        fail_msg("expected %s, got rc=%d (%s): %s", rf_status_name(code), rc, rf_status_name(rc),
                 e->msg);
    assert_int_equal(e->code, code);
    if (sub1) expect_msg(e, sub1);
    if (sub2) expect_msg(e, sub2);
    printf("  rejected as expected: %s\n", e->msg);
}

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, strlen(text), fp), strlen(text));
    assert_int_equal(fclose(fp), 0);
}

static void write_bytes(const char *path, const void *buf, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    if (n) assert_int_equal(fwrite(buf, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* An array of the given dtype and shape filled with a deterministic pattern. */
static void make_array(rf_ndarray *a, rf_dtype t, int ndim, const int64_t *shape) {
    memset(a, 0, sizeof *a);
    a->ndim = ndim;
    a->dtype = t;
    for (int i = 0; i < ndim; i++) a->shape[i] = shape[i];
    int64_t n = rf_ndarray_count(a);
    size_t isz = rf_dtype_size(t);
    a->data = malloc((size_t)n * isz + 1);
    assert_non_null(a->data);
    for (int64_t i = 0; i < n; i++) {
        switch (t) {
        case RF_DT_F32: ((float *)a->data)[i] = (float)i * 0.37f - 5.5f; break;
        case RF_DT_F64: ((double *)a->data)[i] = (double)i * 1.0e-3 - 1.0 / 3.0; break;
        case RF_DT_I32: ((int32_t *)a->data)[i] = (int32_t)(i * 7919 - 100000); break;
        case RF_DT_I64: ((int64_t *)a->data)[i] = (int64_t)i * 3000000000LL - 7; break;
        case RF_DT_U8: ((uint8_t *)a->data)[i] = (uint8_t)(i * 31); break;
        case RF_DT_BOOL: ((uint8_t *)a->data)[i] = (uint8_t)(i % 3 == 0); break;
        }
    }
}

/* A small valid .npy (written by rf_npy_write) as bytes. */
static void small_npy(unsigned char **buf, size_t *len, const char *tag) {
    char path[256];
    rf_test_tmp(path, sizeof path, tag);
    rf_ndarray a;
    int64_t shape[2] = {3, 4};
    make_array(&a, RF_DT_F64, 2, shape);
    rf_err e = {0};
    assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
    rf_ndarray_free(&a);
    assert_int_equal(rf_read_file(path, buf, len, &e), RF_OK);
    unlink(path);
}

/* Builds a .npy in memory from a header dict text (v1.0, or major 2/3 with a 4-byte length). */
static unsigned char *build_npy(int major, const char *dict, const void *data, size_t nbytes,
                                size_t *len) {
    size_t pre = major == 1 ? 10 : 12;
    size_t dl = strlen(dict);
    size_t hlen = dl + 1;
    hlen += (64 - (pre + hlen) % 64) % 64;
    *len = pre + hlen + nbytes;
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = 0;
    if (major == 1) {
        b[8] = (unsigned char)(hlen & 0xff);
        b[9] = (unsigned char)(hlen >> 8);
    } else {
        for (int i = 0; i < 4; i++) b[8 + i] = (unsigned char)(hlen >> (8 * i));
    }
    memcpy(b + pre, dict, dl);
    memset(b + pre + dl, ' ', hlen - dl - 1);
    b[pre + hlen - 1] = '\n';
    if (nbytes) memcpy(b + pre + hlen, data, nbytes);
    return b;
}

/* Parses from an exact-size heap copy, so AddressSanitizer sees any read past the end. */
static int parse_exact(const unsigned char *buf, size_t len, rf_ndarray *out, rf_err *e) {
    unsigned char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, buf, len);
    int rc = rf_npy_parse(len ? copy : NULL, len, "fuzz.npy", out, e);
    free(copy);
    return rc;
}

/* ---------- .npy ---------- */

static void test_npy_roundtrip(void **state) {
    (void)state;
    static const rf_dtype types[] = {RF_DT_F32, RF_DT_F64, RF_DT_I32,
                                     RF_DT_I64, RF_DT_U8,  RF_DT_BOOL};
    static const int64_t shapes[][3] = {{7, 0, 0}, {5, 3, 0}, {2, 3, 4}, {0, 0, 0}, {4, 0, 0}};
    static const int ndims[] = {1, 2, 3, 1, 0};
    char path[256];
    rf_test_tmp(path, sizeof path, "roundtrip.npy");
    int cases = 0;
    for (size_t t = 0; t < sizeof types / sizeof *types; t++) {
        for (size_t s = 0; s < sizeof ndims / sizeof *ndims; s++) {
            rf_ndarray a, b;
            rf_err e = {0};
            make_array(&a, types[t], ndims[s], shapes[s]);
            assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
            /* numpy's layout: version 1.0, header padded to 64 bytes, ending in '\n' */
            unsigned char *raw;
            size_t len;
            assert_int_equal(rf_read_file(path, &raw, &len, &e), RF_OK);
            assert_memory_equal(raw, "\x93NUMPY\x01\x00", 8);
            size_t hlen = raw[8] | ((size_t)raw[9] << 8);
            assert_int_equal((10 + hlen) % 64, 0);
            assert_int_equal(raw[10 + hlen - 1], '\n');
            int64_t n = rf_ndarray_count(&a);
            assert_int_equal(len, 10 + hlen + (size_t)n * rf_dtype_size(a.dtype));
            free(raw);
            int rc = rf_npy_read(path, &b, &e);
            if (rc != RF_OK) fail_msg("%s", e.msg);
            assert_int_equal(b.ndim, a.ndim);
            assert_int_equal(b.dtype, a.dtype);
            for (int i = 0; i < a.ndim; i++) assert_int_equal(b.shape[i], a.shape[i]);
            assert_int_equal(rf_ndarray_count(&b), n);
            if (n) assert_memory_equal(a.data, b.data, (size_t)n * rf_dtype_size(a.dtype));
            rf_ndarray_free(&a);
            rf_ndarray_free(&b);
            assert_null(b.data);
            cases++;
        }
    }
    printf("  %d dtype x shape round trips (f4 f8 i4 i8 u1 b1; 1-D, 2-D, 3-D, empty, 0-D)\n",
           cases);
    unlink(path);

    /* the exact header numpy writes */
    rf_ndarray a;
    int64_t shape[2] = {3, 4};
    make_array(&a, RF_DT_F64, 2, shape);
    rf_err e = {0};
    assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
    rf_ndarray_free(&a);
    unsigned char *raw;
    size_t len;
    assert_int_equal(rf_read_file(path, &raw, &len, &e), RF_OK);
    const char *want = "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }";
    assert_memory_equal(raw + 10, want, strlen(want));
    for (size_t i = 10 + strlen(want); i < 127; i++) assert_int_equal(raw[i], ' ');
    free(raw);
    unlink(path);
}

/* A 3-D array of windows keeps its shape (channels x samples) when read as a data set; a 2-D one
 * is plain feature vectors. */
static void test_windows_shape(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "windows.npy");
    rf_err e = {0};
    for (int ndim = 2; ndim <= 3; ndim++) {
        rf_ndarray a;
        const int64_t shape3[3] = {5, 3, 4}, shape2[2] = {5, 12};
        make_array(&a, RF_DT_F32, ndim, ndim == 3 ? shape3 : shape2);
        assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
        rf_dataset d;
        assert_int_equal(rf_dataset_read(path, NULL, NULL, &d, &e), RF_OK);
        assert_int_equal(d.x.n, 5);
        assert_int_equal(d.x.d, 12);
        assert_int_equal(d.channels, ndim == 3 ? 3 : 0);
        assert_int_equal(d.length, ndim == 3 ? 4 : 0);
        assert_memory_equal(d.x.x, a.data, sizeof(float) * 60);
        rf_dataset_free(&d);
        rf_ndarray_free(&a);
    }
    unlink(path);
}

static void test_npy_versions_and_markers(void **state) {
    (void)state;
    double vals[6] = {1, 2, 3, 4, 5, 6.5};
    for (int major = 1; major <= 3; major++) {
        size_t len;
        unsigned char *b = build_npy(
            major, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", vals,
            sizeof vals, &len);
        rf_ndarray a;
        rf_err e = {0};
        int rc = rf_npy_parse(b, len, "v.npy", &a, &e);
        if (rc != RF_OK) fail_msg("version %d.0: %s", major, e.msg);
        assert_int_equal(a.ndim, 2);
        assert_true(((double *)a.data)[5] == 6.5);
        rf_ndarray_free(&a);
        free(b);
    }
    /* '=' (native), '|' and key order / quoting variants are accepted on little-endian */
    static const char *ok[] = {
        "{'descr': '=f8', 'fortran_order': False, 'shape': (6,), }",
        "{\"shape\": (6,), \"descr\": \"<f8\", \"fortran_order\": False}",
        "{'fortran_order': False, 'shape': (6L,), 'descr': '<f8'}",
        "{'descr': '<f8', 'fortran_order': True, 'shape': (6,), }", /* 1-D: same in either order */
        "{'descr': '<f8', 'fortran_order': True, 'shape': (1, 6), }",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        size_t len;
        unsigned char *b = build_npy(1, ok[i], vals, sizeof vals, &len);
        rf_ndarray a;
        rf_err e = {0};
        int rc = rf_npy_parse(b, len, "ok.npy", &a, &e);
        if (rc != RF_OK) fail_msg("%s: %s", ok[i], e.msg);
        assert_int_equal(rf_ndarray_count(&a), 6);
        rf_ndarray_free(&a);
        free(b);
    }
    unsigned char u8s[4] = {1, 0, 2, 255};
    static const char *ok1[] = {"{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }",
                                "{'descr': '<u1', 'fortran_order': False, 'shape': (4,), }",
                                "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }"};
    for (size_t i = 0; i < 3; i++) {
        size_t len;
        unsigned char *b = build_npy(1, ok1[i], u8s, sizeof u8s, &len);
        rf_ndarray a;
        rf_err e = {0};
        assert_int_equal(rf_npy_parse(b, len, "u1.npy", &a, &e), RF_OK);
        if (a.dtype == RF_DT_BOOL) assert_int_equal(((uint8_t *)a.data)[3], 1); /* normalised */
        else assert_int_equal(((uint8_t *)a.data)[3], 255);
        rf_ndarray_free(&a);
        free(b);
    }
}

static void test_npy_rejects(void **state) {
    (void)state;
    double vals[6] = {0};
    static const struct {
        const char *dict;
        size_t nbytes;
        const char *sub1, *sub2;
    } bad[] = {
        {"{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }", 48, "fortran_order", "(2, 3)"},
        {"{'descr': '>f8', 'fortran_order': False, 'shape': (2, 3), }", 48, "'>f8'", "big-endian"},
        {"{'descr': '>i4', 'fortran_order': False, 'shape': (2, 3), }", 24, "'>i4'", "big-endian"},
        {"{'descr': '<c16', 'fortran_order': False, 'shape': (3,), }", 48, "'<c16'", "descr"},
        {"{'descr': '<U5', 'fortran_order': False, 'shape': (2,), }", 40, "'<U5'", "descr"},
        {"{'descr': '|O', 'fortran_order': False, 'shape': (6,), }", 48, "'|O'", "object"},
        {"{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }", 12, "'<f2'", NULL},
        {"{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (6,), }", 48, "structured", NULL},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 40, "shape (2, 3)", "needs 48"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }", 47, "needs 48", "has 47"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 48, "needs 32", "has 48"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (2, -3), }", 48, "negative", "-3"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", 48,
         "shape", "too many"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999,), }", 48,
         "shape", "too large"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,6), }", 48, "shape",
         "more than 8"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (6), }", 48, "'shape'", "tuple"},
        {"{'descr': '<f8', 'fortran_order': False, }", 48, "lacks the key", "shape"},
        {"{'descr': '<f8', 'shape': (6,), }", 48, "lacks the key", "fortran_order"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), 'extra': 1}", 48, "'extra'", NULL},
        {"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (6,)}", 48,
         "duplicate", "descr"},
        {"{'descr': '<f8', 'fortran_order': 0, 'shape': (6,), }", 48, "fortran_order", "True or False"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (6,), } x", 48, "unexpected text", NULL},
        {"['descr', '<f8']", 48, "expected '{'", NULL},
        {"{'descr': '<f8' 'fortran_order': False, 'shape': (6,), }", 48, "expected ','", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t len;
        unsigned char *zeros = calloc(1, bad[i].nbytes + 1);
        unsigned char *b = build_npy(1, bad[i].dict, zeros, bad[i].nbytes, &len);
        rf_ndarray a;
        rf_err e = {0};
        int rc = parse_exact(b, len, &a, &e);
        expect_fail(rc, &e, RF_EFORMAT, bad[i].sub1, bad[i].sub2);
        expect_msg(&e, "fuzz.npy");
        assert_null(a.data);
        free(b);
        free(zeros);
    }
    (void)vals;
    /* bad magic and unsupported versions */
    size_t len;
    unsigned char *b = build_npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (0,), }",
                                 NULL, 0, &len);
    rf_ndarray a;
    rf_err e = {0};
    b[1] = 'n';
    expect_fail(parse_exact(b, len, &a, &e), &e, RF_EFORMAT, "not a .npy file", "magic");
    b[1] = 'N';
    b[6] = 4;
    expect_fail(parse_exact(b, len, &a, &e), &e, RF_EFORMAT, "version 4.0", NULL);
    b[6] = 1;
    b[7] = 1;
    expect_fail(parse_exact(b, len, &a, &e), &e, RF_EFORMAT, "version 1.1", NULL);
    b[7] = 0;
    b[8] = 0xff;
    b[9] = 0xff;
    expect_fail(parse_exact(b, len, &a, &e), &e, RF_EFORMAT, "header length field says 65535",
                NULL);
    free(b);
    /* missing file and a directory */
    expect_fail(rf_npy_read("/nonexistent/dir/x.npy", &a, &e), &e, RF_EIO, "/nonexistent/dir/x.npy",
                "cannot open");
    expect_fail(rf_npy_read("/tmp", &a, &e), &e, RF_EIO, "not a regular file", NULL);
}

static void test_npy_truncated_prefixes(void **state) {
    (void)state;
    unsigned char *buf;
    size_t len;
    small_npy(&buf, &len, "small.npy");
    char path[256];
    rf_test_tmp(path, sizeof path, "prefix.npy");
    for (size_t l = 0; l < len; l++) {
        rf_ndarray a;
        rf_err e = {0};
        int rc = parse_exact(buf, l, &a, &e);
        if (rc != RF_EFORMAT) fail_msg("prefix of %zu/%zu bytes: rc %d %s", l, len, rc, e.msg);
        assert_null(a.data);
        write_bytes(path, buf, l);
        rc = rf_npy_read(path, &a, &e);
        if (rc != RF_EFORMAT) fail_msg("file prefix of %zu/%zu bytes: rc %d %s", l, len, rc, e.msg);
        assert_non_null(strstr(e.msg, path));
    }
    /* the full buffer parses; one extra byte is rejected */
    rf_ndarray a;
    rf_err e = {0};
    assert_int_equal(parse_exact(buf, len, &a, &e), RF_OK);
    rf_ndarray_free(&a);
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    expect_fail(parse_exact(longer, len + 1, &a, &e), &e, RF_EFORMAT, "trailing", NULL);
    free(longer);
    printf("  all %zu truncated prefixes rejected (buffer and file)\n", len);
    unlink(path);
    free(buf);
}

static void test_npy_header_fuzz(void **state) {
    (void)state;
    unsigned char *buf;
    size_t len;
    small_npy(&buf, &len, "fuzz.npy");
    size_t hend = 10 + (buf[8] | ((size_t)buf[9] << 8));
    rf_rng r;
    rf_rng_seed(&r, 1234);
    unsigned char *m = malloc(len);
    int ok = 0, rejected = 0;
    const int iters = 20000;
    for (int it = 0; it < iters; it++) {
        memcpy(m, buf, len);
        int flips = 1 + (int)rf_rng_below(&r, 4);
        for (int k = 0; k < flips; k++) {
            size_t pos = (size_t)rf_rng_below(&r, hend);
            if (rf_rng_below(&r, 2)) m[pos] ^= (unsigned char)(1u << rf_rng_below(&r, 8));
            else m[pos] = (unsigned char)rf_rng_below(&r, 256);
        }
        /* sometimes also cut the buffer */
        size_t l = rf_rng_below(&r, 8) == 0 ? (size_t)rf_rng_below(&r, len + 1) : len;
        rf_ndarray a;
        rf_err e = {0};
        int rc = parse_exact(m, l, &a, &e);
        if (rc == RF_OK) {
            ok++;
            assert_true(a.ndim >= 0 && a.ndim <= RF_MAX_NDIM);
            int64_t n = rf_ndarray_count(&a);
            assert_true((uint64_t)n * rf_dtype_size(a.dtype) <= l);
            rf_ndarray_free(&a);
        } else {
            rejected++;
            assert_int_equal(rc, RF_EFORMAT);
            assert_true(strlen(e.msg) > 10);
            assert_null(a.data);
        }
    }
    printf("  %d random header corruptions: %d rejected, %d still valid arrays\n", iters, rejected,
           ok);
    free(m);
    free(buf);
}

static void test_npy_write_atomic(void **state) {
    (void)state;
    char dir[256], path[512];
    rf_test_tmp(dir, sizeof dir, "no-such-dir");
    snprintf(path, sizeof path, "%s/sub/x.npy", dir);
    rf_ndarray a;
    int64_t shape[2] = {2, 2};
    make_array(&a, RF_DT_F32, 2, shape);
    rf_err e = {0};
    expect_fail(rf_npy_write(path, &a, &e), &e, RF_EIO, path, NULL);
    struct stat st;
    assert_int_not_equal(stat(dir, &st), 0); /* nothing was created */

    /* overwrite in a real directory: no temporary files left, old content replaced */
    rf_test_tmp(dir, sizeof dir, "atomic-dir");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/x.npy", dir);
    assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
    ((float *)a.data)[0] = 42.0f;
    assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
    /* a failed write (invalid array) leaves the existing file untouched */
    rf_ndarray bad = a;
    bad.ndim = RF_MAX_NDIM + 1;
    expect_fail(rf_npy_write(path, &bad, &e), &e, RF_EARG, NULL, NULL);
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    int entries = 0;
    struct dirent *de;
    while ((de = readdir(dp)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            entries++;
            assert_string_equal(de->d_name, "x.npy");
        }
    closedir(dp);
    assert_int_equal(entries, 1);
    rf_ndarray b;
    assert_int_equal(rf_npy_read(path, &b, &e), RF_OK);
    assert_true(((float *)b.data)[0] == 42.0f);
    rf_ndarray_free(&b);
    rf_ndarray_free(&a);
    unlink(path);
    rmdir(dir);
}

/* ---------- .npz ---------- */

static void make_npz(const char *path, const char *member, const void *buf, size_t len,
                     int store) {
    int err = 0;
    zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    assert_non_null(za);
    zip_source_t *src = zip_source_buffer(za, buf, len, 0);
    assert_non_null(src);
    zip_int64_t idx = zip_file_add(za, member, src, ZIP_FL_OVERWRITE);
    assert_true(idx >= 0);
    assert_int_equal(zip_set_file_compression(za, (zip_uint64_t)idx,
                                              store ? ZIP_CM_STORE : ZIP_CM_DEFLATE, 0),
                     0);
    assert_int_equal(zip_close(za), 0);
}

static void test_npz_synthetic(void **state) {
    (void)state;
    unsigned char *buf;
    size_t len;
    small_npy(&buf, &len, "member.npy");
    char path[256];
    rf_test_tmp(path, sizeof path, "syn.npz");
    for (int store = 0; store <= 1; store++) {
        make_npz(path, "X.npy", buf, len, store);
        rf_ndarray a;
        rf_err e = {0};
        int rc = rf_npz_read(path, "X", &a, &e);
        if (rc != RF_OK) fail_msg("%s", e.msg);
        assert_int_equal(a.ndim, 2);
        assert_int_equal(a.shape[0], 3);
        assert_int_equal(a.shape[1], 4);
        rf_ndarray_free(&a);
        assert_int_equal(rf_npz_read(path, "X.npy", &a, &e), RF_OK);
        rf_ndarray_free(&a);
        expect_fail(rf_npz_read(path, "y", &a, &e), &e, RF_EFORMAT, path, "'y'");
        expect_msg(&e, "X.npy"); /* lists the members that exist */
    }
    /* a truncated member inside a valid zip */
    make_npz(path, "X.npy", buf, len - 5, 0);
    rf_ndarray a;
    rf_err e = {0};
    expect_fail(rf_npz_read(path, "X", &a, &e), &e, RF_EFORMAT, ":X.npy", "needs 96");
    /* not a zip, and a missing archive */
    write_bytes(path, buf, len);
    expect_fail(rf_npz_read(path, "X", &a, &e), &e, RF_EFORMAT, path, "'X'");
    unlink(path);
    expect_fail(rf_npz_read(path, "X", &a, &e), &e, RF_EIO, path, "'X'");
    free(buf);
}

/* ---------- fuzzed text and archives: errors, never crashes ---------- */

static void mutate(rf_rng *r, unsigned char *b, size_t len) {
    static const unsigned char pool[] = ",\n\r\"'%?{}@ .-e0123456789aZ\t";
    int k = 1 + (int)rf_rng_below(r, 4);
    for (int i = 0; i < k && len; i++) {
        size_t pos = (size_t)rf_rng_below(r, len);
        b[pos] = rf_rng_below(r, 3) ? pool[rf_rng_below(r, sizeof pool - 1)]
                                    : (unsigned char)rf_rng_below(r, 256);
    }
}

static void test_text_fuzz(void **state) {
    (void)state;
    static const char *csv = "a,b,c\n1,2.5,-3\n\n4e2,5,6\r\n7,8,9\n";
    static const char *arff = "% c\n@relation r\n@attribute a numeric\n@attribute 'b b' real\n"
                              "@attribute cls {x,'y'}\n@data\n1,2,x\n3,4,'y'\n% end\n5,6,x\n";
    char path[256];
    rf_rng r;
    rf_rng_seed(&r, 555);
    int ok[2] = {0, 0}, bad[2] = {0, 0};
    for (int kind = 0; kind < 2; kind++) {
        const char *src = kind ? arff : csv;
        rf_test_tmp(path, sizeof path, kind ? "fz.arff" : "fz.csv");
        size_t len = strlen(src);
        unsigned char *b = malloc(len);
        for (int it = 0; it < 3000; it++) {
            memcpy(b, src, len);
            mutate(&r, b, len);
            size_t l = rf_rng_below(&r, 6) == 0 ? (size_t)rf_rng_below(&r, len + 1) : len;
            write_bytes(path, b, l);
            rf_matrix m;
            int *lab = NULL;
            rf_err e = {0};
            int rc = kind ? rf_arff_read(path, NULL, &m, &lab, &e) : rf_csv_read(path, &m, NULL, &e);
            if (rc == RF_OK) {
                ok[kind]++;
                assert_true(m.n > 0 && m.d > 0);
                assert_true(rf_all_finite(m.x, (size_t)m.n * (size_t)m.d));
                if (lab)
                    for (int i = 0; i < m.n; i++) assert_true(lab[i] == 0 || lab[i] == 1);
                free(lab);
                rf_matrix_free(&m);
            } else {
                bad[kind]++;
                assert_true(rc == RF_EFORMAT || rc == RF_ENONFINITE);
                expect_msg(&e, path);
                assert_null(m.x);
                assert_null(lab);
            }
        }
        free(b);
        unlink(path);
    }
    printf("  mutated CSV: %d rejected, %d valid; mutated ARFF: %d rejected, %d valid\n", bad[0],
           ok[0], bad[1], ok[1]);

    /* corrupted .npz archives */
    unsigned char *npy;
    size_t nlen;
    small_npy(&npy, &nlen, "fz-member.npy");
    rf_test_tmp(path, sizeof path, "fz.npz");
    make_npz(path, "X.npy", npy, nlen, 0);
    unsigned char *zipb;
    size_t zlen;
    rf_err e = {0};
    assert_int_equal(rf_read_file(path, &zipb, &zlen, &e), RF_OK);
    unsigned char *zb = malloc(zlen);
    int zok = 0, zbad = 0;
    for (int it = 0; it < 2000; it++) {
        memcpy(zb, zipb, zlen);
        int k = 1 + (int)rf_rng_below(&r, 3);
        for (int i = 0; i < k; i++) zb[rf_rng_below(&r, zlen)] = (unsigned char)rf_rng_below(&r, 256);
        write_bytes(path, zb, zlen);
        rf_ndarray a;
        int rc = rf_npz_read(path, "X", &a, &e);
        if (rc == RF_OK) {
            zok++;
            /* libzip checks the CRC, so whatever is still readable is the original array */
            assert_int_equal(rf_ndarray_count(&a), 12);
            assert_memory_equal(a.data, npy + 128, 96);
            rf_ndarray_free(&a);
        } else {
            zbad++;
            expect_msg(&e, path);
            assert_null(a.data);
        }
    }
    printf("  corrupted .npz: %d rejected, %d still readable\n", zbad, zok);
    free(zb);
    free(zipb);
    free(npy);
    unlink(path);
}

/* ---------- conversions ---------- */

static void test_matrix_from_ndarray(void **state) {
    (void)state;
    rf_matrix m;
    rf_err e = {0};
    rf_ndarray a;
    int64_t s1[1] = {5}, s3[3] = {2, 3, 4}, s0[2] = {0, 3};
    make_array(&a, RF_DT_F64, 1, s1);
    assert_int_equal(rf_matrix_from_ndarray(&a, "a.npy", &m, &e), RF_OK);
    assert_int_equal(m.n, 5);
    assert_int_equal(m.d, 1);
    assert_true(m.x[4] == (float)(4e-3 - 1.0 / 3.0));
    rf_matrix_free(&m);
    ((double *)a.data)[3] = NAN;
    expect_fail(rf_matrix_from_ndarray(&a, "a.npy", &m, &e), &e, RF_ENONFINITE, "row 3",
                "column 0");
    ((double *)a.data)[3] = 1e300;
    expect_fail(rf_matrix_from_ndarray(&a, "a.npy", &m, &e), &e, RF_ENONFINITE, "row 3",
                "overflows float32");
    assert_null(m.x);
    rf_ndarray_free(&a);

    make_array(&a, RF_DT_F32, 3, s3);
    assert_int_equal(rf_matrix_from_ndarray(&a, "b.npy", &m, &e), RF_OK);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.d, 12);
    assert_memory_equal(m.x, a.data, sizeof(float) * 24);
    rf_matrix_free(&m);
    ((float *)a.data)[13] = -INFINITY;
    expect_fail(rf_matrix_from_ndarray(&a, "b.npy", &m, &e), &e, RF_ENONFINITE, "row 1",
                "column 1");
    rf_ndarray_free(&a);

    make_array(&a, RF_DT_I64, 1, s1);
    expect_fail(rf_matrix_from_ndarray(&a, "y.npy", &m, &e), &e, RF_EFORMAT,
                "<i8 (int64) is not a float array", "float32 or float64");
    rf_ndarray_free(&a);
    make_array(&a, RF_DT_F32, 2, s0);
    expect_fail(rf_matrix_from_ndarray(&a, "empty.npy", &m, &e), &e, RF_EFORMAT, "(0, 3)",
                "no data");
    rf_ndarray_free(&a);
}

static void test_labels_from_ndarray(void **state) {
    (void)state;
    int *lab, n;
    rf_err e = {0};
    rf_ndarray a;
    int64_t s[1] = {6};
    make_array(&a, RF_DT_I32, 1, s);
    for (int i = 0; i < 6; i++) ((int32_t *)a.data)[i] = i % 3;
    assert_int_equal(rf_labels_from_ndarray(&a, "l.npy", &lab, &n, &e), RF_OK);
    assert_int_equal(n, 6);
    assert_int_equal(lab[4], 1);
    free(lab);
    ((int32_t *)a.data)[4] = -2;
    expect_fail(rf_labels_from_ndarray(&a, "l.npy", &lab, &n, &e), &e, RF_EFORMAT, "index 4",
                "-2");
    assert_null(lab);
    rf_ndarray_free(&a);

    make_array(&a, RF_DT_F64, 1, s);
    for (int i = 0; i < 6; i++) ((double *)a.data)[i] = (double)(5 - i);
    assert_int_equal(rf_labels_from_ndarray(&a, "l.npy", &lab, &n, &e), RF_OK);
    assert_int_equal(lab[0], 5);
    free(lab);
    ((double *)a.data)[2] = 1.5;
    expect_fail(rf_labels_from_ndarray(&a, "l.npy", &lab, &n, &e), &e, RF_EFORMAT, "index 2",
                "1.5");
    ((double *)a.data)[2] = -1;
    expect_fail(rf_labels_from_ndarray(&a, "l.npy", &lab, &n, &e), &e, RF_EFORMAT, "index 2",
                "-1");
    ((double *)a.data)[2] = NAN;
    expect_fail(rf_labels_from_ndarray(&a, "l.npy", &lab, &n, &e), &e, RF_EFORMAT, "index 2",
                "nan");
    rf_ndarray_free(&a);

    int64_t s2[2] = {3, 2};
    make_array(&a, RF_DT_U8, 2, s2);
    expect_fail(rf_labels_from_ndarray(&a, "l.npy", &lab, &n, &e), &e, RF_EFORMAT, "1-D",
                "(3, 2)");
    rf_ndarray_free(&a);
}

/* ---------- CSV ---------- */

static void test_csv_roundtrip(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "rt.csv");
    rf_matrix m;
    rf_err e = {0};
    assert_int_equal(rf_matrix_alloc(&m, 50, 3, &e), RF_OK);
    rf_rng r;
    rf_rng_seed(&r, 7);
    for (int i = 0; i < 150; i++) m.x[i] = (float)(rf_rng_normal(&r) * pow(10.0, (i % 13) - 6));
    m.x[1] = -0.0f;
    m.x[2] = 3.4e38f;
    const char *names[] = {"alpha", "beta gamma", "c3"};
    assert_int_equal(rf_csv_write(path, &m, names, &e), RF_OK);
    rf_matrix b;
    char **cols;
    int rc = rf_csv_read(path, &b, &cols, &e);
    if (rc != RF_OK) fail_msg("%s", e.msg);
    assert_int_equal(b.n, 50);
    assert_int_equal(b.d, 3);
    for (int i = 0; i < 150; i++) assert_true(b.x[i] == m.x[i]); /* %.9g is exact for float32 */
    assert_string_equal(cols[1], "beta gamma");
    rf_strings_free(cols, 3);
    rf_matrix_free(&b);
    /* default names, and rf_data_read dispatch */
    assert_int_equal(rf_csv_write(path, &m, NULL, &e), RF_OK);
    assert_int_equal(rf_data_read(path, &b, &e), RF_OK);
    assert_int_equal(b.n, 50);
    rf_matrix_free(&b);
    /* writer refuses bad names and non-finite values */
    const char *bad_names[] = {"a", "b,c", "d"};
    expect_fail(rf_csv_write(path, &m, bad_names, &e), &e, RF_EARG, "b,c", NULL);
    m.x[7] = NAN;
    expect_fail(rf_csv_write(path, &m, names, &e), &e, RF_ENONFINITE, "row 2", "column 1");
    rf_matrix_free(&m);
    unlink(path);

    /* blank lines, CRLF, BOM, spaces, quoted header names */
    write_text(path, "\xEF\xBB\xBF\"a\", b ,c\r\n\r\n1, 2.5 ,-3e2\r\n\n   \n4,5,6\r\n");
    rc = rf_csv_read(path, &b, &cols, &e);
    if (rc != RF_OK) fail_msg("%s", e.msg);
    assert_int_equal(b.n, 2);
    assert_int_equal(b.d, 3);
    assert_true(b.x[2] == -300.0f && b.x[5] == 6.0f);
    assert_string_equal(cols[0], "a");
    assert_string_equal(cols[1], "b");
    rf_strings_free(cols, 3);
    rf_matrix_free(&b);
    unlink(path);
}

static void test_csv_bad(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "bad.csv");
    static const struct {
        const char *text;
        int code;
        const char *sub1, *sub2, *sub3;
    } bad[] = {
        {"a,b,c\n1,2,3\n4,5\n", RF_EFORMAT, ":3:", "missing column 'c'", "'4,5'"},
        {"a,b\n1,2\n3,4,5\n", RF_EFORMAT, ":3:", "extra fields after column 'b'", "'3,4,5'"},
        {"a,b\n1,2\n\n3,hello\n", RF_EFORMAT, ":4:", "column 'b' (2 of 2)", "'hello' is not a number"},
        {"x,y\n1,\n", RF_EFORMAT, ":2:", "column 'y'", "is empty"},
        {"x\n1\nnan\n", RF_ENONFINITE, ":3:", "column 'x'", "'nan'"},
        {"x\n1e999\n", RF_EFORMAT, ":2:", "'1e999'", "out of float32 range"},
        {"x\n0x10\n", RF_EFORMAT, ":2:", "'0x10'", "not a number"},
        {"", RF_EFORMAT, "empty file", NULL, NULL},
        {"\n  \r\n\n", RF_EFORMAT, "empty file", NULL, NULL},
        {"1,2\n3,4\n", RF_EFORMAT, ":1:", "missing header row", "'1,2'"},
        {"a,b\n", RF_EFORMAT, "no data rows", NULL, NULL},
        {"a,,c\n1,2,3\n", RF_EFORMAT, ":1:", "column 2 has an empty name", NULL},
        {"a,\"b\n1,2\n", RF_EFORMAT, ":1:", "unterminated quote", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(path, bad[i].text);
        rf_matrix m;
        rf_err e = {0};
        int rc = rf_csv_read(path, &m, NULL, &e);
        expect_fail(rc, &e, bad[i].code, bad[i].sub1, bad[i].sub2);
        if (bad[i].sub3) expect_msg(&e, bad[i].sub3);
        expect_msg(&e, path);
        assert_null(m.x);
    }
    /* binary junk */
    unsigned char junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (unsigned char)(i * 37);
    write_bytes(path, junk, sizeof junk);
    rf_matrix m;
    rf_err e = {0};
    expect_fail(rf_csv_read(path, &m, NULL, &e), &e, RF_EFORMAT, "NUL", NULL);
    unlink(path);
    expect_fail(rf_csv_read(path, &m, NULL, &e), &e, RF_EIO, path, NULL);
}

/* ---------- ARFF ---------- */

static void test_arff_synthetic(void **state) {
    (void)state;
    char path[256];
    rf_test_tmp(path, sizeof path, "t.arff");
    write_text(path, "% a comment\n"
                     "@Relation 'test data'\n"
                     "\n"
                     "@ATTRIBUTE 'x one' REAL\n"
                     "@attribute y integer\n"
                     "@attribute cls {neg, 'pos'}\n"
                     "@attribute z Numeric\n"
                     "@data\n"
                     "% another comment\n"
                     "1.5, 2, pos, 7\r\n"
                     "\n"
                     "-1,3,neg,8\n"
                     "0,0,'pos',9");
    rf_matrix x;
    int *lab;
    rf_err e = {0};
    int rc = rf_arff_read(path, NULL, &x, &lab, &e);
    if (rc != RF_OK) fail_msg("%s", e.msg);
    assert_int_equal(x.n, 3);
    assert_int_equal(x.d, 3);
    assert_true(x.x[0] == 1.5f && x.x[2] == 7.0f && x.x[3] == -1.0f && x.x[8] == 9.0f);
    assert_int_equal(lab[0], 1);
    assert_int_equal(lab[1], 0);
    assert_int_equal(lab[2], 1);
    free(lab);
    rf_matrix_free(&x);
    assert_int_equal(rf_arff_read(path, "cls", &x, NULL, &e), RF_OK); /* labels not wanted */
    rf_matrix_free(&x);
    expect_fail(rf_arff_read(path, "nope", &x, &lab, &e), &e, RF_EARG, "'nope'", NULL);
    expect_fail(rf_arff_read(path, "y", &x, &lab, &e), &e, RF_EFORMAT, "'y'", "nominal");

    static const struct {
        const char *text;
        const char *sub1, *sub2;
    } bad[] = {
        {"@relation r\n@attribute a numeric\n@attribute c {x,y}\n@data\n1,x\n?,y\n", ":6:",
         "missing value '?' for attribute 'a'"},
        {"@relation r\n@attribute a numeric\n@attribute c {x,y}\n@data\n1,?\n", ":5:",
         "missing value '?' for attribute 'c'"},
        {"@relation r\n@attribute a numeric\n@attribute c {x,y}\n@data\n1,z\n", ":5:",
         "value 'z'"},
        {"@relation r\n@attribute a numeric\n@attribute c {x,y}\n@data\n1,x\nabc,y\n", ":6:",
         "attribute 'a' (field 1): 'abc' is not a number"},
        {"@relation r\n@attribute a numeric\n@attribute c {x,y}\n@data\n1,x,3\n", ":5:",
         "extra values"},
        {"@relation r\n@attribute a numeric\n@attribute b numeric\n@data\n1\n", ":5:",
         "missing attribute 'b'"},
        {"@relation r\n@attribute s string\n@attribute a numeric\n@data\n'q',1\n", ":2:",
         "type string"},
        {"@relation r\n@attribute a numeric\n@attribute k {u,v}\n@attribute c {x,y}\n@data\n1,u,x\n",
         "attribute 'k' is nominal", "class attribute ('c')"},
        {"@relation r\n@attribute a numeric\n@data\n", "no data rows", NULL},
        {"@relation r\n@attribute a numeric\n1,2\n", ":3:", "expected @RELATION"},
        {"@relation r\n@attribute a numeric\n", "no @DATA", NULL},
        {"@relation r\n@attribute c {x,y}\n@data\nx\n", "no NUMERIC", NULL},
        {"@relation r\n@attribute a numeric\n@data\n{0 1}\n", ":4:", "sparse"},
        {"@relation r\n@attribute a blob\n@data\n1\n", ":2:", "unknown type 'blob'"},
        {"@relation r\n@attribute c {x,y\n@data\n1\n", ":2:", "closing '}'"},
        {"", "no @DATA", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(path, bad[i].text);
        rc = rf_arff_read(path, NULL, &x, &lab, &e);
        expect_fail(rc, &e, RF_EFORMAT, bad[i].sub1, bad[i].sub2);
        expect_msg(&e, path);
        assert_null(x.x);
        assert_null(lab);
    }
    unlink(path);
}

/* ---------- dispatch ---------- */

static void test_dispatch(void **state) {
    (void)state;
    char path[256];
    rf_matrix m;
    int *lab, n;
    rf_err e = {0};
    expect_fail(rf_data_read("/tmp/whatever.parquet", &m, &e), &e, RF_EARG, "'.parquet'", ".npy");
    expect_msg(&e, ".csv");
    expect_msg(&e, ".arff");
    expect_fail(rf_data_read("/tmp/noext", &m, &e), &e, RF_EARG, "(none)", NULL);
    expect_fail(rf_labels_read("/tmp/x.txt", &lab, &n, &e), &e, RF_EARG, "'.txt'", ".npy");

    rf_test_tmp(path, sizeof path, "lab.csv");
    write_text(path, "label\n0\n2\n1\n");
    assert_int_equal(rf_labels_read(path, &lab, &n, &e), RF_OK);
    assert_int_equal(n, 3);
    assert_int_equal(lab[1], 2);
    free(lab);
    write_text(path, "label\n0\n2.5\n");
    expect_fail(rf_labels_read(path, &lab, &n, &e), &e, RF_EFORMAT, "index 1", "2.5");
    write_text(path, "a,b\n0,1\n");
    expect_fail(rf_labels_read(path, &lab, &n, &e), &e, RF_EFORMAT, "one column", "has 2");
    unlink(path);

    rf_test_tmp(path, sizeof path, "lab.NPY"); /* extensions are case-insensitive */
    rf_ndarray a;
    int64_t s[1] = {4};
    make_array(&a, RF_DT_I64, 1, s);
    for (int i = 0; i < 4; i++) ((int64_t *)a.data)[i] = 3 - i;
    assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
    assert_int_equal(rf_labels_read(path, &lab, &n, &e), RF_OK);
    assert_int_equal(n, 4);
    assert_int_equal(lab[0], 3);
    assert_int_equal(lab[3], 0);
    free(lab);
    ((int64_t *)a.data)[2] = 3000000000LL;
    assert_int_equal(rf_npy_write(path, &a, &e), RF_OK);
    expect_fail(rf_labels_read(path, &lab, &n, &e), &e, RF_EFORMAT, "index 2", "3000000000");
    rf_ndarray_free(&a);
    unlink(path);
}

/* ---------- real data ---------- */

static void test_real_truncated_npy(void **state) {
    (void)state;
    const char *dir = rf_test_data_dir();
    if (!dir) skip();
    char path[512];
    snprintf(path, sizeof path, "%s/bad-inputs/miniboone-truncated.npy", dir);
    rf_ndarray a;
    rf_err e = {0};
    /* 43-byte-wide rows: 80 header bytes + 524208 data bytes = 524288, about 1524 of 36488 rows */
    expect_fail(rf_npy_read(path, &a, &e), &e, RF_EFORMAT, "36488", "524208");
    expect_msg(&e, "(36488, 43)");
    expect_msg(&e, "12551872");
    expect_msg(&e, "524288");
    expect_msg(&e, "miniboone-truncated.npy");
    rf_matrix m;
    expect_fail(rf_data_read(path, &m, &e), &e, RF_EFORMAT, "36488", NULL);
}

static void test_real_npz(void **state) {
    (void)state;
    const char *dir = rf_test_data_dir();
    if (!dir) skip();
    char path[512];
    snprintf(path, sizeof path, "%s/sleep-edf/features/SC4001E0.npz", dir);
    rf_ndarray X, y;
    rf_err e = {0};
    int rc = rf_npz_read(path, "X", &X, &e);
    if (rc != RF_OK) fail_msg("%s", e.msg);
    assert_int_equal(X.dtype, RF_DT_F64);
    assert_int_equal(X.ndim, 2);
    assert_int_equal(X.shape[1], 72);
    rc = rf_npz_read(path, "y.npy", &y, &e);
    if (rc != RF_OK) fail_msg("%s", e.msg);
    assert_int_equal(y.ndim, 1);
    assert_int_equal(y.shape[0], X.shape[0]);
    rf_matrix m;
    assert_int_equal(rf_matrix_from_ndarray(&X, path, &m, &e), RF_OK);
    int *lab, n;
    assert_int_equal(rf_labels_from_ndarray(&y, path, &lab, &n, &e), RF_OK);
    assert_int_equal(n, m.n);
    int counts[5] = {0};
    for (int i = 0; i < n; i++) {
        assert_true(lab[i] >= 0 && lab[i] <= 4);
        counts[lab[i]]++;
    }
    printf("  SC4001E0.npz: X %d x %d (%s), y %s; stages W %d, N1 %d, N2 %d, N3 %d, REM %d\n", m.n,
           m.d, rf_dtype_name(X.dtype), rf_dtype_name(y.dtype), counts[0], counts[1], counts[2],
           counts[3], counts[4]);
    for (int k = 0; k < 5; k++) assert_true(counts[k] > 0);
    free(lab);
    rf_matrix_free(&m);
    rf_ndarray_free(&X);
    rf_ndarray_free(&y);
    /* the same through the dispatchers */
    assert_int_equal(rf_data_read(path, &m, &e), RF_OK);
    assert_int_equal(rf_labels_read(path, &lab, &n, &e), RF_OK);
    assert_int_equal(n, m.n);
    free(lab);
    rf_matrix_free(&m);
    expect_fail(rf_npz_read(path, "Z", &X, &e), &e, RF_EFORMAT, "SC4001E0.npz", "'Z'");
}

static void read_eeg(rf_matrix *x, int **lab) {
    const char *dir = rf_test_data_dir();
    if (!dir) skip();
    char path[512];
    snprintf(path, sizeof path, "%s/uci-eeg-eye-state/eeg-eye-state.arff", dir);
    rf_err e = {0};
    int rc = rf_arff_read(path, NULL, x, lab, &e);
    if (rc != RF_OK) fail_msg("%s", e.msg);
}

static void test_real_arff(void **state) {
    (void)state;
    rf_matrix x;
    int *lab;
    read_eeg(&x, &lab);
    assert_int_equal(x.n, 14980);
    assert_int_equal(x.d, 14);
    int c[2] = {0, 0};
    for (int i = 0; i < x.n; i++) {
        assert_true(lab[i] == 0 || lab[i] == 1);
        c[lab[i]]++;
    }
    printf("  eeg-eye-state.arff: %d x %d; eyeDetection 0 (open): %d (%.1f%%), 1 (closed): %d "
           "(%.1f%%)\n",
           x.n, x.d, c[0], 100.0 * c[0] / x.n, c[1], 100.0 * c[1] / x.n);
    assert_int_equal(c[0] + c[1], 14980);
    assert_int_equal(c[0], 8257);
    assert_int_equal(c[1], 6723);
    assert_true(x.x[0] == 4329.23f && x.x[13] == 4393.85f); /* first row, AF3 and AF4 */
    free(lab);
    rf_matrix_free(&x);
    /* explicit class attribute and the dispatcher */
    const char *dir = rf_test_data_dir();
    char path[512];
    snprintf(path, sizeof path, "%s/uci-eeg-eye-state/eeg-eye-state.arff", dir);
    rf_err e = {0};
    assert_int_equal(rf_arff_read(path, "eyeDetection", &x, &lab, &e), RF_OK);
    free(lab);
    rf_matrix_free(&x);
    assert_int_equal(rf_data_read(path, &x, &e), RF_OK);
    assert_int_equal(x.d, 14);
    rf_matrix_free(&x);
}

static void test_real_outliers(void **state) {
    (void)state;
    rf_matrix x;
    int *lab;
    read_eeg(&x, &lab);
    free(lab);
    unsigned char *keep = malloc((size_t)x.n);
    static const double th[] = {10, 20, 50};
    int counts[3];
    for (int t = 0; t < 3; t++) {
        counts[t] = rf_outlier_rows(&x, th[t], keep);
        assert_true(counts[t] >= 0);
        int zeros = 0;
        for (int i = 0; i < x.n; i++) zeros += keep[i] == 0;
        assert_int_equal(zeros, counts[t]);
    }
    printf("  EEG Eye State rows with robust |z| > 10: %d, > 20: %d, > 50: %d (of %d)\n",
           counts[0], counts[1], counts[2], x.n);
    assert_true(counts[0] >= counts[1] && counts[1] >= counts[2]);
    assert_true(counts[2] > 0);            /* the genuine spikes */
    assert_true(counts[0] < x.n / 100);    /* but only a handful of rows */
    /* removing them leaves data whose spread is sane */
    counts[0] = rf_outlier_rows(&x, 10, keep);
    rf_matrix clean;
    rf_err e = {0};
    assert_int_equal(rf_matrix_select_rows(&x, keep, &clean, &e), RF_OK);
    assert_int_equal(clean.n, x.n - counts[0]);
    float shift[14], scale[14];
    assert_int_equal(rf_standardizer_fit(&clean, 0, shift, scale, &e), RF_OK);
    for (int j = 0; j < 14; j++) assert_true(scale[j] > 1 && scale[j] < 200);
    float rshift[14], rscale[14];
    assert_int_equal(rf_standardizer_fit(&x, 1, rshift, rscale, &e), RF_OK);
    assert_int_equal(rf_standardizer_fit(&x, 0, shift, scale, &e), RF_OK);
    printf("  AF3: robust shift %.2f scale %.2f; mean %.2f std %.2f (spikes inflate the std)\n",
           rshift[0], rscale[0], shift[0], scale[0]);
    assert_true(scale[0] > 10 * rscale[0]);
    rf_matrix_free(&clean);
    free(keep);
    rf_matrix_free(&x);
}

/* ---------- standardisation, outliers, selection, split ---------- */

static void test_standardizer(void **state) {
    (void)state;
    rf_matrix m;
    rf_err e = {0};
    assert_int_equal(rf_matrix_alloc(&m, 9, 3, &e), RF_OK);
    static const float c2[9] = {0, 0, 0, 0, 0, 0, 0, 1, 100};
    for (int i = 0; i < 9; i++) {
        m.x[i * 3 + 0] = (float)(i + 1);
        m.x[i * 3 + 1] = 7.0f;
        m.x[i * 3 + 2] = c2[i];
    }
    float sh[3], sc[3];
    assert_int_equal(rf_standardizer_fit(&m, 0, sh, sc, &e), RF_OK);
    assert_float_equal(sh[0], 5.0f, 1e-6);
    assert_float_equal(sc[0], (float)sqrt(60.0 / 9.0), 1e-6);
    assert_float_equal(sh[1], 7.0f, 1e-6);
    assert_float_equal(sc[1], 1.0f, 0); /* constant column */
    double mu2 = 101.0 / 9.0, var2 = 0;
    for (int i = 0; i < 9; i++) var2 += (c2[i] - mu2) * (c2[i] - mu2);
    assert_float_equal(sh[2], (float)mu2, 1e-5);
    assert_float_equal(sc[2], (float)sqrt(var2 / 9.0), 1e-4);

    assert_int_equal(rf_standardizer_fit(&m, 1, sh, sc, &e), RF_OK);
    assert_float_equal(sh[0], 5.0f, 1e-6);                 /* median */
    assert_float_equal(sc[0], (float)(4.0 / 1.349), 1e-6); /* IQR (7 - 3) / 1.349 */
    assert_float_equal(sh[1], 7.0f, 0);
    assert_float_equal(sc[1], 1.0f, 0);                      /* IQR 0, std 0 -> 1 */
    assert_float_equal(sh[2], 0.0f, 0);                      /* median 0 */
    assert_float_equal(sc[2], (float)sqrt(var2 / 9.0), 1e-4); /* IQR 0 -> std */

    /* even n: median and quartiles interpolate like numpy.percentile */
    rf_matrix m4;
    assert_int_equal(rf_matrix_alloc(&m4, 4, 1, &e), RF_OK);
    m4.x[0] = 10;
    m4.x[1] = 1;
    m4.x[2] = 4;
    m4.x[3] = 2;
    assert_int_equal(rf_standardizer_fit(&m4, 1, sh, sc, &e), RF_OK);
    assert_float_equal(sh[0], 3.0f, 1e-6);                     /* (2 + 4) / 2 */
    assert_float_equal(sc[0], (float)((5.5 - 1.75) / 1.349), 1e-5); /* q75 5.5, q25 1.75 */
    m4.x[2] = NAN;
    expect_fail(rf_standardizer_fit(&m4, 1, sh, sc, &e), &e, RF_ENONFINITE, "row 2", "column 0");
    rf_matrix_free(&m4);
    rf_matrix_free(&m);

    /* large offset: double accumulation keeps the std exact enough */
    assert_int_equal(rf_matrix_alloc(&m, 10000, 1, &e), RF_OK);
    for (int i = 0; i < 10000; i++) m.x[i] = 1.0e6f + (float)(i % 2);
    assert_int_equal(rf_standardizer_fit(&m, 0, sh, sc, &e), RF_OK);
    assert_float_equal(sh[0], 1000000.5f, 1e-3);
    assert_float_equal(sc[0], 0.5f, 1e-6);
    rf_matrix_free(&m);
}

static void test_outliers_known(void **state) {
    (void)state;
    rf_matrix m;
    rf_err e = {0};
    assert_int_equal(rf_matrix_alloc(&m, 200, 2, &e), RF_OK);
    rf_rng r;
    rf_rng_seed(&r, 99);
    for (int i = 0; i < 200; i++) {
        m.x[i * 2] = (float)rf_rng_normal(&r);
        m.x[i * 2 + 1] = (i % 4 == 0) ? 3.0f : 0.0f; /* MAD 0: falls back to the std */
    }
    m.x[17 * 2] = 40.0f;
    m.x[123 * 2] = -25.0f;
    unsigned char keep[200];
    int k = rf_outlier_rows(&m, 10.0, keep);
    assert_int_equal(k, 2);
    assert_int_equal(keep[17], 0);
    assert_int_equal(keep[123], 0);
    assert_int_equal(keep[0], 1);
    assert_int_equal(rf_outlier_rows(&m, 30.0, keep), 1);
    m.x[50 * 2 + 1] = NAN; /* non-finite values are always outliers */
    assert_int_equal(rf_outlier_rows(&m, 30.0, keep), 2);
    assert_int_equal(keep[50], 0);

    rf_matrix sel;
    assert_int_equal(rf_matrix_select_rows(&m, keep, &sel, &e), RF_OK);
    assert_int_equal(sel.n, 198);
    assert_int_equal(sel.d, 2);
    assert_true(sel.x[17 * 2] == m.x[18 * 2]); /* row 17 dropped, the rest shifted up */
    assert_true(sel.x[49 * 2] == m.x[51 * 2]); /* rows 17 and 50 dropped */
    rf_matrix_free(&sel);
    rf_matrix_free(&m);
}

static void test_split(void **state) {
    (void)state;
    rf_matrix m;
    rf_err e = {0};
    const int n = 103;
    assert_int_equal(rf_matrix_alloc(&m, n, 2, &e), RF_OK);
    for (int i = 0; i < n; i++) {
        m.x[i * 2] = (float)i;
        m.x[i * 2 + 1] = (float)-i;
    }
    rf_rng r1, r2, r3;
    rf_rng_seed(&r1, 42);
    rf_rng_seed(&r2, 42);
    rf_rng_seed(&r3, 43);
    rf_matrix a1, b1, a2, b2, a3, b3;
    assert_int_equal(rf_matrix_split(&m, 0.2, &r1, &a1, &b1, &e), RF_OK);
    assert_int_equal(rf_matrix_split(&m, 0.2, &r2, &a2, &b2, &e), RF_OK);
    assert_int_equal(rf_matrix_split(&m, 0.2, &r3, &a3, &b3, &e), RF_OK);
    assert_int_equal(b1.n, 20); /* floor(0.2 * 103) */
    assert_int_equal(a1.n, 83);
    assert_int_equal(a1.d, 2);
    assert_memory_equal(a1.x, a2.x, sizeof(float) * 2 * 83);
    assert_memory_equal(b1.x, b2.x, sizeof(float) * 2 * 20);
    assert_true(memcmp(b1.x, b3.x, sizeof(float) * 2 * 20) != 0);
    /* every row lands exactly once, intact, and the order is shuffled */
    int seen[103] = {0}, in_order = 1;
    for (int i = 0; i < 20; i++) {
        int v = (int)b1.x[i * 2];
        assert_true(b1.x[i * 2 + 1] == -(float)v);
        seen[v]++;
    }
    for (int i = 0; i < 83; i++) {
        int v = (int)a1.x[i * 2];
        assert_true(a1.x[i * 2 + 1] == -(float)v);
        seen[v]++;
        if (i > 0 && a1.x[i * 2] < a1.x[(i - 1) * 2]) in_order = 0;
    }
    for (int i = 0; i < n; i++) assert_int_equal(seen[i], 1);
    assert_false(in_order);
    /* the split follows rf_rng_shuffle: b is the first floor(frac*n) of the permutation */
    rf_rng r4;
    rf_rng_seed(&r4, 42);
    int perm[103];
    for (int i = 0; i < n; i++) perm[i] = i;
    rf_rng_shuffle(&r4, perm, n);
    for (int i = 0; i < 20; i++) assert_int_equal((int)b1.x[i * 2], perm[i]);
    for (int i = 0; i < 83; i++) assert_int_equal((int)a1.x[i * 2], perm[20 + i]);
    rf_matrix_free(&a1);
    rf_matrix_free(&b1);
    rf_matrix_free(&a2);
    rf_matrix_free(&b2);
    rf_matrix_free(&a3);
    rf_matrix_free(&b3);

    assert_int_equal(rf_matrix_split(&m, 0.0, &r1, &a1, &b1, &e), RF_OK);
    assert_int_equal(b1.n, 0);
    assert_int_equal(a1.n, n);
    rf_matrix_free(&a1);
    rf_matrix_free(&b1);
    assert_int_equal(rf_matrix_split(&m, 1.0, &r1, &a1, &b1, &e), RF_OK);
    assert_int_equal(b1.n, n);
    assert_int_equal(a1.n, 0);
    rf_matrix_free(&a1);
    rf_matrix_free(&b1);
    expect_fail(rf_matrix_split(&m, 1.5, &r1, &a1, &b1, &e), &e, RF_EARG, "1.5", NULL);
    expect_fail(rf_matrix_split(&m, NAN, &r1, &a1, &b1, &e), &e, RF_EARG, "nan", NULL);
    rf_matrix_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_roundtrip),
        cmocka_unit_test(test_windows_shape),
        cmocka_unit_test(test_npy_versions_and_markers),
        cmocka_unit_test(test_npy_rejects),
        cmocka_unit_test(test_npy_truncated_prefixes),
        cmocka_unit_test(test_npy_header_fuzz),
        cmocka_unit_test(test_npy_write_atomic),
        cmocka_unit_test(test_npz_synthetic),
        cmocka_unit_test(test_matrix_from_ndarray),
        cmocka_unit_test(test_labels_from_ndarray),
        cmocka_unit_test(test_csv_roundtrip),
        cmocka_unit_test(test_csv_bad),
        cmocka_unit_test(test_arff_synthetic),
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_text_fuzz),
        cmocka_unit_test(test_real_truncated_npy),
        cmocka_unit_test(test_real_npz),
        cmocka_unit_test(test_real_arff),
        cmocka_unit_test(test_real_outliers),
        cmocka_unit_test(test_standardizer),
        cmocka_unit_test(test_outliers_known),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
