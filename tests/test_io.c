/* Check suite 'io': model files (docs/file-format.md).
 *
 *  - round trip: a tiny model trained through task 1 (dense, prune,
 *    retrain, finish) and an item-recommendation task in progress is saved to
 *    a buffer and to a file (same bytes); both load, every task's scores are
 *    bit-identical, and saving the loaded model gives the same bytes again;
 *  - resume: with CONURE_SAVE_OPTIMIZER, training continued on the loaded
 *    model gives bit-identical parameters, optimizer state and scores;
 *  - every truncation and every single-byte corruption (xor 0xff, +1) of
 *    the metadata, and of a sample of payload bytes, is refused cleanly;
 *  - a save killed before its rename leaves the old file intact, and the
 *    leftover temporary file does not disturb later saves; a failed save
 *    removes its temporary file;
 *  - foreign files, empty files, directories, missing paths, FIFOs;
 *  - versions: a newer major is refused with CONURE_E_VERSION, a newer minor
 *    with an unknown optional section loads, an unknown required one does
 *    not.
 * Links the static core to reach the parameters and the writer's test knobs
 * (io/io.h).  Models are tiny (vocab 30, 8 channels, dilations "1,2"), so the
 * byte sweeps run in about a second, also under ASan. */
#define _GNU_SOURCE /* memmem */

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "conure/conure.h"
#include "io/io.h"
#include "model/model.h"
#include "testutil.h"

#define V 30
#define C 8
#define SEQ 8
#define BATCH 4
#define N_REC 12  /* targets of the item-recommendation task */
#define N_CLS 3   /* classes of the classification task */

#define OK(call)                                                                      \
    do {                                                                              \
        conure_status st_ = (call);                                                   \
        ck_assert_msg(st_ == CONURE_OK, "%s -> %d (%s): %s", #call, (int)st_,         \
                      conure_status_string(st_), conure_last_error());                \
    } while (0)

static conure_model *const SENT = (conure_model *)(uintptr_t)0x5a5a5a5a;

/* ------------------------------------------------------------ helpers --- */

/* Deterministic batch `step` of item rows (some left padding). */
static void make_items(int32_t *items, uint64_t step)
{
    uint64_t s = step * 0x9e3779b97f4a7c15ULL + 12345;
    for (int b = 0; b < BATCH; b++)
        for (int j = 0; j < SEQ; j++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            int pad = (b + (int)step) % 3;  /* 0..2 padding positions */
            items[b * SEQ + j] = j < pad ? 0 : 1 + (int32_t)((s >> 33) % (V - 1));
        }
}

static void make_targets(int32_t *targets, uint64_t step, int32_t n)
{
    for (int b = 0; b < BATCH; b++)
        targets[b] = (int32_t)((step * 7 + (uint64_t)b * 5 + 3) % (uint64_t)n);
}

static void train(conure_model *m, int32_t task, int steps, uint64_t first_step)
{
    int32_t kind = 0, n = 0;
    OK(conure_model_task_info(m, task, &kind, &n, NULL));
    for (int i = 0; i < steps; i++) {
        int32_t items[BATCH * SEQ], targets[BATCH];
        make_items(items, first_step + (uint64_t)i);
        make_targets(targets, first_step + (uint64_t)i, n);
        float loss = 0;
        OK(conure_model_train_step(m, task, items, BATCH, SEQ,
                                   kind == CONURE_TASK_NEXT_ITEM ? NULL : targets, &loss));
    }
}

static conure_model *new_model(const char *mode)
{
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    OK(conure_options_set_int(o, "vocab_size", V));
    OK(conure_options_set_int(o, "channels", C));
    OK(conure_options_set_int(o, "max_len", 16));
    OK(conure_options_set_int(o, "seed", 11));
    OK(conure_options_set_string(o, "dilations", "1,2"));
    OK(conure_options_set_string(o, "training_mode", mode));
    conure_model *m = NULL;
    OK(conure_model_create(o, &m));
    conure_options_free(o);
    OK(conure_model_set_int(m, "eval_unfinished", 1));
    return m;
}

static int32_t add_task(conure_model *m, conure_task_kind kind, int32_t n)
{
    int32_t id = 0;
    OK(conure_model_add_task(m, kind, n, NULL, &id));
    return id;
}

/* T1 next-item: dense, prune, retrain, finish; T2 item-rec: `t2_steps` dense
 * steps, then pruned and retrained for `t2_retrain` steps if >= 0. */
static conure_model *trained_model(int t2_steps, int t2_retrain)
{
    conure_model *m = new_model("conure");
    int32_t t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V);
    train(m, t1, 3, 0);
    OK(conure_model_prune(m, t1));
    train(m, t1, 2, 100);
    OK(conure_model_finish_task(m, t1));
    int32_t t2 = add_task(m, CONURE_TASK_ITEM_REC, N_REC);
    train(m, t2, t2_steps, 200);
    if (t2_retrain >= 0) {
        OK(conure_model_prune(m, t2));
        train(m, t2, t2_retrain, 300);
    }
    return m;
}

static uint8_t *save_buf(const conure_model *m, uint32_t flags, size_t *size)
{
    OK(conure_model_save_size(m, flags, size));
    uint8_t *buf = malloc(*size);
    ck_assert_ptr_nonnull(buf);
    size_t written = 0;
    OK(conure_model_save_buffer(m, flags, buf, *size, &written));
    ck_assert_uint_eq(written, *size);
    return buf;
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    if (n)
        ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

/* A fresh temporary directory (removed by rm_tree). */
static char *temp_dir(void)
{
    const char *t = getenv("TMPDIR");
    char *d = malloc(4096);
    ck_assert_ptr_nonnull(d);
    snprintf(d, 4096, "%s/conure-io-XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(d));
    return d;
}

static void rm_tree(char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4400];
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (unlink(p) != 0)
                rmdir(p);
        }
        closedir(d);
    }
    rmdir(dir);
    free(dir);
}

