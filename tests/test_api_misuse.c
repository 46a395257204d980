/* Check suite 'api_misuse': every public entry point called with NULL
 * pointers, out-of-range numbers, unknown keys and flags, too-small buffers,
 * garbage model data and calls in the wrong phase.  Uses only the public
 * headers and links libconure.so.
 *
 * For every failure it asserts, from the doc comments of conure.h and
 * conure_backend.h:
 *   - the documented status code;
 *   - conure_last_error() starts with the function's name without "conure_"
 *     (a "model_" prefix may also be dropped: "train_step: ...") and names
 *     the offending argument (or the element, "items[1][3]");
 *   - for calls on a model, conure_model_last_error() returns the same text;
 *   - outputs are untouched (they are pre-filled with sentinels).
 * Models are tiny (vocab 20, 8 channels, dilations "1,2") so it runs in
 * seconds. */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <conure/conure.h>
#include <conure/conure_backend.h>

#include "testutil.h"

#define V 20       /* vocab_size: items 1..19, 0 is padding */
#define C 8        /* channels */
#define K 3        /* kernel_width (default) */
#define MAXLEN 16  /* max_len */
#define NCONV 4    /* 2 blocks ("1,2") x 2 convs */
#define SEQ 6
#define BATCH 2

/* Two valid rows, left-padded. */
static const int32_t ITEMS[BATCH * SEQ] = {0, 1, 2, 3, 4, 5,
                                           0, 0, 6, 7, 8, 9};

/* ------------------------------------------------------------ helpers --- */

#define OK(call)                                                                      \
    do {                                                                              \
        conure_status st_ = (call);                                                   \
        ck_assert_msg(st_ == CONURE_OK, "%s -> %d (%s): %s", #call, (int)st_,         \
                      conure_status_string(st_), conure_last_error());                \
    } while (0)

/* Name of the function called in `call_text` ("conure_model_prune(m, 1)" ->
 * "model_prune"). */
static void called_name(const char *call_text, char *fn, size_t cap)
{
    const char *p = call_text;
    while (*p == ' ' || *p == '(')
        p++;
    if (strncmp(p, "conure_", 7) == 0)
        p += 7;
    size_t n = strcspn(p, "( ");
    if (n >= cap)
        n = cap - 1;
    memcpy(fn, p, n);
    fn[n] = '\0';
}

static int starts_with_fn(const char *msg, const char *fn)
{
    size_t n = strlen(fn);
    return strncmp(msg, fn, n) == 0 && msg[n] == ':';
}

static void expect_fail_(const char *file, int line, const char *call_text, conure_status got,
                         conure_status want, const char *needle, const conure_model *m)
{
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", conure_last_error()); /* copy before any other call */
    ck_assert_msg(got == want, "%s:%d: %s returned %d (%s), expected %d (%s); message \"%s\"",
                  file, line, call_text, (int)got, conure_status_string(got), (int)want,
                  conure_status_string(want), msg);
    ck_assert_msg(msg[0] != '\0', "%s:%d: %s failed with an empty conure_last_error()", file,
                  line, call_text);
    char fn[96];
    called_name(call_text, fn, sizeof fn);
    int prefix_ok = starts_with_fn(msg, fn) ||
                    (strncmp(fn, "model_", 6) == 0 && starts_with_fn(msg, fn + 6));
    ck_assert_msg(prefix_ok, "%s:%d: message \"%s\" does not start with \"%s: \"", file, line,
                  msg, fn);
    if (needle)
        ck_assert_msg(strstr(msg, needle) != NULL,
                      "%s:%d: %s: message \"%s\" does not name \"%s\"", file, line, call_text,
                      msg, needle);
    if (m) {
        char mmsg[2048];
        size_t n = conure_model_last_error(m, mmsg, sizeof mmsg);
        ck_assert_msg(strcmp(mmsg, msg) == 0,
                      "%s:%d: conure_model_last_error() = \"%s\" but conure_last_error() = "
                      "\"%s\"", file, line, mmsg, msg);
        ck_assert_msg(n == strlen(msg), "%s:%d: conure_model_last_error() returned %zu, not %zu",
                      file, line, n, strlen(msg));
    }
}

/* A failing call not on a model. */
#define EXPECT_FAIL(call, want, needle) \
    expect_fail_(__FILE__, __LINE__, #call, (call), (want), (needle), NULL)
/* A failing call on model m (also checks conure_model_last_error). */
#define EXPECT_MFAIL(m, call, want, needle) \
    expect_fail_(__FILE__, __LINE__, #call, (call), (want), (needle), (m))

#define SENT_BYTE 0x5a
static void fill_sentinel(void *p, size_t bytes)
{
    memset(p, SENT_BYTE, bytes);
}
static int is_sentinel(const void *p, size_t bytes)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < bytes; i++)
        if (c[i] != SENT_BYTE)
            return 0;
    return 1;
}
#define ASSERT_UNTOUCHED(p, bytes) \
    ck_assert_msg(is_sentinel((p), (bytes)), "output %s was written on failure", #p)

static conure_options *model_options(const char *mode)
{
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    OK(conure_options_set_int(o, "vocab_size", V));
    OK(conure_options_set_int(o, "channels", C));
    OK(conure_options_set_int(o, "max_len", MAXLEN));
    OK(conure_options_set_int(o, "seed", 7));
    OK(conure_options_set_int(o, "threads", 1));
    OK(conure_options_set_string(o, "dilations", "1,2"));
    OK(conure_options_set_string(o, "training_mode", mode));
    return o;
}

static conure_model *new_model(const char *mode)
{
    conure_options *o = model_options(mode);
    conure_model *m = NULL;
    OK(conure_model_create(o, &m));
    ck_assert_ptr_nonnull(m);
    conure_options_free(o);
    return m;
}

static int32_t add_next_item(conure_model *m, const conure_options *task_opts)
{
    int32_t id = -1;
    OK(conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, task_opts, &id));
    return id;
}

static int32_t add_task(conure_model *m, conure_task_kind kind, int32_t n_targets)
{
    int32_t id = -1;
    OK(conure_model_add_task(m, kind, n_targets, NULL, &id));
    return id;
}

static void train_steps(conure_model *m, int32_t task, int steps)
{
    int32_t kind = 0;
    OK(conure_model_task_info(m, task, &kind, NULL, NULL));
    int32_t targets[BATCH] = {1, 0};
    for (int s = 0; s < steps; s++) {
        float loss = NAN;
        OK(conure_model_train_step(m, task, ITEMS, BATCH, SEQ,
                                   kind == CONURE_TASK_NEXT_ITEM ? NULL : targets, &loss));
        ck_assert_msg(isfinite(loss), "loss %g", (double)loss);
    }
}

/* Model in conure mode with task 1 (next-item) trained, pruned, retrained
 * and finished. */
static conure_model *model_with_done_t1(void)
{
    conure_model *m = new_model("conure");
    int32_t t = add_next_item(m, NULL);
    ck_assert_int_eq(t, 1);
    train_steps(m, 1, 2);
    OK(conure_model_prune(m, 1));
    train_steps(m, 1, 1);
    OK(conure_model_finish_task(m, 1));
    return m;
}

static const int32_t BAD_TASKS[] = {0, -1, 99, INT32_MIN, INT32_MAX};
#define N_BAD_TASKS (sizeof BAD_TASKS / sizeof BAD_TASKS[0])

/* ------------------------------------------------- status and version --- */

START_TEST(status_strings)
{
    const char *unknown = conure_status_string((conure_status)-1);
    ck_assert_ptr_nonnull(unknown);
    ck_assert_str_eq(unknown, "unknown status");
    ck_assert_str_eq(conure_status_string((conure_status)14), "unknown status");
    ck_assert_str_eq(conure_status_string((conure_status)1000), "unknown status");
    ck_assert_str_eq(conure_status_string((conure_status)INT32_MIN), "unknown status");
    for (int s = CONURE_OK; s <= CONURE_E_INTERNAL; s++) {
        const char *t = conure_status_string((conure_status)s);
        ck_assert_ptr_nonnull(t);
        ck_assert_msg(t[0] != '\0', "status %d has empty text", s);
        ck_assert_msg(strcmp(t, "unknown status") != 0, "status %d has no text", s);
        for (int r = CONURE_OK; r < s; r++)
            ck_assert_msg(strcmp(t, conure_status_string((conure_status)r)) != 0,
                          "statuses %d and %d share the text \"%s\"", r, s, t);
    }
}
END_TEST

START_TEST(version_matches_header)
{
    ck_assert_str_eq(conure_version_string(), CONURE_VERSION_STRING);
    ck_assert_uint_eq(conure_version_number(), CONURE_VERSION_NUMBER);
    ck_assert_uint_eq(conure_version_number(), CONURE_VERSION_MAJOR * 10000u +
                                                   CONURE_VERSION_MINOR * 100u +
                                                   CONURE_VERSION_PATCH);
}
END_TEST

typedef struct thread_probe {
    char before[512];
    char after[512];
} thread_probe;

static void *probe_thread(void *arg)
{
    thread_probe *p = arg;
    snprintf(p->before, sizeof p->before, "%s", conure_last_error());
    conure_options_set_int(NULL, "channels", 8);
    snprintf(p->after, sizeof p->after, "%s", conure_last_error());
    return NULL;
}

START_TEST(last_error_is_thread_local)
{
    EXPECT_FAIL(conure_options_create(NULL), CONURE_E_NULL_ARG, "out");
    char mine[512];
    snprintf(mine, sizeof mine, "%s", conure_last_error());

    thread_probe p;
    memset(&p, 0, sizeof p);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, probe_thread, &p), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_msg(p.before[0] == '\0', "a new thread sees \"%s\" before any failure", p.before);
    ck_assert_msg(strstr(p.after, "options") != NULL, "thread error \"%s\"", p.after);
    ck_assert_str_eq(conure_last_error(), mine);
}
END_TEST

START_TEST(free_null_is_noop)
{
    conure_options_free(NULL);
    conure_model_free(NULL);
}
END_TEST

/* -------------------------------------------------------------- options --- */

