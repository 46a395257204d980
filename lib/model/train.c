/* One training step: forward with the phase's effective conv weights, the
 * task's loss, backward, gradient masking by owners, Adam (method §3, §4). */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "nn/nn.h"

/* Bump allocator over one scratch block; a first pass with base == NULL only
 * measures. */
typedef struct bump {
    char *base;
    size_t used;  /* SIZE_MAX once a request overflowed */
} bump;

static void *take(bump *b, size_t bytes)
{
    size_t at = b->used;
    if (bytes > SIZE_MAX - 63 || ((bytes + 63) & ~(size_t)63) > SIZE_MAX - 64 - at) {
        b->used = SIZE_MAX; /* saturate: the reservation below fails cleanly */
        return NULL;
    }
    b->used += (bytes + 63) & ~(size_t)63;
    return b->base ? b->base + at : NULL;
}

typedef struct train_bufs {
    int32_t *ids, *tgt, *neg, *cand_ids;
    uint8_t *mark;
    uint8_t *keep; /* dropout: [n_blocks + 1, N, C] keep flags, or NULL */
    float *conv_view;
    cn_block_acts *acts;
    float *out, *dy, *t1, *t2, *h, *dh;
    void *conv_ws;
    cn_head_ws head;
} train_bufs;

static void layout(bump *bp, const conure_model *m, const cn_task *t, int32_t batch,
                   int32_t L, size_t conv_ws_bytes, int need_view, train_bufs *tb)
{
    const int64_t N = (int64_t)batch * L, C = m->cfg.channels;
    const size_t NC = (size_t)(N * C) * sizeof(float), Nf = (size_t)N * sizeof(float);
    const int post = m->cfg.block_order == CN_POST_NORM;
    tb->ids = take(bp, (size_t)N * sizeof(int32_t));
    tb->tgt = take(bp, (size_t)N * sizeof(int32_t));
    tb->neg = take(bp, (size_t)batch * sizeof(int32_t));
    tb->cand_ids = take(bp, (size_t)(t->negatives > 0 ? t->negatives : 1) * sizeof(int32_t));
    tb->mark = take(bp, (size_t)m->cfg.vocab_size);
    tb->keep = t->dropout > 0.0f ? take(bp, (size_t)(m->cfg.n_blocks + 1) * (size_t)N * (size_t)C)
                                 : NULL;
    tb->conv_view = need_view ? take(bp, (size_t)m->n_conv * m->conv_numel * sizeof(float)) : NULL;
    tb->acts = take(bp, sizeof(cn_block_acts) * (size_t)m->cfg.n_blocks);
    for (int32_t b = 0; b < m->cfg.n_blocks; b++) {
        cn_block_acts a;
        a.x = take(bp, NC);
        a.c1 = take(bp, NC);
        a.r1 = take(bp, NC);
        a.c2 = post ? take(bp, NC) : NULL;
        a.r2 = take(bp, NC);
        a.mean1 = take(bp, Nf);
        a.rstd1 = take(bp, Nf);
        a.mean2 = take(bp, Nf);
        a.rstd2 = take(bp, Nf);
        if (bp->base)
            tb->acts[b] = a;
    }
    tb->out = take(bp, NC);
    tb->dy = take(bp, NC);
    tb->t1 = take(bp, NC);
    tb->t2 = take(bp, NC);
    tb->h = take(bp, (size_t)batch * (size_t)C * sizeof(float));
    tb->dh = take(bp, (size_t)batch * (size_t)C * sizeof(float));
    tb->conv_ws = take(bp, conv_ws_bytes);
    size_t hf;
    if (t->kind == CONURE_TASK_NEXT_ITEM)
        hf = cn_next_item_ws_floats(N, m->cfg.vocab_size, m->cfg.channels,
                                    t->loss == CN_LOSS_SAMPLED_SOFTMAX ? t->negatives : 0);
    else
        hf = cn_table_ws_floats(t->loss, batch, t->n_targets);
    tb->head.buf = take(bp, hf * sizeof(float));
    tb->head.cap = hf;
}


