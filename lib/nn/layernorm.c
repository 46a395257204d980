/* placeholder: being written */
typedef int cn_placeholder_nn_layernorm_c;
