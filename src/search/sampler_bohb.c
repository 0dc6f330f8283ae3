/* BOHB's model (Falkner, Klein and Hutter 2018): new configurations of a Hyperband run come from
 * a TPE fitted on the observations of the largest budget that has enough of them. Falkner et al.
 * build a model for budget b once it holds N_min + 2 observations (N_min = number of parameters
 * + 1), always use the largest such budget, and draw a fraction rho = 1/3 of the configurations
 * at random to keep the convergence guarantees of Hyperband. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf_internal.h"

int rf__mf_min_model_points(const rf_mf_opts *o, const rf_space *sp) {
    int nmin = o->min_points_in_model > 0 ? o->min_points_in_model : sp->n + 1;
    return nmin + 2;
}

static double eff_budget(const rf_mf_opts *o, double b) { return b > 0 ? b : o->max_budget; }

int rf__mf_new_config(const rf_mf_opts *o, rf_sampler *tpe, const rf_space *sp, const rf_history *h, rf_rng *rng,
                      rf_config *out, double *model_budget, int *model_n, rf_err *e) {
    *model_budget = NAN;
    *model_n = 0;
    if (!o->model || !tpe) {
        rf_space_sample_uniform(sp, rng, out);
        return RF_OK;
    }
    /* the coin first, so that the stream of random draws does not depend on the history */
    const int random = rf_rng_uniform(rng) < o->random_fraction;
    const int need = rf__mf_min_model_points(o, sp);
    const int n = h ? h->n : 0;
    /* the largest budget with enough complete observations */
    double best_b = -INFINITY;
    int best_n = 0;
    double *seen = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!seen) return rf_err_set(e, RF_ENOMEM, "BOHB: out of memory");
    int ns = 0;
    for (int i = 0; i < n; i++) {
        const rf_trial *t = h->items[i];
        if (t->status != RF_TRIAL_COMPLETE) continue;
        double b = eff_budget(o, t->budget);
        int known = 0;
        for (int j = 0; j < ns && !known; j++) known = rf__budget_eq(seen[j], b);
        if (known || !(b > best_b)) continue;
        seen[ns++] = b;
        int c = 0;
        for (int j = 0; j < n; j++)
            c += h->items[j]->status == RF_TRIAL_COMPLETE && rf__budget_eq(eff_budget(o, h->items[j]->budget), b);
        if (c >= need) {
            best_b = b;
            best_n = c;
        }
    }
    free(seen);
    if (random || best_n == 0) {
        rf_space_sample_uniform(sp, rng, out);
        return RF_OK;
    }
    const rf_trial **items = malloc(sizeof *items * (size_t)best_n);
    if (!items) return rf_err_set(e, RF_ENOMEM, "BOHB: out of memory");
    int m = 0;
    for (int i = 0; i < n; i++) {
        const rf_trial *t = h->items[i];
        if (t->status == RF_TRIAL_COMPLETE && rf__budget_eq(eff_budget(o, t->budget), best_b)) items[m++] = t;
    }
    rf_history hb = *h;
    hb.n = m;
    hb.items = items;
    int rc = rf_sampler_sample(tpe, sp, &hb, rng, out, e);
    free(items);
    if (rc) return rf_err_prefix(e, rc, "BOHB model at budget %g (%d observations)", best_b, m);
    *model_budget = best_b;
    *model_n = m;
    return RF_OK;
}
