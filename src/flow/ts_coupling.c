/* Coupling over channels for time series. On the active block (C channels x T samples,
 * channel-major) the first ca = floor(C/2) channels (a) pass through and feed a 1-D conv net
 * (src/nn/conv1d.c) that outputs, at every time step, nt parameters for each of the other
 * cb = C - ca channels (b):
 *   y_a = x_a,   y_b[c, t] = f(x_b[c, t]; theta[t, c] = conv(x_a)[t, c*nt .. c*nt+nt)),
 *   log|det| = sum_{c, t} log f'(x_b[c, t]),
 * with f affine (soft-clamped log-scale) or a rational-quadratic spline (xform.h). The net's last
 * layer is zero-initialised and theta = 0 is the identity, so a fresh layer is the identity.
 * Spline: the conv net works position-major (rf_conv1d_forward): its input is x_a transposed to
 * (n*T x ca), its output theta (n*T x cb*nt), so each element's nt parameters are contiguous.
 * Affine: the net runs on grid buffers (src/nn/conv1d.h: channel-major blocks of whole sequences
 * with zero padding between them, direct convolution kernels): x_a is copied in channel by
 * channel (contiguous runs of T samples), and theta comes out with 2 cb channels, channel 2c the
 * raw log-scales of channel c and 2c+1 its shifts, each sequence's T steps contiguous, so the
 * transform runs vectorised along the time steps of a channel, which are contiguous in x and y
 * too; dtheta goes back the same way (zero padding set before the net's backward).
 * Cache: x_a | theta | conv cache (grid buffers for the affine layer). In training (forward with
 * a cache) the affine layer replaces theta there by what the backward needs, (tanh(raw / clamp),
 * exp(s)) in the channels (2c, 2c+1), so the backward evaluates no transcendental function. */
/* No floating-point traps are used anywhere; without the assumption that they might be, GCC
 * vectorises the branch-free exp/tanh loops of xform.h (see coupling.c). */
#pragma GCC optimize("no-trapping-math")

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "../core/json_util.h"
#include "../nn/conv1d.h"
#include "renflow/tsflow.h"
#include "ts_internal.h"
#include "xform.h"


typedef struct {
    int C, T;
    int ca, cb;
    rf_xform xf;
    int nt;
    rf_conv1d *net;
} tc_impl;

static size_t nT(const tc_impl *c, int n) { return (size_t)(n > 0 ? n : 0) * (size_t)c->T; }

static int tc_affine(const tc_impl *c) { return c->xf.kind == RF_XFORM_AFFINE; }

/* Floats of x_a and of theta in the cache (the affine layer's are grid buffers, conv1d.h). */
static void tc_parts(const tc_impl *c, int n, size_t *xa, size_t *th) {
    if (tc_affine(c)) {
        const rf_conv1d_grid g = rf_conv1d_grid_of(c->net, n);
        *xa = rf_conv1d_grid_floats(&g, c->ca);
        *th = rf_conv1d_grid_floats(&g, c->cb * c->nt);
    } else {
        *xa = nT(c, n) * c->ca;
        *th = nT(c, n) * c->cb * c->nt;
    }
}

static size_t tc_cache(const rf_layer *l, int n) {
    const tc_impl *c = l->impl;
    size_t xa, th;
    tc_parts(c, n, &xa, &th);
    return xa + th + (tc_affine(c) ? rf_conv1d_grid_cache_floats(c->net, n)
                                   : rf_conv1d_cache_floats(c->net, n));
}

/* Forward without a cache (inference, memory-saving forward, inverse): [cache | conv scratch].
 * Backward: [dtheta | dx_a | conv backward scratch]. */
static size_t tc_scratch(const rf_layer *l, int n) {
    const tc_impl *c = l->impl;
    size_t xa, th;
    tc_parts(c, n, &xa, &th);
    const int a = tc_affine(c);
    const size_t f = tc_cache(l, n) + (a ? rf_conv1d_grid_forward_scratch_floats(c->net, n)
                                         : rf_conv1d_forward_scratch_floats(c->net, n));
    const size_t b = th + xa + (a ? rf_conv1d_grid_backward_scratch_floats(c->net, n)
                                  : rf_conv1d_backward_scratch_floats(c->net, n));
    return f > b ? f : b;
}

static void tc_init(const rf_layer *l, float *p, rf_rng *rng) {
    rf_conv1d_init_params(((const tc_impl *)l->impl)->net, p, rng);
}

