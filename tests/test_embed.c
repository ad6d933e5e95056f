/*
 * test_embed.c - embedding requests (vt_request_params.embed): the model's
 * final hidden states (md_batch.hidden, after the output norm) pooled as the
 * GGUF's pooling_type says and L2-normalised.
 *
 * The engine's vector must equal, bit for bit, the hidden states that one
 * md_forward over the whole prompt gives, pooled by hand (mean: summed in
 * position order in double, divided by n; last / cls: one token's) and
 * normalised; it must not change when the request is chunked through a
 * small token budget, batched with other embedding and generation requests,
 * preempted by a small KV pool, or repeated (a prefix-cache hit must not
 * drop positions from a mean). The hidden-state flags must leave the logits
 * of the same batch unchanged. llama.cpp's embeddings of the same files
 * (node-llama-cpp's LlamaEmbeddingContext, committed in tests/data/embed/ by
 * tools/make_embed_refs.sh; llama.cpp does not normalise, so both sides are
 * normalised here) must agree to 2e-3 per element. Models are made at test
 * time with `vitamin gen-model --pooling`.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"
#include "test.h"
#include "util/util.h"

#define DIM 128
#define GEN_ARGS "--arch llama --dim 128 --layers 2 --heads 4 --kv-heads 2 --ff 256 --type q8_0"

typedef struct {
    const char *name; /* file name and the pooling option ("" : no key) */
    const char *pooling;
    md_model *m;
    tok_tokenizer *tok;
} tmodel;

static tmodel models[] = {
    {"mean", "mean", NULL, NULL},
    {"last", "last", NULL, NULL},
    {"cls", "cls", NULL, NULL},
    {"default", NULL, NULL, NULL},
};
#define N_MODELS (int)(sizeof models / sizeof models[0])
static bool models_skipped;
static kn_pool *pool;

static void test_make_models(void)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the embedding test models")) {
        models_skipped = true;
        return;
    }
    for (int i = 0; i < N_MODELS; i++) {
        tmodel *t = &models[i];
        char path[512], cmd[2048], pool_opt[64] = "";
        snprintf(path, sizeof path, "%s/embed-%s.gguf", test_tmpdir(), t->name);
        if (t->pooling)
            snprintf(pool_opt, sizeof pool_opt, "--pooling %s", t->pooling);
        snprintf(cmd, sizeof cmd, "%s gen-model %s %s --vocab %s -o %s", test_vitamin_bin(),
                 GEN_ARGS, pool_opt, vocab, path);
        int rc = system(cmd);
        CHECKF(rc == 0, "`%s` exited with status %d", cmd, rc);
        if (rc)
            continue;
        if (md_load(path, &t->m) || tok_load(t->m->file, &t->tok))
            test_fail_at(__FILE__, __LINE__, "cannot load %s: %s", path, vt_last_error());
    }
    if (models[0].m) {
        CHECK_EQ_INT(models[0].m->hp.pooling, MD_POOL_MEAN);
        CHECK_EQ_INT(models[1].m->hp.pooling, MD_POOL_LAST);
        CHECK_EQ_INT(models[2].m->hp.pooling, MD_POOL_CLS);
        CHECK_EQ_INT(models[3].m->hp.pooling, MD_POOL_MEAN); /* no key: mean */
    }
}

static bool have(const tmodel *t)
{
    if (t->m)
        return true;
    if (models_skipped)
        test_skip_missing("no test model (test_make_models lacked an input)");
    else
        test_fail_at(__FILE__, __LINE__, "no test model (test_make_models failed)");
    return false;
}

/* A deterministic prompt of n tokens (BOS first). */
static void prompt_of(int32_t *t, int64_t n, uint32_t seed, int32_t n_vocab)
{
    uint32_t s = seed * 2654435761u + 12345u;
    t[0] = 1;
    for (int64_t i = 1; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        t[i] = 3 + (int32_t)((s >> 8) % (uint32_t)(n_vocab - 3));
    }
}

/* The hand-made reference: one md_forward over the whole prompt with every
 * token's hidden state (and its logits, to check they are unchanged), pooled
 * as the model says and normalised. out: [DIM]. */
