/* Grid-search sweeps (include/fedkd/experiments/sweep.h): the grid file
 * and its points. sweep.c runs them; sweep_results.c tabulates them. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "experiments/experiments_private.h"
#include "experiments/sweep_private.h"

static const char *const grid_file_keys[] = {"base", "group_size", "grid", "output",
                                             "description", NULL};

/* ---- the grid file ------------------------------------------------------------ */

static void free_strings(char **strings, int count)
{
    for (int i = 0; strings && i < count; i++) free(strings[i]);
    free(strings);
}

/* The loader words override errors as "--set: ..."; in a grid file the
 * values come from the file, which the caller names instead. */
static const char *without_set_origin(const char *message)
{
    static const char prefix[] = "--set: ";
    return strncmp(message, prefix, sizeof prefix - 1) == 0 ? message + sizeof prefix - 1
                                                            : message;
}

/* Base, then (with_user) the caller's overrides, then extra[0..num_extra). */
static fedkd_status load_config(const fedkd_sweep_grid *g, int with_user, char *const *extra,
                                int num_extra, fedkd_config *config)
{
    int total = g->num_base_overrides + (with_user ? g->num_user_overrides : 0) + num_extra;
    const char **all = malloc((size_t)(total > 0 ? total : 1) * sizeof *all);
    if (!all) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory loading a sweep point's config");
    int n = 0;
    for (int i = 0; i < g->num_base_overrides; i++) all[n++] = g->base_overrides[i];
    for (int i = 0; with_user && i < g->num_user_overrides; i++) all[n++] = g->user_overrides[i];
    for (int i = 0; i < num_extra; i++) all[n++] = extra[i];
    fedkd_status status =
        fedkd_config_load(config, g->base_path[0] ? g->base_path : NULL, all, n);
    free(all);
    return status;
}

static fedkd_status load_base(fedkd_sweep_grid *g, const cJSON *base)
{
    if (!base) return FEDKD_OK;
    if (cJSON_IsString(base)) {
        const char *name = base->valuestring;
        if (!name[0]) return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: `base` is empty", g->path);
        const char *slash = strrchr(g->path, '/');
        int written = name[0] == '/' || !slash
                          ? snprintf(g->base_path, sizeof g->base_path, "%s", name)
                          : snprintf(g->base_path, sizeof g->base_path, "%.*s/%s",
                                     (int)(slash - g->path), g->path, name);
        if (written < 0 || (size_t)written >= sizeof g->base_path)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: `base` path is too long", g->path);
        return FEDKD_OK;
    }
    if (!cJSON_IsObject(base))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: `base`: expected a config file name or an object of config "
                          "keys", g->path);
    int count = cJSON_GetArraySize(base);
    g->base_overrides = calloc((size_t)(count > 0 ? count : 1), sizeof *g->base_overrides);
    if (!g->base_overrides) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading `base`");
    for (const cJSON *item = base->child; item; item = item->next) {
        char *text = fedkd_config_override_text(item->string, item);
        if (!text) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading `base`");
        g->base_overrides[g->num_base_overrides++] = text;
    }
    return FEDKD_OK;
}

static fedkd_status read_group_size(fedkd_sweep_grid *g, const cJSON *item, int world_size)
{
    if (!item) {
        g->group_size = world_size;
        return FEDKD_OK;
    }
    double v = cJSON_IsNumber(item) ? item->valuedouble : -1.0;
    if (!cJSON_IsNumber(item) || v < 1.0 || v > 1.0e6 || v != (double)(int)v)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: `group_size`: expected a whole number >= 1 (processes per "
                          "federation)", g->path);
    g->group_size = (int)v;
    if (world_size % g->group_size != 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: `group_size` %d does not divide the %d MPI process(es): run "
                          "with -np a multiple of %d, or use a group_size that divides %d",
                          g->path, g->group_size, world_size, g->group_size, world_size);
    return FEDKD_OK;
}

/* One grid key: a non-empty list of distinct values, each valid on top of
 * the base config (checked by loading it, so the config table decides). */