START_TEST(options_null_args)
{
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    EXPECT_FAIL(conure_options_create(NULL), CONURE_E_NULL_ARG, "out");
    EXPECT_FAIL(conure_options_set_int(NULL, "channels", 8), CONURE_E_NULL_ARG, "options");
    EXPECT_FAIL(conure_options_set_int(o, NULL, 8), CONURE_E_NULL_ARG, "key");
    EXPECT_FAIL(conure_options_set_float(NULL, "lr", 0.1), CONURE_E_NULL_ARG, "options");
    EXPECT_FAIL(conure_options_set_float(o, NULL, 0.1), CONURE_E_NULL_ARG, "key");
    EXPECT_FAIL(conure_options_set_string(NULL, "dilations", "1"), CONURE_E_NULL_ARG, "options");
    EXPECT_FAIL(conure_options_set_string(o, NULL, "1"), CONURE_E_NULL_ARG, "key");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", NULL), CONURE_E_NULL_ARG, "value");
    conure_options_free(o);
}
END_TEST

START_TEST(options_unknown_keys_and_wrong_types)
{
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    EXPECT_FAIL(conure_options_set_int(o, "no_such_key", 1), CONURE_E_INVALID_ARG, "key");
    EXPECT_FAIL(conure_options_set_int(o, "", 1), CONURE_E_INVALID_ARG, "key");
    EXPECT_FAIL(conure_options_set_int(o, "Channels", 8), CONURE_E_INVALID_ARG, "key");
    EXPECT_FAIL(conure_options_set_float(o, "no_such_key", 1), CONURE_E_INVALID_ARG, "key");
    EXPECT_FAIL(conure_options_set_string(o, "no_such_key", "1"), CONURE_E_INVALID_ARG, "key");
    /* integer setter on real and text keys, real setter on integer and text keys */
    EXPECT_FAIL(conure_options_set_int(o, "lr", 1), CONURE_E_INVALID_ARG, "lr");
    EXPECT_FAIL(conure_options_set_int(o, "init_std", 1), CONURE_E_INVALID_ARG, "init_std");
    EXPECT_FAIL(conure_options_set_int(o, "dilations", 1), CONURE_E_INVALID_ARG, "dilations");
    EXPECT_FAIL(conure_options_set_int(o, "backend", 1), CONURE_E_INVALID_ARG, "backend");
    EXPECT_FAIL(conure_options_set_float(o, "channels", 8.0), CONURE_E_INVALID_ARG, "channels");
    EXPECT_FAIL(conure_options_set_float(o, "vocab_size", 20.0), CONURE_E_INVALID_ARG,
                "vocab_size");
    EXPECT_FAIL(conure_options_set_float(o, "loss", 1.0), CONURE_E_INVALID_ARG, "loss");
    EXPECT_FAIL(conure_options_set_float(o, "training_mode", 0.0), CONURE_E_INVALID_ARG,
                "training_mode");
    conure_options_free(o);
}
END_TEST

START_TEST(options_int_ranges)
{
    static const struct {
        const char *key;
        int64_t bad;
    } cases[] = {
        {"vocab_size", 1}, {"vocab_size", 0}, {"vocab_size", -5},
        {"vocab_size", INT64_C(2147483648)}, {"channels", 0}, {"channels", 4097},
        {"channels", -1}, {"kernel_width", 0}, {"kernel_width", 17}, {"max_len", 1},
        {"max_len", 65537}, {"seed", -1}, {"seed", INT64_MIN}, {"threads", -1},
        {"threads", 1025}, {"negatives", -1}, {"negatives", INT64_C(2147483648)},
    };
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        EXPECT_FAIL(conure_options_set_int(o, cases[i].key, cases[i].bad), CONURE_E_OUT_OF_RANGE,
                    cases[i].key);
    /* the ends of each range are accepted */
    OK(conure_options_set_int(o, "vocab_size", 2));
    OK(conure_options_set_int(o, "vocab_size", INT64_C(2147483647)));
    OK(conure_options_set_int(o, "channels", 1));
    OK(conure_options_set_int(o, "channels", 4096));
    OK(conure_options_set_int(o, "kernel_width", 16));
    OK(conure_options_set_int(o, "max_len", 65536));
    OK(conure_options_set_int(o, "seed", INT64_MAX));
    OK(conure_options_set_int(o, "threads", 0));
    OK(conure_options_set_int(o, "threads", 1024));
    OK(conure_options_set_int(o, "negatives", 0));
    conure_options_free(o);
}
END_TEST

START_TEST(options_float_ranges)
{
    static const struct {
        const char *key;
        double bad;
    } cases[] = {
        {"lr", 0.0}, {"lr", -1e-3}, {"lr", 1.5}, {"l2", -0.1}, {"l2", 10.5},
        {"rho", 0.0}, {"rho", 10.01}, {"release_ratio", 1.0}, {"release_ratio", -0.1},
        {"adam_beta1", 1.0}, {"adam_beta1", -0.5}, {"adam_beta2", 1.0}, {"adam_eps", 0.0},
        {"adam_eps", 2.0}, {"init_std", 0.0}, {"init_std", 1.5},
        /* values that would round to a forbidden float (1.0f or 0.0f) */
        {"adam_beta1", 0.99999999}, {"adam_beta2", 0.99999999}, {"adam_eps", 1e-50},
        {"lr", 1e-50}, {"rho", 1e-50}, {"init_std", 1e-50},
    };
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        EXPECT_FAIL(conure_options_set_float(o, cases[i].key, cases[i].bad),
                    CONURE_E_OUT_OF_RANGE, cases[i].key);
    /* not finite */
    EXPECT_FAIL(conure_options_set_float(o, "lr", NAN), CONURE_E_OUT_OF_RANGE, "lr");
    EXPECT_FAIL(conure_options_set_float(o, "l2", INFINITY), CONURE_E_OUT_OF_RANGE, "l2");
    EXPECT_FAIL(conure_options_set_float(o, "init_std", -INFINITY), CONURE_E_OUT_OF_RANGE,
                "init_std");
    OK(conure_options_set_float(o, "lr", 1.0));
    OK(conure_options_set_float(o, "l2", 0.0));
    OK(conure_options_set_float(o, "l2", 10.0));
    OK(conure_options_set_float(o, "release_ratio", 0.0));
    OK(conure_options_set_float(o, "adam_beta1", 0.0));
    OK(conure_options_set_float(o, "adam_eps", 1.0));
    OK(conure_options_set_float(o, "init_std", 1.0));
    conure_options_free(o);
}
END_TEST

START_TEST(options_string_values)
{
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    /* numbers as text: parsed in full, trailing garbage is an error */
    EXPECT_FAIL(conure_options_set_string(o, "channels", "12abc"), CONURE_E_INVALID_ARG,
                "channels");
    EXPECT_FAIL(conure_options_set_string(o, "channels", ""), CONURE_E_INVALID_ARG, "channels");
    EXPECT_FAIL(conure_options_set_string(o, "channels", "eight"), CONURE_E_INVALID_ARG,
                "channels");
    EXPECT_FAIL(conure_options_set_string(o, "lr", "1e-3x"), CONURE_E_INVALID_ARG, "lr");
    EXPECT_FAIL(conure_options_set_string(o, "lr", ""), CONURE_E_INVALID_ARG, "lr");
    EXPECT_FAIL(conure_options_set_string(o, "channels", "0"), CONURE_E_OUT_OF_RANGE,
                "channels");
    EXPECT_FAIL(conure_options_set_string(o, "channels", "4097"), CONURE_E_OUT_OF_RANGE,
                "channels");
    EXPECT_FAIL(conure_options_set_string(o, "lr", "2.5"), CONURE_E_OUT_OF_RANGE, "lr");
    EXPECT_FAIL(conure_options_set_string(o, "lr", "nan"), CONURE_E_OUT_OF_RANGE, "lr");
    EXPECT_FAIL(conure_options_set_string(o, "l2", "inf"), CONURE_E_OUT_OF_RANGE, "l2");
    /* dilations */
    EXPECT_FAIL(conure_options_set_string(o, "dilations", ""), CONURE_E_INVALID_ARG,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "1,,2"), CONURE_E_INVALID_ARG,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "1,2,"), CONURE_E_INVALID_ARG,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "a"), CONURE_E_INVALID_ARG,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "1;2"), CONURE_E_INVALID_ARG,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "-1"), CONURE_E_INVALID_ARG,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "0"), CONURE_E_OUT_OF_RANGE,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "1,4097"), CONURE_E_OUT_OF_RANGE,
                "dilations");
    char many[65 * 2 + 1];
    for (int i = 0; i < 65; i++) {
        many[2 * i] = '1';
        many[2 * i + 1] = ',';
    }
    many[65 * 2 - 1] = '\0'; /* 65 blocks: one too many */
    EXPECT_FAIL(conure_options_set_string(o, "dilations", many), CONURE_E_OUT_OF_RANGE,
                "dilations");
    many[64 * 2 - 1] = '\0'; /* 64 blocks: the maximum */
    OK(conure_options_set_string(o, "dilations", many));
    /* choices */
    EXPECT_FAIL(conure_options_set_string(o, "block_order", "sideways"), CONURE_E_INVALID_ARG,
                "block_order");
    EXPECT_FAIL(conure_options_set_string(o, "block_order", ""), CONURE_E_INVALID_ARG,
                "block_order");
    EXPECT_FAIL(conure_options_set_string(o, "training_mode", "Conure"), CONURE_E_INVALID_ARG,
                "training_mode");
    EXPECT_FAIL(conure_options_set_string(o, "loss", "hinge"), CONURE_E_INVALID_ARG, "loss");
    EXPECT_FAIL(conure_options_set_string(o, "backend", ""), CONURE_E_INVALID_ARG, "backend");
    OK(conure_options_set_string(o, "block_order", "post_norm"));
    OK(conure_options_set_string(o, "training_mode", "finetune"));
    OK(conure_options_set_string(o, "loss", "bpr"));
    OK(conure_options_set_string(o, "channels", "16"));
    OK(conure_options_set_string(o, "lr", "0.5"));
    conure_options_free(o);
}
END_TEST

/* A failed setter leaves the handle as it was: the value set before stays,
 * and a key never set successfully stays unset. */