static bool by_hand(const tmodel *t, const int32_t *tok, int64_t n, float *out)
{
    md_kv *kv = NULL;
    md_ctx *c = NULL;
    bool ok = false;
    int64_t bs = 16, nb = (n + bs - 1) / bs;
    int32_t *table = malloc(sizeof *table * (size_t)nb), *pos = malloc(sizeof *pos * (size_t)n),
            *seq = calloc((size_t)n, sizeof *seq);
    bool *hid = malloc((size_t)n), *lg = malloc((size_t)n);
    float *h = malloc(sizeof *h * (size_t)(n * DIM));
    int64_t nv = t->m->hp.n_vocab;
    float *l1 = malloc(sizeof *l1 * (size_t)(n * nv)), *l2 = malloc(sizeof *l2 * (size_t)(n * nv));
    if (!table || !pos || !seq || !hid || !lg || !h || !l1 || !l2)
        goto done;
    for (int64_t i = 0; i < nb; i++)
        table[i] = (int32_t)i;
    for (int64_t i = 0; i < n; i++) {
        pos[i] = (int32_t)i;
        hid[i] = lg[i] = true;
    }
    md_seq s = {table, nb};
    md_batch b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .logits = lg,
                  .n_seqs = 1, .seqs = &s};
    if (md_kv_create(t->m, nb, (int)bs, &kv) || md_ctx_create(t->m, pool, &c) ||
        md_forward(c, kv, &b, l1)) {
        test_fail_at(__FILE__, __LINE__, "md_forward: %s", vt_last_error());
        goto done;
    }
    b.hidden = hid;
    b.out_hidden = h;
    if (md_forward(c, kv, &b, l2)) {
        test_fail_at(__FILE__, __LINE__, "md_forward: %s", vt_last_error());
        goto done;
    }
    CHECKF(!memcmp(l1, l2, sizeof *l1 * (size_t)(n * nv)),
           "asking for hidden states changed the logits");
    double acc[DIM] = {0}, scale = 1;
    md_pooling p = t->m->hp.pooling;
    if (p == MD_POOL_MEAN) {
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < DIM; j++)
                acc[j] += h[i * DIM + j];
        scale = 1.0 / (double)n;
    } else {
        int64_t at = p == MD_POOL_LAST ? n - 1 : 0;
        for (int j = 0; j < DIM; j++)
            acc[j] = h[at * DIM + j];
    }
    double ss = 0;
    for (int j = 0; j < DIM; j++)
        ss += acc[j] * scale * (acc[j] * scale);
    for (int j = 0; j < DIM; j++)
        out[j] = (float)(acc[j] * scale * (1.0 / sqrt(ss)));
    ok = true;
done:
    md_ctx_destroy(c);
    md_kv_destroy(kv);
    free(table);
    free(pos);
    free(seq);
    free(hid);
    free(lg);
    free(h);
    free(l1);
    free(l2);
    return ok;
}

static vt_engine *engine(const tmodel *t, int32_t budget, int64_t kv_tokens, bool cache)
{
    /* first-chunk admission (no headroom): a small pool then preempts */
    vt_engine_config cfg = {.manual_step = true, .max_batch_tokens = budget,
                            .max_seqs = VT_MIN(budget, 16), .kv_tokens = kv_tokens,
                            .no_prefix_cache = !cache, .no_admit_headroom = true};
    vt_engine *e = eng_create(t->m, t->tok, pool, &cfg);
    if (!e)
        test_fail_at(__FILE__, __LINE__, "eng_create: %s", vt_last_error());
    return e;
}

typedef struct {
    int32_t *prompt;
    int64_t n;
    bool embed;
    vt_request *r;
    float vec[DIM];
    int n_vec, n_finish, n_tokens;
    bool done, error;
    vt_usage usage;
} job;

static void drain(job *j)
{
    vt_event ev;
    while (j->r && vt_request_next(j->r, &ev, 0) > 0) {
        switch (ev.kind) {
        case VT_EV_EMBEDDING:
            CHECK_EQ_INT(ev.n_embd, DIM);
            if (ev.n_embd == DIM && ev.embedding)
                memcpy(j->vec, ev.embedding, sizeof j->vec);
            j->n_vec++;
            CHECK(!j->done);
            break;
        case VT_EV_TOKEN:
            j->n_tokens++;
            break;
        case VT_EV_FINISH:
            j->n_finish++;
            break;
        case VT_EV_ERROR:
            j->error = true;
            break;
        case VT_EV_DONE:
            j->done = true;
            j->usage = ev.usage;
            break;
        }
    }
}

