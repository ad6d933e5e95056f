/*
 * test_harness.c - the harness itself (tests/harness.c): this binary runs
 * itself (/proc/self/exe) with a scenario name and a CI value, and checks
 * the exit status and the summary line: a check outside any test fails the
 * binary, a binary that ran no test fails, test_skip_missing is a skip
 * without CI and a failure with it (CI=true; "", "0" and "false" are not
 * CI), test_skip_hw is a skip either way, every skip prints its reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

/* ---- scenarios, run in the child ---- */

static void passes(void)
{
    CHECK(1 + 1 == 2);
}

static void skips_missing(void)
{
    test_skip_missing("the file /nowhere/x.gguf is missing");
}

static void skips_hw(void)
{
    test_skip_hw("AVX-512");
}

static void fails(void)
{
    CHECK(1 + 1 == 3);
}

static int scenario(const char *name)
{
    if (!strcmp(name, "nothing"))
        return test_finish("h");
    if (!strcmp(name, "outside")) {
        RUN_TEST(passes);
        CHECK(!"setup failed");
        return test_finish("h");
    }
    if (!strcmp(name, "missing")) {
        RUN_TEST(passes);
        RUN_TEST(skips_missing);
        return test_finish("h");
    }
    if (!strcmp(name, "hw")) {
        RUN_TEST(passes);
        RUN_TEST(skips_hw);
        return test_finish("h");
    }
    if (!strcmp(name, "all_skipped")) {
        RUN_TEST(skips_hw);
        return test_finish("h");
    }
    if (!strcmp(name, "fails")) {
        RUN_TEST(passes);
        RUN_TEST(fails);
        return test_finish("h");
    }
    return 99;
}

/* ---- the checks, in the parent ---- */

/* Runs scenario `name` with CI set to ci (NULL: unset); returns the exit
 * status and the output (stdout and stderr) in out. */
static int run_scenario(const char *name, const char *ci, char *out, size_t cap)
{
    char path[512];
    snprintf(path, sizeof path, "%s/out.txt", test_tmpdir());
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        FILE *f = freopen(path, "w", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0)
            _exit(98);
        if (ci)
            setenv("CI", ci, 1);
        else
            unsetenv("CI");
        execl("/proc/self/exe", "test_harness", name, (char *)NULL);
        _exit(97);
    }
    int st;
    waitpid(pid, &st, 0);
    char *s = test_read_file(path, NULL);
    snprintf(out, cap, "%s", s ? s : "");
    free(s);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void expect(const char *name, const char *ci, int rc, const char *summary,
                   const char *also)
{
    static char out[8192];
    int got = run_scenario(name, ci, out, sizeof out);
    CHECKF(got == rc && strstr(out, summary) && (!also || strstr(out, also)),
           "scenario %s, CI=%s: exit %d (want %d), output:\n%s(want '%s'%s%s)", name,
           ci ? ci : "(unset)", got, rc, out, summary, also ? " and " : "", also ? also : "");
}

static void test_scenarios(void)
{
    expect("nothing", NULL, 1, "h: 0 passed, 1 failed, 0 skipped", "no test ran");
    expect("outside", NULL, 1, "h: 1 passed, 1 failed, 0 skipped", "FAIL (outside any test)");
    expect("fails", NULL, 1, "h: 1 passed, 1 failed, 0 skipped", "not ok fails");
    expect("missing", NULL, 0, "h: 1 passed, 0 failed, 1 skipped",
           "SKIP skips_missing: missing input (a failure under CI=true): the file /nowhere/x.gguf");
    expect("missing", "", 0, "h: 1 passed, 0 failed, 1 skipped", NULL);
    expect("missing", "0", 0, "h: 1 passed, 0 failed, 1 skipped", NULL);
    expect("missing", "false", 0, "h: 1 passed, 0 failed, 1 skipped", NULL);
    expect("missing", "true", 1, "h: 1 passed, 1 failed, 0 skipped",
           "FAIL skips_missing: missing input (CI is set, so this fails instead of skipping): "
           "the file /nowhere/x.gguf is missing");
    expect("missing", "1", 1, "h: 1 passed, 1 failed, 0 skipped", NULL);
    expect("hw", "true", 0, "h: 1 passed, 0 failed, 1 skipped", "SKIP skips_hw: this machine lacks AVX-512");
    expect("hw", NULL, 0, "h: 1 passed, 0 failed, 1 skipped", NULL);
    expect("all_skipped", NULL, 0, "h: 0 passed, 0 failed, 1 skipped", NULL);
    expect("all_skipped", "true", 1, "h: 0 passed, 1 failed, 1 skipped", "every test was skipped");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return scenario(argv[1]);
    RUN_TEST(test_scenarios);
    return test_finish("harness");
}
