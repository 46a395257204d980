/*
 * conure: command-line front end of libconure (examples/conure/README.md is its manual).
 *
 *   conure run  [options]            learn a task sequence with Conure and the baselines
 *   conure eval --model FILE [...]   reload a model file and evaluate it
 *   conure info FILE                 describe a model file
 *
 * A thin program on the public header <conure/conure.h> only.
 */
#define _POSIX_C_SOURCE 200809L
#include <conure/conure.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "pipeline.h"
#include "results.h"

#ifndef CONURE_SOURCE_DATA
#define CONURE_SOURCE_DATA "examples/data/ml-latest-small"
#endif
#ifndef CONURE_INSTALL_DATA
#define CONURE_INSTALL_DATA "/usr/local/share/conure/ml-latest-small"
#endif

#define EXIT_USAGE 2

static const char *prog = "conure";

static void die_usage(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(try '%s help')\n", prog);
    exit(EXIT_USAGE);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

enum {
    O_PRESET = 256, O_DATA, O_CONFIG, O_RESULTS, O_MODEL, O_RESUME, O_METHODS, O_TASKS, O_SEED,
    O_THREADS, O_BACKEND, O_QUICK, O_CHANNELS, O_KERNEL, O_DILATIONS, O_BLOCK_ORDER, O_MAX_LEN,
    O_WINDOWS, O_T1_EPOCHS, O_TASK_EPOCHS, O_EPOCHS, O_T1_BATCH, O_TASK_BATCH, O_T1_LR, O_TASK_LR,
    O_T1_LOSS, O_CLASS_LOSS, O_T1_DROPOUT, O_TASK_DROPOUT, O_T1_TIE, O_NO_T1_TIE, O_NEGATIVES, O_L2, O_RHO, O_RELEASE, O_PATIENCE, O_EVAL_BATCH,
    O_EXCL_HIST, O_NO_EXCL_HIST, O_SKIP_BAD, O_PROGRESS, O_QUIET, O_VERBOSE, O_HELP
};

static const struct option longopts[] = {
    {"preset", required_argument, NULL, O_PRESET},
    {"data", required_argument, NULL, O_DATA},
    {"config", required_argument, NULL, O_CONFIG},
    {"results", required_argument, NULL, O_RESULTS},
    {"model", required_argument, NULL, O_MODEL},
    {"resume", required_argument, NULL, O_RESUME},
    {"methods", required_argument, NULL, O_METHODS},
    {"tasks", required_argument, NULL, O_TASKS},
    {"seed", required_argument, NULL, O_SEED},
    {"threads", required_argument, NULL, O_THREADS},
    {"backend", required_argument, NULL, O_BACKEND},
    {"quick", no_argument, NULL, O_QUICK},
    {"channels", required_argument, NULL, O_CHANNELS},
    {"kernel-width", required_argument, NULL, O_KERNEL},
    {"dilations", required_argument, NULL, O_DILATIONS},
    {"block-order", required_argument, NULL, O_BLOCK_ORDER},
    {"max-len", required_argument, NULL, O_MAX_LEN},
    {"windows", required_argument, NULL, O_WINDOWS},
    {"t1-epochs", required_argument, NULL, O_T1_EPOCHS},
    {"task-epochs", required_argument, NULL, O_TASK_EPOCHS},
    {"epochs", required_argument, NULL, O_EPOCHS},
    {"t1-batch", required_argument, NULL, O_T1_BATCH},
    {"task-batch", required_argument, NULL, O_TASK_BATCH},
    {"t1-lr", required_argument, NULL, O_T1_LR},
    {"task-lr", required_argument, NULL, O_TASK_LR},
    {"t1-loss", required_argument, NULL, O_T1_LOSS},
    {"t1-dropout", required_argument, NULL, O_T1_DROPOUT},
    {"t1-tie-embedding", no_argument, NULL, O_T1_TIE},
    {"no-t1-tie-embedding", no_argument, NULL, O_NO_T1_TIE},
    {"task-dropout", required_argument, NULL, O_TASK_DROPOUT},
    {"class-loss", required_argument, NULL, O_CLASS_LOSS},
    {"negatives", required_argument, NULL, O_NEGATIVES},
    {"l2", required_argument, NULL, O_L2},
    {"rho", required_argument, NULL, O_RHO},
    {"release-ratio", required_argument, NULL, O_RELEASE},
    {"patience", required_argument, NULL, O_PATIENCE},
    {"eval-batch", required_argument, NULL, O_EVAL_BATCH},
    {"exclude-history", no_argument, NULL, O_EXCL_HIST},
    {"no-exclude-history", no_argument, NULL, O_NO_EXCL_HIST},
    {"skip-bad-lines", no_argument, NULL, O_SKIP_BAD},
    {"progress", required_argument, NULL, O_PROGRESS},
    {"quiet", no_argument, NULL, O_QUIET},
    {"verbose", no_argument, NULL, O_VERBOSE},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static const char *opt_name(int id)
{
    for (const struct option *o = longopts; o->name; o++)
        if (o->val == id)
            return o->name;
    return "?";
}

/* Options as (id, value) pairs in command-line order, config files expanded. */
typedef struct opt_pair {
    int id;
    char *val; /* NULL for flags */
    char where[160]; /* "--x" or "FILE:LINE" for messages */
} opt_pair;

typedef struct opt_list {
    opt_pair *v;
    size_t n, cap;
    char *config_file;
} opt_list;

static void opts_push(opt_list *l, int id, const char *val, const char *where)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        opt_pair *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            fprintf(stderr, "%s: out of memory\n", prog);
            exit(1);
        }
        l->v = nv;
        l->cap = nc;
    }
    opt_pair *p = &l->v[l->n++];
    p->id = id;
    p->val = val ? strdup(val) : NULL;
    snprintf(p->where, sizeof p->where, "%s", where);
    if (val && !p->val) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
}

