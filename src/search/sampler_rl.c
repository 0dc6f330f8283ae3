/* The "rl" sampler: the LSTM controller trained with REINFORCE over the study's trials.
 *
 * Stateless over the study: the policy is a deterministic function of (options, seed, the
 * history's trials in order), rebuilt by replaying one REINFORCE update per `batch` trials.
 * A resumed study, another process working on the same study, or this process after a restart
 * all get the same controller for the same history. A cache keeps the controller of the last
 * call and only replays the new trials while the history grows at its end (the common case);
 * any other change (a trial with a lower number finishing late, another space) replays all.
 * See include/renflow/controller.h (rf_rl_opts) for rewards and calibration. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/controller.h"
#include "search_internal.h"

void rf_rl_opts_default(rf_rl_opts *o) {
    memset(o, 0, sizeof *o);
    rf_controller_opts_default(&o->ctrl);
    rf_reinforce_opts_default(&o->reinforce);
    o->reinforce.reward_a = NAN;
    o->reinforce.reward_b = NAN;
    o->n_calibrate = 10;
    o->batch = 1;
    o->objective = 0;
    o->seed = 0;
}

/* What one replayed trial contributed (the cache key). */
typedef struct ep_key {
    int number;
    int status;
    double x; /* oriented objective; NAN: reward 0 */
} ep_key;

typedef struct rl_impl {
    rf_rl_opts o;
    /* cache */
    char *space_text;
    rf_space *sp;
    rf_ctrl_space *m;
    rf_controller *c;
    rf_reinforce *r;
    double cal_a, cal_b;    /* shaping the cached controller was trained with */
    int n_done, cap;        /* history items replayed (whole batches) */
    ep_key *keys;
    int *choice;            /* n_slots * batch */
    double *rew;            /* batch */
} rl_impl;

static void drop_cache(rl_impl *im) {
    rf_reinforce_free(im->r);
    rf_controller_free(im->c);
    rf_ctrl_space_free(im->m);
    rf_space_free(im->sp);
    free(im->space_text);
    free(im->choice);
    free(im->rew);
    im->r = NULL;
    im->c = NULL;
    im->m = NULL;
    im->sp = NULL;
    im->space_text = NULL;
    im->choice = NULL;
    im->rew = NULL;
    im->n_done = 0;
}

static void rl_destroy(rf_sampler *s) {
    rl_impl *im = s->impl;
    if (im) {
        drop_cache(im);
        free(im->keys);
        free(im);
    }
}

/* The oriented objective of a history item: larger is better; NAN = reward 0. */
static double item_x(const rf_history *h, const rf_trial *t, int k) {
    double sgn = h->directions[k] == RF_MAXIMIZE ? 1.0 : -1.0, v = NAN;
    if (t->status == RF_TRIAL_COMPLETE && t->n_values > k) v = t->values[k];
    else if (t->status == RF_TRIAL_PRUNED && t->last_step >= 0) v = t->last_value;
    return isfinite(v) ? sgn * v : NAN;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double quantile_sorted(const double *x, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)floor(pos);
    if (i >= n - 1) return x[n - 1];
    double f = pos - i;
    return x[i] + f * (x[i + 1] - x[i]);
}

/* Shaping parameters for this history: given ones, or calibrated from the first n_calibrate
 * complete trials. Returns 0 when they cannot be set yet. */
