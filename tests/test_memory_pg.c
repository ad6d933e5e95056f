/*
 * test_memory_pg.c - the memory store over PostgreSQL (src/memory/postgres.c)
 * against a real server: the same semantics as the SQLite backend (add,
 * upsert, history, paging, profiles, export, forget-user, turns and their
 * context, Korean and CJK search, vectors and fusion, de-duplication,
 * recency, migrations), isolation between users (another user's ids in
 * every call, another user's exact sentence, tsquery and SQL syntax in
 * queries), and what several replicas need: two handles (and two processes)
 * writing the same user's memories at once lose nothing and see each
 * other's writes, processes opening a new database at once, a connection
 * the server drops.
 *
 * The server: VT_PG_URI when set (each test works in its own schema of that
 * database, dropped at the end; the role needs CREATE on the database).
 * Otherwise the test starts its own with scripts/pg-test-server.sh (initdb
 * and pg_ctl from /usr/lib/postgresql/<newest>/bin into a temp folder, on
 * 127.0.0.1 at a free port with its unix socket in that folder, run as the
 * postgres user when the test runs as root); a watchdog process stops it and
 * removes the folder when the test exits, whatever the way (also a crash).
 * Without PostgreSQL installed the tests are skipped (a failure under
 * CI=true). Run from the repository root, as tests/run.sh does.
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <netinet/in.h>
#include <postgresql/libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "memory/memory.h"
#include "test.h"

/* ---- the server ---- */

static char g_base[1024];   /* the server's URI (no schema), "" when there is none */
static char g_dir[256];     /* our own server's folder, "" with VT_PG_URI */
static int g_watch_fd = -1; /* the watchdog's pipe (write end) */
static pid_t g_watch_pid;
static char g_schemas[64][48];
static int g_n_schemas;

/* a port nothing listens on (bound and let go) */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
        !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* a watchdog: waits for the test process to go, whatever the way (its pipe
 * closes), then stops the server and removes its folder */
static void start_watchdog(void)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC))
        return;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        signal(SIGINT, SIG_IGN);
        char c;
        while (read(p[0], &c, 1) < 0 && errno == EINTR)
            ;
        char cmd[400];
        snprintf(cmd, sizeof cmd, "sh scripts/pg-test-server.sh stop '%s' >/dev/null 2>&1", g_dir);
        _exit(system(cmd) == 0 ? 0 : 1);
    }
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        return;
    }
    g_watch_fd = p[1];
    g_watch_pid = pid;
}

/* starts our own server with scripts/pg-test-server.sh (initdb and pg_ctl of
 * the newest /usr/lib/postgresql/N, as the postgres user when we are root,
 * 127.0.0.1 at a free port, the socket in its folder; what test_serve_memory
 * and .ci/run use too); false (after saying why) if it cannot */
static bool start_server(void)
{
    glob_t g;
    bool have = !glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) && g.gl_pathc;
    globfree(&g);
    if (!have) {
        test_skip_missing("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; "
                          "apt-get install postgresql) and VT_PG_URI is not set: the PostgreSQL "
                          "memory backend is not checked");
        return false;
    }
    /* under /tmp itself: the postgres user cannot enter the harness's folder */
    snprintf(g_dir, sizeof g_dir, "/tmp/vt-pg-XXXXXX");
    if (!mkdtemp(g_dir)) {
        CHECKF(false, "mkdtemp: %s", strerror(errno));
        g_dir[0] = 0;
        return false;
    }
    start_watchdog();
    char cmd[400], out[2048] = "";
    snprintf(cmd, sizeof cmd, "sh scripts/pg-test-server.sh start '%s' 2>&1", g_dir);
    fflush(NULL);
    FILE *f = popen(cmd, "r");
    size_t n = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[n] = 0;
    int st = f ? pclose(f) : -1;
    if (st != 0 || strncmp(out, "postgresql://", 13)) {
        CHECKF(false, "%s failed (status %d): %s", cmd, st, out);
        return false;
    }
    out[strcspn(out, "\n")] = 0;
    snprintf(g_base, sizeof g_base, "%s", out);
    return true;
}

static PGconn *g_admin;

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* the connection the test uses to make and inspect schemas */
static PGconn *admin(void)
{
    if (!g_admin && g_base[0]) {
        g_admin = PQconnectdb(g_base);
        if (PQstatus(g_admin) != CONNECTION_OK) {
            CHECKF(false, "admin connection: %s", PQerrorMessage(g_admin));
            PQfinish(g_admin);
            g_admin = NULL;
        } else {
            PQsetNoticeProcessor(g_admin, quiet, NULL);
        }
    }
    return g_admin;
}

