/*
 * cmd_memory.c - `vitamin memory`: the long-term memory store from the
 * command line: add, import (JSONL), search (one query or a file of them,
 * one open store for all), list, get, update, delete, export, forget-user
 * and the profile block, for one user at a time. Arguments and printing
 * only; the store is memory/.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "memory/memory.h"
#include "util/util.h"

static void help(FILE *out)
{
    fprintf(out,
            "usage: vitamin memory [--db URI] [--user U] COMMAND [options]\n\n"
            "The long-term memory store: what each user said and what is known about them.\n"
            "Every command acts on one user's memories only (--user, default \"default\").\n\n"
            "commands:\n"
            "  add TEXT [--id ID] [--kind K] [--speaker S] [--time T] [--session S]\n"
            "                        add a memory (kind: message, fact, preference, event;\n"
            "                        default fact); prints its id\n"
            "  import FILE.jsonl     lines {\"id\", \"text\", \"speaker\", \"time\", \"session\"}\n"
            "                        (also \"kind\", \"embedding\"); a given id is kept, an id\n"
            "                        that exists is updated; '-' reads stdin\n"
            "  search [--top K] [--json] [--mode hybrid|bm25|vector] [--context N]\n"
            "         [--recency W] QUERY\n"
            "  search [--top K] --json [--mode M] --queries FILE\n"
            "                        the best memories for QUERY; with --queries, one JSON\n"
            "                        string (or {\"query\", \"embedding\"}) per line, one result\n"
            "                        line {\"results\": [...]} per query, in order. --mode:\n"
            "                        hybrid (default: full text and, for a query with an\n"
            "                        embedding, cosine similarity, fused), bm25 (full text\n"
            "                        only), vector (cosine only: nothing without an embedding);\n"
            "                        --context N: N neighbouring turns each side (default 1)\n"
            "  list [--limit N] [--after CURSOR] [--json]\n"
            "                        a page of memories, oldest first\n"
            "  get ID                one memory with its history (JSON)\n"
            "  update ID TEXT        replace its text (the old one goes to its history)\n"
            "  delete ID             delete one memory\n"
            "  export                all of the user's memories and profile (JSON)\n"
            "  forget-user           delete everything of the user\n"
            "  profile [--set TEXT | --set-file FILE]\n"
            "                        print (or set) the user's profile block\n\n"
            "options:\n"
            "  --db URI    the store: an SQLite file (default $XDG_DATA_HOME/vitamin/memory.db,\n"
            "              else ~/.local/share/vitamin/memory.db) or postgresql://USER@HOST/DB\n"
            "  --user U    the user (default \"default\")\n"
            "  -h, --help  this help (also after a command)\n\n"
            "Exit status: 0 done, 1 failed (not found, bad input line, store error), 2 usage.\n");
}

#define ERR(...) (fprintf(stderr, "vitamin memory: " __VA_ARGS__), fputc('\n', stderr))

typedef struct {
    const char *db, *user, *cmd;
    const char *pos[2];
    int npos;
    const char *id, *kind, *speaker, *time, *session, *queries, *set, *set_file, *after, *mode;
    long top, limit, context;
    double recency;
    bool json;
} args;

static int parse_args(int argc, char **argv, args *a)
{
    a->top = 10;
    a->limit = 100;
    a->context = 0;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            help(stdout);
            return 0;
        }
        const char **sv = !strcmp(o, "--db")         ? &a->db
                          : !strcmp(o, "--user")     ? &a->user
                          : !strcmp(o, "--id")       ? &a->id
                          : !strcmp(o, "--kind")     ? &a->kind
                          : !strcmp(o, "--speaker")  ? &a->speaker
                          : !strcmp(o, "--time")     ? &a->time
                          : !strcmp(o, "--session")  ? &a->session
                          : !strcmp(o, "--queries")  ? &a->queries
                          : !strcmp(o, "--set")      ? &a->set
                          : !strcmp(o, "--set-file") ? &a->set_file
                          : !strcmp(o, "--after")    ? &a->after
                          : !strcmp(o, "--mode")     ? &a->mode
                                                     : NULL;
        if (sv) {
            if (!cli_need_value(argc, argv, i))
                return 2;
            *sv = argv[++i];
        } else if (!strcmp(o, "--top")) {
            if (!cli_need_value(argc, argv, i) ||
                !cli_parse_int("--top", argv[++i], 1, MEM_TOP_MAX, &a->top))
                return 2;
        } else if (!strcmp(o, "--limit")) {
            if (!cli_need_value(argc, argv, i) ||
                !cli_parse_int("--limit", argv[++i], 1, MEM_LIST_MAX, &a->limit))
                return 2;
        } else if (!strcmp(o, "--context")) {
            if (!cli_need_value(argc, argv, i) ||
                !cli_parse_int("--context", argv[++i], 0, 16, &a->context))
                return 2;
        } else if (!strcmp(o, "--recency")) {
            if (!cli_need_value(argc, argv, i) || !cli_parse_float("--recency", argv[++i], &a->recency))
                return 2;
            if (a->recency < 0 || a->recency > 100) {
                ERR("--recency: expected 0..100");
                return 2;
            }
        } else if (!strcmp(o, "--json")) {
            a->json = true;
        } else if (o[0] == '-' && o[1]) {
            ERR("unknown option '%s' (see --help)", o);
            return 2;
        } else if (!a->cmd) {
            a->cmd = o;
        } else if (a->npos < 2) {
            a->pos[a->npos++] = o;
        } else {
            ERR("%s: unexpected argument '%s' (see --help)", a->cmd, o);
            return 2;
        }
    }
    return -1;
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *memory_json(const mem_memory *m)
{
    return json_pack("{s:s,s:s,s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:i}", "id", m->id, "text", m->text,
                     "kind", mem_kind_name(m->kind), "speaker", jstr(m->speaker), "session",
                     jstr(m->conversation), "index",
                     m->message_index >= 0 ? json_integer(m->message_index) : json_null(), "time",
                     mem_time_json(m->event_time), "created", mem_time_json(m->created), "updated",
                     mem_time_json(m->updated), "version", (int)m->version);
}

/* prints j on one line and frees it */
static void print_json(json_t *j)
{
    if (!j) {
        printf("null\n");
        return;
    }
    json_dumpf(j, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(j);
}

/* a JSON array of numbers -> floats (malloc'd) */
static bool read_embedding(json_t *v, float **out, int32_t *n, char *err, size_t errn)
{
    *out = NULL;
    *n = 0;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > MEM_EMBD_MAX) {
        snprintf(err, errn, "\"embedding\": expected an array of 1..%d numbers", MEM_EMBD_MAX);
        return false;
    }
    float *e = malloc(sizeof *e * json_array_size(v));
    if (!e) {
        snprintf(err, errn, "out of memory");
        return false;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_number(x)) {
            snprintf(err, errn, "\"embedding\": element %zu is not a number", i);
            free(e);
            return false;
        }
        e[i] = (float)json_number_value(x);
    }
    *out = e;
    *n = (int32_t)json_array_size(v);
    return true;
}

