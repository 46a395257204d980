/* Writes the fuzz seed corpus: a few tiny valid model files in every state
 * the format knows (no tasks; next-item dense, retrain, done; a later task
 * in progress; finetune mode; with and without optimizer state; a newer
 * minor version with an unknown optional section) and truncated copies.
 * Usage: gen_corpus DIR.  Deterministic: the same bytes every run. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conure/conure.h"
#include "io/io.h"

static const char *dir;

static void die(const char *what)
{
    fprintf(stderr, "gen_corpus: %s: %s\n", what, conure_last_error());
    exit(1);
}

static void put(const char *name, const void *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        exit(1);
    }
}

static conure_model *tiny(const char *mode)
{
    conure_options *o = NULL;
    conure_model *m = NULL;
    if (conure_options_create(&o) || conure_options_set_int(o, "vocab_size", 6) ||
        conure_options_set_int(o, "channels", 2) || conure_options_set_int(o, "kernel_width", 2) ||
        conure_options_set_int(o, "max_len", 8) || conure_options_set_string(o, "dilations", "1") ||
        conure_options_set_string(o, "training_mode", mode) || conure_model_create(o, &m))
        die("create");
    conure_options_free(o);
    return m;
}

static void train(conure_model *m, int32_t task, int steps)
{
    static const int32_t items[2 * 4] = {0, 1, 2, 3, 2, 3, 4, 5};
    static const int32_t targets[2] = {0, 1};
    int32_t kind = 0;
    if (conure_model_task_info(m, task, &kind, NULL, NULL))
        die("task_info");
    for (int i = 0; i < steps; i++)
        if (conure_model_train_step(m, task, items, 2, 4,
                                    kind == CONURE_TASK_NEXT_ITEM ? NULL : targets, NULL))
            die("train");
}

static conure_status mem_write(void *ctx, const void *data, size_t len)
{
    uint8_t **p = ctx;
    memcpy(*p, data, len);
    *p += len;
    return CONURE_OK;
}

/* Saves m as NAME (flags), plus NAME.half truncated to half its size. */
static void emit(const conure_model *m, const char *name, uint32_t flags,
                 const cn_io_write_opts *wo)
{
    size_t n = 0;
    if (cn_model_serialize_ex(m, flags, wo, NULL, &n))
        die("size");
    uint8_t *buf = malloc(n), *at = buf;
    cn_io_sink sink = {mem_write, &at};
    if (!buf || cn_model_serialize_ex(m, flags, wo, &sink, &n))
        die("serialize");
    put(name, buf, n);
    char half[256];
    snprintf(half, sizeof half, "%s.half", name);
    put(half, buf, n / 2);
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 2;
    }
    dir = argv[1];
    int32_t id = 0;
    conure_model *m = tiny("conure");
    emit(m, "empty.cnm", 0, NULL);
    if (conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, 6, NULL, &id))
        die("add_task");
    train(m, id, 2);
    emit(m, "t1-dense.cnm", 0, NULL);
    emit(m, "t1-dense-opt.cnm", CONURE_SAVE_OPTIMIZER, NULL);
    if (conure_model_prune(m, id))
        die("prune");
    train(m, id, 1);
    emit(m, "t1-retrain-opt.cnm", CONURE_SAVE_OPTIMIZER, NULL);
    if (conure_model_finish_task(m, id))
        die("finish");
    emit(m, "t1-done.cnm", 0, NULL);
    if (conure_model_add_task(m, CONURE_TASK_ITEM_REC, 3, NULL, &id))
        die("add_task 2");
    train(m, id, 2);
    emit(m, "t2-dense-opt.cnm", CONURE_SAVE_OPTIMIZER, NULL);
    static const char future[] = "from a later minor version";
    cn_io_extra_section extra = {CN_TAG('X', 'T', 'R', 'A'), 0, future, sizeof future};
    cn_io_write_opts wo = {CN_FILE_MINOR + 1, -1, &extra, 1};
    emit(m, "t2-newer-minor.cnm", 0, &wo);
    conure_model_free(m);

    m = tiny("finetune");
    if (conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, 6, NULL, &id))
        die("add_task ft");
    train(m, id, 1);
    if (conure_model_finish_task(m, id))
        die("finish ft");
    if (conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, 2, NULL, &id))
        die("add_task ft 2");
    train(m, id, 1);
    emit(m, "finetune-cls-opt.cnm", CONURE_SAVE_OPTIMIZER, NULL);
    conure_model_free(m);
    return 0;
}
