/* bench_conv: speed of the convolution kernels on the model's shapes
 * (batch 64, length 50, channels 256, kernel width 3, dilations 1 2 4 8) for
 * each backend, and of the raw cn_sgemm on the same GEMM shapes.  One JSON
 * line per measurement on stdout:
 *   {"bench":"conv","backend":"blis","kernel":"forward",...,"median_ms":..,"gflops":..}
 *   {"bench":"sgemm","kernel":"forward","m":..,"n":..,"k":..,...}
 * Flops per kernel: 2*B*L*K*Cin*Cout.  A timing program, never a test.
 *
 *   bench_conv [--threads N] [--reps N] [--backends ref,blis] [--dilations 1,2,4,8]
 *              [--batch N] [--length N] [--channels N] [--kernel-width N]
 */
#define _POSIX_C_SOURCE 200809L

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *t, int n)
{
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static float *falloc(size_t n, unsigned seed)
{
    float *p = cn_alloc(n, sizeof(float));
    if (!p) {
        fprintf(stderr, "bench_conv: out of memory\n");
        exit(1);
    }
    unsigned s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((double)(s >> 8) / 8388608.0 - 1.0);
    }
    return p;
}

static int parse_int(const char *arg, const char *flag, int lo)
{
    char *end = NULL;
    long v = strtol(arg, &end, 10);
    if (!end || *end || v < lo || v > 1000000) {
        fprintf(stderr, "bench_conv: %s needs an integer >= %d, got \"%s\"\n", flag, lo, arg);
        exit(2);
    }
    return (int)v;
}

static const char *kernel_names[3] = {"forward", "backward_data", "backward_weight"};

static conure_status run_kernel(const conure_backend *b, int op, const conure_conv_shape *s,
                                const float *x, const float *w, const float *dy, float *y,
                                float *dx, float *dw, void *ws)
{
    switch (op) {
    case 0: return cn_conv_forward(b, s, x, w, y, ws);
    case 1: return cn_conv_backward_data(b, s, dy, w, dx, ws);
    default: return cn_conv_backward_weight(b, s, x, dy, dw, ws);
    }
}

/* The GEMM the "blis" backend makes for kernel `op` (see lib/kernels/blis.c). */
static void gemm_of(int op, const conure_conv_shape *s, int *ta, int *tb, int64_t *m,
                    int64_t *n, int64_t *k)
{
    int64_t rows = (int64_t)s->batch * s->length;
    int64_t kc = (int64_t)s->kernel_width * s->in_channels;
    *ta = op == 2;
    *tb = op == 1;
    if (op == 0)
        *m = rows, *n = s->out_channels, *k = kc;
    else if (op == 1)
        *m = rows, *n = kc, *k = s->out_channels;
    else
        *m = kc, *n = s->out_channels, *k = rows;
}

