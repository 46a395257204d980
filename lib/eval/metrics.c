/* Full-ranking metrics (method §3): ranks, HR@k, MRR@k, NDCG@k, accuracy. */
#include <math.h>
#include <stdlib.h>

#include "common/common.h"
#include "eval/eval.h"

/* a beats b: higher score, or equal score and lower id */
static inline int better(float sa, int32_t ia, float sb, int32_t ib)
{
    return sa > sb || (sa == sb && ia < ib);
}

typedef struct cn_scored {
    float v;
    int32_t id;
} cn_scored;

static int cmp_scored(const void *a, const void *b)
{
    const cn_scored *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

void cn_topk_row_sorted(const float *s, int32_t n, int32_t k, int32_t *ids, float *vals,
                        void *scratch)
{
    cn_scored *p = scratch;
    int32_t cnt = 0;
    for (int32_t j = 0; j < n; j++)
        if (s[j] != -INFINITY)
            p[cnt++] = (cn_scored){s[j], j};
    qsort(p, (size_t)cnt, sizeof *p, cmp_scored);
    for (int32_t j = 0; j < k; j++) {
        ids[j] = j < cnt ? p[j].id : -1;
        vals[j] = j < cnt ? p[j].v : -INFINITY;
    }
}

size_t cn_topk_scratch_bytes(int32_t n)
{
    return (size_t)n * sizeof(cn_scored);
}

void cn_topk_row(const float *s, int32_t n, int32_t k, int32_t *ids, float *vals)
{
    /* ids[0..cnt) kept sorted best first: insertion is O(k) per accepted
     * entry, fine for the small k of recommendation lists. */
    int32_t cnt = 0;
    for (int32_t j = 0; j < n; j++) {
        float v = s[j];
        if (v == -INFINITY)
            continue;
        if (cnt == k && !better(v, j, vals[k - 1], ids[k - 1]))
            continue;
        int32_t pos = cnt < k ? cnt : k - 1;
        while (pos > 0 && better(v, j, vals[pos - 1], ids[pos - 1])) {
            vals[pos] = vals[pos - 1];
            ids[pos] = ids[pos - 1];
            pos--;
        }
        vals[pos] = v;
        ids[pos] = j;
        if (cnt < k)
            cnt++;
    }
    for (int32_t j = cnt; j < k; j++) {
        ids[j] = -1;
        vals[j] = -INFINITY;
    }
}

CONURE_API conure_status conure_eval_ranks(const float *scores, int32_t batch, int32_t n_targets,
                                           const int32_t *targets, int32_t *ranks)
{
    cn_clear_error();
    if (!scores)
        return cn_fail(CONURE_E_NULL_ARG, "eval_ranks: scores is NULL");
    if (!targets)
        return cn_fail(CONURE_E_NULL_ARG, "eval_ranks: targets is NULL");
    if (!ranks)
        return cn_fail(CONURE_E_NULL_ARG, "eval_ranks: ranks is NULL");
    if (batch < 1)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "eval_ranks: batch = %d must be >= 1", batch);
    if (n_targets < 1)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "eval_ranks: n_targets = %d must be >= 1",
                       n_targets);
    for (int32_t b = 0; b < batch; b++)
        if (targets[b] < 0 || targets[b] >= n_targets)
            return cn_fail(CONURE_E_OUT_OF_RANGE, "eval_ranks: targets[%d] = %d is outside [0, %d)",
                           b, targets[b], n_targets);
    for (int32_t b = 0; b < batch; b++) {
        const float *s = scores + (int64_t)b * n_targets;
        for (int32_t j = 0; j < n_targets; j++)
            if (isnan(s[j]))
                return cn_fail(CONURE_E_NUMERIC, "eval_ranks: scores[%d][%d] is NaN", b, j);
    }
    for (int32_t b = 0; b < batch; b++) {
        const float *s = scores + (int64_t)b * n_targets;
        const float st = s[targets[b]];
        int32_t r = 1;
        for (int32_t j = 0; j < n_targets; j++)
            r += s[j] > st;
        ranks[b] = r;
    }
    return CONURE_OK;
}

CONURE_API conure_status conure_eval_metrics(const int32_t *ranks, int32_t n, int32_t k,
                                             double *hr, double *mrr, double *ndcg)
{
    cn_clear_error();
    if (!ranks)
        return cn_fail(CONURE_E_NULL_ARG, "eval_metrics: ranks is NULL");
    if (n < 1)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "eval_metrics: n = %d must be >= 1", n);
    if (k < 1)
        return cn_fail(CONURE_E_OUT_OF_RANGE, "eval_metrics: k = %d must be >= 1", k);
    for (int32_t i = 0; i < n; i++)
        if (ranks[i] < 1)
            return cn_fail(CONURE_E_OUT_OF_RANGE, "eval_metrics: ranks[%d] = %d must be >= 1", i,
                           ranks[i]);
    double h = 0, r = 0, g = 0;
    for (int32_t i = 0; i < n; i++) {
        if (ranks[i] <= k) {
            h += 1.0;
            r += 1.0 / ranks[i];
            g += 1.0 / log2((double)ranks[i] + 1.0);
        }
    }
    if (hr)
        *hr = h / n;
    if (mrr)
        *mrr = r / n;
    if (ndcg)
        *ndcg = g / n;
    return CONURE_OK;
}
