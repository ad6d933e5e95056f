/*
 * test_toolcall.c - tool calls (src/chat/toolcall.c and their use by the
 * OpenAI layer):
 *  - the family of each chat template in tests/data/templates;
 *  - conversations with tools, tool calls and tool results (OpenAI's
 *    request shape) rendered through every template exactly as the oracle
 *    (@huggingface/jinja) renders them (tests/data/toolcall-render.json,
 *    made by tests/data/toolcall-regen.mjs);
 *  - render -> model output -> parse round trips for each family whose
 *    template renders calls: an assistant turn with calls is rendered, the
 *    text the template gives it is taken as the model's output, and parsing
 *    it must give the same calls back (names, arguments as JSON values),
 *    single and parallel, nested arguments and Unicode; Granite's format by
 *    hand (its template does not render calls);
 *  - streaming: every output fed byte by byte and in random splits gives
 *    content deltas and calls that concatenate to exactly the whole parse;
 *    text that may begin a marker is held back;
 *  - malformed outputs (unknown names, arguments that are not objects, bad
 *    or truncated JSON, invalid UTF-8, too deep) stay content, as written;
 *  - parallel_tool_calls false, `tools` and message checks, Mistral ids;
 *  - the OpenAI shapes from synthetic engine events (oai_request_parse with
 *    tools / tool_choice, oai_response body and stream chunks);
 *  - `vitamin serve` with the official `openai` client (tests/serve/
 *    tools.mjs) on a model made to emit calls (see test_serve_tools).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chat/chat.h"
#include "chat/toolcall.h"
#include "sample/grammar.h"
#include "server/oai.h"
#include "test.h"

#define TDIR "tests/data/templates/"
#define VOCAB "tests/data/vocab/ggml-vocab-llama-spm.gguf"

static gguf_file *vocab_file;
static tok_tokenizer *tok;

static bool need_tok(void)
{
    if (tok)
        return true;
    if (!test_need_file(VOCAB, "a tokenizer for the chat formats"))
        return false;
    if (gguf_open(VOCAB, &vocab_file) || tok_load(vocab_file, &tok)) {
        test_fail_at(__FILE__, __LINE__, "cannot load %s: %s", VOCAB, vt_last_error());
        return false;
    }
    return true;
}

static chat_fmt *load_fmt(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, TDIR "%s", name);
    if (!need_tok() || !test_need_file(path, "a chat template"))
        return NULL;
    chat_fmt *c = NULL;
    vt_err e = chat_fmt_load(NULL, tok, path, &c);
    CHECKF(e == VT_OK, "%s: %s", name, vt_last_error());
    return c;
}

static char *render(const chat_fmt *c, const json_t *msgs, bool gen, const json_t *tools)
{
    json_t *extra = json_object();
    if (tools)
        json_object_set(extra, "tools", (json_t *)tools);
    char *text = NULL;
    size_t len;
    vt_err e = chat_render(c, msgs, gen, extra, &text, &len);
    json_decref(extra);
    CHECKF(e == VT_OK, "render: %s", vt_last_error());
    return text;
}

static json_t *slice(const json_t *a, size_t from, size_t to)
{
    json_t *r = json_array();
    for (size_t i = from; i < to && i < json_array_size(a); i++)
        json_array_append(r, json_array_get(a, i));
    return r;
}

/* ---- families ---- */

static void test_detect(void)
{
    static const struct {
        const char *file;
        chat_tool_family f;
    } cases[] = {
        {"Qwen-Qwen2.5-7B-Instruct.jinja", CHAT_TOOLS_HERMES},
        {"Qwen-Qwen3-0.6B.jinja", CHAT_TOOLS_HERMES},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", CHAT_TOOLS_LLAMA3},
        {"mistralai-Mistral-Nemo-Instruct-2407.jinja", CHAT_TOOLS_MISTRAL},
        {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", CHAT_TOOLS_DEEPSEEK},
        {"ibm-granite-granite-3.3-2B-Instruct.jinja", CHAT_TOOLS_GRANITE},
        {"HuggingFaceTB-SmolLM3-3B.jinja", CHAT_TOOLS_HERMES},
        {"google-gemma-2-2b-it.jinja", CHAT_TOOLS_HERMES},
        {"microsoft-Phi-3.5-mini-instruct.jinja", CHAT_TOOLS_HERMES},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        chat_fmt *c = load_fmt(cases[i].file);
        if (!c)
            return;
        CHECKF(chat_fmt_tool_family(c) == cases[i].f, "%s: %s, expected %s", cases[i].file,
               chat_tool_family_name(chat_fmt_tool_family(c)),
               chat_tool_family_name(cases[i].f));
        chat_fmt_destroy(c);
    }
    CHECK(!strcmp(chat_tool_family_name(CHAT_TOOLS_DEEPSEEK), "deepseek"));
}

/* ---- renderings against the oracle ---- */

static void test_render_oracle(void)
{
    const char *path = "tests/data/toolcall-render.json";
    if (!need_tok() || !test_need_file(path, "the oracle's renderings"))
        return;
    json_error_t je;
    json_t *all = json_load_file(path, 0, &je);
    CHECKF(json_is_array(all), "%s: %s", path, je.text);
    size_t i, n_ok = 0, n_err = 0;
    json_t *c;
    json_array_foreach(all, i, c) {
        const char *tname = json_string_value(json_object_get(c, "template"));
        const char *name = json_string_value(json_object_get(c, "name"));
        json_t *req = json_object_get(c, "request");
        chat_fmt *f = load_fmt(tname);
        if (!f)
            break;
        json_t *extra = json_pack("{s:O}", "tools", json_object_get(req, "tools"));
        char *text = NULL;
        size_t len = 0;
        vt_err e = chat_render(f, json_object_get(req, "messages"), true, extra, &text, &len);
        const char *want = json_string_value(json_object_get(c, "expected"));
        if (want) {
            CHECKF(e == VT_OK, "%s %s: %s", tname, name, vt_last_error());
            if (!e) {
                CHECKF(len == strlen(want) && !memcmp(text, want, len),
                       "%s %s: rendered\n%s\nexpected\n%s", tname, name, text, want);
                n_ok++;
            }
        } else {
            const char *err = json_string_value(json_object_get(c, "error"));
            CHECKF(e != VT_OK, "%s %s: rendered where the oracle failed (%s)", tname, name, err);
            if (e)
                CHECKF(strstr(vt_last_error(), err) != NULL, "%s %s: error '%s', oracle '%s'",
                       tname, name, vt_last_error(), err);
            n_err++;
        }
        free(text);
        json_decref(extra);
        chat_fmt_destroy(f);
    }
    CHECKF(n_ok >= 25 && n_err >= 1, "%zu renderings, %zu errors", n_ok, n_err);
    json_decref(all);
}

/* ---- parsing helpers ---- */

typedef struct {
    char *content;
    size_t content_len;
    int32_t n_calls;
    chat_tool_call calls[16];
    int32_t order_ok; /* call events came in index order */
} parsed;

static void parsed_free(parsed *r)
{
    free(r->content);
    for (int32_t i = 0; i < r->n_calls; i++) {
        free(r->calls[i].name);
        free(r->calls[i].arguments);
    }
    memset(r, 0, sizeof *r);
}

static json_t *tools_json(void)
{
    return json_loads(
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"search\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"}}}}}]",
        0, NULL);
}

/* Parses text fed in pieces: splits[] gives the piece lengths (0 ends; NULL
 * feeds it whole); the content deltas and call events are collected. */
static bool split_think; /* parsers start inside the reasoning */

