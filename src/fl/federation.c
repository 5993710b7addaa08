/* The federated round protocol (../shared/DESIGN.md, "One round").
 *
 * Every rank runs the same loop. Rank 0 is the server: it selects the
 * round's clients, broadcasts a header and the global weights, receives the
 * sum of the clients' weighted updates, applies it, evaluates and logs.
 * Ranks 1..P-1 host virtual clients round-robin and train the selected ones
 * one after another. With P = 1 rank 0 plays both parts.
 *
 * Collectives are non-blocking and waited for with fl_wait, which yields the
 * core: with 16 ranks on 2 cores a spinning waiter would steal the trainers'
 * time.
 *
 * Checkpoints (include/fedkd/checkpoint.h) are written by every rank
 * together at the start of the round after the one they capture, when the
 * round header says so: every checkpoint.every rounds and at the end. A
 * resumed run starts from a checkpoint's global model, state and metrics
 * history; since every random stream is keyed by (seed, purpose, client,
 * round) and aggregation is exact, it continues bit-identically at any
 * number of ranks. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/checkpoint.h"
#include "fedkd/core.h"
#include "fedkd/model_file.h"
#include "fedkd/partition.h"
#include "fl_private.h"

enum { HEADER_CONTINUE = 0, HEADER_STOP = 1, HEADER_ERROR = 2 };
/* HEADER_CHECKPOINT: the round to checkpoint before going on (0: none). */
enum { HEADER_ROUND, HEADER_COMMAND, HEADER_COUNT, HEADER_CHECKPOINT, HEADER_FIXED };

/* Extra slots after the parameter deltas in the reduced buffer. */
enum { SLOT_TRAIN_LOSS, SLOT_ERRORS, SLOT_EXTRA };

typedef struct federation {
    const fedkd_config *config;
    MPI_Comm comm;
    int rank, size;
    const fedkd_algorithm *algorithm;
    fedkd_model_spec spec;
    fedkd_client_set data;       /* owns the partition and every dataset below */
    const fedkd_partition *partition;
    int num_clients;
    int num_hosted;
    int *hosted;                 /* (num_hosted) client ids, ascending */
    fedkd_dataset **client_data; /* (num_hosted) */
    const fedkd_dataset *test;   /* rank 0 */
    fedkd_model *train_model;    /* ranks hosting clients */
    fedkd_model *eval_model;     /* rank 0 */
    fedkd_optimizer *optimizer;
    size_t num_params;
    float *global;               /* (num_params) */
    float *delta;                /* (num_params) */
    int64_t *accumulator;        /* (num_params + SLOT_EXTRA) */
    int64_t *reduced;            /* rank 0: same size */
    int *header;                 /* (HEADER_FIXED + num_clients) */
    int first_failed_client;     /* INT_MAX while every hosted client trains fine */
    fedkd_runlog log;
    /* Persistent state between rounds (none for FedAvg / FedProx). */
    size_t client_state_len;     /* floats per client */
    float *client_state;         /* (num_hosted, client_state_len) */
    size_t server_state_len;
    float *server_state;         /* rank 0: (server_state_len) */
    /* Rank 0: every finished round's metrics, for checkpoints. */
    fedkd_round_metrics *history;/* (history_capacity), history_len used */
    int history_len, history_capacity;
    int first_round;             /* 1, or the checkpoint's round + 1 */
    int last_checkpoint;         /* round of the newest checkpoint written or resumed */
    double earlier_seconds;      /* run time before the resumed checkpoint */
    char resume_path[1024];      /* the checkpoint resumed from, or "" */
} federation;

