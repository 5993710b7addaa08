/* The federated round protocol (../shared/DESIGN.md, "One round").
 *
 * Every rank runs the same loop. Rank 0 is the server: it selects the
 * round's clients, broadcasts a header and the algorithm's payload (the
 * global weights, or the consensus it keeps), receives the exact sum of the
 * clients' contributions, applies it, evaluates and logs. Ranks 1..P-1 host
 * virtual clients round-robin and run the selected ones one after another.
 * With P = 1 rank 0 plays both parts. What is sent, what a client does and
 * what the server makes of the sum are the algorithm's hooks (fl_round.h).
 *
 * Collectives are non-blocking and waited for with fedkd_comm_wait, which yields the
 * core: with 16 ranks on 2 cores a spinning waiter would steal the trainers'
 * time.
 *
 * Checkpoints (include/fedkd/io/checkpoint.h, federation_state.c) are written
 * by every rank together at the start of the round after the one they
 * capture, when the round header says so: every checkpoint.every rounds and
 * at the end. A resumed run starts from a checkpoint's global model, state
 * and metrics history; since every random stream is keyed by (seed,
 * purpose, client, round) and aggregation is exact, it continues
 * bit-identically at any number of ranks. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedkd/io/checkpoint.h"
#include "fedkd/core/core.h"
#include "fedkd/data/partition.h"
#include "fedkd/core/memory.h"
#include "fl/compress.h"
#include "fl/federation_private.h"
#include "fl/netsim.h"
#include "fl/softlabel.h"

enum { HEADER_CONTINUE = 0, HEADER_STOP = 1, HEADER_ERROR = 2 };
/* HEADER_CHECKPOINT: the round to checkpoint before going on (0: none). */
enum { HEADER_ROUND, HEADER_COMMAND, HEADER_COUNT, HEADER_CHECKPOINT, HEADER_FIXED };
/* The node-shared broadcast areas (fedkd_node_share). */
enum { NODE_AREA_HEADER, NODE_AREA_PAYLOAD, NODE_AREAS };

/* Config checks that need no data, made by every rank before the first
 * collective so that all of them refuse the same way. */
static fedkd_status check_config(federation *f)
{
    const fedkd_config *config = f->config;
    fedkd_status status = fedkd_algorithm_find(config->algorithm, &f->algorithm);
    if (!status) status = fl_client_models_check(config, f->algorithm);
    if (!status && f->algorithm->ops->check_config) status = f->algorithm->ops->check_config(config);
    if (!status) status = fl_netsim_check_config(config, f->algorithm->global_model);
    if (!status && !f->algorithm->global_model && config->init.model[0])
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `init.model`: algorithm `%s` keeps one model per client "
                            "and has no global model to start from; set init.model to \"\"",
                            f->algorithm->name);
    return status;
}

static fedkd_status load_data(federation *f)
{
    const fedkd_config *config = f->config;
    int *hosted = malloc((size_t)(f->num_clients > 0 ? f->num_clients : 1) * sizeof *hosted);
    if (!hosted) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for the client table");
    int num_hosted = fedkd_hosted_clients(f->num_clients, f->rank, f->size, hosted);
    unsigned flags = f->data_flags;
    if (f->algorithm->uses_public) flags |= FEDKD_CLIENTSET_PUBLIC;
    /* Without a global model each host scores its own clients' models. */
    if (f->rank == 0 || (num_hosted > 0 && !f->algorithm->global_model))
        flags |= FEDKD_CLIENTSET_LOAD_TEST;
    /* kd-start's federations hold the public rows out of the partition
     * (FEDKD_CLIENTSET_PUBLIC) but FedAvg never reads them. */
    if (f->algorithm->uses_public && (num_hosted > 0 || f->rank == 0))
        flags |= FEDKD_CLIENTSET_LOAD_PUBLIC;
    /* Collective: one rank may read the file for all of them. */
    fedkd_status status =
        fedkd_client_set_load_shared(config, hosted, num_hosted, flags, f->comm, &f->data);
    free(hosted);
    /* Test hook: pretend the data is missing on one rank, to check that a
     * fault on a single rank stops every rank cleanly. */
    const char *fail_rank = getenv("FEDKD_TEST_FAIL_DATA_ON_RANK");
    if (!status && fail_rank && atoi(fail_rank) == f->rank)
        status = FEDKD_FAIL(FEDKD_ERR_IO,
                            "%s/train-images-idx3-ubyte.gz: not found on this rank (injected by "
                            "FEDKD_TEST_FAIL_DATA_ON_RANK)", config->data.dir);
    if (status) return status;
    /* Short names for what the round loop uses most. */
    f->partition = f->data.partition;
    f->num_hosted = f->data.num_hosted;
    f->hosted = f->data.hosted;
    f->client_data = f->data.data;
    f->test = f->data.test;
    fl_run *run = &f->run;
    run->config = config;
    run->algorithm = f->algorithm;
    run->rank = f->rank;
    run->size = f->size;
    run->num_clients = f->num_clients;
    run->num_classes = f->data.num_classes;
    run->partition = f->partition;
    run->public_set = f->data.public_set;
    run->public_count = f->algorithm->uses_public ? f->data.public_count : 0;
    run->sample_len = fl_public_sample_size(run->public_count, config->public_set.per_round);
    if (f->algorithm->uses_public && config->public_set.per_round > 0 &&
        (uint64_t)config->public_set.per_round > run->public_count)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `public.per_round`: %lld samples per round, but the public "
                          "set holds %zu (public.size, public.source)",
                          (long long)config->public_set.per_round, run->public_count);
    status = fedkd_train_model_spec(config, f->data.shape, f->data.num_classes, &f->spec);
    if (!status) status = fl_client_models_resolve(config, f->data.shape, f->data.num_classes,
                                                   &run->models);
    /* One global model per architecture: each needs clients. */
    if (!status && f->algorithm->global_model && f->algorithm->mixed_models)
        status = fl_client_models_check_held(config, &run->models);
    /* Compressed uploads are coded per architecture only with one. */
    if (!status && f->algorithm->global_model && run->models.num_architectures > 1 &&
        strcmp(config->comm.compression, "none") != 0)
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `comm.compression`: \"%s\" is not supported with %d "
                            "architectures in clients.models yet; use \"none\"",
                            config->comm.compression, run->models.num_architectures);
    /* Every rank draws (or reads) every client's simulated device. */
    if (!status) status = fl_netsim_create(&f->netsim, config, f->num_clients);
    if (!status) status = fl_round_plan_alloc(&f->plan, f->num_clients);
    if (!status) status = fl_round_plan_alloc(&f->previous_plan, f->num_clients);
    if (!status) status = fl_round_plan_alloc(&f->log_plan, f->num_clients);
    run->netsim = &f->netsim;
    return status;
}

