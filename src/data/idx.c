/* IDX files (the MNIST family's format), read through zlib so that gzipped
 * and plain files are handled alike.
 *
 * Layout: a big-endian uint32 magic (0x0000 0x08 = unsigned bytes, then the
 * number of dimensions), one big-endian uint32 per dimension, then the data
 * in row-major order. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/dataset_internal.h"
#include "data/idx_cache.h"
#include "fedkd/core/checked.h"
#include "fedkd/core/core.h"

#define IDX_IMAGES_MAGIC 0x00000803u /* unsigned bytes, 3 dimensions */
#define IDX_LABELS_MAGIC 0x00000801u /* unsigned bytes, 1 dimension */
/* Wider than any image dataset in this format; a larger value means the
 * header is garbage, and we would rather say so than try to allocate it. */
#define IDX_MAX_SIDE 4096u
/* 255 is kept out of the class range: some tools use it for "unlabelled". */
#define IDX_MAX_LABEL 254u
/* gzread takes an unsigned int length; stay well below it. */
#define IDX_MAX_READ ((size_t)1 << 30)
/* A larger zlib buffer than the 8 KiB default cuts the per-call overhead on
 * the 26 MB training images file. */
#define IDX_GZ_BUFFER (256u * 1024u)

typedef struct idx_file {
    gzFile gz;
    const char *path;
    unsigned long long offset; /* uncompressed bytes consumed so far */
} idx_file;

static fedkd_status idx_open(idx_file *file, const char *path)
{
    file->path = path;
    file->offset = 0;
    errno = 0;
    file->gz = gzopen(path, "rb");
    if (!file->gz) {
        if (errno == 0) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot allocate a zlib stream", path);
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    if (gzbuffer(file->gz, IDX_GZ_BUFFER) != 0) {
        gzclose(file->gz);
        file->gz = NULL;
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot set the zlib buffer size", path);
    }
    return FEDKD_OK;
}

static void idx_close(idx_file *file)
{
    if (file->gz) gzclose(file->gz);
    file->gz = NULL;
}

/* zlib's message without the "path: " prefix zlib puts in front of it. */
static const char *idx_zlib_message(idx_file *file, int *code)
{
    const char *message = gzerror(file->gz, code);
    size_t length = strlen(file->path);
    if (strncmp(message, file->path, length) == 0 && strncmp(message + length, ": ", 2) == 0)
        message += length + 2;
    return message;
}

static fedkd_status idx_zlib_failure(idx_file *file)
{
    int saved_errno = errno;
    int code = Z_OK;
    const char *message = idx_zlib_message(file, &code);
    switch (code) {
    case Z_ERRNO:
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: read error at byte offset %llu: %s", file->path,
                          file->offset, strerror(saved_errno));
    case Z_MEM_ERROR:
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: zlib ran out of memory", file->path);
    default:
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: corrupt gzip data after %llu uncompressed bytes: zlib error %d: %s",
                          file->path, file->offset, code, message);
    }
}

/* A note for truncation messages: zlib reports Z_BUF_ERROR when a gzip
 * stream stops before its end, which is worth telling apart from a complete
 * file whose header promises more records than it holds. */
static const char *idx_truncation_note(idx_file *file)
{
    int code = Z_OK;
    idx_zlib_message(file, &code);
    return code == Z_BUF_ERROR ? " (the gzip stream is cut short)" : "";
}

/* Reads up to `bytes`; *got < bytes means the data ended. Errors other than
 * a plain end of data fail here. */
static fedkd_status idx_read(idx_file *file, void *buffer, size_t bytes, size_t *got)
{
    unsigned char *cursor = buffer;
    *got = 0;
    while (*got < bytes) {
        size_t want = bytes - *got;
        if (want > IDX_MAX_READ) want = IDX_MAX_READ;
        int n = gzread(file->gz, cursor + *got, (unsigned)want);
        if (n < 0) return idx_zlib_failure(file);
        if (n == 0) break;
        *got += (size_t)n;
        file->offset += (unsigned long long)n;
    }
    if (*got < bytes) {
        int code = Z_OK;
        gzerror(file->gz, &code);
        if (code != Z_OK && code != Z_BUF_ERROR) return idx_zlib_failure(file);
    }
    return FEDKD_OK;
}

