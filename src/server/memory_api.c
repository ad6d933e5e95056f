/*
 * memory_api.c - the /v1/memories API (see memory.c for the routes, who a
 * request acts for, and the shapes): list, add, get, update, delete, delete
 * all, search, export, history and the profile, each answered from the
 * store on the server's thread. Store errors map to HTTP: VT_ERR_NOT_FOUND
 * 404, VT_ERR_INVALID / VT_ERR_RANGE 400 (the store's message names the
 * problem), anything else 500.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"
#include "server/server_int.h"
#include "util/util.h"

static enum MHD_Result store_error(srv_conn *k, vt_err e)
{
    if (e == VT_ERR_NOT_FOUND)
        return srv_send_errorf(k, 404, "not_found_error", NULL, "memory_not_found", "%s",
                               vt_last_error());
    if (e == VT_ERR_INVALID || e == VT_ERR_RANGE)
        return srv_send_errorf(k, 400, "invalid_request_error", NULL, NULL, "%s",
                               vt_last_error());
    return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "memory store: %s",
                           vt_last_error());
}

static json_t *opt_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *memory_json(const mem_memory *m)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_string(m->id));
    json_object_set_new(o, "memory", json_string(m->text));
    json_object_set_new(o, "user_id", json_string(m->user));
    json_object_set_new(o, "kind", json_string(mem_kind_name(m->kind)));
    json_object_set_new(o, "speaker", opt_str(m->speaker));
    json_object_set_new(o, "conversation", opt_str(m->conversation));
    json_object_set_new(o, "message_index",
                        m->message_index >= 0 ? json_integer(m->message_index) : json_null());
    json_object_set_new(o, "event_time", mem_time_json(m->event_time));
    json_object_set_new(o, "created_at", mem_time_json(m->created));
    json_object_set_new(o, "updated_at", mem_time_json(m->updated));
    json_object_set_new(o, "version", json_integer(m->version));
    if (m->n_embd > 0)
        json_object_set_new(o, "embedding_dims", json_integer(m->n_embd));
    return o;
}

static bool str_field(srv_conn *k, const json_t *body, const char *name, const char **out,
                      enum MHD_Result *res)
{
    json_t *v = json_object_get(body, name);
    *out = NULL;
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v)) {
        *res = srv_send_errorf(k, 400, "invalid_request_error", name, NULL, "'%s' must be a string",
                               name);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

/* POST /v1/memories */
static enum MHD_Result add(srv_conn *k, const char *user, json_t *body)
{
    mem_store *st = k->s->mem;
    enum MHD_Result res = MHD_YES;
    json_t *msgs = json_object_get(body, "messages");
    json_t *results = json_array();
    if (!results)
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    const char *text, *id, *kind, *speaker, *time, *conv;
    if (!str_field(k, body, "memory", &text, &res) ||
        (!text && !str_field(k, body, "text", &text, &res)) ||
        !str_field(k, body, "id", &id, &res) || !str_field(k, body, "kind", &kind, &res) ||
        !str_field(k, body, "speaker", &speaker, &res) ||
        !str_field(k, body, "time", &time, &res) ||
        !str_field(k, body, "conversation", &conv, &res)) {
        json_decref(results);
        return res;
    }
    mem_input in;
    mem_input_init(&in);
    in.id = id;
    in.speaker = speaker;
    in.conversation = conv;
    if (kind && !mem_kind_parse(kind, &in.kind)) {
        json_decref(results);
        return srv_send_errorf(k, 400, "invalid_request_error", "kind", NULL,
                               "'kind' must be message, fact, preference or event");
    }
    if (time && mem_time_parse(time, &in.event_time) != VT_OK) {
        json_decref(results);
        return srv_send_errorf(k, 400, "invalid_request_error", "time", NULL,
                               "'time' must be an ISO 8601 time (e.g. 2023-05-07T14:30Z)");
    }
    vt_err e = VT_OK;
    char out_id[MEM_ID_MAX + 1];
    bool created = true;
    if (text) {
        in.text = text;
        e = id ? mem_upsert(st, user, &in, out_id, &created) : mem_add(st, user, &in, out_id);
        if (e == VT_OK)
            json_array_append_new(results,
                                  json_pack("{s:s,s:s,s:s}", "id", out_id, "memory", text, "event",
                                            created ? "ADD" : "UPDATE"));
    } else if (json_is_array(msgs) && json_array_size(msgs) > 0) {
        /* each message a `message` memory of its speaker (the role) */
        if ((e = mem_begin(st)) == VT_OK) {
            size_t i;
            json_t *m;
            json_array_foreach(msgs, i, m) {
                const char *role = json_string_value(json_object_get(m, "role"));
                const char *content = json_string_value(json_object_get(m, "content"));
                if (!role || !content) {
                    mem_rollback(st);
                    json_decref(results);
                    return srv_send_errorf(k, 400, "invalid_request_error", "messages", NULL,
                                           "messages[%zu] needs a string role and content", i);
                }
                mem_input mi = in;
                mi.id = NULL;
                mi.text = content;
                mi.kind = MEM_KIND_MESSAGE;
                mi.speaker = role;
                if ((e = mem_add(st, user, &mi, out_id)) != VT_OK)
                    break;
                json_array_append_new(results, json_pack("{s:s,s:s,s:s}", "id", out_id, "memory",
                                                         content, "event", "ADD"));
            }
            if (e == VT_OK)
                e = mem_commit(st);
            else
                mem_rollback(st);
        }
    } else {
        json_decref(results);
        return srv_send_errorf(k, 400, "invalid_request_error", "memory", NULL,
                               "give the memory's text as 'memory' (or 'text'), or 'messages'");
    }
    if (e != VT_OK) {
        json_decref(results);
        return store_error(k, e);
    }
    return srv_send_json(k, 200, json_pack("{s:o}", "results", results));
}

