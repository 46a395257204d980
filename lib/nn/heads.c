/* placeholder: being written */
typedef int cn_placeholder_nn_heads_c;