static void parse_split(chat_tool_family f, const json_t *tools, bool parallel, const char *text,
                        size_t len, const size_t *splits, parsed *out)
{
    memset(out, 0, sizeof *out);
    out->order_ok = 1;
    chat_tool_parser *p = chat_tool_parser_create(f, tools, parallel, 42);
    CHECK(p != NULL);
    if (!p)
        return;
    chat_tool_parser_set_think(p, split_think);
    size_t cap = len + 1, clen = 0;
    char *content = malloc(cap);
    size_t off = 0, k = 0;
    while (content) {
        size_t piece = splits ? splits[k++] : len;
        if (piece > len - off)
            piece = len - off;
        bool final = off + piece == len;
        const chat_tool_event *ev;
        size_t n_ev;
        vt_err e = chat_tool_parser_feed(p, text + off, piece, final, &ev, &n_ev);
        CHECKF(e == VT_OK, "feed: %s", vt_last_error());
        for (size_t i = 0; i < n_ev; i++) {
            if (ev[i].kind == CHAT_TEV_CONTENT) {
                CHECK(clen + ev[i].len <= len);
                if (clen + ev[i].len <= len) {
                    memcpy(content + clen, ev[i].text, ev[i].len);
                    clen += ev[i].len;
                }
            } else {
                if (ev[i].call != out->n_calls)
                    out->order_ok = 0;
                const chat_tool_call *c = chat_tool_parser_call(p, ev[i].call);
                if (c && out->n_calls < 16) {
                    chat_tool_call *d = &out->calls[out->n_calls++];
                    *d = *c;
                    d->name = strdup(c->name);
                    d->arguments = strdup(c->arguments);
                }
            }
        }
        off += piece;
        if (final || e)
            break;
    }
    if (content)
        content[clen] = 0;
    out->content = content;
    out->content_len = clen;
    size_t whole_len;
    const char *whole = chat_tool_parser_content(p, &whole_len);
    CHECK(whole_len == clen && (!clen || !memcmp(whole, content, clen)));
    CHECK(chat_tool_parser_n_calls(p) == out->n_calls);
    chat_tool_parser_destroy(p);
}

static void parse_whole(chat_tool_family f, const char *text, parsed *out)
{
    json_t *tools = tools_json();
    parse_split(f, tools, true, text, strlen(text), NULL, out);
    json_decref(tools);
}

static bool same_parse(const parsed *a, const parsed *b)
{
    if (a->content_len != b->content_len || memcmp(a->content, b->content, a->content_len) ||
        a->n_calls != b->n_calls)
        return false;
    for (int32_t i = 0; i < a->n_calls; i++)
        if (strcmp(a->calls[i].id, b->calls[i].id) || strcmp(a->calls[i].name, b->calls[i].name) ||
            strcmp(a->calls[i].arguments, b->calls[i].arguments))
            return false;
    return true;
}

/* Whole, byte by byte, and in 40 random splits: all the same. */
static void check_streaming(chat_tool_family f, const char *text, const char *what)
{
    json_t *tools = tools_json();
    size_t len = strlen(text);
    parsed whole, part;
    parse_split(f, tools, true, text, len, NULL, &whole);
    CHECK(whole.order_ok);
    size_t *splits = malloc((len + 2) * sizeof *splits);
    for (int round = 0; splits && round < 41; round++) {
        srand((unsigned)round * 7919u + 1);
        for (size_t i = 0; i <= len; i++)
            splits[i] = round == 0 ? 1 : 1 + (size_t)rand() % (round < 20 ? 4 : 24);
        parse_split(f, tools, true, text, len, splits, &part);
        CHECKF(same_parse(&whole, &part) && part.order_ok,
               "%s: split %d differs: content '%s' vs '%s', %d vs %d calls", what, round,
               part.content, whole.content, part.n_calls, whole.n_calls);
        parsed_free(&part);
    }
    free(splits);
    parsed_free(&whole);
    json_decref(tools);
}

static bool json_text_equal(const char *a, const char *b)
{
    json_t *x = json_loads(a, JSON_DECODE_ANY, NULL), *y = json_loads(b, JSON_DECODE_ANY, NULL);
    bool eq = x && y && json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return eq;
}

/* ---- render -> output -> parse ---- */

static const char *const turn_ends[] = {"<|im_end|>", "<|eot_id|>", "</s>",
                                        "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence"
                                        "\xef\xbd\x9c>", NULL};

static const char *const assistant_headers[] = {
    "<|im_start|>assistant\n", "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>", NULL};

/* The text a template gives the assistant message msgs[k]: the rendering of
 * msgs[0..k] (and the messages after it up to `to`) past that of
 * msgs[0..k), less the assistant header, up to the end of the turn. NULL
 * after a recorded failure. */
static char *assistant_output(const chat_fmt *c, const json_t *msgs, size_t k, size_t to,
                              const json_t *tools)
{
    json_t *pre = slice(msgs, 0, k), *full = slice(msgs, 0, to);
    char *a = render(c, pre, false, tools), *g = render(c, pre, true, tools),
         *b = render(c, full, false, tools), *out = NULL;
    json_decref(pre);
    json_decref(full);
    if (a && g && b) {
        size_t la = strlen(a);
        CHECKF(!strncmp(a, b, la), "the rendering of the first %zu messages is no prefix", k);
        const char *o = b + la;
        (void)g;
        for (int i = 0; assistant_headers[i]; i++)
            if (!strncmp(o, assistant_headers[i], strlen(assistant_headers[i]))) {
                o += strlen(assistant_headers[i]);
                break;
            }
        size_t end = strlen(o);
        for (int i = 0; turn_ends[i]; i++) {
            const char *t = strstr(o, turn_ends[i]);
            if (t && (size_t)(t - o) < end)
                end = (size_t)(t - o);
        }
        out = strndup(o, end);
    }
    free(a);
    free(g);
    free(b);
    return out;
}

static void round_trip(const char *tname, const char *conv, size_t k, bool content_kept)
{
    chat_fmt *c = load_fmt(tname);
    if (!c)
        return;
    json_error_t je;
    json_t *msgs = json_loads(conv, 0, &je), *tools = tools_json();
    CHECKF(msgs != NULL, "%s", je.text);
    if (msgs && chat_fmt_tool_family(c) == CHAT_TOOLS_MISTRAL) {
        /* its system message moves into the last user turn: not prefix-stable */
        json_array_remove(msgs, 0);
        k--;
    }
    char *out = msgs ? assistant_output(c, msgs, k, json_array_size(msgs), tools) : NULL;
    if (out) {
        parsed r;
        parse_whole(chat_fmt_tool_family(c), out, &r);
        json_t *want = json_object_get(json_array_get(msgs, k), "tool_calls");
        const char *wc = json_string_value(json_object_get(json_array_get(msgs, k), "content"));
        CHECKF(r.n_calls == (int32_t)json_array_size(want), "%s: %d calls from '%s'", tname,
               r.n_calls, out);
        for (int32_t i = 0; i < r.n_calls && i < (int32_t)json_array_size(want); i++) {
            json_t *fn = json_object_get(json_array_get(want, (size_t)i), "function");
            CHECKF(!strcmp(r.calls[i].name, json_string_value(json_object_get(fn, "name"))),
                   "%s: call %d is %s", tname, i, r.calls[i].name);
            CHECKF(json_text_equal(r.calls[i].arguments,
                                   json_string_value(json_object_get(fn, "arguments"))),
                   "%s: call %d arguments %s", tname, i, r.calls[i].arguments);
            CHECK(!strncmp(r.calls[i].id, "call_", 5) && strlen(r.calls[i].id) == 29);
        }
        const char *expect = content_kept && wc ? wc : "";
        CHECKF(!strcmp(r.content, expect), "%s: content '%s', expected '%s' (output '%s')",
               tname, r.content, expect, out);
        check_streaming(chat_fmt_tool_family(c), out, tname);
        parsed_free(&r);
    }
    free(out);
    json_decref(msgs);
    json_decref(tools);
    chat_fmt_destroy(c);
}

#define CONV_ONE                                                                                   \
    "[{\"role\":\"system\",\"content\":\"You are a weather bot.\"},"                               \
    "{\"role\":\"user\",\"content\":\"Weather?\"},"                                                \
    "{\"role\":\"assistant\",\"content\":%s,\"tool_calls\":[{\"id\":\"abc123XYZ\","               \
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"                  \
    "\"{\\\"city\\\": \\\"\xec\x84\x9c\xec\x9a\xb8 \\\\\\\"\xe5\x8c\x97\\\\\\\"\\\", "           \
    "\\\"nested\\\": {\\\"a\\\": [1, 2.5, {\\\"b\\\": null}], \\\"t\\\": true}}\"}}]},"                                                      \
    "{\"role\":\"tool\",\"tool_call_id\":\"abc123XYZ\",\"content\":\"sunny\"}]"

