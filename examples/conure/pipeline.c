/* Conure and baseline pipelines on the public libconure API. */
#define _POSIX_C_SOURCE 200809L
#include "pipeline.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(CD_KIND_NEXT_ITEM == CONURE_TASK_NEXT_ITEM &&
                   CD_KIND_ITEM_REC == CONURE_TASK_ITEM_REC &&
                   CD_KIND_CLASSIFICATION == CONURE_TASK_CLASSIFICATION,
               "dataset.h task kinds must equal conure_task_kind");

const char *const cp_method_names[CP_N_METHODS] = {"conure", "sinmo", "sinmoall", "fineall"};
const int cp_ks[CP_N_KS] = {5, 10, 20};

double cp_main_metric(const cp_metrics *m, int kind)
{
    return kind == CD_KIND_CLASSIFICATION ? m->acc : m->hr[0];
}

const char *cp_main_metric_name(int kind)
{
    return kind == CD_KIND_CLASSIFICATION ? "accuracy" : "hr@5";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_err(cp_run *run, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void run_err(cp_run *run, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->err, sizeof run->err, fmt, ap);
    va_end(ap);
}

/* Formats a failed library call: "what: status text: detail". */
static int api_fail(cp_run *run, const char *what, conure_status st)
{
    const char *detail = conure_last_error();
    run_err(run, "%s: %s%s%s", what, conure_status_string(st), detail && *detail ? ": " : "",
            detail ? detail : "");
    return -1;
}

#define API(run, what, call)                                                                   \
    do {                                                                                       \
        conure_status st_ = (call);                                                            \
        if (st_ != CONURE_OK)                                                                  \
            return api_fail((run), (what), st_);                                               \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Options and tasks                                                         */
/* ------------------------------------------------------------------------ */

int cp_model_options(cp_run *run, const char *training_mode, conure_options **out)
{
    const cp_settings *s = run->set;
    conure_options *o = NULL;
    conure_status st = conure_options_create(&o);
    if (st != CONURE_OK)
        return api_fail(run, "options", st);
#define SETI(k, v)                                                                             \
    if ((st = conure_options_set_int(o, (k), (v))) != CONURE_OK)                                \
        goto fail;
#define SETS(k, v)                                                                             \
    if ((st = conure_options_set_string(o, (k), (v))) != CONURE_OK)                             \
        goto fail;
    SETI("vocab_size", run->ds->vocab_size);
    SETI("channels", s->channels);
    if (s->kernel_width > 0)
        SETI("kernel_width", s->kernel_width);
    SETI("max_len", run->ds->max_len + 1);
    SETI("seed", (int64_t)s->seed);
    SETI("threads", s->threads);
    if (s->dilations[0])
        SETS("dilations", s->dilations);
    if (s->block_order[0])
        SETS("block_order", s->block_order);
    if (s->backend[0])
        SETS("backend", s->backend);
    SETS("training_mode", training_mode);
    *out = o;
    return 0;
fail:
    conure_options_free(o);
    return api_fail(run, "model options", st);
#undef SETI
#undef SETS
}

/* Run-time options for loading a copy or a file. */
static int runtime_options(cp_run *run, conure_options **out)
{
    conure_options *o = NULL;
    conure_status st = conure_options_create(&o);
    if (st == CONURE_OK)
        st = conure_options_set_int(o, "threads", run->set->threads);
    if (st == CONURE_OK && run->set->backend[0])
        st = conure_options_set_string(o, "backend", run->set->backend);
    if (st != CONURE_OK) {
        conure_options_free(o);
        return api_fail(run, "load options", st);
    }
    *out = o;
    return 0;
}

/* Every model of a run may be scored while a task is still being trained
 * (evaluation after the dense phase and after pruning); this run-time
 * setting is not stored in model files, so it is set on every new handle. */
static int allow_unfinished(cp_run *run, conure_model *m)
{
    conure_status st = conure_model_set_int(m, "eval_unfinished", 1);
    if (st != CONURE_OK)
        return api_fail(run, "eval_unfinished", st);
    return 0;
}

static int new_model(cp_run *run, const char *mode, conure_model **out)
{
    conure_options *o;
    if (cp_model_options(run, mode, &o))
        return -1;
    conure_status st = conure_model_create(o, out);
    conure_options_free(o);
    if (st != CONURE_OK)
        return api_fail(run, "create model", st);
    return allow_unfinished(run, *out);
}

/* Adds dataset task k (0-based) to m; *id receives the model's task id. */
static int add_task(cp_run *run, conure_model *m, int k, int conure_mode, int32_t *id)
{
    const cp_settings *s = run->set;
    const cd_task *t = &run->ds->tasks[k];
    int later = t->kind != CD_KIND_NEXT_ITEM;
    conure_options *o = NULL;
    conure_status st = conure_options_create(&o);
    if (st != CONURE_OK)
        return api_fail(run, "task options", st);
    st = conure_options_set_float(o, "lr", s->lr[later]);
    if (st == CONURE_OK && !later && s->t1_tie)
        st = conure_options_set_int(o, "tie_embedding", 1);
    if (st == CONURE_OK && s->dropout[later] >= 0)
        st = conure_options_set_float(o, "dropout", s->dropout[later]);
    if (st == CONURE_OK && !later && s->t1_loss[0])
        st = conure_options_set_string(o, "loss", s->t1_loss);
    if (st == CONURE_OK && t->kind == CD_KIND_CLASSIFICATION && s->class_loss[0])
        st = conure_options_set_string(o, "loss", s->class_loss);
    if (st == CONURE_OK && !later && s->negatives > 0)
        st = conure_options_set_int(o, "negatives", s->negatives);
    if (st == CONURE_OK && later && s->l2 >= 0)
        st = conure_options_set_float(o, "l2", s->l2);
    if (st == CONURE_OK && t->kind == CD_KIND_ITEM_REC && s->rho > 0)
        st = conure_options_set_float(o, "rho", s->rho);
    if (st == CONURE_OK && conure_mode && s->release_ratio >= 0)
        st = conure_options_set_float(o, "release_ratio", s->release_ratio);
    if (st != CONURE_OK) {
        conure_options_free(o);
        return api_fail(run, "task options", st);
    }
    st = conure_model_add_task(m, (conure_task_kind)t->kind, t->n_targets, o, id);
    conure_options_free(o);
    if (st != CONURE_OK) {
        char what[96];
        snprintf(what, sizeof what, "add task T%d (%s)", k + 1, t->name);
        return api_fail(run, what, st);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Evaluation                                                                */
/* ------------------------------------------------------------------------ */

int cp_evaluate(cp_run *run, const conure_model *m, int32_t task_id, const cd_task *t,
                const cd_examples *ex, cp_metrics *out)
{
    const cd_dataset *ds = run->ds;
    int32_t L = ds->max_len, nT = t->n_targets;
    int32_t B = run->set->eval_batch > 0 ? run->set->eval_batch : 256;
    memset(out, 0, sizeof *out);
    if (ex->n == 0)
        return 0;
    int32_t *rows = malloc((size_t)B * (size_t)L * sizeof *rows);
    float *scores = malloc((size_t)B * (size_t)nT * sizeof *scores);
    float *tmp = malloc((size_t)nT * sizeof *tmp);
    int32_t *ranks = malloc((size_t)ex->n * sizeof *ranks);
    int rc = -1;
    if (!rows || !scores || !tmp || !ranks) {
        run_err(run, "evaluate: out of memory");
        goto out;
    }
    int32_t e = 0;
    while (e < ex->n) {
        int32_t start = e, nb = 0;
        while (e < ex->n) {
            if (e == start || ex->row[e] != ex->row[e - 1]) {
                if (nb == B)
                    break;
                memcpy(rows + (size_t)nb * (size_t)L, ds->rows + (size_t)ex->row[e] * (size_t)L,
                       (size_t)L * sizeof *rows);
                nb++;
            }
            e++;
        }
        conure_status st = CONURE_OK;
        if (m) {
            st = conure_model_scores(m, task_id, rows, nb, L, scores, (size_t)nb * (size_t)nT);
        } else {
            /* popularity: ids are in decreasing training frequency
             * (docs/protocol.md section 3), so score = -id ranks the most
             * popular first; T1's id 0 (padding) is never recommended */
            for (int32_t r = 0; r < nb; r++)
                for (int32_t j = 0; j < nT; j++)
                    scores[(size_t)r * (size_t)nT + (size_t)j] =
                        (j == 0 && t->kind == CD_KIND_NEXT_ITEM) ? -INFINITY : -(float)j;
        }
        if (st != CONURE_OK) {
            api_fail(run, "scores", st);
            goto out;
        }
        int32_t slot = -1;
        for (int32_t j = start; j < e; j++) {
            if (j == start || ex->row[j] != ex->row[j - 1])
                slot++;
            const float *s = scores + (size_t)slot * (size_t)nT;
            int32_t mo = ex->mask_off[j], mn = ex->mask_off[j + 1] - mo;
            if (mn > 0) {
                memcpy(tmp, s, (size_t)nT * sizeof *tmp);
                for (int32_t q = 0; q < mn; q++) {
                    int32_t id = ex->mask[mo + q];
                    if (id >= 0 && id < nT && id != ex->target[j])
                        tmp[id] = -INFINITY;
                }
                s = tmp;
            }
            st = conure_eval_ranks(s, 1, nT, &ex->target[j], &ranks[j]);
            if (st != CONURE_OK) {
                api_fail(run, "rank", st);
                goto out;
            }
        }
    }
    for (int k = 0; k < CP_N_KS; k++) {
        conure_status st = conure_eval_metrics(ranks, ex->n, cp_ks[k], &out->hr[k], &out->mrr[k],
                                               &out->ndcg[k]);
        if (st != CONURE_OK) {
            api_fail(run, "metrics", st);
            goto out;
        }
    }
    {
        conure_status st = conure_eval_metrics(ranks, ex->n, 1, &out->acc, NULL, NULL);
        if (st != CONURE_OK) {
            api_fail(run, "metrics", st);
            goto out;
        }
    }
    out->n = ex->n;
    rc = 0;
out:
    free(rows);
    free(scores);
    free(tmp);
    free(ranks);
    return rc;
}

int cp_evaluate_popularity(cp_run *run, cp_metrics out[CD_MAX_TASKS])
{
    for (int i = 0; i < run->ds->n_tasks; i++) {
        const cd_task *t = &run->ds->tasks[i];
        if (cp_evaluate(run, NULL, i + 1, t, &t->test, &out[i]))
            return -1;
    }
    return 0;
}

/* Evaluates dataset tasks 0..n_eval-1 (model ids 1..n_eval) into a stage. */
static int eval_stage(cp_run *run, const conure_model *m, int task, const char *stage,
                      int n_eval, cp_method_result *res)
{
    if (res->n_stages >= (int)(sizeof res->stages / sizeof res->stages[0])) {
        run_err(run, "internal: too many stages");
        return -1;
    }
    cp_stage *sg = &res->stages[res->n_stages];
    memset(sg, 0, sizeof *sg);
    sg->task = task;
    snprintf(sg->stage, sizeof sg->stage, "%s", stage);
    sg->n_eval = n_eval;
    for (int i = 0; i < n_eval; i++) {
        const cd_task *t = &run->ds->tasks[i];
        if (cp_evaluate(run, m, i + 1, t, &t->test, &sg->m[i]))
            return -1;
    }
    res->n_stages++;
    if (run->set->verbose || run->set->progress) {
        fprintf(stderr, "  after T%d %-9s:", task, stage);
        for (int i = 0; i < n_eval; i++)
            fprintf(stderr, " T%d %s %.4f", i + 1,
                    run->ds->tasks[i].kind == CD_KIND_CLASSIFICATION ? "acc" : "HR@5",
                    cp_main_metric(&sg->m[i], run->ds->tasks[i].kind));
        fputc('\n', stderr);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct progress {
    int mode;             /* 0 none, 1 lines, 2 terminal */
    char label[96];
    int epoch, epochs;
    long per_epoch;       /* examples per epoch */
    double phase_t0, last_draw;
} progress;

static void fmt_eta(char *buf, size_t cap, double s)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void progress_draw(progress *p, long done_in_epoch, double loss, int final,
                          const char *extra)
{
    if (p->mode == 0)
        return;
    double t = now_s(), el = t - p->phase_t0;
    if (!final && (p->mode != 2 || t - p->last_draw < 0.25))
        return;
    p->last_draw = t;
    double done = (double)(p->epoch - 1) * (double)p->per_epoch + (double)done_in_epoch;
    double total = (double)p->epochs * (double)p->per_epoch;
    double rate = el > 0 ? done / el : 0;
    char eta[32];
    fmt_eta(eta, sizeof eta, rate > 0 ? (total - done) / rate : -1);
    fprintf(stderr, "%s%s epoch %d/%d  %5.1f%%  loss %.4f  %.0f ex/s  ETA %s%s%s",
            p->mode == 2 ? "\r\033[K" : "", p->label, p->epoch, p->epochs,
            p->per_epoch ? 100.0 * (double)done_in_epoch / (double)p->per_epoch : 100.0, loss,
            rate, eta, extra ? "  " : "", extra ? extra : "");
    if (final || p->mode == 1)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Trains model task `id` (dataset task k) for up to `epochs` epochs.  With a
 * validation set and patience > 0, keeps the best epoch by validation
 * NDCG@20 and restores it at the end (*mp may be replaced).  *ran receives
 * the epochs run. */
static int train_epochs(cp_run *run, conure_model **mp, int32_t id, int k, int epochs,
                        const char *method, const char *phase, uint64_t stream, int *ran)
{
    const cd_dataset *ds = run->ds;
    const cp_settings *s = run->set;
    const cd_task *t = &ds->tasks[k];
    int next_item = t->kind == CD_KIND_NEXT_ITEM;
    int32_t L = ds->max_len, width = next_item ? L + 1 : L;
    int32_t n = next_item ? ds->n_windows : t->n_train;
    int32_t B = s->batch[next_item ? 0 : 1];
    int early = next_item && t->val.n > 0 && s->patience > 0;
    *ran = 0;
    if (epochs <= 0 || n <= 0)
        return 0;
    if (B > n)
        B = n;
    int32_t *order = malloc((size_t)n * sizeof *order);
    int32_t *items = malloc((size_t)B * (size_t)width * sizeof *items);
    int32_t *targets = malloc((size_t)B * sizeof *targets);
    void *best = NULL;
    size_t best_len = 0;
    double best_val = -1;
    int best_epoch = 0, rc = -1;
    if (!order || !items || !targets) {
        run_err(run, "train: out of memory");
        goto out;
    }
    for (int32_t i = 0; i < n; i++)
        order[i] = i;
    cd_rng rng;
    cd_rng_seed(&rng, s->seed, stream);
    progress p;
    memset(&p, 0, sizeof p);
    p.mode = s->progress;
    snprintf(p.label, sizeof p.label, "[%s] T%d %s %s", method, k + 1, t->name, phase);
    p.epochs = epochs;
    p.per_epoch = n;
    p.phase_t0 = now_s();
    for (int ep = 1; ep <= epochs; ep++) {
        p.epoch = ep;
        cd_shuffle_i32(&rng, order, (size_t)n);
        double loss_sum = 0;
        long loss_n = 0;
        for (int32_t b0 = 0; b0 < n; b0 += B) {
            /* Every step has exactly B rows: the last batch of an epoch is
             * topped up from the start of the epoch's order, so every step
             * has the same loss scale (examples/conure/README.md). */
            int32_t nb = B;
            for (int32_t j = 0; j < nb; j++) {
                int32_t e = order[(b0 + j) % n];
                if (next_item) {
                    memcpy(items + (size_t)j * (size_t)width,
                           ds->windows_buf + (size_t)e * (size_t)width,
                           (size_t)width * sizeof *items);
                } else {
                    memcpy(items + (size_t)j * (size_t)width,
                           ds->rows + (size_t)t->train_row[e] * (size_t)L,
                           (size_t)L * sizeof *items);
                    targets[j] = t->train_target[e];
                }
            }
            float loss = 0;
            conure_status st = conure_model_train_step(*mp, id, items, nb, width,
                                                       next_item ? NULL : targets, &loss);
            if (st != CONURE_OK) {
                char what[128];
                snprintf(what, sizeof what, "train T%d %s %s epoch %d", k + 1, t->name, phase,
                         ep);
                api_fail(run, what, st);
                goto out;
            }
            loss_sum += loss;
            loss_n++;
            progress_draw(&p, b0 + nb < n ? b0 + nb : n, loss_sum / (double)loss_n, 0, NULL);
        }
        *ran = ep;
        char extra[64] = "";
        int stop = 0;
        if (early) {
            cp_metrics vm;
            if (cp_evaluate(run, *mp, id, t, &t->val, &vm))
                goto out;
            snprintf(extra, sizeof extra, "val NDCG@20 %.4f", vm.ndcg[2]);
            if (vm.ndcg[2] > best_val) {
                best_val = vm.ndcg[2];
                best_epoch = ep;
                size_t need = 0;
                conure_status st = conure_model_save_size(*mp, CONURE_SAVE_OPTIMIZER, &need);
                if (st != CONURE_OK) {
                    api_fail(run, "snapshot size", st);
                    goto out;
                }
                if (need > best_len) {
                    void *nbuf = realloc(best, need);
                    if (!nbuf) {
                        run_err(run, "snapshot: out of memory");
                        goto out;
                    }
                    best = nbuf;
                }
                st = conure_model_save_buffer(*mp, CONURE_SAVE_OPTIMIZER, best, need, &best_len);
                if (st != CONURE_OK) {
                    api_fail(run, "snapshot", st);
                    goto out;
                }
            } else if (ep - best_epoch >= s->patience) {
                stop = 1;
            }
        }
        progress_draw(&p, n, loss_n ? loss_sum / (double)loss_n : 0, 1, early ? extra : NULL);
        if (stop) {
            if (s->progress)
                fprintf(stderr, "  early stop: best epoch %d (val NDCG@20 %.4f)\n", best_epoch,
                        best_val);
            break;
        }
    }
    if (early && best && best_epoch != *ran) {
        conure_options *o;
        conure_model *nm = NULL;
        if (runtime_options(run, &o))
            goto out;
        conure_status st = conure_model_load_buffer(best, best_len, o, &nm);
        conure_options_free(o);
        if (st != CONURE_OK) {
            api_fail(run, "restore best epoch", st);
            goto out;
        }
        conure_model_free(*mp);
        *mp = nm;
        if (allow_unfinished(run, nm))
            goto out;
    }
    rc = 0;
out:
    free(order);
    free(items);
    free(targets);
    free(best);
    return rc;
}

int cp_dense_epochs(const cp_settings *s, int k)
{
    return s->task_dense[k] >= 0 ? s->task_dense[k] : s->dense_epochs[k > 0];
}

int cp_retrain_epochs(const cp_settings *s, int k)
{
    return s->task_retrain[k] >= 0 ? s->task_retrain[k] : s->retrain_epochs[k > 0];
}

static uint64_t stream_of(int method, int k, int phase)
{
    return (uint64_t)method * 1000u + (uint64_t)k * 10u + (uint64_t)phase;
}

static int n_target_tasks(cp_run *run)
{
    int n = run->ds->n_tasks;
    if (run->set->n_tasks > 0 && run->set->n_tasks < n)
        n = run->set->n_tasks;
    return n;
}

static int stored_params(cp_run *run, const conure_model *m, int64_t *acc)
{
    int64_t v = 0;
    API(run, "n_parameters", conure_model_get_int(m, "n_parameters", &v));
    *acc += v;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Conure                                                                    */
/* ------------------------------------------------------------------------ */

int cp_check_model(cp_run *run, const conure_model *m)
{
    const cd_dataset *ds = run->ds;
    int64_t vocab = 0, ntasks = 0, maxlen = 0;
    API(run, "model vocab_size", conure_model_get_int(m, "vocab_size", &vocab));
    API(run, "model n_tasks", conure_model_get_int(m, "n_tasks", &ntasks));
    API(run, "model max_len", conure_model_get_int(m, "max_len", &maxlen));
    if (vocab != ds->vocab_size) {
        run_err(run,
                "the model's vocabulary (%lld ids) does not match preset %s (%d ids): another "
                "dataset or preset?",
                (long long)vocab, ds->preset, ds->vocab_size);
        return -1;
    }
    if (maxlen < ds->max_len + 1) {
        run_err(run, "the model's max_len %lld is shorter than the input length %d + 1",
                (long long)maxlen, ds->max_len);
        return -1;
    }
    if (ntasks > ds->n_tasks) {
        run_err(run, "the model has %lld tasks; preset %s has %d", (long long)ntasks, ds->preset,
                ds->n_tasks);
        return -1;
    }
    for (int32_t i = 1; i <= ntasks; i++) {
        int32_t kind = 0, nt = 0, phase = 0;
        API(run, "task info", conure_model_task_info(m, i, &kind, &nt, &phase));
        const cd_task *t = &ds->tasks[i - 1];
        if (kind != t->kind || nt != t->n_targets) {
            run_err(run,
                    "the model's task %d (kind %d, %d targets) does not match the preset's T%d "
                    "%s (kind %d, %d targets)",
                    i, kind, nt, i, t->name, t->kind, t->n_targets);
            return -1;
        }
    }
    return 0;
}

int cp_run_conure(cp_run *run, conure_model **mp, cp_method_result *res)
{
    double t0 = now_s();
    const cp_settings *s = run->set;
    int n_target = n_target_tasks(run), start = 0;
    memset(res, 0, sizeof *res);
    res->has_matrix = 1;
    for (int j = 0; j < CD_MAX_TASKS; j++)
        for (int i = 0; i < CD_MAX_TASKS; i++)
            res->matrix[j][i] = NAN;
    if (*mp) {
        int64_t nt = 0, mode = 0;
        if (cp_check_model(run, *mp) || allow_unfinished(run, *mp))
            return -1;
        API(run, "n_tasks", conure_model_get_int(*mp, "n_tasks", &nt));
        API(run, "training_mode", conure_model_get_int(*mp, "training_mode", &mode));
        if (mode != 0) {
            run_err(run, "the model was trained in finetune mode; --resume needs a Conure model");
            return -1;
        }
        for (int32_t i = 1; i <= nt; i++) {
            int32_t phase = 0;
            API(run, "task info", conure_model_task_info(*mp, i, NULL, NULL, &phase));
            if (phase != CONURE_PHASE_DONE) {
                run_err(run, "task %d of the model is not finished (phase %d)", i, phase);
                return -1;
            }
        }
        start = (int)nt;
        if (start >= n_target) {
            run_err(run, "the model already holds %d tasks: nothing to add (preset %s has %d%s)",
                    start, run->ds->preset, run->ds->n_tasks,
                    s->n_tasks ? ", limited by --tasks" : "");
            return -1;
        }
        if (start > 0) {
            if (eval_stage(run, *mp, start, "loaded", start, res))
                return -1;
            /* Conure never changes a finished task: row j of the matrix for
             * j < start is the loaded evaluation restricted to tasks <= j. */
            const cp_stage *sg = &res->stages[res->n_stages - 1];
            for (int j = 0; j < start; j++)
                for (int i = 0; i <= j; i++)
                    res->matrix[j][i] = cp_main_metric(&sg->m[i], run->ds->tasks[i].kind);
        }
    } else if (new_model(run, "conure", mp)) {
        return -1;
    }
    conure_model *m = *mp;
    for (int k = start; k < n_target; k++) {
        int32_t id;
        if (add_task(run, m, k, 1, &id))
            return -1;
        if (train_epochs(run, mp, id, k, cp_dense_epochs(s, k), "conure", "dense",
                         stream_of(CP_CONURE, k, 0), &res->epochs_run[k][0]))
            return -1;
        m = *mp;
        if (eval_stage(run, m, k + 1, "dense", k + 1, res))
            return -1;
        API(run, "prune", conure_model_prune(m, id));
        if (eval_stage(run, m, k + 1, "pruned", k + 1, res))
            return -1;
        if (train_epochs(run, mp, id, k, cp_retrain_epochs(s, k), "conure", "retrain",
                         stream_of(CP_CONURE, k, 1), &res->epochs_run[k][1]))
            return -1;
        m = *mp;
        API(run, "finish task", conure_model_finish_task(m, id));
        if (eval_stage(run, m, k + 1, "retrained", k + 1, res))
            return -1;
        const cp_stage *sg = &res->stages[res->n_stages - 1];
        for (int i = 0; i <= k; i++)
            res->matrix[k][i] = cp_main_metric(&sg->m[i], run->ds->tasks[i].kind);
    }
    const cp_stage *last = &res->stages[res->n_stages - 1];
    res->n_tasks = n_target;
    for (int i = 0; i < n_target; i++)
        res->final[i] = last->m[i];
    if (stored_params(run, m, &res->stored_parameters))
        return -1;
    API(run, "capacity", conure_model_capacity(m, -1, res->capacity, n_target + 1));
    res->n_models = 1;
    res->ran = 1;
    res->wall_s = now_s() - t0;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Baselines                                                                 */
/* ------------------------------------------------------------------------ */

/* Trains dataset task k on m in finetune mode for dense+retrain epochs and
 * finishes it. */
static int finetune_task(cp_run *run, conure_model **mp, int k, int method, int *ran)
{
    const cp_settings *s = run->set;
    int32_t id;
    if (add_task(run, *mp, k, 0, &id))
        return -1;
    if (train_epochs(run, mp, id, k, cp_dense_epochs(s, k) + cp_retrain_epochs(s, k),
                     cp_method_names[method], "finetune", stream_of(CP_SINMO, k, 2), ran))
        return -1;
    API(run, "finish task", conure_model_finish_task(*mp, id));
    return 0;
}

static int copy_model(cp_run *run, const void *buf, size_t len, conure_model **out)
{
    conure_options *o;
    if (runtime_options(run, &o))
        return -1;
    conure_status st = conure_model_load_buffer(buf, len, o, out);
    conure_options_free(o);
    if (st != CONURE_OK)
        return api_fail(run, "copy model", st);
    return allow_unfinished(run, *out);
}

int cp_run_baselines(cp_run *run, const int *want, cp_method_result *res)
{
    int n_target = n_target_tasks(run);
    conure_model *base = NULL, *m = NULL;
    void *snap = NULL;
    size_t snap_len = 0;
    int rc = -1;
    if (!want[CP_SINMO] && !want[CP_SINMOALL] && !want[CP_FINEALL])
        return 0;
    /* The finetune T1 model: identical for SinMo, SinMoAll and FineAll (same
     * seed, data and schedule), so it is trained once and copied. */
    double t0 = now_s();
    int t1_ran = 0;
    cp_metrics t1m;
    if (new_model(run, "finetune", &base))
        goto out;
    {
        const char *who = want[CP_SINMO] ? "sinmo" : want[CP_SINMOALL] ? "sinmoall" : "fineall";
        int32_t id;
        if (add_task(run, base, 0, 0, &id))
            goto out;
        const cp_settings *s = run->set;
        if (train_epochs(run, &base, id, 0, cp_dense_epochs(s, 0) + cp_retrain_epochs(s, 0), who,
                         "finetune", stream_of(CP_SINMO, 0, 2), &t1_ran))
            goto out;
        conure_status st = conure_model_finish_task(base, id);
        if (st != CONURE_OK) {
            api_fail(run, "finish task", st);
            goto out;
        }
    }
    if (cp_evaluate(run, base, 1, &run->ds->tasks[0], &run->ds->tasks[0].test, &t1m))
        goto out;
    {
        conure_status st = conure_model_save_size(base, CONURE_SAVE_OPTIMIZER, &snap_len);
        if (st == CONURE_OK) {
            snap = malloc(snap_len);
            if (!snap) {
                run_err(run, "out of memory");
                goto out;
            }
            st = conure_model_save_buffer(base, CONURE_SAVE_OPTIMIZER, snap, snap_len, &snap_len);
        }
        if (st != CONURE_OK) {
            api_fail(run, "save T1 model", st);
            goto out;
        }
    }
    double t1_time = now_s() - t0;
    if (run->set->progress)
        fprintf(stderr, "  finetune T1 model (shared by the baselines): HR@5 %.4f\n", t1m.hr[0]);

    for (int meth = CP_SINMO; meth <= CP_FINEALL; meth++) {
        if (!want[meth])
            continue;
        cp_method_result *r = &res[meth];
        memset(r, 0, sizeof *r);
        double tm = now_s();
        r->n_tasks = n_target;
        r->final[0] = t1m;
        r->epochs_run[0][0] = t1_ran;
        if (meth == CP_SINMO || meth == CP_FINEALL) {
            if (stored_params(run, base, &r->stored_parameters))
                goto out;
            r->n_models = 1;
            for (int k = 1; k < n_target; k++) {
                if (meth == CP_SINMO) {
                    if (new_model(run, "finetune", &m))
                        goto out;
                } else if (copy_model(run, snap, snap_len, &m)) {
                    goto out;
                }
                if (finetune_task(run, &m, k, meth, &r->epochs_run[k][0]))
                    goto out;
                int32_t id = meth == CP_SINMO ? 1 : 2;
                if (cp_evaluate(run, m, id, &run->ds->tasks[k], &run->ds->tasks[k].test,
                                &r->final[k]))
                    goto out;
                if (stored_params(run, m, &r->stored_parameters))
                    goto out;
                r->n_models++;
                if (run->set->progress)
                    fprintf(stderr, "  [%s] T%d %s: %s %.4f\n", cp_method_names[meth], k + 1,
                            run->ds->tasks[k].name,
                            run->ds->tasks[k].kind == CD_KIND_CLASSIFICATION ? "acc" : "HR@5",
                            cp_main_metric(&r->final[k], run->ds->tasks[k].kind));
                conure_model_free(m);
                m = NULL;
            }
        } else { /* SinMoAll */
            r->has_matrix = 1;
            for (int j = 0; j < CD_MAX_TASKS; j++)
                for (int i = 0; i < CD_MAX_TASKS; i++)
                    r->matrix[j][i] = NAN;
            r->matrix[0][0] = cp_main_metric(&t1m, CD_KIND_NEXT_ITEM);
            cp_stage *sg = &r->stages[r->n_stages++];
            memset(sg, 0, sizeof *sg);
            sg->task = 1;
            snprintf(sg->stage, sizeof sg->stage, "trained");
            sg->n_eval = 1;
            sg->m[0] = t1m;
            if (copy_model(run, snap, snap_len, &m))
                goto out;
            for (int k = 1; k < n_target; k++) {
                if (finetune_task(run, &m, k, meth, &r->epochs_run[k][0]))
                    goto out;
                if (eval_stage(run, m, k + 1, "trained", k + 1, r))
                    goto out;
                const cp_stage *g = &r->stages[r->n_stages - 1];
                for (int i = 0; i <= k; i++)
                    r->matrix[k][i] = cp_main_metric(&g->m[i], run->ds->tasks[i].kind);
            }
            const cp_stage *g = &r->stages[r->n_stages - 1];
            for (int i = 0; i < n_target; i++)
                r->final[i] = g->m[i];
            if (stored_params(run, m, &r->stored_parameters))
                goto out;
            r->n_models = 1;
            conure_model_free(m);
            m = NULL;
        }
        r->ran = 1;
        r->wall_s = now_s() - tm + t1_time;
    }
    rc = 0;
out:
    conure_model_free(m);
    conure_model_free(base);
    free(snap);
    return rc;
}
