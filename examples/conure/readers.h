/*
 * Dataset file readers of the `conure` command-line program (docs/data.md).
 *
 * Every reader loads one whole file, splits it into lines (LF or CRLF line
 * ends; a last line without a final newline is accepted; empty lines are
 * ignored) and parses each line strictly.  A malformed line is an error whose
 * message names the file and the 1-based line ("u.data:17: expected 4
 * tab-separated fields, found 3"), unless the caller asked to skip bad lines:
 * then the line is dropped, counted in cr_ctx.n_bad_lines, and the first such
 * message is kept in cr_ctx.first_bad.
 *
 * These readers know file formats only; how users, items and tasks are built
 * from them is the protocol's business (dataset.h, docs/protocol.md).
 */
#ifndef CONURE_CLI_READERS_H
#define CONURE_CLI_READERS_H

#include <stddef.h>
#include <stdint.h>

/** Reader context: options in, diagnostics out. */
typedef struct cr_ctx {
    int skip_bad_lines; /**< in: 1 = drop and count malformed lines, 0 = fail */
    long n_bad_lines;   /**< out: lines dropped (accumulates over calls) */
    char first_bad[512];/**< out: message of the first dropped line ("" if none) */
    char err[512];      /**< out: the error message when a reader returns -1 */
} cr_ctx;

/** Clears a context and sets its skip option. */
void cr_ctx_init(cr_ctx *ctx, int skip_bad_lines);

/** One rating / interaction event. */
typedef struct cr_rating {
    int64_t user;
    int64_t item;
    int64_t ts;    /**< Unix seconds */
    float rating;
} cr_rating;

typedef struct cr_ratings {
    cr_rating *v;
    size_t n, cap;
} cr_ratings;

/** Item sequences in compressed rows: row r holds items[off[r] .. off[r+1]).
 *  For the transfer format the second array pair holds each row's targets.
 *  `user` holds the row's user id where the format has one (S3-Rec), else the
 *  1-based line number. */
typedef struct cr_seqs {
    size_t n;         /**< rows */
    int64_t *user;    /**< [n] */
    size_t *off;      /**< [n+1] */
    int64_t *items;   /**< [off[n]] */
    size_t *toff;     /**< [n+1], transfer format only (else NULL) */
    int64_t *targets; /**< [toff[n]], transfer format only */
    size_t cap_rows, cap_items, cap_targets;
} cr_seqs;

/** MovieLens user profile (u.user). */
typedef struct cr_user {
    int64_t id;
    int age;
    char gender;      /**< 'M' or 'F' */
    int occupation;   /**< index into cr_users.occ_names */
} cr_user;

#define CR_NAME_MAX 48

typedef struct cr_users {
    cr_user *v;
    size_t n, cap;
    char (*occ_names)[CR_NAME_MAX]; /**< occupation names, in order of first appearance */
    int n_occ, cap_occ;
} cr_users;

#define CR_MAX_GENRES 32

/** Movie with its genres as a bit set over cr_items.genre_names. */
typedef struct cr_item {
    int64_t id;
    uint32_t genres;
    char *title;      /**< UTF-8 (u.item's latin-1 is converted) */
} cr_item;

typedef struct cr_items {
    cr_item *v;
    size_t n, cap;
    char genre_names[CR_MAX_GENRES][CR_NAME_MAX];
    int n_genres;
} cr_items;

/* ---- readers: 0 on success, -1 on failure (message in ctx->err) ------- */

/** MovieLens-100K u.data: `user \t item \t rating \t timestamp`, rating 1..5. */
int cr_read_ml100k_ratings(const char *path, cr_ratings *out, cr_ctx *ctx);
/** MovieLens-100K u.user: `id|age|gender|occupation|zip`. */
int cr_read_ml100k_users(const char *path, cr_users *out, cr_ctx *ctx);
/** MovieLens-100K u.item (latin-1): `id|title|release|video release|url|` then
 *  19 genre flags; genre names are u.genre's fixed list. */
int cr_read_ml100k_items(const char *path, cr_items *out, cr_ctx *ctx);
/** ml-latest-small ratings.csv: header `userId,movieId,rating,timestamp`,
 *  rating 0.5..5.0. */
int cr_read_mlcsv_ratings(const char *path, cr_ratings *out, cr_ctx *ctx);
/** ml-latest-small movies.csv: header `movieId,title,genres`, quoted titles,
 *  genres separated by '|' ("(no genres listed)" gives an empty set). */
int cr_read_mlcsv_movies(const char *path, cr_items *out, cr_ctx *ctx);
/** The authors' T1 format: one user per line, comma-separated item ids, 0 =
 *  padding (dropped). */
int cr_read_authors_seqs(const char *path, cr_seqs *out, cr_ctx *ctx);
/** The authors' transfer format: `source ids,,target ids` (padding 0 dropped
 *  from the source; at least one target). */
int cr_read_authors_transfer(const char *path, cr_seqs *out, cr_ctx *ctx);
/** S3-Rec sequence files (Beauty.txt, ...): `user item item ...`, space
 *  separated, items in time order. */
int cr_read_s3rec(const char *path, cr_seqs *out, cr_ctx *ctx);

void cr_ratings_free(cr_ratings *r);
void cr_users_free(cr_users *u);
void cr_items_free(cr_items *it);
void cr_seqs_free(cr_seqs *s);

/* ---- line and field helpers (exposed for the unit tests) -------------- */

/**
 * Splits one CSV record (RFC 4180 quoting: a field may be enclosed in double
 * quotes, inside which "" stands for one quote and the separator is literal)
 * into at most max_fields fields, unquoting in place into `buf` (capacity
 * cap bytes, NUL-separated).  fields[i] points into buf.
 * @return number of fields, or -1 with a reason in *why (unterminated quote,
 *   text after a closing quote, too many fields, buffer too small).
 */
int cr_csv_split(const char *line, size_t len, char sep, char *buf, size_t cap,
                 const char **fields, int max_fields, const char **why);

/** Strict decimal integer of a field (optional leading '-'; no spaces, no
 *  trailing text).  0 ok, -1 not an integer or out of int64 range. */
int cr_parse_i64(const char *s, size_t len, int64_t *out);
/** Strict finite real number of a field.  0 ok, -1 otherwise. */
int cr_parse_f64(const char *s, size_t len, double *out);

#endif
