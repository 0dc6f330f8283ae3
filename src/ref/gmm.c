/* Gaussian mixture by EM in log space (standardised data, double precision).
 *
 * E-step: log N(x | mu_k, L_k L_k^T) = c_k - ||L_k^{-1} x - L_k^{-1} mu_k||^2 / 2 for every component
 * at once: one cblas_dgemm of a row block with the stacked inverse factors L_k^{-1} (LAPACKE_dtrtri
 * after each M-step; in double precision and on standardised data the subtraction after the product
 * loses at most a few digits even for narrow components), then a log-sum-exp over components per
 * row; responsibilities are exp(l - lse).
 * M-step: N_k = sum_i r_ik, means = R^T X / N_k (cblas_dgemm), covariances from the weighted,
 * centred rows accumulated block by block with cblas_dsyrk, plus ridge * I, factorised by
 * LAPACKE_dpotrf. Initialisation: k-means++ seeding and a few Lloyd iterations, whose hard
 * assignment gives the first M-step. Row blocks run in parallel (OpenMP); every row's value is
 * computed by one thread in a fixed order, so results do not depend on the thread count. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "refdensity_internal.h"
#include "renflow/refdensity.h"

#define GMM_BLOCK 1024
#define GMM_MAX_RESEED 3

void rf_gmm_free(rf_gmm *g) {
    if (!g) return;
    free(g->logw);
    free(g->mu);
    free(g->chol);
    free(g->logdet);
    free(g->icf);
    free(g->b);
    memset(g, 0, sizeof *g);
}

static int gmm_alloc(rf_gmm *g, int K, int D, int cov, rf_err *e) {
    memset(g, 0, sizeof *g);
    g->D = D;
    g->K = K;
    g->cov = cov;
    g->logw = calloc((size_t)K, sizeof(double));
    g->mu = calloc((size_t)K * D, sizeof(double));
    g->chol = calloc((size_t)K * D * D, sizeof(double));
    g->logdet = calloc((size_t)K, sizeof(double));
    g->icf = calloc((size_t)K * D * D, sizeof(double));
    g->b = calloc((size_t)K * D, sizeof(double));
    if (!g->logw || !g->mu || !g->chol || !g->logdet || !g->icf || !g->b) {
        rf_gmm_free(g);
        return rf_err_set(e, RF_ENOMEM, "out of memory for a %d-component mixture in %d dimensions", K, D);
    }
    return RF_OK;
}

static void gmm_copy(rf_gmm *dst, const rf_gmm *src) {
    /* dst has capacity >= src->K */
    const int K = src->K, D = src->D;
    dst->K = K;
    dst->D = D;
    dst->cov = src->cov;
    memcpy(dst->logw, src->logw, sizeof(double) * K);
    memcpy(dst->mu, src->mu, sizeof(double) * K * D);
    memcpy(dst->chol, src->chol, sizeof(double) * K * D * D);
    memcpy(dst->logdet, src->logdet, sizeof(double) * K);
    memcpy(dst->icf, src->icf, sizeof(double) * K * D * D);
    memcpy(dst->b, src->b, sizeof(double) * K * D);
}

/* icf_k = L_k^{-1} and b_k = L_k^{-1} mu_k (full covariances; the diagonal case divides directly). */
static void gmm_prepare(rf_gmm *g) {
    const int D = g->D;
    if (g->cov != RF_GMM_FULL) return;
    for (int k = 0; k < g->K; k++) {
        double *P = g->icf + (size_t)k * D * D, *bk = g->b + (size_t)k * D;
        const double *mu = g->mu + (size_t)k * D;
        memcpy(P, g->chol + (size_t)k * D * D, sizeof(double) * D * D);
        /* L has a positive diagonal (checked when it was made), so the inverse exists */
        LAPACKE_dtrtri(LAPACK_ROW_MAJOR, 'L', 'N', D, P, D);
        for (int a = 0; a < D; a++) {
            double v = 0;
            for (int c = 0; c <= a; c++) v += P[(size_t)a * D + c] * mu[c];
            bk[a] = v;
        }
    }
}

