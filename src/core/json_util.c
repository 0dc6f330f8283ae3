#include "json_util.h"

#include <cjson/cJSON.h>
#include <math.h>

int rf_json_get_string(const cJSON *j, const char *key, const char **out, rf_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return rf_err_set(e, RF_EFORMAT, "field \"%s\": missing or not a string", key);
    *out = v->valuestring;
    return RF_OK;
}

int rf_json_get_number(const cJSON *j, const char *key, double *out, rf_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return rf_err_set(e, RF_EFORMAT, "field \"%s\": missing or not a finite number", key);
    *out = v->valuedouble;
    return RF_OK;
}

int rf_json_get_int(const cJSON *j, const char *key, int *out, rf_err *e) {
    double d = 0;
    int rc = rf_json_get_number(j, key, &d, e);
    if (rc) return rc;
    if (d != floor(d) || d < -2147483647.0 || d > 2147483647.0)
        return rf_err_set(e, RF_EFORMAT, "field \"%s\": not an integer: %g", key, d);
    *out = (int)d;
    return RF_OK;
}

int rf_json_get_int_array(const cJSON *j, const char *key, int n, int lo, int hi, int *out,
                          rf_err *e) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n)
        return rf_err_set(e, RF_EFORMAT, "field \"%s\": missing or not an array of %d integers",
                          key, n);
    int i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, a) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            v->valuedouble < lo || v->valuedouble > hi)
            return rf_err_set(e, RF_EFORMAT, "field \"%s\"[%d]: expected an integer in [%d, %d]",
                              key, i, lo, hi);
        out[i++] = (int)v->valuedouble;
    }
    return RF_OK;
}

cJSON *rf_json_int_array(const int *v, int n) { return cJSON_CreateIntArray(v, n); }

cJSON *rf_json_num_or_null(double v) { return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); }

cJSON *rf_json_num_array_or_null(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; a && v && i < n; i++) cJSON_AddItemToArray(a, rf_json_num_or_null(v[i]));
    return a;
}
