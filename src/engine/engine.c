/*
 * engine.c - the multi-request engine's life cycle (vitamin.h): loading the
 * model, sizing the KV pool and the scheduler from the configuration, the
 * engine thread's loop, validating and queueing submitted requests, and
 * shutting down (every request still alive ends with an abort). An
 * embedding request (p.embed) is validated as a prompt alone, with one
 * completion that never samples (step.c pools its hidden states instead).
 *
 * Submitting only validates, copies and appends to an inbox under the
 * engine's mutex; the engine thread admits the inbox into the scheduler at
 * the start of its next step, so that the scheduler, the block manager, the
 * model runner and the samplers are touched by one thread only.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine_int.h"
#include "util/util.h"

#define ENG_MAX_N 64

vt_request_params vt_request_params_default(void)
{
    return (vt_request_params){
        .n = 1,
        .max_tokens = -1,
        .temperature = 1.0f,
        .top_p = 1.0f,
        .repetition_penalty = 1.0f,
        .penalty_last_n = 64,
        .seed = UINT64_MAX,
    };
}

const char *vt_finish_reason(vt_finish f)
{
    switch (f) {
    case VT_FINISH_EOS:
    case VT_FINISH_STOP:
        return "stop";
    case VT_FINISH_LENGTH:
        return "length";
    case VT_FINISH_ABORT:
        return "abort";
    case VT_FINISH_NONE:
        break;
    }
    return "none";
}

static void *engine_main(void *arg);

static vt_err collect_end_ids(vt_engine *e)
{
    int32_t n = 0;
    for (int32_t id = 0; id < e->n_vocab; id++)
        n += tok_is_eog(e->tok, id);
    if (n == 0)
        return VT_OK;
    if (!(e->end_ids = malloc(sizeof *e->end_ids * (size_t)n)))
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    for (int32_t id = 0; id < e->n_vocab; id++)
        if (tok_is_eog(e->tok, id))
            e->end_ids[e->n_end++] = id;
    return VT_OK;
}

static void *kv_part(void *ctx, int32_t block, int32_t part, size_t *len)
{
    return md_kv_block_part(ctx, block, part, len);
}

/* Sizes and allocates everything but the model; e->m, tok, pool set. */
static vt_err setup(vt_engine *e, const vt_engine_config *cfg)
{
    const md_hparams *hp = &e->m->hp;
    int32_t bs = cfg->block_size ? cfg->block_size : KV_DEFAULT_BLOCK_SIZE;
    if (bs < 1 || bs > 1024)
        return vt_fail(VT_ERR_INVALID, "block size %d is out of range (1..1024)", (int)bs);
    if (cfg->kv_mem < 0 || cfg->kv_tokens < 0 || cfg->max_seq_len < 0)
        return vt_fail(VT_ERR_INVALID, "negative KV pool or sequence size");
    int64_t ctx_train = hp->n_ctx_train > 0 ? hp->n_ctx_train : 4096;
    int64_t n_blocks;
    size_t bb = md_kv_block_bytes(hp, bs);
    if (cfg->kv_mem > 0) {
        n_blocks = cfg->kv_mem / (int64_t)bb;
        if (n_blocks < 1)
            return vt_fail(VT_ERR_RANGE,
                           "a KV pool of %lld bytes holds no block (one block of %d tokens "
                           "takes %zu bytes)",
                           (long long)cfg->kv_mem, (int)bs, bb);
    } else {
        int64_t tokens = cfg->kv_tokens > 0 ? cfg->kv_tokens : VT_MIN(ctx_train, (int64_t)4096);
        n_blocks = (tokens + bs - 1) / bs;
    }
    if (n_blocks > (INT64_C(1) << 30))
        return vt_fail(VT_ERR_RANGE, "a KV pool of %lld blocks is too large", (long long)n_blocks);
    e->max_seq_len = cfg->max_seq_len > 0 ? cfg->max_seq_len : ctx_train;
    e->max_seq_len = VT_MIN(e->max_seq_len, n_blocks * bs);
    e->max_batch_tokens = cfg->max_batch_tokens ? cfg->max_batch_tokens : 512;
    e->max_seqs = cfg->max_seqs ? cfg->max_seqs : VT_MIN(256, e->max_batch_tokens);
    if (e->max_batch_tokens < 1 || e->max_batch_tokens > (1 << 20))
        return vt_fail(VT_ERR_INVALID, "max batch tokens %d is out of range",
                       (int)e->max_batch_tokens);
    if (e->max_seqs < 1 || e->max_seqs > e->max_batch_tokens)
        return vt_fail(VT_ERR_INVALID, "max seqs %d must be in 1..max batch tokens (%d)",
                       (int)e->max_seqs, (int)e->max_batch_tokens);
    e->n_vocab = (int32_t)hp->n_vocab;
    if (tok_n_vocab(e->tok) != e->n_vocab)
        return vt_fail(VT_ERR_INVALID, "the tokenizer has %d tokens but the model %d",
                       (int)tok_n_vocab(e->tok), (int)e->n_vocab);
    vt_err err;
    if ((err = collect_end_ids(e)))
        return err;
    if ((err = md_kv_create(e->m, n_blocks, bs, &e->kvd)))
        return err;
    if ((err = md_ctx_create(e->m, e->pool, &e->ctx)))
        return err;
    kv_config kc = {.n_blocks = n_blocks, .block_size = bs, .prefix_caching = !cfg->no_prefix_cache,
                    .salt = 0};
    /* the model's identity in the block hashes: a cached block of one model
     * (or cache layout) never serves another, in the pool or the drawer */
    kc.salt = md_kv_identity(e->m, bs);
    if (!(e->kv = kv_pool_create(&kc)))
        return VT_ERR_NOMEM;
    if (cfg->kv_drawer && !cfg->no_prefix_cache) {
        kv_drawer_config dc = {.dir = cfg->kv_drawer,
                               .cap_bytes = cfg->kv_drawer_bytes > 0 ? cfg->kv_drawer_bytes
                                                                     : INT64_C(4) << 30,
                               .model_id = kc.salt,
                               .block_size = bs,
                               .n_parts = md_kv_n_parts(e->kvd),
                               .part = kv_part,
                               .part_ctx = e->kvd};
        if ((err = kv_drawer_open(&dc, &e->drawer)))
            return err;
        kv_set_backing(e->kv, kv_drawer_backing(), e->drawer);
    }
    sched_config sc = {.max_batch_tokens = e->max_batch_tokens, .max_seqs = e->max_seqs,
                       .admit_headroom = cfg->no_admit_headroom ? 0 : 1};
    if (!(e->sc = sched_create(e->kv, &sc)))
        return VT_ERR_NOMEM;
    size_t nb = (size_t)e->max_batch_tokens;
    e->tokv = malloc(sizeof *e->tokv * nb);
    e->pos = malloc(sizeof *e->pos * nb);
    e->seq = malloc(sizeof *e->seq * nb);
    e->want = malloc(sizeof *e->want * nb);
    e->attn = malloc(sizeof *e->attn * nb);
    e->hid = malloc(sizeof *e->hid * nb);
    e->n_embd = (int32_t)hp->dim;
    e->pooling = hp->pooling;
    e->seqs = malloc(sizeof *e->seqs * (size_t)e->max_seqs);
    if (!e->tokv || !e->pos || !e->seq || !e->want || !e->attn || !e->seqs || !e->hid)
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_mutex_init(&e->mu, NULL);
    if (rc == 0 && pthread_cond_init(&e->cv, &ca) != 0) {
        pthread_mutex_destroy(&e->mu);
        rc = 1;
    }
    pthread_condattr_destroy(&ca);
    if (rc)
        return vt_fail(VT_ERR_NOMEM, "cannot create the engine's locks");
    e->locks_ok = true;
    e->manual = cfg->manual_step;
    if (!e->manual) {
        if (pthread_create(&e->thread, NULL, engine_main, e))
            return vt_fail(VT_ERR_NOMEM, "cannot start the engine thread");
        e->thread_started = true;
    }
    return VT_OK;
}

