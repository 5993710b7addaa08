/* CIFAR-10 and CIFAR-100 binary files (include/fedkd/data/cifar.h).
 *
 * Every record has the same size, so a file's size says how many records
 * it holds and a record is found by its offset: labels are read in one
 * streamed pass, features only for the rows asked for. */
#include "fedkd/data/cifar.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "data/dataset_internal.h"
#include "fedkd/core/core.h"

#define CIFAR_MAX_FILES 5
#define CIFAR_CHUNK_RECORDS 1024
#define CIFAR100_COARSE_CLASSES 20
#define CIFAR_WHERE                                                                       \
    "download the binary version (%s) from https://www.cs.toronto.edu/~kriz/cifar.html, " \
    "extract it and set data.dir to the directory it makes (%s)"

/* Means and standard deviations of the 50,000 training images' pixels in
 * [0, 1], per channel (R, G, B). */
static const fedkd_cifar_variant cifar10 = {
    .name = "cifar10",
    .title = "CIFAR-10",
    .label_bytes = 1,
    .num_classes = 10,
    .subdirectory = "cifar-10-batches-bin",
    .archive = "cifar-10-binary.tar.gz",
    .train_files = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                    "data_batch_4.bin", "data_batch_5.bin"},
    .test_file = "test_batch.bin",
    .mean = {0.4914f, 0.4822f, 0.4465f},
    .std = {0.2470f, 0.2435f, 0.2616f},
};
static const fedkd_cifar_variant cifar100 = {
    .name = "cifar100",
    .title = "CIFAR-100",
    .label_bytes = 2,
    .num_classes = 100,
    .subdirectory = "cifar-100-binary",
    .archive = "cifar-100-binary.tar.gz",
    .train_files = {"train.bin"},
    .test_file = "test.bin",
    .mean = {0.5071f, 0.4865f, 0.4409f},
    .std = {0.2673f, 0.2564f, 0.2762f},
};

const fedkd_cifar_variant *fedkd_cifar_find(const char *name)
{
    if (strcmp(name, cifar10.name) == 0) return &cifar10;
    if (strcmp(name, cifar100.name) == 0) return &cifar100;
    return NULL;
}

typedef struct cifar_file {
    char path[4096];
    size_t records;
} cifar_file;

/* The files of one split, in order, as one sequence of records. */
typedef struct cifar_split {
    const fedkd_cifar_variant *variant;
    int num_files;
    cifar_file files[CIFAR_MAX_FILES];
    size_t total;
} cifar_split;

static size_t record_bytes(const fedkd_cifar_variant *variant)
{
    return (size_t)variant->label_bytes + FEDKD_CIFAR_PIXEL_BYTES;
}

/* The file exists and holds a whole, non-zero number of records. */
static fedkd_status cifar_file_check(const fedkd_cifar_variant *variant, const char *path,
                                     cifar_file *file)
{
    struct stat info;
    if (stat(path, &info) != 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t bytes = record_bytes(variant);
    long long size = (long long)info.st_size;
    if (size <= 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: the file is empty; expected %s records of %zu "
                          "bytes", path, variant->title, bytes);
    if (size % (long long)bytes != 0) {
        long long last = size / (long long)bytes;
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: %lld bytes is not a whole number of %zu-byte %s records "
                          "(%d label byte(s) + %d pixel bytes): record %lld, at byte offset "
                          "%lld, is cut short after %lld bytes",
                          path, size, bytes, variant->title, variant->label_bytes,
                          FEDKD_CIFAR_PIXEL_BYTES, last, last * (long long)bytes,
                          size % (long long)bytes);
    }
    snprintf(file->path, sizeof file->path, "%s", path);
    file->records = (size_t)(size / (long long)bytes);
    return FEDKD_OK;
}

