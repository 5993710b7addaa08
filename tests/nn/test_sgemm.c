/* fedkd_sgemm (OpenBLAS) against the plain-loop reference, for every
 * transpose combination, odd sizes, leading dimensions wider than the
 * matrices, and alpha / beta other than 0 and 1. Tolerance: relative 1e-4
 * (CHECK_CLOSE scales by max(1, |a|, |b|)). */
#include <stdlib.h>
#include <string.h>

#include "fedkd/nn/nn.h"
#include "fedkd/core/rng.h"
#include "test_util.h"

static float *random_matrix(fedkd_rng *rng, size_t count)
{
    float *m = malloc(count * sizeof *m);
    for (size_t i = 0; i < count; i++) m[i] = (float)(2.0 * fedkd_rng_uniform(rng) - 1.0);
    return m;
}

static void compare(int trans_a, int trans_b, int m, int n, int k, float alpha, float beta,
                    fedkd_rng *rng)
{
    /* Stored shapes of op(A) (m, k) and op(B) (k, n), with 3 spare columns. */
    int a_rows = trans_a ? k : m, a_cols = trans_a ? m : k;
    int b_rows = trans_b ? n : k, b_cols = trans_b ? k : n;
    int lda = a_cols + 3, ldb = b_cols + 3, ldc = n + 3;
    float *a = random_matrix(rng, (size_t)a_rows * (size_t)lda);
    float *b = random_matrix(rng, (size_t)b_rows * (size_t)ldb);
    float *c_fast = random_matrix(rng, (size_t)m * (size_t)ldc);
    float *c_naive = malloc((size_t)m * (size_t)ldc * sizeof *c_naive);
    memcpy(c_naive, c_fast, (size_t)m * (size_t)ldc * sizeof *c_naive);

    fedkd_sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c_fast, ldc);
    fedkd_sgemm_naive(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c_naive, ldc);

    double worst = 0.0;
    int bad = 0;
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < ldc; j++) {
            double x = (double)c_fast[i * ldc + j], y = (double)c_naive[i * ldc + j];
            double error = fabs(x - y) / fmax(1.0, fmax(fabs(x), fabs(y)));
            if (j >= n && x != y) bad++; /* padding columns must be untouched */
            if (error > worst) worst = error;
        }
    }
    CHECK(worst <= 1e-4 && bad == 0,
          "ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g: worst relative error %g, %d padding "
          "entries changed",
          trans_a, trans_b, m, n, k, (double)alpha, (double)beta, worst, bad);
    free(a);
    free(b);
    free(c_fast);
    free(c_naive);
}

int main(void)
{
    fedkd_rng rng = fedkd_rng_stream(1, FEDKD_RNG_TEST, 0, 0);

    /* A hand-computed product, so that both paths cannot be wrong the same way. */
    const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    const float expected[4] = {19, 22, 43, 50};
    const float expected_tt[4] = {23, 31, 34, 46}; /* A^T B^T */
    float c[4], c_naive[4];
    fedkd_sgemm(0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    fedkd_sgemm_naive(0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c_naive, 2);
    for (int i = 0; i < 4; i++) {
        CHECK_CLOSE(c[i], expected[i], 1e-6, "fast 2x2 product");
        CHECK_CLOSE(c_naive[i], expected[i], 1e-6, "naive 2x2 product");
    }
    fedkd_sgemm(1, 1, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
    fedkd_sgemm_naive(1, 1, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c_naive, 2);
    for (int i = 0; i < 4; i++) {
        CHECK_CLOSE(c[i], expected_tt[i], 1e-6, "fast 2x2 A^T B^T");
        CHECK_CLOSE(c_naive[i], expected_tt[i], 1e-6, "naive 2x2 A^T B^T");
    }

    /* beta == 0 must ignore what C held, even NaN. */
    float c_nan[4] = {NAN, NAN, NAN, NAN}, c_nan_naive[4] = {NAN, NAN, NAN, NAN};
    fedkd_sgemm(0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c_nan, 2);
    fedkd_sgemm_naive(0, 0, 2, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c_nan_naive, 2);
    for (int i = 0; i < 4; i++) {
        CHECK_CLOSE(c_nan[i], expected[i], 1e-6, "fast with beta 0 over NaN");
        CHECK_CLOSE(c_nan_naive[i], expected[i], 1e-6, "naive with beta 0 over NaN");
    }

    const int sizes[][3] = {{1, 1, 1}, {7, 5, 9}, {13, 1, 17}, {1, 11, 3}, {33, 17, 65},
                            {64, 48, 31}, {5, 129, 2}};
    const float alphas[] = {1.0f, 0.7f, -1.3f};
    const float betas[] = {0.0f, 1.0f, -0.35f};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int trans_a = 0; trans_a < 2; trans_a++)
            for (int trans_b = 0; trans_b < 2; trans_b++)
                for (int ab = 0; ab < 3; ab++)
                    compare(trans_a, trans_b, sizes[s][0], sizes[s][1], sizes[s][2], alphas[ab],
                            betas[(ab + s) % 3], &rng);
    return test_finish("test_sgemm");
}
