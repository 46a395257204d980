/* Check suite 'backends': the convolution kernels and the backend registry.
 *
 *  ref_formula      "ref" against a brute-force evaluation of the formulas in
 *                   conure_backend.h written out again here (double sums)
 *  adjoint          <fwd(x,w), dy> = <x, bwd_data(dy,w)> = <w, bwd_weight(x,dy)>
 *                   in double, for every registered backend
 *  sweep            every registered backend agrees with "ref" on all three
 *                   kernels over channels/dilation/kernel/length/batch/threads
 *  deterministic    "blis" is bit-identical run to run for a fixed thread count
 *  register_*       user backends: registration, lookup, listing, supports()
 *                   fallback, workspace, kernel failures, every rejection
 *  default_*        CONURE_BACKEND
 *  registry_full    concurrent registration until the table is full
 *
 * Outputs are pre-filled with NaN so a kernel that does not overwrite its
 * whole output fails (tu_norm_err treats NaN as an infinite error). */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

#define AGREE_TOL 1e-5
#define ADJOINT_TOL 1e-5

/* ------------------------------------------------------------- helpers -- */

static conure_conv_shape mk_shape(int b, int l, int cin, int cout, int k, int d, int nt)
{
    conure_conv_shape s;
    memset(&s, 0, sizeof s);
    s.struct_size = (uint32_t)sizeof s;
    s.batch = b;
    s.length = l;
    s.in_channels = cin;
    s.out_channels = cout;
    s.kernel_width = k;
    s.dilation = d;
    s.n_threads = nt;
    return s;
}

static size_t n_x(const conure_conv_shape *s)
{
    return (size_t)s->batch * (size_t)s->length * (size_t)s->in_channels;
}
static size_t n_y(const conure_conv_shape *s)
{
    return (size_t)s->batch * (size_t)s->length * (size_t)s->out_channels;
}
static size_t n_w(const conure_conv_shape *s)
{
    return (size_t)s->kernel_width * (size_t)s->in_channels * (size_t)s->out_channels;
}

