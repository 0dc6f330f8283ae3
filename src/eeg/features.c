/* Input transforms of a data set: band-power features of windows, temporal context. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/dsp.h"
#include "renflow/features.h"

int rf_dataset_bandpower(rf_dataset *d, double rate, double seg_s, rf_err *e) {
    if (d->channels <= 0 || d->length < 2)
        return rf_err_set(e, RF_EARG, "band-power features need windows (channels x samples); these rows are plain feature vectors");
    if (!(rate > 0) || !isfinite(rate))
        return rf_err_set(e, RF_EARG, "band-power features need the sampling rate of the windows (got %g Hz)", rate);
    const int C = d->channels, T = d->length, F = C * RF_BAND_COUNT;
    int64_t seg = (int64_t)llround((seg_s > 0 ? seg_s : 2.0) * rate);
    if (seg > T) seg = T;
    if (seg < 2) return rf_err_set(e, RF_EARG, "Welch segment of %g s at %g Hz is shorter than 2 samples", seg_s, rate);
    rf_matrix out = {0};
    int rc = rf_matrix_alloc(&out, d->x.n, F, e);
    if (rc) return rc;
    int bad = 0;
    rf_err first = {0};
#pragma omp parallel
    {
        double *w = malloc(sizeof(double) * (size_t)C * T), *f = malloc(sizeof(double) * F);
        rf_err le = {0};
#pragma omp for schedule(static)
        for (int i = 0; i < d->x.n; i++) {
            if (!w || !f) {
                bad = 1;
                continue;
            }
            const float *src = d->x.x + (size_t)i * C * T;
            for (size_t k = 0; k < (size_t)C * T; k++) w[k] = src[k];
            if (rf_bandpower_features(w, C, T, rate, seg, 1, f, &le)) {
#pragma omp critical(rf_features_err)
                if (!bad) {
                    bad = 1;
                    first = le;
                    rf_err_prefix(&first, le.code, "window %d", i);
                }
                continue;
            }
            for (int k = 0; k < F; k++) out.x[(size_t)i * F + k] = (float)f[k];
        }
        free(w);
        free(f);
    }
    if (bad) {
        rf_matrix_free(&out);
        if (first.code) {
            if (e) *e = first;
            return first.code;
        }
        return rf_err_set(e, RF_ENOMEM, "out of memory for band-power features");
    }
    rf_matrix_free(&d->x);
    d->x = out;
    d->channels = 0;
    d->length = F;
    return RF_OK;
}

int rf_dataset_context(rf_dataset *d, int K, rf_err *e) {
    if (K < 0 || K > 64) return rf_err_set(e, RF_EARG, "context %d must be between 0 and 64", K);
    if (K == 0) return RF_OK;
    if (!d->recordings)
        return rf_err_set(e, RF_EARG, "temporal context needs recording ids (recordings.npy or --recordings)");
    const int n = d->x.n, D = d->x.d, W = 2 * K + 1;
    rf_matrix out = {0};
    int rc = rf_matrix_alloc(&out, n, D * W, e);
    if (rc) return rc;
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && d->recordings[j] == d->recordings[i]) j++;
        for (int t = i; t < j; t++)
            for (int k = -K; k <= K; k++) {
                int s = t + k;
                if (s < i) s = i;
                if (s >= j) s = j - 1;
                memcpy(out.x + (size_t)t * D * W + (size_t)(k + K) * D, d->x.x + (size_t)s * D, sizeof(float) * D);
            }
        i = j;
    }
    rf_matrix_free(&d->x);
    d->x = out;
    d->channels = 0;
    d->length = D * W;
    return RF_OK;
}

int rf_input_apply(rf_dataset *d, rf_input_tf *t, rf_err *e) {
    int rc = RF_OK;
    if (t->std_subject && (rc = rf_dataset_standardise_subjects(d, e))) return rc;
    if (t->bandpower) {
        const cJSON *r = d->manifest ? cJSON_GetObjectItemCaseSensitive(d->manifest, "rate_hz") : NULL;
        if (!(t->rate > 0) && cJSON_IsNumber(r)) t->rate = r->valuedouble;
        if (!(t->seg_s > 0)) t->seg_s = d->length > 0 && t->rate > 0 && d->length / t->rate < 2.0 ? d->length / t->rate : 2.0;
        if ((rc = rf_dataset_bandpower(d, t->rate, t->seg_s, e))) return rc;
    }
    if (t->std_subject_features && (rc = rf_dataset_standardise_subject_columns(d, e))) return rc;
    return rf_dataset_context(d, t->context, e);
}

cJSON *rf_input_to_json(const rf_input_tf *t) {
    if (!t->bandpower && t->context == 0 && !t->std_subject && !t->std_subject_features) return NULL;
    cJSON *j = cJSON_CreateObject();
    if (t->std_subject) cJSON_AddStringToObject(j, "standardise", "subject");
    if (t->std_subject_features) cJSON_AddStringToObject(j, "standardise_features", "subject");
    cJSON_AddStringToObject(j, "features", t->bandpower ? "bandpower" : "raw");
    if (t->bandpower) {
        cJSON_AddNumberToObject(j, "rate_hz", t->rate);
        cJSON_AddNumberToObject(j, "welch_segment_s", t->seg_s);
    }
    cJSON_AddNumberToObject(j, "context", t->context);
    return j;
}

int rf_input_apply_meta(rf_dataset *d, const cJSON *meta, rf_err *e) {
    const cJSON *in = meta ? cJSON_GetObjectItemCaseSensitive(meta, "input") : NULL;
    if (!in) return RF_OK;
    rf_input_tf t = {0};
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(in, "features"), *r = cJSON_GetObjectItemCaseSensitive(in, "rate_hz"),
                *s = cJSON_GetObjectItemCaseSensitive(in, "welch_segment_s"), *k = cJSON_GetObjectItemCaseSensitive(in, "context");
    if (!cJSON_IsString(f) || (strcmp(f->valuestring, "raw") && strcmp(f->valuestring, "bandpower")))
        return rf_err_set(e, RF_EFORMAT, "model meta field \"input.features\" must be \"raw\" or \"bandpower\"");
    t.bandpower = !strcmp(f->valuestring, "bandpower");
    if (t.bandpower && (!cJSON_IsNumber(r) || !cJSON_IsNumber(s)))
        return rf_err_set(e, RF_EFORMAT, "model meta fields \"input.rate_hz\" and \"input.welch_segment_s\" must be numbers");
    if (!cJSON_IsNumber(k) || k->valuedouble < 0 || k->valuedouble > 64)
        return rf_err_set(e, RF_EFORMAT, "model meta field \"input.context\" must be a number in [0, 64]");
    if (t.bandpower) {
        t.rate = r->valuedouble;
        t.seg_s = s->valuedouble;
    }
    t.context = (int)k->valuedouble;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(in, "standardise");
    if (st && (!cJSON_IsString(st) || (strcmp(st->valuestring, "subject") && strcmp(st->valuestring, "none"))))
        return rf_err_set(e, RF_EFORMAT, "model meta field \"input.standardise\" must be \"subject\" or \"none\"");
    t.std_subject = st && !strcmp(st->valuestring, "subject");
    const cJSON *sf = cJSON_GetObjectItemCaseSensitive(in, "standardise_features");
    if (sf && (!cJSON_IsString(sf) || (strcmp(sf->valuestring, "subject") && strcmp(sf->valuestring, "none"))))
        return rf_err_set(e, RF_EFORMAT, "model meta field \"input.standardise_features\" must be \"subject\" or \"none\"");
    t.std_subject_features = sf && !strcmp(sf->valuestring, "subject");
    return rf_input_apply(d, &t, e);
}

int rf_dataset_standardise_subjects(rf_dataset *d, rf_err *e) {
    if (d->channels <= 0 || d->length < 1)
        return rf_err_set(e, RF_EARG, "standardisation by subject needs windows (channels x samples)");
    if (!d->subjects) return rf_err_set(e, RF_EARG, "standardisation by subject needs subject ids");
    const int C = d->channels, T = d->length;
    int *ids = NULL, n_ids = 0, rc = rf_subjects_unique(d->subjects, d->x.n, &ids, &n_ids, e);
    if (rc) return rc;
    for (int s = 0; s < n_ids && !rc; s++) {
        int m = 0;
        for (int i = 0; i < d->x.n; i++) m += d->subjects[i] == ids[s];
        /* channel-major copy of the subject's windows: C x (m * T) */
        double *buf = malloc(sizeof(double) * (size_t)C * m * T);
        if (!buf) {
            rc = rf_err_set(e, RF_ENOMEM, "out of memory for subject %d", ids[s]);
            break;
        }
        for (int i = 0, k = 0; i < d->x.n; i++) {
            if (d->subjects[i] != ids[s]) continue;
            for (int c = 0; c < C; c++)
                for (int t = 0; t < T; t++)
                    buf[(size_t)c * m * T + (size_t)k * T + t] = d->x.x[(size_t)i * C * T + (size_t)c * T + t];
            k++;
        }
        rf_robust_stats rs = {0};
        if (!(rc = rf_robust_fit(buf, C, (int64_t)m * T, 1e-12, &rs, e))) {
            for (int i = 0; i < d->x.n; i++) {
                if (d->subjects[i] != ids[s]) continue;
                float *w = d->x.x + (size_t)i * C * T;
                for (int c = 0; c < C; c++)
                    for (int t = 0; t < T; t++) w[(size_t)c * T + t] = (float)((w[(size_t)c * T + t] - rs.median[c]) / rs.scale[c]);
            }
        } else {
            rf_err_prefix(e, rc, "subject %d", ids[s]);
        }
        rf_robust_stats_free(&rs);
        free(buf);
    }
    free(ids);
    return rc;
}