static void opts_free(opt_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].val);
    free(l->v);
    free(l->config_file);
    memset(l, 0, sizeof *l);
}

static char *trim(char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Config file: `key = value` lines (keys are the long option names), `key`
 * alone or `key = true` for flags, `#` comments. */
static void read_config(opt_list *l, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die_usage("--config %s: cannot open: %s", path, strerror(errno));
    char line[4096];
    long lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        char *key = s, *val = NULL;
        if (eq) {
            *eq = '\0';
            key = trim(s);
            val = trim(eq + 1);
        }
        if (key[0] == '-' && key[1] == '-')
            key += 2;
        const struct option *o = longopts;
        while (o->name && strcmp(o->name, key) != 0)
            o++;
        char where[160];
        snprintf(where, sizeof where, "%s:%ld", path, lineno);
        if (!o->name || o->val == O_CONFIG || o->val == O_HELP) {
            fclose(f);
            die_usage("%s: unknown key '%s'", where, key);
        }
        if (o->has_arg == no_argument) {
            if (val && strcmp(val, "true") && strcmp(val, "1") && strcmp(val, "yes")) {
                if (!strcmp(val, "false") || !strcmp(val, "0") || !strcmp(val, "no"))
                    continue;
                fclose(f);
                die_usage("%s: '%s' is a flag: use true or false", where, key);
            }
            opts_push(l, o->val, NULL, where);
        } else {
            if (!val || !*val) {
                fclose(f);
                die_usage("%s: '%s' needs a value (%s = VALUE)", where, key, key);
            }
            opts_push(l, o->val, val, where);
        }
    }
    fclose(f);
}

static void parse_argv(int argc, char **argv, opt_list *l)
{
    optind = 1;
    opterr = 0;
    for (;;) {
        int idx = 0;
        int c = getopt_long(argc, argv, "+h", longopts, &idx);
        if (c == -1)
            break;
        if (c == 'h' || c == O_HELP) {
            opts_push(l, O_HELP, NULL, "--help");
            continue;
        }
        if (c == '?' || c == ':') {
            if (optopt)
                die_usage("option '%s' needs a value or is unknown", argv[optind - 1]);
            die_usage("unknown option '%s'", argv[optind - 1]);
        }
        char where[160];
        snprintf(where, sizeof where, "--%s", opt_name(c));
        if (c == O_CONFIG) {
            if (l->config_file)
                die_usage("--config given twice");
            l->config_file = strdup(optarg);
            read_config(l, optarg);
            continue;
        }
        opts_push(l, c, optarg, where);
    }
    if (optind < argc)
        die_usage("unexpected argument '%s'", argv[optind]);
}

static long long parse_int(const opt_pair *p, long long lo, long long hi)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(p->val, &end, 10);
    if (errno || !end || *end || end == p->val || v < lo || v > hi)
        die_usage("%s: '%s' is not an integer in %lld..%lld", p->where, p->val, lo, hi);
    return v;
}

static double parse_real(const opt_pair *p, double lo, double hi)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(p->val, &end);
    if (errno || !end || *end || end == p->val || !isfinite(v) || v < lo || v > hi)
        die_usage("%s: '%s' is not a number in [%g, %g]", p->where, p->val, lo, hi);
    return v;
}

static void parse_pair_ints(const opt_pair *p, int *a, int *b)
{
    char *end = NULL;
    errno = 0;
    long x = strtol(p->val, &end, 10);
    if (errno || end == p->val || (*end != ',' && *end != '/') || x < 0 || x > 100000)
        die_usage("%s: '%s' is not DENSE,RETRAIN (two epoch counts)", p->where, p->val);
    const char *s2 = end + 1;
    long y = strtol(s2, &end, 10);
    if (errno || end == s2 || *end || y < 0 || y > 100000)
        die_usage("%s: '%s' is not DENSE,RETRAIN (two epoch counts)", p->where, p->val);
    *a = (int)x;
    *b = (int)y;
}

