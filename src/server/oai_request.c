/*
 * oai_request.c - validating OpenAI /v1/completions and /v1/chat/completions
 * bodies into engine requests (see oai.h): a depth-checked JSON load, every
 * field's type and range checked with an error naming it (HTTP status and
 * OpenAI's error type/param/code), completions prompts (a string, a token
 * array, or a list of either) tokenized with the model's BOS rule, chat
 * messages (string or text-part content) rendered through the chat template
 * with `tools` as a template variable (`tool_choice` and
 * `parallel_tool_calls` checked; for "required" or a named function the
 * call's opening put after the generation prompt and the grammar of the rest
 * set), and the context-length check in OpenAI's words.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "server/oai.h"
#include "tokenizer/tokenizer.h"

#define INVALID "invalid_request_error"

int oai_error_set(oai_error *e, int status, const char *type, const char *param,
                  const char *code, const char *fmt, ...)
{
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type ? type : INVALID);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return status;
}

/* A string that may hold any bytes, as valid JSON (bad bytes -> U+FFFD). */
static json_t *str_or_null(const char *s)
{
    if (!s || !*s)
        return json_null();
    json_t *v = json_string(s);
    return v ? v : json_string("?");
}

json_t *oai_error_json(const oai_error *e)
{
    json_t *msg = json_string(e->message);
    if (!msg) { /* a message quoting invalid UTF-8: keep only the ASCII */
        char clean[sizeof e->message];
        size_t i = 0;
        for (; e->message[i] && i < sizeof clean - 1; i++)
            clean[i] = (unsigned char)e->message[i] < 0x80 ? e->message[i] : '?';
        clean[i] = 0;
        msg = json_string(clean);
    }
    return json_pack("{s:{s:o,s:s,s:o,s:o}}", "error", "message", msg ? msg : json_string(""),
                     "type", e->type, "param", str_or_null(e->param), "code",
                     str_or_null(e->code));
}

/* ---- loading ---- */

/* The deepest nesting of brackets outside strings, scanning at most until
 * it passes limit. */
static int json_depth(const char *s, size_t n, int limit)
{
    int d = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++d > max && (max = d) > limit)
                return max;
        } else if (c == ']' || c == '}') {
            d--;
        }
    }
    return max;
}

int oai_json_load(const char *buf, size_t len, json_t **out, oai_error *err)
{
    *out = NULL;
    if (json_depth(buf, len, OAI_MAX_DEPTH) > OAI_MAX_DEPTH)
        return oai_error_set(err, 400, INVALID, NULL, NULL,
                             "the request body is nested more than %d levels deep", OAI_MAX_DEPTH);
    json_error_t je;
    json_t *v = json_loadb(buf, len, 0, &je);
    if (!v) {
        if (json_error_code(&je) == json_error_invalid_utf8)
            return oai_error_set(err, 400, INVALID, NULL, NULL,
                                 "the request body is not valid UTF-8 (near byte %d)",
                                 je.position);
        return oai_error_set(err, 400, INVALID, NULL, NULL,
                             "the request body is not valid JSON: %s (near byte %d)", je.text,
                             je.position);
    }
    *out = v;
    return 0;
}

/* ---- field helpers: each returns 0 or the status after filling err ---- */

static int type_error(oai_error *err, const char *field, const char *what)
{
    return oai_error_set(err, 400, INVALID, field, NULL, "'%s' must be %s", field, what);
}

/* An integer field (integral reals accepted, as pydantic does) in
 * [lo, hi]; absent or null leaves *out. */
static int get_int(const json_t *o, const char *field, long long lo, long long hi, long long *out,
                   oai_error *err)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v))
        return 0;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
               fabs(json_real_value(v)) < 9e15) {
        x = (long long)json_real_value(v);
    } else {
        return type_error(err, field, "an integer");
    }
    if (x < lo || x > hi)
        return oai_error_set(err, 400, INVALID, field, NULL,
                             "'%s' must be in [%lld, %lld], got %lld", field, lo, hi, x);
    *out = x;
    return 0;
}