static fedkd_status build_models(federation *f)
{
    const fedkd_config *config = f->config;
    fl_run *run = &f->run;
    fedkd_status status = FEDKD_OK;
    int entries = run->models.num_entries;
    f->train_models = calloc((size_t)entries, sizeof *f->train_models);
    f->optimizers = calloc((size_t)entries, sizeof *f->optimizers);
    if (!f->train_models || !f->optimizers)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %d client models", entries);
    fedkd_optimizer_settings opt = fedkd_train_optimizer_settings(config);
    if (f->num_hosted > 0) {
        status = fedkd_train_scratch_create(&run->train_scratch);
        if (status) return status;
    }
    for (int h = 0; h < f->num_hosted; h++) {
        int e = fl_client_model_entry(&run->models, f->hosted[h]);
        if (f->train_models[e]) continue;
        status = fedkd_model_create(&f->train_models[e], &run->models.specs[e],
                                    config->local.batch_size);
        if (!status) status = fedkd_optimizer_create(&f->optimizers[e], &opt,
                                                     f->train_models[e]->num_params);
        if (status) return status;
    }
    /* The global model: every rank needs its size, the collectives carry it. */
    double probe_bytes = 0.0;
    status = fedkd_model_estimate(&f->spec, 1, &f->num_params, &probe_bytes);
    if (status) return status;
    run->num_params = f->num_params;
    /* Architecture g's global model starts at global_offset[g] of the
     * global weights followed by the server state (fl_round.h). */
    run->num_globals = f->algorithm->global_model ? run->models.num_architectures : 1;
    f->num_models = run->num_globals > 1 ? run->num_globals : 0;
    run->global_offset[0] = 0;
    run->global_offset[1] = f->num_params;
    for (int g = 1; g < run->num_globals; g++)
        run->global_offset[g + 1] = run->global_offset[g] + run->models.architecture_params[g];
    for (int g = 0; f->rank == 0 && g < run->num_globals; g++) {
        const fedkd_model_spec *spec =
            g == 0 ? &f->spec : &run->models.specs[run->models.architecture_entry[g]];
        status = fedkd_model_create(&f->eval_models[g], spec, config->eval_batch_size);
        if (status) return status;
        if (g == 0) fedkd_model_init_params(f->eval_models[0], config->seed, 0);
        if (f->algorithm->ops->needs_server_model) {
            fedkd_optimizer_settings server = opt;
            server.lr = (float)config->feddf.lr;
            status = fedkd_model_create(&f->server_models[g], spec, config->local.batch_size);
            if (!status) status = fedkd_optimizer_create(&f->server_optimizers[g], &server,
                                                         f->server_models[g]->num_params);
            if (status) return status;
        }
    }
    /* The largest payload is round 2's (round 1 has no consensus to send). */
    fl_payload payload = f->algorithm->ops->payload(run, 2);
    f->sum_len = payload.up;
    /* A global model is broadcast from f->global, unless the server state
     * follows it (fl_round.h): then both are packed into f->down. */
    size_t down_len = f->algorithm->global_model && payload.down <= f->num_params ? 0 : payload.down;
    size_t sample_len = run->sample_len ? run->sample_len : 1;
    f->global = fedkd_alloc(f->num_params * sizeof(float));
    f->down = fedkd_alloc((down_len ? down_len : 1) * sizeof(float));
    f->sample = malloc(sample_len * sizeof *f->sample);
    f->next_sample = malloc(sample_len * sizeof *f->next_sample);
    f->accumulator = fedkd_alloc((f->sum_len + SLOT_EXTRA) * sizeof(int64_t));
    /* The reduction's result: only the server receives it. */
    f->reduced = f->rank == 0 ? fedkd_alloc((f->sum_len + SLOT_EXTRA) * sizeof(int64_t)) : NULL;
    f->checksums = calloc(2 * (size_t)f->num_clients, sizeof *f->checksums);
    f->header = calloc((size_t)(HEADER_FIXED + f->num_clients), sizeof(int));
    if (!f->global || !f->down || !f->sample || !f->next_sample || !f->accumulator ||
        (f->rank == 0 && !f->reduced) || !f->checksums || !f->header)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a payload of %zu values",
                          f->sum_len);
    if (f->rank == 0) memcpy(f->global, f->eval_models[0]->params, f->num_params * sizeof(float));
    return FEDKD_OK;
}

