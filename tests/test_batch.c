/*
 * test_batch.c - the flattened batch: tokens of several sequences in one
 * forward pass give the logits each sequence gets alone; a prompt fed in
 * chunks (prefill continued from the cache) gives the logits of one pass;
 * physical KV blocks in any order give identical results; a copied block
 * (copy-on-write) serves a forked sequence. Uses a small generated model.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "test.h"

static md_model *model;
static kn_pool *pool;
#define BS 4 /* small blocks so that sequences span many */

/* The model every test uses, made once by the first test; a failure names
 * the step that failed (gen-model's exit status, or md_load's error). */
static bool model_skipped; /* an input was missing (outside CI: a skip) */

static void test_make_model(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the batch test model")) {
        model_skipped = true;
        return;
    }
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/batch.gguf", test_tmpdir());
    snprintf(cmd, sizeof cmd,
             "%s gen-model --arch qwen2moe --dim 64 --layers 2 --heads 4 --kv-heads 2 --ff 64 "
             "--experts 4 --experts-used 2 --expert-ff 64 --shared-ff 64 --type q8_0 "
             "--vocab %s -o %s",
             test_vitamin_bin(), vocab, path);
    int rc = system(cmd);
    if (rc != 0) {
        test_fail_at(__FILE__, __LINE__, "cannot make the test model: `%s` exited with status %d",
                     cmd, rc);
        return;
    }
    if (md_load(path, &model) != VT_OK)
        test_fail_at(__FILE__, __LINE__, "cannot load the test model %s: %s", path, vt_last_error());
}

/* The tests below need the model; without it each is counted as failed
 * (or skipped, when test_make_model skipped for a missing input). */
static bool have_model(void)
{
    if (model)
        return true;
    if (model_skipped)
        test_skip_missing("no test model (test_make_model lacked an input)");
    else
        test_fail_at(__FILE__, __LINE__, "no test model (test_make_model failed)");
    return false;
}

typedef struct {
    int32_t table[64];
    int n_blocks;
} seq_blocks;

/* Runs one batch; logits for every token. */
static float *run(md_kv *kv, int n, const int32_t *tok, const int32_t *pos, const int32_t *seq,
                  const seq_blocks *sb, int n_seqs)
{
    md_seq seqs[8];
    bool want[256];
    for (int i = 0; i < n_seqs; i++)
        seqs[i] = (md_seq){sb[i].table, sb[i].n_blocks};
    for (int i = 0; i < n; i++)
        want[i] = true;
    md_batch b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .logits = want,
                  .n_seqs = n_seqs, .seqs = seqs};
    md_ctx *c;
    float *out = malloc(sizeof(float) * (size_t)n * (size_t)model->hp.n_vocab);
    if (md_ctx_create(model, pool, &c) || md_forward(c, kv, &b, out)) {
        test_fail_at(__FILE__, __LINE__, "forward failed: %s", vt_last_error());
        free(out);
        out = NULL;
    }
    md_ctx_destroy(c);
    return out;
}

static double max_diff(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(a[i] - b[i]) / (1 + fabs(b[i]));
        m = d > m ? d : m;
    }
    return m;
}

static int32_t tok_of(int s, int i)
{
    return (int32_t)(100 + (s * 7919 + i * 104729) % 30000);
}

static void test_multi_sequence_batch(void)
{
    if (!have_model())
        return;
    int64_t nv = model->hp.n_vocab;
    const int lens[3] = {5, 9, 3};
    /* alone */
    float *alone[3];
    for (int s = 0; s < 3; s++) {
        md_kv *kv;
        md_kv_create(model, 16, BS, &kv);
        int32_t tok[16], pos[16], seq[16];
        for (int i = 0; i < lens[s]; i++) {
            tok[i] = tok_of(s, i);
            pos[i] = i;
            seq[i] = 0;
        }
        seq_blocks sb = {{0, 1, 2, 3}, 4};
        alone[s] = run(kv, lens[s], tok, pos, seq, &sb, 1);
        md_kv_destroy(kv);
    }
    /* together, interleaved, with scattered physical blocks */
    md_kv *kv;
    md_kv_create(model, 16, BS, &kv);
    seq_blocks sb[3] = {{{7, 2}, 2}, {{0, 9, 4}, 3}, {{15}, 1}};
    int32_t tok[32], pos[32], seq[32], where[3][16];
    int n = 0, next[3] = {0, 0, 0};
    for (int round = 0; n < lens[0] + lens[1] + lens[2]; round++)
        for (int s = 0; s < 3; s++)
            if (next[s] < lens[s]) {
                where[s][next[s]] = n;
                tok[n] = tok_of(s, next[s]);
                pos[n] = next[s]++;
                seq[n++] = s;
            }
    float *together = run(kv, n, tok, pos, seq, sb, 3);
    for (int s = 0; s < 3 && together; s++)
        for (int i = 0; i < lens[s]; i++)
            CHECKF(max_diff(together + (size_t)where[s][i] * (size_t)nv,
                            alone[s] + (size_t)i * (size_t)nv, nv) == 0,
                   "sequence %d token %d differs in a shared batch", s, i);
    free(together);
    for (int s = 0; s < 3; s++)
        free(alone[s]);
    md_kv_destroy(kv);
}

