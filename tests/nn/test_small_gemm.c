/* The conv kernels of src/nn/small_gemm.c against plain loops, on sizes that
 * hit every remainder of their blocking (rows of 6, 32 columns, dots blocks
 * of 6 x 4 or, for a multiple of 4 rows, 4 x 6, 16-float lanes). Each kernel
 * documents the order of its sums, so the plain loops here add in that
 * order and the results must be equal bit for bit (this also catches a
 * build that fuses multiply-adds, which would make the kernel's results
 * depend on the CPU). A second comparison against double-precision sums
 * guards the loops themselves (relative 1e-5). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fedkd/core/rng.h"
#include "nn/small_gemm.h"
#include "test_util.h"

static fedkd_rng rng;

static float *random_floats(size_t count)
{
    float *x = malloc((count + 1) * sizeof *x);
    for (size_t i = 0; i < count; i++) x[i] = (float)(2.0 * fedkd_rng_uniform(&rng) - 1.0);
    return x;
}

static int close_enough(double a, double b) { return fabs(a - b) <= 1e-5 * fmax(1.0, fabs(b)); }

/* with_bias: a bias per row of C; shifted_rows: rows of B at offsets from a
 * table (out of order, overlapping), as the conv's direct path reads them. */
static void check_rows(int m, int n, int k, int a_transposed, int with_bias, int shifted_rows)
{
    size_t lda = (size_t)(a_transposed ? m : k) + 3, ldb = (size_t)n + 5, ldc = (size_t)n + 2;
    size_t a_row = a_transposed ? 1 : lda, a_col = a_transposed ? lda : 1;
    size_t a_rows = (size_t)(a_transposed ? k : m);
    float *a = random_floats(a_rows * lda), *b = random_floats((size_t)k * ldb + 3);
    float *bias = with_bias ? random_floats((size_t)m) : NULL;
    size_t *offsets = malloc(((size_t)k + 1) * sizeof *offsets);
    for (int p = 0; p < k; p++)
        offsets[p] = (size_t)((p * 5 + 3) % k) * ldb + (size_t)(p % 4);
    const size_t *table = shifted_rows ? offsets : NULL;
    float *c = random_floats((size_t)m * ldc); /* stale: must be overwritten */
    float *before = malloc(((size_t)m * ldc + 1) * sizeof *before);
    memcpy(before, c, (size_t)m * ldc * sizeof *c);
    fedkd_small_gemm_rows(m, n, k, a, a_row, a_col, b, ldb, table, bias, c, ldc);
    int exact = 0, close = 0, padding = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            float sum = 0.0f;
            double reference = 0.0;
            for (int p = 0; p < k; p++) {
                float x = a[(size_t)i * a_row + (size_t)p * a_col];
                float y = b[(table ? table[p] : (size_t)p * ldb) + (size_t)j];
                sum += x * y;
                reference += (double)x * (double)y;
            }
            if (bias) {
                sum += bias[i];
                reference += (double)bias[i];
            }
            float got = c[(size_t)i * ldc + (size_t)j];
            exact += memcmp(&got, &sum, sizeof got) != 0;
            close += !close_enough((double)got, reference);
        }
        for (size_t j = (size_t)n; j < ldc; j++)
            padding += memcmp(&c[(size_t)i * ldc + j], &before[(size_t)i * ldc + j], sizeof *c) != 0;
    }
    CHECK(exact == 0, "rows m %d n %d k %d%s%s%s: %d results differ from the in-order sum", m, n,
          k, a_transposed ? " (A transposed)" : "", bias ? " (bias)" : "",
          table ? " (shifted rows)" : "", exact);
    CHECK(close == 0, "rows m %d n %d k %d: %d results differ from the double sum", m, n, k, close);
    CHECK(padding == 0, "rows m %d n %d k %d: wrote %d floats beyond n", m, n, k, padding);
    free(a);
    free(b);
    free(c);
    free(before);
    free(bias);
    free(offsets);
}

/* Element p of row i of A, which is cut in segments of `length` floats
 * `step` apart (length >= k: one plain row). */