static enum MHD_Result list(srv_conn *k, const char *user)
{
    const char *lim = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "limit");
    const char *aft = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "after");
    char *end;
    long limit = lim ? strtol(lim, &end, 10) : 100;
    if (lim && (*end || limit < 1 || limit > MEM_LIST_MAX))
        return srv_send_errorf(k, 400, "invalid_request_error", "limit", NULL,
                               "'limit' must be 1..%d", MEM_LIST_MAX);
    long long after = aft ? strtoll(aft, &end, 10) : 0;
    if (aft && (*end || after < 0))
        return srv_send_errorf(k, 400, "invalid_request_error", "after", NULL,
                               "'after' must be a cursor from an earlier page");
    mem_memory *items = NULL;
    size_t n = 0;
    int64_t next = 0, total = 0;
    vt_err e = mem_list(k->s->mem, user, after, (int32_t)limit, &items, &n, &next);
    if (e == VT_OK)
        e = mem_count(k->s->mem, user, &total);
    if (e != VT_OK) {
        mem_memories_free(items, n);
        return store_error(k, e);
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n && a; i++)
        json_array_append_new(a, memory_json(&items[i]));
    mem_memories_free(items, n);
    char cur[32];
    snprintf(cur, sizeof cur, "%lld", (long long)next);
    return srv_send_json(k, 200, json_pack("{s:o,s:o,s:I}", "results", a ? a : json_array(),
                                           "next", next ? json_string(cur) : json_null(), "total",
                                           (json_int_t)total));
}

