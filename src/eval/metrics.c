/* Classification metrics from a confusion matrix. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/metrics.h"
#include "../core/json_util.h"

void rf_class_metrics_free(rf_class_metrics *m) {
    if (!m) return;
    free(m->confusion);
    free(m->recall);
    free(m->precision);
    free(m->f1);
    memset(m, 0, sizeof *m);
}

int rf_class_metrics_compute(const int *truth, const int *pred, int n, int C, rf_class_metrics *m,
                             rf_err *e) {
    memset(m, 0, sizeof *m);
    if (C < 1 || n < 1) return rf_err_set(e, RF_EARG, "metrics need n >= 1 and classes >= 1 (n=%d, classes=%d)", n, C);
    for (int i = 0; i < n; i++) {
        if (truth[i] < 0 || truth[i] >= C)
            return rf_err_set(e, RF_EARG, "true label %d at row %d is outside [0, %d)", truth[i], i, C);
        if (pred[i] < 0 || pred[i] >= C)
            return rf_err_set(e, RF_EARG, "predicted label %d at row %d is outside [0, %d)", pred[i], i, C);
    }
    m->n_classes = C;
    m->n = n;
    m->confusion = calloc((size_t)C * C, sizeof *m->confusion);
    m->recall = malloc((size_t)C * sizeof(double));
    m->precision = malloc((size_t)C * sizeof(double));
    m->f1 = malloc((size_t)C * sizeof(double));
    if (!m->confusion || !m->recall || !m->precision || !m->f1) {
        rf_class_metrics_free(m);
        return rf_err_set(e, RF_ENOMEM, "out of memory for a %d-class confusion matrix", C);
    }
    for (int i = 0; i < n; i++) m->confusion[(size_t)truth[i] * C + pred[i]]++;
    long diag = 0;
    double pe = 0, bal = 0, f1sum = 0;
    int n_bal = 0, n_f1 = 0;
    for (int c = 0; c < C; c++) {
        long row = 0, col = 0, tp = m->confusion[(size_t)c * C + c];
        for (int k = 0; k < C; k++) {
            row += m->confusion[(size_t)c * C + k];
            col += m->confusion[(size_t)k * C + c];
        }
        diag += tp;
        pe += (double)row * (double)col;
        m->recall[c] = row ? (double)tp / row : NAN;
        m->precision[c] = col ? (double)tp / col : NAN;
        if (row) {
            bal += m->recall[c];
            n_bal++;
        }
        if (row || col) {
            /* F1 = 2 tp / (2 tp + fp + fn); 0 when a class is predicted or present but never hit */
            m->f1[c] = 2.0 * tp / (double)(row + col);
            f1sum += m->f1[c];
            n_f1++;
        } else {
            m->f1[c] = NAN;
        }
    }
    const double N = (double)n;
    m->accuracy = diag / N;
    m->balanced_accuracy = n_bal ? bal / n_bal : NAN;
    m->macro_f1 = n_f1 ? f1sum / n_f1 : NAN;
    pe /= N * N;
    m->kappa = pe < 1 ? (m->accuracy - pe) / (1 - pe) : (m->accuracy == 1 ? 1.0 : 0.0);
    return RF_OK;
}


cJSON *rf_class_metrics_to_json(const rf_class_metrics *m, const char *const *names) {
    cJSON *j = cJSON_CreateObject();
    const int C = m->n_classes;
    cJSON_AddNumberToObject(j, "n", (double)m->n);
    cJSON_AddItemToObject(j, "accuracy", rf_json_num_or_null(m->accuracy));
    cJSON_AddItemToObject(j, "balanced_accuracy", rf_json_num_or_null(m->balanced_accuracy));
    cJSON_AddItemToObject(j, "macro_f1", rf_json_num_or_null(m->macro_f1));
    cJSON_AddItemToObject(j, "kappa", rf_json_num_or_null(m->kappa));
    cJSON *conf = cJSON_AddArrayToObject(j, "confusion");
    for (int c = 0; c < C; c++) {
        cJSON *row = cJSON_CreateArray();
        for (int k = 0; k < C; k++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)m->confusion[(size_t)c * C + k]));
        cJSON_AddItemToArray(conf, row);
    }
    cJSON *pc = cJSON_AddArrayToObject(j, "per_class");
    for (int c = 0; c < C; c++) {
        cJSON *o = cJSON_CreateObject();
        if (names) cJSON_AddStringToObject(o, "class", names[c]);
        else cJSON_AddNumberToObject(o, "class", c);
        cJSON_AddItemToObject(o, "recall", rf_json_num_or_null(m->recall[c]));
        cJSON_AddItemToObject(o, "precision", rf_json_num_or_null(m->precision[c]));
        cJSON_AddItemToObject(o, "f1", rf_json_num_or_null(m->f1[c]));
        cJSON_AddItemToArray(pc, o);
    }
    return j;
}

