/* The continual-learning cycle (method §4): ownership, prune fractions,
 * frozen gradients, no forgetting (bit-exact), transfer, the state machine and
 * capacity.  Tiny models on the planted-structure synthetic world (synth.h). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "synth.h"
#include "testutil.h"

#define V 61
#define LEN 12
#define USERS 480
#define TRAIN_USERS 400
#define GROUPS 6
#define N_T2 24
#define N_T3 2
#define BATCH 32

static synth world;

static void setup(void)
{
    synth_make(&world, V, LEN, USERS, GROUPS, N_T2, N_T3, 42);
}

static void teardown(void)
{
    synth_free(&world);
}

static conure_model *new_model(const char *backend, const char *mode, int64_t seed)
{
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "vocab_size", V), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "channels", 16), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "dilations", "1,2"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "max_len", 32), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "seed", seed), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "backend", backend), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "training_mode", mode), CONURE_OK);
    conure_model *m = NULL;
    ck_assert_int_eq(conure_model_create(o, &m), CONURE_OK);
    conure_options_free(o);
    return m;
}

static int32_t add_task(conure_model *m, int kind, int32_t n, const char *loss, double lr)
{
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "loss", loss), CONURE_OK);
    ck_assert_int_eq(conure_options_set_float(o, "lr", lr), CONURE_OK);
    int32_t id = 0;
    conure_status st = conure_model_add_task(m, kind, n, o, &id);
    ck_assert_msg(st == CONURE_OK, "add_task: %s", conure_last_error());
    conure_options_free(o);
    return id;
}

/* steps of next-item training on the training users */
static void train_next(conure_model *m, int32_t task, int steps)
{
    int32_t rows[BATCH * LEN];
    for (int s = 0; s < steps; s++) {
        synth_rows(&world, (s * BATCH) % TRAIN_USERS, BATCH, rows);
        float loss;
        conure_status st = conure_model_train_step(m, task, rows, BATCH, LEN, NULL, &loss);
        ck_assert_msg(st == CONURE_OK, "train_step: %s", conure_last_error());
    }
}

/* steps on a table task with labels [USERS] */
static void train_table(conure_model *m, int32_t task, const int32_t *labels, int steps)
{
    int32_t rows[BATCH * LEN], tg[BATCH];
    for (int s = 0; s < steps; s++) {
        int32_t u0 = (s * BATCH) % TRAIN_USERS;
        synth_rows(&world, u0, BATCH, rows);
        for (int b = 0; b < BATCH; b++)
            tg[b] = labels[(u0 + b) % world.n_users];
        float loss;
        conure_status st = conure_model_train_step(m, task, rows, BATCH, LEN, tg, &loss);
        ck_assert_msg(st == CONURE_OK, "train_step: %s", conure_last_error());
    }
}

/* full cycle of one task in conure mode */
static void cycle(conure_model *m, int32_t task, const int32_t *labels, int dense, int retrain)
{
    if (labels)
        train_table(m, task, labels, dense);
    else
        train_next(m, task, dense);
    ck_assert_int_eq(conure_model_prune(m, task), CONURE_OK);
    if (labels)
        train_table(m, task, labels, retrain);
    else
        train_next(m, task, retrain);
    ck_assert_int_eq(conure_model_finish_task(m, task), CONURE_OK);
}

/* scores of the test users [USERS-TRAIN_USERS, n] */
static float *test_scores(const conure_model *m, int32_t task, int32_t n)
{
    const int32_t nt = USERS - TRAIN_USERS;
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(nt * LEN));
    synth_rows(&world, TRAIN_USERS, nt, rows);
    float *s = malloc(sizeof(float) * (size_t)nt * (size_t)n);
    conure_status st = conure_model_scores(m, task, rows, nt, LEN, s, (size_t)nt * (size_t)n);
    ck_assert_msg(st == CONURE_OK, "scores: %s", conure_last_error());
    free(rows);
    return s;
}

