/* The LSTM controller and REINFORCE (include/renflow/controller.h): the shaped reward and one
 * update against hand computations, back-propagation through time against finite differences,
 * sampling against the policy's probabilities, learning a multi-decision bandit, the decisions
 * of a search space, and the "rl" sampler (replay determinism, resume through a study file,
 * better than random on a discrete problem). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "renflow/controller.h"
#include "testutil.h"

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---------------------------------------------------------------------------------------
 * shaped reward
 * --------------------------------------------------------------------------------------- */
static void test_shaped_reward(void **state) {
    (void)state;
    /* R(x) = C / (1 + exp(-A x + B)) */
    assert_true(fabs(rf_shaped_reward(0.5, 2, 1, 3) - 1.5) < 1e-15);                    /* threshold B/A: C/2 */
    assert_true(fabs(rf_shaped_reward(1.0, 2, 1, 3) - 3.0 / (1.0 + exp(-1.0))) < 1e-15); /* 2.19317... */
    assert_true(fabs(rf_shaped_reward(1.0, 2, 1, 3) - 2.1931757358900) < 1e-12);
    assert_true(fabs(rf_shaped_reward(-2.0, 0.5, 1, 1) - 1.0 / (1.0 + exp(2.0))) < 1e-15);
    assert_true(fabs(rf_shaped_reward(0.9, 10, 5, 1) - 1.0 / (1.0 + exp(-4.0))) < 1e-15);
    /* 10% and 90% of C at B/A -+ ln(9)/A */
    assert_true(fabs(rf_shaped_reward(0.5 + log(9.0) / 2, 2, 1, 3) - 2.7) < 1e-12);
    assert_true(fabs(rf_shaped_reward(0.5 - log(9.0) / 2, 2, 1, 3) - 0.3) < 1e-12);
    /* no overflow, limits */
    assert_true(rf_shaped_reward(-1e6, 2, 1, 3) == 0.0);
    assert_true(rf_shaped_reward(-INFINITY, 2, 1, 3) == 0.0);
    assert_true(rf_shaped_reward(1e6, 2, 1, 3) == 3.0);
    assert_true(rf_shaped_reward(INFINITY, 2, 1, 3) == 3.0);
    assert_true(isnan(rf_shaped_reward(NAN, 2, 1, 3)));
    /* monotone */
    for (double x = -5; x < 5; x += 0.25) assert_true(rf_shaped_reward(x + 0.25, 1.3, 0.2, 1) > rf_shaped_reward(x, 1.3, 0.2, 1));
}

/* ---------------------------------------------------------------------------------------
 * a controller small enough to compute by hand: hidden 1, embed 1, one slot of 2 choices
 * --------------------------------------------------------------------------------------- */
static void test_hand_forward_and_update(void **state) {
    (void)state;
    rf_err e = {0};
    rf_controller_opts co;
    rf_controller_opts_default(&co);
    co.hidden = 1;
    co.embed = 1;
    co.temperature = 1.5;
    int nch = 2;
    rf_controller *c = rf_controller_create(1, &nch, &co, 7, &e);
    assert_non_null(c);
    /* layout: emb[3] (start, choice 0, choice 1), W 4x2, b 4, head W 2x1, head b 2 */
    assert_int_equal(rf_controller_n_params(c), 3 + 8 + 4 + 2 + 2);
    double *th = rf_controller_params(c);
    const double s = 0.7, wix = 0.3, wih = -0.2, wfx = 0.5, wfh = 0.1, wgx = -0.8, wgh = 0.4, wox = 0.6, woh = 0.9;
    const double bi = 0.05, bf = -0.1, bg = 0.2, bo = -0.3, u0 = 1.2, u1 = -0.7, c0 = 0.1, c1 = 0.4;
    const double vals[19] = {s, 0.11, -0.22, wix, wih, wfx, wfh, wgx, wgh, wox, woh, bi, bf, bg, bo, u0, u1, c0, c1};
    memcpy(th, vals, sizeof vals);
    /* by hand: x = s, h0 = c0 = 0 */
    double i = sigm(wix * s + bi), g = tanh(wgx * s + bg), o = sigm(wox * s + bo);
    double cell = i * g, h = o * tanh(cell);
    double L0 = (u0 * h + c0) / 1.5, L1 = (u1 * h + c1) / 1.5;
    double p0 = exp(L0) / (exp(L0) + exp(L1)), p1 = 1 - p0;
    double H = -p0 * log(p0) - p1 * log(p1);
    int a = 1;
    double lp, ent;
    assert_int_equal(rf_controller_logprob(c, &a, &lp, &ent, &e), RF_OK);
    assert_true(fabs(lp - log(p1)) < 1e-14);
    assert_true(fabs(ent - H) < 1e-14);
    printf("  hand controller: p = (%.6f, %.6f), log p(1) = %.6f, H = %.6f\n", p0, p1, lp, ent);

    /* one REINFORCE step with SGD, no entropy bonus: head bias c_j moves by
     * lr (R - b) (d log p(a) / d c_j) = lr (R - b) ([j = a] - p_j) / T; head weight u_j by the same
     * times h; baseline: b' = decay b + (1 - decay) R */
    rf_reinforce_opts ro;
    rf_reinforce_opts_default(&ro);
    ro.optimizer = RF_CTRL_SGD;
    ro.lr = 0.1;
    ro.entropy_weight = 0;
    ro.reward_a = 2;
    ro.reward_b = 1;
    ro.reward_c = 3;
    ro.baseline_decay = 0.8;
    rf_reinforce *r = rf_reinforce_create(c, &ro, &e);
    assert_non_null(r);
    assert_true(fabs(rf_reinforce_baseline(r) - 1.5) < 1e-15); /* C/2 by default */
    double R = rf_reinforce_reward(r, 1.0);                    /* 2.19317... */
    rf_reinforce_info info;
    assert_int_equal(rf_reinforce_update(r, 1, &a, &R, &info, &e), RF_OK);
    const double adv = R - 1.5;
    assert_true(fabs(info.baseline - 1.5) < 1e-15);
    assert_true(fabs(th[17] - (c0 + 0.1 * adv * (0 - p0) / 1.5)) < 1e-14);
    assert_true(fabs(th[18] - (c1 + 0.1 * adv * (1 - p1) / 1.5)) < 1e-14);
    assert_true(fabs(th[15] - (u0 + 0.1 * adv * (0 - p0) * h / 1.5)) < 1e-14);
    assert_true(fabs(th[16] - (u1 + 0.1 * adv * (1 - p1) * h / 1.5)) < 1e-14);
    /* the choice embeddings are never an input (one step): unchanged */
    assert_true(th[1] == 0.11 && th[2] == -0.22);
    assert_true(fabs(rf_reinforce_baseline(r) - (0.8 * 1.5 + 0.2 * R)) < 1e-15);
    assert_int_equal(rf_reinforce_steps(r), 1);
    /* the update raised p(a) since R > b */
    double lp2;
    assert_int_equal(rf_controller_logprob(c, &a, &lp2, NULL, &e), RF_OK);
    assert_true(lp2 > lp);
    rf_reinforce_free(r);
    rf_controller_free(c);
}