/* Runs the conditioner on the a channels of `in`: buf = [x_a | theta | conv cache]; returns
 * theta. */
static float *tc_condition(const tc_impl *c, const float *p, int n, int D, const float *in,
                           float *buf, float *conv_scratch) {
    const int T = c->T, ca = c->ca;
    size_t nxa, nth;
    tc_parts(c, n, &nxa, &nth);
    float *xa = buf, *th = xa + nxa, *cc = th + nth;
    if (tc_affine(c)) {
        const rf_conv1d_grid g = rf_conv1d_grid_of(c->net, n);
        rf_conv1d_grid_clear(&g, ca, xa);
        for (int i = 0; i < n; i++) {
            float *dst = xa + rf_conv1d_grid_at(&g, ca, i);
            for (int ch = 0; ch < ca; ch++)
                memcpy(dst + (size_t)ch * g.row, in + (size_t)i * D + (size_t)ch * T, sizeof(float) * (size_t)T);
        }
        rf_conv1d_grid_forward(c->net, p, n, xa, th, cc, conv_scratch);
        return th;
    }
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < ca; ch++) {
            const float *src = in + (size_t)i * D + (size_t)ch * T;
            float *dst = xa + (size_t)i * T * ca + ch;
            for (int t = 0; t < T; t++) dst[(size_t)t * ca] = src[t];
        }
    rf_conv1d_forward(c->net, p, n, xa, th, cc, conv_scratch);
    return th;
}

/* The affine transform along the time steps of one channel (m of them): raw log-scales, shifts,
 * x in, y and the log-det terms out; with keep, raw and sh are replaced by tanh(raw / clamp)
 * (raw itself without a clamp) and exp(s). The same arithmetic as rf_xform_forward, element by
 * element, compiled for wider vectors too (RF_XFORM_CLONES; the same bits). */
RF_XFORM_CLONES static void ta_forward(float clamp, int m, float *restrict raw, float *restrict sh,
                                       const float *restrict x, float *restrict y,
                                       float *restrict ld, int keep) {
    if (clamp > 0 && keep) {
#pragma omp simd
        for (int t = 0; t < m; t++) {
            const float h = rf_ftanh(raw[t] / clamp), s = clamp * h, es = rf_fexp(s);
            y[t] = x[t] * es + sh[t];
            ld[t] = s;
            raw[t] = h;
            sh[t] = es;
        }
    } else if (clamp > 0) {
#pragma omp simd
        for (int t = 0; t < m; t++) {
            const float s = clamp * rf_ftanh(raw[t] / clamp);
            y[t] = x[t] * rf_fexp(s) + sh[t];
            ld[t] = s;
        }
    } else {
#pragma omp simd
        for (int t = 0; t < m; t++) {
            const float s = raw[t], es = rf_fexp(s);
            y[t] = x[t] * es + sh[t];
            ld[t] = s;
            if (keep) sh[t] = es;
        }
    }
}

/* Inverse: x = (y - sh) exp(-s), ld = -s (as rf_xform_inverse). */
RF_XFORM_CLONES static void ta_inverse(float clamp, int m, const float *restrict raw,
                                       const float *restrict sh, const float *restrict y,
                                       float *restrict x, float *restrict ld) {
#pragma omp simd
    for (int t = 0; t < m; t++) {
        const float s = clamp > 0 ? clamp * rf_ftanh(raw[t] / clamp) : raw[t];
        x[t] = (y[t] - sh[t]) * rf_fexp(-s);
        ld[t] = -s;
    }
}

/* Backward from the kept (h, es) (as rf_xform_affine_backward_c): dx, and the gradients of the
 * raw log-scales and shifts. */
RF_XFORM_CLONES static void ta_backward(float clamp, int m, const float *restrict h,
                                        const float *restrict es, const float *restrict x,
                                        const float *restrict gy, float gld, float *restrict dx,
                                        float *restrict draw, float *restrict dsh) {
    if (clamp > 0) {
#pragma omp simd
        for (int t = 0; t < m; t++) {
            const float ds = gy[t] * x[t] * es[t] + gld;
            draw[t] = ds * (1.0f - h[t] * h[t]);
            dsh[t] = gy[t];
            dx[t] = gy[t] * es[t];
        }
    } else {
#pragma omp simd
        for (int t = 0; t < m; t++) {
            const float ds = gy[t] * x[t] * es[t] + gld;
            draw[t] = ds * 1.0f;
            dsh[t] = gy[t];
            dx[t] = gy[t] * es[t];
        }
    }
}