#define CONV_TWO                                                                                   \
    "[{\"role\":\"system\",\"content\":\"You are a weather bot.\"},"                               \
    "{\"role\":\"user\",\"content\":\"Weather and news?\"},"                                       \
    "{\"role\":\"assistant\",\"content\":%s,\"tool_calls\":["                                      \
    "{\"id\":\"A1b2C3d4E\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","          \
    "\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}},"                                           \
    "{\"id\":\"Z9y8X7w6V\",\"type\":\"function\",\"function\":{\"name\":\"search\","               \
    "\"arguments\":\"{\\\"query\\\": \\\"<tool_call> in text, \\\\u00e9\\\"}\"}}]},"               \
    "{\"role\":\"tool\",\"tool_call_id\":\"A1b2C3d4E\",\"content\":\"sunny\"},"                    \
    "{\"role\":\"tool\",\"tool_call_id\":\"Z9y8X7w6V\",\"content\":\"quiet\"}]"

static void test_round_trips(void)
{
    char one_null[2048], one_text[2048], two[2048], two_null[2048];
    snprintf(one_null, sizeof one_null, CONV_ONE, "null");
    snprintf(one_text, sizeof one_text, CONV_ONE, "\"Let me look that up.\"");
    snprintf(two, sizeof two, CONV_TWO, "\"Checking both.\"");
    snprintf(two_null, sizeof two_null, CONV_TWO, "null");
    round_trip("Qwen-Qwen2.5-7B-Instruct.jinja", one_null, 2, true);
    round_trip("Qwen-Qwen2.5-7B-Instruct.jinja", one_text, 2, true);
    round_trip("Qwen-Qwen2.5-7B-Instruct.jinja", two, 2, true);
    round_trip("Qwen-Qwen3-0.6B.jinja", one_null, 2, true);
    round_trip("Qwen-Qwen3-0.6B.jinja", two, 2, true);
    round_trip("meta-llama-Llama-3.1-8B-Instruct.jinja", one_null, 2, false);
    round_trip("mistralai-Mistral-Nemo-Instruct-2407.jinja", one_null, 2, false);
    round_trip("mistralai-Mistral-Nemo-Instruct-2407.jinja", two_null, 2, false);
    round_trip("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", one_null, 2, false);
    round_trip("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja", two_null, 2, false);
}

/* Outputs written by hand, as the models write them. */
static void test_hand_outputs(void)
{
    static const struct {
        chat_tool_family f;
        const char *out, *content;
        int calls;
        const char *args0;
    } cases[] = {
        {CHAT_TOOLS_GRANITE,
         "<|tool_call|>[{\"arguments\": {\"city\": \"Z\xc3\xbcrich\"}, \"name\": \"get_weather\"},"
         " {\"name\": \"search\", \"arguments\": {\"query\": \"x\"}}]",
         "", 2, "{\"city\": \"Z\xc3\xbcrich\"}"},
        {CHAT_TOOLS_GRANITE, "Sure. <|tool_call|>{\"name\": \"search\", \"arguments\": {}}", "Sure.",
         1, "{}"},
        {CHAT_TOOLS_LLAMA3, "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"query\": \"q\"}}",
         "", 1, "{\"query\": \"q\"}"},
        {CHAT_TOOLS_LLAMA3,
         "  {\"name\": \"get_weather\", \"arguments\": {\"city\": \"A\"}}; {\"name\": \"search\", "
         "\"parameters\": {\"query\": \"B\"}}",
         "", 2, "{\"city\": \"A\"}"},
        /* the built-in tool form */
        {CHAT_TOOLS_LLAMA3, "<|python_tag|>search.call(query=\"sf \\\"x\\\"\\n\", limit=3, safe=True)",
         "", 1, "{\"query\": \"sf \\\"x\\\"\\n\", \"limit\": 3, \"safe\": true}"},
        {CHAT_TOOLS_LLAMA3, "<|python_tag|>search.call()", "", 1, "{}"},
        {CHAT_TOOLS_LLAMA3, "<|python_tag|>print(\"hi\")", "<|python_tag|>print(\"hi\")", 0, NULL},
        {CHAT_TOOLS_LLAMA3, "<|python_tag|>nope.call(q=\"x\")", "<|python_tag|>nope.call(q=\"x\")", 0,
         NULL},
        {CHAT_TOOLS_LLAMA3, "<|python_tag|>search.call(q=x)", "<|python_tag|>search.call(q=x)", 0, NULL},
        {CHAT_TOOLS_LLAMA3, "<|python_tag|>search.call(q=\"unterminated",
         "<|python_tag|>search.call(q=\"unterminated", 0, NULL},
        {CHAT_TOOLS_LLAMA3, "The JSON is {\"name\": \"search\"}.",
         "The JSON is {\"name\": \"search\"}.", 0, NULL},
        {CHAT_TOOLS_LLAMA3, "{\"a\": 1} is an object", "{\"a\": 1} is an object", 0, NULL},
        {CHAT_TOOLS_MISTRAL,
         "[TOOL_CALLS] [{\"name\": \"search\", \"arguments\": {\"query\": \"x\"}, \"id\": "
         "\"abcdefghi\"}]",
         "", 1, "{\"query\": \"x\"}"},
        {CHAT_TOOLS_HERMES,
         "<think>\nI should call it.\n</think>\n\n<tool_call>\n{\"name\": \"search\", \"arguments\": "
         "{\"query\": \"-0.5e-7 and 1E+2\"}}\n</tool_call>",
         "<think>\nI should call it.\n</think>", 1, "{\"query\": \"-0.5e-7 and 1E+2\"}"},
        /* unterminated at the end of the output, JSON complete */
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": 1}}", "",
         1, "{\"query\": 1}"},
        /* a second <tool_call> before the first was closed */
        {CHAT_TOOLS_HERMES,
         "<tool_call>{\"name\": \"search\", \"arguments\": {}}\n<tool_call>{\"name\": \"search\", "
         "\"arguments\": {\"n\": [1e400, 123456789012345678901234567890]}}</tool_call>\nDone.",
         "Done.", 2, "{}"},
        {CHAT_TOOLS_DEEPSEEK,
         "Ok.<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c><\xef\xbd\x9c"
         "tool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>function<\xef\xbd\x9ctool"
         "\xe2\x96\x81sep\xef\xbd\x9c>search\n{\"query\": \"no fences\"}<\xef\xbd\x9ctool"
         "\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c><\xef\xbd\x9ctool\xe2\x96\x81"
         "calls\xe2\x96\x81" "end\xef\xbd\x9c>",
         "Ok.", 1, "{\"query\": \"no fences\"}"},
        /* malformed: stays content, as written */
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>",
         "<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>", 0, NULL},
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"search\", \"arguments\": \"q\"}</tool_call>",
         "<tool_call>{\"name\": \"search\", \"arguments\": \"q\"}</tool_call>", 0, NULL},
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"search\", \"arguments\": {]}</tool_call> x",
         "<tool_call>{\"name\": \"search\", \"arguments\": {]}</tool_call> x", 0, NULL},
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"search\", \"arguments\": {\"q\": \"tr",
         "<tool_call>{\"name\": \"search\", \"arguments\": {\"q\": \"tr", 0, NULL},
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"search\", \"arguments\": {\"q\": \"\xff\"}}",
         "<tool_call>{\"name\": \"search\", \"arguments\": {\"q\": \"\xff\"}}", 0, NULL},
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"search\", \"arguments\": {\"q\": 01}}",
         "<tool_call>{\"name\": \"search\", \"arguments\": {\"q\": 01}}", 0, NULL},
        {CHAT_TOOLS_HERMES, "<tool_call>{\"name\": \"search\", \"arguments\": {}} trailing</tool_call>",
         "<tool_call>{\"name\": \"search\", \"arguments\": {}} trailing</tool_call>", 0, NULL},
        {CHAT_TOOLS_MISTRAL,
         "[TOOL_CALLS][{\"name\": \"search\", \"arguments\": {}}, {\"name\": \"x\", \"arguments\": {}}] ok",
         "[TOOL_CALLS][{\"name\": \"search\", \"arguments\": {}}, {\"name\": \"x\", \"arguments\": {}}] ok",
         0, NULL},
        {CHAT_TOOLS_MISTRAL, "[TOOL_CALLS] not json", "[TOOL_CALLS] not json", 0, NULL},
        {CHAT_TOOLS_MISTRAL, "[TOOL_CALLS][]", "[TOOL_CALLS][]", 0, NULL},
        {CHAT_TOOLS_HERMES, "no calls at all <tool_ here, <b>bold</b>  ",
         "no calls at all <tool_ here, <b>bold</b>  ", 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        parsed r;
        parse_whole(cases[i].f, cases[i].out, &r);
        CHECKF(r.n_calls == cases[i].calls && !strcmp(r.content, cases[i].content),
               "case %zu: %d calls, content '%s'", i, r.n_calls, r.content);
        if (cases[i].args0 && r.n_calls > 0)
            CHECKF(!strcmp(r.calls[0].arguments, cases[i].args0), "case %zu: arguments %s", i,
                   r.calls[0].arguments);
        check_streaming(cases[i].f, cases[i].out, cases[i].out);
        parsed_free(&r);
    }
    /* reasoning: a call only planned in it is not made */
    static const char *const think =
        "<think>\nplan: <tool_call>{\"name\": \"search\", \"arguments\": {}}</tool_call> </thi\n"
        "</think>\n\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>";
    parsed t;
    parse_whole(CHAT_TOOLS_HERMES, think, &t);
    CHECKF(t.n_calls == 1 && !strcmp(t.calls[0].name, "get_weather") &&
               !strncmp(t.content, think, strlen(t.content)) &&
               !strcmp(t.content + strlen(t.content) - 8, "</think>"),
           "%d calls, content '%s'", t.n_calls, t.content);
    check_streaming(CHAT_TOOLS_HERMES, think, "think");
    parsed_free(&t);
    static const char *const ds_think =
        "plan <\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>function"
        "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>search\n{}<\xef\xbd\x9ctool\xe2\x96\x81"
        "call\xe2\x96\x81" "end\xef\xbd\x9c>\n</think>\n\n<\xef\xbd\x9ctool\xe2\x96\x81" "call"
        "\xe2\x96\x81" "begin\xef\xbd\x9c>function<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"
        "get_weather\n{}<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>";
    split_think = true;
    parse_whole(CHAT_TOOLS_DEEPSEEK, ds_think, &t);
    CHECKF(t.n_calls == 1 && !strcmp(t.calls[0].name, "get_weather") &&
               !strcmp(t.content + strlen(t.content) - 8, "</think>"),
           "%d calls, content '%s'", t.n_calls, t.content);
    check_streaming(CHAT_TOOLS_DEEPSEEK, ds_think, "think (deepseek)");
    parsed_free(&t);
    split_think = false;
    parse_whole(CHAT_TOOLS_DEEPSEEK, ds_think, &t); /* not in reasoning: both calls */
    CHECK(t.n_calls == 2);
    parsed_free(&t);

    /* nesting past the scanner's limit: content */
    char deep[2048];
    int n = snprintf(deep, sizeof deep, "<tool_call>{\"name\": \"search\", \"arguments\": ");
    for (int i = 0; i < 200; i++)
        n += snprintf(deep + n, sizeof deep - (size_t)n, i < 100 ? "{\"a\":" : "}");
    snprintf(deep + n, sizeof deep - (size_t)n, "}</tool_call>");
    parsed r;
    parse_whole(CHAT_TOOLS_HERMES, deep, &r);
    CHECK(r.n_calls == 0 && !strcmp(r.content, deep));
    parsed_free(&r);
}

