/* Error reporting: a status code plus a human-readable message, passed explicitly. */
#include "renflow/core.h"

#include <stdarg.h>
#include <string.h>

int rf_err_set(rf_err *e, int code, const char *fmt, ...) {
    if (!e) return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int rf_err_prefix(rf_err *e, int code, const char *fmt, ...) {
    if (!e) return code;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof e->msg];
    memcpy(old, e->msg, sizeof old);
    size_t k = strlen(prefix);
    if (k > sizeof e->msg - 3) k = sizeof e->msg - 3;
    memcpy(e->msg, prefix, k);
    e->msg[k] = ':';
    e->msg[k + 1] = ' ';
    size_t room = sizeof e->msg - k - 2;
    size_t m = strnlen(old, room - 1);
    memcpy(e->msg + k + 2, old, m);
    e->msg[k + 2 + m] = '\0';
    if (e->code == RF_OK) e->code = code;
    return e->code;
}

void rf_err_clear(rf_err *e) {
    if (!e) return;
    e->code = RF_OK;
    e->msg[0] = '\0';
}

const char *rf_status_name(int code) {
    switch (code) {
    case RF_OK: return "ok";
    case RF_EARG: return "invalid argument";
    case RF_EIO: return "i/o error";
    case RF_EFORMAT: return "bad file format";
    case RF_ENOMEM: return "out of memory";
    case RF_ENONFINITE: return "non-finite value";
    case RF_EINTERRUPTED: return "interrupted";
    case RF_ESTATE: return "invalid state";
    default: return "unknown error";
    }
}
