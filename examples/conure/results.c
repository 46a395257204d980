/* Result tables and results JSON (cJSON, Debian's libcjson). */
#define _POSIX_C_SOURCE 200809L
#include "results.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cres_kind_name(int kind)
{
    switch (kind) {
    case CD_KIND_NEXT_ITEM:
        return "next_item";
    case CD_KIND_ITEM_REC:
        return "item_rec";
    case CD_KIND_CLASSIFICATION:
        return "classification";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------------------ */
/* Tables                                                                    */
/* ------------------------------------------------------------------------ */

static void fmt_count(char *buf, size_t cap, int64_t v)
{
    if (v >= 10000000)
        snprintf(buf, cap, "%.2fM", (double)v / 1e6);
    else
        snprintf(buf, cap, "%lld", (long long)v);
}

static void print_method(FILE *f, const cd_dataset *ds, const cp_method_result *r, const char *name)
{
    fprintf(f, "\n== %s: %d model%s, %lld stored parameters, %.1f s\n", name, r->n_models,
            r->n_models == 1 ? "" : "s", (long long)r->stored_parameters, r->wall_s);
    fprintf(f, "  %-16s %6s %8s %8s %8s %8s %8s %8s %8s\n", "task", "n", "HR@5", "MRR@5",
            "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20");
    for (int i = 0; i < r->n_tasks; i++) {
        const cd_task *t = &ds->tasks[i];
        const cp_metrics *m = &r->final[i];
        char label[32];
        snprintf(label, sizeof label, "T%d %s", i + 1, t->name);
        if (t->kind == CD_KIND_CLASSIFICATION)
            fprintf(f, "  %-16s %6d accuracy %.4f (%d classes)\n", label, m->n, m->acc,
                    t->n_targets);
        else
            fprintf(f, "  %-16s %6d %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f\n", label, m->n,
                    m->hr[0], m->mrr[0], m->ndcg[0], m->hr[1], m->ndcg[1], m->hr[2], m->ndcg[2]);
    }
    if (r->has_matrix && r->n_tasks > 1) {
        fprintf(f, "  main metric of task i (columns) after learning task j (rows):\n");
        fprintf(f, "  %8s", "");
        for (int i = 0; i < r->n_tasks; i++)
            fprintf(f, "       T%d", i + 1);
        fputc('\n', f);
        for (int j = 0; j < r->n_tasks; j++) {
            fprintf(f, "  after T%d", j + 1);
            for (int i = 0; i < r->n_tasks; i++) {
                if (isnan(r->matrix[j][i]))
                    fprintf(f, " %8s", "-");
                else
                    fprintf(f, " %8.4f", r->matrix[j][i]);
            }
            fputc('\n', f);
        }
    }
    if (!strcmp(name, "conure") && r->n_tasks > 0) {
        int64_t total = 0;
        for (int i = 0; i <= r->n_tasks; i++)
            total += r->capacity[i];
        if (total > 0) {
            fprintf(f, "  conv weights: free %.1f%%", 100.0 * (double)r->capacity[0] / (double)total);
            for (int i = 1; i <= r->n_tasks; i++)
                fprintf(f, ", T%d %.1f%%", i, 100.0 * (double)r->capacity[i] / (double)total);
            fputc('\n', f);
        }
    }
}

/* The popularity / majority-class reference (no model). */
static void print_popularity(FILE *f, const cd_dataset *ds, const cp_metrics *pop, int nt)
{
    fprintf(f, "\n== popularity (reference without a model: items by training frequency, "
               "classification the majority class)\n");
    fprintf(f, "  %-16s %6s %8s %8s %8s %8s %8s %8s %8s\n", "task", "n", "HR@5", "MRR@5",
            "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20");
    for (int i = 0; i < nt; i++) {
        const cd_task *t = &ds->tasks[i];
        const cp_metrics *m = &pop[i];
        char label[32];
        snprintf(label, sizeof label, "T%d %s", i + 1, t->name);
        if (t->kind == CD_KIND_CLASSIFICATION)
            fprintf(f, "  %-16s %6d accuracy %.4f (majority class '%s')\n", label, m->n, m->acc,
                    t->class_names ? t->class_names[0] : "?");
        else
            fprintf(f, "  %-16s %6d %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f %8.4f\n", label, m->n,
                    m->hr[0], m->mrr[0], m->ndcg[0], m->hr[1], m->ndcg[1], m->hr[2], m->ndcg[2]);
    }
}

void cres_print(FILE *f, const cd_dataset *ds, const cp_method_result res[CP_N_METHODS],
                const cp_metrics *pop)
{
    int any = 0;
    for (int k = 0; k < CP_N_METHODS; k++) {
        if (!res[k].ran)
            continue;
        print_method(f, ds, &res[k], cp_method_names[k]);
        any++;
    }
    int nt = 0;
    for (int k = 0; k < CP_N_METHODS; k++)
        if (res[k].ran && res[k].n_tasks > nt)
            nt = res[k].n_tasks;
    if (pop)
        print_popularity(f, ds, pop, nt);
    if (any < 2 && !pop)
        return;
    fprintf(f, "\n== summary (main metric per task; HR@5 or accuracy)\n  %-16s %-8s", "task",
            "metric");
    for (int k = 0; k < CP_N_METHODS; k++)
        if (res[k].ran)
            fprintf(f, " %10s", cp_method_names[k]);
    if (pop)
        fprintf(f, " %10s", "popularity");
    fputc('\n', f);
    for (int i = 0; i < nt; i++) {
        char label[32];
        snprintf(label, sizeof label, "T%d %s", i + 1, ds->tasks[i].name);
        fprintf(f, "  %-16s %-8s", label,
                ds->tasks[i].kind == CD_KIND_CLASSIFICATION ? "acc" : "HR@5");
        for (int k = 0; k < CP_N_METHODS; k++)
            if (res[k].ran)
                fprintf(f, " %10.4f", cp_main_metric(&res[k].final[i], ds->tasks[i].kind));
        if (pop)
            fprintf(f, " %10.4f", cp_main_metric(&pop[i], ds->tasks[i].kind));
        fputc('\n', f);
    }
    fprintf(f, "  %-25s", "stored parameters");
    for (int k = 0; k < CP_N_METHODS; k++)
        if (res[k].ran) {
            char buf[32];
            fmt_count(buf, sizeof buf, res[k].stored_parameters);
            fprintf(f, " %10s", buf);
        }
    if (pop)
        fprintf(f, " %10s", "0");
    fputc('\n', f);
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                      */
/* ------------------------------------------------------------------------ */

static cJSON *metrics_json(const cp_metrics *m, int kind)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "n", m->n);
    if (kind == CD_KIND_CLASSIFICATION) {
        cJSON_AddNumberToObject(o, "accuracy", m->acc);
        return o;
    }
    for (int k = 0; k < CP_N_KS; k++) {
        char key[16];
        snprintf(key, sizeof key, "hr@%d", cp_ks[k]);
        cJSON_AddNumberToObject(o, key, m->hr[k]);
        snprintf(key, sizeof key, "mrr@%d", cp_ks[k]);
        cJSON_AddNumberToObject(o, key, m->mrr[k]);
        snprintf(key, sizeof key, "ndcg@%d", cp_ks[k]);
        cJSON_AddNumberToObject(o, key, m->ndcg[k]);
    }
    return o;
}

static cJSON *num_or_null(double v)
{
    return isnan(v) ? cJSON_CreateNull() : cJSON_CreateNumber(v);
}

/* The fields every task entry has (methods and the popularity reference):
 * task number, name, kind, main metric and all metrics of m. */
static cJSON *task_json(const cd_task *t, int i, const cp_metrics *m)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "task", i + 1);
    cJSON_AddStringToObject(x, "name", t->name);
    cJSON_AddStringToObject(x, "kind", cres_kind_name(t->kind));
    cJSON_AddStringToObject(x, "main_metric", cp_main_metric_name(t->kind));
    cJSON_AddItemToObject(x, "main", num_or_null(cp_main_metric(m, t->kind)));
    cJSON_AddItemToObject(x, "metrics", metrics_json(m, t->kind));
    return x;
}

