/* What the fuzz targets that check invariants share: CHECK (abort with the
 * failed condition, so libFuzzer keeps the input), the libFuzzer
 * initialisation (logging silenced), and exact-size heap copies. Define
 * FUZZ_NAME ("fuzz_<target>") before including; include it once. */
#ifndef HOOKD_FUZZ_COMMON_H
#define HOOKD_FUZZ_COMMON_H

#include "hookd/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, FUZZ_NAME ": check failed at line %d: %s\n", __LINE__, #cond);         \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    hookd_log_init(FUZZ_NAME, HOOKD_LOG_ERROR + 1, 0);
    return 0;
}

/* A heap copy of exactly 'len' bytes, so ASan sees any read past the end. */
static char *dup_exact(const void *p, size_t len)
{
    char *c = malloc(len ? len : 1);
    if (!c) abort();
    if (len) memcpy(c, p, len);
    return c;
}

#endif
