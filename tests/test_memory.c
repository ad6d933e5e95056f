/*
 * test_memory.c - the memory store (memory/): add, upsert, get, update with
 * history, delete, paging, profiles, export, forget-user, turns; schema
 * migrations (a v1 file opened by this build; a file from a newer build
 * refused); validation of every input; isolation between users (another
 * user's ids in every call, another user's exact sentence in search, FTS5
 * and SQL syntax in queries); recall (Korean particles, stop words,
 * neighbouring turns, embeddings, fusion, de-duplication) and the prompt
 * block.
 */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "memory/memory.h"
#include "memory/sqlite_int.h"
#include "test.h"

static int db_counter;

/* a fresh store in the test's scratch folder */
static mem_store *fresh(const mem_options *opt, char *path_out)
{
    char path[512];
    snprintf(path, sizeof path, "%s/m%d/store.db", test_tmpdir(), ++db_counter);
    if (path_out)
        strcpy(path_out, path);
    mem_store *s = NULL;
    vt_err e = mem_open(path, opt, &s);
    CHECKF(!e, "mem_open %s: %s", path, vt_last_error());
    return s;
}

static vt_err add(mem_store *s, const char *user, const char *id, const char *text)
{
    mem_input in;
    mem_input_init(&in);
    in.id = id;
    in.text = text;
    return mem_add(s, user, &in, NULL);
}