static void copy_str(char *dst, size_t cap, const opt_pair *p)
{
    if (strlen(p->val) >= cap)
        die_usage("%s: value too long", p->where);
    snprintf(dst, cap, "%s", p->val);
}

/* ------------------------------------------------------------------------ */
/* Presets (examples/conure/README.md lists these numbers)                                 */
/* ------------------------------------------------------------------------ */

typedef struct cli {
    cp_settings set;
    cd_config data;
    int want[CP_N_METHODS];
    int methods_given;
    int quick;
    const char *results, *model, *resume;
    int data_given;
    int progress_mode; /* -1 auto */
} cli;

static void preset_defaults(cli *c, const char *preset)
{
    cp_settings *s = &c->set;
    memset(s, 0, sizeof *s);
    s->seed = 1;
    s->threads = 0; /* all online CPUs: the demo owns the machine */
    for (int k = 0; k < CD_MAX_TASKS; k++)
        s->task_dense[k] = s->task_retrain[k] = -1;
    s->l2 = -1;
    s->dropout[0] = s->dropout[1] = -1;
    s->rho = -1;
    s->release_ratio = -1;
    s->eval_batch = 256;
    s->batch[0] = 32;
    s->batch[1] = 64;
    s->lr[0] = 1e-3;
    s->lr[1] = 1e-3;
    c->data.max_len = 50;
    c->data.windows = -1;
    c->data.exclude_history = -1;
    if (!strcmp(preset, "default")) {
        /* ml-latest-small, sized so that all four methods finish in about
         * three minutes on 2 cores (one compute thread) */
        s->channels = 64;
        s->dense_epochs[0] = 6;
        s->retrain_epochs[0] = 3;
        s->dense_epochs[1] = 4; /* T2 liked_items: 3,212 examples */
        s->retrain_epochs[1] = 4;
        s->rho = 10;            /* near-uniform BPR negatives (docs/results.md) */
        s->task_dense[2] = 3;   /* T3 top_genre: 488 examples; 10,10 overfit */
        s->task_retrain[2] = 3;
        snprintf(s->class_loss, sizeof s->class_loss, "softmax"); /* 15 classes */
    } else if (!strcmp(preset, "ml100k")) {
        s->channels = 256;         /* the paper's setting */
        s->dense_epochs[0] = 4;    /* T1: the authors' 4 / 10 */
        s->retrain_epochs[0] = 10;
        s->dense_epochs[1] = 3;    /* T3-T5: 754 examples each (docs/results.md) */
        s->retrain_epochs[1] = 3;
        s->task_dense[1] = 2;      /* T2 liked_items: 7,841 examples, ~50 rows/s */
        s->task_retrain[1] = 2;
        s->rho = 10;               /* near-uniform BPR negatives (docs/results.md) */
    } else { /* beauty, toys, lastfm: T1 only, early stopping on validation */
        s->channels = 128; /* 64 measured lower on Toys and Beauty (docs/results.md) */
        s->t1_tie = 1;       /* tied item embedding and dropout: the two changes that */
        s->dropout[0] = 0.5; /* moved Beauty and Toys (docs/results.md, T1-only pilots) */
        s->dense_epochs[0] = 100;
        s->retrain_epochs[0] = 100;
        s->batch[0] = 256;
        s->lr[0] = 8e-3; /* 1e-3 left the model under-trained at 76 steps per epoch */
        s->patience = 8; /* validation NDCG@20 is noisy at this lr (docs/results.md) */
    }
}

static void apply_quick(cli *c)
{
    cp_settings *s = &c->set;
    s->channels = 16;
    for (int w = 0; w < 2; w++) {
        s->dense_epochs[w] = 1;
        s->retrain_epochs[w] = 1;
    }
    for (int k = 0; k < CD_MAX_TASKS; k++)
        s->task_dense[k] = s->task_retrain[k] = -1;
    if (s->patience > 0)
        s->patience = 1;
}

