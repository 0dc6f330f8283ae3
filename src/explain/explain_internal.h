/* Private to src/explain: a batched scorer (targets log p(x | c) and log p(x) for many rows) and
 * the figures of `renflow explain`. */
#ifndef RF_EXPLAIN_INTERNAL_H
#define RF_EXPLAIN_INTERNAL_H

#include "renflow/explain.h"

/* Scores rows in batches of up to `cap` with one inference workspace. */
typedef struct ex_scorer {
    const rf_flow *f;
    rf_flow_ws *w;
    int cap, C, D;
    float *z, *ld, *lpc;  /* cap x D, cap, cap x C */
    double *prior;        /* C log prior values (uniform when none given) */
} ex_scorer;
int ex_scorer_init(ex_scorer *s, const rf_flow *f, int cap, const float *log_prior, rf_err *e);
void ex_scorer_free(ex_scorer *s);
/* v[i * (C + 1) + k]: k < C log p(x_i | k), k = C log p(x_i); any n (batched internally). */
void ex_scorer_targets(ex_scorer *s, int n, const float *x, double *v);
/* log-sum-exp of a[0..n) */
double ex_logsumexp(const double *a, int n);

/* ---------------- figures ---------------- */
/* Everything the figures draw, gathered by rf_explain_run. Pointers may be NULL where noted. */
typedef struct ex_names {
    int C;
    const char *const *cls; /* C class names */
    int n_draw;             /* channels drawn (windows) */
    const int *draw;        /* their indices */
    char (*chan)[32];       /* names of the drawn channels */
    const char *units;      /* data units */
} ex_names;

/* features: per class, data mean +- sd (dm may be NULL), sample mean +- sd, prototype. */
int ex_plot_profiles(const char *path, const ex_names *nm, int D, const float *proto,
                     const rf_class_moments *dm, const rf_class_moments *sm, rf_err *e);
/* windows: rows = drawn channels, columns = classes: prototype and one sample (sample may be
 * NULL: C x D, one per class). */
int ex_plot_waveforms(const char *path, const ex_names *nm, int channels, int T, double fs,
                      const float *proto, const float *sample, rf_err *e);
/* windows: rows = drawn channels; columns data / samples / prototypes PSD (data may be NULL),
 * then band powers (data bars, sample markers). */
int ex_plot_spectra(const char *path, const ex_names *nm, const rf_explain_bands *bands,
                    const rf_class_spectra *data, const rf_class_spectra *samp,
                    const rf_class_spectra *proto, rf_err *e);

typedef struct ex_ood_plot {
    int n;
    const float *logp;       /* n */
    int k;
    const int *idx;          /* k least likely rows */
    const float *x;          /* the data, n x D */
    const int *labels, *subjects; /* may be NULL */
    const int *pred;         /* n predicted classes */
    int channels, T;         /* windows (channels 0: features) */
    double fs;
    const rf_class_moments *all; /* features: moments of all rows (C = 1), data units */
    const float *shift, *scale;  /* features: drawn as (x - shift) / scale (the model's) */
    const struct cJSON *subject_names; /* a manifest with "subjects" names, may be NULL */
    double dim;              /* D, for bits/dim */
} ex_ood_plot;
int ex_plot_ood(const char *path, const ex_names *nm, const ex_ood_plot *p, rf_err *e);

/* features (channels 0) are drawn as (x - shift) / scale when shift / scale are given */
int ex_plot_counterfactual(const char *path, const ex_names *nm, const rf_counterfactual *cf,
                           int window, int channels, int T, double fs, const rf_explain_bands *b,
                           const float *shift, const float *scale, rf_err *e);

typedef struct ex_contrib_plot {
    /* per scale: C classes x (S + 1) mean parts in bits/dim of the scale (last: class term,
     * nats / D / ln 2); count per class */
    int S;
    const int *dims;
    const double *scale_bpd; /* C x (S + 1) */
    const long *scale_n;     /* C */
    /* bands (windows) or features: C x F mean attributions to log p(x) and to log p(c | x) of
     * the class's own rows, their standard errors, and counts */
    int F;
    const char *const *fnames; /* F names (bands), NULL for features */
    const double *att_lp, *att_lp_se, *att_post, *att_post_se;
    const long *att_n;
    int features; /* 1: feature attributions (lines over the feature index) */
} ex_contrib_plot;
int ex_plot_contributions(const char *path, const ex_names *nm, const ex_contrib_plot *p,
                          rf_err *e);

/* Pearson correlation over the pairs where both values are finite (NAN below 2 pairs). */
double rf_explain_pearson(const double *a, const double *b, int n);

#endif
