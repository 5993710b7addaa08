/* Private to src/kd: the KD-consolidated start (mode `kd-start`, see
 * include/fedkd/experiments/experiments.h): the consolidation steps that talk to other ranks,
 * and what rank 0 reports. */
#ifndef FEDKD_KD_START_PRIVATE_H
#define FEDKD_KD_START_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/fl/fl.h"

/* The student's minibatch stream: (seed, LOCAL_SHUFFLE, this, FEDKD_KD_STREAM
 * + epoch). Clients key their streams by their ids, far below. */
#define KD_START_STUDENT_STREAM 3000000u

enum kd_start_kind { KD_START_RANDOM, KD_START_AVERAGE, KD_START_KD, KD_START_COUNT };

/* "random", "average", "kd": the starts' names in files and tables. */
extern const char *const kd_start_names[KD_START_COUNT];

/* One start and the federation run from it (rank 0). */
typedef struct kd_start_outcome {
    char run_dir[600];             /* the federation's run.dir */
    char init_model[640];          /* its init.model; "" for the seeded start */
    double round0_accuracy;        /* the start model's test accuracy */
    uint64_t start_checksum;       /* FNV-1a of the start model's parameters */
    uint64_t consolidation_bytes;  /* what the clients uploaded to build the start */
    int consolidation_rounds;      /* exchanges with the clients to build it: 0 for the
                                      seeded start, 1 for the average (weights up) and
                                      for the KD start (logits up) */
    uint64_t consolidation_wire_bytes; /* what its reduction moved between ranks */
    double consolidation_seconds;
    int reused;                    /* --resume auto kept a completed run */
    int ran;                       /* the federation finished (run below is valid) */
    fedkd_run_result run;          /* final_params freed except for the KD start's */
} kd_start_outcome;

typedef struct kd_start_report {
    int num_clients, classes;
    size_t public_count, num_params;
    double pretrain_seconds;       /* loading, pre-training or reuse, report */
    double wall_seconds;           /* the whole pipeline */
    kd_start_outcome starts[KD_START_COUNT];
} kd_start_report;

/* The ensemble's soft targets on the public set. Every rank passes the
 * logits (count, classes) of the models it hosts; each model adds
 * softmax_T(logits) (ensemble_logits 0) or its logits (1) into a 64-bit
 * fixed-point sum, which is reduced to rank 0 exactly, so the targets do not
 * depend on which rank hosted which model. Rank 0 writes into targets
 * (count, classes) the mean over num_clients models of the probabilities,
 * or softmax_T of the mean logits. Collective; every rank returns the same
 * status. */
fedkd_status kd_start_ensemble_targets(MPI_Comm comm, const float *const *logits, int num_hosted,
                                       int num_clients, size_t count, int classes,
                                       float temperature, int ensemble_logits, float *targets);

/* The sample-weighted mean of the hosted models' parameters (weights[h] =
 * the client's share of all clients' samples), summed in fixed point and
 * reduced to rank 0's average (num_params). Collective, like the above. */
fedkd_status kd_start_average_params(MPI_Comm comm, const float *const *params,
                                     const double *weights, int num_hosted, size_t num_params,
                                     float *average);

/* The run's outcome as summary.json's generic fields report it: the KD
 * start's federation, with the logits' upload added to bytes_up_total and
 * bytes_to_target, wall_seconds the whole pipeline's. No final_params. */
void kd_start_overall(const kd_start_report *report, fedkd_run_result *out);

/* Rank 0: kd_start.json and kd_start.csv (only once every federation ran),
 * summary.json (the KD start's outcome as the run's, plus per-start fields,
 * status_text "completed", "failed" or "interrupted"), and the comparison
 * table on stdout when completed. */
fedkd_status kd_start_write(const fedkd_config *config, const kd_start_report *report,
                            const char *status_text);

#endif
