/* FedDF (Lin et al., NeurIPS 2020, "Ensemble Distillation for Robust Model
 * Fusion"): the round hooks of the algorithm table's `feddf` row.
 *
 * The server keeps one global model per architecture (fl_round.h: `model`'s
 * is the global weights, the others lead the server state, so the round
 * loop broadcasts and checkpoints them all). Every participant trains from
 * its architecture's global model and uploads its weight delta, summed
 * with those of its own architecture only (sample-weighted among them, as
 * FedAvg), and its logits on the round's proxy sample, averaged over all
 * participants. The server moves each architecture's model by its mean
 * delta, then distils each one (those without a participant this round
 * too, from where they are) on the sample towards softmax at
 * kd.temperature of the ensemble's mean logits, stopping early on a
 * validation share of the sample (fl_feddf_distil). With one architecture
 * this is the homogeneous FedDF, bit for bit.
 *
 * Sum layout: every architecture's deltas at its global_offset, then the
 * sample's logits (sample_len x classes). */
#include <string.h>

#include "fedkd/core/core.h"
#include "fl/compress.h"
#include "fl/fl_round.h"
#include "fl/softlabel.h"

/* The floats of every architecture's global model together. */
static size_t all_globals(const fl_run *run)
{
    return run->global_offset[run->num_globals];
}

static size_t architecture_params(const fl_run *run, int g)
{
    return run->global_offset[g + 1] - run->global_offset[g];
}

static fl_payload feddf_payload(const fl_run *run, int round)
{
    (void)round;
    size_t logits = run->sample_len * (size_t)run->num_classes;
    /* Down: every architecture's model, to every participant (one
     * broadcast). Up per participant: its own architecture's delta and its
     * logits (upload_floats counts each participant's own size). */
    fl_payload p = {.down = all_globals(run), .up = all_globals(run) + logits,
                    .sent_up = run->num_params + logits};
    /* One architecture: the upload's segments, for compression (compress.h;
     * refused with several). */
    if (run->num_globals == 1) {
        p.up_weights = run->num_params;
        p.up_weight_segments = 1;
        p.up_soft = logits;
    }
    return p;
}

static uint64_t feddf_upload_floats(const fl_run *run, const int *selected, int count)
{
    uint64_t total = 0, logits = (uint64_t)run->sample_len * (uint64_t)run->num_classes;
    for (int i = 0; i < count; i++)
        total += architecture_params(run, fl_client_architecture(&run->models, selected[i])) +
                 logits;
    return total;
}

/* The other architectures' global models lead the server state. */
static size_t feddf_server_state_len(const fl_run *run)
{
    return all_globals(run) - run->num_params;
}

/* Architecture g > 0 starts from its seeded initialisation, model id
 * FL_ARCHITECTURE_INIT_ID + g (architecture 0, `model`, from id 0). */
static fedkd_status feddf_init_server_state(const fl_run *run, float *state)
{
    for (int g = 1; g < run->num_globals; g++) {
        const fedkd_model_spec *spec = &run->models.specs[run->models.architecture_entry[g]];
        fedkd_model *model = NULL;
        fedkd_status status = fedkd_model_create(&model, spec, 1);
        if (status) return status;
        fedkd_model_init_params(model, run->config->seed, FL_ARCHITECTURE_INIT_ID + (uint64_t)g);
        memcpy(state + (run->global_offset[g] - run->num_params), model->params,
               model->num_params * sizeof(float));
        fedkd_model_destroy(&model);
    }
    return FEDKD_OK;
}

/* The client's share of its architecture's participants' samples: the
 * round loop's c->weight when every participant shares it. */
static double architecture_weight(const fl_run *run, const fl_client_round *c, int g)
{
    if (run->num_globals == 1) return c->weight;
    size_t total = 0;
    for (int i = 0; i < c->count; i++)
        if (fl_client_architecture(&run->models, c->selected[i]) == g)
            total += fedkd_partition_client_size(run->partition, c->selected[i]);
    return (double)c->data->count / (double)total;
}

/* Trains from its architecture's global model, adds weight * (w - w_global)
 * at the architecture's place, then 1/count times its logits on the proxy
 * sample. */
static fedkd_status feddf_client(const fl_run *run, fl_client_round *c)
{
    int g = fl_client_architecture(&run->models, c->client);
    const float *global = c->down + run->global_offset[g];
    fedkd_status status = fl_train_private(run, c, NULL, global);
    if (!status)
        status = fl_upload(run, c, run->global_offset[g], c->model->params, global,
                           architecture_params(run, g), architecture_weight(run, c, g),
                           FL_SEGMENT_WEIGHTS, 0);
    if (status) return status;
    size_t floats = run->sample_len * (size_t)run->num_classes;
    float *logits = fedkd_alloc(floats * sizeof(float));
    if (!logits) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu logits", floats);
    status = fl_logits_on_rows(c->model, run->public_set, c->sample, run->sample_len, logits);
    if (!status)
        status = fl_upload(run, c, all_globals(run), logits, NULL, floats, 1.0 / c->count,
                           FL_SEGMENT_SOFT, 0);
    fedkd_free(logits);
    return status;
}

/* Architecture g's global model: FedAvg's step with its participants'
 * mean delta (zero without any), then the distillation from the ensemble. */
static fedkd_status distil_architecture(const fl_run *run, fl_server_round *s, int g,
                                        const float *ensemble)
{
    const fedkd_config *config = run->config;
    size_t n = architecture_params(run, g);
    float *params = g == 0 ? s->global : s->state + (run->global_offset[g] - run->num_params);
    const int64_t *sum = s->sum + run->global_offset[g];
    double server_lr = config->server.lr;
    for (size_t i = 0; i < n; i++)
        params[i] = (float)((double)params[i] + server_lr * fedkd_fixed_to_double(sum[i]));
    fedkd_model *model = s->models[g];
    memcpy(model->params, params, n * sizeof(float));
    fedkd_optimizer_reset(s->optimizers[g]);
    fedkd_optimizer *optimizer = s->optimizers[g], *scheduled = NULL;
    double lr = 0.0;
    fedkd_status status = fl_round_optimizer(config, &config->feddf.schedule, config->feddf.lr,
                                             s->round, n, &scheduled, &lr);
    if (scheduled) optimizer = scheduled;
    /* Every architecture sees the same shuffles and validation split. */
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
        status = fl_feddf_distil(model, optimizer, run->public_set, s->sample, run->sample_len,
                                 ensemble, &d, s->round, config->feddf.validation_fraction,
                                 config->feddf.patience, &epochs_run);
    if (!status) memcpy(params, model->params, n * sizeof(float));
    fedkd_optimizer_destroy(&scheduled);
    return status;
}

static fedkd_status feddf_server(const fl_run *run, fl_server_round *s)
{
    size_t floats = run->sample_len * (size_t)run->num_classes;
    float *ensemble = fedkd_alloc(floats * sizeof(float));
    if (!ensemble) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for %zu logits", floats);
    fl_fixed_decode(s->sum + all_globals(run), floats, ensemble);
    fedkd_status status = FEDKD_OK;
    for (int g = 0; g < run->num_globals && !status; g++)
        status = distil_architecture(run, s, g, ensemble);
    fedkd_free(ensemble);
    return status;
}

const fl_algorithm_ops fl_feddf_ops = {
    .payload = feddf_payload,
    .server_state_len = feddf_server_state_len,
    .client_round = feddf_client,
    .server_update = feddf_server,
    .needs_server_model = 1,
    .init_server_state = feddf_init_server_state,
    .upload_floats = feddf_upload_floats,
};