static float segmented(const float *a, size_t lda, size_t length, size_t step, int i, int p)
{
    return a[(size_t)i * lda + (size_t)p / length * step + (size_t)p % length];
}

/* segment: 0 for plain rows of A, else the segment length (a multiple of 16
 * dividing k), the segments 2 * segment + 5 floats apart. */
static void check_dots(int m, int n, int k, size_t segment)
{
    size_t length = segment ? segment : (size_t)k + 1, step = segment ? 2 * segment + 5 : 0;
    size_t lda = segment ? (size_t)k / segment * step : (size_t)k + 1;
    size_t ldb = (size_t)k + 7, ldc = (size_t)n + 3;
    float *a = random_floats((size_t)m * lda), *b = random_floats((size_t)n * ldb);
    float *c = random_floats((size_t)m * ldc); /* the kernel adds to this */
    float *start = malloc(((size_t)m * ldc + 1) * sizeof *start);
    memcpy(start, c, (size_t)m * ldc * sizeof *c);
    fedkd_small_gemm_dots(m, n, k, a, lda, length, step, b, ldb, NULL, length, c, ldc);
    int whole = k / 16 * 16, exact = 0, close = 0, padding = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            const float *y = b + (size_t)j * ldb;
            float lanes[16] = {0.0f}, sum = 0.0f;
            double reference = 0.0;
            for (int p = 0; p < whole; p++)
                lanes[p % 16] += segmented(a, lda, length, step, i, p) * y[p];
            for (int l = 0; l < 16; l++) sum += lanes[l];
            for (int p = whole; p < k; p++) sum += segmented(a, lda, length, step, i, p) * y[p];
            for (int p = 0; p < k; p++)
                reference += (double)segmented(a, lda, length, step, i, p) * (double)y[p];
            float expected = start[(size_t)i * ldc + (size_t)j] + sum;
            float got = c[(size_t)i * ldc + (size_t)j];
            exact += memcmp(&got, &expected, sizeof got) != 0;
            close += !close_enough((double)got,
                                   (double)start[(size_t)i * ldc + (size_t)j] + reference);
        }
        for (size_t j = (size_t)n; j < ldc; j++)
            padding += memcmp(&c[(size_t)i * ldc + j], &start[(size_t)i * ldc + j], sizeof *c) != 0;
    }
    CHECK(exact == 0, "dots m %d n %d k %d segment %zu: %d results differ from the lane-order sum",
          m, n, k, segment, exact);
    CHECK(close == 0, "dots m %d n %d k %d: %d results differ from the double sum", m, n, k, close);
    CHECK(padding == 0, "dots m %d n %d k %d: wrote %d floats beyond n", m, n, k, padding);
    free(a);
    free(b);
    free(c);
    free(start);
}

/* Rows of B read from a table of offsets into per-segment images (the conv's
 * direct weight gradient: each sample's padded image read from each tap's
 * offset), A in segments of `segment` floats. */
static void check_dots_shifted(int m, int n, int segments, size_t segment)
{
    int k = segments * (int)segment;
    size_t image = segment + 37; /* floats between the segments of B */
    size_t lda = (size_t)k + 5, ldc = (size_t)n + 1;
    float *a = random_floats((size_t)m * lda), *b = random_floats((size_t)segments * image);
    float *c = random_floats((size_t)m * ldc);
    float *start = malloc(((size_t)m * ldc + 1) * sizeof *start);
    size_t *offsets = malloc((size_t)n * sizeof *offsets);
    for (int q = 0; q < n; q++) offsets[q] = (size_t)((q * 7) % 37);
    memcpy(start, c, (size_t)m * ldc * sizeof *c);
    fedkd_small_gemm_dots(m, n, k, a, lda, segment, segment, b, 0, offsets, image, c, ldc);
    int exact = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float lanes[16] = {0.0f}, sum = 0.0f;
            for (int p = 0; p < k; p++)
                lanes[p % 16] += a[(size_t)i * lda + (size_t)p] *
                                 b[offsets[j] + (size_t)p / segment * image + (size_t)p % segment];
            for (int l = 0; l < 16; l++) sum += lanes[l];
            float expected = start[(size_t)i * ldc + (size_t)j] + sum;
            exact += memcmp(&c[(size_t)i * ldc + (size_t)j], &expected, sizeof expected) != 0;
        }
    CHECK(exact == 0, "dots m %d n %d, %d segments of %zu, shifted B rows: %d results differ", m, n,
          segments, segment, exact);
    free(a);
    free(b);
    free(c);
    free(start);
    free(offsets);
}

