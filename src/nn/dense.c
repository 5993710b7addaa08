/* Fully connected layer: output = input W^T + b, with W (units, in) stored
 * first in the layer's parameters and b (units) after it. Any input shape is
 * read as a flat vector of c*h*w features. */
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

static fedkd_status dense_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    if (spec->units < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected units >= 1, got %d", spec->units);
    if (spec->filters || spec->kernel || spec->stride || spec->padding)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "a dense layer takes only units and init (filters, kernel, "
                          "stride and padding must be 0)");
    size_t in = fedkd_shape_size(layer->in_shape);
    layer->out_shape = (fedkd_shape){spec->units, 1, 1};
    layer->num_params = (size_t)spec->units * in + (size_t)spec->units;
    return FEDKD_OK;
}

static void dense_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng)
{
    size_t in = fedkd_shape_size(layer->in_shape);
    size_t out = (size_t)layer->spec.units;
    fedkd_nn_init_uniform(layer, params, out * in, in, out, rng);
    memset(params + out * in, 0, out * sizeof *params);
}

static void dense_forward(const fedkd_layer *layer, const float *params, const float *input,
                          float *output, int batch, float *scratch)
{
    int in = (int)fedkd_shape_size(layer->in_shape);
    int out = layer->spec.units;
    const float *weights = params;   /* (out, in) */
    const float *bias = params + (size_t)out * (size_t)in; /* (out) */
    if (fedkd_nn_dense_dots_vector(batch, out, in)) {
        fedkd_nn_dense_dots(input, weights, bias, output, batch, out, in, 0);
        return;
    }
    for (int n = 0; n < batch; n++)
        memcpy(output + (size_t)n * (size_t)out, bias, (size_t)out * sizeof *output);
    fedkd_sgemm(0, 1, batch, out, in, 1.0f, input, in, weights, in, 1.0f, output, out);
}

int fedkd_nn_dense_forward_rows(const fedkd_layer *layer, const float *params,
                                const float *const *rows, float *copy, float *output, int batch)
{
    int in = (int)fedkd_shape_size(layer->in_shape);
    int out = layer->spec.units;
    if (!fedkd_nn_dense_dots_vector(batch, out, in)) return 0;
    fedkd_nn_dense_dots_rows(rows, copy, params, params + (size_t)out * (size_t)in, output, batch,
                             out, in);
    return 1;
}

void fedkd_nn_dense_bias_grad(const float *d_output, int batch, int out, float *d_bias)
{
    for (int n = 0; n < batch; n++) {
        const float *row = d_output + (size_t)n * (size_t)out;
        for (int j = 0; j < out; j++) d_bias[j] += row[j];
    }
}

static void dense_backward(const fedkd_layer *layer, const float *params, const float *input,
                           const float *output, const float *d_output, float *d_input,
                           float *d_params, int batch, float *scratch)
{
    int in = (int)fedkd_shape_size(layer->in_shape);
    int out = layer->spec.units;
    const float *weights = params;
    float *d_weights = d_params;                             /* (out, in) */
    float *d_bias = d_params + (size_t)out * (size_t)in;     /* (out) */
    /* No input gradient: the model's first trainable layer, whose weights
     * the optimizer may step inside the backward pass; its gradient then
     * comes from the fused step's kernel, here too (plan_buffers sizes the
     * scratch for it). */
    if (!d_input && fedkd_nn_dense_own_grad(out, in))
        fedkd_nn_dense_weight_grad(d_output, input, batch, out, in, d_weights,
                                   fedkd_nn_dense_sgd_mode == FEDKD_DENSE_SGD_PLAIN, scratch);
    else
        fedkd_sgemm(1, 0, out, in, batch, 1.0f, d_output, out, input, in, 1.0f, d_weights, in);
    fedkd_nn_dense_bias_grad(d_output, batch, out, d_bias);
    if (d_input)
        fedkd_sgemm(0, 0, batch, in, out, 1.0f, d_output, out, weights, in, 0.0f, d_input, in);
}

static size_t dense_scratch_floats(const fedkd_layer *layer, int batch) { return 0; }

const fedkd_layer_kind fedkd_layer_kind_dense = {
    .name = "dense",
    .configure = dense_configure,
    .init_params = dense_init_params,
    .forward = dense_forward,
    .backward = dense_backward,
    .scratch_floats = dense_scratch_floats,
};
