/* Dataset file readers (see readers.h and docs/data.md). */
#define _POSIX_C_SOURCE 200809L
#include "readers.h"

#include <csv.h>

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Context and messages                                                      */
/* ------------------------------------------------------------------------ */

void cr_ctx_init(cr_ctx *ctx, int skip_bad_lines)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->skip_bad_lines = skip_bad_lines ? 1 : 0;
}

#if defined(__GNUC__)
#define CR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CR_PRINTF(a, b)
#endif

static void set_err(cr_ctx *ctx, const char *fmt, ...) CR_PRINTF(2, 3);
static void set_err(cr_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
}

/* A malformed line: returns 0 when the caller should skip it and go on, -1
 * when reading must stop (ctx->err set). */
static int bad_line(cr_ctx *ctx, const char *path, long lineno, const char *fmt, ...)
    CR_PRINTF(4, 5);
static int bad_line(cr_ctx *ctx, const char *path, long lineno, const char *fmt, ...)
{
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (ctx->skip_bad_lines) {
        if (ctx->n_bad_lines == 0)
            snprintf(ctx->first_bad, sizeof ctx->first_bad, "%s:%ld: %s", path, lineno, what);
        ctx->n_bad_lines++;
        return 0;
    }
    snprintf(ctx->err, sizeof ctx->err, "%s:%ld: %s", path, lineno, what);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Whole-file loading and line iteration                                     */
/* ------------------------------------------------------------------------ */

typedef struct lines {
    char *data;
    size_t size, pos;
    long lineno;
    const char *path;
} lines;

static int lines_open(lines *L, const char *path, cr_ctx *ctx)
{
    memset(L, 0, sizeof *L);
    L->path = path;
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(ctx, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        set_err(ctx, "%s: out of memory", path);
        return -1;
    }
    for (;;) {
        if (n == cap) {
            if (cap > ((size_t)1 << 40)) {
                free(buf);
                fclose(f);
                set_err(ctx, "%s: file too large", path);
                return -1;
            }
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                set_err(ctx, "%s: out of memory", path);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                free(buf);
                fclose(f);
                set_err(ctx, "%s: read error: %s", path, strerror(e));
                return -1;
            }
            break;
        }
    }
    fclose(f);
    buf[n] = '\0';
    L->data = buf;
    L->size = n;
    return 0;
}

static void lines_close(lines *L)
{
    free(L->data);
    L->data = NULL;
}

