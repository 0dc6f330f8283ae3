/* ENAS over the conditioners of coupling flows (renflow/supernet.h): an LSTM controller
 * (renflow/controller.h) picks one candidate per block; the candidates' weights live in the
 * supernet and are shared by every path that picks them; the controller learns by REINFORCE from
 * the shaped reward of each path's validation loss. The best path is discretised, trained with
 * the job's settings and stored as a study trial (through rf_search_supernet_store, as DARTS). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/supernet.h"
#include "search_internal.h"
#include "../core/json_util.h"

#define ENAS_MAX_BAD_STEPS 20

void rf_enas_opts_default(rf_enas_opts *o) {
    memset(o, 0, sizeof *o);
    rf_darts_opts_default(&o->net);
    o->net.drop_prob = 0;
    rf_controller_opts_default(&o->ctrl);
    o->ctrl.temperature = 5.0; /* as ENAS: bounded logits keep the policy from collapsing on the */
    o->ctrl.tanh_c = 2.5;      /* noise of an untrained supernet's early rewards */
    rf_reinforce_opts_default(&o->reinforce);
    o->reward_a = NAN;
    o->reward_b = NAN;
    o->calibrate = 8;
    o->ctrl_steps = 10;
    o->ctrl_batch = 4;
    o->final_samples = 16;
}

void rf_enas_result_free(rf_enas_result *r) {
    if (!r) return;
    free(r->train_curve);
    free(r->reward_curve);
    free(r->score_curve);
    free(r->entropy_curve);
    free(r->reward_a);
    free(r->reward_b);
    free(r->path);
    free(r->greedy);
    memset(r, 0, sizeof *r);
}


static cJSON *path_json(const rf_supernet *s, const int *p) {
    cJSON *a = cJSON_CreateArray();
    for (int b = 0; a && p && b < s->blocks; b++) cJSON_AddItemToArray(a, cJSON_CreateString(s->names[p[b]]));
    return a;
}

cJSON *rf_enas_result_to_json(const rf_enas_result *r, const rf_supernet *s) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddNumberToObject(j, "epochs_run", r->epochs_run);
    cJSON_AddNumberToObject(j, "steps", (double)r->steps);
    cJSON_AddNumberToObject(j, "controller_updates", (double)r->ctrl_updates);
    cJSON_AddNumberToObject(j, "skipped_steps", (double)r->skipped_steps);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddBoolToObject(j, "interrupted", r->interrupted);
    cJSON_AddItemToObject(j, "train_loss", rf_json_num_array_or_null(r->train_curve, r->epochs_run));
    cJSON_AddItemToObject(j, "mean_reward", rf_json_num_array_or_null(r->reward_curve, r->epochs_run));
    cJSON_AddItemToObject(j, "mean_x", rf_json_num_array_or_null(r->score_curve, r->epochs_run));
    cJSON_AddItemToObject(j, "mean_entropy", rf_json_num_array_or_null(r->entropy_curve, r->epochs_run));
    cJSON_AddItemToObject(j, "reward_a", rf_json_num_array_or_null(r->reward_a, r->epochs_run));
    cJSON_AddItemToObject(j, "reward_b", rf_json_num_array_or_null(r->reward_b, r->epochs_run));
    if (s) {
        cJSON_AddItemToObject(j, "path", path_json(s, r->path));
        cJSON_AddItemToObject(j, "greedy", path_json(s, r->greedy));
    }
    cJSON_AddItemToObject(j, "path_val_loss", rf_json_num_or_null(r->path_val_loss));
    cJSON_AddItemToObject(j, "greedy_val_loss", rf_json_num_or_null(r->greedy_val_loss));
    cJSON_AddNumberToObject(j, "final_candidates", r->n_final);
    return j;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* q-quantile of sorted values (linear interpolation). */
static double quantile(const double *v, int n, double q) {
    const double pos = q * (n - 1);
    const int i = (int)floor(pos);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

/* Threshold B / A at the median of the finite x, A = 2 ln 9 / (q90 - q10) (1 when equal). */
static void calibrate(double *x, int n, double *a, double *b) {
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) x[m++] = x[i];
    if (m == 0) {
        *a = 1;
        *b = 0;
        return;
    }
    qsort(x, (size_t)m, sizeof *x, cmp_double);
    const double med = quantile(x, m, 0.5), spread = quantile(x, m, 0.9) - quantile(x, m, 0.1);
    *a = spread > 0 ? 2.0 * log(9.0) / spread : 1.0;
    *b = *a * med;
}

