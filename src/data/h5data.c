/* Datasets in the project's HDF5 layout (see datasets/README.md):
 *   /features  float32 [n, d] or [n, c, h, w]
 *   /labels    int32   [n]
 *   num_classes (int32) attribute on the root group, optional.
 *
 * Files are written contiguous and uncompressed: ranks read scattered rows,
 * and a hyperslab of a contiguous dataset costs only the bytes it selects. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/dataset_internal.h"
#include "fedkd/core/checked.h"
#include "fedkd/core/core.h"
#include "fedkd/core/hdf5_lazy.h"

/* Hyperslab unions grow quadratically in cost with the number of runs OR-ed
 * together (HDF5 1.10 merges span trees on every call: 15000 runs take ~6 s
 * as one selection). Reading in batches of this many runs keeps the
 * selection cheap while still reading only the requested rows. */
#define H5_RUNS_PER_READ 64
/* More classes than this is a corrupt attribute or label, not a task. */
#define H5_MAX_CLASSES 1000000

typedef struct h5_source {
    const char *path;
    hid_t file, features, labels;
    int features_rank;          /* 2 or 4 */
    hsize_t features_dims[4];   /* (n, d) or (n, c, h, w) */
    size_t count;
    fedkd_shape shape;
    int num_classes;            /* from the root attribute; 0 when absent */
} h5_source;

typedef struct h5_run {
    hsize_t start, length;      /* rows [start, start + length) */
} h5_run;

/* HDF5 prints its whole error stack by default; we report one line of our
 * own instead, so printing is off while we work and restored afterwards. */
typedef struct h5_quiet {
    H5E_auto2_t function;
    void *data;
} h5_quiet;

static h5_quiet h5_quiet_begin(void)
{
    h5_quiet saved = {NULL, NULL};
    H5Eget_auto2(H5E_DEFAULT, &saved.function, &saved.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return saved;
}

static void h5_quiet_end(h5_quiet saved)
{
    H5Eset_auto2(H5E_DEFAULT, saved.function, saved.data);
}

typedef struct h5_error_text {
    char text[256];
} h5_error_text;

static herr_t h5_error_walk(unsigned n, const H5E_error2_t *error, void *data)
{
    h5_error_text *out = data;
    if (n == 0 && error->desc) snprintf(out->text, sizeof out->text, "%s", error->desc);
    return 0;
}

/* The innermost message of HDF5's error stack, for our one-line reports. */
static h5_error_text h5_last_error(void)
{
    h5_error_text out = {"unknown HDF5 error"};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_error_walk, &out);
    return out;
}

static const char *h5_class_name(H5T_class_t type_class)
{
    switch (type_class) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "floating-point";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    default: return "non-numeric";
    }
}

static void h5_close_dataset(hid_t *id)
{
    if (*id >= 0) H5Dclose(*id);
    *id = H5I_INVALID_HID;
}

static void h5_close_space(hid_t *id)
{
    if (*id >= 0) H5Sclose(*id);
    *id = H5I_INVALID_HID;
}

static void h5_close_type(hid_t *id)
{
    if (*id >= 0) H5Tclose(*id);
    *id = H5I_INVALID_HID;
}

static void h5_close_attribute(hid_t *id)
{
    if (*id >= 0) H5Aclose(*id);
    *id = H5I_INVALID_HID;
}

static void h5_source_close(h5_source *source)
{
    h5_close_dataset(&source->features);
    h5_close_dataset(&source->labels);
    if (source->file >= 0) H5Fclose(source->file);
    source->file = H5I_INVALID_HID;
}

