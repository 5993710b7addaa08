/* Group normalisation: the channels of each sample are cut into `groups`
 * runs of channels / groups, and each run is normalised by its own mean
 * and biased variance over (channels / groups) * height * width values,
 * then scaled and shifted per channel. Parameters: gamma (channels), beta
 * (channels). It does not depend on the other samples of the batch, so it
 * is the same in training and evaluation and has no running statistics.
 * The forward pass saves each (sample, group)'s mean and 1/sqrt(var + eps). */
#include <math.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

static fedkd_status groupnorm_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    int channels = layer->in_shape.channels;
    if (spec->units || spec->filters || spec->kernel || spec->stride || spec->padding ||
        spec->init != FEDKD_INIT_DEFAULT || spec->global || spec->body || spec->projection ||
        spec->momentum != 0.0f)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "a groupnorm layer takes only groups and epsilon");
    if (spec->groups < 1 || channels % spec->groups != 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "expected groups >= 1 dividing the %d input channels, got %d", channels,
                          spec->groups);
    if (!(spec->epsilon >= 0.0f) || isinf(spec->epsilon))
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected epsilon > 0, got %g",
                          (double)spec->epsilon);
    layer->out_shape = layer->in_shape;
    layer->num_params = 2 * (size_t)channels;
    layer->norm_offset = 0;
    layer->norm_count = 2 * (size_t)channels;
    return FEDKD_OK;
}

static void groupnorm_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng)
{
    size_t channels = (size_t)layer->in_shape.channels;
    for (size_t c = 0; c < channels; c++) {
        params[c] = 1.0f;
        params[channels + c] = 0.0f;
    }
}

static void groupnorm_forward(const fedkd_layer *layer, const float *params, const float *input,
                              float *output, int batch, float *scratch)
{
    size_t channels = (size_t)layer->in_shape.channels, groups = (size_t)layer->spec.groups;
    size_t plane = (size_t)layer->in_shape.height * (size_t)layer->in_shape.width;
    size_t per_group = channels / groups, span = per_group * plane;
    double eps = (double)fedkd_nn_norm_epsilon(&layer->spec);
    const float *gamma = params, *beta = params + channels;
    for (size_t ng = 0; ng < (size_t)batch * groups; ng++) {
        const float *x = input + ng * span;
        float *y = output + ng * span;
        double sum = 0.0, squares = 0.0;
        for (size_t i = 0; i < span; i++) sum += (double)x[i];
        double mean = sum / (double)span;
        for (size_t i = 0; i < span; i++) squares += ((double)x[i] - mean) * ((double)x[i] - mean);
        float inv = (float)(1.0 / sqrt(squares / (double)span + eps));
        layer->saved[2 * ng] = (float)mean;
        layer->saved[2 * ng + 1] = inv;
        size_t first = (ng % groups) * per_group;
        for (size_t k = 0; k < per_group; k++) {
            float scale = gamma[first + k] * inv, shift = beta[first + k] - (float)mean * scale;
            for (size_t i = 0; i < plane; i++)
                y[k * plane + i] = x[k * plane + i] * scale + shift;
        }
    }
}

static void groupnorm_backward(const fedkd_layer *layer, const float *params, const float *input,
                               const float *output, const float *d_output, float *d_input,
                               float *d_params, int batch, float *scratch)
{
    size_t channels = (size_t)layer->in_shape.channels, groups = (size_t)layer->spec.groups;
    size_t plane = (size_t)layer->in_shape.height * (size_t)layer->in_shape.width;
    size_t per_group = channels / groups, span = per_group * plane;
    const float *gamma = params;
    float *d_gamma = d_params, *d_beta = d_params + channels;
    for (size_t ng = 0; ng < (size_t)batch * groups; ng++) {
        const float *x = input + ng * span;
        const float *dy = d_output + ng * span;
        double mean = (double)layer->saved[2 * ng], inv = (double)layer->saved[2 * ng + 1];
        size_t first = (ng % groups) * per_group;
        double sum_g = 0.0, sum_g_xhat = 0.0; /* g = dy * gamma: gradient w.r.t. xhat */
        for (size_t k = 0; k < per_group; k++) {
            double dg = 0.0, db = 0.0;
            for (size_t i = 0; i < plane; i++) {
                double xhat = ((double)x[k * plane + i] - mean) * inv;
                double d = (double)dy[k * plane + i];
                dg += d * xhat;
                db += d;
            }
            d_gamma[first + k] += (float)dg;
            d_beta[first + k] += (float)db;
            sum_g += db * (double)gamma[first + k];
            sum_g_xhat += dg * (double)gamma[first + k];
        }
        if (!d_input) continue;
        double mean_g = sum_g / (double)span, mean_g_xhat = sum_g_xhat / (double)span;
        float *dx = d_input + ng * span;
        for (size_t k = 0; k < per_group; k++)
            for (size_t i = 0; i < plane; i++) {
                double xhat = ((double)x[k * plane + i] - mean) * inv;
                double g = (double)dy[k * plane + i] * (double)gamma[first + k];
                dx[k * plane + i] = (float)(inv * (g - mean_g - xhat * mean_g_xhat));
            }
    }
}

static size_t groupnorm_scratch_floats(const fedkd_layer *layer, int batch) { return 0; }

static size_t groupnorm_saved_floats(const fedkd_layer *layer, int batch)
{
    return 2 * (size_t)batch * (size_t)layer->spec.groups;
}

const fedkd_layer_kind fedkd_layer_kind_groupnorm = {
    .name = "groupnorm",
    .configure = groupnorm_configure,
    .init_params = groupnorm_init_params,
    .forward = groupnorm_forward,
    .backward = groupnorm_backward,
    .scratch_floats = groupnorm_scratch_floats,
    .saved_floats = groupnorm_saved_floats,
};
