/* IDX reader: values, limits, gzip transparency and every kind of bad input,
 * plus the real Fashion-MNIST files when they are installed. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "../test_util.h"
#include "data_fixture.h"
#include "fedkd/data/data.h"

#define ROWS 5
#define COLS 4
#define COUNT 7
#define CLASSES 3

/* The loaded dataset holds the first `count` fixture images and labels. */
static void check_fixture_values(const fedkd_dataset *d, size_t count, const char *what)
{
    CHECK(d != NULL, "%s: no dataset", what);
    if (!d) return;
    CHECK(d->count == count, "%s: count %zu, expected %zu", what, d->count, count);
    CHECK(d->shape.channels == 1 && d->shape.height == ROWS && d->shape.width == COLS,
          "%s: shape %dx%dx%d", what, d->shape.channels, d->shape.height, d->shape.width);
    CHECK(d->num_classes == CLASSES, "%s: num_classes %d", what, d->num_classes);
    size_t mismatches = 0;
    for (size_t i = 0; i < d->count && i < count; i++) {
        for (size_t j = 0; j < ROWS * COLS; j++)
            if (d->features[i * ROWS * COLS + j] != (float)fixture_pixel(i, j) / 255.0f) mismatches++;
        if (d->labels[i] != (int32_t)(i % CLASSES)) mismatches++;
    }
    CHECK(mismatches == 0, "%s: %zu values differ from the file", what, mismatches);
}

/* Loads and expects failure with `want` status and a message containing
 * every one of the NULL-terminated `needles`. */
static void expect_failure(const char *images, const char *labels, size_t limit,
                           fedkd_status want, const char *what, const char *const *needles)
{
    fedkd_dataset *d = NULL;
    fedkd_error_clear();
    fedkd_status status = fedkd_idx_load(&d, images, labels, limit);
    const char *message = fedkd_error_message();
    CHECK(status == want, "%s: status %s, expected %s (message: %s)", what,
          fedkd_status_name(status), fedkd_status_name(want), message);
    CHECK(d == NULL, "%s: a dataset was returned on failure", what);
    for (size_t i = 0; needles[i]; i++)
        CHECK(strstr(message, needles[i]) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
              message, needles[i]);
    fedkd_dataset_destroy(&d);
}

static void test_good_files(void)
{
    const char *images = fixture_path("images.idx"), *labels = fixture_path("labels.idx");
    const char *images_gz = fixture_path("images.idx.gz"), *labels_gz = fixture_path("labels.idx.gz");
    CHECK(fixture_write_idx_pair(images, labels, 0, COUNT, ROWS, COLS, CLASSES), "write plain");
    CHECK(fixture_write_idx_pair(images_gz, labels_gz, 1, COUNT, ROWS, COLS, CLASSES), "write gz");

    fedkd_dataset *d = NULL;
    CHECK(fedkd_idx_load(&d, images, labels, 0) == FEDKD_OK, "plain: %s", fedkd_error_message());
    check_fixture_values(d, COUNT, "plain");
    CHECK(d && strcmp(d->origin, images) == 0, "origin names the images file");
    fedkd_dataset_destroy(&d);
    CHECK(d == NULL, "destroy NULLs the pointer");

    CHECK(fedkd_idx_load(&d, images_gz, labels_gz, 0) == FEDKD_OK, "gz: %s", fedkd_error_message());
    check_fixture_values(d, COUNT, "gzipped");
    fedkd_dataset_destroy(&d);

    CHECK(fedkd_idx_load(&d, images_gz, labels, 0) == FEDKD_OK, "mixed: %s", fedkd_error_message());
    check_fixture_values(d, COUNT, "gz images, plain labels");
    fedkd_dataset_destroy(&d);

    CHECK(fedkd_idx_load(&d, images_gz, labels_gz, 3) == FEDKD_OK, "limit 3: %s", fedkd_error_message());
    check_fixture_values(d, 3, "limit 3");
    fedkd_dataset_destroy(&d);

    CHECK(fedkd_idx_load(&d, images, labels, 100) == FEDKD_OK, "limit 100: %s", fedkd_error_message());
    check_fixture_values(d, COUNT, "limit above count");
    fedkd_dataset_destroy(&d);
    fedkd_dataset_destroy(&d); /* twice is harmless */
}

