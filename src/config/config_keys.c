/* The table of known config keys and everything that reads it: value
 * checks, filling fedkd_config, suggestions for misspelt keys, --help. */
#include "config/config_keys.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integers travel through JSON as doubles; beyond 2^53 they are no longer exact. */
#define CONFIG_EXACT_INTEGER_LIMIT 9007199254740992.0

#define AT(member)                                                            \
    .offset = offsetof(fedkd_config, member),                                 \
    .size = sizeof(((fedkd_config *)0)->member)

#define ABOVE(x) .flags = CONFIG_HAS_MIN | CONFIG_MIN_EXCLUSIVE, .min = (x)
#define AT_LEAST(x) .flags = CONFIG_HAS_MIN, .min = (x)
#define BETWEEN(a, b) .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX, .min = (a), .max = (b)

static const char *const modes[] = {"federated", "centralized", "pretrain", "kd-study",
                                    "kd-start", NULL};
static const char *const dataset_names[] = {"fashion-mnist", "synthetic", "hdf5", "cifar10",
                                            "cifar100", NULL};
static const char *const partition_schemes[] = {"iid", "dirichlet", "shards", "quantity",
                                                "feature-noise", NULL};
static const char *const optimizers[] = {"sgd", "adam", NULL};
static const char *const lr_schedules[] = {"constant", "step", "cosine", NULL};
static const char *const kd_pairings[] = {"all-ordered", "rest", "ring", NULL};
static const char *const kd_ensemble_rules[] = {"probs", "logits", NULL};
static const char *const kd_confidence_rules[] = {"supervised", "unsupervised", NULL};
static const char *const kd_places[] = {"local", "public", NULL};
static const char *const fedmd_digest_losses[] = {"mae", "kl", NULL};
static const char *const distributions[] = {"constant", "uniform", "lognormal", NULL};
static const char *const compressions[] = {"none", "float16", "int8", "topk", NULL};

/* One simulated device quantity (network.speed, ...): its distribution and
 * parameters; `positive` quantities (speed, bandwidth) must be > 0. */
#define DISTRIBUTION_KEYS(name, member, value_default, low_default, high_default, lowest)     \
    {.path = "network." name ".distribution", .type = CONFIG_STRING,                        \
     AT(network.member.distribution), .choices = distributions, .fallback = "\"constant\""}, \
    {.path = "network." name ".value", .type = CONFIG_DOUBLE, AT(network.member.value),       \
     lowest, .fallback = value_default},                                                     \
    {.path = "network." name ".low", .type = CONFIG_DOUBLE, AT(network.member.low), lowest,  \
     .fallback = low_default},                                                               \
    {.path = "network." name ".high", .type = CONFIG_DOUBLE, AT(network.member.high), lowest, \
     .fallback = high_default},                                                              \
    {.path = "network." name ".sigma", .type = CONFIG_DOUBLE, AT(network.member.sigma),      \
     AT_LEAST(0.0), .fallback = "0.5"}

