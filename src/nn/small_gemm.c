/* Register-blocked products on a fixed 16-float vector type. The arithmetic
 * is written lane by lane in C (no fused multiply-add: the build is ISO C,
 * which keeps -ffp-contract=off), so every clone below computes the same
 * floats in the same order; target_clones only picks the widest registers
 * the CPU has. A sum over k is always in increasing k, per lane, and the 16
 * lanes of a dot product are added in lane order. */
#include <string.h>

#include "nn/nn_private.h"
#include "nn/small_gemm.h"

typedef float vector16 __attribute__((vector_size(64)));


static inline void load16(vector16 *v, const float *p) { memcpy(v, p, sizeof *v); }
static inline void store16(float *p, const vector16 *v) { memcpy(p, v, sizeof *v); }

/* Rows of A per block of C and, for the dots, rows of B: 6 x 2 and 6 x 4
 * vectors of accumulators fit the 32 registers of AVX-512. */
#define ROWS_BLOCK 6
#define DOTS_BLOCK 4

/* Where row p of B starts. */
static inline const float *b_row(const float *b, size_t ldb, const size_t *b_row_offsets, int p)
{
    return b + (b_row_offsets ? b_row_offsets[p] : (size_t)p * ldb);
}

/* The value stored for C(i, j): the sum, then the bias if there is one.
 * (By pointer: a 64-byte vector passed by value has a different ABI in the
 * clones without AVX-512.) */
static inline void store_row(float *c, vector16 *sum, const float *bias, int i)
{
    if (bias) *sum += bias[i];
    store16(c, sum);
}

/* One block of up to ROWS rows of C by VECTORS x 16 columns from column j;
 * `rows` == ROWS gets a constant trip count the compiler unrolls. */
