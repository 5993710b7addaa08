/* Loading the run configuration: the built-in default, a user file merged
 * over it, then --set overrides, then every key checked against the table in
 * config_keys.c and copied into fedkd_config.
 *
 * Keys are checked before anything is merged so that a typo is reported as
 * a typo (with a suggestion) rather than as a silently ignored setting. */
#include "fedkd/config/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_keys.h"

static const char default_origin[] = "built-in default";
static const char override_origin[] = "--set";

/* A config is a few kilobytes; anything this large is the wrong file. */
enum { CONFIG_MAX_FILE_BYTES = 16 << 20 };
enum { CONFIG_MAX_PATH = 256 };

/* ---- reading and parsing ------------------------------------------------------ */

static fedkd_status read_text_file(const char *path, char **out_text, size_t *out_length)
{
    fedkd_status status = FEDKD_OK;
    char *text = NULL;
    size_t length = 0, capacity = 0;
    FILE *file = fopen(path, "rb");
    if (!file)
        return FEDKD_FAIL(FEDKD_ERR_IO, "cannot open config file `%s`: %s", path,
                          strerror(errno));
    for (;;) {
        if (capacity - length < 2) {
            capacity = capacity ? 2 * capacity : 4096;
            char *grown = realloc(text, capacity);
            if (!grown) {
                status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory reading config file `%s`",
                                    path);
                goto fail;
            }
            text = grown;
        }
        size_t wanted = capacity - length - 1;
        size_t got = fread(text + length, 1, wanted, file);
        length += got;
        if (got < wanted) {
            if (ferror(file)) {
                status = FEDKD_FAIL(FEDKD_ERR_IO, "cannot read config file `%s`: %s", path,
                                    strerror(errno));
                goto fail;
            }
            break;
        }
        if (length > CONFIG_MAX_FILE_BYTES) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: larger than %d MiB, which is not a config file", path,
                                CONFIG_MAX_FILE_BYTES >> 20);
            goto fail;
        }
    }
    /* The loop above stops at the end of the file, which may come after
     * the limit within the last block read. */
    if (length > CONFIG_MAX_FILE_BYTES) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: larger than %d MiB, which is not a config file", path,
                            CONFIG_MAX_FILE_BYTES >> 20);
        goto fail;
    }
    text[length] = '\0';
    if (fclose(file) != 0) {
        file = NULL;
        status = FEDKD_FAIL(FEDKD_ERR_IO, "cannot read config file `%s`: %s", path,
                            strerror(errno));
        goto fail;
    }
    *out_text = text;
    *out_length = length;
    return FEDKD_OK;
fail:
    if (file) fclose(file);
    free(text);
    return status;
}

/* "NAME:LINE:COLUMN" for a byte offset; columns count characters, not the
 * continuation bytes of UTF-8, so they match what an editor shows. */
static void locate_offset(const char *text, size_t offset, int *out_line, int *out_column)
{
    int line = 1, column = 1;
    for (size_t i = 0; i < offset; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') {
            line++;
            column = 1;
        } else if ((c & 0xC0) != 0x80) {
            column++;
        }
    }
    *out_line = line;
    *out_column = column;
}

/* cJSON reports a rejected object key one byte late: it has already stepped
 * over the character that is not a '"'. Step back so the column names that
 * character (a trailing comma's `}`, an unquoted key). The context, a key
 * position right after '{' or ',' inside an object, is found by scanning
 * the text before the error, skipping strings. */
static size_t correct_error_offset(const char *text, size_t offset)
{
    if (offset == 0) return offset;
    unsigned char rejected = (unsigned char)text[offset - 1];
    if (rejected == '"' || rejected == ' ' || rejected == '\t' || rejected == '\n' ||
        rejected == '\r')
        return offset;
    char open[CJSON_NESTING_LIMIT + 1];
    int depth = 0, in_string = 0, escaped = 0;
    char last = 0; /* the last character outside strings, or '"' after one */
    for (size_t i = 0; i + 1 < offset; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped) escaped = 0;
            else if (c == '\\') escaped = 1;
            else if (c == '"') in_string = 0;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        if (c == '"') in_string = 1;
        if (c == '{' || c == '[') {
            if (depth == CJSON_NESTING_LIMIT) return offset;
            open[depth++] = c;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        }
        last = c;
    }
    if (depth > 0 && open[depth - 1] == '{' && (last == '{' || last == ','))
        return offset - 1;
    return offset;
}

