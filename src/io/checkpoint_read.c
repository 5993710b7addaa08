/* Reading and validating checkpoints (layout in include/fedkd/io/checkpoint.h).
 * One process reads; every check names the file and the attribute or
 * dataset that is wrong, so that a damaged or foreign file is refused with
 * one line a user can act on. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <cjson/cJSON.h>

#include "fedkd/core/checked.h"
#include "fedkd/io/checkpoint.h"
#include "fedkd/core/core.h"
#include "fedkd/io/model_file.h"
#include "fedkd/nn/model_json.h"
#include "io/checkpoint_internal.h"
#include "io/h5_util.h"

/* The round records and per-model scores grow with the run, about 120
 * bytes a round, and a checkpoint is read back after every write. malloc'd,
 * each read-back's copy was a little larger than the last and the server's
 * heap crept up with it; from 64 KiB the copies are mapped and unmapped, so
 * they leave nothing resident behind (issue 13, memory flat). A header
 * before the data keeps the mapping's length. */
enum { HISTORY_HEADER = 64, HISTORY_MAPPED = 64 << 10 };

static void *history_alloc(size_t bytes)
{
    size_t total = bytes + HISTORY_HEADER;
    unsigned char *block;
    if (total >= HISTORY_MAPPED) {
        block = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (block == MAP_FAILED) return NULL;
    } else {
        block = calloc(1, total);
        if (!block) return NULL;
    }
    memcpy(block, &total, sizeof total);
    return block + HISTORY_HEADER;
}

static void history_free(void *data)
{
    if (!data) return;
    unsigned char *block = (unsigned char *)data - HISTORY_HEADER;
    size_t total;
    memcpy(&total, block, sizeof total);
    if (total >= HISTORY_MAPPED)
        munmap(block, total);
    else
        free(block);
}

static fedkd_status open_group(hid_t parent, const char *name, const char *where, hid_t *group,
                               const char *file)
{
    *group = H5I_INVALID_HID;
    if (H5Lexists(parent, name, H5P_DEFAULT) <= 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: group `%s` is missing", file, where);
    *group = H5Gopen2(parent, name, H5P_DEFAULT);
    if (*group < 0) {
        char reason[256];
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: `%s` cannot be opened as a group: %s", file, where,
                          fedkd_h5_last_error(reason, sizeof reason));
    }
    return FEDKD_OK;
}

/* Opens a dataset of known shape and reads it whole. */
static fedkd_status read_exact(hid_t parent, const char *name, const char *where,
                               H5T_class_t want_class, hid_t memory_type, int rank,
                               const hsize_t *dims, void *data, const char *file, const char *why)
{
    hid_t dataset;
    fedkd_status status = fedkd_h5_open_dataset(parent, name, want_class, rank, dims, &dataset,
                                                file, where, why);
    if (status) return status;
    status = fedkd_h5_read_all(dataset, memory_type, data, file, where);
    H5Dclose(dataset);
    return status;
}

static fedkd_status read_root(hid_t file, fedkd_checkpoint *k)
{
    const char *path = k->path;
    char *format = NULL, *version_text = NULL;
    int64_t version = 0, round = 0;
    fedkd_status status = fedkd_h5_read_string_attribute(file, "format", &format, path, "/");
    if (status) goto done;
    if (strcmp(format, FEDKD_CHECKPOINT_FORMAT) != 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: not a fedkd checkpoint (attribute `format` is \"%.64s\", "
                            "expected \"%s\")%s",
                            path, format, FEDKD_CHECKPOINT_FORMAT,
                            strcmp(format, "fedkd-model") == 0 ? ": it is a model file" : "");
        goto done;
    }
    status = fedkd_h5_read_int64_attribute(file, "format_version", &version, 1, path, "/");
    if (!status)
        status = fedkd_h5_read_string_attribute(file, "fedkd_sim_version", &version_text, path,
                                                "/");
    if (status) goto done;
    if (version > FEDKD_CHECKPOINT_FORMAT_VERSION) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: checkpoint format_version %lld (written by fedkd-sim %.30s) is "
                            "newer than this fedkd-sim %s reads (version %d); use a newer "
                            "fedkd-sim",
                            path, (long long)version, version_text, FEDKD_VERSION,
                            FEDKD_CHECKPOINT_FORMAT_VERSION);
        goto done;
    }
    if (version < 1) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `format_version` is %lld, expected %d",
                            path, (long long)version, FEDKD_CHECKPOINT_FORMAT_VERSION);
        goto done;
    }
    k->format_version = (int)version;
    snprintf(k->fedkd_sim_version, sizeof k->fedkd_sim_version, "%s", version_text);
    status = fedkd_h5_read_int64_attribute(file, "round", &round, 1, path, "/");
    if (status) goto done;
    if (round < 1 || round > INT_MAX) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `round` is %lld, expected >= 1", path,
                            (long long)round);
        goto done;
    }
    k->round = (int)round;
    status = fedkd_h5_read_string_attribute(file, "config", &k->config_json, path, "/");
