/*
 * test_serve_memory.c - long-term memory end to end through `vitamin serve`
 * (server/memory.c, memory_api.c over memory/): a user states a fact in one
 * conversation; a new conversation of that user gets it recalled into the
 * prompt (the response's vitamin.memories_used names it and the templated
 * prompt, returned on request, holds its text); another user's conversation
 * does not, and nothing of the first user's is reachable with the second
 * one's key (get, update, delete, history, search for the exact sentence,
 * export, user_id); after a restart over the same store it is still
 * recalled; "memory": false neither recalls nor stores; a stream's first
 * chunk carries the extension; the /v1/memories API (add, list, get,
 * update with history, delete, profile in the prompt, delete all) and its
 * errors for bad input; embeddings (--memory-embeddings); and two servers
 * sharing one PostgreSQL store.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "serve_proc.h"
#include "test.h"

#define KA "sk-alice"
#define KB "sk-bob"
#define KR "sk-root"

static char model[512], keys[512], db[512];
static bool ready;

/* One HTTP/1.1 request; the response's body (malloc'd) and status. */
static char *http(int port, const char *method, const char *path, const char *key,
                  const char *body, int *status)
{
    *status = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    size_t bl = body ? strlen(body) : 0;
    char *req = malloc(bl + 1024);
    int n = snprintf(req, 1024,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                     method, path, bl, key ? "Authorization: Bearer " : "", key ? key : "",
                     key ? "\r\n" : "");
    memcpy(req + n, body ? body : "", bl);
    bool ok = write(fd, req, (size_t)n + bl) == (ssize_t)((size_t)n + bl);
    free(req);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t got;
    while (ok && buf && (got = read(fd, buf + len, cap - len - 1)) > 0) {
        len += (size_t)got;
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            }
            buf = nb;
        }
    }
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = 0;
    sscanf(buf, "HTTP/1.%*d %d", status);
    char *b = strstr(buf, "\r\n\r\n");
    char *out = strdup(b ? b + 4 : "");
    free(buf);
    return out;
}

/* A JSON request whose answer must be `want`; the parsed body or NULL. */
static json_t *call(int port, const char *method, const char *path, const char *key,
                    const char *body, int want)
{
    int st = 0;
    char *t = http(port, method, path, key, body, &st);
    CHECKF(t && st == want, "%s %s: status %d (want %d): %.300s", method, path, st, want,
           t ? t : "(no answer)");
    json_t *j = t ? json_loads(t, 0, NULL) : NULL;
    free(t);
    return j;
}

static char *chat_body(const char *text, const char *conv, bool return_prompt, const char *extra)
{
    json_t *b = json_pack("{s:s,s:[{s:s,s:s}],s:i,s:i}", "model", "m", "messages", "role", "user",
                          "content", text, "max_tokens", 2, "temperature", 0);
    if (conv)
        json_object_set_new(b, "conversation_id", json_string(conv));
    if (return_prompt)
        json_object_set_new(b, "vitamin", json_pack("{s:b}", "return_prompt", 1));
    if (extra) {
        json_t *x = json_loads(extra, 0, NULL);
        json_object_update(b, x);
        json_decref(x);
    }
    char *s = json_dumps(b, JSON_COMPACT);
    json_decref(b);
    return s;
}

/* A chat turn; its vitamin extension (a new reference) or NULL. */
static json_t *chat(int port, const char *key, const char *text, const char *conv,
                    const char *extra)
{
    char *b = chat_body(text, conv, true, extra);
    json_t *r = call(port, "POST", "/v1/chat/completions", key, b, 200);
    free(b);
    json_t *v = json_incref(json_object_get(r, "vitamin"));
    json_decref(r);
    return v;
}

static bool used_has(const json_t *v, const char *id)
{
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(v, "memories_used"), i, x) if (!strcmp(json_string_value(x), id)) return true;
    return false;
}

static const char *prompt_of(const json_t *v)
{
    const char *p = json_string_value(json_object_get(v, "prompt"));
    return p ? p : "";
}

static bool start(serve_proc *p)
{
    const char *args[] = {"--model-name", "m", "--api-key-file", keys, "--memory-db", db,
                          "--ctx", "2048", "-t", "1", NULL};
    return serve_start(p, model, args);
}

