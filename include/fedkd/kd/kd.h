/* Knowledge distillation between pre-trained models (../shared/METHODS.md):
 * the KD methods as one table found by name; pre-training of the clients
 * models; the modes that run them are in include/fedkd/experiments/.
 *
 * A distillation run ("job") trains one student on its own local data (the
 * transfer set) from frozen teachers whose logits on that data were computed
 * once. A job never sees the test set: fedkd_kd_job has no place for it, and
 * the study keeps its test set sealed (unreadable) while jobs run. */
#ifndef FEDKD_KD_H
#define FEDKD_KD_H

#include <stddef.h>
#include <stdint.h>

#include <mpi.h>

#include "fedkd/config/config.h"
#include "fedkd/data/data.h"
#include "fedkd/nn/nn.h"
#include "fedkd/train/train.h"

/* Stream keys. Pre-training shuffles with (seed, LOCAL_SHUFFLE, client,
 * FEDKD_PRETRAIN_STREAM + epoch) and initialises client c's model with model
 * id FEDKD_PRETRAIN_INIT_ID + c; distillation of student s shuffles with
 * (seed, LOCAL_SHUFFLE, s, FEDKD_KD_STREAM + epoch), the same for every method
 * and grid point so that methods are compared on the same minibatches. The
 * offsets keep these apart from federated rounds (stream_b = round * epochs). */
#define FEDKD_PRETRAIN_STREAM 1000000u
#define FEDKD_PRETRAIN_INIT_ID 1000000u
#define FEDKD_KD_STREAM 2000000u
/* Tuned KD's validation split of student s: (seed, PUBLIC_SPLIT, s, this). */
#define FEDKD_KD_VALIDATION_STREAM 1u

#define FEDKD_KD_MAX_GRID 32
#define FEDKD_KD_MAX_METHODS 16

/* ---- settings ------------------------------------------------------------ */

typedef struct fedkd_kd_settings {
    int epochs;
    int batch_size;
    uint64_t seed;
    fedkd_optimizer_settings optimizer; /* fresh state for every run */
    float temperature;                  /* vanilla, ensemble, partition-aware */
    float weight;
    int num_temperatures;               /* tuned: the grid */
    float temperature_grid[FEDKD_KD_MAX_GRID];
    int num_weights;
    float weight_grid[FEDKD_KD_MAX_GRID];
    double validation_fraction;         /* tuned: share of the transfer set held out */
    int ensemble_logits;                /* 1: softmax_T of the mean logits; 0: mean of softmax_T */
    int peers;                          /* DML: K, the student and K - 1 teachers */
} fedkd_kd_settings;

/* T = 1, a = 0.5, the default grid, 10% validation, mean of probabilities,
 * K = 2, one epoch of batches of 64 with plain SGD at lr 0.05. */
fedkd_kd_settings fedkd_kd_default_settings(void);

/* From kd.*, local.* and seed. Checks what the config table cannot: grid
 * values ("config key `kd.temperature_grid`: expected numbers > 0 separated
 * by commas, got \"1,0\""), weights in [0, 1], at most FEDKD_KD_MAX_GRID. */
fedkd_status fedkd_kd_settings_from_config(const fedkd_config *config, fedkd_kd_settings *out);

/* Parses "1,2.5,4" into at most `max` floats; `key` names the config key in
 * messages. Each value must lie in [low, high] (low exclusive if
 * low_exclusive). */
fedkd_status fedkd_kd_parse_numbers(const char *text, const char *key, float *values, int max,
                                    int *count, double low, int low_exclusive, double high);

/* ---- one distillation run ------------------------------------------------ */

/* A frozen teacher as one student sees it. */
typedef struct fedkd_kd_teacher {
    int client;
    const fedkd_model_spec *spec;  /* DML starts a peer from spec and params */
    const float *params;           /* (num_params of spec) */
    const float *logits;           /* (transfer->count, classes): its logits on the transfer set */
    const uint32_t *histogram;     /* (classes) its training samples per class */
} fedkd_kd_teacher;

typedef struct fedkd_kd_job {
    int student_client;            /* keys the streams */
    fedkd_model *student;          /* in: pre-trained weights; out: distilled */
    const fedkd_dataset *transfer; /* the student's own local data */
    const uint32_t *student_histogram; /* (classes) */
    int num_teachers;
    const fedkd_kd_teacher *teachers;  /* (num_teachers) */
} fedkd_kd_job;

typedef struct fedkd_kd_outcome {
    float temperature;             /* used, or chosen by tuning */
    float weight;                  /* used or chosen; NaN for DML (CE + mean KL) */
    double validation_accuracy;    /* tuned: of the chosen point; NaN otherwise */
    int num_peers;                 /* DML: K; otherwise 1 */
    long steps;                    /* optimizer steps of the student, tuning included */
    int diverged;                  /* tuned: grid points whose training diverged (skipped) */
} fedkd_kd_outcome;

/* Which clients teach a student in a kd-study. */
typedef enum fedkd_kd_teacher_rule {
    FEDKD_KD_TEACHERS_PAIRING,    /* the teacher(s) kd.pairs gives */
    FEDKD_KD_TEACHERS_ALL_OTHERS, /* every client but the student (one run per student) */
    FEDKD_KD_TEACHERS_PEERS       /* kd.peers - 1 of them: the pairing's, then the next clients */
} fedkd_kd_teacher_rule;

typedef struct fedkd_kd_method {
    const char *name;
    const char *summary;
    fedkd_kd_teacher_rule teachers;
    fedkd_status (*distil)(const fedkd_kd_settings *settings, const fedkd_kd_job *job,
                           fedkd_kd_outcome *outcome);
} fedkd_kd_method;

/* NULL-terminated: vanilla, tuned, ensemble, dml, partition-aware. */
extern const fedkd_kd_method *const fedkd_kd_methods[];
/* Fails with "config key `kd.methods`: unknown method `x`; expected ...". */
fedkd_status fedkd_kd_method_find(const char *name, const fedkd_kd_method **out);
/* Comma-separated names (spaces allowed, no repeats) into out[0..*count). */
fedkd_status fedkd_kd_methods_parse(const char *list, const fedkd_kd_method **out, int max,
                                    int *count);

/* The logits of a model (spec, params) on every sample of `data`, in batches
 * of max_batch. *logits is fedkd_alloc'ed (count, classes): fedkd_free it. */
fedkd_status fedkd_kd_compute_logits(const fedkd_model_spec *spec, const float *params,
                                     const fedkd_dataset *data, int max_batch, float **logits);

/* Partition-aware KD: class k gets KD weight `weight` when the teachers saw
 * more samples of k than the student (with several teachers, their mean
 * count), else 0. class_weight is (classes). */
void fedkd_kd_partition_weights(const uint32_t *student_histogram, const fedkd_kd_teacher *teachers,
                                int num_teachers, int classes, float weight, float *class_weight);

#endif
