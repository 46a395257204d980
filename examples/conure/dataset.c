/* Presets, id remapping and splits of the `conure` program.  The protocol is
 * described in docs/protocol.md; this file is its implementation. */
#define _POSIX_C_SOURCE 200809L
#include "dataset.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Random numbers                                                            */
/* ------------------------------------------------------------------------ */

void cd_rng_seed(cd_rng *r, uint64_t seed, uint64_t stream)
{
    r->s = seed ^ (stream * 0xD1B54A32D192ED03ULL) ^ 0x243F6A8885A308D3ULL;
    (void)cd_rng_next(r);
}

uint64_t cd_rng_next(cd_rng *r)
{
    /* splitmix64 (S. Vigna): a 64-bit Weyl sequence through a finaliser */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t cd_rng_below(cd_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t x = cd_rng_next(r);
        if (x < lim)
            return x % n;
    }
}

void cd_shuffle_i32(cd_rng *r, int32_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cd_rng_below(r, i);
        int32_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ------------------------------------------------------------------------ */
/* Presets                                                                   */
/* ------------------------------------------------------------------------ */

const char *const cd_preset_names[] = {"default", "ml100k", "beauty", "toys", "lastfm", NULL};

int cd_preset_t1_only(const char *p)
{
    if (!strcmp(p, "default") || !strcmp(p, "ml100k"))
        return 0;
    if (!strcmp(p, "beauty") || !strcmp(p, "toys") || !strcmp(p, "lastfm"))
        return 1;
    return -1;
}

const char *cd_preset_shared_dir(const char *p)
{
    if (!strcmp(p, "ml100k"))
        return "movielens-100k";
    if (!strcmp(p, "beauty"))
        return "amazon-beauty";
    if (!strcmp(p, "toys"))
        return "amazon-toys-and-games";
    if (!strcmp(p, "lastfm"))
        return "lastfm-s3rec";
    return NULL;
}

static const char *s3rec_file(const char *p)
{
    if (!strcmp(p, "beauty"))
        return "Beauty.txt";
    if (!strcmp(p, "toys"))
        return "Toys_and_Games.txt";
    return "LastFM.txt";
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static void errf(char *err, size_t cap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void errf(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static void *xcalloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size);
}

static int cmp_rating(const void *a, const void *b)
{
    const cr_rating *x = a, *y = b;
    if (x->user != y->user)
        return x->user < y->user ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->item != y->item)
        return x->item < y->item ? -1 : 1;
    return 0;
}

int cd_group_by_user(cr_ratings *r, cd_user_seqs *out)
{
    memset(out, 0, sizeof *out);
    if (r->n > 0)
        qsort(r->v, r->n, sizeof *r->v, cmp_rating);
    size_t nu = 0;
    for (size_t i = 0; i < r->n; i++)
        if (i == 0 || r->v[i].user != r->v[i - 1].user)
            nu++;
    if (nu > INT32_MAX)
        return -1;
    out->user = xcalloc(nu, sizeof *out->user);
    out->off = xcalloc(nu + 1, sizeof *out->off);
    out->ev = xcalloc(r->n, sizeof *out->ev);
    if (!out->user || !out->off || !out->ev) {
        cd_user_seqs_free(out);
        return -1;
    }
    if (r->n)
        memcpy(out->ev, r->v, r->n * sizeof *r->v);
    size_t u = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i == 0 || r->v[i].user != r->v[i - 1].user) {
            out->user[u] = r->v[i].user;
            out->off[u] = i;
            u++;
        }
    }
    out->off[nu] = r->n;
    out->n_users = (int32_t)nu;
    return 0;
}

void cd_user_seqs_free(cd_user_seqs *s)
{
    if (!s)
        return;
    free(s->user);
    free(s->off);
    free(s->ev);
    memset(s, 0, sizeof *s);
}

typedef struct rank_item {
    int64_t orig, count;
    int32_t idx;
} rank_item;

static int cmp_rank(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    if (x->orig != y->orig)
        return x->orig < y->orig ? -1 : 1;
    return 0;
}

int cd_rank_by_count(const int64_t *orig, const int64_t *count, size_t n, int32_t *order)
{
    rank_item *t = xcalloc(n, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < n; i++) {
        t[i].orig = orig[i];
        t[i].count = count[i];
        t[i].idx = (int32_t)i;
    }
    if (n)
        qsort(t, n, sizeof *t, cmp_rank);
    for (size_t i = 0; i < n; i++)
        order[i] = t[i].idx;
    free(t);
    return 0;
}

size_t cd_prefix_len(size_t n)
{
    return (n * 8u) / 10u;
}