/* ---------------------------------------------------------------------------------------
 * BPTT against central finite differences
 * --------------------------------------------------------------------------------------- */
static double objective_at(rf_controller *c, const int *ch, double wl, double we) {
    double lp, h;
    rf_err e = {0};
    assert_int_equal(rf_controller_logprob(c, ch, &lp, &h, &e), RF_OK);
    return wl * lp + we * h;
}

/* max |g - g_fd| / max(1e-3, max |g_fd|) over all parameters, and ||g_fd||. */
static double grad_check(rf_controller *c, const int *ch, double wl, double we, double *fd_norm) {
    rf_err e = {0};
    size_t np = rf_controller_n_params(c);
    double *g = calloc(np, sizeof(double)), *th = rf_controller_params(c);
    double lp, h;
    assert_int_equal(rf_controller_grad(c, ch, wl, we, &lp, &h, g, &e), RF_OK);
    assert_true(fabs(wl * lp + we * h - objective_at(c, ch, wl, we)) < 1e-12);
    double maxdiff = 0, maxfd = 0, n2 = 0;
    for (size_t j = 0; j < np; j++) {
        const double eps = 1e-5, t0 = th[j];
        th[j] = t0 + eps;
        double fp = objective_at(c, ch, wl, we);
        th[j] = t0 - eps;
        double fm = objective_at(c, ch, wl, we);
        th[j] = t0;
        double fd = (fp - fm) / (2 * eps);
        maxdiff = fmax(maxdiff, fabs(fd - g[j]));
        maxfd = fmax(maxfd, fabs(fd));
        n2 += fd * fd;
    }
    free(g);
    *fd_norm = sqrt(n2);
    return maxdiff / fmax(1e-3, maxfd);
}

static void test_bptt_finite_differences(void **state) {
    (void)state;
    rf_err e = {0};
    const int nch[6] = {3, 1, 4, 2, 5, 3};
    struct {
        int hidden, embed;
        double temperature, tanh_c, init;
    } cases[3] = {{5, 4, 1.0, 0, 0.5}, {6, 0, 1.7, 2.5, 0.8}, {3, 7, 0.6, 1.2, 1.0}};
    for (int v = 0; v < 3; v++) {
        rf_controller_opts co;
        rf_controller_opts_default(&co);
        co.hidden = cases[v].hidden;
        co.embed = cases[v].embed;
        co.temperature = cases[v].temperature;
        co.tanh_c = cases[v].tanh_c;
        co.init_scale = cases[v].init; /* larger than the default so that every gate is far from linear */
        rf_controller *c = rf_controller_create(6, nch, &co, 100 + (uint64_t)v, &e);
        assert_non_null(c);
        /* random biases too */
        rf_rng rng;
        rf_rng_seed(&rng, 3);
        double *th = rf_controller_params(c);
        for (size_t j = 0; j < rf_controller_n_params(c); j++) th[j] += 0.3 * rf_rng_normal(&rng);
        const int full[6] = {2, 0, 3, 1, 4, 0}, skips[6] = {1, -1, 0, -1, 2, 2};
        const double w[3][2] = {{1, 0}, {0, 1}, {-0.7, 0.35}};
        for (int k = 0; k < 3; k++) {
            double fdn1, fdn2;
            double r1 = grad_check(c, full, w[k][0], w[k][1], &fdn1);
            double r2 = grad_check(c, skips, w[k][0], w[k][1], &fdn2);
            printf("  case %d (H %d, E %d, T %.1f, tanh %.1f) w_logp %.2f w_ent %.2f: rel err %.2e (|g| %.3f), with skipped "
                   "slots %.2e (|g| %.3f)\n",
                   v, co.hidden, co.embed ? co.embed : co.hidden, co.temperature, co.tanh_c, w[k][0], w[k][1], r1, fdn1, r2,
                   fdn2);
            assert_true(fdn1 > 1e-2 && fdn2 > 1e-2);
            assert_true(r1 < 1e-6);
            assert_true(r2 < 1e-6);
        }
        /* the gradient accumulates (+=) */
        size_t np = rf_controller_n_params(c);
        double *g1 = calloc(np, sizeof(double)), *g2 = calloc(np, sizeof(double));
        assert_int_equal(rf_controller_grad(c, full, 1, 0, NULL, NULL, g1, &e), RF_OK);
        assert_int_equal(rf_controller_grad(c, full, 1, 0, NULL, NULL, g2, &e), RF_OK);
        assert_int_equal(rf_controller_grad(c, full, 1, 0, NULL, NULL, g2, &e), RF_OK);
        for (size_t j = 0; j < np; j++) assert_true(fabs(g2[j] - 2 * g1[j]) <= 1e-12 * (1 + fabs(g1[j])));
        free(g1);
        free(g2);
        rf_controller_free(c);
    }
}

