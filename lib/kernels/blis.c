/* placeholder: being written */
typedef int cn_placeholder_kernels_blis_c;
