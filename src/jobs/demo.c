/* The built-in default job: a flow on a 2-D synthetic density, with figures. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "renflow/data.h"
#include "renflow/jobs.h"
#include "renflow/viz.h"

void rf_demo_cfg_default(rf_demo_cfg *c) {
    memset(c, 0, sizeof *c);
    c->dataset = "ring";
    c->out_dir = "renflow-demo";
    c->flow = RF_FLOW_NSF;
    c->blocks = 5;
    c->hidden = 64;
    c->epochs = 25;
    c->batch = 256;
    c->threads = 2;
    c->lr = 2e-3f;
    c->seed = 1;
    c->progress = 1;
}

int rf_demo_run(const rf_demo_cfg *c, rf_demo_result *r, rf_err *e) {
    memset(r, 0, sizeof *r);
    if (mkdir(c->out_dir, 0777) != 0 && errno != EEXIST)
        return rf_err_set(e, RF_EIO, "%s: cannot create output directory: %s", c->out_dir, strerror(errno));
    rf_rng rng, data_rng;
    rf_rng_seed(&rng, c->seed);
    rf_rng_fork(&rng, &data_rng);
    rf_matrix tr = {0}, va = {0}, te = {0}, smp = {0};
    rf_flow *f = NULL;
    rf_flow_ws *w = NULL;
    rf_train_result res = {0};
    int rc = rf_synthetic(c->dataset, 20000, 2, c->seed, &data_rng, &tr, e);
    if (!rc) rc = rf_synthetic(c->dataset, 2000, 2, c->seed, &data_rng, &va, e);
    if (!rc) rc = rf_synthetic(c->dataset, 5000, 2, c->seed, &data_rng, &te, e);
    if (rc) goto out;
    rf_flow_spec s;
    rf_flow_spec_default(&s, c->flow, 2);
    s.blocks = c->blocks;
    s.hidden = c->hidden;
    if (!(f = rf_flow_create(&s, &rng, e))) {
        rc = e ? e->code : RF_EARG;
        goto out;
    }
    snprintf(r->model_path, sizeof r->model_path, "%s/model.rf", c->out_dir);
    snprintf(r->samples_path, sizeof r->samples_path, "%s/samples.npy", c->out_dir);
    snprintf(r->density_png, sizeof r->density_png, "%s/density.png", c->out_dir);
    snprintf(r->density_svg, sizeof r->density_svg, "%s/density.svg", c->out_dir);
    snprintf(r->curve_png, sizeof r->curve_png, "%s/training-curve.png", c->out_dir);
    rf_train_cfg tc;
    rf_train_cfg_default(&tc);
    tc.epochs = c->epochs;
    tc.batch = c->batch;
    tc.lr = c->lr;
    tc.seed = c->seed;
    tc.threads = c->threads;
    tc.progress = c->progress;
    tc.patience = 0;
    tc.out_path = r->model_path;
    if ((rc = rf_train(f, &tr, NULL, &va, NULL, &tc, &res, e))) goto out;
    if (!(w = rf_flow_ws_create(f, 1024, 1, e))) {
        rc = e ? e->code : RF_ENOMEM;
        goto out;
    }
    r->test_nll = rf_eval_nll(f, w, &te, NULL, NULL);
    r->test_bits_per_dim = r->test_nll / (2 * 0.6931471805599453);
    r->train_seconds = res.seconds;
    r->samples_per_sec = res.samples_per_sec;
    r->train_rows = tr.n;
    r->test_rows = te.n;
    r->epochs_run = res.epochs_run;
    if ((rc = rf_matrix_alloc(&smp, 5000, 2, e))) goto out;
    rf_flow_sample(f, w, smp.n, NULL, &rng, smp.x);
    rf_ndarray a = {.ndim = 2, .shape = {smp.n, 2}, .dtype = RF_DT_F32, .data = smp.x};
    if ((rc = rf_npy_write(r->samples_path, &a, e))) goto out;
    char title[128];
    snprintf(title, sizeof title, "%s flow on '%s': test NLL %.3f nats", rf_flow_type_name(c->flow), c->dataset, r->test_nll);
    if ((rc = rf_plot_density2d(r->density_png, title, f, &te, &smp, e))) goto out;
    if ((rc = rf_plot_density2d(r->density_svg, title, f, &te, &smp, e))) goto out;
    rc = rf_plot_curves(r->curve_png, "training curve", res.train_curve, res.val_curve, res.epochs_run, "NLL (nats)", e);
out:
    rf_train_result_free(&res);
    rf_flow_ws_free(w);
    rf_flow_free(f);
    rf_matrix_free(&tr);
    rf_matrix_free(&va);
    rf_matrix_free(&te);
    rf_matrix_free(&smp);
    return rc;
}
