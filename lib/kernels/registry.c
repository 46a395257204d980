/* The backend registry and the dispatching calls the nn layer makes.
 *
 * A fixed table of CN_MAX_BACKENDS copies of conure_backend, append-only, so
 * a pointer to an entry stays valid until exit.  The built-ins "ref" and
 * "blis" are in the table's static initialiser: they are there before any
 * call, with no init function and no ordering problem.  The count and later
 * entries are guarded by one mutex; an entry is complete before the count
 * that publishes it is raised, and readers take the mutex too. */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#define CN_MAX_BACKENDS 32
/* sizeof(conure_backend) of ABI version 1: through conv_backward_weight. */
#define CN_BACKEND_V1_SIZE \
    (offsetof(conure_backend, conv_backward_weight) + sizeof(void (*)(void)))

typedef struct cn_backend_entry {
    conure_backend be;               /* be.name points at name below */
    char name[CN_BACKEND_NAME_MAX];  /* copied at registration */
} cn_backend_entry;

static cn_backend_entry g_table[CN_MAX_BACKENDS] = {
    {
        .be = {
            .struct_size = sizeof(conure_backend),
            .abi_version = CONURE_BACKEND_ABI_VERSION,
            .name = g_table[0].name,
            .ctx = NULL,
            .supports = NULL,
            .workspace_size = NULL,
            .conv_forward = cn_ref_conv_forward,
            .conv_backward_data = cn_ref_conv_backward_data,
            .conv_backward_weight = cn_ref_conv_backward_weight,
        },
        .name = "ref",
    },
    {
        .be = {
            .struct_size = sizeof(conure_backend),
            .abi_version = CONURE_BACKEND_ABI_VERSION,
            .name = g_table[1].name,
            .ctx = NULL,
            .supports = NULL,
            .workspace_size = cn_blis_conv_workspace_size,
            .conv_forward = cn_blis_conv_forward,
            .conv_backward_data = cn_blis_conv_backward_data,
            .conv_backward_weight = cn_blis_conv_backward_weight,
        },
        .name = "blis",
    },
};
static int32_t g_count = 2;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- lookups -------------------------------------------------------------- */

/* Caller holds g_lock. */
static const conure_backend *find_locked(const char *name)
{
    for (int32_t i = 0; i < g_count; i++)
        if (strcmp(g_table[i].name, name) == 0)
            return &g_table[i].be;
    return NULL;
}

const conure_backend *cn_backend_find(const char *name)
{
    if (!name)
        return NULL;
    pthread_mutex_lock(&g_lock);
    const conure_backend *b = find_locked(name);
    pthread_mutex_unlock(&g_lock);
    return b;
}

const conure_backend *cn_backend_ref(void)
{
    return &g_table[0].be;
}

const conure_backend *cn_backend_blis(void)
{
    return &g_table[1].be;
}

/* "ref, blis, ..." into buf (truncated to fit). */
static void list_names(char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&g_lock);
    for (int32_t i = 0; i < g_count && used < cap; i++) {
        int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", g_table[i].name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    pthread_mutex_unlock(&g_lock);
}

const conure_backend *cn_backend_default(void)
{
    const char *env = getenv("CONURE_BACKEND");
    if (!env || !env[0])
        return cn_backend_blis();
    const conure_backend *b = cn_backend_find(env);
    if (!b) {
        char names[CN_MAX_BACKENDS * (CN_BACKEND_NAME_MAX + 2)];
        list_names(names, sizeof names);
        cn_fail(CONURE_E_BACKEND,
                "environment: CONURE_BACKEND=\"%.64s\" is not a registered backend "
                "(registered: %s)",
                env, names);
    }
    return b;
}

/* ---- exported API --------------------------------------------------------- */

/* 0 if name is 1..31 characters of [a-z0-9_]; else a reason. */
static const char *bad_name(const char *name)
{
    size_t n = 0;
    for (; name[n] != '\0'; n++) {
        if (n >= CN_BACKEND_NAME_MAX - 1)
            return "is longer than 31 characters";
        char c = name[n];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return "has a character outside [a-z0-9_]";
    }
    return n == 0 ? "is empty" : NULL;
}