done:
    free(format);
    free(version_text);
    return status;
}

static fedkd_status read_clients(hid_t file, fedkd_checkpoint *k)
{
    const char *path = k->path;
    hid_t group, dataset = H5I_INVALID_HID;
    fedkd_status status = open_group(file, "clients", "/clients", &group, path);
    if (status) return status;
    int64_t count = 0, state_len = 0;
    status = fedkd_h5_read_int64_attribute(group, "num_clients", &count, 1, path, "/clients");
    if (!status)
        status = fedkd_h5_read_int64_attribute(group, "state_len", &state_len, 1, path, "/clients");
    if (status) goto done;
    if (count < 1 || count > INT_MAX || state_len < 0) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: /clients says %lld clients with %lld floats of state each, "
                            "expected >= 1 and >= 0",
                            path, (long long)count, (long long)state_len);
        goto done;
    }
    uint64_t extents[2] = {(uint64_t)count, (uint64_t)state_len};
    status = fedkd_size_of_extents(path, "/clients/num_samples (num_clients)", 1, extents,
                                   sizeof(int64_t), 0, fedkd_file_bytes(path), NULL, NULL);
    if (!status)
        status = fedkd_size_of_extents(path, "/clients/state (num_clients x state_len)", 2,
                                       extents, sizeof(float), 1, fedkd_file_bytes(path), NULL,
                                       NULL);
    if (status) goto done;
    k->num_clients = (int)count;
    k->client_state_len = (size_t)state_len;
    k->client_num_samples = malloc((size_t)count * sizeof *k->client_num_samples);
    if (!k->client_num_samples) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for %lld clients", path,
                            (long long)count);
        goto done;
    }
    hsize_t dims[2] = {(hsize_t)count, (hsize_t)state_len};
    status = read_exact(group, "num_samples", "/clients/num_samples", H5T_INTEGER,
                        H5T_NATIVE_INT64, 1, dims, k->client_num_samples, path,
                        "(one per client)");
    if (!status && state_len > 0)
        status = fedkd_h5_open_dataset(group, "state", H5T_FLOAT, 2, dims, &dataset, path,
                                       "/clients/state", "(clients x /clients state_len)");
done:
    fedkd_h5_close(&dataset);
    H5Gclose(group);
    return status;
}

