/* A residual block's closing layer: output = body output + shortcut(body
 * input). The body is the spec's `body` layers just before this one (the
 * model runs them as ordinary layers); this layer's input is the body's
 * output and layer->skip points at the body's input. The shortcut is the
 * identity, or, when the body changes the shape, a 1x1 conv strided to the
 * body's output size, optionally followed by a batchnorm (ResNet's
 * "option B"). Parameters: the conv's weights and bias, then the
 * batchnorm's gamma, beta, running mean and running variance.
 *
 * The backward pass writes the body output's gradient (d_output itself)
 * into d_input and the shortcut's input gradient into layer->d_skip; the
 * model adds the latter to the gradient of the body's input once the body's
 * backward pass has reached it.
 *
 * saved: the batchnorm's statistics (2 * channels), the conv's output and
 * the gradient of the conv's output (batch * out each). */
#include <stdio.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

/* The smallest stride s that takes the body's input plane to its output
 * plane as a 1x1 conv does ((in - 1) / s + 1 == out), or 0 if none does. */
static int projection_stride(fedkd_shape in, fedkd_shape out)
{
    for (int s = 1; s <= in.height && s <= in.width; s++)
        if ((in.height - 1) / s + 1 == out.height && (in.width - 1) / s + 1 == out.width) return s;
    return 0;
}

/* The shortcut's conv and batchnorm as stand-alone layers whose parameters
 * start at `params` + conv_params. */
static void projection_parts(const fedkd_layer *layer, int batch, fedkd_layer *conv,
                             fedkd_layer *norm)
{
    memset(conv, 0, sizeof *conv);
    conv->kind = &fedkd_layer_kind_conv2d;
    snprintf(conv->spec.kind, sizeof conv->spec.kind, "conv2d");
    conv->spec.filters = layer->out_shape.channels;
    conv->spec.kernel = 1;
    conv->spec.stride = projection_stride(layer->skip_shape, layer->out_shape);
    conv->in_shape = layer->skip_shape;
    conv->followed_by_relu = 1;
    conv->training = layer->training;
    (void)conv->kind->configure(conv); /* checked by residual_configure */

    memset(norm, 0, sizeof *norm);
    norm->kind = &fedkd_layer_kind_batchnorm;
    snprintf(norm->spec.kind, sizeof norm->spec.kind, "batchnorm");
    norm->in_shape = norm->out_shape = layer->out_shape;
    norm->num_params = 4 * (size_t)layer->out_shape.channels;
    norm->param_offset = conv->num_params;
    norm->training = layer->training;
    norm->saved = layer->saved;
    (void)batch;
}

static fedkd_status residual_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    fedkd_shape in = layer->skip_shape, out = layer->in_shape;
    if (spec->units || spec->filters || spec->kernel || spec->stride || spec->padding ||
        spec->init != FEDKD_INIT_DEFAULT || spec->global || spec->groups ||
        spec->momentum != 0.0f || spec->epsilon != 0.0f)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "a residual block takes only layers and projection");
    if (spec->body < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected a body of at least 1 layer, got %d",
                          spec->body);
    layer->out_shape = out;
    if (spec->projection == FEDKD_PROJECTION_NONE) {
        if (in.channels != out.channels || in.height != out.height || in.width != out.width)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "its layers turn %dx%dx%d into %dx%dx%d, so the shortcut needs "
                              "\"projection\": \"conv\" or \"conv-batchnorm\"",
                              in.channels, in.height, in.width, out.channels, out.height,
                              out.width);
        return FEDKD_OK;
    }
    if (spec->projection != FEDKD_PROJECTION_CONV &&
        spec->projection != FEDKD_PROJECTION_CONV_BATCHNORM)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "invalid projection %d", (int)spec->projection);
    if (projection_stride(in, out) == 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "no 1x1 conv stride takes the %dx%d input plane to the %dx%d output "
                          "plane of its layers",
                          in.height, in.width, out.height, out.width);
    fedkd_layer conv, norm;
    projection_parts(layer, 1, &conv, &norm);
    layer->num_params = conv.num_params;
    if (spec->projection == FEDKD_PROJECTION_CONV_BATCHNORM) {
        size_t channels = (size_t)out.channels;
        layer->num_params += 4 * channels;
        layer->norm_offset = conv.num_params;
        layer->norm_count = 4 * channels;
        layer->stats_offset = conv.num_params + 2 * channels;
        layer->stats_count = 2 * channels;
    }
    return FEDKD_OK;
}

