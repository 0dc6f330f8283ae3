/* The trial objective of `renflow search`: tasks (data split once into train / validation / test,
 * by subject when subject ids are known; built-in tasks), the default search spaces of a task,
 * training and scoring one configuration, keeping every trial's model and the best one, and the
 * NASH-style morphism search stored as a study. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "renflow/dataset.h"
#include "renflow/dsp.h"
#include "renflow/eegsim.h"
#include "renflow/metrics.h"
#include "renflow/search_job.h"
#include "renflow/tsflow.h"

/* ======================================================================================
 * Tasks
 * ====================================================================================== */

const char *rf_task_kind_name(rf_task_kind k) { return k == RF_TASK_CLASSIFY ? "classify" : "density"; }

void rf_search_task_opts_default(rf_search_task_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = RF_TASK_DENSITY;
    o->val_frac = 0.2;
    o->test_frac = 0.2;
    o->seed = 1;
}

void rf_search_task_free(rf_search_task *t) {
    if (!t) return;
    rf_matrix_free(&t->train);
    rf_matrix_free(&t->val);
    rf_matrix_free(&t->test);
    free(t->ytrain);
    free(t->yval);
    free(t->ytest);
    memset(t, 0, sizeof *t);
}

void rf_search_task_describe(const rf_search_task *t, char *buf, size_t n) {
    char subj[160] = "";
    if (t->by_subject)
        snprintf(subj, sizeof subj, " (subjects %d / %d / %d)", t->n_subjects[0], t->n_subjects[1], t->n_subjects[2]);
    char cls[48] = "";
    if (t->kind == RF_TASK_CLASSIFY) snprintf(cls, sizeof cls, ", %d classes", t->n_classes);
    snprintf(buf, n, "%s on %s: %d features%s, %d train / %d val / %d test rows%s", rf_task_kind_name(t->kind),
             t->source, t->train.d, cls, t->train.n, t->val.n, t->test.n, subj);
}

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* Copies the rows of part p (and their labels). */
static int take_part(const rf_matrix *x, const int *y, const unsigned char *part, unsigned char p, rf_matrix *out,
                     int **yout, rf_err *e) {
    int cnt = 0;
    for (int i = 0; i < x->n; i++) cnt += part[i] == p;
    out->n = 0;
    out->d = x->d;
    out->x = NULL;
    if (yout) *yout = NULL;
    if (cnt == 0) return RF_OK;
    int rc = rf_matrix_alloc(out, cnt, x->d, e);
    if (rc) return rc;
    if (y && yout && !(*yout = malloc(sizeof(int) * (size_t)cnt))) return rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int i = 0, k = 0; i < x->n; i++) {
        if (part[i] != p) continue;
        memcpy(out->x + (size_t)k * x->d, x->x + (size_t)i * x->d, sizeof(float) * (size_t)x->d);
        if (y && yout) (*yout)[k] = y[i];
        k++;
    }
    return RF_OK;
}

