/* The CHECK macros shared by the C tests: count passes and failures, print each failure with
 * rwal_last_error(). Each test program includes this once. */
#ifndef RWAL_TEST_CHECK_H
#define RWAL_TEST_CHECK_H

#include "rwal.h"

#include <dirent.h>
#include <stdio.h>
#include <time.h>

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

/* Milliseconds on the monotonic clock, for bounds on how long a wait took. */
static inline double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1000.0 + (double)t.tv_nsec / 1e6;
}

static inline void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* The entries of a /proc directory (this process's open descriptors or threads), -1 if it
 * cannot be read. The descriptor opendir takes is counted every time alike. */
static inline int count_entries(const char *path) {
    DIR *dir = opendir(path);
    if (dir == NULL) return -1;
    int entries = 0;
    for (struct dirent *e = readdir(dir); e != NULL; e = readdir(dir))
        if (e->d_name[0] != '.') entries++;
    closedir(dir);
    return entries;
}

/* Waits until this process has at most `fds` descriptors and `threads` threads (a thread that
 * a close let go may still be ending); whether it came down to them within `wait_ms`. */
static inline int wait_back_to(int fds, int threads, int wait_ms) {
    for (int waited = 0; waited < wait_ms; waited += 20) {
        if (count_entries("/proc/self/fd") <= fds && count_entries("/proc/self/task") <= threads)
            return 1;
        sleep_ms(20);
    }
    fprintf(stderr, "still %d descriptors (%d before) and %d threads (%d before)\n",
            count_entries("/proc/self/fd"), fds, count_entries("/proc/self/task"), threads);
    return 0;
}

#endif
