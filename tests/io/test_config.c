/* Config loading: the built-in default, a file merged over it, --set
 * overrides, and the messages for malformed files, unknown keys, wrong types
 * and values out of range. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedkd/config/config.h"
#include "config/config_keys.h"
#include "../test_util.h"

static char temp_path[64];

/* Writes `text` to a fresh file under /tmp; its name is left in temp_path. */
static int write_temp(const char *text)
{
    snprintf(temp_path, sizeof temp_path, "/tmp/fedkd_test_config_XXXXXX");
    int fd = mkstemp(temp_path);
    if (fd < 0) return 0;
    size_t length = strlen(text);
    int ok = write(fd, text, length) == (ssize_t)length;
    return close(fd) == 0 && ok;
}

/* Loads `file_text` (if not NULL, through a temp file) and `sets`. */
static fedkd_status load(fedkd_config *config, const char *file_text, const char *const *sets,
                         int num_sets)
{
    if (!file_text) return fedkd_config_load(config, NULL, sets, num_sets);
    if (!write_temp(file_text)) {
        fprintf(stderr, "cannot write a temp file\n");
        return FEDKD_ERR_IO;
    }
    fedkd_status status = fedkd_config_load(config, temp_path, sets, num_sets);
    unlink(temp_path);
    return status;
}

static int message_has(const char *needle)
{
    return strstr(fedkd_error_message(), needle) != NULL;
}

/* Whether the message starts with the temp file's name, i.e. names the origin. */
static int message_names_temp_file(void)
{
    return strncmp(fedkd_error_message(), temp_path, strlen(temp_path)) == 0;
}

