/* Average pooling over square windows (no padding, floor mode), or, with
 * `global`, over each channel's whole plane to 1x1 (the global average pool
 * before a ResNet's classifier). Overlapping windows (stride < kernel) add
 * their shares, so the backward pass zeroes d_input first. */
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

typedef struct pool_geometry {
    int kernel_h, kernel_w, stride_h, stride_w;
} pool_geometry;

static pool_geometry geometry_of(const fedkd_layer *layer)
{
    pool_geometry g;
    if (layer->spec.global) {
        g.kernel_h = g.stride_h = layer->in_shape.height;
        g.kernel_w = g.stride_w = layer->in_shape.width;
    } else {
        g.kernel_h = g.kernel_w = layer->spec.kernel;
        g.stride_h = g.stride_w = layer->spec.stride > 0 ? layer->spec.stride : layer->spec.kernel;
    }
    return g;
}

static fedkd_status avgpool_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    fedkd_shape in = layer->in_shape;
    if (spec->units || spec->filters || spec->padding || spec->init != FEDKD_INIT_DEFAULT ||
        spec->groups || spec->body || spec->projection || spec->momentum != 0.0f ||
        spec->epsilon != 0.0f)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "an avgpool layer takes only kernel, stride or global");
    if (spec->global) {
        if (spec->kernel || spec->stride)
            return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                              "a global avgpool takes no kernel or stride (it pools the whole "
                              "%dx%d plane)",
                              in.height, in.width);
        layer->out_shape = (fedkd_shape){in.channels, 1, 1};
        return FEDKD_OK;
    }
    return fedkd_nn_pool_window(layer, " (or global: true)");
}

static void avgpool_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng) {}

static void avgpool_forward(const fedkd_layer *layer, const float *params, const float *input,
                            float *output, int batch, float *scratch)
{
    fedkd_shape in = layer->in_shape, out = layer->out_shape;
    pool_geometry g = geometry_of(layer);
    float share = 1.0f / (float)(g.kernel_h * g.kernel_w);
    size_t planes = (size_t)batch * (size_t)in.channels;
    for (size_t p = 0; p < planes; p++) {
        const float *src = input + p * (size_t)in.height * (size_t)in.width;
        float *dst = output + p * (size_t)out.height * (size_t)out.width;
        for (int oh = 0; oh < out.height; oh++)
            for (int ow = 0; ow < out.width; ow++) {
                const float *window = src + (size_t)(oh * g.stride_h) * (size_t)in.width +
                                      (size_t)(ow * g.stride_w);
                float sum = 0.0f;
                for (int i = 0; i < g.kernel_h; i++)
                    for (int j = 0; j < g.kernel_w; j++)
                        sum += window[(size_t)i * (size_t)in.width + (size_t)j];
                dst[(size_t)oh * (size_t)out.width + (size_t)ow] = sum * share;
            }
    }
}

static void avgpool_backward(const fedkd_layer *layer, const float *params, const float *input,
                             const float *output, const float *d_output, float *d_input,
                             float *d_params, int batch, float *scratch)
{
    if (!d_input) return;
    fedkd_shape in = layer->in_shape, out = layer->out_shape;
    pool_geometry g = geometry_of(layer);
    float share = 1.0f / (float)(g.kernel_h * g.kernel_w);
    size_t planes = (size_t)batch * (size_t)in.channels;
    size_t in_plane = (size_t)in.height * (size_t)in.width;
    memset(d_input, 0, planes * in_plane * sizeof *d_input);
    for (size_t p = 0; p < planes; p++) {
        float *d_src = d_input + p * in_plane;
        const float *d_dst = d_output + p * (size_t)out.height * (size_t)out.width;
        for (int oh = 0; oh < out.height; oh++)
            for (int ow = 0; ow < out.width; ow++) {
                float d = d_dst[(size_t)oh * (size_t)out.width + (size_t)ow] * share;
                float *window = d_src + (size_t)(oh * g.stride_h) * (size_t)in.width +
                                (size_t)(ow * g.stride_w);
                for (int i = 0; i < g.kernel_h; i++)
                    for (int j = 0; j < g.kernel_w; j++)
                        window[(size_t)i * (size_t)in.width + (size_t)j] += d;
            }
    }
}

static size_t avgpool_scratch_floats(const fedkd_layer *layer, int batch) { return 0; }

const fedkd_layer_kind fedkd_layer_kind_avgpool = {
    .name = "avgpool",
    .configure = avgpool_configure,
    .init_params = avgpool_init_params,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .scratch_floats = avgpool_scratch_floats,
};
