/* The sampler interface and the random sampler (uniform over the space, log scale for log
 * parameters, conditions applied). */
#include <stdlib.h>
#include <string.h>

#include "mf_internal.h"
#include "renflow/controller.h"

int rf_sampler_sample(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng,
                      rf_config *out, rf_err *e) {
    if (!s || !s->ops || !s->ops->sample) return rf_err_set(e, RF_EARG, "sampler: not initialised");
    if (out->n != sp->n)
        return rf_err_set(e, RF_EARG, "sampler: configuration has %d values for a space of %d parameters", out->n, sp->n);
    int rc = s->ops->sample(s, sp, h, rng, out, e);
    if (rc) return rc;
    return rf_config_check(sp, out, e);
}

const char *rf_sampler_name(const rf_sampler *s) { return s && s->ops ? s->ops->name : "?"; }

void rf_sampler_free(rf_sampler *s) {
    if (!s) return;
    if (s->ops && s->ops->destroy) s->ops->destroy(s);
    else free(s->impl);
    free(s);
}

void rf_space_sample_uniform(const rf_space *sp, rf_rng *rng, rf_config *out) {
    for (int i = 0; i < sp->n; i++) {
        const rf_param *p = &sp->p[i];
        if (p->kind == RF_PARAM_CAT) {
            out->v[i] = (double)rf_rng_below(rng, (uint64_t)p->n_choices);
        } else {
            double lo, hi;
            rf__param_tbounds(p, &lo, &hi);
            out->v[i] = rf__param_from_t(p, lo + rf_rng_uniform(rng) * (hi - lo));
        }
    }
    rf__config_update_active(sp, out, 1);
}

static int random_sample(rf_sampler *s, const rf_space *sp, const rf_history *h, rf_rng *rng,
                         rf_config *out, rf_err *e) {
    (void)s;
    (void)h;
    (void)e;
    rf_space_sample_uniform(sp, rng, out);
    return RF_OK;
}

static const rf_sampler_ops RANDOM_OPS = {"random", random_sample, NULL};

rf_sampler *rf_sampler_random_create(rf_err *e) {
    rf_sampler *s = rf_zalloc(sizeof *s, e);
    if (s) s->ops = &RANDOM_OPS;
    return s;
}

rf_sampler *rf_sampler_create(const char *name, rf_err *e) {
    if (name && !strcmp(name, "random")) return rf_sampler_random_create(e);
    /* TPE variants (sampler_tpe.c) and multi-fidelity samplers (sampler_hyperband.c) */
    rf_err e2 = {0};
    rf_sampler *s = rf__sampler_create_tpe(name, &e2);
    if (!s && !e2.code) s = rf__sampler_create_mf(name, &e2);
    if (!s && !e2.code) s = rf_sampler_create_strategy(name, &e2); /* rl, evolution (controller.h) */
    if (s || e2.code) {
        if (!s && e) *e = e2;
        return s;
    }
    rf_err_set(e, RF_EARG,
               "unknown sampler \"%s\" (random, tpe, tpe-univariate, tpe-optuna, tpe-sdw, tpe-univariate-sdw, asha, "
               "hyperband, hyperband-async, bohb, bohb-async, asha-tpe, rl, evolution)", name ? name : "(null)");
    return NULL;
}