static void test_times(void)
{
    int64_t t;
    CHECK(!mem_time_parse("2023-05-07T14:30:05Z", &t));
    CHECK_EQ_INT(t, 1683469805000LL);
    CHECK(!mem_time_parse("2023-05-07T23:30:05+09:00", &t));
    CHECK_EQ_INT(t, 1683469805000LL);
    CHECK(!mem_time_parse("2023-05-07 14:30:05.250", &t));
    CHECK_EQ_INT(t, 1683469805250LL);
    CHECK(!mem_time_parse("2023-05-07", &t));
    CHECK_EQ_INT(t, 1683417600000LL);
    char b[40];
    mem_time_format(1683469805250LL, b, sizeof b);
    CHECK(!strcmp(b, "2023-05-07T14:30:05.250Z"));
    mem_time_format(-1, b, sizeof b);
    CHECK(!strcmp(b, "1969-12-31T23:59:59.999Z"));
    const char *bad[] = {"", "2023", "2023-13-01", "2023-02-29", "2023-05-07T25:00", "yesterday",
                         "2023-05-07T10:00Zjunk", "2023-05-07T10:00+99:00", "2023-5-7"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(mem_time_parse(bad[i], &t) == VT_ERR_INVALID, "'%s' parsed", bad[i]);
    CHECK(!mem_time_parse("2024-02-29", &t));
}

static void test_add_get_update_history(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    CHECK(!strcmp(mem_backend_name(s), "sqlite"));
    CHECK_EQ_INT(mem_store_schema_version(s), mem_schema_version());
    mem_input in;
    mem_input_init(&in);
    in.text = "Alice likes green tea.";
    in.kind = MEM_KIND_PREFERENCE;
    in.speaker = "alice";
    CHECK(!mem_time_parse("2023-05-07T10:00:00Z", &in.event_time));
    char id[MEM_ID_MAX + 1] = "";
    CHECK(!mem_add(s, "alice", &in, id));
    CHECK(!strncmp(id, "m-", 2) && strlen(id) == 18);
    char id2[MEM_ID_MAX + 1] = "";
    CHECK(!mem_add(s, "alice", &in, id2));
    CHECK(strcmp(id, id2) != 0); /* assigned ids differ */

    mem_memory m;
    CHECK(!mem_get(s, "alice", id, &m));
    CHECK(m.text && !strcmp(m.text, "Alice likes green tea."));
    CHECK(m.kind == MEM_KIND_PREFERENCE && m.version == 1 && m.speaker && !strcmp(m.speaker, "alice"));
    CHECK_EQ_INT(m.event_time, 1683453600000LL);
    CHECK(m.created > 0 && m.updated == m.created && !m.embedding);
    mem_memory_clear(&m);

    /* a given id that exists: add refuses, upsert updates and keeps the old text */
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
    CHECK(!strcmp(m.text, "third text") && m.version == 3);
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

    /* embeddings are stored compactly and come back normalised */
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

    CHECK(!mem_delete(s, "alice", "D1:3"));
    CHECK(mem_get(s, "alice", "D1:3", &m) == VT_ERR_NOT_FOUND);
    CHECK(mem_delete(s, "alice", "D1:3") == VT_ERR_NOT_FOUND);
    CHECK(mem_update(s, "alice", "D1:3", "x", NULL, 0) == VT_ERR_NOT_FOUND);
    CHECK(mem_history(s, "alice", "D1:3", &v, &nv) == VT_ERR_NOT_FOUND);
    mem_close(s);
    mem_close(NULL);
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
    /* pages of 40: every memory of the user once, in insertion order */
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
    CHECK(mem_list(s, "even", 0, MEM_LIST_MAX + 1, &items, &k, &next) == VT_ERR_RANGE);
    /* a rolled-back batch leaves nothing */
    CHECK(!mem_begin(s));
    CHECK(!add(s, "even", "gone", "rolled back"));
    CHECK(!mem_rollback(s));
    mem_memory m;
    CHECK(mem_get(s, "even", "gone", &m) == VT_ERR_NOT_FOUND);
    /* a failed write inside a batch does not spoil the batch */
    CHECK(!mem_begin(s));
    CHECK(!add(s, "even", "kept", "kept text"));
    CHECK(add(s, "even", "kept", "duplicate id") == VT_ERR_INVALID);
    CHECK(!mem_commit(s));
    CHECK(!mem_get(s, "even", "kept", &m));
    CHECK(m.text && !strcmp(m.text, "kept text"));
    mem_memory_clear(&m);
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
    CHECK(!mem_profile_get(s, "u1", &p));
    CHECK(p && !strcmp(p, "Name: Kim\nLives in Seoul"));
    free(p);
    char big[MEM_PROFILE_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(mem_profile_set(s, "u1", big) == VT_ERR_RANGE);
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
    /* u2 untouched */
    CHECK(!mem_count(s, "u2", &n));
    CHECK_EQ_INT(n, 1);
    CHECK(!mem_profile_get(s, "u2", &p));
    CHECK(p && !strcmp(p, "Name: Lee"));
    free(p);
    /* the forgotten text is not findable any more */
    mem_query q;
    mem_query_init(&q);
    q.text = "first quoted";
    mem_hit *hits;
    size_t nh;
    CHECK(!mem_search(s, "u1", &q, &hits, &nh));
    CHECK_EQ_INT(nh, 0);
    mem_hits_free(hits, nh);
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
                           "About five hours up and down.",
                           "Did you see any wildlife?"};
    for (int i = 0; i < 5; i++)
        CHECK(!mem_store_turn(s, "kim", "conv1", i, i % 2 ? "kim" : "assistant", turns[i],
                              1683453600000LL + i * 60000, NULL));
    /* storing a turn again updates it, no duplicate */
    CHECK(!mem_store_turn(s, "kim", "conv1", 4, "assistant", turns[4], 1683453600000LL + 4 * 60000,
                          NULL));
    int64_t n;
    CHECK(!mem_count(s, "kim", &n));
    CHECK_EQ_INT(n, 5);
    mem_memory m;
    CHECK(!mem_get(s, "kim", "conv1:1", &m));
    CHECK(m.kind == MEM_KIND_MESSAGE && m.message_index == 1 && !strcmp(m.conversation, "conv1"));
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
    /* a turn found through its neighbour's words (the answer "five hours"
     * follows the question about how long) */
    q.text = "hours";
    CHECK(!mem_search(s, "kim", &q, &h, &nh));
    CHECK(nh >= 1 && !strcmp(h[0].m.id, "conv1:3"));
    mem_hits_free(h, nh);
    /* a date finds the turns of that day: 2023-05-07 was a Sunday in May */
    q.text = "what happened on sunday";
    CHECK(!mem_search(s, "kim", &q, &h, &nh));
    CHECK_EQ_INT(nh, 5);
    mem_hits_free(h, nh);
    /* stop words alone find nothing */
    q.text = "what did you do with them?";
    CHECK(!mem_search(s, "kim", &q, &h, &nh));
    CHECK_EQ_INT(nh, 0);
    mem_hits_free(h, nh);
    mem_close(s);
}

static int count_hits_with(mem_store *s, const char *user, const char *query, const char *id)
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
    /* a word finds it with another particle attached */
    CHECK_EQ_INT(count_hits_with(s, "kim", "사과", "k1"), 0);
    CHECK_EQ_INT(count_hits_with(s, "kim", "사과는 어디서 샀나요?", "k1"), 0);
    CHECK_EQ_INT(count_hits_with(s, "kim", "등산은 언제 가요?", "k2"), 0);
    CHECK_EQ_INT(count_hits_with(s, "kim", "동생의 결혼", "k3"), 0);
    CHECK_EQ_INT(count_hits_with(s, "kim", "東京", "j1"), 0);
    CHECK_EQ_INT(count_hits_with(s, "kim", "绿茶", "c1"), 0);
    /* English stems */
    CHECK_EQ_INT(count_hits_with(s, "kim", "Where did I buy the apple?", "e1"), 0);
    /* a one-character query word finds it anywhere in a run */
    CHECK_EQ_INT(count_hits_with(s, "kim", "茶", "c1"), 0);
    CHECK_EQ_INT(count_hits_with(s, "kim", "绿", "c1"), 0);
    CHECK_EQ_INT(count_hits_with(s, "kim", "사", "k1"), 0);
    /* a long run without spaces is indexed to its end */
    char longjp[2048] = "";
    for (int i = 0; i < 40; i++)
        strcat(longjp, "今日はいい天気");
    strcat(longjp, "富士山に登りました");
    CHECK(!add(s, "kim", "long", longjp));
    CHECK_EQ_INT(count_hits_with(s, "kim", "富士山", "long"), 0);
    /* unrelated Korean does not find the apple */
    CHECK_EQ_INT(count_hits_with(s, "kim", "자동차", "k1"), -1);
    mem_close(s);
}