/* HR@k (item task) or accuracy (k = 1) of test users against labels */
static double test_metric(const conure_model *m, int32_t task, int32_t n, const int32_t *labels,
                          int32_t k)
{
    const int32_t nt = USERS - TRAIN_USERS;
    float *s = test_scores(m, task, n);
    int32_t ranks[USERS];
    ck_assert_int_eq(conure_eval_ranks(s, nt, n, labels + TRAIN_USERS, ranks), CONURE_OK);
    double hr;
    ck_assert_int_eq(conure_eval_metrics(ranks, nt, k, &hr, NULL, NULL), CONURE_OK);
    free(s);
    return hr;
}

static size_t count_bits_differ(const float *a, const float *b, size_t n)
{
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

/* ---- no forgetting ---------------------------------------------------------- */

static void no_forgetting(const char *backend)
{
    conure_model *m = new_model(backend, "conure", 3);
    int32_t t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 3e-3);
    train_next(m, t1, 60);
    ck_assert_int_eq(conure_model_prune(m, t1), CONURE_OK);
    train_next(m, t1, 30);
    /* the outputs right after retraining (method §4 step 4) ... */
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 1), CONURE_OK);
    float *s1 = test_scores(m, t1, V);
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 0), CONURE_OK);
    ck_assert_int_eq(conure_model_finish_task(m, t1), CONURE_OK);
    const size_t n1 = (size_t)(USERS - TRAIN_USERS) * V;
    /* ... are the outputs of the finished task */
    float *s1a = test_scores(m, t1, V);
    ck_assert_msg(count_bits_differ(s1, s1a, n1) == 0, "%s: T1 scores changed at finish", backend);
    free(s1a);

    int32_t t2 = add_task(m, CONURE_TASK_ITEM_REC, N_T2, "bpr", 1e-3);
    cycle(m, t2, world.t2, 40, 20);
    float *s1b = test_scores(m, t1, V);
    ck_assert_msg(count_bits_differ(s1, s1b, n1) == 0, "%s: T1 scores changed after T2", backend);
    const size_t n2 = (size_t)(USERS - TRAIN_USERS) * N_T2;
    float *s2 = test_scores(m, t2, N_T2);

    int32_t t3 = add_task(m, CONURE_TASK_CLASSIFICATION, N_T3, "bce", 1e-3);
    /* scores of finished tasks stay identical during every phase of T3 */
    train_table(m, t3, world.t3, 20);
    float *s1c = test_scores(m, t1, V);
    float *s2c = test_scores(m, t2, N_T2);
    ck_assert_int_eq(count_bits_differ(s1, s1c, n1), 0);
    ck_assert_int_eq(count_bits_differ(s2, s2c, n2), 0);
    ck_assert_int_eq(conure_model_prune(m, t3), CONURE_OK);
    train_table(m, t3, world.t3, 20);
    ck_assert_int_eq(conure_model_finish_task(m, t3), CONURE_OK);
    float *s1d = test_scores(m, t1, V);
    float *s2d = test_scores(m, t2, N_T2);
    ck_assert_msg(count_bits_differ(s1, s1d, n1) == 0, "%s: T1 scores changed after T3", backend);
    ck_assert_msg(count_bits_differ(s2, s2d, n2) == 0, "%s: T2 scores changed after T3", backend);
    /* the check is not vacuous: T2's scores differ between users */
    ck_assert(s2[0] != s2[N_T2] || s2[1] != s2[N_T2 + 1]);
    free(s1);
    free(s1b);
    free(s1c);
    free(s1d);
    free(s2);
    free(s2c);
    free(s2d);
    conure_model_free(m);
}

START_TEST(no_forgetting_ref) { no_forgetting("ref"); }
END_TEST
START_TEST(no_forgetting_blis) { no_forgetting("blis"); }
END_TEST

/* ---- pruning ------------------------------------------------------------------ */

