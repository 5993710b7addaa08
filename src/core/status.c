#include "fedkd/core/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char error_message[1024];
static _Thread_local char error_origin[256];

fedkd_status fedkd_error_set(fedkd_status status, const char *src_file, int src_line,
                             const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(error_message, sizeof error_message, format, args);
    va_end(args);
    snprintf(error_origin, sizeof error_origin, "%s:%d", src_file, src_line);
    /* Keep the message on one line whatever the caller passed. */
    for (char *c = error_message; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    return status;
}

const char *fedkd_error_message(void) { return error_message; }
const char *fedkd_error_origin(void) { return error_origin; }

void fedkd_error_clear(void)
{
    error_message[0] = '\0';
    error_origin[0] = '\0';
}

const char *fedkd_status_name(fedkd_status status)
{
    switch (status) {
    case FEDKD_OK: return "ok";
    case FEDKD_ERR_IO: return "i/o error";
    case FEDKD_ERR_FORMAT: return "format error";
    case FEDKD_ERR_CONFIG: return "config error";
    case FEDKD_ERR_NOMEM: return "out of memory";
    case FEDKD_ERR_MPI: return "mpi error";
    case FEDKD_ERR_INVALID: return "invalid argument";
    case FEDKD_ERR_INTERRUPTED: return "interrupted";
    case FEDKD_ERR_NUMERIC: return "numeric error";
    }
    return "unknown status";
}
