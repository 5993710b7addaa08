/* Where tuning and KD look (../shared/METHODS.md): the seeded splits of a
 * student's data and of the public set, and the checks that keep a
 * validation set labelled and apart from the test and transfer sets. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/core/rng.h"
#include "fedkd/kd/kd.h"
#include "kd/kd_private.h"

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
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

fedkd_status fedkd_kd_check_disjoint(const fedkd_dataset *a, const fedkd_dataset *b,
                                     const char *key, const char *a_name, const char *b_name)
{
    int found = 0;
    size_t i = 0, j = 0;
    fedkd_status status = fedkd_dataset_find_shared(a, b, &found, &i, &j);
    if (!status && found)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `%s`: sample %zu of %s is sample %zu of %s; %s must not "
                            "overlap %s",
                            key, i, a_name, j, b_name, a_name, b_name);
    return status;
}

/* Every method starts here: at least one teacher, each with the student's classes. */
fedkd_status kd_check_teachers(const fedkd_kd_job *job)
{
    if (job->num_teachers < 1)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "KD of client %d: no teacher given",
                          job->student_client);
    int classes = fedkd_model_num_classes(job->student);
    for (int t = 0; t < job->num_teachers; t++)
        if (job->teachers[t].spec->num_classes != classes)
            return FEDKD_FAIL(FEDKD_ERR_INVALID,
                              "teacher client %d has %d classes, student client %d has %d: KD "
                              "needs the same classes",
                              job->teachers[t].client, job->teachers[t].spec->num_classes,
                              job->student_client, classes);
    return FEDKD_OK;
}
