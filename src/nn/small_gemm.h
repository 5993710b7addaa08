/* Matrix products for the shapes of convolutions (few filters, many output
 * pixels), where BLAS is at a fraction of its peak. Private to the nn layer. */
#ifndef FEDKD_NN_SMALL_GEMM_H
#define FEDKD_NN_SMALL_GEMM_H

#include <stddef.h>

/* C (m, n) = A (m, k) B (k, n) (+ bias), overwriting C. A's element (i, p)
 * is at a[i * a_row_step + p * a_col_step], so A may be stored transposed.
 * Row p of B starts at b + b_row_offsets[p], or b + p * ldb if
 * b_row_offsets is NULL (rows at any offsets: shifted views of one image).
 * Every C element is 0 + A(i, 0) B(0, j) + A(i, 1) B(1, j) + ... in that
 * order, then + bias[i] if bias is not NULL. */
void fedkd_small_gemm_rows(int m, int n, int k, const float *a, size_t a_row_step,
                           size_t a_col_step, const float *b, size_t ldb,
                           const size_t *b_row_offsets, const float *bias, float *c, size_t ldc);

/* Rows of A may be cut in segments: element p of row i is at
 * a[i * lda + (p / L) * a_segment_step + p % L] with L = a_segment_length
 * (a conv's output gradient, one segment per sample). Either L >= k (one
 * segment, a plain row) or L is a multiple of 16 dividing k, so that every p
 * falls in the same lane as in a contiguous row and the sums below do not
 * depend on the segmenting. */

/* C (m, n) += A (m, k) B (n, k)^T: dot products of rows of A and B, for k
 * much larger than m and n (weight gradients summed over output pixels).
 * Each dot product is summed in 16 lanes (lane l takes p = l, l + 16, ...
 * below k / 16 * 16), the lanes added in order, then the last k % 16
 * products in order. Row q of B starts at b + b_row_offsets[q] (or
 * b + q * ldb if b_row_offsets is NULL) and is cut in the same segments as
 * A's rows, b_segment_step floats apart. */
void fedkd_small_gemm_dots(int m, int n, int k, const float *a, size_t lda,
                           size_t a_segment_length, size_t a_segment_step, const float *b,
                           size_t ldb, const size_t *b_row_offsets, size_t b_segment_step,
                           float *c, size_t ldc);

/* sums[i] += a[i][0] + ... + a[i][k - 1] for m rows `lda` floats apart
 * (segmented as above), summed in 16 lanes (lane l takes p = l, l + 16, ...)
 * and the lanes then in order, so that the loop vectorises without
 * reassociating. */
void fedkd_small_row_sums(int m, int k, const float *a, size_t lda, size_t a_segment_length,
                          size_t a_segment_step, float *sums);

#endif
