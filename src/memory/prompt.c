/*
 * prompt.c - recall into a conversation (memory.h, mem_recall_messages): the
 * step `vitamin serve` (server/memory.c) and `vitamin chat` both take before
 * a chat is templated. The last user message is the query; what
 * mem_format_block makes of the hits and the profile goes into the
 * conversation: on its first turn into the system message, later in front
 * of the new user message, so that the conversation so far renders as it
 * did on the turn before and its KV blocks are found in the prefix cache
 * (a block in the system message, different on every turn, would make
 * every turn recompute the whole conversation).
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "memory/memory.h"
#include "util/util.h"

#define RECALL_TOP 16

char *mem_message_text(const json_t *content)
{
    if (json_is_string(content))
        return strdup(json_string_value(content));
    if (!json_is_array(content))
        return NULL;
    vt_buf b = {0};
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *t = json_object_get(part, "text");
        if (json_is_string(t)) {
            if (b.len)
                vt_buf_add(&b, "\n", 1);
            vt_buf_add(&b, json_string_value(t), strlen(json_string_value(t)));
        }
    }
    if (b.oom || !b.p) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static const char *role_of(const json_t *m)
{
    const char *r = json_string_value(json_object_get(m, "role"));
    return r ? r : "";
}

char *mem_last_user_text(const json_t *messages, size_t *index)
{
    size_t n = json_array_size(messages);
    *index = n;
    for (size_t i = n; i-- > 0;) {
        json_t *m = json_array_get(messages, i);
        if (!strcmp(role_of(m), "user")) {
            *index = i;
            return mem_message_text(json_object_get(m, "content"));
        }
    }
    return NULL;
}

/* Prefixes the content of message m (a string or text parts) with block. */
static vt_err prefix_content(json_t *m, const char *block)
{
    json_t *c = json_object_get(m, "content");
    if (json_is_array(c)) {
        json_t *part = json_pack("{s:s,s:s++}", "type", "text", "text", block, "\n\n");
        if (!part || json_array_insert_new(c, 0, part))
            return vt_fail(VT_ERR_NOMEM, "out of memory");
        return VT_OK;
    }
    const char *t = json_string_value(c);
    json_t *v = json_pack("s++", block, "\n\n", t ? t : "");
    if (!v || json_object_set_new(m, "content", v))
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    return VT_OK;
}

/* Puts block where memory.h says: the system message on a conversation's
 * first turn, else in front of the last user message. */
static vt_err insert_block(json_t *messages, size_t last_user, const char *block)
{
    bool first_turn = true;
    for (size_t i = 0; i < last_user; i++)
        if (!strcmp(role_of(json_array_get(messages, i)), "assistant"))
            first_turn = false;
    if (!first_turn)
        return prefix_content(json_array_get(messages, last_user), block);
    json_t *first = json_array_get(messages, 0);
    if (!strcmp(role_of(first), "system") && json_is_string(json_object_get(first, "content"))) {
        json_t *v = json_pack("s++", json_string_value(json_object_get(first, "content")), "\n\n",
                              block);
        if (!v || json_object_set_new(first, "content", v))
            return vt_fail(VT_ERR_NOMEM, "out of memory");
        return VT_OK;
    }
    json_t *m = json_pack("{s:s,s:s}", "role", "system", "content", block);
    if (!m || json_array_insert_new(messages, 0, m))
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    return VT_OK;
}

vt_err mem_recall_messages(mem_store *s, const char *user, json_t *messages, size_t budget,
                           const float *query_embedding, int32_t n_embd, mem_count_fn count,
                           void *ctx, json_t **used)
{
    if (used && !(*used = json_array()))
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    if (!s || !user || !json_is_array(messages))
        return vt_fail(VT_ERR_INVALID, "mem_recall_messages: NULL store, user or messages");
    size_t last = 0;
    char *query = mem_last_user_text(messages, &last);
    if (!query || !*query) {
        free(query);
        return VT_OK;
    }
    mem_query q;
    mem_query_init(&q);
    q.text = query;
    q.top_k = RECALL_TOP;
    q.embedding = query_embedding;
    q.n_embd = query_embedding ? n_embd : 0;
    mem_hit *hits = NULL;
    size_t nh = 0, n_used = 0;
    char *profile = NULL, *block = NULL;
    const char **ids = NULL;
    vt_err e = mem_search(s, user, &q, &hits, &nh);
    if (e == VT_OK)
        e = mem_profile_get(s, user, &profile);
    if (e == VT_OK)
        e = mem_format_block(profile, hits, nh, budget, count, ctx, &block, &ids, &n_used);
    if (e == VT_OK && block && *block)
        e = insert_block(messages, last, block);
    for (size_t i = 0; e == VT_OK && used && i < n_used; i++)
        if (json_array_append_new(*used, json_string(ids[i])))
            e = vt_fail(VT_ERR_NOMEM, "out of memory");
    free(query);
    free(block);
    free(ids);
    free(profile);
    mem_hits_free(hits, nh);
    return e;
}
