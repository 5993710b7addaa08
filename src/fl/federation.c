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
 * time. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core.h"
#include "fedkd/partition.h"
#include "fl_private.h"

enum { HEADER_CONTINUE = 0, HEADER_STOP = 1, HEADER_ERROR = 2 };
enum { HEADER_ROUND, HEADER_COMMAND, HEADER_COUNT, HEADER_FIXED };

/* Extra slots after the parameter deltas in the reduced buffer. */
enum { SLOT_TRAIN_LOSS, SLOT_ERRORS, SLOT_EXTRA };

typedef struct federation {
    const fedkd_config *config;
    MPI_Comm comm;
    int rank, size;
    const fedkd_algorithm *algorithm;
    fedkd_model_spec spec;
    fedkd_partition *partition;
    int num_clients;
    int num_hosted;
    int *hosted;                 /* (num_hosted) client ids, ascending */
    fedkd_dataset **client_data; /* (num_hosted) */
    fedkd_dataset *test;         /* rank 0 */
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
} federation;

static int compare_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static fedkd_status load_data(federation *f)
{
    const fedkd_config *config = f->config;
    const fedkd_source *source = NULL;
    fedkd_source_info info = {0};
    fedkd_status status = fedkd_source_find(config->data.name, &source);
    if (status) return status;
    /* Test hook: pretend the data is missing on one rank, to check that a
     * fault on a single rank stops every rank cleanly. */
    const char *fail_rank = getenv("FEDKD_TEST_FAIL_DATA_ON_RANK");
    if (fail_rank && atoi(fail_rank) == f->rank)
        return FEDKD_FAIL(FEDKD_ERR_IO,
                          "%s/train-images-idx3-ubyte.gz: not found on this rank (injected by "
                          "FEDKD_TEST_FAIL_DATA_ON_RANK)", config->data.dir);
    status = source->describe(config, &info);
    if (status) return status;

    fedkd_partition_settings ps = fedkd_partition_default_settings();
    snprintf(ps.scheme, sizeof ps.scheme, "%s", config->partition.scheme);
    ps.num_clients = config->clients.count;
    ps.alpha = config->partition.alpha;
    ps.classes_per_client = config->partition.classes_per_client;
    ps.sigma = config->partition.sigma;
    ps.min_size = config->partition.min_size;
    ps.seed = config->seed;
    status = fedkd_partition_create(&f->partition, &ps, info.train_labels, info.train_count,
                                    info.num_classes);
    if (status) goto done;
    status = fl_model_spec(config, info.shape, info.num_classes, &f->spec);
    if (status) goto done;

    f->num_hosted = 0;
    f->hosted = malloc((size_t)f->num_clients * sizeof *f->hosted);
    f->client_data = calloc((size_t)f->num_clients, sizeof *f->client_data);
    if (!f->hosted || !f->client_data) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client table");
        goto done;
    }
    size_t hosted_rows = 0;
    for (int c = 0; c < f->num_clients; c++)
        if (fedkd_client_host_rank(c, f->size) == f->rank) {
            f->hosted[f->num_hosted++] = c;
            hosted_rows += fedkd_partition_client_size(f->partition, c);
        }
    /* Read the rows of every hosted client in one pass over the file (the
     * source streams it), then split them per client. */
    fedkd_dataset *base = info.full_train;
    uint32_t *union_rows = NULL, *positions = NULL;
    if (!base && f->num_hosted > 0) {
        union_rows = malloc(hosted_rows * sizeof *union_rows);
        if (!union_rows) {
            status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu row indices", hosted_rows);
            goto done;
        }
        size_t used = 0;
        for (int h = 0; h < f->num_hosted; h++) {
            int c = f->hosted[h];
            size_t n = fedkd_partition_client_size(f->partition, c);
            memcpy(union_rows + used, f->partition->indices + f->partition->offsets[c],
                   n * sizeof *union_rows);
            used += n;
        }
        qsort(union_rows, hosted_rows, sizeof *union_rows, compare_u32);
        status = source->load_train_rows(config, union_rows, hosted_rows, &base);
        if (status) {
            free(union_rows);
            goto done;
        }
    }
    for (int h = 0; h < f->num_hosted && !status; h++) {
        int c = f->hosted[h];
        const uint32_t *rows = f->partition->indices + f->partition->offsets[c];
        size_t n = fedkd_partition_client_size(f->partition, c);
        const uint32_t *picked = rows;
        if (union_rows) {
            /* Rows of the union are ascending: a client's row sits where a
             * binary search finds it. */
            positions = realloc(positions, (n ? n : 1) * sizeof *positions);
            if (!positions) {
                status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for row positions");
                break;
            }
            for (size_t i = 0; i < n; i++) {
                const uint32_t *at = bsearch(&rows[i], union_rows, hosted_rows,
                                             sizeof *union_rows, compare_u32);
                positions[i] = (uint32_t)(at - union_rows);
            }
            picked = positions;
        }
        status = fedkd_dataset_subset(&f->client_data[h], base, picked, n);
        if (status) break;
        fedkd_dataset *data = f->client_data[h];
        snprintf(data->origin, sizeof data->origin, "client %d", c);
        fedkd_partition_apply_noise(f->partition, c, config->seed, data->features, n,
                                    fedkd_dataset_sample_floats(data));
    }
    free(positions);
    if (union_rows) {
        free(union_rows);
        fedkd_dataset_destroy(&base);
    }
    if (status) goto done;
    if (f->rank == 0) status = source->load_test(config, &f->test);
