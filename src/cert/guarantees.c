/* Numerical guarantees of a flow, each measured on stated points, with a threshold and a verdict.
 *
 * Points. The input range is the per-dimension [min, max] box of the test rows. Invertibility is
 * checked on (a) the test rows, (b) samples drawn from the model, (c) points drawn uniformly in the
 * box. The Jacobian checks use `guarantee_points` test rows (a seeded subsample) plus the first
 * `box_points` box points.
 *
 * Invertibility: e = |f^-1(f(x)) - x| elementwise, max and mean per set; pass when every value is
 * finite and max e <= inv_tol * max(1, max |x|) over the set.
 *
 * Jacobians by finite differences. Column j of J = dz/dx at x is the Richardson-extrapolated
 * central difference (4 D(h/2) - D(h)) / 3, D(h) = (f(x + h e_j) - f(x - h e_j)) / (actual step),
 * with h = fd_step x the test data's robust scale of dimension j, 1.4826 x its median absolute
 * deviation (the standard deviation when that is 0; outliers such as EEG Eye State's samples of
 * 10^5 uV would otherwise make h far larger than the data's structure) (layers: fd_step x the
 * RMS of the layer's input at the point), tried at 3h, h, h / 10, h / 100 and h / 1000: per column
 * the estimate with the smallest estimated error (see fd_jacobian) is kept. The flow runs in float32; differences and everything
 * after them are in double. For D <= jacobian_max_dim the full Jacobian is formed:
 *   log-determinant: the finite differences are the inaccurate side (RQ splines are only C1,
 *                    ReLU kinks, float32, nearly singular Jacobians far from the data), so each
 *                    entry of J carries an error estimate (fd_jacobian) which logdet_interval
 *                    turns into an interval for the true log|det|; once for the whole flow and
 *                    once layer by layer (each layer's Jacobian at its input; the intervals add
 *                    up, plus the exact standardisation). At each point: fail when the model's
 *                    log-det (or a layer's) lies outside an interval by more than
 *                    logdet_tol * max(1, D); pass when an interval of half-width <= that
 *                    threshold holds it within the threshold; else not verified (the finite
 *                    differences cannot resolve the tolerance there). The check fails when a
 *                    point fails, passes when all pass, and is not verified otherwise;
 *   Lipschitz:       singular values of J (LAPACK dgesdd): the local constant of f at x is
 *                    sigma_max(J), that of f^-1 at f(x) is 1 / sigma_min(J).
 * Above the limit the log-det check is reported as not verified, and sigma_max, sigma_min come
 * from `lanczos_steps` steps of Golub-Kahan-Lanczos bidiagonalisation (the Lanczos process on
 * J^T J - a power iteration keeping its Krylov basis - run with J and J^T, full
 * re-orthogonalisation), J v from finite differences (taken in standardised coordinates, see
 * lanczos_extremes) and J^T u from the layers' analytic backward. The extreme Ritz values bound
 * sigma_max from below and sigma_min from above: with fewer steps than dimensions the inverse
 * constant and the condition are lower bounds, and a condition below the threshold leaves the
 * check not verified.
 * The same is done for every layer (at the layer's input at the point) and for the
 * standardisation (diagonal, exact). Reported constants are maxima over the points: empirical
 * lower bounds of the Lipschitz constants on the verified range, not certified upper bounds; the
 * product of the layers' maxima is the usual composition bound. Verdict: pass when the constants
 * are finite and every point's local condition number sigma_max / sigma_min of the layer stack in
 * standardised coordinates (dz/du = dz/dx diag(scale): the diagonal standardisation is exact in
 * relative terms, so feature scales do not count) is <= cond_max (1e7, below 1 / 2^-24: beyond it
 * the Jacobian is numerically singular in float32 and inversion can lose every digit).
 * L(f) L(f^-1), the product of the maxima in input units (possibly at different points), is
 * reported as condition_bound. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cert_internal.h"

/* ================================================================ maps x -> y on rows of D floats */
typedef struct gmap {
    int D;
    int cap;              /* rows per call at most */
    const rf_flow *f;     /* whole flow (l == NULL) */
    rf_flow_ws *w;
    const rf_layer *l;    /* one layer */
    const float *params;
    float *scratch;       /* scratch_floats(l, cap) (stack: the maximum over the layers) */
    float *ld;            /* cap */
    int stack;            /* 1: the layers of f without the standardisation (input u) */
    float *t1, *t2;       /* stack: cap x D each */
} gmap;

