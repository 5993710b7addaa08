/* Knowledge distillation between pre-trained models (../shared/METHODS.md):
 * the KD methods as one table found by name; pre-training of the clients
 * models; the modes that run them are in include/fedkd/experiments/.
 *
 * A distillation run ("job") trains one student on its transfer set (its own
 * local data, or the public set) from frozen teachers whose logits on that
 * set were computed once; tuned methods score (T, a) on a validation set.
 * A job never sees the test set: fedkd_kd_job has no place for it, and the
 * study keeps its test set sealed (unreadable) while jobs run. */
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
/* The public set's split into its validation and transfer parts:
 * (seed, PUBLIC_SPLIT, FEDKD_PUBLIC_STREAM, this); far from any student's
 * b-key above. */
#define FEDKD_KD_PUBLIC_SPLIT_STREAM 3000000u

#define FEDKD_KD_MAX_GRID 32
#define FEDKD_KD_MAX_METHODS 16

/* ---- settings ------------------------------------------------------------ */

/* Data-partitioning KD's confidence of a model on a sample (kd.confidence). */
typedef enum fedkd_kd_confidence {
    FEDKD_KD_CONFIDENCE_SUPERVISED,   /* "supervised": softmax probability of the true label */
    FEDKD_KD_CONFIDENCE_UNSUPERVISED  /* "unsupervised": the top softmax probability */
} fedkd_kd_confidence;

/* Where tuned KD validates and where KD runs (kd.validation, kd.transfer). */
typedef enum fedkd_kd_place {
    FEDKD_KD_LOCAL,   /* "local": the student's own data */
    FEDKD_KD_PUBLIC   /* "public": the public set held out of the training set */
} fedkd_kd_place;

typedef struct fedkd_kd_settings {
    int epochs;
    int batch_size;
    uint64_t seed;
    fedkd_optimizer_settings optimizer; /* fresh state for every run */
    float temperature;                  /* untuned methods' T and a; tuning sets them per grid point */
    float weight;
    int num_temperatures;               /* tuned: the grid */
    float temperature_grid[FEDKD_KD_MAX_GRID];
    int num_weights;
    float weight_grid[FEDKD_KD_MAX_GRID];
    double validation_fraction;         /* tuned: share of the transfer set held out */
    int ensemble_logits;                /* 1: softmax_T of the mean logits; 0: mean of softmax_T */
    int peers;                          /* DML: K, the student and K - 1 teachers */
    fedkd_kd_confidence confidence;     /* data-partitioning: the routing rule */
    int logit_batch;                    /* batch of frozen models' logits (the frozen student's) */
    fedkd_kd_place validation;          /* tuned: where (T, a) is chosen */
    fedkd_kd_place transfer;            /* where KD runs */
    int64_t validation_size;            /* public validation rows; 0: validation_fraction of them */
} fedkd_kd_settings;

/* T = 1, a = 0.5, the default grid, 10% validation, mean of probabilities,
 * K = 2, one epoch of batches of 64 with plain SGD at lr 0.05, supervised
 * confidence, logits in batches of 256, validation and transfer local. */
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
    const fedkd_dataset *transfer; /* the data KD runs on: the student's own or the public set */
    /* Tuned methods: the set (T, a) is chosen on, disjoint from `transfer`;
     * NULL: a validation_fraction split of `transfer` (grid points then
     * train on the rest). */
    const fedkd_dataset *validation;
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
    double teacher_share;          /* data-partitioning: share of the transfer samples routed
                                      to a teacher (the final run's); NaN otherwise */
} fedkd_kd_outcome;

/* Which clients teach a student in a kd-study. */
typedef enum fedkd_kd_teacher_rule {
    FEDKD_KD_TEACHERS_PAIRING,    /* the teacher(s) kd.pairs gives */
    FEDKD_KD_TEACHERS_ALL_OTHERS, /* every client but the student (one run per student) */
    FEDKD_KD_TEACHERS_PEERS       /* kd.peers - 1 of them: the pairing's, then the next clients */
} fedkd_kd_teacher_rule;

/* Which labels of the transfer set a method reads. */
typedef enum fedkd_kd_label_use {
    FEDKD_KD_LABELS_FOR_CE,         /* only for the CE term, weight 1 - a: none at a = 1 */
    FEDKD_KD_LABELS_ALWAYS,         /* DML's CE, class-coverage's classes */
    FEDKD_KD_LABELS_FOR_CONFIDENCE  /* the CE term, and the supervised confidence rule */
} fedkd_kd_label_use;

typedef struct fedkd_kd_method {
    const char *name;
    const char *summary;
    fedkd_kd_teacher_rule teachers;
    fedkd_status (*distil)(const fedkd_kd_settings *settings, const fedkd_kd_job *job,
                           fedkd_kd_outcome *outcome);
    fedkd_kd_label_use labels;
    /* A tuned method ("tuned-<method>"): the method whose (T, a) it picks on
     * the (kd.temperature_grid x kd.weight_grid) grid; NULL otherwise. */
    const struct fedkd_kd_method *tunes;
    /* An old name kept working ("partition-aware"): the method it names.
     * Its rows carry its own name, so outputs keep the name the user wrote. */
    const struct fedkd_kd_method *same_as;
} fedkd_kd_method;

