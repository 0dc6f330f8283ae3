/* Simulated EEG as a prepared data set: in memory (rf_dataset) or as a directory in the format of
 * `renflow eeg prepare` (windows.npy, labels.npy, subjects.npy, manifest.json). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "renflow/data.h"
#include "renflow/dataset.h"
#include "renflow/eegsim.h"

static int check_data(const rf_eegsim_data *d, const rf_eegsim_config *c, rf_err *e) {
    if (!d || !c || !d->x || !d->labels || !d->subjects || d->n < 1)
        return rf_err_set(e, RF_EARG, "EEG simulator: no simulated data (generate first)");
    if (d->channels != c->channels || d->T != (int)lround(c->window_s * c->rate) || d->rate != c->rate)
        return rf_err_set(e, RF_EARG,
                          "EEG simulator: the config (%d channels, %g Hz, %g s) does not match the data (%d channels, "
                          "%g Hz, %d samples)",
                          c->channels, c->rate, c->window_s, d->channels, d->rate, d->T);
    return RF_OK;
}

static cJSON *manifest(const rf_eegsim_data *d, const rf_eegsim_config *c, uint64_t seed) {
    cJSON *m = cJSON_CreateObject(), *sim = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "source", "simulator");
    cJSON_AddItemToObject(m, "simulator", sim);
    cJSON_AddStringToObject(sim, "mode", rf_eegsim_mode_name(c->mode));
    cJSON_AddNumberToObject(sim, "channels", c->channels);
    cJSON_AddNumberToObject(sim, "rate", c->rate);
    cJSON_AddNumberToObject(sim, "window_s", c->window_s);
    cJSON_AddNumberToObject(sim, "artifact_rate", c->artifact_rate);
    cJSON_AddNumberToObject(sim, "noise_uv", c->noise_uv);
    cJSON_AddNumberToObject(sim, "subject_var", c->subject_var);
    cJSON_AddNumberToObject(sim, "eyes_open_frac", c->eyes_open_frac);
    cJSON_AddNumberToObject(sim, "task_effect", c->task_effect);
    cJSON_AddBoolToObject(sim, "hypnogram", c->hypnogram != 0);
    if (seed <= (1ULL << 53)) cJSON_AddNumberToObject(sim, "seed", (double)seed);
    else {
        char buf[32];
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)seed);
        cJSON_AddStringToObject(sim, "seed", buf);
    }
    cJSON_AddNumberToObject(sim, "n_subjects", d->n_subjects);

    cJSON *ch = cJSON_AddArrayToObject(m, "channels");
    for (int i = 0; i < d->channels; i++) cJSON_AddItemToArray(ch, cJSON_CreateString(d->channel_names[i]));
    cJSON_AddNumberToObject(m, "rate", d->rate);
    cJSON_AddNumberToObject(m, "rate_hz", d->rate); /* the key of prepared data sets */
    cJSON_AddNumberToObject(m, "window_samples", d->T);
    cJSON_AddNumberToObject(m, "window_s", d->T / d->rate);
    cJSON_AddNumberToObject(m, "samples", d->T);
    cJSON_AddStringToObject(m, "units", "uV");
    cJSON *cn = cJSON_AddArrayToObject(m, "class_names");
    for (int k = 0; k < d->n_classes; k++) cJSON_AddItemToArray(cn, cJSON_CreateString(d->class_names[k]));
    cJSON_AddNumberToObject(m, "n_windows", d->n);
    cJSON_AddNumberToObject(m, "n_subjects", d->n_subjects);
    int counts[RF_EEGSIM_MAX_CLASSES] = {0}, n_art = 0;
    for (int i = 0; i < d->n; i++) {
        if (d->labels[i] >= 0 && d->labels[i] < d->n_classes) counts[d->labels[i]]++;
        if (d->artifacts && d->artifacts[i]) n_art++;
    }
    cJSON *cc = cJSON_AddArrayToObject(m, "class_counts");
    for (int k = 0; k < d->n_classes; k++) cJSON_AddItemToArray(cc, cJSON_CreateNumber(counts[k]));
    cJSON_AddNumberToObject(m, "windows_with_artifacts", n_art);
    cJSON *sp = cJSON_AddArrayToObject(m, "subject_params");
    for (int s = 0; d->subject_params && s < d->n_subjects; s++) {
        const rf_eegsim_subject *p = &d->subject_params[s];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "alpha_hz", p->alpha_hz);
        cJSON_AddNumberToObject(o, "theta_hz", p->theta_hz);
        cJSON_AddNumberToObject(o, "spindle_hz", p->spindle_hz);
        cJSON_AddNumberToObject(o, "amp_scale", p->amp_scale);
        cJSON_AddNumberToObject(o, "alpha_gain", p->alpha_gain);
        cJSON_AddNumberToObject(o, "slope_shift", p->slope_shift);
        cJSON_AddNumberToObject(o, "spindle_density", p->spindle_density);
        cJSON_AddNumberToObject(o, "task_alpha", p->task_alpha);
        cJSON_AddNumberToObject(o, "task_theta", p->task_theta);
        cJSON *g = cJSON_AddArrayToObject(o, "chan_gain");
        for (int i = 0; i < d->channels; i++) cJSON_AddItemToArray(g, cJSON_CreateNumber(p->chan_gain[i]));
        cJSON_AddItemToArray(sp, o);
    }
    return m;
}

