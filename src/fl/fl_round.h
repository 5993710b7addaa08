/* What the round loop (federation.c) shares with the algorithms' hooks
 * (algorithms.c, alg_scaffold.c, alg_fednova.c and alg_feddf.c for the
 * weight-averaging ones, alg_softlabel.c for the soft-label ones).
 * ../shared/DESIGN.md, "One round":
 *
 *   1. header down (round, command, selected clients)
 *   2. payload down: payload.down floats (global weights, or the server
 *      state: consensus soft labels / per-class logits), when not 0
 *   3. every hosted, selected client: client_round() trains its model and
 *      adds its contribution into `sum` with exact fixed-point weights
 *   4. one integer reduction of payload.up + SLOT_EXTRA values
 *   5. rank 0: server_update() turns the sum into the new global weights or
 *      server state; evaluation, logs, checkpoints as for every algorithm.
 *
 * Soft-label algorithms that keep client models (FedMD, DS-FL, DML) shift
 * the exchange by half a round so that each round has one broadcast and one
 * reduction: the uploads of round r are predictions on round r + 1's public
 * sample, the server state after round r is their consensus, and round
 * r + 1's participants fit it before their private training. */
#ifndef FEDKD_FL_ROUND_H
#define FEDKD_FL_ROUND_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/config/config.h"
#include "fedkd/data/data.h"
#include "fedkd/fl/fl.h"
#include "fedkd/nn/nn.h"
#include "fedkd/data/partition.h"
#include "fl/client_models.h"

struct fl_netsim;

/* Values after an algorithm's payload in the reduced int64 buffer. */
enum {
    SLOT_TRAIN_LOSS,    /* sample-weighted mean of the last private epoch's loss */
    SLOT_ERRORS,        /* clients that failed */
    SLOT_TEST_ACCURACY, /* clients keeping models: mean test accuracy of the participants */
    SLOT_TEST_LOSS,     /* ... and mean test loss */
    SLOT_EXTRA
};

/* What every hook may read about the run; the same on every rank except
 * where noted. */
typedef struct fl_run {
    const fedkd_config *config;
    const fedkd_algorithm *algorithm;
    int rank, size;
    int num_clients, num_classes;
    const fedkd_partition *partition;
    const fedkd_dataset *public_set; /* ranks hosting clients and rank 0, when used */
    size_t public_count;             /* public samples (0: none) */
    size_t sample_len;               /* public rows a round uses (public.per_round) */
    fl_client_models models;         /* each client's architecture */
    size_t num_params;               /* the global model's (config key `model`) */
    /* Algorithms with a global model keep one per architecture of
     * clients.models (only FedDF allows more than one; the others refuse
     * mixed models): architecture 0's is the global weights above (`model`),
     * architecture g's the global_offset[g] floats on of the broadcast, which
     * is the global weights followed by the server state, where the other
     * architectures' models lead. global_offset[num_globals]: all of them. */
    int num_globals;
    size_t global_offset[FL_MAX_ARCHITECTURES + 1];
    const struct fl_netsim *netsim;  /* devices, dropout, deadline (netsim.h) */
    /* The local training's buffers, one set per rank for all its clients
     * (NULL: allocated per call). */
    struct fedkd_train_scratch *train_scratch;
} fl_run;

/* A round's sizes in floats, the same on every rank. */
typedef struct fl_payload {
    size_t down;     /* broadcast to the participants (0: nothing this round) */
    size_t up;       /* summed contributions carried by the reduction */
    size_t sent_up;  /* one participant's upload, in floats before compression */
    size_t sent_down; /* what a participant receives, when less than `down` (FedBN: the
                         normalisation floats stay on the clients); 0: down */
    /* What comm.compression may compress in sent_up (compress.h): segments
     * of weight deltas, each up_weights long, and one of soft labels; the
     * rest travels as float32. 0: nothing. */
    size_t up_weights;
    int up_weight_segments;
    size_t up_soft;
} fl_payload;

/* One hosted, selected client's round. */
typedef struct fl_client_round {
    int round;
    int client;
    const int *selected;          /* (count) the round's participants, ascending */
    int count;
    const fedkd_dataset *data;    /* the client's own samples */
    fedkd_model *model;           /* in: the global weights or the client's model; out: trained */
    /* ops->takes_start: (model->num_params) the start, not yet in model;
     * fl_train_private* takes it over and sets this NULL. Else NULL. */
    const float *start;
    fedkd_optimizer *optimizer;   /* freshly reset */
    /* (payload.down) what the server broadcast, NULL if nothing; the
     * client's architecture's global model is at run->global_offset[its
     * architecture], where the round loop took c->model's start from */
    const float *down;
    const uint32_t *sample;       /* (sample_len) this round's public rows */
    const uint32_t *next_sample;  /* (sample_len) the next round's */
    double weight;                /* its share of the participants' samples */
    int64_t *sum;                 /* (payload.up) where its contribution goes */
    /* (client_state_len) its persistent state row where the algorithm keeps
     * one beside the global model (SCAFFOLD's control variate), else NULL */
    float *state;
    /* (fl_residual_len) its top-k error residual where comm.compression is
     * "topk", else NULL: persistent client state like `state` */
    float *residual;
    double train_loss;            /* out: mean loss of its last private epoch */
    long steps;                   /* out: optimizer steps of its private training */
    double lr;                    /* out: the learning rate it trained at this round */
} fl_client_round;

/* Rank 0's update after the reduction. */
typedef struct fl_server_round {
    int round;
    int count;
    const int64_t *sum;           /* (payload.up) */
    float *global;                /* (num_params) the global model */
    float *state;                 /* (server_state_len) */
    const uint32_t *sample;       /* (sample_len) this round's public rows */
    /* needs_server_model: (run->num_globals) a trainable model of each
     * architecture, and its optimizer (reset it before use) */
    fedkd_model *const *models;
    fedkd_optimizer *const *optimizers;
} fl_server_round;

