/* Adam in TensorFlow's form (the authors' code uses tf.train.AdamOptimizer):
 * the bias correction folds into the step size and eps is added to sqrt(v). */
#include <math.h>

#include "nn/nn.h"

void cn_adam_update(float *p, const float *g, float *m, float *v, size_t n, const uint8_t *owner,
                    uint8_t want, float lr, float b1, float b2, float eps, int64_t t, int nt)
{
    const double lr_t = (double)lr * sqrt(1.0 - pow((double)b2, (double)t)) /
                        (1.0 - pow((double)b1, (double)t));
    const float a = (float)lr_t, c1 = 1.0f - b1, c2 = 1.0f - b2;
    const int64_t N = (int64_t)n;
    if (owner) {
#pragma omp parallel for num_threads(nt) schedule(static) if (N > 65536)
        for (int64_t i = 0; i < N; i++) {
            if (owner[i] != want)
                continue;
            float gi = g[i];
            float mi = b1 * m[i] + c1 * gi;
            float vi = b2 * v[i] + c2 * gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] -= a * mi / (sqrtf(vi) + eps);
        }
    } else {
#pragma omp parallel for num_threads(nt) schedule(static) if (N > 65536)
        for (int64_t i = 0; i < N; i++) {
            float gi = g[i];
            float mi = b1 * m[i] + c1 * gi;
            float vi = b2 * v[i] + c2 * gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] -= a * mi / (sqrtf(vi) + eps);
        }
    }
}
