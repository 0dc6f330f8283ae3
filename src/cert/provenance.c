/* Provenance: what was certified (file hashes) and where (library, compiler and flags as seen by
 * the compiler's predefined macros, BLAS build, CPU, kernel, date). */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <openssl/evp.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "cert_internal.h"

/* OpenBLAS reports its build (version, target, threading) */
char *openblas_get_config(void);

static void cpu_model(char *buf, size_t n) {
    snprintf(buf, n, "unknown");
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp) return;
    char line[512];
    while (fgets(line, sizeof line, fp)) {
        if (strncmp(line, "model name", 10) && strncmp(line, "Processor", 9) && strncmp(line, "cpu model", 9)) continue;
        const char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        snprintf(buf, n, "%s", c);
        buf[strcspn(buf, "\n")] = '\0';
        break;
    }
    fclose(fp);
}

cJSON *rf_cert_environment_json(void) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    char buf[512];
    cJSON_AddStringToObject(j, "library", "renflow");
    cJSON_AddStringToObject(j, "version", RF_VERSION_STRING);
#if defined(__clang__)
    snprintf(buf, sizeof buf, "clang %s", __clang_version__);
#elif defined(__GNUC__)
    snprintf(buf, sizeof buf, "gcc %s", __VERSION__);
#else
    snprintf(buf, sizeof buf, "unknown C compiler");
#endif
    cJSON_AddStringToObject(j, "compiler", buf);
    cJSON_AddNumberToObject(j, "c_standard", (double)__STDC_VERSION__);
    cJSON *fl = cJSON_AddObjectToObject(j, "flags");
    cJSON_AddStringToObject(fl, "source", "the compiler's predefined macros when src/cert was compiled");
#ifdef __OPTIMIZE__
    cJSON_AddBoolToObject(fl, "optimize", 1);
#else
    cJSON_AddBoolToObject(fl, "optimize", 0);
#endif
#ifdef NDEBUG
    cJSON_AddBoolToObject(fl, "ndebug", 1);
#else
    cJSON_AddBoolToObject(fl, "ndebug", 0);
#endif
#if defined(__SANITIZE_ADDRESS__)
    cJSON_AddBoolToObject(fl, "address_sanitizer", 1);
#else
    cJSON_AddBoolToObject(fl, "address_sanitizer", 0);
#endif
#ifdef _OPENMP
    cJSON_AddNumberToObject(fl, "openmp", _OPENMP);
#endif
    cJSON *isa = cJSON_AddArrayToObject(fl, "instruction_sets");
    (void)isa; /* no instruction-set macro may be defined */
#ifdef __SSE4_2__
    cJSON_AddItemToArray(isa, cJSON_CreateString("sse4.2"));
#endif
#ifdef __AVX__
    cJSON_AddItemToArray(isa, cJSON_CreateString("avx"));
#endif
#ifdef __AVX2__
    cJSON_AddItemToArray(isa, cJSON_CreateString("avx2"));
#endif
#ifdef __FMA__
    cJSON_AddItemToArray(isa, cJSON_CreateString("fma"));
#endif
#ifdef __AVX512F__
    cJSON_AddItemToArray(isa, cJSON_CreateString("avx512f"));
#endif
#ifdef __aarch64__
    cJSON_AddItemToArray(isa, cJSON_CreateString("aarch64"));
#endif
#ifdef __FAST_MATH__
    cJSON_AddBoolToObject(fl, "fast_math", 1);
#else
    cJSON_AddBoolToObject(fl, "fast_math", 0);
#endif
    const char *ob = openblas_get_config();
    cJSON_AddStringToObject(j, "blas", ob ? ob : "unknown");
    cpu_model(buf, sizeof buf);
    cJSON_AddStringToObject(j, "cpu_model", buf);
    cJSON_AddNumberToObject(j, "logical_cpus", (double)sysconf(_SC_NPROCESSORS_ONLN));
    cJSON_AddNumberToObject(j, "threads", rf_get_threads());
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(buf, sizeof buf, "%s %s %s", u.sysname, u.release, u.machine);
        cJSON_AddStringToObject(j, "kernel", buf);
    }
    cert_utc_now(buf, sizeof buf);
    cJSON_AddStringToObject(j, "created", buf);
    return j;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int rf_cert_is_npy_name(const char *name) {
    const size_t n = strlen(name);
    return n > 4 && !strcmp(name + n - 4, ".npy");
}

