/* placeholder: being written */
typedef int cn_placeholder_model_model_c;