/* ---------------------------------------------------------------------------------------
 * REINFORCE updates against the definition with finite-difference gradients
 * --------------------------------------------------------------------------------------- */
static void fd_grad(rf_controller *c, const int *ch, double wl, double we, double *g) {
    double *th = rf_controller_params(c);
    for (size_t j = 0; j < rf_controller_n_params(c); j++) {
        const double eps = 1e-5, t0 = th[j];
        th[j] = t0 + eps;
        double fp = objective_at(c, ch, wl, we);
        th[j] = t0 - eps;
        double fm = objective_at(c, ch, wl, we);
        th[j] = t0;
        g[j] = (fp - fm) / (2 * eps);
    }
}

static void test_reinforce_update_definition(void **state) {
    (void)state;
    rf_err e = {0};
    const int nch[4] = {3, 2, 4, 3};
    rf_controller_opts co;
    rf_controller_opts_default(&co);
    co.hidden = 4;
    co.init_scale = 0.6;
    rf_controller *c = rf_controller_create(4, nch, &co, 11, &e);
    assert_non_null(c);
    size_t np = rf_controller_n_params(c);
    double *th0 = malloc(np * sizeof(double)), *g = malloc(np * sizeof(double)), *g2 = malloc(np * sizeof(double));
    double *gl = malloc(np * sizeof(double)), *gh = malloc(np * sizeof(double));
    memcpy(th0, rf_controller_params(c), np * sizeof(double));
    const int ep1[4] = {2, 1, -1, 0}, ep2[4] = {0, 0, 3, 2}, batch[8] = {2, 1, -1, 0, 0, 0, 3, 2};

    /* SGD, entropy bonus beta: delta = lr ((R - b) grad log p + beta grad H) */
    rf_reinforce_opts ro;
    rf_reinforce_opts_default(&ro);
    ro.optimizer = RF_CTRL_SGD;
    ro.lr = 0.05;
    ro.entropy_weight = 0.02;
    ro.baseline_init = 0.3;
    ro.baseline_decay = 0.9;
    rf_reinforce *r = rf_reinforce_create(c, &ro, &e);
    fd_grad(c, ep1, 1, 0, gl);
    fd_grad(c, ep1, 0, 1, gh);
    double R = 0.8;
    assert_int_equal(rf_reinforce_update(r, 1, ep1, &R, NULL, &e), RF_OK);
    double maxerr = 0, maxstep = 0;
    for (size_t j = 0; j < np; j++) {
        double want = th0[j] + 0.05 * ((0.8 - 0.3) * gl[j] + 0.02 * gh[j]);
        maxerr = fmax(maxerr, fabs(rf_controller_params(c)[j] - want));
        maxstep = fmax(maxstep, fabs(want - th0[j]));
    }
    printf("  SGD step: max |theta - (theta0 + lr((R-b) dlogp + beta dH))| = %.2e (step up to %.3f)\n", maxerr, maxstep);
    assert_true(maxstep > 1e-3);
    assert_true(maxerr < 1e-10);
    assert_true(fabs(rf_reinforce_baseline(r) - (0.9 * 0.3 + 0.1 * 0.8)) < 1e-15);
    rf_reinforce_free(r);

    /* a batch of two: the mean of the two episodes' terms, both against the same baseline */
    memcpy(rf_controller_params(c), th0, np * sizeof(double));
    r = rf_reinforce_create(c, &ro, &e);
    fd_grad(c, ep1, 0.8 - 0.3, 0.02, g);
    fd_grad(c, ep2, 0.1 - 0.3, 0.02, g2);
    const double Rb[2] = {0.8, 0.1};
    rf_reinforce_info info;
    assert_int_equal(rf_reinforce_update(r, 2, batch, Rb, &info, &e), RF_OK);
    maxerr = 0;
    double gn = 0;
    for (size_t j = 0; j < np; j++) {
        double gm = 0.5 * (g[j] + g2[j]);
        gn += gm * gm;
        maxerr = fmax(maxerr, fabs(rf_controller_params(c)[j] - (th0[j] + 0.05 * gm)));
    }
    assert_true(maxerr < 1e-10);
    assert_true(fabs(info.grad_norm - sqrt(gn)) < 1e-8 * sqrt(gn));
    assert_true(fabs(info.mean_reward - 0.45) < 1e-15);
    assert_true(fabs(rf_reinforce_baseline(r) - (0.9 * (0.9 * 0.3 + 0.1 * 0.8) + 0.1 * 0.1)) < 1e-15);
    rf_reinforce_free(r);

    /* Adam, two steps, by hand from finite-difference gradients */
    memcpy(rf_controller_params(c), th0, np * sizeof(double));
    ro.optimizer = RF_CTRL_ADAM;
    ro.lr = 0.01;
    ro.entropy_weight = 0;
    ro.baseline_init = NAN; /* C/2 = 0.5 */
    r = rf_reinforce_create(c, &ro, &e);
    double *m = calloc(np, sizeof(double)), *v = calloc(np, sizeof(double)), *want = malloc(np * sizeof(double));
    memcpy(want, th0, np * sizeof(double));
    const double b1 = 0.9, b2 = 0.999, rs[2] = {0.9, 0.2};
    double base = 0.5;
    for (int step = 1; step <= 2; step++) {
        const int *ep = step == 1 ? ep1 : ep2;
        fd_grad(c, ep, rs[step - 1] - base, 0, g);
        assert_int_equal(rf_reinforce_update(r, 1, ep, &rs[step - 1], NULL, &e), RF_OK);
        maxerr = 0;
        for (size_t j = 0; j < np; j++) {
            m[j] = b1 * m[j] + (1 - b1) * g[j];
            v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
            double mh = m[j] / (1 - pow(b1, step)), vh = v[j] / (1 - pow(b2, step));
            want[j] += 0.01 * mh / (sqrt(vh) + 1e-8);
            maxerr = fmax(maxerr, fabs(rf_controller_params(c)[j] - want[j]));
        }
        printf("  Adam step %d: max |theta - hand| = %.2e\n", step, maxerr);
        /* near-zero gradients make mh/sqrt(vh) sensitive: compare at lr * 1e-4 */
        assert_true(maxerr < 1e-6);
        base = 0.9 * base + 0.1 * rs[step - 1];
    }
    rf_reinforce_free(r);

    /* gradient clipping scales the SGD step to norm lr * clip */
    memcpy(rf_controller_params(c), th0, np * sizeof(double));
    ro.optimizer = RF_CTRL_SGD;
    ro.lr = 1;
    ro.grad_clip = 1e-3;
    ro.baseline_init = 0;
    r = rf_reinforce_create(c, &ro, &e);
    R = 1;
    assert_int_equal(rf_reinforce_update(r, 1, ep1, &R, &info, &e), RF_OK);
    assert_true(info.grad_norm > 1e-3);
    double d2 = 0;
    for (size_t j = 0; j < np; j++) d2 += pow(rf_controller_params(c)[j] - th0[j], 2);
    assert_true(fabs(sqrt(d2) - 1e-3) < 1e-12);
    /* bad input */
    R = NAN;
    assert_int_equal(rf_reinforce_update(r, 1, ep1, &R, NULL, &e), RF_ENONFINITE);
    const int bad[4] = {3, 0, 0, 0};
    R = 1;
    assert_int_equal(rf_reinforce_update(r, 1, bad, &R, NULL, &e), RF_EARG);
    printf("  bad choice: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "slot 0"));
    rf_reinforce_free(r);
    ro.reward_a = 0;
    assert_null(rf_reinforce_create(c, &ro, &e));
    assert_non_null(strstr(e.msg, "reward A"));
    free(m);
    free(v);
    free(want);
    free(th0);
    free(g);
    free(g2);
    free(gl);
    free(gh);
    rf_controller_free(c);
}

/* ---------------------------------------------------------------------------------------
 * sampling follows the policy; greedy decoding; skipped slots
 * --------------------------------------------------------------------------------------- */
static int skip_odd_when_first_zero(void *ctx, int slot, const int *choice) {
    (void)ctx;
    return !(slot == 2 && choice[0] == 0);
}

static void test_sampling_matches_policy(void **state) {
    (void)state;
    rf_err e = {0};
    const int nch[3] = {3, 4, 2};
    rf_controller_opts co;
    rf_controller_opts_default(&co);
    co.hidden = 8;
    co.init_scale = 1.0;
    rf_controller *c = rf_controller_create(3, nch, &co, 5, &e);
    assert_non_null(c);
    /* P(first two choices) from log p, summed over the last slot */
    enum { N = 40000 };
    int count[3][4] = {{0}};
    rf_rng rng;
    rf_rng_seed(&rng, 9);
    int ch[3];
    for (int n = 0; n < N; n++) {
        double lp, lp2;
        assert_int_equal(rf_controller_sample(c, &rng, skip_odd_when_first_zero, NULL, ch, &lp, NULL, &e), RF_OK);
        assert_true((ch[0] == 0) == (ch[2] == -1));
        if (n < 50) { /* the returned log p is the episode's */
            assert_int_equal(rf_controller_logprob(c, ch, &lp2, NULL, &e), RF_OK);
            assert_true(fabs(lp - lp2) < 1e-12);
        }
        count[ch[0]][ch[1]]++;
    }
    double maxz = 0, tot = 0;
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++) {
            double p = 0, lp;
            if (a == 0) {
                int x[3] = {a, b, -1};
                rf_controller_logprob(c, x, &lp, NULL, &e);
                p = exp(lp);
            } else {
                for (int d = 0; d < 2; d++) {
                    int x[3] = {a, b, d};
                    rf_controller_logprob(c, x, &lp, NULL, &e);
                    p += exp(lp);
                }
            }
            tot += p;
            double z = (count[a][b] - N * p) / sqrt(N * p * (1 - p));
            maxz = fmax(maxz, fabs(z));
        }
    printf("  sampling: total probability %.12f, max |z| over 12 cells = %.2f\n", tot, maxz);
    assert_true(fabs(tot - 1) < 1e-12);
    assert_true(maxz < 4.5);
    /* greedy: the most likely choice at each step */
    assert_int_equal(rf_controller_sample(c, NULL, NULL, NULL, ch, NULL, NULL, &e), RF_OK);
    double best = -INFINITY, lpg;
    int arg = -1;
    for (int a = 0; a < 3; a++) {
        int x[3] = {a, 0, 0};
        double lp;
        rf_controller_logprob(c, x, &lp, NULL, &e);
        if (lp > best) best = lp, arg = a;
    }
    assert_int_equal(ch[0], arg);
    assert_int_equal(rf_controller_logprob(c, ch, &lpg, NULL, &e), RF_OK);
    /* bad options */
    co.hidden = 0;
    assert_null(rf_controller_create(3, nch, &co, 1, &e));
    assert_non_null(strstr(e.msg, "hidden"));
    co.hidden = 4;
    const int badn[2] = {2, 0};
    assert_null(rf_controller_create(2, badn, &co, 1, &e));
    assert_non_null(strstr(e.msg, "slot 1"));
    co.temperature = 0;
    assert_null(rf_controller_create(3, nch, &co, 1, &e));
    assert_non_null(strstr(e.msg, "temperature"));
    rf_controller_free(c);
}

