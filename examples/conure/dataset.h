/*
 * Task datasets of the `conure` program: presets, id remapping, splits
 * (docs/protocol.md is the normative description; keep the two in step).
 *
 * Everything here is plain data; nothing calls libconure.
 */
#ifndef CONURE_CLI_DATASET_H
#define CONURE_CLI_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "readers.h"

/* Task kinds: the same numbers as conure_task_kind (checked in pipeline.c). */
#define CD_KIND_NEXT_ITEM 1
#define CD_KIND_ITEM_REC 2
#define CD_KIND_CLASSIFICATION 3

#define CD_MAX_TASKS 8

/* How T1 training rows are cut from a long training sequence. */
#define CD_WINDOWS_LAST 0 /* one row: the last max_len+1 items */
#define CD_WINDOWS_ALL 1  /* rows of max_len+1 items from the end, sharing one boundary item */

/** A small deterministic generator (splitmix64), used for the user split and
 *  for shuffling; the same seed gives the same numbers on every machine. */
typedef struct cd_rng {
    uint64_t s;
} cd_rng;
void cd_rng_seed(cd_rng *r, uint64_t seed, uint64_t stream);
uint64_t cd_rng_next(cd_rng *r);
/** Uniform integer in 0 .. n-1 (n >= 1), without modulo bias. */
uint64_t cd_rng_below(cd_rng *r, uint64_t n);
/** Fisher-Yates shuffle of v[n]. */
void cd_shuffle_i32(cd_rng *r, int32_t *v, size_t n);

/** Evaluation examples: input row, target, and ids to leave out of the
 *  ranking (score set to -inf) in mask[mask_off[e] .. mask_off[e+1]). */
typedef struct cd_examples {
    int32_t n;
    int32_t *row;
    int32_t *target;
    int32_t *mask_off; /* [n+1] */
    int32_t *mask;
} cd_examples;

typedef struct cd_task {
    char name[32];        /**< short name: next_item, liked_items, gender, ... */
    char desc[128];       /**< one line for humans */
    int kind;             /**< CD_KIND_* */
    int32_t n_targets;    /**< next-item: vocab_size; else catalogue size / classes */
    char (*class_names)[CR_NAME_MAX]; /**< classification: [n_targets], else NULL */
    int32_t n_train;      /**< training examples (next-item: see cd_dataset.windows) */
    int32_t *train_row;   /**< [n_train] index into cd_dataset.rows */
    int32_t *train_target;/**< [n_train] */
    int32_t n_train_users, n_test_users;
    cd_examples val;      /**< validation (next-item in T1-only presets), else n = 0 */
    cd_examples test;
} cd_task;

typedef struct cd_config {
    char preset[32];      /**< default, ml100k, beauty, toys, lastfm */
    char data_dir[1024];
    uint64_t seed;
    int max_len;          /**< input length L of every row */
    int windows;          /**< CD_WINDOWS_*; -1 = the preset's default */
    int exclude_history;  /**< -1 = the preset's default, 0 off, 1 on */
    int skip_bad_lines;
} cd_config;

typedef struct cd_dataset {
    char preset[32];
    char data_dir[1024];
    int conure_protocol;  /**< 1: 80/20-by-time protocol with later tasks; 0: T1-only */
    int windows, exclude_history;
    int32_t max_len;      /**< L */
    int32_t n_users;      /**< users kept */
    int32_t n_dropped_users;
    int64_t n_interactions;
    long n_bad_lines;
    int32_t vocab_size;   /**< T1 items + 1 (id 0 = padding) */
    int64_t *item_orig;   /**< [vocab_size] original id of each dense id (index 0 unused) */
    int32_t n_rows;       /**< input rows, each L ids, left-padded with 0 */
    int32_t *rows;        /**< [n_rows * L] */
    int32_t n_windows;    /**< T1 training rows, each L+1 ids, left-padded */
    int32_t *windows_buf; /**< [n_windows * (L+1)] */
    int n_tasks;
    cd_task tasks[CD_MAX_TASKS];
} cd_dataset;

/** Known preset names, NULL-terminated. */
extern const char *const cd_preset_names[];
/** 1 if the preset has only T1 (the S3-Rec protocol presets). -1 unknown. */
int cd_preset_t1_only(const char *preset);
/** The preset's default data directory sub-folder under the shared data
 *  directory ("movielens-100k"), or NULL for the embedded default. */
const char *cd_preset_shared_dir(const char *preset);

/**
 * Reads the preset's files from cfg->data_dir and builds every task.
 * @return 0, or -1 with a message in err (file:line for bad input lines).
 */
int cd_build(const cd_config *cfg, cd_dataset *ds, char *err, size_t errcap);
void cd_free(cd_dataset *ds);

/* ---- building blocks exposed for the unit tests ----------------------- */

/** Per-user sequences after sorting by (user, timestamp, item). */
typedef struct cd_user_seqs {
    int32_t n_users;
    int64_t *user;   /**< [n_users] original user id, increasing */
    size_t *off;     /**< [n_users+1] */
    cr_rating *ev;   /**< events, grouped by user, each group in time order */
} cd_user_seqs;

/** Groups ratings by user and orders each user's events by (timestamp, item
 *  id).  Takes ownership of nothing; r->v is sorted in place. */
int cd_group_by_user(cr_ratings *r, cd_user_seqs *out);
void cd_user_seqs_free(cd_user_seqs *s);

/** Dense remapping: ids sorted by decreasing count, ties by increasing
 *  original id.  orig[n] and count[n] describe n distinct ids; on return
 *  order[k] is the index (into orig) of the id that gets dense rank k. */
int cd_rank_by_count(const int64_t *orig, const int64_t *count, size_t n, int32_t *order);

/** Index where the Conure protocol cuts a sequence of n events: P_u is
 *  [0, cut), the label window [cut, n).  cut = floor(0.8 n). */
size_t cd_prefix_len(size_t n);

/** Writes the last min(n, L) ids of seq into row[L], left-padded with 0. */
void cd_fill_row(int32_t *row, int32_t L, const int32_t *seq, size_t n);

/** Cuts windows of L+1 ids from seq[n] (see CD_WINDOWS_*); writes at most
 *  max_out rows into out (may be NULL to count).  Returns the number of rows. */
size_t cd_cut_windows(const int32_t *seq, size_t n, int32_t L, int mode, int32_t *out,
                      size_t max_out);

#endif