START_TEST(options_failed_set_keeps_old_value)
{
    conure_options *o = model_options("conure");
    EXPECT_FAIL(conure_options_set_int(o, "channels", 0), CONURE_E_OUT_OF_RANGE, "channels");
    EXPECT_FAIL(conure_options_set_string(o, "channels", "9x"), CONURE_E_INVALID_ARG,
                "channels");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "1,0"), CONURE_E_OUT_OF_RANGE,
                "dilations");
    EXPECT_FAIL(conure_options_set_string(o, "dilations", "2,x"), CONURE_E_INVALID_ARG,
                "dilations");
    conure_model *m = NULL;
    OK(conure_model_create(o, &m));
    int64_t v = 0;
    OK(conure_model_get_int(m, "channels", &v));
    ck_assert_int_eq(v, C);
    OK(conure_model_get_int(m, "n_blocks", &v));
    ck_assert_int_eq(v, 2);
    conure_model_free(m);
    conure_options_free(o);

    OK(conure_options_create(&o));
    EXPECT_FAIL(conure_options_set_int(o, "vocab_size", 1), CONURE_E_OUT_OF_RANGE, "vocab_size");
    EXPECT_FAIL(conure_options_set_string(o, "vocab_size", "abc"), CONURE_E_INVALID_ARG,
                "vocab_size");
    m = NULL;
    EXPECT_FAIL(conure_model_create(o, &m), CONURE_E_INVALID_ARG, "vocab_size");
    ck_assert_ptr_null(m);
    conure_options_free(o);
}
END_TEST

/* ------------------------------------------------------------ creation --- */

START_TEST(create_errors)
{
    conure_model *const SENT = (conure_model *)(uintptr_t)0x5a5a5a5a;
    conure_model *m = SENT;
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    EXPECT_FAIL(conure_model_create(NULL, &m), CONURE_E_NULL_ARG, "options");
    ck_assert_ptr_eq(m, SENT);
    EXPECT_FAIL(conure_model_create(o, NULL), CONURE_E_NULL_ARG, "out");
    /* vocab_size is required */
    EXPECT_FAIL(conure_model_create(o, &m), CONURE_E_INVALID_ARG, "vocab_size");
    ck_assert_ptr_eq(m, SENT);
    conure_options_free(o);

    /* task keys are rejected */
    static const char *task_float_keys[] = {"lr", "l2", "rho", "release_ratio", "adam_beta1",
                                            "adam_beta2", "adam_eps"};
    for (size_t i = 0; i < sizeof task_float_keys / sizeof task_float_keys[0]; i++) {
        o = model_options("conure");
        OK(conure_options_set_float(o, task_float_keys[i], 0.5));
        EXPECT_FAIL(conure_model_create(o, &m), CONURE_E_INVALID_ARG, task_float_keys[i]);
        ck_assert_ptr_eq(m, SENT);
        conure_options_free(o);
    }
    o = model_options("conure");
    OK(conure_options_set_int(o, "negatives", 3));
    EXPECT_FAIL(conure_model_create(o, &m), CONURE_E_INVALID_ARG, "negatives");
    conure_options_free(o);
    o = model_options("conure");
    OK(conure_options_set_string(o, "loss", "softmax"));
    EXPECT_FAIL(conure_model_create(o, &m), CONURE_E_INVALID_ARG, "loss");
    conure_options_free(o);

    /* unknown backend */
    o = model_options("conure");
    OK(conure_options_set_string(o, "backend", "no_such_backend"));
    EXPECT_FAIL(conure_model_create(o, &m), CONURE_E_BACKEND, "no_such_backend");
    ck_assert_ptr_eq(m, SENT);
    conure_options_free(o);
}
END_TEST

/* The options handle is not retained: freeing it right after create is fine. */
START_TEST(create_does_not_retain_options)
{
    conure_options *o = model_options("conure");
    conure_model *m = NULL;
    OK(conure_model_create(o, &m));
    conure_options_free(o);
    int64_t v = 0;
    OK(conure_model_get_int(m, "vocab_size", &v));
    ck_assert_int_eq(v, V);
    conure_model_free(m);
}
END_TEST

/* ------------------------------------------------------------- add_task --- */

START_TEST(add_task_errors)
{
    conure_model *m = new_model("conure");
    int32_t id = -7;
    EXPECT_FAIL(conure_model_add_task(NULL, CONURE_TASK_NEXT_ITEM, V, NULL, &id),
                CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, NULL, NULL),
                 CONURE_E_NULL_ARG, "task_id");
    /* unknown kind */
    EXPECT_MFAIL(m, conure_model_add_task(m, (conure_task_kind)0, V, NULL, &id),
                 CONURE_E_INVALID_ARG, "kind");
    EXPECT_MFAIL(m, conure_model_add_task(m, (conure_task_kind)4, V, NULL, &id),
                 CONURE_E_INVALID_ARG, "kind");
    EXPECT_MFAIL(m, conure_model_add_task(m, (conure_task_kind)-1, V, NULL, &id),
                 CONURE_E_INVALID_ARG, "kind");
    /* n_targets */
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V - 1, NULL, &id),
                 CONURE_E_OUT_OF_RANGE, "n_targets");
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V + 1, NULL, &id),
                 CONURE_E_OUT_OF_RANGE, "n_targets");
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_ITEM_REC, 1, NULL, &id),
                 CONURE_E_OUT_OF_RANGE, "n_targets");
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_ITEM_REC, 0, NULL, &id),
                 CONURE_E_OUT_OF_RANGE, "n_targets");
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, 1, NULL, &id),
                 CONURE_E_OUT_OF_RANGE, "n_targets");
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, -3, NULL, &id),
                 CONURE_E_OUT_OF_RANGE, "n_targets");
    ck_assert_int_eq(id, -7);

    /* options: a model key, a loss not valid for the kind */
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    OK(conure_options_set_int(o, "channels", 8));
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, o, &id),
                 CONURE_E_INVALID_ARG, "channels");
    conure_options_free(o);
    static const struct {
        conure_task_kind kind;
        int32_t n;
        const char *loss;
    } bad_loss[] = {
        {CONURE_TASK_NEXT_ITEM, V, "bpr"},
        {CONURE_TASK_NEXT_ITEM, V, "bce"},
        {CONURE_TASK_ITEM_REC, 30, "softmax"},
        {CONURE_TASK_ITEM_REC, 30, "sampled_softmax"},
        {CONURE_TASK_ITEM_REC, 30, "bce"},
        {CONURE_TASK_CLASSIFICATION, 3, "sampled_softmax"},
        {CONURE_TASK_CLASSIFICATION, 3, "bpr"},
    };
    for (size_t i = 0; i < sizeof bad_loss / sizeof bad_loss[0]; i++) {
        OK(conure_options_create(&o));
        OK(conure_options_set_string(o, "loss", bad_loss[i].loss));
        EXPECT_MFAIL(m, conure_model_add_task(m, bad_loss[i].kind, bad_loss[i].n, o, &id),
                     CONURE_E_INVALID_ARG, "loss");
        conure_options_free(o);
    }
    /* "negatives": 1 .. vocab_size-2 (0 = 20% of vocab_size); only the task
     * knows vocab_size, so add_task checks the upper end. */
    OK(conure_options_create(&o));
    OK(conure_options_set_int(o, "negatives", V - 1));
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_NEXT_ITEM, V, o, &id),
                 CONURE_E_OUT_OF_RANGE, "negatives");
    conure_options_free(o);
    ck_assert_int_eq(id, -7);

    /* options that cannot apply to the task are refused, not ignored */
    static const struct {
        conure_task_kind kind;
        int32_t n;
        const char *loss, *key;
    } stray[] = {
        {CONURE_TASK_NEXT_ITEM, V, "softmax", "negatives"},
        {CONURE_TASK_CLASSIFICATION, 3, "bce", "negatives"},
        {CONURE_TASK_CLASSIFICATION, 3, "bce", "rho"},
        {CONURE_TASK_NEXT_ITEM, V, "sampled_softmax", "rho"},
        {CONURE_TASK_NEXT_ITEM, V, "sampled_softmax", "l2"},
    };
    for (size_t i = 0; i < sizeof stray / sizeof stray[0]; i++) {
        OK(conure_options_create(&o));
        OK(conure_options_set_string(o, "loss", stray[i].loss));
        if (!strcmp(stray[i].key, "negatives"))
            OK(conure_options_set_int(o, "negatives", 3));
        else
            OK(conure_options_set_float(o, stray[i].key, 0.5));
        EXPECT_MFAIL(m, conure_model_add_task(m, stray[i].kind, stray[i].n, o, &id),
                     CONURE_E_INVALID_ARG, stray[i].key);
        conure_options_free(o);
    }
    ck_assert_int_eq(id, -7);

    int64_t n = -1;
    OK(conure_model_get_int(m, "n_tasks", &n));
    ck_assert_int_eq(n, 0);

    /* valid, then a second task while the first is not DONE */
    id = add_next_item(m, NULL);
    ck_assert_int_eq(id, 1);
    id = -7;
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, 3, NULL, &id),
                 CONURE_E_STATE, "task");
    ck_assert_int_eq(id, -7);
    OK(conure_model_prune(m, 1));
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, 3, NULL, &id),
                 CONURE_E_STATE, "task");
    OK(conure_model_finish_task(m, 1));
    id = add_task(m, CONURE_TASK_CLASSIFICATION, 3);
    ck_assert_int_eq(id, 2);
    conure_model_free(m);
}
END_TEST

/* release_ratio 0: task 1 keeps every conv weight, nothing is left. */
START_TEST(add_task_capacity)
{
    conure_model *m = new_model("conure");
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    OK(conure_options_set_float(o, "release_ratio", 0.0));
    add_next_item(m, o);
    conure_options_free(o);
    train_steps(m, 1, 1);
    OK(conure_model_prune(m, 1));
    OK(conure_model_finish_task(m, 1));
    int64_t counts[2] = {-1, -1};
    OK(conure_model_capacity(m, -1, counts, 2));
    ck_assert_int_eq(counts[0], 0);
    ck_assert_int_eq(counts[1], (int64_t)NCONV * K * C * C);
    int32_t id = -7;
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, 3, NULL, &id),
                 CONURE_E_CAPACITY, NULL);
    ck_assert_int_eq(id, -7);
    int64_t n = -1;
    OK(conure_model_get_int(m, "n_tasks", &n));
    ck_assert_int_eq(n, 1);
    conure_model_free(m);
}
END_TEST

