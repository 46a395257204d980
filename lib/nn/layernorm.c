/* Layer norm over channels with an optional fused ReLU (method §2), and the
 * embedding gather/scatter.  Row loops run in parallel; per-channel sums over
 * rows (gain/bias/embedding gradients) run per channel chunk in row order, so
 * results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

/* Sum with 16 fixed partial accumulators: the compiler vectorises it without
 * reassociation flags and the order is the same on every run. */
static inline float sum16(const float *x, int32_t n)
{
    float acc[16] = {0};
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[i + j];
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    for (; i < n; i++)
        s += x[i];
    return s;
}

static inline float sumsq_dev16(const float *x, int32_t n, float mu)
{
    float acc[16] = {0};
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) {
            float d = x[i + j] - mu;
            acc[j] += d * d;
        }
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    for (; i < n; i++) {
        float d = x[i] - mu;
        s += d * d;
    }
    return s;
}

void cn_ln_forward(const float *x, const float *g, const float *b, int64_t n, int32_t C,
                   float eps, int relu, float *y, float *mean, float *rstd, int n_threads)
{
    const float invC = 1.0f / (float)C;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n * C > 16384)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * C;
        float *yr = y + r * C;
        float mu = sum16(xr, C) * invC;
        float var = sumsq_dev16(xr, C, mu) * invC;
        float rs = 1.0f / sqrtf(var + eps);
        if (relu) {
            for (int32_t c = 0; c < C; c++) {
                float v = (xr[c] - mu) * rs * g[c] + b[c];
                yr[c] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int32_t c = 0; c < C; c++)
                yr[c] = (xr[c] - mu) * rs * g[c] + b[c];
        }
        if (mean)
            mean[r] = mu;
        if (rstd)
            rstd[r] = rs;
    }
}

/* Channel chunking for per-channel reductions over rows. */
#define CN_CHAN_CHUNK 32

void cn_ln_backward(const float *dy, const float *x, const float *mean, const float *rstd,
                    const float *g, const float *y, int relu, int64_t n, int32_t C, float *dx,
                    float *dg, float *db, int n_threads)
{
    /* 1. gain/bias gradients (before dx, which may overwrite dy) */
    if (dg || db) {
        int32_t n_chunks = (C + CN_CHAN_CHUNK - 1) / CN_CHAN_CHUNK;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n * C > 16384)
        for (int32_t ch = 0; ch < n_chunks; ch++) {
            int32_t c0 = ch * CN_CHAN_CHUNK;
            int32_t c1 = c0 + CN_CHAN_CHUNK < C ? c0 + CN_CHAN_CHUNK : C;
            float sg[CN_CHAN_CHUNK] = {0}, sb[CN_CHAN_CHUNK] = {0};
            for (int64_t r = 0; r < n; r++) {
                const float *dyr = dy + r * C, *xr = x + r * C;
                const float *yr = y ? y + r * C : NULL;
                float mu = mean[r], rs = rstd[r];
                for (int32_t c = c0; c < c1; c++) {
                    float d = dyr[c];
                    if (relu && !(yr[c] > 0.0f))
                        d = 0.0f;
                    sg[c - c0] += d * ((xr[c] - mu) * rs);
                    sb[c - c0] += d;
                }
            }
            for (int32_t c = c0; c < c1; c++) {
                if (dg)
                    dg[c] = sg[c - c0];
                if (db)
                    db[c] = sb[c - c0];
            }
        }
    }
    /* 2. input gradient, row by row */
    if (!dx)
        return;
    const float invC = 1.0f / (float)C;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n * C > 16384)
    for (int64_t r = 0; r < n; r++) {
        const float *dyr = dy + r * C, *xr = x + r * C;
        const float *yr = y ? y + r * C : NULL;
        float *dxr = dx + r * C;
        float mu = mean[r], rs = rstd[r];
        float a1[16] = {0}, a2[16] = {0};
        int32_t c = 0;
        for (; c + 16 <= C; c += 16)
            for (int j = 0; j < 16; j++) {
                float d = dyr[c + j];
                if (relu && !(yr[c + j] > 0.0f))
                    d = 0.0f;
                float dxh = d * g[c + j];
                a1[j] += dxh;
                a2[j] += dxh * ((xr[c + j] - mu) * rs);
            }
        float s1 = 0, s2 = 0;
        for (int j = 0; j < 16; j++) {
            s1 += a1[j];
            s2 += a2[j];
        }
        for (; c < C; c++) {
            float d = dyr[c];
            if (relu && !(yr[c] > 0.0f))
                d = 0.0f;
            float dxh = d * g[c];
            s1 += dxh;
            s2 += dxh * ((xr[c] - mu) * rs);
        }
        s1 *= invC;
        s2 *= invC;
        for (c = 0; c < C; c++) {
            float d = dyr[c];
            if (relu && !(yr[c] > 0.0f))
                d = 0.0f;
            float xh = (xr[c] - mu) * rs;
            dxr[c] = rs * (d * g[c] - s1 - xh * s2);
        }
    }
}

void cn_embedding_gather(const float *table, int32_t C, const int32_t *ids, int64_t n,
                         float *out, int n_threads)
{
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n * C > 65536)
    for (int64_t r = 0; r < n; r++)
        memcpy(out + r * C, table + (int64_t)ids[r] * C, sizeof(float) * (size_t)C);
}

void cn_embedding_scatter_acc(float *dtable, int32_t C, const int32_t *ids, int64_t n,
                              const float *d, int n_threads)
{
    int32_t n_chunks = (C + CN_CHAN_CHUNK - 1) / CN_CHAN_CHUNK;
#pragma omp parallel for num_threads(n_threads) schedule(static) if (n * C > 65536)
    for (int32_t ch = 0; ch < n_chunks; ch++) {
        int32_t c0 = ch * CN_CHAN_CHUNK;
        int32_t c1 = c0 + CN_CHAN_CHUNK < C ? c0 + CN_CHAN_CHUNK : C;
        for (int64_t r = 0; r < n; r++) {
            float *dst = dtable + (int64_t)ids[r] * C;
            const float *src = d + r * C;
            for (int32_t c = c0; c < c1; c++)
                dst[c] += src[c];
        }
    }
}