void cd_fill_row(int32_t *row, int32_t L, const int32_t *seq, size_t n)
{
    size_t take = n < (size_t)L ? n : (size_t)L;
    size_t pad = (size_t)L - take;
    for (size_t i = 0; i < pad; i++)
        row[i] = 0;
    for (size_t i = 0; i < take; i++)
        row[pad + i] = seq[n - take + i];
}

size_t cd_cut_windows(const int32_t *seq, size_t n, int32_t L, int mode, int32_t *out,
                      size_t max_out)
{
    size_t w = (size_t)L + 1, count = 0, end = n;
    if (n < 2)
        return 0;
    for (;;) {
        size_t start = end > w ? end - w : 0;
        if (end - start >= 2) {
            if (out && count < max_out)
                cd_fill_row(out + count * w, (int32_t)w, seq + start, end - start);
            count++;
        }
        if (mode != CD_WINDOWS_ALL || start == 0)
            break;
        end = start + 1; /* the next window ends with this window's first item */
    }
    return count;
}

/* Sorted map original id -> dense id. */
typedef struct idmap {
    size_t n;
    int64_t *orig; /* sorted */
    int32_t *dense;
} idmap;

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b ? 1 : 0;
}

static void idmap_free(idmap *m)
{
    free(m->orig);
    free(m->dense);
    memset(m, 0, sizeof *m);
}

static int32_t idmap_get(const idmap *m, int64_t orig)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (m->orig[mid] < orig)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && m->orig[lo] == orig ? m->dense[lo] : -1;
}

/* Distinct ids of all[n_all] with their counts among counted[n_counted]
 * (every counted id must be in all), ranked by decreasing count.  The dense id
 * of rank k is k + base.  Fills map, and rank_orig[k] = original id of rank k
 * when rank_orig is not NULL (caller frees). */
static int build_ranked_map(const int64_t *all, size_t n_all, const int64_t *counted,
                            size_t n_counted, int32_t base, idmap *map, int64_t **rank_orig)
{
    memset(map, 0, sizeof *map);
    int64_t *d = xcalloc(n_all, sizeof *d);
    if (!d)
        return -1;
    if (n_all)
        memcpy(d, all, n_all * sizeof *d);
    if (n_all)
        qsort(d, n_all, sizeof *d, cmp_i64);
    size_t nd = 0;
    for (size_t i = 0; i < n_all; i++)
        if (i == 0 || d[i] != d[i - 1])
            d[nd++] = d[i];
    int64_t *cnt = xcalloc(nd, sizeof *cnt);
    int32_t *order = xcalloc(nd, sizeof *order);
    map->dense = xcalloc(nd, sizeof *map->dense);
    if (!cnt || !order || !map->dense) {
        free(d);
        free(cnt);
        free(order);
        idmap_free(map);
        return -1;
    }
    map->orig = d;
    map->n = nd;
    for (size_t i = 0; i < n_counted; i++) {
        /* binary search in d */
        size_t lo = 0, hi = nd;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (d[mid] < counted[i])
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < nd && d[lo] == counted[i])
            cnt[lo]++;
    }
    if (cd_rank_by_count(d, cnt, nd, order)) {
        free(cnt);
        free(order);
        idmap_free(map);
        return -1;
    }
    for (size_t k = 0; k < nd; k++)
        map->dense[order[k]] = (int32_t)k + base;
    if (rank_orig) {
        *rank_orig = xcalloc(nd, sizeof **rank_orig);
        if (!*rank_orig) {
            free(cnt);
            free(order);
            idmap_free(map);
            return -1;
        }
        for (size_t k = 0; k < nd; k++)
            (*rank_orig)[k] = d[order[k]];
    }
    free(cnt);
    free(order);
    return 0;
}

/* Growable int32 vector. */
typedef struct ivec {
    int32_t *v;
    size_t n, cap;
} ivec;

static int ivec_push(ivec *a, int32_t x)
{
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 256;
        int32_t *nv = realloc(a->v, nc * sizeof *nv);
        if (!nv)
            return -1;
        a->v = nv;
        a->cap = nc;
    }
    a->v[a->n++] = x;
    return 0;
}

static void examples_free(cd_examples *e)
{
    free(e->row);
    free(e->target);
    free(e->mask_off);
    free(e->mask);
    memset(e, 0, sizeof *e);
}

/* Builder for evaluation examples. */
typedef struct ex_builder {
    ivec row, target, mask_off, mask;
} ex_builder;

static int exb_add(ex_builder *b, int32_t row, int32_t target, const int32_t *mask, size_t nm)
{
    if (b->mask_off.n == 0 && ivec_push(&b->mask_off, 0))
        return -1;
    if (ivec_push(&b->row, row) || ivec_push(&b->target, target))
        return -1;
    for (size_t i = 0; i < nm; i++)
        if (mask[i] != target && ivec_push(&b->mask, mask[i]))
            return -1;
    if (b->mask.n > INT32_MAX)
        return -1;
    return ivec_push(&b->mask_off, (int32_t)b->mask.n);
}

