/* `renflow explain`: every explanation of a class-conditional flow on a data set, written as
 * OUTDIR/explain.json plus figures (see renflow/explain.h). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "explain_internal.h"
#include "renflow/dataset.h"
#include "renflow/dsp.h"
#include "renflow/tsflow.h"

#define LN2 0.6931471805599453
#define MAX_DRAW 8

void rf_explain_opts_default(rf_explain_opts *o) {
    memset(o, 0, sizeof *o);
    o->format = "svg";
    o->top_k = 8;
    o->window = -1;
    o->from = -1;
    o->to = -1;
    o->cf_mode = RF_CF_TRANSPORT;
    o->cf_steps = 5;
    o->samples_per_class = 200;
    o->max_windows_per_class = 32;
    o->seed = 1;
}

/* ---------------------------------------------------------------- data helpers */

int rf_explain_data_shape(const rf_flow *f, const rf_dataset *d, int *channels, int *T, rf_err *e) {
    *channels = *T = 0;
    if (d->x.d != f->D)
        return rf_err_set(e, RF_EFORMAT, "the data have %d values per row but the model has dimension %d", d->x.d, f->D);
    const int ts = f->spec.type == RF_FLOW_TS;
    if (d->channels > 0) {
        if (ts && (d->channels != f->spec.channels || d->length != f->spec.length))
            return rf_err_set(e, RF_EFORMAT, "the data hold windows of %d channels x %d samples but the model (tsflow) was built for %d x %d",
                              d->channels, d->length, f->spec.channels, f->spec.length);
        *channels = d->channels;
        *T = d->length;
    } else if (ts) {
        *channels = f->spec.channels;
        *T = f->spec.length;
    }
    return RF_OK;
}

double rf_explain_manifest_rate(const rf_dataset *d) {
    if (!d->manifest) return 0;
    static const char *keys[2] = {"rate_hz", "rate"};
    for (int k = 0; k < 2; k++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(d->manifest, keys[k]);
        if (cJSON_IsNumber(r) && r->valuedouble > 0 && isfinite(r->valuedouble)) return r->valuedouble;
    }
    return 0;
}

void rf_explain_channel_name(const rf_dataset *d, int i, char *buf, size_t n) {
    const cJSON *ch = d && d->manifest ? cJSON_GetObjectItemCaseSensitive(d->manifest, "channels") : NULL;
    const cJSON *s = cJSON_IsArray(ch) ? cJSON_GetArrayItem(ch, i) : NULL;
    if (cJSON_IsString(s) && s->valuestring[0]) snprintf(buf, n, "%s", s->valuestring);
    else snprintf(buf, n, "ch%d", i + 1);
}

static int parse_index(const char *s, int *out) {
    if (!*s) return 0;
    char *end;
    errno = 0;
    const long v = strtol(s, &end, 10);
    if (*end || errno || v < 0 || v > 1000000) return 0;
    *out = (int)v;
    return 1;
}

static const char *class_name(const rf_dataset *d, int C, int c, char *buf, size_t n) {
    if (d && d->class_names && d->n_classes >= C && c >= 0 && c < d->n_classes) return d->class_names[c];
    snprintf(buf, n, "%d", c);
    return buf;
}

int rf_explain_class_index(const rf_dataset *d, int C, const char *s, int *out, rf_err *e) {
    if (d && d->class_names)
        for (int c = 0; c < d->n_classes && c < C; c++)
            if (!strcmp(d->class_names[c], s)) {
                *out = c;
                return RF_OK;
            }
    int v;
    if (parse_index(s, &v) && v < C) {
        *out = v;
        return RF_OK;
    }
    char known[512] = "";
    for (int c = 0; c < C && strlen(known) < sizeof known - 40; c++) {
        char b[16];
        size_t l = strlen(known);
        snprintf(known + l, sizeof known - l, "%s%s", c ? ", " : "", class_name(d, C, c, b, sizeof b));
    }
    return rf_err_set(e, RF_EARG, "unknown class '%s' (the model has %d classes: %s)", s, C, known);
}

static int name_matches(const char *name, const char *tok) {
    if (!strcasecmp(name, tok)) return 1;
    if (!strncasecmp(name, "EEG ", 4) && !strcasecmp(name + 4, tok)) return 1;
    return 0;
}

int rf_explain_channel_list(const rf_dataset *d, int channels, const char *list, int *idx, int max, int *n,
                            rf_err *e) {
    *n = 0;
    if (channels < 1) return rf_err_set(e, RF_EARG, "channels: the rows are feature vectors, not windows of channels");
    char *copy = strdup(list ? list : ""), *save = NULL;
    if (!copy) return rf_err_set(e, RF_ENOMEM, "out of memory");
    int rc = RF_OK;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        int found = -1;
        for (int i = 0; i < channels && found < 0; i++) {
            char nm[64];
            rf_explain_channel_name(d, i, nm, sizeof nm);
            if (name_matches(nm, tok)) found = i;
        }
        int v;
        if (found < 0 && parse_index(tok, &v) && v < channels) found = v;
        if (found < 0) {
            char known[512] = "";
            for (int i = 0; i < channels && strlen(known) < sizeof known - 40; i++) {
                char nm[64];
                size_t l = strlen(known);
                rf_explain_channel_name(d, i, nm, sizeof nm);
                snprintf(known + l, sizeof known - l, "%s%s", i ? ", " : "", nm);
            }
            rc = rf_err_set(e, RF_EARG, "unknown channel '%s' (the data have %d channels: %s%s; or give a 0-based index)", tok,
                            channels, known, strlen(known) >= sizeof known - 40 ? ", ..." : "");
            break;
        }
        if (*n >= max) {
            rc = rf_err_set(e, RF_EARG, "at most %d channels can be drawn, got more in '%s'", max, list);
            break;
        }
        idx[(*n)++] = found;
    }
    if (!rc && *n == 0) rc = rf_err_set(e, RF_EARG, "empty channel list '%s'", list ? list : "");
    free(copy);
    return rc;
}

/* ---------------------------------------------------------------- JSON helpers */

static cJSON *jarr_f(const float *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *jarr_d(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static cJSON *jarr_i(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

static int cmp_int(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static cJSON *jbands(const rf_explain_bands *b, const double *v) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < b->n; k++) cJSON_AddNumberToObject(o, b->name[k], v[k]);
    return o;
}

/* Pearson correlation over the pairs where both values are finite (NAN below 2 pairs). */
double rf_explain_pearson(const double *a, const double *b, int n) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(a[i]) && isfinite(b[i])) {
            ma += a[i];
            mb += b[i];
            k++;
        }
    if (k < 2) return NAN;
    ma /= k;
    mb /= k;
    for (int i = 0; i < n; i++)
        if (isfinite(a[i]) && isfinite(b[i])) {
            sab += (a[i] - ma) * (b[i] - mb);
            saa += (a[i] - ma) * (a[i] - ma);
            sbb += (b[i] - mb) * (b[i] - mb);
        }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

static int cmp_dbl(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q-quantile of the finite values (sorted copy); NaN when none */
static double quantile(const float *v, int n, double q) {
    double *s = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!s) return NAN;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) s[k++] = v[i];
    double r = NAN;
    if (k > 0) {
        qsort(s, (size_t)k, sizeof *s, cmp_dbl);
        const double pos = q * (k - 1);
        const int i = (int)floor(pos);
        r = i >= k - 1 ? s[k - 1] : s[i] + (pos - i) * (s[i + 1] - s[i]);
    }
    free(s);
    return r;
}

