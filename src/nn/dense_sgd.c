/* The weight gradient of a model's first dense layer, alone or with its SGD
 * step in the same pass (see fedkd_nn_dense_weight_grad and
 * fedkd_nn_dense_weight_sgd in nn_private.h). Each weight's gradient is the
 * sum over the batch of d_output[n][o] * input[n][i], fused multiply-adds
 * in batch order from 0, by one kernel whatever the BLAS: so the fused step
 * and the backward pass followed by the optimizer's pass give the same
 * bits, with a gradient hook or without. The step's arithmetic is
 * fedkd_nn_sgd_one's (nn_private.h), which the optimizer's passes call
 * too; the AVX-512 lanes repeat it operation for operation (no
 * contraction: the build keeps -ffp-contract=off). */
#include <math.h>
#include <string.h>

#include "nn/nn_private.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define DENSE_SGD_AVX512 1
#endif

/* One weight: its gradient already summed; the weight read from source
 * and written to weight (the same place, or a global model's weight and the
 * client's). A fresh step writes the velocity without reading it. */
static inline void step_one(float g, const float *source, float *weight, float *velocity,
                            const fedkd_dense_sgd *s)
{
    *weight = fedkd_nn_sgd_one(g, *source, velocity, s->lr, s->momentum, s->decay, s->nesterov,
                               s->fresh);
}

/* Where a weight's summed gradient goes: SGD's step of the weight (s set),
 * or added to its gradient in grads (s NULL), as the GEMM with beta 1 adds
 * it. */
typedef struct finish {
    const float *source;
    float *weights, *velocity, *grads;
    const fedkd_dense_sgd *s;
} finish;

/* Rows [row0, out) and columns [col0, in) one weight at a time (the AVX-512
 * kernel's tails, and every weight without it). */
FEDKD_NN_CLONES
static void weight_plain(const float *d_output, const float *input, int batch, int out, int in,
                         int row0, int col0, const finish *f, int all_rows)
{
    for (int o = 0; o < out; o++) {
        int first = all_rows || o >= row0 ? 0 : col0;
        for (int i = first; i < in; i++) {
            float g = 0.0f;
            for (int n = 0; n < batch; n++)
                g = fmaf(d_output[(size_t)n * (size_t)out + (size_t)o],
                         input[(size_t)n * (size_t)in + (size_t)i], g);
            size_t at = (size_t)o * (size_t)in + (size_t)i;
            if (f->s)
                step_one(g, f->source + at, f->weights + at, f->velocity + at, f->s);
            else
                f->grads[at] = f->grads[at] + g;
        }
    }
}

#ifdef DENSE_SGD_AVX512
enum { TILE_ROWS = 4, TILE_COLS = 64 };

/* acc (16 weights of one row) through the step, as fedkd_nn_sgd_one lane by
 * lane. */
__attribute__((target("avx512f"))) static inline void
step_vector(__m512 g, const float *source, float *weight, float *velocity,
            const fedkd_dense_sgd *s)
{
    __m512 p = _mm512_loadu_ps(source);
    g = _mm512_add_ps(g, _mm512_mul_ps(_mm512_set1_ps(s->decay), p));
    __m512 momentum = _mm512_set1_ps(s->momentum);
    __m512 v = _mm512_add_ps(s->fresh ? _mm512_setzero_ps()
                                      : _mm512_mul_ps(momentum, _mm512_loadu_ps(velocity)),
                             g);
    _mm512_storeu_ps(velocity, v);
    __m512 update = s->nesterov ? _mm512_add_ps(g, _mm512_mul_ps(momentum, v)) : v;
    _mm512_storeu_ps(weight, _mm512_sub_ps(p, _mm512_mul_ps(_mm512_set1_ps(s->lr), update)));
}

/* Tiles of 4 rows by up to 64 columns (whole vectors of 16): the inputs'
 * columns stay in the first-level cache while every row tile passes over
 * them; d_output comes packed as [tile][n][4]. */
__attribute__((target("avx512f"))) static void
weight_avx512(const float *packed, const float *input, int batch, int out, int in,
              const finish *f)
{
    /* the rows the tiles update, prefetched a tile ahead */
    const float *ahead[2] = {f->s ? f->source : f->grads,
                             f->s && !f->s->fresh ? f->velocity : NULL};
    int tiles = out / TILE_ROWS, vectors = in / 16;
    for (int c0 = 0; c0 < vectors; c0 += TILE_COLS / 16) {
        int width = vectors - c0 < TILE_COLS / 16 ? vectors - c0 : TILE_COLS / 16;
        int i0 = c0 * 16;
        for (int t = 0; t < tiles; t++) {
            if (t + 1 < tiles)
                for (int r = 0; r < TILE_ROWS; r++) {
                    size_t next = (size_t)((t + 1) * TILE_ROWS + r) * (size_t)in + (size_t)i0;
                    for (int c = 0; c < width; c++) {
                        _mm_prefetch((const char *)(ahead[0] + next + 16 * c), _MM_HINT_T0);
                        if (ahead[1])
                            _mm_prefetch((const char *)(ahead[1] + next + 16 * c), _MM_HINT_T0);
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
                for (int c = 0; c < width; c++) {
                    size_t at = row + 16 * (size_t)c;
                    if (f->s)
                        step_vector(acc[r][c], f->source + at, f->weights + at,
                                    f->velocity + at, f->s);
                    else
                        _mm512_storeu_ps(f->grads + at,
                                         _mm512_add_ps(_mm512_loadu_ps(f->grads + at), acc[r][c]));
                }
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

/* Either finish, through the vector kernel where it runs (unless plain). */
static void weight_pass(const float *d_output, const float *input, int batch, int out, int in,
                        const finish *f, int plain, float *scratch)
{
#ifdef DENSE_SGD_AVX512
    if (!plain && fedkd_nn_dense_sgd_vector(out, in)) {
        int tiles = out / TILE_ROWS;
        for (int t = 0; t < tiles; t++)
            for (int n = 0; n < batch; n++)
                memcpy(scratch + ((size_t)t * (size_t)batch + (size_t)n) * TILE_ROWS,
                       d_output + (size_t)n * (size_t)out + (size_t)t * TILE_ROWS,
                       TILE_ROWS * sizeof *scratch);
        weight_avx512(scratch, input, batch, out, in, f);
        /* What the tiles left: the last rows (out % 4), then the last
         * columns (in % 16) of the rows above them. */
        weight_plain(d_output, input, batch, out, in, tiles * TILE_ROWS, in / 16 * 16, f, 0);
        return;
    }
#endif
    (void)scratch;
    weight_plain(d_output, input, batch, out, in, 0, 0, f, 1);
}

void fedkd_nn_dense_weight_sgd(const float *d_output, const float *input, int batch, int out,
                               int in, const float *source, float *weights, float *velocity,
                               const fedkd_dense_sgd *s, float *scratch)
{
    finish f = {.source = source, .weights = weights, .velocity = velocity, .s = s};
    weight_pass(d_output, input, batch, out, in, &f, s->plain_only, scratch);
}

void fedkd_nn_dense_weight_grad(const float *d_output, const float *input, int batch, int out,
                                int in, float *d_weights, int plain, float *scratch)
{
    finish f = {.grads = d_weights};
    weight_pass(d_output, input, batch, out, in, &f, plain, scratch);
}

int fedkd_nn_dense_own_grad(int out, int in)
{
    return fedkd_nn_dense_sgd_mode == FEDKD_DENSE_SGD_PLAIN ||
           (fedkd_nn_dense_sgd_mode == FEDKD_DENSE_SGD_AUTO && fedkd_nn_dense_sgd_vector(out, in));
}
