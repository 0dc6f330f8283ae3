/* Tree-structured Parzen estimator (Bergstra et al. 2011), following Optuna's TPESampler
 * defaults: 10 random start-up trials, gamma(n) = min(ceil(0.1 n), 25) "good" observations,
 * weights ramping up for old "bad" observations beyond 25, a prior kernel of weight 1,
 * magic-clipped bandwidths, 24 candidates drawn from l(x) and the one maximising l(x)/g(x) kept.
 *
 * One departure (bandwidth_rule, default RF_TPE_BW_SCOTT): the multivariate kernels' bandwidth is
 * Scott's rule with the observations' own standard deviation per parameter, sd_j n^(-1/(G+4)),
 * where Optuna puts a fixed 0.2 (high - low) in place of sd_j. Good observations cluster, so
 * l(x) narrows as the search converges, while g(x) stays about as wide as Optuna's; the magic
 * clip keeps a floor. On Branin and Hartmann-6 (100 trials) its median best value beats Optuna
 * 3.1's TPE (uni- and multivariate; 3.1's kernels are not normalised by their bandwidth,
 * optuna#5109) and the corrected Optuna rule, and on seven further test functions it beats the
 * corrected rule on all and each of Optuna 3.1's samplers on six; RF_TPE_BW_OPTUNA gives
 * Optuna's rule. Numbers and commands: bench/SEARCH_RESULTS.md.
 *
 * Numeric parameters live on their transformed scale (log for log parameters; ints on
 * [low - 0.5, high + 0.5] with the probability of an integer = the mass of its bin); kernels are
 * Gaussians truncated to the range. Categorical kernels put weight 1 on the observed choice plus
 * prior_weight / n_kernels on every choice. Univariate TPE estimates each parameter from the
 * trials where it is active; multivariate TPE uses one joint mixture (a product kernel per
 * observation) over a group of parameters, and with `group` the space is split into the groups of
 * parameters that are always active together (Optuna's group decomposition), which is how
 * conditional parameters are handled. */
#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf_internal.h"

#define LOG_SQRT_2PI 0.91893853320467274178

typedef struct tpe_impl {
    rf_tpe_opts o;
} tpe_impl;

void rf_tpe_opts_default(rf_tpe_opts *o) {
    memset(o, 0, sizeof *o);
    o->n_startup_trials = 10;
    o->n_ei_candidates = 24;
    o->prior_weight = 1.0;
    o->magic_clip = 1;
    o->consider_endpoints = 0;
    o->multivariate = 1;
    o->group = 1;
    o->gamma_cap = 25;
    o->gamma_frac = 0.1;
    o->bandwidth_rule = RF_TPE_BW_SCOTT;
}

/* ---------------------------------------------------------------------------------------
 * Gaussian helpers
 * --------------------------------------------------------------------------------------- */

static inline double norm_cdf(double x) { return 0.5 * erfc(-x * M_SQRT1_2); }
static inline double norm_sf(double x) { return 0.5 * erfc(x * M_SQRT1_2); }

/* log(Phi(b) - Phi(a)) for a < b, accurate in both tails. */
static double log_gauss_mass(double a, double b) {
    if (a < -8.5 && b > 8.5) return 0.0; /* the tails outside hold < 2e-17 */
    double d;
    if (a >= 0) d = norm_sf(a) - norm_sf(b);
    else if (b <= 0) d = norm_cdf(b) - norm_cdf(a);
    else d = 1.0 - norm_sf(b) - norm_cdf(a);
    if (d > 0) return log(d);
    /* underflow far in a tail: density at the end nearest the centre times the width */
    double m = fabs(a) < fabs(b) ? a : b;
    return -0.5 * m * m - LOG_SQRT_2PI + log(b - a);
}

/* A standard normal draw truncated to [a, b], by inversion (one uniform per draw). */
static double trunc_std_normal(rf_rng *rng, double a, double b) {
    double u = rf_rng_uniform(rng), z;
    if (a >= 0) {
        double qa = norm_sf(a), qb = norm_sf(b);
        double q = qa - u * (qa - qb);
        z = q > 0 ? gsl_cdf_ugaussian_Qinv(q) : a;
    } else {
        double pa = norm_cdf(a), pb = norm_cdf(b);
        double p = pa + u * (pb - pa);
        z = p > 0 ? gsl_cdf_ugaussian_Pinv(p) : a;
    }
    if (!(z >= a)) z = a;
    if (!(z <= b)) z = b;
    return z;
}

/* ---------------------------------------------------------------------------------------
 * Parzen estimator over a group of parameters
 * --------------------------------------------------------------------------------------- */

enum { DIM_CONT = 0, DIM_INT = 1, DIM_CAT = 2 };

