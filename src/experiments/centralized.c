/* Centralized training: rank 0 trains one model on the whole training set,
 * one round = local.epochs epochs, and logs each round like a federation
 * (no bytes move). Other ranks wait. This is the baseline a federation is
 * compared against and the benchmark of the neural engine. */
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "experiments/experiments_private.h"

fedkd_status fedkd_run_centralized(const fedkd_config *config, MPI_Comm comm,
                                   fedkd_run_result *result)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    fedkd_status status = FEDKD_OK;
    fedkd_source_info info = {0};
    fedkd_dataset *test = NULL;
    fedkd_model *model = NULL;
    fedkd_optimizer *optimizer = NULL;
    fedkd_runlog log = {0};
    double start = fedkd_time_now();
    const char *outcome = "failed";

    if (rank == 0) {
        const fedkd_source *source = NULL;
        fedkd_model_spec spec;
        fedkd_optimizer_settings opt = fedkd_train_optimizer_settings(config);
        status = fedkd_source_find(config->data.name, &source);
        if (!status) status = source->describe(config, &info);
        if (!status && !info.full_train) {
            uint32_t *rows = malloc((info.train_count ? info.train_count : 1) * sizeof *rows);
            if (!rows) status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for row indices");
            for (size_t i = 0; !status && i < info.train_count; i++) rows[i] = (uint32_t)i;
            if (!status) status = source->load_train_rows(config, rows, info.train_count,
                                                          &info.full_train);
            free(rows);
        }
        if (!status) status = source->load_test(config, &test);
        if (!status) status = fedkd_train_model_spec(config, info.shape, info.num_classes, &spec);
        int max_batch = config->local.batch_size > config->eval_batch_size
                            ? config->local.batch_size
                            : config->eval_batch_size;
        if (!status) status = fedkd_model_create(&model, &spec, max_batch);
        if (!status) status = fedkd_optimizer_create(&optimizer, &opt, model->num_params);
        if (!status) status = fedkd_runlog_open(&log, config->run.dir);
        if (!status) {
            fedkd_model_init_params(model, config->seed, 0);
            fedkd_log_info("centralized: %zu training and %zu test samples, model %s with %zu "
                           "parameters, %d rounds of %d epoch(s)",
                           info.full_train->count, test->count, spec.name, model->num_params,
                           config->rounds, config->local.epochs);
        }
    }
    status = fedkd_comm_agree(comm, status);
    if (status) goto done;

    if (rank == 0) {
        for (int round = 1; round <= config->rounds; round++) {
            if (fedkd_stop_requested) {
                status = FEDKD_FAIL(FEDKD_ERR_INTERRUPTED,
                                    "interrupted by signal %d before round %d; logs of %d "
                                    "round(s) are in %s",
                                    (int)fedkd_stop_requested, round, round - 1, config->run.dir);
                outcome = "interrupted";
                break;
            }
            double round_start = fedkd_time_now();
            fedkd_train_settings train = fedkd_train_default_settings();
            train.epochs = config->local.epochs;
            train.steps = config->local.steps;
            train.batch_size = config->local.batch_size;
            train.seed = config->seed;
            train.stream_a = 0;
            train.stream_b = (uint64_t)(round - 1) *
                             (uint64_t)fedkd_train_passes(&train, info.full_train->count,
                                                          train.batch_size);
            fedkd_train_stats stats;
            status = fedkd_train_local(model, optimizer, info.full_train, &train, &stats);
            if (status) break;
            fedkd_round_metrics m = {0};
            m.round = round;
            m.participants = 1;
            m.train_loss = stats.mean_loss;
            m.train_seconds = stats.seconds;
            double eval_start = fedkd_time_now();
            status = fedkd_evaluate(model, test, &m.test_accuracy, &m.test_loss);
            if (status) break;
            m.eval_seconds = fedkd_time_now() - eval_start;
            m.round_seconds = fedkd_time_now() - round_start;
            status = fedkd_runlog_write_round(&log, &m);
            if (status) break;
            fedkd_runlog_print_progress(&m, config->rounds, fedkd_time_now() - start);
            fedkd_log_info("  %.0f training samples/s", (double)stats.samples / stats.seconds);
            result->rounds_run = round;
            result->final_accuracy = m.test_accuracy;
            if (m.test_accuracy > result->best_accuracy) result->best_accuracy = m.test_accuracy;
            if (!result->rounds_to_target && m.test_accuracy >= config->target_accuracy)
                result->rounds_to_target = round;
        }
        if (!status) outcome = "completed";
        result->wall_seconds = fedkd_time_now() - start;
        result->num_params = model->num_params;
        result->params_checksum = fedkd_checksum(model->params, model->num_params * sizeof(float));
        result->final_params = malloc(model->num_params * sizeof(float));
        if (result->final_params)
            memcpy(result->final_params, model->params, model->num_params * sizeof(float));
        fedkd_status written = fedkd_summary_write_run(config, outcome, result, 1, NULL);
        if (!status) status = written;
        if (!status)
            fedkd_log_info("final test accuracy %.4f (best %.4f) after %d round(s), %.1fs; logs in %s",
                           result->final_accuracy, result->best_accuracy, result->rounds_run,
                           result->wall_seconds, config->run.dir);
    }
    /* The other ranks wait here without spinning. */
    {
        int code = (int)status, agreed = 0;
        MPI_Request request;
        MPI_Iallreduce(&code, &agreed, 1, MPI_INT, MPI_MAX, comm, &request);
        fedkd_status waited = fedkd_comm_wait(&request, "the end of the centralized run");
        if (!status) status = waited ? waited : (fedkd_status)agreed;
    }
done:
    fedkd_runlog_close(&log);
    fedkd_optimizer_destroy(&optimizer);
    fedkd_model_destroy(&model);
    fedkd_dataset_destroy(&test);
    fedkd_source_info_clear(&info);
    return status;
}