static void test_setup(void)
{
    snprintf(model, sizeof model, "%s/mem-model.gguf", test_tmpdir());
    snprintf(keys, sizeof keys, "%s/mem-keys.txt", test_tmpdir());
    snprintf(db, sizeof db, "%s/mem-store/memory.db", test_tmpdir());
    FILE *f = fopen(keys, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f, "%s alice\n%s bob\n%s root admin\n", KA, KB, KR);
    fclose(f);
    ready = serve_make_model(model, 64, 2, 4, 2, 128);
}

#define FACT "My sister Carol moved to Lisbon and she adores grilled sardines."

static void test_recall_isolation_restart(void)
{
    if (!ready) {
        test_fail_at(__FILE__, __LINE__, "no model (test_setup failed)");
        return;
    }
    serve_proc p;
    if (!start(&p))
        return;
    json_t *v = chat(p.port, KA, FACT, "trip-1", NULL);
    CHECK(v && json_array_size(json_object_get(v, "memories_used")) == 0);
    CHECK(v && !strcmp(json_string_value(json_object_get(v, "conversation_id")), "trip-1"));
    json_decref(v);
    /* a new conversation of alice: recalled, in the prompt */
    v = chat(p.port, KA, "Which city does Carol live in these days?", NULL, NULL);
    CHECKF(used_has(v, "trip-1:0"), "alice's fact was not recalled");
    CHECKF(strstr(prompt_of(v), "Lisbon") && strstr(prompt_of(v), "<memory>"),
           "the prompt lacks the memory block: %.400s", prompt_of(v));
    json_decref(v);
    /* bob asks the same: nothing of alice's */
    v = chat(p.port, KB, "Which city does Carol live in these days? sardines Lisbon", NULL,
             "{\"memory\": {\"store\": false}}");
    CHECK(v && json_array_size(json_object_get(v, "memories_used")) == 0);
    CHECKF(!strstr(prompt_of(v), "Lisbon") || !strstr(prompt_of(v), "adores"),
           "bob's prompt holds alice's memory");
    json_decref(v);
    /* nothing of alice's through bob's key */
    json_t *r;
    json_decref(call(p.port, "GET", "/v1/memories/trip-1:0", KB, NULL, 404));
    json_decref(call(p.port, "PUT", "/v1/memories/trip-1:0", KB, "{\"memory\":\"x\"}", 404));
    json_decref(call(p.port, "DELETE", "/v1/memories/trip-1:0", KB, NULL, 404));
    json_decref(call(p.port, "GET", "/v1/memories/trip-1:0/history", KB, NULL, 404));
    json_decref(call(p.port, "GET", "/v1/memories?user_id=alice", KB, NULL, 403));
    json_decref(call(p.port, "POST", "/v1/memories/search", KB,
                     "{\"query\":\"x\",\"user_id\":\"alice\"}", 403));
    r = call(p.port, "POST", "/v1/memories/search", KB, "{\"query\":\"" FACT "\"}", 200);
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(r, "results"), i, x)
        CHECKF(!strstr(json_string_value(json_object_get(x, "memory")), "Lisbon"),
               "bob's search found alice's sentence");
    json_decref(r);
    int st;
    char *exp = http(p.port, "GET", "/v1/memories/export", KB, NULL, &st);
    CHECK(st == 200 && exp && !strstr(exp, "Lisbon"));
    free(exp);
    /* the admin may name alice */
    r = call(p.port, "GET", "/v1/memories?user_id=alice", KR, NULL, 200);
    CHECK(json_integer_value(json_object_get(r, "total")) == 2);
    json_decref(r);
    /* memory off: neither recalled nor stored */
    v = chat(p.port, KA, "Where is Carol living?", "off-1", "{\"memory\": false}");
    CHECK(v == NULL || json_array_size(json_object_get(v, "memories_used")) == 0);
    json_decref(v);
    json_decref(call(p.port, "GET", "/v1/memories/off-1:0", KA, NULL, 404));
    /* a stream's first chunk carries the extension */
    char *b = chat_body("Tell me about Carol in Lisbon", NULL, false, "{\"stream\": true}");
    char *sse = http(p.port, "POST", "/v1/chat/completions", KA, b, &st);
    free(b);
    CHECKF(st == 200 && sse && strstr(sse, "\"memories_used\":[\"trip-1:0\""),
           "stream: %.300s", sse ? sse : "");
    free(sse);
    CHECK(serve_stop(&p, 30));
    /* restart over the same store: still recalled */
    if (!start(&p))
        return;
    v = chat(p.port, KA, "Remind me where Carol moved to?", NULL, NULL);
    CHECKF(used_has(v, "trip-1:0"), "not recalled after a restart");
    json_decref(v);
    CHECK(serve_stop(&p, 30));
}

