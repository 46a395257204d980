/* Internal helpers shared by every layer: errors, aligned memory, RNG,
 * options.  Nothing here is exported (hidden visibility). */
#ifndef CN_COMMON_H
#define CN_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "conure/conure.h"

#if defined(__GNUC__)
#define CN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CN_UNUSED __attribute__((unused))
#else
#define CN_PRINTF(a, b)
#define CN_UNUSED
#endif

/* ---- errors --------------------------------------------------------------
 * cn_fail() records a formatted message in the calling thread's last-error
 * buffer and returns `status`, so a failing path reads
 *     return cn_fail(CONURE_E_OUT_OF_RANGE, "train_step: batch = %d ...", b);
 */
#define CN_ERRMSG_MAX 512
conure_status cn_fail(conure_status status, const char *fmt, ...) CN_PRINTF(2, 3);
/* Clears this thread's last error (called at the start of every API call). */
void cn_clear_error(void);
/* This thread's last error text ("" if none). */
const char *cn_error_text(void);

/* ---- memory ----------------------------------------------------------------
 * 64-byte aligned, zero-filled; NULL on failure or overflow of n*size. */
void *cn_alloc(size_t n, size_t size);
void cn_free(void *p);
/* Grow-only scratch buffer. */
typedef struct cn_scratch {
    void *ptr;
    size_t cap;
} cn_scratch;
/* Ensures at least `bytes` (64-byte aligned, contents undefined). 0 on success. */
int cn_scratch_reserve(cn_scratch *s, size_t bytes);
void cn_scratch_release(cn_scratch *s);

/* ---- numerics ----------------------------------------------------------------
 * 1 if every x[i] is finite (no NaN, no inf).  One vectorisable pass. */
int cn_all_finite(const float *x, size_t n);

/* ---- random numbers ----------------------------------------------------------
 * PCG-XSH-RR 32 (O'Neill 2014) with 64-bit state: small, fast, reproducible on
 * every platform; the state is saved in model files so training resumes exactly. */
typedef struct cn_rng {
    uint64_t state;
    uint64_t inc;
} cn_rng;
void cn_rng_seed(cn_rng *r, uint64_t seed, uint64_t stream);
uint32_t cn_rng_u32(cn_rng *r);
/* Uniform in [0, 1) with 24 random bits (float) / 53 bits (double). */
double cn_rng_uniform(cn_rng *r);
/* Uniform integer in [0, n), n >= 1, without modulo bias. */
uint32_t cn_rng_below(cn_rng *r, uint32_t n);
/* Standard normal (Box-Muller, one value per call). */
double cn_rng_normal(cn_rng *r);
/* Normal with std `std`, redrawn until |z| <= 2 std (TensorFlow's
 * truncated_normal, as the authors' code initialises, method §2). */
float cn_rng_truncated_normal(cn_rng *r, float std);

/* ---- options -------------------------------------------------------------- */
#define CN_MAX_BLOCKS 64
#define CN_BACKEND_NAME_MAX 32

enum cn_opt_key {
    /* model keys */
    CN_OPT_VOCAB_SIZE, CN_OPT_CHANNELS, CN_OPT_KERNEL_WIDTH, CN_OPT_MAX_LEN, CN_OPT_SEED,
    CN_OPT_THREADS, CN_OPT_INIT_STD, CN_OPT_DILATIONS, CN_OPT_BLOCK_ORDER,
    CN_OPT_TRAINING_MODE, CN_OPT_BACKEND,
    /* task keys */
    CN_OPT_NEGATIVES, CN_OPT_LR, CN_OPT_L2, CN_OPT_RHO, CN_OPT_RELEASE_RATIO,
    CN_OPT_ADAM_BETA1, CN_OPT_ADAM_BETA2, CN_OPT_ADAM_EPS, CN_OPT_LOSS, CN_OPT_DROPOUT,
    CN_OPT_TIE_EMBEDDING,
    CN_OPT_COUNT
};

enum cn_opt_scope { CN_SCOPE_MODEL = 1, CN_SCOPE_TASK = 2, CN_SCOPE_RUNTIME = 4 };

enum cn_block_order { CN_PRE_NORM = 0, CN_POST_NORM = 1 };
enum cn_training_mode { CN_MODE_CONURE = 0, CN_MODE_FINETUNE = 1 };
enum cn_loss {
    CN_LOSS_DEFAULT = 0,         /* per-kind default */
    CN_LOSS_SAMPLED_SOFTMAX = 1, /* next item */
    CN_LOSS_SOFTMAX = 2,         /* next item (full) or classification (all classes) */
    CN_LOSS_BPR = 3,             /* item recommendation */
    CN_LOSS_BCE = 4              /* classification, one negative class */
};

struct conure_options {
    uint8_t is_set[CN_OPT_COUNT];
    int64_t vocab_size, channels, kernel_width, max_len, seed, threads, negatives, tie_embedding;
    double init_std, lr, l2, rho, release_ratio, adam_beta1, adam_beta2, adam_eps, dropout;
    int32_t n_blocks;
    int32_t dilations[CN_MAX_BLOCKS];
    int block_order, training_mode, loss;
    char backend[CN_BACKEND_NAME_MAX];
};

/* Fills defaults (is_set all 0). */
void cn_options_defaults(conure_options *o);
/* Key name of an option, for messages. */
const char *cn_option_name(int key);
/* Fails (with a message naming the key and `where`) if any key outside the
 * `allowed` scope mask is set. */
conure_status cn_options_check_scope(const conure_options *o, unsigned allowed,
                                     const char *where);
/* Resolves threads = 0 to the number of online CPUs. */
int cn_resolve_threads(int64_t threads);

#endif
