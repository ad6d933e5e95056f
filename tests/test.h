/*
 * test.h - the minimal test harness: CHECK records a failure (with file and
 * line) without stopping, each RUN_TEST counts as one passed, failed or
 * skipped test, and test_finish() prints "NAME: N passed, N failed, N
 * skipped" and returns the exit status. tests/run.sh adds the per-binary
 * lines up.
 *
 * Nothing fails quietly: a CHECK or test_fail_at outside any RUN_TEST (in
 * main, in setup) counts as a failure of the binary, and a binary that ran
 * no test at all fails. There are two kinds of skip: test_skip_missing for
 * an input that is absent (../shared, a vocabulary or fixture, the vitamin
 * binary, the oracle), which fails instead when CI is set (CI=true, as CI
 * runs the suite: there every input must be present), and test_skip_hw for
 * hardware the machine lacks (an ISA level), which is always a skip. Every
 * skip prints one "  SKIP NAME: ..." line with its reason; run.sh lists them
 * at the end.
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
/* True when the CI variable is set to anything but "", "0" or "false". */
bool test_ci(void);
/* An input the test needs is missing (say which, and where it was looked
 * for): the running test is marked skipped with the reason printed, or,
 * when CI is set, fails with it. */
void test_skip_missing(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The machine lacks the hardware the test needs (an ISA level): always a
 * skip, with the reason printed. */
void test_skip_hw(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The old name: the same as test_skip_missing. */
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
/* The ../shared folder, or NULL after test_skip_missing naming it and what
 * is not checked without it (`why`, e.g. "llama.cpp fixture parity"). */
const char *test_need_shared(const char *why);
/* True if path is readable; else false after test_skip_missing naming it
 * (and `why`). */
bool test_need_file(const char *path, const char *why);
/* Path of the vitamin binary (VT_BIN, else build/vitamin). */
const char *test_vitamin_bin(void);
/* True if the vitamin binary is there and executable; else false after
 * test_skip_missing naming it. */
bool test_need_vitamin(void);
/* A fresh scratch directory for this test binary (removed at exit). */
const char *test_tmpdir(void);
/* Reads a whole file; NULL if it cannot. Caller frees. */
char *test_read_file(const char *path, size_t *len);

#endif
