/* Checks a sweep's results (a test tool, not part of the simulator).
 *
 *   check_sweep same A/results.json B/results.json
 *       the same rows: points, statuses, grid values and every metric, bit
 *       for bit, but those that depend on the machine or on the number of
 *       processes of a group (the *_seconds timings, wire_bytes*)
 *   check_sweep run RESULTS.json POINT RUN_DIR
 *       point POINT completed and each of its metrics equals the same field
 *       of RUN_DIR/summary.json (a run of that point on its own)
 *   check_sweep count RESULTS.json COMPLETED FAILED
 *       the table has exactly these many completed and failed rows
 * Exits 0 when the check holds, 1 (with the reason on stderr) when not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "check_sweep: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    cJSON *json = NULL;
    if (text && fread(text, 1, (size_t)n, f) == (size_t)n) {
        text[n] = '\0';
        json = cJSON_Parse(text);
    }
    free(text);
    fclose(f);
    if (!json) fprintf(stderr, "check_sweep: %s is not JSON\n", path);
    return json;
}

static int is_timing(const char *name)
{
    size_t n = strlen(name);
    return n >= 8 && strcmp(name + n - 8, "_seconds") == 0;
}

/* Bytes moved between ranks count the client ranks of the group. */
static int depends_on_layout(const char *name)
{
    return is_timing(name) || strncmp(name, "wire_bytes", 10) == 0;
}

static const cJSON *find_row(const cJSON *table, int point)
{
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(table, "rows");
    for (const cJSON *row = rows ? rows->child : NULL; row; row = row->next) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(row, "point");
        if (cJSON_IsNumber(p) && p->valueint == point) return row;
    }
    return NULL;
}

static int same_tables(const cJSON *a, const cJSON *b, const char *name_a, const char *name_b)
{
    const cJSON *rows_a = cJSON_GetObjectItemCaseSensitive(a, "rows");
    const cJSON *rows_b = cJSON_GetObjectItemCaseSensitive(b, "rows");
    if (cJSON_GetArraySize(rows_a) != cJSON_GetArraySize(rows_b) || !rows_a->child) {
        fprintf(stderr, "check_sweep: %s has %d rows, %s has %d\n", name_a,
                cJSON_GetArraySize(rows_a), name_b, cJSON_GetArraySize(rows_b));
        return 1;
    }
    int differences = 0;
    for (const cJSON *row = rows_a->child; row; row = row->next) {
        int point = cJSON_GetObjectItemCaseSensitive(row, "point")->valueint;
        const cJSON *other = find_row(b, point);
        if (!other) {
            fprintf(stderr, "check_sweep: point %d is missing from %s\n", point, name_b);
            return 1;
        }
        if (cJSON_GetArraySize(row) != cJSON_GetArraySize(other)) {
            fprintf(stderr, "check_sweep: point %d has different columns\n", point);
            differences++;
        }
        for (const cJSON *cell = row->child; cell; cell = cell->next) {
            if (depends_on_layout(cell->string) || strcmp(cell->string, "run_dir") == 0) continue;
            const cJSON *that = cJSON_GetObjectItemCaseSensitive(other, cell->string);
            /* Bit for bit: doubles compared as printed with 17 digits. */
            char *x = cJSON_PrintUnformatted(cell), *y = that ? cJSON_PrintUnformatted(that) : NULL;
            if (!y || strcmp(x, y) != 0 ||
                (cJSON_IsNumber(cell) && cJSON_IsNumber(that) && cell->valuedouble != that->valuedouble)) {
                fprintf(stderr, "check_sweep: point %d `%s`: %s in %s, %s in %s\n", point,
                        cell->string, x, name_a, y ? y : "(missing)", name_b);
                differences++;
            }
            free(x);
            free(y);
        }
    }
    return differences != 0;
}

static int matches_run(const cJSON *table, int point, const char *run_dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    cJSON *summary = read_json(path);
    if (!summary) return 1;
    const cJSON *row = find_row(table, point);
    int failures = 0, compared = 0;
    if (!row) {
        fprintf(stderr, "check_sweep: no row for point %d\n", point);
        failures++;
    } else {
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(row, "status");
        if (!cJSON_IsString(state) || strcmp(state->valuestring, "completed") != 0) {
            fprintf(stderr, "check_sweep: point %d did not complete\n", point);
            failures++;
        }
        const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(table, "metrics");
        for (const cJSON *name = metrics ? metrics->child : NULL; name; name = name->next) {
            if (is_timing(name->valuestring)) continue;
            const cJSON *mine = cJSON_GetObjectItemCaseSensitive(row, name->valuestring);
            const cJSON *theirs = cJSON_GetObjectItemCaseSensitive(summary, name->valuestring);
            if (!theirs) continue;
            compared++;
            if (!mine || !cJSON_Compare(mine, theirs, 1) ||
                (cJSON_IsNumber(mine) && mine->valuedouble != theirs->valuedouble)) {
                fprintf(stderr, "check_sweep: point %d `%s` differs from %s\n", point,
                        name->valuestring, path);
                failures++;
            }
        }
        if (!cJSON_GetObjectItemCaseSensitive(row, "params_checksum") ||
            !cJSON_GetObjectItemCaseSensitive(row, "final_accuracy") || compared < 5) {
            fprintf(stderr, "check_sweep: point %d: only %d metrics compared\n", point, compared);
            failures++;
        }
    }
    cJSON_Delete(summary);
    return failures != 0;
}

static int count_rows(const cJSON *table, int completed, int failed)
{
    int c = 0, f = 0;
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(table, "rows");
    for (const cJSON *row = rows ? rows->child : NULL; row; row = row->next) {
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(row, "status");
        if (cJSON_IsString(state) && strcmp(state->valuestring, "completed") == 0) c++;
        else f++;
    }
    if (c == completed && f == failed) return 0;
    fprintf(stderr, "check_sweep: %d completed and %d failed rows, expected %d and %d\n", c, f,
            completed, failed);
    return 1;
}

int main(int argc, char **argv)
{
    int result = 2;
    if (argc == 4 && strcmp(argv[1], "same") == 0) {
        cJSON *a = read_json(argv[2]), *b = read_json(argv[3]);
        result = a && b ? same_tables(a, b, argv[2], argv[3]) : 1;
        cJSON_Delete(a);
        cJSON_Delete(b);
    } else if (argc == 5 && (strcmp(argv[1], "run") == 0 || strcmp(argv[1], "count") == 0)) {
        cJSON *table = read_json(argv[2]);
        if (!table) result = 1;
        else if (argv[1][0] == 'r') result = matches_run(table, atoi(argv[3]), argv[4]);
        else result = count_rows(table, atoi(argv[3]), atoi(argv[4]));
        cJSON_Delete(table);
    } else {
        fprintf(stderr, "usage: check_sweep same A B | run RESULTS POINT DIR | count RESULTS C F\n");
    }
    return result;
}