static const char *opt_str(json_t *o, const char *key, bool *bad)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_integer(v) && !strcmp(key, "session"))
        return NULL; /* handled by the caller */
    if (!json_is_string(v))
        *bad = true;
    return json_string_value(v);
}

static int cmd_import(mem_store *s, const char *user, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        ERR("import: %s: %s", path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, added = 0, updated = 0, failed = 0, in_batch = 0;
    double t0 = vt_now();
    vt_err e = VT_OK;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (!len)
            continue;
        if (!in_batch && (e = mem_begin(s))) {
            ERR("import: %s", vt_last_error());
            break;
        }
        in_batch++;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &je);
        char err[256] = "";
        bool bad = false;
        mem_input in;
        mem_input_init(&in);
        float *emb = NULL;
        char session_num[32];
        if (!o || !json_is_object(o)) {
            snprintf(err, sizeof err, "not a JSON object%s%s", o ? "" : ": ", o ? "" : je.text);
        } else {
            in.id = opt_str(o, "id", &bad);
            in.text = opt_str(o, "text", &bad);
            in.speaker = opt_str(o, "speaker", &bad);
            in.conversation = opt_str(o, "session", &bad);
            json_t *sess = json_object_get(o, "session");
            if (json_is_integer(sess)) {
                snprintf(session_num, sizeof session_num, "%lld",
                         (long long)json_integer_value(sess));
                in.conversation = session_num;
            }
            const char *t = opt_str(o, "time", &bad), *k = opt_str(o, "kind", &bad);
            json_t *idx = json_object_get(o, "index");
            in.kind = in.conversation || in.speaker ? MEM_KIND_MESSAGE : MEM_KIND_FACT;
            if (bad)
                snprintf(err, sizeof err, "id, text, speaker, time, session and kind must be strings");
            else if (!in.text)
                snprintf(err, sizeof err, "\"text\" is missing");
            else if (k && !mem_kind_parse(k, &in.kind))
                snprintf(err, sizeof err, "\"kind\": '%.40s' is not a kind", k);
            else if (t && mem_time_parse(t, &in.event_time))
                snprintf(err, sizeof err, "%s", vt_last_error());
            else if (idx && !json_is_null(idx) &&
                     (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
                      json_integer_value(idx) > INT32_MAX))
                snprintf(err, sizeof err, "\"index\": expected a non-negative integer");
            else if (!read_embedding(json_object_get(o, "embedding"), &emb, &in.n_embd, err,
                                     sizeof err))
                ;
            else {
                if (idx && json_is_integer(idx))
                    in.message_index = json_integer_value(idx);
                in.embedding = emb;
                bool created;
                if (mem_upsert(s, user, &in, NULL, &created))
                    snprintf(err, sizeof err, "%s", vt_last_error());
                else if (created)
                    added++;
                else
                    updated++;
            }
        }
        if (*err) {
            ERR("import: %s:%ld: %s", path, lineno, err);
            failed++;
        }
        free(emb);
        json_decref(o);
        if (in_batch >= 5000) {
            if ((e = mem_commit(s))) {
                ERR("import: %s", vt_last_error());
                break;
            }
            in_batch = 0;
        }
    }
    if (!e && in_batch && (e = mem_commit(s)))
        ERR("import: %s", vt_last_error());
    if (e && in_batch)
        mem_rollback(s);
    if (!e && ferror(f)) {
        ERR("import: %s: read error", path);
        e = VT_ERR_IO;
    }
    free(line);
    if (f != stdin)
        fclose(f);
    double dt = vt_now() - t0;
    fprintf(stderr, "vitamin memory: imported %ld (%ld added, %ld updated, %ld failed) in %.2f s\n",
            added + updated, added, updated, failed, dt);
    return e || failed ? 1 : 0;
}

