/* The LSTM controller (a policy over a sequence of categorical decisions) with a hand-written
 * forward pass and back-propagation through time, and the mapping of a search space's
 * parameters to decisions (rf_ctrl_space). See include/renflow/controller.h.
 *
 * One step t (slot k, previous decision token tok):
 *   xh = [emb[tok]; h_{t-1}]            z = W xh + b           (4H: gates i, f, g, o)
 *   i = sig(z_i), f = sig(z_f), g = tanh(z_g), o = sig(z_o)
 *   c_t = f * c_{t-1} + i * g            h_t = o * tanh(c_t)
 *   u = W_k h_t + b_k,  s = u / T,  L = tanh_c > 0 ? tanh_c * tanh(s) : s,  p = softmax(L)
 * log p(a) = L_a - logsumexp(L); step entropy H_t = -sum_j p_j log p_j.
 * Backward: dlogp/dL_j = [j = a] - p_j; dH_t/dL_j = -p_j (log p_j + H_t). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/controller.h"
#include "search_internal.h"

void rf_controller_opts_default(rf_controller_opts *o) {
    memset(o, 0, sizeof *o);
    o->hidden = 32;
    o->embed = 0;
    o->temperature = 1.0;
    o->tanh_c = 0.0;
    o->init_scale = 0.1;
    o->bins = 10;
    o->max_int_choices = 16;
}

struct rf_controller {
    rf_controller_opts o;
    int n_slots, H, E, max_k;
    int *nch;        /* choices per slot */
    int *tok_off;    /* embedding row of slot k's choice 0 (row 0 = start token) */
    size_t *head_off;/* offset of W_k in theta (b_k follows) */
    size_t n_params, off_W, off_b;
    double *theta;
    /* workspace: one record per step (at most n_slots steps) */
    size_t stride;
    double *ws;
    int *step_slot, *step_tok;
    double *lse;     /* logsumexp per step */
    double *tmp;     /* 2 * (4H + E + H + max_k) scratch */
};

static int check_opts(const rf_controller_opts *o, rf_err *e) {
    if (o->hidden < 1 || o->hidden > 4096) return rf_err_set(e, RF_EARG, "controller: hidden = %d (expected 1..4096)", o->hidden);
    if (o->embed < 0 || o->embed > 4096) return rf_err_set(e, RF_EARG, "controller: embed = %d (expected 0..4096)", o->embed);
    if (!(o->temperature > 0) || !isfinite(o->temperature))
        return rf_err_set(e, RF_EARG, "controller: temperature = %g (expected > 0)", o->temperature);
    if (!(o->tanh_c >= 0) || !isfinite(o->tanh_c))
        return rf_err_set(e, RF_EARG, "controller: tanh_c = %g (expected >= 0; 0 = no clipping)", o->tanh_c);
    if (!(o->init_scale >= 0) || !isfinite(o->init_scale))
        return rf_err_set(e, RF_EARG, "controller: init_scale = %g (expected >= 0)", o->init_scale);
    if (o->bins < 1 || o->bins > RF_PARAM_MAX_CHOICES)
        return rf_err_set(e, RF_EARG, "controller: bins = %d (expected 1..%d)", o->bins, RF_PARAM_MAX_CHOICES);
    if (o->max_int_choices < 1 || o->max_int_choices > RF_PARAM_MAX_CHOICES)
        return rf_err_set(e, RF_EARG, "controller: max_int_choices = %d (expected 1..%d)", o->max_int_choices,
                          RF_PARAM_MAX_CHOICES);
    return RF_OK;
}