static fedkd_status check_grid_key(fedkd_sweep_grid *g, const cJSON *list)
{
    const char *key = list->string;
    if (strcmp(key, "run.dir") == 0 || strcmp(key, "run") == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: grid key `%s`: the sweep sets run.dir for each point "
                          "(<output>/point-N); set `output` instead", g->path, key);
    if (!cJSON_IsArray(list))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: grid key `%s`: expected a list of values",
                          g->path, key);
    if (!list->child)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: grid key `%s`: the list of values is empty; give at least one",
                          g->path, key);
    for (const cJSON *value = list->child; value; value = value->next) {
        for (const cJSON *earlier = list->child; earlier != value; earlier = earlier->next)
            if (cJSON_Compare(earlier, value, 1)) {
                char *text = cJSON_PrintUnformatted(value);
                fedkd_status status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                                 "%s: grid key `%s`: value %s is listed twice",
                                                 g->path, key, text ? text : "?");
                free(text);
                return status;
            }
        char *override = fedkd_config_override_text(key, value);
        if (!override) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory checking the grid");
        fedkd_config config;
        fedkd_status status = load_config(g, 1, &override, 1, &config);
        fedkd_config_free(&config);
        if (status) {
            char message[1024];
            snprintf(message, sizeof message, "%s", without_set_origin(fedkd_error_message()));
            status = FEDKD_FAIL(status, "%s: grid key `%s`, value %s: %s", g->path, key,
                                override + strlen(key) + 1, message);
        }
        free(override);
        if (status) return status;
    }
    return FEDKD_OK;
}

static fedkd_status read_grid(fedkd_sweep_grid *g, const cJSON *grid)
{
    if (!cJSON_IsObject(grid))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: `grid`: expected an object of config keys and lists of values, "
                          "e.g. {\"kd.temperature\": [1, 2, 4]}", g->path);
    int count = cJSON_GetArraySize(grid);
    if (count == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: `grid` is empty; list at least one key",
                          g->path);
    g->keys = calloc((size_t)count, sizeof *g->keys);
    g->lists = calloc((size_t)count, sizeof *g->lists);
    g->counts = calloc((size_t)count, sizeof *g->counts);
    if (!g->keys || !g->lists || !g->counts)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading the grid");
    long long points = 1;
    for (const cJSON *list = grid->child; list; list = list->next) {
        for (const cJSON *earlier = grid->child; earlier != list; earlier = earlier->next)
            if (strcmp(earlier->string, list->string) == 0)
                return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: grid key `%s` appears twice", g->path,
                                  list->string);
        fedkd_status status = check_grid_key(g, list);
        if (status) return status;
        g->keys[g->num_keys] = list->string;
        g->lists[g->num_keys] = list;
        g->counts[g->num_keys] = cJSON_GetArraySize(list);
        points *= g->counts[g->num_keys];
        g->num_keys++;
        if (points > SWEEP_MAX_POINTS)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: the grid has more than %d points", g->path,
                              SWEEP_MAX_POINTS);
    }
    g->num_points = (int)points;
    return FEDKD_OK;
}

static fedkd_status read_output(fedkd_sweep_grid *g, const cJSON *output)
{
    int written;
    if (output) {
        if (!cJSON_IsString(output) || !output->valuestring[0])
            return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: `output`: expected a directory name",
                              g->path);
        written = snprintf(g->output, sizeof g->output, "%s", output->valuestring);
    } else {
        const char *slash = strrchr(g->path, '/');
        const char *name = slash ? slash + 1 : g->path;
        const char *dot = strrchr(name, '.');
        int length = dot && dot != name ? (int)(dot - name) : (int)strlen(name);
        written = snprintf(g->output, sizeof g->output, "runs/sweep-%.*s", length, name);
    }
    if (written < 0 || (size_t)written >= sizeof g->output)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: `output` is longer than %zu bytes", g->path,
                          sizeof g->output - 1);
    while (written > 1 && g->output[written - 1] == '/') g->output[--written] = '\0';
    return FEDKD_OK;
}

/* Hash of the grid lists and of the merged base config without run.dir: a
 * restart must see the same points with the same settings. */
