/* Tests for the nn module: GEMM, activations, MLP and MADE conditioners.
 * Gradients are checked against float32 central differences (h = 1e-3, loss accumulated in
 * double) on randomly perturbed parameters, so the zero-initialised last layer hides nothing. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const rf_act ACTS[] = {RF_ACT_RELU, RF_ACT_GELU, RF_ACT_TANH};
#define N_ACTS 3

/* Exact-size heap buffers, so AddressSanitizer catches any overrun of the declared sizes. */
static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float)); /* zero: kink checks read the whole cache */
    assert_non_null(p);
    return p;
}

static void fill_normal(rf_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)rf_rng_normal(r);
}

static int same_bits(float a, float b) {
    uint32_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    return ua == ub;
}

/* ||a - b|| / max(||b||, tiny); ||b|| returned in *norm_b when non-NULL. */
static double rel_l2(const double *a, const double *b, size_t n, double *norm_b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    if (norm_b) *norm_b = sqrt(den);
    return sqrt(num) / fmax(sqrt(den), 1e-12);
}

static double act_ref(rf_act a, double x) {
    switch (a) {
    case RF_ACT_RELU: return x > 0 ? x : 0;
    case RF_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case RF_ACT_TANH: return tanh(x);
    }
    return NAN;
}

static double act_deriv_ref(rf_act a, double x) {
    switch (a) {
    case RF_ACT_RELU: return x > 0 ? 1 : 0;
    case RF_ACT_GELU: return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI);
    case RF_ACT_TANH: return 1 - tanh(x) * tanh(x);
    }
    return NAN;
}

/* ---------------- a conditioner under test: MLP or MADE ---------------- */

typedef struct net {
    const rf_mlp *mlp; /* exactly one of mlp / made is set */
    const rf_made *made;
    rf_mlp_cfg arch; /* the dense architecture (MADE: D -> D * P) */
    size_t np;
} net;

static net net_of_mlp(const rf_mlp *m) {
    net t = {m, NULL, *rf_mlp_config(m), rf_mlp_n_params(m)};
    return t;
}

static net net_of_made(const rf_made *m) {
    const rf_made_cfg *c = rf_made_config(m);
    net t = {NULL, m, {c->D, c->D * c->P, c->hidden, c->n_hidden, c->act, c->residual},
             rf_made_n_params(m)};
    return t;
}

static size_t net_cache(const net *t, int n) {
    return t->mlp ? rf_mlp_cache_floats(t->mlp, n) : rf_made_cache_floats(t->made, n);
}
static size_t net_scratch(const net *t, int n) {
    return t->mlp ? rf_mlp_scratch_floats(t->mlp, n) : rf_made_scratch_floats(t->made, n);
}
static void net_init(const net *t, float *p, rf_rng *r) {
    if (t->mlp) rf_mlp_init_params(t->mlp, p, r);
    else rf_made_init_params(t->made, p, r);
}
static void net_project(const net *t, float *p) {
    if (t->made) rf_made_project(t->made, p);
}
static void net_forward(const net *t, const float *p, int n, const float *x, float *out,
                        float *cache) {
    if (t->mlp) rf_mlp_forward(t->mlp, p, n, x, out, cache);
    else rf_made_forward(t->made, p, n, x, out, cache);
}
static void net_backward(const net *t, const float *p, int n, const float *x, const float *dout,
                         float *dx, float *dp, const float *cache, float *scratch) {
    if (t->mlp) rf_mlp_backward(t->mlp, p, n, x, dout, dx, dp, cache, scratch);
    else rf_made_backward(t->made, p, n, x, dout, dx, dp, cache, scratch);
}

/* Initialised, then perturbed by N(0, perturb^2), then projected (MADE masks). */
static float *net_random_params(const net *t, rf_rng *r, float perturb) {
    float *p = falloc(t->np);
    net_init(t, p, r);
    for (size_t i = 0; i < t->np; i++) p[i] += perturb * (float)rf_rng_normal(r);
    net_project(t, p);
    return p;
}

/* Independent double-precision reference: plain loops over the documented parameter layout
 * (per layer W[out][in] then bias; residual hidden layers after the first). */