static const config_key keys[] = {
    {.path = "seed", .type = CONFIG_SEED, AT(seed),
     BETWEEN(0.0, CONFIG_EXACT_INTEGER_LIMIT)},
    {.path = "mode", .type = CONFIG_STRING, AT(mode), .choices = modes},

    {.path = "data.name", .type = CONFIG_STRING, AT(data.name), .choices = dataset_names},
    {.path = "data.dir", .type = CONFIG_STRING, AT(data.dir)},
    {.path = "data.cache_dir", .type = CONFIG_STRING, AT(data.cache_dir)},
    {.path = "data.train_file", .type = CONFIG_STRING, AT(data.train_file)},
    {.path = "data.test_file", .type = CONFIG_STRING, AT(data.test_file)},
    {.path = "data.train_limit", .type = CONFIG_INT64, AT(data.train_limit), AT_LEAST(0.0)},
    {.path = "data.test_limit", .type = CONFIG_INT64, AT(data.test_limit), AT_LEAST(0.0)},
    {.path = "data.synthetic_train", .type = CONFIG_INT64, AT(data.synthetic_train),
     AT_LEAST(1.0)},
    {.path = "data.synthetic_test", .type = CONFIG_INT64, AT(data.synthetic_test),
     AT_LEAST(1.0)},
    {.path = "data.synthetic_features", .type = CONFIG_INT, AT(data.synthetic_features),
     AT_LEAST(1.0)},
    {.path = "data.synthetic_classes", .type = CONFIG_INT, AT(data.synthetic_classes),
     AT_LEAST(2.0)},
    {.path = "data.synthetic_separation", .type = CONFIG_DOUBLE,
     AT(data.synthetic_separation), ABOVE(0.0)},
    {.path = "data.augment", .type = CONFIG_BOOL, AT(data.augment), .fallback = "false"},
    {.path = "data.augment_padding", .type = CONFIG_INT, AT(data.augment_padding),
     AT_LEAST(0.0), .fallback = "4"},
    {.path = "data.augment_flip", .type = CONFIG_BOOL, AT(data.augment_flip),
     .fallback = "true"},

    {.path = "model", .type = CONFIG_MODEL, AT(model)},

    {.path = "clients.count", .type = CONFIG_INT, AT(clients.count), AT_LEAST(1.0)},
    {.path = "clients.per_round", .type = CONFIG_DOUBLE, AT(clients.per_round),
     .flags = CONFIG_FRACTION_OR_COUNT},
    /* Model names and layer lists are checked by the federation, which
     * knows the data's shape. */
    {.path = "clients.models", .type = CONFIG_MODEL_LIST, AT(clients.models),
     .fallback = "\"\""},

    {.path = "partition.scheme", .type = CONFIG_STRING, AT(partition.scheme),
     .choices = partition_schemes},
    {.path = "partition.alpha", .type = CONFIG_DOUBLE, AT(partition.alpha), ABOVE(0.0)},
    {.path = "partition.classes_per_client", .type = CONFIG_INT,
     AT(partition.classes_per_client), AT_LEAST(1.0)},
    {.path = "partition.sigma", .type = CONFIG_DOUBLE, AT(partition.sigma), AT_LEAST(0.0)},
    {.path = "partition.min_size", .type = CONFIG_INT, AT(partition.min_size), AT_LEAST(0.0)},

    /* Algorithm and KD method names are checked against their own tables by
     * the federation layer, which knows them. */
    {.path = "algorithm", .type = CONFIG_STRING, AT(algorithm), .flags = CONFIG_NON_EMPTY},
    {.path = "rounds", .type = CONFIG_INT, AT(rounds), AT_LEAST(1.0)},
    {.path = "target_accuracy", .type = CONFIG_DOUBLE, AT(target_accuracy),
     BETWEEN(0.0, 1.0)},

    {.path = "local.epochs", .type = CONFIG_INT, AT(local.epochs), AT_LEAST(1.0)},
    /* 0: local.epochs; else steps per round, and local.epochs must stay at
     * its default (config.c, checks across keys). */
    {.path = "local.steps", .type = CONFIG_INT, AT(local.steps), AT_LEAST(0.0), .fallback = "0"},
    {.path = "local.batch_size", .type = CONFIG_INT, AT(local.batch_size), AT_LEAST(1.0)},
    {.path = "local.lr", .type = CONFIG_DOUBLE, AT(local.lr), ABOVE(0.0)},
    {.path = "local.optimizer", .type = CONFIG_STRING, AT(local.optimizer),
     .choices = optimizers},
    {.path = "local.momentum", .type = CONFIG_DOUBLE, AT(local.momentum),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MAX_EXCLUSIVE, .min = 0.0, .max = 1.0},
    {.path = "local.nesterov", .type = CONFIG_BOOL, AT(local.nesterov)},
    /* Decay of 1 or more per step flips or zeroes the weights: a typo. */
    {.path = "local.weight_decay", .type = CONFIG_DOUBLE, AT(local.weight_decay),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MAX_EXCLUSIVE, .min = 0.0, .max = 1.0},
    /* Learning rate across rounds (include/fedkd/train/train.h, fedkd_lr_at). */
    {.path = "local.lr_schedule", .type = CONFIG_STRING, AT(local.schedule.kind),
     .choices = lr_schedules, .fallback = "\"constant\""},
    {.path = "local.lr_warmup_rounds", .type = CONFIG_INT, AT(local.schedule.warmup_rounds),
     AT_LEAST(0.0), .fallback = "0"},
    {.path = "local.lr_step_rounds", .type = CONFIG_INT, AT(local.schedule.step_rounds),
     AT_LEAST(1.0), .fallback = "10"},
    {.path = "local.lr_decay", .type = CONFIG_DOUBLE, AT(local.schedule.decay),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MIN_EXCLUSIVE, .min = 0.0, .max = 1.0,
     .fallback = "0.1"},
    {.path = "local.lr_min", .type = CONFIG_DOUBLE, AT(local.schedule.min), AT_LEAST(0.0),
     .fallback = "0"},

    {.path = "server.lr", .type = CONFIG_DOUBLE, AT(server.lr), ABOVE(0.0)},
    {.path = "fedprox.mu", .type = CONFIG_DOUBLE, AT(fedprox.mu), AT_LEAST(0.0)},
    {.path = "fedbn", .type = CONFIG_BOOL, AT(fedbn), .fallback = "false"},

    {.path = "init.model", .type = CONFIG_STRING, AT(init.model)},

    {.path = "kd.method", .type = CONFIG_STRING, AT(kd.method), .flags = CONFIG_NON_EMPTY},
    {.path = "kd.temperature", .type = CONFIG_DOUBLE, AT(kd.temperature), ABOVE(0.0)},
    {.path = "kd.weight", .type = CONFIG_DOUBLE, AT(kd.weight), BETWEEN(0.0, 1.0)},
    /* kd-study: method names and grid values are checked by the kd layer. */
    {.path = "kd.methods", .type = CONFIG_STRING, AT(kd.methods), .flags = CONFIG_NON_EMPTY},
    {.path = "kd.pairs", .type = CONFIG_STRING, AT(kd.pairs), .choices = kd_pairings},
    {.path = "kd.students", .type = CONFIG_STRING, AT(kd.students)},
    {.path = "kd.epochs", .type = CONFIG_INT, AT(kd.epochs), AT_LEAST(1.0)},
    {.path = "kd.temperature_grid", .type = CONFIG_STRING, AT(kd.temperature_grid),
     .flags = CONFIG_NON_EMPTY},
    {.path = "kd.weight_grid", .type = CONFIG_STRING, AT(kd.weight_grid),
     .flags = CONFIG_NON_EMPTY},
    {.path = "kd.validation_fraction", .type = CONFIG_DOUBLE, AT(kd.validation_fraction),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MIN_EXCLUSIVE | CONFIG_MAX_EXCLUSIVE,
     .min = 0.0, .max = 1.0},
    {.path = "kd.ensemble", .type = CONFIG_STRING, AT(kd.ensemble), .choices = kd_ensemble_rules},
    {.path = "kd.peers", .type = CONFIG_INT, AT(kd.peers), AT_LEAST(1.0)},
    {.path = "kd.confidence", .type = CONFIG_STRING, AT(kd.confidence),
     .choices = kd_confidence_rules, .fallback = "\"supervised\""},
    /* Whether the public set can hold these is checked once the data is known. */
    {.path = "kd.validation", .type = CONFIG_STRING, AT(kd.validation), .choices = kd_places,
     .fallback = "\"local\""},
    {.path = "kd.transfer", .type = CONFIG_STRING, AT(kd.transfer), .choices = kd_places,
     .fallback = "\"local\""},
    {.path = "kd.validation_size", .type = CONFIG_INT64, AT(kd.validation_size), AT_LEAST(0.0),
     .fallback = "0"},

    {.path = "public.size", .type = CONFIG_INT64, AT(public_set.size), AT_LEAST(0.0)},
    {.path = "public.source", .type = CONFIG_STRING, AT(public_set.source),
     .flags = CONFIG_NON_EMPTY},
    /* At most the public set's size: checked once the data is known. */
    {.path = "public.per_round", .type = CONFIG_INT64, AT(public_set.per_round), AT_LEAST(0.0),
     .fallback = "0"},

    {.path = "fedmd.digest_epochs", .type = CONFIG_INT, AT(fedmd.digest_epochs), AT_LEAST(0.0),
     .fallback = "1"},
    {.path = "fedmd.digest_loss", .type = CONFIG_STRING, AT(fedmd.digest_loss),
     .choices = fedmd_digest_losses, .fallback = "\"mae\""},
    {.path = "dsfl.temperature", .type = CONFIG_DOUBLE, AT(dsfl.temperature),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MIN_EXCLUSIVE, .min = 0.0, .max = 1.0,
     .fallback = "0.1"},
    {.path = "dsfl.epochs", .type = CONFIG_INT, AT(dsfl.epochs), AT_LEAST(0.0), .fallback = "1"},
    {.path = "dml.epochs", .type = CONFIG_INT, AT(dml.epochs), AT_LEAST(0.0), .fallback = "1"},
    {.path = "feddf.epochs", .type = CONFIG_INT, AT(feddf.epochs), AT_LEAST(0.0),
     .fallback = "5"},
    {.path = "feddf.lr", .type = CONFIG_DOUBLE, AT(feddf.lr), ABOVE(0.0), .fallback = "0.01"},
    {.path = "feddf.lr_schedule", .type = CONFIG_STRING, AT(feddf.schedule.kind),
     .choices = lr_schedules, .fallback = "\"constant\""},
    {.path = "feddf.lr_warmup_rounds", .type = CONFIG_INT, AT(feddf.schedule.warmup_rounds),
     AT_LEAST(0.0), .fallback = "0"},
    {.path = "feddf.lr_step_rounds", .type = CONFIG_INT, AT(feddf.schedule.step_rounds),
     AT_LEAST(1.0), .fallback = "10"},
    {.path = "feddf.lr_decay", .type = CONFIG_DOUBLE, AT(feddf.schedule.decay),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MIN_EXCLUSIVE, .min = 0.0, .max = 1.0,
     .fallback = "0.1"},
    {.path = "feddf.lr_min", .type = CONFIG_DOUBLE, AT(feddf.schedule.min), AT_LEAST(0.0),
     .fallback = "0"},
    {.path = "feddf.patience", .type = CONFIG_INT, AT(feddf.patience), AT_LEAST(1.0),
     .fallback = "2"},
    {.path = "feddf.validation_fraction", .type = CONFIG_DOUBLE, AT(feddf.validation_fraction),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MIN_EXCLUSIVE | CONFIG_MAX_EXCLUSIVE,
     .min = 0.0, .max = 1.0, .fallback = "0.2"},

    {.path = "pretrain.epochs", .type = CONFIG_INT, AT(pretrain.epochs), AT_LEAST(0.0)},
    {.path = "pretrain.dir", .type = CONFIG_STRING, AT(pretrain.dir)},
    {.path = "eval.batch_size", .type = CONFIG_INT, AT(eval_batch_size), AT_LEAST(1.0)},
    {.path = "run.dir", .type = CONFIG_STRING, AT(run.dir), .flags = CONFIG_NON_EMPTY},
    /* How many ranks of a node compute at once (src/core/slots.c): 0 as
     * many as the node's CPUs, -1 no limit. Changes no result. */
    {.path = "run.compute_slots", .type = CONFIG_INT, AT(run.compute_slots), AT_LEAST(-1.0),
     .fallback = "0"},
    {.path = "checkpoint.every", .type = CONFIG_INT, AT(checkpoint.every), AT_LEAST(0.0)},
    {.path = "checkpoint.keep", .type = CONFIG_INT, AT(checkpoint.keep), AT_LEAST(1.0)},

    /* The simulated clock, dropouts and compressed uploads (src/fl/netsim.c,
     * src/fl/compress.c). Whether low <= high and the trace file are checked
     * by the federation. */
    {.path = "network.enabled", .type = CONFIG_BOOL, AT(network.enabled), .fallback = "false"},
    {.path = "network.trace", .type = CONFIG_STRING, AT(network.trace), .fallback = "\"\""},
    DISTRIBUTION_KEYS("speed", speed, "2000", "1000", "4000", ABOVE(0.0)),
    DISTRIBUTION_KEYS("up", up, "10", "5", "20", ABOVE(0.0)),
    DISTRIBUTION_KEYS("down", down, "50", "20", "100", ABOVE(0.0)),
    DISTRIBUTION_KEYS("latency", latency, "0.01", "0.005", "0.05", AT_LEAST(0.0)),
    /* 0 (the default): no deadline. Written configs (summary.json,
     * checkpoints) carry the 0 and must load again, so it stays valid. */
    {.path = "round.deadline_seconds", .type = CONFIG_DOUBLE, AT(round.deadline_seconds),
     AT_LEAST(0.0), .fallback = "0"},
    {.path = "round.dropout", .type = CONFIG_DOUBLE, AT(round.dropout),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MAX_EXCLUSIVE, .min = 0.0, .max = 1.0,
     .fallback = "0"},
    {.path = "comm.compression", .type = CONFIG_STRING, AT(comm.compression),
     .choices = compressions, .fallback = "\"none\""},
    {.path = "comm.topk_fraction", .type = CONFIG_DOUBLE, AT(comm.topk_fraction),
     .flags = CONFIG_HAS_MIN | CONFIG_HAS_MAX | CONFIG_MIN_EXCLUSIVE, .min = 0.0, .max = 1.0,
     .fallback = "0.01"},
};