typedef struct {
    rf_supernet *s;
    rf_flow_ws *ws, *we;
    const rf_matrix *val;
    const int *yval;
    int cls;
    float ce;
    int BV;
    int *vidx, vpos;
    float *xb, *lp, *post;
    int *yb;
    rf_rng *rng;
} scorer;

/* Mean loss of a path on rows [x, y] (n rows): NLL, plus ce x CE for a class-conditional base.
 * NaN becomes +inf (the worst). */
static double path_loss(scorer *S, rf_flow_ws *w, const int *path, int n, const float *x, const int *y) {
    rf_flow *f = S->s->flow;
    rf_supernet_set_path(S->s, path, NULL);
    rf_flow_log_prob(f, w, n, x, S->cls ? y : NULL, S->lp);
    double L = 0;
    for (int i = 0; i < n; i++) L -= S->lp[i];
    if (S->cls && S->ce > 0) {
        const int C = f->base.n_classes;
        rf_flow_class_log_posterior(f, w, n, x, NULL, S->post);
        for (int i = 0; i < n; i++) L -= S->ce * S->post[(size_t)i * C + y[i]];
    }
    L /= n;
    return isnan(L) ? INFINITY : L;
}

/* The loss of a path on the next validation batch (shuffled rows, cycling). */
static double path_val_batch(scorer *S, const int *path) {
    const rf_matrix *v = S->val;
    const int D = v->d;
    if (S->vpos + S->BV > v->n) {
        rf_rng_shuffle(S->rng, S->vidx, v->n);
        S->vpos = 0;
    }
    for (int i = 0; i < S->BV; i++) {
        memcpy(S->xb + (size_t)i * D, v->x + (size_t)S->vidx[S->vpos + i] * D, sizeof(float) * D);
        if (S->cls) S->yb[i] = S->yval[S->vidx[S->vpos + i]];
    }
    S->vpos += S->BV;
    return path_loss(S, S->ws, path, S->BV, S->xb, S->yb);
}

static int check_labels(const int *y, int n, int C, const char *what, rf_err *e) {
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= C)
            return rf_err_set(e, RF_EARG, "enas: %s label of row %d is %d, outside [0, %d)", what, i, y[i], C);
    return RF_OK;
}

static int check_opts(const rf_supernet *s, rf_controller *c, const rf_enas_opts *o, rf_err *e) {
    const rf_darts_opts *n = &o->net;
    if (n->epochs < 1 || n->batch < 1 || n->min_steps < 0 || !(n->lr > 0) || !(n->ce_weight >= 0) ||
        !(n->weight_decay >= 0) || !(n->clip >= 0))
        return rf_err_set(e, RF_EARG,
                          "enas: options out of range (epochs %d >= 1, batch %d >= 1, min steps %d >= 0, lr %g > 0, ce "
                          "weight %g >= 0, weight decay %g >= 0, clip %g >= 0)",
                          n->epochs, n->batch, n->min_steps, (double)n->lr, (double)n->ce_weight, (double)n->weight_decay,
                          (double)n->clip);
    if (o->ctrl_steps < 0 || o->ctrl_batch < 1 || o->final_samples < 0)
        return rf_err_set(e, RF_EARG, "enas: controller steps %d >= 0, paths per update %d >= 1, final samples %d >= 0",
                          o->ctrl_steps, o->ctrl_batch, o->final_samples);
    const int cal = isnan(o->reward_a) || isnan(o->reward_b);
    if (cal && !(isnan(o->reward_a) && isnan(o->reward_b)))
        return rf_err_set(e, RF_EARG, "enas: give both reward A and B, or neither (A = %g, B = %g)", o->reward_a, o->reward_b);
    if (!cal && (!(o->reward_a > 0) || !isfinite(o->reward_a) || !isfinite(o->reward_b)))
        return rf_err_set(e, RF_EARG, "enas: reward A = %g must be finite and > 0, B = %g finite", o->reward_a, o->reward_b);
    if (cal && o->calibrate < 2)
        return rf_err_set(e, RF_EARG, "enas: calibrating the reward needs at least 2 paths, got %d", o->calibrate);
    if (!c) return rf_err_set(e, RF_EARG, "enas: no controller");
    if (rf_controller_n_slots(c) != s->blocks)
        return rf_err_set(e, RF_EARG, "enas: the controller has %d decisions, the supernet %d blocks", rf_controller_n_slots(c),
                          s->blocks);
    for (int b = 0; b < s->blocks; b++)
        if (rf_controller_n_choices(c, b) != s->n_cands)
            return rf_err_set(e, RF_EARG, "enas: the controller's decision %d has %d choices, the supernet %d candidates", b,
                              rf_controller_n_choices(c, b), s->n_cands);
    return RF_OK;
}

