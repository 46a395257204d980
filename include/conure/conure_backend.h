/*
 * libconure kernel author's API: the dilated causal 1-D convolution vtable.
 *
 * A backend computes the three convolution kernels of NextItNet's residual
 * blocks (method §2).  libconure ships "ref" (plain loops: the readable
 * definition) and "blis" (im2col + bli_sgemm).  Applications may register
 * more at run time and select them with the "backend" option or the
 * CONURE_BACKEND environment variable.  Every backend must agree with "ref";
 * tests/test_backends.c shows how that is checked.
 *
 * Definitions (all arrays row-major, float32, caller-owned; K = kernel_width,
 * d = dilation, s_j = (K-1-j)*d is the look-back of tap j):
 *   x  [batch, length, in_channels]       input
 *   w  [K, in_channels, out_channels]     weight, no bias
 *   y  [batch, length, out_channels]      output
 *   forward:          y[b,t,o]  = sum_j sum_i x[b,t-s_j,i] * w[j,i,o]
 *   backward_data:    dx[b,t,i] = sum_j sum_o dy[b,t+s_j,o] * w[j,i,o]
 *   backward_weight:  dw[j,i,o] = sum_b sum_t x[b,t-s_j,i] * dy[b,t,o]
 * where x or dy outside 0 .. length-1 counts as 0 (causal zero padding).
 * Every kernel OVERWRITES its output.  Outputs never alias inputs.
 */
#ifndef CONURE_CONURE_BACKEND_H
#define CONURE_CONURE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "conure.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Interface version; a backend must set abi_version to this value. */
#define CONURE_BACKEND_ABI_VERSION 1u

/** Shape of one convolution call.  Append-only: new fields go at the end and
 *  struct_size tells a backend how much of it the caller filled. */
typedef struct conure_conv_shape {
    uint32_t struct_size;  /**< sizeof(conure_conv_shape) of the caller */
    int32_t batch;         /**< sequences, >= 1 */
    int32_t length;        /**< positions per sequence, >= 1 */
    int32_t in_channels;   /**< >= 1 */
    int32_t out_channels;  /**< >= 1 */
    int32_t kernel_width;  /**< K >= 1 */
    int32_t dilation;      /**< d >= 1 */
    int32_t n_threads;     /**< threads the backend may use (>= 1) */
} conure_conv_shape;

/** Which kernel a workspace query is for. */
typedef enum conure_conv_op {
    CONURE_CONV_FORWARD = 0,
    CONURE_CONV_BACKWARD_DATA = 1,
    CONURE_CONV_BACKWARD_WEIGHT = 2
} conure_conv_op;

/**
 * A backend: a size-prefixed, versioned table of function pointers.
 * Kernels return 0 on success and non-zero on failure (reported to the user
 * as CONURE_E_BACKEND).  Kernels may be called from several threads at once
 * with distinct buffers, so they must not keep per-call state in ctx.
 */
typedef struct conure_backend {
    uint32_t struct_size;   /**< sizeof(conure_backend) as compiled by the author */
    uint32_t abi_version;   /**< CONURE_BACKEND_ABI_VERSION */
    const char *name;       /**< 1..31 chars of [a-z0-9_]; copied at registration */
    void *ctx;              /**< passed back to every call; owned by the author */
    /** Optional (NULL = supports everything): non-zero if this shape is
     *  handled; unsupported shapes are computed by "ref" instead. */
    int (*supports)(void *ctx, const conure_conv_shape *shape);
    /** Optional (NULL = none): bytes of scratch memory the kernel `op` needs;
     *  libconure passes that much, 64-byte aligned, as `workspace`. */
    size_t (*workspace_size)(void *ctx, conure_conv_op op, const conure_conv_shape *shape);
    /** Required: y = conv(x, w). */
    int (*conv_forward)(void *ctx, const conure_conv_shape *shape, const float *x,
                        const float *w, float *y, void *workspace);
    /** Required: dx = gradient of sum(y * dy) with respect to x. */
    int (*conv_backward_data)(void *ctx, const conure_conv_shape *shape, const float *dy,
                              const float *w, float *dx, void *workspace);
    /** Required: dw = gradient of sum(y * dy) with respect to w. */
    int (*conv_backward_weight)(void *ctx, const conure_conv_shape *shape, const float *x,
                                const float *dy, float *dw, void *workspace);
} conure_backend;

/**
 * Registers a backend for the life of the process (there is no unregister:
 * models may hold it).  The struct is copied; ctx and the functions must
 * stay valid until exit.  At most 32 backends in all.
 * @return CONURE_OK; CONURE_E_NULL_ARG (backend, its name or a required
 *   kernel); CONURE_E_INVALID_ARG (bad name, struct_size too small,
 *   abi_version not CONURE_BACKEND_ABI_VERSION, name already registered);
 *   CONURE_E_OUT_OF_RANGE (registry full).  Thread-safe.
 */
CONURE_API conure_status conure_backend_register(const conure_backend *backend);

/**
 * Looks up a registered backend ("ref" and "blis" are always there), for
 * example to compare a new backend against "ref".
 * @param out  receives a pointer to the registry's copy, valid until exit
 * @return CONURE_OK; CONURE_E_NULL_ARG; CONURE_E_BACKEND (unknown name).
 * Thread-safe.
 */
CONURE_API conure_status conure_backend_get(const char *name, const conure_backend **out);

/**
 * Names of registered backends in registration order.
 * @param names  [cap] output pointers to static names (may be NULL if cap is 0)
 * @param cap    entries available at names
 * @return the number of registered backends (may exceed cap).  Thread-safe.
 */
CONURE_API int32_t conure_backend_list(const char **names, int32_t cap);

#ifdef __cplusplus
}
#endif

#endif /* CONURE_CONURE_BACKEND_H */