/* Held-back text, deltas as they are released. */
#define FEED(p, str, fin) chat_tool_parser_feed(p, str, strlen(str), fin, &ev, &n)

static void test_holdback(void)
{
    json_t *tools = tools_json();
    chat_tool_parser *p = chat_tool_parser_create(CHAT_TOOLS_HERMES, tools, true, 1);
    const chat_tool_event *ev;
    size_t n;
    CHECK(FEED(p, "Hello <tool", false) == VT_OK);
    CHECK(n == 1 && ev[0].kind == CHAT_TEV_CONTENT && ev[0].len == 5 &&
          !memcmp(ev[0].text, "Hello", 5));
    CHECK(FEED(p, "_call>{\"name\": \"search\", ", false) == VT_OK);
    CHECK(n == 0);
    CHECK(FEED(p, "\"arguments\": {}}</tool_call>\n", false) == VT_OK);
    CHECK(n == 1 && ev[0].kind == CHAT_TEV_CALL && ev[0].call == 0);
    CHECK(FEED(p, "\nBye <tool", false) == VT_OK);
    CHECK(n == 1 && ev[0].kind == CHAT_TEV_CONTENT && ev[0].len == 3 &&
          !memcmp(ev[0].text, "Bye", 3));
    CHECK(FEED(p, "box>", true) == VT_OK);
    CHECK(n == 1 && ev[0].len == 10 && !memcmp(ev[0].text, " <toolbox>", 10));
    size_t len;
    const char *all = chat_tool_parser_content(p, &len);
    CHECKF(len == 18 && !memcmp(all, "HelloBye <toolbox>", 18), "content '%.*s'", (int)len, all);
    CHECK(chat_tool_parser_feed(p, "x", 1, true, &ev, &n) == VT_ERR_INVALID);
    chat_tool_parser_destroy(p);

    /* parallel_tool_calls false: the first call only */
    p = chat_tool_parser_create(CHAT_TOOLS_HERMES, tools, false, 1);
    const char *two = "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"1\"}}</tool_call>"
                      "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>";
    CHECK(chat_tool_parser_feed(p, two, strlen(two), true, &ev, &n) == VT_OK);
    CHECK(chat_tool_parser_n_calls(p) == 1 &&
          !strcmp(chat_tool_parser_call(p, 0)->arguments, "{\"query\": \"1\"}"));
    chat_tool_parser_content(p, &len);
    CHECK(len == 0);
    chat_tool_parser_destroy(p);

    /* ids: distinct, from the seed */
    p = chat_tool_parser_create(CHAT_TOOLS_HERMES, tools, true, 7);
    chat_tool_parser *q = chat_tool_parser_create(CHAT_TOOLS_HERMES, tools, true, 8);
    chat_tool_parser_feed(p, two, strlen(two), true, &ev, &n);
    chat_tool_parser_feed(q, two, strlen(two), true, &ev, &n);
    CHECK(chat_tool_parser_n_calls(p) == 2 && chat_tool_parser_n_calls(q) == 2);
    if (chat_tool_parser_n_calls(p) == 2 && chat_tool_parser_n_calls(q) == 2) {
        CHECK(strcmp(chat_tool_parser_call(p, 0)->id, chat_tool_parser_call(p, 1)->id));
        CHECK(strcmp(chat_tool_parser_call(p, 0)->id, chat_tool_parser_call(q, 0)->id));
    }
    chat_tool_parser_destroy(p);
    chat_tool_parser_destroy(q);
    json_decref(tools);
}

/* A long call fed a byte at a time stays fast (the searches resume). */
static void test_long_call(void)
{
    json_t *tools = tools_json();
    size_t big = 400000;
    for (int fam = 0; fam < 2; fam++) {
        char *text = malloc(big + 200);
        int n = snprintf(text, 200, "%s{\"name\": \"search\", \"arguments\": {\"query\": \"",
                         fam ? "[TOOL_CALLS]" : "<tool_call>");
        memset(text + n, 'x', big);
        strcpy(text + n + big, fam ? "\"}}" : "\"}}</tool_call>");
        size_t len = strlen(text);
        chat_tool_parser *p = chat_tool_parser_create(fam ? CHAT_TOOLS_MISTRAL : CHAT_TOOLS_HERMES,
                                                      tools, true, 1);
        const chat_tool_event *ev;
        size_t ne;
        for (size_t i = 0; i < len; i++)
            chat_tool_parser_feed(p, text + i, 1, i + 1 == len, &ev, &ne);
        CHECKF(chat_tool_parser_n_calls(p) == 1 &&
                   chat_tool_parser_call(p, 0)->arguments_len == big + 13,
               "%d calls", chat_tool_parser_n_calls(p));
        chat_tool_parser_destroy(p);
        free(text);
    }
    json_decref(tools);
}

/* Random outputs spliced from markers, JSON pieces and stray bytes: never a
 * crash, and every split gives the whole parse. */