typedef struct {
    size_t off, n;
} range;

int rf_enas_search(rf_supernet *s, rf_controller *c, const rf_matrix *train, const int *ytrain, const rf_matrix *val,
                   const int *yval, const rf_enas_opts *o, rf_enas_result *res_out, rf_err *e) {
    rf_enas_result tmp;
    rf_enas_result *res = res_out ? res_out : &tmp;
    memset(res, 0, sizeof *res);
    res->path_val_loss = res->greedy_val_loss = NAN;
    rf_flow *f = s->flow;
    const rf_darts_opts *no = &o->net;
    const int D = f->D, Bk = s->blocks, K = s->n_cands, cls = f->base.kind == RF_BASE_CLASS;
    if (!train || !val || train->n < 1 || val->n < 1)
        return rf_err_set(e, RF_EARG, "enas: training and validation rows are both required (got %d and %d)",
                          train ? train->n : 0, val ? val->n : 0);
    if (train->d != D || val->d != D)
        return rf_err_set(e, RF_EARG, "enas: the data have %d / %d columns (training / validation), the supernet %d", train->d,
                          val->d, D);
    int rc = check_opts(s, c, o, e);
    if (rc) return rc;
    if (cls) {
        if (!ytrain || !yval) return rf_err_set(e, RF_EARG, "enas: a class-conditional supernet needs training and validation labels");
        if ((rc = check_labels(ytrain, train->n, f->base.n_classes, "training", e)) ||
            (rc = check_labels(yval, val->n, f->base.n_classes, "validation", e)))
            return rc;
    }
    const int cal = isnan(o->reward_a);
    rf_reinforce_opts ro = o->reinforce;
    if (cal) {
        ro.reward_a = 1;
        ro.reward_b = 0;
    }
    rf_reinforce *rl = rf_reinforce_create(c, &ro, e);
    if (!rl) return e ? e->code : RF_EARG;
    if (no->threads > 0) rf_set_threads(no->threads);
    rf_rng rng;
    rf_rng_seed(&rng, no->seed);
    if ((rc = rf_supernet_set_drop(s, NULL, e)) || (rc = rf_supernet_prepare(s, train, no->standardize, no->init_batch, &rng, e))) {
        rf_reinforce_free(rl);
        return rc;
    }

    const int B = no->batch < train->n ? no->batch : train->n, BV = no->batch < val->n ? no->batch : val->n;
    const int BM = B > BV ? B : BV;
    const long per_epoch = (train->n + B - 1) / B, ep_min = (no->min_steps + per_epoch - 1) / per_epoch;
    const int epochs = ep_min > no->epochs ? (ep_min > 1000000 ? 1000000 : (int)ep_min) : no->epochs;
    const long total = per_epoch * epochs;
    const int nE = o->ctrl_batch > o->calibrate ? o->ctrl_batch : o->calibrate;
    const int nfin = 1 + o->final_samples, C = cls ? f->base.n_classes : 1;
    rf_adam adam = {0};
    scorer S = {.s = s, .val = val, .yval = yval, .cls = cls, .ce = cls ? no->ce_weight : 0.0f, .BV = BV, .rng = &rng};
    int *idx = malloc(sizeof(int) * (size_t)train->n), *path = malloc(sizeof(int) * (size_t)Bk);
    int *choices = malloc(sizeof(int) * (size_t)nE * Bk), *fin = malloc(sizeof(int) * (size_t)nfin * Bk);
    double *xs = malloc(sizeof(double) * (size_t)nE), *rw = malloc(sizeof(double) * (size_t)nE);
    range *rg = malloc(sizeof(range) * (size_t)(Bk * K + Bk));
    float *save = rf_floats(3 * f->n_params + 1, e);
    const int LPN = val->n > BM ? val->n : BM;
    S.vidx = malloc(sizeof(int) * (size_t)val->n);
    S.yb = malloc(sizeof(int) * (size_t)BM);
    S.xb = rf_floats((size_t)BM * D, e);
    S.lp = rf_floats((size_t)LPN, e);
    S.post = rf_floats((size_t)LPN * C, e);
    res->train_curve = calloc((size_t)epochs, sizeof(double));
    res->reward_curve = calloc((size_t)epochs, sizeof(double));
    res->score_curve = calloc((size_t)epochs, sizeof(double));
    res->entropy_curve = calloc((size_t)epochs, sizeof(double));
    res->reward_a = calloc((size_t)epochs, sizeof(double));
    res->reward_b = calloc((size_t)epochs, sizeof(double));
    res->path = malloc(sizeof(int) * (size_t)Bk);
    res->greedy = malloc(sizeof(int) * (size_t)Bk);
    res->blocks = Bk;
    if (!idx || !path || !choices || !fin || !xs || !rw || !rg || !save || !S.vidx || !S.yb || !S.xb || !S.lp || !S.post ||
        !res->train_curve || !res->reward_curve || !res->score_curve || !res->entropy_curve || !res->reward_a ||
        !res->reward_b || !res->path || !res->greedy) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = rf_adam_init(&adam, f->n_params, e))) goto out;
    S.ws = rf_flow_ws_create(f, BM, 0, e);
    const rf_flow_ws_opts eo = {.max_batch = val->n < 1024 ? val->n : 1024, .memory_saving = 1, .inference = 1};
    S.we = S.ws ? rf_flow_ws_create_opts(f, &eo, e) : NULL;
    if (!S.ws || !S.we) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    for (int b = 0; b < Bk; b++) {
        for (int k = 0; k < K; k++) rf_supernet_cand_range(s, b, k, &rg[b * K + k].off, &rg[b * K + k].n);
        rg[Bk * K + b].off = s->alpha_off[b];
        rg[Bk * K + b].n = (size_t)K;
    }
    for (int i = 0; i < val->n; i++) S.vidx[i] = i;
    rf_rng_shuffle(&rng, S.vidx, val->n);
    float *xb = S.xb;
    int *yb = S.yb;
    long step = 0, bad = 0, rows = 0;
    const double t0 = rf_now();
    double ra = o->reward_a, rb = o->reward_b;
    for (int ep = 0; ep < epochs && !res->interrupted; ep++) {
        /* 1. shared weights, one sampled path per batch */
        for (int i = 0; i < train->n; i++) idx[i] = i;
        rf_rng_shuffle(&rng, idx, train->n);
        double tl = 0;
        long tn = 0;
        for (long bi = 0; bi < per_epoch; bi++) {
            if (no->stop_flag && *no->stop_flag) {
                res->interrupted = 1;
                break;
            }
            if ((rc = rf_controller_sample(c, &rng, NULL, NULL, path, NULL, NULL, e))) goto out;
            rf_supernet_set_path(s, path, NULL);
            const int lo = (int)(bi * B), n = train->n - lo < B ? train->n - lo : B;
            for (int i = 0; i < n; i++) {
                memcpy(xb + (size_t)i * D, train->x + (size_t)idx[lo + i] * D, sizeof(float) * D);
                if (cls) yb[i] = ytrain[idx[lo + i]];
            }
            memset(f->grads, 0, sizeof(float) * f->n_params);
            const double loss = rf_flow_loss_grad(f, S.ws, n, xb, cls ? yb : NULL, S.ce);
            const double gnorm = rf_grad_norm(f->grads, f->n_params, S.ws);
            rows += n;
            step++;
            int skip = 0;
            if ((rc = rf__supernet_step_check("enas", "the shared weights", loss, gnorm, step, ep + 1, ENAS_MAX_BAD_STEPS, &bad, &res->skipped_steps,
                                              no->progress, &skip, e)))
                goto out;
            if (skip) continue;
            /* AdamW on what the path uses: the other candidates (and alpha) keep their values and
             * their moments (a lazy update, so a candidate is not moved by stale momentum) */
            size_t q = 0;
            for (int r = 0; r < Bk * K + Bk; r++) {
                if (r < Bk * K && r % K == path[r / K]) continue;
                memcpy(save + q, f->params + rg[r].off, sizeof(float) * rg[r].n);
                memcpy(save + q + rg[r].n, adam.m + rg[r].off, sizeof(float) * rg[r].n);
                memcpy(save + q + 2 * rg[r].n, adam.v + rg[r].off, sizeof(float) * rg[r].n);
                q += 3 * rg[r].n;
            }
            const double lr = rf_lr_schedule(no->lr, step - 1, total, 0, 1, 0.01);
            rf_adam_step_scaled(&adam, f->params, f->grads, rf_clip_scale(gnorm, no->clip), (float)lr, no->weight_decay, S.ws);
            q = 0;
            for (int r = 0; r < Bk * K + Bk; r++) {
                if (r < Bk * K && r % K == path[r / K]) continue;
                memcpy(f->params + rg[r].off, save + q, sizeof(float) * rg[r].n);
                memcpy(adam.m + rg[r].off, save + q + rg[r].n, sizeof(float) * rg[r].n);
                memcpy(adam.v + rg[r].off, save + q + 2 * rg[r].n, sizeof(float) * rg[r].n);
                q += 3 * rg[r].n;
            }
            tl += loss * n;
            tn += n;
        }
        if (res->interrupted) break;
        /* 2. the controller */
        if (cal) {
            for (int i = 0; i < o->calibrate; i++) {
                if ((rc = rf_controller_sample(c, &rng, NULL, NULL, path, NULL, NULL, e))) goto out;
                xs[i] = -path_val_batch(&S, path);
                rows += BV;
            }
            calibrate(xs, o->calibrate, &ra, &rb);
        }
        double rsum = 0, xsum = 0, hsum = 0;
        long nx = 0, nh = 0;
        for (int u = 0; u < o->ctrl_steps; u++) {
            for (int i = 0; i < o->ctrl_batch; i++) {
                int *ch = choices + (size_t)i * Bk;
                if ((rc = rf_controller_sample(c, &rng, NULL, NULL, ch, NULL, NULL, e))) goto out;
                xs[i] = -path_val_batch(&S, ch);
                rw[i] = rf_shaped_reward(xs[i], ra, rb, ro.reward_c);
                rows += BV;
                rsum += rw[i];
                if (isfinite(xs[i])) {
                    xsum += xs[i];
                    nx++;
                }
            }
            rf_reinforce_info info;
            if ((rc = rf_reinforce_update(rl, o->ctrl_batch, choices, rw, &info, e))) goto out;
            hsum += info.mean_entropy;
            nh++;
            res->ctrl_updates++;
        }
        res->train_curve[ep] = tn ? tl / tn : NAN;
        res->reward_curve[ep] = o->ctrl_steps ? rsum / ((double)o->ctrl_steps * o->ctrl_batch) : NAN;
        res->score_curve[ep] = nx ? xsum / nx : NAN;
        res->entropy_curve[ep] = nh ? hsum / nh : NAN;
        res->reward_a[ep] = ra;
        res->reward_b[ep] = rb;
        res->epochs_run = ep + 1;
        const int every = epochs > 25 ? (epochs + 24) / 25 : 1; /* at most ~25 progress lines */
        if (no->progress && ((ep + 1) % every == 0 || ep + 1 == epochs)) {
            const double el = rf_now() - t0, rate = el > 0 ? rows / el : 0;
            char eta[32], ops[512] = "";
            fmt_time(el / (ep + 1) * (epochs - ep - 1), eta, sizeof eta);
            if ((rc = rf_controller_sample(c, NULL, NULL, NULL, path, NULL, NULL, e))) goto out;
            for (int b = 0; b < Bk && strlen(ops) < sizeof ops - 40; b++)
                snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s%s", b ? "," : "", s->names[path[b]]);
            fprintf(stderr,
                    "enas: epoch %3d/%d  step %6ld  train %.4f  reward %.3f  x %.4f (threshold %.4f)  entropy %.3f  %8.0f "
                    "rows/s  ETA %s  greedy %s\n",
                    ep + 1, epochs, step, res->train_curve[ep], res->reward_curve[ep], res->score_curve[ep], rb / ra,
                    res->entropy_curve[ep], rate, eta, ops);
        }
    }
    res->steps = step;
    /* the final candidates: the greedy path and paths drawn from the policy, scored on all
     * validation rows; the best (ties: the earlier) is the result */
    if ((rc = rf_controller_sample(c, NULL, NULL, NULL, res->greedy, NULL, NULL, e))) goto out;
    memcpy(fin, res->greedy, sizeof(int) * (size_t)Bk);
    int nf = 1;
    for (int i = 0; i < o->final_samples; i++) {
        int *p = fin + (size_t)nf * Bk, dup = 0;
        if ((rc = rf_controller_sample(c, &rng, NULL, NULL, p, NULL, NULL, e))) goto out;
        for (int j = 0; j < nf && !dup; j++) dup = !memcmp(fin + (size_t)j * Bk, p, sizeof(int) * (size_t)Bk);
        if (!dup) nf++;
    }
    int best = 0;
    double bl = INFINITY;
    for (int j = 0; j < nf; j++) {
        const double l = path_loss(&S, S.we, fin + (size_t)j * Bk, val->n, val->x, yval);
        if (j == 0) res->greedy_val_loss = l;
        if (l < bl || j == 0) {
            bl = l;
            best = j;
        }
    }
    res->n_final = nf;
    memcpy(res->path, fin + (size_t)best * Bk, sizeof(int) * (size_t)Bk);
    res->path_val_loss = bl;
    rf_supernet_set_path(s, res->path, NULL);
    res->seconds = rf_now() - t0;