static uint32_t idx_big_endian_u32(const unsigned char *bytes)
{
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 |
           (uint32_t)bytes[3];
}

static const char *idx_magic_name(uint32_t magic)
{
    if (magic == IDX_IMAGES_MAGIC) return "IDX images: unsigned bytes, 3 dimensions";
    if (magic == IDX_LABELS_MAGIC) return "IDX labels: unsigned bytes, 1 dimension";
    return "unknown";
}

/* Reads and checks the magic number and the `rank` dimensions. */
static fedkd_status idx_read_header(idx_file *file, uint32_t expected_magic, int rank,
                                    uint32_t *dims)
{
    unsigned char header[4 * 4];
    size_t header_bytes = 4 * (size_t)(rank + 1);
    size_t got = 0;
    fedkd_status status = idx_read(file, header, header_bytes, &got);
    if (status != FEDKD_OK) return status;
    if (got >= 4) {
        uint32_t magic = idx_big_endian_u32(header);
        if (magic != expected_magic)
            return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                              "%s: bad magic number 0x%08x (%s) at byte offset 0, expected "
                              "0x%08x (%s)",
                              file->path, (unsigned)magic, idx_magic_name(magic),
                              (unsigned)expected_magic, idx_magic_name(expected_magic));
    }
    if (got < header_bytes)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: file ends at byte offset %zu, inside the %zu-byte IDX header%s",
                          file->path, got, header_bytes, idx_truncation_note(file));
    for (int d = 0; d < rank; d++) dims[d] = idx_big_endian_u32(header + 4 * (d + 1));
    return FEDKD_OK;
}

/* After the last record: nothing more, and for gzip a valid trailer (this is
 * where zlib checks the CRC). */
static fedkd_status idx_expect_end(idx_file *file, uint32_t records)
{
    unsigned char extra;
    size_t got = 0;
    fedkd_status status = idx_read(file, &extra, 1, &got);
    if (status != FEDKD_OK) return status;
    if (got != 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: unexpected data at byte offset %llu, after the %u records the "
                          "header announces",
                          file->path, file->offset - 1, (unsigned)records);
    int code = Z_OK;
    const char *message = idx_zlib_message(file, &code);
    if (code != Z_OK)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: gzip stream ends early after the last record: %s",
                          file->path, message);
    return FEDKD_OK;
}

/* Streams the images in chunks of records and keeps only `rows` (ascending,
 * all of them when rows is NULL), so a rank hosting a few clients never
 * holds the whole file in memory. */
#define IDX_CHUNK_RECORDS 2048

