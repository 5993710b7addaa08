/* A dense layer's weight gradient and its SGD step in one pass (see
 * fedkd_nn_dense_weight_sgd in nn_private.h). Each weight's gradient is the
 * sum over the batch of d_output[n][o] * input[n][i], fused multiply-adds
 * in batch order from 0, as OpenBLAS's kernels accumulate it; then the
 * step's arithmetic, operation for operation as sgd_range in optimizer.c
 * (no contraction: the build keeps -ffp-contract=off). The bits are those
 * of the GEMM into zeroed gradients followed by the optimizer's pass. */
#include <math.h>
#include <string.h>

#include "nn/nn_private.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define DENSE_SGD_AVX512 1
#endif

/* One weight: its gradient already summed. */
static inline void step_one(float g, float *weight, float *velocity, const fedkd_dense_sgd *s)
{
    float p = *weight;
    g = g + s->decay * p;
    float v = s->momentum * *velocity + g;
    *velocity = v;
    *weight = p - (s->nesterov ? s->lr * (g + s->momentum * v) : s->lr * v);
}

/* Rows [row0, out) and columns [col0, in) one weight at a time (the AVX-512
 * kernel's tails, and every weight without it). */
FEDKD_NN_CLONES
static void weight_sgd_plain(const float *d_output, const float *input, int batch, int out,
                             int in, int row0, int col0, float *weights, float *velocity,
                             const fedkd_dense_sgd *s, int all_rows)
{
    for (int o = 0; o < out; o++) {
        int first = all_rows || o >= row0 ? 0 : col0;
        for (int i = first; i < in; i++) {
            float g = 0.0f;
            for (int n = 0; n < batch; n++)
                g = fmaf(d_output[(size_t)n * (size_t)out + (size_t)o],
                         input[(size_t)n * (size_t)in + (size_t)i], g);
            size_t at = (size_t)o * (size_t)in + (size_t)i;
            step_one(g, weights + at, velocity + at, s);
        }
    }
}

#ifdef DENSE_SGD_AVX512
enum { TILE_ROWS = 4, TILE_COLS = 64 };

/* acc (16 weights of one row) through the step, as step_one lane by lane. */
__attribute__((target("avx512f"))) static inline void
step_vector(__m512 g, float *weight, float *velocity, const fedkd_dense_sgd *s)
{
    __m512 p = _mm512_loadu_ps(weight);
    g = _mm512_add_ps(g, _mm512_mul_ps(_mm512_set1_ps(s->decay), p));
    __m512 momentum = _mm512_set1_ps(s->momentum);
    __m512 v = _mm512_add_ps(_mm512_mul_ps(momentum, _mm512_loadu_ps(velocity)), g);
    _mm512_storeu_ps(velocity, v);
    __m512 update = s->nesterov ? _mm512_add_ps(g, _mm512_mul_ps(momentum, v)) : v;
    _mm512_storeu_ps(weight, _mm512_sub_ps(p, _mm512_mul_ps(_mm512_set1_ps(s->lr), update)));
}

/* Tiles of 4 rows by up to 64 columns (whole vectors of 16): the inputs'
 * columns stay in the first-level cache while every row tile passes over
 * them; d_output comes packed as [tile][n][4]. */