/* Number of entries of dir whose names start with prefix. */
static int count_prefix(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

/* Scores of every task of a and b are bit-identical (same items). */
static void assert_same_scores(const conure_model *a, const conure_model *b)
{
    int64_t na = 0, nb = 0;
    OK(conure_model_get_int(a, "n_tasks", &na));
    OK(conure_model_get_int(b, "n_tasks", &nb));
    ck_assert_int_eq(na, nb);
    for (int32_t k = 1; k <= na; k++) {
        int32_t kind_a, kind_b, nt_a, nt_b, ph_a, ph_b;
        OK(conure_model_task_info(a, k, &kind_a, &nt_a, &ph_a));
        OK(conure_model_task_info(b, k, &kind_b, &nt_b, &ph_b));
        ck_assert_int_eq(kind_a, kind_b);
        ck_assert_int_eq(nt_a, nt_b);
        ck_assert_int_eq(ph_a, ph_b);
        for (uint64_t step = 0; step < 3; step++) {
            int32_t items[BATCH * SEQ];
            make_items(items, 900 + step);
            size_t n = (size_t)BATCH * (size_t)nt_a;
            float *sa = malloc(n * sizeof *sa), *sb = malloc(n * sizeof *sb);
            ck_assert(sa && sb);
            OK(conure_model_scores(a, k, items, BATCH, SEQ, sa, n));
            OK(conure_model_scores(b, k, items, BATCH, SEQ, sb, n));
            ck_assert_msg(memcmp(sa, sb, n * sizeof *sa) == 0,
                          "task %d scores differ after a round trip", (int)k);
            free(sa);
            free(sb);
        }
    }
    int64_t counts_a[8], counts_b[8];
    OK(conure_model_capacity(a, -1, counts_a, 8));
    OK(conure_model_capacity(b, -1, counts_b, 8));
    ck_assert(memcmp(counts_a, counts_b, sizeof counts_a) == 0);
}

/* Parameters (and with opt, optimizer state) of a and b are bit-identical. */
/* Equal float arrays, where NULL stands for all zeros (a model that has not
 * trained since it was created or loaded holds no Adam moments). */
static int same_or_zero(const float *x, const float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float a = x ? x[i] : 0.0f, b = y ? y[i] : 0.0f;
        if (memcmp(&a, &b, sizeof a) != 0)
            return 0;
    }
    return 1;
}

static void assert_same_state(const conure_model *a, const conure_model *b, int opt)
{
    ck_assert_uint_eq(a->n_backbone, b->n_backbone);
    ck_assert(memcmp(a->params, b->params, a->n_backbone * sizeof(float)) == 0);
    ck_assert(memcmp(a->owner, b->owner, (size_t)a->n_conv * a->conv_numel) == 0);
    ck_assert_int_eq(a->backbone_frozen, b->backbone_frozen);
    ck_assert_int_eq(a->n_tasks, b->n_tasks);
    for (int32_t k = 0; k < a->n_tasks; k++) {
        const cn_task *x = &a->tasks[k], *y = &b->tasks[k];
        ck_assert_uint_eq(x->head_numel, y->head_numel);
        ck_assert(memcmp(x->head, y->head, x->head_numel * sizeof(float)) == 0);
        ck_assert_int_eq(x->phase, y->phase);
        ck_assert_int_eq(x->loss, y->loss);
        ck_assert_int_eq(x->negatives, y->negatives);
        ck_assert(x->lr == y->lr && x->l2 == y->l2 && x->rho == y->rho &&
                  x->release_ratio == y->release_ratio && x->beta1 == y->beta1 &&
                  x->beta2 == y->beta2 && x->eps == y->eps);
    }
    if (opt) {
        ck_assert(same_or_zero(a->adam_m, b->adam_m, a->n_backbone));
        ck_assert(same_or_zero(a->adam_v, b->adam_v, a->n_backbone));
        ck_assert_int_eq(a->phase_step, b->phase_step);
        ck_assert(a->rng.state == b->rng.state && a->rng.inc == b->rng.inc);
        if (a->n_tasks > 0 && a->tasks[a->n_tasks - 1].phase != CONURE_PHASE_DONE) {
            const cn_task *x = &a->tasks[a->n_tasks - 1], *y = &b->tasks[b->n_tasks - 1];
            ck_assert(memcmp(x->head_m, y->head_m, x->head_numel * sizeof(float)) == 0);
            ck_assert(memcmp(x->head_v, y->head_v, x->head_numel * sizeof(float)) == 0);
        }
    }
}

static conure_model *load_ok(const void *buf, size_t size)
{
    conure_model *m = NULL;
    OK(conure_model_load_buffer(buf, size, NULL, &m));
    OK(conure_model_set_int(m, "eval_unfinished", 1));
    return m;
}

/* Little-endian field access for the tests that edit files. */
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
static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void wrf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    wr32(p, u);
}

