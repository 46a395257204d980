/* Check suite 'golden': loss, every gradient, user vectors and scores of tiny
 * models against fixtures from an independent PyTorch (float64)
 * implementation, tests/golden/make_golden.py (format documented there).
 *
 * Each fixture is loaded into a model built through the public API
 * (training_mode "finetune", so every parameter gets a gradient); its
 * parameters are overwritten through the internal layout table, then
 * cn_model_loss_grad, conure_model_user_vectors and conure_model_scores are
 * compared with the fixture, for the "ref" and the "blis" backends.
 * A missing or unreadable fixture fails its test. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conure/conure.h"
#include "model/model.h"
#include "testutil.h"

#define LOSS_RTOL 1e-5
#define GRAD_TOL 1e-4
#define OUT_TOL 1e-5

/* ------------------------------------------------------------ fixtures -- */
#define GT_MAX_TENSORS 128
#define GT_MAX_CFG 32

typedef struct gt_tensor {
    char name[64];
    int ndim;
    int64_t shape[4];
    size_t n;
    double *v;
} gt_tensor;

typedef struct golden {
    char path[4096];
    int nt, nc;
    gt_tensor t[GT_MAX_TENSORS];
    char ckey[GT_MAX_CFG][32];
    char cval[GT_MAX_CFG][128];
} golden;

static void gt_free(golden *g)
{
    for (int i = 0; i < g->nt; i++)
        free(g->t[i].v);
    free(g);
}

/* Reads a fixture; on failure returns NULL and writes why into err. */
static golden *gt_load(const char *path, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "cannot open fixture %s", path);
        return NULL;
    }
    golden *g = calloc(1, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int ok = 1;
    while (ok && (len = getline(&line, &cap, f)) != -1) {
        if (len == 0 || line[0] == '#' || line[0] == '\n')
            continue;
        if (strncmp(line, "config ", 7) == 0) {
            if (g->nc >= GT_MAX_CFG ||
                sscanf(line + 7, "%31s %127s", g->ckey[g->nc], g->cval[g->nc]) != 2) {
                snprintf(err, errcap, "%s: bad config line '%.60s'", path, line);
                ok = 0;
                break;
            }
            g->nc++;
        } else if (strncmp(line, "tensor ", 7) == 0) {
            gt_tensor *t = &g->t[g->nt];
            char dtype[8];
            int pos = 0;
            if (g->nt >= GT_MAX_TENSORS ||
                sscanf(line + 7, "%63s %7s %d%n", t->name, dtype, &t->ndim, &pos) != 3 ||
                t->ndim < 0 || t->ndim > 4) {
                snprintf(err, errcap, "%s: bad tensor line '%.60s'", path, line);
                ok = 0;
                break;
            }
            char *p = line + 7 + pos;
            t->n = 1;
            for (int d = 0; d < t->ndim; d++) {
                char *e;
                t->shape[d] = strtoll(p, &e, 10);
                if (e == p || t->shape[d] < 0) {
                    ok = 0;
                    break;
                }
                p = e;
                t->n *= (size_t)t->shape[d];
            }
            if (!ok || getline(&line, &cap, f) == -1) {
                snprintf(err, errcap, "%s: tensor %s: bad shape or no values", path, t->name);
                ok = 0;
                break;
            }
            t->v = malloc((t->n ? t->n : 1) * sizeof(double));
            p = line;
            for (size_t i = 0; i < t->n; i++) {
                char *e;
                t->v[i] = strtod(p, &e);
                if (e == p) {
                    snprintf(err, errcap, "%s: tensor %s: %zu of %zu values", path, t->name,
                             i, t->n);
                    ok = 0;
                    break;
                }
                p = e;
            }
            g->nt++;
        } else {
            snprintf(err, errcap, "%s: unknown line '%.60s'", path, line);
            ok = 0;
        }
    }
    free(line);
    fclose(f);
    if (ok && g->nt == 0) {
        snprintf(err, errcap, "%s: no tensors", path);
        ok = 0;
    }
    if (!ok) {
        gt_free(g);
        return NULL;
    }
    return g;
}

static const char *gt_cfg(const golden *g, const char *key)
{
    for (int i = 0; i < g->nc; i++)
        if (strcmp(g->ckey[i], key) == 0)
            return g->cval[i];
    return NULL;
}

static const char *gt_cfg_req(const golden *g, const char *key)
{
    const char *v = gt_cfg(g, key);
    ck_assert_msg(v != NULL, "%s: config '%s' missing", g->path, key);
    return v;
}

static const gt_tensor *gt_find(const golden *g, const char *name)
{
    for (int i = 0; i < g->nt; i++)
        if (strcmp(g->t[i].name, name) == 0)
            return &g->t[i];
    return NULL;
}