static int find_sorted(const int *ids, int m, int v) {
    int lo = 0, hi = m - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (ids[mid] == v) return mid;
        if (ids[mid] < v) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* How many of m units go to the test and validation parts. */
static int part_sizes(int m, const rf_search_task_opts *o, int *ntest, int *nval) {
    int nt = 0;
    if (o->test_frac > 0) {
        nt = (int)floor(o->test_frac * m + 0.5);
        if (nt < 1) nt = 1;
    }
    if (nt > m - 2) nt = m - 2;
    int rest = m - nt;
    int nv = (int)floor(o->val_frac * rest + 0.5);
    if (nv < 1) nv = 1;
    if (nv > rest - 1) nv = rest - 1;
    *ntest = nt;
    *nval = nv;
    return nt >= 0 && nv >= 1 && rest - nv >= 1;
}

static int split_task(const rf_matrix *x, const int *y, const int *subjects, const rf_search_task_opts *o,
                      rf_search_task *t, rf_err *e) {
    const int n = x->n;
    if (n < 3) return rf_err_set(e, RF_EARG, "%s: %d rows; a search needs at least 3 (train, validation, test)", t->source, n);
    unsigned char *part = calloc((size_t)n, 1);
    int *order = NULL, *ids = NULL, m = 0;
    int rc = part ? RF_OK : rf_err_set(e, RF_ENOMEM, "out of memory");
    rf_rng rng;
    rf_rng_seed(&rng, mix64(o->seed ^ 0x5e4c11f7ULL));
    if (!rc && subjects) rc = rf_subjects_unique(subjects, n, &ids, &m, e);
    if (!rc && subjects && m >= 3) {
        int nt, nv;
        part_sizes(m, o, &nt, &nv);
        if (!(order = malloc(sizeof(int) * (size_t)m))) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        unsigned char *sp = rc ? NULL : calloc((size_t)m, 1);
        if (!rc && !sp) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        if (!rc) {
            for (int i = 0; i < m; i++) order[i] = i;
            rf_rng_shuffle(&rng, order, m);
            for (int k = 0; k < m; k++) sp[order[k]] = k < nt ? 2 : k < nt + nv ? 1 : 0;
            for (int i = 0; i < n; i++) part[i] = sp[find_sorted(ids, m, subjects[i])];
            t->by_subject = 1;
            t->n_subjects[0] = m - nt - nv;
            t->n_subjects[1] = nv;
            t->n_subjects[2] = nt;
        }
        free(sp);
    } else if (!rc) {
        int nt, nv;
        part_sizes(n, o, &nt, &nv);
        if (!(order = malloc(sizeof(int) * (size_t)n))) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        if (!rc) {
            for (int i = 0; i < n; i++) order[i] = i;
            rf_rng_shuffle(&rng, order, n);
            for (int k = 0; k < n; k++) part[order[k]] = k < nt ? 2 : k < nt + nv ? 1 : 0;
        }
    }
    const int *yy = t->kind == RF_TASK_CLASSIFY ? y : NULL;
    if (!rc) rc = take_part(x, yy, part, 0, &t->train, yy ? &t->ytrain : NULL, e);
    if (!rc) rc = take_part(x, yy, part, 1, &t->val, yy ? &t->yval : NULL, e);
    if (!rc) rc = take_part(x, yy, part, 2, &t->test, yy ? &t->ytest : NULL, e);
    free(part);
    free(order);
    free(ids);
    return rc;
}

static void fingerprint(rf_search_task *t) {
    /* SHA-256 over the digests of each part, so the split and the data both count */
    uint8_t dig[8][32];
    const rf_matrix *m[3] = {&t->train, &t->val, &t->test};
    const int *y[3] = {t->ytrain, t->yval, t->ytest};
    char head[128];
    snprintf(head, sizeof head, "renflow-search-task|%s|%d|%d|%d|%d|%d", rf_task_kind_name(t->kind), t->train.d,
             t->n_classes, t->train.n, t->val.n, t->test.n);
    rf_sha256(head, strlen(head), dig[0]);
    for (int k = 0; k < 3; k++) {
        rf_sha256(m[k]->x ? (const void *)m[k]->x : (const void *)"", m[k]->x ? sizeof(float) * (size_t)m[k]->n * m[k]->d : 0,
                  dig[1 + k]);
        rf_sha256(y[k] ? (const void *)y[k] : (const void *)"", y[k] ? sizeof(int) * (size_t)m[k]->n : 0, dig[4 + k]);
    }
    uint8_t all[32];
    rf_sha256(dig, 7 * 32, all);
    char hex[65];
    rf_hex(all, 32, hex);
    memcpy(t->fingerprint, hex, 16);
    t->fingerprint[16] = '\0';
}

static int max_label(const int *y, int n) {
    int m = -1;
    for (int i = 0; y && i < n; i++)
        if (y[i] > m) m = y[i];
    return m;
}

static int check_opts(const rf_search_task_opts *o, rf_err *e) {
    if (!(o->val_frac > 0 && o->val_frac < 1))
        return rf_err_set(e, RF_EARG, "validation fraction must be in (0, 1), got %g", o->val_frac);
    if (!(o->test_frac >= 0 && o->test_frac < 1))
        return rf_err_set(e, RF_EARG, "test fraction must be in [0, 1), got %g", o->test_frac);
    return RF_OK;
}

/* Splits a loaded data set into t (t->kind and t->source set by the caller). */
static int task_from_dataset(rf_dataset *ds, const rf_search_task_opts *o, rf_search_task *t, rf_err *e) {
    if (t->kind == RF_TASK_CLASSIFY) {
        if (!ds->labels)
            return rf_err_set(e, RF_EARG, "%s: classification needs labels (give --labels, or a prepared directory with labels.npy)",
                              t->source);
        int ml = max_label(ds->labels, ds->x.n);
        t->n_classes = ds->n_classes > ml + 1 ? ds->n_classes : ml + 1;
        if (t->n_classes < 2)
            return rf_err_set(e, RF_EARG, "%s: classification needs at least 2 classes, the labels have %d", t->source, t->n_classes);
    }
    t->channels = ds->channels;
    t->length = ds->length;
    int rc = split_task(&ds->x, ds->labels, ds->subjects, o, t, e);
    if (rc) return rc;
    fingerprint(t);
    return RF_OK;
}

int rf_search_task_load(const char *data, const char *labels, const char *subjects, const rf_search_task_opts *o,
                        rf_search_task *t, rf_err *e) {
    memset(t, 0, sizeof *t);
    rf_search_task_opts dflt;
    if (!o) {
        rf_search_task_opts_default(&dflt);
        o = &dflt;
    }
    int rc = check_opts(o, e);
    if (rc) return rc;
    if (!data) return rf_err_set(e, RF_EARG, "search: no data set given");
    t->kind = o->kind;
    snprintf(t->source, sizeof t->source, "%s", data);
    rf_dataset ds = {0};
    if ((rc = rf_dataset_read(data, labels, subjects, &ds, e))) goto out;
    if (o->recordings && (rc = rf_dataset_set_recordings(&ds, o->recordings, e))) goto out;
    t->input = o->input;
    if ((rc = rf_input_apply(&ds, &t->input, e))) goto out;
    rc = task_from_dataset(&ds, o, t, e);
out:
    rf_dataset_free(&ds);
    if (rc) rf_search_task_free(t);
    return rc;
}

static int builtin_2d(const char *name, int tiny, const rf_search_task_opts *o, rf_search_task *t, rf_err *e) {
    const int ntr = tiny ? 600 : 3000, nva = tiny ? 200 : 1000, nte = tiny ? 200 : 2000;
    rf_rng rng;
    rf_rng_seed(&rng, mix64(o->seed ^ 0xda7aULL));
    int rc = rf_synthetic(name, ntr, 2, o->seed, &rng, &t->train, e);
    if (!rc) rc = rf_synthetic(name, nva, 2, o->seed, &rng, &t->val, e);
    if (!rc && o->test_frac > 0) rc = rf_synthetic(name, nte, 2, o->seed, &rng, &t->test, e);
    if (!rc && o->test_frac <= 0) t->test.d = 2;
    return rc;
}

static int builtin_eeg(int tiny, const rf_search_task_opts *o, rf_search_task *t, rf_err *e) {
    rf_eegsim_config sc;
    rf_eegsim_config_default(&sc, RF_EEGSIM_ARITHMETIC);
    sc.channels = 8;
    sc.rate = 64;
    sc.window_s = 4;
    rf_rng rng;
    rf_rng_seed(&rng, mix64(o->seed ^ 0xeeeULL));
    rf_eegsim_data sim = {0};
    rf_dataset ds = {0};
    int rc = rf_eegsim_generate(&sc, tiny ? 6 : 12, tiny ? 12 : 30, &rng, &sim, e);
    if (!rc) rc = rf_eegsim_to_dataset(&sim, &sc, o->seed, &ds, e);
    rf_eegsim_free(&sim);
    if (!rc) {
        t->input = o->input;
        t->input.bandpower = 1;
        t->input.rate = sc.rate;
        rc = rf_input_apply(&ds, &t->input, e);
    }
    if (!rc) rc = task_from_dataset(&ds, o, t, e);
    rf_dataset_free(&ds);
    return rc;
}

int rf_search_task_builtin(const char *name, int tiny, const rf_search_task_opts *o, rf_search_task *t, rf_err *e) {
    memset(t, 0, sizeof *t);
    rf_search_task_opts dflt;
    if (!o) {
        rf_search_task_opts_default(&dflt);
        o = &dflt;
    }
    int rc = check_opts(o, e);
    if (rc) return rc;
    if (!name) name = "ring";
    t->default_epochs = tiny ? 3 : 12;
    if (!strcmp(name, "ring") || !strcmp(name, "moons")) {
        t->kind = RF_TASK_DENSITY;
        snprintf(t->source, sizeof t->source, "built-in %s%s", name, tiny ? " (tiny)" : "");
        rc = builtin_2d(name, tiny, o, t, e);
        if (!rc) fingerprint(t);
    } else if (!strcmp(name, "eeg")) {
        t->kind = RF_TASK_CLASSIFY;
        snprintf(t->source, sizeof t->source, "built-in eeg%s (simulated rest vs arithmetic, band powers)", tiny ? " (tiny)" : "");
        rc = builtin_eeg(tiny, o, t, e);
    } else {
        rc = rf_err_set(e, RF_EARG, "unknown built-in task '%s' (ring, moons, eeg)", name);
    }
    if (rc) rf_search_task_free(t);
    return rc;
}

/* ======================================================================================
 * Search spaces
 * ====================================================================================== */

static int name_in(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(name, *list)) return 1;
    return 0;
}

