#define _POSIX_C_SOURCE 200809L
#include "fedkd/core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int log_rank = 0;
static int log_size = 1;
static int log_quiet = 0;

void fedkd_log_set_rank(int rank, int size)
{
    log_rank = rank;
    log_size = size;
}

void fedkd_log_set_quiet(int quiet) { log_quiet = quiet; }

void fedkd_log_info(const char *format, ...)
{
    if (log_rank != 0 || log_quiet) return;
    va_list args;
    va_start(args, format);
    vfprintf(stdout, format, args);
    va_end(args);
    fputc('\n', stdout);
    fflush(stdout);
}

static void log_to_stderr(const char *prefix, const char *format, va_list args)
{
    char line[2048];
    vsnprintf(line, sizeof line, format, args);
    if (log_size > 1 && log_rank != 0)
        fprintf(stderr, "fedkd-sim: %s[rank %d] %s\n", prefix, log_rank, line);
    else
        fprintf(stderr, "fedkd-sim: %s%s\n", prefix, line);
    fflush(stderr);
}

void fedkd_log_warn(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    log_to_stderr("warning: ", format, args);
    va_end(args);
}

void fedkd_log_error(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    log_to_stderr("error: ", format, args);
    va_end(args);
}

double fedkd_time_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *fedkd_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *pointer = aligned_alloc(64, rounded);
    if (pointer) memset(pointer, 0, rounded);
    return pointer;
}

void fedkd_free(void *pointer) { free(pointer); }

size_t fedkd_appendf(char *out, size_t size, size_t used, const char *format, ...)
{
    if (used >= size) return used;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(out + used, size - used, format, args);
    va_end(args);
    if (n < 0) return used;
    used += (size_t)n;
    return used < size ? used : size - 1;
}

uint64_t fedkd_checksum(const void *data, size_t bytes)
{
    return fedkd_checksum_more(1469598103934665603ull, data, bytes);
}

uint64_t fedkd_checksum_more(uint64_t checksum, const void *data, size_t bytes)
{
    const unsigned char *p = data;
    uint64_t h = checksum;
    for (size_t i = 0; i < bytes; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}
