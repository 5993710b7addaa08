/* 2-D convolution by im2col and matrix products. Parameters: weights (filters, in_channels,
 * kernel, kernel), then bias (filters). Zero padding on every side; output
 * size floor((in + 2 * padding - kernel) / stride) + 1.
 *
 * The batch is cut into chunks of samples (chunk_samples). Per chunk, im2col
 * unrolls every sample's input side by side into col (in_channels*kernel*kernel,
 * chunk*out_h*out_w), so that the convolution of the whole chunk is one matrix
 * product (filters, chunk*out_h*out_w) = W (filters, in_channels*kernel*kernel) col
 * instead of one small product per sample. The products run on the
 * register-blocked kernels of small_gemm.c, written for these shapes (6 or
 * 16 filters, 25 or 150 patch values), on which BLAS runs far below its peak
 * (bench/README.md, "Engine speed"). The backward pass rebuilds col in
 * the same scratch for dW, then reuses it for d_col = W^T d_out, which col2im
 * scatters back. */
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/nn_private.h"
#include "nn/small_gemm.h"

fedkd_conv2d_geometry fedkd_conv2d_geometry_of(const fedkd_layer *layer)
{
    fedkd_conv2d_geometry g;
    g.in_channels = layer->in_shape.channels;
    g.in_height = layer->in_shape.height;
    g.in_width = layer->in_shape.width;
    g.filters = layer->spec.filters;
    g.kernel = layer->spec.kernel;
    g.stride = layer->spec.stride > 0 ? layer->spec.stride : 1;
    g.padding = layer->spec.padding;
    g.out_height = (g.in_height + 2 * g.padding - g.kernel) / g.stride + 1;
    g.out_width = (g.in_width + 2 * g.padding - g.kernel) / g.stride + 1;
    return g;
}

static fedkd_status conv2d_configure(fedkd_layer *layer)
{
    const fedkd_layer_spec *spec = &layer->spec;
    fedkd_shape in = layer->in_shape;
    if (spec->units)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "a conv2d layer takes filters, not units");
    if (spec->filters < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected filters >= 1, got %d", spec->filters);
    if (spec->kernel < 1)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected kernel >= 1, got %d", spec->kernel);
    if (spec->stride < 0)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG, "expected stride >= 1 (or 0 for 1), got %d",
                          spec->stride);
    if (spec->padding < 0 || spec->padding >= spec->kernel)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "expected padding between 0 and kernel - 1 = %d, got %d",
                          spec->kernel - 1, spec->padding);
    if (spec->kernel > in.height + 2 * spec->padding ||
        spec->kernel > in.width + 2 * spec->padding)
        return FEDKD_FAIL(FEDKD_ERR_CONFIG,
                          "kernel %d is larger than the padded input %dx%d (input %dx%dx%d, "
                          "padding %d)",
                          spec->kernel, in.height + 2 * spec->padding,
                          in.width + 2 * spec->padding, in.channels, in.height, in.width,
                          spec->padding);
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    layer->out_shape = (fedkd_shape){g.filters, g.out_height, g.out_width};
    layer->num_params = (size_t)g.filters * (size_t)g.in_channels * (size_t)g.kernel *
                            (size_t)g.kernel +
                        (size_t)g.filters;
    return FEDKD_OK;
}

static void conv2d_init_params(const fedkd_layer *layer, float *params, fedkd_rng *rng)
{
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    size_t window = (size_t)g.kernel * (size_t)g.kernel;
    size_t fan_in = (size_t)g.in_channels * window;
    size_t fan_out = (size_t)g.filters * window;
    size_t num_weights = (size_t)g.filters * fan_in;
    fedkd_nn_init_uniform(layer, params, num_weights, fan_in, fan_out, rng);
    memset(params + num_weights, 0, (size_t)g.filters * sizeof *params);
}

/* The output columns ow whose input column ow * stride - padding + kj lies
 * inside the image: [*first, *last). Hoisting this out of the inner loops
 * lets them copy without per-pixel bounds checks. */
static void valid_columns(const fedkd_conv2d_geometry *g, int kj, int *first, int *last)
{
    int offset = kj - g->padding; /* iw = ow * stride + offset */
    int lo = offset >= 0 ? 0 : (-offset + g->stride - 1) / g->stride;
    int hi = g->in_width - 1 - offset < 0 ? 0 : (g->in_width - 1 - offset) / g->stride + 1;
    if (hi > g->out_width) hi = g->out_width;
    if (lo > hi) lo = hi;
    *first = lo;
    *last = hi;
}

