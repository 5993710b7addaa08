/* The CIFAR-10 / CIFAR-100 reader on small files written here in exactly
 * the official binary format: labels, chosen rows across files, the pixel
 * planes and the per-channel normalisation, the limit, the subdirectory the
 * archive extracts to; a file of the wrong size, a label out of range
 * (fine and coarse), a missing directory; the converter's HDF5 file.
 *
 *   test_cifar CIFAR2H5        the tests (CIFAR2H5: the converter binary)
 *   test_cifar write DIR N     writes a CIFAR-10 set of N training records
 *                              per batch file (and N test records) into DIR,
 *                              for the federation tests */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fedkd/core/core.h"
#include "fedkd/data/cifar.h"
#include "fedkd/data/data.h"
#include "../test_util.h"

#define RECORD_PIXELS FEDKD_CIFAR_PIXEL_BYTES

/* The pixel byte of (file, record, position): varied, reproducible. */
static unsigned char pixel_value(int file, size_t record, size_t position)
{
    return (unsigned char)((file * 31 + record * 7 + position * 13 + position / 1024 * 5) & 255);
}

/* Writes `records` records; the label of record r is labels[r], CIFAR-100's
 * coarse byte fine / 5. extra > 0 appends that many stray bytes. */
static int write_file(const char *path, int label_bytes, int file, const int *labels,
                      size_t records, size_t extra)
{
    FILE *out = fopen(path, "wb");
    if (!out) return -1;
    for (size_t r = 0; r < records; r++) {
        if (label_bytes == 2) fputc(labels[r] / 5, out);
        fputc(labels[r], out);
        for (size_t p = 0; p < RECORD_PIXELS; p++) fputc(pixel_value(file, r, p), out);
    }
    for (size_t e = 0; e < extra; e++) fputc(0, out);
    return fclose(out);
}

/* CIFAR-10 batches 1..5 with sizes[0..4] records, test_batch with sizes[5];
 * the label of record r of file f is (f + 3 r) mod 10. */
static int write_cifar10(const char *dir, const size_t *sizes)
{
    static const char *names[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                   "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    for (int f = 0; f < 6; f++) {
        int labels[256];
        for (size_t r = 0; r < sizes[f]; r++) labels[r] = (int)((f + 3 * r) % 10);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[f]);
        if (write_file(path, 1, f, labels, sizes[f], 0)) return -1;
    }
    return 0;
}

