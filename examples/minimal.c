/*
 * minimal.c: the smallest complete libconure program.
 *
 * It walks through the life of one task with nothing but <conure/conure.h>:
 *
 *   options -> model -> add a next-item task -> train (dense phase)
 *   -> prune -> retrain -> finish -> recommend (top-k) -> evaluate
 *   -> save to a file -> load it back -> check the scores agree
 *
 * The data are toy "users" whose item sequences walk around a cycle of the
 * 19 items with a fixed stride (1, 2 or 3), e.g. 4 5 6 7 ... or 3 5 7 9 ...
 * A user's last few items tell the stride, so the next item is learnable.
 *
 * Build in-tree (meson builds it as build/examples/minimal), or against an
 * installed libconure:
 *     cc minimal.c $(pkg-config --cflags --libs conure) -o minimal
 * Run:
 *     ./minimal [MODEL_FILE]      (default: $TMPDIR/conure-minimal.model)
 * It exits with status 1, after printing conure_last_error(), if any call
 * fails.
 */
#include <conure/conure.h>

#include <math.h> /* isinf, INFINITY: macros, no libm needed */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB 20   /* item ids 1..19; 0 is padding */
#define N_ITEMS (VOCAB - 1)
#define SEQ 10     /* items per training sequence */
#define BATCH 32   /* sequences per training step */
#define DENSE_STEPS 200
#define RETRAIN_STEPS 100
#define N_EVAL 200 /* held-out users for the evaluation */

/* Stop at the first failing call: report it and jump to the cleanup. */
#define CHECK(call)                                                                  \
    do {                                                                             \
        conure_status st_ = (call);                                                  \
        if (st_ != CONURE_OK) {                                                      \
            fprintf(stderr, "minimal: %s failed: %s\n  %s\n", #call,                 \
                    conure_status_string(st_), conure_last_error());                 \
            goto done;                                                               \
        }                                                                            \
    } while (0)

/* A tiny deterministic random generator for the toy data (xorshift64). */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

/* The item `steps` strides after `item` on the cycle 1..19. */
static int32_t advance(int32_t item, int32_t stride, int32_t steps)
{
    return (int32_t)(((item - 1) + stride * steps) % N_ITEMS) + 1;
}

/* One user: a left-padded row of `len` columns whose last `n` entries walk
 * the cycle from a random start with a random stride. */
static void make_user(int32_t *row, int32_t len, int32_t n)
{
    int32_t start = 1 + (int32_t)rnd(N_ITEMS);
    int32_t stride = 1 + (int32_t)rnd(3);
    for (int32_t j = 0; j < len; j++)
        row[j] = j < len - n ? 0 : advance(start, stride, j - (len - n));
}

/* A training batch: sequences of 4..SEQ items, left-padded to SEQ. */
static void make_batch(int32_t *items)
{
    for (int32_t b = 0; b < BATCH; b++)
        make_user(items + (size_t)b * SEQ, SEQ, 4 + (int32_t)rnd(SEQ - 3));
}

static int train(conure_model *model, int32_t task, int steps, const char *phase)
{
    int32_t items[BATCH * SEQ];
    float loss = 0.0f;
    for (int s = 1; s <= steps; s++) {
        make_batch(items);
        /* Next-item task: positions 0..SEQ-2 are the input, 1..SEQ-1 the
         * targets; padded targets are left out.  targets must be NULL. */
        conure_status st = conure_model_train_step(model, task, items, BATCH, SEQ, NULL, &loss);
        if (st != CONURE_OK) {
            fprintf(stderr, "minimal: train_step (%s, step %d) failed: %s\n  %s\n", phase, s,
                    conure_status_string(st), conure_last_error());
            return -1;
        }
        if (s == 1 || s % 50 == 0)
            printf("  %-7s step %3d  loss %.4f\n", phase, s, (double)loss);
    }
    return 0;
}

