/*
 * toolcall.h - tool calls in each model family's own format: which format a
 * chat template speaks (detected from its text), checking a request's
 * `tools` and the tool-call parts of its messages (assistant `tool_calls`,
 * `role: "tool"` results) and preparing them for the template, and parsing
 * a model's output into content and OpenAI-shaped tool calls, whole or
 * streamed.
 *
 * Families (chat_tool_family):
 *   HERMES   <tool_call>{"name": N, "arguments": {...}}</tool_call>, one
 *            block per call (Qwen2.5, Qwen3, Hermes; also the fallback for
 *            templates that show no tool format of their own: Gemma 2,
 *            Phi-3.5, this SmolLM3 template)
 *   LLAMA3   {"name": N, "parameters": {...}} ("arguments" accepted too) as
 *            the whole output or after <|python_tag|>, several separated by
 *            ';' or whitespace; and the built-in tool form
 *            <|python_tag|>N.call(arg="text", n=1) (Llama 3.1/3.2/3.3)
 *   MISTRAL  [TOOL_CALLS][{"name": N, "arguments": {...}}, ...] (Nemo form;
 *            a single object is accepted too)
 *   GRANITE  <|tool_call|>[{"name": N, "arguments": {...}}, ...] (Granite 3.x)
 *   DEEPSEEK <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>N
 *            \n```json\n{...}\n```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>
 *            (DeepSeek R1 and its distills; the fences are optional)
 *
 * The parser (chat_tool_parser) is one incremental machine used for both
 * whole and streamed outputs, so the two always agree: text is fed as it
 * is generated; content is released as soon as it cannot be the start of a
 * call (text that may begin a marker, and whitespace that may precede one,
 * is held back until known); a call is released when its block is complete
 * and valid. A block is valid when its JSON parses, every call in it names
 * one of the request's tools and its arguments are a JSON object (missing
 * arguments count as {}); an invalid block stays in the content as the
 * model wrote it, as vLLM's parsers do. Reasoning at the start of the
 * output (<think>...</think>) is content and never searched for calls (a
 * call the model only plans there is not made). Whitespace between calls, and
 * between content and a call, is dropped, so an output of calls only has
 * empty content. A call's `arguments` is the exact JSON text the model wrote
 * (never re-serialized: numbers keep their digits). Its id is "call_" and 24
 * letters and digits drawn from the parser's seed.
 *
 * Ownership: everything returned points into the parser and stays valid
 * until it is destroyed (calls) or fed again (events). Errors: VT_ERR_NOMEM;
 * the check functions return VT_ERR_INVALID with vt_last_error() naming the
 * field.
 */
#ifndef VT_TOOLCALL_H
#define VT_TOOLCALL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vitamin.h"

typedef enum {
    CHAT_TOOLS_HERMES = 0,
    CHAT_TOOLS_LLAMA3,
    CHAT_TOOLS_MISTRAL,
    CHAT_TOOLS_GRANITE,
    CHAT_TOOLS_DEEPSEEK,
    CHAT_TOOLS_N_FAMILIES
} chat_tool_family;

/* The family a template's source speaks (HERMES when it shows none). */
chat_tool_family chat_tool_family_detect(const char *src, size_t len);
/* "hermes", "llama3", "mistral", "granite", "deepseek". */
const char *chat_tool_family_name(chat_tool_family f);
/* The family's marker texts (NULL-terminated; static), e.g. to see whether
 * a vocabulary has them as special tokens. */
const char *const *chat_tool_markers(chat_tool_family f);

/* ---- requests ---- */

/* Checks a request's `tools` (an array of {"type": "function", "function":
 * {"name", "description"?, "parameters"?}}; names of 1..64 letters, digits,
 * '_' or '-', distinct; parameters a JSON object). VT_ERR_INVALID with the
 * field named (e.g. "tools[1].function.name: ..."). */
vt_err chat_tools_check(const json_t *tools);

/* The index in tools of the function named name, or -1. */
int chat_tools_find(const json_t *tools, const char *name);

