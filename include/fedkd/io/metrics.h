/* What a run reports: one record per round and the run's outcome. The
 * federation fills them, run logs, summaries and checkpoints write them. */
#ifndef FEDKD_IO_METRICS_H
#define FEDKD_IO_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* Global models a round reports one by one, at most (FedDF keeps one per
 * architecture). Their scores live beside the round records, not in them
 * (a run keeps every round's record): a round's are 2 * num_models doubles,
 * each model's test accuracy in architecture order, then each one's test
 * loss; fedkd_round_metrics' test_accuracy and test_loss are their means. */
#define FEDKD_MAX_MODEL_METRICS 8

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

/* A round on the simulated network (src/fl/netsim.c), logged beside its
 * metrics. Not kept with them: the federation computes it again from the
 * seed whenever it writes a round's row. */
typedef struct fedkd_round_network {
    double simulated_seconds;    /* the round's simulated duration, 0 without the clock */
    int dropped;                 /* selected clients that did not report */
    const int *dropped_clients;  /* (dropped) their ids, ascending, or NULL */
} fedkd_round_network;

typedef struct fedkd_run_result {
    int rounds_run;
    double final_accuracy, best_accuracy;
    int rounds_to_target;    /* 0 if never reached */
    uint64_t bytes_to_target;
    uint64_t bytes_down_total, bytes_up_total, wire_bytes_total;
    /* The simulated clock, when network.enabled: the rounds' simulated
     * seconds summed, and the sum up to rounds_to_target. */
    int simulated;
    double simulated_seconds_total, simulated_seconds_to_target;
    double wall_seconds;
    /* A federation's set-up: from MPI_Init (the process's first federation)
     * or from the federation's start (later ones) to its first round, the
     * slowest rank's; and the bytes its data loading moved between ranks.
     * Written to summary.json (setup_seconds, wire_bytes_setup) when
     * setup_seconds > 0. */
    double setup_seconds;
    uint64_t setup_bytes;
    /* FNV-1a of the final global parameters' bytes (one global model per
     * architecture: of all of them, one after the other); without a global model
     * (clients keep their own) the FNV-1a of the clients' model checksums in
     * client order, for completed runs. */
    uint64_t params_checksum;
    size_t num_params;       /* the global model's (config key `model`) */
    float *final_params;     /* rank 0 with a global model: (num_params) `model`'s, free() it; else NULL */
} fedkd_run_result;

#endif