static fedkd_status load_data(federation *f)
{
    const fedkd_config *config = f->config;
    /* Test hook: pretend the data is missing on one rank, to check that a
     * fault on a single rank stops every rank cleanly. */
    const char *fail_rank = getenv("FEDKD_TEST_FAIL_DATA_ON_RANK");
    if (fail_rank && atoi(fail_rank) == f->rank)
        return FEDKD_FAIL(FEDKD_ERR_IO,
                          "%s/train-images-idx3-ubyte.gz: not found on this rank (injected by "
                          "FEDKD_TEST_FAIL_DATA_ON_RANK)", config->data.dir);
    int *hosted = malloc((size_t)(f->num_clients > 0 ? f->num_clients : 1) * sizeof *hosted);
    if (!hosted) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client table");
    int num_hosted = 0;
    for (int c = 0; c < f->num_clients; c++)
        if (fedkd_client_host_rank(c, f->size) == f->rank) hosted[num_hosted++] = c;
    unsigned flags = fl_data_flags(config);
    if (f->rank == 0) flags |= FEDKD_CLIENTSET_LOAD_TEST;
    if (num_hosted > 0 || f->rank == 0) flags |= FEDKD_CLIENTSET_LOAD_PUBLIC;
    fedkd_status status = fedkd_client_set_load(config, hosted, num_hosted, flags, &f->data);
    free(hosted);
    if (status) return status;
    /* Short names for what the round loop uses most. */
    f->partition = f->data.partition;
    f->num_hosted = f->data.num_hosted;
    f->hosted = f->data.hosted;
    f->client_data = f->data.data;
    f->test = f->data.test;
    return fl_model_spec(config, f->data.shape, f->data.num_classes, &f->spec);
}

static fedkd_status build_models(federation *f)
{
    const fedkd_config *config = f->config;
    fedkd_status status = FEDKD_OK;
    if (f->num_hosted > 0) {
        fedkd_optimizer_settings opt = fl_optimizer_settings(config);
        status = fedkd_model_create(&f->train_model, &f->spec, config->local.batch_size);
        if (!status) status = fedkd_optimizer_create(&f->optimizer, &opt,
                                                     f->train_model->num_params);
        if (status) return status;
    }
    if (f->rank == 0) {
        status = fedkd_model_create(&f->eval_model, &f->spec, config->eval_batch_size);
        if (status) return status;
        fedkd_model_init_params(f->eval_model, config->seed, 0);
    }
    if (f->train_model || f->eval_model) {
        f->num_params = f->train_model ? f->train_model->num_params : f->eval_model->num_params;
    } else {
        /* A client rank with no client (clients.count < P - 1) still takes
         * part in every collective, so it needs the parameter count. */
        fedkd_model *probe = NULL;
        status = fedkd_model_create(&probe, &f->spec, 1);
        if (status) return status;
        f->num_params = probe->num_params;
        fedkd_model_destroy(&probe);
    }
    f->global = fedkd_alloc(f->num_params * sizeof(float));
    f->delta = fedkd_alloc(f->num_params * sizeof(float));
    f->accumulator = fedkd_alloc((f->num_params + SLOT_EXTRA) * sizeof(int64_t));
    f->reduced = fedkd_alloc((f->num_params + SLOT_EXTRA) * sizeof(int64_t));
    f->header = calloc((size_t)(HEADER_FIXED + f->num_clients), sizeof(int));
    if (!f->global || !f->delta || !f->accumulator || !f->reduced || !f->header)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu parameters", f->num_params);
    if (f->rank == 0) memcpy(f->global, f->eval_model->params, f->num_params * sizeof(float));
    return FEDKD_OK;
}

static size_t selected_samples(const federation *f, const int *selected, int m)
{
    size_t total = 0;
    for (int i = 0; i < m; i++) total += fedkd_partition_client_size(f->partition, selected[i]);
    return total;
}

/* Trains the hosted clients among the selected ones and adds their weighted
 * updates into the accumulator. Returns seconds spent. A failure is counted
 * in SLOT_ERRORS so that the server learns of it through the reduce. */