done:
    /* The full training set (when the source handed it over) goes now:
     * a rank keeps only what it hosts. */
    fedkd_source_info_clear(&info);
    return status;
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
    f->num_params = f->train_model ? f->train_model->num_params : f->eval_model->num_params;
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

static void free_federation(federation *f)
{
    fedkd_runlog_close(&f->log);
    for (int h = 0; f->client_data && h < f->num_hosted; h++)
        fedkd_dataset_destroy(&f->client_data[h]);
    free(f->client_data);
    free(f->hosted);
    fedkd_dataset_destroy(&f->test);
    fedkd_model_destroy(&f->train_model);
    fedkd_model_destroy(&f->eval_model);
    fedkd_optimizer_destroy(&f->optimizer);
    fedkd_partition_destroy(&f->partition);
    fedkd_free(f->global);
    fedkd_free(f->delta);
    fedkd_free(f->accumulator);
    fedkd_free(f->reduced);
    free(f->header);
}

static fedkd_status setup(federation *f)
{
    const fedkd_config *config = f->config;
    fedkd_status status = fedkd_algorithm_find(config->algorithm, &f->algorithm);
    status = fl_agree(f->comm, status);
    if (status) return status;
    status = load_data(f);
    status = fl_agree(f->comm, status);
    if (status) return status;
    status = build_models(f);
    if (!status && f->rank == 0) {
        status = fedkd_runlog_open(&f->log, config->run.dir);
        if (!status) {
            cJSON *json = fedkd_partition_to_json(f->partition);
            status = json ? fedkd_write_json_file(config->run.dir, "partition.json", json)
                          : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing partition.json");
            cJSON_Delete(json);
        }
    }
    return fl_agree(f->comm, status);
}

fedkd_status fedkd_run_federated(const fedkd_config *config, MPI_Comm comm,
                                 fedkd_run_result *result)
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

    fedkd_status status = setup(f);
    if (status) {
        free_federation(f);
        return status;
    }
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

    for (int round = 1;; round++) {
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

        /* 4. Updates up: one exact integer sum. */
        t = fedkd_time_now();
        MPI_Ireduce(f->accumulator, f->reduced, buffer_len, MPI_INT64_T, MPI_SUM, 0, comm,
                    &request);
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
        /* With P > 1 the server's reduce wait contains the clients' training. */
        double waiting = f->size > 1 ? reduce_seconds - slowest : reduce_seconds;
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

        t = fedkd_time_now();
        memcpy(f->eval_model->params, f->global, f->num_params * sizeof(float));
        status = fedkd_evaluate(f->eval_model, f->test, &m.test_accuracy, &m.test_loss);
        m.eval_seconds = fedkd_time_now() - t;
        if (status) {
            local_failure = status;
            continue;
        }
        m.round_seconds = fedkd_time_now() - round_start;
        status = fedkd_runlog_write_round(&f->log, &m);
        if (status) {
            local_failure = status;
            continue;
        }
        fl_print_progress(&m, config->rounds, fedkd_time_now() - start);

        result->rounds_run = round;
        result->final_accuracy = m.test_accuracy;
        if (m.test_accuracy > result->best_accuracy) result->best_accuracy = m.test_accuracy;
        result->bytes_down_total += m.bytes_down;
        result->bytes_up_total += m.bytes_up;
        result->wire_bytes_total += m.wire_bytes;
        if (!result->rounds_to_target && m.test_accuracy >= config->target_accuracy) {
            result->rounds_to_target = round;
            result->bytes_to_target = result->bytes_down_total + result->bytes_up_total;
        }
    }

    if (f->rank == 0) {
        result->wall_seconds = fedkd_time_now() - start;
        result->num_params = f->num_params;
        result->params_checksum = fedkd_checksum(f->global, f->num_params * sizeof(float));
        result->final_params = malloc(f->num_params * sizeof(float));
        if (result->final_params)
            memcpy(result->final_params, f->global, f->num_params * sizeof(float));
        fedkd_status written = fl_write_summary(config, outcome, result, 1);
        if (!status) status = written;
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
