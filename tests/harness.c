/*
 * harness.c - implementation of test.h (see there).
 */
#include <dirent.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

int test_failures_in_current;
bool test_skipped_current;
static int n_passed, n_failed, n_skipped;
static const char *current_name = "";

void test_fail_at(const char *file, int line, const char *fmt, ...)
{
    if (test_failures_in_current < 20) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "  FAIL %s (%s:%d): ", current_name, file, line);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    test_failures_in_current++;
}

void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  SKIP %s: ", current_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    test_skipped_current = true;
}

void test_run(const char *name, void (*fn)(void))
{
    current_name = name;
    test_failures_in_current = 0;
    test_skipped_current = false;
    fn();
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
    printf("%s: %d passed, %d failed, %d skipped\n", suite, n_passed, n_failed, n_skipped);
    return n_failed ? 1 : 0;
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
