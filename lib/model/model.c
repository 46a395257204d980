/* Model construction, layout, tasks and run-time settings. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "nn/nn.h"

conure_status cn_config_validate(const cn_config *c, const char *where)
{
    if (c->vocab_size < 2)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: vocab_size = %d must be >= 2", where,
                       c->vocab_size);
    if (c->channels < 1 || c->channels > 4096)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: channels = %d is outside [1, 4096]", where,
                       c->channels);
    if (c->kernel_width < 1 || c->kernel_width > 16)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: kernel_width = %d is outside [1, 16]", where,
                       c->kernel_width);
    if (c->max_len < 2 || c->max_len > 65536)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: max_len = %d is outside [2, 65536]", where,
                       c->max_len);
    if (c->n_blocks < 1 || c->n_blocks > CN_MAX_BLOCKS)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: %d blocks is outside [1, %d]", where,
                       c->n_blocks, CN_MAX_BLOCKS);
    for (int32_t b = 0; b < c->n_blocks; b++)
        if (c->dilations[b] < 1 || c->dilations[b] > 4096)
            return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: dilations[%d] = %d is outside [1, 4096]",
                           where, b, c->dilations[b]);
    if (c->block_order != CN_PRE_NORM && c->block_order != CN_POST_NORM)
        return cn_fail(CONURE_E_INVALID_ARG, "%s: block_order = %d is unknown", where,
                       c->block_order);
    if (c->training_mode != CN_MODE_CONURE && c->training_mode != CN_MODE_FINETUNE)
        return cn_fail(CONURE_E_INVALID_ARG, "%s: training_mode = %d is unknown", where,
                       c->training_mode);
    if (!(c->init_std > 0.0f && c->init_std <= 1.0f))
        return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: init_std = %g is outside (0, 1]", where,
                       (double)c->init_std);
    /* the embedding must be addressable: V*C floats */
    if ((uint64_t)c->vocab_size * (uint64_t)c->channels > ((uint64_t)1 << 34))
        return cn_fail(CONURE_E_OUT_OF_RANGE,
                       "%s: vocab_size * channels = %llu floats exceeds the 2^34 limit", where,
                       (unsigned long long)((uint64_t)c->vocab_size * (uint64_t)c->channels));
    return CONURE_OK;
}

int64_t cn_receptive_field(const cn_config *c)
{
    int64_t s = 0;
    for (int32_t b = 0; b < c->n_blocks; b++)
        s += 3 * (int64_t)c->dilations[b];
    return 1 + (int64_t)(c->kernel_width - 1) * s;
}

static void set_tensor(cn_tensor *t, const char *name, size_t *off, int32_t ndim, int64_t d0,
                       int64_t d1, int64_t d2)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->offset = *off;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim > 1 ? d1 : 0;
    t->shape[2] = ndim > 2 ? d2 : 0;
    t->numel = (size_t)d0 * (size_t)(ndim > 1 ? d1 : 1) * (size_t)(ndim > 2 ? d2 : 1);
    /* keep every tensor 64-byte aligned inside the arena */
    *off += (t->numel + 15) & ~(size_t)15;
}

