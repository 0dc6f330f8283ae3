/* DARTS over the conditioners of coupling flows (renflow/supernet.h): the first-order bilevel
 * search on a supernet, and the study runner that discretises the argmax architecture, trains it
 * with the job's settings and stores it as a trial.
 *
 * One step of the search (Liu et al. 2019, Algorithm 1 with xi = 0):
 *   1. alpha <- Adam(alpha, d L_val(w, alpha) / d alpha)     on the next validation batch
 *   2. w     <- AdamW(w, d L_train(w, alpha) / d w)          on the next training batch
 * Both gradients come from one rf_flow_loss_grad on the supernet flow (whose parameters hold
 * alpha and w); each step keeps the part it owns. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "renflow/features.h"
#include "renflow/supernet.h"
#include "search_internal.h"
#include "../core/json_util.h"

#define DARTS_MAX_BAD_STEPS 20

void rf_darts_opts_default(rf_darts_opts *o) {
    memset(o, 0, sizeof *o);
    o->flow = RF_FLOW_NSF;
    o->blocks = 4;
    o->hidden = 64;
    o->alpha_init = 1e-3f;
    o->epochs = 20;
    o->min_steps = 400;
    o->batch = 256;
    o->lr = 1e-3f;
    o->weight_decay = 0.0f;
    o->clip = 5.0f;
    o->alpha_lr = 3e-3f;
    o->alpha_weight_decay = 1e-3f;
    o->warmup_epochs = 0;
    o->drop_prob = 0.5f;
    o->ce_weight = 1.0f;
    o->init_batch = 1024;
    o->standardize = 1;
    o->warm_start = 1;
    o->seed = 1;
    o->progress = 1;
}

void rf_darts_result_free(rf_darts_result *r) {
    if (!r) return;
    free(r->train_curve);
    free(r->val_curve);
    free(r->val_nll_curve);
    free(r->weights_curve);
    free(r->path);
    memset(r, 0, sizeof *r);
}


cJSON *rf_darts_result_to_json(const rf_darts_result *r, const rf_supernet *s) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddNumberToObject(j, "epochs_run", r->epochs_run);
    cJSON_AddNumberToObject(j, "steps", (double)r->steps);
    cJSON_AddNumberToObject(j, "skipped_steps", (double)r->skipped_steps);
    cJSON_AddNumberToObject(j, "seconds", r->seconds);
    cJSON_AddNumberToObject(j, "rows_per_sec", r->rows_per_sec);
    cJSON_AddBoolToObject(j, "interrupted", r->interrupted);
    cJSON_AddStringToObject(j, "order", "first");
    cJSON_AddItemToObject(j, "train_loss", rf_json_num_array_or_null(r->train_curve, r->epochs_run));
    cJSON_AddItemToObject(j, "val_loss", rf_json_num_array_or_null(r->val_curve, r->epochs_run));
    cJSON_AddItemToObject(j, "val_nll", rf_json_num_array_or_null(r->val_nll_curve, r->epochs_run));
    cJSON *w = cJSON_AddArrayToObject(j, "weights_per_epoch");
    for (int ep = 0; w && r->weights_curve && ep < r->epochs_run; ep++) {
        cJSON *eb = cJSON_CreateArray();
        for (int b = 0; eb && b < r->blocks; b++)
            cJSON_AddItemToArray(eb, cJSON_CreateDoubleArray(r->weights_curve + ((size_t)ep * r->blocks + b) * r->n_cands,
                                                             r->n_cands));
        cJSON_AddItemToArray(w, eb);
    }
    if (s && r->path) {
        cJSON *p = cJSON_AddArrayToObject(j, "path");
        for (int b = 0; p && b < r->blocks; b++) cJSON_AddItemToArray(p, cJSON_CreateString(s->names[r->path[b]]));
    }
    return j;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

static int check_labels(const int *y, int n, int C, const char *what, rf_err *e) {
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= C)
            return rf_err_set(e, RF_EARG, "darts: %s label of row %d is %d, outside [0, %d)", what, i, y[i], C);
    return RF_OK;
}

int rf_darts_search(rf_supernet *s, const rf_matrix *train, const int *ytrain, const rf_matrix *val, const int *yval,
                    const rf_darts_opts *o, rf_darts_result *res_out, rf_err *e) {
    rf_darts_result tmp;
    rf_darts_result *res = res_out ? res_out : &tmp;
    memset(res, 0, sizeof *res);
    rf_flow *f = s->flow;
    const int D = f->D, Bk = s->blocks, K = s->n_cands, cls = f->base.kind == RF_BASE_CLASS;
    if (!train || !val || train->n < 1 || val->n < 1)
        return rf_err_set(e, RF_EARG, "darts: training and validation rows are both required (got %d and %d)",
                          train ? train->n : 0, val ? val->n : 0);
    if (train->d != D || val->d != D)
        return rf_err_set(e, RF_EARG, "darts: the data have %d / %d columns (training / validation), the supernet %d",
                          train->d, val->d, D);
    if (o->epochs < 1 || o->batch < 1 || o->min_steps < 0 || !(o->lr > 0) || !(o->alpha_lr >= 0) || o->warmup_epochs < 0 ||
        !(o->ce_weight >= 0) || !(o->weight_decay >= 0) || !(o->alpha_weight_decay >= 0) || !(o->clip >= 0) ||
        !(o->drop_prob >= 0 && o->drop_prob < 1))
        return rf_err_set(e, RF_EARG,
                          "darts: options out of range (epochs %d >= 1, batch %d >= 1, lr %g > 0, alpha lr %g >= 0, "
                          "warm-up epochs %d >= 0, ce weight %g >= 0, weight decays %g / %g >= 0, clip %g >= 0, "
                          "drop probability %g in [0, 1))",
                          o->epochs, o->batch, (double)o->lr, (double)o->alpha_lr, o->warmup_epochs,
                          (double)o->ce_weight, (double)o->weight_decay, (double)o->alpha_weight_decay, (double)o->clip,
                          (double)o->drop_prob);
    if (cls) {
        if (!ytrain || !yval) return rf_err_set(e, RF_EARG, "darts: a class-conditional supernet needs training and validation labels");
        int rc = check_labels(ytrain, train->n, f->base.n_classes, "training", e);
        if (!rc) rc = check_labels(yval, val->n, f->base.n_classes, "validation", e);
        if (rc) return rc;
    }
    const int *yt = cls ? ytrain : NULL, *yv = cls ? yval : NULL;
    if (o->threads > 0) rf_set_threads(o->threads);
    int rc = rf_supernet_set_path(s, NULL, e);
    if (!rc) rc = rf_supernet_set_drop(s, NULL, e);
    if (rc) return rc;
    rf_rng rng;
    rf_rng_seed(&rng, o->seed);
    if ((rc = rf_supernet_prepare(s, train, o->standardize, o->init_batch, &rng, e))) return rc;

    const int B = o->batch < train->n ? o->batch : train->n, BV = o->batch < val->n ? o->batch : val->n;
    const long per_epoch = (train->n + B - 1) / B;
    const long ep_min = (o->min_steps + per_epoch - 1) / per_epoch;
    const int epochs = ep_min > o->epochs ? (ep_min > 1000000 ? 1000000 : (int)ep_min) : o->epochs;
    const long total = per_epoch * epochs;
    const int nA = Bk * K;
    rf_adam aw = {0}, aa = {0};
    rf_flow_ws *ws = NULL, *we = NULL;
    int *idx = malloc(sizeof(int) * (size_t)train->n), *vidx = malloc(sizeof(int) * (size_t)val->n);
    int *yb = malloc(sizeof(int) * (size_t)(B > BV ? B : BV));
    float *xb = rf_floats((size_t)(B > BV ? B : BV) * D, e);
    float *abuf = rf_floats((size_t)nA, e), *gbuf = rf_floats((size_t)nA, e);
    uint32_t *drop = calloc((size_t)Bk, sizeof *drop);
    res->train_curve = calloc((size_t)epochs, sizeof(double));
    res->val_curve = calloc((size_t)epochs, sizeof(double));
    res->val_nll_curve = calloc((size_t)epochs, sizeof(double));
    res->weights_curve = calloc((size_t)epochs * nA, sizeof(double));
    res->path = malloc(sizeof(int) * (size_t)Bk);
    res->blocks = Bk;
    res->n_cands = K;
    if (!idx || !vidx || !yb || !xb || !abuf || !gbuf || !drop || !res->train_curve || !res->val_curve || !res->val_nll_curve ||
        !res->weights_curve || !res->path) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = rf_adam_init(&aw, f->n_params, e)) || (rc = rf_adam_init(&aa, (size_t)nA, e))) goto out;
    ws = rf_flow_ws_create(f, B > BV ? B : BV, 0, e);
    const rf_flow_ws_opts eo = {.max_batch = val->n < 1024 ? val->n : 1024, .memory_saving = 1, .inference = 1};
    we = ws ? rf_flow_ws_create_opts(f, &eo, e) : NULL;
    if (!ws || !we) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    for (int i = 0; i < val->n; i++) vidx[i] = i;
    rf_rng_shuffle(&rng, vidx, val->n);
    int vpos = 0;
    long step = 0, bad = 0, rows = 0;
    const double t0 = rf_now();
    for (int ep = 0; ep < epochs && !res->interrupted; ep++) {
        for (int i = 0; i < train->n; i++) idx[i] = i;
        rf_rng_shuffle(&rng, idx, train->n);
        double tl = 0, vl = 0;
        long tn = 0, vn = 0;
        for (long bi = 0; bi < per_epoch; bi++) {
            if (o->stop_flag && *o->stop_flag) {
                res->interrupted = 1;
                break;
            }
            /* 1. architecture step on the next validation batch */
            if (ep >= o->warmup_epochs && o->alpha_lr > 0) {
                if (vpos + BV > val->n) {
                    rf_rng_shuffle(&rng, vidx, val->n);
                    vpos = 0;
                }
                for (int i = 0; i < BV; i++) {
                    memcpy(xb + (size_t)i * D, val->x + (size_t)vidx[vpos + i] * D, sizeof(float) * D);
                    if (yv) yb[i] = yv[vidx[vpos + i]];
                }
                vpos += BV;
                memset(f->grads, 0, sizeof(float) * f->n_params);
                const double vloss = rf_flow_loss_grad(f, ws, BV, xb, yv ? yb : NULL, cls ? o->ce_weight : 0.0f);
                for (int b = 0; b < Bk; b++) memcpy(gbuf + (size_t)b * K, f->grads + s->alpha_off[b], sizeof(float) * K);
                rows += BV;
                if (isfinite(vloss) && rf_all_finite(gbuf, (size_t)nA)) {
                    for (int b = 0; b < Bk; b++) memcpy(abuf + (size_t)b * K, f->params + s->alpha_off[b], sizeof(float) * K);
                    rf_adam_step(&aa, abuf, gbuf, o->alpha_lr, o->alpha_weight_decay);
                    for (int b = 0; b < Bk; b++) memcpy(f->params + s->alpha_off[b], abuf + (size_t)b * K, sizeof(float) * K);
                    vl += vloss;
                    vn++;
                } else {
                    res->skipped_steps++;
                }
            }
            /* 2. weight step on the next training batch (alpha keeps its value) */
            const int lo = (int)(bi * B), n = train->n - lo < B ? train->n - lo : B;
            for (int i = 0; i < n; i++) {
                memcpy(xb + (size_t)i * D, train->x + (size_t)idx[lo + i] * D, sizeof(float) * D);
                if (yt) yb[i] = yt[idx[lo + i]];
            }
            if (o->drop_prob > 0) {
                for (int b = 0; b < Bk; b++) {
                    drop[b] = 0;
                    for (int k = 0; k < K; k++)
                        if (rf_rng_uniform(&rng) < o->drop_prob) drop[b] |= 1u << k;
                    if (K < 32 && drop[b] == (1u << K) - 1u) drop[b] &= ~(1u << rf_rng_below(&rng, (uint64_t)K));
                    if (K == 32 && drop[b] == 0xffffffffu) drop[b] &= ~(1u << rf_rng_below(&rng, 32));
                }
                rf_supernet_set_drop(s, drop, NULL);
            }
            memset(f->grads, 0, sizeof(float) * f->n_params);
            const double loss = rf_flow_loss_grad(f, ws, n, xb, yt ? yb : NULL, cls ? o->ce_weight : 0.0f);
            if (o->drop_prob > 0) rf_supernet_set_drop(s, NULL, NULL);
            for (int b = 0; b < Bk; b++) memset(f->grads + s->alpha_off[b], 0, sizeof(float) * K);
            const double gnorm = rf_grad_norm(f->grads, f->n_params, ws);
            rows += n;
            step++;
            int skip = 0;
            if ((rc = rf__supernet_step_check("darts", "the search", loss, gnorm, step, ep + 1, DARTS_MAX_BAD_STEPS, &bad, &res->skipped_steps,
                                              o->progress, &skip, e)))
                goto out;
            if (skip) continue;
            const double lr = rf_lr_schedule(o->lr, step - 1, total, 0, 1, 0.01);
            for (int b = 0; b < Bk; b++) memcpy(abuf + (size_t)b * K, f->params + s->alpha_off[b], sizeof(float) * K);
            rf_adam_step_scaled(&aw, f->params, f->grads, rf_clip_scale(gnorm, o->clip), (float)lr, o->weight_decay, ws);
            for (int b = 0; b < Bk; b++) memcpy(f->params + s->alpha_off[b], abuf + (size_t)b * K, sizeof(float) * K);
            tl += loss * n;
            tn += n;
        }
        if (res->interrupted) break;
        const double vnll = rf_eval_nll(f, we, val, yv, NULL);
        res->train_curve[ep] = tn ? tl / tn : NAN;
        res->val_curve[ep] = vn ? vl / vn : NAN;
        res->val_nll_curve[ep] = vnll;
        for (int b = 0; b < Bk; b++) rf_supernet_weights(s, b, res->weights_curve + ((size_t)ep * Bk + b) * K);
        res->epochs_run = ep + 1;
        const int every = epochs > 25 ? (epochs + 24) / 25 : 1; /* at most ~25 progress lines */
        if (o->progress && ((ep + 1) % every == 0 || ep + 1 == epochs)) {
            const double el = rf_now() - t0, rate = el > 0 ? rows / el : 0;
            char eta[32], ops[512] = "";
            fmt_time(el / (ep + 1) * (epochs - ep - 1), eta, sizeof eta);
            int am[1];
            for (int b = 0; b < Bk && strlen(ops) < sizeof ops - 48; b++) {
                const double *w = res->weights_curve + ((size_t)ep * Bk + b) * K;
                am[0] = 0;
                for (int k = 1; k < K; k++)
                    if (w[k] > w[am[0]]) am[0] = k;
                snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s%s:%.2f", b ? " " : "", s->names[am[0]], w[am[0]]);
            }
            fprintf(stderr, "darts: epoch %3d/%d  step %6ld  train %.4f  val %.4f  val-nll %.4f  %8.0f rows/s  ETA %s  ops %s\n",
                    ep + 1, epochs, step, res->train_curve[ep], res->val_curve[ep], vnll, rate, eta, ops);
        }
    }
    res->steps = step;
    res->seconds = rf_now() - t0;
    res->rows_per_sec = res->seconds > 0 ? rows / res->seconds : 0;
    rf_supernet_argmax(s, res->path);
