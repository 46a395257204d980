/* Inference: user vectors at the last position and scores over a task's
 * targets, with the conv weights the task sees (method §4 step 4).  Every call
 * allocates its own scratch, so const calls may run concurrently. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "nn/nn.h"

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

    const size_t ws_bytes = cn_model_conv_workspace(m, (int32_t)bc, L);
    const int need_view = cn_model_conv_view_needs_buffer(m, task_id);
    float *x = cn_alloc((size_t)NC, sizeof(float));
    float *y = cn_alloc((size_t)NC, sizeof(float));
    float *tmp[4]; /* activations the block forward writes; none is kept */
    for (int i = 0; i < 4; i++)
        tmp[i] = cn_alloc((size_t)NC, sizeof(float));
    int32_t *ids = cn_alloc((size_t)(bc * L), sizeof(int32_t));
    void *ws = cn_alloc(ws_bytes, 1);
    float *vbuf = need_view ? cn_alloc((size_t)m->n_conv, m->conv_numel * sizeof(float)) : NULL;
    conure_status st = CONURE_OK;
    if (!x || !y || !tmp[0] || !tmp[1] || !tmp[2] || !tmp[3] || !ids || !ws || (need_view && !vbuf)) {
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
            cn_model_block_params(m, view, b, &p);
            cn_block_acts a = {x, tmp[0], tmp[1], tmp[2], tmp[3], NULL, NULL, NULL, NULL,
                               NULL, 1.0f}; /* no dropout at inference */
            if ((st = cn_block_forward(&s, &p, &a, y, ws)))
                goto done;
            float *swap = x;
            x = y;
            y = swap;
        }
        for (int32_t b = 0; b < nbat; b++)
            memcpy(out + (b0 + b) * C, x + ((int64_t)b * L + L - 1) * C, sizeof(float) * (size_t)C);
    }
    if (!cn_all_finite(out, (size_t)batch * (size_t)C))
        st = cn_fail(CONURE_E_NUMERIC,
                     "inference: task %d's user vectors are not finite (the model's weights hold "
                     "NaN or inf)", task_id);
done:
    cn_free(x);
    cn_free(y);
    for (int i = 0; i < 4; i++)
        cn_free(tmp[i]);
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
                s[0] = 0.0f; /* checked below, then set */
            }
        }
        if (!cn_all_finite(scores, (size_t)batch * (size_t)n))
            st = cn_fail(CONURE_E_NUMERIC, "inference: task %d's scores are not finite (its head "
                         "holds NaN or inf)", task_id);
        else if (t->kind == CONURE_TASK_NEXT_ITEM)
            for (int32_t b = 0; b < batch; b++)
                scores[(int64_t)b * n] = -INFINITY; /* padding is never a recommendation */
    }
    cn_free(h);
    return st;
}
