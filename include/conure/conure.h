/*
 * libconure: continual user representation learning without forgetting.
 *
 * Implements Conure (F. Yuan, G. Zhang, A. Karatzoglou, J. Jose, B. Kong, Y. Li,
 * "One Person, One Model, One World: Learning Continual User Representation
 * without Forgetting", SIGIR 2021) on a NextItNet backbone (dilated causal 1-D
 * convolutions over a user's item sequence).  Section numbers such as "method
 * §2" refer to docs/method.md, which follows the paper step by step.
 *
 * Conventions for every function in this header
 * ----------------------------------------------
 * - Every function that can fail returns a conure_status.  On failure a message
 *   naming the bad argument is available from conure_last_error() (this
 *   thread) and, for calls on a model, from conure_model_last_error().
 *   Messages start with the function's name without "conure_" (for example
 *   "model_train_step: items[2][5] = 25 is outside [0, 20) ...").
 * - Output arguments are written only on success.
 * - Arrays are flat, caller-owned and row-major; shapes are given as
 *   [rows, cols].  Sizes are in elements unless a name says bytes.
 * - Item ids: the input vocabulary has `vocab_size` ids; id 0 is padding,
 *   items are 1 .. vocab_size-1.  Sequences are left-padded with 0: a 0
 *   after an item in a row is rejected (CONURE_E_INVALID_ARG), because the
 *   user vector is read at the last position.  A row of only 0s (a user
 *   without history) is valid.
 * - Tasks are numbered 1, 2, 3, ... in the order they were added (task k is
 *   the paper's T_k).  Targets of a task with n_targets outputs are
 *   0 .. n_targets-1; for a next-item task they are item ids (0 never scores).
 * - `*_free(NULL)` is a no-op.
 *
 * Thread-safety contract
 * ----------------------
 * - Functions taking `const conure_model *` (inference, queries, save) may run
 *   concurrently with each other on the same model.
 * - Functions taking `conure_model *` (train, prune, add/finish/discard a task,
 *   setters) need exclusive access to that model.
 * - Distinct models and distinct options handles are independent.
 * - Compute threads: a model runs its own loops and its GEMMs (BLIS) on the
 *   same OpenMP pool, sized by the "threads" option; see docs/design.md.
 *
 * Stability: the ABI of every symbol here is stable within soname
 * libconure.so.0; symbols are versioned (CONURE_0.1).  Status codes and enum
 * values never change meaning.
 */
#ifndef CONURE_CONURE_H
#define CONURE_CONURE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define CONURE_API
#elif defined(__GNUC__) && __GNUC__ >= 4
#define CONURE_API __attribute__((visibility("default")))
#else
#define CONURE_API
#endif

#include "conure/conure_version.h"

/* ------------------------------------------------------------------------ */
/* Status codes (numbers are fixed forever).                                 */
/* ------------------------------------------------------------------------ */

/** Result of every fallible call.  0 is success. */
typedef enum conure_status {
    CONURE_OK = 0,
    CONURE_E_NULL_ARG = 1,      /**< a required pointer argument is NULL */
    CONURE_E_INVALID_ARG = 2,   /**< an argument is malformed (unknown key, bad text) */
    CONURE_E_OUT_OF_RANGE = 3,  /**< a size, id or value is outside its valid range */
    CONURE_E_NOMEM = 4,         /**< memory allocation failed */
    CONURE_E_STATE = 5,         /**< call not allowed in the task's/model's current phase */
    CONURE_E_CAPACITY = 6,      /**< no free convolution weights left for a new task */
    CONURE_E_IO = 7,            /**< the operating system refused a file operation */
    CONURE_E_FORMAT = 8,        /**< a model file/buffer is truncated, corrupted or foreign */
    CONURE_E_VERSION = 9,       /**< a model file has an unsupported format version */
    CONURE_E_BACKEND = 10,      /**< unknown backend, or a backend kernel failed */
    CONURE_E_NUMERIC = 11,      /**< a loss or score became NaN/inf */
    CONURE_E_BUFFER_TOO_SMALL = 12, /**< caller's output buffer is smaller than required */
    CONURE_E_INTERNAL = 13      /**< a bug in libconure: please report it */
} conure_status;