static int parse_methods(const opt_pair *p, int *want)
{
    memset(want, 0, sizeof(int) * CP_N_METHODS);
    char *dup = strdup(p->val), *save = NULL;
    if (!dup)
        die_usage("out of memory");
    int n = 0;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        int found = 0;
        if (!strcmp(tok, "all")) {
            for (int k = 0; k < CP_N_METHODS; k++)
                want[k] = 1;
            found = 1;
        }
        for (int k = 0; k < CP_N_METHODS && !found; k++)
            if (!strcmp(tok, cp_method_names[k])) {
                want[k] = 1;
                found = 1;
            }
        if (!found) {
            char bad[64];
            snprintf(bad, sizeof bad, "%s", tok);
            free(dup);
            die_usage("%s: unknown method '%s' (conure, sinmo, sinmoall, fineall, all)",
                      p->where, bad);
        }
        n++;
    }
    free(dup);
    if (!n)
        die_usage("%s: empty method list", p->where);
    return 0;
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static void resolve_data_dir(cli *c)
{
    cd_config *d = &c->data;
    if (c->data_given) {
        if (!is_dir(d->data_dir)) {
            fprintf(stderr, "%s: data directory '%s' not found\n", prog, d->data_dir);
            exit(1);
        }
        return;
    }
    const char *sub = cd_preset_shared_dir(d->preset);
    if (!sub) {
        const char *env = getenv("CONURE_DEFAULT_DATA");
        const char *cands[3] = {env, CONURE_SOURCE_DATA, CONURE_INSTALL_DATA};
        for (int i = 0; i < 3; i++)
            if (cands[i] && is_dir(cands[i])) {
                snprintf(d->data_dir, sizeof d->data_dir, "%s", cands[i]);
                return;
            }
        fprintf(stderr,
                "%s: the embedded default dataset was not found (looked in %s and %s); give "
                "--data DIR\n",
                prog, CONURE_SOURCE_DATA, CONURE_INSTALL_DATA);
        exit(1);
    }
    const char *env = getenv("CONURE_SHARED_DATA");
    snprintf(d->data_dir, sizeof d->data_dir, "%s/%s", env && *env ? env : "../shared/data", sub);
    if (!is_dir(d->data_dir)) {
        fprintf(stderr,
                "%s: preset %s: data directory '%s' not found (give --data DIR, or set "
                "CONURE_SHARED_DATA to the folder that holds %s/)\n",
                prog, d->preset, d->data_dir, sub);
        exit(1);
    }
}

