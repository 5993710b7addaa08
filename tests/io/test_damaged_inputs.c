/* Inputs a seeded probe of the readers found crashing, hanging or
 * accepted when they should not be (issue 19): each must be refused with
 * one line naming the file or the key.
 *   - a model file whose global heap (where its strings live) claims an
 *     object larger than the heap: a crash inside libhdf5 reading `format`;
 *     the same with a zero-sized free-space object: an endless loop;
 *   - a model file whose `input_shape` multiplies out to 0 (2^64 wrapped);
 *   - a config file of 17 MiB (the limit is 16 MiB);
 *   - local.weight_decay = 9.2e18, reported later as a NaN loss. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "fedkd/config/config.h"
#include "fedkd/io/inspect.h"
#include "fedkd/io/model_file.h"
#include "fedkd/nn/model_json.h"
#include "../test_util.h"

static char dir[64];

static const char *path_of(const char *name)
{
    static char paths[4][128];
    static int next = 0;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", dir, name);
    return path;
}

/* A dense 3 -> 2 model file at `path`. */
static int write_model(const char *path)
{
    cJSON *json = cJSON_Parse("[{\"type\":\"dense\",\"units\":2}]");
    fedkd_model_spec spec;
    fedkd_status status = fedkd_model_spec_from_json(&spec, json, (fedkd_shape){3, 1, 1}, 2, "test");
    cJSON_Delete(json);
    float params[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    return status == FEDKD_OK && fedkd_model_file_save(path, &spec, params, 8, NULL) == FEDKD_OK;
}

/* Overwrites 8 little-endian bytes at `offset` of `path`. */
static int patch_u64(const char *path, long offset, uint64_t value)
{
    FILE *f = fopen(path, "r+b");
    if (!f) return 0;
    unsigned char bytes[8];
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)(value >> (8 * i));
    int ok = fseek(f, offset, SEEK_SET) == 0 && fwrite(bytes, 1, 8, f) == 8;
    return fclose(f) == 0 && ok;
}

/* Byte offset of the first global heap collection ("GCOL"), or -1. */
static long find_heap(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long offset = -1, at = 0;
    int c, matched = 0;
    while ((c = fgetc(f)) != EOF) {
        matched = c == "GCOL"[matched] ? matched + 1 : (c == 'G');
        at++;
        if (matched == 4) {
            offset = at - 4;
            break;
        }
    }
    fclose(f);
    return offset;
}

/* Loading and inspecting `path` fail with one line naming it and `needle`. */
static void expect_refused_model(const char *path, const char *needle, const char *what)
{
    fedkd_model_spec spec;
    float *params = NULL;
    size_t n = 0;
    char *metadata = NULL;
    fedkd_error_clear();
    fedkd_status status = fedkd_model_file_load(path, &spec, &params, &n, &metadata);
    const char *message = fedkd_error_message();
    CHECK(status == FEDKD_ERR_FORMAT, "%s: load gave %s (%s)", what, fedkd_status_name(status),
          message);
    CHECK(strstr(message, path) && strstr(message, needle), "%s: message \"%s\" lacks \"%s\"",
          what, message, needle);
    CHECK(params == NULL, "%s: parameters returned", what);
    free(params);
    free(metadata);
    FILE *sink = fopen("/dev/null", "w");
    fedkd_error_clear();
    status = fedkd_inspect_file(path, sink);
    if (sink) fclose(sink);
    CHECK(status != FEDKD_OK && strstr(fedkd_error_message(), path) &&
              strstr(fedkd_error_message(), needle),
          "%s: inspect gave %s (%s)", what, fedkd_status_name(status), fedkd_error_message());
}

