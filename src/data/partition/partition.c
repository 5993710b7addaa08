/* The partitioner table, and what every scheme shares: validation, turning
 * an owner per row into per-client index lists and histograms, the JSON
 * summary and the feature noise. */
#include "data/partition/partition_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const fedkd_partitioner *const fedkd_partitioners[] = {
    &fedkd_partitioner_iid,
    &fedkd_partitioner_dirichlet,
    &fedkd_partitioner_shards,
    &fedkd_partitioner_quantity,
    &fedkd_partitioner_feature_noise,
    NULL,
};

const fedkd_partitioner *fedkd_partitioner_find(const char *name)
{
    if (!name) return NULL;
    for (const fedkd_partitioner *const *p = fedkd_partitioners; *p; p++)
        if (strcmp((*p)->name, name) == 0) return *p;
    return NULL;
}

/* Mirrors the partition keys of configs/default.json. */
fedkd_partition_settings fedkd_partition_default_settings(void)
{
    fedkd_partition_settings settings = {
        .scheme = "dirichlet",
        .num_clients = 15,
        .alpha = 0.5,
        .classes_per_client = 2,
        .sigma = 0.5,
        .min_size = 10,
        .seed = 42,
    };
    return settings;
}

/* "iid, dirichlet, ... or feature-noise", from the table so it never goes stale. */
static void partitioner_names(char *buffer, size_t size)
{
    size_t used = 0;
    buffer[0] = '\0';
    for (size_t i = 0; fedkd_partitioners[i] && used < size; i++) {
        const char *separator = i == 0 ? "" : fedkd_partitioners[i + 1] ? ", " : " or ";
        int written = snprintf(buffer + used, size - used, "%s%s", separator,
                               fedkd_partitioners[i]->name);
        if (written < 0) break;
        used += (size_t)written;
    }
}

static fedkd_status validate_settings(const fedkd_partition_settings *settings,
                                      const fedkd_partitioner **partitioner, size_t count,
                                      int num_classes)
{
    size_t scheme_length = strnlen(settings->scheme, sizeof settings->scheme);
    if (scheme_length == sizeof settings->scheme)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `partition.scheme`: the name is longer than %zu characters",
                          sizeof settings->scheme - 1);
    *partitioner = fedkd_partitioner_find(settings->scheme);
    if (!*partitioner) {
        char names[256];
        partitioner_names(names, sizeof names);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `partition.scheme`: unknown scheme `%s`; expected %s",
                          settings->scheme, names);
    }
    if (settings->num_clients < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `clients.count`: expected an integer >= 1, "
                          "got %d", settings->num_clients);
    if (settings->min_size < 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `partition.min_size`: expected an integer >= 0, got %d",
                          settings->min_size);
    if (!(settings->sigma >= 0.0) || !isfinite(settings->sigma))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `partition.sigma`: expected a number >= 0, got %g",
                          settings->sigma);
    if (num_classes < 1)
        return FEDKD_FAIL(FEDKD_ERR_INVALID,
                          "partition: the training set must have at least 1 class, got %d",
                          num_classes);
    if (count > UINT32_MAX)
        return FEDKD_FAIL(FEDKD_ERR_INVALID,
                          "partition: %zu training samples, but row numbers are 32-bit "
                          "(at most %lu); lower data.train_limit",
                          count, (unsigned long)UINT32_MAX);
    long long required = fedkd_partition_required_size(settings);
    long long needed = (long long)settings->num_clients * required;
    if ((unsigned long long)needed > count) {
        if (settings->min_size > 1)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "config key `clients.count`: clients.count=%d with "
                              "partition.min_size=%d needs at least %d x %d = %lld samples but "
                              "the training set has %zu; lower clients.count or "
                              "partition.min_size",
                              settings->num_clients, settings->min_size, settings->num_clients,
                              settings->min_size, needed, count);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `clients.count`: clients.count=%d needs at least %d "
                          "samples (one per client) but the training set has %zu; lower "
                          "clients.count",
                          settings->num_clients, settings->num_clients, count);
    }
    return FEDKD_OK;
}