vt_engine *eng_create(md_model *m, tok_tokenizer *tok, kn_pool *pool, const vt_engine_config *cfg)
{
    vt_engine_config c = cfg ? *cfg : (vt_engine_config){0};
    if (!m || !tok) {
        vt_fail(VT_ERR_INVALID, "eng_create: a model and its tokenizer are required");
        return NULL;
    }
    vt_engine *e = calloc(1, sizeof *e);
    if (!e) {
        vt_fail(VT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    e->m = m;
    e->tok = tok;
    e->pool = pool;
    if (setup(e, &c)) {
        vt_engine_destroy(e);
        return NULL;
    }
    return e;
}

vt_engine *vt_engine_create(const vt_engine_config *cfg)
{
    if (!cfg || !cfg->model_path) {
        vt_fail(VT_ERR_INVALID, "vt_engine_create: model_path is required");
        return NULL;
    }
    if (cfg->n_threads < 0 || cfg->n_threads > 1024) {
        vt_fail(VT_ERR_INVALID, "threads %d is out of range (1..1024)", (int)cfg->n_threads);
        return NULL;
    }
    md_model *m = NULL;
    tok_tokenizer *tok = NULL;
    kn_pool *pool = NULL;
    int nt = cfg->n_threads;
    if (nt == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        nt = n > 0 ? (int)VT_MIN(n, 1024L) : 1;
    }
    if (md_load(cfg->model_path, &m) || tok_load(m->file, &tok))
        goto fail;
    if (!(pool = kn_pool_create(nt)))
        goto fail;
    vt_engine *e = eng_create(m, tok, pool, cfg);
    if (!e)
        goto fail;
    e->owns_model = true;
    e->owns_pool = true;
    return e;
fail:
    kn_pool_destroy(pool);
    tok_destroy(tok);
    md_destroy(m);
    return NULL;
}

static void stop_thread(vt_engine *e)
{
    if (!e->thread_started)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->thread_started = false;
}

void vt_engine_destroy(vt_engine *e)
{
    if (!e)
        return;
    stop_thread(e);
    if (e->locks_ok) {
        /* every request still alive ends now */
        pthread_mutex_lock(&e->mu);
        vt_request *in = e->in_head;
        e->in_head = e->in_tail = NULL;
        e->stopping = true;
        pthread_mutex_unlock(&e->mu);
        while (in) {
            vt_request *next = in->next_in;
            eng_end_request(e, in, VT_OK, NULL);
            in = next;
        }
        for (int32_t i = 0; i < e->n_slots; i++)
            if (e->live[i])
                eng_end_request(e, e->live[i], VT_OK, NULL);
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->mu);
    }
    sched_destroy(e->sc);
    kv_set_backing(e->kv, NULL, NULL);
    kv_drawer_close(e->drawer); /* writes what the last requests left */
    kv_pool_destroy(e->kv);
    md_ctx_destroy(e->ctx);
    md_kv_destroy(e->kvd);
    free(e->live);
    free(e->tokv);
    free(e->pos);
    free(e->seq);
    free(e->want);
    free(e->attn);
    free(e->hid);
    free(e->hidden);
    free(e->seqs);
    free(e->logits);
    free(e->samples);
    free(e->stop);
    free(e->end_ids);
    smp_grammar_vocab_destroy(e->gvocab);
    if (e->owns_pool)
        kn_pool_destroy(e->pool);
    if (e->owns_model) {
        tok_destroy(e->tok);
        md_destroy(e->m);
    }
    free(e);
}

/* The engine thread: a step whenever there is work, else sleep until a
 * submit, an abort or the end. */
static void *engine_main(void *arg)
{
    vt_engine *e = arg;
    bool busy = false;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stopping && !busy && !e->in_head && !e->abort_pending)
            pthread_cond_wait(&e->cv, &e->mu);
        bool stop = e->stopping;
        pthread_mutex_unlock(&e->mu);
        if (stop)
            break;
        eng_step(e, &busy);
    }
    return NULL;
}