/* At most 255 tasks (finetune mode: no capacity limit, DENSE -> DONE). */
START_TEST(add_task_limit)
{
    conure_model *m = new_model("finetune");
    for (int i = 1; i <= 255; i++) {
        int32_t id = add_task(m, CONURE_TASK_CLASSIFICATION, 2);
        ck_assert_int_eq(id, i);
        OK(conure_model_finish_task(m, id));
    }
    int32_t id = -7;
    EXPECT_MFAIL(m, conure_model_add_task(m, CONURE_TASK_CLASSIFICATION, 2, NULL, &id),
                 CONURE_E_STATE, "255");
    ck_assert_int_eq(id, -7);
    conure_model_free(m);
}
END_TEST

/* ------------------------------------------------------------ train_step --- */

START_TEST(train_step_errors)
{
    conure_model *m = new_model("conure");
    add_next_item(m, NULL);
    float loss;
    fill_sentinel(&loss, sizeof loss);
    EXPECT_FAIL(conure_model_train_step(NULL, 1, ITEMS, BATCH, SEQ, NULL, &loss),
                CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, NULL, BATCH, SEQ, NULL, &loss),
                 CONURE_E_NULL_ARG, "items");
    for (size_t i = 0; i < N_BAD_TASKS; i++)
        EXPECT_MFAIL(m, conure_model_train_step(m, BAD_TASKS[i], ITEMS, BATCH, SEQ, NULL, &loss),
                     CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_train_step(m, 2, ITEMS, BATCH, SEQ, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, 0, SEQ, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "batch");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, -1, SEQ, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "batch");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, 65537, SEQ, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "batch");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, BATCH, 1, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, BATCH, 0, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, BATCH, -4, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    int32_t long_items[MAXLEN + 1];
    for (int i = 0; i <= MAXLEN; i++)
        long_items[i] = 1 + i % (V - 1);
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, long_items, 1, MAXLEN + 1, NULL, &loss),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    OK(conure_model_train_step(m, 1, long_items, 1, MAXLEN, NULL, NULL)); /* the maximum */

    /* item ids outside [0, vocab_size): the message names the element */
    int32_t bad[BATCH * SEQ];
    static const int32_t bad_ids[] = {V, V + 1000, -1, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        memcpy(bad, ITEMS, sizeof bad);
        bad[1 * SEQ + 3] = bad_ids[i];
        EXPECT_MFAIL(m, conure_model_train_step(m, 1, bad, BATCH, SEQ, NULL, &loss),
                     CONURE_E_OUT_OF_RANGE, "items[1][3]");
    }
    /* next-item tasks take no targets */
    int32_t targets[BATCH] = {1, 2};
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, BATCH, SEQ, targets, &loss),
                 CONURE_E_INVALID_ARG, "targets");
    /* a batch whose every target position is padding */
    int32_t pads[BATCH * SEQ] = {0};
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, pads, BATCH, SEQ, NULL, &loss),
                 CONURE_E_INVALID_ARG, "items");
    ASSERT_UNTOUCHED(&loss, sizeof loss);
    conure_model_free(m);
}
END_TEST

START_TEST(train_step_targets)
{
    conure_model *m = model_with_done_t1();
    int32_t t = add_task(m, CONURE_TASK_CLASSIFICATION, 3);
    ck_assert_int_eq(t, 2);
    float loss;
    fill_sentinel(&loss, sizeof loss);
    EXPECT_MFAIL(m, conure_model_train_step(m, 2, ITEMS, BATCH, SEQ, NULL, &loss),
                 CONURE_E_NULL_ARG, "targets");
    static const int32_t bad_targets[] = {3, 100, -1, INT32_MIN};
    for (size_t i = 0; i < sizeof bad_targets / sizeof bad_targets[0]; i++) {
        int32_t targets[BATCH] = {0, bad_targets[i]};
        EXPECT_MFAIL(m, conure_model_train_step(m, 2, ITEMS, BATCH, SEQ, targets, &loss),
                     CONURE_E_OUT_OF_RANGE, "targets[1]");
    }
    /* other kinds accept seq_len 1 (a separator is appended) */
    int32_t one[BATCH] = {3, 4}, targets[BATCH] = {0, 2};
    OK(conure_model_train_step(m, 2, one, BATCH, 1, targets, NULL));
    EXPECT_MFAIL(m, conure_model_train_step(m, 2, one, BATCH, 0, targets, &loss),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    /* seq_len + separator must not overflow into a "valid" length */
    EXPECT_MFAIL(m, conure_model_train_step(m, 2, one, BATCH, INT32_MAX, targets, &loss),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    float sc2[BATCH * 3];
    OK(conure_model_set_int(m, "eval_unfinished", 1));
    EXPECT_MFAIL(m, conure_model_scores(m, 2, one, BATCH, INT32_MAX, sc2, BATCH * 3),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    OK(conure_model_set_int(m, "eval_unfinished", 0));
    /* the finished task 1 cannot be trained */
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, BATCH, SEQ, NULL, &loss),
                 CONURE_E_STATE, "task");
    ASSERT_UNTOUCHED(&loss, sizeof loss);
    conure_model_free(m);
}
END_TEST

/* "On any error the model is unchanged": a failing step (its last row is
 * bad) changes neither the weights nor the sampler state. */
START_TEST(train_step_error_changes_nothing)
{
    conure_model *a = new_model("conure");
    conure_model *b = new_model("conure");
    add_next_item(a, NULL);
    add_next_item(b, NULL);
    OK(conure_model_set_int(a, "eval_unfinished", 1));
    OK(conure_model_set_int(b, "eval_unfinished", 1));
    int32_t bad[BATCH * SEQ];
    memcpy(bad, ITEMS, sizeof bad);
    bad[BATCH * SEQ - 1] = V;

    float before[BATCH * V], after[BATCH * V];
    OK(conure_model_scores(a, 1, ITEMS, BATCH, SEQ, before, BATCH * V));
    EXPECT_MFAIL(a, conure_model_train_step(a, 1, bad, BATCH, SEQ, NULL, NULL),
                 CONURE_E_OUT_OF_RANGE, "items[1][5]");
    OK(conure_model_scores(a, 1, ITEMS, BATCH, SEQ, after, BATCH * V));
    ck_assert_msg(memcmp(before, after, sizeof before) == 0, "a failed step changed scores");

    /* then the same good steps on both: identical results */
    train_steps(a, 1, 3);
    train_steps(b, 1, 3);
    OK(conure_model_scores(a, 1, ITEMS, BATCH, SEQ, before, BATCH * V));
    OK(conure_model_scores(b, 1, ITEMS, BATCH, SEQ, after, BATCH * V));
    ck_assert_msg(memcmp(before, after, sizeof before) == 0,
                  "a failed step changed the state of later training");
    conure_model_free(a);
    conure_model_free(b);
}
END_TEST

/* -------------------------------------------------------------- phases --- */

START_TEST(phase_errors_conure)
{
    conure_model *m = new_model("conure");
    /* no tasks yet */
    EXPECT_MFAIL(m, conure_model_prune(m, 1), CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_finish_task(m, 1), CONURE_E_OUT_OF_RANGE, "task");
    add_next_item(m, NULL);
    EXPECT_FAIL(conure_model_prune(NULL, 1), CONURE_E_NULL_ARG, "model");
    EXPECT_FAIL(conure_model_finish_task(NULL, 1), CONURE_E_NULL_ARG, "model");
    for (size_t i = 0; i < N_BAD_TASKS; i++) {
        EXPECT_MFAIL(m, conure_model_prune(m, BAD_TASKS[i]), CONURE_E_OUT_OF_RANGE, "task");
        EXPECT_MFAIL(m, conure_model_finish_task(m, BAD_TASKS[i]), CONURE_E_OUT_OF_RANGE,
                     "task");
    }
    EXPECT_MFAIL(m, conure_model_prune(m, 2), CONURE_E_OUT_OF_RANGE, "task");
    train_steps(m, 1, 2);
    /* conure mode: finish needs RETRAIN (after prune) */
    EXPECT_MFAIL(m, conure_model_finish_task(m, 1), CONURE_E_STATE, "task");
    int32_t phase = 0;
    OK(conure_model_task_info(m, 1, NULL, NULL, &phase));
    ck_assert_int_eq(phase, CONURE_PHASE_DENSE);
    OK(conure_model_prune(m, 1));
    /* pruned twice */
    EXPECT_MFAIL(m, conure_model_prune(m, 1), CONURE_E_STATE, "task");
    OK(conure_model_task_info(m, 1, NULL, NULL, &phase));
    ck_assert_int_eq(phase, CONURE_PHASE_RETRAIN);
    train_steps(m, 1, 1);
    OK(conure_model_finish_task(m, 1));
    /* after finish: no training, pruning or finishing */
    float loss;
    fill_sentinel(&loss, sizeof loss);
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, BATCH, SEQ, NULL, &loss),
                 CONURE_E_STATE, "task");
    ASSERT_UNTOUCHED(&loss, sizeof loss);
    EXPECT_MFAIL(m, conure_model_prune(m, 1), CONURE_E_STATE, "task");
    EXPECT_MFAIL(m, conure_model_finish_task(m, 1), CONURE_E_STATE, "task");
    OK(conure_model_task_info(m, 1, NULL, NULL, &phase));
    ck_assert_int_eq(phase, CONURE_PHASE_DONE);
    conure_model_free(m);
}
END_TEST

START_TEST(phase_errors_finetune)
{
    conure_model *m = new_model("finetune");
    add_next_item(m, NULL);
    train_steps(m, 1, 1);
    /* finetune: no pruning at all; finish straight from DENSE */
    EXPECT_MFAIL(m, conure_model_prune(m, 1), CONURE_E_STATE, "finetune");
    OK(conure_model_finish_task(m, 1));
    EXPECT_MFAIL(m, conure_model_finish_task(m, 1), CONURE_E_STATE, "task");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, ITEMS, BATCH, SEQ, NULL, NULL),
                 CONURE_E_STATE, "task");
    conure_model_free(m);
}
END_TEST

