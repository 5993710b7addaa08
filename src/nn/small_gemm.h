/* Matrix products for the shapes of convolutions (few filters, many output
 * pixels), where BLAS is at a fraction of its peak. Private to the nn layer. */
#ifndef FEDKD_NN_SMALL_GEMM_H
#define FEDKD_NN_SMALL_GEMM_H

#include <stddef.h>

/* C (m, n) = A (m, k) B (k, n), overwriting C. A's element (i, p) is at
 * a[i * a_row_step + p * a_col_step], so A may be stored transposed. Every
 * C element is 0 + A(i, 0) B(0, j) + A(i, 1) B(1, j) + ... in that order. */
void fedkd_small_gemm_rows(int m, int n, int k, const float *a, size_t a_row_step,
                           size_t a_col_step, const float *b, size_t ldb, float *c, size_t ldc);

/* C (m, n) += A (m, k) B (n, k)^T: dot products of rows of A and B, for k
 * much larger than m and n (weight gradients summed over output pixels). */
void fedkd_small_gemm_dots(int m, int n, int k, const float *a, size_t lda, const float *b,
                           size_t ldb, float *c, size_t ldc);

/* sums[i] += a[i][0] + ... + a[i][k - 1] for m rows `lda` floats apart,
 * summed in 16 lanes (lane l takes p = l, l + 16, ...) and the lanes then in
 * order, so that the loop vectorises without reassociating. */
void fedkd_small_row_sums(int m, int k, const float *a, size_t lda, float *sums);

#endif