/* Runs the jobs together in e until all are done. */
static bool run_jobs(vt_engine *e, job *jobs, int n)
{
    for (int i = 0; i < n; i++) {
        vt_request_params p = vt_request_params_default();
        p.prompt = jobs[i].prompt;
        p.n_prompt = jobs[i].n;
        p.embed = jobs[i].embed;
        p.temperature = 0;
        p.max_tokens = 12;
        p.ignore_eos = true;
        if (vt_submit(e, &p, &jobs[i].r)) {
            test_fail_at(__FILE__, __LINE__, "vt_submit: %s", vt_last_error());
            return false;
        }
    }
    for (int steps = 0; steps < 100000; steps++) {
        bool busy = false;
        if (vt_engine_step(e, &busy)) {
            test_fail_at(__FILE__, __LINE__, "vt_engine_step: %s", vt_last_error());
            return false;
        }
        for (int i = 0; i < n; i++)
            drain(&jobs[i]);
        if (!busy)
            break;
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        drain(&jobs[i]);
        CHECKF(jobs[i].done && !jobs[i].error, "job %d: done %d error %d", i, jobs[i].done,
               jobs[i].error);
        if (jobs[i].embed) {
            CHECK_EQ_INT(jobs[i].n_vec, 1);
            CHECK_EQ_INT(jobs[i].n_tokens, 0);
            CHECK_EQ_INT(jobs[i].n_finish, 0);
            CHECK_EQ_INT(jobs[i].usage.prompt_tokens, jobs[i].n);
            CHECK_EQ_INT(jobs[i].usage.completion_tokens, 0);
        }
        ok = ok && jobs[i].done && !jobs[i].error;
        vt_request_free(jobs[i].r);
        jobs[i].r = NULL;
    }
    return ok;
}

static void check_kv_free(vt_engine *e)
{
    eng_counters c;
    eng_get_counters(e, &c);
    CHECKF(c.kv.blocks_used == 0, "%lld KV blocks still held", (long long)c.kv.blocks_used);
}

static double norm_of(const float *v)
{
    double ss = 0;
    for (int j = 0; j < DIM; j++)
        ss += (double)v[j] * v[j];
    return sqrt(ss);
}

/* One request alone equals the hand-made pooling, bit for bit; norm 1. */
static void test_alone_equals_by_hand(void)
{
    static const int64_t lens[] = {1, 7, 40, 100};
    for (int mi = 0; mi < N_MODELS; mi++) {
        tmodel *t = &models[mi];
        if (!have(t))
            return;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            int32_t tok[128];
            float ref[DIM];
            prompt_of(tok, lens[li], (uint32_t)li + 1, (int32_t)t->m->hp.n_vocab);
            if (!by_hand(t, tok, lens[li], ref))
                return;
            vt_engine *e = engine(t, 512, 1024, false);
            if (!e)
                return;
            job j = {.prompt = tok, .n = lens[li], .embed = true};
            if (run_jobs(e, &j, 1)) {
                CHECKF(!memcmp(j.vec, ref, sizeof ref),
                       "%s, %lld tokens: the engine's vector differs from md_forward's pooled "
                       "by hand (first %g vs %g)",
                       t->name, (long long)lens[li], j.vec[0], ref[0]);
                CHECK_NEAR(norm_of(j.vec), 1.0, 1e-5);
            }
            check_kv_free(e);
            vt_engine_destroy(e);
        }
    }
}

/* Mean, last and cls pooling give different vectors of the same states. */
static void test_poolings_differ(void)
{
    for (int mi = 0; mi < N_MODELS; mi++)
        if (!have(&models[mi]))
            return;
    int32_t tok[30];
    prompt_of(tok, 30, 9, (int32_t)models[0].m->hp.n_vocab);
    float v[3][DIM];
    for (int mi = 0; mi < 3; mi++)
        if (!by_hand(&models[mi], tok, 30, v[mi]))
            return;
    CHECK(memcmp(v[0], v[1], sizeof v[0]) != 0);
    CHECK(memcmp(v[0], v[2], sizeof v[0]) != 0);
    CHECK(memcmp(v[1], v[2], sizeof v[0]) != 0);
}

