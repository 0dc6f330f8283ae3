/* What the certificate label and the comparison page read from a certificate, and how they write
 * it: defensive JSON accessors (a missing or mistyped field is "not measured", never an error),
 * numbers in plain units, the table of shown metrics, certificate facts (model, data, SHA-256,
 * energy method, guarantee verdict), the rating colours, a growing string buffer. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "label_internal.h"

static int utf8_len(const unsigned char *s);

void lbl_utf8_clean(char *s) {
    for (unsigned char *p = (unsigned char *)s; p && *p;) {
        const int k = utf8_len(p);
        if (k == 0) *p++ = '?';
        else p += k;
    }
}

/* ------------------------------------------------------------------ accessors */

const cJSON *lbl_get(const cJSON *o, const char *path) {
    if (!o || !path) return NULL;
    char key[128];
    const char *p = path;
    while (o && *p) {
        const char *dot = strchr(p, '.');
        size_t k = dot ? (size_t)(dot - p) : strlen(p);
        if (k >= sizeof key) return NULL;
        memcpy(key, p, k);
        key[k] = '\0';
        if (!cJSON_IsObject(o)) return NULL;
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        p = dot ? dot + 1 : p + k;
    }
    return o;
}

double lbl_num(const cJSON *o, const char *path) {
    const cJSON *v = lbl_get(o, path);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : NAN;
}

const char *lbl_str(const cJSON *o, const char *path) {
    const cJSON *v = lbl_get(o, path);
    return cJSON_IsString(v) && v->valuestring && *v->valuestring ? v->valuestring : NULL;
}

int lbl_bool(const cJSON *o, const char *path) {
    const cJSON *v = lbl_get(o, path);
    return cJSON_IsTrue(v) ? 1 : cJSON_IsFalse(v) ? 0 : -1;
}

char lbl_letter(const cJSON *o, const char *path) {
    const char *s = lbl_str(o, path);
    return s && s[0] >= 'A' && s[0] <= 'E' && !s[1] ? s[0] : 0;
}

/* ------------------------------------------------------------------ formatting */

static const char *const SUP[10] = {"\xe2\x81\xb0", "\xc2\xb9", "\xc2\xb2", "\xc2\xb3", "\xe2\x81\xb4",
                                    "\xe2\x81\xb5", "\xe2\x81\xb6", "\xe2\x81\xb7", "\xe2\x81\xb8", "\xe2\x81\xb9"};

/* strips trailing zeros of a fixed-point number ("1.50" -> "1.5", "2.00" -> "2") */
static void strip_zeros(char *s) {
    char *dot = strchr(s, '.');
    if (!dot) return;
    char *end = s + strlen(s) - 1;
    while (end > dot && *end == '0') *end-- = '\0';
    if (end == dot) *end = '\0';
}

void lbl_fmt_sig(double v, int sig, char *buf, size_t n) {
    if (!isfinite(v)) {
        snprintf(buf, n, "%s", isnan(v) ? "not a number" : v > 0 ? "infinite" : "minus infinite");
        return;
    }
    if (sig < 1) sig = 1;
    if (v == 0) {
        snprintf(buf, n, "0");
        return;
    }
    const double a = fabs(v);
    int ex = (int)floor(log10(a));
    /* rounding may carry into the next decade: 9.996 -> 10.0 */
    const double r = round(a / pow(10.0, ex - sig + 1)) * pow(10.0, ex - sig + 1);
    if (r >= pow(10.0, ex + 1)) ex++;
    if (ex >= -3 && ex < 7) {
        int dec = sig - 1 - ex;
        if (dec < 0) dec = 0;
        char t[64];
        snprintf(t, sizeof t, "%.*f", dec, v);
        strip_zeros(t);
        if (strcmp(t, "-0") == 0) snprintf(t, sizeof t, "0");
        /* thousands separators from 10,000 on (1000 and 2048 stay as they are) */
        const char *digits0 = t[0] == '-' ? t + 1 : t;
        const char *dot = strchr(t, '.');
        const size_t ilen = dot ? (size_t)(dot - digits0) : strlen(digits0);
        if (ilen >= 5) {
            char o[96];
            size_t k = 0;
            if (t[0] == '-') o[k++] = '-';
            for (size_t i = 0; i < ilen; i++) {
                if (i > 0 && (ilen - i) % 3 == 0) o[k++] = ',';
                o[k++] = digits0[i];
            }
            snprintf(o + k, sizeof o - k, "%s", dot ? dot : "");
            snprintf(buf, n, "%s", o);
        } else {
            snprintf(buf, n, "%s", t);
        }
        return;
    }
    char m[32];
    snprintf(m, sizeof m, "%.*f", sig - 1, v / pow(10.0, ex));
    strip_zeros(m);
    char e[40] = "";
    int ae = ex < 0 ? -ex : ex;
    char digits[16];
    snprintf(digits, sizeof digits, "%d", ae);
    if (ex < 0) strcat(e, "\xe2\x81\xbb"); /* superscript minus */
    for (const char *c = digits; *c; c++) strcat(e, SUP[*c - '0']);
    snprintf(buf, n, "%s \xc3\x97 10%s", m, e);
}