static fedkd_status parse_document(const char *text, size_t length, const char *name,
                                   cJSON **out_document)
{
    const char *nul = memchr(text, '\0', length);
    if (nul) {
        int line, column;
        locate_offset(text, (size_t)(nul - text), &line, &column);
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s:%d:%d: NUL byte in what should be JSON text",
                          name, line, column);
    }
    const char *end = NULL;
    /* The length counts the terminating NUL: with require_null_terminated
     * cJSON insists on seeing it, which is how trailing garbage is caught. */
    cJSON *document = cJSON_ParseWithLengthOpts(text, length + 1, &end, 1);
    if (!document) {
        size_t offset = end && end >= text && end <= text + length ? (size_t)(end - text) : length;
        offset = correct_error_offset(text, offset);
        int line, column;
        locate_offset(text, offset, &line, &column);
        char excerpt[32];
        size_t n = 0;
        for (size_t i = offset; i < length && text[i] != '\n' && n < 24; i++)
            excerpt[n++] = (unsigned char)text[i] < 0x20 || text[i] == 0x7f ? ' ' : text[i];
        excerpt[n] = '\0';
        if (n == 0)
            return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s:%d:%d: malformed JSON near %s", name, line,
                              column, offset >= length ? "the end of the file" : "a line end");
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s:%d:%d: malformed JSON near `%s`", name, line,
                          column, excerpt);
    }
    if (!cJSON_IsObject(document)) {
        cJSON_Delete(document);
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: expected a JSON object of config keys at the top level", name);
    }
    *out_document = document;
    return FEDKD_OK;
}

/* ---- key checks before merging ------------------------------------------------ */

static fedkd_status fail_unknown_key(const char *origin, const char *path)
{
    char suggestion[CONFIG_MAX_PATH];
    if (fedkd_config_suggest(path, suggestion, sizeof suggestion))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: unknown config key `%s`; did you mean `%s`?",
                          origin, path, suggestion);
    return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                      "%s: unknown config key `%s`; `fedkd-sim --help` lists the known keys",
                      origin, path);
}

static fedkd_status fail_not_section(const char *origin, const char *path, const cJSON *value)
{
    char given[96];
    fedkd_config_describe_given(value, given, sizeof given);
    return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                      "%s: config key `%s` is a section and needs an object of its keys, got %s",
                      origin, path, given);
}

/* Every key of `object` (whose own path is `prefix`) must be a known key or
 * section, sections must be objects and keys must not be. Records `origin`
 * for each key present, so later value errors can say where they came from. */
static fedkd_status check_keys(const cJSON *object, const char *prefix, const char *origin,
                               const char **key_origins)
{
    for (const cJSON *child = object->child; child; child = child->next) {
        char path[CONFIG_MAX_PATH];
        int written = prefix[0] ? snprintf(path, sizeof path, "%s.%s", prefix, child->string)
                                : snprintf(path, sizeof path, "%s", child->string);
        if (written < 0 || (size_t)written >= sizeof path) return fail_unknown_key(origin, path);
        for (const cJSON *earlier = object->child; earlier != child; earlier = earlier->next)
            if (strcmp(earlier->string, child->string) == 0)
                return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s: config key `%s` appears twice",
                                  origin, path);
        int index = fedkd_config_key_index(path);
        if (index >= 0) {
            if (cJSON_IsObject(child))
                /* The value check words the message and names what was wanted. */
                return fedkd_config_check_value(fedkd_config_key_at(index), child, origin);
            key_origins[index] = origin;
        } else if (fedkd_config_is_section(path)) {
            if (!cJSON_IsObject(child)) return fail_not_section(origin, path, child);
            fedkd_status status = check_keys(child, path, origin, key_origins);
            if (status != FEDKD_OK) return status;
        } else {
            return fail_unknown_key(origin, path);
        }
    }
    return FEDKD_OK;
}

/* ---- merging -------------------------------------------------------------------- */

static fedkd_status fail_nomem(void)
{
    return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory building the config");
}

/* Moves every member of `source` into `target`: objects merge, anything else
 * (including a `model` list) replaces what was there. `source` ends empty. */
static fedkd_status merge_objects(cJSON *target, cJSON *source)
{
    while (source->child) {
        cJSON *item = cJSON_DetachItemViaPointer(source, source->child);
        cJSON *existing = cJSON_GetObjectItemCaseSensitive(target, item->string);
        if (existing && cJSON_IsObject(existing) && cJSON_IsObject(item)) {
            fedkd_status status = merge_objects(existing, item);
            cJSON_Delete(item);
            if (status != FEDKD_OK) return status;
        } else if (existing) {
            cJSON_ReplaceItemViaPointer(target, existing, item);
        } else if (!cJSON_AddItemToObject(target, item->string, item)) {
            cJSON_Delete(item);
            return fail_nomem();
        }
    }
    return FEDKD_OK;
}