typedef struct dim_est {
    int kind;
    const rf_param *p;
    int pi;          /* parameter index */
    double lo, hi;   /* transformed bounds (numeric) */
    /* numeric, per kernel: mean, sd, 1/sd, log normaliser log(sd) + log sqrt(2 pi) + log Z, and
     * the one used for continuous densities (without log(sd) with sd_weighted_kernels) */
    double *mu, *sd, *isd, *lnorm, *logz, *lcont;
    /* categorical: observed choice per kernel (-1 = prior kernel) and the two log weights */
    int *obs;
    double l_match, l_other, l_prior;
    int n_choices;
} dim_est;

typedef struct estimator {
    int K; /* kernels: observations + prior */
    int G; /* dimensions */
    double *logw;
    double *cumw; /* cumulative weights for drawing a kernel */
    dim_est *d;
} estimator;

static void est_free(estimator *E) {
    if (!E->d) return;
    for (int g = 0; g < E->G; g++) {
        free(E->d[g].mu);
        free(E->d[g].sd);
        free(E->d[g].isd);
        free(E->d[g].lnorm);
        free(E->d[g].logz);
        free(E->d[g].lcont);
        free(E->d[g].obs);
    }
    free(E->d);
    free(E->logw);
    free(E->cumw);
    memset(E, 0, sizeof *E);
}

/* Optuna's default_weights: ones for up to 25 observations; beyond, a linear ramp from 1/n to 1
 * over the oldest n - 25 and ones for the newest 25. */
static void default_weights(int n, double *w) {
    if (n < 25) {
        for (int i = 0; i < n; i++) w[i] = 1.0;
        return;
    }
    int m = n - 25;
    for (int i = 0; i < m; i++) w[i] = m == 1 ? 1.0 / n : 1.0 / n + (1.0 - 1.0 / n) * i / (double)(m - 1);
    for (int i = m; i < n; i++) w[i] = 1.0;
}

typedef struct { double v; int i; } vi_pair;
static inline int vi_less(const vi_pair *x, const vi_pair *y) { return x->v < y->v || (x->v == y->v && x->i < y->i); }

/* Sorts by (v, i): quicksort (median of three) with insertion sort for short runs; inlined
 * comparisons (this runs for every parameter on every ask). */
static void vi_sort(vi_pair *a, int n) {
    while (n > 16) {
        int mid = n / 2;
        if (vi_less(&a[mid], &a[0])) { vi_pair t = a[mid]; a[mid] = a[0]; a[0] = t; }
        if (vi_less(&a[n - 1], &a[0])) { vi_pair t = a[n - 1]; a[n - 1] = a[0]; a[0] = t; }
        if (vi_less(&a[n - 1], &a[mid])) { vi_pair t = a[n - 1]; a[n - 1] = a[mid]; a[mid] = t; }
        const vi_pair piv = a[mid];
        int i = 0, j = n - 1;
        for (;;) {
            while (vi_less(&a[i], &piv)) i++;
            while (vi_less(&piv, &a[j])) j--;
            if (i >= j) break;
            vi_pair t = a[i];
            a[i] = a[j];
            a[j] = t;
            i++;
            j--;
        }
        /* recurse into the smaller part, loop on the larger */
        int left = j + 1;
        if (left < n - left) {
            vi_sort(a, left);
            a += left;
            n -= left;
        } else {
            vi_sort(a + left, n - left);
            n = left;
        }
    }
    for (int i = 1; i < n; i++) {
        vi_pair x = a[i];
        int j = i - 1;
        while (j >= 0 && vi_less(&x, &a[j])) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = x;
    }
}

/* Bandwidths of the univariate estimator: the larger distance to a neighbour among the sorted
 * observations, the prior mean and the range ends (Optuna's consider_endpoints = False rule for
 * the extremes). */
static int univariate_sigmas(int n, const double *mus, double lo, double hi, int endpoints, double *sig) {
    vi_pair *s = malloc(sizeof *s * (size_t)(n + 1));
    double *swe = malloc(sizeof(double) * (size_t)(n + 3));
    double *ss = malloc(sizeof(double) * (size_t)(n + 1));
    if (!s || !swe || !ss) {
        free(s);
        free(swe);
        free(ss);
        return RF_ENOMEM;
    }
    for (int i = 0; i < n; i++) s[i] = (vi_pair){mus[i], i};
    s[n] = (vi_pair){0.5 * (lo + hi), n};
    vi_sort(s, n + 1);
    swe[0] = lo;
    for (int i = 0; i <= n; i++) swe[i + 1] = s[i].v;
    swe[n + 2] = hi;
    for (int i = 0; i <= n; i++) {
        double l = swe[i + 1] - swe[i], r = swe[i + 2] - swe[i + 1];
        ss[i] = l > r ? l : r;
    }
    if (!endpoints && n + 3 >= 4) {
        ss[0] = swe[2] - swe[1];
        ss[n] = swe[n + 1] - swe[n];
    }
    for (int i = 0; i <= n; i++)
        if (s[i].i < n) sig[s[i].i] = ss[i];
    free(s);
    free(swe);
    free(ss);
    return RF_OK;
}

