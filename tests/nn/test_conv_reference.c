/* The conv2d fast paths (im2col + products, the direct forward, col2im)
 * against direct loops written from the definition, forward and backward,
 * over several geometries. Tolerance: relative 1e-4 (CHECK_CLOSE scale
 * max(1, |a|, |b|)); the references accumulate in double. The forward is
 * also checked bit for bit against a float sum in its documented order (the
 * taps (channel, row, column) in increasing order from 0, then the bias),
 * which every path must keep, and so is the input gradient (per input
 * pixel, the taps that read it in increasing order from +0, each tap's sum
 * over the filters in order; on input rows narrower than 16, the path
 * vectorised over the filters documents its own order, filter lanes summed
 * by a halving tree). The weight and bias gradients are checked bit
 * for bit where a path documents their order: the direct weight gradient
 * (conv2d.c) and the path vectorised over the filters (conv_filters.c). */
#include <stdlib.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "fedkd/core/rng.h"
#include "test_util.h"

typedef struct conv_case {
    int batch, channels, height, width, filters, kernel, stride, padding;
} conv_case;

static int out_size(int in, int kernel, int stride, int padding)
{
    return (in + 2 * padding - kernel) / stride + 1;
}

/* The input value at (n, c, y, x) of the zero-padded image, y and x in
 * unpadded coordinates (possibly outside). */
static double padded_at(const conv_case *c, const float *input, int n, int ch, int y, int x)
{
    if (y < 0 || y >= c->height || x < 0 || x >= c->width) return 0.0;
    return (double)input[((n * c->channels + ch) * c->height + y) * c->width + x];
}

static void conv_forward_naive(const conv_case *c, const float *params, const float *input,
                               float *output)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int k = c->kernel;
    const float *bias = params + c->filters * c->channels * k * k;
    for (int n = 0; n < c->batch; n++)
        for (int f = 0; f < c->filters; f++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double sum = (double)bias[f];
                    for (int ch = 0; ch < c->channels; ch++)
                        for (int i = 0; i < k; i++)
                            for (int j = 0; j < k; j++)
                                sum += (double)params[((f * c->channels + ch) * k + i) * k + j] *
                                       padded_at(c, input, n, ch, y * c->stride - c->padding + i,
                                                 x * c->stride - c->padding + j);
                    output[((n * c->filters + f) * oh + y) * ow + x] = (float)sum;
                }
}

/* The forward in float, in the order conv2d.c documents. */
static void conv_forward_in_order(const conv_case *c, const float *params, const float *input,
                                  float *output)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int k = c->kernel;
    const float *bias = params + c->filters * c->channels * k * k;
    for (int n = 0; n < c->batch; n++)
        for (int f = 0; f < c->filters; f++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    float sum = 0.0f;
                    for (int ch = 0; ch < c->channels; ch++)
                        for (int i = 0; i < k; i++)
                            for (int j = 0; j < k; j++)
                                sum += params[((f * c->channels + ch) * k + i) * k + j] *
                                       (float)padded_at(c, input, n, ch,
                                                        y * c->stride - c->padding + i,
                                                        x * c->stride - c->padding + j);
                    output[((n * c->filters + f) * oh + y) * ow + x] = sum + bias[f];
                }
}

/* The input gradient in float, in the order conv2d.c documents: per input
 * pixel, from +0, the taps (ki, kj) that read it in increasing order, each
 * adding sum over filters in order (from 0) of weight * output gradient. */
static void conv_input_gradient_in_order(const conv_case *c, const float *params,
                                         const float *d_output, float *d_input)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int k = c->kernel;
    for (int n = 0; n < c->batch; n++)
        for (int ch = 0; ch < c->channels; ch++)
            for (int y = 0; y < c->height; y++)
                for (int x = 0; x < c->width; x++) {
                    float sum = 0.0f;
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++) {
                            int oy = y + c->padding - i, ox = x + c->padding - j;
                            if (oy < 0 || ox < 0 || oy % c->stride || ox % c->stride) continue;
                            oy /= c->stride;
                            ox /= c->stride;
                            if (oy >= oh || ox >= ow) continue;
                            float tap = 0.0f;
                            for (int f = 0; f < c->filters; f++)
                                tap += params[((f * c->channels + ch) * k + i) * k + j] *
                                       d_output[((n * c->filters + f) * oh + oy) * ow + ox];
                            sum += tap;
                        }
                    d_input[((n * c->channels + ch) * c->height + y) * c->width + x] = sum;
                }
}

