/* Pre-training: every client trains its own model on its own partition, on
 * the rank that hosts it, with no communication, and keeps it as an HDF5
 * model file (include/fedkd/io/model_file.h) that later runs reuse.
 *
 * Reuse is decided by a fingerprint stored in the file's metadata: a hash
 * of everything the trained weights depend on (the client's samples,
 * labels and features as loaded, the model spec, seed, epochs, batch size
 * and optimizer settings), not of file paths, so a file made on another
 * machine with the same data and config is recognised. A file without a
 * fingerprint was made elsewhere and is imported as it is; a file with a
 * different fingerprint is stale and is retrained and overwritten (with a
 * warning), so that changing the config in the same run directory never
 * silently uses models of another config. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fedkd/core/core.h"
#include "fedkd/io/model_file.h"
#include "experiments/experiments_private.h"

static const char *const origin_names[] = {"?", "trained", "reused", "imported", "retrained"};

void kd_pretrain_dir(const fedkd_config *config, char *out, size_t out_size)
{
    if (config->pretrain.dir[0])
        snprintf(out, out_size, "%s", config->pretrain.dir);
    else
        snprintf(out, out_size, "%s/pretrained", config->run.dir);
}

void kd_pretrained_free(kd_pretrained *models, int count)
{
    for (int i = 0; models && i < count; i++) {
        free(models[i].params);
        models[i].params = NULL;
    }
}

/* ---- fingerprint ---------------------------------------------------------- */

static uint64_t fnv1a(uint64_t hash, const void *data, size_t bytes)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < bytes; i++) {
        hash ^= p[i];
        hash *= 1099511628211ull;
    }
    return hash;
}

static fedkd_status fingerprint(const fedkd_config *config, const fedkd_model_spec *spec,
                                int client, const fedkd_dataset *data, char *out, size_t out_size)
{
    cJSON *json = fedkd_model_spec_to_json(spec);
    char *spec_text = json ? cJSON_PrintUnformatted(json) : NULL;
    cJSON_Delete(json);
    if (!spec_text) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory hashing a model spec");
    fedkd_optimizer_settings opt = fedkd_train_optimizer_settings(config);
    int64_t numbers[] = {1 /* layout of this hash */, (int64_t)config->seed, client,
                         config->pretrain.epochs, config->local.batch_size,
                         (int64_t)data->count, data->num_classes, data->shape.channels,
                         data->shape.height, data->shape.width};
    float hyper[] = {opt.lr, opt.momentum, opt.weight_decay, opt.beta1, opt.beta2, opt.epsilon,
                     (float)opt.nesterov};
    uint64_t h = 14695981039346656037ull;
    h = fnv1a(h, numbers, sizeof numbers);
    h = fnv1a(h, hyper, sizeof hyper);
    h = fnv1a(h, opt.name, strlen(opt.name));
    h = fnv1a(h, spec_text, strlen(spec_text));
    h = fnv1a(h, data->labels, data->count * sizeof(int32_t));
    h = fnv1a(h, data->features, data->count * fedkd_dataset_sample_floats(data) * sizeof(float));
    free(spec_text);
    snprintf(out, out_size, "%016llx", (unsigned long long)h);
    return FEDKD_OK;
}

/* ---- one client -------------------------------------------------------------- */

/* A model file must fit the data it will see: same sample size and the
 * same classes (a teacher and a student of different classes cannot be
 * distilled into each other). */
static fedkd_status check_fits_data(const char *path, const fedkd_model_spec *spec,
                                    const kd_clients *clients, int client)
{
    if (spec->num_classes != clients->num_classes)
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: the model of client %d has %d classes, the data have %d: teacher "
                          "and student models must have the same number of classes",
                          path, client, spec->num_classes, clients->num_classes);
    if (fedkd_shape_size(spec->input) != fedkd_shape_size(clients->shape))
        return FEDKD_FAIL(FEDKD_ERR_FORMAT,
                          "%s: the model of client %d takes inputs of %zu values, the data's "
                          "samples have %zu",
                          path, client, fedkd_shape_size(spec->input),
                          fedkd_shape_size(clients->shape));
    return FEDKD_OK;
}

