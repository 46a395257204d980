/* The options handle: a validated key/value bag (zstd-style setters, so no
 * options struct crosses the ABI).  Ranges are documented in conure.h. */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include <ctype.h>
#include <sched.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

enum cn_opt_type { T_INT, T_REAL, T_TEXT };

typedef struct opt_info {
    const char *name;
    int type;
    int scope;
    double lo, hi;  /* inclusive range for numbers */
    int lo_open;    /* lo excluded */
} opt_info;

static const opt_info opt_table[CN_OPT_COUNT] = {
    [CN_OPT_VOCAB_SIZE] = {"vocab_size", T_INT, CN_SCOPE_MODEL, 2, 2147483647.0, 0},
    [CN_OPT_CHANNELS] = {"channels", T_INT, CN_SCOPE_MODEL, 1, 4096, 0},
    [CN_OPT_KERNEL_WIDTH] = {"kernel_width", T_INT, CN_SCOPE_MODEL, 1, 16, 0},
    [CN_OPT_MAX_LEN] = {"max_len", T_INT, CN_SCOPE_MODEL, 2, 65536, 0},
    [CN_OPT_SEED] = {"seed", T_INT, CN_SCOPE_MODEL, 0, 9223372036854775807.0, 0},
    [CN_OPT_THREADS] = {"threads", T_INT, CN_SCOPE_MODEL | CN_SCOPE_RUNTIME, 0, 1024, 0},
    /* real ranges are those of the float the value becomes: no bound rounds to
     * a forbidden float (0 or 1) */
    [CN_OPT_INIT_STD] = {"init_std", T_REAL, CN_SCOPE_MODEL, 1e-30, 1, 0},
    [CN_OPT_DILATIONS] = {"dilations", T_TEXT, CN_SCOPE_MODEL, 0, 0, 0},
    [CN_OPT_BLOCK_ORDER] = {"block_order", T_TEXT, CN_SCOPE_MODEL, 0, 0, 0},
    [CN_OPT_TRAINING_MODE] = {"training_mode", T_TEXT, CN_SCOPE_MODEL, 0, 0, 0},
    [CN_OPT_BACKEND] = {"backend", T_TEXT, CN_SCOPE_MODEL | CN_SCOPE_RUNTIME, 0, 0, 0},
    [CN_OPT_NEGATIVES] = {"negatives", T_INT, CN_SCOPE_TASK, 0, 2147483647.0, 0},
    [CN_OPT_LR] = {"lr", T_REAL, CN_SCOPE_TASK, 1e-30, 1, 0},
    [CN_OPT_L2] = {"l2", T_REAL, CN_SCOPE_TASK, 0, 10, 0},
    [CN_OPT_RHO] = {"rho", T_REAL, CN_SCOPE_TASK, 1e-30, 10, 0},
    [CN_OPT_RELEASE_RATIO] = {"release_ratio", T_REAL, CN_SCOPE_TASK, 0, 0.999999, 0},
    [CN_OPT_ADAM_BETA1] = {"adam_beta1", T_REAL, CN_SCOPE_TASK, 0, 0.9999999, 0},
    [CN_OPT_ADAM_BETA2] = {"adam_beta2", T_REAL, CN_SCOPE_TASK, 0, 0.9999999, 0},
    [CN_OPT_ADAM_EPS] = {"adam_eps", T_REAL, CN_SCOPE_TASK, 1e-30, 1, 0},
    [CN_OPT_LOSS] = {"loss", T_TEXT, CN_SCOPE_TASK, 0, 0, 0},
    [CN_OPT_DROPOUT] = {"dropout", T_REAL, CN_SCOPE_TASK, 0, 0.9, 0},
    [CN_OPT_TIE_EMBEDDING] = {"tie_embedding", T_INT, CN_SCOPE_TASK, 0, 1, 0},
};

const char *cn_option_name(int key)
{
    return (key >= 0 && key < CN_OPT_COUNT) ? opt_table[key].name : "?";
}

void cn_options_defaults(conure_options *o)
{
    static const int32_t default_dilations[8] = {1, 4, 1, 4, 1, 4, 1, 4};
    memset(o, 0, sizeof *o);
    o->vocab_size = 0;
    o->channels = 256;
    o->kernel_width = 3;
    o->max_len = 1024;
    o->seed = 1;
    o->threads = 1;
    o->negatives = 0;
    o->init_std = 0.02;
    o->lr = 0;  /* 0 = per-kind default */
    o->l2 = 0.02;
    o->rho = 0.3;
    o->release_ratio = 0.7;
    o->adam_beta1 = 0.9;
    o->adam_beta2 = 0.999;
    o->adam_eps = 1e-8;
    o->n_blocks = 8;
    memcpy(o->dilations, default_dilations, sizeof default_dilations);
    o->block_order = CN_PRE_NORM;
    o->training_mode = CN_MODE_CONURE;
    o->loss = CN_LOSS_DEFAULT;
    o->backend[0] = '\0';
}