static size_t selected_samples(const federation *f, const int *selected, int m)
{
    size_t total = 0;
    for (int i = 0; i < m; i++) total += fedkd_partition_client_size(f->partition, selected[i]);
    return total;
}

/* accumulator[i] += fixed(weight * values[i]) for doubles (test scores). */
static fedkd_status accumulate_doubles(int64_t *accumulator, const double *values, size_t n,
                                       double weight)
{
    for (size_t i = 0; i < n; i++) {
        double v = weight * values[i];
        if (!(fabs(v) <= FEDKD_FIXED_LIMIT))
            return FEDKD_FAIL(FEDKD_ERR_NUMERIC, "aggregation: a test score of %g cannot be summed",
                              values[i]);
        accumulator[i] += (int64_t)llround(v * FEDKD_FIXED_SCALE);
    }
    return FEDKD_OK;
}

/* A client that keeps its model: its test scores into the round's means,
 * its trained model back into its state row. */
static fedkd_status keep_client_model(federation *f, int h, fedkd_model *model, int m,
                                      int64_t *slots)
{
    double scores[2];
    fedkd_status status = fedkd_evaluate(model, f->test, &scores[0], &scores[1]);
    if (!status) status = accumulate_doubles(slots + SLOT_TEST_ACCURACY, scores, 2, 1.0 / m);
    if (!status)
        memcpy(f->client_state + (size_t)h * f->client_state_len, model->params,
               model->num_params * sizeof(float));
    return status;
}

/* This round's and the next round's public sample, where the public set is. */
static fedkd_status draw_samples(federation *f, int round)
{
    const fl_run *run = &f->run;
    if (!run->sample_len || !run->public_set) return FEDKD_OK;
    uint64_t seed = f->config->seed;
    int64_t per_round = f->config->public_set.per_round;
    if (fl_public_sample(seed, round, run->public_count, per_round, f->sample) == 0 ||
        fl_public_sample(seed, round + 1, run->public_count, per_round, f->next_sample) == 0)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory drawing the public sample");
    return FEDKD_OK;
}

/* Runs the hosted clients among the selected ones and adds their
 * contributions into the accumulator. Returns seconds spent. A failure is
 * counted in SLOT_ERRORS so that the server learns of it through the reduce.
 * no_server_state: 1 after a round nobody reported in, -1 when finding that
 * out failed on this rank (a failure like a client's). */
static double train_hosted_clients(federation *f, int round, const int *selected, int m,
                                   const fl_payload *payload, int no_server_state)
{
    double start = fedkd_time_now();
    /* Test hook: rounds that last long enough for a signal or a kill to
     * land mid-run without burning CPU (the SLURM tests). */
    const char *round_sleep = getenv("FEDKD_TEST_SLEEP_IN_ROUND_MS");
    if (round_sleep && atoi(round_sleep) > 0) {
        struct timespec pause = {atoi(round_sleep) / 1000, (atoi(round_sleep) % 1000) * 1000000L};
        nanosleep(&pause, NULL);
    }
    const fedkd_algorithm *algorithm = f->algorithm;
    memset(f->accumulator, 0, (f->sum_len + SLOT_EXTRA) * sizeof(int64_t));
    int64_t *slots = f->accumulator + f->sum_len;
    double total = (double)selected_samples(f, selected, m);
    int packed = algorithm->global_model && payload->down > f->num_params;
    /* After a round nobody reported in, the soft-label server state is
     * stale (predictions on another public sample): it is broadcast, and
     * the clients start as in round 1. */
    const float *down = !payload->down || no_server_state     ? NULL
                        : algorithm->global_model && !packed ? f->global
                                                               : f->down;
    fedkd_status status = no_server_state < 0
                              ? FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory selecting clients")
                              : draw_samples(f, round);
    int next = 0;
    for (int h = 0; !status && h < f->num_hosted; h++) {
        int client = f->hosted[h];
        while (next < m && selected[next] < client) next++;
        if (next >= m || selected[next] != client) continue;
        int entry = fl_client_model_entry(&f->run.models, client);
        fedkd_model *model = f->train_models[entry];
        /* A global model: its architecture's, from the broadcast. */
        const float *start_params =
            algorithm->global_model
                ? (packed ? f->down : f->global) +
                      f->run.global_offset[fl_client_architecture(&f->run.models, client)]
                : f->client_state + (size_t)h * f->client_state_len;
        /* A compute slot from the rank's first selected client to its last
         * (local work only, no MPI call): one hand-over per rank and round,
         * however many clients it hosts. */
        fedkd_slots_acquire(f->slots);
        int takes_start = algorithm->ops->takes_start;
        if (!takes_start) memcpy(model->params, start_params, model->num_params * sizeof(float));
        fedkd_optimizer_reset(f->optimizers[entry]);
        fl_client_round c = {
            .round = round, .client = client, .selected = selected, .count = m,
            .data = f->client_data[h], .model = model, .optimizer = f->optimizers[entry],
            .start = takes_start ? start_params : NULL,
            .down = down, .sample = f->sample, .next_sample = f->next_sample,
            .weight = (double)f->client_data[h]->count / total, .sum = f->accumulator,
            .state = algorithm->global_model && f->client_state_len
                         ? f->client_state + (size_t)h * f->client_state_len
                         : NULL,
            .residual = f->residual_len ? f->client_state + (size_t)(h + 1) * f->client_state_len -
                                              f->residual_len
                                        : NULL,
        };
        status = algorithm->ops->client_round(&f->run, &c);
        if (!status) {
            float loss = (float)c.train_loss;
            status = fedkd_fixed_accumulate(slots + SLOT_TRAIN_LOSS, &loss, 1, c.weight);
        }
        if (!status && !algorithm->global_model) status = keep_client_model(f, h, model, m, slots);
        if (status && client < f->first_failed_client) f->first_failed_client = client;
    }
    fedkd_slots_release(f->slots);
    if (status) {
        /* This rank prints the message at exit; the server learns of the
         * failure through the reduce and stops the run. The remaining
         * clients are skipped so that the first failure is the one told. */
        char message[1024];
        snprintf(message, sizeof message, "%s", fedkd_error_message());
        FEDKD_FAIL(status, "round %d: %s", round, message);
        slots[SLOT_ERRORS] = 1;
    }
    return fedkd_time_now() - start;
}

