/*
 * test_run_batch.c - `vitamin run-batch` end to end on a gen-model model
 * with a chat template given by --chat-template: an input file of greedy
 * completions lines (more lines than the in-flight window, with different
 * lengths so that they finish out of order), chat lines and bad lines of
 * every kind. Checks: one output line per request line in input order with
 * its custom_id, the greedy text of each completions line equal to
 * `vitamin run --temp 0` on the same prompt, usage exact (prompt_tokens =
 * the prompt's tokenization, completion_tokens = the tokens of the text,
 * total their sum), chat lines' prompt_tokens equal to chat/'s rendering,
 * an error line naming the problem for each bad line, and the exit status
 * (0 with error lines, 1 for I/O failures, 2 for usage errors).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <jansson.h>

#include "chat/chat.h"
#include "model/model.h"
#include "test.h"

/* json_string_value, "" for a missing value (so that a failed CHECK never
 * hands NULL to strcmp). */
static const char *jstr_or_empty(const json_t *v)
{
    const char *s = json_string_value(v);
    return s ? s : "";
}
#include "tokenizer/tokenizer.h"

static char model_path[512], tmpl_path[512];
static md_model *model;
static tok_tokenizer *tok;
static chat_fmt *chat;

static const char *const TEMPLATE =
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}";

