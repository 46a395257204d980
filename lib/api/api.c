/* The exported model API: argument checking, error messages, handle
 * lifetime.  Everything below calls into model/ only after every pointer,
 * size, id and state has been validated, so bad input never reaches the
 * numeric code.  Messages start with the function name without "conure_". */
#include <math.h>
#include <string.h>

#include "eval/eval.h"
#include "kernels/kernels.h"
#include "model/model.h"

#define CN_MAX_BATCH 65536

/* Records the thread's message on the model and passes the status through. */
static conure_status mfail(const conure_model *m, conure_status st)
{
    cn_model_record_error(m);
    return st;
}

static const char *kind_name(int32_t kind)
{
    switch (kind) {
    case CONURE_TASK_NEXT_ITEM: return "next-item";
    case CONURE_TASK_ITEM_REC: return "item recommendation";
    case CONURE_TASK_CLASSIFICATION: return "classification";
    default: return "unknown";
    }
}

static const char *phase_name(int32_t phase)
{
    switch (phase) {
    case CONURE_PHASE_DENSE: return "DENSE";
    case CONURE_PHASE_RETRAIN: return "RETRAIN";
    case CONURE_PHASE_DONE: return "DONE";
    default: return "unknown";
    }
}

static conure_status check_task(const conure_model *m, int32_t task, const char *fn)
{
    if (m->n_tasks == 0)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: task = %d, but the model has no tasks yet", fn,
                       task);
    if (task < 1 || task > m->n_tasks)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: task = %d is outside [1, %d]", fn, task,
                       m->n_tasks);
    return CONURE_OK;
}

/* items [batch, seq_len] with ids in [0, vocab_size). */
static conure_status check_items(const conure_model *m, const int32_t *items, int32_t batch,
                                 int32_t seq_len, int32_t min_len, int32_t extra, const char *fn)
{
    if (!items)
        return cn_fail(CONURE_E_NULL_ARG, "%s: items is NULL", fn);
    if (batch < 1 || batch > CN_MAX_BATCH)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: batch = %d is outside [1, %d]", fn, batch,
                       CN_MAX_BATCH);
    if (seq_len < min_len || seq_len > m->cfg.max_len - extra) /* no overflow */
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: seq_len = %d is outside [%d, %d]%s", fn, seq_len,
                       min_len, m->cfg.max_len - extra,
                       extra ? " (one position is kept for the separator)" : "");
    const int32_t V = m->cfg.vocab_size;
    for (int32_t b = 0; b < batch; b++) {
        const int32_t *row = items + (int64_t)b * seq_len;
        int seen_item = 0;
        for (int32_t j = 0; j < seq_len; j++) {
            if (row[j] < 0 || row[j] >= V)
                return cn_fail(CONURE_E_OUT_OF_RANGE,
                               "%s: items[%d][%d] = %d is outside [0, %d) (vocab_size %d)", fn, b,
                               j, row[j], V, V);
            if (row[j] != 0)
                seen_item = 1;
            else if (seen_item)
                return cn_fail(CONURE_E_INVALID_ARG,
                               "%s: items[%d][%d] = 0 follows an item: rows must be left-padded "
                               "(0 only before the first item)", fn, b, j);
        }
    }
    return CONURE_OK;
}

/* ---- create / free ----------------------------------------------------------- */

CONURE_API conure_status conure_model_create(const conure_options *o, conure_model **out)
{
    cn_clear_error();
    if (!o)
        return cn_fail(CONURE_E_NULL_ARG, "model_create: options is NULL (vocab_size is required)");
    if (!out)
        return cn_fail(CONURE_E_NULL_ARG, "model_create: out is NULL");
    conure_status st = cn_options_check_scope(o, CN_SCOPE_MODEL, "model_create");
    if (st)
        return st;
    if (!o->is_set[CN_OPT_VOCAB_SIZE])
        return cn_fail(CONURE_E_INVALID_ARG, "model_create: option \"vocab_size\" is required");
    cn_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.vocab_size = (int32_t)o->vocab_size;
    cfg.channels = (int32_t)o->channels;
    cfg.kernel_width = (int32_t)o->kernel_width;
    cfg.max_len = (int32_t)o->max_len;
    cfg.n_blocks = o->n_blocks;
    memcpy(cfg.dilations, o->dilations, sizeof cfg.dilations);
    cfg.block_order = o->block_order;
    cfg.training_mode = o->training_mode;
    cfg.seed = (uint64_t)o->seed;
    cfg.init_std = (float)o->init_std;
    conure_model *m = NULL;
    if ((st = cn_model_alloc(&cfg, &m)))
        return st;
    cn_model_init_backbone(m);
    if ((st = cn_model_apply_runtime(m, o, "model_create"))) {
        cn_model_destroy(m);
        return st;
    }
    *out = m;
    return CONURE_OK;
}