/* A number field in [lo, hi] (lo_open: lo excluded). */
static int get_num(const json_t *o, const char *field, double lo, double hi, bool lo_open,
                   float *out, oai_error *err)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return type_error(err, field, "a number");
    double x = json_number_value(v);
    if (!isfinite(x) || x > hi || (lo_open ? x <= lo : x < lo))
        return oai_error_set(err, 400, INVALID, field, NULL, "'%s' must be in %c%g, %g], got %g",
                             field, lo_open ? '(' : '[', lo, hi, x);
    *out = (float)x;
    return 0;
}

static int get_bool(const json_t *o, const char *field, bool *out, oai_error *err)
{
    json_t *v = json_object_get(o, field);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return type_error(err, field, "a boolean");
    *out = json_is_true(v);
    return 0;
}

static int nomem(oai_error *err)
{
    return oai_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
}

/* ---- the parts ---- */

static int parse_stop(const json_t *body, oai_request *r, oai_error *err)
{
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v))
        return 0;
    size_t n = json_is_string(v) ? 1 : json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_string(v) && !json_is_array(v))
        return type_error(err, "stop", "a string or an array of strings");
    if (n > SMP_MAX_STOP)
        return oai_error_set(err, 400, INVALID, "stop", NULL,
                             "'stop' may hold at most %d strings, got %zu", SMP_MAX_STOP, n);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(v) ? v : json_array_get(v, i);
        if (!json_is_string(s))
            return type_error(err, "stop", "a string or an array of strings");
        size_t len = json_string_length(s);
        if (len == 0 || len > SMP_MAX_STOP_LEN || strlen(json_string_value(s)) != len)
            return oai_error_set(err, 400, INVALID, "stop", NULL,
                                 "each stop string must have 1 to %d bytes (and no NUL)",
                                 SMP_MAX_STOP_LEN);
        if (!(r->stops[r->params.n_stop] = strdup(json_string_value(s))))
            return nomem(err);
        r->params.n_stop++;
    }
    return 0;
}

static int parse_logit_bias(const json_t *body, oai_request *r, int32_t n_vocab, oai_error *err)
{
    json_t *v = json_object_get(body, "logit_bias");
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return type_error(err, "logit_bias", "an object of token ids to numbers");
    size_t n = json_object_size(v);
    if (n > OAI_MAX_LOGIT_BIAS)
        return oai_error_set(err, 400, INVALID, "logit_bias", NULL,
                             "'logit_bias' may hold at most %d entries", OAI_MAX_LOGIT_BIAS);
    if (n && !(r->bias = malloc(sizeof *r->bias * n)))
        return nomem(err);
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id >= n_vocab)
            return oai_error_set(err, 400, INVALID, "logit_bias", NULL,
                                 "logit_bias: '%.40s' is not a token id in [0, %d)", key,
                                 (int)n_vocab);
        if (!json_is_number(val) || !(json_number_value(val) >= -100) ||
            !(json_number_value(val) <= 100))
            return oai_error_set(err, 400, INVALID, "logit_bias", NULL,
                                 "logit_bias: the bias of token %ld must be a number in "
                                 "[-100, 100]", id);
        r->bias[r->params.n_logit_bias++] =
            (vt_logit_bias){(int32_t)id, (float)json_number_value(val)};
    }
    r->params.logit_bias = r->bias;
    return 0;
}