int rf_dataset_standardise_subject_columns(rf_dataset *d, rf_err *e) {
    if (!d->subjects) return rf_err_set(e, RF_EARG, "standardisation of features by subject needs subject ids");
    const int n = d->x.n, D = d->x.d;
    int *ids = NULL, S = 0, rc = rf_subjects_unique(d->subjects, n, &ids, &S, e);
    if (rc) return rc;
    double *m = malloc(sizeof(double) * (size_t)D), *v = malloc(sizeof(double) * (size_t)D);
    if (!m || !v) rc = rf_err_set(e, RF_ENOMEM, "out of memory");
    for (int s = 0; s < S && !rc; s++) {
        long k = 0;
        memset(m, 0, sizeof(double) * (size_t)D);
        memset(v, 0, sizeof(double) * (size_t)D);
        for (int i = 0; i < n; i++) {
            if (d->subjects[i] != ids[s]) continue;
            k++;
            for (int j = 0; j < D; j++) m[j] += d->x.x[(size_t)i * D + j];
        }
        for (int j = 0; j < D; j++) m[j] /= (double)k;
        for (int i = 0; i < n; i++) {
            if (d->subjects[i] != ids[s]) continue;
            for (int j = 0; j < D; j++) {
                const double t = d->x.x[(size_t)i * D + j] - m[j];
                v[j] += t * t;
            }
        }
        for (int j = 0; j < D; j++) v[j] = v[j] / (double)k > 1e-24 ? sqrt(v[j] / (double)k) : 1.0;
        for (int i = 0; i < n; i++) {
            if (d->subjects[i] != ids[s]) continue;
            float *r = d->x.x + (size_t)i * D;
            for (int j = 0; j < D; j++) r[j] = (float)((r[j] - m[j]) / v[j]);
        }
    }
    free(m);
    free(v);
    free(ids);
    return rc;
}
