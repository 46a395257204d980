/* The "blis" backend: each convolution kernel is one SGEMM (cn_sgemm, BLIS)
 * over all batch*length positions at once, plus cheap copies.
 *
 * With R = batch*length rows and KC = K*in_channels, the im2col matrix
 *     col[R, KC]:  col[(b,t), j*Cin + i] = x[b, t - s_j, i]   (0 if t - s_j < 0)
 * turns the definitions of conure_backend.h into
 *     forward          y[R, Cout]   = col          x  w[KC, Cout]
 *     backward_data    dcol[R, KC]  = dy[R, Cout]  x  w^T,  then
 *                      dx[b,t,i]    = sum_j dcol[(b, t + s_j), j*Cin + i]
 *                                     over t + s_j < length (col2im, as a gather)
 *     backward_weight  dw[KC, Cout] = col^T        x  dy[R, Cout]
 * where w [K, Cin, Cout] is already the row-major [KC, Cout] matrix.  With
 * K == 1 (s_0 = 0) col is x itself and dcol is dx, so no copies and no
 * workspace are needed.
 *
 * The workspace holds col (forward, backward_weight) or dcol (backward_data):
 * R*KC floats.  The copies run on shape->n_threads OpenMP threads over rows
 * when the matrix is large enough to pay for a parallel region; every row is
 * produced by one thread in a fixed order, so results depend on n_threads
 * only through BLIS (and are bit-identical run to run for a fixed count).
 * The parallel regions end before BLIS is called: the two never nest. */
#include <string.h>

#include "kernels/kernels.h"

/* Below this many floats a copy runs on one thread. */
#define CN_COPY_PAR_MIN ((int64_t)1 << 16)

static int copy_threads(const conure_conv_shape *s, int64_t n_floats)
{
    int nt = s->n_threads;
    if (nt < 2 || n_floats < CN_COPY_PAR_MIN)
        return 1;
    return nt;
}

/* col[R, K*Cin] from x[B, L, Cin] (layout in the file comment). */
static void im2col(const conure_conv_shape *s, const float *x, float *col)
{
    const int64_t L = s->length, C = s->in_channels, K = s->kernel_width, d = s->dilation;
    const int64_t rows = (int64_t)s->batch * L, kc = K * C;
    const size_t seg = (size_t)C * sizeof(float);
    const int nt = copy_threads(s, rows * kc);

#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t t = r % L;
        const float *xseq = x + (r - t) * C; /* x[b, 0, 0] */
        float *dst = col + r * kc;
        const int64_t first = t - (K - 1) * d; /* source position of tap 0 */
        if (d == 1 && first >= 0) {
            /* taps read positions first .. t: one contiguous block of x */
            memcpy(dst, xseq + first * C, (size_t)kc * sizeof(float));
            continue;
        }
        for (int64_t j = 0; j < K; j++) {
            const int64_t src = first + j * d; /* t - s_j */
            if (src >= 0)
                memcpy(dst + j * C, xseq + src * C, seg);
            else
                memset(dst + j * C, 0, seg);
        }
    }
}

/* dx[b,t,:] = sum_j dcol[(b, t + s_j), j*Cin .. j*Cin+Cin-1] over t + s_j < L,
 * taps added in the order j = K-1 (s = 0, always present), K-2, ..., 0. */
static void col2im(const conure_conv_shape *s, const float *dcol, float *dx)
{
    const int64_t L = s->length, C = s->in_channels, K = s->kernel_width, d = s->dilation;
    const int64_t rows = (int64_t)s->batch * L, kc = K * C;
    const int nt = copy_threads(s, rows * kc);

#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t t = r % L;
        float *dst = dx + r * C;
        memcpy(dst, dcol + r * kc + (K - 1) * C, (size_t)C * sizeof(float));
        for (int64_t j = K - 2; j >= 0; j--) {
            const int64_t shift = (K - 1 - j) * d;
            if (t + shift >= L)
                break; /* larger shifts fall outside too */
            const float *src = dcol + (r + shift) * kc + j * C;
            for (int64_t i = 0; i < C; i++)
                dst[i] += src[i];
        }
    }
}

/* Bytes of R*K*Cin floats, or SIZE_MAX if that does not fit in size_t. */
static size_t col_bytes(const conure_conv_shape *s)
{
    const uint64_t parts[4] = {(uint64_t)s->batch, (uint64_t)s->length,
                               (uint64_t)s->kernel_width, (uint64_t)s->in_channels};
    uint64_t n = sizeof(float);
    for (int p = 0; p < 4; p++) {
        if (parts[p] != 0 && n > UINT64_MAX / parts[p])
            return SIZE_MAX;
        n *= parts[p];
    }
    return n > SIZE_MAX ? SIZE_MAX : (size_t)n;
}

size_t cn_blis_conv_workspace_size(void *ctx, conure_conv_op op, const conure_conv_shape *s)
{
    (void)ctx;
    (void)op; /* all three kernels need R x K*Cin floats when K > 1 */
    if (s->kernel_width <= 1)
        return 0;
    return col_bytes(s);
}

int cn_blis_conv_forward(void *ctx, const conure_conv_shape *s, const float *x,
                         const float *w, float *y, void *ws)
{
    (void)ctx;
    const int64_t rows = (int64_t)s->batch * s->length;
    const int64_t kc = (int64_t)s->kernel_width * s->in_channels;
    const float *a = x;
    if (s->kernel_width > 1) {
        if (!ws)
            return -1;
        im2col(s, x, ws);
        a = ws;
    }
    cn_sgemm(0, 0, rows, s->out_channels, kc, 1.0f, a, kc, w, s->out_channels, 0.0f, y,
             s->out_channels, s->n_threads);
    return 0;
}

int cn_blis_conv_backward_data(void *ctx, const conure_conv_shape *s, const float *dy,
                               const float *w, float *dx, void *ws)
{
    (void)ctx;
    const int64_t rows = (int64_t)s->batch * s->length;
    const int64_t kc = (int64_t)s->kernel_width * s->in_channels;
    float *dcol = dx;
    if (s->kernel_width > 1) {
        if (!ws)
            return -1;
        dcol = ws;
    }
    /* dcol[R, KC] = dy[R, Cout] x w[KC, Cout]^T */
    cn_sgemm(0, 1, rows, kc, s->out_channels, 1.0f, dy, s->out_channels, w, s->out_channels,
             0.0f, dcol, kc, s->n_threads);
    if (s->kernel_width > 1)
        col2im(s, dcol, dx);
    return 0;
}

int cn_blis_conv_backward_weight(void *ctx, const conure_conv_shape *s, const float *x,
                                 const float *dy, float *dw, void *ws)
{
    (void)ctx;
    const int64_t rows = (int64_t)s->batch * s->length;
    const int64_t kc = (int64_t)s->kernel_width * s->in_channels;
    const float *col = x;
    if (s->kernel_width > 1) {
        if (!ws)
            return -1;
        im2col(s, x, ws);
        col = ws;
    }
    /* dw[KC, Cout] = col[R, KC]^T x dy[R, Cout] */
    cn_sgemm(1, 0, kc, s->out_channels, rows, 1.0f, col, kc, dy, s->out_channels, 0.0f, dw,
             s->out_channels, s->n_threads);
    return 0;
}
