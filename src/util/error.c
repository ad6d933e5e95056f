/*
 * error.c - error classes and the thread-local "last error" message.
 *
 * Library code never prints or exits on error: it calls vt_fail(), which
 * formats a message into a per-thread buffer and returns the error code, so a
 * failure path is one line: `return vt_fail(VT_ERR_FORMAT, "...", ...);`.
 */
#include <stdio.h>
#include <string.h>

#include "vitamin.h"

static _Thread_local char last_error[512];

const char *vt_strerror(vt_err e)
{
    switch (e) {
    case VT_OK: return "ok";
    case VT_ERR_NOMEM: return "out of memory";
    case VT_ERR_IO: return "I/O error";
    case VT_ERR_FORMAT: return "malformed input";
    case VT_ERR_UNSUPPORTED: return "unsupported";
    case VT_ERR_INVALID: return "invalid argument";
    case VT_ERR_NOT_FOUND: return "not found";
    case VT_ERR_RANGE: return "out of range";
    case VT_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}

const char *vt_last_error(void)
{
    return last_error;
}

vt_err vt_vfail(vt_err e, const char *fmt, va_list ap)
{
    /* through a copy: the arguments may point into last_error itself
     * (vt_fail(e, "...: %s", vt_last_error()) adds context to an error) */
    char buf[sizeof last_error];
    vsnprintf(buf, sizeof buf, fmt, ap);
    memcpy(last_error, buf, sizeof buf);
    return e;
}

vt_err vt_fail(vt_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vt_vfail(e, fmt, ap);
    va_end(ap);
    return e;
}
