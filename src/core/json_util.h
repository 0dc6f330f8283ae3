/* Private: strict JSON field getters with messages that name the field and the value. */
#ifndef RF_JSON_UTIL_H
#define RF_JSON_UTIL_H

#include "renflow/core.h"

struct cJSON;
int rf_json_get_string(const struct cJSON *j, const char *key, const char **out, rf_err *e);
int rf_json_get_number(const struct cJSON *j, const char *key, double *out, rf_err *e);
int rf_json_get_int(const struct cJSON *j, const char *key, int *out, rf_err *e);
/* Integer array of exactly n entries, each in [lo, hi]. */
int rf_json_get_int_array(const struct cJSON *j, const char *key, int n, int lo, int hi, int *out,
                          rf_err *e);
struct cJSON *rf_json_int_array(const int *v, int n);
/* A number, or null when v is not finite (JSON has no NaN or infinity). */
struct cJSON *rf_json_num_or_null(double v);
/* An array of n such values (an empty array for v == NULL). */
struct cJSON *rf_json_num_array_or_null(const double *v, int n);

#endif
