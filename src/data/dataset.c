/* The in-memory dataset: allocation, row subsets and normalisation. */
#include "data/dataset_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/checked.h"
#include "fedkd/core/core.h"

fedkd_status fedkd_dataset_allocate(fedkd_dataset **out, size_t count, fedkd_shape shape,
                                    int num_classes, const char *origin)
{
    *out = NULL;
    if (shape.channels <= 0 || shape.height <= 0 || shape.width <= 0)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: sample shape %dx%dx%d must be positive",
                          origin, shape.channels, shape.height, shape.width);
    uint64_t extents[4] = {count, (uint64_t)shape.channels, (uint64_t)shape.height,
                           (uint64_t)shape.width};
    size_t sample_floats = 0;
    if (fedkd_size_of_extents(origin, "the samples", 3, extents + 1, sizeof(float), 0, 0,
                              &sample_floats, NULL) != FEDKD_OK ||
        fedkd_size_of_extents(origin, "the samples", 4, extents, sizeof(float), 1, 0, NULL,
                              NULL) != FEDKD_OK)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: %zu samples of %dx%dx%d floats do not fit in memory",
                          origin, count, shape.channels, shape.height, shape.width);

    fedkd_dataset *dataset = calloc(1, sizeof *dataset);
    if (!dataset) goto nomem;
    dataset->count = count;
    dataset->shape = shape;
    dataset->num_classes = num_classes;
    snprintf(dataset->origin, sizeof dataset->origin, "%s", origin);
    if (count > 0) {
        dataset->features = fedkd_alloc(count * sample_floats * sizeof(float));
        dataset->labels = fedkd_alloc(count * sizeof(int32_t));
        if (!dataset->features || !dataset->labels) goto nomem;
    }
    *out = dataset;
    return FEDKD_OK;

nomem:
    fedkd_dataset_destroy(&dataset);
    return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: cannot allocate %zu samples of %zu floats", origin,
                      count, sample_floats);
}

fedkd_status fedkd_dataset_view(fedkd_dataset **out, float *features, int32_t *labels,
                                size_t count, fedkd_shape shape, int num_classes,
                                const char *origin)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for a dataset", origin);
    fedkd_dataset *view = *out;
    view->count = count;
    view->shape = shape;
    view->num_classes = num_classes;
    view->features = count ? features : NULL;
    view->labels = count ? labels : NULL;
    view->borrowed = 1;
    snprintf(view->origin, sizeof view->origin, "%s", origin);
    return FEDKD_OK;
}

void fedkd_dataset_destroy(fedkd_dataset **dataset)
{
    if (!dataset || !*dataset) return;
    if (!(*dataset)->borrowed) {
        fedkd_free((*dataset)->features);
        fedkd_free((*dataset)->labels);
    }
    free(*dataset);
    *dataset = NULL;
}

fedkd_status fedkd_dataset_copy_rows(fedkd_dataset *dest, const fedkd_dataset *source,
                                     const uint32_t *indices, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (indices[i] >= source->count)
            return FEDKD_FAIL(FEDKD_ERR_INVALID,
                              "%s: subset index %u at position %zu is out of range "
                              "(the dataset has %zu samples)",
                              source->origin, (unsigned)indices[i], i, source->count);
    size_t sample_floats = fedkd_dataset_sample_floats(source);
    for (size_t i = 0; i < count; i++) {
        memcpy(dest->features + i * sample_floats,
               source->features + (size_t)indices[i] * sample_floats,
               sample_floats * sizeof(float));
        dest->labels[i] = source->labels[indices[i]];
    }
    return FEDKD_OK;
}

fedkd_status fedkd_dataset_subset(fedkd_dataset **out, const fedkd_dataset *source,
                                  const uint32_t *indices, size_t n)
{
    if (!out || !source || (n > 0 && !indices))
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "dataset subset: NULL argument");
    *out = NULL;
    fedkd_dataset *subset = NULL;
    fedkd_status status = fedkd_dataset_allocate(&subset, n, source->shape,
                                                 source->num_classes, source->origin);
    if (!status) status = fedkd_dataset_copy_rows(subset, source, indices, n);
    if (status) {
        fedkd_dataset_destroy(&subset);
        return status;
    }
    *out = subset;
    return FEDKD_OK;
}

void fedkd_dataset_normalize(fedkd_dataset *dataset, float mean, float std)
{
    /* A zero or negative std is a caller bug; leaving the data untouched is
     * safer than filling it with Inf. */
    if (!dataset || !(std > 0.0f)) return;
    size_t total = dataset->count * fedkd_dataset_sample_floats(dataset);
    float *features = dataset->features;
    for (size_t i = 0; i < total; i++) features[i] = (features[i] - mean) / std;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

fedkd_status fedkd_dataset_find_shared(const fedkd_dataset *a, const fedkd_dataset *b, int *found,
                                       size_t *index_a, size_t *index_b)
{
    *found = 0;
    size_t floats = fedkd_dataset_sample_floats(a), bytes = floats * sizeof(float);
    if (fedkd_dataset_sample_floats(b) != floats || a->count == 0 || b->count == 0)
        return FEDKD_OK;
    uint64_t *hashes = malloc(b->count * sizeof *hashes);
    if (!hashes) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu hashes", b->count);
    for (size_t j = 0; j < b->count; j++) hashes[j] = fedkd_checksum(b->features + j * floats, bytes);
    qsort(hashes, b->count, sizeof *hashes, compare_u64);
    for (size_t i = 0; i < a->count && !*found; i++) {
        const float *x = a->features + i * floats;
        uint64_t h = fedkd_checksum(x, bytes);
        if (!bsearch(&h, hashes, b->count, sizeof *hashes, compare_u64)) continue;
        for (size_t j = 0; j < b->count; j++)
            if (memcmp(b->features + j * floats, x, bytes) == 0) {
                *found = 1;
                *index_a = i;
                *index_b = j;
                break;
            }
    }
    free(hashes);
    return FEDKD_OK;
}
