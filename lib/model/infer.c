/* placeholder: being written */
typedef int cn_placeholder_model_infer_c;
