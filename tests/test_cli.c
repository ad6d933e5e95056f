/*
 * test_cli.c - the `vitamin` command as a user meets it: --help everywhere,
 * one-line errors with a non-zero exit for missing or broken files and bad
 * options, logits JSON in the oracle's shape, deterministic gen-model.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test.h"

static char out_path[512], err_path[512];

/* Runs `vitamin ARGS`, capturing stdout/stderr; returns the exit status. */
static int vt(const char *args)
{
    char cmd[4096];
    snprintf(out_path, sizeof out_path, "%s/out.txt", test_tmpdir());
    snprintf(err_path, sizeof err_path, "%s/err.txt", test_tmpdir());
    snprintf(cmd, sizeof cmd, "%s %s >%s 2>%s", test_vitamin_bin(), args, out_path, err_path);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static int lines(const char *path)
{
    char *s = test_read_file(path, NULL);
    int n = 0;
    for (char *p = s; p && *p; p++)
        n += *p == '\n';
    free(s);
    return n;
}

static bool contains(const char *path, const char *needle)
{
    char *s = test_read_file(path, NULL);
    bool ok = s && strstr(s, needle);
    free(s);
    return ok;
}

static const char *commands[] = {"info",  "logits", "quantize", "gen-model", "bench",
                                  "run",   "chat",   "tokenize", "template"};

static void test_help(void)
{
    if (!test_need_vitamin())
        return;
    CHECK_EQ_INT(vt("--help"), 0);
    CHECK(contains(out_path, "usage"));
    CHECK(vt("") != 0);
    CHECK(vt("no-such-command") != 0);
    CHECK(lines(err_path) == 1 && contains(err_path, "unknown command"));
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char a[64];
        snprintf(a, sizeof a, "%s --help", commands[i]);
        CHECKF(vt(a) == 0 && contains(out_path, "usage"), "%s --help", commands[i]);
    }
}

static void test_missing_and_bad_files(void)
{
    if (!test_need_vitamin())
        return;
    const char *cases[] = {
        "info -m /nonexistent/model.gguf",
        "logits -m /nonexistent/model.gguf --tokens 1,2",
        "bench -m /nonexistent/model.gguf",
        "quantize /nonexistent/model.gguf /tmp/vt-never-written.gguf q8_0",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECKF(vt(cases[i]) != 0, "%s should fail", cases[i]);
        CHECKF(lines(err_path) == 1, "%s: expected a one-line error", cases[i]);
        CHECKF(contains(err_path, "No such file"), "%s: error should say why", cases[i]);
    }
    char bad[512], a[1024];
    snprintf(bad, sizeof bad, "%s/bad.gguf", test_tmpdir());
    FILE *f = fopen(bad, "wb");
    fputs("this is not a model", f);
    fclose(f);
    snprintf(a, sizeof a, "logits -m %s --tokens 1", bad);
    CHECK(vt(a) == 1 && lines(err_path) == 1 && contains(err_path, "not a GGUF file"));
    snprintf(a, sizeof a, "info -m %s", bad);
    CHECK(vt(a) == 1 && lines(err_path) == 1 && contains(err_path, "not a GGUF file"));
    /* a vocabulary-only file is valid GGUF but not a runnable model */
    CHECK(vt("logits -m tests/data/vocab/ggml-vocab-gpt-2.gguf --tokens 1") == 1);
    CHECK(lines(err_path) == 1 && contains(err_path, "not supported"));
}

static void test_bad_options(void)
{
    if (!test_need_vitamin())
        return;
    const char *cases[] = {
        "logits --frobnicate", "logits -m x.gguf --tokens 1,,2", "logits -m x.gguf --tokens -3",
        "logits -m x.gguf --tokens 1 --top 0", "logits -m", "info --bogus 3",
        "quantize a.gguf b.gguf q9_9", "quantize a.gguf", "gen-model --arch gpt9 --vocab v -o o",
        "gen-model --arch llama", "bench -m x.gguf -p abc",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECKF(vt(cases[i]) == 2, "'%s' should exit 2", cases[i]);
        CHECKF(lines(err_path) == 1, "'%s': expected a one-line error", cases[i]);
    }
}

static void test_generated_model_commands(void)
{
    if (!test_need_vitamin())
        return;
    char m1[512], m2[512], a[2048];
    snprintf(m1, sizeof m1, "%s/m1.gguf", test_tmpdir());
    snprintf(m2, sizeof m2, "%s/m2.gguf", test_tmpdir());
    const char *shape = "--arch qwen3 --dim 64 --layers 1 --heads 2 --kv-heads 1 --head-dim 32 "
                        "--ff 128 --vocab tests/data/vocab/ggml-vocab-gpt-2.gguf";
    snprintf(a, sizeof a, "gen-model %s -o %s", shape, m1);
    CHECK_EQ_INT(vt(a), 0);
    snprintf(a, sizeof a, "gen-model %s -o %s", shape, m2);
    CHECK_EQ_INT(vt(a), 0);
    size_t n1 = 0, n2 = 0;
    char *b1 = test_read_file(m1, &n1), *b2 = test_read_file(m2, &n2);
    CHECK(b1 && b2 && n1 == n2 && n1 > 1000 && !memcmp(b1, b2, n1)); /* deterministic */
    free(b1);
    free(b2);
    snprintf(a, sizeof a, "info -m %s", m1);
    CHECK(vt(a) == 0 && contains(out_path, "qwen3") && contains(out_path, "runnable               yes"));
    snprintf(a, sizeof a, "logits -m %s --tokens 10,20,30,40 --all --top 5 -t 1", m1);
    CHECK_EQ_INT(vt(a), 0);
    json_error_t err;
    json_t *j = json_load_file(out_path, 0, &err);
    CHECKF(j != NULL, "logits output is not JSON: %s", err.text);
    json_t *pos = json_object_get(j, "positions");
    CHECK(json_array_size(json_object_get(j, "tokens")) == 4 && json_array_size(pos) == 4);
    for (size_t p = 0; p < json_array_size(pos); p++) {
        json_t *top = json_object_get(json_array_get(pos, p), "top");
        CHECK(json_array_size(top) == 5);
        CHECK(json_integer_value(json_object_get(json_array_get(pos, p), "pos")) == (json_int_t)p);
        for (size_t k = 1; k < json_array_size(top); k++) /* sorted, highest first */
            CHECK(json_number_value(json_array_get(json_array_get(top, k - 1), 1)) >=
                  json_number_value(json_array_get(json_array_get(top, k), 1)));
    }
    json_decref(j);
    snprintf(a, sizeof a, "logits -m %s --tokens 10,99999999", m1);
    CHECK(vt(a) == 1 && lines(err_path) == 1 && contains(err_path, "outside the vocabulary"));
    snprintf(a, sizeof a, "bench -m %s -p 8 -n 4 -t 1", m1);
    CHECK(vt(a) == 0 && contains(out_path, "\"prefill_tok_s\":") && contains(out_path, "\"decode_tok_s\":"));
}

int main(void)
{
    RUN_TEST(test_help);
    RUN_TEST(test_missing_and_bad_files);
    RUN_TEST(test_bad_options);
    RUN_TEST(test_generated_model_commands);
    return test_finish("cli");
}