/* sp less the parameters named in drop (a NULL-terminated list). */
static rf_space *space_without(const rf_space *sp, const char *const *drop, const char *name, rf_err *e) {
    cJSON *j = rf_space_to_json(sp);
    if (!j) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "parameters");
    cJSON *it = ps ? ps->child : NULL;
    while (it) {
        cJSON *next = it->next;
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(nm) && name_in(nm->valuestring, drop)) cJSON_Delete(cJSON_DetachItemViaPointer(ps, it));
        it = next;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(j, "name");
    if (name) cJSON_AddStringToObject(j, "name", name);
    rf_space *out = rf_space_from_json(j, "search space", e);
    cJSON_Delete(j);
    return out;
}

static rf_space *tsflow_arch_space(const rf_search_task *t, rf_err *e) {
    int max_scales = 0;
    while (max_scales < 3 && t->length % (1 << (max_scales + 1)) == 0 && t->length / (1 << (max_scales + 1)) >= 2) max_scales++;
    if (max_scales < 1) {
        rf_err_set(e, RF_EARG, "%s: windows of %d samples cannot be squeezed (a tsflow needs an even length)", t->source,
                   t->length);
        return NULL;
    }
    char js[2048];
    snprintf(js, sizeof js,
             "{\"name\": \"tsflow architecture\", \"parameters\": ["
             "{\"name\": \"blocks\", \"type\": \"int\", \"low\": 1, \"high\": 6, \"default\": %d},"
             "{\"name\": \"scales\", \"type\": \"int\", \"low\": 1, \"high\": %d, \"default\": %d},"
             "{\"name\": \"hidden\", \"type\": \"categorical\", \"choices\": [16, 32, 64], \"default\": 32},"
             "{\"name\": \"hidden-layers\", \"type\": \"int\", \"low\": 1, \"high\": 2, \"default\": 2},"
             "{\"name\": \"kernel\", \"type\": \"categorical\", \"choices\": [3, 5, 7], \"default\": 3},"
             "{\"name\": \"dilation\", \"type\": \"categorical\", \"choices\": [1, 2], \"default\": 1},"
             "{\"name\": \"coupling\", \"type\": \"categorical\", \"choices\": [\"affine\", \"spline\"], \"default\": \"affine\"},"
             "{\"name\": \"bins\", \"type\": \"int\", \"low\": 4, \"high\": 16, \"default\": 8,"
             " \"condition\": {\"parent\": \"coupling\", \"values\": [\"spline\"]}},"
             "{\"name\": \"act\", \"type\": \"categorical\", \"choices\": [\"relu\", \"gelu\", \"tanh\"], \"default\": \"relu\"},"
             "{\"name\": \"actnorm\", \"type\": \"categorical\", \"choices\": [\"on\", \"off\"], \"default\": \"on\"}"
             "]}",
             3, max_scales, max_scales < 2 ? max_scales : 2);
    return rf_space_parse(js, "built-in tsflow architecture space", e);
}

rf_space *rf_search_default_space(const rf_search_task *t, int fixed_epochs, rf_err *e) {
    rf_space *tr = rf_space_default_training(e), *ar = NULL, *all = NULL, *out = NULL;
    if (!tr) return NULL;
    ar = t->channels > 0 ? tsflow_arch_space(t, e) : rf_space_default_architecture(e);
    if (ar) all = rf_space_concat(tr, ar, NULL, e);
    if (all) {
        const char *drop[6];
        int k = 0;
        if (t->kind != RF_TASK_CLASSIFY) drop[k++] = "ce-weight";
        if (fixed_epochs > 0) drop[k++] = "epochs";
        drop[k] = NULL;
        char name[96];
        snprintf(name, sizeof name, "%s %s", rf_task_kind_name(t->kind), t->channels > 0 ? "tsflow" : "flow");
        out = space_without(all, drop, name, e);
    }
    rf_space_free(tr);
    rf_space_free(ar);
    rf_space_free(all);
    return out;
}

static const char KNOWN_NAMES[] =
    "lr, batch, weight-decay, schedule, warmup, epochs, clip, ce-weight (lambda), patience; flow, blocks, hidden, "
    "hidden-layers, act, bins, bound, clamp, residual, scales, kernel, dilation, coupling, permutation, actnorm";

int rf_search_space_check(const rf_space *sp, const char *what, rf_err *e) {
    if (!sp || sp->n < 1) return rf_err_set(e, RF_EARG, "%s: the search space has no parameters", what);
    cJSON *j = rf_space_to_json(sp);
    if (!j) return rf_err_set(e, RF_ENOMEM, "out of memory");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "parameters");
    int rc = RF_OK;
    for (int i = 0; i < sp->n && !rc; i++) {
        /* the parameter alone, unconditional, so that every value can be tried */
        cJSON *one = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(one, "parameters");
        cJSON *p = cJSON_Duplicate(cJSON_GetArrayItem(ps, i), 1);
        cJSON_DeleteItemFromObjectCaseSensitive(p, "condition");
        cJSON_AddItemToArray(arr, p);
        rf_err e1 = {0};
        rf_space *s1 = rf_space_from_json(one, what, &e1);
        cJSON_Delete(one);
        if (!s1) {
            rc = rf_err_set(e, RF_EARG, "%s: parameter '%s': %s", what, sp->p[i].name, e1.msg);
            break;
        }
        const rf_param *q = &s1->p[0];
        int nv = q->kind == RF_PARAM_CAT ? q->n_choices : 2;
        for (int k = 0; k < nv && !rc; k++) {
            rf_config c;
            if ((rc = rf_config_init(&c, s1, e))) break;
            c.active[0] = 1;
            c.v[0] = q->kind == RF_PARAM_CAT ? k : k == 0 ? q->low : q->high;
            rf_flow_spec spec;
            rf_flow_spec_default(&spec, RF_FLOW_NSF, 2);
            rf_train_cfg tc;
            rf_train_cfg_default(&tc);
            char un[256] = "";
            rf_err e2 = {0};
            int arc = rf_space_apply(s1, &c, &spec, &tc, un, sizeof un, &e2);
            char val[64];
            if (q->kind == RF_PARAM_CAT) snprintf(val, sizeof val, "\"%s\"", q->choice_label[k]);
            else snprintf(val, sizeof val, "%.17g", c.v[0]);
            if (arc)
                rc = rf_err_set(e, RF_EARG, "%s: parameter '%s' = %s: %s", what, sp->p[i].name, val, e2.msg);
            else if (un[0])
                rc = rf_err_set(e, RF_EARG, "%s: parameter '%s' is not a setting renflow search can apply (known: %s)", what,
                                sp->p[i].name, KNOWN_NAMES);
            rf_config_free(&c);
        }
        rf_space_free(s1);
    }
    cJSON_Delete(j);
    return rc;
}

