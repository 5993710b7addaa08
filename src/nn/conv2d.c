/* 2-D convolution by im2col and matrix products. Parameters: weights (filters, in_channels,
 * kernel, kernel), then bias (filters). Zero padding on every side; output
 * size floor((in + 2 * padding - kernel) / stride) + 1.
 *
 * A layer with stride 1, filters in groups of 16 and a kernel up to 5 (the
 * cnn's second conv) takes none of the paths below but conv_filters.c,
 * vectorised over the filters without im2col; its forward keeps the order
 * stated here, and so does its input gradient on input rows of 16 columns
 * or more; its weight and bias gradients, and its input gradient on
 * narrower rows (the cnn's second conv), have their own (conv_filters.c).
 * The paths below serve the other layers (the cnn's first conv, 6 filters;
 * strides of 2).
 *
 * The batch is cut into chunks of samples (chunk_samples). Per chunk, im2col
 * unrolls every sample's input side by side into col (in_channels*kernel*kernel,
 * chunk*out_h*out_w), so that the convolution of the whole chunk is one matrix
 * product (filters, chunk*out_h*out_w) = W (filters, in_channels*kernel*kernel) col
 * instead of one small product per sample. The products run on the
 * register-blocked kernels of small_gemm.c, written for these shapes (6 or
 * 16 filters, 25 or 150 patch values), on which BLAS runs far below its peak
 * (bench/README.md, "Engine speed"). The backward pass takes col from
 * the forward pass (layer->saved, see conv2d_saved_floats) or rebuilds it in
 * the scratch for dW, then computes d_col = W^T d_out in the scratch, which
 * col2im adds back onto the input pixels.
 *
 * Every output is (0 + the products of the taps (channel, row, column) in
 * increasing order) + bias, whichever path computes it: the direct forward
 * for few input channels (no im2col), the products written into the output
 * sample by sample, or one product per chunk then reordered. Every input
 * gradient of the paths below is, per input pixel, +0 plus its taps in
 * increasing order. The weight and bias gradients are summed per chunk in
 * 16 lanes, except that a layer with the direct forward may take its weight
 * gradient on the padded image too (conv2d_direct_weight_gradient, which
 * documents its order). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "nn/conv_filters.h"
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

/* The last output row from which a copy of `span` floats stays inside both
 * the col plane and the input channel, + 1 (rows [0, end) may copy `span`);
 * see im2col_unit_stride. */
static int overrun_rows_end(const fedkd_conv2d_geometry *g, int ki, int first, int offset,
                            ptrdiff_t span)
{
    ptrdiff_t plane = (ptrdiff_t)g->out_height * g->out_width;
    ptrdiff_t in_plane = (ptrdiff_t)g->in_height * g->in_width;
    ptrdiff_t write_left = plane - first - span;           /* >= oh * out_w */
    ptrdiff_t read_left = in_plane - first - offset - span; /* >= ih * in_w */
    if (write_left < 0 || read_left < 0) return 0;
    ptrdiff_t by_write = write_left / g->out_width + 1;
    ptrdiff_t by_read = read_left / g->in_width + g->padding - ki + 1; /* oh = ih + padding - ki */
    ptrdiff_t end = by_write < by_read ? by_write : by_read;
    return end < 0 ? 0 : end > g->out_height ? g->out_height : (int)end;
}

/* Where im2col_unit_stride copies for one tap (ki, kj) of every channel and
 * sample. It depends only on the geometry, so it is worked out once per
 * layer call: its integer divisions cost more than the copies themselves
 * when the runs are short (10 floats in the cnn's second conv). */
typedef struct im2col_run {
    int rows_begin, rows_end; /* output rows reading an input row (the others read padding) */
    int first, last;          /* output columns reading an input column */
    int fast_end;             /* rows [rows_begin, fast_end) copy whole blocks of `span` */
    ptrdiff_t span;           /* last - first rounded up to 16 */
} im2col_run;

/* Largest kernel with a plan (a larger one takes the general im2col). */
#define IM2COL_MAX_KERNEL 16

typedef struct im2col_plan {
    im2col_run runs[IM2COL_MAX_KERNEL * IM2COL_MAX_KERNEL]; /* (ki, kj) */
} im2col_plan;

