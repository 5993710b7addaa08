/* A stand-in for `fedkd-sim sweep` until the command line has it (a test
 * tool, not part of the simulator):
 *
 *   mpiexec -np P sweep_driver [sweep] GRID.json [--set key=value ...] [--quiet]
 *
 * It does what main does around a command: MPI with errors returned, one
 * BLAS thread, the rank-aware log, signal handlers; one error line from the
 * ranks that have a message; exit 0, 1, 2 (usage) or 130 (interrupted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>

#include "fedkd/core.h"
#include "fedkd/fl.h"
#include "fedkd/sweep.h"

int main(int argc, char **argv)
{
    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) return 1;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    fedkd_log_set_rank(rank, size);
    if (!getenv("OPENBLAS_NUM_THREADS")) openblas_set_num_threads(1);
    fedkd_install_signal_handlers();

    const char *grid = NULL;
    const char **overrides = calloc((size_t)argc + 1, sizeof *overrides);
    int num_overrides = 0, code = 0;
    /* The command word, so that scripts can call it as `fedkd-sim sweep`. */
    int first = argc > 1 && strcmp(argv[1], "sweep") == 0 ? 2 : 1;
    for (int i = first; overrides && i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) overrides[num_overrides++] = argv[++i];
        else if (strcmp(argv[i], "--quiet") == 0) fedkd_log_set_quiet(1);
        else if (!grid && argv[i][0] != '-') grid = argv[i];
        else code = 2;
    }
    if (!overrides || !grid || code) {
        if (rank == 0) fprintf(stderr, "usage: sweep_driver [sweep] GRID.json [--set key=value ...] [--quiet]\n");
        code = 2;
    } else {
        fedkd_status status = fedkd_sweep_run(grid, overrides, num_overrides, MPI_COMM_WORLD);
        if (status && fedkd_error_message()[0]) fedkd_log_error("%s", fedkd_error_message());
        code = status == FEDKD_OK ? 0 : status == FEDKD_ERR_INTERRUPTED ? 130 : 1;
    }
    free(overrides);
    MPI_Finalize();
    return code;
}
