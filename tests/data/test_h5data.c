/* HDF5 layout: round trips, row subsets in any order, and bad files. Bad
 * files are written with the raw HDF5 API so that the reader is tested
 * against layouts our writer would never produce. */
#include <fcntl.h>
#include <hdf5.h>
#include <string.h>
#include <unistd.h>

#include "../test_util.h"
#include "data_fixture.h"
#include "fedkd/data/data.h"

static fedkd_dataset *make_dataset(size_t count, fedkd_shape shape, int classes, uint64_t stream)
{
    fedkd_synthetic_settings settings = fedkd_synthetic_default_settings();
    settings.count = count;
    settings.shape = shape;
    settings.num_classes = classes;
    settings.stream = stream;
    fedkd_dataset *d = NULL;
    CHECK(fedkd_synthetic_generate(&d, &settings) == FEDKD_OK, "generate: %s",
          fedkd_error_message());
    return d;
}

/* Row `row` of `source` equals row `slot` of `loaded`, bit for bit. */
static int same_row(const fedkd_dataset *source, size_t row, const fedkd_dataset *loaded,
                    size_t slot)
{
    size_t floats = fedkd_dataset_sample_floats(source);
    return memcmp(source->features + row * floats, loaded->features + slot * floats,
                  floats * sizeof(float)) == 0 &&
           source->labels[row] == loaded->labels[slot];
}

static void check_rows(const fedkd_dataset *source, const fedkd_dataset *loaded,
                       const uint32_t *rows, size_t n, const char *what)
{
    CHECK(loaded != NULL, "%s: nothing loaded", what);
    if (!loaded) return;
    CHECK(loaded->count == n, "%s: count %zu, expected %zu", what, loaded->count, n);
    CHECK(loaded->num_classes == source->num_classes, "%s: num_classes %d vs %d", what,
          loaded->num_classes, source->num_classes);
    CHECK(memcmp(&loaded->shape, &source->shape, sizeof source->shape) == 0,
          "%s: shape %dx%dx%d", what, loaded->shape.channels, loaded->shape.height,
          loaded->shape.width);
    size_t wrong = 0;
    for (size_t i = 0; i < n && i < loaded->count; i++)
        if (!same_row(source, rows ? rows[i] : i, loaded, i)) wrong++;
    CHECK(wrong == 0, "%s: %zu rows differ", what, wrong);
}

static void test_round_trip(fedkd_shape shape, const char *name)
{
    enum { N = 50 };
    fedkd_dataset *source = make_dataset(N, shape, 6, 0);
    if (!source) return;
    const char *path = fixture_path(name);
    CHECK(fedkd_h5data_save(source, path) == FEDKD_OK, "save: %s", fedkd_error_message());
    char temporary[1100];
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    CHECK(access(temporary, F_OK) != 0, "%s must not remain after saving", temporary);

    size_t count = 0;
    CHECK(fedkd_h5data_count(path, &count) == FEDKD_OK && count == N, "count %zu", count);

    /* Describe: everything but the features. */
    fedkd_shape described_shape = {0, 0, 0};
    int described_classes = 0;
    int32_t *labels = NULL;
    count = 0;
    CHECK(fedkd_h5data_describe(path, &count, &described_shape, &described_classes, &labels) ==
              FEDKD_OK,
          "describe: %s", fedkd_error_message());
    CHECK(count == N && described_classes == 6 &&
              memcmp(&described_shape, &shape, sizeof shape) == 0,
          "describe: count %zu, classes %d, shape %dx%dx%d", count, described_classes,
          described_shape.channels, described_shape.height, described_shape.width);
    CHECK(labels && memcmp(labels, source->labels, N * sizeof(int32_t)) == 0, "described labels");
    free(labels);
    CHECK(fedkd_h5data_describe(path, NULL, NULL, NULL, NULL) == FEDKD_OK, "describe, no outputs");

    fedkd_dataset *loaded = NULL;
    CHECK(fedkd_h5data_load_all(&loaded, path, 0) == FEDKD_OK, "load all: %s",
          fedkd_error_message());
    check_rows(source, loaded, NULL, N, "load all");
    CHECK(loaded && strcmp(loaded->origin, path) == 0, "origin is the file");
    fedkd_dataset_destroy(&loaded);

    CHECK(fedkd_h5data_load_all(&loaded, path, 10) == FEDKD_OK, "load 10");
    check_rows(source, loaded, NULL, 10, "load_all limit 10");
    fedkd_dataset_destroy(&loaded);

    /* Unsorted, with runs (3,4,5 and 16,17,18), a duplicate and the ends. */
    const uint32_t rows[] = {17, 3, 4, 5, 49, 0, 3, 18, 16, 30};
    size_t n = sizeof rows / sizeof rows[0];
    CHECK(fedkd_h5data_load(&loaded, path, rows, n) == FEDKD_OK, "load rows: %s",
          fedkd_error_message());
    check_rows(source, loaded, rows, n, "permuted rows");
    fedkd_dataset_destroy(&loaded);

    const uint32_t sorted[] = {1, 2, 3, 10, 11, 40};
    CHECK(fedkd_h5data_load(&loaded, path, sorted, 6) == FEDKD_OK, "load sorted rows");
    check_rows(source, loaded, sorted, 6, "sorted rows");
    fedkd_dataset_destroy(&loaded);

    /* Subsets in memory agree with subsets read from the file. */
    fedkd_dataset *subset = NULL;
    CHECK(fedkd_dataset_subset(&subset, source, rows, n) == FEDKD_OK, "subset");
    check_rows(source, subset, rows, n, "in-memory subset");
    fedkd_dataset_destroy(&subset);
    fedkd_dataset_destroy(&source);
}

