/* Batch normalisation, per channel of a (channels, height, width)
 * activation; a flat (features, 1, 1) activation is normalised per feature.
 * Parameters: gamma (channels), beta (channels), running mean (channels),
 * running variance (channels). The running statistics sit in the model's
 * flat buffer so that they are averaged, checkpointed and sent like the
 * weights; they get no gradient and the optimizer skips them.
 *
 * Training: the batch's mean and biased variance over batch * height *
 * width values normalise the input, and the running statistics move by
 * `momentum` towards the batch mean and the unbiased variance (PyTorch's
 * rule; momentum 0.1 and epsilon 1e-5 by default). Evaluation: the running
 * statistics normalise. The forward pass saves the mean and 1/sqrt(var +
 * eps) it used per channel; the backward pass reads them and the mode.
 * Sums are in double, in a fixed order, so results do not depend on
 * anything but the batch. */
#include <math.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

#define DEFAULT_MOMENTUM 0.1f
#define DEFAULT_EPSILON 1e-5f

float fedkd_nn_norm_epsilon(const fedkd_layer_spec *spec)
{
    return spec->epsilon > 0.0f ? spec->epsilon : DEFAULT_EPSILON;
}

static fedkd_status batchnorm_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    if (spec->units || spec->filters || spec->kernel || spec->stride || spec->padding ||
        spec->init != FEDKD_INIT_DEFAULT || spec->global || spec->groups || spec->body ||
        spec->projection)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "a batchnorm layer takes only momentum and epsilon");
    if (!(spec->momentum >= 0.0f && spec->momentum <= 1.0f))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected momentum in (0, 1], got %g",
                          (double)spec->momentum);
    if (!(spec->epsilon >= 0.0f) || isinf(spec->epsilon))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected epsilon > 0, got %g",
                          (double)spec->epsilon);
    size_t channels = (size_t)layer->in_shape.channels;
    layer->out_shape = layer->in_shape;
    layer->num_params = 4 * channels;
    layer->norm_offset = 0;
    layer->norm_count = 4 * channels;
    layer->stats_offset = 2 * channels;
    layer->stats_count = 2 * channels;
    return FEDKD_OK;
}

void fedkd_nn_batchnorm_init(size_t channels, float *params)
{
    for (size_t c = 0; c < channels; c++) {
        params[c] = 1.0f;                /* gamma */
        params[channels + c] = 0.0f;     /* beta */
        params[2 * channels + c] = 0.0f; /* running mean */
        params[3 * channels + c] = 1.0f; /* running variance */
    }
}

static void batchnorm_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng)
{
    fedkd_nn_batchnorm_init((size_t)layer->in_shape.channels, params);
}

static void batchnorm_forward(const fedkd_layer *layer, const float *params, const float *input,
                              float *output, int batch, float *scratch)
{
    size_t channels = (size_t)layer->in_shape.channels;
    size_t plane = (size_t)layer->in_shape.height * (size_t)layer->in_shape.width;
    size_t sample = channels * plane;
    size_t count = (size_t)batch * plane;
    const float *gamma = params, *beta = params + channels;
    /* The running statistics are written in training mode: the buffer is
     * the model's mutable one (see fedkd_layer_kind). */
    float *running_mean = (float *)params + 2 * channels;
    float *running_var = (float *)params + 3 * channels;
    float momentum = layer->spec.momentum > 0.0f ? layer->spec.momentum : DEFAULT_MOMENTUM;
    float eps = fedkd_nn_norm_epsilon(&layer->spec);
    float *saved_mean = layer->saved, *saved_inv = layer->saved + channels;
    for (size_t c = 0; c < channels; c++) {
        float mean, inv;
        if (layer->training) {
            double sum = 0.0;
            for (int n = 0; n < batch; n++) {
                const float *x = input + (size_t)n * sample + c * plane;
                for (size_t i = 0; i < plane; i++) sum += (double)x[i];
            }
            double m = sum / (double)count, squares = 0.0;
            for (int n = 0; n < batch; n++) {
                const float *x = input + (size_t)n * sample + c * plane;
                for (size_t i = 0; i < plane; i++) {
                    double d = (double)x[i] - m;
                    squares += d * d;
                }
            }
            double var = squares / (double)count;
            double unbiased = count > 1 ? squares / (double)(count - 1) : var;
            mean = (float)m;
            inv = (float)(1.0 / sqrt(var + (double)eps));
            running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
            running_var[c] = (1.0f - momentum) * running_var[c] + momentum * (float)unbiased;
        } else {
            mean = running_mean[c];
            inv = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
        }
        saved_mean[c] = mean;
        saved_inv[c] = inv;
        float scale = gamma[c] * inv, shift = beta[c] - mean * scale;
        for (int n = 0; n < batch; n++) {
            const float *x = input + (size_t)n * sample + c * plane;
            float *y = output + (size_t)n * sample + c * plane;
            for (size_t i = 0; i < plane; i++) y[i] = x[i] * scale + shift;
        }
    }
}

static void batchnorm_backward(const fedkd_layer *layer, const float *params, const float *input,
                               const float *output, const float *d_output, float *d_input,
                               float *d_params, int batch, float *scratch)
{
    size_t channels = (size_t)layer->in_shape.channels;
    size_t plane = (size_t)layer->in_shape.height * (size_t)layer->in_shape.width;
    size_t sample = channels * plane;
    double count = (double)batch * (double)plane;
    const float *gamma = params;
    float *d_gamma = d_params, *d_beta = d_params + channels;
    const float *saved_mean = layer->saved, *saved_inv = layer->saved + channels;
    for (size_t c = 0; c < channels; c++) {
        double mean = (double)saved_mean[c], inv = (double)saved_inv[c];
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int n = 0; n < batch; n++) {
            const float *x = input + (size_t)n * sample + c * plane;
            const float *dy = d_output + (size_t)n * sample + c * plane;
            for (size_t i = 0; i < plane; i++) {
                sum_dy += (double)dy[i];
                sum_dy_xhat += (double)dy[i] * ((double)x[i] - mean) * inv;
            }
        }
        d_gamma[c] += (float)sum_dy_xhat;
        d_beta[c] += (float)sum_dy;
        if (!d_input) continue;
        double scale = (double)gamma[c] * inv;
        /* Training: the batch statistics depend on x too. */
        double mean_dy = layer->training ? sum_dy / count : 0.0;
        double mean_dy_xhat = layer->training ? sum_dy_xhat / count : 0.0;
        for (int n = 0; n < batch; n++) {
            const float *x = input + (size_t)n * sample + c * plane;
            const float *dy = d_output + (size_t)n * sample + c * plane;
            float *dx = d_input + (size_t)n * sample + c * plane;
            for (size_t i = 0; i < plane; i++) {
                double xhat = ((double)x[i] - mean) * inv;
                dx[i] = (float)(scale * ((double)dy[i] - mean_dy - xhat * mean_dy_xhat));
            }
        }
    }
}

static size_t batchnorm_scratch_floats(const fedkd_layer *layer, int batch) { return 0; }

static size_t batchnorm_saved_floats(const fedkd_layer *layer, int batch)
{
    return 2 * (size_t)layer->in_shape.channels;
}

const fedkd_layer_kind fedkd_layer_kind_batchnorm = {
    .name = "batchnorm",
    .configure = batchnorm_configure,
    .init_params = batchnorm_init_params,
    .forward = batchnorm_forward,
    .backward = batchnorm_backward,
    .scratch_floats = batchnorm_scratch_floats,
    .saved_floats = batchnorm_saved_floats,
};