static const char MORPH_SPACE[] =
    "{\"name\": \"morph\", \"parameters\": ["
    "{\"name\": \"flow\", \"type\": \"categorical\", \"choices\": [\"realnvp\", \"glow\", \"nsf\", \"maf\", \"nsf-ar\", \"tsflow\"]},"
    "{\"name\": \"layers\", \"type\": \"int\", \"low\": 1, \"high\": 100000, \"log\": true},"
    "{\"name\": \"blocks\", \"type\": \"int\", \"low\": 1, \"high\": 10000, \"log\": true},"
    "{\"name\": \"hidden\", \"type\": \"int\", \"low\": 1, \"high\": 1000000, \"log\": true},"
    "{\"name\": \"hidden-layers\", \"type\": \"int\", \"low\": 1, \"high\": 64},"
    "{\"name\": \"params\", \"type\": \"int\", \"low\": 1, \"high\": 1000000000000, \"log\": true}"
    "]}";

rf_space *rf_search_morph_space(rf_err *e) { return rf_space_parse(MORPH_SPACE, "built-in morph space", e); }

int rf_search_morph_config(const rf_space *sp, const rf_flow *f, rf_config *c, rf_err *e) {
    int rc = rf_config_init(c, sp, e);
    if (rc) return rc;
    int nc = rf_morph_conditioned_layers(f, NULL);
    int *idx = malloc(sizeof(int) * (size_t)(nc > 0 ? nc : 1));
    if (!idx) {
        rf_config_free(c);
        return rf_err_set(e, RF_ENOMEM, "out of memory");
    }
    rf_morph_conditioned_layers(f, idx);
    int hid = 1, dep = 1;
    for (int k = 0; k < nc; k++) {
        rf_morph_cond ci;
        if (rf_morph_cond_info(f, idx[k], &ci, NULL) == RF_OK) {
            if (ci.hidden > hid) hid = ci.hidden;
            if (ci.n_hidden > dep) dep = ci.n_hidden;
        }
    }
    free(idx);
    rc = rf_config_set(sp, c, "flow", 0, rf_flow_type_name(f->spec.type), e);
    if (!rc) rc = rf_config_set(sp, c, "layers", f->n_layers, NULL, e);
    if (!rc) rc = rf_config_set(sp, c, "blocks", nc > 0 ? nc : 1, NULL, e);
    if (!rc) rc = rf_config_set(sp, c, "hidden", hid, NULL, e);
    if (!rc) rc = rf_config_set(sp, c, "hidden-layers", dep > 64 ? 64 : dep, NULL, e);
    if (!rc) rc = rf_config_set(sp, c, "params", (double)(f->n_params > 0 ? f->n_params : 1), NULL, e);
    if (!rc) rc = rf_config_check(sp, c, e);
    if (rc) rf_config_free(c);
    return rc;
}

/* ======================================================================================
 * Objectives
 * ====================================================================================== */

static const char *const METRIC_NAMES[RF_SEARCH_N_METRICS] = {"val_nll", "val_macro_f1", "train_seconds", "n_params"};
static const char *const METRIC_WORDS[RF_SEARCH_N_METRICS] = {"nll", "f1", "time", "params"};

const char *rf_search_metric_name(rf_search_metric m) {
    return (int)m >= 0 && (int)m < RF_SEARCH_N_METRICS ? METRIC_NAMES[m] : "?";
}

static void fill_objective(rf_search_metric m, rf_objective *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", METRIC_NAMES[m]);
    o->direction = m == RF_METRIC_F1 ? RF_MAXIMIZE : RF_MINIMIZE;
}

int rf_search_objectives_parse(const char *text, rf_task_kind kind, rf_search_metric *metrics, int *n,
                               rf_objective *objectives, rf_err *e) {
    *n = 0;
    if (!text || !*text) return rf_err_set(e, RF_EARG, "objective: empty (expected nll, f1, nll,time, nll,params, ...)");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    int used[RF_SEARCH_N_METRICS] = {0};
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        while (*w == ' ') w++;
        size_t L = strlen(w);
        while (L && w[L - 1] == ' ') w[--L] = '\0';
        int m = -1;
        for (int k = 0; k < RF_SEARCH_N_METRICS; k++)
            if (!strcmp(w, METRIC_WORDS[k]) || !strcmp(w, METRIC_NAMES[k])) m = k;
        if (m < 0) return rf_err_set(e, RF_EARG, "objective '%s': unknown word '%s' (nll, f1, time, params)", text, w);
        if (used[m]) return rf_err_set(e, RF_EARG, "objective '%s': '%s' given twice", text, w);
        if (*n == 0 && m != RF_METRIC_NLL && m != RF_METRIC_F1)
            return rf_err_set(e, RF_EARG, "objective '%s': the first objective must be nll or f1, got '%s'", text, w);
        if (m == RF_METRIC_F1 && kind != RF_TASK_CLASSIFY)
            return rf_err_set(e, RF_EARG, "objective '%s': f1 needs a classification task (--task classify with labels)", text);
        if (*n >= RF_MAX_OBJECTIVES) return rf_err_set(e, RF_EARG, "objective '%s': too many objectives", text);
        used[m] = 1;
        metrics[*n] = (rf_search_metric)m;
        if (objectives) fill_objective((rf_search_metric)m, &objectives[*n]);
        (*n)++;
    }
    if (*n == 0) return rf_err_set(e, RF_EARG, "objective '%s': no objective", text);
    return RF_OK;
}

int rf_search_objectives_of_study(const rf_study *st, rf_search_metric *metrics, int *n, rf_err *e) {
    *n = rf_study_n_objectives(st);
    for (int k = 0; k < *n; k++) {
        const rf_objective *o = rf_study_objective(st, k);
        int m = -1;
        for (int q = 0; q < RF_SEARCH_N_METRICS; q++)
            if (!strcmp(o->name, METRIC_NAMES[q])) m = q;
        if (m < 0)
            return rf_err_set(e, RF_EFORMAT, "study %s: objective '%s' is not one renflow search computes (%s, %s, %s, %s)",
                              rf_study_path(st), o->name, METRIC_NAMES[0], METRIC_NAMES[1], METRIC_NAMES[2], METRIC_NAMES[3]);
        metrics[k] = (rf_search_metric)m;
    }
    return RF_OK;
}

/* ======================================================================================
 * The trial objective
 * ====================================================================================== */

