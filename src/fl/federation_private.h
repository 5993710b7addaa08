/* One federation run's state, shared by the round loop (federation.c) and
 * its persistent state, start and checkpoints (federation_state.c). */
#ifndef FEDKD_FL_FEDERATION_PRIVATE_H
#define FEDKD_FL_FEDERATION_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "fl/fl_private.h"
#include "fl/fl_round.h"
#include "fl/netsim.h"
#include "fedkd/core/node_share.h"
#include "fedkd/core/slots.h"

typedef struct federation {
    const fedkd_config *config;
    MPI_Comm comm;
    int rank, size;
    const fedkd_algorithm *algorithm;
    unsigned data_flags;         /* the run options' client-set flags */
    fedkd_slots *slots;          /* run.compute_slots: NULL without a limit */
    fedkd_node_share *node_share; /* the round through node-shared memory; NULL: MPI alone */
    int dry_run;                 /* the run options': estimate memory, do not train */
    fl_run run;                  /* what the algorithm's hooks see */
    fedkd_model_spec spec;       /* the global model's (config key `model`) */
    fedkd_client_set data;       /* owns the partition and every dataset below */
    const fedkd_partition *partition;
    int num_clients;
    int num_hosted;
    int *hosted;                 /* (num_hosted) client ids, ascending */
    fedkd_dataset **client_data; /* (num_hosted) */
    /* Rank 0; also ranks hosting clients when clients keep their models
     * (each scores its participants). */
    const fedkd_dataset *test;
    /* Ranks hosting clients: one model and optimizer per clients.models
     * entry their clients use (NULL for the others). */
    fedkd_model **train_models;  /* (run.models.num_entries) */
    fedkd_optimizer **optimizers;/* (run.models.num_entries) */
    /* Rank 0: one per global model (run.num_globals, architecture order). */
    fedkd_model *eval_models[FL_MAX_ARCHITECTURES];
    /* ... and, for algorithms that train on the server (FedDF), one trainable. */
    fedkd_model *server_models[FL_MAX_ARCHITECTURES];
    fedkd_optimizer *server_optimizers[FL_MAX_ARCHITECTURES];
    size_t num_params;           /* the global model's */
    float *global;               /* (num_params) */
    /* (payload.down) the broadcast without a global model, or the global
     * model followed by the server state (SCAFFOLD, FedDF's other
     * architectures) */
    float *down;
    uint32_t *sample;            /* (run.sample_len) this round's public rows */
    uint32_t *next_sample;       /* (run.sample_len) the next round's */
    size_t sum_len;              /* payload.up: the summed contributions */
    int64_t *accumulator;        /* (sum_len + SLOT_EXTRA) */
    int64_t *reduced;            /* rank 0: same size */
    uint64_t *checksums;         /* (2 * num_clients): clients' final models */
    int *header;                 /* (HEADER_FIXED + num_clients) */
    int first_failed_client;     /* INT_MAX while every hosted client trains fine */
    fedkd_runlog log;
    /* Persistent state between rounds (state_sizes in federation_state.c). */
    size_t client_state_len;     /* floats per client, the top-k residual last */
    size_t residual_len;         /* of them the top-k residual's (compress.h) */
    float *client_state;         /* (num_hosted, client_state_len) */
    size_t server_state_len;
    float *server_state;         /* rank 0: (server_state_len) */
    /* Rank 0: every finished round's metrics, for checkpoints. */
    fedkd_round_metrics *history;/* (history_capacity), history_len used */
    int history_len, history_capacity;
    /* Several global models (FedDF over mixed architectures): num_models
     * (else 0) and every finished round's scores (fedkd/io/metrics.h). */
    int num_models;
    double *model_scores;        /* (history_capacity, 2 * num_models) */
    int first_round;             /* 1, or the checkpoint's round + 1 */
    int last_checkpoint;         /* round of the newest checkpoint written or resumed */
    double earlier_seconds;      /* run time before the resumed checkpoint */
    char resume_path[1024];      /* the checkpoint resumed from, or "" */
    /* The simulated clock and dropouts (netsim.h): who of the selected
     * clients reports this round, and of the previous round. */
    fl_netsim netsim;
    fl_round_plan plan, previous_plan;
    fl_round_plan log_plan;      /* rank 0: a logged round's, for its dropped ids */
} federation;

/* Sizes and allocates the persistent state; clients that keep models get
 * their seeded initial models, the server state its algorithm's start.
 * Needs the train models built. */
fedkd_status fl_fed_allocate_state(federation *f);
/* What this rank will hold once its models and buffers are allocated (its
 * data is loaded already and counted as it is), with a short account
 * ("models 1.2 GiB, data 40 MiB, buffers 3 MiB"), and what its node's ranks
 * will share (the round's sum and broadcast areas, fedkd_node_share: the
 * same on every rank, 0 at P = 1); src/fl/memory_estimate.c. */
fedkd_status fl_fed_memory_estimate(const federation *f, double *bytes, double *node_shared,
                                    char *account, size_t account_size);
/* Where the run starts: a checkpoint (--resume), init.model or the seeded
 * initialisation. Collective. */
fedkd_status fl_fed_choose_start(federation *f, const fedkd_run_options *options);
/* Every rank: the state after `round` rounds into checkpoint-<round>.h5. */
fedkd_status fl_fed_write_checkpoint(federation *f, int round, double run_start);
/* Rank 0: room for `rows` rounds of metrics. */
fedkd_status fl_fed_reserve_history(federation *f, int rows);
/* Rank 0: architecture g's global model (the global weights for g = 0,
 * else its place at the head of the server state). */
float *fl_fed_global_model(federation *f, int g);
/* Collective: rank 0 gets a checksum of every client's own model (the FNV-1a
 * of their per-client checksums in client order), the same at any number
 * of ranks; 0 elsewhere. */
uint64_t fl_fed_client_checksum(federation *f);

#endif
