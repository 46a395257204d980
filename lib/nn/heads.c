/* Heads, losses and negative samplers (method §3). */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "nn/nn.h"

/* ---- samplers ---------------------------------------------------------------- */

void cn_sample_log_uniform(cn_rng *r, int32_t V, int32_t n, int32_t *ids, int64_t *tries,
                           uint8_t *mark)
{
    const int32_t R = V - 1; /* classes 0 .. R-1 are ids 1 .. V-1 */
    const double log_range = log((double)R + 1.0);
    int32_t got = 0;
    int64_t t = 0;
    while (got < n) {
        double u = cn_rng_uniform(r);
        int64_t c = (int64_t)floor(exp(u * log_range)) - 1;
        if (c < 0)
            c = 0;
        if (c > R - 1)
            c = R - 1;
        t++;
        if (!mark[c]) {
            mark[c] = 1;
            ids[got++] = (int32_t)c + 1;
        }
    }
    for (int32_t i = 0; i < n; i++)
        mark[ids[i] - 1] = 0;
    *tries = t;
}

double cn_log_uniform_log_q(int32_t V, int32_t id, int64_t tries)
{
    const double R = (double)V - 1.0;
    const double c = (double)id - 1.0;
    double p = (log(c + 2.0) - log(c + 1.0)) / log(R + 1.0);
    return log(-expm1((double)tries * log1p(-p)));
}

int32_t cn_sample_pop_rank(cn_rng *r, int32_t n, double rho, int32_t avoid)
{
    /* P(rank k) ∝ q^k with q = exp(-1/(rho n)) on 0..n-1 without `avoid` (the
     * common factor exp(-1/(rho n)) of exp(-(k+1)/(rho n)) cancels).  Exact,
     * without a redraw loop: with a tiny rho almost all mass sits on rank 0,
     * and redrawing until rank != 0 would never end.  The ranks below and
     * above `avoid` are two truncated geometric distributions, of masses
     * G(avoid) and q^(avoid+1) G(n-avoid-1) with G(k) = (1 - q^k) / (1 - q);
     * pick one by its mass, then invert its CDF: k = log(1 - g (1-q)) / log q
     * for g uniform in [0, G(len)). */
    const double logq = -1.0 / (rho * (double)n);
    const double one_minus_q = -expm1(logq);
    if (!(one_minus_q > 0.0)) /* q rounds to 1: uniform */
        return cn_sample_other_class(r, n, avoid);
    const int32_t n_above = n - avoid - 1;
    const double g_below = -expm1((double)avoid * logq) / one_minus_q;
    const double g_above = -expm1((double)n_above * logq) / one_minus_q;
    const double above = exp((double)(avoid + 1) * logq) * g_above;
    const int use_below = cn_rng_uniform(r) * (g_below + above) < g_below;
    const int32_t len = use_below ? avoid : n_above;
    const double g = cn_rng_uniform(r) * (use_below ? g_below : g_above);
    double k = floor(log1p(-g * one_minus_q) / logq);
    int32_t off = k < 0 ? 0 : (k > (double)(len - 1) ? len - 1 : (int32_t)k);
    return use_below ? off : avoid + 1 + off;
}

int32_t cn_sample_other_class(cn_rng *r, int32_t n, int32_t avoid)
{
    int32_t c = (int32_t)cn_rng_below(r, (uint32_t)(n - 1));
    return c >= avoid ? c + 1 : c;
}

/* ---- small vector helpers ---------------------------------------------------- */