CONURE_API void conure_model_free(conure_model *model)
{
    cn_model_destroy(model);
}

/* ---- tasks --------------------------------------------------------------------- */

CONURE_API conure_status conure_model_add_task(conure_model *m, conure_task_kind kind,
                                               int32_t n_targets, const conure_options *o,
                                               int32_t *task_id)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_add_task: model is NULL");
    if (!task_id)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_add_task: task_id is NULL"));
    if (kind != CONURE_TASK_NEXT_ITEM && kind != CONURE_TASK_ITEM_REC &&
        kind != CONURE_TASK_CLASSIFICATION)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG, "model_add_task: kind = %d is not a task kind",
                                (int)kind));
    conure_options defaults;
    if (!o) {
        cn_options_defaults(&defaults);
        o = &defaults;
    }
    conure_status st = cn_options_check_scope(o, CN_SCOPE_TASK, "model_add_task");
    if (st)
        return mfail(m, st);
    const int32_t V = m->cfg.vocab_size;
    if (kind == CONURE_TASK_NEXT_ITEM && n_targets != V)
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE,
                                "model_add_task: n_targets = %d must equal vocab_size = %d for a "
                                "next-item task", n_targets, V));
    if (n_targets < 2)
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE, "model_add_task: n_targets = %d must be >= 2",
                                n_targets));
    if ((uint64_t)n_targets * (uint64_t)m->cfg.channels > ((uint64_t)1 << 34))
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE,
                                "model_add_task: n_targets = %d times channels exceeds 2^34 floats",
                                n_targets));
    if (m->n_tasks >= CN_MAX_TASKS)
        return mfail(m, cn_fail(CONURE_E_STATE, "model_add_task: the model already has %d tasks",
                                CN_MAX_TASKS));
    for (int32_t k = 0; k < m->n_tasks; k++)
        if (m->tasks[k].phase != CONURE_PHASE_DONE)
            return mfail(m, cn_fail(CONURE_E_STATE,
                                    "model_add_task: task %d is in phase %s; finish it first "
                                    "(conure_model_finish_task)", k + 1,
                                    phase_name(m->tasks[k].phase)));
    /* loss for the kind */
    int loss = o->loss;
    if (kind == CONURE_TASK_NEXT_ITEM) {
        if (loss == CN_LOSS_DEFAULT)
            loss = CN_LOSS_SAMPLED_SOFTMAX;
        if (loss != CN_LOSS_SAMPLED_SOFTMAX && loss != CN_LOSS_SOFTMAX)
            return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                    "model_add_task: loss must be \"sampled_softmax\" or \"softmax\" for "
                                    "a next-item task"));
    } else if (kind == CONURE_TASK_ITEM_REC) {
        if (loss == CN_LOSS_DEFAULT)
            loss = CN_LOSS_BPR;
        if (loss != CN_LOSS_BPR)
            return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                    "model_add_task: loss must be \"bpr\" for an item recommendation "
                                    "task"));
    } else {
        if (loss == CN_LOSS_DEFAULT)
            loss = CN_LOSS_BCE;
        if (loss != CN_LOSS_BCE && loss != CN_LOSS_SOFTMAX)
            return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                    "model_add_task: loss must be \"bce\" or \"softmax\" for a "
                                    "classification task"));
    }
    /* an option set for a task it cannot apply to is a mistake, not a no-op */
    if (o->is_set[CN_OPT_NEGATIVES] && loss != CN_LOSS_SAMPLED_SOFTMAX)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "model_add_task: option \"negatives\" applies to loss "
                                "\"sampled_softmax\" only"));
    if (o->is_set[CN_OPT_RHO] && loss != CN_LOSS_BPR)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "model_add_task: option \"rho\" (the BPR negative sampler) applies "
                                "to item recommendation tasks only"));
    if (o->is_set[CN_OPT_TIE_EMBEDDING] && o->tie_embedding && kind != CONURE_TASK_NEXT_ITEM)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "model_add_task: option \"tie_embedding\" applies to next-item "
                                "tasks only (their targets are the input items)"));
    if (o->is_set[CN_OPT_L2] && kind == CONURE_TASK_NEXT_ITEM)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "model_add_task: option \"l2\" (on a target table) does not apply "
                                "to a next-item task"));
    if (o->is_set[CN_OPT_RELEASE_RATIO] && m->cfg.training_mode != CN_MODE_CONURE)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "model_add_task: option \"release_ratio\" needs training_mode "
                                "\"conure\" (there is no pruning in \"finetune\")"));
    int32_t negatives = 0;
    if (loss == CN_LOSS_SAMPLED_SOFTMAX) {
        int64_t want = o->is_set[CN_OPT_NEGATIVES] && o->negatives > 0 ? o->negatives
                                                                         : (int64_t)(0.2 * V);
        if (want < 1)
            want = 1;
        if (want > V - 2) {
            if (o->is_set[CN_OPT_NEGATIVES] && o->negatives > 0)
                return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE,
                                        "model_add_task: negatives = %lld must be <= vocab_size - 2 = %d",
                                        (long long)o->negatives, V - 2));
            want = V - 2;
        }
        if (want < 1)
            return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE,
                                    "model_add_task: vocab_size = %d is too small for sampled softmax; "
                                    "set loss \"softmax\"", V));
        negatives = (int32_t)want;
    }
    /* capacity: later tasks in conure mode need free conv weights */
    if (m->cfg.training_mode == CN_MODE_CONURE && m->n_tasks > 0) {
        const size_t per = m->conv_numel;
        for (int32_t c = 0; c < m->n_conv; c++) {
            const uint8_t *own = m->owner + (size_t)c * per;
            size_t n_free = 0;
            for (size_t i = 0; i < per; i++)
                n_free += own[i] == 0;
            if (n_free == 0)
                return mfail(m, cn_fail(CONURE_E_CAPACITY,
                                        "model_add_task: conv tensor %d (block %d, conv%d) has no free "
                                        "weights left; discard a task or use release_ratio > 0",
                                        c, c / 2, c % 2 + 1));
        }
    }
    cn_task t;
    memset(&t, 0, sizeof t);
    t.kind = kind;
    t.n_targets = n_targets;
    t.phase = CONURE_PHASE_DENSE;
    t.loss = loss;
    t.negatives = negatives;
    t.lr = (float)(o->is_set[CN_OPT_LR] ? o->lr : (kind == CONURE_TASK_NEXT_ITEM ? 1e-3 : 1e-4));
    t.l2 = (float)o->l2;
    t.rho = (float)o->rho;
    t.release_ratio = (float)o->release_ratio;
    t.beta1 = (float)o->adam_beta1;
    t.beta2 = (float)o->adam_beta2;
    t.eps = (float)o->adam_eps;
    t.dropout = (float)(floor(o->dropout * 256.0 + 0.5) / 256.0); /* masks use one byte */
    t.tied = kind == CONURE_TASK_NEXT_ITEM && o->tie_embedding ? 1 : 0;
    if ((st = cn_model_ensure_training(m)))
        return mfail(m, st);
    if ((st = cn_task_alloc_head(m, &t, 1)))
        return mfail(m, st);
    m->tasks[m->n_tasks] = t;
    m->n_tasks++;
    cn_model_reset_adam(m, &m->tasks[m->n_tasks - 1]);
    *task_id = m->n_tasks;
    return CONURE_OK;
}

