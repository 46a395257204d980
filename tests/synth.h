/* A small synthetic world with planted structure, for training tests.
 * Users have a latent group z.  T1 sequences walk through the items of the
 * user's group (next item = following item of the group with probability
 * 0.9, else a random item of the group).  T2 targets (a new catalogue) and T3
 * classes depend on z only, so a backbone that learned T1 knows what T2 and
 * T3 need. */
#ifndef CN_SYNTH_H
#define CN_SYNTH_H

#include <stdint.h>

typedef struct synth {
    int32_t vocab_size;  /* ids 1 .. vocab_size-1, 0 padding */
    int32_t len;         /* sequence length */
    int32_t n_users, groups, n_t2, n_t3;
    int32_t *seq;        /* [n_users, len], left-padded */
    int32_t *z;          /* [n_users] */
    int32_t *t2;         /* [n_users] in 0 .. n_t2-1 */
    int32_t *t3;         /* [n_users] in 0 .. n_t3-1 */
} synth;

void synth_make(synth *s, int32_t vocab_size, int32_t len, int32_t n_users, int32_t groups,
                int32_t n_t2, int32_t n_t3, uint64_t seed);
void synth_free(synth *s);
/* Copies rows [u0, u0+n) (wrapping around n_users) of seq into out [n, len]. */
void synth_rows(const synth *s, int32_t u0, int32_t n, int32_t *out);

#endif
