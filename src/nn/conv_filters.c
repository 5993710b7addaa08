/* Convolution with stride 1 vectorised over the filters, without im2col:
 * 16 filters are one vector, so one output pixel of a group of 16 filters is
 * one register, and a tap is one vector of weights times one input value
 * (the cnn's second conv: 16 filters, 150 taps). im2col would copy every
 * input value k * k times into columns (150 x 6400 floats per batch there)
 * for products of 16 rows, which then run far from the core's peak.
 *
 * The arithmetic is written lane by lane in C on a fixed 16-float vector
 * type, as in small_gemm.c (no fused multiply-add: the build keeps
 * -ffp-contract=off), so every clone computes the same bits; the blocking
 * below changes no sum. Floating-point orders:
 *   - output: 0 + the taps (channel, ki, kj) in increasing order, then +
 *     bias: the order of every conv2d path (conv2d.c).
 *   - weight gradient: per sample, each entry is 0 + the sample's output
 *     pixels in row-major order; these per-sample sums are added to the
 *     entry's value in d_weights in sample order. The bias gradient the same
 *     way, over the output gradient alone.
 *   - input gradient, input rows of 16 columns or more: per input pixel, +0
 *     plus the taps (ki, kj) that read it in increasing order, each tap's
 *     value 0 + its products over the filters in filter order: the order of
 *     every conv2d path.
 *   - input gradient, input rows narrower than 16 columns (the cnn's second
 *     conv, 14), computed in filter lanes: per input pixel and group of 16
 *     filters, each filter's sum 0 + its products over the taps (ki, kj)
 *     that read the pixel in increasing order; the group's 16 sums l_0 ..
 *     l_15 added as a halving tree, a_j = l_j + l_(j+8), b_j = a_j +
 *     a_(j+4), c_j = b_j + b_(j+2), then c_0 + c_1; the groups' sums added
 *     in group order to +0. */
#include <stdint.h>
#include <string.h>

#include "nn/conv_filters.h"

typedef float vector16 __attribute__((vector_size(64)));

static inline void load16(vector16 *v, const float *p) { memcpy(v, p, sizeof *v); }
static inline void store16(float *p, const vector16 *v) { memcpy(p, v, sizeof *v); }

typedef int32_t index16 __attribute__((vector_size(64))); /* lanes for __builtin_shuffle */

/* v[i] = lanes (i, 0 .. 15) of a 16 x 16 block -> v[j] = lanes (0 .. 15,
 * j): four levels that swap the off-diagonal blocks of 8, 4, 2 and 1
 * lanes, 64 two-vector shuffles where a scalar copy moves 256 floats one
 * by one. */