static void test_api(void)
{
    if (!ready) {
        test_fail_at(__FILE__, __LINE__, "no model (test_setup failed)");
        return;
    }
    serve_proc p;
    if (!start(&p))
        return;
    json_t *r = call(p.port, "POST", "/v1/memories", KB,
                     "{\"memory\":\"Bob is allergic to peanuts\",\"id\":\"allergy\","
                     "\"kind\":\"fact\",\"time\":\"2024-03-01\"}",
                     200);
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(r, "results"), 0),
                                                    "event")),
                  "ADD"));
    json_decref(r);
    r = call(p.port, "PUT", "/v1/memories/allergy", KB, "{\"memory\":\"Bob is allergic to cashews\"}",
             200);
    CHECK(json_integer_value(json_object_get(r, "version")) == 2);
    json_decref(r);
    r = call(p.port, "GET", "/v1/memories/allergy/history", KB, NULL, 200);
    CHECK(strstr(json_string_value(json_object_get(json_array_get(json_object_get(r, "results"), 0),
                                                   "memory")),
                 "peanuts") != NULL);
    json_decref(r);
    json_decref(call(p.port, "PUT", "/v1/memories/profile", KB,
                     "{\"profile\":\"Bob is a night-shift nurse.\"}", 200));
    json_t *v = chat(p.port, KB, "Which nuts am I allergic to?", NULL, NULL);
    CHECKF(strstr(prompt_of(v), "night-shift nurse") && strstr(prompt_of(v), "cashews"),
           "profile or memory missing from the prompt: %.400s", prompt_of(v));
    CHECK(used_has(v, "allergy"));
    json_decref(v);
    /* paging */
    for (int i = 0; i < 5; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"memory\":\"note number %d\"}", i);
        json_decref(call(p.port, "POST", "/v1/memories", KB, body, 200));
    }
    r = call(p.port, "GET", "/v1/memories?limit=3", KB, NULL, 200);
    CHECK(json_array_size(json_object_get(r, "results")) == 3);
    const char *next = json_string_value(json_object_get(r, "next"));
    CHECK(next != NULL);
    char path[128];
    snprintf(path, sizeof path, "/v1/memories?limit=100&after=%s", next ? next : "0");
    json_decref(r);
    r = call(p.port, "GET", path, KB, NULL, 200);
    CHECK(json_array_size(json_object_get(r, "results")) >= 3);
    CHECK(json_is_null(json_object_get(r, "next")));
    json_decref(r);
    /* bad input: clear errors */
    json_decref(call(p.port, "POST", "/v1/memories", KB, "{\"memory\": 5}", 400));
    json_decref(call(p.port, "POST", "/v1/memories", KB, "{}", 400));
    json_decref(call(p.port, "POST", "/v1/memories", KB, "[1,2]", 400));
    json_decref(call(p.port, "POST", "/v1/memories", KB, "{\"memory\":\"x\",\"kind\":\"bogus\"}",
                     400));
    json_decref(call(p.port, "POST", "/v1/memories", KB, "{\"memory\":\"x\",\"time\":\"yesterday\"}",
                     400));
    json_decref(call(p.port, "POST", "/v1/memories", KB, "{\"memory\":\"   \"}", 400));
    char *huge = malloc(40 * 1024 + 64);
    strcpy(huge, "{\"memory\":\"");
    memset(huge + 11, 'a', 40 * 1024);
    strcpy(huge + 11 + 40 * 1024, "\"}");
    json_decref(call(p.port, "POST", "/v1/memories", KB, huge, 400));
    free(huge);
    json_decref(call(p.port, "GET", "/v1/memories?limit=0", KB, NULL, 400));
    json_decref(call(p.port, "GET", "/v1/memories?after=-4", KB, NULL, 400));
    json_decref(call(p.port, "POST", "/v1/memories/search", KB, "{\"top_k\":3}", 400));
    json_decref(call(p.port, "POST", "/v1/memories/search", KB,
                     "{\"query\":\"\\\"NEAR(a b) OR *'; DROP TABLE memories; --\"}", 200));
    json_decref(call(p.port, "GET", "/v1/memories", NULL, NULL, 401));
    char *b = chat_body("hi", NULL, false, "{\"memory\": {\"recall\": 3}}");
    json_decref(call(p.port, "POST", "/v1/chat/completions", KB, b, 400));
    free(b);
    b = chat_body("hi", "has space", false, NULL);
    json_decref(call(p.port, "POST", "/v1/chat/completions", KB, b, 400));
    free(b);
    /* delete one, then all */
    json_decref(call(p.port, "DELETE", "/v1/memories/allergy", KB, NULL, 200));
    json_decref(call(p.port, "GET", "/v1/memories/allergy", KB, NULL, 404));
    r = call(p.port, "DELETE", "/v1/memories", KB, NULL, 200);
    CHECK(json_integer_value(json_object_get(r, "deleted")) >= 5);
    json_decref(r);
    r = call(p.port, "GET", "/v1/memories", KB, NULL, 200);
    CHECK(json_integer_value(json_object_get(r, "total")) == 0);
    json_decref(r);
    CHECK(serve_stop(&p, 30));
}