static void ref_forward(const rf_mlp_cfg *c, const float *p, size_t np, int n, const float *x,
                        double *out) {
    const int H = c->hidden, wmax = c->n_in > H ? c->n_in : H;
    double *a = malloc(sizeof(double) * wmax), *b = malloc(sizeof(double) * wmax);
    for (int s = 0; s < n; s++) {
        const float *w = p;
        int in = c->n_in;
        for (int k = 0; k < in; k++) a[k] = x[(size_t)s * in + k];
        for (int l = 0; l <= c->n_hidden; l++) {
            const int last = l == c->n_hidden, o = last ? c->n_out : H;
            const float *bias = w + (size_t)o * in;
            for (int r = 0; r < o; r++) {
                double z = bias[r];
                for (int k = 0; k < in; k++) z += (double)w[(size_t)r * in + k] * a[k];
                if (last) out[(size_t)s * o + r] = z;
                else b[r] = act_ref(c->act, z) + (c->residual && l > 0 ? a[r] : 0.0);
            }
            w = bias + o;
            in = o;
            double *tmp = a;
            a = b;
            b = tmp;
        }
        assert_int_equal((size_t)(w - p), np);
    }
    free(a);
    free(b);
}

typedef struct fd_ctx {
    const net *t;
    float *p, *x;
    int n;
    const double *wt;
    float *out, *cache;
    size_t n_cache;
    uint8_t *pattern; /* ReLU only: (cache > 0) at the unperturbed point, else NULL */
} fd_ctx;

/* L = sum wt * out, accumulated in double. */
static double loss(const fd_ctx *c) {
    net_forward(c->t, c->p, c->n, c->x, c->out, c->cache);
    double L = 0;
    for (size_t i = 0; i < (size_t)c->n * c->t->arch.n_out; i++) L += c->wt[i] * c->out[i];
    return L;
}

/* A ReLU kink was crossed when any cached pre-activation / activation changed sign. This is
 * conservative (a residual sum changing sign also counts) and needs no knowledge of the layout. */
static int kink_crossed(const fd_ctx *c) {
    if (!c->pattern) return 0;
    for (size_t i = 0; i < c->n_cache; i++)
        if ((c->cache[i] > 0.0f) != c->pattern[i]) return 1;
    return 0;
}

/* Central difference of L along v[i] (v is c->x or c->p) with the step actually representable
 * in float; NAN when the step crosses a ReLU kink (the difference is then meaningless). */
static double fd_at(const fd_ctx *c, float *v, size_t i) {
    const float h = 1e-3f, v0 = v[i];
    v[i] = v0 + h;
    double Lp = loss(c);
    int crossed = kink_crossed(c);
    v[i] = v0 - h;
    double Lm = loss(c);
    crossed |= kink_crossed(c);
    v[i] = v0;
    return crossed ? NAN : (Lp - Lm) / ((double)(v0 + h) - (double)(v0 - h));
}

typedef struct grad_res {
    double rel_x, rel_p, norm_x, norm_p;
    size_t skipped, compared; /* coordinates left out for crossing a ReLU kink / compared */
} grad_res;

/* Compares ga against central differences along v[idx[0..m-1]], leaving out kink crossings. */
static double compare_fd(const fd_ctx *c, float *v, const size_t *idx, const double *ga, size_t m,
                         double *norm, grad_res *res) {
    double *a = malloc(sizeof(double) * (m ? m : 1)), *b = malloc(sizeof(double) * (m ? m : 1));
    size_t k = 0;
    for (size_t j = 0; j < m; j++) {
        double g = fd_at(c, v, idx[j]);
        if (isnan(g)) {
            res->skipped++;
            continue;
        }
        a[k] = ga[j];
        b[k++] = g;
    }
    res->compared += k;
    double r = rel_l2(a, b, k, norm);
    free(a);
    free(b);
    return r;
}

/* L = sum wt * out; compares backward's dx and dparams increments with central differences.
 * Also asserts: masked MADE gradients are exactly 0, dx is overwritten, dparams accumulates,
 * and dx == NULL gives the same dparams. */
