/* Building blocks of the soft-label federations (softlabel.h). */
#include "fl/softlabel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/core.h"
#include "fedkd/fl/fl.h"
#include "fedkd/core/rng.h"

/* ---- the public sample ---------------------------------------------------- */

size_t fl_public_sample_size(size_t public_count, int64_t per_round)
{
    if (per_round <= 0 || (uint64_t)per_round >= public_count) return public_count;
    return (size_t)per_round;
}

size_t fl_public_sample(uint64_t seed, int round, size_t public_count, int64_t per_round,
                        uint32_t *rows)
{
    size_t n = fl_public_sample_size(public_count, per_round);
    fedkd_rng rng = fedkd_rng_stream(seed, FEDKD_RNG_PUBLIC_SPLIT, (uint64_t)round,
                                     FL_PUBLIC_SAMPLE_STREAM);
    /* Ascending, so that the payload's layout is the public set's order. */
    if (fedkd_rng_subset_u32(&rng, public_count, n, rows)) return 0;
    return n;
}

/* ---- predictions ------------------------------------------------------------ */

static fedkd_status check_input(const fedkd_model *model, const fedkd_dataset *data,
                                const char *what)
{
    if (fedkd_dataset_sample_floats(data) != fedkd_shape_size(model->spec.input))
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: samples of %s have %zu features, the model "
                          "expects %zu", what, data->origin, fedkd_dataset_sample_floats(data),
                          fedkd_shape_size(model->spec.input));
    if (data->num_classes != fedkd_model_num_classes(model))
        return FEDKD_FAIL(FEDKD_ERR_INVALID, "%s: %s has %d classes, the model outputs %d", what,
                          data->origin, data->num_classes, fedkd_model_num_classes(model));
    return FEDKD_OK;
}

/* Copies the features of rows[order[first + i]] (order NULL: first + i)
 * for i < count into batch. */
static void gather_rows(const fedkd_dataset *data, const uint32_t *rows, const uint32_t *order,
                        size_t first, int count, float *batch)
{
    size_t sample = fedkd_dataset_sample_floats(data);
    for (int i = 0; i < count; i++) {
        size_t position = order ? order[first + (size_t)i] : first + (size_t)i;
        memcpy(batch + (size_t)i * sample, data->features + (size_t)rows[position] * sample,
               sample * sizeof(float));
    }
}

fedkd_status fl_logits_on_rows(fedkd_model *model, const fedkd_dataset *data,
                               const uint32_t *rows, size_t n, float *out)
{
    fedkd_status status = check_input(model, data, "logits on the public set");
    if (status) return status;
    size_t sample = fedkd_dataset_sample_floats(data);
    size_t classes = (size_t)fedkd_model_num_classes(model);
    float *batch = fedkd_alloc((size_t)model->max_batch * sample * sizeof(float));
    if (!batch) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for a batch of %s", data->origin);
    for (size_t first = 0; first < n; first += (size_t)model->max_batch) {
        int count = n - first < (size_t)model->max_batch ? (int)(n - first) : model->max_batch;
        gather_rows(data, rows, NULL, first, count, batch);
        const float *z = fedkd_model_forward(model, batch, count);
        memcpy(out + first * classes, z, (size_t)count * classes * sizeof(float));
    }
    fedkd_free(batch);
    return FEDKD_OK;
}

fedkd_status fl_class_mean_logits(fedkd_model *model, const fedkd_dataset *data, float *means,
                                  uint32_t *counts)
{
    fedkd_status status = check_input(model, data, "per-class logits");
    if (status) return status;
    int classes = fedkd_model_num_classes(model);
    size_t sample = fedkd_dataset_sample_floats(data);
    double *sums = calloc((size_t)classes * (size_t)classes, sizeof *sums);
    if (!sums) return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for per-class logits");
    memset(counts, 0, (size_t)classes * sizeof *counts);
    /* Samples in dataset order, summed in double: the same on every rank. */
    for (size_t first = 0; first < data->count; first += (size_t)model->max_batch) {
        size_t left = data->count - first;
        int count = left < (size_t)model->max_batch ? (int)left : model->max_batch;
        const float *z = fedkd_model_forward(model, data->features + first * sample, count);
        for (int i = 0; i < count; i++) {
            int32_t label = data->labels[first + (size_t)i];
            counts[label]++;
            double *row = sums + (size_t)label * (size_t)classes;
            for (int j = 0; j < classes; j++) row[j] += (double)z[(size_t)i * (size_t)classes + (size_t)j];
        }
    }
    for (int k = 0; k < classes; k++)
        for (int j = 0; j < classes; j++) {
            size_t at = (size_t)k * (size_t)classes + (size_t)j;
            means[at] = counts[k] ? (float)(sums[at] / (double)counts[k]) : 0.0f;
        }
    free(sums);
    return FEDKD_OK;
}