void rf_search_job_init(rf_search_job *j, const rf_search_task *t, const rf_space *sp, const rf_search_metric *metrics,
                        int n_metrics) {
    memset(j, 0, sizeof *j);
    j->task = t;
    j->space = sp;
    if (n_metrics < 1 || !metrics) {
        j->n_metrics = 1;
        j->metrics[0] = RF_METRIC_NLL;
    } else {
        j->n_metrics = n_metrics > RF_MAX_OBJECTIVES ? RF_MAX_OBJECTIVES : n_metrics;
        memcpy(j->metrics, metrics, sizeof(rf_search_metric) * (size_t)j->n_metrics);
    }
    const int D = t->train.d;
    rf_flow_spec_default(&j->base_spec, RF_FLOW_NSF, D);
    if (t->channels > 0 && t->length > 0) {
        rf_flow_spec s = j->base_spec;
        if (rf_tsflow_spec_default(&s, t->channels, t->length, NULL) == RF_OK) j->base_spec = s;
    }
    if (t->kind == RF_TASK_CLASSIFY) {
        j->base_spec.base = RF_BASE_CLASS;
        j->base_spec.n_classes = t->n_classes;
    }
    rf_train_cfg_default(&j->base_train);
    if (t->default_epochs > 0) j->base_train.epochs = t->default_epochs;
    j->base_train.threads = 2;
    j->base_train.progress = 0;
}

static int mkdir_p1(const char *path, rf_err *e) {
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return rf_err_set(e, RF_EIO, "%s: cannot create directory: %s", path, strerror(errno));
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return rf_err_set(e, RF_EIO, "%s: not a directory", path);
    return RF_OK;
}

int rf_search_job_prepare(const rf_search_job *j, rf_err *e) {
    if (!j->out_dir) return RF_OK;
    int rc = mkdir_p1(j->out_dir, e);
    if (rc) return rc;
    char p[4200];
    snprintf(p, sizeof p, "%s/trials", j->out_dir);
    return mkdir_p1(p, e);
}

void rf_search_trial_path(const char *out_dir, int number, char *buf, size_t n) {
    snprintf(buf, n, "%s/trials/trial-%d.rf", out_dir ? out_dir : ".", number);
}

int rf_search_job_settings(const rf_search_job *j, const rf_config *c, double budget, rf_flow_spec *spec, rf_train_cfg *tc,
                           rf_err *e) {
    *spec = j->base_spec;
    *tc = j->base_train;
    char un[512] = "";
    int rc = rf_space_apply(j->space, c, spec, tc, un, sizeof un, e);
    if (rc) return rc;
    if (un[0])
        return rf_err_set(e, RF_EARG, "configuration: parameter(s) %s cannot be applied to a flow or its training", un);
    if (spec->type == RF_FLOW_TS && j->base_spec.type != RF_FLOW_TS) {
        /* a tsflow takes the window shape first, then the configuration on top of it */
        const rf_search_task *t = j->task;
        rf_flow_spec s = j->base_spec;
        int C = t->channels > 0 ? t->channels : 1, T = t->channels > 0 ? t->length : t->train.d;
        if ((rc = rf_tsflow_spec_default(&s, C, T, e))) return rc;
        s.base = j->base_spec.base;
        s.n_classes = j->base_spec.n_classes;
        if ((rc = rf_space_apply(j->space, c, &s, NULL, NULL, 0, e))) return rc;
        *spec = s;
    }
    spec->D = j->task->train.d;
    if (budget > 0) {
        double ep = floor(budget + 0.5);
        tc->epochs = ep < 1 ? 1 : ep > 1e6 ? 1000000 : (int)ep;
    }
    tc->out_path = NULL;
    tc->checkpoint_path = NULL;
    tc->resume = 0;
    tc->progress = 0;
    tc->stop_flag = NULL; /* a trial is never cut short: Ctrl-C stops after it */
    return RF_OK;
}

int rf_search_score(const rf_search_job *j, const rf_flow *f, double val_nll, double train_seconds, double *values,
                    rf_err *e) {
    const rf_search_task *t = j->task;
    for (int k = 0; k < j->n_metrics; k++) {
        switch (j->metrics[k]) {
        case RF_METRIC_NLL: values[k] = val_nll; break;
        case RF_METRIC_TIME: values[k] = train_seconds; break;
        case RF_METRIC_PARAMS: values[k] = (double)f->n_params; break;
        case RF_METRIC_F1: {
            if (t->kind != RF_TASK_CLASSIFY || !t->yval)
                return rf_err_set(e, RF_EARG, "objective val_macro_f1 needs a classification task");
            int *pred = malloc(sizeof(int) * (size_t)(t->val.n > 0 ? t->val.n : 1));
            if (!pred) return rf_err_set(e, RF_ENOMEM, "out of memory");
            rf_class_metrics cm = {0};
            int rc = rf_flow_predict(f, &t->val, NULL, pred, NULL, e);
            if (!rc) rc = rf_class_metrics_compute(t->yval, pred, t->val.n, t->n_classes, &cm, e);
            values[k] = rc ? NAN : cm.macro_f1;
            rf_class_metrics_free(&cm);
            free(pred);
            if (rc) return rc;
            break;
        }
        default: return rf_err_set(e, RF_EARG, "unknown metric %d", (int)j->metrics[k]);
        }
    }
    return RF_OK;
}

int rf_search_train_eval(const rf_search_job *j, rf_flow *f, const rf_train_cfg *tc, double *values, rf_train_result *res,
                         rf_err *e) {
    const rf_search_task *t = j->task;
    int rc = rf_train(f, &t->train, t->ytrain, &t->val, t->yval, tc, res, e);
    if (rc) return rc;
    if (!isfinite(res->best_val_nll))
        return rf_err_set(e, RF_ENONFINITE, "the validation NLL is %g after %d epochs", res->best_val_nll, res->epochs_run);
    return rf_search_score(j, f, res->best_val_nll, res->seconds, values, e);
}