static int cmp_dbl(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The median of v[0..n) (reorders v). */
static double median_inplace(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_dbl);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void gmap_apply(gmap *m, int n, const float *in, float *out, float *logdet) {
    if (m->stack) {
        const rf_flow *f = m->f;
        for (int i0 = 0; i0 < n; i0 += m->cap) {
            const int nb = n - i0 < m->cap ? n - i0 : m->cap;
            memcpy(m->t1, in + (size_t)i0 * m->D, sizeof(float) * (size_t)nb * m->D);
            memset(m->ld, 0, sizeof(float) * (size_t)nb);
            for (int k = 0; k < f->n_layers; k++) {
                const rf_layer *l = f->layers[k];
                l->ops->forward(l, f->params + l->offset, nb, m->t1, m->t2, m->ld, NULL, m->scratch);
                float *t = m->t1;
                m->t1 = m->t2;
                m->t2 = t;
            }
            memcpy(out + (size_t)i0 * m->D, m->t1, sizeof(float) * (size_t)nb * m->D);
            if (logdet) memcpy(logdet + i0, m->ld, sizeof(float) * (size_t)nb);
        }
        return;
    }
    if (!m->l) {
        rf_flow_forward(m->f, m->w, n, in, out, logdet);
        return;
    }
    for (int i0 = 0; i0 < n; i0 += m->cap) {
        const int nb = n - i0 < m->cap ? n - i0 : m->cap;
        memset(m->ld, 0, sizeof(float) * (size_t)nb);
        m->l->ops->forward(m->l, m->params, nb, in + (size_t)i0 * m->D, out + (size_t)i0 * m->D, m->ld, NULL, m->scratch);
        if (logdet) memcpy(logdet + i0, m->ld, sizeof(float) * (size_t)nb);
    }
}

/* Full Jacobian J (D x D, row-major, J[r D + j] = dy_r / dx_j) at x, h[j] > 0 the steps. Each
 * column is tried with the steps 3h, h, h / 10, h / 100 and h / 1000 (20 evaluations); the
 * Richardson estimate with the smallest estimated error (below; its maximum over the column) is
 * kept, so that a column is not spoiled by a kink (ReLU conditioners, spline knots) inside one
 * step or by float32 rounding with a small one. in / out: buffers of cap x D floats.
 * Err (may be NULL) receives an estimate of the error of each entry of J (same layout): the
 * truncation estimate |D(s/2) - D(s)| of the kept step (for a smooth map it exceeds the error of
 * the extrapolated value by far; where the map is only C1, as rational-quadratic splines are at
 * their knots, the extrapolation gains nothing and the error of the kept value is about
 * (2/3)|D(s/2) - D(s)|) plus the rounding bound of the Richardson formula, (8 eta / d2 + 2 eta /
 * d1) / 3 with d1, d2 the two full steps taken and eta = FD_NOISE_ULPS x 2^-24 x the largest
 * |y_r| of the four evaluations: the flow's own float32 rounding, which the differences divide by
 * the step. */
#define FD_NS 5
#define FD_NOISE_ULPS 8.0
static const double FD_SCALE[FD_NS] = {3.0, 1.0, 0.1, 0.01, 0.001};
static void fd_jacobian(gmap *m, const float *x, const double *h, double *J, double *Err, float *in, float *out) {
    const int D = m->D, R = 4 * FD_NS, per = m->cap / R > 0 ? m->cap / R : 1;
    double *st = malloc(sizeof(double) * R * (size_t)per), *col = malloc(sizeof(double) * FD_NS * (size_t)D),
           *cer = malloc(sizeof(double) * FD_NS * (size_t)D), *ref = malloc(sizeof(double) * FD_NS * (size_t)D);
    if (!st || !col || !cer || !ref) {
        for (size_t k = 0; k < (size_t)D * D; k++) J[k] = NAN;
        if (Err)
            for (size_t k = 0; k < (size_t)D * D; k++) Err[k] = NAN;
        free(st);
        free(col);
        free(cer);
        free(ref);
        return;
    }
    for (int j0 = 0; j0 < D; j0 += per) {
        const int nj = D - j0 < per ? D - j0 : per;
        for (int t = 0; t < nj; t++) {
            const int j = j0 + t;
            for (int s = 0; s < FD_NS; s++) {
                const double hj = FD_SCALE[s] * h[j];
                const double hs[4] = {hj, -hj, 0.5 * hj, -0.5 * hj};
                for (int q = 0; q < 4; q++) {
                    float *r = in + (size_t)(R * t + 4 * s + q) * D;
                    memcpy(r, x, sizeof(float) * (size_t)D);
                    r[j] = (float)((double)x[j] + hs[q]);
                    st[R * t + 4 * s + q] = (double)r[j] - (double)x[j]; /* the step actually taken */
                }
            }
        }
        gmap_apply(m, R * nj, in, out, NULL);
        for (int t = 0; t < nj; t++) {
            const int j = j0 + t;
            for (int s = 0; s < FD_NS; s++) {
                const float *yp = out + (size_t)(R * t + 4 * s) * D, *ym = yp + D, *yp2 = ym + D, *ym2 = yp2 + D;
                const double *sp = st + R * t + 4 * s;
                const double d1 = sp[0] - sp[1], d2 = sp[2] - sp[3];
                for (int r = 0; r < D; r++) {
                    const double a = ((double)yp[r] - ym[r]) / d1, b = ((double)yp2[r] - ym2[r]) / d2;
                    col[(size_t)s * D + r] = (4 * b - a) / 3;
                    double ymax = fabs((double)yp[r]);
                    if (fabs((double)ym[r]) > ymax) ymax = fabs((double)ym[r]);
                    if (fabs((double)yp2[r]) > ymax) ymax = fabs((double)yp2[r]);
                    if (fabs((double)ym2[r]) > ymax) ymax = fabs((double)ym2[r]);
                    const double eta = FD_NOISE_ULPS * 0x1p-24 * ymax;
                    cer[(size_t)s * D + r] = fabs(b - a) + (8 * eta / fabs(d2) + 2 * eta / fabs(d1)) / 3;
                }
            }
            /* refine: err(R_s) <= |R_s - R_s'| + err(R_s') for any other step s' (a smaller step
             * that is smooth and above the rounding noise estimates the larger one's error well) */
            int pick = 0;
            double best = INFINITY;
            for (int s = 0; s < FD_NS; s++) {
                double e = 0;
                for (int r = 0; r < D; r++) {
                    double v = cer[(size_t)s * D + r];
                    for (int s2 = 0; s2 < FD_NS; s2++) {
                        if (s2 == s) continue;
                        const double u = fabs(col[(size_t)s * D + r] - col[(size_t)s2 * D + r]) + cer[(size_t)s2 * D + r];
                        if (u < v) v = u;
                    }
                    ref[(size_t)s * D + r] = v;
                    if (!(v <= e)) e = v; /* NaN propagates */
                }
                if (e < best) {
                    best = e;
                    pick = s;
                }
            }
            for (int r = 0; r < D; r++) {
                J[(size_t)r * D + j] = col[(size_t)pick * D + r];
                if (Err) Err[(size_t)r * D + j] = ref[(size_t)pick * D + r];
            }
        }
    }
    free(st);
    free(col);
    free(cer);
    free(ref);
}

static int all_finite_d(const double *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* log|det J|; -inf when singular, NAN when not finite */
static double logabsdet(int D, const double *J, double *work, int *ipiv) {
    if (!all_finite_d(J, (size_t)D * D)) return NAN;
    memcpy(work, J, sizeof(double) * (size_t)D * D);
    const int info = LAPACKE_dgetrf(LAPACK_ROW_MAJOR, D, D, work, D, ipiv);
    if (info < 0) return NAN;
    if (info > 0) return -INFINITY;
    double s = 0;
    for (int i = 0; i < D; i++) s += log(fabs(work[(size_t)i * D + i]));
    return s;
}

/* An interval [lo, hi] holding log|det(J + E)| for every E with |E_rj| <= Err_rj (Err: the
 * estimated error of the numerical Jacobian J; so [lo, hi] holds the true log|det| as far as the
 * estimate holds). Two bounds, the tighter kept:
 *  - perturbation: with M = J^-1 E and A = |J^-1| Err (entrywise absolute values, so
 *    |M^k| <= A^k entrywise and rho(M) <= rho(A)): when rho(A) < 1,
 *    log det(I + M) = sum_k (-1)^(k+1) tr(M^k) / k, |tr(M^k)| <= tr(A^k), so
 *    |log|det(J + E)| - log|det J|| <= sum_k tr(A^k) / k = -log det(I - A) =: beta, and the
 *    interval is log|det J| -+ beta. rho(A) < 1 is tested exactly: I - A is then a nonsingular
 *    M-matrix, i.e. (I - A) v = 1 has a positive solution. Only products of errors with the
 *    entries of J^-1 they meet count (tr A to first order): the noise on the structural zeros of a
 *    triangular coupling Jacobian enters only at second order, as it should.
 *  - Weyl: after scaling column j by c_j (c NULL: 1; log|det J| = log|det(J C)| - sum log c_j),
 *    every singular value of (J + E) C lies within eps = ||Err C||_F of that of J C, so
 *    log|det| in [sum log(sigma_i - eps), sum log(sigma_i + eps)] - sum log c_j, the lower end
 *    -inf when sigma_min <= eps. Looser, but its upper end exists even when J is numerically
 *    singular: a model that claims more volume than any nearby matrix has can still be caught.
 * NAN, NAN when J or Err is not finite. work: 2 D^2 doubles, sv: D, ipiv: D. */
static void logdet_interval(int D, const double *J, const double *Err, const double *c, double *work, double *sv,
                            int *ipiv, double *lo, double *hi) {
    *lo = *hi = NAN;
    const size_t DD = (size_t)D * D;
    if (!all_finite_d(J, DD) || !all_finite_d(Err, DD)) return;
    /* Weyl */
    double eps2 = 0, lc = 0;
    for (int r = 0; r < D; r++)
        for (int j = 0; j < D; j++) {
            const double cj = c ? c[j] : 1.0, v = Err[(size_t)r * D + j] * cj;
            work[(size_t)r * D + j] = J[(size_t)r * D + j] * cj;
            eps2 += v * v;
        }
    if (c)
        for (int j = 0; j < D; j++) lc += log(c[j]);
    if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', D, D, work, D, sv, NULL, D, NULL, D) != 0) return;
    const double eps = sqrt(eps2);
    double a = 0, b = 0;
    for (int i = 0; i < D; i++) {
        a += sv[i] > eps ? log(sv[i] - eps) : -INFINITY;
        b += log(sv[i] + eps);
    }
    *lo = a - lc;
    *hi = b - lc;
    /* perturbation bound */
    double *inv = work, *A = work + DD;
    memcpy(inv, J, sizeof(double) * DD);
    if (LAPACKE_dgetrf(LAPACK_ROW_MAJOR, D, D, inv, D, ipiv) != 0) return; /* singular: Weyl only */
    double ldj = 0;
    for (int i = 0; i < D; i++) ldj += log(fabs(inv[(size_t)i * D + i]));
    if (LAPACKE_dgetri(LAPACK_ROW_MAJOR, D, inv, D, ipiv) != 0) return;
    for (size_t k = 0; k < DD; k++) inv[k] = fabs(inv[k]);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, D, D, 1.0, inv, D, Err, D, 0.0, A, D);
    if (!all_finite_d(A, DD)) return;
    /* B = I - A (overwrites |J^-1|): rho(A) < 1 iff B is a nonsingular M-matrix iff B v = 1 has a
     * positive solution; then beta = -log det(I - A) */
    for (int r = 0; r < D; r++)
        for (int j = 0; j < D; j++) inv[(size_t)r * D + j] = (r == j) - A[(size_t)r * D + j];
    if (LAPACKE_dgetrf(LAPACK_ROW_MAJOR, D, D, inv, D, ipiv) != 0) return;
    for (int i = 0; i < D; i++) sv[i] = 1.0;
    if (LAPACKE_dgetrs(LAPACK_ROW_MAJOR, 'N', D, 1, inv, D, ipiv, sv, 1) != 0) return;
    for (int i = 0; i < D; i++)
        if (!(sv[i] > 0) || !isfinite(sv[i])) return;
    double beta = 0;
    for (int i = 0; i < D; i++) beta -= log(fabs(inv[(size_t)i * D + i]));
    if (!isfinite(beta) || beta < 0) return;
    if (ldj - beta > *lo) *lo = ldj - beta;
    if (ldj + beta < *hi) *hi = ldj + beta;
}

/* distance of v outside [lo, hi] (0 inside; +inf when v is not finite) */
static double outside(double v, double lo, double hi) {
    if (!isfinite(v) || isnan(lo) || isnan(hi)) return INFINITY;
    return v < lo ? lo - v : v > hi ? v - hi : 0.0;
}

/* extreme singular values of J; NAN when not finite */
static void svd_extremes(int D, const double *J, double *work, double *sv, double *smax, double *smin) {
    *smax = *smin = NAN;
    if (!all_finite_d(J, (size_t)D * D)) return;
    memcpy(work, J, sizeof(double) * (size_t)D * D);
    if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', D, D, work, D, sv, NULL, D, NULL, D) != 0) return;
    *smax = sv[0];
    *smin = sv[D - 1];
}

/* ================================================================ J v and J^T u for Lanczos */
typedef struct vjp_ctx {
    const rf_flow *f;
    int L0, L1;        /* layers [L0, L1) */
    int standardise;   /* include the standardisation in front */
    float **acts;      /* layer inputs (L1 - L0 + 1) x D */
    float **caches;
    float *scratch, *dparams, *ld, *dld, *g0, *g1;
} vjp_ctx;

static void vjp_free(vjp_ctx *c) {
    const int n = c->L1 - c->L0;
    for (int k = 0; c->acts && k <= n; k++) rf_free(c->acts[k]);
    for (int k = 0; c->caches && k < n; k++) rf_free(c->caches[k]);
    free(c->acts);
    free(c->caches);
    rf_free(c->scratch);
    rf_free(c->dparams);
    rf_free(c->ld);
    rf_free(c->dld);
    rf_free(c->g0);
    rf_free(c->g1);
}

static int vjp_init(vjp_ctx *c, const rf_flow *f, int L0, int L1, int standardise, rf_err *e) {
    memset(c, 0, sizeof *c);
    c->f = f;
    c->L0 = L0;
    c->L1 = L1;
    c->standardise = standardise;
    const int n = L1 - L0, D = f->D;
    c->acts = calloc((size_t)n + 1, sizeof(float *));
    c->caches = calloc((size_t)(n > 0 ? n : 1), sizeof(float *));
    if (!c->acts || !c->caches) return rf_err_set(e, RF_ENOMEM, "out of memory");
    size_t sc = 1, np = 1;
    for (int k = 0; k < n; k++) {
        const rf_layer *l = f->layers[L0 + k];
        const size_t s = l->ops->scratch_floats(l, 1);
        if (s > sc) sc = s;
        if (l->n_params > np) np = l->n_params;
        if (!(c->caches[k] = rf_floats(l->ops->cache_floats(l, 1) + 1, e))) return e ? e->code : RF_ENOMEM;
    }
    for (int k = 0; k <= n; k++)
        if (!(c->acts[k] = rf_floats((size_t)D, e))) return e ? e->code : RF_ENOMEM;
    c->scratch = rf_floats(sc, e);
    c->dparams = rf_floats(np, e);
    c->ld = rf_floats(1, e);
    c->dld = rf_floats(1, e);
    c->g0 = rf_floats((size_t)D, e);
    c->g1 = rf_floats((size_t)D, e);
    if (!c->scratch || !c->dparams || !c->ld || !c->dld || !c->g0 || !c->g1) return e ? e->code : RF_ENOMEM;
    return RF_OK;
}

/* forward at x with caches (x in data units when standardise, else the input of layer L0) */
static void vjp_forward(vjp_ctx *c, const float *x) {
    const rf_flow *f = c->f;
    const int D = f->D, n = c->L1 - c->L0;
    for (int j = 0; j < D; j++) c->acts[0][j] = c->standardise ? (x[j] - f->shift[j]) / f->scale[j] : x[j];
    for (int k = 0; k < n; k++) {
        const rf_layer *l = f->layers[c->L0 + k];
        c->ld[0] = 0;
        l->ops->forward(l, f->params + l->offset, 1, c->acts[k], c->acts[k + 1], c->ld, c->caches[k], c->scratch);
    }
}

/* out = J^T u at the point of the last vjp_forward */
static void vjp_apply(vjp_ctx *c, const double *u, double *out) {
    const rf_flow *f = c->f;
    const int D = f->D, n = c->L1 - c->L0;
    for (int j = 0; j < D; j++) c->g0[j] = (float)u[j];
    for (int k = n - 1; k >= 0; k--) {
        const rf_layer *l = f->layers[c->L0 + k];
        c->dld[0] = 0;
        l->ops->backward(l, f->params + l->offset, 1, c->acts[k], c->g0, c->dld, c->g1, c->dparams, c->caches[k], c->scratch);
        float *t = c->g0;
        c->g0 = c->g1;
        c->g1 = t;
    }
    for (int j = 0; j < D; j++) out[j] = c->standardise ? (double)c->g0[j] / f->scale[j] : (double)c->g0[j];
}

/* J v by Richardson central differences along v (unit), step h */
static void fd_jvp(gmap *m, const float *x, const double *v, double h, double *out, float *in4, float *out4) {
    const int D = m->D;
    const double hs[4] = {h, -h, 0.5 * h, -0.5 * h};
    for (int q = 0; q < 4; q++)
        for (int j = 0; j < D; j++) in4[(size_t)q * D + j] = (float)((double)x[j] + hs[q] * v[j]);
    gmap_apply(m, 4, in4, out4, NULL);
    for (int r = 0; r < D; r++) {
        const double a = ((double)out4[r] - out4[(size_t)D + r]) / (2 * h);
        const double b = ((double)out4[(size_t)2 * D + r] - out4[(size_t)3 * D + r]) / h;
        out[r] = (4 * b - a) / 3;
    }
}

static double dot(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Extreme singular values of J at x by Golub-Kahan-Lanczos bidiagonalisation (the Lanczos
 * process on J^T J carried out with J and J^T, so that nothing is squared), k steps with full
 * re-orthogonalisation of both bases: J V_k = U_k B_k with B_k upper bidiagonal, and the singular
 * values of B_k are the Ritz values: sigma_max(B_k) <= sigma_max(J), sigma_min(B_k) >= sigma_min(J)
 * (exactly so for k = D). *steps receives the steps taken (fewer when the Krylov space is
 * exhausted).
 * With pre (D values, may be NULL) the operator is J P with P = diag(pre): J P v is computed as
 * |P v| J (P v / |P v|), so that the finite-difference noise scales with P v. This is how the
 * whole flow in input units is handled: J_x = J_u diag(1 / scale), with differences taken in the
 * standardised coordinates u, where steps and rounding are uniform; differencing in input units
 * instead drowns sigma_min in noise when the features' scales differ by orders of magnitude. */
static void op_apply(gmap *m, const float *x, double h, const double *pre, const double *v, double *out, double *pv,
                     float *in4, float *out4) {
    const int D = m->D;
    if (!pre) {
        fd_jvp(m, x, v, h, out, in4, out4);
        return;
    }
    double np = 0;
    for (int j = 0; j < D; j++) {
        pv[j] = pre[j] * v[j];
        np += pv[j] * pv[j];
    }
    np = sqrt(np);
    for (int j = 0; j < D; j++) pv[j] = np > 0 ? pv[j] / np : 0;
    fd_jvp(m, x, pv, h, out, in4, out4);
    for (int j = 0; j < D; j++) out[j] *= np;
}

static void op_apply_t(vjp_ctx *vc, const double *pre, int D, const double *u, double *out) {
    vjp_apply(vc, u, out);
    if (pre)
        for (int j = 0; j < D; j++) out[j] *= pre[j];
}

/* r -= sum_i (r . B_i) B_i over the n rows of B, twice */
static void reorth(double *r, const double *B, int n, int D) {
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            const double *b = B + (size_t)i * D, c = dot(r, b, D);
            for (int j = 0; j < D; j++) r[j] -= c * b[j];
        }
}

static int lanczos_extremes(gmap *m, vjp_ctx *vc, const float *x, double h, const double *pre, int k, rf_rng *rng,
                            double *smax, double *smin, int *steps, float *in4, float *out4, rf_err *e) {
    const int D = m->D;
    if (k > D) k = D;
    if (k < 1) k = 1;
    double *V = calloc((size_t)(k + 1) * D, sizeof(double)), *U = calloc((size_t)k * D, sizeof(double)),
           *r = malloc(sizeof(double) * (size_t)D), *pv = malloc(sizeof(double) * (size_t)D),
           *al = calloc((size_t)k, sizeof(double)), *be = calloc((size_t)k, sizeof(double)),
           *B = calloc((size_t)k * k, sizeof(double)), *sv = malloc(sizeof(double) * (size_t)k);
    int rc = (!V || !U || !r || !pv || !al || !be || !B || !sv) ? rf_err_set(e, RF_ENOMEM, "out of memory") : RF_OK;
    *smax = *smin = NAN;
    *steps = 0;
    int n = 0, ok = 1;
    if (!rc) {
        vjp_forward(vc, x);
        double nrm = 0;
        for (int j = 0; j < D; j++) {
            V[j] = rf_rng_normal(rng);
            nrm += V[j] * V[j];
        }
        nrm = sqrt(nrm);
        for (int j = 0; j < D; j++) V[j] /= nrm;
        /* u_1 alpha_1 = J v_1 */
        op_apply(m, x, h, pre, V, r, pv, in4, out4);
        double a = sqrt(dot(r, r, D));
        if (!isfinite(a)) ok = 0;
        for (int it = 0; ok && it < k; it++) {
            al[it] = a;
            n = it + 1;
            if (!(a > 0)) break; /* J v_j in the span so far: the space is exhausted */
            double *u = U + (size_t)it * D;
            for (int j = 0; j < D; j++) u[j] = r[j] / a;
            if (it + 1 == k) break;
            /* v_{j+1} beta_j = J^T u_j - alpha_j v_j */
            op_apply_t(vc, pre, D, u, r);
            const double *v = V + (size_t)it * D;
            for (int j = 0; j < D; j++) r[j] -= a * v[j];
            reorth(r, V, it + 1, D);
            const double b = sqrt(dot(r, r, D));
            if (!isfinite(b)) {
                ok = 0;
                break;
            }
            if (!(b > 1e-12 * a)) break;
            be[it] = b;
            double *vn = V + (size_t)(it + 1) * D;
            for (int j = 0; j < D; j++) vn[j] = r[j] / b;
            /* u_{j+1} alpha_{j+1} = J v_{j+1} - beta_j u_j */
            op_apply(m, x, h, pre, vn, r, pv, in4, out4);
            for (int j = 0; j < D; j++) r[j] -= b * u[j];
            reorth(r, U, it + 1, D);
            a = sqrt(dot(r, r, D));
            if (!isfinite(a)) ok = 0;
        }
    }
    *steps = n;
    if (!rc && ok && n > 0) {
        /* B_n: alpha on the diagonal, beta above it */
        for (int i = 0; i < n; i++) {
            B[(size_t)i * n + i] = al[i];
            if (i + 1 < n) B[(size_t)i * n + i + 1] = be[i];
        }
        if (LAPACKE_dgesdd(LAPACK_ROW_MAJOR, 'N', n, n, B, n, sv, NULL, n, NULL, n) == 0) {
            *smax = sv[0];
            *smin = sv[n - 1];
        }
    }
    free(V), free(U), free(r), free(pv), free(al), free(be), free(B), free(sv);
    return rc;
}

/* ================================================================ invertibility */
typedef struct inv_stats {
    long rows, nonfinite;
    double max_err, mean_err, max_abs_x, threshold;
    int pass;
} inv_stats;

static int roundtrip(const rf_flow *f, rf_flow_ws *w, const float *x, int n, double tol, inv_stats *s, rf_err *e) {
    const int D = f->D;
    memset(s, 0, sizeof *s);
    s->rows = n;
    if (n < 1) {
        s->pass = 1;
        return RF_OK;
    }
    float *z = rf_floats((size_t)n * D, e), *xr = rf_floats((size_t)n * D, e), *ld = rf_floats((size_t)n, e);
    if (!z || !xr || !ld) {
        rf_free(z), rf_free(xr), rf_free(ld);
        return e ? e->code : RF_ENOMEM;
    }
    rf_flow_forward(f, w, n, x, z, ld);
    rf_flow_inverse(f, w, n, z, xr, NULL);
    double sum = 0, mx = 0, ax = 0;
    long bad = 0;
    for (size_t k = 0; k < (size_t)n * D; k++) {
        const double d = fabs((double)xr[k] - (double)x[k]);
        if (!isfinite(d) || !isfinite(z[k])) {
            bad++;
            continue;
        }
        sum += d;
        if (d > mx) mx = d;
        if (fabs(x[k]) > ax) ax = fabs(x[k]);
    }
    for (int i = 0; i < n; i++) bad += !isfinite(ld[i]);
    s->nonfinite = bad;
    s->max_err = bad ? NAN : mx;
    s->mean_err = bad ? NAN : sum / ((double)n * D);
    s->max_abs_x = ax;
    s->threshold = tol * (ax > 1 ? ax : 1);
    s->pass = !bad && mx <= s->threshold;
    rf_free(z), rf_free(xr), rf_free(ld);
    return RF_OK;
}

static cJSON *inv_json(const inv_stats *s, const char *what) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "points", what);
    cJSON_AddNumberToObject(j, "rows", (double)s->rows);
    cert_add_num(j, "max_abs_error", s->max_err);
    cert_add_num(j, "mean_abs_error", s->mean_err);
    cert_add_num(j, "max_abs_input", s->max_abs_x);
    cert_add_num(j, "threshold", s->threshold);
    cJSON_AddNumberToObject(j, "nonfinite", (double)s->nonfinite);
    cJSON_AddBoolToObject(j, "pass", s->pass);
    return j;
}