out:
    rf_adam_free(&aw);
    rf_adam_free(&aa);
    rf_flow_ws_free(ws);
    rf_flow_ws_free(we);
    free(idx);
    free(vidx);
    free(yb);
    rf_free(xb);
    rf_free(abuf);
    rf_free(gbuf);
    free(drop);
    rf_supernet_set_drop(s, NULL, NULL);
    if (res == &tmp) rf_darts_result_free(&tmp);
    return rc;
}

/* ======================================================================================
 * Studies
 * ====================================================================================== */

static int resolve_cands(const rf_darts_opts *o, rf_supernet_cand *c, int *n, rf_err *e) {
    if (o->n_cands <= 0) {
        *n = rf_supernet_cands_default(c);
        return RF_OK;
    }
    if (o->n_cands > RF_SUPERNET_MAX_CANDS)
        return rf_err_set(e, RF_EARG, "darts: at most %d candidates, got %d", RF_SUPERNET_MAX_CANDS, o->n_cands);
    memcpy(c, o->cands, sizeof(rf_supernet_cand) * (size_t)o->n_cands);
    *n = o->n_cands;
    return RF_OK;
}

#define DARTS_MAX_BLOCKS 200 /* one space parameter per block */

rf_space *rf_search_darts_space(const rf_darts_opts *o, rf_err *e) {
    rf_supernet_cand c[RF_SUPERNET_MAX_CANDS];
    int n = 0;
    if (resolve_cands(o, c, &n, e)) return NULL;
    if (o->blocks < 1 || o->blocks > DARTS_MAX_BLOCKS) {
        rf_err_set(e, RF_EARG, "darts: blocks must be in [1, %d], got %d", DARTS_MAX_BLOCKS, o->blocks);
        return NULL;
    }
    cJSON *j = cJSON_CreateObject(), *ps = j ? cJSON_AddArrayToObject(j, "parameters") : NULL;
    if (!ps) {
        cJSON_Delete(j);
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    cJSON_AddStringToObject(j, "name", "darts");
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "name", "flow");
    cJSON_AddStringToObject(p, "type", "categorical");
    const char *flows[3] = {"realnvp", "glow", "nsf"};
    cJSON_AddItemToObject(p, "choices", cJSON_CreateStringArray(flows, 3));
    cJSON_AddItemToArray(ps, p);
    const char *names[RF_SUPERNET_MAX_CANDS];
    char buf[RF_SUPERNET_MAX_CANDS][32];
    for (int k = 0; k < n; k++) {
        rf_supernet_cand_name(&c[k], buf[k], sizeof buf[k]);
        names[k] = buf[k];
    }
    for (int b = 0; b < o->blocks; b++) {
        char nm[32];
        snprintf(nm, sizeof nm, "op-%d", b + 1);
        p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", nm);
        cJSON_AddStringToObject(p, "type", "categorical");
        cJSON_AddItemToObject(p, "choices", cJSON_CreateStringArray(names, n));
        cJSON_AddItemToArray(ps, p);
    }
    static const struct {
        const char *name;
        double hi;
        int log;
    } ints[3] = {{"hidden", 1e6, 1}, {"hidden-layers", 64, 0}, {"params", 1e12, 1}};
    for (int i = 0; i < 3; i++) {
        p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", ints[i].name);
        cJSON_AddStringToObject(p, "type", "int");
        cJSON_AddNumberToObject(p, "low", 1);
        cJSON_AddNumberToObject(p, "high", ints[i].hi);
        if (ints[i].log) cJSON_AddBoolToObject(p, "log", 1);
        cJSON_AddItemToArray(ps, p);
    }
    rf_space *sp = rf_space_from_json(j, "built-in darts space", e);
    cJSON_Delete(j);
    return sp;
}

