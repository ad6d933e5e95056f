/*
 * test_soak.c - a bounded soak of `vitamin serve` on loopback: 500 streamed
 * requests (completions and chat, short random prompts and lengths, some
 * with stop strings, greedy and sampled), 64 at a time, by the official
 * `openai` npm client (tests/serve/soak.mjs), a third of them cancelled by
 * the client at random points (before the response or after a random number
 * of chunks). The server runs on a tiny gen-model model with a KV pool too
 * small for 64 requests at once, so requests also wait for blocks. Checked:
 * every request not cancelled completes with finish_reason "length" (and
 * exactly max_tokens tokens) or "stop" and its usage chunk; the same greedy
 * request gives the same text before and after; /metrics then shows no
 * running or waiting request and every KV block free; the server is still
 * up, and exits 0 on SIGTERM (under ASan: with no leak report, which would
 * make its exit status non-zero). Without node or the openai package it is a
 * named skip (a failure under CI).
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "serve_proc.h"
#include "test.h"

#define N_REQ 500
#define CONC 64

static void test_soak(void)
{
    if (!serve_have_node()) {
        test_skip_missing("node (the soak test's openai client)");
        return;
    }
    const char *dir = serve_node_dir("openai");
    if (!dir) {
        test_skip_missing("the openai npm package (node_modules/openai under VT_NODE_DIR, "
                          ".ci/node, ~/.cache/vitamin-test-node or /root/oracle; npm install "
                          "it from tests/serve/package.json)");
        return;
    }
    char model[512];
    snprintf(model, sizeof model, "%s/soak.gguf", test_tmpdir());
    if (!serve_make_model(model, 64, 2, 4, 2, 128))
        return;
    serve_proc srv;
    const char *extra[] = {"--model-name", "soak", "-t", "2", "--ctx", "256", "--kv-mem",
                           "160K", "--quiet", NULL};
    if (!serve_start(&srv, model, extra))
        return;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "VT_NODE_DIR='%s' node tests/serve/soak.mjs http://127.0.0.1:%d soak %d %d 20261201",
             dir, srv.port, N_REQ, CONC);
    int st = 0;
    char *o = serve_capture(cmd, &st);
    CHECKF(st == 0, "`%s` exited with %d", cmd, st);
    json_error_t je;
    json_t *r = o ? json_loads(o, 0, &je) : NULL;
    CHECKF(r != NULL, "soak.mjs output is not JSON: %.300s", o ? o : "(none)");
    if (r) {
        printf("  soak: %s\n", o);
#define I(k) json_integer_value(json_object_get(r, k))
        long long cancelled = I("cancelled"), completed = I("completed");
        CHECK_EQ_INT(cancelled + completed, N_REQ);
        /* a third planned; a few planned before the response may finish first */
        CHECKF(cancelled >= N_REQ / 3 - 20 && cancelled <= N_REQ / 3,
               "%lld cancelled (a third planned)", cancelled);
        CHECK(completed >= N_REQ - N_REQ / 3);
        CHECK_EQ_INT(I("finish_length") + I("finish_stop"), completed);
        CHECK(I("finish_stop") > 0 && I("finish_length") > 0);
        CHECK_EQ_INT(I("max_inflight"), CONC);
        CHECK_EQ_INT(json_array_size(json_object_get(r, "errors")), 0);
        CHECK(json_is_true(json_object_get(r, "same_after")));
        /* the pool is smaller than 64 requests need at once */
        CHECK(json_number_value(json_object_get(r, "kv_blocks_total")) < CONC * 3);
#undef I
        json_decref(r);
    }
    free(o);
    /* seen from here too: the server is up, idle, and every block is free */
    CHECK(kill(srv.pid, 0) == 0);
    CHECK_EQ_INT(serve_metric(&srv, "vitamin_num_requests_running"), 0);
    CHECK_EQ_INT(serve_metric(&srv, "vitamin_num_requests_waiting"), 0);
    CHECK_EQ_INT(serve_metric(&srv, "vitamin_kv_blocks_used"), 0);
    double total = serve_metric(&srv, "vitamin_kv_blocks_total");
    CHECK(!isnan(total) && total > 0);
    CHECK(serve_stop(&srv, 30));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN_TEST(test_soak);
    return test_finish("test_soak");
}
