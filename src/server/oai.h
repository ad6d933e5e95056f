/*
 * oai.h - OpenAI-compatible request and response bodies, without HTTP: the
 * part of the API that `vitamin serve` and `vitamin run-batch` share (and a
 * fuzz harness can drive). A /v1/completions or /v1/chat/completions body
 * (JSON text or an already parsed jansson value) is validated into an
 * oai_request: the prompt tokens of each prompt (completions: the model's BOS
 * rule, special-token text parsed, as `vitamin run` does; chat: the model's
 * chat template through chat/) and the engine's vt_request_params. Every
 * problem is an oai_error carrying what the server sends: the HTTP status and
 * OpenAI's error object (message naming the field, type, param, code). Unknown
 * fields are ignored, as vLLM does.
 *
 * An oai_response then collects the engine's events of the request's engine
 * requests (one per prompt; choice index = prompt * n + completion, as OpenAI
 * orders them) into a `text_completion` or `chat.completion` body, or turns
 * each event into the streaming chunks to send (`text_completion` chunks;
 * `chat.completion.chunk` with a role delta first, content deltas, a final
 * chunk with finish_reason, and the usage chunk when include_usage).
 * With tools, each chat choice's text goes through a tool-call parser
 * (chat/toolcall.h): the message gets `tool_calls` (content null when
 * there is no other text) and finish_reason "tool_calls"; streams carry
 * OpenAI's `tool_calls` deltas (the first with index, id, type and name and
 * arguments "", then the arguments).
 *
 * Ownership: everything returned is owned by the caller (free with the
 * matching function, json_decref for json_t). The context's engine and chat
 * format are borrowed. Nothing here keeps global state; distinct objects may
 * be used from distinct threads.
 */
#ifndef VT_OAI_H
#define VT_OAI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/chat.h"
#include "sample/sampler.h"
#include "vitamin.h"

#define OAI_MAX_DEPTH 64      /* nesting of a request body */
#define OAI_MAX_PROMPTS 256   /* prompts in one completions request */
#define OAI_MAX_LOGIT_BIAS 1024
#define OAI_MAX_COMPLETION_LOGPROBS 5

typedef enum { OAI_COMPLETIONS = 1, OAI_CHAT = 2 } oai_endpoint;

/* An error as the server sends it: status, and {"error": {message, type,
 * param, code}} (empty param/code are sent as null). */
typedef struct {
    int status;
    char type[40];
    char param[64];
    char code[40];
    char message[512];
} oai_error;

