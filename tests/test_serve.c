/*
 * test_serve.c - `vitamin serve` end to end, over loopback: a gen-model
 * model with an embedded chat template is served with an API key file, a
 * tiny --max-queue, --max-body and --idle-timeout; then
 *  - the official `openai` npm client (tests/serve/client.mjs, run by node
 *    from the folder that holds node_modules/openai: VT_NODE_DIR, .ci/node,
 *    ~/.cache/vitamin-test-node or /root/oracle) drives both endpoints
 *    streaming and not, n=2, stop strings, max_tokens, logprobs, seeds, the
 *    typed errors and a client abort, and its JSON results are checked here:
 *    greedy text equal to `vitamin run --temp 0`, logprobs equal to the
 *    log-softmax of `vitamin logits` over the whole vocabulary, usage equal
 *    to `vitamin tokenize`'s count, and every KV block free after the abort;
 *  - more than 30 hostile requests sent over raw sockets (bad JSON, nesting
 *    10000 deep, invalid UTF-8, wrong types, huge numbers, a prompt past the
 *    context, bodies over the limit, unknown routes, wrong methods, missing
 *    or wrong keys, ...) each get the right status and an OpenAI error
 *    object, and a normal request still succeeds after them;
 *  - /health, /metrics (every metric name), /tokenize and /detokenize, an
 *    idle connection closed by the server;
 *  - SIGTERM while a request runs: it still completes, and the server exits
 *    0 (under ASan: with no leak).
 * Without node or the openai package the client part is a named skip (a
 * failure under CI, which installs them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "serve_proc.h"
#include "test.h"

#define MODEL_NAME "test-model"
#define KEY "sk-test-alice"
#define CTX 512
#define MAX_BODY 65536

static const char *const TEMPLATE =
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

static char model_path[512], log_path[512];
static pid_t server_pid = -1;
static int port;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    bool ok = fputs(text, f) >= 0;
    return fclose(f) == 0 && ok;
}

/* ---- the server ---- */

static pid_t spawn_server(const char *const *args, const char *log, int *port_out);

