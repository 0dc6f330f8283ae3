/* Private: the random-forest layout shared by forest.c (fitting, prediction) and fanova.c (exact
 * marginals over leaf boxes).
 *
 * Encoded inputs: a continuous value stays in [0, 1]; inactive (NaN) becomes FOREST_INACTIVE
 * (-1), so the domain of a continuous column is [-1, 1] with nothing between -1 and 0. A
 * categorical value is its index; inactive becomes the extra category n_categories, so a
 * categorical column has n_categories + 1 slots (bits of a uint64_t mask). */
#ifndef RF_SEARCH_FOREST_H
#define RF_SEARCH_FOREST_H

#include <stdint.h>

#include "renflow/importance.h"

#define FOREST_INACTIVE (-1.0)
#define FOREST_LO (-1.0) /* domain of a continuous column after encoding */
#define FOREST_HI 1.0

typedef struct rf_tnode {
    int feature;        /* split column; -1 for a leaf */
    int left, right;    /* children (node indices) */
    int leaf;           /* leaf index for a leaf, -1 otherwise */
    int n;              /* training samples that reached the node (bootstrap copies counted) */
    double threshold;   /* continuous split: x <= threshold goes left */
    uint64_t left_mask; /* categorical split: category c goes left when bit c is set */
    double value;       /* mean response of the node's samples */
} rf_tnode;

/* One tree: split nodes (root = 0) and, for each leaf, its axis-aligned box: lo/hi for continuous
 * columns (in the encoded domain [-1, 1]; box boundaries are the domain ends or thresholds of
 * this tree), mask for categorical columns. The leaf boxes partition the domain. */
typedef struct rf_tree {
    int n_nodes, n_leaves;
    rf_tnode *nodes;
    double *lo, *hi; /* n_leaves x d */
    uint64_t *mask;  /* n_leaves x d (0 for continuous columns) */
    double *value;   /* n_leaves */
} rf_tree;

struct rf_forest {
    int d, n, n_trees;
    rf_feature_kind *kinds; /* d */
    int *ncat;              /* d: number of categories (0 for continuous) */
    double *inactive_frac;  /* d: fraction of training rows with NaN in the column */
    rf_tree *trees;         /* n_trees */
};

/* Encodes x (d values, caller's encoding) into out; RF_EARG naming row/column on a bad value. */
int forest_encode_row(const rf_forest *f, const double *x, int row, double *out, rf_err *e);

#endif
