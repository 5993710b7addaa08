/* Model specs from and to JSON: a preset name or a list of layer objects. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/nn/model_json.h"
#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

/* The keys a layer object may hold besides "type", per kind. */
typedef struct layer_keys {
    const char *kind;
    const char *keys[6];
} layer_keys;

static const layer_keys layer_key_table[] = {
    {"dense", {"units", "init", NULL}},
    {"conv2d", {"filters", "kernel", "stride", "padding", "init", NULL}},
    {"maxpool", {"kernel", "stride", NULL}},
    {"avgpool", {"kernel", "stride", "global", NULL}},
    {"relu", {NULL}},
    {"flatten", {NULL}},
    {"batchnorm", {"momentum", "epsilon", NULL}},
    {"groupnorm", {"groups", "epsilon", NULL}},
    {"residual", {"layers", "projection", NULL}},
    {NULL, {NULL}},
};

static const char *const all_layer_keys[] = {
    "type",   "units",  "filters", "kernel",  "stride", "padding",    "init",
    "global", "groups", "momentum", "epsilon", "layers", "projection", NULL};

static const char *const projection_names[] = {"none", "conv", "conv-batchnorm", NULL};

static const layer_keys *keys_of_kind(const char *kind)
{
    const layer_keys *entry = layer_key_table;
    while (entry->kind && strcmp(entry->kind, kind) != 0) entry++;
    return entry->kind ? entry : NULL;
}

static int key_allowed(const layer_keys *entry, const char *key)
{
    for (int i = 0; entry->keys[i]; i++)
        if (strcmp(entry->keys[i], key) == 0) return 1;
    return 0;
}

/* Levenshtein distance, for "did you mean" suggestions on short names. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return (size_t)-1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diagonal + cost;
            if (above + 1 < best) best = above + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

/* The candidate closest to `name`, or NULL if none is within a plausible
 * typo distance. */
static const char *closest_name(const char *name, const char *const *candidates)
{
    const char *best = NULL;
    size_t best_distance = (size_t)-1;
    for (int i = 0; candidates[i]; i++) {
        size_t distance = edit_distance(name, candidates[i]);
        if (distance < best_distance) {
            best_distance = distance;
            best = candidates[i];
        }
    }
    size_t length = strlen(name);
    size_t limit = length < 4 ? 1 : (length < 8 ? 2 : 3);
    return best_distance <= limit ? best : NULL;
}

static void describe_value(const cJSON *item, char *out, size_t size)
{
    char *text = cJSON_PrintUnformatted(item);
    if (!text) {
        snprintf(out, size, "(unprintable)");
        return;
    }
    if (strlen(text) >= size && size > 4)
        snprintf(out, size, "%.*s...", (int)(size - 4), text);
    else
        snprintf(out, size, "%s", text);
    cJSON_free(text);
}

static void join_names(char *out, size_t size, const char *const *names)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; names[i] && used < size; i++) {
        int written = snprintf(out + used, size - used, "%s%s", i ? ", " : "", names[i]);
        if (written < 0) break;
        used += (size_t)written;
    }
}

static fedkd_status parse_int(const cJSON *item, const char *location, int *out)
{
    double value = item->valuedouble;
    if (!cJSON_IsNumber(item) || value != floor(value) || value < (double)INT_MIN ||
        value > (double)INT_MAX) {
        char text[64];
        describe_value(item, text, sizeof text);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected an integer, got %s", location, text);
    }
    *out = (int)value;
    return FEDKD_OK;
}

static fedkd_status parse_float(const cJSON *item, const char *location, float lo, float hi,
                                const char *range, float *out)
{
    double value = item->valuedouble;
    if (!cJSON_IsNumber(item) || !(value > (double)lo && value <= (double)hi)) {
        char text[64];
        describe_value(item, text, sizeof text);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected a number in %s, got %s", location, range,
                          text);
    }
    *out = (float)value;
    return FEDKD_OK;
}

static fedkd_status parse_layer_list(fedkd_model_spec *parsed, const cJSON *list,
                                     const char *where, const char *prefix);