/* Are embedding and layer norms trained in this phase? */
static int backbone_trainable(const conure_model *m)
{
    return m->cfg.training_mode == CN_MODE_FINETUNE || !m->backbone_frozen;
}

conure_status cn_model_loss_grad(conure_model *m, int32_t task_id, const int32_t *items,
                                 int32_t batch, int32_t seq_len, const int32_t *targets,
                                 const cn_samples *samples, int all_grads, double *loss)
{
    cn_task *t = &m->tasks[task_id - 1];
    const int next_item = t->kind == CONURE_TASK_NEXT_ITEM;
    const int32_t L = next_item ? seq_len - 1 : seq_len + 1;
    const int64_t N = (int64_t)batch * L;
    const int32_t C = m->cfg.channels, nb = m->cfg.n_blocks;
    const int nt = m->n_threads;
    const int need_view = cn_model_conv_view_needs_buffer(m, task_id);
    const size_t conv_ws = cn_model_conv_workspace(m, batch, L);
    conure_status st0 = cn_model_ensure_training(m);
    if (st0)
        return st0;
    if (t->tied)
        cn_model_sync_tied(m); /* W == E even if E was changed since (tests perturb it) */
    if (!t->head_grad)
        return cn_fail(CONURE_E_INTERNAL, "model_train_step: task %d has no gradient arrays",
                       task_id);

    train_bufs tb;
    bump bp = {NULL, 0};
    layout(&bp, m, t, batch, L, conv_ws, need_view, &tb);
    if (bp.used == SIZE_MAX || cn_scratch_reserve(&m->train_ws, bp.used))
        return cn_fail(CONURE_E_NOMEM, "model_train_step: out of memory for %zu bytes of activations",
                       bp.used);
    bp.base = m->train_ws.ptr;
    bp.used = 0;
    layout(&bp, m, t, batch, L, conv_ws, need_view, &tb);

    /* inputs and targets */
    for (int32_t b = 0; b < batch; b++) {
        const int32_t *row = items + (int64_t)b * seq_len;
        int32_t *ids = tb.ids + (int64_t)b * L;
        if (next_item) {
            memcpy(ids, row, sizeof(int32_t) * (size_t)L);
            memcpy(tb.tgt + (int64_t)b * L, row + 1, sizeof(int32_t) * (size_t)L);
        } else {
            memcpy(ids, row, sizeof(int32_t) * (size_t)seq_len);
            ids[seq_len] = 0; /* separator (method §1) */
        }
    }
    const float *view = cn_model_conv_view(m, task_id, tb.conv_view);
    cn_net_shape s = {batch, L, C, m->cfg.kernel_width, m->cfg.block_order, nt, m->backend};

    /* dropout masks (training only): one random byte per element, kept when
     * it is >= p * 256; slot 0 is the input embedding, slot b+1 block b */
    const int64_t NC = N * C;
    const float drop_scale = t->dropout > 0.0f ? 1.0f / (1.0f - t->dropout) : 1.0f;
    if (tb.keep) {
        const uint32_t thr = (uint32_t)(t->dropout * 256.0f + 0.5f);
        const int64_t total = (int64_t)(nb + 1) * NC;
        for (int64_t i = 0; i < total; i += 4) {
            uint32_t r = cn_rng_u32(&m->rng);
            for (int64_t j = 0; j < 4 && i + j < total; j++, r >>= 8)
                tb.keep[i + j] = (r & 0xffu) >= thr;
        }
    }

    /* forward */
    conure_status st;
    cn_embedding_gather(m->params + m->tensors[0].offset, C, tb.ids, N, tb.acts[0].x, nt);
    if (tb.keep)
        cn_dropout_apply(tb.acts[0].x, tb.keep, drop_scale, NC, tb.acts[0].x, nt);
    for (int32_t b = 0; b < nb; b++) {
        tb.acts[b].keep = tb.keep ? tb.keep + (int64_t)(b + 1) * NC : NULL;
        tb.acts[b].drop_scale = drop_scale;
        cn_block_params p;
        cn_model_block_params(m, view, b, &p);
        float *y = b + 1 < nb ? tb.acts[b + 1].x : tb.out;
        if ((st = cn_block_forward(&s, &p, &tb.acts[b], y, tb.conv_ws)))
            return st;
    }

    /* head and loss */
    const float *head = t->head;
    float *dhead = t->head_grad;
    if (next_item) {
        cn_candidates cand = {NULL, 0, 0};
        const cn_candidates *cp = NULL;
        if (t->loss == CN_LOSS_SAMPLED_SOFTMAX) {
            if (samples) {
                cand.ids = (int32_t *)samples->ids;
                cand.n = samples->n;
                cand.tries = samples->tries;
            } else {
                cand.ids = tb.cand_ids;
                cand.n = t->negatives;
                /* the scratch is shared with activations of other shapes */
                memset(tb.mark, 0, (size_t)m->cfg.vocab_size);
                cn_sample_log_uniform(&m->rng, m->cfg.vocab_size, t->negatives, tb.cand_ids,
                                      &cand.tries, tb.mark);
            }
            cp = &cand;
        }
        const int64_t V = t->n_targets;
        st = cn_next_item_loss(tb.out, N, tb.tgt, head, head + V * C, (int32_t)V, C, cp, tb.dy,
                               dhead, dhead + V * C, loss, &tb.head, nt);
        if (st)
            return st;
    } else {
        for (int32_t b = 0; b < batch; b++)
            memcpy(tb.h + (int64_t)b * C, tb.out + ((int64_t)b * L + L - 1) * C,
                   sizeof(float) * (size_t)C);
        const int32_t *neg = NULL;
        if (t->loss != CN_LOSS_SOFTMAX) {
            if (samples) {
                neg = samples->ids;
            } else {
                for (int32_t b = 0; b < batch; b++)
                    tb.neg[b] = t->loss == CN_LOSS_BPR
                                    ? cn_sample_pop_rank(&m->rng, t->n_targets, t->rho, targets[b])
                                    : cn_sample_other_class(&m->rng, t->n_targets, targets[b]);
                neg = tb.neg;
            }
        }
        st = cn_table_loss(t->loss, tb.h, batch, targets, neg, head, t->n_targets, C, t->l2,
                           tb.dh, dhead, loss, &tb.head, nt);
        if (st)
            return st;
        memset(tb.dy, 0, sizeof(float) * (size_t)(N * C));
        for (int32_t b = 0; b < batch; b++)
            memcpy(tb.dy + ((int64_t)b * L + L - 1) * C, tb.dh + (int64_t)b * C,
                   sizeof(float) * (size_t)C);
    }

    /* backward */
    const int bb = all_grads || backbone_trainable(m);
    for (int32_t b = nb - 1; b >= 0; b--) {
        cn_block_params p;
        cn_model_block_params(m, view, b, &p);
        float *G = m->grads;
        cn_block_grads g;
        g.ln1_g = bb ? G + m->tensors[cn_tensor_index(b, CN_T_LN1_G)].offset : NULL;
        g.ln1_b = bb ? G + m->tensors[cn_tensor_index(b, CN_T_LN1_B)].offset : NULL;
        g.ln2_g = bb ? G + m->tensors[cn_tensor_index(b, CN_T_LN2_G)].offset : NULL;
        g.ln2_b = bb ? G + m->tensors[cn_tensor_index(b, CN_T_LN2_B)].offset : NULL;
        g.w1 = cn_conv_ptr(m, G, 2 * b);
        g.w2 = cn_conv_ptr(m, G, 2 * b + 1);
        int need_dx = b > 0 || bb;
        if ((st = cn_block_backward(&s, &p, &tb.acts[b], tb.dy, &g, need_dx, tb.t1, tb.t2,
                                    tb.conv_ws)))
            return st;
    }
    if (bb) {
        float *demb = m->grads + m->tensors[0].offset;
        memset(demb, 0, sizeof(float) * m->tensors[0].numel);
        if (tb.keep)
            cn_dropout_apply(tb.dy, tb.keep, drop_scale, NC, tb.dy, nt);
        cn_embedding_scatter_acc(demb, C, tb.ids, N, tb.dy, nt);
    }
    if (t->tied) {
        /* tied head: dL/dE gets the head's W gradient too; W itself is never
         * updated on its own (it is re-copied from E after every step) */
        const size_t nw = (size_t)t->n_targets * (size_t)C;
        if (bb) {
            float *demb = m->grads + m->tensors[0].offset;
            for (size_t i = 0; i < nw; i++)
                demb[i] += dhead[i];
        }
        memset(dhead, 0, sizeof(float) * nw);
    }
    return CONURE_OK;
}

