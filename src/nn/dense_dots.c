/* A dense layer's forward product, output (batch, out) = input (batch, in)
 * W (out, in)^T + bias, as dot products of the input's rows with the
 * weights' rows, both read where they are. The BLAS packs both operands on
 * every call; at the mlp's shapes (64 x 784 by 200 x 784) the packing costs
 * about a quarter of the product. Each output is summed in the order
 * fedkd_nn_dense_dots describes (nn_private.h), whatever its row in the
 * batch or its unit's place in a tile, so the kernel gives a sample the
 * same outputs in any batch. (Whether the dense layer takes the kernel
 * depends on the shape, the batch's size included: see
 * fedkd_nn_dense_dots_vector.) */
#include <math.h>
#include <string.h>

#include "nn/nn_private.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define DENSE_DOTS_AVX512 1
#endif

#ifdef DENSE_DOTS_AVX512
/* A tile is 4 rows of the batch by 4 units: 16 dot products, each in one
 * vector of 16 lanes. */
enum { TILE = 4 };

/* Where the dense layer takes the kernel: the shapes where it beat
 * OpenBLAS's sgemm (Cooperlake kernels) on this project's machine (AMD Zen
 * 5, one core; fedkd-bench-dense-dots, bench/README.md "Engine speed"). At
 * training batches (up to 128 rows) it took 0.71 - 0.95 of the BLAS's time
 * from 64 inputs on (64 x 784 by 200 x 784: 0.73; 64 x 200 by 200 x 200:
 * 0.93 - 0.95); with many rows only from 384 inputs (1000 rows: 0.90 -
 * 0.96 at 400 and 784 inputs, 1.17 - 1.23 at 120 and 200). With fewer than
 * 32 units the repeated units of the last tile cost what the packing saves
 * (16 x 784 and 10 x 784: 1.06 - 1.07). */
enum {
    DOTS_MIN_UNITS = 32,
    DOTS_MIN_INPUTS = 64,
    DOTS_SMALL_BATCH = 128,
    DOTS_MIN_INPUTS_LARGE = 384, /* past DOTS_SMALL_BATCH rows */
};

/* The 16 vectors' lanes summed into one vector, lane j the sum of v[j]'s
 * lanes: in each block of 4 lanes (l0 + l2) + (l1 + l3), then the blocks
 * (b0 + b1) + (b2 + b3). */