/* Builds the estimator over the parameters gp[0..G-1] from the observations obs[0..n-1]
 * (chronological). */
static int est_build(estimator *E, const rf_space *sp, const int *gp, int G, const rf_trial *const *obs,
                     int n, const rf_tpe_opts *o, rf_err *e) {
    memset(E, 0, sizeof *E);
    E->K = n + 1;
    E->G = G;
    const int K = E->K;
    E->logw = malloc(sizeof(double) * (size_t)K);
    E->cumw = malloc(sizeof(double) * (size_t)K);
    E->d = calloc((size_t)G, sizeof(dim_est));
    double *w = malloc(sizeof(double) * (size_t)K);
    if (!E->logw || !E->cumw || !E->d || !w) goto oom;
    default_weights(n, w);
    w[n] = n == 0 && !(o->prior_weight > 0) ? 1.0 : o->prior_weight; /* no observation: the prior alone */
    double tot = 0;
    for (int k = 0; k < K; k++) tot += w[k];
    double acc = 0;
    for (int k = 0; k < K; k++) {
        E->logw[k] = w[k] > 0 ? log(w[k] / tot) : -INFINITY;
        acc += w[k] / tot;
        E->cumw[k] = acc;
    }
    E->cumw[K - 1] = 1.0;
    free(w);
    w = NULL;

    for (int g = 0; g < G; g++) {
        dim_est *D = &E->d[g];
        D->pi = gp[g];
        D->p = &sp->p[gp[g]];
        const rf_param *p = D->p;
        if (p->kind == RF_PARAM_CAT) {
            D->kind = DIM_CAT;
            D->n_choices = p->n_choices;
            D->obs = malloc(sizeof(int) * (size_t)K);
            if (!D->obs) goto oom;
            for (int k = 0; k < n; k++) D->obs[k] = (int)obs[k]->cfg.v[gp[g]];
            D->obs[n] = -1;
            const double C = p->n_choices;
            double base = o->prior_weight / K, den = base * C + 1.0;
            if (base > 0) {
                D->l_match = log((base + 1.0) / den);
                D->l_other = log(base / den);
            } else {
                D->l_match = 0;
                D->l_other = -INFINITY;
            }
            D->l_prior = -log(C);
            continue;
        }
        D->kind = p->kind == RF_PARAM_INT ? DIM_INT : DIM_CONT;
        rf__param_tbounds(p, &D->lo, &D->hi);
        D->mu = malloc(sizeof(double) * (size_t)K);
        D->sd = malloc(sizeof(double) * (size_t)K);
        D->isd = malloc(sizeof(double) * (size_t)K);
        D->lnorm = malloc(sizeof(double) * (size_t)K);
        D->logz = malloc(sizeof(double) * (size_t)K);
        D->lcont = malloc(sizeof(double) * (size_t)K);
        if (!D->mu || !D->sd || !D->isd || !D->lnorm || !D->logz || !D->lcont) goto oom;
        for (int k = 0; k < n; k++) D->mu[k] = rf__param_to_t(p, obs[k]->cfg.v[gp[g]]);
        const double range = D->hi - D->lo;
        if (o->multivariate && G >= 1) {
            /* Optuna's rule, and Scott's rule on the observations' own spread */
            double s = 0.2 * pow(n > 1 ? n : 1, -1.0 / (G + 4)) * range;
            if (o->bandwidth_rule == RF_TPE_BW_SCOTT && n >= 2) {
                double m1 = 0, m2 = 0;
                for (int k = 0; k < n; k++) m1 += D->mu[k];
                m1 /= n;
                for (int k = 0; k < n; k++) m2 += (D->mu[k] - m1) * (D->mu[k] - m1);
                s = sqrt(m2 / (n - 1)) * pow(n, -1.0 / (G + 4));
            }
            for (int k = 0; k < n; k++) D->sd[k] = s;
        } else if (n > 0) {
            if (univariate_sigmas(n, D->mu, D->lo, D->hi, o->consider_endpoints, D->sd) != RF_OK) goto oom;
        }
        double minsd = o->magic_clip ? range / fmin(100.0, 1.0 + K) : 1e-12 * range;
        for (int k = 0; k < n; k++) {
            if (!(D->sd[k] >= minsd)) D->sd[k] = minsd;
            if (D->sd[k] > range) D->sd[k] = range;
        }
        D->mu[n] = 0.5 * (D->lo + D->hi);
        D->sd[n] = range;
        for (int k = 0; k < K; k++) {
            D->isd[k] = 1.0 / D->sd[k];
            D->logz[k] = log_gauss_mass((D->lo - D->mu[k]) * D->isd[k], (D->hi - D->mu[k]) * D->isd[k]);
            D->lnorm[k] = log(D->sd[k]) + LOG_SQRT_2PI + D->logz[k];
            D->lcont[k] = o->sd_weighted_kernels ? LOG_SQRT_2PI + D->logz[k] : D->lnorm[k];
        }
    }
    return RF_OK;
oom:
    free(w);
    est_free(E);
    return rf_err_set(e, RF_ENOMEM, "TPE: out of memory (%d observations)", n);
}

