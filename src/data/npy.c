/* .npy reader and writer. The header (a Python dict literal) is parsed strictly and every field
 * is checked against the size of the data before anything is allocated for it. */
#include "data_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAX_HEADER (1u << 20) /* numpy itself refuses headers above 10000 bytes by default */

typedef struct {
    const char *p, *start, *end;
    const char *name;
    rf_err *e;
} hparse;

static void h_ws(hparse *h) {
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static int h_fail(hparse *h, const char *what) {
    char near[40];
    rfd_excerpt(near, sizeof near, h->p, (size_t)(h->end - h->p));
    return rf_err_set(h->e, RF_EFORMAT, "%s: malformed .npy header: %s at offset %zu (near '%s')",
                      h->name, what, (size_t)(h->p - h->start), near);
}

static int h_char(hparse *h, char c) {
    h_ws(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes; at most cap-1 characters. */
static int h_string(hparse *h, char *buf, size_t cap, const char *what) {
    h_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"')) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected a quoted string for %s", what);
        return h_fail(h, msg);
    }
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        unsigned char c = (unsigned char)*h->p;
        if (c == '\\' || c < 0x20 || c >= 0x7f) return h_fail(h, "unsupported character in string");
        if (n + 1 >= cap) return h_fail(h, "string too long");
        buf[n++] = (char)c;
        h->p++;
    }
    if (h->p >= h->end) return h_fail(h, "unterminated string");
    h->p++;
    buf[n] = 0;
    return RF_OK;
}

static int h_word(hparse *h, const char *w) {
    size_t n = strlen(w);
    if ((size_t)(h->end - h->p) >= n && memcmp(h->p, w, n) == 0) {
        const char *after = h->p + n;
        if (after < h->end && ((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
                               (*after >= '0' && *after <= '9') || *after == '_'))
            return 0;
        h->p = after;
        return 1;
    }
    return 0;
}

/* Maps a descr string to a dtype, or sets a clear error. */
static int descr_to_dtype(const char *descr, const char *name, rf_dtype *out, rf_err *e) {
    static const char *supported = "<f4 <f8 <i4 <i8 |u1 |b1";
    size_t n = strlen(descr);
    char order = n ? descr[0] : 0;
    const char *code = descr;
    if (order == '<' || order == '>' || order == '=' || order == '|') code = descr + 1;
    else order = 0;
    static const struct {
        const char *code;
        rf_dtype t;
    } known[] = {{"f4", RF_DT_F32}, {"f8", RF_DT_F64}, {"i4", RF_DT_I32},
                 {"i8", RF_DT_I64}, {"u1", RF_DT_U8},  {"b1", RF_DT_BOOL}};
    int found = -1;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(code, known[i].code) == 0) found = (int)i;
    if (code[0] == 'O' && (code[1] == 0 || strcmp(code + 1, "8") == 0))
        return rf_err_set(e, RF_EFORMAT,
                          "%s: header descr '%s' is an object array (pickled Python objects); "
                          "renflow reads only %s",
                          name, descr, supported);
    if (found < 0)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: header descr '%s' is not a supported dtype; renflow reads %s "
                          "(convert with arr.astype('<f4'))",
                          name, descr, supported);
    rf_dtype t = known[found].t;
    int one_byte = rf_dtype_size(t) == 1;
    int le = rfd_host_is_le();
    if (order == '>' && !one_byte)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: header descr '%s' is big-endian, which is not supported; renflow "
                          "reads little-endian %s (convert with arr.astype('<%s'))",
                          name, descr, supported, code);
    if ((order == '=' || order == '|' || order == 0) && !one_byte && !le)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: header descr '%s' means native byte order, which is big-endian on "
                          "this machine; renflow reads little-endian %s",
                          name, descr, supported);
    *out = t;
    return RF_OK;
}

typedef struct {
    int ndim;
    int64_t shape[RF_MAX_NDIM];
    rf_dtype dtype;
    char descr[32];
} npy_hdr;