int main(int argc, char **argv)
{
    int threads = 1, reps = 5, batch = 64, length = 50, channels = 256, kw = 3;
    char backends[256] = "ref,blis", dilations[256] = "1,2,4,8";
    static const struct option opts[] = {
        {"threads", required_argument, NULL, 't'},
        {"reps", required_argument, NULL, 'r'},
        {"backends", required_argument, NULL, 'b'},
        {"dilations", required_argument, NULL, 'd'},
        {"batch", required_argument, NULL, 'B'},
        {"length", required_argument, NULL, 'L'},
        {"channels", required_argument, NULL, 'C'},
        {"kernel-width", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "t:r:b:d:h", opts, NULL)) != -1) {
        switch (c) {
        case 't': threads = parse_int(optarg, "--threads", 1); break;
        case 'r': reps = parse_int(optarg, "--reps", 1); break;
        case 'b': snprintf(backends, sizeof backends, "%s", optarg); break;
        case 'd': snprintf(dilations, sizeof dilations, "%s", optarg); break;
        case 'B': batch = parse_int(optarg, "--batch", 1); break;
        case 'L': length = parse_int(optarg, "--length", 1); break;
        case 'C': channels = parse_int(optarg, "--channels", 1); break;
        case 'K': kw = parse_int(optarg, "--kernel-width", 1); break;
        case 'h':
            printf("usage: %s [--threads N] [--reps N] [--backends ref,blis] "
                   "[--dilations 1,2,4,8] [--batch N] [--length N] [--channels N] "
                   "[--kernel-width N]\n",
                   argv[0]);
            return 0;
        default: return 2;
        }
    }

    conure_conv_shape s;
    memset(&s, 0, sizeof s);
    s.struct_size = (uint32_t)sizeof s;
    s.batch = batch;
    s.length = length;
    s.in_channels = channels;
    s.out_channels = channels;
    s.kernel_width = kw;
    s.n_threads = threads;
    const size_t nx = (size_t)batch * length * channels;
    const size_t nw = (size_t)kw * channels * channels;
    float *x = falloc(nx, 1), *w = falloc(nw, 2), *dy = falloc(nx, 3);
    float *y = falloc(nx, 4), *dx = falloc(nx, 5), *dw = falloc(nw, 6);
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t)
        return 1;
    const double flops = 2.0 * batch * length * kw * (double)channels * channels;
    const char *arch = cn_blis_arch();

    char dl[256];
    snprintf(dl, sizeof dl, "%s", dilations);
    for (char *dsv = NULL, *dtok = strtok_r(dl, ",", &dsv); dtok;
         dtok = strtok_r(NULL, ",", &dsv)) {
        s.dilation = parse_int(dtok, "--dilations", 1);
        char bl[256];
        snprintf(bl, sizeof bl, "%s", backends);
        for (char *bsv = NULL, *btok = strtok_r(bl, ",", &bsv); btok;
             btok = strtok_r(NULL, ",", &bsv)) {
            const conure_backend *b = cn_backend_find(btok);
            if (!b) {
                fprintf(stderr, "bench_conv: unknown backend \"%s\"\n", btok);
                return 2;
            }
            size_t wsb = cn_conv_workspace(b, &s);
            void *ws = wsb ? cn_alloc(wsb, 1) : NULL;
            if (wsb && !ws)
                return 1;
            for (int op = 0; op < 3; op++) {
                /* one untimed warm-up call */
                if (run_kernel(b, op, &s, x, w, dy, y, dx, dw, ws) != CONURE_OK) {
                    fprintf(stderr, "bench_conv: %s\n", cn_error_text());
                    return 1;
                }
                for (int r = 0; r < reps; r++) {
                    double t0 = now_s();
                    run_kernel(b, op, &s, x, w, dy, y, dx, dw, ws);
                    t[r] = now_s() - t0;
                }
                double med = median(t, reps);
                printf("{\"bench\":\"conv\",\"backend\":\"%s\",\"kernel\":\"%s\",\"batch\":%d,"
                       "\"length\":%d,\"channels\":%d,\"kernel_width\":%d,\"dilation\":%d,"
                       "\"threads\":%d,\"reps\":%d,\"workspace_bytes\":%zu,"
                       "\"median_ms\":%.3f,\"gflops\":%.2f,\"blis_arch\":\"%s\"}\n",
                       b->name, kernel_names[op], batch, length, channels, kw, s.dilation,
                       threads, reps, wsb, 1e3 * med, flops / med * 1e-9, arch);
                fflush(stdout);
            }
            cn_free(ws);
        }
    }

    /* Raw cn_sgemm on the GEMM shape of each kernel (operands of the right
     * sizes; the values do not matter). */
    for (int op = 0; op < 3; op++) {
        int ta, tb;
        int64_t m, n, k;
        gemm_of(op, &s, &ta, &tb, &m, &n, &k);
        float *a = falloc((size_t)(m * k), 7), *bm = falloc((size_t)(k * n), 8);
        float *cm = falloc((size_t)(m * n), 9);
        int64_t lda = ta ? m : k, ldb = tb ? k : n;
        cn_sgemm(ta, tb, m, n, k, 1.0f, a, lda, bm, ldb, 0.0f, cm, n, threads);
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            cn_sgemm(ta, tb, m, n, k, 1.0f, a, lda, bm, ldb, 0.0f, cm, n, threads);
            t[r] = now_s() - t0;
        }
        double med = median(t, reps);
        printf("{\"bench\":\"sgemm\",\"kernel\":\"%s\",\"trans_a\":%d,\"trans_b\":%d,"
               "\"m\":%ld,\"n\":%ld,\"k\":%ld,\"threads\":%d,\"reps\":%d,\"median_ms\":%.3f,"
               "\"gflops\":%.2f,\"blis_arch\":\"%s\"}\n",
               kernel_names[op], ta, tb, (long)m, (long)n, (long)k, threads, reps, 1e3 * med,
               2.0 * (double)m * (double)n * (double)k / med * 1e-9, arch);
        fflush(stdout);
        cn_free(a), cn_free(bm), cn_free(cm);
    }
    free(t);
    cn_free(x), cn_free(w), cn_free(dy), cn_free(y), cn_free(dx), cn_free(dw);
    return 0;
}