/* ================================================================ checks list */
static void add_check(cJSON *checks, const char *id, const char *name, double value, const char *unit,
                      double threshold, const char *cmp, int status /* 1 pass, 0 fail, -1 not verified */,
                      const char *method) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "name", name);
    cert_add_num(c, "value", value);
    cJSON_AddStringToObject(c, "unit", unit);
    cert_add_num(c, "threshold", threshold);
    cJSON_AddStringToObject(c, "comparison", cmp);
    cJSON_AddStringToObject(c, "status", status > 0 ? "pass" : status == 0 ? "fail" : "not_verified");
    if (status < 0) cJSON_AddNullToObject(c, "pass");
    else cJSON_AddBoolToObject(c, "pass", status > 0);
    cJSON_AddStringToObject(c, "method", method);
    cJSON_AddItemToArray(checks, c);
}

/* ================================================================ the whole check */
typedef struct block_acc {
    double fwd, inv;  /* max over points of sigma_max, 1 / sigma_min */
    double ld_err;    /* max |layer log-det - FD| (full-Jacobian path) */
    double ld_excess; /* max distance of the layer's log-det outside its FD interval */
    int ld_fail, ld_unverified; /* points where the layer's log-det failed / was not resolved */
    int nonfinite;
} block_acc;

static void acc_point(block_acc *b, double smax, double smin) {
    if (!isfinite(smax) || !isfinite(smin)) {
        b->nonfinite = 1;
        return;
    }
    const double inv = smin > 0 ? 1.0 / smin : INFINITY;
    if (smax > b->fwd) b->fwd = smax;
    if (inv > b->inv) b->inv = inv;
}

