/* placeholder: being written */
typedef int cn_placeholder_kernels_gemm_c;
