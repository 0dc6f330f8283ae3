/* Subject-adaptive latent normalisation (renflow/adapt.h): the adapted log-likelihood against a
 * direct computation, the reference statistics, a held-out subject with another gain, the model
 * file round trip and rejection of damaged fields, and the errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* A class-conditional flow: glow (random LU, so z != x) or a tied tsflow. */
static rf_flow *make_flow(int ts, int D, uint64_t seed) {
    rf_flow_spec s;
    if (ts) {
        rf_err e = {0};
        assert_int_equal(rf_tsflow_spec_default(&s, 2, D / 2, &e), RF_OK);
        s.scales = 2;
        s.blocks = 1;
        s.hidden = 4;
        s.class_tie = 1;
    } else {
        rf_flow_spec_default(&s, RF_FLOW_GLOW, D);
        s.blocks = 2;
        s.hidden = 8;
    }
    s.base = RF_BASE_CLASS;
    s.n_classes = 2;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_err e = {0};
    rf_flow *f = rf_flow_create(&s, &rng, &e);
    assert_non_null(f);
    return f;
}

/* n_s rows per subject, half of each class: class 0 ~ N(0, 1), class 1 ~ N(0, 2^2) per
 * coordinate, then subject s's gain and offset: x = gain_s * v + off_s. */
static void make_data(int S, const int *ids, const double *gain, const double *off, int n_s, int D, uint64_t seed,
                      rf_matrix *x, int **y, int **subj) {
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    x->n = S * n_s;
    x->d = D;
    x->x = malloc(sizeof(float) * (size_t)x->n * D);
    *y = malloc(sizeof(int) * (size_t)x->n);
    *subj = malloc(sizeof(int) * (size_t)x->n);
    for (int s = 0, i = 0; s < S; s++)
        for (int r = 0; r < n_s; r++, i++) {
            const int c = r % 2;
            (*y)[i] = c;
            (*subj)[i] = ids[s];
            for (int j = 0; j < D; j++)
                x->x[(size_t)i * D + j] = (float)(gain[s] * (c ? 2.0 : 1.0) * rf_rng_normal(&rng) + off[s]);
        }
}

static double balanced(const int *y, const int *pred, int n) {
    double hit[2] = {0}, tot[2] = {0};
    for (int i = 0; i < n; i++) {
        tot[y[i]]++;
        hit[y[i]] += pred[i] == y[i];
    }
    return 0.5 * (hit[0] / tot[0] + hit[1] / tot[1]);
}

/* log p(x | c, s) computed directly from rf_flow_forward, per-subject moments in double and the
 * model's class Gaussians; compared with rf_adapt_log_likelihood. */