/* Completions prompts: a string, a token array, or a list of either. */
static int add_prompt(oai_request *r, const tok_tokenizer *tok, const json_t *p, int32_t n_vocab,
                      oai_error *err)
{
    oai_prompt *q = &r->prompts[r->n_prompts++]; /* counted now: freed on any failure */
    if (json_is_string(p)) {
        const char *s = json_string_value(p);
        size_t len = json_string_length(p);
        int32_t *body;
        size_t nb;
        if (tok_encode(tok, s, len, false, true, &body, &nb))
            return nomem(err);
        bool bos = tok_add_bos(tok) && tok_bos(tok) != TOK_NULL;
        if (!(q->ids = malloc(sizeof *q->ids * (nb + 1))) || !(q->text = malloc(len + 1))) {
            free(body);
            return nomem(err);
        }
        if (bos)
            q->ids[0] = tok_bos(tok);
        if (nb)
            memcpy(q->ids + bos, body, sizeof *body * nb);
        free(body);
        q->n = (int64_t)(nb + bos);
        memcpy(q->text, s, len);
        q->text[len] = 0;
        q->len = len;
    } else {
        size_t n = json_array_size(p);
        if (!(q->ids = malloc(sizeof *q->ids * (n + 1))))
            return nomem(err);
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(p, i);
            if (!json_is_integer(t) || json_integer_value(t) < 0 ||
                json_integer_value(t) >= n_vocab)
                return oai_error_set(err, 400, INVALID, "prompt", NULL,
                                     "prompt token %zu must be a token id in [0, %d)", i,
                                     (int)n_vocab);
            q->ids[i] = (int32_t)json_integer_value(t);
        }
        q->n = (int64_t)n;
        if (tok_detokenize(tok, q->ids, n, false, r->params.special, &q->text,
                           &q->len))
            return nomem(err);
    }
    if (q->n == 0)
        return oai_error_set(err, 400, INVALID, "prompt", NULL, "the prompt is empty");
    return 0;
}

static bool is_token_array(const json_t *v)
{
    if (!json_is_array(v) || json_array_size(v) == 0)
        return false;
    return json_is_integer(json_array_get(v, 0));
}

static int parse_prompts(const json_t *body, oai_request *r, const tok_tokenizer *tok,
                         int32_t n_vocab, oai_error *err)
{
    json_t *p = json_object_get(body, "prompt");
    if (!p || json_is_null(p))
        return oai_error_set(err, 400, INVALID, "prompt", NULL, "'prompt' is required");
    const char *what = "a string, an array of token ids, or an array of either";
    size_t n = 1;
    bool list = json_is_array(p) && !is_token_array(p);
    if (!json_is_string(p) && !json_is_array(p))
        return type_error(err, "prompt", what);
    if (list) {
        n = json_array_size(p);
        if (n == 0)
            return oai_error_set(err, 400, INVALID, "prompt", NULL, "the prompt is empty");
        if (n > OAI_MAX_PROMPTS)
            return oai_error_set(err, 400, INVALID, "prompt", NULL,
                                 "at most %d prompts per request, got %zu", OAI_MAX_PROMPTS, n);
    }
    if (!(r->prompts = calloc(n, sizeof *r->prompts)))
        return nomem(err);
    for (size_t i = 0; i < n; i++) {
        json_t *q = list ? json_array_get(p, i) : p;
        if (!json_is_string(q) && !(json_is_array(q) && (json_array_size(q) == 0 || is_token_array(q))))
            return type_error(err, "prompt", what);
        int rc = add_prompt(r, tok, q, n_vocab, err);
        if (rc)
            return rc;
    }
    return 0;
}

/* Messages with text parts joined into string content; other part types
 * are refused. *out is a new array. */
