/* Checkpoints: everything a federation needs to continue exactly where it
 * stopped, in one HDF5 file written in parallel (MPI-IO) by the ranks of
 * the federation's communicator. README.md documents the layout:
 *
 *   /                    attributes: format = "fedkd-checkpoint", format_version,
 *                        fedkd_sim_version, round (rounds completed), config (JSON)
 *   /global              the global model, in the model-file layout (model_file.h)
 *   /server/state        float32 [n]: the server's persistent state (n may be 0)
 *   /clients             attributes: num_clients, state_len
 *   /clients/num_samples int64 [num_clients]
 *   /clients/state       float32 [num_clients, state_len], only when state_len > 0;
 *                        row c is client c's persistent state (its model, its
 *                        optimizer's moments, ...), written by the rank hosting c
 *   /partition           attributes: scheme, num_classes, total, dropped
 *   /partition/offsets   int64 [num_clients + 1]: client c owns indices[offsets[c]:offsets[c+1]]
 *   /partition/indices   uint32 [assigned samples]: training-set rows
 *   /partition/histograms uint32 [num_clients, num_classes]
 *   /partition/noise_sigma float64 [num_clients]
 *   /metrics/rounds      compound [round]: one record per finished round, the
 *                        fields of rounds.jsonl
 *   /metrics/wall_seconds float64 scalar: run time so far
 *   /metrics/models      float64 [round, 2 * models], only with several global
 *                        models (FedDF over mixed architectures): each round's
 *                        per-model test accuracies, then losses
 *
 * Files are named <run.dir>/checkpoint-<round, 6 digits>.h5. They are written
 * to "<name>.tmp", closed, synced and renamed, so a kill at any instant leaves
 * the newest complete checkpoint in place. */
#ifndef FEDKD_CHECKPOINT_H
#define FEDKD_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/io/metrics.h"
#include "fedkd/nn/nn.h"
#include "fedkd/data/partition.h"

#define FEDKD_CHECKPOINT_FORMAT "fedkd-checkpoint"
#define FEDKD_CHECKPOINT_FORMAT_VERSION 1

/* What a writer hands over. Every rank passes the same round, config, spec,
 * sizes and partition; the buffers are read only where the rank owns them:
 * rank 0 the global model, server state, metrics and wall time; each rank
 * the rows of the clients it hosts. */
typedef struct fedkd_checkpoint_contents {
    int round;                          /* rounds completed, >= 1 */
    const fedkd_config *config;
    const fedkd_model_spec *spec;
    size_t num_params;
    const float *global;                /* rank 0: (num_params) */
    size_t server_state_len;
    const float *server_state;          /* rank 0: (server_state_len) */
    const fedkd_partition *partition;   /* every rank; num_clients comes from it */
    size_t client_state_len;            /* floats per client; 0: none */
    int num_hosted;
    const int *hosted;                  /* (num_hosted) client ids of this rank */
    const float *client_state;          /* (num_hosted, client_state_len) */
    const fedkd_round_metrics *metrics; /* rank 0: (round) */
    /* Several global models (FedDF over mixed architectures): each round's
     * scores (metrics.h), /metrics/models; num_models 0: none, no dataset. */
    int num_models;
    const double *model_scores;         /* rank 0: (round, 2 * num_models) */
    double wall_seconds;                /* rank 0 */
} fedkd_checkpoint_contents;

/* Collective over `comm`: writes <dir>/checkpoint-<round>.h5 through its
 * .tmp name, renames it into place, then deletes older checkpoints beyond
 * the newest `keep` and stale .tmp files. On any rank's failure (a full
 * disk, an unwritable directory) the .tmp is removed, older checkpoints are
 * untouched, and every rank returns the same status with the message kept
 * on one rank only. `written` (may be NULL) receives the path.
 *
 * The file is written through MPI-IO by every rank when clients keep state
 * (each host writes its clients' rows); without per-client state rank 0
 * holds all the data and writes the file alone, which is ten times faster
 * with 16 ranks on 2 cores. FEDKD_CHECKPOINT_MPIIO=1 forces MPI-IO.
 *
 * Rank 0 first checks that the directory takes a file and has room for
 * about the checkpoint's size plus 64 KiB (FEDKD_TEST_SKIP_SPACE_CHECK=1
 * skips the room check, to test a full disk during the write).
 * Test hooks: FEDKD_TEST_SLEEP_IN_CHECKPOINT=seconds makes rank 0 sleep after
 * the data is written and before the file is closed and renamed;
 * FEDKD_TEST_FAIL_CHECKPOINT_ON_RANK=r makes rank r's write fail. */
fedkd_status fedkd_checkpoint_write(MPI_Comm comm, const char *dir, int keep,
                                    const fedkd_checkpoint_contents *contents, char *written,
                                    size_t written_size);

/* A checkpoint as read back by one process (everything but the clients'
 * state rows, which fedkd_checkpoint_read_client_states reads). */
typedef struct fedkd_checkpoint {
    char path[1024];
    int format_version;
    char fedkd_sim_version[32];
    int round;
    char *config_json;
    fedkd_model_spec spec;
    size_t num_params;
    float *global;                  /* (num_params) */
    size_t server_state_len;
    float *server_state;            /* (server_state_len), NULL when 0 */
    int num_clients;
    int64_t *client_num_samples;    /* (num_clients) */
    size_t client_state_len;
    fedkd_partition *partition;
    int num_metrics;                /* == round */
    fedkd_round_metrics *metrics;   /* (num_metrics) */
    int num_models;                 /* 0 without /metrics/models */
    double *model_scores;           /* (num_metrics, 2 * num_models), NULL when 0 */
    double wall_seconds;
} fedkd_checkpoint;

/* Opens, validates and reads a checkpoint. Every check names the file and
 * the attribute or dataset that is wrong: not HDF5, truncated, not a
 * checkpoint, a newer format_version, a missing dataset, a shape that does
 * not match the file's own config and model. */
fedkd_status fedkd_checkpoint_read(const char *path, fedkd_checkpoint *checkpoint);
void fedkd_checkpoint_clear(fedkd_checkpoint *checkpoint);

/* Reads rows `clients[0..n)` of /clients/state (state_len floats each) into
 * out (n, state_len). */
fedkd_status fedkd_checkpoint_read_client_states(const char *path, const int *clients, int n,
                                                 size_t state_len, float *out);

/* The newest checkpoint-<round>.h5 in `dir` (ignoring .tmp files): its path
 * and round, or *round = 0 when there is none (a missing dir has none). */
fedkd_status fedkd_checkpoint_find_latest(const char *dir, char *path, size_t path_size,
                                          int *round);

/* Deletes every checkpoint-<round>.h5 (and .tmp) in `dir`: a fresh run in a
 * directory owns it, and checkpoints of an earlier history must not be
 * resumed into this one. *removed counts the files. */
fedkd_status fedkd_checkpoint_remove_all(const char *dir, int *removed);

/* Whether a run with `config` may continue from a checkpoint written with
 * `stored_json`: every key that changes results must be equal (all but
 * rounds, run.dir, checkpoint.*, target_accuracy). Fails with a message
 * naming the first differing key and both values; the checkpoint's round
 * must not exceed config->rounds. */
fedkd_status fedkd_checkpoint_check_config(const char *path, const char *stored_json, int round,
                                           const fedkd_config *config);

/* Rounds a config may change on resume without changing results. */
int fedkd_checkpoint_key_may_change(const char *key);

#endif
