/* Max pooling over square windows (no padding, floor mode). The backward pass
 * finds each window's argmax again by comparing the input with the forward
 * output, so no index buffer is stored; ties go to the first position in
 * row-major order, as in the forward scan. When windows do not overlap
 * (stride >= kernel, the usual 2x2 / 2 pooling) it writes every input
 * gradient once, without branches on the data; overlapping windows take the
 * zero-then-add path. */
#include <stdint.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"

static int pool_stride(const fedkd_layer *layer)
{
    return layer->spec.stride > 0 ? layer->spec.stride : layer->spec.kernel;
}

fedkd_status fedkd_nn_pool_window(fedkd_layer *layer, const char *kernel_hint)
{
    const fedkd_layer_spec *spec = &layer->spec;
    fedkd_shape in = layer->in_shape;
    if (spec->kernel < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected kernel >= 1%s, got %d", kernel_hint,
                          spec->kernel);
    if (spec->stride < 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected stride >= 1 (or 0 for the kernel), got %d",
                          spec->stride);
    if (spec->kernel > in.height || spec->kernel > in.width)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "kernel %d is larger than the input %dx%dx%d",
                          spec->kernel, in.channels, in.height, in.width);
    int stride = pool_stride(layer);
    layer->out_shape = (fedkd_shape){in.channels, (in.height - spec->kernel) / stride + 1,
                                     (in.width - spec->kernel) / stride + 1};
    layer->num_params = 0;
    return FEDKD_OK;
}

static fedkd_status maxpool_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    if (spec->units || spec->filters || spec->padding || spec->init != FEDKD_INIT_DEFAULT ||
        spec->global || spec->groups || spec->body || spec->projection ||
        spec->momentum != 0.0f || spec->epsilon != 0.0f)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "a maxpool layer takes only kernel and stride");
    return fedkd_nn_pool_window(layer, "");
}

static void maxpool_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng) {}

static void maxpool_forward(const fedkd_layer *layer, const float *params, const float *input,
                            float *output, int batch, float *scratch)
{
    fedkd_shape in = layer->in_shape, out = layer->out_shape;
    int k = layer->spec.kernel, stride = pool_stride(layer);
    size_t planes = (size_t)batch * (size_t)in.channels;
    for (size_t p = 0; p < planes; p++) {
        const float *src = input + p * (size_t)in.height * (size_t)in.width;
        float *dst = output + p * (size_t)out.height * (size_t)out.width;
        for (int oh = 0; oh < out.height; oh++) {
            for (int ow = 0; ow < out.width; ow++) {
                const float *window = src + (size_t)(oh * stride) * (size_t)in.width +
                                      (size_t)(ow * stride);
                float best = window[0];
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        float v = window[(size_t)i * (size_t)in.width + (size_t)j];
                        if (v > best) best = v;
                    }
                dst[(size_t)oh * (size_t)out.width + (size_t)ow] = best;
            }
        }
    }
}

/* Whether row (or column) x of the input lies in some window: windows start
 * every `stride`, cover `k`, and there are `count` of them. */
static int pool_covers(int x, int stride, int k, int count)
{
    return x / stride < count && x % stride < k;
}

/* Backward for stride >= kernel: each input lies in at most one window, so
 * d_input is written once per element: the gradient at the window's first
 * maximum, 0 elsewhere, and 0 outside every window. */
static void maxpool_backward_disjoint(const fedkd_layer *layer, const float *output,
                                      const float *input, const float *d_output,
                                      float *d_input, int batch)
{
    fedkd_shape in = layer->in_shape, out = layer->out_shape;
    int k = layer->spec.kernel, stride = pool_stride(layer);
    size_t planes = (size_t)batch * (size_t)in.channels;
    size_t in_plane = (size_t)in.height * (size_t)in.width;
    size_t out_plane = (size_t)out.height * (size_t)out.width;
    int all_covered = stride == k && in.height == out.height * k && in.width == out.width * k;
    for (size_t p = 0; p < planes; p++) {
        const float *src = input + p * in_plane;
        float *d_src = d_input + p * in_plane;
        if (!all_covered) {
            for (int y = 0; y < in.height; y++) {
                int row_covered = pool_covers(y, stride, k, out.height);
                for (int x = 0; x < in.width; x++)
                    if (!row_covered || !pool_covers(x, stride, k, out.width))
                        d_src[(size_t)y * (size_t)in.width + (size_t)x] = 0.0f;
            }
        }
        for (int oh = 0; oh < out.height; oh++) {
            for (int ow = 0; ow < out.width; ow++) {
                size_t o = p * out_plane + (size_t)oh * (size_t)out.width + (size_t)ow;
                size_t origin = (size_t)(oh * stride) * (size_t)in.width + (size_t)(ow * stride);
                float best = output[o];
                uint32_t gradient_bits;
                memcpy(&gradient_bits, &d_output[o], sizeof gradient_bits);
                /* found and hit are 0 or 1; masks built from them select the
                 * gradient's bits or +0 without a branch on the data. */
                uint32_t found = 0;
                for (int i = 0; i < k; i++) {
                    size_t row = origin + (size_t)i * (size_t)in.width;
                    for (int j = 0; j < k; j++) {
                        uint32_t hit = (uint32_t)(src[row + (size_t)j] == best) & (found ^ 1u);
                        found |= hit;
                        uint32_t bits = gradient_bits & (0u - hit);
                        memcpy(&d_src[row + (size_t)j], &bits, sizeof bits);
                    }
                }
            }
        }
    }
}

static void maxpool_backward(const fedkd_layer *layer, const float *params, const float *input,
                             const float *output, const float *d_output, float *d_input,
                             float *d_params, int batch, float *scratch)
{
    if (!d_input) return;
    fedkd_shape in = layer->in_shape, out = layer->out_shape;
    int k = layer->spec.kernel, stride = pool_stride(layer);
    size_t planes = (size_t)batch * (size_t)in.channels;
    size_t in_plane = (size_t)in.height * (size_t)in.width;
    size_t out_plane = (size_t)out.height * (size_t)out.width;
    if (stride >= k) {
        maxpool_backward_disjoint(layer, output, input, d_output, d_input, batch);
        return;
    }
    /* Overlapping windows (stride < kernel) may route several gradients to
     * one input, hence zero then add. */
    memset(d_input, 0, planes * in_plane * sizeof *d_input);
    for (size_t p = 0; p < planes; p++) {
        const float *src = input + p * in_plane;
        float *d_src = d_input + p * in_plane;
        for (int oh = 0; oh < out.height; oh++) {
            for (int ow = 0; ow < out.width; ow++) {
                size_t o = p * out_plane + (size_t)oh * (size_t)out.width + (size_t)ow;
                size_t origin = (size_t)(oh * stride) * (size_t)in.width + (size_t)(ow * stride);
                float best = output[o];
                int found = 0;
                for (int i = 0; i < k && !found; i++)
                    for (int j = 0; j < k; j++) {
                        size_t at = origin + (size_t)i * (size_t)in.width + (size_t)j;
                        if (src[at] == best) {
                            d_src[at] += d_output[o];
                            found = 1;
                            break;
                        }
                    }
            }
        }
    }
}

static size_t maxpool_scratch_floats(const fedkd_layer *layer, int batch) { return 0; }

const fedkd_layer_kind fedkd_layer_kind_maxpool = {
    .name = "maxpool",
    .configure = maxpool_configure,
    .init_params = maxpool_init_params,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .scratch_floats = maxpool_scratch_floats,
};