static uint32_t crc(const uint8_t *p, uint64_t n)
{
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

/* Recomputes every checksum of an edited file (as a malicious writer
 * would), as far as the edited offsets stay inside the buffer, so the
 * semantic checks behind the checksums can be reached. */
static void fix_crcs(uint8_t *b, size_t size)
{
    if (size < 64)
        return;
    uint64_t toff = rd64(b + 24);
    uint32_t nsec = rd32(b + 32);
    if (nsec > 64 || toff > size || (uint64_t)nsec * 32 > size - toff)
        goto header;
    for (int pass = 0; pass < 2; pass++)  /* tensors in TDIR first, then sections */
        for (uint32_t i = 0; i < nsec; i++) {
            uint8_t *e = b + toff + 32 * i;
            uint64_t off = rd64(e + 8), len = rd64(e + 16);
            if (off > size || len > size - off)
                continue;
            if (pass == 1) {
                wr32(e + 24, crc(b + off, len));
                continue;
            }
            if (rd32(e) != CN_SEC_TDIR || len < 8)
                continue;
            uint32_t n = rd32(b + off), esz = rd32(b + off + 4);
            for (uint32_t k = 0; esz >= 112 && k < n && 8 + (uint64_t)(k + 1) * esz <= len; k++) {
                uint8_t *t = b + off + 8 + (uint64_t)k * esz;
                uint64_t to = rd64(t + 88), tn = rd64(t + 96);
                if (to <= size && tn <= size - to)
                    wr32(t + 104, crc(b + to, tn));
            }
        }
    wr32(b + 36, crc(b + toff, (uint64_t)nsec * 32));
header:
    wr32(b + 60, crc(b, 60));
}

/* File offset of the section with this tag (aborts if missing). */
static size_t sec_off(const uint8_t *b, uint32_t tag)
{
    uint32_t nsec = rd32(b + 32);
    uint64_t toff = rd64(b + 24);
    for (uint32_t i = 0; i < nsec; i++)
        if (rd32(b + toff + 32 * i) == tag)
            return (size_t)rd64(b + toff + 32 * i + 8);
    ck_abort_msg("section missing");
    return 0;
}

/* Section table entry of a tag. */
static size_t sec_entry(const uint8_t *b, uint32_t tag)
{
    uint32_t nsec = rd32(b + 32);
    uint64_t toff = rd64(b + 24);
    for (uint32_t i = 0; i < nsec; i++)
        if (rd32(b + toff + 32 * i) == tag)
            return (size_t)(toff + 32 * i);
    ck_abort_msg("section missing");
    return 0;
}

/* TDIR entry of a tensor name. */
static size_t tdir_entry(const uint8_t *b, const char *name)
{
    size_t d = sec_off(b, CN_SEC_TDIR);
    uint32_t n = rd32(b + d);
    for (uint32_t k = 0; k < n; k++)
        if (strcmp((const char *)b + d + 8 + 112 * k, name) == 0)
            return d + 8 + 112 * k;
    ck_abort_msg("tensor missing");
    return 0;
}

/* Offset of the first tensor payload = end of the metadata region. */
static size_t first_payload(const uint8_t *buf)
{
    uint32_t nsec = rd32(buf + 32);
    uint64_t toff = rd64(buf + 24);
    for (uint32_t i = 0; i < nsec; i++) {
        const uint8_t *e = buf + toff + 32 * i;
        if (rd32(e) == CN_SEC_TDIR) {
            const uint8_t *d = buf + rd64(e + 8);
            return (size_t)rd64(d + 8 + 88);  /* entry 0's offset */
        }
    }
    ck_abort_msg("no TDIR section");
    return 0;
}

/* ------------------------------------------------------------ tests ----- */

START_TEST(roundtrip_buffer_and_file)
{
    conure_model *m = trained_model(3, -1);  /* T1 DONE, T2 DENSE */
    char *dir = temp_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/model.conure", dir);
    for (int opt = 0; opt <= 1; opt++) {
        uint32_t flags = opt ? CONURE_SAVE_OPTIMIZER : 0;
        size_t size = 0, fsize = 0;
        uint8_t *buf = save_buf(m, flags, &size);
        OK(conure_model_save(m, path, flags));
        uint8_t *file = read_file(path, &fsize);
        ck_assert_uint_eq(size, fsize);
        ck_assert_msg(memcmp(buf, file, size) == 0, "file bytes differ from buffer bytes");
        ck_assert_int_eq(count_prefix(dir, "model.conure.tmp."), 0);

        conure_model *a = load_ok(buf, size);
        conure_model *b = NULL;
        OK(conure_model_load(path, NULL, &b));
        OK(conure_model_set_int(b, "eval_unfinished", 1));
        assert_same_scores(m, a);
        assert_same_scores(m, b);
        assert_same_state(m, a, opt);
        assert_same_state(m, b, opt);

        /* saving the loaded model reproduces the file byte for byte */
        size_t size2 = 0;
        uint8_t *buf2 = save_buf(a, flags, &size2);
        ck_assert_uint_eq(size, size2);
        ck_assert(memcmp(buf, buf2, size) == 0);

        int64_t v1, v2;
        const char *keys[] = {"vocab_size", "channels", "kernel_width", "n_blocks", "max_len",
                              "seed", "n_tasks", "n_parameters", "training_mode",
                              "block_order", "receptive_field"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            OK(conure_model_get_int(m, keys[i], &v1));
            OK(conure_model_get_int(b, keys[i], &v2));
            ck_assert_msg(v1 == v2, "%s: %lld vs %lld", keys[i], (long long)v1, (long long)v2);
        }
        conure_model_free(a);
        conure_model_free(b);
        free(buf);
        free(buf2);
        free(file);
    }
    unlink(path);
    rm_tree(dir);
    conure_model_free(m);
}
END_TEST

/* The path of the file mapped at address p in this process (from
 * /proc/self/maps), or "" if p is not in a file mapping. */
static void mapped_file_of(const void *p, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[4400];
    const uintptr_t a = (uintptr_t)p;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        int used = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &lo, &hi, &used) < 2 || used == 0)
            continue;
        if (a >= lo && a < hi) {
            snprintf(out, cap, "%s", line + used);
            out[strcspn(out, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
}

/* Loading from a path keeps the parameters in the file's copy-on-write
 * mapping (so processes serving one file share its pages); training the
 * loaded model writes private copies and never the file. */
START_TEST(load_shares_file_pages)
{
    conure_model *m = trained_model(3, 2);
    OK(conure_model_finish_task(m, 2));
    char *dir = temp_dir();
    char path[4200], real[4200], where[4400];
    snprintf(path, sizeof path, "%s/shared.model", dir);
    OK(conure_model_save(m, path, 0));
    ck_assert_ptr_nonnull(realpath(path, real));
    size_t fsize = 0;
    uint8_t *before = read_file(path, &fsize);

    conure_model *a = NULL;
    OK(conure_model_load(path, NULL, &a));
    ck_assert_ptr_nonnull(a->map_base);
    ck_assert_int_eq(a->params_borrowed, 1);
    const uint8_t *lo = a->map_base, *hi = lo + a->map_len;
    ck_assert((const uint8_t *)a->params >= lo && (const uint8_t *)(a->params + a->n_backbone) <= hi);
    mapped_file_of(a->params, where, sizeof where);
    ck_assert_msg(strcmp(where, real) == 0, "params are mapped from '%s', not '%s'", where, real);
    for (int32_t k = 0; k < a->n_tasks; k++) {
        ck_assert_msg(a->tasks[k].head_borrowed, "task %d head was copied", (int)k + 1);
        mapped_file_of(a->tasks[k].head, where, sizeof where);
        ck_assert_str_eq(where, real);
    }
    assert_same_scores(m, a);
    /* a model that only serves holds no training state: no gradients, no
     * Adam moments, none for its finished heads either */
    ck_assert_ptr_null(a->grads);
    ck_assert_ptr_null(a->adam_m);
    for (int32_t k = 0; k < a->n_tasks; k++)
        ck_assert(!a->tasks[k].head_grad && !a->tasks[k].head_m && !a->tasks[k].head_v);

    /* training on the mapped model: a new task, and the file stays as it was */
    int32_t t3 = add_task(a, CONURE_TASK_CLASSIFICATION, 3);
    train(a, t3, 3, 400);
    OK(conure_model_prune(a, t3));
    train(a, t3, 2, 500);
    OK(conure_model_finish_task(a, t3));
    size_t fsize2 = 0;
    uint8_t *after = read_file(path, &fsize2);
    ck_assert_uint_eq(fsize, fsize2);
    ck_assert_msg(memcmp(before, after, fsize) == 0, "training a loaded model changed its file");
    /* ... and the tasks it had are untouched (no forgetting through the mapping) */
    conure_model *b = NULL;
    OK(conure_model_load(path, NULL, &b));
    assert_same_scores(b, m);
    for (int32_t k = 1; k <= 2; k++) {
        int32_t rows[2 * 8] = {1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 2, 2, 1, 1, 4, 4};
        int32_t n = 0;
        OK(conure_model_task_info(b, k, NULL, &n, NULL));
        float *sa = malloc(sizeof(float) * 2 * (size_t)n), *sb = malloc(sizeof(float) * 2 * (size_t)n);
        OK(conure_model_scores(a, k, rows, 2, 8, sa, 2 * (size_t)n));
        OK(conure_model_scores(b, k, rows, 2, 8, sb, 2 * (size_t)n));
        ck_assert(memcmp(sa, sb, sizeof(float) * 2 * (size_t)n) == 0);
        free(sa);
        free(sb);
    }
    conure_model_free(a);
    conure_model_free(b);
    free(before);
    free(after);
    unlink(path);
    rm_tree(dir);
    conure_model_free(m);
}
END_TEST

/* Other shapes of model: empty, finetune mode, classification, post-norm. */
START_TEST(roundtrip_variants)
{
    conure_model *models[4];
    models[0] = new_model("conure");  /* no tasks */
    models[1] = new_model("finetune");
    int32_t t1 = add_task(models[1], CONURE_TASK_NEXT_ITEM, V);
    train(models[1], t1, 2, 0);
    OK(conure_model_finish_task(models[1], t1));
    int32_t t2 = add_task(models[1], CONURE_TASK_CLASSIFICATION, N_CLS);
    train(models[1], t2, 2, 10);
    models[2] = trained_model(2, 2);  /* T2 in RETRAIN */
    OK(conure_model_finish_task(models[2], 2));
    int32_t t3 = add_task(models[2], CONURE_TASK_CLASSIFICATION, N_CLS);
    train(models[2], t3, 1, 50);
    {
        conure_options *o = NULL;
        OK(conure_options_create(&o));
        OK(conure_options_set_int(o, "vocab_size", V));
        OK(conure_options_set_int(o, "channels", 4));
        OK(conure_options_set_int(o, "kernel_width", 2));
        OK(conure_options_set_string(o, "dilations", "1"));
        OK(conure_options_set_string(o, "block_order", "post_norm"));
        OK(conure_model_create(o, &models[3]));
        conure_options_free(o);
        OK(conure_model_set_int(models[3], "eval_unfinished", 1));
        conure_options *to = NULL;
        OK(conure_options_create(&to));
        OK(conure_options_set_string(to, "loss", "softmax"));
        int32_t id = 0;
        OK(conure_model_add_task(models[3], CONURE_TASK_NEXT_ITEM, V, to, &id));
        conure_options_free(to);
        train(models[3], id, 2, 0);
    }
    for (int i = 0; i < 4; i++)
        for (int opt = 0; opt <= 1; opt++) {
            uint32_t flags = opt ? CONURE_SAVE_OPTIMIZER : 0;
            size_t size = 0;
            uint8_t *buf = save_buf(models[i], flags, &size);
            conure_model *a = load_ok(buf, size);
            assert_same_scores(models[i], a);
            assert_same_state(models[i], a, opt);
            size_t size2 = 0;
            uint8_t *buf2 = save_buf(a, flags, &size2);
            ck_assert_msg(size == size2 && memcmp(buf, buf2, size) == 0,
                          "model %d: re-saved bytes differ", i);
            conure_model_free(a);
            free(buf);
            free(buf2);
        }
    for (int i = 0; i < 4; i++)
        conure_model_free(models[i]);
}
END_TEST

/* Train N, save with the optimizer, load, train M more on both. */
static void check_resume(conure_model *m, int32_t task, uint64_t at)
{
    size_t size = 0;
    uint8_t *buf = save_buf(m, CONURE_SAVE_OPTIMIZER, &size);
    conure_model *r = load_ok(buf, size);
    /* and a control loaded without optimizer state: it must drift */
    size_t size0 = 0;
    uint8_t *buf0 = save_buf(m, 0, &size0);
    conure_model *r0 = load_ok(buf0, size0);
    assert_same_state(m, r, 1);
    train(m, task, 4, at);
    train(r, task, 4, at);
    train(r0, task, 4, at);
    assert_same_state(m, r, 1);
    assert_same_scores(m, r);
    ck_assert_msg(memcmp(m->tasks[task - 1].head, r0->tasks[task - 1].head,
                         m->tasks[task - 1].head_numel * sizeof(float)) != 0,
                  "resuming without optimizer state gave the same head: the test proves "
                  "nothing");
    conure_model_free(r);
    conure_model_free(r0);
    free(buf);
    free(buf0);
}

START_TEST(resume_exactly)
{
    /* T1 dense (sampled softmax: uses the sampler RNG) */
    conure_model *m = new_model("conure");
    int32_t t1 = add_task(m, CONURE_TASK_NEXT_ITEM, V);
    train(m, t1, 3, 0);
    check_resume(m, t1, 40);
    /* T1 retrain */
    OK(conure_model_prune(m, t1));
    train(m, t1, 2, 60);
    check_resume(m, t1, 70);
    conure_model_free(m);
    /* T2 (BPR, popularity sampler) dense and retrain */
    m = trained_model(3, -1);
    check_resume(m, 2, 400);
    OK(conure_model_prune(m, 2));
    train(m, 2, 2, 500);
    check_resume(m, 2, 600);
    conure_model_free(m);
}
END_TEST

static void expect_reject(const uint8_t *buf, size_t size, const char *what, size_t at,
                          int allow_version)
{
    conure_model *out = SENT;
    conure_status st = conure_model_load_buffer(buf, size, NULL, &out);
    const char *msg = conure_last_error();
    ck_assert_msg(st == CONURE_E_FORMAT || (allow_version && st == CONURE_E_VERSION),
                  "%s at %zu (size %zu): status %d (%s), message \"%s\"", what, at, size,
                  (int)st, conure_status_string(st), msg);
    ck_assert_msg(out == SENT, "%s at %zu: output written on failure", what, at);
    ck_assert_msg(strncmp(msg, "model_load_buffer: ", 19) == 0 && strlen(msg) > 30,
                  "%s at %zu: poor message \"%s\"", what, at, msg);
}

START_TEST(truncation_and_corruption)
{
    conure_model *m = trained_model(2, -1);
    for (int opt = 0; opt <= 1; opt++) {
        size_t size = 0;
        uint8_t *buf = save_buf(m, opt ? CONURE_SAVE_OPTIMIZER : 0, &size);
        uint8_t *copy = malloc(size);
        ck_assert_ptr_nonnull(copy);
        /* every truncation, in a buffer of exactly that length (ASan sees
         * any read past it) */
        for (size_t n = 0; n < size; n++) {
            uint8_t *t = malloc(n ? n : 1);
            memcpy(t, buf, n);
            expect_reject(t, n, "truncation", n, 0);
            free(t);
        }
        /* every byte of the metadata (header, section table, MODL, TASK,
         * OPTM, TDIR and padding), and every 7th payload byte */
        size_t meta = first_payload(buf);
        ck_assert_uint_gt(meta, 64);
        ck_assert_uint_lt(meta, size);
        for (size_t i = 0; i < size; i += (i < meta ? 1 : 7)) {
            for (int mut = 0; mut < 2; mut++) {
                memcpy(copy, buf, size);
                copy[i] = mut ? (uint8_t)(copy[i] + 1) : (uint8_t)(copy[i] ^ 0xff);
                expect_reject(copy, size, mut ? "byte +1" : "byte ^0xff", i, i == 8 || i == 9);
            }
        }
        /* the last payload byte, and one byte appended */
        memcpy(copy, buf, size);
        copy[size - 1] ^= 0x01;
        expect_reject(copy, size, "last byte", size - 1, 0);
        uint8_t *longer = malloc(size + 1);
        memcpy(longer, buf, size);
        longer[size] = 0;
        expect_reject(longer, size + 1, "appended byte", size, 0);
        free(longer);
        /* the original still loads */
        conure_model *a = load_ok(buf, size);
        conure_model_free(a);
        free(copy);
        free(buf);
    }
    conure_model_free(m);
}
END_TEST

/* Messages name what is wrong. */
START_TEST(messages_name_the_defect)
{
    conure_model *m = trained_model(2, -1);
    size_t size = 0;
    uint8_t *buf = save_buf(m, 0, &size);
    uint8_t *copy = malloc(size);
    conure_model *out = SENT;
    struct { size_t at; const char *needle; } cases[] = {
        {0, "not a libconure model file"},
        {20, "header checksum"},
        {64, "section table checksum"},
        {size - 3, "checksum mismatch"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(copy, buf, size);
        copy[cases[i].at] ^= 0x10;
        ck_assert_int_eq(conure_model_load_buffer(copy, size, NULL, &out), CONURE_E_FORMAT);
        ck_assert_msg(strstr(conure_last_error(), cases[i].needle) != NULL,
                      "byte %zu: \"%s\" lacks \"%s\"", cases[i].at, conure_last_error(),
                      cases[i].needle);
    }
    ck_assert_int_eq(conure_model_load_buffer(buf, size / 2, NULL, &out), CONURE_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "truncated"));
    ck_assert_ptr_eq(out, SENT);
    free(copy);
    free(buf);
    conure_model_free(m);
}
END_TEST

/* Defects behind valid checksums: the semantic checks, one by one. */
typedef void (*edit_fn)(uint8_t *b, size_t size);
#define TASK_E(b, k) ((b) + sec_off((b), CN_SEC_TASK) + 8 + 64 * (k))
static void e_channels0(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_MODL) + 4, 0); }
static void e_nblocks(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_MODL) + 16, 65); }
static void e_dilation(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_MODL) + 48, 5000); }
static void e_frozen(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_MODL) + 28, 0); }
static void e_mode(uint8_t *b, size_t n)
{
    (void)n;
    wr32(b + sec_off(b, CN_SEC_MODL) + 24, 1);  /* finetune, then owners are wrong */
    wr32(b + sec_off(b, CN_SEC_MODL) + 28, 0);
}
static void e_phase7(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 1) + 8, 7); }
static void e_t1dense(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 0) + 8, 1); }
static void e_lrnan(uint8_t *b, size_t n) { (void)n; wrf(TASK_E(b, 0) + 20, NAN); }
static void e_eps0(uint8_t *b, size_t n) { (void)n; wrf(TASK_E(b, 1) + 44, 0.0f); }
static void e_loss(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 0) + 12, CN_LOSS_BPR); }
static void e_neg(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 0) + 16, V); }
static void e_ntargets(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 0) + 4, V + 1); }
static void e_tflags(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 0) + 60, 2); }
static void e_tied_table(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 1) + 60, 1); }
static void e_tied_w(uint8_t *b, size_t n) { (void)n; wr32(TASK_E(b, 0) + 60, 1); }
static void e_headnumel(uint8_t *b, size_t n) { (void)n; wr64(TASK_E(b, 1) + 48, 1); }
static void e_ntasks(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_TASK), 3); }
static void e_name(uint8_t *b, size_t n) { (void)n; b[tdir_entry(b, "embedding") + 8] = 'G'; }
static void e_dtype(uint8_t *b, size_t n) { (void)n; wr32(b + tdir_entry(b, "embedding") + 48, 2); }
static void e_shape(uint8_t *b, size_t n) { (void)n; wr64(b + tdir_entry(b, "embedding") + 64, 9); }
static void e_misalign(uint8_t *b, size_t n)
{
    (void)n;
    size_t e = tdir_entry(b, "embedding");
    wr64(b + e + 88, rd64(b + e + 88) + 4);
}
static void e_overlap(uint8_t *b, size_t n)
{
    (void)n;
    wr64(b + tdir_entry(b, "block0.ln1.bias") + 88, rd64(b + tdir_entry(b, "block0.ln1.gain") + 88));
}
static void e_outside(uint8_t *b, size_t n)
{
    wr64(b + tdir_entry(b, "embedding") + 88, ((uint64_t)n + 64) & ~(uint64_t)63);
}
static void e_huge_off(uint8_t *b, size_t n) { (void)n; wr64(b + tdir_entry(b, "owner") + 88, UINT64_MAX - 63); }
static void e_padding(uint8_t *b, size_t n) { (void)n; b[rd64(b + tdir_entry(b, "embedding") + 88) - 1] = 1; }
static void e_owner5(uint8_t *b, size_t n) { (void)n; b[rd64(b + tdir_entry(b, "owner") + 88) + 3] = 5; }
static void e_owner_dense(uint8_t *b, size_t n) { (void)n; b[rd64(b + tdir_entry(b, "owner") + 88) + 3] = 2; }
static void e_nan(uint8_t *b, size_t n) { (void)n; wrf(b + rd64(b + tdir_entry(b, "embedding") + 88) + 8, INFINITY); }
static void e_negv(uint8_t *b, size_t n) { (void)n; wrf(b + rd64(b + tdir_entry(b, "optimizer.adam_v") + 88), -1.0f); }
static void e_rnginc(uint8_t *b, size_t n) { (void)n; wr64(b + sec_off(b, CN_SEC_OPTM) + 16, 2); }
static void e_opttask(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_OPTM) + 24, 1); }
static void e_step(uint8_t *b, size_t n) { (void)n; wr64(b + sec_off(b, CN_SEC_OPTM), UINT64_MAX); }
static void e_hflags(uint8_t *b, size_t n) { (void)n; wr32(b + 40, 3); }
static void e_hflag_off(uint8_t *b, size_t n) { (void)n; wr32(b + 40, 0); }
static void e_reserved(uint8_t *b, size_t n) { (void)n; b[50] = 1; }
static void e_fsize(uint8_t *b, size_t n) { wr64(b + 16, (uint64_t)n - 1); }
static void e_nsec0(uint8_t *b, size_t n) { (void)n; wr32(b + 32, 0); }
static void e_nsec_big(uint8_t *b, size_t n) { (void)n; wr32(b + 32, 1000000); }
static void e_secflags(uint8_t *b, size_t n) { (void)n; wr32(b + sec_entry(b, CN_SEC_TASK) + 4, 3); }
static void e_modl_len(uint8_t *b, size_t n) { (void)n; wr64(b + sec_entry(b, CN_SEC_MODL) + 16, 52); }
static void e_sec_off(uint8_t *b, size_t n) { (void)n; wr64(b + sec_entry(b, CN_SEC_TASK) + 8, UINT64_MAX - 7); }
static void e_dup(uint8_t *b, size_t n) { (void)n; wr32(b + sec_entry(b, CN_SEC_OPTM), CN_SEC_TASK); }
static void e_missing(uint8_t *b, size_t n)
{
    (void)n;
    size_t e = sec_entry(b, CN_SEC_TASK);
    wr32(b + e, CN_TAG('t', 'a', 's', 'k'));  /* an unknown optional section now */
    wr32(b + e + 4, 0);
}
static void e_tag(uint8_t *b, size_t n) { (void)n; b[sec_entry(b, CN_SEC_TASK)] = 0x01; }
static void e_tdir_count(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_TDIR), 0xffffffffu); }
static void e_tdir_esz(uint8_t *b, size_t n) { (void)n; wr32(b + sec_off(b, CN_SEC_TDIR) + 4, 113); }