/* The object holding the last segment of `path` (split in place at its dots),
 * creating missing sections on the way; `leaf_name` gets the last segment.
 * NULL if a section is not an object or cannot be created. */
static cJSON *find_parent(cJSON *document, char *path, char **leaf_name)
{
    cJSON *node = document;
    char *segment = path;
    for (char *dot = strchr(segment, '.'); dot; dot = strchr(segment, '.')) {
        *dot = '\0';
        cJSON *next = cJSON_GetObjectItemCaseSensitive(node, segment);
        if (!next) next = cJSON_AddObjectToObject(node, segment);
        if (!cJSON_IsObject(next)) return NULL;
        node = next;
        segment = dot + 1;
    }
    *leaf_name = segment;
    return node;
}

/* Puts `value` at `path` (owned by the document afterwards, even on error). */
static fedkd_status set_path(cJSON *document, const char *path, cJSON *value)
{
    char buffer[CONFIG_MAX_PATH];
    snprintf(buffer, sizeof buffer, "%s", path);
    char *leaf_name = NULL;
    cJSON *parent = find_parent(document, buffer, &leaf_name);
    if (!parent) {
        cJSON_Delete(value);
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "cannot place config key `%s` in the document", path);
    }
    cJSON *existing = cJSON_GetObjectItemCaseSensitive(parent, leaf_name);
    if (existing && cJSON_IsObject(existing) && cJSON_IsObject(value)) {
        fedkd_status status = merge_objects(existing, value);
        cJSON_Delete(value);
        return status;
    }
    if (existing) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(parent, leaf_name, value)) {
            cJSON_Delete(value);
            return fail_nomem();
        }
        return FEDKD_OK;
    }
    if (!cJSON_AddItemToObject(parent, leaf_name, value)) {
        cJSON_Delete(value);
        return fail_nomem();
    }
    return FEDKD_OK;
}

/* ---- --set overrides ------------------------------------------------------------- */

static fedkd_status apply_override(cJSON *document, const char *text, const char **key_origins)
{
    const char *equals = strchr(text, '=');
    if (!equals)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s `%s`: expected key.path=value", override_origin,
                          text);
    size_t key_length = (size_t)(equals - text);
    if (key_length == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "%s `%s`: the key before `=` is empty",
                          override_origin, text);
    char path[CONFIG_MAX_PATH];
    snprintf(path, sizeof path, "%.*s", (int)key_length, text);
    if (key_length >= sizeof path) return fail_unknown_key(override_origin, path);

    const char *value_text = equals + 1;
    const char *end = NULL;
    /* Bare words (fedavg, runs/x) are strings; anything that parses whole
     * (0.1, true, "x", [...], {...}) is taken as JSON. */
    cJSON *value = cJSON_ParseWithOpts(value_text, &end, 1);
    if (!value) value = cJSON_CreateString(value_text);
    if (!value) return fail_nomem();

    fedkd_status status;
    int index = fedkd_config_key_index(path);
    if (index >= 0) {
        if (cJSON_IsObject(value)) {
            status = fedkd_config_check_value(fedkd_config_key_at(index), value, override_origin);
            goto fail;
        }
        /* kd.students=3 means the text "3" to a string key. */
        if (fedkd_config_key_at(index)->type == CONFIG_STRING &&
            (cJSON_IsNumber(value) || cJSON_IsBool(value))) {
            cJSON_Delete(value);
            value = cJSON_CreateString(value_text);
            if (!value) return fail_nomem();
        }
        key_origins[index] = override_origin;
    } else if (fedkd_config_is_section(path)) {
        if (!cJSON_IsObject(value)) {
            status = fail_not_section(override_origin, path, value);
            goto fail;
        }
        status = check_keys(value, path, override_origin, key_origins);
        if (status != FEDKD_OK) goto fail;
    } else {
        status = fail_unknown_key(override_origin, path);
        goto fail;
    }
    return set_path(document, path, value);
fail:
    cJSON_Delete(value);
    return status;
}

/* ---- checks across keys --------------------------------------------------------- */

static const char *origin_of(const char **key_origins, const char *path)
{
    int index = fedkd_config_key_index(path);
    return index >= 0 && key_origins[index] ? key_origins[index] : default_origin;
}

