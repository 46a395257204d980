/*
 * Training and evaluation pipelines of the `conure` program: Conure and the
 * baselines SinMo, SinMoAll and FineAll (method §4, §6), on the public API
 * only.
 */
#ifndef CONURE_CLI_PIPELINE_H
#define CONURE_CLI_PIPELINE_H

#include <conure/conure.h>
#include <stdint.h>

#include "dataset.h"

enum {
    CP_CONURE = 0,
    CP_SINMO = 1,
    CP_SINMOALL = 2,
    CP_FINEALL = 3,
    CP_N_METHODS = 4
};
extern const char *const cp_method_names[CP_N_METHODS];

/** Ranking cut-offs reported everywhere. */
#define CP_N_KS 3
extern const int cp_ks[CP_N_KS]; /* 5, 10, 20 */

typedef struct cp_metrics {
    int32_t n;              /**< evaluated examples; 0 = not evaluated */
    double hr[CP_N_KS], mrr[CP_N_KS], ndcg[CP_N_KS];
    double acc;             /**< HR@1 (classification accuracy) */
} cp_metrics;

/** The task's main metric: HR@5 for item tasks, accuracy for classification. */
double cp_main_metric(const cp_metrics *m, int kind);
const char *cp_main_metric_name(int kind);

typedef struct cp_settings {
    /* model */
    int channels, kernel_width;
    char dilations[256];
    char block_order[16];
    uint64_t seed;
    int threads;
    char backend[64];        /**< "" = the library's default */
    /* schedules: [0] = T1, [1] = every later task */
    int dense_epochs[2], retrain_epochs[2], batch[2];
    /* per-task overrides of the epochs (--epochs K:D,R); -1 = the group's */
    int task_dense[CD_MAX_TASKS], task_retrain[CD_MAX_TASKS];
    double lr[2];
    int t1_tie;              /**< T1 task option tie_embedding = 1 */
    double dropout[2];       /**< task option "dropout"; < 0: library default (0) */
    char t1_loss[32];        /**< "" = library default (sampled_softmax) */
    char class_loss[32];     /**< "" = library default (bce) */
    int negatives;           /**< 0 = library default */
    double l2;               /**< < 0: library default */
    double rho;              /**< popularity-rank sampler; < 0: library default */
    double release_ratio;    /**< < 0: library default */
    int patience;            /**< early stopping on validation NDCG@20 (T1-only presets) */
    int eval_batch;
    int progress;            /**< 0 none, 1 plain lines, 2 terminal (in-place updates) */
    int verbose;
    int n_tasks;             /**< learn tasks 1..n_tasks (0 = all of the preset) */
} cp_settings;

/** One evaluation point: after `stage` of learning task `task`. */
typedef struct cp_stage {
    int task;                       /**< 1-based task being learned */
    char stage[16];                 /**< dense, pruned, retrained, trained, loaded */
    int n_eval;                     /**< tasks evaluated: 1..n_eval */
    cp_metrics m[CD_MAX_TASKS];
} cp_stage;

typedef struct cp_method_result {
    int ran;
    int n_tasks;                    /**< tasks learned */
    cp_metrics final[CD_MAX_TASKS]; /**< each task's metrics at the end */
    int has_matrix;
    double matrix[CD_MAX_TASKS][CD_MAX_TASKS]; /**< [after task j][task i], i <= j */
    int n_stages;
    cp_stage stages[CD_MAX_TASKS * 3 + 1];
    int64_t stored_parameters;
    int64_t capacity[CD_MAX_TASKS + 1]; /**< conure: free, then owned per task */
    int n_models;
    double wall_s;
    int epochs_run[CD_MAX_TASKS][2];   /**< epochs actually run (early stopping) */
} cp_method_result;

/** Dense and retrain epochs of dataset task k (0-based). */
int cp_dense_epochs(const cp_settings *s, int k);
int cp_retrain_epochs(const cp_settings *s, int k);

/** Shared run state. */
typedef struct cp_run {
    const cd_dataset *ds;
    const cp_settings *set;
    char err[1024];
} cp_run;

/** Runs Conure.  If *model is not NULL it is a loaded model whose tasks are
 *  continued (resume); on success *model holds the final model (caller
 *  frees).  Returns 0 or -1 (run->err). */
int cp_run_conure(cp_run *run, conure_model **model, cp_method_result *res);
/** Runs the finetune baselines selected in want[CP_N_METHODS] (SinMo,
 *  SinMoAll, FineAll), sharing the T1 model they all start from. */
int cp_run_baselines(cp_run *run, const int *want, cp_method_result *res);

/** Evaluates one task of a model on examples; m = NULL scores the
 *  popularity ranking instead (see cp_evaluate_popularity).  Returns 0 or -1
 *  (run->err). */
int cp_evaluate(cp_run *run, const conure_model *m, int32_t task_id, const cd_task *t,
                const cd_examples *ex, cp_metrics *out);

/** The reference rankings of every task of the dataset, under the same
 *  protocol (test examples, masks, history exclusion) as the models: items
 *  (T1 and item tasks) ranked by training frequency ("most popular"), and
 *  for classification the most frequent training class ("majority class").
 *  Ids are assigned in decreasing training frequency (docs/protocol.md §3),
 *  so this ranks by id.  Returns 0 or -1 (run->err). */
int cp_evaluate_popularity(cp_run *run, cp_metrics out[CD_MAX_TASKS]);

/** Checks that a loaded model fits the dataset (vocabulary, tasks). */
int cp_check_model(cp_run *run, const conure_model *m);

/** Creates the options of a new model for this run. */
int cp_model_options(cp_run *run, const char *training_mode, conure_options **out);

#endif
