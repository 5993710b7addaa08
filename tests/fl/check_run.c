/* Checks a run directory's logs (a test tool, not part of the simulator).
 *
 *   check_run same DIR_A DIR_B    the deterministic fields of rounds.jsonl and
 *                                 the final parameters' checksum are identical
 *   check_run logs DIR ROUNDS     rounds.jsonl and rounds.csv parse, have ROUNDS
 *                                 rows, bytes = 4 * num_params * participants in
 *                                 each direction, and summary.json totals match
 *   check_run bytes DIR FIRST_DOWN DOWN UP
 *                                 every round moved DOWN bytes (FIRST_DOWN in
 *                                 round 1) to and UP bytes from each participant,
 *                                 and summary.json totals match (soft-label
 *                                 payloads)
 *   check_run round-bytes DIR DOWN UP[,UP...]
 *                                 every round's bytes_down is DOWN and its
 *                                 bytes_up one of the UP values (totals of the
 *                                 round's participants), and summary.json
 *                                 totals match (FedDF over mixed models)
 *   check_run models DIR N        every row has model_accuracy and model_loss
 *                                 of N global models, and test_accuracy and
 *                                 test_loss are their means, bit for bit
 *   check_run idle-changed DIR UP_0,UP_1,...
 *                                 one participant a round, whose architecture
 *                                 g its bytes_up (UP_g) tells: some round's
 *                                 model_accuracy changed, from the round
 *                                 before, for an architecture without a
 *                                 participant (FedDF distils it too)
 * Exits 0 when the check holds, 1 (with the reason on stderr) when it does not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static char *read_file(const char *dir, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "check_run: cannot open %s\n", path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (text && fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    if (text) text[n] = '\0';
    fclose(f);
    return text;
}

/* rounds.jsonl as an array of objects; NULL on a parse error. */
static cJSON *read_rounds(const char *dir)
{
    char *text = read_file(dir, "rounds.jsonl");
    if (!text) return NULL;
    cJSON *rows = cJSON_CreateArray();
    int line = 0;
    for (char *save = NULL, *p = strtok_r(text, "\n", &save); p; p = strtok_r(NULL, "\n", &save)) {
        line++;
        cJSON *row = cJSON_Parse(p);
        if (!cJSON_IsObject(row)) {
            fprintf(stderr, "check_run: %s/rounds.jsonl:%d: not a JSON object\n", dir, line);
            cJSON_Delete(row);
            cJSON_Delete(rows);
            free(text);
            return NULL;
        }
        cJSON_AddItemToArray(rows, row);
    }
    free(text);
    return rows;
}

static cJSON *read_json(const char *dir, const char *name)
{
    char *text = read_file(dir, name);
    if (!text) return NULL;
    cJSON *json = cJSON_Parse(text);
    free(text);
    if (!json) fprintf(stderr, "check_run: %s/%s: not valid JSON\n", dir, name);
    return json;
}

static double number(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : -1.0;
}

static const char *deterministic_fields[] = {
    "round", "participants", "test_accuracy", "test_loss", "train_loss",
    "bytes_down", "bytes_up", "simulated_seconds", "dropped", NULL};

/* The per-model arrays of two rows: both absent, or equal bit for bit. */
static int same_arrays(const cJSON *x, const cJSON *y, int round)
{
    static const char *keys[] = {"model_accuracy", "model_loss"};
    int failures = 0;
    for (int k = 0; k < 2; k++) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(x, keys[k]);
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(y, keys[k]);
        int n = cJSON_GetArraySize(p), same = cJSON_IsArray(p) == cJSON_IsArray(q) &&
                                              n == cJSON_GetArraySize(q);
        for (int i = 0; same && i < n; i++) {
            double u = cJSON_GetArrayItem(p, i)->valuedouble;
            double v = cJSON_GetArrayItem(q, i)->valuedouble;
            same = memcmp(&u, &v, sizeof u) == 0;
        }
        if (!same) {
            fprintf(stderr, "check_run: round %d `%s` differs\n", round, keys[k]);
            failures++;
        }
    }
    return failures;
}