void rf_search_set_meta(const rf_search_job *j, rf_flow *f, const char *study_path, const char *study_name,
                        const rf_trial *t, const rf_train_cfg *tc, const double *values, const char *morphs) {
    const rf_search_task *task = j->task;
    if (f->meta && !cJSON_IsObject(f->meta)) {
        cJSON_Delete(f->meta);
        f->meta = NULL;
    }
    if (!f->meta) f->meta = cJSON_CreateObject();
    if (!f->meta) return;
    cJSON *m = f->meta;
    static const char *const replaced[] = {"train_data", "train_rows", "val_rows", "validation_by_subject", "input",
                                           "class_counts", "search", "standardize", "epochs", "batch", "lr", "seed",
                                           "created", NULL};
    for (int k = 0; replaced[k]; k++) cJSON_DeleteItemFromObjectCaseSensitive(m, replaced[k]);
    cJSON_AddStringToObject(m, "train_data", task->source);
    cJSON_AddNumberToObject(m, "train_rows", task->train.n);
    cJSON_AddNumberToObject(m, "val_rows", task->val.n);
    cJSON_AddBoolToObject(m, "validation_by_subject", task->by_subject);
    cJSON *in = rf_input_to_json(&task->input);
    if (in) cJSON_AddItemToObject(m, "input", in);
    if (task->kind == RF_TASK_CLASSIFY && task->ytrain && task->n_classes > 0) {
        double *cnt = calloc((size_t)task->n_classes, sizeof *cnt);
        for (int i = 0; cnt && i < task->train.n; i++)
            if (task->ytrain[i] >= 0 && task->ytrain[i] < task->n_classes) cnt[task->ytrain[i]]++;
        if (cnt) cJSON_AddItemToObject(m, "class_counts", cJSON_CreateDoubleArray(cnt, task->n_classes));
        free(cnt);
    }
    if (tc) {
        cJSON_AddStringToObject(m, "standardize", tc->standardize == 2 ? "robust" : tc->standardize ? "zscore" : "none");
        cJSON_AddNumberToObject(m, "epochs", tc->epochs);
        cJSON_AddNumberToObject(m, "batch", tc->batch);
        cJSON_AddNumberToObject(m, "lr", tc->lr);
        char sd[32];
        snprintf(sd, sizeof sd, "%llu", (unsigned long long)tc->seed);
        cJSON_AddStringToObject(m, "seed", sd);
    }
    char date[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    cJSON_AddStringToObject(m, "created", date);
    cJSON *s = cJSON_AddObjectToObject(m, "search");
    if (!s) return;
    cJSON_AddStringToObject(s, "study", study_path ? study_path : "");
    cJSON_AddStringToObject(s, "study_name", study_name ? study_name : (j->study_name ? j->study_name : ""));
    cJSON_AddStringToObject(s, "task_fingerprint", task->fingerprint);
    cJSON_AddNumberToObject(s, "trial", t ? t->number : -1);
    if (t) {
        cJSON_AddItemToObject(s, "config", rf_config_to_json(j->space, &t->cfg));
        cJSON_AddNumberToObject(s, "budget", t->budget);
    }
    if (morphs) cJSON_AddStringToObject(s, "morphs", morphs);
    cJSON *v = cJSON_AddObjectToObject(s, "values");
    for (int k = 0; v && values && k < j->n_metrics; k++)
        cJSON_AddNumberToObject(v, rf_search_metric_name(j->metrics[k]), values[k]);
}

static int better(double a, double b, rf_direction d) { return d == RF_MAXIMIZE ? a > b : a < b; }

int rf_search_keep_model(const rf_search_job *j, rf_study *st, const rf_trial *t, rf_flow *f, const double *values,
                         rf_err *e) {
    if (!j->out_dir) return RF_OK;
    char path[4300];
    rf_search_trial_path(j->out_dir, t->number, path, sizeof path);
    int rc = rf_flow_save(f, path, e);
    if (rc) return rc;
    if ((rc = rf_study_refresh(st, e))) return rc;
    /* the incumbent: the best at the largest budget (budget 0 = full; all trials of studies
     * without budgets), as rf_search_sync_best chooses */
    const rf_trial *b = rf_study_incumbent(st, 0);
    const rf_objective *o = rf_study_objective(st, 0);
    const double eb = t->budget > 0 ? t->budget : INFINITY, ib = b && b->budget > 0 ? b->budget : INFINITY;
    if (!b || eb > ib || (eb == ib && better(values[0], b->values[0], o ? o->direction : RF_MINIMIZE))) {
        char bp[4300];
        snprintf(bp, sizeof bp, "%s/best.rf", j->out_dir);
        rc = rf_flow_save(f, bp, e);
    }
    return rc;
}

static void fail_trial(rf_eval_result *r, const char *what, const rf_err *te) {
    r->status = RF_TRIAL_FAILED;
    snprintf(r->reason, sizeof r->reason, "%.60s%s%.180s", what, te && te->msg[0] ? ": " : "",
             te && te->msg[0] ? te->msg : "");
}

int rf_search_trial_train(const rf_search_job *j, const rf_trial *t, const char *study_path, const char *study_name,
                          rf_search_report_fn report, void *rctx, rf_eval_result *r, rf_flow **model, rf_err *e) {
    if (model) *model = NULL;
    rf_flow_spec spec;
    rf_train_cfg tc;
    rf_err te = {0};
    if (rf_search_job_settings(j, &t->cfg, t->budget, &spec, &tc, &te)) {
        fail_trial(r, "bad configuration", &te);
        return RF_OK;
    }
    tc.seed = t->seed;
    if (j->verbose) {
        char *cs = rf_config_to_string(j->space, &t->cfg);
        fprintf(stderr, "search: trial %d: %s flow, %d blocks, hidden %d x %d, %d epochs: %s\n", t->number,
                rf_flow_type_name(spec.type), spec.blocks, spec.hidden, spec.n_hidden, tc.epochs, cs ? cs : "");
        free(cs);
    }
    rf_rng rng;
    rf_rng_seed(&rng, t->seed);
    rf_flow *f = rf_flow_create(&spec, &rng, &te);
    if (!f) {
        fail_trial(r, "cannot build the flow", &te);
        return RF_OK;
    }
    if (j->max_params > 0 && f->n_params > j->max_params) {
        r->status = RF_TRIAL_FAILED;
        snprintf(r->reason, sizeof r->reason, "the flow has %zu parameters, more than the limit of %zu", f->n_params,
                 j->max_params);
        rf_flow_free(f);
        return RF_OK;
    }
    rf_train_result res;
    memset(&res, 0, sizeof res);
    double values[RF_MAX_OBJECTIVES];
    int trc = rf_search_train_eval(j, f, &tc, values, &res, &te);
    int rc = RF_OK;
    for (int ep = 0; report && ep < res.epochs_run && !rc; ep++)
        if (res.val_curve && isfinite(res.val_curve[ep])) rc = report(rctx, ep + 1, res.val_curve[ep], e);
    if (!rc && trc) {
        fail_trial(r, trc == RF_ENONFINITE ? "diverged" : "training failed", &te);
    } else if (!rc) {
        for (int k = 0; k < j->n_metrics; k++) {
            if (!isfinite(values[k])) {
                r->status = RF_TRIAL_FAILED;
                snprintf(r->reason, sizeof r->reason, "objective %s is %g", rf_search_metric_name(j->metrics[k]), values[k]);
                break;
            }
            r->values[k] = values[k];
        }
        if (r->status == RF_TRIAL_COMPLETE && model) {
            rf_search_set_meta(j, f, study_path, study_name, t, &tc, values, NULL);
            *model = f;
            f = NULL;
        }
    }
    rf_train_result_free(&res);
    rf_flow_free(f);
    return rc;
}

typedef struct study_report_ctx {
    rf_study *st;
    const rf_trial *t;
} study_report_ctx;

static int report_to_study(void *rctx, long step, double value, rf_err *e) {
    const study_report_ctx *c = rctx;
    return rf_study_report(c->st, c->t, step, value, e);
}

int rf_search_objective(void *ctx, rf_study *st, const rf_trial *t, rf_eval_result *r, rf_err *e) {
    const rf_search_job *j = ctx;
    study_report_ctx rc_ctx = {st, t};
    rf_flow *f = NULL;
    int rc = rf_search_trial_train(j, t, rf_study_path(st), rf_study_name(st), report_to_study, &rc_ctx, r, &f, e);
    if (!rc && f) rc = rf_search_keep_model(j, st, t, f, r->values, e);
    rf_flow_free(f);
    return rc;
}

int rf_search_sync_best(rf_study *st, const char *out_dir, int *best_number, rf_err *e) {
    *best_number = -1;
    int rc = rf_study_refresh(st, e);
    if (rc) return rc;
    const rf_trial *b = rf_study_incumbent(st, 0);
    if (!b) return RF_OK;
    *best_number = b->number;
    char src[4300], dst[4300];
    rf_search_trial_path(out_dir, b->number, src, sizeof src);
    snprintf(dst, sizeof dst, "%s/best.rf", out_dir ? out_dir : ".");
    unsigned char *buf = NULL;
    size_t len = 0;
    if ((rc = rf_read_file(src, &buf, &len, e)))
        return rf_err_prefix(e, RF_EIO, "best trial %d: its model file is missing", b->number);
    rf_err le = {0};
    rf_flow *f = rf_flow_load_mem(buf, len, src, &le); /* never copy a damaged file over best.rf */
    if (!f) {
        free(buf);
        return rf_err_set(e, RF_EFORMAT, "best trial %d: %s", b->number, le.msg);
    }
    rf_flow_free(f);
    rc = rf_write_file_atomic(dst, buf, len, e);
    free(buf);
    return rc;
}

const rf_trial *rf_search_default_trial(rf_study *st) {
    const rf_space *sp = rf_study_space(st);
    if (!strcmp(rf_study_sampler_name(st), "morph")) { /* the start flow: the first complete trial */
        const rf_trial *first = NULL;
        for (int i = 0; i < rf_study_n_finished(st); i++) {
            const rf_trial *t = rf_study_finished(st, i);
            if (t->status == RF_TRIAL_COMPLETE && (!first || t->number < first->number)) first = t;
        }
        return first;
    }
    rf_config c;
    if (rf_config_default(sp, &c, NULL) != RF_OK) return NULL;
    const rf_trial *best = NULL;
    for (int i = 0; i < rf_study_n_finished(st); i++) {
        const rf_trial *t = rf_study_finished(st, i);
        if (t->status != RF_TRIAL_COMPLETE || !rf_config_equal(&t->cfg, &c)) continue;
        if (!best || t->number < best->number) best = t;
    }
    rf_config_free(&c);
    return best;
}

cJSON *rf_search_test_eval(const rf_search_task *t, const rf_flow *f, rf_err *e) {
    if (t->test.n < 1) {
        rf_err_set(e, RF_EARG, "the task has no test rows");
        return NULL;
    }
    if (f->D != t->test.d) {
        rf_err_set(e, RF_EARG, "the model has dimension %d, the test rows %d", f->D, t->test.d);
        return NULL;
    }
    const rf_flow_ws_opts wo = {.max_batch = 1024, .memory_saving = 1, .inference = 1};
    rf_flow_ws *w = rf_flow_ws_create_opts(f, &wo, e);
    if (!w) return NULL;
    double nll = rf_eval_nll(f, w, &t->test, NULL, NULL); /* classifiers: marginal -log p(x) */
    rf_flow_ws_free(w);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "rows", t->test.n);
    if (t->by_subject) cJSON_AddNumberToObject(j, "subjects", t->n_subjects[2]);
    cJSON_AddNumberToObject(j, "nll", nll);
    cJSON_AddNumberToObject(j, "bits_per_dim", nll / (f->D * 0.6931471805599453));
    if (t->kind == RF_TASK_CLASSIFY && t->ytest && f->base.kind == RF_BASE_CLASS) {
        int *pred = malloc(sizeof(int) * (size_t)t->test.n);
        rf_class_metrics cm = {0};
        int rc = pred ? rf_flow_predict(f, &t->test, NULL, pred, NULL, e) : rf_err_set(e, RF_ENOMEM, "out of memory");
        if (!rc) rc = rf_class_metrics_compute(t->ytest, pred, t->test.n, t->n_classes, &cm, e);
        if (!rc) {
            cJSON *mj = rf_class_metrics_to_json(&cm, NULL);
            cJSON *it = mj ? mj->child : NULL;
            while (it) {
                cJSON *next = it->next;
                cJSON_AddItemToObject(j, it->string, cJSON_DetachItemViaPointer(mj, it));
                it = next;
            }
            cJSON_Delete(mj);
        }
        rf_class_metrics_free(&cm);
        free(pred);
        if (rc) {
            cJSON_Delete(j);
            return NULL;
        }
    }
    return j;
}