static grad_res grad_check(const net *t, uint64_t seed) {
    const int n = 5, I = t->arch.n_in, O = t->arch.n_out;
    const size_t nx = (size_t)n * I, no = (size_t)n * O, np = t->np, nc = net_cache(t, n);
    rf_rng r;
    rf_rng_seed(&r, seed);
    float *p = net_random_params(t, &r, 0.3f);
    float *x = falloc(nx), *out = falloc(no), *dout = falloc(no), *dx = falloc(nx);
    float *cache = falloc(nc), *scratch = falloc(net_scratch(t, n));
    float *dp0 = falloc(np), *dp = falloc(np), *dpa = falloc(np), *dpb = falloc(np);
    double *wt = malloc(sizeof(double) * (no ? no : 1));
    double *ga = malloc(sizeof(double) * (nx + np + 1));
    size_t *idx = malloc(sizeof(size_t) * (nx + np + 1));
    uint8_t *pattern = NULL;
    fill_normal(&r, x, nx, 1.0f);
    for (size_t i = 0; i < no; i++) dout[i] = (float)(wt[i] = rf_rng_normal(&r));
    for (size_t i = 0; i < nx; i++) dx[i] = 123.0f;
    for (size_t i = 0; i < np; i++) dp0[i] = 0.25f; /* accumulate onto a non-zero buffer */
    net_project(t, dp0);
    memcpy(dp, dp0, sizeof(float) * np);
    net_forward(t, p, n, x, out, cache);
    if (t->arch.act == RF_ACT_RELU) {
        pattern = malloc(nc ? nc : 1);
        for (size_t i = 0; i < nc; i++) pattern[i] = cache[i] > 0.0f;
    }
    net_backward(t, p, n, x, dout, dx, dp, cache, scratch);

    /* dx == NULL must not change dparams: compare two fresh accumulations bit for bit */
    memset(dpa, 0, sizeof(float) * np);
    memset(dpb, 0, sizeof(float) * np);
    net_backward(t, p, n, x, dout, dx, dpa, cache, scratch);
    net_backward(t, p, n, x, dout, NULL, dpb, cache, scratch);
    assert_memory_equal(dpa, dpb, sizeof(float) * np);

    grad_res res = {0};
    fd_ctx c = {t, p, x, n, wt, out, cache, nc, pattern};
    for (size_t i = 0; i < nx; i++) {
        ga[i] = dx[i];
        idx[i] = i;
    }
    res.rel_x = compare_fd(&c, x, idx, ga, nx, &res.norm_x, &res);
    float *probe = falloc(np); /* 0 where MADE masks a weight */
    for (size_t i = 0; i < np; i++) probe[i] = 1.0f;
    net_project(t, probe);
    size_t m = 0;
    for (size_t i = 0; i < np; i++) {
        if (probe[i] == 0.0f) {
            assert_true(same_bits(dp[i], 0.0f)); /* masked: gradient written as exactly 0 */
            continue;
        }
        ga[m] = (double)dp[i] - dp0[i];
        idx[m++] = i;
    }
    res.rel_p = compare_fd(&c, p, idx, ga, m, &res.norm_p, &res);
    free(probe);
    free(pattern);
    free(idx);
    free(wt);
    free(ga);
    free(p);
    free(x);
    free(out);
    free(dout);
    free(dx);
    free(cache);
    free(scratch);
    free(dp0);
    free(dp);
    free(dpa);
    free(dpb);
    return res;
}

static void assert_grad_ok(const char *what, const net *t, const grad_res *g) {
    printf("[nn] grad %-4s act=%-4s res=%d layers=%d in=%d: dx rel %.2e (|g| %.3g)  dp rel %.2e "
           "(|g| %.3g)  [%zu coords, %zu skipped at ReLU kinks]\n",
           what, rf_act_name(t->arch.act), t->arch.residual, t->arch.n_hidden, t->arch.n_in,
           g->rel_x, g->norm_x, g->rel_p, g->norm_p, g->compared, g->skipped);
    assert_true(g->skipped * 10 <= g->compared);
    assert_true(g->rel_x < 1e-2);
    assert_true(g->rel_p < 1e-2);
    assert_true(g->norm_p > 1e-2); /* gradients are really exercised */
    if (t->arch.n_in > 0 && !(t->made && t->arch.n_in == 1)) assert_true(g->norm_x > 1e-2);
}

/* Forward twice and backward twice on a batch large enough for threaded loops: bit-identical. */
static void check_deterministic(const net *t, const char *what) {
    const int n = 3000;
    const size_t nx = (size_t)n * t->arch.n_in, no = (size_t)n * t->arch.n_out;
    rf_rng r;
    rf_rng_seed(&r, 99);
    float *p = net_random_params(t, &r, 0.1f);
    float *x = falloc(nx), *dout = falloc(no), *o1 = falloc(no), *o2 = falloc(no);
    float *dx1 = falloc(nx), *dx2 = falloc(nx);
    float *dp1 = calloc(t->np, sizeof(float)), *dp2 = calloc(t->np, sizeof(float));
    float *cache = falloc(net_cache(t, n)), *scratch = falloc(net_scratch(t, n));
    fill_normal(&r, x, nx, 1.0f);
    fill_normal(&r, dout, no, 1.0f);
    net_forward(t, p, n, x, o1, cache);
    net_backward(t, p, n, x, dout, dx1, dp1, cache, scratch);
    net_forward(t, p, n, x, o2, cache);
    net_backward(t, p, n, x, dout, dx2, dp2, cache, scratch);
    assert_memory_equal(o1, o2, sizeof(float) * no);
    assert_memory_equal(dx1, dx2, sizeof(float) * nx);
    assert_memory_equal(dp1, dp2, sizeof(float) * t->np);
    assert_true(rf_all_finite(o1, no));
    printf("[nn] determinism %s (n=%d, hidden=%d, %s): forward and backward bit-identical\n", what,
           n, t->arch.hidden, rf_act_name(t->arch.act));
    free(p);
    free(x);
    free(dout);
    free(o1);
    free(o2);
    free(dx1);
    free(dx2);
    free(dp1);
    free(dp2);
    free(cache);
    free(scratch);
}

