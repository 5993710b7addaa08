/* Persistent state of a federation between rounds, where a run starts
 * (a checkpoint, init.model or the seeded initialisation) and checkpoints.
 * Split from federation.c, which runs the rounds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/io/checkpoint.h"
#include "fedkd/core/core.h"
#include "fedkd/io/model_file.h"
#include "fl/compress.h"
#include "fl/federation_private.h"
#include "fl/softlabel.h"


/* Floats of state an algorithm keeps between rounds, per client and on the
 * server. FedAvg, FedProx and FedDF keep none per client: every selected
 * client starts from the global weights (FedDF: its architecture's) with a
 * fresh optimizer; FedDF's server keeps the global models of its
 * architectures after the first (`model`'s). Clients that keep their
 * own model (FedMD, DS-FL, FD, DML) keep its parameters: a row is as long
 * as the largest architecture of clients.models, a smaller model's row
 * ends in zeros. Their server keeps the consensus it broadcasts next round.
 * Checkpoints save and restore both by client id, whatever the number of
 * ranks. Optimizer moments are not kept: every round starts them fresh. */
static void state_sizes(const federation *f, size_t *per_client, size_t *server)
{
    /* SCAFFOLD keeps a control variate per client beside the global model. */
    const fl_algorithm_ops *ops = f->algorithm->ops;
    *per_client = ops->client_state_len ? ops->client_state_len(&f->run)
                  : f->algorithm->global_model ? 0
                                               : f->run.models.max_params;
    *server = f->algorithm->ops->server_state_len(&f->run);
}

/* Top-k's error residuals follow the algorithm's state in a client's row
 * (compress.h), so checkpoints carry them as they carry the rest. */
static size_t residual_len(const federation *f)
{
    fl_payload payload = f->algorithm->ops->payload(&f->run, 2);
    return f->algorithm->global_model ? fl_residual_len(f->config, &payload) : 0;
}

fedkd_status fl_fed_allocate_state(federation *f)
{
    state_sizes(f, &f->client_state_len, &f->server_state_len);
    f->residual_len = residual_len(f);
    f->client_state_len += f->residual_len;
    size_t client_floats = f->client_state_len * (size_t)f->num_hosted;
    if (client_floats && !(f->client_state = fedkd_alloc(client_floats * sizeof(float))))
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu floats of client state",
                          client_floats);
    if (f->rank == 0 && f->server_state_len &&
        !(f->server_state = fedkd_alloc(f->server_state_len * sizeof(float))))
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu floats of server state",
                          f->server_state_len);
    /* State beside a global model (SCAFFOLD's variates) starts at zero,
     * the server's where its algorithm says (FedDF's other architectures). */
    if (client_floats) memset(f->client_state, 0, client_floats * sizeof(float));
    if (f->server_state) memset(f->server_state, 0, f->server_state_len * sizeof(float));
    if (f->server_state && f->algorithm->ops->init_server_state) {
        fedkd_status status = f->algorithm->ops->init_server_state(&f->run, f->server_state);
        if (status) return status;
    }
    /* Each client's own model starts from its own seeded initialisation
     * (a resume then overwrites the rows). */
    for (int h = 0; f->client_state_len && !f->algorithm->global_model && h < f->num_hosted; h++) {
        int client = f->hosted[h];
        fedkd_model *model = f->train_models[fl_client_model_entry(&f->run.models, client)];
        fedkd_model_init_params(model, f->config->seed, FL_CLIENT_MODEL_INIT_ID + (uint64_t)client);
        memcpy(f->client_state + (size_t)h * f->client_state_len, model->params,
               model->num_params * sizeof(float));
    }
    return FEDKD_OK;
}

float *fl_fed_global_model(federation *f, int g)
{
    return g == 0 ? f->global : f->server_state + (f->run.global_offset[g] - f->num_params);
}

uint64_t fl_fed_client_checksum(federation *f)
{
    for (int c = 0; c < f->num_clients; c++) f->checksums[c] = 0;
    for (int h = 0; h < f->num_hosted; h++) {
        size_t n = f->run.models.num_params[fl_client_model_entry(&f->run.models, f->hosted[h])];
        f->checksums[f->hosted[h]] =
            fedkd_checksum(f->client_state + (size_t)h * f->client_state_len, n * sizeof(float));
    }
    /* Each client's entry is non-zero on its host only: XOR combines them
     * whatever the placement. */
    uint64_t *all = f->checksums + f->num_clients;
    if (MPI_Reduce(f->checksums, all, f->num_clients, MPI_UINT64_T, MPI_BXOR, 0, f->comm) !=
        MPI_SUCCESS)
        return 0;
    return f->rank == 0 ? fedkd_checksum(all, (size_t)f->num_clients * sizeof *all) : 0;
}

