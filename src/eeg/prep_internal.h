/* Private pieces of `renflow eeg prepare`. */
#ifndef RF_PREP_INTERNAL_H
#define RF_PREP_INTERNAL_H

#include "renflow/eegprep.h"

typedef struct rf_prep_row {
    char *file, *subject, *label, *hypnogram; /* hypnogram may be NULL */
    int line;
} rf_prep_row;

typedef struct rf_prep_list {
    int n;
    rf_prep_row *rows;
} rf_prep_list;

int rf_prep_list_read(const char *path, rf_prep_list *l, rf_err *e);
void rf_prep_list_free(rf_prep_list *l);
/* Index of name in names[0..n); with add, appends it when missing. Returns < 0 on failure
 * (not found without add: -1). */
int rf_name_index(char ***names, int *n, const char *name, int add, rf_err *e);

#endif