static void test_bad_files(void)
{
    const char *labels = fixture_path("labels.idx");
    const char *missing = fixture_path("no-such-file.idx");
    expect_failure(missing, labels, 0, FEDKD_ERR_IO, "missing images",
                   (const char *[]){missing, NULL});
    expect_failure(fixture_path("images.idx"), missing, 0, FEDKD_ERR_IO, "missing labels",
                   (const char *[]){missing, NULL});

    size_t size = 0;
    unsigned char *bytes = fixture_idx_images(0x00000804u, COUNT, ROWS, COLS, COUNT, &size);
    const char *bad_magic = fixture_path("bad-magic.idx");
    CHECK(fixture_write(bad_magic, 0, bytes, size), "write bad magic");
    expect_failure(bad_magic, labels, 0, FEDKD_ERR_FORMAT, "bad magic",
                   (const char *[]){bad_magic, "0x00000804", "0x00000803", NULL});
    free(bytes);
    /* A labels file where the images should be. */
    expect_failure(labels, labels, 0, FEDKD_ERR_FORMAT, "labels as images",
                   (const char *[]){labels, "0x00000801", "labels", NULL});

    /* Header promises 7 images, the data stops halfway through image 2. */
    bytes = fixture_idx_images(0x00000803u, COUNT, ROWS, COLS, COUNT, &size);
    size_t cut = 16 + 2 * ROWS * COLS + ROWS * COLS / 2;
    const char *truncated = fixture_path("truncated.idx");
    CHECK(fixture_write(truncated, 0, bytes, cut), "write truncated");
    char offset_text[32];
    snprintf(offset_text, sizeof offset_text, "offset %zu", cut);
    expect_failure(truncated, labels, 0, FEDKD_ERR_FORMAT, "truncated images",
                   (const char *[]){truncated, offset_text, "record 2", NULL});
    /* The same file is fine when the limit stops before the cut. */
    fedkd_dataset *d = NULL;
    CHECK(fedkd_idx_load(&d, truncated, labels, 2) == FEDKD_OK, "limit before the cut: %s",
          fedkd_error_message());
    fedkd_dataset_destroy(&d);
    /* Truncated inside the header. */
    const char *short_header = fixture_path("short-header.idx");
    CHECK(fixture_write(short_header, 0, bytes, 10), "write short header");
    expect_failure(short_header, labels, 0, FEDKD_ERR_FORMAT, "short header",
                   (const char *[]){short_header, "header", NULL});
    /* More data than the header announces. */
    const char *trailing = fixture_path("trailing.idx");
    unsigned char *longer = fixture_idx_images(0x00000803u, COUNT - 1, ROWS, COLS, COUNT, &size);
    CHECK(fixture_write(trailing, 0, longer, size), "write trailing");
    const char *labels6 = fixture_path("labels6.idx");
    unsigned char *label_bytes = fixture_idx_labels(COUNT - 1, CLASSES, &size);
    CHECK(fixture_write(labels6, 0, label_bytes, size), "write labels6");
    expect_failure(trailing, labels6, 0, FEDKD_ERR_FORMAT, "trailing data",
                   (const char *[]){trailing, "offset", NULL});
    free(longer);
    free(label_bytes);

    /* Count mismatch: 7 images, 6 labels. */
    expect_failure(fixture_path("images.idx"), labels6, 0, FEDKD_ERR_FORMAT, "count mismatch",
                   (const char *[]){fixture_path("images.idx"), labels6, "7", "6", NULL});
    free(bytes);

    /* Absurd dimensions. */
    const char *huge = fixture_path("huge.idx");
    bytes = fixture_idx_images(0x00000803u, COUNT, 100000, 3, 0, &size);
    CHECK(fixture_write(huge, 0, bytes, size), "write huge");
    expect_failure(huge, labels, 0, FEDKD_ERR_FORMAT, "absurd rows",
                   (const char *[]){huge, "100000", NULL});
    free(bytes);
    const char *empty = fixture_path("empty.idx");
    bytes = fixture_idx_images(0x00000803u, COUNT, 0, COLS, 0, &size);
    CHECK(fixture_write(empty, 0, bytes, size), "write zero rows");
    expect_failure(empty, labels, 0, FEDKD_ERR_FORMAT, "zero rows",
                   (const char *[]){empty, NULL});
    free(bytes);

    /* Label 255 at record 3. */
    label_bytes = fixture_idx_labels(COUNT, CLASSES, &size);
    label_bytes[8 + 3] = 255;
    const char *bad_label = fixture_path("bad-label.idx");
    CHECK(fixture_write(bad_label, 1, label_bytes, size), "write bad label");
    expect_failure(fixture_path("images.idx"), bad_label, 0, FEDKD_ERR_FORMAT, "label 255",
                   (const char *[]){bad_label, "record 3", "255", NULL});
    free(label_bytes);
}

