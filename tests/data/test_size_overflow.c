/* Sizes a file claims: extents whose product wraps around size_t, or that
 * claim far more data than the file holds, are refused with one line
 * naming the file and the dataset, never a crash or a huge allocation.
 * The files are written with the raw HDF5 API (chunked, never written, so
 * that a claimed extent of 2^64 bytes costs a few hundred bytes on disk). */
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "../test_util.h"
#include "data_fixture.h"
#include "fedkd/core/checked.h"
#include "fedkd/data/data.h"

/* /features float32 with the given extent (chunked 1 x ... x 1, unwritten)
 * and /labels int32 [dims[0]] written with zeros. */
static int write_claimed(const char *path, int rank, const hsize_t *dims)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return 0;
    hsize_t chunk[4] = {1, 1, 1, 1};
    hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    hid_t space = H5Screate_simple(rank, dims, NULL);
    int ok = create >= 0 && space >= 0 && H5Pset_chunk(create, rank, chunk) >= 0;
    hid_t set = ok ? H5Dcreate2(file, "/features", H5T_IEEE_F32LE, space, H5P_DEFAULT, create,
                                H5P_DEFAULT)
                   : -1;
    ok = ok && set >= 0;
    if (set >= 0) H5Dclose(set);
    H5Sclose(space);
    H5Pclose(create);
    int32_t labels[4] = {0, 1, 0, 1};
    space = H5Screate_simple(1, dims, NULL);
    set = H5Dcreate2(file, "/labels", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ok = ok && set >= 0 && dims[0] <= 4 &&
         H5Dwrite(set, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) >= 0;
    if (set >= 0) H5Dclose(set);
    H5Sclose(space);
    return H5Fclose(file) >= 0 && ok;
}

static void expect_refused(const char *path, const char *what)
{
    fedkd_dataset *d = NULL;
    const uint32_t rows[] = {1, 0};
    for (int entry = 0; entry < 2; entry++) {
        fedkd_error_clear();
        fedkd_status status = entry == 0 ? fedkd_h5data_load_all(&d, path, 0)
                                         : fedkd_h5data_load(&d, path, rows, 2);
        const char *message = fedkd_error_message();
        CHECK(status == FEDKD_ERR_FORMAT, "%s (entry %d): status %s (message: %s)", what, entry,
              fedkd_status_name(status), message);
        CHECK(d == NULL, "%s: a dataset was returned", what);
        CHECK(strstr(message, path) && strstr(message, "/features"),
              "%s: message \"%s\" names neither the file nor /features", what, message);
        CHECK(strchr(message, '\n') == NULL, "%s: message spans lines", what);
        fedkd_dataset_destroy(&d);
    }
}

static void test_helper(void)
{
    size_t out = 0;
    CHECK(fedkd_size_mul(3, 4, &out) == 0 && out == 12, "3 x 4");
    CHECK(fedkd_size_mul(SIZE_MAX / 2 + 1, 2, &out) == 1 && out == SIZE_MAX, "2^63 x 2");
    CHECK(fedkd_size_add(SIZE_MAX, 1, &out) == 1 && out == SIZE_MAX, "SIZE_MAX + 1");
    const uint64_t wraps[3] = {1u << 22, 1u << 21, 1u << 21}; /* 2^64 */
    size_t bytes = 7;
    CHECK(fedkd_size_of_extents("f.h5", "dataset /x", 3, wraps, 1, 0, 0, NULL, &bytes) ==
                  FEDKD_ERR_FORMAT &&
              bytes == 7 && strstr(fedkd_error_message(), "f.h5") &&
              strstr(fedkd_error_message(), "dataset /x"),
          "a product of 2^64 is refused: %s", fedkd_error_message());
    const uint64_t empty[2] = {5, 0};
    CHECK(fedkd_size_of_extents("f.h5", "dataset /x", 2, empty, 4, 0, 0, NULL, NULL) ==
              FEDKD_ERR_FORMAT,
          "an empty extent is refused unless allowed");
    CHECK(fedkd_size_of_extents("f.h5", "dataset /x", 2, empty, 4, 1, 0, NULL, &bytes) ==
                  FEDKD_OK && bytes == 0,
          "an empty extent when allowed");
    const uint64_t big[1] = {1000};
    CHECK(fedkd_size_of_extents("f.h5", "dataset /x", 1, big, 4, 0, 3999, NULL, NULL) ==
              FEDKD_ERR_FORMAT,
          "4000 bytes in a 3999-byte file");
    size_t elements = 0;
    CHECK(fedkd_size_of_extents("f.h5", "dataset /x", 1, big, 4, 0, 4000, &elements, &bytes) ==
                  FEDKD_OK && elements == 1000 && bytes == 4000,
          "4000 bytes in a 4000-byte file");
}

int main(void)
{
    CHECK(fixture_make_dir("size-overflow"), "scratch directory");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    test_helper();

    /* Each per-sample extent is below INT_MAX; their product is 2^64, which
     * wraps to 0 in size_t (a division by zero in the allocator). */
    const char *wraps = fixture_path("wraps.h5");
    hsize_t wrap_dims[4] = {2, 1u << 22, 1u << 21, 1u << 21};
    CHECK(write_claimed(wraps, 4, wrap_dims), "write wraps.h5");
    expect_refused(wraps, "per-sample size 2^64");

    /* A product that fits but wraps once multiplied by the rows and 4 bytes. */
    const char *rows_wrap = fixture_path("rows-wrap.h5");
    hsize_t rows_dims[2] = {4, (hsize_t)1 << 62};
    CHECK(write_claimed(rows_wrap, 2, rows_dims), "write rows-wrap.h5");
    expect_refused(rows_wrap, "2^62 floats per row");

    /* Fits size_t, but a 1 KiB file cannot hold 2^40 bytes of samples. */
    const char *huge = fixture_path("huge.h5");
    hsize_t huge_dims[4] = {2, 1u << 10, 1u << 14, 1u << 14};
    CHECK(write_claimed(huge, 4, huge_dims), "write huge.h5");
    expect_refused(huge, "2^38 floats per row");

    /* An IDX header claiming 2^32 - 1 images of 4096 x 4096 pixels in a
     * 16-byte file: refused before 2^58 bytes are asked of the allocator. */
    unsigned char images[16], labels[8];
    fixture_put_u32(images, 0x00000803u);
    fixture_put_u32(images + 4, 0xffffffffu);
    fixture_put_u32(images + 8, 4096);
    fixture_put_u32(images + 12, 4096);
    fixture_put_u32(labels, 0x00000801u);
    fixture_put_u32(labels + 4, 0xffffffffu);
    const char *images_path = fixture_path("huge-images.idx");
    const char *labels_path = fixture_path("huge-labels.idx");
    CHECK(fixture_write(images_path, 0, images, sizeof images) &&
              fixture_write(labels_path, 0, labels, sizeof labels),
          "write IDX");
    fedkd_dataset *d = NULL;
    fedkd_error_clear();
    fedkd_status status = fedkd_idx_load(&d, images_path, labels_path, 0);
    CHECK(status == FEDKD_ERR_FORMAT && strstr(fedkd_error_message(), images_path) &&
              strstr(fedkd_error_message(), "header"),
          "IDX claiming 2^58 bytes: %s (%s)", fedkd_status_name(status), fedkd_error_message());
    fedkd_dataset_destroy(&d);

    fixture_remove_dir();
    return test_finish("size_overflow");
}
