/* REINFORCE for the LSTM controller: the shaped reward R(x) = C / (1 + exp(-A x + B)), an
 * exponential-moving-average baseline, an entropy bonus, and Adam (or SGD) ascending
 *   J = (R - b) log p(choices) + beta H(choices).
 * See include/renflow/controller.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/controller.h"

double rf_shaped_reward(double x, double a, double b, double c) {
    if (isnan(x)) return NAN;
    double z = a * x - b; /* R = c * sigmoid(z) */
    if (z >= 0) return c / (1.0 + exp(-z));
    double ez = exp(z);
    return c * ez / (1.0 + ez);
}

void rf_reinforce_opts_default(rf_reinforce_opts *o) {
    memset(o, 0, sizeof *o);
    o->reward_a = 1.0;
    o->reward_b = 0.0;
    o->reward_c = 1.0;
    o->baseline_decay = 0.9;
    o->baseline_init = NAN;
    o->entropy_weight = 1e-3;
    o->optimizer = RF_CTRL_ADAM;
    o->lr = 0.01;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->grad_clip = 0;
}

struct rf_reinforce {
    rf_reinforce_opts o;
    rf_controller *c;
    double baseline;
    long steps;
    size_t np;
    double *g, *m, *v;
};

static int check_opts(const rf_reinforce_opts *o, rf_err *e) {
    if (!(o->reward_a > 0) || !isfinite(o->reward_a))
        return rf_err_set(e, RF_EARG, "reinforce: reward A = %g (expected a finite number > 0)", o->reward_a);
    if (!isfinite(o->reward_b)) return rf_err_set(e, RF_EARG, "reinforce: reward B = %g (expected a finite number)", o->reward_b);
    if (!(o->reward_c > 0) || !isfinite(o->reward_c))
        return rf_err_set(e, RF_EARG, "reinforce: reward C = %g (expected a finite number > 0)", o->reward_c);
    if (!(o->baseline_decay >= 0 && o->baseline_decay < 1))
        return rf_err_set(e, RF_EARG, "reinforce: baseline_decay = %g (expected 0 <= decay < 1)", o->baseline_decay);
    if (!isnan(o->baseline_init) && !isfinite(o->baseline_init))
        return rf_err_set(e, RF_EARG, "reinforce: baseline_init = %g (expected a finite number, or NAN for C/2)", o->baseline_init);
    if (!(o->entropy_weight >= 0) || !isfinite(o->entropy_weight))
        return rf_err_set(e, RF_EARG, "reinforce: entropy_weight = %g (expected >= 0)", o->entropy_weight);
    if (o->optimizer != RF_CTRL_ADAM && o->optimizer != RF_CTRL_SGD)
        return rf_err_set(e, RF_EARG, "reinforce: optimizer %d (expected RF_CTRL_ADAM or RF_CTRL_SGD)", (int)o->optimizer);
    if (!(o->lr > 0) || !isfinite(o->lr)) return rf_err_set(e, RF_EARG, "reinforce: lr = %g (expected > 0)", o->lr);
    if (o->optimizer == RF_CTRL_ADAM &&
        (!(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) || !(o->eps > 0)))
        return rf_err_set(e, RF_EARG, "reinforce: Adam beta1 = %g, beta2 = %g, eps = %g (expected betas in [0, 1), eps > 0)",
                          o->beta1, o->beta2, o->eps);
    if (!(o->grad_clip >= 0)) return rf_err_set(e, RF_EARG, "reinforce: grad_clip = %g (expected >= 0; 0 = none)", o->grad_clip);
    return RF_OK;
}

