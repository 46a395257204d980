/* Row-major SGEMM over BLIS's typed expert API (bli_sgemm_ex).
 *
 * BLIS takes a row stride and a column stride for every operand, so a
 * row-major matrix with leading dimension ld is simply (rs = ld, cs = 1): no
 * transposition trick is needed.  Each call carries its own rntm_t set to
 * exactly n_threads, so concurrent callers with different thread counts do
 * not disturb each other or BLIS's global settings.  Debian's default libblis
 * is the OpenMP build: its threads come from the caller's OpenMP pool, which
 * is also the pool libconure's own loops use.  Never call this from inside an
 * OpenMP parallel region. */
#include <blis.h>

#include "kernels/kernels.h"

/* C[m,n] *= beta, with beta == 0 writing exact zeros (NaN/inf in C ignored,
 * as BLAS does). */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc)
{
    for (int64_t r = 0; r < m; r++) {
        float *row = c + r * ldc;
        if (beta == 0.0f) {
            for (int64_t q = 0; q < n; q++)
                row[q] = 0.0f;
        } else if (beta != 1.0f) {
            for (int64_t q = 0; q < n; q++)
                row[q] *= beta;
        }
    }
}

void cn_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc, int n_threads)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0 || alpha == 0.0f) {
        /* op(A) op(B) is empty or unused: only the beta scaling remains.
         * Done here so BLIS never sees a degenerate operand. */
        scale_c(m, n, beta, c, ldc);
        return;
    }

    rntm_t rntm;
    bli_rntm_init(&rntm);
    bli_rntm_set_num_threads((dim_t)(n_threads >= 1 ? n_threads : 1), &rntm);

    /* BLIS's prototype takes non-const pointers; it does not write A, B,
     * alpha or beta. */
    float al = alpha, be = beta;
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 (dim_t)m, (dim_t)n, (dim_t)k, &al,
                 (float *)a, (inc_t)lda, 1,
                 (float *)b, (inc_t)ldb, 1,
                 &be, c, (inc_t)ldc, 1,
                 NULL, &rntm);
}

const char *cn_blis_arch(void)
{
    return bli_arch_string(bli_arch_query_id());
}
