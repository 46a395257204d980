/* Forward and backward of the network pieces (method §2, §3): layer norm,
 * ReLU, the residual block, embedding gather/scatter, heads and losses,
 * samplers and Adam.  Plain functions on flat row-major arrays: outputs
 * first in meaning, gradients overwrite unless a name says "acc".
 * Threading: every function takes n_threads and runs OpenMP loops (static
 * schedules, no atomics) and BLIS GEMMs on that many threads; results are
 * deterministic for a fixed thread count (reductions over rows run per
 * channel, in row order, so they do not even depend on the thread count). */
#ifndef CN_NN_H
#define CN_NN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/common.h"
#include "conure/conure_backend.h"

/* exp for the softmax loops: 2^n * p(r) with n = round(x / ln 2), a two-part
 * ln 2 reduction and a degree-6 Taylor polynomial on |r| <= ln(2)/2.  Relative
 * error <= 2.3e-7 on [-87, 88] (measured against double exp), exactly 0 below
 * -87 (so -inf gives 0), saturates above 88, NaN in gives NaN out.  Branch-free, so the compiler
 * vectorises the loops that call it (12x glibc's scalar expf here). */
static inline float cn_fast_expf(float x)
{
    const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float t = xc * 1.44269504f + shifter;
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    const float n = t - shifter;
    float r = xc - n * 0.693145752f; /* ln 2, high part */
    r = r - n * 1.42860677e-06f;     /* ln 2, low part */
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const uint32_t bits = ((uint32_t)ti - 0x4B400000u + 127u) << 23; /* NaN: garbage, stays NaN */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : p * scale;
}

/* ---- layer norm over channels (+ optional ReLU) ----------------------------
 * x [n, C] -> y [n, C]: y = (x - mean) * rstd * g + b, rstd = 1/sqrt(var + eps)
 * with the biased variance; relu != 0 applies max(0, .) afterwards.
 * mean, rstd [n] are stored for the backward pass (may be NULL at inference). */
void cn_ln_forward(const float *x, const float *g, const float *b, int64_t n, int32_t C,
                   float eps, int relu, float *y, float *mean, float *rstd, int n_threads);

/* Backward of cn_ln_forward.  dy [n, C] is the gradient w.r.t. y; when relu is
 * set, y is the forward output (its sign gates dy).  Writes dx [n, C]
 * (overwrite; may alias dy), and dg, db [C] (overwrite) when non-NULL.
 * x is the forward input. */
void cn_ln_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                    const float *g, const float *y, int relu, int64_t n, int32_t C, float *dx,
                    float *dg, float *db, int n_threads);

/* ---- embedding ---------------------------------------------------------------
 * out[r] = table[ids[r]] for r < n (ids already validated). */
void cn_embedding_gather(const float *table, int32_t C, const int32_t *ids, int64_t n,
                         float *out, int n_threads);
/* dtable[ids[r]] += d[r] for r < n, in row order per channel (deterministic). */
void cn_embedding_scatter_acc(float *dtable, int32_t C, const int32_t *ids, int64_t n,
                              const float *d, int n_threads);

/* ---- residual block ---------------------------------------------------------- */
typedef struct cn_block_params {
    const float *ln1_g, *ln1_b, *ln2_g, *ln2_b;
    const float *w1, *w2;       /* effective conv weights [K, C, C] */
    int32_t dilation;           /* conv1: d, conv2: 2d */
} cn_block_params;

typedef struct cn_block_grads {
    float *ln1_g, *ln1_b, *ln2_g, *ln2_b;  /* [C] each; NULL = not needed */
    float *w1, *w2;                        /* [K, C, C]; always written */
} cn_block_grads;

/* Activations a block keeps for its backward pass; each [N, C] or [N]. */
typedef struct cn_block_acts {
    float *x;     /* block input */
    float *c1;    /* conv1 output */
    float *r1;    /* ReLU(LN1(.)) output (the input of conv2 in post-norm, of conv1 in pre-norm) */
    float *c2;    /* conv2 output (post-norm only) */
    float *r2;    /* ReLU(LN2(.)) output */
    float *mean1, *rstd1, *mean2, *rstd2;
    /* training-only dropout of the residual branch: keep[i] is 1 or 0 and a
     * kept value is multiplied by drop_scale = 1/(1-p); NULL = no dropout */
    const uint8_t *keep;
    float drop_scale;
} cn_block_acts;

/* y[i] = x[i] * (keep[i] ? scale : 0) over n elements, in place allowed. */
void cn_dropout_apply(const float *x, const uint8_t *keep, float scale, int64_t n, float *y,
                      int n_threads);

typedef struct cn_net_shape {
    int32_t batch, length, channels, kernel_width;
    int32_t block_order;        /* enum cn_block_order */
    int n_threads;
    const conure_backend *backend;
} cn_net_shape;

