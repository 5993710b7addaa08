/* Checks of a kd-start run's files, for kd_start_test.sh:
 *
 *   kd_start_check run RUN_DIR
 *       kd_start.json holds the three starts in order with sane fields,
 *       each consistent with its federation's rounds.csv and summary.json
 *       (rounds run, rounds and bytes to target, final and best accuracy,
 *       final checksum), the consolidation bytes are the clients' weights
 *       and logits, kd_start.csv says the same, and summary.json reports
 *       the KD start as the run's outcome plus per-start fields.
 *   kd_start_check same A.json B.json
 *       the two documents are equal except for members named *_seconds,
 *       *wire*, `reused` and `config` (timings, what depends on the number
 *       of processes, how the run was reached, and run.dir).
 *
 * Exits 0 when everything holds, 1 saying what does not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static int failures = 0;

#define EXPECT(cond, ...)                                            \
    do {                                                             \
        if (!(cond)) {                                               \
            failures++;                                              \
            fprintf(stderr, "kd_start_check: ");                     \
            fprintf(stderr, __VA_ARGS__);                            \
            fputc('\n', stderr);                                     \
        }                                                            \
    } while (0)

static char *read_text(const char *path)
{
    FILE *file = fopen(path, "rb");
    if (!file) return NULL;
    char *text = NULL;
    long length = -1;
    if (fseek(file, 0, SEEK_END) == 0) length = ftell(file);
    if (length >= 0 && fseek(file, 0, SEEK_SET) == 0 && (text = malloc((size_t)length + 1))) {
        size_t got = fread(text, 1, (size_t)length, file);
        text[got] = '\0';
    }
    fclose(file);
    return text;
}

static cJSON *read_json(const char *path)
{
    char *text = read_text(path);
    cJSON *json = text ? cJSON_Parse(text) : NULL;
    free(text);
    EXPECT(json != NULL, "%s: missing or not JSON", path);
    return json;
}

static double number(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsNumber(item) ? item->valuedouble : (double)NAN;
}

static const char *string(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsString(item) ? item->valuestring : "";
}

/* 0 for null (not reached), NaN when absent or of another type. */
static double count_or_null(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    if (cJSON_IsNull(item)) return 0.0;
    return cJSON_IsNumber(item) ? item->valuedouble : (double)NAN;
}

/* ---- same -------------------------------------------------------------------- */

static int ignored(const char *name)
{
    return name && (strstr(name, "_seconds") || strstr(name, "wire") ||
                    strcmp(name, "reused") == 0 || strcmp(name, "config") == 0);
}

static void compare(const cJSON *a, const cJSON *b, const char *where)
{
    char path[512];
    if (cJSON_IsObject(a) && cJSON_IsObject(b)) {
        for (const cJSON *x = a->child; x; x = x->next) {
            if (ignored(x->string)) continue;
            snprintf(path, sizeof path, "%s.%s", where, x->string);
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            EXPECT(y != NULL, "%s: only in the first document", path);
            if (y) compare(x, y, path);
        }
        for (const cJSON *y = b->child; y; y = y->next)
            EXPECT(ignored(y->string) || cJSON_GetObjectItemCaseSensitive(a, y->string),
                   "%s.%s: only in the second document", where, y->string);
        return;
    }
    if (cJSON_IsArray(a) && cJSON_IsArray(b)) {
        EXPECT(cJSON_GetArraySize(a) == cJSON_GetArraySize(b), "%s: arrays of different sizes",
               where);
        int i = 0;
        for (const cJSON *x = a->child, *y = b->child; x && y; x = x->next, y = y->next, i++) {
            snprintf(path, sizeof path, "%s[%d]", where, i);
            compare(x, y, path);
        }
        return;
    }
    /* Exact: cJSON_Compare would accept numbers within an epsilon. */
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) {
        EXPECT(a->valuedouble == b->valuedouble, "%s: %.17g vs %.17g", where, a->valuedouble,
               b->valuedouble);
        return;
    }
    EXPECT(cJSON_Compare(a, b, 1), "%s differs", where);
}

/* ---- run ----------------------------------------------------------------------- */

typedef struct rounds_table {
    int rows;
    double final_accuracy, best_accuracy;
    int rounds_to_target;          /* 0: not reached */
    double bytes_to_target;
} rounds_table;