static cJSON *method_json(const cd_dataset *ds, const cp_method_result *r, int is_conure)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *tasks = cJSON_AddArrayToObject(o, "tasks");
    for (int i = 0; i < r->n_tasks; i++) {
        cJSON *x = task_json(&ds->tasks[i], i, &r->final[i]);
        cJSON *ep = cJSON_AddArrayToObject(x, "epochs");
        cJSON_AddItemToArray(ep, cJSON_CreateNumber(r->epochs_run[i][0]));
        if (is_conure)
            cJSON_AddItemToArray(ep, cJSON_CreateNumber(r->epochs_run[i][1]));
        cJSON_AddItemToArray(tasks, x);
    }
    cJSON_AddNumberToObject(o, "stored_parameters", (double)r->stored_parameters);
    cJSON_AddNumberToObject(o, "models", r->n_models);
    cJSON_AddNumberToObject(o, "wall_time_s", r->wall_s);
    if (r->has_matrix) {
        cJSON *mat = cJSON_AddArrayToObject(o, "matrix");
        for (int j = 0; j < r->n_tasks; j++) {
            cJSON *row = cJSON_CreateArray();
            for (int i = 0; i < r->n_tasks; i++)
                cJSON_AddItemToArray(row, i > j ? cJSON_CreateNull() : num_or_null(r->matrix[j][i]));
            cJSON_AddItemToArray(mat, row);
        }
    }
    if (r->n_stages > 0) {
        cJSON *st = cJSON_AddArrayToObject(o, "stages");
        for (int s = 0; s < r->n_stages; s++) {
            const cp_stage *g = &r->stages[s];
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "task", g->task);
            cJSON_AddStringToObject(x, "stage", g->stage);
            cJSON *mm = cJSON_AddArrayToObject(x, "main");
            for (int i = 0; i < g->n_eval; i++)
                cJSON_AddItemToArray(mm, num_or_null(cp_main_metric(&g->m[i], ds->tasks[i].kind)));
            cJSON_AddItemToArray(st, x);
        }
    }
    if (is_conure) {
        cJSON *cap = cJSON_AddObjectToObject(o, "capacity");
        cJSON_AddNumberToObject(cap, "free", (double)r->capacity[0]);
        cJSON *own = cJSON_AddArrayToObject(cap, "owned");
        for (int i = 1; i <= r->n_tasks; i++)
            cJSON_AddItemToArray(own, cJSON_CreateNumber((double)r->capacity[i]));
    }
    return o;
}

