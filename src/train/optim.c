/* AdamW (Loshchilov & Hutter), global-norm gradient clipping, warm-up + cosine schedule. */
#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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

/* Parameters [i0, i1) of one AdamW step. The SSE path performs exactly the scalar operations
 * in the same order (IEEE mul, add, div and sqrt are correctly rounded either way), four at a
 * time: sqrtf itself does not vectorise without -fno-math-errno. */
static void adam_range(float *restrict p, float *restrict m, float *restrict v,
                       const float *restrict g, size_t i0, size_t i1, float b1, float b2,
                       float c1, float c2, float lr, float eps, float wd) {
    size_t i = i0;
#if defined(__SSE2__)
    const __m128 B1 = _mm_set1_ps(b1), B2 = _mm_set1_ps(b2), A1 = _mm_set1_ps(1.0f - b1),
                 A2 = _mm_set1_ps(1.0f - b2), C1 = _mm_set1_ps(c1), C2 = _mm_set1_ps(c2),
                 LR = _mm_set1_ps(lr), EPS = _mm_set1_ps(eps), WD = _mm_set1_ps(wd);
    for (; i + 4 <= i1; i += 4) {
        const __m128 gg = _mm_loadu_ps(g + i), pp = _mm_loadu_ps(p + i);
        const __m128 mm = _mm_add_ps(_mm_mul_ps(B1, _mm_loadu_ps(m + i)), _mm_mul_ps(A1, gg));
        const __m128 vv = _mm_add_ps(_mm_mul_ps(B2, _mm_loadu_ps(v + i)), _mm_mul_ps(_mm_mul_ps(A2, gg), gg));
        const __m128 den = _mm_add_ps(_mm_sqrt_ps(_mm_mul_ps(vv, C2)), EPS);
        const __m128 upd = _mm_add_ps(_mm_div_ps(_mm_mul_ps(mm, C1), den), _mm_mul_ps(WD, pp));
        _mm_storeu_ps(m + i, mm);
        _mm_storeu_ps(v + i, vv);
        _mm_storeu_ps(p + i, _mm_sub_ps(pp, _mm_mul_ps(LR, upd)));
    }
#endif
    for (; i < i1; i++) {
        m[i] = b1 * m[i] + (1.0f - b1) * g[i];
        v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        p[i] -= lr * ((m[i] * c1) / (sqrtf(v[i] * c2) + eps) + wd * p[i]);
    }
}

/* Elementwise, so splitting it over threads changes nothing in the result. */
#define ADAM_BLOCK 8192

typedef struct adam_job {
    rf_adam *a;
    float *p;
    const float *g;
    float gscale, lr, wd, c1, c2;
} adam_job;

/* Thread k of T updates a contiguous range of blocks; gradients are multiplied by gscale first
 * (g * 1 == g exactly, and g * k rounds as the old in-place scaling did). */
static void adam_task(void *ctx, int k, int T) {
    const adam_job *j = ctx;
    const size_t n = j->a->n, nb = (n + ADAM_BLOCK - 1) / ADAM_BLOCK;
    const size_t i0 = nb * (size_t)k / (size_t)T * ADAM_BLOCK, i1e = nb * (size_t)(k + 1) / (size_t)T * ADAM_BLOCK;
    const size_t i1 = i1e < n ? i1e : n;
    if (i0 >= i1) return;
    if (j->gscale == 1.0f) {
        adam_range(j->p, j->a->m, j->a->v, j->g, i0, i1, j->a->beta1, j->a->beta2, j->c1, j->c2, j->lr,
                   j->a->eps, j->wd);
        return;
    }
    float gb[ADAM_BLOCK];
    for (size_t b0 = i0; b0 < i1; b0 += ADAM_BLOCK) {
        const size_t b1 = b0 + ADAM_BLOCK < i1 ? b0 + ADAM_BLOCK : i1;
        for (size_t i = b0; i < b1; i++) gb[i - b0] = j->g[i] * j->gscale;
        adam_range(j->p + b0, j->a->m + b0, j->a->v + b0, gb, 0, b1 - b0, j->a->beta1, j->a->beta2,
                   j->c1, j->c2, j->lr, j->a->eps, j->wd);
    }
}

void rf_adam_step_scaled(rf_adam *a, float *p, const float *g, float gscale, float lr, float wd,
                         rf_flow_ws *w) {
    a->step++;
    adam_job j = {a, p, g, gscale, lr, wd, 1.0f / (1.0f - powf(a->beta1, (float)a->step)),
                  1.0f / (1.0f - powf(a->beta2, (float)a->step))};
    if (w && a->n >= 2 * ADAM_BLOCK) rf_flow_ws_run(w, adam_task, &j);
    else adam_task(&j, 0, 1);
}

void rf_adam_step(rf_adam *a, float *p, const float *g, float lr, float wd) {
    rf_adam_step_scaled(a, p, g, 1.0f, lr, wd, NULL);
}

/* The sum of squares is taken over a fixed partition (CLIP_PARTS parts, each summed in order,
 * then the parts in order), so the norm does not depend on the number of threads. */
#define CLIP_PARTS 64

typedef struct norm_job {
    const float *g;
    size_t n;
    int parts;
    double part[CLIP_PARTS];
} norm_job;

static void norm_task(void *ctx, int k, int T) {
    norm_job *j = ctx;
    for (int c = j->parts * k / T; c < j->parts * (k + 1) / T; c++) {
        const size_t i0 = j->n * (size_t)c / (size_t)j->parts, i1 = j->n * (size_t)(c + 1) / (size_t)j->parts;
        const float *g = j->g;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0; /* four chains: no add-latency bound */
        size_t i = i0;
        for (; i + 4 <= i1; i += 4) {
            s0 += (double)g[i] * g[i];
            s1 += (double)g[i + 1] * g[i + 1];
            s2 += (double)g[i + 2] * g[i + 2];
            s3 += (double)g[i + 3] * g[i + 3];
        }
        for (; i < i1; i++) s0 += (double)g[i] * g[i];
        j->part[c] = (s0 + s1) + (s2 + s3);
    }
}

double rf_grad_norm(const float *g, size_t n, rf_flow_ws *w) {
    norm_job j;
    j.g = g;
    j.n = n;
    j.parts = n >= 16384 ? CLIP_PARTS : 1;
    if (w && j.parts > 1) rf_flow_ws_run(w, norm_task, &j);
    else norm_task(&j, 0, 1);
    double s = 0;
    for (int c = 0; c < j.parts; c++) s += j.part[c];
    return sqrt(s);
}

float rf_clip_scale(double norm, double max_norm) {
    return max_norm > 0 && norm > max_norm && isfinite(norm) ? (float)(max_norm / norm) : 1.0f;
}

double rf_clip_grad_norm(float *g, size_t n, double max_norm) {
    const double norm = rf_grad_norm(g, n, NULL);
    const float k = rf_clip_scale(norm, max_norm);
    if (k != 1.0f)
        for (size_t i = 0; i < n; i++) g[i] *= k;
    return norm;
}

double rf_lr_schedule(double lr, long t, long total, long warmup, int cosine, double min_ratio) {
    if (warmup > 0 && t < warmup) return lr * (double)(t + 1) / (double)warmup;
    if (!cosine || total <= warmup) return lr;
    double prog = (double)(t - warmup) / (double)(total - warmup);
    if (prog > 1) prog = 1;
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + cos(M_PI * prog)));
}
