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
 *   check_sweep kd RESULTS.json RESULTS.csv
 *       a sweep of kd-study points: every row completed, and for each method
 *       of its point's kd_summary.json the columns kd.<method>.<figure> of
 *       both tables hold that file's figures (and no other method has any)
 * Exits 0 when the check holds, 1 (with the reason on stderr) when not. */
#include <math.h>
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

/* ---- kd-study columns --------------------------------------------------- */

enum { CSV_MAX_CELLS = 256, CSV_MAX_LINE = 16384 };

/* Splits one CSV line in place (RFC 4180 quotes; no newline inside cells,
 * which the tables of this test never have). Returns the cell count. */
static int split_csv(char *line, char **cells, int max_cells)
{
    int count = 0;
    char *read = line, *write = line;
    line[strcspn(line, "\r\n")] = '\0';
    while (count < max_cells) {
        cells[count++] = write;
        int quoted = *read == '"';
        if (quoted) read++;
        for (;;) {
            if (quoted && read[0] == '"' && read[1] == '"') {
                *write++ = '"';
                read += 2;
            } else if (quoted && read[0] == '"') {
                quoted = 0;
                read++;
            } else if (!*read || (!quoted && *read == ',')) {
                break;
            } else {
                *write++ = *read++;
            }
        }
        int more = *read == ',';
        *write++ = '\0';
        if (!more) break;
        read++;
    }
    return count;
}

typedef struct csv_table {
    char header_line[CSV_MAX_LINE];
    char *header[CSV_MAX_CELLS];
    int num_columns;
    char (*lines)[CSV_MAX_LINE];
    int num_lines;
} csv_table;

static int read_csv(const char *path, csv_table *t)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "check_sweep: cannot open %s\n", path);
        return 1;
    }
    int ok = fgets(t->header_line, sizeof t->header_line, f) != NULL;
    if (ok) t->num_columns = split_csv(t->header_line, t->header, CSV_MAX_CELLS);
    char line[CSV_MAX_LINE];
    while (ok && fgets(line, sizeof line, f)) {
        char(*grown)[CSV_MAX_LINE] = realloc(t->lines, (size_t)(t->num_lines + 1) * sizeof *grown);
        if (!grown) {
            ok = 0;
            break;
        }
        t->lines = grown;
        memcpy(t->lines[t->num_lines++], line, sizeof line);
    }
    fclose(f);
    if (!ok) fprintf(stderr, "check_sweep: cannot read %s\n", path);
    return !ok;
}

static int csv_column(const csv_table *t, const char *name)
{
    for (int c = 0; c < t->num_columns; c++)
        if (strcmp(t->header[c], name) == 0) return c;
    return -1;
}

/* The CSV cells of the row of `point` (cells point into a copy in `line`). */
static int csv_row(const csv_table *t, int point, char *line, char **cells)
{
    for (int r = 0; r < t->num_lines; r++) {
        memcpy(line, t->lines[r], CSV_MAX_LINE);
        int n = split_csv(line, cells, CSV_MAX_CELLS);
        if (n == t->num_columns && atoi(cells[0]) == point) return 0;
    }
    return 1;
}

/* A figure of kd_summary.json against the same figure in both tables: a
 * number equal to the last bit, or null and an empty cell. */
static int same_figure(const cJSON *expected, const cJSON *json_cell, const char *csv_cell,
                       int point, const char *column)
{
    int expected_null = !expected || cJSON_IsNull(expected);
    int json_ok, csv_ok;
    if (expected_null) {
        json_ok = json_cell && cJSON_IsNull(json_cell);
        csv_ok = csv_cell && !csv_cell[0];
    } else {
        char *end = NULL;
        double csv_value = 0.0;
        if (csv_cell && csv_cell[0]) csv_value = strtod(csv_cell, &end);
        json_ok = cJSON_IsNumber(json_cell) && json_cell->valuedouble == expected->valuedouble;
        csv_ok = end && !*end && csv_value == expected->valuedouble;
    }
    if (json_ok && csv_ok) return 0;
    char *want = expected ? cJSON_PrintUnformatted(expected) : NULL;
    char *have = json_cell ? cJSON_PrintUnformatted(json_cell) : NULL;
    fprintf(stderr, "check_sweep: point %d `%s`: kd_summary.json has %s, results.json %s, "
                    "results.csv \"%s\"\n", point, column, want ? want : "(missing)",
            have ? have : "(missing)", csv_cell ? csv_cell : "(no column)");
    free(want);
    free(have);
    return 1;
}