conure_status cn_model_alloc(const cn_config *cfg, conure_model **out)
{
    conure_status st = cn_config_validate(cfg, "model");
    if (st)
        return st;
    conure_model *m = cn_alloc(1, sizeof *m);
    if (!m)
        return cn_fail(CONURE_E_NOMEM, "model: out of memory");
    m->cfg = *cfg;
    pthread_mutex_init(&m->err_lock, NULL);
    m->n_threads = 1;
    const int64_t C = cfg->channels, K = cfg->kernel_width, V = cfg->vocab_size;
    m->n_conv = 2 * cfg->n_blocks;
    m->conv_numel = (size_t)(K * C * C);
    m->n_tensors = 1 + CN_T_PER_BLOCK * cfg->n_blocks;
    m->tensors = cn_alloc((size_t)m->n_tensors, sizeof(cn_tensor));
    m->tasks = cn_alloc(CN_MAX_TASKS, sizeof(cn_task));
    if (!m->tensors || !m->tasks)
        goto nomem;
    size_t off = 0;
    set_tensor(&m->tensors[0], "embedding", &off, 2, V, C, 0);
    for (int32_t b = 0; b < cfg->n_blocks; b++) {
        char name[CN_MAX_TENSOR_NAME];
        static const char *parts[CN_T_PER_BLOCK] = {"ln1.gain", "ln1.bias", "conv1.weight",
                                                    "ln2.gain", "ln2.bias", "conv2.weight"};
        for (int p = 0; p < CN_T_PER_BLOCK; p++) {
            snprintf(name, sizeof name, "block%d.%s", (int)b, parts[p]);
            cn_tensor *t = &m->tensors[cn_tensor_index(b, p)];
            if (p == CN_T_CONV1 || p == CN_T_CONV2)
                set_tensor(t, name, &off, 3, K, C, C);
            else
                set_tensor(t, name, &off, 1, C, 0, 0);
        }
    }
    m->n_backbone = off;
    m->params = cn_alloc(off, sizeof(float));
    m->owner = cn_alloc((size_t)m->n_conv, m->conv_numel);
    if (!m->params || !m->owner)
        goto nomem;
    cn_rng_seed(&m->rng, cfg->seed, 0x5eed);
    *out = m;
    return CONURE_OK;
nomem:
    cn_model_destroy(m);
    return cn_fail(CONURE_E_NOMEM, "model: out of memory for vocab_size %d, channels %d",
                   cfg->vocab_size, cfg->channels);
}

void cn_model_init_backbone(conure_model *m)
{
    cn_rng r;
    cn_rng_seed(&r, m->cfg.seed, 0xb0de);
    for (int32_t i = 0; i < m->n_tensors; i++) {
        cn_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        if (t->ndim == 1) {
            int is_gain = strstr(t->name, "gain") != NULL;
            for (size_t j = 0; j < t->numel; j++)
                p[j] = is_gain ? 1.0f : 0.0f;
        } else {
            for (size_t j = 0; j < t->numel; j++)
                p[j] = cn_rng_truncated_normal(&r, m->cfg.init_std);
        }
    }
}

void cn_task_free(cn_task *t)
{
    if (!t->head_borrowed)
        cn_free(t->head);
    cn_free(t->head_grad);
    cn_free(t->head_m);
    cn_free(t->head_v);
    cn_free(t->conv_eff);
    memset(t, 0, sizeof *t);
}

void cn_model_destroy(conure_model *m)
{
    if (!m)
        return;
    if (m->tasks)
        for (int32_t k = 0; k < m->n_tasks; k++)
            cn_task_free(&m->tasks[k]);
    cn_free(m->tasks);
    cn_free(m->tensors);
    if (!m->params_borrowed)
        cn_free(m->params);
    if (m->map_base)
        munmap(m->map_base, m->map_len);
    cn_free(m->grads);
    cn_free(m->adam_m);
    cn_free(m->adam_v);
    cn_free(m->owner);
    cn_scratch_release(&m->train_ws);
    pthread_mutex_destroy(&m->err_lock);
    cn_free(m);
}

float *cn_conv_ptr(const conure_model *m, float *arena, int32_t t)
{
    int32_t b = t / 2;
    return arena + m->tensors[cn_tensor_index(b, (t % 2) ? CN_T_CONV2 : CN_T_CONV1)].offset;
}

int32_t cn_conv_dilation(const conure_model *m, int32_t t)
{
    return m->cfg.dilations[t / 2] * ((t % 2) ? 2 : 1);
}

