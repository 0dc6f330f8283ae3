/* The certificate: measurements of the model and of the reference densities, guarantees,
 * provenance and ratings assembled into one JSON document (schema "renflow-certificate/1",
 * docs/certificate.schema.json), and its atomic write. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cert_internal.h"

void rf_cert_opts_default(rf_cert_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->n_model_samples = 2000;
    o->hdr_n_levels = 5;
    const double lv[5] = {0.5, 0.8, 0.9, 0.95, 0.99};
    memcpy(o->hdr_levels, lv, sizeof lv);
    o->ece_bins = 15;
    o->batch = 256;
    o->latency_reps = 200;
    o->latency_min_reps = 5;
    o->latency_budget_s = 1.0;
    o->watts_per_core = RF_CERT_DEFAULT_WATTS_PER_CORE;
    o->energy_budget_s = 1.0;
    o->guarantee_points = 8;
    o->box_points = 4;
    o->max_rows = 0;
    o->jacobian_max_dim = 512;
    o->lanczos_steps = 50;
    o->fd_step = 1e-2;
    o->inv_tol = 1e-3;
    o->logdet_tol = 1e-2;
    o->cond_max = 1e7;
    o->ref_max_dim = 1024;
    o->rating_reference = "gaussian";
}

static int check_opts(const rf_cert_opts *o, rf_err *e) {
    if (o->hdr_n_levels < 1 || o->hdr_n_levels > 8)
        return rf_err_set(e, RF_EARG, "hdr_n_levels must be in [1, 8], got %d", o->hdr_n_levels);
    for (int k = 0; k < o->hdr_n_levels; k++)
        if (!(o->hdr_levels[k] > 0 && o->hdr_levels[k] < 1))
            return rf_err_set(e, RF_EARG, "hdr level %d must be in (0, 1), got %g", k, o->hdr_levels[k]);
    if (o->n_model_samples < 10) return rf_err_set(e, RF_EARG, "n_model_samples must be >= 10, got %d", o->n_model_samples);
    if (o->batch < 1) return rf_err_set(e, RF_EARG, "batch must be >= 1, got %d", o->batch);
    if (o->ece_bins < 1) return rf_err_set(e, RF_EARG, "ece_bins must be >= 1, got %d", o->ece_bins);
    if (!(o->fd_step > 0 && o->fd_step < 1)) return rf_err_set(e, RF_EARG, "fd_step must be in (0, 1), got %g", o->fd_step);
    if (o->guarantee_points < 1) return rf_err_set(e, RF_EARG, "guarantee_points must be >= 1, got %d", o->guarantee_points);
    if (o->lanczos_steps < 1) return rf_err_set(e, RF_EARG, "lanczos_steps must be >= 1, got %d", o->lanczos_steps);
    if (!(o->inv_tol > 0) || !(o->logdet_tol > 0) || !(o->cond_max > 1))
        return rf_err_set(e, RF_EARG, "thresholds must be positive (inv_tol %g, logdet_tol %g) and cond_max > 1 (%g)", o->inv_tol,
                          o->logdet_tol, o->cond_max);
    const char *r = o->rating_reference;
    if (r && strcmp(r, "gaussian") && strcmp(r, "gmm") && strcmp(r, "kde"))
        return rf_err_set(e, RF_EARG, "rating reference must be gaussian, gmm or kde, got \"%s\"", r);
    return RF_OK;
}

static const char *base_name(const char *p) {
    const char *s = p ? strrchr(p, '/') : NULL;
    return s ? s + 1 : p;
}

static cJSON *model_json(const rf_flow *f, const rf_cert_opts *o) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "kind", "normalizing flow (renflow)");
    if (o->model_path) {
        cJSON_AddStringToObject(j, "path", o->model_path);
        cJSON_AddStringToObject(j, "name", base_name(o->model_path));
    } else {
        cJSON_AddNullToObject(j, "path");
        cJSON_AddStringToObject(j, "name", "model");
    }
    cJSON_AddStringToObject(j, "flow", rf_flow_type_name(f->spec.type));
    cJSON_AddNumberToObject(j, "dim", f->D);
    cJSON_AddBoolToObject(j, "class_conditional", f->base.kind == RF_BASE_CLASS);
    cJSON_AddNumberToObject(j, "n_classes", f->base.kind == RF_BASE_CLASS ? f->base.n_classes : 0);
    cJSON_AddNumberToObject(j, "n_params", (double)f->n_params);
    cJSON_AddNumberToObject(j, "n_layers", f->n_layers);
    cJSON *ls = cJSON_AddArrayToObject(j, "layers");
    for (int k = 0; k < f->n_layers; k++) cJSON_AddItemToArray(ls, cJSON_CreateString(f->layers[k]->ops->kind));
    cJSON_AddItemToObject(j, "spec", rf_flow_spec_to_json(&f->spec));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)f->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddItemToObject(j, "meta", f->meta ? cJSON_Duplicate(f->meta, 1) : cJSON_CreateNull());
    return j;
}

static cJSON *data_json(const char *path, const char *labels_path, const rf_matrix *m, int labelled, rf_err *e) {
    cJSON *j = cJSON_CreateObject();
    if (path) {
        cJSON *fj = rf_cert_file_json(path, e);
        if (!fj) {
            cJSON_Delete(j);
            return NULL;
        }
        cJSON_AddItemToObject(j, "file", fj);
    } else {
        cJSON_AddNullToObject(j, "file");
    }
    if (labels_path) {
        cJSON *lj = rf_cert_file_json(labels_path, e);
        if (!lj) {
            cJSON_Delete(j);
            return NULL;
        }
        cJSON_AddItemToObject(j, "labels_file", lj);
    }
    cJSON_AddNumberToObject(j, "rows", m->n);
    cJSON_AddNumberToObject(j, "dim", m->d);
    cJSON_AddBoolToObject(j, "labels_used", labelled);
    return j;
}

static int measure_subject(const cert_subject *s, const rf_matrix *test, const int *labels, const rf_cert_opts *o,
                           rf_rng *rng, cJSON *metrics, cJSON **energy_method, rf_err *e) {
    rf_rng r1, r2, r3;
    rf_rng_fork(rng, &r1);
    rf_rng_fork(rng, &r2);
    rf_rng_fork(rng, &r3);
    if (o->progress) fprintf(stderr, "renflow certify: %s: quality\n", s->name);
    int rc = cert_measure_quality(s, test, labels, o, &r1, metrics, e);
    if (!rc && o->progress) fprintf(stderr, "renflow certify: %s: cost\n", s->name);
    if (!rc) rc = cert_measure_cost(s, test, o, &r2, metrics, e);
    if (!rc && o->progress) fprintf(stderr, "renflow certify: %s: energy\n", s->name);
    if (!rc) rc = cert_measure_energy(s, test, o, &r3, metrics, energy_method, e);
    return rc;
}

static cJSON *settings_json(const rf_cert_opts *o) {
    cJSON *j = cJSON_CreateObject();
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "threads", rf_get_threads());
    cJSON_AddNumberToObject(j, "n_model_samples", o->n_model_samples);
    cJSON_AddItemToObject(j, "hdr_levels", cJSON_CreateDoubleArray(o->hdr_levels, o->hdr_n_levels));
    cJSON_AddNumberToObject(j, "ece_bins", o->ece_bins);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "latency_reps", o->latency_reps);
    cJSON_AddNumberToObject(j, "latency_min_reps", o->latency_min_reps);
    cJSON_AddNumberToObject(j, "latency_budget_s", o->latency_budget_s);
    cJSON_AddNumberToObject(j, "energy_budget_s", o->energy_budget_s);
    cJSON_AddNumberToObject(j, "watts_per_core", o->watts_per_core > 0 ? o->watts_per_core : RF_CERT_DEFAULT_WATTS_PER_CORE);
    cJSON_AddNumberToObject(j, "guarantee_points", o->guarantee_points);
    cJSON_AddNumberToObject(j, "box_points", o->box_points);
    cJSON_AddNumberToObject(j, "max_rows", o->max_rows);
    cJSON_AddNumberToObject(j, "jacobian_max_dim", o->jacobian_max_dim);
    cJSON_AddNumberToObject(j, "lanczos_steps", o->lanczos_steps);
    cJSON_AddNumberToObject(j, "fd_step", o->fd_step);
    cJSON_AddNumberToObject(j, "inv_tol", o->inv_tol);
    cJSON_AddNumberToObject(j, "logdet_tol", o->logdet_tol);
    cJSON_AddNumberToObject(j, "cond_max", o->cond_max);
    cJSON_AddNumberToObject(j, "ref_max_dim", o->ref_max_dim);
    cJSON_AddStringToObject(j, "rating_reference", o->rating_reference ? o->rating_reference : "gaussian");
    return j;
}

cJSON *rf_certify(const rf_flow *f, const rf_matrix *test, const int *labels, const rf_matrix *train,
                  const int *train_labels, const rf_cert_opts *opts, rf_err *e) {
    rf_cert_opts od;
    if (!opts) {
        rf_cert_opts_default(&od);
        opts = &od;
    }
    const rf_cert_opts *o = opts;
    if (check_opts(o, e)) return NULL;
    const int D = f->D, C = f->base.kind == RF_BASE_CLASS ? f->base.n_classes : 0;
    const char *tname = o->data_path ? o->data_path : "test data";
    if (test->d != D) {
        rf_err_set(e, RF_EARG, "%s has %d columns but the model has dimension %d", tname, test->d, D);
        return NULL;
    }
    if (test->n < 2) {
        rf_err_set(e, RF_EARG, "%s has %d rows; a certificate needs at least 2", tname, test->n);
        return NULL;
    }
    for (size_t k = 0; k < (size_t)test->n * D; k++)
        if (!isfinite(test->x[k])) {
            rf_err_set(e, RF_ENONFINITE, "%s: row %zu, column %zu is not finite", tname, k / D, k % D);
            return NULL;
        }
    const int *y = C > 0 ? labels : NULL;
    const char *lname = o->labels_path ? o->labels_path : tname;
    for (int i = 0; y && i < test->n; i++)
        if (y[i] < 0 || y[i] >= C) {
            rf_err_set(e, RF_EFORMAT, "%s: label %d at row %d, but the model has %d classes", lname, y[i], i, C);
            return NULL;
        }
    if (train && train->d != D) {
        rf_err_set(e, RF_EARG, "%s has %d columns but the model has dimension %d", o->train_path ? o->train_path : "training data",
                   train->d, D);
        return NULL;
    }
    const int *ty = C > 0 ? train_labels : NULL;
    for (int i = 0; train && ty && i < train->n; i++)
        if (ty[i] < 0 || ty[i] >= C) {
            rf_err_set(e, RF_EFORMAT, "%s: label %d at row %d, but the model has %d classes",
                       o->train_labels_path ? o->train_labels_path : "training labels", ty[i], i, C);
            return NULL;
        }
    rf_rng rng, rq, rg, rr;
    rf_rng_seed(&rng, o->seed);
    rf_rng_fork(&rng, &rq);
    rf_rng_fork(&rng, &rg);
    rf_rng_fork(&rng, &rr);
    cJSON *cert = cJSON_CreateObject();
    cert_subject s;
    cert_flow_ctx *fc = NULL;
    if (!cert) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    char date[32];
    cert_utc_now(date, sizeof date);
    cJSON_AddStringToObject(cert, "schema", RF_CERT_SCHEMA_ID);
    cJSON *gen = cJSON_AddObjectToObject(cert, "generator");
    cJSON_AddStringToObject(gen, "name", "renflow certify");
    cJSON_AddStringToObject(gen, "version", RF_VERSION_STRING);
    cJSON_AddStringToObject(cert, "created", date);
    cJSON_AddItemToObject(cert, "model", model_json(f, o));
    cJSON *data = cJSON_AddObjectToObject(cert, "data");
    cJSON *dj = data_json(o->data_path, y ? o->labels_path : NULL, test, y != NULL, e);
    if (!dj) goto fail;
    if (labels && !y) cJSON_AddStringToObject(dj, "labels_note", "labels given but not used: the model is not class-conditional");
    if (C > 0 && !labels)
        cJSON_AddStringToObject(dj, "labels_note", "no labels: classification metrics are not measured, the NLL is the marginal (uniform class prior)");
    cJSON_AddItemToObject(data, "test", dj);
    if (train) {
        cJSON *tj = data_json(o->train_path, ty ? o->train_labels_path : NULL, train, ty != NULL, e);
        if (!tj) goto fail;
        cJSON_AddItemToObject(data, "train", tj);
    } else {
        cJSON_AddNullToObject(data, "train");
    }
    /* ---- the model ---- */
    if (!(fc = cert_flow_subject(f, o->batch, &s, e))) goto fail;
    cJSON *metrics = cJSON_AddObjectToObject(cert, "metrics");
    cJSON *energy = NULL;
    if (measure_subject(&s, test, y, o, &rq, metrics, &energy, e)) goto fail;
    cJSON_AddItemToObject(cert, "energy", energy);
    {
        double a, b;
        cJSON *br = NULL;
        if (rf_cert_flow_flops(f, &a, &b, &br, e) == RF_OK) {
            cJSON *fm = cJSON_GetObjectItemCaseSensitive(metrics, "flops_log_density");
            cJSON_AddItemToObject(fm, "breakdown", br);
            cJSON_AddStringToObject(fm, "convention", "multiply-add 2; exp, log, tanh, sqrt, division 1; ReLU 1, GELU 4; "
                                                      "memory moves and random draws 0 (see docs/certificates.md)");
        }
    }
    cert_flow_ctx_free(fc);
    fc = NULL;
    /* ---- guarantees ---- */
    if (o->progress) fprintf(stderr, "renflow certify: model: guarantees\n");
    cJSON *g = rf_cert_guarantees(f, test, o, &rg, e);
    if (!g) goto fail;
    cJSON_AddItemToObject(cert, "guarantees", g);
    /* ---- references ---- */
    cJSON *refs = cJSON_AddArrayToObject(cert, "references");
    if (!train) {
        cJSON_AddStringToObject(cert, "references_note", "no training data given (--train): no reference models, no ratings");
    } else if (D > o->ref_max_dim) {
        char note[256];
        snprintf(note, sizeof note, "no reference models: D = %d exceeds ref_max_dim = %d (full covariances of %d x %d)", D,
                 o->ref_max_dim, D, D);
        cJSON_AddStringToObject(cert, "references_note", note);
    } else {
        rf_refdensity_opts ro;
        if (o->ref_opts) ro = *o->ref_opts;
        else {
            rf_refdensity_opts_default(&ro);
            ro.seed = o->seed;
        }
        cJSON_AddStringToObject(cert, "references_note",
                                ty ? "class-conditional references: one density of each kind per class, fitted on that class's "
                                     "training rows; p(y | x) by Bayes' rule with a uniform class prior"
                                   : C > 0 ? "unconditional references (no training labels given): no classification metrics"
                                           : "references fitted on the training rows, measured like the model");
        static const char *const KINDS[] = {"gaussian", "gmm", "kde"};
        for (int k = 0; k < 3; k++) {
            if (o->progress) fprintf(stderr, "renflow certify: fitting reference %s\n", KINDS[k]);
            cJSON *rj = cJSON_CreateObject();
            cJSON_AddStringToObject(rj, "name", KINDS[k]);
            cJSON_AddItemToArray(refs, rj);
            rf_err re = {0};
            cert_subject rs;
            rf_rng rk;
            rf_rng_fork(&rr, &rk);
            cert_ref_ctx *rctx = cert_ref_subject(KINDS[k], train, ty, C, &ro, &rs, &re);
            if (!rctx) {
                cJSON_AddStringToObject(rj, "error", re.msg);
                continue;
            }
            cJSON_AddItemToObject(rj, "description", cert_ref_describe(rctx));
            cJSON *rm = cJSON_AddObjectToObject(rj, "metrics");
            if (measure_subject(&rs, test, ty ? y : NULL, o, &rk, rm, NULL, &re)) {
                cJSON_DeleteItemFromObjectCaseSensitive(rj, "metrics");
                cJSON_AddStringToObject(rj, "error", re.msg);
            }
            cert_ref_ctx_free(rctx);
        }
    }
    /* ---- provenance ---- */
    {
        cJSON *p = cJSON_AddObjectToObject(cert, "provenance");
        cJSON *env = rf_cert_environment_json();
        cJSON_AddItemToObject(p, "environment", env);
        if (o->model_path) {
            cJSON *mf = rf_cert_file_json(o->model_path, e);
            if (!mf) goto fail;
            cJSON_AddItemToObject(p, "model_file", mf);
        } else {
            cJSON_AddNullToObject(p, "model_file");
        }
        cJSON_AddStringToObject(p, "configuration", "model.spec (architecture) and model.meta (as recorded by training)");
        cJSON_AddItemToObject(p, "settings", settings_json(o));
        if (o->command) cJSON_AddStringToObject(p, "command", o->command);
    }
    /* ---- ratings ---- */
    if (rf_cert_rate(cert, o->rating_reference, e)) goto fail;
    return cert;
