/* Time of renflow's training step (loss + gradient, clipping, AdamW) on random data, as the best
 * of several windows so that bursts of other activity on a shared machine do not decide it.
 * Prints one JSON object: the configuration, ms per step and training samples/s.
 *
 * build: cc -O2 -fopenmp -Iinclude -o build/bench/step_bench bench/step_bench.c \
 *            -Lbuild -lrenflow -Wl,-rpath,$PWD/build -lm
 * usage: step_bench [--flow F] [--dim D] [--blocks N] [--hidden H] [--batch B] [--threads T]
 *                   [--steps S] [--windows W] [--memory-saving] [--act relu|gelu|tanh] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/model.h"
#include "renflow/train.h"

int main(int argc, char **argv) {
    const char *flow = "realnvp", *act = "relu";
    int D = 8, blocks = 5, hidden = 64, batch = 256, threads = 2, steps = 20, windows = 7, ms = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--memory-saving")) ms = 1;
        else if (v && !strcmp(a, "--flow")) flow = argv[++i];
        else if (v && !strcmp(a, "--act")) act = argv[++i];
        else if (v && !strcmp(a, "--dim")) D = atoi(argv[++i]);
        else if (v && !strcmp(a, "--blocks")) blocks = atoi(argv[++i]);
        else if (v && !strcmp(a, "--hidden")) hidden = atoi(argv[++i]);
        else if (v && !strcmp(a, "--batch")) batch = atoi(argv[++i]);
        else if (v && !strcmp(a, "--threads")) threads = atoi(argv[++i]);
        else if (v && !strcmp(a, "--steps")) steps = atoi(argv[++i]);
        else if (v && !strcmp(a, "--windows")) windows = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--flow F] [--dim D] [--blocks N] [--hidden H] [--batch B] "
                            "[--threads T] [--steps S] [--windows W] [--memory-saving] [--act A]\n", argv[0]);
            return 2;
        }
    }
    if (D < 1 || blocks < 1 || hidden < 1 || batch < 1 || threads < 1 || steps < 1 || windows < 1) {
        fprintf(stderr, "step_bench: sizes must be >= 1\n");
        return 2;
    }
    rf_set_threads(threads);
    rf_flow_spec s;
    rf_flow_type t;
    if (rf_flow_type_parse(flow, &t) != RF_OK) {
        fprintf(stderr, "step_bench: unknown flow '%s'\n", flow);
        return 2;
    }
    rf_flow_spec_default(&s, t, D);
    s.blocks = blocks;
    s.hidden = hidden;
    if (rf_act_parse(act, &s.act) != RF_OK) {
        fprintf(stderr, "step_bench: unknown activation '%s'\n", act);
        return 2;
    }
    rf_rng rng;
    rf_rng_seed(&rng, 1);
    rf_err e;
    rf_flow *f = rf_flow_create(&s, &rng, &e);
    if (!f) {
        fprintf(stderr, "step_bench: %s\n", e.msg);
        return 1;
    }
    /* non-trivial parameters, so that no layer is the identity */
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.05f * (float)rf_rng_normal(&rng);
    for (int k = 0; k < f->n_layers; k++)
        if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], f->params + f->layers[k]->offset);
    float *x = rf_floats((size_t)batch * D, &e);
    rf_flow_ws *w = rf_flow_ws_create(f, batch, ms, &e);
    rf_adam adam;
    if (!x || !w || rf_adam_init(&adam, f->n_params, &e) != RF_OK) {
        fprintf(stderr, "step_bench: %s\n", e.msg);
        return 1;
    }
    for (size_t i = 0; i < (size_t)batch * D; i++) x[i] = (float)rf_rng_normal(&rng);
    double best = INFINITY, loss = 0;
    for (int wi = 0; wi <= windows; wi++) { /* window 0 warms up */
        const double t0 = rf_now();
        for (int k = 0; k < steps; k++) {
            memset(f->grads, 0, sizeof(float) * f->n_params);
            loss = rf_flow_loss_grad(f, w, batch, x, NULL, 0);
            const double gn = rf_grad_norm(f->grads, f->n_params, w); /* as rf_train does */
            rf_adam_step_scaled(&adam, f->params, f->grads, rf_clip_scale(gn, 5.0), 1e-4f, 0.0f, w);
        }
        const double dt = (rf_now() - t0) / steps;
        if (wi > 0 && dt < best) best = dt;
    }
    printf("{\"flow\": \"%s\", \"dim\": %d, \"blocks\": %d, \"hidden\": %d, \"batch\": %d, \"threads\": %d, "
           "\"shards\": %d, \"memory_saving\": %d, \"n_params\": %zu, \"ms_per_step\": %.4f, "
           "\"samples_per_sec\": %.0f, \"loss\": %.4f}\n",
           flow, D, blocks, hidden, batch, threads, rf_flow_ws_threads(w), ms, f->n_params, 1e3 * best,
           batch / best, loss);
    rf_adam_free(&adam);
    rf_flow_ws_free(w);
    rf_free(x);
    rf_flow_free(f);
    return 0;
}