#define NUM_KEYS ((int)(sizeof keys / sizeof keys[0]))

int fedkd_config_num_keys(void) { return NUM_KEYS; }

const config_key *fedkd_config_key_at(int index)
{
    return index >= 0 && index < NUM_KEYS ? &keys[index] : NULL;
}

int fedkd_config_key_index(const char *path)
{
    for (int i = 0; i < NUM_KEYS; i++)
        if (strcmp(keys[i].path, path) == 0) return i;
    return -1;
}

int fedkd_config_is_section(const char *path)
{
    size_t length = strlen(path);
    if (length == 0) return 0;
    for (int i = 0; i < NUM_KEYS; i++)
        if (strncmp(keys[i].path, path, length) == 0 && keys[i].path[length] == '.')
            return 1;
    return 0;
}

cJSON *fedkd_config_lookup(const cJSON *document, const char *path)
{
    const cJSON *node = document;
    const char *segment = path;
    for (;;) {
        const char *dot = strchr(segment, '.');
        size_t length = dot ? (size_t)(dot - segment) : strlen(segment);
        if (!cJSON_IsObject(node)) return NULL;
        const cJSON *found = NULL;
        for (const cJSON *child = node->child; child; child = child->next)
            if (child->string && strlen(child->string) == length &&
                memcmp(child->string, segment, length) == 0) {
                found = child;
                break;
            }
        if (!found) return NULL;
        if (!dot) return (cJSON *)found;
        node = found;
        segment = dot + 1;
    }
}