static void test_default(void)
{
    fedkd_config config;
    fedkd_status status = fedkd_config_load(&config, NULL, NULL, 0);
    CHECK(status == FEDKD_OK, "default load: %s", fedkd_error_message());
    CHECK(config.seed == 42, "seed %llu", (unsigned long long)config.seed);
    CHECK(strcmp(config.mode, "kd-start") == 0, "mode %s", config.mode);
    CHECK(strcmp(config.data.name, "fashion-mnist") == 0, "data.name %s", config.data.name);
    CHECK(strcmp(config.data.dir, "/usr/share/datasets/fashion-mnist") == 0, "data.dir %s",
          config.data.dir);
    CHECK(config.data.train_file[0] == '\0', "train_file %s", config.data.train_file);
    CHECK(config.data.synthetic_train == 2000, "synthetic_train %lld",
          (long long)config.data.synthetic_train);
    CHECK(config.data.synthetic_features == 20, "features %d", config.data.synthetic_features);
    CHECK_CLOSE(config.data.synthetic_separation, 1.5, 0.0, "synthetic_separation");
    CHECK(cJSON_IsString(config.model) && strcmp(config.model->valuestring, "mlp") == 0,
          "model is the string \"mlp\"");
    CHECK(config.clients.count == 15, "clients.count %d", config.clients.count);
    CHECK_CLOSE(config.clients.per_round, 1.0, 0.0, "per_round");
    CHECK(strcmp(config.partition.scheme, "dirichlet") == 0, "scheme %s", config.partition.scheme);
    CHECK_CLOSE(config.partition.alpha, 0.5, 0.0, "alpha");
    CHECK(config.partition.min_size == 10, "min_size %d", config.partition.min_size);
    CHECK(strcmp(config.algorithm, "fedavg") == 0, "algorithm %s", config.algorithm);
    CHECK(config.rounds == 20, "rounds %d", config.rounds);
    CHECK_CLOSE(config.target_accuracy, 0.80, 0.0, "target_accuracy");
    CHECK(config.local.epochs == 1 && config.local.batch_size == 64, "local epochs/batch");
    CHECK_CLOSE(config.local.lr, 0.05, 0.0, "local.lr");
    CHECK(strcmp(config.local.optimizer, "sgd") == 0, "optimizer %s", config.local.optimizer);
    CHECK_CLOSE(config.local.momentum, 0.9, 0.0, "momentum");
    CHECK(config.local.nesterov == 0, "nesterov %d", config.local.nesterov);
    CHECK_CLOSE(config.server.lr, 1.0, 0.0, "server.lr");
    CHECK_CLOSE(config.fedprox.mu, 0.01, 0.0, "fedprox.mu");
    CHECK(strcmp(config.kd.method, "vanilla") == 0, "kd.method %s", config.kd.method);
    CHECK_CLOSE(config.kd.temperature, 1.0, 0.0, "kd.temperature");
    CHECK_CLOSE(config.kd.weight, 0.5, 0.0, "kd.weight");
    CHECK(config.public_set.size == 5000, "public.size %lld", (long long)config.public_set.size);
    CHECK(strcmp(config.public_set.source, "train-holdout") == 0, "public.source %s",
          config.public_set.source);
    CHECK(config.pretrain.epochs == 2, "pretrain.epochs %d", config.pretrain.epochs);
    CHECK(config.eval_batch_size == 1000, "eval.batch_size %d", config.eval_batch_size);
    CHECK(strcmp(config.run.dir, "runs/default") == 0, "run.dir %s", config.run.dir);
    CHECK(config.checkpoint.every == 5 && config.checkpoint.keep == 2, "checkpoint");
    CHECK(config.json != NULL, "merged document kept");

    /* The compact text is the same document. */
    char *text = fedkd_config_to_string(&config);
    CHECK(text != NULL, "to_string");
    cJSON *round_trip = text ? cJSON_Parse(text) : NULL;
    CHECK(round_trip && cJSON_Compare(round_trip, config.json, 1), "to_string round trip");
    cJSON_Delete(round_trip);
    free(text);

    /* The built-in default, plus the keys whose default only the table
     * holds (config_key.fallback) where default.json lacks them. */
    cJSON *embedded = cJSON_Parse(fedkd_config_default_text());
    int fallbacks_added = 0;
    for (int i = 0; embedded && i < fedkd_config_num_keys(); i++) {
        const config_key *key = fedkd_config_key_at(i);
        if (!key->fallback || fedkd_config_lookup(embedded, key->path)) continue;
        const cJSON *value = fedkd_config_lookup(config.json, key->path);
        cJSON *expected = cJSON_Parse(key->fallback);
        CHECK(value && expected && cJSON_Compare(value, expected, 1),
              "key `%s` takes the table's default %s", key->path, key->fallback);
        cJSON_Delete(expected);
        fallbacks_added++;
    }
    cJSON *merged = cJSON_Duplicate(config.json, 1);
    for (int i = 0; merged && embedded && i < fedkd_config_num_keys(); i++) {
        const config_key *key = fedkd_config_key_at(i);
        if (!key->fallback || fedkd_config_lookup(embedded, key->path)) continue;
        /* Drop it from the copy; sections left empty go too, at any depth
         * (network.speed.value empties network.speed, then maybe network). */
        char path[128];
        snprintf(path, sizeof path, "%s", key->path);
        for (;;) {
            char *dot = strrchr(path, '.');
            cJSON *parent = merged;
            if (dot) {
                *dot = '\0';
                parent = fedkd_config_lookup(merged, path);
            }
            cJSON_DeleteItemFromObjectCaseSensitive(parent, dot ? dot + 1 : path);
            if (!dot || !parent || parent->child) break;
        }
    }
    CHECK(embedded && merged && cJSON_Compare(embedded, merged, 1),
          "with no file and no --set the document is the built-in default (plus %d table "
          "defaults)", fallbacks_added);
    cJSON_Delete(merged);
    cJSON_Delete(embedded);

    fedkd_config_free(&config);
    CHECK(config.json == NULL && config.model == NULL, "free clears the struct");
    fedkd_config_free(&config); /* a second free is harmless */
}