/* Per-step record layout (offsets in doubles). */
#define R_XH 0
static inline size_t r_gate(const rf_controller *c) { return (size_t)(c->E + c->H); }
static inline size_t r_c(const rf_controller *c) { return r_gate(c) + 4 * (size_t)c->H; }
static inline size_t r_tc(const rf_controller *c) { return r_c(c) + (size_t)c->H; }
static inline size_t r_h(const rf_controller *c) { return r_tc(c) + (size_t)c->H; }
static inline size_t r_L(const rf_controller *c) { return r_h(c) + (size_t)c->H; }
static inline size_t r_p(const rf_controller *c) { return r_L(c) + (size_t)c->max_k; }

void rf_controller_free(rf_controller *c) {
    if (!c) return;
    free(c->nch);
    free(c->tok_off);
    free(c->head_off);
    free(c->theta);
    free(c->ws);
    free(c->step_slot);
    free(c->step_tok);
    free(c->lse);
    free(c->tmp);
    free(c);
}

static rf_controller *alloc_controller(int n_slots, const int *n_choices, const rf_controller_opts *o, rf_err *e) {
    if (!o) return rf_err_set(e, RF_EARG, "controller: no options"), NULL;
    if (check_opts(o, e)) return NULL;
    if (n_slots < 1 || n_slots > 1000000) return rf_err_set(e, RF_EARG, "controller: %d decision slots (expected >= 1)", n_slots), NULL;
    if (!n_choices) return rf_err_set(e, RF_EARG, "controller: no choice counts"), NULL;
    for (int k = 0; k < n_slots; k++)
        if (n_choices[k] < 1 || n_choices[k] > RF_PARAM_MAX_CHOICES)
            return rf_err_set(e, RF_EARG, "controller: slot %d has %d choices (expected 1..%d)", k, n_choices[k],
                              RF_PARAM_MAX_CHOICES),
                   NULL;
    rf_controller *c = rf_zalloc(sizeof *c, e);
    if (!c) return NULL;
    c->o = *o;
    c->n_slots = n_slots;
    c->H = o->hidden;
    c->E = o->embed > 0 ? o->embed : o->hidden;
    c->nch = malloc(sizeof(int) * (size_t)n_slots);
    c->tok_off = malloc(sizeof(int) * (size_t)n_slots);
    c->head_off = malloc(sizeof(size_t) * (size_t)n_slots);
    c->step_slot = malloc(sizeof(int) * (size_t)n_slots);
    c->step_tok = malloc(sizeof(int) * (size_t)n_slots);
    c->lse = malloc(sizeof(double) * (size_t)n_slots);
    if (!c->nch || !c->tok_off || !c->head_off || !c->step_slot || !c->step_tok || !c->lse) goto nomem;
    size_t H = (size_t)c->H, E = (size_t)c->E, ntok = 1;
    for (int k = 0; k < n_slots; k++) {
        c->nch[k] = n_choices[k];
        c->tok_off[k] = (int)ntok;
        ntok += (size_t)n_choices[k];
        if (n_choices[k] > c->max_k) c->max_k = n_choices[k];
    }
    c->off_W = ntok * E;
    c->off_b = c->off_W + 4 * H * (E + H);
    size_t off = c->off_b + 4 * H;
    for (int k = 0; k < n_slots; k++) {
        c->head_off[k] = off;
        off += (size_t)n_choices[k] * (H + 1);
    }
    c->n_params = off;
    c->stride = r_p(c) + (size_t)c->max_k;
    c->theta = calloc(c->n_params, sizeof(double));
    c->ws = calloc(c->stride * (size_t)n_slots, sizeof(double));
    c->tmp = calloc(2 * (4 * H + E + H + (size_t)c->max_k), sizeof(double));
    if (!c->theta || !c->ws || !c->tmp) goto nomem;
    return c;
nomem:
    rf_controller_free(c);
    rf_err_set(e, RF_ENOMEM, "controller: out of memory (%d slots, hidden %d)", n_slots, o->hidden);
    return NULL;
}

