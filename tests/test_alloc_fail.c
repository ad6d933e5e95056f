/*
 * test_alloc_fail.c - allocation-failure injection, sqlite-style: the n-th
 * allocation fails, for n = 1, 2, ... until a run makes no more than n - 1
 * allocations, over the GGUF reader (gguf_open on real model and vocabulary
 * files), the tokenizer (tok_load on SPM and BPE vocabularies), the model
 * loader (md_load_gguf) and the template interpreter (tpl_compile then
 * tpl_render of the fixture templates), and tok_encode + tok_detokenize of a
 * text with special tokens on each vocabulary, md_eval of a few tokens, and
 * the GGUF writer. Every run must return VT_ERR_NOMEM
 * (with a message) when an allocation failed and VT_OK when none did, leave
 * its out-pointer NULL on failure, and free everything it allocated: the
 * wrappers count live blocks, which must be back to where they were once the
 * object is destroyed. Under ASan+UBSan a crash or bad free on an error path
 * is caught as well.
 *
 * This binary is linked with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,
 * --wrap=free,--wrap=strdup,--wrap=strndup (the Makefile's rule for it), so
 * the library's calls land in the __wrap_ functions below; jansson's own
 * allocations go through them too (json_set_alloc_funcs). Runs with many
 * allocations test every n up to DENSE and then a stride, so that each
 * operation costs at most about MAX_RUNS runs; the last allocations are
 * always tested.
 */
#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "gguf/gguf.h"
#include "model/model.h"
#include "template/template.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

/* ---- the allocation wrappers ------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void __wrap_free(void *p);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

static long n_allocs; /* allocation calls since arm() */
static long fail_at;  /* the call that fails (1-based); 0: none */
static bool persistent; /* every call from fail_at on fails */
static long n_failed;

/* The live blocks made through the wrappers: an open-addressing set of
 * pointers (linear probing, backward-shift deletion), so that a free of a
 * block some libc function made is told apart. */
#define SET_BITS 22
static void **set;
static long n_live;

static size_t slot_of(const void *p)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> (64 - SET_BITS));
}

static void set_add(void *p)
{
    if (!set && !(set = __real_calloc((size_t)1 << SET_BITS, sizeof *set)))
        abort();
    size_t mask = ((size_t)1 << SET_BITS) - 1, i = slot_of(p);
    while (set[i])
        i = (i + 1) & mask;
    set[i] = p;
    if (++n_live > (1l << (SET_BITS - 1)))
        abort(); /* the set is too small for this test */
}