/* Fresh init: output exactly 0 for any input, and params fully written (buffer starts dirty). */
static void check_zero_init(const net *t) {
    const int n = 7;
    rf_rng r;
    rf_rng_seed(&r, 5);
    float *p = falloc(t->np), *x = falloc((size_t)n * t->arch.n_in);
    float *out = falloc((size_t)n * t->arch.n_out), *cache = falloc(net_cache(t, n));
    for (size_t i = 0; i < t->np; i++) p[i] = 7.0f;
    net_init(t, p, &r);
    fill_normal(&r, x, (size_t)n * t->arch.n_in, 3.0f);
    net_forward(t, p, n, x, out, cache);
    for (size_t i = 0; i < (size_t)n * t->arch.n_out; i++) assert_true(out[i] == 0.0f);
    free(p);
    free(x);
    free(out);
    free(cache);
}

/* ---------------- GEMM and activations ---------------- */

static void test_gemm(void **state) {
    (void)state;
    rf_rng r;
    rf_rng_seed(&r, 1);
    const int M = 5, N = 4, K = 3, pad = 2;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* op(A) is M x K: A is stored K x M when transposed; likewise B */
            const int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
            const int lda = ac + pad, ldb = bc + pad, ldc = N + 1;
            float *A = falloc((size_t)ar * lda), *B = falloc((size_t)br * ldb);
            float *C = falloc((size_t)M * ldc), *C0 = falloc((size_t)M * ldc);
            fill_normal(&r, A, (size_t)ar * lda, 1.0f);
            fill_normal(&r, B, (size_t)br * ldb, 1.0f);
            fill_normal(&r, C, (size_t)M * ldc, 1.0f);
            memcpy(C0, C, sizeof(float) * M * ldc);
            rf_gemm(ta, tb, M, N, K, 0.7f, A, lda, B, ldb, -0.3f, C, ldc);
            double err = 0;
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) {
                    double s = 0;
                    for (int k = 0; k < K; k++)
                        s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) *
                             (tb ? B[j * ldb + k] : B[k * ldb + j]);
                    err = fmax(err, fabs(0.7 * s - 0.3 * C0[i * ldc + j] - C[i * ldc + j]));
                }
                assert_true(same_bits(C[i * ldc + N], C0[i * ldc + N])); /* padding untouched */
            }
            printf("[nn] gemm ta=%d tb=%d: max err vs naive %.2e\n", ta, tb, err);
            assert_true(err < 1e-5);
            free(A);
            free(B);
            free(C);
            free(C0);
        }
    /* K == 0: C = beta * C (beta = 0 clears even NaN); M == 0: untouched */
    float C[4] = {NAN, 2, 3, 4};
    rf_gemm(0, 1, 2, 2, 0, 1.0f, NULL, 0, NULL, 0, 0.0f, C, 2);
    for (int i = 0; i < 4; i++) assert_true(C[i] == 0.0f);
    C[0] = 1;
    C[3] = 2;
    rf_gemm(0, 0, 2, 2, 0, 1.0f, NULL, 0, NULL, 0, 0.5f, C, 2);
    assert_true(C[0] == 0.5f && C[3] == 1.0f);
    rf_gemm(0, 0, 0, 2, 3, 1.0f, NULL, 3, NULL, 2, 0.0f, C, 2);
    assert_true(C[0] == 0.5f);
    printf("[nn] gemm empty products (K=0, M=0): ok\n");
}