static fedkd_status cifar_split_from_paths(const fedkd_cifar_variant *variant,
                                           const char *const *paths, int num_paths,
                                           cifar_split *split)
{
    memset(split, 0, sizeof *split);
    split->variant = variant;
    if (num_paths < 1 || num_paths > CIFAR_MAX_FILES)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: expected 1 to %d files, got %d", variant->title,
                          CIFAR_MAX_FILES, num_paths);
    for (int i = 0; i < num_paths; i++) {
        fedkd_status status = cifar_file_check(variant, paths[i], &split->files[i]);
        if (status) return status;
        split->total += split->files[i].records;
    }
    split->num_files = num_paths;
    return FEDKD_OK;
}

/* The split's files in `directory`, or in the subdirectory the archive
 * extracts to. */
static fedkd_status cifar_split_find(const fedkd_cifar_variant *variant, const char *directory,
                                     const char *split_name, cifar_split *split)
{
    const char *names[CIFAR_MAX_FILES];
    int n = 0;
    if (strcmp(split_name, "train") == 0) {
        for (int i = 0; i < CIFAR_MAX_FILES && variant->train_files[i]; i++)
            names[n++] = variant->train_files[i];
    } else if (strcmp(split_name, "test") == 0) {
        names[n++] = variant->test_file;
    } else {
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s split: expected \"train\" or \"test\", got \"%s\"",
                          variant->title, split_name);
    }
    char base[4096], paths[CIFAR_MAX_FILES][4096];
    const char *path_list[CIFAR_MAX_FILES];
    snprintf(base, sizeof base, "%s", directory);
    char probe[4096 + 64];
    snprintf(probe, sizeof probe, "%s/%s", base, names[0]);
    if (access(probe, F_OK) != 0) {
        snprintf(probe, sizeof probe, "%s/%s/%s", directory, variant->subdirectory, names[0]);
        if (access(probe, F_OK) != 0)
            return FEDKD_FAIL(FEDKD_ERR_IO,
                              "%s/%s: not found (nor in %s/%s); " CIFAR_WHERE, directory,
                              names[0], directory, variant->subdirectory, variant->archive,
                              variant->subdirectory);
        snprintf(base, sizeof base, "%s/%s", directory, variant->subdirectory);
    }
    for (int i = 0; i < n; i++) {
        int length = snprintf(paths[i], sizeof paths[i], "%s/%s", base, names[i]);
        if (length < 0 || (size_t)length >= sizeof paths[i])
            return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: directory name too long", directory);
        if (access(paths[i], F_OK) != 0)
            return FEDKD_FAIL(FEDKD_ERR_IO, "%s: not found, though %s/%s is there; " CIFAR_WHERE,
                              paths[i], base, names[0], variant->archive, variant->subdirectory);
        path_list[i] = paths[i];
    }
    return cifar_split_from_paths(variant, path_list, n, split);
}

/* The class of a record, checked: the (last) label byte, and for CIFAR-100
 * the coarse byte before it too. */
static fedkd_status cifar_label(const fedkd_cifar_variant *variant, const cifar_file *file,
                                size_t record, const unsigned char *bytes, int32_t *label)
{
    long long offset = (long long)record * (long long)record_bytes(variant);
    if (variant->label_bytes == 2 && bytes[0] >= CIFAR100_COARSE_CLASSES)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: coarse label %u of record %zu (byte offset %lld) is out of range: "
                          "%s has coarse classes 0..%d",
                          file->path, (unsigned)bytes[0], record, offset, variant->title,
                          CIFAR100_COARSE_CLASSES - 1);
    int which = variant->label_bytes - 1;
    unsigned value = bytes[which];
    if (value >= (unsigned)variant->num_classes)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: label %u of record %zu (byte offset %lld) is out of range: %s has "
                          "classes 0..%d",
                          file->path, value, record, offset + which, variant->title,
                          variant->num_classes - 1);
    *label = (int32_t)value;
    return FEDKD_OK;
}