static fedkd_status idx_load_selected(fedkd_dataset **out, const char *images_path,
                                      const char *labels_path, size_t limit,
                                      const uint32_t *selected, size_t num_selected,
                                      int32_t **all_labels, size_t *all_count)
{
    if (!out || !images_path || !labels_path)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "IDX load: NULL argument");
    *out = NULL;
    idx_file images = {0}, labels = {0};
    unsigned char *pixels = NULL, *label_bytes = NULL;
    fedkd_dataset *dataset = NULL;
    fedkd_status status;

    status = idx_open(&images, images_path);
    if (status != FEDKD_OK) goto fail;
    status = idx_open(&labels, labels_path);
    if (status != FEDKD_OK) goto fail;

    uint32_t image_dims[3] = {0, 0, 0}, label_count = 0;
    status = idx_read_header(&images, IDX_IMAGES_MAGIC, 3, image_dims);
    if (status != FEDKD_OK) goto fail;
    status = idx_read_header(&labels, IDX_LABELS_MAGIC, 1, &label_count);
    if (status != FEDKD_OK) goto fail;

    uint32_t records = image_dims[0], rows = image_dims[1], cols = image_dims[2];
    if (records == 0 || rows == 0 || cols == 0 || rows > IDX_MAX_SIDE || cols > IDX_MAX_SIDE) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: header announces %u images of %u x %u pixels; expected at "
                            "least one image with sides in 1..%u",
                            images_path, (unsigned)records, (unsigned)rows, (unsigned)cols,
                            IDX_MAX_SIDE);
        goto fail;
    }
    if (label_count != records) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "images file %s has %u records but labels file %s has %u",
                            images_path, (unsigned)records, labels_path, (unsigned)label_count);
        goto fail;
    }

    /* What the header claims must fit the file, inflated (deflate expands
     * at most 1032 times), before anything is allocated for it. A plain file
     * claiming a little more than it holds is reported later, at the offset
     * where it ends, and a limit below that still loads. */
    uint64_t image_extents[3] = {records, rows, cols}, label_extents[1] = {label_count};
    uint64_t images_bytes = fedkd_file_bytes(images_path);
    uint64_t labels_bytes = fedkd_file_bytes(labels_path);
    status = fedkd_size_of_extents(images_path, "the header", 3, image_extents, 1, 0,
                                   images_bytes * 1032,
                                   NULL, NULL);
    if (status == FEDKD_OK)
        status = fedkd_size_of_extents(labels_path, "the header", 1, label_extents, 1, 0,
                                       labels_bytes * 1032,
                                       NULL, NULL);
    if (status != FEDKD_OK) goto fail;
    size_t count = (limit > 0 && limit < records) ? limit : records;
    size_t image_bytes = (size_t)rows * cols;
    size_t kept = selected ? num_selected : count;
    for (size_t i = 0; selected && i < num_selected; i++) {
        if (selected[i] >= count || (i > 0 && selected[i] <= selected[i - 1])) {
            status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                                "%s: row %u requested (position %zu) is out of range 0..%zu or "
                                "not ascending", images_path, (unsigned)selected[i], i, count - 1);
            goto fail;
        }
    }
    fedkd_shape shape = {.channels = 1, .height = (int)rows, .width = (int)cols};
    status = fedkd_dataset_allocate(&dataset, kept, shape, 0, images_path);
    if (status != FEDKD_OK) goto fail;
    size_t chunk_records = count < IDX_CHUNK_RECORDS ? count : IDX_CHUNK_RECORDS;
    pixels = malloc(chunk_records * image_bytes);
    label_bytes = malloc(count);
    if (!pixels || !label_bytes) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot allocate %zu images", images_path, count);
        goto fail;
    }

    size_t got = 0, next_kept = 0;
    /* Nothing selected: only the labels are wanted, skip the pixels. */
    size_t image_records = (selected && num_selected == 0) ? 0 : count;
    for (size_t first = 0; first < image_records; first += chunk_records) {
        size_t n = count - first < chunk_records ? count - first : chunk_records;
        status = idx_read(&images, pixels, n * image_bytes, &got);
        if (status != FEDKD_OK) goto fail;
        if (got < n * image_bytes) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: data ends at byte offset %llu, inside image record %zu of %u "
                                "(%zu bytes each after the 16-byte header)%s",
                                images_path, images.offset, first + got / image_bytes,
                                (unsigned)records, image_bytes, idx_truncation_note(&images));
            goto fail;
        }
        for (size_t r = 0; r < n; r++) {
            size_t record = first + r;
            if (selected && (next_kept >= num_selected || selected[next_kept] != record)) continue;
            float *to = dataset->features + next_kept * image_bytes;
            const unsigned char *from = pixels + r * image_bytes;
            for (size_t b = 0; b < image_bytes; b++) to[b] = (float)from[b] / 255.0f;
            next_kept++;
        }
    }
    status = idx_read(&labels, label_bytes, count, &got);
    if (status != FEDKD_OK) goto fail;
    if (got < count) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: data ends at byte offset %llu, at label record %zu of %u%s",
                            labels_path, labels.offset, got, (unsigned)records,
                            idx_truncation_note(&labels));
        goto fail;
    }
    if (count == records && image_records == count) {
        status = idx_expect_end(&images, records);
        if (status != FEDKD_OK) goto fail;
        status = idx_expect_end(&labels, records);
        if (status != FEDKD_OK) goto fail;
    }

    unsigned max_label = 0;
    for (size_t i = 0; i < count; i++) {
        unsigned label = label_bytes[i];
        if (label > IDX_MAX_LABEL) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: label %u at record %zu (byte offset %zu) is out of range: "
                                "expected a class index up to %u",
                                labels_path, label, i, 8 + i, IDX_MAX_LABEL);
            goto fail;
        }
        if (label > max_label) max_label = label;
    }
    for (size_t i = 0; i < kept; i++)
        dataset->labels[i] = (int32_t)label_bytes[selected ? selected[i] : i];
    dataset->num_classes = (int)max_label + 1;
    if (all_labels) {
        *all_labels = malloc(count * sizeof(int32_t));
        if (!*all_labels) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot allocate %zu labels", labels_path, count);
            goto fail;
        }
        for (size_t i = 0; i < count; i++) (*all_labels)[i] = (int32_t)label_bytes[i];
        *all_count = count;
    }

    free(pixels);
    free(label_bytes);
    idx_close(&images);
    idx_close(&labels);
    *out = dataset;
    return FEDKD_OK;