void lbl_fmt_count(double v, char *buf, size_t n) {
    if (!isfinite(v)) {
        lbl_fmt_sig(v, 3, buf, n);
        return;
    }
    const double a = fabs(v);
    if (a >= 1e9) {
        char t[48];
        lbl_fmt_sig(v / 1e9, 3, t, sizeof t);
        snprintf(buf, n, "%s billion", t);
    } else if (a >= 1e6) {
        char t[48];
        lbl_fmt_sig(v / 1e6, 3, t, sizeof t);
        snprintf(buf, n, "%s million", t);
    } else if (a >= 1000 || v == round(v)) {
        long long k = llround(v);
        char raw[32], out[48];
        snprintf(raw, sizeof raw, "%lld", k < 0 ? -k : k);
        size_t L = strlen(raw), o = 0;
        if (k < 0) out[o++] = '-';
        for (size_t i = 0; i < L; i++) {
            if (i > 0 && (L - i) % 3 == 0) out[o++] = ',';
            out[o++] = raw[i];
        }
        out[o] = '\0';
        snprintf(buf, n, "%s", out);
    } else {
        lbl_fmt_sig(v, 3, buf, n);
    }
}

void lbl_fmt_seconds(double s, char *buf, size_t n) {
    char t[48];
    if (!isfinite(s) || s < 0) {
        lbl_fmt_sig(s, 3, t, sizeof t);
        snprintf(buf, n, "%s s", t);
    } else if (s == 0) {
        snprintf(buf, n, "0 s");
    } else if (s < 1e-6) {
        lbl_fmt_sig(s * 1e9, 3, t, sizeof t);
        snprintf(buf, n, "%s ns", t);
    } else if (s < 1e-3) {
        lbl_fmt_sig(s * 1e6, 3, t, sizeof t);
        snprintf(buf, n, "%s \xc2\xb5s", t);
    } else if (s < 1) {
        lbl_fmt_sig(s * 1e3, 3, t, sizeof t);
        snprintf(buf, n, "%s ms", t);
    } else if (s < 100) {
        lbl_fmt_sig(s, 3, t, sizeof t);
        snprintf(buf, n, "%s s", t);
    } else if (s < 3600) {
        long k = lround(s);
        snprintf(buf, n, "%ld min %ld s", k / 60, k % 60);
    } else {
        long k = lround(s / 60);
        snprintf(buf, n, "%ld h %ld min", k / 60, k % 60);
    }
}

void lbl_fmt_bytes(double b, char *buf, size_t n) {
    static const char *const U[] = {"B", "kB", "MB", "GB", "TB"};
    char t[48];
    if (!isfinite(b)) {
        lbl_fmt_sig(b, 3, t, sizeof t);
        snprintf(buf, n, "%s bytes", t);
        return;
    }
    int k = 0;
    double a = b;
    while (fabs(a) >= 1000 && k < 4) {
        a /= 1000;
        k++;
    }
    lbl_fmt_sig(a, 3, t, sizeof t);
    snprintf(buf, n, "%s %s", t, U[k]);
}

