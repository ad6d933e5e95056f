/*
 * generate.c - the single-sequence session of engine.h: a KV cache sized for
 * the whole context with the identity block table, the token history (what
 * the cache holds), chunked prompt feeding, prefix reuse (eng_sync), and the
 * sample -> detokenize -> stop check -> feed loop of eng_generate.
 */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util/util.h"

struct eng_session {
    const md_model *m;
    const tok_tokenizer *tok;
    md_kv *kv;
    md_ctx *ctx;
    int64_t n_ctx;
    int32_t n_batch;
    int32_t n_vocab;
    int32_t *table;   /* [n_blocks]: logical block i is physical block i */
    int64_t n_blocks;
    int32_t *tokens;  /* [n_ctx] history; the first n_past are in the cache */
    int64_t n_past;
    int32_t *pos, *seq; /* [n_batch] scratch for md_batch */
    float *logits;    /* [n_vocab] */
    bool have_logits;
    int32_t *end_ids; /* end-of-generation tokens of the vocabulary */
    int32_t n_end;
    eng_stats stats;
};

static vt_err collect_end_ids(eng_session *s)
{
    int32_t n = 0;
    for (int32_t id = 0; id < s->n_vocab; id++)
        n += tok_is_eog(s->tok, id);
    if (n == 0)
        return VT_OK;
    if (!(s->end_ids = malloc(sizeof *s->end_ids * (size_t)n)))
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    for (int32_t id = 0; id < s->n_vocab; id++)
        if (tok_is_eog(s->tok, id))
            s->end_ids[s->n_end++] = id;
    return VT_OK;
}

vt_err eng_session_create(const md_model *m, const tok_tokenizer *tok, const eng_options *opt,
                          eng_session **out)
{
    eng_options o = opt ? *opt : (eng_options){0};
    *out = NULL;
    if (!m || !tok)
        return vt_fail(VT_ERR_INVALID, "eng_session_create: model and tokenizer are required");
    if (tok_n_vocab(tok) != m->hp.n_vocab)
        return vt_fail(VT_ERR_INVALID, "the tokenizer has %d tokens but the model %lld",
                       (int)tok_n_vocab(tok), (long long)m->hp.n_vocab);
    if (o.n_ctx < 0 || o.n_ctx > (INT64_C(1) << 24))
        return vt_fail(VT_ERR_INVALID, "context size %lld is out of range (1..%d)",
                       (long long)o.n_ctx, 1 << 24);
    if (o.n_batch < 0)
        return vt_fail(VT_ERR_INVALID, "batch size %d is invalid", (int)o.n_batch);
    if (o.n_ctx == 0)
        o.n_ctx = m->hp.n_ctx_train > 0 ? VT_MIN(m->hp.n_ctx_train, ENG_DEFAULT_CTX)
                                        : ENG_DEFAULT_CTX;
    if (o.n_batch == 0)
        o.n_batch = ENG_DEFAULT_BATCH;

    eng_session *s = calloc(1, sizeof *s);
    if (!s)
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    s->m = m;
    s->tok = tok;
    s->n_ctx = o.n_ctx;
    s->n_batch = (int32_t)VT_MIN((int64_t)o.n_batch, o.n_ctx);
    s->n_vocab = (int32_t)m->hp.n_vocab;
    s->n_blocks = (o.n_ctx + ENG_BLOCK_SIZE - 1) / ENG_BLOCK_SIZE;
    vt_err e;
    s->table = malloc(sizeof *s->table * (size_t)s->n_blocks);
    s->tokens = malloc(sizeof *s->tokens * (size_t)s->n_ctx);
    s->pos = malloc(sizeof *s->pos * (size_t)s->n_batch);
    s->seq = calloc((size_t)s->n_batch, sizeof *s->seq);
    s->logits = malloc(sizeof *s->logits * (size_t)s->n_vocab);
    if (!s->table || !s->tokens || !s->pos || !s->seq || !s->logits) {
        e = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < s->n_blocks; i++)
        s->table[i] = (int32_t)i;
    if ((e = collect_end_ids(s)) || (e = md_kv_create(m, s->n_blocks, ENG_BLOCK_SIZE, &s->kv)) ||
        (e = md_ctx_create(m, o.pool, &s->ctx)))
        goto fail;
    *out = s;
    return VT_OK;
fail:
    eng_session_destroy(s);
    return e;
}