/* Opens `name`, checking its element class and rank; dims gets its extent. */
static fedkd_status h5_open_dataset(h5_source *source, const char *name, H5T_class_t want_class,
                                    const char *expected, int rank_a, int rank_b, hid_t *out,
                                    int *rank, hsize_t *dims)
{
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    fedkd_status status = FEDKD_OK;
    htri_t exists = H5Lexists(source->file, name, H5P_DEFAULT);
    if (exists <= 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset %s is missing (expected %s)",
                          source->path, name, expected);
    *out = H5Dopen2(source->file, name, H5P_DEFAULT);
    if (*out < 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: %s cannot be opened as a dataset: %s",
                          source->path, name, h5_last_error().text);

    type = H5Dget_type(*out);
    space = H5Dget_space(*out);
    if (type < 0 || space < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset %s: cannot read its type or extent: %s",
                            source->path, name, h5_last_error().text);
        goto done;
    }
    H5T_class_t type_class = H5Tget_class(type);
    if (type_class != want_class) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset %s has %s elements, expected %s",
                            source->path, name, h5_class_name(type_class), expected);
        goto done;
    }
    *rank = H5Sget_simple_extent_ndims(space);
    if (*rank != rank_a && *rank != rank_b) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset %s has rank %d, expected %s",
                            source->path, name, *rank, expected);
        goto done;
    }
    if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset %s: cannot read its extent: %s",
                            source->path, name, h5_last_error().text);
        goto done;
    }

done:
    h5_close_type(&type);
    h5_close_space(&space);
    if (status != FEDKD_OK) h5_close_dataset(out);
    return status;
}

static fedkd_status h5_read_num_classes(h5_source *source)
{
    hid_t attribute = H5I_INVALID_HID, type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    fedkd_status status = FEDKD_OK;
    source->num_classes = 0;
    htri_t exists = H5Aexists_by_name(source->file, "/", "num_classes", H5P_DEFAULT);
    if (exists < 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: root attribute num_classes cannot be queried: %s",
                          source->path, h5_last_error().text);
    if (exists == 0) return FEDKD_OK;

    attribute = H5Aopen_by_name(source->file, "/", "num_classes", H5P_DEFAULT, H5P_DEFAULT);
    if (attribute >= 0) type = H5Aget_type(attribute);
    if (attribute >= 0) space = H5Aget_space(attribute);
    if (attribute < 0 || type < 0 || space < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: root attribute num_classes cannot be opened: %s",
                            source->path, h5_last_error().text);
        goto done;
    }
    if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: root attribute num_classes must be a single integer",
                            source->path);
        goto done;
    }
    int32_t value = 0;
    if (H5Aread(attribute, H5T_NATIVE_INT32, &value) < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: root attribute num_classes cannot be read: %s",
                            source->path, h5_last_error().text);
        goto done;
    }
    if (value < 1 || value > H5_MAX_CLASSES) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: root attribute num_classes = %d, expected 1..%d", source->path,
                            (int)value, H5_MAX_CLASSES);
        goto done;
    }
    source->num_classes = (int)value;

done:
    h5_close_attribute(&attribute);
    h5_close_type(&type);
    h5_close_space(&space);
    return status;
}

