/* Input transforms: band-power features of windows (the band of a pure tone carries its power),
 * temporal context within recordings (edges repeat, recordings never mix), the meta record that
 * eval re-applies, and clear errors for bad input. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* n windows of C channels x T samples at fs: channel c of window i is a tone of freq[c] Hz. */
static void tone_dataset(rf_dataset *d, int n, int C, int T, const double *freq, double fs) {
    memset(d, 0, sizeof *d);
    assert_int_equal(rf_matrix_alloc(&d->x, n, C * T, NULL), RF_OK);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            for (int t = 0; t < T; t++)
                d->x.x[(size_t)i * C * T + (size_t)c * T + t] = (float)((1 + i) * sin(2 * M_PI * freq[c] * t / fs + 0.3 * c));
    d->channels = C;
    d->length = T;
}

static void test_bandpower(void **state) {
    (void)state;
    const double fs = 128, freq[3] = {2.5, 10.0, 20.0}; /* delta, alpha, beta */
    const int want[3] = {RF_BAND_DELTA, RF_BAND_ALPHA, RF_BAND_BETA};
    rf_dataset d;
    tone_dataset(&d, 4, 3, 512, freq, fs);
    rf_input_tf t = {.bandpower = 1, .rate = fs};
    rf_err e = {0};
    assert_int_equal(rf_input_apply(&d, &t, &e), RF_OK);
    assert_int_equal(d.x.d, 3 * RF_BAND_COUNT);
    assert_int_equal(d.channels, 0);
    assert_true(fabs(t.seg_s - 2.0) < 1e-12); /* default Welch segment recorded */
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 3; c++) {
            const float *f = d.x.x + (size_t)i * d.x.d + (size_t)c * RF_BAND_COUNT;
            int best = 0;
            for (int b = 1; b < RF_BAND_COUNT; b++)
                if (b != RF_BAND_SIGMA && f[b] > f[best]) best = b; /* sigma overlaps alpha/beta */
            assert_int_equal(best, want[c]);
            /* amplitude (1 + i): log10 power grows by 2 log10((1 + i) / 1) */
            const float *f0 = d.x.x + (size_t)c * RF_BAND_COUNT;
            assert_true(fabs((f[want[c]] - f0[want[c]]) - 2 * log10(1.0 + i)) < 1e-3);
        }
    /* the recorded transform, re-applied from JSON, gives the same features */
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddItemToObject(meta, "input", rf_input_to_json(&t));
    rf_dataset d2;
    tone_dataset(&d2, 4, 3, 512, freq, fs);
    assert_int_equal(rf_input_apply_meta(&d2, meta, &e), RF_OK);
    assert_int_equal(d2.x.d, d.x.d);
    assert_memory_equal(d2.x.x, d.x.x, sizeof(float) * (size_t)d.x.n * d.x.d);
    /* already features: a clear error */
    assert_int_equal(rf_dataset_bandpower(&d2, fs, 2, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "windows"));
    cJSON_Delete(meta);
    rf_dataset_free(&d);
    rf_dataset_free(&d2);
    /* no rate known: error naming the rate */
    tone_dataset(&d, 2, 3, 512, freq, fs);
    rf_input_tf t0 = {.bandpower = 1};
    assert_int_equal(rf_input_apply(&d, &t0, &e), RF_EARG);
    assert_non_null(strstr(e.msg, "rate"));
    rf_dataset_free(&d);
}

static void test_context(void **state) {
    (void)state;
    /* two recordings: rows 0..2 (values 10, 11, 12) and rows 3..4 (20, 21), 1 feature each */
    rf_dataset d = {0};
    assert_int_equal(rf_matrix_alloc(&d.x, 5, 1, NULL), RF_OK);
    const float v[5] = {10, 11, 12, 20, 21};
    memcpy(d.x.x, v, sizeof v);
    rf_err e = {0};
    assert_int_equal(rf_dataset_context(&d, 1, &e), RF_EARG); /* no recording ids */
    assert_non_null(strstr(e.msg, "recording"));
    d.recordings = malloc(sizeof(int) * 5);
    const int r[5] = {0, 0, 0, 1, 1};
    memcpy(d.recordings, r, sizeof r);
    assert_int_equal(rf_dataset_context(&d, 1, &e), RF_OK);
    assert_int_equal(d.x.d, 3);
    const float want[15] = {10, 10, 11, 10, 11, 12, 11, 12, 12, 20, 20, 21, 20, 21, 21};
    assert_memory_equal(d.x.x, want, sizeof want);
    assert_int_equal(rf_dataset_context(&d, 65, &e), RF_EARG);
    /* context 0 is the identity; the meta record of the identity is NULL */
    rf_input_tf id = {0};
    assert_null(rf_input_to_json(&id));
    assert_int_equal(rf_dataset_context(&d, 0, &e), RF_OK);
    assert_int_equal(d.x.d, 3);
    /* malformed meta names the field */
    cJSON *meta = cJSON_Parse("{\"input\": {\"features\": \"wavelet\", \"context\": 1}}");
    assert_int_equal(rf_input_apply_meta(&d, meta, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "input.features"));
    cJSON_Delete(meta);
    meta = cJSON_Parse("{\"input\": {\"features\": \"raw\", \"context\": -3}}");
    assert_int_equal(rf_input_apply_meta(&d, meta, &e), RF_EFORMAT);
    assert_non_null(strstr(e.msg, "input.context"));
    cJSON_Delete(meta);
    rf_dataset_free(&d);
}

