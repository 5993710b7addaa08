#include <cblas.h>

#include "fedkd/nn/nn.h"

void fedkd_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                 int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c,
                ldc);
}

const char *fedkd_sgemm_core(void)
{
    const char *core = openblas_get_corename();
    return core ? core : "unknown";
}

void fedkd_sgemm_naive(int trans_a, int trans_b, int m, int n, int k, float alpha,
                       const float *a, int lda, const float *b, int ldb, float beta, float *c,
                       int ldc)
{
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            double sum = 0.0;
            for (int p = 0; p < k; p++) {
                float a_ip = trans_a ? a[(size_t)p * (size_t)lda + (size_t)i]
                                     : a[(size_t)i * (size_t)lda + (size_t)p];
                float b_pj = trans_b ? b[(size_t)j * (size_t)ldb + (size_t)p]
                                     : b[(size_t)p * (size_t)ldb + (size_t)j];
                sum += (double)a_ip * (double)b_pj;
            }
            float *c_ij = &c[(size_t)i * (size_t)ldc + (size_t)j];
            /* As in BLAS, beta == 0 means C is not read (it may hold NaN). */
            double old = beta == 0.0f ? 0.0 : (double)beta * (double)*c_ij;
            *c_ij = (float)((double)alpha * sum + old);
        }
    }
}
