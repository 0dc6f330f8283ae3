/* NASH-style hill climbing over network morphisms (Elsken, Metzen & Hutter 2017): from a
 * trained parent, children made by random function-preserving morphisms start exactly where the
 * parent is and need only a short training run to show whether the added capacity helps. See
 * rf_morph_hillclimb in renflow/morph.h. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/morph.h"
#include "../core/json_util.h"

#define MORPH_TRIES 20 /* random draws per morphism before a child settles for fewer */

void rf_morph_hc_cfg_default(rf_morph_hc_cfg *c) {
    memset(c, 0, sizeof *c);
    c->rounds = 3;
    c->children = 4;
    c->morphs = 1;
    c->keep_parent = 1;
    rf_train_cfg_default(&c->train);
    c->train.epochs = 5;
    c->train.patience = 0;
    c->train.warmup_frac = 0.0f;
    c->train.cosine = 0;
    c->train.lr = 1e-3f;
    c->train.progress = 0;
    c->limits.max_hidden = 512;
    c->limits.max_n_hidden = 8;
    c->limits.max_layers = 200;
    c->progress = 1;
}

void rf_morph_hc_history_free(rf_morph_hc_history *h) {
    if (!h) return;
    for (int i = 0; i < h->n; i++) cJSON_Delete(h->entries[i].arch);
    free(h->entries);
    memset(h, 0, sizeof *h);
}


cJSON *rf_morph_hc_history_to_json(const rf_morph_hc_history *h) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddItemToObject(j, "parent_val_nll", rf_json_num_or_null(h->parent_val_nll));
    cJSON_AddItemToObject(j, "best_val_nll", rf_json_num_or_null(h->best_val_nll));
    cJSON_AddNumberToObject(j, "rounds_run", h->rounds_run);
    cJSON *a = cJSON_AddArrayToObject(j, "children");
    for (int i = 0; i < h->n && a; i++) {
        const rf_morph_hc_entry *x = &h->entries[i];
        cJSON *c = cJSON_CreateObject();
        if (!c) break;
        cJSON_AddNumberToObject(c, "round", x->round);
        cJSON_AddNumberToObject(c, "child", x->child);
        cJSON_AddStringToObject(c, "morphs", x->morphs);
        cJSON_AddNumberToObject(c, "n_params", (double)x->n_params);
        cJSON_AddItemToObject(c, "val_nll_before", rf_json_num_or_null(x->val_nll_before));
        cJSON_AddItemToObject(c, "val_nll", rf_json_num_or_null(x->val_nll));
        cJSON_AddNumberToObject(c, "seconds", x->seconds);
        cJSON_AddStringToObject(c, "status", x->status ? rf_status_name(x->status) : "complete");
        if (x->status) cJSON_AddStringToObject(c, "error", x->error);
        cJSON_AddBoolToObject(c, "selected", x->selected);
        if (x->arch) cJSON_AddItemToObject(c, "arch", cJSON_Duplicate(x->arch, 1));
        cJSON_AddItemToArray(a, c);
    }
    return j;
}

static rf_flow *clone_flow(const rf_flow *f, rf_err *e) {
    unsigned char *buf = NULL;
    size_t len = 0;
    if (rf_flow_to_bytes(f, &buf, &len, e) != RF_OK) return NULL;
    rf_flow *g = rf_flow_load_mem(buf, len, "morph: copy of the parent", e);
    free(buf);
    return g;
}

static double val_nll(const rf_flow *f, const rf_matrix *val, const int *labels, rf_err *e) {
    const rf_flow_ws_opts o = {.max_batch = val->n < 1024 ? val->n : 1024, .memory_saving = 1, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &o, e);
    if (!w) return NAN;
    const double v = rf_eval_nll(f, w, val, labels, NULL);
    rf_flow_ws_free(w);
    return v;
}

static rf_morph_hc_entry *hist_add(rf_morph_hc_history *h, rf_err *e) {
    if (h->n == h->cap) {
        const int cap = h->cap ? 2 * h->cap : 16;
        rf_morph_hc_entry *p = realloc(h->entries, sizeof *p * (size_t)cap);
        if (!p) {
            rf_err_set(e, RF_ENOMEM, "morph: out of memory for the search history");
            return NULL;
        }
        h->entries = p;
        h->cap = cap;
    }
    rf_morph_hc_entry *x = &h->entries[h->n++];
    memset(x, 0, sizeof *x);
    return x;
}

