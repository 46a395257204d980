/* T1 training and inference (method §2, §3, §5): learning on planted
 * sequences, determinism, backend agreement at model level, Adam, samplers,
 * ranking metrics and top-k. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "model/model.h"
#include "nn/nn.h"
#include "synth.h"
#include "testutil.h"

#define V 61
#define LEN 12
#define USERS 480
#define TRAIN 400
#define BATCH 32

static synth world;
static void setup(void) { synth_make(&world, V, LEN, USERS, 6, 24, 2, 42); }
static void teardown(void) { synth_free(&world); }

static conure_model *model(const char *backend, int64_t seed, int threads, const char *order)
{
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "vocab_size", V), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "channels", 32), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "dilations", "1,2,1,2"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "seed", seed), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "threads", threads), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "backend", backend), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "block_order", order), CONURE_OK);
    conure_model *m;
    ck_assert_int_eq(conure_model_create(o, &m), CONURE_OK);
    conure_options_free(o);
    return m;
}

static int32_t t1(conure_model *m, const char *loss, int negatives)
{
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "loss", loss), CONURE_OK);
    ck_assert_int_eq(conure_options_set_float(o, "lr", 3e-3), CONURE_OK);
    if (negatives)
        ck_assert_int_eq(conure_options_set_int(o, "negatives", negatives), CONURE_OK);
    int32_t id;
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, o, &id), CONURE_OK);
    conure_options_free(o);
    return id;
}

/* Trains `steps` next-item steps on the training users' sequences without
 * their last item (which is the test target); returns the mean loss of the
 * first and last 10 steps. */
static void train(conure_model *m, int32_t task, int steps, double *first, double *last)
{
    int32_t rows[BATCH * LEN];
    double f = 0, l = 0;
    for (int s = 0; s < steps; s++) {
        synth_rows(&world, (s * BATCH) % TRAIN, BATCH, rows);
        for (int b = 0; b < BATCH; b++) /* drop the last item: shift right, pad left */
            memmove(rows + b * LEN + 1, rows + b * LEN, sizeof(int32_t) * (LEN - 1)), rows[b * LEN] = 0;
        float loss;
        conure_status st = conure_model_train_step(m, task, rows, BATCH, LEN, NULL, &loss);
        ck_assert_msg(st == CONURE_OK, "%s", conure_last_error());
        if (s < 10)
            f += loss / 10;
        if (s >= steps - 10)
            l += loss / 10;
    }
    if (first)
        *first = f;
    if (last)
        *last = l;
}

/* HR@5 / NDCG@5 of held-out users' last item given the items before it */
static void evaluate(const conure_model *m, int32_t task, double *hr, double *ndcg)
{
    const int32_t n = USERS - TRAIN;
    int32_t *in = malloc(sizeof(int32_t) * (size_t)(n * (LEN - 1)));
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)n), *ranks = malloc(sizeof(int32_t) * (size_t)n);
    float *s = malloc(sizeof(float) * (size_t)n * V);
    for (int u = 0; u < n; u++) {
        memcpy(in + u * (LEN - 1), world.seq + (TRAIN + u) * LEN, sizeof(int32_t) * (LEN - 1));
        tg[u] = world.seq[(TRAIN + u) * LEN + LEN - 1];
    }
    ck_assert_int_eq(conure_model_scores(m, task, in, n, LEN - 1, s, (size_t)n * V), CONURE_OK);
    ck_assert_int_eq(conure_eval_ranks(s, n, V, tg, ranks), CONURE_OK);
    ck_assert_int_eq(conure_eval_metrics(ranks, n, 5, hr, NULL, ndcg), CONURE_OK);
    free(in);
    free(tg);
    free(ranks);
    free(s);
}

static void learns(const char *loss, int negatives, const char *order, double min_hr)
{
    conure_model *m = model("blis", 1, 1, order);
    int32_t t = t1(m, loss, negatives);
    double first, last, hr, ndcg;
    train(m, t, 400, &first, &last);
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 1), CONURE_OK);
    evaluate(m, t, &hr, &ndcg);
    fprintf(stderr, "# %s %s: loss %.3f -> %.3f, held-out HR@5 %.3f NDCG@5 %.3f (random %.3f)\n",
            order, loss, first, last, hr, ndcg, 5.0 / (V - 1));
    ck_assert_msg(last < 0.5 * first, "loss %.3f -> %.3f", first, last);
    ck_assert_msg(hr >= min_hr, "HR@5 %.3f < %.3f", hr, min_hr);
    conure_model_free(m);
}

