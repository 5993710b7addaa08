/* Which model each client trains (client_models.h). */
#include "fl/client_models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/io/model_file.h"
#include "fedkd/nn/model_json.h"

enum { MAX_NAME = 64 };

/* Item `index` of the comma-separated string, trimmed, into name. */
static void string_entry(const char *text, int index, char *name, size_t size)
{
    const char *start = text;
    for (int i = 0; i < index; i++) start = strchr(start, ',') + 1;
    const char *end = strchr(start, ',');
    if (!end) end = start + strlen(start);
    while (start < end && *start == ' ') start++;
    while (end > start && end[-1] == ' ') end--;
    snprintf(name, size, "%.*s", (int)(end - start), start);
}

int fl_client_models_count(const fedkd_config *config)
{
    const cJSON *models = config->clients.models;
    if (cJSON_IsArray(models)) return cJSON_GetArraySize(models);
    if (!cJSON_IsString(models) || !models->valuestring[0]) return 0;
    int count = 1;
    for (const char *p = models->valuestring; *p; p++) count += (*p == ',');
    return count;
}

/* Entry `index` as JSON (a new item: delete it). NULL when out of memory. */
static cJSON *entry_json(const fedkd_config *config, int index)
{
    const cJSON *models = config->clients.models;
    if (cJSON_IsArray(models)) return cJSON_Duplicate(cJSON_GetArrayItem(models, index), 1);
    char name[MAX_NAME];
    string_entry(models->valuestring, index, name, sizeof name);
    return cJSON_CreateString(name);
}

static void describe(const cJSON *json, char *out, size_t size)
{
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;
    if (!text) snprintf(out, size, "(unprintable)");
    else if (strlen(text) > 48) snprintf(out, size, "%.45s...", text);
    else snprintf(out, size, "%s", text);
    free(text);
}

fedkd_status fl_client_models_check(const fedkd_config *config, const fedkd_algorithm *algorithm)
{
    if (config->fedbn && (!algorithm->global_model || strcmp(algorithm->name, "feddf") == 0))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `fedbn`: algorithm `%s` does not average the clients' "
                          "weights as it is; FedBN works with fedavg, fedprox, scaffold and "
                          "fednova",
                          algorithm->name);
    if (algorithm->mixed_models) return FEDKD_OK;
    int count = fl_client_models_count(config);
    for (int i = 0; i < count; i++) {
        cJSON *entry = entry_json(config, i);
        if (!entry) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading clients.models");
        int same = cJSON_Compare(entry, config->model, 1);
        char entry_text[64], model_text[64];
        describe(entry, entry_text, sizeof entry_text);
        describe(config->model, model_text, sizeof model_text);
        cJSON_Delete(entry);
        if (same) continue;
        char allowed[128] = "";
        for (int a = 0; fedkd_algorithms[a]; a++) {
            if (!fedkd_algorithms[a]->mixed_models) continue;
            size_t used = strlen(allowed);
            snprintf(allowed + used, sizeof allowed - used, "%s%s", used ? ", " : "",
                     fedkd_algorithms[a]->name);
        }
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `clients.models`: algorithm `%s` averages the clients' "
                          "weights and needs every client on config key `model` (%s), but entry "
                          "%d is %s; mixed models run with algorithm %s (or set clients.models "
                          "to \"\")",
                          algorithm->name, model_text, i + 1, entry_text, allowed);
    }
    return FEDKD_OK;
}

void fl_client_models_free(fl_client_models *m)
{
    free(m->specs);
    free(m->num_params);
    memset(m, 0, sizeof *m);
}

fedkd_status fl_client_models_resolve(const fedkd_config *config, fedkd_shape input,
                                      int num_classes, fl_client_models *out)
{
    memset(out, 0, sizeof *out);
    int count = fl_client_models_count(config);
    int entries = count > 0 ? count : 1;
    fedkd_status status = FEDKD_OK;
    out->specs = calloc((size_t)entries, sizeof *out->specs);
    out->num_params = calloc((size_t)entries, sizeof *out->num_params);
    if (!out->specs || !out->num_params) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d model specs", entries);
        goto fail;
    }
    out->num_entries = entries;
    for (int i = 0; i < entries; i++) {
        if (count == 0) {
            status = fedkd_model_spec_from_json(&out->specs[i], config->model, input, num_classes,
                                                "config key `model`");
        } else {
            char where[80];
            snprintf(where, sizeof where, "config key `clients.models` (entry %d)", i + 1);
            cJSON *entry = entry_json(config, i);
            status = entry ? fedkd_model_spec_from_json(&out->specs[i], entry, input, num_classes,
                                                        where)
                           : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading clients.models");
            cJSON_Delete(entry);
        }
        if (status) goto fail;
        int norm_ranges = 0;
        if (config->fedbn &&
            (fedkd_model_spec_param_ranges(&out->specs[i], FEDKD_PARAMS_NORM, NULL, NULL, 0,
                                           &norm_ranges) != FEDKD_OK ||
             norm_ranges == 0)) {
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "config key `fedbn`: the model of config key `model` has no "
                                "batchnorm or groupnorm layer to keep on the clients");
            goto fail;
        }
        if (config->local.batch_size < fedkd_model_spec_min_train_batch(&out->specs[i])) {
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "config key `local.batch_size`: the model of %s has a batchnorm "
                                "layer, whose batch statistics need training batches of at least "
                                "%d samples, got %d",
                                count == 0 ? "config key `model`" : "config key `clients.models`",
                                fedkd_model_spec_min_train_batch(&out->specs[i]),
                                config->local.batch_size);
            goto fail;
        }
        /* The parameter count needs the layer geometry, not the buffers. */
        double bytes = 0.0;
        status = fedkd_model_estimate(&out->specs[i], 1, &out->num_params[i], &bytes);
        if (status) goto fail;
        if (out->num_params[i] > out->max_params) out->max_params = out->num_params[i];
        char difference[128];
        if (i > 0 &&
            fedkd_model_spec_difference(&out->specs[0], &out->specs[i], difference, sizeof difference))
            out->mixed = 1;
    }
    return FEDKD_OK;
fail:
    fl_client_models_free(out);
    return status;
}