CONURE_API conure_status conure_model_train_step(conure_model *m, int32_t task,
                                                 const int32_t *items, int32_t batch,
                                                 int32_t seq_len, const int32_t *targets,
                                                 float *loss)
{
    cn_clear_error();
    const char *fn = "model_train_step";
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "%s: model is NULL", fn);
    conure_status st = check_task(m, task, fn);
    if (st)
        return mfail(m, st);
    const cn_task *t = &m->tasks[task - 1];
    const int next_item = t->kind == CONURE_TASK_NEXT_ITEM;
    if ((st = check_items(m, items, batch, seq_len, next_item ? 2 : 1, next_item ? 0 : 1, fn)))
        return mfail(m, st);
    if (t->phase != CONURE_PHASE_DENSE && t->phase != CONURE_PHASE_RETRAIN)
        return mfail(m, cn_fail(CONURE_E_STATE,
                                "%s: task %d is %s; only DENSE or RETRAIN tasks train", fn, task,
                                phase_name(t->phase)));
    if (next_item) {
        if (targets)
            return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                    "%s: targets must be NULL for a next-item task (the targets "
                                    "are the next items of each row)", fn));
        int any = 0;
        for (int32_t b = 0; b < batch && !any; b++)
            for (int32_t j = 1; j < seq_len; j++)
                if (items[(int64_t)b * seq_len + j] != 0) {
                    any = 1;
                    break;
                }
        if (!any)
            return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                    "%s: items has no non-padding target (every items[b][1..] is "
                                    "0)", fn));
    } else {
        if (!targets)
            return mfail(m, cn_fail(CONURE_E_NULL_ARG, "%s: targets is NULL (a %s task needs "
                                    "one target per row)", fn, kind_name(t->kind)));
        for (int32_t b = 0; b < batch; b++)
            if (targets[b] < 0 || targets[b] >= t->n_targets)
                return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE,
                                        "%s: targets[%d] = %d is outside [0, %d)", fn, b,
                                        targets[b], t->n_targets));
    }
    if ((st = cn_model_train_step(m, task, items, batch, seq_len, targets, loss)))
        return mfail(m, st);
    return CONURE_OK;
}