cJSON *rf_cert_file_json(const char *path, rf_err *e) {
    if (!path) return NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        rf_err_set(e, RF_EIO, "%s: cannot stat: %s", path, strerror(errno));
        return NULL;
    }
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "path", path);
    char hex[65];
    if (S_ISDIR(st.st_mode)) {
        cJSON_AddStringToObject(j, "kind", "directory");
        DIR *d = opendir(path);
        if (!d) {
            rf_err_set(e, RF_EIO, "%s: cannot open the directory: %s", path, strerror(errno));
            cJSON_Delete(j);
            return NULL;
        }
        char **names = NULL;
        int nn = 0, capn = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            if (nn == capn) {
                capn = capn ? 2 * capn : 16;
                char **t = realloc(names, sizeof(char *) * (size_t)capn);
                if (!t) break;
                names = t;
            }
            names[nn++] = strdup(de->d_name);
        }
        closedir(d);
        if (nn > 0) qsort(names, (size_t)nn, sizeof *names, cmp_name);
        cJSON *fs = cJSON_AddArrayToObject(j, "files");
        double total = 0;
        int rc = RF_OK;
        /* the directory's digest: SHA-256 over the lines "NAME SHA256\n" of its data files, sorted
         * by name (bytewise), the same text the label and compare code hash when a certificate
         * lists only the files. Data files: the .npy arrays when there are any (a prepared EEG
         * directory: windows, labels, subjects; its manifest.json records where the recordings
         * were read from, so the same data prepared elsewhere would otherwise get another
         * digest), else every regular file. */
        int any_npy = 0;
        for (int i = 0; i < nn; i++) any_npy |= names[i] && rf_cert_is_npy_name(names[i]);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) rc = rf_err_set(e, RF_ENOMEM, "%s: SHA-256 init failed", path);
        for (int i = 0; i < nn; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", path, names[i] ? names[i] : "");
            struct stat s2;
            if (!names[i] || stat(p, &s2) != 0 || !S_ISREG(s2.st_mode)) continue;
            if (!rc) rc = rf_sha256_file(p, hex, e);
            if (rc) continue;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", names[i]);
            cJSON_AddStringToObject(o, "sha256", hex);
            cJSON_AddNumberToObject(o, "bytes", (double)s2.st_size);
            cJSON_AddItemToArray(fs, o);
            total += (double)s2.st_size;
            if (any_npy && !rf_cert_is_npy_name(names[i])) continue;
            if (EVP_DigestUpdate(md, names[i], strlen(names[i])) != 1 || EVP_DigestUpdate(md, " ", 1) != 1 ||
                EVP_DigestUpdate(md, hex, 64) != 1 || EVP_DigestUpdate(md, "\n", 1) != 1)
                rc = rf_err_set(e, RF_ENOMEM, "%s: SHA-256 update failed", path);
        }
        unsigned char dg[32];
        unsigned int dl = 0;
        if (!rc && EVP_DigestFinal_ex(md, dg, &dl) != 1) rc = rf_err_set(e, RF_ENOMEM, "%s: SHA-256 failed", path);
        EVP_MD_CTX_free(md);
        for (int i = 0; i < nn; i++) free(names[i]);
        free(names);
        if (rc) {
            cJSON_Delete(j);
            return NULL;
        }
        cJSON_AddNumberToObject(j, "bytes", total);
        rf_hex(dg, 32, hex);
        cJSON_AddStringToObject(j, "sha256", hex);
        cJSON_AddStringToObject(j, "sha256_of",
                                any_npy ? "the lines \"NAME SHA256\\n\" of the directory's .npy files (the data arrays), "
                                          "sorted by name; other files are listed but not in the digest"
                                        : "the lines \"NAME SHA256\\n\" of the directory's regular files, sorted by name");
        return j;
    }
    cJSON_AddStringToObject(j, "kind", "file");
    if (rf_sha256_file(path, hex, e)) {
        cJSON_Delete(j);
        return NULL;
    }
    cJSON_AddStringToObject(j, "sha256", hex);
    cJSON_AddNumberToObject(j, "bytes", (double)st.st_size);
    return j;
}