/* Batched with each other and with generation, chunked through a budget of
 * 24 tokens, in a KV pool small enough to preempt, with repeated prompts:
 * every vector equals its request's alone. Twice: with the prefix cache (a
 * preempted mean-pooled request finds only its own blocks again; a repeated
 * last-pooled prompt shares the cache) and without it (a preempted request
 * recomputes positions it already pooled, which must not count twice). */
static void test_batching_changes_nothing(void)
{
    static const struct {
        int64_t kv;
        bool cache;
    } cfgs[] = {{96, true}, {80, false}};
    for (int mi = 0; mi < 2; mi++) { /* mean, last */
        tmodel *t = &models[mi];
        if (!have(t))
            return;
        int32_t nv = (int32_t)t->m->hp.n_vocab;
        static const int64_t lens[] = {70, 5, 33, 70, 1, 48, 20, 64};
        enum { NJ = sizeof lens / sizeof lens[0] };
        int32_t toks[NJ][80];
        job alone[NJ];
        memset(alone, 0, sizeof alone);
        for (int i = 0; i < NJ; i++) {
            /* job 3 repeats job 0's prompt: a prefix-cache hit */
            prompt_of(toks[i], lens[i], i == 3 ? 1 : (uint32_t)i + 1, nv);
            alone[i] = (job){.prompt = toks[i], .n = lens[i], .embed = i % 4 != 2};
            vt_engine *a = engine(t, 512, 1024, false);
            bool ok = a && run_jobs(a, &alone[i], 1);
            vt_engine_destroy(a);
            if (!ok)
                return;
        }
        for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
            job together[NJ];
            for (int i = 0; i < NJ; i++)
                together[i] = (job){.prompt = toks[i], .n = lens[i], .embed = alone[i].embed};
            vt_engine *e = engine(t, 24, cfgs[ci].kv, cfgs[ci].cache);
            if (!e)
                return;
            bool ok = run_jobs(e, together, NJ);
            eng_counters c;
            eng_get_counters(e, &c);
            check_kv_free(e);
            vt_engine_destroy(e);
            if (!ok)
                return;
            /* (with the cache, last pooling's hits leave the pool room enough) */
            if (mi == 0 || !cfgs[ci].cache)
                CHECKF(c.preemptions > 0, "%s, cache %d: no preemption happened (the test lost "
                       "its point)", t->name, cfgs[ci].cache);
            if (mi == 1 && cfgs[ci].cache) /* last pooling shares the prefix cache */
                CHECKF(c.kv.prefix_hits > 0, "last pooling: no prefix-cache hit");
            for (int i = 0; i < NJ; i++) {
                if (together[i].embed)
                    CHECKF(!memcmp(together[i].vec, alone[i].vec, sizeof alone[i].vec),
                           "%s, cache %d, job %d (%lld tokens): batched vector differs from "
                           "alone",
                           t->name, cfgs[ci].cache, i, (long long)lens[i]);
                else
                    CHECK_EQ_INT(together[i].n_tokens, alone[i].n_tokens);
            }
            CHECK(!memcmp(together[0].vec, together[3].vec, sizeof together[0].vec));
        }
    }
}

/* Bad requests are refused at submit; a prompt filling the whole context is
 * fine for an embedding. */
