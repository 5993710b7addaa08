#include "io/h5_util.h"
#include "io/h5_heap_check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

fedkd_h5_quiet fedkd_h5_quiet_begin(void)
{
    fedkd_h5_quiet saved = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &saved.function, &saved.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return saved;
}

void fedkd_h5_quiet_end(fedkd_h5_quiet saved)
{
    H5Eset_auto2(H5E_DEFAULT, saved.function, saved.data);
}

typedef struct error_text {
    char *out;
    size_t size;
} error_text;

static herr_t take_innermost(unsigned n, const H5E_error2_t *error, void *data)
{
    error_text *text = data;
    if (n != 0 || !error->desc || !error->desc[0]) return 0;
    /* The POSIX driver's messages carry a time, a descriptor and buffer
     * addresses: keep "file write failed: No space left on device". */
    const char *colon = strchr(error->desc, ':');
    const char *reason = strstr(error->desc, "error message = '");
    if (colon && reason) {
        reason += strlen("error message = '");
        const char *end = strchr(reason, '\'');
        int length = end ? (int)(end - reason) : (int)strlen(reason);
        snprintf(text->out, text->size, "%.*s: %.*s", (int)(colon - error->desc), error->desc,
                 length, reason);
    } else {
        snprintf(text->out, text->size, "%s", error->desc);
    }
    return 0;
}

const char *fedkd_h5_last_error(char *out, size_t size)
{
    error_text text = {out, size};
    snprintf(out, size, "unknown HDF5 error");
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &text);
    return out;
}

void fedkd_h5_close(hid_t *id)
{
    if (*id < 0) return;
    switch (H5Iget_type(*id)) {
    case H5I_FILE: H5Fclose(*id); break;
    case H5I_GROUP: H5Gclose(*id); break;
    case H5I_DATASET: H5Dclose(*id); break;
    case H5I_ATTR: H5Aclose(*id); break;
    case H5I_DATATYPE: H5Tclose(*id); break;
    case H5I_DATASPACE: H5Sclose(*id); break;
    case H5I_GENPROP_LST: H5Pclose(*id); break;
    default: break;
    }
    *id = H5I_INVALID_HID;
}

fedkd_status fedkd_h5_open_read(const char *path, const char *kind, hid_t *file)
{
    char reason[256];
    *file = H5I_INVALID_HID;
    FEDKD_HDF5_REQUIRE();
    struct stat info;
    if (stat(path, &info) != 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(info.st_mode))
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: not a regular file (expected %s)", path, kind);
    if (H5Fis_hdf5(path) <= 0) {
        /* A file that starts like HDF5 but does not open is damaged. */
        static const unsigned char signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
        unsigned char head[8] = {0};
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(head, 1, sizeof head, f) : 0;
        if (f) fclose(f);
        if (got == sizeof head && memcmp(head, signature, sizeof head) == 0)
            return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                              "%s: HDF5 cannot open it (truncated or damaged file?): %s", path,
                              fedkd_h5_last_error(reason, sizeof reason));
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: not an HDF5 file (expected %s)", path, kind);
    }
    fedkd_status heaps = fedkd_h5_check_global_heaps(path, kind);
    if (heaps) return heaps;
    /* No file locks: readers never race a writer (files are renamed into
     * place complete), and locks fail on some cluster file systems. */
    hid_t access = H5Pcreate(H5P_FILE_ACCESS);
    if (access < 0 || H5Pset_file_locking(access, 0, 1) < 0) {
        fedkd_h5_close(&access);
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot set up HDF5 access: %s", path,
                          fedkd_h5_last_error(reason, sizeof reason));
    }
    *file = H5Fopen(path, H5F_ACC_RDONLY, access);
    fedkd_h5_close(&access);
    if (*file < 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: HDF5 cannot open it (truncated or damaged file?): %s", path,
                          fedkd_h5_last_error(reason, sizeof reason));
    return FEDKD_OK;
}

/* ---- attributes ------------------------------------------------------------ */

