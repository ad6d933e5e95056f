/*
 * fuzz_memory.c - libFuzzer harness for the memory store's handling of
 * outside text (src/memory/): the first byte picks what the rest is - a
 * search query (user text turned into FTS5 terms: never FTS5 syntax), a
 * memory's text (added, found, updated, deleted), an ISO 8601 time, an id,
 * or a conversation turn - over one SQLite store with memories of two users
 * made at start. Invariants (__builtin_trap): nothing crashes or leaks
 * (ASan), a search for user "a" returns only memories of "a", a bad input is
 * an error with a message, a memory added can be read back with its text,
 * and the store's count of "b" never changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memory/memory.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static mem_store *st;
static int64_t n_b;
static char path[] = "/tmp/vt-fuzz-memory-XXXXXX";

static void cleanup(void)
{
    mem_close(st);
    char p[64];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    close(fd);
    unlink(path);
    if (mem_open(path, NULL, &st) != VT_OK)
        abort();
    atexit(cleanup);
    static const char *const a[] = {"My sister lives in Lisbon and loves sardines.",
                                    "사과를 좋아해요", "We went hiking on 2023-05-07.",
                                    "I drink green tea every morning"};
    static const char *const b[] = {"Bob hides the key under the mat.", "secret: 42"};
    for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
        if (mem_store_turn(st, "a", "conv", (int64_t)i, "a", a[i], MEM_TIME_NONE, NULL))
            abort();
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        mem_input in;
        mem_input_init(&in);
        in.text = b[i];
        if (mem_add(st, "b", &in, NULL))
            abort();
    }
    if (mem_count(st, "b", &n_b) || n_b != 2)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 40000)
        return 0;
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    int op = data[0] % 5;
    vt_err e;
    if (op == 0 || op == 1) { /* a search of user a */
        mem_query q;
        mem_query_init(&q);
        q.text = s;
        q.top_k = 1 + data[0] / 5 % 20;
        q.context = op;
        mem_hit *hits = NULL;
        size_t n = 0;
        e = mem_search(st, "a", &q, &hits, &n);
        ASSERT(e == VT_OK || *vt_last_error());
        for (size_t i = 0; i < n; i++) {
            ASSERT(!strcmp(hits[i].m.user, "a"));
            for (size_t j = 0; j < hits[i].n_context; j++)
                ASSERT(!strcmp(hits[i].context[j].user, "a"));
        }
        char *block = NULL;
        const char **used = NULL;
        size_t n_used = 0;
        if (e == VT_OK && mem_format_block(s, hits, n, 64, NULL, NULL, &block, &used, &n_used) ==
                              VT_OK)
            ASSERT(n_used <= n);
        free(block);
        free(used);
        mem_hits_free(hits, n);
    } else if (op == 2) { /* a time */
        int64_t ms = 0;
        if (mem_time_parse(s, &ms) == VT_OK) {
            char buf[40];
            mem_time_format(ms, buf, sizeof buf);
            int64_t back = 0;
            ASSERT(mem_time_parse(buf, &back) == VT_OK && back == ms);
        } else {
            ASSERT(*vt_last_error());
        }
    } else if (op == 3) { /* an id of user a */
        mem_memory m;
        e = mem_get(st, "a", s, &m);
        if (e == VT_OK) {
            ASSERT(!strcmp(m.user, "a"));
            mem_memory_clear(&m);
        } else {
            ASSERT(*vt_last_error());
        }
        ASSERT(mem_delete(st, "a", s) != VT_OK || true);
    } else { /* a memory's text, added, found and removed */
        mem_input in;
        mem_input_init(&in);
        in.text = s;
        char id[MEM_ID_MAX + 1];
        e = mem_add(st, "a", &in, id);
        if (e == VT_OK) {
            mem_memory m;
            ASSERT(mem_get(st, "a", id, &m) == VT_OK);
            ASSERT(!strcmp(m.text, s));
            mem_memory_clear(&m);
            ASSERT(mem_update(st, "a", id, "replaced", NULL, 0) == VT_OK);
            ASSERT(mem_delete(st, "a", id) == VT_OK);
        } else {
            ASSERT(*vt_last_error());
        }
    }
    int64_t nb = -1;
    ASSERT(mem_count(st, "b", &nb) == VT_OK && nb == n_b);
    free(s);
    return 0;
}