/* Rank 0: one finished round into the run's result (its simulated seconds
 * beside it). */
static void add_to_result(fedkd_run_result *result, const fedkd_round_metrics *m,
                          const fedkd_config *config, double simulated_seconds)
{
    result->rounds_run = m->round;
    result->final_accuracy = m->test_accuracy;
    if (m->test_accuracy > result->best_accuracy) result->best_accuracy = m->test_accuracy;
    result->bytes_down_total += m->bytes_down;
    result->bytes_up_total += m->bytes_up;
    result->wire_bytes_total += m->wire_bytes;
    result->simulated = config->network.enabled;
    result->simulated_seconds_total += simulated_seconds;
    if (!result->rounds_to_target && m->test_accuracy >= config->target_accuracy) {
        result->rounds_to_target = m->round;
        result->bytes_to_target = result->bytes_down_total + result->bytes_up_total;
        result->simulated_seconds_to_target = result->simulated_seconds_total;
    }
}

/* Rank 0: round m->round on the simulated network (its time, who dropped),
 * found again from the seed, so that neither the metrics history nor the
 * checkpoints need to keep it. Nothing to find without clock or dropout. */
static fedkd_status round_network(federation *f, const fedkd_round_metrics *m,
                                  fedkd_round_network *out)
{
    memset(out, 0, sizeof *out);
    if (!f->netsim.enabled && !(f->netsim.dropout > 0.0)) return FEDKD_OK;
    if (fl_round_participants(&f->run, m->round, &f->log_plan) < 0)
        return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory selecting clients");
    out->simulated_seconds = f->log_plan.seconds;
    out->dropped = f->log_plan.num_dropped;
    out->dropped_clients = out->dropped ? f->log_plan.dropped : NULL;
    return FEDKD_OK;
}

/* Rank 0: a round's log row and its share of the run's result. */
static fedkd_status log_round(federation *f, const fedkd_round_metrics *m, const double *scores,
                              fedkd_run_result *result, int write)
{
    fedkd_round_network network;
    fedkd_status status = round_network(f, m, &network);
    if (!status && write)
        status = fedkd_runlog_write_round_more(&f->log, m, &network, scores ? f->num_models : 0,
                                               scores);
    if (!status && result) add_to_result(result, m, f->config, network.simulated_seconds);
    return status;
}

/* After the last round of a run with a global model, the clients'
 * training models, optimizers and sums are done with: they go before the
 * final checkpoint, whose HDF5 and MPI-IO buffers would otherwise come on
 * top of them at a client rank's peak memory (their chunks give their
 * memory back, fedkd_free). */
static void release_training(federation *f)
{
    for (int e = 0; f->train_models && e < f->run.models.num_entries; e++) {
        fedkd_model_destroy(&f->train_models[e]);
        fedkd_optimizer_destroy(&f->optimizers[e]);
    }
    fedkd_train_scratch_destroy(&f->run.train_scratch);
    fedkd_free(f->accumulator);
    f->accumulator = NULL;
}

static void free_federation(federation *f)
{
    fedkd_runlog_close(&f->log);
    fedkd_client_set_free(&f->data);
    for (int e = 0; f->train_models && e < f->run.models.num_entries; e++) {
        fedkd_model_destroy(&f->train_models[e]);
        fedkd_optimizer_destroy(&f->optimizers[e]);
    }
    free(f->train_models);
    free(f->optimizers);
    fedkd_train_scratch_destroy(&f->run.train_scratch);
    fl_client_models_free(&f->run.models);
    for (int g = 0; g < FL_MAX_ARCHITECTURES; g++) {
        fedkd_model_destroy(&f->eval_models[g]);
        fedkd_model_destroy(&f->server_models[g]);
        fedkd_optimizer_destroy(&f->server_optimizers[g]);
    }
    fedkd_free(f->global);
    fedkd_free(f->down);
    free(f->sample);
    free(f->next_sample);
    fedkd_free(f->accumulator);
    fedkd_free(f->reduced);
    free(f->checksums);
    free(f->header);
    fedkd_free(f->client_state);
    fedkd_free(f->server_state);
    free(f->history);
    free(f->model_scores);
    fl_netsim_free(&f->netsim);
    fl_round_plan_free(&f->plan);
    fl_round_plan_free(&f->previous_plan);
    fl_round_plan_free(&f->log_plan);
    fedkd_slots_close(f->slots);
    fedkd_node_share_close(f->node_share);
}