/* NULL-terminated: vanilla, ensemble, dml, data-partitioning,
 * class-coverage; tuned (= tuned-vanilla), tuned-ensemble,
 * tuned-data-partitioning, tuned-class-coverage; and the old names
 * partition-aware, tuned-vanilla, tuned-partition-aware. */
extern const fedkd_kd_method *const fedkd_kd_methods[];
/* Fails with "config key `kd.methods`: unknown method `x`; expected ...". */
fedkd_status fedkd_kd_method_find(const char *name, const fedkd_kd_method **out);
/* The method a row stands for (same_as resolved). */
const fedkd_kd_method *fedkd_kd_method_canonical(const fedkd_kd_method *method);
/* 1 when `method`, as `settings` configure it, reads the transfer set's
 * labels (a tuned method: at any weight of its grid). */
int fedkd_kd_method_needs_labels(const fedkd_kd_method *method, const fedkd_kd_settings *settings);
/* Comma-separated names (spaces allowed, no repeats, an old name and its
 * new one count as one) into out[0..*count). */
fedkd_status fedkd_kd_methods_parse(const char *list, const fedkd_kd_method **out, int max,
                                    int *count);

/* The logits of a model (spec, params) on every sample of `data`, in batches
 * of max_batch. *logits is fedkd_alloc'ed (count, classes): fedkd_free it. */
fedkd_status fedkd_kd_compute_logits(const fedkd_model_spec *spec, const float *params,
                                     const fedkd_dataset *data, int max_batch, float **logits);

/* Tuned KD of any method with a (T, a): every point of the grid distils
 * the job's starting student with `base` and is scored on the validation
 * set (job->validation, or a validation_fraction split of the transfer set
 * whose other part the points train on); the best point (ties: smaller T,
 * then smaller a; diverged points skipped and counted) is then distilled
 * on the whole transfer set. The job holds no test set. */
fedkd_status fedkd_kd_distil_tuned(const fedkd_kd_method *base, const fedkd_kd_settings *settings,
                                   const fedkd_kd_job *job, fedkd_kd_outcome *outcome);

/* Data-partitioning KD's routing (../shared/METHODS.md): sample i goes to
 * the most confident of {frozen student, teacher 0..n-1}, confidence taken
 * on the plain softmax (T = 1) by `rule` (labels: (count), read only by the
 * supervised rule); a tie keeps the earlier candidate, so the frozen
 * student wins ties. route[i] is 0 for the frozen student, 1 + t for
 * teacher t. Returns the number of samples routed to a teacher. */
size_t fedkd_kd_route(const float *frozen_logits, const fedkd_kd_teacher *teachers,
                      int num_teachers, const int32_t *labels, size_t count, int classes,
                      fedkd_kd_confidence rule, int *route);

/* ---- where tuning and KD look ------------------------------------------- */

/* 1 when kd.validation or kd.transfer is "public": the study then holds the
 * public rows out of the partition (and so does pretrain, whose models the
 * study reuses). */
int fedkd_kd_uses_public(const fedkd_config *config);

/* A seeded split of n rows into a validation part and the rest: *order
 * (malloc'ed, n) holds the validation rows ascending, then the others
 * ascending; *n_validation = round(fraction * n), at least 1. The local
 * split of student s uses (seed, PUBLIC_SPLIT, s, FEDKD_KD_VALIDATION_STREAM);
 * fails naming `key` when no row would be left on either side. */
fedkd_status fedkd_kd_split_rows(uint64_t seed, uint64_t stream_a, uint64_t stream_b, size_t n,
                                 size_t n_validation, const char *key, uint32_t **order);

/* The public set's validation part (kd.validation "public"): validation_size
 * rows (0: round(validation_fraction x public rows), at least 1) drawn by
 * (seed, PUBLIC_SPLIT, FEDKD_PUBLIC_STREAM, FEDKD_KD_PUBLIC_SPLIT_STREAM);
 * the rest is the public transfer set when kd.transfer is "public" too.
 * Checks sizes only (every rank knows the public count): fails naming the
 * key when the validation part or a needed transfer part is empty. */
fedkd_status fedkd_kd_public_sizes(const fedkd_kd_settings *settings, size_t public_count,
                                   size_t *n_validation, size_t *n_transfer);

/* Fails naming `key` when a sample of `data` has no label in [0, classes)
 * (what an unlabelled sample would carry). `what` names the set. */
fedkd_status fedkd_kd_check_labelled(const fedkd_dataset *data, int classes, const char *key,
                                     const char *what);
/* Fails naming `key` when a sample of `a` equals (bit for bit) a sample of
 * `b`: a validation set must not hold a test or transfer sample. */
fedkd_status fedkd_kd_check_disjoint(const fedkd_dataset *a, const fedkd_dataset *b,
                                     const char *key, const char *a_name, const char *b_name);

/* Class-coverage KD (formerly partition-aware): class k gets KD weight
 * `weight` when the teachers saw more samples of k than the student (with
 * several teachers, their mean count), else 0. class_weight is (classes). */
void fedkd_kd_partition_weights(const uint32_t *student_histogram, const fedkd_kd_teacher *teachers,
                                int num_teachers, int classes, float weight, float *class_weight);

#endif