static void test_chunked_prefill_and_fork(void)
{
    if (!have_model())
        return;
    int64_t nv = model->hp.n_vocab;
    enum { N = 40 };
    int32_t tok[N], pos[N], seq[N];
    for (int i = 0; i < N; i++) {
        tok[i] = tok_of(1, i);
        pos[i] = i;
        seq[i] = 0;
    }
    md_kv *kv;
    md_kv_create(model, 32, BS, &kv);
    seq_blocks sb = {.n_blocks = 10};
    for (int i = 0; i < 10; i++)
        sb.table[i] = 20 - 2 * i; /* any physical order */
    float *whole = run(kv, N, tok, pos, seq, &sb, 1);
    md_kv_destroy(kv);
    /* the same prompt in chunks of 13, 1, 26 tokens continuing in the cache */
    md_kv_create(model, 32, BS, &kv);
    const int chunks[3] = {13, 1, 26};
    int at = 0;
    for (int c = 0; c < 3; c++) {
        float *part = run(kv, chunks[c], tok + at, pos + at, seq, &sb, 1);
        for (int i = 0; part && i < chunks[c]; i++)
            CHECKF(max_diff(part + (size_t)i * (size_t)nv, whole + (size_t)(at + i) * (size_t)nv,
                            nv) < 1e-5,
                   "chunked prefill differs at token %d", at + i);
        free(part);
        at += chunks[c];
    }
    /* fork after 24 tokens: the fork shares blocks 0..5 and gets a copy of
     * block 6 (copy-on-write), where it diverges */
    seq_blocks fork = sb;
    fork.table[6] = 30;
    md_kv_copy_block(kv, 30, sb.table[6]);
    int32_t t2 = tok_of(2, 0), p2 = 24, s2 = 0;
    float *a = run(kv, 1, &t2, &p2, &s2, &fork, 1);
    /* the same token at position 24 on the original sequence gives the same
     * logits, since positions 0..23 are identical */
    float *b = run(kv, 1, &t2, &p2, &s2, &sb, 1);
    CHECK(a && b && max_diff(a, b, nv) == 0);
    free(a);
    free(b);
    free(whole);
    md_kv_destroy(kv);
}

static void test_bad_batches(void)
{
    if (!have_model())
        return;
    md_kv *kv;
    md_kv_create(model, 4, BS, &kv);
    md_ctx *c;
    md_ctx_create(model, pool, &c);
    float *out = malloc(sizeof(float) * (size_t)model->hp.n_vocab);
    int32_t tok = 5, pos = 0, seq = 0, table[2] = {0, 1};
    md_seq s = {table, 2};
    md_batch b = {.n_tokens = 1, .tokens = &tok, .pos = &pos, .seq = &seq, .n_seqs = 1, .seqs = &s};
    tok = -1;
    CHECK(md_forward(c, kv, &b, out) == VT_ERR_RANGE);
    tok = 5;
    pos = 8; /* beyond the 2 blocks of the table */
    CHECK(md_forward(c, kv, &b, out) == VT_ERR_RANGE);
    pos = 0;
    table[0] = 4; /* beyond the cache */
    CHECK(md_forward(c, kv, &b, out) == VT_ERR_RANGE);
    table[0] = 0;
    seq = 1;
    CHECK(md_forward(c, kv, &b, out) == VT_ERR_INVALID);
    seq = 0;
    CHECK(md_forward(c, kv, &b, out) == VT_OK);
    free(out);
    md_ctx_destroy(c);
    md_kv_destroy(kv);
}

int main(void)
{
    pool = kn_pool_create(2);
    RUN_TEST(test_make_model);
    RUN_TEST(test_multi_sequence_batch);
    RUN_TEST(test_chunked_prefill_and_fork);
    RUN_TEST(test_bad_batches);
    md_destroy(model);
    kn_pool_destroy(pool);
    return test_finish("batch");
}