/* Exact-size heap arrays, so AddressSanitizer sees any overrun. */
static float *falloc(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

static void fill_nan(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
}

/* 64-byte aligned workspace of exactly `bytes` (NULL for 0). */
static void *ws_alloc(size_t bytes)
{
    if (bytes == 0)
        return NULL;
    void *p = NULL;
    ck_assert_int_eq(posix_memalign(&p, 64, bytes), 0);
    memset(p, 0x7f, bytes); /* garbage: kernels must not rely on zeroed scratch */
    return p;
}

static const char *shape_str(const conure_conv_shape *s)
{
    static char buf[160];
    snprintf(buf, sizeof buf, "B=%d L=%d Cin=%d Cout=%d K=%d d=%d threads=%d", s->batch,
             s->length, s->in_channels, s->out_channels, s->kernel_width, s->dilation,
             s->n_threads);
    return buf;
}

/* All three kernels of `b` through the dispatching calls. */
static void run3(const conure_backend *b, const conure_conv_shape *s, const float *x,
                 const float *w, const float *dy, float *y, float *dx, float *dw)
{
    void *ws = ws_alloc(cn_conv_workspace(b, s));
    fill_nan(y, n_y(s));
    fill_nan(dx, n_x(s));
    fill_nan(dw, n_w(s));
    ck_assert_msg(cn_conv_forward(b, s, x, w, y, ws) == CONURE_OK, "%s forward: %s", b->name,
                  cn_error_text());
    ck_assert_msg(cn_conv_backward_data(b, s, dy, w, dx, ws) == CONURE_OK,
                  "%s backward_data: %s", b->name, cn_error_text());
    ck_assert_msg(cn_conv_backward_weight(b, s, x, dy, dw, ws) == CONURE_OK,
                  "%s backward_weight: %s", b->name, cn_error_text());
    free(ws);
}

/* --------------------------------------------- brute force, from the formula --
 * x or dy outside 0 .. length-1 counts as 0; s_j = (K-1-j)*d. */

static double at(const float *a, const conure_conv_shape *s, int b, int t, int c, int nc)
{
    if (t < 0 || t >= s->length)
        return 0.0;
    return (double)a[((size_t)b * s->length + (size_t)t) * (size_t)nc + (size_t)c];
}

static void bf_forward(const conure_conv_shape *s, const float *x, const float *w, float *y)
{
    const int K = s->kernel_width, Cin = s->in_channels, Cout = s->out_channels;
    for (int b = 0; b < s->batch; b++)
        for (int t = 0; t < s->length; t++)
            for (int o = 0; o < Cout; o++) {
                double sum = 0;
                for (int j = 0; j < K; j++)
                    for (int i = 0; i < Cin; i++)
                        sum += at(x, s, b, t - (K - 1 - j) * s->dilation, i, Cin) *
                               (double)w[((size_t)j * Cin + i) * Cout + o];
                y[((size_t)b * s->length + t) * Cout + o] = (float)sum;
            }
}

static void bf_backward_data(const conure_conv_shape *s, const float *dy, const float *w,
                             float *dx)
{
    const int K = s->kernel_width, Cin = s->in_channels, Cout = s->out_channels;
    for (int b = 0; b < s->batch; b++)
        for (int t = 0; t < s->length; t++)
            for (int i = 0; i < Cin; i++) {
                double sum = 0;
                for (int j = 0; j < K; j++)
                    for (int o = 0; o < Cout; o++)
                        sum += at(dy, s, b, t + (K - 1 - j) * s->dilation, o, Cout) *
                               (double)w[((size_t)j * Cin + i) * Cout + o];
                dx[((size_t)b * s->length + t) * Cin + i] = (float)sum;
            }
}

static void bf_backward_weight(const conure_conv_shape *s, const float *x, const float *dy,
                               float *dw)
{
    const int K = s->kernel_width, Cin = s->in_channels, Cout = s->out_channels;
    for (int j = 0; j < K; j++)
        for (int i = 0; i < Cin; i++)
            for (int o = 0; o < Cout; o++) {
                double sum = 0;
                for (int b = 0; b < s->batch; b++)
                    for (int t = 0; t < s->length; t++)
                        sum += at(x, s, b, t - (K - 1 - j) * s->dilation, i, Cin) *
                               at(dy, s, b, t, o, Cout);
                dw[((size_t)j * Cin + i) * Cout + o] = (float)sum;
            }
}

/* ---------------------------------------------------------- ref_formula -- */

START_TEST(ref_formula)
{
    /* B, L, Cin, Cout, K, d: edges (L = 1, look-back beyond the sequence,
     * K = 1, Cin != Cout) and a model-like block. */
    static const int shapes[][6] = {
        {1, 1, 1, 1, 1, 1},  {1, 5, 1, 1, 2, 1},  {2, 7, 3, 5, 3, 2},  {3, 9, 4, 2, 2, 4},
        {2, 6, 3, 3, 3, 8},  {1, 3, 2, 7, 5, 1},  {4, 50, 8, 17, 3, 4}, {2, 20, 17, 8, 1, 1},
        {3, 33, 16, 16, 5, 2}, {2, 12, 5, 6, 4, 3},
    };
    const conure_backend *ref = cn_backend_ref();
    double worst = 0;
    for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
        const int *p = shapes[c];
        conure_conv_shape s = mk_shape(p[0], p[1], p[2], p[3], p[4], p[5], 1);
        float *x = falloc(n_x(&s)), *w = falloc(n_w(&s)), *dy = falloc(n_y(&s));
        float *y = falloc(n_y(&s)), *dx = falloc(n_x(&s)), *dw = falloc(n_w(&s));
        float *ey = falloc(n_y(&s)), *edx = falloc(n_x(&s)), *edw = falloc(n_w(&s));
        tu_fill_uniform(x, n_x(&s), 11 + c, 1.0f);
        tu_fill_uniform(w, n_w(&s), 22 + c, 0.5f);
        tu_fill_uniform(dy, n_y(&s), 33 + c, 1.0f);
        run3(ref, &s, x, w, dy, y, dx, dw);
        bf_forward(&s, x, w, ey);
        bf_backward_data(&s, dy, w, edx);
        bf_backward_weight(&s, x, dy, edw);
        double e[3] = {tu_norm_err(y, ey, n_y(&s)), tu_norm_err(dx, edx, n_x(&s)),
                       tu_norm_err(dw, edw, n_w(&s))};
        static const char *kn[3] = {"forward", "backward_data", "backward_weight"};
        for (int k = 0; k < 3; k++) {
            ck_assert_msg(e[k] < AGREE_TOL, "ref %s vs formula: error %g on %s", kn[k], e[k],
                          shape_str(&s));
            if (e[k] > worst)
                worst = e[k];
        }
        free(x), free(w), free(dy), free(y), free(dx), free(dw), free(ey), free(edx),
            free(edw);
    }
    fprintf(stderr, "# ref vs formula: worst normalised error %.3g\n", worst);
}
END_TEST

/* -------------------------------------------------------------- adjoint -- */

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