rf_reinforce *rf_reinforce_create(rf_controller *c, const rf_reinforce_opts *o, rf_err *e) {
    if (!c || !o) return rf_err_set(e, RF_EARG, "reinforce: NULL argument"), NULL;
    if (check_opts(o, e)) return NULL;
    rf_reinforce *r = rf_zalloc(sizeof *r, e);
    if (!r) return NULL;
    r->o = *o;
    r->c = c;
    r->baseline = isnan(o->baseline_init) ? 0.5 * o->reward_c : o->baseline_init;
    r->np = rf_controller_n_params(c);
    r->g = calloc(r->np, sizeof(double));
    r->m = calloc(r->np, sizeof(double));
    r->v = calloc(r->np, sizeof(double));
    if (!r->g || !r->m || !r->v) {
        rf_reinforce_free(r);
        return rf_err_set(e, RF_ENOMEM, "reinforce: out of memory (%zu parameters)", rf_controller_n_params(c)), NULL;
    }
    return r;
}

void rf_reinforce_free(rf_reinforce *r) {
    if (!r) return;
    free(r->g);
    free(r->m);
    free(r->v);
    free(r);
}

double rf_reinforce_reward(const rf_reinforce *r, double x) {
    return rf_shaped_reward(x, r->o.reward_a, r->o.reward_b, r->o.reward_c);
}
double rf_reinforce_baseline(const rf_reinforce *r) { return r ? r->baseline : NAN; }
long rf_reinforce_steps(const rf_reinforce *r) { return r ? r->steps : 0; }

int rf_reinforce_update(rf_reinforce *r, int n, const int *choices, const double *rewards, rf_reinforce_info *info,
                        rf_err *e) {
    if (!r || !choices || !rewards) return rf_err_set(e, RF_EARG, "reinforce: update: NULL argument");
    if (n < 1) return rf_err_set(e, RF_EARG, "reinforce: update with %d episodes (expected >= 1)", n);
    for (int i = 0; i < n; i++)
        if (!isfinite(rewards[i]))
            return rf_err_set(e, RF_ENONFINITE, "reinforce: reward %d of the batch is %g (expected finite)", i, rewards[i]);
    const int ns = rf_controller_n_slots(r->c);
    const double b = r->baseline, beta = r->o.entropy_weight;
    memset(r->g, 0, sizeof(double) * r->np);
    double sum_lp = 0, sum_h = 0, sum_r = 0;
    for (int i = 0; i < n; i++) {
        double lp, h;
        int rc = rf_controller_grad(r->c, choices + (size_t)i * (size_t)ns, (rewards[i] - b) / n, beta / n, &lp, &h, r->g, e);
        if (rc) return rf_err_prefix(e, rc, "reinforce: episode %d", i);
        sum_lp += lp;
        sum_h += h;
        sum_r += rewards[i];
    }
    double nrm = 0;
    for (size_t j = 0; j < r->np; j++) nrm += r->g[j] * r->g[j];
    nrm = sqrt(nrm);
    if (!isfinite(nrm)) return rf_err_set(e, RF_ENONFINITE, "reinforce: non-finite gradient (not applied)");
    double scale = r->o.grad_clip > 0 && nrm > r->o.grad_clip ? r->o.grad_clip / nrm : 1.0;
    double *theta = rf_controller_params(r->c);
    r->steps++;
    if (r->o.optimizer == RF_CTRL_SGD) {
        for (size_t j = 0; j < r->np; j++) theta[j] += r->o.lr * scale * r->g[j];
    } else {
        const double b1 = r->o.beta1, b2 = r->o.beta2;
        const double c1 = 1.0 - pow(b1, (double)r->steps), c2 = 1.0 - pow(b2, (double)r->steps);
        for (size_t j = 0; j < r->np; j++) {
            double g = scale * r->g[j];
            r->m[j] = b1 * r->m[j] + (1.0 - b1) * g;
            r->v[j] = b2 * r->v[j] + (1.0 - b2) * g * g;
            theta[j] += r->o.lr * (r->m[j] / c1) / (sqrt(r->v[j] / c2) + r->o.eps);
        }
    }
    for (int i = 0; i < n; i++) r->baseline = r->o.baseline_decay * r->baseline + (1.0 - r->o.baseline_decay) * rewards[i];
    if (info) {
        info->baseline = b;
        info->mean_reward = sum_r / n;
        info->mean_logp = sum_lp / n;
        info->mean_entropy = sum_h / n;
        info->grad_norm = nrm;
    }
    return RF_OK;
}
