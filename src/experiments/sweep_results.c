/* A sweep's results on disk: one row.json per finished point (the record a
 * restart trusts), the tables results.csv and results.json rebuilt from
 * those rows, and sweep.json, which ties the output directory to its grid.
 *
 * Rows are files of their own rather than lines appended to a shared file:
 * leaders on several nodes finish points at once, and a rename is atomic on
 * any file system where an append from two hosts is not. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fedkd/core/core.h"
#include "fedkd/io/runlog.h"
#include "experiments/sweep_private.h"

/* summary.json fields that echo the config rather than report an outcome;
 * everything else a mode writes there becomes a metric column, so a mode
 * that records new outcomes (the KD study's gains) needs no change here. */
static const char *const summary_fields_not_metrics[] = {
    "fedkd_sim_version", "status", "config", "seed", "mode", "algorithm", "target_accuracy",
    NULL};
enum { METRIC_MAX_DEPTH = 3 };

/* ---- files -------------------------------------------------------------------- */

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* dir/name through a temporary name unique to this process (host and pid:
 * leaders may run on several nodes), so that two leaders rewriting the
 * tables at once never mix their bytes. */
static fedkd_status write_text_atomic(const char *dir, const char *name, const char *text)
{
    char path[640], temporary[800], host[64] = "host";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(temporary, sizeof temporary, "%s.tmp.%s.%ld", path, host, (long)getpid());
    FILE *file = fopen(temporary, "w");
    if (!file) return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot create: %s", temporary, strerror(errno));
    int failed = fputs(text, file) < 0;
    failed |= fflush(file) != 0;
    failed |= fclose(file) != 0;
    if (failed || rename(temporary, path) != 0) {
        int saved = errno;
        unlink(temporary);
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: write failed: %s", path, strerror(saved));
    }
    return FEDKD_OK;
}

/* ---- rows --------------------------------------------------------------------- */

static int is_fixed_column(const char *name)
{
    static const char *const fixed[] = {"point", "status", "run_dir", "message", NULL};
    for (int i = 0; fixed[i]; i++)
        if (strcmp(fixed[i], name) == 0) return 1;
    return 0;
}

static int is_grid_key(const fedkd_sweep_grid *grid, const char *name)
{
    for (int k = 0; k < grid->num_keys; k++)
        if (strcmp(grid->keys[k], name) == 0) return 1;
    return 0;
}

/* Nested objects become dotted names ("kd.vanilla.gain_mean"); a name that
 * would shadow a grid key or a fixed column is left out. */
static void add_metrics(const fedkd_sweep_grid *grid, cJSON *metrics, const cJSON *object,
                        const char *prefix, int depth)
{
    for (const cJSON *item = object->child; item; item = item->next) {
        if (depth == 0) {
            int skip = 0;
            for (int i = 0; summary_fields_not_metrics[i]; i++)
                skip |= strcmp(item->string, summary_fields_not_metrics[i]) == 0;
            if (skip) continue;
        }
        char name[256];
        int length = snprintf(name, sizeof name - 1, "%s%s", prefix, item->string);
        if (length < 0 || (size_t)length >= sizeof name - 1) continue;
        if (cJSON_IsObject(item) && depth + 1 < METRIC_MAX_DEPTH) {
            memcpy(name + length, ".", 2);
            add_metrics(grid, metrics, item, name, depth + 1);
        } else if (!is_fixed_column(name) && !is_grid_key(grid, name) &&
                   !cJSON_GetObjectItemCaseSensitive(metrics, name)) {
            cJSON_AddItemToObject(metrics, name, cJSON_Duplicate(item, 1));
        }
    }
}

cJSON *sweep_row_create(const fedkd_sweep_grid *grid, int point, const char *status,
                        const char *message, const cJSON *summary)
{
    char dir[512];
    sweep_point_dir(grid, point, dir, sizeof dir);
    cJSON *row = cJSON_CreateObject();
    if (!row) return NULL;
    cJSON_AddNumberToObject(row, "point", point);
    cJSON_AddStringToObject(row, "status", status);
    cJSON *values = cJSON_AddObjectToObject(row, "values");
    for (int k = 0; values && k < grid->num_keys; k++)
        cJSON_AddItemToObject(values, grid->keys[k],
                              cJSON_Duplicate(fedkd_sweep_point_value(grid, point, k), 1));
    cJSON *metrics = cJSON_AddObjectToObject(row, "metrics");
    if (metrics && summary) add_metrics(grid, metrics, summary, "", 0);
    cJSON_AddStringToObject(row, "run_dir", dir);
    cJSON_AddStringToObject(row, "message", message ? message : "");
    /* A failed allocation anywhere above leaves a member out. */
    if (cJSON_GetArraySize(row) != 6 || !values || cJSON_GetArraySize(values) != grid->num_keys) {
        cJSON_Delete(row);
        return NULL;
    }
    return row;
}

