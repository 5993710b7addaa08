/* The HDF5 library, loaded when a run first needs it (dlopen) instead of
 * when the process starts. Debian's HDF5 links libcurl and, through it,
 * OpenSSL, GnuTLS, Kerberos, LDAP and some twenty more libraries: about
 * 5 MiB of resident memory in every rank and their start-up time, while
 * most ranks never touch a file (FedAvg's checkpoints are written by rank 0
 * alone; bench/README.md, "Engine speed", target 4).
 *
 * Source that calls HDF5 includes this header instead of <hdf5.h>. It
 * declares everything <hdf5.h> does, then redirects each HDF5 function and
 * global the project uses (FEDKD_HDF5_FUNCTIONS, FEDKD_HDF5_VARIABLES) to a
 * table filled from the library on first use: `H5Fopen(...)` becomes
 * `fedkd_hdf5()->H5Fopen(...)`. A function missing from the lists fails the
 * link of fedkd-sim, which does not link HDF5.
 *
 * The library is the one the build found (FEDKD_HDF5_SONAME, from meson),
 * or the file named by the environment variable FEDKD_HDF5_LIBRARY. A
 * process that also links HDF5 (some tests) gets the same, already loaded
 * copy. */
#ifndef FEDKD_CORE_HDF5_LAZY_H
#define FEDKD_CORE_HDF5_LAZY_H

#include <hdf5.h>

#include "fedkd/core/status.h"

#define FEDKD_HDF5_FUNCTIONS(X) \
    X(H5Aclose) X(H5Acreate2) X(H5Acreate_by_name) X(H5Aexists) X(H5Aexists_by_name) \
    X(H5Aget_space) X(H5Aget_storage_size) X(H5Aget_type) X(H5Aopen) X(H5Aopen_by_name) \
    X(H5Aread) X(H5Awrite) X(H5Dclose) X(H5Dcreate2) X(H5Dget_create_plist) X(H5Dget_space) \
    X(H5Dget_type) X(H5Dopen2) X(H5Dread) X(H5Dwrite) X(H5Eget_auto2) X(H5Eset_auto2) \
    X(H5Ewalk2) X(H5Fclose) X(H5Fcreate) X(H5Fflush) X(H5Fget_name) X(H5Fis_hdf5) \
    X(H5Fopen) X(H5Gclose) X(H5Gcreate2) X(H5Gget_info) X(H5Gopen2) X(H5Iget_name) \
    X(H5Iget_type) X(H5Lexists) X(H5Ovisit) X(H5Pclose) X(H5Pcreate) X(H5Pget_nfilters) \
    X(H5Pset_buffer) X(H5Pset_fapl_mpio) X(H5Pset_file_locking) X(H5Pset_fill_time) \
    X(H5Pset_sieve_buf_size) X(H5Sclose) X(H5Screate) X(H5Screate_simple) \
    X(H5Sget_simple_extent_dims) X(H5Sget_simple_extent_ndims) \
    X(H5Sget_simple_extent_npoints) X(H5Sselect_hyperslab) X(H5Tclose) X(H5Tcopy) \
    X(H5Tcreate) X(H5Tget_class) X(H5Tget_cset) X(H5Tget_size) X(H5Tinsert) \
    X(H5Tis_variable_str) X(H5Tset_cset) X(H5Tset_size) X(H5check_version) X(H5free_memory) \
    X(H5open) X(H5set_free_list_limits)

#define FEDKD_HDF5_VARIABLES(X) \
    X(H5P_CLS_DATASET_CREATE_ID_g) X(H5P_CLS_DATASET_XFER_ID_g) X(H5P_CLS_FILE_ACCESS_ID_g) \
    X(H5T_C_S1_g) X(H5T_IEEE_F32LE_g) X(H5T_IEEE_F64LE_g) X(H5T_NATIVE_DOUBLE_g) \
    X(H5T_NATIVE_FLOAT_g) X(H5T_NATIVE_INT32_g) X(H5T_NATIVE_INT64_g) X(H5T_NATIVE_INT_g) \
    X(H5T_NATIVE_UINT32_g) X(H5T_NATIVE_UINT64_g) X(H5T_STD_I32LE_g) X(H5T_STD_I64LE_g) \
    X(H5T_STD_U32LE_g) X(H5T_STD_U64LE_g)

