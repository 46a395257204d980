/* The public headers must compile as strict C99 (and, in header_check_cxx.cpp,
 * as C++11) with every warning an error: tests/meson.build builds this file
 * with -std=c99 -pedantic -Werror -Wall -Wextra.  Each header is included
 * first on its own (self-contained) and then again (include guards).  At run
 * time it checks that the version macros agree with the library. */
#include <conure/conure_backend.h>
#include <conure/conure.h>
#include <conure/conure_version.h>
#include <conure/conure_backend.h>
#include <conure/conure.h>

#include <stdio.h>
#include <string.h>

#if !defined(CONURE_VERSION_NUMBER) || CONURE_VERSION_NUMBER < 100
#error "CONURE_VERSION_NUMBER must be usable in #if"
#endif

int main(void)
{
    conure_status st = CONURE_OK;
    conure_options *opts = NULL;
    conure_model *model = NULL;
    conure_backend b;
    conure_conv_shape s;
    memset(&b, 0, sizeof b);
    memset(&s, 0, sizeof s);
    b.struct_size = (uint32_t)sizeof b;
    b.abi_version = CONURE_BACKEND_ABI_VERSION;
    s.struct_size = (uint32_t)sizeof s;
    (void)model;
    (void)st;
    (void)opts;

    if (strcmp(conure_version_string(), CONURE_VERSION_STRING) != 0) {
        fprintf(stderr, "conure_version_string() = \"%s\", header says \"%s\"\n",
                conure_version_string(), CONURE_VERSION_STRING);
        return 1;
    }
    if (conure_version_number() != (uint32_t)CONURE_VERSION_NUMBER) {
        fprintf(stderr, "conure_version_number() = %lu, header says %lu\n",
                (unsigned long)conure_version_number(), (unsigned long)CONURE_VERSION_NUMBER);
        return 1;
    }
    printf("C99: libconure %s (%lu)\n", conure_version_string(),
           (unsigned long)conure_version_number());
    return 0;
}