static enum MHD_Result search(srv_conn *k, const char *user, json_t *body)
{
    enum MHD_Result res = MHD_YES;
    const char *query;
    if (!str_field(k, body, "query", &query, &res))
        return res;
    if (!query)
        return srv_send_errorf(k, 400, "invalid_request_error", "query", NULL,
                               "'query' (a string) is required");
    json_t *tk = json_object_get(body, "top_k");
    if (tk && (!json_is_integer(tk) || json_integer_value(tk) < 1 ||
               json_integer_value(tk) > MEM_TOP_MAX))
        return srv_send_errorf(k, 400, "invalid_request_error", "top_k", NULL,
                               "'top_k' must be 1..%d", MEM_TOP_MAX);
    /* a vector for the cosine half, if the client brings one */
    json_t *ev = json_object_get(body, "embedding");
    float *emb = NULL;
    size_t ne = json_array_size(ev);
    if (ev && (!json_is_array(ev) || ne == 0 || ne > MEM_EMBD_MAX))
        return srv_send_errorf(k, 400, "invalid_request_error", "embedding", NULL,
                               "'embedding' must be an array of 1..%d numbers", MEM_EMBD_MAX);
    if (ne && !(emb = malloc(ne * sizeof *emb)))
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < ne; i++) {
        json_t *x = json_array_get(ev, i);
        if (!json_is_number(x)) {
            free(emb);
            return srv_send_errorf(k, 400, "invalid_request_error", "embedding", NULL,
                                   "'embedding' must be an array of numbers");
        }
        emb[i] = (float)json_number_value(x);
    }
    mem_query q;
    mem_query_init(&q);
    q.text = query;
    q.top_k = tk ? (int32_t)json_integer_value(tk) : 10;
    q.embedding = emb;
    q.n_embd = (int32_t)ne;
    mem_hit *hits = NULL;
    size_t n = 0;
    vt_err e = mem_search(k->s->mem, user, &q, &hits, &n);
    free(emb);
    if (e != VT_OK)
        return store_error(k, e);
    json_t *a = json_array();
    for (size_t i = 0; i < n && a; i++) {
        json_t *o = memory_json(&hits[i].m);
        if (o) {
            json_object_set_new(o, "score", json_real(hits[i].score));
            json_object_set_new(o, "lexical_rank", json_integer(hits[i].lexical_rank));
            json_object_set_new(o, "vector_rank", json_integer(hits[i].vector_rank));
            if (hits[i].vector_rank > 0)
                json_object_set_new(o, "similarity", json_real(hits[i].similarity));
        }
        json_array_append_new(a, o);
    }
    mem_hits_free(hits, n);
    return srv_send_json(k, 200, json_pack("{s:o}", "results", a ? a : json_array()));
}

static enum MHD_Result one(srv_conn *k, const char *user, const char *id, json_t *body)
{
    mem_store *st = k->s->mem;
    vt_err e;
    if (!strcmp(k->method, "DELETE")) {
        if ((e = mem_delete(st, user, id)) != VT_OK)
            return store_error(k, e);
        return srv_send_json(k, 200, json_pack("{s:s,s:b}", "id", id, "deleted", 1));
    }
    if (!strcmp(k->method, "PUT")) {
        enum MHD_Result res = MHD_YES;
        const char *text;
        if (!str_field(k, body, "memory", &text, &res) ||
            (!text && !str_field(k, body, "text", &text, &res)))
            return res;
        if (!text)
            return srv_send_errorf(k, 400, "invalid_request_error", "memory", NULL,
                                   "give the new text as 'memory' (or 'text')");
        if ((e = mem_update(st, user, id, text, NULL, 0)) != VT_OK)
            return store_error(k, e);
    } else if (strcmp(k->method, "GET") && strcmp(k->method, "HEAD")) {
        return srv_send_errorf(k, 405, "invalid_request_error", NULL, "method_not_allowed",
                               "/v1/memories/{id} takes GET, PUT or DELETE");
    }
    mem_memory m;
    if ((e = mem_get(st, user, id, &m)) != VT_OK)
        return store_error(k, e);
    json_t *o = memory_json(&m);
    mem_memory_clear(&m);
    return srv_send_json(k, 200, o);
}

static enum MHD_Result history(srv_conn *k, const char *user, const char *id)
{
    mem_version *v = NULL;
    size_t n = 0;
    vt_err e = mem_history(k->s->mem, user, id, &v, &n);
    if (e != VT_OK)
        return store_error(k, e);
    json_t *a = json_array();
    for (size_t i = 0; i < n && a; i++)
        json_array_append_new(a, json_pack("{s:i,s:s,s:o}", "version", (int)v[i].version,
                                           "memory", v[i].text, "written",
                                           mem_time_json(v[i].written)));
    mem_versions_free(v, n);
    return srv_send_json(k, 200, json_pack("{s:s,s:o}", "id", id, "results",
                                           a ? a : json_array()));
}