/* Applies k random morphisms to parent; names them in desc. NULL (e set) when none applies. */
static rf_flow *morph_child(const rf_flow *parent, int k, const rf_morph_limits *lim, rf_rng *rng, char *desc,
                            size_t dn, rf_err *e) {
    rf_flow *cur = NULL;
    desc[0] = 0;
    rf_err last = {0};
    for (int i = 0; i < k; i++) {
        const rf_flow *from = cur ? cur : parent;
        rf_flow *next = NULL;
        rf_morph m;
        for (int t = 0; t < MORPH_TRIES && !next; t++) {
            if (rf_morph_random(from, lim, rng, &m, &last) != RF_OK) break;
            next = rf_morph_apply(from, &m, rng, &last);
            if (next && lim->max_params > 0 && next->n_params > lim->max_params) {
                rf_err_set(&last, RF_EARG, "morph: %zu parameters exceed the limit %zu", next->n_params, lim->max_params);
                rf_flow_free(next);
                next = NULL;
            }
        }
        if (!next) break;
        char one[160];
        rf_morph_describe(&m, one, sizeof one);
        const size_t used = strlen(desc);
        snprintf(desc + used, dn - used, "%s%s", used ? "; " : "", one);
        rf_flow_free(cur);
        cur = next;
    }
    if (!cur) rf_err_set(e, last.code ? last.code : RF_EARG, "%s", last.code ? last.msg : "morph: no morphism applies");
    return cur;
}