void lbl_fmt_si(double v, const char *unit, char *buf, size_t n) {
    static const char *const P[] = {"p", "n", "\xc2\xb5", "m", "", "k", "M", "G", "T", "P"};
    char t[48];
    if (!isfinite(v) || v == 0) {
        lbl_fmt_sig(v, 3, t, sizeof t);
        snprintf(buf, n, "%s %s", t, unit);
        return;
    }
    int k = (int)floor(log10(fabs(v)) / 3);
    if (k < -4) k = -4;
    if (k > 5) k = 5;
    double m = v / pow(1000.0, k);
    if (fabs(m) >= 999.5 && k < 5) { /* 999.7 would print as 1000 */
        m /= 1000;
        k++;
    }
    lbl_fmt_sig(m, 3, t, sizeof t);
    snprintf(buf, n, "%s %s%s", t, P[k + 4], unit);
}

/* ------------------------------------------------------------------ the metrics shown */

const lbl_metric_desc lbl_metrics[] = {
    {"nll", "perplexity_per_dim", "Test negative log-likelihood", "how unlikely the test data are under the model",
     LBL_F_NATS, LBL_SEC_QUALITY, 0, 0},
    {"bits_per_dim", "perplexity_per_dim", "Bits per dimension", "the same, in bits per input value",
     LBL_F_BITS, LBL_SEC_QUALITY, 0, 0},
    {"hdr_calibration_error", NULL, "Density calibration error",
     "test data in the model's 50-99 % regions: how far off", LBL_F_PERCENT, LBL_SEC_QUALITY, 0, 0},
    {"accuracy", NULL, "Classification accuracy", "share of test rows given the right class", LBL_F_PERCENT,
     LBL_SEC_QUALITY, 1, 1},
    {"balanced_accuracy", NULL, "Balanced accuracy", "accuracy averaged over the classes", LBL_F_PERCENT,
     LBL_SEC_QUALITY, 1, 1},
    {"macro_f1", NULL, "Macro-averaged F1 score", "precision and recall, averaged over classes", LBL_F_PERCENT,
     LBL_SEC_QUALITY, 1, 1},
    {"kappa", NULL, "Cohen's kappa", "agreement with the labels beyond chance (1 = perfect)", LBL_F_PLAIN,
     LBL_SEC_QUALITY, 1, 1},
    {"ece", NULL, "Calibration error of class probabilities", "stated confidence vs. actual accuracy (ECE)",
     LBL_F_PERCENT, LBL_SEC_QUALITY, 0, 1},
    {"n_params", NULL, "Parameters", "numbers learned from the training data", LBL_F_COUNT, LBL_SEC_COST, 0, 0},
    {"flops_log_density", NULL, "Arithmetic per evaluation", "floating-point operations to score one example",
     LBL_F_FLOP, LBL_SEC_COST, 0, 0},
    {"flops_sample", NULL, "Arithmetic per generated sample", "floating-point operations to draw one sample",
     LBL_F_FLOP, LBL_SEC_COST, 0, 0},
    {"latency_sample", NULL, "Time to score one example", "median wall-clock time of one call",
     LBL_F_SECONDS, LBL_SEC_COST, 0, 0},
    {"latency_batch", NULL, "Time to score a batch", "median wall-clock time per batch", LBL_F_SECONDS,
     LBL_SEC_COST, 0, 0},
    {"sampling_rate", NULL, "Sampling speed", "new samples generated per second", LBL_F_RATE, LBL_SEC_COST, 1, 0},
    {"peak_memory", NULL, "Peak memory", "parameters plus working memory of inference", LBL_F_BYTES,
     LBL_SEC_COST, 0, 0},
    {"train_seconds", NULL, "Training time", "wall-clock time to fit the model", LBL_F_SECONDS, LBL_SEC_COST, 0, 0},
    {"energy_log_density", NULL, "Energy per 1000 evaluations", "to score 1000 examples", LBL_F_JOULE,
     LBL_SEC_ENERGY, 0, 0},
    {"energy_sample", NULL, "Energy per 1000 samples", "to generate 1000 samples", LBL_F_JOULE, LBL_SEC_ENERGY, 0,
     0},
};
const int lbl_n_metrics = (int)(sizeof lbl_metrics / sizeof *lbl_metrics);

