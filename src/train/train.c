/* The training loop: shuffled mini-batches, AdamW with warm-up + cosine, gradient clipping,
 * non-finite steps skipped (never applied), validation each epoch, best model saved
 * atomically, early stopping, checkpoints for exact resume (including mid-epoch stops). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "renflow/adapt.h"
#include "renflow/train.h"

void rf_train_cfg_default(rf_train_cfg *c) {
    memset(c, 0, sizeof *c);
    c->epochs = 50;
    c->batch = 256;
    c->lr = 1e-3f;
    c->weight_decay = 0.0f;
    c->clip = 5.0f;
    c->warmup_frac = 0.05f;
    c->cosine = 1;
    c->patience = 10;
    c->max_bad_steps = 20;
    c->ce_weight = 1.0f;
    c->standardize = 1;
    c->init_batch = 1024;
    c->class_init = -1;
    c->seed = 1;
    c->progress = 1;
}

void rf_train_result_free(rf_train_result *r) {
    free(r->train_curve);
    free(r->val_curve);
    r->train_curve = r->val_curve = NULL;
}

double rf_eval_nll(const rf_flow *f, rf_flow_ws *w, const rf_matrix *m, const int *labels,
                   float *per_sample) {
    float *lp = per_sample ? per_sample : rf_floats((size_t)m->n, NULL);
    if (!lp) return NAN;
    rf_flow_log_prob(f, w, m->n, m->x, labels, lp);
    double s = 0;
    for (int i = 0; i < m->n; i++) s -= lp[i];
    if (!per_sample) rf_free(lp);
    return m->n > 0 ? s / m->n : NAN;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

/* Records the training time in the model's meta just before the model file is written (the best
 * model, or the last one when no epoch improved): "train_seconds" is the wall-clock time from the
 * start of this rf_train call (preparation, every epoch's steps, validation, saves and checkpoints
 * included) to that save, so it is the time it took to produce the saved model, not the whole
 * run (later epochs that did not improve are not in it). A resumed run cannot know the time of
 * the sessions before it (the checkpoint does not record it): then "train_seconds" covers this
 * session only and "train_seconds_resumed" says so. Only a flow that carries meta (the command
 * line's provenance) gets these fields: library runs without meta keep bit-identical files. */
static void record_train_time(rf_flow *f, double t_start, int resumed_at_epoch) {
    if (!cJSON_IsObject(f->meta)) return;
    cJSON_DeleteItemFromObjectCaseSensitive(f->meta, "train_seconds");
    cJSON_DeleteItemFromObjectCaseSensitive(f->meta, "train_seconds_note");
    cJSON_DeleteItemFromObjectCaseSensitive(f->meta, "train_seconds_resumed");
    cJSON_AddNumberToObject(f->meta, "train_seconds", rf_now() - t_start);
    if (resumed_at_epoch >= 0) {
        char note[200];
        snprintf(note, sizeof note,
                 "resumed from a checkpoint at epoch %d: this session only, the time of earlier sessions is not recorded",
                 resumed_at_epoch + 1);
        cJSON_AddBoolToObject(f->meta, "train_seconds_resumed", 1);
        cJSON_AddStringToObject(f->meta, "train_seconds_note", note);
    } else {
        cJSON_AddStringToObject(f->meta, "train_seconds_note",
                                "wall-clock seconds from the start of training to the save of this model (best epoch)");
    }
}

static int file_exists(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0;
}

/* Standardisation on the training set and ActNorm initialisation on a seeded subset. With labels
 * (cfg->class_init; by default for a class base tied over time, i.e. tsflow classifiers), the
 * class Gaussians also start at the moments of each class's latents. Untied dense class bases
 * keep their random-mean start by default: on the 72-D Sleep-EDF features (context 2, HMM, 4
 * subject-wise folds) the labelled start lowered the pooled macro-F1 from 0.75 to 0.59 (classes
 * start overlapping and the NLL term does not pull them apart), while on simulated EEG band
 * powers it raised the class-sample/data profile correlation from 0.04 to 0.90. */
