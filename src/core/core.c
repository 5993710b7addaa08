#define _POSIX_C_SOURCE 200809L
#include "fedkd/core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <nmmintrin.h>
#endif

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

/* Blocks of at least FEDKD_MAPPED_BYTES (a client's dataset, the test set,
 * large workspaces) are mapped on their own, 2 MiB aligned, and offered to
 * the kernel as transparent huge pages: fresh mappings are zero, so nothing
 * is written before use, and the first touch faults once per 2 MiB instead
 * of once per 4 KiB. Under a virtual machine a 4 KiB fault costs about
 * 15 us: 12 MiB of a client's data took 45 ms to fault in, 1.5 ms in huge
 * pages. Blocks of 256 KiB up to 2 MiB (a model's parameters, gradients
 * and momentum, the round's buffers: about 6 MiB a rank, 18 ms of faults)
 * are cut from shared 2 MiB huge-page chunks in 16 KiB units, and a freed
 * one is kept for the next block of its length: such blocks are few, and
 * made and freed with models of the same shapes; a chunk whose blocks are
 * all freed gives its memory back. Smaller blocks come from
 * malloc. The sanitizer build keeps every block in malloc, where it checks
 * bounds. */
#if defined(__SANITIZE_ADDRESS__)
#define FEDKD_MAP_LARGE 0
#else
#define FEDKD_MAP_LARGE 1
#endif
#define FEDKD_MAPPED_BYTES ((size_t)2 << 20)
#define FEDKD_HUGE_PAGE ((size_t)2 << 20)

/* The mapped blocks, to tell them from malloc's in fedkd_free: few and
 * large, so a list walked only for 2 MiB-aligned pointers is enough. */
typedef struct mapped_block {
    void *start;
    size_t bytes; /* mapped length */
    struct mapped_block *next;
} mapped_block;
static mapped_block *mapped_blocks = NULL;

/* `length` bytes (a multiple of 4 KiB), 2 MiB aligned, advised as huge
 * pages; NULL when the mapping fails. */
static unsigned char *map_huge(size_t length)
{
    /* Over-map by a huge page, then give back what lies outside the
     * aligned block. */
    unsigned char *raw = mmap(NULL, length + FEDKD_HUGE_PAGE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uintptr_t at = ((uintptr_t)raw + FEDKD_HUGE_PAGE - 1) & ~(uintptr_t)(FEDKD_HUGE_PAGE - 1);
    unsigned char *start = (unsigned char *)at;
    size_t head = (size_t)(start - raw), tail = FEDKD_HUGE_PAGE - head;
    if (head) munmap(raw, head);
    if (tail) munmap(start + length, tail);
    /* Advice only: where the kernel has no huge pages the block still
     * works in small ones. */
    (void)madvise(start, length, MADV_HUGEPAGE);
    return start;
}

static void *alloc_mapped(size_t bytes)
{
    size_t length = (bytes + 4095) & ~(size_t)4095;
    if (length < bytes || length > SIZE_MAX - FEDKD_HUGE_PAGE) return NULL;
    mapped_block *record = malloc(sizeof *record);
    if (!record) return NULL;
    unsigned char *start = map_huge(length);
    if (!start) {
        free(record);
        return NULL;
    }
    record->start = start;
    record->bytes = length;
    record->next = mapped_blocks;
    mapped_blocks = record;
    return start;
}

/* 1 when pointer is a mapped block (then unmapped). */
static int free_mapped(void *pointer)
{
    if (((uintptr_t)pointer & (FEDKD_HUGE_PAGE - 1)) != 0) return 0;
    for (mapped_block **link = &mapped_blocks; *link; link = &(*link)->next) {
        mapped_block *record = *link;
        if (record->start != pointer) continue;
        munmap(record->start, record->bytes);
        *link = record->next;
        free(record);
        return 1;
    }
    return 0;
}

/* The chunks that blocks of FEDKD_CHUNKED_BYTES .. FEDKD_MAPPED_BYTES are
 * cut from, newest first, in units of FEDKD_UNIT_BYTES. units[u] is the
 * length in units of the block that starts at unit u (0 inside a block or
 * past the used part). A block goes to the first chunk whose unused end
 * holds it (16 KiB units: a client rank's mlp blocks, four of 778 KiB, one
 * of 1.5 MiB and two of 400 KiB, fill three chunks; in 64 KiB units placed
 * only in the newest chunk they took four, 2 MiB more of a rank's peak). */
#define FEDKD_UNIT_BYTES ((size_t)16 << 10)
#define FEDKD_CHUNK_UNITS (FEDKD_HUGE_PAGE / FEDKD_UNIT_BYTES)
#define FEDKD_CHUNKED_BYTES ((size_t)256 << 10)
typedef struct chunk {
    unsigned char *start;
    unsigned char units[FEDKD_CHUNK_UNITS];
    size_t used; /* units handed out from the start */
    size_t live; /* blocks handed out and not freed */
    struct chunk *next;
} chunk;
static chunk *chunks = NULL;
/* Freed blocks by length in units, each linked through its first bytes. */
static void *chunk_free[FEDKD_CHUNK_UNITS + 1];

static void chunk_keep(unsigned char *block, size_t units)
{
    memcpy(block, &chunk_free[units], sizeof(void *));
    chunk_free[units] = block;
}

static chunk *chunk_of(const unsigned char *p)
{
    for (chunk *c = chunks; c; c = c->next)
        if (p >= c->start && p < c->start + FEDKD_HUGE_PAGE) return c;
    return NULL;
}

/* A chunk none of whose blocks is in use gives its memory back (a run's
 * training models and sums before its final checkpoint, a sweep point's
 * models before the next point's): its free blocks leave the lists, and it
 * starts over empty, reading as zero again. */
static void chunk_reset(chunk *c)
{
    for (size_t u = 1; u <= FEDKD_CHUNK_UNITS; u++) {
        void **link = &chunk_free[u];
        while (*link) {
            unsigned char *block = *link;
            if (block >= c->start && block < c->start + FEDKD_HUGE_PAGE)
                memcpy(link, block, sizeof(void *)); /* unlinked */
            else
                link = (void **)(void *)block;
        }
    }
    (void)madvise(c->start, FEDKD_HUGE_PAGE, MADV_DONTNEED);
    memset(c->units, 0, sizeof c->units);
    c->used = 0;
}

static void *alloc_chunked(size_t bytes)
{
    size_t units = (bytes + FEDKD_UNIT_BYTES - 1) / FEDKD_UNIT_BYTES;
    unsigned char *block = chunk_free[units];
    if (block) {
        memcpy(&chunk_free[units], block, sizeof(void *));
        memset(block, 0, bytes);
        chunk_of(block)->live++;
        return block;
    }
    chunk *c = chunks;
    while (c && c->used + units > FEDKD_CHUNK_UNITS) c = c->next;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return NULL;
        c->start = map_huge(FEDKD_HUGE_PAGE);
        if (!c->start) {
            free(c);
            return NULL;
        }
        c->next = chunks;
        chunks = c;
    }
    /* Fresh (or reset) memory is zero. */
    block = c->start + c->used * FEDKD_UNIT_BYTES;
    c->units[c->used] = (unsigned char)units;
    c->used += units;
    c->live++;
    return block;
}

