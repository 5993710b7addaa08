/* Pieces of the sweep shared by sweep.c (grid, MPI orchestration) and
 * sweep_results.c (rows, tables, restart). */
#ifndef FEDKD_SWEEP_PRIVATE_H
#define FEDKD_SWEEP_PRIVATE_H

#include <stddef.h>

#include "fedkd/experiments/experiments.h"
#include "fedkd/experiments/sweep.h"

/* A grid beyond this is a typo, not a study. */
#define SWEEP_MAX_POINTS 1000000

struct fedkd_sweep_grid {
    char path[512];            /* the grid file as given */
    cJSON *document;           /* the parsed grid file (owns the value lists) */
    char base_path[1024];      /* resolved base config file; "" when inline or absent */
    char **base_overrides;     /* inline base as "key=json" overrides */
    int num_base_overrides;
    char **user_overrides;     /* the caller's --set, copied */
    int num_user_overrides;
    int num_keys;
    const char **keys;         /* (num_keys) point into document */
    const cJSON **lists;       /* (num_keys) arrays inside document */
    int *counts;               /* (num_keys) */
    int num_points;
    int group_size;
    char output[400];
    char fingerprint[17];
};

/* <output>/point-<i>. */
void sweep_point_dir(const fedkd_sweep_grid *grid, int point, char *out, size_t out_size);

/* ---- sweep_results.c --------------------------------------------------------- */


/* Rank 0 before any point runs: creates the output directory, checks or
 * writes sweep.json, reads the rows of earlier runs (each must match its
 * point), turns a completed summary.json without a row into a row, and
 * rewrites the tables. todo[0..*num_todo) gets the points still to run
 * (todo has num_points slots). */
fedkd_status sweep_prepare_output(const fedkd_sweep_grid *grid, int *todo, int *num_todo);

/* A row: point, status ("completed" / "failed"), the point's values, the
 * metrics flattened from `summary` (may be NULL), run_dir, message. */
cJSON *sweep_row_create(const fedkd_sweep_grid *grid, int point, const char *status,
                        const char *message, const cJSON *summary);
/* <point dir>/row.json, atomically. */
fedkd_status sweep_row_write(const fedkd_sweep_grid *grid, int point, const cJSON *row);
/* <point dir>/summary.json, or NULL (no file, or not JSON). */
cJSON *sweep_read_summary(const fedkd_sweep_grid *grid, int point);

/* Rewrites results.csv and results.json from every point's row.json. Safe to
 * call from several ranks at once (each writes its own temporary file and
 * renames it). Counts rows by status when the pointers are not NULL. */
fedkd_status sweep_tables_write(const fedkd_sweep_grid *grid, int *completed, int *failed);

#endif