/* Many scattered rows with repeats: several read chunks, each with more runs
 * than one hyperslab batch holds. */
static void test_many_runs(void)
{
    enum { N = 6000, PICK = 3000, REPEATS = 50 };
    fedkd_shape shape = {8, 1, 1};
    fedkd_dataset *source = make_dataset(N, shape, 5, 3);
    if (!source) return;
    const char *path = fixture_path("many.h5");
    CHECK(fedkd_h5data_save(source, path) == FEDKD_OK, "save many: %s", fedkd_error_message());
    static uint32_t all[N];
    for (uint32_t i = 0; i < N; i++) all[i] = i;
    fedkd_rng rng = fedkd_rng_stream(11, FEDKD_RNG_TEST, 1, 0);
    fedkd_rng_shuffle_u32(&rng, all, N);
    for (size_t i = 0; i < REPEATS; i++) all[PICK + i] = all[i * 7];
    fedkd_dataset *loaded = NULL;
    CHECK(fedkd_h5data_load(&loaded, path, all, PICK + REPEATS) == FEDKD_OK, "load many: %s",
          fedkd_error_message());
    check_rows(source, loaded, all, PICK + REPEATS, "3000 shuffled rows of 6000 and 50 repeats");
    fedkd_dataset_destroy(&loaded);
    fedkd_dataset_destroy(&source);
}

/* ---- raw HDF5 writers for bad layouts ----------------------------------- */

typedef struct raw_layout {
    hid_t features_type;   /* memory type of the features, e.g. H5T_NATIVE_FLOAT */
    int features_rank;
    hsize_t features_dims[4];
    int write_labels;
    hsize_t labels_count;
    int32_t bad_label;     /* written into row 1 when non-zero */
    int num_classes;       /* attribute; 0 = none */
} raw_layout;

