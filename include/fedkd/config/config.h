/* The run configuration: one JSON document validated against a table of
 * known keys. configs/default.json is compiled into the binary; a user file
 * (--config) is merged over it, then --set key.path=value overrides.
 * Every key is checked: unknown keys (with the closest valid one suggested),
 * wrong types and values out of range are rejected with a one-line message. */
#ifndef FEDKD_CONFIG_H
#define FEDKD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "fedkd/core/status.h"

/* A learning rate across rounds: `kind` "constant", "step" (times `decay`
 * every `step_rounds` rounds) or "cosine" (from the base rate down towards
 * `min` over the run's rounds), after a linear warm-up over
 * `warmup_rounds`. The base rate is the key beside it (local.lr,
 * feddf.lr); include/fedkd/train/train.h computes it. */
typedef struct fedkd_lr_schedule_config {
    char kind[16];
    int warmup_rounds;
    int step_rounds;
    double decay;
    double min;
} fedkd_lr_schedule_config;

/* A seeded per-client quantity (network.speed, network.up, ...): "constant"
 * (value), "uniform" in [low, high], or "lognormal": value * exp(sigma * N(0, 1)),
 * so value is the median. */
typedef struct fedkd_distribution_config {
    char distribution[16];
    double value, low, high, sigma;
} fedkd_distribution_config;