/* 1 when pointer is a chunked block (then kept for reuse, or its chunk
 * reset when it was the chunk's last block in use). */
static int free_chunked(void *pointer)
{
    if (((uintptr_t)pointer & (FEDKD_UNIT_BYTES - 1)) != 0) return 0;
    unsigned char *p = pointer;
    chunk *c = chunk_of(p);
    if (!c) return 0;
    if (--c->live == 0) {
        chunk_reset(c);
        return 1;
    }
    chunk_keep(p, c->units[(size_t)(p - c->start) / FEDKD_UNIT_BYTES]);
    return 1;
}

void *fedkd_alloc(size_t bytes)
{
    if (bytes == 0) return NULL;
    if (FEDKD_MAP_LARGE && bytes >= FEDKD_MAPPED_BYTES) return alloc_mapped(bytes);
    if (FEDKD_MAP_LARGE && bytes >= FEDKD_CHUNKED_BYTES) return alloc_chunked(bytes);
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *pointer = aligned_alloc(64, rounded);
    if (pointer) memset(pointer, 0, rounded);
    return pointer;
}

void fedkd_free(void *pointer)
{
    if (!pointer) return;
    if (FEDKD_MAP_LARGE && (free_mapped(pointer) || free_chunked(pointer))) return;
    free(pointer);
}

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

/* CRC-32C a nibble at a time: entry i is the CRC register after shifting
 * the four bits i through the reflected polynomial 0x82F63B78. */
static uint32_t crc32c_soft(uint32_t crc, const unsigned char *p, size_t bytes)
{
    static const uint32_t nibble[16] = {
        0x00000000, 0x105ec76f, 0x20bd8ede, 0x30e349b1, 0x417b1dbc, 0x5125dad3,
        0x61c69362, 0x7198540d, 0x82f63b78, 0x92a8fc17, 0xa24bb5a6, 0xb21572c9,
        0xc38d26c4, 0xd3d3e1ab, 0xe330a81a, 0xf36e6f75};
    for (size_t i = 0; i < bytes; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble[crc & 15u];
        crc = (crc >> 4) ^ nibble[crc & 15u];
    }
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* SSE 4.2's crc32 instruction computes CRC-32C, eight bytes at a time. */
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc,
                                                             const unsigned char *p,
                                                             size_t bytes)
{
    uint64_t c = crc;
    for (; bytes >= 8; bytes -= 8, p += 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
    }
    crc = (uint32_t)c;
    for (; bytes > 0; bytes--, p++) crc = _mm_crc32_u8(crc, *p);
    return crc;
}
#endif

uint32_t fedkd_crc32c_more(uint32_t crc, const void *data, size_t bytes, int portable)
{
    crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
    if (!portable && __builtin_cpu_supports("sse4.2")) return ~crc32c_sse42(crc, data, bytes);
#endif
    (void)portable;
    return ~crc32c_soft(crc, data, bytes);
}

uint32_t fedkd_crc32c(const void *data, size_t bytes)
{
    return fedkd_crc32c_more(0, data, bytes, 0);
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