static double rms(const float *a, int D) {
    double s = 0;
    for (int j = 0; j < D; j++) s += (double)a[j] * a[j];
    return sqrt(s / (D > 0 ? D : 1));
}

cJSON *rf_cert_guarantees(const rf_flow *f, const rf_matrix *test, const rf_cert_opts *o, rf_rng *rng, rf_err *e) {
    const int D = f->D, n = test->n, L = f->n_layers;
    if (test->d != D) {
        rf_err_set(e, RF_EARG, "test data has %d columns, the model dimension %d", test->d, D);
        return NULL;
    }
    if (n < 1) {
        rf_err_set(e, RF_EARG, "guarantees need at least one test row");
        return NULL;
    }
    const int full = D <= o->jacobian_max_dim;
    /* rows per batch: one column's 4 x FD_NS evaluations at least (fd_jacobian) */
    const int cap = full ? (4 * FD_NS * D < 4 * FD_NS * 512 ? 4 * FD_NS * D : 4 * FD_NS * 512) : 12;
    const int P = o->guarantee_points < n ? o->guarantee_points : n, Q = o->box_points > 0 ? o->box_points : 0;
    const int M = o->n_model_samples > 0 ? o->n_model_samples : 2000;
    rf_flow_ws_opts wo = {.max_batch = cap > 256 ? cap : 256, .memory_saving = 1, .threads = 0, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &wo, e);
    double *lo = malloc(sizeof(double) * (size_t)D), *hi = malloc(sizeof(double) * (size_t)D),
           *sd = malloc(sizeof(double) * (size_t)D), *h = malloc(sizeof(double) * (size_t)D);
    float *box = rf_floats((size_t)(Q > 0 ? Q : 1) * D, e), *smp = rf_floats((size_t)M * D, e);
    float *pts = rf_floats((size_t)(P + Q) * D, e), *in = rf_floats((size_t)cap * D, e), *out = rf_floats((size_t)cap * D, e);
    float *acts = rf_floats((size_t)(L + 1) * D, e), *ld1 = rf_floats(1, e);
    block_acc *blk = calloc((size_t)L + 1, sizeof(block_acc));
    double *J = full ? malloc(sizeof(double) * (size_t)D * D) : NULL, *work = full ? malloc(sizeof(double) * 2 * (size_t)D * D) : NULL;
    double *sv = malloc(sizeof(double) * (size_t)D);
    double *Err = full ? malloc(sizeof(double) * (size_t)D * D) : NULL, *hk_vec = malloc(sizeof(double) * (size_t)D);
    int *ipiv = malloc(sizeof(int) * (size_t)D), *perm = malloc(sizeof(int) * (size_t)n);
    size_t max_scratch = 1;
    for (int k = 0; k < L; k++) {
        const size_t s = f->layers[k]->ops->scratch_floats(f->layers[k], cap);
        if (s > max_scratch) max_scratch = s;
    }
    float *lscratch = rf_floats(max_scratch, e), *lld = rf_floats((size_t)cap, e);
    cJSON *g = NULL;
    vjp_ctx vstack = {0};
    float *st1 = NULL, *st2 = NULL;
    double *inv_scale = NULL;
    int rc = RF_OK;
    if (!w || !lo || !hi || !sd || !h || !box || !smp || !pts || !in || !out || !acts || !ld1 || !blk ||
        (full && (!J || !work || !Err)) || !sv || !hk_vec || !ipiv || !perm || !lscratch || !lld) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory (guarantees, D = %d)", D);
        goto done;
    }
    /* ---- input range, scales ---- */
    for (int j = 0; j < D; j++) {
        double a = INFINITY, b = -INFINITY, s = 0, s2 = 0;
        for (int i = 0; i < n; i++) {
            const double v = test->x[(size_t)i * D + j];
            if (v < a) a = v;
            if (v > b) b = v;
            s += v;
            s2 += v * v;
        }
        lo[j] = a;
        hi[j] = b;
        const double mu = s / n, var = s2 / n - mu * mu;
        sd[j] = var > 0 ? sqrt(var) : 0;
    }
    /* robust scale per dimension (1.4826 MAD), the standard deviation when the MAD is 0 */
    double *col = malloc(sizeof(double) * (size_t)n);
    if (!col) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int j = 0; j < D; j++) {
        for (int i = 0; i < n; i++) col[i] = test->x[(size_t)i * D + j];
        const double med = median_inplace(col, n);
        for (int i = 0; i < n; i++) col[i] = fabs(test->x[(size_t)i * D + j] - med);
        const double mad = 1.4826 * median_inplace(col, n);
        if (mad > 0 && isfinite(mad)) sd[j] = mad;
    }
    free(col);
    double sd_mean = 0;
    for (int j = 0; j < D; j++) sd_mean += sd[j] / D;
    if (!(sd_mean > 0)) sd_mean = 1;
    for (int j = 0; j < D; j++) h[j] = o->fd_step * (sd[j] > 0 ? sd[j] : sd_mean);
    for (int q = 0; q < Q; q++)
        for (int j = 0; j < D; j++) box[(size_t)q * D + j] = (float)(lo[j] + (hi[j] - lo[j]) * rf_rng_uniform(rng));
    for (int i = 0; i < n; i++) perm[i] = i;
    rf_rng_shuffle(rng, perm, n);
    for (int p = 0; p < P; p++) memcpy(pts + (size_t)p * D, test->x + (size_t)perm[p] * D, sizeof(float) * (size_t)D);
    if (Q > 0) memcpy(pts + (size_t)P * D, box, sizeof(float) * (size_t)Q * D);
    if (!(g = cJSON_CreateObject())) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    cJSON *checks = cJSON_AddArrayToObject(g, "checks");
    /* ---- input range ---- */
    {
        cJSON *r = cJSON_AddObjectToObject(g, "input_range");
        cJSON_AddNumberToObject(r, "dim", D);
        char how[256];
        snprintf(how, sizeof how, "per-dimension minimum and maximum of the %d test rows (model input units)", n);
        cJSON_AddStringToObject(r, "source", how);
        if (D <= 4096) {
            cJSON_AddItemToObject(r, "lower", cJSON_CreateDoubleArray(lo, D));
            cJSON_AddItemToObject(r, "upper", cJSON_CreateDoubleArray(hi, D));
        } else {
            cJSON_AddStringToObject(r, "note", "D > 4096: only the extremes over all dimensions are listed");
        }
        double a = INFINITY, b = -INFINITY;
        for (int j = 0; j < D; j++) {
            if (lo[j] < a) a = lo[j];
            if (hi[j] > b) b = hi[j];
        }
        cert_add_num(r, "min_over_dims", a);
        cert_add_num(r, "max_over_dims", b);
    }
    {
        cJSON *pj = cJSON_AddObjectToObject(g, "points");
        cJSON_AddNumberToObject(pj, "test_rows", n);
        cJSON_AddNumberToObject(pj, "model_samples", M);
        cJSON_AddNumberToObject(pj, "box_uniform", Q);
        cJSON_AddNumberToObject(pj, "jacobian_test_rows", P);
        cJSON_AddNumberToObject(pj, "jacobian_box_points", Q);
        cJSON_AddStringToObject(pj, "selection", "seeded: a random subset of the test rows, uniform draws in the input box");
    }
    /* ---- invertibility ---- */
    {
        inv_stats st, ss, sb;
        const int nt = o->max_rows > 0 && o->max_rows < n ? o->max_rows : n;
        float *tx = test->x;
        float *sub = NULL;
        if (nt < n) {
            if (!(sub = rf_floats((size_t)nt * D, e))) {
                rc = e ? e->code : RF_ENOMEM;
                goto done;
            }
            for (int i = 0; i < nt; i++) memcpy(sub + (size_t)i * D, test->x + (size_t)perm[i] * D, sizeof(float) * (size_t)D);
            tx = sub;
        }
        rc = roundtrip(f, w, tx, nt, o->inv_tol, &st, e);
        rf_free(sub);
        if (rc) goto done;
        rf_flow_sample(f, w, M, NULL, rng, smp);
        if ((rc = roundtrip(f, w, smp, M, o->inv_tol, &ss, e)) || (rc = roundtrip(f, w, box, Q, o->inv_tol, &sb, e)))
            goto done;
        cJSON *ij = cJSON_AddObjectToObject(g, "invertibility");
        char rule[256];
        snprintf(rule, sizeof rule, "|f^-1(f(x)) - x| elementwise (model input units); pass: all finite and max <= %g x max(1, max |x|) over the set", o->inv_tol);
        cJSON_AddStringToObject(ij, "method", rule);
        cJSON_AddItemToObject(ij, "test", inv_json(&st, "test rows"));
        cJSON_AddItemToObject(ij, "samples", inv_json(&ss, "samples drawn from the model"));
        cJSON_AddItemToObject(ij, "box", inv_json(&sb, "uniform points in the input range"));
        cJSON_AddBoolToObject(ij, "pass", st.pass && ss.pass && sb.pass);
        add_check(checks, "invertibility_test", "invertibility on the test rows", st.max_err, "input units", st.threshold, "<=", st.pass, rule);
        add_check(checks, "invertibility_samples", "invertibility on model samples", ss.max_err, "input units", ss.threshold, "<=", ss.pass, rule);
        if (Q > 0)
            add_check(checks, "invertibility_box", "invertibility on uniform points of the input range", sb.max_err, "input units",
                      sb.threshold, "<=", sb.pass, rule);
    }
    /* ---- finite log-density on the test rows ---- */
    {
        long bad = 0;
        float *lp = rf_floats((size_t)n, e);
        if (!lp) {
            rc = e ? e->code : RF_ENOMEM;
            goto done;
        }
        rf_flow_log_prob(f, w, n, test->x, NULL, lp);
        for (int i = 0; i < n; i++) bad += !isfinite(lp[i]);
        rf_free(lp);
        add_check(checks, "finite_log_density", "finite log-density on every test row", (double)bad, "rows", 0, "<=", bad == 0,
                  "count of test rows whose log p(x) is NaN or infinite");
    }
    /* ---- Jacobian checks ---- */
    gmap whole = {.D = D, .cap = cap, .f = f, .w = w};
    const int NP = P + Q;
    double ld_max = 0, ld_sum = 0, ld_max_rel = 0, ld_excess = 0, ld_width = 0, comp_max = 0;
    int ld_bad = 0, ld_fail = 0, ld_pass = 0, ld_unver = 0, ld_whole_ok = 0, ld_layers_ok = 0;
    const double ld_thr = o->logdet_tol * (D > 1 ? D : 1);
    double ld_std = 0; /* log|det| of the standardisation, exact */
    for (int j = 0; j < D; j++) ld_std -= log(fabs((double)f->scale[j]));
    block_acc all = {0};
    cJSON *ppj = cJSON_CreateArray();
    gmap stackm = {.D = D, .cap = cap, .f = f, .stack = 1, .scratch = lscratch, .ld = lld};
    if (!full) {
        stackm.t1 = st1 = rf_floats((size_t)cap * D, e);
        stackm.t2 = st2 = rf_floats((size_t)cap * D, e);
        if (!st1 || !st2) rc = e ? e->code : RF_ENOMEM;
        if (!rc) rc = vjp_init(&vstack, f, 0, L, 0, e);
        if (!rc && !(inv_scale = malloc(sizeof(double) * (size_t)D))) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        for (int j = 0; !rc && j < D; j++) inv_scale[j] = 1.0 / f->scale[j];
        if (rc) {
            cJSON_Delete(ppj);
            goto done;
        }
    }
    int lanczos_steps_max = 0, lanczos_steps_min = D, cond_bad = 0;
    double cond_local = 0; /* max over the points of sigma_max / sigma_min */
    for (int p = 0; p < NP; p++) {
        const float *x = pts + (size_t)p * D;
        if (o->progress) fprintf(stderr, "renflow certify: guarantees: point %d / %d\n", p + 1, NP);
        /* the layer inputs at x */
        for (int j = 0; j < D; j++) acts[j] = (x[j] - f->shift[j]) / f->scale[j];
        for (int k = 0; k < L; k++) {
            const rf_layer *l = f->layers[k];
            ld1[0] = 0;
            l->ops->forward(l, f->params + l->offset, 1, acts + (size_t)k * D, acts + (size_t)(k + 1) * D, ld1, NULL, lscratch);
        }
        double smax, smin, umax = NAN, umin = NAN;
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddStringToObject(pt, "source", p < P ? "test row" : "box point");
        float ldm = NAN;
        double wlo = NAN, whi = NAN, ldf = NAN;
        if (full) {
            rf_flow_forward(f, w, 1, x, out, &ldm);
            fd_jacobian(&whole, x, h, J, Err, in, out);
            ldf = logabsdet(D, J, work, ipiv);
            const double err = fabs((double)ldm - ldf);
            cert_add_num(pt, "logdet_model", ldm);
            cert_add_num(pt, "logdet_numerical", ldf);
            /* columns scaled by the steps (the data's robust scales): comparable columns */
            logdet_interval(D, J, Err, h, work, sv, ipiv, &wlo, &whi);
            if (!isfinite(err)) ld_bad++;
            else {
                ld_sum += err;
                if (err > ld_max) ld_max = err;
                const double rel = err / fmax(1.0, fabs(ldf));
                if (rel > ld_max_rel) ld_max_rel = rel;
            }
            svd_extremes(D, J, work, sv, &smax, &smin);
            /* in standardised coordinates u: dz/du = dz/dx diag(scale) */
            for (int r = 0; r < D; r++)
                for (int j = 0; j < D; j++) J[(size_t)r * D + j] *= f->scale[j];
            svd_extremes(D, J, work, sv, &umax, &umin);
        } else {
            int steps = 0, steps2 = 0;
            const double hu = o->fd_step * fmax(rms(acts, D), 1e-3);
            if ((rc = lanczos_extremes(&stackm, &vstack, acts, hu, inv_scale, o->lanczos_steps, rng, &smax, &smin, &steps, in, out, e)) ||
                (rc = lanczos_extremes(&stackm, &vstack, acts, hu, NULL, o->lanczos_steps, rng, &umax, &umin, &steps2, in, out, e))) {
                cJSON_Delete(pt);
                cJSON_Delete(ppj);
                goto done;
            }
            if (steps > lanczos_steps_max) lanczos_steps_max = steps;
            if (steps2 > lanczos_steps_max) lanczos_steps_max = steps2;
            if (steps < lanczos_steps_min) lanczos_steps_min = steps;
            if (steps2 < lanczos_steps_min) lanczos_steps_min = steps2;
            cJSON_AddNumberToObject(pt, "krylov_steps", steps < steps2 ? steps : steps2);
        }
        cert_add_num(pt, "sigma_max", smax);
        cert_add_num(pt, "sigma_min", smin);
        cJSON_AddItemToArray(ppj, pt);
        acc_point(&all, smax, smin);
        /* local condition number of the layers in standardised coordinates (the diagonal
         * standardisation is exact in relative terms); inf when singular, NaN when not finite */
        const double lc = umax / umin;
        cert_add_num(pt, "condition", lc);
        if (isnan(lc)) cond_bad = 1;
        else if (!(lc <= cond_local)) cond_local = lc;
        /* per layer; the layers' FD intervals add up to one for the flow (det of a product) */
        double llo = ld_std, lhi = ld_std, ldsum = ld_std, lay_excess = 0;
        int lay_nonfinite = 0;
        for (int k = 0; k < L; k++) {
            const rf_layer *l = f->layers[k];
            const float *a = acts + (size_t)k * D;
            gmap lm = {.D = D, .cap = cap, .l = l, .params = f->params + l->offset, .scratch = lscratch, .ld = lld};
            const double hk = o->fd_step * fmax(rms(a, D), 1e-3);
            double bmax, bmin;
            if (full) {
                for (int j = 0; j < D; j++) hk_vec[j] = hk;
                fd_jacobian(&lm, a, hk_vec, J, Err, in, out);
                float ldl = 0;
                lld[0] = 0;
                l->ops->forward(l, f->params + l->offset, 1, a, out, lld, NULL, lscratch);
                ldl = lld[0];
                const double ldfl = logabsdet(D, J, work, ipiv), err = fabs((double)ldl - ldfl);
                if (!isfinite(err)) blk[k + 1].nonfinite = 1;
                else if (err > blk[k + 1].ld_err) blk[k + 1].ld_err = err;
                double klo, khi;
                logdet_interval(D, J, Err, NULL, work, sv, ipiv, &klo, &khi);
                const double ex = outside(ldl, klo, khi);
                if (isnan(klo) || !isfinite(ldl)) lay_nonfinite = 1;
                if (ex > blk[k + 1].ld_excess) blk[k + 1].ld_excess = ex;
                if (ex > lay_excess) lay_excess = ex;
                if (ex > ld_thr) blk[k + 1].ld_fail++;
                else if (!isfinite(klo) || (khi - klo) / 2 > ld_thr) blk[k + 1].ld_unverified++;
                llo += klo;
                lhi += khi;
                ldsum += ldl;
                svd_extremes(D, J, work, sv, &bmax, &bmin);
            } else {
                vjp_ctx vl;
                int steps = 0;
                if ((rc = vjp_init(&vl, f, k, k + 1, 0, e)) ||
                    (rc = lanczos_extremes(&lm, &vl, a, hk, NULL, o->lanczos_steps, rng, &bmax, &bmin, &steps, in, out, e))) {
                    vjp_free(&vl);
                    cJSON_Delete(ppj);
                    goto done;
                }
                vjp_free(&vl);
            }
            acc_point(&blk[k + 1], bmax, bmin);
        }
        if (full) {
            /* Verdict at this point. Two intervals hold the flow's true log|det| (given the FD error
             * estimates): the whole flow's, and the sum of the layers' (plus the exact
             * standardisation). A failure needs the model's value outside one of them, or a layer's
             * outside its own, by more than the tolerance; a pass needs a two-sided interval whose
             * half-width (the FD error bound) is at most the tolerance, with the value within the
             * tolerance of it: |model - FD| <= tolerance + error bound <= 2 x tolerance. */
            const double exw = outside(ldm, wlo, whi), exl = outside(ldm, llo, lhi);
            const double comp = fabs((double)ldm - ldsum);
            if (isfinite(comp) && comp > comp_max) comp_max = comp;
            const int wok = isfinite(wlo) && (whi - wlo) / 2 <= ld_thr, lok = isfinite(llo) && (lhi - llo) / 2 <= ld_thr;
            double ex = exw > exl ? exw : exl;
            if (lay_excess > ex) ex = lay_excess;
            if (!isfinite((double)ldm) || lay_nonfinite || isnan(wlo)) ex = INFINITY;
            const char *pst;
            if (ex > ld_thr) {
                pst = "fail";
                ld_fail++;
            } else if (wok || lok) {
                pst = "pass";
                ld_pass++;
            } else {
                pst = "not_verified";
                ld_unver++;
            }
            ld_whole_ok += wok;
            ld_layers_ok += lok;
            if (!(ex <= ld_excess)) ld_excess = ex;
            /* the FD error bound that decided: half the width of the tightest resolved interval */
            if (wok || lok) {
                const double wid = fmin(wok ? whi - wlo : INFINITY, lok ? lhi - llo : INFINITY) / 2;
                if (wid > ld_width) ld_width = wid;
            }
            cJSON *li = cJSON_AddObjectToObject(pt, "logdet_check");
            cJSON_AddStringToObject(li, "status", pst);
            cert_add_num(li, "whole_flow_lower", wlo);
            cert_add_num(li, "whole_flow_upper", whi);
            cert_add_num(li, "layers_lower", llo);
            cert_add_num(li, "layers_upper", lhi);
            cert_add_num(li, "layers_sum_model", ldsum);
            cert_add_num(li, "excess", ex);
            cert_add_num(li, "error_bound", (wok || lok) ? fmin(wok ? (whi - wlo) / 2 : INFINITY, lok ? (lhi - llo) / 2 : INFINITY) : INFINITY);
        }
    }
    /* standardisation: diagonal 1 / scale, exact */
    {
        double a = 0, b = INFINITY;
        for (int j = 0; j < D; j++) {
            const double v = 1.0 / f->scale[j];
            if (!isfinite(v)) blk[0].nonfinite = 1;
            if (fabs(v) > a) a = fabs(v);
            if (fabs(v) < b) b = fabs(v);
        }
        acc_point(&blk[0], a, b);
    }
    /* ---- log-determinant ---- */
    {
        cJSON *lj = cJSON_AddObjectToObject(g, "log_determinant");
        const double thr = ld_thr;
        char how[1400];
        if (full) {
            snprintf(how, sizeof how,
                     "at %d points (%d test rows, %d box points) the flow's log|det dz/dx| against numerical Jacobians: "
                     "Richardson-extrapolated central differences in double over the float32 flow (step %g x each "
                     "dimension's robust scale; per layer %g x the RMS of its input), each entry with an error estimate "
                     "(the difference between the two step sizes plus float32 rounding), turned into an interval for "
                     "log|det| by Weyl's inequality on the singular values; once for the whole flow, once layer by layer "
                     "(their sum plus the exact standardisation). fail: the model's value (or a layer's) lies outside an "
                     "interval by more than %g nats (%g x max(1, D)); pass: a two-sided interval no wider than that "
                     "holds the value within it; otherwise the point is not verified. %d pass, %d fail, %d not verified",
                     NP, P, Q, o->fd_step, o->fd_step, ld_thr, o->logdet_tol, ld_pass, ld_fail, ld_unver);
            const int status = ld_fail ? 0 : ld_unver ? -1 : 1;
            cJSON_AddStringToObject(lj, "status", "verified");
            cJSON_AddStringToObject(lj, "method", how);
            cert_add_num(lj, "max_abs_error", ld_bad ? NAN : ld_max);
            cert_add_num(lj, "mean_abs_error", ld_bad ? NAN : ld_sum / (NP > 0 ? NP : 1));
            cert_add_num(lj, "max_rel_error", ld_bad ? NAN : ld_max_rel);
            cert_add_num(lj, "max_abs_error_per_dim", ld_bad ? NAN : ld_max / D);
            cJSON_AddNumberToObject(lj, "nonfinite_points", ld_bad);
            cert_add_num(lj, "max_excess", ld_excess);
            cert_add_num(lj, "max_error_bound", ld_width);
            cert_add_num(lj, "max_composition_error", comp_max);
            cJSON_AddNumberToObject(lj, "points_pass", ld_pass);
            cJSON_AddNumberToObject(lj, "points_fail", ld_fail);
            cJSON_AddNumberToObject(lj, "points_not_verified", ld_unver);
            cJSON_AddNumberToObject(lj, "points_resolved_whole_flow", ld_whole_ok);
            cJSON_AddNumberToObject(lj, "points_resolved_by_layers", ld_layers_ok);
            cJSON_AddNumberToObject(lj, "threshold", ld_thr);
            if (status < 0) cJSON_AddNullToObject(lj, "pass");
            else cJSON_AddBoolToObject(lj, "pass", status);
            cJSON_AddStringToObject(lj, "value_meaning",
                                    "max_excess: the largest distance of a log-det outside its finite-difference interval "
                                    "(0 inside); max_abs_error: the raw |model - numerical| of the whole flow, which "
                                    "includes the error of the finite differences");
            add_check(checks, "logdet_agreement", "log-determinant agrees with a numerical Jacobian", ld_excess, "nats",
                      ld_thr, "<=", status, how);
        } else {
            snprintf(how, sizeof how,
                     "not verified: D = %d exceeds jacobian_max_dim = %d (a full Jacobian per point would be needed)", D,
                     o->jacobian_max_dim);
            cJSON_AddStringToObject(lj, "status", "not_verified");
            cJSON_AddStringToObject(lj, "method", how);
            cJSON_AddNullToObject(lj, "max_abs_error");
            cJSON_AddNumberToObject(lj, "threshold", thr);
            cJSON_AddNullToObject(lj, "pass");
            add_check(checks, "logdet_agreement", "log-determinant agrees with a numerical Jacobian", NAN, "nats", thr, "<=", -1, how);
        }
    }
    /* ---- Lipschitz ---- */
    {
        cJSON *lj = cJSON_AddObjectToObject(g, "lipschitz");
        char how[900];
        if (full)
            snprintf(how, sizeof how,
                     "local constants at %d points (%d test rows, %d box points): sigma_max of the finite-difference "
                     "Jacobian (forward) and 1 / sigma_min (inverse, at f(x)), singular values by LAPACK dgesdd; per "
                     "layer the same at the layer's input; maxima over the points: empirical lower bounds of the "
                     "Lipschitz constants on the input range", NP, P, Q);
        else
            snprintf(how, sizeof how,
                     "local constants at %d points (%d test rows, %d box points): extreme singular values of the Jacobian "
                     "from up to %d Golub-Kahan-Lanczos steps (the Lanczos process on J^T J, a power iteration keeping "
                     "its Krylov basis), J v by finite differences in standardised coordinates, J^T u by the layers' "
                     "analytic backward (%d to %d steps taken, D = %d); sigma_max (forward) and 1 / sigma_min (inverse); "
                     "maxima over the points: empirical lower bounds of the Lipschitz constants on the input range (with "
                     "fewer steps than D the inverse constant is a loose lower bound)",
                     NP, P, Q, o->lanczos_steps, lanczos_steps_min, lanczos_steps_max, D);
        cJSON_AddStringToObject(lj, "method", how);
        const double Lf = all.nonfinite ? NAN : all.fwd, Li = all.nonfinite ? NAN : all.inv;
        double pf = 1, pi = 1;
        int pbad = 0;
        cJSON *bl = cJSON_AddArrayToObject(lj, "blocks");
        for (int k = 0; k <= L; k++) {
            cJSON *b = cJSON_CreateObject();
            if (k == 0) {
                cJSON_AddStringToObject(b, "kind", "standardise");
                cJSON_AddStringToObject(b, "method", "exact: diagonal map (x - shift) / scale");
            } else {
                cJSON_AddNumberToObject(b, "index", k - 1);
                cJSON_AddStringToObject(b, "kind", f->layers[k - 1]->ops->kind);
            }
            const double bf = blk[k].nonfinite ? NAN : blk[k].fwd, bi = blk[k].nonfinite ? NAN : blk[k].inv;
            cert_add_num(b, "forward", bf);
            cert_add_num(b, "inverse", bi);
            if (full && k > 0) {
                cert_add_num(b, "logdet_max_abs_error", blk[k].nonfinite ? NAN : blk[k].ld_err);
                cert_add_num(b, "logdet_max_excess", blk[k].nonfinite ? NAN : blk[k].ld_excess);
                cJSON_AddNumberToObject(b, "logdet_points_fail", blk[k].ld_fail);
                cJSON_AddNumberToObject(b, "logdet_points_unresolved", blk[k].ld_unverified);
            }
            cJSON_AddItemToArray(bl, b);
            if (!isfinite(bf) || !isfinite(bi)) pbad = 1;
            else {
                pf *= bf;
                pi *= bi;
            }
        }
        cert_add_num(lj, "forward", Lf);
        cert_add_num(lj, "inverse", Li);
        const double cond = cond_bad ? NAN : cond_local;
        cert_add_num(lj, "condition", cond);
        cert_add_num(lj, "condition_bound", Lf * Li);
        cert_add_num(lj, "product_of_blocks_forward", pbad ? NAN : pf);
        cert_add_num(lj, "product_of_blocks_inverse", pbad ? NAN : pi);
        cJSON_AddNumberToObject(lj, "threshold_condition", o->cond_max);
        /* Krylov estimates are exact only when the space is exhausted (D steps); before that
         * sigma_min is overestimated, so the inverse constant and the condition are lower bounds:
         * above the threshold they prove a failure, below it they prove nothing */
        const int exact = full || lanczos_steps_min >= D;
        const int ok = isfinite(cond) && cond <= o->cond_max && isfinite(Lf) && isfinite(Li);
        const int status = ok ? (exact ? 1 : -1) : 0;
        if (status < 0) cJSON_AddNullToObject(lj, "pass");
        else cJSON_AddBoolToObject(lj, "pass", status);
        cJSON_AddBoolToObject(lj, "inverse_and_condition_exact", exact);
        if (!exact)
            cJSON_AddStringToObject(lj, "note", "fewer Krylov steps than dimensions: sigma_min is overestimated, so "
                                                "'inverse' and 'condition' are lower bounds (a value above the threshold "
                                                "is a failure; one below it is not a proof)");
        cJSON_AddItemToObject(lj, "per_point", ppj);
        ppj = NULL;
        char rule[600];
        snprintf(rule, sizeof rule,
                 "local condition number sigma_max / sigma_min of the layers' Jacobian in standardised coordinates "
                 "(the exact diagonal standardisation left out), maximum over the points (condition); pass: finite "
                 "Lipschitz constants and condition <= %g (float32 resolves 2^-24 ~ 6e-8: beyond ~1e7 the Jacobian is "
                 "numerically singular and inversion may lose every digit)%s",
                 o->cond_max, exact ? "" : "; not verified when the Krylov estimate (a lower bound) stays below the threshold");
        add_check(checks, "lipschitz_condition", "bi-Lipschitz: bounded local condition", cond,
                  "dimensionless", o->cond_max, "<=", status, rule);
        cJSON_Delete(ppj);
    }
    /* ---- verdict ---- */
    {
        int all_pass = 1, complete = 1;
        cJSON *c;
        cJSON_ArrayForEach(c, checks) {
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(c, "pass");
            if (cJSON_IsNull(ps)) complete = 0;
            else if (!cJSON_IsTrue(ps)) all_pass = 0;
        }
        cJSON_AddBoolToObject(g, "pass", all_pass);
        cJSON_AddBoolToObject(g, "complete", complete);
        cJSON_AddStringToObject(g, "verdict_rule", "pass: every verified check passes; complete: every check was verified");
        cJSON *th = cJSON_AddObjectToObject(g, "settings");
        cJSON_AddNumberToObject(th, "inv_tol", o->inv_tol);
        cJSON_AddNumberToObject(th, "logdet_tol", o->logdet_tol);
        cJSON_AddNumberToObject(th, "cond_max", o->cond_max);
        cJSON_AddNumberToObject(th, "fd_step", o->fd_step);
        cJSON_AddNumberToObject(th, "jacobian_max_dim", o->jacobian_max_dim);
        cJSON_AddNumberToObject(th, "lanczos_steps", o->lanczos_steps);
        cJSON_AddStringToObject(th, "jacobian_method", full ? "full finite-difference Jacobian" : "Golub-Kahan-Lanczos");
    }
done:
    if (!full) vjp_free(&vstack);
    rf_free(st1), rf_free(st2);
    free(inv_scale);
    rf_flow_ws_free(w);
    free(lo), free(hi), free(sd), free(h), free(J), free(work), free(Err), free(hk_vec), free(sv), free(ipiv), free(perm), free(blk);
    rf_free(box), rf_free(smp), rf_free(pts), rf_free(in), rf_free(out), rf_free(acts), rf_free(ld1);
    rf_free(lscratch), rf_free(lld);
    if (rc) {
        cJSON_Delete(g);
        return NULL;
    }
    return g;
}