static void test_activations(void **state) {
    (void)state;
    for (int a = 0; a < N_ACTS; a++) {
        rf_act parsed = (rf_act)-1;
        assert_int_equal(rf_act_parse(rf_act_name(ACTS[a]), &parsed), RF_OK);
        assert_int_equal(parsed, ACTS[a]);
    }
    rf_act parsed = RF_ACT_TANH;
    assert_int_equal(rf_act_parse("sigmoid", &parsed), RF_EARG);
    assert_int_equal(rf_act_parse("", &parsed), RF_EARG);
    assert_int_equal(rf_act_parse(NULL, &parsed), RF_EARG);
    assert_int_equal(parsed, RF_ACT_TANH); /* untouched on failure */
    assert_string_equal(rf_act_name(RF_ACT_GELU), "gelu");

    enum { NX = 41 };
    float x[NX], y[NX], yi[NX], dy[NX], dx[NX];
    for (int i = 0; i < NX; i++) {
        x[i] = -4.0f + 0.2f * (float)i + 0.013f; /* no grid point at the ReLU kink */
        dy[i] = 2.5f;
    }
    for (int a = 0; a < N_ACTS; a++) {
        const rf_act act = ACTS[a];
        rf_act_forward(act, NX, x, y);
        memcpy(yi, x, sizeof x);
        rf_act_forward(act, NX, yi, yi); /* in place */
        assert_memory_equal(y, yi, sizeof y);
        rf_act_backward(act, NX, x, dy, dx);
        double ev = 0, ed = 0, efd = 0;
        for (int i = 0; i < NX; i++) {
            ev = fmax(ev, fabs(y[i] - act_ref(act, x[i])));
            ed = fmax(ed, fabs(dx[i] - 2.5 * act_deriv_ref(act, x[i])));
            const float h = 1e-3f;
            float xp = x[i] + h, xm = x[i] - h, yp, ym;
            rf_act_forward(act, 1, &xp, &yp);
            rf_act_forward(act, 1, &xm, &ym);
            efd = fmax(efd, fabs(dx[i] / 2.5 - ((double)yp - ym) / ((double)xp - xm)));
        }
        printf("[nn] act %-4s: value err %.2e  deriv err %.2e  vs central diff %.2e\n",
               rf_act_name(act), ev, ed, efd);
        assert_true(ev < 1e-6 && ed < 1e-5 && efd < 2e-3);
    }
    /* spot values: GELU(1) = Phi(1) = 0.841344746..., GELU(-1) = -0.158655253... */
    float v[2] = {1.0f, -1.0f}, g[2];
    rf_act_forward(RF_ACT_GELU, 2, v, g);
    assert_float_equal(g[0], 0.8413447f, 1e-6);
    assert_float_equal(g[1], -0.1586553f, 1e-6);
}

/* ---------------- MLP ---------------- */