static void test_file_merge(void)
{
    fedkd_config config;
    const char *text = "{\n"
                       "  \"seed\": 7,\n"
                       "  \"mode\": \"federated\",\n"
                       "  \"local\": {\"lr\": 0.1, \"optimizer\": \"adam\"},\n"
                       "  \"model\": [{\"type\": \"dense\", \"units\": 10}],\n"
                       "  \"public\": {\"size\": 123},\n"
                       "  \"eval\": {\"batch_size\": 3.0}\n"
                       "}\n";
    fedkd_status status = load(&config, text, NULL, 0);
    CHECK(status == FEDKD_OK, "file load: %s", fedkd_error_message());
    if (status != FEDKD_OK) return;
    CHECK(config.seed == 7, "seed from file");
    CHECK(strcmp(config.mode, "federated") == 0, "mode from file");
    CHECK_CLOSE(config.local.lr, 0.1, 0.0, "local.lr from file");
    CHECK(strcmp(config.local.optimizer, "adam") == 0, "optimizer from file");
    /* Deep merge: siblings the file did not name keep their defaults. */
    CHECK(config.local.batch_size == 64, "local.batch_size kept %d", config.local.batch_size);
    CHECK_CLOSE(config.local.momentum, 0.9, 0.0, "local.momentum kept");
    CHECK(strcmp(config.public_set.source, "train-holdout") == 0, "public.source kept");
    CHECK(config.public_set.size == 123, "public.size from file");
    CHECK(config.eval_batch_size == 3, "3.0 accepted as the integer 3");
    CHECK(config.rounds == 20, "rounds kept");
    CHECK(cJSON_IsArray(config.model) && cJSON_GetArraySize(config.model) == 1,
          "model replaced whole by the file's layer list");
    const cJSON *layer = cJSON_GetArrayItem(config.model, 0);
    const cJSON *units = cJSON_GetObjectItemCaseSensitive(layer, "units");
    CHECK(cJSON_IsNumber(units) && units->valuedouble == 10.0, "layer list content kept");
    fedkd_config_free(&config);

    /* --set wins over the file. */
    const char *sets[] = {"rounds=9"};
    status = load(&config, "{\"rounds\": 5, \"clients\": {\"count\": 4}}", sets, 1);
    CHECK(status == FEDKD_OK, "file + set: %s", fedkd_error_message());
    CHECK(config.rounds == 9, "--set overrides the file: %d", config.rounds);
    CHECK(config.clients.count == 4, "file value kept: %d", config.clients.count);
    fedkd_config_free(&config);
}

static void test_overrides(void)
{
    fedkd_config config;
    const char *sets[] = {
        "local.lr=0.2",          "local.nesterov=true",     "algorithm=fedprox",
        "run.dir=runs/a b=c",    "data.name=\"synthetic\"", "kd={\"temperature\": 3}",
        "model=cnn",             "clients.per_round=0.25",  "data.train_limit=1000",
        "seed=123456789",        "partition.sigma=0",
    };
    int n = (int)(sizeof sets / sizeof sets[0]);
    fedkd_status status = fedkd_config_load(&config, NULL, sets, n);
    CHECK(status == FEDKD_OK, "overrides: %s", fedkd_error_message());
    if (status != FEDKD_OK) return;
    CHECK_CLOSE(config.local.lr, 0.2, 0.0, "number override");
    CHECK(config.local.nesterov == 1, "bool override");
    CHECK(strcmp(config.algorithm, "fedprox") == 0, "bare word is a string");
    CHECK(strcmp(config.run.dir, "runs/a b=c") == 0, "value keeps later '=': %s", config.run.dir);
    CHECK(strcmp(config.data.name, "synthetic") == 0, "quoted string override");
    CHECK_CLOSE(config.kd.temperature, 3.0, 0.0, "section override merges");
    CHECK_CLOSE(config.kd.weight, 0.5, 0.0, "section override keeps siblings");
    CHECK(cJSON_IsString(config.model) && strcmp(config.model->valuestring, "cnn") == 0,
          "model override");
    CHECK_CLOSE(config.clients.per_round, 0.25, 0.0, "fraction per round");
    CHECK(config.data.train_limit == 1000, "nested int64 override");
    CHECK(config.seed == 123456789u, "seed override");
    CHECK_CLOSE(config.partition.sigma, 0.0, 0.0, "sigma may be 0");
    fedkd_config_free(&config);

    const char *count[] = {"clients.per_round=3", "rounds=3.0"};
    status = fedkd_config_load(&config, NULL, count, 2);
    CHECK(status == FEDKD_OK, "whole count per round: %s", fedkd_error_message());
    CHECK_CLOSE(config.clients.per_round, 3.0, 0.0, "count per round");
    CHECK(config.rounds == 3, "rounds=3.0 is 3");
    fedkd_config_free(&config);

    const char *layers[] = {"model=[{\"type\": \"flatten\"}, {\"type\": \"dense\", \"units\": 10}]"};
    status = fedkd_config_load(&config, NULL, layers, 1);
    CHECK(status == FEDKD_OK, "layer list override: %s", fedkd_error_message());
    CHECK(cJSON_GetArraySize(config.model) == 2, "layer list has 2 layers");
    fedkd_config_free(&config);
}