/** Static English text for a status ("invalid argument", ...).  Never NULL;
 *  unknown codes give "unknown status".  Thread-safe. */
CONURE_API const char *conure_status_string(conure_status status);

/** The detailed message of the calling thread's most recent libconure call
 *  if it failed (e.g. "model_train_step: items[3][7] = 9001 is outside
 *  [0, 3417) (vocab_size 3417)"), or "" if that call succeeded: every call
 *  clears it on entry.  (conure_model_last_error, by contrast, keeps a model's
 *  last failure until the next failure on that model.)  The pointer is to
 *  thread-local storage owned by the library, valid until this thread's next
 *  libconure call.  Thread-safe. */
CONURE_API const char *conure_last_error(void);

/* ------------------------------------------------------------------------ */
/* Version (single source: meson.build project version).                     */
/* ------------------------------------------------------------------------ */

/** Run-time version text, e.g. "0.1.0".  Static storage.  Thread-safe. */
CONURE_API const char *conure_version_string(void);
/** Run-time version number: major*10000 + minor*100 + patch (compare with
 *  CONURE_VERSION_NUMBER from conure_version.h).  Thread-safe. */
CONURE_API uint32_t conure_version_number(void);

/* ------------------------------------------------------------------------ */
/* Options: a key/value bag used to create models, add tasks and load files. */
/* ------------------------------------------------------------------------ */

/** Opaque options handle. */
typedef struct conure_options conure_options;

/**
 * Creates an empty options handle (every key at its default).
 * @param out  receives the new handle; the caller owns it and frees it with
 *             conure_options_free().
 * @return CONURE_OK; CONURE_E_NULL_ARG if out is NULL; CONURE_E_NOMEM.
 * Thread-safe.
 */
CONURE_API conure_status conure_options_create(conure_options **out);

/** Frees an options handle.  NULL is a no-op.  The handle may be freed as
 *  soon as the call that consumed it returned (models copy what they need). */
CONURE_API void conure_options_free(conure_options *options);

/**
 * Sets an integer option.  Model keys (conure_model_create, conure_model_load):
 *   "vocab_size"   input item ids incl. padding 0; required; 2 .. 2^31-1
 *   "channels"     embedding size C, 1 .. 4096; default 256 (method §2)
 *   "kernel_width" causal convolution kernel width k, 1 .. 16; default 3
 *   "max_len"      longest accepted sequence length, 2 .. 65536; default 1024
 *   "seed"         seed of initialisation and of all samplers, 0 .. 2^63-1; default 1
 *   "threads"      compute threads (this model's OpenMP + BLIS), 0 = the
 *                  CPUs this process may run on (its affinity mask), 0 .. 1024;
 *                  default 1
 * Task keys (conure_model_add_task):
 *   "negatives"    sampled softmax negatives per step, 0 = 20% of vocab_size
 *                  (method §3); 1 .. vocab_size-2
 *   "tie_embedding" 0 or 1, default 0 (the method's separate softmax table).
 *                  Next-item tasks only: 1 makes the head's weight matrix the
 *                  item embedding itself, [vocab_size, channels] (as SASRec
 *                  does); its gradient flows into the embedding, the head keeps
 *                  its own bias.  In training_mode "conure" the embedding
 *                  freezes after T1's dense phase (method §4): in T1's retrain
 *                  phase only the bias and T1's conv weights train, and a tied
 *                  next-item task after T1 trains its bias only.  In
 *                  "finetune" the embedding keeps training in every task and
 *                  every tied head follows it.  Stored in model files.
 * @param options  handle from conure_options_create()
 * @param key      NUL-terminated key from the lists above
 * @param value    value in the key's range
 * @return CONURE_OK; CONURE_E_NULL_ARG (options or key NULL);
 *   CONURE_E_INVALID_ARG (unknown key, or key is not an integer key);
 *   CONURE_E_OUT_OF_RANGE (value outside the key's range).
 * Not thread-safe on the same handle.
 */
CONURE_API conure_status conure_options_set_int(conure_options *options, const char *key,
                                                int64_t value);

