/* placeholder: being written */
typedef int cn_placeholder_model_prune_c;
