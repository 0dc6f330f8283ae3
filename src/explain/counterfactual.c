/* Counterfactuals: a row moved in latent space from one class towards another and decoded
 * (definitions in renflow/explain.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "explain_internal.h"

const char *rf_cf_mode_name(rf_cf_mode m) { return m == RF_CF_TRANSPORT ? "transport" : "shift"; }

int rf_cf_mode_parse(const char *s, rf_cf_mode *m) {
    if (!strcmp(s, "shift")) *m = RF_CF_SHIFT;
    else if (!strcmp(s, "transport")) *m = RF_CF_TRANSPORT;
    else return RF_EARG;
    return RF_OK;
}

void rf_counterfactual_free(rf_counterfactual *cf) {
    if (!cf) return;
    free(cf->t);
    rf_free(cf->x);
    free(cf->log_post);
    free(cf->logp);
    free(cf->latent_err);
    memset(cf, 0, sizeof *cf);
}

int rf_explain_counterfactual(const rf_flow *f, const float *x, int from, int to, rf_cf_mode mode,
                              int steps, const float *log_prior, rf_counterfactual *cf, rf_err *e) {
    memset(cf, 0, sizeof *cf);
    int rc = rf_explain_check_model(f, e);
    if (rc) return rc;
    const int C = f->base.n_classes, D = f->D;
    if (from < 0 || from >= C || to < 0 || to >= C || from == to)
        return rf_err_set(e, RF_EARG, "counterfactual: classes must be two different values in [0, %d), got %d -> %d",
                          C, from, to);
    if (steps < 2 || steps > 1000)
        return rf_err_set(e, RF_EARG, "counterfactual: steps must be in [2, 1000], got %d", steps);
    if (mode != RF_CF_SHIFT && mode != RF_CF_TRANSPORT)
        return rf_err_set(e, RF_EARG, "counterfactual: unknown mode %d", (int)mode);
    if (!rf_all_finite(x, (size_t)D)) return rf_err_set(e, RF_ENONFINITE, "counterfactual: the input row has non-finite values");
    cf->D = D;
    cf->C = C;
    cf->steps = steps;
    cf->from = from;
    cf->to = to;
    cf->mode = mode;
    cf->t = malloc(sizeof(double) * (size_t)steps);
    cf->x = rf_floats((size_t)steps * D, e);
    cf->log_post = malloc(sizeof(float) * (size_t)steps * C);
    cf->logp = malloc(sizeof(float) * (size_t)steps);
    cf->latent_err = malloc(sizeof(double) * (size_t)steps);
    float *z = rf_floats((size_t)(steps + 1) * D, e), *z2 = rf_floats((size_t)steps * D, e);
    float *mom = rf_floats((size_t)4 * D, e); /* mu_from, mu_to, log sigma_from, log sigma_to */
    rf_flow_ws_opts wo = {.max_batch = steps + 1, .memory_saving = 1, .threads = 1, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &wo, e);
    if (!cf->t || !cf->x || !cf->log_post || !cf->logp || !cf->latent_err || !z || !z2 || !mom || !w) {
        rc = rf_err_set(e, RF_ENOMEM, "counterfactual: out of memory");
        goto done;
    }
    float *mua = mom, *mub = mom + D, *lsa = mom + 2 * (size_t)D, *lsb = mom + 3 * (size_t)D;
    rf_base_class_moments(&f->base, f->params + f->base.offset, from, mua, lsa);
    rf_base_class_moments(&f->base, f->params + f->base.offset, to, mub, lsb);
    rf_flow_forward(f, w, 1, x, z, NULL); /* z row 0: the code of x; rows 1..steps: the path */
    for (int s = 0; s < steps; s++) {
        const double t = (double)s / (steps - 1);
        cf->t[s] = t;
        float *zt = z + (size_t)(s + 1) * D;
        for (int j = 0; j < D; j++) {
            double target = z[j] + (mub[j] - mua[j]);
            if (mode == RF_CF_TRANSPORT) target = mub[j] + exp((double)lsb[j] - lsa[j]) * (z[j] - mua[j]);
            zt[j] = (float)(z[j] + t * (target - z[j]));
        }
    }
    rf_flow_inverse(f, w, steps, z + D, cf->x, NULL);
    rf_flow_forward(f, w, steps, cf->x, z2, NULL);
    for (int s = 0; s < steps; s++) {
        double m = 0;
        for (int j = 0; j < D; j++) {
            const double d = fabs((double)z2[(size_t)s * D + j] - z[(size_t)(s + 1) * D + j]);
            if (!(d <= m)) m = d;
        }
        cf->latent_err[s] = m;
    }
    rc = rf_explain_scores(f, steps, cf->x, log_prior, cf->logp, cf->log_post, e);
done:
    rf_free(z);
    rf_free(z2);
    rf_free(mom);
    rf_flow_ws_free(w);
    if (rc) rf_counterfactual_free(cf);
    return rc;
}