/* ---------------------------------------------------------------------------------------
 * learning: a multi-decision bandit; x = number of decisions equal to the target's
 * --------------------------------------------------------------------------------------- */
static void train_bandit(uint64_t seed, int updates, double *p_target, int *greedy_ok, double *theta_sum) {
    rf_err e = {0};
    const int nch[4] = {4, 3, 5, 4}, target[4] = {2, 0, 3, 1};
    rf_controller_opts co;
    rf_controller_opts_default(&co);
    co.hidden = 16;
    rf_controller *c = rf_controller_create(4, nch, &co, seed, &e);
    rf_reinforce_opts ro;
    rf_reinforce_opts_default(&ro);
    ro.reward_a = 3; /* threshold 2 matches; R(4) = 0.998, R(1) = 0.047 */
    ro.reward_b = 6;
    rf_reinforce *r = rf_reinforce_create(c, &ro, &e); /* Adam lr 0.01, baseline decay 0.9 */
    assert_non_null(r);
    rf_rng rng;
    rf_rng_seed(&rng, seed * 7 + 1);
    int ch[4];
    for (int u = 0; u < updates; u++) {
        assert_int_equal(rf_controller_sample(c, &rng, NULL, NULL, ch, NULL, NULL, &e), RF_OK);
        int x = 0;
        for (int k = 0; k < 4; k++) x += ch[k] == target[k];
        double R = rf_reinforce_reward(r, x);
        assert_int_equal(rf_reinforce_update(r, 1, ch, &R, NULL, &e), RF_OK);
    }
    double lp;
    assert_int_equal(rf_controller_logprob(c, target, &lp, NULL, &e), RF_OK);
    *p_target = exp(lp);
    assert_int_equal(rf_controller_sample(c, NULL, NULL, NULL, ch, NULL, NULL, &e), RF_OK);
    *greedy_ok = !memcmp(ch, target, sizeof ch);
    *theta_sum = 0;
    for (size_t j = 0; j < rf_controller_n_params(c); j++) *theta_sum += rf_controller_params(c)[j] * (double)(j % 7 + 1);
    rf_reinforce_free(r);
    rf_controller_free(c);
}