void fl_sharpen(const float *mean_probs, size_t n, int classes, float temperature, float *out)
{
    fedkd_softmax(mean_probs, out, (int)n, classes, temperature);
}

double fl_mean_entropy(const float *probs, size_t n, int classes)
{
    double total = 0.0;
    for (size_t i = 0; i < n * (size_t)classes; i++)
        if (probs[i] > 0.0f) total -= (double)probs[i] * log((double)probs[i]);
    return n ? total / (double)n : 0.0;
}

void fl_mean_of_others(const float *mean, const float *own, int k, size_t n, int classes,
                       float *out)
{
    float scale = 1.0f / (float)(k - 1);
    for (size_t i = 0; i < n; i++) {
        const float *m = mean + i * (size_t)classes;
        const float *o = own + i * (size_t)classes;
        float *r = out + i * (size_t)classes;
        double sum = 0.0;
        for (int j = 0; j < classes; j++) {
            float v = ((float)k * m[j] - o[j]) * scale;
            r[j] = v > 0.0f ? v : 0.0f;
            sum += (double)r[j];
        }
        if (sum > 0.0) {
            float inv = (float)(1.0 / sum);
            for (int j = 0; j < classes; j++) r[j] *= inv;
        } else {
            for (int j = 0; j < classes; j++) r[j] = 1.0f / (float)classes;
        }
    }
}

/* ---- fitting soft targets on public rows -------------------------------- */

/* The loss of one batch and, when d_logits is not NULL, its gradient. */
static float batch_loss(const fl_distil_settings *s, const float *logits, const float *targets,
                        int count, int classes, float *d_logits)
{
    if (s->kind == FL_TARGET_LOGITS_MAE)
        return fedkd_loss_logit_mae(logits, targets, count, classes, d_logits);
    return fedkd_loss_kd(logits, targets, NULL, count, classes, s->temperature, 1.0f, d_logits);
}

typedef struct distil_buffers {
    uint32_t *order;  /* (n) */
    float *batch;     /* (batch, sample) */
    float *targets;   /* (batch, classes) */
    float *d_logits;  /* (batch, classes) */
} distil_buffers;

static void free_buffers(distil_buffers *b)
{
    free(b->order);
    fedkd_free(b->batch);
    fedkd_free(b->targets);
    fedkd_free(b->d_logits);
}

static fedkd_status make_buffers(distil_buffers *b, size_t n, int batch_size, size_t sample,
                                 int classes)
{
    memset(b, 0, sizeof *b);
    b->order = malloc((n ? n : 1) * sizeof *b->order);
    b->batch = fedkd_alloc((size_t)batch_size * sample * sizeof(float));
    b->targets = fedkd_alloc((size_t)batch_size * (size_t)classes * sizeof(float));
    b->d_logits = fedkd_alloc((size_t)batch_size * (size_t)classes * sizeof(float));
    if (b->order && b->batch && b->targets && b->d_logits) return FEDKD_OK;
    free_buffers(b);
    return FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory distilling on %zu public samples", n);
}

/* Targets of positions order[first .. first + count) into b->targets. */
static void gather_targets(const float *targets, const uint32_t *order, size_t first, int count,
                           int classes, float *out)
{
    for (int i = 0; i < count; i++)
        memcpy(out + (size_t)i * (size_t)classes,
               targets + (size_t)order[first + (size_t)i] * (size_t)classes,
               (size_t)classes * sizeof(float));
}