fedkd_status fedkd_partition_create(fedkd_partition **out, const fedkd_partition_settings *settings,
                                    const int32_t *labels, size_t count, int num_classes)
{
    fedkd_partition *partition = NULL;
    int32_t *owner = NULL;
    size_t *cursor = NULL;
    const fedkd_partitioner *partitioner = NULL;
    fedkd_status status = FEDKD_OK;

    if (!out || !settings || (!labels && count > 0))
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "partition: create needs out, settings and labels");
    *out = NULL;
    status = validate_settings(settings, &partitioner, count, num_classes);
    if (status != FEDKD_OK) goto fail;
    status = fedkd_partition_check_labels(labels, count, num_classes);
    if (status != FEDKD_OK) goto fail;

    int clients = settings->num_clients;
    owner = malloc((count ? count : 1) * sizeof *owner);
    partition = calloc(1, sizeof *partition);
    if (!owner || !partition) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory for %zu rows", count);
        goto fail;
    }
    for (size_t row = 0; row < count; row++) owner[row] = -1;
    status = partitioner->assign(settings, labels, count, num_classes, owner);
    if (status != FEDKD_OK) goto fail;

    partition->num_clients = clients;
    partition->num_classes = num_classes;
    partition->total = count;
    memcpy(partition->scheme, settings->scheme, sizeof partition->scheme);
    partition->offsets = calloc((size_t)clients + 1, sizeof *partition->offsets);
    partition->histograms = calloc((size_t)clients * (size_t)num_classes,
                                   sizeof *partition->histograms);
    partition->noise_sigma = calloc((size_t)clients, sizeof *partition->noise_sigma);
    cursor = malloc((size_t)clients * sizeof *cursor);
    if (!partition->offsets || !partition->histograms || !partition->noise_sigma || !cursor) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory for %d clients", clients);
        goto fail;
    }

    for (size_t row = 0; row < count; row++) {
        int32_t client = owner[row];
        if (client == -1) {
            partition->dropped++;
            continue;
        }
        if (client < 0 || client >= clients) {
            status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                                "partition: scheme `%s` gave row %zu to client %d, expected "
                                "-1..%d",
                                settings->scheme, row, (int)client, clients - 1);
            goto fail;
        }
        partition->offsets[client + 1]++;
        partition->histograms[(size_t)client * (size_t)num_classes + (size_t)labels[row]]++;
    }
    size_t required = (size_t)fedkd_partition_required_size(settings);
    for (int c = 0; c < clients; c++) {
        size_t size = partition->offsets[c + 1];
        if (size < required) {
            if (settings->min_size >= 1)
                status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                    "partition: scheme `%s` left client %d with %zu samples, "
                                    "fewer than partition.min_size=%d; lower partition.min_size "
                                    "or clients.count",
                                    settings->scheme, c, size, settings->min_size);
            else
                status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                    "partition: scheme `%s` left client %d with no samples "
                                    "(every client needs at least 1); lower clients.count",
                                    settings->scheme, c);
            goto fail;
        }
        partition->offsets[c + 1] += partition->offsets[c];
    }

    size_t assigned = partition->offsets[clients];
    partition->indices = malloc((assigned ? assigned : 1) * sizeof *partition->indices);
    if (!partition->indices) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "partition: out of memory for %zu indices", assigned);
        goto fail;
    }
    /* Visiting rows in order leaves every client's list ascending. */
    for (int c = 0; c < clients; c++) cursor[c] = partition->offsets[c];
    for (size_t row = 0; row < count; row++)
        if (owner[row] >= 0) partition->indices[cursor[owner[row]]++] = (uint32_t)row;

    if (partitioner == &fedkd_partitioner_feature_noise) {
        /* METHODS.md: client i adds noise of std sigma * i / n. */
        for (int c = 0; c < clients; c++)
            partition->noise_sigma[c] = settings->sigma * (double)c / (double)clients;
    }

    free(owner);
    free(cursor);
    *out = partition;
    return FEDKD_OK;

fail:
    free(owner);
    free(cursor);
    fedkd_partition_destroy(&partition);
    return status;
}

void fedkd_partition_destroy(fedkd_partition **partition)
{
    if (!partition || !*partition) return;
    free((*partition)->offsets);
    free((*partition)->indices);
    free((*partition)->histograms);
    free((*partition)->noise_sigma);
    free(*partition);
    *partition = NULL;
}

static cJSON *client_to_json(const fedkd_partition *partition, int client)
{
    cJSON *item = cJSON_CreateObject();
    if (!item) return NULL;
    if (!cJSON_AddNumberToObject(item, "client", client) ||
        !cJSON_AddNumberToObject(item, "size",
                                 (double)fedkd_partition_client_size(partition, client)))
        goto fail;
    cJSON *classes = cJSON_AddArrayToObject(item, "classes");
    if (!classes) goto fail;
    const uint32_t *histogram =
        partition->histograms + (size_t)client * (size_t)partition->num_classes;
    for (int k = 0; k < partition->num_classes; k++) {
        cJSON *number = cJSON_CreateNumber((double)histogram[k]);
        if (!number || !cJSON_AddItemToArray(classes, number)) {
            cJSON_Delete(number);
            goto fail;
        }
    }
    if (!cJSON_AddNumberToObject(item, "noise_sigma", partition->noise_sigma[client])) goto fail;
    return item;

fail:
    cJSON_Delete(item);
    return NULL;
}

cJSON *fedkd_partition_to_json(const fedkd_partition *partition)
{
    if (!partition) return NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    if (!cJSON_AddStringToObject(root, "scheme", partition->scheme) ||
        !cJSON_AddNumberToObject(root, "num_classes", partition->num_classes) ||
        !cJSON_AddNumberToObject(root, "total", (double)partition->total) ||
        !cJSON_AddNumberToObject(root, "dropped", (double)partition->dropped))
        goto fail;
    cJSON *clients = cJSON_AddArrayToObject(root, "clients");
    if (!clients) goto fail;
    for (int c = 0; c < partition->num_clients; c++) {
        cJSON *item = client_to_json(partition, c);
        if (!item || !cJSON_AddItemToArray(clients, item)) {
            cJSON_Delete(item);
            goto fail;
        }
    }
    return root;

fail:
    cJSON_Delete(root);
    return NULL;
}

void fedkd_partition_apply_noise(const fedkd_partition *partition, int client, uint64_t seed,
                                 float *features, size_t count, size_t sample_floats)
{
    if (!partition || !features || client < 0 || client >= partition->num_clients) return;
    double sigma = partition->noise_sigma[client];
    if (sigma == 0.0) return;
    /* One stream per client, read in sample order: the same client gets the
     * same noise whichever rank hosts it. */
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_FEATURE_NOISE, (uint64_t)client, 0);
    size_t total = count * sample_floats;
    for (size_t i = 0; i < total; i++) features[i] += (float)(sigma * fedkd_rng_normal(&rng));
}