fedkd_status sweep_row_write(const fedkd_sweep_grid *grid, int point, const cJSON *row)
{
    char dir[512];
    sweep_point_dir(grid, point, dir, sizeof dir);
    fedkd_status status = fedkd_make_directories(dir);
    if (status) return status;
    return fedkd_write_json_file(dir, "row.json", row);
}

cJSON *sweep_read_summary(const fedkd_sweep_grid *grid, int point)
{
    char path[600];
    sweep_point_dir(grid, point, path, sizeof path - 16);
    strcat(path, "/summary.json");
    cJSON *summary = NULL;
    if (fedkd_read_json_file(path, "run summary", &summary)) fedkd_error_clear();
    if (summary && !cJSON_IsObject(summary)) {
        cJSON_Delete(summary);
        summary = NULL;
    }
    return summary;
}

/* The row of an earlier run, checked against this grid's point: a row
 * whose values differ means the directory holds another grid's results. */
static fedkd_status read_row(const fedkd_sweep_grid *grid, int point, cJSON **out)
{
    char path[600];
    sweep_point_dir(grid, point, path, sizeof path - 16);
    strcat(path, "/row.json");
    fedkd_status status = fedkd_read_json_file(path, "sweep row", out);
    if (status || !*out) return status;
    const cJSON *row = *out;
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(row, "point");
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(row, "values");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(row, "status");
    if (!cJSON_IsNumber(index) || index->valuedouble != (double)point || !cJSON_IsObject(values) ||
        !cJSON_IsString(state)) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: not the row of point %d (expected `point`, `status` and "
                            "`values`); remove it to run the point again", path, point);
        goto fail;
    }
    for (int k = 0; k < grid->num_keys; k++) {
        const cJSON *have = cJSON_GetObjectItemCaseSensitive(values, grid->keys[k]);
        const cJSON *want = fedkd_sweep_point_value(grid, point, k);
        if (!have || !cJSON_Compare(have, want, 1)) {
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "%s: its `%s` does not match point %d of %s: the output "
                                "directory %s holds results of a different grid; set another "
                                "`output` or remove it", path, grid->keys[k], point, grid->path,
                                grid->output);
            goto fail;
        }
    }
    return FEDKD_OK;
fail:
    cJSON_Delete(*out);
    *out = NULL;
    return status;
}

/* ---- tables ------------------------------------------------------------------- */

typedef struct text_buffer {
    char *data;
    size_t length, capacity;
    int failed;
} text_buffer;

static void append(text_buffer *b, const char *text, size_t n)
{
    if (b->failed) return;
    if (b->length + n + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 4096;
        while (b->length + n + 1 > capacity) capacity *= 2;
        char *grown = realloc(b->data, capacity);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, text, n);
    b->length += n;
    b->data[b->length] = '\0';
}

static void append_cell(text_buffer *b, const char *text)
{
    if (!strpbrk(text, ",\"\n\r")) {
        append(b, text, strlen(text));
        return;
    }
    append(b, "\"", 1);
    for (const char *p = text; *p; p++) {
        append(b, p, 1);
        if (*p == '"') append(b, "\"", 1); /* a quote inside a quoted cell is doubled */
    }
    append(b, "\"", 1);
}