static fedkd_status write_attribute(hid_t object, const char *name, hid_t file_type,
                                    hid_t memory_type, hid_t space, const void *data,
                                    const char *file)
{
    char reason[256];
    hid_t attribute = H5Acreate2(object, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attribute < 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create attribute `%s`: %s", file, name,
                          fedkd_h5_last_error(reason, sizeof reason));
    herr_t written = H5Awrite(attribute, memory_type, data);
    H5Aclose(attribute);
    if (written < 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot write attribute `%s`: %s", file, name,
                          fedkd_h5_last_error(reason, sizeof reason));
    return FEDKD_OK;
}

fedkd_status fedkd_h5_write_string_attribute(hid_t object, const char *name, const char *value,
                                             const char *file)
{
    hid_t type = H5Tcopy(H5T_C_S1);
    hid_t space = H5Screate(H5S_SCALAR);
    fedkd_status status;
    if (type < 0 || space < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
        H5Tset_cset(type, H5T_CSET_UTF8) < 0) {
        char reason[256];
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot set up attribute `%s`: %s", file, name,
                            fedkd_h5_last_error(reason, sizeof reason));
    } else {
        status = write_attribute(object, name, type, type, space, &value, file);
    }
    fedkd_h5_close(&type);
    fedkd_h5_close(&space);
    return status;
}

fedkd_status fedkd_h5_write_int64_attribute(hid_t object, const char *name, const int64_t *values,
                                            size_t count, const char *file)
{
    hsize_t dims[1] = {count};
    hid_t space = count == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    if (space < 0) {
        char reason[256];
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot set up attribute `%s`: %s", file, name,
                          fedkd_h5_last_error(reason, sizeof reason));
    }
    fedkd_status status =
        write_attribute(object, name, H5T_STD_I64LE, H5T_NATIVE_INT64, space, values, file);
    H5Sclose(space);
    return status;
}

fedkd_status fedkd_h5_write_double_attribute(hid_t object, const char *name, double value,
                                             const char *file)
{
    hid_t space = H5Screate(H5S_SCALAR);
    if (space < 0) {
        char reason[256];
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot set up attribute `%s`: %s", file, name,
                          fedkd_h5_last_error(reason, sizeof reason));
    }
    fedkd_status status =
        write_attribute(object, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, space, &value, file);
    H5Sclose(space);
    return status;
}

fedkd_status fedkd_h5_has_attribute(hid_t object, const char *name, int *present,
                                    const char *file, const char *where)
{
    htri_t exists = H5Aexists(object, name);
    if (exists < 0) {
        char reason[256];
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `%s` of %s cannot be queried: %s", file,
                          name, where, fedkd_h5_last_error(reason, sizeof reason));
    }
    *present = exists > 0;
    return FEDKD_OK;
}

/* Opens an attribute that must exist and hold `count` values of `want`. */
static fedkd_status open_attribute(hid_t object, const char *name, H5T_class_t want,
                                   hssize_t count, const char *expected, hid_t *attribute,
                                   hid_t *type, const char *file, const char *where)
{
    char reason[256];
    hid_t space = H5I_INVALID_HID;
    *attribute = *type = H5I_INVALID_HID;
    int present = 0;
    fedkd_status status = fedkd_h5_has_attribute(object, name, &present, file, where);
    if (status) return status;
    if (!present)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `%s` of %s is missing (expected %s)",
                          file, name, where, expected);
    *attribute = H5Aopen(object, name, H5P_DEFAULT);
    if (*attribute >= 0) *type = H5Aget_type(*attribute);
    if (*attribute >= 0) space = H5Aget_space(*attribute);
    if (*attribute < 0 || *type < 0 || space < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `%s` of %s cannot be opened: %s",
                            file, name, where, fedkd_h5_last_error(reason, sizeof reason));
        goto fail;
    }
    if (H5Tget_class(*type) != want || H5Sget_simple_extent_npoints(space) != count) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `%s` of %s is not %s", file, name,
                            where, expected);
        goto fail;
    }
    fedkd_h5_close(&space);
    return FEDKD_OK;