/* Parses one layer object and appends it (after its body, for a residual
 * block) to parsed->layers. `prefix` is its path below `where`, such as
 * "[3]" or "[3].layers[1]". */
static fedkd_status parse_layer(fedkd_model_spec *parsed, const cJSON *object, const char *where,
                                const char *prefix)
{
    char location[256], suffix[128];
    fedkd_layer_spec spec, *layer = &spec;
    const cJSON *body = NULL;
    snprintf(suffix, sizeof suffix, "%.40s", prefix);
    fedkd_nn_format_location(location, sizeof location, where, 1, suffix);
    if (!cJSON_IsObject(object))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: expected a layer object such as {\"type\": \"dense\", \"units\": "
                          "10}",
                          location);

    memset(layer, 0, sizeof *layer);
    snprintf(suffix, sizeof suffix, "%.40s.type", prefix);
    fedkd_nn_format_location(location, sizeof location, where, 1, suffix);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(object, "type");
    if (!type)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: missing; expected one of dense, conv2d, maxpool, avgpool, relu, "
                          "flatten, batchnorm, groupnorm, residual",
                          location);
    if (!cJSON_IsString(type)) {
        char text[64];
        describe_value(type, text, sizeof text);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected a layer name string, got %s", location,
                          text);
    }
    const fedkd_layer_kind *kind = fedkd_layer_kind_find(type->valuestring);
    if (!kind) {
        const char *kind_names[16];
        int count = 0;
        for (const fedkd_layer_kind *const *k = fedkd_layer_kinds; *k && count < 15; k++)
            kind_names[count++] = (*k)->name;
        kind_names[count] = NULL;
        const char *guess = closest_name(type->valuestring, kind_names);
        if (guess)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: unknown layer `%s`, did you mean `%s`?",
                              location, type->valuestring, guess);
        char names[256];
        join_names(names, sizeof names, kind_names);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: unknown layer `%s`, expected one of %s",
                          location, type->valuestring, names);
    }
    snprintf(layer->kind, sizeof layer->kind, "%s", kind->name);
    const layer_keys *allowed = keys_of_kind(kind->name);

    unsigned seen = 0;
    for (const cJSON *item = object->child; item; item = item->next) {
        const char *key = item->string ? item->string : "";
        snprintf(suffix, sizeof suffix, "%.40s.%.40s", prefix, key);
        fedkd_nn_format_location(location, sizeof location, where, 1, suffix);

        int key_index = -1;
        for (int i = 0; all_layer_keys[i]; i++)
            if (strcmp(all_layer_keys[i], key) == 0) key_index = i;
        if (key_index < 0 || (key_index > 0 && !(allowed && key_allowed(allowed, key)))) {
            const char *valid[8];
            int count = 0;
            valid[count++] = "type";
            for (int i = 0; allowed && allowed->keys[i]; i++) valid[count++] = allowed->keys[i];
            valid[count] = NULL;
            char names[128];
            join_names(names, sizeof names, valid);
            if (key_index >= 0)
                return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                  "%s: a `%s` layer does not take `%s` (it takes %s)", location,
                                  kind->name, key, names);
            const char *guess = closest_name(key, valid);
            if (guess)
                return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                  "%s: unknown key for a `%s` layer, did you mean `%s`?",
                                  location, kind->name, guess);
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "%s: unknown key for a `%s` layer, expected %s", location,
                              kind->name, names);
        }
        if (seen & (1u << key_index))
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: given twice", location);
        seen |= 1u << key_index;

        fedkd_status status = FEDKD_OK;
        if (strcmp(key, "type") == 0) continue;
        if (strcmp(key, "units") == 0) status = parse_int(item, location, &layer->units);
        else if (strcmp(key, "filters") == 0) status = parse_int(item, location, &layer->filters);
        else if (strcmp(key, "kernel") == 0) status = parse_int(item, location, &layer->kernel);
        else if (strcmp(key, "stride") == 0) status = parse_int(item, location, &layer->stride);
        else if (strcmp(key, "padding") == 0) status = parse_int(item, location, &layer->padding);
        else if (strcmp(key, "init") == 0) {
            if (cJSON_IsString(item) && strcmp(item->valuestring, "he") == 0) {
                layer->init = FEDKD_INIT_HE;
            } else if (cJSON_IsString(item) && strcmp(item->valuestring, "glorot") == 0) {
                layer->init = FEDKD_INIT_GLOROT;
            } else {
                char text[64];
                describe_value(item, text, sizeof text);
                status = FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected \"he\" or \"glorot\", got %s",
                                    location, text);
            }
        } else if (strcmp(key, "global") == 0) {
            if (!cJSON_IsBool(item)) {
                char text[64];
                describe_value(item, text, sizeof text);
                status = FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected true or false, got %s",
                                    location, text);
            }
            layer->global = cJSON_IsTrue(item);
        } else if (strcmp(key, "groups") == 0) {
            status = parse_int(item, location, &layer->groups);
        } else if (strcmp(key, "momentum") == 0) {
            status = parse_float(item, location, 0.0f, 1.0f, "(0, 1]", &layer->momentum);
        } else if (strcmp(key, "epsilon") == 0) {
            status = parse_float(item, location, 0.0f, 1.0f, "(0, 1]", &layer->epsilon);
        } else if (strcmp(key, "projection") == 0) {
            int found = -1;
            for (int i = 0; cJSON_IsString(item) && projection_names[i]; i++)
                if (strcmp(item->valuestring, projection_names[i]) == 0) found = i;
            if (found < 0) {
                char text[64];
                describe_value(item, text, sizeof text);
                status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                    "%s: expected \"none\", \"conv\" or \"conv-batchnorm\", got %s",
                                    location, text);
            }
            layer->projection = (fedkd_projection)(found < 0 ? 0 : found);
        } else if (strcmp(key, "layers") == 0) {
            body = item;
        }
        if (status != FEDKD_OK) return status;
    }

    if (kind == fedkd_layer_kind_find("residual")) {
        snprintf(suffix, sizeof suffix, "%.40s.layers", prefix);
        fedkd_nn_format_location(location, sizeof location, where, 1, suffix);
        if (strchr(prefix, '.'))
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "%s: a residual block inside another one is not supported",
                              location);
        if (!cJSON_IsArray(body) || cJSON_GetArraySize(body) < 1)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "%s: expected the block's list of layers (at least one), got %s",
                              location, body ? "something else" : "nothing");
        int first = parsed->num_layers;
        fedkd_status status = parse_layer_list(parsed, body, where, prefix);
        if (status != FEDKD_OK) return status;
        layer->body = parsed->num_layers - first;
    }
    if (parsed->num_layers >= FEDKD_MAX_LAYERS)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: more than %d layers (counting the layers inside residual blocks)",
                          where, FEDKD_MAX_LAYERS);
    parsed->layers[parsed->num_layers++] = spec;
    return FEDKD_OK;
}