static fedkd_status read_partition(hid_t file, fedkd_checkpoint *k)
{
    const char *path = k->path;
    int n = k->num_clients;
    hid_t group;
    char *scheme = NULL;
    int64_t *offsets = NULL;
    fedkd_partition *p = calloc(1, sizeof *p);
    if (!p) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for the partition", path);
    k->partition = p;
    fedkd_status status = open_group(file, "partition", "/partition", &group, path);
    if (status) return status;
    int64_t classes = 0, total = 0, dropped = 0;
    status = fedkd_h5_read_string_attribute(group, "scheme", &scheme, path, "/partition");
    if (!status)
        status = fedkd_h5_read_int64_attribute(group, "num_classes", &classes, 1, path, "/partition");
    if (!status) status = fedkd_h5_read_int64_attribute(group, "total", &total, 1, path, "/partition");
    if (!status)
        status = fedkd_h5_read_int64_attribute(group, "dropped", &dropped, 1, path, "/partition");
    if (status) goto done;
    if (classes < 1 || classes > 1 << 20 || total < 0 || total > UINT32_MAX || dropped < 0 ||
        dropped > total) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: /partition attributes num_classes %lld, total %lld, dropped %lld "
                            "are inconsistent",
                            path, (long long)classes, (long long)total, (long long)dropped);
        goto done;
    }
    uint64_t extents[2] = {(uint64_t)n, (uint64_t)classes}, index_extent[1] = {(uint64_t)total};
    status = fedkd_size_of_extents(path, "/partition/histograms (clients x num_classes)", 2,
                                   extents, sizeof(uint32_t), 0, fedkd_file_bytes(path), NULL,
                                   NULL);
    if (!status)
        status = fedkd_size_of_extents(path, "/partition/indices (total)", 1, index_extent,
                                       sizeof(uint32_t), 1, fedkd_file_bytes(path), NULL, NULL);
    if (status) goto done;
    snprintf(p->scheme, sizeof p->scheme, "%s", scheme);
    p->num_clients = n;
    p->num_classes = (int)classes;
    p->total = (size_t)total;
    p->dropped = (size_t)dropped;
    offsets = malloc(((size_t)n + 1) * sizeof *offsets);
    p->offsets = malloc(((size_t)n + 1) * sizeof *p->offsets);
    p->histograms = malloc((size_t)n * (size_t)classes * sizeof *p->histograms);
    p->noise_sigma = malloc((size_t)n * sizeof *p->noise_sigma);
    if (!offsets || !p->offsets || !p->histograms || !p->noise_sigma) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for the partition", path);
        goto done;
    }
    hsize_t offset_dims[1] = {(hsize_t)n + 1};
    status = read_exact(group, "offsets", "/partition/offsets", H5T_INTEGER, H5T_NATIVE_INT64, 1,
                        offset_dims, offsets, path, "(clients + 1)");
    if (status) goto done;
    for (int c = 0; c <= n; c++) {
        int64_t previous = c ? offsets[c - 1] : 0;
        if (offsets[c] < previous || offsets[c] > total || (c == 0 && offsets[0] != 0) ||
            (c > 0 && offsets[c] - previous != k->client_num_samples[c - 1])) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: /partition/offsets[%d] = %lld does not agree with "
                                "/clients/num_samples and the %lld samples partitioned",
                                path, c, (long long)offsets[c], (long long)total);
            goto done;
        }
        p->offsets[c] = (size_t)offsets[c];
    }
    p->indices = malloc((p->offsets[n] ? p->offsets[n] : 1) * sizeof *p->indices);
    if (!p->indices) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for the partition", path);
        goto done;
    }
    hsize_t index_dims[1] = {p->offsets[n]};
    hsize_t histogram_dims[2] = {(hsize_t)n, (hsize_t)classes}, client_dims[1] = {(hsize_t)n};
    status = read_exact(group, "indices", "/partition/indices", H5T_INTEGER, H5T_NATIVE_UINT32, 1,
                        index_dims, p->indices, path, "(the last offset)");
    if (!status)
        status = read_exact(group, "histograms", "/partition/histograms", H5T_INTEGER,
                            H5T_NATIVE_UINT32, 2, histogram_dims, p->histograms, path,
                            "(clients x classes)");
    if (!status)
        status = read_exact(group, "noise_sigma", "/partition/noise_sigma", H5T_FLOAT,
                            H5T_NATIVE_DOUBLE, 1, client_dims, p->noise_sigma, path,
                            "(one per client)");
    /* Indices are training-set rows, ascending within each client. They
     * are not bounded by `total`: with a public set held out of the training
     * set (include/fedkd/data/clientset.h), `total` counts the rows partitioned
     * while the indices still number the whole training set. */
    for (int c = 0; !status && c < n; c++)
        for (size_t i = p->offsets[c] + 1; !status && i < p->offsets[c + 1]; i++)
            if (p->indices[i] <= p->indices[i - 1])
                status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                    "%s: /partition/indices[%zu] = %u of client %d is not above "
                                    "the client's previous row %u", path, i, p->indices[i], c,
                                    p->indices[i - 1]);
done:
    free(scheme);
    free(offsets);
    H5Gclose(group);
    return status;
}

/* /metrics/models, where the run had several global models: float64
 * [round, 2 * models], 1 <= models <= FEDKD_MAX_MODEL_METRICS. */
static fedkd_status read_model_scores(hid_t group, fedkd_checkpoint *k)
{
    const char *path = k->path, *where = "/metrics/models";
    htri_t exists = H5Lexists(group, "models", H5P_DEFAULT);
    if (exists < 0)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: cannot look up %s", path, where);
    if (!exists) return FEDKD_OK;
    hid_t dataset = H5Dopen2(group, "models", H5P_DEFAULT);
    hid_t space = dataset >= 0 ? H5Dget_space(dataset) : H5I_INVALID_HID;
    hsize_t dims[2] = {0, 0};
    int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (rank == 2) H5Sget_simple_extent_dims(space, dims, NULL);
    if (space >= 0) H5Sclose(space);
    if (dataset >= 0) H5Dclose(dataset);
    if (rank != 2 || dims[0] != (hsize_t)k->round || dims[1] < 2 || dims[1] % 2 != 0 ||
        dims[1] > 2 * FEDKD_MAX_MODEL_METRICS)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: %s must be float64 [%d, 2 x models] with 1 to %d models",
                          path, where, k->round, FEDKD_MAX_MODEL_METRICS);
    k->num_models = (int)(dims[1] / 2);
    k->model_scores = history_alloc((size_t)dims[0] * (size_t)dims[1] * sizeof(double));
    if (!k->model_scores)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for %s", path, where);
    return read_exact(group, "models", where, H5T_FLOAT, H5T_NATIVE_DOUBLE, 2, dims,
                      k->model_scores, path, "(per-model scores of every round)");
}