START_TEST(learns_full_softmax_pre_norm) { learns("softmax", 0, "pre_norm", 0.85); }
END_TEST
START_TEST(learns_full_softmax_post_norm) { learns("softmax", 0, "post_norm", 0.85); }
END_TEST
START_TEST(learns_sampled_softmax) { learns("sampled_softmax", 12, "pre_norm", 0.80); }
END_TEST

/* Saves m to a memory buffer and loads it back (the caller frees the copy). */
static conure_model *roundtrip(const conure_model *m)
{
    size_t size = 0, w = 0;
    ck_assert_int_eq(conure_model_save_size(m, 0, &size), CONURE_OK);
    void *buf = malloc(size);
    ck_assert_int_eq(conure_model_save_buffer(m, 0, buf, size, &w), CONURE_OK);
    ck_assert_uint_eq(w, size);
    conure_model *b = NULL;
    ck_assert_int_eq(conure_model_load_buffer(buf, w, NULL, &b), CONURE_OK);
    free(buf);
    return b;
}

static void snapshot(const conure_model *m, float **out, size_t *n)
{
    *n = m->n_backbone + m->tasks[0].head_numel;
    *out = malloc(sizeof(float) * *n);
    memcpy(*out, m->params, sizeof(float) * m->n_backbone);
    memcpy(*out + m->n_backbone, m->tasks[0].head, sizeof(float) * m->tasks[0].head_numel);
}

START_TEST(same_seed_bit_identical)
{
    const char *backends[2] = {"ref", "blis"};
    for (int bi = 0; bi < 2; bi++)
        for (int threads = 1; threads <= 2; threads++) {
            float *p[3];
            size_t n = 0;
            for (int r = 0; r < 3; r++) {
                conure_model *m = model(backends[bi], r == 2 ? 2 : 1, threads, "pre_norm");
                int32_t t = t1(m, "sampled_softmax", 12);
                train(m, t, 20, NULL, NULL);
                snapshot(m, &p[r], &n);
                conure_model_free(m);
            }
            ck_assert_msg(memcmp(p[0], p[1], n * sizeof(float)) == 0,
                          "%s, %d threads: same seed, different weights", backends[bi], threads);
            ck_assert_msg(memcmp(p[0], p[2], n * sizeof(float)) != 0,
                          "%s: different seeds gave the same weights", backends[bi]);
            for (int r = 0; r < 3; r++)
                free(p[r]);
        }
}
END_TEST

/* The training scratch is reused across steps of different shapes: results
 * must not depend on what an earlier step left in it (a regression test: the
 * sampler's mark array once sat on stale activations after a batch-size
 * change). */
START_TEST(scratch_reuse_is_invisible)
{
    const int sizes[5] = {32, 5, 32, 7, 3};
    float *p[2];
    size_t n = 0;
    for (int r = 0; r < 2; r++) {
        conure_model *m = model("blis", 8, 1, "pre_norm");
        int32_t t = t1(m, "sampled_softmax", 12);
        int32_t rows[32 * LEN];
        for (int s = 0; s < 5; s++) {
            synth_rows(&world, s * 40, sizes[s], rows);
            if (r == 1) /* a fresh, zeroed scratch for every step */
                cn_scratch_release(&m->train_ws);
            ck_assert_int_eq(conure_model_train_step(m, t, rows, sizes[s], LEN, NULL, NULL),
                             CONURE_OK);
        }
        snapshot(m, &p[r], &n);
        conure_model_free(m);
    }
    ck_assert_msg(memcmp(p[0], p[1], n * sizeof(float)) == 0,
                  "training depends on stale scratch contents");
    free(p[0]);
    free(p[1]);
}
END_TEST

/* Dropout acts in training steps only: with it, training takes another path
 * (and still learns); inference never drops (repeated scores are identical),
 * and the rate survives a save and load. */
