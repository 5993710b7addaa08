/* The federated algorithms, one table row each (found by name), and the
 * round hooks of those that average weights: FedAvg and FedProx.
 * SCAFFOLD, FedNova and FedDF are in alg_scaffold.c, alg_fednova.c and
 * alg_feddf.c, the soft-label ones (FedMD, DS-FL, FD, DML) in
 * alg_softlabel.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/fl/fl.h"
#include "fl/compress.h"
#include "fl/fl_round.h"

/* FedAvg: plain local training from the global weights. */
static void fedavg_configure_local(const fedkd_config *config, const float *global_params,
                                   fedkd_train_settings *settings)
{
    (void)config;
    (void)global_params;
    settings->prox_center = NULL;
    settings->prox_mu = 0.0f;
}

/* FedProx: (mu / 2) ||w - w_global||^2 in the local loss. */
static void fedprox_configure_local(const fedkd_config *config, const float *global_params,
                                    fedkd_train_settings *settings)
{
    settings->prox_center = global_params;
    settings->prox_mu = (float)config->fedprox.mu;
}

fedkd_status fl_train_private_offset(const fl_run *run, fl_client_round *c,
                                     const fedkd_teacher *teacher, const float *global,
                                     const float *grad_offset)
{
    const fedkd_config *config = run->config;
    fedkd_train_settings train = fedkd_train_default_settings();
    train.epochs = config->local.epochs;
    train.steps = config->local.steps;
    train.batch_size = config->local.batch_size;
    train.seed = config->seed;
    train.stream_a = (uint64_t)c->client;
    /* Each round's passes get shuffles of their own: with local.steps the
     * passes a round needs depend on the client's size, which is the same
     * at any number of ranks. */
    train.stream_b = (uint64_t)(c->round - 1) *
                     (uint64_t)fedkd_train_passes(&train, c->data->count, train.batch_size);
    if (run->algorithm->configure_local) run->algorithm->configure_local(config, global, &train);
    train.grad_offset = grad_offset;
    train.scratch = run->train_scratch;
    fedkd_augment_settings augment = {.padding = config->data.augment_padding,
                                      .flip = config->data.augment_flip};
    if (config->data.augment) train.augment = &augment;
    if (teacher) {
        train.teacher = teacher;
        train.kd_temperature = (float)config->kd.temperature;
        train.kd_weight = (float)config->kd.weight;
    }
    /* FedBN restores the client's own layers into the start first. */
    if (c->start && fl_fedbn_state_len(run)) {
        memcpy(c->model->params, c->start, c->model->num_params * sizeof *c->model->params);
        c->start = NULL;
    }
    fl_fedbn_restore(run, c);
    train.start_params = c->start;
    c->start = NULL;
    fedkd_train_stats stats;
    memset(&stats, 0, sizeof stats);
    /* A scheduled rate needs an optimizer of its own for the round; it
     * starts fresh, as the reset one would. */
    fedkd_optimizer *optimizer = c->optimizer, *scheduled = NULL;
    fedkd_status status = fl_round_optimizer(config, &config->local.schedule, config->local.lr,
                                             c->round, c->model->num_params, &scheduled, &c->lr);
    if (scheduled) optimizer = scheduled;
    if (!status) status = fedkd_train_local(c->model, optimizer, c->data, &train, &stats);
    fedkd_optimizer_destroy(&scheduled);
    if (!status) fl_fedbn_save(run, c);
    c->train_loss = stats.mean_loss;
    c->steps = stats.steps;
    return status;
}

fedkd_status fl_round_optimizer(const fedkd_config *config,
                                const fedkd_lr_schedule_config *schedule, double base, int round,
                                size_t num_params, fedkd_optimizer **out, double *lr)
{
    *out = NULL;
    *lr = fedkd_lr_at(schedule, base, round, config->rounds);
    if (strcmp(schedule->kind, "constant") == 0 && schedule->warmup_rounds == 0) return FEDKD_OK;
    fedkd_optimizer_settings settings = fedkd_train_optimizer_settings(config);
    settings.lr = (float)*lr;
    return fedkd_optimizer_create(out, &settings, num_params);
}

fedkd_status fl_train_private(const fl_run *run, fl_client_round *c, const fedkd_teacher *teacher,
                              const float *global)
{
    return fl_train_private_offset(run, c, teacher, global, NULL);
}

double fl_sgd_effective_steps(long steps, double momentum)
{
    if (momentum <= 0.0) return (double)steps;
    /* sum over k = 1..steps of (1 - momentum^k) / (1 - momentum) */
    double power = 1.0, total = 0.0;
    for (long k = 1; k <= steps; k++) {
        power *= momentum;
        total += (1.0 - power) / (1.0 - momentum);
    }
    return total;
}

fedkd_status fl_check_schedule_resume(const fedkd_config *config, const char *stored_json,
                                      const char *path)
{
    const fedkd_lr_schedule_config *uses = NULL;
    const char *key = NULL;
    if (fedkd_lr_schedule_uses_rounds(&config->local.schedule)) {
        uses = &config->local.schedule;
        key = "local.lr_schedule";
    } else if (strcmp(config->algorithm, "feddf") == 0 &&
               fedkd_lr_schedule_uses_rounds(&config->feddf.schedule)) {
        uses = &config->feddf.schedule;
        key = "feddf.lr_schedule";
    }
    if (!uses) return FEDKD_OK;
    cJSON *stored = cJSON_Parse(stored_json);
    const cJSON *rounds = stored ? cJSON_GetObjectItemCaseSensitive(stored, "rounds") : NULL;
    int then = cJSON_IsNumber(rounds) ? rounds->valueint : -1;
    cJSON_Delete(stored);
    if (then == config->rounds) return FEDKD_OK;
    return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                      "resume refused: config key `%s` is \"%s\", whose rates follow `rounds`, "
                      "and rounds is %d here but %d in the checkpoint %s; keep rounds, or use "
                      "a step schedule",
                      key, uses->kind, config->rounds, then, path);
}