static void check_cifar10(const char *work)
{
    const fedkd_cifar_variant *v = fedkd_cifar_find("cifar10");
    CHECK(v && v->num_classes == 10 && v->label_bytes == 1, "cifar10 variant");
    CHECK(fedkd_cifar_find("cifar-10") == NULL, "an unknown name is refused");
    char dir[256];
    snprintf(dir, sizeof dir, "%s/c10", work);
    mkdir(dir, 0755);
    const size_t sizes[6] = {3, 2, 4, 1, 2, 5};
    CHECK(write_cifar10(dir, sizes) == 0, "writing the files");

    int32_t *labels = NULL;
    size_t count = 0;
    fedkd_status status = fedkd_cifar_labels(v, dir, "train", 0, &labels, &count);
    CHECK(status == FEDKD_OK, "labels: %s", fedkd_error_message());
    CHECK(count == 12, "12 training records, got %zu", count);
    /* Record 3 is file 1 (data_batch_2) record 0: label (1 + 0) mod 10;
     * record 5 is file 2 record 0, record 11 file 4 record 1. */
    if (!status)
        CHECK(labels[0] == 0 && labels[3] == 1 && labels[5] == 2 && labels[11] == 7,
              "labels in file order");
    free(labels);
    status = fedkd_cifar_labels(v, dir, "train", 4, &labels, &count);
    CHECK(status == FEDKD_OK && count == 4, "limit 4 gave %zu", count);
    free(labels);

    /* Rows across files: 1 (file 0 record 1), 5 (file 2 record 0), 10
     * (file 4 record 0). */
    uint32_t rows[3] = {1, 5, 10};
    fedkd_dataset *d = NULL;
    status = fedkd_cifar_load_rows(&d, v, dir, "train", 0, rows, 3);
    CHECK(status == FEDKD_OK, "rows: %s", fedkd_error_message());
    if (!status) {
        CHECK(d->count == 3 && d->shape.channels == 3 && d->shape.height == 32 &&
                  d->shape.width == 32 && d->num_classes == 10,
              "shape");
        CHECK(d->labels[0] == 3 && d->labels[1] == 2 && d->labels[2] == 4, "row labels %d %d %d",
              d->labels[0], d->labels[1], d->labels[2]);
        const int file_of[3] = {0, 2, 4};
        const size_t record_of[3] = {1, 0, 0};
        double worst = 0.0;
        for (int i = 0; i < 3; i++)
            for (size_t p = 0; p < RECORD_PIXELS; p += 97) {
                int c = (int)(p / 1024);
                float raw = (float)pixel_value(file_of[i], record_of[i], p) / 255.0f;
                float want = (raw - v->mean[c]) / v->std[c];
                worst = fmax(worst, fabs((double)d->features[(size_t)i * RECORD_PIXELS + p] - (double)want));
            }
        CHECK(worst == 0.0, "pixels and per-channel normalisation off by %g", worst);
    }
    fedkd_dataset_destroy(&d);
    status = fedkd_cifar_load_rows(&d, v, dir, "test", 0, NULL, 0);
    CHECK(status == FEDKD_OK && d->count == 5, "test split: %s", fedkd_error_message());
    fedkd_dataset_destroy(&d);
    uint32_t beyond[1] = {4};
    status = fedkd_cifar_load_rows(&d, v, dir, "train", 4, beyond, 1);
    CHECK(status == FEDKD_ERR_INVALID, "a row beyond the limit was read");

    /* The archive's own directory name is looked into. */
    char parent[256], sub[512];
    snprintf(parent, sizeof parent, "%s/extracted", work);
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", parent);
    mkdir(parent, 0755);
    mkdir(sub, 0755);
    CHECK(write_cifar10(sub, sizes) == 0, "writing the subdirectory");
    status = fedkd_cifar_labels(v, parent, "train", 0, &labels, &count);
    CHECK(status == FEDKD_OK && count == 12, "the subdirectory: %s", fedkd_error_message());
    free(labels);

    /* Raw pixels through the file list: the red, green and blue planes. */
    char path[512];
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    const char *paths[1] = {path};
    status = fedkd_cifar_load_files(&d, v, paths, 1, 0, 1);
    CHECK(status == FEDKD_OK && d->count == 4, "raw load: %s", fedkd_error_message());
    if (!status)
        CHECK(d->features[2 * RECORD_PIXELS + 2048 + 5] == (float)pixel_value(2, 2, 2048 + 5) / 255.0f,
              "blue plane of record 2");
    fedkd_dataset_destroy(&d);

    /* A missing directory says where the data comes from. */
    status = fedkd_cifar_labels(v, "/nonexistent-cifar", "train", 0, &labels, &count);
    CHECK(status == FEDKD_ERR_IO && strstr(fedkd_error_message(), "cifar-10-binary.tar.gz") &&
              strstr(fedkd_error_message(), "https://www.cs.toronto.edu/~kriz/cifar.html"),
          "missing directory: %s", fedkd_error_message());
}

