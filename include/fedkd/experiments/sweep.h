/* Grid-search sweeps: `mpirun -np P fedkd-sim sweep GRID.json`.
 *
 * A grid file names a base config and lists of values for config keys:
 *
 *   {"base": "fedavg.json",            path relative to the grid file, or an
 *                                      inline object of config keys; absent:
 *                                      the built-in default
 *    "group_size": 2,                  processes per federation (absent: P)
 *    "grid": {"algorithm": ["fedavg", "fedprox"], "seed": [1, 2, 3]},
 *    "output": "runs/my-sweep",        absent: runs/sweep-<grid file stem>
 *    "description": "free text"}       ignored
 *
 * The sweep runs the cartesian product of the lists, first key slowest:
 * point i is written to <output>/point-<i, 4 digits>/ (its run.dir). The
 * world communicator is split into P / group_size groups, each one
 * federation (server + clients) that takes the next unfinished point from a
 * shared counter. Every finished point leaves <point dir>/row.json; the
 * table of all rows is <output>/results.csv and results.json, rewritten as
 * points finish and once more at the end. <output>/sweep.json records the
 * grid's fingerprint; a restart with the same grid skips completed points
 * and retries failed ones; a restart with another grid is refused.
 *
 * Every key and value of the grid is checked before any point runs; a point
 * whose combination of values fails (at config load or while running) gets
 * a row with status "failed" and its message, and the sweep goes on. */
#ifndef FEDKD_SWEEP_H
#define FEDKD_SWEEP_H

#include <mpi.h>

#include <cjson/cJSON.h>

#include "fedkd/config/config.h"
#include "fedkd/core/status.h"

typedef struct fedkd_sweep_grid fedkd_sweep_grid;

/* Reads and checks the grid file for a world of `world_size` processes:
 * the base config (with the user's `overrides` on top, which apply to every
 * point), each grid key with each of its values, the group size, and that
 * no point leaves a client rank of a group without a client. Messages name
 * the grid file and the key. Touches no file but the grid and base. */
fedkd_status fedkd_sweep_grid_load(fedkd_sweep_grid **out, const char *grid_path,
                                   const char *const *overrides, int num_overrides,
                                   int world_size);
void fedkd_sweep_grid_destroy(fedkd_sweep_grid **grid);

int fedkd_sweep_grid_num_points(const fedkd_sweep_grid *grid);
int fedkd_sweep_grid_num_keys(const fedkd_sweep_grid *grid);
const char *fedkd_sweep_grid_key(const fedkd_sweep_grid *grid, int key_index);
int fedkd_sweep_grid_group_size(const fedkd_sweep_grid *grid);
const char *fedkd_sweep_grid_output(const fedkd_sweep_grid *grid);
/* 16 hex digits: a hash of the grid's keys and values and of the merged base
 * config (overrides included, run.dir excluded). */
const char *fedkd_sweep_grid_fingerprint(const fedkd_sweep_grid *grid);

/* The value of key `key_index` at `point` (a node of the grid document). */
const cJSON *fedkd_sweep_point_value(const fedkd_sweep_grid *grid, int point, int key_index);
/* The point's config: base, overrides, the point's values, run.dir. */
fedkd_status fedkd_sweep_point_config(const fedkd_sweep_grid *grid, int point,
                                      fedkd_config *config);

/* Runs the sweep on `world`. Every rank returns the same status: FEDKD_OK
 * when every point completed; FEDKD_ERR_CONFIG (message on rank 0) when the
 * grid is bad, the output holds another grid's results, or some points
 * failed; FEDKD_ERR_INTERRUPTED on SIGINT / SIGTERM (finished points stay,
 * a restart continues). */
fedkd_status fedkd_sweep_run(const char *grid_path, const char *const *overrides,
                             int num_overrides, MPI_Comm world);

#endif