START_TEST(discard_errors)
{
    conure_model *m = new_model("conure");
    EXPECT_FAIL(conure_model_discard_task(NULL, 1), CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_discard_task(m, 1), CONURE_E_OUT_OF_RANGE, "task");
    add_next_item(m, NULL);
    train_steps(m, 1, 1);
    OK(conure_model_prune(m, 1));
    OK(conure_model_finish_task(m, 1));
    add_task(m, CONURE_TASK_CLASSIFICATION, 3);
    for (size_t i = 0; i < N_BAD_TASKS; i++)
        EXPECT_MFAIL(m, conure_model_discard_task(m, BAD_TASKS[i]), CONURE_E_OUT_OF_RANGE,
                     "task");
    /* only the last task can go */
    EXPECT_MFAIL(m, conure_model_discard_task(m, 1), CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_discard_task(m, 3), CONURE_E_OUT_OF_RANGE, "task");
    int64_t n = 0;
    OK(conure_model_get_int(m, "n_tasks", &n));
    ck_assert_int_eq(n, 2);
    OK(conure_model_discard_task(m, 2));
    OK(conure_model_get_int(m, "n_tasks", &n));
    ck_assert_int_eq(n, 1);
    EXPECT_MFAIL(m, conure_model_discard_task(m, 2), CONURE_E_OUT_OF_RANGE, "task");
    conure_model_free(m);
}
END_TEST

/* ----------------------------------------------------------- inference --- */

START_TEST(scores_errors)
{
    conure_model *m = new_model("conure");
    float scores[BATCH * V];
    fill_sentinel(scores, sizeof scores);
    /* no tasks */
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, BATCH, SEQ, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "task");
    add_next_item(m, NULL);
    /* a task not yet DONE, unless "eval_unfinished" is 1 */
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, BATCH, SEQ, scores, BATCH * V),
                 CONURE_E_STATE, "task");
    OK(conure_model_set_int(m, "eval_unfinished", 1));
    EXPECT_FAIL(conure_model_scores(NULL, 1, ITEMS, BATCH, SEQ, scores, BATCH * V),
                CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_scores(m, 1, NULL, BATCH, SEQ, scores, BATCH * V),
                 CONURE_E_NULL_ARG, "items");
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, BATCH, SEQ, NULL, BATCH * V),
                 CONURE_E_NULL_ARG, "scores");
    for (size_t i = 0; i < N_BAD_TASKS; i++)
        EXPECT_MFAIL(m, conure_model_scores(m, BAD_TASKS[i], ITEMS, BATCH, SEQ, scores,
                                            BATCH * V),
                     CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_scores(m, 2, ITEMS, BATCH, SEQ, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, 0, SEQ, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "batch");
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, -2, SEQ, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "batch");
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, BATCH, 0, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    int32_t long_items[MAXLEN + 1] = {0};
    long_items[MAXLEN] = 3;
    EXPECT_MFAIL(m, conure_model_scores(m, 1, long_items, 1, MAXLEN + 1, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    int32_t bad[BATCH * SEQ];
    memcpy(bad, ITEMS, sizeof bad);
    bad[0 * SEQ + 4] = V;
    EXPECT_MFAIL(m, conure_model_scores(m, 1, bad, BATCH, SEQ, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "items[0][4]");
    bad[0 * SEQ + 4] = -1;
    EXPECT_MFAIL(m, conure_model_scores(m, 1, bad, BATCH, SEQ, scores, BATCH * V),
                 CONURE_E_OUT_OF_RANGE, "items[0][4]");
    /* buffer one float short, and empty */
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, BATCH, SEQ, scores, BATCH * V - 1),
                 CONURE_E_BUFFER_TOO_SMALL, "scores_len");
    EXPECT_MFAIL(m, conure_model_scores(m, 1, ITEMS, BATCH, SEQ, scores, 0),
                 CONURE_E_BUFFER_TOO_SMALL, "scores_len");
    ASSERT_UNTOUCHED(scores, sizeof scores);
    /* exactly the size needed; id 0 never scores */
    OK(conure_model_scores(m, 1, ITEMS, BATCH, SEQ, scores, BATCH * V));
    ck_assert(isinf(scores[0]) && scores[0] < 0);
    ck_assert(isinf(scores[V]) && scores[V] < 0);
    conure_model_free(m);
}
END_TEST

START_TEST(top_k_errors)
{
    conure_model *m = model_with_done_t1();
    add_task(m, CONURE_TASK_CLASSIFICATION, 3);
    int32_t ids[BATCH * (V + 1)];
    float sc0[3];
    enum { TOPK_LEN = BATCH * (V + 1) };
    EXPECT_MFAIL(m, conure_model_top_k(m, 2, ITEMS, 1, SEQ, 3, 0, ids, sc0, 3), CONURE_E_STATE,
                 "task");
    OK(conure_model_set_int(m, "eval_unfinished", 1));
    float sc[BATCH * (V + 1)];
    fill_sentinel(ids, sizeof ids);
    fill_sentinel(sc, sizeof sc);
    EXPECT_FAIL(conure_model_top_k(NULL, 1, ITEMS, BATCH, SEQ, 5, 0, ids, sc, TOPK_LEN),
                CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, NULL, BATCH, SEQ, 5, 0, ids, sc, TOPK_LEN),
                 CONURE_E_NULL_ARG, "items");
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, 5, 0, NULL, sc, TOPK_LEN),
                 CONURE_E_NULL_ARG, "ids");
    for (size_t i = 0; i < N_BAD_TASKS; i++)
        EXPECT_MFAIL(m, conure_model_top_k(m, BAD_TASKS[i], ITEMS, BATCH, SEQ, 5, 0, ids, sc, TOPK_LEN),
                     CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_top_k(m, 3, ITEMS, BATCH, SEQ, 5, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "task");
    /* k: 1 .. n_targets */
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, 0, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "k");
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, -1, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "k");
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, V + 1, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "k");
    EXPECT_MFAIL(m, conure_model_top_k(m, 2, ITEMS, BATCH, SEQ, 4, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "k");
    /* flags */
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, 5, 2u, ids, sc, TOPK_LEN),
                 CONURE_E_INVALID_ARG, "flags");
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, 5, 0x80000000u, ids, sc, TOPK_LEN),
                 CONURE_E_INVALID_ARG, "flags");
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, 5,
                                       CONURE_TOPK_EXCLUDE_HISTORY | 4u, ids, sc, TOPK_LEN),
                 CONURE_E_INVALID_ARG, "flags");
    EXPECT_MFAIL(m, conure_model_top_k(m, 2, ITEMS, BATCH, SEQ, 2, CONURE_TOPK_EXCLUDE_HISTORY,
                                       ids, sc, TOPK_LEN),
                 CONURE_E_INVALID_ARG, "flags");
    /* batch, seq_len, items */
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, 0, SEQ, 5, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "batch");
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, MAXLEN + 1, 5, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    int32_t bad[BATCH * SEQ];
    memcpy(bad, ITEMS, sizeof bad);
    bad[1 * SEQ + 0] = V;
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, bad, BATCH, SEQ, 5, 0, ids, sc, TOPK_LEN),
                 CONURE_E_OUT_OF_RANGE, "items[1][0]");
    ASSERT_UNTOUCHED(ids, sizeof ids);
    ASSERT_UNTOUCHED(sc, sizeof sc);
    /* out_len below batch * k */
    EXPECT_MFAIL(m, conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, 5, 0, ids, sc, BATCH * 5 - 1),
                 CONURE_E_BUFFER_TOO_SMALL, "out_len");
    ASSERT_UNTOUCHED(ids, sizeof ids);
    /* valid: scores may be NULL; k = n_targets */
    OK(conure_model_top_k(m, 1, ITEMS, BATCH, SEQ, 5, CONURE_TOPK_EXCLUDE_HISTORY, ids, NULL, TOPK_LEN));
    OK(conure_model_top_k(m, 2, ITEMS, BATCH, SEQ, 3, 0, ids, sc, TOPK_LEN));
    for (int r = 0; r < BATCH; r++)
        for (int j = 0; j < 3; j++)
            ck_assert(ids[r * 3 + j] >= 0 && ids[r * 3 + j] < 3);
    conure_model_free(m);
}
END_TEST

START_TEST(user_vectors_errors)
{
    conure_model *m = new_model("conure");
    float out[BATCH * C];
    fill_sentinel(out, sizeof out);
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, ITEMS, BATCH, SEQ, out, BATCH * C),
                 CONURE_E_OUT_OF_RANGE, "task");
    add_next_item(m, NULL);
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, ITEMS, BATCH, SEQ, out, BATCH * C),
                 CONURE_E_STATE, "task");
    OK(conure_model_set_int(m, "eval_unfinished", 1));
    EXPECT_FAIL(conure_model_user_vectors(NULL, 1, ITEMS, BATCH, SEQ, out, BATCH * C),
                CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, NULL, BATCH, SEQ, out, BATCH * C),
                 CONURE_E_NULL_ARG, "items");
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, ITEMS, BATCH, SEQ, NULL, BATCH * C),
                 CONURE_E_NULL_ARG, "out");
    for (size_t i = 0; i < N_BAD_TASKS; i++)
        EXPECT_MFAIL(m, conure_model_user_vectors(m, BAD_TASKS[i], ITEMS, BATCH, SEQ, out,
                                                  BATCH * C),
                     CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, ITEMS, -1, SEQ, out, BATCH * C),
                 CONURE_E_OUT_OF_RANGE, "batch");
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, ITEMS, BATCH, MAXLEN + 1, out, BATCH * C),
                 CONURE_E_OUT_OF_RANGE, "seq_len");
    int32_t bad[BATCH * SEQ];
    memcpy(bad, ITEMS, sizeof bad);
    bad[1 * SEQ + 5] = INT32_MAX;
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, bad, BATCH, SEQ, out, BATCH * C),
                 CONURE_E_OUT_OF_RANGE, "items[1][5]");
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, ITEMS, BATCH, SEQ, out, BATCH * C - 1),
                 CONURE_E_BUFFER_TOO_SMALL, "out_len");
    /* right padding: the user vector would be read at a padding position */
    memcpy(bad, ITEMS, sizeof bad);
    bad[1 * SEQ + 5] = 0;
    EXPECT_MFAIL(m, conure_model_user_vectors(m, 1, bad, BATCH, SEQ, out, BATCH * C),
                 CONURE_E_INVALID_ARG, "items[1][5]");
    EXPECT_MFAIL(m, conure_model_train_step(m, 1, bad, BATCH, SEQ, NULL, NULL),
                 CONURE_E_INVALID_ARG, "left-padded");
    ASSERT_UNTOUCHED(out, sizeof out);
    OK(conure_model_user_vectors(m, 1, ITEMS, BATCH, SEQ, out, BATCH * C));
    /* a user without history is a valid row */
    int32_t empty[BATCH * SEQ] = {0};
    memcpy(empty + SEQ, ITEMS + SEQ, sizeof(int32_t) * SEQ);
    OK(conure_model_user_vectors(m, 1, empty, BATCH, SEQ, out, BATCH * C));
    conure_model_free(m);
}
END_TEST