static void test_validation(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    mem_input in;
    mem_input_init(&in);
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID); /* no text */
    in.text = "";
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID);
    in.text = " \n\t ";
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID);
    CHECK(strstr(vt_last_error(), "empty") != NULL);
    char *huge = malloc(MEM_TEXT_MAX + 2);
    memset(huge, 'x', MEM_TEXT_MAX + 1);
    huge[MEM_TEXT_MAX + 1] = 0;
    in.text = huge;
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_RANGE);
    huge[MEM_TEXT_MAX] = 0; /* exactly the limit is fine */
    CHECK(!mem_add(s, "u", &in, NULL));
    in.text = "bad \xc3\x28 utf8";
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID);
    CHECK(strstr(vt_last_error(), "UTF-8") != NULL);
    const char *bad_utf8[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "abc\xe2\x82",
                              "\xe0\x80\xaf"};
    for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
        in.text = bad_utf8[i];
        CHECKF(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID, "bad utf-8 %zu accepted", i);
    }
    in.text = "fine";
    const char *bad_ids[] = {"", "has space", "tab\tid", "new\nline", "\x01", "\xff"};
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        in.id = bad_ids[i];
        CHECKF(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID, "bad id %zu accepted", i);
        mem_memory m;
        CHECK(mem_get(s, "u", bad_ids[i], &m) == VT_ERR_INVALID);
        CHECK(mem_get(s, bad_ids[i], "x", &m) == VT_ERR_INVALID); /* as a user too */
    }
    char long_id[MEM_ID_MAX + 2];
    memset(long_id, 'i', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = 0;
    in.id = long_id;
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_RANGE);
    in.id = "ok-유니코드-id";
    CHECK(!mem_add(s, "u", &in, NULL));
    in.id = NULL;
    CHECK(mem_add(s, NULL, &in, NULL) == VT_ERR_INVALID);
    in.kind = (mem_kind)7;
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID);
    in.kind = MEM_KIND_FACT;
    in.event_time = INT64_MAX;
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_RANGE);
    in.event_time = MEM_TIME_NONE;
    float e[3] = {1, NAN, 0}, z[3] = {0, 0, 0};
    in.embedding = e;
    in.n_embd = 3;
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID);
    in.embedding = z;
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID);
    in.n_embd = MEM_EMBD_MAX + 1;
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_RANGE);
    in.embedding = NULL;
    in.n_embd = 0;
    in.speaker = "bad\x01speaker";
    CHECK(mem_add(s, "u", &in, NULL) == VT_ERR_INVALID);
    in.speaker = NULL;
    /* queries */
    mem_query q;
    mem_query_init(&q);
    mem_hit *h;
    size_t nh;
    CHECK(mem_search(s, "u", &q, &h, &nh) == VT_ERR_INVALID);
    q.text = "\xff\xfe";
    CHECK(mem_search(s, "u", &q, &h, &nh) == VT_ERR_INVALID);
    q.text = huge;
    huge[MEM_TEXT_MAX] = 'x';
    CHECK(mem_search(s, "u", &q, &h, &nh) == VT_ERR_RANGE);
    huge[2000] = 0; /* one 2000-letter word: a valid query that finds nothing */
    CHECK(!mem_search(s, "u", &q, &h, &nh));
    mem_hits_free(h, nh);
    q.text = "x";
    q.top_k = MEM_TOP_MAX + 1;
    CHECK(mem_search(s, "u", &q, &h, &nh) == VT_ERR_RANGE);
    q.top_k = 5;
    q.text = "";
    CHECK(!mem_search(s, "u", &q, &h, &nh));
    CHECK_EQ_INT(nh, 0);
    free(huge);
    /* other URIs */
    mem_store *t;
    /* nothing listens there: a clear error, no store */
    t = NULL;
    CHECK(mem_open("postgresql://127.0.0.1:1/db?connect_timeout=2", NULL, &t) != VT_OK && !t);
    CHECK(mem_open("redis://x", NULL, &t) == VT_ERR_UNSUPPORTED);
    CHECK(mem_open("", NULL, &t) == VT_ERR_INVALID);
    char path[600];
    snprintf(path, sizeof path, "%s/not-a-db.txt", test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("this is not an sqlite file, just some text long enough to be looked at......\n", f);
    fclose(f);
    CHECK(mem_open(path, NULL, &t) != VT_OK && t == NULL);
    mem_close(s);
}

