/* Building blocks of the soft-label federations (../shared/METHODS.md):
 * the round's sample of the public set, a model's logits on it, per-class
 * mean logits (FD), entropy-reduction aggregation (DS-FL), fitting a model
 * to soft targets on public rows (FedMD's digest, DS-FL's and DML's
 * distillation, FedDF's server distillation with early stopping), the
 * per-class KD teacher of FD, and the fixed-point payload helpers.
 *
 * Everything here is local to one process and deterministic: the same
 * inputs and stream keys give the same bits on any rank. */
#ifndef FEDKD_FL_SOFTLABEL_H
#define FEDKD_FL_SOFTLABEL_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/data/data.h"
#include "fedkd/nn/nn.h"
#include "fedkd/train/train.h"

/* Stream keys. The round's public sample is drawn from (seed, PUBLIC_SPLIT,
 * round, FL_PUBLIC_SAMPLE_STREAM) and FedDF's validation split of it from
 * (seed, PUBLIC_SPLIT, round, FL_FEDDF_SPLIT_STREAM); the b-keys stay clear
 * of the public hold-out (a = 2, b = 0) and tuned KD's split (b = 1).
 * Minibatches on the public set shuffle with (seed, LOCAL_SHUFFLE,
 * FL_PUBLIC_SHUFFLE_A + client, (round - 1) * epochs + epoch), the server's
 * with a = FL_SERVER_SHUFFLE_A: apart from every client's private data
 * stream (a = client). Client c's own model starts from model id
 * FL_CLIENT_MODEL_INIT_ID + c. */
#define FL_PUBLIC_SAMPLE_STREAM 3u
#define FL_FEDDF_SPLIT_STREAM 4u
#define FL_PUBLIC_SHUFFLE_A (1ull << 40)
#define FL_SERVER_SHUFFLE_A (1ull << 41)
#define FL_CLIENT_MODEL_INIT_ID 3000000u
/* FedDF's global model of architecture g > 0 starts from model id
 * FL_ARCHITECTURE_INIT_ID + g (`model`'s, g = 0, from id 0 as every
 * global model). */
#define FL_ARCHITECTURE_INIT_ID 4000000u

/* ---- the public sample ---------------------------------------------------- */

/* Number of public rows a round uses: per_round, or all when per_round is 0
 * or not below public_count. */
size_t fl_public_sample_size(size_t public_count, int64_t per_round);
/* Fills rows[0..fl_public_sample_size) with the round's sample, ascending:
 * every row when the sample is the whole set, else a seeded draw without
 * replacement. Returns the count, or 0 when out of memory. */
size_t fl_public_sample(uint64_t seed, int round, size_t public_count, int64_t per_round,
                        uint32_t *rows);

/* ---- predictions ------------------------------------------------------------ */

/* Logits of `model` on rows[0..n) of `data` into out (n, classes), in
 * batches of model->max_batch. */
fedkd_status fl_logits_on_rows(fedkd_model *model, const fedkd_dataset *data,
                               const uint32_t *rows, size_t n, float *out);

/* FD: means (classes, classes), row k the mean logits of `model` over the
 * samples of `data` labelled k (zeros when there is none), and counts
 * (classes) of those samples. */
fedkd_status fl_class_mean_logits(fedkd_model *model, const fedkd_dataset *data, float *means,
                                  uint32_t *counts);

/* DS-FL's entropy-reduction aggregation: out = softmax(mean_probs / T),
 * row-wise, T in (0, 1]. It lowers the entropy of averaged predictions that
 * disagree (the case it is for); a near one-hot row is softened slightly,
 * to at most exp(-1 / T) mass off its top class per other class. */
void fl_sharpen(const float *mean_probs, size_t n, int classes, float temperature, float *out);
/* Mean Shannon entropy (nats) of n probability rows. */
double fl_mean_entropy(const float *probs, size_t n, int classes);

/* DML across clients: the mean prediction of the peers other than the
 * client itself, from the mean over k peers that included it:
 * (k * mean - own) / (k - 1), clamped at 0 and renormalised per row
 * (rounding can leave a tiny negative). k >= 2. */
void fl_mean_of_others(const float *mean, const float *own, int k, size_t n, int classes,
                       float *out);

/* ---- fitting soft targets on public rows -------------------------------- */

typedef enum fl_target_kind {
    FL_TARGET_LOGITS_MAE, /* targets are logits; loss = mean |z - t| (FedMD's digest) */
    FL_TARGET_PROBS_KL    /* targets are probabilities at T; T^2 KL(t || softmax_T(z)) */
} fl_target_kind;

typedef struct fl_distil_settings {
    fl_target_kind kind;
    float temperature;     /* FL_TARGET_PROBS_KL */
    int epochs;
    int batch_size;
    uint64_t seed;
    uint64_t stream_a;     /* FL_PUBLIC_SHUFFLE_A + client, or FL_SERVER_SHUFFLE_A */
    uint64_t stream_b;     /* (round - 1) * epochs: epoch e shuffles with stream_b + e */
} fl_distil_settings;

/* Trains `model` to fit targets[p] (classes floats each) on rows[p] of
 * `data`, for p in positions[0..n) (positions NULL: p = 0..n-1). The
 * optimizer's state is used as is. *mean_loss (may be NULL): the mean batch
 * loss of the last epoch. Fails with FEDKD_ERR_NUMERIC when the loss stops
 * being finite. */
fedkd_status fl_distil(fedkd_model *model, fedkd_optimizer *optimizer, const fedkd_dataset *data,
                       const uint32_t *rows, const float *targets, const uint32_t *positions,
                       size_t n, const fl_distil_settings *settings, double *mean_loss);
/* The same loss without training, averaged over the n samples. */
fedkd_status fl_distil_loss(fedkd_model *model, const fedkd_dataset *data, const uint32_t *rows,
                            const float *targets, const uint32_t *positions, size_t n,
                            const fl_distil_settings *settings, double *loss);

/* FedDF's server step: distils `model` on the round's proxy sample (rows,
 * n) from the ensemble's mean logits (n, classes) at `temperature` for up to
 * `settings->epochs` epochs. A seeded validation_fraction of the sample (at
 * least one row; the rest trains) decides: after every epoch the KL to the
 * ensemble on it is measured, the best weights so far are kept (the
 * averaged model counts as epoch 0), and training stops after `patience`
 * epochs without improvement. *epochs_run (may be NULL) says how many ran.
 * With n < 2 nothing changes. */
fedkd_status fl_feddf_distil(fedkd_model *model, fedkd_optimizer *optimizer,
                             const fedkd_dataset *data, const uint32_t *rows, size_t n,
                             const float *ensemble_logits, const fl_distil_settings *settings,
                             int round, double validation_fraction, int patience,
                             int *epochs_run);

/* ---- FD's teacher: the global per-class logits of each sample's class ---- */

typedef struct fl_class_teacher {
    const float *class_logits;  /* (classes, classes) */
    const float *class_counts;  /* (classes): 0 where no participant had the class */
    const int32_t *labels;      /* the training data's labels, indexed by row */
    int classes;
} fl_class_teacher;

/* A fedkd_teacher whose soft targets for row i are softmax_T of
 * class_logits[labels[i]], with KD weight 0 for classes of count 0. */
fedkd_teacher fl_class_teacher_hook(fl_class_teacher *context);

/* ---- fixed-point payloads ------------------------------------------------- */

/* out[i] = (float) sum[i] / 2^40. */
void fl_fixed_decode(const int64_t *sum, size_t n, float *out);

#endif
