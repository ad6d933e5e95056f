/*
 * test_parity_generated.c - models made at test time by `vitamin gen-model`
 * and `vitamin quantize` (every supported weight type, every architecture),
 * checked against llama.cpp's logits for the same files, computed once by
 * tools/make_parity_refs.sh and committed as JSON. This also checks that
 * gen-model and quantize are deterministic and write files that llama.cpp
 * reads the same way vitamin does. Needs no ../shared.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"
#include "test.h"

static kn_pool *pool;

static int run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "  command failed (%d): %s\n", rc, cmd);
    return rc;
}

static void check_one(const char *name, const char *vocab, const char *type, const char *args)
{
    char f16[512], q[512], cmd[2048], model[512];
    const char *dir = test_tmpdir();
    snprintf(f16, sizeof f16, "%s/%s.f16.gguf", dir, name);
    snprintf(q, sizeof q, "%s/%s.gguf", dir, name);
    snprintf(cmd, sizeof cmd, "%s gen-model %s --vocab tests/data/vocab/ggml-vocab-%s.gguf -o %s",
             test_vitamin_bin(), args, vocab, f16);
    if (run(cmd) != 0) {
        test_fail_at(__FILE__, __LINE__, "%s: gen-model failed", name);
        return;
    }
    snprintf(model, sizeof model, "%s", f16);
    if (strcmp(type, "f16")) {
        snprintf(cmd, sizeof cmd, "%s quantize -t 2 %s %s %s 2>/dev/null", test_vitamin_bin(), f16,
                 q, type);
        if (run(cmd) != 0) {
            test_fail_at(__FILE__, __LINE__, "%s: quantize failed", name);
            return;
        }
        snprintf(model, sizeof model, "%s", q);
    }
    md_model *m;
    if (md_load(model, &m)) {
        test_fail_at(__FILE__, __LINE__, "%s: %s", name, vt_last_error());
        return;
    }
    const char *kinds[] = {"short", "long"};
    for (int k = 0; k < 2; k++) {
        char ref[512], label[256];
        snprintf(ref, sizeof ref, "tests/data/parity/%s.%s.ref.json", name, kinds[k]);
        snprintf(label, sizeof label, "%s (%s) %s", name, type, kinds[k]);
        parity_test_file(m, pool, ref, label);
    }
    md_destroy(m);
    remove(f16);
    remove(q);
}

static void test_generated_models(void)
{
    FILE *f = fopen("tests/data/parity/models.txt", "r");
    if (!f) {
        test_fail_at(__FILE__, __LINE__, "tests/data/parity/models.txt is missing");
        return;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64], vocab[64], type[32];
        int off = 0;
        if (line[0] == '#' || sscanf(line, "%63s %63s %31s %n", name, vocab, type, &off) != 3)
            continue;
        line[strcspn(line, "\n")] = 0;
        check_one(name, vocab, type, line + off);
        n++;
    }
    fclose(f);
    CHECKF(n >= 15, "only %d generated models listed", n);
}

int main(void)
{
    pool = kn_pool_create(2);
    RUN_TEST(test_generated_models);
    kn_pool_destroy(pool);
    return test_finish("parity_generated");
}