/* Whether conv2d.c computes this case's weight gradient directly on the
 * padded image (its use_direct_weight_gradient), and then the order it
 * documents, for a batch within one of its chunks: each weight's sum in 16
 * lanes over (sample, oh, ow), ow running over the padded width (the extra
 * columns adding 0 x input), lane = (oh * padded_w + ow) mod 16, the lanes
 * added in order, then added to the starting value. */
static int filters_path(const conv_case *c);

static int direct_weight_gradient(const conv_case *c)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int padded_w = c->width + 2 * c->padding;
    return !filters_path(c) && c->stride == 1 && c->channels * c->kernel * c->kernel <= 64 &&
           4 * padded_w <= 5 * ow && (oh * ow) % 16 == 0 && (oh * padded_w) % 16 == 0;
}

static void direct_weight_gradient_in_order(const conv_case *c, const float *input,
                                            const float *d_output, float start, float *d_weights)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int k = c->kernel, padded_w = c->width + 2 * c->padding;
    for (int f = 0; f < c->filters; f++)
        for (int ch = 0; ch < c->channels; ch++)
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) {
                    float lanes[16] = {0.0f};
                    for (int n = 0; n < c->batch; n++)
                        for (int y = 0; y < oh; y++)
                            for (int x = 0; x < padded_w; x++) {
                                /* the padded image read at (y + i, x + j), past
                                 * the row's end into the next padded row */
                                int py = y + i + (x + j) / padded_w, px = (x + j) % padded_w;
                                float value = (float)padded_at(c, input, n, ch, py - c->padding,
                                                               px - c->padding);
                                float g = x < ow ? d_output[((n * c->filters + f) * oh + y) * ow + x]
                                                 : 0.0f;
                                lanes[(y * padded_w + x) % 16] += g * value;
                            }
                    float sum = 0.0f;
                    for (int l = 0; l < 16; l++) sum += lanes[l];
                    d_weights[((f * c->channels + ch) * k + i) * k + j] = start + sum;
                }
}

/* Whether conv2d.c takes the path vectorised over the filters
 * (conv_filters.c: stride 1, filters in groups of 16, kernel up to 5), and
 * then the order it documents for the weight and bias gradients: per
 * sample, 0 + the products over the output pixels in row-major order, the
 * per-sample sums added to the starting value in sample order. */
static int filters_path(const conv_case *c)
{
    return c->stride == 1 && c->filters % 16 == 0 && c->kernel <= 5;
}

static void filters_parameter_gradient_in_order(const conv_case *c, const float *input,
                                                const float *d_output, float start,
                                                float *d_params)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int k = c->kernel, num_weights = c->filters * c->channels * k * k;
    for (int f = 0; f < c->filters; f++) {
        for (int ch = 0; ch < c->channels; ch++)
            for (int i = 0; i < k; i++)
                for (int j = 0; j < k; j++) {
                    float sum = start;
                    for (int n = 0; n < c->batch; n++) {
                        float sample = 0.0f;
                        for (int y = 0; y < oh; y++)
                            for (int x = 0; x < ow; x++)
                                sample += d_output[((n * c->filters + f) * oh + y) * ow + x] *
                                          (float)padded_at(c, input, n, ch, y - c->padding + i,
                                                           x - c->padding + j);
                        sum += sample;
                    }
                    d_params[((f * c->channels + ch) * k + i) * k + j] = sum;
                }
        float sum = start;
        for (int n = 0; n < c->batch; n++) {
            float sample = 0.0f;
            for (int p = 0; p < oh * ow; p++) sample += d_output[(n * c->filters + f) * oh * ow + p];
            sum += sample;
        }
        d_params[num_weights + f] = sum;
    }
}

/* Whether the path vectorised over the filters takes this case's input
 * gradient in filter lanes (conv_filters.c: input rows narrower than 16),
 * and then its order: per input pixel and group of 16 filters, each
 * filter's sum from 0 over the taps (ki, kj) that read the pixel in
 * increasing order, the group's 16 sums l_0 .. l_15 added as a halving tree
 * (a_j = l_j + l_(j+8), b_j = a_j + a_(j+4), c_j = b_j + b_(j+2), c_0 +
 * c_1), the groups' sums added in group order to +0. */
