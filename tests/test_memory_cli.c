/*
 * test_memory_cli.c - `vitamin memory` as the recall benchmark and a user
 * meet it: import of a JSONL file (given ids kept, an existing id updated, bad
 * lines named with their line number and a non-zero exit, the rest kept),
 * search with --json (one object) and --queries (one object per line, in
 * order, an error line for a bad one), list/get/update/delete/export/
 * forget-user/profile, --help for each, usage errors (exit 2), failures
 * (exit 1), users kept apart, and the default store under $XDG_DATA_HOME.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test.h"

static char out_path[600], err_path[600], db[600];

/* Runs `[ENV] vitamin memory ARGS`, capturing stdout/stderr; the exit status. */
static int vm_env(const char *env, const char *args)
{
    char cmd[8192];
    snprintf(out_path, sizeof out_path, "%s/out.txt", test_tmpdir());
    snprintf(err_path, sizeof err_path, "%s/err.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s %s memory %s >%s 2>%s", env ? env : "", test_vitamin_bin(), args,
             out_path, err_path);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static int vm(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int vm(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return vm_env(NULL, args);
}

static char *out(void)
{
    char *s = test_read_file(out_path, NULL);
    return s ? s : strdup("");
}

static bool err_has(const char *needle)
{
    char *s = test_read_file(err_path, NULL);
    bool ok = s && strstr(s, needle);
    free(s);
    return ok;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* the ids of a {"results": [...]} line */
static int ids_of(const char *line, char ids[][64], int max)
{
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    json_t *r = json_object_get(j, "results");
    int n = 0;
    for (size_t i = 0; r && i < json_array_size(r) && n < max; i++) {
        const char *id = json_string_value(json_object_get(json_array_get(r, i), "id"));
        snprintf(ids[n++], 64, "%s", id ? id : "?");
    }
    CHECKF(json_is_array(r), "not a results object: %.200s", line);
    json_decref(j);
    return n;
}

static void test_import_and_search(void)
{
    if (!test_need_vitamin())
        return;
    snprintf(db, sizeof db, "%s/cli.db", test_tmpdir());
    char jsonl[700], queries[700];
    snprintf(jsonl, sizeof jsonl, "%s/turns.jsonl", test_tmpdir());
    snprintf(queries, sizeof queries, "%s/q.txt", test_tmpdir());
    write_file(jsonl,
               "{\"id\": \"D1:1\", \"text\": \"I adopted a beagle named Ranger.\", \"speaker\": "
               "\"Mia\", \"time\": \"2023-05-07T10:00:00Z\", \"session\": \"D1\"}\n"
               "{\"id\": \"D1:2\", \"text\": \"Cute! I have been learning the cello.\", "
               "\"speaker\": \"Jo\", \"time\": \"2023-05-07T10:01:00Z\", \"session\": \"D1\"}\n"
               "\n"
               "{\"id\": \"D2:1\", \"text\": \"어제 시장에서 사과를 샀어요.\", \"speaker\": \"Mia\", "
               "\"time\": \"2023-05-09T09:00:00Z\", \"session\": \"D2\"}\n"
               "{\"text\": \"a line without an id\"}\n"
               "not json at all\n"
               "{\"id\": \"bad id\", \"text\": \"spaces in the id\"}\n"
               "{\"id\": \"D9:9\", \"text\": \"bad time\", \"time\": \"yesterday\"}\n");
    CHECK_EQ_INT(vm("--db %s --user mia import %s", db, jsonl), 1); /* 3 bad lines */
    CHECK(err_has(":6:") && err_has(":7:") && err_has(":8:") && err_has("4 added"));
    /* a given id is the id from then on; importing it again updates */
    write_file(jsonl, "{\"id\": \"D1:2\", \"text\": \"Cute! I have been learning the violin.\", "
                      "\"speaker\": \"Jo\", \"session\": \"D1\"}\n");
    CHECK_EQ_INT(vm("--db %s --user mia import %s", db, jsonl), 0);
    CHECK(err_has("1 updated"));
    CHECK_EQ_INT(vm("--db %s --user mia get D1:2", db), 0);
    char *o = out();
    CHECK(strstr(o, "violin") && strstr(o, "cello") && strstr(o, "\"version\":2"));
    free(o);
    /* another user imports the same ids: their own */
    write_file(jsonl, "{\"id\": \"D1:1\", \"text\": \"Jo's own beagle story\"}\n");
    CHECK_EQ_INT(vm("--db %s --user jo import %s", db, jsonl), 0);

    CHECK_EQ_INT(vm("--db %s --user mia search --top 3 --json 'What is the name of the beagle?'", db), 0);
    o = out();
    char ids[10][64];
    int n = ids_of(o, ids, 10);
    CHECK(n >= 1 && !strcmp(ids[0], "D1:1"));
    CHECK(strstr(o, "\"score\"") && strstr(o, "\"text\"") && !strstr(o, "Jo's own"));
    free(o);
    /* batch: one line per query, in order; a bad line gets an error line */
    write_file(queries, "\"사과\"\n\"violin\"\n42\n\"\\\"; DROP TABLE memories; -- NEAR OR *\"\n"
                        "{\"query\": \"beagle\"}\n");
    CHECK_EQ_INT(vm("--db %s --user mia search --top 2 --json --queries %s", db, queries), 1);
    o = out();
    char *lines[8] = {0};
    int nl = 0;
    for (char *p = strtok(o, "\n"); p && nl < 8; p = strtok(NULL, "\n"))
        lines[nl++] = p;
    CHECK_EQ_INT(nl, 5);
    if (nl == 5) {
        CHECK(ids_of(lines[0], ids, 10) >= 1 && !strcmp(ids[0], "D2:1"));
        CHECK(ids_of(lines[1], ids, 10) >= 1 && !strcmp(ids[0], "D1:2"));
        CHECK(strstr(lines[2], "\"error\"") != NULL);
        CHECK(ids_of(lines[3], ids, 10) >= 0);
        CHECK(ids_of(lines[4], ids, 10) >= 1 && !strcmp(ids[0], "D1:1"));
    }
    free(o);
    CHECK(err_has(":3:"));
    /* modes */
    CHECK_EQ_INT(vm("--db %s --user mia search --mode bm25 --json beagle", db), 0);
    CHECK_EQ_INT(vm("--db %s --user mia search --mode vector --json beagle", db), 0);
    o = out();
    CHECK(strstr(o, "{\"results\":[]}") != NULL);
    free(o);
    CHECK_EQ_INT(vm("--db %s --user mia search --mode fuzzy beagle", db), 2);
    /* plain text output */
    CHECK_EQ_INT(vm("--db %s --user mia search violin", db), 0);
    o = out();
    CHECK(strstr(o, "D1:2") && strstr(o, "violin"));
    free(o);
}

static void test_other_commands(void)
{
    if (!test_need_vitamin())
        return;
    char d2[700];
    snprintf(d2, sizeof d2, "%s/other.db", test_tmpdir());
    CHECK_EQ_INT(vm("--db %s --user kim add --kind preference --id tea 'Likes green tea'", d2), 0);
    char *o = out();
    CHECK(!strcmp(o, "tea\n"));
    free(o);
    CHECK_EQ_INT(vm("--db %s --user kim add 'Lives in Seoul'", d2), 0);
    CHECK_EQ_INT(vm("--db %s --user kim add --id tea 'again'", d2), 1); /* exists */
    CHECK_EQ_INT(vm("--db %s --user kim update tea 'Likes black tea'", d2), 0);
    CHECK_EQ_INT(vm("--db %s --user lee update tea 'not hers'", d2), 1);
    CHECK(err_has("no memory"));
    CHECK_EQ_INT(vm("--db %s --user kim list --json --limit 1", d2), 0);
    o = out();
    CHECK(strstr(o, "black tea") && strstr(o, "\"next\":") && !strstr(o, "\"next\":null"));
    free(o);
    CHECK_EQ_INT(vm("--db %s --user kim profile --set 'Name: Kim'", d2), 0);
    CHECK_EQ_INT(vm("--db %s --user kim profile", d2), 0);
    o = out();
    CHECK(!strcmp(o, "Name: Kim\n"));
    free(o);
    CHECK_EQ_INT(vm("--db %s --user kim export", d2), 0);
    o = out();
    json_error_t je;
    json_t *j = json_loads(o, 0, &je);
    CHECK(j && json_array_size(json_object_get(j, "memories")) == 2);
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "profile")), "Name: Kim"));
    json_decref(j);
    free(o);
    CHECK_EQ_INT(vm("--db %s --user lee export", d2), 0);
    o = out();
    CHECK(strstr(o, "\"memories\":[]") != NULL);
    free(o);
    CHECK_EQ_INT(vm("--db %s --user kim delete tea", d2), 0);
    CHECK_EQ_INT(vm("--db %s --user kim delete tea", d2), 1);
    CHECK_EQ_INT(vm("--db %s --user kim forget-user", d2), 0);
    CHECK(err_has("deleted 1"));
    CHECK_EQ_INT(vm("--db %s --user kim list", d2), 0);
    o = out();
    CHECK(!*o);
    free(o);
    /* usage errors and bad input */
    CHECK_EQ_INT(vm("--db %s", d2), 2);
    CHECK_EQ_INT(vm("--db %s frobnicate", d2), 2);
    CHECK_EQ_INT(vm("--db %s add", d2), 2);
    CHECK_EQ_INT(vm("--db %s add a b", d2), 2);
    CHECK_EQ_INT(vm("--db %s --nope list", d2), 2);
    CHECK_EQ_INT(vm("--db %s list --limit 0", d2), 2);
    CHECK_EQ_INT(vm("--db %s add --time yesterday x", d2), 2);
    CHECK_EQ_INT(vm("--db %s add --kind opinion x", d2), 2);
    CHECK_EQ_INT(vm("--db %s search", d2), 2);
    CHECK_EQ_INT(vm("--db %s --user 'a b' list", d2), 1);
    CHECK_EQ_INT(vm("--db %s add ''", d2), 1);
    CHECK_EQ_INT(vm("--db %s add \"$(printf '\\377\\376')\"", d2), 1);
    CHECK_EQ_INT(vm("--db %s import /nonexistent/file.jsonl", d2), 1);
    CHECK_EQ_INT(vm("--db postgresql://127.0.0.1:1/x?connect_timeout=2 list"), 1);
    CHECK_EQ_INT(vm("--db /proc/nope/x.db list"), 1);
    /* --help everywhere */
    const char *cmds[] = {"", "add", "import", "search", "list", "get", "update", "delete",
                          "export", "forget-user", "profile"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        CHECKF(vm("%s --help", cmds[i]) == 0, "memory %s --help", cmds[i]);
        o = out();
        CHECK(strstr(o, "usage: vitamin memory") != NULL);
        free(o);
    }
}

static void test_default_path(void)
{
    if (!test_need_vitamin())
        return;
    char env[800];
    snprintf(env, sizeof env, "XDG_DATA_HOME=%s/xdg", test_tmpdir());
    CHECK_EQ_INT(vm_env(env, "--user u add 'stored in the default place'"), 0);
    char path[800];
    snprintf(path, sizeof path, "%s/xdg/vitamin/memory.db", test_tmpdir());
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "%s missing", path);
    if (f)
        fclose(f);
    snprintf(env, sizeof env, "XDG_DATA_HOME= HOME=%s/home", test_tmpdir());
    CHECK_EQ_INT(vm_env(env, "--user u add 'stored under HOME'"), 0);
    snprintf(path, sizeof path, "%s/home/.local/share/vitamin/memory.db", test_tmpdir());
    f = fopen(path, "rb");
    CHECKF(f != NULL, "%s missing", path);
    if (f)
        fclose(f);
}

int main(void)
{
    RUN_TEST(test_import_and_search);
    RUN_TEST(test_other_commands);
    RUN_TEST(test_default_path);
    return test_finish("test_memory_cli");
}