static void residual_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng)
{
    if (layer->spec.projection == FEDKD_PROJECTION_NONE) return;
    fedkd_layer conv, norm;
    projection_parts(layer, 1, &conv, &norm);
    conv.kind->init_params(&conv, params, rng);
    if (layer->spec.projection == FEDKD_PROJECTION_CONV_BATCHNORM)
        fedkd_nn_batchnorm_init((size_t)layer->out_shape.channels, params + norm.param_offset);
}

static void residual_forward(const fedkd_layer *layer, const float *params, const float *input,
                             float *output, int batch, float *scratch)
{
    size_t count = fedkd_shape_size(layer->out_shape) * (size_t)batch;
    if (layer->spec.projection == FEDKD_PROJECTION_NONE) {
        for (size_t i = 0; i < count; i++) output[i] = input[i] + layer->skip[i];
        return;
    }
    fedkd_layer conv, norm;
    projection_parts(layer, batch, &conv, &norm);
    if (layer->spec.projection == FEDKD_PROJECTION_CONV) {
        conv.kind->forward(&conv, params, layer->skip, output, batch, scratch);
    } else {
        float *conv_out = layer->saved + 2 * (size_t)layer->out_shape.channels;
        conv.kind->forward(&conv, params, layer->skip, conv_out, batch, scratch);
        norm.kind->forward(&norm, params + norm.param_offset, conv_out, output, batch, NULL);
    }
    for (size_t i = 0; i < count; i++) output[i] += input[i];
}

static void residual_backward(const fedkd_layer *layer, const float *params, const float *input,
                              const float *output, const float *d_output, float *d_input,
                              float *d_params, int batch, float *scratch)
{
    size_t count = fedkd_shape_size(layer->out_shape) * (size_t)batch;
    if (d_input) memcpy(d_input, d_output, count * sizeof *d_input);
    if (layer->spec.projection == FEDKD_PROJECTION_NONE) {
        memcpy(layer->d_skip, d_output, count * sizeof *d_output);
        return;
    }
    fedkd_layer conv, norm;
    projection_parts(layer, batch, &conv, &norm);
    if (layer->spec.projection == FEDKD_PROJECTION_CONV) {
        conv.kind->backward(&conv, params, layer->skip, NULL, d_output, layer->d_skip, d_params,
                            batch, scratch);
        return;
    }
    float *conv_out = layer->saved + 2 * (size_t)layer->out_shape.channels;
    float *d_conv_out = conv_out + count;
    norm.kind->backward(&norm, params + norm.param_offset, conv_out, NULL, d_output, d_conv_out,
                        d_params + norm.param_offset, batch, NULL);
    conv.kind->backward(&conv, params, layer->skip, conv_out, d_conv_out, layer->d_skip, d_params,
                        batch, scratch);
}

static size_t residual_scratch_floats(const fedkd_layer *layer, int batch)
{
    if (layer->spec.projection == FEDKD_PROJECTION_NONE) return 0;
    fedkd_layer conv, norm;
    projection_parts(layer, batch, &conv, &norm);
    return conv.kind->scratch_floats(&conv, batch);
}

static size_t residual_saved_floats(const fedkd_layer *layer, int batch)
{
    if (layer->spec.projection != FEDKD_PROJECTION_CONV_BATCHNORM) return 0;
    return 2 * (size_t)layer->out_shape.channels +
           2 * fedkd_shape_size(layer->out_shape) * (size_t)batch;
}

const fedkd_layer_kind fedkd_layer_kind_residual = {
    .name = "residual",
    .configure = residual_configure,
    .init_params = residual_init_params,
    .forward = residual_forward,
    .backward = residual_backward,
    .scratch_floats = residual_scratch_floats,
    .saved_floats = residual_saved_floats,
};