START_TEST(prune_fractions_and_ownership)
{
    conure_model *m = new_model("blis", "conure", 5);
    const size_t per = m->conv_numel, total = per * (size_t)m->n_conv;
    uint8_t *before = malloc(total);
    const double expect_frac[4] = {0.30, 0.21, 0.147, 0.1029};
    for (int32_t k = 1; k <= 4; k++) {
        int32_t t = k == 1 ? add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 3e-3)
                           : add_task(m, CONURE_TASK_ITEM_REC, N_T2, "bpr", 1e-3);
        ck_assert_int_eq(t, k);
        if (k == 1)
            train_next(m, t, 10);
        else
            train_table(m, t, world.t2, 10);
        memcpy(before, m->owner, total);
        ck_assert_int_eq(conure_model_prune(m, t), CONURE_OK);
        for (int32_t c = 0; c < m->n_conv; c++) {
            const uint8_t *own = m->owner + (size_t)c * per, *old = before + (size_t)c * per;
            const float *w = cn_conv_ptr(m, m->params, c);
            size_t mine = 0;
            float min_mine = INFINITY, max_free = 0;
            for (size_t i = 0; i < per; i++) {
                /* owned weights never change hands */
                if (old[i] != 0)
                    ck_assert_int_eq(own[i], old[i]);
                else
                    ck_assert(own[i] == 0 || own[i] == k);
                if (own[i] == k) {
                    mine++;
                    min_mine = fabsf(w[i]) < min_mine ? fabsf(w[i]) : min_mine;
                } else if (own[i] == 0) {
                    max_free = fabsf(w[i]) > max_free ? fabsf(w[i]) : max_free;
                }
            }
            double keep_free = pow(0.7, k - 1), target = (double)per * (1.0 - keep_free * 0.7);
            size_t expect = (size_t)llround(target) - (size_t)llround((double)per * (1.0 - keep_free));
            ck_assert_msg(mine == expect, "task %d tensor %d owns %zu, expected %zu", k, c, mine,
                          expect);
            ck_assert(fabs((double)mine / (double)per - expect_frac[k - 1]) < 2.0 / (double)per + 1e-9);
            /* magnitude pruning: every kept weight is at least as large as every free one */
            ck_assert(min_mine >= max_free);
        }
        /* capacity report agrees */
        int64_t counts[6];
        ck_assert_int_eq(conure_model_capacity(m, -1, counts, 6), CONURE_OK);
        int64_t sum = 0;
        for (int i = 0; i < 6; i++)
            sum += counts[i];
        ck_assert_int_eq(sum, (int64_t)total);
        ck_assert_int_eq(counts[5], 0);
        if (k < 4) {
            if (k == 1)
                train_next(m, t, 5);
            else
                train_table(m, t, world.t2, 5);
            ck_assert_int_eq(conure_model_finish_task(m, t), CONURE_OK);
        }
    }
    free(before);
    conure_model_free(m);
}
END_TEST

/* ---- frozen weights ------------------------------------------------------------ */

