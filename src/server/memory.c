/*
 * memory.c - the server's side of long-term memory (memory/): recall into
 * chat prompts, storing each user turn, and the /v1/memories API.
 *
 * Whose memory: with an API key file, the key's user; only an admin key may
 * name another one (`user_id` in the query string or the body). Without
 * keys the server has one user (srv_config.memory_user, "default"), and
 * naming another is refused the same way. Everything runs on the server's
 * one polling thread, which owns the store handle.
 *
 * Chat completions (srv_memory_prepare, before the body is validated and
 * templated): unless the request says `"memory": false` (or
 * `{"recall": false}`), the last user message is the query; the best
 * memories of the user (mem_search, with neighbouring turns) and the
 * profile go, within the token budget (--memory-budget, or
 * `{"budget": N}`), into the prompt as a system block (mem_format_block's
 * format): appended to the first message when it is a system message, else
 * as a new system message in front. The response carries
 * `"vitamin": {"memories_used": [ids], "conversation_id": ID}` (and
 * `"prompt"`, the templated prompt, when the request asked with
 * `"vitamin": {"return_prompt": true}`). When the request is done, its last
 * user message is stored as a `message` memory with id
 * "CONVERSATION:INDEX" (unless `"memory": false` or `{"store": false}`);
 * the conversation is the request's `conversation_id` (a string), or else a
 * hash of its first message and first user message, so the turns of one
 * conversation share it.
 *
 * /v1/memories (shapes after mem0's REST API, the text under "memory"):
 *   POST   /v1/memories               {"memory"|"text", "id"?, "kind"?, "speaker"?,
 *                                      "time"?, "conversation"?} or {"messages": [...]}
 *   GET    /v1/memories?limit=&after= a page: {"results": [...], "next": cursor|null}
 *   DELETE /v1/memories               every memory of the user: {"deleted": n}
 *   POST   /v1/memories/search        {"query", "top_k"?}: {"results": [... "score"]}
 *   GET    /v1/memories/export        the user's export (mem_export)
 *   GET    /v1/memories/profile       {"user_id", "profile"};  PUT {"profile"}
 *   GET|PUT|DELETE /v1/memories/{id}  one memory; PUT {"memory"|"text"}
 *   GET    /v1/memories/{id}/history  {"results": [{"version", "memory", "written"}]}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"
#include "server/server_int.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

struct srv_mem_req {
    char user[MEM_USER_MAX + 8];
    char conversation[MEM_ID_MAX + 8];
    int64_t index;   /* the stored user message's index in messages */
    char *turn;      /* its text; NULL: nothing to store */
    json_t *used;    /* ids of the memories put into the prompt */
    bool return_prompt;
    /* recall on the memory thread */
    bool want_recall;
    size_t budget;
    srv_mjob *job;
    json_t *body;    /* the request, kept while the recall runs */
    srv_mjob *store; /* the turn being stored */
};

void srv_memory_req_free(srv_conn *k)
{
    if (!k->mem)
        return;
    free(k->mem->turn);
    json_decref(k->mem->used);
    srv_mjob_release(k->mem->job);
    srv_mjob_release(k->mem->store);
    json_decref(k->mem->body);
    free(k->mem);
    k->mem = NULL;
}

/* ---- whose memory ---- */

/* A user or conversation name as the store takes them (it checks UTF-8). */
static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MEM_USER_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* The user a request acts for: the key's (or the server's one user), or the
 * `user_id` asked for if the key may (*out NULL and the error sent when
 * not). */
enum MHD_Result srv_memory_user(srv_conn *k, const json_t *body, const char **out)
{
    srv_server *s = k->s;
    *out = NULL;
    const char *own = s->auth ? k->user : s->cfg.memory_user;
    const char *want = MHD_lookup_connection_value(k->c, MHD_GET_ARGUMENT_KIND, "user_id");
    json_t *bu = body ? json_object_get(body, "user_id") : NULL;
    if (bu && !json_is_null(bu)) {
        if (!json_is_string(bu))
            return srv_send_errorf(k, 400, "invalid_request_error", "user_id", NULL,
                                   "'user_id' must be a string");
        want = json_string_value(bu);
    }
    if (!want || !strcmp(want, own)) {
        *out = own;
        return MHD_YES;
    }
    if (s->auth && k->admin) {
        if (!valid_name(want))
            return srv_send_errorf(k, 400, "invalid_request_error", "user_id", NULL,
                                   "'user_id' must be 1..%d bytes of UTF-8 without spaces or "
                                   "control characters",
                                   MEM_USER_MAX);
        *out = want;
        return MHD_YES;
    }
    return srv_send_errorf(k, 403, "permission_error", "user_id", "user_not_allowed",
                           s->auth ? "this key acts only for its own user"
                                   : "this server has one user (%.100s); start it with "
                                     "--api-key-file for several",
                           own);
}

