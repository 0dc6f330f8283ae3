/* AdamW (Loshchilov & Hutter), global-norm gradient clipping, warm-up + cosine schedule. */
#include <math.h>
#include <string.h>

#include "renflow/train.h"

int rf_adam_init(rf_adam *a, size_t n, rf_err *e) {
    memset(a, 0, sizeof *a);
    a->n = n;
    a->beta1 = 0.9f;
    a->beta2 = 0.999f;
    a->eps = 1e-8f;
    a->m = rf_floats(n, e);
    a->v = rf_floats(n, e);
    if (!a->m || !a->v) {
        rf_adam_free(a);
        return e ? e->code : RF_ENOMEM;
    }
    return RF_OK;
}

void rf_adam_free(rf_adam *a) {
    rf_free(a->m);
    rf_free(a->v);
    a->m = a->v = NULL;
}

void rf_adam_step(rf_adam *a, float *p, const float *g, float lr, float wd) {
    a->step++;
    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps;
    const float c1 = 1.0f / (1.0f - powf(b1, (float)a->step));
    const float c2 = 1.0f / (1.0f - powf(b2, (float)a->step));
    float *m = a->m, *v = a->v;
    const long n = (long)a->n;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= lr * ((m[i] * c1) / (sqrtf(v[i] * c2) + eps) + wd * p[i]);
    }
}

double rf_clip_grad_norm(float *g, size_t n, double max_norm) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    const double norm = sqrt(s);
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) {
        const float k = (float)(max_norm / norm);
        for (size_t i = 0; i < n; i++) g[i] *= k;
    }
    return norm;
}

double rf_lr_schedule(double lr, long t, long total, long warmup, int cosine, double min_ratio) {
    if (warmup > 0 && t < warmup) return lr * (double)(t + 1) / (double)warmup;
    if (!cosine || total <= warmup) return lr;
    double prog = (double)(t - warmup) / (double)(total - warmup);
    if (prog > 1) prog = 1;
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + cos(M_PI * prog)));
}