/* Parses "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }" plus trailing blanks. */
static int parse_header(const char *text, size_t len, const char *name, npy_hdr *out, rf_err *e) {
    hparse h = {text, text, text + len, name, e};
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0, rc;
    memset(out, 0, sizeof *out);
    if (!h_char(&h, '{')) return h_fail(&h, "expected '{'");
    for (;;) {
        if (h_char(&h, '}')) break;
        char key[32];
        if ((rc = h_string(&h, key, sizeof key, "a key")) != RF_OK) return rc;
        if (!h_char(&h, ':')) return h_fail(&h, "expected ':' after a key");
        h_ws(&h);
        if (strcmp(key, "descr") == 0) {
            if (have_descr++) return h_fail(&h, "duplicate key 'descr'");
            if (h.p < h.end && *h.p == '[')
                return rf_err_set(e, RF_EFORMAT,
                                  "%s: header descr is a structured dtype (a list of fields); "
                                  "renflow reads plain <f4 <f8 <i4 <i8 |u1 |b1 arrays",
                                  name);
            if ((rc = h_string(&h, out->descr, sizeof out->descr, "'descr'")) != RF_OK) return rc;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_fortran++) return h_fail(&h, "duplicate key 'fortran_order'");
            if (h_word(&h, "True")) fortran = 1;
            else if (h_word(&h, "False")) fortran = 0;
            else return h_fail(&h, "'fortran_order' must be True or False");
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape++) return h_fail(&h, "duplicate key 'shape'");
            if (!h_char(&h, '(')) return h_fail(&h, "'shape' must be a tuple such as (3, 4)");
            int nd = 0, comma_after_last = 0;
            for (;;) {
                if (h_char(&h, ')')) break;
                if (nd > 0 && !comma_after_last) return h_fail(&h, "expected ',' or ')' in 'shape'");
                h_ws(&h);
                if (h.p < h.end && *h.p == '-') {
                    const char *s = h.p++;
                    while (h.p < h.end && *h.p >= '0' && *h.p <= '9') h.p++;
                    char num[32];
                    rfd_excerpt(num, sizeof num, s, (size_t)(h.p - s));
                    return rf_err_set(e, RF_EFORMAT,
                                      "%s: header shape has a negative dimension %s (dimension %d)",
                                      name, num, nd);
                }
                if (h.p >= h.end || *h.p < '0' || *h.p > '9')
                    return h_fail(&h, "expected a non-negative integer in 'shape'");
                const char *s = h.p;
                int64_t v = 0;
                int big = 0;
                while (h.p < h.end && *h.p >= '0' && *h.p <= '9') {
                    int dgt = *h.p - '0';
                    if (v > (INT64_MAX - dgt) / 10) big = 1;
                    else v = v * 10 + dgt;
                    h.p++;
                }
                if (h.p < h.end && *h.p == 'L') h.p++; /* Python 2 long literal */
                if (big) {
                    char num[40];
                    rfd_excerpt(num, sizeof num, s, (size_t)(h.p - s));
                    return rf_err_set(e, RF_EFORMAT,
                                      "%s: header shape dimension %d value %s is too large", name,
                                      nd, num);
                }
                if (nd >= RF_MAX_NDIM)
                    return rf_err_set(e, RF_EFORMAT,
                                      "%s: header shape has more than %d dimensions", name,
                                      RF_MAX_NDIM);
                out->shape[nd++] = v;
                comma_after_last = h_char(&h, ',');
            }
            if (nd == 1 && !comma_after_last)
                return h_fail(&h, "'shape' (n) is not a tuple; a 1-d shape is written (n,)");
            out->ndim = nd;
        } else {
            char k[40];
            rfd_excerpt(k, sizeof k, key, strlen(key));
            return rf_err_set(e, RF_EFORMAT,
                              "%s: .npy header has an unexpected key '%s' (expected descr, "
                              "fortran_order, shape)",
                              name, k);
        }
        if (h_char(&h, ',')) continue;
        if (h_char(&h, '}')) break;
        return h_fail(&h, "expected ',' or '}' after a value");
    }
    h_ws(&h);
    if (h.p != h.end) return h_fail(&h, "unexpected text after the header dict");
    if (!have_descr || !have_fortran || !have_shape)
        return rf_err_set(e, RF_EFORMAT, "%s: .npy header lacks the key '%s'", name,
                          !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    if ((rc = descr_to_dtype(out->descr, name, &out->dtype, e)) != RF_OK) return rc;
    if (fortran) {
        /* Fortran and C order coincide when at most one dimension exceeds 1. */
        int big_dims = 0;
        for (int i = 0; i < out->ndim; i++) big_dims += out->shape[i] > 1;
        if (big_dims > 1) {
            char sh[200];
            rfd_fmt_shape(sh, sizeof sh, out->ndim, out->shape);
            return rf_err_set(e, RF_EFORMAT,
                              "%s: header fortran_order is True (shape %s); renflow reads C-order "
                              "arrays only (save with np.save(f, np.ascontiguousarray(a)))",
                              name, sh);
        }
    }
    if (rfd_shape_count(out->ndim, out->shape) < 0) {
        char sh[200];
        rfd_fmt_shape(sh, sizeof sh, out->ndim, out->shape);
        return rf_err_set(e, RF_EFORMAT, "%s: header shape %s has too many elements", name, sh);
    }
    return RF_OK;
}