static void test_damaged_heap(void)
{
    /* The first object of the heap is the `format` string "fedkd-model":
     * its size field sits 8 bytes into the object, 16 into the heap. */
    const char *big = path_of("heap-object-too-big.h5");
    CHECK(write_model(big), "write: %s", fedkd_error_message());
    long heap = find_heap(big);
    CHECK(heap > 0, "no global heap in %s", big);
    CHECK(patch_u64(big, heap + 16 + 8, 0x3a22657079742200ull), "patch");
    expect_refused_model(big, "global heap", "object size past the heap");

    /* A free-space object (index 0) of size 0 right after the last string:
     * HDF5 would walk the heap forever. Found by walking the objects. */
    const char *zero = path_of("heap-free-zero.h5");
    CHECK(write_model(zero), "write: %s", fedkd_error_message());
    heap = find_heap(zero);
    FILE *f = fopen(zero, "r+b");
    long at = heap + 16;
    unsigned char header[16];
    while (f && fseek(f, at, SEEK_SET) == 0 && fread(header, 1, 16, f) == 16 &&
           (header[0] | header[1]) != 0) {
        uint64_t size = 0;
        for (int i = 7; i >= 0; i--) size = size << 8 | header[8 + i];
        at += 16 + (long)((size + 7) & ~(uint64_t)7);
    }
    if (f) fclose(f);
    CHECK(patch_u64(zero, at + 8, 0), "patch");
    expect_refused_model(zero, "global heap", "zero-sized free space");
}

static void test_input_shape_overflow(void)
{
    const char *path = path_of("input-shape.h5");
    CHECK(write_model(path), "write: %s", fedkd_error_message());
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t attribute = file >= 0 ? H5Aopen(file, "input_shape", H5P_DEFAULT) : -1;
    int64_t shape[3] = {1 << 22, 1 << 21, 1 << 21}; /* 2^64: 0 in size_t */
    CHECK(attribute >= 0 && H5Awrite(attribute, H5T_NATIVE_INT64, shape) >= 0, "patch input_shape");
    if (attribute >= 0) H5Aclose(attribute);
    if (file >= 0) H5Fclose(file);
    expect_refused_model(path, "input_shape", "input_shape multiplying out to 2^64");
}

static void test_config_too_large(void)
{
    const char *path = path_of("huge.json");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    fputs("{\"rounds\": 3", f);
    static char spaces[1 << 16];
    memset(spaces, ' ', sizeof spaces);
    for (int i = 0; i < 17 * 16; i++) fwrite(spaces, 1, sizeof spaces, f); /* 17 MiB */
    fputs("}\n", f);
    fclose(f);
    fedkd_config config;
    fedkd_error_clear();
    fedkd_status status = fedkd_config_load(&config, path, NULL, 0);
    CHECK(status != FEDKD_OK && strstr(fedkd_error_message(), path) &&
              strstr(fedkd_error_message(), "16 MiB"),
          "a 17 MiB config: %s (%s)", fedkd_status_name(status), fedkd_error_message());
    if (status == FEDKD_OK) fedkd_config_free(&config);
}

static void test_weight_decay_range(void)
{
    const char *overrides[] = {"local.weight_decay=9.2e18"};
    fedkd_config config;
    fedkd_error_clear();
    fedkd_status status = fedkd_config_load(&config, NULL, overrides, 1);
    CHECK(status == FEDKD_ERR_CONFIG && strstr(fedkd_error_message(), "local.weight_decay"),
          "weight_decay 9.2e18: %s (%s)", fedkd_status_name(status), fedkd_error_message());
    if (status == FEDKD_OK) fedkd_config_free(&config);
    const char *fine[] = {"local.weight_decay=0.0005"};
    status = fedkd_config_load(&config, NULL, fine, 1);
    CHECK(status == FEDKD_OK, "weight_decay 5e-4: %s", fedkd_error_message());
    if (status == FEDKD_OK) fedkd_config_free(&config);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fedkd-damaged-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) return 1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_damaged_heap();
    test_input_shape_overflow();
    test_config_too_large();
    test_weight_decay_range();
    char command[128];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("damaged_inputs");
}