fail:
    free(pixels);
    free(label_bytes);
    idx_close(&images);
    idx_close(&labels);
    fedkd_dataset_destroy(&dataset);
    return status;
}

fedkd_status fedkd_idx_load(fedkd_dataset **out, const char *images_path,
                            const char *labels_path, size_t limit)
{
    return idx_load_selected(out, images_path, labels_path, limit, NULL, 0, NULL, NULL);
}

fedkd_status fedkd_idx_load_rows(fedkd_dataset **out, const char *images_path,
                                 const char *labels_path, size_t limit, const uint32_t *rows,
                                 size_t num_rows)
{
    return idx_load_selected(out, images_path, labels_path, limit, rows, num_rows, NULL, NULL);
}

/* ---- A stream of raw image records (fedkd_client_set_load_shared) -------- */

struct fedkd_row_stream {
    idx_file images;
    char path[4096];
    uint32_t records;     /* in the file */
    size_t count;         /* records the stream yields: the limit applied */
    size_t record_bytes;
    size_t next;          /* records read so far */
    uint32_t height, width;
    fedkd_idx_cache_writer *cache; /* NULL: no cache written */
};

/* A cache that could not be written: said, and the run goes on. */
static void warn_no_cache(const char *why)
{
    fedkd_log_warn("data.cache_dir: %s; going on without the data cache", why);
}

fedkd_status fedkd_idx_stream_open_cached(fedkd_row_stream **out, const char *images_path,
                                          const char *labels_path, size_t limit,
                                          const char *cache_dir)
{
    fedkd_status status = fedkd_idx_stream_open(out, images_path, limit);
    fedkd_row_stream *s = *out;
    /* Only a whole file is cached. */
    if (status || !cache_dir || !cache_dir[0] || s->count != s->records) return status;
    char why[1024];
    s->cache = fedkd_idx_cache_writer_begin(cache_dir, images_path, labels_path, s->records,
                                            s->height, s->width, why,
                                            sizeof why);
    if (!s->cache) warn_no_cache(why);
    return FEDKD_OK;
}

