/* The CHECK macros shared by the C tests: count passes and failures, print each failure with
 * rwal_last_error(). Each test program includes this once. */
#ifndef RWAL_TEST_CHECK_H
#define RWAL_TEST_CHECK_H

#include "rwal.h"

#include <stdio.h>

/* Atomic: the node tests check inside callbacks, on the nodes' threads. */
static _Atomic int passed = 0;
static _Atomic int failed = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (cond) {                                                                  \
            passed++;                                                                \
        } else {                                                                     \
            failed++;                                                                \
            char msg[256];                                                           \
            rwal_last_error(msg, sizeof msg);                                        \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__,  \
                    __LINE__, #cond, msg);                                           \
        }                                                                            \
    } while (0)

#define CHECK_STATUS(call, expected)                                                 \
    do {                                                                             \
        rwal_status got_ = (call);                                                   \
        if (got_ != (expected)) {                                                    \
            fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", __FILE__,        \
                    __LINE__, #call, rwal_status_str(got_), rwal_status_str(expected)); \
        }                                                                            \
        CHECK(got_ == (expected));                                                   \
    } while (0)

#endif