static int exb_finish(ex_builder *b, cd_examples *e)
{
    if (b->mask_off.n == 0 && ivec_push(&b->mask_off, 0))
        return -1;
    e->n = (int32_t)b->row.n;
    e->row = b->row.v;
    e->target = b->target.v;
    e->mask_off = b->mask_off.v;
    e->mask = b->mask.v;
    memset(b, 0, sizeof *b);
    return 0;
}

static void exb_free(ex_builder *b)
{
    free(b->row.v);
    free(b->target.v);
    free(b->mask_off.v);
    free(b->mask.v);
    memset(b, 0, sizeof *b);
}

static int cmp_i32(const void *x, const void *y)
{
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return a < b ? -1 : a > b ? 1 : 0;
}

static size_t unique_sorted_i32(int32_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_i32);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

void cd_free(cd_dataset *ds)
{
    if (!ds)
        return;
    free(ds->item_orig);
    free(ds->rows);
    free(ds->windows_buf);
    for (int t = 0; t < ds->n_tasks; t++) {
        cd_task *k = &ds->tasks[t];
        free(k->class_names);
        free(k->train_row);
        free(k->train_target);
        examples_free(&k->val);
        examples_free(&k->test);
    }
    memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------------------ */
/* Later tasks (Conure protocol)                                             */
/* ------------------------------------------------------------------------ */

/* State shared by the later-task builders of one dataset. */
typedef struct later_ctx {
    cd_dataset *ds;
    const cd_user_seqs *us;
    const int32_t *kept;     /* [ds->n_users] index into us of each kept user */
    const size_t *cut;       /* [ds->n_users] prefix length of each kept user */
    const uint8_t *is_train; /* [ds->n_users] */
} later_ctx;

static int new_task(cd_dataset *ds, cd_task **out, const char *name, const char *desc, int kind,
                    char *err, size_t cap)
{
    if (ds->n_tasks == CD_MAX_TASKS) {
        errf(err, cap, "too many tasks");
        return -1;
    }
    cd_task *t = &ds->tasks[ds->n_tasks++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->desc, sizeof t->desc, "%s", desc);
    t->kind = kind;
    *out = t;
    return 0;
}

/* Item recommendation: labels = distinct items of the user's label window
 * rated >= thr. */
static int add_item_task(later_ctx *c, const char *name, const char *desc, float thr, char *err,
                         size_t cap)
{
    cd_dataset *ds = c->ds;
    int64_t *all = NULL, *counted = NULL;
    size_t n_all = 0, n_counted = 0, cap_all = 0;
    idmap map = {0};
    ex_builder te = {0};
    ivec tr_row = {0}, tr_tgt = {0};
    int32_t *ulab = NULL;
    int rc = -1;
    for (int32_t u = 0; u < ds->n_users; u++) {
        size_t o = c->us->off[c->kept[u]], n = c->us->off[c->kept[u] + 1] - o;
        cap_all += n - c->cut[u];
    }
    all = xcalloc(cap_all, sizeof *all);
    counted = xcalloc(cap_all, sizeof *counted);
    ulab = xcalloc(cap_all, sizeof *ulab);
    if (!all || !counted || !ulab)
        goto oom;
    /* pass 1: the catalogue and training counts */
    for (int32_t u = 0; u < ds->n_users; u++) {
        size_t o = c->us->off[c->kept[u]], n = c->us->off[c->kept[u] + 1] - o;
        for (size_t i = c->cut[u]; i < n; i++) {
            const cr_rating *e = &c->us->ev[o + i];
            if (e->rating < thr)
                continue;
            all[n_all++] = e->item;
            if (c->is_train[u])
                counted[n_counted++] = e->item;
        }
    }
    if (build_ranked_map(all, n_all, counted, n_counted, 0, &map, NULL))
        goto oom;
    if (map.n < 2) {
        errf(err, cap, "task %s: fewer than 2 distinct target items", name);
        goto out;
    }
    cd_task *t;
    if (new_task(ds, &t, name, desc, CD_KIND_ITEM_REC, err, cap))
        goto out;
    t->n_targets = (int32_t)map.n;
    /* pass 2: examples; per user distinct labels in time order */
    for (int32_t u = 0; u < ds->n_users; u++) {
        size_t o = c->us->off[c->kept[u]], n = c->us->off[c->kept[u] + 1] - o;
        size_t nl = 0;
        for (size_t i = c->cut[u]; i < n; i++) {
            const cr_rating *e = &c->us->ev[o + i];
            if (e->rating < thr)
                continue;
            int32_t id = idmap_get(&map, e->item);
            int dup = 0;
            for (size_t j = 0; j < nl; j++)
                dup |= ulab[j] == id;
            if (!dup)
                ulab[nl++] = id;
        }
        if (nl == 0)
            continue;
        if (c->is_train[u])
            t->n_train_users++;
        else
            t->n_test_users++;
        for (size_t j = 0; j < nl; j++) {
            if (c->is_train[u]) {
                if (ivec_push(&tr_row, u) || ivec_push(&tr_tgt, ulab[j]))
                    goto oom;
            } else if (exb_add(&te, u, ulab[j], ulab, nl)) {
                goto oom;
            }
        }
    }
    if (tr_row.n == 0 || te.row.n == 0) {
        errf(err, cap, "task %s: no training or no test examples", name);
        goto out;
    }
    t->n_train = (int32_t)tr_row.n;
    t->train_row = tr_row.v;
    t->train_target = tr_tgt.v;
    memset(&tr_row, 0, sizeof tr_row);
    memset(&tr_tgt, 0, sizeof tr_tgt);
    if (exb_finish(&te, &t->test))
        goto oom;
    rc = 0;
    goto out;
oom:
    errf(err, cap, "out of memory building task %s", name);
out:
    free(all);
    free(counted);
    free(ulab);
    idmap_free(&map);
    exb_free(&te);
    free(tr_row.v);
    free(tr_tgt.v);
    return rc;
}

/* Classification: labels[u] is user u's class name ("" = no label). */
static int add_class_task(later_ctx *c, const char *name, const char *desc,
                          char (*labels)[CR_NAME_MAX], char *err, size_t cap)
{
    cd_dataset *ds = c->ds;
    int32_t nu = ds->n_users;
    char (*names)[CR_NAME_MAX] = xcalloc((size_t)nu, sizeof *names);
    int64_t *cnt = xcalloc((size_t)nu, sizeof *cnt);
    int64_t *key = xcalloc((size_t)nu, sizeof *key);
    int32_t *order = xcalloc((size_t)nu, sizeof *order);
    int32_t *cls_of_name = xcalloc((size_t)nu, sizeof *cls_of_name);
    int32_t *ucls = xcalloc((size_t)nu, sizeof *ucls);
    ex_builder te = {0};
    ivec tr_row = {0}, tr_tgt = {0};
    int rc = -1;
    int32_t nn = 0;
    if (!names || !cnt || !key || !order || !cls_of_name || !ucls)
        goto oom;
    for (int32_t u = 0; u < nu; u++) {
        ucls[u] = -1;
        if (!labels[u][0])
            continue;
        int32_t k = 0;
        while (k < nn && strcmp(names[k], labels[u]) != 0)
            k++;
        if (k == nn)
            memcpy(names[nn++], labels[u], CR_NAME_MAX);
        ucls[u] = k;
        if (c->is_train[u])
            cnt[k]++;
    }
    if (nn < 2) {
        errf(err, cap, "task %s: fewer than 2 classes", name);
        goto out;
    }
    /* ties by name: key = rank of the name in alphabetical order */
    for (int32_t k = 0; k < nn; k++) {
        int64_t r = 0;
        for (int32_t j = 0; j < nn; j++)
            r += strcmp(names[j], names[k]) < 0;
        key[k] = r;
    }
    if (cd_rank_by_count(key, cnt, (size_t)nn, order))
        goto oom;
    cd_task *t;
    if (new_task(ds, &t, name, desc, CD_KIND_CLASSIFICATION, err, cap))
        goto out;
    t->n_targets = nn;
    t->class_names = xcalloc((size_t)nn, sizeof *t->class_names);
    if (!t->class_names)
        goto oom;
    for (int32_t k = 0; k < nn; k++) {
        cls_of_name[order[k]] = k;
        memcpy(t->class_names[k], names[order[k]], CR_NAME_MAX);
    }
    for (int32_t u = 0; u < nu; u++) {
        if (ucls[u] < 0)
            continue;
        int32_t y = cls_of_name[ucls[u]];
        if (c->is_train[u]) {
            t->n_train_users++;
            if (ivec_push(&tr_row, u) || ivec_push(&tr_tgt, y))
                goto oom;
        } else {
            t->n_test_users++;
            if (exb_add(&te, u, y, NULL, 0))
                goto oom;
        }
    }
    if (tr_row.n == 0 || te.row.n == 0) {
        errf(err, cap, "task %s: no training or no test examples", name);
        goto out;
    }
    t->n_train = (int32_t)tr_row.n;
    t->train_row = tr_row.v;
    t->train_target = tr_tgt.v;
    memset(&tr_row, 0, sizeof tr_row);
    memset(&tr_tgt, 0, sizeof tr_tgt);
    if (exb_finish(&te, &t->test))
        goto oom;
    rc = 0;
    goto out;
oom:
    errf(err, cap, "out of memory building task %s", name);
out:
    free(names);
    free(cnt);
    free(key);
    free(order);
    free(cls_of_name);
    free(ucls);
    exb_free(&te);
    free(tr_row.v);
    free(tr_tgt.v);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* T1 and the Conure protocol                                                */
/* ------------------------------------------------------------------------ */

#define MIN_EVENTS 5

/* Builds T1, the rows and the user split from grouped sequences; then the
 * caller adds the later tasks with a later_ctx.  kept/cut/is_train are
 * allocated here and returned. */
static int build_conure_t1(cd_dataset *ds, const cd_user_seqs *us, uint64_t seed,
                           int32_t **kept_out, size_t **cut_out, uint8_t **train_out, char *err,
                           size_t cap)
{
    int32_t L = ds->max_len;
    int32_t nk = 0;
    int32_t *kept = xcalloc((size_t)us->n_users, sizeof *kept);
    size_t *cut = xcalloc((size_t)us->n_users, sizeof *cut);
    uint8_t *is_train = xcalloc((size_t)us->n_users, 1);
    int32_t *perm = NULL, *seq = NULL, *hist = NULL;
    int64_t *all = NULL, *counted = NULL;
    idmap map = {0};
    ex_builder te = {0};
    size_t n_all = 0, n_counted = 0, maxn = 0;
    int rc = -1;
    if (!kept || !cut || !is_train)
        goto oom;
    for (int32_t u = 0; u < us->n_users; u++) {
        size_t n = us->off[u + 1] - us->off[u];
        if (n < MIN_EVENTS) {
            ds->n_dropped_users++;
            continue;
        }
        kept[nk] = u;
        cut[nk] = cd_prefix_len(n);
        if (n > maxn)
            maxn = n;
        nk++;
    }
    if (nk < 10) {
        errf(err, cap, "only %d users have at least %d events: too few", nk, MIN_EVENTS);
        goto out;
    }
    ds->n_users = nk;
    all = xcalloc(us->off[us->n_users], sizeof *all);
    counted = xcalloc(us->off[us->n_users], sizeof *counted);
    seq = xcalloc(maxn, sizeof *seq);
    hist = xcalloc(maxn, sizeof *hist);
    if (!all || !counted || !seq || !hist)
        goto oom;
    for (int32_t k = 0; k < nk; k++) {
        size_t o = us->off[kept[k]];
        for (size_t i = 0; i < cut[k]; i++) {
            all[n_all++] = us->ev[o + i].item;
            if (i + 1 < cut[k])
                counted[n_counted++] = us->ev[o + i].item;
        }
    }
    if (build_ranked_map(all, n_all, counted, n_counted, 1, &map, &ds->item_orig))
        goto oom;
    /* item_orig was filled rank 0.. = dense 1..; shift to index by dense id */
    {
        int64_t *io = xcalloc(map.n + 1, sizeof *io);
        if (!io)
            goto oom;
        io[0] = -1;
        memcpy(io + 1, ds->item_orig, map.n * sizeof *io);
        free(ds->item_orig);
        ds->item_orig = io;
    }
    if (map.n + 1 > INT32_MAX)
        goto oom;
    ds->vocab_size = (int32_t)map.n + 1;
    ds->n_rows = nk;
    ds->rows = xcalloc((size_t)nk * (size_t)L, sizeof *ds->rows);
    if (!ds->rows)
        goto oom;
    size_t nw = 0;
    for (int32_t k = 0; k < nk; k++)
        nw += cd_cut_windows(NULL, cut[k] - 1, L, ds->windows, NULL, 0);
    if (nw > INT32_MAX / (size_t)(L + 1))
        goto oom;
    ds->windows_buf = xcalloc(nw * (size_t)(L + 1), sizeof *ds->windows_buf);
    if (!ds->windows_buf)
        goto oom;
    cd_task *t1;
    if (new_task(ds, &t1, "next_item", "T1: next item of the time-ordered sequence",
                 CD_KIND_NEXT_ITEM, err, cap))
        goto out;
    t1->n_targets = ds->vocab_size;
    size_t w = 0;
    for (int32_t k = 0; k < nk; k++) {
        size_t o = us->off[kept[k]];
        for (size_t i = 0; i < cut[k]; i++)
            seq[i] = idmap_get(&map, us->ev[o + i].item);
        size_t ntrain = cut[k] - 1; /* P_u minus its last item */
        cd_fill_row(ds->rows + (size_t)k * (size_t)L, L, seq, ntrain);
        w += cd_cut_windows(seq, ntrain, L, ds->windows,
                            ds->windows_buf + w * (size_t)(L + 1), nw - w);
        size_t nh = 0;
        if (ds->exclude_history) {
            memcpy(hist, seq, ntrain * sizeof *hist);
            nh = unique_sorted_i32(hist, ntrain);
        }
        if (exb_add(&te, k, seq[cut[k] - 1], hist, nh))
            goto oom;
    }
    ds->n_windows = (int32_t)w;
    t1->n_train = (int32_t)w;
    t1->n_train_users = nk;
    t1->n_test_users = nk;
    if (exb_finish(&te, &t1->test))
        goto oom;
    /* the seeded 80/20 user split of the later tasks */
    perm = xcalloc((size_t)nk, sizeof *perm);
    if (!perm)
        goto oom;
    for (int32_t k = 0; k < nk; k++)
        perm[k] = k;
    cd_rng r;
    cd_rng_seed(&r, seed, 0x5eed5011u);
    cd_shuffle_i32(&r, perm, (size_t)nk);
    int32_t ntr = (int32_t)(((int64_t)nk * 8 + 5) / 10);
    for (int32_t k = 0; k < ntr; k++)
        is_train[perm[k]] = 1;
    *kept_out = kept;
    *cut_out = cut;
    *train_out = is_train;
    kept = NULL;
    cut = NULL;
    is_train = NULL;
    rc = 0;
    goto out;
oom:
    errf(err, cap, "out of memory building T1");
out:
    free(kept);
    free(cut);
    free(is_train);
    free(perm);
    free(seq);
    free(hist);
    free(all);
    free(counted);
    idmap_free(&map);
    exb_free(&te);
    return rc;
}

static void path_join(char *out, size_t cap, const char *dir, const char *file)
{
    snprintf(out, cap, "%s/%s", dir, file);
}

static int reader_fail(cr_ctx *ctx, char *err, size_t cap)
{
    errf(err, cap, "%s", ctx->err);
    return -1;
}

static int find_user_profile(const cr_users *p, int64_t id)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->v[i].id == id)
            return (int)i;
    return -1;
}