static int normalize_messages(const json_t *msgs, json_t **out, oai_error *err)
{
    static const char *const roles[] = {"system", "user", "assistant", "tool", "developer",
                                        "function"};
    *out = NULL;
    if (!json_is_array(msgs))
        return type_error(err, "messages", "an array of message objects");
    if (json_array_size(msgs) == 0)
        return oai_error_set(err, 400, INVALID, "messages", NULL, "'messages' must not be empty");
    json_t *res = json_array();
    if (!res)
        return nomem(err);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char field[64];
        snprintf(field, sizeof field, "messages[%zu]", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        size_t k = 0;
        while (role && k < sizeof roles / sizeof roles[0] && strcmp(role, roles[k]))
            k++;
        if (!json_is_object(m) || !role || k == sizeof roles / sizeof roles[0]) {
            json_decref(res);
            return oai_error_set(err, 400, INVALID, field, NULL,
                                 "'%s' must be an object with a 'role' of system, user, "
                                 "assistant, tool or developer", field);
        }
        json_t *c = json_object_get(m, "content"), *copy = json_copy(m);
        if (!copy || json_array_append_new(res, copy)) {
            json_decref(res);
            return nomem(err);
        }
        if (!c || json_is_null(c) || json_is_string(c))
            continue;
        if (!json_is_array(c)) {
            json_decref(res);
            snprintf(field + strlen(field), sizeof field - strlen(field), ".content");
            return type_error(err, field, "a string or an array of text parts");
        }
        size_t cap = 0, len = 0, j;
        char *text = NULL;
        json_t *part;
        json_array_foreach(c, j, part) {
            const char *t = json_string_value(json_object_get(part, "text"));
            const char *ty = json_string_value(json_object_get(part, "type"));
            if (!t || !ty || strcmp(ty, "text")) {
                free(text);
                json_decref(res);
                snprintf(field + strlen(field), sizeof field - strlen(field), ".content[%zu]", j);
                return oai_error_set(err, 400, INVALID, field, NULL,
                                     "'%s' must be a {\"type\": \"text\", \"text\": ...} part "
                                     "(other content types are not supported)", field);
            }
            size_t tl = json_string_length(json_object_get(part, "text"));
            if (len + tl + 1 > cap) {
                char *nt = realloc(text, cap = (len + tl + 1) * 2);
                if (!nt) {
                    free(text);
                    json_decref(res);
                    return nomem(err);
                }
                text = nt;
            }
            memcpy(text + len, t, tl);
            len += tl;
        }
        json_t *s = json_stringn(text ? text : "", len);
        free(text);
        if (!s || json_object_set_new(copy, "content", s)) {
            json_decref(res);
            return nomem(err);
        }
    }
    *out = res;
    return 0;
}

/* tools, tool_choice, parallel_tool_calls (before the prompt: the choice
 * decides whether the template sees the tools). */
