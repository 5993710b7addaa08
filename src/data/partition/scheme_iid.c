/* iid: one seeded shuffle of all rows, cut into near-equal runs.
 * feature-noise uses the same split; its noise is set up in partition.c. */
#include "data/partition/partition_internal.h"

#include <stdlib.h>

static fedkd_status iid_assign(const fedkd_partition_settings *settings, const int32_t *labels,
                               size_t count, int num_classes, int32_t *owner)
{
    uint32_t *rows = NULL;
    fedkd_status status = fedkd_partition_shuffled_rows(&rows, count, settings->seed,
                                                        FEDKD_PARTITION_STEP_IID_ROWS);
    if (status != FEDKD_OK) return status;
    size_t clients = (size_t)settings->num_clients;
    /* Client c takes [c * count / n, (c + 1) * count / n): sizes differ by at most one. */
    for (size_t client = 0; client < clients; client++) {
        size_t begin = client * count / clients;
        size_t end = (client + 1) * count / clients;
        for (size_t i = begin; i < end; i++) owner[rows[i]] = (int32_t)client;
    }
    free(rows);
    return FEDKD_OK;
}

const fedkd_partitioner fedkd_partitioner_iid = {
    .name = "iid",
    .assign = iid_assign,
};

const fedkd_partitioner fedkd_partitioner_feature_noise = {
    .name = "feature-noise",
    .assign = iid_assign,
};