/* ======================================================================================
 * NASH-style morphism search stored as a study
 * ====================================================================================== */

typedef struct morph_ctx {
    rf_study *st;
    const rf_search_job *job;
    const rf_train_cfg *tc;
    int counted, limit;
    volatile int *user_stop;
    int stop;              /* the hill climber's stop flag: set between children only */
    int rc;                /* first error that stops the search */
    rf_err err;
    int n_run;
} morph_ctx;

/* Numbered trials that count towards the limit: all but those lost with a dead worker. */
static int counted_trials(rf_study *st, rf_err *e) {
    int counts[RF_TRIAL_NSTATUS];
    if (rf_study_counts(st, counts, e) || rf_study_refresh(st, e)) return -1;
    int lost = 0;
    for (int i = 0; i < rf_study_n_finished(st); i++) lost += rf_study_finished(st, i)->lost;
    return counts[RF_TRIAL_RUNNING] + counts[RF_TRIAL_COMPLETE] + counts[RF_TRIAL_FAILED] + counts[RF_TRIAL_PRUNED] - lost;
}

/* Stores one trained (or failed) flow as a trial of the morph study. */
static int record_flow(morph_ctx *m, const rf_flow *f, const rf_train_cfg *tc, double before, double val_nll,
                       double seconds, const char *failure, const char *morphs) {
    const rf_search_job *j = m->job;
    rf_config c;
    rf_err *e = &m->err;
    int rc = rf_search_morph_config(j->space, f, &c, e);
    if (rc) return rc;
    rf_trial *t = NULL;
    rc = rf_study_ask_fixed(m->st, &c, 0, &t, e);
    rf_config_free(&c);
    if (rc) return rc;
    if (isfinite(before)) rc = rf_study_report(m->st, t, 0, before, e);
    if (!rc && isfinite(val_nll)) rc = rf_study_report(m->st, t, 1, val_nll, e);
    double values[RF_MAX_OBJECTIVES];
    char reason[512] = "";
    if (!rc && !failure) {
        rf_err se = {0};
        if (rf_search_score(j, f, val_nll, seconds, values, &se) != RF_OK) snprintf(reason, sizeof reason, "%.500s", se.msg);
        for (int k = 0; !reason[0] && k < j->n_metrics; k++)
            if (!isfinite(values[k]))
                snprintf(reason, sizeof reason, "objective %s is %g", rf_search_metric_name(j->metrics[k]), values[k]);
    } else if (failure) {
        snprintf(reason, sizeof reason, "%s", failure);
    }
    if (!rc && !reason[0]) {
        rf_flow *g = (rf_flow *)f; /* the meta is ours to set (the hill climber frees or keeps the flow) */
        rf_search_set_meta(j, g, rf_study_path(m->st), rf_study_name(m->st), t, tc, values, morphs);
        rc = rf_search_keep_model(j, m->st, t, g, values, e);
        if (!rc) rc = rf_study_tell(m->st, t, RF_TRIAL_COMPLETE, values, j->n_metrics, NULL, e);
    } else if (!rc) {
        rc = rf_study_tell(m->st, t, RF_TRIAL_FAILED, NULL, 0, reason, e);
    }
    if (rc) {
        rf_err te = {0};
        rf_study_tell(m->st, t, RF_TRIAL_FAILED, NULL, 0, e->msg, &te);
    }
    if (!rc) {
        m->counted++;
        m->n_run++;
    }
    rf_trial_free(t);
    return rc;
}

