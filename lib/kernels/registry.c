/* placeholder: being written */
typedef int cn_placeholder_kernels_registry_c;
