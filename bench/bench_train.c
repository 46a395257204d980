/* T1 training and inference throughput of libconure, shaped like the PyTorch
 * peer (../shared/peers/torch_nextitnet.py) so the two can run side by side.
 *   bench_train --mode train|infer|infer1 --vocab 3417 --channels 256
 *               --dilations 1,4,1,4,1,4,1,4 --seq-len 50 --batch 64 --threads 2
 *               [--loss softmax|sampled_softmax] [--negatives N] [--backend blis]
 *               [--block-order pre_norm|post_norm] [--steps 20] [--warmup 3]
 * Batches: random items 1..V-1, random left padding of 0..L/4 ids per row, as
 * the peer makes them.  Prints one JSON line.  Timing only: never a test. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <conure/conure.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng_state = 1;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)((rng_state >> 33) % n);
}

/* rows of len ids: uniform items, left padding 0..len/4 */
static void make_batch(int32_t *x, int batch, int len, int vocab)
{
    for (int b = 0; b < batch; b++) {
        int pad = (int)rnd((uint32_t)(len / 4 + 1));
        for (int j = 0; j < len; j++)
            x[b * len + j] = j < pad ? 0 : 1 + (int32_t)rnd((uint32_t)(vocab - 1));
    }
}

#define CK(call)                                                                                   \
    do {                                                                                           \
        conure_status st_ = (call);                                                                \
        if (st_ != CONURE_OK) {                                                                    \
            fprintf(stderr, "bench_train: %s: %s\n", #call, conure_last_error());                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    const char *mode = "train", *dil = "1,4,1,4,1,4,1,4", *loss = "softmax", *backend = NULL;
    const char *order = "pre_norm";
    int vocab = 3417, ch = 256, len = 50, batch = 64, threads = 1, steps = 20, warmup = 3;
    int negatives = 0, kernel = 3;
    static const struct option opts[] = {
        {"mode", required_argument, 0, 'm'},      {"vocab", required_argument, 0, 'v'},
        {"channels", required_argument, 0, 'c'},  {"dilations", required_argument, 0, 'd'},
        {"seq-len", required_argument, 0, 'l'},   {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'},   {"steps", required_argument, 0, 's'},
        {"warmup", required_argument, 0, 'w'},    {"loss", required_argument, 0, 'L'},
        {"negatives", required_argument, 0, 'n'}, {"backend", required_argument, 0, 'B'},
        {"block-order", required_argument, 0, 'o'}, {"kernel", required_argument, 0, 'k'},
        {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'm': mode = optarg; break;
        case 'v': vocab = atoi(optarg); break;
        case 'c': ch = atoi(optarg); break;
        case 'd': dil = optarg; break;
        case 'l': len = atoi(optarg); break;
        case 'b': batch = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 's': steps = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 'L': loss = optarg; break;
        case 'n': negatives = atoi(optarg); break;
        case 'B': backend = optarg; break;
        case 'o': order = optarg; break;
        case 'k': kernel = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: see the comment at the top of bench/bench_train.c\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (steps < 1 || len < 2 || batch < 1 || vocab < 3) {
        fprintf(stderr, "bench_train: steps, seq-len, batch, vocab out of range\n");
        return 2;
    }
    int infer1 = !strcmp(mode, "infer1");
    if (infer1)
        batch = 1;

    conure_options *o;
    CK(conure_options_create(&o));
    CK(conure_options_set_int(o, "vocab_size", vocab));
    CK(conure_options_set_int(o, "channels", ch));
    CK(conure_options_set_int(o, "kernel_width", kernel));
    CK(conure_options_set_string(o, "dilations", dil));
    CK(conure_options_set_string(o, "block_order", order));
    CK(conure_options_set_int(o, "threads", threads));
    CK(conure_options_set_int(o, "max_len", len + 1));
    if (backend)
        CK(conure_options_set_string(o, "backend", backend));
    conure_model *m;
    CK(conure_model_create(o, &m));
    conure_options_free(o);
    CK(conure_options_create(&o));
    CK(conure_options_set_string(o, "loss", loss));
    if (negatives)
        CK(conure_options_set_int(o, "negatives", negatives));
    int32_t task;
    CK(conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, vocab, o, &task));
    conure_options_free(o);
    CK(conure_model_set_int(m, "eval_unfinished", 1));

    int64_t nparam, nblocks;
    CK(conure_model_get_int(m, "n_parameters", &nparam));
    CK(conure_model_get_int(m, "n_blocks", &nblocks));
    const double conv_pp = 2.0 * 2 * (double)nblocks * kernel * (double)ch * ch;
    const double head_pp = 2.0 * ch * vocab;
    printf("{\"bench\": \"libconure\", \"version\": \"%s\", \"mode\": \"%s\", \"loss\": \"%s\", "
           "\"block_order\": \"%s\", \"backend\": \"%s\", \"threads\": %d, \"V\": %d, \"d\": %d, "
           "\"dilations\": \"%s\", \"k\": %d, \"L\": %d, \"B\": %d, \"params\": %lld, ",
           conure_version_string(), mode, loss, order, backend ? backend : "default", threads,
           vocab, ch, dil, kernel, len, batch, (long long)nparam);

    const int nb = 4;
    int32_t *x = malloc(sizeof(int32_t) * (size_t)nb * (size_t)batch * (size_t)(len + 1));
    for (int i = 0; i < nb; i++)
        make_batch(x + (size_t)i * batch * (len + 1), batch, len + 1, vocab);
    double *ts = malloc(sizeof(double) * (size_t)steps);

    if (!strcmp(mode, "train")) {
        float l = 0;
        for (int i = 0; i < warmup; i++)
            CK(conure_model_train_step(m, task, x + (size_t)(i % nb) * batch * (len + 1), batch,
                                       len + 1, NULL, &l));
        double t0 = now();
        for (int i = 0; i < steps; i++) {
            double a = now();
            CK(conure_model_train_step(m, task, x + (size_t)(i % nb) * batch * (len + 1), batch,
                                       len + 1, NULL, &l));
            ts[i] = now() - a;
        }
        double total = now() - t0;
        qsort(ts, (size_t)steps, sizeof(double), cmp_d);
        /* the peer's FLOP count (full softmax at every position) */
        double flops = 3.0 * batch * len * (conv_pp + head_pp);
        printf("\"steps\": %d, \"seconds\": %.3f, \"steps_per_s\": %.4f, \"seqs_per_s\": %.2f, "
               "\"ms_per_step_median\": %.2f, \"ms_per_step_min\": %.2f, \"flops_per_step\": %.0f, "
               "\"gflops_peer_equivalent\": %.2f, \"loss_last\": %.4f}\n",
               steps, total, steps / total, steps * batch / total, ts[steps / 2] * 1e3,
               ts[0] * 1e3, flops, flops * steps / total / 1e9, (double)l);
    } else {
        float *scores = malloc(sizeof(float) * (size_t)batch * (size_t)vocab);
        int32_t ids[10];
        for (int i = 0; i < (warmup > 20 || !infer1 ? warmup : 20); i++) {
            const int32_t *in = x + (size_t)(i % nb) * batch * (len + 1) + 1;
            if (infer1)
                CK(conure_model_top_k(m, task, in, 1, len, 10, 0, ids, NULL, 10));
            else
                CK(conure_model_scores(m, task, in, batch, len, scores, (size_t)batch * vocab));
        }
        /* rows of length len: the last len ids of each made row */
        int32_t *rows = malloc(sizeof(int32_t) * (size_t)nb * batch * len);
        for (int i = 0; i < nb * batch; i++)
            memcpy(rows + (size_t)i * len, x + (size_t)i * (len + 1) + 1, sizeof(int32_t) * len);
        double t0 = now();
        for (int i = 0; i < steps; i++) {
            const int32_t *in = rows + (size_t)(i % nb) * batch * len;
            double a = now();
            if (infer1)
                CK(conure_model_top_k(m, task, in, 1, len, 10, 0, ids, NULL, 10));
            else
                CK(conure_model_scores(m, task, in, batch, len, scores, (size_t)batch * vocab));
            ts[i] = now() - a;
        }
        double total = now() - t0;
        qsort(ts, (size_t)steps, sizeof(double), cmp_d);
        double flops = batch * (len * conv_pp + head_pp);
        if (infer1) {
            size_t i99 = (size_t)ceil(0.99 * steps) - 1;
            printf("\"steps\": %d, \"p50_us\": %.1f, \"p99_us\": %.1f, \"min_us\": %.1f, "
                   "\"gflops_at_p50\": %.2f}\n",
                   steps, ts[steps / 2] * 1e6, ts[i99] * 1e6, ts[0] * 1e6,
                   flops / ts[steps / 2] / 1e9);
        } else {
            printf("\"steps\": %d, \"seconds\": %.3f, \"users_per_s\": %.2f, "
                   "\"ms_per_batch_median\": %.2f, \"gflops\": %.2f}\n",
                   steps, total, steps * batch / total, ts[steps / 2] * 1e3,
                   flops * steps / total / 1e9);
        }
        free(scores);
        free(rows);
    }
    free(ts);
    free(x);
    conure_model_free(m);
    return 0;
}