/* ---- suggestions ---------------------------------------------------------- */

enum { SUGGEST_MAX_LENGTH = 127 };

/* Levenshtein distance over the first SUGGEST_MAX_LENGTH bytes of each. */
static size_t edit_distance(const char *a, size_t a_length, const char *b, size_t b_length)
{
    size_t previous[SUGGEST_MAX_LENGTH + 1], current[SUGGEST_MAX_LENGTH + 1];
    if (a_length > SUGGEST_MAX_LENGTH) a_length = SUGGEST_MAX_LENGTH;
    if (b_length > SUGGEST_MAX_LENGTH) b_length = SUGGEST_MAX_LENGTH;
    for (size_t j = 0; j <= b_length; j++) previous[j] = j;
    for (size_t i = 1; i <= a_length; i++) {
        current[0] = i;
        for (size_t j = 1; j <= b_length; j++) {
            size_t substitute = previous[j - 1] + (a[i - 1] != b[j - 1]);
            size_t erase = previous[j] + 1, insert = current[j - 1] + 1;
            size_t best = substitute < erase ? substitute : erase;
            current[j] = best < insert ? best : insert;
        }
        memcpy(previous, current, (b_length + 1) * sizeof previous[0]);
    }
    return previous[b_length];
}

static const char *last_segment(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

int fedkd_config_suggest(const char *unknown_path, char *out, size_t out_size)
{
    if (out_size == 0) return 0;
    out[0] = '\0';
    /* A known leaf name under the wrong (or no) section, e.g. `temperature`
     * for `kd.temperature`, is the likeliest intent; short names are too
     * close to everything for edit distance alone to be trusted. */
    const char *unknown_leaf = last_segment(unknown_path);
    if (*unknown_leaf)
        for (int i = 0; i < NUM_KEYS; i++)
            if (strcmp(last_segment(keys[i].path), unknown_leaf) == 0) {
                snprintf(out, out_size, "%s", keys[i].path);
                return 1;
            }

    /* Otherwise the nearest key or section by edit distance over full paths;
     * the sections are the proper prefixes of the keys. */
    size_t unknown_length = strlen(unknown_path);
    size_t best_distance = SIZE_MAX, best_length = 0;
    const char *best = NULL;
    for (int i = 0; i < NUM_KEYS; i++) {
        const char *path = keys[i].path;
        for (const char *end = strchr(path, '.');; end = strchr(end + 1, '.')) {
            size_t length = end ? (size_t)(end - path) : strlen(path);
            size_t distance = edit_distance(unknown_path, unknown_length, path, length);
            if (distance < best_distance) {
                best_distance = distance;
                best = path;
                best_length = length;
            }
            if (!end) break;
        }
    }
    size_t threshold = unknown_length / 3 > 1 ? unknown_length / 3 : 1;
    if (!best || best_distance > threshold) return 0;
    snprintf(out, out_size, "%.*s", (int)best_length, best);
    return 1;
}

/* ---- descriptions and checks ---------------------------------------------- */

static void format_number(double x, char *out, size_t out_size)
{
    if (x == floor(x) && fabs(x) < 1e16)
        snprintf(out, out_size, "%.0f", x);
    else
        snprintf(out, out_size, "%g", x);
}

void fedkd_config_describe(const config_key *key, char *out, size_t out_size)
{
    size_t used = 0;
#define APPEND(...)                                                           \
    do {                                                                      \
        if (used < out_size) {                                                \
            int n_ = snprintf(out + used, out_size - used, __VA_ARGS__);      \
            if (n_ > 0) used += (size_t)n_;                                   \
        }                                                                     \
    } while (0)
    if (out_size) out[0] = '\0';
    if (key->choices) {
        APPEND("one of");
        for (int i = 0; key->choices[i]; i++)
            APPEND("%s \"%s\"", i ? "," : "", key->choices[i]);
        return;
    }
    switch (key->type) {
    case CONFIG_BOOL: APPEND("true or false"); return;
    case CONFIG_MODEL: APPEND("a model preset name or a non-empty layer list"); return;
    case CONFIG_MODEL_LIST:
        APPEND("\"\", comma-separated preset names, or a list of presets and layer lists");
        return;
    case CONFIG_STRING:
        APPEND("%s", key->flags & CONFIG_NON_EMPTY ? "a non-empty string" : "a string");
        return;
    case CONFIG_DOUBLE: APPEND("a number"); break;
    case CONFIG_INT:
    case CONFIG_INT64:
    case CONFIG_SEED: APPEND("an integer"); break;
    }
    if (key->flags & CONFIG_FRACTION_OR_COUNT) {
        snprintf(out, out_size, "a fraction in (0, 1] or a whole number of clients");
        return;
    }
    char low[32], high[32];
    format_number(key->min, low, sizeof low);
    format_number(key->max, high, sizeof high);
    int has_min = (key->flags & CONFIG_HAS_MIN) != 0, has_max = (key->flags & CONFIG_HAS_MAX) != 0;
    if (has_min && has_max)
        APPEND(" in %c%s, %s%c", key->flags & CONFIG_MIN_EXCLUSIVE ? '(' : '[', low, high,
               key->flags & CONFIG_MAX_EXCLUSIVE ? ')' : ']');
    else if (has_min)
        APPEND(" %s %s", key->flags & CONFIG_MIN_EXCLUSIVE ? ">" : ">=", low);
    else if (has_max)
        APPEND(" %s %s", key->flags & CONFIG_MAX_EXCLUSIVE ? "<" : "<=", high);
#undef APPEND
}

void fedkd_config_describe_given(const cJSON *value, char *out, size_t out_size)
{
    if (cJSON_IsObject(value)) {
        snprintf(out, out_size, "an object");
    } else if (cJSON_IsArray(value)) {
        snprintf(out, out_size, "an array");
    } else if (cJSON_IsNumber(value) && !isfinite(value->valuedouble)) {
        snprintf(out, out_size, "a number too large to represent");
    } else {
        char *printed = cJSON_PrintUnformatted(value);
        if (!printed) {
            snprintf(out, out_size, "a value that could not be printed");
            return;
        }
        enum { SHOWN = 48 };
        if (strlen(printed) > SHOWN)
            snprintf(out, out_size, "%.*s...", (int)SHOWN, printed);
        else
            snprintf(out, out_size, "%s", printed);
        free(printed);
    }
}

static fedkd_status fail_value(const config_key *key, const cJSON *value, const char *origin,
                               const char *expected, const char *qualifier)
{
    char given[96];
    fedkd_config_describe_given(value, given, sizeof given);
    return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: config key `%s`: expected %s%s, got %s", origin,
                      key->path, expected, qualifier, given);
}