CONURE_API conure_status conure_backend_register(const conure_backend *backend)
{
    cn_clear_error();
    if (!backend)
        return cn_fail(CONURE_E_NULL_ARG, "backend_register: backend is NULL");
    /* struct_size first: a smaller struct may not even have the other fields. */
    if (backend->struct_size < CN_BACKEND_V1_SIZE)
        return cn_fail(CONURE_E_INVALID_ARG,
                       "backend_register: backend->struct_size = %u is smaller than "
                       "sizeof(conure_backend) of ABI version 1 (%zu)",
                       (unsigned)backend->struct_size, (size_t)CN_BACKEND_V1_SIZE);
    if (backend->abi_version != CONURE_BACKEND_ABI_VERSION)
        return cn_fail(CONURE_E_INVALID_ARG,
                       "backend_register: backend->abi_version = %u, expected "
                       "CONURE_BACKEND_ABI_VERSION (%u)",
                       (unsigned)backend->abi_version, (unsigned)CONURE_BACKEND_ABI_VERSION);
    if (!backend->name)
        return cn_fail(CONURE_E_NULL_ARG, "backend_register: backend->name is NULL");
    const char *why = bad_name(backend->name);
    if (why)
        return cn_fail(CONURE_E_INVALID_ARG,
                       "backend_register: backend->name \"%.40s\" %s (want 1..31 "
                       "characters of [a-z0-9_])",
                       backend->name, why);
    if (!backend->conv_forward)
        return cn_fail(CONURE_E_NULL_ARG,
                       "backend_register: backend \"%s\": conv_forward is NULL",
                       backend->name);
    if (!backend->conv_backward_data)
        return cn_fail(CONURE_E_NULL_ARG,
                       "backend_register: backend \"%s\": conv_backward_data is NULL",
                       backend->name);
    if (!backend->conv_backward_weight)
        return cn_fail(CONURE_E_NULL_ARG,
                       "backend_register: backend \"%s\": conv_backward_weight is NULL",
                       backend->name);

    conure_status st = CONURE_OK;
    pthread_mutex_lock(&g_lock);
    if (find_locked(backend->name)) {
        st = cn_fail(CONURE_E_INVALID_ARG,
                     "backend_register: backend->name \"%s\" is already registered",
                     backend->name);
    } else if (g_count >= CN_MAX_BACKENDS) {
        st = cn_fail(CONURE_E_OUT_OF_RANGE,
                     "backend_register: cannot register \"%s\": the registry is full "
                     "(%d backends)",
                     backend->name, CN_MAX_BACKENDS);
    } else {
        cn_backend_entry *e = &g_table[g_count];
        /* The fields both sides know: a newer author's struct may be longer
         * than ours, an older one (once there is a v2) shorter; fields it
         * lacks stay zero (NULL: optional). */
        size_t n = backend->struct_size < sizeof e->be ? backend->struct_size : sizeof e->be;
        memset(&e->be, 0, sizeof e->be);
        memcpy(&e->be, backend, n);
        e->be.struct_size = (uint32_t)sizeof e->be;
        strcpy(e->name, backend->name); /* length checked by bad_name() */
        e->be.name = e->name;
        g_count++;
    }
    pthread_mutex_unlock(&g_lock);
    return st;
}

CONURE_API conure_status conure_backend_get(const char *name, const conure_backend **out)
{
    cn_clear_error();
    if (!name)
        return cn_fail(CONURE_E_NULL_ARG, "backend_get: name is NULL");
    if (!out)
        return cn_fail(CONURE_E_NULL_ARG, "backend_get: out is NULL");
    const conure_backend *b = cn_backend_find(name);
    if (!b) {
        char names[CN_MAX_BACKENDS * (CN_BACKEND_NAME_MAX + 2)];
        list_names(names, sizeof names);
        return cn_fail(CONURE_E_BACKEND,
                       "backend_get: \"%.64s\" is not a registered backend "
                       "(registered: %s)",
                       name, names);
    }
    *out = b;
    return CONURE_OK;
}