START_TEST(dropout_trains_only)
{
    float *p[2];
    size_t n = 0;
    double hr[2];
    for (int r = 0; r < 2; r++) {
        conure_model *m = model("blis", 9, 1, "pre_norm");
        conure_options *o;
        ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
        ck_assert_int_eq(conure_options_set_string(o, "loss", "softmax"), CONURE_OK);
        ck_assert_int_eq(conure_options_set_float(o, "lr", 3e-3), CONURE_OK);
        if (r)
            ck_assert_int_eq(conure_options_set_float(o, "dropout", 0.2), CONURE_OK);
        int32_t t;
        ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, o, &t), CONURE_OK);
        conure_options_free(o);
        train(m, t, 300, NULL, NULL);
        snapshot(m, &p[r], &n);
        ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 1), CONURE_OK);
        evaluate(m, t, &hr[r], NULL);
        int32_t rows[4 * LEN];
        synth_rows(&world, TRAIN, 4, rows);
        float s1[4 * V], s2[4 * V];
        ck_assert_int_eq(conure_model_scores(m, t, rows, 4, LEN, s1, 4 * V), CONURE_OK);
        ck_assert_int_eq(conure_model_scores(m, t, rows, 4, LEN, s2, 4 * V), CONURE_OK);
        ck_assert(memcmp(s1, s2, sizeof s1) == 0);
        if (r) {
            ck_assert(m->tasks[0].dropout == 51.0f / 256.0f); /* 0.2 rounded to 1/256 */
            conure_model *b = roundtrip(m);
            ck_assert(b->tasks[0].dropout == m->tasks[0].dropout);
            conure_model_free(b);
        }
        conure_model_free(m);
    }
    fprintf(stderr, "# dropout 0.2: held-out HR@5 %.3f (without: %.3f)\n", hr[1], hr[0]);
    ck_assert(memcmp(p[0], p[1], n * sizeof(float)) != 0);
    ck_assert(hr[1] >= 0.8);
    free(p[0]);
    free(p[1]);
}
END_TEST

static int head_is_embedding(const conure_model *m, int32_t task)
{
    const cn_task *t = &m->tasks[task - 1];
    return memcmp(t->head, m->params + m->tensors[0].offset,
                  sizeof(float) * (size_t)t->n_targets * (size_t)m->cfg.channels) == 0;
}

/* Task option tie_embedding: the next-item head's W is the item embedding
 * through every phase (dense: both train together; retrain: both frozen),
 * the model learns, a later task leaves T1's scores bit-identical, the flag
 * survives save and load, and other task kinds refuse the option. */
START_TEST(tied_embedding_cycle)
{
    conure_model *m = model("blis", 5, 1, "pre_norm");
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "loss", "softmax"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_float(o, "lr", 3e-3), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "tie_embedding", 1), CONURE_OK);
    int32_t t;
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, o, &t), CONURE_OK);
    ck_assert(head_is_embedding(m, t));
    float *e0 = malloc(sizeof(float) * (size_t)V * 32);
    memcpy(e0, m->params + m->tensors[0].offset, sizeof(float) * (size_t)V * 32);
    train(m, t, 300, NULL, NULL);
    ck_assert(head_is_embedding(m, t));
    ck_assert(memcmp(e0, m->params + m->tensors[0].offset, sizeof(float) * (size_t)V * 32) != 0);
    ck_assert_int_eq(conure_model_prune(m, t), CONURE_OK);
    memcpy(e0, m->params + m->tensors[0].offset, sizeof(float) * (size_t)V * 32);
    /* non-zero Adam moments on W (as a crafted optimizer state could hold)
     * must not move the tied W off the frozen embedding in the retrain phase */
    for (size_t j = 0; j < (size_t)V * 32; j++)
        m->tasks[t - 1].head_m[j] = m->tasks[t - 1].head_v[j] = 1.0f;
    train(m, t, 50, NULL, NULL);
    ck_assert(head_is_embedding(m, t));
    ck_assert(memcmp(e0, m->params + m->tensors[0].offset, sizeof(float) * (size_t)V * 32) == 0);
    ck_assert_int_eq(conure_model_finish_task(m, t), CONURE_OK);
    double hr;
    evaluate(m, t, &hr, NULL);
    fprintf(stderr, "# tied embedding: held-out HR@5 %.3f after prune and retrain\n", hr);
    ck_assert(hr >= 0.8);

    /* the option belongs to next-item tasks only */
    conure_options_free(o);
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "tie_embedding", 1), CONURE_OK);
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_ITEM_REC, 24, o, &t), CONURE_E_INVALID_ARG);
    char msg[256];
    conure_model_last_error(m, msg, sizeof msg);
    ck_assert_msg(strstr(msg, "tie_embedding") != NULL, "%s", msg);
    conure_options_free(o);

    int32_t rows[8 * LEN];
    synth_rows(&world, TRAIN, 8, rows);
    float s1[8 * V], s2[8 * V];
    ck_assert_int_eq(conure_model_scores(m, 1, rows, 8, LEN, s1, 8 * V), CONURE_OK);
    int32_t t2;
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_ITEM_REC, 24, NULL, &t2), CONURE_OK);
    for (int s = 0; s < 20; s++) {
        int32_t r2[BATCH * LEN], tg[BATCH];
        synth_rows(&world, s * BATCH % TRAIN, BATCH, r2);
        for (int b = 0; b < BATCH; b++)
            tg[b] = world.t2[(s * BATCH + b) % TRAIN % USERS];
        ck_assert_int_eq(conure_model_train_step(m, t2, r2, BATCH, LEN, tg, NULL), CONURE_OK);
    }
    ck_assert_int_eq(conure_model_scores(m, 1, rows, 8, LEN, s2, 8 * V), CONURE_OK);
    ck_assert(memcmp(s1, s2, sizeof s1) == 0);

    conure_model *b = roundtrip(m);
    ck_assert_int_eq(b->tasks[0].tied, 1);
    ck_assert_int_eq(b->tasks[1].tied, 0);
    ck_assert_int_eq(conure_model_scores(b, 1, rows, 8, LEN, s2, 8 * V), CONURE_OK);
    ck_assert(memcmp(s1, s2, sizeof s1) == 0);
    conure_model_free(b);
    free(e0);
    conure_model_free(m);
}
END_TEST

