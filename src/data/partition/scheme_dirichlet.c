/* dirichlet(alpha): label skew. For each class, the shares of the clients
 * are a draw from Dir(alpha, ..., alpha); the class's shuffled rows are cut
 * by the cumulative shares. If a client ends below the minimum size, all
 * classes are drawn again from fresh streams (the next attempt). */
#include "data/partition/partition_internal.h"

#include <stdlib.h>

#define DIRICHLET_MAX_ATTEMPTS 1000

/* Cuts of one class's rows among the clients for one attempt. Each (attempt,
 * class) has its own stream, so a draw never depends on the other classes. */
static void dirichlet_class_cuts(const fedkd_partition_settings *settings, int attempt,
                                 int class_id, size_t class_size, double *proportions,
                                 size_t *cuts)
{
    int clients = settings->num_clients;
    if (class_size == 0) {
        /* Nothing to share out: skip the draw. */
        for (int c = 0; c <= clients; c++) cuts[c] = 0;
        return;
    }
    uint64_t key = ((uint64_t)attempt << 32) | (uint64_t)(uint32_t)class_id;
    fedkd_rng rng = fedkd_rng_stream(settings->seed, FEDKD_RNG_PARTITION, key,
                                     FEDKD_PARTITION_STEP_DIRICHLET_PROPORTIONS);
    fedkd_rng_dirichlet(&rng, settings->alpha, proportions, (size_t)clients);
    fedkd_partition_cumulative_cuts(class_size, proportions, clients, cuts);
}

static fedkd_status dirichlet_assign(const fedkd_partition_settings *settings,
                                     const int32_t *labels, size_t count, int num_classes,
                                     int32_t *owner)
{
    fedkd_partition_class_rows class_rows = {0};
    double *proportions = NULL;
    size_t *cuts = NULL;
    size_t *sizes = NULL;
    int clients = settings->num_clients;
    int required = fedkd_partition_required_size(settings);

    fedkd_status status = fedkd_partition_check_alpha(settings);
    if (status != FEDKD_OK) goto fail;
    status = fedkd_partition_class_rows_create(&class_rows, labels, count, num_classes);
    if (status != FEDKD_OK) goto fail;
    fedkd_partition_class_rows_shuffle(&class_rows, settings->seed,
                                       FEDKD_PARTITION_STEP_DIRICHLET_ROWS);

    proportions = malloc((size_t)clients * sizeof *proportions);
    cuts = malloc(((size_t)clients + 1) * sizeof *cuts);
    sizes = malloc((size_t)clients * sizeof *sizes);
    if (!proportions || !cuts || !sizes) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory for %d clients", clients);
        goto fail;
    }

    /* Sizes only, per attempt: O(classes * clients), no row is touched until
     * an attempt is accepted. */
    int accepted = -1;
    int short_client = 0;
    size_t short_size = 0;
    for (int attempt = 0; attempt < DIRICHLET_MAX_ATTEMPTS && accepted < 0; attempt++) {
        for (int c = 0; c < clients; c++) sizes[c] = 0;
        for (int k = 0; k < num_classes; k++) {
            dirichlet_class_cuts(settings, attempt, k, fedkd_partition_class_size(&class_rows, k),
                                 proportions, cuts);
            for (int c = 0; c < clients; c++) sizes[c] += cuts[c + 1] - cuts[c];
        }
        accepted = attempt;
        for (int c = 0; c < clients; c++) {
            if (sizes[c] < (size_t)required) {
                accepted = -1;
                short_client = c;
                short_size = sizes[c];
                break;
            }
        }
    }
    if (accepted < 0) {
        if (settings->min_size >= 1)
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "partition: dirichlet(alpha=%g) left client %d with %zu samples, "
                                "fewer than partition.min_size=%d after %d draws; raise "
                                "partition.alpha or lower partition.min_size or clients.count",
                                settings->alpha, short_client, short_size, settings->min_size,
                                DIRICHLET_MAX_ATTEMPTS);
        else
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "partition: dirichlet(alpha=%g) left client %d with %zu samples "
                                "after %d draws (every client needs at least 1, "
                                "partition.min_size=%d); raise partition.alpha or lower "
                                "clients.count",
                                settings->alpha, short_client, short_size,
                                DIRICHLET_MAX_ATTEMPTS, settings->min_size);
        goto fail;
    }

    /* Redraw the accepted attempt (its streams give the same shares) and hand out rows. */
    for (size_t row = 0; row < count; row++) owner[row] = -1;
    for (int k = 0; k < num_classes; k++) {
        dirichlet_class_cuts(settings, accepted, k, fedkd_partition_class_size(&class_rows, k),
                             proportions, cuts);
        const uint32_t *rows = class_rows.rows + class_rows.class_offsets[k];
        for (int c = 0; c < clients; c++)
            for (size_t i = cuts[c]; i < cuts[c + 1]; i++) owner[rows[i]] = (int32_t)c;
    }
    status = FEDKD_OK;

fail:
    fedkd_partition_class_rows_destroy(&class_rows);
    free(proportions);
    free(cuts);
    free(sizes);
    return status;
}

const fedkd_partitioner fedkd_partitioner_dirichlet = {
    .name = "dirichlet",
    .assign = dirichlet_assign,
};