CONURE_API int32_t conure_backend_list(const char **names, int32_t cap)
{
    cn_clear_error();
    if (!names || cap < 0)
        cap = 0;
    pthread_mutex_lock(&g_lock);
    int32_t n = g_count;
    for (int32_t i = 0; i < n && i < cap; i++)
        names[i] = g_table[i].name;
    pthread_mutex_unlock(&g_lock);
    return n;
}

/* ---- dispatch ----------------------------------------------------------------- */

static int shape_ok(const conure_conv_shape *s)
{
    return s->struct_size >= sizeof(conure_conv_shape) && s->batch >= 1 && s->length >= 1 &&
           s->in_channels >= 1 && s->out_channels >= 1 && s->kernel_width >= 1 &&
           s->dilation >= 1 && s->n_threads >= 1;
}

static conure_status bad_call(const conure_backend *b, const conure_conv_shape *s,
                              const char *kernel)
{
    if (!b || !s)
        return cn_fail(CONURE_E_INTERNAL, "%s: %s is NULL", kernel, !b ? "backend" : "shape");
    return cn_fail(CONURE_E_INTERNAL,
                   "%s: invalid shape (struct_size %u, batch %d, length %d, in_channels %d, "
                   "out_channels %d, kernel_width %d, dilation %d, n_threads %d)",
                   kernel, (unsigned)s->struct_size, s->batch, s->length, s->in_channels,
                   s->out_channels, s->kernel_width, s->dilation, s->n_threads);
}

/* The backend that runs `s`: b, or "ref" if b->supports rejects it. */
static const conure_backend *pick(const conure_backend *b, const conure_conv_shape *s)
{
    if (b->supports && !b->supports(b->ctx, s))
        return cn_backend_ref();
    return b;
}

static conure_status kernel_failed(const conure_backend *b, const char *kernel, int rc,
                                   const conure_conv_shape *s)
{
    return cn_fail(CONURE_E_BACKEND,
                   "backend \"%s\": %s failed (returned %d) on batch %d, length %d, "
                   "in_channels %d, out_channels %d, kernel_width %d, dilation %d",
                   b->name, kernel, rc, s->batch, s->length, s->in_channels, s->out_channels,
                   s->kernel_width, s->dilation);
}

size_t cn_conv_workspace(const conure_backend *b, const conure_conv_shape *s)
{
    if (!b || !s || !shape_ok(s))
        return 0;
    const conure_backend *r = pick(b, s);
    if (!r->workspace_size)
        return 0;
    size_t most = 0;
    for (int op = CONURE_CONV_FORWARD; op <= CONURE_CONV_BACKWARD_WEIGHT; op++) {
        size_t n = r->workspace_size(r->ctx, (conure_conv_op)op, s);
        if (n > most)
            most = n;
    }
    return most;
}

conure_status cn_conv_forward(const conure_backend *b, const conure_conv_shape *s,
                              const float *x, const float *w, float *y, void *ws)
{
    if (!b || !s || !shape_ok(s))
        return bad_call(b, s, "conv_forward");
    const conure_backend *r = pick(b, s);
    int rc = r->conv_forward(r->ctx, s, x, w, y, ws);
    return rc ? kernel_failed(r, "conv_forward", rc, s) : CONURE_OK;
}

conure_status cn_conv_backward_data(const conure_backend *b, const conure_conv_shape *s,
                                    const float *dy, const float *w, float *dx, void *ws)
{
    if (!b || !s || !shape_ok(s))
        return bad_call(b, s, "conv_backward_data");
    const conure_backend *r = pick(b, s);
    int rc = r->conv_backward_data(r->ctx, s, dy, w, dx, ws);
    return rc ? kernel_failed(r, "conv_backward_data", rc, s) : CONURE_OK;
}

conure_status cn_conv_backward_weight(const conure_backend *b, const conure_conv_shape *s,
                                      const float *x, const float *dy, float *dw, void *ws)
{
    if (!b || !s || !shape_ok(s))
        return bad_call(b, s, "conv_backward_weight");
    const conure_backend *r = pick(b, s);
    int rc = r->conv_backward_weight(r->ctx, s, x, dy, dw, ws);
    return rc ? kernel_failed(r, "conv_backward_weight", rc, s) : CONURE_OK;
}
