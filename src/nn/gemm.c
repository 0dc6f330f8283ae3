/* Row-major single-precision GEMM on top of OpenBLAS. */
#include <cblas.h>

#include "renflow/nn.h"

/* C = alpha * op(A) op(B) + beta * C. Empty products are handled here (BLAS rejects lda = 0):
 * M or N == 0 touches nothing, K == 0 leaves C = beta * C. */
void rf_gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (beta == 1.0f) return;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
                C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
