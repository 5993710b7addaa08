/* HDF5 model files: the documented layout, an exact round trip, weights
 * written by another tool (float64, fixed-length strings, no metadata), and
 * one clear message for each kind of bad file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "fedkd/io/model_file.h"
#include "fedkd/nn/model_json.h"
#include "../test_util.h"

static char dir[64];

/* dir/name, in one of several buffers so that a call may take two. */
static const char *path_of(const char *name)
{
    static char paths[4][128];
    static int next = 0;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", dir, name);
    return path;
}

/* conv2d 3x3 (4 filters, padding 1) on 2x6x6, relu, maxpool 2, flatten, dense 5. */
static int small_cnn(fedkd_model_spec *spec)
{
    cJSON *json = cJSON_Parse(
        "[{\"type\":\"conv2d\",\"filters\":4,\"kernel\":3,\"padding\":1},{\"type\":\"relu\"},"
        "{\"type\":\"maxpool\",\"kernel\":2},{\"type\":\"flatten\"},{\"type\":\"dense\",\"units\":5}]");
    fedkd_shape input = {2, 6, 6};
    fedkd_status status = fedkd_model_spec_from_json(spec, json, input, 5, "test");
    cJSON_Delete(json);
    return status == FEDKD_OK;
}

enum { CNN_PARAMS = 4 * 2 * 3 * 3 + 4 + 5 * 4 * 3 * 3 + 5 };

static float *ramp(size_t n)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) p[i] = (float)i * 0.01f - 1.0f / 3.0f;
    return p;
}

/* Reads the extent of a dataset with plain HDF5, as an outside reader would. */
static int dataset_dims(const char *file, const char *name, hsize_t *dims)
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return -1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    int rank = -1;
    if (d >= 0) {
        hid_t s = H5Dget_space(d);
        rank = H5Sget_simple_extent_dims(s, dims, NULL);
        H5Sclose(s);
        H5Dclose(d);
    }
    H5Fclose(f);
    return rank;
}

static void test_round_trip(void)
{
    fedkd_model_spec spec, loaded;
    CHECK(small_cnn(&spec), "spec: %s", fedkd_error_message());
    float *params = ramp(CNN_PARAMS), *back = NULL;
    size_t n = 0;
    char *metadata = NULL;
    const char *path = path_of("cnn.h5");
    CHECK(fedkd_model_file_save(path, &spec, params, CNN_PARAMS, "{\"client\":3}") == FEDKD_OK,
          "save: %s", fedkd_error_message());
    CHECK(access(path_of("cnn.h5.tmp"), F_OK) != 0, "the .tmp file was left behind");
    CHECK(fedkd_model_file_load(path, &loaded, &back, &n, &metadata) == FEDKD_OK, "load: %s",
          fedkd_error_message());
    CHECK(n == CNN_PARAMS, "%zu parameters, expected %d", n, CNN_PARAMS);
    CHECK(back && memcmp(back, params, CNN_PARAMS * sizeof(float)) == 0, "weights differ");
    CHECK(fedkd_model_spec_difference(&spec, &loaded, NULL, 0) == 0, "spec differs");
    CHECK(metadata && strcmp(metadata, "{\"client\":3}") == 0, "metadata %s", metadata);

    /* The documented layout, read without the simulator. */
    hsize_t dims[4] = {0};
    CHECK(dataset_dims(path, "/layers/00_conv2d/weight", dims) == 4 && dims[0] == 4 &&
              dims[1] == 2 && dims[2] == 3 && dims[3] == 3,
          "conv weight shape");
    CHECK(dataset_dims(path, "/layers/00_conv2d/bias", dims) == 1 && dims[0] == 4, "conv bias");
    CHECK(dataset_dims(path, "/layers/04_dense/weight", dims) == 2 && dims[0] == 5 &&
              dims[1] == 36,
          "dense weight shape [5, 36]");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/layers/04_dense/bias", H5P_DEFAULT);
    float bias[5] = {0};
    CHECK(d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, bias) >= 0 &&
              bias[4] == params[CNN_PARAMS - 1] && bias[0] == params[CNN_PARAMS - 5],
          "the dense bias is the flat buffer's tail");
    H5Dclose(d);
    H5Fclose(f);

    /* The description and the spec comparison. */
    char text[256];
    fedkd_model_spec_describe(&spec, text, sizeof text);
    CHECK(strcmp(text, "conv2d 4x3x3 pad 1, relu, maxpool 2, flatten, dense 5 on 2x6x6 -> 5 classes") == 0,
          "describe: %s", text);
    fedkd_model_spec other = spec;
    other.layers[4].units = 6;
    CHECK(fedkd_model_spec_difference(&spec, &other, text, sizeof text) == 1 &&
              strcmp(text, "layer 4 (dense): units 5 vs 6") == 0,
          "difference: %s", text);
    free(params);
    free(back);
    free(metadata);
}