static void set_del(void *p)
{
    if (!set || !p)
        return;
    size_t mask = ((size_t)1 << SET_BITS) - 1, i = slot_of(p);
    while (set[i] && set[i] != p)
        i = (i + 1) & mask;
    if (!set[i])
        return; /* not ours */
    set[i] = NULL;
    n_live--;
    for (size_t j = (i + 1) & mask; set[j]; j = (j + 1) & mask) {
        size_t home = slot_of(set[j]);
        /* move set[j] back if its home is not in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            set[i] = set[j];
            set[j] = NULL;
            i = j;
        }
    }
}

static bool should_fail(void)
{
    if (!fail_at)
        return false;
    n_allocs++;
    if (n_allocs == fail_at || (persistent && n_allocs > fail_at)) {
        n_failed++;
        return true;
    }
    return false;
}

static void *track(void *p)
{
    if (p)
        set_add(p);
    return p;
}

void *__wrap_malloc(size_t n)
{
    return should_fail() ? NULL : track(__real_malloc(n));
}

void *__wrap_calloc(size_t n, size_t m)
{
    return should_fail() ? NULL : track(__real_calloc(n, m));
}

void *__wrap_realloc(void *p, size_t n)
{
    if (should_fail())
        return NULL;
    void *q = __real_realloc(p, n);
    if (q || !n) {
        set_del(p);
        track(q);
    }
    return q;
}

void __wrap_free(void *p)
{
    set_del(p);
    __real_free(p);
}

char *__wrap_strdup(const char *s)
{
    return should_fail() ? NULL : track(__real_strdup(s));
}

char *__wrap_strndup(const char *s, size_t n)
{
    return should_fail() ? NULL : track(__real_strndup(s, n));
}

/* ---- the driver ---------------------------------------------------------------- */

/* An operation: does the work (allocations counted), cleans up everything it
 * made, and returns the vt_err of the step under test. */
typedef vt_err (*op_fn)(const void *arg);

#define DENSE 1500
#define MAX_RUNS 400

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Counts op's allocations, then fails each chosen one in turn. */
static void inject(const char *name, op_fn op, const void *arg)
{
    double t0 = seconds();
    long base = n_live;
    fail_at = -1; /* counting, nothing fails */
    n_allocs = n_failed = 0;
    vt_err e = op(arg);
    fail_at = 0;
    long total = n_allocs;
    bool slow = seconds() - t0 > 0.02; /* a slow op: the persistent mode on every 4th n */
    CHECKF(e == VT_OK, "%s: fails with no allocation failure: %s", name, vt_last_error());
    CHECKF(n_live == base, "%s: %ld blocks leaked with no failure", name, n_live - base);
    CHECKF(total > 0, "%s: no allocation seen (the --wrap link flags missing?)", name);
    long stride = total <= DENSE ? 1 : (total - DENSE) / MAX_RUNS + 1, runs = 0, bad = 0;
    for (int pass = 0; pass < 2; pass++) {
        persistent = pass == 1; /* pass 1: every allocation from the n-th on fails */
        for (long n = 1;; n += n < DENSE ? 1 : stride) {
            if (n > total - 3 && n <= total && stride > 1)
                continue; /* the tail below */
            if (n > total + 1) {
                if (stride == 1)
                    break;
                n = total + 1; /* the last run: nothing fails */
            }
            if (persistent && n <= total && ((n > 64 && (n / stride) % 8) || (slow && n % 4 != 1)))
                continue; /* the persistent mode on a sample */
            long tail0 = total - 3 > 0 ? total - 3 : 1;
            for (long k = (n == total + 1 && stride > 1) ? tail0 : n; k <= n; k++) {
                fail_at = k;
                n_allocs = n_failed = 0;
                vt_fail(VT_OK, "%s", "");
                e = op(arg);
                fail_at = 0;
                runs++;
                bool injected = n_failed > 0;
                bool ok = injected ? e == VT_ERR_NOMEM && vt_last_error()[0] : e == VT_OK;
                if (!ok || n_live != base) {
                    if (bad++ < 5)
                        CHECKF(false, "%s: allocation %ld of %ld failed%s: got %d (%s), %ld "
                               "blocks leaked", name, k, total,
                               persistent ? " (and all after it)" : "", (int)e, vt_last_error(),
                               n_live - base);
                    base = n_live;
                }
            }
            if (n == total + 1)
                break;
        }
    }
    persistent = false;
    printf("  %s: %ld allocations, %ld runs (stride %ld), %.2f s\n", name, total, runs, stride,
           seconds() - t0);
}

/* ---- the operations -------------------------------------------------------------- */

static vt_err op_gguf_open(const void *arg)
{
    gguf_file *g = (gguf_file *)1;
    vt_err e = gguf_open(arg, &g);
    if (e)
        CHECK(g == NULL);
    gguf_close(e ? NULL : g);
    return e;
}

static vt_err op_tok_load(const void *arg)
{
    tok_tokenizer *t = (tok_tokenizer *)1;
    vt_err e = tok_load(arg, &t);
    if (e)
        CHECK(t == NULL);
    else
        tok_destroy(t);
    return e;
}

static const char enc_text[] = "Hello world!  It's 2026: 12345 tokens\n\tünïcödé 한국어 テスト 🎉 "
                               "<s>x</s><|im_start|>user<|im_end|><|endoftext|>";

/* tok_encode (special tokens parsed) and tok_detokenize of the result */
static vt_err op_tok_encode(const void *arg)
{
    int32_t *ids = (int32_t *)1;
    size_t n = 0;
    vt_err e = tok_encode(arg, enc_text, sizeof enc_text - 1, true, true, &ids, &n);
    if (e) {
        CHECK(ids == NULL);
        return e;
    }
    char *text = (char *)1;
    size_t len;
    e = tok_detokenize(arg, ids, n, false, true, &text, &len);
    if (e)
        CHECK(text == NULL);
    else
        free(text);
    free(ids);
    return e;
}

static vt_err op_md_load(const void *arg)
{
    md_model *m = (md_model *)1;
    vt_err e = md_load_gguf((gguf_file *)arg, &m);
    if (e)
        CHECK(m == NULL);
    else
        md_destroy(m);
    return e;
}

/* md_eval of three tokens (KV cache, runner, forward pass; one thread) */
static vt_err op_md_eval(const void *arg)
{
    const md_model *m = arg;
    int32_t tokens[3] = {1, 2, 3};
    float *logits = (float *)1, *margins = NULL;
    vt_err e = md_eval(m, NULL, tokens, 3, true, &logits, &margins);
    if (!e) {
        free(logits);
        free(margins);
    }
    return e;
}

static vt_err zero_fill(void *ctx, const char *name, void *dst, uint64_t nbytes)
{
    (void)ctx;
    (void)name;
    memset(dst, 0, nbytes);
    return VT_OK;
}

/* the GGUF writer: keys of every kind, a borrowed and a filled tensor, written out */
static vt_err op_writer(const void *arg)
{
    static const float data[64];
    static const int32_t arr[5] = {1, 2, 3, 4, 5};
    static const gguf_str strs[3] = {{"a", 1}, {"bc", 2}, {"def", 3}};
    gguf_writer *w = gguf_writer_create();
    if (!w)
        return vt_fail(VT_ERR_NOMEM, "gguf_writer_create: out of memory");
    int64_t ne[GGUF_MAX_DIMS] = {64, 1, 1, 1}, ne2[GGUF_MAX_DIMS] = {32, 4, 1, 1};
    vt_err e;
    if ((e = gguf_writer_set_str(w, "general.architecture", "llama")) ||
        (e = gguf_writer_set_u32(w, "llama.block_count", 2)) ||
        (e = gguf_writer_set_f32(w, "llama.rope.freq_base", 1e4f)) ||
        (e = gguf_writer_set_str(w, "general.architecture", "qwen2")) ||
        (e = gguf_writer_set_arr(w, "a.ints", GGUF_T_INT32, arr, 5)) ||
        (e = gguf_writer_set_arr_str(w, "a.strs", strs, 3)) ||
        (e = gguf_writer_add_tensor(w, "t.borrowed", VT_TYPE_F32, 1, ne, data, NULL, NULL)) ||
        (e = gguf_writer_add_tensor(w, "t.filled", VT_TYPE_F32, 2, ne2, NULL, zero_fill, NULL)) ||
        (e = gguf_writer_write(w, arg))) {
        /* e says which step failed */
    }
    gguf_writer_destroy(w);
    return e;
}

typedef struct {
    const char *src;
    size_t len;
    json_t *ctx;
} tpl_arg;

static vt_err op_template(const void *arg)
{
    const tpl_arg *a = arg;
    tpl_template *t = (tpl_template *)1;
    vt_err e = tpl_compile(a->src, a->len, &t);
    if (e) {
        CHECK(t == NULL);
        return e;
    }
    char *out = (char *)1;
    size_t len;
    tpl_options opt = {.now = 1700000000};
    e = tpl_render(t, a->ctx, &opt, &out, &len);
    if (e)
        CHECK(out == NULL);
    else
        free(out);
    tpl_destroy(t);
    return e;
}

/* ---- the tests --------------------------------------------------------------------- */

static void test_wrappers(void)
{
    /* the injection itself: a library call that allocates fails when told to */
    long base = n_live;
    fail_at = 1;
    n_allocs = n_failed = 0;
    gguf_writer *w = gguf_writer_create();
    fail_at = 0;
    CHECK(w == NULL);
    CHECK_EQ_INT(n_failed, 1);
    w = gguf_writer_create();
    CHECK(w != NULL);
    CHECK(n_live > base);
    gguf_writer_destroy(w);
    CHECK_EQ_INT(n_live, base);
}

static const char *vocab_path(const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "tests/data/vocab/ggml-vocab-%s.gguf", name);
    FILE *f = fopen(buf, "rb");
    if (f) {
        fclose(f);
        return buf;
    }
    const char *sh = test_shared_dir();
    snprintf(buf, n, "%s/fixtures/vocab/ggml-vocab-%s.gguf", sh ? sh : "../shared", name);
    return buf;
}

static void test_gguf_open(void)
{
    char p[1024];
    inject("gguf_open llama-spm vocab", op_gguf_open, vocab_path("llama-spm", p, sizeof p));
    inject("gguf_open gpt-2 vocab", op_gguf_open, vocab_path("gpt-2", p, sizeof p));
    const char *sh = test_need_shared("gguf_open on fixture models");
    if (!sh)
        return;
    static const char *models[] = {"llama-dense.Q4_K_M.gguf", "qwen3-moe.Q8_0.gguf"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        snprintf(p, sizeof p, "%s/fixtures/models/%s", sh, models[i]);
        if (test_need_file(p, "gguf_open allocation failures")) {
            char name[128];
            snprintf(name, sizeof name, "gguf_open %s", models[i]);
            inject(name, op_gguf_open, p);
        }
    }
}

static void test_tok_load(void)
{
    /* SPM and BPE, with and without byte-level pre-tokenizers */
    static const char *vocabs[] = {"llama-spm", "phi-3", "gpt-2", "qwen2"};
    for (size_t i = 0; i < sizeof vocabs / sizeof vocabs[0]; i++) {
        char p[1024];
        vocab_path(vocabs[i], p, sizeof p);
        if (!test_need_file(p, "tok_load allocation failures"))
            continue;
        gguf_file *g;
        if (gguf_open(p, &g)) {
            CHECKF(false, "%s: %s", p, vt_last_error());
            continue;
        }
        char name[128];
        snprintf(name, sizeof name, "tok_load %s", vocabs[i]);
        inject(name, op_tok_load, g);
        tok_tokenizer *t;
        if (tok_load(g, &t) == VT_OK) {
            snprintf(name, sizeof name, "tok_encode+tok_detokenize %s", vocabs[i]);
            inject(name, op_tok_encode, t);
            tok_destroy(t);
        }
        gguf_close(g);
    }
}

static void test_md_load(void)
{
    const char *sh = test_need_shared("md_load allocation failures");
    if (!sh)
        return;
    char p[1024];
    snprintf(p, sizeof p, "%s/fixtures/models/mixtral-moe.Q8_0.gguf", sh);
    if (!test_need_file(p, "md_load allocation failures"))
        return;
    gguf_file *g;
    if (gguf_open(p, &g)) {
        CHECKF(false, "%s: %s", p, vt_last_error());
        return;
    }
    inject("md_load_gguf mixtral-moe", op_md_load, g);
    md_model *m;
    if (md_load_gguf(g, &m) == VT_OK) {
        inject("md_eval mixtral-moe", op_md_eval, m);
        md_destroy(m);
    }
    gguf_close(g);
}

static void test_writer(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/w.gguf", test_tmpdir());
    inject("gguf_writer", op_writer, p);
}

static void test_templates(void)
{
    const char *sh = test_need_shared("template allocation failures");
    if (!sh)
        return;
    char dir[1024], p[1200];
    snprintf(dir, sizeof dir, "%s/fixtures/templates", sh);
    /* the multi-turn conversation (with a system message), or the basic one
     * for templates that refuse a system role */
    json_t *ctxs[2];
    static const char *convs[2] = {"conv-multiturn.json", "conv-basic.json"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, convs[i]);
        if (!(ctxs[i] = json_load_file(p, JSON_DECODE_INT_AS_REAL, NULL))) {
            test_skip_missing("%s (a render context)", p);
            if (i)
                json_decref(ctxs[0]);
            return;
        }
    }
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l < 7 || strcmp(e->d_name + l - 6, ".jinja"))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        tpl_arg a = {.ctx = ctxs[0]};
        char *src = test_read_file(p, &a.len);
        if (!src) {
            CHECKF(false, "cannot read %s", p);
            continue;
        }
        a.src = src;
        if (op_template(&a) != VT_OK)
            a.ctx = ctxs[1];
        char name[300];
        snprintf(name, sizeof name, "template %s", e->d_name);
        inject(name, op_template, &a);
        free(src);
        n++;
    }
    if (d)
        closedir(d);
    CHECKF(n >= 9, "only %d fixture templates in %s", n, dir);
    json_decref(ctxs[0]);
    json_decref(ctxs[1]);
}

int main(void)
{
    json_set_alloc_funcs(__wrap_malloc, __wrap_free);
    RUN_TEST(test_wrappers);
    RUN_TEST(test_gguf_open);
    RUN_TEST(test_tok_load);
    RUN_TEST(test_md_load);
    RUN_TEST(test_writer);
    RUN_TEST(test_templates);
    return test_finish("test_alloc_fail");
}