int main(int argc, char **argv)
{
    int ok = 0;
    conure_options *opts = NULL;
    conure_options *task_opts = NULL;
    conure_model *model = NULL;
    conure_model *loaded = NULL;
    int32_t task = 0;
    static int32_t eval_items[N_EVAL * SEQ];
    static int32_t eval_targets[N_EVAL];
    static int32_t ranks[N_EVAL];
    static float scores[N_EVAL * VOCAB];
    static float scores2[N_EVAL * VOCAB];

    char path[4096];
    if (argc > 1) {
        snprintf(path, sizeof path, "%s", argv[1]);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/conure-minimal.model", tmp && *tmp ? tmp : "/tmp");
    }
    printf("libconure %s\n", conure_version_string());

    /* 1. Model options: a key/value bag; only vocab_size is required. */
    CHECK(conure_options_create(&opts));
    CHECK(conure_options_set_int(opts, "vocab_size", VOCAB));
    CHECK(conure_options_set_int(opts, "channels", 16));
    CHECK(conure_options_set_string(opts, "dilations", "1,2")); /* two residual blocks */
    CHECK(conure_options_set_int(opts, "max_len", 16));
    CHECK(conure_options_set_int(opts, "seed", 42));
    CHECK(conure_options_set_int(opts, "threads", 1));

    /* 2. The model.  It copies what it needs, so the options can go now. */
    CHECK(conure_model_create(opts, &model));
    conure_options_free(opts);
    opts = NULL;

    /* 3. Task 1: next-item prediction over the whole vocabulary.  Task
     *    options: a larger learning rate than the default suits this toy,
     *    and with 20 items the full softmax is cheap. */
    CHECK(conure_options_create(&task_opts));
    CHECK(conure_options_set_float(task_opts, "lr", 0.01));
    CHECK(conure_options_set_string(task_opts, "loss", "softmax"));
    CHECK(conure_model_add_task(model, CONURE_TASK_NEXT_ITEM, VOCAB, task_opts, &task));
    conure_options_free(task_opts);
    task_opts = NULL;
    printf("task %d added (next item, %d targets)\n", (int)task, VOCAB);

    /* 4. Dense phase: every convolution weight is trainable. */
    if (train(model, task, DENSE_STEPS, "dense") != 0)
        goto done;

    /* 5. Prune: the task keeps its largest weights; the rest (release_ratio,
     *    default 70%) stays free for later tasks.  Then retrain only the
     *    weights the task kept, and finish: the task is frozen for good. */
    CHECK(conure_model_prune(model, task));
    if (train(model, task, RETRAIN_STEPS, "retrain") != 0)
        goto done;
    CHECK(conure_model_finish_task(model, task));

    int64_t counts[2];
    CHECK(conure_model_capacity(model, -1, counts, 2));
    printf("conv weights: %lld owned by task 1, %lld free for the next task\n",
           (long long)counts[1], (long long)counts[0]);

    /* 6. Recommend for one user whose history is 3 5 7 9 (stride 2): the
     *    best next item should be 11.  Items already seen are excluded. */
    {
        const int32_t history[4] = {3, 5, 7, 9};
        int32_t ids[5];
        float top[5];
        CHECK(conure_model_top_k(model, task, history, 1, 4, 5, CONURE_TOPK_EXCLUDE_HISTORY,
                                 ids, top, 5));
        printf("history 3 5 7 9 -> top 5:");
        for (int j = 0; j < 5; j++)
            printf(" %d (%.2f)", (int)ids[j], (double)top[j]);
        printf("\n");
    }

    /* 7. Evaluate on fresh users: score all items after SEQ-1 items, rank
     *    the true next item, report HR@5 and NDCG@5. */
    for (int32_t u = 0; u < N_EVAL; u++) {
        int32_t row[SEQ];
        make_user(row, SEQ, SEQ);
        memcpy(eval_items + (size_t)u * (SEQ - 1), row, sizeof(int32_t) * (SEQ - 1));
        eval_targets[u] = row[SEQ - 1];
    }
    CHECK(conure_model_scores(model, task, eval_items, N_EVAL, SEQ - 1, scores,
                              (size_t)N_EVAL * VOCAB));
    CHECK(conure_eval_ranks(scores, N_EVAL, VOCAB, eval_targets, ranks));
    {
        double hr = 0, ndcg = 0;
        CHECK(conure_eval_metrics(ranks, N_EVAL, 5, &hr, NULL, &ndcg));
        printf("held-out users: HR@5 %.3f  NDCG@5 %.3f  (random guessing: HR@5 %.3f)\n", hr,
               ndcg, 5.0 / N_ITEMS);
    }

    /* 8. Save (atomically) and load it back: the scores must agree. */
    CHECK(conure_model_save(model, path, 0));
    CHECK(conure_model_load(path, NULL, &loaded));
    CHECK(conure_model_scores(loaded, task, eval_items, N_EVAL, SEQ - 1, scores2,
                              (size_t)N_EVAL * VOCAB));
    {
        double max_diff = 0;
        for (size_t i = 0; i < (size_t)N_EVAL * VOCAB; i++) {
            if (isinf(scores[i]) || isinf(scores2[i])) {
                if (scores[i] != scores2[i]) {
                    max_diff = INFINITY;
                    break;
                }
                continue; /* item 0 (padding) scores -INFINITY in both */
            }
            double d = (double)scores[i] - (double)scores2[i];
            if (d < 0)
                d = -d;
            if (!(d <= max_diff))
                max_diff = d; /* also catches NaN */
        }
        printf("saved to %s and loaded back: max score difference %g\n", path, max_diff);
        if (!(max_diff <= 1e-5)) {
            fprintf(stderr, "minimal: the loaded model scores differently\n");
            goto done;
        }
    }
    remove(path);
    ok = 1;

done:
    conure_options_free(opts);
    conure_options_free(task_opts);
    conure_model_free(loaded);
    conure_model_free(model);
    if (ok)
        printf("ok\n");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
