/* The NextItNet residual block (method §2), forward and backward, in both
 * orders:
 *   pre_norm  (authors' code):  y = x + Conv_2d(ReLU(LN2(Conv_d(ReLU(LN1(x))))))
 *   post_norm (original paper): y = x + ReLU(LN2(Conv_2d(ReLU(LN1(Conv_d(x))))))
 * The convolutions run through the backend vtable (kernels/). */
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "nn/nn.h"

static conure_conv_shape conv_shape(const cn_net_shape *s, int32_t dilation)
{
    conure_conv_shape cs;
    memset(&cs, 0, sizeof cs);
    cs.struct_size = (uint32_t)sizeof cs;
    cs.batch = s->batch;
    cs.length = s->length;
    cs.in_channels = s->channels;
    cs.out_channels = s->channels;
    cs.kernel_width = s->kernel_width;
    cs.dilation = dilation;
    cs.n_threads = s->n_threads;
    return cs;
}

static void add_inplace(float *y, const float *x, int64_t n, int n_threads)
{
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

void cn_dropout_apply(const float *x, const uint8_t *keep, float scale, int64_t n, float *y,
                      int n_threads)
{
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        y[i] = keep[i] ? x[i] * scale : 0.0f;
}

conure_status cn_block_forward(const cn_net_shape *s, const cn_block_params *p,
                               cn_block_acts *a, float *y, void *ws)
{
    const int64_t N = (int64_t)s->batch * s->length;
    const int32_t C = s->channels;
    const int nt = s->n_threads;
    conure_conv_shape c1 = conv_shape(s, p->dilation), c2 = conv_shape(s, 2 * p->dilation);
    conure_status st;
    if (s->block_order == CN_PRE_NORM) {
        cn_ln_forward(a->x, p->ln1_g, p->ln1_b, N, C, CN_LN_EPS, 1, a->r1, a->mean1, a->rstd1, nt);
        if ((st = cn_conv_forward(s->backend, &c1, a->r1, p->w1, a->c1, ws)))
            return st;
        cn_ln_forward(a->c1, p->ln2_g, p->ln2_b, N, C, CN_LN_EPS, 1, a->r2, a->mean2, a->rstd2, nt);
        if ((st = cn_conv_forward(s->backend, &c2, a->r2, p->w2, y, ws)))
            return st;
        if (a->keep)
            cn_dropout_apply(y, a->keep, a->drop_scale, N * C, y, nt);
        add_inplace(y, a->x, N * C, nt);
    } else {
        if ((st = cn_conv_forward(s->backend, &c1, a->x, p->w1, a->c1, ws)))
            return st;
        cn_ln_forward(a->c1, p->ln1_g, p->ln1_b, N, C, CN_LN_EPS, 1, a->r1, a->mean1, a->rstd1, nt);
        if ((st = cn_conv_forward(s->backend, &c2, a->r1, p->w2, a->c2, ws)))
            return st;
        cn_ln_forward(a->c2, p->ln2_g, p->ln2_b, N, C, CN_LN_EPS, 1, a->r2, a->mean2, a->rstd2, nt);
        if (a->keep)
            cn_dropout_apply(a->r2, a->keep, a->drop_scale, N * C, y, nt);
        else
            memcpy(y, a->r2, sizeof(float) * (size_t)(N * C));
        add_inplace(y, a->x, N * C, nt);
    }
    return CONURE_OK;
}

conure_status cn_block_backward(const cn_net_shape *s, const cn_block_params *p,
                                const cn_block_acts *a, float *dy, cn_block_grads *g,
                                int need_dx, float *t1, float *t2, void *ws)
{
    const int64_t N = (int64_t)s->batch * s->length;
    const int32_t C = s->channels;
    const int nt = s->n_threads;
    conure_conv_shape c1 = conv_shape(s, p->dilation), c2 = conv_shape(s, 2 * p->dilation);
    conure_status st;
    if (s->block_order == CN_PRE_NORM) {
        /* y = x + drop(conv2(r2)): d conv2 output = drop(dy) */
        const float *dc2 = dy;
        if (a->keep) {
            cn_dropout_apply(dy, a->keep, a->drop_scale, N * C, t2, nt);
            dc2 = t2;
        }
        if ((st = cn_conv_backward_weight(s->backend, &c2, a->r2, dc2, g->w2, ws)))
            return st;
        if ((st = cn_conv_backward_data(s->backend, &c2, dc2, p->w2, t1, ws)))
            return st;
        /* r2 = ReLU(LN2(c1)) */
        cn_ln_backward(t1, a->c1, a->mean2, a->rstd2, p->ln2_g, a->r2, 1, N, C, t2, g->ln2_g,
                       g->ln2_b, nt);
        /* c1 = conv1(r1) */
        if ((st = cn_conv_backward_weight(s->backend, &c1, a->r1, t2, g->w1, ws)))
            return st;
        if (!need_dx && !g->ln1_g && !g->ln1_b)
            return CONURE_OK;
        if ((st = cn_conv_backward_data(s->backend, &c1, t2, p->w1, t1, ws)))
            return st;
        /* r1 = ReLU(LN1(x)) */
        cn_ln_backward(t1, a->x, a->mean1, a->rstd1, p->ln1_g, a->r1, 1, N, C,
                       need_dx ? t2 : NULL, g->ln1_g, g->ln1_b, nt);
        if (need_dx)
            add_inplace(dy, t2, N * C, nt);
    } else {
        /* y = x + drop(r2), r2 = ReLU(LN2(c2)) */
        const float *dr2 = dy;
        if (a->keep) {
            cn_dropout_apply(dy, a->keep, a->drop_scale, N * C, t1, nt);
            dr2 = t1; /* cn_ln_backward allows dx to alias dy */
        }
        cn_ln_backward(dr2, a->c2, a->mean2, a->rstd2, p->ln2_g, a->r2, 1, N, C, t1, g->ln2_g,
                       g->ln2_b, nt);
        /* c2 = conv2(r1) */
        if ((st = cn_conv_backward_weight(s->backend, &c2, a->r1, t1, g->w2, ws)))
            return st;
        if ((st = cn_conv_backward_data(s->backend, &c2, t1, p->w2, t2, ws)))
            return st;
        /* r1 = ReLU(LN1(c1)) */
        cn_ln_backward(t2, a->c1, a->mean1, a->rstd1, p->ln1_g, a->r1, 1, N, C, t1, g->ln1_g,
                       g->ln1_b, nt);
        /* c1 = conv1(x) */
        if ((st = cn_conv_backward_weight(s->backend, &c1, a->x, t1, g->w1, ws)))
            return st;
        if (need_dx) {
            if ((st = cn_conv_backward_data(s->backend, &c1, t1, p->w1, t2, ws)))
                return st;
            add_inplace(dy, t2, N * C, nt);
        }
    }
    return CONURE_OK;
}
