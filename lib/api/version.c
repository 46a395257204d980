/* Version queries and status texts.  The version numbers come from the meson
 * project() call, both through the generated conure_version.h (what a caller
 * compiled against) and through -DCONURE_VERSION_*_ (what this library was
 * built as); a static assertion keeps the two in step. */
#include "common/common.h"

#if !defined(CONURE_VERSION_MAJOR_) || !defined(CONURE_VERSION_MINOR_) || \
    !defined(CONURE_VERSION_PATCH_)
#error "build with -DCONURE_VERSION_{MAJOR,MINOR,PATCH}_ (lib/meson.build sets them)"
#endif

_Static_assert(CONURE_VERSION_MAJOR_ == CONURE_VERSION_MAJOR &&
                   CONURE_VERSION_MINOR_ == CONURE_VERSION_MINOR &&
                   CONURE_VERSION_PATCH_ == CONURE_VERSION_PATCH,
               "conure_version.h is out of date with the meson project version");
_Static_assert(CONURE_VERSION_MINOR_ < 100 && CONURE_VERSION_PATCH_ < 100,
               "minor and patch must be below 100 for conure_version_number()");

CONURE_API const char *conure_version_string(void)
{
    return CONURE_VERSION_STRING;
}

CONURE_API uint32_t conure_version_number(void)
{
    return (uint32_t)CONURE_VERSION_MAJOR_ * 10000u + (uint32_t)CONURE_VERSION_MINOR_ * 100u +
           (uint32_t)CONURE_VERSION_PATCH_;
}

CONURE_API const char *conure_status_string(conure_status status)
{
    /* A switch rather than a table indexed by the code, so a code that is
     * negative or beyond the last one can never read out of bounds. */
    switch (status) {
    case CONURE_OK: return "success";
    case CONURE_E_NULL_ARG: return "a required pointer argument is NULL";
    case CONURE_E_INVALID_ARG: return "invalid argument";
    case CONURE_E_OUT_OF_RANGE: return "argument out of range";
    case CONURE_E_NOMEM: return "out of memory";
    case CONURE_E_STATE: return "call not allowed in the current phase";
    case CONURE_E_CAPACITY: return "no free convolution weights left for a new task";
    case CONURE_E_IO: return "input/output error";
    case CONURE_E_FORMAT: return "model data truncated, corrupted or foreign";
    case CONURE_E_VERSION: return "unsupported model format version";
    case CONURE_E_BACKEND: return "backend error";
    case CONURE_E_NUMERIC: return "non-finite loss or score";
    case CONURE_E_BUFFER_TOO_SMALL: return "output buffer too small";
    case CONURE_E_INTERNAL: return "internal error (a bug in libconure)";
    }
    return "unknown status";
}
