/* Max pooling over square windows (no padding, floor mode). The backward pass
 * finds each window's argmax again by comparing the input with the forward
 * output, so no index buffer is stored; ties go to the first position in
 * row-major order, as in the forward scan. When windows do not overlap
 * (stride >= kernel, the usual 2x2 / 2 pooling) it writes every input
 * gradient once, without branches on the data; overlapping windows take the
 * zero-then-add path. The 2x2 windows of stride 2 have their own forward and
 * backward (pool2x2_forward, pool2x2_backward) that give the same bits as
 * the general loops.
 *
 * A relu just before a 2x2 / 2 pool is fused into it (layer->relu_fused, set
 * by the model): the relu's output aliases its input and its forward does
 * nothing, so the pool's input holds the pre-activations. The pool rectifies
 * them in place (the relu's output, for its backward and any reader), a
 * sample ahead of the one it pools, and its backward masks the gradient as
 * the relu's backward would: the first maximum takes it only if the maximum
 * is > 0, every other input +0. That is the relu's
 * backward applied after the pool's (which gives +0 where the relu output
 * is not > 0, the gradient elsewhere), so the bits are those of the two
 * layers apart, NaN and -0 included (the relu turns both into +0 before the
 * pool sees them). */
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

/* Reduces a, b, c, d (the window in row-major order) as the general scan
 * does, in the same order: keep the running maximum unless a later value is
 * strictly greater, so ties keep the first (-0 before +0 stays -0) and a NaN
 * counts only as the first value. (Pairing (a, b) with (c, d) would not do:
 * for 1, 2, NaN, 5 the pair (NaN, 5) keeps NaN and the window would give 2,
 * where the scan gives 5.) */
static inline float max_first(float best, float v) { return v > best ? v : best; }

#if defined(__GNUC__) && !defined(__clang__)
/* Blocks of 16 lanes for the 2x2 / 2 kernels (GCC's vector shuffles). */
#define POOL_BLOCKS 1
typedef float pool_vector __attribute__((vector_size(64)));
typedef int32_t pool_mask __attribute__((vector_size(64)));

/* max_first lane by lane, on the bits: *best = v where v > *best. (By
 * pointer: passing 64-byte vectors by value changes the ABI between the
 * clones.) */
static inline void max_first_lanes(pool_vector *best, const pool_vector *v)
{
    pool_mask greater = *v > *best;
    *best = (pool_vector)(((pool_mask)*v & greater) | ((pool_mask)*best & ~greater));
}
#endif

/* With vector blocks, 16 windows of an output row at once, stored whole in
 * increasing order: what a block writes past its row is written again by the
 * next rows. A block that would read or write past the buffers is done
 * window by window. */
FEDKD_NN_CLONES
static void pool2x2_forward(fedkd_shape in, fedkd_shape out, const float *input, float *output,
                            size_t planes)
{
    size_t in_plane = (size_t)in.height * (size_t)in.width;
    size_t out_plane = (size_t)out.height * (size_t)out.width;
#ifdef POOL_BLOCKS
    size_t in_total = planes * in_plane, out_total = planes * out_plane;
    const pool_mask even = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    const pool_mask odd = even + 1;
#endif
    for (size_t p = 0; p < planes; p++) {
        for (int oh = 0; oh < out.height; oh++) {
            size_t row = p * in_plane + (size_t)(2 * oh) * (size_t)in.width;
            size_t out_row = p * out_plane + (size_t)oh * (size_t)out.width;
            const float *top = input + row, *bottom = top + in.width;
            float *dst = output + out_row;
            int ow = 0;
#ifdef POOL_BLOCKS
            for (; ow < out.width; ow += 16) {
                if (row + (size_t)in.width + 2 * (size_t)ow + 32 > in_total ||
                    out_row + (size_t)ow + 16 > out_total)
                    break;
                pool_vector t0, t1, b0, b1;
                memcpy(&t0, top + 2 * ow, sizeof t0);
                memcpy(&t1, top + 2 * ow + 16, sizeof t1);
                memcpy(&b0, bottom + 2 * ow, sizeof b0);
                memcpy(&b1, bottom + 2 * ow + 16, sizeof b1);
                pool_vector upper = __builtin_shuffle(t0, t1, even);
                pool_vector upper_odd = __builtin_shuffle(t0, t1, odd);
                pool_vector lower = __builtin_shuffle(b0, b1, even);
                pool_vector lower_odd = __builtin_shuffle(b0, b1, odd);
                max_first_lanes(&upper, &upper_odd);
                max_first_lanes(&upper, &lower);
                max_first_lanes(&upper, &lower_odd);
                memcpy(dst + ow, &upper, sizeof upper);
            }
#endif
            for (; ow < out.width; ow++)
                dst[ow] = max_first(max_first(max_first(top[2 * ow], top[2 * ow + 1]),
                                              bottom[2 * ow]),
                                    bottom[2 * ow + 1]);
        }
    }
}

