#include <stdio.h>

#include "common/common.h"

static _Thread_local char tls_msg[CN_ERRMSG_MAX];

conure_status cn_fail(conure_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    va_end(ap);
    return status;
}

void cn_clear_error(void)
{
    tls_msg[0] = '\0';
}

const char *cn_error_text(void)
{
    return tls_msg;
}