START_TEST(semantic_checks)
{
    struct { edit_fn f; const char *needle; } cases[] = {
        {e_channels0, "channels"},      {e_nblocks, "n_blocks"},
        {e_dilation, "dilations[0]"},   {e_frozen, "backbone_frozen"},
        {e_mode, "finetune"},           {e_phase7, "phase = 7"},
        {e_t1dense, "only the last task"}, {e_lrnan, "lr = nan"},
        {e_eps0, "adam_eps"},           {e_loss, "loss = 3"},
        {e_neg, "negatives"},           {e_ntargets, "n_targets"},
        {e_headnumel, "head_numel"},    {e_ntasks, "section TASK has"},
        {e_name, "does not match"},     {e_dtype, "dtype"},
        {e_shape, "shape[1]"},          {e_misalign, "aligned"},
        {e_overlap, "overlaps"},        {e_outside, "outside the file"},
        {e_huge_off, "outside the file"}, {e_padding, "padding byte"},
        {e_owner5, "no such task"},     {e_owner_dense, "dense phase"},
        {e_nan, "not finite"},          {e_negv, "non-negative"},
        {e_rnginc, "rng_inc"},          {e_opttask, "expected 2"},
        {e_step, "phase_step"},         {e_hflags, "unknown bits"},
        {e_hflag_off, "OPTM is present"}, {e_reserved, "reserved"},
        {e_fsize, "unexpected bytes"},  {e_nsec0, "n_sections"},
        {e_nsec_big, "n_sections"},     {e_secflags, "unknown flags"},
        {e_modl_len, "MODL has"},       {e_sec_off, "outside the file"},
        {e_dup, "appears twice"},       {e_missing, "TASK"},
        {e_tag, "non-ASCII"},           {e_tdir_count, "tensors"},
        {e_tdir_esz, "entry_size"},
        {e_tflags, "flags = 0x2"},     {e_tied_table, "not next-item"},
        {e_tied_w, "differs from the item embedding"},
    };
    conure_model *m = trained_model(2, -1);  /* T1 DONE, T2 DENSE */
    size_t size = 0;
    uint8_t *buf = save_buf(m, CONURE_SAVE_OPTIMIZER, &size);
    uint8_t *copy = malloc(size);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(copy, buf, size);
        cases[i].f(copy, size);
        fix_crcs(copy, size);
        conure_model *out = SENT;
        conure_status st = conure_model_load_buffer(copy, size, NULL, &out);
        ck_assert_msg(st == CONURE_E_FORMAT, "case %zu (%s): status %d; \"%s\"", i,
                      cases[i].needle, (int)st, conure_last_error());
        ck_assert_ptr_eq(out, SENT);
        ck_assert_msg(strstr(conure_last_error(), cases[i].needle) != NULL,
                      "case %zu: \"%s\" lacks \"%s\"", i, conure_last_error(), cases[i].needle);
    }
    /* a huge vocabulary in a tiny file is refused before any allocation */
    conure_model *e = new_model("conure");
    size_t es = 0;
    uint8_t *eb = save_buf(e, 0, &es);
    wr32(eb + sec_off(eb, CN_SEC_MODL), 1u << 30);
    fix_crcs(eb, es);
    conure_model *out = SENT;
    ck_assert_int_eq(conure_model_load_buffer(eb, es, NULL, &out), CONURE_E_FORMAT);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "need at least"));
    free(eb);
    conure_model_free(e);
    free(copy);
    free(buf);
    conure_model_free(m);
}
END_TEST