rf_controller *rf_controller_create(int n_slots, const int *n_choices, const rf_controller_opts *o, uint64_t seed,
                                    rf_err *e) {
    rf_controller *c = alloc_controller(n_slots, n_choices, o, e);
    if (!c) return NULL;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    const double s = o->init_scale;
    /* weights and embeddings U(-s, s); the LSTM bias and the heads' biases 0 */
    for (size_t i = 0; i < c->n_params; i++) c->theta[i] = s * (2.0 * rf_rng_uniform(&rng) - 1.0);
    memset(c->theta + c->off_b, 0, sizeof(double) * 4 * (size_t)c->H);
    for (int k = 0; k < n_slots; k++)
        memset(c->theta + c->head_off[k] + (size_t)c->nch[k] * (size_t)c->H, 0, sizeof(double) * (size_t)c->nch[k]);
    return c;
}

rf_controller *rf_controller_clone(const rf_controller *src, rf_err *e) {
    if (!src) return rf_err_set(e, RF_EARG, "controller: nothing to clone"), NULL;
    rf_controller *c = alloc_controller(src->n_slots, src->nch, &src->o, e);
    if (c) memcpy(c->theta, src->theta, sizeof(double) * c->n_params);
    return c;
}

int rf_controller_n_slots(const rf_controller *c) { return c ? c->n_slots : 0; }
int rf_controller_n_choices(const rf_controller *c, int slot) {
    return c && slot >= 0 && slot < c->n_slots ? c->nch[slot] : 0;
}
const rf_controller_opts *rf_controller_get_opts(const rf_controller *c) { return c ? &c->o : NULL; }
size_t rf_controller_n_params(const rf_controller *c) { return c ? c->n_params : 0; }
double *rf_controller_params(rf_controller *c) { return c ? c->theta : NULL; }

