/*
 * test_toolcall_serve.c - tool calls through `vitamin serve`, read by the
 * official `openai` npm client (tests/serve/tools.mjs): message.tool_calls,
 * finish_reason "tool_calls", content null for calls only, streamed
 * tool_calls deltas (also through the client's own stream accumulator),
 * parallel_tool_calls false, a malformed call left as content, tool_choice
 * none, the next turn with the calls and their results sent back, and
 * validation errors as the client's BadRequestError; and tool_choice
 * "required" / a named function on the random weights, where the grammar
 * must make every output a call whose arguments ajv accepts.
 *
 * To make a random-weight model write tool calls without a grammar, its
 * vocabulary is the llama-spm one plus a few user-defined tokens that spell
 * content and the pieces of Hermes calls (the model carries Qwen2.5's chat
 * template). A request picks a sequence of them and forces it with
 * `logit_bias` as a ladder (+100, +90, ... on the tokens in order, the end
 * token last) and `repetition_penalty` 100 (a token already written loses
 * its lead), greedy: the output is known in advance without the parser, so
 * what is tested is the parser and the response shapes. The test first
 * checks with /v1/completions that the ladder writes exactly the chosen
 * text.
 *
 * Without node or the openai package the client part is a named skip (a
 * failure under CI, which installs them).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gguf/gguf.h"
#include "serve_proc.h"
#include "test.h"

#define VOCAB "tests/data/vocab/ggml-vocab-llama-spm.gguf"
#define TEMPLATE "tests/data/templates/Qwen-Qwen2.5-7B-Instruct.jinja"

/* The extra tokens, by name (tools.mjs gets name -> id). */
static const char *const extra[][2] = {
    {"content", "Let me check."},
    {"a1", "<tool_call>\n{\"name\": \"get_weather\", "},
    {"a2", "\"arguments\": {\"city\": \"\xe6\x9d\xb1\xe4\xba\xac\", "},
    {"a3", "\"days\": [1, 2], \"opts\": {\"deep\": {\"x\": null, \"y\": [true, -2.5e-3]}}}}"},
    {"a4", " \n</tool_call>"}, /* not "\n</tool_call>": Qwen's tool prompt has that text,
                                  and a token of the prompt loses its lead to the penalty */
    {"b", "\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"\xc3\xa9 \\\"q\\\"\"}}"
          "\n</tool_call>"},
    {"bad", "<tool_call>{\"name\": \"unknown_fn\", \"arguments\": {}}</tool_call>"},
    {"tail", " Done."},
    /* Mistral's marker as a control token, as in its vocabulary, and a call */
    {"tc", "[TOOL_CALLS]"},
    {"m1", "[{\"name\": \"search\", \"arguments\": {\"query\": \"m\"}}]"},
};
#define N_EXTRA (sizeof extra / sizeof extra[0])

static int32_t first_extra;