static const gt_tensor *gt_req(const golden *g, const char *name)
{
    const gt_tensor *t = gt_find(g, name);
    ck_assert_msg(t != NULL, "%s: tensor '%s' missing", g->path, name);
    return t;
}

static int32_t *to_i32(const gt_tensor *t)
{
    int32_t *x = malloc((t->n ? t->n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < t->n; i++)
        x[i] = (int32_t)t->v[i];
    return x;
}

/* Normalised error of a against the double reference e; entries where e is
 * -inf must be -inf in a too (they are then left out). */
static double cmp_err(const float *a, const double *e, size_t n, const char *what)
{
    float *ef = malloc((n ? n : 1) * sizeof(float));
    float *af = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        if (isinf(e[i]) && e[i] < 0) {
            ck_assert_msg(isinf(a[i]) && a[i] < 0, "%s[%zu] = %g, expected -inf", what, i,
                          (double)a[i]);
            ef[i] = af[i] = 0.0f;
        } else {
            ef[i] = (float)e[i];
            af[i] = a[i];
        }
    }
    double err = tu_norm_err(af, ef, n);
    free(ef);
    free(af);
    return err;
}

/* ------------------------------------------------------------ one case -- */
static void ck_ok(conure_status st, const char *what)
{
    ck_assert_msg(st == CONURE_OK, "%s: %s (%s)", what, conure_status_string(st),
                  conure_last_error());
}