fedkd_status fl_require_sgd(const fedkd_config *config, const char *algorithm)
{
    if (strcmp(config->local.optimizer, "sgd") != 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `local.optimizer`: algorithm `%s` reads the clients' "
                          "progress as plain SGD steps; expected \"sgd\", got \"%s\"",
                          algorithm, config->local.optimizer);
    return FEDKD_OK;
}

/* ---- FedAvg and FedProx ------------------------------------------------------ */

static fl_payload weights_payload(const fl_run *run, int round)
{
    (void)round;
    fl_payload p = {.down = run->num_params, .up = run->num_params, .sent_up = run->num_params,
                    .up_weights = run->num_params, .up_weight_segments = 1};
    return fl_fedbn_payload(run, p, 1, 1);
}

static size_t no_server_state(const fl_run *run)
{
    (void)run;
    return 0;
}

/* Trains from the global weights (c->down) and adds weight * (w - w_global). */
static fedkd_status weights_client(const fl_run *run, fl_client_round *c)
{
    fedkd_status status = fl_train_private(run, c, NULL, c->down);
    if (status) return status;
    return fl_upload(run, c, 0, c->model->params, c->down, run->num_params, c->weight,
                     FL_SEGMENT_WEIGHTS, 0);
}

/* w_global += server.lr * (sample-weighted mean of the deltas). */
static fedkd_status weights_server(const fl_run *run, fl_server_round *s)
{
    double server_lr = run->config->server.lr;
    for (size_t i = 0; i < run->num_params; i++)
        s->global[i] = (float)((double)s->global[i] + server_lr * fedkd_fixed_to_double(s->sum[i]));
    return FEDKD_OK;
}

static const fl_algorithm_ops weights_ops = {
    .payload = weights_payload,
    .server_state_len = no_server_state,
    .client_state_len = fl_fedbn_state_len,
    .client_round = weights_client,
    .server_update = weights_server,
    .takes_start = 1,
};

/* ---- the table ------------------------------------------------------------------ */

static const fedkd_algorithm fedavg = {
    .name = "fedavg",
    .summary = "sample-weighted average of client weights",
    .global_model = 1,
    .configure_local = fedavg_configure_local,
    .ops = &weights_ops,
};
static const fedkd_algorithm fedprox = {
    .name = "fedprox",
    .summary = "FedAvg with a proximal term mu/2 ||w - w_global||^2",
    .global_model = 1,
    .configure_local = fedprox_configure_local,
    .ops = &weights_ops,
};
static const fedkd_algorithm fedmd = {
    .name = "fedmd",
    .summary = "clients fit the consensus of their logits on the public set, then their data",
    .uses_public = 1,
    .mixed_models = 1,
    .ops = &fl_fedmd_ops,
};
static const fedkd_algorithm feddf = {
    .name = "feddf",
    .summary = "FedAvg, then the server distils the average from the clients' mean logits",
    .uses_public = 1,
    .global_model = 1,
    .mixed_models = 1,
    .configure_local = fedavg_configure_local,
    .ops = &fl_feddf_ops,
};
static const fedkd_algorithm dsfl = {
    .name = "dsfl",
    .summary = "clients learn from the sharpened mean of their predictions on the open set",
    .uses_public = 1,
    .mixed_models = 1,
    .ops = &fl_dsfl_ops,
};
static const fedkd_algorithm fd = {
    .name = "fd",
    .summary = "clients distil from the global per-class mean logits of each sample's class",
    .mixed_models = 1,
    .ops = &fl_fd_ops,
};
static const fedkd_algorithm dml = {
    .name = "dml",
    .summary = "deep mutual learning across clients through predictions on the public set",
    .uses_public = 1,
    .mixed_models = 1,
    .ops = &fl_dml_ops,
};

static const fedkd_algorithm scaffold = {
    .name = "scaffold",
    .summary = "FedAvg with server and client control variates correcting client drift",
    .global_model = 1,
    .configure_local = fedavg_configure_local,
    .ops = &fl_scaffold_ops,
};
static const fedkd_algorithm fednova = {
    .name = "fednova",
    .summary = "FedAvg of updates normalised by each client's local steps, then rescaled",
    .global_model = 1,
    .configure_local = fedavg_configure_local,
    .ops = &fl_fednova_ops,
};

const fedkd_algorithm *const fedkd_algorithms[] = {&fedavg, &fedprox, &scaffold, &fednova, &fedmd,
                                                    &feddf,  &dsfl,    &fd,       &dml,     NULL};

fedkd_status fedkd_algorithm_find(const char *name, const fedkd_algorithm **out)
{
    char known[256] = "";
    for (int i = 0; fedkd_algorithms[i]; i++) {
        if (strcmp(fedkd_algorithms[i]->name, name) == 0) {
            *out = fedkd_algorithms[i];
            return FEDKD_OK;
        }
        size_t used = strlen(known);
        snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                 fedkd_algorithms[i]->name);
    }
    return FEDKD_FAIL(FEDKD_ERR_CONFIG, "config key `algorithm`: unknown algorithm `%s`; expected one of: %s",
                      name, known);
}