static void check_bad_files(const char *work)
{
    const fedkd_cifar_variant *v = fedkd_cifar_find("cifar10");
    char dir[256], path[512], want[2048];
    snprintf(dir, sizeof dir, "%s/bad", work);
    mkdir(dir, 0755);
    const size_t sizes[6] = {3, 2, 4, 1, 2, 5};
    CHECK(write_cifar10(dir, sizes) == 0, "writing the files");
    int32_t *labels = NULL;
    size_t count = 0;

    /* data_batch_4 with 100 stray bytes after its one record. */
    int one[1] = {0};
    snprintf(path, sizeof path, "%s/data_batch_4.bin", dir);
    CHECK(write_file(path, 1, 3, one, 1, 100) == 0, "writing");
    fedkd_status status = fedkd_cifar_labels(v, dir, "train", 0, &labels, &count);
    snprintf(want, sizeof want,
             "%s: 3173 bytes is not a whole number of 3073-byte CIFAR-10 records (1 label "
             "byte(s) + 3072 pixel bytes): record 1, at byte offset 3073, is cut short after "
             "100 bytes", path);
    CHECK(status == FEDKD_ERR_FORMAT && strcmp(fedkd_error_message(), want) == 0,
          "wrong size: %s", fedkd_error_message());
    CHECK(write_file(path, 1, 3, one, 1, 0) == 0, "rewriting");

    /* Label 10 in record 2 of data_batch_3. */
    int labels3[4] = {1, 2, 10, 3};
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    CHECK(write_file(path, 1, 2, labels3, 4, 0) == 0, "writing");
    status = fedkd_cifar_labels(v, dir, "train", 0, &labels, &count);
    snprintf(want, sizeof want,
             "%s: label 10 of record 2 (byte offset 6146) is out of range: CIFAR-10 has classes "
             "0..9", path);
    CHECK(status == FEDKD_ERR_FORMAT && strcmp(fedkd_error_message(), want) == 0,
          "bad label: %s", fedkd_error_message());
    /* A rank that reads only that row finds it too. */
    uint32_t row[1] = {3 + 2 + 2};
    fedkd_dataset *d = NULL;
    status = fedkd_cifar_load_rows(&d, v, dir, "train", 0, row, 1);
    CHECK(status == FEDKD_ERR_FORMAT && strstr(fedkd_error_message(), "record 2 (byte offset 6146)"),
          "bad label of a loaded row: %s", fedkd_error_message());
    /* An empty file. */
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    CHECK(write_file(path, 1, 5, one, 0, 0) == 0, "writing");
    status = fedkd_cifar_load_rows(&d, v, dir, "test", 0, NULL, 0);
    CHECK(status == FEDKD_ERR_FORMAT && strstr(fedkd_error_message(), "the file is empty"),
          "empty file: %s", fedkd_error_message());
}

static void check_cifar100(const char *work)
{
    const fedkd_cifar_variant *v = fedkd_cifar_find("cifar100");
    CHECK(v && v->num_classes == 100 && v->label_bytes == 2, "cifar100 variant");
    char dir[256], path[512], want[2048];
    snprintf(dir, sizeof dir, "%s/c100", work);
    mkdir(dir, 0755);
    int train[3] = {99, 0, 42}, test[2] = {7, 8};
    snprintf(path, sizeof path, "%s/train.bin", dir);
    CHECK(write_file(path, 2, 0, train, 3, 0) == 0, "writing");
    snprintf(path, sizeof path, "%s/test.bin", dir);
    CHECK(write_file(path, 2, 1, test, 2, 0) == 0, "writing");
    fedkd_dataset *d = NULL;
    uint32_t rows[2] = {0, 2};
    fedkd_status status = fedkd_cifar_load_rows(&d, v, dir, "train", 0, rows, 2);
    CHECK(status == FEDKD_OK, "cifar100 rows: %s", fedkd_error_message());
    if (!status) {
        CHECK(d->labels[0] == 99 && d->labels[1] == 42 && d->num_classes == 100, "fine labels");
        float raw = (float)pixel_value(0, 2, 1030) / 255.0f;
        CHECK(d->features[RECORD_PIXELS + 1030] == (raw - v->mean[1]) / v->std[1],
              "green plane of record 2 after the two label bytes");
    }
    fedkd_dataset_destroy(&d);

    /* Fine label 100, then a coarse label 20 (fine 100 / 5). */
    int bad[3] = {99, 100, 42};
    snprintf(path, sizeof path, "%s/train.bin", dir);
    CHECK(write_file(path, 2, 0, bad, 3, 0) == 0, "writing");
    int32_t *labels = NULL;
    size_t count = 0;
    status = fedkd_cifar_labels(v, dir, "train", 0, &labels, &count);
    snprintf(want, sizeof want,
             "%s: coarse label 20 of record 1 (byte offset 3074) is out of range: CIFAR-100 has "
             "coarse classes 0..19", path);
    CHECK(status == FEDKD_ERR_FORMAT && strcmp(fedkd_error_message(), want) == 0,
          "bad coarse label: %s", fedkd_error_message());
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 3074, SEEK_SET); /* the coarse byte: 19, so that the fine one is told */
        fputc(19, f);
        fclose(f);
    }
    status = fedkd_cifar_labels(v, dir, "train", 0, &labels, &count);
    snprintf(want, sizeof want,
             "%s: label 100 of record 1 (byte offset 3075) is out of range: CIFAR-100 has "
             "classes 0..99", path);
    CHECK(status == FEDKD_ERR_FORMAT && strcmp(fedkd_error_message(), want) == 0,
          "bad fine label: %s", fedkd_error_message());
    /* 2 labels + 3072 pixels: a CIFAR-10 file is the wrong size here. */
    snprintf(path, sizeof path, "%s/train.bin", dir);
    CHECK(write_file(path, 1, 0, train, 3, 0) == 0, "writing");
    status = fedkd_cifar_labels(v, dir, "train", 0, &labels, &count);
    CHECK(status == FEDKD_ERR_FORMAT && strstr(fedkd_error_message(), "3074-byte CIFAR-100 records"),
          "a CIFAR-10 file as CIFAR-100: %s", fedkd_error_message());
}