static fedkd_status check_consistency(const fedkd_config *config, const char **key_origins)
{
    double per_round = config->clients.per_round;
    if (per_round > 1.0 && per_round > (double)config->clients.count)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "%s: config key `clients.per_round`: %.0f clients per round is more "
                          "than clients.count (%d)",
                          key_origins[fedkd_config_key_index("clients.per_round")], per_round,
                          config->clients.count);
    /* local.steps replaces local.epochs; a file that writes out the
     * default epochs (1) still combines with it. */
    if (config->local.steps > 0 && config->local.epochs != 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config keys `local.steps` (%d, from %s) and `local.epochs` (%d, from "
                          "%s) are both set: local.steps > 0 trains that many minibatch steps "
                          "per round instead of epochs; leave local.epochs at its default 1",
                          config->local.steps, origin_of(key_origins, "local.steps"),
                          config->local.epochs, origin_of(key_origins, "local.epochs"));
    return FEDKD_OK;
}

/* ---- public ------------------------------------------------------------------------ */

fedkd_status fedkd_config_load(fedkd_config *config, const char *path,
                               const char *const *overrides, int num_overrides)
{
    if (!config) return FEDKD_FAIL(FEDKD_ERR_INVALID, "fedkd_config_load: config is NULL");
    memset(config, 0, sizeof *config);
    if (num_overrides < 0 || (num_overrides > 0 && !overrides))
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "fedkd_config_load: %d overrides but no array",
                          num_overrides);

    fedkd_status status = FEDKD_OK;
    cJSON *document = NULL, *user = NULL;
    char *text = NULL;
    int num_keys = fedkd_config_num_keys();
    const char **key_origins = calloc((size_t)num_keys, sizeof *key_origins);
    if (!key_origins) return fail_nomem();

    const char *defaults = fedkd_config_default_text();
    status = parse_document(defaults, strlen(defaults), default_origin, &document);
    if (status != FEDKD_OK) goto fail;
    status = check_keys(document, "", default_origin, key_origins);
    if (status != FEDKD_OK) goto fail;

    if (path) {
        size_t length = 0;
        status = read_text_file(path, &text, &length);
        if (status != FEDKD_OK) goto fail;
        status = parse_document(text, length, path, &user);
        if (status != FEDKD_OK) goto fail;
        status = check_keys(user, "", path, key_origins);
        if (status != FEDKD_OK) goto fail;
        status = merge_objects(document, user);
        if (status != FEDKD_OK) goto fail;
    }

    for (int i = 0; i < num_overrides; i++) {
        if (!overrides[i]) {
            status = FEDKD_FAIL(FEDKD_ERR_INVALID, "fedkd_config_load: override %d is NULL", i);
            goto fail;
        }
        status = apply_override(document, overrides[i], key_origins);
        if (status != FEDKD_OK) goto fail;
    }

    /* Keys whose default the table holds go into the document, so that it
     * (summary.json, checkpoints, --print-config) is complete. */
    for (int i = 0; i < num_keys; i++) {
        const config_key *key = fedkd_config_key_at(i);
        if (!key->fallback || fedkd_config_lookup(document, key->path)) continue;
        cJSON *value = cJSON_Parse(key->fallback);
        if (!value) {
            status = fail_nomem();
            goto fail;
        }
        status = set_path(document, key->path, value);
        if (status != FEDKD_OK) goto fail;
    }

    for (int i = 0; i < num_keys; i++) {
        const config_key *key = fedkd_config_key_at(i);
        const cJSON *value = fedkd_config_lookup(document, key->path);
        if (!value) {
            /* Only possible if configs/default.json lost a key of the table. */
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `%s` is missing from the %s",
                                key->path, default_origin);
            goto fail;
        }
        status = fedkd_config_check_value(key, value, key_origins[i] ? key_origins[i]
                                                                     : default_origin);
        if (status != FEDKD_OK) goto fail;
        fedkd_config_store_value(key, value, config);
    }
    status = check_consistency(config, key_origins);
    if (status != FEDKD_OK) goto fail;

    config->json = document;
    cJSON_Delete(user);
    free(text);
    free(key_origins);
    return FEDKD_OK;
fail:
    cJSON_Delete(document);
    cJSON_Delete(user);
    free(text);
    free(key_origins);
    memset(config, 0, sizeof *config);
    return status;
}

void fedkd_config_free(fedkd_config *config)
{
    if (!config) return;
    cJSON_Delete(config->json);
    memset(config, 0, sizeof *config);
}

char *fedkd_config_to_string(const fedkd_config *config)
{
    if (!config || !config->json) return NULL;
    return cJSON_PrintUnformatted(config->json);
}

char *fedkd_config_override_text(const char *key, const cJSON *value)
{
    char *json = cJSON_PrintUnformatted(value);
    if (!json) return NULL;
    size_t size = strlen(key) + strlen(json) + 2;
    char *text = malloc(size);
    if (text) snprintf(text, size, "%s=%s", key, json);
    free(json);
    return text;
}