/* Messages as the family's template expects them (a new array in *out):
 * each assistant `tool_calls` entry checked ({"id"?, "type"?: "function",
 * "function": {"name", "arguments"}}) with its `arguments` JSON string
 * parsed into an object, as transformers' templates take them (and as vLLM
 * hands them over); each `role: "tool"` message must carry a string
 * `tool_call_id`. For MISTRAL, whose template insists on ids of 9 letters
 * and digits, every other id (in tool_calls and tool_call_id alike) is
 * mapped to 9 characters by a hash, so a conversation's ids still match.
 * VT_ERR_INVALID naming the field, VT_ERR_NOMEM. */
vt_err chat_tool_messages(chat_tool_family f, const json_t *messages, json_t **out);

/* A forced call, for tool_choice "required" (named < 0: any of the tools)
 * or a named function (named: its index in tools): *prefill, the text that
 * opens a call in family f (put after the generation prompt, and fed to the
 * parser before the output), and *gbnf, a GBNF grammar (sample/grammar.h)
 * for the rest of exactly one call whose arguments follow the function's
 * `parameters` JSON Schema (the schemas converted by
 * smp_json_schema_to_gbnf, their rules renamed per tool). Both malloc'd
 * (the caller frees), NULL on failure: VT_ERR_INVALID naming the tool whose
 * schema cannot be converted, VT_ERR_NOMEM. */
vt_err chat_tool_forced(chat_tool_family f, const json_t *tools, int named, char **prefill,
                        char **gbnf);

/* ---- parsing ---- */

typedef struct {
    char id[32];      /* "call_" + 24 alphanumerics, NUL-terminated */
    char *name;       /* NUL-terminated */
    char *arguments;  /* JSON object text, NUL-terminated */
    size_t arguments_len;
    bool streamed;    /* released with CALL_BEGIN / CALL_ARGS before it was complete */
} chat_tool_call;

typedef enum {
    CHAT_TEV_CONTENT = 1,
    CHAT_TEV_CALL,       /* call `call` is complete (alone: it was released whole) */
    CHAT_TEV_CALL_BEGIN, /* a forced call's id and name are known (arguments "" so far) */
    CHAT_TEV_CALL_ARGS,  /* the next piece of a forced call's arguments */
} chat_tool_event_kind;

typedef struct {
    chat_tool_event_kind kind;
    const char *text;  /* CONTENT: the released content; CALL_ARGS: the piece */
    size_t len;
    int32_t call;      /* CALL, CALL_BEGIN, CALL_ARGS: the call's index */
} chat_tool_event;

typedef struct chat_tool_parser chat_tool_parser;

/* A parser for family f accepting calls to the functions of tools (a
 * checked tools array; the names are copied). parallel false keeps only the
 * first call (later call blocks are dropped). seed draws the ids. NULL on
 * OOM. */
chat_tool_parser *chat_tool_parser_create(chat_tool_family f, const json_t *tools, bool parallel,
                                          uint64_t seed);
void chat_tool_parser_destroy(chat_tool_parser *p); /* NULL is a no-op */

/* The output continues a forced call (chat_tool_forced's opening, fed
 * first, and the rest generated under its grammar): that call is released
 * as it is generated, CALL_BEGIN once its name is read and CALL_ARGS pieces
 * of its arguments, and CALL at the end of the output (an output cut short
 * leaves its arguments cut short, as OpenAI's do). An output of another
 * shape is read as usual. Before the first feed. */
void chat_tool_parser_set_forced(chat_tool_parser *p);

/* The output starts inside the model's reasoning (the prompt ended with
 * <think>, as DeepSeek R1's does): everything up to </think> is content
 * and never a call, as for an output that opens with <think> itself. Only
 * before the first feed. */
void chat_tool_parser_set_think(chat_tool_parser *p, bool in_think);

/* Feeds text[0..len) (any bytes); final marks the end of the output (held
 * text is then resolved). *ev receives the events this feed released, in
 * output order (*n_ev of them; valid until the next feed). VT_ERR_NOMEM
 * (the parser is then unusable), VT_ERR_INVALID when fed after final. */
vt_err chat_tool_parser_feed(chat_tool_parser *p, const char *text, size_t len, bool final,
                             const chat_tool_event **ev, size_t *n_ev);

/* Every call and all content released so far. */
int32_t chat_tool_parser_n_calls(const chat_tool_parser *p);
const chat_tool_call *chat_tool_parser_call(const chat_tool_parser *p, int32_t i);
const char *chat_tool_parser_content(const chat_tool_parser *p, size_t *len);

#endif