static int im2col_has_plan(const fedkd_conv2d_geometry *g)
{
    return g->stride == 1 && g->kernel <= IM2COL_MAX_KERNEL;
}

/* Fills plan for a geometry with im2col_has_plan. */
static void im2col_plan_make(const fedkd_conv2d_geometry *g, im2col_plan *plan)
{
    int out_h = g->out_height, k = g->kernel, pad = g->padding;
    for (int ki = 0; ki < k; ki++) {
        int rows_begin = pad - ki > 0 ? pad - ki : 0;
        int rows_end = g->in_height + pad - ki < out_h ? g->in_height + pad - ki : out_h;
        if (rows_end < rows_begin) rows_end = rows_begin;
        for (int kj = 0; kj < k; kj++) {
            im2col_run *run = &plan->runs[ki * k + kj];
            valid_columns(g, kj, &run->first, &run->last);
            int count = run->last - run->first;
            run->span = (ptrdiff_t)(count + 15) / 16 * 16;
            int fast_end =
                count > 0 ? overrun_rows_end(g, ki, run->first, kj - pad, run->span) : 0;
            run->rows_begin = rows_begin;
            run->rows_end = rows_end;
            run->fast_end = fast_end > rows_end ? rows_end : fast_end;
        }
    }
}

/* im2col for stride 1, the usual case, where each output row of a col row
 * is one run of the input row. The runs are short (10 floats in the cnn's
 * second conv), so the per-run cost decides: each run is copied in whole
 * blocks of 16 floats, running past its end into floats written again
 * afterwards (the next output rows of the same plane, which are written
 * later, in order), except for the last rows of a plane, where a block
 * would leave the plane or the input channel and the copy is exact. */
FEDKD_NN_CLONES
static void im2col_unit_stride(const fedkd_conv2d_geometry *g, const im2col_plan *plan,
                               const float *input, float *col, size_t ld)
{
    int out_w = g->out_width, k = g->kernel, pad = g->padding;
    size_t plane = (size_t)g->out_height * (size_t)out_w;
    size_t in_plane = (size_t)g->in_height * (size_t)g->in_width;
    for (int c = 0; c < g->in_channels; c++) {
        const float *channel = input + (size_t)c * in_plane;
        for (int ki = 0; ki < k; ki++) {
            for (int kj = 0; kj < k; kj++) {
                const im2col_run *run = &plan->runs[ki * k + kj];
                float *row = col + ((size_t)(c * k + ki) * (size_t)k + (size_t)kj) * ld;
                int first = run->first, last = run->last, count = last - first;
                int rows_begin = run->rows_begin, rows_end = run->rows_end;
                int fast_end = run->fast_end;
                ptrdiff_t span = run->span;
                float *dst = row + (size_t)rows_begin * (size_t)out_w + first;
                const float *src = channel +
                                   (size_t)(rows_begin - pad + ki) * (size_t)g->in_width +
                                   first + (kj - pad);
                int oh = rows_begin;
                /* The per-row work is what costs here: one block per row
                 * when the run fits in 16 floats. */
                if (span == 16) {
                    for (; oh < fast_end; oh++, dst += out_w, src += g->in_width)
                        memcpy(dst, src, 16 * sizeof *dst);
                } else {
                    for (; oh < fast_end; oh++, dst += out_w, src += g->in_width)
                        for (ptrdiff_t b = 0; b < span; b += 16)
                            memcpy(dst + b, src + b, 16 * sizeof *dst);
                }
                for (; oh < rows_end; oh++, dst += out_w, src += g->in_width)
                    for (int i = 0; i < count; i++) dst[i] = src[i];
                if (first > 0 || last < out_w) {
                    for (oh = rows_begin; oh < rows_end; oh++) {
                        float *out_row = row + (size_t)oh * (size_t)out_w;
                        for (int ow = 0; ow < first; ow++) out_row[ow] = 0.0f;
                        for (int ow = last > first ? last : first; ow < out_w; ow++)
                            out_row[ow] = 0.0f;
                    }
                }
                /* rows over the padding, after the copies that ran into them */
                for (size_t i = 0; i < (size_t)rows_begin * (size_t)out_w; i++) row[i] = 0.0f;
                for (size_t i = (size_t)rows_end * (size_t)out_w; i < plane; i++) row[i] = 0.0f;
            }
        }
    }
}