/**
 * Sets a real-valued option.  Task keys (conure_model_add_task):
 *   "lr"            Adam learning rate, [1e-30, 1]; default 1e-3 for next-item
 *                   tasks, 1e-4 for the others (method §5)
 *   "l2"            L2 weight lambda on a target table, [0, 10]; default 0.02
 *   "rho"           popularity-rank sampler parameter, [1e-30, 10]; default 0.3
 *   "release_ratio" share p_k of still-free conv weights this task hands on to
 *                   later tasks when pruned (method §4), [0, 1); default 0.7
 *   "adam_beta1" [0, 0.9999999] default 0.9; "adam_beta2" [0, 0.9999999]
 *   default 0.999; "adam_eps" [1e-30, 1] default 1e-8.
 *   "dropout"       [0, 0.9], default 0 (the method has none): during this
 *                   task's training steps only, inverted dropout on the input
 *                   embeddings and on every residual branch, rounded to a
 *                   multiple of 1/256; inference never drops.
 * Model key: "init_std" std of the truncated normal init, [1e-30, 1];
 * default 0.02.
 * Real values are stored as float; every range above holds after that
 * conversion (no accepted value becomes 0 or 1).
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (unknown key or
 *   not a real key); CONURE_E_OUT_OF_RANGE (value outside range or not finite).
 * Not thread-safe on the same handle.
 */
CONURE_API conure_status conure_options_set_float(conure_options *options, const char *key,
                                                  double value);

/**
 * Sets any option from text (integers and reals are parsed in full; trailing
 * garbage is an error).  Text-only keys:
 *   "dilations"     comma-separated dilations d_b of the residual blocks, each
 *                   block holding convs with dilations d_b and 2*d_b; 1 .. 64
 *                   blocks, each 1 .. 4096; default "1,4,1,4,1,4,1,4" (method §2)
 *   "block_order"   "pre_norm" (default, the authors' code) or "post_norm"
 *                   (the original NextItNet order), method §2
 *   "training_mode" "conure" (default: owners, prune, retrain; method §4) or
 *                   "finetune" (every parameter trainable by every task, no
 *                   pruning: the SinMoAll/FineAll baselines of method §6)
 *   "backend"       convolution backend name ("blis", "ref", or a registered
 *                   one); default: $CONURE_BACKEND if set, else "blis"
 *   "loss"          task key: "sampled_softmax" (next-item default),
 *                   "softmax" (next-item full softmax), "bpr" (item
 *                   recommendation, the only choice), "bce" (classification
 *                   default: one random negative class), "softmax"
 *                   (classification over all classes).
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (unknown key,
 *   unparsable value, unknown choice); CONURE_E_OUT_OF_RANGE.
 * Not thread-safe on the same handle.
 */
CONURE_API conure_status conure_options_set_string(conure_options *options, const char *key,
                                                   const char *value);

/* ------------------------------------------------------------------------ */
/* Models and tasks.                                                         */
/* ------------------------------------------------------------------------ */

/** Opaque model handle: backbone, every task's head, owners, optimizer. */
typedef struct conure_model conure_model;

/** Kinds of task (method §1, §3). */
typedef enum conure_task_kind {
    CONURE_TASK_NEXT_ITEM = 1,      /**< T1: predict each next item of the sequence */
    CONURE_TASK_ITEM_REC = 2,       /**< recommend items of another catalogue (BPR) */
    CONURE_TASK_CLASSIFICATION = 3  /**< predict a profile class (gender, age, ...) */
} conure_task_kind;

/** Phases of a task (method §4). */
typedef enum conure_phase {
    CONURE_PHASE_DENSE = 1,    /**< training with every conv weight in the forward pass */
    CONURE_PHASE_RETRAIN = 2,  /**< after prune: training only the weights the task kept */
    CONURE_PHASE_DONE = 3      /**< finished: frozen, usable for inference forever */
} conure_phase;

/**
 * Creates a model with freshly initialised backbone (method §2: embedding
 * [vocab_size, C] and conv weights from a truncated normal with std
 * init_std, layer norm gain 1 and bias 0) and no tasks.
 * @param options  model keys (see conure_options_set_*); "vocab_size" is
 *                 required; task keys are rejected.  Not retained.
 * @param out      receives the model; free with conure_model_free().
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (vocab_size not
 *   set, a task key given); CONURE_E_BACKEND (backend name not registered);
 *   CONURE_E_NOMEM.
 * Thread-safe (reads the options only).
 */
CONURE_API conure_status conure_model_create(const conure_options *options, conure_model **out);