START_TEST(frozen_gradients_are_zero)
{
    conure_model *m = new_model("blis", "conure", 7);
    int32_t t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 3e-3);
    cycle(m, t1, NULL, 20, 10);
    int32_t t2 = add_task(m, CONURE_TASK_ITEM_REC, N_T2, "bpr", 1e-3);
    const size_t per = m->conv_numel;
    float *p0 = malloc(sizeof(float) * m->n_backbone);
    float *h1 = malloc(sizeof(float) * m->tasks[0].head_numel);
    memcpy(h1, m->tasks[0].head, sizeof(float) * m->tasks[0].head_numel);
    for (int phase = 0; phase < 2; phase++) {
        uint8_t want = phase == 0 ? 0 : (uint8_t)t2;
        memcpy(p0, m->params, sizeof(float) * m->n_backbone);
        train_table(m, t2, world.t2, 3);
        size_t changed = 0;
        for (int32_t c = 0; c < m->n_conv; c++) {
            const uint8_t *own = m->owner + (size_t)c * per;
            const float *g = cn_conv_ptr(m, m->grads, c);
            const float *w = cn_conv_ptr(m, m->params, c), *w0 = cn_conv_ptr(m, p0, c);
            for (size_t i = 0; i < per; i++) {
                if (own[i] != want) {
                    ck_assert_msg(g[i] == 0.0f && !signbit(g[i]),
                                  "phase %d: frozen weight %d/%zu has gradient %g", phase, c, i,
                                  (double)g[i]);
                    ck_assert(memcmp(&w[i], &w0[i], sizeof(float)) == 0);
                } else {
                    changed += w[i] != w0[i];
                }
            }
        }
        ck_assert_msg(changed > 0, "phase %d: no trainable weight moved", phase);
        /* embedding and layer norms are frozen after T1's dense phase */
        for (int32_t i = 0; i < m->n_tensors; i++) {
            const cn_tensor *t = &m->tensors[i];
            if (t->ndim != 3)
                ck_assert(memcmp(m->params + t->offset, p0 + t->offset,
                                 sizeof(float) * t->numel) == 0);
        }
        ck_assert(memcmp(h1, m->tasks[0].head, sizeof(float) * m->tasks[0].head_numel) == 0);
        if (phase == 0)
            ck_assert_int_eq(conure_model_prune(m, t2), CONURE_OK);
    }
    free(p0);
    free(h1);
    conure_model_free(m);
}
END_TEST

/* ---- transfer and forgetting ---------------------------------------------------- */

START_TEST(transfer_beats_scratch)
{
    /* Conure: T1 then T2 on the shared backbone. */
    conure_model *m = new_model("blis", "conure", 11);
    int32_t t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 3e-3);
    cycle(m, t1, NULL, 150, 50);
    int32_t t2 = add_task(m, CONURE_TASK_ITEM_REC, N_T2, "bpr", 2e-3);
    cycle(m, t2, world.t2, 30, 30);
    double hr_conure = test_metric(m, t2, N_T2, world.t2, 5);
    /* SinMo: T2 alone, from scratch, the same budget */
    conure_model *s = new_model("blis", "finetune", 11);
    int32_t only = add_task(s, CONURE_TASK_ITEM_REC, N_T2, "bpr", 2e-3);
    train_table(s, only, world.t2, 60);
    ck_assert_int_eq(conure_model_finish_task(s, only), CONURE_OK);
    double hr_scratch = test_metric(s, only, N_T2, world.t2, 5);
    fprintf(stderr, "# transfer: T2 HR@5 conure %.3f vs from scratch %.3f (random %.3f)\n",
            hr_conure, hr_scratch, 5.0 / N_T2);
    ck_assert_msg(hr_conure > hr_scratch + 0.1, "conure %.3f vs scratch %.3f", hr_conure,
                  hr_scratch);
    conure_model_free(m);
    conure_model_free(s);
}
END_TEST