fail:
    cert_flow_ctx_free(fc);
    cJSON_Delete(cert);
    return NULL;
}

static int mkdir_p(const char *dir, rf_err *e) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return rf_err_set(e, RF_EARG, "output directory name too long: %s", dir);
    for (char *c = p + 1; *c; c++)
        if (*c == '/') {
            *c = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) return rf_err_set(e, RF_EIO, "%s: cannot create: %s", p, strerror(errno));
            *c = '/';
        }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) return rf_err_set(e, RF_EIO, "%s: cannot create: %s", p, strerror(errno));
    struct stat st;
    if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) return rf_err_set(e, RF_EIO, "%s: exists and is not a directory", p);
    return RF_OK;
}

int rf_cert_write(const cJSON *cert, const char *out_dir, rf_cert_render_fn render, void *ctx, rf_err *e) {
    if (!cert || !out_dir || !*out_dir) return rf_err_set(e, RF_EARG, "rf_cert_write: certificate and output directory required");
    int rc = mkdir_p(out_dir, e);
    if (rc) return rc;
    char *s = cJSON_Print(cert);
    if (!s) return rf_err_set(e, RF_ENOMEM, "out of memory (printing the certificate)");
    char path[4096];
    snprintf(path, sizeof path, "%s/certificate.json", out_dir);
    const size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    t[n] = '\n';
    t[n + 1] = '\0';
    rc = rf_write_file_atomic(path, t, n + 1, e);
    free(t);
    if (rc) return rc;
    return render ? render(cert, out_dir, ctx, e) : RF_OK;
}
