#include "fedkd/train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"

fedkd_train_settings fedkd_train_default_settings(void)
{
    fedkd_train_settings s = {
        .epochs = 1, .steps = 0, .batch_size = 64, .seed = 0, .stream_a = 0, .stream_b = 0,
        .prox_center = NULL, .prox_mu = 0.0f, .grad_offset = NULL, .drop_last = 0, .augment = NULL,
        .teacher = NULL, .kd_temperature = 1.0f, .kd_weight = 0.0f, .scratch = NULL,
    };
    return s;
}

/* One buffer per role; each pointer's capacity in bytes beside it. */
enum { SCRATCH_ORDER, SCRATCH_X, SCRATCH_Y, SCRATCH_D_LOGITS, SCRATCH_TEACHER_PROBS,
       SCRATCH_SAMPLE_WEIGHT, SCRATCH_D_PART, SCRATCH_AUGMENT, SCRATCH_ROWS, SCRATCH_BUFFERS };

struct fedkd_train_scratch {
    void *buffer[SCRATCH_BUFFERS];
    size_t bytes[SCRATCH_BUFFERS];
};

fedkd_status fedkd_train_scratch_create(fedkd_train_scratch **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? FEDKD_OK
                : FEDKD_FAIL(FEDKD_ERR_NOMEM, "local training: out of memory for its buffers");
}

void fedkd_train_scratch_destroy(fedkd_train_scratch **scratch)
{
    if (!scratch || !*scratch) return;
    for (int i = 0; i < SCRATCH_BUFFERS; i++) fedkd_free((*scratch)->buffer[i]);
    free(*scratch);
    *scratch = NULL;
}

/* Buffer `which` of at least `bytes` (64-byte aligned), grown when needed;
 * NULL when out of memory. Its contents are not kept across growth. */
static void *scratch_reserve(fedkd_train_scratch *s, int which, size_t bytes)
{
    if (bytes == 0) bytes = 1;
    if (s->bytes[which] >= bytes) return s->buffer[which];
    fedkd_free(s->buffer[which]);
    s->buffer[which] = fedkd_alloc(bytes);
    s->bytes[which] = s->buffer[which] ? bytes : 0;
    return s->buffer[which];
}

/* Rows of a shuffled batch are scattered over the whole training set, so
 * each one starts with a miss to memory (and often to the TLB); copied one
 * after the other, the batch would wait for those misses one at a time. A
 * prefetch of each row's first and last line issues them all together; the
 * hardware prefetcher streams the lines in between once a row's copy runs. */
static void prefetch_row_ends(const float *row, size_t bytes)
{
    __builtin_prefetch(row, 0, 3);
    __builtin_prefetch((const char *)row + bytes - 1, 0, 3);
}

void fedkd_prefetch_batch(const fedkd_dataset *data, const uint32_t *order, size_t first,
                          int count)
{
    size_t sample = fedkd_dataset_sample_floats(data);
    size_t bytes = sample * sizeof(float);
    size_t end = first + (size_t)count < data->count ? first + (size_t)count : data->count;
    for (size_t i = first; bytes > 0 && i < end; i++)
        prefetch_row_ends(data->features + (size_t)order[i] * sample, bytes);
}

void fedkd_gather_batch(const fedkd_dataset *data, const uint32_t *order, size_t first,
                        int count, float *features, int32_t *labels)
{
    size_t sample = fedkd_dataset_sample_floats(data);
    size_t bytes = sample * sizeof(float);
    fedkd_prefetch_batch(data, order, first, count);
    for (int i = 0; i < count; i++) {
        uint32_t row = order[first + (size_t)i];
        memcpy(features + (size_t)i * sample, data->features + (size_t)row * sample, bytes);
        labels[i] = data->labels[row];
    }
}

/* fedkd_gather_batch without the copy: a pointer to each row where data
 * holds it (fedkd_model_forward_rows reads them there). */
static void point_batch(const fedkd_dataset *data, const uint32_t *order, size_t first, int count,
                        const float **rows, int32_t *labels)
{
    size_t sample = fedkd_dataset_sample_floats(data);
    fedkd_prefetch_batch(data, order, first, count);
    for (int i = 0; i < count; i++) {
        uint32_t row = order[first + (size_t)i];
        rows[i] = data->features + (size_t)row * sample;
        labels[i] = data->labels[row];
    }
}