static void test_errors_and_limits(void)
{
    tmodel *t = &models[0];
    if (!have(t))
        return;
    vt_engine_config cfg = {.manual_step = true, .kv_tokens = 64, .max_seq_len = 64};
    vt_engine *e = eng_create(t->m, t->tok, pool, &cfg);
    if (!e) {
        test_fail_at(__FILE__, __LINE__, "eng_create: %s", vt_last_error());
        return;
    }
    CHECK_EQ_INT(vt_engine_n_embd(e), DIM);
    int32_t tok[80];
    prompt_of(tok, 80, 3, (int32_t)t->m->hp.n_vocab);
    vt_request_params p = vt_request_params_default();
    p.embed = true;
    p.prompt = tok;
    p.n_prompt = 0;
    vt_request *r = NULL;
    CHECK_EQ_INT(vt_submit(e, &p, &r), VT_ERR_INVALID);
    p.n_prompt = 65;
    CHECK_EQ_INT(vt_submit(e, &p, &r), VT_ERR_RANGE);
    CHECK(strstr(vt_last_error(), "context") != NULL);
    int32_t bad[2] = {1, (int32_t)t->m->hp.n_vocab};
    p.prompt = bad;
    p.n_prompt = 2;
    CHECK_EQ_INT(vt_submit(e, &p, &r), VT_ERR_RANGE);
    CHECK(r == NULL);
    /* the whole context, with sampling fields an embedding ignores */
    job j = {.prompt = tok, .n = 64, .embed = true};
    CHECK(run_jobs(e, &j, 1));
    CHECK_NEAR(norm_of(j.vec), 1.0, 1e-5);
    check_kv_free(e);
    /* an aborted embedding ends without a vector and frees its blocks (the
     * stop strings it ignores too: ASan) */
    static const char *const stops[] = {"a", "b"};
    p.prompt = tok;
    p.n_prompt = 40;
    p.stop = stops;
    p.n_stop = 2;
    if (vt_submit(e, &p, &r) == VT_OK) {
        bool busy;
        vt_request_abort(r);
        vt_engine_step(e, &busy);
        job a = {.r = r, .embed = true};
        drain(&a);
        CHECK(a.done);
        CHECK_EQ_INT(a.n_vec, 0);
        vt_request_free(r);
    }
    check_kv_free(e);
    vt_engine_destroy(e);
}

/* llama.cpp's embedding of the same files (tests/data/embed/NAME.txt: the
 * token list on the first line, its raw vector on the second). */
static void test_llama_cpp_reference(void)
{
    int compared = 0;
    for (int mi = 0; mi < N_MODELS; mi++) {
        tmodel *t = &models[mi];
        if (!have(t))
            return;
        char path[256];
        snprintf(path, sizeof path, "tests/data/embed/%s.txt", t->name);
        size_t len = 0;
        char *txt = test_read_file(path, &len);
        if (!txt) {
            test_fail_at(__FILE__, __LINE__, "cannot read %s (tools/make_embed_refs.sh)", path);
            continue;
        }
        int32_t tok[256];
        int64_t n = 0;
        char *p = txt;
        while (*p && *p != '\n' && n < 256) {
            tok[n++] = (int32_t)strtol(p, &p, 10);
            if (*p == ',')
                p++;
        }
        double ref[DIM], ss = 0;
        int nr = 0;
        while (*p && nr < DIM) {
            char *q;
            double v = strtod(p, &q);
            if (q == p) {
                p++;
                continue;
            }
            ref[nr++] = v;
            ss += v * v;
            p = q;
        }
        free(txt);
        CHECK_EQ_INT(nr, DIM);
        if (nr != DIM || n < 1)
            continue;
        vt_engine *e = engine(t, 512, 1024, false);
        if (!e)
            return;
        job j = {.prompt = tok, .n = n, .embed = true};
        /* llama.cpp has no default pooling for a decoder without the key: it
         * gives the last token's state, so the file without the key is
         * compared with the last-pooled file's vector there (made alike) */
        if (run_jobs(e, &j, 1)) {
            double worst = 0;
            for (int k = 0; k < DIM; k++)
                worst = fmax(worst, fabs(j.vec[k] - ref[k] / sqrt(ss)));
            if (t->pooling) {
                CHECKF(worst < 2e-3, "%s: %g from llama.cpp's normalised embedding", t->name,
                       worst);
                compared++;
            } else {
                CHECKF(worst > 1e-2, "no key: vitamin pools by mean, llama.cpp takes the last "
                                     "token; they should differ (%g)", worst);
            }
            printf("  %s: max |vitamin - llama.cpp| = %.2e over %lld tokens\n", t->name, worst,
                   (long long)n);
        }
        vt_engine_destroy(e);
    }
    CHECK_EQ_INT(compared, 3);
}

int main(void)
{
    pool = kn_pool_create(2);
    RUN_TEST(test_make_models);
    RUN_TEST(test_alone_equals_by_hand);
    RUN_TEST(test_poolings_differ);
    RUN_TEST(test_batching_changes_nothing);
    RUN_TEST(test_errors_and_limits);
    RUN_TEST(test_llama_cpp_reference);
    for (int i = 0; i < N_MODELS; i++) {
        tok_destroy(models[i].tok);
        md_destroy(models[i].m);
    }
    kn_pool_destroy(pool);
    return test_finish("test_embed");
}