static int max_int(int a, int b) { return a > b ? a : b; }

/* Test accuracy of (spec, params); also proves that params fit the spec. */
static fedkd_status score(const fedkd_config *config, const char *path, const kd_clients *clients,
                          kd_pretrained *m)
{
    fedkd_model *model = NULL;
    fedkd_status status = fedkd_model_create(&model, &m->spec, config->eval_batch_size);
    if (status) return status;
    if (model->num_params != m->num_params) {
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT, "%s: holds %zu parameters, its spec needs %zu",
                            path, m->num_params, model->num_params);
    } else {
        memcpy(model->params, m->params, m->num_params * sizeof(float));
        double loss = 0.0;
        status = fedkd_evaluate(model, clients->test, &m->test_accuracy, &loss);
    }
    fedkd_model_destroy(&model);
    return status;
}

static fedkd_status train_client(const fedkd_config *config, const kd_clients *clients, int h,
                                 kd_pretrained *m)
{
    int client = clients->hosted[h];
    fedkd_model *model = NULL;
    fedkd_optimizer *optimizer = NULL;
    fedkd_optimizer_settings opt = fedkd_train_optimizer_settings(config);
    fedkd_status status = fedkd_model_create(
        &model, &clients->spec, max_int(config->local.batch_size, config->eval_batch_size));
    if (!status) status = fedkd_optimizer_create(&optimizer, &opt, model->num_params);
    if (status) goto done;
    fedkd_model_init_params(model, config->seed, FEDKD_PRETRAIN_INIT_ID + (uint64_t)client);
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = config->pretrain.epochs;
    train.batch_size = config->local.batch_size;
    train.seed = config->seed;
    train.stream_a = (uint64_t)client;
    train.stream_b = FEDKD_PRETRAIN_STREAM;
    fedkd_train_stats stats;
    status = fedkd_train_local(model, optimizer, clients->data[h], &train, &stats);
    if (status) goto done;
    m->seconds = stats.seconds;
    m->spec = clients->spec;
    m->num_params = model->num_params;
    m->params = malloc(model->num_params * sizeof(float));
    if (!m->params) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for client %d's model", client);
        goto done;
    }
    memcpy(m->params, model->params, model->num_params * sizeof(float));
    double loss = 0.0;
    status = fedkd_evaluate(model, clients->test, &m->test_accuracy, &loss);
done:
    fedkd_optimizer_destroy(&optimizer);
    fedkd_model_destroy(&model);
    return status;
}

static fedkd_status save_client(const fedkd_config *config, const char *path, int client,
                                const fedkd_dataset *data, const char *print, const kd_pretrained *m)
{
    char scheme[64];
    kd_scheme_label(config, scheme, sizeof scheme);
    cJSON *meta = cJSON_CreateObject();
    if (!meta) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing %s", path);
    cJSON_AddStringToObject(meta, "made_by", "fedkd-sim " FEDKD_VERSION " pretrain");
    cJSON_AddNumberToObject(meta, "client", client);
    cJSON_AddNumberToObject(meta, "seed", (double)config->seed);
    cJSON_AddStringToObject(meta, "data", config->data.name);
    cJSON_AddStringToObject(meta, "partition", scheme);
    cJSON_AddNumberToObject(meta, "clients", config->clients.count);
    cJSON_AddNumberToObject(meta, "epochs", config->pretrain.epochs);
    cJSON_AddNumberToObject(meta, "train_size", (double)data->count);
    cJSON_AddNumberToObject(meta, "test_accuracy", m->test_accuracy);
    cJSON_AddStringToObject(meta, "fingerprint", print);
    char *text = cJSON_PrintUnformatted(meta);
    cJSON_Delete(meta);
    if (!text) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing %s", path);
    fedkd_status status = fedkd_model_file_save(path, &m->spec, m->params, m->num_params, text);
    free(text);
    return status;
}

