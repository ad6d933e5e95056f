/*
 * toolcall_req.c - the request side of tool calls (see toolcall.h):
 * checking a request's `tools`, preparing the tool-call parts of its
 * messages for the family's template (arguments strings parsed into
 * objects, Mistral's 9-character ids), and the opening and grammar of a
 * forced call (each tool's parameter schema converted to GBNF by sample/
 * and its rules renamed per tool, inside the family's envelope).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/toolcall.h"
#include "chat/toolcall_int.h"
#include "sample/grammar.h"
#include "util/util.h"

#define MAX_TOOLS 256

/* ---- tools ---- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

static const char *tool_name(const json_t *tool)
{
    return json_string_value(json_object_get(json_object_get(tool, "function"), "name"));
}

vt_err chat_tools_check(const json_t *tools)
{
    if (!json_is_array(tools))
        return vt_fail(VT_ERR_INVALID, "tools: must be an array of tool objects");
    size_t n = json_array_size(tools);
    if (n > MAX_TOOLS)
        return vt_fail(VT_ERR_INVALID, "tools: at most %d tools, got %zu", MAX_TOOLS, n);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tools, i);
        if (!json_is_object(t))
            return vt_fail(VT_ERR_INVALID, "tools[%zu]: must be an object", i);
        json_t *ty = json_object_get(t, "type");
        if (!json_is_string(ty) || strcmp(json_string_value(ty), "function"))
            return vt_fail(VT_ERR_INVALID, "tools[%zu].type: must be \"function\"", i);
        json_t *f = json_object_get(t, "function");
        if (!json_is_object(f))
            return vt_fail(VT_ERR_INVALID, "tools[%zu].function: must be an object", i);
        json_t *nm = json_object_get(f, "name");
        if (!json_is_string(nm) || !name_ok(json_string_value(nm)))
            return vt_fail(VT_ERR_INVALID,
                           "tools[%zu].function.name: must be a string of 1 to 64 letters, "
                           "digits, underscores or dashes", i);
        json_t *d = json_object_get(f, "description");
        if (d && !json_is_null(d) && !json_is_string(d))
            return vt_fail(VT_ERR_INVALID, "tools[%zu].function.description: must be a string",
                           i);
        json_t *pa = json_object_get(f, "parameters");
        if (pa && !json_is_null(pa) && !json_is_object(pa))
            return vt_fail(VT_ERR_INVALID,
                           "tools[%zu].function.parameters: must be a JSON Schema object", i);
        json_t *st = json_object_get(f, "strict");
        if (st && !json_is_null(st) && !json_is_boolean(st))
            return vt_fail(VT_ERR_INVALID, "tools[%zu].function.strict: must be a boolean", i);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(tool_name(json_array_get(tools, k)), json_string_value(nm)))
                return vt_fail(VT_ERR_INVALID,
                               "tools[%zu].function.name: '%s' is also the name of tools[%zu]",
                               i, json_string_value(nm), k);
    }
    return VT_OK;
}

int chat_tools_find(const json_t *tools, const char *name)
{
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        const char *n = tool_name(t);
        if (n && name && !strcmp(n, name))
            return (int)i;
    }
    return -1;
}

/* ---- messages for the template ---- */

static bool mistral_id_ok(const char *id)
{
    if (strlen(id) != 9)
        return false;
    for (int i = 0; i < 9; i++)
        if (!isalnum((unsigned char)id[i]))
            return false;
    return true;
}

static json_t *mistral_id(const char *id)
{
    static const char digits[] =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (mistral_id_ok(id))
        return json_string(id);
    uint64_t h = vt_hash64(id, strlen(id), 0x746f6f6c63616c6cull);
    char out[10];
    for (int i = 0; i < 9; i++) {
        out[i] = digits[h % 62];
        h /= 62;
        if (i == 4)
            h ^= vt_hash64(id, strlen(id), h + 1);
    }
    out[9] = 0;
    return json_string(out);
}