/* ---------------------------------------------------------------- the run */

typedef struct run {
    const rf_flow *f;
    const rf_dataset *d;
    const rf_explain_opts *o;
    const char *outdir;
    rf_explain_bands bands;
    int n, D, C, channels, T, windows;
    double fs;
    const int *labels; /* true labels or NULL */
    const int *cls;    /* labels, else the predicted classes: the class of each row */
    float *logp, *post;
    int *pred, *order;
    float *proto;
    double proto_err[1024];
    float *xs;
    int *ys;
    char **cnames;
    ex_names nm;
    int draw[MAX_DRAW];
    char chan[MAX_DRAW][32];
    cJSON *root, *figs;
    char ext[8];
    rf_rng rng;
    const char *units_full;
    char units_short[64];
} run;

static void progress(const run *r, const char *msg) {
    if (!r->o->quiet) fprintf(stderr, "renflow explain: %s\n", msg);
}

static void fig_path(const run *r, const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s.%s", r->outdir, name, r->ext);
}

static void add_fig(run *r, const char *name) {
    char b[64];
    snprintf(b, sizeof b, "%s.%s", name, r->ext);
    cJSON_AddItemToArray(r->figs, cJSON_CreateString(b));
}

static int subject_of(const run *r, int i) { return r->d->subjects ? r->d->subjects[i] : -1; }

static void add_row_info(const run *r, cJSON *o, int i) {
    cJSON_AddNumberToObject(o, "index", i);
    const int s = subject_of(r, i);
    if (s >= 0) {
        cJSON_AddNumberToObject(o, "subject", s);
        const cJSON *sn = r->d->manifest ? cJSON_GetObjectItemCaseSensitive(r->d->manifest, "subjects") : NULL;
        const cJSON *it = cJSON_IsArray(sn) ? cJSON_GetArrayItem(sn, s) : NULL;
        if (cJSON_IsString(it)) cJSON_AddStringToObject(o, "subject_name", it->valuestring);
    }
    if (r->labels) cJSON_AddStringToObject(o, "label", r->cnames[r->labels[i]]);
    cJSON_AddStringToObject(o, "predicted", r->cnames[r->pred[i]]);
}

/* Integrated gradients of log p(x) and of log p(own class | x) for n feature rows, in the
 * layout of the band Shapley values (K = C + 1 targets): phi[(i K + C) D + j] for log p(x) and
 * phi[(i K + cls_i) D + j] = that + the one for log p(cls_i | x), so that the difference of the
 * two is the attribution of the posterior. *maxgap: the largest completeness error. */
#define IG_STEPS 32
static int feature_ig(const run *r, int n, const float *x, const int *cls, double *phi, double *maxgap, rf_err *e) {
    const int D = r->D, C = r->C, K = C + 1;
    double *a = malloc(sizeof(double) * (size_t)n * D), *b = malloc(sizeof(double) * (size_t)n * D);
    double *ga = malloc(sizeof(double) * (size_t)n), *gb = malloc(sizeof(double) * (size_t)n);
    int rc = RF_OK;
    if (!a || !b || !ga || !gb) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
    if (!rc) rc = rf_explain_integrated_gradients(r->f, n, x, NULL, RF_EXPLAIN_LOGP, NULL, r->o->log_prior, IG_STEPS, a, ga, e);
    if (!rc) rc = rf_explain_integrated_gradients(r->f, n, x, NULL, RF_EXPLAIN_LOGPOST, cls, r->o->log_prior, IG_STEPS, b, gb, e);
    if (!rc) {
        for (size_t q = 0; q < (size_t)n * K * D; q++) phi[q] = NAN;
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < D; j++) {
                phi[((size_t)i * K + C) * D + j] = a[(size_t)i * D + j];
                phi[((size_t)i * K + cls[i]) * D + j] = a[(size_t)i * D + j] + b[(size_t)i * D + j];
            }
            *maxgap = fmax(*maxgap, fmax(fabs(ga[i]), fabs(gb[i])));
        }
    }
    free(a);
    free(b);
    free(ga);
    free(gb);
    return rc;
}

/* ---- 1. prototypes ---- */

