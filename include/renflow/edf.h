/* renflow EEG files: EDF, EDF+, BDF and BDF+ recordings, EDF+ annotations, Sleep-EDF
 * hypnograms, motor-imagery events, and a small EDF+/BDF+ writer.
 *
 * Reading. rf_edf_open first parses and checks the whole header itself (every field against the
 * format and against the file size; errors name the file, the field and the value), then opens
 * the file with EDFlib (edfopen_file_readonly / edfread_physical_samples / edf_get_annotation).
 * EDFlib is strict: it refuses real PhysioNet files with harmless deviations (eegmmidb: the
 * "EDF Annotations" signal has prefilter "HP:0Hz LP:0Hz N:0Hz" instead of blanks), files whose
 * size does not match the header (truncated recordings), more than 640 signals, and a second
 * open of the same file. In those cases (RF_EDF_READER_AUTO) the recording is read by the built-in
 * reader in src/eeg/edf_header.c, which uses the header it already validated, reads only complete
 * data records (never past the end of the file) and parses the EDF+ TALs itself; the reason is
 * put in rf_edf_warning() and passed to the optional warning callback.
 *
 * Truncated files (fewer complete data records than the header promises): by default the
 * complete records are used and a warning names the file, the header's record count and the
 * count present; with opts.strict_size = 1 this is an error with the same information.
 *
 * Thread safety: distinct rf_edf handles may be used from different threads; EDFlib's open and
 * close are serialised internally. One rf_edf must not be used by two threads at once.
 * Sample indices are per signal (signals may have different rates). */
#ifndef RENFLOW_EDF_H
#define RENFLOW_EDF_H

#include "renflow/core.h"

/* ---------------------------------------------------------------- annotations */

typedef struct rf_annotation {
    double onset_s;    /* seconds from the start of the recording */
    double duration_s; /* seconds, or -1 when the annotation has no duration */
    char *text;        /* UTF-8, malloc'd */
} rf_annotation;

typedef struct rf_annotations {
    int n;
    rf_annotation *items;
    char *source; /* file the annotations came from (for messages); may be NULL */
} rf_annotations;

void rf_annotations_free(rf_annotations *a); /* frees the contents; *a becomes empty */
/* Appends one annotation (text is copied). */
int rf_annotations_add(rf_annotations *a, double onset_s, double duration_s, const char *text,
                       rf_err *e);
int rf_annotations_copy(const rf_annotations *src, rf_annotations *dst, rf_err *e);
/* Opens an EDF+/BDF+ file (including annotation-only files such as Sleep-EDF hypnograms) and
 * copies its annotations. */
int rf_annotations_read(const char *path, rf_annotations *out, rf_err *e);
/* Every annotation must start in [0, duration_s] and end by duration_s (1 us tolerance);
 * otherwise an error naming the source file, the annotation index, its text and times. */
int rf_annotations_check_within(const rf_annotations *a, double duration_s, rf_err *e);

/* ---------------------------------------------------------------- sleep hypnograms */

typedef enum {
    RF_STAGE_W = 0,
    RF_STAGE_N1 = 1,
    RF_STAGE_N2 = 2,
    RF_STAGE_N3 = 3,
    RF_STAGE_N4 = 4,
    RF_STAGE_REM = 5,
    RF_STAGE_UNKNOWN = 6,  /* "Sleep stage ?" and epochs no stage annotation covers */
    RF_STAGE_MOVEMENT = 7, /* "Movement time" */
    RF_STAGE_COUNT = 8
} rf_sleep_stage;

/* "Sleep stage W/1/2/3/4/R/?" (also N1/N2/N3/REM), "Movement time"; case-insensitive, surrounding
 * blanks ignored. Returns the stage, or -1 when the text is not a stage annotation. */
int rf_sleep_stage_from_text(const char *text);
const char *rf_sleep_stage_name(int stage); /* "W","N1","N2","N3","N4","REM","?","MT" */
/* 5-class AASM convention: 0=W 1=N1 2=N2 3=N3 (R&K stages 3 and 4) 4=REM (as sleep-edf/features
 * y); -1 for UNKNOWN and MOVEMENT. */
int rf_sleep_stage_aasm(int stage);
/* Maps n stages in place to AASM classes; returns the number mapped to -1. */
int rf_hypnogram_to_aasm(int *stages, int n);