static int filter_lanes_input_gradient(const conv_case *c)
{
    return filters_path(c) && c->width < 16;
}

static float halving_sum(const float lanes[16])
{
    float a[8], b[4], h[2];
    for (int j = 0; j < 8; j++) a[j] = lanes[j] + lanes[j + 8];
    for (int j = 0; j < 4; j++) b[j] = a[j] + a[j + 4];
    for (int j = 0; j < 2; j++) h[j] = b[j] + b[j + 2];
    return h[0] + h[1];
}

static void filter_lanes_input_gradient_in_order(const conv_case *c, const float *params,
                                                 const float *d_output, float *d_input)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int k = c->kernel;
    for (int n = 0; n < c->batch; n++)
        for (int ch = 0; ch < c->channels; ch++)
            for (int y = 0; y < c->height; y++)
                for (int x = 0; x < c->width; x++) {
                    float total = 0.0f;
                    for (int group = 0; group < c->filters / 16; group++) {
                        float lanes[16];
                        for (int l = 0; l < 16; l++) {
                            int f = group * 16 + l;
                            float sum = 0.0f;
                            for (int i = 0; i < k; i++)
                                for (int j = 0; j < k; j++) {
                                    int oy = y + c->padding - i, ox = x + c->padding - j;
                                    if (oy < 0 || ox < 0 || oy >= oh || ox >= ow) continue;
                                    sum += params[((f * c->channels + ch) * k + i) * k + j] *
                                           d_output[((n * c->filters + f) * oh + oy) * ow + ox];
                                }
                            lanes[l] = sum;
                        }
                        total += halving_sum(lanes);
                    }
                    d_input[((n * c->channels + ch) * c->height + y) * c->width + x] = total;
                }
}

/* Gradients of sum(output * d_output): d_params (weights, bias) and d_input,
 * both written (not added), accumulated in double. */
static void conv_backward_naive(const conv_case *c, const float *params, const float *input,
                                const float *d_output, double *d_params, double *d_input)
{
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    int k = c->kernel;
    size_t num_weights = (size_t)(c->filters * c->channels * k * k);
    memset(d_params, 0, (num_weights + (size_t)c->filters) * sizeof *d_params);
    memset(d_input, 0,
           (size_t)(c->batch * c->channels * c->height * c->width) * sizeof *d_input);
    for (int n = 0; n < c->batch; n++)
        for (int f = 0; f < c->filters; f++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double g = (double)d_output[((n * c->filters + f) * oh + y) * ow + x];
                    d_params[num_weights + (size_t)f] += g;
                    for (int ch = 0; ch < c->channels; ch++)
                        for (int i = 0; i < k; i++)
                            for (int j = 0; j < k; j++) {
                                int iy = y * c->stride - c->padding + i;
                                int ix = x * c->stride - c->padding + j;
                                size_t w = (size_t)(((f * c->channels + ch) * k + i) * k + j);
                                d_params[w] += g * padded_at(c, input, n, ch, iy, ix);
                                if (iy >= 0 && iy < c->height && ix >= 0 && ix < c->width)
                                    d_input[((n * c->channels + ch) * c->height + iy) * c->width +
                                            ix] += g * (double)params[w];
                            }
                }
}