fedkd_status fedkd_idx_stream_open(fedkd_row_stream **out, const char *images_path, size_t limit)
{
    *out = NULL;
    fedkd_row_stream *s = calloc(1, sizeof *s);
    if (!s) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for a reader", images_path);
    snprintf(s->path, sizeof s->path, "%s", images_path);
    fedkd_status status = idx_open(&s->images, s->path);
    uint32_t dims[3] = {0, 0, 0};
    if (!status) status = idx_read_header(&s->images, IDX_IMAGES_MAGIC, 3, dims);
    if (!status && (dims[0] == 0 || dims[1] == 0 || dims[2] == 0 || dims[1] > IDX_MAX_SIDE ||
                    dims[2] > IDX_MAX_SIDE))
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: header announces %u images of %u x %u pixels; expected at "
                            "least one image with sides in 1..%u",
                            images_path, (unsigned)dims[0], (unsigned)dims[1], (unsigned)dims[2],
                            IDX_MAX_SIDE);
    if (status) {
        fedkd_row_stream_close(&s);
        return status;
    }
    s->records = dims[0];
    s->count = (limit > 0 && limit < s->records) ? limit : s->records;
    s->record_bytes = (size_t)dims[1] * dims[2];
    s->height = dims[1];
    s->width = dims[2];
    *out = s;
    return FEDKD_OK;
}

size_t fedkd_row_stream_count(const fedkd_row_stream *s) { return s->count; }

size_t fedkd_row_stream_row_bytes(const fedkd_row_stream *s) { return s->record_bytes; }

fedkd_status fedkd_row_stream_read(fedkd_row_stream *s, unsigned char *bytes, size_t n)
{
    if (n > s->count - s->next)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: %zu records asked for, %zu left to read",
                          s->path, n, s->count - s->next);
    size_t got = 0;
    fedkd_status status = idx_read(&s->images, bytes, n * s->record_bytes, &got);
    if (status) return status;
    if (got < n * s->record_bytes)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: data ends at byte offset %llu, inside image record %zu of %u "
                          "(%zu bytes each after the 16-byte header)%s",
                          s->path, s->images.offset, s->next + got / s->record_bytes,
                          (unsigned)s->records, s->record_bytes, idx_truncation_note(&s->images));
    s->next += n;
    char why[1024];
    if (s->cache && fedkd_idx_cache_writer_add(s->cache, bytes, n, why, sizeof why) != 0) {
        warn_no_cache(why);
        fedkd_idx_cache_writer_abort(&s->cache);
    }
    /* The whole file read: nothing may follow, and gzip's CRC must hold. */
    if (s->next == s->count && s->count == s->records) {
        status = idx_expect_end(&s->images, s->records);
        if (!status && s->cache && fedkd_idx_cache_writer_finish(&s->cache, why, sizeof why) != 0)
            warn_no_cache(why);
    }
    return status;
}

void fedkd_row_stream_close(fedkd_row_stream **s)
{
    if (!*s) return;
    fedkd_idx_cache_writer_abort(&(*s)->cache);
    idx_close(&(*s)->images);
    free(*s);
    *s = NULL;
}

/* ---- Fashion-MNIST --------------------------------------------------------- */

#define FASHION_MNIST_CLASSES 10
#define FASHION_MNIST_INSTALL_HINT                                                      \
    "install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (files go to " \
    "/usr/share/datasets/fashion-mnist) or set data.dir"

/* Finds "<directory>/<prefix>-<kind>-ubyte.gz", or the same name without
 * ".gz". */
static fedkd_status fashion_mnist_find(char *path, size_t size, const char *directory,
                                       const char *prefix, const char *kind)
{
    int length = snprintf(path, size, "%s/%s-%s-ubyte.gz", directory, prefix, kind);
    if (length < 0 || (size_t)length >= size)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: directory name too long", directory);
    if (access(path, F_OK) == 0) return FEDKD_OK;
    path[length - 3] = '\0';
    if (access(path, F_OK) == 0) return FEDKD_OK;
    path[length - 3] = '.';
    return FEDKD_FAIL(FEDKD_ERR_IO, "%s: not found; " FASHION_MNIST_INSTALL_HINT, path);
}

