/* Partitioning a labelled training set among clients.
 *
 * Schemes (see ../shared/METHODS.md): iid, dirichlet(alpha), shards (exactly
 * k classes per client), quantity(alpha), feature-noise(sigma). Every scheme
 * is seeded through FEDKD_RNG_PARTITION streams and needs only the labels,
 * so every rank computes the same partition and then loads only the rows of
 * the clients it hosts. Client sets are disjoint; together they cover the
 * data minus what the rules drop, and `dropped` says how many. */
#ifndef FEDKD_PARTITION_H
#define FEDKD_PARTITION_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "fedkd/core/status.h"

typedef struct fedkd_partition_settings {
    char scheme[32];
    int num_clients;
    double alpha;           /* dirichlet, quantity */
    int classes_per_client; /* shards */
    double sigma;           /* feature-noise */
    int min_size;           /* every client gets at least this many samples */
    uint64_t seed;
} fedkd_partition_settings;

fedkd_partition_settings fedkd_partition_default_settings(void);

typedef struct fedkd_partition {
    int num_clients;
    int num_classes;
    size_t total;          /* samples in the set that was partitioned */
    size_t dropped;        /* samples no client received */
    size_t *offsets;       /* (num_clients + 1): client c owns indices[offsets[c] .. offsets[c+1]) */
    uint32_t *indices;     /* (offsets[num_clients]) row numbers, ascending within a client */
    uint32_t *histograms;  /* (num_clients, num_classes) samples per class */
    double *noise_sigma;   /* (num_clients) feature-noise std of each client (0 elsewhere) */
    char scheme[32];
} fedkd_partition;

/* A scheme: one row of the partitioner table. */
typedef struct fedkd_partitioner {
    const char *name;
    fedkd_status (*assign)(const fedkd_partition_settings *settings, const int32_t *labels,
                           size_t count, int num_classes, int32_t *owner /* (count) client or -1 */);
} fedkd_partitioner;

extern const fedkd_partitioner *const fedkd_partitioners[];
const fedkd_partitioner *fedkd_partitioner_find(const char *name);

/* Validates the settings against the data (alpha > 0, k <= classes, enough
 * samples for num_clients * min_size, ...) and partitions. Messages name the
 * config key (`partition.alpha`, ...) and the value. */
fedkd_status fedkd_partition_create(fedkd_partition **out, const fedkd_partition_settings *settings,
                                    const int32_t *labels, size_t count, int num_classes);
void fedkd_partition_destroy(fedkd_partition **partition);

static inline size_t fedkd_partition_client_size(const fedkd_partition *p, int client)
{
    return p->offsets[client + 1] - p->offsets[client];
}

/* {"scheme":..., "clients":[{"client":0,"size":N,"classes":[...],"noise_sigma":s}], "dropped":D} */
cJSON *fedkd_partition_to_json(const fedkd_partition *partition);

/* Adds the client's Gaussian feature noise (std noise_sigma[client]) to
 * `count` samples of `sample_floats` floats, seeded by (seed, client) so the
 * result does not depend on which rank hosts the client. No-op if sigma 0. */
void fedkd_partition_apply_noise(const fedkd_partition *partition, int client, uint64_t seed,
                                 float *features, size_t count, size_t sample_floats);

#endif
