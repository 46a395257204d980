/* Internal interface of the kernel layer: the backend registry, the calls the
 * nn layer makes through it, and a row-major SGEMM wrapper over BLIS.
 * Kernels know nothing of tasks, owners or files: the model hands them
 * effective (masked) weights. */
#ifndef CN_KERNELS_H
#define CN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "conure/conure_backend.h"

/* Registered backend by name, or NULL. Thread-safe. */
const conure_backend *cn_backend_find(const char *name);
/* The default: $CONURE_BACKEND if set and non-empty, else "blis".  On an
 * unknown name from the environment returns NULL and sets the error. */
const conure_backend *cn_backend_default(void);
/* The built-in vtables (always registered first: "ref", then "blis"). */
const conure_backend *cn_backend_ref(void);
const conure_backend *cn_backend_blis(void);

/* Largest workspace (bytes) any of the three kernels of `b` needs for `s`,
 * including the "ref" fallback when b->supports rejects the shape. */
size_t cn_conv_workspace(const conure_backend *b, const conure_conv_shape *s);

/* Run one kernel of backend `b`, falling back to "ref" when b->supports says
 * no.  `ws` must hold cn_conv_workspace() bytes (64-byte aligned).
 * Return CONURE_OK or CONURE_E_BACKEND (with a message naming the backend
 * and kernel). */
conure_status cn_conv_forward(const conure_backend *b, const conure_conv_shape *s,
                              const float *x, const float *w, float *y, void *ws);
conure_status cn_conv_backward_data(const conure_backend *b, const conure_conv_shape *s,
                                    const float *dy, const float *w, float *dx, void *ws);
conure_status cn_conv_backward_weight(const conure_backend *b, const conure_conv_shape *s,
                                      const float *x, const float *dy, float *dw, void *ws);

/* Kernels of the two built-in backends, for the registry's static table
 * (registry.c): "ref" (ref.c, no workspace, supports everything) and "blis"
 * (blis.c).  They follow the conure_backend signatures; ctx is unused. */
int cn_ref_conv_forward(void *ctx, const conure_conv_shape *s, const float *x,
                        const float *w, float *y, void *ws);
int cn_ref_conv_backward_data(void *ctx, const conure_conv_shape *s, const float *dy,
                              const float *w, float *dx, void *ws);
int cn_ref_conv_backward_weight(void *ctx, const conure_conv_shape *s, const float *x,
                                const float *dy, float *dw, void *ws);
size_t cn_blis_conv_workspace_size(void *ctx, conure_conv_op op, const conure_conv_shape *s);
int cn_blis_conv_forward(void *ctx, const conure_conv_shape *s, const float *x,
                         const float *w, float *y, void *ws);
int cn_blis_conv_backward_data(void *ctx, const conure_conv_shape *s, const float *dy,
                               const float *w, float *dx, void *ws);
int cn_blis_conv_backward_weight(void *ctx, const conure_conv_shape *s, const float *x,
                                 const float *dy, float *dw, void *ws);

/* Row-major C[m,n] = alpha * op(A) op(B) + beta * C with op(X) = X or X^T,
 * lda/ldb/ldc the row strides (elements) of A, B, C as stored.  Runs BLIS with
 * exactly n_threads threads (OpenMP build: the caller's OpenMP pool). */
void cn_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc, int n_threads);

/* Name of the BLIS kernel configuration in use (e.g. "haswell", "skx"). */
const char *cn_blis_arch(void);

#endif
