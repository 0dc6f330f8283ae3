/* Pieces shared by the time-series layers (ts_*.c). Every ts layer keeps dim = D and acts on the
 * active prefix of each row (C channels x T samples, channel-major, C * T <= D); its layer ops
 * copy the rest of the row. Each ts layer also has "prefix" ops that leave the rest of the row
 * alone (neither read nor written), which the flow engine uses (rf_layer_prefix_ops, declared in
 * flow_internal.h): it carries the factored-out tail once per scale instead of every layer
 * copying it. Each ts layer's impl struct starts with `int C, T;` (the active shape; the input
 * shape for the squeeze), which rf_ts_layer_shape reads. */
#include <cjson/cJSON.h>
#include <string.h>

#include "../core/json_util.h"
#include "flow_internal.h"
#include "renflow/tsflow.h"
#include "ts_internal.h"

typedef struct {
    int C, T;
} ts_head;

static const char *const ts_kinds[] = {"ts_squeeze", "ts_actnorm", "ts_conv1x1", "ts_coupling"};

int rf_ts_layer_shape(const rf_layer *l, int *channels, int *length) {
    if (!l || !l->ops || !l->impl) return 0;
    for (size_t i = 0; i < sizeof ts_kinds / sizeof *ts_kinds; i++)
        if (strcmp(l->ops->kind, ts_kinds[i]) == 0) {
            const ts_head *h = l->impl;
            if (channels) *channels = h->C;
            if (length) *length = h->T;
            return 1;
        }
    return 0;
}

int rf_ts_check_shape(const char *who, int D, int C, int T, rf_err *e) {
    if (D < 1 || D > (1 << 24)) return rf_err_set(e, RF_EARG, "%s: dimension %d out of range", who, D);
    if (C < 1 || C > D) return rf_err_set(e, RF_EARG, "%s: channels %d out of range [1, %d]", who, C, D);
    if (T < 1 || T > D) return rf_err_set(e, RF_EARG, "%s: length %d out of range [1, %d]", who, T, D);
    if ((long long)C * T > D)
        return rf_err_set(e, RF_EARG, "%s: channels x length = %d x %d exceeds the dimension %d", who, C, T, D);
    return RF_OK;
}

cJSON *rf_ts_json_new(const char *kind, int D, int C, int T) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", kind);
    cJSON_AddNumberToObject(j, "dim", D);
    cJSON_AddNumberToObject(j, "channels", C);
    cJSON_AddNumberToObject(j, "length", T);
    return j;
}

int rf_ts_shape_from_json(const cJSON *j, const char *who, int D, int *C, int *T, rf_err *e) {
    int rc = rf_json_get_int(j, "channels", C, e);
    if (!rc) rc = rf_json_get_int(j, "length", T, e);
    if (rc) return rf_err_prefix(e, rc, "%s", who);
    if (rf_ts_check_shape(who, D, *C, *T, e) != RF_OK) {
        if (e) e->code = RF_EFORMAT; /* a file's description, not a caller's argument */
        return RF_EFORMAT;
    }
    return RF_OK;
}

/* dst[i, A..D) = src[i, A..D) for every row. */
static void copy_tail(int n, int D, int A, const float *src, float *dst) {
    if (A >= D || src == dst) return;
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * D + A, src + (size_t)i * D + A, sizeof(float) * (size_t)(D - A));
}

const rf_layer_ops *rf_ts_squeeze_prefix_ops(const rf_layer *l);
const rf_layer_ops *rf_ts_actnorm_prefix_ops(const rf_layer *l);
const rf_layer_ops *rf_ts_conv1x1_prefix_ops(const rf_layer *l);
const rf_layer_ops *rf_ts_coupling_prefix_ops(const rf_layer *l);

int rf_layer_prefix_ops(const rf_layer *l, const rf_layer_ops **ops) {
    const rf_layer_ops *(*const get[])(const rf_layer *) = {rf_ts_squeeze_prefix_ops, rf_ts_actnorm_prefix_ops,
                                                            rf_ts_conv1x1_prefix_ops, rf_ts_coupling_prefix_ops};
    for (size_t i = 0; i < sizeof get / sizeof *get; i++) {
        const rf_layer_ops *p = get[i](l);
        if (p) {
            const ts_head *h = l->impl;
            *ops = p;
            return h->C * h->T;
        }
    }
    *ops = l->ops;
    return l->dim;
}

/* The ts layers' ops proper: their prefix ops, then the rest of each row copied. */
void rf_ts_forward_tail(const rf_layer *l, const float *p, int n, const float *x, float *y, float *logdet,
                        float *cache, float *scratch) {
    const rf_layer_ops *o;
    const int A = rf_layer_prefix_ops(l, &o);
    o->forward(l, p, n, x, y, logdet, cache, scratch);
    copy_tail(n, l->dim, A, x, y);
}

void rf_ts_inverse_tail(const rf_layer *l, const float *p, int n, const float *y, float *x, float *logdet,
                        float *scratch) {
    const rf_layer_ops *o;
    const int A = rf_layer_prefix_ops(l, &o);
    o->inverse(l, p, n, y, x, logdet, scratch);
    copy_tail(n, l->dim, A, y, x);
}

void rf_ts_backward_tail(const rf_layer *l, const float *p, int n, const float *x, const float *dy,
                         const float *dlogdet, float *dx, float *dp, const float *cache, float *scratch) {
    const rf_layer_ops *o;
    const int A = rf_layer_prefix_ops(l, &o);
    o->backward(l, p, n, x, dy, dlogdet, dx, dp, cache, scratch);
    copy_tail(n, l->dim, A, dy, dx);
}