/* Next non-empty line without its line end (LF, CRLF).  1 = got one, 0 = end. */
static int lines_next(lines *L, const char **line, size_t *len)
{
    while (L->pos < L->size) {
        const char *s = L->data + L->pos;
        const char *nl = memchr(s, '\n', L->size - L->pos);
        size_t n = nl ? (size_t)(nl - s) : L->size - L->pos;
        L->pos += n + (nl ? 1 : 0);
        L->lineno++;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        *line = s;
        *len = n;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Field helpers                                                             */
/* ------------------------------------------------------------------------ */

int cr_parse_i64(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    int neg = 0;
    if (len > 0 && s[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == len)
        return -1;
    uint64_t v = 0;
    const uint64_t lim = neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (lim - d) / 10u)
            return -1;
        v = v * 10u + d;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

int cr_parse_f64(const char *s, size_t len, double *out)
{
    char tmp[64];
    if (len == 0 || len >= sizeof tmp)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+' || c == 'e' ||
              c == 'E'))
            return -1; /* also rejects spaces, "inf", "nan", hex */
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    char *end = NULL;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end != tmp + len || errno == ERANGE || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

/* Fields of one record, collected from libcsv's callbacks into buf. */
typedef struct csv_acc {
    char *buf;
    size_t cap, used;
    const char **fields;
    int max_fields, n;
    const char *why; /* first problem seen by a callback, or NULL */
} csv_acc;

static void csv_on_field(void *s, size_t n, void *data)
{
    csv_acc *a = data;
    if (a->why)
        return;
    if (a->n == a->max_fields) {
        a->why = "too many fields";
        return;
    }
    if (n + 1 > a->cap - a->used) {
        a->why = "line too long";
        return;
    }
    if (n)
        memcpy(a->buf + a->used, s, n);
    a->fields[a->n++] = a->buf + a->used;
    a->used += n;
    a->buf[a->used++] = '\0';
}

static void csv_on_row(int c, void *data)
{
    (void)c;
    (void)data;
}

/* RFC 4180 parsing is libcsv's (Debian's libcsv3, strict mode); this only
 * collects the fields and names the failure. */
int cr_csv_split(const char *line, size_t len, char sep, char *buf, size_t cap,
                 const char **fields, int max_fields, const char **why)
{
    *why = "";
    if (cap == 0) {
        *why = "line too long";
        return -1;
    }
    if (len == 0) { /* one empty field */
        if (max_fields < 1) {
            *why = "too many fields";
            return -1;
        }
        buf[0] = '\0';
        fields[0] = buf;
        return 1;
    }
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        *why = "out of memory";
        return -1;
    }
    csv_set_delim(&p, (unsigned char)sep);
    csv_acc a = {buf, cap, 0, fields, max_fields, 0, NULL};
    int bad_quote = csv_parse(&p, line, len, csv_on_field, csv_on_row, &a) != len;
    int unterminated = !bad_quote && csv_fini(&p, csv_on_field, csv_on_row, &a) != 0;
    int nomem = csv_error(&p) == CSV_ENOMEM;
    csv_free(&p);
    if (nomem) {
        *why = "out of memory";
        return -1;
    }
    if (bad_quote) {
        *why = "text after a closing quote, or a quote inside an unquoted field";
        return -1;
    }
    if (unterminated) {
        *why = "unterminated quoted field";
        return -1;
    }
    if (a.why) {
        *why = a.why;
        return -1;
    }
    return a.n;
}

/* Splits on a single-character separator without quoting; fields are
 * (pointer, length) pairs into the line.  Returns the count or -1 if more than
 * max. */
static int split_plain(const char *line, size_t len, char sep, const char **f, size_t *fl,
                       int max)
{
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || line[i] == sep) {
            if (n == max)
                return -1;
            f[n] = line + start;
            fl[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    return n;
}

static int has_nul(const char *s, size_t n)
{
    return memchr(s, '\0', n) != NULL;
}

/* ------------------------------------------------------------------------ */
/* Growable arrays                                                           */
/* ------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) {
        if (nc > SIZE_MAX / 2 / elem)
            return -1;
        nc *= 2;
    }
    void *np = realloc(*p, nc * elem);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static int ratings_push(cr_ratings *r, cr_rating x)
{
    if (grow((void **)&r->v, &r->cap, r->n + 1, sizeof *r->v))
        return -1;
    r->v[r->n++] = x;
    return 0;
}

void cr_ratings_free(cr_ratings *r)
{
    if (!r)
        return;
    free(r->v);
    memset(r, 0, sizeof *r);
}

void cr_users_free(cr_users *u)
{
    if (!u)
        return;
    free(u->v);
    free(u->occ_names);
    memset(u, 0, sizeof *u);
}

void cr_items_free(cr_items *it)
{
    if (!it)
        return;
    for (size_t i = 0; i < it->n; i++)
        free(it->v[i].title);
    free(it->v);
    memset(it, 0, sizeof *it);
}

void cr_seqs_free(cr_seqs *s)
{
    if (!s)
        return;
    free(s->user);
    free(s->off);
    free(s->items);
    free(s->toff);
    free(s->targets);
    memset(s, 0, sizeof *s);
}

/* Row building for cr_seqs: items of the row being built are appended to
 * items/targets; seqs_end_row closes it.  With transfer = 1 the toff/targets
 * arrays are kept too. */
static int seqs_init(cr_seqs *s, int transfer)
{
    memset(s, 0, sizeof *s);
    s->off = malloc(sizeof *s->off * 64);
    s->user = malloc(sizeof *s->user * 64);
    if (!s->off || !s->user)
        return -1;
    s->cap_rows = 64;
    s->off[0] = 0;
    if (transfer) {
        s->toff = malloc(sizeof *s->toff * 64);
        if (!s->toff)
            return -1;
        s->toff[0] = 0;
    }
    return 0;
}

/* The open row's items live at items[off[n] .. cur_items). */
typedef struct seq_builder {
    cr_seqs *s;
    size_t cur_items, cur_targets;
} seq_builder;

static int sb_item(seq_builder *b, int64_t v)
{
    cr_seqs *s = b->s;
    if (grow((void **)&s->items, &s->cap_items, b->cur_items + 1, sizeof *s->items))
        return -1;
    s->items[b->cur_items++] = v;
    return 0;
}

static int sb_target(seq_builder *b, int64_t v)
{
    cr_seqs *s = b->s;
    if (grow((void **)&s->targets, &s->cap_targets, b->cur_targets + 1, sizeof *s->targets))
        return -1;
    s->targets[b->cur_targets++] = v;
    return 0;
}

/* Drops the open row (a bad line being skipped). */
static void sb_rollback(seq_builder *b)
{
    b->cur_items = b->s->off[b->s->n];
    if (b->s->toff)
        b->cur_targets = b->s->toff[b->s->n];
}

static int sb_end_row(seq_builder *b, int64_t user)
{
    cr_seqs *s = b->s;
    if (s->n + 2 > s->cap_rows) {
        size_t nc = s->cap_rows * 2;
        size_t *no = realloc(s->off, nc * sizeof *no);
        if (!no)
            return -1;
        s->off = no;
        int64_t *nu = realloc(s->user, nc * sizeof *nu);
        if (!nu)
            return -1;
        s->user = nu;
        if (s->toff) {
            size_t *nt = realloc(s->toff, nc * sizeof *nt);
            if (!nt)
                return -1;
            s->toff = nt;
        }
        s->cap_rows = nc;
    }
    s->user[s->n] = user;
    s->off[s->n + 1] = b->cur_items;
    if (s->toff)
        s->toff[s->n + 1] = b->cur_targets;
    s->n++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* MovieLens-100K                                                            */
/* ------------------------------------------------------------------------ */

#define OOM(ctx, path) (set_err((ctx), "%s: out of memory", (path)), -1)

int cr_read_ml100k_ratings(const char *path, cr_ratings *out, cr_ctx *ctx)
{
    lines L;
    memset(out, 0, sizeof *out);
    if (lines_open(&L, path, ctx))
        return -1;
    const char *line;
    size_t len;
    int rc = 0;
    while (lines_next(&L, &line, &len)) {
        const char *f[5];
        size_t fl[5];
        int nf = split_plain(line, len, '\t', f, fl, 5);
        int64_t u, it, r, ts;
        if (has_nul(line, len)) {
            rc = bad_line(ctx, path, L.lineno, "line contains a NUL byte");
        } else if (nf != 4) {
            rc = bad_line(ctx, path, L.lineno, "expected 4 tab-separated fields "
                          "(user item rating timestamp), found %s", nf < 0 ? "more" : "fewer");
        } else if (cr_parse_i64(f[0], fl[0], &u) || u < 0) {
            rc = bad_line(ctx, path, L.lineno, "user id '%.*s' is not a non-negative integer",
                          (int)(fl[0] > 40 ? 40 : fl[0]), f[0]);
        } else if (cr_parse_i64(f[1], fl[1], &it) || it < 0) {
            rc = bad_line(ctx, path, L.lineno, "item id '%.*s' is not a non-negative integer",
                          (int)(fl[1] > 40 ? 40 : fl[1]), f[1]);
        } else if (cr_parse_i64(f[2], fl[2], &r) || r < 1 || r > 5) {
            rc = bad_line(ctx, path, L.lineno, "rating '%.*s' is not an integer 1..5",
                          (int)(fl[2] > 40 ? 40 : fl[2]), f[2]);
        } else if (cr_parse_i64(f[3], fl[3], &ts) || ts < 0) {
            rc = bad_line(ctx, path, L.lineno, "timestamp '%.*s' is not a non-negative integer",
                          (int)(fl[3] > 40 ? 40 : fl[3]), f[3]);
        } else {
            cr_rating x = {u, it, ts, (float)r};
            if (ratings_push(out, x)) {
                rc = OOM(ctx, path);
            }
        }
        if (rc)
            break;
    }
    lines_close(&L);
    if (rc)
        cr_ratings_free(out);
    return rc;
}

static int occupation_index(cr_users *u, const char *s, size_t n)
{
    for (int i = 0; i < u->n_occ; i++)
        if (strlen(u->occ_names[i]) == n && memcmp(u->occ_names[i], s, n) == 0)
            return i;
    if (u->n_occ == u->cap_occ) {
        int nc = u->cap_occ ? u->cap_occ * 2 : 32;
        void *np = realloc(u->occ_names, (size_t)nc * sizeof *u->occ_names);
        if (!np)
            return -2;
        u->occ_names = np;
        u->cap_occ = nc;
    }
    memcpy(u->occ_names[u->n_occ], s, n);
    u->occ_names[u->n_occ][n] = '\0';
    return u->n_occ++;
}

int cr_read_ml100k_users(const char *path, cr_users *out, cr_ctx *ctx)
{
    lines L;
    memset(out, 0, sizeof *out);
    if (lines_open(&L, path, ctx))
        return -1;
    const char *line;
    size_t len;
    int rc = 0;
    while (lines_next(&L, &line, &len)) {
        const char *f[6];
        size_t fl[6];
        int nf = split_plain(line, len, '|', f, fl, 6);
        int64_t id, age;
        if (has_nul(line, len)) {
            rc = bad_line(ctx, path, L.lineno, "line contains a NUL byte");
        } else if (nf != 5) {
            rc = bad_line(ctx, path, L.lineno, "expected 5 '|'-separated fields "
                          "(id|age|gender|occupation|zip), found %s", nf < 0 ? "more" : "fewer");
        } else if (cr_parse_i64(f[0], fl[0], &id) || id < 0) {
            rc = bad_line(ctx, path, L.lineno, "user id '%.*s' is not a non-negative integer",
                          (int)(fl[0] > 40 ? 40 : fl[0]), f[0]);
        } else if (cr_parse_i64(f[1], fl[1], &age) || age < 0 || age > 150) {
            rc = bad_line(ctx, path, L.lineno, "age '%.*s' is not an integer 0..150",
                          (int)(fl[1] > 40 ? 40 : fl[1]), f[1]);
        } else if (fl[2] != 1 || (f[2][0] != 'M' && f[2][0] != 'F')) {
            rc = bad_line(ctx, path, L.lineno, "gender '%.*s' is not M or F",
                          (int)(fl[2] > 40 ? 40 : fl[2]), f[2]);
        } else if (fl[3] == 0 || fl[3] >= CR_NAME_MAX) {
            rc = bad_line(ctx, path, L.lineno, "occupation is empty or longer than %d bytes",
                          CR_NAME_MAX - 1);
        } else {
            int occ = occupation_index(out, f[3], fl[3]);
            if (occ < 0 || grow((void **)&out->v, &out->cap, out->n + 1, sizeof *out->v)) {
                rc = OOM(ctx, path);
            } else {
                cr_user x = {id, (int)age, f[2][0], occ};
                out->v[out->n++] = x;
            }
        }
        if (rc)
            break;
    }
    lines_close(&L);
    if (rc)
        cr_users_free(out);
    return rc;
}

static char *latin1_to_utf8(const char *s, size_t n)
{
    char *o = malloc(2 * n + 1);
    if (!o)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            o[k++] = (char)c;
        } else {
            o[k++] = (char)(0xC0 | (c >> 6));
            o[k++] = (char)(0x80 | (c & 0x3F));
        }
    }
    o[k] = '\0';
    return o;
}

static const char *const ml100k_genres[19] = {
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western"};

int cr_read_ml100k_items(const char *path, cr_items *out, cr_ctx *ctx)
{
    lines L;
    memset(out, 0, sizeof *out);
    for (int g = 0; g < 19; g++)
        snprintf(out->genre_names[g], CR_NAME_MAX, "%s", ml100k_genres[g]);
    out->n_genres = 19;
    if (lines_open(&L, path, ctx))
        return -1;
    const char *line;
    size_t len;
    int rc = 0;
    while (lines_next(&L, &line, &len)) {
        const char *f[25];
        size_t fl[25];
        int nf = split_plain(line, len, '|', f, fl, 25);
        int64_t id;
        uint32_t genres = 0;
        int bad_flag = -1;
        if (nf == 24)
            for (int g = 0; g < 19; g++) {
                if (fl[5 + g] != 1 || (f[5 + g][0] != '0' && f[5 + g][0] != '1')) {
                    bad_flag = g;
                    break;
                }
                if (f[5 + g][0] == '1')
                    genres |= 1u << g;
            }
        if (has_nul(line, len)) {
            rc = bad_line(ctx, path, L.lineno, "line contains a NUL byte");
        } else if (nf != 24) {
            rc = bad_line(ctx, path, L.lineno,
                          "expected 24 '|'-separated fields (id|title|release|video "
                          "release|url|19 genre flags), found %s",
                          nf < 0 ? "more" : "fewer");
        } else if (cr_parse_i64(f[0], fl[0], &id) || id < 0) {
            rc = bad_line(ctx, path, L.lineno, "item id '%.*s' is not a non-negative integer",
                          (int)(fl[0] > 40 ? 40 : fl[0]), f[0]);
        } else if (bad_flag >= 0) {
            rc = bad_line(ctx, path, L.lineno, "genre flag %d (%s) is not 0 or 1", bad_flag,
                          ml100k_genres[bad_flag]);
        } else {
            char *title = latin1_to_utf8(f[1], fl[1]);
            if (!title || grow((void **)&out->v, &out->cap, out->n + 1, sizeof *out->v)) {
                free(title);
                rc = OOM(ctx, path);
            } else {
                cr_item x = {id, genres, title};
                out->v[out->n++] = x;
            }
        }
        if (rc)
            break;
    }
    lines_close(&L);
    if (rc)
        cr_items_free(out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* ml-latest-small (CSV)                                                     */
/* ------------------------------------------------------------------------ */

/* Checks the header line against the expected column names. */
static int csv_header(lines *L, const char *const *names, int n, cr_ctx *ctx)
{
    const char *line;
    size_t len;
    if (!lines_next(L, &line, &len)) {
        set_err(ctx, "%s: empty file (expected a header line)", L->path);
        return -1;
    }
    char buf[256];
    const char *f[16];
    const char *why;
    int nf = cr_csv_split(line, len, ',', buf, sizeof buf, f, 16, &why);
    int ok = nf == n;
    for (int i = 0; ok && i < n; i++)
        ok = strcmp(f[i], names[i]) == 0;
    if (!ok) {
        char want[256] = "";
        for (int i = 0; i < n; i++) {
            strncat(want, names[i], sizeof want - strlen(want) - 1);
            if (i + 1 < n)
                strncat(want, ",", sizeof want - strlen(want) - 1);
        }
        set_err(ctx, "%s:%ld: expected the header '%s'", L->path, L->lineno, want);
        return -1;
    }
    return 0;
}

int cr_read_mlcsv_ratings(const char *path, cr_ratings *out, cr_ctx *ctx)
{
    static const char *const hdr[4] = {"userId", "movieId", "rating", "timestamp"};
    lines L;
    memset(out, 0, sizeof *out);
    if (lines_open(&L, path, ctx))
        return -1;
    if (csv_header(&L, hdr, 4, ctx)) {
        lines_close(&L);
        return -1;
    }
    const char *line;
    size_t len;
    int rc = 0;
    char buf[512];
    while (lines_next(&L, &line, &len)) {
        const char *f[5];
        const char *why;
        int nf = has_nul(line, len) ? -2
                                    : cr_csv_split(line, len, ',', buf, sizeof buf, f, 5, &why);
        int64_t u, it, ts;
        double r;
        if (nf == -2) {
            rc = bad_line(ctx, path, L.lineno, "line contains a NUL byte");
        } else if (nf < 0) {
            rc = bad_line(ctx, path, L.lineno, "%s", why);
        } else if (nf != 4) {
            rc = bad_line(ctx, path, L.lineno,
                          "expected 4 fields (userId,movieId,rating,timestamp), found %d", nf);
        } else if (cr_parse_i64(f[0], strlen(f[0]), &u) || u < 0) {
            rc = bad_line(ctx, path, L.lineno, "userId '%.40s' is not a non-negative integer",
                          f[0]);
        } else if (cr_parse_i64(f[1], strlen(f[1]), &it) || it < 0) {
            rc = bad_line(ctx, path, L.lineno, "movieId '%.40s' is not a non-negative integer",
                          f[1]);
        } else if (cr_parse_f64(f[2], strlen(f[2]), &r) || r < 0.5 || r > 5.0) {
            rc = bad_line(ctx, path, L.lineno, "rating '%.40s' is not a number 0.5..5.0", f[2]);
        } else if (cr_parse_i64(f[3], strlen(f[3]), &ts) || ts < 0) {
            rc = bad_line(ctx, path, L.lineno,
                          "timestamp '%.40s' is not a non-negative integer", f[3]);
        } else {
            cr_rating x = {u, it, ts, (float)r};
            if (ratings_push(out, x))
                rc = OOM(ctx, path);
        }
        if (rc)
            break;
    }
    lines_close(&L);
    if (rc)
        cr_ratings_free(out);
    return rc;
}

static int genre_index(cr_items *it, const char *s, size_t n)
{
    for (int i = 0; i < it->n_genres; i++)
        if (strlen(it->genre_names[i]) == n && memcmp(it->genre_names[i], s, n) == 0)
            return i;
    if (it->n_genres == CR_MAX_GENRES || n >= CR_NAME_MAX)
        return -1;
    memcpy(it->genre_names[it->n_genres], s, n);
    it->genre_names[it->n_genres][n] = '\0';
    return it->n_genres++;
}

int cr_read_mlcsv_movies(const char *path, cr_items *out, cr_ctx *ctx)
{
    static const char *const hdr[3] = {"movieId", "title", "genres"};
    lines L;
    memset(out, 0, sizeof *out);
    if (lines_open(&L, path, ctx))
        return -1;
    if (csv_header(&L, hdr, 3, ctx)) {
        lines_close(&L);
        return -1;
    }
    const char *line;
    size_t len;
    int rc = 0;
    size_t bufcap = 4096;
    char *buf = malloc(bufcap);
    if (!buf) {
        lines_close(&L);
        return OOM(ctx, path);
    }
    while (lines_next(&L, &line, &len)) {
        if (len + 8 > bufcap) {
            char *nb = realloc(buf, len + 8);
            if (!nb) {
                rc = OOM(ctx, path);
                break;
            }
            buf = nb;
            bufcap = len + 8;
        }
        const char *f[4];
        const char *why;
        int nf = has_nul(line, len) ? -2
                                    : cr_csv_split(line, len, ',', buf, bufcap, f, 4, &why);
        int64_t id;
        if (nf == -2) {
            rc = bad_line(ctx, path, L.lineno, "line contains a NUL byte");
        } else if (nf < 0) {
            rc = bad_line(ctx, path, L.lineno, "%s", why);
        } else if (nf != 3) {
            rc = bad_line(ctx, path, L.lineno, "expected 3 fields (movieId,title,genres), found %d",
                          nf);
        } else if (cr_parse_i64(f[0], strlen(f[0]), &id) || id < 0) {
            rc = bad_line(ctx, path, L.lineno, "movieId '%.40s' is not a non-negative integer",
                          f[0]);
        } else {
            uint32_t genres = 0;
            int gbad = 0;
            const char *g = f[2];
            if (strcmp(g, "(no genres listed)") != 0) {
                for (;;) {
                    const char *bar = strchr(g, '|');
                    size_t gl = bar ? (size_t)(bar - g) : strlen(g);
                    int gi = gl ? genre_index(out, g, gl) : -1;
                    if (gi < 0) {
                        gbad = 1;
                        break;
                    }
                    genres |= 1u << gi;
                    if (!bar)
                        break;
                    g = bar + 1;
                }
            }
            if (gbad) {
                rc = bad_line(ctx, path, L.lineno,
                              "bad genre list '%.80s' (empty name, or more than %d genres)",
                              f[2], CR_MAX_GENRES);
            } else {
                char *title = strdup(f[1]);
                if (!title || grow((void **)&out->v, &out->cap, out->n + 1, sizeof *out->v)) {
                    free(title);
                    rc = OOM(ctx, path);
                } else {
                    cr_item x = {id, genres, title};
                    out->v[out->n++] = x;
                }
            }
        }
        if (rc)
            break;
    }
    free(buf);
    lines_close(&L);
    if (rc)
        cr_items_free(out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Sequence formats                                                          */
/* ------------------------------------------------------------------------ */

/* Parses a separated list of non-negative ids [s, s+n) into the builder,
 * dropping zeros when drop_zero.  Returns 0, or -1 with *why / the bad token. */
static int parse_id_list(seq_builder *b, const char *s, size_t n, char sep, int drop_zero,
                         int targets, const char **why, char *tok, size_t tokcap)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != sep)
            continue;
        size_t tl = i - start;
        int64_t v;
        if (tl == 0) {
            *why = "empty field";
            return -1;
        }
        if (cr_parse_i64(s + start, tl, &v) || v < 0) {
            snprintf(tok, tokcap, "%.*s", (int)(tl > 40 ? 40 : tl), s + start);
            *why = "not a non-negative integer";
            return -1;
        }
        if (!(drop_zero && v == 0)) {
            if (targets ? sb_target(b, v) : sb_item(b, v)) {
                *why = "out of memory";
                return -2;
            }
        }
        start = i + 1;
    }
    return 0;
}

static int read_authors(const char *path, cr_seqs *out, cr_ctx *ctx, int transfer)
{
    lines L;
    if (seqs_init(out, transfer)) {
        cr_seqs_free(out);
        return OOM(ctx, path);
    }
    if (lines_open(&L, path, ctx)) {
        cr_seqs_free(out);
        return -1;
    }
    seq_builder b = {out, 0, 0};
    const char *line;
    size_t len;
    int rc = 0;
    while (lines_next(&L, &line, &len)) {
        const char *why = "";
        char tok[64] = "";
        int pr = 0;
        size_t src_len = len;
        const char *tgt = NULL;
        size_t tgt_len = 0;
        if (has_nul(line, len)) {
            rc = bad_line(ctx, path, L.lineno, "line contains a NUL byte");
            if (rc)
                break;
            continue;
        }
        if (transfer) {
            const char *sep = NULL;
            for (size_t i = 0; i + 1 < len; i++)
                if (line[i] == ',' && line[i + 1] == ',') {
                    sep = line + i;
                    break;
                }
            if (!sep) {
                rc = bad_line(ctx, path, L.lineno,
                              "no ',,' separator between source items and targets");
                if (rc)
                    break;
                continue;
            }
            src_len = (size_t)(sep - line);
            tgt = sep + 2;
            tgt_len = len - src_len - 2;
            if (tgt_len == 0) {
                rc = bad_line(ctx, path, L.lineno, "no target after ',,'");
                if (rc)
                    break;
                continue;
            }
        }
        if (src_len == 0) {
            why = "empty field";
            pr = -1;
        } else {
            pr = parse_id_list(&b, line, src_len, ',', 1, 0, &why, tok, sizeof tok);
        }
        if (pr == 0 && transfer)
            pr = parse_id_list(&b, tgt, tgt_len, ',', 0, 1, &why, tok, sizeof tok);
        if (pr == -2) {
            rc = OOM(ctx, path);
            break;
        }
        if (pr == -1) {
            sb_rollback(&b);
            if (tok[0])
                rc = bad_line(ctx, path, L.lineno, "item id '%s' is %s", tok, why);
            else
                rc = bad_line(ctx, path, L.lineno, "%s in a comma-separated id list", why);
            if (rc)
                break;
            continue;
        }
        if (sb_end_row(&b, (int64_t)L.lineno)) {
            rc = OOM(ctx, path);
            break;
        }
    }
    lines_close(&L);
    if (rc)
        cr_seqs_free(out);
    return rc;
}

int cr_read_authors_seqs(const char *path, cr_seqs *out, cr_ctx *ctx)
{
    return read_authors(path, out, ctx, 0);
}

int cr_read_authors_transfer(const char *path, cr_seqs *out, cr_ctx *ctx)
{
    return read_authors(path, out, ctx, 1);
}

int cr_read_s3rec(const char *path, cr_seqs *out, cr_ctx *ctx)
{
    lines L;
    if (seqs_init(out, 0)) {
        cr_seqs_free(out);
        return OOM(ctx, path);
    }
    if (lines_open(&L, path, ctx)) {
        cr_seqs_free(out);
        return -1;
    }
    seq_builder b = {out, 0, 0};
    const char *line;
    size_t len;
    int rc = 0;
    while (lines_next(&L, &line, &len)) {
        int64_t user = -1;
        int ntok = 0;
        int bad = 0;
        char tok[48] = "";
        size_t i = 0;
        if (has_nul(line, len))
            bad = 3;
        while (!bad && i < len) {
            while (i < len && (line[i] == ' ' || line[i] == '\t'))
                i++;
            if (i >= len)
                break;
            size_t s = i;
            while (i < len && line[i] != ' ' && line[i] != '\t')
                i++;
            int64_t v;
            if (cr_parse_i64(line + s, i - s, &v) || v < 0) {
                snprintf(tok, sizeof tok, "%.*s", (int)(i - s > 40 ? 40 : i - s), line + s);
                bad = 1;
                break;
            }
            if (ntok == 0) {
                user = v;
            } else if (v == 0) {
                bad = 4;
                break;
            } else if (sb_item(&b, v)) {
                rc = OOM(ctx, path);
                break;
            }
            ntok++;
        }
        if (rc)
            break;
        if (!bad && ntok < 2)
            bad = 2;
        if (bad) {
            sb_rollback(&b);
            if (bad == 1)
                rc = bad_line(ctx, path, L.lineno, "'%s' is not a non-negative integer id", tok);
            else if (bad == 2)
                rc = bad_line(ctx, path, L.lineno, "expected a user id followed by item ids");
            else if (bad == 3)
                rc = bad_line(ctx, path, L.lineno, "line contains a NUL byte");
            else
                rc = bad_line(ctx, path, L.lineno, "item id 0 (ids start at 1)");
            if (rc)
                break;
            continue;
        }
        if (sb_end_row(&b, user)) {
            rc = OOM(ctx, path);
            break;
        }
    }
    lines_close(&L);
    if (rc)
        cr_seqs_free(out);
    return rc;
}