__attribute__((target("avx512f"))) static inline __m512 sum_lanes16(const __m512 v[16])
{
    __m512 pairs[8], quads[4];
    for (int k = 0; k < 8; k++)
        pairs[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]),
                                 _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 4; k++) {
        __m512d a = _mm512_castps_pd(pairs[2 * k]), b = _mm512_castps_pd(pairs[2 * k + 1]);
        quads[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    /* quads[k]: in block g, the sums of block g of v[4k .. 4k + 3] */
    __m512 halves[2];
    for (int k = 0; k < 2; k++)
        halves[k] = _mm512_add_ps(
            _mm512_shuffle_f32x4(quads[2 * k], quads[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
            _mm512_shuffle_f32x4(quads[2 * k], quads[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(
        _mm512_shuffle_f32x4(halves[0], halves[1], _MM_SHUFFLE(2, 0, 2, 0)),
        _mm512_shuffle_f32x4(halves[0], halves[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Where the rows come from: a contiguous input, or a row pointer each (a
 * batch read in place from its data set); copy, if set, gets the rows
 * contiguous. */
typedef struct rows_of {
    const float *input;
    const float *const *rows;
    float *copy;
} rows_of;

static inline const float *row_at(const rows_of *x, int n, int in)
{
    return x->rows ? x->rows[n] : x->input + (size_t)n * (size_t)in;
}

/* One tile from batch row n0 and unit o0; a tile past the last row or unit
 * repeats it (computed, not stored). copy: the rows' floats are stored
 * there as they are loaded (the tiles of unit 0). */
__attribute__((target("avx512f"), always_inline)) static inline void
dots_tile(const rows_of *source, const float *weights, const float *bias, float *output,
          int batch, int out, int in, int n0, int o0, float *copy)
{
    const float *x[TILE], *w[TILE];
    float *c[TILE];
    int rows = batch - n0 < TILE ? batch - n0 : TILE;
    int units = out - o0 < TILE ? out - o0 : TILE;
    for (int r = 0; r < TILE; r++) {
        x[r] = row_at(source, n0 + (r < rows ? r : rows - 1), in);
        w[r] = weights + (size_t)(o0 + (r < units ? r : units - 1)) * (size_t)in;
        c[r] = copy ? copy + (size_t)(n0 + r) * (size_t)in : NULL;
    }
    __m512 acc[TILE * TILE];
    for (int k = 0; k < TILE * TILE; k++) acc[k] = _mm512_setzero_ps();
    int whole = in / 16 * 16;
    for (int i = 0; i < whole; i += 16) {
        __m512 xv[TILE], wv[TILE];
        for (int r = 0; r < TILE; r++) {
            xv[r] = _mm512_loadu_ps(x[r] + i);
            wv[r] = _mm512_loadu_ps(w[r] + i);
        }
        if (copy)
            for (int r = 0; r < rows; r++) _mm512_storeu_ps(c[r] + i, xv[r]);
        for (int r = 0; r < TILE; r++)
            for (int q = 0; q < TILE; q++)
                acc[r * TILE + q] = _mm512_fmadd_ps(xv[r], wv[q], acc[r * TILE + q]);
    }
    if (whole < in) {
        /* the last in % 16 products, the other lanes 0 * 0 */
        __mmask16 mask = (__mmask16)((1u << (in - whole)) - 1u);
        __m512 xv[TILE], wv[TILE];
        for (int r = 0; r < TILE; r++) {
            xv[r] = _mm512_maskz_loadu_ps(mask, x[r] + whole);
            wv[r] = _mm512_maskz_loadu_ps(mask, w[r] + whole);
        }
        if (copy)
            for (int r = 0; r < rows; r++) _mm512_mask_storeu_ps(c[r] + whole, mask, xv[r]);
        for (int r = 0; r < TILE; r++)
            for (int q = 0; q < TILE; q++)
                acc[r * TILE + q] = _mm512_fmadd_ps(xv[r], wv[q], acc[r * TILE + q]);
    }
    __m512 total = sum_lanes16(acc);
    if (rows == TILE && units == TILE) {
        /* block r of total is row n0 + r's 4 units */
        total = _mm512_add_ps(total, _mm512_broadcast_f32x4(_mm_loadu_ps(bias + o0)));
        float *y = output + (size_t)n0 * (size_t)out + (size_t)o0;
        _mm_storeu_ps(y, _mm512_castps512_ps128(total));
        _mm_storeu_ps(y + out, _mm512_extractf32x4_ps(total, 1));
        _mm_storeu_ps(y + 2 * (size_t)out, _mm512_extractf32x4_ps(total, 2));
        _mm_storeu_ps(y + 3 * (size_t)out, _mm512_extractf32x4_ps(total, 3));
        return;
    }
    float sums[TILE * TILE];
    _mm512_storeu_ps(sums, total);
    for (int r = 0; r < rows; r++) {
        float *y = output + (size_t)(n0 + r) * (size_t)out + (size_t)o0;
        for (int q = 0; q < units; q++) y[q] = sums[r * TILE + q] + bias[o0 + q];
    }
}

/* A tile's 4 rows of the input stay in the first-level cache while every
 * unit's weights (up to the second-level cache's size: 200 x 784 floats
 * are 627 KB) pass over them. Rows read in place are scattered over a data
 * set, most of them not in any cache: while one tile's rows pass under the
 * weights, the next tile's are prefetched, a few lines per unit tile. */
__attribute__((target("avx512f"))) static void
dots_avx512(const rows_of *source, const float *weights, const float *bias, float *output,
            int batch, int out, int in)
{
    /* the next rows' lines, spread over the unit tiles after the first */
    int unit_tiles = (out + TILE - 1) / TILE;
    size_t spread = unit_tiles > 1 ? (size_t)unit_tiles - 1 : 1;
    size_t lines = ((size_t)in * sizeof(float) + 63) / 64;
    size_t per_tile = (lines + spread - 1) / spread;
    for (int n0 = 0; n0 < batch; n0 += TILE) {
        const char *next[TILE] = {NULL};
        for (int r = 0; source->rows && r < TILE && n0 + TILE + r < batch; r++)
            next[r] = (const char *)source->rows[n0 + TILE + r];
        dots_tile(source, weights, bias, output, batch, out, in, n0, 0, source->copy);
        for (int o0 = TILE, t = 0; o0 < out; o0 += TILE, t++) {
            size_t end = (size_t)(t + 1) * per_tile < lines ? (size_t)(t + 1) * per_tile : lines;
            for (int r = 0; r < TILE && next[r]; r++)
                for (size_t l = (size_t)t * per_tile; l < end; l++)
                    _mm_prefetch(next[r] + 64 * l, _MM_HINT_T0);
            dots_tile(source, weights, bias, output, batch, out, in, n0, o0, NULL);
        }
    }
}
#endif

/* The same sums one product at a time, lane by lane (no AVX-512, and the
 * tests' reference for the vector kernel's bits). */
static void dots_plain(const float *input, const float *weights, const float *bias, float *output,
                       int batch, int out, int in)
{
    int whole = in / 16 * 16;
    for (int n = 0; n < batch; n++) {
        const float *x = input + (size_t)n * (size_t)in;
        for (int o = 0; o < out; o++) {
            const float *w = weights + (size_t)o * (size_t)in;
            float lanes[16];
            for (int l = 0; l < 16; l++) {
                float acc = 0.0f;
                for (int i = l; i < whole; i += 16) acc = fmaf(x[i], w[i], acc);
                if (whole < in)
                    acc = whole + l < in ? fmaf(x[whole + l], w[whole + l], acc)
                                         : fmaf(0.0f, 0.0f, acc);
                lanes[l] = acc;
            }
            float blocks[4];
            for (int g = 0; g < 4; g++)
                blocks[g] =
                    (lanes[4 * g] + lanes[4 * g + 2]) + (lanes[4 * g + 1] + lanes[4 * g + 3]);
            output[(size_t)n * (size_t)out + (size_t)o] =
                ((blocks[0] + blocks[1]) + (blocks[2] + blocks[3])) + bias[o];
        }
    }
}

int fedkd_nn_dense_dots_avx512(void)
{
#ifdef DENSE_DOTS_AVX512
    return __builtin_cpu_supports("avx512f") != 0;
#else
    return 0;
#endif
}

int fedkd_nn_dense_dots_vector(int batch, int out, int in)
{
#ifdef DENSE_DOTS_AVX512
    return fedkd_nn_dense_dots_avx512() && out >= DOTS_MIN_UNITS && in >= DOTS_MIN_INPUTS &&
           (batch <= DOTS_SMALL_BATCH || in >= DOTS_MIN_INPUTS_LARGE);
#else
    (void)batch;
    (void)out;
    (void)in;
    return 0;
#endif
}

void fedkd_nn_dense_dots(const float *input, const float *weights, const float *bias,
                         float *output, int batch, int out, int in, int plain)
{
#ifdef DENSE_DOTS_AVX512
    if (!plain && fedkd_nn_dense_dots_avx512()) {
        rows_of source = {.input = input};
        dots_avx512(&source, weights, bias, output, batch, out, in);
        return;
    }
#endif
    dots_plain(input, weights, bias, output, batch, out, in);
}

void fedkd_nn_dense_dots_rows(const float *const *rows, float *copy, const float *weights,
                              const float *bias, float *output, int batch, int out, int in)
{
#ifdef DENSE_DOTS_AVX512
    if (fedkd_nn_dense_dots_avx512()) {
        rows_of source = {.rows = rows, .copy = copy};
        dots_avx512(&source, weights, bias, output, batch, out, in);
        return;
    }
#endif
    for (int n = 0; n < batch; n++)
        memcpy(copy + (size_t)n * (size_t)in, rows[n], (size_t)in * sizeof *copy);
    dots_plain(copy, weights, bias, output, batch, out, in);
}
