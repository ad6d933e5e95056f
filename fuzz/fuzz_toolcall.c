/*
 * fuzz_toolcall.c - libFuzzer harness for the tool-call side of chat/
 * (toolcall.h). The first input byte picks the family, whether the output
 * starts inside reasoning and whether it continues a forced call (streamed
 * as it comes); the rest is a model's output, parsed
 * whole and again fed in pieces whose sizes come from a hash of the input:
 * the two must give the same content and calls (ids included), every call
 * must name one of the tools and carry a NUL-free arguments text starting
 * with '{' (a forced call cut short: any prefix), and the content can never be longer than the output. An input
 * that is a JSON array also goes through chat_tools_check and, as messages,
 * through chat_tool_messages, and, when it is a valid tools array, through
 * chat_tool_forced (its grammar text must be NUL-free). Any violation
 * aborts (a finding).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/toolcall.h"

static json_t *tools;

typedef struct {
    char *content;
    size_t len;
    int32_t n;
    char *ids[64], *names[64], *args[64];
} result;

static void result_free(result *r)
{
    free(r->content);
    for (int32_t i = 0; i < r->n && i < 64; i++) {
        free(r->ids[i]);
        free(r->names[i]);
        free(r->args[i]);
    }
}

static void parse(chat_tool_family f, bool think, bool forced, const char *s, size_t n,
                  uint64_t split, result *out)
{
    memset(out, 0, sizeof *out);
    chat_tool_parser *p = chat_tool_parser_create(f, tools, true, 7);
    if (!p)
        abort();
    chat_tool_parser_set_think(p, think);
    if (forced)
        chat_tool_parser_set_forced(p);
    const chat_tool_event *ev;
    size_t ne, off = 0;
    uint64_t x = split;
    do {
        size_t piece = split ? 1 + (size_t)((x = x * 6364136223846793005ull + 1) >> 59) : n;
        if (piece > n - off)
            piece = n - off;
        if (chat_tool_parser_feed(p, s + off, piece, off + piece == n, &ev, &ne))
            abort();
        off += piece;
    } while (off < n);
    size_t len;
    const char *c = chat_tool_parser_content(p, &len);
    if (len > n)
        abort();
    out->content = malloc(len + 1);
    memcpy(out->content, c, len);
    out->len = len;
    out->n = chat_tool_parser_n_calls(p);
    for (int32_t i = 0; i < out->n && i < 64; i++) {
        const chat_tool_call *t = chat_tool_parser_call(p, i);
        if (chat_tools_find(tools, t->name) < 0 || (!t->streamed && t->arguments[0] != '{') ||
            strlen(t->arguments) != t->arguments_len || strncmp(t->id, "call_", 5))
            abort();
        out->ids[i] = strdup(t->id);
        out->names[i] = strdup(t->name);
        out->args[i] = strdup(t->arguments);
    }
    chat_tool_parser_destroy(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tools)
        tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"search\"}},"
                           "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]",
                           0, NULL);
    if (size < 1)
        return 0;
    chat_tool_family f = (chat_tool_family)(data[0] % CHAT_TOOLS_N_FAMILIES);
    bool think = data[0] & 0x80, forced = data[0] & 0x40;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 1099511628211ull;
    result a, b;
    parse(f, think, forced, s, n, 0, &a);
    parse(f, think, forced, s, n, h | 1, &b);
    if (a.len != b.len || memcmp(a.content, b.content, a.len) || a.n != b.n)
        abort();
    for (int32_t i = 0; i < a.n && i < 64; i++)
        if (strcmp(a.ids[i], b.ids[i]) || strcmp(a.names[i], b.names[i]) ||
            strcmp(a.args[i], b.args[i]))
            abort();
    result_free(&a);
    result_free(&b);

    json_t *v = json_loadb(s, n, 0, NULL);
    if (json_is_array(v)) {
        if (chat_tools_check(v) == VT_OK && json_array_size(v) > 0) {
            char *pre = NULL, *g = NULL;
            if (chat_tool_forced(f, v, -1, &pre, &g) == VT_OK && (!pre || !g || strlen(g) == 0))
                abort();
            free(pre);
            free(g);
        }
        json_t *m = NULL;
        chat_tool_messages(f, v, &m);
        json_decref(m);
    }
    json_decref(v);
    return 0;
}