static void run_backend(const golden *g, const char *backend)
{
    const char *name = gt_cfg_req(g, "case");
    const int V = atoi(gt_cfg_req(g, "vocab_size"));
    const int C = atoi(gt_cfg_req(g, "channels"));
    const int K = atoi(gt_cfg_req(g, "kernel_width"));
    const int kind = atoi(gt_cfg_req(g, "kind"));
    const int n_targets = atoi(gt_cfg_req(g, "n_targets"));
    const char *loss_name = gt_cfg_req(g, "loss");
    const double l2 = strtod(gt_cfg_req(g, "l2"), NULL);
    const char *negatives = gt_cfg(g, "negatives");

    /* model and task through the public API */
    conure_options *mo = NULL, *to = NULL;
    ck_ok(conure_options_create(&mo), "options_create");
    ck_ok(conure_options_set_int(mo, "vocab_size", V), "vocab_size");
    ck_ok(conure_options_set_int(mo, "channels", C), "channels");
    ck_ok(conure_options_set_int(mo, "kernel_width", K), "kernel_width");
    ck_ok(conure_options_set_string(mo, "dilations", gt_cfg_req(g, "dilations")), "dilations");
    ck_ok(conure_options_set_string(mo, "block_order", gt_cfg_req(g, "block_order")),
          "block_order");
    ck_ok(conure_options_set_string(mo, "training_mode", "finetune"), "training_mode");
    ck_ok(conure_options_set_string(mo, "backend", backend), "backend");
    conure_model *m = NULL;
    ck_ok(conure_model_create(mo, &m), "model_create");
    conure_options_free(mo);

    ck_ok(conure_options_create(&to), "options_create");
    ck_ok(conure_options_set_string(to, "loss", loss_name), "loss");
    if (kind != CONURE_TASK_NEXT_ITEM) /* next-item heads have no L2 term */
        ck_ok(conure_options_set_float(to, "l2", l2), "l2");
    if (negatives)
        ck_ok(conure_options_set_int(to, "negatives", atoi(negatives)), "negatives");
    int32_t task = 0;
    ck_ok(conure_model_add_task(m, (conure_task_kind)kind, n_targets, to, &task), "add_task");
    conure_options_free(to);
    ck_assert_int_eq(task, 1);
    ck_assert_int_eq(m->n_tasks, 1);

    /* overwrite every backbone tensor from the fixture */
    int n_backbone_fixture = 0;
    for (int i = 0; i < g->nt; i++) {
        const char *tn = g->t[i].name;
        if (strcmp(tn, "embedding") == 0 || strncmp(tn, "block", 5) == 0)
            n_backbone_fixture++;
    }
    ck_assert_msg(m->n_tensors == n_backbone_fixture,
                  "%s: model has %d backbone tensors, fixture %d", name, m->n_tensors,
                  n_backbone_fixture);
    for (int i = 0; i < m->n_tensors; i++) {
        const cn_tensor *ct = &m->tensors[i];
        const gt_tensor *ft = gt_find(g, ct->name);
        ck_assert_msg(ft != NULL, "%s: layout tensor '%s' not in fixture", name, ct->name);
        ck_assert_msg(ft->n == ct->numel && ft->ndim == ct->ndim,
                      "%s: tensor %s: numel %zu ndim %d, fixture %zu ndim %d", name, ct->name,
                      ct->numel, ct->ndim, ft->n, ft->ndim);
        for (int d = 0; d < ct->ndim; d++)
            ck_assert_msg(ft->shape[d] == ct->shape[d], "%s: tensor %s dim %d: %lld vs %lld",
                          name, ct->name, d, (long long)ct->shape[d], (long long)ft->shape[d]);
        ck_assert(ct->offset + ct->numel <= m->n_backbone);
        for (size_t j = 0; j < ct->numel; j++)
            m->params[ct->offset + j] = (float)ft->v[j];
    }
    /* the head: W [n, C], then (next item) bias [n] */
    cn_task *t = &m->tasks[0];
    const gt_tensor *hw = gt_req(g, "head.weight");
    const gt_tensor *hb = kind == CONURE_TASK_NEXT_ITEM ? gt_req(g, "head.bias") : NULL;
    ck_assert_int_eq(hw->n, (size_t)n_targets * (size_t)C);
    const size_t head_numel = hw->n + (hb ? hb->n : 0);
    ck_assert_msg(t->head_numel == head_numel, "%s: head_numel %zu, fixture %zu", name,
                  t->head_numel, head_numel);
    for (size_t j = 0; j < hw->n; j++)
        t->head[j] = (float)hw->v[j];
    for (size_t j = 0; hb && j < hb->n; j++)
        t->head[hw->n + j] = (float)hb->v[j];
    float *params0 = malloc(m->n_backbone * sizeof(float));
    memcpy(params0, m->params, m->n_backbone * sizeof(float));
    float *head0 = malloc(head_numel * sizeof(float));
    memcpy(head0, t->head, head_numel * sizeof(float));

    /* inputs */
    const gt_tensor *it = gt_req(g, "items");
    ck_assert_int_eq(it->ndim, 2);
    const int32_t B = (int32_t)it->shape[0], L = (int32_t)it->shape[1];
    int32_t *items = to_i32(it);
    int32_t *targets = NULL;
    if (kind != CONURE_TASK_NEXT_ITEM)
        targets = to_i32(gt_req(g, "targets"));
    const gt_tensor *st = gt_find(g, "samples");
    int32_t *sample_ids = NULL;
    cn_samples samples = {0};
    const cn_samples *sp = NULL;
    if (st) {
        sample_ids = to_i32(st);
        samples.ids = sample_ids;
        samples.n = (int32_t)st->n;
        const gt_tensor *tr = gt_find(g, "tries");
        samples.tries = tr ? (int64_t)tr->v[0] : 0;
        sp = &samples;
    }

    /* loss and gradients; twice: the second call must give the same values
     * (gradients are overwritten, not accumulated; parameters unchanged) */
    const double loss_ref = gt_req(g, "loss")->v[0];
    for (int rep = 0; rep < 2; rep++) {
        if (rep == 0) {
            memset(m->grads, 0, m->n_backbone * sizeof(float));
            memset(t->head_grad, 0, head_numel * sizeof(float));
        }
        double loss = NAN;
        ck_ok(cn_model_loss_grad(m, 1, items, B, L, targets, sp, 1, &loss), "loss_grad");
        double rel = fabs(loss - loss_ref) / fabs(loss_ref);
        fprintf(stderr, "# golden %-22s %-4s call %d: loss %.9g ref %.9g rel err %.3g\n", name,
                backend, rep + 1, loss, loss_ref, rel);
        ck_assert_msg(rel < LOSS_RTOL, "%s [%s] call %d: loss %.9g, expected %.9g (rel %.3g)",
                      name, backend, rep + 1, loss, loss_ref, rel);

        double worst = 0;
        const char *worst_name = "";
        for (int i = 0; i < m->n_tensors; i++) {
            const cn_tensor *ct = &m->tensors[i];
            char gname[96];
            snprintf(gname, sizeof gname, "grad.%s", ct->name);
            const gt_tensor *gt = gt_req(g, gname);
            ck_assert_int_eq(gt->n, ct->numel);
            double e = cmp_err(m->grads + ct->offset, gt->v, ct->numel, gname);
            if (!(e <= worst)) {
                worst = e;
                worst_name = ct->name;
            }
            ck_assert_msg(e < GRAD_TOL, "%s [%s] call %d: %s normalised error %.3g", name,
                          backend, rep + 1, gname, e);
        }
        const gt_tensor *ghw = gt_req(g, "grad.head.weight");
        double e = cmp_err(t->head_grad, ghw->v, ghw->n, "grad.head.weight");
        ck_assert_msg(e < GRAD_TOL, "%s [%s] call %d: grad.head.weight normalised error %.3g",
                      name, backend, rep + 1, e);
        if (!(e <= worst)) {
            worst = e;
            worst_name = "head.weight";
        }
        if (hb) {
            const gt_tensor *ghb = gt_req(g, "grad.head.bias");
            e = cmp_err(t->head_grad + ghw->n, ghb->v, ghb->n, "grad.head.bias");
            ck_assert_msg(e < GRAD_TOL, "%s [%s] call %d: grad.head.bias normalised error %.3g",
                          name, backend, rep + 1, e);
            if (!(e <= worst)) {
                worst = e;
                worst_name = "head.bias";
            }
        }
        fprintf(stderr, "# golden %-22s %-4s call %d: worst gradient error %.3g (%s)\n", name,
                backend, rep + 1, worst, worst_name);
        ck_assert_msg(memcmp(params0, m->params, m->n_backbone * sizeof(float)) == 0,
                      "%s [%s]: cn_model_loss_grad changed backbone parameters", name, backend);
        ck_assert_msg(memcmp(head0, t->head, head_numel * sizeof(float)) == 0,
                      "%s [%s]: cn_model_loss_grad changed the head", name, backend);
    }

    /* user vectors and scores: first of the unfinished task (run-time
     * setting eval_unfinished), then again after finish_task (DONE path) */
    const gt_tensor *uv = gt_req(g, "user_vectors");
    const gt_tensor *sc = gt_req(g, "scores");
    ck_assert_int_eq(uv->n, (size_t)B * (size_t)C);
    ck_assert_int_eq(sc->n, (size_t)B * (size_t)n_targets);
    float *out = malloc(uv->n * sizeof(float));
    float *scores = malloc(sc->n * sizeof(float));
    ck_ok(conure_model_set_int(m, "eval_unfinished", 1), "set eval_unfinished");
    for (int pass = 0; pass < 2; pass++) {
        const char *when = pass == 0 ? "unfinished" : "done";
        if (pass == 1)
            ck_ok(conure_model_finish_task(m, 1), "finish_task");
        ck_ok(conure_model_user_vectors(m, 1, items, B, L, out, uv->n), "user_vectors");
        double e_uv = cmp_err(out, uv->v, uv->n, "user_vectors");
        ck_assert_msg(e_uv < OUT_TOL, "%s [%s, %s]: user_vectors normalised error %.3g", name,
                      backend, when, e_uv);
        ck_ok(conure_model_scores(m, 1, items, B, L, scores, sc->n), "scores");
        double e_sc = cmp_err(scores, sc->v, sc->n, "scores");
        ck_assert_msg(e_sc < OUT_TOL, "%s [%s, %s]: scores normalised error %.3g", name,
                      backend, when, e_sc);
        fprintf(stderr, "# golden %-22s %-4s %-10s user_vectors err %.3g, scores err %.3g\n",
                name, backend, when, e_uv, e_sc);
    }
    free(out);
    free(scores);

    free(params0);
    free(head0);
    free(items);
    free(targets);
    free(sample_ids);
    conure_model_free(m);
}