/* Draws m candidates from the mixture: val[c*G + g] in the internal representation. */
static void est_sample(const estimator *E, rf_rng *rng, int m, double *val) {
    for (int c = 0; c < m; c++) {
        double u = rf_rng_uniform(rng);
        int lo = 0, hi = E->K - 1; /* first k with cumw[k] > u */
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (E->cumw[mid] > u) hi = mid;
            else lo = mid + 1;
        }
        const int k = lo;
        for (int g = 0; g < E->G; g++) {
            const dim_est *D = &E->d[g];
            double *out = &val[(size_t)c * E->G + g];
            if (D->kind == DIM_CAT) {
                if (D->obs[k] < 0) {
                    *out = (double)rf_rng_below(rng, (uint64_t)D->n_choices);
                } else {
                    /* weight 1 on the observation + uniform part of total mass base*C */
                    double pm = exp(D->l_match) - exp(D->l_other); /* the observation's extra share */
                    if (rf_rng_uniform(rng) < pm) *out = D->obs[k];
                    else *out = (double)rf_rng_below(rng, (uint64_t)D->n_choices);
                }
            } else {
                double mu = D->mu[k], s = D->sd[k];
                double z = trunc_std_normal(rng, (D->lo - mu) / s, (D->hi - mu) / s);
                *out = rf__param_from_t(D->p, mu + s * z);
            }
        }
    }
}

/* out[c] = log density of candidate c (val as est_sample gives). acc: m * K scratch doubles,
 * lm: K scratch doubles, seen: m scratch ints. Integer dimensions compute each distinct
 * candidate value's bin masses once. */
static void est_logpdf(const estimator *E, int m, const double *val, double *acc, double *lm, int *seen, double *out) {
    const int K = E->K, G = E->G;
    if (G == 1 && E->d[0].kind == DIM_CAT) {
        /* one categorical: the mixture collapses to one probability per choice,
         * p(x) = sum_k w_k (base + [obs_k == x]) / den + w_prior / C */
        const dim_est *D = &E->d[0];
        const int C = D->n_choices;
        double *pc = lm; /* K >= 1 scratch; C may exceed K: fall back below */
        if (C <= K) {
            double other = exp(D->l_other), extra = exp(D->l_match) - other, wsum = 0;
            for (int x = 0; x < C; x++) pc[x] = 0;
            for (int k = 0; k < K - 1; k++) {
                double w = exp(E->logw[k]);
                wsum += w;
                pc[D->obs[k]] += w * extra;
            }
            const double wp = exp(E->logw[K - 1]);
            for (int x = 0; x < C; x++) pc[x] += wsum * other + wp / C;
            for (int c = 0; c < m; c++) out[c] = log(pc[(int)val[c]]);
            return;
        }
    }
    for (int c = 0; c < m; c++) memcpy(acc + (size_t)c * K, E->logw, sizeof(double) * (size_t)K);
    for (int g = 0; g < G; g++) {
        const dim_est *D = &E->d[g];
        if (D->kind == DIM_CAT) {
            for (int c = 0; c < m; c++) {
                double *a = acc + (size_t)c * K;
                const int xi = (int)val[(size_t)c * G + g];
                for (int k = 0; k < K - 1; k++) a[k] += D->obs[k] == xi ? D->l_match : D->l_other;
                a[K - 1] += D->l_prior;
            }
        } else if (D->kind == DIM_CONT) {
            for (int c = 0; c < m; c++) {
                double *a = acc + (size_t)c * K;
                const double t = rf__param_to_t(D->p, val[(size_t)c * G + g]);
                for (int k = 0; k < K; k++) {
                    double z = (t - D->mu[k]) * D->isd[k];
                    a[k] += -0.5 * z * z - D->lcont[k];
                }
            }
        } else {
            for (int c = 0; c < m; c++) seen[c] = 0;
            for (int c = 0; c < m; c++) {
                if (seen[c]) continue;
                const double x = val[(size_t)c * G + g];
                double ta = rf__param_to_t(D->p, x - 0.5), tb = rf__param_to_t(D->p, x + 0.5);
                if (ta < D->lo) ta = D->lo;
                if (tb > D->hi) tb = D->hi;
                const double w = tb - ta, tm = 0.5 * (ta + tb), lw = log(w);
                for (int k = 0; k < K; k++) {
                    /* mass of the bin: exact (erfc) unless the midpoint rule with its second-order
                     * term, w phi(m) (1 + w^2 (m^2 - 1) / 24), is accurate to ~1e-6 */
                    const double hw = w * D->isd[k], zm = (tm - D->mu[k]) * D->isd[k];
                    const double eps = hw * hw * (zm * zm - 1.0) / 24.0;
                    if (fabs(eps) < 2e-3)
                        lm[k] = lw - 0.5 * zm * zm - D->lnorm[k] + eps - 0.5 * eps * eps;
                    else
                        lm[k] = log_gauss_mass((ta - D->mu[k]) * D->isd[k], (tb - D->mu[k]) * D->isd[k]) - D->logz[k];
                }
                for (int c2 = c; c2 < m; c2++) {
                    if (seen[c2] || val[(size_t)c2 * G + g] != x) continue;
                    seen[c2] = 1;
                    double *a = acc + (size_t)c2 * K;
                    for (int k = 0; k < K; k++) a[k] += lm[k];
                }
            }
        }
    }
    for (int c = 0; c < m; c++) {
        const double *a = acc + (size_t)c * K;
        double mx = -INFINITY;
        for (int k = 0; k < K; k++)
            if (a[k] > mx) mx = a[k];
        if (!isfinite(mx)) {
            out[c] = mx;
            continue;
        }
        double s = 0;
        for (int k = 0; k < K; k++) {
            double d = a[k] - mx;
            if (d > -40.0) s += exp(d); /* smaller terms change the sum by < 1e-17 each */
        }
        out[c] = mx + log(s);
    }
}

