/*
 * fuzz_template.c - libFuzzer harness for the chat-template interpreter: the
 * input is a template source, compiled and (when it compiles) rendered with
 * a fixed chat context (messages with tool calls, tools, bos/eos, extra
 * flags) under tight limits, so that a hostile template must end quickly with
 * an output or an error, never a crash, a hang, a leak or undefined behaviour.
 *   make -f fuzz/fuzz.mk build-fuzz/fuzz_template
 *   build-fuzz/fuzz_template -max_total_time=600 CORPUS_DIR
 * A seed corpus: the templates in tests/data/templates.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "template/template.h"

static const char context_json[] =
    "{\"messages\": ["
    "{\"role\": \"system\", \"content\": \"You are terse.\"},"
    "{\"role\": \"user\", \"content\": \"Hi \\u00e9 \\ud83d\\ude0a\\n  two  spaces\"},"
    "{\"role\": \"assistant\", \"content\": \"<think>\\nx\\n</think>\\n\\nHello\", \"reasoning_content\": null,"
    " \"tool_calls\": [{\"id\": \"call12345\", \"type\": \"function\", \"function\":"
    " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Seoul\", \"n\": [1, 2.5, true, null]}}}]},"
    "{\"role\": \"tool\", \"tool_call_id\": \"call12345\", \"content\": \"{\\\"t\\\": 3}\"},"
    "{\"role\": \"user\", \"content\": \"\"}],"
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
    " \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}],"
    "\"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    "\"enable_thinking\": false, \"n\": 3, \"f\": 0.5, \"big\": 1e300, \"d\": {\"2\": \"b\", \"1\": \"a\"}}";

static json_t *context;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!context) {
        context = json_loads(context_json, JSON_DECODE_INT_AS_REAL, NULL);
        if (!context)
            abort();
    }
    if (size > 1 << 16)
        return 0;
    tpl_template *t;
    if (tpl_compile((const char *)data, size, &t) != VT_OK)
        return 0;
    tpl_options o = {
        .max_output = 1 << 20,
        .max_memory = 64 << 20,
        .max_steps = 200000,
        .max_depth = 128,
        .now = 1795867200,
    };
    char *out = NULL;
    size_t n = 0;
    if (tpl_render(t, context, &o, &out, &n) == VT_OK) {
        if (!out || strlen(out) > n) /* NUL-terminated, n bytes */
            abort();
        char *q = tpl_json_quote(out, n, NULL);
        free(q);
        free(out);
    }
    tpl_destroy(t);
    return 0;
}