/* Opens the file and checks the layout without reading any rows. */
static fedkd_status h5_source_open(h5_source *source, const char *path)
{
    memset(source, 0, sizeof *source);
    source->path = path;
    source->file = source->features = source->labels = H5I_INVALID_HID;
    fedkd_status status;

    struct stat info;
    if (stat(path, &info) != 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: not an HDF5 file (expected datasets /features and /labels)", path);
    source->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (source->file < 0)
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot open as HDF5: %s", path,
                          h5_last_error().text);

    status = h5_open_dataset(source, "/features", H5T_FLOAT, "float32 [n, d] or [n, c, h, w]", 2,
                             4, &source->features, &source->features_rank, source->features_dims);
    if (status != FEDKD_OK) goto fail;
    int labels_rank = 0;
    hsize_t labels_dims[1] = {0};
    status = h5_open_dataset(source, "/labels", H5T_INTEGER, "int32 [n]", 1, 1, &source->labels,
                             &labels_rank, labels_dims);
    if (status != FEDKD_OK) goto fail;

    const hsize_t *dims = source->features_dims;
    if (labels_dims[0] != dims[0]) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: dataset /labels has %llu rows but dataset /features has %llu",
                            path, (unsigned long long)labels_dims[0],
                            (unsigned long long)dims[0]);
        goto fail;
    }
    /* A flat sample (n, d) is held as shape (d, 1, 1). */
    if (source->features_rank == 2) source->features_dims[2] = source->features_dims[3] = 1;
    for (int d = 1; d < 4; d++) {
        if (source->features_dims[d] < 1 || source->features_dims[d] > INT_MAX) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: dataset /features has a per-sample extent of %llu in "
                                "dimension %d, expected 1..%d",
                                path, (unsigned long long)source->features_dims[d], d, INT_MAX);
            goto fail;
        }
    }
    /* The extents multiply out to what the readers allocate: checked for
     * overflow, and against what the file can hold (deflate expands at most
     * 1032 times), so that a damaged header cannot claim terabytes. */
    uint64_t file_bytes = (uint64_t)info.st_size, limit = file_bytes;
    hid_t create = H5Dget_create_plist(source->features);
    if (create >= 0 && H5Pget_nfilters(create) > 0)
        limit = file_bytes > UINT64_MAX / 1032 ? UINT64_MAX : file_bytes * 1032;
    if (create >= 0) H5Pclose(create);
    uint64_t extents[4] = {source->features_dims[0], source->features_dims[1],
                           source->features_dims[2], source->features_dims[3]};
    status = fedkd_size_of_extents(path, "dataset /features", 3, extents + 1, sizeof(float), 0,
                                   limit, NULL, NULL);
    if (status == FEDKD_OK)
        status = fedkd_size_of_extents(path, "dataset /features", 4, extents, sizeof(float), 1,
                                       limit, NULL, NULL);
    if (status == FEDKD_OK)
        status = fedkd_size_of_extents(path, "dataset /labels", 1, extents, sizeof(int32_t), 1,
                                       limit, NULL, NULL);
    if (status != FEDKD_OK) goto fail;
    source->count = (size_t)dims[0];
    source->shape.channels = (int)source->features_dims[1];
    source->shape.height = (int)source->features_dims[2];
    source->shape.width = (int)source->features_dims[3];

    status = h5_read_num_classes(source);
    if (status != FEDKD_OK) goto fail;
    return FEDKD_OK;

fail:
    h5_source_close(source);
    return status;
}

/* Reads the rows of `runs` (ascending, disjoint) into features
 * (total rows, sample) and labels (total rows), one batch of runs per read. */
