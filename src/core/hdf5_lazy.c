/* Loading HDF5 on first use (include/fedkd/core/hdf5_lazy.h). */
#define FEDKD_HDF5_NO_REDIRECT
#include "fedkd/core/hdf5_lazy.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#ifndef FEDKD_HDF5_SONAME
#error "FEDKD_HDF5_SONAME (the HDF5 library to load) comes from meson.build"
#endif

static fedkd_hdf5_api table;
static int loaded;

fedkd_status fedkd_hdf5_load(void)
{
    if (loaded) return FEDKD_OK;
    const char *name = getenv("FEDKD_HDF5_LIBRARY");
    const char *from = " (FEDKD_HDF5_LIBRARY)";
    if (!name || !name[0]) {
        name = FEDKD_HDF5_SONAME;
        from = "";
    }
    void *library = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!library) {
        const char *why = dlerror();
        return FEDKD_FAIL(FEDKD_ERR_IO,
                          "cannot load the HDF5 library %s%s, which checkpoints, model files "
                          "and HDF5 data sets need: %s",
                          name, from, why ? why : "unknown reason");
    }
    /* Looked up in the process's global scope, the library now part of it:
     * where the executable links HDF5 too (tests), its variables were copied
     * into the executable at start-up and the library uses those copies,
     * not its own (copy relocations); the library's handle would find the
     * stale originals. */
    fedkd_hdf5_api found;
    void *symbol;
#define FEDKD_HDF5_LOOKUP(name_)                                                                \
    symbol = dlsym(RTLD_DEFAULT, #name_);                                                       \
    if (!symbol)                                                                                \
        return FEDKD_FAIL(FEDKD_ERR_IO,                                                         \
                          "the HDF5 library %s%s has no `%s` (fedkd-sim was built against "     \
                          "HDF5 %d.%d.%d)",                                                     \
                          name, from, #name_, H5_VERS_MAJOR, H5_VERS_MINOR, H5_VERS_RELEASE);  \
    memcpy(&found.name_, &symbol, sizeof symbol);
    FEDKD_HDF5_FUNCTIONS(FEDKD_HDF5_LOOKUP)
    FEDKD_HDF5_VARIABLES(FEDKD_HDF5_LOOKUP)
#undef FEDKD_HDF5_LOOKUP
    /* HDF5 keeps what it frees on free lists of its own, by default up to
     * 1 MiB of regular objects, 4 MiB of arrays and 16 MiB of blocks a
     * process. A checkpoint's blocks change size as the run's metrics grow,
     * so a long run's server heap crept up by about 1.5 MiB over its first
     * 700 rounds of five-round checkpoints; capped at 256 KiB of each kind
     * (64 KiB a list), by about 0.3 MiB (issue 13, memory flat). */
    found.H5set_free_list_limits(256 << 10, 64 << 10, 256 << 10, 64 << 10, 256 << 10, 64 << 10);
    table = found;
    loaded = 1;
    return FEDKD_OK;
}

int fedkd_hdf5_loaded(void) { return loaded; }

const fedkd_hdf5_api *fedkd_hdf5(void)
{
    if (!loaded && fedkd_hdf5_load() != FEDKD_OK) {
        fprintf(stderr, "fedkd-sim: error: %s\n", fedkd_error_message());
        int initialized = 0, finalized = 0;
        MPI_Initialized(&initialized);
        MPI_Finalized(&finalized);
        if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
        exit(1);
    }
    return &table;
}
