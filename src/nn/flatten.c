/* Flatten only relabels the shape: (c, h, w) becomes (c*h*w, 1, 1) with the
 * same memory order, so the model lets its output alias its input and the
 * copies below run only when a caller passes distinct buffers. */
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

static fedkd_status flatten_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    if (spec->units || spec->filters || spec->kernel || spec->stride || spec->padding ||
        spec->init != FEDKD_INIT_DEFAULT)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "a flatten layer takes no settings");
    layer->out_shape = (fedkd_shape){(int)fedkd_shape_size(layer->in_shape), 1, 1};
    layer->num_params = 0;
    return FEDKD_OK;
}

static void flatten_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng) {}

static void flatten_forward(const fedkd_layer *layer, const float *params, const float *input,
                            float *output, int batch, float *scratch)
{
    if (output != input)
        memcpy(output, input, fedkd_shape_size(layer->in_shape) * (size_t)batch * sizeof *output);
}

static void flatten_backward(const fedkd_layer *layer, const float *params, const float *input,
                             const float *output, const float *d_output, float *d_input,
                             float *d_params, int batch, float *scratch)
{
    if (d_input && d_input != d_output)
        memcpy(d_input, d_output,
               fedkd_shape_size(layer->in_shape) * (size_t)batch * sizeof *d_input);
}

static size_t flatten_scratch_floats(const fedkd_layer *layer, int batch) { return 0; }

const fedkd_layer_kind fedkd_layer_kind_flatten = {
    .name = "flatten",
    .configure = flatten_configure,
    .init_params = flatten_init_params,
    .forward = flatten_forward,
    .backward = flatten_backward,
    .scratch_floats = flatten_scratch_floats,
};
