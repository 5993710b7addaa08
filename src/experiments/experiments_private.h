/* Private to src/experiments: the pieces the pretrain, kd-study and
 * kd-start modes share. */
#ifndef FEDKD_EXPERIMENTS_PRIVATE_H
#define FEDKD_EXPERIMENTS_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/core/comm.h"
#include "fedkd/data/clientset.h"
#include "fedkd/data/partition.h"
#include "fedkd/data/source.h"
#include "fedkd/experiments/experiments.h"
#include "fedkd/io/runlog.h"
#include "fedkd/kd/kd.h"
#include "fedkd/nn/model_json.h"
#include "fedkd/train/train.h"

/* ---- the clients a rank hosts -------------------------------------------- */

typedef struct kd_clients {
    int rank, size;
    int num_clients;
    fedkd_client_set set;        /* owns the partition and the datasets below */
    const fedkd_partition *partition; /* every rank: the whole partition (labels only) */
    fedkd_model_spec spec;       /* the config's model for this data */
    fedkd_shape shape;
    int num_classes;
    int num_hosted;
    int *hosted;                 /* (num_hosted) client ids, ascending */
    fedkd_dataset **data;        /* (num_hosted) each client's local data */
    const fedkd_dataset *test;   /* ranks hosting clients: the global test set */
    /* ranks hosting clients, when the run uses one: set.public_set */
} kd_clients;

/* Describes the data, partitions it (identically on every rank) and loads
 * the rows of the clients this rank hosts, plus the test set when it hosts
 * any. Does not talk to other ranks. */
fedkd_status kd_clients_load(const fedkd_config *config, int rank, int size, unsigned flags,
                             kd_clients *clients);
void kd_clients_free(kd_clients *clients);
/* Index of `client` among the hosted ones, or -1. */
int kd_clients_find(const kd_clients *clients, int client);

/* "iid", "dirichlet(0.5)", "shards(2)", ... */
void kd_scheme_label(const fedkd_config *config, char *out, size_t out_size);

/* ---- pre-trained models -------------------------------------------------- */

enum kd_origin { KD_TRAINED = 1, KD_REUSED = 2, KD_IMPORTED = 3, KD_RETRAINED = 4 };

typedef struct kd_pretrained {
    fedkd_model_spec spec;
    float *params;               /* (num_params), malloc'ed */
    size_t num_params;
    double test_accuracy;
    double seconds;              /* training time (0 when loaded) */
    int origin;                  /* enum kd_origin */
} kd_pretrained;

/* Pre-trains, reuses or imports the model of every hosted client (see
 * kd.h); models[h] belongs to clients->hosted[h]. Local to the rank. */
fedkd_status kd_pretrain_hosted(const fedkd_config *config, const kd_clients *clients,
                                kd_pretrained *models);
void kd_pretrained_free(kd_pretrained *models, int count);
/* The directory of the model files. */
void kd_pretrain_dir(const fedkd_config *config, char *out, size_t out_size);

/* Rank 0 learns every client's pre-training outcome, writes pretrain.json
 * and prints one line per client. Collective; waits without spinning. */
fedkd_status kd_pretrain_report(const fedkd_config *config, MPI_Comm comm,
                                const kd_clients *clients, const kd_pretrained *models,
                                fedkd_status local);

/* ---- a dataset that can be made unreadable ------------------------------- */

/* A copy of a dataset in its own pages, so that reading it can be forbidden
 * (mprotect) while distillation runs: a read then faults at once instead of
 * silently leaking test data into a choice. */
typedef struct kd_sealed {
    fedkd_dataset view;          /* features and labels point into region */
    void *region;
    size_t region_bytes;
} kd_sealed;

fedkd_status kd_sealed_create(kd_sealed *sealed, const fedkd_dataset *source);
fedkd_status kd_sealed_lock(kd_sealed *sealed);   /* no access */
fedkd_status kd_sealed_unlock(kd_sealed *sealed); /* read-only */
void kd_sealed_destroy(kd_sealed *sealed);

/* ---- the study's results -------------------------------------------------- */

/* One distillation run of a kd-study: who, how, and what came of it. */
typedef struct kd_study_row {
    int method;                  /* index into the study's method list */
    int student;
    int num_teachers;
    const int *teachers;         /* (num_teachers) client ids */
    double temperature, weight;  /* weight NaN for DML */
    double before, after;        /* the student's test accuracy; after NaN: the
                                    run's training diverged */
    double validation;           /* tuned: validation accuracy of the choice; NaN otherwise */
    int peers;
    long steps;
    double seconds;
    int diverged;                /* tuned: grid points skipped because training diverged */
    double teacher_share;        /* data-partitioning: share of the transfer samples routed to
                                    a teacher; NaN for the other methods */
} kd_study_row;

typedef struct kd_study_totals {
    int num_clients;
    uint64_t teacher_bytes;      /* teacher weights a student needs, per (teacher, student) */
    uint64_t wire_bytes;         /* what the broadcasts of teacher models moved */
    double wall_seconds;
} kd_study_totals;

/* Rank 0: kd_results.csv/.json and kd_summary.csv/.json in run.dir, and
 * the summary table on stdout. */
fedkd_status kd_study_write(const fedkd_config *config, const fedkd_kd_method *const *methods,
                            int num_methods, const kd_study_row *rows, int num_rows,
                            const kd_study_totals *totals);

#endif
