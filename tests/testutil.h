/* Small helpers shared by the Check suites. */
#ifndef CN_TESTUTIL_H
#define CN_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* max |a-b| / max(max |b|, tiny): the normalised error used to compare a
 * backend or an implementation against a reference. */
double tu_norm_err(const float *a, const float *b, size_t n);
/* Fills x[n] with uniform values in [-scale, scale) from a fixed LCG seed. */
void tu_fill_uniform(float *x, size_t n, uint64_t seed, float scale);
/* Path of a file under the source tree (static buffer, not thread-safe). */
const char *tu_src_path(const char *rel);
/* Path under ../shared/data (from $CONURE_SHARED_DATA or the source root). */
const char *tu_data_path(const char *rel);

#endif
