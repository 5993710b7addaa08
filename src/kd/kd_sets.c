/* Where tuning and KD look (../shared/METHODS.md): the seeded splits of a
 * student's data and of the public set, and the checks that keep a
 * validation set labelled and apart from the test and transfer sets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/core/rng.h"
#include "fedkd/kd/kd.h"

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int fedkd_kd_uses_public(const fedkd_config *config)
{
    return strcmp(config->kd.validation, "public") == 0 ||
           strcmp(config->kd.transfer, "public") == 0;
}

fedkd_status fedkd_kd_split_rows(uint64_t seed, uint64_t stream_a, uint64_t stream_b, size_t n,
                                 size_t n_validation, const char *key, uint32_t **order)
{
    *order = NULL;
    if (n_validation < 1 || n_validation >= n)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `%s`: %zu validation rows out of %zu leave no rows on one "
                          "side", key, n_validation, n);
    uint32_t *rows = malloc(n * sizeof *rows);
    if (!rows) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row numbers", n);
    for (size_t i = 0; i < n; i++) rows[i] = (uint32_t)i;
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_PUBLIC_SPLIT, stream_a, stream_b);
    fedkd_rng_shuffle_u32(&rng, rows, n);
    qsort(rows, n_validation, sizeof *rows, compare_u32);
    qsort(rows + n_validation, n - n_validation, sizeof *rows, compare_u32);
    *order = rows;
    return FEDKD_OK;
}

fedkd_status fedkd_kd_public_sizes(const fedkd_kd_settings *s, size_t public_count,
                                   size_t *n_validation, size_t *n_transfer)
{
    *n_validation = 0;
    *n_transfer = 0;
    if (s->validation != FEDKD_KD_PUBLIC && s->transfer != FEDKD_KD_PUBLIC) return FEDKD_OK;
    const char *key = s->validation == FEDKD_KD_PUBLIC ? "kd.validation" : "kd.transfer";
    if (public_count == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `%s`: \"public\" needs a public set, and it is empty "
                          "(public.size, public.source)", key);
    if (s->validation == FEDKD_KD_PUBLIC) {
        size_t v = (size_t)s->validation_size;
        if (v == 0) {
            v = (size_t)llround(s->validation_fraction * (double)public_count);
            if (v < 1) v = 1;
        }
        if (v > public_count)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `kd.validation_size`: %zu validation rows, the public "
                              "set has %zu", v, public_count);
        if (s->transfer == FEDKD_KD_PUBLIC && v >= public_count)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `kd.validation_size`: the public validation part takes "
                              "all %zu public rows and leaves the transfer set (kd.transfer "
                              "\"public\") empty", public_count);
        *n_validation = v;
    }
    if (s->transfer == FEDKD_KD_PUBLIC) *n_transfer = public_count - *n_validation;
    return FEDKD_OK;
}

fedkd_status fedkd_kd_check_labelled(const fedkd_dataset *data, int classes, const char *key,
                                     const char *what)
{
    if (data->count == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `%s`: %s (%s) is empty", key, what,
                          data->origin);
    for (size_t i = 0; i < data->count; i++) {
        int32_t label = data->labels ? data->labels[i] : -1;
        if (label < 0 || label >= classes)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `%s`: %s (%s) must be labelled, and sample %zu has no "
                              "label in [0, %d) (got %d)",
                              key, what, data->origin, i, classes, (int)label);
    }
    return FEDKD_OK;
}

static uint64_t sample_hash(const float *x, size_t floats)
{
    uint64_t hash = 1469598103934665603ull;
    const unsigned char *bytes = (const unsigned char *)x;
    for (size_t i = 0; i < floats * sizeof(float); i++) {
        hash ^= bytes[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

fedkd_status fedkd_kd_check_disjoint(const fedkd_dataset *a, const fedkd_dataset *b,
                                     const char *key, const char *a_name, const char *b_name)
{
    size_t floats = fedkd_dataset_sample_floats(a);
    if (fedkd_dataset_sample_floats(b) != floats || a->count == 0 || b->count == 0)
        return FEDKD_OK;
    uint64_t *hashes = malloc(b->count * sizeof *hashes);
    if (!hashes) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu hashes", b->count);
    for (size_t j = 0; j < b->count; j++) hashes[j] = sample_hash(b->features + j * floats, floats);
    qsort(hashes, b->count, sizeof *hashes, compare_u64);
    fedkd_status status = FEDKD_OK;
    for (size_t i = 0; i < a->count && !status; i++) {
        const float *x = a->features + i * floats;
        uint64_t h = sample_hash(x, floats);
        if (!bsearch(&h, hashes, b->count, sizeof *hashes, compare_u64)) continue;
        for (size_t j = 0; j < b->count; j++)
            if (memcmp(b->features + j * floats, x, floats * sizeof(float)) == 0) {
                status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                    "config key `%s`: sample %zu of %s is sample %zu of %s; %s "
                                    "must not overlap %s",
                                    key, i, a_name, j, b_name, a_name, b_name);
                break;
            }
    }
    free(hashes);
    return status;
}
