/* Finite-difference gradient checks (central differences) of every parameter
 * kind, for both block orders and every loss, on tiny models.  The model runs
 * in float32, so the step is large-ish and the comparison is a normalised
 * vector error over sampled entries of each tensor. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "testutil.h"

#define V 11
#define C 6
#define B 3
#define L 6

static double g_dropout = 0; /* task option of the next make_model */
static int g_tied = 0;        /* task option tie_embedding of the next make_model */

static conure_model *make_model(const char *order, int K, int kind, const char *loss, int n_targets)
{
    conure_options *o;
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "vocab_size", V), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "channels", C), CONURE_OK);
    ck_assert_int_eq(conure_options_set_int(o, "kernel_width", K), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "dilations", "1,2"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "block_order", order), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "training_mode", "finetune"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "backend", "ref"), CONURE_OK);
    ck_assert_int_eq(conure_options_set_float(o, "init_std", 0.5), CONURE_OK);
    conure_model *m;
    ck_assert_int_eq(conure_model_create(o, &m), CONURE_OK);
    conure_options_free(o);
    ck_assert_int_eq(conure_options_create(&o), CONURE_OK);
    ck_assert_int_eq(conure_options_set_string(o, "loss", loss), CONURE_OK);
    if (kind != CONURE_TASK_NEXT_ITEM) /* next-item heads have no L2 term */
        ck_assert_int_eq(conure_options_set_float(o, "l2", 0.05), CONURE_OK);
    if (!strcmp(loss, "sampled_softmax"))
        ck_assert_int_eq(conure_options_set_int(o, "negatives", 4), CONURE_OK);
    if (g_dropout > 0)
        ck_assert_int_eq(conure_options_set_float(o, "dropout", g_dropout), CONURE_OK);
    if (g_tied)
        ck_assert_int_eq(conure_options_set_int(o, "tie_embedding", 1), CONURE_OK);
    int32_t id;
    ck_assert_int_eq(conure_model_add_task(m, kind, n_targets, o, &id), CONURE_OK);
    conure_options_free(o);
    /* non-trivial layer norms and head */
    for (int32_t i = 0; i < m->n_tensors; i++) {
        cn_tensor *t = &m->tensors[i];
        if (t->ndim == 1)
            tu_fill_uniform(m->params + t->offset, t->numel, 100 + (uint64_t)i, 0.3f);
        if (strstr(t->name, "gain"))
            for (size_t j = 0; j < t->numel; j++)
                m->params[t->offset + j] += 1.0f;
    }
    tu_fill_uniform(m->tasks[0].head, m->tasks[0].head_numel, 7, 0.5f);
    return m;
}

static const int32_t items[B * L] = {
    0, 0, 3, 7, 1, 9,   /* left padding: first targets are padding */
    4, 4, 10, 2, 5, 6,
    0, 8, 2, 2, 3, 1,
};
static const int32_t targets[B] = {2, 0, 4};
static const int32_t negs[B] = {3, 1, 0};
static const int32_t cands[4] = {2, 5, 9, 10};

static double loss_at(conure_model *m, const cn_samples *s)
{
    /* the same dropout masks for every evaluation: restore the sampler state */
    const cn_rng keep = m->rng;
    double loss = 0;
    ck_assert_int_eq(cn_model_loss_grad(m, 1, items, B, L, targets, s, 1, &loss), CONURE_OK);
    m->rng = keep;
    return loss;
}