static void test_malformed(void)
{
    fedkd_config config;
    /* Line 3 lacks the colon: the parser stops at the value `2`, column 12. */
    fedkd_status status = load(&config, "{\n  \"seed\": 1,\n  \"rounds\" 2\n}\n", NULL, 0);
    char expected[160];
    snprintf(expected, sizeof expected, "%s:3:", temp_path);
    CHECK(status == FEDKD_ERR_FORMAT, "malformed status %d", (int)status);
    CHECK(message_has(expected), "line 3 named: %s", fedkd_error_message());
    snprintf(expected, sizeof expected, "%s:3:12: malformed JSON near `2`", temp_path);
    CHECK(message_has(expected), "line and column of the `2`: %s", fedkd_error_message());
    CHECK(config.json == NULL, "nothing kept after failure");

    /* A trailing comma: the parser wants a key where `}` stands (line 5, column 1). */
    status = load(&config, "{\n  \"a\": {\n    \"b\": 1\n  },\n}\n", NULL, 0);
    snprintf(expected, sizeof expected, "%s:5:1:", temp_path);
    CHECK(status == FEDKD_ERR_FORMAT && message_has(expected), "trailing comma: %s",
          fedkd_error_message());

    /* An unquoted key, and a key after a comma: the column names the culprit. */
    status = load(&config, "{\n  seed: 1\n}", NULL, 0);
    snprintf(expected, sizeof expected, "%s:2:3: malformed JSON near `seed: 1`", temp_path);
    CHECK(status == FEDKD_ERR_FORMAT && message_has(expected), "unquoted key: %s",
          fedkd_error_message());
    status = load(&config, "{\"seed\": 1, , \"rounds\": 2}", NULL, 0);
    snprintf(expected, sizeof expected, "%s:1:13:", temp_path);
    CHECK(status == FEDKD_ERR_FORMAT && message_has(expected), "double comma: %s",
          fedkd_error_message());
    /* Values are not keys: the number's column is where cJSON stops. */
    status = load(&config, "{\"seed\": [1, 2x]}", NULL, 0);
    snprintf(expected, sizeof expected, "%s:1:15: malformed JSON near `x]}`", temp_path);
    CHECK(status == FEDKD_ERR_FORMAT && message_has(expected), "bad value: %s",
          fedkd_error_message());

    status = load(&config, "{\"seed\": 1}\n}", NULL, 0);
    snprintf(expected, sizeof expected, "%s:2:1:", temp_path);
    CHECK(status == FEDKD_ERR_FORMAT && message_has(expected), "trailing garbage: %s",
          fedkd_error_message());

    status = load(&config, "", NULL, 0);
    CHECK(status == FEDKD_ERR_FORMAT && message_has(":1:1:"), "empty file: %s",
          fedkd_error_message());

    status = load(&config, "[1, 2]", NULL, 0);
    CHECK(status == FEDKD_ERR_FORMAT && message_names_temp_file() && message_has("object"),
          "top level must be an object: %s", fedkd_error_message());
}

static void test_unknown_keys(void)
{
    fedkd_config config;
    fedkd_status status = load(&config, "{\"local\": {\"lrr\": 0.1}}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG, "unknown key in file status %d", (int)status);
    CHECK(message_names_temp_file(), "file named: %s", fedkd_error_message());
    CHECK(message_has("unknown config key `local.lrr`; did you mean `local.lr`?"),
          "file suggestion: %s", fedkd_error_message());

    const char *typo[] = {"local.lrr=0.1"};
    status = fedkd_config_load(&config, NULL, typo, 1);
    CHECK(status == FEDKD_ERR_CONFIG, "unknown --set key status %d", (int)status);
    CHECK(message_has("--set") && message_has("did you mean `local.lr`"),
          "--set suggestion: %s", fedkd_error_message());

    const char *misplaced[] = {"temperature=2"};
    status = fedkd_config_load(&config, NULL, misplaced, 1);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("did you mean `kd.temperature`"),
          "leaf name without its section: %s", fedkd_error_message());

    status = load(&config, "{\"locl\": {\"lr\": 0.1}}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("`locl`; did you mean `local`?"),
          "misspelt section: %s", fedkd_error_message());

    const char *nonsense[] = {"zzzzzzzzzzzz=1"};
    status = fedkd_config_load(&config, NULL, nonsense, 1);
    CHECK(status == FEDKD_ERR_CONFIG && !message_has("did you mean"),
          "no suggestion when nothing is close: %s", fedkd_error_message());

    const char *no_equals[] = {"local.lr"};
    status = fedkd_config_load(&config, NULL, no_equals, 1);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("key.path=value"), "missing '=': %s",
          fedkd_error_message());

    status = load(&config, "{\"local\": {\"lr\": {\"value\": 0.1}}}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("`local.lr`") && message_has("an object"),
          "object where a value belongs: %s", fedkd_error_message());

    status = load(&config, "{\"local\": 0.1}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("`local` is a section"),
          "value where an object belongs: %s", fedkd_error_message());

    status = load(&config, "{\"rounds\": 3, \"rounds\": 4}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("`rounds` appears twice"),
          "duplicate key: %s", fedkd_error_message());

    /* Keys are case-sensitive. */
    status = load(&config, "{\"Seed\": 3}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("did you mean `seed`"), "case: %s",
          fedkd_error_message());
}