static void check_formula(int ts) {
    const int D = ts ? 16 : 6, S = 3, n_s = 40;
    const int ids[3] = {7, 3, 11};
    const double gain[3] = {0.5, 1.0, 2.5}, off[3] = {-1.0, 0.0, 3.0};
    rf_flow *f = make_flow(ts, D, 5);
    rf_matrix x;
    int *y, *subj;
    make_data(S, ids, gain, off, n_s, D, 9, &x, &y, &subj);
    rf_err e = {0};
    assert_int_equal(rf_flow_data_init(f, x.n, x.x, &e), RF_OK);
    assert_int_equal(rf_adapt_fit(f, &x, y, subj, &e), RF_OK);
    assert_non_null(f->adapt_mean);
    const int G = rf_adapt_n_groups(f), C = 2, n = x.n;
    assert_int_equal(G, ts ? f->base.n_groups : D);
    if (ts) assert_true(G < D);
    /* direct computation */
    float *z = malloc(sizeof(float) * (size_t)n * D), *ld = malloc(sizeof(float) * (size_t)n);
    rf_flow_ws *w = rf_flow_ws_create(f, n, 1, &e);
    assert_non_null(w);
    rf_flow_forward(f, w, n, x.x, z, ld);
    rf_flow_ws_free(w);
    double *m = calloc((size_t)S * G, sizeof(double)), *v = calloc((size_t)S * G, sizeof(double));
    double *cnt = calloc((size_t)S * G, sizeof(double));
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) {
            const int g = f->base.group ? f->base.group[j] : j, s = i / n_s;
            m[s * G + g] += z[(size_t)i * D + j];
            cnt[s * G + g]++;
        }
    for (int k = 0; k < S * G; k++) m[k] /= cnt[k];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < D; j++) {
            const int g = f->base.group ? f->base.group[j] : j, s = i / n_s;
            const double d = z[(size_t)i * D + j] - m[s * G + g];
            v[s * G + g] += d * d;
        }
    /* the reference is the average of the subjects' statistics */
    for (int g = 0; g < G; g++) {
        double am = 0, al = 0;
        for (int s = 0; s < S; s++) {
            am += m[s * G + g];
            al += 0.5 * log(v[s * G + g] / cnt[s * G + g]);
        }
        assert_true(fabs(am / S - f->adapt_mean[g]) < 1e-4 * (1 + fabs(am / S)));
        assert_true(fabs(al / S - f->adapt_log_scale[g]) < 1e-4);
    }
    float *mu = malloc(sizeof(float) * (size_t)C * D), *ls = malloc(sizeof(float) * (size_t)C * D);
    for (int c = 0; c < C; c++)
        rf_base_class_moments(&f->base, f->params + f->base.offset, c, mu + (size_t)c * D, ls + (size_t)c * D);
    float *lpc = malloc(sizeof(float) * (size_t)n * C), *lpx = malloc(sizeof(float) * (size_t)n);
    assert_int_equal(rf_adapt_log_likelihood(f, &x, subj, lpc, lpx, &e), RF_OK);
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const int s = i / n_s;
        double lc[2];
        for (int c = 0; c < C; c++) {
            double t = ld[i];
            for (int j = 0; j < D; j++) {
                const int g = f->base.group ? f->base.group[j] : j;
                const double lsd = 0.5 * log(v[s * G + g] / cnt[s * G + g]);
                const double zz = f->adapt_mean[g] + exp(f->adapt_log_scale[g] - lsd) * (z[(size_t)i * D + j] - m[s * G + g]);
                const double u = (zz - mu[c * D + j]) * exp(-ls[c * D + j]);
                t += -0.5 * u * u - ls[c * D + j] - 0.5 * log(2 * M_PI) + f->adapt_log_scale[g] - lsd;
            }
            lc[c] = t;
            const double err = fabs(t - lpc[(size_t)i * C + c]) / (1 + fabs(t));
            if (err > worst) worst = err;
        }
        const double mx = fmax(lc[0], lc[1]), px = mx + log(exp(lc[0] - mx) + exp(lc[1] - mx)) - log(2.0);
        const double err = fabs(px - lpx[i]) / (1 + fabs(px));
        if (err > worst) worst = err;
    }
    print_message("adapted log-likelihood (%s, G=%d): max rel. error vs direct %.3g\n", ts ? "tsflow" : "glow", G, worst);
    assert_true(worst < 2e-5);
    /* the refitted class Gaussians: class 1 is wider than class 0 in every group */
    for (int j = 0; j < D; j++) assert_true(ls[D + j] > ls[j] + 0.3);
    free(m);
    free(v);
    free(cnt);
    free(mu);
    free(ls);
    free(lpc);
    free(lpx);
    free(z);
    free(ld);
    free(x.x);
    free(y);
    free(subj);
    rf_flow_free(f);
}

static void test_formula_dense(void **st) {
    (void)st;
    check_formula(0);
}

static void test_formula_tsflow(void **st) {
    (void)st;
    check_formula(1);
}

/* A new subject recorded with 3x the gain and an offset: without adaptation every row looks like
 * the wide class; with it the classes are found again. */
