/*
 * test_serve_embed.c - `vitamin serve`'s POST /v1/embeddings through the
 * official `openai` npm client (tests/serve/embeddings.mjs, run by node from
 * the folder that holds node_modules/openai: VT_NODE_DIR, .ci/node,
 * ~/.cache/vitamin-test-node or /root/oracle), on a gen-model model behind
 * an API key. The script asserts shape, norm 1, base64 == float, token
 * arrays == their text, batched == alone, and the typed errors (400 empty,
 * wrong type, bad token, dimensions, encoding_format, past the context; 404
 * model; 401 key); this test then checks the vector it printed against the
 * engine's own embedding of the same tokens, computed here in-process (bit
 * for bit: JSON carries every float exactly), and that the server ends with
 * every KV block free (/metrics, read by the script) and exits 0 on SIGTERM. Without node or the openai
 * package it is a named skip (a failure under CI, which installs them).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "engine/engine.h"
#include "serve_proc.h"
#include "test.h"

#define MODEL_NAME "embed-model"
#define KEY "sk-embed-test"
#define DIM 64

static char model_path[512];
static pid_t server_pid = -1;
static int port;
static json_t *client_out;
static bool client_skipped; /* the client could not run (a named skip) */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_start(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the embeddings serve test model"))
        return;
    char keys[512], log[512], cmd[2048];
    snprintf(model_path, sizeof model_path, "%s/serve-embed.gguf", test_tmpdir());
    snprintf(keys, sizeof keys, "%s/keys.txt", test_tmpdir());
    snprintf(log, sizeof log, "%s/serve-embed.log", test_tmpdir());
    FILE *f = fopen(keys, "w");
    CHECK(f && fputs(KEY " alice\n", f) >= 0);
    if (f)
        fclose(f);
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim %d --layers 2 --heads 4 --kv-heads 2 --ff 128 "
             "--type q8_0 --vocab %s -o %s",
             test_vitamin_bin(), DIM, vocab, model_path);
    if (system(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` failed", cmd);
        return;
    }
    int out[2];
    if (pipe(out)) {
        test_fail_at(__FILE__, __LINE__, "pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out[1], 1);
        if (fd >= 0)
            dup2(fd, 2);
        close(out[0]);
        const char *argv[] = {"vitamin", "serve", "-m", model_path, "--port", "0", "-t", "2",
                              "--model-name", MODEL_NAME, "--api-key-file", keys, "--ctx",
                              "512", "--max-batch-tokens", "64", "--max-seqs", "16", NULL};
        execv(test_vitamin_bin(), (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
        close(out[0]);
        test_fail_at(__FILE__, __LINE__, "fork: %s", strerror(errno));
        return;
    }
    server_pid = pid;
    char line[512];
    size_t n = 0;
    double end = now() + 60;
    while (n < sizeof line - 1 && now() < end) {
        struct pollfd pf = {out[0], POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        if (read(out[0], line + n, 1) <= 0)
            break;
        if (line[n++] == '\n')
            break;
    }
    line[n] = 0;
    close(out[0]);
    const char *u = strstr(line, "listening on http://127.0.0.1:");
    CHECKF(u != NULL, "the server printed '%s'", line);
    if (u)
        port = atoi(u + strlen("listening on http://127.0.0.1:"));
}

static void test_openai_client(void)
{
    client_skipped = true;
    if (server_pid < 0 || port <= 0) {
        test_skip_missing("the server (see test_start)");
        return;
    }
    const char *dir = serve_node_dir("openai");
    if (!dir) {
        test_skip_missing("the openai npm package (node_modules/openai under VT_NODE_DIR, "
                          ".ci/node, ~/.cache/vitamin-test-node or /root/oracle)");
        return;
    }
    client_skipped = false;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "VT_NODE_DIR='%s' node tests/serve/embeddings.mjs http://127.0.0.1:%d %s %s %d", dir,
             port, KEY, MODEL_NAME, DIM);
    FILE *p = popen(cmd, "r");
    if (!p) {
        test_fail_at(__FILE__, __LINE__, "popen: %s", strerror(errno));
        return;
    }
    json_error_t je;
    client_out = json_loadf(p, JSON_DISABLE_EOF_CHECK, &je);
    int st = pclose(p);
    CHECKF(st == 0, "`%s` exited with status %d (its stderr names the failed check)", cmd, st);
    CHECKF(client_out != NULL, "the client printed no JSON: %s", je.text);
}

/* The vector the client got equals the engine's own embedding of the same
 * tokens, computed here. */
static void test_vector_equals_engine(void)
{
    json_t *toks = json_object_get(client_out, "tokens");
    json_t *vec = json_object_get(client_out, "vector");
    if (client_skipped) {
        test_skip_missing("the client's vector (see test_openai_client)");
        return;
    }
    if (!json_is_array(toks) || !json_is_array(vec)) {
        test_fail_at(__FILE__, __LINE__, "no vector from the client (see test_openai_client)");
        return;
    }
    CHECK_EQ_INT(json_array_size(vec), DIM);
    vt_engine_config cfg = {.model_path = model_path, .n_threads = 2, .manual_step = true,
                            .kv_tokens = 512};
    vt_engine *e = vt_engine_create(&cfg);
    if (!e) {
        test_fail_at(__FILE__, __LINE__, "vt_engine_create: %s", vt_last_error());
        return;
    }
    size_t n = json_array_size(toks);
    int32_t *ids = malloc(sizeof *ids * (n + 1));
    for (size_t i = 0; ids && i < n; i++)
        ids[i] = (int32_t)json_integer_value(json_array_get(toks, i));
    vt_request_params prm = vt_request_params_default();
    prm.embed = true;
    prm.prompt = ids;
    prm.n_prompt = (int64_t)n;
    vt_request *r = NULL;
    CHECK(ids && vt_submit(e, &prm, &r) == VT_OK);
    float got[DIM] = {0};
    bool have = false, busy = true;
    for (int steps = 0; r && busy && steps < 10000; steps++)
        vt_engine_step(e, &busy);
    vt_event ev;
    while (r && vt_request_next(r, &ev, 0) > 0)
        if (ev.kind == VT_EV_EMBEDDING && ev.n_embd == DIM) {
            memcpy(got, ev.embedding, sizeof got);
            have = true;
        }
    CHECK(have);
    int differ = 0;
    for (int i = 0; have && i < DIM && i < (int)json_array_size(vec); i++)
        differ += (float)json_number_value(json_array_get(vec, i)) != got[i];
    CHECKF(differ == 0, "%d of %d elements differ between the server's and the engine's vector",
           differ, DIM);
    vt_request_free(r);
    free(ids);
    vt_engine_destroy(e);
}

static void test_kv_free_and_exit(void)
{
    if (server_pid < 0)
        return;
    json_t *used = json_object_get(client_out, "kv_blocks_used");
    if (client_out)
        CHECKF(json_is_number(used) && json_number_value(used) == 0,
               "after the client, /metrics shows %g KV blocks used",
               json_is_number(used) ? json_number_value(used) : -1.0);
    kill(server_pid, SIGTERM);
    int st = 0;
    double end = now() + 30;
    pid_t w = 0;
    while ((w = waitpid(server_pid, &st, WNOHANG)) == 0 && now() < end)
        usleep(20000);
    if (w == 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, &st, 0);
        test_fail_at(__FILE__, __LINE__, "the server did not exit within 30 s of SIGTERM");
    } else {
        CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server exited with status %d", st);
    }
    server_pid = -1;
}

int main(void)
{
    RUN_TEST(test_start);
    RUN_TEST(test_openai_client);
    RUN_TEST(test_vector_equals_engine);
    RUN_TEST(test_kv_free_and_exit);
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
    }
    json_decref(client_out);
    return test_finish("test_serve_embed");
}
