/* Magnitude pruning (method §4 step 2): per conv tensor, among free weights,
 * task k takes the largest-|w| ones until the tensor holds
 * round(numel * (1 - prod_{j<=k} p_j)) owned weights.  Ties in |w| go to the
 * lower index.  Computing the cumulative target (not frac_k * numel per task)
 * keeps rounding errors from piling up over many tasks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

int64_t cn_prune_target_owned(int64_t numel, const conure_model *m, int32_t task_id)
{
    double keep_free = 1.0;
    for (int32_t j = 0; j < task_id; j++)
        keep_free *= (double)m->tasks[j].release_ratio;
    int64_t target = (int64_t)llround((double)numel * (1.0 - keep_free));
    return target < 0 ? 0 : (target > numel ? numel : target);
}

typedef struct mag_idx {
    float mag;
    uint32_t idx;
} mag_idx;

static int cmp_mag_desc(const void *a, const void *b)
{
    const mag_idx *x = a, *y = b;
    if (x->mag > y->mag)
        return -1;
    if (x->mag < y->mag)
        return 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

conure_status cn_model_prune(conure_model *m, int32_t task_id)
{
    cn_task *t = &m->tasks[task_id - 1];
    const size_t per = m->conv_numel;
    mag_idx *buf = cn_alloc(per, sizeof(mag_idx));
    if (!buf)
        return cn_fail(CONURE_E_NOMEM, "model_prune: out of memory");
    for (int32_t c = 0; c < m->n_conv; c++) {
        const float *w = cn_conv_ptr(m, m->params, c);
        uint8_t *own = m->owner + (size_t)c * per;
        size_t n_free = 0, owned = 0;
        for (size_t i = 0; i < per; i++) {
            if (own[i] == 0) {
                buf[n_free].mag = fabsf(w[i]);
                buf[n_free].idx = (uint32_t)i;
                n_free++;
            } else {
                owned++;
            }
        }
        int64_t target = cn_prune_target_owned((int64_t)per, m, task_id);
        int64_t take = target - (int64_t)owned;
        if (take < 0)
            take = 0;
        if ((size_t)take > n_free)
            take = (int64_t)n_free;
        qsort(buf, n_free, sizeof(mag_idx), cmp_mag_desc);
        for (int64_t i = 0; i < take; i++)
            own[buf[i].idx] = (uint8_t)task_id;
    }
    cn_free(buf);
    t->phase = CONURE_PHASE_RETRAIN;
    if (task_id == 1)
        m->backbone_frozen = 1; /* embedding and layer norms: frozen after T1's dense phase */
    cn_model_reset_adam(m, t);
    return CONURE_OK;
}
