/* placeholder: being written */
typedef int cn_placeholder_kernels_ref_c;