static void test_learns_bandit(void **state) {
    (void)state;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        double p0, p, ts, ts2;
        int g0, g, g2;
        train_bandit(seed, 0, &p0, &g0, &ts);
        train_bandit(seed, 300, &p, &g, &ts);
        train_bandit(seed, 300, &p, &g2, &ts2);
        printf("  bandit (4 decisions, 240 combinations) seed %d: P(best) %.4f before, %.4f after 300 updates; greedy %s\n",
               (int)seed, p0, p, g ? "= best" : "!= best");
        assert_true(p0 < 0.02);
        assert_true(p > 0.9);
        assert_true(g);
        assert_true(ts == ts2 && g == g2); /* deterministic */
    }
}

/* ---------------------------------------------------------------------------------------
 * decisions of a search space
 * --------------------------------------------------------------------------------------- */
static const char *SPACE =
    "{\"parameters\": ["
    "{\"name\": \"lr\", \"type\": \"float\", \"low\": 1e-4, \"high\": 1e-1, \"log\": true},"
    "{\"name\": \"frac\", \"type\": \"float\", \"low\": 0, \"high\": 0.5},"
    "{\"name\": \"blocks\", \"type\": \"int\", \"low\": 2, \"high\": 8},"
    "{\"name\": \"width\", \"type\": \"int\", \"low\": 8, \"high\": 1000, \"log\": true},"
    "{\"name\": \"steps\", \"type\": \"int\", \"low\": 0, \"high\": 100000},"
    "{\"name\": \"flow\", \"type\": \"categorical\", \"choices\": [\"realnvp\", \"nsf\", \"maf\"]},"
    "{\"name\": \"bins\", \"type\": \"int\", \"low\": 4, \"high\": 16, \"condition\": {\"parent\": \"flow\", \"values\": [\"nsf\"]}},"
    "{\"name\": \"tail\", \"type\": \"float\", \"low\": 1, \"high\": 5, \"condition\": {\"parent\": \"bins\", \"values\": [4, 5, 6]}},"
    "{\"name\": \"order\", \"type\": \"int\", \"low\": 1, \"high\": 40, \"condition\": {\"parent\": \"blocks\", \"values\": [2, 3]}}"
    "]}";