static inline double sigm(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

/* Modes of the forward pass. */
enum { FWD_FIXED = 0, FWD_SAMPLE = 1, FWD_GREEDY = 2 };

/* Runs the episode, filling the step records; returns the number of steps in *T. FIXED: the
 * choices are read from `choice` (validated); SAMPLE/GREEDY: written to it. */
static int forward(rf_controller *c, int mode, rf_rng *rng, rf_ctrl_active_fn active, void *ctx, int *choice, int *T,
                   double *logp, double *entropy, rf_err *e) {
    const int H = c->H, E = c->E;
    const double *theta = c->theta;
    const double *W = theta + c->off_W, *b = theta + c->off_b;
    double lp = 0, ent = 0;
    int t = 0, prev_tok = 0;
    const double *h_prev = NULL, *c_prev = NULL;
    for (int k = 0; k < c->n_slots; k++) {
        int visit;
        if (mode == FWD_FIXED) {
            if (choice[k] == -1) continue;
            if (choice[k] < 0 || choice[k] >= c->nch[k])
                return rf_err_set(e, RF_EARG, "controller: slot %d: choice %d out of range (0..%d, or -1 = skipped)", k,
                                  choice[k], c->nch[k] - 1);
            visit = 1;
        } else {
            visit = active ? active(ctx, k, choice) : 1;
            if (!visit) {
                choice[k] = -1;
                continue;
            }
        }
        double *rec = c->ws + c->stride * (size_t)t;
        double *xh = rec + R_XH, *gt = rec + r_gate(c), *cc = rec + r_c(c), *tc = rec + r_tc(c), *hh = rec + r_h(c);
        double *L = rec + r_L(c), *p = rec + r_p(c);
        c->step_slot[t] = k;
        c->step_tok[t] = prev_tok;
        memcpy(xh, theta + (size_t)prev_tok * (size_t)E, sizeof(double) * (size_t)E);
        if (h_prev) memcpy(xh + E, h_prev, sizeof(double) * (size_t)H);
        else memset(xh + E, 0, sizeof(double) * (size_t)H);
        memcpy(gt, b, sizeof(double) * 4 * (size_t)H);
        cblas_dgemv(CblasRowMajor, CblasNoTrans, 4 * H, E + H, 1.0, W, E + H, xh, 1, 1.0, gt, 1);
        for (int j = 0; j < H; j++) {
            double ig = sigm(gt[j]), fg = sigm(gt[H + j]), gg = tanh(gt[2 * H + j]), og = sigm(gt[3 * H + j]);
            gt[j] = ig;
            gt[H + j] = fg;
            gt[2 * H + j] = gg;
            gt[3 * H + j] = og;
            cc[j] = ig * gg + (c_prev ? fg * c_prev[j] : 0.0);
            tc[j] = tanh(cc[j]);
            hh[j] = og * tc[j];
        }
        /* head */
        const int K = c->nch[k];
        const double *Wk = theta + c->head_off[k], *bk = Wk + (size_t)K * (size_t)H;
        memcpy(L, bk, sizeof(double) * (size_t)K);
        cblas_dgemv(CblasRowMajor, CblasNoTrans, K, H, 1.0, Wk, H, hh, 1, 1.0, L, 1);
        const double invT = 1.0 / c->o.temperature;
        double mx = -INFINITY;
        for (int j = 0; j < K; j++) {
            double s = L[j] * invT;
            L[j] = c->o.tanh_c > 0 ? c->o.tanh_c * tanh(s) : s;
            if (L[j] > mx) mx = L[j];
        }
        double z = 0;
        for (int j = 0; j < K; j++) z += (p[j] = exp(L[j] - mx));
        const double lse = mx + log(z);
        c->lse[t] = lse;
        double Ht = 0;
        for (int j = 0; j < K; j++) {
            p[j] /= z;
            if (p[j] > 0) Ht -= p[j] * (L[j] - lse);
        }
        if (!isfinite(lse) || !isfinite(Ht))
            return rf_err_set(e, RF_ENONFINITE, "controller: slot %d: non-finite logits (diverged parameters?)", k);
        int a;
        if (mode == FWD_FIXED) {
            a = choice[k];
        } else if (mode == FWD_GREEDY) {
            a = 0;
            for (int j = 1; j < K; j++)
                if (L[j] > L[a]) a = j;
        } else {
            double u = rf_rng_uniform(rng), acc = 0;
            a = K - 1;
            for (int j = 0; j < K; j++) {
                acc += p[j];
                if (u < acc) {
                    a = j;
                    break;
                }
            }
            while (a > 0 && p[a] <= 0) a--; /* never a choice of probability 0 (rounding at the end) */
            choice[k] = a;
        }
        if (mode == FWD_GREEDY) choice[k] = a;
        lp += L[a] - lse;
        ent += Ht;
        prev_tok = c->tok_off[k] + a;
        h_prev = hh;
        c_prev = cc;
        t++;
    }
    *T = t;
    if (logp) *logp = lp;
    if (entropy) *entropy = ent;
    return RF_OK;
}

int rf_controller_sample(rf_controller *c, rf_rng *rng, rf_ctrl_active_fn active, void *ctx, int *choice, double *logp,
                         double *entropy, rf_err *e) {
    if (!c || !choice) return rf_err_set(e, RF_EARG, "controller: sample: NULL argument");
    int T;
    return forward(c, rng ? FWD_SAMPLE : FWD_GREEDY, rng, active, ctx, choice, &T, logp, entropy, e);
}

int rf_controller_logprob(rf_controller *c, const int *choice, double *logp, double *entropy, rf_err *e) {
    if (!c || !choice) return rf_err_set(e, RF_EARG, "controller: logprob: NULL argument");
    int T;
    return forward(c, FWD_FIXED, NULL, NULL, NULL, (int *)choice, &T, logp, entropy, e);
}

int rf_controller_grad(rf_controller *c, const int *choice, double w_logp, double w_entropy, double *logp,
                       double *entropy, double *grad, rf_err *e) {
    if (!c || !choice || !grad) return rf_err_set(e, RF_EARG, "controller: grad: NULL argument");
    int T;
    double lp, ent;
    int rc = forward(c, FWD_FIXED, NULL, NULL, NULL, (int *)choice, &T, &lp, &ent, e);
    if (rc) return rc;
    if (logp) *logp = lp;
    if (entropy) *entropy = ent;
    const int H = c->H, E = c->E, EH = E + H;
    const double *W = c->theta + c->off_W;
    double *gW = grad + c->off_W, *gb = grad + c->off_b;
    double *dh = c->tmp, *dc = dh + H, *dz = dc + H, *dxh = dz + 4 * H, *du = dxh + EH;
    memset(dh, 0, sizeof(double) * (size_t)H); /* dh_next, dc_next from step t + 1 */
    memset(dc, 0, sizeof(double) * (size_t)H);
    const double invT = 1.0 / c->o.temperature, tc_ = c->o.tanh_c;
    for (int t = T - 1; t >= 0; t--) {
        const int k = c->step_slot[t], K = c->nch[k], a = choice[k];
        const double *rec = c->ws + c->stride * (size_t)t;
        const double *xh = rec + R_XH, *gt = rec + r_gate(c), *tc = rec + r_tc(c), *hh = rec + r_h(c);
        const double *L = rec + r_L(c), *p = rec + r_p(c);
        const double lse = c->lse[t];
        double Ht = 0;
        for (int j = 0; j < K; j++)
            if (p[j] > 0) Ht -= p[j] * (L[j] - lse);
        /* dJ/dL, then through the clipping and the temperature to the head's output u */
        for (int j = 0; j < K; j++) {
            double dL = w_logp * ((j == a) - p[j]);
            if (w_entropy != 0 && p[j] > 0) dL += w_entropy * (-p[j] * ((L[j] - lse) + Ht));
            double ds;
            if (tc_ > 0) {
                double th = L[j] / tc_;
                ds = dL * tc_ * (1.0 - th * th);
            } else {
                ds = dL;
            }
            du[j] = ds * invT;
        }
        double *gWk = grad + c->head_off[k], *gbk = gWk + (size_t)K * (size_t)H;
        const double *Wk = c->theta + c->head_off[k];
        cblas_dger(CblasRowMajor, K, H, 1.0, du, 1, hh, 1, gWk, H);
        for (int j = 0; j < K; j++) gbk[j] += du[j];
        cblas_dgemv(CblasRowMajor, CblasTrans, K, H, 1.0, Wk, H, du, 1, 1.0, dh, 1); /* dh += Wk^T du */
        /* LSTM cell */
        const double *c_prev = t > 0 ? c->ws + c->stride * (size_t)(t - 1) + r_c(c) : NULL;
        for (int j = 0; j < H; j++) {
            double ig = gt[j], fg = gt[H + j], gg = gt[2 * H + j], og = gt[3 * H + j];
            double dcj = dc[j] + dh[j] * og * (1.0 - tc[j] * tc[j]);
            double cp = c_prev ? c_prev[j] : 0.0;
            dz[j] = dcj * gg * ig * (1.0 - ig);
            dz[H + j] = dcj * cp * fg * (1.0 - fg);
            dz[2 * H + j] = dcj * ig * (1.0 - gg * gg);
            dz[3 * H + j] = dh[j] * tc[j] * og * (1.0 - og);
            dc[j] = dcj * fg;
        }
        cblas_dger(CblasRowMajor, 4 * H, EH, 1.0, dz, 1, xh, 1, gW, EH);
        for (int j = 0; j < 4 * H; j++) gb[j] += dz[j];
        cblas_dgemv(CblasRowMajor, CblasTrans, 4 * H, EH, 1.0, W, EH, dz, 1, 0.0, dxh, 1);
        double *gemb = grad + (size_t)c->step_tok[t] * (size_t)E;
        for (int j = 0; j < E; j++) gemb[j] += dxh[j];
        memcpy(dh, dxh + E, sizeof(double) * (size_t)H);
    }
    return RF_OK;
}

/* ======================================================================================
 * Decisions of a search space
 * ====================================================================================== */

typedef enum { D_CAT = 0, D_INTVAL = 1, D_FBIN = 2, D_IBIN = 3 } dkind;

typedef struct dslot {
    dkind kind;
    int n;            /* choices */
    double lo, hi;    /* D_FBIN: transformed bounds */
    double *ia, *ib;  /* D_IBIN: integer range [ia[j], ib[j]] of choice j */
} dslot;

struct rf_ctrl_space {
    const rf_space *sp;
    int n;
    dslot *s;
    int *nch;
    rf_config work; /* partial configuration while sampling */
};

void rf_ctrl_space_free(rf_ctrl_space *m) {
    if (!m) return;
    if (m->s)
        for (int i = 0; i < m->n; i++) {
            free(m->s[i].ia);
            free(m->s[i].ib);
        }
    free(m->s);
    free(m->nch);
    rf_config_free(&m->work);
    free(m);
}

/* Smallest integer v with transformed value t(v) >= x (log: log v >= x). */
static double int_ceil_t(const rf_param *p, double x) {
    double v = ceil(p->log ? exp(x) : x);
    /* exp/log rounding: step to the exact boundary */
    while (v - 1 >= p->low && rf__param_to_t(p, v - 1) >= x) v -= 1;
    while (v <= p->high && rf__param_to_t(p, v) < x) v += 1;
    return v;
}

rf_ctrl_space *rf_ctrl_space_create(const rf_space *sp, const rf_controller_opts *o, rf_err *e) {
    if (!sp || !o) return rf_err_set(e, RF_EARG, "controller space: NULL argument"), NULL;
    if (check_opts(o, e)) return NULL;
    if (sp->n < 1) return rf_err_set(e, RF_EARG, "controller space: space \"%s\" has no parameters", sp->name), NULL;
    rf_ctrl_space *m = rf_zalloc(sizeof *m, e);
    if (!m) return NULL;
    m->sp = sp;
    m->n = sp->n;
    m->s = calloc((size_t)sp->n, sizeof(dslot));
    m->nch = calloc((size_t)sp->n, sizeof(int));
    if (!m->s || !m->nch || rf_config_init(&m->work, sp, e)) {
        rf_ctrl_space_free(m);
        return rf_err_set(e, RF_ENOMEM, "controller space: out of memory"), NULL;
    }
    for (int i = 0; i < sp->n; i++) {
        const rf_param *p = &sp->p[i];
        dslot *d = &m->s[i];
        if (p->kind == RF_PARAM_CAT) {
            d->kind = D_CAT;
            d->n = p->n_choices;
        } else if (p->kind == RF_PARAM_INT && p->high - p->low + 1 <= o->max_int_choices) {
            d->kind = D_INTVAL;
            d->n = (int)(p->high - p->low + 1);
        } else if (p->kind == RF_PARAM_FLOAT) {
            d->kind = D_FBIN;
            d->n = o->bins;
            rf__param_tbounds(p, &d->lo, &d->hi);
        } else {
            d->kind = D_IBIN;
            rf__param_tbounds(p, &d->lo, &d->hi);
            d->ia = malloc(sizeof(double) * (size_t)o->bins);
            d->ib = malloc(sizeof(double) * (size_t)o->bins);
            if (!d->ia || !d->ib) {
                rf_ctrl_space_free(m);
                return rf_err_set(e, RF_ENOMEM, "controller space: out of memory"), NULL;
            }
            const double w = (d->hi - d->lo) / o->bins;
            double a = p->low;
            for (int j = 0; j < o->bins; j++) {
                double b = j == o->bins - 1 ? p->high : int_ceil_t(p, d->lo + (j + 1) * w) - 1;
                if (b > p->high) b = p->high;
                if (b >= a) {
                    d->ia[d->n] = a;
                    d->ib[d->n] = b;
                    d->n++;
                    a = b + 1;
                }
            }
        }
        m->nch[i] = d->n;
    }
    return m;
}

int rf_ctrl_space_n_slots(const rf_ctrl_space *m) { return m ? m->n : 0; }
const int *rf_ctrl_space_n_choices(const rf_ctrl_space *m) { return m ? m->nch : NULL; }

/* Value of decision j of slot i. */
static double decode_one(const rf_ctrl_space *m, int i, int j, rf_rng *rng) {
    const rf_param *p = &m->sp->p[i];
    const dslot *d = &m->s[i];
    switch (d->kind) {
    case D_CAT: return j;
    case D_INTVAL: return p->low + j;
    case D_FBIN: {
        double u = rng ? 0.01 + 0.98 * rf_rng_uniform(rng) : 0.5;
        double w = (d->hi - d->lo) / d->n;
        double t = d->lo + (j + u) * w;
        double v = p->log ? exp(t) : t;
        if (v < p->low) v = p->low;
        if (v > p->high) v = p->high;
        return v;
    }
    case D_IBIN: {
        double a = d->ia[j], b = d->ib[j];
        if (!rng) return floor(0.5 * (a + b));
        return a + (double)rf_rng_below(rng, (uint64_t)(b - a + 1));
    }
    }
    return NAN;
}

static int encode_one(const rf_ctrl_space *m, int i, double v, int *out, rf_err *e) {
    const rf_param *p = &m->sp->p[i];
    const dslot *d = &m->s[i];
    if (!isfinite(v))
        return rf_err_set(e, RF_EARG, "controller space: parameter %s: active with no value", p->name);
    int j;
    switch (d->kind) {
    case D_CAT:
    case D_INTVAL:
        j = (int)lround(d->kind == D_CAT ? v : v - p->low);
        if (j < 0 || j >= d->n || fabs((d->kind == D_CAT ? v : v - p->low) - j) > 1e-9)
            return rf_err_set(e, RF_EARG, "controller space: parameter %s: value %g is not one of its %d choices", p->name, v,
                              d->n);
        break;
    case D_FBIN: {
        if (v < p->low || v > p->high)
            return rf_err_set(e, RF_EARG, "controller space: parameter %s: value %g outside [%g, %g]", p->name, v, p->low,
                              p->high);
        double t = rf__param_to_t(p, v);
        j = (int)floor((t - d->lo) / (d->hi - d->lo) * d->n);
        if (j < 0) j = 0;
        if (j >= d->n) j = d->n - 1;
        break;
    }
    case D_IBIN: {
        if (v < p->low || v > p->high || v != floor(v))
            return rf_err_set(e, RF_EARG, "controller space: parameter %s: value %g is not an integer in [%g, %g]", p->name,
                              v, p->low, p->high);
        int lo = 0, hi = d->n - 1;
        while (lo < hi) { /* first group with ib >= v */
            int mid = (lo + hi) / 2;
            if (d->ib[mid] >= v) hi = mid;
            else lo = mid + 1;
        }
        j = lo;
        break;
    }
    default: j = 0;
    }
    *out = j;
    return RF_OK;
}

int rf_ctrl_space_decode(const rf_ctrl_space *m, const int *choice, rf_rng *rng, rf_config *out, rf_err *e) {
    if (!m || !choice || !out) return rf_err_set(e, RF_EARG, "controller space: decode: NULL argument");
    if (out->n != m->n)
        return rf_err_set(e, RF_EARG, "controller space: configuration has %d values for %d parameters", out->n, m->n);
    for (int i = 0; i < m->n; i++) {
        out->v[i] = NAN;
        out->active[i] = 1;
    }
    /* in parameter order: the conditions only look at earlier parameters */
    for (int i = 0; i < m->n; i++) {
        rf_config_update_active(m->sp, out);
        if (!out->active[i]) continue;
        int j = choice[i];
        if (j < 0 || j >= m->nch[i])
            return rf_err_set(e, RF_EARG, "controller space: parameter %s: decision %d out of range (0..%d)",
                              m->sp->p[i].name, j, m->nch[i] - 1);
        out->v[i] = decode_one(m, i, j, rng);
    }
    rf_config_update_active(m->sp, out);
    return RF_OK;
}

int rf_ctrl_space_encode(const rf_ctrl_space *m, const rf_config *c, int *choice, rf_err *e) {
    if (!m || !c || !choice) return rf_err_set(e, RF_EARG, "controller space: encode: NULL argument");
    if (c->n != m->n)
        return rf_err_set(e, RF_EARG, "controller space: configuration has %d values for %d parameters", c->n, m->n);
    for (int i = 0; i < m->n; i++) {
        if (!c->active[i]) {
            choice[i] = -1;
            continue;
        }
        int rc = encode_one(m, i, c->v[i], &choice[i], e);
        if (rc) return rc;
    }
    return RF_OK;
}

typedef struct space_ctx {
    rf_ctrl_space *m;
    rf_rng *rng;
    int next; /* parameters 0..next-1 hold their decoded values in m->work */
} space_ctx;

/* Decodes the decisions of parameters next..upto-1 into the work configuration (in order, so
 * that bins drawn with the rng give the values the conditions then see). */
static void space_decode_upto(space_ctx *x, const int *choice, int upto) {
    rf_ctrl_space *m = x->m;
    for (int i = x->next; i < upto; i++) m->work.v[i] = choice[i] >= 0 ? decode_one(m, i, choice[i], x->rng) : NAN;
    if (upto > x->next) x->next = upto;
}

/* Slot i is visited when parameter i is active given the values decided so far (conditions
 * only involve earlier parameters). */
static int space_active(void *ctx, int slot, const int *choice) {
    space_ctx *x = ctx;
    rf_ctrl_space *m = x->m;
    space_decode_upto(x, choice, slot);
    if (m->sp->p[slot].parent < 0) return 1;
    rf_config *w = &m->work;
    for (int i = 0; i < m->n; i++) w->active[i] = i < slot ? choice[i] >= 0 : 1;
    rf_config_update_active(m->sp, w);
    return w->active[slot];
}

int rf_ctrl_space_sample(const rf_ctrl_space *m, rf_controller *c, rf_rng *rng, rf_config *out, int *choice, double *logp,
                         double *entropy, rf_err *e) {
    if (!m || !c || !out || !choice) return rf_err_set(e, RF_EARG, "controller space: sample: NULL argument");
    if (c->n_slots != m->n) return rf_err_set(e, RF_EARG, "controller space: controller has %d slots for %d parameters", c->n_slots, m->n);
    if (out->n != m->n)
        return rf_err_set(e, RF_EARG, "controller space: configuration has %d values for %d parameters", out->n, m->n);
    for (int i = 0; i < m->n; i++)
        if (c->nch[i] != m->nch[i])
            return rf_err_set(e, RF_EARG, "controller space: parameter %s has %d decisions, the controller's slot %d has %d",
                              m->sp->p[i].name, m->nch[i], i, c->nch[i]);
    rf_ctrl_space *mm = (rf_ctrl_space *)m;
    for (int i = 0; i < m->n; i++) {
        mm->work.v[i] = NAN;
        mm->work.active[i] = 1;
    }
    space_ctx ctx = {mm, rng, 0};
    int rc = rf_controller_sample(c, rng, space_active, &ctx, choice, logp, entropy, e);
    if (rc) return rc;
    space_decode_upto(&ctx, choice, m->n);
    for (int i = 0; i < m->n; i++) {
        out->v[i] = mm->work.v[i];
        out->active[i] = choice[i] >= 0;
    }
    rf_config_update_active(m->sp, out);
    return RF_OK;
}