/* Central difference of the loss along direction u (|u| = 1) of one array. */
static double directional_diff(conure_model *m, const cn_samples *s, float *param, const float *u,
                               size_t n, float eps)
{
    float *keep = cn_alloc(n, sizeof(float));
    memcpy(keep, param, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        param[i] = keep[i] + eps * u[i];
    double lp = loss_at(m, s);
    for (size_t i = 0; i < n; i++)
        param[i] = keep[i] - eps * u[i];
    double lm = loss_at(m, s);
    memcpy(param, keep, n * sizeof(float));
    cn_free(keep);
    return (lp - lm) / (2.0 * (double)eps);
}

/* Directional-derivative check of one array: along 6 random unit directions
 * u, the central difference of the loss must match g . u.  Summing over the
 * whole tensor keeps the signal far above float32 rounding of the loss.  A
 * direction whose differences at two step sizes disagree crosses a ReLU kink
 * and is replaced by another (at most 6 replacements).  Returns the worst
 * normalised error |fd - g.u| / max(|g|, 1e-2). */
static double check_array(conure_model *m, const cn_samples *s, float *param, const float *grad,
                          size_t n, const char *name)
{
    float *u = cn_alloc(n, sizeof(float));
    double gnorm = 0;
    for (size_t i = 0; i < n; i++)
        gnorm += (double)grad[i] * grad[i];
    gnorm = sqrt(gnorm);
    double worst = 0;
    int done = 0, skipped = 0;
    for (uint64_t seed = 1; done < 6 && skipped <= 6; seed++) {
        tu_fill_uniform(u, n, seed * 7919, 1.0f);
        double un = 0;
        for (size_t i = 0; i < n; i++)
            un += (double)u[i] * u[i];
        un = sqrt(un);
        double gu = 0;
        for (size_t i = 0; i < n; i++) {
            u[i] = (float)(u[i] / un);
            gu += (double)grad[i] * u[i];
        }
        double fd1 = directional_diff(m, s, param, u, n, 2e-3f);
        double fd2 = directional_diff(m, s, param, u, n, 1e-3f);
        if (fabs(fd1 - fd2) > 0.01 * (fabs(fd1) + fabs(fd2)) + 1e-4) {
            skipped++;
            continue;
        }
        double err = fabs(fd2 - gu) / (gnorm > 1e-2 ? gnorm : 1e-2);
        worst = err > worst ? err : worst;
        done++;
    }
    cn_free(u);
    ck_assert_msg(done == 6, "%s: only %d usable directions (%d crossed kinks)", name, done,
                  skipped);
    if (worst > 2e-2)
        fprintf(stderr, "gradcheck %s: normalised error %.3g (|g| %.3g)\n", name, worst, gnorm);
    return worst;
}

static void gradcheck(const char *order, int K, int kind, const char *loss, int n_targets)
{
    conure_model *m = make_model(order, K, kind, loss, n_targets);
    cn_samples s = {NULL, 0, 0};
    if (!strcmp(loss, "sampled_softmax")) {
        s.ids = cands;
        s.n = 4;
        s.tries = 9;
    } else if (kind != CONURE_TASK_NEXT_ITEM && strcmp(loss, "softmax")) {
        s.ids = negs;
        s.n = B;
    }
    const cn_samples *sp = s.ids ? &s : NULL;
    (void)loss_at(m, sp);
    /* copy the analytic gradients: loss_at overwrites them */
    float *g = cn_alloc(m->n_backbone, sizeof(float));
    float *hg = cn_alloc(m->tasks[0].head_numel, sizeof(float));
    memcpy(g, m->grads, sizeof(float) * m->n_backbone);
    memcpy(hg, m->tasks[0].head_grad, sizeof(float) * m->tasks[0].head_numel);
    for (int32_t i = 0; i < m->n_tensors; i++) {
        cn_tensor *t = &m->tensors[i];
        double e = check_array(m, sp, m->params + t->offset, g + t->offset, t->numel, t->name);
        ck_assert_msg(e < 2e-2, "%s %s %s: gradient of %s off by %.3g", order, loss,
                      kind == 1 ? "next-item" : "table", t->name, e);
    }
    double e = check_array(m, sp, m->tasks[0].head, hg, m->tasks[0].head_numel, "head");
    ck_assert_msg(e < 2e-2, "%s %s: head gradient off by %.3g", order, loss, e);
    /* every kind got a non-zero gradient somewhere (the check is not vacuous) */
    double gn = 0;
    for (size_t i = 0; i < m->n_backbone; i++)
        gn += fabs(g[i]);
    ck_assert(gn > 1e-3);
    cn_free(g);
    cn_free(hg);
    conure_model_free(m);
}

START_TEST(pre_norm_softmax) { gradcheck("pre_norm", 3, CONURE_TASK_NEXT_ITEM, "softmax", V); }
END_TEST
START_TEST(post_norm_softmax) { gradcheck("post_norm", 3, CONURE_TASK_NEXT_ITEM, "softmax", V); }
END_TEST
START_TEST(pre_norm_kernel2_softmax) { gradcheck("pre_norm", 2, CONURE_TASK_NEXT_ITEM, "softmax", V); }
END_TEST
START_TEST(pre_norm_sampled_softmax)
{
    gradcheck("pre_norm", 3, CONURE_TASK_NEXT_ITEM, "sampled_softmax", V);
}
END_TEST
START_TEST(post_norm_sampled_softmax)
{
    gradcheck("post_norm", 3, CONURE_TASK_NEXT_ITEM, "sampled_softmax", V);
}
END_TEST
START_TEST(pre_norm_bpr) { gradcheck("pre_norm", 3, CONURE_TASK_ITEM_REC, "bpr", 7); }
END_TEST
/* dropout (a fixed mask per evaluation): input embeddings and residual branches */
START_TEST(pre_norm_softmax_dropout)
{
    g_dropout = 0.25;
    gradcheck("pre_norm", 3, CONURE_TASK_NEXT_ITEM, "softmax", V);
    g_dropout = 0;
}
END_TEST
START_TEST(post_norm_bce_dropout)
{
    g_dropout = 0.25;
    gradcheck("post_norm", 3, CONURE_TASK_CLASSIFICATION, "bce", 5);
    g_dropout = 0;
}
END_TEST
/* tied head: W is the item embedding, so the embedding's gradient has an
 * input part and an output part; the finite differences move both */
START_TEST(pre_norm_softmax_tied)
{
    g_tied = 1;
    gradcheck("pre_norm", 3, CONURE_TASK_NEXT_ITEM, "softmax", V);
    g_tied = 0;
}
END_TEST
START_TEST(post_norm_sampled_softmax_tied_dropout)
{
    g_tied = 1;
    g_dropout = 0.25;
    gradcheck("post_norm", 3, CONURE_TASK_NEXT_ITEM, "sampled_softmax", V);
    g_tied = 0;
    g_dropout = 0;
}
END_TEST
START_TEST(post_norm_bpr) { gradcheck("post_norm", 3, CONURE_TASK_ITEM_REC, "bpr", 7); }
END_TEST
START_TEST(pre_norm_bce) { gradcheck("pre_norm", 3, CONURE_TASK_CLASSIFICATION, "bce", 5); }
END_TEST
START_TEST(post_norm_bce) { gradcheck("post_norm", 3, CONURE_TASK_CLASSIFICATION, "bce", 5); }
END_TEST
START_TEST(pre_norm_class_softmax)
{
    gradcheck("pre_norm", 3, CONURE_TASK_CLASSIFICATION, "softmax", 5);
}
END_TEST
START_TEST(post_norm_class_softmax)
{
    gradcheck("post_norm", 1, CONURE_TASK_CLASSIFICATION, "softmax", 5);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_create("finite_differences");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, pre_norm_softmax);
    tcase_add_test(tc, post_norm_softmax);
    tcase_add_test(tc, pre_norm_kernel2_softmax);
    tcase_add_test(tc, pre_norm_sampled_softmax);
    tcase_add_test(tc, post_norm_sampled_softmax);
    tcase_add_test(tc, pre_norm_bpr);
    tcase_add_test(tc, pre_norm_softmax_dropout);
    tcase_add_test(tc, post_norm_bce_dropout);
    tcase_add_test(tc, post_norm_bpr);
    tcase_add_test(tc, pre_norm_softmax_tied);
    tcase_add_test(tc, post_norm_sampled_softmax_tied_dropout);
    tcase_add_test(tc, pre_norm_bce);
    tcase_add_test(tc, post_norm_bce);
    tcase_add_test(tc, pre_norm_class_softmax);
    tcase_add_test(tc, post_norm_class_softmax);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
