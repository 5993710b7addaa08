/* The run directory's logs: rounds.jsonl and rounds.csv (one row per round,
 * flushed as it is written, so a killed run keeps every finished round),
 * partition.json and summary.json (written to a temporary name and renamed). */
#ifndef FEDKD_RUNLOG_H
#define FEDKD_RUNLOG_H

#include <stdio.h>

#include <cjson/cJSON.h>
#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/io/metrics.h"

typedef struct fedkd_runlog {
    char dir[512];
    FILE *jsonl;
    FILE *csv;
} fedkd_runlog;

/* Creates the directory (and parents) and truncates the round logs. */
fedkd_status fedkd_runlog_open(fedkd_runlog *log, const char *dir);
fedkd_status fedkd_runlog_write_round(fedkd_runlog *log, const fedkd_round_metrics *m);
/* The same with the round's simulated time and dropped clients (network;
 * NULL: a round without either; the ids go to rounds.jsonl's
 * `dropped_clients`) and several global models' scores (metrics.h: 2 *
 * num_models doubles), which rounds.jsonl adds as `model_accuracy` and
 * `model_loss` (rounds.csv keeps its columns); num_models 0: none. */
fedkd_status fedkd_runlog_write_round_more(fedkd_runlog *log, const fedkd_round_metrics *m,
                                           const fedkd_round_network *network, int num_models,
                                           const double *scores);
void fedkd_runlog_close(fedkd_runlog *log);

/* Writes `json` to dir/name atomically (tmp + rename). */
fedkd_status fedkd_write_json_file(const char *dir, const char *name, const cJSON *json);

/* summary.json, which every mode leaves in run.dir: fedkd_summary_new
 * starts it with the fields every mode shares (fedkd_sim_version, status,
 * seed, mode, algorithm); the mode adds its own; fedkd_summary_write
 * appends the config echo, writes run.dir/summary.json atomically and
 * deletes `summary`. */
cJSON *fedkd_summary_new(const fedkd_config *config, const char *status);
fedkd_status fedkd_summary_write(const fedkd_config *config, cJSON *summary);

/* summary.json of a run with a result: the shared fields, the outcome
 * (rounds, accuracies, rounds and bytes to target, bytes, wall time, the
 * parameters' size and checksum when num_params_known), then the members
 * of `extra` (an object, may be NULL): a mode's own outcomes, which sweeps
 * turn into columns like the others. Rank 0. */
fedkd_status fedkd_summary_write_run(const fedkd_config *config, const char *status_text,
                                     const fedkd_run_result *result, int num_params_known,
                                     const cJSON *extra);

/* Rank 0's progress line for a finished round. */
void fedkd_runlog_print_progress(const fedkd_round_metrics *m, int total_rounds, double elapsed);

/* Reads a JSON document. *out stays NULL (and FEDKD_OK) when the file does
 * not exist; `what` names the file in messages ("grid file"), and malformed
 * JSON is reported with its line and column. */
fedkd_status fedkd_read_json_file(const char *path, const char *what, cJSON **out);

/* One run per run.dir (src/io/run_lock.c): rank 0 locks run.dir/run.lock
 * for the run's life, writing its host and pid into it; a second run into
 * the directory is refused on every rank, naming the holder. The kernel
 * drops the lock when the process ends in any way, so a crashed run leaves
 * nothing stuck. *fd is -1 on the other ranks and after a failure.
 * Collective over `comm`. */
fedkd_status fedkd_run_lock_acquire(const fedkd_config *config, MPI_Comm comm, int *fd);
void fedkd_run_lock_release(int *fd);

/* mkdir -p; messages name the path. */
fedkd_status fedkd_make_directories(const char *path);

#endif