static uint64_t le_u(const unsigned char *b, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static int read_exact(rfd_read_fn rd, void *ctx, void *buf, size_t n, size_t *got, rf_err *e) {
    *got = 0;
    return n ? rd(ctx, buf, n, got, e) : RF_OK;
}

int rfd_npy_load(rfd_read_fn rd, void *ctx, uint64_t total, const char *name, rf_ndarray *out,
                 rf_err *e) {
    static const unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
    unsigned char pre[12];
    size_t got;
    int rc;
    memset(out, 0, sizeof *out);
    size_t first = total < 8 ? (size_t)total : 8;
    if ((rc = read_exact(rd, ctx, pre, first, &got, e)) != RF_OK) return rc;
    if (got < first) first = got;
    size_t cmp = first < 6 ? first : 6;
    if (memcmp(pre, magic, cmp) != 0) {
        char hex[40] = "";
        for (size_t i = 0; i < cmp; i++)
            snprintf(hex + 2 * i, sizeof hex - 2 * i, "%02x", pre[i]);
        return rf_err_set(e, RF_EFORMAT,
                          "%s: not a .npy file: magic bytes %s differ from 934e554d5059 "
                          "(\\x93NUMPY)",
                          name, hex);
    }
    if (first < 8)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: truncated .npy file: %zu bytes, shorter than the magic and version",
                          name, first);
    unsigned major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0))
        return rf_err_set(e, RF_EFORMAT,
                          "%s: unsupported .npy format version %u.%u (supported: 1.0, 2.0, 3.0)",
                          name, major, minor);
    size_t lensz = major == 1 ? 2 : 4;
    if (total < 8 + lensz)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: truncated .npy file: %llu bytes, shorter than the %zu-byte preamble "
                          "of version %u.0",
                          name, (unsigned long long)total, 8 + lensz, major);
    if ((rc = read_exact(rd, ctx, pre + 8, lensz, &got, e)) != RF_OK) return rc;
    if (got < lensz)
        return rf_err_set(e, RF_EFORMAT, "%s: file ended inside the .npy preamble", name);
    uint64_t hlen = le_u(pre + 8, (int)lensz);
    uint64_t hstart = 8 + lensz;
    if (hlen > total - hstart)
        return rf_err_set(e, RF_EFORMAT,
                          "%s: header length field says %llu bytes but only %llu bytes follow the "
                          "preamble (file size %llu)",
                          name, (unsigned long long)hlen, (unsigned long long)(total - hstart),
                          (unsigned long long)total);
    if (hlen > NPY_MAX_HEADER)
        return rf_err_set(e, RF_EFORMAT, "%s: header length %llu exceeds the limit of %u bytes",
                          name, (unsigned long long)hlen, NPY_MAX_HEADER);
    char *htext = malloc((size_t)hlen + 1);
    if (!htext) return rf_err_set(e, RF_ENOMEM, "%s: out of memory for the .npy header", name);
    if ((rc = read_exact(rd, ctx, htext, (size_t)hlen, &got, e)) != RF_OK) {
        free(htext);
        return rc;
    }
    if (got < hlen) {
        free(htext);
        return rf_err_set(e, RF_EFORMAT, "%s: file ended inside the .npy header (%zu of %llu bytes)",
                          name, got, (unsigned long long)hlen);
    }
    htext[hlen] = 0;
    npy_hdr hdr;
    rc = parse_header(htext, (size_t)hlen, name, &hdr, e);
    free(htext);
    if (rc != RF_OK) return rc;

    int64_t count = rfd_shape_count(hdr.ndim, hdr.shape);
    size_t isz = rf_dtype_size(hdr.dtype);
    uint64_t data_off = hstart + hlen, avail = total - data_off;
    char sh[200];
    rfd_fmt_shape(sh, sizeof sh, hdr.ndim, hdr.shape);
    if ((uint64_t)count > UINT64_MAX / isz || (uint64_t)count * isz != avail) {
        int overflow = (uint64_t)count > UINT64_MAX / isz;
        unsigned long long need = overflow ? 0 : (unsigned long long)count * isz;
        if (overflow)
            return rf_err_set(e, RF_EFORMAT, "%s: header shape %s of %s has too many bytes", name,
                              sh, hdr.descr);
        return rf_err_set(e, RF_EFORMAT,
                          "%s: header shape %s of %s needs %llu data bytes but the file has %llu "
                          "(file size %llu, header %llu bytes%s)",
                          name, sh, hdr.descr, need, (unsigned long long)avail,
                          (unsigned long long)total, (unsigned long long)data_off,
                          need > avail ? ", file truncated?" : ", trailing bytes after the array");
    }
    size_t nbytes = (size_t)avail;
    void *data = malloc(nbytes ? nbytes : 1);
    if (!data)
        return rf_err_set(e, RF_ENOMEM, "%s: out of memory for %zu data bytes of shape %s", name,
                          nbytes, sh);
    if ((rc = read_exact(rd, ctx, data, nbytes, &got, e)) != RF_OK) {
        free(data);
        return rc;
    }
    if (got < nbytes) {
        free(data);
        return rf_err_set(e, RF_EFORMAT, "%s: file ended after %zu of %zu data bytes", name, got,
                          nbytes);
    }
    if (!rfd_host_is_le()) rfd_bswap(data, (size_t)count, isz);
    if (hdr.dtype == RF_DT_BOOL) {
        unsigned char *b = data;
        for (size_t i = 0; i < nbytes; i++) b[i] = b[i] != 0;
    }
    out->ndim = hdr.ndim;
    memcpy(out->shape, hdr.shape, sizeof hdr.shape);
    out->dtype = hdr.dtype;
    out->data = data;
    return RF_OK;
}