static fedkd_status h5_read_runs(const h5_source *source, const h5_run *runs, size_t num_runs,
                                 float *features, int32_t *labels)
{
    hid_t features_space = H5Dget_space(source->features);
    hid_t labels_space = H5Dget_space(source->labels);
    hid_t memory_features = H5I_INVALID_HID, memory_labels = H5I_INVALID_HID;
    fedkd_status status = FEDKD_OK;
    const char *failed = NULL;
    size_t sample_floats = fedkd_shape_size(source->shape);
    size_t rows_done = 0;
    hsize_t batch_start = num_runs > 0 ? runs[0].start : 0; /* for messages */
    if (features_space < 0 || labels_space < 0) {
        failed = features_space < 0 ? "/features" : "/labels";
        goto fail;
    }

    for (size_t first = 0; first < num_runs; first += H5_RUNS_PER_READ) {
        size_t end = first + H5_RUNS_PER_READ < num_runs ? first + H5_RUNS_PER_READ : num_runs;
        hsize_t batch_rows = 0;
        batch_start = runs[first].start;
        for (size_t r = first; r < end; r++) {
            H5S_seloper_t operation = r == first ? H5S_SELECT_SET : H5S_SELECT_OR;
            hsize_t start[4] = {runs[r].start, 0, 0, 0};
            hsize_t count[4] = {runs[r].length, source->features_dims[1],
                                source->features_dims[2], source->features_dims[3]};
            if (H5Sselect_hyperslab(features_space, operation, start, NULL, count, NULL) < 0) {
                failed = "/features";
                goto fail;
            }
            if (H5Sselect_hyperslab(labels_space, operation, start, NULL, count, NULL) < 0) {
                failed = "/labels";
                goto fail;
            }
            batch_rows += runs[r].length;
        }
        hsize_t memory_dims[4] = {batch_rows, source->features_dims[1], source->features_dims[2],
                                  source->features_dims[3]};
        memory_features = H5Screate_simple(source->features_rank, memory_dims, NULL);
        memory_labels = H5Screate_simple(1, memory_dims, NULL);
        if (memory_features < 0 || memory_labels < 0) {
            failed = "/features";
            goto fail;
        }
        if (H5Dread(source->features, H5T_NATIVE_FLOAT, memory_features, features_space,
                    H5P_DEFAULT, features + rows_done * sample_floats) < 0) {
            failed = "/features";
            goto fail;
        }
        if (H5Dread(source->labels, H5T_NATIVE_INT32, memory_labels, labels_space, H5P_DEFAULT,
                    labels + rows_done) < 0) {
            failed = "/labels";
            goto fail;
        }
        h5_close_space(&memory_features);
        h5_close_space(&memory_labels);
        rows_done += (size_t)batch_rows;
    }
    h5_close_space(&features_space);
    h5_close_space(&labels_space);
    return FEDKD_OK;

fail:
    status = FEDKD_FAIL(FEDKD_ERR_IO,
                        "%s: dataset %s: reading the rows from row %llu on failed: %s",
                        source->path, failed, (unsigned long long)batch_start,
                        h5_last_error().text);
    h5_close_space(&memory_features);
    h5_close_space(&memory_labels);
    h5_close_space(&features_space);
    h5_close_space(&labels_space);
    return status;
}

/* Without the num_classes attribute the class count is max label + 1 over
 * the WHOLE file, so that every rank, whatever rows it loads, agrees. Labels
 * are 4 bytes a row, so this stays cheap next to the features. */
static fedkd_status h5_num_classes_from_labels(h5_source *source)
{
    if (source->count == 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: dataset /labels is empty and the root attribute num_classes is "
                          "absent, so the number of classes is unknown",
                          source->path);
    int32_t *labels = malloc(source->count * sizeof *labels);
    if (!labels)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: dataset /labels: cannot allocate %zu labels",
                          source->path, source->count);
    fedkd_status status = FEDKD_OK;
    if (H5Dread(source->labels, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels) < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: dataset /labels cannot be read: %s", source->path,
                            h5_last_error().text);
        goto done;
    }
    int32_t max_label = 0;
    for (size_t i = 0; i < source->count; i++) {
        if (labels[i] < 0 || labels[i] >= H5_MAX_CLASSES) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: dataset /labels: label %d at row %zu is outside [0, %d)",
                                source->path, (int)labels[i], i, H5_MAX_CLASSES);
            goto done;
        }
        if (labels[i] > max_label) max_label = labels[i];
    }
    source->num_classes = (int)max_label + 1;

done:
    free(labels);
    return status;
}

static fedkd_status h5_resolve_num_classes(h5_source *source)
{
    return source->num_classes > 0 ? FEDKD_OK : h5_num_classes_from_labels(source);
}

static fedkd_status h5_check_label(const h5_source *source, int32_t label, size_t row)
{
    if (label >= 0 && label < source->num_classes) return FEDKD_OK;
    return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                      "%s: dataset /labels: label %d at row %zu is outside [0, %d) set by the "
                      "num_classes attribute",
                      source->path, (int)label, row, source->num_classes);
}

fedkd_status fedkd_h5data_count(const char *path, size_t *count)
{
    if (!path || !count) return FEDKD_FAIL(FEDKD_ERR_INVALID, "HDF5 count: NULL argument");
    FEDKD_HDF5_REQUIRE();
    h5_quiet quiet = h5_quiet_begin();
    h5_source source;
    fedkd_status status = h5_source_open(&source, path);
    if (status == FEDKD_OK) *count = source.count;
    h5_source_close(&source);
    h5_quiet_end(quiet);
    return status;
}