/* The llama-spm vocabulary with the extra tokens (user-defined) appended. */
static bool make_vocab(const char *out)
{
    gguf_file *f = NULL;
    if (gguf_open(VOCAB, &f)) {
        test_fail_at(__FILE__, __LINE__, "%s: %s", VOCAB, vt_last_error());
        return false;
    }
    gguf_writer *w = gguf_writer_create();
    const gguf_value *toks = gguf_get_arr(f, "tokenizer.ggml.tokens"),
                     *scores = gguf_get_arr(f, "tokenizer.ggml.scores"),
                     *types = gguf_get_arr(f, "tokenizer.ggml.token_type");
    bool ok = w && toks && scores && types && scores->arr_type == GGUF_T_FLOAT32 &&
              types->arr_type == GGUF_T_INT32;
    for (int64_t i = 0; ok && i < gguf_n_kv(f); i++) {
        gguf_str k = gguf_kv_key(f, i);
        if ((k.len == 21 && !memcmp(k.ptr, "tokenizer.ggml.tokens", 21)) ||
            (k.len == 21 && !memcmp(k.ptr, "tokenizer.ggml.scores", 21)) ||
            (k.len == 25 && !memcmp(k.ptr, "tokenizer.ggml.token_type", 25)))
            continue;
        ok = gguf_writer_copy_kv(w, f, i) == VT_OK;
    }
    uint64_t n = ok ? toks->arr_n : 0;
    gguf_str *strs = calloc(n + N_EXTRA, sizeof *strs);
    float *sc = calloc(n + N_EXTRA, sizeof *sc);
    int32_t *ty = calloc(n + N_EXTRA, sizeof *ty);
    ok = ok && strs && sc && ty;
    for (uint64_t j = 0; ok && j < n; j++) {
        gguf_value v;
        ok = gguf_arr_get(toks, j, &v);
        strs[j] = v.v.str;
    }
    if (ok) {
        memcpy(sc, gguf_arr_raw(scores), n * sizeof *sc);
        memcpy(ty, gguf_arr_raw(types), n * sizeof *ty);
        for (size_t j = 0; j < N_EXTRA; j++) {
            strs[n + j] = (gguf_str){extra[j][1], strlen(extra[j][1])};
            ty[n + j] = extra[j][1][0] == '[' && extra[j][1][1] == 'T' ? 3 /* control */
                                                                      : 4 /* user-defined */;
        }
        first_extra = (int32_t)n;
        ok = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, n + N_EXTRA) == VT_OK &&
             gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_T_FLOAT32, sc,
                                 n + N_EXTRA) == VT_OK &&
             gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, ty,
                                 n + N_EXTRA) == VT_OK &&
             gguf_writer_write(w, out) == VT_OK;
    }
    CHECKF(ok, "cannot write %s: %s", out, vt_last_error());
    free(strs);
    free(sc);
    free(ty);
    gguf_writer_destroy(w);
    gguf_close(f);
    return ok;
}

static serve_proc srv = {.pid = -1};
static char model_path[512];