typedef struct {
    const unsigned char *buf;
    size_t len, pos;
} mem_reader;

static int mem_read(void *ctx, void *buf, size_t n, size_t *got, rf_err *e) {
    (void)e;
    mem_reader *m = ctx;
    size_t k = m->len - m->pos < n ? m->len - m->pos : n;
    memcpy(buf, m->buf + m->pos, k);
    m->pos += k;
    *got = k;
    return RF_OK;
}

int rf_npy_parse(const unsigned char *buf, size_t len, const char *name, rf_ndarray *out,
                 rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "rf_npy_parse: no output array");
    memset(out, 0, sizeof *out);
    if (!name) name = "(buffer)";
    if (!buf && len) return rf_err_set(e, RF_EARG, "%s: NULL buffer", name);
    mem_reader m = {buf, buf ? len : 0, 0};
    return rfd_npy_load(mem_read, &m, m.len, name, out, e);
}

typedef struct {
    FILE *fp;
    const char *path;
} file_reader;

static int file_read(void *ctx, void *buf, size_t n, size_t *got, rf_err *e) {
    file_reader *f = ctx;
    *got = fread(buf, 1, n, f->fp);
    if (*got < n && ferror(f->fp))
        return rf_err_set(e, RF_EIO, "%s: read failed: %s", f->path, strerror(errno));
    return RF_OK;
}