/* finetune mode: the embedding keeps training in a later (untied) task and
 * the tied T1 head follows it exactly */
START_TEST(tied_head_follows_finetune)
{
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "vocab_size", V), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "channels", 16), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "dilations", "1,2"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "training_mode", "finetune"), CONURE_OK);
    conure_model *m;
    ck_assert_int_eq(conure_model_create(o, &m), CONURE_OK);
    conure_options_free(o);
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "tie_embedding", 1), CONURE_OK);
    int32_t t, t2;
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, o, &t), CONURE_OK);
    conure_options_free(o);
    train(m, t, 20, NULL, NULL);
    ck_assert_int_eq(conure_model_finish_task(m, t), CONURE_OK);
    ck_assert(head_is_embedding(m, t));
    float *e0 = malloc(sizeof(float) * (size_t)V * 16);
    memcpy(e0, m->params + m->tensors[0].offset, sizeof(float) * (size_t)V * 16);
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, 2, NULL, &t2), CONURE_OK);
    for (int s = 0; s < 5; s++) {
        int32_t r2[BATCH * LEN], tg[BATCH];
        synth_rows(&world, s * BATCH % TRAIN, BATCH, r2);
        for (int b = 0; b < BATCH; b++)
            tg[b] = world.t3[(s * BATCH + b) % TRAIN];
        ck_assert_int_eq(conure_model_train_step(m, t2, r2, BATCH, LEN, tg, NULL), CONURE_OK);
        ck_assert(head_is_embedding(m, t));
    }
    ck_assert(memcmp(e0, m->params + m->tensors[0].offset, sizeof(float) * (size_t)V * 16) != 0);
    free(e0);
    conure_model_free(m);
}
END_TEST