CONURE_API conure_status conure_model_prune(conure_model *m, int32_t task)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_prune: model is NULL");
    conure_status st = check_task(m, task, "model_prune");
    if (st)
        return mfail(m, st);
    if (m->cfg.training_mode != CN_MODE_CONURE)
        return mfail(m, cn_fail(CONURE_E_STATE,
                                "model_prune: training_mode is \"finetune\": there are no owners to "
                                "prune; call conure_model_finish_task"));
    if (m->tasks[task - 1].phase != CONURE_PHASE_DENSE)
        return mfail(m, cn_fail(CONURE_E_STATE, "model_prune: task %d is %s; only a DENSE task can be "
                                "pruned (once)", task, phase_name(m->tasks[task - 1].phase)));
    if ((st = cn_model_prune(m, task)))
        return mfail(m, st);
    return CONURE_OK;
}

CONURE_API conure_status conure_model_finish_task(conure_model *m, int32_t task)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_finish_task: model is NULL");
    conure_status st = check_task(m, task, "model_finish_task");
    if (st)
        return mfail(m, st);
    cn_task *t = &m->tasks[task - 1];
    int want = m->cfg.training_mode == CN_MODE_CONURE ? CONURE_PHASE_RETRAIN : CONURE_PHASE_DENSE;
    if (t->phase != want)
        return mfail(m, cn_fail(CONURE_E_STATE, "model_finish_task: task %d is %s; in training_mode "
                                "\"%s\" a task finishes from %s%s", task, phase_name(t->phase),
                                want == CONURE_PHASE_RETRAIN ? "conure" : "finetune",
                                phase_name(want),
                                t->phase == CONURE_PHASE_DENSE ? " (call conure_model_prune "
                                "first)" : ""));
    if ((st = cn_task_build_conv_eff(m, task)))
        return mfail(m, st);
    t->phase = CONURE_PHASE_DONE;
    cn_model_reset_adam(m, t);
    cn_task_release_training(t); /* a DONE task trains no more */
    return CONURE_OK;
}

CONURE_API conure_status conure_model_discard_task(conure_model *m, int32_t task)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_discard_task: model is NULL");
    conure_status st = check_task(m, task, "model_discard_task");
    if (st)
        return mfail(m, st);
    if (task != m->n_tasks)
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE,
                                "model_discard_task: task = %d is not the last task (%d); only the "
                                "most recent task can be discarded", task, m->n_tasks));
    const size_t total = (size_t)m->n_conv * m->conv_numel;
    for (size_t i = 0; i < total; i++)
        if (m->owner[i] == (uint8_t)task)
            m->owner[i] = 0;
    cn_task_free(&m->tasks[task - 1]);
    m->n_tasks--;
    if (m->n_tasks == 0)
        m->backbone_frozen = 0;
    cn_model_reset_adam(m, NULL);
    return CONURE_OK;
}