static int prepare_model(rf_flow *f, const rf_matrix *train, const int *labels, const rf_train_cfg *cfg, rf_rng *rng,
                         rf_err *e) {
    if (cfg->standardize) {
        int rc = rf_standardizer_fit(train, cfg->standardize == 2, f->shift, f->scale, e);
        if (rc) return rc;
    }
    int m = train->n < cfg->init_batch ? train->n : cfg->init_batch;
    if (m < 2) return RF_OK;
    int *idx = malloc(sizeof(int) * train->n);
    float *xb = rf_floats((size_t)m * train->d, e);
    int *yb = labels ? malloc(sizeof(int) * (size_t)m) : NULL;
    if (!idx || !xb || (labels && !yb)) {
        free(idx);
        free(yb);
        rf_free(xb);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    for (int i = 0; i < train->n; i++) idx[i] = i;
    rf_rng_shuffle(rng, idx, train->n);
    for (int i = 0; i < m; i++) {
        memcpy(xb + (size_t)i * train->d, train->x + (size_t)idx[i] * train->d, sizeof(float) * train->d);
        if (yb) yb[i] = labels[idx[i]];
    }
    int rc = rf_flow_data_init_labels(f, m, xb, yb, e);
    free(idx);
    free(yb);
    rf_free(xb);
    return rc;
}

int rf_train(rf_flow *f, const rf_matrix *train, const int *train_labels, const rf_matrix *val,
             const int *val_labels, const rf_train_cfg *cfg, rf_train_result *res, rf_err *e) {
    memset(res, 0, sizeof *res);
    if (train->d != f->D)
        return rf_err_set(e, RF_EARG, "training data has %d columns but the model has dimension %d", train->d, f->D);
    if (val && val->d != f->D)
        return rf_err_set(e, RF_EARG, "validation data has %d columns but the model has dimension %d", val->d, f->D);
    if (train->n < 1) return rf_err_set(e, RF_EARG, "training data has no rows");
    if (cfg->epochs < 1 || cfg->batch < 1)
        return rf_err_set(e, RF_EARG, "epochs and batch must be >= 1 (got %d, %d)", cfg->epochs, cfg->batch);
    if (!(cfg->lr > 0) || !isfinite(cfg->lr)) return rf_err_set(e, RF_EARG, "learning rate must be > 0, got %g", (double)cfg->lr);
    if (f->base.kind == RF_BASE_CLASS && !train_labels)
        return rf_err_set(e, RF_EARG, "a class-conditional model needs training labels");
    if (cfg->subject_adapt) {
        if (f->base.kind != RF_BASE_CLASS) return rf_err_set(e, RF_EARG, "subject adaptation needs a class-conditional model");
        if (!cfg->train_subjects || (val && !cfg->val_subjects))
            return rf_err_set(e, RF_EARG, "subject adaptation needs subject ids of the training%s rows",
                              val ? " and validation" : "");
    }
    /* a subject adaptation belongs to the parameters it was fitted with (renflow/adapt.h) */
    rf_free(f->adapt_mean);
    rf_free(f->adapt_log_scale);
    f->adapt_mean = f->adapt_log_scale = NULL;
    const double t_start = rf_now();
    int resumed_at = -1;
    rf_set_threads(cfg->threads > 0 ? cfg->threads : rf_get_threads());
    char ckpt[4096];
    snprintf(ckpt, sizeof ckpt, "%s", cfg->checkpoint_path ? cfg->checkpoint_path : "");
    if (!cfg->checkpoint_path && cfg->out_path) snprintf(ckpt, sizeof ckpt, "%s.ckpt", cfg->out_path);

    const int B = cfg->batch < train->n ? cfg->batch : train->n, D = f->D;
    const long per_epoch = (train->n + B - 1) / B, total = per_epoch * cfg->epochs;
    const long warmup = (long)(cfg->warmup_frac * total);
    int rc = RF_OK;
    rf_adam adam = {0};
    rf_train_state st = {0};
    rf_flow_ws *w = NULL, *we = NULL;
    double t0 = 0, t_train = 0, t_ep = 0;
    long samples = 0;
    rf_adapt_tables tab = {0};
    int *rowb = cfg->subject_adapt ? malloc(sizeof(int) * B) : NULL;
    int *idx = malloc(sizeof(int) * train->n), *yb = malloc(sizeof(int) * B);
    float *xb = rf_floats((size_t)B * D, e);
    st.train_curve = calloc((size_t)cfg->epochs, sizeof(double));
    st.val_curve = calloc((size_t)cfg->epochs, sizeof(double));
    st.best_params = rf_floats(f->n_params, e);
    if (!idx || !yb || !xb || !st.train_curve || !st.val_curve || !st.best_params || (cfg->subject_adapt && !rowb)) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = rf_adam_init(&adam, f->n_params, e))) goto out;
    w = rf_flow_ws_create(f, B, cfg->memory_saving, e);
    const rf_flow_ws_opts eo = {.max_batch = 1024, .memory_saving = 1, .inference = 1};
    we = rf_flow_ws_create_opts(f, &eo, e);
    if (!w || !we) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    rf_rng rng;
    rf_rng_seed(&rng, cfg->seed);
    st.best_val = INFINITY;
    st.best_epoch = -1;
    if (cfg->resume && file_exists(ckpt)) {
        if ((rc = rf_checkpoint_load(ckpt, f, &adam, &st, cfg->epochs, e))) goto out;
        if (cfg->subject_adapt && (rc = rf_adapt_fit_ex(f, train, NULL, cfg->train_subjects, 1, 0, e))) goto out;
        resumed_at = st.epoch;
        if (cfg->progress)
            fprintf(stderr, "resuming from %s: epoch %d, batch %ld, step %ld\n", ckpt, st.epoch + 1, st.batch_pos, st.step);
    } else {
        const int class_init = cfg->class_init < 0 ? f->base.group != NULL : cfg->class_init;
        if ((rc = prepare_model(f, train, class_init ? train_labels : NULL, cfg, &rng, e))) goto out;
        /* with adaptation, the class Gaussians start at the moments of the standardised latents */
        if (cfg->subject_adapt &&
            (rc = rf_adapt_fit_ex(f, train, train_labels, cfg->train_subjects, 1, class_init, e)))
            goto out;
        st.epoch_rng = rng;
        memcpy(st.best_params, f->params, sizeof(float) * f->n_params);
    }
    /* samples/s counts training steps only (as bench/torch_flows.py does): the clock runs from
     * each epoch's shuffle to its last step and stops for validation, saving and checkpoints */
    t0 = rf_now();
    long bad_run = 0;
    for (; st.epoch < cfg->epochs; st.epoch++) {
        t_ep = rf_now();
        rng = st.epoch_rng;
        if (cfg->subject_adapt) { /* this epoch's per-subject maps, from the current parameters */
            rf_adapt_tables_free(&tab);
            rf_latent_affine la = {0};
            if ((rc = rf_adapt_tables_compute(f, train, cfg->train_subjects, &tab, e)) ||
                (rc = rf_flow_ws_set_latent_affine(w, &(rf_latent_affine){tab.G, rowb, tab.a, tab.b, tab.ld}, e))) {
                rf_flow_ws_set_latent_affine(w, &la, NULL);
                goto out;
            }
        }
        for (int i = 0; i < train->n; i++) idx[i] = i;
        rf_rng_shuffle(&rng, idx, train->n);
        for (long b = st.batch_pos; b < per_epoch; b++) {
            if ((cfg->stop_flag && *cfg->stop_flag) || (cfg->max_steps > 0 && st.step >= cfg->max_steps)) {
                st.batch_pos = b;
                t_train += rf_now() - t_ep;
                t_ep = 0;
                res->interrupted = 1;
                if (!ckpt[0]) { /* no output path: nothing to resume from, stop with the model as is */
                    rc = rf_err_set(e, RF_EINTERRUPTED, "training stopped (no checkpoint: no output path)");
                    goto out;
                }
                rc = rf_checkpoint_save(ckpt, f, &adam, &st, e);
                if (cfg->progress && !rc) fprintf(stderr, "stopped: checkpoint written to %s (resume with --resume)\n", ckpt);
                if (!rc) rc = RF_EINTERRUPTED, rf_err_set(e, RF_EINTERRUPTED, "training stopped; checkpoint written to %s", ckpt);
                goto out;
            }
            const int lo = (int)(b * B), n = train->n - lo < B ? train->n - lo : B;
            for (int i = 0; i < n; i++) {
                memcpy(xb + (size_t)i * D, train->x + (size_t)idx[lo + i] * D, sizeof(float) * D);
                if (train_labels) yb[i] = train_labels[idx[lo + i]];
                if (rowb) rowb[i] = tab.row_s[idx[lo + i]];
            }
            memset(f->grads, 0, sizeof(float) * f->n_params);
            const double loss = rf_flow_loss_grad(f, w, n, xb, train_labels ? yb : NULL, cfg->ce_weight);
            const double gnorm = rf_grad_norm(f->grads, f->n_params, w);
            if (!isfinite(loss) || !isfinite(gnorm)) {
                st.skipped++;
                if (cfg->progress)
                    fprintf(stderr, "warning: step %ld skipped: non-finite %s (%g); the model was not updated\n", st.step,
                            isfinite(loss) ? "gradient" : "loss", isfinite(loss) ? gnorm : loss);
                if (++bad_run >= cfg->max_bad_steps) {
                    t_train += rf_now() - t_ep;
                    t_ep = 0;
                    rc = rf_err_set(e, RF_ENONFINITE,
                                    "training diverged: %ld consecutive non-finite steps at epoch %d (try a lower --lr "
                                    "or --clip); the best model so far is in %s",
                                    bad_run, st.epoch + 1, cfg->out_path ? cfg->out_path : "(not saved)");
                    goto out;
                }
                st.step++;
                continue;
            }
            bad_run = 0;
            const double lr = rf_lr_schedule(cfg->lr, st.step, total, warmup, cfg->cosine, 0.01);
            /* clipping is applied inside the update (same float products as scaling in place) */
            rf_adam_step_scaled(&adam, f->params, f->grads, rf_clip_scale(gnorm, cfg->clip), (float)lr,
                                cfg->weight_decay, w);
            st.step++;
            samples += n;
            st.epoch_loss_sum += loss * n;
            st.epoch_loss_n += n;
        }
        t_train += rf_now() - t_ep;
        t_ep = 0;
        st.batch_pos = 0;
        const double tr = st.epoch_loss_n ? st.epoch_loss_sum / st.epoch_loss_n : NAN;
        double vl = tr;
        if (val && cfg->subject_adapt) {
            if (isnan(vl = rf_adapt_nll(f, val, val_labels, cfg->val_subjects, NULL, e))) {
                rc = e ? e->code : RF_EARG;
                goto out;
            }
        } else if (val) {
            vl = rf_eval_nll(f, we, val, val_labels, NULL);
        }
        st.train_curve[st.epoch] = tr;
        st.val_curve[st.epoch] = vl;
        st.n_curve = st.epoch + 1;
        st.epoch_loss_sum = 0;
        st.epoch_loss_n = 0;
        if (isfinite(vl) && vl < st.best_val) {
            st.best_val = vl;
            st.best_epoch = st.epoch;
            st.bad_epochs = 0;
            memcpy(st.best_params, f->params, sizeof(float) * f->n_params);
            if (cfg->out_path) record_train_time(f, t_start, resumed_at);
            if (cfg->out_path && (rc = rf_flow_save(f, cfg->out_path, e))) goto out;
        } else {
            st.bad_epochs++;
        }
        const double rate = t_train > 0 ? samples / t_train : 0;
        if (cfg->progress) {
            char eta[32];
            const long left = total - st.step;
            fmt_time(rate > 0 ? (double)left * B / rate : 0, eta, sizeof eta);
            fprintf(stderr, "epoch %3d/%d  step %6ld  train %.4f  val %.4f  best %.4f@%d  %8.0f samples/s  ETA %s%s\n",
                    st.epoch + 1, cfg->epochs, st.step, tr, vl, st.best_val, st.best_epoch + 1, rate, eta,
                    st.skipped ? "  (skipped steps!)" : "");
        }
        st.epoch_rng = rng;
        if (cfg->patience > 0 && st.bad_epochs >= cfg->patience) {
            res->early_stopped = 1;
            st.epoch++;
            break;
        }
        if (ckpt[0]) {
            rf_train_state next = st;
            next.epoch = st.epoch + 1;
            if ((rc = rf_checkpoint_save(ckpt, f, &adam, &next, e))) goto out;
        }
    }
    if (st.best_epoch >= 0) memcpy(f->params, st.best_params, sizeof(float) * f->n_params);
    if (cfg->subject_adapt) {
        /* the class Gaussians were learnt in the standardised space; write them in the space of an
         * average training subject (same likelihoods), so that sampling and explanations without
         * a subject are in the units of the data */
        if ((rc = rf_adapt_reference_to_average(f, train, cfg->train_subjects, e))) goto out;
        if (cfg->out_path && st.best_epoch >= 0) {
            record_train_time(f, t_start, resumed_at);
            if ((rc = rf_flow_save(f, cfg->out_path, e))) goto out;
        }
    }
    if (st.best_epoch < 0 && cfg->out_path) {
        record_train_time(f, t_start, resumed_at);
        if ((rc = rf_flow_save(f, cfg->out_path, e))) goto out;
    }
    if (ckpt[0]) remove(ckpt);
out:
    if (t0 > 0) {
        res->seconds = rf_now() - t0;
        res->train_seconds = t_train;
        res->samples_per_sec = t_train > 0 ? samples / t_train : 0;
        res->samples_per_sec_wall = res->seconds > 0 ? samples / res->seconds : 0;
    }
    res->epochs_run = st.n_curve;
    res->best_epoch = st.best_epoch + 1;
    res->best_val_nll = st.best_val;
    res->final_train_nll = st.n_curve ? st.train_curve[st.n_curve - 1] : NAN;
    res->steps = st.step;
    res->skipped_steps = st.skipped;
    res->train_curve = st.train_curve;
    res->val_curve = st.val_curve;
    rf_adam_free(&adam);
    rf_flow_ws_free(w);
    rf_flow_ws_free(we);
    rf_free(st.best_params);
    rf_adapt_tables_free(&tab);
    free(rowb);
    free(idx);
    free(yb);
    rf_free(xb);
    return rc;
}