/* runs fixed SQL on the admin connection; true if it worked */
static bool sql(const char *q)
{
    PGconn *c = admin();
    if (!c)
        return false;
    PGresult *r = PQexec(c, q);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    CHECKF(ok, "%s: %s", q, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

static void test_server(void)
{
    const char *env = getenv("VT_PG_URI");
    if (env && *env) {
        snprintf(g_base, sizeof g_base, "%s", env);
    } else if (!start_server()) {
        g_base[0] = 0;
        return;
    }
    if (!admin()) {
        g_base[0] = 0;
        return;
    }
    /* our own throwaway server need not flush to disk (its commits were
     * seconds of this test) */
    if (g_dir[0])
        CHECK(sql("ALTER SYSTEM SET fsync = off") && sql("SELECT pg_reload_conf()"));
    CHECK(sql("SELECT 1"));
}

/* a URI to a new empty schema (the store of one test) */
static bool new_schema(char *uri, size_t size)
{
    if (!g_base[0]) {
        test_skip_missing("no PostgreSQL server (see test_server)");
        return false;
    }
    if (g_n_schemas == (int)(sizeof g_schemas / sizeof g_schemas[0]))
        return false;
    char *name = g_schemas[g_n_schemas];
    snprintf(name, sizeof g_schemas[0], "vt_test_%d_%d", (int)getpid(), g_n_schemas);
    char q[128];
    snprintf(q, sizeof q, "CREATE SCHEMA %s", name);
    if (!sql(q))
        return false;
    g_n_schemas++;
    snprintf(uri, size, "%s%coptions=-csearch_path%%3D%s%s", g_base,
             strchr(g_base, '?') ? '&' : '?', name, "&application_name=vt-test");
    return true;
}

static mem_store *open_uri(const char *uri, const mem_options *opt)
{
    mem_store *s = NULL;
    vt_err e = mem_open(uri, opt, &s);
    CHECKF(!e, "mem_open: %s", vt_last_error());
    return s;
}

static mem_store *fresh(const mem_options *opt, char *uri_out)
{
    char uri[1400];
    if (!new_schema(uri, sizeof uri))
        return NULL;
    if (uri_out)
        strcpy(uri_out, uri);
    return open_uri(uri, opt);
}

static vt_err add(mem_store *s, const char *user, const char *id, const char *text)
{
    mem_input in;
    mem_input_init(&in);
    in.id = id;
    in.text = text;
    return mem_add(s, user, &in, NULL);
}

static int rank_of(mem_store *s, const char *user, const char *query, const char *id)
{
    mem_query q;
    mem_query_init(&q);
    q.text = query;
    mem_hit *h;
    size_t nh;
    vt_err e = mem_search(s, user, &q, &h, &nh);
    CHECKF(!e, "search '%s': %s", query, vt_last_error());
    int found = -1;
    for (size_t i = 0; !e && i < nh; i++)
        if (!strcmp(h[i].m.id, id))
            found = (int)i;
    mem_hits_free(h, nh);
    return found;
}

/* ---- the same semantics as the SQLite backend ---- */

static void test_add_get_update_history(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    CHECK(!strcmp(mem_backend_name(s), "postgresql"));
    CHECK_EQ_INT(mem_store_schema_version(s), mem_schema_version());
    mem_input in;
    mem_input_init(&in);
    in.text = "Alice likes green tea.";
    in.kind = MEM_KIND_PREFERENCE;
    in.speaker = "alice";
    CHECK(!mem_time_parse("2023-05-07T10:00:00Z", &in.event_time));
    char id[MEM_ID_MAX + 1] = "", id2[MEM_ID_MAX + 1] = "";
    CHECK(!mem_add(s, "alice", &in, id));
    CHECK(!strncmp(id, "m-", 2) && strlen(id) == 18);
    CHECK(!mem_add(s, "alice", &in, id2));
    CHECK(strcmp(id, id2) != 0);
    mem_memory m;
    CHECK(!mem_get(s, "alice", id, &m));
    CHECK(m.text && !strcmp(m.text, "Alice likes green tea."));
    CHECK(m.kind == MEM_KIND_PREFERENCE && m.version == 1 && m.speaker &&
          !strcmp(m.speaker, "alice") && !m.conversation && m.message_index == -1);
    CHECK_EQ_INT(m.event_time, 1683453600000LL);
    CHECK(m.created > 0 && m.updated == m.created && !m.embedding && m.user &&
          !strcmp(m.user, "alice"));
    mem_memory_clear(&m);

    in.id = "D1:3";
    in.text = "first text";
    CHECK(!mem_add(s, "alice", &in, NULL));
    CHECK(mem_add(s, "alice", &in, NULL) == VT_ERR_INVALID);
    in.text = "second text";
    bool created = true;
    CHECK(!mem_upsert(s, "alice", &in, NULL, &created));
    CHECK(!created);
    CHECK(!mem_update(s, "alice", "D1:3", "third text", NULL, 0));
    CHECK(!mem_get(s, "alice", "D1:3", &m));
    CHECK(m.text && !strcmp(m.text, "third text") && m.version == 3);
    mem_memory_clear(&m);
    mem_version *v;
    size_t nv;
    CHECK(!mem_history(s, "alice", "D1:3", &v, &nv));
    CHECK_EQ_INT(nv, 2);
    if (nv == 2) {
        CHECK(!strcmp(v[0].text, "first text") && v[0].version == 1);
        CHECK(!strcmp(v[1].text, "second text") && v[1].version == 2);
    }
    mem_versions_free(v, nv);
    /* an upsert with the same text keeps the version */
    in.text = "third text";
    CHECK(!mem_upsert(s, "alice", &in, NULL, &created));
    CHECK(!mem_get(s, "alice", "D1:3", &m));
    CHECK(m.version == 3);
    mem_memory_clear(&m);

    float e[5] = {3, 0, 4, 0, 0};
    mem_input_init(&in);
    in.id = "vec";
    in.text = "with a vector";
    in.embedding = e;
    in.n_embd = 5;
    CHECK(!mem_add(s, "alice", &in, NULL));
    CHECK(!mem_get(s, "alice", "vec", &m));
    CHECK_EQ_INT(m.n_embd, 5);
    if (m.n_embd == 5) {
        CHECK_NEAR(m.embedding[0], 0.6, 1e-3);
        CHECK_NEAR(m.embedding[2], 0.8, 1e-3);
    }
    mem_memory_clear(&m);
    /* texts with quotes, backslashes and SQL survive as they are */
    const char *odd = "it's a \"test\" \\ with '; DROP TABLE vt_memories; -- and 100% _x_";
    CHECK(!add(s, "alice", "odd", odd));
    CHECK(!mem_get(s, "alice", "odd", &m));
    CHECK(m.text && !strcmp(m.text, odd));
    mem_memory_clear(&m);

    CHECK(!mem_delete(s, "alice", "D1:3"));
    CHECK(mem_get(s, "alice", "D1:3", &m) == VT_ERR_NOT_FOUND);
    CHECK(mem_delete(s, "alice", "D1:3") == VT_ERR_NOT_FOUND);
    CHECK(mem_update(s, "alice", "D1:3", "x", NULL, 0) == VT_ERR_NOT_FOUND);
    CHECK(mem_history(s, "alice", "D1:3", &v, &nv) == VT_ERR_NOT_FOUND);
    mem_close(s);
}

static void test_paging_and_count(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    CHECK(!mem_begin(s));
    CHECK(mem_begin(s) == VT_ERR_INVALID);
    for (int i = 0; i < 250; i++) {
        char id[32], text[64];
        snprintf(id, sizeof id, "k%03d", i);
        snprintf(text, sizeof text, "memory number %d", i);
        CHECK(!add(s, i % 2 ? "odd" : "even", id, text));
    }
    CHECK(!mem_commit(s));
    CHECK(mem_commit(s) == VT_ERR_INVALID);
    int64_t n;
    CHECK(!mem_count(s, "even", &n));
    CHECK_EQ_INT(n, 125);
    int64_t after = 0;
    int seen = 0, pages = 0;
    do {
        mem_memory *items;
        size_t k;
        CHECK(!mem_list(s, "even", after, 40, &items, &k, &after));
        for (size_t i = 0; i < k; i++) {
            char id[32];
            snprintf(id, sizeof id, "k%03d", 2 * seen);
            CHECKF(!strcmp(items[i].id, id), "page %d item %zu: %s, expected %s", pages, i,
                   items[i].id, id);
            CHECK(!strcmp(items[i].user, "even"));
            seen++;
        }
        mem_memories_free(items, k);
        pages++;
    } while (after && pages < 10);
    CHECK_EQ_INT(seen, 125);
    CHECK_EQ_INT(pages, 4);
    mem_memory *items;
    size_t k;
    int64_t next;
    CHECK(mem_list(s, "even", 0, 0, &items, &k, &next) == VT_ERR_RANGE);
    CHECK(mem_list(s, "even", -5, 10, &items, &k, &next) == VT_ERR_RANGE);
    CHECK(!mem_list(s, "nobody", 0, 10, &items, &k, &next));
    CHECK(k == 0 && next == 0);
    mem_memories_free(items, k);
    CHECK(!mem_begin(s));
    CHECK(!add(s, "even", "gone", "rolled back"));
    CHECK(!mem_rollback(s));
    mem_memory m;
    CHECK(mem_get(s, "even", "gone", &m) == VT_ERR_NOT_FOUND);
    /* a failed write inside a batch does not spoil the batch */
    CHECK(!mem_begin(s));
    CHECK(!add(s, "even", "kept", "kept text"));
    CHECK(add(s, "even", "kept", "duplicate id") == VT_ERR_INVALID);
    CHECK(!add(s, "even", "kept2", "after the failure"));
    CHECK(!mem_commit(s));
    CHECK(!mem_get(s, "even", "kept", &m));
    CHECK(m.text && !strcmp(m.text, "kept text"));
    mem_memory_clear(&m);
    CHECK(!mem_get(s, "even", "kept2", &m));
    mem_memory_clear(&m);
    /* closing with a batch open drops it */
    CHECK(!mem_begin(s));
    CHECK(!add(s, "even", "unclosed", "never committed"));
    mem_close(s);
    s = NULL;
    mem_close(s);
}

static void test_profile_export_forget(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    char *p;
    CHECK(!mem_profile_get(s, "u1", &p));
    CHECK(p && !strcmp(p, ""));
    free(p);
    CHECK(!mem_profile_set(s, "u1", "Name: Kim\nLives in Seoul"));
    CHECK(!mem_profile_set(s, "u2", "Name: Lee"));
    CHECK(!mem_profile_set(s, "u1", "Name: Kim\nLives in Seoul")); /* again: still one */
    CHECK(!mem_profile_get(s, "u1", &p));
    CHECK(p && !strcmp(p, "Name: Kim\nLives in Seoul"));
    free(p);
    CHECK(!add(s, "u1", "a", "u1 first \"quoted\" text"));
    CHECK(!add(s, "u1", "b", "u1 second"));
    CHECK(!mem_update(s, "u1", "b", "u1 second, edited", NULL, 0));
    CHECK(!add(s, "u2", "a", "u2 secret"));
    char *j;
    CHECK(!mem_export(s, "u1", &j));
    json_error_t je;
    json_t *doc = j ? json_loads(j, 0, &je) : NULL;
    CHECK(doc != NULL);
    CHECK(!strcmp(json_string_value(json_object_get(doc, "user")), "u1"));
    CHECK(!strcmp(json_string_value(json_object_get(doc, "profile")), "Name: Kim\nLives in Seoul"));
    json_t *mems = json_object_get(doc, "memories");
    CHECK_EQ_INT(json_array_size(mems), 2);
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(mems, 0), "text")),
                  "u1 first \"quoted\" text"));
    json_t *h = json_object_get(json_array_get(mems, 1), "history");
    CHECK_EQ_INT(json_array_size(h), 1);
    CHECK(j && !strstr(j, "u2 secret") && !strstr(j, "Lee"));
    json_decref(doc);
    free(j);
    int64_t n = -1;
    CHECK(!mem_forget_user(s, "u1", &n));
    CHECK_EQ_INT(n, 2);
    CHECK(!mem_count(s, "u1", &n));
    CHECK_EQ_INT(n, 0);
    CHECK(!mem_profile_get(s, "u1", &p));
    CHECK(p && !*p);
    free(p);
    CHECK(!mem_count(s, "u2", &n));
    CHECK_EQ_INT(n, 1);
    CHECK(!mem_profile_get(s, "u2", &p));
    CHECK(p && !strcmp(p, "Name: Lee"));
    free(p);
    CHECK_EQ_INT(rank_of(s, "u1", "first quoted", "a"), -1);
    /* nothing of u1 is left in any table */
    PGconn *c = admin();
    char q[600];
    snprintf(q, sizeof q,
             "SELECT (SELECT count(*) FROM %s.vt_memories WHERE user_id = 'u1') + "
             "(SELECT count(*) FROM %s.vt_mem_history WHERE user_id = 'u1') + "
             "(SELECT count(*) FROM %s.vt_mem_profiles WHERE user_id = 'u1') + "
             "(SELECT count(*) FROM %s.vt_mem_users WHERE user_id = 'u1')",
             g_schemas[g_n_schemas - 1], g_schemas[g_n_schemas - 1], g_schemas[g_n_schemas - 1],
             g_schemas[g_n_schemas - 1]);
    PGresult *r = c ? PQexec(c, q) : NULL;
    CHECKF(r && PQresultStatus(r) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(r, 0, 0), "0"),
           "rows of u1 left: %s %s", r ? PQgetvalue(r, 0, 0) : "", PQresultErrorMessage(r));
    PQclear(r);
    /* and u1 can start again */
    CHECK(!add(s, "u1", "a", "a new start"));
    CHECK(!mem_count(s, "u1", &n));
    CHECK_EQ_INT(n, 1);
    mem_close(s);
}

