/* The model file: round trip, and rejection of truncated, corrupted, foreign and newer files. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rf_flow *small_flow(rf_flow_type t) {
    rf_flow_spec s;
    rf_flow_spec_default(&s, t, 3);
    s.blocks = 2;
    s.hidden = 6;
    rf_rng r;
    rf_rng_seed(&r, 4);
    rf_flow *f = rf_flow_create(&s, &r, NULL);
    for (size_t i = 0; i < f->n_params; i++) f->params[i] += 0.1f * (float)rf_rng_normal(&r);
    for (int k = 0; k < f->n_layers; k++)
        if (f->layers[k]->ops->project) f->layers[k]->ops->project(f->layers[k], f->params + f->layers[k]->offset);
    f->shift[1] = 2.0f;
    f->scale[2] = 3.0f;
    return f;
}

static void test_roundtrip_all_types(void **s) {
    (void)s;
    char path[256];
    rf_test_tmp(path, sizeof path, "model.rf");
    float x[30], lp1[10], lp2[10];
    rf_rng r;
    rf_rng_seed(&r, 1);
    for (int i = 0; i < 30; i++) x[i] = (float)rf_rng_normal(&r);
    for (int t = 0; t <= RF_FLOW_NSF_AR; t++) {
        rf_flow *f = small_flow((rf_flow_type)t);
        rf_err e;
        assert_int_equal(rf_flow_save(f, path, &e), RF_OK);
        rf_flow *g = rf_flow_load(path, &e);
        if (!g) fail_msg("load: %s", e.msg);
        rf_flow_ws *w1 = rf_flow_ws_create(f, 16, 0, NULL), *w2 = rf_flow_ws_create(g, 16, 0, NULL);
        rf_flow_log_prob(f, w1, 10, x, NULL, lp1);
        rf_flow_log_prob(g, w2, 10, x, NULL, lp2);
        assert_memory_equal(lp1, lp2, sizeof lp1);
        assert_int_equal(g->n_params, f->n_params);
        rf_flow_ws_free(w1);
        rf_flow_ws_free(w2);
        rf_flow_free(f);
        rf_flow_free(g);
    }
    remove(path);
}

static void test_rejects_damage(void **s) {
    (void)s;
    rf_flow *f = small_flow(RF_FLOW_NSF);
    unsigned char *buf;
    size_t len;
    assert_int_equal(rf_flow_to_bytes(f, &buf, &len, NULL), RF_OK);
    rf_err e;
    /* every truncated prefix */
    for (size_t k = 0; k < len; k++) {
        unsigned char *cut = malloc(k ? k : 1);
        memcpy(cut, buf, k);
        rf_flow *g = rf_flow_load_mem(cut, k, "cut.rf", &e);
        if (g) fail_msg("accepted a %zu-byte prefix of %zu", k, len);
        assert_int_equal(e.code, RF_EFORMAT);
        free(cut);
    }
    rf_flow_load_mem(buf, len / 2, "cut.rf", &e);
    printf("truncated: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "truncated"));
    /* random single-byte flips anywhere */
    rf_rng r;
    rf_rng_seed(&r, 9);
    unsigned char *bad = malloc(len);
    int rejected = 0;
    for (int trial = 0; trial < 3000; trial++) {
        memcpy(bad, buf, len);
        size_t at = rf_rng_below(&r, len);
        bad[at] ^= (unsigned char)(1 + rf_rng_below(&r, 255));
        rf_flow *g = rf_flow_load_mem(bad, len, "flip.rf", &e);
        if (g) fail_msg("accepted a flipped byte at %zu", at);
        rejected++;
    }
    printf("byte flips: %d/3000 rejected; e.g. %s\n", rejected, e.msg);
    /* newer format version */
    memcpy(bad, buf, len);
    bad[8] = (unsigned char)(RF_MODEL_FORMAT_VERSION + 1);
    assert_null(rf_flow_load_mem(bad, len, "new.rf", &e));
    printf("newer: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "newer"));
    /* foreign file */
    const char *png = "\x89PNG\r\n\x1a\n0000000000000000000000000000000000000000000000";
    assert_null(rf_flow_load_mem((const unsigned char *)png, strlen(png), "pic.png", &e));
    printf("foreign: %s\n", e.msg);
    assert_non_null(strstr(e.msg, "not a renflow model"));
    /* missing file */
    assert_null(rf_flow_load("/nonexistent/model.rf", &e));
    assert_int_equal(e.code, RF_EIO);
    free(bad);
    free(buf);
    rf_flow_free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip_all_types), cmocka_unit_test(test_rejects_damage)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
