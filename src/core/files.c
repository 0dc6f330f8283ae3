/* Atomic writes (temp file + fsync + rename) and whole-file reads. */
#include "renflow/core.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct rf_afile {
    FILE *fp;
    char *path;
    char *tmp;
};

rf_afile *rf_afile_open(const char *path, rf_err *e) {
    rf_afile *f = rf_zalloc(sizeof *f, e);
    if (!f) return NULL;
    size_t n = strlen(path) + 64;
    f->path = strdup(path);
    f->tmp = malloc(n);
    if (!f->path || !f->tmp) {
        free(f->path);
        free(f->tmp);
        free(f);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(f->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        rf_err_set(e, RF_EIO, "%s: cannot create temporary file %s: %s", path, f->tmp,
                   strerror(errno));
        free(f->path);
        free(f->tmp);
        free(f);
        return NULL;
    }
    return f;
}

FILE *rf_afile_fp(rf_afile *f) { return f->fp; }

int rf_afile_write(rf_afile *f, const void *buf, size_t n, rf_err *e) {
    if (n && fwrite(buf, 1, n, f->fp) != n)
        return rf_err_set(e, RF_EIO, "%s: write failed: %s", f->path, strerror(errno));
    return RF_OK;
}

static void afile_release(rf_afile *f) {
    free(f->path);
    free(f->tmp);
    free(f);
}

int rf_afile_commit(rf_afile *f, rf_err *e) {
    int rc = RF_OK;
    if (fflush(f->fp) != 0 || ferror(f->fp))
        rc = rf_err_set(e, RF_EIO, "%s: write failed: %s", f->path, strerror(errno));
    if (rc == RF_OK && fsync(fileno(f->fp)) != 0)
        rc = rf_err_set(e, RF_EIO, "%s: fsync failed: %s", f->path, strerror(errno));
    if (fclose(f->fp) != 0 && rc == RF_OK)
        rc = rf_err_set(e, RF_EIO, "%s: close failed: %s", f->path, strerror(errno));
    if (rc == RF_OK && rename(f->tmp, f->path) != 0)
        rc = rf_err_set(e, RF_EIO, "%s: cannot rename %s into place: %s", f->path, f->tmp,
                        strerror(errno));
    if (rc != RF_OK) unlink(f->tmp);
    afile_release(f);
    return rc;
}

void rf_afile_abort(rf_afile *f) {
    if (!f) return;
    fclose(f->fp);
    unlink(f->tmp);
    afile_release(f);
}

int rf_write_file_atomic(const char *path, const void *buf, size_t len, rf_err *e) {
    rf_afile *f = rf_afile_open(path, e);
    if (!f) return e ? e->code : RF_EIO;
    int rc = rf_afile_write(f, buf, len, e);
    if (rc != RF_OK) {
        rf_afile_abort(f);
        return rc;
    }
    return rf_afile_commit(f, e);
}

int rf_read_file(const char *path, unsigned char **buf, size_t *len, rf_err *e) {
    *buf = NULL;
    *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return rf_err_set(e, RF_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return rf_err_set(e, RF_EIO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = malloc(n + 1);
    if (!b) {
        fclose(fp);
        return rf_err_set(e, RF_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(b, 1, n, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || got != n) {
        free(b);
        return rf_err_set(e, RF_EIO, "%s: read failed (%zu of %zu bytes)", path, got, n);
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return RF_OK;
}