/* dx = dy + g (the a channels' gradient: passed through plus through the conditioner). */
RF_XFORM_CLONES static void ta_add(int m, const float *restrict dy, const float *restrict g,
                                   float *restrict dx) {
#pragma omp simd
    for (int t = 0; t < m; t++) dx[t] = dy[t] + g[t];
}

#define TA_RUN 256 /* time steps per vectorised run (log-det terms on the stack) */

/* The affine transform of the b channels of every row, forward (inv = 0) or inverse, from the
 * channel-major theta (see the top of the file); logdet[i] += the terms summed in (channel, time)
 * order in double, as the element-wise path does. */
static void ta_rows(const tc_impl *c, int n, int D, float *th, const float *in, float *out,
                    float *logdet, int keep, int inv) {
    const int T = c->T, ca = c->ca, cb = c->cb;
    const rf_conv1d_grid g = rf_conv1d_grid_of(c->net, n);
    const float clamp = c->xf.clamp;
    float ldb[TA_RUN];
    for (int i = 0; i < n; i++) {
        const float *xi = in + (size_t)i * D;
        float *yi = out + (size_t)i * D;
        float *thi = th + rf_conv1d_grid_at(&g, 2 * cb, i);
        memcpy(yi, xi, sizeof(float) * (size_t)ca * T);
        double ld = 0;
        for (int ch = 0; ch < cb; ch++) {
            float *raw = thi + (size_t)(2 * ch) * g.row, *sh = raw + g.row;
            const float *xb = xi + (size_t)(ca + ch) * T;
            float *yb = yi + (size_t)(ca + ch) * T;
            for (int t0 = 0; t0 < T; t0 += TA_RUN) {
                const int m = T - t0 < TA_RUN ? T - t0 : TA_RUN;
                if (inv) ta_inverse(clamp, m, raw + t0, sh + t0, xb + t0, yb + t0, ldb);
                else ta_forward(clamp, m, raw + t0, sh + t0, xb + t0, yb + t0, ldb, keep);
                for (int t = 0; t < m; t++) ld += ldb[t];
            }
        }
        logdet[i] += (float)ld;
    }
}

static void tc_forward_prefix(const rf_layer *l, const float *p, int n, const float *x, float *y,
                              float *logdet, float *cache, float *scratch) {
    const tc_impl *c = l->impl;
    const int D = l->dim, T = c->T, ca = c->ca, cb = c->cb, nt = c->nt;
    float *buf = cache ? cache : scratch;
    float *cs = cache ? scratch : scratch + tc_cache(l, n);
    float *th = tc_condition(c, p, n, D, x, buf, cs);
    if (c->xf.kind == RF_XFORM_AFFINE) {
        ta_rows(c, n, D, th, x, y, logdet, cache != NULL, 0);
        return;
    }
#pragma omp parallel for schedule(static) if ((size_t)n * D > 4096)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        float *yi = y + (size_t)i * D;
        memcpy(yi, xi, sizeof(float) * (size_t)ca * T);
        double ld = 0;
        for (int ch = 0; ch < cb; ch++) {
            const float *xb = xi + (size_t)(ca + ch) * T;
            float *yb = yi + (size_t)(ca + ch) * T;
            for (int t = 0; t < T; t++) {
                float v, d;
                rf_xform_forward(&c->xf, th + (((size_t)i * T + t) * cb + ch) * nt, xb[t], &v, &d);
                yb[t] = v;
                ld += d;
            }
        }
        logdet[i] += (float)ld;
    }
}

