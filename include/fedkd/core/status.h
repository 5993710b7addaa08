/* Status codes and the last error message.
 *
 * Library code never exits: it records what went wrong (file, line in our
 * source, and a sentence a user can act on) and returns a status. Only the
 * application decides to print and exit. */
#ifndef FEDKD_STATUS_H
#define FEDKD_STATUS_H

typedef enum fedkd_status {
    FEDKD_OK = 0,
    FEDKD_ERR_IO,          /* a file could not be opened, read or written */
    FEDKD_ERR_FORMAT,      /* a file's content is not what was expected */
    FEDKD_ERR_CONFIG,      /* a config key or value is invalid */
    FEDKD_ERR_NOMEM,       /* an allocation failed */
    FEDKD_ERR_MPI,         /* an MPI call failed, or a peer rank failed */
    FEDKD_ERR_INVALID,     /* an API was called with invalid arguments */
    FEDKD_ERR_INTERRUPTED, /* SIGINT / SIGTERM asked the run to stop */
    FEDKD_ERR_NUMERIC      /* NaN or Inf appeared in training */
} fedkd_status;

/* Records the message for the current thread and returns `status`. The
 * message is one line; it replaces any earlier message. */
fedkd_status fedkd_error_set(fedkd_status status, const char *src_file, int src_line,
                             const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* The last recorded message ("" if none). */
const char *fedkd_error_message(void);
/* The source location of the last recorded message ("file:line"). */
const char *fedkd_error_origin(void);
void fedkd_error_clear(void);

const char *fedkd_status_name(fedkd_status status);

#define FEDKD_FAIL(status, ...) fedkd_error_set((status), __FILE__, __LINE__, __VA_ARGS__)

#endif