static int find_key(const char *key)
{
    for (int i = 0; i < CN_OPT_COUNT; i++)
        if (strcmp(opt_table[i].name, key) == 0)
            return i;
    return -1;
}

static conure_status check_common(conure_options *o, const char *key, const char *fn, int *idx)
{
    if (!o)
        return cn_fail(CONURE_E_NULL_ARG, "%s: options is NULL", fn);
    if (!key)
        return cn_fail(CONURE_E_NULL_ARG, "%s: key is NULL", fn);
    *idx = find_key(key);
    if (*idx < 0)
        return cn_fail(CONURE_E_INVALID_ARG, "%s: unknown option key \"%.64s\"", fn, key);
    return CONURE_OK;
}

static conure_status store_number(conure_options *o, int idx, double v, int64_t iv, int is_int,
                                  const char *fn)
{
    const opt_info *inf = &opt_table[idx];
    if (is_int) {
        if ((double)iv < inf->lo || (double)iv > inf->hi)
            return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: %s = %lld is outside [%.0f, %.0f]", fn,
                           inf->name, (long long)iv, inf->lo, inf->hi);
    } else {
        if (!isfinite(v) || v > inf->hi || v < inf->lo || (inf->lo_open && v <= inf->lo))
            return cn_fail(CONURE_E_OUT_OF_RANGE, "%s: %s = %g is outside %s%g, %g]", fn,
                           inf->name, v, inf->lo_open ? "(" : "[", inf->lo, inf->hi);
    }
    switch (idx) {
    case CN_OPT_VOCAB_SIZE: o->vocab_size = iv; break;
    case CN_OPT_CHANNELS: o->channels = iv; break;
    case CN_OPT_KERNEL_WIDTH: o->kernel_width = iv; break;
    case CN_OPT_MAX_LEN: o->max_len = iv; break;
    case CN_OPT_SEED: o->seed = iv; break;
    case CN_OPT_THREADS: o->threads = iv; break;
    case CN_OPT_NEGATIVES: o->negatives = iv; break;
    case CN_OPT_TIE_EMBEDDING: o->tie_embedding = iv; break;
    case CN_OPT_INIT_STD: o->init_std = v; break;
    case CN_OPT_LR: o->lr = v; break;
    case CN_OPT_L2: o->l2 = v; break;
    case CN_OPT_RHO: o->rho = v; break;
    case CN_OPT_RELEASE_RATIO: o->release_ratio = v; break;
    case CN_OPT_ADAM_BETA1: o->adam_beta1 = v; break;
    case CN_OPT_ADAM_BETA2: o->adam_beta2 = v; break;
    case CN_OPT_ADAM_EPS: o->adam_eps = v; break;
    case CN_OPT_DROPOUT: o->dropout = v; break;
    default: return cn_fail(CONURE_E_INTERNAL, "%s: no storage for %s", fn, inf->name);
    }
    o->is_set[idx] = 1;
    return CONURE_OK;
}

CONURE_API conure_status conure_options_create(conure_options **out)
{
    cn_clear_error();
    if (!out)
        return cn_fail(CONURE_E_NULL_ARG, "options_create: out is NULL");
    conure_options *o = cn_alloc(1, sizeof *o);
    if (!o)
        return cn_fail(CONURE_E_NOMEM, "options_create: out of memory");
    cn_options_defaults(o);
    *out = o;
    return CONURE_OK;
}

CONURE_API void conure_options_free(conure_options *options)
{
    cn_free(options);
}

CONURE_API conure_status conure_options_set_int(conure_options *o, const char *key, int64_t value)
{
    cn_clear_error();
    int idx;
    conure_status st = check_common(o, key, "options_set_int", &idx);
    if (st)
        return st;
    if (opt_table[idx].type != T_INT)
        return cn_fail(CONURE_E_INVALID_ARG, "options_set_int: \"%s\" is not an integer option%s",
                       key, opt_table[idx].type == T_REAL ? " (use conure_options_set_float)"
                                                          : " (use conure_options_set_string)");
    return store_number(o, idx, (double)value, value, 1, "options_set_int");
}

CONURE_API conure_status conure_options_set_float(conure_options *o, const char *key, double value)
{
    cn_clear_error();
    int idx;
    conure_status st = check_common(o, key, "options_set_float", &idx);
    if (st)
        return st;
    if (opt_table[idx].type != T_REAL)
        return cn_fail(CONURE_E_INVALID_ARG, "options_set_float: \"%s\" is not a real option%s",
                       key, opt_table[idx].type == T_INT ? " (use conure_options_set_int)"
                                                         : " (use conure_options_set_string)");
    return store_number(o, idx, value, 0, 0, "options_set_float");
}