/* rounds.csv, columns found by their header names. */
static int read_rounds(const char *path, double target, rounds_table *t)
{
    memset(t, 0, sizeof *t);
    FILE *file = fopen(path, "r");
    EXPECT(file != NULL, "%s: missing", path);
    if (!file) return 1;
    char line[4096];
    int accuracy_column = -1, down_column = -1, up_column = -1;
    if (fgets(line, sizeof line, file)) {
        int column = 0;
        for (char *field = strtok(line, ",\n"); field; field = strtok(NULL, ",\n"), column++) {
            if (strcmp(field, "test_accuracy") == 0) accuracy_column = column;
            if (strcmp(field, "bytes_down") == 0) down_column = column;
            if (strcmp(field, "bytes_up") == 0) up_column = column;
        }
    }
    EXPECT(accuracy_column >= 0 && down_column >= 0 && up_column >= 0, "%s: header", path);
    double bytes = 0.0;
    t->best_accuracy = -1.0;
    while (fgets(line, sizeof line, file)) {
        double accuracy = NAN, down = NAN, up = NAN;
        int column = 0;
        for (char *field = strtok(line, ",\n"); field; field = strtok(NULL, ",\n"), column++) {
            if (column == accuracy_column) accuracy = strtod(field, NULL);
            if (column == down_column) down = strtod(field, NULL);
            if (column == up_column) up = strtod(field, NULL);
        }
        t->rows++;
        bytes += down + up;
        t->final_accuracy = accuracy;
        if (accuracy > t->best_accuracy) t->best_accuracy = accuracy;
        if (!t->rounds_to_target && accuracy >= target) {
            t->rounds_to_target = t->rows;
            t->bytes_to_target = bytes;
        }
    }
    fclose(file);
    return 0;
}

static const char *const names[3] = {"random", "average", "kd"};
static const char *const dirs[3] = {"fedavg-random", "fedavg-average", "fedavg-kd"};
static const char *const models[3] = {"", "start-average.h5", "start-kd.h5"};

