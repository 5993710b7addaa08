/* The inflated copy of a gzipped IDX file pair: see src/data/idx_cache.h. */
#include "data/idx_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "fedkd/core/core.h"

#define CACHE_MAGIC "FEDKDIXC"
/* 2: the table holds CRC-32C, not CRC-32 (version 1's files are rewritten). */
#define CACHE_VERSION 2u
#define CACHE_MAX_PATH 4096u
/* magic, version, header bytes, records, rows, cols, a spare word, two
 * identities of 32 bytes, the table's CRC and the path's length. */
#define CACHE_FIXED_BYTES (8u + 4u * 6u + 2u * 32u + 8u)
#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u

/* What identifies a source file's contents. */
typedef struct source_id {
    uint64_t size;
    int64_t mtime_seconds;
    uint32_t mtime_nanoseconds;
    uint32_t crc;   /* gzip trailer: CRC-32 of the inflated data */
    uint32_t isize; /* gzip trailer: its length mod 2^32 */
} source_id;

struct fedkd_idx_cache {
    int fd;
    char path[CACHE_MAX_PATH + 64];
    uint32_t records, height, width;
    size_t row_bytes;
    uint64_t rows_offset;
    unsigned char *labels; /* (records) */
    uint32_t *checks;      /* (records): each row's CRC-32C */
};

struct fedkd_idx_cache_writer {
    int fd;
    int failed;
    char path[CACHE_MAX_PATH + 64];
    char temporary[CACHE_MAX_PATH + 128];
    char images_path[CACHE_MAX_PATH];
    char labels_path[CACHE_MAX_PATH];
    char real_images[CACHE_MAX_PATH];
    source_id images, labels;
    uint32_t records, height, width;
    size_t row_bytes;
    uint64_t header_bytes, rows_offset;
    uint32_t next;    /* records written */
    uint32_t crc;     /* CRC-32 of the inflated images file up to record next */
    uint32_t *checks; /* (records): each row's CRC-32C, the table */
};

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void put_id(unsigned char *p, const source_id *id)
{
    put_u64(p, id->size);
    put_u64(p + 8, (uint64_t)id->mtime_seconds);
    put_u32(p + 16, id->mtime_nanoseconds);
    put_u32(p + 20, id->crc);
    put_u32(p + 24, id->isize);
    put_u32(p + 28, 0);
}

static int same_id(const unsigned char *p, const source_id *id)
{
    return get_u64(p) == id->size && get_u64(p + 8) == (uint64_t)id->mtime_seconds &&
           get_u32(p + 16) == id->mtime_nanoseconds && get_u32(p + 20) == id->crc &&
           get_u32(p + 24) == id->isize;
}

static int same_source(const source_id *a, const source_id *b)
{
    return a->size == b->size && a->mtime_seconds == b->mtime_seconds &&
           a->mtime_nanoseconds == b->mtime_nanoseconds && a->crc == b->crc &&
           a->isize == b->isize;
}

static void big_endian_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (24 - 8 * i));
}

