#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef CONURE_SOURCE_ROOT
#define CONURE_SOURCE_ROOT "."
#endif

double tu_norm_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= num))
            num = d; /* also catches NaN */
        double m = fabs((double)b[i]);
        if (m > den)
            den = m;
    }
    return num / (den > 1e-30 ? den : 1e-30);
}

void tu_fill_uniform(float *x, size_t n, uint64_t seed, float scale)
{
    uint64_t s = seed * 2862933555777941757ULL + 3037000493ULL;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(s >> 11) * (1.0 / 9007199254740992.0);
        x[i] = (float)((2.0 * u - 1.0) * scale);
    }
}

const char *tu_src_path(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("CONURE_SOURCE_ROOT");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : CONURE_SOURCE_ROOT, rel);
    return buf;
}

const char *tu_data_path(const char *rel)
{
    static char buf[4096];
    const char *d = getenv("CONURE_SHARED_DATA");
    if (d)
        snprintf(buf, sizeof buf, "%s/%s", d, rel);
    else
        snprintf(buf, sizeof buf, "%s/../shared/data/%s", CONURE_SOURCE_ROOT, rel);
    return buf;
}