/* Numbers in their shortest exact form (0.8125, not 0.81250000000000000). */
static void format_number(double v, char *out, size_t size)
{
    if (!isfinite(v)) {
        snprintf(out, size, "%s", isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"));
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(out, size, "%.0f", v);
    } else {
        snprintf(out, size, "%.15g", v);
        if (strtod(out, NULL) != v) snprintf(out, size, "%.17g", v);
    }
}

static void append_value(text_buffer *b, const cJSON *value)
{
    if (!value || cJSON_IsNull(value)) return;
    if (cJSON_IsString(value)) {
        append_cell(b, value->valuestring);
    } else if (cJSON_IsNumber(value)) {
        char number[40];
        format_number(value->valuedouble, number, sizeof number);
        append(b, number, strlen(number));
    } else if (cJSON_IsBool(value)) {
        append_cell(b, cJSON_IsTrue(value) ? "true" : "false");
    } else {
        char *json = cJSON_PrintUnformatted(value);
        if (json) append_cell(b, json);
        else b->failed = 1;
        free(json);
    }
}

static void append_header(text_buffer *b, const fedkd_sweep_grid *grid, const cJSON *metric_names)
{
    append(b, "point,status", 12);
    for (int k = 0; k < grid->num_keys; k++) {
        append(b, ",", 1);
        append_cell(b, grid->keys[k]);
    }
    for (const cJSON *name = metric_names ? metric_names->child : NULL; name; name = name->next) {
        append(b, ",", 1);
        append_cell(b, name->valuestring);
    }
    append(b, ",run_dir,message\n", 17);
}

/* The flat row of results.json, and its line of results.csv. */
static cJSON *flat_row(const fedkd_sweep_grid *grid, const cJSON *row, const cJSON *metric_names,
                       text_buffer *csv)
{
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(row, "values");
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(row, "metrics");
    const cJSON *fixed_head[2] = {cJSON_GetObjectItemCaseSensitive(row, "point"),
                                  cJSON_GetObjectItemCaseSensitive(row, "status")};
    const cJSON *fixed_tail[2] = {cJSON_GetObjectItemCaseSensitive(row, "run_dir"),
                                  cJSON_GetObjectItemCaseSensitive(row, "message")};
    cJSON *flat = cJSON_CreateObject();
    if (!flat) return NULL;
    cJSON_AddItemToObject(flat, "point", cJSON_Duplicate(fixed_head[0], 1));
    cJSON_AddItemToObject(flat, "status", cJSON_Duplicate(fixed_head[1], 1));
    append_value(csv, fixed_head[0]);
    append(csv, ",", 1);
    append_value(csv, fixed_head[1]);
    for (int k = 0; k < grid->num_keys; k++) {
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(values, grid->keys[k]);
        cJSON_AddItemToObject(flat, grid->keys[k],
                              value ? cJSON_Duplicate(value, 1) : cJSON_CreateNull());
        append(csv, ",", 1);
        append_value(csv, value);
    }
    for (const cJSON *name = metric_names->child; name; name = name->next) {
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(metrics, name->valuestring);
        cJSON_AddItemToObject(flat, name->valuestring,
                              value ? cJSON_Duplicate(value, 1) : cJSON_CreateNull());
        append(csv, ",", 1);
        append_value(csv, value);
    }
    cJSON_AddItemToObject(flat, "run_dir", cJSON_Duplicate(fixed_tail[0], 1));
    cJSON_AddItemToObject(flat, "message", cJSON_Duplicate(fixed_tail[1], 1));
    append(csv, ",", 1);
    append_value(csv, fixed_tail[0]);
    append(csv, ",", 1);
    append_value(csv, fixed_tail[1]);
    append(csv, "\n", 1);
    return flat;
}

/* Length of the dotted prefix the two names share ("kd.vanilla.gain_mean"
 * and "kd.tuned.runs" share "kd.", 3), whole components only. */
static size_t shared_prefix(const char *a, const char *b)
{
    size_t shared = 0;
    for (size_t i = 0; a[i] && a[i] == b[i]; i++)
        if (a[i] == '.') shared = i + 1;
    return shared;
}

/* Adds `name` to the column list unless it is there. A new name goes right
 * after the last column with which it shares the longest dotted prefix, so
 * that a method's figures stay together and after the other methods' when
 * one grid point is the first to run a method (kd.ensemble.* next to
 * kd.vanilla.*, not after wall_seconds); a name with no such kin goes last.
 * The list is rebuilt rather than inserted into: Debian 12's cJSON 1.7.15
 * refuses cJSON_InsertItemInArray. Returns 0 when out of memory. */
static int add_metric_name(cJSON **names, const char *name)
{
    size_t best = 0;
    int count = 0, insert_at = -1;
    for (const cJSON *have = (*names)->child; have; have = have->next, count++) {
        if (strcmp(have->valuestring, name) == 0) return 1;
        size_t shared = shared_prefix(have->valuestring, name);
        if (shared > 0 && shared >= best) {
            best = shared;
            insert_at = count + 1;
        }
    }
    if (insert_at < 0 || insert_at == count) {
        cJSON *item = cJSON_CreateString(name);
        if (item && cJSON_AddItemToArray(*names, item)) return 1;
        cJSON_Delete(item);
        return 0;
    }
    cJSON *rebuilt = cJSON_CreateArray();
    int index = 0, ok = rebuilt != NULL;
    for (const cJSON *have = (*names)->child; have && ok; have = have->next, index++) {
        if (index == insert_at) ok = cJSON_AddItemToArray(rebuilt, cJSON_CreateString(name));
        if (ok) ok = cJSON_AddItemToArray(rebuilt, cJSON_CreateString(have->valuestring));
    }
    if (!ok) {
        cJSON_Delete(rebuilt);
        return 0;
    }
    cJSON_Delete(*names);
    *names = rebuilt;
    return 1;
}

fedkd_status sweep_tables_write(const fedkd_sweep_grid *grid, int *completed, int *failed)
{
    fedkd_status status = FEDKD_OK;
    text_buffer csv = {0};
    char *json_text = NULL;
    cJSON *rows = cJSON_CreateArray(), *metric_names = cJSON_CreateArray();
    cJSON *table = cJSON_CreateObject();
    int num_completed = 0, num_failed = 0;
    if (!rows || !metric_names || !table) goto nomem;

    /* Metric columns: every name any row has, in order of first appearance,
     * but kept next to their kin (below). */
    for (int point = 0; point < grid->num_points; point++) {
        cJSON *row = NULL;
        status = read_row(grid, point, &row);
        if (status) goto fail;
        if (!row) continue;
        const char *state = cJSON_GetObjectItemCaseSensitive(row, "status")->valuestring;
        if (strcmp(state, "completed") == 0) num_completed++;
        else num_failed++;
        const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(row, "metrics");
        for (const cJSON *m = cJSON_IsObject(metrics) ? metrics->child : NULL; m; m = m->next) {
            if (!add_metric_name(&metric_names, m->string)) {
                cJSON_Delete(row);
                goto nomem;
            }
        }
        cJSON_AddItemToArray(rows, row);
    }

    cJSON_AddStringToObject(table, "grid", grid->path);
    cJSON_AddStringToObject(table, "fingerprint", grid->fingerprint);
    cJSON *keys = cJSON_AddArrayToObject(table, "keys");
    for (int k = 0; keys && k < grid->num_keys; k++)
        cJSON_AddItemToArray(keys, cJSON_CreateString(grid->keys[k]));
    cJSON_AddItemToObject(table, "metrics", cJSON_Duplicate(metric_names, 1));
    cJSON_AddNumberToObject(table, "points", grid->num_points);
    cJSON_AddNumberToObject(table, "completed", num_completed);
    cJSON_AddNumberToObject(table, "failed", num_failed);
    cJSON *flat_rows = cJSON_AddArrayToObject(table, "rows");
    if (!flat_rows) goto nomem;
    append_header(&csv, grid, metric_names);
    for (const cJSON *row = rows->child; row; row = row->next) {
        cJSON *flat = flat_row(grid, row, metric_names, &csv);
        if (!flat) goto nomem;
        cJSON_AddItemToArray(flat_rows, flat);
    }
    json_text = cJSON_Print(table);
    if (!json_text || csv.failed) goto nomem;
    size_t json_length = strlen(json_text);
    char *with_newline = realloc(json_text, json_length + 2);
    if (!with_newline) goto nomem;
    json_text = with_newline;
    memcpy(json_text + json_length, "\n", 2);
    status = write_text_atomic(grid->output, "results.csv", csv.data);
    if (!status) status = write_text_atomic(grid->output, "results.json", json_text);
    if (status) goto fail;
    if (completed) *completed = num_completed;
    if (failed) *failed = num_failed;
    goto fail;
nomem:
    status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing %s/results.csv", grid->output);
fail:
    cJSON_Delete(rows);
    cJSON_Delete(metric_names);
    cJSON_Delete(table);
    free(csv.data);
    free(json_text);
    return status;
}

/* ---- the output directory before a sweep --------------------------------------- */

static fedkd_status write_sweep_json(const fedkd_sweep_grid *grid)
{
    cJSON *record = cJSON_CreateObject();
    if (!record) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing sweep.json");
    cJSON_AddStringToObject(record, "fedkd_sim_version", FEDKD_VERSION);
    cJSON_AddStringToObject(record, "fingerprint", grid->fingerprint);
    cJSON_AddStringToObject(record, "grid_file", grid->path);
    cJSON_AddItemToObject(record, "grid",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(grid->document, "grid"), 1));
    cJSON_AddNumberToObject(record, "points", grid->num_points);
    fedkd_config base;
    fedkd_status status = fedkd_sweep_point_config(grid, 0, &base);
    if (!status) cJSON_AddItemToObject(record, "first_point_config", cJSON_Duplicate(base.json, 1));
    else fedkd_error_clear();
    fedkd_config_free(&base);
    status = fedkd_write_json_file(grid->output, "sweep.json", record);
    cJSON_Delete(record);
    return status;
}