#define ROWS_KERNEL(ROWS, VECTORS)                                                                      \
    do {                                                                                          \
        vector16 acc[ROWS][VECTORS];                                                        \
        for (int r = 0; r < ROWS; r++)                                                      \
            for (int v = 0; v < VECTORS; v++) acc[r][v] = (vector16){0.0f};                       \
        if (rows == ROWS) {                                                                 \
            for (int p = 0; p < k; p++) {                                                         \
                const float *b_p = b_row(b, ldb, b_row_offsets, p) + j;                           \
                vector16 x[VECTORS];                                                              \
                for (int v = 0; v < VECTORS; v++) load16(&x[v], b_p + 16 * v);                   \
                for (int r = 0; r < ROWS; r++) {                                            \
                    float s = a_block[(size_t)r * a_row_step + (size_t)p * a_col_step];           \
                    for (int v = 0; v < VECTORS; v++) acc[r][v] += s * x[v];                      \
                }                                                                                 \
            }                                                                                     \
        } else {                                                                                  \
            for (int p = 0; p < k; p++) {                                                         \
                const float *b_p = b_row(b, ldb, b_row_offsets, p) + j;                           \
                vector16 x[VECTORS];                                                              \
                for (int v = 0; v < VECTORS; v++) load16(&x[v], b_p + 16 * v);                   \
                for (int r = 0; r < rows; r++) {                                                  \
                    float s = a_block[(size_t)r * a_row_step + (size_t)p * a_col_step];           \
                    for (int v = 0; v < VECTORS; v++) acc[r][v] += s * x[v];                      \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < rows; r++)                                                            \
            for (int v = 0; v < VECTORS; v++)                                                     \
                store_row(c + (size_t)(i + r) * ldc + (size_t)j + 16 * (size_t)v, &acc[r][v],     \
                          bias, i + r);                                                           \
    } while (0)

/* Blocks of 8 rows when m is a multiple of 8 (16 filters: 8 + 8 instead of
 * 6 + 6 + 4, whose short block runs at a fraction of the rate), else 6. */
#define ROWS_BLOCK_WIDE 8

FEDKD_NN_CLONES
void fedkd_small_gemm_rows(int m, int n, int k, const float *a, size_t a_row_step,
                           size_t a_col_step, const float *b, size_t ldb,
                           const size_t *b_row_offsets, const float *bias, float *c, size_t ldc)
{
    int j = 0;
    if (m % ROWS_BLOCK_WIDE == 0) {
        for (; j + 32 <= n; j += 32) {
            for (int i = 0; i < m; i += ROWS_BLOCK_WIDE) {
                int rows = ROWS_BLOCK_WIDE;
                const float *a_block = a + (size_t)i * a_row_step;
                ROWS_KERNEL(ROWS_BLOCK_WIDE, 2);
            }
        }
    } else {
        for (; j + 32 <= n; j += 32) {
            for (int i = 0; i < m; i += ROWS_BLOCK) {
                int rows = m - i < ROWS_BLOCK ? m - i : ROWS_BLOCK;
                const float *a_block = a + (size_t)i * a_row_step;
                ROWS_KERNEL(ROWS_BLOCK, 2);
            }
        }
    }
    if (j + 16 <= n) {
        for (int i = 0; i < m; i += ROWS_BLOCK) {
            int rows = m - i < ROWS_BLOCK ? m - i : ROWS_BLOCK;
            const float *a_block = a + (size_t)i * a_row_step;
            ROWS_KERNEL(ROWS_BLOCK, 1);
        }
        j += 16;
    }
    /* The last n % 16 columns, one at a time, in the same order. */
    for (; j < n; j++) {
        for (int i = 0; i < m; i++) {
            float sum = 0.0f;
            for (int p = 0; p < k; p++)
                sum += a[(size_t)i * a_row_step + (size_t)p * a_col_step] *
                       b_row(b, ldb, b_row_offsets, p)[j];
            if (bias) sum += bias[i];
            c[(size_t)i * ldc + (size_t)j] = sum;
        }
    }
}

/* One block of ROWS rows of A by COLS rows of B for the dots, from row i
 * and column j of C. A partial block repeats its last row of A or B (the
 * repeats are computed and dropped), so the inner loop has a fixed shape. */
#define DOTS_KERNEL(ROWS, COLS)                                                                   \
    do {                                                                                          \
        int rows = m - i < ROWS ? m - i : ROWS;                                                   \
        int cols = n - j < COLS ? n - j : COLS;                                                   \
        const float *a_rows[ROWS], *b_rows[COLS];                                                 \
        for (int r = 0; r < ROWS; r++)                                                            \
            a_rows[r] = a + (size_t)(i + (r < rows ? r : rows - 1)) * lda;                        \
        for (int q = 0; q < COLS; q++)                                                            \
            b_rows[q] = b_row(b, ldb, b_row_offsets, j + (q < cols ? q : cols - 1));              \
        vector16 sums[ROWS][COLS];                                                                \
        for (int r = 0; r < ROWS; r++)                                                            \
            for (int q = 0; q < COLS; q++) sums[r][q] = (vector16){0.0f};                         \
        for (size_t segment = 0; segment < segments; segment++) {                                 \
            size_t a_start = segment * a_segment_step;                                            \
            size_t b_start = segment * b_segment_step;                                            \
            for (size_t p = 0; p < whole; p += 16) {                                              \
                vector16 x[ROWS], y[COLS];                                                        \
                for (int r = 0; r < ROWS; r++) load16(&x[r], a_rows[r] + a_start + p);           \
                for (int q = 0; q < COLS; q++) load16(&y[q], b_rows[q] + b_start + p);            \
                for (int r = 0; r < ROWS; r++)                                                    \
                    for (int q = 0; q < COLS; q++) sums[r][q] += x[r] * y[q];                     \
            }                                                                                     \
        }                                                                                         \
        for (int r = 0; r < rows; r++) {                                                          \
            for (int q = 0; q < cols; q++) {                                                      \
                float lanes[16];                                                                  \
                store16(lanes, &sums[r][q]);                                                      \
                float sum = 0.0f;                                                                 \
                for (int l = 0; l < 16; l++) sum += lanes[l];                                     \
                /* n % 16 left over: only with one segment */                                    \
                for (size_t p = whole; segments == 1 && p < length; p++)                          \
                    sum += a_rows[r][p] * b_rows[q][p];                                           \
                c[(size_t)(i + r) * ldc + (size_t)(j + q)] += sum;                                \
            }                                                                                     \
        }                                                                                         \
    } while (0)

/* Blocks of 4 x 6 dots when m is a multiple of 4 (16 filters: no repeated
 * rows, where blocks of 6 compute 18 rows for 16), B's rows outside so that
 * each is read once (a conv's columns, the large operand) while A's stay in
 * cache; else 6 x 4. The blocking does not change any sum. */
#define DOTS_ROWS_NARROW 4
#define DOTS_COLS_WIDE 6

FEDKD_NN_CLONES
void fedkd_small_gemm_dots(int m, int n, int k, const float *a, size_t lda,
                           size_t a_segment_length, size_t a_segment_step, const float *b,
                           size_t ldb, const size_t *b_row_offsets, size_t b_segment_step,
                           float *c, size_t ldc)
{
    /* One segment of k (the whole) or k / L segments of L = 16 * q, whose
     * concatenation puts every p in the same lane as a contiguous row. */
    size_t length = a_segment_length >= (size_t)k ? (size_t)k : a_segment_length;
    size_t segments = length > 0 ? (size_t)k / length : 0;
    size_t whole = length / 16 * 16;
    if (m % DOTS_ROWS_NARROW == 0) {
        for (int j = 0; j < n; j += DOTS_COLS_WIDE)
            for (int i = 0; i < m; i += DOTS_ROWS_NARROW)
                DOTS_KERNEL(DOTS_ROWS_NARROW, DOTS_COLS_WIDE);
        return;
    }
    for (int i = 0; i < m; i += ROWS_BLOCK)
        for (int j = 0; j < n; j += DOTS_BLOCK) DOTS_KERNEL(ROWS_BLOCK, DOTS_BLOCK);
}

FEDKD_NN_CLONES
void fedkd_small_row_sums(int m, int k, const float *a, size_t lda, size_t a_segment_length,
                          size_t a_segment_step, float *sums)
{
    size_t length = a_segment_length >= (size_t)k ? (size_t)k : a_segment_length;
    size_t segments = length > 0 ? (size_t)k / length : 0;
    size_t whole = length / 16 * 16;
    for (int i = 0; i < m; i++) {
        const float *row = a + (size_t)i * lda;
        vector16 lanes_sum = {0.0f};
        for (size_t segment = 0; segment < segments; segment++) {
            const float *part = row + segment * a_segment_step;
            for (size_t p = 0; p < whole; p += 16) {
                vector16 x;
                load16(&x, part + p);
                lanes_sum += x;
            }
        }
        float lanes[16];
        store16(lanes, &lanes_sum);
        float sum = 0.0f;
        for (int l = 0; l < 16; l++) sum += lanes[l];
        for (size_t p = whole; segments == 1 && p < length; p++) sum += row[p];
        sums[i] += sum;
    }
}