/* L[i*K + k] = log w_k + log N(x_i | k) for the n rows of X. */
static int gmm_log_joint(const rf_gmm *g, const double *X, int n, double *L) {
    const int D = g->D, K = g->K;
    /* rows per block: the product block U (rows x K D) stays below 2^20 doubles */
    int rb = (1 << 20) / (K * D);
    rb = rb < 16 ? 16 : rb > GMM_BLOCK ? GMM_BLOCK : rb;
    const int nblk = (n + rb - 1) / rb;
    int fail = 0;
#pragma omp parallel for schedule(static) if (n > rb) reduction(| : fail)
    for (int b = 0; b < nblk; b++) {
        const int i0 = b * rb, nb = n - i0 < rb ? n - i0 : rb;
        const int full = g->cov == RF_GMM_FULL;
        double *U = malloc(sizeof(double) * (size_t)nb * (full ? (size_t)K * D : (size_t)D));
        if (!U) {
            fail = 1;
            continue;
        }
        /* full: U[i, kD + a] = (L_k^{-1} x_i)_a for all components in one product */
        if (full)
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, K * D, D, 1.0, X + (size_t)i0 * D, D, g->icf, D,
                        0.0, U, K * D);
        for (int k = 0; k < K; k++) {
            const double c = g->logw[k] - 0.5 * (D * RF_LOG_2PI + g->logdet[k]);
            if (full) {
                const double *bk = g->b + (size_t)k * D;
                for (int i = 0; i < nb; i++) {
                    const double *u = U + (size_t)i * K * D + (size_t)k * D;
                    double q = 0;
                    for (int j = 0; j < D; j++) q += (u[j] - bk[j]) * (u[j] - bk[j]);
                    L[(size_t)(i0 + i) * K + k] = c - 0.5 * q;
                }
            } else {
                const double *mu = g->mu + (size_t)k * D, *Lk = g->chol + (size_t)k * D * D;
                for (int i = 0; i < nb; i++) {
                    const double *x = X + (size_t)(i0 + i) * D;
                    double q = 0;
                    for (int j = 0; j < D; j++) {
                        const double u = (x[j] - mu[j]) / Lk[(size_t)j * D + j];
                        q += u * u;
                    }
                    L[(size_t)(i0 + i) * K + k] = c - 0.5 * q;
                }
            }
        }
        free(U);
    }
    return fail ? RF_ENOMEM : RF_OK;
}

static double row_lse(const double *l, int K) {
    double m = l[0];
    for (int k = 1; k < K; k++)
        if (l[k] > m) m = l[k];
    if (!isfinite(m)) return m;
    double s = 0;
    for (int k = 0; k < K; k++) s += exp(l[k] - m);
    return m + log(s);
}

/* E-step: R (n x K) <- responsibilities, ll[i] <- log p(x_i); returns the mean in *mean_ll. */
static int gmm_estep(const rf_gmm *g, const double *X, int n, double *R, double *ll, double *mean_ll) {
    if (gmm_log_joint(g, X, n, R)) return RF_ENOMEM;
    const int K = g->K;
    double total = 0;
    for (int i = 0; i < n; i++) {
        double *r = R + (size_t)i * K;
        const double lse = row_lse(r, K);
        ll[i] = lse;
        total += lse;
        for (int k = 0; k < K; k++) r[k] = exp(r[k] - lse);
    }
    *mean_ll = total / n;
    return RF_OK;
}

int rf_gmm_logpdf_std(const rf_gmm *g, const double *X, int n, double *logp, rf_err *e) {
    if (n <= 0) return RF_OK;
    const int K = g->K;
    const int nblk = (n + GMM_BLOCK - 1) / GMM_BLOCK;
    double *L = malloc(sizeof(double) * (size_t)(n < GMM_BLOCK ? n : GMM_BLOCK) * K);
    if (!L) return rf_err_set(e, RF_ENOMEM, "out of memory for %d x %d component log-densities", GMM_BLOCK, K);
    for (int b = 0; b < nblk; b++) {
        const int i0 = b * GMM_BLOCK, nb = n - i0 < GMM_BLOCK ? n - i0 : GMM_BLOCK;
        if (gmm_log_joint(g, X + (size_t)i0 * g->D, nb, L)) {
            free(L);
            return rf_err_set(e, RF_ENOMEM, "out of memory for a row block of the mixture log-density");
        }
        for (int i = 0; i < nb; i++) logp[i0 + i] = row_lse(L + (size_t)i * K, K);
    }
    free(L);
    return RF_OK;
}