/* Standardisation by subject: a subject recorded at 10x the amplitude and an offset comes out
 * like the other (median 0, robust scale 1 per channel), and the relative level of two windows
 * of one subject is kept. */
static void test_standardise_subjects(void **state) {
    (void)state;
    const int n = 40, C = 2, T = 64;
    rf_dataset d = {0};
    assert_int_equal(rf_matrix_alloc(&d.x, n, C * T, NULL), RF_OK);
    d.channels = C;
    d.length = T;
    rf_err e = {0};
    assert_int_equal(rf_dataset_standardise_subjects(&d, &e), RF_EARG); /* no subject ids */
    assert_non_null(strstr(e.msg, "subject"));
    d.subjects = malloc(sizeof(int) * n);
    rf_rng r;
    rf_rng_seed(&r, 4);
    for (int i = 0; i < n; i++) {
        d.subjects[i] = i % 2;
        const double a = (i % 2 ? 10.0 : 1.0) * (i < 20 ? 1.0 : 2.0), off = i % 2 ? 50.0 : -3.0;
        for (int k = 0; k < C * T; k++) d.x.x[(size_t)i * C * T + k] = (float)(off + a * rf_rng_normal(&r));
    }
    /* through the recorded transform, as eval re-applies it */
    rf_input_tf t = {.std_subject = 1};
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddItemToObject(meta, "input", rf_input_to_json(&t));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(meta, "input"), "standardise")->valuestring, "subject");
    assert_int_equal(rf_input_apply_meta(&d, meta, &e), RF_OK);
    cJSON_Delete(meta);
    double rms[2][2] = {{0, 0}, {0, 0}}, mean[2] = {0, 0};
    for (int i = 0; i < n; i++)
        for (int k = 0; k < C * T; k++) {
            const double v = d.x.x[(size_t)i * C * T + k];
            rms[i % 2][i >= 20] += v * v;
            mean[i % 2] += v;
        }
    for (int s = 0; s < 2; s++) {
        const double lo = sqrt(rms[s][0] / (10 * C * T)), hi = sqrt(rms[s][1] / (10 * C * T));
        assert_true(fabs(mean[s] / (20 * C * T)) < 0.15);
        assert_true(fabs(hi / lo - 2) < 0.25); /* within-subject level difference survives */
        assert_true(lo > 0.5 && lo < 1.2);
    }
    rf_dataset_free(&d);
}
/* Feature columns standardised per subject: every subject's column has mean 0 and sd 1, a
 * constant column is only centred, and the transform is recorded and re-applied from the meta. */
static void test_standardise_subject_columns(void **state) {
    (void)state;
    const int n = 30, D = 3;
    rf_dataset d = {0};
    assert_int_equal(rf_matrix_alloc(&d.x, n, D, NULL), RF_OK);
    rf_err e = {0};
    assert_int_equal(rf_dataset_standardise_subject_columns(&d, &e), RF_EARG); /* no subject ids */
    d.subjects = malloc(sizeof(int) * n);
    rf_rng r;
    rf_rng_seed(&r, 8);
    for (int i = 0; i < n; i++) {
        d.subjects[i] = i % 3 == 0 ? 5 : 2;
        d.x.x[i * D + 0] = (float)(d.subjects[i] * 10 + (d.subjects[i] == 5 ? 4.0 : 0.5) * rf_rng_normal(&r));
        d.x.x[i * D + 1] = (float)(rf_rng_normal(&r) - 7.0);
        d.x.x[i * D + 2] = d.subjects[i] == 5 ? 3.0f : -1.0f; /* constant within each subject */
    }
    rf_input_tf t = {.std_subject_features = 1};
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddItemToObject(meta, "input", rf_input_to_json(&t));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(meta, "input"), "standardise_features")->valuestring,
                        "subject");
    assert_int_equal(rf_input_apply_meta(&d, meta, &e), RF_OK);
    cJSON_Delete(meta);
    for (int s = 0; s < 2; s++)
        for (int j = 0; j < D; j++) {
            double m = 0, v = 0;
            int k = 0;
            for (int i = 0; i < n; i++)
                if ((d.subjects[i] == 5) == (s == 1)) {
                    m += d.x.x[i * D + j];
                    v += (double)d.x.x[i * D + j] * d.x.x[i * D + j];
                    k++;
                }
            m /= k;
            v = v / k - m * m;
            assert_true(fabs(m) < 1e-5);
            if (j < 2) assert_true(fabs(v - 1) < 1e-4);
            else assert_true(v < 1e-10);
        }
    rf_dataset_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bandpower),
        cmocka_unit_test(test_context),
        cmocka_unit_test(test_standardise_subjects),
        cmocka_unit_test(test_standardise_subject_columns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