/* Every single-byte change of the metadata with the checksums recomputed:
 * each file is either refused cleanly or loads into a model that works. */
START_TEST(metadata_sweep_with_valid_checksums)
{
    conure_model *m = trained_model(2, -1);
    size_t size = 0;
    uint8_t *buf = save_buf(m, CONURE_SAVE_OPTIMIZER, &size);
    uint8_t *copy = malloc(size);
    size_t meta = first_payload(buf);
    int loaded = 0, refused = 0;
    for (size_t i = 0; i < meta; i++) {
        for (int mut = 0; mut < 3; mut++) {
            memcpy(copy, buf, size);
            copy[i] = mut == 0 ? (uint8_t)(copy[i] ^ 0xff)
                               : mut == 1 ? (uint8_t)(copy[i] + 1) : (uint8_t)(copy[i] - 1);
            fix_crcs(copy, size);
            conure_model *out = SENT;
            conure_status st = conure_model_load_buffer(copy, size, NULL, &out);
            if (st != CONURE_OK) {
                ck_assert_msg(st == CONURE_E_FORMAT || st == CONURE_E_VERSION,
                              "byte %zu mutation %d: status %d \"%s\"", i, mut, (int)st,
                              conure_last_error());
                ck_assert_ptr_eq(out, SENT);
                ck_assert(strlen(conure_last_error()) > 20);
                refused++;
                continue;
            }
            loaded++;
            OK(conure_model_set_int(out, "eval_unfinished", 1));
            int64_t nt = 0;
            OK(conure_model_get_int(out, "n_tasks", &nt));
            for (int32_t k = 1; k <= nt; k++) {
                int32_t n = 0;
                OK(conure_model_task_info(out, k, NULL, &n, NULL));
                float *s = malloc(sizeof(float) * BATCH * (size_t)n);
                int32_t items[BATCH * SEQ];
                make_items(items, 5);
                conure_status ss = conure_model_scores(out, k, items, BATCH, SEQ, s,
                                                       (size_t)BATCH * (size_t)n);
                ck_assert_msg(ss == CONURE_OK || ss == CONURE_E_NUMERIC,
                              "byte %zu: scores of a loaded model: %s", i, conure_last_error());
                free(s);
            }
            conure_model_free(out);
        }
    }
    ck_assert_int_gt(refused, 0);
    ck_assert_int_gt(loaded, 0);  /* e.g. a hyperparameter's low bits */
    free(copy);
    free(buf);
    conure_model_free(m);
}
END_TEST