static void test_start(void)
{
    if (!test_need_vitamin() || !test_need_file(VOCAB, "the tool-call test model") ||
        !test_need_file(TEMPLATE, "the tool-call test model"))
        return;
    char vocab[512], cmd[2048];
    const char *model = model_path;
    snprintf(vocab, sizeof vocab, "%s/vocab-tools.gguf", test_tmpdir());
    snprintf(model_path, sizeof model_path, "%s/tools.gguf", test_tmpdir());
    if (!make_vocab(vocab))
        return;
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
             "--type q8_0 --vocab %s --chat-template %s -o %s > /dev/null",
             test_vitamin_bin(), vocab, TEMPLATE, model);
    if (system(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` failed", cmd);
        return;
    }
    const char *args[] = {"--model-name", "tools-model", "--ctx", "2048", "-t", "2", NULL};
    serve_start(&srv, model, args);
}

/* Runs tools.mjs in a mode; its JSON result (NULL after a recorded failure).
 * ajv_dir: where ajv is (NULL: not needed). */
static json_t *run_script(const char *mode, const char *dir, const char *ajv_dir)
{
    json_t *ids = json_object();
    for (size_t j = 0; j < N_EXTRA; j++)
        json_object_set_new(ids, extra[j][0], json_integer(first_extra + (int)j));
    json_object_set_new(ids, "eos", json_integer(2));
    char *ids_text = json_dumps(ids, JSON_COMPACT);
    json_decref(ids);
    char cmd[3072];
    snprintf(cmd, sizeof cmd,
             "VT_NODE_DIR='%s' VT_AJV_DIR='%s' node tests/serve/tools.mjs http://127.0.0.1:%d "
             "tools-model '%s' %s",
             dir, ajv_dir ? ajv_dir : "", srv.port, ids_text, mode);
    free(ids_text);
    int status;
    char *out = serve_capture(cmd, &status);
    CHECKF(out && status == 0, "tools.mjs %s failed (status %d): %s", mode, status, out ? out : "");
    json_t *res = out && status == 0 ? json_loads(out, 0, NULL) : NULL;
    CHECKF(json_is_object(res) || status != 0, "tools.mjs printed: %s", out ? out : "");
    free(out);
    return res;
}

static const char *client_dir(void)
{
    if (srv.pid < 0) {
        test_skip_missing("the server (see test_start)");
        return NULL;
    }
    const char *dir = serve_node_dir("openai");
    if (!serve_have_node() || !dir) {
        test_skip_missing("node with the openai package (VT_NODE_DIR, .ci/node, "
                          "~/.cache/vitamin-test-node or /root/oracle)");
        return NULL;
    }
    return dir;
}

static void test_client(void)
{
    const char *dir = client_dir();
    if (!dir)
        return;
    json_t *res = run_script("calls", dir, NULL);
    /* what tools.mjs checked, counted here so that a silent script fails */
    json_int_t checks = json_integer_value(json_object_get(res, "checks"));
    CHECKF(checks >= 100, "tools.mjs made only %lld checks", (long long)checks);
    printf("  tools.mjs calls: %lld checks\n", (long long)checks);
    json_decref(res);
}

/* A family whose marker is a control token (Mistral's [TOOL_CALLS]): its
 * text is kept for the parser unless skip_special_tokens says otherwise. */
static void test_control_marker(void)
{
    char dir[1100];
    const char *d = client_dir();
    if (!d)
        return;
    snprintf(dir, sizeof dir, "%s", d);
    const char *tpl = "tests/data/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja";
    const char *args[] = {"--model-name", "tools-model", "--ctx", "2048", "-t", "2",
                          "--chat-template", tpl, NULL};
    serve_proc other = {.pid = -1};
    if (!test_need_file(tpl, "a chat template") || !serve_start(&other, model_path, args))
        return;
    serve_proc keep = srv;
    srv = other;
    json_t *res = run_script("mistral", dir, NULL);
    CHECKF(json_integer_value(json_object_get(res, "checks")) >= 8, "tools.mjs mistral: %lld checks",
           (long long)json_integer_value(json_object_get(res, "checks")));
    json_decref(res);
    srv = keep;
    serve_stop(&other, 30);
}

/* tool_choice named / required on the random weights: every output is a
 * call whose arguments ajv accepts against the tool's schema, in the
 * model's own template (Hermes) and then, with --chat-template, in each
 * other family's (fewer seeds). */
static void test_forced(void)
{
    char dir[1100];
    const char *d = client_dir();
    if (!d)
        return;
    snprintf(dir, sizeof dir, "%s", d);
    const char *ajv = serve_node_dir("ajv");
    if (!ajv) {
        test_skip_missing("the ajv npm package (tests/serve/package.json; VT_NODE_DIR, .ci/node, "
                          "~/.cache/vitamin-test-node or /root/oracle)");
        return;
    }
    char ajv_dir[1100];
    snprintf(ajv_dir, sizeof ajv_dir, "%s", ajv);
    static const char *const others[] = {
        NULL, "meta-llama-Llama-3.1-8B-Instruct.jinja", "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        "ibm-granite-granite-3.3-2B-Instruct.jinja",
        "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja"};
    for (size_t t = 0; t < sizeof others / sizeof others[0]; t++) {
        serve_proc other = {.pid = -1};
        char tpl[512];
        if (others[t]) {
            snprintf(tpl, sizeof tpl, "tests/data/templates/%s", others[t]);
            const char *args[] = {"--model-name", "tools-model", "--ctx", "2048", "-t", "2",
                                  "--chat-template", tpl, NULL};
            if (!test_need_file(tpl, "a chat template") || !serve_start(&other, model_path, args))
                continue;
            setenv("VT_TOOLS_FORCED", "5", 1);
        }
        serve_proc keep = srv;
        if (others[t])
            srv = other;
        json_t *res = run_script("forced", dir, ajv_dir);
        json_int_t checks = json_integer_value(json_object_get(res, "checks"));
        CHECKF(checks >= (others[t] ? 50 : 150), "%s: tools.mjs made only %lld checks",
               others[t] ? others[t] : "Qwen2.5", (long long)checks);
        printf("  tools.mjs forced, %s: %lld checks; calls, e.g.",
               others[t] ? others[t] : "Qwen-Qwen2.5-7B-Instruct.jinja", (long long)checks);
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(res, "samples"), i, v) printf(" %s", json_string_value(v));
        printf("\n");
        json_decref(res);
        if (others[t]) {
            srv = keep;
            serve_stop(&other, 30);
            unsetenv("VT_TOOLS_FORCED");
        }
    }
}

static void test_stop(void)
{
    if (srv.pid < 0) {
        test_skip_missing("the server (see test_start)");
        return;
    }
    serve_stop(&srv, 30);
}

int main(void)
{
    RUN_TEST(test_start);
    RUN_TEST(test_client);
    RUN_TEST(test_control_marker);
    RUN_TEST(test_forced);
    RUN_TEST(test_stop);
    return test_finish("test_toolcall_serve");
}