/* Gzip damage: a stream cut short, and bytes overwritten inside the
 * compressed data. Random pixels keep the deflate stream long. */
static void test_bad_gzip(void)
{
    enum { N = 64, SIDE = 28 };
    size_t size = 0;
    unsigned char *bytes = fixture_idx_images(0x00000803u, N, SIDE, SIDE, N, &size);
    fedkd_rng rng = fedkd_rng_stream(7, FEDKD_RNG_TEST, 0, 0);
    for (size_t i = 16; i < size; i++) bytes[i] = (unsigned char)fedkd_rng_below(&rng, 256);
    const char *images = fixture_path("noise.idx.gz");
    const char *labels = fixture_path("noise-labels.idx");
    size_t label_size = 0;
    unsigned char *label_bytes = fixture_idx_labels(N, 10, &label_size);
    CHECK(fixture_write(images, 1, bytes, size) && fixture_write(labels, 0, label_bytes, label_size),
          "write noise");
    free(bytes);
    free(label_bytes);

    fedkd_dataset *d = NULL;
    CHECK(fedkd_idx_load(&d, images, labels, 0) == FEDKD_OK, "intact noise: %s",
          fedkd_error_message());
    fedkd_dataset_destroy(&d);

    FILE *file = fopen(images, "rb");
    CHECK(file != NULL, "reopen gz");
    if (!file) return;
    unsigned char *compressed = malloc(size + 1024);
    size_t compressed_size = fread(compressed, 1, size + 1024, file);
    fclose(file);
    CHECK(compressed_size > 1000, "compressed size %zu", compressed_size);

    const char *cut = fixture_path("cut.idx.gz");
    CHECK(fixture_write(cut, 0, compressed, compressed_size / 2), "write cut gz");
    expect_failure(cut, labels, 0, FEDKD_ERR_FORMAT, "gzip cut in half",
                   (const char *[]){cut, "gzip", NULL});
    /* Cut just before the 8-byte trailer: all data present, the CRC missing. */
    const char *no_trailer = fixture_path("no-trailer.idx.gz");
    CHECK(fixture_write(no_trailer, 0, compressed, compressed_size - 8), "write no trailer");
    expect_failure(no_trailer, labels, 0, FEDKD_ERR_FORMAT, "gzip without trailer",
                   (const char *[]){no_trailer, NULL});

    const char *corrupt = fixture_path("corrupt.idx.gz");
    memset(compressed + compressed_size / 3, 0xff, 64);
    CHECK(fixture_write(corrupt, 0, compressed, compressed_size), "write corrupt gz");
    expect_failure(corrupt, labels, 0, FEDKD_ERR_FORMAT, "corrupt gzip",
                   (const char *[]){corrupt, "gzip", NULL});
    free(compressed);
}