static void kill_self(const char *tmp)
{
    (void)tmp;
    raise(SIGKILL);
}

static const char *rename_block_path;
static void block_rename(const char *tmp)
{
    (void)tmp;
    /* a non-empty directory where the file should go: rename() fails */
    char p[4300];
    ck_assert_int_eq(mkdir(rename_block_path, 0755), 0);
    snprintf(p, sizeof p, "%s/x", rename_block_path);
    write_file(p, "x", 1);
}

START_TEST(crash_during_save)
{
    conure_model *old_m = trained_model(2, -1);
    conure_model *new_m = trained_model(4, 1);
    char *dir = temp_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/m.conure", dir);
    OK(conure_model_save(old_m, path, 0));
    size_t old_size = 0;
    uint8_t *old_bytes = read_file(path, &old_size);

    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        cn_io_test_before_rename = kill_self;
        conure_model_save(new_m, path, CONURE_SAVE_OPTIMIZER);
        _exit(3);  /* not reached */
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "child was not killed before rename (status 0x%x)", status);

    /* the old file is intact and loads; the temp file was left behind */
    size_t n = 0;
    uint8_t *now = read_file(path, &n);
    ck_assert(n == old_size && memcmp(now, old_bytes, n) == 0);
    free(now);
    ck_assert_int_eq(count_prefix(dir, "m.conure.tmp."), 1);
    conure_model *a = NULL;
    OK(conure_model_load(path, NULL, &a));
    OK(conure_model_set_int(a, "eval_unfinished", 1));
    assert_same_scores(old_m, a);
    conure_model_free(a);

    /* a later save is not disturbed by the leftover */
    OK(conure_model_save(new_m, path, CONURE_SAVE_OPTIMIZER));
    OK(conure_model_load(path, NULL, &a));
    OK(conure_model_set_int(a, "eval_unfinished", 1));
    assert_same_scores(new_m, a);
    assert_same_state(new_m, a, 1);
    conure_model_free(a);
    ck_assert_int_eq(count_prefix(dir, "m.conure.tmp."), 1);

    /* a failed rename removes the temporary file and names the paths */
    char blocked[4300];
    snprintf(blocked, sizeof blocked, "%s/blocked.conure", dir);
    rename_block_path = blocked;
    cn_io_test_before_rename = block_rename;
    conure_status st = conure_model_save(old_m, blocked, 0);
    cn_io_test_before_rename = NULL;
    ck_assert_int_eq(st, CONURE_E_IO);
    ck_assert_msg(strstr(conure_last_error(), "blocked.conure") != NULL &&
                      strstr(conure_last_error(), "rename") != NULL,
                  "message \"%s\"", conure_last_error());
    char mmsg[1024];
    conure_model_last_error(old_m, mmsg, sizeof mmsg);
    ck_assert_str_eq(mmsg, conure_last_error());
    ck_assert_int_eq(count_prefix(dir, "blocked.conure.tmp."), 0);

    /* saving over a directory or into a missing directory: E_IO, no temp */
    st = conure_model_save(old_m, blocked, 0);
    ck_assert_int_eq(st, CONURE_E_IO);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "directory"));
    char missing[4300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/m.conure", dir);
    ck_assert_int_eq(conure_model_save(old_m, missing, 0), CONURE_E_IO);
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "No such file"));
    ck_assert_ptr_nonnull(strstr(conure_last_error(), missing));
    ck_assert_int_eq(count_prefix(dir, "blocked.conure.tmp."), 0);

    char sub[4400];
    snprintf(sub, sizeof sub, "%s/x", blocked);
    unlink(sub);
    rmdir(blocked);
    unlink(path);
    rm_tree(dir);
    free(old_bytes);
    conure_model_free(old_m);
    conure_model_free(new_m);
}
END_TEST