static int in_range(const config_key *key, double x)
{
    if (key->flags & CONFIG_HAS_MIN) {
        if (key->flags & CONFIG_MIN_EXCLUSIVE ? !(x > key->min) : !(x >= key->min)) return 0;
    }
    if (key->flags & CONFIG_HAS_MAX) {
        if (key->flags & CONFIG_MAX_EXCLUSIVE ? !(x < key->max) : !(x <= key->max)) return 0;
    }
    return 1;
}

static fedkd_status check_number(const config_key *key, const cJSON *value, const char *origin,
                                 const char *expected)
{
    if (!cJSON_IsNumber(value) || !isfinite(value->valuedouble))
        return fail_value(key, value, origin, expected, "");
    double x = value->valuedouble;
    int integral = key->type != CONFIG_DOUBLE;
    if (integral && x != floor(x)) return fail_value(key, value, origin, expected, "");
    if (key->flags & CONFIG_FRACTION_OR_COUNT) {
        if (!(x > 0.0) || (x > 1.0 && x != floor(x)))
            return fail_value(key, value, origin, expected, "");
        return FEDKD_OK;
    }
    if (!in_range(key, x)) return fail_value(key, value, origin, expected, "");
    double limit = key->type == CONFIG_INT ? (double)INT_MAX : CONFIG_EXACT_INTEGER_LIMIT;
    if (integral && fabs(x) > limit) {
        char qualifier[64], limit_text[32];
        format_number(limit, limit_text, sizeof limit_text);
        snprintf(qualifier, sizeof qualifier, " and at most %s", limit_text);
        return fail_value(key, value, origin, expected, qualifier);
    }
    return FEDKD_OK;
}