static fedkd_status setup(federation *f, const fedkd_run_options *options)
{
    const fedkd_config *config = f->config;
    fedkd_status status = check_config(f);
    status = fedkd_comm_agree(f->comm, status);
    if (status) return status;
    status = load_data(f);
    /* The shared load may have agreed on a failure already. */
    if (!status || !fedkd_comm_failure_agreed()) status = fedkd_comm_agree(f->comm, status);
    if (status) return status;
    /* Memory checked before it is spent: models and buffers are estimated
     * from their specs, the ranks of each node added up. */
    double need = 0.0, node_shared = 0.0;
    char account[160] = "";
    status = fl_fed_memory_estimate(f, &need, &node_shared, account, sizeof account);
    status = fedkd_comm_agree(f->comm, status);
    if (!status) status = fedkd_memory_check(f->comm, need, node_shared, account, f->dry_run);
    if (status || f->dry_run) return status;
    status = build_models(f);
    if (!status) status = fl_fed_allocate_state(f);
    status = fedkd_comm_agree(f->comm, status);
    if (status) return status;
    /* Before the logs are opened: a refused resume leaves them as they are. */
    status = fl_fed_choose_start(f, options);
    if (status) return status;
    if (f->rank == 0 && !f->resume_path[0]) {
        /* A fresh run would overwrite the directory's logs, and checkpoints
         * of an earlier history must go or `--resume auto` would mix them
         * into this one: that needs the user's word (a requeued job that
         * forgot --resume auto must not wipe its own progress). */
        char newest[1024];
        int round = 0;
        status = fedkd_checkpoint_find_latest(config->run.dir, newest, sizeof newest, &round);
        if (!status && round > 0 && !(options && options->start_over))
            status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                "run directory %s holds checkpoints of an earlier run (the newest "
                                "after round %d): continue it with --resume auto, or pass "
                                "--start-over to delete them and start at round 1",
                                config->run.dir, round);
        if (!status && round > 0) {
            int removed = 0;
            status = fedkd_checkpoint_remove_all(config->run.dir, &removed);
            if (removed)
                fedkd_log_warn("%s held %d checkpoint file(s) of an earlier run: removed, as "
                               "--start-over asked", config->run.dir, removed);
        }
    }
    status = fedkd_comm_agree(f->comm, status);
    if (status) return status;
    if (f->rank == 0) {
        status = fedkd_runlog_open(&f->log, config->run.dir);
        /* A resumed run's logs are the checkpoint's history (rounds logged
         * after it are redone), then the new rounds. */
        for (int i = 0; !status && i < f->history_len; i++)
            status = log_round(
                f, &f->history[i],
                f->model_scores ? f->model_scores + (size_t)i * 2 * (size_t)f->num_models : NULL,
                NULL, 1);
        if (!status) {
            cJSON *json = fedkd_partition_to_json(f->partition);
            status = json ? fedkd_write_json_file(config->run.dir, "partition.json", json)
                          : FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing partition.json");
            cJSON_Delete(json);
        }
    }
    status = fedkd_comm_agree(f->comm, status);
    if (status) return status;
    f->slots = fedkd_slots_open(f->comm, config->run.compute_slots);
    /* The largest payload is round 2's (as for f->down). */
    fl_payload payload = f->algorithm->ops->payload(&f->run, 2);
    size_t areas[NODE_AREAS] = {
        [NODE_AREA_HEADER] = (size_t)(HEADER_FIXED + f->num_clients) * sizeof(int),
        [NODE_AREA_PAYLOAD] = payload.down * sizeof(float),
    };
    return fedkd_node_share_open(f->comm, f->sum_len + SLOT_EXTRA, areas, NODE_AREAS,
                                 &f->node_share);
}

/* Rank 0: the test scores of the round's global model, or with one per
 * architecture (FedDF over mixed models) each one's into scores (2 *
 * num_models: accuracies, then losses) and their means. */
static fedkd_status evaluate_globals(federation *f, fedkd_round_metrics *m, double *scores)
{
    int globals = f->num_models;
    if (globals == 0) return fedkd_evaluate(f->eval_models[0], f->test, &m->test_accuracy,
                                            &m->test_loss);
    double accuracy = 0.0, loss = 0.0;
    for (int g = 0; g < globals; g++) {
        fedkd_status status = fedkd_evaluate(f->eval_models[g], f->test, &scores[g],
                                             &scores[globals + g]);
        if (status) return status;
        accuracy += scores[g];
        loss += scores[globals + g];
    }
    m->test_accuracy = accuracy / globals;
    m->test_loss = loss / globals;
    return FEDKD_OK;
}

/* Rank 0: the test evaluation of an aggregated round (eval_models hold its
 * global weights; without one, its scores came with the sum), then its log
 * row, progress line and history entry.
 * With P > 1 this runs while the clients train the next round, so the
 * server's evaluation leaves the round's critical path. */
