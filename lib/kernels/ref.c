/* The "ref" backend: the three convolution kernels written as plain loops,
 * one output element at a time, straight from the definitions in
 * include/conure/conure_backend.h.  It is the definition every other backend
 * is checked against, so it favours readability over speed: single-threaded,
 * no workspace, used on small test shapes and as the fallback for shapes a
 * backend's supports() rejects.
 *
 * Summation order (fixed, so results are reproducible bit for bit): each
 * output element is accumulated in one float, starting from 0, adding the
 * terms of its sum in the order the loops below visit them:
 *   forward          y[b,t,o]:  taps j = 0 .. K-1, then channels i = 0 .. Cin-1
 *   backward_data    dx[b,t,i]: taps j = 0 .. K-1, then channels o = 0 .. Cout-1
 *   backward_weight  dw[j,i,o]: sequences b = 0 .. B-1, then positions t = 0 .. L-1
 * Terms that fall in the causal zero padding are zero by definition and are
 * skipped, not added. */
#include <stdint.h>

#include "kernels/kernels.h"

/* Look-back of tap j: s_j = (K-1-j) * d. */
static int64_t tap_shift(const conure_conv_shape *s, int64_t j)
{
    return ((int64_t)s->kernel_width - 1 - j) * (int64_t)s->dilation;
}

int cn_ref_conv_forward(void *ctx, const conure_conv_shape *s, const float *x,
                        const float *w, float *y, void *ws)
{
    (void)ctx;
    (void)ws;
    const int64_t B = s->batch, L = s->length, Cin = s->in_channels;
    const int64_t Cout = s->out_channels, K = s->kernel_width;

    /* y[b,t,o] = sum_j sum_i x[b,t-s_j,i] * w[j,i,o] */
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < L; t++) {
            for (int64_t o = 0; o < Cout; o++) {
                float acc = 0.0f;
                for (int64_t j = 0; j < K; j++) {
                    int64_t tin = t - tap_shift(s, j);
                    if (tin < 0)
                        continue; /* causal zero padding */
                    const float *xrow = x + (b * L + tin) * Cin;
                    const float *wtap = w + j * Cin * Cout;
                    for (int64_t i = 0; i < Cin; i++)
                        acc += xrow[i] * wtap[i * Cout + o];
                }
                y[(b * L + t) * Cout + o] = acc;
            }
        }
    }
    return 0;
}

int cn_ref_conv_backward_data(void *ctx, const conure_conv_shape *s, const float *dy,
                              const float *w, float *dx, void *ws)
{
    (void)ctx;
    (void)ws;
    const int64_t B = s->batch, L = s->length, Cin = s->in_channels;
    const int64_t Cout = s->out_channels, K = s->kernel_width;

    /* dx[b,t,i] = sum_j sum_o dy[b,t+s_j,o] * w[j,i,o] */
    for (int64_t b = 0; b < B; b++) {
        for (int64_t t = 0; t < L; t++) {
            for (int64_t i = 0; i < Cin; i++) {
                float acc = 0.0f;
                for (int64_t j = 0; j < K; j++) {
                    int64_t tout = t + tap_shift(s, j);
                    if (tout >= L)
                        continue; /* beyond the sequence: dy counts as 0 */
                    const float *dyrow = dy + (b * L + tout) * Cout;
                    const float *wrow = w + (j * Cin + i) * Cout;
                    for (int64_t o = 0; o < Cout; o++)
                        acc += dyrow[o] * wrow[o];
                }
                dx[(b * L + t) * Cin + i] = acc;
            }
        }
    }
    return 0;
}

int cn_ref_conv_backward_weight(void *ctx, const conure_conv_shape *s, const float *x,
                                const float *dy, float *dw, void *ws)
{
    (void)ctx;
    (void)ws;
    const int64_t B = s->batch, L = s->length, Cin = s->in_channels;
    const int64_t Cout = s->out_channels, K = s->kernel_width;

    /* dw[j,i,o] = sum_b sum_t x[b,t-s_j,i] * dy[b,t,o] */
    for (int64_t j = 0; j < K; j++) {
        const int64_t shift = tap_shift(s, j);
        for (int64_t i = 0; i < Cin; i++) {
            for (int64_t o = 0; o < Cout; o++) {
                float acc = 0.0f;
                for (int64_t b = 0; b < B; b++) {
                    for (int64_t t = shift; t < L; t++) /* t - s_j >= 0 */
                        acc += x[(b * L + t - shift) * Cin + i] * dy[(b * L + t) * Cout + o];
                }
                dw[(j * Cin + i) * Cout + o] = acc;
            }
        }
    }
    return 0;
}