struct rejected_case {
    const char *set;
    const char *needle; /* must appear in the message */
};

static void test_rejected_values(void)
{
    static const struct rejected_case cases[] = {
        {"kd.temperature=hot",
         "--set: config key `kd.temperature`: expected a number > 0, got \"hot\""},
        {"kd.temperature=-1", "config key `kd.temperature`: expected a number > 0, got -1"},
        {"kd.temperature=0", "config key `kd.temperature`: expected a number > 0, got 0"},
        {"kd.weight=1.5", "config key `kd.weight`: expected a number in [0, 1], got 1.5"},
        {"clients.per_round=0", "config key `clients.per_round`: expected a fraction in (0, 1] "
                                "or a whole number of clients, got 0"},
        {"clients.per_round=2.5", "expected a fraction in (0, 1] or a whole number of clients, "
                                  "got 2.5"},
        {"clients.per_round=-1", "config key `clients.per_round`"},
        {"clients.per_round=20", "more than clients.count (15)"},
        {"partition.alpha=-1", "config key `partition.alpha`: expected a number > 0, got -1"},
        {"rounds=0", "config key `rounds`: expected an integer >= 1, got 0"},
        {"rounds=3.5", "config key `rounds`: expected an integer >= 1, got 3.5"},
        {"rounds=1e12", "config key `rounds`"},
        {"rounds=1e999", "config key `rounds`"},
        {"local.momentum=1", "config key `local.momentum`: expected a number in [0, 1), got 1"},
        {"local.nesterov=1", "config key `local.nesterov`: expected true or false, got 1"},
        {"local.optimizer=adamw", "expected one of \"sgd\", \"adam\", got \"adamw\""},
        {"mode=federate", "config key `mode`"},
        {"partition.scheme=noniid", "config key `partition.scheme`"},
        {"data.name=mnist", "config key `data.name`"},
        {"data.synthetic_classes=1", "config key `data.synthetic_classes`"},
        {"seed=-1", "config key `seed`"},
        {"seed=1.5", "config key `seed`"},
        {"algorithm=", "config key `algorithm`: expected a non-empty string, got \"\""},
        {"run.dir=null", "config key `run.dir`"},
        {"run.compute_slots=-2", "config key `run.compute_slots`: expected an integer >= -1, got -2"},
        {"run.compute_slots=1.5", "config key `run.compute_slots`"},
        {"model=3", "config key `model`"},
        {"model=[]", "config key `model`"},
        {"checkpoint.keep=0", "config key `checkpoint.keep`"},
        {"target_accuracy=1.01", "config key `target_accuracy`"},
        {"local.lr=[0.1]", "config key `local.lr`: expected a number > 0, got an array"},
        {"local.lr={\"x\": 1}", "config key `local.lr`"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fedkd_config config;
        fedkd_status status = fedkd_config_load(&config, NULL, &cases[i].set, 1);
        CHECK(status == FEDKD_ERR_CONFIG, "`%s` rejected (status %d)", cases[i].set, (int)status);
        CHECK(message_has(cases[i].needle), "`%s`: message \"%s\" lacks \"%s\"", cases[i].set,
              fedkd_error_message(), cases[i].needle);
        CHECK(config.json == NULL && config.model == NULL, "`%s`: nothing kept", cases[i].set);
        if (status == FEDKD_OK) fedkd_config_free(&config);
    }

    /* A string longer than its field. */
    /* Letters, not digits: digits would parse as a JSON number. */
    char long_set[700];
    snprintf(long_set, sizeof long_set, "run.dir=");
    memset(long_set + 8, 'a', 600);
    long_set[608] = '\0';
    const char *sets[] = {long_set};
    fedkd_config config;
    fedkd_status status = fedkd_config_load(&config, NULL, sets, 1);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("`run.dir`: expected a string of at most 511"),
          "too long: %s", fedkd_error_message());
    char exactly_fits[600];
    snprintf(exactly_fits, sizeof exactly_fits, "run.dir=");
    memset(exactly_fits + 8, 'a', 511);
    exactly_fits[519] = '\0';
    sets[0] = exactly_fits;
    status = fedkd_config_load(&config, NULL, sets, 1);
    CHECK(status == FEDKD_OK && strlen(config.run.dir) == 511, "511 characters fit: %s",
          fedkd_error_message());
    fedkd_config_free(&config);

    /* Digits given to a string key on the command line are its text, not a
     * number; in a file, a number for a string key is still refused. */
    const char *digits[] = {"kd.students=3", "run.dir=2024"};
    status = fedkd_config_load(&config, NULL, digits, 2);
    CHECK(status == FEDKD_OK && strcmp(config.kd.students, "3") == 0 &&
              strcmp(config.run.dir, "2024") == 0,
          "digit-only strings from --set: %s", fedkd_error_message());
    if (status == FEDKD_OK) fedkd_config_free(&config);
    status = load(&config, "{\"kd\": {\"students\": 3}}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG && message_has("`kd.students`"),
          "a number for a string key in a file: %s", fedkd_error_message());
    if (status == FEDKD_OK) fedkd_config_free(&config);

    /* A bad value from a file names the file. */
    status = load(&config, "{\"kd\": {\"temperature\": 0}}", NULL, 0);
    CHECK(status == FEDKD_ERR_CONFIG && message_names_temp_file() &&
              message_has("config key `kd.temperature`: expected a number > 0, got 0"),
          "file value named by file: %s", fedkd_error_message());

    /* The file's bad value is fixed by --set, so it loads. */
    const char *fix[] = {"kd.temperature=2"};
    status = load(&config, "{\"kd\": {\"temperature\": 0}}", fix, 1);
    CHECK(status == FEDKD_OK && config.kd.temperature == 2.0, "--set fixes file value: %s",
          fedkd_error_message());
    fedkd_config_free(&config);
}