/* The KD loss with a weight per sample: runs of equal weight go through
 * fedkd_loss_kd, whose gradient is divided by the run length, so it is
 * rescaled to the whole batch. With one weight for all samples this is
 * exactly fedkd_loss_kd on the batch. */
static float kd_loss_per_sample(const float *logits, const float *teacher_probs,
                                const int32_t *labels, int count, int classes, float temperature,
                                const float *sample_weight, float *d_logits, float *d_part)
{
    double loss = 0.0;
    int start = 0;
    while (start < count) {
        int end = start + 1;
        while (end < count && sample_weight[end] == sample_weight[start]) end++;
        int run = end - start;
        size_t offset = (size_t)start * (size_t)classes;
        float part = fedkd_loss_kd(logits + offset, teacher_probs + offset, labels + start, run,
                                   classes, temperature, sample_weight[start], d_part);
        float scale = (float)run / (float)count;
        for (size_t i = 0; i < (size_t)run * (size_t)classes; i++)
            d_logits[offset + i] = run == count ? d_part[i] : d_part[i] * scale;
        loss += (double)part * run;
        start = end;
    }
    return (float)(loss / count);
}

/* FedProx's mu (w - centre) and SCAFFOLD's offset, added to the gradients
 * of [begin, end) in that order (the optimizer calls it range by range). */
static void add_gradient_terms(void *context, fedkd_model *model, size_t begin, size_t end)
{
    const fedkd_train_settings *settings = context;
    float *grads = model->grads;
    const float *params = model->params;
    if (settings->prox_center && settings->prox_mu > 0.0f) {
        float mu = settings->prox_mu;
        const float *center = settings->prox_center;
        for (size_t p = begin; p < end; p++) grads[p] += mu * (params[p] - center[p]);
    }
    if (settings->grad_offset)
        for (size_t p = begin; p < end; p++) grads[p] += settings->grad_offset[p];
}

static int model_has_running_stats(const fedkd_model *model)
{
    for (int i = 0; i < model->num_layers; i++)
        if (model->layers[i].stats_count) return 1;
    return 0;
}

long fedkd_train_passes(const fedkd_train_settings *settings, size_t count, int batch_size)
{
    if (settings->steps <= 0) return settings->epochs;
    size_t batch = batch_size > 0 ? (size_t)batch_size : 1;
    size_t per_pass = settings->drop_last ? count / batch : (count + batch - 1) / batch;
    if (per_pass == 0) return 0;
    return (long)(((size_t)settings->steps + per_pass - 1) / per_pass);
}