/** Frees a model and everything it owns.  NULL is a no-op.  Not thread-safe
 *  with other calls on the same model. */
CONURE_API void conure_model_free(conure_model *model);

/**
 * Adds task T_k (k = number of tasks + 1) in its dense phase, with a new head
 * (method §3): next-item head W1 [n_targets, C] ~ N(0, 0.01) and bias
 * [n_targets] = 0.1; other kinds a target table E_k [n_targets, C] without
 * bias.  Allowed only when every earlier task is DONE.  In training_mode
 * "conure", a task after the first needs free conv weights in every tensor.
 * @param model      the model
 * @param kind       a conure_task_kind
 * @param n_targets  next-item: must equal vocab_size; item recommendation:
 *                   catalogue size 2 .. 2^31-1; classification: classes 2 .. 2^31-1.
 *                   Target ids are expected in decreasing popularity (id 0 the
 *                   most frequent) for the samplers of method §3.
 * @param options    task keys (may be NULL: all defaults); model keys rejected
 * @param task_id    receives k (1-based)
 * @return CONURE_OK; CONURE_E_NULL_ARG (model, task_id); CONURE_E_INVALID_ARG
 *   (unknown kind, loss not valid for the kind, a model key given, an option
 *   that does not apply: "negatives" without sampled softmax, "rho" without
 *   BPR, "l2" on a next-item task, "release_ratio" in training_mode
 *   "finetune", "tie_embedding" on a task that is not next-item);
 *   CONURE_E_OUT_OF_RANGE (n_targets; "negatives" above vocab_size-2, or a
 *   vocab_size below 3 with sampled softmax); CONURE_E_STATE (an earlier task is not
 *   DONE, or 255 tasks exist); CONURE_E_CAPACITY (no free conv weights left);
 *   CONURE_E_NOMEM.
 */
CONURE_API conure_status conure_model_add_task(conure_model *model, conure_task_kind kind,
                                               int32_t n_targets, const conure_options *options,
                                               int32_t *task_id);

/**
 * One optimisation step (forward, loss, backward, Adam) of a task in its DENSE
 * or RETRAIN phase on one batch (method §3, §4).
 * Which weights are trained: DENSE: free conv weights (owner 0) and the task's
 * head, plus, for task 1 only, the embedding and layer norms; RETRAIN: conv
 * weights owned by this task and its head.  In training_mode "finetune" every
 * parameter is trained.
 * @param items     [batch, seq_len] int32 item ids in 0 .. vocab_size-1,
 *                  left-padded with 0.  Next-item tasks: positions
 *                  0 .. seq_len-2 are the input and positions 1 .. seq_len-1
 *                  the targets; positions whose target is 0 (padding) are
 *                  left out of the loss, which is averaged over the others.
 *                  Other tasks: the whole row is the input and a separator
 *                  (id 0) is appended internally (method §1).
 * @param batch     rows, 1 .. 65536
 * @param seq_len   columns, 2 .. max_len (next-item) or 1 .. max_len-1
 *                  (other kinds: one position is kept for the separator)
 * @param targets   next-item: must be NULL.  Other tasks: [batch] target ids
 *                  in 0 .. n_targets-1 (one example per row).
 * @param loss      may be NULL; receives the mean loss of the batch (data
 *                  loss + L2 term), in nats.
 * @return CONURE_OK; CONURE_E_NULL_ARG (model, items, targets where needed);
 *   CONURE_E_INVALID_ARG (targets given for a next-item task; a next-item
 *   batch without any non-padding target; a row that is not left-padded); CONURE_E_OUT_OF_RANGE (task id,
 *   batch, seq_len, an item or target id; the message names the element);
 *   CONURE_E_STATE (task not in DENSE/RETRAIN); CONURE_E_NUMERIC (non-finite
 *   loss: no parameter was changed); CONURE_E_BACKEND; CONURE_E_NOMEM.
 *   On any error the model is unchanged.
 */
CONURE_API conure_status conure_model_train_step(conure_model *model, int32_t task,
                                                 const int32_t *items, int32_t batch,
                                                 int32_t seq_len, const int32_t *targets,
                                                 float *loss);