fedkd_status fl_distil(fedkd_model *model, fedkd_optimizer *optimizer, const fedkd_dataset *data,
                       const uint32_t *rows, const float *targets, const uint32_t *positions,
                       size_t n, const fl_distil_settings *settings, double *mean_loss)
{
    if (mean_loss) *mean_loss = 0.0;
    fedkd_status status = check_input(model, data, "distillation on the public set");
    if (status || n == 0 || settings->epochs <= 0) return status;
    int classes = fedkd_model_num_classes(model);
    int batch_size = settings->batch_size < model->max_batch ? settings->batch_size
                                                               : model->max_batch;
    int min_batch = fedkd_model_spec_min_train_batch(&model->spec);
    if (batch_size < min_batch)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "config key `local.batch_size`: model `%s` has a batchnorm layer, "
                          "which needs training batches of at least %d samples, got %d",
                          model->spec.name, min_batch, batch_size);
    distil_buffers b;
    status = make_buffers(&b, n, batch_size, fedkd_dataset_sample_floats(data), classes);
    if (status) return status;
    model->training = 1;
    for (int epoch = 0; epoch < settings->epochs; epoch++) {
        for (size_t i = 0; i < n; i++) b.order[i] = positions ? positions[i] : (uint32_t)i;
        fedkd_rng rng = fedkd_rng_stream(settings->seed, FEDKD_RNG_LOCAL_SHUFFLE,
                                         settings->stream_a,
                                         settings->stream_b + (uint64_t)epoch);
        fedkd_rng_shuffle_u32(&rng, b.order, n);
        double loss_sum = 0.0;
        long batches = 0;
        for (size_t first = 0; first < n; first += (size_t)batch_size) {
            int count = n - first < (size_t)batch_size ? (int)(n - first) : batch_size;
            if (count < min_batch) break;
            gather_rows(data, rows, b.order, first, count, b.batch);
            gather_targets(targets, b.order, first, count, classes, b.targets);
            const float *z = fedkd_model_forward(model, b.batch, count);
            float loss = batch_loss(settings, z, b.targets, count, classes, b.d_logits);
            if (!isfinite(loss)) {
                status = FEDKD_FAIL(FEDKD_ERR_NUMERIC,
                                    "distillation on the public set (%s): loss became %g at "
                                    "epoch %d step %ld; lower local.lr",
                                    data->origin, (double)loss, epoch + 1, batches + 1);
                goto done;
            }
            fedkd_model_zero_grad(model);
            fedkd_model_backward(model, b.d_logits, count);
            fedkd_optimizer_step_model(optimizer, model);
            loss_sum += (double)loss;
            batches++;
        }
        if (mean_loss) *mean_loss = batches ? loss_sum / (double)batches : 0.0;
    }
done:
    model->training = 0;
    free_buffers(&b);
    return status;
}

fedkd_status fl_distil_loss(fedkd_model *model, const fedkd_dataset *data, const uint32_t *rows,
                            const float *targets, const uint32_t *positions, size_t n,
                            const fl_distil_settings *settings, double *loss)
{
    *loss = 0.0;
    fedkd_status status = check_input(model, data, "distillation loss on the public set");
    if (status || n == 0) return status;
    int classes = fedkd_model_num_classes(model);
    distil_buffers b;
    status = make_buffers(&b, n, model->max_batch, fedkd_dataset_sample_floats(data), classes);
    if (status) return status;
    for (size_t i = 0; i < n; i++) b.order[i] = positions ? positions[i] : (uint32_t)i;
    double total = 0.0;
    for (size_t first = 0; first < n; first += (size_t)model->max_batch) {
        int count = n - first < (size_t)model->max_batch ? (int)(n - first) : model->max_batch;
        gather_rows(data, rows, b.order, first, count, b.batch);
        gather_targets(targets, b.order, first, count, classes, b.targets);
        const float *z = fedkd_model_forward(model, b.batch, count);
        total += (double)batch_loss(settings, z, b.targets, count, classes, NULL) * count;
    }
    *loss = total / (double)n;
    free_buffers(&b);
    return FEDKD_OK;
}