/* -------------------------------------------------------------- queries --- */

START_TEST(get_set_errors)
{
    conure_model *m = new_model("conure");
    int64_t v;
    fill_sentinel(&v, sizeof v);
    EXPECT_FAIL(conure_model_get_int(NULL, "channels", &v), CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_get_int(m, NULL, &v), CONURE_E_NULL_ARG, "key");
    EXPECT_MFAIL(m, conure_model_get_int(m, "channels", NULL), CONURE_E_NULL_ARG, "value");
    EXPECT_MFAIL(m, conure_model_get_int(m, "no_such_key", &v), CONURE_E_INVALID_ARG, "key");
    EXPECT_MFAIL(m, conure_model_get_int(m, "lr", &v), CONURE_E_INVALID_ARG, "key");
    EXPECT_MFAIL(m, conure_model_get_int(m, "", &v), CONURE_E_INVALID_ARG, "key");
    ASSERT_UNTOUCHED(&v, sizeof v);
    static const char *keys[] = {"vocab_size", "channels", "kernel_width", "n_blocks",
                                 "n_conv_tensors", "max_len", "seed", "threads", "n_tasks",
                                 "n_parameters", "receptive_field", "training_mode",
                                 "block_order", "eval_unfinished"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        OK(conure_model_get_int(m, keys[i], &v));
    OK(conure_model_get_int(m, "n_conv_tensors", &v));
    ck_assert_int_eq(v, NCONV);

    EXPECT_FAIL(conure_model_set_int(NULL, "threads", 1), CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_set_int(m, NULL, 1), CONURE_E_NULL_ARG, "key");
    EXPECT_MFAIL(m, conure_model_set_int(m, "no_such_key", 1), CONURE_E_INVALID_ARG, "key");
    /* stored hyperparameters are not run-time settings */
    EXPECT_MFAIL(m, conure_model_set_int(m, "vocab_size", 30), CONURE_E_INVALID_ARG,
                 "vocab_size");
    EXPECT_MFAIL(m, conure_model_set_int(m, "channels", 16), CONURE_E_INVALID_ARG, "channels");
    EXPECT_MFAIL(m, conure_model_set_int(m, "threads", -1), CONURE_E_OUT_OF_RANGE, "threads");
    EXPECT_MFAIL(m, conure_model_set_int(m, "threads", 1025), CONURE_E_OUT_OF_RANGE,
                 "threads");
    EXPECT_MFAIL(m, conure_model_set_int(m, "eval_unfinished", 2), CONURE_E_OUT_OF_RANGE,
                 "eval_unfinished");
    EXPECT_MFAIL(m, conure_model_set_int(m, "eval_unfinished", -1), CONURE_E_OUT_OF_RANGE,
                 "eval_unfinished");
    OK(conure_model_get_int(m, "vocab_size", &v));
    ck_assert_int_eq(v, V);
    OK(conure_model_get_int(m, "threads", &v));
    ck_assert_int_eq(v, 1);

    EXPECT_FAIL(conure_model_set_string(NULL, "backend", "ref"), CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_set_string(m, NULL, "ref"), CONURE_E_NULL_ARG, "key");
    EXPECT_MFAIL(m, conure_model_set_string(m, "backend", NULL), CONURE_E_NULL_ARG, "value");
    EXPECT_MFAIL(m, conure_model_set_string(m, "no_such_key", "ref"), CONURE_E_INVALID_ARG,
                 "key");
    EXPECT_MFAIL(m, conure_model_set_string(m, "dilations", "1,2"), CONURE_E_INVALID_ARG,
                 "dilations");
    EXPECT_MFAIL(m, conure_model_set_string(m, "backend", "no_such_backend"), CONURE_E_BACKEND,
                 "no_such_backend");
    OK(conure_model_set_string(m, "backend", "ref"));
    OK(conure_model_set_int(m, "threads", 2));
    conure_model_free(m);
}
END_TEST

START_TEST(task_info_errors)
{
    conure_model *m = new_model("conure");
    int32_t kind, n, phase;
    fill_sentinel(&kind, sizeof kind);
    fill_sentinel(&n, sizeof n);
    fill_sentinel(&phase, sizeof phase);
    EXPECT_MFAIL(m, conure_model_task_info(m, 1, &kind, &n, &phase), CONURE_E_OUT_OF_RANGE,
                 "task");
    add_next_item(m, NULL);
    EXPECT_FAIL(conure_model_task_info(NULL, 1, &kind, &n, &phase), CONURE_E_NULL_ARG, "model");
    for (size_t i = 0; i < N_BAD_TASKS; i++)
        EXPECT_MFAIL(m, conure_model_task_info(m, BAD_TASKS[i], &kind, &n, &phase),
                     CONURE_E_OUT_OF_RANGE, "task");
    EXPECT_MFAIL(m, conure_model_task_info(m, 2, &kind, &n, &phase), CONURE_E_OUT_OF_RANGE,
                 "task");
    ASSERT_UNTOUCHED(&kind, sizeof kind);
    ASSERT_UNTOUCHED(&n, sizeof n);
    ASSERT_UNTOUCHED(&phase, sizeof phase);
    OK(conure_model_task_info(m, 1, NULL, NULL, NULL));
    OK(conure_model_task_info(m, 1, &kind, &n, &phase));
    ck_assert_int_eq(kind, CONURE_TASK_NEXT_ITEM);
    ck_assert_int_eq(n, V);
    ck_assert_int_eq(phase, CONURE_PHASE_DENSE);
    conure_model_free(m);
}
END_TEST

START_TEST(capacity_errors)
{
    conure_model *m = new_model("conure");
    int64_t counts[257];
    fill_sentinel(counts, sizeof counts);
    EXPECT_FAIL(conure_model_capacity(NULL, -1, counts, 2), CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_capacity(m, -1, NULL, 2), CONURE_E_NULL_ARG, "counts");
    EXPECT_MFAIL(m, conure_model_capacity(m, NCONV, counts, 2), CONURE_E_OUT_OF_RANGE,
                 "tensor");
    EXPECT_MFAIL(m, conure_model_capacity(m, -2, counts, 2), CONURE_E_OUT_OF_RANGE, "tensor");
    EXPECT_MFAIL(m, conure_model_capacity(m, INT32_MAX, counts, 2), CONURE_E_OUT_OF_RANGE,
                 "tensor");
    EXPECT_MFAIL(m, conure_model_capacity(m, 0, counts, 0), CONURE_E_OUT_OF_RANGE, "n_counts");
    EXPECT_MFAIL(m, conure_model_capacity(m, 0, counts, -1), CONURE_E_OUT_OF_RANGE,
                 "n_counts");
    EXPECT_MFAIL(m, conure_model_capacity(m, 0, counts, 257), CONURE_E_OUT_OF_RANGE,
                 "n_counts");
    ASSERT_UNTOUCHED(counts, sizeof counts);
    OK(conure_model_capacity(m, -1, counts, 1));
    ck_assert_int_eq(counts[0], (int64_t)NCONV * K * C * C);
    ck_assert(is_sentinel(&counts[1], sizeof counts - sizeof counts[0]));
    OK(conure_model_capacity(m, NCONV - 1, counts, 256));
    ck_assert_int_eq(counts[0], (int64_t)K * C * C);
    for (int i = 1; i < 256; i++)
        ck_assert_int_eq(counts[i], 0);
    conure_model_free(m);
}
END_TEST

/* conure_model_last_error: per model, sized with cap 0, truncated to cap. */
START_TEST(model_last_error_behaviour)
{
    conure_model *a = new_model("conure");
    conure_model *b = new_model("conure");
    char buf[256];
    memset(buf, 'x', sizeof buf);
    ck_assert_uint_eq(conure_model_last_error(a, buf, sizeof buf), 0);
    ck_assert_str_eq(buf, "");

    EXPECT_MFAIL(a, conure_model_prune(a, 5), CONURE_E_OUT_OF_RANGE, "task");
    char amsg[256];
    size_t alen = conure_model_last_error(a, amsg, sizeof amsg);
    ck_assert_uint_eq(conure_model_last_error(a, NULL, 0), alen);
    ck_assert_uint_gt(alen, 4);
    memset(buf, 'x', sizeof buf);
    ck_assert_uint_eq(conure_model_last_error(a, buf, 5), alen);
    ck_assert_int_eq(buf[4], '\0');
    ck_assert_int_eq(strncmp(buf, amsg, 4), 0);
    ck_assert_int_eq(buf[5], 'x');
    memset(buf, 'x', sizeof buf);
    ck_assert_uint_eq(conure_model_last_error(a, buf, 1), alen);
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(buf[1], 'x');

    /* a failure on b, or on no model at all, leaves a's message alone */
    EXPECT_MFAIL(b, conure_model_get_int(b, "channels", NULL), CONURE_E_NULL_ARG, "value");
    EXPECT_FAIL(conure_options_set_int(NULL, "seed", 1), CONURE_E_NULL_ARG, "options");
    conure_model_last_error(a, buf, sizeof buf);
    ck_assert_str_eq(buf, amsg);
    conure_model_free(a);
    conure_model_free(b);
}
END_TEST

/* --------------------------------------------------------- save / load --- */

START_TEST(save_errors)
{
    conure_model *m = model_with_done_t1();
    EXPECT_FAIL(conure_model_save(NULL, "/tmp/x.conure", 0), CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_save(m, NULL, 0), CONURE_E_NULL_ARG, "path");
    EXPECT_MFAIL(m, conure_model_save(m, "/tmp/x.conure", 2u), CONURE_E_INVALID_ARG, "flags");
    EXPECT_MFAIL(m, conure_model_save(m, "/tmp/x.conure", CONURE_SAVE_OPTIMIZER | 8u),
                 CONURE_E_INVALID_ARG, "flags");
    EXPECT_MFAIL(m, conure_model_save(m, "/nonexistent-conure-dir/sub/m.conure", 0),
                 CONURE_E_IO, "/nonexistent-conure-dir/sub");

    size_t size;
    fill_sentinel(&size, sizeof size);
    EXPECT_FAIL(conure_model_save_size(NULL, 0, &size), CONURE_E_NULL_ARG, "model");
    EXPECT_MFAIL(m, conure_model_save_size(m, 0, NULL), CONURE_E_NULL_ARG, "size");
    EXPECT_MFAIL(m, conure_model_save_size(m, 4u, &size), CONURE_E_INVALID_ARG, "flags");
    ASSERT_UNTOUCHED(&size, sizeof size);
    OK(conure_model_save_size(m, 0, &size));
    ck_assert_uint_gt(size, 0);

    unsigned char *buf = malloc(size + 16);
    ck_assert_ptr_nonnull(buf);
    fill_sentinel(buf, size + 16);
    size_t written;
    fill_sentinel(&written, sizeof written);
    EXPECT_FAIL(conure_model_save_buffer(NULL, 0, buf, size, &written), CONURE_E_NULL_ARG,
                "model");
    EXPECT_MFAIL(m, conure_model_save_buffer(m, 0, NULL, size, &written), CONURE_E_NULL_ARG,
                 "buf");
    EXPECT_MFAIL(m, conure_model_save_buffer(m, 0, buf, size, NULL), CONURE_E_NULL_ARG,
                 "written");
    EXPECT_MFAIL(m, conure_model_save_buffer(m, 2u, buf, size, &written), CONURE_E_INVALID_ARG,
                 "flags");
    EXPECT_MFAIL(m, conure_model_save_buffer(m, 0, buf, size - 1, &written),
                 CONURE_E_BUFFER_TOO_SMALL, "cap");
    EXPECT_MFAIL(m, conure_model_save_buffer(m, 0, buf, 1, &written), CONURE_E_BUFFER_TOO_SMALL,
                 "cap");
    ASSERT_UNTOUCHED(buf, size + 16); /* "nothing written" */
    ASSERT_UNTOUCHED(&written, sizeof written);
    OK(conure_model_save_buffer(m, 0, buf, size + 16, &written));
    ck_assert_uint_eq(written, size);
    ck_assert(is_sentinel(buf + size, 16));
    free(buf);
    conure_model_free(m);
}
END_TEST

static char *write_temp(const void *data, size_t n)
{
    const char *dir = getenv("TMPDIR");
    char *path = malloc(4096);
    ck_assert_ptr_nonnull(path);
    snprintf(path, 4096, "%s/conure-misuse-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    if (n)
        ck_assert_int_eq(write(fd, data, n), (ssize_t)n);
    ck_assert_int_eq(close(fd), 0);
    return path;
}

START_TEST(load_errors)
{
    conure_model *const SENT = (conure_model *)(uintptr_t)0x5a5a5a5a;
    conure_model *out = SENT;
    EXPECT_FAIL(conure_model_load(NULL, NULL, &out), CONURE_E_NULL_ARG, "path");
    EXPECT_FAIL(conure_model_load("/tmp/x.conure", NULL, NULL), CONURE_E_NULL_ARG, "out");
    EXPECT_FAIL(conure_model_load("/nonexistent-conure-dir/m.conure", NULL, &out), CONURE_E_IO,
                "/nonexistent-conure-dir/m.conure");
    ck_assert_ptr_eq(out, SENT);

    char *empty = write_temp("", 0);
    EXPECT_FAIL(conure_model_load(empty, NULL, &out), CONURE_E_FORMAT, NULL);
    ck_assert_ptr_eq(out, SENT);
    unlink(empty);
    free(empty);

    char garbage[4096];
    tu_fill_uniform((float *)garbage, sizeof garbage / sizeof(float), 42, 1e3f);
    char *gpath = write_temp(garbage, sizeof garbage);
    EXPECT_FAIL(conure_model_load(gpath, NULL, &out), CONURE_E_FORMAT, NULL);
    ck_assert_ptr_eq(out, SENT);
    unlink(gpath);
    free(gpath);

    /* a good file with options: run-time keys only */
    conure_model *m = model_with_done_t1();
    char *path = write_temp("", 0);
    OK(conure_model_save(m, path, 0));
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    OK(conure_options_set_int(o, "channels", 8));
    EXPECT_FAIL(conure_model_load(path, o, &out), CONURE_E_INVALID_ARG, "channels");
    conure_options_free(o);
    OK(conure_options_create(&o));
    OK(conure_options_set_float(o, "lr", 0.1));
    EXPECT_FAIL(conure_model_load(path, o, &out), CONURE_E_INVALID_ARG, "lr");
    conure_options_free(o);
    OK(conure_options_create(&o));
    OK(conure_options_set_string(o, "backend", "no_such_backend"));
    EXPECT_FAIL(conure_model_load(path, o, &out), CONURE_E_BACKEND, "no_such_backend");
    ck_assert_ptr_eq(out, SENT);
    conure_options_free(o);
    OK(conure_options_create(&o));
    OK(conure_options_set_int(o, "threads", 2));
    OK(conure_options_set_string(o, "backend", "ref"));
    OK(conure_model_load(path, o, &out));
    conure_options_free(o);
    conure_model_free(out);
    unlink(path);
    free(path);
    conure_model_free(m);
}
END_TEST

START_TEST(load_buffer_errors)
{
    conure_model *m = model_with_done_t1();
    size_t size = 0, written = 0;
    OK(conure_model_save_size(m, CONURE_SAVE_OPTIMIZER, &size));
    unsigned char *buf = malloc(size);
    ck_assert_ptr_nonnull(buf);
    OK(conure_model_save_buffer(m, CONURE_SAVE_OPTIMIZER, buf, size, &written));
    ck_assert_uint_eq(written, size);

    conure_model *const SENT = (conure_model *)(uintptr_t)0x5a5a5a5a;
    conure_model *out = SENT;
    EXPECT_FAIL(conure_model_load_buffer(NULL, size, NULL, &out), CONURE_E_NULL_ARG, "buf");
    EXPECT_FAIL(conure_model_load_buffer(buf, size, NULL, NULL), CONURE_E_NULL_ARG, "out");
    EXPECT_FAIL(conure_model_load_buffer(buf, 0, NULL, &out), CONURE_E_FORMAT, NULL);
    char garbage[1024];
    tu_fill_uniform((float *)garbage, sizeof garbage / sizeof(float), 7, 1.0f);
    EXPECT_FAIL(conure_model_load_buffer(garbage, sizeof garbage, NULL, &out), CONURE_E_FORMAT,
                NULL);
    memset(garbage, 0, sizeof garbage);
    EXPECT_FAIL(conure_model_load_buffer(garbage, sizeof garbage, NULL, &out), CONURE_E_FORMAT,
                NULL);
    conure_options *o = NULL;
    OK(conure_options_create(&o));
    OK(conure_options_set_string(o, "dilations", "1,2"));
    EXPECT_FAIL(conure_model_load_buffer(buf, size, o, &out), CONURE_E_INVALID_ARG,
                "dilations");
    conure_options_free(o);
    ck_assert_ptr_eq(out, SENT);

    /* every truncation is rejected and nothing partial escapes */
    unsigned char *copy = malloc(size);
    ck_assert_ptr_nonnull(copy);
    for (size_t n = 0; n < size; n++) {
        memcpy(copy, buf, n);
        conure_status st = conure_model_load_buffer(copy, n, NULL, &out);
        ck_assert_msg(st == CONURE_E_FORMAT, "truncated to %zu of %zu bytes: status %d (%s)", n,
                      size, (int)st, conure_last_error());
        ck_assert_ptr_eq(out, SENT);
    }
    /* every single flipped byte is rejected (checksums) */
    for (size_t i = 0; i < size; i++) {
        memcpy(copy, buf, size);
        copy[i] ^= 0x41;
        conure_status st = conure_model_load_buffer(copy, size, NULL, &out);
        ck_assert_msg(st == CONURE_E_FORMAT || st == CONURE_E_VERSION,
                      "byte %zu of %zu flipped: status %d (%s)", i, size, (int)st,
                      conure_last_error());
        ck_assert_ptr_eq(out, SENT);
    }
    /* the buffer is not retained */
    OK(conure_model_load_buffer(buf, size, NULL, &out));
    memset(buf, 0, size);
    float s[BATCH * V];
    OK(conure_model_scores(out, 1, ITEMS, BATCH, SEQ, s, BATCH * V));
    conure_model_free(out);
    free(copy);
    free(buf);
    conure_model_free(m);
}
END_TEST

/* ------------------------------------------------------------- eval ------ */

START_TEST(eval_errors)
{
    float scores[2 * 5] = {0, 1, 2, 3, 4, 4, 3, 2, 1, 0};
    int32_t targets[2] = {1, 3};
    int32_t ranks[2];
    fill_sentinel(ranks, sizeof ranks);
    EXPECT_FAIL(conure_eval_ranks(NULL, 2, 5, targets, ranks), CONURE_E_NULL_ARG, "scores");
    EXPECT_FAIL(conure_eval_ranks(scores, 2, 5, NULL, ranks), CONURE_E_NULL_ARG, "targets");
    EXPECT_FAIL(conure_eval_ranks(scores, 2, 5, targets, NULL), CONURE_E_NULL_ARG, "ranks");
    EXPECT_FAIL(conure_eval_ranks(scores, 0, 5, targets, ranks), CONURE_E_OUT_OF_RANGE,
                "batch");
    EXPECT_FAIL(conure_eval_ranks(scores, -1, 5, targets, ranks), CONURE_E_OUT_OF_RANGE,
                "batch");
    EXPECT_FAIL(conure_eval_ranks(scores, 2, 0, targets, ranks), CONURE_E_OUT_OF_RANGE,
                "n_targets");
    EXPECT_FAIL(conure_eval_ranks(scores, 2, -5, targets, ranks), CONURE_E_OUT_OF_RANGE,
                "n_targets");
    int32_t bad_t[2] = {1, 5};
    EXPECT_FAIL(conure_eval_ranks(scores, 2, 5, bad_t, ranks), CONURE_E_OUT_OF_RANGE,
                "targets[1]");
    bad_t[0] = -1;
    bad_t[1] = 0;
    EXPECT_FAIL(conure_eval_ranks(scores, 2, 5, bad_t, ranks), CONURE_E_OUT_OF_RANGE,
                "targets[0]");
    float nan_scores[2 * 5];
    memcpy(nan_scores, scores, sizeof scores);
    nan_scores[7] = NAN;
    EXPECT_FAIL(conure_eval_ranks(nan_scores, 2, 5, targets, ranks), CONURE_E_NUMERIC,
                "scores");
    ASSERT_UNTOUCHED(ranks, sizeof ranks);
    OK(conure_eval_ranks(scores, 2, 5, targets, ranks));
    ck_assert_int_eq(ranks[0], 4);
    ck_assert_int_eq(ranks[1], 4);

    double hr, mrr, ndcg;
    fill_sentinel(&hr, sizeof hr);
    fill_sentinel(&mrr, sizeof mrr);
    fill_sentinel(&ndcg, sizeof ndcg);
    int32_t rk[3] = {1, 2, 3};
    EXPECT_FAIL(conure_eval_metrics(NULL, 3, 5, &hr, &mrr, &ndcg), CONURE_E_NULL_ARG, "ranks");
    EXPECT_FAIL(conure_eval_metrics(rk, 0, 5, &hr, &mrr, &ndcg), CONURE_E_OUT_OF_RANGE,
                "eval_metrics: n");
    EXPECT_FAIL(conure_eval_metrics(rk, -3, 5, &hr, &mrr, &ndcg), CONURE_E_OUT_OF_RANGE,
                "eval_metrics: n");
    EXPECT_FAIL(conure_eval_metrics(rk, 3, 0, &hr, &mrr, &ndcg), CONURE_E_OUT_OF_RANGE,
                "eval_metrics: k");
    int32_t bad_rk[3] = {1, 2, 0};
    EXPECT_FAIL(conure_eval_metrics(bad_rk, 3, 5, &hr, &mrr, &ndcg), CONURE_E_OUT_OF_RANGE,
                "ranks[2]");
    bad_rk[2] = -4;
    EXPECT_FAIL(conure_eval_metrics(bad_rk, 3, 5, &hr, &mrr, &ndcg), CONURE_E_OUT_OF_RANGE,
                "ranks[2]");
    ASSERT_UNTOUCHED(&hr, sizeof hr);
    ASSERT_UNTOUCHED(&mrr, sizeof mrr);
    ASSERT_UNTOUCHED(&ndcg, sizeof ndcg);
    OK(conure_eval_metrics(rk, 3, 5, NULL, NULL, NULL));
    OK(conure_eval_metrics(rk, 3, 1, &hr, NULL, NULL));
    ck_assert_double_eq_tol(hr, 1.0 / 3.0, 1e-12);
}
END_TEST

/* ------------------------------------------------------------ backends --- */

static int dummy_conv(void *ctx, const conure_conv_shape *s, const float *a, const float *b,
                      float *c, void *ws)
{
    (void)ctx;
    (void)s;
    (void)a;
    (void)b;
    (void)c;
    (void)ws;
    return 0;
}

static conure_backend dummy_backend(const char *name)
{
    conure_backend b;
    memset(&b, 0, sizeof b);
    b.struct_size = (uint32_t)sizeof b;
    b.abi_version = CONURE_BACKEND_ABI_VERSION;
    b.name = name;
    b.conv_forward = dummy_conv;
    b.conv_backward_data = dummy_conv;
    b.conv_backward_weight = dummy_conv;
    return b;
}

START_TEST(backend_register_errors)
{
    EXPECT_FAIL(conure_backend_register(NULL), CONURE_E_NULL_ARG, "backend");
    conure_backend b = dummy_backend(NULL);
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_NULL_ARG, "name");
    b = dummy_backend("dummy_a");
    b.conv_forward = NULL;
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_NULL_ARG, "conv_forward");
    b = dummy_backend("dummy_a");
    b.conv_backward_data = NULL;
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_NULL_ARG, "conv_backward_data");
    b = dummy_backend("dummy_a");
    b.conv_backward_weight = NULL;
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_NULL_ARG, "conv_backward_weight");
    static const char *bad_names[] = {"", "Dummy", "dummy-a", "dummy a", "d\xc3\xbc" "mmy",
                                      "a2345678901234567890123456789012" /* 32 chars */};
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        b = dummy_backend(bad_names[i]);
        EXPECT_FAIL(conure_backend_register(&b), CONURE_E_INVALID_ARG, "name");
    }
    b = dummy_backend("dummy_a");
    b.struct_size = 8;
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_INVALID_ARG, "struct_size");
    b = dummy_backend("dummy_a");
    b.abi_version = CONURE_BACKEND_ABI_VERSION + 1;
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_INVALID_ARG, "abi_version");
    b = dummy_backend("ref");
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_INVALID_ARG, "ref");
    /* 31 characters is the longest name */
    b = dummy_backend("a234567890123456789012345678901");
    OK(conure_backend_register(&b));
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_INVALID_ARG,
                "a234567890123456789012345678901");
}
END_TEST