/* A new file gets 0666 less the umask (like open(2), not mkstemp's 0600);
 * saving over a file keeps that file's mode. */
START_TEST(save_file_modes)
{
    conure_model *m = new_model("conure");
    char *dir = temp_dir();
    char path[4200];
    snprintf(path, sizeof path, "%s/m.conure", dir);
    mode_t old_mask = umask(022);
    OK(conure_model_save(m, path, 0));
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0644);
    ck_assert_int_eq(chmod(path, 0640), 0);
    OK(conure_model_save(m, path, 0));
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0640);
    unlink(path);
    umask(077);
    OK(conure_model_save(m, path, 0));
    umask(old_mask);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    unlink(path);
    rm_tree(dir);
    conure_model_free(m);
}
END_TEST

static void expect_load_fail(const char *path, conure_status want, const char *needle)
{
    conure_model *out = SENT;
    conure_status st = conure_model_load(path, NULL, &out);
    ck_assert_msg(st == want, "%s: status %d (%s), expected %d; \"%s\"", path, (int)st,
                  conure_status_string(st), (int)want, conure_last_error());
    ck_assert_ptr_eq(out, SENT);
    ck_assert_msg(strncmp(conure_last_error(), "model_load: ", 12) == 0,
                  "message \"%s\"", conure_last_error());
    if (needle)
        ck_assert_msg(strstr(conure_last_error(), needle) != NULL, "\"%s\" lacks \"%s\"",
                      conure_last_error(), needle);
}

START_TEST(foreign_files)
{
    char *dir = temp_dir();
    char p[4300];
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13,
                                  'I', 'H', 'D', 'R', 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0};
    snprintf(p, sizeof p, "%s/image.png", dir);
    write_file(p, png, sizeof png);
    expect_load_fail(p, CONURE_E_FORMAT, "not a libconure model file");
    unlink(p);

    uint8_t *zeros = calloc(1, 5000);
    snprintf(p, sizeof p, "%s/zeros", dir);
    write_file(p, zeros, 5000);
    expect_load_fail(p, CONURE_E_FORMAT, "not a libconure model file");
    unlink(p);

    float rnd[1000];
    tu_fill_uniform(rnd, 1000, 3, 100.0f);
    snprintf(p, sizeof p, "%s/random", dir);
    write_file(p, rnd, sizeof rnd);
    expect_load_fail(p, CONURE_E_FORMAT, "not a libconure model file");
    unlink(p);

    /* the magic alone, and the magic followed by zeros */
    uint8_t hdr[200];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, CN_FILE_MAGIC, 8);
    snprintf(p, sizeof p, "%s/magic-only", dir);
    write_file(p, hdr, 8);
    expect_load_fail(p, CONURE_E_FORMAT, "truncated");
    write_file(p, hdr, 12);
    expect_load_fail(p, CONURE_E_VERSION, "0.0");
    hdr[8] = 1;
    write_file(p, hdr, sizeof hdr);
    expect_load_fail(p, CONURE_E_FORMAT, "header checksum");
    unlink(p);

    snprintf(p, sizeof p, "%s/empty", dir);
    write_file(p, "", 0);
    expect_load_fail(p, CONURE_E_FORMAT, "empty");
    unlink(p);

    expect_load_fail(dir, CONURE_E_IO, "directory");
    snprintf(p, sizeof p, "%s/does-not-exist", dir);
    expect_load_fail(p, CONURE_E_IO, "No such file");
    ck_assert_ptr_nonnull(strstr(conure_last_error(), "does-not-exist"));
    expect_load_fail("", CONURE_E_IO, "empty");

    conure_model *out = SENT;
    ck_assert_int_eq(conure_model_load_buffer(zeros, 0, NULL, &out), CONURE_E_FORMAT);
    ck_assert_int_eq(conure_model_load_buffer(png, sizeof png, NULL, &out), CONURE_E_FORMAT);
    ck_assert_ptr_eq(out, SENT);
    free(zeros);
    rm_tree(dir);
}
END_TEST

/* Loading through read() (a FIFO cannot be mapped).  The writer is a
 * thread, not a child process, so that valgrind's leak check (CK_FORK=no)
 * sees only the test itself. */
typedef struct fifo_job {
    const char *path;
    const uint8_t *buf;
    size_t size, done;
} fifo_job;