START_TEST(adjoint)
{
    static const int shapes[][7] = {
        /* B, L, Cin, Cout, K, d, threads */
        {1, 1, 1, 1, 1, 1, 1},   {2, 7, 3, 5, 3, 2, 1},  {3, 50, 8, 17, 3, 4, 2},
        {2, 9, 17, 3, 5, 2, 1},  {1, 6, 4, 4, 3, 8, 1},  {8, 50, 64, 64, 3, 1, 2},
        {3, 20, 16, 8, 2, 16, 2}, {4, 30, 12, 12, 1, 1, 1},
    };
    const char *names[64];
    int32_t nb = conure_backend_list(names, 64);
    double worst = 0;
    for (int32_t bi = 0; bi < nb; bi++) {
        const conure_backend *be = cn_backend_find(names[bi]);
        ck_assert_ptr_nonnull(be);
        for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
            const int *p = shapes[c];
            conure_conv_shape s = mk_shape(p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
            float *x = falloc(n_x(&s)), *w = falloc(n_w(&s)), *dy = falloc(n_y(&s));
            float *y = falloc(n_y(&s)), *dx = falloc(n_x(&s)), *dw = falloc(n_w(&s));
            float *y2 = falloc(n_y(&s));
            tu_fill_uniform(x, n_x(&s), 101 + c, 1.0f);
            tu_fill_uniform(w, n_w(&s), 202 + c, 0.5f);
            /* y = fwd(x, w) first, then dy = y + noise: <y, dy> is then
             * dominated by |y|^2, so the identity is not lost to cancellation. */
            void *ws = ws_alloc(cn_conv_workspace(be, &s));
            ck_assert_int_eq(cn_conv_forward(be, &s, x, w, y, ws), CONURE_OK);
            free(ws);
            tu_fill_uniform(dy, n_y(&s), 303 + c, 1.0f);
            for (size_t q = 0; q < n_y(&s); q++)
                dy[q] += y[q];
            run3(be, &s, x, w, dy, y2, dx, dw);
            double a = dot(y2, dy, n_y(&s)), b = dot(x, dx, n_x(&s)), cc = dot(w, dw, n_w(&s));
            double rel = fmax(fabs(a - b), fabs(a - cc)) / fabs(a);
            ck_assert_msg(rel < ADJOINT_TOL,
                          "%s: <fwd,dy> = %.10g, <x,bwd_data> = %.10g, <w,bwd_weight> = %.10g "
                          "(relative %g) on %s",
                          be->name, a, b, cc, rel, shape_str(&s));
            if (rel > worst)
                worst = rel;
            free(x), free(w), free(dy), free(y), free(dx), free(dw), free(y2);
        }
    }
    fprintf(stderr, "# adjoint identities: worst relative gap %.3g\n", worst);
}
END_TEST

/* ---------------------------------------------------------------- sweep -- */

static const int sw_ch[] = {1, 3, 8, 17, 64};
static const int sw_dil[] = {1, 2, 4, 8, 16};
static const int sw_k[] = {1, 2, 3, 5};
static const int sw_len[] = {1, 2, 7, 50};
static const int sw_batch[] = {1, 3, 8};
static const int sw_threads[] = {1, 2};
#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct sweep_stats {
    long shapes, runs;
    double worst[3];
    char worst_at[3][200];
} sweep_stats;

/* Values in [0, 1).  The sweep compares float results computed in different
 * orders on shapes with as few as one output; with signed data a sum can
 * cancel to nearly 0 and make any reordering look like a large normalised
 * error.  Non-negative terms cannot cancel, so there a difference above
 * ~sqrt(terms) * 6e-8 is a bug.  (Signed data: ref_formula, adjoint,
 * model_shape.) */
static void fill_nonneg(float *p, size_t n, uint64_t seed)
{
    tu_fill_uniform(p, n, seed, 1.0f);
    for (size_t i = 0; i < n; i++)
        p[i] = 0.5f * (p[i] + 1.0f);
}

/* Compares every registered backend except "ref" with "ref" on shape s
 * (for each thread count).  `only`: restrict to that backend, or NULL. */
static void compare_on(const conure_conv_shape *s0, const char *only, sweep_stats *st)
{
    static const char *kn[3] = {"forward", "backward_data", "backward_weight"};
    conure_conv_shape s = *s0;
    size_t nx = n_x(&s), ny = n_y(&s), nw = n_w(&s);
    float *x = falloc(nx), *w = falloc(nw), *dy = falloc(ny);
    float *ry = falloc(ny), *rdx = falloc(nx), *rdw = falloc(nw);
    float *y = falloc(ny), *dx = falloc(nx), *dw = falloc(nw);
    unsigned seed = (unsigned)(s.batch * 131 + s.length * 17 + s.in_channels * 7 +
                               s.out_channels * 3 + s.kernel_width * 5 + s.dilation);
    fill_nonneg(x, nx, seed);
    fill_nonneg(w, nw, seed + 1);
    fill_nonneg(dy, ny, seed + 2);
    s.n_threads = 1;
    run3(cn_backend_ref(), &s, x, w, dy, ry, rdx, rdw);
    st->shapes++;

    const char *names[64];
    int32_t nb = conure_backend_list(names, 64);
    ck_assert_int_le(nb, 64);
    for (int32_t bi = 0; bi < nb; bi++) {
        if (strcmp(names[bi], "ref") == 0 || (only && strcmp(names[bi], only) != 0))
            continue;
        const conure_backend *be = cn_backend_find(names[bi]);
        ck_assert_ptr_nonnull(be);
        for (int ti = 0; ti < NELEM(sw_threads); ti++) {
            s.n_threads = sw_threads[ti];
            run3(be, &s, x, w, dy, y, dx, dw);
            double e[3] = {tu_norm_err(y, ry, ny), tu_norm_err(dx, rdx, nx),
                           tu_norm_err(dw, rdw, nw)};
            st->runs++;
            for (int k = 0; k < 3; k++) {
                ck_assert_msg(e[k] < AGREE_TOL, "%s %s disagrees with ref: error %g on %s",
                              be->name, kn[k], e[k], shape_str(&s));
                if (e[k] > st->worst[k]) {
                    st->worst[k] = e[k];
                    snprintf(st->worst_at[k], sizeof st->worst_at[k], "%s, %s", be->name,
                             shape_str(&s));
                }
            }
        }
    }
    free(x), free(w), free(dy), free(ry), free(rdx), free(rdw), free(y), free(dx), free(dw);
}