fedkd_status fedkd_h5data_load_all(fedkd_dataset **out, const char *path, size_t limit)
{
    if (!out || !path) return FEDKD_FAIL(FEDKD_ERR_INVALID, "HDF5 load: NULL argument");
    *out = NULL;
    FEDKD_HDF5_REQUIRE();
    fedkd_dataset *dataset = NULL;
    h5_quiet quiet = h5_quiet_begin();
    h5_source source;
    fedkd_status status = h5_source_open(&source, path);
    if (status != FEDKD_OK) goto done;
    if (source.count == 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: dataset /features has no rows", path);
        goto done;
    }
    status = h5_resolve_num_classes(&source);
    if (status != FEDKD_OK) goto done;
    size_t rows = (limit > 0 && limit < source.count) ? limit : source.count;
    status = fedkd_dataset_allocate(&dataset, rows, source.shape, source.num_classes, path);
    if (status != FEDKD_OK) goto done;
    h5_run all = {0, rows};
    status = h5_read_runs(&source, &all, 1, dataset->features, dataset->labels);
    for (size_t i = 0; status == FEDKD_OK && i < rows; i++)
        status = h5_check_label(&source, dataset->labels[i], i);
    if (status != FEDKD_OK) goto done;
    *out = dataset;
    dataset = NULL;

done:
    fedkd_dataset_destroy(&dataset);
    h5_source_close(&source);
    h5_quiet_end(quiet);
    return status;
}

fedkd_status fedkd_h5data_describe(const char *path, size_t *count, fedkd_shape *shape,
                                   int *num_classes, int32_t **labels)
{
    if (!path) return FEDKD_FAIL(FEDKD_ERR_INVALID, "HDF5 describe: NULL path");
    if (labels) *labels = NULL;
    FEDKD_HDF5_REQUIRE();
    int32_t *all_labels = NULL;
    h5_quiet quiet = h5_quiet_begin();
    h5_source source;
    fedkd_status status = h5_source_open(&source, path);
    if (status != FEDKD_OK) goto done;
    status = h5_resolve_num_classes(&source);
    if (status != FEDKD_OK) goto done;
    if (labels) {
        all_labels = malloc((source.count > 0 ? source.count : 1) * sizeof *all_labels);
        if (!all_labels) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: dataset /labels: cannot allocate %zu labels",
                                path, source.count);
            goto done;
        }
        if (source.count > 0 && H5Dread(source.labels, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                                         H5P_DEFAULT, all_labels) < 0) {
            status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: dataset /labels cannot be read: %s", path,
                                h5_last_error().text);
            goto done;
        }
        for (size_t i = 0; status == FEDKD_OK && i < source.count; i++)
            status = h5_check_label(&source, all_labels[i], i);
        if (status != FEDKD_OK) goto done;
        *labels = all_labels;
        all_labels = NULL;
    }
    if (count) *count = source.count;
    if (shape) *shape = source.shape;
    if (num_classes) *num_classes = source.num_classes;

done:
    free(all_labels);
    h5_source_close(&source);
    h5_quiet_end(quiet);
    return status;
}

/* Distinct rows read per chunk of a row request: the chunk is staged in a
 * scratch buffer (3 MB for 28x28 floats) and scattered to where the caller
 * wants the rows, so a shuffled request never needs a second full copy. */
#define H5_ROWS_PER_CHUNK 1024

typedef struct h5_request {
    uint32_t row;
    size_t position;            /* where the caller wants this row */
} h5_request;

static int h5_request_compare(const void *a, const void *b)
{
    const h5_request *x = a, *y = b;
    if (x->row != y->row) return x->row < y->row ? -1 : 1;
    return x->position < y->position ? -1 : (x->position > y->position);
}