/* input (in_channels, in_h, in_w) -> col (in_channels*k*k, out_h*out_w), the
 * rows of col `ld` floats apart (ld >= out_h*out_w: several samples side by
 * side). plan: from im2col_plan_make if im2col_has_plan. */
static void im2col(const fedkd_conv2d_geometry *g, const im2col_plan *plan, const float *input,
                   float *col, size_t ld)
{
    if (im2col_has_plan(g)) {
        im2col_unit_stride(g, plan, input, col, ld);
        return;
    }
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
                        for (int ow = 0; ow < out_w; ow++) dst[ow] = 0.0f;
                        continue;
                    }
                    const float *src = channel + (size_t)ih * (size_t)g->in_width;
                    for (int ow = 0; ow < first; ow++) dst[ow] = 0.0f;
                    for (int ow = first; ow < last; ow++) dst[ow] = src[ow * stride + offset];
                    for (int ow = last; ow < out_w; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

typedef float conv_vector __attribute__((vector_size(64)));  /* 16 floats */
typedef int32_t conv_mask __attribute__((vector_size(64)));  /* 16 lanes */

/* Widest input row and largest kernel of the gathered col2im below. */
#define GATHER_MAX 16

/* col2im for stride 1 on rows of at most 16 input columns, gathered by
 * input row: each row of d_input is summed in a register over the taps
 * (ki, kj) in increasing order, each tap's run of col loaded so that its
 * lanes line up with the input columns, the lanes outside the run masked to
 * +0, and stored once. That is the order of the scatter in col2im (each
 * input pixel gets its taps in increasing order, from +0), and adding +0
 * leaves every sum's bits as they are: the sums start at +0 and, rounding to
 * nearest, never reach -0 (+0 + -0 = +0, x + -x = +0), the one value +0
 * would change. The scatter (read, add, write back per run) stalls on loads
 * that overlap the stores of the run before. col_begin / col_end and
 * d_input_end bound the buffers; a load or store that would leave them is
 * done lane by lane. */
FEDKD_NN_CLONES
static void col2im_gather(const fedkd_conv2d_geometry *g, const float *col, size_t ld,
                          const float *col_begin, const float *col_end, float *d_input,
                          const float *d_input_end)
{
    int out_w = g->out_width, k = g->kernel, pad = g->padding, in_w = g->in_width;
    size_t in_plane = (size_t)g->in_height * (size_t)in_w;
    const conv_mask lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    conv_mask keep[GATHER_MAX]; /* per kj: the lanes (input columns) its run covers */
    for (int kj = 0; kj < k; kj++) {
        int first, last;
        valid_columns(g, kj, &first, &last);
        int offset = kj - pad; /* input column = ow + offset */
        keep[kj] = (lane >= first + offset) & (lane < last + offset);
    }
    for (int c = 0; c < g->in_channels; c++) {
        for (int y = 0; y < g->in_height; y++) {
            conv_vector sum = {0.0f};
            for (int ki = 0; ki < k; ki++) {
                int oh = y + pad - ki;
                if (oh < 0 || oh >= g->out_height) continue;
                const float *run = col + (size_t)(c * k + ki) * (size_t)k * ld +
                                   (size_t)oh * (size_t)out_w + (size_t)pad;
                for (int kj = 0; kj < k; kj++, run += ld) {
                    /* lane x reads ow = x - offset: start at run - kj */
                    const float *src = run - kj;
                    conv_vector values;
                    if (src >= col_begin && src + 16 <= col_end) {
                        memcpy(&values, src, sizeof values);
                    } else {
                        for (int l = 0; l < 16; l++)
                            values[l] = keep[kj][l] ? src[l] : 0.0f;
                    }
                    sum += (conv_vector)((conv_mask)values & keep[kj]);
                }
            }
            float *dst = d_input + (size_t)c * in_plane + (size_t)y * (size_t)in_w;
            if (dst + 16 <= d_input_end) {
                /* runs past the row into floats written afterwards */
                memcpy(dst, &sum, sizeof sum);
            } else {
                for (int l = 0; l < in_w; l++) dst[l] = sum[l];
            }
        }
    }
}

/* The adjoint of im2col (same `ld`): d_input = 0, then every col entry is
 * added back to the input pixel it was copied from, rows of col in order.
 * col_begin / col_end and d_input_end bound the buffers col and d_input lie
 * in. */
static void col2im(const fedkd_conv2d_geometry *g, const float *col, size_t ld,
                   const float *col_begin, const float *col_end, float *d_input,
                   const float *d_input_end)
{
    if (g->stride == 1 && g->in_width <= GATHER_MAX && g->kernel <= GATHER_MAX) {
        col2im_gather(g, col, ld, col_begin, col_end, d_input, d_input_end);
        return;
    }
    int out_h = g->out_height, out_w = g->out_width, k = g->kernel, stride = g->stride;
    size_t in_count = (size_t)g->in_channels * (size_t)g->in_height * (size_t)g->in_width;
    for (size_t i = 0; i < in_count; i++) d_input[i] = 0.0f;
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
                        float *to = dst + offset;
                        for (int ow = first; ow < last; ow++) to[ow] += src[ow];
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

/* ---- direct forward for few input channels ------------------------------
 * With stride 1, output pixel (oh, ow) reads the zero-padded input at
 * (oh + ki, ow + kj). Computing the outputs on the padded width (ow up to
 * padded_w - 1, the extra columns thrown away), im2col's row (c, ki, kj) is
 * simply the padded image read from offset (c, ki, kj): no copy at all, only
 * a table of row offsets for the product. Worth it when the thrown-away
 * columns are few (the cnn's first layer computes 32 columns for 28) and the
 * taps fit the table; each output is the same sum in the same order as the
 * im2col path, so both give the same bits. */
#define DIRECT_MAX_TAPS 64

static int use_direct_forward(const fedkd_conv2d_geometry *g)
{
    int taps = g->in_channels * g->kernel * g->kernel;
    int padded_w = g->in_width + 2 * g->padding;
    return g->stride == 1 && taps <= DIRECT_MAX_TAPS && 4 * padded_w <= 5 * g->out_width;
}

/* Floats of the padded image, with `kernel` more (the reads of the last
 * row's thrown-away columns go up to kernel - 1 past it), and of the product
 * on the padded width. */
size_t fedkd_conv2d_padded_floats(const fedkd_conv2d_geometry *g)
{
    size_t padded_h = (size_t)g->in_height + 2 * (size_t)g->padding;
    size_t padded_w = (size_t)g->in_width + 2 * (size_t)g->padding;
    return (size_t)g->in_channels * padded_h * padded_w + (size_t)g->kernel;
}

static size_t direct_product_floats(const fedkd_conv2d_geometry *g)
{
    return (size_t)g->filters * (size_t)g->out_height *
           ((size_t)g->in_width + 2 * (size_t)g->padding);
}

/* Where each tap (channel, ki, kj) of an output pixel reads in the padded
 * image, relative to the pixel's top-left corner. */
static void direct_offsets(const fedkd_conv2d_geometry *g, int padded_w, size_t padded_plane,
                           size_t offsets[DIRECT_MAX_TAPS])
{
    int k = g->kernel;
    for (int c = 0; c < g->in_channels; c++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++)
                offsets[(c * k + ki) * k + kj] =
                    (size_t)c * padded_plane + (size_t)ki * (size_t)padded_w + (size_t)kj;
}

void fedkd_conv2d_pad_sample(const fedkd_conv2d_geometry *g, const float *sample, float *image)
{
    size_t in_plane = (size_t)g->in_height * (size_t)g->in_width;
    size_t padded_w = (size_t)g->in_width + 2 * (size_t)g->padding;
    size_t padded_plane = ((size_t)g->in_height + 2 * (size_t)g->padding) * padded_w;
    for (int c = 0; c < g->in_channels; c++)
        for (int y = 0; y < g->in_height; y++) {
            const float *src = sample + (size_t)c * in_plane + (size_t)y * (size_t)g->in_width;
            float *dst = image + (size_t)c * padded_plane +
                         (size_t)(y + g->padding) * padded_w + (size_t)g->padding;
            for (int x = 0; x < g->in_width; x++) dst[x] = src[x];
        }
}

void fedkd_conv2d_zero_border(const fedkd_conv2d_geometry *g, float *image)
{
    size_t pad = (size_t)g->padding, in_w = (size_t)g->in_width;
    size_t padded_w = in_w + 2 * pad;
    size_t padded_plane = ((size_t)g->in_height + 2 * pad) * padded_w;
    for (int c = 0; c < g->in_channels; c++) {
        float *channel = image + (size_t)c * padded_plane;
        size_t bottom = (pad + (size_t)g->in_height) * padded_w;
        memset(channel, 0, pad * padded_w * sizeof *channel);
        memset(channel + bottom, 0, (padded_plane - bottom) * sizeof *channel);
        for (int y = 0; y < g->in_height; y++) {
            float *row = channel + (pad + (size_t)y) * padded_w;
            for (size_t x = 0; x < pad; x++) {
                row[x] = 0.0f;
                row[pad + in_w + x] = 0.0f;
            }
        }
    }
    memset(image + (size_t)g->in_channels * padded_plane, 0, (size_t)g->kernel * sizeof *image);
}

static void conv2d_forward_direct(const fedkd_conv2d_geometry *g, const float *weights,
                                  const float *bias, const float *input, float *output,
                                  int batch, float *scratch)
{
    int padded_h = g->in_height + 2 * g->padding, padded_w = g->in_width + 2 * g->padding;
    size_t padded_plane = (size_t)padded_h * (size_t)padded_w;
    size_t padded_floats = fedkd_conv2d_padded_floats(g);
    size_t plane = (size_t)g->out_height * (size_t)g->out_width;
    size_t in_plane = (size_t)g->in_height * (size_t)g->in_width;
    size_t wide = (size_t)g->out_height * (size_t)padded_w; /* product columns */
    int k = g->kernel, taps = g->in_channels * k * k;
    float *padded = scratch;                 /* (in_channels, padded_h, padded_w) + slack */
    float *product = scratch + padded_floats; /* (filters, out_h, padded_w) */
    size_t offsets[DIRECT_MAX_TAPS];
    direct_offsets(g, padded_w, padded_plane, offsets);
    /* The border and the slack stay 0; only the interior changes per sample. */
    fedkd_conv2d_zero_border(g, padded);
    for (int s = 0; s < batch; s++) {
        fedkd_conv2d_pad_sample(g, input + (size_t)s * (size_t)g->in_channels * in_plane,
                                padded);
        fedkd_small_gemm_rows(g->filters, (int)wide, taps, weights, (size_t)taps, 1, padded, 0,
                              offsets, bias, product, wide);
        float *out = output + (size_t)s * (size_t)g->filters * plane;
        for (int f = 0; f < g->filters; f++)
            for (int oh = 0; oh < g->out_height; oh++) {
                /* memcpy: as a loop GCC assumed src and dst might overlap
                 * and copied one float at a time (a fifth of the layer) */
                memcpy(out + (size_t)f * plane + (size_t)oh * (size_t)g->out_width,
                       product + (size_t)f * wide + (size_t)oh * (size_t)padded_w,
                       (size_t)g->out_width * sizeof *out);
            }
    }
}

/* Whether the products can write the output and read d_output (sample,
 * filters, plane) where they are, one sample at a time: the dot products sum
 * pixels in 16 lanes, and a plane that is a whole number of lane groups puts
 * every pixel in the same lane as the chunk's (filters, chunk * plane) copy
 * would (small_gemm.h, segments); the products then have no columns left
 * over for their one-at-a-time loop. */
static int whole_lane_groups(const fedkd_conv2d_geometry *g)
{
    return (size_t)g->out_height * (size_t)g->out_width % 16 == 0;
}

static void conv2d_forward(const fedkd_layer *layer, const float *params, const float *input,
                           float *output, int batch, float *scratch)
{
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    int patch = g.in_channels * g.kernel * g.kernel;
    size_t plane = (size_t)g.out_height * (size_t)g.out_width;
    size_t in_size = fedkd_shape_size(layer->in_shape);
    size_t out_size = (size_t)g.filters * plane;
    const float *weights = params;                                  /* (filters, patch) */
    const float *bias = params + (size_t)g.filters * (size_t)patch; /* (filters) */
    if (fedkd_conv_filters_applies(&g)) {
        fedkd_conv_filters_forward(&g, weights, bias, input, output, batch, scratch);
        return;
    }
    if (use_direct_forward(&g)) {
        conv2d_forward_direct(&g, weights, bias, input, output, batch, scratch);
        return;
    }
    int chunk = chunk_samples(&g, batch);
    int in_place = whole_lane_groups(&g);
    im2col_plan plan;
    if (im2col_has_plan(&g)) im2col_plan_make(&g, &plan);
    float *product = scratch + (size_t)patch * (size_t)chunk * plane; /* (filters, chunk * plane) */
    for (int first = 0; first < batch; first += chunk) {
        int count = batch - first < chunk ? batch - first : chunk;
        size_t ld = (size_t)count * plane;
        /* (patch, count * plane): kept for the backward pass if there is room */
        float *col = layer->saved ? layer->saved + (size_t)first * (size_t)patch * plane : scratch;
        for (int s = 0; s < count; s++)
            im2col(&g, &plan, input + (size_t)(first + s) * in_size, col + (size_t)s * plane,
                   ld);
        if (in_place) {
            /* Each sample's product lands in its output (filters, plane)
             * with the bias added: no reordering pass. */
            for (int s = 0; s < count; s++)
                fedkd_small_gemm_rows(g.filters, (int)plane, patch, weights, (size_t)patch, 1,
                                      col + (size_t)s * plane, ld, NULL, bias,
                                      output + (size_t)(first + s) * out_size, plane);
            continue;
        }
        /* A plane of other widths would leave each sample a remainder of
         * columns done one at a time: one product for the chunk, then the
         * (filters, sample) -> (sample, filters) reordering. */
        fedkd_small_gemm_rows(g.filters, (int)ld, patch, weights, (size_t)patch, 1, col, ld, NULL,
                              bias, product, ld);
        for (int s = 0; s < count; s++)
            for (int f = 0; f < g.filters; f++)
                memcpy(output + (size_t)(first + s) * out_size + (size_t)f * plane,
                       product + (size_t)f * ld + (size_t)s * plane, plane * sizeof *output);
    }
}


/* The weight gradient of a layer with the direct forward, without im2col:
 * on the padded width, dW(f, tap) is the dot product of the output gradient
 * (zero in the thrown-away columns) with the padded image read from the
 * tap's offset, as the forward reads it. Used when the padded width's plane
 * (out_h * padded_w) is a whole number of 16-pixel lane groups, so that
 * every sample's pixels take the same lanes, and the output plane too (the
 * bias gradient and the input gradient then read d_output in place).
 *
 * Floating-point order of this path: per chunk of direct_chunk_samples
 * samples, each dW entry is summed in 16 lanes over (sample, oh, ow) with
 * ow running over the padded width (lane = (oh * padded_w + ow) mod 16; the
 * thrown-away columns add 0 x input = +-0, which changes no lane sum), the
 * lanes then added in order and the chunk's sum added to dW. (An infinite
 * input value read only by thrown-away columns would make that product
 * NaN.) */
static int use_direct_weight_gradient(const fedkd_conv2d_geometry *g)
{
    size_t wide = direct_product_floats(g) / (size_t)g->filters; /* out_h * padded_w */
    return use_direct_forward(g) && whole_lane_groups(g) && wide % 16 == 0;
}

static int direct_chunk_samples(const fedkd_conv2d_geometry *g, int batch)
{
    size_t sample = fedkd_conv2d_padded_floats(g) + direct_product_floats(g);
    size_t samples = CHUNK_FLOATS / sample;
    if (samples < 1) samples = 1;
    return samples < (size_t)batch ? (int)samples : batch;
}

static void conv2d_direct_weight_gradient(const fedkd_conv2d_geometry *g, const float *input,
                                          const float *d_output, float *d_weights, int batch,
                                          float *scratch)
{
    int padded_h = g->in_height + 2 * g->padding, padded_w = g->in_width + 2 * g->padding;
    size_t padded_plane = (size_t)padded_h * (size_t)padded_w;
    size_t padded_floats = fedkd_conv2d_padded_floats(g);
    size_t plane = (size_t)g->out_height * (size_t)g->out_width;
    size_t in_plane = (size_t)g->in_height * (size_t)g->in_width;
    size_t wide = (size_t)g->out_height * (size_t)padded_w;
    int k = g->kernel, taps = g->in_channels * k * k;
    int chunk = direct_chunk_samples(g, batch);
    float *padded = scratch;                                  /* chunk x padded_floats */
    float *d_wide = scratch + (size_t)chunk * padded_floats; /* (filters, chunk * wide) */
    size_t offsets[DIRECT_MAX_TAPS];
    direct_offsets(g, padded_w, padded_plane, offsets);
    for (int s = 0; s < chunk; s++)
        fedkd_conv2d_zero_border(g, padded + (size_t)s * padded_floats);
    for (int first = 0; first < batch; first += chunk) {
        int count = batch - first < chunk ? batch - first : chunk;
        size_t ld = (size_t)count * wide;
        for (int s = 0; s < count; s++) {
            fedkd_conv2d_pad_sample(g,
                                    input + (size_t)(first + s) * (size_t)g->in_channels * in_plane,
                                    padded + (size_t)s * padded_floats);
            const float *gradient = d_output + (size_t)(first + s) * (size_t)g->filters * plane;
            for (int f = 0; f < g->filters; f++)
                for (int oh = 0; oh < g->out_height; oh++) {
                    const float *src = gradient + (size_t)f * plane + (size_t)oh * (size_t)g->out_width;
                    float *dst = d_wide + (size_t)f * ld + (size_t)s * wide + (size_t)oh * (size_t)padded_w;
                    memcpy(dst, src, (size_t)g->out_width * sizeof *dst);
                    memset(dst + g->out_width, 0,
                           (size_t)(padded_w - g->out_width) * sizeof *dst);
                }
        }
        /* dW (filters, taps) += d_wide (filters, count * wide) . padded rows */
        fedkd_small_gemm_dots(g->filters, taps, (int)ld, d_wide, ld, wide, wide, padded, 0,
                              offsets, padded_floats, d_weights, (size_t)taps);
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
    int in_place = whole_lane_groups(&g);
    const float *weights = params;
    float *d_weights = d_params;                                  /* (filters, patch) */
    float *d_bias = d_params + (size_t)g.filters * (size_t)patch; /* (filters) */
    if (fedkd_conv_filters_applies(&g)) {
        fedkd_conv_filters_backward(&g, weights, input, d_output, d_input, d_weights, d_bias,
                                    batch, scratch);
        return;
    }
    float *d_col = scratch;                          /* (patch, chunk * plane) */
    float *d_out = scratch + (size_t)patch * (size_t)chunk * plane; /* (filters, chunk * plane) */
    int direct = use_direct_weight_gradient(&g);
    im2col_plan plan; /* for the columns built again */
    if (!direct && !layer->saved && im2col_has_plan(&g)) im2col_plan_make(&g, &plan);
    if (direct) conv2d_direct_weight_gradient(&g, input, d_output, d_weights, batch, scratch);
    for (int first = 0; first < batch; first += chunk) {
        int count = batch - first < chunk ? batch - first : chunk;
        size_t ld = (size_t)count * plane;
        /* the forward pass's columns, or built again in the scratch (which
         * d_col then overwrites); none for the direct weight gradient */
        const float *col = d_col;
        if (direct) {
            col = NULL;
        } else if (layer->saved) {
            col = layer->saved + (size_t)first * (size_t)patch * plane;
        } else {
            for (int s = 0; s < count; s++)
                im2col(&g, &plan, input + (size_t)(first + s) * in_size,
                       d_col + (size_t)s * plane, ld);
        }
        /* The chunk's output gradient as rows of (filters, count * plane):
         * d_output itself, one segment per sample, or else a copy. */
        const float *rows = d_output + (size_t)first * out_size;
        size_t lda = plane, segment = plane, segment_step = out_size;
        if (!in_place) {
            for (int s = 0; s < count; s++) {
                const float *src_sample = d_output + (size_t)(first + s) * out_size;
                for (int f = 0; f < g.filters; f++)
                    memcpy(d_out + (size_t)f * ld + (size_t)s * plane,
                           src_sample + (size_t)f * plane, plane * sizeof *d_out);
            }
            rows = d_out;
            lda = segment = ld;
            segment_step = 0;
        }
        fedkd_small_row_sums(g.filters, (int)ld, rows, lda, segment, segment_step, d_bias);
        /* dW (filters, patch) += d_out (filters, ld) col^T */
        if (col)
            fedkd_small_gemm_dots(g.filters, patch, (int)ld, rows, lda, segment, segment_step, col,
                                  ld, NULL, segment, d_weights, (size_t)patch);
        if (d_input) {
            /* d_col (patch, ld) = W^T (patch, filters) d_out, W read
             * transposed: sample by sample from d_output, or from the copy */
            if (in_place) {
                for (int s = 0; s < count; s++)
                    fedkd_small_gemm_rows(patch, (int)plane, g.filters, weights, 1, (size_t)patch,
                                          d_output + (size_t)(first + s) * out_size, plane, NULL,
                                          NULL, d_col + (size_t)s * plane, ld);
            } else {
                fedkd_small_gemm_rows(patch, (int)ld, g.filters, weights, 1, (size_t)patch, d_out,
                                      ld, NULL, NULL, d_col, ld);
            }
            for (int s = 0; s < count; s++)
                col2im(&g, d_col + (size_t)s * plane, ld, d_col, d_col + (size_t)patch * ld,
                       d_input + (size_t)(first + s) * in_size, d_input + (size_t)batch * in_size);
        }
    }
}

static size_t conv2d_scratch_floats(const fedkd_layer *layer, int batch)
{
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    if (fedkd_conv_filters_applies(&g)) return fedkd_conv_filters_scratch_floats(&g);
    size_t chunk = (size_t)chunk_samples(&g, batch);
    size_t plane = (size_t)g.out_height * (size_t)g.out_width;
    size_t patch = (size_t)g.in_channels * (size_t)g.kernel * (size_t)g.kernel;
    size_t floats = chunk * plane * (patch + (whole_lane_groups(&g) ? 0 : (size_t)g.filters));
    if (use_direct_forward(&g)) {
        size_t direct = fedkd_conv2d_padded_floats(&g) + direct_product_floats(&g);
        if (direct > floats) floats = direct;
    }
    if (use_direct_weight_gradient(&g)) {
        size_t direct = (size_t)direct_chunk_samples(&g, batch) *
                        (fedkd_conv2d_padded_floats(&g) + direct_product_floats(&g));
        if (direct > floats) floats = direct;
    }
    return floats;
}

/* The forward pass's columns are kept for the backward pass (one im2col per
 * step instead of two) when the layer builds them (neither the direct
 * forward nor conv_filters.c) and all of max_batch's fit in
 * SAVED_COLUMNS_MAX floats: a training model at batch 64 of a layer like the
 * cnn's second conv with 8 filters would keep 64 x 150 x 100 floats
 * (3.7 MiB); an evaluation model of 1000 samples, or a wide ResNet layer,
 * keeps none rather than holding columns it would not reuse. */
#define SAVED_COLUMNS_MAX ((size_t)1 << 22)

static size_t conv2d_saved_floats(const fedkd_layer *layer, int batch)
{
    fedkd_conv2d_geometry g = fedkd_conv2d_geometry_of(layer);
    if (fedkd_conv_filters_applies(&g) || use_direct_forward(&g)) return 0;
    size_t columns = (size_t)g.in_channels * (size_t)g.kernel * (size_t)g.kernel *
                     (size_t)g.out_height * (size_t)g.out_width * (size_t)batch;
    return columns <= SAVED_COLUMNS_MAX ? columns : 0;
}

const fedkd_layer_kind fedkd_layer_kind_conv2d = {
    .name = "conv2d",
    .configure = conv2d_configure,
    .init_params = conv2d_init_params,
    .forward = conv2d_forward,
    .backward = conv2d_backward,
    .scratch_floats = conv2d_scratch_floats,
    .saved_floats = conv2d_saved_floats,
};