/* pread (writing 0) or pwrite (writing 1) of exactly `bytes`; 0 on success. */
static int transfer_at(int fd, unsigned char *p, size_t bytes, uint64_t offset, int writing)
{
    while (bytes > 0) {
        ssize_t n = writing ? pwrite(fd, p, bytes, (off_t)offset)
                            : pread(fd, p, bytes, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        bytes -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

static int read_at(int fd, void *buffer, size_t bytes, uint64_t offset)
{
    return transfer_at(fd, buffer, bytes, offset, 0);
}

static int write_at(int fd, const void *buffer, size_t bytes, uint64_t offset)
{
    /* pwrite only reads the buffer. */
    return transfer_at(fd, (unsigned char *)(uintptr_t)buffer, bytes, offset, 1);
}

/* A gzip file's size, modification time and trailer; -1 (reason in why)
 * when it cannot be read or is not gzip. */
static int identify(const char *path, source_id *id, char *why, size_t why_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    struct stat info;
    unsigned char head[2], tail[8];
    int ok = fstat(fd, &info) == 0 && info.st_size >= 18 && read_at(fd, head, 2, 0) == 0 &&
             read_at(fd, tail, 8, (uint64_t)info.st_size - 8) == 0;
    close(fd);
    if (!ok || head[0] != 0x1f || head[1] != 0x8b) {
        snprintf(why, why_size, "%s is not a gzip file", path);
        return -1;
    }
    id->size = (uint64_t)info.st_size;
    id->mtime_seconds = (int64_t)info.st_mtim.tv_sec;
    id->mtime_nanoseconds = (uint32_t)info.st_mtim.tv_nsec;
    id->crc = get_u32(tail);
    id->isize = get_u32(tail + 4);
    return 0;
}

int fedkd_idx_cache_dir(const char *configured, char *out, size_t out_size)
{
    if (!configured || !configured[0]) return 0;
    int n;
    if (strncmp(configured, "~/", 2) == 0) {
        const char *home = getenv("HOME");
        if (!home || !home[0]) return 0;
        n = snprintf(out, out_size, "%s/%s", home, configured + 2);
    } else {
        n = snprintf(out, out_size, "%s", configured);
    }
    return n > 0 && (size_t)n < out_size;
}

/* <dir>/<images file name>-<FNV-1a of its real path>.cache; the real path
 * into `real`. -1 when a name does not fit. */
static int cache_path(const char *dir, const char *images_path, char *out, size_t out_size,
                      char *real, size_t real_size)
{
    char resolved[PATH_MAX];
    const char *source = realpath(images_path, resolved) ? resolved : images_path;
    int n = snprintf(real, real_size, "%s", source);
    if (n < 0 || (size_t)n >= real_size) return -1;
    const char *base = strrchr(source, '/');
    base = base ? base + 1 : source;
    size_t base_length = strlen(base);
    if (base_length > 3 && strcmp(base + base_length - 3, ".gz") == 0) base_length -= 3;
    n = snprintf(out, out_size, "%s/%.*s-%016llx.cache", dir, (int)base_length, base,
                 (unsigned long long)fedkd_checksum(source, strlen(source)));
    return n > 0 && (size_t)n < out_size ? 0 : -1;
}

/* The CRC-32 of the inflated images file's 16-byte IDX header: where the
 * writer's running CRC-32 of the file starts, the rows following. */
static uint32_t images_header_crc(uint32_t records, uint32_t height, uint32_t width)
{
    unsigned char header[16];
    big_endian_u32(header, IDX_IMAGES_MAGIC);
    big_endian_u32(header + 4, records);
    big_endian_u32(header + 8, height);
    big_endian_u32(header + 12, width);
    return (uint32_t)crc32(0L, header, 16);
}

/* The CRC-32 of the inflated labels file (8-byte header, then labels). */
static uint32_t labels_file_crc(uint32_t records, const unsigned char *labels)
{
    unsigned char header[8];
    big_endian_u32(header, IDX_LABELS_MAGIC);
    big_endian_u32(header + 4, records);
    uLong crc = crc32(0L, header, 8);
    return (uint32_t)crc32_z(crc, labels, records);
}

/* ---- reading ---------------------------------------------------------------- */

fedkd_status fedkd_idx_cache_open(fedkd_idx_cache **out, const char *dir,
                                  const char *images_path, const char *labels_path, char *why,
                                  size_t why_size)
{
    *out = NULL;
    why[0] = '\0';
    fedkd_idx_cache *c = calloc(1, sizeof *c);
    if (!c) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a data cache");
    c->fd = -1;
    char real[CACHE_MAX_PATH];
    source_id images, labels;
    unsigned char *header = NULL;
    if (cache_path(dir, images_path, c->path, sizeof c->path, real, sizeof real) != 0) {
        snprintf(why, why_size, "the cache name for %s in %s is too long", images_path, dir);
        goto unusable;
    }
    if (identify(images_path, &images, why, why_size) != 0 ||
        identify(labels_path, &labels, why, why_size) != 0)
        goto unusable;
    c->fd = open(c->path, O_RDONLY | O_CLOEXEC);
    if (c->fd < 0) {
        snprintf(why, why_size, "%s: %s", c->path, strerror(errno));
        goto unusable;
    }
    struct stat info;
    unsigned char fixed[CACHE_FIXED_BYTES];
    if (fstat(c->fd, &info) != 0 || read_at(c->fd, fixed, sizeof fixed, 0) != 0 ||
        memcmp(fixed, CACHE_MAGIC, 8) != 0 || get_u32(fixed + 8) != CACHE_VERSION) {
        snprintf(why, why_size, "%s: not a cache file of this version", c->path);
        goto unusable;
    }
    uint32_t header_bytes = get_u32(fixed + 12), path_length = get_u32(fixed + 100);
    c->records = get_u32(fixed + 16);
    c->height = get_u32(fixed + 20);
    c->width = get_u32(fixed + 24);
    c->row_bytes = (size_t)c->height * c->width;
    uint32_t table_crc = get_u32(fixed + 96);
    if (path_length >= CACHE_MAX_PATH || header_bytes != CACHE_FIXED_BYTES + path_length + 4 ||
        c->records == 0 || c->height == 0 || c->width == 0 || c->height > 4096 ||
        c->width > 4096) {
        snprintf(why, why_size, "%s: corrupt header", c->path);
        goto unusable;
    }
    c->rows_offset = (uint64_t)header_bytes + (uint64_t)c->records * 5u;
    uint64_t expected = c->rows_offset + (uint64_t)c->records * c->row_bytes;
    header = malloc(header_bytes);
    if (!header) goto nomem;
    if ((uint64_t)info.st_size != expected || read_at(c->fd, header, header_bytes, 0) != 0 ||
        get_u32(header + header_bytes - 4) != (uint32_t)crc32(0L, header, header_bytes - 4)) {
        snprintf(why, why_size, "%s: corrupt (its size or its header's CRC-32 is wrong)", c->path);
        goto unusable;
    }
    if (!same_id(header + 32, &images) || !same_id(header + 64, &labels) ||
        strlen(real) != path_length || memcmp(header + CACHE_FIXED_BYTES, real, path_length) != 0 ||
        images.isize != (uint32_t)(16u + (uint64_t)c->records * c->row_bytes)) {
        snprintf(why, why_size, "%s: stale (made from another version of %s or %s)", c->path,
                 images_path, labels_path);
        goto unusable;
    }
    c->labels = malloc(c->records);
    c->checks = malloc((size_t)c->records * sizeof *c->checks);
    unsigned char *table = malloc((size_t)c->records * 4u);
    if (!c->labels || !c->checks || !table) {
        free(table);
        goto nomem;
    }
    int read_failed = read_at(c->fd, c->labels, c->records, header_bytes) != 0 ||
                      read_at(c->fd, table, (size_t)c->records * 4u,
                              (uint64_t)header_bytes + c->records) != 0;
    uint32_t table_read_crc = (uint32_t)crc32_z(0L, table, (size_t)c->records * 4u);
    for (uint32_t i = 0; i < c->records; i++) c->checks[i] = get_u32(table + 4 * (size_t)i);
    free(table);
    if (read_failed || table_read_crc != table_crc ||
        labels_file_crc(c->records, c->labels) != labels.crc) {
        snprintf(why, why_size, "%s: corrupt (its table of row CRC-32Cs fails its CRC-32, or its "
                 "labels do not give the CRC-32 of %s)", c->path, labels_path);
        goto unusable;
    }
    free(header);
    *out = c;
    return FEDKD_OK;

nomem:
    free(header);
    fedkd_idx_cache_close(&c);
    return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading the data cache of %s", images_path);
unusable:
    free(header);
    fedkd_idx_cache_close(&c);
    return FEDKD_OK;
}

uint32_t fedkd_idx_cache_records(const fedkd_idx_cache *cache) { return cache->records; }
uint32_t fedkd_idx_cache_height(const fedkd_idx_cache *cache) { return cache->height; }
uint32_t fedkd_idx_cache_width(const fedkd_idx_cache *cache) { return cache->width; }
const unsigned char *fedkd_idx_cache_labels(const fedkd_idx_cache *cache) { return cache->labels; }

fedkd_status fedkd_idx_cache_read_rows(fedkd_idx_cache *cache, const uint32_t *rows, size_t n,
                                       unsigned char *bytes)
{
    const size_t row_bytes = cache->row_bytes;
    size_t i = 0;
    while (i < n) {
        /* A run of consecutive rows is one read. */
        size_t run = 1;
        while (i + run < n && rows[i + run] == rows[i] + run && run < 4096) run++;
        if (rows[i] >= cache->records || rows[i + run - 1] >= cache->records ||
            (i > 0 && rows[i] <= rows[i - 1]))
            return FEDKD_FAIL(FEDKD_ERR_INVALID,
                              "%s: row %u requested (position %zu) is out of range 0..%u or not "
                              "ascending", cache->path, (unsigned)rows[i], i,
                              (unsigned)cache->records - 1);
        unsigned char *to = bytes + i * row_bytes;
        errno = 0;
        if (read_at(cache->fd, to, run * row_bytes,
                    cache->rows_offset + (uint64_t)rows[i] * row_bytes) != 0)
            return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: cannot read row %u: %s", cache->path,
                              (unsigned)rows[i], errno ? strerror(errno) : "file too short");
        for (size_t k = 0; k < run; k++)
            if (fedkd_crc32c(to + k * row_bytes, row_bytes) != cache->checks[rows[i + k]])
                return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                  "%s: row %u does not match its CRC-32C: the cache is corrupt",
                                  cache->path, (unsigned)rows[i + k]);
        i += run;
    }
    return FEDKD_OK;
}

void fedkd_idx_cache_close(fedkd_idx_cache **cache)
{
    if (!cache || !*cache) return;
    if ((*cache)->fd >= 0) close((*cache)->fd);
    free((*cache)->labels);
    free((*cache)->checks);
    free(*cache);
    *cache = NULL;
}

/* ---- writing ---------------------------------------------------------------- */

/* mkdir -p of dir; 0 when it exists afterwards. */
static int make_directory(const char *dir)
{
    char path[CACHE_MAX_PATH];
    int n = snprintf(path, sizeof path, "%s", dir);
    if (n <= 0 || (size_t)n >= sizeof path) return -1;
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST) return -1;
    struct stat info;
    return stat(path, &info) == 0 && S_ISDIR(info.st_mode) ? 0 : -1;
}

