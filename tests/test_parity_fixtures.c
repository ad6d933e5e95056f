/*
 * test_parity_fixtures.c - vitamin's logits against llama.cpp's on every
 * model in ../shared/fixtures/models (random weights, real tokenizers,
 * written and quantized by llama.cpp's own tools): at every position of the
 * 1-token, short and long prompts, each of llama.cpp's top-10 logits within
 * 0.01·(1+|ref|) (F32/F16/BF16) or 0.03·(1+|ref|) (quantized), and the same
 * top-1 wherever llama.cpp's lead is clear.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "parity.h"
#include "test.h"

static kn_pool *pool;

static void check_model(const char *dir, const char *file)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    md_model *m;
    if (md_load(path, &m)) {
        test_fail_at(__FILE__, __LINE__, "%s: %s", file, vt_last_error());
        return;
    }
    const char *kinds[] = {"one", "short", "long"};
    size_t base = strlen(path) - strlen(".gguf");
    for (int k = 0; k < 3; k++) {
        char ref[2200], label[256];
        snprintf(ref, sizeof ref, "%.*s.%s.ref.json", (int)base, path, kinds[k]);
        snprintf(label, sizeof label, "%s %s", file, kinds[k]);
        parity_test_file(m, pool, ref, label);
    }
    md_destroy(m);
}

static void test_fixture_models(void)
{
    const char *shared = test_shared_dir();
    if (!shared) {
        test_skip("../shared is absent: llama.cpp fixture parity not run");
        return;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/fixtures/models", shared);
    DIR *d = opendir(dir);
    if (!d) {
        test_skip("%s is absent: llama.cpp fixture parity not run", dir);
        return;
    }
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 5 && !strcmp(e->d_name + len - 5, ".gguf")) {
            check_model(dir, e->d_name);
            n++;
        }
    }
    closedir(d);
    CHECKF(n >= 9, "expected the 9 fixture models, found %d", n);
}

int main(void)
{
    pool = kn_pool_create(2);
    RUN_TEST(test_fixture_models);
    kn_pool_destroy(pool);
    return test_finish("parity_fixtures");
}
