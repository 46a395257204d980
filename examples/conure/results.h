/* Result tables (stdout) and the results JSON file of the `conure` program. */
#ifndef CONURE_CLI_RESULTS_H
#define CONURE_CLI_RESULTS_H

#include <stdio.h>

#include "dataset.h"
#include "pipeline.h"

typedef struct cres_info {
    const char *command;       /**< "run" or "eval" */
    const char *backend;       /**< resolved backend name */
    int threads;               /**< requested (0 = all CPUs) */
    int64_t threads_used;      /**< as the model reports it */
    int quick;
    double wall_s;
    const char *resumed_from;  /**< or NULL */
    const char *model_in;      /**< eval: the model file */
    const char *model_out;     /**< --model, or NULL */
    const char *config_file;   /**< or NULL */
    const cp_metrics *popularity; /**< [ds->n_tasks] reference rankings, or NULL */
} cres_info;

/** Prints one table per method, the forgetting matrices, the popularity /
 *  majority-class reference (pop[task], or NULL for none) and a summary. */
void cres_print(FILE *f, const cd_dataset *ds, const cp_method_result res[CP_N_METHODS],
                const cp_metrics *pop);

/** Writes the results JSON (docs/results.md describes its fields).
 *  Returns 0, or -1 with a message in err. */
int cres_write_json(const char *path, const cres_info *info, const cd_dataset *ds,
                    const cp_settings *set, const cp_method_result res[CP_N_METHODS], char *err,
                    size_t errcap);

const char *cres_kind_name(int kind);

#endif