void rf_gmm_sample_std(const rf_gmm *g, rf_rng *r, double *out, double *z) {
    const int D = g->D;
    const double u = rf_rng_uniform(r);
    double acc = 0;
    int k = g->K - 1;
    for (int j = 0; j < g->K; j++) {
        acc += exp(g->logw[j]);
        if (u < acc) {
            k = j;
            break;
        }
    }
    for (int j = 0; j < D; j++) z[j] = rf_rng_normal(r);
    const double *mu = g->mu + (size_t)k * D, *Lk = g->chol + (size_t)k * D * D;
    for (int a = 0; a < D; a++) {
        double v = mu[a];
        if (g->cov == RF_GMM_FULL)
            for (int b = 0; b <= a; b++) v += Lk[(size_t)a * D + b] * z[b];
        else
            v += Lk[(size_t)a * D + a] * z[a];
        out[a] = v;
    }
}

/* Scratch shared by the EM steps of one fit. */
typedef struct gmm_ws {
    int n, D, Kmax, min_pts;
    const double *X;
    double ridge;
    double *R;     /* n x Kmax responsibilities */
    double *ll;    /* n per-row log-likelihoods */
    double *Nk;    /* Kmax */
    double *M;     /* Kmax x D */
    double *gchol; /* D x D Cholesky factor of the pooled covariance + ridge */
    double glogdet;
    int *reseeds;         /* Kmax: times each component was re-seeded */
    int *deg;             /* Kmax: degenerate flags */
    unsigned char *taken; /* n: rows used as re-seed points in this M-step */
    int n_reseeded, n_removed;
} gmm_ws;

/* Weighted covariance of component k into S (D x D lower, then Cholesky). Returns 0 when the
 * factor exists and is finite, -1 when it does not, -2 when out of memory. */
static int gmm_component_cov(const gmm_ws *w, const double *R, int K, int k, int cov, const double *mu, double *S) {
    const int n = w->n, D = w->D;
    memset(S, 0, sizeof(double) * D * D);
    const double nk = w->Nk[k];
    if (cov == RF_GMM_FULL) {
        double *W = malloc(sizeof(double) * (size_t)(n < GMM_BLOCK ? n : GMM_BLOCK) * D);
        if (!W) return -2;
        for (int i0 = 0; i0 < n; i0 += GMM_BLOCK) {
            const int nb = n - i0 < GMM_BLOCK ? n - i0 : GMM_BLOCK;
            for (int i = 0; i < nb; i++) {
                const double s = sqrt(R[(size_t)(i0 + i) * K + k]);
                const double *x = w->X + (size_t)(i0 + i) * D;
                for (int j = 0; j < D; j++) W[(size_t)i * D + j] = s * (x[j] - mu[j]);
            }
            cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, D, nb, 1.0, W, D, 1.0, S, D);
        }
        free(W);
        for (int a = 0; a < D; a++) {
            for (int b = 0; b <= a; b++) S[(size_t)a * D + b] /= nk;
            for (int b = a + 1; b < D; b++) S[(size_t)a * D + b] = 0;
            S[(size_t)a * D + a] += w->ridge;
        }
    } else {
        for (int i = 0; i < n; i++) {
            const double r = R[(size_t)i * K + k];
            const double *x = w->X + (size_t)i * D;
            for (int j = 0; j < D; j++) S[(size_t)j * D + j] += r * (x[j] - mu[j]) * (x[j] - mu[j]);
        }
        for (int j = 0; j < D; j++) S[(size_t)j * D + j] = S[(size_t)j * D + j] / nk + w->ridge;
    }
    if (cov == RF_GMM_FULL) {
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', D, S, D) != 0) return -1;
    } else {
        for (int j = 0; j < D; j++) {
            const double v = S[(size_t)j * D + j];
            if (!(v > 0)) return -1;
            S[(size_t)j * D + j] = sqrt(v);
        }
    }
    for (int j = 0; j < D; j++)
        if (!isfinite(S[(size_t)j * D + j]) || !(S[(size_t)j * D + j] > 0)) return -1;
    return 0;
}

/* M-step from responsibilities R (n x g->K). Handles degenerate components (re-seed or remove)
 * and may shrink g->K. Returns the number of components re-seeded or removed (0: a clean step),
 * or -1 when out of memory. */