/* sweep.json ties the directory to one grid. Without it, results already
 * there cannot be trusted to belong to this grid. */
static fedkd_status check_ownership(const fedkd_sweep_grid *grid, int *fresh)
{
    char path[640];
    snprintf(path, sizeof path, "%s/sweep.json", grid->output);
    cJSON *record = NULL;
    fedkd_status status = fedkd_read_json_file(path, "sweep record", &record);
    if (status) return status;
    *fresh = record == NULL;
    if (record) {
        const cJSON *fingerprint = cJSON_GetObjectItemCaseSensitive(record, "fingerprint");
        int same = cJSON_IsString(fingerprint) &&
                   strcmp(fingerprint->valuestring, grid->fingerprint) == 0;
        if (!same)
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "%s: the output directory holds a sweep of a different grid or "
                                "base config (fingerprint %s, this one %s); set another `output` "
                                "in %s or remove %s",
                                path, cJSON_IsString(fingerprint) ? fingerprint->valuestring : "?",
                                grid->fingerprint, grid->path, grid->output);
        cJSON_Delete(record);
        if (status) return status;
    }
    /* results.json names its grid too: a copied-in table is caught. */
    snprintf(path, sizeof path, "%s/results.json", grid->output);
    status = fedkd_read_json_file(path, "sweep results file", &record);
    if (status) return status;
    if (record) {
        const cJSON *fingerprint = cJSON_GetObjectItemCaseSensitive(record, "fingerprint");
        if (*fresh || !cJSON_IsString(fingerprint) ||
            strcmp(fingerprint->valuestring, grid->fingerprint) != 0)
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "%s: results of a different grid (or of unknown origin) are in "
                                "the output directory; set another `output` in %s or remove %s",
                                path, grid->path, grid->output);
        cJSON_Delete(record);
        if (status) return status;
    }
    snprintf(path, sizeof path, "%s/results.csv", grid->output);
    if (*fresh && file_exists(path))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s exists but %s/sweep.json does not, so the results cannot be "
                          "matched to %s; set another `output` or remove %s",
                          path, grid->output, grid->path, grid->output);
    return FEDKD_OK;
}