static void check_case(const conv_case *c, fedkd_rng *rng)
{
    char what[160];
    snprintf(what, sizeof what, "batch %d in %dx%dx%d filters %d k%d s%d p%d", c->batch,
             c->channels, c->height, c->width, c->filters, c->kernel, c->stride, c->padding);

    fedkd_layer layer;
    memset(&layer, 0, sizeof layer);
    snprintf(layer.spec.kind, sizeof layer.spec.kind, "conv2d");
    layer.spec.filters = c->filters;
    layer.spec.kernel = c->kernel;
    layer.spec.stride = c->stride;
    layer.spec.padding = c->padding;
    layer.kind = fedkd_layer_kind_find("conv2d");
    layer.in_shape = (fedkd_shape){c->channels, c->height, c->width};
    fedkd_status status = layer.kind->configure(&layer);
    CHECK(status == FEDKD_OK, "%s: configure: %s", what, fedkd_error_message());
    if (status != FEDKD_OK) return;
    int oh = out_size(c->height, c->kernel, c->stride, c->padding);
    int ow = out_size(c->width, c->kernel, c->stride, c->padding);
    CHECK(layer.out_shape.channels == c->filters && layer.out_shape.height == oh &&
              layer.out_shape.width == ow,
          "%s: out shape %dx%dx%d, expected %dx%dx%d", what, layer.out_shape.channels,
          layer.out_shape.height, layer.out_shape.width, c->filters, oh, ow);
    size_t num_params = (size_t)(c->filters * c->channels * c->kernel * c->kernel + c->filters);
    CHECK(layer.num_params == num_params, "%s: %zu params, expected %zu", what, layer.num_params,
          num_params);

    size_t in_count = (size_t)(c->batch * c->channels * c->height * c->width);
    size_t out_count = (size_t)(c->batch * c->filters * oh * ow);
    size_t scratch_count = layer.kind->scratch_floats(&layer, c->batch);
    float *params = malloc(num_params * sizeof *params);
    float *input = malloc(in_count * sizeof *input);
    float *output = malloc(out_count * sizeof *output);
    float *expected = malloc(out_count * sizeof *expected);
    float *d_output = malloc(out_count * sizeof *d_output);
    float *d_params = malloc(num_params * sizeof *d_params);
    float *d_input = malloc(in_count * sizeof *d_input);
    float *scratch = malloc((scratch_count + 1) * sizeof *scratch);
    double *ref_d_params = malloc(num_params * sizeof *ref_d_params);
    double *ref_d_input = malloc(in_count * sizeof *ref_d_input);
    for (size_t i = 0; i < num_params; i++) params[i] = (float)(fedkd_rng_uniform(rng) - 0.5);
    for (size_t i = 0; i < in_count; i++) input[i] = (float)(2.0 * fedkd_rng_uniform(rng) - 1.0);
    for (size_t i = 0; i < out_count; i++)
        d_output[i] = (float)(2.0 * fedkd_rng_uniform(rng) - 1.0);
    /* Stale scratch and d_input must not leak into results (an infinite
     * stale value would turn a product by 0 into NaN). */
    for (size_t i = 0; i < scratch_count; i++) scratch[i] = INFINITY;
    for (size_t i = 0; i < in_count; i++) d_input[i] = -1e7f;
    for (size_t i = 0; i < num_params; i++) d_params[i] = 0.25f; /* backward adds to this */

    layer.kind->forward(&layer, params, input, output, c->batch, scratch);
    conv_forward_naive(c, params, input, expected);
    int bad = 0;
    for (size_t i = 0; i < out_count; i++) {
        double a = (double)output[i], b = (double)expected[i];
        if (fabs(a - b) > 1e-4 * fmax(1.0, fmax(fabs(a), fabs(b)))) bad++;
    }
    CHECK(bad == 0, "%s: %d of %zu forward outputs differ from the direct loops", what, bad,
          out_count);
    conv_forward_in_order(c, params, input, expected);
    int not_exact = 0;
    for (size_t i = 0; i < out_count; i++)
        not_exact += memcmp(&output[i], &expected[i], sizeof *output) != 0;
    CHECK(not_exact == 0, "%s: %d of %zu forward outputs differ from the in-order float sum",
          what, not_exact, out_count);

    layer.kind->backward(&layer, params, input, output, d_output, d_input, d_params, c->batch,
                         scratch);
    conv_backward_naive(c, params, input, d_output, ref_d_params, ref_d_input);
    int bad_params = 0, bad_input = 0;
    for (size_t i = 0; i < num_params; i++) {
        double a = (double)d_params[i] - 0.25, b = ref_d_params[i];
        if (fabs(a - b) > 1e-4 * fmax(1.0, fmax(fabs(a), fabs(b)))) bad_params++;
    }
    for (size_t i = 0; i < in_count; i++) {
        double a = (double)d_input[i], b = ref_d_input[i];
        if (fabs(a - b) > 1e-4 * fmax(1.0, fmax(fabs(a), fabs(b)))) bad_input++;
    }
    CHECK(bad_params == 0, "%s: %d of %zu parameter gradients differ", what, bad_params,
          num_params);
    if (direct_weight_gradient(c)) {
        size_t num_weights = num_params - (size_t)c->filters;
        float *exact_d_weights = malloc(num_weights * sizeof *exact_d_weights);
        direct_weight_gradient_in_order(c, input, d_output, 0.25f, exact_d_weights);
        int not_exact_weights = 0;
        for (size_t i = 0; i < num_weights; i++)
            not_exact_weights += memcmp(&d_params[i], &exact_d_weights[i], sizeof *d_params) != 0;
        CHECK(not_exact_weights == 0,
              "%s: %d of %zu weight gradients differ from the direct path's documented order", what,
              not_exact_weights, num_weights);
        free(exact_d_weights);
    }
    if (filters_path(c)) {
        float *exact_d_params = malloc(num_params * sizeof *exact_d_params);
        filters_parameter_gradient_in_order(c, input, d_output, 0.25f, exact_d_params);
        int not_exact_params = 0;
        for (size_t i = 0; i < num_params; i++)
            not_exact_params += memcmp(&d_params[i], &exact_d_params[i], sizeof *d_params) != 0;
        CHECK(not_exact_params == 0,
              "%s: %d of %zu parameter gradients differ from the filter path's documented order",
              what, not_exact_params, num_params);
        free(exact_d_params);
    }
    /* The same pass with the forward's columns kept for the backward
     * (layer.saved, as a model gives it when they fit) must give the same
     * bits. */
    size_t saved_count = layer.kind->saved_floats ? layer.kind->saved_floats(&layer, c->batch) : 0;
    if (saved_count > 0) {
        float *saved_output = malloc(out_count * sizeof *saved_output);
        float *saved_d_params = malloc(num_params * sizeof *saved_d_params);
        float *saved_d_input = malloc(in_count * sizeof *saved_d_input);
        layer.saved = malloc(saved_count * sizeof *layer.saved);
        for (size_t i = 0; i < num_params; i++) saved_d_params[i] = 0.25f;
        for (size_t i = 0; i < in_count; i++) saved_d_input[i] = -1e7f;
        for (size_t i = 0; i < scratch_count; i++) scratch[i] = 1e7f;
        layer.kind->forward(&layer, params, input, saved_output, c->batch, scratch);
        for (size_t i = 0; i < scratch_count; i++) scratch[i] = 1e7f; /* only saved carries over */
        layer.kind->backward(&layer, params, input, saved_output, d_output, saved_d_input,
                             saved_d_params, c->batch, scratch);
        int differ = 0;
        for (size_t i = 0; i < out_count; i++) differ += memcmp(&saved_output[i], &output[i], 4) != 0;
        for (size_t i = 0; i < num_params; i++)
            differ += memcmp(&saved_d_params[i], &d_params[i], 4) != 0;
        for (size_t i = 0; i < in_count; i++)
            differ += memcmp(&saved_d_input[i], &d_input[i], 4) != 0;
        CHECK(differ == 0, "%s: %d values differ with the columns kept from the forward pass",
              what, differ);
        free(layer.saved);
        layer.saved = NULL;
        free(saved_output);
        free(saved_d_params);
        free(saved_d_input);
    }
    float *exact_d_input = malloc(in_count * sizeof *exact_d_input);
    if (filter_lanes_input_gradient(c))
        filter_lanes_input_gradient_in_order(c, params, d_output, exact_d_input);
    else
        conv_input_gradient_in_order(c, params, d_output, exact_d_input);
    int not_exact_input = 0;
    for (size_t i = 0; i < in_count; i++)
        not_exact_input += memcmp(&d_input[i], &exact_d_input[i], sizeof *d_input) != 0;
    CHECK(not_exact_input == 0, "%s: %d of %zu input gradients differ from the in-order float sum",
          what, not_exact_input, in_count);
    free(exact_d_input);
    CHECK(bad_input == 0, "%s: %d of %zu input gradients differ", what, bad_input, in_count);

    /* d_input == NULL (first layer) still accumulates the parameter gradients. */
    for (size_t i = 0; i < num_params; i++) d_params[i] = 0.0f;
    layer.kind->backward(&layer, params, input, output, d_output, NULL, d_params, c->batch,
                         scratch);
    int bad_no_input = 0;
    for (size_t i = 0; i < num_params; i++)
        if (fabs((double)d_params[i] - ref_d_params[i]) >
            1e-4 * fmax(1.0, fabs(ref_d_params[i])))
            bad_no_input++;
    CHECK(bad_no_input == 0, "%s: %d parameter gradients differ without d_input", what,
          bad_no_input);

    free(params);
    free(input);
    free(output);
    free(expected);
    free(d_output);
    free(d_params);
    free(d_input);
    free(scratch);
    free(ref_d_params);
    free(ref_d_input);
}

