/* Private to src/eeg/edf_*.c and annotations.c: the validated EDF/BDF header, the built-in
 * reader (records, TALs), and the lock that serialises EDFlib's open/close. */
#ifndef RF_EDF_INTERNAL_H
#define RF_EDF_INTERNAL_H

#include <stdio.h>

#include "renflow/edf.h"

#define RF_EDF_MAX_SIGNALS 4096
#define RF_EDF_MAX_RECORD_BYTES (64LL << 20)
#define RF_EDF_TIME_UNITS 10000000LL /* 100 ns, as EDFlib */

typedef struct edf_sig {
    char label[17], unit[9], prefilter[81], transducer[81]; /* trimmed */
    double pmin, pmax;
    int dmin, dmax;
    int spr;
    int64_t offset; /* byte offset of this signal inside a data record */
    int annot;      /* 1: an EDF+/BDF+ annotation signal */
} edf_sig;

typedef struct edf_hdr {
    rf_edf_type type;
    int bdf, plus;
    int bps; /* bytes per sample: 2 (EDF) or 3 (BDF) */
    int ns;  /* all signals, annotation signals included */
    edf_sig *sig;
    int64_t hdr_bytes, rec_bytes, file_size;
    int64_t nrec_header;   /* as written (-1: unknown) */
    int64_t nrec;          /* complete records present, at most nrec_header (when known) */
    int64_t partial_bytes; /* bytes after the last complete record that is used */
    double rec_dur;        /* seconds */
    int64_t rec_dur_units; /* 100 ns units */
    rf_edf_datetime start;
    char patient[81], recording[81];
    char *dev; /* deviations from the standard that do not make reading unsafe ("; " separated) */
    size_t dev_len, dev_cap;
    int n_dev;
} edf_hdr;

/* Reads and validates the header of an open file of file_size bytes. Errors name `name`, the
 * field, the signal and the value. Deviations that are harmless are collected in h->dev. */
int rf__edf_hdr_read(FILE *fp, int64_t file_size, const char *name, edf_hdr *h, rf_err *e);
void rf__edf_hdr_free(edf_hdr *h);
void rf__edf_dev(edf_hdr *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies at most w bytes of p into out (n bytes), trailing blanks dropped, non-printable bytes
 * written as \xNN. */
void rf__edf_show(const unsigned char *p, size_t w, char *out, size_t n);

/* Built-in reader: TALs of the complete records (onsets relative to the first record's
 * time-keeping onset, which is returned in *start_offset_units). */
int rf__edf_read_tals(FILE *fp, edf_hdr *h, const char *name, rf_annotations *out,
                      int64_t *start_offset_units, rf_err *e);
/* Samples [start, start + n) of header signal s in physical units; scratch holds spr*bps bytes. */
int rf__edf_read_samples(FILE *fp, const edf_hdr *h, const char *name, int s, int64_t start,
                         int64_t n, double *out, unsigned char *scratch, rf_err *e);

void rf__edflib_lock(void);
void rf__edflib_unlock(void);

#endif
