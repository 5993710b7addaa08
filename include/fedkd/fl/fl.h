/* The federation runtime: client placement and sampling, the round
 * protocol over MPI collectives, algorithms as a table found by name, and
 * byte accounting. See ../shared/DESIGN.md "One round". */
#ifndef FEDKD_FL_H
#define FEDKD_FL_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/io/metrics.h"
#include "fedkd/train/train.h"

/* ---- algorithms ---------------------------------------------------------- */

/* The round hooks of an algorithm: private to the fl layer (src/fl/fl_round.h). */
struct fl_algorithm_ops;

typedef struct fedkd_algorithm {
    const char *name;
    const char *summary;
    /* 1: the algorithm needs the public / proxy set (include/fedkd/data/clientset.h). */
    int uses_public;
    /* 1: the server keeps a global model, broadcast every round and scored
     * on the test set (FedAvg, FedProx, FedDF). 0: every client keeps its
     * own model between rounds (FedMD, DS-FL, FD, DML); a round's test
     * accuracy and loss are the means over its participants' models, each
     * scored on the test set by the rank hosting it after its training. */
    int global_model;
    /* 1: clients may train different architectures (`clients.models`); with
     * a global model (FedDF) the server keeps one per architecture. */
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

typedef struct fedkd_run_options {
    /* NULL or "": a fresh run. "auto": continue from the newest complete
     * checkpoint in run.dir, or start fresh when there is none. Otherwise
     * the path of a checkpoint to continue from (include/fedkd/io/checkpoint.h).
     * A resumed run ends bit-identical to one never interrupted, at any
     * number of processes; a config that differs in anything but rounds,
     * run.dir, checkpoint.* and target_accuracy is refused. */
    const char *resume;
    /* Client-set flags a mode adds to the algorithm's own
     * (include/fedkd/data/clientset.h): kd-start holds the public rows out
     * of its federations' partition with FEDKD_CLIENTSET_PUBLIC. */
    unsigned data_flags;
    /* Without a resume, a run.dir that holds checkpoints is refused unless
     * this is set: then they are deleted and the run starts at round 1. */
    int start_over;
    /* Load the data, estimate every rank's memory, have rank 0 print the
     * estimates, and stop before allocating models or training. */
    int dry_run;
} fedkd_run_options;

/* One federation of config->algorithm on `comm` (options may be NULL).
 * Every rank returns the same status; only the rank where an error arose
 * has its message recorded (rank 0 too if every rank failed the same way). */
fedkd_status fedkd_run_federated(const fedkd_config *config, MPI_Comm comm,
                                 const fedkd_run_options *options, fedkd_run_result *result);

#endif