static void check_row_sums(int m, int k, size_t segment)
{
    size_t length = segment ? segment : (size_t)k + 2, step = segment ? 2 * segment + 5 : 0;
    size_t lda = segment ? (size_t)k / segment * step : (size_t)k + 2;
    float *a = random_floats((size_t)m * lda), *sums = random_floats((size_t)m);
    float *start = malloc(((size_t)m + 1) * sizeof *start);
    memcpy(start, sums, (size_t)m * sizeof *sums);
    fedkd_small_row_sums(m, k, a, lda, length, step, sums);
    int whole = k / 16 * 16, exact = 0;
    for (int i = 0; i < m; i++) {
        float lanes[16] = {0.0f}, sum = 0.0f;
        for (int p = 0; p < whole; p++) lanes[p % 16] += segmented(a, lda, length, step, i, p);
        for (int l = 0; l < 16; l++) sum += lanes[l];
        for (int p = whole; p < k; p++) sum += segmented(a, lda, length, step, i, p);
        float expected = start[i] + sum;
        exact += memcmp(&sums[i], &expected, sizeof expected) != 0;
    }
    CHECK(exact == 0, "row sums m %d k %d segment %zu: %d sums differ from the lane-order sum", m,
          k, segment, exact);
    free(a);
    free(sums);
    free(start);
}

int main(void)
{
    rng = fedkd_rng_stream(11, FEDKD_RNG_TEST, 0, 0);
    const int ms[] = {1, 5, 6, 7, 16};
    const int ns[] = {1, 15, 16, 17, 31, 32, 33, 48, 97};
    const int ks[] = {0, 1, 15, 16, 17, 150};
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
        for (size_t j = 0; j < sizeof ns / sizeof *ns; j++)
            for (size_t p = 0; p < sizeof ks / sizeof *ks; p++) {
                check_rows(ms[i], ns[j], ks[p], (int)((i + j + p) % 2), (int)((i + p) % 2),
                           ks[p] > 0 && (int)((j + p) % 3) == 0);
                check_dots(ms[i], ns[j] % 40, ks[p] * 5 + 3, 0);
            }
    check_rows(150, 70, 16, 1, 0, 0);    /* the shape of a conv's input gradient */
    check_rows(150, 64, 16, 1, 0, 0);    /* the same per sample of the cnn's second conv */
    check_rows(16, 64, 150, 0, 1, 0);    /* its forward, bias added */
    check_rows(6, 28 * 32, 25, 0, 1, 1); /* the first conv's direct forward */
    check_dots(6, 25, 784 * 3, 0);       /* and of a weight gradient */
    /* weight gradients read from d_output in place: a segment per sample */
    check_dots(16, 150, 64 * 5, 64);
    check_dots(6, 25, 784 * 2, 784);
    check_dots(7, 9, 48 * 3, 48);
    check_dots(5, 3, 16, 16);
    check_dots_shifted(6, 25, 3, 28 * 32); /* the first conv's direct weight gradient */
    check_dots_shifted(7, 9, 5, 80);
    check_dots_shifted(1, 1, 1, 16);
    check_dots_shifted(16, 10, 2, 32); /* 4 x 6 blocks, the last one partial */
    for (size_t i = 0; i < sizeof ms / sizeof *ms; i++) {
        for (size_t p = 0; p < sizeof ks / sizeof *ks; p++) check_row_sums(ms[i], ks[p] * 3 + 1, 0);
        check_row_sums(ms[i], 64 * 3, 64);
        check_row_sums(ms[i], 32 * 5, 32);
    }
    return test_finish("test_small_gemm");
}