typedef struct fedkd_config {
    uint64_t seed;
    char mode[32];             /* "federated", "centralized", "pretrain", "kd-study", "kd-start" */

    struct {
        char name[32];         /* "fashion-mnist", "synthetic", "hdf5", "cifar10", "cifar100" */
        char dir[512];         /* fashion-mnist directory */
        /* where the checked, inflated copies of gzipped data files are kept
         * ("": none; "~/" is $HOME) */
        char cache_dir[512];
        char train_file[512];  /* hdf5: training file */
        char test_file[512];   /* hdf5: test file */
        int64_t train_limit;   /* 0: all */
        int64_t test_limit;    /* 0: all */
        /* synthetic */
        int64_t synthetic_train;
        int64_t synthetic_test;
        int synthetic_features;
        int synthetic_classes;
        double synthetic_separation;
        /* augmentation of local training batches (include/fedkd/data/augment.h) */
        int augment;           /* key data.augment */
        int augment_padding;   /* random crop: pad by this many pixels; 0: no crop */
        int augment_flip;      /* 1: horizontal flip with probability 1/2 */
    } data;

    cJSON *model;              /* preset name string or layer list (owned by json) */

    struct {
        int count;
        double per_round;      /* <= 1: fraction of clients; > 1: a count */
        /* Heterogeneous clients (key `clients.models`): "" (every client
         * uses `model`), a string of comma-separated preset names, or an
         * array of specs (preset names or layer lists); client c uses entry
         * c mod n. Owned by json. */
        cJSON *models;
    } clients;

    struct {
        char scheme[32];       /* iid, dirichlet, shards, quantity, feature-noise */
        double alpha;
        int classes_per_client;
        double sigma;
        int min_size;
    } partition;

    char algorithm[32];
    int rounds;
    double target_accuracy;

    struct {
        int epochs;
        int steps;             /* > 0: minibatch steps per round instead of epochs */
        int batch_size;
        double lr;
        char optimizer[16];
        double momentum;
        int nesterov;
        double weight_decay;
        fedkd_lr_schedule_config schedule; /* keys local.lr_schedule, local.lr_* */
    } local;

    struct {
        double lr;             /* server learning rate on the averaged delta */
    } server;

    struct {
        double mu;
    } fedprox;

    int fedbn; /* key fedbn: normalisation parameters stay on each client (FedBN) */

    struct {
        char method[32];
        double temperature;
        double weight;
        /* kd-study (see include/fedkd/experiments/experiments.h) */
        char methods[256];          /* comma-separated method names */
        char pairs[32];             /* "all-ordered", "rest" or "ring" */
        char students[256];         /* "": every client; else comma-separated ids */
        int epochs;                 /* epochs of distillation per run */
        char temperature_grid[128]; /* tuned KD: comma-separated T values */
        char weight_grid[128];      /* tuned KD: comma-separated weights */
        double validation_fraction; /* tuned KD: share of the student's data held out */
        char ensemble[16];          /* teachers combined by mean of "probs" or "logits" */
        int peers;                  /* deep mutual learning: K */
        char confidence[16];        /* data-partitioning: "supervised" or "unsupervised" */
        char validation[16];        /* tuned KD validates on "local" or "public" data */
        char transfer[16];          /* KD runs on "local" or "public" data */
        int64_t validation_size;    /* public validation rows (0: validation_fraction of them) */
    } kd;

    struct {
        int64_t size;
        char source[512];
        int64_t per_round;     /* public samples used per round, seeded per round (0: all) */
    } public_set;              /* config key `public` */

    /* Soft-label federations (../shared/METHODS.md; src/fl/softlabel*.c). */
    struct {
        int digest_epochs;     /* epochs fitting the consensus on the public sample */
        char digest_loss[8];   /* "mae" on logits or "kl" at kd.temperature */
    } fedmd;

    struct {
        double temperature;    /* entropy-reduction aggregation, in (0, 1] */
        int epochs;            /* epochs on the open set's global labels */
    } dsfl;

    struct {
        int epochs;            /* epochs of the mutual KL term on the public sample */
    } dml;

    struct {
        int epochs;            /* most server distillation epochs per round */
        double lr;             /* server distillation learning rate */
        fedkd_lr_schedule_config schedule; /* keys feddf.lr_schedule, feddf.lr_* */
        int patience;          /* epochs without validation improvement before stopping */
        double validation_fraction; /* share of the round's proxy sample held out */
    } feddf;

    struct {
        int epochs;
        char dir[512];          /* model files; "": <run.dir>/pretrained */
    } pretrain;

    struct {
        char dir[512];
        int compute_slots; /* ranks of a node computing at once: 0 its CPUs, -1 all */
    } run;

    struct {
        int every;
        int keep;
    } checkpoint;

    struct {
        char model[512];       /* model file to start the global model from ("": seeded init) */
    } init;

    int eval_batch_size;       /* key `eval.batch_size` */

    /* The simulated clock (src/fl/netsim.c, README "Simulated network"):
     * one distribution per device quantity. */
    struct {
        int enabled;           /* 0: no simulated clock (simulated_seconds 0) */
        char trace[512];       /* "": the distributions; else a CSV of
                                * client,speed,up,down[,latency] */
        fedkd_distribution_config speed;   /* samples per second */
        fedkd_distribution_config up;      /* Mbit/s */
        fedkd_distribution_config down;    /* Mbit/s */
        fedkd_distribution_config latency; /* seconds, added to each transfer */
    } network;

    struct {
        double deadline_seconds; /* 0: no deadline */
        double dropout;          /* probability that a selected client fails to report */
    } round;

    struct {
        char compression[16];  /* "none", "float16", "int8", "topk" (uploads) */
        double topk_fraction;  /* topk: share of a weight upload's values sent, in (0, 1] */
    } comm;

    cJSON *json;               /* the merged document (owned) */
} fedkd_config;

/* The built-in default document (configs/default.json as compiled in). */
const char *fedkd_config_default_text(void);

/* Builds a config: default, then the file at `path` (may be NULL), then each
 * "key.path=value" override. A value is parsed as JSON when it is valid JSON
 * (numbers, true/false, arrays, quoted strings) and taken as a string
 * otherwise. On error the message names the file / key and what was wanted. */
fedkd_status fedkd_config_load(fedkd_config *config, const char *path,
                               const char *const *overrides, int num_overrides);
void fedkd_config_free(fedkd_config *config);

/* "key=<value as compact JSON>", an override that fedkd_config_load takes
 * as if from --set (malloc'ed; NULL when out of memory). */
char *fedkd_config_override_text(const char *key, const cJSON *value);

/* The merged document as compact JSON (caller frees with free()). */
char *fedkd_config_to_string(const fedkd_config *config);

/* One line per known key: its path, type, built-in default and allowed
 * values, for --help. */
void fedkd_config_print_keys(FILE *out);

#endif
