/* Benchmark functions for the samplers, with their domains as search spaces:
 * Branin (2-D, global minimum 0.397887 at three points) and Hartmann-6 (minimum -3.32237). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "search_internal.h"

double rf_branin(const double *x) {
    const double a = 1.0, b = 5.1 / (4.0 * M_PI * M_PI), c = 5.0 / M_PI, r = 6.0, s = 10.0, t = 1.0 / (8.0 * M_PI);
    double u = x[1] - b * x[0] * x[0] + c * x[0] - r;
    return a * u * u + s * (1.0 - t) * cos(x[0]) + s;
}

double rf_hartmann6(const double *x) {
    static const double alpha[4] = {1.0, 1.2, 3.0, 3.2};
    static const double A[4][6] = {{10, 3, 17, 3.5, 1.7, 8},
                                   {0.05, 10, 17, 0.1, 8, 14},
                                   {3, 3.5, 1.7, 10, 17, 8},
                                   {17, 8, 0.05, 10, 0.1, 14}};
    static const double P[4][6] = {{1312, 1696, 5569, 124, 8283, 5886},
                                   {2329, 4135, 8307, 3736, 1004, 9991},
                                   {2348, 1451, 3522, 2883, 3047, 6650},
                                   {4047, 8828, 8732, 5743, 1091, 381}};
    double f = 0;
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int j = 0; j < 6; j++) {
            double d = x[j] - 1e-4 * P[i][j];
            s += A[i][j] * d * d;
        }
        f -= alpha[i] * exp(-s);
    }
    return f;
}

static const double BRANIN_ARGMIN[2] = {M_PI, 2.275};
static const double HARTMANN6_ARGMIN[6] = {0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573};

static const rf_testfunc FUNCS[] = {
    {"branin", 2, 0.397887357729739, BRANIN_ARGMIN,
     "{\"name\": \"branin\", \"parameters\": ["
     "{\"name\": \"x1\", \"type\": \"float\", \"low\": -5, \"high\": 10},"
     "{\"name\": \"x2\", \"type\": \"float\", \"low\": 0, \"high\": 15}]}",
     rf_branin},
    {"hartmann6", 6, -3.32236801141551, HARTMANN6_ARGMIN,
     "{\"name\": \"hartmann6\", \"parameters\": ["
     "{\"name\": \"x1\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
     "{\"name\": \"x2\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
     "{\"name\": \"x3\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
     "{\"name\": \"x4\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
     "{\"name\": \"x5\", \"type\": \"float\", \"low\": 0, \"high\": 1},"
     "{\"name\": \"x6\", \"type\": \"float\", \"low\": 0, \"high\": 1}]}",
     rf_hartmann6},
};

const rf_testfunc *rf_testfunc_find(const char *name) {
    for (size_t i = 0; name && i < sizeof FUNCS / sizeof *FUNCS; i++)
        if (strcmp(FUNCS[i].name, name) == 0) return &FUNCS[i];
    return NULL;
}

rf_space *rf_testfunc_space(const rf_testfunc *tf, rf_err *e) {
    char what[96];
    snprintf(what, sizeof what, "space of %s", tf->name);
    return rf_space_parse(tf->space_json, what, e);
}

int rf_testfunc_eval(const rf_testfunc *tf, const rf_space *sp, const rf_config *c, double *out, rf_err *e) {
    double x[16];
    if (tf->dim > 16) return rf_err_set(e, RF_EARG, "%s: dimension %d too large", tf->name, tf->dim);
    for (int j = 0; j < tf->dim; j++) {
        char nm[16];
        snprintf(nm, sizeof nm, "x%d", j + 1);
        int rc = rf_config_get_number(sp, c, nm, &x[j], e);
        if (rc) return rf_err_prefix(e, rc, "%s", tf->name);
    }
    *out = tf->f(x);
    return RF_OK;
}