static void test_random_outputs(void)
{
    static const char *const frags[] = {
        "<tool_call>", "</tool_call>", "<tool_", "[TOOL_CALLS]", "<|tool_call|>", "<|python_tag|>",
        ("<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"),
        ("<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"),
        ("<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"),
        ("<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"), "function", "\n```json\n", "\n```",
        "{\"name\": \"search\", \"arguments\": {\"query\": \"x\"}}", "{\"name\": \"get_weather\"",
        ", \"arguments\": {", "}", "]", "[", "{", "\"", "\\", ": ", ", ", ";", " ", "\n", "search",
        "\xff", "\xe6\x9d", "text", "1e5", "null", "[{\"name\": \"search\", \"arguments\": {}}]",
        ".call(", "search.call(", "q=", "=\"v\"", "True", ")", "'", "(", "x=1, "};
    static const char *const good[CHAT_TOOLS_N_FAMILIES] = {
        [CHAT_TOOLS_HERMES] = "<tool_call>{\"name\": \"search\", \"arguments\": {}}</tool_call>",
        [CHAT_TOOLS_LLAMA3] = "<|python_tag|>{\"name\": \"search\", \"parameters\": {}}",
        [CHAT_TOOLS_MISTRAL] = "[TOOL_CALLS][{\"name\": \"search\", \"arguments\": {}}]",
        [CHAT_TOOLS_GRANITE] = "<|tool_call|>[{\"name\": \"search\", \"arguments\": {}}]",
        [CHAT_TOOLS_DEEPSEEK] = "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
                                "function<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>search\n{}"
                                "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>",
    };
    size_t nf = sizeof frags / sizeof frags[0];
    json_t *tools = tools_json();
    srand(12345);
    int calls = 0;
    for (int round = 0; round < 600; round++) {
        char text[1024];
        size_t len = 0;
        int parts = 1 + rand() % 14;
        chat_tool_family fam = (chat_tool_family)(round % CHAT_TOOLS_N_FAMILIES);
        for (int k = 0; k < parts; k++) {
            const char *f = rand() % 5 == 0 ? good[fam] : frags[(size_t)rand() % nf];
            size_t fl = strlen(f);
            if (len + fl >= sizeof text)
                break;
            memcpy(text + len, f, fl);
            len += fl;
        }
        text[len] = 0;
        parsed whole, part;
        parse_split(fam, tools, true, text, len, NULL, &whole);
        size_t splits[1024];
        for (size_t i = 0; i < len + 1; i++)
            splits[i] = 1 + (size_t)rand() % 5;
        parse_split(fam, tools, true, text, len, splits, &part);
        CHECKF(same_parse(&whole, &part), "%s: '%s' splits differently", chat_tool_family_name(fam),
               text);
        CHECK(whole.content_len <= len);
        calls += whole.n_calls;
        parsed_free(&whole);
        parsed_free(&part);
    }
    CHECKF(calls > 100, "only %d calls in the random outputs", calls);
    json_decref(tools);
}

/* Forced calls: each family's opening and grammar accept the family's call
 * with schema-valid arguments only, and the opening plus such a body parses
 * back to that call. */
static void test_forced_grammar(void)
{
    json_t *tools = json_loads(
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":20},"
        "\"days\":{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"maxItems\":3}},"
        "\"required\":[\"city\"],\"additionalProperties\":false}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"search\"}}]",
        0, NULL);
    static const struct {
        chat_tool_family f;
        const char *good, *bad_args, *bad_name;
    } cases[] = {
        {CHAT_TOOLS_HERMES, "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\", \"days\": [1, 2]}}",
         "{\"name\": \"get_weather\", \"arguments\": {\"city\": 5}}",
         "{\"name\": \"other\", \"arguments\": {}}"},
        {CHAT_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Seoul\"}}",
         "{\"name\": \"get_weather\", \"parameters\": {\"town\": \"x\"}}",
         "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\"}}"},
        {CHAT_TOOLS_MISTRAL, "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"\xec\x84\x9c\xec\x9a\xb8\"}}]",
         "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a\", \"days\": [1, 2, 3, 4]}}]",
         "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"a\"}}, {\"name\": \"search\", \"arguments\": {}}]"},
        {CHAT_TOOLS_GRANITE, "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\"}}]",
         "[{\"name\": \"get_weather\", \"arguments\": {}}]", "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"x\"}}"},
        {CHAT_TOOLS_DEEPSEEK, "get_weather\n```json\n{\"city\": \"x\", \"days\": []}\n```",
         "get_weather\n```json\n{\"city\": [\"x\"]}\n```", "weather\n```json\n{\"city\": \"x\"}\n```"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int named = -1; named <= 0; named++) {
            char *pre = NULL, *g = NULL;
            vt_err e = chat_tool_forced(cases[i].f, tools, named, &pre, &g);
            CHECKF(e == VT_OK, "%s: %s", chat_tool_family_name(cases[i].f), vt_last_error());
            if (e)
                continue;
            smp_grammar *gr = NULL;
            smp_grammar_state *st = NULL;
            e = smp_grammar_compile(SMP_GRAMMAR_GBNF, g, strlen(g), NULL, &gr);
            CHECKF(e == VT_OK, "%s: %s in\n%s", chat_tool_family_name(cases[i].f), vt_last_error(), g);
            if (!e && smp_grammar_state_create(gr, &st) == VT_OK) {
                CHECKF(smp_grammar_matches(st, cases[i].good, strlen(cases[i].good)),
                       "%s: the grammar refuses %s", chat_tool_family_name(cases[i].f), cases[i].good);
                CHECKF(!smp_grammar_matches(st, cases[i].bad_args, strlen(cases[i].bad_args)),
                       "%s: the grammar takes %s", chat_tool_family_name(cases[i].f), cases[i].bad_args);
                CHECKF(!smp_grammar_matches(st, cases[i].bad_name, strlen(cases[i].bad_name)),
                       "%s: the grammar takes %s", chat_tool_family_name(cases[i].f), cases[i].bad_name);
            }
            smp_grammar_state_destroy(st);
            smp_grammar_unref(gr);
            /* the opening fed first, then the generated body: one call */
            char text[512];
            snprintf(text, sizeof text, "%s%s", pre, cases[i].good);
            parsed r;
            parse_whole(cases[i].f, text, &r);
            CHECKF(r.n_calls == 1 && r.content_len == 0 && !strcmp(r.calls[0].name, "get_weather"),
                   "%s: %d calls, content '%s' from %s", chat_tool_family_name(cases[i].f), r.n_calls,
                   r.content, text);
            parsed_free(&r);
            free(pre);
            free(g);
        }
    }
    /* a schema the converter refuses names the tool */
    json_t *bad = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                             "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"qqq\"}}}}}]",
                             0, NULL);
    char *pre = NULL, *g = NULL;
    CHECK(chat_tool_forced(CHAT_TOOLS_HERMES, bad, 0, &pre, &g) == VT_ERR_INVALID && !pre && !g &&
          strstr(vt_last_error(), "tools[0].function.parameters"));
    json_decref(bad);
    json_decref(tools);
}

/* A forced call is released as it is generated: one CALL_BEGIN with the
 * name, CALL_ARGS pieces that concatenate to the arguments, CALL at the
 * end; the same in every split; cut short, its arguments are cut short. */