static void test_turns_and_context(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    const char *turns[] = {"Hi! How was your weekend?",
                           "Great, I went hiking at Bukhansan with my sister.",
                           "That sounds lovely. How long did it take?",
                           "About five hours up and down.", "Did you see any wildlife?"};
    for (int i = 0; i < 5; i++)
        CHECK(!mem_store_turn(s, "kim", "conv1", i, i % 2 ? "kim" : "assistant", turns[i],
                              1683453600000LL + i * 60000, NULL));
    CHECK(!mem_store_turn(s, "kim", "conv1", 4, "assistant", turns[4],
                          1683453600000LL + 4 * 60000, NULL));
    int64_t n;
    CHECK(!mem_count(s, "kim", &n));
    CHECK_EQ_INT(n, 5);
    mem_memory m;
    CHECK(!mem_get(s, "kim", "conv1:1", &m));
    CHECK(m.kind == MEM_KIND_MESSAGE && m.message_index == 1 && m.conversation &&
          !strcmp(m.conversation, "conv1"));
    mem_memory_clear(&m);
    mem_query q;
    mem_query_init(&q);
    q.text = "Where did I go hiking?";
    mem_hit *h;
    size_t nh;
    CHECK(!mem_search(s, "kim", &q, &h, &nh));
    CHECK(nh >= 1);
    if (nh >= 1) {
        CHECK(!strcmp(h[0].m.id, "conv1:1"));
        CHECK(h[0].lexical_rank == 1);
        CHECK_EQ_INT(h[0].n_context, 2);
        if (h[0].n_context == 2) {
            CHECK(!strcmp(h[0].context[0].id, "conv1:0"));
            CHECK(!strcmp(h[0].context[1].id, "conv1:2"));
        }
    }
    mem_hits_free(h, nh);
    q.text = "hours";
    CHECK(!mem_search(s, "kim", &q, &h, &nh));
    CHECK(nh >= 1 && !strcmp(h[0].m.id, "conv1:3"));
    mem_hits_free(h, nh);
    /* through a neighbour's words: "wildlife" is only in turn 4, so turn 3
     * is found too (ranked below it) */
    CHECK_EQ_INT(rank_of(s, "kim", "wildlife", "conv1:4"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "wildlife", "conv1:3"), 1);
    q.text = "what happened on sunday";
    CHECK(!mem_search(s, "kim", &q, &h, &nh));
    CHECK_EQ_INT(nh, 5);
    mem_hits_free(h, nh);
    q.text = "what did you do with them?";
    CHECK(!mem_search(s, "kim", &q, &h, &nh));
    CHECK_EQ_INT(nh, 0);
    mem_hits_free(h, nh);
    /* deleting a turn re-indexes its neighbours: turn 3 no longer has "wildlife" */
    CHECK(!mem_delete(s, "kim", "conv1:4"));
    CHECK_EQ_INT(rank_of(s, "kim", "wildlife", "conv1:3"), -1);
    /* a turn without an index goes after the last one */
    mem_input in;
    mem_input_init(&in);
    in.id = "late";
    in.text = "One more thing.";
    in.conversation = "conv1";
    CHECK(!mem_add(s, "kim", &in, NULL));
    CHECK(!mem_get(s, "kim", "late", &m));
    CHECK_EQ_INT(m.message_index, 4);
    mem_memory_clear(&m);
    mem_close(s);
}

/* the context each turn is indexed with (its neighbours' words and its date)
 * does not depend on the order the turns were written in: turns written out
 * of order, with gaps filled later, texts replaced and one turn moved, give
 * the same contexts as the final turns written in order */
static void ctx_rows(const char *schema, char *out, size_t size)
{
    char q[200];
    snprintf(q, sizeof q,
             "SELECT string_agg(msg_index || '=' || ctx, '|' ORDER BY msg_index) FROM "
             "%s.vt_memories WHERE user_id = 'u'",
             schema);
    PGconn *c = admin();
    PGresult *r = c ? PQexec(c, q) : NULL;
    snprintf(out, size, "%s",
             r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? PQgetvalue(r, 0, 0)
                                                                             : "?");
    PQclear(r);
}

