/* The federation runtime: client placement and sampling, the round
 * protocol over MPI collectives, algorithms as a table found by name, and
 * byte accounting. See ../shared/DESIGN.md "One round". */
#ifndef FEDKD_FL_H
#define FEDKD_FL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/config.h"
#include "fedkd/train.h"

/* ---- algorithms ---------------------------------------------------------- */

/* The round hooks of an algorithm: private to the fl layer (src/fl/fl_round.h). */
struct fl_algorithm_ops;

typedef struct fedkd_algorithm {
    const char *name;
    const char *summary;
    /* 1: the algorithm needs the public / proxy set (include/fedkd/clientset.h). */
    int uses_public;
    /* 1: the server keeps a global model, broadcast every round and scored
     * on the test set (FedAvg, FedProx, FedDF). 0: every client keeps its
     * own model between rounds (FedMD, DS-FL, FD, DML); a round's test
     * accuracy and loss are the means over its participants' models, each
     * scored on the test set by the rank hosting it after its training. */
    int global_model;
    /* 1: clients may train different architectures (`clients.models`). */
    int mixed_models;
    /* Adapts one client's local training to the algorithm (FedProx adds its
     * proximal term around the global weights); NULL where clients keep
     * their own models. */
    void (*configure_local)(const fedkd_config *config, const float *global_params,
                            fedkd_train_settings *settings);
    const struct fl_algorithm_ops *ops;
} fedkd_algorithm;

extern const fedkd_algorithm *const fedkd_algorithms[];
/* Fails with a message naming `algorithm` and listing the known ones. */
fedkd_status fedkd_algorithm_find(const char *name, const fedkd_algorithm **out);

/* ---- placement and sampling --------------------------------------------- */

/* The rank hosting `client`: rank 0 when the communicator has one process,
 * else 1 + client mod (size - 1), a fixed round-robin over client ranks. */
int fedkd_client_host_rank(int client, int comm_size);
/* Fills out[0..n) with the clients `rank` hosts, ascending, and returns n
 * (out has room for num_clients). */
int fedkd_hosted_clients(int num_clients, int rank, int comm_size, int *out);
/* Clients per round: per_round <= 1 is a fraction (at least 1 client),
 * otherwise a count (at most num_clients). */
int fedkd_clients_per_round(int num_clients, double per_round);
/* Fills selected[0..m) with the round's clients, ascending, from the stream
 * (seed, FEDKD_RNG_SAMPLE_CLIENTS, round). Returns m. */
int fedkd_select_clients(uint64_t seed, int round, int num_clients, double per_round,
                         int *selected);

/* ---- deterministic aggregation ------------------------------------------
 * Contributions are summed as 64-bit fixed point (2^-40 resolution), where
 * integer addition is associative, so the sum does not depend on which rank
 * hosted which client or on the reduction order of MPI. */
#define FEDKD_FIXED_SCALE 1099511627776.0 /* 2^40 */
#define FEDKD_FIXED_LIMIT 4.0e6           /* |value| above this cannot be summed safely */

/* accumulator[i] += fixed(weight * values[i]). Returns FEDKD_ERR_NUMERIC if a
 * value is not finite or too large. */
fedkd_status fedkd_fixed_accumulate(int64_t *accumulator, const float *values, size_t n,
                                    double weight);
/* accumulator[i] += fixed(weight * (after[i] - before[i])), the difference
 * in float: a client's weight delta without a buffer for it. */
fedkd_status fedkd_fixed_accumulate_delta(int64_t *accumulator, const float *after,
                                          const float *before, size_t n, double weight);
static inline double fedkd_fixed_to_double(int64_t value)
{
    return (double)value / FEDKD_FIXED_SCALE;
}

/* ---- one federation ------------------------------------------------------ */

typedef struct fedkd_round_metrics {
    int round;               /* 1-based */
    int participants;
    double test_accuracy, test_loss;
    double train_loss;       /* sample-weighted mean over participants */
    uint64_t bytes_down;     /* payload bytes sent to participants */
    uint64_t bytes_up;       /* payload bytes sent by participants */
    uint64_t wire_bytes;     /* bytes every collective of the round moved between ranks */
    double train_seconds;    /* slowest client rank's local training */
    double comm_seconds;     /* server time in collectives not spent waiting for training */
    double aggregate_seconds;
    double eval_seconds;
    double round_seconds;    /* the round's critical path: eval_seconds only when not overlapped */
    int eval_overlapped;     /* 1: the server evaluated this round while clients trained the next */
} fedkd_round_metrics;

typedef struct fedkd_run_result {
    int rounds_run;
    double final_accuracy, best_accuracy;
    int rounds_to_target;    /* 0 if never reached */
    uint64_t bytes_to_target;
    uint64_t bytes_down_total, bytes_up_total, wire_bytes_total;
    double wall_seconds;
    /* FNV-1a of the final global parameters' bytes; without a global model
     * (clients keep their own) the FNV-1a of the clients' model checksums in
     * client order, for completed runs. */
    uint64_t params_checksum;
    size_t num_params;       /* the global model's (config key `model`) */
    float *final_params;     /* rank 0 with a global model: (num_params), free() it; else NULL */
} fedkd_run_result;

/* Set by the SIGINT / SIGTERM / SIGUSR1 handler (SIGUSR1: SLURM's signal
 * before the time limit); runs stop at the next clean point, a federation
 * after writing a checkpoint of its finished rounds. */
extern volatile sig_atomic_t fedkd_stop_requested;
void fedkd_install_signal_handlers(void);

/* Runs config->mode ("federated" or "centralized") on `comm`. Every rank
 * returns the same status; only the rank where an error arose has its
 * message recorded (rank 0 too if every rank failed the same way). */
fedkd_status fedkd_run(const fedkd_config *config, MPI_Comm comm, fedkd_run_result *result);

typedef struct fedkd_run_options {
    /* NULL or "": a fresh run. "auto": continue from the newest complete
     * checkpoint in run.dir, or start fresh when there is none. Otherwise
     * the path of a checkpoint to continue from (include/fedkd/checkpoint.h).
     * A resumed run ends bit-identical to one never interrupted, at any
     * number of processes; a config that differs in anything but rounds,
     * run.dir, checkpoint.* and target_accuracy is refused. */
    const char *resume;
    /* Without a resume, a run.dir that holds checkpoints is refused unless
     * this is set: then they are deleted and the run starts at round 1. */
    int start_over;
} fedkd_run_options;

/* fedkd_run with options (a resume); options may be NULL. */
fedkd_status fedkd_run_with_options(const fedkd_config *config, MPI_Comm comm,
                                    const fedkd_run_options *options, fedkd_run_result *result);

/* `fedkd-sim partition`: rank 0 prints per-client sizes and histograms. */
fedkd_status fedkd_partition_report(const fedkd_config *config, MPI_Comm comm);

uint64_t fedkd_checksum(const void *data, size_t bytes);

#endif
