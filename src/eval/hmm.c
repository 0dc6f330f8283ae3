/* Markov-chain smoothing of per-epoch class scores (forward-backward in log space). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/hmm.h"

void rf_hmm_free(rf_hmm *h) {
    if (!h) return;
    free(h->log_pi);
    free(h->log_A);
    memset(h, 0, sizeof *h);
}

int rf_hmm_fit(const int *labels, const int *seq, int n, int C, double alpha, rf_hmm *h, rf_err *e) {
    memset(h, 0, sizeof *h);
    if (C < 1 || n < 1 || !(alpha > 0)) return rf_err_set(e, RF_EARG, "HMM fit needs rows, classes and alpha > 0 (n=%d, C=%d, alpha=%g)", n, C, alpha);
    double *A = calloc((size_t)C * C, sizeof *A), *pi = calloc((size_t)C, sizeof *pi);
    if (!A || !pi) {
        free(A);
        free(pi);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= C) {
            free(A);
            free(pi);
            return rf_err_set(e, RF_EARG, "label %d at row %d is outside [0, %d)", labels[i], i, C);
        }
        if (i == 0 || seq[i] != seq[i - 1]) pi[labels[i]] += 1;
        else A[(size_t)labels[i - 1] * C + labels[i]] += 1;
    }
    double ps = 0;
    for (int c = 0; c < C; c++) ps += pi[c] + alpha;
    for (int c = 0; c < C; c++) {
        pi[c] = log((pi[c] + alpha) / ps);
        double rs = 0;
        for (int k = 0; k < C; k++) rs += A[(size_t)c * C + k] + alpha;
        for (int k = 0; k < C; k++) A[(size_t)c * C + k] = log((A[(size_t)c * C + k] + alpha) / rs);
    }
    h->C = C;
    h->log_pi = pi;
    h->log_A = A;
    return RF_OK;
}

static double lse(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
    if (!isfinite(m)) return m;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp(v[i] - m);
    return m + log(s);
}

/* One sequence of T rows. fw/bw: T x C doubles; tmp: C doubles. */
static void fb(const rf_hmm *h, const float *ll, int T, double w, double *fw, double *bw, double *tmp, float *post) {
    const int C = h->C;
    for (int c = 0; c < C; c++) fw[c] = h->log_pi[c] + w * ll[c];
    for (int t = 1; t < T; t++)
        for (int k = 0; k < C; k++) {
            for (int c = 0; c < C; c++) tmp[c] = fw[(size_t)(t - 1) * C + c] + h->log_A[(size_t)c * C + k];
            fw[(size_t)t * C + k] = lse(tmp, C) + w * ll[(size_t)t * C + k];
        }
    for (int c = 0; c < C; c++) bw[(size_t)(T - 1) * C + c] = 0;
    for (int t = T - 2; t >= 0; t--)
        for (int c = 0; c < C; c++) {
            for (int k = 0; k < C; k++)
                tmp[k] = h->log_A[(size_t)c * C + k] + w * ll[(size_t)(t + 1) * C + k] + bw[(size_t)(t + 1) * C + k];
            bw[(size_t)t * C + c] = lse(tmp, C);
        }
    for (int t = 0; t < T; t++) {
        for (int c = 0; c < C; c++) tmp[c] = fw[(size_t)t * C + c] + bw[(size_t)t * C + c];
        const double z = lse(tmp, C);
        for (int c = 0; c < C; c++) post[(size_t)t * C + c] = (float)(tmp[c] - z);
    }
}

int rf_hmm_posterior(const rf_hmm *h, const float *loglik, const int *seq, int n, double weight,
                     float *post, rf_err *e) {
    const int C = h->C;
    if (n < 1) return RF_OK;
    for (size_t i = 0; i < (size_t)n * C; i++)
        if (!isfinite(loglik[i]))
            return rf_err_set(e, RF_ENONFINITE, "HMM: non-finite class score at row %zu, class %zu", i / C, i % C);
    int maxT = 0;
    for (int i = 0, t0 = 0; i <= n; i++)
        if (i == n || (i > t0 && seq[i] != seq[i - 1])) {
            maxT = i - t0 > maxT ? i - t0 : maxT;
            t0 = i;
        }
    double *fw = malloc(sizeof(double) * (size_t)maxT * C), *bw = malloc(sizeof(double) * (size_t)maxT * C);
    double *tmp = malloc(sizeof(double) * (size_t)C);
    if (!fw || !bw || !tmp) {
        free(fw);
        free(bw);
        free(tmp);
        return rf_err_set(e, RF_ENOMEM, "out of memory for an HMM sequence of %d rows", maxT);
    }
    for (int i = 1, t0 = 0; i <= n; i++)
        if (i == n || seq[i] != seq[i - 1]) {
            fb(h, loglik + (size_t)t0 * C, i - t0, weight, fw, bw, tmp, post + (size_t)t0 * C);
            t0 = i;
        }
    free(fw);
    free(bw);
    free(tmp);
    return RF_OK;
}
