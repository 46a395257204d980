// The public headers must compile as C++11 with -pedantic -Werror (see
// header_check.c for C99), and their declarations must have C linkage so a
// C++ program links against libconure.so.
#include <conure/conure_backend.h>
#include <conure/conure.h>
#include <conure/conure_backend.h>
#include <conure/conure.h>

#include <cstdio>
#include <cstring>

static_assert(CONURE_VERSION_NUMBER >= 100, "version macro");
static_assert(CONURE_OK == 0, "status codes are fixed");

int main()
{
    conure_options *opts = nullptr;
    conure_status st = conure_options_create(&opts);
    if (st != CONURE_OK) {
        std::fprintf(stderr, "conure_options_create: %s (%s)\n", conure_status_string(st),
                     conure_last_error());
        return 1;
    }
    conure_options_free(opts);
    conure_model_free(nullptr);
    const conure_backend *ref = nullptr;
    (void)ref;
    if (std::strcmp(conure_version_string(), CONURE_VERSION_STRING) != 0 ||
        conure_version_number() != static_cast<uint32_t>(CONURE_VERSION_NUMBER)) {
        std::fprintf(stderr, "version mismatch: %s vs %s\n", conure_version_string(),
                     CONURE_VERSION_STRING);
        return 1;
    }
    std::printf("C++11: libconure %s\n", conure_version_string());
    return 0;
}
