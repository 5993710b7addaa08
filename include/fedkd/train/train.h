/* Local training loops and evaluation (the train layer).
 *
 * One loop serves plain training, FedProx and (later) KD: the loss is
 * cross-entropy unless a teacher is attached, and a proximal term is added
 * to the gradient when a centre is given. Minibatch order comes from the
 * stream (seed, FEDKD_RNG_LOCAL_SHUFFLE, stream_a, stream_b + pass), so the
 * result depends only on the data and these keys, never on the rank. A pass
 * is one shuffled sweep over the data: an epoch, or with a fixed number of
 * steps, as many passes as the steps need (the last one cut short). */
#ifndef FEDKD_TRAIN_H
#define FEDKD_TRAIN_H

#include <stdint.h>

#include "fedkd/config/config.h"
#include "fedkd/data/augment.h"
#include "fedkd/data/data.h"
#include "fedkd/nn/nn.h"

/* A source of soft targets for KD. For each minibatch the loop asks for the
 * teacher distribution at `temperature` of the samples `rows` (indices into
 * the training dataset) whose features are `batch_features`; the callback
 * writes (count, classes) probabilities into `probs` and, optionally, a
 * per-sample KD weight into `sample_weight` (NULL-safe: leave it untouched to
 * use settings.kd_weight for every sample). Frozen teachers precompute; deep
 * mutual learning asks its peers' current models. */
typedef struct fedkd_teacher {
    fedkd_status (*soft_targets)(void *context, const uint32_t *rows, int count,
                                 const float *batch_features, float temperature, float *probs,
                                 float *sample_weight);
    void *context;
} fedkd_teacher;

/* The buffers of fedkd_train_local (minibatch, order, loss gradient, KD
 * scratch), kept between calls: a rank that trains its clients one after
 * another allocates them once instead of once per client and round. They
 * grow to the largest call; no call relies on what an earlier one left. */
typedef struct fedkd_train_scratch fedkd_train_scratch;
fedkd_status fedkd_train_scratch_create(fedkd_train_scratch **out);
/* Frees the buffers and NULLs *scratch; NULL-safe. */
void fedkd_train_scratch_destroy(fedkd_train_scratch **scratch);

typedef struct fedkd_train_settings {
    int epochs;                 /* passes over the data (when steps is 0) */
    long steps;                 /* > 0: exactly this many minibatch steps instead of
                                   epochs; a pass that runs out wraps to the next
                                   pass with a new shuffle (stream_b + pass) */
    int batch_size;
    uint64_t seed;
    uint64_t stream_a;          /* e.g. client id */
    uint64_t stream_b;          /* e.g. round * epochs */
    const float *prox_center;   /* FedProx: w_global, or NULL */
    float prox_mu;              /* FedProx: adds mu * (w - centre) to the gradient */
    const float *grad_offset;   /* (num_params) added to every gradient (SCAFFOLD's
                                 * c - c_i), or NULL */
    int drop_last;              /* 1: skip a final partial batch */
    /* NULL, or the augmentation of every batch, with draws from the stream
     * (seed, FEDKD_RNG_AUGMENT, stream_a, stream_b + epoch) in batch order */
    const fedkd_augment_settings *augment;
    const fedkd_teacher *teacher; /* NULL: plain cross-entropy */
    float kd_temperature;       /* T of the KD loss */
    float kd_weight;            /* a in (1 - a) CE + a T^2 KL */
    fedkd_train_scratch *scratch; /* NULL: the buffers are allocated per call */
    /* NULL, or (model->num_params) the parameters to start from, copied into
     * model->params. Without running statistics (which a forward pass would
     * write) the first forward and backward passes read them where they are
     * and the first step writes its result into model->params: one pass
     * instead of a copy and a step with SGD after a reset
     * (fedkd_optimizer_step_model_clear_grads_into). They are only read. */
    const float *start_params;
} fedkd_train_settings;

fedkd_train_settings fedkd_train_default_settings(void);