int rf_search_supernet_cfg(const rf_search_job *job, const rf_darts_opts *o, rf_supernet_cfg *c, rf_err *e) {
    const int D = job->task->train.d;
    if (o->flow != RF_FLOW_REALNVP && o->flow != RF_FLOW_GLOW && o->flow != RF_FLOW_NSF)
        return rf_err_set(e, RF_EARG, "darts: flow %s is not a coupling flow (realnvp, glow, nsf)", rf_flow_type_name(o->flow));
    rf_supernet_cfg_default(c, o->flow, D);
    c->spec.blocks = o->blocks;
    c->spec.hidden = o->hidden;
    c->spec.clamp = job->base_spec.clamp;
    c->spec.bins = job->base_spec.bins;
    c->spec.bound = job->base_spec.bound;
    c->spec.base = job->base_spec.base;
    c->spec.n_classes = job->base_spec.n_classes;
    c->alpha_init = o->alpha_init;
    return resolve_cands(o, c->cands, &c->n_cands, e);
}

int rf_search_darts_config(const rf_space *sp, const rf_supernet *s, const int *path, const rf_flow *f, rf_config *c,
                           rf_err *e) {
    int rc = rf_config_init(c, sp, e);
    if (rc) return rc;
    int H = 1, L = 1;
    rc = rf_config_set(sp, c, "flow", 0, rf_flow_type_name(s->spec.type), e);
    for (int b = 0; !rc && b < s->blocks; b++) {
        char nm[32];
        snprintf(nm, sizeof nm, "op-%d", b + 1);
        rc = rf_config_set(sp, c, nm, 0, s->names[path[b]], e);
        const rf_supernet_cand *cd = &s->cands[path[b]];
        if (!cd->zero) {
            if (cd->hidden > H) H = cd->hidden;
            if (cd->n_hidden > L) L = cd->n_hidden;
        }
    }
    if (!rc) rc = rf_config_set(sp, c, "hidden", H, NULL, e);
    if (!rc) rc = rf_config_set(sp, c, "hidden-layers", L, NULL, e);
    if (!rc) rc = rf_config_set(sp, c, "params", (double)(f->n_params > 0 ? f->n_params : 1), NULL, e);
    if (!rc) rc = rf_config_check(sp, c, e);
    if (rc) {
        rf_config_free(c);
        return rf_err_prefix(e, rc, "darts: the study's space does not describe this supernet (use rf_search_darts_space "
                                    "with the same blocks and candidates)");
    }
    return RF_OK;
}