static fedkd_status compute_fingerprint(fedkd_sweep_grid *g, const fedkd_config *base)
{
    cJSON *copy = cJSON_Duplicate(base->json, 1);
    if (!copy) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory hashing the grid");
    cJSON *run = cJSON_GetObjectItemCaseSensitive(copy, "run");
    if (cJSON_IsObject(run)) cJSON_DeleteItemFromObjectCaseSensitive(run, "dir");
    cJSON *normal = cJSON_CreateObject();
    cJSON *keys = cJSON_AddArrayToObject(normal, "keys");
    for (int k = 0; keys && k < g->num_keys; k++) {
        cJSON *entry = cJSON_CreateArray();
        cJSON_AddItemToArray(entry, cJSON_CreateString(g->keys[k]));
        cJSON_AddItemToArray(entry, cJSON_Duplicate(g->lists[k], 1));
        cJSON_AddItemToArray(keys, entry);
    }
    cJSON_AddItemToObject(normal, "base", copy);
    char *text = cJSON_PrintUnformatted(normal);
    cJSON_Delete(normal);
    if (!text) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory hashing the grid");
    snprintf(g->fingerprint, sizeof g->fingerprint, "%016llx",
             (unsigned long long)fedkd_checksum(text, strlen(text)));
    free(text);
    return FEDKD_OK;
}

/* A client rank that hosts no client would have nothing to do (and the
 * federation expects every client rank to host one), so a group must not
 * have more client ranks than a point has clients. */
static fedkd_status check_points_fill_groups(const fedkd_sweep_grid *g)
{
    if (g->group_size < 2) return FEDKD_OK;
    for (int point = 0; point < g->num_points; point++) {
        fedkd_config config;
        /* A combination that does not load becomes a failed row later. */
        if (fedkd_sweep_point_config(g, point, &config)) {
            fedkd_error_clear();
            continue;
        }
        int clients = config.clients.count;
        int centralized = strcmp(config.mode, "centralized") == 0;
        fedkd_config_free(&config);
        if (!centralized && clients < g->group_size - 1)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "%s: `group_size` %d leaves client ranks without clients: each "
                              "group has %d client rank(s) but point %d has clients.count = %d; "
                              "use a group_size of at most %d",
                              g->path, g->group_size, g->group_size - 1, point, clients,
                              clients + 1);
    }
    return FEDKD_OK;
}

fedkd_status fedkd_sweep_grid_load(fedkd_sweep_grid **out, const char *grid_path,
                                   const char *const *overrides, int num_overrides,
                                   int world_size)
{
    *out = NULL;
    if (!grid_path || world_size < 1 || num_overrides < 0 || (num_overrides && !overrides))
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "fedkd_sweep_grid_load: invalid arguments");
    fedkd_config base = {0};
    fedkd_sweep_grid *g = calloc(1, sizeof *g);
    if (!g) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading the grid");
    fedkd_status status = FEDKD_OK;
    if (snprintf(g->path, sizeof g->path, "%s", grid_path) >= (int)sizeof g->path) {
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG, "grid file name is too long: %s", grid_path);
        goto fail;
    }
    status = fedkd_read_json_file(grid_path, "grid file", &g->document);
    if (status) goto fail;
    if (!g->document) {
        status = FEDKD_FAIL(FEDKD_ERR_IO, "cannot open grid file `%s`: %s", grid_path,
                            strerror(ENOENT));
        goto fail;
    }
    if (!cJSON_IsObject(g->document)) {
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: expected a JSON object with `base`, "
                            "`group_size`, `grid` and `output`", grid_path);
        goto fail;
    }
    for (const cJSON *item = g->document->child; item; item = item->next) {
        int known = 0;
        for (int i = 0; grid_file_keys[i]; i++) known |= strcmp(item->string, grid_file_keys[i]) == 0;
        if (!known) {
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "%s: unknown key `%s`; a grid file has `base`, `group_size`, "
                                "`grid`, `output` and `description`", grid_path, item->string);
            goto fail;
        }
    }

    status = load_base(g, cJSON_GetObjectItemCaseSensitive(g->document, "base"));
    if (status) goto fail;
    status = load_config(g, 0, NULL, 0, &base);
    fedkd_config_free(&base);
    if (status) {
        char message[1024];
        snprintf(message, sizeof message, "%s", without_set_origin(fedkd_error_message()));
        status = FEDKD_FAIL(status, "%s: base config: %s", grid_path, message);
        goto fail;
    }
    g->user_overrides = calloc((size_t)(num_overrides > 0 ? num_overrides : 1),
                               sizeof *g->user_overrides);
    if (!g->user_overrides) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading the grid");
        goto fail;
    }
    for (int i = 0; i < num_overrides; i++) {
        g->user_overrides[i] = strdup(overrides[i]);
        if (!g->user_overrides[i]) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading the grid");
            goto fail;
        }
        g->num_user_overrides++;
    }
    /* The user's --set errors are worded as the loader words them. */
    status = load_config(g, 1, NULL, 0, &base);
    if (status) goto fail;

    status = read_group_size(g, cJSON_GetObjectItemCaseSensitive(g->document, "group_size"),
                             world_size);
    if (!status) status = read_grid(g, cJSON_GetObjectItemCaseSensitive(g->document, "grid"));
    if (!status) status = read_output(g, cJSON_GetObjectItemCaseSensitive(g->document, "output"));
    if (!status) status = compute_fingerprint(g, &base);
    if (!status) status = check_points_fill_groups(g);
    if (status) goto fail;
    fedkd_config_free(&base);
    *out = g;
    return FEDKD_OK;
