/* SHA-256 through OpenSSL's libcrypto. */
#include "renflow/core.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

void rf_sha256(const void *buf, size_t n, uint8_t out[32]) {
    unsigned int len = 32;
    EVP_Digest(buf, n, out, &len, EVP_sha256(), NULL);
}

void rf_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[bytes[i] >> 4];
        out[2 * i + 1] = d[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

int rf_sha256_file(const char *path, char hex[65], rf_err *e) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return rf_err_set(e, RF_EIO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        fclose(fp);
        return rf_err_set(e, RF_ENOMEM, "out of memory (sha256)");
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, fp)) > 0) EVP_DigestUpdate(ctx, buf, got);
    int bad = ferror(fp);
    fclose(fp);
    uint8_t md[32];
    unsigned int len = 32;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (bad) return rf_err_set(e, RF_EIO, "%s: read failed", path);
    rf_hex(md, 32, hex);
    return RF_OK;
}