/* The full product of the sweep values (dilation only varied when K > 1:
 * with K = 1 it does not enter the definition).  `quick`: batch 3 only. */
static void sweep(const char *only, const char *label, int quick)
{
    sweep_stats st;
    memset(&st, 0, sizeof st);
    for (int ci = 0; ci < NELEM(sw_ch); ci++)
        for (int co = 0; co < NELEM(sw_ch); co++)
            for (int ki = 0; ki < NELEM(sw_k); ki++)
                for (int di = 0; di < NELEM(sw_dil); di++) {
                    if (sw_k[ki] == 1 && di > 0)
                        continue;
                    for (int li = 0; li < NELEM(sw_len); li++)
                        for (int bi = 0; bi < NELEM(sw_batch); bi++) {
                            if (quick && sw_batch[bi] != 3)
                                continue;
                            conure_conv_shape s =
                                mk_shape(sw_batch[bi], sw_len[li], sw_ch[ci], sw_ch[co],
                                         sw_k[ki], sw_dil[di], 1);
                            compare_on(&s, only, &st);
                        }
                }
    static const char *kn[3] = {"forward", "backward_data", "backward_weight"};
    fprintf(stderr, "# %s: %ld shapes, %ld backend runs\n", label, st.shapes, st.runs);
    for (int k = 0; k < 3; k++)
        fprintf(stderr, "#   worst %s error %.3g (%s)\n", kn[k], st.worst[k], st.worst_at[k]);
    ck_assert_int_gt(st.runs, 0);
}

START_TEST(sweep_all_backends)
{
    sweep(NULL, "sweep, every registered backend vs ref", 0);
}
END_TEST

START_TEST(model_shape)
{
    /* The model's own shape (B 64 would be slow through ref: B 4 here). */
    sweep_stats st;
    memset(&st, 0, sizeof st);
    for (int d = 1; d <= 16; d *= 2) {
        conure_conv_shape s = mk_shape(4, 50, 256, 256, 3, d, 1);
        compare_on(&s, NULL, &st);
    }
    fprintf(stderr, "# model shape (B 4, L 50, C 256, K 3): worst errors %.3g %.3g %.3g\n",
            st.worst[0], st.worst[1], st.worst[2]);
}
END_TEST

/* --------------------------------------------------------- deterministic -- */

START_TEST(deterministic)
{
    const conure_backend *be = cn_backend_blis();
    for (int nt = 1; nt <= 2; nt++) {
        conure_conv_shape s = mk_shape(8, 50, 64, 48, 3, 2, nt);
        size_t nx = n_x(&s), ny = n_y(&s), nw = n_w(&s);
        float *x = falloc(nx), *w = falloc(nw), *dy = falloc(ny);
        float *y[2], *dx[2], *dw[2];
        tu_fill_uniform(x, nx, 5, 1.0f);
        tu_fill_uniform(w, nw, 6, 0.5f);
        tu_fill_uniform(dy, ny, 7, 1.0f);
        for (int r = 0; r < 2; r++) {
            y[r] = falloc(ny), dx[r] = falloc(nx), dw[r] = falloc(nw);
            run3(be, &s, x, w, dy, y[r], dx[r], dw[r]);
        }
        ck_assert_msg(memcmp(y[0], y[1], ny * sizeof(float)) == 0, "forward, %d threads", nt);
        ck_assert_msg(memcmp(dx[0], dx[1], nx * sizeof(float)) == 0, "bwd_data, %d threads",
                      nt);
        ck_assert_msg(memcmp(dw[0], dw[1], nw * sizeof(float)) == 0, "bwd_weight, %d threads",
                      nt);
        for (int r = 0; r < 2; r++)
            free(y[r]), free(dx[r]), free(dw[r]);
        free(x), free(w), free(dy);
    }
}
END_TEST