/* The model's meta: what rf_search_objective records (data, rows, input transform, class counts,
 * training settings, date, "search": study, trial, configuration, values), plus `info` under
 * `key` ("darts" / "enas"). */
static void search_meta(const rf_search_job *j, rf_flow *f, rf_study *st, const rf_trial *t, const rf_train_cfg *tc,
                        const double *values, const char *key, cJSON *info) {
    rf_search_set_meta(j, f, rf_study_path(st), rf_study_name(st), t, tc, values, NULL);
    cJSON *m = f->meta;
    if (!m) {
        cJSON_Delete(info);
        return;
    }
    cJSON *s = cJSON_GetObjectItemCaseSensitive(m, "search");
    if (s) cJSON_AddStringToObject(s, "strategy", key);
    cJSON_DeleteItemFromObjectCaseSensitive(m, key);
    if (info) cJSON_AddItemToObject(m, key, info);
}

int rf_search_supernet_store(rf_study *st, const rf_search_job *job, const rf_supernet *s, const int *path, rf_flow *f,
                             int warm_start, double search_seconds, const char *key, cJSON *info, int progress,
                             rf_err *e) {
    rf_config c;
    int rc = rf_search_darts_config(job->space, s, path, f, &c, e);
    if (rc) {
        cJSON_Delete(info);
        return rc;
    }
    rf_trial *t = NULL;
    rc = rf_study_ask_fixed(st, &c, 0, &t, e);
    rf_config_free(&c);
    if (rc) {
        cJSON_Delete(info);
        return rc;
    }
    rf_train_cfg tc = job->base_train;
    tc.seed = t->seed;
    tc.out_path = NULL;
    tc.checkpoint_path = NULL;
    tc.resume = 0;
    tc.progress = 0;
    tc.stop_flag = NULL; /* a trial is never cut short */
    if (warm_start) {    /* the supernet's standardisation and ActNorm values stay */
        tc.standardize = 0;
        tc.init_batch = 0;
    }
    char reason[512] = "";
    double values[RF_MAX_OBJECTIVES];
    rf_train_result res;
    memset(&res, 0, sizeof res);
    rf_err te = {0};
    if (job->max_params > 0 && f->n_params > job->max_params) {
        snprintf(reason, sizeof reason, "the flow has %zu parameters, more than the limit of %zu", f->n_params,
                 job->max_params);
    } else {
        int trc = rf_search_train_eval(job, f, &tc, values, &res, &te);
        for (int ep = 0; ep < res.epochs_run && !rc; ep++)
            if (res.val_curve && isfinite(res.val_curve[ep])) rc = rf_study_report(st, t, ep + 1, res.val_curve[ep], e);
        if (trc) snprintf(reason, sizeof reason, "%s: %.480s", trc == RF_ENONFINITE ? "diverged" : "training failed", te.msg);
        for (int k = 0; !trc && !reason[0] && k < job->n_metrics; k++) {
            if (job->metrics[k] == RF_METRIC_TIME) values[k] += search_seconds; /* the search is part of the cost */
            if (!isfinite(values[k]))
                snprintf(reason, sizeof reason, "objective %s is %g", rf_search_metric_name(job->metrics[k]), values[k]);
        }
    }
    if (!rc && !reason[0]) {
        search_meta(job, f, st, t, &tc, values, key, info);
        info = NULL;
        rc = rf_search_keep_model(job, st, t, f, values, e);
        if (!rc) rc = rf_study_tell(st, t, RF_TRIAL_COMPLETE, values, job->n_metrics, NULL, e);
        if (!rc && progress) {
            char ops[600] = "";
            for (int b = 0; b < s->blocks && strlen(ops) < sizeof ops - 40; b++)
                snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "%s%s", b ? "," : "", s->names[path[b]]);
            fprintf(stderr, "search: %s trial %d: ops %s, %zu parameters: %s %.6g (search %.1fs, training %.1fs)\n", key,
                    t->number, ops, f->n_params, rf_search_metric_name(job->metrics[0]), values[0], search_seconds,
                    res.seconds);
        }
    } else if (!rc) {
        rc = rf_study_tell(st, t, RF_TRIAL_FAILED, NULL, 0, reason, e);
        if (!rc && progress) fprintf(stderr, "search: %s trial %d failed: %s\n", key, t->number, reason);
    }
    if (rc) {
        rf_err xe = {0};
        rf_study_tell(st, t, RF_TRIAL_FAILED, NULL, 0, e ? e->msg : "error", &xe);
    }
    cJSON_Delete(info);
    rf_train_result_free(&res);
    rf_trial_free(t);
    return rc;
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