static int parse_tools(const json_t *body, oai_request *r, const oai_ctx *ctx, oai_error *err)
{
    json_t *tools = json_object_get(body, "tools"), *tc = json_object_get(body, "tool_choice");
    int rc;
    if (tools && json_is_null(tools))
        tools = NULL;
    if (tools) {
        if (!json_is_array(tools))
            return type_error(err, "tools", "an array");
        if (chat_tools_check(tools))
            return oai_error_set(err, 400, INVALID, "tools", NULL, "%s", vt_last_error());
        if (json_array_size(tools) == 0)
            tools = NULL;
    }
    r->tool_choice = tools ? OAI_TOOLS_AUTO : OAI_TOOLS_NONE;
    r->parallel_tool_calls = true;
    if ((rc = get_bool(body, "parallel_tool_calls", &r->parallel_tool_calls, err)))
        return rc;
    if (tc && !json_is_null(tc)) {
        const char *v = json_string_value(tc);
        if (v && !strcmp(v, "none")) {
            r->tool_choice = OAI_TOOLS_NONE;
        } else if (v && !strcmp(v, "auto")) {
            r->tool_choice = tools ? OAI_TOOLS_AUTO : OAI_TOOLS_NONE;
        } else if (v && !strcmp(v, "required")) {
            r->tool_choice = OAI_TOOLS_REQUIRED;
        } else if (json_is_object(tc)) {
            json_t *ty = json_object_get(tc, "type"), *fn = json_object_get(tc, "function");
            const char *name = json_string_value(json_object_get(fn, "name"));
            if (!json_is_string(ty) || strcmp(json_string_value(ty), "function") || !name)
                return oai_error_set(err, 400, INVALID, "tool_choice", NULL,
                                     "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                     "{\"type\": \"function\", \"function\": {\"name\": ...}}");
            if (tools && (r->tool_named = chat_tools_find(tools, name)) < 0)
                return oai_error_set(err, 400, INVALID, "tool_choice", NULL,
                                     "tool_choice names the function '%.100s', which is not "
                                     "among the tools", name);
            r->tool_choice = OAI_TOOLS_NAMED;
        } else {
            return oai_error_set(err, 400, INVALID, "tool_choice", NULL,
                                 "'tool_choice' must be \"none\", \"auto\", \"required\" or "
                                 "{\"type\": \"function\", \"function\": {\"name\": ...}}");
        }
        if (!tools && r->tool_choice != OAI_TOOLS_NONE)
            return oai_error_set(err, 400, INVALID, "tool_choice", NULL,
                                 "'tool_choice' %s needs 'tools'",
                                 r->tool_choice == OAI_TOOLS_REQUIRED ? "\"required\""
                                                                      : "naming a function");
    }
    if (r->tool_choice == OAI_TOOLS_NONE)
        return 0;
    r->tools = json_incref(tools);
    r->parse_tools = true;
    r->tool_family = chat_fmt_tool_family(ctx->chat);
    /* a family's call markers may be control tokens of the vocabulary
     * (Mistral's [TOOL_CALLS], Llama's <|python_tag|>): then their text is
     * kept (as vLLM's tool parsers do), unless the client chose */
    const tok_tokenizer *tok = ctx->engine ? eng_tokenizer(ctx->engine) : ctx->tok;
    const char *const *mk = chat_tool_markers(r->tool_family);
    bool control = false;
    for (int i = 0; tok && mk[i] && !control; i++) {
        int32_t id = tok_find(tok, mk[i], strlen(mk[i]));
        control = id != TOK_NULL && (tok_attr(tok, id) & TOK_ATTR_CONTROL);
    }
    if (control && !json_object_get(body, "skip_special_tokens"))
        r->params.special = true;
    if (r->tool_choice == OAI_TOOLS_REQUIRED || r->tool_choice == OAI_TOOLS_NAMED) {
        vt_err e = chat_tool_forced(r->tool_family, tools,
                                    r->tool_choice == OAI_TOOLS_NAMED ? r->tool_named : -1,
                                    &r->tool_prefill, &r->tool_grammar);
        if (e == VT_ERR_NOMEM)
            return nomem(err);
        if (e)
            return oai_error_set(err, 400, INVALID, "tools", NULL, "%s", vt_last_error());
        r->params.grammar_kind = VT_GRAMMAR_GBNF;
        r->params.grammar = r->tool_grammar;
    }
    return 0;
}

static int parse_chat_prompt(const json_t *body, oai_request *r, const oai_ctx *ctx,
                             oai_error *err)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!msgs || json_is_null(msgs))
        return oai_error_set(err, 400, INVALID, "messages", NULL, "'messages' is required");
    json_t *norm = NULL, *extra = NULL;
    int rc = normalize_messages(msgs, &norm, err);
    if (rc)
        return rc;
    if (!ctx->chat) {
        json_decref(norm);
        return oai_error_set(err, 400, INVALID, "messages", NULL,
                             "the model has no chat template (give one with --chat-template)");
    }
    json_t *kw = json_object_get(body, "chat_template_kwargs");
    if (kw && !json_is_null(kw) && !json_is_object(kw)) {
        json_decref(norm);
        return type_error(err, "chat_template_kwargs", "an object");
    }
    if ((rc = parse_tools(body, r, ctx, err))) {
        json_decref(norm);
        return rc;
    }
    if (!(extra = json_is_object(kw) ? json_deep_copy(kw) : json_object()) ||
        (r->tools && json_object_set(extra, "tools", r->tools))) {
        json_decref(norm);
        json_decref(extra);
        return nomem(err);
    }
    if (!(r->prompts = calloc(1, sizeof *r->prompts))) {
        json_decref(norm);
        json_decref(extra);
        return nomem(err);
    }
    r->n_prompts = 1;
    size_t n = 0;
    vt_err e = chat_prompt_suffix(ctx->chat, norm, true, extra, r->tool_prefill,
                                  &r->prompts[0].ids, &n);
    json_decref(norm);
    json_decref(extra);
    r->prompts[0].n = (int64_t)n;
    if (!e && r->parse_tools && !(r->tool_prefill && *r->tool_prefill) && n > 0) {
        /* a prompt that ends in <think> (DeepSeek R1's): the reply starts
         * inside the reasoning, which is never parsed for calls */
        const tok_tokenizer *tok = ctx->engine ? eng_tokenizer(ctx->engine) : ctx->tok;
        size_t k = n < 16 ? n : 16, tl;
        char *tail;
        if (tok_detokenize(tok, r->prompts[0].ids + n - k, k, false, true, &tail, &tl) == VT_OK) {
            while (tl && (tail[tl - 1] == '\n' || tail[tl - 1] == ' '))
                tl--;
            r->tool_in_think = tl >= 7 && !memcmp(tail + tl - 7, "<think>", 7);
            free(tail);
        }
    }
    if (e == VT_ERR_NOMEM)
        return nomem(err);
    if (e)
        return oai_error_set(err, 400, INVALID, "messages", NULL,
                             "the chat template failed on these messages: %s", vt_last_error());
    if (n == 0)
        return oai_error_set(err, 400, INVALID, "messages", NULL, "the prompt is empty");
    return 0;
}