/* "" (none), "a,b" (names without empty items), or an array of non-empty
 * names and non-empty layer lists. */
static int model_list_ok(const cJSON *value)
{
    if (cJSON_IsString(value) && value->valuestring) {
        const char *text = value->valuestring;
        if (!text[0]) return 1;
        int item_has_name = 0;
        for (const char *p = text;; p++) {
            if (*p == ',' || !*p) {
                if (!item_has_name) return 0;
                if (!*p) return 1;
                item_has_name = 0;
            } else if (*p != ' ') {
                item_has_name = 1;
            }
        }
    }
    if (!cJSON_IsArray(value) || !value->child) return 0;
    for (const cJSON *item = value->child; item; item = item->next) {
        if (cJSON_IsString(item) && item->valuestring && item->valuestring[0]) continue;
        if (cJSON_IsArray(item) && item->child) continue;
        return 0;
    }
    return 1;
}

fedkd_status fedkd_config_check_value(const config_key *key, const cJSON *value,
                                      const char *origin)
{
    char expected[160];
    fedkd_config_describe(key, expected, sizeof expected);
    switch (key->type) {
    case CONFIG_INT:
    case CONFIG_INT64:
    case CONFIG_SEED:
    case CONFIG_DOUBLE:
        return check_number(key, value, origin, expected);
    case CONFIG_BOOL:
        return cJSON_IsBool(value) ? FEDKD_OK : fail_value(key, value, origin, expected, "");
    case CONFIG_MODEL:
        if (cJSON_IsString(value) && value->valuestring && value->valuestring[0]) return FEDKD_OK;
        if (cJSON_IsArray(value) && value->child) return FEDKD_OK;
        return fail_value(key, value, origin, expected, "");
    case CONFIG_MODEL_LIST:
        return model_list_ok(value) ? FEDKD_OK : fail_value(key, value, origin, expected, "");
    case CONFIG_STRING:
        break;
    }
    if (!cJSON_IsString(value) || !value->valuestring)
        return fail_value(key, value, origin, expected, "");
    const char *text = value->valuestring;
    size_t length = strlen(text);
    if (length >= key->size)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: config key `%s`: expected a string of at most %zu characters, "
                          "got one of %zu",
                          origin, key->path, key->size - 1, length);
    if ((key->flags & CONFIG_NON_EMPTY) && length == 0)
        return fail_value(key, value, origin, expected, "");
    if (key->choices) {
        for (int i = 0; key->choices[i]; i++)
            if (strcmp(key->choices[i], text) == 0) return FEDKD_OK;
        return fail_value(key, value, origin, expected, "");
    }
    return FEDKD_OK;
}

