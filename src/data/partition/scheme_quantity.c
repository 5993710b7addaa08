/* quantity(alpha): quantity skew with IID labels. Every client first gets
 * the minimum size; the remaining rows are shared by proportions drawn from
 * Dir(alpha) (cumulative flooring, so the sizes add up exactly), and one
 * shuffle of all rows is cut into runs of those sizes. */
#include "data/partition/partition_internal.h"

#include <stdlib.h>

static fedkd_status quantity_assign(const fedkd_partition_settings *settings,
                                    const int32_t *labels, size_t count, int num_classes,
                                    int32_t *owner)
{
    uint32_t *rows = NULL;
    double *proportions = NULL;
    size_t *cuts = NULL;
    int clients = settings->num_clients;
    size_t required = (size_t)fedkd_partition_required_size(settings);

    fedkd_status status = fedkd_partition_check_alpha(settings);
    if (status != FEDKD_OK) goto fail;
    if ((size_t)clients * required > count) {
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `clients.count`: clients.count=%d needs at least %d x "
                            "%zu samples but the training set has %zu",
                            clients, clients, required, count);
        goto fail;
    }
    proportions = malloc((size_t)clients * sizeof *proportions);
    cuts = malloc(((size_t)clients + 1) * sizeof *cuts);
    if (!proportions || !cuts) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory for %d clients", clients);
        goto fail;
    }
    fedkd_rng rng = fedkd_rng_stream(settings->seed, FEDKD_RNG_PARTITION, 0,
                                     FEDKD_PARTITION_STEP_QUANTITY_SIZES);
    fedkd_rng_dirichlet(&rng, settings->alpha, proportions, (size_t)clients);
    size_t remaining = count - (size_t)clients * required;
    fedkd_partition_cumulative_cuts(remaining, proportions, clients, cuts);

    status = fedkd_partition_shuffled_rows(&rows, count, settings->seed,
                                           FEDKD_PARTITION_STEP_QUANTITY_ROWS);
    if (status != FEDKD_OK) goto fail;
    size_t position = 0;
    for (int c = 0; c < clients; c++) {
        size_t size = required + (cuts[c + 1] - cuts[c]);
        for (size_t i = position; i < position + size; i++) owner[rows[i]] = (int32_t)c;
        position += size;
    }

fail:
    free(rows);
    free(proportions);
    free(cuts);
    return status;
}

const fedkd_partitioner fedkd_partitioner_quantity = {
    .name = "quantity",
    .assign = quantity_assign,
};
