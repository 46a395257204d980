/* Check suite of the `conure` program's dataset readers and protocol building
 * blocks (examples/conure/readers.c, dataset.c): small inline files, the TTL
 * demo files from ../shared/data, and the embedded ml-latest-small. */
#define _POSIX_C_SOURCE 200809L
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "readers.h"
#include "testutil.h"

/* Writes len bytes to a fresh temporary file; returns its path (static
 * rotation of 4 buffers, enough for one test). */
static const char *tmpfile_with(const char *name, const char *data, size_t len)
{
    static char paths[4][256];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 256, "/tmp/cn_readers_%ld_%s_XXXXXX", (long)getpid(), name);
    int fd = mkstemp(p);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq((long)write(fd, data, len), (long)len);
    close(fd);
    return p;
}

#define TMP(name, lit) tmpfile_with((name), (lit), sizeof(lit) - 1)

/* err must name the file and the line: "PATH:LINE: ..." */
static void assert_names_line(const char *err, const char *path, long line)
{
    char want[320];
    snprintf(want, sizeof want, "%s:%ld: ", path, line);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "message '%s' does not start with '%s'",
                  err, want);
}

/* ---- field helpers ------------------------------------------------------ */

START_TEST(csv_split_quotes)
{
    char buf[256];
    const char *f[8];
    const char *why;
    const char *line = "11,\"American President, The (1995)\",Comedy|Drama";
    int n = cr_csv_split(line, strlen(line), ',', buf, sizeof buf, f, 8, &why);
    ck_assert_int_eq(n, 3);
    ck_assert_str_eq(f[0], "11");
    ck_assert_str_eq(f[1], "American President, The (1995)");
    ck_assert_str_eq(f[2], "Comedy|Drama");
    line = "1,\"He said \"\"hi\"\"\",,x";
    n = cr_csv_split(line, strlen(line), ',', buf, sizeof buf, f, 8, &why);
    ck_assert_int_eq(n, 4);
    ck_assert_str_eq(f[1], "He said \"hi\"");
    ck_assert_str_eq(f[2], "");
    ck_assert_str_eq(f[3], "x");
    line = "1,\"open";
    ck_assert_int_eq(cr_csv_split(line, strlen(line), ',', buf, sizeof buf, f, 8, &why), -1);
    ck_assert_str_eq(why, "unterminated quoted field");
    line = "1,\"a\"b,c";
    ck_assert_int_eq(cr_csv_split(line, strlen(line), ',', buf, sizeof buf, f, 8, &why), -1);
    ck_assert_str_eq(why, "text after a closing quote, or a quote inside an unquoted field");
    line = "1,a\"b,c";
    ck_assert_int_eq(cr_csv_split(line, strlen(line), ',', buf, sizeof buf, f, 8, &why), -1);
    ck_assert_str_eq(why, "text after a closing quote, or a quote inside an unquoted field");
    line = "a,b,c";
    ck_assert_int_eq(cr_csv_split(line, strlen(line), ',', buf, sizeof buf, f, 2, &why), -1);
    ck_assert_int_eq(cr_csv_split(line, strlen(line), ',', buf, 4, f, 8, &why), -1);
    ck_assert_str_eq(why, "line too long");
    line = "";
    ck_assert_int_eq(cr_csv_split(line, 0, ',', buf, sizeof buf, f, 8, &why), 1);
    ck_assert_str_eq(f[0], "");
}
END_TEST

START_TEST(number_parsing)
{
    int64_t v;
    double d;
    ck_assert_int_eq(cr_parse_i64("123", 3, &v), 0);
    ck_assert_int_eq(v, 123);
    ck_assert_int_eq(cr_parse_i64("-7", 2, &v), 0);
    ck_assert_int_eq(v, -7);
    ck_assert_int_eq(cr_parse_i64("9223372036854775807", 19, &v), 0);
    ck_assert_int_eq(cr_parse_i64("9223372036854775808", 19, &v), -1);
    ck_assert_int_eq(cr_parse_i64("-9223372036854775808", 20, &v), 0);
    ck_assert(v == INT64_MIN);
    ck_assert_int_eq(cr_parse_i64("", 0, &v), -1);
    ck_assert_int_eq(cr_parse_i64("-", 1, &v), -1);
    ck_assert_int_eq(cr_parse_i64("12a", 3, &v), -1);
    ck_assert_int_eq(cr_parse_i64(" 12", 3, &v), -1);
    ck_assert_int_eq(cr_parse_i64("1.0", 3, &v), -1);
    ck_assert_int_eq(cr_parse_f64("4.5", 3, &d), 0);
    ck_assert(d == 4.5);
    ck_assert_int_eq(cr_parse_f64("4.5x", 4, &d), -1);
    ck_assert_int_eq(cr_parse_f64("nan", 3, &d), -1);
    ck_assert_int_eq(cr_parse_f64("1e999", 5, &d), -1);
    ck_assert_int_eq(cr_parse_f64("", 0, &d), -1);
}
END_TEST