out:
    rf_reinforce_free(rl);
    rf_adam_free(&adam);
    rf_flow_ws_free(S.ws);
    rf_flow_ws_free(S.we);
    free(idx);
    free(path);
    free(choices);
    free(fin);
    free(xs);
    free(rw);
    free(rg);
    rf_free(save);
    free(S.vidx);
    free(S.yb);
    rf_free(S.xb);
    rf_free(S.lp);
    rf_free(S.post);
    if (res == &tmp) rf_enas_result_free(&tmp);
    return rc;
}

/* ======================================================================================
 * Studies
 * ====================================================================================== */

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* One ENAS search, discretised, trained and stored; *stored = 0 when the stop flag ended it. */
static int enas_trial(rf_study *st, const rf_search_job *job, const rf_enas_opts *o, const rf_supernet_cfg *cfg,
                      uint64_t seed, int index, int *stored, rf_err *e) {
    *stored = 0;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_supernet *sn = rf_supernet_create(cfg, &rng, e);
    if (!sn) return rf_err_prefix(e, RF_EARG, "enas");
    int nch[256];
    for (int b = 0; b < sn->blocks; b++) nch[b] = sn->n_cands;
    rf_controller *ctl = rf_controller_create(sn->blocks, nch, &o->ctrl, mix64(seed ^ 0xc7a1ULL), e);
    if (!ctl) {
        rf_supernet_free(sn);
        return rf_err_prefix(e, RF_EARG, "enas: the controller");
    }
    rf_enas_opts so = *o;
    so.net.seed = mix64(seed ^ 0xe7a5ULL);
    if (o->net.progress)
        fprintf(stderr,
                "search: enas search %d: %s supernet, %d blocks x %d candidates, %zu parameters; LSTM controller, %zu "
                "parameters; %d epochs (at least %d steps)\n",
                index + 1, rf_flow_type_name(cfg->spec.type), sn->blocks, sn->n_cands, sn->flow->n_params,
                rf_controller_n_params(ctl), o->net.epochs, o->net.min_steps);
    const rf_search_task *task = job->task;
    rf_enas_result er;
    rf_err se = {0};
    const double t0 = rf_now();
    int src = rf_enas_search(sn, ctl, &task->train, task->ytrain, &task->val, task->yval, &so, &er, &se);
    const double secs = rf_now() - t0;
    int path[256];
    int rc = RF_OK;
    if (src == RF_ENONFINITE) /* diverged: the policy's greedy path, stored as a failed trial */
        rc = rf_controller_sample(ctl, NULL, NULL, NULL, path, NULL, NULL, e);
    else if (!src && !er.interrupted)
        memcpy(path, er.path, sizeof(int) * (size_t)sn->blocks);
    rf_controller_free(ctl);
    if (rc || (!src && er.interrupted) || (src && src != RF_ENONFINITE)) {
        rf_enas_result_free(&er);
        rf_supernet_free(sn);
        if (src && src != RF_ENONFINITE && e) *e = se;
        return rc ? rc : src;
    }
    rf_flow *f = NULL;
    if (o->net.warm_start) {
        f = rf_supernet_discretize(sn, path, 0, e);
    } else {
        rf_rng r0;
        rf_rng_seed(&r0, seed);
        rf_supernet *s0 = rf_supernet_create(cfg, &r0, e);
        f = s0 ? rf_supernet_discretize(s0, path, 0, e) : NULL;
        rf_supernet_free(s0);
    }
    if (!f) {
        rc = e ? e->code : RF_ESTATE;
    } else if (src) {
        rf_config c;
        rf_trial *t = NULL;
        if (!(rc = rf_search_darts_config(job->space, sn, path, f, &c, e))) {
            rc = rf_study_ask_fixed(st, &c, 0, &t, e);
            rf_config_free(&c);
            char reason[700];
            snprintf(reason, sizeof reason, "ENAS search failed: %.600s", se.msg);
            if (!rc) rc = rf_study_tell(st, t, RF_TRIAL_FAILED, NULL, 0, reason, e);
            if (!rc && o->net.progress) fprintf(stderr, "search: enas trial %d failed: %s\n", t->number, reason);
            rf_trial_free(t);
            if (!rc) *stored = 1;
        }
    } else {
        cJSON *info = cJSON_CreateObject();
        if (info) {
            cJSON_AddItemToObject(info, "supernet", rf_supernet_to_json(sn, path));
            cJSON_AddItemToObject(info, "search", rf_enas_result_to_json(&er, sn));
            char sd[32];
            snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
            cJSON_AddStringToObject(info, "seed", sd);
            cJSON_AddBoolToObject(info, "warm_start", o->net.warm_start);
            cJSON_AddNumberToObject(info, "reward_c", o->reinforce.reward_c);
            cJSON_AddBoolToObject(info, "reward_calibrated", isnan(o->reward_a));
        }
        rc = rf_search_supernet_store(st, job, sn, path, f, o->net.warm_start, secs, "enas", info, o->net.progress, e);
        if (!rc) *stored = 1;
    }
    rf_flow_free(f);
    rf_enas_result_free(&er);
    rf_supernet_free(sn);
    return rc;
}