/* Every call with another user's id sees nothing and changes nothing;
 * search never returns another user's memory, whatever the query holds. */
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
    mem_memory m;
    CHECK(mem_get(s, "bob", "secret", &m) == VT_ERR_NOT_FOUND);
    CHECK(mem_update(s, "bob", "secret", "overwritten", NULL, 0) == VT_ERR_NOT_FOUND);
    CHECK(mem_delete(s, "bob", "secret") == VT_ERR_NOT_FOUND);
    mem_version *v;
    size_t nv;
    CHECK(mem_history(s, "bob", "secret", &v, &nv) == VT_ERR_NOT_FOUND);
    /* the same id belongs to each user separately */
    CHECK(!mem_update(s, "bob", "shared-id", "bob's edit", NULL, 0));
    CHECK(!mem_get(s, "mallory", "shared-id", &m));
    CHECK(!strcmp(m.text, "mallory's version") && m.version == 1);
    mem_memory_clear(&m);
    CHECK(!mem_history(s, "mallory", "shared-id", &v, &nv));
    CHECK_EQ_INT(nv, 0);
    mem_versions_free(v, nv);
    /* upsert of another user's id creates bob's own */
    mem_input in;
    mem_input_init(&in);
    in.id = "secret";
    in.text = "bob's secret";
    bool created = false;
    CHECK(!mem_upsert(s, "bob", &in, NULL, &created));
    CHECK(created);
    CHECK(!mem_get(s, "mallory", "secret", &m));
    CHECK(!strcmp(m.text, secret));
    mem_memory_clear(&m);
    CHECK(!mem_delete(s, "bob", "secret"));
    CHECK(!mem_get(s, "mallory", "secret", &m));
    mem_memory_clear(&m);
    /* export and list of bob hold nothing of mallory */
    char *j;
    CHECK(!mem_export(s, "bob", &j));
    CHECK(j && !strstr(j, "vault") && !strstr(j, "mallory"));
    free(j);
    mem_memory *items;
    size_t k;
    int64_t next;
    CHECK(!mem_list(s, "bob", 0, 100, &items, &k, &next));
    CHECK_EQ_INT(k, 2);
    for (size_t i = 0; i < k; i++)
        CHECK(!strcmp(items[i].user, "bob"));
    mem_memories_free(items, k);
    /* search: the exact sentence, pieces, and hostile syntax */
    const char *queries[] = {
        secret, "vault code", "Pixel", "7734", "\"vault\"", "vault*", "NEAR(vault code)",
        "vault OR code OR Pixel", "'; DROP TABLE memories; --", "\" OR 1=1 --",
        "user = 'mallory'", "* OR *", "{text}: vault", "vault AND NOT trains", "^vault", "(((",
        "\"\"\"\"", "mallory", "secret", "%", "_", "\\", "NEAR", "OR", "AND", "NOT",
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
        /* and the same query works for mallory (no syntax error) */
        CHECKF(!mem_search(s, "mallory", &q, &h, &nh), "query '%s' for mallory: %s", queries[i],
               vt_last_error());
        mem_hits_free(h, nh);
    }
    /* the exact sentence does find it for its owner */
    CHECK_EQ_INT(count_hits_with(s, "mallory", secret, "secret"), 0);
    /* the memories table is still there */
    CHECK(!mem_get(s, "bob", "b1", &m));
    mem_memory_clear(&m);
    /* forget-user of bob leaves mallory */
    CHECK(!mem_forget_user(s, "bob", NULL));
    int64_t n;
    CHECK(!mem_count(s, "mallory", &n));
    CHECK_EQ_INT(n, 2);
    mem_close(s);
}

