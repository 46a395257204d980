#include <stdlib.h>
#include <string.h>

#include "common/common.h"

void *cn_alloc(size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        return NULL;
    size_t bytes = n * size;
    if (bytes == 0)
        bytes = 64;
    /* round up to whole cache lines plus one more: vector loops (and BLIS's
     * packing routines, seen under valgrind) may read a few bytes past the
     * last element */
    if (bytes > SIZE_MAX - 127)
        return NULL;
    bytes = ((bytes + 63) & ~(size_t)63) + 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0)
        return NULL;
    memset(p, 0, bytes);
    return p;
}

int cn_all_finite(const float *x, size_t n)
{
    /* x * 0 is 0 for finite x and NaN for inf or NaN; 16 lanes vectorise */
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++)
            acc[j] += x[i + j] * 0.0f;
    float s = 0;
    for (int j = 0; j < 16; j++)
        s += acc[j];
    for (; i < n; i++)
        s += x[i] * 0.0f;
    return s == 0.0f;
}

void cn_free(void *p)
{
    free(p);
}

int cn_scratch_reserve(cn_scratch *s, size_t bytes)
{
    if (bytes <= s->cap && s->ptr)
        return 0;
    void *p = cn_alloc(bytes, 1);
    if (!p)
        return -1;
    cn_free(s->ptr);
    s->ptr = p;
    s->cap = bytes;
    return 0;
}

void cn_scratch_release(cn_scratch *s)
{
    cn_free(s->ptr);
    s->ptr = NULL;
    s->cap = 0;
}