static json_t *hit_json(const mem_hit *h)
{
    json_t *o = memory_json(&h->m);
    json_object_set_new(o, "score", json_real(h->score));
    json_object_set_new(o, "lexical_rank", json_integer(h->lexical_rank));
    json_object_set_new(o, "vector_rank", json_integer(h->vector_rank));
    if (h->vector_rank)
        json_object_set_new(o, "similarity", json_real(h->similarity));
    json_t *ctx = json_array();
    for (size_t i = 0; i < h->n_context; i++)
        json_array_append_new(ctx, json_pack("{s:s,s:o,s:o,s:s}", "id", h->context[i].id,
                                             "speaker", jstr(h->context[i].speaker), "index",
                                             json_integer(h->context[i].message_index), "text",
                                             h->context[i].text));
    json_object_set_new(o, "context", ctx);
    return o;
}

static vt_err search_one(mem_store *s, const char *user, const args *a, const char *text,
                         const float *emb, int32_t n_embd)
{
    mem_query q;
    mem_query_init(&q);
    bool bm25 = a->mode && !strcmp(a->mode, "bm25"), vector = a->mode && !strcmp(a->mode, "vector");
    q.text = vector ? NULL : text;
    q.embedding = bm25 ? NULL : emb;
    q.n_embd = bm25 ? 0 : n_embd;
    q.top_k = (int32_t)a->top;
    q.context = a->context ? (int32_t)a->context : 1;
    q.recency_weight = a->recency;
    mem_hit *h = NULL;
    size_t n = 0;
    vt_err e = q.text || q.embedding ? mem_search(s, user, &q, &h, &n) : VT_OK;
    if (e)
        return e;
    if (a->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, hit_json(&h[i]));
        print_json(json_pack("{s:o}", "results", arr));
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%.4f  %s  %s\n", h[i].score, h[i].m.id, h[i].m.text);
    }
    mem_hits_free(h, n);
    return VT_OK;
}

