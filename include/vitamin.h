/*
 * vitamin.h - the public API of the vitamin inference engine.
 *
 * Errors are values: every fallible function returns a vt_err and, on
 * failure, leaves a human-readable explanation in a thread-local buffer that
 * vt_last_error() returns (valid until the next failing call on the same
 * thread). vt_strerror() names the error class.
 */
#ifndef VITAMIN_H
#define VITAMIN_H

#include <stdarg.h>

#define VT_VERSION "0.1.0"

typedef enum {
    VT_OK = 0,
    VT_ERR_NOMEM,       /* allocation failed */
    VT_ERR_IO,          /* open/read/write/mmap failed */
    VT_ERR_FORMAT,      /* malformed input (file, JSON, template, ...) */
    VT_ERR_UNSUPPORTED, /* well-formed but not supported (type, arch, ...) */
    VT_ERR_INVALID,     /* invalid argument from the caller */
    VT_ERR_NOT_FOUND,   /* a key, tensor or file that must exist does not */
    VT_ERR_RANGE,       /* a value outside its allowed range */
    VT_ERR_INTERNAL,    /* a bug: an invariant did not hold */
} vt_err;

/* Static, never NULL. */
const char *vt_strerror(vt_err e);

/* The message of the last failure on this thread ("" if none). */
const char *vt_last_error(void);

/* Records a printf-style message for vt_last_error() and returns e. */
vt_err vt_fail(vt_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
vt_err vt_vfail(vt_err e, const char *fmt, va_list ap);

#endif
