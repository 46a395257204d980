/* Ranking helpers shared by the API and the metrics (method §3: full ranking). */
#ifndef CN_EVAL_H
#define CN_EVAL_H

#include <stddef.h>
#include <stdint.h>

/* The k best entries of s[0..n-1] (higher first, ties: lower index first),
 * skipping entries equal to -INFINITY.  ids/vals [k]; missing slots get -1 /
 * -INFINITY.  heap: scratch of k entries. */
void cn_topk_row(const float *s, int32_t n, int32_t k, int32_t *ids, float *vals);
/* The same by sorting, O(n log n) instead of O(n k): for large k.  scratch
 * holds cn_topk_scratch_bytes(n) bytes.  Scores must not be NaN. */
void cn_topk_row_sorted(const float *s, int32_t n, int32_t k, int32_t *ids, float *vals,
                        void *scratch);
size_t cn_topk_scratch_bytes(int32_t n);
/* Above this k, top-k sorts. */
#define CN_TOPK_SORT_MIN 64

#endif