static int check_same(const char *a, const char *b)
{
    int failures = 0;
    cJSON *ra = read_rounds(a), *rb = read_rounds(b);
    cJSON *sa = read_json(a, "summary.json"), *sb = read_json(b, "summary.json");
    if (!ra || !rb || !sa || !sb) failures++;
    else if (cJSON_GetArraySize(ra) != cJSON_GetArraySize(rb) || cJSON_GetArraySize(ra) == 0) {
        fprintf(stderr, "check_run: %s has %d rounds, %s has %d\n", a, cJSON_GetArraySize(ra), b,
                cJSON_GetArraySize(rb));
        failures++;
    } else {
        for (int i = 0; i < cJSON_GetArraySize(ra); i++) {
            failures += same_arrays(cJSON_GetArrayItem(ra, i), cJSON_GetArrayItem(rb, i), i + 1);
            for (int k = 0; deterministic_fields[k]; k++) {
                double x = number(cJSON_GetArrayItem(ra, i), deterministic_fields[k]);
                double y = number(cJSON_GetArrayItem(rb, i), deterministic_fields[k]);
                if (memcmp(&x, &y, sizeof x) != 0) {
                    fprintf(stderr, "check_run: round %d `%s` differs: %.17g vs %.17g\n", i + 1,
                            deterministic_fields[k], x, y);
                    failures++;
                }
            }
        }
        const cJSON *ca = cJSON_GetObjectItemCaseSensitive(sa, "params_checksum");
        const cJSON *cb = cJSON_GetObjectItemCaseSensitive(sb, "params_checksum");
        if (!cJSON_IsString(ca) || !cJSON_IsString(cb) ||
            strcmp(ca->valuestring, cb->valuestring) != 0) {
            fprintf(stderr, "check_run: final parameters differ (checksums %s vs %s)\n",
                    cJSON_IsString(ca) ? ca->valuestring : "?",
                    cJSON_IsString(cb) ? cb->valuestring : "?");
            failures++;
        }
    }
    cJSON_Delete(ra);
    cJSON_Delete(rb);
    cJSON_Delete(sa);
    cJSON_Delete(sb);
    return failures;
}

/* summary.json's byte totals against the rounds' sums: 1 if they differ. */
static int check_totals(const cJSON *summary, double down, double up)
{
    if (number(summary, "bytes_down_total") == down && number(summary, "bytes_up_total") == up)
        return 0;
    fprintf(stderr, "check_run: summary totals %.0f / %.0f, rounds sum to %.0f / %.0f\n",
            number(summary, "bytes_down_total"), number(summary, "bytes_up_total"), down, up);
    return 1;
}

static int check_logs(const char *dir, int expected_rounds)
{
    int failures = 0;
    cJSON *rounds = read_rounds(dir);
    cJSON *summary = read_json(dir, "summary.json");
    char *csv = read_file(dir, "rounds.csv");
    cJSON *partition = read_json(dir, "partition.json");
    if (!rounds || !summary || !csv || !partition) {
        failures++;
        goto done;
    }
    int n = cJSON_GetArraySize(rounds);
    if (n != expected_rounds) {
        fprintf(stderr, "check_run: %s/rounds.jsonl has %d rows, expected %d\n", dir, n,
                expected_rounds);
        failures++;
    }
    int csv_lines = 0;
    for (char *p = csv; *p; p++) csv_lines += (*p == '\n');
    if (csv_lines != n + 1) {
        fprintf(stderr, "check_run: %s/rounds.csv has %d lines, expected header + %d\n", dir,
                csv_lines, n);
        failures++;
    }
    double num_params = number(summary, "num_params");
    double down = 0.0, up = 0.0;
    for (int i = 0; i < n; i++) {
        const cJSON *row = cJSON_GetArrayItem(rounds, i);
        double expected = 4.0 * num_params * number(row, "participants");
        if (number(row, "round") != i + 1 || number(row, "bytes_down") != expected ||
            number(row, "bytes_up") != expected) {
            fprintf(stderr, "check_run: round %d: bytes down %.0f, up %.0f, expected %.0f each\n",
                    i + 1, number(row, "bytes_down"), number(row, "bytes_up"), expected);
            failures++;
        }
        down += number(row, "bytes_down");
        up += number(row, "bytes_up");
    }
    failures += check_totals(summary, down, up);
done:
    cJSON_Delete(rounds);
    cJSON_Delete(summary);
    cJSON_Delete(partition);
    free(csv);
    return failures;
}