/* ---- recall into chat prompts ---- */

static const char *role_of(const json_t *m)
{
    const char *r = json_string_value(json_object_get(m, "role"));
    return r ? r : "";
}


static void default_conversation(const json_t *msgs, char *out, size_t cap)
{
    uint64_t h = 0x766974616d696e;
    size_t i;
    json_t *m;
    int users = 0;
    json_array_foreach(msgs, i, m) {
        bool first = i == 0, user = !strcmp(role_of(m), "user");
        if (!first && !(user && users == 0))
            continue;
        char *t = mem_message_text(json_object_get(m, "content"));
        if (t) {
            h = vt_hash64(t, strlen(t), h);
            free(t);
        }
        users += user;
        if (users)
            break;
    }
    snprintf(out, cap, "c-%016llx", (unsigned long long)h);
}

/* Reads the request's memory options; false after sending an error. */
static bool memory_options(srv_conn *k, const json_t *body, bool *recall, bool *store,
                           int64_t *budget, enum MHD_Result *res)
{
    json_t *m = json_object_get(body, "memory");
    *recall = *store = true;
    *budget = (int64_t)k->s->cfg.memory_budget;
    if (!m || json_is_null(m) || json_is_true(m))
        return true;
    if (json_is_false(m)) {
        *recall = *store = false;
        return true;
    }
    json_t *r = json_object_get(m, "recall"), *st = json_object_get(m, "store"),
           *b = json_object_get(m, "budget");
    if (!json_is_object(m) || (r && !json_is_boolean(r)) || (st && !json_is_boolean(st)) ||
        (b && (!json_is_integer(b) || json_integer_value(b) < 0 ||
               json_integer_value(b) > 1000000))) {
        *res = srv_send_errorf(k, 400, "invalid_request_error", "memory", NULL,
                               "'memory' must be a boolean or {\"recall\": bool, \"store\": "
                               "bool, \"budget\": tokens (0..1000000)}");
        return false;
    }
    if (r)
        *recall = json_is_true(r);
    if (st)
        *store = json_is_true(st);
    if (b)
        *budget = json_integer_value(b);
    return true;
}

enum MHD_Result srv_memory_prepare(srv_conn *k, json_t *body, bool *handled)
{
    srv_server *s = k->s;
    *handled = false;
    json_t *msgs = json_object_get(body, "messages");
    if (!s->mem || !json_is_array(msgs) || json_array_size(msgs) == 0)
        return MHD_YES; /* the parser reports a bad body */
    enum MHD_Result res = MHD_YES;
    bool recall, store;
    int64_t budget;
    if (!memory_options(k, body, &recall, &store, &budget, &res)) {
        *handled = true;
        return res;
    }
    json_t *vx = json_object_get(body, "vitamin");
    bool want_prompt = json_is_object(vx) && json_is_true(json_object_get(vx, "return_prompt"));
    if (!recall && !store && !want_prompt)
        return MHD_YES;
    const char *user;
    res = srv_memory_user(k, body, &user);
    if (!user) {
        *handled = true;
        return res;
    }
    struct srv_mem_req *mr = calloc(1, sizeof *mr);
    if (!mr) {
        *handled = true;
        return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    }
    k->mem = mr;
    snprintf(mr->user, sizeof mr->user, "%s", user);
    mr->return_prompt = want_prompt;
    json_t *cid = json_object_get(body, "conversation_id");
    if (cid && !json_is_null(cid)) {
        if (!json_is_string(cid) || !valid_name(json_string_value(cid)) ||
            strlen(json_string_value(cid)) > MEM_ID_MAX - 16) {
            *handled = true;
            return srv_send_errorf(k, 400, "invalid_request_error", "conversation_id", NULL,
                                   "'conversation_id' must be a string of 1..%d bytes without "
                                   "spaces or control characters",
                                   MEM_ID_MAX - 16);
        }
        snprintf(mr->conversation, sizeof mr->conversation, "%.*s", MEM_ID_MAX - 16,
                 json_string_value(cid));
    } else {
        default_conversation(msgs, mr->conversation, sizeof mr->conversation);
    }
    /* the last user message: the query, and the turn to store */
    size_t last;
    char *query = mem_last_user_text(msgs, &last);
    if (store && query && *query) {
        mr->turn = strdup(query);
        mr->index = (int64_t)last;
    }
    if (!recall || !query || !*query) {
        free(query);
        return MHD_YES;
    }
    free(query);
    /* at most a quarter of the context goes to memories */
    int64_t quarter = vt_engine_max_seq_len(s->e) / 4;
    if (budget > quarter)
        budget = quarter;
    mr->want_recall = true;
    mr->budget = (size_t)budget;
    return MHD_YES;
}

