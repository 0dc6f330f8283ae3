/* Regularised (aging) evolution (Real et al. 2019, "Regularized Evolution for Image Classifier
 * Architecture Search", Algorithm 1) as a sampler over a study's history, and the registry of
 * the strategy samplers "rl" and "evolution" by name.
 *
 * Stateless: the population is the last P complete trials by number, so a resumed study or
 * several processes on one study see the same population; the oldest member leaves when a new
 * trial completes (aging), whatever its value. See include/renflow/controller.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/controller.h"
#include "search_internal.h"

void rf_evolution_opts_default(rf_evolution_opts *o) {
    memset(o, 0, sizeof *o);
    o->population = 20;
    o->sample_size = 5;
    o->mutation_sd = 0.1;
    o->objective = 0;
}

static int mutable_param(const rf_param *p) {
    if (p->kind == RF_PARAM_CAT) return p->n_choices > 1;
    return p->high > p->low;
}

/* A uniform value of parameter p (log scale for log parameters). */
static double uniform_value(const rf_param *p, rf_rng *rng) {
    if (p->kind == RF_PARAM_CAT) return (double)rf_rng_below(rng, (uint64_t)p->n_choices);
    double lo, hi;
    rf__param_tbounds(p, &lo, &hi);
    return rf__param_from_t(p, lo + rf_rng_uniform(rng) * (hi - lo));
}

/* Reflects t into [lo, hi]. */
static double reflect(double t, double lo, double hi) {
    for (int k = 0; k < 8 && (t < lo || t > hi); k++) t = t < lo ? 2 * lo - t : 2 * hi - t;
    return t < lo ? lo : t > hi ? hi : t;
}

static double mutate_value(const rf_param *p, double v, double sd, rf_rng *rng) {
    if (p->kind == RF_PARAM_CAT) {
        int cur = (int)v, j = (int)rf_rng_below(rng, (uint64_t)(p->n_choices - 1));
        return j >= cur ? j + 1 : j;
    }
    double lo, hi;
    rf__param_tbounds(p, &lo, &hi);
    double t0 = rf__param_to_t(p, v), nv = v;
    for (int tries = 0; tries < 16 && nv == v; tries++)
        nv = rf__param_from_t(p, reflect(t0 + sd * (hi - lo) * rf_rng_normal(rng), lo, hi));
    if (nv == v) { /* an int that rounds back (or a float after 16 zero steps): one step */
        if (p->kind == RF_PARAM_INT) {
            int up = rf_rng_below(rng, 2) == 1;
            if (v >= p->high) up = 0;
            if (v <= p->low) up = 1;
            nv = v + (up ? 1 : -1);
        } else {
            nv = uniform_value(p, rng);
            while (nv == v) nv = uniform_value(p, rng);
        }
    }
    return nv;
}

int rf_evolution_mutate(const rf_space *sp, const rf_config *parent, double mutation_sd, rf_rng *rng, rf_config *child,
                        int *mutated, rf_err *e) {
    if (!sp || !parent || !rng || !child) return rf_err_set(e, RF_EARG, "evolution: mutate: NULL argument");
    if (parent->n != sp->n || child->n != sp->n)
        return rf_err_set(e, RF_EARG, "evolution: configurations of %d and %d values for a space of %d parameters", parent->n,
                          child->n, sp->n);
    if (!(mutation_sd > 0) || !isfinite(mutation_sd))
        return rf_err_set(e, RF_EARG, "evolution: mutation_sd = %g (expected > 0)", mutation_sd);
    int rc = rf_config_check(sp, parent, e);
    if (rc) return rf_err_prefix(e, rc, "evolution: parent");
    memcpy(child->v, parent->v, sizeof(double) * (size_t)sp->n);
    memcpy(child->active, parent->active, (size_t)sp->n);
    if (mutated) *mutated = -1;
    int n_mut = 0;
    for (int i = 0; i < sp->n; i++) n_mut += parent->active[i] && mutable_param(&sp->p[i]);
    if (n_mut == 0) return RF_OK;
    int pick = (int)rf_rng_below(rng, (uint64_t)n_mut), i = 0;
    for (;; i++)
        if (parent->active[i] && mutable_param(&sp->p[i]) && pick-- == 0) break;
    child->v[i] = mutate_value(&sp->p[i], parent->v[i], mutation_sd, rng);
    if (mutated) *mutated = i;
    /* parameters the change activates get uniform values (in order: one may activate more) */
    for (;;) {
        rf__config_update_active(sp, child, 0);
        int j = 0;
        while (j < sp->n && !(child->active[j] && isnan(child->v[j]))) j++;
        if (j == sp->n) break;
        child->v[j] = uniform_value(&sp->p[j], rng);
    }
    return RF_OK;
}