static int gmm_mstep(rf_gmm *g, gmm_ws *w, const double *R) {
    const int n = w->n, D = w->D, K = g->K;
    for (int k = 0; k < K; k++) w->Nk[k] = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++) w->Nk[k] += R[(size_t)i * K + k];
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, n, 1.0, R, K, w->X, D, 0.0, w->M, D);
    int oom = 0;
#pragma omp parallel for schedule(static) reduction(| : oom)
    for (int k = 0; k < K; k++) {
        double *mu = g->mu + (size_t)k * D, *S = g->chol + (size_t)k * D * D;
        w->deg[k] = 0;
        if (!(w->Nk[k] >= w->min_pts)) {
            w->deg[k] = 1;
            continue;
        }
        for (int j = 0; j < D; j++) mu[j] = w->M[(size_t)k * D + j] / w->Nk[k];
        const int rc = gmm_component_cov(w, R, K, k, g->cov, mu, S);
        if (rc == -2) oom = 1;
        if (rc != 0) {
            w->deg[k] = 1;
            continue;
        }
        double ld = 0;
        for (int j = 0; j < D; j++) ld += 2 * log(S[(size_t)j * D + j]);
        g->logdet[k] = ld;
    }
    if (oom) return -1;
    /* degenerate components, in index order (deterministic) */
    int changed = 0, removed_now = 0;
    memset(w->taken, 0, (size_t)n);
    for (int k = 0; k < K; k++) { /* deg[k] = 2 below: removed */
        if (!w->deg[k]) continue;
        changed++;
        w->reseeds[k]++;
        if (w->reseeds[k] > GMM_MAX_RESEED && K - removed_now > 1) {
            w->deg[k] = 2;
            removed_now++;
            w->n_removed++;
            continue;
        }
        /* re-seed at the worst-explained row not used yet */
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!w->taken[i] && (best < 0 || w->ll[i] < w->ll[best])) best = i;
        if (best < 0) best = 0;
        w->taken[best] = 1;
        memcpy(g->mu + (size_t)k * D, w->X + (size_t)best * D, sizeof(double) * D);
        memcpy(g->chol + (size_t)k * D * D, w->gchol, sizeof(double) * D * D);
        g->logdet[k] = w->glogdet;
        w->Nk[k] = (double)n / K;
        w->n_reseeded++;
    }
    /* compact removed components, then weights */
    int kk = 0;
    for (int k = 0; k < K; k++) {
        if (w->deg[k] == 2) continue;
        if (kk != k) {
            memmove(g->mu + (size_t)kk * D, g->mu + (size_t)k * D, sizeof(double) * D);
            memmove(g->chol + (size_t)kk * D * D, g->chol + (size_t)k * D * D, sizeof(double) * D * D);
            g->logdet[kk] = g->logdet[k];
            w->Nk[kk] = w->Nk[k];
            w->reseeds[kk] = w->reseeds[k];
        }
        kk++;
    }
    g->K = kk;
    double tot = 0;
    for (int k = 0; k < kk; k++) tot += w->Nk[k];
    for (int k = 0; k < kk; k++) g->logw[k] = log(w->Nk[k] / tot);
    gmm_prepare(g);
    return changed;
}

/* k-means++ seeding then Lloyd iterations; writes a one-hot responsibility matrix into R (n x K)
 * and -(squared distance to the nearest centre) into ll (used to pick re-seed rows). */