static void test_space_decisions(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_parse(SPACE, "test", &e);
    assert_non_null(sp);
    rf_controller_opts co;
    rf_controller_opts_default(&co);
    co.bins = 10;
    co.max_int_choices = 16;
    rf_ctrl_space *m = rf_ctrl_space_create(sp, &co, &e);
    assert_non_null(m);
    const int *nch = rf_ctrl_space_n_choices(m);
    assert_int_equal(rf_ctrl_space_n_slots(m), 9);
    assert_int_equal(nch[0], 10); /* float log: bins */
    assert_int_equal(nch[1], 10);
    assert_int_equal(nch[2], 7);  /* int 2..8: by value */
    assert_true(nch[3] >= 9 && nch[3] <= 10); /* wide log int: groups of integers */
    assert_int_equal(nch[4], 10);
    assert_int_equal(nch[5], 3);
    assert_int_equal(nch[6], 13); /* 4..16 */
    assert_int_equal(nch[7], 10);
    assert_true(nch[8] >= 9 && nch[8] <= 10); /* 1..40 > 16 values: bins */
    printf("  decisions per parameter:");
    for (int i = 0; i < 9; i++) printf(" %s %d", sp->p[i].name, nch[i]);
    printf("\n");
    /* every integer of a wide int encodes to a group whose decoded values contain it */
    rf_config c, d;
    rf_config_init(&d, sp, &e);
    assert_int_equal(rf_config_default(sp, &c, &e), RF_OK);
    int ch[9], ch2[9], prev = -1;
    for (int w = 8; w <= 1000; w++) {
        c.v[3] = w;
        assert_int_equal(rf_ctrl_space_encode(m, &c, ch, &e), RF_OK);
        assert_true(ch[3] == prev || ch[3] == prev + 1); /* contiguous, ordered groups, none empty */
        prev = ch[3];
    }
    assert_int_equal(prev, nch[3] - 1);
    /* sampling: valid configurations, decisions exactly where parameters are active, and the
     * decoded values encode back to the same decisions */
    rf_controller *ctl = rf_controller_create(9, nch, &co, 3, &e);
    assert_non_null(ctl);
    rf_rng rng;
    rf_rng_seed(&rng, 17);
    int seen_tail = 0, seen_order = 0, seen_no_bins = 0;
    for (int n = 0; n < 3000; n++) {
        double lp, lp2;
        assert_int_equal(rf_ctrl_space_sample(m, ctl, &rng, &c, ch, &lp, NULL, &e), RF_OK);
        assert_int_equal(rf_config_check(sp, &c, &e), RF_OK);
        for (int i = 0; i < 9; i++) assert_true((ch[i] >= 0) == (c.active[i] != 0));
        assert_int_equal(rf_ctrl_space_encode(m, &c, ch2, &e), RF_OK);
        assert_memory_equal(ch, ch2, sizeof ch);
        assert_int_equal(rf_controller_logprob(ctl, ch, &lp2, NULL, &e), RF_OK);
        assert_true(fabs(lp - lp2) < 1e-12);
        /* decode with another rng: same decisions, values in the same bins */
        assert_int_equal(rf_ctrl_space_decode(m, ch, &rng, &d, &e), RF_OK);
        assert_int_equal(rf_config_check(sp, &d, &e), RF_OK);
        assert_int_equal(rf_ctrl_space_encode(m, &d, ch2, &e), RF_OK);
        assert_memory_equal(ch, ch2, sizeof ch);
        seen_tail += c.active[7];
        seen_order += c.active[8];
        seen_no_bins += !c.active[6];
    }
    printf("  conditional parameters active: tail %d, order %d, bins inactive %d of 3000\n", seen_tail, seen_order,
           seen_no_bins);
    assert_true(seen_tail > 50 && seen_order > 300 && seen_no_bins > 1000);
    /* greedy + bin centres: deterministic */
    assert_int_equal(rf_ctrl_space_sample(m, ctl, NULL, &c, ch, NULL, NULL, &e), RF_OK);
    assert_int_equal(rf_ctrl_space_sample(m, ctl, NULL, &d, ch2, NULL, NULL, &e), RF_OK);
    assert_true(rf_config_equal(&c, &d));
    /* errors */
    rf_config_free(&c);
    assert_int_equal(rf_config_default(sp, &c, &e), RF_OK); /* (re-initialises c) */
    c.v[2] = 9;
    assert_int_equal(rf_ctrl_space_encode(m, &c, ch, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "blocks"));
    ch[0] = 10;
    assert_int_equal(rf_ctrl_space_decode(m, ch, NULL, &c, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "lr"));
    rf_controller_free(ctl);
    rf_config_free(&c);
    rf_config_free(&d);
    rf_ctrl_space_free(m);
    rf_space_free(sp);
}

/* ---------------------------------------------------------------------------------------
 * the rl sampler
 * --------------------------------------------------------------------------------------- */
/* 8 categorical decisions of 4 choices (65536 combinations) and one float; minimise
 * f = (number of decisions != target) + (y - 0.3)^2. */
static rf_space *bandit_space(void) {
    char buf[2048] = "{\"parameters\": [";
    for (int k = 0; k < 8; k++)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf),
                 "{\"name\": \"d%d\", \"type\": \"categorical\", \"choices\": [\"a\", \"b\", \"c\", \"d\"]},", k);
    strcat(buf, "{\"name\": \"y\", \"type\": \"float\", \"low\": 0, \"high\": 1}]}");
    rf_err e = {0};
    rf_space *sp = rf_space_parse(buf, "bandit", &e);
    assert_non_null(sp);
    return sp;
}
static double bandit_f(const rf_config *c) {
    static const int target[8] = {1, 3, 0, 2, 2, 1, 0, 3};
    double f = 0;
    for (int k = 0; k < 8; k++) f += (int)c->v[k] != target[k];
    return f + (c->v[8] - 0.3) * (c->v[8] - 0.3);
}