static void check_converter(const char *work, const char *converter)
{
    const fedkd_cifar_variant *v = fedkd_cifar_find("cifar10");
    char dir[256], command[8192], out[512];
    snprintf(dir, sizeof dir, "%s/conv", work);
    mkdir(dir, 0755);
    const size_t sizes[6] = {3, 2, 4, 1, 2, 5};
    CHECK(write_cifar10(dir, sizes) == 0, "writing the files");
    snprintf(out, sizeof out, "%s/train.h5", work);
    snprintf(command, sizeof command,
             "%s cifar10 %s/data_batch_1.bin %s/data_batch_2.bin %s/data_batch_3.bin "
             "%s/data_batch_4.bin %s/data_batch_5.bin %s >/dev/null",
             converter, dir, dir, dir, dir, dir, out);
    CHECK(system(command) == 0, "the converter failed: %s", command);
    fedkd_dataset *from_h5 = NULL, *direct = NULL;
    fedkd_status status = fedkd_h5data_load_all(&from_h5, out, 0);
    CHECK(status == FEDKD_OK, "reading the converted file: %s", fedkd_error_message());
    if (!status) status = fedkd_cifar_load_rows(&direct, v, dir, "train", 0, NULL, 0);
    if (!status) {
        CHECK(from_h5->count == 12 && from_h5->num_classes == 10 && from_h5->shape.channels == 3,
              "converted shape");
        CHECK(memcmp(from_h5->features, direct->features, 12 * RECORD_PIXELS * sizeof(float)) == 0 &&
                  memcmp(from_h5->labels, direct->labels, 12 * sizeof(int32_t)) == 0,
              "the converted file differs from the reader's rows");
    }
    fedkd_dataset_destroy(&from_h5);
    fedkd_dataset_destroy(&direct);
    /* A bad file fails the conversion with its message, not a file. */
    snprintf(command, sizeof command, "%s cifar100 %s/data_batch_1.bin %s/x.h5 2>%s/conv.err",
             converter, dir, work, work);
    CHECK(system(command) != 0, "a CIFAR-10 file converted as CIFAR-100");
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "write") == 0) {
        size_t n = (size_t)atoi(argv[3]);
        const size_t sizes[6] = {n, n, n, n, n, n};
        mkdir(argv[2], 0755);
        return write_cifar10(argv[2], sizes) == 0 ? 0 : 1;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: test_cifar CIFAR2H5 | test_cifar write DIR N\n");
        return 2;
    }
    char work[] = "/tmp/fedkd-cifar-test.XXXXXX";
    if (!mkdtemp(work)) return 1;
    check_cifar10(work);
    check_bad_files(work);
    check_cifar100(work);
    check_converter(work, argv[1]);
    char command[600];
    snprintf(command, sizeof command, "rm -rf %s", work);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", work);
    return test_finish("test_cifar");
}
