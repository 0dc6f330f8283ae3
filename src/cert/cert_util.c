/* Small shared pieces of the certificate code: metric objects, repeated timing, row cycling,
 * the UTC date. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cert_internal.h"
#include "../core/json_util.h"

cJSON *cert_num(double v) { return rf_json_num_or_null(v); }

void cert_add_num(cJSON *o, const char *key, double v) { cJSON_AddItemToObject(o, key, cert_num(v)); }

cJSON *cert_metric(double value, const char *unit, const char *better, const char *method) {
    cJSON *m = cJSON_CreateObject();
    if (!m) return NULL;
    cert_add_num(m, "value", value);
    cJSON_AddStringToObject(m, "unit", unit);
    cJSON_AddStringToObject(m, "better", better);
    cJSON_AddStringToObject(m, "method", method);
    return m;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cert_time(cert_run_fn fn, void *ctx, int min_reps, int max_reps, double budget_s, cert_timing *t,
              rf_err *e) {
    memset(t, 0, sizeof *t);
    if (max_reps < 1) max_reps = 1;
    if (min_reps < 1) min_reps = 1;
    if (min_reps > max_reps) min_reps = max_reps;
    double *s = malloc(sizeof(double) * (size_t)max_reps);
    if (!s) return rf_err_set(e, RF_ENOMEM, "out of memory");
    /* one untimed warm-up run: first-touch page faults, lazy thread start */
    int rc = fn(ctx, e);
    const double t0 = rf_now();
    int n = 0;
    while (!rc && n < max_reps && (n < min_reps || rf_now() - t0 < budget_s)) {
        const double a = rf_now();
        rc = fn(ctx, e);
        s[n++] = rf_now() - a;
    }
    if (!rc && n > 0) {
        double sum = 0;
        for (int i = 0; i < n; i++) sum += s[i];
        qsort(s, (size_t)n, sizeof *s, cmp_double);
        t->reps = n;
        t->mean = sum / n;
        t->min = s[0];
        t->max = s[n - 1];
        t->median = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
        /* p99 by nearest rank: the ceil(0.99 n)-th smallest */
        int k = (int)ceil(0.99 * n) - 1;
        t->p99 = s[k < 0 ? 0 : k];
    }
    free(s);
    return rc;
}

int cert_rows(const rf_matrix *m, int n, rf_matrix *out, rf_err *e) {
    memset(out, 0, sizeof *out);
    if (m->n < 1) return rf_err_set(e, RF_EARG, "no rows to take %d from", n);
    int rc = rf_matrix_alloc(out, n, m->d, e);
    if (rc) return rc;
    for (int i = 0; i < n; i++)
        memcpy(out->x + (size_t)i * m->d, m->x + (size_t)(i % m->n) * m->d, sizeof(float) * (size_t)m->d);
    return RF_OK;
}

void cert_utc_now(char *buf, size_t n) {
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tmv);
}