/* Runs n trials of sampler s on an in-memory history; returns the best value. */
static double run_bandit(rf_sampler *s, const rf_space *sp, int n, uint64_t seed, rf_trial *tr) {
    rf_err e = {0};
    const rf_trial **items = malloc(sizeof *items * (size_t)n);
    rf_history h = {.n = 0, .items = items, .n_objectives = 1, .directions = {RF_MINIMIZE}};
    double best = INFINITY;
    for (int i = 0; i < n; i++) {
        rf_rng rng;
        rf_rng_seed(&rng, seed * 100003 + (uint64_t)i);
        memset(&tr[i], 0, sizeof tr[i]);
        rf_config_init(&tr[i].cfg, sp, &e);
        assert_int_equal(rf_sampler_sample(s, sp, &h, &rng, &tr[i].cfg, &e), RF_OK);
        tr[i].number = i;
        tr[i].status = RF_TRIAL_COMPLETE;
        tr[i].n_values = 1;
        tr[i].values[0] = bandit_f(&tr[i].cfg);
        best = fmin(best, tr[i].values[0]);
        items[i] = &tr[i];
        h.n = i + 1;
    }
    free(items);
    return best;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_rl_sampler_learns(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = bandit_space();
    enum { N = 200, SEEDS = 7 };
    rf_trial *tr = calloc(N, sizeof *tr);
    double brl[SEEDS], brd[SEEDS], late_rl = 0, late_rd = 0;
    for (int sd = 0; sd < SEEDS; sd++) {
        rf_rl_opts o;
        rf_rl_opts_default(&o);
        o.seed = (uint64_t)sd;
        rf_sampler *rl = rf_sampler_rl_create(&o, &e), *rd = rf_sampler_create("random", &e);
        assert_non_null(rl);
        assert_string_equal(rf_sampler_name(rl), "rl");
        brl[sd] = run_bandit(rl, sp, N, 50 + (uint64_t)sd, tr);
        for (int i = N - 50; i < N; i++) late_rl += tr[i].values[0] / (50.0 * SEEDS);
        for (int i = 0; i < N; i++) rf_config_free(&tr[i].cfg);
        brd[sd] = run_bandit(rd, sp, N, 50 + (uint64_t)sd, tr);
        for (int i = N - 50; i < N; i++) late_rd += tr[i].values[0] / (50.0 * SEEDS);
        for (int i = 0; i < N; i++) rf_config_free(&tr[i].cfg);
        rf_sampler_free(rl);
        rf_sampler_free(rd);
    }
    qsort(brl, SEEDS, sizeof(double), cmp_d);
    qsort(brd, SEEDS, sizeof(double), cmp_d);
    printf("  rl vs random, 8 decisions x 4 + 1 float, %d trials x %d seeds: median best %.3f vs %.3f; mean of the last 50 "
           "trials %.3f vs %.3f\n",
           N, SEEDS, brl[SEEDS / 2], brd[SEEDS / 2], late_rl, late_rd);
    assert_true(brl[SEEDS / 2] < brd[SEEDS / 2]);
    assert_true(late_rl < late_rd - 1.0);
    free(tr);
    rf_space_free(sp);
}

/* The policy is a function of the history: a fresh sampler (replaying everything) draws what a
 * sampler that followed the study incrementally draws; a history that changes in the middle is
 * replayed from the start. */
static void test_rl_sampler_replay(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = bandit_space();
    enum { N = 60 };
    rf_trial *tr = calloc(N, sizeof *tr);
    rf_rl_opts o;
    rf_rl_opts_default(&o);
    o.seed = 4;
    o.batch = 3;
    rf_sampler *a = rf_sampler_rl_create(&o, &e);
    run_bandit(a, sp, N, 9, tr);
    const rf_trial *items[N];
    for (int i = 0; i < N; i++) items[i] = &tr[i];
    rf_history h = {.n = N, .items = items, .n_objectives = 1, .directions = {RF_MINIMIZE}};
    rf_config c1, c2;
    rf_config_init(&c1, sp, &e);
    rf_config_init(&c2, sp, &e);
    for (int rep = 0; rep < 3; rep++) {
        rf_sampler *b = rf_sampler_rl_create(&o, &e);
        rf_rng r1, r2;
        rf_rng_seed(&r1, 77 + (uint64_t)rep);
        rf_rng_seed(&r2, 77 + (uint64_t)rep);
        assert_int_equal(rf_sampler_sample(a, sp, &h, &r1, &c1, &e), RF_OK);
        assert_int_equal(rf_sampler_sample(b, sp, &h, &r2, &c2, &e), RF_OK);
        assert_true(rf_config_equal(&c1, &c2));
        rf_sampler_free(b);
        /* change a trial in the middle: both must replay it */
        tr[20 + rep].values[0] += 3;
    }
    /* failed trials: reward 0 (the same as a very bad value) */
    tr[30].status = RF_TRIAL_FAILED;
    rf_sampler *b = rf_sampler_rl_create(&o, &e);
    rf_rng r1, r2;
    rf_rng_seed(&r1, 5);
    rf_rng_seed(&r2, 5);
    assert_int_equal(rf_sampler_sample(a, sp, &h, &r1, &c1, &e), RF_OK);
    assert_int_equal(rf_sampler_sample(b, sp, &h, &r2, &c2, &e), RF_OK);
    assert_true(rf_config_equal(&c1, &c2));
    rf_sampler_free(b);
    /* fewer complete trials than n_calibrate: the initial policy (no update) */
    rf_sampler *fresh = rf_sampler_rl_create(&o, &e);
    rf_history h0 = {.n = 9, .items = items, .n_objectives = 1, .directions = {RF_MINIMIZE}};
    rf_history hz = {.n = 0, .items = items, .n_objectives = 1, .directions = {RF_MINIMIZE}};
    rf_rng_seed(&r1, 6);
    rf_rng_seed(&r2, 6);
    assert_int_equal(rf_sampler_sample(a, sp, &h0, &r1, &c1, &e), RF_OK);
    assert_int_equal(rf_sampler_sample(fresh, sp, &hz, &r2, &c2, &e), RF_OK);
    assert_true(rf_config_equal(&c1, &c2));
    rf_sampler_free(fresh);
    /* options */
    o.batch = 0;
    assert_null(rf_sampler_rl_create(&o, &e));
    assert_non_null(strstr(e.msg, "batch"));
    rf_rl_opts_default(&o);
    o.ctrl.hidden = -1;
    assert_null(rf_sampler_rl_create(&o, &e));
    assert_non_null(strstr(e.msg, "hidden"));
    rf_sampler *byname = rf_sampler_create_strategy("rl", &e);
    assert_non_null(byname);
    rf_sampler_free(byname);
    rf_config_free(&c1);
    rf_config_free(&c2);
    for (int i = 0; i < N; i++) rf_config_free(&tr[i].cfg);
    free(tr);
    rf_sampler_free(a);
    rf_space_free(sp);
}

/* Through a study file: a study stopped after 25 trials and resumed by a new process-like
 * handle and sampler gives exactly the trials of an uninterrupted study. */
static int bandit_obj(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r, rf_err *e) {
    (void)ctx;
    (void)st;
    (void)e;
    r->status = RF_TRIAL_COMPLETE;
    r->values[0] = bandit_f(&t->cfg);
    if ((int)t->cfg.v[0] == 2 && (int)t->cfg.v[1] == 2) { /* some configurations fail */
        r->status = RF_TRIAL_FAILED;
        snprintf(r->reason, sizeof r->reason, "synthetic failure");
    }
    return RF_OK;
}

static void run_study(const char *path, rf_space *sp, int total, int stop_at) {
    rf_err e = {0};
    rf_study_def d = {.name = "rl", .space = sp, .n_objectives = 1, .objectives = {{"f", RF_MINIMIZE}}, .sampler = "rl",
                      .seed = 3};
    for (int part = 0; part < 2; part++) {
        rf_study *st = rf_study_open(path, &d, &e);
        assert_non_null(st);
        rf_rl_opts o;
        rf_rl_opts_default(&o);
        o.seed = rf_study_seed(st);
        rf_sampler *s = rf_sampler_rl_create(&o, &e);
        rf_optimize_opts oo;
        rf_optimize_opts_default(&oo);
        oo.max_total = part == 0 && stop_at > 0 ? stop_at : total;
        oo.progress = 0;
        rf_optimize_result res;
        assert_int_equal(rf_study_optimize(st, s, bandit_obj, NULL, &oo, &res, &e), RF_OK);
        rf_sampler_free(s);
        rf_study_close(st);
        if (stop_at <= 0) break;
    }
}

static void test_rl_study_resume(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = bandit_space();
    char p1[256], p2[256];
    rf_test_tmp(p1, sizeof p1, "rl-whole.db");
    rf_test_tmp(p2, sizeof p2, "rl-resumed.db");
    unlink(p1);
    unlink(p2);
    const double t0 = rf_now();
    run_study(p1, sp, 60, 0);
    run_study(p2, sp, 60, 25);
    rf_study *a = rf_study_open(p1, NULL, &e), *b = rf_study_open(p2, NULL, &e);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(rf_study_refresh(a, &e), RF_OK);
    assert_int_equal(rf_study_refresh(b, &e), RF_OK);
    assert_int_equal(rf_study_n_finished(a), 60);
    assert_int_equal(rf_study_n_finished(b), 60);
    int failed = 0;
    for (int i = 0; i < 60; i++) {
        const rf_trial *x = rf_study_finished(a, i), *y = rf_study_finished(b, i);
        assert_int_equal(x->number, y->number);
        assert_true(rf_config_equal(&x->cfg, &y->cfg));
        assert_int_equal(x->status, y->status);
        failed += x->status == RF_TRIAL_FAILED;
        if (i > 0) assert_string_equal(x->sampler, "rl");
    }
    printf("  rl study of 60 trials (%d failed), resumed after 25: identical trials (%.2fs for both)\n", failed,
           rf_now() - t0);
    rf_study_close(a);
    rf_study_close(b);
    unlink(p1);
    unlink(p2);
    char side[300];
    snprintf(side, sizeof side, "%s-wal", p1);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p1);
    unlink(side);
    snprintf(side, sizeof side, "%s-wal", p2);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", p2);
    unlink(side);
    rf_space_free(sp);
}