static void test_new_subject(void **st) {
    (void)st;
    const int D = 6;
    const int ids[4] = {0, 1, 2, 3};
    const double gain[4] = {0.8, 1.0, 1.25, 3.0}, off[4] = {0.5, 0.0, -0.5, 2.0};
    rf_matrix all;
    int *y, *subj;
    make_data(4, ids, gain, off, 300, D, 21, &all, &y, &subj);
    rf_matrix tr = {.n = 900, .d = D, .x = all.x}, te = {.n = 300, .d = D, .x = all.x + (size_t)900 * D};
    rf_flow *f = make_flow(0, D, 3);
    rf_err e = {0};
    assert_int_equal(rf_flow_data_init(f, tr.n, tr.x, &e), RF_OK);
    assert_int_equal(rf_adapt_fit(f, &tr, y, subj, &e), RF_OK);
    int *pred = malloc(sizeof(int) * 900);
    assert_int_equal(rf_flow_predict(f, &te, NULL, pred, NULL, &e), RF_OK); /* reference subject assumed */
    const double plain = balanced(y + 900, pred, 300);
    assert_int_equal(rf_flow_predict_subjects(f, &te, subj + 900, NULL, pred, NULL, &e), RF_OK);
    const double adapted = balanced(y + 900, pred, 300);
    assert_int_equal(rf_flow_predict_subjects(f, &tr, subj, NULL, pred, NULL, &e), RF_OK);
    const double train_bal = balanced(y, pred, 900);
    print_message("held-out subject, gain 3: balanced accuracy %.3f without adaptation, %.3f with (training %.3f)\n",
                  plain, adapted, train_bal);
    assert_true(plain < 0.6);
    assert_true(adapted > 0.8);
    assert_true(train_bal > 0.8);
    /* rf_adapt_nll agrees with the per-row values and the marginal of the class likelihoods */
    float *per = malloc(sizeof(float) * 300);
    const double nll = rf_adapt_nll(f, &te, NULL, subj + 900, per, &e);
    double s = 0;
    for (int i = 0; i < 300; i++) s += per[i];
    assert_true(isfinite(nll));
    assert_true(fabs(nll + s / 300) < 1e-6 * (1 + fabs(nll)));
    free(per);
    free(pred);
    free(all.x);
    free(y);
    free(subj);
    rf_flow_free(f);
}

/* Replaces the header JSON of a model file image and reseals its length and checksum. */
static unsigned char *reseal(const unsigned char *buf, size_t len, const char *json, size_t *out_len) {
    const uint32_t jl = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 | (uint32_t)buf[14] << 16 | (uint32_t)buf[15] << 24;
    const size_t nl = strlen(json), body = len - 32 - 16 - jl;
    unsigned char *o = malloc(16 + nl + body + 32);
    memcpy(o, buf, 12);
    for (int i = 0; i < 4; i++) o[12 + i] = (unsigned char)(nl >> (8 * i));
    memcpy(o + 16, json, nl);
    memcpy(o + 16 + nl, buf + 16 + jl, body);
    rf_sha256(o, 16 + nl + body, o + 16 + nl + body);
    *out_len = 16 + nl + body + 32;
    return o;
}