static void forced_stream(chat_tool_family f, const char *pre, const char *body, const char *args,
                          const size_t *splits, bool bytewise)
{
    json_t *tools = tools_json();
    chat_tool_parser *p = chat_tool_parser_create(f, tools, true, 3);
    chat_tool_parser_set_forced(p);
    const chat_tool_event *ev;
    size_t ne, len = strlen(body), off = 0, k = 0;
    CHECK(chat_tool_parser_feed(p, pre, strlen(pre), false, &ev, &ne) == VT_OK && ne == 0);
    char got[1024] = "";
    int begins = 0, pieces = 0, ends = 0;
    bool end_last = true;
    while (off < len || len == 0) {
        size_t piece = splits && splits[k] < len - off ? splits[k] : len - off;
        k++;
        bool fin = off + piece == len;
        CHECK(chat_tool_parser_feed(p, body + off, piece, fin, &ev, &ne) == VT_OK);
        for (size_t i = 0; i < ne; i++) {
            CHECKF(ev[i].kind != CHAT_TEV_CONTENT, "%s: content '%.*s'", chat_tool_family_name(f),
                   (int)ev[i].len, ev[i].text);
            if (ev[i].kind == CHAT_TEV_CALL_BEGIN) {
                begins++;
                CHECK(pieces == 0 && ev[i].call == 0 &&
                      !strcmp(chat_tool_parser_call(p, 0)->name, "get_weather"));
            } else if (ev[i].kind == CHAT_TEV_CALL_ARGS) {
                pieces++;
                CHECK(begins == 1 && ends == 0 && strlen(got) + ev[i].len < sizeof got);
                for (size_t b = 0; b < ev[i].len;) { /* whole UTF-8 characters only */
                    size_t u = chat_utf8_len((const unsigned char *)ev[i].text + b, ev[i].len - b);
                    CHECKF(u > 0, "%s: a piece splits a character", chat_tool_family_name(f));
                    b += u ? u : ev[i].len;
                }
                strncat(got, ev[i].text, ev[i].len);
            } else if (ev[i].kind == CHAT_TEV_CALL) {
                ends++;
                end_last = fin && i + 1 == ne;
            }
        }
        off += piece;
        if (fin)
            break;
    }
    CHECKF(begins == 1 && ends == 1 && end_last, "%s: %d begins, %d ends", chat_tool_family_name(f),
           begins, ends);
    CHECKF(!strcmp(got, args), "%s: streamed arguments '%s', expected '%s'",
           chat_tool_family_name(f), got, args);
    CHECK(chat_tool_parser_n_calls(p) == 1 &&
          !strcmp(chat_tool_parser_call(p, 0)->arguments, got) &&
          chat_tool_parser_call(p, 0)->streamed);
    if (bytewise) /* a piece per byte, but for UTF-8 sequences and the last one */
        CHECKF(pieces >= (int)strlen(args) - 10, "%s: %d pieces for %zu bytes",
               chat_tool_family_name(f), pieces, strlen(args));
    size_t cl;
    chat_tool_parser_content(p, &cl);
    CHECK(cl == 0);
    chat_tool_parser_destroy(p);
    json_decref(tools);
}

static void test_forced_stream(void)
{
    static const struct {
        chat_tool_family f;
        const char *body;
    } cases[] = {
        {CHAT_TOOLS_HERMES, "{\"name\": \"get_weather\", \"arguments\": %s}"},
        {CHAT_TOOLS_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": %s}"},
        {CHAT_TOOLS_MISTRAL, "[{\"name\": \"get_weather\", \"arguments\": %s}]"},
        {CHAT_TOOLS_GRANITE, "[{\"name\": \"get_weather\", \"arguments\": %s}]"},
        {CHAT_TOOLS_DEEPSEEK, "get_weather\n```json\n%s\n```"},
    };
    const char *args = "{\"city\": \"\xec\x84\x9c\xec\x9a\xb8 \\\"}\\\"\", \"n\": [1, {\"x\": null}]}";
    json_t *tools = tools_json();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *pre = NULL, *g = NULL;
        CHECK(chat_tool_forced(cases[i].f, tools, 0, &pre, &g) == VT_OK);
        free(g);
        if (!pre)
            continue;
        char body[512];
        snprintf(body, sizeof body, cases[i].body, args);
        size_t splits[512];
        for (int round = 0; round < 12; round++) {
            srand((unsigned)round + 99);
            for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++)
                splits[k] = round == 0 ? 1 : 1 + (size_t)rand() % 7;
            forced_stream(cases[i].f, pre, body, args, round == 11 ? NULL : splits, round == 0);
        }
        /* cut short (max_tokens): the arguments so far */
        char cut[512];
        snprintf(cut, sizeof cut, "%.*s", (int)(strstr(body, "[1") - body), body);
        const char *cut_args = strstr(cut, "{\"city\"");
        forced_stream(cases[i].f, pre, cut, cut_args, NULL, false);
        /* an output of another shape: read as usual */
        chat_tool_parser *p = chat_tool_parser_create(cases[i].f, tools, true, 3);
        chat_tool_parser_set_forced(p);
        const chat_tool_event *ev;
        size_t ne, cl;
        chat_tool_parser_feed(p, pre, strlen(pre), false, &ev, &ne);
        chat_tool_parser_feed(p, "plain text", 10, true, &ev, &ne);
        const char *c = chat_tool_parser_content(p, &cl);
        CHECKF(chat_tool_parser_n_calls(p) == 0 && cl >= 10 && !memcmp(c + cl - 10, "plain text", 10),
               "%s: '%.*s'", chat_tool_family_name(cases[i].f), (int)cl, c);
        chat_tool_parser_destroy(p);
        free(pre);
    }
    json_decref(tools);
}

/* ---- tools and messages ---- */

static void test_checks(void)
{
    static const struct {
        const char *tools, *err;
    } bad[] = {
        {"{}", "tools: must be an array"},
        {"[1]", "tools[0]: must be an object"},
        {"[{\"type\":\"fn\",\"function\":{\"name\":\"a\"}}]", "tools[0].type"},
        {"[{\"type\":\"function\"}]", "tools[0].function: must be"},
        {"[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]", "tools[0].function.name"},
        {"[{\"type\":\"function\",\"function\":{\"name\":\"\"}}]", "tools[0].function.name"},
        {"[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":[]}}]",
         "tools[0].function.parameters"},
        {"[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},"
         "{\"type\":\"function\",\"function\":{\"name\":\"a\"}}]",
         "tools[1].function.name: 'a' is also"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *t = json_loads(bad[i].tools, JSON_DECODE_ANY, NULL);
        CHECKF(chat_tools_check(t) == VT_ERR_INVALID && strstr(vt_last_error(), bad[i].err),
               "%s: %s", bad[i].tools, vt_last_error());
        json_decref(t);
    }
    json_t *t = tools_json();
    CHECK(chat_tools_check(t) == VT_OK);
    CHECK(chat_tools_find(t, "search") == 1 && chat_tools_find(t, "nope") == -1);
    json_decref(t);

    static const struct {
        const char *msgs, *err;
    } badm[] = {
        {"[{\"role\":\"tool\",\"content\":\"x\"}]", "messages[0].tool_call_id"},
        {"[{\"role\":\"assistant\",\"tool_calls\":{}}]", "messages[0].tool_calls: must be"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
         "\"arguments\":\"[1]\"}}]}]",
         "messages[0].tool_calls[0].function.arguments"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
         "\"arguments\":\"{bad\"}}]}]",
         "messages[0].tool_calls[0].function.arguments"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{}}]}]",
         "messages[0].tool_calls[0].function.name"},
        {"[{\"role\":\"assistant\",\"tool_calls\":[{\"type\":\"x\",\"function\":{\"name\":\"f\"}}]}]",
         "messages[0].tool_calls[0].type"},
    };
    for (size_t i = 0; i < sizeof badm / sizeof badm[0]; i++) {
        json_t *m = json_loads(badm[i].msgs, 0, NULL), *out = NULL;
        CHECKF(chat_tool_messages(CHAT_TOOLS_HERMES, m, &out) == VT_ERR_INVALID &&
                   strstr(vt_last_error(), badm[i].err) && !out,
               "%s: %s", badm[i].msgs, vt_last_error());
        json_decref(m);
    }
    /* Mistral: other ids mapped to 9 alphanumerics, the same for a call and
     * its result; 9-character ids kept */
    json_t *m = json_loads(
        "[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"call_Abc\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{}\"}},{\"id\":\"abcdefghi\",\"function\":{\"name\":\"g\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_Abc\",\"content\":\"1\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"abcdefghi\",\"content\":\"2\"}]",
        0, NULL),
           *out = NULL;
    CHECK(chat_tool_messages(CHAT_TOOLS_MISTRAL, m, &out) == VT_OK);
    if (out) {
        json_t *calls = json_object_get(json_array_get(out, 0), "tool_calls");
        const char *id0 = json_string_value(json_object_get(json_array_get(calls, 0), "id"));
        const char *id1 = json_string_value(json_object_get(json_array_get(calls, 1), "id"));
        const char *r0 = json_string_value(json_object_get(json_array_get(out, 1), "tool_call_id"));
        CHECK(id0 && strlen(id0) == 9 && r0 && !strcmp(id0, r0));
        for (int i = 0; id0 && id0[i]; i++)
            CHECK((id0[i] >= '0' && id0[i] <= '9') || (id0[i] | 32) >= 'a');
        CHECK(id1 && !strcmp(id1, "abcdefghi"));
        json_t *args = json_object_get(json_object_get(json_array_get(calls, 0), "function"),
                                       "arguments");
        CHECK(json_is_object(args));
        CHECK(json_is_object(json_object_get(
            json_object_get(json_array_get(calls, 1), "function"), "arguments")));
        CHECK(!strcmp(json_string_value(json_object_get(json_array_get(calls, 1), "type")),
                      "function"));
    }
    json_decref(out);
    json_decref(m);
}