fedkd_status fedkd_train_local(fedkd_model *model, fedkd_optimizer *optimizer,
                               const fedkd_dataset *data, const fedkd_train_settings *settings,
                               fedkd_train_stats *stats)
{
    fedkd_status status = FEDKD_OK;
    double start = fedkd_time_now();
    float *own_params = model->params;
    /* The first forward and backward passes read the start where it is (in
     * training mode a forward pass writes only running statistics: none
     * here), and the first step writes into the model
     * (fedkd_optimizer_step_model_clear_grads_into); a failure or a run
     * without a step copies it at the end. */
    if (settings->start_params && settings->start_params != own_params) {
        if (!model_has_running_stats(model))
            model->params = (float *)settings->start_params;
        else
            memcpy(own_params, settings->start_params, model->num_params * sizeof *own_params);
    }
    int batch_size = settings->batch_size < model->max_batch ? settings->batch_size
                                                               : model->max_batch;
    int classes = fedkd_model_num_classes(model);
    size_t sample = fedkd_dataset_sample_floats(data);
    const fedkd_teacher *teacher = settings->teacher;
    /* Without a caller's scratch, one for this call alone. */
    fedkd_train_scratch *own = NULL, *scratch = settings->scratch;
    if (!scratch && fedkd_train_scratch_create(&own) == FEDKD_OK) scratch = own;
    uint32_t *order = NULL;
    int32_t *batch_y = NULL;
    float *batch_x = NULL, *d_logits = NULL, *teacher_probs = NULL, *sample_weight = NULL,
          *d_part = NULL, *augment_scratch = NULL;
    /* Without a teacher or augmentation nothing but the model reads the
     * batch: its rows go to the forward pass in place (fedkd_model_forward_rows),
     * which copies them into the model's input only as its first layer reads
     * them. */
    int in_place = !teacher && !settings->augment;
    const float **rows = NULL;
    if (scratch) {
        size_t logit_bytes = (size_t)batch_size * (size_t)classes * sizeof(float);
        order = scratch_reserve(scratch, SCRATCH_ORDER, data->count * sizeof *order);
        /* Gathered into the model's input, unless a teacher runs first (it
         * might run this model on other input). */
        batch_x = teacher ? scratch_reserve(scratch, SCRATCH_X,
                                            (size_t)batch_size * sample * sizeof(float))
                          : fedkd_model_input(model);
        batch_y = scratch_reserve(scratch, SCRATCH_Y, (size_t)batch_size * sizeof(int32_t));
        if (in_place)
            rows = scratch_reserve(scratch, SCRATCH_ROWS, (size_t)batch_size * sizeof *rows);
        d_logits = scratch_reserve(scratch, SCRATCH_D_LOGITS, logit_bytes);
        if (settings->augment)
            augment_scratch = scratch_reserve(scratch, SCRATCH_AUGMENT, sample * sizeof(float));
        if (teacher) {
            teacher_probs = scratch_reserve(scratch, SCRATCH_TEACHER_PROBS, logit_bytes);
            sample_weight = scratch_reserve(scratch, SCRATCH_SAMPLE_WEIGHT,
                                            (size_t)batch_size * sizeof(float));
            d_part = scratch_reserve(scratch, SCRATCH_D_PART, logit_bytes);
        }
    }
    memset(stats, 0, sizeof *stats);
    if (!scratch || !order || !batch_x || !batch_y || !d_logits || (in_place && !rows) ||
        (settings->augment && !augment_scratch) ||
        (teacher && (!teacher_probs || !sample_weight || !d_part))) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "local training: out of memory for %zu samples",
                            data->count);
        goto fail;
    }
    if (sample != fedkd_shape_size(model->spec.input)) {
        status = FEDKD_FAIL(FEDKD_ERR_INVALID,
                            "local training: samples of %s have %zu features, the model expects %zu",
                            data->origin, sample, fedkd_shape_size(model->spec.input));
        goto fail;
    }
    /* Batch statistics of one sample are degenerate: refuse such a batch
     * size, and skip a last partial minibatch of one sample (below). */
    int min_batch = fedkd_model_spec_min_train_batch(&model->spec);
    if (batch_size < min_batch) {
        status = FEDKD_FAIL(FEDKD_ERR_CONFIG,
                            "config key `local.batch_size`: model `%s` has a batchnorm layer, "
                            "which needs training batches of at least %d samples, got %d",
                            model->spec.name, min_batch, batch_size);
        goto fail;
    }
    model->training = 1;
    /* Each step clears the gradients it has used (one pass with the
     * optimizer's), so they need zeroing only once, here, and not even
     * that after a loop like this one (a hosted client after another). */
    if (!model->grads_zero) fedkd_model_zero_grad(model);
    int gradient_terms =
        (settings->prox_center && settings->prox_mu > 0.0f) || settings->grad_offset;

    /* Epochs, or passes until settings->steps steps are done: the same
     * sequence of minibatches, cut after the last step. */
    long passes = fedkd_train_passes(settings, data->count, batch_size);
    long steps_left = settings->steps > 0 ? settings->steps : -1;
    for (long epoch = 0; epoch < passes; epoch++) {
        for (size_t i = 0; i < data->count; i++) order[i] = (uint32_t)i;
        fedkd_rng rng = fedkd_rng_stream(settings->seed, FEDKD_RNG_LOCAL_SHUFFLE,
                                         settings->stream_a,
                                         settings->stream_b + (uint64_t)epoch);
        fedkd_rng_shuffle_u32(&rng, order, data->count);
        fedkd_rng augment_rng = fedkd_rng_stream(settings->seed, FEDKD_RNG_AUGMENT,
                                                 settings->stream_a,
                                                 settings->stream_b + (uint64_t)epoch);
        double loss_sum = 0.0;
        long batches = 0;
        for (size_t first = 0; first < data->count && steps_left != 0;
             first += (size_t)batch_size) {
            size_t left = data->count - first;
            int count = left < (size_t)batch_size ? (int)left : batch_size;
            if ((settings->drop_last && count < batch_size) || count < min_batch) break;
            if (in_place)
                point_batch(data, order, first, count, rows, batch_y);
            else
                fedkd_gather_batch(data, order, first, count, batch_x, batch_y);
            /* The next batch's rows start loading while this one trains. */
            fedkd_prefetch_batch(data, order, first + (size_t)count, batch_size);
            if (settings->augment)
                fedkd_augment_batch(settings->augment, data->shape, batch_x, count, &augment_rng,
                                    augment_scratch);
            float loss;
            if (teacher) {
                for (int i = 0; i < count; i++) sample_weight[i] = settings->kd_weight;
                status = teacher->soft_targets(teacher->context, order + first, count, batch_x,
                                               settings->kd_temperature, teacher_probs,
                                               sample_weight);
                if (status) goto fail;
                /* Teachers may ask for more than one model's forward pass:
                 * the student's own runs after them. */
                const float *logits = fedkd_model_forward(model, batch_x, count);
                loss = kd_loss_per_sample(logits, teacher_probs, batch_y, count, classes,
                                          settings->kd_temperature, sample_weight, d_logits,
                                          d_part);
            } else {
                const float *logits = in_place ? fedkd_model_forward_rows(model, rows, count)
                                               : fedkd_model_forward(model, batch_x, count);
                loss = fedkd_loss_cross_entropy(logits, batch_y, count, classes, d_logits);
            }
            if (!isfinite(loss)) {
                status = FEDKD_FAIL(FEDKD_ERR_NUMERIC,
                                    "local training on %s: loss became %g at epoch %ld step %ld; "
                                    "lower local.lr",
                                    data->origin, (double)loss, epoch + 1, batches + 1);
                goto fail;
            }
            if (model->params != own_params) {
                fedkd_optimizer_backward_step_into(optimizer, model, d_logits, count, own_params,
                                                   gradient_terms ? add_gradient_terms : NULL,
                                                   (void *)settings);
                model->params = own_params;
            } else {
                fedkd_optimizer_backward_step(optimizer, model, d_logits, count,
                                              gradient_terms ? add_gradient_terms : NULL,
                                              (void *)settings);
            }
            loss_sum += (double)loss;
            batches++;
            stats->steps++;
            stats->samples += count;
            if (steps_left > 0) steps_left--;
        }
        double mean = batches ? loss_sum / (double)batches : 0.0;
        if (epoch == 0) stats->first_loss = mean;
        stats->mean_loss = mean;
    }