static fedkd_status read_metrics(hid_t file, fedkd_checkpoint *k)
{
    const char *path = k->path;
    hid_t group, file_type = H5I_INVALID_HID, memory_type = H5I_INVALID_HID;
    hid_t dataset = H5I_INVALID_HID;
    fedkd_status status = open_group(file, "metrics", "/metrics", &group, path);
    if (status) return status;
    /* A stored record is at least a quarter of the one in memory (packed,
     * some fields narrower): a bound, not the exact size. */
    uint64_t rounds[1] = {(uint64_t)k->round};
    status = fedkd_size_of_extents(path, "/metrics/rounds (attribute `round` records)", 1, rounds,
                                   sizeof *k->metrics / 4, 0, fedkd_file_bytes(path), NULL, NULL);
    if (status) goto done;
    k->metrics = history_alloc((size_t)k->round * sizeof *k->metrics);
    if (!k->metrics) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory for %d rounds", path, k->round);
        goto done;
    }
    k->num_metrics = k->round;
    hsize_t dims[1] = {(hsize_t)k->round};
    status = fedkd_checkpoint_metrics_types(&file_type, &memory_type);
    if (!status)
        status = fedkd_h5_open_dataset(group, "rounds", H5T_COMPOUND, 1, dims, &dataset, path,
                                       "/metrics/rounds", "(one record per round)");
    if (!status) status = fedkd_h5_read_all(dataset, memory_type, k->metrics, path, "/metrics/rounds");
    for (int i = 0; !status && i < k->round; i++)
        if (k->metrics[i].round != i + 1)
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: /metrics/rounds[%d] has round %d, expected %d", path, i,
                                k->metrics[i].round, i + 1);
    if (!status)
        status = read_exact(group, "wall_seconds", "/metrics/wall_seconds", H5T_FLOAT,
                            H5T_NATIVE_DOUBLE, 0, dims, &k->wall_seconds, path, "");
    if (!status) status = read_model_scores(group, k);
done:
    fedkd_h5_close(&dataset);
    fedkd_h5_close(&file_type);
    fedkd_h5_close(&memory_type);
    H5Gclose(group);
    return status;
}

/* The checkpoint's own config must describe what the file holds. */
static fedkd_status check_against_own_config(fedkd_checkpoint *k)
{
    cJSON *config = cJSON_Parse(k->config_json);
    fedkd_status status = FEDKD_OK;
    if (!cJSON_IsObject(config)) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: attribute `config` is not a JSON object",
                            k->path);
        goto done;
    }
    const cJSON *clients = cJSON_GetObjectItemCaseSensitive(config, "clients");
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(clients, "count");
    if (!cJSON_IsNumber(count) || count->valuedouble != (double)k->num_clients) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: /clients holds %d clients but the checkpoint's config key "
                            "`clients.count` is %g",
                            k->path, k->num_clients, cJSON_IsNumber(count) ? count->valuedouble : -1.0);
        goto done;
    }
    fedkd_model_spec from_config;
    char where[1100];
    snprintf(where, sizeof where, "%s: the checkpoint's config key `model`", k->path);
    status = fedkd_model_spec_from_json(&from_config, cJSON_GetObjectItemCaseSensitive(config, "model"),
                                        k->spec.input, k->spec.num_classes, where);
    if (status) {
        char message[1200];
        snprintf(message, sizeof message, "%s", fedkd_error_message());
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s", message);
        goto done;
    }
    char difference[256];
    if (fedkd_model_spec_difference(&k->spec, &from_config, difference, sizeof difference))
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: the model in /global does not match the checkpoint's config key "
                            "`model`: %s",
                            k->path, difference);
done:
    cJSON_Delete(config);
    return status;
}