static vt_err prepare_call(chat_tool_family f, json_t *tc, size_t mi, size_t ci, size_t *nth)
{
    if (!json_is_object(tc))
        return vt_fail(VT_ERR_INVALID, "messages[%zu].tool_calls[%zu]: must be an object", mi, ci);
    json_t *fn = json_object_get(tc, "function");
    if (!json_is_object(fn))
        return vt_fail(VT_ERR_INVALID,
                       "messages[%zu].tool_calls[%zu].function: must be an object", mi, ci);
    if (!json_is_string(json_object_get(fn, "name")))
        return vt_fail(VT_ERR_INVALID,
                       "messages[%zu].tool_calls[%zu].function.name: must be a string", mi, ci);
    json_t *ty = json_object_get(tc, "type");
    if (ty && !json_is_null(ty) &&
        (!json_is_string(ty) || strcmp(json_string_value(ty), "function")))
        return vt_fail(VT_ERR_INVALID,
                       "messages[%zu].tool_calls[%zu].type: must be \"function\"", mi, ci);
    if ((!ty || json_is_null(ty)) && json_object_set_new(tc, "type", json_string("function")))
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    json_t *args = json_object_get(fn, "arguments");
    if (json_is_string(args)) {
        json_error_t je;
        json_t *v = json_loadb(json_string_value(args), json_string_length(args), 0, &je);
        if (!json_is_object(v)) {
            json_decref(v);
            return vt_fail(VT_ERR_INVALID,
                           "messages[%zu].tool_calls[%zu].function.arguments: must be a JSON "
                           "object (as a string)%s%s", mi, ci, v ? "" : ": ", v ? "" : je.text);
        }
        if (json_object_set_new(fn, "arguments", v))
            return vt_fail(VT_ERR_NOMEM, "out of memory");
    } else if (!args || json_is_null(args)) {
        if (json_object_set_new(fn, "arguments", json_object()))
            return vt_fail(VT_ERR_NOMEM, "out of memory");
    } else if (!json_is_object(args)) {
        return vt_fail(VT_ERR_INVALID,
                       "messages[%zu].tool_calls[%zu].function.arguments: must be a JSON object "
                       "(as a string)", mi, ci);
    }
    json_t *id = json_object_get(tc, "id");
    if (id && !json_is_null(id) && !json_is_string(id))
        return vt_fail(VT_ERR_INVALID, "messages[%zu].tool_calls[%zu].id: must be a string", mi,
                       ci);
    if (f == CHAT_TOOLS_MISTRAL) {
        char made[32];
        snprintf(made, sizeof made, "call%zu", (*nth)++);
        json_t *m = mistral_id(json_is_string(id) ? json_string_value(id) : made);
        if (!m || json_object_set_new(tc, "id", m))
            return vt_fail(VT_ERR_NOMEM, "out of memory");
    }
    return VT_OK;
}

vt_err chat_tool_messages(chat_tool_family f, const json_t *messages, json_t **out)
{
    *out = NULL;
    json_t *res = json_deep_copy(messages);
    if (!res)
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    size_t i, nth = 0;
    json_t *m;
    vt_err e = VT_OK;
    json_array_foreach(res, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role)
            continue;
        json_t *tcs = json_object_get(m, "tool_calls");
        if (!strcmp(role, "assistant") && tcs && !json_is_null(tcs)) {
            if (!json_is_array(tcs)) {
                e = vt_fail(VT_ERR_INVALID, "messages[%zu].tool_calls: must be an array", i);
                break;
            }
            if (json_array_size(tcs) == 0) {
                json_object_del(m, "tool_calls");
                continue;
            }
            size_t k;
            json_t *tc;
            json_array_foreach(tcs, k, tc) if (!e) e = prepare_call(f, tc, i, k, &nth);
            if (e)
                break;
        } else if (!strcmp(role, "tool")) {
            json_t *id = json_object_get(m, "tool_call_id");
            if (!json_is_string(id)) {
                e = vt_fail(VT_ERR_INVALID,
                            "messages[%zu].tool_call_id: a message with role 'tool' needs the "
                            "id (a string) of the call it answers", i);
                break;
            }
            if (f == CHAT_TOOLS_MISTRAL) {
                json_t *mid = mistral_id(json_string_value(id));
                if (!mid || json_object_set_new(m, "tool_call_id", mid)) {
                    e = vt_fail(VT_ERR_NOMEM, "out of memory");
                    break;
                }
            }
        }
    }
    if (e) {
        json_decref(res);
        return e;
    }
    *out = res;
    return VT_OK;
}

/* ---- forced calls ---- */

/* Copies the GBNF text g with every rule name prefixed (names outside
 * string literals, character classes, repetition counts and comments). */
