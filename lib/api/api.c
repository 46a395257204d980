/* placeholder: being written */
typedef int cn_placeholder_api_api_c;