static void check_start(const char *run_dir, const cJSON *report, const cJSON *start, int s)
{
    char path[1024];
    double target = number(report, "target_accuracy");
    double clients = number(report, "clients"), classes = number(report, "classes");
    double public_size = number(report, "public_size"), params = number(report, "num_params");
    EXPECT(strcmp(string(start, "start"), names[s]) == 0, "start %d is `%s`, expected `%s`", s,
           string(start, "start"), names[s]);
    EXPECT(strcmp(string(start, "run_dir"), dirs[s]) == 0, "%s: run_dir `%s`", names[s],
           string(start, "run_dir"));
    EXPECT(strcmp(string(start, "init_model"), models[s]) == 0, "%s: init_model `%s`", names[s],
           string(start, "init_model"));
    if (models[s][0]) {
        snprintf(path, sizeof path, "%s/%s", run_dir, models[s]);
        FILE *file = fopen(path, "rb");
        EXPECT(file != NULL, "%s: the start model file is missing", path);
        if (file) fclose(file);
    }
    double round0 = number(start, "round0_accuracy");
    EXPECT(round0 >= 0.0 && round0 <= 1.0, "%s: round0_accuracy %g", names[s], round0);
    double consolidation = number(start, "consolidation_bytes");
    double want = s == 0   ? 0.0
                  : s == 1 ? clients * params * 4.0
                           : clients * public_size * classes * 4.0;
    EXPECT(consolidation == want, "%s: consolidation_bytes %.0f, expected %.0f", names[s],
           consolidation, want);

    rounds_table t;
    snprintf(path, sizeof path, "%s/%s/rounds.csv", run_dir, dirs[s]);
    if (read_rounds(path, target, &t)) return;
    EXPECT(number(start, "rounds_run") == t.rows && t.rows == number(report, "rounds"),
           "%s: rounds_run %g, rounds.csv has %d rows, rounds %g", names[s],
           number(start, "rounds_run"), t.rows, number(report, "rounds"));
    EXPECT(count_or_null(start, "rounds_to_target") == t.rounds_to_target,
           "%s: rounds_to_target %g, rounds.csv says %d", names[s],
           count_or_null(start, "rounds_to_target"), t.rounds_to_target);
    EXPECT(count_or_null(start, "fedavg_bytes_to_target") == t.bytes_to_target,
           "%s: fedavg_bytes_to_target %g, rounds.csv says %.0f", names[s],
           count_or_null(start, "fedavg_bytes_to_target"), t.bytes_to_target);
    /* One exchange builds each consolidated start (weights or logits up);
     * the seeded start needs none. */
    double exchanges = number(start, "consolidation_rounds");
    EXPECT(exchanges == (s == 0 ? 0.0 : 1.0), "%s: consolidation_rounds %g, expected %d",
           names[s], exchanges, s == 0 ? 0 : 1);
    EXPECT(count_or_null(start, "total_rounds") ==
               (t.rounds_to_target ? exchanges + t.rounds_to_target : 0.0),
           "%s: total_rounds %g, expected %g + rounds to target %d", names[s],
           count_or_null(start, "total_rounds"), exchanges, t.rounds_to_target);
    double total = t.rounds_to_target ? t.bytes_to_target + consolidation : 0.0;
    EXPECT(count_or_null(start, "bytes_to_target") == total,
           "%s: bytes_to_target %g, expected %.0f", names[s],
           count_or_null(start, "bytes_to_target"), total);
    EXPECT(number(start, "final_accuracy") == t.final_accuracy, "%s: final_accuracy %.17g vs %.17g",
           names[s], number(start, "final_accuracy"), t.final_accuracy);
    EXPECT(number(start, "best_accuracy") == t.best_accuracy, "%s: best_accuracy %.17g vs %.17g",
           names[s], number(start, "best_accuracy"), t.best_accuracy);

    snprintf(path, sizeof path, "%s/%s/summary.json", run_dir, dirs[s]);
    cJSON *summary = read_json(path);
    if (summary) {
        EXPECT(strcmp(string(summary, "status"), "completed") == 0, "%s: status `%s`", path,
               string(summary, "status"));
        EXPECT(strcmp(string(summary, "params_checksum"), string(start, "params_checksum")) == 0,
               "%s: params_checksum %s, kd_start.json says %s", path,
               string(summary, "params_checksum"), string(start, "params_checksum"));
        const cJSON *config = cJSON_GetObjectItemCaseSensitive(summary, "config");
        const cJSON *init = cJSON_GetObjectItemCaseSensitive(config, "init");
        const char *init_model = string(init, "model");
        size_t n = strlen(init_model), m = strlen(models[s]);
        EXPECT(n >= m && strcmp(init_model + n - m, models[s]) == 0 && (m > 0 || n == 0),
               "%s: init.model `%s`", path, init_model);
        cJSON_Delete(summary);
    }
}

/* The row of kd_start.csv for start s agrees with the JSON. */
static void check_csv(const char *run_dir, const cJSON *starts)
{
    char path[1024], line[4096];
    snprintf(path, sizeof path, "%s/kd_start.csv", run_dir);
    FILE *file = fopen(path, "r");
    EXPECT(file != NULL, "%s: missing", path);
    if (!file) return;
    int rows = 0;
    EXPECT(fgets(line, sizeof line, file) && strncmp(line, "start,run_dir,", 14) == 0,
           "%s: header", path);
    while (fgets(line, sizeof line, file) && rows < 3) {
        const cJSON *start = cJSON_GetArrayItem(starts, rows);
        char expected[256];
        double rounds = count_or_null(start, "rounds_to_target");
        snprintf(expected, sizeof expected, "%s,%s,%s,", names[rows], dirs[rows], models[rows]);
        EXPECT(strncmp(line, expected, strlen(expected)) == 0, "%s row %d: `%.40s`", path, rows,
               line);
        /* Field 6 is rounds_to_target (empty when not reached). */
        char *field = line;
        for (int i = 0; i < 5 && field; i++) {
            field = strchr(field, ',');
            if (field) field++;
        }
        if (field) {
            double value = *field == ',' ? 0.0 : strtod(field, NULL);
            EXPECT(value == rounds, "%s row %d: rounds_to_target %g, JSON says %g", path, rows,
                   value, rounds);
        }
        rows++;
    }
    EXPECT(rows == 3, "%s: %d rows, expected 3", path, rows);
    fclose(file);
}