START_TEST(backends_agree_on_model)
{
    conure_model *m = model("ref", 3, 1, "post_norm");
    int32_t t = t1(m, "softmax", 0);
    train(m, t, 30, NULL, NULL);
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 1), CONURE_OK);
    int32_t rows[8 * LEN];
    synth_rows(&world, TRAIN, 8, rows);
    float sr[8 * V], sb[8 * V];
    ck_assert_int_eq(conure_model_scores(m, t, rows, 8, LEN, sr, 8 * V), CONURE_OK);
    double lr_, lb;
    ck_assert_int_eq(cn_model_loss_grad(m, t, rows, 8, LEN, NULL, NULL, 1, &lr_), CONURE_OK);
    float *gr = malloc(sizeof(float) * m->n_backbone);
    memcpy(gr, m->grads, sizeof(float) * m->n_backbone);
    ck_assert_int_eq(conure_model_set_string(m, "backend", "blis"), CONURE_OK);
    ck_assert_int_eq(conure_model_set_int(m, "threads", 2), CONURE_OK);
    ck_assert_int_eq(conure_model_scores(m, t, rows, 8, LEN, sb, 8 * V), CONURE_OK);
    ck_assert_int_eq(cn_model_loss_grad(m, t, rows, 8, LEN, NULL, NULL, 1, &lb), CONURE_OK);
    for (int i = 0; i < 8; i++) /* column 0 is -inf in both */
        sr[i * V] = sb[i * V] = 0;
    double es = tu_norm_err(sb, sr, 8 * V), eg = tu_norm_err(m->grads, gr, m->n_backbone);
    fprintf(stderr, "# ref vs blis: scores %.2g, gradients %.2g, loss %.9g vs %.9g\n", es, eg, lr_,
            lb);
    ck_assert(es < 1e-5);
    ck_assert(eg < 1e-4);
    ck_assert(fabs(lr_ - lb) < 1e-5 * fabs(lr_));
    free(gr);
    conure_model_free(m);
}
END_TEST

/* Const calls may run concurrently on one model (conure.h threading
 * contract): four threads score and rank at once, each gets exactly the
 * serial answer, and errors stay per thread. */
typedef struct conc_job {
    const conure_model *m;
    int32_t task;
    const int32_t *rows;
    const float *expect;
    int ok;
} conc_job;

static void *conc_worker(void *arg)
{
    conc_job *j = arg;
    float s[8 * V];
    int32_t ids[8 * 5];
    j->ok = 1;
    for (int r = 0; r < 20; r++) {
        if (conure_model_scores(j->m, j->task, j->rows, 8, LEN, s, 8 * V) != CONURE_OK ||
            memcmp(s, j->expect, sizeof s) != 0)
            j->ok = 0;
        if (conure_model_top_k(j->m, j->task, j->rows, 8, LEN, 5, 0, ids, NULL, 8 * 5) != CONURE_OK)
            j->ok = 0;
        /* a failing call on this thread leaves the others' last errors alone */
        if (conure_model_scores(j->m, 99, j->rows, 8, LEN, s, 8 * V) != CONURE_E_OUT_OF_RANGE ||
            !strstr(conure_last_error(), "task = 99"))
            j->ok = 0;
    }
    return NULL;
}

START_TEST(concurrent_inference)
{
    conure_model *m = model("blis", 6, 1, "pre_norm");
    int32_t t = t1(m, "softmax", 0);
    train(m, t, 20, NULL, NULL);
    ck_assert_int_eq(conure_model_prune(m, t), CONURE_OK);
    ck_assert_int_eq(conure_model_finish_task(m, t), CONURE_OK);
    int32_t rows[8 * LEN];
    synth_rows(&world, TRAIN, 8, rows);
    float expect[8 * V];
    ck_assert_int_eq(conure_model_scores(m, t, rows, 8, LEN, expect, 8 * V), CONURE_OK);
    pthread_t th[4];
    conc_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (conc_job){m, t, rows, expect, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, conc_worker, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(jobs[i].ok, "thread %d got a different answer or a wrong error", i);
    }
    conure_model_free(m);
}
END_TEST

START_TEST(adam_matches_formula)
{
    float p[5] = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f}, g[5] = {0.1f, -0.2f, 0.0f, 1.0f, 5.0f};
    float m[5] = {0}, v[5] = {0};
    uint8_t owner[5] = {0, 0, 1, 0, 1};
    double pd[5], md[5] = {0}, vd[5] = {0};
    for (int i = 0; i < 5; i++)
        pd[i] = p[i];
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (int t = 1; t <= 3; t++) {
        cn_adam_update(p, g, m, v, 5, owner, 0, (float)lr, (float)b1, (float)b2, (float)eps, t, 1);
        double lrt = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
        for (int i = 0; i < 5; i++) {
            if (owner[i] != 0)
                continue;
            md[i] = b1 * md[i] + (1 - b1) * g[i];
            vd[i] = b2 * vd[i] + (1 - b2) * (double)g[i] * g[i];
            pd[i] -= lrt * md[i] / (sqrt(vd[i]) + eps);
        }
    }
    for (int i = 0; i < 5; i++)
        ck_assert_msg(fabs(p[i] - pd[i]) < 1e-6, "p[%d] = %.9g, expected %.9g", i, (double)p[i],
                      pd[i]);
    /* masked entries untouched, first step moves by lr*sign(g) */
    ck_assert(p[2] == 2.0f && p[4] == 3.0f && m[2] == 0 && v[4] == 0);
    ck_assert(fabs(pd[0] - (0.5 - 3 * 0.01)) < 1e-4);
}
END_TEST

