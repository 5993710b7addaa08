/* Pieces shared by the partition schemes; private to src/data/partition.
 *
 * Every scheme is an `assign` function that writes owner[row] = client or -1
 * (dropped); fedkd_partition_create turns that into the index lists. */
#ifndef FEDKD_PARTITION_INTERNAL_H
#define FEDKD_PARTITION_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "fedkd/data/partition.h"
#include "fedkd/core/rng.h"
#include "fedkd/core/status.h"

/* The `b` key of every FEDKD_RNG_PARTITION stream: one id per random step.
 * The values are part of the partitions' definition (a seed must give the
 * same partition in every version): never renumber, only append. */
enum fedkd_partition_step {
    FEDKD_PARTITION_STEP_IID_ROWS = 1,              /* a = 0 */
    FEDKD_PARTITION_STEP_DIRICHLET_ROWS = 2,        /* a = class */
    FEDKD_PARTITION_STEP_DIRICHLET_PROPORTIONS = 3, /* a = attempt << 32 | class */
    FEDKD_PARTITION_STEP_SHARDS_CLASSES = 4,        /* a = 0 */
    FEDKD_PARTITION_STEP_SHARDS_ROWS = 5,           /* a = class */
    FEDKD_PARTITION_STEP_QUANTITY_ROWS = 6,         /* a = 0 */
    FEDKD_PARTITION_STEP_QUANTITY_SIZES = 7         /* a = 0 */
};

/* The rows of the partitioner table (one file per scheme). */
extern const fedkd_partitioner fedkd_partitioner_iid;
extern const fedkd_partitioner fedkd_partitioner_dirichlet;
extern const fedkd_partitioner fedkd_partitioner_shards;
extern const fedkd_partitioner fedkd_partitioner_quantity;
extern const fedkd_partitioner fedkd_partitioner_feature_noise;

/* The smallest size any client may end with: partition.min_size, and never
 * less than one sample (an empty client cannot train). */
static inline int fedkd_partition_required_size(const fedkd_partition_settings *settings)
{
    return settings->min_size > 1 ? settings->min_size : 1;
}

/* FEDKD_ERR_FORMAT naming the first row whose label is outside [0, num_classes). */
fedkd_status fedkd_partition_check_labels(const int32_t *labels, size_t count, int num_classes);

/* FEDKD_ERR_CONFIG unless alpha is a finite number > 0. */
fedkd_status fedkd_partition_check_alpha(const fedkd_partition_settings *settings);

/* The training rows grouped by label: rows of class k are
 * rows[class_offsets[k] .. class_offsets[k + 1]), ascending until shuffled. */
typedef struct fedkd_partition_class_rows {
    int num_classes;
    size_t *class_offsets; /* (num_classes + 1) */
    uint32_t *rows;        /* (count) */
} fedkd_partition_class_rows;

fedkd_status fedkd_partition_class_rows_create(fedkd_partition_class_rows *out,
                                               const int32_t *labels, size_t count,
                                               int num_classes);
void fedkd_partition_class_rows_destroy(fedkd_partition_class_rows *class_rows);

static inline size_t fedkd_partition_class_size(const fedkd_partition_class_rows *class_rows,
                                                int class_id)
{
    return class_rows->class_offsets[class_id + 1] - class_rows->class_offsets[class_id];
}

/* Shuffles each class's rows with its own stream (seed, PARTITION, class,
 * step), so a class's order does not depend on the other classes. */
void fedkd_partition_class_rows_shuffle(fedkd_partition_class_rows *class_rows, uint64_t seed,
                                        enum fedkd_partition_step step);

/* 0 .. count-1 in the order of the stream (seed, PARTITION, 0, step). */
fedkd_status fedkd_partition_shuffled_rows(uint32_t **out, size_t count, uint64_t seed,
                                           enum fedkd_partition_step step);

/* Cuts `n` items into `parts` consecutive runs by proportions that sum to
 * about one: cuts[0] = 0, cuts[i] = floor(n * (p[0] + ... + p[i-1])),
 * cuts[parts] = n. Flooring the cumulative sum (not each share) makes the
 * runs add up to exactly n. cuts has parts + 1 entries. */
void fedkd_partition_cumulative_cuts(size_t n, const double *proportions, int parts,
                                     size_t *cuts);

#endif