/* Expands the stage annotations (others are ignored) into per-epoch labels (rf_sleep_stage).
 * Stage annotations must have a duration; onsets and durations must be multiples of epoch_s
 * (within 1 ms) and must not overlap; epochs no stage annotation covers are RF_STAGE_UNKNOWN.
 * n_epochs_max > 0 caps the output (e.g. the recording length in epochs; Sleep-EDF hypnograms
 * run on as "Sleep stage ?" after the recording ends); 0 = no cap. *stages is malloc'd. */
int rf_hypnogram_epochs(const rf_annotations *a, double epoch_s, int n_epochs_max, int **stages,
                        int *n, rf_err *e);
/* Checks a hypnogram against the recording it is meant for: at least one stage annotation; the
 * first starts inside the recording; every annotation with a known stage (not "?") ends by
 * recording_s; stages are multiples of epoch_s. The error names the hypnogram file, the
 * annotation and both durations. */
int rf_hypnogram_check_against(const rf_annotations *a, double recording_s, double epoch_s,
                               rf_err *e);

/* ---------------------------------------------------------------- events */

typedef struct rf_event {
    int64_t onset;    /* sample index at rate_hz */
    int64_t duration; /* samples, or -1 when the annotation has no duration */
    int code;         /* index into the code list */
} rf_event;

/* Annotations whose (trimmed) text equals codes[k] become events with code k; others are
 * ignored. n_samples > 0: every event must lie inside [0, n_samples) and end by n_samples
 * (otherwise an error naming the file, annotation and sample). *ev is malloc'd (NULL when
 * *n == 0). */
int rf_events_from_annotations(const rf_annotations *a, double rate_hz, const char *const *codes,
                               int n_codes, int64_t n_samples, rf_event **ev, int *n, rf_err *e);
/* PhysioNet eegmmidb motor events: T0 -> 0 (rest), T1 -> 1, T2 -> 2. */
int rf_mi_events(const rf_annotations *a, double rate_hz, int64_t n_samples, rf_event **ev, int *n,
                 rf_err *e);

/* ---------------------------------------------------------------- recordings */

typedef enum {
    RF_EDF_TYPE_EDF = 0,
    RF_EDF_TYPE_EDFPLUS = 1,
    RF_EDF_TYPE_BDF = 2,
    RF_EDF_TYPE_BDFPLUS = 3
} rf_edf_type;
const char *rf_edf_type_name(rf_edf_type t); /* "EDF", "EDF+", "BDF", "BDF+" */

typedef enum {
    RF_EDF_READER_AUTO = 0,   /* EDFlib, or the built-in reader when EDFlib refuses the file */
    RF_EDF_READER_EDFLIB = 1, /* EDFlib only: its refusal is an error */
    RF_EDF_READER_BUILTIN = 2 /* the built-in reader only */
} rf_edf_reader;

typedef struct rf_edf_opts {
    rf_edf_reader reader;
    int strict_size; /* 1: a truncated file (or trailing bytes) is an error; 0: use complete records */
    /* optional: called once per warning (one line each) when the open succeeds; the same text
     * is kept in rf_edf_warning(), lines joined by '\n' */
    void (*warn)(void *ctx, const char *msg);
    void *warn_ctx;
} rf_edf_opts;
void rf_edf_opts_default(rf_edf_opts *o);

typedef struct rf_edf_signal {
    char label[17]; /* trimmed */
    char unit[9];   /* physical dimension, trimmed */
    char prefilter[81];
    char transducer[81];
    int samples_per_record;
    double rate_hz; /* samples_per_record / record duration */
    int64_t n_samples;
    double phys_min, phys_max;
    int dig_min, dig_max;
} rf_edf_signal;

typedef struct rf_edf_datetime {
    int year, month, day, hour, minute, second;
    double subsecond; /* EDF+ start offset in seconds, [0, 1) */
} rf_edf_datetime;

typedef struct rf_edf rf_edf;

int rf_edf_open(const char *path, rf_edf **out, rf_err *e); /* default options */
int rf_edf_open_opts(const char *path, const rf_edf_opts *o, rf_edf **out, rf_err *e);
void rf_edf_free(rf_edf *r); /* closes the file */

