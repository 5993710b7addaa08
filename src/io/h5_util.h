/* Private to src/io: small HDF5 helpers shared by model files, checkpoints
 * and `inspect`. Every helper that can fail returns a fedkd_status whose
 * message names the file (`file`, for messages only) and the object.
 *
 * Strings are written as variable-length UTF-8 attributes (h5py reads them
 * as str); reading also accepts fixed-length strings, as other writers
 * produce them. Datasets are contiguous and never filled, so that creating
 * one in a file opened with MPI-IO writes nothing and costs no collective
 * I/O; the ranks that own the data write it afterwards. */
#ifndef FEDKD_IO_H5_UTIL_H
#define FEDKD_IO_H5_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/core/hdf5_lazy.h"
#include "fedkd/core/status.h"

/* HDF5 prints its whole error stack by default; the library reports one
 * line of its own, so printing is off between begin and end. */
typedef struct fedkd_h5_quiet {
    H5E_auto2_t function;
    void *data;
} fedkd_h5_quiet;

fedkd_h5_quiet fedkd_h5_quiet_begin(void);
void fedkd_h5_quiet_end(fedkd_h5_quiet saved);

/* The innermost message of HDF5's error stack ("truncated file: eof = ...",
 * "file signature not found", ...), for one-line reports. */
const char *fedkd_h5_last_error(char *out, size_t size);

/* Closes an id if it is valid and sets it invalid. */
void fedkd_h5_close(hid_t *id);

/* Opens a file read-only for one process. Distinguishes a missing file, a
 * file that is not HDF5 and one HDF5 cannot open (truncated or damaged);
 * `kind` says what was expected ("a fedkd checkpoint"). */
fedkd_status fedkd_h5_open_read(const char *path, const char *kind, hid_t *file);

/* ---- attributes ---------------------------------------------------------- */

fedkd_status fedkd_h5_write_string_attribute(hid_t object, const char *name, const char *value,
                                             const char *file);
fedkd_status fedkd_h5_write_int64_attribute(hid_t object, const char *name, const int64_t *values,
                                            size_t count, const char *file);
fedkd_status fedkd_h5_write_double_attribute(hid_t object, const char *name, double value,
                                             const char *file);

/* Whether `object` carries the attribute (0 / 1), or a failure. */
fedkd_status fedkd_h5_has_attribute(hid_t object, const char *name, int *present,
                                    const char *file, const char *where);
/* *value is malloc'd. `where` names the object in messages ("/", "/global"). */
fedkd_status fedkd_h5_read_string_attribute(hid_t object, const char *name, char **value,
                                            const char *file, const char *where);
/* Reads exactly `count` integers. */
fedkd_status fedkd_h5_read_int64_attribute(hid_t object, const char *name, int64_t *values,
                                           size_t count, const char *file, const char *where);
fedkd_status fedkd_h5_read_double_attribute(hid_t object, const char *name, double *value,
                                            const char *file, const char *where);

/* ---- datasets ------------------------------------------------------------ */

/* Creates `name` under `parent` with the given file type and extent (a
 * zero extent is allowed). Collective in a parallel file. */
fedkd_status fedkd_h5_create_dataset(hid_t parent, const char *name, hid_t file_type, int rank,
                                     const hsize_t *dims, hid_t *dataset, const char *file);
/* Writes the whole dataset from `data` (memory type `memory_type`); nothing
 * happens when the extent is empty. Independent I/O. */
fedkd_status fedkd_h5_write_all(hid_t dataset, hid_t memory_type, const void *data,
                                const char *file, const char *where);
/* Create + write (data may be NULL: create only, for the ranks of a
 * parallel file that do not own the data). */
fedkd_status fedkd_h5_write_dataset(hid_t parent, const char *name, hid_t file_type,
                                    hid_t memory_type, int rank, const hsize_t *dims,
                                    const void *data, const char *file, const char *where);

/* Opens the dataset `name` under `parent`, checking that it exists, that its
 * elements are of class `want_class` and that its extent equals `dims`
 * (`rank` dimensions). `where` is the dataset's full path for messages and
 * `expected` a reader's description ("float32 [200, 784]"). */
fedkd_status fedkd_h5_open_dataset(hid_t parent, const char *name, H5T_class_t want_class,
                                   int rank, const hsize_t *dims, hid_t *dataset,
                                   const char *file, const char *where, const char *why);
/* Like fedkd_h5_open_dataset, but returns the extent of a dataset of the
 * given rank instead of checking it. */
fedkd_status fedkd_h5_open_dataset_any(hid_t parent, const char *name, H5T_class_t want_class,
                                       int rank, hsize_t *dims, hid_t *dataset, const char *file,
                                       const char *where);
/* Reads the whole dataset into `data` as `memory_type`. */
fedkd_status fedkd_h5_read_all(hid_t dataset, hid_t memory_type, void *data, const char *file,
                               const char *where);

/* "[200, 784]" */
void fedkd_h5_format_dims(char *out, size_t size, int rank, const hsize_t *dims);

#endif