/* --memory-embeddings: each stored turn carries the served model's
 * embedding of its text, and a search with that vector (and words that
 * match nothing) finds the turn first by cosine similarity ~1. */
static void test_embeddings(void)
{
    if (!ready) {
        test_fail_at(__FILE__, __LINE__, "no model (test_setup failed)");
        return;
    }
    char edb[600];
    snprintf(edb, sizeof edb, "%s/mem-store-emb/memory.db", test_tmpdir());
    serve_proc p;
    const char *args[] = {"--model-name", "m", "--api-key-file", keys, "--memory-db", edb,
                          "--memory-embeddings", "--ctx", "2048", "-t", "1", NULL};
    if (!serve_start(&p, model, args))
        return;
    const char *turn = "The lighthouse keeper paints his boat orange every spring.";
    json_t *v = chat(p.port, KA, turn, "emb-1", NULL);
    json_decref(v);
    json_t *m = call(p.port, "GET", "/v1/memories/emb-1:0", KA, NULL, 200);
    json_int_t dims = json_integer_value(json_object_get(m, "embedding_dims"));
    CHECKF(dims == 64, "the stored turn's embedding has %lld dimensions", (long long)dims);
    json_decref(m);
    char *body = NULL;
    json_t *eb = json_pack("{s:s,s:s}", "model", "m", "input", turn);
    body = json_dumps(eb, JSON_COMPACT);
    json_decref(eb);
    json_t *er = call(p.port, "POST", "/v1/embeddings", KA, body, 200);
    free(body);
    json_t *vec = json_object_get(json_array_get(json_object_get(er, "data"), 0), "embedding");
    CHECK(json_array_size(vec) == 64);
    json_t *sq = json_pack("{s:s,s:O}", "query", "qqqq", "embedding", vec);
    body = json_dumps(sq, JSON_COMPACT);
    json_decref(sq);
    json_decref(er);
    json_t *r = call(p.port, "POST", "/v1/memories/search", KA, body, 200);
    free(body);
    json_t *top = json_array_get(json_object_get(r, "results"), 0);
    CHECKF(top && !strcmp(json_string_value(json_object_get(top, "id")), "emb-1:0"),
           "the vector search's first result: %s",
           top ? json_string_value(json_object_get(top, "id")) : "(none)");
    CHECK(json_integer_value(json_object_get(top, "vector_rank")) == 1);
    CHECK(json_integer_value(json_object_get(top, "lexical_rank")) == 0);
    CHECKF(json_number_value(json_object_get(top, "similarity")) > 0.98, "similarity %g",
           json_number_value(json_object_get(top, "similarity")));
    json_decref(r);
    /* recall in a chat runs with the query's embedding too */
    v = chat(p.port, KA, "Which colour is the lighthouse keeper's boat?", NULL, NULL);
    CHECK(used_has(v, "emb-1:0"));
    json_decref(v);
    json_decref(call(p.port, "POST", "/v1/memories/search", KA,
                     "{\"query\":\"x\",\"embedding\":[1,\"a\"]}", 400));
    json_decref(call(p.port, "POST", "/v1/memories/search", KA,
                     "{\"query\":\"x\",\"embedding\":[]}", 400));
    CHECK(serve_stop(&p, 30));
}

/* Two servers over one PostgreSQL store (several replicas): what a user
 * tells one is recalled by the other, the API's writes on one are read on
 * the other, and another user sees nothing on either. The server is
 * VT_PG_URI (CI starts one) or one of our own (scripts/pg-test-server.sh);
 * the test works in a schema of its own, dropped at the end. */