vt_err vt_engine_step(vt_engine *e, bool *busy)
{
    bool b = false;
    if (busy)
        *busy = false;
    if (!e->manual)
        return vt_fail(VT_ERR_INVALID, "vt_engine_step: the engine runs its own thread");
    vt_err err = eng_step(e, &b);
    if (busy)
        *busy = b;
    return err;
}

int32_t vt_engine_n_vocab(const vt_engine *e)
{
    return e->n_vocab;
}

int32_t vt_engine_n_embd(const vt_engine *e)
{
    return e->n_embd;
}

int64_t vt_engine_max_seq_len(const vt_engine *e)
{
    return e->max_seq_len;
}

const md_model *eng_model(const vt_engine *e)
{
    return e->m;
}

const tok_tokenizer *eng_tokenizer(const vt_engine *e)
{
    return e->tok;
}

void eng_get_counters(vt_engine *e, eng_counters *out)
{
    pthread_mutex_lock(&e->mu);
    *out = e->shown;
    pthread_mutex_unlock(&e->mu);
}

vt_err vt_tokenize(const vt_engine *e, const char *text, size_t len, bool add_special,
                   bool parse_special, int32_t **ids, size_t *n)
{
    return tok_encode(e->tok, text, len, add_special, parse_special, ids, n);
}