static fedkd_status fashion_mnist_load(fedkd_dataset **out, const char *directory,
                                       const char *split, size_t limit, const uint32_t *rows,
                                       size_t num_rows, int32_t **all_labels, size_t *all_count);

fedkd_status fedkd_fashion_mnist_load(fedkd_dataset **out, const char *directory,
                                      const char *split, size_t limit)
{
    return fashion_mnist_load(out, directory, split, limit, NULL, 0, NULL, NULL);
}

fedkd_status fedkd_fashion_mnist_load_rows(fedkd_dataset **out, const char *directory,
                                           const char *split, size_t limit, const uint32_t *rows,
                                           size_t num_rows)
{
    return fashion_mnist_load(out, directory, split, limit, rows, num_rows, NULL, NULL);
}

fedkd_status fedkd_fashion_mnist_labels(const char *directory, const char *split, size_t limit,
                                        int32_t **labels, size_t *count, fedkd_shape *shape)
{
    static const uint32_t no_rows[1] = {0};
    fedkd_dataset *empty = NULL;
    *labels = NULL;
    *count = 0;
    fedkd_status status =
        fashion_mnist_load(&empty, directory, split, limit, no_rows, 0, labels, count);
    if (status) return status;
    *shape = empty->shape;
    fedkd_dataset_destroy(&empty);
    return FEDKD_OK;
}

fedkd_status fedkd_fashion_mnist_stream_open(fedkd_row_stream **out, const char *directory,
                                             size_t limit, const char *cache_dir)
{
    *out = NULL;
    char images_path[4096], labels_path[4096];
    fedkd_status status =
        fashion_mnist_find(images_path, sizeof images_path, directory, "train", "images-idx3");
    if (!status)
        status = fashion_mnist_find(labels_path, sizeof labels_path, directory, "train",
                                    "labels-idx1");
    if (status) return status;
    return fedkd_idx_stream_open_cached(out, images_path, labels_path, limit, cache_dir);
}

fedkd_status fedkd_fashion_mnist_cache_open(fedkd_idx_cache **out, const char *directory,
                                            const char *split, const char *cache_dir, char *why,
                                            size_t why_size)
{
    *out = NULL;
    const char *prefix = strcmp(split, "test") == 0 ? "t10k" : "train";
    char images_path[4096], labels_path[4096];
    snprintf(why, why_size, "no cache directory");
    if (!cache_dir || !cache_dir[0]) return FEDKD_OK;
    /* Files that are missing are reported by the plain load. */
    if (fashion_mnist_find(images_path, sizeof images_path, directory, prefix, "images-idx3") ||
        fashion_mnist_find(labels_path, sizeof labels_path, directory, prefix, "labels-idx1")) {
        fedkd_error_clear();
        return FEDKD_OK;
    }
    fedkd_status status =
        fedkd_idx_cache_open(out, cache_dir, images_path, labels_path, why, why_size);
    if (status || !*out) return status;
    /* Labels out of range: the plain load reports them. */
    const unsigned char *labels = fedkd_idx_cache_labels(*out);
    for (uint32_t i = 0; i < fedkd_idx_cache_records(*out); i++)
        if (labels[i] >= FASHION_MNIST_CLASSES) {
            snprintf(why, why_size, "label %u at record %u is out of range", labels[i], i);
            fedkd_idx_cache_close(out);
            break;
        }
    return FEDKD_OK;
}

/* Rows in chunks of this many: the bytes of one chunk (200 KB of
 * Fashion-MNIST) are held at a time, in a buffer that stays in the cache. */
#define CACHED_CHUNK_ROWS 256

/* After a plain load of a whole split: its cache written by a second pass
 * over the images. Nothing here fails the load. */