static int cmd_search(mem_store *s, const char *user, const args *a)
{
    if (a->mode && strcmp(a->mode, "hybrid") && strcmp(a->mode, "bm25") &&
        strcmp(a->mode, "vector")) {
        ERR("search: --mode '%s': expected hybrid, bm25 or vector", a->mode);
        return 2;
    }
    if (!a->queries) {
        if (a->npos != 1) {
            ERR("search: expected one QUERY or --queries FILE (see --help)");
            return 2;
        }
        if (search_one(s, user, a, a->pos[0], NULL, 0)) {
            ERR("search: %s", vt_last_error());
            return 1;
        }
        return 0;
    }
    if (a->npos) {
        ERR("search: give QUERY or --queries FILE, not both");
        return 2;
    }
    if (!a->json) {
        ERR("search --queries needs --json (one result line per query)");
        return 2;
    }
    FILE *f = strcmp(a->queries, "-") ? fopen(a->queries, "rb") : stdin;
    if (!f) {
        ERR("search: %s: %s", a->queries, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, failed = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &je);
        const char *text = NULL;
        float *emb = NULL;
        int32_t n_embd = 0;
        char err[256] = "";
        if (json_is_string(j)) {
            text = json_string_value(j);
        } else if (json_is_object(j) && json_is_string(json_object_get(j, "query"))) {
            text = json_string_value(json_object_get(j, "query"));
            read_embedding(json_object_get(j, "embedding"), &emb, &n_embd, err, sizeof err);
        } else {
            snprintf(err, sizeof err, "expected a JSON string (or {\"query\": ...})");
        }
        if (!*err && search_one(s, user, a, text, emb, n_embd))
            snprintf(err, sizeof err, "%s", vt_last_error());
        if (*err) {
            ERR("search: %s:%ld: %s", a->queries, lineno, err);
            print_json(json_pack("{s:[],s:s}", "results", "error", err));
            failed++;
        }
        fflush(stdout);
        free(emb);
        json_decref(j);
    }
    free(line);
    if (f != stdin)
        fclose(f);
    return failed ? 1 : 0;
}

static int cmd_list(mem_store *s, const char *user, const args *a)
{
    long after = 0;
    if (a->after && !cli_parse_int("--after", a->after, 0, LONG_MAX,
                                   &after))
        return 2;
    mem_memory *items;
    size_t n;
    int64_t next;
    if (mem_list(s, user, after, (int32_t)a->limit, &items, &n, &next)) {
        ERR("list: %s", vt_last_error());
        return 1;
    }
    if (a->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, memory_json(&items[i]));
        print_json(json_pack("{s:o,s:o}", "results", arr, "next",
                             next ? json_integer(next) : json_null()));
    } else {
        for (size_t i = 0; i < n; i++)
            printf("%s\t%s\t%s\n", items[i].id, mem_kind_name(items[i].kind), items[i].text);
        if (next)
            fprintf(stderr, "vitamin memory: more: --after %lld\n", (long long)next);
    }
    mem_memories_free(items, n);
    return 0;
}

static int cmd_get(mem_store *s, const char *user, const char *id)
{
    mem_memory m;
    mem_version *v;
    size_t nv;
    if (mem_get(s, user, id, &m)) {
        ERR("get: %s", vt_last_error());
        return 1;
    }
    if (mem_history(s, user, id, &v, &nv)) {
        ERR("get: %s", vt_last_error());
        mem_memory_clear(&m);
        return 1;
    }
    json_t *o = memory_json(&m), *h = json_array();
    for (size_t i = 0; i < nv; i++)
        json_array_append_new(h, json_pack("{s:i,s:s,s:o}", "version", (int)v[i].version, "text",
                                           v[i].text, "written", mem_time_json(v[i].written)));
    json_object_set_new(o, "history", h);
    json_object_set_new(o, "embedding_dimensions", json_integer(m.n_embd));
    print_json(o);
    mem_versions_free(v, nv);
    mem_memory_clear(&m);
    return 0;
}

static int cmd_profile(mem_store *s, const char *user, const args *a)
{
    if (a->set && a->set_file) {
        ERR("profile: give --set or --set-file, not both");
        return 2;
    }
    if (a->set_file) {
        FILE *f = fopen(a->set_file, "rb");
        if (!f) {
            ERR("profile: %s: %s", a->set_file, strerror(errno));
            return 1;
        }
        char *buf = malloc(MEM_PROFILE_MAX + 2);
        size_t n = buf ? fread(buf, 1, MEM_PROFILE_MAX + 1, f) : 0;
        fclose(f);
        if (!buf)
            return 1;
        buf[n] = 0;
        int rc = 0;
        if (strlen(buf) != n) {
            ERR("profile: %s holds a NUL byte", a->set_file);
            rc = 1;
        } else if (mem_profile_set(s, user, buf)) {
            ERR("profile: %s", vt_last_error());
            rc = 1;
        }
        free(buf);
        return rc;
    }
    if (a->set) {
        if (mem_profile_set(s, user, a->set)) {
            ERR("profile: %s", vt_last_error());
            return 1;
        }
        return 0;
    }
    char *t;
    if (mem_profile_get(s, user, &t)) {
        ERR("profile: %s", vt_last_error());
        return 1;
    }
    fputs(t, stdout);
    if (*t && t[strlen(t) - 1] != '\n')
        fputc('\n', stdout);
    free(t);
    return 0;
}