static int do_prototypes(run *r, rf_err *e) {
    const int C = r->C, D = r->D, S = r->o->samples_per_class;
    int rc;
    progress(r, "prototypes and class-conditional samples");
    if ((rc = rf_explain_prototypes(r->f, r->proto, r->proto_err, e))) return rc;
    if ((rc = rf_explain_sample_classes(r->f, S, &r->rng, r->xs, r->ys, e))) return rc;
    cJSON *pj = cJSON_AddObjectToObject(r->root, "prototypes");
    cJSON_AddStringToObject(pj, "definition",
                            "decoded class means x_c = f^-1(mu_c) in data units; samples: class-conditional draws x = f^-1(z), z ~ N(mu_c, sigma_c)");
    cJSON_AddNumberToObject(pj, "samples_per_class", S);
    cJSON_AddItemToObject(pj, "roundtrip_max_abs_latent_error", jarr_d(r->proto_err, C));
    cJSON *pc = cJSON_AddArrayToObject(pj, "per_class");
    char path[4200];
    rf_class_moments dm = {0}, sm = {0};
    rf_class_spectra sd = {0}, ss = {0}, sp = {0};
    double *bpd = NULL, *bps = NULL, *bpp = NULL;
    int *pl = NULL;
    if ((rc = rf_class_moments_compute(r->xs, r->ys, C * S, D, C, &sm, e))) goto done;
    if (r->labels && (rc = rf_class_moments_compute(r->d->x.x, r->labels, r->n, D, C, &dm, e))) goto done;
    if (!r->windows) {
        /* profiles and their agreement are compared in the model's standardised units
         * u = (x - shift) / scale, so that features on different scales count alike */
        const float *sh = r->f->shift, *scl = r->f->scale;
        float *zp = rf_floats((size_t)C * D, e);
        if (!zp) {
            rc = e->code;
            goto done;
        }
        for (int c = 0; c < C; c++)
            for (int j = 0; j < D; j++) {
                const size_t q = (size_t)c * D + j;
                zp[q] = (r->proto[q] - sh[j]) / scl[j];
                sm.mean[q] = (sm.mean[q] - sh[j]) / scl[j];
                sm.sd[q] /= scl[j];
                if (dm.count) {
                    dm.mean[q] = (dm.mean[q] - sh[j]) / scl[j];
                    dm.sd[q] /= scl[j];
                }
            }
        cJSON_AddStringToObject(pj, "profile_units",
                                "vectors in data units; r, rmse and sd ratio computed in the model's standardised units (x - shift) / scale");
        double *raw = malloc(sizeof(double) * (size_t)D);
        for (int c = 0; c < C && raw; c++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "class", r->cnames[c]);
            cJSON_AddItemToObject(o, "prototype", jarr_f(r->proto + (size_t)c * D, D));
            cJSON_AddNumberToObject(o, "samples_used", sm.count[c]);
            for (int j = 0; j < D; j++) raw[j] = sm.mean[(size_t)c * D + j] * scl[j] + sh[j];
            cJSON_AddItemToObject(o, "sample_mean", jarr_d(raw, D));
            for (int j = 0; j < D; j++) raw[j] = sm.sd[(size_t)c * D + j] * scl[j];
            cJSON_AddItemToObject(o, "sample_sd", jarr_d(raw, D));
            if (dm.count) {
                const double *m = dm.mean + (size_t)c * D, *sd = dm.sd + (size_t)c * D;
                cJSON_AddNumberToObject(o, "data_rows", dm.count[c]);
                for (int j = 0; j < D; j++) raw[j] = m[j] * scl[j] + sh[j];
                cJSON_AddItemToObject(o, "data_mean", jarr_d(raw, D));
                for (int j = 0; j < D; j++) raw[j] = sd[j] * scl[j];
                cJSON_AddItemToObject(o, "data_sd", jarr_d(raw, D));
                double rmse = 0, sdr = 0;
                int k = 0;
                for (int j = 0; j < D; j++) {
                    raw[j] = zp[(size_t)c * D + j];
                    const double dd = sm.mean[(size_t)c * D + j] - m[j];
                    if (isfinite(dd) && sd[j] > 0 && sm.sd[(size_t)c * D + j] > 0) {
                        rmse += dd * dd / (sd[j] * sd[j]);
                        sdr += log(sm.sd[(size_t)c * D + j] / sd[j]);
                        k++;
                    }
                }
                cJSON_AddNumberToObject(o, "sample_mean_vs_data_mean_r", rf_explain_pearson(sm.mean + (size_t)c * D, m, D));
                cJSON_AddNumberToObject(o, "prototype_vs_data_mean_r", rf_explain_pearson(raw, m, D));
                cJSON_AddNumberToObject(o, "sample_mean_rmse_in_data_sd", k ? sqrt(rmse / k) : NAN);
                cJSON_AddNumberToObject(o, "sample_sd_over_data_sd_geomean", k ? exp(sdr / k) : NAN);
            }
            cJSON_AddItemToArray(pc, o);
        }
        if (!raw) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        free(raw);
        fig_path(r, "prototypes", path, sizeof path);
        ex_names nz = r->nm;
        nz.units = "standardised units";
        if (!rc) rc = ex_plot_profiles(path, &nz, D, zp, dm.count ? &dm : NULL, &sm, e);
        rf_free(zp);
        if (rc) goto done;
        add_fig(r, "prototypes");
        goto done;
    }
    /* windows: spectra of data, samples and prototypes; band powers */
    const int ch = r->channels, B = r->bands.n;
    const int64_t seg = rf_explain_seg_len(r->T, r->fs);
    if (!(pl = malloc(sizeof(int) * (size_t)C))) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int c = 0; c < C; c++) pl[c] = c;
    if ((r->labels && (rc = rf_class_spectra_compute(r->d->x.x, r->labels, r->n, ch, r->T, C, r->fs, seg, &sd, e))) ||
        (rc = rf_class_spectra_compute(r->xs, r->ys, C * S, ch, r->T, C, r->fs, seg, &ss, e)) ||
        (rc = rf_class_spectra_compute(r->proto, pl, C, ch, r->T, C, r->fs, seg, &sp, e)))
        goto done;
    const size_t nbp = (size_t)C * ch * B;
    bpd = calloc(nbp, sizeof(double));
    bps = calloc(nbp, sizeof(double));
    bpp = calloc(nbp, sizeof(double));
    if (!bpd || !bps || !bpp) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    if (sd.count) rf_class_spectra_band_powers(&sd, &r->bands, bpd);
    rf_class_spectra_band_powers(&ss, &r->bands, bps);
    rf_class_spectra_band_powers(&sp, &r->bands, bpp);
    cJSON_AddNumberToObject(pj, "welch_segment_samples", (double)seg);
    cJSON *bj = cJSON_AddObjectToObject(pj, "bands_hz");
    for (int k = 0; k < B; k++) {
        const double lh[2] = {r->bands.lo[k], r->bands.hi[k]};
        cJSON_AddItemToObject(bj, r->bands.name[k], jarr_d(lh, 2));
    }
    cJSON_AddStringToObject(pj, "band_power_units", "(data units)^2, from the per-class mean Welch PSD");
    cJSON_AddNumberToObject(pj, "samples_skipped_nonfinite", (double)ss.skipped);
    cJSON *spec = cJSON_AddObjectToObject(r->root, "spectra");
    {
        double *fr = malloc(sizeof(double) * (size_t)ss.nfreq);
        for (int k = 0; fr && k < ss.nfreq; k++) fr[k] = k * r->fs / seg;
        if (fr) cJSON_AddItemToObject(spec, "freq_hz", jarr_d(fr, ss.nfreq));
        free(fr);
        cJSON_AddStringToObject(spec, "units", "(data units)^2 / Hz");
    }
    cJSON *specc = cJSON_AddArrayToObject(spec, "per_class");
    for (int c = 0; c < C; c++) {
        cJSON *o = cJSON_CreateObject(), *bp = cJSON_AddObjectToObject(o, "band_power");
        cJSON_AddStringToObject(o, "class", r->cnames[c]);
        if (sd.count) cJSON_AddNumberToObject(o, "data_windows", sd.count[c]);
        cJSON_AddNumberToObject(o, "samples_used", ss.count[c]);
        cJSON_AddNumberToObject(o, "prototype_latent_roundtrip_error", r->proto_err[c]);
        const char *src[3] = {"data", "samples", "prototype"};
        const double *bv[3] = {sd.count ? bpd : NULL, bps, bpp};
        cJSON *mean = cJSON_AddObjectToObject(o, "log10_band_power_mean_over_channels");
        for (int q = 0; q < 3; q++) {
            if (!bv[q]) continue;
            cJSON *sj = cJSON_AddObjectToObject(bp, src[q]);
            double mb[RF_EXPLAIN_MAX_BANDS] = {0};
            for (int h = 0; h < ch; h++) {
                char nmc[64];
                rf_explain_channel_name(r->d, h, nmc, sizeof nmc);
                const double *v = bv[q] + ((size_t)c * ch + h) * B;
                cJSON_AddItemToObject(sj, nmc, jbands(&r->bands, v));
                for (int k = 0; k < B; k++) mb[k] += log10(fmax(v[k], 1e-30)) / ch;
            }
            cJSON_AddItemToObject(mean, src[q], jbands(&r->bands, mb));
        }
        cJSON *sc = cJSON_CreateObject();
        for (int h = 0; h < r->nm.n_draw; h++) {
            const int chn = r->draw[h];
            cJSON *cj = cJSON_AddObjectToObject(sc, r->chan[h]);
            if (sd.count) cJSON_AddItemToObject(cj, "data", jarr_d(sd.psd + ((size_t)c * ch + chn) * sd.nfreq, sd.nfreq));
            cJSON_AddItemToObject(cj, "samples", jarr_d(ss.psd + ((size_t)c * ch + chn) * ss.nfreq, ss.nfreq));
            cJSON_AddItemToObject(cj, "prototype", jarr_d(sp.psd + ((size_t)c * ch + chn) * sp.nfreq, sp.nfreq));
        }
        cJSON *sco = cJSON_CreateObject();
        cJSON_AddStringToObject(sco, "class", r->cnames[c]);
        cJSON_AddItemToObject(sco, "psd", sc);
        cJSON_AddItemToArray(specc, sco);
        cJSON_AddItemToArray(pc, o);
    }
    fig_path(r, "prototypes", path, sizeof path);
    {
        /* one sample per class beside the prototype: the first finite one */
        float *one = rf_floats((size_t)C * D, e);
        if (!one) {
            rc = e->code;
            goto done;
        }
        for (int c = 0; c < C; c++) {
            int pick = c * S;
            for (int i = c * S; i < (c + 1) * S; i++)
                if (rf_all_finite(r->xs + (size_t)i * D, (size_t)D)) {
                    pick = i;
                    break;
                }
            memcpy(one + (size_t)c * D, r->xs + (size_t)pick * D, sizeof(float) * (size_t)D);
        }
        rc = ex_plot_waveforms(path, &r->nm, ch, r->T, r->fs, r->proto, one, e);
        rf_free(one);
        if (rc) goto done;
    }
    add_fig(r, "prototypes");
    fig_path(r, "spectra", path, sizeof path);
    if ((rc = ex_plot_spectra(path, &r->nm, &r->bands, sd.count ? &sd : NULL, &ss, &sp, e))) goto done;
    add_fig(r, "spectra");