const char *rf_edf_path(const rf_edf *r);
rf_edf_type rf_edf_filetype(const rf_edf *r);
int rf_edf_n_signals(const rf_edf *r); /* data signals; annotation signals are not counted */
const rf_edf_signal *rf_edf_signal_info(const rf_edf *r, int i); /* NULL when out of range */
const char *rf_edf_label(const rf_edf *r, int i);                /* "" when out of range */
const char *rf_edf_unit(const rf_edf *r, int i);
double rf_edf_rate(const rf_edf *r, int i);     /* Hz; 0 when out of range */
int64_t rf_edf_n_samples(const rf_edf *r, int i); /* of the complete records used; -1 when out of range */
double rf_edf_duration(const rf_edf *r);        /* seconds: records used x record duration */
double rf_edf_record_duration(const rf_edf *r);
int64_t rf_edf_n_records(const rf_edf *r);        /* complete data records used */
int64_t rf_edf_n_records_header(const rf_edf *r); /* as the header says (-1: unknown) */
rf_edf_datetime rf_edf_start(const rf_edf *r);
const char *rf_edf_warning(const rf_edf *r); /* "" when there is none */
int rf_edf_uses_edflib(const rf_edf *r);     /* 1: samples and annotations come from EDFlib */
const rf_annotations *rf_edf_annotations(const rf_edf *r);

/* Channel lookup: an exact match of the trimmed label wins; otherwise labels are compared
 * case-insensitively after removing blanks, trailing '.' padding (eegmmidb "Fc5.", "C3..") and a
 * signal-type prefix ("EEG ", "EOG ", "EMG ", "ECG "). Returns the index, -1 when no signal
 * matches, -2 when several match (ambiguous). */
int rf_edf_find_channel(const rf_edf *r, const char *label);
/* Resolves n labels into idx[n]; a missing or ambiguous label is an error naming the file, the
 * label and the labels available. */
int rf_edf_select_channels(const rf_edf *r, const char *const *labels, int n, int *idx, rf_err *e);
/* Reads samples [start, start + n) of data signal idx in physical units into out[n]:
 * phys = bitvalue * (offset + digital), bitvalue = (phys_max - phys_min) / (dig_max - dig_min),
 * offset = phys_max / bitvalue - dig_max, with digital values outside [dig_min, dig_max] clipped
 * (as EDFlib does; both readers give bit-identical results). A range outside the signal is an
 * error (nothing is read past the end of the file). */
int rf_edf_read_channel(rf_edf *r, int idx, int64_t start, int64_t n, double *out, rf_err *e);
/* Reads the same sample range of n_ch signals (which must share one sampling rate) into
 * out[n_ch][n] (row-major). */
int rf_edf_read_channels(rf_edf *r, const int *idx, int n_ch, int64_t start, int64_t n,
                         double *out, rf_err *e);

/* ---------------------------------------------------------------- writing (EDF+ / BDF+) */

#define RF_EDF_MAX_ANNOT_TEXT 40 /* bytes EDFlib writes per annotation text */

typedef struct rf_edf_wsignal {
    const char *label;      /* <= 16 characters */
    const char *unit;       /* <= 8 characters; may be NULL */
    const char *prefilter;  /* may be NULL */
    const char *transducer; /* may be NULL */
    double rate_hz;         /* rate_hz x record_s must be a whole number of samples */
    double phys_min, phys_max; /* both 0: the data's range (widened when flat) */
    int dig_min, dig_max;      /* both 0: the full range of the format */
    const double *data;
    int64_t n; /* a whole number of records; every signal must cover the same duration */
} rf_edf_wsignal;

typedef struct rf_edf_wspec {
    int bdf;         /* 0: EDF+ (16 bit), 1: BDF+ (24 bit) */
    double record_s; /* data-record duration; 0 = 1 s; 0.001 .. 60 s in steps of 10 us */
    int n_signals;
    const rf_edf_wsignal *signals;
    const rf_annotations *annots; /* may be NULL; onsets >= 0, resolution 0.1 ms */
    rf_edf_datetime start;        /* year == 0: 1985-01-01 00:00:00 (anonymised); subsecond kept */
    const char *patient_code;     /* may be NULL */
    const char *equipment;        /* may be NULL */
} rf_edf_wspec;

/* Writes an EDF+/BDF+ file through EDFlib, atomically: to PATH.tmp.<pid> in the same directory,
 * fsync, then rename over PATH. Data outside the physical range, non-finite samples, labels or
 * annotation texts that do not fit are errors (EDFlib would clip or truncate silently). */
int rf_edf_write(const char *path, const rf_edf_wspec *s, rf_err *e);

#endif
