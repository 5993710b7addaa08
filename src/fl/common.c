/* Runner pieces shared by the federated and the centralized modes. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fedkd/core.h"
#include "fedkd/kd.h"
#include "fl_private.h"

volatile sig_atomic_t fedkd_stop_requested = 0;

static void on_stop_signal(int signal_number)
{
    fedkd_stop_requested = signal_number;
}

void fedkd_install_signal_handlers(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    /* SLURM's warning before a time limit (sbatch --signal=B:USR1@120,
     * forwarded to every rank by srun and mpirun): stop as for SIGTERM. */
    sigaction(SIGUSR1, &action, NULL);
}

fedkd_status fl_agree(MPI_Comm comm, fedkd_status local)
{
    int mine[2] = {(int)local, -(int)local};
    int all[2];
    if (MPI_Allreduce(mine, all, 2, MPI_INT, MPI_MAX, comm) != MPI_SUCCESS)
        return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI_Allreduce failed while checking the ranks' status");
    int worst = all[0], best = -all[1];
    if (worst == FEDKD_OK) return FEDKD_OK;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    if (local == FEDKD_OK) {
        fedkd_error_clear();
    } else if (best == worst && rank != 0) {
        /* Every rank failed the same way (typically a config error that all
         * of them parsed): rank 0 alone says so. */
        fedkd_error_clear();
    }
    return (fedkd_status)worst;
}