int rf_eegsim_to_dataset(const rf_eegsim_data *d, const rf_eegsim_config *c, uint64_t seed, rf_dataset *out,
                         rf_err *e) {
    if (!out) return rf_err_set(e, RF_EARG, "EEG simulator: NULL data set");
    memset(out, 0, sizeof *out);
    int rc = check_data(d, c, e);
    if (rc) return rc;
    const int D = d->channels * d->T;
    if ((rc = rf_matrix_alloc(&out->x, d->n, D, e))) return rc;
    memcpy(out->x.x, d->x, sizeof(float) * (size_t)d->n * (size_t)D);
    out->labels = malloc(sizeof(int) * (size_t)d->n);
    out->subjects = malloc(sizeof(int) * (size_t)d->n);
    out->class_names = calloc((size_t)d->n_classes, sizeof(char *));
    out->n_classes = d->n_classes;
    out->manifest = manifest(d, c, seed);
    int ok = out->labels && out->subjects && out->class_names && out->manifest;
    for (int k = 0; ok && k < d->n_classes; k++) ok = (out->class_names[k] = strdup(d->class_names[k])) != NULL;
    if (!ok) {
        rf_dataset_free(out);
        return rf_err_set(e, RF_ENOMEM, "EEG simulator: out of memory building the data set");
    }
    memcpy(out->labels, d->labels, sizeof(int) * (size_t)d->n);
    memcpy(out->subjects, d->subjects, sizeof(int) * (size_t)d->n);
    if (c->hypnogram) { /* one night per subject, epochs in temporal order */
        if (!(out->recordings = malloc(sizeof(int) * (size_t)d->n))) {
            rf_dataset_free(out);
            return rf_err_set(e, RF_ENOMEM, "EEG simulator: out of memory building the data set");
        }
        memcpy(out->recordings, d->subjects, sizeof(int) * (size_t)d->n);
    }
    out->channels = d->channels;
    out->length = d->T;
    return RF_OK;
}

static int write_ints(const char *dir, const char *name, const int *v, int n, rf_err *e) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)n);
    if (!buf) return rf_err_set(e, RF_ENOMEM, "out of memory writing %s", p);
    for (int i = 0; i < n; i++) buf[i] = v[i];
    rf_ndarray a = {.ndim = 1, .shape = {n}, .dtype = RF_DT_I32, .data = buf};
    int rc = rf_npy_write(p, &a, e);
    free(buf);
    return rc;
}

int rf_eegsim_write_dir(const rf_eegsim_data *d, const rf_eegsim_config *c, uint64_t seed, const char *dir,
                        rf_err *e) {
    if (!dir || !*dir) return rf_err_set(e, RF_EARG, "EEG simulator: empty output directory name");
    int rc = check_data(d, c, e);
    if (rc) return rc;
    if (strlen(dir) > 4000) return rf_err_set(e, RF_EARG, "EEG simulator: output directory name is too long");
    struct stat st;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return rf_err_set(e, RF_EIO, "cannot create directory %s: %s", dir, strerror(errno));
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return rf_err_set(e, RF_EIO, "%s exists and is not a directory", dir);
    char p[4096];
    snprintf(p, sizeof p, "%s/windows.npy", dir);
    rf_ndarray w = {.ndim = 3, .shape = {d->n, d->channels, d->T}, .dtype = RF_DT_F32, .data = d->x};
    if ((rc = rf_npy_write(p, &w, e))) return rc;
    if ((rc = write_ints(dir, "labels.npy", d->labels, d->n, e))) return rc;
    if ((rc = write_ints(dir, "subjects.npy", d->subjects, d->n, e))) return rc;
    if (c->hypnogram && (rc = write_ints(dir, "recordings.npy", d->subjects, d->n, e))) return rc;
    if (d->artifacts) {
        int *a = malloc(sizeof(int) * (size_t)d->n);
        if (!a) return rf_err_set(e, RF_ENOMEM, "out of memory");
        for (int i = 0; i < d->n; i++) a[i] = (int)d->artifacts[i];
        rc = write_ints(dir, "artifacts.npy", a, d->n, e);
        free(a);
        if (rc) return rc;
    }
    cJSON *m = manifest(d, c, seed);
    char *txt = m ? cJSON_Print(m) : NULL;
    cJSON_Delete(m);
    if (!txt) return rf_err_set(e, RF_ENOMEM, "out of memory writing %s/manifest.json", dir);
    snprintf(p, sizeof p, "%s/manifest.json", dir);
    rc = rf_write_file_atomic(p, txt, strlen(txt), e);
    free(txt);
    return rc;
}