/* ---- inference ------------------------------------------------------------------ */

static conure_status check_infer(const conure_model *m, int32_t task, const int32_t *items,
                                 int32_t batch, int32_t seq_len, const char *fn)
{
    conure_status st = check_task(m, task, fn);
    if (st)
        return st;
    const cn_task *t = &m->tasks[task - 1];
    if (t->phase != CONURE_PHASE_DONE && !m->eval_unfinished)
        return cn_fail(CONURE_E_STATE,
                       "%s: task %d is %s, not DONE: its outputs would still change (finish it, "
                       "or set the run-time setting \"eval_unfinished\" to 1 to monitor training)",
                       fn, task, phase_name(t->phase));
    const int next_item = t->kind == CONURE_TASK_NEXT_ITEM;
    return check_items(m, items, batch, seq_len, 1, next_item ? 0 : 1, fn);
}

CONURE_API conure_status conure_model_scores(const conure_model *m, int32_t task,
                                             const int32_t *items, int32_t batch, int32_t seq_len,
                                             float *scores, size_t scores_len)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_scores: model is NULL");
    conure_status st = check_infer(m, task, items, batch, seq_len, "model_scores");
    if (st)
        return mfail(m, st);
    if (!scores)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_scores: scores is NULL"));
    const size_t need = (size_t)batch * (size_t)m->tasks[task - 1].n_targets;
    if (scores_len < need)
        return mfail(m, cn_fail(CONURE_E_BUFFER_TOO_SMALL,
                                "model_scores: scores_len = %zu is less than batch * n_targets = %zu",
                                scores_len, need));
    float *tmp = cn_alloc(need, sizeof(float));
    if (!tmp)
        return mfail(m, cn_fail(CONURE_E_NOMEM, "model_scores: out of memory"));
    if ((st = cn_model_scores(m, task, items, batch, seq_len, tmp))) {
        cn_free(tmp);
        return mfail(m, st);
    }
    memcpy(scores, tmp, need * sizeof(float));
    cn_free(tmp);
    return CONURE_OK;
}