fail:
    fedkd_h5_close(&space);
    fedkd_h5_close(type);
    fedkd_h5_close(attribute);
    return status;
}

/* A config is at most 16 MiB; no string attribute of ours is larger. */
enum { STRING_ATTRIBUTE_MAX_BYTES = 16 << 20 };

fedkd_status fedkd_h5_read_string_attribute(hid_t object, const char *name, char **value,
                                            const char *file, const char *where)
{
    char reason[256];
    hid_t attribute, type, memory_type = H5I_INVALID_HID;
    *value = NULL;
    fedkd_status status = open_attribute(object, name, H5T_STRING, 1, "a string", &attribute,
                                         &type, file, where);
    if (status) return status;
    htri_t variable = H5Tis_variable_str(type);
    /* The type and the stored size must agree before HDF5 copies anything:
     * a damaged string size would make it read past the attribute. */
    size_t type_size = H5Tget_size(type);
    hsize_t stored = H5Aget_storage_size(attribute);
    if (variable < 0 || type_size == 0 || type_size > STRING_ATTRIBUTE_MAX_BYTES ||
        (!variable && stored != type_size)) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: attribute `%s` of %s is a damaged string (type size %zu, %llu "
                            "bytes stored)",
                            file, name, where, type_size, (unsigned long long)stored);
        goto done;
    }
    memory_type = H5Tcopy(H5T_C_S1);
    /* HDF5 converts no string between character sets: read in the file's. */
    H5T_cset_t cset = H5Tget_cset(type);
    if (variable < 0 || memory_type < 0 || cset < 0 || H5Tset_cset(memory_type, cset) < 0)
        goto hdf5_failure;
    if (variable) {
        char *text = NULL;
        if (H5Tset_size(memory_type, H5T_VARIABLE) < 0 ||
            H5Aread(attribute, memory_type, &text) < 0)
            goto hdf5_failure;
        *value = strdup(text ? text : "");
        H5free_memory(text);
    } else {
        size_t size = H5Tget_size(type);
        *value = calloc(size + 1, 1);
        if (*value && (H5Tset_size(memory_type, size + 1) < 0 ||
                       H5Aread(attribute, memory_type, *value) < 0)) {
            free(*value);
            *value = NULL;
            goto hdf5_failure;
        }
    }
    if (!*value) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory reading attribute `%s`",
                                     file, name);
    goto done;
hdf5_failure:
    status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `%s` of %s cannot be read: %s", file, name,
                        where, fedkd_h5_last_error(reason, sizeof reason));
done:
    fedkd_h5_close(&memory_type);
    fedkd_h5_close(&type);
    fedkd_h5_close(&attribute);
    return status;
}

fedkd_status fedkd_h5_read_int64_attribute(hid_t object, const char *name, int64_t *values,
                                           size_t count, const char *file, const char *where)
{
    char expected[64];
    if (count == 1) snprintf(expected, sizeof expected, "an integer");
    else snprintf(expected, sizeof expected, "%zu integers", count);
    hid_t attribute, type;
    fedkd_status status = open_attribute(object, name, H5T_INTEGER, (hssize_t)count, expected,
                                         &attribute, &type, file, where);
    if (status) return status;
    if (H5Aread(attribute, H5T_NATIVE_INT64, values) < 0) {
        char reason[256];
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `%s` of %s cannot be read: %s", file,
                            name, where, fedkd_h5_last_error(reason, sizeof reason));
    }
    fedkd_h5_close(&type);
    fedkd_h5_close(&attribute);
    return status;
}