static const char *age_bucket(int age)
{
    if (age < 18)
        return "under 18";
    if (age <= 24)
        return "18-24";
    if (age <= 34)
        return "25-34";
    if (age <= 44)
        return "35-44";
    if (age <= 49)
        return "45-49";
    if (age <= 55)
        return "50-55";
    return "56+";
}

static int cmp_item_id(const void *a, const void *b)
{
    const cr_item *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id ? 1 : 0;
}

static const cr_item *find_item(const cr_items *it, int64_t id)
{
    cr_item key;
    key.id = id;
    return it->n ? bsearch(&key, it->v, it->n, sizeof *it->v, cmp_item_id) : NULL;
}

static int build_movielens(const cd_config *cfg, cd_dataset *ds, cr_ctx *ctx, char *err,
                           size_t cap)
{
    int ml100k = !strcmp(cfg->preset, "ml100k");
    char path[1200];
    cr_ratings r = {0};
    cr_users prof = {0};
    cr_items movies = {0};
    cd_user_seqs us = {0};
    int32_t *kept = NULL;
    size_t *cut = NULL;
    uint8_t *is_train = NULL;
    char (*labels)[CR_NAME_MAX] = NULL;
    int rc = -1;

    if (ml100k) {
        path_join(path, sizeof path, cfg->data_dir, "u.data");
        if (cr_read_ml100k_ratings(path, &r, ctx))
            return reader_fail(ctx, err, cap);
        path_join(path, sizeof path, cfg->data_dir, "u.user");
        if (cr_read_ml100k_users(path, &prof, ctx)) {
            reader_fail(ctx, err, cap);
            goto out;
        }
    } else {
        path_join(path, sizeof path, cfg->data_dir, "ratings.csv");
        if (cr_read_mlcsv_ratings(path, &r, ctx))
            return reader_fail(ctx, err, cap);
        path_join(path, sizeof path, cfg->data_dir, "movies.csv");
        if (cr_read_mlcsv_movies(path, &movies, ctx)) {
            reader_fail(ctx, err, cap);
            goto out;
        }
        if (movies.n)
            qsort(movies.v, movies.n, sizeof *movies.v, cmp_item_id);
    }
    ds->n_interactions = (int64_t)r.n;
    if (cd_group_by_user(&r, &us)) {
        errf(err, cap, "out of memory grouping ratings");
        goto out;
    }
    if (build_conure_t1(ds, &us, cfg->seed, &kept, &cut, &is_train, err, cap))
        goto out;
    later_ctx c = {ds, &us, kept, cut, is_train};
    labels = xcalloc((size_t)ds->n_users, sizeof *labels);
    if (!labels) {
        errf(err, cap, "out of memory");
        goto out;
    }
    if (ml100k) {
        if (add_item_task(&c, "liked_items",
                          "T2: items rated 4 or 5 in the user's last 20% (by time)", 4.0f, err,
                          cap))
            goto out;
        for (int pass = 0; pass < 3; pass++) {
            for (int32_t u = 0; u < ds->n_users; u++) {
                int p = find_user_profile(&prof, us.user[kept[u]]);
                labels[u][0] = '\0';
                if (p < 0)
                    continue;
                const cr_user *x = &prof.v[p];
                if (pass == 0)
                    snprintf(labels[u], CR_NAME_MAX, "%s", x->gender == 'M' ? "M" : "F");
                else if (pass == 1)
                    snprintf(labels[u], CR_NAME_MAX, "%s", age_bucket(x->age));
                else
                    snprintf(labels[u], CR_NAME_MAX, "%s", prof.occ_names[x->occupation]);
            }
            static const char *const nm[3] = {"gender", "age", "occupation"};
            static const char *const ds_[3] = {
                "T3: gender (M/F)",
                "T4: age bucket (<18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+)",
                "T5: occupation (21 classes)"};
            if (add_class_task(&c, nm[pass], ds_[pass], labels, err, cap))
                goto out;
        }
    } else {
        if (add_item_task(&c, "liked_items",
                          "T2: items rated >= 4.5 in the user's last 20% (by time)", 4.5f, err,
                          cap))
            goto out;
        int64_t gcount[CR_MAX_GENRES];
        for (int32_t u = 0; u < ds->n_users; u++) {
            size_t o = us.off[kept[u]], n = us.off[kept[u] + 1] - o;
            memset(gcount, 0, sizeof gcount);
            for (size_t i = cut[u]; i < n; i++) {
                const cr_item *m = find_item(&movies, us.ev[o + i].item);
                if (!m)
                    continue;
                for (int g = 0; g < movies.n_genres; g++)
                    if (m->genres & (1u << g))
                        gcount[g]++;
            }
            int best = -1;
            for (int g = 0; g < movies.n_genres; g++) {
                if (gcount[g] == 0)
                    continue;
                if (best < 0 || gcount[g] > gcount[best] ||
                    (gcount[g] == gcount[best] &&
                     strcmp(movies.genre_names[g], movies.genre_names[best]) < 0))
                    best = g;
            }
            labels[u][0] = '\0';
            if (best >= 0)
                snprintf(labels[u], CR_NAME_MAX, "%s", movies.genre_names[best]);
        }
        if (add_class_task(&c, "top_genre",
                           "T3: the genre the user rates most often in the last 20% (by time)",
                           labels, err, cap))
            goto out;
    }
    rc = 0;
out:
    cr_ratings_free(&r);
    cr_users_free(&prof);
    cr_items_free(&movies);
    cd_user_seqs_free(&us);
    free(kept);
    free(cut);
    free(is_train);
    free(labels);
    return rc;
}

