/*
 * fuzz_oai.c - libFuzzer harness for the OpenAI request path without HTTP
 * (src/server/oai.h): the first byte picks the endpoint (completions or
 * chat) and the shape of the fake engine run, the rest is the request body.
 * A body that validates is answered from synthetic engine events (tokens
 * drawn from the input, text pieces of arbitrary bytes, finish reasons,
 * errors) both as a whole body and as stream chunks, and every answer must
 * serialize as JSON; a refused body must come with a 4xx/5xx status and an
 * error object. Invariants are checked with __builtin_trap().
 *
 * The tokenizer is tests/data/vocab/ggml-vocab-llama-spm.gguf (run from the
 * repository root, or set VT_FUZZ_VOCAB_DIR), with a small chat template
 * that uses tools; no model or engine (the context's engine is NULL).
 * Seeds: fuzz/seeds-oai/ (one request body per file, first byte the
 * endpoint).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "server/oai.h"
#include "tokenizer/tokenizer.h"

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            __builtin_trap();                                                                      \
    } while (0)

static tok_tokenizer *tok;
static chat_fmt *chat;
static oai_ctx ctx;

static const char *const TEMPLATE =
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if tools %}[tools: {{ tools|length }}]{% endif %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("VT_FUZZ_VOCAB_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/ggml-vocab-llama-spm.gguf", dir && *dir ? dir : "tests/data/vocab");
    gguf_file *g;
    if (gguf_open(path, &g) || tok_load(g, &tok) ||
        chat_fmt_create(tok, TEMPLATE, strlen(TEMPLATE), &chat)) {
        fprintf(stderr, "fuzz_oai: cannot load %s: %s (run from the repository root or set "
                        "VT_FUZZ_VOCAB_DIR)\n", path, vt_last_error());
        exit(1);
    }
    gguf_close(g);
    ctx = (oai_ctx){.tok = tok, .max_seq_len = 512, .chat = chat, .model_name = "m"};
    return 0;
}

static void check_json(json_t *j)
{
    ASSERT(j != NULL);
    char *s = json_dumps(j, JSON_COMPACT);
    ASSERT(s != NULL);
    free(s);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned sel = data[0];
    oai_endpoint ep = sel & 1 ? OAI_CHAT : OAI_COMPLETIONS;
    bool stream = sel & 2;
    oai_request *r = NULL;
    oai_error err;
    int rc = oai_request_parse_text(ep, (const char *)data + 1, size - 1, &ctx, &r, &err);
    if (rc) {
        ASSERT(r == NULL && rc >= 400 && rc < 600 && err.status == rc && err.message[0]);
        json_t *e = oai_error_json(&err);
        check_json(e);
        json_decref(e);
        return 0;
    }
    ASSERT(r && r->n_prompts >= 1 && r->params.n >= 1);
    for (int32_t i = 0; i < r->n_prompts; i++) {
        ASSERT(r->prompts[i].n >= 1 && r->prompts[i].n < 512);
        for (int64_t k = 0; k < r->prompts[i].n; k++)
            ASSERT(r->prompts[i].ids[k] >= 0 && r->prompts[i].ids[k] < tok_n_vocab(tok));
    }
    oai_response *resp = oai_response_create(r, tok, NULL, 1);
    ASSERT(resp);
    if (stream) {
        json_t *a = oai_stream_begin(resp);
        check_json(a);
        json_decref(a);
    }
    /* synthetic events: a few tokens per completion, taken from the input */
    size_t pos = 1;
    for (int32_t p = 0; p < r->n_prompts; p++) {
        for (int32_t c = 0; c < r->params.n; c++) {
            for (int k = 0; k < 3; k++) {
                unsigned char b = data[pos++ % size];
                vt_event ev = {.kind = VT_EV_TOKEN, .index = c, .token = (int32_t)(b * 97) % tok_n_vocab(tok)};
                ev.text = (const char *)data + (pos % size);
                ev.len = (size_t)(b % 5) <= size - (pos % size) ? (size_t)(b % 5) : 0;
                ev.logprob = -(float)b / 10;
                ev.n_top = r->params.top_logprobs;
                for (int32_t t = 0; t < ev.n_top; t++)
                    ev.top[t] = (vt_token_logprob){(int32_t)(t * 31 + b) % tok_n_vocab(tok),
                                                   -(float)t};
                if (b == 7)
                    ev.logprob = -INFINITY;
                if (stream) {
                    json_t *a = oai_stream_event(resp, p, &ev);
                    check_json(a);
                    json_decref(a);
                } else {
                    ASSERT(oai_response_add(resp, p, &ev) == VT_OK);
                }
            }
            vt_event fin = {.kind = VT_EV_FINISH, .index = c, .text = "",
                            .finish = (vt_finish)(1 + data[pos++ % size] % 4)};
            ASSERT(oai_response_add(resp, p, &fin) == VT_OK);
        }
        if (data[pos++ % size] == 0xEE) {
            vt_event e = {.kind = VT_EV_ERROR, .index = -1, .text = "boom", .len = 4};
            ASSERT(oai_response_add(resp, p, &e) == VT_OK);
        }
        vt_event done = {.kind = VT_EV_DONE, .index = -1,
                         .usage = {.prompt_tokens = r->prompts[p].n, .completion_tokens = 3}};
        ASSERT(oai_response_add(resp, p, &done) == VT_OK);
    }
    ASSERT(oai_response_done(resp));
    json_t *body = oai_response_body(resp, &err);
    if (body)
        check_json(body);
    else
        ASSERT(err.status == 500);
    json_decref(body);
    json_t *u = oai_stream_usage(resp);
    ASSERT(!u == !r->include_usage);
    if (u)
        check_json(u);
    json_decref(u);
    oai_response_free(resp);
    oai_request_free(r);
    return 0;
}
