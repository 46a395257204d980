/* placeholder: being written */
typedef int cn_placeholder_api_version_c;