/* T1-only presets: the S3-Rec protocol (last item test, second-to-last
 * validation, the rest trains). */
static int build_s3rec(const cd_config *cfg, cd_dataset *ds, cr_ctx *ctx, char *err, size_t cap)
{
    char path[1200];
    cr_seqs s = {0};
    idmap map = {0};
    int64_t *counted = NULL;
    int32_t *seq = NULL, *hist = NULL;
    ex_builder va = {0}, te = {0};
    int32_t L = ds->max_len;
    int rc = -1;
    size_t n_counted = 0, maxn = 0;
    path_join(path, sizeof path, cfg->data_dir, s3rec_file(cfg->preset));
    if (cr_read_s3rec(path, &s, ctx))
        return reader_fail(ctx, err, cap);
    size_t nu = 0;
    for (size_t u = 0; u < s.n; u++) {
        size_t n = s.off[u + 1] - s.off[u];
        if (n < 3) {
            ds->n_dropped_users++;
            continue;
        }
        nu++;
        if (n > maxn)
            maxn = n;
    }
    if (nu < 2 || nu > INT32_MAX / 2) {
        errf(err, cap, "%s: %zu users with at least 3 items: too few", path, nu);
        goto out;
    }
    ds->n_interactions = (int64_t)s.off[s.n];
    counted = xcalloc(s.off[s.n], sizeof *counted);
    seq = xcalloc(maxn, sizeof *seq);
    hist = xcalloc(maxn, sizeof *hist);
    if (!counted || !seq || !hist)
        goto oom;
    for (size_t u = 0; u < s.n; u++) {
        size_t n = s.off[u + 1] - s.off[u];
        if (n < 3)
            continue;
        for (size_t i = 0; i + 2 < n; i++)
            counted[n_counted++] = s.items[s.off[u] + i];
    }
    if (build_ranked_map(s.items, s.off[s.n], counted, n_counted, 1, &map, &ds->item_orig))
        goto oom;
    {
        int64_t *io = xcalloc(map.n + 1, sizeof *io);
        if (!io)
            goto oom;
        io[0] = -1;
        memcpy(io + 1, ds->item_orig, map.n * sizeof *io);
        free(ds->item_orig);
        ds->item_orig = io;
    }
    ds->vocab_size = (int32_t)map.n + 1;
    ds->n_users = (int32_t)nu;
    ds->n_rows = (int32_t)(2 * nu);
    ds->rows = xcalloc((size_t)ds->n_rows * (size_t)L, sizeof *ds->rows);
    if (!ds->rows)
        goto oom;
    size_t nw = 0;
    for (size_t u = 0; u < s.n; u++) {
        size_t n = s.off[u + 1] - s.off[u];
        if (n >= 3)
            nw += cd_cut_windows(NULL, n - 2, L, ds->windows, NULL, 0);
    }
    if (nw > INT32_MAX / (size_t)(L + 1))
        goto oom;
    ds->windows_buf = xcalloc(nw * (size_t)(L + 1), sizeof *ds->windows_buf);
    if (!ds->windows_buf)
        goto oom;
    cd_task *t1;
    if (new_task(ds, &t1, "next_item",
                 "T1: next item (S3-Rec protocol: last item test, second-to-last validation)",
                 CD_KIND_NEXT_ITEM, err, cap))
        goto out;
    t1->n_targets = ds->vocab_size;
    size_t w = 0;
    int32_t k = 0;
    for (size_t u = 0; u < s.n; u++) {
        size_t n = s.off[u + 1] - s.off[u];
        if (n < 3)
            continue;
        for (size_t i = 0; i < n; i++)
            seq[i] = idmap_get(&map, s.items[s.off[u] + i]);
        w += cd_cut_windows(seq, n - 2, L, ds->windows, ds->windows_buf + w * (size_t)(L + 1),
                            nw - w);
        int32_t rv = 2 * k, rt = 2 * k + 1;
        cd_fill_row(ds->rows + (size_t)rv * (size_t)L, L, seq, n - 2);
        cd_fill_row(ds->rows + (size_t)rt * (size_t)L, L, seq, n - 1);
        size_t nh = 0;
        if (ds->exclude_history) {
            memcpy(hist, seq, (n - 2) * sizeof *hist);
            nh = unique_sorted_i32(hist, n - 2);
        }
        if (exb_add(&va, rv, seq[n - 2], hist, nh))
            goto oom;
        if (ds->exclude_history) {
            memcpy(hist, seq, (n - 1) * sizeof *hist);
            nh = unique_sorted_i32(hist, n - 1);
        }
        if (exb_add(&te, rt, seq[n - 1], hist, nh))
            goto oom;
        k++;
    }
    ds->n_windows = (int32_t)w;
    t1->n_train = (int32_t)w;
    t1->n_train_users = (int32_t)nu;
    t1->n_test_users = (int32_t)nu;
    if (exb_finish(&va, &t1->val) || exb_finish(&te, &t1->test))
        goto oom;
    rc = 0;
    goto out;
oom:
    errf(err, cap, "out of memory building the dataset");
out:
    cr_seqs_free(&s);
    idmap_free(&map);
    free(counted);
    free(seq);
    free(hist);
    exb_free(&va);
    exb_free(&te);
    return rc;
}