static void test_file(void **st) {
    (void)st;
    const int D = 6;
    const int ids[3] = {0, 1, 2};
    const double gain[3] = {1, 2, 0.5}, off[3] = {0, 1, -1};
    rf_matrix x;
    int *y, *subj;
    make_data(3, ids, gain, off, 30, D, 4, &x, &y, &subj);
    rf_flow *f = make_flow(0, D, 8);
    rf_err e = {0};
    assert_int_equal(rf_adapt_fit(f, &x, y, subj, &e), RF_OK);
    unsigned char *buf;
    size_t len;
    assert_int_equal(rf_flow_to_bytes(f, &buf, &len, &e), RF_OK);
    assert_int_equal(buf[8], 2); /* format version 2: the adapted model's field */
    unsigned char *plain;
    size_t plain_len;
    rf_flow *h0 = make_flow(0, D, 8);
    assert_int_equal(rf_flow_to_bytes(h0, &plain, &plain_len, &e), RF_OK);
    assert_int_equal(plain[8], 1); /* a model without it stays version 1 */
    free(plain);
    rf_flow_free(h0);
    rf_flow *g = rf_flow_load_mem(buf, len, "adapted.rf", &e);
    assert_non_null(g);
    assert_non_null(g->adapt_mean);
    assert_memory_equal(g->adapt_mean, f->adapt_mean, sizeof(float) * D);
    assert_memory_equal(g->adapt_log_scale, f->adapt_log_scale, sizeof(float) * D);
    float *a = malloc(sizeof(float) * (size_t)x.n * 2), *b = malloc(sizeof(float) * (size_t)x.n * 2);
    assert_int_equal(rf_adapt_log_likelihood(f, &x, subj, a, NULL, &e), RF_OK);
    assert_int_equal(rf_adapt_log_likelihood(g, &x, subj, b, NULL, &e), RF_OK);
    assert_memory_equal(a, b, sizeof(float) * (size_t)x.n * 2);
    rf_flow_free(g);
    /* damaged subject_adapt fields are rejected by name */
    const uint32_t jl = (uint32_t)buf[12] | (uint32_t)buf[13] << 8 | (uint32_t)buf[14] << 16 | (uint32_t)buf[15] << 24;
    char *js = malloc(jl + 1);
    memcpy(js, buf + 16, jl);
    js[jl] = 0;
    static const char *const bad[][2] = {{"\"groups\":6", "\"groups\":5"},
                                         {"\"subject_adapt\":{", "\"subject_adapt\":{\"x\":1,\"mean\":[1],"},
                                         {"\"log_scale\":[", "\"log_scale\":[\"a\","}};
    static const char *const want[] = {"subject_adapt.groups", "subject_adapt.mean", "subject_adapt.log_scale"};
    for (int k = 0; k < 3; k++) {
        char *p = strstr(js, bad[k][0]);
        assert_non_null(p);
        const size_t nl = jl + strlen(bad[k][1]) - strlen(bad[k][0]);
        char *nj = malloc(nl + 1);
        const size_t pre = (size_t)(p - js);
        memcpy(nj, js, pre);
        strcpy(nj + pre, bad[k][1]);
        strcat(nj, p + strlen(bad[k][0]));
        size_t ml;
        unsigned char *mb = reseal(buf, len, nj, &ml);
        rf_err le = {0};
        rf_flow *h = rf_flow_load_mem(mb, ml, "damaged.rf", &le);
        print_message("damaged %d: %s\n", k, le.msg);
        assert_null(h);
        assert_non_null(strstr(le.msg, want[k]));
        assert_non_null(strstr(le.msg, "damaged.rf"));
        free(mb);
        free(nj);
    }
    /* the field in a version-1 file is refused */
    {
        size_t ml;
        unsigned char *v1 = malloc(len);
        memcpy(v1, buf, len);
        v1[8] = 1;
        unsigned char *mb = reseal(v1, len, js, &ml);
        rf_err le = {0};
        assert_null(rf_flow_load_mem(mb, ml, "v1.rf", &le));
        assert_non_null(strstr(le.msg, "version"));
        free(mb);
        free(v1);
    }
    free(js);
    free(buf);
    free(a);
    free(b);
    free(x.x);
    free(y);
    free(subj);
    rf_flow_free(f);
}