/* The sampler's view of a request's parameters (validated there). */
static smp_params to_smp(const vt_request_params *p, int64_t max_tokens)
{
    smp_params s = smp_params_default();
    s.temperature = p->temperature;
    s.top_k = p->top_k;
    s.top_p = p->top_p;
    s.min_p = p->min_p;
    s.repetition_penalty = p->repetition_penalty;
    s.presence_penalty = p->presence_penalty;
    s.frequency_penalty = p->frequency_penalty;
    s.penalty_last_n = p->penalty_last_n;
    _Static_assert(sizeof(smp_bias) == sizeof(vt_logit_bias), "same layout");
    s.logit_bias = (const smp_bias *)p->logit_bias;
    s.n_logit_bias = p->n_logit_bias;
    s.seed = p->seed;
    s.max_tokens = (int32_t)max_tokens;
    s.stop = p->stop;
    s.n_stop = p->n_stop;
    s.ignore_eos = p->ignore_eos;
    s.min_tokens = p->min_tokens;
    s.top_logprobs = p->logprobs ? p->top_logprobs : 0;
    return s;
}

static vt_err validate(const vt_engine *e, const vt_request_params *p, int64_t *max_tokens)
{
    if (!p->prompt || p->n_prompt < 1)
        return vt_fail(VT_ERR_INVALID, "the prompt is empty");
    if (p->embed) {
        for (int64_t i = 0; i < p->n_prompt; i++)
            if (p->prompt[i] < 0 || p->prompt[i] >= e->n_vocab)
                return vt_fail(VT_ERR_RANGE,
                               "prompt token %lld is %d, outside the vocabulary (%d)",
                               (long long)i, (int)p->prompt[i], (int)e->n_vocab);
        if (p->n_prompt > e->max_seq_len)
            return vt_fail(VT_ERR_RANGE, "the input has %lld tokens but the context is %lld",
                           (long long)p->n_prompt, (long long)e->max_seq_len);
        *max_tokens = 1; /* the one "sample" that ends the sequence, never fed back */
        return VT_OK;
    }
    if (p->n < 1 || p->n > ENG_MAX_N)
        return vt_fail(VT_ERR_RANGE, "n must be in 1..%d, got %d", ENG_MAX_N, (int)p->n);
    for (int64_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || p->prompt[i] >= e->n_vocab)
            return vt_fail(VT_ERR_RANGE, "prompt token %lld is %d, outside the vocabulary (%d)",
                           (long long)i, (int)p->prompt[i], (int)e->n_vocab);
    if (p->n_prompt >= e->max_seq_len)
        return vt_fail(VT_ERR_RANGE,
                       "the prompt has %lld tokens but the context is %lld tokens (prompt "
                       "and output together)",
                       (long long)p->n_prompt, (long long)e->max_seq_len);
    if (p->max_tokens < -1 || p->max_tokens == 0)
        return vt_fail(VT_ERR_RANGE, "max_tokens must be at least 1 (or -1: no limit), got %d",
                       (int)p->max_tokens);
    int64_t room = e->max_seq_len - p->n_prompt;
    if (p->max_tokens > room)
        return vt_fail(VT_ERR_RANGE,
                       "the prompt (%lld tokens) and max_tokens (%d) exceed the context of "
                       "%lld tokens",
                       (long long)p->n_prompt, (int)p->max_tokens, (long long)e->max_seq_len);
    if (p->top_logprobs < 0 || p->top_logprobs > SMP_MAX_TOP_LOGPROBS)
        return vt_fail(VT_ERR_RANGE, "top_logprobs must be in 0..%d, got %d",
                       SMP_MAX_TOP_LOGPROBS, (int)p->top_logprobs);
    *max_tokens = p->max_tokens > 0 ? p->max_tokens : room;
    smp_params sp = to_smp(p, *max_tokens);
    return smp_params_validate(&sp, e->n_vocab);
}