typedef struct fedkd_hdf5_api {
#define FEDKD_HDF5_FIELD(name) __typeof__(name) *name;
    FEDKD_HDF5_FUNCTIONS(FEDKD_HDF5_FIELD)
    FEDKD_HDF5_VARIABLES(FEDKD_HDF5_FIELD)
#undef FEDKD_HDF5_FIELD
} fedkd_hdf5_api;

/* Loads the library and every symbol of the lists once; later calls return
 * at once. Fails naming the library and what is missing. Every public
 * function that touches HDF5 calls it first, so that a missing library is
 * an error the caller reports, not a crash. */
fedkd_status fedkd_hdf5_load(void);

/* The first statement of such a function (after setting its outputs):
 * returns the failure to load. */
#define FEDKD_HDF5_REQUIRE()                                  \
    do {                                                      \
        fedkd_status fedkd_hdf5_status_ = fedkd_hdf5_load(); \
        if (fedkd_hdf5_status_ != FEDKD_OK) return fedkd_hdf5_status_; \
    } while (0)

/* Whether the library is loaded in this process. */
int fedkd_hdf5_loaded(void);

/* The table; loads the library when it is not yet loaded, and aborts the
 * run with a one-line message when it cannot be (a call that skipped
 * fedkd_hdf5_load: a bug). */
const fedkd_hdf5_api *fedkd_hdf5(void);

/* src/core/hdf5_lazy.c fills the table and defines FEDKD_HDF5_NO_REDIRECT:
 * there the names are the symbols' own. */