static void test_mlp_config(void **state) {
    (void)state;
    rf_err e;
    rf_err_clear(&e);
    rf_mlp_cfg c = {3, 2, 8, 2, RF_ACT_GELU, 1};
    rf_mlp *m = rf_mlp_create(&c, &e);
    assert_non_null(m);
    assert_int_equal(rf_mlp_n_params(m), (3 + 1) * 8 + (8 + 1) * 8 + (8 + 1) * 2);
    assert_memory_equal(rf_mlp_config(m), &c, sizeof c);
    assert_int_equal(rf_mlp_cache_floats(m, 10), 2 * 2 * 10 * 8);
    rf_mlp_free(m);
    const rf_mlp_cfg bad[] = {{3, 0, 8, 2, RF_ACT_GELU, 0}, {3, 2, 0, 2, RF_ACT_GELU, 0},
                              {3, 2, 8, 0, RF_ACT_GELU, 0}, {-1, 2, 8, 1, RF_ACT_GELU, 0},
                              {3, 2, 8, 1, (rf_act)9, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rf_err_clear(&e);
        assert_null(rf_mlp_create(&bad[i], &e));
        assert_int_equal(e.code, RF_EARG);
        assert_true(strlen(e.msg) > 0);
    }
    assert_null(rf_mlp_create(NULL, NULL));
    printf("[nn] mlp config: parameter count, sizes and %zu invalid configs rejected\n",
           sizeof bad / sizeof *bad);
}

static void test_mlp_zero_init(void **state) {
    (void)state;
    for (int a = 0; a < N_ACTS; a++)
        for (int res = 0; res < 2; res++) {
            rf_mlp_cfg c = {5, 4, 16, 3, ACTS[a], res};
            rf_mlp *m = rf_mlp_create(&c, NULL);
            net t = net_of_mlp(m);
            check_zero_init(&t);
            /* hidden weights within the documented bound sqrt(3 / fan_in), biases 0 */
            float *p = falloc(t.np);
            rf_rng r;
            rf_rng_seed(&r, 11);
            rf_mlp_init_params(m, p, &r);
            const size_t w0 = 16 * 5;
            double wmax = 0;
            for (size_t i = 0; i < w0; i++) wmax = fmax(wmax, fabs(p[i]));
            assert_true(wmax <= sqrt(3.0 / 5) && wmax > 0.5 * sqrt(3.0 / 5));
            for (size_t i = w0; i < w0 + 16; i++) assert_true(p[i] == 0.0f);
            free(p);
            rf_mlp_free(m);
        }
    printf("[nn] mlp fresh init: output exactly 0 (3 activations x residual on/off)\n");
}

static void test_mlp_reference(void **state) {
    (void)state;
    for (int a = 0; a < N_ACTS; a++)
        for (int res = 0; res < 2; res++) {
            rf_mlp_cfg c = {6, 5, 24, 3, ACTS[a], res};
            rf_mlp *m = rf_mlp_create(&c, NULL);
            net t = net_of_mlp(m);
            const int n = 9;
            rf_rng r;
            rf_rng_seed(&r, 21 + a);
            float *p = net_random_params(&t, &r, 0.2f);
            float *x = falloc((size_t)n * 6), *out = falloc((size_t)n * 5);
            float *cache = falloc(rf_mlp_cache_floats(m, n));
            double *ref = malloc(sizeof(double) * n * 5);
            fill_normal(&r, x, (size_t)n * 6, 1.0f);
            rf_mlp_forward(m, p, n, x, out, cache);
            ref_forward(&c, p, t.np, n, x, ref);
            double err = 0, mag = 1;
            for (int i = 0; i < n * 5; i++) {
                err = fmax(err, fabs(out[i] - ref[i]));
                mag = fmax(mag, fabs(ref[i]));
            }
            printf("[nn] mlp forward vs naive act=%-4s res=%d: max err %.2e (max |out| %.3g)\n",
                   rf_act_name(ACTS[a]), res, err, mag);
            assert_true(err / mag < 1e-5);
            free(p);
            free(x);
            free(out);
            free(cache);
            free(ref);
            rf_mlp_free(m);
        }
}

static void test_mlp_gradients(void **state) {
    (void)state;
    uint64_t seed = 100;
    for (int a = 0; a < N_ACTS; a++)
        for (int res = 0; res < 2; res++)
            for (int depth = 1; depth <= 3; depth += 2) {
                rf_mlp_cfg c = {4, 3, 12, depth, ACTS[a], res};
                rf_mlp *m = rf_mlp_create(&c, NULL);
                net t = net_of_mlp(m);
                grad_res g = grad_check(&t, seed++);
                assert_grad_ok("mlp", &t, &g);
                rf_mlp_free(m);
            }
    /* degenerate input width 0: the output is a learned function of nothing */
    rf_mlp_cfg c = {0, 3, 6, 2, RF_ACT_TANH, 1};
    rf_mlp *m = rf_mlp_create(&c, NULL);
    assert_non_null(m);
    net t = net_of_mlp(m);
    grad_res g = grad_check(&t, seed);
    assert_grad_ok("mlp", &t, &g);
    rf_mlp_free(m);
}

static void test_mlp_determinism(void **state) {
    (void)state;
    rf_mlp_cfg c = {16, 8, 64, 3, RF_ACT_GELU, 1};
    rf_mlp *m = rf_mlp_create(&c, NULL);
    net t = net_of_mlp(m);
    check_deterministic(&t, "mlp");
    rf_mlp_free(m);
}

/* ---------------- MADE ---------------- */

/* The connectivity rules, written out independently: 0 = masked, 1 = free weight, 2 = bias. */
static uint8_t *spec_mask(const rf_made_cfg *c, size_t np) {
    uint8_t *mk = malloc(np);
    const int D = c->D, P = c->P, H = c->hidden;
    int *deg = malloc(sizeof(int) * H);
    for (int k = 0; k < H; k++) deg[k] = D == 1 ? 1 : 1 + k % (D - 1);
    size_t o = 0;
    for (int l = 0; l <= c->n_hidden; l++) {
        const int in = l == 0 ? D : H, out = l == c->n_hidden ? D * P : H;
        for (int r = 0; r < out; r++)
            for (int k = 0; k < in; k++) {
                int f;
                if (l == 0) f = deg[r] >= k + 1;                 /* input degree k + 1 */
                else if (l < c->n_hidden) f = deg[r] >= deg[k];
                else f = r / P + 1 > deg[k];                     /* output degree i + 1 */
                mk[o++] = (uint8_t)f;
            }
        for (int r = 0; r < out; r++) mk[o++] = 2;
    }
    assert_int_equal(o, np);
    free(deg);
    return mk;
}

static void test_made_config(void **state) {
    (void)state;
    rf_err e;
    rf_made_cfg c = {4, 3, 10, 2, RF_ACT_RELU, 0};
    rf_made *m = rf_made_create(&c, &e);
    assert_non_null(m);
    assert_memory_equal(rf_made_config(m), &c, sizeof c);
    assert_int_equal(rf_made_n_params(m), (4 + 1) * 10 + (10 + 1) * 10 + (10 + 1) * 12);
    rf_made_free(m);
    const rf_made_cfg bad[] = {{0, 3, 10, 2, RF_ACT_RELU, 0}, {4, 0, 10, 2, RF_ACT_RELU, 0},
                               {4, 3, 0, 2, RF_ACT_RELU, 0}, {4, 3, 10, 0, RF_ACT_RELU, 0},
                               {4, 3, 10, 2, (rf_act)-2, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rf_err_clear(&e);
        assert_null(rf_made_create(&bad[i], &e));
        assert_int_equal(e.code, RF_EARG);
    }
    printf("[nn] made config: parameter count and %zu invalid configs rejected\n",
           sizeof bad / sizeof *bad);
}

/* Masks match the written-out rules: init and project zero exactly the masked weights. */
static void test_made_masks_and_init(void **state) {
    (void)state;
    const int Ds[] = {1, 2, 5};
    for (int di = 0; di < 3; di++)
        for (int res = 0; res < 2; res++) {
            rf_made_cfg c = {Ds[di], 2, 9, 3, RF_ACT_TANH, res};
            rf_made *m = rf_made_create(&c, NULL);
            net t = net_of_made(m);
            uint8_t *mk = spec_mask(&c, t.np);
            check_zero_init(&t);
            rf_rng r;
            rf_rng_seed(&r, 3);
            float *p = falloc(t.np);
            rf_made_init_params(m, p, &r);
            size_t n_masked = 0, n_free_w = 0, n_free_nonzero = 0;
            const size_t last_w = t.np - (size_t)c.D * c.P * (c.hidden + 1);
            for (size_t i = 0; i < t.np; i++) {
                if (mk[i] == 0) {
                    n_masked++;
                    assert_true(same_bits(p[i], 0.0f));
                } else if (mk[i] == 2) {
                    assert_true(p[i] == 0.0f); /* biases start at 0 */
                } else if (i < last_w) {
                    n_free_w++;
                    n_free_nonzero += p[i] != 0.0f;
                }
            }
            for (size_t i = 0; i < t.np; i++) p[i] = 1.0f + (float)i;
            rf_made_project(m, p);
            for (size_t i = 0; i < t.np; i++)
                assert_true(mk[i] ? p[i] == 1.0f + (float)i : same_bits(p[i], 0.0f));
            printf("[nn] made masks D=%d res=%d: %zu masked of %zu params match the degree rules; "
                   "%zu/%zu free hidden weights non-zero after init; fresh output exactly 0\n",
                   c.D, res, n_masked, t.np, n_free_nonzero, n_free_w);
            assert_int_equal(n_free_nonzero, n_free_w); /* U(-a, a) draws are never exactly 0 */
            free(mk);
            free(p);
            rf_made_free(m);
        }
}

static void test_made_reference(void **state) {
    (void)state;
    rf_made_cfg c = {5, 3, 12, 2, RF_ACT_GELU, 1};
    rf_made *m = rf_made_create(&c, NULL);
    net t = net_of_made(m);
    const int n = 6;
    rf_rng r;
    rf_rng_seed(&r, 8);
    float *p = net_random_params(&t, &r, 0.3f);
    float *x = falloc((size_t)n * 5), *out = falloc((size_t)n * 15);
    float *cache = falloc(rf_made_cache_floats(m, n));
    double *ref = malloc(sizeof(double) * n * 15);
    fill_normal(&r, x, (size_t)n * 5, 1.0f);
    rf_made_forward(m, p, n, x, out, cache);
    ref_forward(&t.arch, p, t.np, n, x, ref);
    double err = 0;
    for (int i = 0; i < n * 15; i++) err = fmax(err, fabs(out[i] - ref[i]));
    printf("[nn] made forward vs naive (masked dense) D=5 P=3: max err %.2e\n", err);
    assert_true(err < 1e-5);
    free(p);
    free(x);
    free(out);
    free(cache);
    free(ref);
    rf_made_free(m);
}

/* Perturbing x[j] leaves blocks i <= j bit-identical and changes every block i > j. */
static void check_autoregressive(const rf_made_cfg *c, uint64_t seed) {
    rf_made *m = rf_made_create(c, NULL);
    assert_non_null(m);
    net t = net_of_made(m);
    const int n = 8, D = c->D, P = c->P;
    rf_rng r;
    rf_rng_seed(&r, seed);
    float *p = net_random_params(&t, &r, 0.5f);
    float *x = falloc((size_t)n * D), *x2 = falloc((size_t)n * D);
    float *o = falloc((size_t)n * D * P), *o2 = falloc((size_t)n * D * P);
    float *cache = falloc(rf_made_cache_floats(m, n));
    fill_normal(&r, x, (size_t)n * D, 1.0f);
    rf_made_forward(m, p, n, x, o, cache);
    for (int j = 0; j < D; j++) {
        memcpy(x2, x, sizeof(float) * n * D);
        for (int s = 0; s < n; s++) x2[s * D + j] += 1.0f + 2.0f * (float)rf_rng_uniform(&r);
        rf_made_forward(m, p, n, x2, o2, cache);
        for (int i = 0; i < D; i++) {
            int changed = 0;
            for (int s = 0; s < n; s++)
                for (int q = 0; q < P; q++) {
                    const size_t k = (size_t)s * D * P + (size_t)i * P + q;
                    changed |= !same_bits(o[k], o2[k]);
                }
            if (i <= j) assert_false(changed); /* no dependence on x[j >= i] */
            else assert_true(changed);         /* real dependence on x[j < i] */
        }
    }
    free(p);
    free(x);
    free(x2);
    free(o);
    free(o2);
    free(cache);
    rf_made_free(m);
}

static void test_made_autoregressive(void **state) {
    (void)state;
    const int Ds[] = {1, 2, 5, 7}, Ps[] = {1, 3};
    uint64_t seed = 500;
    int n_cfg = 0;
    for (int di = 0; di < 4; di++) {
        for (int pi = 0; pi < 2; pi++)
            for (int a = 0; a < N_ACTS; a++)
                for (int res = 0; res < 2; res++)
                    for (int depth = 1; depth <= 2; depth++) {
                        /* hidden >= D - 1 so every degree is present */
                        rf_made_cfg c = {Ds[di], Ps[pi], 2 * Ds[di] + 3, depth, ACTS[a], res};
                        check_autoregressive(&c, seed++);
                        n_cfg++;
                    }
        printf("[nn] made autoregressive D=%d: outputs i<=j bit-identical under changes of x[j], "
               "outputs i>j depend on every x[j] (%d configs so far)\n",
               Ds[di], n_cfg);
    }
}

static void test_made_gradients(void **state) {
    (void)state;
    uint64_t seed = 300;
    for (int a = 0; a < N_ACTS; a++)
        for (int res = 0; res < 2; res++)
            for (int depth = 1; depth <= 3; depth += 2) {
                rf_made_cfg c = {4, 2, 10, depth, ACTS[a], res};
                rf_made *m = rf_made_create(&c, NULL);
                net t = net_of_made(m);
                grad_res g = grad_check(&t, seed++);
                assert_grad_ok("made", &t, &g);
                rf_made_free(m);
            }
    /* D == 1: the output is a constant, so dx is exactly 0 */
    rf_made_cfg c = {1, 3, 4, 2, RF_ACT_GELU, 1};
    rf_made *m = rf_made_create(&c, NULL);
    net t = net_of_made(m);
    grad_res g = grad_check(&t, seed);
    assert_grad_ok("made", &t, &g);
    assert_true(g.norm_x == 0.0);
    rf_made_free(m);
}

static void test_made_determinism(void **state) {
    (void)state;
    rf_made_cfg c = {12, 3, 64, 3, RF_ACT_TANH, 1};
    rf_made *m = rf_made_create(&c, NULL);
    net t = net_of_made(m);
    check_deterministic(&t, "made");
    rf_made_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_mlp_config),
        cmocka_unit_test(test_mlp_zero_init),
        cmocka_unit_test(test_mlp_reference),
        cmocka_unit_test(test_mlp_gradients),
        cmocka_unit_test(test_mlp_determinism),
        cmocka_unit_test(test_made_config),
        cmocka_unit_test(test_made_masks_and_init),
        cmocka_unit_test(test_made_reference),
        cmocka_unit_test(test_made_autoregressive),
        cmocka_unit_test(test_made_gradients),
        cmocka_unit_test(test_made_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