static double train_hosted_clients(federation *f, int round, const int *selected, int m)
{
    const fedkd_config *config = f->config;
    double start = fedkd_time_now();
    memset(f->accumulator, 0, (f->num_params + SLOT_EXTRA) * sizeof(int64_t));
    double total = (double)selected_samples(f, selected, m);
    int next = 0;
    for (int h = 0; h < f->num_hosted; h++) {
        int client = f->hosted[h];
        while (next < m && selected[next] < client) next++;
        if (next >= m || selected[next] != client) continue;
        fedkd_model *model = f->train_model;
        memcpy(model->params, f->global, f->num_params * sizeof(float));
        fedkd_optimizer_reset(f->optimizer);
        fedkd_train_settings train = fedkd_train_default_settings();
        train.epochs = config->local.epochs;
        train.batch_size = config->local.batch_size;
        train.seed = config->seed;
        train.stream_a = (uint64_t)client;
        train.stream_b = (uint64_t)(round - 1) * (uint64_t)config->local.epochs;
        f->algorithm->configure_local(config, f->global, &train);
        fedkd_train_stats stats;
        fedkd_status status =
            fedkd_train_local(model, f->optimizer, f->client_data[h], &train, &stats);
        double weight = (double)f->client_data[h]->count / total;
        if (!status) {
            for (size_t i = 0; i < f->num_params; i++)
                f->delta[i] = model->params[i] - f->global[i];
            status = fedkd_fixed_accumulate(f->accumulator, f->delta, f->num_params, weight);
        }
        if (!status) {
            float loss = (float)stats.mean_loss;
            status = fedkd_fixed_accumulate(f->accumulator + f->num_params + SLOT_TRAIN_LOSS,
                                            &loss, 1, weight);
        }
        if (status) {
            /* This rank prints the message at exit; the server learns of the
             * failure through the reduce and stops the run. The remaining
             * clients are skipped so that the first failure is the one told. */
            char message[1024];
            snprintf(message, sizeof message, "%s", fedkd_error_message());
            FEDKD_FAIL(status, "round %d: %s", round, message);
            f->accumulator[f->num_params + SLOT_ERRORS] = 1;
            if (client < f->first_failed_client) f->first_failed_client = client;
            break;
        }
    }
    return fedkd_time_now() - start;
}

/* ---- persistent state, init.model, resume, checkpoints --------------------- */

/* Floats of state an algorithm keeps between rounds, per client and on the
 * server. FedAvg and FedProx keep none: every selected client starts from
 * the global weights with a fresh optimizer and the server scales the
 * averaged delta by server.lr. Algorithms that keep client models (FedMD,
 * DS-FL) or a server optimizer report their sizes here; checkpoints then
 * save and restore the state by client id, whatever the number of ranks. */
static void state_sizes(const federation *f, size_t *per_client, size_t *server)
{
    (void)f;
    *per_client = 0;
    *server = 0;
}

static fedkd_status allocate_state(federation *f)
{
    state_sizes(f, &f->client_state_len, &f->server_state_len);
    size_t client_floats = f->client_state_len * (size_t)f->num_hosted;
    if (client_floats && !(f->client_state = fedkd_alloc(client_floats * sizeof(float))))
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu floats of client state",
                          client_floats);
    if (f->rank == 0 && f->server_state_len &&
        !(f->server_state = fedkd_alloc(f->server_state_len * sizeof(float))))
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu floats of server state",
                          f->server_state_len);
    return FEDKD_OK;
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