static void test_missing_file(void)
{
    fedkd_config config;
    const char *path = "/tmp/fedkd_no_such_dir/missing_config.json";
    fedkd_status status = fedkd_config_load(&config, path, NULL, 0);
    CHECK(status == FEDKD_ERR_IO, "missing file status %d", (int)status);
    CHECK(message_has(path) && message_has("No such file"), "missing file message: %s",
          fedkd_error_message());
    CHECK(config.json == NULL, "nothing kept");

    status = fedkd_config_load(&config, "/tmp", NULL, 0);
    CHECK(status == FEDKD_ERR_IO && message_has("`/tmp`"), "directory: %s",
          fedkd_error_message());
}

/* Values that are not objects, i.e. the keys a document sets. */
static int count_leaves(const cJSON *node)
{
    if (!cJSON_IsObject(node)) return 1;
    int count = 0;
    for (const cJSON *child = node->child; child; child = child->next)
        count += count_leaves(child);
    return count;
}

static void test_print_keys(void)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    CHECK(out != NULL, "open_memstream");
    if (!out) return;
    fedkd_config_print_keys(out);
    fclose(out);
    int lines = 0;
    for (const char *c = text; *c; c++) lines += *c == '\n';
    /* A header and one line per key: those of default.json and those whose
     * default only the table holds. */
    cJSON *defaults = cJSON_Parse(fedkd_config_default_text());
    int keys = count_leaves(defaults);
    for (int i = 0; i < fedkd_config_num_keys(); i++) {
        const config_key *key = fedkd_config_key_at(i);
        if (key->fallback && !fedkd_config_lookup(defaults, key->path)) keys++;
    }
    cJSON_Delete(defaults);
    CHECK(keys > 30 && keys == fedkd_config_num_keys() && lines == 1 + keys,
          "%d lines for %d keys (the table has %d)", lines, keys, fedkd_config_num_keys());
    CHECK(strstr(text, "kd.temperature") && strstr(text, "a number > 0"), "kd.temperature row");
    CHECK(strstr(text, "eval.batch_size") && strstr(text, "\"train-holdout\""),
          "eval.batch_size row and a string default");
    free(text);
}

int main(void)
{
    test_default();
    test_file_merge();
    test_overrides();
    test_malformed();
    test_unknown_keys();
    test_rejected_values();
    test_missing_file();
    test_print_keys();
    return test_finish("test_config");
}