static cJSON *dataset_json(const cd_dataset *ds)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "protocol", ds->conure_protocol ? "conure-80-20" : "s3rec-loo");
    cJSON_AddNumberToObject(o, "users", ds->n_users);
    cJSON_AddNumberToObject(o, "dropped_users", ds->n_dropped_users);
    cJSON_AddNumberToObject(o, "interactions", (double)ds->n_interactions);
    cJSON_AddNumberToObject(o, "items", ds->vocab_size - 1);
    cJSON_AddNumberToObject(o, "bad_lines_skipped", (double)ds->n_bad_lines);
    cJSON_AddNumberToObject(o, "t1_training_rows", ds->n_windows);
    cJSON *tasks = cJSON_AddArrayToObject(o, "tasks");
    for (int i = 0; i < ds->n_tasks; i++) {
        const cd_task *t = &ds->tasks[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "task", i + 1);
        cJSON_AddStringToObject(x, "name", t->name);
        cJSON_AddStringToObject(x, "description", t->desc);
        cJSON_AddStringToObject(x, "kind", cres_kind_name(t->kind));
        cJSON_AddNumberToObject(x, "n_targets", t->n_targets);
        cJSON_AddNumberToObject(x, "train_examples", t->n_train);
        cJSON_AddNumberToObject(x, "train_users", t->n_train_users);
        cJSON_AddNumberToObject(x, "test_examples", t->test.n);
        cJSON_AddNumberToObject(x, "test_users", t->n_test_users);
        if (t->val.n)
            cJSON_AddNumberToObject(x, "validation_examples", t->val.n);
        if (t->class_names) {
            cJSON *c = cJSON_AddArrayToObject(x, "classes");
            for (int32_t k = 0; k < t->n_targets; k++)
                cJSON_AddItemToArray(c, cJSON_CreateString(t->class_names[k]));
        }
        cJSON_AddItemToArray(tasks, x);
    }
    return o;
}