/* ------------------------------------------------------- user backends -- */

/* "user_ref": wraps ref, declines K == 5 or in_channels == 17, asks for a
 * workspace that it checks (alignment) and scribbles over in full. */
typedef struct user_ctx {
    int calls[3];     /* kernel calls per op */
    int bad_calls;    /* calls with a shape supports() declined, or a bad ws */
} user_ctx;
static user_ctx g_user;

static int user_supports(void *ctx, const conure_conv_shape *s)
{
    (void)ctx;
    return !(s->kernel_width == 5 || s->in_channels == 17);
}

static size_t user_ws(void *ctx, conure_conv_op op, const conure_conv_shape *s)
{
    (void)ctx;
    return 100 + 40 * (size_t)op + (size_t)s->out_channels;
}

static void user_check(void *ctx, conure_conv_op op, const conure_conv_shape *s, void *ws)
{
    user_ctx *u = ctx;
    u->calls[op]++;
    if (!user_supports(ctx, s) || !ws || ((uintptr_t)ws & 63) != 0)
        u->bad_calls++;
    else
        memset(ws, 0x5a, user_ws(ctx, op, s)); /* ASan: must be that large */
}

static int user_fwd(void *ctx, const conure_conv_shape *s, const float *x, const float *w,
                    float *y, void *ws)
{
    user_check(ctx, CONURE_CONV_FORWARD, s, ws);
    return cn_ref_conv_forward(NULL, s, x, w, y, NULL);
}
static int user_bwd_data(void *ctx, const conure_conv_shape *s, const float *dy,
                         const float *w, float *dx, void *ws)
{
    user_check(ctx, CONURE_CONV_BACKWARD_DATA, s, ws);
    return cn_ref_conv_backward_data(NULL, s, dy, w, dx, NULL);
}
static int user_bwd_weight(void *ctx, const conure_conv_shape *s, const float *x,
                           const float *dy, float *dw, void *ws)
{
    user_check(ctx, CONURE_CONV_BACKWARD_WEIGHT, s, ws);
    return cn_ref_conv_backward_weight(NULL, s, x, dy, dw, NULL);
}

static conure_backend user_backend(const char *name)
{
    conure_backend b;
    memset(&b, 0, sizeof b);
    b.struct_size = (uint32_t)sizeof b;
    b.abi_version = CONURE_BACKEND_ABI_VERSION;
    b.name = name;
    b.ctx = &g_user;
    b.supports = user_supports;
    b.workspace_size = user_ws;
    b.conv_forward = user_fwd;
    b.conv_backward_data = user_bwd_data;
    b.conv_backward_weight = user_bwd_weight;
    return b;
}

static void assert_err_has(const char *needle)
{
    ck_assert_msg(strstr(cn_error_text(), needle) != NULL, "error \"%s\" lacks \"%s\"",
                  cn_error_text(), needle);
}

START_TEST(builtins_static)
{
    /* Before any registration or other call. */
    const char *names[4] = {NULL, NULL, NULL, NULL};
    ck_assert_int_eq(conure_backend_list(names, 4), 2);
    ck_assert_str_eq(names[0], "ref");
    ck_assert_str_eq(names[1], "blis");
    ck_assert_ptr_null(names[2]);
    ck_assert_ptr_eq(cn_backend_find("ref"), cn_backend_ref());
    ck_assert_ptr_eq(cn_backend_find("blis"), cn_backend_blis());
    ck_assert_str_eq(cn_backend_ref()->name, "ref");
    ck_assert_str_eq(cn_backend_blis()->name, "blis");
    ck_assert_ptr_null(cn_backend_find("nope"));
    ck_assert_ptr_null(cn_backend_find(NULL));
    const conure_backend *b = NULL;
    ck_assert_int_eq(conure_backend_get("blis", &b), CONURE_OK);
    ck_assert_ptr_eq(b, cn_backend_blis());
    ck_assert_int_eq(b->abi_version, CONURE_BACKEND_ABI_VERSION);
    ck_assert_uint_ge(b->struct_size, sizeof(conure_backend));
    ck_assert_int_eq(conure_backend_list(NULL, 0), 2);
    names[0] = names[1] = NULL;
    ck_assert_int_eq(conure_backend_list(names, 1), 2); /* count beyond cap */
    ck_assert_str_eq(names[0], "ref");
    ck_assert_ptr_null(names[1]); /* nothing written past cap */
    ck_assert_ptr_nonnull(cn_blis_arch());
    ck_assert_int_gt((int)strlen(cn_blis_arch()), 0);
    fprintf(stderr, "# BLIS configuration: %s\n", cn_blis_arch());
}
END_TEST