START_TEST(finetune_forgets_conure_does_not)
{
    const size_t n1 = (size_t)(USERS - TRAIN_USERS) * V;
    double diff[2], hr_before[2], hr_after[2];
    int32_t *last = malloc(sizeof(int32_t) * USERS);
    for (int mode = 0; mode < 2; mode++) {
        conure_model *m = new_model("blis", mode == 0 ? "conure" : "finetune", 13);
        int32_t t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 3e-3);
        if (mode == 0)
            cycle(m, t1, NULL, 100, 40);
        else {
            train_next(m, t1, 140);
            ck_assert_int_eq(conure_model_finish_task(m, t1), CONURE_OK);
        }
        float *a = test_scores(m, t1, V);
        int32_t t2 = add_task(m, CONURE_TASK_ITEM_REC, N_T2, "bpr", 1e-3);
        if (mode == 0)
            cycle(m, t2, world.t2, 40, 40);
        else {
            train_table(m, t2, world.t2, 80);
            ck_assert_int_eq(conure_model_finish_task(m, t2), CONURE_OK);
        }
        float *b = test_scores(m, t1, V);
        double d = 0;
        for (size_t i = 0; i < n1; i++)
            if (isfinite(a[i]))
                d = fmax(d, fabs((double)a[i] - (double)b[i]));
        diff[mode] = d;
        /* T1 metric: does the arg-max item stay the same? count users whose
         * top-1 changed */
        int changed = 0;
        for (int u = 0; u < USERS - TRAIN_USERS; u++) {
            int ia = 1, ib = 1;
            for (int j = 1; j < V; j++) {
                if (a[(size_t)u * V + j] > a[(size_t)u * V + ia])
                    ia = j;
                if (b[(size_t)u * V + j] > b[(size_t)u * V + ib])
                    ib = j;
            }
            changed += ia != ib;
        }
        hr_before[mode] = 0;
        hr_after[mode] = changed;
        free(a);
        free(b);
        conure_model_free(m);
    }
    fprintf(stderr, "# T1 scores after training T2: max |change| conure %.3g, finetune %.3g; "
            "test users whose top-1 item changed: conure %.0f, finetune %.0f of %d\n",
            diff[0], diff[1], hr_after[0], hr_after[1], USERS - TRAIN_USERS);
    (void)hr_before;
    ck_assert(diff[0] == 0.0);
    ck_assert(hr_after[0] == 0.0);
    ck_assert_msg(diff[1] > 1e-2, "finetune changed T1 scores by only %g", diff[1]);
    free(last);
}
END_TEST

/* ---- state machine and capacity -------------------------------------------------- */

START_TEST(state_machine)
{
    conure_model *m = new_model("ref", "conure", 1);
    int32_t rows[2 * LEN];
    synth_rows(&world, 0, 2, rows);
    float s[2 * V];
    ck_assert_int_eq(conure_model_scores(m, 1, rows, 2, LEN, s, 2 * V), CONURE_E_OUT_OF_RANGE);
    ck_assert_int_eq(conure_model_prune(m, 1), CONURE_E_OUT_OF_RANGE);
    int32_t t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 1e-3);
    int32_t id;
    /* a second task while T1 is not DONE */
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_ITEM_REC, 5, NULL, &id), CONURE_E_STATE);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "task 1"));
    /* inference on an unfinished task */
    ck_assert_int_eq(conure_model_scores(m, t1, rows, 2, LEN, s, 2 * V), CONURE_E_STATE);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "DENSE"));
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 1), CONURE_OK);
    ck_assert_int_eq(conure_model_scores(m, t1, rows, 2, LEN, s, 2 * V), CONURE_OK);
    ck_assert_int_eq(conure_model_set_int(m, "eval_unfinished", 0), CONURE_OK);
    /* finish before prune */
    ck_assert_int_eq(conure_model_finish_task(m, t1), CONURE_E_STATE);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "prune"));
    ck_assert_int_eq(conure_model_prune(m, t1), CONURE_OK);
    /* prune twice */
    ck_assert_int_eq(conure_model_prune(m, t1), CONURE_E_STATE);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "RETRAIN"));
    char buf[256];
    ck_assert_uint_gt(conure_model_last_error(m, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, conure_last_error());
    ck_assert_int_eq(conure_model_finish_task(m, t1), CONURE_OK);
    /* train after finish */
    ck_assert_int_eq(conure_model_train_step(m, t1, rows, 2, LEN, NULL, NULL), CONURE_E_STATE);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "DONE"));
    ck_assert_int_eq(conure_model_finish_task(m, t1), CONURE_E_STATE);
    ck_assert_int_eq(conure_model_scores(m, t1, rows, 2, LEN, s, 2 * V), CONURE_OK);
    conure_model_free(m);

    /* finetune mode has no pruning */
    m = new_model("ref", "finetune", 1);
    t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 1e-3);
    ck_assert_int_eq(conure_model_prune(m, t1), CONURE_E_STATE);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "finetune"));
    ck_assert_int_eq(conure_model_finish_task(m, t1), CONURE_OK);
    conure_model_free(m);
}
END_TEST