/* Builds the settings from the option list for `run` (is_eval = 0) or `eval`. */
static void build_cli(cli *c, const opt_list *l, int is_eval)
{
    memset(c, 0, sizeof *c);
    const char *preset = "default";
    for (size_t i = 0; i < l->n; i++) {
        if (l->v[i].id == O_PRESET)
            preset = l->v[i].val;
        if (l->v[i].id == O_QUICK)
            c->quick = 1;
    }
    if (cd_preset_t1_only(preset) < 0)
        die_usage("unknown preset '%s' (default, ml100k, beauty, toys, lastfm)", preset);
    preset_defaults(c, preset);
    snprintf(c->data.preset, sizeof c->data.preset, "%s", preset);
    if (c->quick)
        apply_quick(c);
    c->progress_mode = -1;
    int t1only = cd_preset_t1_only(preset);
    for (int k = 0; k < CP_N_METHODS; k++)
        c->want[k] = t1only ? (k == CP_CONURE || k == CP_SINMO) : 1;
    cp_settings *s = &c->set;
    static const int eval_ok[] = {O_PRESET, O_DATA, O_RESULTS, O_MODEL, O_THREADS, O_BACKEND,
                                  O_EVAL_BATCH, O_EXCL_HIST, O_NO_EXCL_HIST, O_SKIP_BAD,
                                  O_PROGRESS, O_QUIET, O_VERBOSE, O_HELP};
    for (size_t i = 0; i < l->n; i++) {
        const opt_pair *p = &l->v[i];
        if (is_eval) {
            int ok = 0;
            for (size_t q = 0; q < sizeof eval_ok / sizeof eval_ok[0]; q++)
                ok |= eval_ok[q] == p->id;
            if (!ok)
                die_usage("%s: not an option of 'eval' (the model file fixes the model, its "
                          "seed and max_len)",
                          p->where);
        }
        switch (p->id) {
        case O_PRESET:
        case O_QUICK:
        case O_HELP:
            break;
        case O_DATA:
            copy_str(c->data.data_dir, sizeof c->data.data_dir, p);
            c->data_given = 1;
            break;
        case O_RESULTS:
            c->results = p->val;
            break;
        case O_MODEL:
            c->model = p->val;
            break;
        case O_RESUME:
            c->resume = p->val;
            break;
        case O_METHODS:
            parse_methods(p, c->want);
            c->methods_given = 1;
            break;
        case O_TASKS:
            s->n_tasks = (int)parse_int(p, 1, CD_MAX_TASKS);
            break;
        case O_SEED:
            s->seed = (uint64_t)parse_int(p, 0, LLONG_MAX);
            break;
        case O_THREADS:
            s->threads = (int)parse_int(p, 0, 1024);
            break;
        case O_BACKEND:
            copy_str(s->backend, sizeof s->backend, p);
            break;
        case O_CHANNELS:
            s->channels = (int)parse_int(p, 1, 4096);
            break;
        case O_KERNEL:
            s->kernel_width = (int)parse_int(p, 1, 16);
            break;
        case O_DILATIONS:
            copy_str(s->dilations, sizeof s->dilations, p);
            break;
        case O_BLOCK_ORDER:
            copy_str(s->block_order, sizeof s->block_order, p);
            break;
        case O_MAX_LEN:
            c->data.max_len = (int)parse_int(p, 1, 65534);
            break;
        case O_WINDOWS:
            if (!strcmp(p->val, "all"))
                c->data.windows = CD_WINDOWS_ALL;
            else if (!strcmp(p->val, "last"))
                c->data.windows = CD_WINDOWS_LAST;
            else
                die_usage("%s: '%s' is not 'all' or 'last'", p->where, p->val);
            break;
        case O_T1_EPOCHS:
            parse_pair_ints(p, &s->dense_epochs[0], &s->retrain_epochs[0]);
            break;
        case O_TASK_EPOCHS:
            parse_pair_ints(p, &s->dense_epochs[1], &s->retrain_epochs[1]);
            break;
        case O_EPOCHS: {
            /* K:D,R for task K */
            char *colon = strchr(p->val, ':');
            if (!colon)
                die_usage("%s: '%s' is not TASK:DENSE,RETRAIN", p->where, p->val);
            *colon = '\0';
            opt_pair head = *p, rest = *p;
            head.val = p->val;
            rest.val = colon + 1;
            int k = (int)parse_int(&head, 1, CD_MAX_TASKS);
            parse_pair_ints(&rest, &s->task_dense[k - 1], &s->task_retrain[k - 1]);
            *colon = ':';
            break;
        }
        case O_T1_BATCH:
            s->batch[0] = (int)parse_int(p, 1, 65536);
            break;
        case O_TASK_BATCH:
            s->batch[1] = (int)parse_int(p, 1, 65536);
            break;
        case O_T1_LR:
            s->lr[0] = parse_real(p, 1e-12, 1);
            break;
        case O_TASK_LR:
            s->lr[1] = parse_real(p, 1e-12, 1);
            break;
        case O_T1_TIE:
            s->t1_tie = 1;
            break;
        case O_NO_T1_TIE:
            s->t1_tie = 0;
            break;
        case O_T1_DROPOUT:
            s->dropout[0] = parse_real(p, 0, 0.9);
            break;
        case O_TASK_DROPOUT:
            s->dropout[1] = parse_real(p, 0, 0.9);
            break;
        case O_T1_LOSS:
            copy_str(s->t1_loss, sizeof s->t1_loss, p);
            break;
        case O_CLASS_LOSS:
            copy_str(s->class_loss, sizeof s->class_loss, p);
            break;
        case O_NEGATIVES:
            s->negatives = (int)parse_int(p, 0, INT32_MAX);
            break;
        case O_L2:
            s->l2 = parse_real(p, 0, 10);
            break;
        case O_RHO:
            s->rho = parse_real(p, 1e-9, 10);
            break;
        case O_RELEASE:
            s->release_ratio = parse_real(p, 0, 0.999999);
            break;
        case O_PATIENCE:
            s->patience = (int)parse_int(p, 0, 100000);
            break;
        case O_EVAL_BATCH:
            s->eval_batch = (int)parse_int(p, 1, 65536);
            break;
        case O_EXCL_HIST:
            c->data.exclude_history = 1;
            break;
        case O_NO_EXCL_HIST:
            c->data.exclude_history = 0;
            break;
        case O_SKIP_BAD:
            c->data.skip_bad_lines = 1;
            break;
        case O_PROGRESS:
            if (!strcmp(p->val, "auto"))
                c->progress_mode = -1;
            else if (!strcmp(p->val, "none"))
                c->progress_mode = 0;
            else if (!strcmp(p->val, "plain"))
                c->progress_mode = 1;
            else if (!strcmp(p->val, "terminal"))
                c->progress_mode = 2;
            else
                die_usage("%s: '%s' is not auto, plain, terminal or none", p->where, p->val);
            break;
        case O_QUIET:
            c->progress_mode = 0;
            break;
        case O_VERBOSE:
            s->verbose = 1;
            break;
        default:
            die_usage("%s: not handled", p->where);
        }
    }
    c->data.seed = s->seed;
    if (c->progress_mode < 0)
        c->progress_mode = isatty(fileno(stderr)) ? 2 : 1;
    s->progress = c->progress_mode;
    resolve_data_dir(c);
}

static const char *backend_name(const cp_settings *s)
{
    if (s->backend[0])
        return s->backend;
    const char *env = getenv("CONURE_BACKEND");
    return env && *env ? env : "blis";
}

static void print_dataset(const cd_dataset *ds)
{
    fprintf(stderr, "dataset %s (%s): %d users (%d dropped), %d items, %lld events", ds->preset,
            ds->data_dir, ds->n_users, ds->n_dropped_users, ds->vocab_size - 1,
            (long long)ds->n_interactions);
    if (ds->n_bad_lines)
        fprintf(stderr, ", %ld bad lines skipped", ds->n_bad_lines);
    fputc('\n', stderr);
    for (int i = 0; i < ds->n_tasks; i++) {
        const cd_task *t = &ds->tasks[i];
        fprintf(stderr, "  T%d %-12s %-14s %6d targets  train %6d  test %6d  (%s)\n", i + 1,
                t->name, cres_kind_name(t->kind), t->n_targets, t->n_train, t->test.n, t->desc);
    }
}