static int kmeans_init(const double *X, int n, int D, int K, int iters, rf_rng *rng, double *R, double *ll) {
    double *C = malloc(sizeof(double) * (size_t)K * D), *cn = malloc(sizeof(double) * K);
    double *xn = malloc(sizeof(double) * n), *d2 = malloc(sizeof(double) * n);
    double *G = malloc(sizeof(double) * (size_t)n * K), *cnt = malloc(sizeof(double) * K);
    double *Cn = malloc(sizeof(double) * (size_t)K * D);
    int *asg = malloc(sizeof(int) * n);
    int rc = 0;
    if (!C || !cn || !xn || !d2 || !G || !cnt || !Cn || !asg) {
        rc = -1;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += X[(size_t)i * D + j] * X[(size_t)i * D + j];
        xn[i] = s;
    }
    /* k-means++ */
    int c0 = (int)rf_rng_below(rng, (uint64_t)n);
    memcpy(C, X + (size_t)c0 * D, sizeof(double) * D);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) {
            const double t = X[(size_t)i * D + j] - C[j];
            s += t * t;
        }
        d2[i] = s;
    }
    for (int c = 1; c < K; c++) {
        double tot = 0;
        for (int i = 0; i < n; i++) tot += d2[i];
        int pick = n - 1;
        if (tot > 0) {
            const double u = rf_rng_uniform(rng) * tot;
            double acc = 0;
            for (int i = 0; i < n; i++) {
                acc += d2[i];
                if (u < acc) {
                    pick = i;
                    break;
                }
            }
        } else {
            pick = (int)rf_rng_below(rng, (uint64_t)n);
        }
        double *cc = C + (size_t)c * D;
        memcpy(cc, X + (size_t)pick * D, sizeof(double) * D);
        for (int i = 0; i < n; i++) {
            double s = 0;
            for (int j = 0; j < D; j++) {
                const double t = X[(size_t)i * D + j] - cc[j];
                s += t * t;
            }
            if (s < d2[i]) d2[i] = s;
        }
    }
    /* Lloyd */
    for (int i = 0; i < n; i++) asg[i] = -1;
    for (int it = 0; it <= iters; it++) {
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int j = 0; j < D; j++) s += C[(size_t)k * D + j] * C[(size_t)k * D + j];
            cn[k] = s;
        }
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, K, D, 1.0, X, D, C, D, 0.0, G, K);
        int moved = 0;
        for (int i = 0; i < n; i++) {
            int bk = 0;
            double bd = INFINITY;
            for (int k = 0; k < K; k++) {
                double d = xn[i] + cn[k] - 2 * G[(size_t)i * K + k];
                if (d < bd) {
                    bd = d;
                    bk = k;
                }
            }
            if (asg[i] != bk) moved++;
            asg[i] = bk;
            d2[i] = bd > 0 ? bd : 0;
        }
        if (it == iters || moved == 0) break;
        memset(cnt, 0, sizeof(double) * K);
        memset(Cn, 0, sizeof(double) * K * D);
        for (int i = 0; i < n; i++) {
            cnt[asg[i]] += 1;
            for (int j = 0; j < D; j++) Cn[(size_t)asg[i] * D + j] += X[(size_t)i * D + j];
        }
        for (int k = 0; k < K; k++)
            if (cnt[k] > 0) /* an empty cluster keeps its centre */
                for (int j = 0; j < D; j++) C[(size_t)k * D + j] = Cn[(size_t)k * D + j] / cnt[k];
    }
    memset(R, 0, sizeof(double) * (size_t)n * K);
    for (int i = 0; i < n; i++) {
        R[(size_t)i * K + asg[i]] = 1.0;
        ll[i] = -d2[i];
    }
done:
    free(C);
    free(cn);
    free(xn);
    free(d2);
    free(G);
    free(cnt);
    free(Cn);
    free(asg);
    return rc;
}

/* One EM run from a k-means++ start. */
static int gmm_em_once(rf_gmm *g, gmm_ws *w, const rf_gmm_cfg *cfg, rf_rng *rng, rf_gmm_info *info) {
    const int n = w->n;
    g->K = cfg->K;
    memset(w->reseeds, 0, sizeof(int) * cfg->K);
    w->n_reseeded = w->n_removed = 0;
    if (kmeans_init(w->X, n, w->D, g->K, cfg->kmeans_iter, rng, w->R, w->ll)) return -1;
    int changed = gmm_mstep(g, w, w->R);
    if (changed < 0) return -1;
    double prev = -INFINITY, cur = -INFINITY;
    int it, converged = 0;
    for (it = 0; it < cfg->max_iter; it++) {
        if (gmm_estep(g, w->X, n, w->R, w->ll, &cur)) return -1;
        if (it > 0 && changed == 0 && fabs(cur - prev) < cfg->tol) {
            converged = 1;
            break;
        }
        prev = cur;
        changed = gmm_mstep(g, w, w->R);
        if (changed < 0) return -1;
    }
    if (!converged && gmm_estep(g, w->X, n, w->R, w->ll, &cur)) return -1;
    info->K_final = g->K;
    info->iterations = it;
    info->converged = converged;
    info->reseeded = w->n_reseeded;
    info->removed = w->n_removed;
    info->train_ll = cur;
    return 0;
}

