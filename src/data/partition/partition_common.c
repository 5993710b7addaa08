#include "data/partition/partition_internal.h"

#include <math.h>
#include <stdlib.h>

fedkd_status fedkd_partition_check_labels(const int32_t *labels, size_t count, int num_classes)
{
    for (size_t row = 0; row < count; row++) {
        if (labels[row] < 0 || labels[row] >= num_classes)
            return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                              "partition: training row %zu has label %d, expected 0..%d "
                              "(the dataset has %d classes)",
                              row, (int)labels[row], num_classes - 1, num_classes);
    }
    return FEDKD_OK;
}

fedkd_status fedkd_partition_check_alpha(const fedkd_partition_settings *settings)
{
    /* Written so that NaN fails too. */
    if (!(settings->alpha > 0.0) || !isfinite(settings->alpha))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `partition.alpha`: expected a number > 0, got %g "
                          "(scheme %.*s)",
                          settings->alpha, (int)sizeof settings->scheme, settings->scheme);
    return FEDKD_OK;
}

fedkd_status fedkd_partition_class_rows_create(fedkd_partition_class_rows *out,
                                               const int32_t *labels, size_t count,
                                               int num_classes)
{
    fedkd_partition_class_rows class_rows = {.num_classes = num_classes};
    fedkd_status status = fedkd_partition_check_labels(labels, count, num_classes);
    if (status != FEDKD_OK) goto fail;

    class_rows.class_offsets = calloc((size_t)num_classes + 1, sizeof *class_rows.class_offsets);
    class_rows.rows = malloc((count ? count : 1) * sizeof *class_rows.rows);
    if (!class_rows.class_offsets || !class_rows.rows) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory grouping %zu rows by class",
                            count);
        goto fail;
    }
    /* Counting sort: visiting rows in order keeps each class ascending. */
    for (size_t row = 0; row < count; row++) class_rows.class_offsets[labels[row] + 1]++;
    for (int k = 0; k < num_classes; k++)
        class_rows.class_offsets[k + 1] += class_rows.class_offsets[k];
    size_t *cursor = malloc((size_t)num_classes * sizeof *cursor);
    if (!cursor) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory grouping %zu rows by class",
                            count);
        goto fail;
    }
    for (int k = 0; k < num_classes; k++) cursor[k] = class_rows.class_offsets[k];
    for (size_t row = 0; row < count; row++) class_rows.rows[cursor[labels[row]]++] = (uint32_t)row;
    free(cursor);

    *out = class_rows;
    return FEDKD_OK;

fail:
    fedkd_partition_class_rows_destroy(&class_rows);
    return status;
}

void fedkd_partition_class_rows_destroy(fedkd_partition_class_rows *class_rows)
{
    if (!class_rows) return;
    free(class_rows->class_offsets);
    free(class_rows->rows);
    class_rows->class_offsets = NULL;
    class_rows->rows = NULL;
}

void fedkd_partition_class_rows_shuffle(fedkd_partition_class_rows *class_rows, uint64_t seed,
                                        enum fedkd_partition_step step)
{
    for (int k = 0; k < class_rows->num_classes; k++) {
        fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_PARTITION, (uint64_t)k, (uint64_t)step);
        fedkd_rng_shuffle_u32(&rng, class_rows->rows + class_rows->class_offsets[k],
                              fedkd_partition_class_size(class_rows, k));
    }
}

fedkd_status fedkd_partition_shuffled_rows(uint32_t **out, size_t count, uint64_t seed,
                                           enum fedkd_partition_step step)
{
    uint32_t *rows = malloc((count ? count : 1) * sizeof *rows);
    if (!rows)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory shuffling %zu rows", count);
    for (size_t row = 0; row < count; row++) rows[row] = (uint32_t)row;
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_PARTITION, 0, (uint64_t)step);
    fedkd_rng_shuffle_u32(&rng, rows, count);
    *out = rows;
    return FEDKD_OK;
}

void fedkd_partition_cumulative_cuts(size_t n, const double *proportions, int parts,
                                     size_t *cuts)
{
    double cumulative = 0.0;
    cuts[0] = 0;
    for (int i = 1; i < parts; i++) {
        cumulative += proportions[i - 1];
        double position = floor((double)n * cumulative);
        size_t cut = position <= 0.0 ? 0 : position >= (double)n ? n : (size_t)position;
        /* The sum only grows, but guard against a negative proportion anyway. */
        cuts[i] = cut < cuts[i - 1] ? cuts[i - 1] : cut;
    }
    /* The proportions may sum to 1 - epsilon: the last run takes the rest. */
    if (parts > 0) cuts[parts] = n;
}
