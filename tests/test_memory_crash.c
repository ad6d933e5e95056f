/*
 * test_memory_crash.c - durability of the memory store under kill -9: a
 * writer child (forked, its own store handle) adds memories one by one, in
 * batches, and updates earlier ones, printing each write to a pipe only
 * after the call that committed it returned; the parent kills it with
 * SIGKILL at a random moment (within the time its first write takes plus 30
 * ms), then opens the store and checks that every
 * acknowledged write is there (an update with its acknowledged text), that
 * `PRAGMA integrity_check` says ok and that the FTS5 index agrees with the
 * table. 200 rounds here (VT_MEMORY_CRASH_ROUNDS sets another number: `make
 * test-memory-crash` runs 2,000).
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memory/memory.h"
#include "memory/sqlite_int.h"
#include "test.h"
#include "util/util.h"

static char db_path[512];

static void ack(int fd, const char *line)
{
    size_t n = strlen(line);
    if (write(fd, line, n) != (ssize_t)n)
        _exit(3);
}

/* The writer: never returns (killed by the parent). */
static void writer(int fd, int round, uint64_t seed)
{
    mem_store *s;
    if (mem_open(db_path, NULL, &s))
        _exit(2);
    vt_rng r = {seed};
    char id[64], text[160], line[256];
    for (int j = 0;; j++) {
        int what = (int)(vt_rng_next(&r) % 10);
        mem_input in;
        mem_input_init(&in);
        if (what < 6) {
            snprintf(id, sizeof id, "r%d-%d", round, j);
            snprintf(text, sizeof text, "round %d write %d: the writer remembers %llu", round, j,
                     (unsigned long long)vt_rng_next(&r));
            in.id = id;
            in.text = text;
            in.conversation = "crash";
            if (mem_add(s, "writer", &in, NULL))
                _exit(4);
            snprintf(line, sizeof line, "A %s %s\n", id, text);
            ack(fd, line);
        } else if (what < 8) {
            /* a batch of 20 in one transaction, acknowledged after commit */
            char lines[20][256];
            if (mem_begin(s))
                _exit(5);
            for (int k = 0; k < 20; k++) {
                snprintf(id, sizeof id, "r%d-%d-b%d", round, j, k);
                snprintf(text, sizeof text, "batch write %d of %d in round %d", k, j, round);
                in.id = id;
                in.text = text;
                if (mem_add(s, "writer", &in, NULL))
                    _exit(6);
                snprintf(lines[k], sizeof lines[k], "A %s %s\n", id, text);
            }
            if (mem_commit(s))
                _exit(7);
            for (int k = 0; k < 20; k++)
                ack(fd, lines[k]);
        } else if (j > 0) {
            /* update an earlier single write of this round */
            int target = (int)(vt_rng_next(&r) % (uint64_t)j);
            snprintf(id, sizeof id, "r%d-%d", round, target);
            snprintf(text, sizeof text, "updated in round %d at %d", round, j);
            vt_err e = mem_update(s, "writer", id, text, NULL, 0);
            if (e == VT_OK) {
                snprintf(line, sizeof line, "U %s %s\n", id, text);
                ack(fd, line);
            } else if (e != VT_ERR_NOT_FOUND) {
                _exit(8);
            }
        }
    }
}

/* the writer's step j of an acknowledged line: A r<round>-<j>[-b<k>] or
 * U ... "updated in round R at <j>" */
static long ack_step(char kind, const char *id, const char *text)
{
    if (kind == 'U') {
        const char *at = strstr(text, " at ");
        return at ? atol(at + 4) : -1;
    }
    const char *dash = strchr(id, '-');
    return dash ? atol(dash + 1) : -1;
}

/* A write may commit and the writer die before acknowledging it: the text
 * found may be an update of this round made after the acknowledged step. */
static bool later_update(const char *found, int round, long step)
{
    char prefix[64];
    int n = snprintf(prefix, sizeof prefix, "updated in round %d at ", round);
    return !strncmp(found, prefix, (size_t)n) && atol(found + n) > step;
}

static int check_sql_ok(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int ok = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            ok = !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
        else if (rc == SQLITE_DONE)
            ok = 1; /* FTS5 'integrity-check' returns no row when fine */
        sqlite3_finalize(st);
    }
    return ok;
}

