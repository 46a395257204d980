/* placeholder: being written */
typedef int cn_placeholder_io_format_c;