fedkd_status fedkd_h5_read_double_attribute(hid_t object, const char *name, double *value,
                                            const char *file, const char *where)
{
    hid_t attribute, type;
    fedkd_status status = open_attribute(object, name, H5T_FLOAT, 1, "a number", &attribute,
                                         &type, file, where);
    if (status) return status;
    if (H5Aread(attribute, H5T_NATIVE_DOUBLE, value) < 0) {
        char reason[256];
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `%s` of %s cannot be read: %s", file,
                            name, where, fedkd_h5_last_error(reason, sizeof reason));
    }
    fedkd_h5_close(&type);
    fedkd_h5_close(&attribute);
    return status;
}

/* ---- datasets ---------------------------------------------------------------- */

void fedkd_h5_format_dims(char *out, size_t size, int rank, const hsize_t *dims)
{
    size_t used = 0;
    if (size == 0) return;
    out[0] = '\0';
    for (int i = 0; i < rank && used < size; i++) {
        int n = snprintf(out + used, size - used, "%s%llu", i ? ", " : "[",
                         (unsigned long long)dims[i]);
        if (n < 0) return;
        used += (size_t)n;
    }
    if (used < size) snprintf(out + used, size - used, rank ? "]" : "[]");
}

fedkd_status fedkd_h5_create_dataset(hid_t parent, const char *name, hid_t file_type, int rank,
                                     const hsize_t *dims, hid_t *dataset, const char *file)
{
    char reason[256];
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    *dataset = H5I_INVALID_HID;
    if (space >= 0 && create >= 0 && H5Pset_fill_time(create, H5D_FILL_TIME_NEVER) >= 0)
        *dataset = H5Dcreate2(parent, name, file_type, space, H5P_DEFAULT, create, H5P_DEFAULT);
    fedkd_h5_close(&space);
    fedkd_h5_close(&create);
    if (*dataset < 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create dataset `%s`: %s", file, name,
                          fedkd_h5_last_error(reason, sizeof reason));
    return FEDKD_OK;
}

/* A transfer property list whose type-conversion and background buffers are
 * 64 KiB instead of HDF5's 1 MiB. Only datasets whose memory type differs
 * from their file type use them (the packed compound of round metrics):
 * HDF5 allocates the full size for every such read or write and keeps it on
 * its own free lists, and a run's resident set took the megabyte on at an
 * unpredictable checkpoint (issue 13's memory-flat test). Converted in 64 KiB
 * strips, a checkpoint's 3,000 rounds of metrics cost five strips. On failure
 * the default list (H5P_DEFAULT) is used. */
static hid_t small_transfer(void)
{
    hid_t transfer = H5Pcreate(H5P_DATASET_XFER);
    if (transfer >= 0 && H5Pset_buffer(transfer, 64 << 10, NULL, NULL) < 0)
        fedkd_h5_close(&transfer);
    return transfer >= 0 ? transfer : H5P_DEFAULT;
}

fedkd_status fedkd_h5_write_all(hid_t dataset, hid_t memory_type, const void *data,
                                const char *file, const char *where)
{
    hid_t space = H5Dget_space(dataset);
    hssize_t points = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    fedkd_h5_close(&space);
    if (points == 0) return FEDKD_OK;
    hid_t transfer = points > 0 ? small_transfer() : H5P_DEFAULT;
    herr_t wrote =
        points > 0 ? H5Dwrite(dataset, memory_type, H5S_ALL, H5S_ALL, transfer, data) : -1;
    fedkd_status status = FEDKD_OK;
    if (wrote < 0) {
        /* Before the close: an HDF5 call clears the error stack. */
        char reason[256];
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot write dataset `%s`: %s", file, where,
                            fedkd_h5_last_error(reason, sizeof reason));
    }
    if (transfer != H5P_DEFAULT) fedkd_h5_close(&transfer);
    return status;
}

fedkd_status fedkd_h5_write_dataset(hid_t parent, const char *name, hid_t file_type,
                                    hid_t memory_type, int rank, const hsize_t *dims,
                                    const void *data, const char *file, const char *where)
{
    hid_t dataset;
    fedkd_status status = fedkd_h5_create_dataset(parent, name, file_type, rank, dims, &dataset,
                                                  file);
    if (status) return status;
    if (data) status = fedkd_h5_write_all(dataset, memory_type, data, file, where);
    if (H5Dclose(dataset) < 0 && !status) {
        char reason[256];
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot close dataset `%s`: %s", file, where,
                            fedkd_h5_last_error(reason, sizeof reason));
    }
    return status;
}

