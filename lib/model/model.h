/* The model: configuration, the parameter arena and its layout table, tasks
 * with their heads, per-weight owners, phases and Adam state.  This is the one
 * place that knows the Conure cycle (method §4); nn/ computes layers, kernels/
 * runs convolutions, io/ serialises this struct. */
#ifndef CN_MODEL_H
#define CN_MODEL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "conure/conure_backend.h"

#define CN_MAX_TASKS 255           /* owner bytes hold task ids 1..255 */
#define CN_LN_EPS 1e-8f            /* layer norm epsilon (method §2) */
#define CN_T1_HEAD_STD 0.01f       /* next-item head init N(0, 0.01) (method §3) */
#define CN_T1_HEAD_BIAS 0.1f       /* next-item head bias init (method §3) */
#define CN_MAX_TENSOR_NAME 24

/* Hyperparameters fixed at creation (stored in model files). */
typedef struct cn_config {
    int32_t vocab_size;     /* input ids incl. padding 0 */
    int32_t channels;       /* C */
    int32_t kernel_width;   /* K */
    int32_t max_len;        /* longest accepted seq_len */
    int32_t n_blocks;
    int32_t dilations[CN_MAX_BLOCKS];  /* block b: convs with d_b and 2 d_b */
    int32_t block_order;    /* enum cn_block_order */
    int32_t training_mode;  /* enum cn_training_mode */
    uint64_t seed;
    float init_std;
} cn_config;

/* One entry of the backbone layout table (llm.c style: one flat arena). */
typedef struct cn_tensor {
    char name[CN_MAX_TENSOR_NAME];  /* "embedding", "block3.ln2.gain", "block3.conv1.weight" */
    size_t offset;                  /* in floats from the start of the arena */
    size_t numel;
    int32_t ndim;
    int64_t shape[3];
} cn_tensor;

/* Backbone arena order: embedding [V,C]; then per block b:
 *   ln1.gain [C], ln1.bias [C], conv1.weight [K,C,C] (dilation d_b),
 *   ln2.gain [C], ln2.bias [C], conv2.weight [K,C,C] (dilation 2 d_b).
 * Conv tensor index t = 2b (conv1) or 2b+1 (conv2); owners are one byte per
 * conv weight, tensor t at owner[t * conv_numel]. */
enum { CN_T_LN1_G = 0, CN_T_LN1_B, CN_T_CONV1, CN_T_LN2_G, CN_T_LN2_B, CN_T_CONV2,
       CN_T_PER_BLOCK };

/* Run-time state of a task (method §3, §4). */
typedef struct cn_task {
    int32_t kind;       /* conure_task_kind */
    int32_t n_targets;
    int32_t phase;      /* conure_phase */
    int32_t loss;       /* enum cn_loss, resolved (never CN_LOSS_DEFAULT) */
    int32_t negatives;  /* sampled softmax negatives (resolved) */
    float lr, l2, rho, release_ratio, beta1, beta2, eps;
    float dropout;      /* training-only dropout rate, a multiple of 1/256 in [0, 0.9] */
    int32_t tied;       /* next-item only: W of the head is the item embedding (a mirror of
                         * it, refreshed by cn_model_sync_tied); 0 or 1 */
    /* head: next-item: W [n_targets, C] then bias [n_targets];
     *       other kinds: E [n_targets, C] (no bias) */
    size_t head_numel;
    float *head;
    float *head_grad;
    float *head_m, *head_v;  /* Adam moments of the current phase */
    int32_t head_borrowed;   /* head points into the model's file mapping */
    /* conure mode, DONE tasks: conv weights this task's inference uses
     * (W where 1 <= owner <= id), [n_conv * conv_numel]; NULL otherwise. */
    float *conv_eff;
} cn_task;

struct conure_model {
    cn_config cfg;

    /* run time (not stored in files) */
    int n_threads;
    const conure_backend *backend;
    int32_t eval_unfinished;  /* allow inference on tasks not yet DONE (monitoring) */

    /* backbone arena and its mirrors */
    int32_t n_tensors;
    cn_tensor *tensors;     /* [n_tensors]: embedding, then CN_T_PER_BLOCK per block */
    size_t n_backbone;      /* floats in the arena */
    float *params;
    float *grads;           /* grads, adam_m, adam_v: NULL until the model trains */
    float *adam_m, *adam_v;
    int32_t n_conv;         /* 2 * n_blocks */
    size_t conv_numel;      /* K * C * C */
    uint8_t *owner;         /* [n_conv * conv_numel]: 0 free, k task k */
    int32_t backbone_frozen;  /* embedding and layer norms frozen (after T1 dense, conure mode) */

    /* tasks 1..n_tasks at tasks[0..n_tasks-1] */
    int32_t n_tasks;
    cn_task *tasks;         /* [CN_MAX_TASKS] */

    /* Adam step count of the current phase (reset at every phase start) */
    int64_t phase_step;
    /* samplers (negatives) */
    cn_rng rng;

    /* training scratch, reused between steps */
    cn_scratch train_ws;

    /* A model loaded from a file may keep its parameters in the file's
     * copy-on-write mapping (conure_model_load): params and the heads point
     * into map_base, so processes serving one file share those pages until
     * one of them writes (trains).  Unmapped by cn_model_destroy. */
    void *map_base;
    size_t map_len;
    int32_t params_borrowed;

    /* last error of a call on this handle */
    pthread_mutex_t err_lock;
    char errmsg[CN_ERRMSG_MAX];
};