int rf_gmm_fit_std(const double *X, int n, int D, const rf_gmm_cfg *cfg, rf_rng *rng, rf_gmm *g, rf_gmm_info *info,
                   rf_err *e) {
    memset(g, 0, sizeof *g);
    memset(info, 0, sizeof *info);
    const int K = cfg->K;
    gmm_ws w;
    memset(&w, 0, sizeof w);
    w.n = n;
    w.D = D;
    w.Kmax = K;
    w.X = X;
    w.ridge = cfg->ridge;
    w.min_pts = cfg->cov == RF_GMM_FULL ? D + 1 : 2;
    w.R = malloc(sizeof(double) * (size_t)n * K);
    w.ll = malloc(sizeof(double) * n);
    w.Nk = malloc(sizeof(double) * K);
    w.M = malloc(sizeof(double) * (size_t)K * D);
    w.gchol = calloc((size_t)D * D, sizeof(double));
    w.reseeds = calloc((size_t)K, sizeof(int));
    w.deg = calloc((size_t)K, sizeof(int));
    w.taken = malloc((size_t)n);
    rf_gmm cur;
    memset(&cur, 0, sizeof cur);
    int rc = RF_OK;
    if (!w.R || !w.ll || !w.Nk || !w.M || !w.gchol || !w.reseeds || !w.deg || !w.taken) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory for EM on %d rows x %d components", n, K);
        goto done;
    }
    if ((rc = gmm_alloc(&cur, K, D, cfg->cov, e)) || (rc = gmm_alloc(g, K, D, cfg->cov, e))) goto done;
    /* pooled covariance (+ ridge): the shape given to re-seeded components */
    {
        double *S = w.gchol, *mean = calloc((size_t)D, sizeof(double));
        if (!mean) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < n; i++)
            for (int j = 0; j < D; j++) mean[j] += X[(size_t)i * D + j];
        for (int j = 0; j < D; j++) mean[j] /= n;
        for (int i = 0; i < n; i++)
            for (int a = 0; a < D; a++) {
                const double da = X[(size_t)i * D + a] - mean[a];
                if (cfg->cov == RF_GMM_FULL)
                    for (int b = 0; b <= a; b++) S[(size_t)a * D + b] += da * (X[(size_t)i * D + b] - mean[b]);
                else
                    S[(size_t)a * D + a] += da * da;
            }
        for (int a = 0; a < D; a++) {
            for (int b = 0; b <= a; b++) S[(size_t)a * D + b] /= n;
            S[(size_t)a * D + a] += cfg->ridge;
        }
        free(mean);
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', D, S, D) != 0) {
            rc = rf_err_set(e, RF_ENONFINITE,
                            "gmm: the pooled covariance of the training rows is singular with ridge %g (columns "
                            "are linearly dependent); use a positive ridge",
                            cfg->ridge);
            goto done;
        }
        w.glogdet = 0;
        for (int j = 0; j < D; j++) w.glogdet += 2 * log(S[(size_t)j * D + j]);
    }
    const int restarts = K == 1 ? 1 : cfg->restarts;
    double best = -INFINITY;
    int total = 0;
    for (int r = 0; r < restarts; r++) {
        rf_gmm_info ri;
        if (gmm_em_once(&cur, &w, cfg, rng, &ri)) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory in EM (%d rows, %d components)", n, K);
            goto done;
        }
        total += ri.iterations;
        if (r == 0 || ri.train_ll > best) {
            best = ri.train_ll;
            gmm_copy(g, &cur);
            *info = ri;
        }
    }
    info->total_iterations = total;
    if (!isfinite(best)) {
        rc =
            rf_err_set(e, RF_ENONFINITE, "gmm: EM with %d components ended with a non-finite likelihood (%g)", K, best);
        goto done;
    }
done:
    if (rc) rf_gmm_free(g);
    rf_gmm_free(&cur);
    free(w.R);
    free(w.ll);
    free(w.Nk);
    free(w.M);
    free(w.gchol);
    free(w.reseeds);
    free(w.deg);
    free(w.taken);
    return rc;
}