static void test_vectors_and_fusion(void)
{
    mem_store *s = fresh(NULL, NULL);
    if (!s)
        return;
    enum { D = 64, N = 300 };
    static float e[N][D];
    uint64_t x = 12345;
    CHECK(!mem_begin(s));
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < D; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            e[i][k] = (float)((x >> 33) % 2000) / 1000.0f - 1.0f;
        }
        mem_input in;
        mem_input_init(&in);
        char id[16], text[64];
        snprintf(id, sizeof id, "v%d", i);
        snprintf(text, sizeof text, "vector memory %d about topic%d", i, i % 7);
        in.id = id;
        in.text = text;
        in.embedding = e[i];
        in.n_embd = D;
        CHECK(!mem_add(s, i < 200 ? "a" : "b", &in, NULL));
    }
    CHECK(!mem_commit(s));
    /* a vector alone: the nearest memory first, only the user's */
    mem_query q;
    mem_query_init(&q);
    mem_hit *h;
    size_t nh;
    for (int t = 0; t < 200; t += 37) {
        float qv[D];
        for (int k = 0; k < D; k++)
            qv[k] = e[t][k] * 2.5f + (k == 3 ? 0.05f : 0); /* scale does not matter */
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
    /* b's vectors are never searched for a */
    q.embedding = e[250];
    q.text = NULL;
    CHECK(!mem_search(s, "a", &q, &h, &nh));
    for (size_t i = 0; i < nh; i++)
        CHECK(strcmp(h[i].m.id, "v250") && !strcmp(h[i].m.user, "a"));
    mem_hits_free(h, nh);
    /* fusion: a memory first in both lists wins over one first in one */
    q.embedding = e[14];
    q.text = "memory 14 topic0";
    CHECK(!mem_search(s, "a", &q, &h, &nh));
    CHECK(nh && !strcmp(h[0].m.id, "v14") && h[0].lexical_rank >= 1 && h[0].vector_rank == 1);
    mem_hits_free(h, nh);
    /* the cache sees writes: a new nearest vector is found at once */
    float nv[D];
    for (int k = 0; k < D; k++)
        nv[k] = k == 0 ? 1.0f : 0.0f;
    mem_input in;
    mem_input_init(&in);
    in.id = "axis";
    in.text = "the x axis";
    in.embedding = nv;
    in.n_embd = D;
    CHECK(!mem_add(s, "a", &in, NULL));
    q.embedding = nv;
    q.text = NULL;
    CHECK(!mem_search(s, "a", &q, &h, &nh));
    CHECK(nh && !strcmp(h[0].m.id, "axis"));
    mem_hits_free(h, nh);
    /* another dimension is simply not comparable */
    float other[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    q.embedding = other;
    q.n_embd = 8;
    CHECK(!mem_search(s, "a", &q, &h, &nh));
    CHECK_EQ_INT(nh, 0);
    mem_hits_free(h, nh);
    mem_close(s);
}

/* The vector cache follows every write of its own handle (adds, updates,
 * deletes, batches committed and rolled back, forget-user) and reloads on
 * another handle's: after each of 150 random operations the top 5 of the
 * writing handle equal those of a handle opened fresh. */
static void test_vector_cache_consistency(void)
{
    char path[512];
    mem_store *a = fresh(NULL, path), *b = NULL;
    if (!a || mem_open(path, NULL, &b)) {
        CHECK(0);
        mem_close(a);
        return;
    }
    enum { D = 16 };
    uint64_t x = 99;
    int next_id = 0, mismatches = 0;
    for (int op = 0; op < 150; op++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int what = (int)((x >> 33) % 10);
        float e[D];
        for (int k = 0; k < D; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            e[k] = (float)((x >> 33) % 2000) / 1000.0f - 1.0f;
        }
        char id[32];
        mem_input in;
        mem_input_init(&in);
        in.embedding = e;
        in.n_embd = D;
        in.text = "a vector memory";
        mem_store *w = what == 9 ? b : a; /* now and then the other handle writes */
        if (what < 4 || next_id < 3) {
            snprintf(id, sizeof id, "v%d", next_id++);
            in.id = id;
            CHECK(!mem_add(w, "u", &in, NULL));
        } else if (what < 6) {
            snprintf(id, sizeof id, "v%d", (int)((x >> 20) % (uint64_t)next_id));
            in.id = id;
            CHECK(!mem_upsert(w, "u", &in, NULL, NULL)); /* a new vector for it */
        } else if (what < 7) {
            snprintf(id, sizeof id, "v%d", (int)((x >> 20) % (uint64_t)next_id));
            vt_err de = mem_delete(w, "u", id);
            CHECK(de == VT_OK || de == VT_ERR_NOT_FOUND);
        } else if (what < 8) {
            /* a batch rolled back leaves no trace */
            CHECK(!mem_begin(a));
            snprintf(id, sizeof id, "gone%d", op);
            in.id = id;
            CHECK(!mem_add(a, "u", &in, NULL));
            CHECK(!mem_rollback(a));
        } else {
            CHECK(!mem_begin(w));
            for (int k = 0; k < 3; k++) {
                snprintf(id, sizeof id, "v%d", next_id++);
                in.id = id;
                e[k] += 0.5f;
                CHECK(!mem_add(w, "u", &in, NULL));
            }
            CHECK(!mem_commit(w));
        }
        if (op == 120) {
            CHECK(!mem_forget_user(a, "u", NULL));
            next_id = 0;
        }
        /* compare a's top 5 with a fresh handle's */
        mem_store *c = NULL;
        CHECK(!mem_open(path, NULL, &c));
        mem_query q;
        mem_query_init(&q);
        q.embedding = e;
        q.n_embd = D;
        q.top_k = 5;
        mem_hit *ha, *hc;
        size_t na, nc;
        CHECK(!mem_search(a, "u", &q, &ha, &na));
        CHECK(!mem_search(c, "u", &q, &hc, &nc));
        bool same = na == nc;
        for (size_t i = 0; same && i < na; i++)
            same = !strcmp(ha[i].m.id, hc[i].m.id);
        mismatches += !same;
        CHECKF(same, "op %d: the cached top 5 differ from a fresh handle's", op);
        mem_hits_free(ha, na);
        mem_hits_free(hc, nc);
        mem_close(c);
        if (mismatches > 3)
            break;
    }
    mem_close(a);
    mem_close(b);
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
    CHECK_EQ_INT(nh, 2); /* the near-identical pair counts once */
    mem_hits_free(h, nh);
    /* with a strong recency weight the newest memory comes first */
    q.text = "Busan";
    q.recency_weight = 5;
    CHECK(!mem_search(s, "u", &q, &h, &nh));
    CHECK(nh >= 1 && strstr(h[0].m.text, "seafood"));
    mem_hits_free(h, nh);
    mem_close(s);
}

static size_t count_words(void *ctx, const char *text, size_t len)
{
    (*(int *)ctx)++;
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += text[i] == ' ' || text[i] == '\n';
    return n;
}

static void test_format_block(void)
{
    mem_hit h[3];
    memset(h, 0, sizeof h);
    char *ids[3] = {"a", "b", "c"};
    char *texts[3] = {"Likes green tea.", "Went hiking\nwith her sister at Bukhansan last spring.",
                      "Has a cat."};
    for (int i = 0; i < 3; i++) {
        h[i].m.id = ids[i];
        h[i].m.text = texts[i];
        h[i].m.kind = MEM_KIND_FACT;
        h[i].m.event_time = MEM_TIME_NONE;
    }
    h[1].m.speaker = "kim";
    h[1].m.event_time = 1683453600000LL;
    char *block;
    const char **used;
    size_t nu;
    int calls = 0;
    CHECK(!mem_format_block("Name: Kim", h, 3, 1000, count_words, &calls, &block, &used, &nu));
    CHECK(calls > 0);
    CHECK_EQ_INT(nu, 3);
    CHECK(block && !strcmp(block, "<memory>\nProfile:\nName: Kim\nMemories (most relevant first):\n"
                                  "- fact: Likes green tea.\n"
                                  "- [2023-05-07] kim: Went hiking with her sister at Bukhansan "
                                  "last spring.\n"
                                  "- fact: Has a cat.\n</memory>\n"));
    CHECK(nu == 3 && !strcmp(used[0], "a") && !strcmp(used[2], "c"));
    free(block);
    free(used);
    /* a tight budget: the long one is passed over, the short ones fit */
    CHECK(!mem_format_block(NULL, h, 3, 16, count_words, &calls, &block, &used, &nu));
    CHECK_EQ_INT(nu, 2);
    CHECK(nu == 2 && !strcmp(used[0], "a") && !strcmp(used[1], "c"));
    CHECK(block && !strstr(block, "hiking") && !strstr(block, "Profile"));
    free(block);
    free(used);
    /* nothing fits: an empty block */
    CHECK(!mem_format_block("Name: Kim", h, 3, 1, count_words, &calls, &block, &used, &nu));
    CHECK(nu == 0 && block && !*block && !used);
    free(block);
    /* default counter */
    CHECK(!mem_format_block(NULL, h, 1, 100, NULL, NULL, &block, &used, &nu));
    CHECK(nu == 1 && strstr(block, "Likes green tea"));
    free(block);
    free(used);
}

/* A store written at schema version 1 (as an older build left it: its SQL,
 * rows with their index text, FTS5 kept by its triggers) is migrated when
 * this build opens it, every memory reindexed; a file from a newer build is
 * refused. */
static void test_migrations(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/v1/store.db", test_tmpdir());
    char dir[520];
    snprintf(dir, sizeof dir, "%s/v1", test_tmpdir());
    mkdir(dir, 0700);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, mem_sqlite_migration_sql(1), NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "INSERT INTO memories(user, id, text, kind, conversation, msg_index, "
                       "created, updated, body, ctx) VALUES "
                       "('u', 'old1', 'written by the old build about llamas', 1, NULL, NULL, 1, 1, "
                       "'written by the old build about llamas', ''),"
                       "('u', 't0', 'we talked about alpacas', 0, 'c', 0, 2, 2, 'we talked about alpacas', ''),"
                       "('u', 't1', 'and then about vicunas', 0, 'c', 1, 3, 3, 'and then about vicunas', ''),"
                       "('w', 'old1', 'another user''s llamas', 1, NULL, NULL, 4, 4, 'x', '');"
                       "INSERT INTO profiles VALUES ('u', 'old profile', 1);",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    mem_store *s = NULL;
    CHECK(!mem_open(path, NULL, &s));
    if (!s)
        return;
    CHECK_EQ_INT(mem_store_schema_version(s), mem_schema_version());
    mem_memory m;
    CHECK(!mem_get(s, "u", "old1", &m));
    CHECK(m.text && !strcmp(m.text, "written by the old build about llamas") && m.version == 1);
    mem_memory_clear(&m);
    char *p;
    CHECK(!mem_profile_get(s, "u", &p));
    CHECK(p && !strcmp(p, "old profile"));
    free(p);
    /* reindexed, with the per-user index and neighbouring turns */
    CHECK_EQ_INT(count_hits_with(s, "u", "llamas", "old1"), 0);
    CHECK_EQ_INT(count_hits_with(s, "u", "vicunas", "t0"), 1); /* through its neighbour */
    CHECK_EQ_INT(count_hits_with(s, "w", "llamas", "old1"), 0);
    CHECK(!mem_update(s, "u", "old1", "updated after migration", NULL, 0));
    mem_version *v;
    size_t nv;
    CHECK(!mem_history(s, "u", "old1", &v, &nv));
    CHECK(nv == 1 && !strcmp(v[0].text, "written by the old build about llamas"));
    mem_versions_free(v, nv);
    CHECK_EQ_INT(count_hits_with(s, "u", "llamas", "old1"), -1);
    mem_close(s);
    /* reopening is a no-op */
    CHECK(!mem_open(path, NULL, &s));
    CHECK_EQ_INT(mem_store_schema_version(s), mem_schema_version());
    CHECK_EQ_INT(count_hits_with(s, "u", "migration", "old1"), 0);
    mem_close(s);
    /* an early build's schema 2 (history, but schema 1's index) gets the
     * index layout at open */
    char early[600];
    snprintf(early, sizeof early, "%s/v1/early.db", test_tmpdir());
    CHECK(sqlite3_open(early, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, mem_sqlite_migration_sql(1), NULL, NULL, NULL) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "ALTER TABLE memories ADD COLUMN version INTEGER NOT NULL DEFAULT 1;"
                       "CREATE TABLE history(hid INTEGER PRIMARY KEY, seq INTEGER NOT NULL "
                       "REFERENCES memories(seq) ON DELETE CASCADE, user TEXT NOT NULL, version "
                       "INTEGER NOT NULL, text TEXT NOT NULL, written INTEGER NOT NULL);"
                       "UPDATE schema_version SET version = 2;"
                       "INSERT INTO memories(user, id, text, kind, created, updated, body, ctx) "
                       "VALUES ('u', 'e1', 'early guanacos', 1, 1, 1, 'early guanacos', '');",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(!mem_open(early, NULL, &s));
    if (s) {
        CHECK_EQ_INT(count_hits_with(s, "u", "guanacos", "e1"), 0);
        CHECK(!add(s, "u", "e2", "later guanacos"));
        CHECK_EQ_INT(count_hits_with(s, "u", "later", "e2"), 0);
        mem_close(s);
    }
    /* a newer build's file */
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    s = NULL;
    CHECK(mem_open(path, NULL, &s) == VT_ERR_UNSUPPORTED && !s);
    CHECK(strstr(vt_last_error(), "newer") && strstr(vt_last_error(), "99"));
    /* an SQLite file that is not a store */
    char other[600];
    snprintf(other, sizeof other, "%s/other.db", test_tmpdir());
    CHECK(sqlite3_open(other, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(mem_open(other, NULL, &s) == VT_ERR_FORMAT);
}

static void test_durability_settings(void)
{
    char path[512];
    mem_store *s = fresh(NULL, path);
    if (!s)
        return;
    CHECK(!add(s, "u", "a", "x marks the spot"));
    mem_close(s);
    /* read-only: reads and searches, refuses writes with a clear error */
    mem_options ro = {.read_only = true};
    CHECK(!mem_open(path, &ro, &s));
    if (s) {
        mem_memory m;
        CHECK(!mem_get(s, "u", "a", &m));
        mem_memory_clear(&m);
        CHECK_EQ_INT(count_hits_with(s, "u", "spot", "a"), 0);
        CHECK(add(s, "u", "b", "y") == VT_ERR_IO);
        CHECK(strstr(vt_last_error(), "readonly") || strstr(vt_last_error(), "read-only"));
        CHECK(mem_profile_set(s, "u", "p") == VT_ERR_IO);
        mem_close(s);
    }
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such-store.db", test_tmpdir());
    CHECK(mem_open(missing, &ro, &s) != VT_OK);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "wal"));
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "ok"));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(void)
{
    RUN_TEST(test_times);
    RUN_TEST(test_add_get_update_history);
    RUN_TEST(test_paging_and_count);
    RUN_TEST(test_profile_export_forget);
    RUN_TEST(test_turns_and_context);
    RUN_TEST(test_korean_and_cjk);
    RUN_TEST(test_validation);
    RUN_TEST(test_isolation);
    RUN_TEST(test_vectors_and_fusion);
    RUN_TEST(test_vector_cache_consistency);
    RUN_TEST(test_dedup_and_recency);
    RUN_TEST(test_format_block);
    RUN_TEST(test_migrations);
    RUN_TEST(test_durability_settings);
    return test_finish("test_memory");
}
