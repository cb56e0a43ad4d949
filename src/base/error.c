/* Error kinds and the iso_error out-parameter. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "isolate.h"

static const char *const kind_names[] = {
    [ISO_OK] = "ok",
    [ISO_INVALID_ARGUMENT] = "invalid_argument",
    [ISO_NOT_IMPLEMENTED] = "not_implemented",
    [ISO_POLICY] = "policy",
    [ISO_UNENFORCEABLE] = "unenforceable",
    [ISO_GUEST] = "guest",
    [ISO_TIMEOUT] = "timeout",
    [ISO_CPU] = "cpu",
    [ISO_MEMORY] = "memory",
    [ISO_CLOSED] = "closed",
    [ISO_CRASHED] = "crashed",
    [ISO_VALUE] = "value",
    [ISO_OUTPUT] = "output",
    [ISO_CANCELLED] = "cancelled",
};

const char *iso_kind_name(iso_kind kind)
{
    if ((unsigned)kind >= sizeof kind_names / sizeof kind_names[0])
        return "crashed";
    return kind_names[kind];
}

int iso_error_set(iso_error *err, iso_kind kind, const char *fmt, ...)
{
    if (!err)
        return -1;
    iso_error_clear(err);
    err->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

void iso_error_clear(iso_error *err)
{
    if (!err)
        return;
    free(err->traceback);
    free(err->suggestion);
    memset(err, 0, sizeof *err);
}

void iso_error_move(iso_error *dst, iso_error *src)
{
    if (!dst) {
        iso_error_clear(src);
        return;
    }
    iso_error_clear(dst);
    *dst = *src;
    memset(src, 0, sizeof *src);
}