/* ------------------------------------------------------------------------ */
/* Subcommands                                                               */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: conure run  [options]                 learn the preset's tasks (Conure + baselines)\n"
            "       conure eval --model FILE [options]    reload a model file and evaluate it\n"
            "       conure info FILE                      describe a model file\n"
            "       conure --version | help\n"
            "\n"
            "data and output:\n"
            "  --preset NAME        default (embedded ml-latest-small), ml100k, beauty, toys, lastfm\n"
            "  --data DIR           dataset directory (default: embedded data, or\n"
            "                       $CONURE_SHARED_DATA/<preset dir>, else ../shared/data/<preset dir>)\n"
            "  --config FILE        read 'key = value' options (long names) at this position\n"
            "  --results FILE       write the results as JSON\n"
            "  --model FILE         run: save the Conure model; eval: the model to evaluate\n"
            "  --resume FILE        run: continue a saved Conure model with the next task(s)\n"
            "  --methods LIST       conure,sinmo,sinmoall,fineall or all (default: all;\n"
            "                       T1-only presets: conure,sinmo)\n"
            "  --tasks N            learn only tasks 1..N of the preset\n"
            "  --skip-bad-lines     drop and count malformed input lines instead of failing\n"
            "  --exclude-history / --no-exclude-history   rank next items without the user's\n"
            "                       history (default: on for T1-only presets, off otherwise)\n"
            "model and schedule:\n"
            "  --seed N  --threads N (0 = all CPUs)  --backend NAME  --quick (short test schedule)\n"
            "  --channels N  --kernel-width N  --dilations LIST  --block-order pre_norm|post_norm\n"
            "  --max-len N  --windows all|last\n"
            "  --t1-epochs D,R  --task-epochs D,R  --epochs TASK:D,R (one task)\n"
            "  --t1-batch N  --task-batch N\n"
            "  --t1-lr X  --task-lr X  --t1-dropout P  --task-dropout P  --[no-]t1-tie-embedding\n"
            "  --t1-loss NAME  --class-loss NAME  --negatives N\n"
            "  --l2 X  --rho X  --release-ratio X  --patience N  --eval-batch N\n"
            "  --progress auto|plain|terminal|none  --quiet  --verbose\n"
            "See examples/conure/README.md, docs/protocol.md and docs/data.md.\n");
}

