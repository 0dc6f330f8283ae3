/* The multi-scale time-series flow (RF_FLOW_TS): the layer stack for a spec, and a default spec
 * for a data shape. For scale s = 0 .. S-1 (active block C x T_s, T_0 = T):
 *   Haar squeeze (C x T_s -> 2C x T_s/2),
 *   blocks x (per-channel ActNorm, 1x1 over channels, conv-conditioned coupling) on 2C x T_s/2,
 *   factor-out: the last C of the 2C channels leave the active prefix (T_{s+1} = T_s / 2 with C
 *   channels again), so the next scale's layers see the first half of the prefix only. */
#include <string.h>

#include "renflow/tsflow.h"

int rf_tsflow_n_layers(const rf_flow_spec *s) { return s->scales * (1 + 3 * s->blocks); }

int rf_tsflow_add_layers(const rf_flow_spec *s, rf_rng *rng, rf_layer **out, int *k, rf_err *e) {
    const int D = s->D, C = s->channels;
    int T = s->length;
    rf_conv1d_cfg cond = {.hidden = s->hidden,
                          .n_hidden = s->n_hidden,
                          .kernel = s->kernel,
                          .dilation = s->dilation,
                          .act = s->act,
                          .residual = s->residual};
#define ADD(expr)                                                  \
    do {                                                           \
        if (!(out[*k] = (expr))) return e ? e->code : RF_EARG;     \
        (*k)++;                                                    \
    } while (0)
    for (int sc = 0; sc < s->scales; sc++) {
        ADD(rf_ts_squeeze_create(D, C, T, e));
        const int C2 = 2 * C, T2 = T / 2;
        rf_ts_coupling_cfg cc = {.D = D, .channels = C2, .length = T2, .cond = cond,
                                 .spline = s->spline, .clamp = s->clamp, .bins = s->bins,
                                 .bound = s->bound};
        for (int b = 0; b < s->blocks; b++) {
            if (!s->no_actnorm) ADD(rf_ts_actnorm_create(D, C2, T2, e));
            ADD(rf_ts_conv1x1_create(D, C2, T2, rng, e));
            ADD(rf_ts_coupling_create(&cc, e));
        }
        T = T2; /* factor-out: the first C channels stay active */
    }
#undef ADD
    return RF_OK;
}

int rf_tsflow_spec_default(rf_flow_spec *s, int C, int T, rf_err *e) {
    if (C < 1 || T < 2 || (long long)C * T > 100000)
        return rf_err_set(e, RF_EARG, "tsflow: window of %d channels x %d samples out of range "
                          "(channels >= 1, samples >= 2, channels x samples <= 100000)", C, T);
    if (T % 2 != 0)
        return rf_err_set(e, RF_EARG, "tsflow: window length %d is odd; the Haar squeeze needs an "
                          "even number of samples (trim or resample the windows)", T);
    rf_flow_spec_default(s, RF_FLOW_TS, C * T);
    s->channels = C;
    s->length = T;
    int S = 0;
    while (S < 4 && T % (2 << S) == 0 && T / (2 << S) >= 2) S++;
    s->scales = S > 0 ? S : 1;
    s->blocks = C * T > 4096 ? 3 : 4;
    s->hidden = 2 * C < 32 ? 32 : (2 * C > 128 ? 128 : 2 * C);
    s->n_hidden = 2;
    s->kernel = T >= 256 ? 5 : 3;
    s->dilation = 1;
    s->residual = 1;
    s->spline = 0;
    return RF_OK;
}