conure_status cn_model_train_step(conure_model *m, int32_t task_id, const int32_t *items,
                                  int32_t batch, int32_t seq_len, const int32_t *targets,
                                  float *loss_out)
{
    cn_task *t = &m->tasks[task_id - 1];
    const cn_rng saved = m->rng;
    double loss = 0;
    conure_status st = cn_model_loss_grad(m, task_id, items, batch, seq_len, targets, NULL, 0, &loss);
    if (st) {
        m->rng = saved;
        return st;
    }
    int finite = isfinite(loss) && cn_all_finite(t->head_grad, t->head_numel);
    for (int32_t i = 0; i < m->n_tensors && finite; i++) {
        const cn_tensor *tt = &m->tensors[i];
        if (tt->ndim == 3 || backbone_trainable(m))
            finite = cn_all_finite(m->grads + tt->offset, tt->numel);
    }
    if (!finite) {
        m->rng = saved;
        return cn_fail(CONURE_E_NUMERIC,
                       "model_train_step: task %d: the loss (%g) or a gradient is not finite; no "
                       "parameter was changed (lower \"lr\"?)", task_id, loss);
    }
    const int nt = m->n_threads;
    const int finetune = m->cfg.training_mode == CN_MODE_FINETUNE;
    const int64_t step = ++m->phase_step;
    const float lr = t->lr, b1 = t->beta1, b2 = t->beta2, eps = t->eps;
    const size_t per = m->conv_numel;
    const uint8_t want = t->phase == CONURE_PHASE_DENSE ? 0 : (uint8_t)task_id;
    for (int32_t i = 0; i < m->n_tensors; i++) {
        const cn_tensor *tt = &m->tensors[i];
        float *p = m->params + tt->offset, *g = m->grads + tt->offset;
        float *am = m->adam_m + tt->offset, *av = m->adam_v + tt->offset;
        int is_conv = tt->ndim == 3;
        if (!is_conv) {
            if (backbone_trainable(m))
                cn_adam_update(p, g, am, av, tt->numel, NULL, 0, lr, b1, b2, eps, step, nt);
            continue;
        }
        if (finetune) {
            cn_adam_update(p, g, am, av, tt->numel, NULL, 0, lr, b1, b2, eps, step, nt);
            continue;
        }
        /* conv tensor: only weights whose owner is `want` are trained; the
         * gradient of every other weight is set to exactly zero. */
        int32_t b = (i - 1) / CN_T_PER_BLOCK;
        int32_t c = 2 * b + ((i - 1) % CN_T_PER_BLOCK == CN_T_CONV2 ? 1 : 0);
        const uint8_t *own = m->owner + (size_t)c * per;
        for (size_t j = 0; j < per; j++)
            if (own[j] != want)
                g[j] = 0.0f;
        cn_adam_update(p, g, am, av, per, own, want, lr, b1, b2, eps, step, nt);
    }
    /* a tied head's W mirrors the embedding: skip it, only the bias has its own update */
    const size_t skip = t->tied ? (size_t)t->n_targets * (size_t)m->cfg.channels : 0;
    cn_adam_update(t->head + skip, t->head_grad + skip, t->head_m + skip, t->head_v + skip,
                   t->head_numel - skip, NULL, 0, lr, b1, b2, eps, step, nt);
    if (backbone_trainable(m))
        cn_model_sync_tied(m); /* E changed: every tied head follows */
    if (loss_out)
        *loss_out = (float)loss;
    return CONURE_OK;
}