fedkd_status fedkd_h5data_load(fedkd_dataset **out, const char *path, const uint32_t *rows,
                               size_t num_rows)
{
    if (!out || !path || (num_rows > 0 && !rows))
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "HDF5 load: NULL argument");
    *out = NULL;
    FEDKD_HDF5_REQUIRE();
    h5_request *requests = NULL;
    h5_run *runs = NULL;
    float *scratch_features = NULL;   /* (chunk rows, sample) */
    int32_t *scratch_labels = NULL;   /* (chunk rows) */
    fedkd_dataset *result = NULL;
    h5_quiet quiet = h5_quiet_begin();
    h5_source source;
    fedkd_status status = h5_source_open(&source, path);
    if (status != FEDKD_OK) goto done;

    for (size_t i = 0; i < num_rows; i++) {
        if (rows[i] >= source.count) {
            status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                                "%s: dataset /features: row %u (position %zu of the request) is "
                                "out of range: the file has %zu rows",
                                path, (unsigned)rows[i], i, source.count);
            goto done;
        }
    }
    status = h5_resolve_num_classes(&source);
    if (status != FEDKD_OK) goto done;
    status = fedkd_dataset_allocate(&result, num_rows, source.shape, source.num_classes, path);
    if (status != FEDKD_OK || num_rows == 0) goto done;

    /* Sorted, the request reads the file front to back, consecutive rows
     * become runs, and a repeated row is read once. */
    size_t chunk_capacity = num_rows < H5_ROWS_PER_CHUNK ? num_rows : H5_ROWS_PER_CHUNK;
    size_t sample_floats = fedkd_shape_size(source.shape);
    requests = malloc(num_rows * sizeof *requests);
    runs = malloc(chunk_capacity * sizeof *runs);
    scratch_features = fedkd_alloc(chunk_capacity * sample_floats * sizeof(float));
    scratch_labels = malloc(chunk_capacity * sizeof *scratch_labels);
    if (!requests || !runs || !scratch_features || !scratch_labels) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot allocate a request of %zu rows", path,
                            num_rows);
        goto done;
    }
    for (size_t i = 0; i < num_rows; i++) requests[i] = (h5_request){rows[i], i};
    qsort(requests, num_rows, sizeof *requests, h5_request_compare);

    size_t first = 0;
    while (first < num_rows) {
        /* The chunk: requests [first, end) holding up to chunk_capacity
         * distinct rows. */
        size_t num_runs = 0, distinct = 0, end = first;
        for (; end < num_rows; end++) {
            uint32_t row = requests[end].row;
            if (end > first && row == requests[end - 1].row) continue;
            if (distinct == chunk_capacity) break;
            distinct++;
            if (num_runs > 0 && runs[num_runs - 1].start + runs[num_runs - 1].length == row)
                runs[num_runs - 1].length++;
            else
                runs[num_runs++] = (h5_run){row, 1};
        }
        status = h5_read_runs(&source, runs, num_runs, scratch_features, scratch_labels);
        if (status != FEDKD_OK) goto done;

        size_t slot = 0;
        for (size_t k = first; k < end; k++) {
            if (k > first && requests[k].row != requests[k - 1].row) slot++;
            status = h5_check_label(&source, scratch_labels[slot], requests[k].row);
            if (status != FEDKD_OK) goto done;
            size_t position = requests[k].position;
            memcpy(result->features + position * sample_floats,
                   scratch_features + slot * sample_floats, sample_floats * sizeof(float));
            result->labels[position] = scratch_labels[slot];
        }
        first = end;
    }
    *out = result;
    result = NULL;

done:
    free(requests);
    free(runs);
    fedkd_free(scratch_features);
    free(scratch_labels);
    fedkd_dataset_destroy(&result);
    h5_source_close(&source);
    h5_quiet_end(quiet);
    return status;
}

