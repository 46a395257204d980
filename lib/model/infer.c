/* Inference: user vectors at the last position and scores over a task's
 * targets, with the conv weights the task sees (method §4 step 4).  Every call
 * allocates its own scratch, so const calls may run concurrently. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "nn/nn.h"

static void infer_block_params(const conure_model *m, const float *view, int32_t b,
                               cn_block_params *p)
{
    const float *P = m->params;
    p->ln1_g = P + m->tensors[cn_tensor_index(b, CN_T_LN1_G)].offset;
    p->ln1_b = P + m->tensors[cn_tensor_index(b, CN_T_LN1_B)].offset;
    p->ln2_g = P + m->tensors[cn_tensor_index(b, CN_T_LN2_G)].offset;
    p->ln2_b = P + m->tensors[cn_tensor_index(b, CN_T_LN2_B)].offset;
    p->w1 = view ? view + (size_t)(2 * b) * m->conv_numel : cn_conv_ptr(m, m->params, 2 * b);
    p->w2 = view ? view + (size_t)(2 * b + 1) * m->conv_numel
                 : cn_conv_ptr(m, m->params, 2 * b + 1);
    p->dilation = m->cfg.dilations[b];
}

#define CN_INFER_CHUNK_FLOATS ((int64_t)1 << 22) /* per activation buffer */

conure_status cn_model_user_vectors(const conure_model *m, int32_t task_id, const int32_t *items,
                                    int32_t batch, int32_t seq_len, float *out)
{
    const cn_task *t = &m->tasks[task_id - 1];
    const int next_item = t->kind == CONURE_TASK_NEXT_ITEM;
    const int32_t L = next_item ? seq_len : seq_len + 1;
    const int32_t C = m->cfg.channels, nb = m->cfg.n_blocks;
    const int nt = m->n_threads;
    int64_t bc = CN_INFER_CHUNK_FLOATS / ((int64_t)L * C);
    if (bc < 1)
        bc = 1;
    if (bc > batch)
        bc = batch;
    const int64_t NC = bc * L * C;

    size_t ws_bytes = 0;
    for (int32_t c = 0; c < m->n_conv; c++) {
        conure_conv_shape s;
        memset(&s, 0, sizeof s);
        s.struct_size = (uint32_t)sizeof s;
        s.batch = (int32_t)bc;
        s.length = L;
        s.in_channels = s.out_channels = C;
        s.kernel_width = m->cfg.kernel_width;
        s.dilation = cn_conv_dilation(m, c);
        s.n_threads = nt;
        size_t w = cn_conv_workspace(m->backend, &s);
        ws_bytes = w > ws_bytes ? w : ws_bytes;
    }
    const int need_view = cn_model_conv_view_needs_buffer(m, task_id);
    float *x = cn_alloc((size_t)NC, sizeof(float));
    float *y = cn_alloc((size_t)NC, sizeof(float));
    float *t1 = cn_alloc((size_t)NC, sizeof(float));
    float *t2 = cn_alloc((size_t)NC, sizeof(float));
    int32_t *ids = cn_alloc((size_t)(bc * L), sizeof(int32_t));
    void *ws = cn_alloc(ws_bytes, 1);
    float *vbuf = need_view ? cn_alloc((size_t)m->n_conv, m->conv_numel * sizeof(float)) : NULL;
    conure_status st = CONURE_OK;
    if (!x || !y || !t1 || !t2 || !ids || !ws || (need_view && !vbuf)) {
        st = cn_fail(CONURE_E_NOMEM, "inference: out of memory");
        goto done;
    }
    const float *view = cn_model_conv_view(m, task_id, vbuf);
    for (int64_t b0 = 0; b0 < batch; b0 += bc) {
        const int32_t nbat = (int32_t)((batch - b0) < bc ? (batch - b0) : bc);
        for (int32_t b = 0; b < nbat; b++) {
            const int32_t *row = items + (b0 + b) * seq_len;
            memcpy(ids + (int64_t)b * L, row, sizeof(int32_t) * (size_t)seq_len);
            if (!next_item)
                ids[(int64_t)b * L + seq_len] = 0; /* separator */
        }
        cn_net_shape s = {nbat, L, C, m->cfg.kernel_width, m->cfg.block_order, nt, m->backend};
        cn_embedding_gather(m->params + m->tensors[0].offset, C, ids, (int64_t)nbat * L, x, nt);
        for (int32_t b = 0; b < nb; b++) {
            cn_block_params p;
            infer_block_params(m, view, b, &p);
            if ((st = cn_block_forward_infer(&s, &p, x, y, t1, t2, ws)))
                goto done;
            float *tmp = x;
            x = y;
            y = tmp;
        }
        for (int32_t b = 0; b < nbat; b++)
            memcpy(out + (b0 + b) * C, x + ((int64_t)b * L + L - 1) * C, sizeof(float) * (size_t)C);
    }
done:
    cn_free(x);
    cn_free(y);
    cn_free(t1);
    cn_free(t2);
    cn_free(ids);
    cn_free(ws);
    cn_free(vbuf);
    return st;
}

conure_status cn_model_scores(const conure_model *m, int32_t task_id, const int32_t *items,
                              int32_t batch, int32_t seq_len, float *scores)
{
    const cn_task *t = &m->tasks[task_id - 1];
    const int32_t C = m->cfg.channels, n = t->n_targets;
    float *h = cn_alloc((size_t)batch * (size_t)C, sizeof(float));
    if (!h)
        return cn_fail(CONURE_E_NOMEM, "model_scores: out of memory");
    conure_status st = cn_model_user_vectors(m, task_id, items, batch, seq_len, h);
    if (!st) {
        cn_sgemm(0, 1, batch, n, C, 1.0f, h, C, t->head, C, 0.0f, scores, n, m->n_threads);
        if (t->kind == CONURE_TASK_NEXT_ITEM) {
            const float *bias = t->head + (int64_t)n * C;
            for (int32_t b = 0; b < batch; b++) {
                float *s = scores + (int64_t)b * n;
                for (int32_t j = 0; j < n; j++)
                    s[j] += bias[j];
                s[0] = -INFINITY; /* padding is never a recommendation */
            }
        }
    }
    cn_free(h);
    return st;
}