conure_status cn_task_alloc_head(conure_model *m, cn_task *t, int init)
{
    const int64_t n = t->n_targets, C = m->cfg.channels;
    t->head_numel = (size_t)(n * C + (t->kind == CONURE_TASK_NEXT_ITEM ? n : 0));
    t->head = cn_alloc(t->head_numel, sizeof(float));
    t->head_grad = cn_alloc(t->head_numel, sizeof(float));
    t->head_m = cn_alloc(t->head_numel, sizeof(float));
    t->head_v = cn_alloc(t->head_numel, sizeof(float));
    if (!t->head || !t->head_grad || !t->head_m || !t->head_v) {
        cn_task_free(t);
        return cn_fail(CONURE_E_NOMEM, "model_add_task: out of memory for a head of %lld targets",
                       (long long)n);
    }
    if (init && t->tied) {
        /* W is the item embedding (n == vocab_size for next-item tasks) */
        memcpy(t->head, m->params + m->tensors[0].offset, sizeof(float) * (size_t)(n * C));
        for (int64_t i = 0; i < n; i++)
            t->head[n * C + i] = CN_T1_HEAD_BIAS;
    } else if (init) {
        /* a stream per task, so heads do not depend on training history */
        cn_rng r;
        cn_rng_seed(&r, m->cfg.seed, 0x4ead + (uint64_t)m->n_tasks);
        if (t->kind == CONURE_TASK_NEXT_ITEM) {
            for (int64_t i = 0; i < n * C; i++)
                t->head[i] = (float)(cn_rng_normal(&r) * CN_T1_HEAD_STD);
            for (int64_t i = 0; i < n; i++)
                t->head[n * C + i] = CN_T1_HEAD_BIAS;
        } else {
            for (int64_t i = 0; i < n * C; i++)
                t->head[i] = cn_rng_truncated_normal(&r, m->cfg.init_std);
        }
    }
    return CONURE_OK;
}

void cn_model_sync_tied(conure_model *m)
{
    const float *E = m->params + m->tensors[0].offset;
    for (int32_t i = 0; i < m->n_tasks; i++) {
        cn_task *t = &m->tasks[i];
        const size_t bytes = sizeof(float) * (size_t)t->n_targets * (size_t)m->cfg.channels;
        /* compare first: an unchanged head stays untouched (no page of a
         * file mapping is made private for nothing) */
        if (t->tied && t->head && memcmp(t->head, E, bytes))
            memcpy(t->head, E, bytes);
    }
}

conure_status cn_model_ensure_training(conure_model *m)
{
    if (m->grads && m->adam_m && m->adam_v)
        return CONURE_OK;
    float *g = m->grads ? m->grads : cn_alloc(m->n_backbone, sizeof(float));
    float *am = m->adam_m ? m->adam_m : cn_alloc(m->n_backbone, sizeof(float));
    float *av = m->adam_v ? m->adam_v : cn_alloc(m->n_backbone, sizeof(float));
    if (!g || !am || !av) {
        if (g != m->grads)
            cn_free(g);
        if (am != m->adam_m)
            cn_free(am);
        if (av != m->adam_v)
            cn_free(av);
        return cn_fail(CONURE_E_NOMEM, "model: out of memory for the training state (%zu floats)",
                       3 * m->n_backbone);
    }
    m->grads = g;
    m->adam_m = am;
    m->adam_v = av;
    return CONURE_OK;
}

void cn_task_release_training(cn_task *t)
{
    cn_free(t->head_grad);
    cn_free(t->head_m);
    cn_free(t->head_v);
    t->head_grad = t->head_m = t->head_v = NULL;
}

void cn_model_reset_adam(conure_model *m, cn_task *t)
{
    if (m->adam_m)
        memset(m->adam_m, 0, sizeof(float) * m->n_backbone);
    if (m->adam_v)
        memset(m->adam_v, 0, sizeof(float) * m->n_backbone);
    if (t && t->head_m) {
        memset(t->head_m, 0, sizeof(float) * t->head_numel);
        memset(t->head_v, 0, sizeof(float) * t->head_numel);
    }
    m->phase_step = 0;
}