static void test_turn_contexts(void)
{
    enum { T = 24 };
    char final[T][64];
    for (int k = 0; k < T; k++)
        snprintf(final[k], sizeof final[k], "turn%d final words w%d", k, k * 7 % 11);
    mem_store *a = fresh(NULL, NULL);
    if (!a)
        return;
    char sa[48];
    snprintf(sa, sizeof sa, "%s", g_schemas[g_n_schemas - 1]);
    /* a: a scrambled order, a first draft of every third turn, one turn
     * written at another index first and moved */
    CHECK(!mem_begin(a));
    for (int n = 0; n < T; n++) {
        int k = (n * 7 + 3) % T;
        if (k % 3 == 0) {
            char draft[64];
            snprintf(draft, sizeof draft, "draft%d of it", k);
            CHECK(!mem_store_turn(a, "u", "c", k, "s", draft, 1700000000000LL + k, NULL));
        }
        if (k == 10) {
            mem_input in;
            mem_input_init(&in);
            in.id = "c:10";
            in.text = "misplaced at first";
            in.conversation = "c";
            in.message_index = 30;
            CHECK(!mem_upsert(a, "u", &in, NULL, NULL));
        }
        if (n == T / 2)
            CHECK(!mem_commit(a) && !mem_begin(a)); /* half in a batch, half after */
    }
    CHECK(!mem_commit(a));
    for (int n = 0; n < T; n++) {
        int k = (n * 5 + 1) % T;
        CHECK(!mem_store_turn(a, "u", "c", k, "s", final[k], 1700000000000LL + k, NULL));
    }
    mem_close(a);
    mem_store *b = fresh(NULL, NULL);
    if (!b)
        return;
    for (int k = 0; k < T; k++)
        CHECK(!mem_store_turn(b, "u", "c", k, "s", final[k], 1700000000000LL + k, NULL));
    mem_close(b);
    static char ca[8192], cb[8192];
    ctx_rows(sa, ca, sizeof ca);
    ctx_rows(g_schemas[g_n_schemas - 1], cb, sizeof cb);
    CHECKF(!strcmp(ca, cb) && strlen(ca) > 100, "contexts differ:\n%s\n%s", ca, cb);
}