static int parse_sampling(const json_t *body, oai_request *r, oai_error *err)
{
    vt_request_params *p = &r->params;
    long long v;
    int rc;
    v = p->n;
    if ((rc = get_int(body, "n", 1, 64, &v, err)))
        return rc;
    p->n = (int32_t)v;
    if ((rc = get_num(body, "temperature", 0, 2, false, &p->temperature, err)) ||
        (rc = get_num(body, "top_p", 0, 1, true, &p->top_p, err)) ||
        (rc = get_num(body, "min_p", 0, 1, false, &p->min_p, err)) ||
        (rc = get_num(body, "presence_penalty", -2, 2, false, &p->presence_penalty, err)) ||
        (rc = get_num(body, "frequency_penalty", -2, 2, false, &p->frequency_penalty, err)) ||
        (rc = get_num(body, "repetition_penalty", 0, 100, true, &p->repetition_penalty, err)))
        return rc;
    v = p->top_k;
    if ((rc = get_int(body, "top_k", -1, 1 << 30, &v, err)))
        return rc;
    p->top_k = (int32_t)(v < 0 ? 0 : v);
    json_t *seed = json_object_get(body, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed))
            return type_error(err, "seed", "an integer");
        p->seed = (uint64_t)json_integer_value(seed);
    }
    v = 0;
    if ((rc = get_int(body, "min_tokens", 0, 1 << 30, &v, err)))
        return rc;
    p->min_tokens = (int32_t)v;
    bool skip = true;
    if ((rc = get_bool(body, "ignore_eos", &p->ignore_eos, err)) ||
        (rc = get_bool(body, "skip_special_tokens", &skip, err)))
        return rc;
    p->special = !skip;
    return 0;
}

/* max_tokens (chat: max_completion_tokens first), then the context check in
 * OpenAI's words. */