/* Appends every layer of `list`; prefix "" for the model's own list, "[3]"
 * for the body of the block at [3]. */
static fedkd_status parse_layer_list(fedkd_model_spec *parsed, const cJSON *list,
                                     const char *where, const char *prefix)
{
    int index = 0;
    for (const cJSON *item = list->child; item; item = item->next, index++) {
        char path[128];
        if (prefix[0])
            snprintf(path, sizeof path, "%.40s.layers[%d]", prefix, index);
        else
            snprintf(path, sizeof path, "[%d]", index);
        fedkd_status status = parse_layer(parsed, item, where, path);
        if (status != FEDKD_OK) return status;
    }
    return FEDKD_OK;
}

fedkd_status fedkd_model_spec_from_json(fedkd_model_spec *spec, const cJSON *json,
                                        fedkd_shape input, int num_classes, const char *where)
{
    if (!where) where = "model";
    if (cJSON_IsString(json)) {
        fedkd_status status = fedkd_model_spec_preset(spec, json->valuestring, input, num_classes);
        if (status != FEDKD_OK) {
            char reason[512];
            snprintf(reason, sizeof reason, "%s", fedkd_error_message());
            return FEDKD_FAIL(status, "%s: %s", where, reason);
        }
        return FEDKD_OK;
    }
    if (!cJSON_IsArray(json)) {
        char text[64] = "nothing";
        if (json) describe_value(json, text, sizeof text);
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: expected a preset name (mlp, cnn, resnet8, resnet20) or a list of "
                          "layers, got %s",
                          where, text);
    }
    int count = cJSON_GetArraySize(json);
    if (count < 1 || count > FEDKD_MAX_LAYERS)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected 1 to %d layers, got %d", where,
                          FEDKD_MAX_LAYERS, count);

    fedkd_model_spec parsed;
    memset(&parsed, 0, sizeof parsed);
    snprintf(parsed.name, sizeof parsed.name, "custom");
    parsed.input = input;
    parsed.num_classes = num_classes;
    fedkd_status parse_status = parse_layer_list(&parsed, json, where, "");
    if (parse_status != FEDKD_OK) return parse_status;

    fedkd_layer *layers = calloc(FEDKD_MAX_LAYERS, sizeof *layers);
    if (!layers) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory checking the model", where);
    fedkd_status status = fedkd_nn_configure_layers(layers, &parsed, where, 1, NULL);
    free(layers);
    if (status != FEDKD_OK) return status;
    *spec = parsed;
    return FEDKD_OK;
}