static void run_case(const char *case_name)
{
    char rel[256], err[512] = "";
    snprintf(rel, sizeof rel, "tests/golden/%s.txt", case_name);
    golden *g = gt_load(tu_src_path(rel), err, sizeof err);
    ck_assert_msg(g != NULL, "fixture missing or unreadable: %s", err);
    ck_assert_str_eq(gt_cfg_req(g, "case"), case_name);
    run_backend(g, "ref");
    run_backend(g, "blis");
    gt_free(g);
}

START_TEST(golden_nextitem_softmax_pre) { run_case("nextitem_softmax_pre"); }
END_TEST
START_TEST(golden_nextitem_softmax_post) { run_case("nextitem_softmax_post"); }
END_TEST
START_TEST(golden_nextitem_sampled_pre) { run_case("nextitem_sampled_pre"); }
END_TEST
START_TEST(golden_itemrec_bpr_pre) { run_case("itemrec_bpr_pre"); }
END_TEST
START_TEST(golden_cls_bce_pre_k2) { run_case("cls_bce_pre_k2"); }
END_TEST
START_TEST(golden_cls_softmax_post) { run_case("cls_softmax_post"); }
END_TEST

static Suite *golden_suite(void)
{
    Suite *s = suite_create("golden");
    TCase *tc = tcase_create("golden");
    tcase_add_test(tc, golden_nextitem_softmax_pre);
    tcase_add_test(tc, golden_nextitem_softmax_post);
    tcase_add_test(tc, golden_nextitem_sampled_pre);
    tcase_add_test(tc, golden_itemrec_bpr_pre);
    tcase_add_test(tc, golden_cls_bce_pre_k2);
    tcase_add_test(tc, golden_cls_softmax_post);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(golden_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