/* ---------------------------------------------------------------------------------------
 * observations: which trials count and how they rank
 * --------------------------------------------------------------------------------------- */

typedef struct obs_rank {
    const rf_trial *t;
    double k1, k2; /* sort keys, ascending = better */
    int rank;      /* position in the best-first order */
} obs_rank;

static int cmp_obs(const void *a, const void *b) {
    const obs_rank *x = a, *y = b;
    if (x->k1 < y->k1) return -1;
    if (x->k1 > y->k1) return 1;
    if (x->k2 < y->k2) return -1;
    if (x->k2 > y->k2) return 1;
    return x->t->number - y->t->number;
}

static int usable_complete(const rf_trial *t, int M) {
    if (t->status != RF_TRIAL_COMPLETE || t->n_values < M) return 0;
    for (int k = 0; k < M; k++)
        if (!isfinite(t->values[k])) return 0;
    return 1;
}

/* Multi-objective keys: k1 = non-domination rank, k2 = sum of min-max normalised objectives. */
static int mo_keys(obs_rank *r, int n, const rf_history *h, rf_err *e) {
    const int M = h->n_objectives;
    double *lo = malloc(sizeof(double) * (size_t)M), *hi = malloc(sizeof(double) * (size_t)M);
    int *dom = calloc((size_t)n, sizeof(int)), *done = calloc((size_t)n, sizeof(int));
    if (!lo || !hi || !dom || !done) {
        free(lo);
        free(hi);
        free(dom);
        free(done);
        return rf_err_set(e, RF_ENOMEM, "TPE: out of memory");
    }
    for (int k = 0; k < M; k++) {
        lo[k] = INFINITY;
        hi[k] = -INFINITY;
        for (int i = 0; i < n; i++) {
            double v = rf__dir_sign(h, k) * r[i].t->values[k];
            if (v < lo[k]) lo[k] = v;
            if (v > hi[k]) hi[k] = v;
        }
    }
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int k = 0; k < M; k++) {
            double v = rf__dir_sign(h, k) * r[i].t->values[k];
            s += hi[k] > lo[k] ? (v - lo[k]) / (hi[k] - lo[k]) : 0;
        }
        r[i].k2 = s;
    }
    /* peel non-dominated fronts */
    int left = n, front = 0;
    while (left > 0) {
        for (int i = 0; i < n; i++) {
            if (done[i]) continue;
            dom[i] = 0;
            for (int j = 0; j < n && !dom[i]; j++) {
                if (j == i || done[j]) continue;
                int le = 1, lt = 0;
                for (int k = 0; k < M; k++) {
                    double a = rf__dir_sign(h, k) * r[j].t->values[k], b = rf__dir_sign(h, k) * r[i].t->values[k];
                    if (a > b) le = 0;
                    if (a < b) lt = 1;
                }
                if (le && lt) dom[i] = 1;
            }
        }
        for (int i = 0; i < n; i++)
            if (!done[i] && !dom[i]) {
                r[i].k1 = front;
                done[i] = 2; /* mark after the pass */
            }
        for (int i = 0; i < n; i++)
            if (done[i] == 2) {
                done[i] = 1;
                left--;
            }
        front++;
    }
    free(lo);
    free(hi);
    free(dom);
    free(done);
    return RF_OK;
}