static void test_kill9(void)
{
    int rounds = 200;
    const char *env = getenv("VT_MEMORY_CRASH_ROUNDS");
    if (env && atoi(env) > 0)
        rounds = atoi(env);
    snprintf(db_path, sizeof db_path, "%s/crash/store.db", test_tmpdir());
    vt_rng r = {(uint64_t)time(NULL)};
    long total_acked = 0, total_updates = 0, rounds_with_acks = 0;
    /* calibration: how long the writer takes to its first acknowledged
     * write here and now (opening included; the median of three, at most
     * 100 ms); kills then fall in [0.2 ms, that + 30 ms] */
    double cal[3];
    for (int k = 0; k < 3; k++) {
        int p[2];
        cal[k] = 0.1;
        CHECK(pipe(p) == 0);
        double t = vt_now();
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            writer(p[1], -1 - k, (uint64_t)k + 1);
            _exit(0);
        }
        close(p[1]);
        char c;
        if (read(p[0], &c, 1) == 1)
            cal[k] = vt_now() - t;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(p[0]);
    }
    double first_ack = cal[0] + cal[1] + cal[2] - fmin(cal[0], fmin(cal[1], cal[2])) -
                       fmax(cal[0], fmax(cal[1], cal[2]));
    first_ack = fmin(first_ack, 0.1);
    useconds_t span = (useconds_t)(first_ack * 1e6) + 30000;
    double t0 = vt_now();
    int round;
    for (round = 0; round < rounds; round++) {
        int p[2];
        if (pipe(p)) {
            CHECK(0);
            return;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            writer(p[1], round, vt_rng_next(&r));
            _exit(0);
        }
        close(p[1]);
        CHECK(pid > 0);
        if (pid < 0)
            return;
        /* a random moment after the start (opening included) */
        usleep((useconds_t)(200 + vt_rng_next(&r) % span));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
               "round %d: the writer ended by itself (status %d)", round, status);
        /* read what it acknowledged */
        vt_buf b = {0};
        char buf[4096];
        ssize_t n;
        while ((n = read(p[0], buf, sizeof buf)) > 0)
            vt_buf_add(&b, buf, (size_t)n);
        close(p[0]);
        /* the last entry per id wins */
        mem_store *s;
        vt_err e = mem_open(db_path, NULL, &s);
        CHECKF(!e, "round %d: reopen: %s", round, vt_last_error());
        if (e) {
            free(b.p);
            return;
        }
        long acks = 0;
        for (char *line = b.p; line && *line;) {
            char *nl = strchr(line, '\n');
            if (!nl)
                break; /* a cut line was never acknowledged in full */
            *nl = 0;
            char kind = line[0], *id = line + 2, *sp = strchr(id, ' ');
            if (sp) {
                *sp = 0;
                const char *text = sp + 1;
                /* later acks of the same id are checked later: check only
                 * the newest, i.e. skip if a later line updates it */
                bool later = false;
                for (char *q = nl + 1; *q && !later;) {
                    char *qn = strchr(q, '\n');
                    if (!qn)
                        break;
                    if (q[0] == 'U' && !strncmp(q + 2, id, strlen(id)) && q[2 + strlen(id)] == ' ')
                        later = true;
                    q = qn + 1;
                }
                if (!later) {
                    mem_memory m;
                    e = mem_get(s, "writer", id, &m);
                    CHECKF(!e, "round %d: acknowledged %s lost", round, id);
                    CHECKF(e || !strcmp(m.text, text) || later_update(m.text, round, ack_step(line[0], id, text)),
                           "round %d: %s has '%s', acknowledged '%s'", round, id, e ? "" : m.text,
                           text);
                    if (!e)
                        mem_memory_clear(&m);
                }
                acks++;
                total_updates += kind == 'U';
            }
            line = nl + 1;
        }
        free(b.p);
        mem_close(s);
        total_acked += acks;
        rounds_with_acks += acks > 0;
        sqlite3 *db;
        CHECK(sqlite3_open(db_path, &db) == SQLITE_OK);
        CHECK(!mem_sqlite_register_tokenizer(db)); /* for the FTS5 check */
        CHECKF(check_sql_ok(db, "PRAGMA integrity_check"), "round %d: integrity_check failed", round);
        CHECKF(check_sql_ok(db, "INSERT INTO memories_fts(memories_fts) VALUES('integrity-check')"),
               "round %d: the FTS index disagrees with the table", round);
        sqlite3_close(db);
        if (test_failures_in_current > 5)
            break;
    }
    printf("  %d kills in %.1f s (first write acknowledged after %.1f ms): %ld acknowledged writes "
           "(%ld updates), all there; writes acknowledged in %ld rounds\n",
           round, vt_now() - t0, first_ack * 1e3, total_acked, total_updates, rounds_with_acks);
    CHECK_EQ_INT(round, rounds);
    CHECK(total_acked > rounds);            /* the writer did write */
    CHECK(rounds_with_acks > rounds / 4);   /* and was often killed mid-way */
}

int main(void)
{
    RUN_TEST(test_kill9);
    return test_finish("test_memory_crash");
}