int rf_search_supernet_counted_trials(rf_study *st, rf_err *e) {
    int counts[RF_TRIAL_NSTATUS];
    if (rf_study_counts(st, counts, e) || rf_study_refresh(st, e)) return -1;
    int lost = 0;
    for (int i = 0; i < rf_study_n_finished(st); i++) lost += rf_study_finished(st, i)->lost;
    return counts[RF_TRIAL_RUNNING] + counts[RF_TRIAL_COMPLETE] + counts[RF_TRIAL_FAILED] + counts[RF_TRIAL_PRUNED] - lost;
}

int rf_search_supernet_check_space(const rf_search_job *job, const rf_darts_opts *o, rf_err *e) {
    rf_space *sp = rf_search_darts_space(o, e);
    if (!sp) return e ? e->code : RF_EARG;
    rf_err ce = {0};
    int rc = job->space ? rf_space_compare(job->space, sp, &ce) : RF_EARG;
    rf_space_free(sp);
    if (rc)
        return rf_err_set(e, RF_EARG,
                          "supernet search: the job's space is not the darts space of these options (%s); open the "
                          "study with rf_search_darts_space of the same blocks and candidates",
                          job->space ? ce.msg : "no space");
    return RF_OK;
}

/* One DARTS search, discretised, trained and stored. *stored = 0 when the stop flag ended the
 * search (nothing is stored then). */
