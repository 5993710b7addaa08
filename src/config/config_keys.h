/* Private to src/config/: the table of known config keys.
 *
 * One row per leaf key. The row says where the value lives in fedkd_config,
 * what type and range it must have and, for closed sets, which strings are
 * allowed. Validation, filling the struct, "did you mean" suggestions and the
 * --help listing all read this table; nothing else knows key names. */
#ifndef FEDKD_IO_CONFIG_KEYS_H
#define FEDKD_IO_CONFIG_KEYS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "fedkd/config/config.h"
#include "fedkd/core/status.h"

typedef enum config_value_type {
    CONFIG_INT,     /* int member */
    CONFIG_INT64,   /* int64_t member */
    CONFIG_SEED,    /* uint64_t member */
    CONFIG_DOUBLE,  /* double member */
    CONFIG_BOOL,    /* int member, 0 or 1 */
    CONFIG_STRING,  /* char array member; `size` is its capacity */
    CONFIG_MODEL,   /* cJSON * member pointing into the merged document */
    CONFIG_MODEL_LIST /* cJSON * member: "" , "preset,preset,..." or an array of
                       * model specs (preset names or non-empty layer lists) */
} config_value_type;

enum {
    CONFIG_HAS_MIN = 1u << 0,
    CONFIG_HAS_MAX = 1u << 1,
    CONFIG_MIN_EXCLUSIVE = 1u << 2,
    CONFIG_MAX_EXCLUSIVE = 1u << 3,
    CONFIG_NON_EMPTY = 1u << 4,
    /* clients.per_round: a fraction in (0, 1] or a whole count >= 1 */
    CONFIG_FRACTION_OR_COUNT = 1u << 5
};

typedef struct config_key {
    const char *path;             /* dotted JSON path, e.g. "local.lr" */
    config_value_type type;
    size_t offset;                /* offsetof(fedkd_config, member) */
    size_t size;                  /* sizeof the member */
    unsigned flags;
    double min, max;              /* read when CONFIG_HAS_MIN / CONFIG_HAS_MAX */
    const char *const *choices;   /* NULL-terminated closed set of strings, or NULL */
    /* JSON text of the default for a key that configs/default.json does not
     * (yet) hold; NULL: the default file must hold the key. */
    const char *fallback;
} config_key;

int fedkd_config_num_keys(void);
const config_key *fedkd_config_key_at(int index);
/* Index of the leaf key with this exact path, or -1. */
int fedkd_config_key_index(const char *path);
/* Whether `path` names an object that holds keys (e.g. "local"). */
int fedkd_config_is_section(const char *path);
/* Writes the closest known key or section to an unknown path into `out` and
 * returns 1, or returns 0 when none is close. */
int fedkd_config_suggest(const char *unknown_path, char *out, size_t out_size);

/* "a number > 0", "one of \"sgd\", \"adam\"", ... */
void fedkd_config_describe(const config_key *key, char *out, size_t out_size);

/* What the user gave, short enough for a one-line message: the value as
 * compact JSON (cut after 48 characters), or "an object" / "an array". */
void fedkd_config_describe_given(const cJSON *value, char *out, size_t out_size);

/* Checks one value against its row; `origin` names where it came from
 * (a file, "--set", "built-in default") and starts the message. */
fedkd_status fedkd_config_check_value(const config_key *key, const cJSON *value,
                                      const char *origin);
/* Writes an already checked value into the struct. */
void fedkd_config_store_value(const config_key *key, const cJSON *value,
                              fedkd_config *config);

/* The item at a dotted path in a document, or NULL. */
cJSON *fedkd_config_lookup(const cJSON *document, const char *path);

#endif