static void test_errors(void **st) {
    (void)st;
    const int D = 6;
    const int ids[3] = {4, 5, 6};
    const double gain[3] = {1, 1, 1}, off[3] = {0, 0, 0};
    rf_matrix x;
    int *y, *subj;
    make_data(3, ids, gain, off, 10, D, 2, &x, &y, &subj);
    rf_flow *f = make_flow(0, D, 1);
    rf_err e = {0};
    /* a subject with a single row */
    subj[x.n - 1] = 99;
    assert_int_not_equal(rf_adapt_fit(f, &x, y, subj, &e), RF_OK);
    assert_non_null(strstr(e.msg, "subject 99 has 1 row"));
    assert_null(f->adapt_mean);
    subj[x.n - 1] = 6;
    memset(&e, 0, sizeof e);
    assert_int_not_equal(rf_adapt_fit(f, &x, NULL, subj, &e), RF_OK);
    assert_int_not_equal(rf_adapt_fit(f, &x, y, NULL, &e), RF_OK);
    /* an adapted model needs subject ids to classify */
    assert_int_equal(rf_adapt_fit(f, &x, y, subj, &e), RF_OK);
    int *pred = malloc(sizeof(int) * (size_t)x.n);
    memset(&e, 0, sizeof e);
    assert_int_not_equal(rf_flow_predict_subjects(f, &x, NULL, NULL, pred, NULL, &e), RF_OK);
    assert_non_null(strstr(e.msg, "subject ids"));
    /* training again drops the adaptation (it belongs to the old parameters) */
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.epochs = 1;
    tc.batch = 10;
    tc.progress = 0;
    tc.threads = 1;
    rf_train_result r;
    assert_int_equal(rf_train(f, &x, y, NULL, NULL, &tc, &r, &e), RF_OK);
    rf_train_result_free(&r);
    assert_null(f->adapt_mean);
    assert_null(f->adapt_log_scale);
    /* a density model cannot adapt */
    rf_flow_spec s;
    rf_flow_spec_default(&s, RF_FLOW_REALNVP, D);
    rf_rng rng;
    rf_rng_seed(&rng, 1);
    rf_flow *d = rf_flow_create(&s, &rng, &e);
    memset(&e, 0, sizeof e);
    assert_int_not_equal(rf_adapt_fit(d, &x, y, subj, &e), RF_OK);
    assert_non_null(strstr(e.msg, "class-conditional"));
    rf_flow_free(d);
    free(pred);
    free(x.x);
    free(y);
    free(subj);
    rf_flow_free(f);
}

/* Training loss with a per-row latent map, computed independently of the backward path. */
static double affine_loss(rf_flow *f, rf_flow_ws *w, int n, const float *x, const int *y, float ce,
                          const rf_latent_affine *la) {
    const int D = f->D, C = f->base.n_classes;
    float z[64 * 32], ld[64], lpc[64 * 4];
    rf_flow_forward(f, w, n, x, z, ld);
    for (int i = 0; i < n; i++) {
        const int r = la->row[i];
        for (int j = 0; j < D; j++) {
            const int g = f->base.group ? f->base.group[j] : j;
            z[i * D + j] = la->a[r * la->G + g] * z[i * D + j] + la->b[r * la->G + g];
        }
        ld[i] += la->ld[r];
    }
    rf_base_log_prob_classes(&f->base, f->params + f->base.offset, n, z, lpc);
    double L = 0;
    for (int i = 0; i < n; i++) {
        const float *a = lpc + i * C;
        double mx = a[0], s = 0;
        for (int c = 1; c < C; c++) mx = fmax(mx, a[c]);
        for (int c = 0; c < C; c++) s += exp(a[c] - mx);
        L += -(a[y[i]] + ld[i]) + ce * (mx + log(s) - a[y[i]]);
    }
    return L / n;
}