static void test_fashion_mnist_layout(void)
{
    /* A directory that does not exist: the message says how to install. */
    const char *nowhere = fixture_path("no-such-dir");
    fedkd_dataset *d = NULL;
    CHECK(fedkd_fashion_mnist_load(&d, nowhere, "train", 0) == FEDKD_ERR_IO, "missing dir");
    CHECK(strstr(fedkd_error_message(), nowhere) &&
              strstr(fedkd_error_message(), "apt-get install dataset-fashion-mnist"),
          "missing dir message: %s", fedkd_error_message());
    /* The scratch directory exists but holds no t10k files. */
    CHECK(fedkd_fashion_mnist_load(&d, fixture_dir, "test", 0) == FEDKD_ERR_IO, "missing file");
    CHECK(strstr(fedkd_error_message(), "t10k-images-idx3-ubyte") &&
              strstr(fedkd_error_message(), "data.dir"),
          "missing file message: %s", fedkd_error_message());
    CHECK(fedkd_fashion_mnist_load(&d, fixture_dir, "validation", 0) == FEDKD_ERR_INVALID,
          "bad split");

    /* Plain (not gzipped) files under the standard names. */
    CHECK(fixture_write_idx_pair(fixture_path("train-images-idx3-ubyte"),
                                 fixture_path("train-labels-idx1-ubyte"), 0, COUNT, ROWS, COLS,
                                 CLASSES),
          "write train files");
    CHECK(fedkd_fashion_mnist_load(&d, fixture_dir, "train", 0) == FEDKD_OK, "fixture train: %s",
          fedkd_error_message());
    if (d) {
        CHECK(d->num_classes == 10, "Fashion-MNIST has 10 classes, got %d", d->num_classes);
        size_t mismatches = 0;
        for (size_t i = 0; i < COUNT; i++)
            for (size_t j = 0; j < ROWS * COLS; j++) {
                float want = ((float)fixture_pixel(i, j) / 255.0f - 0.2860f) / 0.3530f;
                if (fabsf(d->features[i * ROWS * COLS + j] - want) > 1e-6f) mismatches++;
            }
        CHECK(mismatches == 0, "normalised fixture: %zu values differ", mismatches);
    }
    fedkd_dataset_destroy(&d);
}

/* Pixel mean and std over the loaded (normalised) features. */
static void feature_moments(const fedkd_dataset *d, double *mean, double *std)
{
    size_t n = d->count * fedkd_dataset_sample_floats(d);
    double sum = 0.0, sum_squares = 0.0;
    for (size_t i = 0; i < n; i++) {
        sum += (double)d->features[i];
        sum_squares += (double)d->features[i] * (double)d->features[i];
    }
    *mean = sum / (double)n;
    *std = sqrt(sum_squares / (double)n - *mean * *mean);
}

static void test_real_fashion_mnist(const char *directory)
{
    struct stat info;
    if (!directory || stat(directory, &info) != 0) {
        printf("real Fashion-MNIST: skipped (%s not found)\n", directory ? directory : "no directory given");
        return;
    }
    fedkd_dataset *d = NULL;
    CHECK(fedkd_fashion_mnist_load(&d, directory, "train", 100) == FEDKD_OK, "real train: %s",
          fedkd_error_message());
    if (d) {
        CHECK(d->count == 100, "count %zu", d->count);
        CHECK(d->shape.channels == 1 && d->shape.height == 28 && d->shape.width == 28,
              "shape %dx%dx%d", d->shape.channels, d->shape.height, d->shape.width);
        int label_range_ok = 1;
        for (size_t i = 0; i < d->count; i++)
            if (d->labels[i] < 0 || d->labels[i] > 9) label_range_ok = 0;
        CHECK(label_range_ok, "labels in 0..9");
        double mean = 0.0, std = 0.0;
        feature_moments(d, &mean, &std);
        /* 100 images only: the normalised moments are near, not at, 0 and 1. */
        CHECK(fabs(mean) < 0.2, "normalised mean %g", mean);
        CHECK(std > 0.8 && std < 1.2, "normalised std %g", std);
    }
    fedkd_dataset_destroy(&d);

    /* The whole test split: exercises the gzip trailer (CRC) check. */
    CHECK(fedkd_fashion_mnist_load(&d, directory, "test", 0) == FEDKD_OK, "real test: %s",
          fedkd_error_message());
    if (d) {
        CHECK(d->count == 10000, "test split has %zu samples", d->count);
        size_t per_class[10] = {0};
        for (size_t i = 0; i < d->count; i++)
            if (d->labels[i] >= 0 && d->labels[i] < 10) per_class[d->labels[i]]++;
        for (int c = 0; c < 10; c++)
            CHECK(per_class[c] == 1000, "class %d has %zu test samples", c, per_class[c]);
    }
    fedkd_dataset_destroy(&d);
}

int main(int argc, char **argv)
{
    if (!fixture_make_dir("idx")) {
        fprintf(stderr, "cannot create a scratch directory\n");
        return 1;
    }
    test_good_files();
    test_bad_files();
    test_bad_gzip();
    test_fashion_mnist_layout();
    test_real_fashion_mnist(argc > 1 ? argv[1] : NULL);
    if (!test_failures)
        fixture_remove_dir();
    else {
        fprintf(stderr, "scratch files kept in %s\n", fixture_dir);
        fixture_free_paths();
    }
    return test_finish("test_idx");
}