typedef struct fl_algorithm_ops {
    /* Checks of the config that need no data, on every rank before the
     * first collective (NULL: none). */
    fedkd_status (*check_config)(const fedkd_config *config);
    /* payload.down of an algorithm with a global model is its weights; when
     * it is longer, the server state follows them (SCAFFOLD's control
     * variate), packed by the round loop. */
    fl_payload (*payload)(const fl_run *run, int round);
    /* Floats the server keeps between rounds (checkpointed as /server/state). */
    size_t (*server_state_len)(const fl_run *run);
    /* Floats each client keeps between rounds (checkpointed as a row of
     * /clients/state, zero at the start). NULL: its model's parameters where
     * clients keep their own model, else nothing. */
    size_t (*client_state_len)(const fl_run *run);
    fedkd_status (*client_round)(const fl_run *run, fl_client_round *c);
    fedkd_status (*server_update)(const fl_run *run, fl_server_round *s);
    /* 1: rank 0 needs a trainable model and optimizer of every architecture
     * (FedDF's distillation). */
    int needs_server_model;
    /* Rank 0: the server state's start (NULL: zeros; a resume overwrites it). */
    fedkd_status (*init_server_state)(const fl_run *run, float *state);
    /* Floats the round's participants upload together, for bytes_up (NULL:
     * payload.sent_up each). */
    uint64_t (*upload_floats)(const fl_run *run, const int *selected, int count);
    /* Public-set samples a participant trains on in `round` beyond its
     * private data, for the simulated clock (netsim.h); NULL: none. */
    size_t (*public_samples)(const fl_run *run, int round);
    /* 1: client_round trains through fl_train_private* before it reads
     * c->model's parameters, so the round loop hands the start over in
     * c->start instead of copying it into the model first (the first
     * optimizer step reads it in place: fedkd_train_settings.start_params). */
    int takes_start;
} fl_algorithm_ops;

extern const fl_algorithm_ops fl_fedmd_ops, fl_dsfl_ops, fl_fd_ops, fl_dml_ops;
extern const fl_algorithm_ops fl_scaffold_ops, fl_fednova_ops, fl_feddf_ops;

/* FedBN (fedbn.c, config key `fedbn`): the normalisation floats of the
 * model (0 when off), the floats a client's state row holds for them (0
 * when off), and the payload with them left out of the bytes sent: down
 * carries them copies_down times, an upload copies_up times. */
size_t fl_fedbn_local_len(const fl_run *run);
size_t fl_fedbn_state_len(const fl_run *run);
fl_payload fl_fedbn_payload(const fl_run *run, fl_payload payload, size_t copies_down,
                            size_t copies_up);
/* Before a client trains: its own normalisation parameters into c->model
 * (once it has trained before); after: back into its state row. */
void fl_fedbn_restore(const fl_run *run, const fl_client_round *c);
void fl_fedbn_save(const fl_run *run, const fl_client_round *c);
/* Zeroes the normalisation entries of a (num_params) vector. */
void fl_fedbn_zero_local(const fl_run *run, float *vector);

/* Local training of c->model on its own data for local.epochs (or
 * local.steps minibatch steps): cross-entropy, plus KD from `teacher` (NULL:
 * none) at kd.temperature and kd.weight, and the algorithm's
 * configure_local. Stream (seed, LOCAL_SHUFFLE, client, (round - 1) *
 * passes + pass), passes = local.epochs or the passes local.steps take over
 * the client's data (fedkd_train_passes), as FedAvg's clients. Sets
 * c->train_loss, c->steps and c->lr. */
fedkd_status fl_train_private(const fl_run *run, fl_client_round *c, const fedkd_teacher *teacher,
                              const float *global);
/* The same with a gradient offset added at every step (SCAFFOLD's c - c_i;
 * NULL: none). */
fedkd_status fl_train_private_offset(const fl_run *run, fl_client_round *c,
                                     const fedkd_teacher *teacher, const float *global,
                                     const float *grad_offset);

/* The weight of a round's gradients in the displacement x - y of plain SGD
 * after `steps` steps with heavy-ball momentum: sum over k = 1..steps of
 * (1 - m^k) / (1 - m), which is `steps` without momentum (FedNova's
 * normaliser a_i; SCAFFOLD's K when it estimates a client's mean gradient). */
double fl_sgd_effective_steps(long steps, double momentum);
/* SCAFFOLD's client variate after training from `global` to `trained`:
 * c_i = c_i - c + (global - trained) / (effective_steps * lr), in place;
 * change (n) gets the new c_i minus the old. No step leaves c_i as it is. */
void fl_scaffold_update_variate(float *client_variate, const float *server_variate,
                                const float *global, const float *trained, size_t n,
                                double effective_steps, double lr, float *change);
/* The round's rate of `schedule` from `base` into *lr, and, unless the
 * rate never changes (constant, no warm-up: *out stays NULL, use the
 * run's optimizer), a fresh optimizer of local.* at that rate. */
fedkd_status fl_round_optimizer(const fedkd_config *config,
                                const fedkd_lr_schedule_config *schedule, double base, int round,
                                size_t num_params, fedkd_optimizer **out, double *lr);
/* A resume may change `rounds`, except where a schedule's rates follow it
 * (cosine): then the checkpoint's config (stored_json) must have the same. */
fedkd_status fl_check_schedule_resume(const fedkd_config *config, const char *stored_json,
                                      const char *path);
/* FEDKD_ERR_CONFIG naming local.optimizer unless it is "sgd". */
fedkd_status fl_require_sgd(const fedkd_config *config, const char *algorithm);

#endif