static smp_grammar_kind grammar_kind(vt_grammar_kind k)
{
    return k == VT_GRAMMAR_GBNF          ? SMP_GRAMMAR_GBNF
           : k == VT_GRAMMAR_JSON_SCHEMA ? SMP_GRAMMAR_JSON_SCHEMA
           : k == VT_GRAMMAR_REGEX       ? SMP_GRAMMAR_REGEX
                                         : SMP_GRAMMAR_JSON_OBJECT;
}

static vt_err check_grammar(const vt_request_params *p)
{
    if (p->grammar_kind == VT_GRAMMAR_NONE || p->embed)
        return VT_OK;
    if (p->grammar_kind < VT_GRAMMAR_GBNF || p->grammar_kind > VT_GRAMMAR_JSON_OBJECT)
        return vt_fail(VT_ERR_INVALID, "grammar_kind %d is unknown", (int)p->grammar_kind);
    if (!p->grammar && p->grammar_kind != VT_GRAMMAR_JSON_OBJECT)
        return vt_fail(VT_ERR_INVALID, "a grammar_kind but no grammar text");
    smp_grammar *g = NULL;
    vt_err err = smp_grammar_compile(grammar_kind(p->grammar_kind), p->grammar,
                                     p->grammar ? strlen(p->grammar) : 0, NULL, &g);
    smp_grammar_unref(g);
    return err ? vt_fail(VT_ERR_INVALID, "%s", vt_last_error()) : VT_OK;
}

/* The compiled grammar of a request (cached by text), a new reference. */
static vt_err get_grammar(vt_engine *e, const vt_request_params *p, smp_grammar **out)
{
    *out = NULL;
    if (p->grammar_kind == VT_GRAMMAR_NONE || p->embed)
        return VT_OK;
    pthread_mutex_lock(&e->mu);
    smp_grammar_vocab *v = e->gvocab;
    pthread_mutex_unlock(&e->mu);
    if (!v) {
        const char **pieces = malloc(sizeof *pieces * (size_t)e->n_vocab);
        size_t *lens = malloc(sizeof *lens * (size_t)e->n_vocab);
        vt_err err = VT_ERR_NOMEM;
        if (pieces && lens) {
            for (int32_t i = 0; i < e->n_vocab; i++)
                pieces[i] = tok_piece(e->tok, i, false, &lens[i]);
            err = smp_grammar_vocab_create(e->n_vocab, pieces, lens, &v);
        } else {
            vt_fail(err, "out of memory");
        }
        free(pieces);
        free(lens);
        if (err)
            return err;
        pthread_mutex_lock(&e->mu);
        if (e->gvocab) { /* another thread was first */
            smp_grammar_vocab_destroy(v);
            v = e->gvocab;
        } else {
            e->gvocab = v;
        }
        pthread_mutex_unlock(&e->mu);
    }
    const char *text = p->grammar ? p->grammar : "";
    vt_err err = smp_grammar_vocab_get(v, grammar_kind(p->grammar_kind), text, strlen(text), out);
    if (err && err != VT_ERR_NOMEM)
        return vt_fail(VT_ERR_INVALID, "%s", vt_last_error());
    return err;
}

vt_err vt_request_check(const vt_engine *e, const vt_request_params *p)
{
    int64_t max_tokens = 0;
    if (!e || !p)
        return vt_fail(VT_ERR_INVALID, "vt_request_check: no engine or parameters");
    vt_err err = validate(e, p, &max_tokens);
    if (!err)
        err = check_grammar(p);
    if (err)
        return err;
    /* The pool's size is fixed (this runs on a client thread: nothing that
     * the engine thread changes may be read here). The last token is never
     * fed back, so it needs no slot. */
    int64_t slots = p->n_prompt + max_tokens - 1; /* an embedding: the prompt */
    int64_t bs = kv_block_size(e->kv);
    if ((slots + bs - 1) / bs > kv_n_blocks(e->kv))
        return vt_fail(VT_ERR_RANGE,
                       "the request needs %lld KV slots (prompt %lld + max_tokens %lld) but the "
                       "whole KV pool has %lld",
                       (long long)slots + 1, (long long)p->n_prompt, (long long)max_tokens,
                       (long long)kv_n_blocks(e->kv) * kv_block_size(e->kv));
    return VT_OK;
}