fail:
    /* No step ran (no batch, or a failure before the first): the start is
     * still only where the caller keeps it. */
    if (model->params != own_params) {
        model->params = own_params;
        memcpy(own_params, settings->start_params, model->num_params * sizeof *own_params);
    }
    model->training = 0;
    stats->seconds = fedkd_time_now() - start;
    fedkd_train_scratch_destroy(&own);
    return status;
}

fedkd_status fedkd_evaluate(fedkd_model *model, const fedkd_dataset *data, double *accuracy,
                            double *mean_loss)
{
    int classes = fedkd_model_num_classes(model);
    size_t sample = fedkd_dataset_sample_floats(data);
    if (sample != fedkd_shape_size(model->spec.input))
        return FEDKD_FAIL(FEDKD_ERR_INVALID,
                          "evaluation: samples of %s have %zu features, the model expects %zu",
                          data->origin, sample, fedkd_shape_size(model->spec.input));
    long correct = 0;
    double loss_sum = 0.0;
    for (size_t first = 0; first < data->count; first += (size_t)model->max_batch) {
        size_t left = data->count - first;
        int count = left < (size_t)model->max_batch ? (int)left : model->max_batch;
        const float *logits = fedkd_model_forward(model, data->features + first * sample, count);
        for (int i = 0; i < count; i++) {
            const float *row = logits + (size_t)i * (size_t)classes;
            int best = 0;
            float max = row[0];
            for (int c = 1; c < classes; c++)
                if (row[c] > max) {
                    max = row[c];
                    best = c;
                }
            int32_t label = data->labels[first + (size_t)i];
            correct += (best == label);
            double sum = 0.0;
            for (int c = 0; c < classes; c++) sum += exp((double)(row[c] - max));
            loss_sum += log(sum) - (double)(row[label] - max);
        }
    }
    *accuracy = data->count ? (double)correct / (double)data->count : 0.0;
    *mean_loss = data->count ? loss_sum / (double)data->count : 0.0;
    return FEDKD_OK;
}