static void prefix_rules(vt_buf *out, const char *g, const char *prefix)
{
    size_t pl = strlen(prefix);
    for (size_t i = 0; g[i];) {
        char c = g[i];
        size_t j = i + 1;
        if (c == '#') {
            while (g[j] && g[j] != '\n')
                j++;
        } else if (c == '"' || c == '[' || c == '{') {
            char close = c == '"' ? '"' : c == '[' ? ']' : '}';
            while (g[j] && g[j] != close)
                j += g[j] == '\\' && g[j + 1] ? 2 : 1;
            if (g[j])
                j++;
        } else if (isalnum((unsigned char)c) || c == '-' || c == '_') {
            while (isalnum((unsigned char)g[j]) || g[j] == '-' || g[j] == '_')
                j++;
            vt_buf_add(out, prefix, pl);
        }
        vt_buf_add(out, g + i, j - i);
        i = j;
    }
}

vt_err chat_tool_forced(chat_tool_family f, const json_t *tools, int named, char **prefill,
                        char **gbnf)
{
    static const char *const opening[CHAT_TOOLS_N_FAMILIES] = {
        [CHAT_TOOLS_HERMES] = "<tool_call>\n",
        [CHAT_TOOLS_LLAMA3] = "",
        [CHAT_TOOLS_MISTRAL] = "[TOOL_CALLS]",
        [CHAT_TOOLS_GRANITE] = "<|tool_call|>",
        [CHAT_TOOLS_DEEPSEEK] = DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP,
    };
    *prefill = *gbnf = NULL;
    if (f < 0 || f >= CHAT_TOOLS_N_FAMILIES)
        f = CHAT_TOOLS_HERMES;
    size_t n = json_array_size(tools);
    if (n == 0 || named >= (int)n)
        return vt_fail(VT_ERR_INVALID, "tool_choice: no such tool");
    vt_buf g = {0}, rules = {0};
    bool arr = f == CHAT_TOOLS_MISTRAL || f == CHAT_TOOLS_GRANITE;
    vt_buf_add(&g, "root ::= ", 9);
    if (arr)
        vt_buf_add(&g, "\"[\" ", 4);
    vt_buf_add(&g, "(", 1);
    vt_err e = VT_OK;
    bool first = true;
    for (size_t i = 0; i < n && !e; i++) {
        if (named >= 0 && (size_t)named != i)
            continue;
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        json_t *params = json_object_get(fn, "parameters");
        char *schema = json_is_object(params) ? json_dumps(params, JSON_COMPACT)
                                              : strdup("{\"type\":\"object\"}");
        char *args = NULL;
        if (!schema) {
            e = vt_fail(VT_ERR_NOMEM, "out of memory");
            break;
        }
        e = smp_json_schema_to_gbnf(schema, strlen(schema), &args);
        free(schema);
        if (e) {
            e = vt_fail(e == VT_ERR_NOMEM ? e : VT_ERR_INVALID,
                        "tools[%zu].function.parameters: cannot generate arguments under this "
                        "schema: %s", i, vt_last_error());
            break;
        }
        char head[160], pre[24];
        snprintf(pre, sizeof pre, "t%zu-", i);
        if (f == CHAT_TOOLS_DEEPSEEK)
            snprintf(head, sizeof head, "\"%s\\n```json\\n\" t%zu-root \"\\n```\"", name, i);
        else
            snprintf(head, sizeof head,
                     "\"{\\\"name\\\": \\\"%s\\\", \\\"%s\\\": \" t%zu-root \"}\"", name,
                     f == CHAT_TOOLS_LLAMA3 ? "parameters" : "arguments", i);
        if (!first)
            vt_buf_add(&g, " | ", 3);
        first = false;
        vt_buf_add(&g, head, strlen(head));
        prefix_rules(&rules, args, pre);
        vt_buf_add(&rules, "\n", 1);
        free(args);
    }
    vt_buf_add(&g, ")", 1);
    if (arr)
        vt_buf_add(&g, " \"]\"", 4);
    vt_buf_add(&g, "\n", 1);
    if (!e && rules.len)
        vt_buf_add(&g, rules.p, rules.len);
    free(rules.p);
    if (!e && (g.oom || rules.oom || !(*prefill = strdup(opening[f]))))
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
    if (e) {
        free(g.p);
        return e;
    }
    *gbnf = g.p;
    return VT_OK;
}