static int run(mem_store *s, const char *user, const args *a)
{
    const char *c = a->cmd;
    int want = !strcmp(c, "add") || !strcmp(c, "import") || !strcmp(c, "get") ||
                       !strcmp(c, "delete")
                   ? 1
               : !strcmp(c, "update") ? 2
                                      : 0;
    if (strcmp(c, "search") && a->npos != want) {
        ERR("%s: expected %d argument%s, got %d (see --help)", c, want, want == 1 ? "" : "s",
            a->npos);
        return 2;
    }
    if (!strcmp(c, "add")) {
        mem_input in;
        mem_input_init(&in);
        in.text = a->pos[0];
        in.id = a->id;
        in.speaker = a->speaker;
        in.conversation = a->session;
        if (a->session)
            in.kind = MEM_KIND_MESSAGE;
        if (a->kind && !mem_kind_parse(a->kind, &in.kind)) {
            ERR("add: --kind '%s': expected message, fact, preference or event", a->kind);
            return 2;
        }
        if (a->time && mem_time_parse(a->time, &in.event_time)) {
            ERR("add: --time: %s", vt_last_error());
            return 2;
        }
        char id[MEM_ID_MAX + 1];
        if (mem_add(s, user, &in, id)) {
            ERR("add: %s", vt_last_error());
            return 1;
        }
        printf("%s\n", id);
        fflush(stdout);
        return 0;
    }
    if (!strcmp(c, "import"))
        return cmd_import(s, user, a->pos[0]);
    if (!strcmp(c, "search"))
        return cmd_search(s, user, a);
    if (!strcmp(c, "list"))
        return cmd_list(s, user, a);
    if (!strcmp(c, "get"))
        return cmd_get(s, user, a->pos[0]);
    if (!strcmp(c, "update")) {
        if (mem_update(s, user, a->pos[0], a->pos[1], NULL, 0)) {
            ERR("update: %s", vt_last_error());
            return 1;
        }
        return 0;
    }
    if (!strcmp(c, "delete")) {
        if (mem_delete(s, user, a->pos[0])) {
            ERR("delete: %s", vt_last_error());
            return 1;
        }
        return 0;
    }
    if (!strcmp(c, "export")) {
        char *j;
        if (mem_export(s, user, &j)) {
            ERR("export: %s", vt_last_error());
            return 1;
        }
        printf("%s\n", j);
        free(j);
        return 0;
    }
    if (!strcmp(c, "forget-user")) {
        int64_t n;
        if (mem_forget_user(s, user, &n)) {
            ERR("forget-user: %s", vt_last_error());
            return 1;
        }
        fprintf(stderr, "vitamin memory: deleted %lld memories of user '%s'\n", (long long)n, user);
        return 0;
    }
    if (!strcmp(c, "profile"))
        return cmd_profile(s, user, a);
    return 2;
}

int cmd_memory(int argc, char **argv)
{
    static const char *const cmds[] = {"add",    "import", "search", "list",        "get",
                                       "update", "delete", "export", "forget-user", "profile"};
    args a = {0};
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    if (!a.cmd) {
        ERR("no command (see --help)");
        return 2;
    }
    bool known = false;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        known |= !strcmp(a.cmd, cmds[i]);
    if (!known) {
        ERR("unknown command '%s' (see --help)", a.cmd);
        return 2;
    }
    const char *user = a.user ? a.user : "default";
    char *dflt = NULL;
    const char *db = a.db;
    if (!db && !(db = dflt = cli_memory_default_db())) {
        ERR("no --db given and neither XDG_DATA_HOME nor HOME is set");
        return 2;
    }
    mem_store *s;
    mem_options opt = {0};
    if (mem_open(db, &opt, &s)) {
        ERR("%s", vt_last_error());
        free(dflt);
        return 1;
    }
    free(dflt);
    rc = run(s, user, &a);
    mem_close(s);
    if (fflush(stdout) || ferror(stdout)) {
        ERR("writing the output failed");
        return 1;
    }
    return rc;
}