fedkd_status fedkd_checkpoint_read(const char *path, fedkd_checkpoint *k)
{
    memset(k, 0, sizeof *k);
    snprintf(k->path, sizeof k->path, "%s", path);
    FEDKD_HDF5_REQUIRE();
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    hid_t file = H5I_INVALID_HID, server = H5I_INVALID_HID, dataset = H5I_INVALID_HID;
    fedkd_status status = fedkd_h5_open_read(path, "a fedkd checkpoint", &file);
    if (!status) status = read_root(file, k);
    if (!status) status = fedkd_model_group_read(file, "global", &k->spec, &k->global, &k->num_params);
    if (!status) status = open_group(file, "server", "/server", &server, path);
    if (!status) {
        hsize_t dims[1] = {0};
        status = fedkd_h5_open_dataset_any(server, "state", H5T_FLOAT, 1, dims, &dataset, path,
                                           "/server/state");
        uint64_t extent[1] = {dims[0]};
        size_t bytes = 0;
        /* Written contiguous and uncompressed: never more than the file. */
        if (!status)
            status = fedkd_size_of_extents(path, "dataset `/server/state`", 1, extent,
                                           sizeof *k->server_state, 1, fedkd_file_bytes(path),
                                           NULL, &bytes);
        k->server_state_len = status ? 0 : (size_t)dims[0];
        if (!status && dims[0] > 0) {
            k->server_state = malloc(bytes);
            status = k->server_state
                         ? fedkd_h5_read_all(dataset, H5T_NATIVE_FLOAT, k->server_state, path,
                                             "/server/state")
                         : FEDKD_FAIL(FEDKD_ERR_NOMEM, "%s: out of memory", path);
        }
    }
    if (!status) status = read_clients(file, k);
    if (!status) status = read_partition(file, k);
    if (!status) status = read_metrics(file, k);
    if (!status) status = check_against_own_config(k);
    fedkd_h5_close(&dataset);
    fedkd_h5_close(&server);
    fedkd_h5_close(&file);
    if (status) fedkd_checkpoint_clear(k);
    fedkd_h5_quiet_end(quiet);
    return status;
}

void fedkd_checkpoint_clear(fedkd_checkpoint *k)
{
    free(k->config_json);
    free(k->global);
    free(k->server_state);
    free(k->client_num_samples);
    history_free(k->metrics);
    history_free(k->model_scores);
    fedkd_partition_destroy(&k->partition);
    char path[sizeof k->path];
    memcpy(path, k->path, sizeof path);
    memset(k, 0, sizeof *k);
    memcpy(k->path, path, sizeof path);
}

fedkd_status fedkd_checkpoint_read_client_states(const char *path, const int *clients, int n,
                                                 size_t state_len, float *out)
{
    if (n == 0 || state_len == 0) return FEDKD_OK;
    FEDKD_HDF5_REQUIRE();
    fedkd_h5_quiet quiet = fedkd_h5_quiet_begin();
    hid_t file = H5I_INVALID_HID, dataset = H5I_INVALID_HID, space = H5I_INVALID_HID,
          memory = H5I_INVALID_HID;
    hsize_t dims[2] = {0, 0};
    char reason[256];
    fedkd_status status = fedkd_h5_open_read(path, "a fedkd checkpoint", &file);
    if (!status)
        status = fedkd_h5_open_dataset_any(file, "/clients/state", H5T_FLOAT, 2, dims, &dataset,
                                           path, "/clients/state");
    if (!status && dims[1] != state_len)
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "%s: dataset `/clients/state` has rows of %llu floats, expected %zu",
                            path, (unsigned long long)dims[1], state_len);
    if (status) goto done;
    hsize_t row[1] = {state_len};
    memory = H5Screate_simple(1, row, NULL);
    space = H5Dget_space(dataset);
    for (int i = 0; i < n && !status; i++) {
        if (clients[i] < 0 || (hsize_t)clients[i] >= dims[0]) {
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: dataset `/clients/state` has %llu rows, client %d is missing",
                                path, (unsigned long long)dims[0], clients[i]);
            break;
        }
        hsize_t start[2] = {(hsize_t)clients[i], 0}, count[2] = {1, state_len};
        if (memory < 0 || space < 0 ||
            H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(dataset, H5T_NATIVE_FLOAT, memory, space, H5P_DEFAULT,
                    out + (size_t)i * state_len) < 0)
            status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                                "%s: cannot read client %d's row of /clients/state: %s", path,
                                clients[i], fedkd_h5_last_error(reason, sizeof reason));
    }
done:
    fedkd_h5_close(&memory);
    fedkd_h5_close(&space);
    fedkd_h5_close(&dataset);
    fedkd_h5_close(&file);
    fedkd_h5_quiet_end(quiet);
    return status;
}
