/* renflow pareto: multi-objective ranking of trials. Fast non-dominated sorting and crowding
 * distance (Deb, Pratap, Agarwal and Meyarivan 2002, NSGA-II), the Pareto front, the 2-D
 * hypervolume and a Pareto-front figure.
 *
 * F is n x m (row-major): m objective values for each of n trials; dirs (m entries) says whether
 * each objective is minimised or maximised (NULL: all minimised). Trial a dominates trial b when
 * a is at least as good in every objective and strictly better in one; equal rows do not
 * dominate each other (they share a front). A row with any non-finite value (a failed trial) is
 * not ranked: rank -1, crowding distance NaN, never on the front, ignored by the hypervolume. */
#ifndef RENFLOW_PARETO_H
#define RENFLOW_PARETO_H

#include "renflow/core.h"

typedef enum { RF_PARETO_MINIMIZE = 0, RF_PARETO_MAXIMIZE = 1 } rf_pareto_dir;

/* 1 when row a dominates row b (both m values, finite). */
int rf_pareto_dominates(const double *a, const double *b, int m, const rf_pareto_dir *dirs);

/* rank[i] = index of the front of row i (0 = non-dominated; -1 = not ranked). n_fronts (may be
 * NULL) receives the number of fronts. O(m n^2) time, O(n) memory. n >= 0, m >= 1. */
int rf_nondominated_sort(const double *F, int n, int m, const rf_pareto_dir *dirs, int *rank,
                         int *n_fronts, rf_err *e);

/* NSGA-II crowding distance within each front of rank (from rf_nondominated_sort): for every
 * objective, the rows of a front are ordered by value; the two extremes get +inf, the others add
 * (next - previous) / (max - min of the front); an objective constant over the front adds 0.
 * Fronts of one or two rows get +inf. dist[i] = NaN where rank[i] < 0. */
int rf_crowding_distance(const double *F, int n, int m, const int *rank, double *dist,
                         rf_err *e);

/* The non-dominated rows: idx receives their indices in increasing order (room for n), n_front
 * their number. */
int rf_pareto_front(const double *F, int n, int m, const rf_pareto_dir *dirs, int *idx,
                    int *n_front, rf_err *e);

/* Hypervolume of 2-objective points (F is n x 2) against the reference point ref: the area of the
 * region dominated by at least one point and bounded by ref, which must be worse than the points
 * that count (a point not strictly better than ref in both objectives adds nothing). */
int rf_hypervolume_2d(const double *F, int n, const rf_pareto_dir dirs[2], const double ref[2],
                      double *hv, rf_err *e);

/* Figure (SVG/PNG/PDF by extension, atomic): every trial of a 2-objective F (n x 2) as a point,
 * the Pareto front highlighted and joined by its attainment step line, axes labelled with the
 * objective names (names may be NULL or hold NULLs: "objective 1", "objective 2") and the
 * direction ("lower is better" / "higher is better"). Rows with a non-finite value are skipped.
 * title may be NULL. */
int rf_plot_pareto(const char *path, const char *title, const double *F, int n,
                   const rf_pareto_dir dirs[2], const char *const names[2], rf_err *e);

#endif