/* Rank 0, fresh runs: the global model starts from init.model's weights. */
static fedkd_status load_init_model(federation *f)
{
    const char *path = f->config->init.model;
    fedkd_model_spec spec;
    float *params = NULL;
    size_t num_params = 0;
    char difference[256];
    fedkd_status status = fedkd_model_file_load(path, &spec, &params, &num_params, NULL);
    if (status) {
        char message[1024];
        snprintf(message, sizeof message, "%s", fedkd_error_message());
        return FEDKD_FAIL(status, "config key `init.model`: %s", message);
    }
    if (fedkd_model_spec_difference(&f->spec, &spec, difference, sizeof difference))
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `init.model`: %s holds another model than config key "
                            "`model` describes (config vs file: %s)",
                            path, difference);
    else
        memcpy(f->global, params, f->num_params * sizeof(float));
    free(params);
    if (!status) fedkd_log_info("global model initialised from %s", path);
    return status;
}

/* The partition computed now must be the checkpoint's: it depends on the
 * data, and a changed file would silently change the clients. */
static fedkd_status compare_partition(const fedkd_partition *now, const fedkd_partition *then,
                                      const char *path)
{
    if (now->num_clients != then->num_clients || now->total != then->total)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "resume refused: the training data now has %zu samples for %d "
                          "clients; the checkpoint %s was written with %zu for %d",
                          now->total, now->num_clients, path, then->total, then->num_clients);
    for (int c = 0; c < now->num_clients; c++) {
        size_t n = fedkd_partition_client_size(now, c);
        if (n != fedkd_partition_client_size(then, c))
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "resume refused: client %d now has %zu samples, %zu in the "
                              "checkpoint %s (did the training data change?)",
                              c, n, fedkd_partition_client_size(then, c), path);
        if (memcmp(now->indices + now->offsets[c], then->indices + then->offsets[c],
                   n * sizeof *now->indices) != 0)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "resume refused: client %d's samples differ from those in the "
                              "checkpoint %s (did the training data change?)",
                              c, path);
    }
    return FEDKD_OK;
}

fedkd_status fl_fed_reserve_history(federation *f, int rows)
{
    if (rows <= f->history_capacity) return FEDKD_OK;
    int capacity = f->history_capacity ? f->history_capacity : 16;
    while (capacity < rows) capacity *= 2;
    fedkd_round_metrics *grown = realloc(f->history, (size_t)capacity * sizeof *grown);
    if (!grown) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d rounds of metrics", rows);
    f->history = grown;
    if (f->num_models) {
        size_t per_round = 2 * (size_t)f->num_models;
        double *scores = realloc(f->model_scores, (size_t)capacity * per_round * sizeof *scores);
        if (!scores)
            return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d rounds of metrics", rows);
        f->model_scores = scores;
    }
    f->history_capacity = capacity;
    return FEDKD_OK;
}

/* Rank 0: continues from a checkpoint once it is known to belong to this
 * run (same config but rounds, same model, same partition). */