static fedkd_status cifar_open(const cifar_file *file, FILE **out)
{
    *out = fopen(file->path, "rb");
    if (!*out) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open: %s", file->path, strerror(errno));
    return FEDKD_OK;
}

static fedkd_status cifar_read_failure(const cifar_file *file, FILE *stream, size_t record,
                                       size_t bytes)
{
    long long offset = (long long)record * (long long)bytes;
    if (ferror(stream))
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: read error at record %zu (byte offset %lld): %s",
                          file->path, record, offset, strerror(errno));
    return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                      "%s: the file ends inside record %zu (byte offset %lld); did it change "
                      "while being read?", file->path, record, offset);
}

/* Every label of the first `count` records, in one streamed pass. */
static fedkd_status cifar_read_labels(const cifar_split *split, size_t count, int32_t *labels)
{
    const fedkd_cifar_variant *variant = split->variant;
    size_t bytes = record_bytes(variant);
    unsigned char *chunk = malloc(CIFAR_CHUNK_RECORDS * bytes);
    if (!chunk) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading %s", variant->title);
    fedkd_status status = FEDKD_OK;
    size_t done = 0;
    for (int f = 0; !status && f < split->num_files && done < count; f++) {
        const cifar_file *file = &split->files[f];
        FILE *stream = NULL;
        status = cifar_open(file, &stream);
        size_t in_file = file->records < count - done ? file->records : count - done;
        for (size_t first = 0; !status && first < in_file; first += CIFAR_CHUNK_RECORDS) {
            size_t n = in_file - first < CIFAR_CHUNK_RECORDS ? in_file - first : CIFAR_CHUNK_RECORDS;
            size_t got = fread(chunk, bytes, n, stream);
            if (got != n) {
                status = cifar_read_failure(file, stream, first + got, bytes);
                break;
            }
            for (size_t r = 0; !status && r < n; r++)
                status = cifar_label(variant, file, first + r, chunk + r * bytes,
                                     &labels[done + first + r]);
        }
        if (stream) fclose(stream);
        done += in_file;
    }
    free(chunk);
    return status;
}

/* Records rows[0..n) (ascending, < count; all `count` when rows is NULL)
 * into dataset, seeking only where a row is not the next record. */
static fedkd_status cifar_read_rows(const cifar_split *split, size_t count, const uint32_t *rows,
                                    size_t n, int raw, fedkd_dataset *dataset)
{
    const fedkd_cifar_variant *variant = split->variant;
    size_t bytes = record_bytes(variant);
    unsigned char *record = malloc(bytes);
    if (!record) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading %s", variant->title);
    fedkd_status status = FEDKD_OK;
    FILE *stream = NULL;
    int open_file = -1;
    size_t file_first = 0;  /* global index of the open file's record 0 */
    size_t position = 0;    /* the open stream's next record */
    for (size_t i = 0; !status && i < n; i++) {
        size_t row = rows ? rows[i] : i;
        if (row >= count || (rows && i > 0 && rows[i] <= rows[i - 1])) {
            status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                                "%s: row %zu requested (position %zu) is out of range 0..%zu or "
                                "not ascending", split->files[0].path, row, i, count - 1);
            break;
        }
        while (open_file < 0 || row >= file_first + split->files[open_file].records) {
            if (open_file >= 0) file_first += split->files[open_file].records;
            if (stream) fclose(stream);
            stream = NULL;
            open_file++;
            status = cifar_open(&split->files[open_file], &stream);
            if (status) break;
            position = 0;
        }
        if (status) break;
        const cifar_file *file = &split->files[open_file];
        size_t local = row - file_first;
        if (local != position && fseeko(stream, (off_t)local * (off_t)bytes, SEEK_SET) != 0) {
            status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot seek to record %zu: %s", file->path,
                                local, strerror(errno));
            break;
        }
        if (fread(record, bytes, 1, stream) != 1) {
            status = cifar_read_failure(file, stream, local, bytes);
            break;
        }
        position = local + 1;
        status = cifar_label(variant, file, local, record, &dataset->labels[i]);
        float *to = dataset->features + i * FEDKD_CIFAR_PIXEL_BYTES;
        const unsigned char *from = record + variant->label_bytes;
        for (size_t b = 0; b < FEDKD_CIFAR_PIXEL_BYTES; b++) to[b] = (float)from[b] / 255.0f;
    }
    if (stream) fclose(stream);
    free(record);
    if (!status && !raw) fedkd_dataset_normalize_channels(dataset, variant->mean, variant->std);
    return status;
}