done:
    rf_class_moments_free(&dm);
    rf_class_moments_free(&sm);
    rf_class_spectra_free(&sd);
    rf_class_spectra_free(&ss);
    rf_class_spectra_free(&sp);
    free(bpd);
    free(bps);
    free(bpp);
    free(pl);
    return rc;
}

/* ---- 2. OOD ---- */

static int do_ood(run *r, rf_err *e) {
    progress(r, "out-of-distribution scores");
    const int n = r->n, D = r->D, K = r->o->top_k < n ? r->o->top_k : n, C = r->C;
    rf_explain_rank_ascending(r->logp, n, r->order);
    cJSON *oj = cJSON_AddObjectToObject(r->root, "ood");
    cJSON_AddStringToObject(oj, "score", "log p(x) in nats per row: marginal over classes with the prior; lowest = least likely");
    cJSON_AddStringToObject(oj, "prior", r->o->prior_name ? r->o->prior_name : "uniform");
    cJSON *q = cJSON_AddObjectToObject(oj, "log_p_quantiles");
    static const double qs[7] = {0, 0.01, 0.05, 0.5, 0.95, 0.99, 1};
    static const char *qn[7] = {"min", "p01", "p05", "median", "p95", "p99", "max"};
    for (int k = 0; k < 7; k++) cJSON_AddNumberToObject(q, qn[k], quantile(r->logp, n, qs[k]));
    cJSON_AddNumberToObject(oj, "median_bits_per_dim", -quantile(r->logp, n, 0.5) / (D * LN2));
    int nonfinite = 0;
    for (int i = 0; i < n; i++) nonfinite += !isfinite(r->logp[i]);
    cJSON_AddNumberToObject(oj, "nonfinite", nonfinite);
    /* histogram over [max(min, median - 12 IQR), max]: rows below are counted apart */
    {
        const double med = quantile(r->logp, n, 0.5), iqr = quantile(r->logp, n, 0.75) - quantile(r->logp, n, 0.25);
        const double mn = quantile(r->logp, n, 0), mx = quantile(r->logp, n, 1);
        double lo = fmax(mn, med - 12 * fmax(iqr, 1e-9));
        const int nb = 40;
        double edges[41], counts[40] = {0};
        int below = 0;
        for (int k = 0; k <= nb; k++) edges[k] = lo + (mx - lo) * k / nb;
        for (int i = 0; i < n; i++) {
            const double v = r->logp[i];
            if (!isfinite(v) || v < lo) {
                below++;
                continue;
            }
            int k = mx > lo ? (int)((v - lo) / (mx - lo) * nb) : 0;
            if (k >= nb) k = nb - 1;
            counts[k]++;
        }
        cJSON *h = cJSON_AddObjectToObject(oj, "histogram");
        cJSON_AddItemToObject(h, "edges", jarr_d(edges, nb + 1));
        cJSON_AddItemToObject(h, "counts", jarr_d(counts, nb));
        cJSON_AddNumberToObject(h, "below_range_or_nonfinite", below);
    }
    cJSON *ll = cJSON_AddArrayToObject(oj, "least_likely");
    int rc = RF_OK;
    const int S = rf_flow_n_scales(r->f), P = S + 1;
    float *xk = rf_floats((size_t)(K > 0 ? K : 1) * D, e);
    double *parts = malloc(sizeof(double) * (size_t)(K > 0 ? K : 1) * P);
    const int KT = C + 1, B = r->bands.n;
    double *phi = malloc(sizeof(double) * (size_t)(K > 0 ? K : 1) * KT * (r->windows ? B : D));
    if (!xk || !parts || !phi) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < K; k++) memcpy(xk + (size_t)k * D, r->d->x.x + (size_t)r->order[k] * D, sizeof(float) * (size_t)D);
    /* rows with non-finite values cannot go through the attributions */
    int ok_all = rf_all_finite(xk, (size_t)K * D);
    rf_scale_report rep;
    if (K > 0 && ok_all && (rc = rf_flow_scale_report(r->f, K, xk, NULL, &rep, parts, e))) goto done;
    if (K > 0 && ok_all) {
        if (r->windows) rc = rf_explain_band_shapley(r->f, K, xk, r->channels, r->T, r->fs, &r->bands, r->o->log_prior, phi, NULL, NULL, e);
        else {
            int *kc = malloc(sizeof(int) * (size_t)K);
            double gap = 0;
            if (!kc) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            for (int k = 0; kc && k < K; k++) kc[k] = r->cls[r->order[k]];
            if (!rc) rc = feature_ig(r, K, xk, kc, phi, &gap, e);
            free(kc);
            if (!rc) cJSON_AddNumberToObject(oj, "integrated_gradients_max_completeness_error", gap);
        }
        if (rc) goto done;
    }
    for (int k = 0; k < K; k++) {
        const int i = r->order[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", k + 1);
        add_row_info(r, o, i);
        cJSON_AddNumberToObject(o, "log_p", r->logp[i]);
        cJSON_AddNumberToObject(o, "bits_per_dim", -r->logp[i] / (D * LN2));
        if (ok_all) {
            cJSON_AddItemToObject(o, "scale_parts_nats", jarr_d(parts + (size_t)k * P, S));
            cJSON_AddNumberToObject(o, "class_term_nats", parts[(size_t)k * P + S]);
            const double *ph = phi + ((size_t)k * KT + C) * (r->windows ? B : D);
            if (r->windows) {
                cJSON_AddItemToObject(o, "band_shapley_log_p", jbands(&r->bands, ph));
            } else { /* the 5 features that lower log p(x) most */
                int top[5], nt = 0;
                for (int t = 0; t < 5 && t < D; t++) {
                    int best = -1;
                    for (int j = 0; j < D; j++) {
                        int used = 0;
                        for (int u = 0; u < nt; u++) used |= top[u] == j;
                        if (!used && (best < 0 || ph[j] < ph[best])) best = j;
                    }
                    top[nt++] = best;
                }
                cJSON *tf = cJSON_AddArrayToObject(o, "features_lowering_log_p_most");
                for (int t = 0; t < nt; t++) {
                    cJSON *fo = cJSON_CreateObject();
                    cJSON_AddNumberToObject(fo, "feature", top[t]);
                    cJSON_AddNumberToObject(fo, "value", xk[(size_t)k * D + top[t]]);
                    cJSON_AddNumberToObject(fo, "integrated_gradient_log_p", ph[top[t]]);
                    cJSON_AddItemToArray(tf, fo);
                }
            }
        }
        cJSON_AddItemToArray(ll, o);
    }
    {
        char path[4200];
        rf_class_moments all = {0};
        if (!r->windows && (rc = rf_class_moments_compute(r->d->x.x, NULL, n, D, 1, &all, e))) goto done;
        ex_ood_plot p = {.n = n, .logp = r->logp, .k = K, .idx = r->order, .x = r->d->x.x, .labels = r->labels,
                         .subjects = r->d->subjects, .pred = r->pred, .channels = r->windows ? r->channels : 0,
                         .T = r->T, .fs = r->fs, .all = r->windows ? NULL : &all, .dim = D,
                         .shift = r->f->shift, .scale = r->f->scale, .subject_names = r->d->manifest};
        fig_path(r, "ood", path, sizeof path);
        rc = ex_plot_ood(path, &r->nm, &p, e);
        rf_class_moments_free(&all);
        if (rc) goto done;
        add_fig(r, "ood");
    }
done:
    rf_free(xk);
    free(parts);
    free(phi);
    return rc;
}