static fedkd_status finish_round(federation *f, fedkd_round_metrics *m, int overlapped,
                                 fedkd_run_result *result, double run_start)
{
    /* Without a global model the hosts scored their clients while training. */
    double scores[2 * FL_MAX_ARCHITECTURES] = {0};
    if (f->algorithm->global_model) {
        double t = fedkd_time_now();
        fedkd_slots_acquire(f->slots);
        fedkd_status status = evaluate_globals(f, m, scores);
        fedkd_slots_release(f->slots);
        /* Test hook: a failure on the server alone, mid-run, while the
         * clients are inside the round's collectives (tests/app). */
        const char *fail_round = getenv("FEDKD_TEST_FAIL_EVAL_ROUND");
        if (!status && fail_round && atoi(fail_round) == m->round)
            status = FEDKD_FAIL(FEDKD_ERR_IO,
                                "evaluation of round %d failed (injected by "
                                "FEDKD_TEST_FAIL_EVAL_ROUND)", m->round);
        m->eval_seconds = fedkd_time_now() - t;
        m->eval_overlapped = overlapped;
        if (!overlapped) m->round_seconds += m->eval_seconds;
        if (status) return status;
    }
    fedkd_status status = log_round(f, m, scores, NULL, 1);
    if (status) return status;
    /* After SIGTERM mpiexec stops reading the ranks' output: a line printed
     * then can block until the kill. */
    if (!fedkd_stop_requested)
        fedkd_runlog_print_progress(m, f->config->rounds, fedkd_time_now() - run_start);
    status = fl_fed_reserve_history(f, f->history_len + 1);
    if (status) return status;
    if (f->num_models)
        memcpy(f->model_scores + (size_t)f->history_len * 2 * (size_t)f->num_models, scores,
               2 * (size_t)f->num_models * sizeof *scores);
    f->history[f->history_len++] = *m;
    return log_round(f, m, NULL, result, 0);
}

/* Rank 0: the checksum of every architecture's global model, one after
 * the other (the global weights' alone when there is one). */
static uint64_t global_models_checksum(federation *f)
{
    uint64_t checksum = fedkd_checksum(f->global, f->num_params * sizeof(float));
    for (int g = 1; g < f->run.num_globals; g++)
        checksum = fedkd_checksum_more(checksum, fl_fed_global_model(f, g),
                                       (f->run.global_offset[g + 1] - f->run.global_offset[g]) *
                                           sizeof(float));
    return checksum;
}

/* Rank 0 learns the slowest rank's set-up time (summary.json
 * `setup_seconds`) and the bytes the shared data loading moved. */
