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
static int child_level = -1; /* the level of a child run, or -1 */
static char *argv0;

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
        if (child_level >= 0 && !in_subset(name))
            continue;
        check_one(name, vocab, type, line + off);
        n++;
    }
    fclose(f);
    if (child_level >= 0)
        CHECKF(n == (int)(sizeof isa_subset / sizeof isa_subset[0]),
               "%d of the ISA subset's models found", n);
    else
        CHECKF(n >= 15, "only %d generated models listed", n);
}

static void test_isa_level(void) { parity_isa_check_child((kn_isa)child_level); }
static void test_scalar(void) { parity_isa_level(argv0, KN_ISA_SCALAR); }
static void test_avx2(void) { parity_isa_level(argv0, KN_ISA_AVX2); }
static void test_avx512(void) { parity_isa_level(argv0, KN_ISA_AVX512); }

int main(int argc, char **argv)
{
    argv0 = argv[0];
    child_level = parity_isa_child(argc, argv);
    pool = kn_pool_create(2);
    if (child_level >= 0) {
        RUN_TEST(test_isa_level);
        RUN_TEST(test_generated_models);
        kn_pool_destroy(pool);
        return test_finish(child_level == KN_ISA_SCALAR ? "parity_generated_scalar"
                           : child_level == KN_ISA_AVX2 ? "parity_generated_avx2"
                                                        : "parity_generated_avx512");
    }
    fprintf(stderr, "  full set at %s\n", parity_isa_names[kn_active_isa()]);
    RUN_TEST(test_generated_models);
    RUN_TEST(test_scalar);
    RUN_TEST(test_avx2);
    RUN_TEST(test_avx512);
    kn_pool_destroy(pool);
    return test_finish("parity_generated");
}