static fedkd_status resume_from(federation *f, const char *path)
{
    fedkd_checkpoint k;
    char difference[256];
    fedkd_status status = fedkd_checkpoint_read(path, &k);
    if (status) return status;
    status = fedkd_checkpoint_check_config(path, k.config_json, k.round, f->config);
    if (!status) status = fl_check_schedule_resume(f->config, k.config_json, path);
    if (!status && fedkd_model_spec_difference(&f->spec, &k.spec, difference, sizeof difference))
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "resume refused: the model in %s differs from the configured one "
                            "(config vs checkpoint: %s)",
                            path, difference);
    if (!status) status = compare_partition(f->partition, k.partition, path);
    if (!status &&
        (k.client_state_len != f->client_state_len || k.server_state_len != f->server_state_len))
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "resume refused: %s holds %zu floats of state per client and %zu on "
                            "the server; algorithm `%s` keeps %zu and %zu",
                            path, k.client_state_len, k.server_state_len, f->algorithm->name,
                            f->client_state_len, f->server_state_len);
    if (!status && k.num_models != f->num_models)
        status = FEDKD_FAIL(FEDKD_ERR_FORMAT,
                            "resume refused: %s holds the scores of %d global model(s) per "
                            "round (/metrics/models); this run keeps %d",
                            path, k.num_models ? k.num_models : 1,
                            f->num_models ? f->num_models : 1);
    if (!status) status = fl_fed_reserve_history(f, k.round);
    if (!status) {
        memcpy(f->history, k.metrics, (size_t)k.round * sizeof *f->history);
        if (f->num_models)
            memcpy(f->model_scores, k.model_scores,
                   (size_t)k.round * 2 * (size_t)f->num_models * sizeof *f->model_scores);
        f->history_len = k.round;
        memcpy(f->global, k.global, f->num_params * sizeof(float));
        if (f->server_state_len)
            memcpy(f->server_state, k.server_state, f->server_state_len * sizeof(float));
        f->first_round = k.round + 1;
        f->last_checkpoint = k.round;
        f->earlier_seconds = k.wall_seconds;
        snprintf(f->resume_path, sizeof f->resume_path, "%s", path);
        fedkd_log_info("resuming from %s: %d round(s) done", path, k.round);
    }
    fedkd_checkpoint_clear(&k);
    return status;
}

/* Where the run starts: a checkpoint (--resume), init.model or the seeded
 * initialisation. Rank 0 decides and reads; the others learn the first
 * round and, where clients keep state, read their rows themselves. */
fedkd_status fl_fed_choose_start(federation *f, const fedkd_run_options *options)
{
    const fedkd_config *config = f->config;
    fedkd_status status = FEDKD_OK;
    f->first_round = 1;
    if (f->rank == 0) {
        const char *resume = options && options->resume ? options->resume : "";
        char found[1024];
        if (strcmp(resume, "auto") == 0) {
            int round = 0;
            status = fedkd_checkpoint_find_latest(config->run.dir, found, sizeof found, &round);
            if (!status && round == 0)
                fedkd_log_info("--resume auto: no checkpoint in %s; starting at round 1",
                               config->run.dir);
            resume = round ? found : "";
        }
        if (!status && resume[0]) status = resume_from(f, resume);
        else if (!status && config->init.model[0]) status = load_init_model(f);
    }
    status = fedkd_comm_agree(f->comm, status);
    if (status) return status;

    struct {
        int first_round;
        char path[1024];
    } start = {f->first_round, ""};
    snprintf(start.path, sizeof start.path, "%s", f->resume_path);
    MPI_Request request;
    MPI_Ibcast(&start, (int)sizeof start, MPI_BYTE, 0, f->comm, &request);
    status = fedkd_comm_wait(&request, "the start broadcast");
    if (status) return status;
    f->first_round = start.first_round;
    if (start.path[0] && f->client_state_len && f->num_hosted)
        status = fedkd_checkpoint_read_client_states(start.path, f->hosted, f->num_hosted,
                                                     f->client_state_len, f->client_state);
    return fedkd_comm_agree(f->comm, status);
}

/* Every rank: the state after `round` rounds into checkpoint-<round>.h5. */
fedkd_status fl_fed_write_checkpoint(federation *f, int round, double run_start)
{
    const fedkd_config *config = f->config;
    /* Rank 0's history has exactly `round` rows here: one per finished round. */
    fedkd_checkpoint_contents c = {
        .round = round,
        .config = config,
        .spec = &f->spec,
        .num_params = f->num_params,
        .global = f->global,
        .server_state_len = f->server_state_len,
        .server_state = f->server_state,
        .partition = f->partition,
        .client_state_len = f->client_state_len,
        .num_hosted = f->num_hosted,
        .hosted = f->hosted,
        .client_state = f->client_state,
        .metrics = f->history,
        .num_models = f->num_models,
        .model_scores = f->model_scores,
        .wall_seconds = fedkd_time_now() - run_start,
    };
    char path[1024];
    double t = fedkd_time_now();
    fedkd_status status = fedkd_checkpoint_write(f->comm, config->run.dir, config->checkpoint.keep,
                                                 &c, path, sizeof path);
    if (status) return status;
    f->last_checkpoint = round;
    /* After SIGTERM mpiexec stops reading the ranks' output: a line printed
     * then can block until the kill. */
    if (!fedkd_stop_requested)
        fedkd_log_info("checkpoint %s written in %.3fs", path, fedkd_time_now() - t);
    return FEDKD_OK;
}