void eng_session_destroy(eng_session *s)
{
    if (!s)
        return;
    md_ctx_destroy(s->ctx);
    md_kv_destroy(s->kv);
    free(s->table);
    free(s->tokens);
    free(s->pos);
    free(s->seq);
    free(s->logits);
    free(s->end_ids);
    free(s);
}

int64_t eng_n_ctx(const eng_session *s)
{
    return s->n_ctx;
}

const int32_t *eng_tokens(const eng_session *s, int64_t *n)
{
    *n = s->n_past;
    return s->tokens;
}

const float *eng_logits(const eng_session *s)
{
    return s->have_logits ? s->logits : NULL;
}

void eng_truncate(eng_session *s, int64_t n)
{
    if (n < 0 || n >= s->n_past)
        return;
    s->n_past = n; /* the cache slots past n are simply overwritten later */
    s->have_logits = false;
}

/* Runs tokens[0..n) (already checked to fit) in chunks of n_batch. */
static vt_err run_tokens(eng_session *s, const int32_t *tokens, int64_t n)
{
    md_seq sq = {s->table, s->n_blocks};
    for (int64_t done = 0; done < n;) {
        int64_t k = VT_MIN(n - done, (int64_t)s->n_batch);
        for (int64_t i = 0; i < k; i++)
            s->pos[i] = (int32_t)(s->n_past + i);
        memcpy(s->tokens + s->n_past, tokens + done, sizeof *tokens * (size_t)k);
        md_batch b = {.n_tokens = k, .tokens = s->tokens + s->n_past, .pos = s->pos,
                      .seq = s->seq, .logits = NULL, .n_seqs = 1, .seqs = &sq};
        s->have_logits = false;
        vt_err e = md_forward(s->ctx, s->kv, &b, s->logits);
        if (e)
            return e;
        s->n_past += k;
        s->have_logits = true;
        done += k;
    }
    return VT_OK;
}

static vt_err check_fits(const eng_session *s, const int32_t *tokens, int64_t n)
{
    if (n < 0 || (n > 0 && !tokens))
        return vt_fail(VT_ERR_INVALID, "eng_feed: no tokens");
    if (n > s->n_ctx - s->n_past)
        return vt_fail(VT_ERR_RANGE,
                       "%lld tokens do not fit the context: %lld of %lld already used "
                       "(a larger context: --ctx)",
                       (long long)n, (long long)s->n_past, (long long)s->n_ctx);
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->n_vocab)
            return vt_fail(VT_ERR_RANGE, "token id %d is outside the vocabulary (%d tokens)",
                           (int)tokens[i], (int)s->n_vocab);
    return VT_OK;
}

vt_err eng_feed(eng_session *s, const int32_t *tokens, int64_t n)
{
    vt_err e = check_fits(s, tokens, n);
    if (e || n == 0)
        return e;
    double t0 = vt_now();
    e = run_tokens(s, tokens, n);
    s->stats.t_prompt += vt_now() - t0;
    s->stats.n_prompt += n;
    return e;
}

vt_err eng_sync(eng_session *s, const int32_t *tokens, int64_t n, int64_t *n_reused)
{
    if (n < 1 || !tokens)
        return vt_fail(VT_ERR_INVALID, "eng_sync: no tokens");
    int64_t keep = 0;
    while (keep < s->n_past && keep < n - 1 && s->tokens[keep] == tokens[keep])
        keep++;
    /* check before truncating, so that a failure leaves the session as it was */
    int64_t old = s->n_past;
    s->n_past = keep;
    vt_err e = check_fits(s, tokens + keep, n - keep);
    if (e) {
        s->n_past = old;
        return e;
    }
    if (keep < old)
        s->have_logits = false;
    if (n_reused)
        *n_reused = keep;
    return eng_feed(s, tokens + keep, n - keep);
}

