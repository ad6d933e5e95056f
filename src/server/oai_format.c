/*
 * oai_format.c - structured output in requests (oai.h, oai_parse_format):
 * OpenAI's response_format ({"type": "text" | "json_object" |
 * "json_schema", "json_schema": {"name", "schema", "strict"}}) and vLLM's
 * extras under the same names (guided_json: a schema as an object or a
 * string; guided_regex; guided_grammar: GBNF; guided_choice: a list of
 * strings, one of which is the whole output), turned into the engine
 * request's grammar (vt_request_params.grammar / grammar_kind). At most one
 * of them per request, and not with a forced tool call (which has its own
 * grammar). The grammar itself is compiled by vt_submit: a schema keyword
 * or a regex construct that is not supported is a 400 naming it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/oai.h"
#include "util/util.h"

#define INVALID "invalid_request_error"
#define MAX_CHOICES 1024

/* One GBNF string literal for s (its bytes; ", \ and control bytes
 * escaped). */
static void gbnf_literal(vt_buf *b, const char *s)
{
    vt_buf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        if (*p == '"' || *p == '\\') {
            e[0] = '\\';
            e[1] = (char)*p;
            vt_buf_add(b, e, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(e, sizeof e, "\\x%02X", *p);
            vt_buf_add(b, e, 4);
        } else {
            vt_buf_add(b, (const char *)p, 1);
        }
    }
    vt_buf_add(b, "\"", 1);
}

/* guided_choice as GBNF: root ::= "a" | "b" | ... */
static int choice_grammar(const json_t *choices, char **out, oai_error *err)
{
    size_t n = json_array_size(choices);
    if (!json_is_array(choices) || n == 0 || n > MAX_CHOICES)
        return oai_error_set(err, 400, INVALID, "guided_choice", NULL,
                             "'guided_choice' must be a list of 1..%d strings", MAX_CHOICES);
    vt_buf b = {0};
    vt_buf_add(&b, "root ::= ", 9);
    for (size_t i = 0; i < n; i++) {
        const char *c = json_string_value(json_array_get(choices, i));
        if (!c || !*c) {
            free(b.p);
            return oai_error_set(err, 400, INVALID, "guided_choice", NULL,
                                 "guided_choice[%zu] must be a non-empty string", i);
        }
        if (i)
            vt_buf_add(&b, " | ", 3);
        gbnf_literal(&b, c);
    }
    vt_buf_add(&b, "\n", 1);
    if (b.oom) {
        free(b.p);
        return oai_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
    }
    *out = b.p;
    return 0;
}

/* A schema given as an object or as JSON text, as compact JSON text. */
static int schema_text(const json_t *v, const char *param, char **out, oai_error *err)
{
    if (json_is_string(v)) {
        json_error_t je;
        json_t *s = json_loads(json_string_value(v), 0, &je);
        if (!s)
            return oai_error_set(err, 400, INVALID, param, NULL,
                                 "'%s' is not valid JSON: %s", param, je.text);
        bool ok = json_is_object(s) || json_is_boolean(s);
        json_decref(s);
        if (!ok)
            return oai_error_set(err, 400, INVALID, param, NULL,
                                 "'%s' must be a JSON Schema (an object)", param);
        *out = strdup(json_string_value(v));
    } else if (json_is_object(v) || json_is_boolean(v)) {
        *out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    } else {
        return oai_error_set(err, 400, INVALID, param, NULL,
                             "'%s' must be a JSON Schema (an object)", param);
    }
    if (!*out)
        return oai_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
    return 0;
}

