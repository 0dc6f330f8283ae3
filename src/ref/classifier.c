/* Discriminative reference classifiers: multinomial logistic regression and an MLP, trained
 * by softmax cross-entropy with AdamW, best validation epoch kept. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/metrics.h"
#include "renflow/nn.h"
#include "renflow/ref.h"
#include "renflow/train.h"

struct rf_disc {
    int D, C;
    rf_disc_cfg cfg;
    rf_mlp *mlp;      /* NULL for logistic regression */
    size_t n_params;  /* logistic regression: W (C x D) then b (C) */
    float *params, *best, *grads;
    float *shift, *scale;
    int max_batch;
    float *xb, *logits, *dlogits, *cache, *scratch;
};

void rf_disc_cfg_default(rf_disc_cfg *c) {
    memset(c, 0, sizeof *c);
    c->n_hidden = 0;
    c->hidden = 64;
    c->act = RF_ACT_RELU;
    c->lr = 1e-2f;
    c->weight_decay = 1e-4f;
    c->epochs = 60;
    c->batch = 256;
    c->patience = 10;
    c->seed = 1;
}

void rf_disc_free(rf_disc *m) {
    if (!m) return;
    rf_mlp_free(m->mlp);
    rf_free(m->params);
    rf_free(m->best);
    rf_free(m->grads);
    rf_free(m->shift);
    rf_free(m->scale);
    rf_free(m->xb);
    rf_free(m->logits);
    rf_free(m->dlogits);
    rf_free(m->cache);
    rf_free(m->scratch);
    free(m);
}

static rf_disc *disc_alloc(int D, int C, const rf_disc_cfg *cfg, rf_err *e) {
    rf_disc *m = rf_zalloc(sizeof *m, e);
    if (!m) return NULL;
    m->D = D;
    m->C = C;
    m->cfg = *cfg;
    m->max_batch = cfg->batch > 1024 ? cfg->batch : 1024;
    size_t cache = 0, scratch = 0;
    if (cfg->n_hidden > 0) {
        rf_mlp_cfg mc = {.n_in = D, .n_out = C, .hidden = cfg->hidden, .n_hidden = cfg->n_hidden, .act = (rf_act)cfg->act};
        if (!(m->mlp = rf_mlp_create(&mc, e))) goto fail;
        m->n_params = rf_mlp_n_params(m->mlp);
        cache = rf_mlp_cache_floats(m->mlp, m->max_batch);
        scratch = rf_mlp_scratch_floats(m->mlp, m->max_batch);
    } else {
        m->n_params = (size_t)C * D + C;
    }
    const size_t nb = (size_t)m->max_batch;
    if (!(m->params = rf_floats(m->n_params, e)) || !(m->best = rf_floats(m->n_params, e)) ||
        !(m->grads = rf_floats(m->n_params, e)) || !(m->shift = rf_floats((size_t)D, e)) ||
        !(m->scale = rf_floats((size_t)D, e)) || !(m->xb = rf_floats(nb * D, e)) ||
        !(m->logits = rf_floats(nb * C, e)) || !(m->dlogits = rf_floats(nb * C, e)) ||
        !(m->cache = rf_floats(cache + 1, e)) || !(m->scratch = rf_floats(scratch + 1, e)))
        goto fail;
    return m;
fail:
    rf_disc_free(m);
    return NULL;
}

/* logits for n standardised rows in m->xb. */
static void forward(rf_disc *m, int n) {
    if (m->mlp) {
        rf_mlp_forward(m->mlp, m->params, n, m->xb, m->logits, m->cache);
        return;
    }
    const float *W = m->params, *b = m->params + (size_t)m->C * m->D;
    for (int i = 0; i < n; i++) memcpy(m->logits + (size_t)i * m->C, b, sizeof(float) * m->C);
    rf_gemm(0, 1, n, m->C, m->D, 1.0f, m->xb, m->D, W, m->D, 1.0f, m->logits, m->C);
}

static void load_rows(rf_disc *m, const rf_matrix *x, const int *idx, int i0, int n) {
    for (int i = 0; i < n; i++) {
        const float *src = x->x + (size_t)(idx ? idx[i0 + i] : i0 + i) * m->D;
        float *dst = m->xb + (size_t)i * m->D;
        for (int j = 0; j < m->D; j++) dst[j] = (src[j] - m->shift[j]) / m->scale[j];
    }
}

/* Softmax in place over rows of logits; returns sum of w_i * -log p(y_i) when y != NULL. */
static double softmax_ce(float *logits, int n, int C, const int *y, const float *w) {
    double loss = 0;
    for (int i = 0; i < n; i++) {
        float *r = logits + (size_t)i * C, mx = r[0];
        for (int c = 1; c < C; c++) mx = r[c] > mx ? r[c] : mx;
        double s = 0;
        for (int c = 0; c < C; c++) s += exp((double)r[c] - mx);
        const double lse = mx + log(s);
        if (y) loss -= (w ? w[y[i]] : 1.0) * ((double)r[y[i]] - lse);
        for (int c = 0; c < C; c++) r[c] = (float)exp((double)r[c] - lse);
    }
    return loss;
}

static double val_ce(rf_disc *m, const rf_matrix *x, const int *y) {
    double s = 0;
    for (int i0 = 0; i0 < x->n; i0 += m->max_batch) {
        const int nb = x->n - i0 < m->max_batch ? x->n - i0 : m->max_batch;
        load_rows(m, x, NULL, i0, nb);
        forward(m, nb);
        s += softmax_ce(m->logits, nb, m->C, y + i0, NULL);
    }
    return s / (x->n > 0 ? x->n : 1);
}