const char *eng_finish_reason(eng_finish f)
{
    switch (f) {
    case ENG_FINISH_EOS:
    case ENG_FINISH_STOP:
        return "stop";
    case ENG_FINISH_LENGTH:
    case ENG_FINISH_CONTEXT:
        return "length";
    case ENG_FINISH_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

/* The state of one eng_generate call. */
typedef struct {
    eng_session *s;
    smp_state *smp;
    tok_stream *ts;
    eng_token_fn on_token;
    void *user;
    bool cancelled;
} gen_run;

static void emit(gen_run *g, int32_t token, const char *text, size_t len)
{
    if (g->on_token && !g->cancelled && !g->on_token(g->user, token, text ? text : "", len))
        g->cancelled = true;
}

/* Text still held back by the sampler and the detokenizer when generation
 * ends for a reason other than a stop string. */
static void release(gen_run *g, bool sampler_done)
{
    smp_emit out;
    const char *t;
    size_t len;
    if (!sampler_done) {
        smp_flush(g->smp, &out);
        if (out.len)
            emit(g, -1, out.text, out.len);
    }
    tok_stream_flush(g->ts, &t, &len);
    if (len)
        emit(g, -1, t, len);
}

vt_err eng_generate(eng_session *s, const smp_params *p, eng_token_fn on_token, void *user,
                    eng_result *res)
{
    *res = (eng_result){.finish = ENG_FINISH_CANCELLED, .stop_index = -1};
    if (!s->have_logits)
        return vt_fail(VT_ERR_INVALID, "eng_generate: no logits (feed a prompt first)");
    gen_run g = {.s = s, .on_token = on_token, .user = user};
    vt_err e = smp_create(p, s->n_vocab, s->end_ids, s->n_end, &g.smp);
    if (e)
        return e;
    if (!(g.ts = tok_stream_create(s->tok, false, false))) {
        smp_destroy(g.smp);
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    }
    res->seed = smp_seed(g.smp);
    double t0 = vt_now();
    for (;;) {
        int32_t t = smp_sample(g.smp, s->logits, s->n_vocab, s->tokens, (size_t)s->n_past, NULL);
        if (t < 0) {
            e = VT_ERR_INVALID; /* smp_sample has set the message */
            break;
        }
        res->n_generated++;
        const char *piece = NULL;
        size_t len = 0;
        if ((e = tok_stream_push(g.ts, t, &piece, &len)))
            break;
        smp_emit out;
        if ((e = smp_accept(g.smp, t, piece, len, &out)))
            break;
        emit(&g, t, out.text, out.len);
        if (out.finish != SMP_CONTINUE) {
            res->finish = out.finish == SMP_FINISH_EOS    ? ENG_FINISH_EOS
                          : out.finish == SMP_FINISH_STOP ? ENG_FINISH_STOP
                                                          : ENG_FINISH_LENGTH;
            res->stop_index = out.stop_index;
            if (out.finish != SMP_FINISH_STOP)
                release(&g, true);
            break;
        }
        if (g.cancelled || s->n_past >= s->n_ctx) {
            res->finish = g.cancelled ? ENG_FINISH_CANCELLED : ENG_FINISH_CONTEXT;
            release(&g, false);
            break;
        }
        if ((e = run_tokens(s, &t, 1)))
            break;
    }
    s->stats.t_gen += vt_now() - t0;
    s->stats.n_gen += res->n_generated;
    tok_stream_destroy(g.ts);
    smp_destroy(g.smp);
    return e;
}

eng_stats eng_get_stats(const eng_session *s)
{
    return s->stats;
}

void eng_stats_reset(eng_session *s)
{
    s->stats = (eng_stats){0};
}
