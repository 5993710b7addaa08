/* Logging, timers and aligned allocation. */
#ifndef FEDKD_CORE_H
#define FEDKD_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/core/rng.h"
#include "fedkd/core/status.h"

#define FEDKD_VERSION "0.1.0"

/* Rank-aware logging: fedkd_log_info prints on the speaking rank only
 * (rank 0 by default); fedkd_log_warn and fedkd_log_error print on any rank,
 * prefixed with the rank on ranks other than 0. */
void fedkd_log_set_rank(int rank, int size);
void fedkd_log_set_quiet(int quiet);
void fedkd_log_info(const char *format, ...) __attribute__((format(printf, 1, 2)));
void fedkd_log_warn(const char *format, ...) __attribute__((format(printf, 1, 2)));
void fedkd_log_error(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic wall-clock seconds. */
double fedkd_time_now(void);

/* 64-byte aligned, zero-filled allocation; NULL on failure or size 0. */
void *fedkd_alloc(size_t bytes);
void fedkd_free(void *pointer);

/* Appends formatted text at out[used] without overflowing out[size]: the
 * text is cut where it does not fit. Returns the new length, for chaining:
 * used = fedkd_appendf(out, size, used, ...). */
size_t fedkd_appendf(char *out, size_t size, size_t used, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

/* FNV-1a of `bytes` bytes: the checksum runs report for parameters. */
uint64_t fedkd_checksum(const void *data, size_t bytes);
/* The same over pieces: fedkd_checksum_more(fedkd_checksum(a, n), b, m) is
 * the checksum of a and b laid end to end. */
uint64_t fedkd_checksum_more(uint64_t checksum, const void *data, size_t bytes);
/* CRC-32C (Castagnoli) of `bytes` bytes, with SSE 4.2's instruction where
 * the CPU has it: about 5 times zlib's CRC-32 here. The data cache checks
 * every row it reads with it. */
uint32_t fedkd_crc32c(const void *data, size_t bytes);
/* The same continued from the CRC `crc` of earlier bytes; `portable` 1
 * forces the table-driven code (the tests compare the two). */
uint32_t fedkd_crc32c_more(uint32_t crc, const void *data, size_t bytes, int portable);

#endif