static cJSON *settings_json(const cd_dataset *ds, const cp_settings *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "channels", s->channels);
    if (s->kernel_width > 0)
        cJSON_AddNumberToObject(o, "kernel_width", s->kernel_width);
    cJSON_AddStringToObject(o, "dilations", s->dilations[0] ? s->dilations : "1,4,1,4,1,4,1,4");
    cJSON_AddStringToObject(o, "block_order", s->block_order[0] ? s->block_order : "pre_norm");
    cJSON_AddNumberToObject(o, "max_len", ds->max_len);
    cJSON_AddStringToObject(o, "windows", ds->windows == CD_WINDOWS_ALL ? "all" : "last");
    cJSON_AddBoolToObject(o, "exclude_history", ds->exclude_history);
    static const char *const which[2] = {"t1", "later"};
    for (int w = 0; w < 2; w++) {
        cJSON *x = cJSON_AddObjectToObject(o, which[w]);
        cJSON_AddNumberToObject(x, "dense_epochs", s->dense_epochs[w]);
        cJSON_AddNumberToObject(x, "retrain_epochs", s->retrain_epochs[w]);
        cJSON_AddNumberToObject(x, "batch", s->batch[w]);
        cJSON_AddNumberToObject(x, "lr", s->lr[w]);
    }
    cJSON *pe = cJSON_AddArrayToObject(o, "task_epochs");
    for (int k = 0; k < ds->n_tasks; k++) {
        cJSON *x = cJSON_CreateArray();
        cJSON_AddItemToArray(x, cJSON_CreateNumber(cp_dense_epochs(s, k)));
        cJSON_AddItemToArray(x, cJSON_CreateNumber(cp_retrain_epochs(s, k)));
        cJSON_AddItemToArray(pe, x);
    }
    cJSON_AddStringToObject(o, "t1_loss", s->t1_loss[0] ? s->t1_loss : "sampled_softmax");
    cJSON_AddStringToObject(o, "class_loss", s->class_loss[0] ? s->class_loss : "bce");
    cJSON_AddNumberToObject(o, "negatives", s->negatives);
    cJSON_AddBoolToObject(o, "t1_tie_embedding", s->t1_tie);
    cJSON_AddNumberToObject(o, "t1_dropout", s->dropout[0] > 0 ? s->dropout[0] : 0);
    cJSON_AddNumberToObject(o, "task_dropout", s->dropout[1] > 0 ? s->dropout[1] : 0);
    if (s->l2 >= 0)
        cJSON_AddNumberToObject(o, "l2", s->l2);
    else
        cJSON_AddNullToObject(o, "l2");
    if (s->rho > 0)
        cJSON_AddNumberToObject(o, "rho", s->rho);
    else
        cJSON_AddNullToObject(o, "rho");
    if (s->release_ratio >= 0)
        cJSON_AddNumberToObject(o, "release_ratio", s->release_ratio);
    else
        cJSON_AddNullToObject(o, "release_ratio");
    cJSON_AddNumberToObject(o, "patience", s->patience);
    cJSON_AddNumberToObject(o, "eval_batch", s->eval_batch);
    cJSON_AddNumberToObject(o, "tasks", s->n_tasks > 0 && s->n_tasks < ds->n_tasks ? s->n_tasks
                                                                                   : ds->n_tasks);
    return o;
}

int cres_write_json(const char *path, const cres_info *info, const cd_dataset *ds,
                    const cp_settings *set, const cp_method_result res[CP_N_METHODS], char *err,
                    size_t errcap)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    cJSON_AddStringToObject(root, "program", "conure");
    cJSON_AddStringToObject(root, "command", info->command);
    cJSON_AddStringToObject(root, "library_version", conure_version_string());
    cJSON_AddStringToObject(root, "preset", ds->preset);
    cJSON_AddStringToObject(root, "data_dir", ds->data_dir);
    cJSON_AddNumberToObject(root, "seed", (double)set->seed);
    cJSON_AddNumberToObject(root, "threads", info->threads);
    cJSON_AddNumberToObject(root, "threads_used", (double)info->threads_used);
    cJSON_AddStringToObject(root, "backend", info->backend);
    cJSON_AddBoolToObject(root, "quick", info->quick);
    cJSON_AddNumberToObject(root, "wall_time_s", info->wall_s);
    if (info->config_file)
        cJSON_AddStringToObject(root, "config", info->config_file);
    if (info->resumed_from)
        cJSON_AddStringToObject(root, "resumed_from", info->resumed_from);
    if (info->model_in)
        cJSON_AddStringToObject(root, "model", info->model_in);
    if (info->model_out)
        cJSON_AddStringToObject(root, "model_file", info->model_out);
    cJSON_AddItemToObject(root, "settings", settings_json(ds, set));
    cJSON_AddItemToObject(root, "dataset", dataset_json(ds));
    cJSON *methods = cJSON_AddObjectToObject(root, "methods");
    for (int k = 0; k < CP_N_METHODS; k++)
        if (res[k].ran)
            cJSON_AddItemToObject(methods, cp_method_names[k], method_json(ds, &res[k], k == CP_CONURE));
    if (info->popularity) {
        /* the reference rankings without a model (cp_evaluate_popularity) */
        cJSON *pop = cJSON_AddObjectToObject(root, "popularity");
        cJSON_AddStringToObject(pop, "what",
                                "items ranked by training frequency; classification: the "
                                "majority training class");
        cJSON *tasks = cJSON_AddArrayToObject(pop, "tasks");
        for (int i = 0; i < ds->n_tasks; i++) {
            const cd_task *t = &ds->tasks[i];
            cJSON *x = task_json(t, i, &info->popularity[i]);
            if (t->class_names)
                cJSON_AddStringToObject(x, "majority_class", t->class_names[0]);
            cJSON_AddItemToArray(tasks, x);
        }
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) {
        snprintf(err, errcap, "out of memory printing JSON");
        return -1;
    }
    /* write to a temporary file and rename, so a reader never sees half a file */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errcap, "%s: cannot write: %s", tmp, strerror(errno));
        free(text);
        return -1;
    }
    int bad = fputs(text, f) < 0 || fputc('\n', f) == EOF;
    bad |= fclose(f) != 0;
    free(text);
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, errcap, "%s: cannot write: %s", path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}
