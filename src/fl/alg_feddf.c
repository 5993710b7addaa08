/* FedDF (Lin et al., NeurIPS 2020, "Ensemble Distillation for Robust Model
 * Fusion"): the round hooks of the algorithm table's `feddf` row.
 *
 * Up: the weight delta (as FedAvg) and the client's logits on the round's
 * proxy sample; the server averages the weights, then distils the average
 * on the sample from the mean of the clients' logits (softmax at
 * kd.temperature), stopping early on a validation share of the sample. */
#include <string.h>

#include "fedkd/core/core.h"
#include "fl/fl_round.h"
#include "fl/softlabel.h"

static fl_payload feddf_payload(const fl_run *run, int round)
{
    (void)round;
    size_t logits = run->sample_len * (size_t)run->num_classes;
    fl_payload p = {.down = run->num_params, .up = run->num_params + logits,
                    .sent_up = run->num_params + logits};
    return p;
}

static size_t feddf_server_state_len(const fl_run *run)
{
    (void)run;
    return 0;
}

/* Trains from the global weights (c->down), adds weight * (w - w_global)
 * as FedAvg does, then 1/count times its logits on the proxy sample. */
static fedkd_status feddf_client(const fl_run *run, fl_client_round *c)
{
    fedkd_status status = fl_train_private(run, c, NULL, c->down);
    if (!status)
        status = fedkd_fixed_accumulate_delta(c->sum, c->model->params, c->down, run->num_params,
                                              c->weight);
    if (status) return status;
    size_t floats = run->sample_len * (size_t)run->num_classes;
    float *logits = fedkd_alloc(floats * sizeof(float));
    if (!logits) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu logits", floats);
    status = fl_logits_on_rows(c->model, run->public_set, c->sample, run->sample_len, logits);
    if (!status)
        status = fedkd_fixed_accumulate(c->sum + run->num_params, logits, floats, 1.0 / c->count);
    fedkd_free(logits);
    return status;
}

static fedkd_status feddf_server(const fl_run *run, fl_server_round *s)
{
    const fedkd_config *config = run->config;
    /* FedAvg's step: w_global += server.lr * (sample-weighted mean of the deltas). */
    double server_lr = config->server.lr;
    for (size_t i = 0; i < run->num_params; i++)
        s->global[i] = (float)((double)s->global[i] + server_lr * fedkd_fixed_to_double(s->sum[i]));
    fedkd_status status = FEDKD_OK;
    size_t floats = run->sample_len * (size_t)run->num_classes;
    float *ensemble = fedkd_alloc(floats * sizeof(float));
    if (!ensemble) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu logits", floats);
    fl_fixed_decode(s->sum + run->num_params, floats, ensemble);
    memcpy(s->model->params, s->global, run->num_params * sizeof(float));
    fedkd_optimizer_reset(s->optimizer);
    fedkd_optimizer *optimizer = s->optimizer, *scheduled = NULL;
    double lr = 0.0;
    if (!status)
        status = fl_round_optimizer(config, &config->feddf.schedule, config->feddf.lr, s->round,
                                    run->num_params, &scheduled, &lr);
    if (scheduled) optimizer = scheduled;
    fl_distil_settings d = {
        .kind = FL_TARGET_PROBS_KL,
        .temperature = (float)config->kd.temperature,
        .epochs = config->feddf.epochs,
        .batch_size = config->local.batch_size,
        .seed = config->seed,
        .stream_a = FL_SERVER_SHUFFLE_A,
        .stream_b = (uint64_t)(s->round - 1) * (uint64_t)config->feddf.epochs,
    };
    int epochs_run = 0;
    if (!status)
        status = fl_feddf_distil(s->model, optimizer, run->public_set, s->sample,
                                 run->sample_len, ensemble, &d, s->round,
                                 config->feddf.validation_fraction, config->feddf.patience,
                                 &epochs_run);
    if (!status) memcpy(s->global, s->model->params, run->num_params * sizeof(float));
    fedkd_optimizer_destroy(&scheduled);
    fedkd_free(ensemble);
    return status;
}

const fl_algorithm_ops fl_feddf_ops = {
    .payload = feddf_payload,
    .server_state_len = feddf_server_state_len,
    .client_round = feddf_client,
    .server_update = feddf_server,
    .needs_server_model = 1,
};