fedkd_idx_cache_writer *fedkd_idx_cache_writer_begin(const char *dir, const char *images_path,
                                                     const char *labels_path, uint32_t records,
                                                     uint32_t height, uint32_t width, char *why,
                                                     size_t why_size)
{
    why[0] = '\0';
    fedkd_idx_cache_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    w->fd = -1;
    w->records = records;
    w->height = height;
    w->width = width;
    w->row_bytes = (size_t)height * width;
    if (snprintf(w->images_path, sizeof w->images_path, "%s", images_path) >=
            (int)sizeof w->images_path ||
        snprintf(w->labels_path, sizeof w->labels_path, "%s", labels_path) >=
            (int)sizeof w->labels_path ||
        cache_path(dir, images_path, w->path, sizeof w->path, w->real_images,
                   sizeof w->real_images) != 0) {
        snprintf(why, why_size, "the cache name for %s in %s is too long", images_path, dir);
        goto fail;
    }
    if (identify(images_path, &w->images, why, why_size) != 0 ||
        identify(labels_path, &w->labels, why, why_size) != 0)
        goto fail;
    if (make_directory(dir) != 0) {
        snprintf(why, why_size, "cannot create the directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(w->temporary, sizeof w->temporary, "%s.%s.%ld.tmp", w->path, host, (long)getpid());
    w->fd = open(w->temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        snprintf(why, why_size, "cannot write %s: %s", w->temporary, strerror(errno));
        goto fail;
    }
    w->crc = images_header_crc(records, height, width);
    w->checks = malloc((size_t)records * sizeof *w->checks);
    if (!w->checks) {
        snprintf(why, why_size, "out of memory");
        goto fail;
    }
    w->header_bytes = CACHE_FIXED_BYTES + strlen(w->real_images) + 4;
    w->rows_offset = w->header_bytes + (uint64_t)records * 5u;
    return w;
fail:
    fedkd_idx_cache_writer_abort(&w);
    return NULL;
}

int fedkd_idx_cache_writer_add(fedkd_idx_cache_writer *w, const unsigned char *bytes, size_t n,
                               char *why, size_t why_size)
{
    if (w->failed) return -1;
    if (n > (size_t)(w->records - w->next)) {
        snprintf(why, why_size, "%s: more records than the header announced", w->images_path);
        w->failed = 1;
        return -1;
    }
    if (write_at(w->fd, bytes, n * w->row_bytes,
                 w->rows_offset + (uint64_t)w->next * w->row_bytes) != 0) {
        snprintf(why, why_size, "cannot write %s: %s", w->temporary, strerror(errno));
        w->failed = 1;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *row = bytes + i * w->row_bytes;
        w->crc = (uint32_t)crc32_z(w->crc, row, w->row_bytes);
        w->checks[w->next + i] = fedkd_crc32c(row, w->row_bytes);
    }
    w->next += (uint32_t)n;
    return 0;
}

/* The labels file inflated: its 8-byte header checked, then `records`
 * labels into labels. 0 on success. */
static int read_labels(const char *path, uint32_t records, unsigned char *labels)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) return -1;
    unsigned char header[8], extra;
    int ok = gzread(gz, header, 8) == 8 && get_u32(header) == 0x01080000u &&
             ((uint32_t)header[4] << 24 | (uint32_t)header[5] << 16 | (uint32_t)header[6] << 8 |
              header[7]) == records;
    size_t got = 0;
    while (ok && got < records) {
        int n = gzread(gz, labels + got, (unsigned)(records - got < (1u << 30) ? records - got
                                                                              : (1u << 30)));
        if (n <= 0) ok = 0;
        else got += (size_t)n;
    }
    if (ok && gzread(gz, &extra, 1) != 0) ok = 0;
    gzclose(gz);
    return ok ? 0 : -1;
}