static int write_raw(const char *path, const raw_layout *layout)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return 0;
    int ok = 1;
    size_t total = 1;
    for (int d = 0; d < layout->features_rank; d++) total *= layout->features_dims[d];
    double *values = calloc(total + 1, sizeof(double)); /* large enough for any element type */
    hid_t space = H5Screate_simple(layout->features_rank, layout->features_dims, NULL);
    hid_t file_type = H5Tget_class(layout->features_type) == H5T_FLOAT ? H5T_IEEE_F32LE : H5T_STD_I32LE;
    hid_t set = H5Dcreate2(file, "/features", file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ok = ok && set >= 0 && H5Dwrite(set, layout->features_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values) >= 0;
    H5Dclose(set);
    H5Sclose(space);
    if (layout->write_labels) {
        int32_t *labels = calloc(layout->labels_count + 1, sizeof *labels);
        if (layout->labels_count > 1) labels[1] = layout->bad_label;
        space = H5Screate_simple(1, &layout->labels_count, NULL);
        set = H5Dcreate2(file, "/labels", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ok = ok && set >= 0 && H5Dwrite(set, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) >= 0;
        H5Dclose(set);
        H5Sclose(space);
        free(labels);
    }
    if (layout->num_classes > 0) {
        int32_t value = layout->num_classes;
        space = H5Screate(H5S_SCALAR);
        hid_t attribute = H5Acreate2(file, "num_classes", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
        ok = ok && attribute >= 0 && H5Awrite(attribute, H5T_NATIVE_INT32, &value) >= 0;
        H5Aclose(attribute);
        H5Sclose(space);
    }
    free(values);
    return H5Fclose(file) >= 0 && ok;
}

static raw_layout good_layout(void)
{
    raw_layout layout = {.features_type = H5T_NATIVE_FLOAT, .features_rank = 2,
                         .features_dims = {6, 3, 0, 0}, .write_labels = 1, .labels_count = 6,
                         .bad_label = 0, .num_classes = 0};
    return layout;
}

/* Every reader entry point fails on `path` with status `want` and a message
 * naming the file and each of the NULL-terminated needles. */
static void expect_bad(const char *path, fedkd_status want, const char *what,
                       const char *const *needles)
{
    static const char *const entry_names[] = {"load_all", "load", "count", "describe"};
    const uint32_t rows[] = {1, 0};
    for (int entry = 0; entry < 4; entry++) {
        fedkd_dataset *d = NULL;
        size_t count = 0;
        int32_t *labels = NULL;
        fedkd_error_clear();
        fedkd_status status = entry == 0   ? fedkd_h5data_load_all(&d, path, 0)
                              : entry == 1 ? fedkd_h5data_load(&d, path, rows, 2)
                              : entry == 2 ? fedkd_h5data_count(path, &count)
                                           : fedkd_h5data_describe(path, &count, NULL, NULL, &labels);
        CHECK(labels == NULL, "%s (describe): labels returned on failure", what);
        free(labels);
        const char *message = fedkd_error_message();
        CHECK(status == want, "%s (%s): status %s, expected %s (message: %s)", what,
              entry_names[entry], fedkd_status_name(status), fedkd_status_name(want), message);
        CHECK(d == NULL, "%s (%s): dataset returned on failure", what, entry_names[entry]);
        CHECK(strstr(message, path) != NULL, "%s: message \"%s\" lacks the file name", what,
              message);
        for (size_t i = 0; needles[i]; i++)
            CHECK(strstr(message, needles[i]) != NULL, "%s: message \"%s\" lacks \"%s\"", what,
                  message, needles[i]);
        fedkd_dataset_destroy(&d);
    }
}

static void test_bad_files(void)
{
    /* HDF5 must not print its error stack: capture stderr while probing. */
    const char *captured = fixture_path("stderr.txt");
    fflush(stderr);
    int saved_stderr = dup(2);
    int capture = open(captured, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(capture, 2);
    close(capture);

    const char *missing = fixture_path("missing.h5");
    expect_bad(missing, FEDKD_ERR_IO, "missing file", (const char *[]){NULL});

    const char *text = fixture_path("text.h5");
    CHECK(fixture_write(text, 0, (const unsigned char *)"not hdf5 at all\n", 16), "write text");
    expect_bad(text, FEDKD_ERR_FORMAT, "not HDF5", (const char *[]){"not an HDF5 file", "/features", NULL});

    raw_layout layout = good_layout();
    layout.write_labels = 0;
    const char *no_labels = fixture_path("no-labels.h5");
    CHECK(write_raw(no_labels, &layout), "write no labels");
    expect_bad(no_labels, FEDKD_ERR_FORMAT, "missing /labels", (const char *[]){"/labels", "missing", NULL});

    layout = good_layout();
    layout.labels_count = 5;
    const char *short_labels = fixture_path("short-labels.h5");
    CHECK(write_raw(short_labels, &layout), "write short labels");
    expect_bad(short_labels, FEDKD_ERR_FORMAT, "labels length",
               (const char *[]){"/labels", "/features", "5", "6", NULL});

    layout = good_layout();
    layout.features_type = H5T_NATIVE_INT32;
    const char *int_features = fixture_path("int-features.h5");
    CHECK(write_raw(int_features, &layout), "write int features");
    expect_bad(int_features, FEDKD_ERR_FORMAT, "integer features",
               (const char *[]){"/features", "integer", NULL});

    layout = good_layout();
    layout.features_rank = 3;
    layout.features_dims[2] = 2;
    const char *rank3 = fixture_path("rank3.h5");
    CHECK(write_raw(rank3, &layout), "write rank 3");
    expect_bad(rank3, FEDKD_ERR_FORMAT, "rank 3 features", (const char *[]){"/features", "rank 3", NULL});

    layout = good_layout();
    layout.num_classes = 4;
    layout.bad_label = 4;
    const char *bad_label = fixture_path("bad-label.h5");
    CHECK(write_raw(bad_label, &layout), "write bad label");
    fedkd_dataset *d = NULL;
    CHECK(fedkd_h5data_load_all(&d, bad_label, 0) == FEDKD_ERR_FORMAT &&
              strstr(fedkd_error_message(), bad_label) && strstr(fedkd_error_message(), "/labels") &&
              strstr(fedkd_error_message(), "row 1"),
          "label 4 with num_classes 4: %s", fedkd_error_message());
    fedkd_dataset_destroy(&d);
    layout.bad_label = -2;
    layout.num_classes = 0;
    CHECK(write_raw(bad_label, &layout), "write negative label");
    CHECK(fedkd_h5data_load_all(&d, bad_label, 0) == FEDKD_ERR_FORMAT &&
              strstr(fedkd_error_message(), "/labels"),
          "negative label: %s", fedkd_error_message());
    fedkd_dataset_destroy(&d);

    /* No attribute: num_classes is max label + 1 over the whole file, even
     * when only rows without the largest label are loaded. */
    layout.bad_label = 7;
    const char *no_attribute = fixture_path("no-attribute.h5");
    CHECK(write_raw(no_attribute, &layout), "write no attribute");
    const uint32_t row_zero[] = {0};
    CHECK(fedkd_h5data_load(&d, no_attribute, row_zero, 1) == FEDKD_OK, "no attribute: %s",
          fedkd_error_message());
    CHECK(d && d->num_classes == 8, "num_classes %d, expected 8", d ? d->num_classes : -1);
    fedkd_dataset_destroy(&d);
    int described_classes = 0;
    CHECK(fedkd_h5data_describe(no_attribute, NULL, NULL, &described_classes, NULL) == FEDKD_OK &&
              described_classes == 8,
          "describe without attribute: %d classes", described_classes);
    /* A label outside the attribute's range fails describe as well. */
    int32_t *labels = NULL;
    CHECK(fedkd_h5data_describe(bad_label, NULL, NULL, NULL, &labels) == FEDKD_ERR_FORMAT &&
              labels == NULL,
          "describe with a negative label: %s", fedkd_error_message());

    /* Row out of range (the file has 6 rows). */
    layout = good_layout();
    const char *good = fixture_path("good.h5");
    CHECK(write_raw(good, &layout), "write good");
    const uint32_t rows[] = {2, 6};
    CHECK(fedkd_h5data_load(&d, good, rows, 2) == FEDKD_ERR_INVALID &&
              strstr(fedkd_error_message(), good) && strstr(fedkd_error_message(), "/features") &&
              strstr(fedkd_error_message(), "row 6"),
          "row out of range: %s", fedkd_error_message());
    CHECK(d == NULL, "no dataset for a bad row");
    CHECK(fedkd_h5data_load(&d, good, rows, 1) == FEDKD_OK && d && d->count == 1, "row 2 alone");
    fedkd_dataset_destroy(&d);

    /* Saving into a directory that does not exist. */
    fedkd_dataset *source = make_dataset(4, (fedkd_shape){2, 1, 1}, 2, 0);
    const char *unwritable = fixture_path("no-such-dir/out.h5");
    CHECK(source && fedkd_h5data_save(source, unwritable) == FEDKD_ERR_IO &&
              strstr(fedkd_error_message(), unwritable),
          "save into a missing directory: %s", fedkd_error_message());
    fedkd_dataset_destroy(&source);

    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    /* Replay what was captured (our own failed checks included), then
     * insist that it was nothing. */
    FILE *replay = fopen(captured, "rb");
    long printed = -1;
    if (replay) {
        char buffer[4096];
        size_t n;
        printed = 0;
        while ((n = fread(buffer, 1, sizeof buffer, replay)) > 0) {
            fwrite(buffer, 1, n, stderr);
            printed += (long)n;
        }
        fclose(replay);
    }
    CHECK(printed == 0, "nothing may be printed while probing bad files, got %ld bytes", printed);
}

int main(void)
{
    if (!fixture_make_dir("h5data")) {
        fprintf(stderr, "cannot create a scratch directory\n");
        return 1;
    }
    test_round_trip((fedkd_shape){7, 1, 1}, "flat.h5");
    test_round_trip((fedkd_shape){3, 4, 5}, "images.h5");
    test_many_runs();
    test_bad_files();
    int failed = test_failures;
    if (!failed) fixture_remove_dir();
    else {
        fprintf(stderr, "scratch files kept in %s\n", fixture_dir);
        fixture_free_paths();
    }
    return test_finish("test_h5data");
}