/* The usable observations, each with its rank in the best-first order. Returns the count. */
static int rank_observations(const rf_history *h, obs_rank **out, rf_err *e) {
    const int M = h->n_objectives > 0 ? h->n_objectives : 1;
    obs_rank *r = malloc(sizeof *r * (size_t)(h->n > 0 ? h->n : 1));
    if (!r) return -rf_err_set(e, RF_ENOMEM, "TPE: out of memory");
    int n = 0;
    for (int i = 0; i < h->n; i++) {
        const rf_trial *t = h->items[i];
        if (usable_complete(t, M)) {
            r[n++] = (obs_rank){t, -INFINITY, M == 1 ? rf__dir_sign(h, 0) * t->values[0] : 0, 0};
        } else if (t->status == RF_TRIAL_PRUNED && M == 1) {
            if (t->last_step >= 0) {
                double v = rf__dir_sign(h, 0) * t->last_value;
                r[n++] = (obs_rank){t, -(double)t->last_step, isnan(t->last_value) ? INFINITY : v, 0};
            } else {
                r[n++] = (obs_rank){t, INFINITY, 0, 0};
            }
        }
    }
    if (M > 1 && n > 0) {
        int rc = mo_keys(r, n, h, e);
        if (rc) {
            free(r);
            return -rc;
        }
    }
    qsort(r, (size_t)n, sizeof *r, cmp_obs);
    for (int i = 0; i < n; i++) r[i].rank = i;
    /* back to chronological order (the weights ramp over age) */
    vi_pair *ch = malloc(sizeof *ch * (size_t)(n > 0 ? n : 1));
    obs_rank *r2 = malloc(sizeof *r2 * (size_t)(n > 0 ? n : 1));
    if (!ch || !r2) {
        free(ch);
        free(r2);
        free(r);
        return -rf_err_set(e, RF_ENOMEM, "TPE: out of memory");
    }
    for (int i = 0; i < n; i++) ch[i] = (vi_pair){(double)r[i].t->number, i};
    vi_sort(ch, n);
    for (int i = 0; i < n; i++) r2[i] = r[ch[i].i];
    free(ch);
    free(r);
    r = r2;
    *out = r;
    return n;
}

/* ---------------------------------------------------------------------------------------
 * groups of parameters
 * --------------------------------------------------------------------------------------- */

/* group[i] = group id of parameter i; returns the number of groups. Univariate: one group per
 * parameter. Multivariate with group: parameters active in exactly the same observations share
 * a group. Multivariate without group: the parameters active in every observation form one
 * group, the others are univariate. */
static int make_groups(const rf_space *sp, const obs_rank *r, int n, const rf_tpe_opts *o, int *group) {
    const int P = sp->n;
    if (!o->multivariate) {
        for (int i = 0; i < P; i++) group[i] = i;
        return P;
    }
    if (!o->group) {
        int ng = 1;
        for (int i = 0; i < P; i++) {
            int all = 1;
            for (int t = 0; t < n && all; t++) all = r[t].t->cfg.active[i];
            group[i] = all ? 0 : ng++;
        }
        return ng;
    }
    uint64_t *hash = malloc(sizeof(uint64_t) * (size_t)(P > 0 ? P : 1));
    if (!hash) { /* fall back to univariate */
        for (int i = 0; i < P; i++) group[i] = i;
        return P;
    }
    for (int i = 0; i < P; i++) {
        uint64_t hsh = 1469598103934665603ull;
        for (int t = 0; t < n; t++) hsh = (hsh ^ (uint64_t)(r[t].t->cfg.active[i] ? 1 : 2)) * 1099511628211ull;
        hash[i] = hsh;
    }
    int ng = 0;
    for (int i = 0; i < P; i++) {
        group[i] = -1;
        for (int j = 0; j < i && group[i] < 0; j++) {
            if (hash[j] != hash[i]) continue;
            int same = 1;
            for (int t = 0; t < n && same; t++) same = r[t].t->cfg.active[i] == r[t].t->cfg.active[j];
            if (same) group[i] = group[j];
        }
        if (group[i] < 0) group[i] = ng++;
    }
    free(hash);
    return ng;
}