rf_flow *rf_morph_hillclimb(const rf_flow *parent, const rf_matrix *train, const int *train_labels,
                            const rf_matrix *val, const int *val_labels, const rf_morph_hc_cfg *cfg,
                            rf_rng *rng, rf_morph_hc_history *hist, rf_morph_hc_callback cb, void *cb_ctx,
                            rf_err *e) {
    rf_morph_hc_history local = {0};
    rf_morph_hc_history *h = hist ? hist : &local;
    memset(h, 0, sizeof *h);
    h->parent_val_nll = h->best_val_nll = NAN;
    if (!parent || !train || !val || !cfg || !rng) {
        rf_err_set(e, RF_EARG, "hill climbing: needs a parent flow, training and validation data, a configuration and an rng");
        return NULL;
    }
    if (train->d != parent->D || val->d != parent->D || train->n < 1 || val->n < 1) {
        rf_err_set(e, RF_EARG, "hill climbing: data of %d x %d (train) and %d x %d (validation) do not fit a flow of dimension %d",
                   train->n, train->d, val->n, val->d, parent->D);
        return NULL;
    }
    if (cfg->rounds < 1 || cfg->children < 0 || cfg->children + (cfg->keep_parent != 0) < 1 ||
        (cfg->children > 0 && cfg->morphs < 1)) {
        rf_err_set(e, RF_EARG, "hill climbing: rounds (%d) >= 1, children (%d) >= 0 with at least one candidate, "
                   "and morphs (%d) >= 1 required", cfg->rounds, cfg->children, cfg->morphs);
        return NULL;
    }
    rf_train_cfg tc = cfg->train;
    tc.standardize = 0; /* the parent's standardisation and ActNorm values stay: no re-initialisation */
    tc.init_batch = 0;
    tc.out_path = NULL;
    tc.checkpoint_path = NULL;
    tc.resume = 0;
    tc.max_steps = 0;
    tc.progress = 0;
    rf_flow *cur = clone_flow(parent, e);
    if (!cur) return NULL;
    double cur_val = val_nll(cur, val, val_labels, e);
    if (!isfinite(cur_val)) {
        rf_err_set(e, RF_ENONFINITE, "hill climbing: the parent's validation NLL is not finite (%g)", cur_val);
        rf_flow_free(cur);
        return NULL;
    }
    h->parent_val_nll = cur_val;
    const double t0 = rf_now();
    int stop = 0;
    if (cfg->progress)
        fprintf(stderr, "morph: parent %zu parameters, validation NLL %.4f; %d rounds x %d children (%d morphism%s each)%s\n",
                cur->n_params, cur_val, cfg->rounds, cfg->children, cfg->morphs, cfg->morphs == 1 ? "" : "s",
                cfg->keep_parent ? " + the parent" : "");
    for (int r = 1; r <= cfg->rounds && !stop; r++) {
        rf_flow *best = NULL;
        double best_val = cur_val;
        int best_entry = -1, ran = 0;
        for (int c = cfg->keep_parent ? 0 : 1; c <= cfg->children; c++) {
            if ((cfg->train.stop_flag && *cfg->train.stop_flag) ||
                (cfg->time_budget > 0 && rf_now() - t0 > cfg->time_budget)) {
                stop = 1;
                break;
            }
            rf_rng crng;
            rf_rng_fork(rng, &crng);
            rf_morph_hc_entry *x = hist_add(h, e);
            if (!x) goto fail;
            ran++;
            x->round = r;
            x->child = c;
            x->val_nll = x->val_nll_before = NAN;
            const double tc0 = rf_now();
            rf_err ce = {0};
            rf_flow *child = c == 0 ? clone_flow(cur, &ce)
                                    : morph_child(cur, cfg->morphs, &cfg->limits, &crng, x->morphs, sizeof x->morphs, &ce);
            if (child) {
                x->arch = rf_morph_arch_json(child);
                x->n_params = child->n_params;
                x->val_nll_before = val_nll(child, val, val_labels, &ce);
                rf_train_cfg t = tc;
                t.seed = rf_rng_u64(&crng);
                rf_train_result res;
                int rc = rf_train(child, train, train_labels, val, val_labels, &t, &res, &ce);
                if (rc && cfg->train.stop_flag && *cfg->train.stop_flag)
                    rc = rf_err_set(&ce, RF_EINTERRUPTED, "interrupted"); /* (no checkpoint: children write no files) */
                x->status = rc;
                x->val_nll = rc == RF_OK ? res.best_val_nll : NAN;
                rf_train_result_free(&res);
                if (rc == RF_OK && !isfinite(x->val_nll)) {
                    x->status = RF_ENONFINITE;
                    rf_err_set(&ce, RF_ENONFINITE, "validation NLL not finite");
                }
            } else {
                x->status = ce.code ? ce.code : RF_EARG;
            }
            if (x->status) {
                const size_t ml = strnlen(ce.msg, sizeof x->error - 1);
                memcpy(x->error, ce.msg, ml);
                x->error[ml] = 0;
            }
            x->seconds = rf_now() - tc0;
            if (cb) cb(cb_ctx, x, child);
            if (cfg->progress) {
                if (x->status)
                    fprintf(stderr, "morph: round %d/%d child %d/%d: %s: failed: %s\n", r, cfg->rounds, c, cfg->children,
                            c == 0 ? "(parent)" : x->morphs, x->error);
                else
                    fprintf(stderr, "morph: round %d/%d child %d/%d: %s: %zu params, val %.4f -> %.4f (best %.4f), %.1fs\n", r,
                            cfg->rounds, c, cfg->children, c == 0 ? "(parent)" : x->morphs, x->n_params, x->val_nll_before,
                            x->val_nll, x->val_nll < best_val ? x->val_nll : best_val, x->seconds);
            }
            if (child && x->status == RF_OK && x->val_nll < best_val) {
                rf_flow_free(best);
                best = child;
                best_val = x->val_nll;
                best_entry = h->n - 1;
            } else {
                rf_flow_free(child);
            }
        }
        if (best) {
            rf_flow_free(cur);
            cur = best;
            cur_val = best_val;
            h->entries[best_entry].selected = 1;
        }
        if (!ran) break;
        h->rounds_run = r;
        if (cfg->progress)
            fprintf(stderr, "morph: round %d/%d done: best validation NLL %.4f (%zu parameters, %s), %.1fs elapsed\n", r,
                    cfg->rounds, cur_val, cur->n_params,
                    best_entry < 0 ? "parent kept" : h->entries[best_entry].child == 0 ? "parent trained further" : h->entries[best_entry].morphs,
                    rf_now() - t0);
    }
    h->best_val_nll = cur_val;
    if (!hist) rf_morph_hc_history_free(&local);
    return cur;
fail:
    rf_flow_free(cur);
    if (!hist) rf_morph_hc_history_free(&local);
    return NULL;
}