/* ---- MovieLens-100K ----------------------------------------------------- */

START_TEST(ml100k_ratings_ok_crlf_no_final_newline)
{
    const char *p = TMP("udata", "196\t242\t3\t881250949\r\n\r\n186\t302\t5\t891717742");
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_ratings r;
    ck_assert_msg(cr_read_ml100k_ratings(p, &r, &ctx) == 0, "%s", ctx.err);
    ck_assert_uint_eq(r.n, 2);
    ck_assert_int_eq(r.v[0].user, 196);
    ck_assert_int_eq(r.v[0].item, 242);
    ck_assert(r.v[0].rating == 3.0f);
    ck_assert_int_eq(r.v[1].ts, 891717742);
    ck_assert(r.v[1].rating == 5.0f);
    cr_ratings_free(&r);
    unlink(p);
}
END_TEST

START_TEST(ml100k_ratings_bad_lines)
{
    const char *p = TMP("udata", "1\t2\t3\t4\n1\t2\t3\n1\t2\t9\t4\n1\tx\t3\t4\n5\t6\t1\t7\n");
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_ratings r;
    ck_assert_int_eq(cr_read_ml100k_ratings(p, &r, &ctx), -1);
    assert_names_line(ctx.err, p, 2);
    ck_assert_ptr_nonnull(strstr(ctx.err, "expected 4 tab-separated fields"));
    cr_ctx_init(&ctx, 1);
    ck_assert_int_eq(cr_read_ml100k_ratings(p, &r, &ctx), 0);
    ck_assert_uint_eq(r.n, 2);
    ck_assert_int_eq(ctx.n_bad_lines, 3);
    assert_names_line(ctx.first_bad, p, 2);
    ck_assert_int_eq(r.v[1].user, 5);
    cr_ratings_free(&r);
    /* the rating range and the item id are named */
    const char *q = TMP("udata", "1\t2\t9\t4\n");
    cr_ctx_init(&ctx, 0);
    ck_assert_int_eq(cr_read_ml100k_ratings(q, &r, &ctx), -1);
    assert_names_line(ctx.err, q, 1);
    ck_assert_ptr_nonnull(strstr(ctx.err, "rating '9'"));
    unlink(p);
    unlink(q);
}
END_TEST