/* rf_flow_loss_grad with a latent map set: loss and gradients against finite differences. */
static void check_affine_grad(int ts) {
    const int D = ts ? 16 : 4, n = 10, C = 2;
    rf_flow *f = make_flow(ts, D, 17);
    rf_rng rng;
    rf_rng_seed(&rng, 3);
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.2f * (float)rf_rng_normal(&rng);
    for (int k = 0; k < f->n_layers; k++)
        if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], f->params + f->layers[k]->offset);
    const int G = rf_adapt_n_groups(f);
    float x[10 * 16], a[3 * 16], b[3 * 16], lda[3];
    int y[10], row[10];
    for (int i = 0; i < n * D; i++) x[i] = (float)rf_rng_normal(&rng);
    for (int i = 0; i < n; i++) {
        y[i] = i % C;
        row[i] = (i * 7) % 3;
    }
    for (int r = 0; r < 3; r++) {
        lda[r] = 0;
        for (int g = 0; g < G; g++) {
            a[r * G + g] = (float)exp(0.4 * rf_rng_normal(&rng));
            b[r * G + g] = (float)(0.5 * rf_rng_normal(&rng));
        }
        for (int j = 0; j < D; j++) lda[r] += logf(a[r * G + (f->base.group ? f->base.group[j] : j)]);
    }
    rf_latent_affine la = {G, row, a, b, lda};
    rf_err e = {0};
    rf_flow_ws *w = rf_flow_ws_create(f, n, 0, &e);
    assert_non_null(w);
    rf_flow_ws_opts io = {.max_batch = n, .threads = 1, .inference = 1};
    rf_flow_ws *wi = rf_flow_ws_create_opts(f, &io, &e);
    assert_int_not_equal(rf_flow_ws_set_latent_affine(wi, &la, &e), RF_OK); /* training workspaces only */
    assert_int_equal(rf_flow_ws_set_latent_affine(w, &la, &e), RF_OK);
    const float ce = 0.5f;
    memset(f->grads, 0, sizeof(float) * f->n_params);
    const double L = rf_flow_loss_grad(f, w, n, x, y, ce), L2 = affine_loss(f, wi, n, x, y, ce, &la);
    assert_true(fabs(L - L2) < 1e-4 * (1 + fabs(L)));
    double num = 0, den = 0;
    for (size_t i = 0; i < f->n_params; i++) {
        const float h = 1e-3f * fmaxf(1.0f, fabsf(f->params[i])), v = f->params[i];
        f->params[i] = v + h;
        const double Lp = affine_loss(f, wi, n, x, y, ce, &la);
        f->params[i] = v - h;
        const double Lm = affine_loss(f, wi, n, x, y, ce, &la);
        f->params[i] = v;
        const double g = (Lp - Lm) / ((double)(v + h) - (double)(v - h));
        num += (g - f->grads[i]) * (g - f->grads[i]);
        den += g * g;
    }
    const double rel = sqrt(num) / fmax(sqrt(den), 1e-8);
    print_message("latent map (%s): loss %.4f, gradient rel. error %.2e over %zu parameters\n", ts ? "tsflow" : "glow", L, rel,
                  f->n_params);
    assert_true(rel < 1e-2);
    /* cleared: the plain loss again */
    assert_int_equal(rf_flow_ws_set_latent_affine(w, NULL, &e), RF_OK);
    memset(f->grads, 0, sizeof(float) * f->n_params);
    const double L0 = rf_flow_loss_grad(f, w, n, x, y, ce);
    assert_true(fabs(L0 - L) > 1e-3);
    rf_flow_ws_free(w);
    rf_flow_ws_free(wi);
    rf_flow_free(f);
}

static void test_affine_grad_dense(void **st) {
    (void)st;
    check_affine_grad(0);
}

static void test_affine_grad_tsflow(void **st) {
    (void)st;
    check_affine_grad(1);
}

/* Training with adaptation in the loop: standard reference, and a held-out subject with another
 * gain classified as well as the training subjects. */
