/*
 * harness.c - implementation of test.h (see there).
 */
#include <dirent.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

int test_failures_in_current;
bool test_skipped_current;
static int n_passed, n_failed, n_skipped, n_outside;
static bool in_test;
static const char *current_name = "";

bool test_ci(void)
{
    const char *ci = getenv("CI");
    return ci && *ci && strcmp(ci, "0") && strcasecmp(ci, "false");
}

/* Prints "  FAIL NAME (file:line): what fmt..." (no location when file is
 * NULL) and counts the failure: against the running test, or against the
 * binary when no test is running. */
static void vfail(const char *file, int line, const char *what, const char *fmt, va_list ap)
{
    char where[300] = "";
    if (file)
        snprintf(where, sizeof where, " (%s:%d)", file, line);
    if (!in_test) {
        /* setup in main or a helper: a failure of the binary, not lost */
        fprintf(stderr, "  FAIL (outside any test)%s: %s", where, what);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        n_outside++;
        return;
    }
    if (test_failures_in_current < 20) {
        fprintf(stderr, "  FAIL %s%s: %s", current_name, where, what);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
    test_failures_in_current++;
}

void test_fail_at(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(file, line, "", fmt, ap);
    va_end(ap);
}

static void vskip(const char *kind, const char *fmt, va_list ap)
{
    fprintf(stderr, "  SKIP %s: %s", in_test ? current_name : "(outside any test)", kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    if (in_test)
        test_skipped_current = true;
    else
        n_skipped++;
}

static void vskip_missing(const char *fmt, va_list ap)
{
    if (test_ci())
        vfail(NULL, 0, "missing input (CI is set, so this fails instead of skipping): ", fmt, ap);
    else
        vskip("missing input (a failure under CI=true): ", fmt, ap);
}

void test_skip_missing(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vskip_missing(fmt, ap);
    va_end(ap);
}

void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vskip_missing(fmt, ap);
    va_end(ap);
}

void test_skip_hw(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vskip("this machine lacks ", fmt, ap);
    va_end(ap);
}

void test_run(const char *name, void (*fn)(void))
{
    static bool first = true;
    if (first) {
        /* whatever a test runs that keeps data under XDG_DATA_HOME (the
         * memory store's default) keeps it in the test's scratch folder,
         * never in the home folder */
        char xdg[600];
        snprintf(xdg, sizeof xdg, "%s/xdg-data", test_tmpdir());
        setenv("XDG_DATA_HOME", xdg, 1);
        first = false;
    }
    current_name = name;
    test_failures_in_current = 0;
    test_skipped_current = false;
    in_test = true;
    fn();
    in_test = false;
    if (test_failures_in_current) {
        n_failed++;
        fprintf(stderr, "  not ok %s (%d failed checks)\n", name, test_failures_in_current);
    } else if (test_skipped_current) {
        n_skipped++;
    } else {
        n_passed++;
        if (getenv("VT_TEST_VERBOSE"))
            fprintf(stderr, "  ok %s\n", name);
    }
    current_name = "";
}

static char tmpdir[256];

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            rm_rf(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

int test_finish(const char *suite)
{
    if (tmpdir[0])
        rm_rf(tmpdir);
    int failed = n_failed;
    if (n_outside) {
        fprintf(stderr, "  not ok %s: %d failed checks outside any test (setup)\n", suite, n_outside);
        failed++;
    }
    if (n_passed + n_failed + n_skipped == 0) {
        fprintf(stderr, "  not ok %s: no test ran\n", suite);
        failed++;
    } else if (n_passed + n_failed == 0 && test_ci()) {
        fprintf(stderr, "  not ok %s: every test was skipped (CI is set)\n", suite);
        failed++;
    }
    printf("%s: %d passed, %d failed, %d skipped\n", suite, n_passed, failed, n_skipped);
    return failed ? 1 : 0;
}

const char *test_shared_dir(void)
{
    static char buf[1024];
    const char *env = getenv("VT_SHARED");
    snprintf(buf, sizeof buf, "%s", env && *env ? env : "../shared");
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return NULL;
    return buf;
}

const char *test_vitamin_bin(void)
{
    const char *env = getenv("VT_BIN");
    return env && *env ? env : "build/vitamin";
}

const char *test_need_shared(const char *why)
{
    const char *sh = test_shared_dir();
    if (!sh) {
        const char *env = getenv("VT_SHARED");
        test_skip_missing("the shared folder %s is absent (set VT_SHARED): %s not checked",
                          env && *env ? env : "../shared", why);
    }
    return sh;
}

bool test_need_file(const char *path, const char *why)
{
    if (access(path, R_OK) == 0)
        return true;
    test_skip_missing("%s is missing: %s not checked", path, why);
    return false;
}

bool test_need_vitamin(void)
{
    const char *bin = test_vitamin_bin();
    if (access(bin, X_OK) == 0)
        return true;
    test_skip_missing("the vitamin binary %s is missing (make all, or set VT_BIN)", bin);
    return false;
}

const char *test_tmpdir(void)
{
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/vt-test-XXXXXX");
        if (!mkdtemp(tmpdir)) {
            perror("mkdtemp");
            exit(2);
        }
    }
    return tmpdir;
}

char *test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return buf;
}
