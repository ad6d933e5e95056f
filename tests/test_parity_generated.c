/*
 * test_parity_generated.c - models made at test time by `vitamin gen-model`
 * and `vitamin quantize` (every supported weight type, every architecture),
 * checked against llama.cpp's logits for the same files, computed once by
 * tools/make_parity_refs.sh and committed as JSON. This also checks that
 * gen-model and quantize are deterministic and write files that llama.cpp
 * reads the same way vitamin does. Needs no ../shared. The full set runs at
 * the ISA level kn_init() picks; a subset (dense and MoE, F16 and the main
 * quantized kernels, both attention recipes: the short prompt is under and
 * the long one over ggml's 64-token flash-attention switch) runs again at
 * every other level the CPU has, in a child process with VT_ISA set. The
 * llama-rope-* models carry rope frequency factors (rope_freqs.weight) and
 * linear rope scaling, checked over 256 positions as well.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"
#include "test.h"

static kn_pool *pool;

/* The models of a child run, one per kernel family (and MoE). */
static const char *const isa_subset[] = {"llama-f16", "llama-q4_k_m", "qwen3moe-q8_0",
                                         "mixtral-q5_k_m"};

static bool in_subset(const char *name)
{
    for (size_t i = 0; i < sizeof isa_subset / sizeof isa_subset[0]; i++)
        if (!strcmp(name, isa_subset[i]))
            return true;
    return false;
}

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
    /* models named *rope* also get 256 tokens, where frequency factors and
     * rope scaling show */
    const char *kinds[] = {"short", "long", "xlong"};
    for (int k = 0; k < (strstr(name, "rope") ? 3 : 2); k++) {
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
        if (parity_child >= 0 && !in_subset(name))
            continue;
        check_one(name, vocab, type, line + off);
        n++;
    }
    fclose(f);
    if (parity_child >= 0)
        CHECKF(n == (int)(sizeof isa_subset / sizeof isa_subset[0]),
               "%d of the ISA subset's models found", n);
    else
        CHECKF(n >= 15, "only %d generated models listed", n);
}

int main(int argc, char **argv)
{
    return parity_main(argc, argv, "parity_generated", "test_generated_models", test_generated_models, &pool);
}