START_TEST(register_user)
{
    char name[32] = "user_ref";
    conure_backend ub = user_backend(name);
    ck_assert_int_eq(conure_backend_register(&ub), CONURE_OK);
    ck_assert_str_eq(cn_error_text(), "");
    name[0] = 'X'; /* the registry copied the name */

    const conure_backend *got = NULL;
    ck_assert_int_eq(conure_backend_get("user_ref", &got), CONURE_OK);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got->name, "user_ref");
    ck_assert_ptr_ne(got->name, name);
    ck_assert_ptr_eq(got->ctx, &g_user);
    ck_assert_ptr_eq(cn_backend_find("user_ref"), got);
    const char *names[8];
    ck_assert_int_eq(conure_backend_list(names, 8), 3);
    ck_assert_str_eq(names[0], "ref");
    ck_assert_str_eq(names[1], "blis");
    ck_assert_str_eq(names[2], "user_ref");

    /* Workspace: the backend's own largest request when it supports the
     * shape; "ref"'s (none) when it does not. */
    conure_conv_shape ok = mk_shape(2, 9, 8, 5, 3, 2, 1);
    ck_assert_uint_eq(cn_conv_workspace(got, &ok), 100 + 80 + 5);
    conure_conv_shape no_k = mk_shape(2, 9, 8, 5, 5, 2, 1);
    ck_assert_uint_eq(cn_conv_workspace(got, &no_k), 0);
    ck_assert_uint_eq(cn_conv_workspace(cn_backend_ref(), &ok), 0);

    /* Supported shape: user kernels run, once each. */
    memset(&g_user, 0, sizeof g_user);
    sweep_stats st;
    memset(&st, 0, sizeof st);
    compare_on(&ok, "user_ref", &st);
    ck_assert_int_eq(st.runs, 2); /* threads 1 and 2 */
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(g_user.calls[k], 2);
    ck_assert_int_eq(g_user.bad_calls, 0);

    /* Declined shapes go to ref: no user call, same results. */
    memset(&g_user, 0, sizeof g_user);
    compare_on(&no_k, "user_ref", &st);
    conure_conv_shape no_c = mk_shape(3, 7, 17, 4, 2, 1, 1);
    compare_on(&no_c, "user_ref", &st);
    for (int k = 0; k < 3; k++)
        ck_assert_int_eq(g_user.calls[k], 0);

    /* And over the whole sweep (it lists the new backend). */
    memset(&g_user, 0, sizeof g_user);
    sweep("user_ref", "sweep, user_ref vs ref (batch 3)", 1);
    ck_assert_int_gt(g_user.calls[0], 0);
    ck_assert_int_eq(g_user.bad_calls, 0);
}
END_TEST

START_TEST(register_future_struct)
{
    /* A backend compiled against a later header: larger struct, extra
     * trailing fields; accepted, only the known part is used. */
    struct {
        conure_backend b;
        void *(*future_op)(void);
        char more[40];
    } big;
    memset(&big, 0xee, sizeof big);
    big.b = user_backend("future");
    big.b.struct_size = (uint32_t)sizeof big;
    ck_assert_int_eq(conure_backend_register(&big.b), CONURE_OK);
    const conure_backend *got = NULL;
    ck_assert_int_eq(conure_backend_get("future", &got), CONURE_OK);
    ck_assert(got->conv_forward == user_fwd);
    ck_assert_uint_eq(got->struct_size, sizeof(conure_backend));
}
END_TEST

static int fail_fwd(void *ctx, const conure_conv_shape *s, const float *x, const float *w,
                    float *y, void *ws)
{
    (void)ctx, (void)s, (void)x, (void)w, (void)y, (void)ws;
    return 7;
}
static int fail_bwd_data(void *ctx, const conure_conv_shape *s, const float *dy,
                         const float *w, float *dx, void *ws)
{
    (void)ctx, (void)s, (void)dy, (void)w, (void)dx, (void)ws;
    return -3;
}
static int fail_bwd_weight(void *ctx, const conure_conv_shape *s, const float *x,
                           const float *dy, float *dw, void *ws)
{
    (void)ctx, (void)s, (void)x, (void)dy, (void)dw, (void)ws;
    return 1;
}

