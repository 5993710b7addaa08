/* The mode table (include/fedkd/experiments/experiments.h): `mode` names a
 * row, the row runs it. Adding a mode is one file with its run function and
 * one row here (and its name among the config's choices for `mode`). */
#include <stdio.h>
#include <string.h>

#include "fedkd/core/comm.h"
#include "fedkd/core/core.h"
#include "fedkd/data/clientset.h"
#include "fedkd/experiments/experiments.h"
#include "fedkd/io/runlog.h"
#include "fedkd/kd/kd.h"

static fedkd_status run_centralized(const fedkd_config *config, MPI_Comm comm,
                                    const fedkd_run_options *options, fedkd_run_result *result)
{
    (void)options;
    return fedkd_run_centralized(config, comm, result);
}

static fedkd_status run_kd_start(const fedkd_config *config, MPI_Comm comm,
                                 const fedkd_run_options *options, fedkd_run_result *result)
{
    return fedkd_run_kd_start(config, comm, options, result);
}

static fedkd_status run_federated(const fedkd_config *config, MPI_Comm comm,
                                  const fedkd_run_options *options, fedkd_run_result *result)
{
    return fedkd_run_federated(config, comm, options, result);
}

static const fedkd_mode mode_kd_start = {
    "kd-start",
    "FedAvg from random, averaged and KD-distilled starts (default)",
    1, 0, FEDKD_MODE_PUBLIC_ALWAYS, run_kd_start};
static const fedkd_mode mode_federated = {
    "federated", "one federation of the configured `algorithm`",
    1, 1, FEDKD_MODE_PUBLIC_IF_ALGORITHM, run_federated};
static const fedkd_mode mode_centralized = {
    "centralized", "one model on the whole training set, the baseline",
    0, 0, 0, run_centralized};
static const fedkd_mode mode_pretrain = {
    "pretrain", "every client trains and saves its own model",
    0, 0, FEDKD_MODE_PUBLIC_IF_ALGORITHM | FEDKD_MODE_PUBLIC_IF_KD, fedkd_run_pretrain};
static const fedkd_mode mode_kd_study = {
    "kd-study", "every KD method of kd.methods between pre-trained models",
    0, 0, FEDKD_MODE_PUBLIC_IF_KD, fedkd_run_kd_study};

const fedkd_mode *const fedkd_modes[] = {&mode_kd_start, &mode_federated, &mode_centralized,
                                         &mode_pretrain, &mode_kd_study, NULL};

fedkd_status fedkd_mode_find(const char *name, const fedkd_mode **out)
{
    char known[256];
    size_t used = 0;
    for (int i = 0; fedkd_modes[i]; i++) {
        if (strcmp(fedkd_modes[i]->name, name) == 0) {
            *out = fedkd_modes[i];
            return FEDKD_OK;
        }
        used = fedkd_appendf(known, sizeof known, used, "%s%s", i ? ", " : "",
                             fedkd_modes[i]->name);
    }
    *out = NULL;
    return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `mode`: unknown mode `%s`; expected one of %s",
                      name, known);
}

unsigned fedkd_mode_data_flags(const fedkd_config *config)
{
    const fedkd_mode *mode = NULL;
    const fedkd_algorithm *algorithm = NULL;
    if (fedkd_mode_find(config->mode, &mode) != FEDKD_OK) {
        fedkd_error_clear(); /* reported where the run looks the mode up */
        return 0;
    }
    if (mode->public_set & FEDKD_MODE_PUBLIC_ALWAYS) return FEDKD_CLIENTSET_PUBLIC;
    /* A kd-study that tunes or distils on the public set holds its rows out
     * of the partition, and so does pretrain, whose models the study reuses
     * only when the partitions agree. */
    if ((mode->public_set & FEDKD_MODE_PUBLIC_IF_KD) && fedkd_kd_uses_public(config))
        return FEDKD_CLIENTSET_PUBLIC;
    if (!(mode->public_set & FEDKD_MODE_PUBLIC_IF_ALGORITHM)) return 0;
    if (fedkd_algorithm_find(config->algorithm, &algorithm) != FEDKD_OK) {
        fedkd_error_clear(); /* reported where the run looks the algorithm up */
        return 0;
    }
    return algorithm->uses_public ? FEDKD_CLIENTSET_PUBLIC : 0;
}

fedkd_status fedkd_run(const fedkd_config *config, MPI_Comm comm, fedkd_run_result *result)
{
    return fedkd_run_with_options(config, comm, NULL, result);
}

static fedkd_status run_mode(const fedkd_config *config, MPI_Comm comm,
                             const fedkd_run_options *options, fedkd_run_result *result)
{
    const fedkd_mode *mode = NULL;
    /* Every rank parsed the same config: rank 0 alone reports. */
    if (fedkd_mode_find(config->mode, &mode) != FEDKD_OK)
        return fedkd_comm_agree(comm, FEDKD_ERR_CONFIG);
    int resuming = options && options->resume && options->resume[0];
    /* `auto` means "continue if there is something to continue": batch
     * scripts pass it whatever the config's mode, and a mode without
     * checkpoints has nothing to continue. A checkpoint path is refused. */
    int resume_auto = resuming && strcmp(options->resume, "auto") == 0;
    if (resuming && !resume_auto && !mode->resumable)
        return fedkd_comm_agree(comm, FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                                 "--resume: config key `mode` is \"%s\"; only "
                                                 "federated and kd-start runs write checkpoints "
                                                 "and resume (pretrain and kd-study reuse their "
                                                 "model files)",
                                                 config->mode));
    if (options && options->dry_run && !mode->dry_runs)
        return fedkd_comm_agree(comm, FEDKD_FAIL(FEDKD_ERR_CONFIG,
                                                 "--dry-run: config key `mode` is \"%s\"; the "
                                                 "memory estimate covers mode federated",
                                                 config->mode));
    fedkd_run_options mode_options = {0};
    if (options) mode_options = *options;
    if (!mode->resumable) mode_options.resume = NULL;
    mode_options.data_flags |= fedkd_mode_data_flags(config);
    return mode->run(config, comm, &mode_options, result);
}

fedkd_status fedkd_run_with_options(const fedkd_config *config, MPI_Comm comm,
                                    const fedkd_run_options *options, fedkd_run_result *result)
{
    memset(result, 0, sizeof *result);
    int lock = -1;
    fedkd_status status = fedkd_run_lock_acquire(config, comm, &lock);
    if (!status) status = run_mode(config, comm, options, result);
    fedkd_run_lock_release(&lock);
    return status;
}