CONURE_API conure_status conure_model_top_k(const conure_model *m, int32_t task,
                                            const int32_t *items, int32_t batch, int32_t seq_len,
                                            int32_t k, uint32_t flags, int32_t *ids, float *scores,
                                            size_t out_len)
{
    cn_clear_error();
    const char *fn = "model_top_k";
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "%s: model is NULL", fn);
    conure_status st = check_infer(m, task, items, batch, seq_len, fn);
    if (st)
        return mfail(m, st);
    const cn_task *t = &m->tasks[task - 1];
    if (!ids)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "%s: ids is NULL", fn));
    if (k < 1 || k > t->n_targets)
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE, "%s: k = %d is outside [1, %d]", fn, k,
                                t->n_targets));
    if (out_len < (size_t)batch * (size_t)k)
        return mfail(m, cn_fail(CONURE_E_BUFFER_TOO_SMALL,
                                "%s: out_len = %zu is less than batch * k = %zu", fn, out_len,
                                (size_t)batch * (size_t)k));
    if (flags & ~CONURE_TOPK_EXCLUDE_HISTORY)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG, "%s: flags = 0x%x has unknown bits", fn,
                                flags));
    if ((flags & CONURE_TOPK_EXCLUDE_HISTORY) && t->kind != CONURE_TASK_NEXT_ITEM)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "%s: flags: CONURE_TOPK_EXCLUDE_HISTORY needs a next-item task "
                                "(task %d is %s)", fn, task, kind_name(t->kind)));
    const int32_t n = t->n_targets;
    float *s = cn_alloc((size_t)batch * (size_t)n, sizeof(float));
    int32_t *oid = cn_alloc((size_t)batch * (size_t)k, sizeof(int32_t));
    float *oval = cn_alloc((size_t)batch * (size_t)k, sizeof(float));
    void *sort = k > CN_TOPK_SORT_MIN ? cn_alloc(cn_topk_scratch_bytes(n), 1) : NULL;
    if (!s || !oid || !oval || (k > CN_TOPK_SORT_MIN && !sort)) {
        st = cn_fail(CONURE_E_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    if ((st = cn_model_scores(m, task, items, batch, seq_len, s)))
        goto done;
    for (int32_t b = 0; b < batch; b++) {
        float *row = s + (int64_t)b * n;
        if (flags & CONURE_TOPK_EXCLUDE_HISTORY)
            for (int32_t j = 0; j < seq_len; j++)
                row[items[(int64_t)b * seq_len + j]] = -INFINITY;
        if (sort)
            cn_topk_row_sorted(row, n, k, oid + (int64_t)b * k, oval + (int64_t)b * k, sort);
        else
            cn_topk_row(row, n, k, oid + (int64_t)b * k, oval + (int64_t)b * k);
    }
    memcpy(ids, oid, sizeof(int32_t) * (size_t)batch * (size_t)k);
    if (scores)
        memcpy(scores, oval, sizeof(float) * (size_t)batch * (size_t)k);
done:
    cn_free(s);
    cn_free(oid);
    cn_free(oval);
    cn_free(sort);
    return st ? mfail(m, st) : CONURE_OK;
}

CONURE_API conure_status conure_model_user_vectors(const conure_model *m, int32_t task,
                                                   const int32_t *items, int32_t batch,
                                                   int32_t seq_len, float *out, size_t out_len)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_user_vectors: model is NULL");
    conure_status st = check_infer(m, task, items, batch, seq_len, "model_user_vectors");
    if (st)
        return mfail(m, st);
    if (!out)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_user_vectors: out is NULL"));
    const size_t need = (size_t)batch * (size_t)m->cfg.channels;
    if (out_len < need)
        return mfail(m, cn_fail(CONURE_E_BUFFER_TOO_SMALL,
                                "model_user_vectors: out_len = %zu is less than batch * channels = %zu",
                                out_len, need));
    float *tmp = cn_alloc(need, sizeof(float));
    if (!tmp)
        return mfail(m, cn_fail(CONURE_E_NOMEM, "model_user_vectors: out of memory"));
    if ((st = cn_model_user_vectors(m, task, items, batch, seq_len, tmp))) {
        cn_free(tmp);
        return mfail(m, st);
    }
    memcpy(out, tmp, need * sizeof(float));
    cn_free(tmp);
    return CONURE_OK;
}

/* ---- queries and settings ----------------------------------------------------- */

CONURE_API conure_status conure_model_get_int(const conure_model *m, const char *key,
                                              int64_t *value)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_get_int: model is NULL");
    if (!key)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_get_int: key is NULL"));
    if (!value)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_get_int: value is NULL"));
    int64_t v;
    if (!strcmp(key, "vocab_size"))
        v = m->cfg.vocab_size;
    else if (!strcmp(key, "channels"))
        v = m->cfg.channels;
    else if (!strcmp(key, "kernel_width"))
        v = m->cfg.kernel_width;
    else if (!strcmp(key, "n_blocks"))
        v = m->cfg.n_blocks;
    else if (!strcmp(key, "n_conv_tensors"))
        v = m->n_conv;
    else if (!strcmp(key, "max_len"))
        v = m->cfg.max_len;
    else if (!strcmp(key, "seed"))
        v = (int64_t)m->cfg.seed;
    else if (!strcmp(key, "threads"))
        v = m->n_threads;
    else if (!strcmp(key, "n_tasks"))
        v = m->n_tasks;
    else if (!strcmp(key, "n_parameters"))
        v = cn_model_n_parameters(m);
    else if (!strcmp(key, "receptive_field"))
        v = cn_receptive_field(&m->cfg);
    else if (!strcmp(key, "training_mode"))
        v = m->cfg.training_mode;
    else if (!strcmp(key, "block_order"))
        v = m->cfg.block_order;
    else if (!strcmp(key, "eval_unfinished"))
        v = m->eval_unfinished;
    else
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG, "model_get_int: unknown key \"%.64s\"", key));
    *value = v;
    return CONURE_OK;
}