static inline void transpose16(vector16 v[16])
{
    static const index16 low[4] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
        {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
        {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
        {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}};
    static const index16 high[4] = {
        {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31},
        {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31},
        {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31},
        {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}};
    _Pragma("GCC unroll 4")
    for (int level = 0; level < 4; level++) {
        int h = 8 >> level;
        _Pragma("GCC unroll 16")
        for (int i = 0; i < 16; i++) {
            if (i & h) continue;
            vector16 a = v[i], b = v[i + h];
            v[i] = __builtin_shuffle(a, b, low[level]);
            v[i + h] = __builtin_shuffle(a, b, high[level]);
        }
    }
}

/* Filters per vector. */
#define GROUP 16
/* Widest block of output pixels of one row with one accumulator each: 16
 * accumulators, the weights and a product fit the 32 registers of AVX-512.
 * A wider row is cut into blocks of equal widths (17 -> 9 + 8). */
#define ROW_BLOCK 16
/* The weight gradient keeps kernel * kernel accumulators per input channel:
 * 25 for 5x5. A larger kernel takes conv2d.c's other paths. */
#define MAX_KERNEL 5
/* Input channels whose input gradients share each loaded row of the output
 * gradient (6: the cnn's second conv in one block). */
#define CHANNEL_BLOCK 6

int fedkd_conv_filters_applies(const fedkd_conv2d_geometry *g)
{
    return g->stride == 1 && g->filters % GROUP == 0 && g->kernel <= MAX_KERNEL;
}

/* The output gradient of one sample zero padded by kernel - 1 on every side
 * (the input gradient reads it as the forward reads the padded input):
 * spread_rows rows of spread_width floats per filter. Each input row is read
 * in vectors of 16 columns, so a row is wide enough for the last vector of
 * the widest input row (in_w rounded up to 16, + padding + kernel - 1). */
static int spread_rows(const fedkd_conv2d_geometry *g)
{
    return g->out_height + 2 * (g->kernel - 1);
}

static int spread_width(const fedkd_conv2d_geometry *g)
{
    int vectors = (g->in_width + 15) / 16 * 16 + g->padding;
    int padded = g->in_width + 2 * g->padding;
    return (vectors > padded ? vectors : padded) + g->kernel - 1;
}

/* Where the scratch goes. The forward uses packed, image and one group's
 * (out_h * out_w, 16) of tile; the backward all of it. */
typedef struct filters_scratch {
    float *packed;     /* (filters / 16, taps, 16): the weights, or the weight gradient */
    float *by_channel; /* the weights for the input gradient: (k * k, filters, in_channels),
                        * or (filters / 16, taps, 16) in filter lanes */
    float *bias_sums;  /* (filters): the bias gradient */
    float *image;      /* fedkd_conv2d_padded_floats: one sample, zero padded */
    float *tile;       /* (filters / 16, out_h * out_w, 16): one sample's output gradient */
    float *spread;     /* (filters, spread_rows, spread_width) */
} filters_scratch;

static size_t scratch_layout(const fedkd_conv2d_geometry *g, float *base, filters_scratch *s)
{
    size_t weights = (size_t)g->filters * (size_t)g->in_channels * (size_t)g->kernel *
                     (size_t)g->kernel;
    size_t plane = (size_t)g->out_height * (size_t)g->out_width;
    size_t sizes[6] = {weights,
                       weights,
                       (size_t)g->filters,
                       g->padding > 0 ? fedkd_conv2d_padded_floats(g) : 0,
                       (size_t)g->filters * plane,
                       (size_t)g->filters * (size_t)spread_rows(g) * (size_t)spread_width(g)};
    float **parts[6] = {&s->packed, &s->by_channel, &s->bias_sums,
                        &s->image,  &s->tile,       &s->spread};
    size_t offset = 0;
    for (int i = 0; i < 6; i++) {
        *parts[i] = base ? base + offset : NULL;
        offset += sizes[i];
    }
    return offset;
}

size_t fedkd_conv_filters_scratch_floats(const fedkd_conv2d_geometry *g)
{
    filters_scratch s;
    return scratch_layout(g, NULL, &s);
}

/* Sample n's input as the taps read it: in place without padding, else
 * copied into the padded image (whose border is zero). */
static const float *sample_image(const fedkd_conv2d_geometry *g, const float *input, int n,
                                 float *image)
{
    size_t in_size = (size_t)g->in_channels * (size_t)g->in_height * (size_t)g->in_width;
    const float *sample = input + (size_t)n * in_size;
    if (g->padding == 0) return sample;
    fedkd_conv2d_pad_sample(g, sample, image);
    return image;
}

/* The outputs of pixels x0 .. x0 + WIDTH - 1 of output row y for one group
 * of 16 filters (packed: its (taps, 16) weights), as the (WIDTH, 16) rows of
 * tile from x0: taps in increasing order, then the bias. */
#define FORWARD_BLOCK(WIDTH)                                                                      \
    do {                                                                                          \
        vector16 acc[WIDTH];                                                                      \
        for (int b = 0; b < WIDTH; b++) acc[b] = (vector16){0.0f};                                \
        const float *tap = packed;                                                                \
        for (int c = 0; c < g->in_channels; c++)                                                  \
            for (int ki = 0; ki < k; ki++) {                                                      \
                const float *row = image + (size_t)c * padded_plane +                             \
                                   (size_t)(y + ki) * (size_t)padded_w + (size_t)x0;              \
                for (int kj = 0; kj < k; kj++, tap += GROUP) {                                    \
                    vector16 w;                                                                   \
                    load16(&w, tap);                                                              \
                    for (int b = 0; b < WIDTH; b++) acc[b] += w * row[b + kj];                    \
                }                                                                                 \
            }                                                                                     \
        for (int b = 0; b < WIDTH; b++) {                                                         \
            acc[b] += bias_vector;                                                                \
            store16(row_tile + (size_t)(x0 + b) * GROUP, &acc[b]);                                \
        }                                                                                         \
    } while (0)

/* FORWARD_BLOCK for a kernel of K columns: each input value of a kernel row
 * is broadcast once and multiplied by the row's K weight vectors into the
 * accumulators of the pixels that read it (pixel x reads column x + kj), one
 * broadcast per K products instead of one per product; the broadcasts, not
 * the products, bound FORWARD_BLOCK. Each pixel still gets its taps in
 * increasing order: within a kernel row, kj = column - x rises with the
 * column. The column loop is unrolled whole so that acc stays in registers
 * (GCC would not: WIDTH + K - 1 iterations of K products). */
#define FORWARD_SLIDE(K, WIDTH)                                                                   \
    do {                                                                                          \
        vector16 acc[WIDTH];                                                                      \
        for (int b = 0; b < WIDTH; b++) acc[b] = (vector16){0.0f};                                \
        const float *tap = packed;                                                                \
        for (int c = 0; c < g->in_channels; c++)                                                  \
            for (int ki = 0; ki < K; ki++, tap += K * GROUP) {                                    \
                const float *row = image + (size_t)c * padded_plane +                             \
                                   (size_t)(y + ki) * (size_t)padded_w + (size_t)x0;              \
                vector16 w[K];                                                                    \
                for (int kj = 0; kj < K; kj++) load16(&w[kj], tap + kj * GROUP);                  \
                _Pragma("GCC unroll 32")                                                          \
                for (int column = 0; column < WIDTH + K - 1; column++) {                          \
                    float value = row[column];                                                    \
                    _Pragma("GCC unroll 8")                                                       \
                    for (int kj = 0; kj < K; kj++)                                                \
                        if (column - kj >= 0 && column - kj < WIDTH)                              \
                            acc[column - kj] += w[kj] * value;                                    \
                }                                                                                 \
            }                                                                                     \
        for (int b = 0; b < WIDTH; b++) {                                                         \
            acc[b] += bias_vector;                                                                \
            store16(row_tile + (size_t)(x0 + b) * GROUP, &acc[b]);                                \
        }                                                                                         \
    } while (0)

#define FORWARD_CASE(WIDTH)                                                                       \
    case WIDTH:                                                                                   \
        FORWARD_BLOCK(WIDTH);                                                                     \
        break;

FEDKD_NN_CLONES
void fedkd_conv_filters_forward(const fedkd_conv2d_geometry *g, const float *weights,
                                const float *bias, const float *input, float *output, int batch,
                                float *scratch)
{
    int k = g->kernel, taps = g->in_channels * k * k, groups = g->filters / GROUP;
    int out_w = g->out_width, padded_w = g->in_width + 2 * g->padding;
    size_t padded_plane = (size_t)(g->in_height + 2 * g->padding) * (size_t)padded_w;
    size_t plane = (size_t)g->out_height * (size_t)out_w;
    filters_scratch s;
    scratch_layout(g, scratch, &s);
    for (int f = 0; f < g->filters; f++)
        for (int t = 0; t < taps; t++)
            s.packed[((size_t)(f / GROUP) * (size_t)taps + (size_t)t) * GROUP + f % GROUP] =
                weights[(size_t)f * (size_t)taps + (size_t)t];
    if (g->padding > 0) fedkd_conv2d_zero_border(g, s.image);
    int blocks = (out_w + ROW_BLOCK - 1) / ROW_BLOCK;
    int block_width = (out_w + blocks - 1) / blocks;
    for (int n = 0; n < batch; n++) {
        const float *image = sample_image(g, input, n, s.image);
        float *out = output + (size_t)n * (size_t)g->filters * plane;
        for (int group = 0; group < groups; group++) {
            const float *packed = s.packed + (size_t)group * (size_t)taps * GROUP;
            vector16 bias_vector;
            load16(&bias_vector, bias + (size_t)group * GROUP);
            for (int y = 0; y < g->out_height; y++) {
                float *row_tile = s.tile + (size_t)y * (size_t)out_w * GROUP;
                for (int x0 = 0; x0 < out_w; x0 += block_width) {
                    int width = out_w - x0 < block_width ? out_w - x0 : block_width;
                    /* the cnn's second conv: one block of 10 */
                    if (k == 5 && width == 10) {
                        FORWARD_SLIDE(5, 10);
                        continue;
                    }
                    switch (width) {
                        FORWARD_CASE(1) FORWARD_CASE(2) FORWARD_CASE(3) FORWARD_CASE(4)
                        FORWARD_CASE(5) FORWARD_CASE(6) FORWARD_CASE(7) FORWARD_CASE(8)
                        FORWARD_CASE(9) FORWARD_CASE(10) FORWARD_CASE(11) FORWARD_CASE(12)
                        FORWARD_CASE(13) FORWARD_CASE(14) FORWARD_CASE(15) FORWARD_CASE(16)
                    }
                }
            }
            /* the group's (plane, 16) outputs into its 16 planes, 16 pixels
             * at a time */
            for (size_t p0 = 0; p0 < plane; p0 += 16) {
                size_t count = plane - p0 < 16 ? plane - p0 : 16;
                vector16 block[16];
                for (size_t p = 0; p < 16; p++) {
                    block[p] = (vector16){0.0f};
                    if (p < count) load16(&block[p], s.tile + (p0 + p) * GROUP);
                }
                transpose16(block);
                float *dst = out + (size_t)group * GROUP * plane + p0;
                if (count == 16) {
                    for (int f = 0; f < GROUP; f++) store16(dst + (size_t)f * plane, &block[f]);
                    continue;
                }
                for (int f = 0; f < GROUP; f++) {
                    float lanes[16];
                    store16(lanes, &block[f]);
                    memcpy(dst + (size_t)f * plane, lanes, count * sizeof *lanes);
                }
            }
        }
    }
}

/* One sample's weight gradient of input channel c for one group of 16
 * filters (grad: the sample's (out_h * out_w, 16) output gradient of the
 * group; sums: the group's (taps, 16) running sums): K * K accumulators over
 * the pixels in row-major order, then added to sums. */
#define WEIGHT_GRADIENT_CHANNEL(K)                                                                \
    do {                                                                                          \
        vector16 acc[K * K];                                                                      \
        for (int t = 0; t < K * K; t++) acc[t] = (vector16){0.0f};                                \
        const float *pixel_grad = grad;                                                           \
        for (int y = 0; y < g->out_height; y++)                                                   \
            for (int x = 0; x < g->out_width; x++, pixel_grad += GROUP) {                         \
                const float *corner = image + (size_t)c * padded_plane +                          \
                                      (size_t)y * (size_t)padded_w + (size_t)x;                   \
                vector16 d;                                                                       \
                load16(&d, pixel_grad);                                                           \
                for (int ki = 0; ki < K; ki++)                                                    \
                    for (int kj = 0; kj < K; kj++)                                                \
                        acc[ki * K + kj] += d * corner[(size_t)ki * (size_t)padded_w + kj];       \
            }                                                                                     \
        float *channel_sums = sums + (size_t)c * K * K * GROUP;                                   \
        for (int t = 0; t < K * K; t++) {                                                         \
            vector16 sum;                                                                         \
            load16(&sum, channel_sums + (size_t)t * GROUP);                                       \
            sum += acc[t];                                                                        \
            store16(channel_sums + (size_t)t * GROUP, &sum);                                      \
        }                                                                                         \
    } while (0)

/* WEIGHT_GRADIENT_CHANNEL for CHANNELS input channels from c, kernel row
 * ki, a kernel of K columns and output rows of WIDTH pixels: per output row
 * its WIDTH gradient vectors stay in registers, and each input value of the
 * row is broadcast once and multiplied by the K gradients of the pixels
 * that read it. Each weight (c, ki, kj) still sums its pixels in row-major
 * order: within a row, x = column - kj rises with the column. Unrolled as
 * FORWARD_SLIDE. */
#define WEIGHT_GRADIENT_SLIDE(CHANNELS, K, WIDTH)                                                 \
    do {                                                                                          \
        vector16 acc[CHANNELS][K];                                                                \
        for (int i = 0; i < CHANNELS; i++)                                                        \
            for (int kj = 0; kj < K; kj++) acc[i][kj] = (vector16){0.0f};                         \
        for (int y = 0; y < g->out_height; y++) {                                                 \
            vector16 d[WIDTH];                                                                    \
            for (int x = 0; x < WIDTH; x++)                                                       \
                load16(&d[x], grad + ((size_t)y * WIDTH + (size_t)x) * GROUP);                    \
            for (int i = 0; i < CHANNELS; i++) {                                                  \
                const float *row = image + (size_t)(c + i) * padded_plane +                       \
                                   (size_t)(y + ki) * (size_t)padded_w;                           \
                _Pragma("GCC unroll 32")                                                          \
                for (int column = 0; column < WIDTH + K - 1; column++) {                          \
                    float value = row[column];                                                    \
                    _Pragma("GCC unroll 8")                                                       \
                    for (int kj = 0; kj < K; kj++)                                                \
                        if (column - kj >= 0 && column - kj < WIDTH)                              \
                            acc[i][kj] += d[column - kj] * value;                                 \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        for (int i = 0; i < CHANNELS; i++)                                                        \
            for (int kj = 0; kj < K; kj++) {                                                      \
                float *entry = sums + (((size_t)(c + i) * K + (size_t)ki) * K + kj) * GROUP;      \
                vector16 sum;                                                                     \
                load16(&sum, entry);                                                              \
                sum += acc[i][kj];                                                                \
                store16(entry, &sum);                                                             \
            }                                                                                     \
    } while (0)

#define WEIGHT_GRADIENT_CASE(K)                                                                   \
    case K:                                                                                       \
        WEIGHT_GRADIENT_CHANNEL(K);                                                               \
        break;

/* Input rows of 16 columns or more (narrower ones take filter lanes, below).
 * One sample's input gradient of the CHANNELS input channels from c0 for
 * ROWS input rows from iy, each row in vectors of 16 columns from x0: per
 * tap (ki, kj) and filter, one broadcast weight serves the ROWS rows and one
 * loaded row of the spread output gradient serves the CHANNELS channels. A
 * lane reads the output pixel the tap makes from its input pixel, or zero
 * where there is none: a tap sum of zeros is +0, and adding +0 leaves the
 * sum's bits as they are (it starts at +0 and, rounding to nearest, never
 * reaches -0), so those lanes keep the documented order. (An infinite or NaN
 * weight would turn them NaN; a kernel row that reads no output row for any
 * of the ROWS rows is skipped.) The lanes past the input row's end are
 * dropped. */
#define INPUT_GRADIENT_ROWS(CHANNELS, ROWS)                                                       \
    do {                                                                                          \
        /* the kernel rows that read an output row: 0 <= row + pad - ki < out_h */               \
        int ki_begin = iy + pad - g->out_height + 1 > 0 ? iy + pad - g->out_height + 1 : 0;      \
        int ki_end = iy + ROWS + pad < k ? iy + ROWS + pad : k;                                   \
        vector16 acc[ROWS][CHANNELS];                                                             \
        for (int r = 0; r < ROWS; r++)                                                            \
            for (int i = 0; i < CHANNELS; i++) acc[r][i] = (vector16){0.0f};                      \
        for (int ki = ki_begin; ki < ki_end; ki++) {                                              \
            const float *row = s.spread + (size_t)(iy + pad - ki + k - 1) * (size_t)width +       \
                               (size_t)(x0 + pad + k - 1);                                        \
            for (int kj = 0; kj < k; kj++) {                                                      \
                const float *d = row - kj;                                                        \
                const float *w =                                                                  \
                    s.by_channel + (size_t)(ki * k + kj) * (size_t)g->filters * channels + c0;    \
                vector16 tap[ROWS][CHANNELS];                                                     \
                for (int r = 0; r < ROWS; r++)                                                    \
                    for (int i = 0; i < CHANNELS; i++) tap[r][i] = (vector16){0.0f};              \
                for (int f = 0; f < g->filters; f++, d += spread_plane, w += channels) {          \
                    vector16 values[ROWS];                                                        \
                    for (int r = 0; r < ROWS; r++) load16(&values[r], d + (size_t)r * width);     \
                    for (int i = 0; i < CHANNELS; i++)                                            \
                        for (int r = 0; r < ROWS; r++) tap[r][i] += w[i] * values[r];             \
                }                                                                                 \
                for (int r = 0; r < ROWS; r++)                                                    \
                    for (int i = 0; i < CHANNELS; i++) acc[r][i] += tap[r][i];                    \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < ROWS; r++)                                                            \
            for (int i = 0; i < CHANNELS; i++) {                                                  \
                float lanes[16];                                                                  \
                store16(lanes, &acc[r][i]);                                                       \
                memcpy(d_sample + (size_t)(c0 + i) * in_plane +                                   \
                           (size_t)(iy + r) * g->in_width + (size_t)x0,                           \
                       lanes, (size_t)count * sizeof *lanes);                                     \
            }                                                                                     \
    } while (0)

/* The CHANNELS channels from c0, rows in pairs (and a last single row). */
#define INPUT_GRADIENT_BLOCK(CHANNELS)                                                            \
    do {                                                                                          \
        for (int x0 = 0; x0 < g->in_width; x0 += 16) {                                            \
            int count = g->in_width - x0 < 16 ? g->in_width - x0 : 16;                            \
            int iy = 0;                                                                           \
            for (; iy + 2 <= g->in_height; iy += 2) INPUT_GRADIENT_ROWS(CHANNELS, 2);             \
            if (iy < g->in_height) INPUT_GRADIENT_ROWS(CHANNELS, 1);                              \
        }                                                                                         \
    } while (0)

#define INPUT_GRADIENT_CASE(CHANNELS)                                                             \
    case CHANNELS:                                                                                \
        INPUT_GRADIENT_BLOCK(CHANNELS);                                                           \
        break;

/* ---- input gradient in filter lanes (input rows narrower than 16) -------
 * Vectorised over the input columns (above), a row of 14 fills 14 of 16
 * lanes, and every tap is computed for every column, reading zeros where it
 * makes no output pixel: about 60% of the products are useful in the cnn's
 * second conv. Here a lane is a filter instead, as in the forward: per input
 * pixel and channel, one accumulator of 16 filter lanes sums the taps that
 * read it, weights (c, ki, kj) of 16 filters times the output gradient of
 * the pixel the tap makes, then one sum of the 16 lanes gives the pixel's
 * gradient. */

/* One level of lane_sums: a and b each hold pixels in blocks of 2 * H
 * lanes; the result holds a's then b's pixels in blocks of H lanes, lane j
 * of a block the sum of lanes j and j + H of the pixel's block. */
static inline void fold(const vector16 *a, const vector16 *b, const index16 *low,
                        const index16 *high, vector16 *out)
{
    *out = __builtin_shuffle(*a, *b, *low) + __builtin_shuffle(*a, *b, *high);
}

/* Lane p of the result: the sum of the 16 lanes of v[p], as a halving tree
 * (l the lanes): a_j = l_j + l_(j+8), b_j = a_j + a_(j+4), c_j = b_j +
 * b_(j+2), then c_0 + c_1. 15 additions and 30 shuffles for 16 pixels,
 * instead of 15 additions each. */
static inline void lane_sums(const vector16 v[16], vector16 *sums)
{
    const index16 low8 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
    const index16 high8 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
    const index16 low4 = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27};
    const index16 high4 = {4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31};
    const index16 low2 = {0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29};
    const index16 high2 = {2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31};
    const index16 low1 = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    const index16 high1 = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
    vector16 eights[8], fours[4], twos[2];
    for (int i = 0; i < 8; i++) fold(&v[2 * i], &v[2 * i + 1], &low8, &high8, &eights[i]);
    for (int i = 0; i < 4; i++)
        fold(&eights[2 * i], &eights[2 * i + 1], &low4, &high4, &fours[i]);
    for (int i = 0; i < 2; i++) fold(&fours[2 * i], &fours[2 * i + 1], &low2, &high2, &twos[i]);
    fold(&twos[0], &twos[1], &low1, &high1, sums);
}

/* One sample's input gradient of input row iy, channel c, WIDTH (= in_w)
 * columns, in filter lanes: per group of 16 filters, each pixel's
 * accumulator sums its taps (ki, kj) in increasing order, reading the
 * output gradient zero padded (lane_spread); a tap that makes no output
 * pixel reads zeros and adds +-0, which leaves the sum's bits as they are
 * (it starts at +0 and, rounding to nearest, never reaches -0). Kernel rows
 * that read no output row are skipped. The groups' lane sums are added in
 * group order to +0. */
#define LANE_INPUT_GRADIENT_ROW(WIDTH)                                                            \
    do {                                                                                          \
        int ki_begin = iy + pad - g->out_height + 1 > 0 ? iy + pad - g->out_height + 1 : 0;      \
        int ki_end = iy + pad + 1 < k ? iy + pad + 1 : k;                                         \
        vector16 total = {0.0f};                                                                  \
        for (int group = 0; group < groups; group++) {                                            \
            vector16 acc[16];                                                                     \
            for (int x = 0; x < 16; x++) acc[x] = (vector16){0.0f};                               \
            const float *spread = s.spread + (size_t)group * lane_plane;                          \
            const float *w = s.by_channel + ((size_t)group * taps + (size_t)c * window) * GROUP; \
            for (int ki = ki_begin; ki < ki_end; ki++) {                                          \
                const float *row =                                                                \
                    spread + (size_t)(iy + pad - ki + k - 1) * (size_t)lane_width * GROUP;        \
                for (int kj = 0; kj < k; kj++) {                                                  \
                    vector16 weight;                                                              \
                    load16(&weight, w + (size_t)(ki * k + kj) * GROUP);                           \
                    const float *d = row + (size_t)(pad - kj + k - 1) * GROUP;                    \
                    for (int x = 0; x < WIDTH; x++) {                                             \
                        vector16 value;                                                           \
                        load16(&value, d + (size_t)x * GROUP);                                    \
                        acc[x] += weight * value;                                                 \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
            vector16 sums;                                                                        \
            lane_sums(acc, &sums);                                                                \
            total += sums;                                                                        \
        }                                                                                         \
        float lanes[16];                                                                          \
        store16(lanes, &total);                                                                   \
        memcpy(d_sample + (size_t)c * in_plane + (size_t)iy * WIDTH, lanes,                      \
               WIDTH * sizeof *lanes);                                                            \
    } while (0)

#define LANE_INPUT_GRADIENT_CASE(WIDTH)                                                           \
    case WIDTH:                                                                                   \
        for (int c = 0; c < g->in_channels; c++)                                                  \
            for (int iy = 0; iy < g->in_height; iy++) LANE_INPUT_GRADIENT_ROW(WIDTH);             \
        break;

/* LANE_INPUT_GRADIENT_ROW for the cnn's second conv (one group, a 5x5
 * kernel, output rows of 10, input rows of 14, no padding), channel c: only
 * the taps that make an output pixel, read from the output gradient's tile
 * as it is; pixel x = column + kj still gets its taps in increasing order
 * (kernel rows outer, then kj). Unrolled whole, so that the 14 accumulators
 * stay in registers; each product takes its gradient vector straight from
 * memory. (Two channels per loaded vector need 28 accumulators and ran
 * slower: they spill.) */
#define LANE_INPUT_GRADIENT_SLIDE()                                                               \
    do {                                                                                          \
        int ki_begin = iy - 9 > 0 ? iy - 9 : 0, ki_end = iy + 1 < 5 ? iy + 1 : 5;                \
        vector16 acc[16];                                                                         \
        for (int x = 0; x < 16; x++) acc[x] = (vector16){0.0f};                                   \
        for (int ki = ki_begin; ki < ki_end; ki++) {                                              \
            const float *row = s.tile + (size_t)(iy - ki) * 10 * GROUP;                           \
            const float *w = s.by_channel + ((size_t)c * 25 + (size_t)ki * 5) * GROUP;            \
            _Pragma("GCC unroll 8")                                                               \
            for (int kj = 0; kj < 5; kj++) {                                                      \
                vector16 weight;                                                                  \
                load16(&weight, w + (size_t)kj * GROUP);                                          \
                _Pragma("GCC unroll 16")                                                          \
                for (int column = 0; column < 10; column++) {                                     \
                    vector16 value;                                                               \
                    load16(&value, row + (size_t)column * GROUP);                                 \
                    acc[column + kj] += weight * value;                                           \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        vector16 total = {0.0f}, sums;                                                            \
        lane_sums(acc, &sums);                                                                    \
        total += sums;                                                                            \
        float lanes[16];                                                                          \
        store16(lanes, &total);                                                                   \
        memcpy(d_sample + (size_t)c * in_plane + (size_t)iy * 14, lanes, 14 * sizeof *lanes);    \
    } while (0)

/* Whether the input gradient takes filter lanes: rows narrower than one
 * vector of 16 columns. */
static int lane_input_gradient(const fedkd_conv2d_geometry *g) { return g->in_width < 16; }

/* The zero-padded output gradient for filter lanes, in s.spread: per group,
 * (out_h + 2 (k - 1), out_w + 2 (k - 1), 16). */
static int lane_spread_width(const fedkd_conv2d_geometry *g)
{
    return g->out_width + 2 * (g->kernel - 1);
}

FEDKD_NN_CLONES
void fedkd_conv_filters_backward(const fedkd_conv2d_geometry *g, const float *weights,
                                 const float *input, const float *d_output, float *d_input,
                                 float *d_weights, float *d_bias, int batch, float *scratch)
{
    int k = g->kernel, pad = g->padding, groups = g->filters / GROUP;
    size_t channels = (size_t)g->in_channels, window = (size_t)k * (size_t)k;
    size_t taps = channels * window;
    int padded_w = g->in_width + 2 * pad;
    size_t padded_plane = (size_t)(g->in_height + 2 * pad) * (size_t)padded_w;
    size_t plane = (size_t)g->out_height * (size_t)g->out_width;
    size_t in_plane = (size_t)g->in_height * (size_t)g->in_width;
    int width = spread_width(g);
    size_t spread_plane = (size_t)spread_rows(g) * (size_t)width;
    filters_scratch s;
    scratch_layout(g, scratch, &s);
    /* The sums start from d_weights and d_bias (the backward pass adds). */
    for (int f = 0; f < g->filters; f++) {
        for (size_t t = 0; t < taps; t++)
            s.packed[((size_t)(f / GROUP) * taps + t) * GROUP + (size_t)(f % GROUP)] =
                d_weights[(size_t)f * taps + t];
        s.bias_sums[f] = d_bias[f];
    }
    int filter_lanes = lane_input_gradient(g);
    int lane_width = lane_spread_width(g);
    size_t lane_plane = (size_t)spread_rows(g) * (size_t)lane_width * GROUP;
    /* the cnn's second conv: LANE_INPUT_GRADIENT_SLIDE */
    int slide = filter_lanes && groups == 1 && k == 5 && pad == 0 && g->out_width == 10 &&
                g->out_height == 10;
    if (d_input) {
        /* (groups, taps, 16) in filter lanes, else (k * k, filters, channels) */
        for (int f = 0; f < g->filters; f++)
            for (size_t c = 0; c < channels; c++)
                for (size_t t = 0; t < window; t++)
                    s.by_channel[filter_lanes ? ((size_t)(f / GROUP) * taps + c * window + t) * GROUP +
                                             (size_t)(f % GROUP)
                                       : (t * (size_t)g->filters + (size_t)f) * channels + c] =
                        weights[((size_t)f * channels + c) * window + t];
        /* the border stays zero; each sample writes the interior */
        memset(s.spread, 0, (size_t)g->filters * spread_plane * sizeof *s.spread);
    }
    if (pad > 0) fedkd_conv2d_zero_border(g, s.image);
    for (int n = 0; n < batch; n++) {
        const float *image = sample_image(g, input, n, s.image);
        const float *sample_grad = d_output + (size_t)n * (size_t)g->filters * plane;
        /* (filters, plane) -> (groups, plane, 16) */
        for (int f = 0; f < g->filters; f++) {
            float *dst = s.tile + (size_t)(f / GROUP) * plane * GROUP + (size_t)(f % GROUP);
            const float *src = sample_grad + (size_t)f * plane;
            for (size_t p = 0; p < plane; p++) dst[p * GROUP] = src[p];
        }
        for (int group = 0; group < groups; group++) {
            const float *grad = s.tile + (size_t)group * plane * GROUP;
            vector16 bias_sum = {0.0f}, total;
            for (size_t p = 0; p < plane; p++) {
                vector16 d;
                load16(&d, grad + p * GROUP);
                bias_sum += d;
            }
            load16(&total, s.bias_sums + (size_t)group * GROUP);
            total += bias_sum;
            store16(s.bias_sums + (size_t)group * GROUP, &total);
            float *sums = s.packed + (size_t)group * taps * GROUP;
            if (k == 5 && g->out_width == 10) {
                /* the cnn's second conv; channels in pairs: 10 gradients
                 * and 10 accumulators in registers */
                for (int ki = 0; ki < k; ki++) {
                    int c = 0;
                    for (; c + 2 <= g->in_channels; c += 2) WEIGHT_GRADIENT_SLIDE(2, 5, 10);
                    if (c < g->in_channels) WEIGHT_GRADIENT_SLIDE(1, 5, 10);
                }
                continue;
            }
            for (int c = 0; c < g->in_channels; c++) {
                switch (k) {
                    WEIGHT_GRADIENT_CASE(1) WEIGHT_GRADIENT_CASE(2) WEIGHT_GRADIENT_CASE(3)
                    WEIGHT_GRADIENT_CASE(4) WEIGHT_GRADIENT_CASE(5)
                }
            }
        }
        if (!d_input) continue;
        float *d_sample = d_input + (size_t)n * channels * in_plane;
        if (slide) {
            for (int c = 0; c < g->in_channels; c++)
                for (int iy = 0; iy < 14; iy++) LANE_INPUT_GRADIENT_SLIDE();
            continue;
        }
        if (filter_lanes) {
            /* each group's (plane, 16) tile into the interior of its spread */
            for (int group = 0; group < groups; group++)
                for (int oy = 0; oy < g->out_height; oy++)
                    memcpy(s.spread + (size_t)group * lane_plane +
                               ((size_t)(oy + k - 1) * (size_t)lane_width + (size_t)(k - 1)) *
                                   GROUP,
                           s.tile + ((size_t)group * plane + (size_t)oy * (size_t)g->out_width) *
                                        GROUP,
                           (size_t)g->out_width * GROUP * sizeof *s.spread);
            switch (g->in_width) {
                LANE_INPUT_GRADIENT_CASE(1) LANE_INPUT_GRADIENT_CASE(2)
                LANE_INPUT_GRADIENT_CASE(3) LANE_INPUT_GRADIENT_CASE(4)
                LANE_INPUT_GRADIENT_CASE(5) LANE_INPUT_GRADIENT_CASE(6)
                LANE_INPUT_GRADIENT_CASE(7) LANE_INPUT_GRADIENT_CASE(8)
                LANE_INPUT_GRADIENT_CASE(9) LANE_INPUT_GRADIENT_CASE(10)
                LANE_INPUT_GRADIENT_CASE(11) LANE_INPUT_GRADIENT_CASE(12)
                LANE_INPUT_GRADIENT_CASE(13) LANE_INPUT_GRADIENT_CASE(14)
                LANE_INPUT_GRADIENT_CASE(15)
            }
            continue;
        }
        for (int f = 0; f < g->filters; f++)
            for (int oy = 0; oy < g->out_height; oy++)
                memcpy(s.spread + (size_t)f * spread_plane +
                           (size_t)(oy + k - 1) * (size_t)width + (size_t)(k - 1),
                       sample_grad + (size_t)f * plane + (size_t)oy * (size_t)g->out_width,
                       (size_t)g->out_width * sizeof *s.spread);
        for (int c0 = 0; c0 < g->in_channels; c0 += CHANNEL_BLOCK) {
            switch (g->in_channels - c0 < CHANNEL_BLOCK ? g->in_channels - c0 : CHANNEL_BLOCK) {
                INPUT_GRADIENT_CASE(1) INPUT_GRADIENT_CASE(2) INPUT_GRADIENT_CASE(3)
                INPUT_GRADIENT_CASE(4) INPUT_GRADIENT_CASE(5) INPUT_GRADIENT_CASE(6)
            }
        }
    }
    for (int f = 0; f < g->filters; f++) {
        for (size_t t = 0; t < taps; t++)
            d_weights[(size_t)f * taps + t] =
                s.packed[((size_t)(f / GROUP) * taps + t) * GROUP + (size_t)(f % GROUP)];
        d_bias[f] = s.bias_sums[f];
    }
}