int rf_npy_read(const char *path, rf_ndarray *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "rf_npy_read: no output array");
    memset(out, 0, sizeof *out);
    if (!path) return rf_err_set(e, RF_EARG, "rf_npy_read: no path");
    FILE *fp = fopen(path, "rb");
    if (!fp) return rf_err_set(e, RF_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return rf_err_set(e, RF_EIO, "%s: not a regular file", path);
    }
    file_reader fr = {fp, path};
    int rc = rfd_npy_load(file_read, &fr, (uint64_t)st.st_size, path, out, e);
    fclose(fp);
    return rc;
}

int rf_npy_write(const char *path, const rf_ndarray *a, rf_err *e) {
    if (!path || !a) return rf_err_set(e, RF_EARG, "rf_npy_write: NULL path or array");
    if (a->ndim < 0 || a->ndim > RF_MAX_NDIM)
        return rf_err_set(e, RF_EARG, "%s: cannot write an array with %d dimensions (0..%d)", path,
                          a->ndim, RF_MAX_NDIM);
    if (!rfd_dtype_valid(a->dtype))
        return rf_err_set(e, RF_EARG, "%s: invalid dtype %d", path, (int)a->dtype);
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] < 0)
            return rf_err_set(e, RF_EARG, "%s: negative dimension %lld in shape", path,
                              (long long)a->shape[i]);
    int64_t count = rfd_shape_count(a->ndim, a->shape);
    size_t isz = rf_dtype_size(a->dtype);
    if (count < 0 || (uint64_t)count > SIZE_MAX / isz)
        return rf_err_set(e, RF_EARG, "%s: shape has too many elements", path);
    if (count > 0 && !a->data) return rf_err_set(e, RF_EARG, "%s: array has no data", path);

    char sh[256], head[512];
    rfd_fmt_shape(sh, sizeof sh, a->ndim, a->shape);
    int hl = snprintf(head, sizeof head, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                      rfd_dtype_descr(a->dtype), sh);
    if (hl < 0 || (size_t)hl + 64 + 1 >= sizeof head)
        return rf_err_set(e, RF_EARG, "%s: header too long", path);
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    memset(head + hl, ' ', pad);
    head[hl + pad] = '\n';
    size_t hlen = (size_t)hl + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};

    rf_afile *f = rf_afile_open(path, e);
    if (!f) return e ? e->code : RF_EIO;
    int rc = rf_afile_write(f, pre, sizeof pre, e);
    if (rc == RF_OK) rc = rf_afile_write(f, head, hlen, e);
    size_t nbytes = (size_t)count * isz;
    if (rc == RF_OK && rfd_host_is_le()) {
        rc = rf_afile_write(f, a->data, nbytes, e);
    } else if (rc == RF_OK) {
        unsigned char chunk[4096];
        const unsigned char *src = a->data;
        for (size_t off = 0; off < nbytes && rc == RF_OK; off += sizeof chunk) {
            size_t k = nbytes - off < sizeof chunk ? nbytes - off : sizeof chunk;
            memcpy(chunk, src + off, k);
            rfd_bswap(chunk, k / isz, isz);
            rc = rf_afile_write(f, chunk, k, e);
        }
    }
    if (rc != RF_OK) {
        rf_afile_abort(f);
        return rc;
    }
    return rf_afile_commit(f, e);
}
