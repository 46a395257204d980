#include "synth.h"

#include <stdlib.h>
#include <string.h>

static uint64_t next(uint64_t *st)
{
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    return *st >> 33;
}

void synth_make(synth *s, int32_t V, int32_t len, int32_t n_users, int32_t groups, int32_t n_t2,
                int32_t n_t3, uint64_t seed)
{
    memset(s, 0, sizeof *s);
    s->vocab_size = V;
    s->len = len;
    s->n_users = n_users;
    s->groups = groups;
    s->n_t2 = n_t2;
    s->n_t3 = n_t3;
    s->seq = calloc((size_t)n_users * (size_t)len, sizeof(int32_t));
    s->z = calloc((size_t)n_users, sizeof(int32_t));
    s->t2 = calloc((size_t)n_users, sizeof(int32_t));
    s->t3 = calloc((size_t)n_users, sizeof(int32_t));
    uint64_t st = seed * 2654435761ULL + 1;
    const int32_t per = (V - 1) / groups;       /* items per group */
    const int32_t t2per = n_t2 / groups;        /* T2 targets per group */
    for (int32_t u = 0; u < n_users; u++) {
        int32_t z = (int32_t)(next(&st) % (uint64_t)groups);
        s->z[u] = z;
        s->t2[u] = z * t2per + (int32_t)(next(&st) % (uint64_t)(t2per > 0 ? t2per : 1));
        s->t3[u] = z % n_t3;
        int32_t pad = (int32_t)(next(&st) % (uint64_t)(len / 4 + 1));
        int32_t cur = (int32_t)(next(&st) % (uint64_t)per);
        int32_t *row = s->seq + (int64_t)u * len;
        for (int32_t j = 0; j < len; j++) {
            if (j < pad) {
                row[j] = 0;
                continue;
            }
            row[j] = 1 + z * per + cur;
            if (next(&st) % 10 < 9)
                cur = (cur + 1) % per;
            else
                cur = (int32_t)(next(&st) % (uint64_t)per);
        }
    }
}

void synth_free(synth *s)
{
    free(s->seq);
    free(s->z);
    free(s->t2);
    free(s->t3);
    memset(s, 0, sizeof *s);
}

void synth_rows(const synth *s, int32_t u0, int32_t n, int32_t *out)
{
    for (int32_t i = 0; i < n; i++) {
        int32_t u = (u0 + i) % s->n_users;
        memcpy(out + (int64_t)i * s->len, s->seq + (int64_t)u * s->len,
               sizeof(int32_t) * (size_t)s->len);
    }
}
