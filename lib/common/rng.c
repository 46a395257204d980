#include <math.h>

#include "common/common.h"

/* PCG-XSH-RR with 64-bit state and odd increment (M. E. O'Neill, "PCG: A
 * Family of Simple Fast Space-Efficient Statistically Good Algorithms for
 * Random Number Generation", 2014).  The constants are the published ones. */
#define PCG_MULT 6364136223846793005ULL

uint32_t cn_rng_u32(cn_rng *r)
{
    uint64_t old = r->state;
    r->state = old * PCG_MULT + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((32u - rot) & 31u));
}

void cn_rng_seed(cn_rng *r, uint64_t seed, uint64_t stream)
{
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    (void)cn_rng_u32(r);
    r->state += seed;
    (void)cn_rng_u32(r);
}

double cn_rng_uniform(cn_rng *r)
{
    uint64_t hi = cn_rng_u32(r) >> 5;  /* 27 bits */
    uint64_t lo = cn_rng_u32(r) >> 6;  /* 26 bits */
    return (double)((hi << 26) | lo) * (1.0 / 9007199254740992.0);
}

uint32_t cn_rng_below(cn_rng *r, uint32_t n)
{
    /* Lemire's nearly-divisionless method would be faster; the threshold
     * rejection below is the textbook unbiased one. */
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t x = cn_rng_u32(r);
        if (x >= threshold)
            return x % n;
    }
}

double cn_rng_normal(cn_rng *r)
{
    double u1;
    do {
        u1 = cn_rng_uniform(r);
    } while (u1 <= 0.0);
    double u2 = cn_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

float cn_rng_truncated_normal(cn_rng *r, float std)
{
    for (;;) {
        double z = cn_rng_normal(r);
        if (z >= -2.0 && z <= 2.0)
            return (float)(z * std);
    }
}