/* ---------------------------------------------------------------------------------------
 * sampling
 * --------------------------------------------------------------------------------------- */

static void sample_uniform_param(const rf_param *p, rf_rng *rng, double *out) {
    if (p->kind == RF_PARAM_CAT) {
        *out = (double)rf_rng_below(rng, (uint64_t)p->n_choices);
    } else {
        double lo, hi;
        rf__param_tbounds(p, &lo, &hi);
        *out = rf__param_from_t(p, lo + rf_rng_uniform(rng) * (hi - lo));
    }
}

/* Samples the parameters gp[0..G-1] of one group into out. */
static int sample_group(const rf_space *sp, const int *gp, int G, const obs_rank *r, int n,
                        const rf_tpe_opts *o, rf_rng *rng, rf_config *out, rf_err *e) {
    /* observations where the group is active (all of its parameters: they share a pattern) */
    const rf_trial **tv = malloc(sizeof *tv * (size_t)(n > 0 ? n : 1));
    int *rk = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!tv || !rk) {
        free(tv);
        free(rk);
        return rf_err_set(e, RF_ENOMEM, "TPE: out of memory");
    }
    int m = 0;
    for (int t = 0; t < n; t++) {
        int all = 1;
        for (int g = 0; g < G && all; g++) all = r[t].t->cfg.active[gp[g]];
        if (all) {
            tv[m] = r[t].t;
            rk[m] = r[t].rank;
            m++;
        }
    }
    if (m < o->n_startup_trials || m == 0) {
        for (int g = 0; g < G; g++) sample_uniform_param(&sp->p[gp[g]], rng, &out->v[gp[g]]);
        free(tv);
        free(rk);
        return RF_OK;
    }
    /* split: the n_below best (by rank among these m) vs the rest, each chronological */
    int n_below = (int)ceil(o->gamma_frac * m);
    if (n_below > o->gamma_cap) n_below = o->gamma_cap;
    if (n_below < 1) n_below = 1;
    if (n_below > m) n_below = m;
    int *pos = malloc(sizeof(int) * (size_t)n);
    const rf_trial **below = malloc(sizeof *below * (size_t)m), **above = malloc(sizeof *above * (size_t)m);
    unsigned char *isb = calloc((size_t)m, 1);
    estimator L = {0}, Gm = {0};
    const int NC = o->n_ei_candidates > 0 ? o->n_ei_candidates : 1;
    double *cand = malloc(sizeof(double) * (size_t)NC * (size_t)G);
    double *ll = malloc(sizeof(double) * (size_t)NC), *lg = malloc(sizeof(double) * (size_t)NC);
    double *acc = malloc(sizeof(double) * (size_t)(m + 1) * (size_t)NC);
    double *lm = malloc(sizeof(double) * (size_t)(m + 1));
    int *seen = malloc(sizeof(int) * (size_t)NC);
    int rc = RF_OK;
    if (!pos || !below || !above || !isb || !cand || !ll || !lg || !acc || !lm || !seen) {
        rc = rf_err_set(e, RF_ENOMEM, "TPE: out of memory");
        goto done;
    }
    /* ranks are distinct in 0..n-1: the n_below best are found by walking the ranks */
    for (int q = 0; q < n; q++) pos[q] = -1;
    for (int i = 0; i < m; i++) pos[rk[i]] = i;
    for (int q = 0, taken = 0; q < n && taken < n_below; q++)
        if (pos[q] >= 0) {
            isb[pos[q]] = 1;
            taken++;
        }
    int nb = 0, na = 0;
    for (int i = 0; i < m; i++) {
        if (isb[i]) below[nb++] = tv[i];
        else above[na++] = tv[i];
    }
    rc = est_build(&L, sp, gp, G, below, nb, o, e);
    if (!rc) rc = est_build(&Gm, sp, gp, G, above, na, o, e);
    if (rc) goto done;
    est_sample(&L, rng, NC, cand);
    est_logpdf(&L, NC, cand, acc, lm, seen, ll);
    est_logpdf(&Gm, NC, cand, acc, lm, seen, lg);
    int best = 0;
    double bs = -INFINITY;
    for (int c = 0; c < NC; c++) {
        double s = ll[c] - lg[c];
        if (isnan(s)) continue;
        if (s > bs) {
            bs = s;
            best = c;
        }
    }
    for (int g = 0; g < G; g++) out->v[gp[g]] = cand[(size_t)best * G + g];
done:
    est_free(&L);
    est_free(&Gm);
    free(pos);
    free(below);
    free(above);
    free(isb);
    free(cand);
    free(ll);
    free(lg);
    free(acc);
    free(lm);
    free(seen);
    free(tv);
    free(rk);
    return rc;
}

