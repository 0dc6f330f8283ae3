/* .npz reader: one member of a zip archive (stored or deflated) parsed as .npy via libzip. */
#include "data_internal.h"

#include <stdlib.h>
#include <string.h>
#include <zip.h>

typedef struct {
    zip_file_t *zf;
    const char *name;
} zip_reader;

static int zip_read(void *ctx, void *buf, size_t n, size_t *got, rf_err *e) {
    zip_reader *z = ctx;
    unsigned char *p = buf;
    *got = 0;
    while (*got < n) {
        zip_int64_t k = zip_fread(z->zf, p + *got, (zip_uint64_t)(n - *got));
        if (k < 0)
            return rf_err_set(e, RF_EFORMAT, "%s: cannot decompress: %s", z->name,
                              zip_file_strerror(z->zf));
        if (k == 0) break;
        *got += (size_t)k;
    }
    return RF_OK;
}

static void list_members(zip_t *za, char *buf, size_t cap) {
    zip_int64_t n = zip_get_num_entries(za, 0);
    size_t k = 0;
    buf[0] = 0;
    for (zip_int64_t i = 0; i < n && k + 1 < cap; i++) {
        const char *nm = zip_get_name(za, (zip_uint64_t)i, 0);
        char ex[64];
        rfd_excerpt(ex, sizeof ex, nm ? nm : "?", nm ? strlen(nm) : 1);
        int w = snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", ex);
        if (w < 0) break;
        k += (size_t)w;
    }
    if (n == 0) snprintf(buf, cap, "(none)");
}

int rf_npz_read(const char *path, const char *member, rf_ndarray *out, rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "rf_npz_read: no output array");
    memset(out, 0, sizeof *out);
    if (!path || !member || !*member)
        return rf_err_set(e, RF_EARG, "rf_npz_read: NULL path or empty member name");
    int zerr = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &zerr);
    if (!za) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        int code = (zerr == ZIP_ER_NOENT || zerr == ZIP_ER_OPEN || zerr == ZIP_ER_READ ||
                    zerr == ZIP_ER_MEMORY)
                       ? (zerr == ZIP_ER_MEMORY ? RF_ENOMEM : RF_EIO)
                       : RF_EFORMAT;
        rf_err_set(e, code, "%s: cannot open .npz archive (wanted member '%s'): %s", path, member,
                   zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return code;
    }
    /* "X" finds "X.npy" (as np.savez names members) or a member literally called "X". */
    size_t ml = strlen(member);
    char *with_ext = malloc(ml + 5);
    if (!with_ext) {
        zip_discard(za);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    memcpy(with_ext, member, ml);
    memcpy(with_ext + ml, ".npy", 5);
    zip_int64_t idx = -1;
    if (!(ml >= 4 && strcmp(member + ml - 4, ".npy") == 0)) idx = zip_name_locate(za, with_ext, 0);
    if (idx < 0) idx = zip_name_locate(za, member, 0);
    if (idx < 0) {
        char names[400];
        list_members(za, names, sizeof names);
        rf_err_set(e, RF_EFORMAT, "%s: .npz archive has no member '%s' (members: %s)", path,
                   member, names);
        free(with_ext);
        zip_discard(za);
        return RF_EFORMAT;
    }
    free(with_ext);
    const char *mname = zip_get_name(za, (zip_uint64_t)idx, 0);
    char mshow[128];
    rfd_excerpt(mshow, sizeof mshow, mname ? mname : member, strlen(mname ? mname : member));
    size_t nl = strlen(path) + strlen(mshow) + 2;
    char *name = malloc(nl);
    if (!name) {
        zip_discard(za);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    snprintf(name, nl, "%s:%s", path, mshow);

    int rc = RF_OK;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
        rc = rf_err_set(e, RF_EFORMAT, "%s: cannot read the member's size: %s", name,
                        zip_strerror(za));
    }
    /* the recorded size must be plausible before anything that large is allocated */
    if (rc == RF_OK && (st.valid & ZIP_STAT_COMP_SIZE) && (st.valid & ZIP_STAT_COMP_METHOD)) {
        if (st.comp_method == ZIP_CM_STORE && st.size != st.comp_size)
            rc = rf_err_set(e, RF_EFORMAT,
                            "%s: stored member records %llu bytes but holds %llu compressed bytes",
                            name, (unsigned long long)st.size, (unsigned long long)st.comp_size);
        else if (st.comp_method == ZIP_CM_DEFLATE && st.size / 1032 > st.comp_size + 1)
            rc = rf_err_set(e, RF_EFORMAT,
                            "%s: member claims %llu bytes from %llu compressed bytes, more than "
                            "deflate can produce",
                            name, (unsigned long long)st.size, (unsigned long long)st.comp_size);
    }
    zip_file_t *zf = NULL;
    if (rc == RF_OK) {
        zf = zip_fopen_index(za, (zip_uint64_t)idx, 0);
        if (!zf)
            rc = rf_err_set(e, RF_EFORMAT, "%s: cannot open the member: %s", name,
                            zip_strerror(za));
    }
    if (rc == RF_OK) {
        zip_reader zr = {zf, name};
        rc = rfd_npy_load(zip_read, &zr, (uint64_t)st.size, name, out, e);
        if (rc == RF_OK) {
            /* reading to the end makes libzip verify the CRC */
            unsigned char extra;
            zip_int64_t k = zip_fread(zf, &extra, 1);
            if (k != 0) {
                rc = rf_err_set(e, RF_EFORMAT, "%s: %s", name,
                                k < 0 ? zip_file_strerror(zf)
                                      : "member holds more bytes than its recorded size");
                rf_ndarray_free(out);
            }
        }
    }
    if (zf) zip_fclose(zf);
    zip_discard(za);
    free(name);
    return rc;
}