typedef struct fedkd_train_stats {
    double mean_loss;     /* mean over batches of the last pass (epoch) */
    double first_loss;    /* mean over batches of the first pass (epoch) */
    long steps;
    long samples;         /* samples processed over all epochs */
    double seconds;
} fedkd_train_stats;

/* The passes over `count` samples that settings->steps steps take in batches
 * of `batch_size` (ceil(steps / batches per pass)); settings->epochs when
 * steps is 0. A caller that keys stream_b by round multiplies by it, so that
 * no two rounds share a shuffle; local.steps equal to whole epochs then
 * trains exactly as local.epochs does. 0 when no batch fits (no data). */
long fedkd_train_passes(const fedkd_train_settings *settings, size_t count, int batch_size);

/* Trains `model` in place on `data`; the optimizer's state is used as is
 * (reset it first for a fresh start). Fails with FEDKD_ERR_NUMERIC if the
 * loss stops being finite. */
fedkd_status fedkd_train_local(fedkd_model *model, fedkd_optimizer *optimizer,
                               const fedkd_dataset *data, const fedkd_train_settings *settings,
                               fedkd_train_stats *stats);

/* Test accuracy and mean cross-entropy over the whole dataset, in batches of
 * at most model->max_batch. Sums are taken in a fixed order. */
fedkd_status fedkd_evaluate(fedkd_model *model, const fedkd_dataset *data, double *accuracy,
                            double *mean_loss);

/* Asks for the first and last cache line of rows order[first .. first +
 * count) of data (those below data->count) without waiting for them, so that a later
 * fedkd_gather_batch of those rows finds their misses under way or done
 * (fedkd_gather_batch itself starts with this). */
void fedkd_prefetch_batch(const fedkd_dataset *data, const uint32_t *order, size_t first,
                          int count);
/* Copies rows order[first .. first + count) of data into contiguous buffers. */
void fedkd_gather_batch(const fedkd_dataset *data, const uint32_t *order, size_t first,
                        int count, float *features, int32_t *labels);

/* Deep mutual learning of K = num_models peers on `data`, same minibatches
 * for all (the stream of fedkd_train_local with `train`'s keys): peer i
 * minimises CE(y, p_i) + 1/(K-1) sum_{j != i} KL(p_j || p_i) with every
 * p_j computed before any peer steps. With K = 1 this is plain training,
 * bit for bit. Peers must share the number of classes. */
fedkd_status fedkd_train_mutual(fedkd_model *const *models, fedkd_optimizer *const *optimizers,
                                int num_models, const fedkd_dataset *data,
                                const fedkd_train_settings *train, long *steps);

/* ---- learning-rate schedules across rounds -------------------------------- */

/* The rate of round `round` (1-based) of `rounds`, from `base`:
 *   warm-up   round r <= W (W = warmup_rounds): base * r / W
 *   then, with t = r - W - 1 rounds since the warm-up and T = rounds - W:
 *   constant  base
 *   step      base * decay^floor(t / step_rounds)
 *   cosine    min + (base - min) * (1 + cos(pi * t / T)) / 2
 * so cosine starts at base and its last round is still above min. */
double fedkd_lr_at(const fedkd_lr_schedule_config *schedule, double base, int round, int rounds);
/* 1 when the schedule depends on the total number of rounds (cosine): a
 * resume that changes `rounds` would change its rates. */
int fedkd_lr_schedule_uses_rounds(const fedkd_lr_schedule_config *schedule);

/* ---- what local training takes from the config --------------------------- */

/* The optimizer of local.* (local.optimizer, lr, momentum, nesterov,
 * weight_decay). */
fedkd_optimizer_settings fedkd_train_optimizer_settings(const fedkd_config *config);
/* The config's `model` for this data shape and number of classes. */
fedkd_status fedkd_train_model_spec(const fedkd_config *config, fedkd_shape shape,
                                    int num_classes, fedkd_model_spec *spec);

#endif
