/* placeholder: being written */
typedef int cn_placeholder_nn_adam_c;