rf_disc *rf_disc_train(const rf_matrix *x, const int *y, int C, const rf_matrix *val, const int *yval,
                       const rf_disc_cfg *cfg, rf_err *e) {
    if (C < 2) {
        rf_err_set(e, RF_EARG, "a classifier needs at least 2 classes, got %d", C);
        return NULL;
    }
    if (x->n < 1 || cfg->batch < 1 || cfg->epochs < 1) {
        rf_err_set(e, RF_EARG, "classifier training needs rows, batch >= 1 and epochs >= 1 (rows %d, batch %d, epochs %d)",
                   x->n, cfg->batch, cfg->epochs);
        return NULL;
    }
    for (int i = 0; i < x->n; i++)
        if (y[i] < 0 || y[i] >= C) {
            rf_err_set(e, RF_EARG, "label %d at row %d is outside [0, %d)", y[i], i, C);
            return NULL;
        }
    rf_disc *m = disc_alloc(x->d, C, cfg, e);
    if (!m) return NULL;
    rf_adam opt = {0};
    int *idx = malloc(sizeof(int) * (size_t)x->n);
    float *w = calloc((size_t)C, sizeof(float));
    if (!idx || !w || rf_standardizer_fit(x, 0, m->shift, m->scale, e) || rf_adam_init(&opt, m->n_params, e)) {
        if (e && !e->code) rf_err_set(e, RF_ENOMEM, "out of memory");
        goto fail;
    }
    for (int c = 0; c < C; c++) w[c] = 1.0f;
    if (cfg->class_balanced) {
        long *cnt = calloc((size_t)C, sizeof(long));
        for (int i = 0; cnt && i < x->n; i++) cnt[y[i]]++;
        for (int c = 0; cnt && c < C; c++) w[c] = cnt[c] ? (float)((double)x->n / ((double)C * cnt[c])) : 0.0f;
        free(cnt);
    }
    rf_rng rng;
    rf_rng_seed(&rng, cfg->seed);
    if (m->mlp) rf_mlp_init_params(m->mlp, m->params, &rng);
    memcpy(m->best, m->params, sizeof(float) * m->n_params);
    for (int i = 0; i < x->n; i++) idx[i] = i;
    double best = INFINITY;
    int since = 0;
    const long steps_per_epoch = (x->n + cfg->batch - 1) / cfg->batch, total = steps_per_epoch * cfg->epochs;
    long t = 0;
    for (int ep = 0; ep < cfg->epochs; ep++) {
        rf_rng_shuffle(&rng, idx, x->n);
        for (int i0 = 0; i0 < x->n; i0 += cfg->batch, t++) {
            const int nb = x->n - i0 < cfg->batch ? x->n - i0 : cfg->batch;
            load_rows(m, x, idx, i0, nb);
            forward(m, nb);
            /* dlogits = w_y (softmax - onehot) / nb */
            softmax_ce(m->logits, nb, C, NULL, NULL);
            for (int i = 0; i < nb; i++) {
                const int yi = y[idx[i0 + i]];
                const float wi = w[yi] / nb;
                for (int c = 0; c < C; c++)
                    m->dlogits[(size_t)i * C + c] = wi * (m->logits[(size_t)i * C + c] - (float)(c == yi));
            }
            memset(m->grads, 0, sizeof(float) * m->n_params);
            if (m->mlp) {
                rf_mlp_backward(m->mlp, m->params, nb, m->xb, m->dlogits, NULL, m->grads, m->cache, m->scratch);
            } else {
                float *gW = m->grads, *gb = m->grads + (size_t)C * m->D;
                rf_gemm(1, 0, C, m->D, nb, 1.0f, m->dlogits, C, m->xb, m->D, 0.0f, gW, m->D);
                for (int i = 0; i < nb; i++)
                    for (int c = 0; c < C; c++) gb[c] += m->dlogits[(size_t)i * C + c];
            }
            const float lr = (float)rf_lr_schedule(cfg->lr, t, total, total / 20, 1, 0.01);
            rf_adam_step(&opt, m->params, m->grads, lr, cfg->weight_decay);
        }
        if (val && yval && val->n > 0) {
            const double v = val_ce(m, val, yval);
            if (v < best) {
                best = v;
                since = 0;
                memcpy(m->best, m->params, sizeof(float) * m->n_params);
            } else if (cfg->patience > 0 && ++since >= cfg->patience) {
                break;
            }
        } else {
            memcpy(m->best, m->params, sizeof(float) * m->n_params);
        }
    }
    memcpy(m->params, m->best, sizeof(float) * m->n_params);
    free(idx);
    free(w);
    rf_adam_free(&opt);
    return m;
fail:
    free(idx);
    free(w);
    rf_adam_free(&opt);
    rf_disc_free(m);
    return NULL;
}

int rf_disc_predict(const rf_disc *mc, const rf_matrix *x, int *pred, float *proba, rf_err *e) {
    rf_disc *m = (rf_disc *)mc; /* uses its own buffers; not thread-safe */
    if (x->d != m->D) return rf_err_set(e, RF_EARG, "data has %d columns but the classifier expects %d", x->d, m->D);
    for (int i0 = 0; i0 < x->n; i0 += m->max_batch) {
        const int nb = x->n - i0 < m->max_batch ? x->n - i0 : m->max_batch;
        load_rows(m, x, NULL, i0, nb);
        forward(m, nb);
        softmax_ce(m->logits, nb, m->C, NULL, NULL);
        rf_argmax_rows(m->logits, NULL, nb, m->C, pred + i0);
        if (proba) memcpy(proba + (size_t)i0 * m->C, m->logits, sizeof(float) * (size_t)nb * m->C);
    }
    return RF_OK;
}