fail:
    fedkd_config_free(&base);
    fedkd_sweep_grid_destroy(&g);
    return status;
}

void fedkd_sweep_grid_destroy(fedkd_sweep_grid **grid)
{
    if (!grid || !*grid) return;
    fedkd_sweep_grid *g = *grid;
    cJSON_Delete(g->document);
    free_strings(g->base_overrides, g->num_base_overrides);
    free_strings(g->user_overrides, g->num_user_overrides);
    free(g->keys);
    free(g->lists);
    free(g->counts);
    free(g);
    *grid = NULL;
}

int fedkd_sweep_grid_num_points(const fedkd_sweep_grid *grid) { return grid->num_points; }
int fedkd_sweep_grid_num_keys(const fedkd_sweep_grid *grid) { return grid->num_keys; }
int fedkd_sweep_grid_group_size(const fedkd_sweep_grid *grid) { return grid->group_size; }
const char *fedkd_sweep_grid_output(const fedkd_sweep_grid *grid) { return grid->output; }
const char *fedkd_sweep_grid_fingerprint(const fedkd_sweep_grid *grid)
{
    return grid->fingerprint;
}

const char *fedkd_sweep_grid_key(const fedkd_sweep_grid *grid, int key_index)
{
    return key_index >= 0 && key_index < grid->num_keys ? grid->keys[key_index] : NULL;
}

const cJSON *fedkd_sweep_point_value(const fedkd_sweep_grid *grid, int point, int key_index)
{
    if (point < 0 || point >= grid->num_points || key_index < 0 || key_index >= grid->num_keys)
        return NULL;
    /* Mixed radix, last key fastest. */
    int stride = 1;
    for (int k = grid->num_keys - 1; k > key_index; k--) stride *= grid->counts[k];
    return cJSON_GetArrayItem(grid->lists[key_index], (point / stride) % grid->counts[key_index]);
}

void sweep_point_dir(const fedkd_sweep_grid *grid, int point, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/point-%04d", grid->output, point);
}

fedkd_status fedkd_sweep_point_config(const fedkd_sweep_grid *grid, int point,
                                      fedkd_config *config)
{
    memset(config, 0, sizeof *config);
    if (point < 0 || point >= grid->num_points)
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "sweep point %d is outside 0..%d", point,
                          grid->num_points - 1);
    int num_extra = grid->num_keys + 1;
    char **extra = calloc((size_t)num_extra, sizeof *extra);
    if (!extra) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory building point %d", point);
    fedkd_status status = FEDKD_OK;
    for (int k = 0; k < grid->num_keys && !status; k++) {
        extra[k] = fedkd_config_override_text(grid->keys[k], fedkd_sweep_point_value(grid, point, k));
        if (!extra[k]) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory building point %d", point);
    }
    if (!status) {
        char dir[512];
        sweep_point_dir(grid, point, dir, sizeof dir);
        cJSON *value = cJSON_CreateString(dir);
        extra[grid->num_keys] = value ? fedkd_config_override_text("run.dir", value) : NULL;
        cJSON_Delete(value);
        if (!extra[grid->num_keys])
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory building point %d", point);
    }
    if (!status) status = load_config(grid, 1, extra, num_extra, config);
    free_strings(extra, num_extra);
    return status;
}