/* input (in_channels, in_h, in_w) -> col (in_channels*k*k, out_h*out_w), the
 * rows of col `ld` floats apart (ld >= out_h*out_w: several samples side by
 * side). */
static void im2col(const fedkd_conv2d_geometry *g, const float *input, float *col, size_t ld)
{
    int out_h = g->out_height, out_w = g->out_width, k = g->kernel, stride = g->stride;
    for (int c = 0; c < g->in_channels; c++) {
        const float *channel = input + (size_t)c * (size_t)g->in_height * (size_t)g->in_width;
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                float *row = col + ((size_t)(c * k + ki) * (size_t)k + (size_t)kj) * ld;
                int first, last;
                valid_columns(g, kj, &first, &last);
                int offset = kj - g->padding;
                for (int oh = 0; oh < out_h; oh++) {
                    int ih = oh * stride - g->padding + ki;
                    float *dst = row + (size_t)oh * (size_t)out_w;
                    if (ih < 0 || ih >= g->in_height) {
                        memset(dst, 0, (size_t)out_w * sizeof *dst);
                        continue;
                    }
                    const float *src = channel + (size_t)ih * (size_t)g->in_width;
                    for (int ow = 0; ow < first; ow++) dst[ow] = 0.0f;
                    if (stride == 1) {
                        memcpy(dst + first, src + first + offset,
                               (size_t)(last - first) * sizeof *dst);
                    } else {
                        for (int ow = first; ow < last; ow++) dst[ow] = src[ow * stride + offset];
                    }
                    for (int ow = last; ow < out_w; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* The adjoint of im2col (same `ld`): d_input = 0, then every col entry is
 * added back to the input pixel it was copied from. */
static void col2im(const fedkd_conv2d_geometry *g, const float *col, size_t ld, float *d_input)
{
    int out_h = g->out_height, out_w = g->out_width, k = g->kernel, stride = g->stride;
    memset(d_input, 0,
           (size_t)g->in_channels * (size_t)g->in_height * (size_t)g->in_width *
               sizeof *d_input);
    for (int c = 0; c < g->in_channels; c++) {
        float *channel = d_input + (size_t)c * (size_t)g->in_height * (size_t)g->in_width;
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                const float *row = col + ((size_t)(c * k + ki) * (size_t)k + (size_t)kj) * ld;
                int first, last;
                valid_columns(g, kj, &first, &last);
                int offset = kj - g->padding;
                for (int oh = 0; oh < out_h; oh++) {
                    int ih = oh * stride - g->padding + ki;
                    if (ih < 0 || ih >= g->in_height) continue;
                    const float *src = row + (size_t)oh * (size_t)out_w;
                    float *dst = channel + (size_t)ih * (size_t)g->in_width;
                    if (stride == 1) {
                        /* unit stride: a loop the compiler vectorises */
                        float *to = dst + first + offset;
                        const float *from = src + first;
                        for (int i = 0; i < last - first; i++) to[i] += from[i];
                    } else {
                        for (int ow = first; ow < last; ow++) dst[ow * stride + offset] += src[ow];
                    }
                }
            }
        }
    }
}

/* Samples per GEMM: as many as keep col of one chunk within CHUNK_FLOATS
 * (about the size of a core's L2), at least one. It depends only on the
 * geometry and the batch, so the floating-point order is the same on every
 * rank for the same minibatch. */
#define CHUNK_FLOATS ((size_t)1 << 18)

static int chunk_samples(const fedkd_conv2d_geometry *g, int batch)
{
    size_t column = (size_t)g->in_channels * (size_t)g->kernel * (size_t)g->kernel *
                    (size_t)g->out_height * (size_t)g->out_width;
    size_t samples = CHUNK_FLOATS / column;
    if (samples < 1) samples = 1;
    return samples < (size_t)batch ? (int)samples : batch;
}

static void conv2d_forward(const fedkd_layer *layer, const float *params, const float *input,
                           float *output, int batch, float *scratch)
{
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    int patch = g.in_channels * g.kernel * g.kernel;
    size_t plane = (size_t)g.out_height * (size_t)g.out_width;
    size_t in_size = fedkd_shape_size(layer->in_shape);
    size_t out_size = (size_t)g.filters * plane;
    int chunk = chunk_samples(&g, batch);
    const float *weights = params;                                  /* (filters, patch) */
    const float *bias = params + (size_t)g.filters * (size_t)patch; /* (filters) */
    float *col = scratch;                            /* (patch, chunk * plane) */
    float *product = scratch + (size_t)patch * (size_t)chunk * plane; /* (filters, chunk * plane) */
    for (int first = 0; first < batch; first += chunk) {
        int count = batch - first < chunk ? batch - first : chunk;
        size_t ld = (size_t)count * plane;
        for (int s = 0; s < count; s++)
            im2col(&g, input + (size_t)(first + s) * in_size, col + (size_t)s * plane, ld);
        /* One GEMM for the chunk, then bias and the (filters, sample) ->
         * (sample, filters) reordering of the output in one pass. */
        fedkd_small_gemm_rows(g.filters, (int)ld, patch, weights, (size_t)patch, 1, col, ld,
                              product, ld);
        for (int s = 0; s < count; s++) {
            float *out = output + (size_t)(first + s) * out_size; /* (filters, plane) */
            for (int f = 0; f < g.filters; f++) {
                const float *src = product + (size_t)f * ld + (size_t)s * plane;
                float *dst = out + (size_t)f * plane;
                float b = bias[f];
                for (size_t j = 0; j < plane; j++) dst[j] = src[j] + b;
            }
        }
    }
}

static void conv2d_backward(const fedkd_layer *layer, const float *params, const float *input,
                            const float *output, const float *d_output, float *d_input,
                            float *d_params, int batch, float *scratch)
{
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    int patch = g.in_channels * g.kernel * g.kernel;
    size_t plane = (size_t)g.out_height * (size_t)g.out_width;
    size_t in_size = fedkd_shape_size(layer->in_shape);
    size_t out_size = (size_t)g.filters * plane;
    int chunk = chunk_samples(&g, batch);
    const float *weights = params;
    float *d_weights = d_params;                                  /* (filters, patch) */
    float *d_bias = d_params + (size_t)g.filters * (size_t)patch; /* (filters) */
    float *col = scratch;                            /* (patch, chunk * plane) */
    float *d_out = scratch + (size_t)patch * (size_t)chunk * plane; /* (filters, chunk * plane) */
    for (int first = 0; first < batch; first += chunk) {
        int count = batch - first < chunk ? batch - first : chunk;
        size_t ld = (size_t)count * plane;
        for (int s = 0; s < count; s++)
            im2col(&g, input + (size_t)(first + s) * in_size, col + (size_t)s * plane, ld);
        /* d_output (sample, filters, plane) -> d_out (filters, sample * plane) */
        for (int s = 0; s < count; s++) {
            const float *src_sample = d_output + (size_t)(first + s) * out_size;
            for (int f = 0; f < g.filters; f++)
                memcpy(d_out + (size_t)f * ld + (size_t)s * plane, src_sample + (size_t)f * plane,
                       plane * sizeof *d_out);
        }
        fedkd_small_row_sums(g.filters, (int)ld, d_out, ld, d_bias);
        /* dW (filters, patch) += d_out (filters, ld) col^T */
        fedkd_small_gemm_dots(g.filters, patch, (int)ld, d_out, ld, col, ld, d_weights,
                              (size_t)patch);
        if (d_input) {
            /* d_col (patch, ld) = W^T (patch, filters) d_out, W read transposed */
            fedkd_small_gemm_rows(patch, (int)ld, g.filters, weights, 1, (size_t)patch, d_out, ld,
                                  col, ld);
            for (int s = 0; s < count; s++)
                col2im(&g, col + (size_t)s * plane, ld,
                       d_input + (size_t)(first + s) * in_size);
        }
    }
}

static size_t conv2d_scratch_floats(const fedkd_layer *layer, int batch)
{
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    size_t chunk = (size_t)chunk_samples(&g, batch);
    size_t plane = (size_t)g.out_height * (size_t)g.out_width;
    size_t patch = (size_t)g.in_channels * (size_t)g.kernel * (size_t)g.kernel;
    return chunk * plane * (patch + (size_t)g.filters);
}

const fedkd_layer_kind fedkd_layer_kind_conv2d = {
    .name = "conv2d",
    .configure = conv2d_configure,
    .init_params = conv2d_init_params,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
    .scratch_floats = conv2d_scratch_floats,
};