vt_err vt_submit(vt_engine *e, const vt_request_params *p, vt_request **out)
{
    *out = NULL;
    if (!e || !p)
        return vt_fail(VT_ERR_INVALID, "vt_submit: no engine or parameters");
    vt_err err = vt_request_check(e, p);
    if (err)
        return err;
    int64_t max_tokens = 0;
    validate(e, p, &max_tokens);
    smp_grammar *grammar = NULL;
    vt_request *r = eng_request_new();
    if (!r)
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    r->e = e;
    r->max_tokens = max_tokens;
    r->on_event = p->on_event;
    r->on_event_ctx = p->on_event_ctx;
    if ((err = eng_request_copy_params(r, p)))
        goto fail;
    if (p->embed) {
        /* one completion with a default sampler (the abort path finishes it);
         * it never samples */
        vt_request_params d = vt_request_params_default();
        d.prompt = r->p.prompt;
        d.n_prompt = r->p.n_prompt;
        d.embed = true;
        d.priority = p->priority;
        d.cache_salt = p->cache_salt;
        d.on_event = p->on_event;
        d.on_event_ctx = p->on_event_ctx;
        d.seed = 0;
        for (int32_t i = 0; r->stops && i < r->p.n_stop; i++) /* ignored: let go */
            free(r->stops[i]);
        free(r->stops);
        r->stops = NULL;
        r->p = d;
        p = &r->p;
        if (!(r->emb = calloc((size_t)e->n_embd, sizeof *r->emb))) {
            err = vt_fail(VT_ERR_NOMEM, "out of memory");
            goto fail;
        }
        /* Mean and first-token pooling need every prompt position's hidden
         * state, which a prefix-cache hit would skip: such a request's blocks
         * are named by a salt of its own (a hit can only be its own blocks,
         * after a preemption, whose states it already has). Last-token
         * pooling computes the last position anyway and shares the cache. */
        if (e->pooling != MD_POOL_LAST) {
            pthread_mutex_lock(&e->mu);
            uint64_t id = (uint64_t)e->next_id;
            pthread_mutex_unlock(&e->mu);
            r->p.cache_salt = (p->cache_salt ^ 0x656d6265646469ull) * 0x9e3779b97f4a7c15ull +
                              id * 0xbf58476d1ce4e5b9ull + (uint64_t)(uintptr_t)r;
            r->p.cache_salt |= 1;
        }
    }
    r->sp = to_smp(&r->p, max_tokens);
    r->p.grammar = NULL; /* not copied: compiled below, each sampler holds it */
    if ((err = get_grammar(e, p, &grammar)))
        goto fail;
    r->sp.grammar = grammar;
    if (!(r->c = calloc((size_t)p->n, sizeof *r->c))) {
        err = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < p->n; i++) {
        smp_params sp = r->sp;
        if (sp.seed != SMP_SEED_RANDOM)
            sp.seed = r->sp.seed + (uint64_t)i == SMP_SEED_RANDOM ? 0 : r->sp.seed + (uint64_t)i;
        if ((err = smp_create(&sp, e->n_vocab, e->end_ids, e->n_end, &r->c[i].smp)))
            goto fail;
        if (!(r->c[i].ts = tok_stream_create(e->tok, p->special, false))) {
            err = vt_fail(VT_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    r->sp.grammar = NULL;
    smp_grammar_unref(grammar); /* the samplers hold it */
    grammar = NULL;
    r->n_live = p->n;
    r->usage.prompt_tokens = p->n_prompt;
    r->t_submit = vt_now();
    pthread_mutex_lock(&e->mu);
    if (e->stopping) {
        pthread_mutex_unlock(&e->mu);
        err = vt_fail(VT_ERR_INVALID, "the engine is shutting down");
        goto fail;
    }
    r->id = e->next_id++;
    if (e->in_tail)
        e->in_tail->next_in = r;
    else
        e->in_head = r;
    e->in_tail = r;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return VT_OK;
fail:
    smp_grammar_unref(grammar);
    r->refs = 1;
    eng_request_unref(r);
    return err;
}