static void tc_inverse_prefix(const rf_layer *l, const float *p, int n, const float *y, float *x,
                              float *logdet, float *scratch) {
    const tc_impl *c = l->impl;
    const int D = l->dim, T = c->T, ca = c->ca, cb = c->cb, nt = c->nt;
    float *th = tc_condition(c, p, n, D, y, scratch, scratch + tc_cache(l, n));
    if (c->xf.kind == RF_XFORM_AFFINE) {
        ta_rows(c, n, D, th, y, x, logdet, 0, 1);
        return;
    }
#pragma omp parallel for schedule(static) if ((size_t)n * D > 4096)
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * D;
        float *xi = x + (size_t)i * D;
        memcpy(xi, yi, sizeof(float) * (size_t)ca * T);
        double ld = 0;
        for (int ch = 0; ch < cb; ch++) {
            const float *yb = yi + (size_t)(ca + ch) * T;
            float *xb = xi + (size_t)(ca + ch) * T;
            for (int t = 0; t < T; t++) {
                float v, d;
                rf_xform_inverse(&c->xf, th + (((size_t)i * T + t) * cb + ch) * nt, yb[t], &v, &d);
                xb[t] = v;
                ld += d;
            }
        }
        logdet[i] += (float)ld;
    }
}

static void tc_backward_prefix(const rf_layer *l, const float *p, int n, const float *x,
                               const float *dy, const float *dlogdet, float *dx, float *dp,
                               const float *cache, float *scratch) {
    const tc_impl *c = l->impl;
    const int D = l->dim, T = c->T, ca = c->ca, cb = c->cb, nt = c->nt;
    size_t nxa, nth;
    tc_parts(c, n, &nxa, &nth);
    const float *xa = cache, *th = xa + nxa, *cc = th + nth;
    float *dth = scratch, *dxa = dth + nth, *bs = dxa + nxa;
    if (tc_affine(c)) {
        const rf_conv1d_grid g = rf_conv1d_grid_of(c->net, n);
        for (int i = 0; i < n; i++) {
            const size_t ti = rf_conv1d_grid_at(&g, 2 * cb, i);
            for (int ch = 0; ch < cb; ch++) {
                const size_t o = (size_t)i * D + (size_t)(ca + ch) * T;
                const size_t k = ti + (size_t)(2 * ch) * g.row;
                ta_backward(c->xf.clamp, T, th + k, th + k + g.row, x + o, dy + o, dlogdet[i],
                            dx + o, dth + k, dth + k + g.row);
            }
        }
        rf_conv1d_grid_clear(&g, 2 * cb, dth);
        rf_conv1d_grid_backward(c->net, p, n, xa, dth, dxa, dp, cc, bs);
        for (int i = 0; i < n; i++) {
            const float *gi = dxa + rf_conv1d_grid_at(&g, ca, i);
            for (int ch = 0; ch < ca; ch++) {
                const size_t o = (size_t)i * D + (size_t)ch * T;
                ta_add(T, dy + o, gi + (size_t)ch * g.row, dx + o);
            }
        }
        return;
    }
#pragma omp parallel for schedule(static) if ((size_t)n * D > 4096)
    for (int i = 0; i < n; i++) {
        for (int ch = 0; ch < cb; ch++) {
            const size_t o = (size_t)i * D + (size_t)(ca + ch) * T;
            for (int t = 0; t < T; t++) {
                const size_t k = (((size_t)i * T + t) * cb + ch) * nt;
                dx[o + t] = rf_xform_backward(&c->xf, th + k, x[o + t], dy[o + t], dlogdet[i], dth + k);
            }
        }
    }
    rf_conv1d_backward(c->net, p, n, xa, dth, dxa, dp, cc, bs);
#pragma omp parallel for schedule(static) if ((size_t)n * D > 65536)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < ca; ch++) {
            const size_t o = (size_t)i * D + (size_t)ch * T;
            const float *g = dxa + (size_t)i * T * ca + ch;
            for (int t = 0; t < T; t++) dx[o + t] = dy[o + t] + g[(size_t)t * ca];
        }
}

static cJSON *tc_to_json(const rf_layer *l) {
    const tc_impl *c = l->impl;
    const rf_conv1d_cfg *k = rf_conv1d_config(c->net);
    cJSON *j = rf_ts_json_new("ts_coupling", l->dim, c->C, c->T);
    rf_xform_to_json(&c->xf, j);
    cJSON *cj = cJSON_CreateObject();
    cJSON_AddNumberToObject(cj, "hidden", k->hidden);
    cJSON_AddNumberToObject(cj, "n_hidden", k->n_hidden);
    cJSON_AddNumberToObject(cj, "kernel", k->kernel);
    cJSON_AddNumberToObject(cj, "dilation", k->dilation);
    cJSON_AddStringToObject(cj, "act", rf_act_name(k->act));
    cJSON_AddBoolToObject(cj, "residual", k->residual);
    cJSON_AddItemToObject(j, "conditioner", cj);
    return j;
}