void lbl_fmt_metric(const lbl_metric_desc *d, double v, char *buf, size_t n) {
    char t[64];
    if (!isfinite(v)) {
        if (n) buf[0] = '\0';
        return;
    }
    switch (d->fmt) {
    case LBL_F_NATS:
        lbl_fmt_sig(v, 4, t, sizeof t);
        snprintf(buf, n, "%s nats", t);
        break;
    case LBL_F_BITS:
        lbl_fmt_sig(v, 3, t, sizeof t);
        snprintf(buf, n, "%s bits", t);
        break;
    case LBL_F_PERCENT:
        lbl_fmt_sig(100 * v, 3, t, sizeof t);
        snprintf(buf, n, "%s %%", t);
        break;
    case LBL_F_PLAIN: lbl_fmt_sig(v, 3, buf, n); break;
    case LBL_F_COUNT: lbl_fmt_count(v, buf, n); break;
    case LBL_F_FLOP: lbl_fmt_si(v, "FLOP", buf, n); break;
    case LBL_F_SECONDS: lbl_fmt_seconds(v, buf, n); break;
    case LBL_F_BYTES: lbl_fmt_bytes(v, buf, n); break;
    case LBL_F_RATE:
        lbl_fmt_count(v >= 100 ? round(v) : v, t, sizeof t);
        snprintf(buf, n, "%s per s", t);
        break;
    case LBL_F_JOULE: lbl_fmt_si(1000 * v, "J", buf, n); break;
    }
}

/* ------------------------------------------------------------------ certificate facts */

const char *lbl_ref_display(const char *kind) {
    if (!kind) return "reference model";
    if (!strcmp(kind, "gaussian")) return "full-covariance Gaussian";
    if (!strcmp(kind, "gmm")) return "Gaussian mixture (EM)";
    if (!strcmp(kind, "kde")) return "kernel density estimate";
    return kind;
}

const char *lbl_ref_short(const char *kind) {
    if (!kind) return "reference";
    if (!strcmp(kind, "gaussian")) return "Gaussian";
    if (!strcmp(kind, "gmm")) return "mixture";
    if (!strcmp(kind, "kde")) return "KDE";
    return kind;
}

static int is_hex64(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F'))) return 0;
    return 1;
}

int lbl_data_sha(const cJSON *cert, char hex[65], int *combined) {
    *combined = 0;
    hex[0] = '\0';
    const cJSON *f = lbl_get(cert, "data.test.file");
    const char *s = lbl_str(f, "sha256");
    if (is_hex64(s)) {
        snprintf(hex, 65, "%s", s);
        return 1;
    }
    const cJSON *files = lbl_get(f, "files");
    if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) < 1) return 0;
    lbl_buf b = {0};
    const cJSON *it;
    int any_npy = 0; /* the data files, as rf_cert_file_json digests them */
    cJSON_ArrayForEach(it, files) {
        const char *nm = lbl_str(it, "name");
        any_npy |= nm && rf_cert_is_npy_name(nm);
    }
    cJSON_ArrayForEach(it, files) {
        const char *nm = lbl_str(it, "name"), *h = lbl_str(it, "sha256");
        if (!nm || !is_hex64(h)) {
            lbl_buf_free(&b);
            return 0;
        }
        if (!any_npy || rf_cert_is_npy_name(nm)) lbl_buf_printf(&b, "%s %s\n", nm, h);
    }
    if (b.oom || !b.s) {
        lbl_buf_free(&b);
        return 0;
    }
    uint8_t d[32];
    rf_sha256(b.s, b.len, d);
    rf_hex(d, 32, hex);
    lbl_buf_free(&b);
    *combined = 1;
    return 1;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s && s[1] ? s + 1 : p;
}

void lbl_data_name(const cJSON *cert, char *buf, size_t n) {
    const char *p = lbl_str(cert, "data.test.file.path");
    if (!p) {
        if (n) buf[0] = '\0';
        return;
    }
    /* a directory given with a trailing slash: its last component */
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", p);
    size_t L = strlen(tmp);
    while (L > 1 && tmp[L - 1] == '/') tmp[--L] = '\0';
    snprintf(buf, n, "%s", base_name(tmp));
    lbl_utf8_clean(buf);
}

