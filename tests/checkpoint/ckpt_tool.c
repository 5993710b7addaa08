/* Damages checkpoints in controlled ways, for the bad-input tests (a test
 * tool, not part of the simulator; h5py is not a test dependency).
 *
 *   ckpt_tool set-version FILE N    root attribute format_version = N
 *   ckpt_tool delete FILE PATH      unlinks the dataset or group at PATH
 *   ckpt_tool reshape FILE PATH     replaces the dataset at PATH by one of the
 *                                   same type with its first dimension + 1
 *   ckpt_tool resize FILE PATH N    replaces the dataset at PATH by one of the
 *                                   same type and rank with its first
 *                                   dimension N, chunked and never written (N
 *                                   may claim far more than the file holds)
 * Exits 0 on success, 1 with a message otherwise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "ckpt_tool: %s failed on %s\n", what, path);
    return 1;
}

static int set_version(hid_t file, const char *path, long long version)
{
    hid_t attribute = H5Aopen(file, "format_version", H5P_DEFAULT);
    int64_t value = version;
    if (attribute < 0 || H5Awrite(attribute, H5T_NATIVE_INT64, &value) < 0)
        return fail("set-version", path);
    H5Aclose(attribute);
    return 0;
}

static int reshape(hid_t file, const char *object)
{
    hid_t dataset = H5Dopen2(file, object, H5P_DEFAULT);
    if (dataset < 0) return fail("open", object);
    hid_t type = H5Dget_type(dataset), space = H5Dget_space(dataset);
    hsize_t dims[8] = {0};
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    H5Dclose(dataset);
    if (rank < 1) return fail("reshape (scalar)", object);
    dims[0] += 1;
    if (H5Ldelete(file, object, H5P_DEFAULT) < 0) return fail("delete", object);
    space = H5Screate_simple(rank, dims, NULL);
    dataset = H5Dcreate2(file, object, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (dataset < 0) return fail("create", object);
    H5Dclose(dataset);
    H5Sclose(space);
    H5Tclose(type);
    return 0;
}

static int resize(hid_t file, const char *object, unsigned long long first)
{
    hid_t dataset = H5Dopen2(file, object, H5P_DEFAULT);
    if (dataset < 0) return fail("open", object);
    hid_t type = H5Dget_type(dataset), space = H5Dget_space(dataset);
    hsize_t dims[8] = {0}, chunk[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int rank = H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    H5Dclose(dataset);
    if (rank < 1) return fail("resize (scalar)", object);
    dims[0] = first;
    if (H5Ldelete(file, object, H5P_DEFAULT) < 0) return fail("delete", object);
    hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    space = H5Screate_simple(rank, dims, NULL);
    if (create < 0 || space < 0 || H5Pset_chunk(create, rank, chunk) < 0)
        return fail("resize (chunk)", object);
    dataset = H5Dcreate2(file, object, type, space, H5P_DEFAULT, create, H5P_DEFAULT);
    if (dataset < 0) return fail("create", object);
    H5Dclose(dataset);
    H5Pclose(create);
    H5Sclose(space);
    H5Tclose(type);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "resize") == 0) {
        hid_t file = H5Fopen(argv[2], H5F_ACC_RDWR, H5P_DEFAULT);
        if (file < 0) return fail("open", argv[2]);
        int code = resize(file, argv[3], strtoull(argv[4], NULL, 0));
        if (H5Fclose(file) < 0) return fail("close", argv[2]);
        return code;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: ckpt_tool set-version|delete|reshape FILE ARG | resize FILE PATH N\n");
        return 2;
    }
    hid_t file = H5Fopen(argv[2], H5F_ACC_RDWR, H5P_DEFAULT);
    if (file < 0) return fail("open", argv[2]);
    int code;
    if (strcmp(argv[1], "set-version") == 0) code = set_version(file, argv[2], atoll(argv[3]));
    else if (strcmp(argv[1], "delete") == 0)
        code = H5Ldelete(file, argv[3], H5P_DEFAULT) < 0 ? fail("delete", argv[3]) : 0;
    else if (strcmp(argv[1], "reshape") == 0) code = reshape(file, argv[3]);
    else code = fail("unknown command", argv[1]);
    if (H5Fclose(file) < 0) return fail("close", argv[2]);
    return code;
}
