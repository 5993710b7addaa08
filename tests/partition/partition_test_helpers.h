/* Label sets and property checks shared by the partition tests. Include
 * after test_util.h. */
#ifndef FEDKD_PARTITION_TEST_HELPERS_H
#define FEDKD_PARTITION_TEST_HELPERS_H

#include <stdlib.h>
#include <string.h>

#include "fedkd/data/partition.h"
#include "fedkd/core/rng.h"

/* `count` labels, class k appearing about weight(k) / sum times, in a
 * shuffled order so rows of a class are not contiguous. unbalanced = 0 gives
 * equal classes; 1 gives class k weight (k + 1)^2. */
static inline int32_t *make_labels(size_t count, int num_classes, int unbalanced, uint64_t seed)
{
    int32_t *labels = malloc(count * sizeof *labels);
    if (!labels) return NULL;
    double weight_sum = 0.0;
    for (int k = 0; k < num_classes; k++)
        weight_sum += unbalanced ? (double)((k + 1) * (k + 1)) : 1.0;
    size_t row = 0;
    double cumulative = 0.0;
    for (int k = 0; k < num_classes; k++) {
        cumulative += unbalanced ? (double)((k + 1) * (k + 1)) : 1.0;
        size_t end = k == num_classes - 1 ? count : (size_t)((double)count * cumulative / weight_sum);
        for (; row < end; row++) labels[row] = k;
    }
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_TEST, 1, 2);
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)fedkd_rng_below(&rng, i);
        int32_t t = labels[i - 1];
        labels[i - 1] = labels[j];
        labels[j] = t;
    }
    return labels;
}

static inline fedkd_partition_settings make_settings(const char *scheme, int clients,
                                                     uint64_t seed)
{
    fedkd_partition_settings settings = fedkd_partition_default_settings();
    memset(settings.scheme, 0, sizeof settings.scheme);
    strncpy(settings.scheme, scheme, sizeof settings.scheme - 1);
    settings.num_clients = clients;
    settings.min_size = 0;
    settings.seed = seed;
    return settings;
}

/* Everything a partition must satisfy: fields, disjoint, ascending,
 * complete up to `dropped` (and dropped == 0 unless allow_dropped; when
 * dropped, whole classes are dropped), histograms that match the labels,
 * sizes >= max(min_size, 1). */
static inline void check_partition(const fedkd_partition *p, const fedkd_partition_settings *s,
                                   const int32_t *labels, size_t count, int num_classes,
                                   int allow_dropped, const char *what)
{
    CHECK(p != NULL, "%s: partition exists", what);
    if (!p) return;
    CHECK(p->num_clients == s->num_clients, "%s: num_clients %d", what, p->num_clients);
    CHECK(p->num_classes == num_classes, "%s: num_classes %d", what, p->num_classes);
    CHECK(p->total == count, "%s: total %zu", what, p->total);
    CHECK(strcmp(p->scheme, s->scheme) == 0, "%s: scheme %s", what, p->scheme);
    CHECK(p->offsets[0] == 0, "%s: offsets[0] = %zu", what, p->offsets[0]);
    CHECK(p->offsets[p->num_clients] + p->dropped == count,
          "%s: assigned %zu + dropped %zu != total %zu", what, p->offsets[p->num_clients],
          p->dropped, count);
    if (!allow_dropped) CHECK(p->dropped == 0, "%s: dropped %zu", what, p->dropped);

    unsigned char *seen = calloc(count, 1);
    uint32_t *histogram = calloc((size_t)num_classes, sizeof *histogram);
    size_t *class_total = calloc((size_t)num_classes, sizeof *class_total);
    size_t *class_assigned = calloc((size_t)num_classes, sizeof *class_assigned);
    if (!seen || !histogram || !class_total || !class_assigned) {
        CHECK(0, "%s: test allocation", what);
        goto done;
    }
    size_t required = s->min_size > 1 ? (size_t)s->min_size : 1;
    int duplicates = 0, out_of_range = 0, unordered = 0, histogram_mismatch = 0, small = 0;
    for (int c = 0; c < p->num_clients; c++) {
        CHECK(p->offsets[c + 1] >= p->offsets[c], "%s: offsets decrease at %d", what, c);
        if (p->offsets[c + 1] < p->offsets[c]) goto done;
        if (fedkd_partition_client_size(p, c) < required) small++;
        memset(histogram, 0, (size_t)num_classes * sizeof *histogram);
        for (size_t i = p->offsets[c]; i < p->offsets[c + 1]; i++) {
            uint32_t row = p->indices[i];
            if (row >= count) {
                out_of_range++;
                continue;
            }
            if (seen[row]) duplicates++;
            seen[row] = 1;
            if (i > p->offsets[c] && p->indices[i - 1] >= row) unordered++;
            histogram[labels[row]]++;
            class_assigned[labels[row]]++;
        }
        if (memcmp(histogram, p->histograms + (size_t)c * (size_t)num_classes,
                   (size_t)num_classes * sizeof *histogram) != 0)
            histogram_mismatch++;
    }
    CHECK(out_of_range == 0, "%s: %d indices out of range", what, out_of_range);
    CHECK(duplicates == 0, "%s: %d rows given twice", what, duplicates);
    CHECK(unordered == 0, "%s: %d indices not ascending", what, unordered);
    CHECK(histogram_mismatch == 0, "%s: %d clients' histograms do not match their labels", what,
          histogram_mismatch);
    CHECK(small == 0, "%s: %d clients below %zu samples", what, small, required);
    size_t unseen = 0;
    for (size_t row = 0; row < count; row++) {
        if (!seen[row]) unseen++;
        class_total[labels[row]]++;
    }
    CHECK(unseen == p->dropped, "%s: %zu rows unassigned but dropped = %zu", what, unseen,
          p->dropped);
    /* Only whole classes may go missing (shards with classes nobody holds). */
    int partial_classes = 0;
    for (int k = 0; k < num_classes; k++)
        if (class_assigned[k] != 0 && class_assigned[k] != class_total[k]) partial_classes++;
    CHECK(partial_classes == 0, "%s: %d classes partly dropped", what, partial_classes);

done:
    free(seen);
    free(histogram);
    free(class_total);
    free(class_assigned);
}

static inline int partitions_equal(const fedkd_partition *a, const fedkd_partition *b)
{
    if (a->num_clients != b->num_clients || a->num_classes != b->num_classes ||
        a->total != b->total || a->dropped != b->dropped)
        return 0;
    size_t clients = (size_t)a->num_clients;
    if (memcmp(a->offsets, b->offsets, (clients + 1) * sizeof *a->offsets) != 0) return 0;
    if (memcmp(a->indices, b->indices, a->offsets[clients] * sizeof *a->indices) != 0) return 0;
    if (memcmp(a->histograms, b->histograms,
               clients * (size_t)a->num_classes * sizeof *a->histograms) != 0)
        return 0;
    return memcmp(a->noise_sigma, b->noise_sigma, clients * sizeof *a->noise_sigma) == 0;
}

/* Share of the client's samples in class k. */
static inline double class_share(const fedkd_partition *p, int client, int k)
{
    size_t size = fedkd_partition_client_size(p, client);
    return size ? (double)p->histograms[(size_t)client * (size_t)p->num_classes + (size_t)k] /
                      (double)size
                : 0.0;
}

#endif