/**
 * Ends the DENSE phase of a task by magnitude pruning (method §4 step 2): in
 * every conv tensor separately, among free weights, the task takes ownership
 * of the largest-|w| ones until the tensor holds
 * round(numel * (1 - prod_{j<=k} p_j)) owned weights (ties: lower index
 * first); the rest stay free.  The task enters RETRAIN with fresh Adam state.
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_OUT_OF_RANGE (task id);
 *   CONURE_E_STATE (task not in DENSE, e.g. pruned twice; or training_mode is
 *   "finetune"); CONURE_E_NOMEM.
 */
CONURE_API conure_status conure_model_prune(conure_model *model, int32_t task);

/**
 * Marks a task DONE: its head, and in training_mode "conure" the conv weights
 * it owns, are frozen from now on and it can be used for inference.  In
 * training_mode "conure" the task must be in RETRAIN (after
 * conure_model_prune), and the model caches the masked conv weights this task
 * sees (2 * n_blocks * kernel_width * channels^2 floats: 12.6 MB at the
 * defaults); in "finetune" it must be in DENSE.  The task's gradient and Adam
 * arrays are freed.
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_OUT_OF_RANGE (task id);
 *   CONURE_E_STATE (wrong phase); CONURE_E_NOMEM.
 */
CONURE_API conure_status conure_model_finish_task(conure_model *model, int32_t task);

/**
 * Removes the most recently added task, whatever its phase: its head is
 * dropped and the conv weights it owned become free again (their values stay
 * as they are).  Earlier tasks are untouched.
 * @param task  must equal the number of tasks (only the last can go)
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_OUT_OF_RANGE (not the last
 *   task).
 */
CONURE_API conure_status conure_model_discard_task(conure_model *model, int32_t task);

/**
 * Scores over the task's whole target set at the last position (method §3):
 * next-item tasks give logits h_u W1^T + b1 over all item ids with id 0 set to
 * -INFINITY; other tasks give h_u . E_k[j].  In training_mode "conure" it
 * uses only conv weights of tasks 1..task and head `task` (method §4 step 4),
 * so a DONE task's scores never change when later tasks are trained; in
 * "finetune" later tasks change the shared weights (the SinMoAll baseline).
 * @param task     a DONE task.  A task still in DENSE or RETRAIN gives
 *                 CONURE_E_STATE, unless the run-time setting
 *                 "eval_unfinished" is 1 (conure_model_set_int): then it
 *                 is scored with the weights of its current phase, for
 *                 monitoring training.
 * @param items    [batch, seq_len] item ids as in conure_model_train_step;
 *                 seq_len 1 .. max_len for next-item tasks, 1 .. max_len-1
 *                 for the others (a separator is appended internally)
 * @param scores   [batch, n_targets] output
 * @param scores_len  number of floats available at scores (>= batch*n_targets)
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_OUT_OF_RANGE (task, batch,
 *   seq_len, an item id; task when the model has no tasks);
 *   CONURE_E_INVALID_ARG (a row that is not left-padded);
 *   CONURE_E_BUFFER_TOO_SMALL; CONURE_E_STATE (task not DONE, see above);
 *   CONURE_E_BACKEND; CONURE_E_NOMEM.
 * Thread-safe with other const calls on the same model.
 */
CONURE_API conure_status conure_model_scores(const conure_model *model, int32_t task,
                                             const int32_t *items, int32_t batch, int32_t seq_len,
                                             float *scores, size_t scores_len);

/** Flag for conure_model_top_k: next-item tasks only; items present in the
 *  row's input are never returned (ranking with the history excluded). */
#define CONURE_TOPK_EXCLUDE_HISTORY 1u

/**
 * The k highest-scoring targets per row, best first (ties: lower id first).
 * Same computation as conure_model_scores.  Next-item tasks never return id 0
 * (padding), so with k = n_targets the last slot of a row is -1.
 * @param k        1 .. n_targets
 * @param flags    0 or CONURE_TOPK_EXCLUDE_HISTORY
 * @param ids      [batch, k] output target ids (-1 where fewer than k
 *                 candidates remain after exclusion)
 * @param scores   [batch, k] output scores, or NULL (-INFINITY where ids is -1)
 * @param out_len  elements available at ids, and at scores when it is not
 *                 NULL (>= batch*k)
 * @return as conure_model_scores, plus CONURE_E_OUT_OF_RANGE (k),
 *   CONURE_E_INVALID_ARG (unknown flag, or the history flag on a task that is
 *   not next-item) and CONURE_E_BUFFER_TOO_SMALL (out_len).  Thread-safe with
 *   other const calls.
 */
