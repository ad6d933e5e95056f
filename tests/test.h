/*
 * test.h - the minimal test harness: CHECK records a failure (with file and
 * line) without stopping, each RUN_TEST counts as one passed or failed test,
 * and test_finish() prints "NAME: N passed, N failed, N skipped" and returns
 * the exit status. tests/run.sh adds the per-binary lines up.
 */
#ifndef VT_TEST_H
#define VT_TEST_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

extern int test_failures_in_current;
extern bool test_skipped_current;

void test_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void test_run(const char *name, void (*fn)(void));
/* Marks the running test as not run, with the reason printed. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int test_finish(const char *suite);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail_at(__FILE__, __LINE__, "%s", #cond);                                         \
    } while (0)
#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            test_fail_at(__FILE__, __LINE__, __VA_ARGS__);                                         \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            test_fail_at(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, a_, b_);           \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol)))                                                             \
            test_fail_at(__FILE__, __LINE__, "%s ~ %s (%g vs %g, tol %g)", #a, #b, a_, b_,         \
                         (double)(tol));                                                           \
    } while (0)
#define RUN_TEST(fn) test_run(#fn, fn)

/* The ../shared folder (VT_SHARED, else ../shared from the repo root), or
 * NULL if it does not exist. */
const char *test_shared_dir(void);
/* Path of the vitamin binary (VT_BIN, else build/vitamin). */
const char *test_vitamin_bin(void);
/* A fresh scratch directory for this test binary (removed at exit). */
const char *test_tmpdir(void);
/* Reads a whole file; NULL if it cannot. Caller frees. */
char *test_read_file(const char *path, size_t *len);

#endif
