/*
 * oai_response.c - OpenAI-shaped responses from engine events (see oai.h):
 * each choice's text, finish reason and logprobs collected into a
 * `text_completion` or `chat.completion` body with usage, or turned event by
 * event into streaming chunks (`text_completion` chunks; for chat a role
 * delta, content deltas, a final chunk with finish_reason; the usage chunk
 * with empty choices when include_usage). Strings are made valid UTF-8 (a
 * model may generate any bytes; bad bytes become U+FFFD), and a logprob of
 * -inf is written as -9999.0, as vLLM does, since JSON has no infinity.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/oai.h"
#include "tokenizer/tokenizer.h"
#include "util/util.h"

typedef struct {
    char *text;
    size_t len, cap;
    json_t *lp;      /* completions: {tokens, token_logprobs, top_logprobs, text_offset};
                        chat: the content array; NULL without logprobs */
    size_t offset;   /* completions: text_offset of the next token */
    vt_finish finish;
    bool finished;
    chat_tool_parser *tp; /* chat with tools: the choice's tool-call parser */
} choice;

struct oai_response {
    const oai_request *rq;
    const tok_tokenizer *tok;
    char id[64];
    int64_t created;
    int32_t n_choices;
    choice *c;
    bool *done;
    int32_t n_done;
    vt_usage usage;
    bool failed;
    char error[512];
};

/* ---- JSON helpers ---- */