typedef struct evo_impl {
    rf_evolution_opts o;
} evo_impl;

static int evo_sample(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng, rf_config *out, rf_err *e) {
    const rf_evolution_opts *o = &((evo_impl *)s->impl)->o;
    const int k = o->objective, P = o->population, S = o->sample_size;
    if (h->n_objectives > 0 && k >= h->n_objectives)
        return rf_err_set(e, RF_EARG, "evolution: objective %d but the study has %d", k, h->n_objectives);
    /* the population: the last P complete trials (history order = trial number) */
    const rf_trial **pop = malloc(sizeof *pop * (size_t)P);
    int *idx = malloc(sizeof(int) * (size_t)P);
    if (!pop || !idx) {
        free(pop);
        free(idx);
        return rf_err_set(e, RF_ENOMEM, "evolution: out of memory");
    }
    int n = 0;
    for (int i = h->n - 1; i >= 0 && n < P; i--) {
        const rf_trial *t = h->items[i];
        if (t->status == RF_TRIAL_COMPLETE && t->n_values > k && isfinite(t->values[k]) && t->cfg.n == sp->n) pop[n++] = t;
    }
    int rc = RF_OK;
    if (n < P) {
        rf_space_sample_uniform(sp, rng, out);
    } else {
        /* pop[0] is the newest; tournament over S distinct members (partial Fisher-Yates) */
        for (int i = 0; i < P; i++) idx[i] = i;
        const double sgn = rf__dir_sign(h, k);
        const rf_trial *best = NULL;
        int best_i = -1;
        for (int j = 0; j < S; j++) {
            int r = j + (int)rf_rng_below(rng, (uint64_t)(P - j));
            int tmp = idx[j];
            idx[j] = idx[r];
            idx[r] = tmp;
            const rf_trial *t = pop[idx[j]];
            double v = sgn * t->values[k], bv = best ? sgn * best->values[k] : INFINITY;
            if (!best || v < bv || (v == bv && idx[j] < best_i)) {
                best = t;
                best_i = idx[j];
            }
        }
        rc = rf_evolution_mutate(sp, &best->cfg, o->mutation_sd, rng, out, NULL, e);
    }
    free(pop);
    free(idx);
    return rc;
}

static const rf_sampler_ops EVO_OPS = {"evolution", evo_sample, NULL};

rf_sampler *rf_sampler_evolution_create(const rf_evolution_opts *o, rf_err *e) {
    rf_evolution_opts d;
    if (!o) {
        rf_evolution_opts_default(&d);
        o = &d;
    }
    if (o->population < 1 || o->population > 1000000)
        return rf_err_set(e, RF_EARG, "evolution: population = %d (expected >= 1)", o->population), NULL;
    if (o->sample_size < 1 || o->sample_size > o->population)
        return rf_err_set(e, RF_EARG, "evolution: sample size = %d (expected 1..population = %d)", o->sample_size,
                          o->population),
               NULL;
    if (!(o->mutation_sd > 0) || !isfinite(o->mutation_sd))
        return rf_err_set(e, RF_EARG, "evolution: mutation_sd = %g (expected > 0)", o->mutation_sd), NULL;
    if (o->objective < 0 || o->objective >= RF_MAX_OBJECTIVES)
        return rf_err_set(e, RF_EARG, "evolution: objective %d (expected 0..%d)", o->objective, RF_MAX_OBJECTIVES - 1), NULL;
    evo_impl *im = rf_zalloc(sizeof *im, e);
    rf_sampler *s = im ? rf_zalloc(sizeof *s, e) : NULL;
    if (!s) {
        free(im);
        return NULL;
    }
    im->o = *o;
    s->ops = &EVO_OPS;
    s->impl = im;
    return s;
}

rf_sampler *rf_sampler_create_strategy(const char *name, rf_err *e) {
    if (!name) return NULL;
    if (!strcmp(name, "evolution")) return rf_sampler_evolution_create(NULL, e);
    if (!strcmp(name, "rl")) return rf_sampler_rl_create(NULL, e);
    return NULL;
}
