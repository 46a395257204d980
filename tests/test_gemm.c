/* Check suite 'gemm': cn_sgemm (row-major SGEMM over BLIS) against a naive
 * double-precision loop, for all four transpose combinations, non-square
 * shapes, leading dimensions larger than the minimum, several alpha/beta
 * pairs and 1 or 2 threads.  The padding between a row's last column and its
 * leading dimension is filled with a sentinel and must come back untouched. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

#define TOL 1e-5
#define SENTINEL 12345.0f

/* A stored matrix of `rows` x `cols` with row stride ld >= cols. */
typedef struct mat {
    int64_t rows, cols, ld;
    float *v;
} mat;

static mat mat_new(int64_t rows, int64_t cols, int64_t pad, uint64_t seed)
{
    mat m = {rows, cols, cols + pad, NULL};
    size_t n = (size_t)(rows * m.ld);
    m.v = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(m.v);
    for (size_t i = 0; i < n; i++)
        m.v[i] = SENTINEL;
    for (int64_t r = 0; r < rows; r++)
        tu_fill_uniform(m.v + r * m.ld, (size_t)cols, seed * 1000 + (uint64_t)r, 1.0f);
    return m;
}

/* op(X)[r, c] */
static double opx(const mat *x, int trans, int64_t r, int64_t c)
{
    return (double)(trans ? x->v[c * x->ld + r] : x->v[r * x->ld + c]);
}

static void check_case(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                       float beta, int64_t pad, int nt, int nan_c)
{
    mat a = ta ? mat_new(k, m, pad, 1) : mat_new(m, k, pad, 1);
    mat b = tb ? mat_new(n, k, pad + 1, 2) : mat_new(k, n, pad + 1, 2);
    mat c = mat_new(m, n, pad + 2, 3);
    if (nan_c)
        for (int64_t r = 0; r < m; r++)
            for (int64_t q = 0; q < n; q++)
                c.v[r * c.ld + q] = NAN; /* beta == 0 must ignore C */

    size_t nc = (size_t)(m * n);
    float *want = malloc((nc ? nc : 1) * sizeof(float));
    float *got = malloc((nc ? nc : 1) * sizeof(float));
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(got);
    for (int64_t r = 0; r < m; r++)
        for (int64_t q = 0; q < n; q++) {
            double sum = 0;
            for (int64_t p = 0; p < k; p++)
                sum += opx(&a, ta, r, p) * opx(&b, tb, p, q);
            double old = beta == 0.0f ? 0.0 : (double)beta * (double)c.v[r * c.ld + q];
            want[r * n + q] = (float)((double)alpha * sum + old);
        }

    cn_sgemm(ta, tb, m, n, k, alpha, a.v, a.ld, b.v, b.ld, beta, c.v, c.ld, nt);

    for (int64_t r = 0; r < m; r++) {
        for (int64_t q = 0; q < n; q++)
            got[r * n + q] = c.v[r * c.ld + q];
        for (int64_t q = n; q < c.ld; q++)
            ck_assert_msg(c.v[r * c.ld + q] == SENTINEL, "C padding written at [%ld,%ld]",
                          (long)r, (long)q);
    }
    double e = tu_norm_err(got, want, nc);
    ck_assert_msg(e < TOL,
                  "cn_sgemm(ta=%d, tb=%d, m=%ld, n=%ld, k=%ld, alpha=%g, beta=%g, pad=%ld, "
                  "threads=%d): error %g",
                  ta, tb, (long)m, (long)n, (long)k, (double)alpha, (double)beta, (long)pad, nt, e);
    free(a.v), free(b.v), free(c.v), free(want), free(got);
}

static const int64_t dims[][3] = {
    {1, 1, 1}, {7, 5, 3}, {5, 7, 9}, {1, 9, 4}, {64, 1, 1}, {33, 17, 65},
    {3, 40, 2}, {100, 64, 48}, {48, 256, 300},
};
static const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 2.0f}, {-1.5f, 1.0f}, {2.0f, -0.25f}};

START_TEST(all_transposes)
{
    int cases = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
                for (size_t s = 0; s < sizeof ab / sizeof ab[0]; s++)
                    for (int nt = 1; nt <= 2; nt++) {
                        int64_t pad = (int64_t)((d + s) % 3) * 3; /* 0, 3 or 6 */
                        check_case(ta, tb, dims[d][0], dims[d][1], dims[d][2], ab[s][0],
                                   ab[s][1], pad, nt, ab[s][1] == 0.0f);
                        cases++;
                    }
    ck_assert_int_eq(cases, 4 * 9 * 4 * 2);
}
END_TEST

START_TEST(degenerate)
{
    /* k == 0 and alpha == 0: C = beta * C (beta == 0: zeros, even over NaN). */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            check_case(ta, tb, 4, 3, 0, 1.0f, 0.5f, 2, 1, 0);
            check_case(ta, tb, 4, 3, 0, 1.0f, 0.0f, 2, 1, 1);
            check_case(ta, tb, 5, 6, 7, 0.0f, -2.0f, 1, 2, 0);
            check_case(ta, tb, 5, 6, 7, 0.0f, 0.0f, 1, 2, 1);
            check_case(ta, tb, 5, 6, 7, 1.0f, 1.0f, 0, 1, 0);
        }
    /* m == 0 or n == 0: nothing is touched (pointers may be NULL). */
    float c[4] = {1, 2, 3, 4};
    cn_sgemm(0, 0, 0, 2, 3, 1.0f, NULL, 3, NULL, 2, 0.0f, c, 2, 1);
    cn_sgemm(0, 0, 2, 0, 3, 1.0f, NULL, 3, NULL, 1, 0.0f, c, 2, 2);
    cn_sgemm(1, 1, 0, 0, 0, 1.0f, NULL, 1, NULL, 1, 0.0f, c, 1, 1);
    ck_assert(c[0] == 1 && c[1] == 2 && c[2] == 3 && c[3] == 4);
    /* k == 0 with NULL A and B: only C is read. */
    cn_sgemm(0, 0, 2, 2, 0, 1.0f, NULL, 1, NULL, 2, 2.0f, c, 2, 1);
    ck_assert(c[0] == 2 && c[1] == 4 && c[2] == 6 && c[3] == 8);
    /* n_threads < 1 is treated as 1. */
    check_case(0, 1, 9, 8, 7, 1.0f, 0.0f, 1, 0, 1);
}
END_TEST

START_TEST(arch)
{
    const char *a = cn_blis_arch();
    ck_assert_ptr_nonnull(a);
    ck_assert_int_gt((int)strlen(a), 0);
}
END_TEST

static Suite *gemm_suite(void)
{
    Suite *s = suite_create("gemm");
    TCase *tc = tcase_create("sgemm");
    tcase_add_test(tc, all_transposes);
    tcase_add_test(tc, degenerate);
    tcase_add_test(tc, arch);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(gemm_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