static fedkd_status note_setup_time(federation *f, double setup_start, fedkd_run_result *result)
{
    double mine = fedkd_time_now() - setup_start, slowest = 0.0;
    MPI_Request request;
    if (MPI_Ireduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, 0, f->comm, &request) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Ireduce of the set-up time failed");
    fedkd_status status = fedkd_comm_wait(&request, "the set-up time reduction");
    if (!status && f->rank == 0) {
        result->setup_seconds = slowest;
        result->setup_bytes = f->data.setup_bytes;
    }
    return status;
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
    f->data_flags = options ? options->data_flags : 0;
    f->dry_run = options ? options->dry_run : 0;
    MPI_Comm_rank(comm, &f->rank);
    MPI_Comm_size(comm, &f->size);
    double setup_start = fedkd_comm_claim_start_time();
    double start = fedkd_time_now();
    const char *outcome = "failed";

    fedkd_status status = setup(f, options);
    if (!status && !f->dry_run) status = note_setup_time(f, setup_start, result);
    if (status || f->dry_run) {
        free_federation(f);
        return status;
    }
    /* Run time includes the time before a resumed checkpoint. */
    start -= f->earlier_seconds;
    /* Rank 0 alone: a failure here stops the run through the first header. */
    fedkd_status resumed = FEDKD_OK;
    for (int i = 0; !resumed && f->rank == 0 && i < f->history_len; i++)
        resumed = log_round(f, &f->history[i], NULL, result, 0);
    if (f->rank == 0) {
        int m = fedkd_clients_per_round(f->num_clients, config->clients.per_round);
        char models[128];
        if (f->algorithm->global_model)
            snprintf(models, sizeof models, "model %.32s with %zu parameters", f->spec.name,
                     f->num_params);
        else
            snprintf(models, sizeof models, "%d client model(s) of up to %zu parameters",
                     f->run.models.num_entries, f->run.models.max_params);
        fedkd_log_info("federation: %s, %d clients (%d per round) on %d rank(s), partition %s, "
                       "%s, %d rounds",
                       f->algorithm->name, f->num_clients, m, f->size, config->partition.scheme,
                       models, config->rounds);
    }

    const uint64_t peers = (uint64_t)(f->size - 1);
    const int buffer_len = (int)(f->sum_len + SLOT_EXTRA);
    int64_t *reduced_slots = f->reduced ? f->reduced + f->sum_len : NULL;
    int *selected = f->header + HEADER_FIXED;
    fedkd_status local_failure = resumed;
    /* Rank 0: the aggregated round whose evaluation is still to come. */
    fedkd_round_metrics pending = {0};
    int has_pending = 0;

    for (int round = f->first_round;; round++) {
        double round_start = fedkd_time_now();
        double comm_seconds = 0.0;
        fedkd_round_metrics m = {0};
        fedkd_status server_failure = FEDKD_OK; /* rank 0: the pending evaluation's */

        /* 1. Header: what happens this round. */
        if (f->rank == 0) {
            int command = HEADER_CONTINUE, signalled = 0;
            if (local_failure) command = HEADER_ERROR;
            else if (round > config->rounds) command = HEADER_STOP;
            else if (fedkd_stop_requested) {
                command = HEADER_ERROR;
                signalled = 1;
            }
            /* Every `every` rounds, at the end, and when a signal stops the
             * run (a time limit: no finished round is lost). Under mpirun
             * the ranks have odls_base_sigkill_timeout seconds for it. */
            int finished = round - 1, every = config->checkpoint.every;
            f->header[HEADER_CHECKPOINT] =
                finished >= 1 && finished > f->last_checkpoint &&
                        (command == HEADER_STOP || signalled ||
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
                                           "interrupted by signal %d before round %d; logs and "
                                           "a checkpoint of %d round(s) are in %s (--resume "
                                           "auto continues)",
                                           (int)fedkd_stop_requested, round, round - 1,
                                           config->run.dir);
            }
            /* The clients learn why the run stops, for their exit status. */
            if (f->header[HEADER_COMMAND] == HEADER_ERROR) f->header[HEADER_COUNT] = (int)local_failure;
        }
        int header_len = HEADER_FIXED + f->num_clients;
        double t = fedkd_time_now();
        status = fedkd_node_share_bcast(f->node_share, NODE_AREA_HEADER, f->header, header_len,
                                        MPI_INT, 0, "the round header broadcast");
        comm_seconds += fedkd_time_now() - t;
        if (status) break;
        m.wire_bytes += peers * (uint64_t)header_len * sizeof(int);
        if (has_pending && (f->header[HEADER_CHECKPOINT] > 0 ||
                            f->header[HEADER_COMMAND] != HEADER_CONTINUE)) {
            /* A checkpoint holds every finished round's metrics, and the
             * last round's row comes before the summary. */
            has_pending = 0;
            fedkd_status finished = finish_round(f, &pending, 0, result, start);
            if (finished) {
                server_failure = finished;
                if (!local_failure || local_failure == FEDKD_ERR_INTERRUPTED)
                    local_failure = finished;
            }
        }
        if (f->header[HEADER_CHECKPOINT] > 0 || f->header[HEADER_COMMAND] == HEADER_STOP) {
            /* The server's evaluation of the pending round may just have
             * failed: every rank learns it here, before the collective
             * checkpoint and before calling the run complete. A signal
             * alone still gets its checkpoint. */
            status = fedkd_comm_agree(comm, f->rank == 0 ? server_failure : FEDKD_OK);
            if (status) break;
        }
        if (f->header[HEADER_COMMAND] == HEADER_STOP && f->algorithm->global_model)
            release_training(f);
        if (f->header[HEADER_CHECKPOINT] > 0) {
            /* The checkpoint's time is not the round's. */
            t = fedkd_time_now();
            status = fl_fed_write_checkpoint(f, f->header[HEADER_CHECKPOINT], start);
            if (status) break;
            round_start += fedkd_time_now() - t;
        }
        if (f->header[HEADER_COMMAND] == HEADER_STOP) {
            outcome = "completed";
            break;
        }
        if (f->header[HEADER_COMMAND] == HEADER_ERROR) {
            fedkd_status told = f->header[HEADER_COUNT] > 0 ? (fedkd_status)f->header[HEADER_COUNT]
                                                            : FEDKD_ERR_INTERRUPTED;
            status = f->rank == 0 ? local_failure : (local_failure ? local_failure : told);
            /* Several clients may have failed at once: the first one tells. */
            int first = INT_MAX;
            if (MPI_Allreduce(&f->first_failed_client, &first, 1, MPI_INT, MPI_MIN, comm) ==
                    MPI_SUCCESS &&
                first != INT_MAX && f->first_failed_client != first)
                fedkd_error_clear();
            break;
        }
        int count = f->header[HEADER_COUNT];
        /* Who of the selected clients reports (dropout, deadline) and the
         * round's simulated time: the same on every rank, from the seed. */
        fl_netsim_plan(&f->netsim, &f->run, round, selected, count, &f->plan);
        int received = f->plan.num_received;
        int no_server_state = 0;
        if (!f->algorithm->global_model && round > 1)
            no_server_state = fl_round_participants(&f->run, round - 1, &f->previous_plan) < 0
                                  ? -1
                                  : f->previous_plan.num_received == 0;

        /* 2. The payload down: global weights or the server's consensus. */
        fl_payload payload = f->algorithm->ops->payload(&f->run, round);
        if (payload.down) {
            /* SCAFFOLD: the global weights, then the server's state. */
            int packed = f->algorithm->global_model && payload.down > f->num_params;
            size_t weights = packed ? f->num_params : 0;
            float *down = f->algorithm->global_model && !packed ? f->global : f->down;
            if (f->rank == 0 && packed) memcpy(f->down, f->global, weights * sizeof(float));
            if (f->rank == 0 && !(f->algorithm->global_model && !packed))
                memcpy(f->down + weights, f->server_state,
                       (payload.down - weights) * sizeof(float));
            t = fedkd_time_now();
            status = fedkd_node_share_bcast(f->node_share, NODE_AREA_PAYLOAD, down,
                                            (int)payload.down, MPI_FLOAT, 1,
                                            "the payload broadcast");
            comm_seconds += fedkd_time_now() - t;
            if (status) break;
            if (f->rank != 0 && packed) memcpy(f->global, f->down, weights * sizeof(float));
            m.wire_bytes += peers * (uint64_t)payload.down * sizeof(float);
            m.bytes_down = (uint64_t)(payload.sent_down ? payload.sent_down : payload.down) *
                           sizeof(float) * (uint64_t)count;
        }

        /* 3. Local training of the hosted, selected clients. */
        double train_seconds =
            train_hosted_clients(f, round, f->plan.received, received, &payload, no_server_state);
        if (f->accumulator[f->sum_len + SLOT_ERRORS] && f->rank != 0)
            local_failure = FEDKD_ERR_NUMERIC;

        /* 4. Updates up: one exact integer sum, and the slowest rank's
         * training time (fedkd_node_share: within a node through shared
         * memory, each rank asleep once it is done). The server evaluates
         * the previous round while the clients train this one. */
        t = fedkd_time_now();
        fedkd_node_share_add(f->node_share, f->accumulator, train_seconds);
        double overlapped_seconds = 0.0;
        if (has_pending) {
            has_pending = 0;
            double e = fedkd_time_now();
            fedkd_status finished = finish_round(f, &pending, 1, result, start);
            if (finished && !local_failure) local_failure = finished;
            overlapped_seconds = fedkd_time_now() - e;
        }
        double slowest = 0.0;
        status = fedkd_node_share_finish(f->node_share, f->reduced, &slowest);
        double reduce_seconds = fedkd_time_now() - t;
        if (status) break;
        /* Every rank's sum and time reach rank 0, through shared memory or
         * MPI alike. */
        m.wire_bytes += peers * ((uint64_t)buffer_len * sizeof(int64_t) + sizeof(double));
        /* FedDF over mixed architectures: each participant's own size
         * (uncompressed: compression is refused with mixed models). */
        m.bytes_up = f->run.num_globals > 1 && f->algorithm->ops->upload_floats
                         ? f->algorithm->ops->upload_floats(&f->run, f->plan.received, received) *
                               sizeof(float)
                         : fl_upload_bytes(config, &payload) * (uint64_t)received;

        if (f->rank != 0) continue;

        /* 5. Server: apply, evaluate, log. */
        m.round = round;
        m.participants = received;
        m.train_seconds = slowest;
        /* With P > 1 the server's reduce wait contains the clients' training
         * and, alongside it, the previous round's evaluation. */
        double waiting =
            f->size > 1 ? reduce_seconds - fmax(slowest, overlapped_seconds) : reduce_seconds;
        m.comm_seconds = comm_seconds + (waiting > 0.0 ? waiting : 0.0);
        if (reduced_slots[SLOT_ERRORS] != 0) {
            /* The failing client's rank reports it; say nothing twice. */
            if (f->accumulator[f->sum_len + SLOT_ERRORS] == 0) fedkd_error_clear();
            local_failure = FEDKD_ERR_NUMERIC;
            continue;
        }
        t = fedkd_time_now();
        fl_server_round update = {
            .round = round, .count = received, .sum = f->reduced, .global = f->global,
            .state = f->server_state, .sample = f->sample, .models = f->server_models,
            .optimizers = f->server_optimizers,
        };
        /* Nobody reported: the global model and server state stay as they
         * are (clients keeping models: the last round's scores stand). */
        if (received == 0) {
            fedkd_log_warn("round %d: all %d selected client(s) dropped; the global model and "
                           "server state are kept", round, count);
            if (!f->algorithm->global_model && f->history_len > 0) {
                m.test_accuracy = f->history[f->history_len - 1].test_accuracy;
                m.test_loss = f->history[f->history_len - 1].test_loss;
            }
        } else {
            status = f->algorithm->ops->server_update(&f->run, &update);
        }
        if (status) {
            local_failure = status;
            status = FEDKD_OK;
            continue;
        }
        m.train_loss = fedkd_fixed_to_double(reduced_slots[SLOT_TRAIN_LOSS]);
        if (!f->algorithm->global_model && received > 0) {
            m.test_accuracy = fedkd_fixed_to_double(reduced_slots[SLOT_TEST_ACCURACY]);
            m.test_loss = fedkd_fixed_to_double(reduced_slots[SLOT_TEST_LOSS]);
        }
        m.aggregate_seconds = fedkd_time_now() - t;

        /* The evaluation needs the weights as they are now; the next
         * round changes f->global only after its reduce. */
        for (int g = 0; g < f->run.num_globals; g++)
            memcpy(f->eval_models[g]->params, fl_fed_global_model(f, g),
                   f->eval_models[g]->num_params * sizeof(float));
        m.round_seconds = fedkd_time_now() - round_start;
        if (f->size > 1 && f->algorithm->global_model) {
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

    /* Clients' own models: every rank knows the run completed (the header
     * said so), so all take part in the checksum's reduction. (Rank 0 leaves
     * a stopping round early only over a pending evaluation, which needs a
     * global model.) */
    uint64_t client_checksum = 0;
    if (!f->algorithm->global_model && strcmp(outcome, "completed") == 0)
        client_checksum = fl_fed_client_checksum(f);
    if (f->rank == 0) {
        result->wall_seconds = fedkd_time_now() - start;
        result->num_params = f->num_params;
        if (f->algorithm->global_model) {
            result->params_checksum = global_models_checksum(f);
            result->final_params = malloc(f->num_params * sizeof(float));
            if (result->final_params)
                memcpy(result->final_params, f->global, f->num_params * sizeof(float));
        } else {
            result->params_checksum = client_checksum;
        }
        char first_message[1024];
        snprintf(first_message, sizeof first_message, "%s", fedkd_error_message());
        fedkd_status written = fedkd_summary_write_run(config, outcome, result, 1, NULL);
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