static int parse_length(const json_t *body, oai_request *r, const oai_ctx *ctx, oai_error *err)
{
    long long max = r->endpoint == OAI_COMPLETIONS ? 16 : -1;
    const char *field = "max_tokens";
    int rc;
    if (r->endpoint == OAI_CHAT && json_object_get(body, "max_completion_tokens") &&
        !json_is_null(json_object_get(body, "max_completion_tokens")))
        field = "max_completion_tokens";
    if ((rc = get_int(body, field, 1, 1LL << 40, &max, err)))
        return rc;
    int64_t ctx_len = ctx->engine ? vt_engine_max_seq_len(ctx->engine) : ctx->max_seq_len;
    const char *what = r->endpoint == OAI_CHAT ? "messages" : "prompt";
    for (int32_t i = 0; i < r->n_prompts; i++) {
        int64_t np = r->prompts[i].n;
        if (np + (max > 0 ? max : 1) > ctx_len) {
            if (max > 0)
                return oai_error_set(
                    err, 400, INVALID, what, "context_length_exceeded",
                    "This model's maximum context length is %lld tokens. However, you requested "
                    "%lld tokens (%lld in the %s, %lld in the completion). Please reduce the "
                    "length of the %s or completion.",
                    (long long)ctx_len, (long long)(np + max), (long long)np,
                    r->endpoint == OAI_CHAT ? "messages" : "prompt", max, what);
            return oai_error_set(err, 400, INVALID, what, "context_length_exceeded",
                                 "This model's maximum context length is %lld tokens. However, "
                                 "your %s resulted in %lld tokens. Please reduce the length of "
                                 "the %s.",
                                 (long long)ctx_len, what, (long long)np, what);
        }
    }
    r->params.max_tokens = (int32_t)max;
    if (r->params.min_tokens > 0 && max > 0 && r->params.min_tokens > max)
        return oai_error_set(err, 400, INVALID, "min_tokens", NULL,
                             "'min_tokens' (%d) must not exceed '%s' (%lld)",
                             (int)r->params.min_tokens, field, max);
    return 0;
}

static int parse_logprobs(const json_t *body, oai_request *r, oai_error *err)
{
    json_t *lp = json_object_get(body, "logprobs");
    long long v = -1;
    int rc;
    if (r->endpoint == OAI_COMPLETIONS) {
        if (lp && json_is_boolean(lp))
            return type_error(err, "logprobs", "an integer in [0, 5]");
        if ((rc = get_int(body, "logprobs", 0, OAI_MAX_COMPLETION_LOGPROBS, &v, err)))
            return rc;
    } else {
        bool on = false;
        if ((rc = get_bool(body, "logprobs", &on, err)))
            return rc;
        long long top = 0;
        if ((rc = get_int(body, "top_logprobs", 0, SMP_MAX_TOP_LOGPROBS, &top, err)))
            return rc;
        json_t *t = json_object_get(body, "top_logprobs");
        if (!on && t && !json_is_null(t))
            return oai_error_set(err, 400, INVALID, "top_logprobs", NULL,
                                 "'top_logprobs' needs 'logprobs' set to true");
        v = on ? top : -1;
    }
    r->logprobs = (int32_t)v;
    r->params.logprobs = v >= 0;
    r->params.top_logprobs = v > 0 ? (int32_t)v : 0;
    return 0;
}

static int parse_stream(const json_t *body, oai_request *r, oai_error *err)
{
    int rc;
    if ((rc = get_bool(body, "stream", &r->stream, err)) ||
        (r->endpoint == OAI_COMPLETIONS && (rc = get_bool(body, "echo", &r->echo, err))))
        return rc;
    json_t *so = json_object_get(body, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return type_error(err, "stream_options", "an object");
        if (!r->stream)
            return oai_error_set(err, 400, INVALID, "stream_options", NULL,
                                 "'stream_options' is only allowed when 'stream' is true");
        if ((rc = get_bool(so, "include_usage", &r->include_usage, err)))
            return oai_error_set(err, 400, INVALID, "stream_options.include_usage", NULL,
                                 "'stream_options.include_usage' must be a boolean");
    }
    if (r->echo && r->logprobs >= 0)
        return oai_error_set(err, 400, INVALID, "echo", NULL,
                             "'echo' together with 'logprobs' (prompt logprobs) is not supported");
    json_t *u = json_object_get(body, "user");
    if (u && !json_is_null(u)) {
        if (!json_is_string(u))
            return type_error(err, "user", "a string");
        if (!(r->user = strdup(json_string_value(u))))
            return nomem(err);
    }
    return 0;
}