int rf_search_enas_run(rf_study *st, const rf_search_job *job, const rf_enas_opts *o, int *n_run, rf_err *e) {
    if (n_run) *n_run = 0;
    rf_supernet_cfg cfg;
    int rc = rf_search_supernet_cfg(job, &o->net, &cfg, e);
    if (!rc) rc = rf_search_supernet_check_space(job, &o->net, e);
    if (!rc && cfg.spec.blocks > 256) rc = rf_err_set(e, RF_EARG, "enas: at most 256 blocks, got %d", cfg.spec.blocks);
    if (!rc) rc = rf_study_requeue_stale(st, 0, NULL, e);
    if (rc) return rc;
    int counted = rf_search_supernet_counted_trials(st, e);
    if (counted < 0) return e ? e->code : RF_EIO;
    const int limit = o->net.trials > 0 ? o->net.trials : counted + 1;
    const double t0 = rf_now();
    while (counted < limit) {
        if (o->net.stop_flag && *o->net.stop_flag) break;
        if (o->net.time_budget > 0 && rf_now() - t0 >= o->net.time_budget) break;
        const uint64_t seed = mix64(rf_study_seed(st) ^ mix64(0xe7a500000000ULL + (uint64_t)counted));
        int stored = 0;
        rc = enas_trial(st, job, o, &cfg, seed, counted, &stored, e);
        if (rc) return rc;
        if (!stored) break;
        counted++;
        if (n_run) (*n_run)++;
    }
    return RF_OK;
}