/* ---- the OpenAI shapes, from synthetic engine events ---- */

static const char *const REQ_TOOLS =
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search\"}}]";

static oai_request *oai_parse(const chat_fmt *c, const char *fmt, const char *extra, oai_error *err)
{
    char body[4096];
    snprintf(body, sizeof body, fmt, extra);
    oai_ctx ctx = {.tok = tok, .max_seq_len = 4096, .chat = c};
    oai_request *r = NULL;
    memset(err, 0, sizeof *err);
    oai_request_parse_text(OAI_CHAT, body, strlen(body), &ctx, &r, err);
    return r;
}

#define MSGS "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],%s}"

/* Feeds pieces (NULL-terminated) as token events, then FINISH and DONE;
 * returns the body (stream NULL) or the stream's chunks. */
static json_t *run_events(oai_request *r, const char *const *pieces, vt_finish fin, bool stream)
{
    oai_response *resp = oai_response_create(r, tok, "chatcmpl-test", 1);
    CHECK(resp != NULL);
    if (!resp)
        return NULL;
    json_t *chunks = stream ? oai_stream_begin(resp) : NULL;
    for (int i = 0; pieces[i]; i++) {
        vt_event ev = {.kind = VT_EV_TOKEN, .index = 0, .token = 1, .text = pieces[i],
                       .len = strlen(pieces[i])};
        if (stream) {
            json_t *a = oai_stream_event(resp, 0, &ev);
            CHECK(a != NULL);
            json_array_extend(chunks, a);
            json_decref(a);
        } else
            CHECK(oai_response_add(resp, 0, &ev) == VT_OK);
    }
    vt_event fe = {.kind = VT_EV_FINISH, .index = 0, .finish = fin, .text = "", .len = 0};
    vt_event de = {.kind = VT_EV_DONE, .index = 0, .usage = {.prompt_tokens = 5,
                                                             .completion_tokens = 3}};
    json_t *out;
    if (stream) {
        json_t *a = oai_stream_event(resp, 0, &fe);
        json_array_extend(chunks, a);
        json_decref(a);
        a = oai_stream_event(resp, 0, &de);
        json_array_extend(chunks, a);
        json_decref(a);
        out = chunks;
    } else {
        CHECK(oai_response_add(resp, 0, &fe) == VT_OK && oai_response_add(resp, 0, &de) == VT_OK);
        oai_error err;
        out = oai_response_body(resp, &err);
        CHECK(out != NULL);
    }
    oai_response_free(resp);
    return out;
}

