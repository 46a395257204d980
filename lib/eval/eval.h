/* Ranking helpers shared by the API and the metrics (method §3: full ranking). */
#ifndef CN_EVAL_H
#define CN_EVAL_H

#include <stdint.h>

/* The k best entries of s[0..n-1] (higher first, ties: lower index first),
 * skipping entries equal to -INFINITY.  ids/vals [k]; missing slots get -1 /
 * -INFINITY.  heap: scratch of k entries. */
void cn_topk_row(const float *s, int32_t n, int32_t k, int32_t *ids, float *vals);

#endif