static const char *class_name(H5T_class_t type_class)
{
    switch (type_class) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "floating-point";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    default: return "other";
    }
}

fedkd_status fedkd_h5_open_dataset_any(hid_t parent, const char *name, H5T_class_t want_class,
                                       int rank, hsize_t *dims, hid_t *dataset, const char *file,
                                       const char *where)
{
    char reason[256];
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    fedkd_status status = FEDKD_OK;
    *dataset = H5I_INVALID_HID;
    htri_t exists = H5Lexists(parent, name, H5P_DEFAULT);
    if (exists <= 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset `%s` is missing", file, where);
    *dataset = H5Dopen2(parent, name, H5P_DEFAULT);
    if (*dataset < 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: `%s` cannot be opened as a dataset: %s", file,
                          where, fedkd_h5_last_error(reason, sizeof reason));
    type = H5Dget_type(*dataset);
    space = H5Dget_space(*dataset);
    if (type < 0 || space < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset `%s`: cannot read its type or shape: %s",
                            file, where, fedkd_h5_last_error(reason, sizeof reason));
        goto done;
    }
    H5T_class_t type_class = H5Tget_class(type);
    if (type_class != want_class) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset `%s` holds %s values, expected %s", file,
                            where, class_name(type_class), class_name(want_class));
        goto done;
    }
    int found_rank = H5Sget_simple_extent_ndims(space);
    if (found_rank != rank) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset `%s` has %d dimension(s), expected %d",
                            file, where, found_rank, rank);
        goto done;
    }
    if (H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset `%s`: cannot read its shape: %s", file,
                            where, fedkd_h5_last_error(reason, sizeof reason));
done:
    fedkd_h5_close(&type);
    fedkd_h5_close(&space);
    if (status) fedkd_h5_close(dataset);
    return status;
}

fedkd_status fedkd_h5_open_dataset(hid_t parent, const char *name, H5T_class_t want_class,
                                   int rank, const hsize_t *dims, hid_t *dataset,
                                   const char *file, const char *where, const char *why)
{
    hsize_t found[8] = {0};
    if (rank > 8) return FEDKD_FAIL(FEDKD_ERR_INVALID, "dataset rank %d is not supported", rank);
    fedkd_status status =
        fedkd_h5_open_dataset_any(parent, name, want_class, rank, found, dataset, file, where);
    if (status) return status;
    for (int i = 0; i < rank; i++)
        if (found[i] != dims[i]) {
            char have[128], want[128];
            fedkd_h5_format_dims(have, sizeof have, rank, found);
            fedkd_h5_format_dims(want, sizeof want, rank, dims);
            fedkd_h5_close(dataset);
            return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset `%s` has shape %s, expected %s%s%s",
                              file, where, have, want, why && why[0] ? " " : "", why ? why : "");
        }
    return FEDKD_OK;
}

fedkd_status fedkd_h5_read_all(hid_t dataset, hid_t memory_type, void *data, const char *file,
                               const char *where)
{
    hid_t space = H5Dget_space(dataset);
    hssize_t points = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    fedkd_h5_close(&space);
    if (points == 0) return FEDKD_OK;
    hid_t transfer = points > 0 ? small_transfer() : H5P_DEFAULT;
    herr_t got = points > 0 ? H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, transfer, data) : -1;
    fedkd_status status = FEDKD_OK;
    if (got < 0) {
        /* Before the close: an HDF5 call clears the error stack. */
        char reason[256];
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: cannot read dataset `%s`: %s", file, where,
                            fedkd_h5_last_error(reason, sizeof reason));
    }
    if (transfer != H5P_DEFAULT) fedkd_h5_close(&transfer);
    return status;
}