static void test_korean_and_cjk(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    CHECK(!add(s, "kim", "k1", "어제 시장에서 사과를 샀어요."));
    CHECK(!add(s, "kim", "k2", "저는 주말마다 등산을 가요."));
    CHECK(!add(s, "kim", "k3", "동생이 다음 달에 결혼해요."));
    CHECK(!add(s, "kim", "j1", "昨日は東京で寿司を食べました。"));
    CHECK(!add(s, "kim", "c1", "我喜欢喝绿茶。"));
    CHECK(!add(s, "kim", "e1", "I bought apples at the market."));
    CHECK_EQ_INT(rank_of(s, "kim", "사과", "k1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "사과는 어디서 샀나요?", "k1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "등산은 언제 가요?", "k2"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "동생의 결혼", "k3"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "東京", "j1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "绿茶", "c1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "Where did I buy the apple?", "e1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "茶", "c1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "绿", "c1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "사", "k1"), 0);
    CHECK_EQ_INT(rank_of(s, "kim", "자동차", "k1"), -1);
    mem_close(s);
}

/* the checks are store.c's (shared by both backends); here: the edges
 * reach the server and come back whole */
static void test_limits(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    char *huge = malloc(MEM_TEXT_MAX + 2);
    memset(huge, 'x', MEM_TEXT_MAX + 1);
    huge[MEM_TEXT_MAX + 1] = 0;
    CHECK(add(s, "u", "big", huge) == VT_ERR_RANGE);
    huge[MEM_TEXT_MAX] = 0;
    CHECK(!add(s, "u", "big", huge));
    mem_memory m;
    CHECK(!mem_get(s, "u", "big", &m));
    CHECK(m.text && strlen(m.text) == MEM_TEXT_MAX);
    mem_memory_clear(&m);
    CHECK(add(s, "u", "bad", "bad \xc3\x28 utf8") == VT_ERR_INVALID);
    CHECK(add(s, "u", "ok-유니코드-id", "유니코드 텍스트 😀 and é") == VT_OK);
    CHECK(!mem_get(s, "u", "ok-유니코드-id", &m));
    CHECK(m.text && !strcmp(m.text, "유니코드 텍스트 😀 and é"));
    mem_memory_clear(&m);
    char long_id[MEM_ID_MAX + 1];
    memset(long_id, 'i', MEM_ID_MAX);
    long_id[MEM_ID_MAX] = 0;
    CHECK(!add(s, "u", long_id, "the longest id"));
    CHECK(!mem_get(s, "u", long_id, &m));
    mem_memory_clear(&m);
    mem_input in;
    mem_input_init(&in);
    in.text = "far future";
    in.event_time = 253402300799999LL;
    in.message_index = INT32_MAX;
    in.conversation = "c";
    in.id = "t";
    CHECK(!mem_add(s, "u", &in, NULL));
    CHECK(!mem_get(s, "u", "t", &m));
    CHECK(m.event_time == 253402300799999LL && m.message_index == INT32_MAX);
    mem_memory_clear(&m);
    /* queries: a 2000-letter word, empty, only punctuation */
    mem_query q;
    mem_query_init(&q);
    mem_hit *h;
    size_t nh;
    huge[2000] = 0;
    q.text = huge;
    CHECK(!mem_search(s, "u", &q, &h, &nh));
    mem_hits_free(h, nh);
    const char *qs[] = {"", "!!!", "   ", "&|!:*()'\\"};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        q.text = qs[i];
        CHECKF(!mem_search(s, "u", &q, &h, &nh), "'%s': %s", qs[i], vt_last_error());
        mem_hits_free(h, nh);
    }
    free(huge);
    mem_close(s);
}

static void test_isolation(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    const char *secret = "The vault code of Mallory is 7734 and her cat is named Pixel.";
    CHECK(!add(s, "mallory", "secret", secret));
    CHECK(!add(s, "mallory", "shared-id", "mallory's version"));
    CHECK(!add(s, "bob", "shared-id", "bob's version"));
    CHECK(!add(s, "bob", "b1", "Bob likes trains."));
    CHECK(!mem_profile_set(s, "mallory", "Mallory's vault profile"));
    mem_memory m;
    CHECK(mem_get(s, "bob", "secret", &m) == VT_ERR_NOT_FOUND);
    CHECK(mem_update(s, "bob", "secret", "overwritten", NULL, 0) == VT_ERR_NOT_FOUND);
    CHECK(mem_delete(s, "bob", "secret") == VT_ERR_NOT_FOUND);
    mem_version *v;
    size_t nv;
    CHECK(mem_history(s, "bob", "secret", &v, &nv) == VT_ERR_NOT_FOUND);
    CHECK(!mem_update(s, "bob", "shared-id", "bob's edit", NULL, 0));
    CHECK(!mem_get(s, "mallory", "shared-id", &m));
    CHECK(m.text && !strcmp(m.text, "mallory's version") && m.version == 1);
    mem_memory_clear(&m);
    CHECK(!mem_history(s, "mallory", "shared-id", &v, &nv));
    CHECK_EQ_INT(nv, 0);
    mem_versions_free(v, nv);
    mem_input in;
    mem_input_init(&in);
    in.id = "secret";
    in.text = "bob's secret";
    bool created = false;
    CHECK(!mem_upsert(s, "bob", &in, NULL, &created));
    CHECK(created);
    CHECK(!mem_get(s, "mallory", "secret", &m));
    CHECK(m.text && !strcmp(m.text, secret));
    mem_memory_clear(&m);
    CHECK(!mem_delete(s, "bob", "secret"));
    CHECK(!mem_get(s, "mallory", "secret", &m));
    mem_memory_clear(&m);
    /* users that look like SQL or patterns are just names */
    const char *odd_users[] = {"'", "%", "_", "mallory'--", "*", "\\"};
    for (size_t i = 0; i < sizeof odd_users / sizeof odd_users[0]; i++) {
        CHECK(mem_get(s, odd_users[i], "secret", &m) == VT_ERR_NOT_FOUND);
        int64_t n = -1;
        CHECK(!mem_count(s, odd_users[i], &n) && n == 0);
    }
    char *j;
    CHECK(!mem_export(s, "bob", &j));
    CHECK(j && !strstr(j, "vault") && !strstr(j, "mallory") && !strstr(j, "Mallory"));
    free(j);
    char *p;
    CHECK(!mem_profile_get(s, "bob", &p));
    CHECK(p && !*p);
    free(p);
    mem_memory *items;
    size_t k;
    int64_t next;
    CHECK(!mem_list(s, "bob", 0, 100, &items, &k, &next));
    CHECK_EQ_INT(k, 2);
    for (size_t i = 0; i < k; i++)
        CHECK(!strcmp(items[i].user, "bob"));
    mem_memories_free(items, k);
    const char *queries[] = {
        secret, "vault code", "Pixel", "7734", "\"vault\"", "vault*", "NEAR(vault code)",
        "vault OR code OR Pixel", "'; DROP TABLE vt_memories; --", "\" OR 1=1 --",
        "user_id = 'mallory'", "* OR *", "{text}: vault", "vault AND NOT trains", "^vault",
        "(((", "\"\"\"\"", "mallory", "secret", "%", "_", "\\", "NEAR", "OR", "AND", "NOT",
        "vault & code", "vault | code", "!trains", "vau:*", "vault:*", "'vault':*", "\\'vault",
        "vault <-> code", "vault <2> code", "'''", "$1", "E'\\x00'", "vault:A", "Pixel:*B",
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        mem_query q;
        mem_query_init(&q);
        q.text = queries[i];
        q.top_k = 100;
        mem_hit *h;
        size_t nh;
        vt_err e = mem_search(s, "bob", &q, &h, &nh);
        CHECKF(!e, "query '%s': %s", queries[i], vt_last_error());
        for (size_t x = 0; x < nh; x++) {
            CHECKF(!strcmp(h[x].m.user, "bob"), "query '%s' returned %s's memory", queries[i],
                   h[x].m.user);
            CHECK(!strstr(h[x].m.text, "vault"));
        }
        mem_hits_free(h, nh);
        CHECKF(!mem_search(s, "mallory", &q, &h, &nh), "query '%s' for mallory: %s", queries[i],
               vt_last_error());
        mem_hits_free(h, nh);
    }
    CHECK_EQ_INT(rank_of(s, "mallory", secret, "secret"), 0);
    CHECK_EQ_INT(rank_of(s, "mallory", "vault:*", "secret"), 0);
    CHECK(!mem_get(s, "bob", "b1", &m));
    mem_memory_clear(&m);
    CHECK(!mem_forget_user(s, "bob", NULL));
    int64_t n;
    CHECK(!mem_count(s, "mallory", &n));
    CHECK_EQ_INT(n, 2);
    mem_close(s);
}

enum { D = 64, NV = 300 };
static float g_e[NV][D];

static void make_vectors(void)
{
    uint64_t x = 12345;
    for (int i = 0; i < NV; i++)
        for (int k = 0; k < D; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            g_e[i][k] = (float)((x >> 33) % 2000) / 1000.0f - 1.0f;
        }
}

/* the id of the nearest memory of user for vector qv ("" if none) */
static void nearest(mem_store *s, const char *user, const float *qv, int32_t n, char *id)
{
    mem_query q;
    mem_query_init(&q);
    q.embedding = qv;
    q.n_embd = n;
    q.top_k = 5;
    mem_hit *h;
    size_t nh;
    id[0] = 0;
    CHECKF(!mem_search(s, user, &q, &h, &nh), "vector search: %s", vt_last_error());
    if (nh)
        snprintf(id, MEM_ID_MAX + 1, "%s", h[0].m.id);
    for (size_t i = 0; i < nh; i++)
        CHECK(!strcmp(h[i].m.user, user));
    mem_hits_free(h, nh);
}

static void test_vectors_and_fusion(void)
{
    char uri[1400];
    mem_store *s = fresh(NULL, uri);
    if (!s)
        return;
    make_vectors();
    CHECK(!mem_begin(s));
    for (int i = 0; i < NV; i++) {
        mem_input in;
        mem_input_init(&in);
        char id[16], text[64];
        snprintf(id, sizeof id, "v%d", i);
        snprintf(text, sizeof text, "vector memory %d about topic%d", i, i % 7);
        in.id = id;
        in.text = text;
        in.embedding = g_e[i];
        in.n_embd = D;
        CHECK(!mem_add(s, i < 200 ? "a" : "b", &in, NULL));
    }
    CHECK(!mem_commit(s));
    mem_query q;
    mem_query_init(&q);
    mem_hit *h;
    size_t nh;
    for (int t = 0; t < 200; t += 37) {
        float qv[D];
        for (int k = 0; k < D; k++)
            qv[k] = g_e[t][k] * 2.5f + (k == 3 ? 0.05f : 0);
        q.embedding = qv;
        q.n_embd = D;
        q.text = NULL;
        q.top_k = 5;
        CHECK(!mem_search(s, "a", &q, &h, &nh));
        char id[16];
        snprintf(id, sizeof id, "v%d", t);
        CHECK(nh == 5 && !strcmp(h[0].m.id, id) && h[0].vector_rank == 1);
        CHECK(nh && h[0].similarity > 0.99);
        for (size_t i = 0; i < nh; i++)
            CHECK(!strcmp(h[i].m.user, "a"));
        mem_hits_free(h, nh);
    }
    q.embedding = g_e[250];
    q.text = NULL;
    CHECK(!mem_search(s, "a", &q, &h, &nh));
    for (size_t i = 0; i < nh; i++)
        CHECK(strcmp(h[i].m.id, "v250") && !strcmp(h[i].m.user, "a"));
    mem_hits_free(h, nh);
    q.embedding = g_e[14];
    q.text = "memory 14 topic0";
    CHECK(!mem_search(s, "a", &q, &h, &nh));
    CHECK(nh && !strcmp(h[0].m.id, "v14") && h[0].lexical_rank >= 1 && h[0].vector_rank == 1);
    mem_hits_free(h, nh);

    /* the cache follows writes, ours and another handle's (another process
     * would be the same): a new nearest vector, an update, a delete */
    mem_store *t = open_uri(uri, NULL);
    if (!t) {
        mem_close(s);
        return;
    }
    float nv[D];
    for (int k = 0; k < D; k++)
        nv[k] = k == 0 ? 1.0f : 0.0f;
    char id[MEM_ID_MAX + 1];
    nearest(s, "a", nv, D, id); /* loads s's cache */
    mem_input in;
    mem_input_init(&in);
    in.id = "axis";
    in.text = "the x axis";
    in.embedding = nv;
    in.n_embd = D;
    CHECK(!mem_add(t, "a", &in, NULL));
    nearest(s, "a", nv, D, id);
    CHECK(!strcmp(id, "axis"));
    /* t moves v7 onto the y axis */
    float ny[D];
    for (int k = 0; k < D; k++)
        ny[k] = k == 1 ? 1.0f : 0.0f;
    nearest(s, "a", ny, D, id);
    CHECK(strcmp(id, "v7") != 0);
    CHECK(!mem_update(t, "a", "v7", "now the y axis", ny, D));
    nearest(s, "a", ny, D, id);
    CHECK(!strcmp(id, "v7"));
    CHECK(!mem_delete(t, "a", "axis"));
    nearest(s, "a", nv, D, id);
    CHECK(id[0] && strcmp(id, "axis") != 0);
    /* a rolled-back batch of s leaves nothing in its cache */
    CHECK(!mem_begin(s));
    in.id = "temp";
    CHECK(!mem_add(s, "a", &in, NULL));
    nearest(s, "a", nv, D, id);
    CHECK(!strcmp(id, "temp"));
    CHECK(!mem_rollback(s));
    nearest(s, "a", nv, D, id);
    CHECK(id[0] && strcmp(id, "temp") != 0);
    /* another dimension is not comparable */
    float other[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    nearest(s, "a", other, 8, id);
    CHECK(!id[0]);
    /* more vectors than one page of the cache's load (8192): the last one,
     * added by the other handle, is found (the only one on the last axis) */
    CHECK(!mem_begin(t));
    for (int i = 0; i < 9000; i++) {
        float v8[8];
        for (int k = 0; k < 7; k++)
            v8[k] = (float)((i * 7 + k * 13) % 17) + 1.0f;
        v8[7] = i == 8999 ? 100.0f : 0.0f;
        char vid[16];
        snprintf(vid, sizeof vid, "p%d", i);
        mem_input_init(&in);
        in.id = vid;
        in.text = "paged";
        in.embedding = v8;
        in.n_embd = 8;
        CHECK(!mem_add(t, "pages", &in, NULL));
    }
    CHECK(!mem_commit(t));
    float last[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    nearest(s, "pages", last, 8, id);
    CHECK(!strcmp(id, "p8999"));
    mem_close(t);
    mem_close(s);
}

/* a user with more memories than the backend ranks in SQL (2,000) is ranked
 * by BM25 over an index the handle keeps: the same answers, kept in step
 * with another handle's writes */
static void test_big_user(void)
{
    char uri[1400];
    mem_store *s = fresh(NULL, uri);
    if (!s)
        return;
    static const char *const common[] = {"apple", "river", "music", "garden", "window",
                                         "coffee", "train", "letter", "summer", "friend"};
    for (int u = 0; u < 2; u++) {
        const char *user = u ? "other" : "big";
        CHECK(!mem_begin(s));
        for (int i = 0; i < 2100; i++) {
            char id[16], text[160];
            snprintf(id, sizeof id, "b%d", i);
            snprintf(text, sizeof text, "%s the %s and the %s number%d %s", common[i % 10],
                     common[(i / 10) % 10], common[(i / 100) % 10], i,
                     i == 1234 ? "zeppelin" : "");
            CHECK(!add(s, user, id, text));
        }
        CHECK(!mem_commit(s));
    }
    CHECK(!add(s, "other", "secret", "the other user's rhinoceros"));
    /* a rare word comes first, before memories with only common words */
    CHECK_EQ_INT(rank_of(s, "big", "apple zeppelin", "b1234"), 0);
    CHECK_EQ_INT(rank_of(s, "big", "number777", "b777"), 0);
    CHECK_EQ_INT(rank_of(s, "big", "rhinoceros", "secret"), -1);
    mem_query q;
    mem_query_init(&q);
    q.text = "apple river music";
    q.top_k = 20;
    mem_hit *h;
    size_t nh;
    CHECK(!mem_search(s, "big", &q, &h, &nh));
    CHECK_EQ_INT(nh, 20);
    /* the memories with all three words come first */
    for (size_t i = 0; i < nh && i < 3; i++)
        CHECKF(strstr(h[i].m.text, "apple") && strstr(h[i].m.text, "river") &&
                   strstr(h[i].m.text, "music"),
               "hit %zu: %s", i, h[i].m.text);
    for (size_t i = 0; i < nh; i++)
        CHECK(!strcmp(h[i].m.user, "big"));
    mem_hits_free(h, nh);
    /* hostile syntax on this path too */
    const char *hostile[] = {"'; DROP TABLE vt_memories; --", "zeppelin:*", "'zepp':*", "\\\\",
                             "''''", "rhinoceros | apple", "!apple", "a & b", "<->", "'"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        q.text = hostile[i];
        CHECKF(!mem_search(s, "big", &q, &h, &nh), "'%s': %s", hostile[i], vt_last_error());
        for (size_t k = 0; k < nh; k++)
            CHECK(!strcmp(h[k].m.user, "big") && !strstr(h[k].m.text, "rhinoceros"));
        mem_hits_free(h, nh);
    }
    /* another handle writes: a new word, an update, a delete, a turn whose
     * neighbour's words are indexed with it */
    mem_store *t = open_uri(uri, NULL);
    if (t) {
        CHECK(!add(t, "big", "n1", "a brand new xylophone"));
        CHECK_EQ_INT(rank_of(s, "big", "xylophone", "n1"), 0);
        CHECK(!mem_update(t, "big", "n1", "now a harpsichord", NULL, 0));
        CHECK_EQ_INT(rank_of(s, "big", "xylophone", "n1"), -1);
        CHECK_EQ_INT(rank_of(s, "big", "harpsichord", "n1"), 0);
        CHECK(!mem_store_turn(t, "big", "c9", 0, "u", "Which instrument did you buy?",
                              MEM_TIME_NONE, NULL));
        CHECK(!mem_store_turn(t, "big", "c9", 1, "u", "A bassoon.", MEM_TIME_NONE, NULL));
        CHECK_EQ_INT(rank_of(s, "big", "bassoon", "c9:1"), 0);
        CHECK(rank_of(s, "big", "bassoon", "c9:0") > 0); /* through its neighbour */
        CHECK(!mem_delete(t, "big", "n1"));
        CHECK_EQ_INT(rank_of(s, "big", "harpsichord", "n1"), -1);
        CHECK_EQ_INT(rank_of(s, "big", "zeppelin", "b1234"), 0);
        /* Korean and a one-character prefix term */
        CHECK(!add(t, "big", "k1", "어제 시장에서 사과를 샀어요."));
        CHECK_EQ_INT(rank_of(s, "big", "사과는 어디서 샀나요?", "k1"), 0);
        CHECK_EQ_INT(rank_of(s, "big", "샀", "k1"), 0);
        mem_close(t);
    }
    /* this handle's batch: seen inside it, gone after a rollback */
    CHECK(!mem_begin(s));
    CHECK(!add(s, "big", "tmp", "a temporary ocarina"));
    CHECK_EQ_INT(rank_of(s, "big", "ocarina", "tmp"), 0);
    CHECK(!add(s, "big", "tmp2", "a second ocarina"));
    CHECK(rank_of(s, "big", "ocarina", "tmp2") >= 0);
    CHECK(!mem_rollback(s));
    CHECK_EQ_INT(rank_of(s, "big", "ocarina", "tmp"), -1);
    /* the other big user, then back: each gets its own index */
    CHECK_EQ_INT(rank_of(s, "other", "rhinoceros", "secret"), 0);
    CHECK_EQ_INT(rank_of(s, "big", "zeppelin", "b1234"), 0);
    /* another handle forgets a user this one has indexed and starts it
     * again: nothing of the old memories is ranked any more */
    CHECK_EQ_INT(rank_of(s, "other", "number0", "b0"), 0);
    t = open_uri(uri, NULL);
    if (t) {
        CHECK(!mem_forget_user(t, "other", NULL));
        CHECK(!add(t, "other", "fresh", "an apple to start again"));
        mem_close(t);
        q.text = "apple";
        CHECK(!mem_search(s, "other", &q, &h, &nh));
        CHECK(nh == 1 && !strcmp(h[0].m.id, "fresh") && h[0].lexical_rank == 1);
        mem_hits_free(h, nh);
    }
    mem_close(s);
}

static void test_dedup_and_recency(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    mem_input in;
    mem_input_init(&in);
    in.text = "I moved to Busan last year.";
    in.event_time = 1600000000000LL;
    CHECK(!mem_add(s, "u", &in, NULL));
    in.text = "i moved to BUSAN, last year!";
    in.event_time = 1600000001000LL;
    CHECK(!mem_add(s, "u", &in, NULL));
    in.text = "Busan has great seafood.";
    in.event_time = 1700000000000LL;
    CHECK(!mem_add(s, "u", &in, NULL));
    mem_query q;
    mem_query_init(&q);
    q.text = "moved to Busan";
    mem_hit *h;
    size_t nh;
    CHECK(!mem_search(s, "u", &q, &h, &nh));
    CHECK_EQ_INT(nh, 2);
    mem_hits_free(h, nh);
    q.text = "Busan";
    q.recency_weight = 5;
    CHECK(!mem_search(s, "u", &q, &h, &nh));
    CHECK(nh >= 1 && strstr(h[0].m.text, "seafood"));
    mem_hits_free(h, nh);
    mem_close(s);
}

static void test_migrations(void)
{
    char uri[1400];
    mem_options o = {.schema_version = 1};
    mem_store *s = fresh(&o, uri);
    if (!s)
        return;
    const char *schema = g_schemas[g_n_schemas - 1];
    CHECK_EQ_INT(mem_store_schema_version(s), 1);
    CHECK(!add(s, "u", "old1", "written by the old build about llamas"));
    CHECK(!mem_profile_set(s, "u", "old profile"));
    mem_version *v;
    size_t nv;
    CHECK(!mem_history(s, "u", "old1", &v, &nv) && nv == 0);
    mem_close(s);
    s = open_uri(uri, NULL);
    if (!s)
        return;
    CHECK_EQ_INT(mem_store_schema_version(s), mem_schema_version());
    mem_memory m;
    CHECK(!mem_get(s, "u", "old1", &m));
    CHECK(m.text && !strcmp(m.text, "written by the old build about llamas") && m.version == 1);
    mem_memory_clear(&m);
    CHECK_EQ_INT(rank_of(s, "u", "llamas", "old1"), 0);
    CHECK(!mem_update(s, "u", "old1", "updated after migration", NULL, 0));
    CHECK(!mem_history(s, "u", "old1", &v, &nv));
    CHECK(nv == 1 && !strcmp(v[0].text, "written by the old build about llamas"));
    mem_versions_free(v, nv);
    mem_close(s);
    s = open_uri(uri, NULL);
    CHECK(s && mem_store_schema_version(s) == mem_schema_version());
    mem_close(s);
    /* read-only: reads work, writes are refused */
    mem_options ro0 = {.read_only = true};
    s = open_uri(uri, &ro0);
    if (s) {
        CHECK(!mem_get(s, "u", "old1", &m));
        mem_memory_clear(&m);
        CHECK_EQ_INT(rank_of(s, "u", "migration", "old1"), 0);
        CHECK(add(s, "u", "ro", "refused") == VT_ERR_INVALID);
        CHECK(mem_begin(s) == VT_ERR_INVALID);
        CHECK(mem_profile_set(s, "u", "refused") == VT_ERR_INVALID);
        mem_close(s);
    }
    /* a newer build's store is refused */
    char q[200];
    snprintf(q, sizeof q, "UPDATE %s.vt_mem_schema SET version = 99", schema);
    CHECK(sql(q));
    s = NULL;
    CHECK(mem_open(uri, NULL, &s) == VT_ERR_UNSUPPORTED && !s);
    CHECK(strstr(vt_last_error(), "newer") && strstr(vt_last_error(), "99"));
    /* a schema with a vt_memories table that is not ours */
    char other[1400];
    if (!new_schema(other, sizeof other))
        return;
    snprintf(q, sizeof q, "CREATE TABLE %s.vt_memories(x int)", g_schemas[g_n_schemas - 1]);
    CHECK(sql(q));
    CHECK(mem_open(other, NULL, &s) == VT_ERR_FORMAT && !s);
    /* read-only on an empty schema: nothing to read */
    if (!new_schema(other, sizeof other))
        return;
    mem_options ro = {.read_only = true};
    CHECK(mem_open(other, &ro, &s) == VT_ERR_NOT_FOUND && !s);
}

/* ---- several replicas ---- */

static void test_two_handles(void)
{
    char uri[1400];
    mem_store *a = fresh(NULL, uri);
    if (!a)
        return;
    mem_store *b = open_uri(uri, NULL);
    if (!b) {
        mem_close(a);
        return;
    }
    CHECK(!add(a, "kim", "x1", "Kim's favourite mountain is Jirisan."));
    mem_memory m;
    CHECK(!mem_get(b, "kim", "x1", &m));
    mem_memory_clear(&m);
    CHECK_EQ_INT(rank_of(b, "kim", "favourite mountain", "x1"), 0);
    CHECK(!mem_update(b, "kim", "x1", "Kim's favourite mountain is Hallasan.", NULL, 0));
    CHECK(!mem_get(a, "kim", "x1", &m));
    CHECK(m.text && strstr(m.text, "Hallasan") && m.version == 2);
    mem_memory_clear(&m);
    CHECK_EQ_INT(rank_of(a, "kim", "Hallasan", "x1"), 0);
    CHECK_EQ_INT(rank_of(a, "kim", "Jirisan", "x1"), -1);
    /* a's batch is not seen by b before it commits, then it is */
    CHECK(!mem_begin(a));
    CHECK(!add(a, "lee", "y1", "batched"));
    CHECK(mem_get(b, "lee", "y1", &m) == VT_ERR_NOT_FOUND);
    CHECK(!mem_commit(a));
    CHECK(!mem_get(b, "lee", "y1", &m));
    mem_memory_clear(&m);
    /* b waits for a's batch on the same user; a lock timeout is an error, not a hang */
    mem_options quick = {.busy_timeout_ms = 200};
    mem_store *c = open_uri(uri, &quick);
    CHECK(!mem_begin(a));
    CHECK(!add(a, "lee", "y2", "held"));
    if (c) {
        CHECK(add(c, "lee", "y3", "must wait") == VT_ERR_IO);
        CHECK(strstr(vt_last_error(), "lock") != NULL);
        CHECK(!add(c, "park", "z1", "another user does not wait"));
    }
    /* a write of c's batch that times out spoils that batch, and only it */
    if (c) {
        CHECK(!mem_begin(c));
        CHECK(!add(c, "park", "z2", "in the batch"));
        CHECK(add(c, "lee", "y4", "times out") == VT_ERR_IO);
        CHECK(add(c, "park", "z3", "after the failure") == VT_ERR_IO);
        CHECK(strstr(vt_last_error(), "earlier write") != NULL);
        CHECK(mem_commit(c) == VT_ERR_IO);
        CHECK(!mem_rollback(c));
        CHECK(mem_get(b, "park", "z2", &m) == VT_ERR_NOT_FOUND);
    }
    CHECK(!mem_commit(a));
    if (c) {
        CHECK(!add(c, "lee", "y3", "now it goes"));
        /* a batch over several users, one forgotten in the middle */
        CHECK(!mem_begin(c));
        CHECK(!add(c, "park", "z4", "batched again"));
        CHECK(!add(c, "lee", "y5", "batched for lee"));
        CHECK(!mem_forget_user(c, "park", NULL));
        CHECK(!add(c, "park", "z5", "after forgetting"));
        CHECK(!mem_commit(c));
        int64_t n = 0;
        CHECK(!mem_count(b, "park", &n));
        CHECK_EQ_INT(n, 1);
        CHECK(!mem_get(b, "lee", "y5", &m));
        mem_memory_clear(&m);
    }
    mem_close(c);
    mem_close(b);
    mem_close(a);
}

/* the work of one writer process: its own memories (every other group of
 * five in a batch), upserts of ids every writer writes, turns of one
 * conversation; the exit status counts the failures */
enum { W = 3, N = 120, COMMON = 12 };

static int writer(const char *uri, int w)
{
    mem_store *s = NULL;
    if (mem_open(uri, NULL, &s)) {
        fprintf(stderr, "writer %d: open: %s\n", w, vt_last_error());
        return 100;
    }
    int fail = 0;
    for (int i = 0; i < N; i += 5) {
        char id[32], text[96];
        bool batch = (i / 5) % 2 == 0;
        if (batch && mem_begin(s))
            fail++;
        for (int k = 0; k < 5; k++) {
            snprintf(id, sizeof id, "w%d-%d", w, i + k);
            snprintf(text, sizeof text, "writer %d memory %d about shared topics", w, i + k);
            if (add(s, "shared", id, text)) {
                fprintf(stderr, "writer %d: add %s: %s\n", w, id, vt_last_error());
                fail++;
            }
        }
        mem_input in;
        mem_input_init(&in);
        snprintf(id, sizeof id, "common-%d", (i / 5) % COMMON);
        snprintf(text, sizeof text, "common memory written by %d at %d", w, i);
        in.id = id;
        in.text = text;
        if (mem_upsert(s, "shared", &in, NULL, NULL)) {
            fprintf(stderr, "writer %d: upsert %s: %s\n", w, id, vt_last_error());
            fail++;
        }
        if (mem_store_turn(s, "shared", "talk", w * 1000 + i / 5, "u", text, MEM_TIME_NONE,
                           NULL)) {
            fprintf(stderr, "writer %d: turn: %s\n", w, vt_last_error());
            fail++;
        }
        if (batch && mem_commit(s)) {
            fprintf(stderr, "writer %d: commit: %s\n", w, vt_last_error());
            fail++;
        }
    }
    mem_close(s);
    return fail > 99 ? 99 : fail;
}

static void test_concurrent_writers(void)
{
    char uri[1400];
    mem_store *s = fresh(NULL, uri);
    if (!s)
        return;
    pid_t pid[W];
    for (int w = 0; w < W; w++) {
        fflush(NULL);
        pid[w] = fork();
        if (pid[w] == 0)
            _exit(writer(uri, w));
        CHECK(pid[w] > 0);
    }
    /* meanwhile this handle reads and searches */
    for (int i = 0; i < 30; i++) {
        int64_t n;
        CHECK(!mem_count(s, "shared", &n));
        CHECK_EQ_INT(rank_of(s, "shared", "nothing matches xyzzy", "w0-0"), -1);
    }
    for (int w = 0; w < W; w++) {
        int st = 0;
        if (pid[w] > 0)
            waitpid(pid[w], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "writer %d: status %d", w,
               WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    }
    /* nothing lost: every writer's memories, each common id once, every turn */
    int64_t n;
    CHECK(!mem_count(s, "shared", &n));
    CHECK_EQ_INT(n, W * N + COMMON + W * (N / 5));
    for (int w = 0; w < W; w++)
        for (int i = 0; i < N; i++) {
            char id[32];
            snprintf(id, sizeof id, "w%d-%d", w, i);
            mem_memory m;
            CHECKF(!mem_get(s, "shared", id, &m), "%s lost", id);
            mem_memory_clear(&m);
        }
    /* each common id: written N / 5 / COMMON times by each writer, every write a version */
    for (int k = 0; k < COMMON; k++) {
        char id[32];
        snprintf(id, sizeof id, "common-%d", k);
        mem_memory m;
        CHECK(!mem_get(s, "shared", id, &m));
        mem_version *v;
        size_t nv;
        CHECK(!mem_history(s, "shared", id, &v, &nv));
        CHECK_EQ_INT(m.version, (int64_t)nv + 1);
        CHECK_EQ_INT(m.version, W * (N / 5 / COMMON));
        mem_versions_free(v, nv);
        mem_memory_clear(&m);
    }
    /* the order is stable and complete: paging sees every memory once, seq rising */
    int64_t after = 0, last = 0, seen = 0;
    do {
        mem_memory *items;
        size_t k;
        CHECK(!mem_list(s, "shared", after, 97, &items, &k, &after));
        for (size_t i = 0; i < k; i++) {
            CHECK(items[i].seq > last);
            last = items[i].seq;
            seen++;
        }
        mem_memories_free(items, k);
    } while (after);
    CHECK_EQ_INT(seen, n);
    /* and the other writers' words are found */
    CHECK(rank_of(s, "shared", "writer memory 77", "w2-77") >= 0);
    mem_close(s);
}

/* several processes opening a new store at once: one creates the schema,
 * the others wait for it and find it made */
static void test_concurrent_open(void)
{
    char uri[1400];
    if (!new_schema(uri, sizeof uri))
        return;
    enum { NO = 4 };
    pid_t pid[NO];
    for (int w = 0; w < NO; w++) {
        fflush(NULL);
        pid[w] = fork();
        if (pid[w] == 0) {
            mem_store *s = NULL;
            vt_err e = mem_open(uri, NULL, &s);
            if (e)
                fprintf(stderr, "open %d: %s\n", w, vt_last_error());
            char id[16];
            snprintf(id, sizeof id, "o%d", w);
            if (!e && (e = add(s, "u", id, "opened at once")))
                fprintf(stderr, "add %d: %s\n", w, vt_last_error());
            mem_close(s);
            _exit(e ? 1 : 0);
        }
    }
    for (int w = 0; w < NO; w++) {
        int st = 0;
        if (pid[w] > 0)
            waitpid(pid[w], &st, 0);
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "opener %d failed", w);
    }
    mem_store *s = open_uri(uri, NULL);
    int64_t n = 0;
    CHECK(s && !mem_count(s, "u", &n));
    CHECK_EQ_INT(n, NO);
    mem_close(s);
}

/* a connection the server drops: the call that meets it fails (VT_ERR_IO),
 * the next ones reconnect; bad URIs are clear errors */
static void test_connection(void)
{
    char uri[1400];
    mem_store *s = fresh(NULL, uri);
    if (!s)
        return;
    CHECK(!add(s, "u", "a", "before the drop"));
    CHECK(sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              "WHERE application_name = 'vt-test' AND pid <> pg_backend_pid()"));
    usleep(100 * 1000);
    mem_memory m;
    vt_err e = mem_get(s, "u", "a", &m);
    CHECK(e == VT_OK || e == VT_ERR_IO);
    mem_memory_clear(&m);
    CHECK(!mem_get(s, "u", "a", &m));
    mem_memory_clear(&m);
    CHECK(!add(s, "u", "b", "after the drop"));
    CHECK_EQ_INT(rank_of(s, "u", "drop", "b") >= 0, 1);
    mem_close(s);
    /* nothing listening: an error naming the failure, not the password */
    int port = free_port();
    char bad[200];
    snprintf(bad, sizeof bad, "postgresql://vt:sekrit-pw@127.0.0.1:%d/x?connect_timeout=5", port);
    s = NULL;
    CHECK(mem_open(bad, NULL, &s) == VT_ERR_IO && !s);
    CHECK(!strstr(vt_last_error(), "sekrit"));
    CHECK(mem_open("postgresql://[::1", NULL, &s) != VT_OK && !s);
    CHECK(mem_open("postgresql://127.0.0.1:1/x?sslmode=bogus", NULL, &s) != VT_OK && !s);
    /* a database that does not exist */
    const char *q = strrchr(g_base, '/');
    if (q && g_dir[0]) {
        snprintf(bad, sizeof bad, "%.*s/vt_no_such_db_%d", (int)(q - g_base), g_base,
                 (int)getpid());
        CHECK(mem_open(bad, NULL, &s) == VT_ERR_IO && !s);
        CHECK(strstr(vt_last_error(), "does not exist") != NULL);
    }
}

static void cleanup(void)
{
    for (int i = 0; g_base[0] && i < g_n_schemas; i++) {
        char q[128];
        snprintf(q, sizeof q, "DROP SCHEMA IF EXISTS %.47s CASCADE", g_schemas[i]);
        PGresult *r = admin() ? PQexec(admin(), q) : NULL;
        PQclear(r);
    }
    PQfinish(g_admin);
    g_admin = NULL;
    if (g_watch_fd >= 0) {
        close(g_watch_fd); /* the watchdog stops the server */
        waitpid(g_watch_pid, NULL, 0);
    }
}

int main(void)
{
    RUN_TEST(test_server);
    RUN_TEST(test_add_get_update_history);
    RUN_TEST(test_paging_and_count);
    RUN_TEST(test_profile_export_forget);
    RUN_TEST(test_turns_and_context);
    RUN_TEST(test_turn_contexts);
    RUN_TEST(test_korean_and_cjk);
    RUN_TEST(test_limits);
    RUN_TEST(test_isolation);
    RUN_TEST(test_vectors_and_fusion);
    RUN_TEST(test_big_user);
    RUN_TEST(test_dedup_and_recency);
    RUN_TEST(test_migrations);
    RUN_TEST(test_two_handles);
    RUN_TEST(test_concurrent_writers);
    RUN_TEST(test_concurrent_open);
    RUN_TEST(test_connection);
    cleanup();
    return test_finish("test_memory_pg");
}