void lbl_model_name(const cJSON *cert, char *buf, size_t n) {
    const char *s = lbl_str(cert, "model.name");
    if (!s) s = lbl_str(cert, "model.path");
    snprintf(buf, n, "%s", s ? base_name(s) : "unnamed model");
    lbl_utf8_clean(buf);
}

static const char *flow_display(const char *t) {
    static const char *const M[][2] = {{"realnvp", "RealNVP"},         {"glow", "Glow"},
                                       {"maf", "masked autoregressive"}, {"nsf", "neural spline"},
                                       {"nsf-ar", "autoregressive neural spline"}, {"tsflow", "multi-scale time-series"}};
    for (size_t i = 0; t && i < sizeof M / sizeof *M; i++)
        if (!strcmp(t, M[i][0])) return M[i][1];
    return t;
}

void lbl_model_kind(const cJSON *cert, char *buf, size_t n) {
    const char *flow = flow_display(lbl_str(cert, "model.flow"));
    const double layers = lbl_num(cert, "model.n_layers"), dim = lbl_num(cert, "model.dim");
    const double C = lbl_num(cert, "model.n_classes");
    const int cc = lbl_bool(cert, "model.class_conditional");
    char t[160] = "";
    size_t k = 0;
    k += (size_t)snprintf(t + k, sizeof t - k, "%s", flow ? "Normalizing flow" : "Probability model");
    if (flow) k += (size_t)snprintf(t + k, sizeof t - k, " (%s)", flow);
    if (isfinite(layers) && k < sizeof t) k += (size_t)snprintf(t + k, sizeof t - k, ", %.0f layers", layers);
    if (isfinite(dim) && k < sizeof t) k += (size_t)snprintf(t + k, sizeof t - k, ", %.0f input values", dim);
    if (cc == 1 && k < sizeof t) {
        if (isfinite(C) && C > 0) k += (size_t)snprintf(t + k, sizeof t - k, ", one density per class (%.0f classes)", C);
        else k += (size_t)snprintf(t + k, sizeof t - k, ", one density per class");
    } else if (cc == 0 && k < sizeof t) {
        snprintf(t + k, sizeof t - k, ", density model");
    }
    snprintf(buf, n, "%s", t);
    lbl_utf8_clean(buf);
}

int lbl_energy_method(const cJSON *cert, char *buf, size_t n) {
    const char *m = lbl_str(cert, "energy.method");
    int measured = lbl_bool(cert, "energy.measured");
    double w = lbl_num(cert, "energy.watts_per_core");
    if (!m) { /* fall back on the metric's own fields */
        m = lbl_str(cert, "metrics.energy_log_density.energy_method");
        int est = lbl_bool(cert, "metrics.energy_log_density.estimated");
        if (est >= 0) measured = !est;
    }
    if (measured < 0 && m) measured = strncmp(m, "estimated", 9) != 0;
    if (measured < 0) {
        snprintf(buf, n, "energy method not recorded");
        return -1;
    }
    if (measured) {
        const char *how = m && !strcmp(m, "perf-power")      ? "RAPL, via perf power events"
                          : m && !strcmp(m, "rapl-powercap") ? "RAPL, powercap counters"
                                                             : "RAPL";
        snprintf(buf, n, "measured (%s)", m && strcmp(m, "perf-power") && strcmp(m, "rapl-powercap") ? m : how);
        return 1;
    }
    if (isfinite(w)) {
        char t[48];
        lbl_fmt_sig(w, 3, t, sizeof t);
        snprintf(buf, n, "ESTIMATED (CPU time \xc3\x97 %s W per core)", t);
    } else {
        snprintf(buf, n, "ESTIMATED (from CPU time)");
    }
    return 0;
}

int lbl_guarantees_verdict(const cJSON *cert, int *n_fail, int *n_unverified) {
    *n_fail = 0;
    if (n_unverified) *n_unverified = 0;
    const cJSON *g = lbl_get(cert, "guarantees");
    if (!cJSON_IsObject(g)) return -1;
    const cJSON *checks = lbl_get(g, "checks"), *c;
    int any = 0, unver = 0;
    cJSON_ArrayForEach(c, checks) {
        const int p = lbl_bool(c, "pass");
        const char *st = lbl_str(c, "status");
        if (p == 0 || (p < 0 && st && !strcmp(st, "fail"))) (*n_fail)++;
        else if (p < 0 && !(st && !strcmp(st, "pass"))) unver++;
        if (p >= 0) any = 1;
    }
    if (n_unverified) *n_unverified = unver;
    const int pass = lbl_bool(g, "pass");
    if (pass == 0 && *n_fail == 0) *n_fail = 1; /* the verdict says failed: trust it */
    if (*n_fail) return 0;
    if (!any && pass != 1) return -1;
    return unver ? 2 : 1;
}