START_TEST(ml100k_users_and_items)
{
    const char *p = TMP("uuser", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|technician|T8H1A");
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_users u;
    ck_assert_msg(cr_read_ml100k_users(p, &u, &ctx) == 0, "%s", ctx.err);
    ck_assert_uint_eq(u.n, 3);
    ck_assert_int_eq(u.n_occ, 2);
    ck_assert_str_eq(u.occ_names[u.v[1].occupation], "other");
    ck_assert_int_eq(u.v[2].occupation, u.v[0].occupation);
    ck_assert_int_eq(u.v[1].age, 53);
    ck_assert_int_eq(u.v[1].gender, 'F');
    cr_users_free(&u);
    const char *q = TMP("uuser", "1|24|M|technician|85711\n2|53|X|other|94043\n");
    ck_assert_int_eq(cr_read_ml100k_users(q, &u, &ctx), -1);
    assert_names_line(ctx.err, q, 2);
    ck_assert_ptr_nonnull(strstr(ctx.err, "gender"));
    /* u.item: latin-1 title becomes UTF-8; genre flags */
    const char it[] = "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n"
                      "2|Caf\xe9 (1996)|01-Jan-1996||http://y|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1\n";
    const char *r = tmpfile_with("uitem", it, sizeof it - 1);
    cr_items items;
    ck_assert_msg(cr_read_ml100k_items(r, &items, &ctx) == 0, "%s", ctx.err);
    ck_assert_uint_eq(items.n, 2);
    ck_assert_str_eq(items.v[1].title, "Caf\xc3\xa9 (1996)");
    ck_assert_uint_eq(items.v[0].genres, (1u << 3) | (1u << 4) | (1u << 5));
    ck_assert_uint_eq(items.v[1].genres, (1u << 1) | (1u << 18));
    ck_assert_str_eq(items.genre_names[18], "Western");
    cr_items_free(&items);
    const char bad[] = "1|T|d||u|0|0|0|2|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n";
    const char *s = tmpfile_with("uitem", bad, sizeof bad - 1);
    ck_assert_int_eq(cr_read_ml100k_items(s, &items, &ctx), -1);
    assert_names_line(ctx.err, s, 1);
    unlink(p);
    unlink(q);
    unlink(r);
    unlink(s);
}
END_TEST

/* ---- ml-latest-small ---------------------------------------------------- */

START_TEST(mlcsv_ratings)
{
    const char *p = TMP("ratings", "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n"
                                   "1,3,4.5,964981247\r\n2,50,0.5,7");
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_ratings r;
    ck_assert_msg(cr_read_mlcsv_ratings(p, &r, &ctx) == 0, "%s", ctx.err);
    ck_assert_uint_eq(r.n, 3);
    ck_assert(r.v[1].rating == 4.5f);
    ck_assert_int_eq(r.v[2].item, 50);
    ck_assert_int_eq(r.v[2].ts, 7);
    cr_ratings_free(&r);
    const char *q = TMP("ratings", "userId,movieId,rating,timestamp\r\n1,1,4.0,9\r\n1,3,5.5,9\r\n");
    ck_assert_int_eq(cr_read_mlcsv_ratings(q, &r, &ctx), -1);
    assert_names_line(ctx.err, q, 3);
    ck_assert_ptr_nonnull(strstr(ctx.err, "rating '5.5'"));
    const char *h = TMP("ratings", "user,movie\r\n1,1,4.0,9\r\n");
    ck_assert_int_eq(cr_read_mlcsv_ratings(h, &r, &ctx), -1);
    assert_names_line(ctx.err, h, 1);
    ck_assert_ptr_nonnull(strstr(ctx.err, "header"));
    unlink(p);
    unlink(q);
    unlink(h);
}
END_TEST

START_TEST(mlcsv_movies_quoted)
{
    const char *p = TMP("movies",
                        "movieId,title,genres\r\n1,Toy Story (1995),Adventure|Animation|Comedy\r\n"
                        "11,\"American President, The (1995)\",Comedy|Drama|Romance\r\n"
                        "12,\"Say \"\"Cheese\"\" (2001)\",(no genres listed)\r\n"
                        "13,Plain,Drama");
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_items it;
    ck_assert_msg(cr_read_mlcsv_movies(p, &it, &ctx) == 0, "%s", ctx.err);
    ck_assert_uint_eq(it.n, 4);
    ck_assert_str_eq(it.v[1].title, "American President, The (1995)");
    ck_assert_str_eq(it.v[2].title, "Say \"Cheese\" (2001)");
    ck_assert_uint_eq(it.v[2].genres, 0);
    ck_assert_int_eq(it.n_genres, 5); /* Adventure Animation Comedy Drama Romance */
    ck_assert_str_eq(it.genre_names[3], "Drama");
    ck_assert_uint_eq(it.v[3].genres, 1u << 3);
    cr_items_free(&it);
    const char *q = TMP("movies", "movieId,title,genres\r\n1,\"Unclosed (1995),Drama\r\n2,B,Drama\r\n");
    ck_assert_int_eq(cr_read_mlcsv_movies(q, &it, &ctx), -1);
    assert_names_line(ctx.err, q, 2);
    ck_assert_ptr_nonnull(strstr(ctx.err, "unterminated quoted field"));
    cr_ctx_init(&ctx, 1);
    ck_assert_int_eq(cr_read_mlcsv_movies(q, &it, &ctx), 0);
    ck_assert_uint_eq(it.n, 1);
    ck_assert_int_eq(ctx.n_bad_lines, 1);
    cr_items_free(&it);
    unlink(p);
    unlink(q);
}
END_TEST

START_TEST(embedded_default_files)
{
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_ratings r;
    cr_items it;
    ck_assert_msg(cr_read_mlcsv_ratings(tu_src_path("examples/data/ml-latest-small/ratings.csv"),
                                        &r, &ctx) == 0,
                  "%s", ctx.err);
    ck_assert_uint_eq(r.n, 100836);
    cr_ratings_free(&r);
    ck_assert_msg(cr_read_mlcsv_movies(tu_src_path("examples/data/ml-latest-small/movies.csv"),
                                       &it, &ctx) == 0,
                  "%s", ctx.err);
    ck_assert_uint_eq(it.n, 9742);
    ck_assert_int_eq(it.n_genres, 19); /* 20 values incl. "(no genres listed)" */
    cr_items_free(&it);
}
END_TEST

/* ---- the authors' formats ------------------------------------------------ */

START_TEST(authors_inline)
{
    const char *p = TMP("seq", "0,0,5,6,7\n1,2\n\n3,x,4\n8");
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_seqs s;
    ck_assert_int_eq(cr_read_authors_seqs(p, &s, &ctx), -1);
    assert_names_line(ctx.err, p, 4);
    ck_assert_ptr_nonnull(strstr(ctx.err, "'x'"));
    cr_ctx_init(&ctx, 1);
    ck_assert_int_eq(cr_read_authors_seqs(p, &s, &ctx), 0);
    ck_assert_int_eq(ctx.n_bad_lines, 1);
    ck_assert_uint_eq(s.n, 3);
    ck_assert_uint_eq(s.off[1], 3); /* padding zeros dropped */
    ck_assert_int_eq(s.items[0], 5);
    ck_assert_uint_eq(s.off[2] - s.off[1], 2);
    ck_assert_uint_eq(s.off[3] - s.off[2], 1);
    ck_assert_int_eq(s.items[s.off[2]], 8);
    ck_assert_int_eq(s.user[2], 5); /* line number */
    cr_seqs_free(&s);
    const char *q = TMP("xfer", "1,2,3,,9,10\n4,5,,11\n6,7,\n8,,\n");
    cr_ctx_init(&ctx, 0);
    ck_assert_int_eq(cr_read_authors_transfer(q, &s, &ctx), -1);
    assert_names_line(ctx.err, q, 3);
    cr_ctx_init(&ctx, 1);
    ck_assert_int_eq(cr_read_authors_transfer(q, &s, &ctx), 0);
    ck_assert_int_eq(ctx.n_bad_lines, 2);
    ck_assert_uint_eq(s.n, 2);
    ck_assert_uint_eq(s.toff[1], 2);
    ck_assert_int_eq(s.targets[1], 10);
    ck_assert_int_eq(s.targets[2], 11);
    ck_assert_uint_eq(s.off[2], 5);
    cr_seqs_free(&s);
    unlink(p);
    unlink(q);
}
END_TEST

START_TEST(ttl_demo_files)
{
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_seqs pre, fin;
    const char *pp =
        tu_data_path("ttl-peterrec-demo/history_sequences_20181014_fajie_transfer_pretrain_small.csv");
    ck_assert_msg(access(pp, R_OK) == 0,
                  "%s is missing: the reader tests need ../shared/data (set CONURE_SHARED_DATA)",
                  pp);
    ck_assert_msg(cr_read_authors_seqs(pp, &pre, &ctx) == 0, "%s", ctx.err);
    const char *fp =
        tu_data_path("ttl-peterrec-demo/history_sequences_20181014_fajie_transfer_finetune_small.csv");
    ck_assert_msg(cr_read_authors_transfer(fp, &fin, &ctx) == 0, "%s", ctx.err);
    /* 30 lines, the last without a final newline */
    ck_assert_uint_eq(pre.n, 30);
    ck_assert_uint_eq(fin.n, 30);
    /* 30 x 9 fields, 23 of them padding zeros */
    ck_assert_uint_eq(pre.off[30], 30 * 9 - 23);
    ck_assert_int_eq(pre.items[0], 13373);
    /* the finetune sources equal the pretrain lines */
    ck_assert_uint_eq(fin.off[30], pre.off[30]);
    ck_assert_mem_eq(fin.items, pre.items, pre.off[30] * sizeof *pre.items);
    for (size_t r = 0; r <= 30; r++)
        ck_assert_uint_eq(fin.off[r], pre.off[r]);
    /* targets per line: 3,3,3, then 2 x 11, then 1 x 16 */
    ck_assert_uint_eq(fin.toff[30], 3 * 3 + 2 * 11 + 16);
    for (size_t r = 0; r < 30; r++) {
        size_t want = r < 3 ? 3 : r < 14 ? 2 : 1;
        ck_assert_uint_eq(fin.toff[r + 1] - fin.toff[r], want);
    }
    ck_assert_int_eq(fin.targets[0], 1845);
    ck_assert_int_eq(fin.targets[2], 1844);
    cr_seqs_free(&pre);
    cr_seqs_free(&fin);
}
END_TEST

START_TEST(s3rec_inline)
{
    const char *p = TMP("s3", "1 1 2 3\n2 4  5\t6\n3 7 x\n4 0 1\n5\n6 8 9");
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_seqs s;
    ck_assert_int_eq(cr_read_s3rec(p, &s, &ctx), -1);
    assert_names_line(ctx.err, p, 3);
    cr_ctx_init(&ctx, 1);
    ck_assert_int_eq(cr_read_s3rec(p, &s, &ctx), 0);
    ck_assert_int_eq(ctx.n_bad_lines, 3);
    ck_assert_uint_eq(s.n, 3);
    ck_assert_int_eq(s.user[1], 2);
    ck_assert_uint_eq(s.off[2] - s.off[1], 3);
    ck_assert_int_eq(s.items[s.off[2]], 8);
    ck_assert_int_eq(s.user[2], 6);
    cr_seqs_free(&s);
    unlink(p);
}
END_TEST

START_TEST(nul_byte_and_missing_file)
{
    const char data[] = "1\t2\t3\t4\n1\t2\0\t3\t4\n";
    const char *p = tmpfile_with("nul", data, sizeof data - 1);
    cr_ctx ctx;
    cr_ctx_init(&ctx, 0);
    cr_ratings r;
    ck_assert_int_eq(cr_read_ml100k_ratings(p, &r, &ctx), -1);
    assert_names_line(ctx.err, p, 2);
    ck_assert_ptr_nonnull(strstr(ctx.err, "NUL"));
    unlink(p);
    ck_assert_int_eq(cr_read_ml100k_ratings("/nonexistent/u.data", &r, &ctx), -1);
    ck_assert_ptr_nonnull(strstr(ctx.err, "/nonexistent/u.data: cannot open"));
    /* an empty file is no data, not an error, for line formats */
    const char *e = tmpfile_with("empty", "", 0);
    ck_assert_int_eq(cr_read_ml100k_ratings(e, &r, &ctx), 0);
    ck_assert_uint_eq(r.n, 0);
    cr_ratings_free(&r);
    /* ... but a CSV without its header is */
    ck_assert_int_eq(cr_read_mlcsv_ratings(e, &r, &ctx), -1);
    ck_assert_ptr_nonnull(strstr(ctx.err, "empty file"));
    unlink(e);
}
END_TEST

/* ---- protocol building blocks -------------------------------------------- */

START_TEST(windows_and_rows)
{
    int32_t seq[7] = {1, 2, 3, 4, 5, 6, 7};
    int32_t row[4];
    cd_fill_row(row, 4, seq, 2);
    ck_assert(row[0] == 0 && row[1] == 0 && row[2] == 1 && row[3] == 2);
    cd_fill_row(row, 4, seq, 7);
    ck_assert(row[0] == 4 && row[3] == 7);
    /* L = 3: windows of 4 ids from the end sharing one boundary item:
     * [4 5 6 7], [1 2 3 4] */
    int32_t w[3 * 4];
    ck_assert_uint_eq(cd_cut_windows(seq, 7, 3, CD_WINDOWS_ALL, NULL, 0), 2);
    ck_assert_uint_eq(cd_cut_windows(seq, 7, 3, CD_WINDOWS_ALL, w, 3), 2);
    ck_assert(w[0] == 4 && w[3] == 7 && w[4] == 1 && w[7] == 4);
    /* 8 ids: [5..8], [2..5], [0 pad, 1, 2] -> the last has 2 ids */
    int32_t seq8[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_uint_eq(cd_cut_windows(seq8, 8, 3, CD_WINDOWS_ALL, w, 3), 3);
    ck_assert(w[8] == 0 && w[9] == 0 && w[10] == 1 && w[11] == 2);
    ck_assert_uint_eq(cd_cut_windows(seq8, 8, 3, CD_WINDOWS_LAST, w, 3), 1);
    ck_assert(w[0] == 5 && w[3] == 8);
    ck_assert_uint_eq(cd_cut_windows(seq8, 1, 3, CD_WINDOWS_ALL, w, 3), 0);
    ck_assert_uint_eq(cd_prefix_len(20), 16);
    ck_assert_uint_eq(cd_prefix_len(21), 16);
    ck_assert_uint_eq(cd_prefix_len(5), 4);
}
END_TEST

START_TEST(rank_and_group)
{
    int64_t orig[5] = {50, 10, 30, 20, 40};
    int64_t cnt[5] = {2, 5, 5, 0, 2};
    int32_t order[5];
    ck_assert_int_eq(cd_rank_by_count(orig, cnt, 5, order), 0);
    /* count 5: ids 10, 30; count 2: 40, 50; count 0: 20 */
    ck_assert_int_eq(orig[order[0]], 10);
    ck_assert_int_eq(orig[order[1]], 30);
    ck_assert_int_eq(orig[order[2]], 40);
    ck_assert_int_eq(orig[order[3]], 50);
    ck_assert_int_eq(orig[order[4]], 20);
    cr_rating ev[5] = {{2, 9, 100, 1}, {1, 7, 50, 1}, {2, 3, 100, 1}, {1, 8, 40, 1},
                       {2, 1, 200, 1}};
    cr_ratings r = {ev, 5, 5};
    cd_user_seqs us;
    ck_assert_int_eq(cd_group_by_user(&r, &us), 0);
    ck_assert_int_eq(us.n_users, 2);
    ck_assert_int_eq(us.user[0], 1);
    ck_assert_int_eq(us.ev[0].item, 8); /* ts 40 before 50 */
    ck_assert_int_eq(us.ev[1].item, 7);
    ck_assert_int_eq(us.ev[2].item, 3); /* tie at ts 100: item 3 before 9 */
    ck_assert_int_eq(us.ev[3].item, 9);
    ck_assert_int_eq(us.ev[4].item, 1);
    ck_assert_uint_eq(us.off[1], 2);
    cd_user_seqs_free(&us);
}
END_TEST

static void check_counts_nonincreasing(const int32_t *ids, int32_t n, int32_t n_ids, int32_t base)
{
    int64_t *c = calloc((size_t)n_ids, sizeof *c);
    ck_assert_ptr_nonnull(c);
    for (int32_t i = 0; i < n; i++) {
        ck_assert_int_ge(ids[i], base);
        ck_assert_int_lt(ids[i], n_ids);
        c[ids[i]]++;
    }
    for (int32_t k = base + 1; k < n_ids; k++)
        ck_assert_msg(c[k] <= c[k - 1], "id %d counted %lld > id %d counted %lld", k,
                      (long long)c[k], k - 1, (long long)c[k - 1]);
    free(c);
}

/* The embedded default preset: popularity order of every id space, user
 * split, and no test label inside a training input. */
START_TEST(default_preset_protocol)
{
    cd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.preset, sizeof cfg.preset, "default");
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s",
             tu_src_path("examples/data/ml-latest-small"));
    cfg.seed = 7;
    cfg.max_len = 2200; /* longer than every user's prefix: rows hold whole histories */
    cfg.windows = -1;
    cfg.exclude_history = -1;
    cd_dataset ds;
    char err[512];
    ck_assert_msg(cd_build(&cfg, &ds, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ds.n_tasks, 3);
    ck_assert_int_eq(ds.n_users, 610);
    ck_assert_int_eq(ds.exclude_history, 0);
    const cd_task *t1 = &ds.tasks[0], *t2 = &ds.tasks[1], *t3 = &ds.tasks[2];
    ck_assert_int_eq(t1->kind, CD_KIND_NEXT_ITEM);
    ck_assert_int_eq(t2->kind, CD_KIND_ITEM_REC);
    ck_assert_int_eq(t3->kind, CD_KIND_CLASSIFICATION);
    /* T1 ids: decreasing frequency over the training inputs (the rows) */
    int32_t L = ds.max_len;
    int32_t *flat = malloc((size_t)ds.n_rows * (size_t)L * sizeof *flat);
    int32_t nf = 0;
    for (int64_t i = 0; i < (int64_t)ds.n_rows * L; i++)
        if (ds.rows[i])
            flat[nf++] = ds.rows[i];
    check_counts_nonincreasing(flat, nf, ds.vocab_size, 1);
    free(flat);
    /* one window per user (no user is longer than L+1) */
    ck_assert_int_eq(ds.n_windows, 610);
    /* the T1 test target is never in the user's training input */
    ck_assert_int_eq(t1->test.n, 610);
    for (int32_t e = 0; e < t1->test.n; e++) {
        const int32_t *row = ds.rows + (size_t)t1->test.row[e] * (size_t)L;
        for (int32_t j = 0; j < L; j++)
            ck_assert_int_ne(row[j], t1->test.target[e]);
    }
    /* later tasks: ids by decreasing training frequency; test users are not
     * training users */
    check_counts_nonincreasing(t2->train_target, t2->n_train, t2->n_targets, 0);
    check_counts_nonincreasing(t3->train_target, t3->n_train, t3->n_targets, 0);
    uint8_t *train_user = calloc((size_t)ds.n_users, 1);
    for (int32_t i = 0; i < t3->n_train; i++)
        train_user[t3->train_row[i]] = 1;
    for (int32_t i = 0; i < t2->n_train; i++)
        train_user[t2->train_row[i]] = 1;
    for (int32_t e = 0; e < t2->test.n; e++)
        ck_assert(!train_user[t2->test.row[e]]);
    for (int32_t e = 0; e < t3->test.n; e++)
        ck_assert(!train_user[t3->test.row[e]]);
    free(train_user);
    ck_assert_int_eq(t3->n_train_users + t3->n_test_users, 610);
    ck_assert_int_eq(t3->n_train_users, 488);
    /* item-task masks hold the user's other labels, never the target */
    for (int32_t e = 0; e < t2->test.n; e++)
        for (int32_t q = t2->test.mask_off[e]; q < t2->test.mask_off[e + 1]; q++)
            ck_assert_int_ne(t2->test.mask[q], t2->test.target[e]);
    ck_assert_ptr_nonnull(t3->class_names);
    cd_free(&ds);
    /* the same seed gives the same split; another seed another one */
    cfg.max_len = 50;
    cd_dataset a, b;
    ck_assert(cd_build(&cfg, &a, err, sizeof err) == 0);
    ck_assert(cd_build(&cfg, &b, err, sizeof err) == 0);
    ck_assert_int_eq(a.tasks[2].n_train, b.tasks[2].n_train);
    ck_assert_mem_eq(a.tasks[2].train_row, b.tasks[2].train_row,
                     (size_t)a.tasks[2].n_train * sizeof(int32_t));
    cd_free(&b);
    cfg.seed = 8;
    ck_assert(cd_build(&cfg, &b, err, sizeof err) == 0);
    ck_assert(a.tasks[2].n_train != b.tasks[2].n_train ||
              memcmp(a.tasks[2].train_row, b.tasks[2].train_row,
                     (size_t)a.tasks[2].n_train * sizeof(int32_t)) != 0);
    cd_free(&a);
    cd_free(&b);
}
END_TEST

START_TEST(bad_preset_data_dir)
{
    cd_config cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.preset, sizeof cfg.preset, "ml100k");
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "/nonexistent");
    cfg.max_len = 10;
    cfg.windows = -1;
    cfg.exclude_history = -1;
    cd_dataset ds;
    char err[512];
    ck_assert_int_eq(cd_build(&cfg, &ds, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/u.data"));
    snprintf(cfg.preset, sizeof cfg.preset, "nope");
    ck_assert_int_eq(cd_build(&cfg, &ds, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "unknown preset"));
}
END_TEST

static Suite *readers_suite(void)
{
    Suite *s = suite_create("readers");
    TCase *tc = tcase_create("formats");
    tcase_add_test(tc, csv_split_quotes);
    tcase_add_test(tc, number_parsing);
    tcase_add_test(tc, ml100k_ratings_ok_crlf_no_final_newline);
    tcase_add_test(tc, ml100k_ratings_bad_lines);
    tcase_add_test(tc, ml100k_users_and_items);
    tcase_add_test(tc, mlcsv_ratings);
    tcase_add_test(tc, mlcsv_movies_quoted);
    tcase_add_test(tc, embedded_default_files);
    tcase_add_test(tc, authors_inline);
    tcase_add_test(tc, ttl_demo_files);
    tcase_add_test(tc, s3rec_inline);
    tcase_add_test(tc, nul_byte_and_missing_file);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("protocol");
    tcase_set_timeout(tp, 120);
    tcase_add_test(tp, windows_and_rows);
    tcase_add_test(tp, rank_and_group);
    tcase_add_test(tp, default_preset_protocol);
    tcase_add_test(tp, bad_preset_data_dir);
    suite_add_tcase(s, tp);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(readers_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
