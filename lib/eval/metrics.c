/* placeholder: being written */
typedef int cn_placeholder_eval_metrics_c;
