/*
 * routes.c - the server's routes and its simple endpoints: GET /health (200
 * when the model is loaded and serving, 503 while shutting down), GET
 * /metrics (Prometheus text), GET /v1/models and /v1/models/{id}, POST
 * /tokenize and /detokenize in vLLM's shapes, and clear answers for what is
 * not built yet; /v1/embeddings goes to embed.c. Completions and chat go to stream.c,
 * the chat page at / to page.c.
 */
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"
#include "tokenizer/tokenizer.h"

static const struct {
    const char *path;
    bool prefix; /* path + "/" + anything */
    srv_route route;
    const char *method;
    bool auth;
} routes[] = {
    {"/health", false, R_HEALTH, "GET", false},
    {"/metrics", false, R_METRICS, "GET", false},
    {"/v1/models", false, R_MODELS, "GET", true},
    {"/v1/models", true, R_MODEL, "GET", true},
    {"/v1/completions", false, R_COMPLETIONS, "POST", true},
    {"/v1/chat/completions", false, R_CHAT, "POST", true},
    {"/tokenize", false, R_TOKENIZE, "POST", true},
    {"/detokenize", false, R_DETOKENIZE, "POST", true},
    {"/v1/embeddings", false, R_EMBEDDINGS, "POST", true},
    {"/v1/memories", false, R_MEMORIES, "GET|POST|DELETE", true},
    {"/v1/memories/", true, R_MEMORIES, "GET|POST|PUT|DELETE", true},
    {"/", false, R_ROOT, "GET", false},
};

srv_route srv_route_find(const char *path, const char **method, const char **label, bool *auth)
{
    size_t n = strcspn(path, "?");
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t pl = strlen(routes[i].path);
        /* a path ending in '/' takes anything below it */
        bool deep = pl > 1 && routes[i].path[pl - 1] == '/';
        bool hit = deep ? n > pl && !strncmp(path, routes[i].path, pl)
                   : routes[i].prefix
                       ? n > pl + 1 && !strncmp(path, routes[i].path, pl) && path[pl] == '/' &&
                             !memchr(path + pl + 1, '/', n - pl - 1)
                       : n == pl && !strncmp(path, routes[i].path, pl);
        if (hit) {
            *method = routes[i].method;
            *label = deep ? "/v1/memories/{...}"
                     : routes[i].prefix ? "/v1/models/{id}"
                                        : routes[i].path;
            *auth = routes[i].auth;
            return routes[i].route;
        }
    }
    *method = NULL;
    *label = "other";
    *auth = false;
    return R_NONE;
}

static json_t *model_card(const srv_server *s)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:I}", "id", s->model_name, "object", "model", "created",
                     (json_int_t)s->created, "owned_by", "vitamin", "max_model_len",
                     (json_int_t)vt_engine_max_seq_len(s->e));
}

enum MHD_Result srv_body_object(srv_conn *k, bool empty_ok, json_t **out)
{
    oai_error err;
    *out = NULL;
    if (empty_ok && (!k->body || k->len == 0)) {
        *out = json_object();
        return *out ? MHD_YES
                    : srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
    }
    if (oai_json_load(k->body ? k->body : "", k->len, out, &err))
        return srv_send_error(k, &err);
    if (!json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return srv_send_errorf(k, 400, "invalid_request_error", NULL, NULL,
                               "the request body must be a JSON object");
    }
    return MHD_YES;
}

static enum MHD_Result model_check(srv_conn *k, const json_t *body, bool *ok)
{
    json_t *m = json_object_get(body, "model");
    *ok = false;
    if (m && !json_is_null(m) && !json_is_string(m))
        return srv_send_errorf(k, 400, "invalid_request_error", "model", NULL,
                               "'model' must be a string");
    if (json_is_string(m) && strcmp(json_string_value(m), k->s->model_name))
        return srv_send_errorf(k, 404, "invalid_request_error", "model", "model_not_found",
                               "The model `%.200s` does not exist.", json_string_value(m));
    *ok = true;
    return MHD_YES;
}