static int darts_trial(rf_study *st, const rf_search_job *job, const rf_darts_opts *o, const rf_supernet_cfg *cfg,
                       uint64_t seed, int index, int *stored, rf_err *e) {
    *stored = 0;
    rf_rng rng;
    rf_rng_seed(&rng, seed);
    rf_supernet *sn = rf_supernet_create(cfg, &rng, e);
    if (!sn) return rf_err_prefix(e, RF_EARG, "darts");
    rf_darts_opts so = *o;
    so.seed = mix64(seed ^ 0xda75ULL);
    if (o->progress)
        fprintf(stderr,
                "search: darts search %d: %s supernet, %d blocks x %d candidates, %zu parameters, %d epochs (at least "
                "%d steps)\n", index + 1, rf_flow_type_name(cfg->spec.type), sn->blocks, sn->n_cands, sn->flow->n_params,
                o->epochs, o->min_steps);
    const rf_search_task *task = job->task;
    rf_darts_result dr;
    rf_err se = {0};
    const double t0 = rf_now();
    int src = rf_darts_search(sn, &task->train, task->ytrain, &task->val, task->yval, &so, &dr, &se);
    const double secs = rf_now() - t0;
    if (!src && dr.interrupted) {
        rf_darts_result_free(&dr);
        rf_supernet_free(sn);
        return RF_OK;
    }
    if (src && src != RF_ENONFINITE) { /* bad options or memory: not a property of the architecture */
        rf_darts_result_free(&dr);
        rf_supernet_free(sn);
        if (e) *e = se;
        return src;
    }
    int path[DARTS_MAX_BLOCKS];
    rf_supernet_argmax(sn, path);
    rf_flow *f = NULL;
    int rc = RF_OK;
    if (o->warm_start) {
        f = rf_supernet_discretize(sn, path, 1, e);
    } else { /* the same architecture with the supernet's initial weights: a fresh start */
        rf_rng r0;
        rf_rng_seed(&r0, seed);
        rf_supernet *s0 = rf_supernet_create(cfg, &r0, e);
        f = s0 ? rf_supernet_discretize(s0, path, 0, e) : NULL;
        rf_supernet_free(s0);
    }
    if (!f) {
        rc = e ? e->code : RF_ESTATE;
    } else if (src) { /* the search diverged: a failed trial with its (argmax) architecture */
        rf_config c;
        rf_trial *t = NULL;
        if (!(rc = rf_search_darts_config(job->space, sn, path, f, &c, e))) {
            rc = rf_study_ask_fixed(st, &c, 0, &t, e);
            rf_config_free(&c);
            char reason[700];
            snprintf(reason, sizeof reason, "DARTS search failed: %.600s", se.msg);
            if (!rc) rc = rf_study_tell(st, t, RF_TRIAL_FAILED, NULL, 0, reason, e);
            if (!rc && o->progress) fprintf(stderr, "search: darts trial %d failed: %s\n", t->number, reason);
            rf_trial_free(t);
            if (!rc) *stored = 1;
        }
    } else {
        cJSON *info = cJSON_CreateObject();
        if (info) {
            cJSON_AddItemToObject(info, "supernet", rf_supernet_to_json(sn, path));
            cJSON_AddItemToObject(info, "search", rf_darts_result_to_json(&dr, sn));
            char sd[32];
            snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
            cJSON_AddStringToObject(info, "seed", sd);
            cJSON_AddBoolToObject(info, "warm_start", o->warm_start);
            cJSON_AddNumberToObject(info, "alpha_lr", o->alpha_lr);
            cJSON_AddNumberToObject(info, "search_epochs", o->epochs);
        }
        rc = rf_search_supernet_store(st, job, sn, path, f, o->warm_start, secs, "darts", info, o->progress, e);
        if (!rc) *stored = 1;
    }
    rf_flow_free(f);
    rf_darts_result_free(&dr);
    rf_supernet_free(sn);
    return rc;
}