int cd_build(const cd_config *cfg, cd_dataset *ds, char *err, size_t errcap)
{
    memset(ds, 0, sizeof *ds);
    int t1only = cd_preset_t1_only(cfg->preset);
    if (t1only < 0) {
        errf(err, errcap, "unknown preset '%s'", cfg->preset);
        return -1;
    }
    if (cfg->max_len < 1 || cfg->max_len > 65535) {
        errf(err, errcap, "max_len %d out of range 1..65535", cfg->max_len);
        return -1;
    }
    snprintf(ds->preset, sizeof ds->preset, "%s", cfg->preset);
    snprintf(ds->data_dir, sizeof ds->data_dir, "%s", cfg->data_dir);
    ds->conure_protocol = !t1only;
    ds->max_len = cfg->max_len;
    ds->windows = cfg->windows >= 0 ? cfg->windows : t1only ? CD_WINDOWS_LAST : CD_WINDOWS_ALL;
    ds->exclude_history = cfg->exclude_history >= 0 ? cfg->exclude_history : t1only;
    cr_ctx ctx;
    cr_ctx_init(&ctx, cfg->skip_bad_lines);
    int rc = t1only ? build_s3rec(cfg, ds, &ctx, err, errcap)
                    : build_movielens(cfg, ds, &ctx, err, errcap);
    ds->n_bad_lines = ctx.n_bad_lines;
    if (rc) {
        cd_free(ds);
        return -1;
    }
    return 0;
}