static int response_format(const json_t *rf, vt_grammar_kind *kind, char **text, oai_error *err)
{
    if (!json_is_object(rf))
        return oai_error_set(err, 400, INVALID, "response_format", NULL,
                             "'response_format' must be an object with a 'type'");
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!type)
        return oai_error_set(err, 400, INVALID, "response_format.type", NULL,
                             "'response_format.type' must be \"text\", \"json_object\" or "
                             "\"json_schema\"");
    if (!strcmp(type, "text"))
        return 0;
    if (!strcmp(type, "json_object")) {
        *kind = VT_GRAMMAR_JSON_OBJECT;
        return 0;
    }
    if (strcmp(type, "json_schema"))
        return oai_error_set(err, 400, INVALID, "response_format.type", NULL,
                             "response_format type '%.64s' is not supported (text, json_object, "
                             "json_schema)",
                             type);
    json_t *js = json_object_get(rf, "json_schema");
    if (!json_is_object(js))
        return oai_error_set(err, 400, INVALID, "response_format.json_schema", NULL,
                             "'response_format.json_schema' must be an object with 'name' and "
                             "'schema'");
    json_t *name = json_object_get(js, "name"), *strict = json_object_get(js, "strict");
    if (!json_is_string(name) || !*json_string_value(name) ||
        strlen(json_string_value(name)) > 64)
        return oai_error_set(err, 400, INVALID, "response_format.json_schema.name", NULL,
                             "'response_format.json_schema.name' must be a string of 1..64 "
                             "characters");
    if (strict && !json_is_boolean(strict) && !json_is_null(strict))
        return oai_error_set(err, 400, INVALID, "response_format.json_schema.strict", NULL,
                             "'response_format.json_schema.strict' must be a boolean");
    json_t *schema = json_object_get(js, "schema");
    if (!schema) { /* no schema: any JSON object, as json_object */
        *kind = VT_GRAMMAR_JSON_OBJECT;
        return 0;
    }
    *kind = VT_GRAMMAR_JSON_SCHEMA;
    return schema_text(schema, "response_format.json_schema.schema", text, err);
}

int oai_parse_format(const json_t *body, oai_request *r, oai_error *err)
{
    static const char *const keys[] = {"response_format", "guided_json", "guided_regex",
                                       "guided_grammar", "guided_choice"};
    const char *seen = NULL;
    json_t *v = NULL;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *x = json_object_get(body, keys[i]);
        if (!x || json_is_null(x))
            continue;
        if (seen)
            return oai_error_set(err, 400, INVALID, keys[i], NULL,
                                 "'%s' and '%s' cannot be used together: one kind of "
                                 "structured output per request",
                                 seen, keys[i]);
        seen = keys[i];
        v = x;
    }
    if (!seen)
        return 0;
    vt_grammar_kind kind = VT_GRAMMAR_NONE;
    char *text = NULL;
    int st = 0;
    if (!strcmp(seen, "response_format")) {
        st = response_format(v, &kind, &text, err);
    } else if (!strcmp(seen, "guided_json")) {
        kind = VT_GRAMMAR_JSON_SCHEMA;
        st = schema_text(v, seen, &text, err);
    } else if (!strcmp(seen, "guided_choice")) {
        kind = VT_GRAMMAR_GBNF;
        st = choice_grammar(v, &text, err);
    } else {
        if (!json_is_string(v) || !*json_string_value(v))
            return oai_error_set(err, 400, INVALID, seen, NULL, "'%s' must be a non-empty string",
                                 seen);
        kind = !strcmp(seen, "guided_regex") ? VT_GRAMMAR_REGEX : VT_GRAMMAR_GBNF;
        if (!(text = strdup(json_string_value(v))))
            st = oai_error_set(err, 500, "internal_error", NULL, NULL, "out of memory");
    }
    if (st) {
        free(text);
        return st;
    }
    if (kind == VT_GRAMMAR_NONE)
        return 0;
    if (r->params.grammar_kind != VT_GRAMMAR_NONE) {
        free(text);
        return oai_error_set(err, 400, INVALID, seen, NULL,
                             "'%s' cannot be combined with a forced tool call (tool_choice "
                             "\"required\" or a named function)",
                             seen);
    }
    free(r->format_grammar);
    r->format_grammar = text;
    r->params.grammar_kind = kind;
    r->params.grammar = text;
    return 0;
}
