/* Runs one input through one reader, for the fuzz suite: the library's
 * readers called as the simulator calls them, without MPI, so that a case
 * costs milliseconds and a crash takes down only this process.
 *
 *   fuzz_read config FILE          a config file (fedkd_config_load)
 *   fuzz_read set KEY=VALUE        one --set override
 *   fuzz_read idx IMAGES LABELS    an IDX pair, plain or gzipped
 *   fuzz_read h5data FILE          an HDF5 dataset: count, describe, load
 *   fuzz_read model FILE           a model file
 *   fuzz_read checkpoint FILE      a checkpoint, its client rows, inspect
 *   fuzz_read grid FILE            a sweep grid and every point's config
 *
 * Exits 0 when the input was accepted, 1 with exactly one line
 * "fuzz_read: error: MESSAGE" on stderr when it was refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "fedkd/checkpoint.h"
#include "fedkd/config.h"
#include "fedkd/data.h"
#include "fedkd/inspect.h"
#include "fedkd/model_file.h"
#include "fedkd/sweep.h"

/* A grid beyond this many points is checked on its first ones only. */
enum { MAX_POINTS_CHECKED = 64 };

static fedkd_status read_checkpoint(const char *path)
{
    fedkd_checkpoint k;
    fedkd_status status = fedkd_checkpoint_read(path, &k);
    if (status) return status;
    if (k.client_state_len > 0) {
        int n = k.num_clients < 64 ? k.num_clients : 64;
        int clients[64];
        for (int i = 0; i < n; i++) clients[i] = i;
        float *rows = malloc((size_t)n * k.client_state_len * sizeof *rows);
        status = rows ? fedkd_checkpoint_read_client_states(path, clients, n, k.client_state_len,
                                                            rows)
                      : FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory", path);
        free(rows);
    }
    fedkd_checkpoint_clear(&k);
    if (status) return status;
    FILE *sink = fopen("/dev/null", "w");
    status = fedkd_inspect_file(path, sink ? sink : stdout);
    if (sink) fclose(sink);
    return status;
}

static fedkd_status read_h5data(const char *path)
{
    size_t count = 0;
    fedkd_shape shape;
    int classes = 0;
    int32_t *labels = NULL;
    fedkd_dataset *d = NULL;
    fedkd_status status = fedkd_h5data_count(path, &count);
    if (!status) status = fedkd_h5data_describe(path, &count, &shape, &classes, &labels);
    free(labels);
    if (!status) status = fedkd_h5data_load_all(&d, path, 0);
    fedkd_dataset_destroy(&d);
    if (!status && count > 1) {
        const uint32_t rows[3] = {(uint32_t)(count - 1), 0, (uint32_t)(count - 1)};
        status = fedkd_h5data_load(&d, path, rows, 3);
        fedkd_dataset_destroy(&d);
    }
    return status;
}

static fedkd_status read_grid(const char *path)
{
    fedkd_sweep_grid *grid = NULL;
    fedkd_status status = fedkd_sweep_grid_load(&grid, path, NULL, 0, 4);
    if (status) return status;
    int points = fedkd_sweep_grid_num_points(grid);
    for (int p = 0; !status && p < points && p < MAX_POINTS_CHECKED; p++) {
        fedkd_config config;
        status = fedkd_sweep_point_config(grid, p, &config);
        if (!status) fedkd_config_free(&config);
    }
    fedkd_sweep_grid_destroy(&grid);
    return status;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: fuzz_read config|set|idx|h5data|model|checkpoint|grid INPUT...\n");
        return 2;
    }
    const char *kind = argv[1], *input = argv[2];
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fedkd_status status;
    if (strcmp(kind, "config") == 0 || strcmp(kind, "set") == 0) {
        fedkd_config config;
        const char *overrides[1] = {input};
        int is_set = strcmp(kind, "set") == 0;
        status = fedkd_config_load(&config, is_set ? NULL : input, overrides, is_set);
        if (!status) fedkd_config_free(&config);
    } else if (strcmp(kind, "idx") == 0 && argc == 4) {
        fedkd_dataset *d = NULL;
        status = fedkd_idx_load(&d, input, argv[3], 0);
        fedkd_dataset_destroy(&d);
    } else if (strcmp(kind, "h5data") == 0) {
        status = read_h5data(input);
    } else if (strcmp(kind, "model") == 0) {
        fedkd_model_spec spec;
        float *params = NULL;
        size_t n = 0;
        char *metadata = NULL;
        status = fedkd_model_file_load(input, &spec, &params, &n, &metadata);
        free(params);
        free(metadata);
    } else if (strcmp(kind, "checkpoint") == 0) {
        status = read_checkpoint(input);
    } else if (strcmp(kind, "grid") == 0) {
        status = read_grid(input);
    } else {
        fprintf(stderr, "fuzz_read: unknown kind %s\n", kind);
        return 2;
    }
    if (status == FEDKD_OK) return 0;
    fprintf(stderr, "fuzz_read: error: %s\n", fedkd_error_message());
    return 1;
}