static void maxpool_forward(const fedkd_layer *layer, const float *params, const float *input,
                            float *output, int batch, float *scratch)
{
    fedkd_shape in = layer->in_shape, out = layer->out_shape;
    int k = layer->spec.kernel, stride = pool_stride(layer);
    size_t planes = (size_t)batch * (size_t)in.channels;
    if (k == 2 && stride == 2 && layer->relu_fused) {
        /* input is the relu's output, aliasing its input (the model's
         * activation buffer, writable): rectified in place one sample ahead
         * of the pooling, so that the sample pooled is in L1 and its
         * rectified values have left the store buffer (loads that straddle
         * recent stores stall). */
        float *values = (float *)input;
        size_t in_sample = fedkd_shape_size(in), out_sample = fedkd_shape_size(out);
        fedkd_nn_relu(values, values, in_sample);
        for (int s = 0; s < batch; s++) {
            if (s + 1 < batch) {
                float *next = values + (size_t)(s + 1) * in_sample;
                fedkd_nn_relu(next, next, in_sample);
            }
            pool2x2_forward(in, out, values + (size_t)s * in_sample,
                            output + (size_t)s * out_sample, (size_t)in.channels);
        }
        return;
    }
    if (k == 2 && stride == 2) {
        pool2x2_forward(in, out, input, output, planes);
        return;
    }
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

/* Backward of 2x2 / 2 for the outputs [first, last) of one row pair: the
 * window's first input equal to the maximum takes the gradient, the other
 * three +0, with masks on the bits (no branch on the data). */
static inline void pool2x2_backward_outputs(const float *top, const float *bottom,
                                            float *d_top, float *d_bottom, const float *best,
                                            const float *gradient, int first, int last, int relu)
{
    for (int ow = first; ow < last; ow++) {
        float m = best[ow];
        uint32_t g;
        memcpy(&g, &gradient[ow], sizeof g);
        if (relu) g &= 0u - (uint32_t)(m > 0.0f);
        uint32_t hit_a = 0u - (uint32_t)(top[2 * ow] == m);
        uint32_t hit_b = ~hit_a & (0u - (uint32_t)(top[2 * ow + 1] == m));
        uint32_t hit_c = ~(hit_a | hit_b) & (0u - (uint32_t)(bottom[2 * ow] == m));
        uint32_t hit_d = ~(hit_a | hit_b | hit_c) & (0u - (uint32_t)(bottom[2 * ow + 1] == m));
        uint32_t bits[4] = {g & hit_a, g & hit_b, g & hit_c, g & hit_d};
        memcpy(&d_top[2 * ow], &bits[0], 2 * sizeof *bits);
        memcpy(&d_bottom[2 * ow], &bits[2], 2 * sizeof *bits);
    }
}

/* Backward of 2x2 / 2; a row or column left out of every window (odd sizes)
 * gets 0. With vector blocks: 16 input columns (8 windows) of a row pair at
 * once, the maximum and gradient of each window duplicated onto its two
 * columns, the tie rule from each lane's pair neighbour (the same bits as
 * pool2x2_backward_outputs). The blocks of a row pair are stored whole, in
 * decreasing column order, the top row before the bottom one: what a block
 * writes past its row's windows (into the next row) is written again by a
 * later block or row pair, or zeroed as a left-out column or row. A block
 * that would read or write past the buffers is done window by window. */
FEDKD_NN_CLONES
static void pool2x2_backward(fedkd_shape in, fedkd_shape out, const float *input,
                             const float *output, const float *d_output, float *d_input,
                             size_t planes, int relu)
{
    size_t in_plane = (size_t)in.height * (size_t)in.width;
    size_t out_plane = (size_t)out.height * (size_t)out.width;
#ifdef POOL_BLOCKS
    size_t in_total = planes * in_plane, out_total = planes * out_plane;
    const pool_mask lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const pool_mask duplicate = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};
    const pool_mask neighbour = {1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14};
    const pool_mask odd = (lane & 1) != 0;
#endif
    for (size_t p = 0; p < planes; p++) {
        for (int oh = 0; oh < out.height; oh++) {
            size_t row = p * in_plane + (size_t)(2 * oh) * (size_t)in.width;
            size_t out_row = p * out_plane + (size_t)oh * (size_t)out.width;
            const float *top = input + row, *bottom = top + in.width;
            float *d_top = d_input + row, *d_bottom = d_top + in.width;
            const float *best = output + out_row, *gradient = d_output + out_row;
#ifdef POOL_BLOCKS
            int windows_end = 2 * out.width; /* input columns inside a window */
            for (int x = (windows_end - 1) / 16 * 16; x >= 0; x -= 16) {
                if (row + (size_t)in.width + (size_t)x + 16 > in_total ||
                    out_row + (size_t)(x / 2) + 16 > out_total) {
                    int last = x / 2 + 8 < out.width ? x / 2 + 8 : out.width;
                    pool2x2_backward_outputs(top, bottom, d_top, d_bottom, best, gradient,
                                             x / 2, last, relu);
                    continue;
                }
                pool_vector a, b, m, g;
                memcpy(&a, top + x, sizeof a);
                memcpy(&b, bottom + x, sizeof b);
                memcpy(&m, best + x / 2, sizeof m);
                memcpy(&g, gradient + x / 2, sizeof g);
                m = __builtin_shuffle(m, duplicate);
                pool_mask bits = __builtin_shuffle((pool_mask)g, duplicate);
                if (relu) bits &= m > 0.0f;
                pool_mask inside = lane < windows_end - x;
                pool_mask top_equal = a == m, bottom_equal = b == m;
                pool_mask top_pair = __builtin_shuffle(top_equal, neighbour);
                pool_mask bottom_pair = __builtin_shuffle(bottom_equal, neighbour);
                /* the first maximum: a; b if not a; c if neither; d if none */
                pool_mask top_hit = top_equal & ~(odd & top_pair);
                pool_mask bottom_hit =
                    bottom_equal & ~(top_equal | top_pair) & ~(odd & bottom_pair);
                pool_mask top_bits = bits & top_hit & inside;
                pool_mask bottom_bits = bits & bottom_hit & inside;
                memcpy(d_top + x, &top_bits, sizeof top_bits);
                memcpy(d_bottom + x, &bottom_bits, sizeof bottom_bits);
            }
#else
            pool2x2_backward_outputs(top, bottom, d_top, d_bottom, best, gradient, 0, out.width,
                                     relu);
#endif
            if (in.width > 2 * out.width) {
                d_top[in.width - 1] = 0.0f;
                d_bottom[in.width - 1] = 0.0f;
            }
        }
        if (in.height > 2 * out.height)
            memset(d_input + p * in_plane + (size_t)(in.height - 1) * (size_t)in.width, 0,
                   (size_t)in.width * sizeof *d_input);
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
    if (k == 2 && stride == 2) {
        pool2x2_backward(in, out, input, output, d_output, d_input, planes, layer->relu_fused);
        return;
    }
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