/* ---- 3. counterfactual ---- */

static int do_counterfactual(run *r, rf_err *e) {
    progress(r, "counterfactual");
    const int C = r->C, D = r->D, n = r->n;
    int win = r->o->window, from = r->o->from, to = r->o->to;
    if (win >= n) return rf_err_set(e, RF_EARG, "window %d is out of range: the data have %d rows", win, n);
    if (win < 0) { /* a typical row of class a: the median log p(x | a) among its rows classified as a */
        const int a = from >= 0 ? from : 0;
        double *lc = malloc(sizeof(double) * (size_t)n);
        int *cand = malloc(sizeof(int) * (size_t)n), nc = 0;
        if (!lc || !cand) {
            free(lc);
            free(cand);
            return rf_err_set(e, RF_ENOMEM, "out of memory");
        }
        const double lpa = r->o->log_prior ? r->o->log_prior[a] : -log((double)C);
        for (int pass = 0; pass < 2 && nc == 0; pass++)
            for (int i = 0; i < n; i++)
                if (r->cls[i] == a && (pass == 1 || r->pred[i] == a) && isfinite(r->logp[i]) &&
                    rf_all_finite(r->d->x.x + (size_t)i * D, (size_t)D)) {
                    lc[nc] = r->post[(size_t)i * C + a] + r->logp[i] - lpa; /* log p(x | a) */
                    cand[nc++] = i;
                }
        if (nc > 0) {
            int *ord = malloc(sizeof(int) * (size_t)nc);
            float *v = malloc(sizeof(float) * (size_t)nc);
            if (ord && v) {
                for (int k = 0; k < nc; k++) v[k] = (float)lc[k];
                rf_explain_rank_ascending(v, nc, ord);
                win = cand[ord[nc / 2]];
            } else {
                win = cand[0];
            }
            free(ord);
            free(v);
        } else { /* no row of class a: the most probable one */
            for (int i = 0; i < n; i++)
                if (rf_all_finite(r->d->x.x + (size_t)i * D, (size_t)D) &&
                    (win < 0 || r->post[(size_t)i * C + a] > r->post[(size_t)win * C + a]))
                    win = i;
        }
        free(lc);
        free(cand);
        if (win < 0) return rf_err_set(e, RF_EFORMAT, "counterfactual: no row with finite values");
    }
    if (from < 0) from = r->cls[win];
    if (to < 0) {
        for (int c = 0; c < C; c++)
            if (c != from && (to < 0 || r->post[(size_t)win * C + c] > r->post[(size_t)win * C + to])) to = c;
    }
    if (from == to) return rf_err_set(e, RF_EARG, "counterfactual: --from and --to are the same class (%s)", r->cnames[from]);
    const float *x = r->d->x.x + (size_t)win * D;
    rf_counterfactual cf;
    int rc = rf_explain_counterfactual(r->f, x, from, to, r->o->cf_mode, r->o->cf_steps, r->o->log_prior, &cf, e);
    if (rc) return rc;
    cJSON *cj = cJSON_AddObjectToObject(r->root, "counterfactual");
    cJSON_AddStringToObject(cj, "definition",
                            cf.mode == RF_CF_SHIFT ? "z_t = f(x) + t (mu_to - mu_from); x_t = f^-1(z_t)"
                                                   : "z_t = z + t [(mu_to - mu_from) + (sigma_to / sigma_from - 1)(z - mu_from)]; x_t = f^-1(z_t)");
    cJSON_AddStringToObject(cj, "mode", rf_cf_mode_name(cf.mode));
    cJSON *wj = cJSON_AddObjectToObject(cj, "window");
    add_row_info(r, wj, win);
    cJSON_AddStringToObject(cj, "from", r->cnames[from]);
    cJSON_AddStringToObject(cj, "to", r->cnames[to]);
    cJSON *path = cJSON_AddArrayToObject(cj, "path");
    for (int s = 0; s < cf.steps; s++) {
        cJSON *o = cJSON_CreateObject(), *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "t", cf.t[s]);
        for (int c = 0; c < C; c++) cJSON_AddNumberToObject(p, r->cnames[c], exp(cf.log_post[(size_t)s * C + c]));
        cJSON_AddItemToObject(o, "p_class", p);
        cJSON_AddNumberToObject(o, "p_to", exp(cf.log_post[(size_t)s * C + to]));
        cJSON_AddNumberToObject(o, "log_p", cf.logp[s]);
        cJSON_AddNumberToObject(o, "latent_roundtrip_error", cf.latent_err[s]);
        cJSON_AddItemToArray(path, o);
    }
    const float *x1 = cf.x + (size_t)(cf.steps - 1) * D;
    double l2 = 0, l2x = 0, rec = 0;
    for (int j = 0; j < D; j++) {
        l2 += (double)(x1[j] - x[j]) * (x1[j] - x[j]);
        l2x += (double)x[j] * x[j];
        rec = fmax(rec, fabs((double)cf.x[j] - x[j]));
    }
    cJSON_AddNumberToObject(cj, "rms_change", sqrt(l2 / D));
    cJSON_AddNumberToObject(cj, "rms_original", sqrt(l2x / D));
    cJSON_AddNumberToObject(cj, "reconstruction_max_abs_error", rec);
    if (r->windows) { /* band power change per channel at t = 1 */
        const int ch = r->channels, B = r->bands.n;
        const int64_t seg = rf_explain_seg_len(r->T, r->fs);
        rf_class_spectra s0 = {0}, s1 = {0};
        if (!(rc = rf_class_spectra_compute(x, NULL, 1, ch, r->T, 1, r->fs, seg, &s0, e)) &&
            !(rc = rf_class_spectra_compute(x1, NULL, 1, ch, r->T, 1, r->fs, seg, &s1, e))) {
            double *b0 = calloc((size_t)ch * B, sizeof(double)), *b1 = calloc((size_t)ch * B, sizeof(double));
            if (b0 && b1) {
                rf_class_spectra_band_powers(&s0, &r->bands, b0);
                rf_class_spectra_band_powers(&s1, &r->bands, b1);
                cJSON *bc = cJSON_AddObjectToObject(cj, "band_power_change_db");
                double mean[RF_EXPLAIN_MAX_BANDS] = {0};
                for (int h = 0; h < ch; h++) {
                    double db[RF_EXPLAIN_MAX_BANDS];
                    for (int k = 0; k < B; k++) {
                        db[k] = 10 * log10(fmax(b1[h * B + k], 1e-30) / fmax(b0[h * B + k], 1e-30));
                        mean[k] += db[k] / ch;
                    }
                    char nmc[64];
                    rf_explain_channel_name(r->d, h, nmc, sizeof nmc);
                    cJSON_AddItemToObject(bc, nmc, jbands(&r->bands, db));
                }
                cJSON_AddItemToObject(cj, "band_power_change_db_mean_over_channels", jbands(&r->bands, mean));
            } else {
                rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            }
            free(b0);
            free(b1);
        }
        rf_class_spectra_free(&s0);
        rf_class_spectra_free(&s1);
    } else { /* the features that change most */
        cJSON *tf = cJSON_AddArrayToObject(cj, "largest_changes");
        int used[10], nu = 0;
        for (int t = 0; t < 10 && t < D; t++) {
            int best = -1;
            for (int j = 0; j < D; j++) {
                int u = 0;
                for (int k = 0; k < nu; k++) u |= used[k] == j;
                if (!u && (best < 0 || fabs(x1[j] - x[j]) > fabs(x1[best] - x[best]))) best = j;
            }
            used[nu++] = best;
            cJSON *fo = cJSON_CreateObject();
            cJSON_AddNumberToObject(fo, "feature", best);
            cJSON_AddNumberToObject(fo, "original", x[best]);
            cJSON_AddNumberToObject(fo, "counterfactual", x1[best]);
            cJSON_AddItemToArray(tf, fo);
        }
        cJSON_AddItemToObject(cj, "original", jarr_f(x, D));
        cJSON_AddItemToObject(cj, "counterfactual_t1", jarr_f(x1, D));
    }
    if (!rc) {
        char p[4200];
        fig_path(r, "counterfactual", p, sizeof p);
        if (!(rc = ex_plot_counterfactual(p, &r->nm, &cf, win, r->windows ? r->channels : 0, r->T, r->fs, &r->bands,
                                     r->f->shift, r->f->scale, e)))
            add_fig(r, "counterfactual");
    }
    rf_counterfactual_free(&cf);
    return rc;
}

