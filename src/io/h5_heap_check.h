/* Private to src/io: a check of an HDF5 file's global heap collections
 * before any variable-length string is read from it.
 *
 * HDF5 1.10 trusts the object sizes in a global heap collection (where
 * variable-length strings live): a damaged size makes H5Aread copy past its
 * buffer (a crash inside libhdf5), a zero size makes it loop forever. This
 * walks every collection the way HDF5 does and refuses the file, naming the
 * offset, when an object does not fit its collection. */
#ifndef FEDKD_IO_H5_HEAP_CHECK_H
#define FEDKD_IO_H5_HEAP_CHECK_H

#include "fedkd/core/status.h"

/* `kind` says what the file was expected to be ("a fedkd checkpoint"). */
fedkd_status fedkd_h5_check_global_heaps(const char *path, const char *kind);

#endif