START_TEST(capacity_and_discard)
{
    conure_model *m = new_model("ref", "conure", 2);
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "loss", "softmax"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_float(o, "release_ratio", 0.0), CONURE_OK);
    int32_t t1;
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, o, &t1), CONURE_OK);
    conure_options_free(o);
    cycle(m, t1, NULL, 5, 5);
    int64_t counts[3];
    ck_assert_int_eq(conure_model_capacity(m, 0, counts, 3), CONURE_OK);
    ck_assert_int_eq(counts[0], 0);
    ck_assert_int_eq(counts[1], (int64_t)m->conv_numel);
    int32_t id = -7;
    ck_assert_int_eq(conure_model_add_task(m, CONURE_TASK_ITEM_REC, N_T2, NULL, &id),
                     CONURE_E_CAPACITY);
    ck_assert_int_eq(id, -7); /* outputs untouched on failure */
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "no free weights"));
    /* discarding T1 gives its weights back */
    ck_assert_int_eq(conure_model_discard_task(m, t1), CONURE_OK);
    ck_assert_int_eq(conure_model_capacity(m, -1, counts, 3), CONURE_OK);
    ck_assert_int_eq(counts[0], (int64_t)(m->conv_numel * (size_t)m->n_conv));
    int64_t n;
    ck_assert_int_eq(conure_model_get_int(m, "n_tasks", &n), CONURE_OK);
    ck_assert_int_eq(n, 0);
    conure_model_free(m);

    /* discarding a later task in the middle of its training leaves T1 intact */
    m = new_model("blis", "conure", 2);
    t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V, "softmax", 3e-3);
    cycle(m, t1, NULL, 20, 10);
    float *a = test_scores(m, t1, V);
    int64_t c1[3];
    ck_assert_int_eq(conure_model_capacity(m, -1, c1, 3), CONURE_OK);
    int32_t t2 = add_task(m, CONURE_TASK_ITEM_REC, N_T2, "bpr", 1e-3);
    train_table(m, t2, world.t2, 5);
    ck_assert_int_eq(conure_model_prune(m, t2), CONURE_OK);
    ck_assert_int_eq(conure_model_discard_task(m, 1), CONURE_E_OUT_OF_RANGE);
    ck_assert_int_eq(conure_model_discard_task(m, t2), CONURE_OK);
    int64_t c2[3];
    ck_assert_int_eq(conure_model_capacity(m, -1, c2, 3), CONURE_OK);
    ck_assert_int_eq(c1[0], c2[0]);
    ck_assert_int_eq(c1[1], c2[1]);
    ck_assert_int_eq(c2[2], 0);
    float *b = test_scores(m, t1, V);
    ck_assert_int_eq(count_bits_differ(a, b, (size_t)(USERS - TRAIN_USERS) * V), 0);
    /* and a new task can be added again */
    t2 = add_task(m, CONURE_TASK_CLASSIFICATION, N_T3, "bce", 1e-3);
    ck_assert_int_eq(t2, 2);
    free(a);
    free(b);
    conure_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("conure");
    TCase *tc = tcase_create("cycle");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, no_forgetting_ref);
    tcase_add_test(tc, no_forgetting_blis);
    tcase_add_test(tc, prune_fractions_and_ownership);
    tcase_add_test(tc, frozen_gradients_are_zero);
    tcase_add_test(tc, transfer_beats_scratch);
    tcase_add_test(tc, finetune_forgets_conure_does_not);
    tcase_add_test(tc, state_machine);
    tcase_add_test(tc, capacity_and_discard);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