START_TEST(kernel_failure)
{
    conure_backend fb = user_backend("failing");
    fb.supports = NULL;
    fb.workspace_size = NULL;
    fb.conv_forward = fail_fwd;
    fb.conv_backward_data = fail_bwd_data;
    fb.conv_backward_weight = fail_bwd_weight;
    ck_assert_int_eq(conure_backend_register(&fb), CONURE_OK);
    const conure_backend *b = cn_backend_find("failing");
    ck_assert_ptr_nonnull(b);
    conure_conv_shape s = mk_shape(1, 4, 2, 2, 2, 1, 1);
    float x[8] = {0}, w[8] = {0}, y[8], dx[8], dw[8];
    ck_assert_int_eq(cn_conv_forward(b, &s, x, w, y, NULL), CONURE_E_BACKEND);
    assert_err_has("\"failing\"");
    assert_err_has("conv_forward");
    assert_err_has("7");
    ck_assert_int_eq(cn_conv_backward_data(b, &s, x, w, dx, NULL), CONURE_E_BACKEND);
    assert_err_has("\"failing\"");
    assert_err_has("conv_backward_data");
    ck_assert_int_eq(cn_conv_backward_weight(b, &s, x, x, dw, NULL), CONURE_E_BACKEND);
    assert_err_has("\"failing\"");
    assert_err_has("conv_backward_weight");

    /* A malformed shape is a libconure bug, reported, never run. */
    conure_conv_shape bad = s;
    bad.dilation = 0;
    ck_assert_int_eq(cn_conv_forward(cn_backend_ref(), &bad, x, w, y, NULL),
                     CONURE_E_INTERNAL);
    assert_err_has("dilation 0");
    bad = s;
    bad.struct_size = 4;
    ck_assert_int_eq(cn_conv_backward_data(cn_backend_blis(), &bad, x, w, dx, NULL),
                     CONURE_E_INTERNAL);
    assert_err_has("struct_size");
}
END_TEST

START_TEST(register_rejects)
{
    conure_backend b;
    const int32_t before = conure_backend_list(NULL, 0);

    ck_assert_int_eq(conure_backend_register(NULL), CONURE_E_NULL_ARG);
    assert_err_has("backend is NULL");

    b = user_backend("small");
    b.struct_size = (uint32_t)sizeof b - 1;
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_INVALID_ARG);
    assert_err_has("struct_size");
    b.struct_size = 0;
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_INVALID_ARG);
    assert_err_has("struct_size");

    static const uint32_t abis[] = {0, 2, 0xffffffffu};
    for (int i = 0; i < 3; i++) {
        b = user_backend("abi");
        b.abi_version = abis[i];
        ck_assert_int_eq(conure_backend_register(&b), CONURE_E_INVALID_ARG);
        assert_err_has("abi_version");
    }

    b = user_backend(NULL);
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_NULL_ARG);
    assert_err_has("name is NULL");

    static const char *bad[] = {"",          "Ref",       "with-dash", "with space",
                                "caf\xc3\xa9", "a.b",      "UPPER",     "tab\t",
                                "abcdefghijklmnopqrstuvwxyz012345" /* 32 */};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b = user_backend(bad[i]);
        ck_assert_msg(conure_backend_register(&b) == CONURE_E_INVALID_ARG, "name \"%s\"",
                      bad[i]);
        assert_err_has("name");
    }

    b = user_backend("nofwd");
    b.conv_forward = NULL;
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_NULL_ARG);
    assert_err_has("conv_forward is NULL");
    b = user_backend("nobwd");
    b.conv_backward_data = NULL;
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_NULL_ARG);
    assert_err_has("conv_backward_data is NULL");
    b = user_backend("nobww");
    b.conv_backward_weight = NULL;
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_NULL_ARG);
    assert_err_has("conv_backward_weight is NULL");

    /* Built-in names are taken; so is a name registered once. */
    b = user_backend("ref");
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_INVALID_ARG);
    assert_err_has("\"ref\" is already registered");
    b = user_backend("blis");
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_INVALID_ARG);
    assert_err_has("already registered");
    ck_assert_int_eq(conure_backend_list(NULL, 0), before); /* nothing consumed */

    /* Optional hooks may be NULL; 31 characters of the full alphabet pass. */
    b = user_backend("abcdefghijklmnopqrstuvwxyz_0189");
    b.supports = NULL;
    b.workspace_size = NULL;
    ck_assert_int_eq(conure_backend_register(&b), CONURE_OK);
    ck_assert_str_eq(cn_error_text(), "");
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_INVALID_ARG);
    assert_err_has("already registered");
    ck_assert_int_eq(conure_backend_list(NULL, 0), before + 1);

    /* Lookups. */
    const conure_backend *got = NULL;
    ck_assert_int_eq(conure_backend_get("missing", &got), CONURE_E_BACKEND);
    ck_assert_ptr_null(got); /* untouched on failure */
    assert_err_has("\"missing\"");
    assert_err_has("registered: ref, blis, ");
    assert_err_has(", abcdefghijklmnopqrstuvwxyz_0189");
    ck_assert_int_eq(conure_backend_get(NULL, &got), CONURE_E_NULL_ARG);
    assert_err_has("name");
    ck_assert_int_eq(conure_backend_get("ref", NULL), CONURE_E_NULL_ARG);
    assert_err_has("out");
    /* Success clears the last error. */
    ck_assert_int_eq(conure_backend_get("ref", &got), CONURE_OK);
    ck_assert_str_eq(cn_error_text(), "");
}
END_TEST

