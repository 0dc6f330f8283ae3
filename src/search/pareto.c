/* Non-dominated sorting (NSGA-II, Deb et al. 2002), crowding distance, the Pareto front and the
 * 2-D hypervolume. The sort counts, for every row, the rows that dominate it, then peels the
 * fronts: each member of a front scans all unranked rows once and decrements the count of those
 * it dominates. That is Deb's O(m n^2) algorithm without the O(n^2) lists of dominated rows. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "renflow/pareto.h"

static int row_finite(const double *r, int m) {
    for (int k = 0; k < m; k++)
        if (!isfinite(r[k])) return 0;
    return 1;
}

int rf_pareto_dominates(const double *a, const double *b, int m, const rf_pareto_dir *dirs) {
    int better = 0;
    for (int k = 0; k < m; k++) {
        double u = a[k], v = b[k];
        if (dirs && dirs[k] == RF_PARETO_MAXIMIZE) {
            u = -u;
            v = -v;
        }
        if (u > v) return 0;
        if (u < v) better = 1;
    }
    return better;
}

static int check_args(const char *what, const double *F, int n, int m, const rf_pareto_dir *dirs,
                      rf_err *e) {
    if (n < 0) return rf_err_set(e, RF_EARG, "%s: n = %d rows", what, n);
    if (m < 1) return rf_err_set(e, RF_EARG, "%s: need at least 1 objective, got %d", what, m);
    if (n > 0 && !F) return rf_err_set(e, RF_EARG, "%s: F is NULL", what);
    for (int k = 0; dirs && k < m; k++)
        if (dirs[k] != RF_PARETO_MINIMIZE && dirs[k] != RF_PARETO_MAXIMIZE)
            return rf_err_set(e, RF_EARG, "%s: objective %d: unknown direction %d", what, k,
                              (int)dirs[k]);
    return RF_OK;
}

int rf_nondominated_sort(const double *F, int n, int m, const rf_pareto_dir *dirs, int *rank,
                         int *n_fronts, rf_err *e) {
    int rc = check_args("non-dominated sort", F, n, m, dirs, e);
    if (rc != RF_OK) return rc;
    if (n > 0 && !rank) return rf_err_set(e, RF_EARG, "non-dominated sort: rank is NULL");
    if (n_fronts) *n_fronts = 0;
    if (n <= 0) return RF_OK;
    int *count = calloc((size_t)n, sizeof *count);
    int *cur = malloc((size_t)n * sizeof *cur), *next = malloc((size_t)n * sizeof *next);
    if (!count || !cur || !next) {
        free(count);
        free(cur);
        free(next);
        return rf_err_set(e, RF_ENOMEM, "non-dominated sort: out of memory (%d rows)", n);
    }
    for (int i = 0; i < n; i++) rank[i] = row_finite(F + (size_t)i * m, m) ? -2 : -1;
    for (int i = 0; i < n; i++) {
        if (rank[i] == -1) continue;
        const double *a = F + (size_t)i * m;
        for (int j = i + 1; j < n; j++) {
            if (rank[j] == -1) continue;
            const double *b = F + (size_t)j * m;
            if (rf_pareto_dominates(a, b, m, dirs))
                count[j]++;
            else if (rf_pareto_dominates(b, a, m, dirs))
                count[i]++;
        }
    }
    int nc = 0;
    for (int i = 0; i < n; i++)
        if (rank[i] == -2 && count[i] == 0) {
            rank[i] = 0;
            cur[nc++] = i;
        }
    int front = 0;
    while (nc > 0) {
        int nn = 0;
        for (int c = 0; c < nc; c++) {
            const double *a = F + (size_t)cur[c] * m;
            for (int j = 0; j < n; j++) {
                if (rank[j] != -2) continue;
                if (rf_pareto_dominates(a, F + (size_t)j * m, m, dirs) && --count[j] == 0) {
                    rank[j] = front + 1;
                    next[nn++] = j;
                }
            }
        }
        front++;
        int *t = cur;
        cur = next;
        next = t;
        nc = nn;
    }
    if (n_fronts) *n_fronts = front;
    free(count);
    free(cur);
    free(next);
    return RF_OK;
}

typedef struct keyed {
    double v;
    int i;
} keyed;

static int cmp_keyed(const void *a, const void *b) {
    const keyed *p = a, *q = b;
    if (p->v != q->v) return (p->v > q->v) - (p->v < q->v);
    return (p->i > q->i) - (p->i < q->i);
}

int rf_crowding_distance(const double *F, int n, int m, const int *rank, double *dist,
                         rf_err *e) {
    int rc = check_args("crowding distance", F, n, m, NULL, e);
    if (rc != RF_OK) return rc;
    if (n > 0 && (!rank || !dist))
        return rf_err_set(e, RF_EARG, "crowding distance: rank or dist is NULL");
    if (n <= 0) return RF_OK;
    int nf = 0;
    for (int i = 0; i < n; i++) {
        if (rank[i] >= n)
            return rf_err_set(e, RF_EARG, "crowding distance: rank[%d] = %d out of range", i,
                              rank[i]);
        if (rank[i] + 1 > nf) nf = rank[i] + 1;
        dist[i] = rank[i] < 0 ? NAN : 0;
    }
    /* rows grouped by front (counting sort) */
    int *start = calloc((size_t)nf + 1, sizeof *start), *rows = malloc((size_t)n * sizeof *rows);
    keyed *k = malloc((size_t)n * sizeof *k);
    if (!start || !rows || !k) {
        free(start);
        free(rows);
        free(k);
        return rf_err_set(e, RF_ENOMEM, "crowding distance: out of memory");
    }
    for (int i = 0; i < n; i++)
        if (rank[i] >= 0) start[rank[i] + 1]++;
    for (int r = 0; r < nf; r++) start[r + 1] += start[r];
    int *fill = calloc((size_t)nf + 1, sizeof *fill);
    if (!fill) {
        free(start);
        free(rows);
        free(k);
        return rf_err_set(e, RF_ENOMEM, "crowding distance: out of memory");
    }
    for (int i = 0; i < n; i++)
        if (rank[i] >= 0) rows[start[rank[i]] + fill[rank[i]]++] = i;
    for (int r = 0; r < nf; r++) {
        int s = start[r], c = start[r + 1] - s;
        if (c == 0) continue;
        if (c <= 2) {
            for (int q = 0; q < c; q++) dist[rows[s + q]] = INFINITY;
            continue;
        }
        for (int o = 0; o < m; o++) {
            for (int q = 0; q < c; q++) k[q] = (keyed){F[(size_t)rows[s + q] * m + o], rows[s + q]};
            qsort(k, (size_t)c, sizeof *k, cmp_keyed);
            double lo = k[0].v, hi = k[c - 1].v;
            dist[k[0].i] = INFINITY;
            dist[k[c - 1].i] = INFINITY;
            if (!(hi > lo)) continue;
            for (int q = 1; q < c - 1; q++)
                dist[k[q].i] += (k[q + 1].v - k[q - 1].v) / (hi - lo);
        }
    }
    free(start);
    free(rows);
    free(k);
    free(fill);
    return RF_OK;
}