conure_status cn_task_build_conv_eff(conure_model *m, int32_t task_id)
{
    cn_task *t = &m->tasks[task_id - 1];
    cn_free(t->conv_eff);
    t->conv_eff = NULL;
    if (m->cfg.training_mode != CN_MODE_CONURE)
        return CONURE_OK;
    const size_t per = m->conv_numel;
    t->conv_eff = cn_alloc((size_t)m->n_conv, per * sizeof(float));
    if (!t->conv_eff)
        return cn_fail(CONURE_E_NOMEM, "model_finish_task: out of memory for task %d's weights",
                       task_id);
    for (int32_t c = 0; c < m->n_conv; c++) {
        const float *w = cn_conv_ptr(m, m->params, c);
        const uint8_t *o = m->owner + (size_t)c * per;
        float *e = t->conv_eff + (size_t)c * per;
        for (size_t i = 0; i < per; i++)
            e[i] = (o[i] >= 1 && o[i] <= task_id) ? w[i] : 0.0f;
    }
    return CONURE_OK;
}

int cn_model_conv_view_needs_buffer(const conure_model *m, int32_t task_id)
{
    const cn_task *t = &m->tasks[task_id - 1];
    if (m->cfg.training_mode != CN_MODE_CONURE)
        return 0;
    if (t->phase == CONURE_PHASE_DONE)
        return t->conv_eff == NULL;
    return t->phase == CONURE_PHASE_RETRAIN;
}

const float *cn_model_conv_view(const conure_model *m, int32_t task_id, float *buf)
{
    const cn_task *t = &m->tasks[task_id - 1];
    if (m->cfg.training_mode != CN_MODE_CONURE || t->phase == CONURE_PHASE_DENSE)
        return NULL; /* the arena itself: every conv weight */
    if (t->phase == CONURE_PHASE_DONE && t->conv_eff)
        return t->conv_eff;
    /* retrain (or a DONE task without cache): weights owned by tasks 1..task_id */
    const size_t per = m->conv_numel;
    for (int32_t c = 0; c < m->n_conv; c++) {
        const float *w = cn_conv_ptr(m, m->params, c);
        const uint8_t *o = m->owner + (size_t)c * per;
        float *e = buf + (size_t)c * per;
        for (size_t i = 0; i < per; i++)
            e[i] = (o[i] >= 1 && o[i] <= task_id) ? w[i] : 0.0f;
    }
    return buf;
}

void cn_model_block_params(const conure_model *m, const float *view, int32_t b,
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

size_t cn_model_conv_workspace(const conure_model *m, int32_t batch, int32_t length)
{
    size_t mx = 0;
    for (int32_t c = 0; c < m->n_conv; c++) {
        conure_conv_shape s;
        memset(&s, 0, sizeof s);
        s.struct_size = (uint32_t)sizeof s;
        s.batch = batch;
        s.length = length;
        s.in_channels = s.out_channels = m->cfg.channels;
        s.kernel_width = m->cfg.kernel_width;
        s.dilation = cn_conv_dilation(m, c);
        s.n_threads = m->n_threads;
        size_t w = cn_conv_workspace(m->backend, &s);
        mx = w > mx ? w : mx;
    }
    return mx;
}

int64_t cn_model_n_parameters(const conure_model *m)
{
    int64_t n = 0;
    for (int32_t i = 0; i < m->n_tensors; i++)
        n += (int64_t)m->tensors[i].numel;
    for (int32_t k = 0; k < m->n_tasks; k++)
        n += (int64_t)m->tasks[k].head_numel;
    return n;
}

void cn_model_record_error(const conure_model *m)
{
    if (!m)
        return;
    conure_model *mm = (conure_model *)m; /* the error slot is mutable state */
    pthread_mutex_lock(&mm->err_lock);
    snprintf(mm->errmsg, sizeof mm->errmsg, "%s", cn_error_text());
    pthread_mutex_unlock(&mm->err_lock);
}

conure_status cn_model_apply_runtime(conure_model *m, const conure_options *o, const char *where)
{
    const conure_backend *b;
    if (o && o->is_set[CN_OPT_BACKEND]) {
        b = cn_backend_find(o->backend);
        if (!b)
            return cn_fail(CONURE_E_BACKEND, "%s: backend \"%s\" is not registered", where,
                           o->backend);
    } else {
        b = cn_backend_default();
        if (!b)
            return CONURE_E_BACKEND; /* message set by cn_backend_default */
    }
    m->backend = b;
    m->n_threads = cn_resolve_threads(o ? o->threads : 1); /* options default to 1 */
    return CONURE_OK;
}