int rf_search_darts_run(rf_study *st, const rf_search_job *job, const rf_darts_opts *o, int *n_run, rf_err *e) {
    if (n_run) *n_run = 0;
    rf_supernet_cfg cfg;
    int rc = rf_search_supernet_cfg(job, o, &cfg, e);
    if (!rc) rc = rf_search_supernet_check_space(job, o, e);
    if (!rc) rc = rf_study_requeue_stale(st, 0, NULL, e); /* a trial of a dead worker is not run again */
    if (rc) return rc;
    int counted = rf_search_supernet_counted_trials(st, e);
    if (counted < 0) return e ? e->code : RF_EIO;
    const int limit = o->trials > 0 ? o->trials : counted + 1;
    const double t0 = rf_now();
    while (counted < limit) {
        if (o->stop_flag && *o->stop_flag) break;
        if (o->time_budget > 0 && rf_now() - t0 >= o->time_budget) break;
        const uint64_t seed = mix64(rf_study_seed(st) ^ mix64(0xda7500000000ULL + (uint64_t)counted));
        int stored = 0;
        rc = darts_trial(st, job, o, &cfg, seed, counted, &stored, e);
        if (rc) return rc;
        if (!stored) break; /* stopped */
        counted++;
        if (n_run) (*n_run)++;
    }
    return RF_OK;
}
