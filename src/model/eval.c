/*
 * eval.c - md_eval(): one sequence, one batch, from an empty cache. The
 * simplest way to run a prompt (the logits command, tests); serving goes
 * through the scheduler instead.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"

vt_err md_eval(const md_model *m, kn_pool *pool, const int32_t *tokens, int64_t n, bool all,
               float **logits_out, float **margins_out)
{
    const int bs = 16;
    int64_t n_blocks = (n + bs - 1) / bs;
    md_kv *kv = NULL;
    md_ctx *ctx = NULL;
    int32_t *table = malloc(sizeof *table * (size_t)n_blocks);
    int32_t *pos = malloc(sizeof *pos * (size_t)n), *seq = calloc((size_t)n, sizeof *seq);
    bool *want = malloc(sizeof *want * (size_t)n);
    float *logits = malloc(sizeof *logits * (size_t)(all ? n : 1) * (size_t)m->hp.n_vocab);
    vt_err e = VT_OK;
    if (!table || !pos || !seq || !want || !logits) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n_blocks; i++)
        table[i] = (int32_t)i;
    for (int64_t i = 0; i < n; i++) {
        pos[i] = (int32_t)i;
        want[i] = all || i == n - 1;
    }
    md_seq s = {table, n_blocks};
    md_batch b = {.n_tokens = n, .tokens = tokens, .pos = pos, .seq = seq, .logits = want,
                  .n_seqs = 1, .seqs = &s};
    if ((e = md_kv_create(m, n_blocks, bs, &kv)) || (e = md_ctx_create(m, pool, &ctx)) ||
        (e = md_forward(ctx, kv, &b, logits)))
        goto done;
    const float *mg = md_ctx_route_margins(ctx);
    if (margins_out && mg) {
        if (!(*margins_out = malloc(sizeof(float) * (size_t)n))) {
            e = vt_fail(VT_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(*margins_out, mg, sizeof(float) * (size_t)n);
    }
    *logits_out = logits;
    logits = NULL;
done:
    md_ctx_destroy(ctx);
    md_kv_destroy(kv);
    free(table);
    free(pos);
    free(seq);
    free(want);
    free(logits);
    return e;
}