CONURE_API conure_status conure_model_set_int(conure_model *m, const char *key, int64_t value)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_set_int: model is NULL");
    if (!key)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_set_int: key is NULL"));
    if (!strcmp(key, "eval_unfinished")) {
        if (value != 0 && value != 1)
            return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE,
                                    "model_set_int: eval_unfinished = %lld must be 0 or 1",
                                    (long long)value));
        m->eval_unfinished = (int32_t)value;
        return CONURE_OK;
    }
    if (strcmp(key, "threads") != 0)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "model_set_int: key \"%.64s\" is not a run-time setting (\"threads\" "
                                "or \"eval_unfinished\")", key));
    if (value < 0 || value > 1024)
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE, "model_set_int: threads = %lld is outside "
                                "[0, 1024]", (long long)value));
    m->n_threads = cn_resolve_threads(value);
    return CONURE_OK;
}

CONURE_API conure_status conure_model_set_string(conure_model *m, const char *key,
                                                 const char *value)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_set_string: model is NULL");
    if (!key)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_set_string: key is NULL"));
    if (!value)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_set_string: value is NULL"));
    if (strcmp(key, "backend") != 0)
        return mfail(m, cn_fail(CONURE_E_INVALID_ARG,
                                "model_set_string: key \"%.64s\" is not a run-time setting (only "
                                "\"backend\")", key));
    const conure_backend *b = cn_backend_find(value);
    if (!b)
        return mfail(m, cn_fail(CONURE_E_BACKEND, "model_set_string: backend \"%.64s\" is not "
                                "registered", value));
    m->backend = b;
    return CONURE_OK;
}

CONURE_API conure_status conure_model_task_info(const conure_model *m, int32_t task,
                                                int32_t *kind, int32_t *n_targets, int32_t *phase)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_task_info: model is NULL");
    conure_status st = check_task(m, task, "model_task_info");
    if (st)
        return mfail(m, st);
    const cn_task *t = &m->tasks[task - 1];
    if (kind)
        *kind = t->kind;
    if (n_targets)
        *n_targets = t->n_targets;
    if (phase)
        *phase = t->phase;
    return CONURE_OK;
}

CONURE_API conure_status conure_model_capacity(const conure_model *m, int32_t tensor,
                                               int64_t *counts, int32_t n_counts)
{
    cn_clear_error();
    if (!m)
        return cn_fail(CONURE_E_NULL_ARG, "model_capacity: model is NULL");
    if (!counts)
        return mfail(m, cn_fail(CONURE_E_NULL_ARG, "model_capacity: counts is NULL"));
    if (n_counts < 1 || n_counts > 256)
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE, "model_capacity: n_counts = %d is outside "
                                "[1, 256]", n_counts));
    if (tensor < -1 || tensor >= m->n_conv)
        return mfail(m, cn_fail(CONURE_E_OUT_OF_RANGE, "model_capacity: tensor = %d is outside "
                                "[-1, %d]", tensor, m->n_conv - 1));
    int64_t c[256] = {0};
    const size_t per = m->conv_numel;
    int32_t t0 = tensor < 0 ? 0 : tensor, t1 = tensor < 0 ? m->n_conv : tensor + 1;
    for (int32_t t = t0; t < t1; t++) {
        const uint8_t *own = m->owner + (size_t)t * per;
        for (size_t i = 0; i < per; i++)
            c[own[i]]++;
    }
    for (int32_t i = 0; i < n_counts; i++)
        counts[i] = c[i];
    return CONURE_OK;
}

CONURE_API size_t conure_model_last_error(const conure_model *m, char *buf, size_t cap)
{
    if (!m) {
        if (buf && cap)
            buf[0] = '\0';
        return 0;
    }
    conure_model *mm = (conure_model *)m;
    pthread_mutex_lock(&mm->err_lock);
    size_t n = strlen(mm->errmsg);
    if (buf && cap) {
        size_t c = n < cap - 1 ? n : cap - 1;
        memcpy(buf, mm->errmsg, c);
        buf[c] = '\0';
    }
    pthread_mutex_unlock(&mm->err_lock);
    return n;
}

CONURE_API const char *conure_last_error(void)
{
    return cn_error_text();
}