static int load_model(const char *path, const cp_settings *s, conure_model **out)
{
    conure_options *o = NULL;
    conure_status st = conure_options_create(&o);
    if (st == CONURE_OK)
        st = conure_options_set_int(o, "threads", s ? s->threads : 1);
    if (st == CONURE_OK && s && s->backend[0])
        st = conure_options_set_string(o, "backend", s->backend);
    if (st == CONURE_OK)
        st = conure_model_load(path, o, out);
    conure_options_free(o);
    if (st != CONURE_OK) {
        const char *d = conure_last_error();
        fprintf(stderr, "%s: %s: cannot load model: %s%s%s\n", prog, path,
                conure_status_string(st), d && *d ? ": " : "", d ? d : "");
        return -1;
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    opt_list l = {0};
    parse_argv(argc, argv, &l);
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].id == O_HELP) {
            usage(stdout);
            opts_free(&l);
            return 0;
        }
    cli c;
    build_cli(&c, &l, 0);
    double t0 = now_s();
    int rc = 1;
    conure_model *m = NULL;
    cd_dataset ds;
    memset(&ds, 0, sizeof ds);
    cp_method_result *res = calloc(CP_N_METHODS, sizeof *res);
    if (!res) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    if (c.resume) {
        if (c.methods_given && (c.want[CP_SINMO] || c.want[CP_SINMOALL] || c.want[CP_FINEALL]))
            die_usage("--resume continues a Conure model: only --methods conure applies");
        for (int k = 0; k < CP_N_METHODS; k++)
            c.want[k] = k == CP_CONURE;
        if (load_model(c.resume, &c.set, &m))
            goto out;
        int64_t ml = 0, seed = 0, ch = 0;
        if (conure_model_get_int(m, "max_len", &ml) != CONURE_OK ||
            conure_model_get_int(m, "seed", &seed) != CONURE_OK ||
            conure_model_get_int(m, "channels", &ch) != CONURE_OK) {
            fprintf(stderr, "%s: %s: %s\n", prog, c.resume, conure_last_error());
            goto out;
        }
        /* the dataset must be the one the model was trained on */
        c.data.max_len = (int)ml - 1;
        c.data.seed = c.set.seed = (uint64_t)seed;
        c.set.channels = (int)ch;
    }
    if (c.model && !c.want[CP_CONURE])
        die_usage("--model saves the Conure model: add conure to --methods");
    char err[1024];
    if (cd_build(&c.data, &ds, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto out;
    }
    if (c.set.progress)
        print_dataset(&ds);
    cp_run run;
    memset(&run, 0, sizeof run);
    run.ds = &ds;
    run.set = &c.set;
    cp_metrics pop[CD_MAX_TASKS];
    if (cp_evaluate_popularity(&run, pop)) {
        fprintf(stderr, "%s: popularity: %s\n", prog, run.err);
        goto out;
    }
    if (c.want[CP_CONURE]) {
        if (cp_run_conure(&run, &m, &res[CP_CONURE])) {
            fprintf(stderr, "%s: conure: %s\n", prog, run.err);
            goto out;
        }
    }
    if (cp_run_baselines(&run, c.want, res)) {
        fprintf(stderr, "%s: baselines: %s\n", prog, run.err);
        goto out;
    }
    cres_print(stdout, &ds, res, pop);
    fflush(stdout);
    int64_t threads_used = c.set.threads;
    if (m)
        conure_model_get_int(m, "threads", &threads_used);
    if (c.model) {
        conure_status st = conure_model_save(m, c.model, 0);
        if (st != CONURE_OK) {
            fprintf(stderr, "%s: %s: cannot save the model: %s: %s\n", prog, c.model,
                    conure_status_string(st), conure_last_error());
            goto out;
        }
        if (c.set.progress)
            fprintf(stderr, "model saved to %s\n", c.model);
    }
    if (c.results) {
        cres_info info;
        memset(&info, 0, sizeof info);
        info.command = "run";
        info.backend = backend_name(&c.set);
        info.threads = c.set.threads;
        info.threads_used = threads_used;
        info.quick = c.quick;
        info.wall_s = now_s() - t0;
        info.resumed_from = c.resume;
        info.model_out = c.model;
        info.config_file = l.config_file;
        info.popularity = pop;
        if (cres_write_json(c.results, &info, &ds, &c.set, res, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", prog, err);
            goto out;
        }
        if (c.set.progress)
            fprintf(stderr, "results written to %s\n", c.results);
    }
    if (c.set.progress)
        fprintf(stderr, "total %.1f s\n", now_s() - t0);
    rc = 0;
out:
    conure_model_free(m);
    cd_free(&ds);
    free(res);
    opts_free(&l);
    return rc;
}

static int cmd_eval(int argc, char **argv)
{
    opt_list l = {0};
    parse_argv(argc, argv, &l);
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].id == O_HELP) {
            usage(stdout);
            opts_free(&l);
            return 0;
        }
    cli c;
    build_cli(&c, &l, 1);
    if (!c.model)
        die_usage("eval needs --model FILE");
    double t0 = now_s();
    int rc = 1;
    conure_model *m = NULL;
    cd_dataset ds;
    memset(&ds, 0, sizeof ds);
    cp_method_result *res = calloc(CP_N_METHODS, sizeof *res);
    char err[1024];
    if (!res)
        goto out;
    if (load_model(c.model, &c.set, &m))
        goto out;
    /* a model saved mid-task can still be scored (with its current phase) */
    if (conure_model_set_int(m, "eval_unfinished", 1) != CONURE_OK) {
        fprintf(stderr, "%s: %s\n", prog, conure_last_error());
        goto out;
    }
    int64_t ml = 0, seed = 0, ch = 0, nt = 0, mode = 0;
    if (conure_model_get_int(m, "max_len", &ml) != CONURE_OK ||
        conure_model_get_int(m, "seed", &seed) != CONURE_OK ||
        conure_model_get_int(m, "channels", &ch) != CONURE_OK ||
        conure_model_get_int(m, "n_tasks", &nt) != CONURE_OK ||
        conure_model_get_int(m, "training_mode", &mode) != CONURE_OK) {
        fprintf(stderr, "%s: %s: %s\n", prog, c.model, conure_last_error());
        goto out;
    }
    c.data.max_len = (int)ml - 1;
    c.data.seed = c.set.seed = (uint64_t)seed;
    c.set.channels = (int)ch;
    if (cd_build(&c.data, &ds, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        goto out;
    }
    cp_run run;
    memset(&run, 0, sizeof run);
    run.ds = &ds;
    run.set = &c.set;
    if (cp_check_model(&run, m)) {
        fprintf(stderr, "%s: %s: %s\n", prog, c.model, run.err);
        goto out;
    }
    cp_metrics pop[CD_MAX_TASKS];
    if (cp_evaluate_popularity(&run, pop)) {
        fprintf(stderr, "%s: popularity: %s\n", prog, run.err);
        goto out;
    }
    /* report under the method the model's training mode stands for */
    cp_method_result *r = &res[mode == 0 ? CP_CONURE : CP_SINMOALL];
    r->n_tasks = (int)nt;
    r->n_models = 1;
    for (int32_t i = 0; i < (int32_t)nt; i++)
        if (cp_evaluate(&run, m, i + 1, &ds.tasks[i], &ds.tasks[i].test, &r->final[i])) {
            fprintf(stderr, "%s: %s\n", prog, run.err);
            goto out;
        }
    if (conure_model_get_int(m, "n_parameters", &r->stored_parameters) != CONURE_OK ||
        (mode == 0 && conure_model_capacity(m, -1, r->capacity, (int32_t)nt + 1) != CONURE_OK)) {
        fprintf(stderr, "%s: %s\n", prog, conure_last_error());
        goto out;
    }
    r->ran = 1;
    r->wall_s = now_s() - t0;
    cres_print(stdout, &ds, res, pop);
    if (c.results) {
        cres_info info;
        memset(&info, 0, sizeof info);
        info.command = "eval";
        info.backend = backend_name(&c.set);
        info.threads = c.set.threads;
        info.threads_used = c.set.threads;
        conure_model_get_int(m, "threads", &info.threads_used);
        info.wall_s = now_s() - t0;
        info.model_in = c.model;
        info.config_file = l.config_file;
        info.popularity = pop;
        if (cres_write_json(c.results, &info, &ds, &c.set, res, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", prog, err);
            goto out;
        }
    }
    rc = 0;
out:
    conure_model_free(m);
    cd_free(&ds);
    free(res);
    opts_free(&l);
    return rc;
}

static const char *kind_text(int32_t k)
{
    return k == CONURE_TASK_NEXT_ITEM ? "next-item"
           : k == CONURE_TASK_ITEM_REC ? "item-rec"
           : k == CONURE_TASK_CLASSIFICATION ? "classification" : "?";
}

static const char *phase_text(int32_t p)
{
    return p == CONURE_PHASE_DENSE ? "dense" : p == CONURE_PHASE_RETRAIN ? "retrain"
                                           : p == CONURE_PHASE_DONE ? "done" : "?";
}

static int cmd_info(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            printf("usage: conure info FILE\n");
            return 0;
        }
        die_usage("usage: conure info FILE");
    }
    const char *path = argv[1];
    conure_model *m = NULL;
    if (load_model(path, NULL, &m))
        return 1;
    static const char *const keys[] = {"vocab_size", "channels", "kernel_width", "n_blocks",
                                       "n_conv_tensors", "max_len", "receptive_field", "seed",
                                       "training_mode", "block_order", "n_parameters", "n_tasks"};
    int64_t v[sizeof keys / sizeof keys[0]];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (conure_model_get_int(m, keys[i], &v[i]) != CONURE_OK) {
            fprintf(stderr, "%s: %s: %s\n", prog, path, conure_last_error());
            conure_model_free(m);
            return 1;
        }
    struct stat st;
    long long bytes = stat(path, &st) == 0 ? (long long)st.st_size : -1;
    printf("model file       %s (%lld bytes)\n", path, bytes);
    printf("vocab_size       %lld (items 1..%lld, 0 = padding)\n", (long long)v[0],
           (long long)v[0] - 1);
    printf("channels         %lld\n", (long long)v[1]);
    printf("kernel_width     %lld\n", (long long)v[2]);
    printf("blocks           %lld (%lld conv tensors, receptive field %lld positions)\n",
           (long long)v[3], (long long)v[4], (long long)v[6]);
    printf("max_len          %lld\n", (long long)v[5]);
    printf("seed             %lld\n", (long long)v[7]);
    printf("training_mode    %s\n", v[8] == 0 ? "conure" : "finetune");
    printf("block_order      %s\n", v[9] == 0 ? "pre_norm" : "post_norm");
    printf("parameters       %lld stored floats\n", (long long)v[10]);
    int32_t nt = (int32_t)v[11];
    printf("tasks            %d\n", nt);
    int64_t *cap = calloc((size_t)nt + 1, sizeof *cap);
    int rc = 0;
    if (!cap) {
        conure_model_free(m);
        return 1;
    }
    if (conure_model_capacity(m, -1, cap, nt + 1) != CONURE_OK) {
        fprintf(stderr, "%s: %s: capacity: %s\n", prog, path, conure_last_error());
        rc = 1;
    }
    int64_t total = 0;
    for (int32_t i = 0; i <= nt; i++)
        total += cap[i];
    for (int32_t i = 1; i <= nt && rc == 0; i++) {
        int32_t kind = 0, n = 0, phase = 0;
        if (conure_model_task_info(m, i, &kind, &n, &phase) != CONURE_OK) {
            fprintf(stderr, "%s: %s: task %d: %s\n", prog, path, i, conure_last_error());
            rc = 1;
            break;
        }
        printf("  T%-3d %-15s %8d targets  phase %-8s", i, kind_text(kind), n, phase_text(phase));
        if (v[8] == 0 && total > 0)
            printf("  owns %lld conv weights (%.2f%%)", (long long)cap[i],
                   100.0 * (double)cap[i] / (double)total);
        putchar('\n');
    }
    if (rc == 0 && total > 0)
        printf("capacity         %lld conv weights, %lld free (%.2f%%)\n", (long long)total,
               (long long)cap[0], 100.0 * (double)cap[0] / (double)total);
    free(cap);
    conure_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval"))
        return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "info"))
        return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("conure (libconure %s, built against %s)\n", conure_version_string(),
               CONURE_VERSION_STRING);
        return 0;
    }
    die_usage("unknown command '%s' (run, eval, info, help)", cmd);
}