/* What an existing file's metadata says: its fingerprint, or "" if none. */
static void stored_fingerprint(const char *metadata, char *out, size_t out_size)
{
    out[0] = '\0';
    cJSON *json = metadata ? cJSON_Parse(metadata) : NULL;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, "fingerprint");
    if (cJSON_IsString(item) && item->valuestring)
        snprintf(out, out_size, "%s", item->valuestring);
    cJSON_Delete(json);
}

static fedkd_status pretrain_client(const fedkd_config *config, const kd_clients *clients, int h,
                                    const char *dir, kd_pretrained *m)
{
    int client = clients->hosted[h];
    const fedkd_dataset *data = clients->data[h];
    char path[640], print[32], stored[64];
    snprintf(path, sizeof path, "%s/client-%d.h5", dir, client);
    fedkd_status status = fingerprint(config, &clients->spec, client, data, print, sizeof print);
    if (status) return status;
    int retrain = 0;
    if (access(path, F_OK) == 0) {
        char *metadata = NULL;
        status = fedkd_model_file_load(path, &m->spec, &m->params, &m->num_params, &metadata);
        if (status) return status;
        stored_fingerprint(metadata, stored, sizeof stored);
        free(metadata);
        if (!stored[0] || strcmp(stored, print) == 0) {
            m->origin = stored[0] ? KD_REUSED : KD_IMPORTED;
            status = check_fits_data(path, &m->spec, clients, client);
            if (!status) status = score(config, path, clients, m);
            return status;
        }
        fedkd_log_warn("%s was pre-trained on other data or with another model or training "
                       "config (fingerprint %s, now %s): training client %d again and "
                       "overwriting it", path, stored, print, client);
        free(m->params);
        m->params = NULL;
        retrain = 1;
    } else if (errno != ENOENT) {
        return FEDKD_FAIL(FEDKD_ERR_IO, "%s: cannot check for a pre-trained model: %s", path,
                          strerror(errno));
    }
    status = train_client(config, clients, h, m);
    if (status) return status;
    m->origin = retrain ? KD_RETRAINED : KD_TRAINED;
    return save_client(config, path, client, data, print, m);
}

fedkd_status kd_pretrain_hosted(const fedkd_config *config, const kd_clients *clients,
                                kd_pretrained *models)
{
    char dir[600];
    kd_pretrain_dir(config, dir, sizeof dir);
    if (clients->num_hosted == 0) return FEDKD_OK;
    fedkd_status status = fedkd_make_directories(dir);
    for (int h = 0; h < clients->num_hosted && !status; h++) {
        if (fedkd_stop_requested)
            return FEDKD_FAIL(FEDKD_ERR_INTERRUPTED,
                              "interrupted by signal %d while pre-training; finished models are "
                              "in %s", (int)fedkd_stop_requested, dir);
        status = pretrain_client(config, clients, h, dir, &models[h]);
    }
    return status;
}

/* ---- report ------------------------------------------------------------------- */

enum { REPORT_ORIGIN, REPORT_SIZE, REPORT_ACCURACY, REPORT_SECONDS, REPORT_FIELDS };

