/* `fedkd-sim inspect FILE.h5` and `fedkd-sim export`. */
#include "fedkd/io/inspect.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "fedkd/core/hdf5_lazy.h"
#include "fedkd/io/checkpoint.h"
#include "fedkd/io/model_file.h"
#include "io/h5_util.h"

enum { METRICS_TAIL = 5 };

static const cJSON *lookup(const cJSON *root, const char *path)
{
    char buffer[128];
    snprintf(buffer, sizeof buffer, "%s", path);
    const cJSON *node = root;
    for (char *save = NULL, *part = strtok_r(buffer, ".", &save); part && node;
         part = strtok_r(NULL, ".", &save))
        node = cJSON_GetObjectItemCaseSensitive(node, part);
    return node;
}

/* A config value as short text: strings bare, anything else as JSON. */
static void value_text(const cJSON *root, const char *path, char *out, size_t size)
{
    const cJSON *item = lookup(root, path);
    if (!item) {
        snprintf(out, size, "?");
    } else if (cJSON_IsString(item)) {
        snprintf(out, size, "%s", item->valuestring);
    } else {
        char *text = cJSON_PrintUnformatted(item);
        snprintf(out, size, "%s", text ? text : "?");
        free(text);
    }
}

static void print_config_summary(FILE *out, const char *config_json)
{
    cJSON *config = cJSON_Parse(config_json);
    if (!config) {
        fprintf(out, "config          (not valid JSON)\n");
        return;
    }
    char algorithm[64], seed[32], rounds[32], data[64], scheme[40], count[32], per_round[32],
        epochs[16], batch[16], optimizer[16], lr[32], detail[64] = "";
    value_text(config, "algorithm", algorithm, sizeof algorithm);
    value_text(config, "seed", seed, sizeof seed);
    value_text(config, "rounds", rounds, sizeof rounds);
    value_text(config, "data.name", data, sizeof data);
    value_text(config, "partition.scheme", scheme, sizeof scheme);
    value_text(config, "clients.count", count, sizeof count);
    value_text(config, "clients.per_round", per_round, sizeof per_round);
    value_text(config, "local.epochs", epochs, sizeof epochs);
    value_text(config, "local.batch_size", batch, sizeof batch);
    value_text(config, "local.optimizer", optimizer, sizeof optimizer);
    value_text(config, "local.lr", lr, sizeof lr);
    const char *parameter = strcmp(scheme, "dirichlet") == 0 || strcmp(scheme, "quantity") == 0
                                ? "alpha"
                            : strcmp(scheme, "shards") == 0        ? "classes_per_client"
                            : strcmp(scheme, "feature-noise") == 0 ? "sigma"
                                                                   : NULL;
    if (parameter) {
        char key[64], value[32];
        snprintf(key, sizeof key, "partition.%s", parameter);
        value_text(config, key, value, sizeof value);
        snprintf(detail, sizeof detail, " %s=%s", parameter, value);
    }
    fprintf(out, "config          algorithm %s, seed %s, rounds %s, data %s, partition %s%s\n",
            algorithm, seed, rounds, data, scheme, detail);
    fprintf(out, "                clients %s (per round %s), local %s epoch(s) x batch %s, %s lr %s\n",
            count, per_round, epochs, batch, optimizer, lr);
    cJSON_Delete(config);
}

static void print_model(FILE *out, const fedkd_model_spec *spec, size_t num_params,
                        const char *group)
{
    char description[1024];
    fedkd_model_spec_describe(spec, description, sizeof description);
    fprintf(out, "model           %s: %s\n", spec->name, description);
    fprintf(out, "parameters      %zu (%s, %.1f KiB as float32)\n", num_params, group,
            (double)num_params * 4.0 / 1024.0);
}

static void print_file_line(FILE *out, const char *path)
{
    struct stat info;
    if (stat(path, &info) == 0)
        fprintf(out, "file            %s (%lld bytes)\n", path, (long long)info.st_size);
    else
        fprintf(out, "file            %s\n", path);
}

static fedkd_status inspect_checkpoint(const char *path, FILE *out)
{
    fedkd_checkpoint k;
    fedkd_status status = fedkd_checkpoint_read(path, &k);
    if (status) return status;
    print_file_line(out, path);
    fprintf(out, "kind            checkpoint, format_version %d, written by fedkd-sim %s\n",
            k.format_version, k.fedkd_sim_version);
    fprintf(out, "round           %d\n", k.round);
    print_config_summary(out, k.config_json);
    print_model(out, &k.spec, k.num_params, "/global");
    fprintf(out, "server state    %zu floats\n", k.server_state_len);
    int64_t smallest = INT64_MAX, largest = 0, total = 0;
    for (int c = 0; c < k.num_clients; c++) {
        int64_t n = k.client_num_samples[c];
        if (n < smallest) smallest = n;
        if (n > largest) largest = n;
        total += n;
    }
    fprintf(out, "clients         %d, samples per client min %lld / mean %.1f / max %lld; "
                 "state %zu floats each\n",
            k.num_clients, (long long)smallest, (double)total / (double)k.num_clients,
            (long long)largest, k.client_state_len);
    fprintf(out, "partition       %s, %zu of %zu samples assigned (%zu dropped), %d classes\n",
            k.partition->scheme, k.partition->offsets[k.num_clients], k.partition->total,
            k.partition->dropped, k.partition->num_classes);
    fprintf(out, "metrics         %d round(s), %.1f s of run time so far; last %d:\n",
            k.num_metrics, k.wall_seconds,
            k.num_metrics < METRICS_TAIL ? k.num_metrics : METRICS_TAIL);
    fprintf(out, "  %6s %12s %14s %12s %12s %12s\n", "round", "participants", "test_accuracy",
            "test_loss", "train_loss", "bytes_up");
    int first = k.num_metrics > METRICS_TAIL ? k.num_metrics - METRICS_TAIL : 0;
    for (int i = first; i < k.num_metrics; i++) {
        const fedkd_round_metrics *m = &k.metrics[i];
        fprintf(out, "  %6d %12d %14.6f %12.6f %12.6f %12llu\n", m->round, m->participants,
                m->test_accuracy, m->test_loss, m->train_loss, (unsigned long long)m->bytes_up);
    }
    fedkd_checkpoint_clear(&k);
    return FEDKD_OK;
}