static enum MHD_Result tokenize(srv_conn *k)
{
    srv_server *s = k->s;
    json_t *body, *prompt, *msgs;
    enum MHD_Result res = srv_body_object(k, false, &body);
    bool ok;
    if (!body)
        return res;
    if ((res = model_check(k, body, &ok)), !ok)
        goto done;
    prompt = json_object_get(body, "prompt");
    msgs = json_object_get(body, "messages");
    json_t *as = json_object_get(body, "add_special_tokens");
    json_t *ag = json_object_get(body, "add_generation_prompt");
    json_t *rs = json_object_get(body, "return_token_strs");
    if ((as && !json_is_boolean(as)) || (ag && !json_is_boolean(ag)) ||
        (rs && !json_is_boolean(rs))) {
        res = srv_send_errorf(k, 400, "invalid_request_error", NULL, NULL,
                              "add_special_tokens, add_generation_prompt and return_token_strs "
                              "must be booleans");
        goto done;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    vt_err e;
    if (json_is_string(prompt)) {
        e = vt_tokenize(s->e, json_string_value(prompt), json_string_length(prompt),
                        !as || json_is_true(as), true, &ids, &n);
    } else if (json_is_array(msgs)) {
        if (!s->chat) {
            res = srv_send_errorf(k, 400, "invalid_request_error", "messages", NULL,
                                  "the model has no chat template");
            goto done;
        }
        e = chat_prompt(s->chat, msgs, !ag || json_is_true(ag), NULL, &ids, &n);
    } else {
        res = srv_send_errorf(k, 400, "invalid_request_error", "prompt", NULL,
                              "expected 'prompt' (a string) or 'messages' (an array)");
        goto done;
    }
    if (e) {
        res = srv_send_errorf(k, e == VT_ERR_NOMEM ? 500 : 400,
                              e == VT_ERR_NOMEM ? "internal_error" : "invalid_request_error",
                              NULL, NULL, "%s", vt_last_error());
        goto done;
    }
    json_t *toks = json_array(), *strs = json_is_true(rs) ? json_array() : NULL;
    for (size_t i = 0; toks && i < n; i++) {
        json_array_append_new(toks, json_integer(ids[i]));
        if (strs) {
            size_t pl;
            const char *p = tok_piece(s->tok, ids[i], true, &pl);
            json_t *v = json_stringn(p ? p : "", p ? pl : 0);
            json_array_append_new(strs, v ? v : json_string("\xef\xbf\xbd"));
        }
    }
    free(ids);
    json_t *o = json_pack("{s:I,s:I,s:o}", "count", (json_int_t)n, "max_model_len",
                          (json_int_t)vt_engine_max_seq_len(s->e), "tokens", toks);
    if (o && strs)
        json_object_set_new(o, "token_strs", strs);
    else
        json_decref(strs);
    res = srv_send_json(k, 200, o);
done:
    json_decref(body);
    return res;
}

static enum MHD_Result detokenize(srv_conn *k)
{
    srv_server *s = k->s;
    json_t *body;
    enum MHD_Result res = srv_body_object(k, false, &body);
    bool ok;
    if (!body)
        return res;
    if ((res = model_check(k, body, &ok)), !ok)
        goto done;
    json_t *t = json_object_get(body, "tokens");
    if (!json_is_array(t)) {
        res = srv_send_errorf(k, 400, "invalid_request_error", "tokens", NULL,
                              "'tokens' must be an array of token ids");
        goto done;
    }
    size_t n = json_array_size(t);
    int32_t nv = vt_engine_n_vocab(s->e);
    int32_t *ids = malloc(sizeof *ids * (n + 1));
    if (!ids) {
        res = srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(t, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= nv) {
            free(ids);
            res = srv_send_errorf(k, 400, "invalid_request_error", "tokens", NULL,
                                  "tokens[%zu] must be a token id in [0, %d)", i, (int)nv);
            goto done;
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    char *text = NULL;
    size_t len = 0;
    vt_err e = tok_detokenize(s->tok, ids, n, false, true, &text, &len);
    free(ids);
    if (e) {
        res = srv_send_errorf(k, 500, "internal_error", NULL, NULL, "%s", vt_last_error());
        goto done;
    }
    json_t *str = json_stringn(text, len);
    if (!str) { /* invalid UTF-8 from byte tokens: replace what is not */
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)text[i] >= 0x80 || !text[i])
                text[i] = '?';
        str = json_stringn(text, len);
    }
    free(text);
    res = srv_send_json(k, 200, json_pack("{s:o}", "prompt", str));
done:
    json_decref(body);
    return res;
}

enum MHD_Result srv_route_handle(srv_conn *k)
{
    srv_server *s = k->s;
    switch (k->route) {
    case R_HEALTH:
        if (atomic_load(&s->stopping))
            return srv_send_errorf(k, 503, "service_unavailable", NULL, NULL, "shutting down");
        return srv_send_text(k, 200, "application/json", strdup("{\"status\":\"ok\"}"), 15);
    case R_METRICS: {
        size_t len = 0;
        char *t = srv_metrics_render(s->metrics, s->e, &len);
        if (!t)
            return srv_send_errorf(k, 500, "internal_error", NULL, NULL, "out of memory");
        return srv_send_text(k, 200, "text/plain; version=0.0.4; charset=utf-8", t, len);
    }
    case R_MODELS:
        return srv_send_json(k, 200, json_pack("{s:s,s:[o]}", "object", "list", "data",
                                               model_card(s)));
    case R_MODEL: {
        const char *id = k->path + strlen("/v1/models/");
        if (strcmp(id, s->model_name))
            return srv_send_errorf(k, 404, "invalid_request_error", "model", "model_not_found",
                                   "The model `%.100s` does not exist.", id);
        return srv_send_json(k, 200, model_card(s));
    }
    case R_COMPLETIONS:
        return srv_generate(k, OAI_COMPLETIONS);
    case R_CHAT:
        return srv_generate(k, OAI_CHAT);
    case R_TOKENIZE:
        return tokenize(k);
    case R_DETOKENIZE:
        return detokenize(k);
    case R_EMBEDDINGS:
        return srv_embed(k);
    case R_MEMORIES:
        return srv_memories(k);
    case R_ROOT:
        return srv_page_send(k);
    default:
        return srv_send_errorf(k, 404, "not_found_error", NULL, NULL, "no route for %.100s",
                               k->path);
    }
}