__attribute__((target("avx512f"))) static void
weight_sgd_avx512(const float *packed, const float *input, int batch, int out, int in,
                  float *weights, float *velocity, const fedkd_dense_sgd *s)
{
    int tiles = out / TILE_ROWS, vectors = in / 16;
    for (int c0 = 0; c0 < vectors; c0 += TILE_COLS / 16) {
        int width = vectors - c0 < TILE_COLS / 16 ? vectors - c0 : TILE_COLS / 16;
        int i0 = c0 * 16;
        for (int t = 0; t < tiles; t++) {
            if (t + 1 < tiles)
                for (int r = 0; r < TILE_ROWS; r++) {
                    size_t next = (size_t)((t + 1) * TILE_ROWS + r) * (size_t)in + (size_t)i0;
                    for (int c = 0; c < width; c++) {
                        _mm_prefetch((const char *)(weights + next + 16 * c), _MM_HINT_T0);
                        _mm_prefetch((const char *)(velocity + next + 16 * c), _MM_HINT_T0);
                    }
                }
            const float *d = packed + (size_t)t * (size_t)batch * TILE_ROWS;
            __m512 acc[TILE_ROWS][TILE_COLS / 16];
            for (int r = 0; r < TILE_ROWS; r++)
                for (int c = 0; c < TILE_COLS / 16; c++) acc[r][c] = _mm512_setzero_ps();
            const float *x = input + i0;
            if (width == TILE_COLS / 16) {
                for (int n = 0; n < batch; n++, x += in, d += TILE_ROWS) {
                    __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16),
                           x2 = _mm512_loadu_ps(x + 32), x3 = _mm512_loadu_ps(x + 48);
                    for (int r = 0; r < TILE_ROWS; r++) {
                        __m512 b = _mm512_set1_ps(d[r]);
                        acc[r][0] = _mm512_fmadd_ps(b, x0, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(b, x1, acc[r][1]);
                        acc[r][2] = _mm512_fmadd_ps(b, x2, acc[r][2]);
                        acc[r][3] = _mm512_fmadd_ps(b, x3, acc[r][3]);
                    }
                }
            } else {
                for (int n = 0; n < batch; n++, x += in, d += TILE_ROWS)
                    for (int c = 0; c < width; c++) {
                        __m512 xc = _mm512_loadu_ps(x + 16 * c);
                        for (int r = 0; r < TILE_ROWS; r++)
                            acc[r][c] = _mm512_fmadd_ps(_mm512_set1_ps(d[r]), xc, acc[r][c]);
                    }
            }
            for (int r = 0; r < TILE_ROWS; r++) {
                size_t row = (size_t)(t * TILE_ROWS + r) * (size_t)in + (size_t)i0;
                for (int c = 0; c < width; c++)
                    step_vector(acc[r][c], weights + row + 16 * c, velocity + row + 16 * c, s);
            }
        }
    }
}
#endif

size_t fedkd_nn_dense_sgd_scratch_floats(int batch, int out) { return (size_t)batch * (size_t)out; }

int fedkd_nn_dense_sgd_vector(int out, int in)
{
#ifdef DENSE_SGD_AVX512
    return __builtin_cpu_supports("avx512f") && out >= TILE_ROWS && in >= 16;
#else
    (void)out;
    (void)in;
    return 0;
#endif
}

void fedkd_nn_dense_weight_sgd(const float *d_output, const float *input, int batch, int out,
                               int in, float *weights, float *velocity,
                               const fedkd_dense_sgd *s, float *scratch)
{
#ifdef DENSE_SGD_AVX512
    if (!s->plain_only && fedkd_nn_dense_sgd_vector(out, in)) {
        int tiles = out / TILE_ROWS;
        for (int t = 0; t < tiles; t++)
            for (int n = 0; n < batch; n++)
                memcpy(scratch + ((size_t)t * (size_t)batch + (size_t)n) * TILE_ROWS,
                       d_output + (size_t)n * (size_t)out + (size_t)t * TILE_ROWS,
                       TILE_ROWS * sizeof *scratch);
        weight_sgd_avx512(scratch, input, batch, out, in, weights, velocity, s);
        /* What the tiles left: the last rows (out % 4), then the last
         * columns (in % 16) of the rows above them. */
        weight_sgd_plain(d_output, input, batch, out, in, tiles * TILE_ROWS, in / 16 * 16,
                         weights, velocity, s, 0);
        return;
    }
#endif
    (void)scratch;
    weight_sgd_plain(d_output, input, batch, out, in, 0, 0, weights, velocity, s, 1);
}