/* ---- construction (model.c) ---- */
/* Builds the layout, allocates arenas (params zeroed, no init), no tasks. */
conure_status cn_model_alloc(const cn_config *cfg, conure_model **out);
/* Random initialisation of the backbone from cfg.seed (method §2). */
void cn_model_init_backbone(conure_model *m);
void cn_model_destroy(conure_model *m);
/* Validates a configuration (used by create and by the file loader). */
conure_status cn_config_validate(const cn_config *cfg, const char *where);
/* Receptive field in positions: 1 + (K-1) * sum_b 3 d_b. */
int64_t cn_receptive_field(const cn_config *cfg);
/* Index into tensors[] of block b's part p (CN_T_*). */
static inline int32_t cn_tensor_index(int32_t block, int32_t part)
{
    return 1 + block * CN_T_PER_BLOCK + part;
}
/* Pointer to conv tensor t (0 .. n_conv-1) in an arena laid out like params. */
float *cn_conv_ptr(const conure_model *m, float *arena, int32_t t);
int32_t cn_conv_dilation(const conure_model *m, int32_t t);

/* ---- tasks (model.c) ---- */
/* Allocates head arrays (zeroed); with init != 0 initialises the head from
 * the model RNG (method §3).  t->kind and t->n_targets must be set. */
conure_status cn_task_alloc_head(conure_model *m, cn_task *t, int init);
void cn_task_free(cn_task *t);
/* Allocates (zeroed) the backbone's gradients and Adam moments if the model
 * has none yet: models are created and loaded without them, so a model that
 * only serves inference never holds them. */
conure_status cn_model_ensure_training(conure_model *m);
/* Frees a task's gradient and Adam arrays (a DONE task trains no more). */
void cn_task_release_training(cn_task *t);
/* Resets Adam moments of backbone and the task head, phase_step = 0. */
void cn_model_reset_adam(conure_model *m, cn_task *t);
/* Tied next-item heads (task option "tie_embedding"): copies the item
 * embedding into the W part of every tied head, so that W == E exactly after
 * any change of E.  Heads borrowed from a file mapping are private copies on
 * write, so the copy never touches the file. */
void cn_model_sync_tied(conure_model *m);
/* Builds t->conv_eff for a DONE task id (1-based) in conure mode. */
conure_status cn_task_build_conv_eff(conure_model *m, int32_t task_id);
/* Number of floats stored for the model (backbone + all heads). */
int64_t cn_model_n_parameters(const conure_model *m);

/* Copies this thread's last error message into m->errmsg (under err_lock).
 * Every exported function taking a model calls it when it fails. */
void cn_model_record_error(const conure_model *m);
/* Resolves the run-time settings (threads, backend) from options (may be
 * NULL) and the environment.  Used by create and load. */
conure_status cn_model_apply_runtime(conure_model *m, const conure_options *o, const char *where);

/* ---- the cycle (train.c, prune.c, infer.c) ---- */
/* Explicit samples, for tests (NULL = draw from the model RNG). */
typedef struct cn_samples {
    const int32_t *ids;  /* sampled softmax: [n] distinct candidate item ids;
                          * BPR / BCE: [batch] negative target ids */
    int32_t n;
    int64_t tries;       /* sampled softmax: draws made to get the n distinct ids */
} cn_samples;
/* Loss and gradients for one batch without changing any trained parameter
 * (a tied head's W is re-copied from the embedding first, which changes
 * nothing unless a test perturbed the embedding): gradients w.r.t. the weights
 * the forward used go to m->grads (backbone layout) and the task's head_grad;
 * for a tied head the W gradient is added to the embedding's gradient and the
 * W part of head_grad is zero.  all_grads != 0 computes every gradient (tests); 0 skips
 * the ones the current phase does not train.  *loss gets the mean loss. */
conure_status cn_model_loss_grad(conure_model *m, int32_t task_id, const int32_t *items,
                                 int32_t batch, int32_t seq_len, const int32_t *targets,
                                 const cn_samples *samples, int all_grads, double *loss);
conure_status cn_model_train_step(conure_model *m, int32_t task_id, const int32_t *items,
                                  int32_t batch, int32_t seq_len, const int32_t *targets,
                                  float *loss);
conure_status cn_model_prune(conure_model *m, int32_t task_id);
/* Target owned count of a tensor after task k prunes (documented rounding). */
int64_t cn_prune_target_owned(int64_t numel, const conure_model *m, int32_t task_id);
/* Forward to the last position: user vectors [batch, C] for task_id's view.
 * Allocates its own scratch (safe for concurrent const calls). */
conure_status cn_model_user_vectors(const conure_model *m, int32_t task_id, const int32_t *items,
                                    int32_t batch, int32_t seq_len, float *out);
conure_status cn_model_scores(const conure_model *m, int32_t task_id, const int32_t *items,
                              int32_t batch, int32_t seq_len, float *scores);

/* Conv weights task_id's forward uses now (see method §4): params (dense,
 * finetune), a DONE task's cache, or masked into `buf` [n_conv*conv_numel]. */
const float *cn_model_conv_view(const conure_model *m, int32_t task_id, float *buf);
/* True if buf is needed by cn_model_conv_view for this task now. */
int cn_model_conv_view_needs_buffer(const conure_model *m, int32_t task_id);

struct cn_block_params;
/* Block b's layer norms (from params) and conv weights (from `view`, or from
 * params when view is NULL), for the nn layer. */
void cn_model_block_params(const conure_model *m, const float *view, int32_t b,
                           struct cn_block_params *p);
/* Bytes of backend workspace the largest conv of the model needs for
 * [batch, length] inputs. */
size_t cn_model_conv_workspace(const conure_model *m, int32_t batch, int32_t length);

#endif
