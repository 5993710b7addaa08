/* shards: every client holds exactly k = partition.classes_per_client
 * classes. A seeded permutation of the classes that have samples, repeated
 * cyclically, is the slot sequence; client c takes slots c*k .. c*k+k-1, which
 * are k distinct classes because k <= the number of classes. Each class's
 * shuffled rows are split evenly among the clients that hold it; classes
 * nobody holds are dropped. */
#include "data/partition/partition_internal.h"

#include <stdlib.h>

static fedkd_status shards_assign(const fedkd_partition_settings *settings,
                                  const int32_t *labels, size_t count, int num_classes,
                                  int32_t *owner)
{
    fedkd_partition_class_rows class_rows = {0};
    uint32_t *class_order = NULL; /* (present) the classes with samples, permuted */
    size_t *holders = NULL;       /* (num_classes) clients holding each class */
    size_t *next_holder = NULL;   /* (num_classes) */
    int k = settings->classes_per_client;
    uint64_t clients = (uint64_t)settings->num_clients;
    fedkd_status status = FEDKD_OK;

    if (k < 1 || k > num_classes) {
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `partition.classes_per_client`: expected 1..%d (the "
                            "dataset has %d classes), got %d",
                            num_classes, num_classes, k);
        goto fail;
    }
    status = fedkd_partition_class_rows_create(&class_rows, labels, count, num_classes);
    if (status != FEDKD_OK) goto fail;
    fedkd_partition_class_rows_shuffle(&class_rows, settings->seed,
                                       FEDKD_PARTITION_STEP_SHARDS_ROWS);

    class_order = malloc((size_t)num_classes * sizeof *class_order);
    holders = calloc((size_t)num_classes, sizeof *holders);
    next_holder = calloc((size_t)num_classes, sizeof *next_holder);
    if (!class_order || !holders || !next_holder) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory for %d classes",
                            num_classes);
        goto fail;
    }
    /* A class without samples would leave its holders one class short. */
    size_t present = 0;
    for (int c = 0; c < num_classes; c++)
        if (fedkd_partition_class_size(&class_rows, c) > 0) class_order[present++] = (uint32_t)c;
    if ((size_t)k > present) {
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `partition.classes_per_client`: expected 1..%zu (only "
                            "%zu of the dataset's %d classes have training samples), got %d",
                            present, present, num_classes, k);
        goto fail;
    }
    fedkd_rng rng = fedkd_rng_stream(settings->seed, FEDKD_RNG_PARTITION, 0,
                                     FEDKD_PARTITION_STEP_SHARDS_CLASSES);
    fedkd_rng_shuffle_u32(&rng, class_order, present);

    uint64_t slots = clients * (uint64_t)k;
    for (uint64_t slot = 0; slot < slots; slot++) holders[class_order[slot % present]]++;
    for (size_t i = 0; i < present; i++) {
        uint32_t c = class_order[i];
        size_t class_size = fedkd_partition_class_size(&class_rows, (int)c);
        if (holders[c] > class_size) {
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "partition: shards: class %u has %zu samples but %zu clients "
                                "hold it, so some would get none of it; lower "
                                "partition.classes_per_client or clients.count",
                                c, class_size, holders[c]);
            goto fail;
        }
    }

    for (size_t row = 0; row < count; row++) owner[row] = -1;
    /* Holders of a class take its rows in client order: the j-th of h
     * holders gets [j * n / h, (j + 1) * n / h). */
    for (uint64_t slot = 0; slot < slots; slot++) {
        uint32_t c = class_order[slot % present];
        int32_t client = (int32_t)(slot / (uint64_t)k);
        size_t n = fedkd_partition_class_size(&class_rows, (int)c);
        size_t j = next_holder[c]++;
        size_t begin = j * n / holders[c];
        size_t end = (j + 1) * n / holders[c];
        const uint32_t *rows = class_rows.rows + class_rows.class_offsets[c];
        for (size_t i = begin; i < end; i++) owner[rows[i]] = client;
    }

fail:
    fedkd_partition_class_rows_destroy(&class_rows);
    free(class_order);
    free(holders);
    free(next_holder);
    return status;
}

const fedkd_partitioner fedkd_partitioner_shards = {
    .name = "shards",
    .assign = shards_assign,
};