/* ------------------------------------------------------ CONURE_BACKEND -- */

START_TEST(default_env)
{
    ck_assert_int_eq(unsetenv("CONURE_BACKEND"), 0);
    ck_assert_ptr_eq(cn_backend_default(), cn_backend_blis());
    setenv("CONURE_BACKEND", "", 1);
    ck_assert_ptr_eq(cn_backend_default(), cn_backend_blis());
    setenv("CONURE_BACKEND", "ref", 1);
    ck_assert_ptr_eq(cn_backend_default(), cn_backend_ref());
    setenv("CONURE_BACKEND", "blis", 1);
    ck_assert_ptr_eq(cn_backend_default(), cn_backend_blis());

    cn_clear_error();
    setenv("CONURE_BACKEND", "cuda", 1);
    ck_assert_ptr_null(cn_backend_default());
    assert_err_has("CONURE_BACKEND=\"cuda\" is not a registered backend");
    assert_err_has("(registered: ref, blis");
    setenv("CONURE_BACKEND", "REF", 1);
    ck_assert_ptr_null(cn_backend_default());
    assert_err_has("\"REF\"");

    /* A registered user backend is selectable too. */
    conure_backend ub = user_backend("env_user");
    ck_assert_int_eq(conure_backend_register(&ub), CONURE_OK);
    setenv("CONURE_BACKEND", "env_user", 1);
    const conure_backend *b = cn_backend_default();
    ck_assert_ptr_nonnull(b);
    ck_assert_str_eq(b->name, "env_user");
    unsetenv("CONURE_BACKEND");
}
END_TEST

/* -------------------------------------------------------- registry_full -- */

#define FILL_THREADS 4
static pthread_barrier_t g_fill_start;
static void *fill_worker(void *arg)
{
    int id = (int)(intptr_t)arg;
    int ok = 0;
    pthread_barrier_wait(&g_fill_start); /* all threads race from here */
    for (int n = 0; n < 40; n++) {
        char name[32];
        snprintf(name, sizeof name, "fill_%d_%d", id, n);
        conure_backend b = user_backend(name);
        conure_status st = conure_backend_register(&b);
        if (st == CONURE_OK)
            ok++;
        else if (st != CONURE_E_OUT_OF_RANGE || !strstr(cn_error_text(), "full"))
            return (void *)(intptr_t)-1;
    }
    return (void *)(intptr_t)ok;
}

START_TEST(registry_full)
{
    /* Several threads register at once until the table (32) is full. */
    const int32_t before = conure_backend_list(NULL, 0);
    pthread_t th[FILL_THREADS];
    ck_assert_int_eq(pthread_barrier_init(&g_fill_start, NULL, FILL_THREADS), 0);
    for (int i = 0; i < FILL_THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, fill_worker, (void *)(intptr_t)i), 0);
    int total = 0;
    for (int i = 0; i < FILL_THREADS; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        ck_assert_int_ge((int)(intptr_t)r, 0);
        total += (int)(intptr_t)r;
    }
    pthread_barrier_destroy(&g_fill_start);
    ck_assert_int_eq(total, 32 - before);
    const char *names[40];
    ck_assert_int_eq(conure_backend_list(names, 40), 32);
    for (int i = 0; i < 32; i++) {
        ck_assert_ptr_eq(cn_backend_find(names[i])->name, names[i]);
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(names[i], names[j]);
    }

    conure_backend b = user_backend("one_more");
    ck_assert_int_eq(conure_backend_register(&b), CONURE_E_OUT_OF_RANGE);
    assert_err_has("\"one_more\"");
    assert_err_has("full");
    /* Still usable when full. */
    const conure_backend *got = NULL;
    ck_assert_int_eq(conure_backend_get(names[31], &got), CONURE_OK);
    ck_assert_str_eq(got->name, names[31]);
    ck_assert_int_eq(conure_backend_get("ref", &got), CONURE_OK);
}
END_TEST

/* ----------------------------------------------------------------- main -- */

static Suite *backends_suite(void)
{
    Suite *s = suite_create("backends");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, builtins_static);
    tcase_add_test(tc, ref_formula);
    tcase_add_test(tc, adjoint);
    tcase_add_test(tc, sweep_all_backends);
    tcase_add_test(tc, model_shape);
    tcase_add_test(tc, deterministic);
    suite_add_tcase(s, tc);
    /* These change the registry: last, so the tests above see only the
     * built-ins even when Check runs without fork (CK_FORK=no). */
    TCase *tr = tcase_create("registry");
    tcase_add_test(tr, register_user);
    tcase_add_test(tr, register_future_struct);
    tcase_add_test(tr, kernel_failure);
    tcase_add_test(tr, register_rejects);
    tcase_add_test(tr, default_env);
    tcase_add_test(tr, registry_full);
    suite_add_tcase(s, tr);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(backends_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