START_TEST(log_uniform_sampler)
{
    const int32_t Vs = 41, N = 200000;
    cn_rng r;
    cn_rng_seed(&r, 9, 1);
    uint8_t mark[41] = {0};
    int64_t cnt[41] = {0};
    for (int i = 0; i < N; i++) {
        int32_t id;
        int64_t tries;
        cn_sample_log_uniform(&r, Vs, 1, &id, &tries, mark);
        ck_assert(id >= 1 && id < Vs && tries == 1);
        cnt[id]++;
    }
    for (int32_t id = 1; id < Vs; id++) {
        double p = (log(id + 1.0) - log((double)id)) / log((double)Vs);
        double sd = sqrt(p * (1 - p) / N);
        ck_assert_msg(fabs(cnt[id] / (double)N - p) < 5 * sd, "id %d: %.4f vs %.4f", id,
                      cnt[id] / (double)N, p);
        /* expected count of one draw is p */
        ck_assert(fabs(exp(cn_log_uniform_log_q(Vs, id, 1)) - p) < 1e-12);
    }
    /* unique draws: n distinct ids, tries >= n */
    int32_t ids[30];
    int64_t tries;
    cn_sample_log_uniform(&r, Vs, 30, ids, &tries, mark);
    ck_assert(tries >= 30);
    for (int i = 0; i < 30; i++)
        for (int j = 0; j < i; j++)
            ck_assert_int_ne(ids[i], ids[j]);
    for (int i = 0; i < Vs; i++)
        ck_assert_int_eq(mark[i], 0);
}
END_TEST

START_TEST(popularity_rank_sampler)
{
    const int32_t n = 50, N = 200000;
    const double rho = 0.3;
    cn_rng r;
    cn_rng_seed(&r, 5, 2);
    int64_t cnt[50] = {0};
    for (int i = 0; i < N; i++) {
        int32_t k = cn_sample_pop_rank(&r, n, rho, 3);
        ck_assert(k >= 0 && k < n && k != 3);
        cnt[k]++;
    }
    double z = 0;
    for (int k = 0; k < n; k++)
        if (k != 3)
            z += exp(-(k + 1) / (rho * n));
    for (int k = 0; k < n; k++) {
        double p = k == 3 ? 0 : exp(-(k + 1) / (rho * n)) / z;
        double sd = sqrt(p * (1 - p) / N) + 1e-9;
        ck_assert_msg(fabs(cnt[k] / (double)N - p) < 5 * sd, "rank %d: %.4f vs %.4f", k,
                      cnt[k] / (double)N, p);
    }
    int64_t oc[4] = {0};
    for (int i = 0; i < 40000; i++)
        oc[cn_sample_other_class(&r, 4, 2)]++;
    ck_assert_int_eq(oc[2], 0);
    for (int c = 0; c < 4; c++)
        if (c != 2)
            ck_assert(fabs(oc[c] / 40000.0 - 1.0 / 3) < 0.02);
}
END_TEST

/* Bad numbers never pass silently: a NaN in the weights makes inference and
 * training fail with CONURE_E_NUMERIC, and the failed step changes nothing. */