START_TEST(backend_registry_full)
{
    int32_t n = conure_backend_list(NULL, 0);
    ck_assert_int_ge(n, 2);
    ck_assert_int_le(n, 32);
    static char names[40][8];
    for (int32_t i = n; i < 32; i++) {
        snprintf(names[i], sizeof names[i], "full%02d", (int)i);
        conure_backend b = dummy_backend(names[i]);
        OK(conure_backend_register(&b));
    }
    ck_assert_int_eq(conure_backend_list(NULL, 0), 32);
    conure_backend b = dummy_backend("one_too_many");
    EXPECT_FAIL(conure_backend_register(&b), CONURE_E_OUT_OF_RANGE, NULL);
    ck_assert_int_eq(conure_backend_list(NULL, 0), 32);
}
END_TEST

START_TEST(backend_get_list_errors)
{
    const conure_backend *const SENT = (const conure_backend *)(uintptr_t)0x5a5a5a5a;
    const conure_backend *out = SENT;
    EXPECT_FAIL(conure_backend_get(NULL, &out), CONURE_E_NULL_ARG, "name");
    EXPECT_FAIL(conure_backend_get("ref", NULL), CONURE_E_NULL_ARG, "out");
    EXPECT_FAIL(conure_backend_get("no_such_backend", &out), CONURE_E_BACKEND,
                "no_such_backend");
    EXPECT_FAIL(conure_backend_get("", &out), CONURE_E_BACKEND, NULL);
    ck_assert_ptr_eq(out, SENT);
    OK(conure_backend_get("ref", &out));
    ck_assert_str_eq(out->name, "ref");
    OK(conure_backend_get("blis", &out));

    const char *names[4] = {NULL, NULL, NULL, NULL};
    const char *const NSENT = "sentinel";
    names[1] = names[2] = names[3] = NSENT;
    int32_t n = conure_backend_list(NULL, 0);
    ck_assert_int_ge(n, 2);
    ck_assert_int_eq(conure_backend_list(names, 1), n);
    ck_assert_ptr_nonnull(names[0]);
    ck_assert_ptr_eq(names[1], NSENT);
    ck_assert_int_eq(conure_backend_list(names, 4), n);
    int seen_ref = 0, seen_blis = 0;
    for (int32_t i = 0; i < n && i < 4; i++) {
        seen_ref |= strcmp(names[i], "ref") == 0;
        seen_blis |= strcmp(names[i], "blis") == 0;
    }
    ck_assert(seen_ref && seen_blis);
}
END_TEST