static void test_postgres_two_servers(void)
{
    if (!ready) {
        test_fail_at(__FILE__, __LINE__, "no model (test_setup failed)");
        return;
    }
    const char *env = getenv("VT_PG_URI");
    char base[512] = "", own[600] = "", cmd[1600];
    int st = 0;
    if (env && *env) {
        snprintf(base, sizeof base, "%s", env);
    } else {
        /* under /tmp itself: the postgres user cannot enter the test's folder */
        snprintf(own, sizeof own, "/tmp/vt-serve-pg-%d", (int)getpid());
        snprintf(cmd, sizeof cmd, "sh scripts/pg-test-server.sh start '%s' 2>&1", own);
        char *out = serve_capture(cmd, &st);
        if (st != 0 || !out || strncmp(out, "postgresql://", 13)) {
            test_skip_missing("no PostgreSQL server (VT_PG_URI unset and %s failed: %.200s)",
                              cmd, out ? out : "");
            free(out);
            return;
        }
        out[strcspn(out, "\n")] = 0;
        snprintf(base, sizeof base, "%s", out);
        free(out);
    }
    char schema[64], uri[800];
    snprintf(schema, sizeof schema, "vt_serve_mem_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "psql -q '%s' -c 'CREATE SCHEMA %s' >/dev/null 2>&1", base, schema);
    CHECKF(system(cmd) == 0, "%s", cmd);
    snprintf(uri, sizeof uri, "%s%coptions=-csearch_path%%3D%s", base, strchr(base, '?') ? '&' : '?',
             schema);
    serve_proc a, b;
    const char *args[] = {"--model-name", "m", "--api-key-file", keys, "--memory-db", uri,
                          "--ctx", "2048", "-t", "1", NULL};
    bool up_a = serve_start(&a, model, args), up_b = up_a && serve_start(&b, model, args);
    if (up_a && up_b) {
        json_t *v = chat(a.port, KA, "My grandmother Hana grows persimmons in Jeonju.", "pg-1",
                         NULL);
        json_decref(v);
        v = chat(b.port, KA, "Where does my grandmother grow persimmons?", NULL, NULL);
        CHECKF(used_has(v, "pg-1:0"), "server B did not recall what server A stored");
        CHECK(strstr(prompt_of(v), "Jeonju") != NULL);
        json_decref(v);
        v = chat(b.port, KB, "Where does my grandmother grow persimmons? Jeonju Hana", NULL,
                 "{\"memory\": {\"store\": false}}");
        CHECK(v && json_array_size(json_object_get(v, "memories_used")) == 0);
        json_decref(v);
        json_decref(call(b.port, "POST", "/v1/memories", KA,
                         "{\"memory\":\"Alice is learning the gayageum\",\"id\":\"music\"}", 200));
        json_t *m = call(a.port, "GET", "/v1/memories/music", KA, NULL, 200);
        CHECK(m && strstr(json_string_value(json_object_get(m, "memory")), "gayageum"));
        json_decref(m);
        json_decref(call(a.port, "GET", "/v1/memories/music", KB, NULL, 404));
    }
    if (up_b)
        CHECK(serve_stop(&b, 30));
    if (up_a)
        CHECK(serve_stop(&a, 30));
    snprintf(cmd, sizeof cmd, "psql -q '%s' -c 'DROP SCHEMA %s CASCADE' >/dev/null 2>&1", base,
             schema);
    CHECKF(system(cmd) == 0, "%s", cmd);
    if (own[0]) {
        snprintf(cmd, sizeof cmd, "sh scripts/pg-test-server.sh stop '%s'", own);
        CHECK(system(cmd) == 0);
    }
}

static void test_no_memory(void)
{
    if (!ready) {
        test_fail_at(__FILE__, __LINE__, "no model (test_setup failed)");
        return;
    }
    serve_proc p;
    const char *args[] = {"--model-name", "m", "--no-memory", "-t", "1", NULL};
    if (!serve_start(&p, model, args))
        return;
    json_decref(call(p.port, "GET", "/v1/memories", NULL, NULL, 404));
    char *b = chat_body("hello", NULL, true, NULL);
    json_t *r = call(p.port, "POST", "/v1/chat/completions", NULL, b, 200);
    free(b);
    CHECK(r && json_object_get(r, "vitamin") == NULL);
    json_decref(r);
    CHECK(serve_stop(&p, 30));
}

int main(void)
{
    RUN_TEST(test_setup);
    RUN_TEST(test_recall_isolation_restart);
    RUN_TEST(test_api);
    RUN_TEST(test_embeddings);
    RUN_TEST(test_postgres_two_servers);
    RUN_TEST(test_no_memory);
    return test_finish("test_serve_memory");
}
