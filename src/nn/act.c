/* Elementwise activations; backward takes the pre-activation x and returns dy * act'(x).
 *   relu: max(x, 0)                      act' = [x > 0]
 *   gelu: x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2   act' = Phi(x) + x phi(x),
 *         phi(x) = exp(-x^2 / 2) / sqrt(2 pi)  (exact erf form, not the tanh approximation)
 *   tanh: tanh(x)                        act' = 1 - tanh(x)^2 */
#include <math.h>
#include <string.h>

#include "dense.h"

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

const char *rf_act_name(rf_act a) {
    switch (a) {
    case RF_ACT_RELU: return "relu";
    case RF_ACT_GELU: return "gelu";
    case RF_ACT_TANH: return "tanh";
    }
    return "unknown";
}

int rf_act_parse(const char *s, rf_act *out) {
    static const rf_act all[] = {RF_ACT_RELU, RF_ACT_GELU, RF_ACT_TANH};
    if (!s) return RF_EARG;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (strcmp(s, rf_act_name(all[i])) == 0) {
            if (out) *out = all[i];
            return RF_OK;
        }
    return RF_EARG;
}

/* x < 0 ? 0 : x keeps NaN visible (it propagates instead of becoming 0). */
void rf_act_forward(rf_act a, size_t n, const float *x, float *y) {
    switch (a) {
    case RF_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (n >= RF_NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
        break;
    case RF_ACT_GELU:
#pragma omp parallel for schedule(static) if (n >= RF_NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * INV_SQRT2));
        break;
    case RF_ACT_TANH:
#pragma omp parallel for schedule(static) if (n >= RF_NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = tanhf(x[i]);
        break;
    }
}

void rf_act_backward(rf_act a, size_t n, const float *x, const float *dy, float *dx) {
    switch (a) {
    case RF_ACT_RELU: /* a select, not a branch: the sign pattern is unpredictable */
#pragma omp parallel for simd schedule(static) if (n >= RF_NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            const float g = dy[i]; /* loaded unconditionally, so the loop vectorises */
            dx[i] = x[i] > 0.0f ? g : 0.0f;
        }
        break;
    case RF_ACT_GELU:
#pragma omp parallel for schedule(static) if (n >= RF_NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * INV_SQRT2));
            float pdf = INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
            dx[i] = dy[i] * (cdf + x[i] * pdf);
        }
        break;
    case RF_ACT_TANH:
#pragma omp parallel for schedule(static) if (n >= RF_NN_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float t = tanhf(x[i]);
            dx[i] = dy[i] * (1.0f - t * t);
        }
        break;
    }
}