fedkd_status kd_pretrain_report(const fedkd_config *config, MPI_Comm comm,
                                const kd_clients *clients, const kd_pretrained *models,
                                fedkd_status local)
{
    fedkd_status status = fedkd_comm_agree(comm, local);
    if (status) return status;
    int n = clients->num_clients;
    size_t length = (size_t)n * REPORT_FIELDS;
    double *mine = calloc(length, sizeof *mine), *all = calloc(length, sizeof *all);
    if (!mine || !all) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the report");
    status = fedkd_comm_agree(comm, status);
    if (status) goto done;
    for (int h = 0; h < clients->num_hosted; h++) {
        double *row = mine + (size_t)clients->hosted[h] * REPORT_FIELDS;
        row[REPORT_ORIGIN] = models[h].origin;
        row[REPORT_SIZE] = (double)clients->data[h]->count;
        row[REPORT_ACCURACY] = models[h].test_accuracy;
        row[REPORT_SECONDS] = models[h].seconds;
    }
    /* One rank fills each client's row; the others add exact zeros. */
    MPI_Request request;
    if (MPI_Ireduce(mine, all, (int)length, MPI_DOUBLE, MPI_SUM, 0, comm, &request) != MPI_SUCCESS)
        status = FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ireduce of the pre-training report failed");
    else
        status = fedkd_comm_wait(&request, "the pre-training report");
    if (!status && clients->rank == 0) {
        char dir[600];
        kd_pretrain_dir(config, dir, sizeof dir);
        cJSON *json = cJSON_CreateObject();
        cJSON *list = cJSON_AddArrayToObject(json, "clients");
        cJSON_AddStringToObject(json, "dir", dir);
        cJSON_AddNumberToObject(json, "epochs", config->pretrain.epochs);
        fedkd_log_info("pre-trained models in %s:", dir);
        fedkd_log_info("  client  samples  origin     test-acc  seconds");
        for (int c = 0; c < n && list; c++) {
            const double *row = all + (size_t)c * REPORT_FIELDS;
            int origin = (int)row[REPORT_ORIGIN];
            const char *name = origin_names[origin >= 1 && origin <= 4 ? origin : 0];
            cJSON *item = cJSON_CreateObject();
            cJSON_AddItemToArray(list, item);
            cJSON_AddNumberToObject(item, "client", c);
            cJSON_AddNumberToObject(item, "train_size", row[REPORT_SIZE]);
            cJSON_AddStringToObject(item, "origin", name);
            cJSON_AddNumberToObject(item, "test_accuracy", row[REPORT_ACCURACY]);
            cJSON_AddNumberToObject(item, "seconds", row[REPORT_SECONDS]);
            fedkd_log_info("  %6d  %7.0f  %-9s  %8.4f  %7.2f", c, row[REPORT_SIZE], name,
                           row[REPORT_ACCURACY], row[REPORT_SECONDS]);
        }
        status = list ? fedkd_make_directories(config->run.dir)
                      : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing pretrain.json");
        if (!status) status = fedkd_write_json_file(config->run.dir, "pretrain.json", json);
        cJSON_Delete(json);
    }
    status = fedkd_comm_agree(comm, status);
done:
    free(mine);
    free(all);
    return status;
}

fedkd_status fedkd_run_pretrain(const fedkd_config *config, MPI_Comm comm,
                                const fedkd_run_options *options, fedkd_run_result *result)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    memset(result, 0, sizeof *result);
    double start = fedkd_time_now();
    kd_clients clients;
    kd_pretrained *models = NULL;
    unsigned flags = options ? options->data_flags : 0;
    fedkd_status status = kd_clients_load(config, rank, size, flags, &clients);
    if (!status) {
        models = calloc((size_t)(clients.num_hosted ? clients.num_hosted : 1), sizeof *models);
        if (!models) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client models");
    }
    status = fedkd_comm_agree(comm, status);
    if (!status) {
        if (rank == 0)
            fedkd_log_info("pretrain: %d clients on %d rank(s), partition %s, model %s, %d "
                           "epoch(s)", clients.num_clients, size, config->partition.scheme,
                           clients.spec.name, config->pretrain.epochs);
        status = kd_pretrain_hosted(config, &clients, models);
        status = kd_pretrain_report(config, comm, &clients, models, status);
    }
    result->wall_seconds = fedkd_time_now() - start;
    kd_pretrained_free(models, clients.num_hosted);
    free(models);
    kd_clients_free(&clients);
    return status;
}
