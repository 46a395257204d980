/* libFuzzer target: the model loader on arbitrary bytes.
 *
 * Every input must be refused cleanly or give a model that works: scores
 * can be computed for each task, and saving it, loading that and saving
 * again gives the same bytes (the loader accepts only states the writer can
 * reproduce).  Any crash, sanitizer report, leak or abort() is a bug.
 *
 * Random bytes almost never pass the crc32 checks, which would hide the
 * semantic checks behind them from the fuzzer; so inputs of odd length are
 * first given valid checksums (as a malicious writer would) and inputs of
 * even length are loaded as they are.
 * Built only with -Dfuzz=true (clang); see run_fuzz.sh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "conure/conure.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
static int one_input(const uint8_t *data, size_t size);

static void check_model(conure_model *m)
{
    int64_t n_tasks = 0;
    if (conure_model_set_int(m, "eval_unfinished", 1) != CONURE_OK)
        abort();
    if (conure_model_get_int(m, "n_tasks", &n_tasks) != CONURE_OK)
        abort();
    int32_t items[4] = {0, 1, 1, 1};  /* [2, 2], ids valid for any vocab_size >= 2 */
    for (int32_t k = 1; k <= n_tasks; k++) {
        int32_t n = 0;
        if (conure_model_task_info(m, k, NULL, &n, NULL) != CONURE_OK || n < 2)
            abort();
        float *s = malloc(sizeof(float) * 2 * (size_t)n);
        if (!s)
            abort();
        conure_status st = conure_model_scores(m, k, items, 2, 2, s, 2 * (size_t)n);
        /* NUMERIC: finite weights can still overflow */
        if (st != CONURE_OK && st != CONURE_E_NUMERIC)
            abort();
        free(s);
    }
}

static uint8_t *save(const conure_model *m, uint32_t flags, size_t *size)
{
    if (conure_model_save_size(m, flags, size) != CONURE_OK)
        abort();
    uint8_t *b = malloc(*size);
    size_t w = 0;
    if (!b || conure_model_save_buffer(m, flags, b, *size, &w) != CONURE_OK || w != *size)
        abort();
    return b;
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32);
}
static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t crc(const uint8_t *p, uint64_t n)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* Recomputes the checksums (tensors in TDIR, sections, table, header) where
 * the offsets allow it; layout per docs/file-format.md. */
static void fix_crcs(uint8_t *b, size_t size)
{
    if (size < 64)
        return;
    uint64_t toff = rd64(b + 24);
    uint32_t nsec = rd32(b + 32);
    if (nsec <= 64 && toff <= size && (uint64_t)nsec * 32 <= size - toff) {
        for (int pass = 0; pass < 2; pass++)
            for (uint32_t i = 0; i < nsec; i++) {
                uint8_t *e = b + toff + 32 * i;
                uint64_t off = rd64(e + 8), len = rd64(e + 16);
                if (off > size || len > size - off)
                    continue;
                if (pass == 1) {
                    wr32(e + 24, crc(b + off, len));
                    continue;
                }
                if (rd32(e) != 0x52494454u /* "TDIR" */ || len < 8)
                    continue;
                uint32_t n = rd32(b + off), esz = rd32(b + off + 4);
                for (uint64_t k = 0; esz >= 112 && k < n && 8 + (k + 1) * esz <= len; k++) {
                    uint8_t *t = b + off + 8 + k * esz;
                    uint64_t to = rd64(t + 88), tn = rd64(t + 96);
                    if (to <= size && tn <= size - to)
                        wr32(t + 104, crc(b + to, tn));
                }
            }
        wr32(b + 36, crc(b + toff, (uint64_t)nsec * 32));
    }
    wr32(b + 60, crc(b, 60));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *fixed = NULL;
    if (size & 1u) {
        fixed = malloc(size);
        if (!fixed)
            return 0;
        memcpy(fixed, data, size);
        fix_crcs(fixed, size);
        data = fixed;
    }
    int rc = one_input(data, size);
    free(fixed);
    return rc;
}

static int one_input(const uint8_t *data, size_t size)
{
    conure_model *m = NULL;
    if (conure_model_load_buffer(data, size, NULL, &m) != CONURE_OK) {
        if (m != NULL || conure_last_error()[0] == '\0')
            abort();  /* failures leave out untouched and say why */
        return 0;
    }
    check_model(m);
    /* with the optimizer flag as the input had it (header flags, bit 0) */
    uint32_t flags = (size > 40 && (data[40] & 1u)) ? CONURE_SAVE_OPTIMIZER : 0;
    size_t n1 = 0, n2 = 0;
    uint8_t *b1 = save(m, flags, &n1);
    conure_model *m2 = NULL;
    if (conure_model_load_buffer(b1, n1, NULL, &m2) != CONURE_OK)
        abort();
    uint8_t *b2 = save(m2, flags, &n2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        abort();
    free(b1);
    free(b2);
    conure_model_free(m2);
    conure_model_free(m);
    return 0;
}