fedkd_status fl_feddf_distil(fedkd_model *model, fedkd_optimizer *optimizer,
                             const fedkd_dataset *data, const uint32_t *rows, size_t n,
                             const float *ensemble_logits, const fl_distil_settings *settings,
                             int round, double validation_fraction, int patience,
                             int *epochs_run)
{
    if (epochs_run) *epochs_run = 0;
    if (n < 2 || settings->epochs <= 0) return FEDKD_OK;
    int classes = fedkd_model_num_classes(model);
    size_t validation = (size_t)floor(validation_fraction * (double)n);
    if (validation < 1) validation = 1;
    if (validation > n - 1) validation = n - 1;
    fedkd_status status = FEDKD_OK;
    uint32_t *positions = malloc(n * sizeof *positions);
    float *targets = fedkd_alloc(n * (size_t)classes * sizeof(float));
    float *best = fedkd_alloc(model->num_params * sizeof(float));
    if (!positions || !targets || !best) {
        status = FEDKD_FAIL(FEDKD_ERR_NOMEM, "out of memory for FedDF's distillation");
        goto done;
    }
    fedkd_softmax(ensemble_logits, targets, (int)n, classes, settings->temperature);
    for (size_t i = 0; i < n; i++) positions[i] = (uint32_t)i;
    fedkd_rng rng = fedkd_rng_stream(settings->seed, FEDKD_RNG_PUBLIC_SPLIT, (uint64_t)round,
                                     FL_FEDDF_SPLIT_STREAM);
    fedkd_rng_shuffle_u32(&rng, positions, n);
    /* positions[0 .. validation) validate, the rest trains. */
    const uint32_t *held_out = positions, *train = positions + validation;
    size_t train_count = n - validation;
    fl_distil_settings one_epoch = *settings;
    one_epoch.kind = FL_TARGET_PROBS_KL;
    one_epoch.epochs = 1;
    double best_loss;
    status = fl_distil_loss(model, data, rows, targets, held_out, validation, &one_epoch,
                            &best_loss);
    if (status) goto done;
    memcpy(best, model->params, model->num_params * sizeof(float));
    int since_best = 0;
    for (int epoch = 0; epoch < settings->epochs && since_best < patience; epoch++) {
        one_epoch.stream_b = settings->stream_b + (uint64_t)epoch;
        status = fl_distil(model, optimizer, data, rows, targets, train, train_count, &one_epoch,
                           NULL);
        if (status) goto done;
        double loss;
        status = fl_distil_loss(model, data, rows, targets, held_out, validation, &one_epoch,
                                &loss);
        if (status) goto done;
        if (epochs_run) *epochs_run = epoch + 1;
        if (loss < best_loss) {
            best_loss = loss;
            since_best = 0;
            memcpy(best, model->params, model->num_params * sizeof(float));
        } else {
            since_best++;
        }
    }
    memcpy(model->params, best, model->num_params * sizeof(float));
done:
    free(positions);
    fedkd_free(targets);
    fedkd_free(best);
    return status;
}

/* ---- FD's teacher ------------------------------------------------------------ */

static fedkd_status class_soft_targets(void *context, const uint32_t *rows, int count,
                                       const float *batch_features, float temperature,
                                       float *probs, float *sample_weight)
{
    (void)batch_features;
    const fl_class_teacher *t = context;
    size_t classes = (size_t)t->classes;
    for (int i = 0; i < count; i++) {
        int32_t label = t->labels[rows[i]];
        fedkd_softmax(t->class_logits + (size_t)label * classes, probs + (size_t)i * classes, 1,
                      t->classes, temperature);
        if (!(t->class_counts[label] > 0.0f)) sample_weight[i] = 0.0f;
    }
    return FEDKD_OK;
}

fedkd_teacher fl_class_teacher_hook(fl_class_teacher *context)
{
    fedkd_teacher teacher = {.soft_targets = class_soft_targets, .context = context};
    return teacher;
}

/* ---- fixed-point payloads ------------------------------------------------- */

void fl_fixed_decode(const int64_t *sum, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) out[i] = (float)fedkd_fixed_to_double(sum[i]);
}