/* Writes the layout into an open file. */
static fedkd_status h5_write_layout(const fedkd_dataset *dataset, hid_t file, const char *path)
{
    hid_t space = H5I_INVALID_HID, set = H5I_INVALID_HID, attribute = H5I_INVALID_HID;
    fedkd_status status = FEDKD_OK;
    const char *failed = NULL;

    /* A flat sample (d, 1, 1) is stored as [n, d], images as [n, c, h, w]. */
    fedkd_shape shape = dataset->shape;
    int flat = shape.height == 1 && shape.width == 1;
    hsize_t dims[4] = {dataset->count, (hsize_t)shape.channels, (hsize_t)shape.height,
                       (hsize_t)shape.width};
    failed = "/features";
    space = H5Screate_simple(flat ? 2 : 4, dims, NULL);
    if (space < 0) goto fail;
    set = H5Dcreate2(file, "/features", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                     H5P_DEFAULT);
    if (set < 0) goto fail;
    if (H5Dwrite(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dataset->features) < 0)
        goto fail;
    h5_close_dataset(&set);
    h5_close_space(&space);

    failed = "/labels";
    space = H5Screate_simple(1, dims, NULL);
    if (space < 0) goto fail;
    set = H5Dcreate2(file, "/labels", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                     H5P_DEFAULT);
    if (set < 0) goto fail;
    if (H5Dwrite(set, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, dataset->labels) < 0)
        goto fail;
    h5_close_dataset(&set);
    h5_close_space(&space);

    failed = "root attribute num_classes";
    int32_t num_classes = dataset->num_classes;
    space = H5Screate(H5S_SCALAR);
    if (space < 0) goto fail;
    attribute = H5Acreate_by_name(file, "/", "num_classes", H5T_STD_I32LE, space, H5P_DEFAULT,
                                  H5P_DEFAULT, H5P_DEFAULT);
    if (attribute < 0) goto fail;
    if (H5Awrite(attribute, H5T_NATIVE_INT32, &num_classes) < 0) goto fail;
    h5_close_attribute(&attribute);
    h5_close_space(&space);
    return FEDKD_OK;

fail:
    status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: writing %s failed: %s", path, failed,
                        h5_last_error().text);
    h5_close_attribute(&attribute);
    h5_close_dataset(&set);
    h5_close_space(&space);
    return status;
}

fedkd_status fedkd_h5data_save(const fedkd_dataset *dataset, const char *path)
{
    if (!dataset || !path) return FEDKD_FAIL(FEDKD_ERR_INVALID, "HDF5 save: NULL argument");
    FEDKD_HDF5_REQUIRE();
    if (dataset->count == 0 || !dataset->features || !dataset->labels)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: cannot save dataset %s: it holds no samples",
                          path, dataset->origin);
    if (dataset->num_classes < 1 || dataset->num_classes > H5_MAX_CLASSES)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: cannot save dataset %s: num_classes = %d",
                          path, dataset->origin, dataset->num_classes);
    for (size_t i = 0; i < dataset->count; i++)
        if (dataset->labels[i] < 0 || dataset->labels[i] >= dataset->num_classes)
            return FEDKD_FAIL(FEDKD_ERR_INVALID,
                              "%s: cannot save dataset %s: label %d of sample %zu is outside "
                              "[0, %d)",
                              path, dataset->origin, (int)dataset->labels[i], i,
                              dataset->num_classes);

    /* Written under a temporary name and renamed, so a crash never leaves a
     * partial file under the final name. */
    size_t length = strlen(path);
    char *temporary = malloc(length + 5);
    if (!temporary) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot allocate a file name", path);
    memcpy(temporary, path, length);
    memcpy(temporary + length, ".tmp", 5);

    h5_quiet quiet = h5_quiet_begin();
    fedkd_status status = FEDKD_OK;
    hid_t file = H5Fcreate(temporary, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary,
                            h5_last_error().text);
        goto done;
    }
    status = h5_write_layout(dataset, file, temporary);
    if (H5Fclose(file) < 0 && status == FEDKD_OK)
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: closing the file failed: %s", temporary,
                            h5_last_error().text);
    if (status == FEDKD_OK && rename(temporary, path) != 0)
        status = FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot rename to %s: %s", temporary, path,
                            strerror(errno));
    if (status != FEDKD_OK) remove(temporary);

done:
    h5_quiet_end(quiet);
    free(temporary);
    return status;
}