typedef struct dataset_listing {
    FILE *out;
    int count;
} dataset_listing;

static herr_t list_dataset(hid_t group, const char *name, const H5O_info_t *info, void *data)
{
    dataset_listing *listing = data;
    if (info->type != H5O_TYPE_DATASET) return 0;
    hid_t dataset = H5Dopen2(group, name, H5P_DEFAULT);
    hid_t space = dataset >= 0 ? H5Dget_space(dataset) : H5I_INVALID_HID;
    hsize_t dims[8] = {0};
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (rank >= 0 && rank <= 8) H5Sget_simple_extent_dims(space, dims, NULL);
    char shape[128];
    fedkd_h5_format_dims(shape, sizeof shape, rank > 0 ? rank : 0, dims);
    fprintf(listing->out, "%s/layers/%s %s", listing->count ? ",\n                " : "                ",
            name, shape);
    listing->count++;
    fedkd_h5_close(&space);
    fedkd_h5_close(&dataset);
    return 0;
}

static fedkd_status inspect_model(const char *path, FILE *out)
{
    fedkd_model_spec spec;
    float *params = NULL;
    size_t num_params = 0;
    char *metadata = NULL;
    fedkd_status status = fedkd_model_file_load(path, &spec, &params, &num_params, &metadata);
    if (status) return status;
    print_file_line(out, path);
    fprintf(out, "kind            model file, format_version %d\n", FEDKD_MODEL_FORMAT_VERSION);
    print_model(out, &spec, num_params, "/layers");
    fprintf(out, "datasets\n");
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    hid_t file = H5I_INVALID_HID;
    if (!fedkd_h5_open_read(path, "a fedkd model file", &file)) {
        hid_t layers = H5Gopen2(file, "layers", H5P_DEFAULT);
        dataset_listing listing = {out, 0};
        if (layers >= 0) H5Ovisit(layers, H5_INDEX_NAME, H5_ITER_INC, list_dataset, &listing);
        if (listing.count) fprintf(out, "\n");
        fedkd_h5_close(&layers);
        fedkd_h5_close(&file);
    }
    fedkd_h5_quiet_end(quiet);
    fedkd_error_clear();
    fprintf(out, "metadata        %s\n", metadata);
    free(params);
    free(metadata);
    return FEDKD_OK;
}

fedkd_status fedkd_inspect_file(const char *path, FILE *out)
{
    FEDKD_HDF5_REQUIRE();
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    hid_t file = H5I_INVALID_HID;
    char *format = NULL;
    fedkd_status status = fedkd_h5_open_read(path, "a fedkd checkpoint or model file", &file);
    if (!status) {
        int present = 0;
        status = fedkd_h5_has_attribute(file, "format", &present, path, "/");
        if (!status && !present)
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: not a fedkd checkpoint or model file (no root attribute "
                                "`format`)",
                                path);
        if (!status) status = fedkd_h5_read_string_attribute(file, "format", &format, path, "/");
    }
    fedkd_h5_close(&file);
    fedkd_h5_quiet_end(quiet);
    if (status) return status;
    if (strcmp(format, FEDKD_CHECKPOINT_FORMAT) == 0) status = inspect_checkpoint(path, out);
    else if (strcmp(format, FEDKD_MODEL_FORMAT) == 0) status = inspect_model(path, out);
    else
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: attribute `format` is \"%.64s\", expected \"%s\" or \"%s\"", path,
                            format, FEDKD_CHECKPOINT_FORMAT, FEDKD_MODEL_FORMAT);
    free(format);
    return status;
}

fedkd_status fedkd_checkpoint_export(const char *checkpoint_path, const char *model_path)
{
    fedkd_checkpoint k;
    fedkd_status status = fedkd_checkpoint_read(checkpoint_path, &k);
    if (status) return status;
    cJSON *metadata = cJSON_CreateObject();
    cJSON *config = cJSON_Parse(k.config_json);
    char *text = NULL;
    const fedkd_round_metrics *last = &k.metrics[k.num_metrics - 1];
    if (metadata && config && cJSON_AddStringToObject(metadata, "exported_from", checkpoint_path) &&
        cJSON_AddNumberToObject(metadata, "round", k.round) &&
        cJSON_AddNumberToObject(metadata, "test_accuracy", last->test_accuracy) &&
        cJSON_AddNumberToObject(metadata, "test_loss", last->test_loss) &&
        cJSON_AddItemToObject(metadata, "config", config)) {
        config = NULL;
        text = cJSON_PrintUnformatted(metadata);
    }
    cJSON_Delete(config);
    cJSON_Delete(metadata);
    if (!text)
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory exporting %s", checkpoint_path);
    else
        status = fedkd_model_file_save(model_path, &k.spec, k.global, k.num_params, text);
    free(text);
    fedkd_checkpoint_clear(&k);
    return status;
}