/* ------------------------------------------------------------------ colours */

viz_rgb lbl_letter_rgb(char letter) {
    switch (letter) {
    case 'A': return (viz_rgb){0.000, 0.510, 0.235};
    case 'B': return (viz_rgb){0.333, 0.659, 0.180};
    case 'C': return (viz_rgb){0.957, 0.780, 0.000};
    case 'D': return (viz_rgb){0.937, 0.494, 0.078};
    case 'E': return (viz_rgb){0.835, 0.122, 0.122};
    default: return (viz_rgb){0.62, 0.62, 0.64};
    }
}

int lbl_letter_dark_text(char letter) { return letter == 'C'; }

void lbl_letter_hex(char letter, char out[8]) {
    viz_rgb c = lbl_letter_rgb(letter);
    snprintf(out, 8, "#%02x%02x%02x", (int)lround(c.r * 255), (int)lround(c.g * 255), (int)lround(c.b * 255));
}

/* ------------------------------------------------------------------ buffer */

void lbl_buf_add(lbl_buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->len + n + 1) c *= 2;
        char *t = realloc(b->s, c);
        if (!t) {
            b->oom = 1;
            return;
        }
        b->s = t;
        b->cap = c;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void lbl_buf_puts(lbl_buf *b, const char *s) { lbl_buf_add(b, s, strlen(s)); }

void lbl_buf_printf(lbl_buf *b, const char *fmt, ...) {
    char small[1024];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof small) {
        lbl_buf_add(b, small, (size_t)k);
        return;
    }
    char *big = malloc((size_t)k + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    lbl_buf_add(b, big, (size_t)k);
    free(big);
}

/* Length of the valid UTF-8 sequence at s (no overlongs, surrogates or code points above
 * U+10FFFF), 0 when invalid. */
static int utf8_len(const unsigned char *s) {
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    int n;
    unsigned min, cp;
    if ((c & 0xE0) == 0xC0) n = 2, min = 0x80, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) n = 3, min = 0x800, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) n = 4, min = 0x10000, cp = c & 0x07;
    else return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

void lbl_buf_xml(lbl_buf *b, const char *s) {
    for (const char *p = s; p && *p; p++) {
        const int k = utf8_len((const unsigned char *)p);
        if (k != 1) { /* a multi-byte character as it is; an invalid byte as '?' (XML must be UTF-8) */
            if (k == 0) lbl_buf_puts(b, "?");
            else lbl_buf_add(b, p, (size_t)k), p += k - 1;
            continue;
        }
        switch (*p) {
        case '<': lbl_buf_puts(b, "&lt;"); break;
        case '>': lbl_buf_puts(b, "&gt;"); break;
        case '&': lbl_buf_puts(b, "&amp;"); break;
        case '"': lbl_buf_puts(b, "&quot;"); break;
        case '\'': lbl_buf_puts(b, "&#39;"); break;
        default:
            /* control characters are not allowed in XML 1.0 */
            if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t') lbl_buf_puts(b, " ");
            else lbl_buf_add(b, p, 1);
        }
    }
}

void lbl_buf_free(lbl_buf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

int lbl_mkdir_p(const char *dir, rf_err *e) {
    char p[4096];
    if (!dir || !*dir) return rf_err_set(e, RF_EARG, "no output directory given");
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return rf_err_set(e, RF_EARG, "output directory name too long: %s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) return rf_err_set(e, RF_EIO, "%s: cannot create: %s", p, strerror(errno));
            *c = '/';
        }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) return rf_err_set(e, RF_EIO, "%s: cannot create: %s", p, strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) return rf_err_set(e, RF_EIO, "%s: exists and is not a directory", p);
    return RF_OK;
}