/* ---- 4. contributions ---- */

static int do_contributions(run *r, rf_err *e) {
    progress(r, "per-scale and per-band contributions");
    const int n = r->n, D = r->D, C = r->C, S = rf_flow_n_scales(r->f), P = S + 1, KT = C + 1;
    const int F = r->windows ? r->bands.n : D;
    int rc = RF_OK;
    double *parts = malloc(sizeof(double) * (size_t)n * P), *sb = calloc((size_t)C * P, sizeof(double));
    long *sn = calloc((size_t)C, sizeof(long)), *an = calloc((size_t)C, sizeof(long));
    unsigned char *fin = malloc((size_t)n);
    int *rows = malloc(sizeof(int) * (size_t)n), *pick = malloc(sizeof(int) * (size_t)n);
    double *alp = calloc((size_t)C * F, sizeof(double)), *alp2 = calloc((size_t)C * F, sizeof(double));
    double *apo = calloc((size_t)C * F, sizeof(double)), *apo2 = calloc((size_t)C * F, sizeof(double));
    double *vb = calloc((size_t)C, sizeof(double)), *vf = calloc((size_t)C, sizeof(double));
    double igap = NAN;
    float *xs = NULL;
    double *phi = NULL;
    rf_dataset sel = {0};
    if (!parts || !sb || !sn || !an || !fin || !rows || !pick || !alp || !alp2 || !apo || !apo2 || !vb || !vf) {
        rc = rf_err_set(e, RF_ENOMEM, "out of memory");
        goto done;
    }
    /* per scale, over the rows with finite values */
    int nf = 0;
    for (int i = 0; i < n; i++) {
        fin[i] = (unsigned char)rf_all_finite(r->d->x.x + (size_t)i * D, (size_t)D);
        if (fin[i]) rows[nf++] = i;
    }
    if (nf > 0) {
        if ((rc = rf_dataset_select(r->d, fin, &sel, e))) goto done;
        rf_scale_report rep;
        if ((rc = rf_flow_scale_report(r->f, nf, sel.x.x, NULL, &rep, parts, e))) goto done;
        for (int k = 0; k < nf; k++) {
            const int c = r->cls[rows[k]];
            sn[c]++;
            for (int s = 0; s < P; s++) sb[(size_t)c * P + s] += parts[(size_t)k * P + s];
        }
        cJSON *sj = cJSON_AddObjectToObject(r->root, "contributions");
        cJSON *sc = cJSON_AddObjectToObject(sj, "scales");
        cJSON_AddStringToObject(sc, "definition",
                                "log p(x) = sum_s part_s + class term (rf_flow_scale_report, marginal over classes); "
                                "nll_bits_per_dim[s] = -mean part_s / (dims[s] ln 2)");
        cJSON_AddItemToObject(sc, "dims", jarr_i(rep.dims, S));
        cJSON_AddItemToObject(sc, "all_rows_nll_bits_per_dim", jarr_d(rep.bits_per_dim, S));
        cJSON_AddNumberToObject(sc, "all_rows_total_bits_per_dim", rep.total_bits_per_dim);
        cJSON *pc = cJSON_AddArrayToObject(sc, "per_class");
        for (int c = 0; c < C; c++) {
            double bpd[RF_TS_MAX_SCALES + 1], tot = 0;
            for (int s = 0; s < P; s++) {
                const double m = sn[c] ? sb[(size_t)c * P + s] / sn[c] : NAN;
                tot += m;
                bpd[s] = -m / ((s < S ? rep.dims[s] : D) * LN2);
                sb[(size_t)c * P + s] = bpd[s];
            }
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "class", r->cnames[c]);
            cJSON_AddNumberToObject(o, "rows", sn[c]);
            cJSON_AddItemToObject(o, "nll_bits_per_dim", jarr_d(bpd, S));
            cJSON_AddNumberToObject(o, "class_term_bits_per_dim", bpd[S]);
            cJSON_AddNumberToObject(o, "mean_log_p", tot);
            cJSON_AddItemToArray(pc, o);
        }
    }
    /* attributions on a seeded subsample of each class */
    const int M = r->o->max_windows_per_class;
    int np = 0;
    for (int c = 0; c < C; c++) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (fin[i] && r->cls[i] == c) rows[k++] = i;
        rf_rng_shuffle(&r->rng, rows, k);
        if (k > M) k = M;
        qsort(rows, (size_t)k, sizeof(int), cmp_int);
        for (int t = 0; t < k; t++) pick[np++] = rows[t];
    }
    cJSON *cjs = cJSON_GetObjectItemCaseSensitive(r->root, "contributions");
    if (!cjs) cjs = cJSON_AddObjectToObject(r->root, "contributions");
    if (np > 0) {
        if (!(xs = rf_floats((size_t)np * D, e)) || !(phi = malloc(sizeof(double) * (size_t)np * KT * F))) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
        for (int t = 0; t < np; t++) memcpy(xs + (size_t)t * D, r->d->x.x + (size_t)pick[t] * D, sizeof(float) * (size_t)D);
        double *vfull = malloc(sizeof(double) * (size_t)np * KT), *vbase = malloc(sizeof(double) * (size_t)np * KT);
        if (!vfull || !vbase) {
            free(vfull);
            free(vbase);
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
        if (r->windows) rc = rf_explain_band_shapley(r->f, np, xs, r->channels, r->T, r->fs, &r->bands, r->o->log_prior, phi, vfull, vbase, e);
        else {
            int *pc = malloc(sizeof(int) * (size_t)np);
            if (!pc) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            for (int t = 0; pc && t < np; t++) pc[t] = r->cls[pick[t]];
            igap = 0;
            if (!rc) rc = feature_ig(r, np, xs, pc, phi, &igap, e);
            free(pc);
        }
        for (int t = 0; !rc && t < np; t++) {
            const int c = r->cls[pick[t]];
            an[c]++;
            if (r->windows) {
                vb[c] += vbase[(size_t)t * KT + C];
                vf[c] += vfull[(size_t)t * KT + C];
            }
            const double *pl = phi + ((size_t)t * KT + C) * F, *pc = phi + ((size_t)t * KT + c) * F;
            for (int j = 0; j < F; j++) {
                const double a = pl[j], b = pc[j] - pl[j]; /* log p(x); log p(c | x) = log p(x | c) - log p(x) + const */
                alp[(size_t)c * F + j] += a;
                alp2[(size_t)c * F + j] += a * a;
                apo[(size_t)c * F + j] += b;
                apo2[(size_t)c * F + j] += b * b;
            }
        }
        free(vfull);
        free(vbase);
        if (rc) goto done;
        for (int c = 0; c < C; c++)
            for (int j = 0; j < F; j++) {
                const size_t q = (size_t)c * F + j;
                const double k = (double)an[c];
                alp[q] = k ? alp[q] / k : NAN;
                apo[q] = k ? apo[q] / k : NAN;
                alp2[q] = k > 1 ? sqrt(fmax(alp2[q] / k - alp[q] * alp[q], 0) / (k - 1)) : NAN; /* standard error */
                apo2[q] = k > 1 ? sqrt(fmax(apo2[q] / k - apo[q] * apo[q], 0) / (k - 1)) : NAN;
            }
        cJSON *aj = cJSON_AddObjectToObject(cjs, r->windows ? "bands" : "features");
        cJSON_AddStringToObject(aj, "definition",
                                r->windows ? "exact Shapley values over the bands of an FFT-mask split x = residual + sum_b x_b (bands "
                                             "absent are removed); sum over bands = v(x) - v(residual); nats"
                                           : "integrated gradients from the model's standardisation centre b to x (32 midpoint steps, "
                                             "exact input gradients); sum over features = v(x) - v(b); nats");
        if (!r->windows) cJSON_AddNumberToObject(aj, "max_completeness_error", igap);
        cJSON_AddNumberToObject(aj, "max_rows_per_class", M);
        cJSON *pc = cJSON_AddArrayToObject(aj, "per_class");
        for (int c = 0; c < C; c++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "class", r->cnames[c]);
            cJSON_AddNumberToObject(o, "rows", an[c]);
            if (r->windows) {
                cJSON_AddItemToObject(o, "log_p", jbands(&r->bands, alp + (size_t)c * F));
                cJSON_AddItemToObject(o, "log_p_se", jbands(&r->bands, alp2 + (size_t)c * F));
                cJSON_AddItemToObject(o, "log_posterior_own_class", jbands(&r->bands, apo + (size_t)c * F));
                cJSON_AddItemToObject(o, "log_posterior_own_class_se", jbands(&r->bands, apo2 + (size_t)c * F));
                cJSON_AddNumberToObject(o, "mean_log_p", an[c] ? vf[c] / an[c] : NAN);
                cJSON_AddNumberToObject(o, "mean_log_p_residual_only", an[c] ? vb[c] / an[c] : NAN);
            } else {
                cJSON_AddItemToObject(o, "log_p", jarr_d(alp + (size_t)c * F, F));
                cJSON_AddItemToObject(o, "log_posterior_own_class", jarr_d(apo + (size_t)c * F, F));
                int used[10], nu = 0;
                cJSON *tf = cJSON_AddArrayToObject(o, "top_features_for_own_class");
                for (int t = 0; t < 10 && t < F; t++) {
                    int best = -1;
                    for (int j = 0; j < F; j++) {
                        int u = 0;
                        for (int k = 0; k < nu; k++) u |= used[k] == j;
                        if (!u && (best < 0 || apo[(size_t)c * F + j] > apo[(size_t)c * F + best])) best = j;
                    }
                    used[nu++] = best;
                    cJSON *fo = cJSON_CreateObject();
                    cJSON_AddNumberToObject(fo, "feature", best);
                    cJSON_AddNumberToObject(fo, "delta_log_posterior", apo[(size_t)c * F + best]);
                    cJSON_AddItemToArray(tf, fo);
                }
            }
            cJSON_AddItemToArray(pc, o);
        }
    }
    {
        char p[4200];
        const char *fn[RF_EXPLAIN_MAX_BANDS];
        for (int k = 0; k < r->bands.n; k++) fn[k] = r->bands.name[k];
        int dims[RF_TS_MAX_SCALES];
        for (int s = 0; s < S; s++) dims[s] = s == S - 1 ? D >> (S - 1) : (D >> s) - (D >> (s + 1));
        ex_contrib_plot cp = {.S = S, .dims = dims, .scale_bpd = nf > 0 ? sb : NULL, .scale_n = sn, .F = np > 0 ? F : 0,
                              .fnames = r->windows ? fn : NULL, .att_lp = alp, .att_lp_se = alp2, .att_post = apo,
                              .att_post_se = apo2, .att_n = an, .features = !r->windows};
        fig_path(r, "contributions", p, sizeof p);
        if (!(rc = ex_plot_contributions(p, &r->nm, &cp, e))) add_fig(r, "contributions");
    }
