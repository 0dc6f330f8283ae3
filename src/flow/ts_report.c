/* Per-scale split of the log-likelihood (see rf_flow_scale_report in renflow/tsflow.h).
 * part_s = log|det| of every layer of scale s (+ the standardisation's for s = 0)
 *        + base log-density of the latent variables that leave the flow at scale s.
 * A layer's scale follows from its active block: scale s acts on the first D / 2^s floats. The
 * latent variables of scale s < S-1 are z[D / 2^(s+1) .. D / 2^s), those of the last scale
 * z[0 .. D / 2^(S-1)). The bases are diagonal Gaussians (per class for the class-conditional
 * base; parameter layout of base.c: [mu (classes x D), log sigma (classes x D)]), so their
 * log-density is a sum over dimensions and splits exactly. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/tsflow.h"

#define LOG_2PI 1.8378770664093453

int rf_flow_n_scales(const rf_flow *f) {
    if (f->spec.type == RF_FLOW_TS && f->spec.scales >= 1 && f->spec.scales <= RF_TS_MAX_SCALES)
        return f->spec.scales;
    return 1;
}

static int layer_scale(const rf_layer *l, int D, int S) {
    int c, t;
    if (S <= 1 || !rf_ts_layer_shape(l, &c, &t)) return 0;
    const long long A = (long long)c * t;
    int s = 0;
    while (s < S - 1 && (long long)(D >> s) > A) s++;
    return s;
}

/* log N(z_j; mu_j, e^{ls_j}) summed over j in [lo, hi); mu / ls NULL: standard normal. */
static double gauss_part(const float *z, const float *mu, const float *ls, int lo, int hi) {
    double t = 0;
    for (int j = lo; j < hi; j++) {
        const double m = mu ? mu[j] : 0.0, l = ls ? ls[j] : 0.0;
        const double u = (z[j] - m) * exp(-l);
        t += -0.5 * u * u - l - 0.5 * LOG_2PI;
    }
    return t;
}