static void tc_free(void *impl) {
    tc_impl *c = impl;
    if (!c) return;
    rf_conv1d_free(c->net);
    free(c);
}

RF_TS_DEFINE_OPS(ts_coupling_ops, ts_coupling_prefix_ops, rf_ts_coupling_prefix_ops, tc_forward_prefix, tc_inverse_prefix, tc_backward_prefix,
                 .kind = "ts_coupling",
                 .cache_floats = tc_cache,
                 .scratch_floats = tc_scratch,
                 .init_params = tc_init,
                 .to_json = tc_to_json,
                 .free_impl = tc_free)

static rf_layer *tc_create(int D, int C, int T, const rf_conv1d_cfg *cond, const rf_xform *xf,
                           rf_err *e) {
    if (rf_ts_check_shape("ts_coupling", D, C, T, e) != RF_OK) return NULL;
    if (C < 2) {
        rf_err_set(e, RF_EARG, "ts_coupling: needs at least 2 channels (got %d); squeeze first", C);
        return NULL;
    }
    if (rf_xform_check(xf, e) != RF_OK) return NULL;
    tc_impl *c = rf_zalloc(sizeof *c, e);
    if (!c) return NULL;
    c->C = C;
    c->T = T;
    c->ca = C / 2;
    c->cb = C - c->ca;
    c->xf = *xf;
    c->nt = rf_xform_n_theta(xf);
    rf_conv1d_cfg k = *cond;
    k.c_in = c->ca;
    k.c_out = c->cb * c->nt;
    k.length = T;
    k.out_channel_major = 0; /* the affine layer runs the net on grid buffers (conv1d.h) */
    c->net = rf_conv1d_create(&k, e);
    if (!c->net) {
        rf_err_prefix(e, RF_EARG, "ts_coupling conditioner");
        tc_free(c);
        return NULL;
    }
    rf_layer *l = rf_layer_new(&ts_coupling_ops, D, rf_conv1d_n_params(c->net), c, e);
    if (!l) tc_free(c);
    return l;
}

rf_layer *rf_ts_coupling_create(const rf_ts_coupling_cfg *cfg, rf_err *e) {
    rf_xform xf = {.kind = cfg->spline ? RF_XFORM_RQS : RF_XFORM_AFFINE,
                   .clamp = cfg->clamp,
                   .bins = cfg->bins,
                   .bound = cfg->bound};
    return tc_create(cfg->D, cfg->channels, cfg->length, &cfg->cond, &xf, e);
}

rf_layer *rf_ts_coupling_from_json(const cJSON *j, int dim, rf_err *e) {
    int C, T;
    rf_xform xf;
    rf_conv1d_cfg k;
    memset(&k, 0, sizeof k);
    const char *act = NULL;
    if (rf_ts_shape_from_json(j, "ts_coupling", dim, &C, &T, e) != RF_OK) return NULL;
    if (rf_xform_from_json(j, &xf, e) != RF_OK) {
        rf_err_prefix(e, RF_EFORMAT, "ts_coupling");
        return NULL;
    }
    const cJSON *cj = cJSON_GetObjectItemCaseSensitive(j, "conditioner");
    if (!cJSON_IsObject(cj)) {
        rf_err_set(e, RF_EFORMAT, "ts_coupling: field \"conditioner\": missing or not an object");
        return NULL;
    }
    int rc = rf_json_get_int(cj, "hidden", &k.hidden, e);
    if (!rc) rc = rf_json_get_int(cj, "n_hidden", &k.n_hidden, e);
    if (!rc) rc = rf_json_get_int(cj, "kernel", &k.kernel, e);
    if (!rc) rc = rf_json_get_int(cj, "dilation", &k.dilation, e);
    if (!rc) rc = rf_json_get_string(cj, "act", &act, e);
    if (rc) {
        rf_err_prefix(e, RF_EFORMAT, "ts_coupling: conditioner");
        return NULL;
    }
    if (rf_act_parse(act, &k.act) != RF_OK) {
        rf_err_set(e, RF_EFORMAT, "ts_coupling: conditioner: field \"act\": unknown activation \"%s\"", act);
        return NULL;
    }
    k.residual = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cj, "residual"));
    rf_layer *l = tc_create(dim, C, T, &k, &xf, e);
    if (!l && e) e->code = RF_EFORMAT;
    return l;
}