START_TEST(non_finite_is_reported)
{
    conure_model *m = model("blis", 7, 1, "pre_norm");
    int32_t t = t1(m, "softmax", 0);
    train(m, t, 5, NULL, NULL);
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 1), CONURE_OK);
    int32_t rows[4 * LEN], ids[4 * 3];
    synth_rows(&world, 0, 4, rows);
    float s[4 * V], h[4 * 32];
    /* a NaN in the head reaches the scores only */
    float keep = m->tasks[0].head[5 * 32 + 3];
    m->tasks[0].head[5 * 32 + 3] = NAN;
    ck_assert_int_eq(conure_model_scores(m, t, rows, 4, LEN, s, 4 * V), CONURE_E_NUMERIC);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "not finite"));
    ck_assert_int_eq(conure_model_top_k(m, t, rows, 4, LEN, 3, 0, ids, NULL, 12), CONURE_E_NUMERIC);
    ck_assert_int_eq(conure_model_user_vectors(m, t, rows, 4, LEN, h, 4 * 32), CONURE_OK);
    float *before = malloc(sizeof(float) * m->n_backbone);
    memcpy(before, m->params, sizeof(float) * m->n_backbone);
    float loss = 0;
    ck_assert_int_eq(conure_model_train_step(m, t, rows, 4, LEN, NULL, &loss), CONURE_E_NUMERIC);
    ck_assert(memcmp(before, m->params, sizeof(float) * m->n_backbone) == 0);
    m->tasks[0].head[5 * 32 + 3] = keep;
    /* an inf in a conv weight reaches the user vectors */
    float *w = cn_conv_ptr(m, m->params, 1);
    keep = w[7];
    w[7] = INFINITY;
    ck_assert_int_eq(conure_model_user_vectors(m, t, rows, 4, LEN, h, 4 * 32), CONURE_E_NUMERIC);
    ck_assert_int_eq(conure_model_train_step(m, t, rows, 4, LEN, NULL, &loss), CONURE_E_NUMERIC);
    w[7] = keep;
    ck_assert_int_eq(conure_model_train_step(m, t, rows, 4, LEN, NULL, &loss), CONURE_OK);
    ck_assert(isfinite(loss));
    free(before);
    conure_model_free(m);
}
END_TEST

/* The popularity-rank sampler draws from the distribution with the positive
 * cut out, without a redraw loop: a tiny rho puts almost all mass on rank 0,
 * which must still never be returned when it is the positive. */
START_TEST(popularity_rank_sampler_extremes)
{
    cn_rng r;
    cn_rng_seed(&r, 3, 4);
    int64_t c1 = 0;
    for (int i = 0; i < 10000; i++) {
        int32_t k = cn_sample_pop_rank(&r, 10, 1e-3, 0);
        ck_assert(k >= 1 && k < 10);
        c1 += k == 1;
    }
    ck_assert_int_eq(c1, 10000); /* the next most popular takes all the mass */
    for (int i = 0; i < 10000; i++) {
        int32_t k = cn_sample_pop_rank(&r, 10, 0.3, 9);
        ck_assert(k >= 0 && k < 9);
        k = cn_sample_pop_rank(&r, 2, 0.3, 1);
        ck_assert_int_eq(k, 0);
        k = cn_sample_pop_rank(&r, 1000000, 10.0, 17);
        ck_assert(k >= 0 && k < 1000000 && k != 17);
    }
}
END_TEST

START_TEST(ranks_and_metrics)
{
    const float s[3 * 4] = {0.5f, 0.2f, 0.5f, 0.9f,   /* target 0: one higher, one tie */
                            -INFINITY, 1.0f, 0.0f, 0.0f, /* target 1: best */
                            0.1f, 0.2f, 0.3f, 0.4f};  /* target 0: worst */
    const int32_t tg[3] = {0, 1, 0};
    int32_t ranks[3];
    ck_assert_int_eq(conure_eval_ranks(s, 3, 4, tg, ranks), CONURE_OK);
    ck_assert_int_eq(ranks[0], 2);
    ck_assert_int_eq(ranks[1], 1);
    ck_assert_int_eq(ranks[2], 4);
    double hr, mrr, ndcg;
    ck_assert_int_eq(conure_eval_metrics(ranks, 3, 2, &hr, &mrr, &ndcg), CONURE_OK);
    ck_assert_double_eq_tol(hr, 2.0 / 3, 1e-12);
    ck_assert_double_eq_tol(mrr, (0.5 + 1.0) / 3, 1e-12);
    ck_assert_double_eq_tol(ndcg, (1 / log2(3.0) + 1.0) / 3, 1e-12);
    ck_assert_int_eq(conure_eval_metrics(ranks, 3, 1, &hr, NULL, NULL), CONURE_OK);
    ck_assert_double_eq_tol(hr, 1.0 / 3, 1e-12); /* accuracy */
    float bad[2] = {NAN, 0};
    int32_t t0 = 0;
    ck_assert_int_eq(conure_eval_ranks(bad, 1, 2, &t0, ranks), CONURE_E_NUMERIC);
}
END_TEST

