/*
 * test_serve_format.c - structured output through `vitamin serve` (server/
 * oai_format.c over the grammar engine of sample/): response_format
 * json_schema and json_object, vLLM's guided_json / guided_regex /
 * guided_grammar / guided_choice, on chat and completions, streamed and n >
 * 1, each output checked by the official openai client's reading and ajv
 * (tests/serve/format.mjs); bad formats are 400s that name the problem.
 * The model has random weights: the grammar does all the work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "serve_proc.h"
#include "test.h"

static serve_proc srv = {.pid = -1};

static void test_start(void)
{
    char model[512];
    snprintf(model, sizeof model, "%s/format.gguf", test_tmpdir());
    if (!serve_make_model(model, 64, 2, 4, 2, 128))
        return;
    const char *args[] = {"--model-name", "format-model", "--ctx", "2048", "-t", "2",
                          "--no-memory", NULL};
    serve_start(&srv, model, args);
}

static void test_formats(void)
{
    if (srv.pid < 0) {
        test_skip_missing("the server (see test_start)");
        return;
    }
    const char *dir = serve_node_dir("ajv");
    if (!serve_have_node() || !dir || !serve_node_dir("openai")) {
        test_skip_missing("node with the openai and ajv packages (.ci/node)");
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "VT_NODE_DIR='%s' node tests/serve/format.mjs http://127.0.0.1:%d format-model", dir,
             srv.port);
    int st = 0;
    char *out = serve_capture(cmd, &st);
    CHECKF(out && st == 0, "format.mjs failed (status %d): %s", st, out ? out : "");
    json_t *r = out && st == 0 ? json_loads(out, 0, NULL) : NULL;
    free(out);
    if (r) {
        CHECK(json_integer_value(json_object_get(r, "json_schema_valid")) == 12);
        CHECK(json_is_true(json_object_get(r, "stream_valid")));
        CHECK(json_is_true(json_object_get(r, "extras")));
        CHECK(json_array_size(json_object_get(r, "errors")) == 8);
        printf("  formats: 12 schema outputs valid, json_object finished by %s\n",
               json_string_value(json_object_get(r, "json_object")));
    }
    json_decref(r);
}

static void test_stop(void)
{
    if (srv.pid >= 0)
        CHECK(serve_stop(&srv, 30));
}

int main(void)
{
    RUN_TEST(test_start);
    RUN_TEST(test_formats);
    RUN_TEST(test_stop);
    return test_finish("test_serve_format");
}