/* A file as numpy / h5py might write it: float64 weights, fixed-length
 * string attributes, no model_name and no metadata. */
static void write_foreign(const char *path)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t scalar = H5Screate(H5S_SCALAR);
    const char *strings[][2] = {{"format", "fedkd-model"},
                                {"spec", "[{\"type\":\"dense\",\"units\":3}]"}};
    for (int i = 0; i < 2; i++) {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, strlen(strings[i][1]));
        hid_t a = H5Acreate2(f, strings[i][0], t, scalar, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, strings[i][1]);
        H5Aclose(a);
        H5Tclose(t);
    }
    int64_t version = 1, classes = 3, count = 4 * 3 + 3, shape[3] = {4, 1, 1};
    const struct {
        const char *name;
        int64_t *value;
        hsize_t n;
    } ints[] = {{"format_version", &version, 1}, {"num_classes", &classes, 1},
                {"num_params", &count, 1}, {"input_shape", shape, 3}};
    for (int i = 0; i < 4; i++) {
        hid_t s = ints[i].n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &ints[i].n, NULL);
        hid_t a = H5Acreate2(f, ints[i].name, H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, H5T_NATIVE_INT64, ints[i].value);
        H5Aclose(a);
        H5Sclose(s);
    }
    hid_t g = H5Gcreate2(f, "/layers", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t l = H5Gcreate2(g, "00_dense", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    double weight[12], bias[3] = {0.5, -0.5, 0.25};
    for (int i = 0; i < 12; i++) weight[i] = i * 0.125;
    hsize_t wd[2] = {3, 4}, bd[1] = {3};
    hid_t ws = H5Screate_simple(2, wd, NULL), bs = H5Screate_simple(1, bd, NULL);
    hid_t w = H5Dcreate2(l, "weight", H5T_IEEE_F64LE, ws, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t b = H5Dcreate2(l, "bias", H5T_IEEE_F64LE, bs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(w, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, weight);
    H5Dwrite(b, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, bias);
    H5Dclose(w);
    H5Dclose(b);
    H5Sclose(ws);
    H5Sclose(bs);
    H5Gclose(l);
    H5Gclose(g);
    H5Sclose(scalar);
    H5Fclose(f);
}

static void test_foreign(void)
{
    const char *path = path_of("foreign.h5");
    write_foreign(path);
    fedkd_model_spec spec;
    float *params = NULL;
    size_t n = 0;
    char *metadata = NULL;
    CHECK(fedkd_model_file_load(path, &spec, &params, &n, &metadata) == FEDKD_OK,
          "foreign file: %s", fedkd_error_message());
    CHECK(n == 15 && params && params[11] == 1.375f && params[12] == 0.5f && params[14] == 0.25f,
          "float64 weights converted in layer order");
    CHECK(strcmp(spec.name, "custom") == 0 && spec.input.channels == 4, "spec %s", spec.name);
    CHECK(metadata && strcmp(metadata, "{}") == 0, "absent metadata reads as {}");
    free(params);
    free(metadata);
}

/* Loads `path` and expects a failure whose message contains `want`. */
static void expect_failure(const char *path, const char *want)
{
    fedkd_model_spec spec;
    float *params = (float *)1;
    size_t n = 7;
    fedkd_error_clear();
    fedkd_status status = fedkd_model_file_load(path, &spec, &params, &n, NULL);
    CHECK(status != FEDKD_OK, "%s loaded, expected: %s", path, want);
    CHECK(strstr(fedkd_error_message(), want) != NULL, "message \"%s\" lacks \"%s\"",
          fedkd_error_message(), want);
    CHECK(strstr(fedkd_error_message(), path) != NULL, "message \"%s\" does not name the file",
          fedkd_error_message());
    CHECK(params == NULL && n == 0, "outputs not cleared on failure");
}

static void copy_with_edit(const char *from, const char *to, const char *edit)
{
    char command[512];
    snprintf(command, sizeof command, "cp %s %s", from, to);
    CHECK(system(command) == 0, "cp");
    hid_t f = H5Fopen(to, H5F_ACC_RDWR, H5P_DEFAULT);
    if (strcmp(edit, "version") == 0) {
        hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
        int64_t v = 9;
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
    } else if (strcmp(edit, "delete") == 0) {
        H5Ldelete(f, "/layers/04_dense/weight", H5P_DEFAULT);
    } else if (strcmp(edit, "reshape") == 0) {
        H5Ldelete(f, "/layers/04_dense/bias", H5P_DEFAULT);
        hsize_t dims[1] = {6};
        hid_t s = H5Screate_simple(1, dims, NULL);
        hid_t d = H5Dcreate2(f, "/layers/04_dense/bias", H5T_IEEE_F32LE, s, H5P_DEFAULT,
                             H5P_DEFAULT, H5P_DEFAULT);
        H5Dclose(d);
        H5Sclose(s);
    } else if (strcmp(edit, "count") == 0) {
        hid_t a = H5Aopen(f, "num_params", H5P_DEFAULT);
        int64_t v = 10;
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
    } else if (strcmp(edit, "format") == 0) {
        H5Adelete(f, "format");
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 16);
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "format", t, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, "fedkd-checkpoint");
        H5Aclose(a);
        H5Sclose(s);
        H5Tclose(t);
    }
    H5Fclose(f);
}

static void test_bad_files(void)
{
    char good[128];
    snprintf(good, sizeof good, "%s", path_of("cnn.h5"));
    expect_failure(path_of("missing.h5"), "cannot open: No such file");
    FILE *text = fopen(path_of("text.h5"), "w");
    fputs("weights, honestly\n", text);
    fclose(text);
    expect_failure(path_of("text.h5"), "not an HDF5 file");
    char command[512];
    snprintf(command, sizeof command, "head -c 2000 %s > %s", good, path_of("truncated.h5"));
    CHECK(system(command) == 0, "head");
    expect_failure(path_of("truncated.h5"), "truncated or damaged");
    copy_with_edit(good, path_of("version.h5"), "version");
    expect_failure(path_of("version.h5"), "format_version 9 in / is newer than it supports");
    copy_with_edit(good, path_of("delete.h5"), "delete");
    expect_failure(path_of("delete.h5"), "dataset `/layers/04_dense/weight` is missing");
    copy_with_edit(good, path_of("reshape.h5"), "reshape");
    expect_failure(path_of("reshape.h5"),
                   "dataset `/layers/04_dense/bias` has shape [6], expected [5] for layer 4 "
                   "(dense 5 on 36 inputs)");
    copy_with_edit(good, path_of("count.h5"), "count");
    expect_failure(path_of("count.h5"), "attribute `num_params` of / is 10 but its spec has 261");
    copy_with_edit(good, path_of("format.h5"), "format");
    expect_failure(path_of("format.h5"), "`fedkd-sim export` turns a checkpoint into a model file");
}

static void test_bad_writes(void)
{
    fedkd_model_spec spec;
    CHECK(small_cnn(&spec), "spec");
    float *params = ramp(CNN_PARAMS);
    CHECK(fedkd_model_file_save(path_of("short.h5"), &spec, params, CNN_PARAMS - 1, NULL) ==
                  FEDKD_ERR_INVALID &&
              strstr(fedkd_error_message(), "has 261 parameters but 260 were given"),
          "a wrong count: %s", fedkd_error_message());
    CHECK(access(path_of("short.h5"), F_OK) != 0 && access(path_of("short.h5.tmp"), F_OK) != 0,
          "a failed save left a file");
    CHECK(fedkd_model_file_save("/nonexistent-dir/m.h5", &spec, params, CNN_PARAMS, NULL) ==
                  FEDKD_ERR_IO &&
              strstr(fedkd_error_message(), "/nonexistent-dir/m.h5.tmp: cannot create"),
          "an unwritable directory: %s", fedkd_error_message());
    free(params);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/fedkd_test_model_file_XXXXXX");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "cannot create a temp dir\n");
        return 1;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the edits above make HDF5 talk */
    test_round_trip();
    test_foreign();
    test_bad_files();
    test_bad_writes();
    char command[128];
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return test_finish("model_file");
}