cJSON *fedkd_model_spec_to_json(const fedkd_model_spec *spec)
{
    cJSON *list = cJSON_CreateArray();
    if (!list) return NULL;
    for (int i = 0; i < spec->num_layers; i++) {
        const fedkd_layer_spec *layer = &spec->layers[i];
        cJSON *object = cJSON_CreateObject();
        if (!object) goto fail;
        cJSON_AddItemToArray(list, object);
        char kind[sizeof layer->kind + 1];
        memcpy(kind, layer->kind, sizeof layer->kind);
        kind[sizeof layer->kind] = '\0';
        if (!cJSON_AddStringToObject(object, "type", kind)) goto fail;
        const struct {
            const char *key;
            int value;
        } fields[] = {{"units", layer->units},   {"filters", layer->filters},
                      {"kernel", layer->kernel}, {"stride", layer->stride},
                      {"padding", layer->padding}};
        for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++)
            if (fields[f].value != 0 &&
                !cJSON_AddNumberToObject(object, fields[f].key, fields[f].value))
                goto fail;
        if (layer->init != FEDKD_INIT_DEFAULT &&
            !cJSON_AddStringToObject(object, "init",
                                     layer->init == FEDKD_INIT_HE ? "he" : "glorot"))
            goto fail;
        if (layer->global && !cJSON_AddTrueToObject(object, "global")) goto fail;
        if (layer->groups && !cJSON_AddNumberToObject(object, "groups", layer->groups)) goto fail;
        if (layer->momentum != 0.0f &&
            !cJSON_AddNumberToObject(object, "momentum", (double)layer->momentum))
            goto fail;
        if (layer->epsilon != 0.0f &&
            !cJSON_AddNumberToObject(object, "epsilon", (double)layer->epsilon))
            goto fail;
        if (strcmp(kind, "residual") == 0) {
            /* Its body is the last `body` objects of the list: move them in. */
            cJSON *body = cJSON_CreateArray();
            if (!body || !cJSON_AddItemToObject(object, "layers", body)) {
                cJSON_Delete(body);
                goto fail;
            }
            int size = cJSON_GetArraySize(list);
            int first = size - 1 - layer->body;
            if (first < 0) goto fail;
            for (int k = 0; k < layer->body; k++)
                cJSON_AddItemToArray(body, cJSON_DetachItemFromArray(list, first));
            if (layer->projection != FEDKD_PROJECTION_NONE &&
                !cJSON_AddStringToObject(object, "projection",
                                         projection_names[(int)layer->projection]))
                goto fail;
        }
    }
    return list;

fail:
    cJSON_Delete(list);
    return NULL;
}