static int check_bytes(const char *dir, double first_down, double down_each, double up_each)
{
    int failures = 0;
    cJSON *rounds = read_rounds(dir);
    cJSON *summary = read_json(dir, "summary.json");
    if (!rounds || !summary || cJSON_GetArraySize(rounds) == 0) {
        fprintf(stderr, "check_run: %s has no rounds to check\n", dir);
        failures++;
        goto done;
    }
    double down = 0.0, up = 0.0;
    for (int i = 0; i < cJSON_GetArraySize(rounds); i++) {
        const cJSON *row = cJSON_GetArrayItem(rounds, i);
        double participants = number(row, "participants");
        double want_down = (number(row, "round") == 1 ? first_down : down_each) * participants;
        double want_up = up_each * participants;
        if (participants < 1 || number(row, "bytes_down") != want_down ||
            number(row, "bytes_up") != want_up) {
            fprintf(stderr, "check_run: %s round %d (%.0f participants): bytes down %.0f, up %.0f; "
                    "expected %.0f, %.0f\n", dir, i + 1, participants, number(row, "bytes_down"),
                    number(row, "bytes_up"), want_down, want_up);
            failures++;
        }
        down += number(row, "bytes_down");
        up += number(row, "bytes_up");
    }
    failures += check_totals(summary, down, up);
done:
    cJSON_Delete(rounds);
    cJSON_Delete(summary);
    return failures;
}

static int check_round_bytes(const char *dir, double down_each, const char *ups)
{
    int failures = 0;
    cJSON *rounds = read_rounds(dir);
    cJSON *summary = read_json(dir, "summary.json");
    if (!rounds || !summary || cJSON_GetArraySize(rounds) == 0) {
        fprintf(stderr, "check_run: %s has no rounds to check\n", dir);
        failures++;
        goto done;
    }
    double down = 0.0, up = 0.0;
    for (int i = 0; i < cJSON_GetArraySize(rounds); i++) {
        const cJSON *row = cJSON_GetArrayItem(rounds, i);
        double got = number(row, "bytes_up");
        int allowed = 0;
        for (const char *p = ups; *p && !allowed; p = strchr(p, ',') ? strchr(p, ',') + 1 : "")
            allowed = atof(p) == got;
        if (number(row, "bytes_down") != down_each || !allowed) {
            fprintf(stderr, "check_run: %s round %d: bytes down %.0f, up %.0f; expected %.0f, "
                    "one of %s\n", dir, i + 1, number(row, "bytes_down"), got, down_each, ups);
            failures++;
        }
        down += number(row, "bytes_down");
        up += got;
    }
    failures += check_totals(summary, down, up);
done:
    cJSON_Delete(rounds);
    cJSON_Delete(summary);
    return failures;
}