void fedkd_config_store_value(const config_key *key, const cJSON *value, fedkd_config *config)
{
    char *member = (char *)config + key->offset;
    switch (key->type) {
    case CONFIG_INT: {
        int x = (int)value->valuedouble;
        memcpy(member, &x, sizeof x);
        break;
    }
    case CONFIG_INT64: {
        int64_t x = (int64_t)value->valuedouble;
        memcpy(member, &x, sizeof x);
        break;
    }
    case CONFIG_SEED: {
        uint64_t x = (uint64_t)value->valuedouble;
        memcpy(member, &x, sizeof x);
        break;
    }
    case CONFIG_DOUBLE:
        memcpy(member, &value->valuedouble, sizeof(double));
        break;
    case CONFIG_BOOL: {
        int x = cJSON_IsTrue(value) ? 1 : 0;
        memcpy(member, &x, sizeof x);
        break;
    }
    case CONFIG_STRING: {
        size_t length = strlen(value->valuestring);
        memcpy(member, value->valuestring, length + 1);
        break;
    }
    case CONFIG_MODEL:
    case CONFIG_MODEL_LIST: {
        const cJSON *model = value;
        memcpy(member, &model, sizeof model);
        break;
    }
    }
}

/* ---- --help ----------------------------------------------------------------- */