static int shaping(const rl_impl *im, const rf_history *h, double *a, double *b, rf_err *e) {
    const rf_reinforce_opts *ro = &im->o.reinforce;
    *a = ro->reward_a;
    *b = ro->reward_b;
    if (!isnan(*a) && !isnan(*b)) return 1;
    const int nc = im->o.n_calibrate;
    double *xs = malloc(sizeof(double) * (size_t)nc);
    if (!xs) return rf_err_set(e, RF_ENOMEM, "rl sampler: out of memory"), -1;
    int n = 0;
    for (int i = 0; i < h->n && n < nc; i++) {
        const rf_trial *t = h->items[i];
        if (t->status != RF_TRIAL_COMPLETE) continue;
        double x = item_x(h, t, im->o.objective);
        if (isfinite(x)) xs[n++] = x;
    }
    if (n < nc) {
        free(xs);
        return 0;
    }
    qsort(xs, (size_t)n, sizeof(double), cmp_double);
    double med = quantile_sorted(xs, n, 0.5), spread = quantile_sorted(xs, n, 0.9) - quantile_sorted(xs, n, 0.1);
    free(xs);
    if (isnan(*a)) {
        *a = spread > 0 ? 2.0 * log(9.0) / spread : 1.0;
        if (!isfinite(*a) || *a <= 0) *a = 1.0;
    }
    if (isnan(*b)) *b = *a * med;
    if (!isfinite(*b)) *b = 0;
    return 1;
}

static int keys_match(const ep_key *k, const rf_history *h, int n, int obj) {
    for (int i = 0; i < n; i++) {
        const rf_trial *t = h->items[i];
        double x = item_x(h, t, obj);
        if (k[i].number != t->number || k[i].status != (int)t->status) return 0;
        if (!(k[i].x == x || (isnan(k[i].x) && isnan(x)))) return 0;
    }
    return 1;
}

/* (Re)creates the cached controller for sp with shaping (a, b) (NAN: not calibrated yet; the
 * reinforce state is then made with placeholders and never used). */
static int fresh(rl_impl *im, const rf_space *sp, const char *text, double a, double b, rf_err *e) {
    drop_cache(im);
    rf_reinforce_opts ro = im->o.reinforce;
    ro.reward_a = isnan(a) ? 1.0 : a;
    ro.reward_b = isnan(b) ? 0.0 : b;
    im->cal_a = a;
    im->cal_b = b;
    im->space_text = strdup(text);
    if (!im->space_text) goto nomem;
    if (!(im->sp = rf_space_clone(sp, e))) goto fail;
    if (!(im->m = rf_ctrl_space_create(im->sp, &im->o.ctrl, e))) goto fail;
    const int ns = rf_ctrl_space_n_slots(im->m);
    if (!(im->c = rf_controller_create(ns, rf_ctrl_space_n_choices(im->m), &im->o.ctrl, im->o.seed, e))) goto fail;
    if (!(im->r = rf_reinforce_create(im->c, &ro, e))) goto fail;
    im->choice = malloc(sizeof(int) * (size_t)ns * (size_t)im->o.batch);
    im->rew = malloc(sizeof(double) * (size_t)im->o.batch);
    if (!im->choice || !im->rew) goto nomem;
    return RF_OK;
nomem:
    rf_err_set(e, RF_ENOMEM, "rl sampler: out of memory");
fail:
    drop_cache(im);
    return e && e->code ? e->code : RF_ENOMEM;
}