static void write_cache(const char *directory, const char *split, size_t limit,
                        const char *cache_dir)
{
    const char *prefix = strcmp(split, "test") == 0 ? "t10k" : "train";
    char images_path[4096], labels_path[4096];
    if (!cache_dir || !cache_dir[0] ||
        fashion_mnist_find(images_path, sizeof images_path, directory, prefix, "images-idx3") ||
        fashion_mnist_find(labels_path, sizeof labels_path, directory, prefix, "labels-idx1")) {
        fedkd_error_clear();
        return;
    }
    fedkd_row_stream *stream = NULL;
    unsigned char *bytes = NULL;
    fedkd_status status =
        fedkd_idx_stream_open_cached(&stream, images_path, labels_path, limit, cache_dir);
    if (!status && (!stream->cache || stream->count != stream->records)) goto done;
    size_t chunk = CACHED_CHUNK_ROWS;
    if (!status) bytes = malloc(chunk * stream->record_bytes);
    for (size_t first = 0; !status && bytes && first < stream->count; first += chunk) {
        size_t n = stream->count - first < chunk ? stream->count - first : chunk;
        status = fedkd_row_stream_read(stream, bytes, n);
    }
done:
    if (status) fedkd_error_clear();
    free(bytes);
    fedkd_row_stream_close(&stream);
}

/* A whole split (up to `limit` records) from its cache, or, with none to
 * trust, by a plain load and then a second pass over the images that
 * writes the cache (the test set: 7.8 MB inflated, once per cache).
 * The features are decoded as fedkd_fashion_mnist_load's: the same bits. */
static fedkd_status fashion_mnist_load_cached(fedkd_dataset **out, const char *directory,
                                              const char *split, size_t limit,
                                              const char *cache_dir)
{
    *out = NULL;
    char why[1024];
    fedkd_idx_cache *cache = NULL;
    unsigned char *bytes = NULL;
    uint32_t *rows = NULL;
    fedkd_dataset *dataset = NULL;
    fedkd_status status =
        fedkd_fashion_mnist_cache_open(&cache, directory, split, cache_dir, why, sizeof why);
    if (status) return status;
    if (!cache) {
        status = fashion_mnist_load(out, directory, split, limit, NULL, 0, NULL, NULL);
        if (!status) write_cache(directory, split, limit, cache_dir);
        return status;
    }
    size_t records = fedkd_idx_cache_records(cache);
    size_t count = limit > 0 && limit < records ? limit : records;
    fedkd_shape shape = {.channels = 1, .height = (int)fedkd_idx_cache_height(cache),
                         .width = (int)fedkd_idx_cache_width(cache)};
    size_t row_bytes = fedkd_shape_size(shape);
    char images_path[4096];
    status = fashion_mnist_find(images_path, sizeof images_path, directory,
                                strcmp(split, "test") == 0 ? "t10k" : "train", "images-idx3");
    if (!status) status = fedkd_dataset_allocate(&dataset, count, shape, FASHION_MNIST_CLASSES,
                                                 images_path);
    size_t chunk = count < CACHED_CHUNK_ROWS ? count : CACHED_CHUNK_ROWS;
    if (!status) {
        bytes = malloc(chunk * row_bytes);
        rows = malloc(chunk * sizeof *rows);
        if (!bytes || !rows)
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for %zu images", images_path,
                                chunk);
    }
    for (size_t first = 0; !status && first < count; first += chunk) {
        size_t n = count - first < chunk ? count - first : chunk;
        for (size_t i = 0; i < n; i++) rows[i] = (uint32_t)(first + i);
        status = fedkd_idx_cache_read_rows(cache, rows, n, bytes);
        if (status) break;
        fedkd_fashion_mnist_decode(bytes, n * row_bytes, dataset->features + first * row_bytes);
    }
    if (!status) {
        const unsigned char *label_bytes = fedkd_idx_cache_labels(cache);
        for (size_t i = 0; i < count; i++) dataset->labels[i] = label_bytes[i];
    }
    if (status == FEDKD_ERR_FORMAT) {
        /* A corrupt cache: said, and the split read from its gzip file. */
        fedkd_log_warn("data.cache_dir: %s; reading the gzip file instead",
                       fedkd_error_message());
        fedkd_error_clear();
        fedkd_dataset_destroy(&dataset);
        fedkd_idx_cache_close(&cache);
        status = fashion_mnist_load(&dataset, directory, split, limit, NULL, 0, NULL, NULL);
        /* Written anew, or every later run would meet the same bad row. */
        if (!status) write_cache(directory, split, limit, cache_dir);
    }
    free(bytes);
    free(rows);
    fedkd_idx_cache_close(&cache);
    if (status) {
        fedkd_dataset_destroy(&dataset);
        return status;
    }
    *out = dataset;
    return FEDKD_OK;
}