static int check_run(const char *run_dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/kd_start.json", run_dir);
    cJSON *report = read_json(path);
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    cJSON *summary = read_json(path);
    if (!report || !summary) goto done;
    const cJSON *starts = cJSON_GetObjectItemCaseSensitive(report, "starts");
    EXPECT(cJSON_GetArraySize(starts) == 3, "kd_start.json: %d starts, expected 3",
           cJSON_GetArraySize(starts));
    if (cJSON_GetArraySize(starts) != 3) goto done;
    for (int s = 0; s < 3; s++) check_start(run_dir, report, cJSON_GetArrayItem(starts, s), s);
    check_csv(run_dir, starts);

    const cJSON *random = cJSON_GetArrayItem(starts, 0), *kd = cJSON_GetArrayItem(starts, 2);
    for (int s = 1; s < 3; s++) {
        const cJSON *start = cJSON_GetArrayItem(starts, s);
        double r0 = count_or_null(random, "rounds_to_target");
        double r = count_or_null(start, "rounds_to_target");
        double want = r0 > 0 && r > 0 ? 100.0 * (r0 - r) / r0 : (double)NAN;
        double got = number(start, "reduction_rounds_percent");
        EXPECT(isnan(want) ? isnan(got) : fabs(got - want) < 1e-9,
               "%s: reduction_rounds_percent %g, expected %g", names[s], got, want);
        double t0 = count_or_null(random, "total_rounds"), t = count_or_null(start, "total_rounds");
        want = t0 > 0 && t > 0 ? 100.0 * (t0 - t) / t0 : (double)NAN;
        got = number(start, "reduction_total_rounds_percent");
        EXPECT(isnan(want) ? isnan(got) : fabs(got - want) < 1e-9,
               "%s: reduction_total_rounds_percent %g, expected %g", names[s], got, want);
    }
    /* The run's outcome is the KD start's; logits count in its bytes. */
    EXPECT(strcmp(string(summary, "status"), "completed") == 0, "summary.json: status `%s`",
           string(summary, "status"));
    EXPECT(strcmp(string(summary, "mode"), "kd-start") == 0, "summary.json: mode `%s`",
           string(summary, "mode"));
    EXPECT(number(summary, "final_accuracy") == number(kd, "final_accuracy"),
           "summary.json: final_accuracy is not the KD start's");
    EXPECT(number(summary, "best_accuracy") == number(kd, "best_accuracy"),
           "summary.json: best_accuracy is not the KD start's");
    EXPECT(count_or_null(summary, "rounds_to_target") == count_or_null(kd, "rounds_to_target"),
           "summary.json: rounds_to_target is not the KD start's");
    EXPECT(count_or_null(summary, "bytes_to_target") == count_or_null(kd, "bytes_to_target"),
           "summary.json: bytes_to_target is not the KD start's (with its logits)");
    EXPECT(strcmp(string(summary, "params_checksum"), string(kd, "params_checksum")) == 0,
           "summary.json: params_checksum is not the KD start's");
    for (int s = 0; s < 3; s++) {
        char name[64];
        const cJSON *start = cJSON_GetArrayItem(starts, s);
        snprintf(name, sizeof name, "rounds_to_target_%s", names[s]);
        EXPECT(count_or_null(summary, name) == count_or_null(start, "rounds_to_target"),
               "summary.json: %s", name);
        snprintf(name, sizeof name, "bytes_to_target_%s", names[s]);
        EXPECT(count_or_null(summary, name) == count_or_null(start, "bytes_to_target"),
               "summary.json: %s", name);
        snprintf(name, sizeof name, "round0_accuracy_%s", names[s]);
        EXPECT(number(summary, name) == number(start, "round0_accuracy"), "summary.json: %s", name);
        snprintf(name, sizeof name, "total_rounds_%s", names[s]);
        EXPECT(count_or_null(summary, name) == count_or_null(start, "total_rounds"),
               "summary.json: %s", name);
    }
    EXPECT(cJSON_HasObjectItem(summary, "reduction_rounds_kd_percent") &&
               cJSON_HasObjectItem(summary, "reduction_rounds_average_percent"),
           "summary.json: the reductions are missing");
done:
    cJSON_Delete(report);
    cJSON_Delete(summary);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "run") == 0) return check_run(argv[2]);
    if (argc == 4 && strcmp(argv[1], "same") == 0) {
        cJSON *a = read_json(argv[2]), *b = read_json(argv[3]);
        if (a && b) compare(a, b, "");
        cJSON_Delete(a);
        cJSON_Delete(b);
        return failures ? 1 : 0;
    }
    fprintf(stderr, "usage: kd_start_check run RUN_DIR | same A.json B.json\n");
    return 2;
}