static const char *type_name(config_value_type type)
{
    switch (type) {
    case CONFIG_INT: return "int";
    case CONFIG_INT64: return "int64";
    case CONFIG_SEED: return "seed";
    case CONFIG_DOUBLE: return "number";
    case CONFIG_BOOL: return "bool";
    case CONFIG_STRING: return "string";
    case CONFIG_MODEL: return "model";
    case CONFIG_MODEL_LIST: return "models";
    }
    return "?";
}

void fedkd_config_print_keys(FILE *out)
{
    cJSON *defaults = cJSON_Parse(fedkd_config_default_text());
    fprintf(out, "  %-28s %-7s %-24s %s\n", "key", "type", "default", "allowed values");
    for (int i = 0; i < NUM_KEYS; i++) {
        const config_key *key = &keys[i];
        char allowed[160];
        fedkd_config_describe(key, allowed, sizeof allowed);
        const cJSON *item = defaults ? fedkd_config_lookup(defaults, key->path) : NULL;
        char *shown = item ? cJSON_PrintUnformatted(item) : NULL;
        const char *fallback = key->fallback ? key->fallback : "?";
        fprintf(out, "  %-28s %-7s %-24s %s\n", key->path, type_name(key->type),
                shown ? shown : fallback, allowed);
        free(shown);
    }
    cJSON_Delete(defaults);
}