static fedkd_status reserve_history(federation *f, int rows)
{
    if (rows <= f->history_capacity) return FEDKD_OK;
    int capacity = f->history_capacity ? f->history_capacity : 16;
    while (capacity < rows) capacity *= 2;
    fedkd_round_metrics *grown = realloc(f->history, (size_t)capacity * sizeof *grown);
    if (!grown) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d rounds of metrics", rows);
    f->history = grown;
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
    if (!status) status = reserve_history(f, k.round);
    if (!status) {
        memcpy(f->history, k.metrics, (size_t)k.round * sizeof *f->history);
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
static fedkd_status choose_start(federation *f, const fedkd_run_options *options)
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
    status = fl_agree(f->comm, status);
    if (status) return status;

    struct {
        int first_round;
        char path[1024];
    } start = {f->first_round, ""};
    snprintf(start.path, sizeof start.path, "%s", f->resume_path);
    MPI_Request request;
    MPI_Ibcast(&start, (int)sizeof start, MPI_BYTE, 0, f->comm, &request);
    status = fl_wait(&request, "the start broadcast");
    if (status) return status;
    f->first_round = start.first_round;
    if (start.path[0] && f->client_state_len && f->num_hosted)
        status = fedkd_checkpoint_read_client_states(start.path, f->hosted, f->num_hosted,
                                                     f->client_state_len, f->client_state);
    return fl_agree(f->comm, status);
}

/* Every rank: the state after `round` rounds into checkpoint-<round>.h5. */
static fedkd_status write_checkpoint(federation *f, int round, double run_start)
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

/* Rank 0: one finished round into the run's result. */
static void add_to_result(fedkd_run_result *result, const fedkd_round_metrics *m,
                          const fedkd_config *config)
{
    result->rounds_run = m->round;
    result->final_accuracy = m->test_accuracy;
    if (m->test_accuracy > result->best_accuracy) result->best_accuracy = m->test_accuracy;
    result->bytes_down_total += m->bytes_down;
    result->bytes_up_total += m->bytes_up;
    result->wire_bytes_total += m->wire_bytes;
    if (!result->rounds_to_target && m->test_accuracy >= config->target_accuracy) {
        result->rounds_to_target = m->round;
        result->bytes_to_target = result->bytes_down_total + result->bytes_up_total;
    }
}

static void free_federation(federation *f)
{
    fedkd_runlog_close(&f->log);
    fedkd_client_set_free(&f->data);
    fedkd_model_destroy(&f->train_model);
    fedkd_model_destroy(&f->eval_model);
    fedkd_optimizer_destroy(&f->optimizer);
    fedkd_free(f->global);
    fedkd_free(f->delta);
    fedkd_free(f->accumulator);
    fedkd_free(f->reduced);
    free(f->header);
    fedkd_free(f->client_state);
    fedkd_free(f->server_state);
    free(f->history);
}

static fedkd_status setup(federation *f, const fedkd_run_options *options)
{
    const fedkd_config *config = f->config;
    fedkd_status status = fedkd_algorithm_find(config->algorithm, &f->algorithm);
    status = fl_agree(f->comm, status);
    if (status) return status;
    status = load_data(f);
    status = fl_agree(f->comm, status);
    if (status) return status;
    status = build_models(f);
    if (!status) status = allocate_state(f);
    status = fl_agree(f->comm, status);
    if (status) return status;
    /* Before the logs are opened: a refused resume leaves them as they are. */
    status = choose_start(f, options);
    if (status) return status;
    if (f->rank == 0) {
        status = fedkd_runlog_open(&f->log, config->run.dir);
        if (!status && !f->resume_path[0]) {
            /* A fresh run overwrites the directory's logs; checkpoints of
             * the earlier history go too, or `--resume auto` would mix them
             * into this run. */
            int removed = 0;
            status = fedkd_checkpoint_remove_all(config->run.dir, &removed);
            if (removed)
                fedkd_log_warn("%s held %d checkpoint file(s) of an earlier run: removed, as this "
                               "run starts over (--resume auto continues a run)",
                               config->run.dir, removed);
        }
        /* A resumed run's logs are the checkpoint's history (rounds logged
         * after it are redone), then the new rounds. */
        for (int i = 0; !status && i < f->history_len; i++)
            status = fedkd_runlog_write_round(&f->log, &f->history[i]);
        if (!status) {
            cJSON *json = fedkd_partition_to_json(f->partition);
            status = json ? fedkd_write_json_file(config->run.dir, "partition.json", json)
                          : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing partition.json");
            cJSON_Delete(json);
        }
    }
    return fl_agree(f->comm, status);
}

/* Rank 0: the test evaluation of an aggregated round (eval_model holds its
 * global weights), then its log row, progress line and history entry.
 * With P > 1 this runs while the clients train the next round, so the
 * server's evaluation leaves the round's critical path. */
static fedkd_status finish_round(federation *f, fedkd_round_metrics *m, int overlapped,
                                 fedkd_run_result *result, double run_start)
{
    double t = fedkd_time_now();
    fedkd_status status = fedkd_evaluate(f->eval_model, f->test, &m->test_accuracy, &m->test_loss);
    m->eval_seconds = fedkd_time_now() - t;
    m->eval_overlapped = overlapped;
    if (!overlapped) m->round_seconds += m->eval_seconds;
    if (status) return status;
    status = fedkd_runlog_write_round(&f->log, m);
    if (status) return status;
    /* After SIGTERM mpiexec stops reading the ranks' output: a line printed
     * then can block until the kill. */
    if (!fedkd_stop_requested)
        fl_print_progress(m, f->config->rounds, fedkd_time_now() - run_start);
    status = reserve_history(f, f->history_len + 1);
    if (status) return status;
    f->history[f->history_len++] = *m;
    add_to_result(result, m, f->config);
    return FEDKD_OK;
}

fedkd_status fedkd_run_federated(const fedkd_config *config, MPI_Comm comm,
                                 const fedkd_run_options *options, fedkd_run_result *result)
{
    federation fed = {0};
    federation *f = &fed;
    f->config = config;
    f->comm = comm;
    f->num_clients = config->clients.count;
    f->first_failed_client = INT_MAX;
    MPI_Comm_rank(comm, &f->rank);
    MPI_Comm_size(comm, &f->size);
    double start = fedkd_time_now();
    const char *outcome = "failed";

    fedkd_status status = setup(f, options);
    if (status) {
        free_federation(f);
        return status;
    }
    /* Run time includes the time before a resumed checkpoint. */
    start -= f->earlier_seconds;
    for (int i = 0; f->rank == 0 && i < f->history_len; i++)
        add_to_result(result, &f->history[i], config);
    if (f->rank == 0) {
        int m = fedkd_clients_per_round(f->num_clients, config->clients.per_round);
        fedkd_log_info("federation: %s, %d clients (%d per round) on %d rank(s), partition %s, "
                       "model %s with %zu parameters, %d rounds",
                       f->algorithm->name, f->num_clients, m, f->size, config->partition.scheme,
                       f->spec.name, f->num_params, config->rounds);
    }

    const uint64_t payload = (uint64_t)f->num_params * sizeof(float);
    const uint64_t peers = (uint64_t)(f->size - 1);
    const int buffer_len = (int)(f->num_params + SLOT_EXTRA);
    int *selected = f->header + HEADER_FIXED;
    fedkd_status local_failure = FEDKD_OK;
    /* Rank 0: the aggregated round whose evaluation is still to come. */
    fedkd_round_metrics pending = {0};
    int has_pending = 0;

    for (int round = f->first_round;; round++) {
        double round_start = fedkd_time_now();
        double comm_seconds = 0.0;
        fedkd_round_metrics m = {0};
        MPI_Request request;

        /* 1. Header: what happens this round. */
        if (f->rank == 0) {
            int command = HEADER_CONTINUE;
            if (local_failure) command = HEADER_ERROR;
            else if (round > config->rounds) command = HEADER_STOP;
            else if (fedkd_stop_requested) command = HEADER_ERROR;
            /* Every `every` rounds and at the end, not when a signal stops
             * the run: mpiexec kills the ranks about a second after it
             * forwards SIGTERM, and the logs and summary come first. */
            int finished = round - 1, every = config->checkpoint.every;
            f->header[HEADER_CHECKPOINT] =
                finished >= 1 && finished > f->last_checkpoint &&
                        (command == HEADER_STOP ||
                         (command == HEADER_CONTINUE && every > 0 && finished % every == 0))
                    ? finished
                    : 0;
            f->header[HEADER_ROUND] = round;
            f->header[HEADER_COMMAND] = command;
            f->header[HEADER_COUNT] =
                command == HEADER_CONTINUE
                    ? fedkd_select_clients(config->seed, round, f->num_clients,
                                           config->clients.per_round, selected)
                    : 0;
            if (f->header[HEADER_COUNT] < 0) {
                f->header[HEADER_COMMAND] = HEADER_ERROR;
                f->header[HEADER_COUNT] = 0;
                local_failure = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory selecting clients");
            }
            if (command == HEADER_ERROR && !local_failure) {
                outcome = "interrupted";
                local_failure = FEDKD_FAIL(FEDKD_ERR_INTERRUPTED,
                                           "interrupted by signal %d before round %d; logs of "
                                           "%d round(s) are in %s",
                                           (int)fedkd_stop_requested, round, round - 1,
                                           config->run.dir);
            }
        }
        int header_len = HEADER_FIXED + f->num_clients;
        double t = fedkd_time_now();
        MPI_Ibcast(f->header, header_len, MPI_INT, 0, comm, &request);
        status = fl_wait(&request, "the round header broadcast");
        comm_seconds += fedkd_time_now() - t;
        if (status) break;
        m.wire_bytes += peers * (uint64_t)header_len * sizeof(int);
        if (has_pending && (f->header[HEADER_CHECKPOINT] > 0 ||
                            f->header[HEADER_COMMAND] != HEADER_CONTINUE)) {
            /* A checkpoint holds every finished round's metrics, and the
             * last round's row comes before the summary. */
            has_pending = 0;
            fedkd_status finished = finish_round(f, &pending, 0, result, start);
            if (finished && !local_failure) local_failure = finished;
            if (finished && f->header[HEADER_COMMAND] == HEADER_STOP) {
                status = finished;
                break;
            }
        }
        if (f->header[HEADER_CHECKPOINT] > 0) {
            /* The checkpoint's time is not the round's. */
            t = fedkd_time_now();
            status = write_checkpoint(f, f->header[HEADER_CHECKPOINT], start);
            if (status) break;
            round_start += fedkd_time_now() - t;
        }
        if (f->header[HEADER_COMMAND] == HEADER_STOP) {
            outcome = "completed";
            break;
        }
        if (f->header[HEADER_COMMAND] == HEADER_ERROR) {
            status = f->rank == 0 ? local_failure
                                  : (local_failure ? local_failure : FEDKD_ERR_INTERRUPTED);
            /* Several clients may have failed at once: the first one tells. */
            int first = INT_MAX;
            if (MPI_Allreduce(&f->first_failed_client, &first, 1, MPI_INT, MPI_MIN, comm) ==
                    MPI_SUCCESS &&
                first != INT_MAX && f->first_failed_client != first)
                fedkd_error_clear();
            break;
        }
        int count = f->header[HEADER_COUNT];

        /* 2. Global weights down. */
        t = fedkd_time_now();
        MPI_Ibcast(f->global, (int)f->num_params, MPI_FLOAT, 0, comm, &request);
        status = fl_wait(&request, "the global model broadcast");
        comm_seconds += fedkd_time_now() - t;
        if (status) break;
        m.wire_bytes += peers * payload;
        m.bytes_down = payload * (uint64_t)count;

        /* 3. Local training of the hosted, selected clients. */
        double train_seconds = train_hosted_clients(f, round, selected, count);
        if (f->accumulator[f->num_params + SLOT_ERRORS] && f->rank != 0)
            local_failure = FEDKD_ERR_NUMERIC;

        /* 4. Updates up: one exact integer sum. The server evaluates the
         * previous round while the clients train this one. */
        t = fedkd_time_now();
        MPI_Ireduce(f->accumulator, f->reduced, buffer_len, MPI_INT64_T, MPI_SUM, 0, comm,
                    &request);
        double overlapped_seconds = 0.0;
        if (has_pending) {
            has_pending = 0;
            double e = fedkd_time_now();
            fedkd_status finished = finish_round(f, &pending, 1, result, start);
            if (finished && !local_failure) local_failure = finished;
            overlapped_seconds = fedkd_time_now() - e;
        }
        status = fl_wait(&request, "the update reduction");
        double reduce_seconds = fedkd_time_now() - t;
        if (status) break;
        m.wire_bytes += peers * (uint64_t)buffer_len * sizeof(int64_t);
        m.bytes_up = payload * (uint64_t)count;
        double slowest = 0.0;
        t = fedkd_time_now();
        MPI_Ireduce(&train_seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, comm, &request);
        status = fl_wait(&request, "the timing reduction");
        reduce_seconds += fedkd_time_now() - t;
        if (status) break;
        m.wire_bytes += peers * sizeof(double);

        if (f->rank != 0) continue;

        /* 5. Server: apply, evaluate, log. */
        m.round = round;
        m.participants = count;
        m.train_seconds = slowest;
        /* With P > 1 the server's reduce wait contains the clients' training
         * and, alongside it, the previous round's evaluation. */
        double waiting =
            f->size > 1 ? reduce_seconds - fmax(slowest, overlapped_seconds) : reduce_seconds;
        m.comm_seconds = comm_seconds + (waiting > 0.0 ? waiting : 0.0);
        if (f->reduced[f->num_params + SLOT_ERRORS] != 0) {
            /* The failing client's rank reports it; say nothing twice. */
            if (f->accumulator[f->num_params + SLOT_ERRORS] == 0) fedkd_error_clear();
            local_failure = FEDKD_ERR_NUMERIC;
            continue;
        }
        t = fedkd_time_now();
        double server_lr = config->server.lr;
        for (size_t i = 0; i < f->num_params; i++)
            f->global[i] = (float)((double)f->global[i] +
                                   server_lr * fedkd_fixed_to_double(f->reduced[i]));
        m.train_loss = fedkd_fixed_to_double(f->reduced[f->num_params + SLOT_TRAIN_LOSS]);
        m.aggregate_seconds = fedkd_time_now() - t;

        /* The evaluation needs the weights as they are now; the next
         * round changes f->global only after its reduce. */
        memcpy(f->eval_model->params, f->global, f->num_params * sizeof(float));
        m.round_seconds = fedkd_time_now() - round_start;
        if (f->size > 1) {
            pending = m;
            has_pending = 1;
            continue;
        }
        status = finish_round(f, &m, 0, result, start);
        if (status) {
            local_failure = status;
            status = FEDKD_OK;
        }
    }

    if (f->rank == 0) {
        result->wall_seconds = fedkd_time_now() - start;
        result->num_params = f->num_params;
        result->params_checksum = fedkd_checksum(f->global, f->num_params * sizeof(float));
        result->final_params = malloc(f->num_params * sizeof(float));
        if (result->final_params)
            memcpy(result->final_params, f->global, f->num_params * sizeof(float));
        char first_message[1024];
        snprintf(first_message, sizeof first_message, "%s", fedkd_error_message());
        fedkd_status written = fl_write_summary(config, outcome, result, 1);
        if (!status) status = written;
        else if (written) FEDKD_FAIL(status, "%s", first_message); /* the cause, not its echo */
        if (!status)
            fedkd_log_info("final test accuracy %.4f (best %.4f) after %d round(s); rounds to "
                           "%.2f: %d; %.1fs; logs in %s",
                           result->final_accuracy, result->best_accuracy, result->rounds_run,
                           config->target_accuracy, result->rounds_to_target,
                           result->wall_seconds, config->run.dir);
    } else if (!status && local_failure) {
        status = local_failure;
    }
    free_federation(f);
    return status;
}