/* ------------------------------------------------------------- suite ----- */

static Suite *misuse_suite(void)
{
    Suite *s = suite_create("api_misuse");
    TCase *tc;

    tc = tcase_create("status");
    tcase_add_test(tc, status_strings);
    tcase_add_test(tc, version_matches_header);
    tcase_add_test(tc, last_error_is_thread_local);
    tcase_add_test(tc, free_null_is_noop);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_test(tc, options_null_args);
    tcase_add_test(tc, options_unknown_keys_and_wrong_types);
    tcase_add_test(tc, options_int_ranges);
    tcase_add_test(tc, options_float_ranges);
    tcase_add_test(tc, options_string_values);
    tcase_add_test(tc, options_failed_set_keeps_old_value);
    suite_add_tcase(s, tc);

    tc = tcase_create("model");
    tcase_add_test(tc, create_errors);
    tcase_add_test(tc, create_does_not_retain_options);
    tcase_add_test(tc, add_task_errors);
    tcase_add_test(tc, add_task_capacity);
    tcase_add_test(tc, add_task_limit);
    suite_add_tcase(s, tc);

    tc = tcase_create("training");
    tcase_add_test(tc, train_step_errors);
    tcase_add_test(tc, train_step_targets);
    tcase_add_test(tc, train_step_error_changes_nothing);
    tcase_add_test(tc, phase_errors_conure);
    tcase_add_test(tc, phase_errors_finetune);
    tcase_add_test(tc, discard_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("inference");
    tcase_add_test(tc, scores_errors);
    tcase_add_test(tc, top_k_errors);
    tcase_add_test(tc, user_vectors_errors);
    tcase_add_test(tc, get_set_errors);
    tcase_add_test(tc, task_info_errors);
    tcase_add_test(tc, capacity_errors);
    tcase_add_test(tc, model_last_error_behaviour);
    suite_add_tcase(s, tc);

    tc = tcase_create("io");
    tcase_add_test(tc, save_errors);
    tcase_add_test(tc, load_errors);
    tcase_add_test(tc, load_buffer_errors);
    suite_add_tcase(s, tc);

    tc = tcase_create("eval");
    tcase_add_test(tc, eval_errors);
    suite_add_tcase(s, tc);

    /* last: registrations last for the life of the process (matters only
     * with CK_FORK=no, as under the valgrind test setup) */
    tc = tcase_create("backends");
    tcase_add_test(tc, backend_get_list_errors);
    tcase_add_test(tc, backend_register_errors);
    tcase_add_test(tc, backend_registry_full);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(misuse_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