static void morph_cb(void *ctx, const rf_morph_hc_entry *x, const rf_flow *child) {
    morph_ctx *m = ctx;
    if (m->rc) return;
    if (child) {
        char what[800];
        snprintf(what, sizeof what, "round %d child %d%s%s", x->round, x->child, x->child == 0 ? " (parent trained further)" : ": ",
                 x->child == 0 ? "" : x->morphs);
        char fail[600] = "";
        if (x->status) snprintf(fail, sizeof fail, "%s", x->error[0] ? x->error : rf_status_name(x->status));
        m->rc = record_flow(m, child, m->tc, x->val_nll_before, x->val_nll, x->seconds, x->status ? fail : NULL, what);
    }
    if (m->rc || (m->limit > 0 && m->counted >= m->limit) || (m->user_stop && *m->user_stop)) m->stop = 1;
}

int rf_search_morph_run(rf_study *st, const rf_search_job *job, const rf_space *start_space, const rf_search_morph_opts *o,
                        int *n_run, rf_err *e) {
    if (n_run) *n_run = 0;
    int rc = rf_study_requeue_stale(st, 0, NULL, e); /* a child of a dead worker is not drawn again */
    if (rc) return rc;
    morph_ctx m;
    memset(&m, 0, sizeof m);
    m.st = st;
    m.job = job;
    m.limit = o->trials;
    m.user_stop = o->stop_flag;
    if ((m.counted = counted_trials(st, e)) < 0) return e ? e->code : RF_EIO;
    if (m.limit > 0 && m.counted >= m.limit) return RF_OK;
    const double t0 = rf_now();

    /* the training settings of the start configuration: the parent's, and every child's budget */
    rf_search_job sj = *job;
    sj.space = start_space;
    rf_config c0;
    if ((rc = rf_config_default(start_space, &c0, e))) return rc;
    rf_flow_spec spec;
    rf_train_cfg tc;
    rc = rf_search_job_settings(&sj, &c0, 0, &spec, &tc, e);
    rf_config_free(&c0);
    if (rc) return rf_err_prefix(e, rc, "morph: the start configuration");
    tc.seed = rf_study_seed(st);
    m.tc = &tc;

    rf_flow *parent = NULL;
    const rf_trial *best = rf_study_best(st, 0);
    if (best) {
        char path[4300];
        rf_search_trial_path(job->out_dir, best->number, path, sizeof path);
        if (!(parent = rf_flow_load(path, e))) return rf_err_prefix(e, RF_EIO, "morph: resuming from the best trial %d", best->number);
        if (o->progress)
            fprintf(stderr, "search: morph: resuming from trial %d (%s = %.6g), %s\n", best->number,
                    rf_study_objective(st, 0)->name, best->values[0], path);
    } else {
        rf_rng rng;
        rf_rng_seed(&rng, tc.seed);
        if (!(parent = rf_flow_create(&spec, &rng, e))) return rf_err_prefix(e, RF_EARG, "morph: the start configuration");
        if (o->progress)
            fprintf(stderr, "search: morph: training the start flow (%s, %d blocks, hidden %d, %zu parameters, %d epochs)\n",
                    rf_flow_type_name(spec.type), spec.blocks, spec.hidden, parent->n_params, tc.epochs);
        rf_train_result res;
        double values[RF_MAX_OBJECTIVES];
        rf_err te = {0};
        int trc = rf_search_train_eval(job, parent, &tc, values, &res, &te);
        double secs = res.seconds, vn = res.best_val_nll;
        rf_train_result_free(&res);
        rc = record_flow(&m, parent, &tc, NAN, vn, secs, trc ? te.msg : NULL, "start");
        if (rc) {
            rf_flow_free(parent);
            if (e) *e = m.err;
            return rc;
        }
        if (trc) {
            rf_flow_free(parent);
            return rf_err_set(e, trc, "morph: the start flow failed to train: %s", te.msg);
        }
        if (n_run) *n_run = m.n_run;
    }
    if ((m.limit > 0 && m.counted >= m.limit) || (o->stop_flag && *o->stop_flag) ||
        (o->time_budget > 0 && rf_now() - t0 >= o->time_budget)) {
        rf_flow_free(parent);
        return RF_OK;
    }

    rf_morph_hc_cfg hc;
    rf_morph_hc_cfg_default(&hc);
    hc.children = o->children > 0 ? o->children : 4;
    hc.morphs = o->morphs > 0 ? o->morphs : 1;
    hc.keep_parent = 1;
    hc.train = tc;
    hc.train.patience = 0;
    hc.train.stop_flag = &m.stop;
    hc.progress = o->progress;
    hc.time_budget = o->time_budget > 0 ? o->time_budget - (rf_now() - t0) : 0;
    if (o->time_budget > 0 && hc.time_budget <= 0) hc.time_budget = 1e-9;
    const int per_round = hc.children + 1;
    hc.rounds = m.limit > 0 ? (m.limit - m.counted + per_round - 1) / per_round : 1000000;
    if (hc.rounds < 1) hc.rounds = 1;
    rf_rng rng;
    rf_rng_seed(&rng, mix64(rf_study_seed(st) ^ (uint64_t)m.counted * 0x9e37ULL));
    rf_morph_hc_history hist;
    rf_flow *out = rf_morph_hillclimb(parent, &job->task->train, job->task->ytrain, &job->task->val, job->task->yval, &hc,
                                      &rng, &hist, morph_cb, &m, e);
    rf_morph_hc_history_free(&hist);
    rf_flow_free(parent);
    rf_flow_free(out);
    if (n_run) *n_run = m.n_run;
    if (m.rc) {
        if (e) *e = m.err;
        return m.rc;
    }
    return out ? RF_OK : (e ? e->code : RF_EARG);
}