static void test_train_in_loop(void **st) {
    (void)st;
    const int D = 6;
    const int ids[5] = {0, 1, 2, 3, 4};
    const double gain[5] = {0.8, 1.0, 1.25, 0.6, 3.0}, off[5] = {0.5, 0.0, -0.5, 1.0, 2.0};
    rf_matrix all;
    int *y, *subj;
    make_data(5, ids, gain, off, 200, D, 31, &all, &y, &subj);
    rf_matrix tr = {.n = 600, .d = D, .x = all.x}, va = {.n = 200, .d = D, .x = all.x + (size_t)600 * D},
              te = {.n = 200, .d = D, .x = all.x + (size_t)800 * D};
    rf_flow *f = make_flow(0, D, 12);
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.epochs = 4;
    tc.batch = 50;
    tc.progress = 0;
    tc.threads = 2;
    tc.subject_adapt = 1;
    tc.class_init = 1; /* class Gaussians at the moments of the standardised latents */
    tc.train_subjects = subj;
    tc.val_subjects = subj + 600;
    rf_train_result r;
    rf_err e = {0};
    tc.train_subjects = NULL;
    assert_int_not_equal(rf_train(f, &tr, y, &va, y + 600, &tc, &r, &e), RF_OK);
    assert_non_null(strstr(e.msg, "subject ids"));
    rf_train_result_free(&r);
    tc.train_subjects = subj;
    assert_int_equal(rf_train(f, &tr, y, &va, y + 600, &tc, &r, &e), RF_OK);
    print_message("in-loop adaptation: validation NLL %.4f at epoch %d\n", r.best_val_nll, r.best_epoch);
    assert_true(isfinite(r.best_val_nll));
    rf_train_result_free(&r);
    assert_non_null(f->adapt_mean);
    /* the reference is an average training subject's, not the standard one (the subjects' gains
     * and offsets differ from 1 and 0) */
    double dev = 0;
    for (int g = 0; g < D; g++) dev += fabs(f->adapt_mean[g]) + fabs(f->adapt_log_scale[g]);
    assert_true(dev > 0.1);
    /* moving the reference changes no likelihood */
    float *l1 = malloc(sizeof(float) * 400), *l2 = malloc(sizeof(float) * 400);
    assert_int_equal(rf_adapt_log_likelihood(f, &te, subj + 800, l1, NULL, &e), RF_OK);
    float zero[6] = {0}, m0[6], s0[6];
    memcpy(m0, f->adapt_mean, sizeof m0);
    memcpy(s0, f->adapt_log_scale, sizeof s0);
    assert_int_equal(rf_adapt_rereference(f, zero, zero, &e), RF_OK);
    assert_int_equal(rf_adapt_log_likelihood(f, &te, subj + 800, l2, NULL, &e), RF_OK);
    for (int i = 0; i < 400; i++) assert_true(fabsf(l1[i] - l2[i]) < 1e-4f * (1 + fabsf(l1[i])));
    assert_int_equal(rf_adapt_rereference(f, m0, s0, &e), RF_OK);
    free(l1);
    free(l2);
    int *pred = malloc(sizeof(int) * 600);
    assert_int_equal(rf_flow_predict_subjects(f, &te, subj + 800, NULL, pred, NULL, &e), RF_OK);
    const double held = balanced(y + 800, pred, 200);
    assert_int_equal(rf_flow_predict_subjects(f, &tr, subj, NULL, pred, NULL, &e), RF_OK);
    const double train_bal = balanced(y, pred, 600);
    print_message("in-loop adaptation: balanced accuracy %.3f on the held-out subject (gain 3), %.3f on training\n", held,
                  train_bal);
    assert_true(held > 0.8);
    assert_true(train_bal > 0.8);
    /* with labels rf_adapt_nll averages log p(x | y, subject) */
    float *lpc = malloc(sizeof(float) * 400);
    assert_int_equal(rf_adapt_log_likelihood(f, &va, subj + 600, lpc, NULL, &e), RF_OK);
    double sy = 0;
    for (int i = 0; i < 200; i++) sy += lpc[i * 2 + y[600 + i]];
    const double nll_y = rf_adapt_nll(f, &va, y + 600, subj + 600, NULL, &e);
    assert_true(fabs(nll_y + sy / 200) < 1e-6 * (1 + fabs(nll_y)));
    free(lpc);
    free(pred);
    free(all.x);
    free(y);
    free(subj);
    rf_flow_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formula_dense), cmocka_unit_test(test_formula_tsflow), cmocka_unit_test(test_new_subject),
        cmocka_unit_test(test_file),          cmocka_unit_test(test_errors),
        cmocka_unit_test(test_affine_grad_dense), cmocka_unit_test(test_affine_grad_tsflow),
        cmocka_unit_test(test_train_in_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