static conure_status parse_dilations(conure_options *o, const char *text)
{
    int32_t d[CN_MAX_BLOCKS];
    int n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ')
            p++;
        if (!isdigit((unsigned char)*p))
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: dilations \"%.64s\": expected a positive integer "
                           "at offset %d", text, (int)(p - text));
        errno = 0;
        char *end;
        long v = strtol(p, &end, 10);
        if (errno || v < 1 || v > 4096)
            return cn_fail(CONURE_E_OUT_OF_RANGE,
                           "options_set_string: dilations \"%.64s\": each must be in [1, 4096]",
                           text);
        if (n == CN_MAX_BLOCKS)
            return cn_fail(CONURE_E_OUT_OF_RANGE,
                           "options_set_string: dilations: more than %d blocks", CN_MAX_BLOCKS);
        d[n++] = (int32_t)v;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        if (*p != ',')
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: dilations \"%.64s\": unexpected '%c' at offset %d",
                           text, *p, (int)(p - text));
        p++;
    }
    memcpy(o->dilations, d, sizeof(int32_t) * (size_t)n);
    o->n_blocks = n;
    o->is_set[CN_OPT_DILATIONS] = 1;
    return CONURE_OK;
}

CONURE_API conure_status conure_options_set_string(conure_options *o, const char *key,
                                                   const char *value)
{
    cn_clear_error();
    int idx;
    conure_status st = check_common(o, key, "options_set_string", &idx);
    if (st)
        return st;
    if (!value)
        return cn_fail(CONURE_E_NULL_ARG, "options_set_string: value for \"%s\" is NULL", key);
    const opt_info *inf = &opt_table[idx];
    if (inf->type == T_INT) {
        errno = 0;
        char *end;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end != '\0' || errno)
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: %s = \"%.64s\" is not an integer", key, value);
        return store_number(o, idx, (double)v, v, 1, "options_set_string");
    }
    if (inf->type == T_REAL) {
        errno = 0;
        char *end;
        double v = strtod(value, &end);
        if (end == value || *end != '\0' || errno)
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: %s = \"%.64s\" is not a number", key, value);
        return store_number(o, idx, v, 0, 0, "options_set_string");
    }
    switch (idx) {
    case CN_OPT_DILATIONS:
        return parse_dilations(o, value);
    case CN_OPT_BLOCK_ORDER:
        if (strcmp(value, "pre_norm") == 0)
            o->block_order = CN_PRE_NORM;
        else if (strcmp(value, "post_norm") == 0)
            o->block_order = CN_POST_NORM;
        else
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: block_order = \"%.64s\": expected \"pre_norm\" or "
                           "\"post_norm\"", value);
        break;
    case CN_OPT_TRAINING_MODE:
        if (strcmp(value, "conure") == 0)
            o->training_mode = CN_MODE_CONURE;
        else if (strcmp(value, "finetune") == 0)
            o->training_mode = CN_MODE_FINETUNE;
        else
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: training_mode = \"%.64s\": expected \"conure\" or "
                           "\"finetune\"", value);
        break;
    case CN_OPT_BACKEND: {
        size_t n = strlen(value);
        if (n == 0 || n >= CN_BACKEND_NAME_MAX)
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: backend name must have 1..%d characters",
                           CN_BACKEND_NAME_MAX - 1);
        memcpy(o->backend, value, n + 1);
        break;
    }
    case CN_OPT_LOSS:
        if (strcmp(value, "sampled_softmax") == 0)
            o->loss = CN_LOSS_SAMPLED_SOFTMAX;
        else if (strcmp(value, "softmax") == 0)
            o->loss = CN_LOSS_SOFTMAX;
        else if (strcmp(value, "bpr") == 0)
            o->loss = CN_LOSS_BPR;
        else if (strcmp(value, "bce") == 0)
            o->loss = CN_LOSS_BCE;
        else
            return cn_fail(CONURE_E_INVALID_ARG,
                           "options_set_string: loss = \"%.64s\": expected sampled_softmax, "
                           "softmax, bpr or bce", value);
        break;
    default:
        return cn_fail(CONURE_E_INTERNAL, "options_set_string: no parser for %s", key);
    }
    o->is_set[idx] = 1;
    return CONURE_OK;
}

conure_status cn_options_check_scope(const conure_options *o, unsigned allowed, const char *where)
{
    for (int i = 0; i < CN_OPT_COUNT; i++) {
        if (o->is_set[i] && !(opt_table[i].scope & (int)allowed)) {
            const char *what = (opt_table[i].scope & CN_SCOPE_TASK) ? "a task option"
                               : (opt_table[i].scope & CN_SCOPE_MODEL) ? "a model option"
                                                                       : "not allowed";
            return cn_fail(CONURE_E_INVALID_ARG, "%s: option \"%s\" is %s and not accepted here",
                           where, opt_table[i].name, what);
        }
    }
    return CONURE_OK;
}

int cn_resolve_threads(int64_t threads)
{
    if (threads > 0)
        return (int)threads;
    /* the CPUs this process may run on (taskset, cpusets), else the online
     * ones; CPU quotas (cgroup cpu.max) are not visible here */
    long n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n > 1024 ? 1024 : n) : 1;
}