fedkd_status fl_wait(MPI_Request *request, const char *what)
{
    struct timespec pause = {0, 100000}; /* 0.1 ms */
    for (;;) {
        int done = 0;
        if (MPI_Test(request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return FEDKD_FAIL(FEDKD_ERR_MPI, "MPI failed during %s", what);
        if (done) return FEDKD_OK;
        nanosleep(&pause, NULL);
    }
}

fedkd_optimizer_settings fl_optimizer_settings(const fedkd_config *config)
{
    fedkd_optimizer_settings s = fedkd_optimizer_default_settings();
    snprintf(s.name, sizeof s.name, "%s", config->local.optimizer);
    s.lr = (float)config->local.lr;
    s.momentum = (float)config->local.momentum;
    s.nesterov = config->local.nesterov;
    s.weight_decay = (float)config->local.weight_decay;
    return s;
}

unsigned fl_data_flags(const fedkd_config *config)
{
    if (strcmp(config->mode, "kd-start") == 0) return FEDKD_CLIENTSET_PUBLIC;
    if (strcmp(config->mode, "federated") != 0 && strcmp(config->mode, "pretrain") != 0) return 0;
    const fedkd_algorithm *algorithm = NULL;
    if (fedkd_algorithm_find(config->algorithm, &algorithm) != FEDKD_OK) {
        fedkd_error_clear(); /* reported where the run looks the algorithm up */
        return 0;
    }
    return algorithm->uses_public ? FEDKD_CLIENTSET_PUBLIC : 0;
}

fedkd_status fl_model_spec(const fedkd_config *config, fedkd_shape shape, int num_classes,
                           fedkd_model_spec *spec)
{
    return fedkd_model_spec_from_json(spec, config->model, shape, num_classes,
                                      "config key `model`");
}

void fl_print_progress(const fedkd_round_metrics *m, int total_rounds, double elapsed)
{
    double eta = m->round > 0 ? elapsed / m->round * (total_rounds - m->round) : 0.0;
    fedkd_log_info("round %*d/%d  acc %.4f  loss %.4f  train-loss %.4f  %.2fs (train %.2fs)  ETA %.0fs",
                   total_rounds >= 100 ? 3 : 2, m->round, total_rounds, m->test_accuracy,
                   m->test_loss, m->train_loss, m->round_seconds, m->train_seconds, eta);
}

fedkd_status fl_write_summary(const fedkd_config *config, const char *status_text,
                              const fedkd_run_result *result, int num_params_known)
{
    return fl_write_summary_extra(config, status_text, result, num_params_known, NULL);
}

fedkd_status fl_write_summary_extra(const fedkd_config *config, const char *status_text,
                                    const fedkd_run_result *result, int num_params_known,
                                    const cJSON *extra)
{
    cJSON *summary = fedkd_summary_new(config, status_text);
    if (!summary) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory writing summary.json");
    char checksum[32];
    snprintf(checksum, sizeof checksum, "%016llx", (unsigned long long)result->params_checksum);
    cJSON_AddNumberToObject(summary, "rounds_run", result->rounds_run);
    cJSON_AddNumberToObject(summary, "final_accuracy", result->final_accuracy);
    cJSON_AddNumberToObject(summary, "best_accuracy", result->best_accuracy);
    cJSON_AddNumberToObject(summary, "target_accuracy", config->target_accuracy);
    if (result->rounds_to_target > 0) {
        cJSON_AddNumberToObject(summary, "rounds_to_target", result->rounds_to_target);
        cJSON_AddNumberToObject(summary, "bytes_to_target", (double)result->bytes_to_target);
    } else {
        cJSON_AddNullToObject(summary, "rounds_to_target");
        cJSON_AddNullToObject(summary, "bytes_to_target");
    }
    cJSON_AddNumberToObject(summary, "bytes_down_total", (double)result->bytes_down_total);
    cJSON_AddNumberToObject(summary, "bytes_up_total", (double)result->bytes_up_total);
    cJSON_AddNumberToObject(summary, "wire_bytes_total", (double)result->wire_bytes_total);
    cJSON_AddNumberToObject(summary, "wall_seconds", result->wall_seconds);
    if (num_params_known) {
        cJSON_AddNumberToObject(summary, "num_params", (double)result->num_params);
        cJSON_AddStringToObject(summary, "params_checksum", checksum);
    }
    for (const cJSON *item = extra ? extra->child : NULL; item; item = item->next)
        cJSON_AddItemToObject(summary, item->string, cJSON_Duplicate(item, 1));
    return fedkd_summary_write(config, summary);
}

fedkd_status fedkd_run(const fedkd_config *config, MPI_Comm comm, fedkd_run_result *result)
{
    return fedkd_run_with_options(config, comm, NULL, result);
}

static fedkd_status run_mode(const fedkd_config *config, MPI_Comm comm,
                             const fedkd_run_options *options, fedkd_run_result *result);

fedkd_status fedkd_run_with_options(const fedkd_config *config, MPI_Comm comm,
                                    const fedkd_run_options *options, fedkd_run_result *result)
{
    memset(result, 0, sizeof *result);
    int lock = -1;
    fedkd_status status = fl_run_lock_acquire(config, comm, &lock);
    if (!status) status = run_mode(config, comm, options, result);
    fl_run_lock_release(&lock);
    return status;
}

static fedkd_status run_mode(const fedkd_config *config, MPI_Comm comm,
                             const fedkd_run_options *options, fedkd_run_result *result)
{
    int resuming = options && options->resume && options->resume[0];
    /* `auto` means "continue if there is something to continue": batch
     * scripts pass it whatever the config's mode, and a mode without
     * checkpoints has nothing to continue. A checkpoint path is refused. */
    int resume_auto = resuming && strcmp(options->resume, "auto") == 0;
    /* kd-start runs federations itself, from three starts. */
    if (strcmp(config->mode, "kd-start") == 0)
        return fedkd_run_kd_start(config, comm, options, result);
    if (strcmp(config->mode, "federated") == 0)
        return fedkd_run_federated(config, comm, options, result);
    /* Every rank sees the same options: rank 0 alone says so. */
    if (resuming && !resume_auto)
        return fl_agree(comm, FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                         "--resume: config key `mode` is \"%s\"; only federated "
                                         "and kd-start runs write checkpoints and resume "
                                         "(pretrain and kd-study reuse their model files)",
                                         config->mode));
    if (strcmp(config->mode, "centralized") == 0) return fedkd_run_centralized(config, comm, result);
    if (strcmp(config->mode, "pretrain") == 0) return fedkd_run_pretrain(config, comm, result);
    if (strcmp(config->mode, "kd-study") == 0) return fedkd_run_kd_study(config, comm, result);
    return fl_agree(comm, FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `mode`: unknown mode `%s`",
                                     config->mode));
}