/* A point that finished but died before its row was written: its
 * summary.json says completed and carries exactly this point's config. */
static cJSON *row_from_finished_run(const fedkd_sweep_grid *grid, int point)
{
    cJSON *summary = sweep_read_summary(grid, point);
    if (!summary) return NULL;
    cJSON *row = NULL;
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(summary, "status");
    fedkd_config config;
    if (cJSON_IsString(state) && strcmp(state->valuestring, "completed") == 0 &&
        !fedkd_sweep_point_config(grid, point, &config)) {
        if (cJSON_Compare(cJSON_GetObjectItemCaseSensitive(summary, "config"), config.json, 1))
            row = sweep_row_create(grid, point, "completed", "", summary);
        fedkd_config_free(&config);
    }
    fedkd_error_clear();
    cJSON_Delete(summary);
    return row;
}

fedkd_status sweep_prepare_output(const fedkd_sweep_grid *grid, int *todo, int *num_todo)
{
    *num_todo = 0;
    int fresh = 1;
    fedkd_status status = fedkd_make_directories(grid->output);
    if (!status) status = check_ownership(grid, &fresh);
    if (status) return status;
    for (int point = 0; point < grid->num_points; point++) {
        cJSON *row = NULL;
        status = read_row(grid, point, &row);
        if (status) return status;
        if (row && fresh) {
            cJSON_Delete(row);
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "%s holds point rows but no sweep.json, so they cannot be matched "
                              "to %s; set another `output` or remove it", grid->output,
                              grid->path);
        }
        if (!row) {
            row = row_from_finished_run(grid, point);
            if (row) status = sweep_row_write(grid, point, row);
            if (status) {
                cJSON_Delete(row);
                return status;
            }
        }
        const cJSON *state = row ? cJSON_GetObjectItemCaseSensitive(row, "status") : NULL;
        /* Failed points are tried again: the cause may have been outside. */
        if (!state || strcmp(state->valuestring, "completed") != 0) todo[(*num_todo)++] = point;
        cJSON_Delete(row);
    }
    if (fresh) status = write_sweep_json(grid);
    if (!status) status = sweep_tables_write(grid, NULL, NULL);
    return status;
}