START_TEST(top_k_order_ties_and_history)
{
    const float s[6] = {-INFINITY, 0.3f, 0.9f, 0.3f, -INFINITY, 0.1f};
    int32_t ids[5];
    float vals[5];
    cn_topk_row(s, 6, 5, ids, vals);
    const int32_t want[5] = {2, 1, 3, 5, -1};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ids[i], want[i]);
    ck_assert(vals[4] == -INFINITY && vals[0] == 0.9f);
    /* the sorting path (large k) gives the same answer */
    {
        float big[300];
        tu_fill_uniform(big, 300, 77, 1.0f);
        big[10] = big[20]; /* a tie */
        big[30] = big[40] = -INFINITY;
        int32_t a[299], b2[299];
        float va[299], vb[299];
        void *scratch = malloc(cn_topk_scratch_bytes(300));
        for (int k = 1; k <= 299; k += 49) {
            cn_topk_row(big, 300, k, a, va);
            cn_topk_row_sorted(big, 300, k, b2, vb, scratch);
            ck_assert(memcmp(a, b2, sizeof(int32_t) * (size_t)k) == 0);
            ck_assert(memcmp(va, vb, sizeof(float) * (size_t)k) == 0);
        }
        cn_topk_row_sorted(big, 300, 299, b2, vb, scratch);
        ck_assert_int_eq(b2[298], -1); /* the -inf entry is never returned */
        free(scratch);
    }

    /* through the API: history exclusion removes every input item */
    conure_model *m = model("blis", 4, 1, "pre_norm");
    int32_t t = t1(m, "softmax", 0);
    train(m, t, 50, NULL, NULL);
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 1), CONURE_OK);
    int32_t rows[4 * LEN], top[4 * 20];
    float ts[4 * 20], all[4 * V];
    synth_rows(&world, TRAIN, 4, rows);
    ck_assert_int_eq(conure_model_top_k(m, t, rows, 4, LEN, 20, 0, top, ts, 4 * 20), CONURE_OK);
    ck_assert_int_eq(conure_model_scores(m, t, rows, 4, LEN, all, 4 * V), CONURE_OK);
    for (int b = 0; b < 4; b++)
        for (int i = 0; i < 20; i++) {
            ck_assert(top[b * 20 + i] >= 1);
            ck_assert(ts[b * 20 + i] == all[b * V + top[b * 20 + i]]);
            if (i)
                ck_assert(ts[b * 20 + i] <= ts[b * 20 + i - 1]);
        }
    ck_assert_int_eq(conure_model_top_k(m, t, rows, 4, LEN, 20, CONURE_TOPK_EXCLUDE_HISTORY, top, ts,
                                        4 * 20),
                     CONURE_OK);
    for (int b = 0; b < 4; b++)
        for (int i = 0; i < 20; i++)
            for (int j = 0; j < LEN; j++)
                ck_assert_int_ne(top[b * 20 + i], rows[b * LEN + j]);
    conure_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("t1");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, learns_full_softmax_pre_norm);
    tcase_add_test(tc, learns_full_softmax_post_norm);
    tcase_add_test(tc, learns_sampled_softmax);
    tcase_add_test(tc, same_seed_bit_identical);
    tcase_add_test(tc, scratch_reuse_is_invisible);
    tcase_add_test(tc, dropout_trains_only);
    tcase_add_test(tc, tied_embedding_cycle);
    tcase_add_test(tc, tied_head_follows_finetune);
    tcase_add_test(tc, backends_agree_on_model);
    tcase_add_test(tc, concurrent_inference);
    tcase_add_test(tc, adam_matches_formula);
    tcase_add_test(tc, log_uniform_sampler);
    tcase_add_test(tc, popularity_rank_sampler);
    tcase_add_test(tc, non_finite_is_reported);
    tcase_add_test(tc, popularity_rank_sampler_extremes);
    tcase_add_test(tc, ranks_and_metrics);
    tcase_add_test(tc, top_k_order_ties_and_history);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
