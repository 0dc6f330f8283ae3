/* Private: the elementwise monotone transforms that coupling and autoregressive layers apply to
 * each transformed coordinate, given per-coordinate parameters theta from a conditioner.
 *   affine: theta = (raw_s, t), s = clamp * tanh(raw_s / clamp), y = x * exp(s) + t
 *   rqs:    theta = 3K-1 spline parameters (see rf_rqs_* in renflow/flow.h)
 * theta = 0 is the identity for both. */
#ifndef RF_FLOW_XFORM_H
#define RF_FLOW_XFORM_H

#include <math.h>

#include "renflow/flow.h"

typedef enum { RF_XFORM_AFFINE = 0, RF_XFORM_RQS = 1 } rf_xform_kind;

typedef struct rf_xform {
    rf_xform_kind kind;
    float clamp; /* affine; <= 0 means no soft clamp */
    int bins;    /* rqs */
    float bound; /* rqs */
} rf_xform;

static inline int rf_xform_n_theta(const rf_xform *t) {
    return t->kind == RF_XFORM_AFFINE ? 2 : rf_rqs_n_params(t->bins);
}

static inline float rf_xform_affine_s(const rf_xform *t, float raw) {
    return t->clamp > 0 ? t->clamp * tanhf(raw / t->clamp) : raw;
}

static inline void rf_xform_forward(const rf_xform *t, const float *theta, float x, float *y,
                                    float *ld) {
    if (t->kind == RF_XFORM_AFFINE) {
        float s = rf_xform_affine_s(t, theta[0]);
        *y = x * expf(s) + theta[1];
        *ld = s;
    } else {
        rf_rqs_forward(t->bins, t->bound, theta, x, y, ld);
    }
}

static inline void rf_xform_inverse(const rf_xform *t, const float *theta, float y, float *x,
                                    float *ld) {
    if (t->kind == RF_XFORM_AFFINE) {
        float s = rf_xform_affine_s(t, theta[0]);
        *x = (y - theta[1]) * expf(-s);
        *ld = -s;
    } else {
        rf_rqs_inverse(t->bins, t->bound, theta, y, x, ld);
    }
}

/* Gradient of gy * y + gld * ld w.r.t. x (returned) and theta (dtheta, overwritten). */
static inline float rf_xform_backward(const rf_xform *t, const float *theta, float x, float gy,
                                      float gld, float *dtheta) {
    if (t->kind == RF_XFORM_AFFINE) {
        float s = rf_xform_affine_s(t, theta[0]);
        float es = expf(s);
        float ds = gy * x * es + gld;
        float dsdraw = 1.0f;
        if (t->clamp > 0) {
            float th = tanhf(theta[0] / t->clamp);
            dsdraw = 1.0f - th * th;
        }
        dtheta[0] = ds * dsdraw;
        dtheta[1] = gy;
        return gy * es;
    }
    return rf_rqs_backward(t->bins, t->bound, theta, x, gy, gld, dtheta);
}

/* JSON helpers shared by the layers that carry a transform. */
struct cJSON;
void rf_xform_to_json(const rf_xform *t, struct cJSON *j);
int rf_xform_from_json(const struct cJSON *j, rf_xform *t, rf_err *e);
int rf_xform_check(const rf_xform *t, rf_err *e);

#endif