static int rl_sample(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng, rf_config *out, rf_err *e) {
    rl_impl *im = s->impl;
    const int obj = im->o.objective;
    if (obj >= h->n_objectives && h->n_objectives > 0)
        return rf_err_set(e, RF_EARG, "rl sampler: objective %d but the study has %d", obj, h->n_objectives);
    double a, b;
    int ok = shaping(im, h, &a, &b, e);
    if (ok < 0) return RF_ENOMEM;
    if (!ok) a = b = NAN;
    char *text = rf_space_to_string(sp);
    if (!text) return rf_err_set(e, RF_ENOMEM, "rl sampler: out of memory");
    int reuse = im->c && !strcmp(text, im->space_text) && ((isnan(a) && isnan(im->cal_a)) || (a == im->cal_a && b == im->cal_b)) &&
                im->n_done <= h->n && keys_match(im->keys, h, im->n_done, obj);
    int rc = reuse ? RF_OK : fresh(im, sp, text, a, b, e);
    free(text);
    if (rc) return rc;
    /* replay the new trials, a whole batch per update (none before the shaping is calibrated) */
    if (ok) {
        const int ns = rf_ctrl_space_n_slots(im->m), B = im->o.batch;
        while (im->n_done + B <= h->n) {
            for (int j = 0; j < B; j++) {
                const rf_trial *t = h->items[im->n_done + j];
                double x = item_x(h, t, obj);
                im->rew[j] = isnan(x) ? 0.0 : rf_reinforce_reward(im->r, x);
                rc = rf_ctrl_space_encode(im->m, &t->cfg, im->choice + (size_t)j * (size_t)ns, e);
                if (rc) return rf_err_prefix(e, rc, "rl sampler: trial %d", t->number);
            }
            if ((rc = rf_reinforce_update(im->r, B, im->choice, im->rew, NULL, e)))
                return rf_err_prefix(e, rc, "rl sampler: update at trial %d", h->items[im->n_done]->number);
            if (im->n_done + B > im->cap) {
                int nc = im->cap ? 2 * im->cap : 64;
                while (nc < im->n_done + B) nc *= 2;
                ep_key *k = realloc(im->keys, sizeof(ep_key) * (size_t)nc);
                if (!k) return rf_err_set(e, RF_ENOMEM, "rl sampler: out of memory");
                im->keys = k;
                im->cap = nc;
            }
            for (int j = 0; j < B; j++) {
                const rf_trial *t = h->items[im->n_done + j];
                im->keys[im->n_done + j] = (ep_key){t->number, (int)t->status, item_x(h, t, obj)};
            }
            im->n_done += B;
        }
    }
    int *ch = malloc(sizeof(int) * (size_t)rf_ctrl_space_n_slots(im->m));
    if (!ch) return rf_err_set(e, RF_ENOMEM, "rl sampler: out of memory");
    rc = rf_ctrl_space_sample(im->m, im->c, rng, out, ch, NULL, NULL, e);
    free(ch);
    return rc;
}

static const rf_sampler_ops RL_OPS = {"rl", rl_sample, rl_destroy};

rf_sampler *rf_sampler_rl_create(const rf_rl_opts *o, rf_err *e) {
    rf_rl_opts d;
    if (!o) {
        rf_rl_opts_default(&d);
        o = &d;
    }
    if (o->n_calibrate < 1) return rf_err_set(e, RF_EARG, "rl sampler: n_calibrate = %d (expected >= 1)", o->n_calibrate), NULL;
    if (o->batch < 1 || o->batch > 100000) return rf_err_set(e, RF_EARG, "rl sampler: batch = %d (expected >= 1)", o->batch), NULL;
    if (o->objective < 0 || o->objective >= RF_MAX_OBJECTIVES)
        return rf_err_set(e, RF_EARG, "rl sampler: objective %d (expected 0..%d)", o->objective, RF_MAX_OBJECTIVES - 1), NULL;
    /* the options are checked now, with placeholder shaping where it is calibrated later */
    rf_reinforce_opts ro = o->reinforce;
    if (isnan(ro.reward_a)) ro.reward_a = 1.0;
    if (isnan(ro.reward_b)) ro.reward_b = 0.0;
    int nc = 2;
    rf_controller *c = rf_controller_create(1, &nc, &o->ctrl, 0, e);
    if (!c) return rf_err_prefix(e, e ? e->code : RF_EARG, "rl sampler"), NULL;
    rf_reinforce *r = rf_reinforce_create(c, &ro, e);
    rf_reinforce_free(r);
    rf_controller_free(c);
    if (!r) return rf_err_prefix(e, e ? e->code : RF_EARG, "rl sampler"), NULL;
    rl_impl *im = rf_zalloc(sizeof *im, e);
    rf_sampler *s = im ? rf_zalloc(sizeof *s, e) : NULL;
    if (!s) {
        free(im);
        return NULL;
    }
    im->o = *o;
    im->cal_a = im->cal_b = NAN;
    s->ops = &RL_OPS;
    s->impl = im;
    return s;
}
