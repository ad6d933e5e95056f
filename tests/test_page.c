/*
 * test_page.c - the chat page of `vitamin serve` (GET /) in a real browser:
 * Debian's chromium, headless, driven by playwright-core from
 * tests/serve/page.mjs, against a server on a gen-model model with a chat
 * template and an API key file. The script checks the page's headers (HTML,
 * a CSP that allows only the page's own inline script and style and fetches
 * to the server), that the page asks for the key inline and keeps it, that
 * a message typed and sent with Enter streams its reply onto the page (seen
 * at several lengths) and ends equal to the server's non-streamed greedy
 * answer for the same conversation, a second turn that carries the whole
 * conversation, a server error (400) shown inline, Stop (its KV blocks
 * freed), New chat, and no console error
 * or request leaving the server; its results are checked again here, with
 * the screenshot it takes: a PNG kept in $VT_ARTIFACTS, else
 * tests/artifacts/ (gitignored). Without chromium, node or playwright-core
 * the test is a named skip (a failure under CI, which installs them).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "serve_proc.h"
#include "test.h"

#define KEY "sk-page-test"
#define MODEL_NAME "page-model"

static void test_page(void)
{
    const char *chromium = getenv("VT_CHROMIUM") ? getenv("VT_CHROMIUM") : "/usr/bin/chromium";
    if (access(chromium, X_OK) != 0) {
        test_skip_missing("chromium (%s; apt-get install chromium, see scripts/setup-debian.sh)",
                          chromium);
        return;
    }
    if (!serve_have_node()) {
        test_skip_missing("node (the browser test of the chat page)");
        return;
    }
    const char *dir = serve_node_dir("playwright-core");
    if (!dir) {
        test_skip_missing("the playwright-core npm package (node_modules/playwright-core under "
                          "VT_NODE_DIR, .ci/node or ~/.cache/vitamin-test-node; npm install it "
                          "from tests/serve/package.json)");
        return;
    }
    char model[512], keys[512], shot_dir[512], shot[600];
    snprintf(model, sizeof model, "%s/page.gguf", test_tmpdir());
    snprintf(keys, sizeof keys, "%s/keys.txt", test_tmpdir());
    /* big enough that a token takes a while even on a fast machine, so the
     * reply arrives in many reads */
    if (!serve_make_model(model, 256, 2, 4, 2, 512))
        return;
    FILE *f = fopen(keys, "w");
    CHECK(f && fputs(KEY " alice\n", f) >= 0);
    if (f)
        fclose(f);
    const char *art = getenv("VT_ARTIFACTS");
    snprintf(shot_dir, sizeof shot_dir, "%s", art && *art ? art : "tests/artifacts");
    if (mkdir(shot_dir, 0755) && errno != EEXIST) {
        test_fail_at(__FILE__, __LINE__, "mkdir %s: %s", shot_dir, strerror(errno));
        return;
    }
    snprintf(shot, sizeof shot, "%s/chat-page.png", shot_dir);
    unlink(shot);

    serve_proc srv;
    const char *extra[] = {"--model-name", MODEL_NAME, "--api-key-file", keys, "-t", "2",
                           "--quiet", NULL};
    if (!serve_start(&srv, model, extra))
        return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "VT_NODE_DIR='%s' VT_CHROMIUM='%s' node tests/serve/page.mjs http://127.0.0.1:%d "
             "%s %s '%s'",
             dir, chromium, srv.port, KEY, MODEL_NAME, shot);
    int st = 0;
    char *o = serve_capture(cmd, &st);
    CHECKF(st == 0, "`%s` exited with %d", cmd, st);
    json_error_t je;
    json_t *r = o ? json_loads(o, 0, &je) : NULL;
    CHECKF(r != NULL, "page.mjs output is not JSON: %.300s", o ? o : "(none)");
    free(o);
    if (r) {
        json_t *t1 = json_object_get(r, "turn1"), *t2 = json_object_get(r, "turn2");
        CHECK(!strcmp(json_string_value(json_object_get(r, "model_shown")), MODEL_NAME));
        CHECK(json_is_true(json_object_get(r, "turn1_equal")));
        CHECK(json_is_true(json_object_get(r, "turn2_equal")));
        CHECK(json_is_true(json_object_get(r, "turn2_depends_on_history")));
        CHECK(json_integer_value(json_object_get(r, "turn1_partial_lengths")) >= 2);
        printf("  page: reply 1 seen at %lld lengths before its end; %s\n",
               (long long)json_integer_value(json_object_get(r, "turn1_partial_lengths")),
               json_string_value(json_object_get(t1, "meta")));
        const char *text = json_string_value(json_object_get(t1, "text"));
        CHECK(text && strlen(text) > 0);
        CHECK(!strcmp(json_string_value(json_object_get(t1, "state")), "done"));
        CHECK(!strcmp(json_string_value(json_object_get(t2, "state")), "done"));
        CHECK(strstr(json_string_value(json_object_get(r, "csp")), "default-src 'none'"));
        const char *err = json_string_value(json_object_get(r, "error_shown"));
        CHECKF(err && !strncmp(err, "400: ", 5), "the error shown inline: %s", err ? err : "");
        CHECK(json_real_value(json_object_get(r, "kv_used_after_stop")) == 0 &&
              json_is_number(json_object_get(r, "kv_used_after_stop")));
        CHECK(json_is_true(json_object_get(r, "memory_deleted")));
        CHECK(json_array_size(json_object_get(r, "memories_before")) == 0);
        CHECK(json_array_size(json_object_get(r, "problems")) == 0);
        CHECK(json_array_size(json_object_get(r, "foreign_requests")) == 0);
        json_decref(r);
    }
    /* the screenshot: a PNG of some size */
    size_t len = 0;
    char *png = test_read_file(shot, &len);
    CHECKF(png && len > 10000 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8),
           "the screenshot %s (%zu bytes)", shot, len);
    free(png);
    CHECK_EQ_INT(serve_metric(&srv, "vitamin_kv_blocks_used"), 0);
    CHECK(serve_stop(&srv, 30));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN_TEST(test_page);
    return test_finish("test_page");
}