bool srv_memory_recall_pending(const srv_conn *k)
{
    return k->mem && k->mem->want_recall;
}

bool srv_memory_start_recall(srv_conn *k, json_t *body)
{
    struct srv_mem_req *mr = k->mem;
    json_t *msgs = json_deep_copy(json_object_get(body, "messages"));
    if (!msgs) {
        json_decref(body);
        return false;
    }
    mr->body = body;
    mr->job = srv_memwork_recall(k->s->memw, mr->user, msgs, mr->budget, srv_conn_event_ctx(k));
    if (!mr->job) {
        json_decref(msgs);
        return false;
    }
    return true;
}

bool srv_memory_recall_done(const srv_conn *k)
{
    return !k->mem->job || srv_mjob_done(k->mem->job);
}

json_t *srv_memory_finish_recall(srv_conn *k, json_t **plain)
{
    struct srv_mem_req *mr = k->mem;
    json_t *body = mr->body, *used = NULL;
    mr->body = NULL;
    mr->want_recall = false;
    *plain = NULL;
    json_t *msgs = mr->job ? srv_mjob_take_messages(mr->job, &used) : NULL;
    srv_mjob_release(mr->job);
    mr->job = NULL;
    json_decref(mr->used);
    mr->used = used ? used : json_array();
    if (msgs && json_array_size(used) > 0) {
        *plain = json_deep_copy(body); /* without the block, should it not fit */
        json_object_set_new(body, "messages", msgs);
    } else {
        json_decref(msgs);
    }
    return body;
}

void srv_memory_annotate(srv_conn *k, json_t *obj)
{
    struct srv_mem_req *mr = k->mem;
    if (!mr || !json_is_object(obj))
        return;
    json_t *v = json_object();
    if (!v)
        return;
    json_object_set_new(v, "memories_used", mr->used ? json_incref(mr->used) : json_array());
    json_object_set_new(v, "conversation_id", json_string(mr->conversation));
    if (mr->return_prompt && k->rq && k->rq->n_prompts > 0) {
        char *text = NULL;
        size_t len = 0;
        if (tok_detokenize(k->s->tok, k->rq->prompts[0].ids, (size_t)k->rq->prompts[0].n, false,
                           true, &text, &len) == VT_OK)
            json_object_set_new(v, "prompt", json_stringn(text, len));
        free(text);
    }
    json_object_set_new(obj, "vitamin", v);
}

void srv_memory_forget_recall(srv_conn *k)
{
    if (k->mem && k->mem->used) {
        json_decref(k->mem->used);
        k->mem->used = json_array();
    }
}

void srv_memory_finish(srv_conn *k)
{
    struct srv_mem_req *mr = k->mem;
    if (!mr || !mr->turn || !k->s->memw)
        return;
    mr->store = srv_memwork_store(k->s->memw, mr->user, mr->conversation, mr->index, mr->turn,
                                  k->waker >= 0 ? srv_conn_event_ctx(k) : NULL);
    free(mr->turn);
    mr->turn = NULL;
}

bool srv_memory_store_pending(const srv_conn *k)
{
    return k->mem && k->mem->store && !srv_mjob_done(k->mem->store);
}