static inline float dot16(const float *a, const float *b, int32_t n)
{
    float acc[16] = {0};
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, float a, const float *x, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static inline double softplus(double x)
{
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static inline double sigmoid(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

/* column sums: out[j] += sum_r L[r, j] over rows (row order per column). */
static void colsum_acc(const float *L, int64_t rows, int32_t cols, float *out, int nt)
{
    const int32_t chunk = 64;
    int32_t n_chunks = (cols + chunk - 1) / chunk;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * cols > 65536)
    for (int32_t ch = 0; ch < n_chunks; ch++) {
        int32_t c0 = ch * chunk, c1 = c0 + chunk < cols ? c0 + chunk : cols;
        for (int64_t r = 0; r < rows; r++) {
            const float *lr = L + r * cols;
            for (int32_t c = c0; c < c1; c++)
                out[c] += lr[c];
        }
    }
}

/* ---- next-item head ------------------------------------------------------------ */

#define CN_LOGIT_CHUNK_FLOATS ((int64_t)1 << 23) /* 32 MiB of logits per chunk */

static int64_t chunk_rows(int64_t n_valid, int64_t width)
{
    int64_t r = CN_LOGIT_CHUNK_FLOATS / (width > 0 ? width : 1);
    if (r < 16)
        r = 16;
    return r < n_valid ? r : n_valid;
}

size_t cn_next_item_ws_floats(int64_t n_valid, int32_t V, int32_t C, int32_t n_cand)
{
    int64_t width = n_cand > 0 ? n_cand : V;
    int64_t R = chunk_rows(n_valid, width);
    size_t f = 0;
    f += (size_t)n_valid;               /* row index (int32) */
    f += (size_t)n_valid * 2;           /* per-row loss, d true logit */
    f += (size_t)n_valid * (size_t)C * 2; /* Hv, dHv */
    f += (size_t)(R * width);           /* logits chunk */
    if (n_cand > 0)
        f += (size_t)n_cand * ((size_t)C * 2 + 3); /* Wc, dWc, bc, dbc, logQc */
    return f + 64;
}

conure_status cn_next_item_loss(const float *H, int64_t n, const int32_t *tgt, const float *W,
                                const float *bias, int32_t V, int32_t C,
                                const cn_candidates *cand, float *dH, float *dW, float *db,
                                double *loss, cn_head_ws *ws, int nt)
{
    int64_t Nv = 0;
    for (int64_t r = 0; r < n; r++)
        Nv += tgt[r] != 0;
    if (Nv == 0)
        return cn_fail(CONURE_E_INVALID_ARG, "next-item loss: no position has a non-padding target");
    const int32_t S = cand ? cand->n : 0;
    const int64_t width = S > 0 ? S : V;
    const int64_t R = chunk_rows(Nv, width);
    if (ws->cap < cn_next_item_ws_floats(Nv, V, C, S))
        return cn_fail(CONURE_E_INTERNAL, "next-item loss: workspace too small");

    float *p = ws->buf;
    int32_t *rows = (int32_t *)p;
    p += Nv;
    float *row_loss = p;
    p += Nv;
    float *dtrue = p;
    p += Nv;
    float *Hv = p;
    p += Nv * C;
    float *dHv = p;
    p += Nv * C;
    float *L = p;
    p += R * width;
    float *Wc = NULL, *dWc = NULL, *bc = NULL, *dbc = NULL, *logqc = NULL;
    if (S > 0) {
        Wc = p;
        p += (int64_t)S * C;
        dWc = p;
        p += (int64_t)S * C;
        bc = p;
        p += S;
        dbc = p;
        p += S;
        logqc = p;
        p += S;
    }

    {
        int64_t k = 0;
        for (int64_t r = 0; r < n; r++)
            if (tgt[r] != 0)
                rows[k++] = (int32_t)r;
    }
#pragma omp parallel for num_threads(nt) schedule(static) if (Nv * C > 65536)
    for (int64_t k = 0; k < Nv; k++)
        memcpy(Hv + k * C, H + (int64_t)rows[k] * C, sizeof(float) * (size_t)C);

    if (dW)
        memset(dW, 0, sizeof(float) * (size_t)V * (size_t)C);
    if (db)
        memset(db, 0, sizeof(float) * (size_t)V);
    const float invN = (float)(1.0 / (double)Nv);

    if (S > 0) {
        for (int32_t j = 0; j < S; j++) {
            int32_t id = cand->ids[j];
            memcpy(Wc + (int64_t)j * C, W + (int64_t)id * C, sizeof(float) * (size_t)C);
            bc[j] = bias[id];
            logqc[j] = (float)cn_log_uniform_log_q(V, id, cand->tries);
        }
        memset(dWc, 0, sizeof(float) * (size_t)S * (size_t)C);
        memset(dbc, 0, sizeof(float) * (size_t)S);
    }

    for (int64_t r0 = 0; r0 < Nv; r0 += R) {
        const int64_t nr = (Nv - r0) < R ? (Nv - r0) : R;
        const float *Hc = Hv + r0 * C;
        if (S == 0)
            cn_sgemm(0, 1, nr, V, C, 1.0f, Hc, C, W, C, 0.0f, L, V, nt);
        else
            cn_sgemm(0, 1, nr, S, C, 1.0f, Hc, C, Wc, C, 0.0f, L, S, nt);
#pragma omp parallel for num_threads(nt) schedule(static) if (nr * width > 65536)
        for (int64_t i = 0; i < nr; i++) {
            float *l = L + i * width;
            const int32_t t = tgt[rows[r0 + i]];
            if (S == 0) {
                float mx = -INFINITY;
                for (int64_t j = 0; j < V; j++) {
                    l[j] += bias[j];
                    mx = l[j] > mx ? l[j] : mx;
                }
                const float zt = l[t];
                float se = 0;
                for (int64_t j = 0; j < V; j++) {
                    l[j] = cn_fast_expf(l[j] - mx);
                    se += l[j];
                }
                /* loss = lse - logit_t (a NaN anywhere stays NaN) */
                row_loss[r0 + i] = mx + logf(se) - zt;
                float sc = invN / se;
                for (int64_t j = 0; j < V; j++)
                    l[j] *= sc;
                l[t] -= invN;
            } else {
                const float z0 = dot16(Hv + (r0 + i) * C, W + (int64_t)t * C, C) + bias[t] -
                                 (float)cn_log_uniform_log_q(V, t, cand->tries);
                float mx = z0;
                for (int32_t j = 0; j < S; j++) {
                    if (cand->ids[j] == t)
                        l[j] = -INFINITY;
                    else
                        l[j] += bc[j] - logqc[j];
                    mx = l[j] > mx ? l[j] : mx;
                }
                float se = cn_fast_expf(z0 - mx);
                for (int32_t j = 0; j < S; j++) {
                    l[j] = cn_fast_expf(l[j] - mx);
                    se += l[j];
                }
                float lse = mx + logf(se);
                row_loss[r0 + i] = lse - z0;
                float sc = invN / se;
                for (int32_t j = 0; j < S; j++)
                    l[j] *= sc;
                dtrue[r0 + i] = (cn_fast_expf(z0 - lse) - 1.0f) * invN;
            }
        }
        if (S == 0) {
            if (db)
                colsum_acc(L, nr, V, db, nt);
            if (dW)
                cn_sgemm(1, 0, V, C, nr, 1.0f, L, V, Hc, C, 1.0f, dW, C, nt);
            cn_sgemm(0, 0, nr, C, V, 1.0f, L, V, W, C, 0.0f, dHv + r0 * C, C, nt);
        } else {
            if (db)
                colsum_acc(L, nr, S, dbc, nt);
            if (dW)
                cn_sgemm(1, 0, S, C, nr, 1.0f, L, S, Hc, C, 1.0f, dWc, C, nt);
            cn_sgemm(0, 0, nr, C, S, 1.0f, L, S, Wc, C, 0.0f, dHv + r0 * C, C, nt);
#pragma omp parallel for num_threads(nt) schedule(static) if (nr * C > 65536)
            for (int64_t i = 0; i < nr; i++) {
                const int32_t t = tgt[rows[r0 + i]];
                axpy(dHv + (r0 + i) * C, dtrue[r0 + i], W + (int64_t)t * C, C);
            }
        }
    }
    if (S > 0 && (dW || db)) {
        /* true-class gradients, in row order (rows may share a target) */
        for (int64_t k = 0; k < Nv; k++) {
            const int32_t t = tgt[rows[k]];
            if (dW)
                axpy(dW + (int64_t)t * C, dtrue[k], Hv + k * C, C);
            if (db)
                db[t] += dtrue[k];
        }
        for (int32_t j = 0; j < S; j++) {
            const int32_t id = cand->ids[j];
            if (dW)
                axpy(dW + (int64_t)id * C, 1.0f, dWc + (int64_t)j * C, C);
            if (db)
                db[id] += dbc[j];
        }
    }
    double total = 0;
    for (int64_t k = 0; k < Nv; k++)
        total += row_loss[k];
    *loss = total / (double)Nv;

    memset(dH, 0, sizeof(float) * (size_t)n * (size_t)C);
#pragma omp parallel for num_threads(nt) schedule(static) if (Nv * C > 65536)
    for (int64_t k = 0; k < Nv; k++)
        memcpy(dH + (int64_t)rows[k] * C, dHv + k * C, sizeof(float) * (size_t)C);
    return CONURE_OK;
}

/* ---- target-table heads (item recommendation, classification) ----------------- */

size_t cn_table_ws_floats(int loss_kind, int32_t B, int32_t n)
{
    size_t f = (size_t)n + (size_t)B + 64; /* L2 row sums, row losses */
    if (loss_kind == CN_LOSS_SOFTMAX)
        f += (size_t)B * (size_t)n;
    return f;
}

conure_status cn_table_loss(int loss_kind, const float *h, int32_t B, const int32_t *pos,
                            const int32_t *neg, const float *E, int32_t n, int32_t C, float l2,
                            float *dh, float *dE, double *loss, cn_head_ws *ws, int nt)
{
    if (ws->cap < cn_table_ws_floats(loss_kind, B, n))
        return cn_fail(CONURE_E_INTERNAL, "table loss: workspace too small");
    float *l2rows = ws->buf;
    float *row_loss = l2rows + n;
    float *L = row_loss + B;
    const double invB = 1.0 / (double)B;

    if (dE)
        memset(dE, 0, sizeof(float) * (size_t)n * (size_t)C);
    if (loss_kind == CN_LOSS_SOFTMAX) {
        cn_sgemm(0, 1, B, n, C, 1.0f, h, C, E, C, 0.0f, L, n, nt);
#pragma omp parallel for num_threads(nt) schedule(static) if ((int64_t)B * n > 65536)
        for (int32_t r = 0; r < B; r++) {
            float *l = L + (int64_t)r * n;
            float mx = -INFINITY;
            for (int32_t j = 0; j < n; j++)
                mx = l[j] > mx ? l[j] : mx;
            const float zt = l[pos[r]];
            float se = 0;
            for (int32_t j = 0; j < n; j++) {
                l[j] = cn_fast_expf(l[j] - mx);
                se += l[j];
            }
            row_loss[r] = mx + logf(se) - zt;
            float sc = (float)invB / se;
            for (int32_t j = 0; j < n; j++)
                l[j] *= sc;
            l[pos[r]] -= (float)invB;
        }
        cn_sgemm(0, 0, B, C, n, 1.0f, L, n, E, C, 0.0f, dh, C, nt);
        if (dE)
            cn_sgemm(1, 0, n, C, B, 1.0f, L, n, h, C, 0.0f, dE, C, nt);
    } else {
        /* rows in order: the table scatter stays deterministic */
        for (int32_t r = 0; r < B; r++) {
            const float *hr = h + (int64_t)r * C;
            const float *ep = E + (int64_t)pos[r] * C, *en = E + (int64_t)neg[r] * C;
            double sp = dot16(hr, ep, C), sn = dot16(hr, en, C);
            double cp, cneg;
            if (loss_kind == CN_LOSS_BPR) {
                double x = sp - sn;
                row_loss[r] = (float)softplus(-x);
                cp = -sigmoid(-x) * invB;
                cneg = -cp;
            } else { /* CN_LOSS_BCE */
                row_loss[r] = (float)(softplus(-sp) + softplus(sn));
                cp = -sigmoid(-sp) * invB;
                cneg = sigmoid(sn) * invB;
            }
            float *dhr = dh + (int64_t)r * C;
            for (int32_t c = 0; c < C; c++)
                dhr[c] = (float)cp * ep[c] + (float)cneg * en[c];
            if (dE) {
                axpy(dE + (int64_t)pos[r] * C, (float)cp, hr, C);
                axpy(dE + (int64_t)neg[r] * C, (float)cneg, hr, C);
            }
        }
    }
    double data = 0;
    for (int32_t r = 0; r < B; r++)
        data += row_loss[r];
    data *= invB;
    /* L2 term (l2/2)||E||^2 and its gradient l2*E */
    double reg = 0;
    if (l2 > 0) {
#pragma omp parallel for num_threads(nt) schedule(static) if ((int64_t)n * C > 65536)
        for (int32_t j = 0; j < n; j++) {
            const float *e = E + (int64_t)j * C;
            l2rows[j] = dot16(e, e, C);
            if (dE)
                axpy(dE + (int64_t)j * C, l2, e, C);
        }
        for (int32_t j = 0; j < n; j++)
            reg += l2rows[j];
        reg *= 0.5 * (double)l2;
    }
    *loss = data + reg;
    return CONURE_OK;
}