int rf_pareto_front(const double *F, int n, int m, const rf_pareto_dir *dirs, int *idx,
                    int *n_front, rf_err *e) {
    if (!n_front) return rf_err_set(e, RF_EARG, "pareto front: n_front is NULL");
    *n_front = 0;
    int rc = check_args("pareto front", F, n, m, dirs, e);
    if (rc != RF_OK) return rc;
    if (n > 0 && !idx) return rf_err_set(e, RF_EARG, "pareto front: idx is NULL");
    int c = 0;
    for (int i = 0; i < n; i++) {
        const double *a = F + (size_t)i * m;
        if (!row_finite(a, m)) continue;
        int dominated = 0;
        for (int j = 0; j < n && !dominated; j++) {
            const double *b = F + (size_t)j * m;
            if (j != i && row_finite(b, m) && rf_pareto_dominates(b, a, m, dirs)) dominated = 1;
        }
        if (!dominated) idx[c++] = i;
    }
    *n_front = c;
    return RF_OK;
}

static int cmp_pt(const void *a, const void *b) {
    const double *p = a, *q = b;
    if (p[0] != q[0]) return (p[0] > q[0]) - (p[0] < q[0]);
    return (p[1] > q[1]) - (p[1] < q[1]);
}

int rf_hypervolume_2d(const double *F, int n, const rf_pareto_dir dirs[2], const double ref[2],
                      double *hv, rf_err *e) {
    int rc = check_args("hypervolume", F, n, 2, dirs, e);
    if (rc != RF_OK) return rc;
    if (!ref || !hv) return rf_err_set(e, RF_EARG, "hypervolume: ref or hv is NULL");
    if (!isfinite(ref[0]) || !isfinite(ref[1]))
        return rf_err_set(e, RF_EARG, "hypervolume: reference point (%g, %g) is not finite",
                          ref[0], ref[1]);
    *hv = 0;
    double s0 = dirs && dirs[0] == RF_PARETO_MAXIMIZE ? -1 : 1;
    double s1 = dirs && dirs[1] == RF_PARETO_MAXIMIZE ? -1 : 1;
    double r0 = s0 * ref[0], r1 = s1 * ref[1];
    double *p = malloc((size_t)(n > 0 ? n : 1) * 2 * sizeof *p);
    if (!p) return rf_err_set(e, RF_ENOMEM, "hypervolume: out of memory");
    int c = 0;
    for (int i = 0; i < n; i++) {
        double a = s0 * F[2 * (size_t)i], b = s1 * F[2 * (size_t)i + 1];
        if (!isfinite(a) || !isfinite(b) || !(a < r0) || !(b < r1)) continue;
        p[2 * c] = a;
        p[2 * c + 1] = b;
        c++;
    }
    qsort(p, (size_t)c, 2 * sizeof *p, cmp_pt);
    double cur = r1, area = 0;
    for (int i = 0; i < c; i++) {
        if (p[2 * i + 1] < cur) {
            area += (r0 - p[2 * i]) * (cur - p[2 * i + 1]);
            cur = p[2 * i + 1];
        }
    }
    free(p);
    *hv = area;
    return RF_OK;
}