static int kd_columns(const cJSON *table, const char *csv_path)
{
    static const char *const figures[] = {"runs", "temperature", "weight", "before_mean",
                                          "after_mean", "gain_mean", "gain_std", NULL};
    csv_table *csv = calloc(1, sizeof *csv);
    char *line = malloc(CSV_MAX_LINE);
    char **cells = calloc(CSV_MAX_CELLS, sizeof *cells);
    if (!csv || !line || !cells || read_csv(csv_path, csv)) {
        if (csv) free(csv->lines);
        free(csv);
        free(line);
        free(cells);
        return 1;
    }
    int failures = 0, compared = 0, rows_seen = 0;
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(table, "rows");
    for (const cJSON *row = rows ? rows->child : NULL; row; row = row->next) {
        rows_seen++;
        int point = cJSON_GetObjectItemCaseSensitive(row, "point")->valueint;
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(row, "status");
        const cJSON *dir = cJSON_GetObjectItemCaseSensitive(row, "run_dir");
        if (!cJSON_IsString(state) || strcmp(state->valuestring, "completed") != 0 ||
            !cJSON_IsString(dir)) {
            fprintf(stderr, "check_sweep: point %d did not complete\n", point);
            failures++;
            continue;
        }
        if (csv_row(csv, point, line, cells)) {
            fprintf(stderr, "check_sweep: point %d has no full row in %s\n", point, csv_path);
            failures++;
            continue;
        }
        char path[1200];
        snprintf(path, sizeof path, "%s/kd_summary.json", dir->valuestring);
        cJSON *summary = read_json(path);
        const cJSON *methods = cJSON_GetObjectItemCaseSensitive(summary, "methods");
        if (!cJSON_IsArray(methods)) {
            fprintf(stderr, "check_sweep: %s has no `methods`\n", path);
            failures++;
        }
        int reported = 0;
        for (const cJSON *m = cJSON_IsArray(methods) ? methods->child : NULL; m; m = m->next) {
            const char *name = cJSON_GetObjectItemCaseSensitive(m, "method")->valuestring;
            const cJSON *runs = cJSON_GetObjectItemCaseSensitive(m, "runs");
            if (!cJSON_IsNumber(runs) || runs->valueint == 0) continue;
            reported++;
            for (int i = 0; figures[i]; i++) {
                char column[256];
                snprintf(column, sizeof column, "kd.%s.%s", name, figures[i]);
                int c = csv_column(csv, column);
                failures += same_figure(cJSON_GetObjectItemCaseSensitive(m, figures[i]),
                                        cJSON_GetObjectItemCaseSensitive(row, column),
                                        c >= 0 ? cells[c] : NULL, point, column);
                compared++;
            }
            /* The share of runs behind the reported (T, weight). */
            const cJSON *choices = cJSON_GetObjectItemCaseSensitive(m, "choices");
            const cJSON *first = cJSON_GetArrayItem(choices, 0);
            const cJSON *count = cJSON_GetObjectItemCaseSensitive(first, "runs");
            char column[256];
            snprintf(column, sizeof column, "kd.%s.choice_share", name);
            const cJSON *share = cJSON_GetObjectItemCaseSensitive(row, column);
            if (!cJSON_IsNumber(count) || !cJSON_IsNumber(share) ||
                fabs(share->valuedouble - count->valuedouble / runs->valuedouble) > 1e-12) {
                fprintf(stderr, "check_sweep: point %d `%s` is not the share of the first "
                                "choice in %s\n", point, column, path);
                failures++;
            }
        }
        /* Columns of a method that this point did not run stay empty. */
        const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(table, "metrics");
        for (const cJSON *metric = metrics ? metrics->child : NULL; metric; metric = metric->next) {
            const cJSON *cell = cJSON_GetObjectItemCaseSensitive(row, metric->valuestring);
            if (strncmp(metric->valuestring, "kd.", 3) != 0 || !cell || cJSON_IsNull(cell)) continue;
            char name[128];
            snprintf(name, sizeof name, "%s", metric->valuestring + 3);
            name[strcspn(name, ".")] = '\0';
            int known = 0;
            for (const cJSON *m = cJSON_IsArray(methods) ? methods->child : NULL; m; m = m->next) {
                const cJSON *runs = cJSON_GetObjectItemCaseSensitive(m, "runs");
                known |= strcmp(cJSON_GetObjectItemCaseSensitive(m, "method")->valuestring,
                                name) == 0 && cJSON_IsNumber(runs) && runs->valueint > 0;
            }
            if (!known) {
                fprintf(stderr, "check_sweep: point %d has `%s` but ran no %s\n", point,
                        metric->valuestring, name);
                failures++;
            }
        }
        if (reported == 0) {
            fprintf(stderr, "check_sweep: point %d: no method with runs in %s\n", point, path);
            failures++;
        }
        cJSON_Delete(summary);
    }
    if (rows_seen == 0 || compared == 0) {
        fprintf(stderr, "check_sweep: nothing compared (%d rows)\n", rows_seen);
        failures++;
    }
    free(csv->lines);
    free(csv);
    free(line);
    free(cells);
    return failures != 0;
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
    } else if (argc == 4 && strcmp(argv[1], "kd") == 0) {
        cJSON *table = read_json(argv[2]);
        result = table ? kd_columns(table, argv[3]) : 1;
        cJSON_Delete(table);
    } else {
        fprintf(stderr, "usage: check_sweep same A B | run RESULTS POINT DIR | count RESULTS C F | "
                        "kd RESULTS.json RESULTS.csv\n");
    }
    return result;
}