int rf_flow_scale_report(const rf_flow *f, int n, const float *x, const int *labels,
                         rf_scale_report *r, double *per_sample, rf_err *e) {
    memset(r, 0, sizeof *r);
    if (n < 1) return rf_err_set(e, RF_EARG, "scale report: needs at least 1 row, got %d", n);
    const int D = f->D, S = rf_flow_n_scales(f), P = S + 1;
    const rf_base *b = &f->base;
    const int NC = b->kind == RF_BASE_CLASS ? b->n_classes : 1;
    if (f->spec.type == RF_FLOW_TS && (D >> (S - 1)) < 1)
        return rf_err_set(e, RF_EARG, "scale report: %d scales do not fit dimension %d", S, D);
    if (b->kind == RF_BASE_CLASS && labels)
        for (int i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= NC)
                return rf_err_set(e, RF_EARG, "scale report: label of row %d is %d, outside [0, %d)", i,
                                  labels[i], NC);
    int lo[RF_TS_MAX_SCALES], hi[RF_TS_MAX_SCALES];
    for (int s = 0; s < S; s++) {
        lo[s] = s == S - 1 ? 0 : D >> (s + 1);
        hi[s] = D >> s;
        r->dims[s] = hi[s] - lo[s];
    }
    r->n_scales = S;
    r->D = D;

    const int B = n < 256 ? n : 256;
    size_t max_scratch = 0;
    for (int k = 0; k < f->n_layers; k++) {
        const size_t s = f->layers[k]->ops->scratch_floats(f->layers[k], B);
        if (s > max_scratch) max_scratch = s;
    }
    float *a0 = rf_floats((size_t)B * D, e), *a1 = rf_floats((size_t)B * D, e);
    float *scratch = rf_floats(max_scratch, e), *ld = rf_floats((size_t)B, e);
    double *parts = calloc((size_t)B * P, sizeof(double)), *cs = calloc((size_t)NC * S, sizeof(double));
    double *sum = calloc((size_t)P, sizeof(double));
    /* per class, every dimension's mean and log scale (tied parameters expanded) */
    const int NM = b->kind == RF_BASE_NORMAL ? 0 : (NC > 1 ? NC : 1);
    float *emu = NM ? rf_floats((size_t)NM * D, e) : NULL, *els = NM ? rf_floats((size_t)NM * D, e) : NULL;
    int rc = RF_OK;
    if (!a0 || !a1 || !scratch || !ld || !parts || !cs || !sum || (NM && (!emu || !els))) {
        rc = rf_err_set(e, RF_ENOMEM, "scale report: out of memory for a batch of %d rows", B);
        goto done;
    }
    double lds = 0;
    for (int j = 0; j < D; j++) lds -= log(f->scale[j]);
    for (int c = 0; c < NM; c++)
        rf_base_class_moments(b, f->params + b->offset, c, emu + (size_t)c * D, els + (size_t)c * D);
    for (int s0 = 0; s0 < n; s0 += B) {
        const int m = n - s0 < B ? n - s0 : B;
        memset(parts, 0, sizeof(double) * (size_t)m * P);
        for (int i = 0; i < m; i++) {
            const float *xi = x + (size_t)(s0 + i) * D;
            for (int j = 0; j < D; j++) a0[(size_t)i * D + j] = (xi[j] - f->shift[j]) / f->scale[j];
            parts[(size_t)i * P] = lds;
        }
        float *cur = a0, *next = a1;
        for (int k = 0; k < f->n_layers; k++) {
            const rf_layer *l = f->layers[k];
            const int sc = layer_scale(l, D, S);
            memset(ld, 0, sizeof(float) * (size_t)m);
            l->ops->forward(l, f->params + l->offset, m, cur, next, ld, NULL, scratch);
            for (int i = 0; i < m; i++) parts[(size_t)i * P + sc] += ld[i];
            float *t = cur;
            cur = next;
            next = t;
        }
        for (int i = 0; i < m; i++) {
            const float *z = cur + (size_t)i * D;
            double *pi = parts + (size_t)i * P;
            if (b->kind == RF_BASE_CLASS && !labels) {
                /* log p(z) = sum_c q(c) [log p(c) + sum_s log p(z_s | c) - log q(c)] */
                double mx = -INFINITY, se = 0;
                for (int c = 0; c < NC; c++) {
                    double t = 0;
                    for (int s = 0; s < S; s++) {
                        cs[c * S + s] = gauss_part(z, emu + (size_t)c * D, els + (size_t)c * D, lo[s], hi[s]);
                        t += cs[c * S + s];
                    }
                    if (t > mx) mx = t;
                }
                for (int c = 0; c < NC; c++) {
                    double t = 0;
                    for (int s = 0; s < S; s++) t += cs[c * S + s];
                    se += exp(t - mx);
                }
                const double lse = mx + log(se), lprior = -log((double)NC);
                for (int c = 0; c < NC; c++) {
                    double t = 0;
                    for (int s = 0; s < S; s++) t += cs[c * S + s];
                    const double lq = t - lse, q = exp(lq); /* log q(c | z), uniform prior */
                    if (q == 0) continue;
                    for (int s = 0; s < S; s++) pi[s] += q * cs[c * S + s];
                    pi[S] += q * (lprior - lq);
                }
            } else {
                const float *mu = NULL, *ls = NULL;
                if (b->kind != RF_BASE_NORMAL) {
                    const int c = b->kind == RF_BASE_CLASS ? labels[s0 + i] : 0;
                    mu = emu + (size_t)c * D;
                    ls = els + (size_t)c * D;
                }
                for (int s = 0; s < S; s++) pi[s] += gauss_part(z, mu, ls, lo[s], hi[s]);
            }
            for (int s = 0; s < P; s++) sum[s] += pi[s];
        }
        if (per_sample) memcpy(per_sample + (size_t)s0 * P, parts, sizeof(double) * (size_t)m * P);
    }
    const double ln2 = log(2.0);
    for (int s = 0; s < S; s++) {
        r->nll_nats[s] = -sum[s] / n;
        r->bits_per_dim[s] = r->nll_nats[s] / (r->dims[s] * ln2);
        r->share_bits_per_dim[s] = r->nll_nats[s] / (D * ln2);
        r->total_nll_nats += r->nll_nats[s];
    }
    r->class_nats = -sum[S] / n;
    r->total_nll_nats += r->class_nats;
    r->total_bits_per_dim = r->total_nll_nats / (D * ln2);
done:
    rf_free(a0);
    rf_free(a1);
    rf_free(scratch);
    rf_free(ld);
    rf_free(emu);
    rf_free(els);
    free(parts);
    free(cs);
    free(sum);
    return rc;
}