CONURE_API conure_status conure_model_top_k(const conure_model *model, int32_t task,
                                            const int32_t *items, int32_t batch, int32_t seq_len,
                                            int32_t k, uint32_t flags, int32_t *ids,
                                            float *scores, size_t out_len);

/**
 * User vectors h_u (method §2): output of the last residual block at the last
 * position, computed with the conv weights task `task` sees (after appending
 * the separator for non-next-item tasks).
 * @param out      [batch, channels] output
 * @param out_len  floats available at out (>= batch*channels)
 * @return as conure_model_scores.  Thread-safe with other const calls.
 */
CONURE_API conure_status conure_model_user_vectors(const conure_model *model, int32_t task,
                                                   const int32_t *items, int32_t batch,
                                                   int32_t seq_len, float *out, size_t out_len);

/**
 * Reads an integer property.  Keys: "vocab_size", "channels", "kernel_width",
 * "n_blocks", "n_conv_tensors" (= 2*n_blocks), "max_len", "seed", "threads",
 * "n_tasks", "n_parameters" (every stored float: backbone + heads),
 * "eval_unfinished" (run-time setting),
 * "receptive_field" (positions), "training_mode" (0 conure, 1 finetune),
 * "block_order" (0 pre_norm, 1 post_norm).
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (unknown key).
 * Thread-safe with other const calls.
 */
CONURE_API conure_status conure_model_get_int(const conure_model *model, const char *key,
                                              int64_t *value);

/**
 * Changes a run-time setting of a model (not stored in model files):
 * "threads" (0 .. 1024, 0 = the CPUs this process may run on);
 * "eval_unfinished" (0 or 1, default 0; 1 allows scores, top-k and user
 * vectors of tasks not yet DONE, to monitor training).
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG;
 *   CONURE_E_OUT_OF_RANGE.
 */
CONURE_API conure_status conure_model_set_int(conure_model *model, const char *key,
                                              int64_t value);

/**
 * Changes a run-time text setting: "backend" (a registered backend name).
 * Changing backends never changes stored weights.
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (unknown key);
 *   CONURE_E_BACKEND (unknown backend name).
 */
CONURE_API conure_status conure_model_set_string(conure_model *model, const char *key,
                                                 const char *value);

/**
 * Describes task `task` (1 .. n_tasks).  Any output pointer may be NULL.
 * @param kind       receives a conure_task_kind
 * @param n_targets  receives the head's number of targets
 * @param phase      receives a conure_phase
 * @return CONURE_OK; CONURE_E_NULL_ARG (model); CONURE_E_OUT_OF_RANGE (task).
 * Thread-safe with other const calls.
 */
CONURE_API conure_status conure_model_task_info(const conure_model *model, int32_t task,
                                                int32_t *kind, int32_t *n_targets,
                                                int32_t *phase);

/**
 * Capacity report (method §4): counts[0] = free conv weights, counts[k] =
 * conv weights owned by task k, for k = 1 .. n_counts-1 (tasks beyond
 * n_tasks count 0).
 * @param tensor    conv tensor index 0 .. n_conv_tensors-1 (block b's first
 *                  conv is 2b, its second 2b+1), or -1 for all tensors summed
 * @param counts    [n_counts] output
 * @param n_counts  1 .. 256
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_OUT_OF_RANGE (tensor,
 *   n_counts).  Thread-safe with other const calls.
 */
CONURE_API conure_status conure_model_capacity(const conure_model *model, int32_t tensor,
                                               int64_t *counts, int32_t n_counts);

/**
 * Copies the message of the last failed call on this model into buf (always
 * NUL-terminated when cap > 0; truncated to fit; "" if no call failed yet).
 * Returns the full message length (excluding NUL), so a call with cap 0 sizes
 * the buffer.  A NULL model gives "" and 0.  Thread-safe.
 */