/* A JSON string of any bytes: ill-formed UTF-8 bytes become U+FFFD. */
static json_t *jstr(const char *s, size_t n)
{
    json_t *v = json_stringn(s ? s : "", s ? n : 0);
    if (v)
        return v;
    char *buf = malloc(n * 3 + 1);
    size_t o = 0;
    if (!buf)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t k = chat_utf8_len((const unsigned char *)s + i, n - i);
        if (k && !(k == 1 && s[i] == 0)) {
            memcpy(buf + o, s + i, k);
            o += k;
            i += k;
        } else {
            memcpy(buf + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    v = json_stringn(buf, o);
    free(buf);
    return v;
}

static json_t *jlogprob(float lp)
{
    return json_real(isfinite(lp) ? (double)lp : -9999.0);
}

static json_t *jbytes(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer((unsigned char)s[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static const char *piece(const oai_response *s, int32_t id, size_t *len)
{
    const char *p = tok_piece(s->tok, id, s->rq->params.special, len);
    return p ? p : "";
}

static json_t *finish_json(vt_finish f)
{
    switch (f) {
    case VT_FINISH_EOS:
    case VT_FINISH_STOP:
        return json_string("stop");
    case VT_FINISH_LENGTH:
        return json_string("length");
    default:
        return json_null(); /* aborted or failed: no reason, as vLLM */
    }
}

static json_t *usage_json(const vt_usage *u)
{
    json_t *o = json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)u->prompt_tokens,
                          "completion_tokens", (json_int_t)u->completion_tokens, "total_tokens",
                          (json_int_t)(u->prompt_tokens + u->completion_tokens));
    if (o && u->cached_tokens)
        json_object_set_new(o, "prompt_tokens_details",
                            json_pack("{s:I}", "cached_tokens", (json_int_t)u->cached_tokens));
    return o;
}

/* ---- lifecycle ---- */

oai_response *oai_response_create(const oai_request *r, const tok_tokenizer *tok, const char *id,
                                  int64_t created)
{
    oai_response *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->rq = r;
    s->tok = tok;
    s->created = created;
    s->n_choices = r->n_prompts * r->params.n;
    s->c = calloc((size_t)s->n_choices, sizeof *s->c);
    s->done = calloc((size_t)r->n_prompts, sizeof *s->done);
    if (!s->c || !s->done) {
        oai_response_free(s);
        return NULL;
    }
    const char *prefix = r->endpoint == OAI_CHAT ? "chatcmpl-" : "cmpl-";
    if (id) {
        snprintf(s->id, sizeof s->id, "%s", id);
    } else {
        static _Atomic uint64_t counter;
        uint64_t x = (uint64_t)(vt_now() * 1e9) ^ ((uint64_t)(uintptr_t)s << 16) ^
                     (counter++ * 0x9e3779b97f4a7c15ull);
        x ^= x >> 31;
        x *= 0xbf58476d1ce4e5b9ull;
        x ^= x >> 29;
        snprintf(s->id, sizeof s->id, "%s%016llx", prefix, (unsigned long long)x);
    }
    for (int32_t i = 0; i < s->n_choices; i++) {
        if (r->endpoint == OAI_CHAT && r->parse_tools) {
            const chat_tool_event *ev;
            size_t n_ev;
            s->c[i].tp = chat_tool_parser_create(r->tool_family, r->tools, r->parallel_tool_calls,
                                                 vt_hash64(s->id, strlen(s->id), (uint64_t)i));
            if (s->c[i].tp)
                chat_tool_parser_set_think(s->c[i].tp, r->tool_in_think);
            if (s->c[i].tp && r->tool_prefill) /* a forced call: streamed as it comes */
                chat_tool_parser_set_forced(s->c[i].tp);
            if (!s->c[i].tp ||
                (r->tool_prefill && chat_tool_parser_feed(s->c[i].tp, r->tool_prefill,
                                                          strlen(r->tool_prefill), false, &ev,
                                                          &n_ev))) {
                oai_response_free(s);
                return NULL;
            }
        }
        if (r->logprobs < 0)
            continue;
        s->c[i].lp = r->endpoint == OAI_CHAT
                         ? json_array()
                         : json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs",
                                     "top_logprobs", "text_offset");
        if (!s->c[i].lp) {
            oai_response_free(s);
            return NULL;
        }
        if (r->echo)
            s->c[i].offset = r->prompts[i / r->params.n].len;
    }
    return s;
}

void oai_response_free(oai_response *s)
{
    if (!s)
        return;
    for (int32_t i = 0; s->c && i < s->n_choices; i++) {
        free(s->c[i].text);
        json_decref(s->c[i].lp);
        chat_tool_parser_destroy(s->c[i].tp);
    }
    free(s->c);
    free(s->done);
    free(s);
}

const char *oai_response_id(const oai_response *s)
{
    return s->id;
}

bool oai_response_done(const oai_response *s)
{
    return s->n_done == s->rq->n_prompts;
}

vt_usage oai_response_usage(const oai_response *s)
{
    return s->usage;
}

/* ---- collecting ---- */

static bool append(choice *c, const char *t, size_t n)
{
    if (!n)
        return true;
    if (c->len + n + 1 > c->cap) {
        size_t cap = (c->len + n + 1) * 2;
        char *nt = realloc(c->text, cap);
        if (!nt)
            return false;
        c->text = nt;
        c->cap = cap;
    }
    memcpy(c->text + c->len, t, n);
    c->len += n;
    c->text[c->len] = 0;
    return true;
}

/* The logprobs of one token, in the endpoint's shape: completions a
 * {tokens:[t], token_logprobs:[lp], top_logprobs:[{...}], text_offset:[o]}
 * (merged into the choice's arrays by the caller), chat one content entry. */
static json_t *token_logprobs(oai_response *s, choice *c, const vt_event *ev)
{
    size_t len;
    const char *p = piece(s, ev->token, &len);
    if (s->rq->endpoint == OAI_CHAT) {
        json_t *top = json_array();
        for (int32_t k = 0; top && k < ev->n_top && k < s->rq->logprobs; k++) {
            size_t tl;
            const char *tp = piece(s, ev->top[k].token, &tl);
            json_array_append_new(top, json_pack("{s:o,s:o,s:o}", "token", jstr(tp, tl),
                                                 "logprob", jlogprob(ev->top[k].logprob),
                                                 "bytes", jbytes(tp, tl)));
        }
        return json_pack("{s:o,s:o,s:o,s:o}", "token", jstr(p, len), "logprob",
                         jlogprob(ev->logprob), "bytes", jbytes(p, len), "top_logprobs",
                         top ? top : json_array());
    }
    json_t *top = json_object();
    for (int32_t k = 0; top && k < ev->n_top && k < s->rq->logprobs; k++) {
        size_t tl;
        const char *tp = piece(s, ev->top[k].token, &tl);
        json_t *key = jstr(tp, tl);
        if (key)
            json_object_set_new(top, json_string_value(key), jlogprob(ev->top[k].logprob));
        json_decref(key);
    }
    json_t *key = jstr(p, len); /* the sampled token is always among them (vLLM) */
    if (top && key && !json_object_get(top, json_string_value(key)))
        json_object_set_new(top, json_string_value(key), jlogprob(ev->logprob));
    json_decref(key);
    json_t *o = json_pack("{s:[o],s:[o],s:[o],s:[I]}", "tokens", jstr(p, len), "token_logprobs",
                          jlogprob(ev->logprob), "top_logprobs", top ? top : json_object(),
                          "text_offset", (json_int_t)c->offset);
    c->offset += len;
    return o;
}

static bool merge_logprobs(const oai_request *rq, choice *c, const json_t *one)
{
    if (rq->endpoint == OAI_CHAT)
        return !json_array_append(c->lp, (json_t *)one);
    static const char *const keys[] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    for (int k = 0; k < 4; k++)
        if (json_array_extend(json_object_get(c->lp, keys[k]), json_object_get(one, keys[k])))
            return false;
    return true;
}

/* Collects ev; *one (may be NULL) receives the token's logprobs entry, and
 * *tev / *n_tev (may be NULL) what the choice's tool-call parser released. */
static vt_err collect(oai_response *s, int32_t prompt, const vt_event *ev, json_t **one,
                      const chat_tool_event **tev, size_t *n_tev)
{
    if (one)
        *one = NULL;
    if (tev)
        *tev = NULL, *n_tev = 0;
    if (prompt < 0 || prompt >= s->rq->n_prompts)
        return vt_fail(VT_ERR_INVALID, "oai: prompt %d out of range", (int)prompt);
    int32_t n = s->rq->params.n;
    choice *c = NULL;
    if (ev->kind == VT_EV_TOKEN || ev->kind == VT_EV_FINISH) {
        if (ev->index < 0 || ev->index >= n)
            return vt_fail(VT_ERR_INVALID, "oai: completion %d out of range", (int)ev->index);
        c = &s->c[prompt * n + ev->index];
        if (!append(c, ev->text, ev->len))
            return vt_fail(VT_ERR_NOMEM, "out of memory");
        if (c->tp && !c->finished) {
            const chat_tool_event *te;
            size_t nt;
            vt_err e = chat_tool_parser_feed(c->tp, ev->text ? ev->text : "", ev->len,
                                             ev->kind == VT_EV_FINISH, &te, &nt);
            if (e)
                return e;
            if (tev)
                *tev = te, *n_tev = nt;
        }
    }
    switch (ev->kind) {
    case VT_EV_TOKEN:
        if (c->lp) {
            json_t *lp = token_logprobs(s, c, ev);
            if (!lp || !merge_logprobs(s->rq, c, lp)) {
                json_decref(lp);
                return vt_fail(VT_ERR_NOMEM, "out of memory");
            }
            if (one)
                *one = lp;
            else
                json_decref(lp);
        }
        break;
    case VT_EV_FINISH:
        c->finish = ev->finish;
        c->finished = true;
        break;
    case VT_EV_DONE:
        if (!s->done[prompt]) {
            s->done[prompt] = true;
            s->n_done++;
            s->usage.prompt_tokens += ev->usage.prompt_tokens;
            s->usage.completion_tokens += ev->usage.completion_tokens;
            s->usage.cached_tokens += ev->usage.cached_tokens;
        }
        break;
    case VT_EV_ERROR:
        if (!s->failed)
            snprintf(s->error, sizeof s->error, "%.*s", (int)VT_MIN(ev->len, 500),
                     ev->text ? ev->text : "");
        s->failed = true;
        break;
    case VT_EV_EMBEDDING: /* embedding requests never reach a completions response */
        break;
    }
    return VT_OK;
}

vt_err oai_response_add(oai_response *s, int32_t prompt, const vt_event *ev)
{
    return collect(s, prompt, ev, NULL, NULL, NULL);
}

/* "tool_calls" for a choice that called tools and ended by itself. */
static json_t *choice_finish(const choice *c)
{
    if (c->tp && chat_tool_parser_n_calls(c->tp) > 0 &&
        (c->finish == VT_FINISH_EOS || c->finish == VT_FINISH_STOP))
        return json_string("tool_calls");
    return finish_json(c->finish);
}

/* A call as OpenAI writes it in a message. */
static json_t *call_json(const chat_tool_call *t)
{
    return json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", t->id, "type", "function", "function",
                     "name", t->name, "arguments", jstr(t->arguments, t->arguments_len));
}

/* The chat message of a choice: role, content (null when the output was
 * only calls), tool_calls when there were any. */
static json_t *message_json(const choice *c)
{
    if (!c->tp)
        return json_pack("{s:s,s:o}", "role", "assistant", "content", jstr(c->text, c->len));
    size_t len;
    const char *text = chat_tool_parser_content(c->tp, &len);
    int32_t n = chat_tool_parser_n_calls(c->tp);
    json_t *m = json_pack("{s:s,s:o}", "role", "assistant", "content",
                          n > 0 && len == 0 ? json_null() : jstr(text, len));
    json_t *calls = n > 0 ? json_array() : NULL;
    for (int32_t i = 0; calls && i < n; i++)
        if (json_array_append_new(calls, call_json(chat_tool_parser_call(c->tp, i)))) {
            json_decref(calls);
            calls = NULL;
        }
    if (!m || (n > 0 && (!calls || json_object_set_new(m, "tool_calls", calls)))) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static json_t *head(const oai_response *s, const char *object)
{
    return json_pack("{s:s,s:s,s:I,s:s,s:n}", "id", s->id, "object", object, "created",
                     (json_int_t)s->created, "model", s->rq->model, "system_fingerprint");
}

json_t *oai_response_body(oai_response *s, oai_error *err)
{
    if (s->failed) {
        oai_error_set(err, 500, "internal_error", NULL, NULL, "the request failed: %s", s->error);
        return NULL;
    }
    bool chat = s->rq->endpoint == OAI_CHAT;
    json_t *o = head(s, chat ? "chat.completion" : "text_completion"), *choices = json_array();
    if (!o || !choices || json_object_set_new(o, "choices", choices))
        goto oom;
    for (int32_t i = 0; i < s->n_choices; i++) {
        choice *c = &s->c[i];
        json_t *ch;
        if (chat) {
            json_t *lp = c->lp ? json_pack("{s:O}", "content", c->lp) : json_null();
            ch = json_pack("{s:i,s:o,s:o,s:o}", "index", (int)i, "message", message_json(c),
                           "logprobs", lp, "finish_reason", choice_finish(c));
        } else {
            const oai_prompt *p = &s->rq->prompts[i / s->rq->params.n];
            json_t *text = NULL;
            if (s->rq->echo) {
                char *t = malloc(p->len + c->len + 1);
                if (t) {
                    memcpy(t, p->text, p->len);
                    if (c->len)
                        memcpy(t + p->len, c->text, c->len);
                    text = jstr(t, p->len + c->len);
                    free(t);
                }
            } else {
                text = jstr(c->text, c->len);
            }
            ch = json_pack("{s:i,s:o,s:o,s:o}", "index", (int)i, "text", text, "logprobs",
                           c->lp ? json_incref(c->lp) : json_null(), "finish_reason",
                           finish_json(c->finish));
        }
        if (!ch || json_array_append_new(choices, ch))
            goto oom;
    }
    if (json_object_set_new(o, "usage", usage_json(&s->usage)))
        goto oom;
    return o;
oom:
    json_decref(o);
    oai_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
    return NULL;
}

/* ---- streaming ---- */

/* A chunk with one choice (its contents `ch`, stolen). */
static json_t *chunk(const oai_response *s, json_t *ch)
{
    bool chat = s->rq->endpoint == OAI_CHAT;
    json_t *o = head(s, chat ? "chat.completion.chunk" : "text_completion");
    if (!o || !ch || json_object_set_new(o, "choices", json_pack("[o]", ch)) ||
        (s->rq->include_usage && json_object_set_new(o, "usage", json_null()))) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static bool push(json_t *arr, json_t *v)
{
    return v && !json_array_append_new(arr, v);
}

json_t *oai_stream_begin(oai_response *s)
{
    json_t *a = json_array();
    for (int32_t i = 0; a && i < s->n_choices; i++) {
        json_t *ch = NULL;
        if (s->rq->endpoint == OAI_CHAT) {
            ch = json_pack("{s:i,s:{s:s,s:s},s:n,s:n}", "index", (int)i, "delta", "role",
                           "assistant", "content", "", "logprobs", "finish_reason");
        } else if (s->rq->echo) {
            const oai_prompt *p = &s->rq->prompts[i / s->rq->params.n];
            ch = json_pack("{s:i,s:o,s:n,s:n}", "index", (int)i, "text", jstr(p->text, p->len),
                           "logprobs", "finish_reason");
        } else {
            continue;
        }
        if (!push(a, chunk(s, ch))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static json_t *delta_choice(const oai_response *s, int32_t index, const char *text, size_t len,
                            json_t *lp, json_t *finish)
{
    if (s->rq->endpoint == OAI_CHAT) {
        json_t *d = text ? json_pack("{s:o}", "content", jstr(text, len)) : json_object();
        json_t *l = lp ? json_pack("{s:[O]}", "content", lp) : json_null();
        return json_pack("{s:i,s:o,s:o,s:o}", "index", (int)index, "delta", d, "logprobs", l,
                         "finish_reason", finish);
    }
    return json_pack("{s:i,s:o,s:o,s:o}", "index", (int)index, "text", jstr(text, len),
                     "logprobs", lp ? json_incref(lp) : json_null(), "finish_reason", finish);
}

/* A call's first delta: index, id, type, name and arguments "". */
static bool push_call_head(const oai_response *s, json_t *a, int32_t index, int32_t k,
                           const chat_tool_call *t)
{
    json_t *d = json_pack("{s:[{s:i,s:s,s:s,s:{s:s,s:s}}]}", "tool_calls", "index", (int)k, "id",
                          t->id, "type", "function", "function", "name", t->name, "arguments", "");
    return push(a, chunk(s, json_pack("{s:i,s:o,s:n,s:n}", "index", (int)index, "delta", d,
                                      "logprobs", "finish_reason")));
}

/* A later delta: a piece of the call's arguments. */
static bool push_call_args(const oai_response *s, json_t *a, int32_t index, int32_t k,
                           const char *args, size_t len)
{
    json_t *d = json_pack("{s:[{s:i,s:{s:o}}]}", "tool_calls", "index", (int)k, "function",
                          "arguments", jstr(args, len));
    return push(a, chunk(s, json_pack("{s:i,s:o,s:n,s:n}", "index", (int)index, "delta", d,
                                      "logprobs", "finish_reason")));
}

/* Chat with tools: the parser's releases as content and tool_calls deltas
 * (the token's logprobs ride on the first chunk, or on an empty delta). */
static bool push_tool_events(const oai_response *s, json_t *a, int32_t index, const choice *c,
                             const chat_tool_event *te, size_t nt, json_t *one)
{
    bool ok = true;
    for (size_t i = 0; ok && i < nt; i++) {
        if (te[i].kind == CHAT_TEV_CONTENT) {
            ok = push(a, chunk(s, delta_choice(s, index, te[i].text, te[i].len, one, json_null())));
            one = NULL;
        } else {
            const chat_tool_call *t = chat_tool_parser_call(c->tp, te[i].call);
            if (te[i].kind == CHAT_TEV_CALL_BEGIN)
                ok = push_call_head(s, a, index, te[i].call, t);
            else if (te[i].kind == CHAT_TEV_CALL_ARGS)
                ok = push_call_args(s, a, index, te[i].call, te[i].text, te[i].len);
            else if (!t->streamed) /* released whole: both deltas now */
                ok = push_call_head(s, a, index, te[i].call, t) &&
                     push_call_args(s, a, index, te[i].call, t->arguments, t->arguments_len);
        }
    }
    if (ok && one)
        ok = push(a, chunk(s, delta_choice(s, index, NULL, 0, one, json_null())));
    return ok;
}

json_t *oai_stream_event(oai_response *s, int32_t prompt, const vt_event *ev)
{
    json_t *one = NULL, *a;
    const chat_tool_event *te;
    size_t nt;
    if (collect(s, prompt, ev, &one, &te, &nt) || !(a = json_array())) {
        json_decref(one);
        return NULL;
    }
    int32_t index = prompt * s->rq->params.n + ev->index;
    bool ok = true, chat = s->rq->endpoint == OAI_CHAT;
    const choice *c = ev->kind == VT_EV_TOKEN || ev->kind == VT_EV_FINISH ? &s->c[index] : NULL;
    if (c && c->tp) {
        ok = push_tool_events(s, a, index, c, te, nt, one);
        if (ok && ev->kind == VT_EV_FINISH)
            ok = push(a, chunk(s, delta_choice(s, index, NULL, 0, NULL, choice_finish(c))));
    } else if (ev->kind == VT_EV_TOKEN && (ev->len || one)) {
        ok = push(a, chunk(s, delta_choice(s, index, ev->text, ev->len, one, json_null())));
    } else if (ev->kind == VT_EV_FINISH) {
        if (chat && ev->len)
            ok = push(a, chunk(s, delta_choice(s, index, ev->text, ev->len, NULL, json_null())));
        ok = ok && push(a, chunk(s, delta_choice(s, index, chat ? NULL : ev->text,
                                                 chat ? 0 : ev->len, NULL,
                                                 finish_json(ev->finish))));
    }
    json_decref(one);
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

json_t *oai_stream_usage(oai_response *s)
{
    if (!s->rq->include_usage)
        return NULL;
    json_t *o = head(s, s->rq->endpoint == OAI_CHAT ? "chat.completion.chunk" : "text_completion");
    if (!o || json_object_set_new(o, "choices", json_array()) ||
        json_object_set_new(o, "usage", usage_json(&s->usage))) {
        json_decref(o);
        return NULL;
    }
    return o;
}