/* Caches whose source file is gone (copies of a dataset in a temporary
 * directory, as tests make) are removed from `dir` when another cache is
 * written there, and so are temporary files of writers that died more than
 * a day ago: the directory does not grow without bound. */
static void remove_orphans(const char *dir, const char *keep)
{
    DIR *listing = opendir(dir);
    if (!listing) return;
    struct dirent *entry;
    char path[CACHE_MAX_PATH + 256], source[CACHE_MAX_PATH];
    time_t now = time(NULL);
    while ((entry = readdir(listing)) != NULL) {
        size_t length = strlen(entry->d_name);
        int is_cache = length > 6 && strcmp(entry->d_name + length - 6, ".cache") == 0;
        int is_temporary = length > 4 && strcmp(entry->d_name + length - 4, ".tmp") == 0 &&
                           strstr(entry->d_name, ".cache.") != NULL;
        if (!is_cache && !is_temporary) continue;
        int n = snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
        if (n < 0 || (size_t)n >= sizeof path || strcmp(path, keep) == 0) continue;
        struct stat info;
        if (is_temporary) {
            if (stat(path, &info) == 0 && now - info.st_mtime > 24 * 3600) unlink(path);
            continue;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        unsigned char fixed[CACHE_FIXED_BYTES];
        uint32_t length_of_path = 0;
        int ours = read_at(fd, fixed, sizeof fixed, 0) == 0 && memcmp(fixed, CACHE_MAGIC, 8) == 0 &&
                   (length_of_path = get_u32(fixed + 100)) < sizeof source &&
                   read_at(fd, source, length_of_path, CACHE_FIXED_BYTES) == 0;
        close(fd);
        if (!ours) continue;
        source[length_of_path] = '\0';
        if (stat(source, &info) != 0 && errno == ENOENT) unlink(path);
    }
    closedir(listing);
}

int fedkd_idx_cache_writer_finish(fedkd_idx_cache_writer **writer, char *why, size_t why_size)
{
    fedkd_idx_cache_writer *w = *writer;
    if (!w) return -1;
    int result = -1;
    unsigned char *labels = NULL, *table = NULL, *header = NULL;
    source_id images, labels_id;
    if (w->failed) goto done;
    if (w->next != w->records) {
        snprintf(why, why_size, "%s: only %u of %u records were read", w->images_path,
                 (unsigned)w->next, (unsigned)w->records);
        goto done;
    }
    labels = malloc(w->records);
    table = malloc((size_t)w->records * 4u);
    header = calloc(1, w->header_bytes);
    if (!labels || !table || !header) {
        snprintf(why, why_size, "out of memory");
        goto done;
    }
    if (read_labels(w->labels_path, w->records, labels) != 0) {
        snprintf(why, why_size, "%s: cannot read %u labels", w->labels_path, (unsigned)w->records);
        goto done;
    }
    /* The sources must not have changed under the run, and what was
     * written must be what they hold. */
    if (identify(w->images_path, &images, why, why_size) != 0 ||
        identify(w->labels_path, &labels_id, why, why_size) != 0)
        goto done;
    if (!same_source(&images, &w->images) || !same_source(&labels_id, &w->labels)) {
        snprintf(why, why_size, "%s or %s changed while it was read", w->images_path,
                 w->labels_path);
        goto done;
    }
    if (w->crc != w->images.crc ||
        w->images.isize != (uint32_t)(16u + (uint64_t)w->records * w->row_bytes) ||
        labels_file_crc(w->records, labels) != w->labels.crc) {
        snprintf(why, why_size, "the data read does not give the CRC-32 in the gzip trailer of "
                 "%s or %s (a file of several gzip members?)", w->images_path, w->labels_path);
        goto done;
    }
    for (uint32_t i = 0; i < w->records; i++) put_u32(table + 4 * (size_t)i, w->checks[i]);
    size_t path_length = strlen(w->real_images);
    memcpy(header, CACHE_MAGIC, 8);
    put_u32(header + 8, CACHE_VERSION);
    put_u32(header + 12, (uint32_t)w->header_bytes);
    put_u32(header + 16, w->records);
    put_u32(header + 20, w->height);
    put_u32(header + 24, w->width);
    put_id(header + 32, &w->images);
    put_id(header + 64, &w->labels);
    put_u32(header + 96, (uint32_t)crc32_z(0L, table, (size_t)w->records * 4u));
    put_u32(header + 100, (uint32_t)path_length);
    memcpy(header + CACHE_FIXED_BYTES, w->real_images, path_length);
    put_u32(header + w->header_bytes - 4,
            (uint32_t)crc32(0L, header, (uInt)(w->header_bytes - 4)));
    /* No fsync: a file cut short by a crash fails its checks when read and
     * is rewritten; the rename alone makes a reader see all or nothing. */
    if (write_at(w->fd, labels, w->records, w->header_bytes) != 0 ||
        write_at(w->fd, table, (size_t)w->records * 4u, w->header_bytes + w->records) != 0 ||
        write_at(w->fd, header, w->header_bytes, 0) != 0 || close(w->fd) != 0) {
        w->fd = -1;
        snprintf(why, why_size, "cannot write %s: %s", w->temporary, strerror(errno));
        goto done;
    }
    w->fd = -1;
    if (rename(w->temporary, w->path) != 0) {
        snprintf(why, why_size, "cannot rename %s to %s: %s", w->temporary, w->path,
                 strerror(errno));
        goto done;
    }
    w->temporary[0] = '\0';
    result = 0;
    char dir[CACHE_MAX_PATH + 64];
    snprintf(dir, sizeof dir, "%s", w->path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        remove_orphans(dir[0] ? dir : "/", w->path);
    }
done:
    free(labels);
    free(table);
    free(header);
    fedkd_idx_cache_writer_abort(writer);
    return result;
}

void fedkd_idx_cache_writer_abort(fedkd_idx_cache_writer **writer)
{
    if (!writer || !*writer) return;
    fedkd_idx_cache_writer *w = *writer;
    if (w->fd >= 0) close(w->fd);
    if (w->temporary[0]) unlink(w->temporary);
    free(w->checks);
    free(w);
    *writer = NULL;
}