static size_t limited(size_t total, size_t limit)
{
    return limit > 0 && limit < total ? limit : total;
}

static fedkd_status cifar_load(fedkd_dataset **out, const cifar_split *split, size_t limit,
                               const uint32_t *rows, size_t num_rows, int raw)
{
    *out = NULL;
    size_t count = limited(split->total, limit);
    size_t n = rows ? num_rows : count;
    fedkd_shape shape = {.channels = 3, .height = FEDKD_CIFAR_SIDE, .width = FEDKD_CIFAR_SIDE};
    fedkd_dataset *dataset = NULL;
    fedkd_status status = fedkd_dataset_allocate(&dataset, n, shape, split->variant->num_classes,
                                                 split->files[0].path);
    if (!status) status = cifar_read_rows(split, count, rows, n, raw, dataset);
    if (status) {
        fedkd_dataset_destroy(&dataset);
        return status;
    }
    *out = dataset;
    return FEDKD_OK;
}

fedkd_status fedkd_cifar_labels(const fedkd_cifar_variant *variant, const char *directory,
                                const char *split_name, size_t limit, int32_t **labels,
                                size_t *count)
{
    *labels = NULL;
    *count = 0;
    cifar_split split;
    fedkd_status status = cifar_split_find(variant, directory, split_name, &split);
    if (status) return status;
    size_t n = limited(split.total, limit);
    int32_t *all = malloc(n * sizeof *all);
    if (!all) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu labels", n);
    status = cifar_read_labels(&split, n, all);
    if (status) {
        free(all);
        return status;
    }
    *labels = all;
    *count = n;
    return FEDKD_OK;
}

fedkd_status fedkd_cifar_load_rows(fedkd_dataset **out, const fedkd_cifar_variant *variant,
                                   const char *directory, const char *split_name, size_t limit,
                                   const uint32_t *rows, size_t num_rows)
{
    *out = NULL;
    cifar_split split;
    fedkd_status status = cifar_split_find(variant, directory, split_name, &split);
    if (status) return status;
    return cifar_load(out, &split, limit, rows, num_rows, 0);
}

fedkd_status fedkd_cifar_load_files(fedkd_dataset **out, const fedkd_cifar_variant *variant,
                                    const char *const *paths, int num_paths, size_t limit,
                                    int raw)
{
    *out = NULL;
    cifar_split split;
    fedkd_status status = cifar_split_from_paths(variant, paths, num_paths, &split);
    if (status) return status;
    return cifar_load(out, &split, limit, NULL, 0, raw);
}

void fedkd_dataset_normalize_channels(fedkd_dataset *dataset, const float *mean,
                                      const float *std)
{
    if (!dataset) return;
    size_t plane = (size_t)dataset->shape.height * (size_t)dataset->shape.width;
    int channels = dataset->shape.channels;
    for (int c = 0; c < channels; c++)
        if (!(std[c] > 0.0f)) return; /* a caller bug: leave the data untouched */
    for (size_t i = 0; i < dataset->count; i++)
        for (int c = 0; c < channels; c++) {
            float *x = dataset->features + (i * (size_t)channels + (size_t)c) * plane;
            for (size_t p = 0; p < plane; p++) x[p] = (x[p] - mean[c]) / std[c];
        }
}