#ifndef FEDKD_HDF5_NO_REDIRECT
#define H5Aclose (fedkd_hdf5()->H5Aclose)
#define H5Acreate2 (fedkd_hdf5()->H5Acreate2)
#define H5Acreate_by_name (fedkd_hdf5()->H5Acreate_by_name)
#define H5Aexists (fedkd_hdf5()->H5Aexists)
#define H5Aexists_by_name (fedkd_hdf5()->H5Aexists_by_name)
#define H5Aget_space (fedkd_hdf5()->H5Aget_space)
#define H5Aget_storage_size (fedkd_hdf5()->H5Aget_storage_size)
#define H5Aget_type (fedkd_hdf5()->H5Aget_type)
#define H5Aopen (fedkd_hdf5()->H5Aopen)
#define H5Aopen_by_name (fedkd_hdf5()->H5Aopen_by_name)
#define H5Aread (fedkd_hdf5()->H5Aread)
#define H5Awrite (fedkd_hdf5()->H5Awrite)
#define H5Dclose (fedkd_hdf5()->H5Dclose)
#define H5Dcreate2 (fedkd_hdf5()->H5Dcreate2)
#define H5Dget_create_plist (fedkd_hdf5()->H5Dget_create_plist)
#define H5Dget_space (fedkd_hdf5()->H5Dget_space)
#define H5Dget_type (fedkd_hdf5()->H5Dget_type)
#define H5Dopen2 (fedkd_hdf5()->H5Dopen2)
#define H5Dread (fedkd_hdf5()->H5Dread)
#define H5Dwrite (fedkd_hdf5()->H5Dwrite)
#define H5Eget_auto2 (fedkd_hdf5()->H5Eget_auto2)
#define H5Eset_auto2 (fedkd_hdf5()->H5Eset_auto2)
#define H5Ewalk2 (fedkd_hdf5()->H5Ewalk2)
#define H5Fclose (fedkd_hdf5()->H5Fclose)
#define H5Fcreate (fedkd_hdf5()->H5Fcreate)
#define H5Fflush (fedkd_hdf5()->H5Fflush)
#define H5Fget_name (fedkd_hdf5()->H5Fget_name)
#define H5Fis_hdf5 (fedkd_hdf5()->H5Fis_hdf5)
#define H5Fopen (fedkd_hdf5()->H5Fopen)
#define H5Gclose (fedkd_hdf5()->H5Gclose)
#define H5Gcreate2 (fedkd_hdf5()->H5Gcreate2)
#define H5Gget_info (fedkd_hdf5()->H5Gget_info)
#define H5Gopen2 (fedkd_hdf5()->H5Gopen2)
#define H5Iget_name (fedkd_hdf5()->H5Iget_name)
#define H5Iget_type (fedkd_hdf5()->H5Iget_type)
#define H5Lexists (fedkd_hdf5()->H5Lexists)
#define H5Ovisit (fedkd_hdf5()->H5Ovisit)
#define H5Pclose (fedkd_hdf5()->H5Pclose)
#define H5Pcreate (fedkd_hdf5()->H5Pcreate)
#define H5Pget_nfilters (fedkd_hdf5()->H5Pget_nfilters)
#define H5Pset_buffer (fedkd_hdf5()->H5Pset_buffer)
#define H5Pset_fapl_mpio (fedkd_hdf5()->H5Pset_fapl_mpio)
#define H5Pset_file_locking (fedkd_hdf5()->H5Pset_file_locking)
#define H5Pset_fill_time (fedkd_hdf5()->H5Pset_fill_time)
#define H5Pset_sieve_buf_size (fedkd_hdf5()->H5Pset_sieve_buf_size)
#define H5Sclose (fedkd_hdf5()->H5Sclose)
#define H5Screate (fedkd_hdf5()->H5Screate)
#define H5Screate_simple (fedkd_hdf5()->H5Screate_simple)
#define H5Sget_simple_extent_dims (fedkd_hdf5()->H5Sget_simple_extent_dims)
#define H5Sget_simple_extent_ndims (fedkd_hdf5()->H5Sget_simple_extent_ndims)
#define H5Sget_simple_extent_npoints (fedkd_hdf5()->H5Sget_simple_extent_npoints)
#define H5Sselect_hyperslab (fedkd_hdf5()->H5Sselect_hyperslab)
#define H5Tclose (fedkd_hdf5()->H5Tclose)
#define H5Tcopy (fedkd_hdf5()->H5Tcopy)
#define H5Tcreate (fedkd_hdf5()->H5Tcreate)
#define H5Tget_class (fedkd_hdf5()->H5Tget_class)
#define H5Tget_cset (fedkd_hdf5()->H5Tget_cset)
#define H5Tget_size (fedkd_hdf5()->H5Tget_size)
#define H5Tinsert (fedkd_hdf5()->H5Tinsert)
#define H5Tis_variable_str (fedkd_hdf5()->H5Tis_variable_str)
#define H5Tset_cset (fedkd_hdf5()->H5Tset_cset)
#define H5Tset_size (fedkd_hdf5()->H5Tset_size)
#define H5check_version (fedkd_hdf5()->H5check_version)
#define H5free_memory (fedkd_hdf5()->H5free_memory)
#define H5open (fedkd_hdf5()->H5open)
#define H5set_free_list_limits (fedkd_hdf5()->H5set_free_list_limits)
#define H5P_CLS_DATASET_CREATE_ID_g (*fedkd_hdf5()->H5P_CLS_DATASET_CREATE_ID_g)
#define H5P_CLS_DATASET_XFER_ID_g (*fedkd_hdf5()->H5P_CLS_DATASET_XFER_ID_g)
#define H5P_CLS_FILE_ACCESS_ID_g (*fedkd_hdf5()->H5P_CLS_FILE_ACCESS_ID_g)
#define H5T_C_S1_g (*fedkd_hdf5()->H5T_C_S1_g)
#define H5T_IEEE_F32LE_g (*fedkd_hdf5()->H5T_IEEE_F32LE_g)
#define H5T_IEEE_F64LE_g (*fedkd_hdf5()->H5T_IEEE_F64LE_g)
#define H5T_NATIVE_DOUBLE_g (*fedkd_hdf5()->H5T_NATIVE_DOUBLE_g)
#define H5T_NATIVE_FLOAT_g (*fedkd_hdf5()->H5T_NATIVE_FLOAT_g)
#define H5T_NATIVE_INT32_g (*fedkd_hdf5()->H5T_NATIVE_INT32_g)
#define H5T_NATIVE_INT64_g (*fedkd_hdf5()->H5T_NATIVE_INT64_g)
#define H5T_NATIVE_INT_g (*fedkd_hdf5()->H5T_NATIVE_INT_g)
#define H5T_NATIVE_UINT32_g (*fedkd_hdf5()->H5T_NATIVE_UINT32_g)
#define H5T_NATIVE_UINT64_g (*fedkd_hdf5()->H5T_NATIVE_UINT64_g)
#define H5T_STD_I32LE_g (*fedkd_hdf5()->H5T_STD_I32LE_g)
#define H5T_STD_I64LE_g (*fedkd_hdf5()->H5T_STD_I64LE_g)
#define H5T_STD_U32LE_g (*fedkd_hdf5()->H5T_STD_U32LE_g)
#define H5T_STD_U64LE_g (*fedkd_hdf5()->H5T_STD_U64LE_g)
#endif

#endif