static enum MHD_Result profile(srv_conn *k, const char *user, json_t *body)
{
    vt_err e;
    if (!strcmp(k->method, "PUT")) {
        enum MHD_Result res = MHD_YES;
        const char *text;
        if (!str_field(k, body, "profile", &text, &res))
            return res;
        if (!text)
            return srv_send_errorf(k, 400, "invalid_request_error", "profile", NULL,
                                   "'profile' (a string) is required");
        if ((e = mem_profile_set(k->s->mem, user, text)) != VT_OK)
            return store_error(k, e);
    } else if (strcmp(k->method, "GET") && strcmp(k->method, "HEAD")) {
        return srv_send_errorf(k, 405, "invalid_request_error", NULL, "method_not_allowed",
                               "/v1/memories/profile takes GET or PUT");
    }
    char *text = NULL;
    if ((e = mem_profile_get(k->s->mem, user, &text)) != VT_OK)
        return store_error(k, e);
    json_t *o = json_pack("{s:s,s:s}", "user_id", user, "profile", text ? text : "");
    free(text);
    return srv_send_json(k, 200, o);
}

enum MHD_Result srv_memories(srv_conn *k)
{
    srv_server *s = k->s;
    if (!s->mem)
        return srv_send_errorf(k, 404, "not_found_error", NULL, "memory_off",
                               "long-term memory is off on this server (started with "
                               "--no-memory)");
    json_t *body = NULL;
    enum MHD_Result res = srv_body_object(k, true, &body);
    if (!body)
        return res;
    const char *user;
    res = srv_memory_user(k, body, &user);
    if (!user) {
        json_decref(body);
        return res;
    }
    size_t n = strcspn(k->path, "?");
    const char *rest = n > 12 ? k->path + 13 : ""; /* after "/v1/memories/" */
    size_t rl = n > 12 ? n - 13 : 0;
    char id[MEM_ID_MAX + 16];
    bool is_get = !strcmp(k->method, "GET") || !strcmp(k->method, "HEAD");
    if (rl == 0) {
        if (!strcmp(k->method, "POST"))
            res = add(k, user, body);
        else if (!strcmp(k->method, "DELETE")) {
            int64_t deleted = 0;
            vt_err e = mem_forget_user(s->mem, user, &deleted);
            res = e ? store_error(k, e)
                    : srv_send_json(k, 200, json_pack("{s:s,s:I}", "user_id", user, "deleted",
                                                      (json_int_t)deleted));
        } else
            res = list(k, user);
    } else if (rl == 6 && !strncmp(rest, "search", 6) && !strcmp(k->method, "POST")) {
        res = search(k, user, body);
    } else if (rl == 6 && !strncmp(rest, "export", 6) && is_get) {
        char *json = NULL;
        vt_err e = mem_export(s->mem, user, &json);
        res = e ? store_error(k, e)
                : srv_send_text(k, 200, "application/json", json, strlen(json));
    } else if (rl == 7 && !strncmp(rest, "profile", 7)) {
        res = profile(k, user, body);
    } else if (rl > 8 && !strncmp(rest + rl - 8, "/history", 8) && rl - 8 <= MEM_ID_MAX &&
               is_get) {
        snprintf(id, sizeof id, "%.*s", (int)(rl - 8), rest);
        res = history(k, user, id);
    } else if (rl <= MEM_ID_MAX && !memchr(rest, '/', rl)) {
        snprintf(id, sizeof id, "%.*s", (int)rl, rest);
        res = one(k, user, id, body);
    } else {
        res = srv_send_errorf(k, 404, "not_found_error", NULL, NULL, "no route for %s %.100s",
                              k->method, k->path);
    }
    json_decref(body);
    return res;
}