/* Sampler overhead with a few hundred trials in the history (incremental and full replay). */
static void test_rl_overhead(void **state) {
    (void)state;
    rf_err e = {0};
    rf_space *sp = rf_space_default_training(&e), *ar = rf_space_default_architecture(&e);
    rf_space *full = rf_space_concat(sp, ar, "all", &e);
    assert_non_null(full);
    enum { N = 300 };
    rf_trial *tr = calloc(N, sizeof *tr);
    const rf_trial **items = malloc(sizeof *items * N);
    rf_rng rng;
    rf_rng_seed(&rng, 1);
    for (int i = 0; i < N; i++) {
        rf_config_init(&tr[i].cfg, full, &e);
        rf_space_sample_uniform(full, &rng, &tr[i].cfg);
        tr[i].number = i;
        tr[i].status = RF_TRIAL_COMPLETE;
        tr[i].n_values = 1;
        tr[i].values[0] = rf_rng_normal(&rng);
        items[i] = &tr[i];
    }
    rf_sampler *s = rf_sampler_rl_create(NULL, &e);
    rf_config c;
    rf_config_init(&c, full, &e);
    rf_history h = {.n = N, .items = items, .n_objectives = 1, .directions = {RF_MINIMIZE}};
    double t0 = rf_cpu_seconds();
    assert_int_equal(rf_sampler_sample(s, full, &h, &rng, &c, &e), RF_OK);
    double t_full = rf_cpu_seconds() - t0;
    h.n = N - 1; /* a shorter history: replayed from the start */
    assert_int_equal(rf_sampler_sample(s, full, &h, &rng, &c, &e), RF_OK);
    h.n = N;
    t0 = rf_cpu_seconds();
    assert_int_equal(rf_sampler_sample(s, full, &h, &rng, &c, &e), RF_OK); /* one new trial: one update */
    double t_inc = rf_cpu_seconds() - t0;
    t0 = rf_cpu_seconds();
    for (int k = 0; k < 20; k++) assert_int_equal(rf_sampler_sample(s, full, &h, &rng, &c, &e), RF_OK);
    double t_same = (rf_cpu_seconds() - t0) / 20;
    printf("  rl sampler, %d parameters, %d trials: full replay %.1f ms; one new trial (incremental) %.2f ms; "
           "no new trial %.3f ms\n",
           full->n, N, 1e3 * t_full, 1e3 * t_inc, 1e3 * t_same);
    assert_true(t_full < 2.0);
    assert_true(t_inc < t_full / 10);
    rf_config_free(&c);
    rf_sampler_free(s);
    for (int i = 0; i < N; i++) rf_config_free(&tr[i].cfg);
    free(tr);
    free(items);
    rf_space_free(full);
    rf_space_free(sp);
    rf_space_free(ar);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shaped_reward),
        cmocka_unit_test(test_hand_forward_and_update),
        cmocka_unit_test(test_bptt_finite_differences),
        cmocka_unit_test(test_reinforce_update_definition),
        cmocka_unit_test(test_sampling_matches_policy),
        cmocka_unit_test(test_learns_bandit),
        cmocka_unit_test(test_space_decisions),
        cmocka_unit_test(test_rl_sampler_learns),
        cmocka_unit_test(test_rl_sampler_replay),
        cmocka_unit_test(test_rl_study_resume),
        cmocka_unit_test(test_rl_overhead),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