done:
    free(parts);
    free(sb);
    free(sn);
    free(an);
    free(fin);
    free(rows);
    free(pick);
    free(alp);
    free(alp2);
    free(apo);
    free(apo2);
    free(vb);
    free(vf);
    rf_free(xs);
    free(phi);
    rf_dataset_free(&sel);
    return rc;
}

/* ---- the whole report ---- */

static int make_outdir(const char *dir, rf_err *e) {
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return rf_err_set(e, RF_EIO, "%s exists and is not a directory", dir);
        return RF_OK;
    }
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return rf_err_set(e, RF_EIO, "cannot create directory %s: %s", dir, strerror(errno));
    return RF_OK;
}

int rf_explain_run(const rf_flow *f, const rf_dataset *d, const rf_explain_opts *o, const char *outdir,
                   cJSON **summary, rf_err *e) {
    if (summary) *summary = NULL;
    int rc = rf_explain_check_model(f, e);
    if (rc) return rc;
    if (!d || !o || !outdir) return rf_err_set(e, RF_EARG, "explain: missing data, options or output directory");
    run r;
    memset(&r, 0, sizeof r);
    r.f = f;
    r.d = d;
    r.o = o;
    r.outdir = outdir;
    r.n = d->x.n;
    r.D = f->D;
    r.C = f->base.n_classes;
    const int C = r.C, D = r.D, n = r.n;
    if (n < 1) return rf_err_set(e, RF_EFORMAT, "explain: the data have no rows");
    if (C > 1024) return rf_err_set(e, RF_EARG, "explain: at most 1024 classes, the model has %d", C);
    if ((rc = rf_explain_data_shape(f, d, &r.channels, &r.T, e))) return rc;
    r.windows = r.channels > 0;
    if (d->labels)
        for (int i = 0; i < n; i++)
            if (d->labels[i] < 0 || d->labels[i] >= C)
                return rf_err_set(e, RF_EFORMAT, "label %d of row %d is outside the model's %d classes", d->labels[i], i, C);
    if (strcmp(o->format ? o->format : "svg", "svg") && strcmp(o->format, "png"))
        return rf_err_set(e, RF_EARG, "explain: figure format must be svg or png, got '%s'", o->format);
    snprintf(r.ext, sizeof r.ext, "%s", o->format ? o->format : "svg");
    if (o->top_k < 0 || o->top_k > 64) return rf_err_set(e, RF_EARG, "explain: top_k must be in [0, 64], got %d", o->top_k);
    if (o->samples_per_class < 2 || o->samples_per_class > 100000)
        return rf_err_set(e, RF_EARG, "explain: samples per class must be in [2, 100000], got %d", o->samples_per_class);
    if (o->max_windows_per_class < 1) return rf_err_set(e, RF_EARG, "explain: max rows per class must be >= 1");
    if (o->from >= C || o->to >= C) return rf_err_set(e, RF_EARG, "explain: counterfactual class out of range (%d classes)", C);
    if (o->bands) r.bands = *o->bands;
    else rf_explain_bands_default(&r.bands);
    if (r.windows) {
        r.fs = o->rate > 0 ? o->rate : rf_explain_manifest_rate(d);
        if (!(r.fs > 0))
            return rf_err_set(e, RF_EARG, "explain: the sampling rate of the windows is unknown (no \"rate_hz\" in a manifest): give --rate");
        if ((rc = rf_explain_bands_check(&r.bands, r.fs, e))) return rc;
        if (o->n_channels > MAX_DRAW) return rf_err_set(e, RF_EARG, "explain: at most %d channels can be drawn", MAX_DRAW);
        r.nm.n_draw = o->channels && o->n_channels > 0 ? o->n_channels : (r.channels < 3 ? r.channels : 3);
        for (int h = 0; h < r.nm.n_draw; h++) {
            r.draw[h] = o->channels && o->n_channels > 0 ? o->channels[h] : h;
            if (r.draw[h] < 0 || r.draw[h] >= r.channels)
                return rf_err_set(e, RF_EARG, "explain: channel index %d outside [0, %d)", r.draw[h], r.channels);
            rf_explain_channel_name(d, r.draw[h], r.chan[h], sizeof r.chan[h]);
        }
    }
    if ((rc = make_outdir(outdir, e))) return rc;
    rf_rng_seed(&r.rng, o->seed);
    const int S = o->samples_per_class;
    r.cnames = calloc((size_t)C, sizeof(char *));
    r.logp = malloc(sizeof(float) * (size_t)n);
    r.post = malloc(sizeof(float) * (size_t)n * C);
    r.pred = malloc(sizeof(int) * (size_t)n);
    r.order = malloc(sizeof(int) * (size_t)n);
    r.proto = rf_floats((size_t)C * D, e);
    r.xs = rf_floats((size_t)C * S * D, e);
    r.ys = malloc(sizeof(int) * (size_t)C * S);
    if (!r.cnames || !r.logp || !r.post || !r.pred || !r.order || !r.proto || !r.xs || !r.ys) {
        rc = rf_err_set(e, RF_ENOMEM, "explain: out of memory (%d rows x %d, %d samples per class)", n, D, S);
        goto done;
    }
    for (int c = 0; c < C; c++) {
        char b[16];
        if (!(r.cnames[c] = strdup(class_name(d, C, c, b, sizeof b)))) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory");
            goto done;
        }
    }
    r.nm.C = C;
    r.nm.cls = (const char *const *)r.cnames;
    r.nm.draw = r.draw;
    r.nm.chan = r.chan;
    {
        const cJSON *u = d->manifest ? cJSON_GetObjectItemCaseSensitive(d->manifest, "units") : NULL;
        r.units_full = cJSON_IsString(u) ? u->valuestring : "data units";
        /* figures: the units without their parenthesised explanation ("robust z (per ...)") */
        snprintf(r.units_short, sizeof r.units_short, "%s", r.units_full);
        char *par = strstr(r.units_short, " (");
        if (par && par != r.units_short) *par = '\0';
        r.nm.units = r.units_short;
    }
    progress(&r, "scoring every row");
    if ((rc = rf_explain_scores(f, n, d->x.x, o->log_prior, r.logp, r.post, e))) goto done;
    for (int i = 0; i < n; i++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (r.post[(size_t)i * C + c] > r.post[(size_t)i * C + best]) best = c;
        r.pred[i] = best;
    }
    r.labels = d->labels;
    r.cls = d->labels ? d->labels : r.pred;

    r.root = cJSON_CreateObject();
    cJSON_AddStringToObject(r.root, "renflow_version", RF_VERSION_STRING);
    if (o->model_path) cJSON_AddStringToObject(r.root, "model", o->model_path);
    if (o->data_path) cJSON_AddStringToObject(r.root, "data", o->data_path);
    cJSON_AddStringToObject(r.root, "flow", rf_flow_type_name(f->spec.type));
    cJSON_AddStringToObject(r.root, "kind", r.windows ? "windows" : "features");
    /* explanations work in the model's reference latent space: an adapted model's per-subject
     * statistics (renflow/adapt.h) are not applied to the windows explained here */
    if (f->adapt_mean) cJSON_AddStringToObject(r.root, "subject_adapt", "reference subject; per-subject statistics not applied");
    cJSON_AddNumberToObject(r.root, "rows", n);
    cJSON_AddNumberToObject(r.root, "dim", D);
    if (r.windows) {
        cJSON_AddNumberToObject(r.root, "channels", r.channels);
        cJSON_AddNumberToObject(r.root, "samples", r.T);
        cJSON_AddNumberToObject(r.root, "rate_hz", r.fs);
        cJSON *cn = cJSON_AddArrayToObject(r.root, "channel_names"), *dn = cJSON_AddArrayToObject(r.root, "channels_drawn");
        for (int h = 0; h < r.channels; h++) {
            char nmc[64];
            rf_explain_channel_name(d, h, nmc, sizeof nmc);
            cJSON_AddItemToArray(cn, cJSON_CreateString(nmc));
        }
        for (int h = 0; h < r.nm.n_draw; h++) cJSON_AddItemToArray(dn, cJSON_CreateString(r.chan[h]));
    }
    cJSON_AddStringToObject(r.root, "units", r.units_full);
    cJSON_AddItemToObject(r.root, "classes", cJSON_CreateStringArray((const char *const *)r.cnames, C));
    cJSON_AddBoolToObject(r.root, "labels", d->labels != NULL);
    cJSON_AddStringToObject(r.root, "prior", o->prior_name ? o->prior_name : "uniform");
    {
        char sb[32];
        snprintf(sb, sizeof sb, "%llu", (unsigned long long)o->seed);
        cJSON_AddStringToObject(r.root, "seed", sb);
    }
    if (d->labels) {
        long ok = 0;
        for (int i = 0; i < n; i++) ok += r.pred[i] == d->labels[i];
        cJSON_AddNumberToObject(r.root, "accuracy", (double)ok / n);
    }
    r.figs = cJSON_AddArrayToObject(r.root, "figures");

    if ((rc = do_prototypes(&r, e)) || (rc = do_ood(&r, e)) || (rc = do_counterfactual(&r, e)) ||
        (rc = do_contributions(&r, e)))
        goto done;
    {
        char path[4200];
        snprintf(path, sizeof path, "%s/explain.json", outdir);
        char *txt = cJSON_Print(r.root);
        if (!txt) {
            rc = rf_err_set(e, RF_ENOMEM, "explain: out of memory printing the JSON");
            goto done;
        }
        const size_t len = strlen(txt);
        char *buf = malloc(len + 2);
        if (buf) {
            memcpy(buf, txt, len);
            buf[len] = '\n';
            rc = rf_write_file_atomic(path, buf, len + 1, e);
        } else {
            rc = rf_err_set(e, RF_ENOMEM, "explain: out of memory");
        }
        free(buf);
        free(txt);
        if (rc) goto done;
    }
    if (summary) {
        *summary = r.root;
        r.root = NULL;
    }
done:
    cJSON_Delete(r.root);
    if (r.cnames)
        for (int c = 0; c < C; c++) free(r.cnames[c]);
    free(r.cnames);
    free(r.logp);
    free(r.post);
    free(r.pred);
    free(r.order);
    rf_free(r.proto);
    rf_free(r.xs);
    free(r.ys);
    return rc;
}