int main(void)
{
    fedkd_rng rng = fedkd_rng_stream(3, FEDKD_RNG_TEST, 0, 0);
    const conv_case cases[] = {
        {2, 1, 28, 28, 6, 5, 1, 2},  /* the cnn preset's first layer */
        {3, 6, 14, 14, 16, 5, 1, 0}, /* and its second */
        {2, 3, 9, 7, 4, 3, 2, 1},
        {2, 2, 8, 8, 3, 3, 3, 2},
        {1, 4, 5, 6, 2, 1, 1, 0},    /* 1x1 conv */
        {3, 2, 7, 7, 5, 4, 2, 3},    /* even kernel, large padding */
        {1, 1, 3, 3, 2, 3, 1, 0},    /* kernel = input: one output pixel */
        /* batches of several chunks (conv2d.c cuts a batch into chunks of
         * samples) and a last, shorter chunk */
        {20, 1, 28, 28, 6, 5, 1, 2}, /* chunks of 13: 13 + 7 */
        {20, 6, 14, 14, 16, 5, 1, 0}, /* chunks of 17: 17 + 3 */
        {3, 3, 40, 40, 5, 5, 1, 2},  /* chunks of 2: 2 + 1 */
        {5, 2, 13, 11, 7, 3, 2, 1},  /* stride 2, odd sizes, 5 samples in one chunk */
        /* output planes of whole groups of 16 pixels (64, 144): the products
         * write the output and read d_output in place, sample by sample */
        {5, 3, 8, 8, 4, 3, 1, 1},    /* and the direct forward (padded width 10 for 8) */
        {40, 2, 16, 16, 3, 5, 1, 0}, /* im2col forward, chunks of 36: 36 + 4 */
        /* the direct forward on odd sizes, a product width (out_h * padded
         * width = 17 * 21) with every remainder, several channels */
        {3, 2, 17, 19, 5, 3, 1, 1},
        {2, 1, 6, 5, 3, 2, 1, 1},    /* even kernel: padding 1 on a 2x2 window */
        /* the path vectorised over the filters (16 or 32 filters, stride 1,
         * kernel up to 5): the cnn's second conv at its training batch, odd
         * sizes, every padding, 1 to 7 input channels (blocks of 6 and a
         * rest), output rows wider than one block of 16 accumulators (28 ->
         * 14 + 14, 37 -> 13 + 13 + 11), input rows of more than one vector
         * of 16 columns (37 -> 16 + 16 + 5), odd heights (rows in pairs and
         * a last one) */
        {64, 6, 14, 14, 16, 5, 1, 0},
        {3, 1, 13, 11, 16, 3, 1, 1},
        {1, 3, 7, 7, 32, 3, 1, 2},
        {3, 6, 13, 11, 32, 5, 1, 2},
        {1, 1, 28, 28, 16, 5, 1, 2},
        {2, 3, 20, 37, 16, 3, 1, 1},
        {3, 6, 7, 7, 16, 5, 1, 2},
        {1, 7, 9, 17, 16, 3, 1, 0},
        {2, 2, 6, 5, 16, 1, 1, 0},   /* 1x1 */
        {2, 3, 6, 7, 16, 4, 1, 3},   /* even kernel, padding 3 */
        {2, 1, 5, 6, 32, 2, 1, 1},
        {2, 2, 9, 9, 16, 7, 1, 3},   /* a 7x7 kernel keeps the im2col path */
        /* 5x5 kernels on output rows of 10 (conv_filters.c's sliding kernels,
         * channels in pairs and a single one), odd heights, padding */
        {2, 3, 14, 14, 16, 5, 1, 0},
        {2, 1, 9, 10, 32, 5, 1, 2},
        {1, 5, 11, 12, 16, 5, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(&cases[i], &rng);
    return test_finish("test_conv_reference");
}