int oai_request_parse(oai_endpoint ep, const json_t *body, const oai_ctx *ctx,
                      oai_request **out, oai_error *err)
{
    *out = NULL;
    memset(err, 0, sizeof *err);
    if (!json_is_object(body))
        return oai_error_set(err, 400, INVALID, NULL, NULL, "the request body must be a JSON object");
    if (ep != OAI_COMPLETIONS && ep != OAI_CHAT)
        return oai_error_set(err, 404, INVALID, NULL, NULL, "unknown endpoint");
    oai_request *r = calloc(1, sizeof *r);
    if (!r)
        return nomem(err);
    r->endpoint = ep;
    r->params = vt_request_params_default();
    r->params.stop = (const char *const *)r->stops;
    r->logprobs = -1;
    const tok_tokenizer *tok = ctx->engine ? eng_tokenizer(ctx->engine) : ctx->tok;
    int32_t n_vocab = ctx->engine ? vt_engine_n_vocab(ctx->engine) : tok_n_vocab(tok);
    int rc = 0;
    json_t *model = json_object_get(body, "model");
    if (model && !json_is_null(model) && !json_is_string(model)) {
        rc = type_error(err, "model", "a string");
        goto fail;
    }
    const char *name = json_string_value(model);
    if (name && ctx->model_name && strcmp(name, ctx->model_name)) {
        rc = oai_error_set(err, 404, INVALID, "model", "model_not_found",
                           "The model `%.200s` does not exist.", name);
        goto fail;
    }
    if (!(r->model = strdup(name ? name : ctx->model_name ? ctx->model_name : "vitamin"))) {
        rc = nomem(err);
        goto fail;
    }
    if ((rc = parse_sampling(body, r, err)) || (rc = parse_stop(body, r, err)) ||
        (rc = parse_logit_bias(body, r, n_vocab, err)) || (rc = parse_logprobs(body, r, err)) ||
        (rc = parse_stream(body, r, err)))
        goto fail;
    rc = ep == OAI_COMPLETIONS ? parse_prompts(body, r, tok, n_vocab, err)
                               : parse_chat_prompt(body, r, ctx, err);
    if (rc || (rc = parse_length(body, r, ctx, err)) || (rc = oai_parse_format(body, r, err)))
        goto fail;
    for (int32_t i = 0; ctx->engine && i < r->n_prompts; i++) {
        vt_request_params p = oai_request_params(r, i);
        vt_err e = vt_request_check(ctx->engine, &p);
        if (e == VT_ERR_NOMEM) {
            rc = nomem(err);
            goto fail;
        }
        if (e) {
            rc = oai_error_set(err, 400, INVALID, NULL, NULL, "%s", vt_last_error());
            goto fail;
        }
    }
    *out = r;
    return 0;
fail:
    oai_request_free(r);
    return rc;
}

int oai_request_parse_text(oai_endpoint ep, const char *buf, size_t len, const oai_ctx *ctx,
                           oai_request **out, oai_error *err)
{
    json_t *body;
    *out = NULL;
    int rc = oai_json_load(buf, len, &body, err);
    if (rc)
        return rc;
    rc = oai_request_parse(ep, body, ctx, out, err);
    json_decref(body);
    return rc;
}

void oai_request_free(oai_request *r)
{
    if (!r)
        return;
    for (int32_t i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].ids);
        free(r->prompts[i].text);
    }
    free(r->prompts);
    for (int i = 0; i < SMP_MAX_STOP; i++)
        free(r->stops[i]);
    free(r->bias);
    free(r->model);
    free(r->user);
    json_decref(r->tools);
    free(r->tool_prefill);
    free(r->tool_grammar);
    free(r->format_grammar);
    free(r);
}

vt_request_params oai_request_params(const oai_request *r, int32_t i)
{
    vt_request_params p = r->params;
    p.prompt = r->prompts[i].ids;
    p.n_prompt = r->prompts[i].n;
    return p;
}