fedkd_status fedkd_fashion_mnist_load_split(fedkd_dataset **out, const char *directory,
                                            const char *split, size_t limit,
                                            const char *cache_dir)
{
    return fashion_mnist_load_cached(out, directory, split, limit, cache_dir);
}

void fedkd_fashion_mnist_decode(const unsigned char *bytes, size_t count, float *features)
{
    /* Each byte value's float computed once, by the operations
     * idx_load_selected and fedkd_dataset_normalize apply: the same bits. */
    static float table[256];
    static int ready = 0;
    if (!ready) {
        for (int b = 0; b < 256; b++) {
            float scaled = (float)b / 255.0f;
            table[b] = (scaled - FEDKD_FASHION_MNIST_MEAN) / FEDKD_FASHION_MNIST_STD;
        }
        ready = 1;
    }
    for (size_t i = 0; i < count; i++) features[i] = table[bytes[i]];
}

static fedkd_status fashion_mnist_load(fedkd_dataset **out, const char *directory,
                                       const char *split, size_t limit, const uint32_t *rows,
                                       size_t num_rows, int32_t **all_labels, size_t *all_count)
{
    if (!out || !directory || !split)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "Fashion-MNIST load: NULL argument");
    *out = NULL;
    const char *prefix;
    if (strcmp(split, "train") == 0)
        prefix = "train";
    else if (strcmp(split, "test") == 0)
        prefix = "t10k";
    else
        return FEDKD_FAIL(FEDKD_ERR_INVALID,
                          "Fashion-MNIST split: expected \"train\" or \"test\", got \"%s\"", split);

    struct stat info;
    if (stat(directory, &info) != 0 || !S_ISDIR(info.st_mode))
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: not found; " FASHION_MNIST_INSTALL_HINT, directory);

    char images_path[4096], labels_path[4096];
    fedkd_status status =
        fashion_mnist_find(images_path, sizeof images_path, directory, prefix, "images-idx3");
    if (status != FEDKD_OK) return status;
    status = fashion_mnist_find(labels_path, sizeof labels_path, directory, prefix, "labels-idx1");
    if (status != FEDKD_OK) return status;

    fedkd_dataset *dataset = NULL;
    status = idx_load_selected(&dataset, images_path, labels_path, limit, rows, num_rows,
                               all_labels, all_count);
    if (status != FEDKD_OK) return status;
    /* Check every label of the file when all were read, else the kept ones. */
    const int32_t *checked = all_labels ? *all_labels : dataset->labels;
    size_t num_checked = all_labels ? *all_count : dataset->count;
    for (size_t i = 0; i < num_checked; i++) {
        if (checked[i] >= FASHION_MNIST_CLASSES) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: label %d at record %zu is out of range: Fashion-MNIST has "
                                "classes 0..%d",
                                labels_path, (int)checked[i], i, FASHION_MNIST_CLASSES - 1);
            fedkd_dataset_destroy(&dataset);
            if (all_labels) {
                free(*all_labels);
                *all_labels = NULL;
            }
            return status;
        }
    }
    /* A small `limit` may miss some classes; the task still has all ten. */
    dataset->num_classes = FASHION_MNIST_CLASSES;
    fedkd_dataset_normalize(dataset, FEDKD_FASHION_MNIST_MEAN, FEDKD_FASHION_MNIST_STD);
    *out = dataset;
    return FEDKD_OK;
}