/* Fills e and returns e->status. */
int oai_error_set(oai_error *e, int status, const char *type, const char *param,
                  const char *code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* {"error": {...}}; NULL on OOM. */
json_t *oai_error_json(const oai_error *e);

/* What requests are validated against (all borrowed). */
typedef struct {
    /* The engine: its tokenizer and limits, and vt_request_check for every
     * prompt. NULL (a fuzz harness, a tokenizer-only check): tok and
     * max_seq_len below are used instead and vt_request_check is skipped. */
    const vt_engine *engine;
    const tok_tokenizer *tok; /* with engine NULL */
    int64_t max_seq_len;      /* with engine NULL */
    const chat_fmt *chat;     /* NULL: chat requests are refused (no template) */
    const char *model_name;   /* NULL: any "model" is accepted */
} oai_ctx;

typedef enum {
    OAI_TOOLS_NONE = 0, /* no tools, or tool_choice "none" */
    OAI_TOOLS_AUTO,
    OAI_TOOLS_REQUIRED,
    OAI_TOOLS_NAMED,
} oai_tool_choice;

typedef struct {
    int32_t *ids; /* the prompt's tokens (malloc'd) */
    int64_t n;
    char *text;   /* completions: the prompt's text (for echo), NUL-terminated */
    size_t len;
} oai_prompt;

typedef struct {
    oai_endpoint endpoint;
    char *model;         /* the requested model (or the context's name) */
    int32_t n_prompts;   /* completions: prompts in the list; chat: 1 */
    oai_prompt *prompts;
    /* Everything but prompt/n_prompt (oai_request_params fills those). stop
     * and logit_bias point into this object. */
    vt_request_params params;
    char *stops[SMP_MAX_STOP];
    vt_logit_bias *bias;
    /* completions: -1 (none) or 0..5 alternatives; chat: -1 (logprobs off)
     * or top_logprobs 0..20 */
    int32_t logprobs;
    bool echo;
    bool stream;
    bool include_usage;
    char *user;
    /* chat tools: tools (the checked array, NULL without), the choice
     * (tool_choice "none" renders no tools and parses no calls), whether
     * calls are parsed out of the output (in the template's family), and
     * for "required" / a named function the forced call: tool_prefill (the
     * family's call opening, put after the generation prompt and fed to the
     * parser first) and the GBNF grammar the rest is generated under. */
    json_t *tools;
    oai_tool_choice tool_choice;
    int32_t tool_named; /* OAI_TOOLS_NAMED: its index in tools */
    bool parse_tools;
    bool parallel_tool_calls;
    chat_tool_family tool_family;
    bool tool_in_think; /* the prompt ends inside the model's reasoning */
    char *tool_prefill;
    char *tool_grammar;
    /* structured output (oai_format.c): the grammar text response_format or
     * a guided_* field asked for, which params.grammar points to */
    char *format_grammar;
} oai_request;

/* Parses JSON text as a request body must be: at most OAI_MAX_DEPTH deep,
 * valid UTF-8, one value. *out is the value (the caller json_decrefs it);
 * on failure returns 400 with *err filled and *out NULL; 0 on success. */
int oai_json_load(const char *buf, size_t len, json_t **out, oai_error *err);

/* Validates body (an object) for endpoint ep into *out (free with
 * oai_request_free). Returns 0, or the HTTP status with *err filled (400
 * invalid_request_error for wrong types and values, a prompt past the
 * context, 404 model_not_found for another model name, 500 on OOM) and *out
 * NULL. */
int oai_request_parse(oai_endpoint ep, const json_t *body, const oai_ctx *ctx,
                      oai_request **out, oai_error *err);
/* oai_json_load then oai_request_parse. */
int oai_request_parse_text(oai_endpoint ep, const char *buf, size_t len, const oai_ctx *ctx,
                           oai_request **out, oai_error *err);
void oai_request_free(oai_request *r); /* NULL is a no-op */

/* Structured output (oai_format.c): response_format (text, json_object,
 * json_schema) or one of vLLM's guided_json, guided_regex, guided_grammar,
 * guided_choice in body becomes r's grammar (params.grammar_kind/grammar,
 * the text in r->format_grammar). 0, or 400 with *err naming the field:
 * two kinds at once, one with a forced tool call, a malformed value. The
 * grammar compiles in vt_request_check / vt_submit (an unsupported schema
 * keyword is their error). */
int oai_parse_format(const json_t *body, oai_request *r, oai_error *err);

/* The engine parameters for prompt i (pointing into r). */
vt_request_params oai_request_params(const oai_request *r, int32_t i);

/* ---- responses ---- */

typedef struct oai_response oai_response;

/* A response to r (borrowed: it must outlive the response); tok is the
 * model's tokenizer (for logprobs' token texts); id NULL makes one
 * ("cmpl-..." / "chatcmpl-..."); created is the Unix time. NULL on OOM. */
oai_response *oai_response_create(const oai_request *r, const tok_tokenizer *tok, const char *id,
                                  int64_t created);
void oai_response_free(oai_response *s); /* NULL is a no-op */
const char *oai_response_id(const oai_response *s);

/* Collects an event of prompt i's engine request (non-streaming). An ERROR
 * event marks the response failed. VT_ERR_NOMEM, VT_ERR_INVALID (bad index). */
vt_err oai_response_add(oai_response *s, int32_t prompt, const vt_event *ev);
/* True once every prompt's DONE event was added. */
bool oai_response_done(const oai_response *s);
/* The whole body (text_completion or chat.completion), or NULL with *err
 * filled (500 for a request that failed in the engine, or OOM). */
json_t *oai_response_body(oai_response *s, oai_error *err);
/* Usage so far, over every prompt. */
vt_usage oai_response_usage(const oai_response *s);

/* Streaming: the chunks to send first (chat: a role delta per choice;
 * completions: none), as a JSON array. NULL on OOM. */
json_t *oai_stream_begin(oai_response *s);
/* The chunks an event turns into (possibly none), as a JSON array; the
 * event is collected as with oai_response_add. NULL on OOM or a bad index. */
json_t *oai_stream_event(oai_response *s, int32_t prompt, const vt_event *ev);
/* The final usage chunk (empty choices) when the request asked for
 * include_usage, else NULL. */
json_t *oai_stream_usage(oai_response *s);

#endif