void rf_argmax_rows(const float *s, const float *add, int n, int C, int *pred) {
    for (int i = 0; i < n; i++) {
        const float *r = s + (size_t)i * C;
        int best = 0;
        float bv = r[0] + (add ? add[0] : 0);
        for (int c = 1; c < C; c++) {
            const float v = r[c] + (add ? add[c] : 0);
            if (v > bv || (isnan(bv) && !isnan(v))) {
                bv = v;
                best = c;
            }
        }
        pred[i] = best;
    }
}

int rf_flow_predict(const rf_flow *f, const rf_matrix *x, const float *log_prior, int *pred,
                    float *post, rf_err *e) {
    if (f->base.kind != RF_BASE_CLASS)
        return rf_err_set(e, RF_EARG, "prediction needs a class-conditional model (this one has base \"%s\")",
                          rf_base_kind_name(f->base.kind));
    if (x->d != f->D) return rf_err_set(e, RF_EARG, "data has %d columns but the model has dimension %d", x->d, f->D);
    const int C = f->base.n_classes, B = 512;
    rf_flow_ws *w = rf_flow_ws_create(f, B, 1, e);
    float *buf = rf_floats((size_t)B * C, e);
    if (!w || !buf) {
        rf_flow_ws_free(w);
        rf_free(buf);
        return e ? e->code : RF_ENOMEM;
    }
    for (int i0 = 0; i0 < x->n; i0 += B) {
        const int nb = x->n - i0 < B ? x->n - i0 : B;
        rf_flow_class_log_posterior(f, w, nb, x->x + (size_t)i0 * x->d, log_prior, buf);
        rf_argmax_rows(buf, NULL, nb, C, pred + i0);
        if (post) memcpy(post + (size_t)i0 * C, buf, sizeof(float) * (size_t)nb * C);
    }
    rf_flow_ws_free(w);
    rf_free(buf);
    return RF_OK;
}

float *rf_flow_train_log_prior(const rf_flow *f, rf_err *e) {
    const int C = f->base.n_classes;
    const cJSON *cc = f->meta ? cJSON_GetObjectItemCaseSensitive(f->meta, "class_counts") : NULL;
    if (f->base.kind != RF_BASE_CLASS || !cJSON_IsArray(cc) || cJSON_GetArraySize(cc) != C) {
        rf_err_set(e, RF_EARG, "the model does not record the class counts of its training data (field \"class_counts\")");
        return NULL;
    }
    float *lp = malloc(sizeof(float) * (size_t)C);
    if (!lp) {
        rf_err_set(e, RF_ENOMEM, "out of memory");
        return NULL;
    }
    double tot = 0;
    for (int c = 0; c < C; c++) {
        const cJSON *v = cJSON_GetArrayItem(cc, c);
        const double k = cJSON_IsNumber(v) && v->valuedouble >= 0 ? v->valuedouble : 0;
        lp[c] = (float)(k + 1);
        tot += k + 1;
    }
    for (int c = 0; c < C; c++) lp[c] = (float)log(lp[c] / tot);
    return lp;
}

void rf_class_metrics_print(FILE *fp, const rf_class_metrics *m, const char *const *names) {
    const int C = m->n_classes;
    fprintf(fp, "accuracy %.4f  balanced accuracy %.4f  macro-F1 %.4f  kappa %.4f  (n=%ld)\n", m->accuracy,
            m->balanced_accuracy, m->macro_f1, m->kappa, m->n);
    fprintf(fp, "confusion (rows = true, columns = predicted):\n%8s", "");
    for (int k = 0; k < C; k++) {
        char b[16];
        snprintf(b, sizeof b, "%d", k);
        fprintf(fp, " %7.7s", names ? names[k] : b);
    }
    fprintf(fp, " %7s\n", "recall");
    for (int c = 0; c < C; c++) {
        char b[16];
        snprintf(b, sizeof b, "%d", c);
        fprintf(fp, "%8.8s", names ? names[c] : b);
        for (int k = 0; k < C; k++) fprintf(fp, " %7ld", m->confusion[(size_t)c * C + k]);
        fprintf(fp, " %7.3f\n", m->recall[c]);
    }
}