static void test_setup(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the run-batch test model"))
        return;
    snprintf(model_path, sizeof model_path, "%s/rb.gguf", test_tmpdir());
    snprintf(tmpl_path, sizeof tmpl_path, "%s/rb.jinja", test_tmpdir());
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
             "--type q8_0 --vocab %s -o %s",
             test_vitamin_bin(), vocab, model_path);
    if (system(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` failed", cmd);
        model_path[0] = 0;
        return;
    }
    FILE *f = fopen(tmpl_path, "w");
    CHECK(f && fputs(TEMPLATE, f) >= 0);
    if (f)
        fclose(f);
    CHECK(md_load(model_path, &model) == VT_OK && tok_load(model->file, &tok) == VT_OK);
    CHECK(chat_fmt_create(tok, TEMPLATE, strlen(TEMPLATE), &chat) == VT_OK);
}

static bool ready(void)
{
    if (!model_path[0] || !chat) {
        test_skip_missing("the test model (see test_setup)");
        return false;
    }
    return true;
}

/* Tokens of text with the model's BOS rule, as `vitamin run` submits. */
static size_t n_tokens(const char *text)
{
    int32_t *ids;
    size_t n;
    CHECK(tok_encode(tok, text, strlen(text), false, true, &ids, &n) == VT_OK);
    free(ids);
    return n + (tok_add_bos(tok) && tok_bos(tok) != TOK_NULL);
}

/* `vitamin run --temp 0 -n N -p PROMPT`'s stdout. Caller frees. */
static char *run_greedy(const char *prompt, int n)
{
    char out[600], cmd[2048];
    snprintf(out, sizeof out, "%s/run.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s run -m %s -t 1 --temp 0 -n %d -p '%s' > %s 2>/dev/null",
             test_vitamin_bin(), model_path, n, prompt, out);
    CHECKF(system(cmd) == 0, "`%s` failed", cmd);
    size_t len;
    char *s = test_read_file(out, &len);
    return s ? s : strdup("");
}

static int run_batch(const char *in, const char *out, const char *extra)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s run-batch -m %s -i %s -o %s -t 2 --chat-template %s %s "
             "2>%s/stderr.txt",
             test_vitamin_bin(), model_path, in, out, tmpl_path, extra, test_tmpdir());
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

#define N_COMPL 24

static const char *const PROMPTS[] = {"Hello world", "The cat sat", "Once upon a time",
                                      "One two three", "Paris is", "abc"};

static void test_batch_file(void)
{
    if (!ready())
        return;
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/in.jsonl", test_tmpdir());
    snprintf(out, sizeof out, "%s/out.jsonl", test_tmpdir());
    FILE *f = fopen(in, "w");
    if (!f) {
        test_fail_at(__FILE__, __LINE__, "cannot write %s", in);
        return;
    }
    /* expected per line: kind 'c' completions (prompt index, max_tokens),
     * 'h' chat, 'e' error line (code), 's' status line (status) */
    typedef struct {
        char kind;
        int prompt, max_tokens;
        const char *expect; /* error code or a part of the message */
        char custom_id[32];
    } line;
    line lines[64];
    int nl = 0;
    for (int i = 0; i < N_COMPL; i++) {
        line *l = &lines[nl++];
        *l = (line){'c', i % 6, 3 + (i * 7) % 13, NULL, ""};
        snprintf(l->custom_id, sizeof l->custom_id, "req-%d", i);
        fprintf(f,
                "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                "\"body\":{\"model\":\"m\",\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0}}\n",
                l->custom_id, PROMPTS[l->prompt], l->max_tokens);
        if (i == 5) { /* bad lines in the middle */
            fprintf(f, "this is not json\n");
            lines[nl++] = (line){'e', 0, 0, "invalid_json", ""};
            fprintf(f, "{\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{}}\n");
            lines[nl++] = (line){'e', 0, 0, "missing_custom_id", ""};
            fprintf(f, "{\"custom_id\":\"req-0\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                       "\"body\":{\"prompt\":\"x\"}}\n");
            lines[nl++] = (line){'e', 0, 0, "duplicate_custom_id", "req-0"};
            fprintf(f, "\n"); /* a blank line is no request: no output line */
            fprintf(f, "{\"custom_id\":\"bad-url\",\"method\":\"POST\",\"url\":\"/v1/embeddings\","
                       "\"body\":{\"input\":\"x\"}}\n");
            lines[nl++] = (line){'e', 0, 0, "invalid_url", "bad-url"};
            fprintf(f, "{\"custom_id\":\"bad-method\",\"method\":\"GET\",\"url\":\"/v1/completions\","
                       "\"body\":{\"prompt\":\"x\"}}\n");
            lines[nl++] = (line){'e', 0, 0, "invalid_method", "bad-method"};
            fprintf(f, "{\"custom_id\":\"bad-temp\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                       "\"body\":{\"prompt\":\"x\",\"temperature\":\"hot\"}}\n");
            lines[nl++] = (line){'s', 0, 0, "'temperature' must be a number", "bad-temp"};
            fprintf(f, "{\"custom_id\":\"too-long\",\"method\":\"POST\",\"url\":\"/v1/completions\","
                       "\"body\":{\"prompt\":\"x\",\"max_tokens\":100000}}\n");
            lines[nl++] = (line){'s', 0, 0, "maximum context length", "too-long"};
            fprintf(f, "{\"custom_id\":\"no-body\",\"method\":\"POST\",\"url\":\"/v1/completions\"}\n");
            lines[nl++] = (line){'e', 0, 0, "invalid_request", "no-body"};
            fprintf(f, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n");
            lines[nl++] = (line){'e', 0, 0, "invalid_json", ""};
        }
        if (i == 10 || i == 20) { /* chat lines */
            line *h = &lines[nl++];
            *h = (line){'h', 0, 6, NULL, ""};
            snprintf(h->custom_id, sizeof h->custom_id, "chat-%d", i);
            fprintf(f,
                    "{\"custom_id\":\"%s\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
                    "\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                    "\"Hi there\"}],\"max_tokens\":6,\"temperature\":0}}\n",
                    h->custom_id);
        }
    }
    fclose(f);
    /* a small window (4 x max_seqs 2 = 8 lines) against 36 lines */
    int rc = run_batch(in, out, "--max-seqs 2");
    CHECK_EQ_INT(rc, 0);
    size_t len;
    char *text = test_read_file(out, &len);
    CHECK(text != NULL);
    if (!text)
        return;
    char *greedy[6] = {0};
    char *save = NULL, *ln = strtok_r(text, "\n", &save);
    int k = 0;
    for (; ln && k < nl; ln = strtok_r(NULL, "\n", &save), k++) {
        json_error_t je;
        json_t *o = json_loads(ln, 0, &je);
        CHECKF(o != NULL, "output line %d is not JSON: %s", k + 1, je.text);
        if (!o)
            continue;
        const line *l = &lines[k];
        const char *id = json_string_value(json_object_get(o, "id"));
        CHECK(id && !strncmp(id, "batch_req_", 10));
        json_t *cid = json_object_get(o, "custom_id");
        if (l->kind == 'c' || l->kind == 'h' || l->custom_id[0])
            CHECKF(json_is_string(cid) && !strcmp(jstr_or_empty(cid), l->custom_id),
                   "line %d: custom_id %s, want %s", k + 1, json_string_value(cid), l->custom_id);
        else
            CHECK(json_is_null(cid));
        json_t *resp = json_object_get(o, "response"), *err = json_object_get(o, "error");
        json_t *body = json_object_get(resp, "body");
        if (l->kind == 'e') {
            CHECKF(json_is_null(resp) && json_is_object(err), "line %d: not an error line", k + 1);
            const char *code = json_string_value(json_object_get(err, "code"));
            CHECKF(code && !strcmp(code, l->expect), "line %d: code %s, want %s", k + 1, code,
                   l->expect);
            CHECK(json_string_length(json_object_get(err, "message")) > 10);
        } else if (l->kind == 's') {
            CHECK(json_is_null(err));
            CHECK_EQ_INT(json_integer_value(json_object_get(resp, "status_code")), 400);
            json_t *e = json_object_get(body, "error");
            const char *msg = json_string_value(json_object_get(e, "message"));
            CHECKF(msg && strstr(msg, l->expect), "line %d: message %s", k + 1, msg);
            CHECK(!strcmp(jstr_or_empty(json_object_get(e, "type")), "invalid_request_error"));
        } else {
            CHECK(json_is_null(err));
            CHECK_EQ_INT(json_integer_value(json_object_get(resp, "status_code")), 200);
            CHECK(!strncmp(jstr_or_empty(json_object_get(resp, "request_id")), "req_", 4));
            json_t *c0 = json_array_get(json_object_get(body, "choices"), 0);
            json_t *u = json_object_get(body, "usage");
            long long pt = json_integer_value(json_object_get(u, "prompt_tokens"));
            long long ct = json_integer_value(json_object_get(u, "completion_tokens"));
            CHECK_EQ_INT(json_integer_value(json_object_get(u, "total_tokens")), pt + ct);
            const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
            if (l->kind == 'c') {
                CHECK(!strcmp(jstr_or_empty(json_object_get(body, "object")), "text_completion"));
                const char *t = json_string_value(json_object_get(c0, "text"));
                /* vitamin run with the longest max_tokens; a shorter line is its prefix */
                if (!greedy[l->prompt])
                    greedy[l->prompt] = run_greedy(PROMPTS[l->prompt], 15);
                size_t tl = t ? strlen(t) : 0;
                CHECKF(t && !strncmp(t, greedy[l->prompt], tl), "line %d: '%s' vs run's '%s'",
                       k + 1, t, greedy[l->prompt]);
                CHECK_EQ_INT(pt, (long long)n_tokens(PROMPTS[l->prompt]));
                if (fr && !strcmp(fr, "length")) {
                    CHECK_EQ_INT(ct, l->max_tokens);
                    /* the completion's own tokens: as many as max_tokens */
                } else {
                    CHECK(fr && !strcmp(fr, "stop") && ct <= l->max_tokens);
                }
                if (l->max_tokens == 15)
                    CHECKF(t && !strcmp(t, greedy[l->prompt]), "line %d: '%s' vs run's '%s'",
                           k + 1, t, greedy[l->prompt]);
            } else {
                CHECK(!strcmp(jstr_or_empty(json_object_get(body, "object")), "chat.completion"));
                json_t *msg = json_object_get(c0, "message");
                CHECK(!strcmp(jstr_or_empty(json_object_get(msg, "role")), "assistant"));
                CHECK(json_is_string(json_object_get(msg, "content")));
                json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "Hi there");
                int32_t *ids;
                size_t n;
                CHECK(chat_prompt(chat, msgs, true, NULL, &ids, &n) == VT_OK);
                CHECK_EQ_INT(pt, (long long)n);
                CHECK(ct >= 1 && ct <= 6);
                free(ids);
                json_decref(msgs);
            }
        }
        json_decref(o);
    }
    CHECKF(k == nl && ln == NULL, "%d output lines for %d request lines", k + (ln != NULL), nl);
    for (int i = 0; i < 6; i++)
        free(greedy[i]);
    free(text);
    char p[600];
    snprintf(p, sizeof p, "%s/stderr.txt", test_tmpdir());
    char *err = test_read_file(p, &len);
    CHECKF(err && strstr(err, "succeeded"), "stderr: %s", err ? err : "");
    CHECKF(err && strstr(err, "26 succeeded, 9 errors"), "stderr: %s", err ? err : "");
    free(err);
}

static void test_exit_status(void)
{
    if (!ready())
        return;
    char in[600], out[600], cmd[2048];
    snprintf(in, sizeof in, "%s/one.jsonl", test_tmpdir());
    FILE *f = fopen(in, "w");
    if (f) {
        fputs("{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/completions\","
              "\"body\":{\"prompt\":\"x\",\"max_tokens\":2}}", f); /* no final newline */
        fclose(f);
    }
    snprintf(out, sizeof out, "%s/one.out", test_tmpdir());
    CHECK_EQ_INT(run_batch(in, out, ""), 0);
    size_t len;
    char *t = test_read_file(out, &len);
    CHECK(t && len > 0 && t[len - 1] == '\n' && strchr(t, '\n') == t + len - 1);
    free(t);
    CHECK_EQ_INT(run_batch("/nonexistent/in.jsonl", out, ""), 1);
    CHECK_EQ_INT(run_batch(in, "/nonexistent/dir/out.jsonl", ""), 1);
    CHECK_EQ_INT(run_batch(in, out, "--max-seqs 0"), 2);
    CHECK_EQ_INT(run_batch(in, out, "--bogus"), 2);
    snprintf(cmd, sizeof cmd, "%s run-batch -m %s -o %s 2>/dev/null", test_vitamin_bin(),
             model_path, out);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
    snprintf(cmd, sizeof cmd, "%s run-batch --help > /dev/null", test_vitamin_bin());
    CHECK(system(cmd) == 0);
}

/* The model's own template (gen-model --chat-template) serves chat lines
 * without --chat-template; a model without one answers each chat line with
 * a 400 naming the missing template, and still runs its completions lines. */
static void test_model_template(void)
{
    if (!ready())
        return;
    char with[600], in[600], out[600], cmd[4096];
    snprintf(with, sizeof with, "%s/rb-tmpl.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch llama --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 128 "
             "--type q8_0 --vocab tests/data/vocab/ggml-vocab-llama-spm.gguf --chat-template %s "
             "-o %s",
             test_vitamin_bin(), tmpl_path, with);
    CHECKF(system(cmd) == 0, "`%s` failed", cmd);
    snprintf(in, sizeof in, "%s/chat.jsonl", test_tmpdir());
    snprintf(out, sizeof out, "%s/chat.out", test_tmpdir());
    FILE *f = fopen(in, "w");
    if (!f)
        return;
    fputs("{\"custom_id\":\"c1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\","
          "\"body\":{\"messages\":[{\"role\":\"user\",\"content\":\"Hi there\"}],"
          "\"max_tokens\":4,\"temperature\":0}}\n"
          "{\"custom_id\":\"c2\",\"method\":\"POST\",\"url\":\"/v1/completions\","
          "\"body\":{\"prompt\":\"Hi\",\"max_tokens\":2}}\n", f);
    fclose(f);
    for (int pass = 0; pass < 2; pass++) {
        snprintf(cmd, sizeof cmd, "%s run-batch -m %s -i %s -o %s -t 2 2>/dev/null",
                 test_vitamin_bin(), pass ? model_path : with, in, out);
        int rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
        size_t len;
        char *t = test_read_file(out, &len);
        char *nl = t ? strchr(t, '\n') : NULL;
        json_t *a = nl ? json_loadb(t, (size_t)(nl - t), 0, NULL) : NULL;
        json_t *b = nl ? json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
        CHECK(a && b);
        json_t *ra = json_object_get(a, "response"), *rb = json_object_get(b, "response");
        CHECK_EQ_INT(json_integer_value(json_object_get(rb, "status_code")), 200);
        if (pass == 0) {
            CHECK_EQ_INT(json_integer_value(json_object_get(ra, "status_code")), 200);
            json_t *u = json_object_get(json_object_get(ra, "body"), "usage");
            json_t *msgs = json_pack("[{s:s,s:s}]", "role", "user", "content", "Hi there");
            int32_t *ids;
            size_t n;
            CHECK(chat_prompt(chat, msgs, true, NULL, &ids, &n) == VT_OK);
            CHECK_EQ_INT(json_integer_value(json_object_get(u, "prompt_tokens")), (long long)n);
            free(ids);
            json_decref(msgs);
        } else {
            CHECK_EQ_INT(json_integer_value(json_object_get(ra, "status_code")), 400);
            const char *m = json_string_value(json_object_get(
                json_object_get(json_object_get(ra, "body"), "error"), "message"));
            CHECKF(m && strstr(m, "no chat template"), "message: %s", m ? m : "(none)");
        }
        json_decref(a);
        json_decref(b);
        free(t);
    }
}

int main(void)
{
    RUN_TEST(test_setup);
    RUN_TEST(test_batch_file);
    RUN_TEST(test_exit_status);
    RUN_TEST(test_model_template);
    chat_fmt_destroy(chat);
    tok_destroy(tok);
    md_destroy(model);
    return test_finish("test_run_batch");
}