/* Forward of one block: reads a->x, fills the other activations (a->c2 only
 * for post-norm; the layer-norm statistics only where their pointers are not
 * NULL, as at inference) and writes the block output to y [N, C] (y != a->x).
 * ws: backend workspace (cn_conv_workspace bytes). */
conure_status cn_block_forward(const cn_net_shape *s, const cn_block_params *p,
                               cn_block_acts *a, float *y, void *ws);

/* Backward of one block.  dy [N, C] holds dL/dy on entry and dL/dx on exit
 * when need_dx (else it is clobbered).  t1, t2: scratch [N, C] each. */
conure_status cn_block_backward(const cn_net_shape *s, const cn_block_params *p,
                                const cn_block_acts *a, float *dy, cn_block_grads *g,
                                int need_dx, float *t1, float *t2, void *ws);

/* ---- heads and losses (method §3) ------------------------------------------- */

/* Candidates for the sampled softmax: n distinct ids from 1 .. V-1 drawn
 * log-uniformly (class c = id-1 with p(c) = log((c+2)/(c+1)) / log(V)),
 * with the number of draws made. */
typedef struct cn_candidates {
    int32_t *ids;     /* [n] */
    int32_t n;
    int64_t tries;
} cn_candidates;
/* Draws n distinct candidates; mark is scratch [V] bytes (zeroed on return). */
void cn_sample_log_uniform(cn_rng *r, int32_t V, int32_t n, int32_t *ids, int64_t *tries,
                           uint8_t *mark);
/* log of the expected count of id among `tries` unique log-uniform draws
 * (TensorFlow's formula for unique samplers): log(-expm1(tries*log1p(-p))). */
double cn_log_uniform_log_q(int32_t V, int32_t id, int64_t tries);
/* Popularity-rank negative (method §3): rank r with P(r) ∝ exp(-(r+1)/(rho*n)),
 * redrawn while r == avoid. */
int32_t cn_sample_pop_rank(cn_rng *r, int32_t n, double rho, int32_t avoid);
/* Uniform class in 0 .. n-1 other than avoid (n >= 2). */
int32_t cn_sample_other_class(cn_rng *r, int32_t n, int32_t avoid);

typedef struct cn_head_ws {
    float *buf;       /* scratch floats */
    size_t cap;       /* floats available at buf */
} cn_head_ws;

/* Floats of scratch cn_next_item_loss needs. */
size_t cn_next_item_ws_floats(int64_t n_valid, int32_t V, int32_t C, int32_t n_cand);

/* Next-item loss over rows of H [n, C] whose target tgt[r] != 0, averaged over
 * those rows (method §3).  W [V, C], bias [V].  cand == NULL: full softmax over
 * all V ids; else sampled softmax over the true id and the candidates with
 * log-Q correction and accidental hits removed.  Writes dH [n, C] (rows with
 * target 0 get zeros) and, when dW/db are non-NULL, their gradients [V, C],
 * [V] (overwrite).  Returns the mean loss in *loss (double). */
conure_status cn_next_item_loss(const float *H, int64_t n, const int32_t *tgt, const float *W,
                                const float *bias, int32_t V, int32_t C,
                                const cn_candidates *cand, float *dH, float *dW, float *db,
                                double *loss, cn_head_ws *ws, int n_threads);

/* Pairwise / classification losses on user vectors h [B, C] against the
 * table E [n, C] (method §3), averaged over rows, plus (l2/2)||E||^2.
 *   CN_LOSS_BPR:  softplus(-(s_pos - s_neg))
 *   CN_LOSS_BCE:  softplus(-s_pos) + softplus(s_neg)
 *   CN_LOSS_SOFTMAX: cross-entropy over all n targets (neg unused)
 * Writes dh [B, C] and dE [n, C] (overwrite; dE may be NULL). */
conure_status cn_table_loss(int loss_kind, const float *h, int32_t B, const int32_t *pos,
                            const int32_t *neg, const float *E, int32_t n, int32_t C, float l2,
                            float *dh, float *dE, double *loss, cn_head_ws *ws, int n_threads);
size_t cn_table_ws_floats(int loss_kind, int32_t B, int32_t n);

/* ---- Adam (TensorFlow's form, as the authors' code) ---------------------------
 * lr_t = lr*sqrt(1-b2^t)/(1-b1^t); m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr_t * m / (sqrt(v) + eps).  t >= 1 is the step count of the phase.
 * With owner != NULL only elements with owner[i] == want are touched. */
void cn_adam_update(float *p, const float *g, float *m, float *v, size_t n, const uint8_t *owner,
                    uint8_t want, float lr, float b1, float b2, float eps, int64_t t,
                    int n_threads);

#endif