static void test_start(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the serve test model"))
        return;
    char tpl[512], keys[512], cmd[2048];
    snprintf(tpl, sizeof tpl, "%s/chat.jinja", test_tmpdir());
    snprintf(keys, sizeof keys, "%s/keys.txt", test_tmpdir());
    snprintf(model_path, sizeof model_path, "%s/serve.gguf", test_tmpdir());
    snprintf(log_path, sizeof log_path, "%s/serve.log", test_tmpdir());
    CHECK(write_file(tpl, TEMPLATE));
    CHECK(write_file(keys, "# test keys\n" KEY " alice\nsk-test-root root admin\n\n"));
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
             "--type q8_0 --vocab %s --chat-template %s -o %s",
             test_vitamin_bin(), vocab, tpl, model_path);
    if (system(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` failed", cmd);
        return;
    }
    char ctx[16], body[16];
    snprintf(ctx, sizeof ctx, "%d", CTX);
    snprintf(body, sizeof body, "%d", MAX_BODY);
    const char *args[] = {"--model-name", MODEL_NAME, "--api-key-file", keys, "--ctx", ctx,
                          "--max-queue", "3", "--max-body", body, "--idle-timeout", "2",
                          "--shutdown-grace", "30",
                          /* the API's shapes, compared with completions of the same
                           * prompt: no recall changing the prompts (test_serve_memory) */
                          "--no-memory", NULL};
    server_pid = spawn_server(args, log_path, &port);
}

/* Starts `vitamin serve -m model_path --port 0 -t 2 ARGS...` with stderr to
 * log; returns its pid (-1 after a failure) and the port it printed. */
static pid_t spawn_server(const char *const *args, const char *log, int *port_out)
{
    int out[2];
    *port_out = 0;
    if (pipe(out)) {
        test_fail_at(__FILE__, __LINE__, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(out[1], 1);
        if (logfd >= 0)
            dup2(logfd, 2);
        close(out[0]);
        const char *argv[40] = {"vitamin", "serve", "-m", model_path, "--port", "0", "-t", "2"};
        int n = 8;
        for (int i = 0; args[i] && n < 39; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(test_vitamin_bin(), (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    if (pid < 0) {
        test_fail_at(__FILE__, __LINE__, "fork: %s", strerror(errno));
        close(out[0]);
        return -1;
    }
    char line[512];
    size_t n = 0;
    double end = now() + 60;
    while (n < sizeof line - 1 && now() < end) {
        struct pollfd pf = {out[0], POLLIN, 0};
        if (poll(&pf, 1, 200) <= 0)
            continue;
        ssize_t got = read(out[0], line + n, 1);
        if (got <= 0)
            break;
        if (line[n++] == '\n')
            break;
    }
    line[n] = 0;
    close(out[0]);
    const char *u = strstr(line, "listening on http://127.0.0.1:");
    CHECKF(u && strstr(line, "(model " MODEL_NAME ")"), "the server printed '%s'", line);
    if (u)
        *port_out = atoi(u + strlen("listening on http://127.0.0.1:"));
    CHECK(*port_out > 0);
    return pid;
}

static bool up(void)
{
    if (server_pid < 0 || port <= 0) {
        test_skip_missing("the server (see test_start)");
        return false;
    }
    return true;
}

/* ---- raw HTTP ---- */

typedef struct {
    int status; /* 0: no response */
    char *head, *body;
    size_t body_len;
} http_resp;

static void resp_free(http_resp *r)
{
    free(r->head);
    r->head = r->body = NULL;
}

static int connect_server(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends raw bytes, reads until the server closes (or timeout). */
static http_resp http_raw(const char *req, size_t len, int timeout_ms)
{
    http_resp r = {0};
    int fd = connect_server();
    if (fd < 0)
        return r;
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may answer (and close) before reading it all */
        off += (size_t)w;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    double end = now() + timeout_ms / 1e3;
    while (buf && now() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb)
                break;
            buf = nb;
        }
        ssize_t got = recv(fd, buf + n, cap - n - 1, 0);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    if (!buf)
        return r;
    buf[n] = 0;
    r.head = buf;
    if (sscanf(buf, "HTTP/1.%*d %d", &r.status) != 1)
        r.status = 0;
    char *b = strstr(buf, "\r\n\r\n");
    r.body = b ? b + 4 : buf + n;
    r.body_len = (size_t)(buf + n - r.body);
    return r;
}

static http_resp http(const char *method, const char *path, const char *key, const char *body,
                      size_t blen)
{
    size_t cap = blen + 1024;
    char *req = malloc(cap);
    http_resp r = {0};
    if (!req)
        return r;
    int h = snprintf(req, cap,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s"
                     "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     method, path, key ? "Authorization: Bearer " : "", key ? key : "",
                     key ? "\r\n" : "", blen);
    if (blen)
        memcpy(req + h, body, blen);
    r = http_raw(req, (size_t)h + blen, 30000);
    free(req);
    return r;
}

static http_resp post(const char *path, const char *body)
{
    return http("POST", path, KEY, body, strlen(body));
}

/* An OpenAI error object: {"error": {"message": str, "type": str, "param", "code"}}. */
static bool is_error_object(const http_resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *e = json_object_get(j, "error");
    bool ok = json_is_string(json_object_get(e, "message")) &&
              json_is_string(json_object_get(e, "type")) && json_object_get(e, "param") &&
              json_object_get(e, "code");
    json_decref(j);
    return ok;
}

/* ---- the openai client ---- */

static json_t *client_out;

/* Token ids of text as `vitamin tokenize --add-special --special --ids`. */
static int count_tokens(const char *text)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --add-special --special --ids '%s'",
             test_vitamin_bin(), model_path, text);
    char *o = serve_capture(cmd, NULL);
    int n = 0;
    for (char *p = o; p && *p;) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (!*p)
            break;
        n++;
        while (*p && *p != ' ' && *p != '\n')
            p++;
    }
    free(o);
    return n;
}

static void test_openai_client(void)
{
    if (!up())
        return;
    if (system("node --version > /dev/null 2>&1") != 0) {
        test_skip_missing("node (the openai client tests)");
        return;
    }
    const char *dir = serve_node_dir("openai");
    if (!dir) {
        test_skip_missing("the openai npm package (node_modules/openai under VT_NODE_DIR, "
                          ".ci/node, ~/.cache/vitamin-test-node or /root/oracle; "
                          "npm install it from tests/serve/package.json)");
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "VT_NODE_DIR='%s' node tests/serve/client.mjs http://127.0.0.1:%d %s %s", dir, port,
             KEY, MODEL_NAME);
    int st = 0;
    char *o = serve_capture(cmd, &st);
    CHECKF(st == 0, "`%s` exited with %d", cmd, st);
    json_error_t je;
    client_out = o ? json_loads(o, 0, &je) : NULL;
    CHECKF(client_out != NULL, "client output is not JSON: %.300s", o ? o : "(none)");
    free(o);
    if (!client_out)
        return;
    json_t *c = client_out;
#define S(path) json_string_value(json_object_get(c, path))
    json_t *models = json_object_get(c, "models");
    CHECK(json_array_size(models) == 1 &&
          !strcmp(json_string_value(json_array_get(models, 0)), MODEL_NAME));

    /* greedy completions, plain and streamed, equal `vitamin run --temp 0` */
    const char *prompt = "Hello world, this is";
    snprintf(cmd, sizeof cmd, "%s run -m %s -p '%s' -n 12 --temp 0 --ignore-eos -t 2 2>/dev/null",
             test_vitamin_bin(), model_path, prompt);
    char *ref = serve_capture(cmd, &st);
    json_t *cmp = json_object_get(c, "completion"), *cst = json_object_get(c, "completion_stream");
    const char *text = json_string_value(json_object_get(cmp, "text"));
    CHECKF(ref && text && !strcmp(ref, text), "server '%s' vs vitamin run '%s'", text,
           ref ? ref : "");
    free(ref);
    CHECK(text && !strcmp(text, json_string_value(json_object_get(cst, "text"))));
    CHECK(!strcmp(json_string_value(json_object_get(cmp, "finish")), "length"));
    CHECK(!strcmp(json_string_value(json_object_get(cst, "finish")), "length"));
    CHECK(!strcmp(json_string_value(json_object_get(cmp, "object")), "text_completion"));
    int np = count_tokens(prompt);
    CHECK(np > 1);
    json_t *u = json_object_get(cmp, "usage"), *us = json_object_get(cst, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "prompt_tokens")), np);
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "completion_tokens")), 12);
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "total_tokens")), np + 12);
    CHECK_EQ_INT(json_integer_value(json_object_get(us, "prompt_tokens")), np);
    CHECK_EQ_INT(json_integer_value(json_object_get(us, "completion_tokens")), 12);
    CHECK_EQ_INT(json_integer_value(json_object_get(cst, "usage_choices")), 0);
    CHECK(json_is_true(json_object_get(cst, "nulls_before")));

    /* chat: plain and streamed agree; role, usage */
    json_t *ch = json_object_get(c, "chat"), *chs = json_object_get(c, "chat_stream");
    const char *ctext = json_string_value(json_object_get(ch, "text"));
    CHECK(ctext && *ctext && !strcmp(ctext, json_string_value(json_object_get(chs, "text"))));
    CHECK(!strcmp(json_string_value(json_object_get(ch, "role")), "assistant"));
    CHECK(!strcmp(json_string_value(json_object_get(chs, "role")), "assistant"));
    CHECK(!strcmp(json_string_value(json_object_get(ch, "object")), "chat.completion"));
    CHECK(!strcmp(json_string_value(json_object_get(chs, "object")), "chat.completion.chunk"));
    CHECK(!strcmp(json_string_value(json_object_get(chs, "finish")), "length"));
    /* the template renders "<s><|user|>Tell me a story.\n<|assistant|>" */
    int nc = count_tokens("<|user|>Tell me a story.\n<|assistant|>");
    u = json_object_get(ch, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "prompt_tokens")), nc);
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "completion_tokens")), 10);
    us = json_object_get(chs, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(us, "prompt_tokens")), nc);
    CHECK_EQ_INT(json_integer_value(json_object_get(us, "total_tokens")), nc + 10);
    CHECK_EQ_INT(json_integer_value(json_object_get(chs, "usage_choices")), 0);
    CHECK(json_is_true(json_object_get(c, "chat_stream_no_usage")));

    /* n = 2, seeded: both indexes, reproducible, distinct draws */
    json_t *n2 = json_object_get(c, "n2");
    json_t *want_idx = json_pack("[i,i]", 0, 1);
    CHECK(json_equal(json_object_get(n2, "indexes"), want_idx));
    json_decref(want_idx);
    CHECK(json_equal(json_object_get(n2, "texts"), json_object_get(n2, "again")));
    json_t *t2 = json_object_get(n2, "texts");
    CHECK(json_array_size(t2) == 2 && strcmp(json_string_value(json_array_get(t2, 0)),
                                             json_string_value(json_array_get(t2, 1))));
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(n2, "usage"),
                                                    "completion_tokens")), 16);
    json_t *n2c = json_object_get(c, "n2_chat");
    CHECK(json_array_size(json_object_get(n2c, "stream")) == 2 &&
          json_equal(json_object_get(n2c, "stream"), json_object_get(n2c, "plain")));

    /* stop strings: the text up to the stop string, never the stop itself */
    json_t *sp = json_object_get(c, "stop");
    const char *stop = json_string_value(json_object_get(sp, "stop"));
    const char *stext = json_string_value(json_object_get(sp, "text"));
    const char *at = text && stop ? strstr(text, stop) : NULL;
    CHECK(at && stext && strlen(stext) == (size_t)(at - text) && !strncmp(stext, text, strlen(stext)));
    CHECK(stext && !strstr(stext, stop));
    CHECK(!strcmp(json_string_value(json_object_get(sp, "finish")), "stop"));
    CHECK(stext && !strcmp(stext, json_string_value(json_object_get(sp, "stream_text"))));
    CHECK(!strcmp(json_string_value(json_object_get(sp, "stream_finish")), "stop"));

    json_t *len = json_object_get(c, "length");
    CHECK(!strcmp(json_string_value(json_object_get(len, "finish")), "length"));
    CHECK_EQ_INT(json_integer_value(json_object_get(len, "tokens")), 3);

    /* errors arrive as the client's typed errors */
    json_t *er = json_object_get(c, "errors");
    CHECK(!strcmp(json_string_value(json_object_get(er, "bad")),
                  "BadRequestError:400:invalid_request_error"));
    CHECK(!strcmp(json_string_value(json_object_get(er, "bad_chat")),
                  "BadRequestError:400:invalid_request_error"));
    CHECK(!strcmp(json_string_value(json_object_get(er, "model")),
                  "NotFoundError:404:invalid_request_error"));
    CHECK(!strcmp(json_string_value(json_object_get(er, "auth")),
                  "AuthenticationError:401:invalid_request_error"));
    CHECKF(!strcmp(json_string_value(json_object_get(er, "rate")),
                   "RateLimitError:429:rate_limit_error"),
           "rate: %s", json_string_value(json_object_get(er, "rate")));

    /* the aborted stream: its blocks free, the server serving on */
    json_t *ab = json_object_get(c, "abort");
    CHECK_EQ_INT(json_integer_value(json_object_get(ab, "chunks")), 3);
    CHECK(json_number_value(json_object_get(ab, "kv_blocks_used")) == 0);
    CHECK(json_number_value(json_object_get(ab, "running")) == 0);
    CHECK(json_number_value(json_object_get(ab, "total")) > 0);
    CHECK_EQ_INT(json_integer_value(json_object_get(c, "after_abort")), 1);
    size_t ll = 0;
    char *log = test_read_file(log_path, &ll);
    CHECKF(log && strstr(log, "POST /v1/completions 200 (aborted)"),
           "the server did not log the aborted stream");
    free(log);
#undef S
}

/* The logprobs the client got equal the log-softmax of `vitamin logits`. */
static void check_position(const char *tokens, json_t *lp, size_t i, int32_t *argmax)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s logits -m %s --tokens %s --top 1000000 -t 2", test_vitamin_bin(),
             model_path, tokens);
    char *o = serve_capture(cmd, NULL);
    json_t *j = o ? json_loads(o, 0, NULL) : NULL;
    free(o);
    json_t *top = json_object_get(json_array_get(json_object_get(j, "positions"), 0), "top");
    size_t n = json_array_size(top);
    CHECKF(n > 1000, "vitamin logits gave %zu logits", n);
    double mx = -INFINITY, se = 0;
    for (size_t k = 0; k < n; k++)
        mx = fmax(mx, json_number_value(json_array_get(json_array_get(top, k), 1)));
    for (size_t k = 0; k < n; k++)
        se += exp(json_number_value(json_array_get(json_array_get(top, k), 1)) - mx);
    double lse = mx + log(se);
    /* `top` is sorted: entries 0..4 are the top 5 */
    json_t *tl = json_array_get(json_object_get(lp, "token_logprobs"), i);
    json_t *alts = json_array_get(json_object_get(lp, "top_logprobs"), i);
    double want0 = json_number_value(json_array_get(json_array_get(top, 0), 1)) - lse;
    CHECK_NEAR(json_number_value(tl), want0, 2e-3);
    CHECK_EQ_INT(json_object_size(alts), 5);
    double got[5] = {0};
    size_t m = 0;
    const char *key;
    json_t *v;
    json_object_foreach(alts, key, v) if (m < 5) got[m++] = json_number_value(v);
    for (size_t a = 0; a < 5; a++) /* descending */
        for (size_t b = a + 1; b < 5; b++)
            if (got[b] > got[a]) {
                double t = got[a];
                got[a] = got[b];
                got[b] = t;
            }
    for (size_t k = 0; k < m; k++)
        CHECK_NEAR(got[k], json_number_value(json_array_get(json_array_get(top, k), 1)) - lse,
                   2e-3);
    *argmax = (int32_t)json_integer_value(json_array_get(json_array_get(top, 0), 0));
    json_decref(j);
}

static void test_logprobs(void)
{
    if (!client_out) {
        test_skip_missing("the openai client's results (see test_openai_client)");
        return;
    }
    json_t *lp = json_object_get(client_out, "logprobs");
    CHECK_EQ_INT(json_array_size(json_object_get(lp, "tokens")), 2);
    CHECK_EQ_INT(json_array_size(json_object_get(lp, "text_offset")), 2);
    int32_t t0 = -1, t1 = -1;
    check_position("1,100,200,300", lp, 0, &t0);
    char toks[128];
    snprintf(toks, sizeof toks, "1,100,200,300,%d", (int)t0);
    check_position(toks, lp, 1, &t1);
    /* chat: logprob == the first alternative's, 3 alternatives, descending, bytes */
    json_t *content = json_object_get(json_object_get(client_out, "chat_logprobs"), "content");
    CHECK_EQ_INT(json_array_size(content), 2);
    size_t i;
    json_t *e;
    json_array_foreach(content, i, e) {
        json_t *alts = json_object_get(e, "top_logprobs");
        CHECK_EQ_INT(json_array_size(alts), 3);
        double lp0 = json_number_value(json_object_get(e, "logprob"));
        CHECK(lp0 < 0);
        CHECK_NEAR(lp0, json_number_value(json_object_get(json_array_get(alts, 0), "logprob")), 0);
        for (size_t k = 1; k < json_array_size(alts); k++)
            CHECK(json_number_value(json_object_get(json_array_get(alts, k), "logprob")) <=
                  json_number_value(json_object_get(json_array_get(alts, k - 1), "logprob")));
        const char *tok = json_string_value(json_object_get(e, "token"));
        json_t *bytes = json_object_get(e, "bytes");
        CHECK(tok && json_array_size(bytes) == strlen(tok));
    }
}

/* ---- hostile requests ---- */

typedef struct {
    const char *name, *method, *path;
    const char *body; /* NULL: made by the case's index below */
    int key;          /* 0: the good key, 1: none, 2: a wrong one, 3: a prefix of the good one */
    int status;
} hostile;

static char *repeat(const char *a, const char *b, int n)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc((la + lb) * (size_t)n + 1), *p = s;
    for (int i = 0; s && i < n; i++, p += la)
        memcpy(p, a, la);
    for (int i = 0; s && i < n; i++, p += lb)
        memcpy(p, b, lb);
    if (s)
        *p = 0;
    return s;
}

static void test_hostile(void)
{
    if (!up())
        return;
    static const hostile cases[] = {
        {"truncated JSON", "POST", "/v1/completions", "{\"prompt\": \"a\"", 0, 400},
        {"not JSON", "POST", "/v1/completions", "hello there", 0, 400},
        {"an array body", "POST", "/v1/completions", "[1,2,3]", 0, 400},
        {"empty body", "POST", "/v1/completions", "", 0, 400},
        {"arrays 10000 deep", "POST", "/v1/completions", NULL, 0, 400},
        {"objects 10000 deep", "POST", "/v1/chat/completions", NULL, 0, 400},
        {"invalid UTF-8", "POST", "/v1/completions", "{\"prompt\": \"a\xff\xfe b\"}", 0, 400},
        {"overlong UTF-8", "POST", "/v1/completions", "{\"prompt\": \"\xc0\xaf\"}", 0, 400},
        {"lone surrogate escape", "POST", "/v1/completions", "{\"prompt\": \"\\ud800\"}", 0, 400},
        {"prompt a number", "POST", "/v1/completions", "{\"prompt\": 123}", 0, 400},
        {"max_tokens a string", "POST", "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":\"ten\"}", 0, 400},
        {"max_tokens negative", "POST", "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":-1}", 0, 400},
        {"max_tokens 1e300", "POST", "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":1e300}", 0, 400},
        {"max_tokens past the context", "POST", "/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":100000}", 0, 400},
        {"temperature 1e999", "POST", "/v1/completions", "{\"prompt\":\"a\",\"temperature\":1e999}", 0, 400},
        {"huge integer", "POST", "/v1/completions", "{\"prompt\":\"a\",\"n\":99999999999999999999999}", 0, 400},
        {"n 1000", "POST", "/v1/completions", "{\"prompt\":\"a\",\"n\":1000}", 0, 400},
        {"n 0", "POST", "/v1/completions", "{\"prompt\":\"a\",\"n\":0}", 0, 400},
        {"17 stop strings", "POST", "/v1/completions", "{\"prompt\":\"a\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"]}", 0, 400},
        {"stop not strings", "POST", "/v1/completions", "{\"prompt\":\"a\",\"stop\":[1,2]}", 0, 400},
        {"logprobs 50", "POST", "/v1/completions", "{\"prompt\":\"a\",\"logprobs\":50}", 0, 400},
        {"token id past the vocabulary", "POST", "/v1/completions", "{\"prompt\":[1,99999999]}", 0, 400},
        {"prompt past the context", "POST", "/v1/completions", NULL, 0, 400},
        {"logit_bias key", "POST", "/v1/completions", "{\"prompt\":\"a\",\"logit_bias\":{\"abc\":1}}", 0, 400},
        {"seed a string", "POST", "/v1/completions", "{\"prompt\":\"a\",\"seed\":\"x\"}", 0, 400},
        {"stream_options without stream", "POST", "/v1/completions", "{\"prompt\":\"a\",\"stream_options\":{\"include_usage\":true}}", 0, 400},
        {"messages a string", "POST", "/v1/chat/completions", "{\"messages\":\"hi\"}", 0, 400},
        {"messages empty", "POST", "/v1/chat/completions", "{\"messages\":[]}", 0, 400},
        {"unknown role", "POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 0, 400},
        {"image content", "POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}", 0, 400},
        {"top_logprobs without logprobs", "POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 0, 400},
        {"unknown model", "POST", "/v1/completions", "{\"model\":\"gpt-9\",\"prompt\":\"a\"}", 0, 404},
        {"unknown model by id", "GET", "/v1/models/gpt-9", "", 0, 404},
        {"body over --max-body", "POST", "/v1/completions", NULL, 0, 413},
        {"unknown route", "GET", "/v1/nope", "", 0, 404},
        {"unknown POST route", "POST", "/admin/shutdown", "{}", 0, 404},
        {"DELETE completions", "DELETE", "/v1/completions", "", 0, 405},
        {"GET chat", "GET", "/v1/chat/completions", "", 0, 405},
        {"POST models", "POST", "/v1/models", "{}", 0, 405},
        {"no key", "POST", "/v1/completions", "{\"prompt\":\"a\"}", 1, 401},
        {"wrong key", "POST", "/v1/completions", "{\"prompt\":\"a\"}", 2, 401},
        {"a prefix of the key", "POST", "/v1/completions", "{\"prompt\":\"a\"}", 3, 401},
        {"no key on models", "GET", "/v1/models", "", 1, 401},
        {"tokenize a number", "POST", "/tokenize", "{\"prompt\":5}", 0, 400},
        {"detokenize -1", "POST", "/detokenize", "{\"tokens\":[-1]}", 0, 400},
        {"detokenize past the vocabulary", "POST", "/detokenize", "{\"tokens\":[99999999]}", 0, 400},
        {"detokenize no tokens", "POST", "/detokenize", "{\"tokens\":\"x\"}", 0, 400},
        {"embeddings input a number", "POST", "/v1/embeddings", "{\"input\":5}", 0, 400},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    CHECK(n >= 30);
    for (int i = 0; i < n; i++) {
        const hostile *h = &cases[i];
        char *made = NULL;
        if (!h->body && strstr(h->name, "arrays"))
            made = repeat("[", "]", 10000);
        else if (!h->body && strstr(h->name, "objects"))
            made = repeat("{\"a\":", "}", 10000);
        else if (!h->body && strstr(h->name, "context")) {
            made = malloc(CTX * 8 + 64);
            strcpy(made, "{\"prompt\":[1");
            for (int k = 0; k < CTX + 10; k++)
                strcat(made, ",29");
            strcat(made, "]}");
        } else if (!h->body) { /* over the body limit */
            made = malloc(MAX_BODY + 1024);
            strcpy(made, "{\"prompt\":\"");
            memset(made + 11, 'a', MAX_BODY);
            strcpy(made + 11 + MAX_BODY, "\"}");
        }
        const char *body = made ? made : h->body;
        const char *key = h->key == 0 ? KEY : h->key == 1 ? NULL : h->key == 2 ? "sk-nope" : "sk-test";
        http_resp r = http(h->method, h->path, key, body, strlen(body));
        CHECKF(r.status == h->status, "%s: status %d, expected %d (%.200s)", h->name, r.status,
               h->status, r.body ? r.body : "");
        CHECKF(is_error_object(&r), "%s: not an OpenAI error object: %.200s", h->name,
               r.body ? r.body : "(none)");
        resp_free(&r);
        free(made);
    }
    /* outside what the handler sees: a request line and headers past the
     * limits, and bytes that are not HTTP */
    char *big = malloc(200000);
    strcpy(big, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    size_t bl = strlen(big);
    memset(big + bl, 'x', 150000);
    strcpy(big + bl + 150000, "\r\nConnection: close\r\n\r\n");
    http_resp r = http_raw(big, strlen(big), 10000);
    CHECKF(r.status >= 400 && r.status < 500, "a 150 kB header: status %d", r.status);
    resp_free(&r);
    free(big);
    /* a chunked body (no Content-Length) that grows past --max-body */
    size_t cb = 0, ccap = MAX_BODY * 2 + 4096;
    char *chunked = malloc(ccap);
    cb += (size_t)snprintf(chunked, ccap,
                           "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Authorization: Bearer " KEY "\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "b\r\n{\"prompt\":\"\r\n");
    for (int i = 0; i < MAX_BODY / 8192 + 2; i++) {
        cb += (size_t)snprintf(chunked + cb, ccap - cb, "2000\r\n");
        memset(chunked + cb, 'a', 8192);
        cb += 8192;
        cb += (size_t)snprintf(chunked + cb, ccap - cb, "\r\n");
    }
    cb += (size_t)snprintf(chunked + cb, ccap - cb, "2\r\n\"}\r\n0\r\n\r\n");
    r = http_raw(chunked, cb, 10000);
    CHECKF(r.status == 413 && is_error_object(&r), "a chunked body over the limit: %d", r.status);
    resp_free(&r);
    free(chunked);
    r = http_raw("GARBAGE\r\n\r\n", 11, 5000);
    CHECKF(r.status == 0 || r.status == 400, "garbage: status %d", r.status);
    resp_free(&r);
    r = post("/v1/completions", "{\"prompt\":\"a\",\"max_tokens\":1e1}");
    CHECKF(r.status == 200, "an integral real max_tokens: %d", r.status);
    resp_free(&r);
    /* and the server still serves */
    r = post("/v1/completions", "{\"prompt\":\"Hello\",\"max_tokens\":4,\"ignore_eos\":true}");
    CHECKF(r.status == 200, "after the hostile requests: %d %.200s", r.status, r.body);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(json_object_get(j, "usage"),
                                                    "completion_tokens")), 4);
    json_decref(j);
    resp_free(&r);
}

static void test_endpoints(void)
{
    if (!up())
        return;
    http_resp r = http("GET", "/health", NULL, "", 0);
    CHECK_EQ_INT(r.status, 200);
    resp_free(&r);
    /* tokenize / detokenize in vLLM's shapes, against `vitamin tokenize` */
    r = post("/tokenize", "{\"prompt\":\"Hello world, this is\"}");
    CHECK_EQ_INT(r.status, 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "count")),
                 count_tokens("Hello world, this is"));
    CHECK_EQ_INT(json_array_size(json_object_get(j, "tokens")),
                 json_integer_value(json_object_get(j, "count")));
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "max_model_len")), CTX);
    json_t *toks = json_object_get(j, "tokens");
    json_t *dreq = json_pack("{s:O}", "tokens", toks);
    char *ds = json_dumps(dreq, JSON_COMPACT);
    resp_free(&r);
    r = post("/detokenize", ds);
    CHECK_EQ_INT(r.status, 200);
    json_t *d = json_loadb(r.body, r.body_len, 0, NULL);
    const char *back = json_string_value(json_object_get(d, "prompt"));
    CHECKF(back && strstr(back, "Hello world, this is"), "detokenized '%s'", back ? back : "");
    json_decref(d);
    free(ds);
    json_decref(dreq);
    json_decref(j);
    resp_free(&r);
    r = post("/tokenize", "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story.\"}]}");
    j = json_loadb(r.body, r.body_len, 0, NULL);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "count")),
                 count_tokens("<|user|>Tell me a story.\n<|assistant|>"));
    json_decref(j);
    resp_free(&r);
    /* metrics: every name, in Prometheus text */
    r = http("GET", "/metrics", NULL, "", 0);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.head && strstr(r.head, "text/plain; version=0.0.4"));
    static const char *const names[] = {
        "vitamin_requests_total{endpoint=\"/v1/completions\",status=\"200\"}",
        "vitamin_requests_total{endpoint=\"/v1/completions\",status=\"400\"}",
        "vitamin_prompt_tokens_total ", "vitamin_generation_tokens_total ",
        "vitamin_time_to_first_token_seconds_bucket{le=\"+Inf\"}",
        "vitamin_time_per_output_token_seconds_count ",
        "vitamin_e2e_request_latency_seconds_sum ", "vitamin_num_requests_running ",
        "vitamin_num_requests_waiting ", "vitamin_kv_blocks_used ", "vitamin_kv_blocks_cached ",
        "vitamin_kv_blocks_total ", "vitamin_num_preemptions_total ",
        "vitamin_prefix_cache_queries_total ", "vitamin_prefix_cache_hits_total ",
        "vitamin_tokens_per_step_bucket{le=\"1\"}", "# TYPE vitamin_tokens_per_step histogram"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECKF(r.body && strstr(r.body, names[i]), "/metrics lacks %s", names[i]);
    resp_free(&r);
}

static void test_idle_timeout(void)
{
    if (!up())
        return;
    int fd = connect_server();
    CHECK(fd >= 0);
    char c;
    double t0 = now(), end = t0 + 8;
    ssize_t got = 1;
    while (now() < end) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 200) > 0) {
            got = recv(fd, &c, 1, 0);
            break;
        }
    }
    CHECKF(got == 0 && now() - t0 >= 1.5, "an idle connection: recv %zd after %.1f s", got,
           now() - t0);
    close(fd);
}

static void test_shutdown(void)
{
    if (!up())
        return;
    /* a request that runs when SIGTERM comes (its first chunk arrived): it
     * completes within the grace */
    const char *body =
        "{\"prompt\":\"Hello\",\"max_tokens\":60,\"ignore_eos\":true,\"stream\":true}";
    char req[1024];
    int h = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Authorization: Bearer " KEY "\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    int fd = connect_server();
    CHECK(fd >= 0 && send(fd, req, (size_t)h, MSG_NOSIGNAL) == h);
    struct timespec ts = {0, 20 * 1000 * 1000};
    static char buf[1 << 20];
    size_t n = 0;
    bool sent = false;
    for (double end = now() + 60; now() < end && n < sizeof buf - 1;) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t got = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (got <= 0)
            break;
        n += (size_t)got;
        buf[n] = 0;
        if (!sent && strstr(buf, "data: {")) {
            CHECK(kill(server_pid, SIGTERM) == 0);
            sent = true;
        }
    }
    buf[n] = 0;
    close(fd);
    CHECK(sent);
    CHECKF(!strncmp(buf, "HTTP/1.1 200", 12) && strstr(buf, "\"finish_reason\":\"length\"") &&
               strstr(buf, "data: [DONE]"),
           "the request running at SIGTERM: %.300s", buf);
    int st = 0;
    pid_t w = 0;
    for (double end = now() + 30; now() < end && (w = waitpid(server_pid, &st, WNOHANG)) == 0;)
        nanosleep(&ts, NULL);
    CHECKF(w == server_pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
           "the server's exit after SIGTERM: %s %d", w == server_pid ? "status" : "still running",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    if (w != server_pid)
        kill(server_pid, SIGKILL), waitpid(server_pid, &st, 0);
    server_pid = -1;
}

/* Waits for a log line containing what (true), up to seconds. */
static bool log_has(const char *log, const char *what, double seconds)
{
    for (double end = now() + seconds;;) {
        size_t n = 0;
        char *t = test_read_file(log, &n);
        bool hit = t && strstr(t, what);
        free(t);
        if (hit || now() >= end)
            return hit;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static double metric(const char *name)
{
    http_resp r = http("GET", "/metrics", NULL, "", 0);
    double v = NAN;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = r.body ? strstr(r.body, key) : NULL;
    if (p)
        v = atof(p + strlen(key));
    resp_free(&r);
    return v;
}

/* A non-streaming client that hangs up mid-generation: its request is
 * aborted (logged 499) and its KV blocks are freed. */
static void test_disconnect(void)
{
    if (!up())
        return;
    const char *body = "{\"prompt\":\"Hello\",\"max_tokens\":480,\"ignore_eos\":true}";
    char req[1024];
    int h = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " KEY
                     "\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    int fd = connect_server();
    CHECK(fd >= 0 && send(fd, req, (size_t)h, MSG_NOSIGNAL) == h);
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double t0 = now();
    close(fd);
    CHECKF(log_has(log_path, "POST /v1/completions 499 (aborted) prompt=2", 10),
           "the hung-up request was not aborted");
    double used = NAN;
    while (now() - t0 < 5 && !((used = metric("vitamin_kv_blocks_used")) == 0))
        nanosleep(&ts, NULL);
    CHECKF(used == 0, "KV blocks used after the hang-up: %g", used);
    CHECK(metric("vitamin_num_requests_running") == 0);
}

/* SIGTERM with --shutdown-grace 0.2 while a long stream runs: the stream is
 * cut at the grace's end (still a well-formed SSE stream, ending with
 * [DONE]) and the server exits 0. */
static void test_shutdown_abort(void)
{
    if (!up())
        return;
    char log2[600];
    snprintf(log2, sizeof log2, "%s/serve2.log", test_tmpdir());
    const char *args[] = {"--model-name", MODEL_NAME, "--ctx", "4096", "--shutdown-grace", "0.2",
                          "--no-memory", NULL};
    int p2 = 0;
    pid_t pid = spawn_server(args, log2, &p2);
    if (pid < 0 || p2 <= 0)
        return;
    int saved = port;
    port = p2;
    const char *body = "{\"prompt\":\"Hello\",\"max_tokens\":4000,\"ignore_eos\":true,"
                       "\"stream\":true}";
    char req[1024];
    int h = snprintf(req, sizeof req,
                     "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    int fd = connect_server();
    port = saved;
    CHECK(fd >= 0 && send(fd, req, (size_t)h, MSG_NOSIGNAL) == h);
    size_t cap = 1 << 22, n = 0;
    char *buf = malloc(cap);
    bool sent = false;
    double t0 = now(), t_sig = 0;
    while (buf && now() - t0 < 30 && n < cap - 1) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 100) <= 0)
            continue;
        ssize_t got = recv(fd, buf + n, cap - 1 - n, 0);
        if (got <= 0)
            break;
        n += (size_t)got;
        if (!sent && n > 2000) {
            CHECK(kill(pid, SIGTERM) == 0);
            sent = true;
            t_sig = now();
        }
    }
    close(fd);
    if (buf)
        buf[n] = 0;
    CHECK(sent);
    /* the last chunk: [DONE], then chunked encoding's end */
    CHECKF(buf && n > 40 && strstr(buf + n - 40, "data: [DONE]\n\n") &&
               !strcmp(buf + n - 5, "0\r\n\r\n"),
           "the cut stream's end: '%s'", buf && n > 40 ? buf + n - 40 : "");
    CHECKF(buf && !strstr(buf, "\"finish_reason\":\"length\""), "the stream was not cut");
    free(buf);
    int st = 0;
    pid_t w = 0;
    struct timespec ts = {0, 20 * 1000 * 1000};
    for (double end = now() + 30; now() < end && (w = waitpid(pid, &st, WNOHANG)) == 0;)
        nanosleep(&ts, NULL);
    CHECKF(w == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit after SIGTERM: %d",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    if (w != pid)
        kill(pid, SIGKILL), waitpid(pid, &st, 0);
    CHECKF(now() - t_sig < 10, "the shutdown took %.1f s", now() - t_sig);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN_TEST(test_start);
    RUN_TEST(test_openai_client);
    RUN_TEST(test_logprobs);
    RUN_TEST(test_hostile);
    RUN_TEST(test_endpoints);
    RUN_TEST(test_idle_timeout);
    RUN_TEST(test_disconnect);
    RUN_TEST(test_shutdown_abort);
    RUN_TEST(test_shutdown);
    json_decref(client_out);
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
    }
    return test_finish("test_serve");
}