static void *fifo_writer(void *arg)
{
    fifo_job *j = arg;
    int fd = open(j->path, O_WRONLY);
    while (fd >= 0 && j->done < j->size) {
        size_t chunk = j->size - j->done < 1000 ? j->size - j->done : 1000;  /* short reads */
        ssize_t k = write(fd, j->buf + j->done, chunk);
        if (k <= 0)
            break;
        j->done += (size_t)k;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

START_TEST(load_from_fifo)
{
    conure_model *m = trained_model(2, -1);
    size_t size = 0;
    uint8_t *buf = save_buf(m, CONURE_SAVE_OPTIMIZER, &size);
    char *dir = temp_dir();
    char p[4300];
    snprintf(p, sizeof p, "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    fifo_job job = {p, buf, size, 0};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, fifo_writer, &job), 0);
    conure_model *a = NULL;
    conure_status st = conure_model_load(p, NULL, &a);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    OK(st);
    ck_assert_uint_eq(job.done, size);
    OK(conure_model_set_int(a, "eval_unfinished", 1));
    assert_same_scores(m, a);
    assert_same_state(m, a, 1);
    conure_model_free(a);
    unlink(p);
    rm_tree(dir);
    free(buf);
    conure_model_free(m);
}
END_TEST

/* Writer with test knobs (io/io.h) into a new buffer. */
typedef struct membuf {
    uint8_t *p;
    size_t pos, cap;
} membuf;

static conure_status membuf_write(void *ctx, const void *data, size_t len)
{
    membuf *b = ctx;
    ck_assert_uint_le(len, b->cap - b->pos);
    memcpy(b->p + b->pos, data, len);
    b->pos += len;
    return CONURE_OK;
}

static uint8_t *serialize_with(const conure_model *m, uint32_t flags, const cn_io_write_opts *wo,
                               size_t *size)
{
    size_t n = 0;
    OK(cn_model_serialize_ex(m, flags, wo, NULL, &n));
    membuf b = {malloc(n), 0, n};
    ck_assert_ptr_nonnull(b.p);
    cn_io_sink sink = {membuf_write, &b};
    size_t again = 0;
    OK(cn_model_serialize_ex(m, flags, wo, &sink, &again));
    ck_assert_uint_eq(again, n);
    ck_assert_uint_eq(b.pos, n);
    *size = n;
    return b.p;
}

static void expect_status(const uint8_t *buf, size_t size, conure_status want,
                          const char *needle)
{
    conure_model *out = SENT;
    conure_status st = conure_model_load_buffer(buf, size, NULL, &out);
    ck_assert_msg(st == want, "status %d (%s), expected %d; \"%s\"", (int)st,
                  conure_status_string(st), (int)want, conure_last_error());
    ck_assert_ptr_eq(out, SENT);
    if (needle)
        ck_assert_msg(strstr(conure_last_error(), needle) != NULL, "\"%s\" lacks \"%s\"",
                      conure_last_error(), needle);
}

START_TEST(versions)
{
    conure_model *m = trained_model(2, -1);
    size_t size = 0;
    uint8_t *buf = save_buf(m, CONURE_SAVE_OPTIMIZER, &size);

    /* a newer major stamped by hand (checksums then stale: the version is
     * checked first, so the message is about the version) */
    buf[8] = 2;
    expect_status(buf, size, CONURE_E_VERSION, "2.0 is newer");
    buf[8] = 1;
    /* newer and older majors written with valid checksums */
    cn_io_write_opts wo = {-1, 2, NULL, 0};
    size_t n = 0;
    uint8_t *b = serialize_with(m, CONURE_SAVE_OPTIMIZER, &wo, &n);
    expect_status(b, n, CONURE_E_VERSION, "upgrade libconure");
    free(b);
    wo.major = 0;
    b = serialize_with(m, 0, &wo, &n);
    expect_status(b, n, CONURE_E_VERSION, "not supported");
    free(b);

    /* the writer's own stamp is the current version, and knobs off = plain */
    wo = (cn_io_write_opts){-1, -1, NULL, 0};
    b = serialize_with(m, CONURE_SAVE_OPTIMIZER, &wo, &n);
    ck_assert(n == size && memcmp(b, buf, n) == 0);
    ck_assert_int_eq(buf[8] | buf[9] << 8, CN_FILE_MAJOR);
    ck_assert_int_eq(buf[10] | buf[11] << 8, CN_FILE_MINOR);
    free(b);

    /* a newer minor with unknown optional sections (odd length, empty) loads
     * and behaves identically; so does the current minor with one */
    static const char extra_data[] = "future data";
    cn_io_extra_section extra[2] = {
        {CN_TAG('X', 'T', 'R', 'A'), 0, extra_data, sizeof extra_data},
        {CN_TAG('N', 'I', 'L', '0'), 0, NULL, 0},
    };
    for (int minor = CN_FILE_MINOR; minor <= CN_FILE_MINOR + 1; minor++) {
        wo = (cn_io_write_opts){minor, -1, extra, 2};
        b = serialize_with(m, CONURE_SAVE_OPTIMIZER, &wo, &n);
        ck_assert_uint_gt(n, size);
        conure_model *a = load_ok(b, n);
        assert_same_scores(m, a);
        assert_same_state(m, a, 1);
        conure_model_free(a);
        /* unknown sections are still checksummed */
        uint8_t *hit = memmem(b, n, extra_data, sizeof extra_data);
        ck_assert_ptr_nonnull(hit);
        hit[3] ^= 1;
        expect_status(b, n, CONURE_E_FORMAT, "'XTRA' checksum");
        free(b);
    }
    /* an unknown required section is refused as a version problem */
    extra[0].flags = CN_SEC_F_REQUIRED;
    extra[0].tag = CN_TAG('N', 'E', 'E', 'D');
    wo = (cn_io_write_opts){CN_FILE_MINOR + 1, -1, extra, 1};
    b = serialize_with(m, 0, &wo, &n);
    expect_status(b, n, CONURE_E_VERSION, "'NEED'");
    free(b);

    free(buf);
    conure_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("io");
    TCase *tc = tcase_create("roundtrip");
    tcase_add_test(tc, roundtrip_buffer_and_file);
    tcase_add_test(tc, roundtrip_variants);
    tcase_add_test(tc, resume_exactly);
    suite_add_tcase(s, tc);
    tc = tcase_create("robustness");
    tcase_add_test(tc, truncation_and_corruption);
    tcase_add_test(tc, messages_name_the_defect);
    tcase_add_test(tc, semantic_checks);
    tcase_add_test(tc, metadata_sweep_with_valid_checksums);
    tcase_add_test(tc, foreign_files);
    tcase_add_test(tc, versions);
    suite_add_tcase(s, tc);
    tc = tcase_create("files");
    tcase_add_test(tc, crash_during_save);
    tcase_add_test(tc, save_file_modes);
    tcase_add_test(tc, load_from_fifo);
    tcase_add_test(tc, load_shares_file_pages);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