static void test_oai_shapes(void)
{
    chat_fmt *c = load_fmt("Qwen-Qwen2.5-7B-Instruct.jinja");
    if (!c)
        return;
    oai_error err;
    oai_request *r = oai_parse(c, MSGS, REQ_TOOLS, &err);
    CHECKF(r != NULL, "%s", err.message);
    if (!r) {
        chat_fmt_destroy(c);
        return;
    }
    /* <tool_call> is no control token of this vocabulary: special text stays hidden */
    CHECK(r->parse_tools && r->tool_choice == OAI_TOOLS_AUTO && r->parallel_tool_calls &&
          !r->params.special && r->tool_family == CHAT_TOOLS_HERMES && !r->tool_in_think);
    char *text;
    size_t len;
    CHECK(tok_detokenize(tok, r->prompts[0].ids, (size_t)r->prompts[0].n, false, true, &text,
                         &len) == VT_OK);
    CHECKF(strstr(text, "<tools>") && strstr(text, "\"get_weather\""), "prompt: %s", text);
    free(text);

    static const char *const mixed[] = {"I'll check.", "\n<tool", "_call>\n{\"name\": \"get_weather\", ",
                                        "\"arguments\": {\"city\": \"Par", "is\"}}\n</tool_call>",
                                        "\n<tool_call>{\"name\": \"search\"}</tool_call>", NULL};
    json_t *b = run_events(r, mixed, VT_FINISH_EOS, false);
    json_t *ch = json_array_get(json_object_get(b, "choices"), 0);
    json_t *msg = json_object_get(ch, "message");
    CHECKF(!strcmp(json_string_value(json_object_get(msg, "content")), "I'll check."),
           "content %s", json_dumps(msg, 0));
    CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls"));
    json_t *calls = json_object_get(msg, "tool_calls");
    CHECK(json_array_size(calls) == 2);
    json_t *c0 = json_array_get(calls, 0), *f0 = json_object_get(c0, "function");
    CHECK(!strncmp(json_string_value(json_object_get(c0, "id")), "call_", 5));
    CHECK(!strcmp(json_string_value(json_object_get(c0, "type")), "function"));
    CHECK(!strcmp(json_string_value(json_object_get(f0, "name")), "get_weather"));
    CHECK(!strcmp(json_string_value(json_object_get(f0, "arguments")), "{\"city\": \"Paris\"}"));
    CHECK(!strcmp(json_string_value(json_object_get(
                      json_object_get(json_array_get(calls, 1), "function"), "arguments")),
                  "{}"));
    char *ids[2] = {strdup(json_string_value(json_object_get(c0, "id"))),
                    strdup(json_string_value(json_object_get(json_array_get(calls, 1), "id")))};
    json_decref(b);

    /* streamed: the same content and calls, in OpenAI's delta shape */
    json_t *chunks = run_events(r, mixed, VT_FINISH_EOS, true);
    char content[256] = "", args[2][256] = {"", ""};
    int heads = 0, finishes = 0;
    size_t i;
    json_t *k;
    json_array_foreach(chunks, i, k) {
        CHECK(!strcmp(json_string_value(json_object_get(k, "object")), "chat.completion.chunk"));
        json_t *c1 = json_array_get(json_object_get(k, "choices"), 0);
        json_t *d = json_object_get(c1, "delta"), *fr = json_object_get(c1, "finish_reason");
        if (json_is_string(fr)) {
            finishes++;
            CHECK(!strcmp(json_string_value(fr), "tool_calls") && i + 1 == json_array_size(chunks));
        }
        if (json_is_string(json_object_get(d, "content")))
            strncat(content, json_string_value(json_object_get(d, "content")),
                    sizeof content - strlen(content) - 1);
        json_t *tc = json_object_get(d, "tool_calls");
        if (!tc)
            continue;
        CHECK(json_array_size(tc) == 1 && !json_object_get(d, "content"));
        json_t *t = json_array_get(tc, 0), *fn = json_object_get(t, "function");
        int idx = (int)json_integer_value(json_object_get(t, "index"));
        CHECK(idx == 0 || idx == 1);
        if (idx < 0 || idx > 1)
            continue;
        if (json_object_get(t, "id")) {
            heads++;
            CHECK(!strcmp(json_string_value(json_object_get(t, "id")), ids[idx]));
            CHECK(!strcmp(json_string_value(json_object_get(t, "type")), "function"));
            CHECK(!strcmp(json_string_value(json_object_get(fn, "arguments")), ""));
            CHECK(!strcmp(json_string_value(json_object_get(fn, "name")),
                          idx ? "search" : "get_weather"));
        } else {
            CHECK(!json_object_get(fn, "name"));
        }
        strncat(args[idx], json_string_value(json_object_get(fn, "arguments")),
                sizeof args[idx] - strlen(args[idx]) - 1);
    }
    CHECKF(!strcmp(content, "I'll check."), "streamed content '%s'", content);
    CHECK(heads == 2 && finishes == 1);
    CHECK(!strcmp(args[0], "{\"city\": \"Paris\"}") && !strcmp(args[1], "{}"));
    json_decref(chunks);
    free(ids[0]);
    free(ids[1]);

    /* calls only: content null; a malformed call: content, "stop" */
    static const char *const only[] = {"<tool_call>{\"name\": \"search\", \"arguments\": {}}", NULL};
    b = run_events(r, only, VT_FINISH_EOS, false);
    msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
    CHECK(json_is_null(json_object_get(msg, "content")) &&
          json_array_size(json_object_get(msg, "tool_calls")) == 1);
    json_decref(b);
    static const char *const bad[] = {"<tool_call>{\"name\": \"nope\", \"arguments\": {}}", NULL};
    b = run_events(r, bad, VT_FINISH_EOS, false);
    ch = json_array_get(json_object_get(b, "choices"), 0);
    msg = json_object_get(ch, "message");
    CHECK(!strcmp(json_string_value(json_object_get(msg, "content")), bad[0]) &&
          !json_object_get(msg, "tool_calls") &&
          !strcmp(json_string_value(json_object_get(ch, "finish_reason")), "stop"));
    json_decref(b);
    /* cut by max_tokens: "length" stays */
    b = run_events(r, only, VT_FINISH_LENGTH, false);
    ch = json_array_get(json_object_get(b, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "length"));
    json_decref(b);
    oai_request_free(r);

    /* parallel_tool_calls false: one call */
    char extra[1024];
    snprintf(extra, sizeof extra, "%s,\"parallel_tool_calls\":false", REQ_TOOLS);
    r = oai_parse(c, MSGS, extra, &err);
    CHECK(r && !r->parallel_tool_calls);
    if (r) {
        b = run_events(r, mixed, VT_FINISH_EOS, false);
        msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
        CHECK(json_array_size(json_object_get(msg, "tool_calls")) == 1);
        json_decref(b);
    }
    oai_request_free(r);

    /* tool_choice none: no tools in the prompt, nothing parsed */
    snprintf(extra, sizeof extra, "%s,\"tool_choice\":\"none\"", REQ_TOOLS);
    r = oai_parse(c, MSGS, extra, &err);
    CHECK(r && !r->parse_tools && r->tool_choice == OAI_TOOLS_NONE);
    if (r) {
        CHECK(tok_detokenize(tok, r->prompts[0].ids, (size_t)r->prompts[0].n, false, true, &text,
                             &len) == VT_OK);
        CHECKF(!strstr(text, "<tools>"), "prompt: %s", text);
        free(text);
        b = run_events(r, only, VT_FINISH_EOS, false);
        msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
        CHECK(!strcmp(json_string_value(json_object_get(msg, "content")), only[0]));
        json_decref(b);
    }
    oai_request_free(r);

    /* a conversation with a call and its result renders */
    r = oai_parse(c,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather?\"},{\"role\":"
                  "\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":"
                  "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
                  "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":"
                  "\"call_1\",\"content\":\"sunny\"}],%s}",
                  REQ_TOOLS, &err);
    CHECKF(r != NULL, "%s", err.message);
    if (r) {
        CHECK(tok_detokenize(tok, r->prompts[0].ids, (size_t)r->prompts[0].n, false, true, &text,
                             &len) == VT_OK);
        CHECKF(strstr(text, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                            "{\"city\": \"Paris\"}}\n</tool_call>") &&
                   strstr(text, "<tool_response>\nsunny\n</tool_response>"),
               "prompt: %s", text);
        free(text);
    }
    oai_request_free(r);

    /* validation errors, in OpenAI's shape */
    static const struct {
        const char *extra, *param, *msg;
    } errs[] = {
        {"\"tools\":{}", "tools", "an array"},
        {"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]", "tools",
         "tools[0].function.name"},
        {"\"tool_choice\":\"required\"", "tool_choice", "needs 'tools'"},
        {"\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}", "tool_choice",
         "needs 'tools'"},
        {"\"tool_choice\":\"sometimes\"", "tool_choice", "must be"},
        {"\"tool_choice\":5", "tool_choice", "must be"},
        {"\"parallel_tool_calls\":1", "parallel_tool_calls", "a boolean"},
    };
    for (size_t e = 0; e < sizeof errs / sizeof errs[0]; e++) {
        r = oai_parse(c, MSGS, errs[e].extra, &err);
        CHECKF(!r && err.status == 400 && !strcmp(err.param, errs[e].param) &&
                   strstr(err.message, errs[e].msg) &&
                   !strcmp(err.type, "invalid_request_error"),
               "%s: %d %s %s", errs[e].extra, err.status, err.param, err.message);
        oai_request_free(r);
    }
    snprintf(extra, sizeof extra,
             "%s,\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}",
             REQ_TOOLS);
    r = oai_parse(c, MSGS, extra, &err);
    CHECK(!r && err.status == 400 && !strcmp(err.param, "tool_choice") &&
          strstr(err.message, "'nope'"));
    r = oai_parse(c,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"tool\","
                  "\"content\":\"r\"}]%s}",
                  "", &err);
    CHECKF(!r && err.status == 400 && !strcmp(err.param, "messages") &&
               strstr(err.message, "tool_call_id"),
           "%s", err.message);
    chat_fmt_destroy(c);

    /* DeepSeek R1: the prompt ends in <think>, the reply starts in reasoning */
    c = load_fmt("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
    if (!c)
        return;
    r = oai_parse(c, MSGS, REQ_TOOLS, &err); /* this template closes <think> unless asked */
    CHECKF(r && !r->tool_in_think && r->tool_family == CHAT_TOOLS_DEEPSEEK, "%s", err.message);
    oai_request_free(r);
    snprintf(extra, sizeof extra, "%s,\"chat_template_kwargs\":{\"enable_thinking\":true}",
             REQ_TOOLS);
    r = oai_parse(c, MSGS, extra, &err);
    CHECKF(r && r->tool_in_think && r->tool_family == CHAT_TOOLS_DEEPSEEK, "%s", err.message);
    if (r) {
        static const char *const dc[] = {
            "maybe <\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>x\n</think>\n\n",
            "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c><\xef\xbd\x9ctool"
            "\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>function<\xef\xbd\x9ctool\xe2\x96\x81"
            "sep\xef\xbd\x9c>search\n```json\n{\"query\": \"r1\"}\n```<\xef\xbd\x9ctool\xe2\x96\x81"
            "call\xe2\x96\x81" "end\xef\xbd\x9c>",
            NULL};
        b = run_events(r, dc, VT_FINISH_EOS, false);
        msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
        json_t *tc = json_array_get(json_object_get(msg, "tool_calls"), 0);
        CHECK(json_array_size(json_object_get(msg, "tool_calls")) == 1 &&
              !strcmp(json_string_value(json_object_get(json_object_get(tc, "function"),
                                                        "arguments")),
                      "{\"query\": \"r1\"}"));
        const char *ct = json_string_value(json_object_get(msg, "content"));
        CHECKF(ct && !strncmp(ct, "maybe ", 6) && strstr(ct, "</think>"), "content %s", ct);
        json_decref(b);
    }
    oai_request_free(r);
    chat_fmt_destroy(c);

    /* Mistral: [TOOL_CALLS] is a control token; its text is kept */
    c = load_fmt("mistralai-Mistral-Nemo-Instruct-2407.jinja");
    if (!c)
        return;
    r = oai_parse(c, MSGS, REQ_TOOLS, &err);
    CHECKF(r && r->tool_family == CHAT_TOOLS_MISTRAL, "%s", err.message);
    if (r) {
        static const char *const mc[] = {"[TOOL_CALLS][{\"name\": \"search\", \"arguments\": ",
                                         "{\"query\": \"x\"}}]", NULL};
        b = run_events(r, mc, VT_FINISH_EOS, false);
        msg = json_object_get(json_array_get(json_object_get(b, "choices"), 0), "message");
        CHECK(json_is_null(json_object_get(msg, "content")) &&
              json_array_size(json_object_get(msg, "tool_calls")) == 1);
        json_decref(b);
    }
    oai_request_free(r);
    chat_fmt_destroy(c);
}

int main(void)
{
    RUN_TEST(test_detect);
    RUN_TEST(test_render_oracle);
    RUN_TEST(test_round_trips);
    RUN_TEST(test_hand_outputs);
    RUN_TEST(test_holdback);
    RUN_TEST(test_long_call);
    RUN_TEST(test_random_outputs);
    RUN_TEST(test_forced_grammar);
    RUN_TEST(test_forced_stream);
    RUN_TEST(test_checks);
    RUN_TEST(test_oai_shapes);
    tok_destroy(tok);
    gguf_close(vocab_file);
    return test_finish("test_toolcall");
}