static int check_models(const char *dir, int models)
{
    int failures = 0;
    cJSON *rounds = read_rounds(dir);
    if (!rounds || cJSON_GetArraySize(rounds) == 0) {
        fprintf(stderr, "check_run: %s has no rounds to check\n", dir);
        cJSON_Delete(rounds);
        return 1;
    }
    static const char *keys[][2] = {{"model_accuracy", "test_accuracy"},
                                    {"model_loss", "test_loss"}};
    for (int i = 0; i < cJSON_GetArraySize(rounds); i++) {
        const cJSON *row = cJSON_GetArrayItem(rounds, i);
        for (int k = 0; k < 2; k++) {
            const cJSON *values = cJSON_GetObjectItemCaseSensitive(row, keys[k][0]);
            if (!cJSON_IsArray(values) || cJSON_GetArraySize(values) != models) {
                fprintf(stderr, "check_run: %s round %d: `%s` is not %d values\n", dir, i + 1,
                        keys[k][0], models);
                failures++;
                continue;
            }
            double sum = 0.0;
            for (int g = 0; g < models; g++) sum += cJSON_GetArrayItem(values, g)->valuedouble;
            double mean = sum / models, logged = number(row, keys[k][1]);
            if (memcmp(&mean, &logged, sizeof mean) != 0) {
                fprintf(stderr, "check_run: %s round %d: `%s` %.17g is not the mean %.17g of "
                        "`%s`\n", dir, i + 1, keys[k][1], logged, mean, keys[k][0]);
                failures++;
            }
        }
    }
    cJSON_Delete(rounds);
    return failures;
}

static int check_idle_changed(const char *dir, const char *ups)
{
    cJSON *rounds = read_rounds(dir);
    int rows = rounds ? cJSON_GetArraySize(rounds) : 0, changed = 0, idle = 0;
    for (int i = 1; i < rows; i++) {
        const cJSON *row = cJSON_GetArrayItem(rounds, i);
        const cJSON *now = cJSON_GetObjectItemCaseSensitive(row, "model_accuracy");
        const cJSON *before =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rounds, i - 1), "model_accuracy");
        int active = -1, g = 0;
        for (const char *p = ups; *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : "", g++)
            if (atof(p) == number(row, "bytes_up")) active = g;
        if (active < 0 || number(row, "participants") != 1 || !cJSON_IsArray(now) ||
            cJSON_GetArraySize(now) != cJSON_GetArraySize(before)) {
            fprintf(stderr, "check_run: %s round %d: not one participant of a known architecture "
                    "with per-model scores\n", dir, i + 1);
            cJSON_Delete(rounds);
            return 1;
        }
        for (g = 0; g < cJSON_GetArraySize(now); g++) {
            if (g == active) continue;
            idle++;
            changed += cJSON_GetArrayItem(now, g)->valuedouble !=
                       cJSON_GetArrayItem(before, g)->valuedouble;
        }
    }
    cJSON_Delete(rounds);
    if (changed > 0) return 0;
    fprintf(stderr, "check_run: %s: no architecture without a participant changed (%d idle, "
            "rounds 2 to %d)\n", dir, idle, rows);
    return 1;
}

int main(int argc, char **argv)
{
    int failures;
    if (argc == 4 && strcmp(argv[1], "same") == 0) failures = check_same(argv[2], argv[3]);
    else if (argc == 4 && strcmp(argv[1], "logs") == 0) failures = check_logs(argv[2], atoi(argv[3]));
    else if (argc == 6 && strcmp(argv[1], "bytes") == 0)
        failures = check_bytes(argv[2], atof(argv[3]), atof(argv[4]), atof(argv[5]));
    else if (argc == 5 && strcmp(argv[1], "round-bytes") == 0)
        failures = check_round_bytes(argv[2], atof(argv[3]), argv[4]);
    else if (argc == 4 && strcmp(argv[1], "models") == 0)
        failures = check_models(argv[2], atoi(argv[3]));
    else if (argc == 4 && strcmp(argv[1], "idle-changed") == 0)
        failures = check_idle_changed(argv[2], argv[3]);
    else {
        fprintf(stderr, "usage: check_run same DIR_A DIR_B | check_run logs DIR ROUNDS | "
                "check_run bytes DIR FIRST_DOWN DOWN UP | check_run round-bytes DIR DOWN "
                "UP[,UP...] | check_run models DIR N | check_run idle-changed DIR UP_0,UP_1,...\n");
        return 2;
    }
    return failures ? 1 : 0;
}
