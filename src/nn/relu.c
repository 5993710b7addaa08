/* ReLU, max(x, 0) with NaN and -0 going to +0. Fused into a 2x2 / 2
 * maxpool after it (layer->relu_fused, maxpool.c): its output then aliases
 * its input, the pool rectifies it in place and masks the gradient, and the
 * model skips this layer; the functions here, when called all the same
 * (per-layer benchmarks), leave the bits as they are. */
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

static fedkd_status relu_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    if (spec->units || spec->filters || spec->kernel || spec->stride || spec->padding ||
        spec->init != FEDKD_INIT_DEFAULT)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "a relu layer takes no settings");
    layer->out_shape = layer->in_shape;
    layer->num_params = 0;
    return FEDKD_OK;
}

static void relu_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng) {}

FEDKD_NN_CLONES
void fedkd_nn_relu(const float *in, float *out, size_t count)
{
    for (size_t i = 0; i < count; i++) out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

static void relu_forward(const fedkd_layer *layer, const float *params, const float *input,
                         float *output, int batch, float *scratch)
{
    if (layer->relu_fused) return; /* output == input, rectified by the pool */
    fedkd_nn_relu(input, output, fedkd_shape_size(layer->in_shape) * (size_t)batch);
}

/* The mask comes from the output: output > 0 exactly where input > 0. */
static void relu_backward(const fedkd_layer *layer, const float *params, const float *input,
                          const float *output, const float *d_output, float *d_input,
                          float *d_params, int batch, float *scratch)
{
    if (!d_input) return;
    size_t count = fedkd_shape_size(layer->in_shape) * (size_t)batch;
    if (layer->relu_fused) {
        /* the pool's input gradient is already masked */
        if (d_input != d_output) memcpy(d_input, d_output, count * sizeof *d_input);
        return;
    }
    /* Read the gradient unconditionally so the compiler emits a select, not
     * a branch that mispredicts on half the elements. */
    for (size_t i = 0; i < count; i++) {
        float gradient = d_output[i];
        d_input[i] = output[i] > 0.0f ? gradient : 0.0f;
    }
}

static size_t relu_scratch_floats(const fedkd_layer *layer, int batch) { return 0; }

const fedkd_layer_kind fedkd_layer_kind_relu = {
    .name = "relu",
    .configure = relu_configure,
    .init_params = relu_init_params,
    .forward = relu_forward,
    .backward = relu_backward,
    .scratch_floats = relu_scratch_floats,
};
