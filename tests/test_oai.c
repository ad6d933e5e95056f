/*
 * test_oai.c - the OpenAI request/response module (src/server/oai.h) over a
 * gen-model model: every field of /v1/completions and /v1/chat/completions
 * mapped into the engine's parameters (prompt tokens equal to the model's
 * tokenization with its BOS rule, or to chat/'s rendering with the same
 * messages), a table of hostile bodies each refused with the right status,
 * param and message (deep nesting, wrong types, out-of-range numbers,
 * invalid UTF-8, 1e999, NaN, huge strings and lists, a prompt past the
 * context), and the response shapes checked field by field: a greedy
 * request run on a manual-step engine, collected into text_completion and
 * chat.completion bodies and into streaming chunks whose deltas add up to
 * the same text.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "engine/engine.h"
#include "server/oai.h"
#include "test.h"

/* json_string_value, "" for a missing value (so that a failed CHECK never
 * hands NULL to strcmp). */
static const char *jstr_or_empty(const json_t *v)
{
    const char *s = json_string_value(v);
    return s ? s : "";
}

static md_model *model;
static tok_tokenizer *tok;
static vt_engine *eng;
static chat_fmt *chat;
static oai_ctx ctx;

#define CTX 256

static const char *const TEMPLATE =
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if tools %}[tools: {{ tools|length }}]{% endif %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

static void test_setup(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the oai test model"))
        return;
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/oai.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
             "--type q8_0 --vocab %s -o %s",
             test_vitamin_bin(), vocab, path);
    if (system(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` failed", cmd);
        return;
    }
    if (md_load(path, &model) || tok_load(model->file, &tok)) {
        test_fail_at(__FILE__, __LINE__, "cannot load %s: %s", path, vt_last_error());
        return;
    }
    vt_engine_config cfg = {.kv_tokens = 1024, .max_seq_len = CTX, .manual_step = true};
    eng = eng_create(model, tok, NULL, &cfg);
    CHECKF(eng != NULL, "eng_create: %s", vt_last_error());
    CHECK(chat_fmt_create(tok, TEMPLATE, strlen(TEMPLATE), &chat) == VT_OK);
    ctx = (oai_ctx){.engine = eng, .chat = chat, .model_name = "m"};
}

static bool ready(void)
{
    if (!eng || !chat) {
        test_skip_missing("the test model (see test_setup)");
        return false;
    }
    return true;
}

static oai_request *parse_ok(oai_endpoint ep, const char *body)
{
    oai_request *r = NULL;
    oai_error err;
    int rc = oai_request_parse_text(ep, body, strlen(body), &ctx, &r, &err);
    CHECKF(rc == 0 && r, "refused (%d: %s): %s", rc, err.message, body);
    return rc == 0 ? r : NULL;
}

/* The model's tokenization of text with its BOS rule (what `vitamin run`
 * submits). */
static int32_t *encode(const char *text, size_t *n)
{
    int32_t *body;
    size_t nb;
    CHECK(tok_encode(tok, text, strlen(text), false, true, &body, &nb) == VT_OK);
    bool bos = tok_add_bos(tok) && tok_bos(tok) != TOK_NULL;
    int32_t *ids = malloc(sizeof *ids * (nb + 1));
    if (bos)
        ids[0] = tok_bos(tok);
    memcpy(ids + bos, body, sizeof *ids * nb);
    free(body);
    *n = nb + bos;
    return ids;
}

static bool same_tokens(const oai_prompt *p, const int32_t *ids, size_t n)
{
    return p->n == (int64_t)n && !memcmp(p->ids, ids, sizeof *ids * n);
}

/* ---- fields accepted ---- */

static void test_completions_fields(void)
{
    if (!ready())
        return;
    oai_request *r = parse_ok(
        OAI_COMPLETIONS,
        "{\"model\":\"m\",\"prompt\":\"Hello world\",\"max_tokens\":7,\"temperature\":0.5,"
        "\"top_p\":0.9,\"n\":3,\"stop\":[\"\\n\",\"END\"],\"seed\":42,\"presence_penalty\":0.5,"
        "\"frequency_penalty\":-1.5,\"logit_bias\":{\"5\":-100,\"17\":2.5},\"logprobs\":3,"
        "\"echo\":false,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"user\":\"u1\",\"top_k\":40,\"min_p\":0.05,\"repetition_penalty\":1.1,"
        "\"ignore_eos\":true,\"min_tokens\":2,\"skip_special_tokens\":false,\"foo\":[1,2]}");
    if (!r)
        return;
    const vt_request_params *p = &r->params;
    CHECK(r->endpoint == OAI_COMPLETIONS && !strcmp(r->model, "m"));
    CHECK_EQ_INT(p->max_tokens, 7);
    CHECK(p->temperature == 0.5f && p->top_p == 0.9f && p->n == 3);
    CHECK_EQ_INT(p->n_stop, 2);
    CHECK(!strcmp(p->stop[0], "\n") && !strcmp(p->stop[1], "END"));
    CHECK(p->seed == 42 && p->presence_penalty == 0.5f && p->frequency_penalty == -1.5f);
    CHECK_EQ_INT(p->n_logit_bias, 2);
    CHECK(p->logit_bias[0].token == 5 && p->logit_bias[0].bias == -100.0f);
    CHECK(p->logit_bias[1].token == 17 && p->logit_bias[1].bias == 2.5f);
    CHECK(r->logprobs == 3 && p->logprobs && p->top_logprobs == 3);
    CHECK(!r->echo && r->stream && r->include_usage && !strcmp(r->user, "u1"));
    CHECK(p->top_k == 40 && p->min_p == 0.05f && p->repetition_penalty == 1.1f);
    CHECK(p->ignore_eos && p->min_tokens == 2 && p->special);
    size_t n;
    int32_t *ids = encode("Hello world", &n);
    CHECK_EQ_INT(r->n_prompts, 1);
    CHECK(same_tokens(&r->prompts[0], ids, n));
    CHECK(ids[0] == tok_bos(tok)); /* the llama vocabulary asks for BOS */
    vt_request_params q = oai_request_params(r, 0);
    CHECK(q.prompt == r->prompts[0].ids && q.n_prompt == (int64_t)n);
    free(ids);
    oai_request_free(r);

    /* defaults: OpenAI's (max_tokens 16 for completions, temperature 1) */
    r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":\"x\"}");
    if (r) {
        CHECK_EQ_INT(r->params.max_tokens, 16);
        CHECK(r->params.temperature == 1.0f && r->params.n == 1 && r->logprobs == -1);
        CHECK(!r->params.special && !r->stream && !strcmp(r->model, "m"));
        CHECK(r->params.seed == UINT64_MAX);
    }
    oai_request_free(r);
    /* an integral real is an integer; null is "not given" */
    r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":\"x\",\"max_tokens\":5.0,\"n\":null,\"stop\":\"S\"}");
    if (r)
        CHECK(r->params.max_tokens == 5 && r->params.n == 1 && r->params.n_stop == 1);
    oai_request_free(r);
}

static void test_prompt_forms(void)
{
    if (!ready())
        return;
    size_t na, nb;
    int32_t *a = encode("alpha beta", &na), *b = encode("gamma", &nb);
    oai_request *r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":[\"alpha beta\",\"gamma\"],\"n\":2}");
    if (r) {
        CHECK_EQ_INT(r->n_prompts, 2);
        CHECK(same_tokens(&r->prompts[0], a, na) && same_tokens(&r->prompts[1], b, nb));
        CHECK(!strcmp(r->prompts[1].text, "gamma"));
    }
    oai_request_free(r);
    r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":[1,20,300]}");
    if (r) {
        int32_t want[] = {1, 20, 300};
        CHECK_EQ_INT(r->n_prompts, 1);
        CHECK(same_tokens(&r->prompts[0], want, 3)); /* token prompts are taken as they are */
    }
    oai_request_free(r);
    r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":[[1,2],[3,4,5],\"gamma\"]}");
    if (r) {
        int32_t w2[] = {3, 4, 5};
        CHECK_EQ_INT(r->n_prompts, 3);
        CHECK(same_tokens(&r->prompts[1], w2, 3) && same_tokens(&r->prompts[2], b, nb));
    }
    oai_request_free(r);
    free(a);
    free(b);
}

static void test_chat_fields(void)
{
    if (!ready())
        return;
    json_t *msgs = json_pack("[{s:s,s:s},{s:s,s:s}]", "role", "system", "content", "Be brief.",
                             "role", "user", "content", "Hi there");
    int32_t *want;
    size_t nw;
    CHECK(chat_prompt(chat, msgs, true, NULL, &want, &nw) == VT_OK);
    oai_request *r = parse_ok(
        OAI_CHAT,
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi \"},"
        "{\"type\":\"text\",\"text\":\"there\"}]}],\"max_tokens\":9,\"max_completion_tokens\":5,"
        "\"logprobs\":true,\"top_logprobs\":4,\"n\":2}");
    if (r) {
        CHECK(r->endpoint == OAI_CHAT && r->n_prompts == 1);
        CHECK(same_tokens(&r->prompts[0], want, nw)); /* text parts joined */
        CHECK_EQ_INT(r->params.max_tokens, 5);         /* max_completion_tokens wins */
        CHECK(r->logprobs == 4 && r->params.logprobs && r->params.top_logprobs == 4);
        CHECK_EQ_INT(r->params.n, 2);
    }
    oai_request_free(r);
    free(want);
    json_decref(msgs);

    /* chat defaults: no max_tokens limit (-1: up to the context) */
    r = parse_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    if (r)
        CHECK(r->params.max_tokens == -1 && r->logprobs == -1);
    oai_request_free(r);

    /* tools reach the template */
    r = parse_ok(OAI_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                           "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
                           "{\"type\":\"function\",\"function\":{\"name\":\"g\"}}]}");
    if (r) {
        char *text;
        size_t len;
        CHECK(tok_detokenize(tok, r->prompts[0].ids, (size_t)r->prompts[0].n, false, true, &text,
                             &len) == VT_OK);
        CHECKF(strstr(text, "[tools: 2]") != NULL, "rendered: %s", text);
        free(text);
    }
    oai_request_free(r);
}

/* ---- hostile bodies ---- */

typedef struct {
    oai_endpoint ep;
    const char *body;
    int status;
    const char *param;   /* "" = null */
    const char *message; /* a part of the message */
} bad_case;

static void check_bad(const bad_case *c, const char *body, size_t len)
{
    oai_request *r = (oai_request *)1;
    oai_error err;
    int rc = oai_request_parse_text(c->ep, body, len, &ctx, &r, &err);
    CHECKF(rc == c->status, "status %d (want %d) for %.80s: %s", rc, c->status, body, err.message);
    CHECK(r == NULL);
    if (rc == 0) {
        oai_request_free(r);
        return;
    }
    CHECK(err.status == rc);
    CHECKF(!strcmp(err.param, c->param), "param '%s' (want '%s') for %.80s", err.param, c->param,
           body);
    CHECKF(strstr(err.message, c->message) != NULL, "message '%s' lacks '%s'", err.message,
           c->message);
    CHECKF(!strcmp(err.type, rc == 500 ? "internal_error" : "invalid_request_error"), "type %s",
           err.type);
    json_t *j = oai_error_json(&err);
    CHECK(j && json_is_string(json_object_get(json_object_get(j, "error"), "message")));
    json_t *param = json_object_get(json_object_get(j, "error"), "param");
    CHECK(*c->param ? json_is_string(param) : json_is_null(param));
    json_decref(j);
}

static void test_hostile(void)
{
    if (!ready())
        return;
    const oai_endpoint C = OAI_COMPLETIONS, H = OAI_CHAT;
    static char deep[4096];
    for (int i = 0; i < 1000; i++)
        deep[i] = '[';
    const bad_case cases[] = {
        {C, "", 400, "", "not valid JSON"},
        {C, "{\"prompt\":\"x\"", 400, "", "not valid JSON"},
        {C, "[1,2]", 400, "", "must be a JSON object"},
        {C, "\"prompt\"", 400, "", "not valid JSON"},
        {C, "{\"prompt\":\"x\"} trailing", 400, "", "not valid JSON"},
        {C, "{}", 400, "prompt", "'prompt' is required"},
        {C, "{\"prompt\":5}", 400, "prompt", "must be a string"},
        {C, "{\"prompt\":[]}", 400, "prompt", "empty"},
        {C, "{\"prompt\":[1,\"a\"]}", 400, "prompt", "token id"},
        {C, "{\"prompt\":[-1]}", 400, "prompt", "token id"},
        {C, "{\"prompt\":[99999999]}", 400, "prompt", "token id"},
        {C, "{\"prompt\":[{\"a\":1}]}", 400, "prompt", "must be a string"},
        {C, "{\"prompt\":\"x\",\"max_tokens\":0}", 400, "max_tokens", "must be in"},
        {C, "{\"prompt\":\"x\",\"max_tokens\":-5}", 400, "max_tokens", "must be in"},
        {C, "{\"prompt\":\"x\",\"max_tokens\":\"10\"}", 400, "max_tokens", "an integer"},
        {C, "{\"prompt\":\"x\",\"max_tokens\":1.5}", 400, "max_tokens", "an integer"},
        {C, "{\"prompt\":\"x\",\"max_tokens\":1e999}", 400, "", "not valid JSON"},
        {C, "{\"prompt\":\"x\",\"max_tokens\":99999999999999999999999}", 400, "", "not valid JSON"},
        {C, "{\"prompt\":\"x\",\"temperature\":NaN}", 400, "", "not valid JSON"},
        {C, "{\"prompt\":\"x\",\"temperature\":-0.1}", 400, "temperature", "must be in"},
        {C, "{\"prompt\":\"x\",\"temperature\":2.5}", 400, "temperature", "must be in"},
        {C, "{\"prompt\":\"x\",\"temperature\":true}", 400, "temperature", "a number"},
        {C, "{\"prompt\":\"x\",\"top_p\":0}", 400, "top_p", "must be in"},
        {C, "{\"prompt\":\"x\",\"top_p\":1.01}", 400, "top_p", "must be in"},
        {C, "{\"prompt\":\"x\",\"n\":0}", 400, "n", "must be in"},
        {C, "{\"prompt\":\"x\",\"n\":1000}", 400, "n", "must be in"},
        {C, "{\"prompt\":\"x\",\"stop\":7}", 400, "stop", "a string or an array"},
        {C, "{\"prompt\":\"x\",\"stop\":[\"a\",3]}", 400, "stop", "a string or an array"},
        {C, "{\"prompt\":\"x\",\"stop\":\"\"}", 400, "stop", "1 to"},
        {C, "{\"prompt\":\"x\",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\","
            "\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
         400, "stop", "at most 16"},
        {C, "{\"prompt\":\"x\",\"seed\":\"abc\"}", 400, "seed", "an integer"},
        {C, "{\"prompt\":\"x\",\"presence_penalty\":3}", 400, "presence_penalty", "must be in"},
        {C, "{\"prompt\":\"x\",\"frequency_penalty\":-2.5}", 400, "frequency_penalty",
         "must be in"},
        {C, "{\"prompt\":\"x\",\"logit_bias\":[1]}", 400, "logit_bias", "an object"},
        {C, "{\"prompt\":\"x\",\"logit_bias\":{\"abc\":1}}", 400, "logit_bias", "not a token id"},
        {C, "{\"prompt\":\"x\",\"logit_bias\":{\"99999999\":1}}", 400, "logit_bias",
         "not a token id"},
        {C, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":101}}", 400, "logit_bias", "[-100, 100]"},
        {C, "{\"prompt\":\"x\",\"logit_bias\":{\"5\":\"1\"}}", 400, "logit_bias", "[-100, 100]"},
        {C, "{\"prompt\":\"x\",\"logprobs\":6}", 400, "logprobs", "must be in"},
        {C, "{\"prompt\":\"x\",\"logprobs\":true}", 400, "logprobs", "an integer"},
        {C, "{\"prompt\":\"x\",\"echo\":\"yes\"}", 400, "echo", "a boolean"},
        {C, "{\"prompt\":\"x\",\"echo\":true,\"logprobs\":1}", 400, "echo", "not supported"},
        {C, "{\"prompt\":\"x\",\"stream\":1}", 400, "stream", "a boolean"},
        {C, "{\"prompt\":\"x\",\"stream_options\":{\"include_usage\":true}}", 400,
         "stream_options", "only allowed when 'stream'"},
        {C, "{\"prompt\":\"x\",\"stream\":true,\"stream_options\":{\"include_usage\":3}}", 400,
         "stream_options.include_usage", "a boolean"},
        {C, "{\"prompt\":\"x\",\"user\":5}", 400, "user", "a string"},
        {C, "{\"prompt\":\"x\",\"top_k\":-2}", 400, "top_k", "must be in"},
        {C, "{\"prompt\":\"x\",\"min_p\":1.5}", 400, "min_p", "must be in"},
        {C, "{\"prompt\":\"x\",\"repetition_penalty\":0}", 400, "repetition_penalty",
         "must be in"},
        {C, "{\"prompt\":\"x\",\"ignore_eos\":\"no\"}", 400, "ignore_eos", "a boolean"},
        {C, "{\"prompt\":\"x\",\"min_tokens\":-1}", 400, "min_tokens", "must be in"},
        {C, "{\"prompt\":\"x\",\"min_tokens\":20,\"max_tokens\":10}", 400, "min_tokens",
         "must not exceed"},
        {C, "{\"prompt\":\"x\",\"skip_special_tokens\":0}", 400, "skip_special_tokens",
         "a boolean"},
        {C, "{\"prompt\":\"x\",\"model\":\"gpt-4\"}", 404, "model", "does not exist"},
        {C, "{\"prompt\":\"x\",\"model\":7}", 400, "model", "a string"},
        {C, "{\"prompt\":\"x\",\"max_tokens\":300}", 400, "prompt",
         "This model's maximum context length is 256 tokens. However, you requested"},
        {C, deep, 400, "", "nested more than 64 levels"},
        {C, "{\"prompt\":\"\xff\xfe\"}", 400, "", "not valid UTF-8"},
        {C, "{\"prompt\":\"\xc3\"}", 400, "", "not valid UTF-8"},
        {C, "{\"prompt\":\"a\\u0000b\"}", 400, "", "not valid JSON"},
        {H, "{}", 400, "messages", "'messages' is required"},
        {H, "{\"messages\":{}}", 400, "messages", "an array"},
        {H, "{\"messages\":[]}", 400, "messages", "must not be empty"},
        {H, "{\"messages\":[5]}", 400, "messages[0]", "must be an object"},
        {H, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0]",
         "'role'"},
        {H, "{\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0]", "'role'"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content",
         "a string or an array"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
            "\"image_url\":{\"url\":\"x\"}}]}]}",
         400, "messages[0].content[0]", "not supported"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":1}", 400,
         "logprobs", "a boolean"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":3}", 400,
         "top_logprobs", "needs 'logprobs'"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,"
            "\"top_logprobs\":21}",
         400, "top_logprobs", "must be in"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_completion_tokens\":0}",
         400, "max_completion_tokens", "must be in"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", 400, "tools",
         "an array"},
        {H, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1000}", 400,
         "messages", "in the messages"},
    };
    size_t nc = sizeof cases / sizeof cases[0];
    CHECKF(nc >= 30, "only %zu hostile bodies", nc);
    for (size_t i = 0; i < nc; i++) {
        const char *b = cases[i].body;
        check_bad(&cases[i], b, strlen(b));
    }

    /* a huge prompt: past the context, refused with OpenAI's wording */
    size_t big = 1 << 20;
    char *s = malloc(big + 32);
    strcpy(s, "{\"prompt\":\"");
    size_t o = strlen(s);
    for (size_t i = 0; i < big; i++)
        s[o++] = "ab "[i % 3];
    strcpy(s + o, "\"}");
    bad_case hb = {C, NULL, 400, "prompt", "maximum context length is 256 tokens"};
    check_bad(&hb, s, strlen(s));
    free(s);
    /* a prompt list over the limit */
    char *l = malloc(8 * (OAI_MAX_PROMPTS + 2) + 32);
    o = (size_t)sprintf(l, "{\"prompt\":[");
    for (int i = 0; i <= OAI_MAX_PROMPTS; i++)
        o += (size_t)sprintf(l + o, "%s\"a\"", i ? "," : "");
    strcpy(l + o, "]}");
    bad_case lb = {C, NULL, 400, "prompt", "at most 256 prompts"};
    check_bad(&lb, l, strlen(l));
    free(l);
    /* a chat request without a template */
    oai_ctx no_chat = ctx;
    no_chat.chat = NULL;
    oai_request *r = NULL;
    oai_error err;
    const char *cb = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}";
    CHECK(oai_request_parse_text(OAI_CHAT, cb, strlen(cb), &no_chat, &r, &err) == 400);
    CHECK(strstr(err.message, "no chat template") != NULL && !r);
    /* any model name when the context names none */
    no_chat.model_name = NULL;
    const char *mb = "{\"prompt\":\"x\",\"model\":\"anything\"}";
    CHECK(oai_request_parse_text(OAI_COMPLETIONS, mb, strlen(mb), &no_chat, &r, &err) == 0);
    CHECK(r && !strcmp(r->model, "anything"));
    oai_request_free(r);
}

/* ---- responses ---- */

/* Runs prompt i of r on the engine, handing every event to the response
 * (stream: through oai_stream_event, its chunks appended to chunks). */
static void run_request(const oai_request *r, oai_response *resp, json_t *chunks)
{
    vt_request **reqs = calloc((size_t)r->n_prompts, sizeof *reqs);
    for (int32_t i = 0; i < r->n_prompts; i++) {
        vt_request_params p = oai_request_params(r, i);
        CHECKF(vt_submit(eng, &p, &reqs[i]) == VT_OK, "submit: %s", vt_last_error());
    }
    bool busy = true;
    while (busy && !vt_engine_step(eng, &busy))
        ;
    for (int32_t i = 0; i < r->n_prompts; i++) {
        vt_event ev;
        while (reqs[i] && vt_request_next(reqs[i], &ev, 0) > 0) {
            if (chunks) {
                json_t *a = oai_stream_event(resp, i, &ev);
                CHECK(a != NULL);
                json_array_extend(chunks, a);
                json_decref(a);
            } else {
                CHECK(oai_response_add(resp, i, &ev) == VT_OK);
            }
        }
        vt_request_free(reqs[i]);
    }
    free(reqs);
}

/* The greedy continuation of ids as text (the engine alone). */
static char *greedy_text(const int32_t *ids, int64_t n, int32_t max_tokens)
{
    vt_request_params p = vt_request_params_default();
    p.prompt = ids;
    p.n_prompt = n;
    p.temperature = 0;
    p.max_tokens = max_tokens;
    vt_request *q;
    CHECK(vt_submit(eng, &p, &q) == VT_OK);
    bool busy = true;
    while (busy && !vt_engine_step(eng, &busy))
        ;
    char *text = calloc(1, 4096);
    size_t len = 0;
    vt_event ev;
    while (vt_request_next(q, &ev, 0) > 0)
        if ((ev.kind == VT_EV_TOKEN || ev.kind == VT_EV_FINISH) && len + ev.len < 4096) {
            memcpy(text + len, ev.text, ev.len);
            len += ev.len;
        }
    vt_request_free(q);
    return text;
}

static void test_completion_body(void)
{
    if (!ready())
        return;
    oai_request *r = parse_ok(OAI_COMPLETIONS, "{\"model\":\"m\",\"prompt\":[\"Once upon\",\"a"
                                               "\"],\"n\":2,\"max_tokens\":6,\"temperature\":0,"
                                               "\"logprobs\":2,\"echo\":false}");
    if (!r)
        return;
    oai_response *resp = oai_response_create(r, tok, NULL, 1234);
    CHECK(resp && !strncmp(oai_response_id(resp), "cmpl-", 5));
    run_request(r, resp, NULL);
    CHECK(oai_response_done(resp));
    oai_error err;
    json_t *b = oai_response_body(resp, &err);
    CHECK(b != NULL);
    if (!b) {
        oai_response_free(resp);
        oai_request_free(r);
        return;
    }
    CHECK(!strcmp(jstr_or_empty(json_object_get(b, "object")), "text_completion"));
    CHECK(!strcmp(jstr_or_empty(json_object_get(b, "id")), oai_response_id(resp)));
    CHECK(json_integer_value(json_object_get(b, "created")) == 1234);
    CHECK(!strcmp(jstr_or_empty(json_object_get(b, "model")), "m"));
    json_t *choices = json_object_get(b, "choices");
    CHECK_EQ_INT(json_array_size(choices), 4); /* 2 prompts x n = 2, prompt-major */
    for (size_t i = 0; i < json_array_size(choices); i++) {
        json_t *c = json_array_get(choices, i);
        CHECK_EQ_INT(json_integer_value(json_object_get(c, "index")), (long long)i);
        CHECK_EQ_INT(json_object_size(c), 4);
        const char *text = json_string_value(json_object_get(c, "text"));
        const oai_prompt *p = &r->prompts[i / 2];
        char *want = greedy_text(p->ids, p->n, 6);
        CHECKF(text && !strcmp(text, want), "choice %zu: '%s' vs '%s'", i, text, want);
        free(want);
        const char *fr = json_string_value(json_object_get(c, "finish_reason"));
        CHECK(fr && (!strcmp(fr, "length") || !strcmp(fr, "stop")));
        json_t *lp = json_object_get(c, "logprobs");
        json_t *toks = json_object_get(lp, "tokens"), *tlp = json_object_get(lp, "token_logprobs");
        json_t *top = json_object_get(lp, "top_logprobs"), *off = json_object_get(lp, "text_offset");
        CHECK(json_is_array(toks) && json_is_array(tlp) && json_is_array(top) && json_is_array(off));
        size_t nt = json_array_size(toks);
        CHECK(nt >= 1 && nt <= 6 && json_array_size(tlp) == nt && json_array_size(top) == nt &&
              json_array_size(off) == nt);
        long long at = 0;
        for (size_t k = 0; k < nt; k++) {
            double v = json_real_value(json_array_get(tlp, k));
            CHECK(v <= 0);
            json_t *t = json_array_get(top, k);
            CHECK(json_is_object(t) && json_object_size(t) >= 1 && json_object_size(t) <= 3);
            /* greedy: the sampled token is the best of its alternatives */
            const char *key;
            json_t *val;
            json_object_foreach(t, key, val) CHECK(json_real_value(val) <= v + 1e-6);
            long long o = json_integer_value(json_array_get(off, k));
            CHECK(k == 0 ? o == 0 : o >= at); /* offsets grow with the tokens' bytes */
            at = o;
        }
    }
    json_t *u = json_object_get(b, "usage");
    vt_usage us = oai_response_usage(resp);
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "prompt_tokens")),
                 r->prompts[0].n + r->prompts[1].n);
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "completion_tokens")),
                 us.completion_tokens);
    CHECK(us.completion_tokens >= 4 && us.completion_tokens <= 24);
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "total_tokens")),
                 us.prompt_tokens + us.completion_tokens);
    json_decref(b);
    oai_response_free(resp);
    oai_request_free(r);

    /* echo puts the prompt in front */
    r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":\"Hello\",\"max_tokens\":3,\"temperature\":0,"
                                  "\"echo\":true}");
    if (!r)
        return;
    resp = oai_response_create(r, tok, "cmpl-fixed", 1);
    run_request(r, resp, NULL);
    b = oai_response_body(resp, &err);
    const char *text = json_string_value(json_object_get(json_array_get(json_object_get(b, "choices"), 0), "text"));
    char *want = greedy_text(r->prompts[0].ids, r->prompts[0].n, 3);
    CHECKF(text && !strncmp(text, "Hello", 5) && !strcmp(text + 5, want), "echo: %s", text);
    CHECK(!strcmp(jstr_or_empty(json_object_get(b, "id")), "cmpl-fixed"));
    CHECK(json_is_null(json_object_get(json_array_get(json_object_get(b, "choices"), 0), "logprobs")));
    free(want);
    json_decref(b);
    oai_response_free(resp);
    oai_request_free(r);
}

static void test_chat_body_and_stream(void)
{
    if (!ready())
        return;
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me\"}],"
                       "\"max_tokens\":8,\"temperature\":0,\"logprobs\":true,\"top_logprobs\":2}";
    oai_request *r = parse_ok(OAI_CHAT, body);
    if (!r)
        return;
    oai_response *resp = oai_response_create(r, tok, NULL, 99);
    CHECK(resp && !strncmp(oai_response_id(resp), "chatcmpl-", 9));
    run_request(r, resp, NULL);
    oai_error err;
    json_t *b = oai_response_body(resp, &err);
    CHECK(b != NULL);
    CHECK(!strcmp(jstr_or_empty(json_object_get(b, "object")), "chat.completion"));
    json_t *c = json_array_get(json_object_get(b, "choices"), 0);
    json_t *msg = json_object_get(c, "message");
    CHECK(!strcmp(jstr_or_empty(json_object_get(msg, "role")), "assistant"));
    const char *content = json_string_value(json_object_get(msg, "content"));
    char *want = greedy_text(r->prompts[0].ids, r->prompts[0].n, 8);
    CHECKF(content && !strcmp(content, want), "content '%s' vs '%s'", content, want);
    json_t *lc = json_object_get(json_object_get(c, "logprobs"), "content");
    CHECK(json_is_array(lc) && json_array_size(lc) >= 1);
    for (size_t k = 0; k < json_array_size(lc); k++) {
        json_t *e = json_array_get(lc, k);
        const char *t = json_string_value(json_object_get(e, "token"));
        json_t *bytes = json_object_get(e, "bytes");
        CHECK(t && json_is_array(bytes) && json_is_number(json_object_get(e, "logprob")));
        if (t && json_array_size(bytes) == strlen(t))
            for (size_t x = 0; x < json_array_size(bytes); x++)
                CHECK(json_integer_value(json_array_get(bytes, x)) == (unsigned char)t[x]);
        json_t *top = json_object_get(e, "top_logprobs");
        CHECK_EQ_INT(json_array_size(top), 2);
        CHECK(json_real_value(json_object_get(json_array_get(top, 0), "logprob")) >=
              json_real_value(json_object_get(json_array_get(top, 1), "logprob")));
        CHECK(t && !strcmp(jstr_or_empty(json_object_get(json_array_get(top, 0), "token")), t));
    }
    CHECK(json_object_get(c, "finish_reason") && json_is_string(json_object_get(c, "finish_reason")));
    json_t *u = json_object_get(b, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(u, "prompt_tokens")), r->prompts[0].n);
    json_decref(b);
    oai_response_free(resp);
    oai_request_free(r);

    /* streamed: role delta, content deltas adding up to the same text, a
     * final chunk with finish_reason, the usage chunk */
    const char *sb = "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me\"}],"
                     "\"max_tokens\":8,\"temperature\":0,\"stream\":true,"
                     "\"stream_options\":{\"include_usage\":true}}";
    r = parse_ok(OAI_CHAT, sb);
    if (!r) {
        free(want);
        return;
    }
    resp = oai_response_create(r, tok, NULL, 5);
    json_t *chunks = oai_stream_begin(resp);
    CHECK_EQ_INT(json_array_size(chunks), 1);
    run_request(r, resp, chunks);
    json_t *uc = oai_stream_usage(resp);
    CHECK(uc != NULL);
    size_t n = json_array_size(chunks);
    CHECK(n >= 3);
    char text[4096] = "";
    int finals = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *ch = json_array_get(chunks, i);
        CHECK(!strcmp(jstr_or_empty(json_object_get(ch, "object")), "chat.completion.chunk"));
        CHECK(!strcmp(jstr_or_empty(json_object_get(ch, "id")), oai_response_id(resp)));
        CHECK(json_is_null(json_object_get(ch, "usage"))); /* null until the usage chunk */
        json_t *c0 = json_array_get(json_object_get(ch, "choices"), 0);
        json_t *d = json_object_get(c0, "delta");
        CHECK(json_is_object(d));
        if (i == 0)
            CHECK(!strcmp(jstr_or_empty(json_object_get(d, "role")), "assistant"));
        else
            CHECK(!json_object_get(d, "role"));
        json_t *fr = json_object_get(c0, "finish_reason");
        if (json_is_string(fr)) {
            finals++;
            CHECK(i == n - 1 && json_object_size(d) == 0);
        }
        const char *piece = json_string_value(json_object_get(d, "content"));
        if (piece && strlen(text) + strlen(piece) < sizeof text)
            strcat(text, piece);
    }
    CHECK_EQ_INT(finals, 1);
    CHECKF(!strcmp(text, want), "streamed '%s' vs '%s'", text, want);
    CHECK(json_array_size(json_object_get(uc, "choices")) == 0);
    json_t *uu = json_object_get(uc, "usage");
    CHECK_EQ_INT(json_integer_value(json_object_get(uu, "prompt_tokens")), r->prompts[0].n);
    CHECK(json_integer_value(json_object_get(uu, "completion_tokens")) >= 1);
    json_decref(uc);
    json_decref(chunks);
    oai_response_free(resp);
    oai_request_free(r);

    /* completions stream: text chunks, the last with finish_reason; no usage chunk */
    r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":\"Tell me\",\"max_tokens\":5,\"temperature\":0,"
                                  "\"stream\":true}");
    if (r) {
        resp = oai_response_create(r, tok, NULL, 5);
        chunks = oai_stream_begin(resp);
        CHECK_EQ_INT(json_array_size(chunks), 0);
        run_request(r, resp, chunks);
        CHECK(oai_stream_usage(resp) == NULL);
        char *w2 = greedy_text(r->prompts[0].ids, r->prompts[0].n, 5);
        char t2[4096] = "";
        for (size_t i = 0; i < json_array_size(chunks); i++) {
            json_t *ch = json_array_get(chunks, i);
            CHECK(!strcmp(jstr_or_empty(json_object_get(ch, "object")), "text_completion"));
            CHECK(!json_object_get(ch, "usage"));
            json_t *c0 = json_array_get(json_object_get(ch, "choices"), 0);
            strncat(t2, jstr_or_empty(json_object_get(c0, "text")), sizeof t2 - strlen(t2) - 1);
            CHECK(json_is_string(json_object_get(c0, "finish_reason")) ==
                  (i + 1 == json_array_size(chunks)));
        }
        CHECKF(!strcmp(t2, w2), "streamed '%s' vs '%s'", t2, w2);
        free(w2);
        json_decref(chunks);
        oai_response_free(resp);
        oai_request_free(r);
    }
    free(want);
}

/* A failed engine request: the body is an error; finish reasons of aborted
 * choices are null; strings with invalid UTF-8 become valid JSON. */
static void test_errors_and_bytes(void)
{
    if (!ready())
        return;
    oai_request *r = parse_ok(OAI_COMPLETIONS, "{\"prompt\":\"x\",\"n\":2}");
    if (!r)
        return;
    oai_response *resp = oai_response_create(r, tok, NULL, 1);
    vt_event ev = {.kind = VT_EV_TOKEN, .index = 0, .token = 5, .text = "a\xff\xc3", .len = 3};
    CHECK(oai_response_add(resp, 0, &ev) == VT_OK);
    ev = (vt_event){.kind = VT_EV_FINISH, .index = 0, .text = "", .finish = VT_FINISH_ABORT};
    CHECK(oai_response_add(resp, 0, &ev) == VT_OK);
    ev = (vt_event){.kind = VT_EV_FINISH, .index = 1, .text = "", .finish = VT_FINISH_STOP};
    CHECK(oai_response_add(resp, 0, &ev) == VT_OK);
    ev = (vt_event){.kind = VT_EV_TOKEN, .index = 2};
    CHECK(oai_response_add(resp, 0, &ev) == VT_ERR_INVALID); /* no choice 2 */
    CHECK(oai_response_add(resp, 1, &ev) == VT_ERR_INVALID); /* no prompt 1 */
    ev = (vt_event){.kind = VT_EV_DONE, .index = -1, .usage = {.prompt_tokens = 2, .completion_tokens = 1}};
    CHECK(!oai_response_done(resp));
    CHECK(oai_response_add(resp, 0, &ev) == VT_OK);
    CHECK(oai_response_done(resp));
    oai_error err;
    json_t *b = oai_response_body(resp, &err);
    json_t *c0 = json_array_get(json_object_get(b, "choices"), 0);
    CHECK(!strcmp(jstr_or_empty(json_object_get(c0, "text")), "a\xef\xbf\xbd\xef\xbf\xbd"));
    CHECK(json_is_null(json_object_get(c0, "finish_reason")));
    CHECK(!strcmp(jstr_or_empty(json_object_get(json_array_get(json_object_get(b, "choices"), 1),
                                                    "finish_reason")),
                  "stop"));
    json_decref(b);
    ev = (vt_event){.kind = VT_EV_ERROR, .index = -1, .text = "forward failed", .len = 14};
    CHECK(oai_response_add(resp, 0, &ev) == VT_OK);
    CHECK(oai_response_body(resp, &err) == NULL);
    CHECK(err.status == 500 && strstr(err.message, "forward failed"));
    oai_response_free(resp);
    oai_request_free(r);
}

/* min_tokens through the whole path: with EOS pushed to the top by
 * logit_bias, a request ends at once, and with min_tokens 3 only after 3
 * other tokens (end tokens banned until then). */
static void test_min_tokens_end_to_end(void)
{
    if (!ready())
        return;
    int32_t eos = tok_eos(tok);
    CHECK(eos != TOK_NULL);
    for (int mt = 0; mt <= 3; mt += 3) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"prompt\":\"Hello\",\"max_tokens\":10,\"temperature\":0,"
                 "\"logit_bias\":{\"%d\":100},\"min_tokens\":%d}",
                 (int)eos, mt);
        oai_request *r = parse_ok(OAI_COMPLETIONS, body);
        if (!r)
            return;
        oai_response *resp = oai_response_create(r, tok, NULL, 1);
        run_request(r, resp, NULL);
        oai_error err;
        json_t *b = oai_response_body(resp, &err);
        json_t *c0 = json_array_get(json_object_get(b, "choices"), 0);
        CHECK(!strcmp(jstr_or_empty(json_object_get(c0, "finish_reason")), "stop"));
        CHECK_EQ_INT(oai_response_usage(resp).completion_tokens, mt + 1); /* the EOS counts */
        json_decref(b);
        oai_response_free(resp);
        oai_request_free(r);
    }
}

int main(void)
{
    RUN_TEST(test_setup);
    RUN_TEST(test_completions_fields);
    RUN_TEST(test_prompt_forms);
    RUN_TEST(test_chat_fields);
    RUN_TEST(test_hostile);
    RUN_TEST(test_completion_body);
    RUN_TEST(test_chat_body_and_stream);
    RUN_TEST(test_errors_and_bytes);
    RUN_TEST(test_min_tokens_end_to_end);
    vt_engine_destroy(eng);
    chat_fmt_destroy(chat);
    tok_destroy(tok);
    md_destroy(model);
    return test_finish("test_oai");
}