static int tpe_sample(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng,
                      rf_config *out, rf_err *e) {
    const tpe_impl *T = s->impl;
    const rf_tpe_opts *o = &T->o;
    rf_history empty = {0};
    if (!h) h = &empty;
    for (int i = 0; i < h->n; i++)
        if (h->items[i]->cfg.n != sp->n)
            return rf_err_set(e, RF_EARG, "TPE: history trial %d has %d values for a space of %d parameters",
                              h->items[i]->number, h->items[i]->cfg.n, sp->n);
    obs_rank *r = NULL;
    int n = rank_observations(h, &r, e);
    if (n < 0) return -n;
    const int P = sp->n;
    int *group = malloc(sizeof(int) * (size_t)P), *gp = malloc(sizeof(int) * (size_t)P);
    if (!group || !gp) {
        free(r);
        free(group);
        free(gp);
        return rf_err_set(e, RF_ENOMEM, "TPE: out of memory");
    }
    int ng = make_groups(sp, r, n, o, group);
    int rc = RF_OK;
    for (int g = 0; g < ng && !rc; g++) {
        int G = 0;
        for (int i = 0; i < P; i++)
            if (group[i] == g) gp[G++] = i;
        if (G) rc = sample_group(sp, gp, G, r, n, o, rng, out, e);
    }
    free(r);
    free(group);
    free(gp);
    if (rc) return rc;
    rf__config_update_active(sp, out, 1);
    return RF_OK;
}

static void tpe_destroy(rf_sampler *s) { free(s->impl); }

static const rf_sampler_ops TPE_OPS = {"tpe", tpe_sample, tpe_destroy};

rf_sampler *rf_sampler_tpe_create(const rf_tpe_opts *o, rf_err *e) {
    rf_tpe_opts d;
    if (!o) {
        rf_tpe_opts_default(&d);
        o = &d;
    }
    if (o->n_startup_trials < 0 || o->n_ei_candidates < 1 || o->n_ei_candidates > 100000 ||
        !(o->prior_weight >= 0) || !isfinite(o->prior_weight) || o->gamma_cap < 1 ||
        !(o->gamma_frac > 0 && o->gamma_frac <= 1)) {
        rf_err_set(e, RF_EARG,
                   "TPE options: need n_startup_trials >= 0 (got %d), n_ei_candidates in [1, 100000] (%d), "
                   "prior_weight >= 0 (%g), gamma_cap >= 1 (%d), gamma_frac in (0, 1] (%g)",
                   o->n_startup_trials, o->n_ei_candidates, o->prior_weight, o->gamma_cap, o->gamma_frac);
        return NULL;
    }
    if (o->bandwidth_rule != RF_TPE_BW_SCOTT && o->bandwidth_rule != RF_TPE_BW_OPTUNA) {
        rf_err_set(e, RF_EARG, "TPE options: bandwidth_rule must be RF_TPE_BW_SCOTT (0) or RF_TPE_BW_OPTUNA (1), got %d",
                   o->bandwidth_rule);
        return NULL;
    }
    if (o->group && !o->multivariate) {
        rf_err_set(e, RF_EARG, "TPE options: group needs multivariate (as in Optuna)");
        return NULL;
    }
    rf_sampler *s = rf_zalloc(sizeof *s, e);
    tpe_impl *T = rf_zalloc(sizeof *T, e);
    if (!s || !T) {
        free(s);
        free(T);
        return NULL;
    }
    T->o = *o;
    s->ops = &TPE_OPS;
    s->impl = T;
    return s;
}

rf_sampler *rf__sampler_create_tpe(const char *name, rf_err *e) {
    if (!name || strncmp(name, "tpe", 3) != 0) return NULL;
    rf_tpe_opts o;
    rf_tpe_opts_default(&o);
    if (!strcmp(name, "tpe")) return rf_sampler_tpe_create(&o, e);
    if (!strcmp(name, "tpe-optuna")) {
        o.bandwidth_rule = RF_TPE_BW_OPTUNA;
        return rf_sampler_tpe_create(&o, e);
    }
    if (!strcmp(name, "tpe-sdw")) {
        o.bandwidth_rule = RF_TPE_BW_OPTUNA;
        o.sd_weighted_kernels = 1;
        return rf_sampler_tpe_create(&o, e);
    }
    if (!strcmp(name, "tpe-univariate") || !strcmp(name, "tpe-univariate-sdw")) {
        o.multivariate = 0;
        o.group = 0;
        o.sd_weighted_kernels = strstr(name, "-sdw") != NULL;
        return rf_sampler_tpe_create(&o, e);
    }
    return NULL;
}