CONURE_API size_t conure_model_last_error(const conure_model *model, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* Save and load (format: docs/file-format.md).                              */
/* ------------------------------------------------------------------------ */

/** Save flag: also store Adam moments, step counters and sampler state, so
 *  training resumes exactly as if it had never stopped. */
#define CONURE_SAVE_OPTIMIZER 1u

/**
 * Saves the model atomically: writes `path`.tmp.XXXXXX in the same directory,
 * fsyncs it, renames it over `path` and fsyncs the directory.  A crash at any
 * point leaves either the old file or the new one.
 * @param flags  0 or CONURE_SAVE_OPTIMIZER
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (unknown flag);
 *   CONURE_E_IO (message has the OS error); CONURE_E_NOMEM.
 * Thread-safe with other const calls.
 */
CONURE_API conure_status conure_model_save(const conure_model *model, const char *path,
                                           uint32_t flags);

/** Exact size in bytes conure_model_save_buffer needs for these flags.
 *  @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (flag). */
CONURE_API conure_status conure_model_save_size(const conure_model *model, uint32_t flags,
                                                size_t *size);

/**
 * Serialises the model into a caller-owned buffer (same bytes as a file).
 * @param buf      output, `cap` bytes
 * @param written  receives the number of bytes written
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_INVALID_ARG (flag);
 *   CONURE_E_BUFFER_TOO_SMALL (nothing written).
 */
CONURE_API conure_status conure_model_save_buffer(const conure_model *model, uint32_t flags,
                                                  void *buf, size_t cap, size_t *written);

/**
 * Loads a model file.  The file is opened read-only and memory-mapped
 * copy-on-write where possible; the model then keeps its parameters in the
 * mapping, so processes serving one file share its pages (a model that is
 * trained further writes private copies, never the file).  Everything is
 * validated (sizes, bounds, checksums, versions, owners) before a model is
 * returned; nothing partial escapes.  Never truncate or rewrite a loaded file
 * in place: the loaded model would see the new bytes (changed outputs) or
 * die of SIGBUS.  conure_model_save replaces files by rename, which is safe;
 * conure_model_load_buffer copies instead of mapping.
 * @param options  run-time keys only ("threads", "backend"), may be NULL
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_IO (cannot open/read);
 *   CONURE_E_FORMAT (truncated, corrupted, foreign: the message says what);
 *   CONURE_E_VERSION (newer major format); CONURE_E_INVALID_ARG (a non
 *   run-time option); CONURE_E_BACKEND; CONURE_E_NOMEM.  Thread-safe.
 */
CONURE_API conure_status conure_model_load(const char *path, const conure_options *options,
                                           conure_model **out);

/** As conure_model_load, from `size` bytes at `buf` (not retained). */
CONURE_API conure_status conure_model_load_buffer(const void *buf, size_t size,
                                                  const conure_options *options,
                                                  conure_model **out);

/* ------------------------------------------------------------------------ */
/* Evaluation (method §3: full ranking).                                     */
/* ------------------------------------------------------------------------ */

/**
 * Rank of each row's target among all columns: 1 + number of columns with a
 * strictly higher score (ties favour the target; -INFINITY columns never
 * outrank).  Thread-safe, no state.
 * @param scores   [batch, n_targets]
 * @param targets  [batch], 0 .. n_targets-1
 * @param ranks    [batch] output, 1 .. n_targets
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_OUT_OF_RANGE (batch,
 *   n_targets, a target); CONURE_E_NUMERIC (a NaN score).
 */
CONURE_API conure_status conure_eval_ranks(const float *scores, int32_t batch, int32_t n_targets,
                                           const int32_t *targets, int32_t *ranks);

/**
 * Means over n ranks of HR@k (rank <= k), MRR@k (1/rank if rank <= k, else
 * 0) and NDCG@k (1/log2(rank+1) if rank <= k, else 0).  Accuracy is HR@1.
 * Any output pointer may be NULL.
 * @param ranks  [n], each >= 1
 * @return CONURE_OK; CONURE_E_NULL_ARG (ranks); CONURE_E_OUT_OF_RANGE (n < 1,
 *   k < 1, a rank < 1).  Thread-safe.
 */
CONURE_API conure_status conure_eval_metrics(const int32_t *ranks, int32_t n, int32_t k,
                                             double *hr, double *mrr, double *ndcg);

#ifdef __cplusplus
}
#endif

#endif /* CONURE_CONURE_H */
