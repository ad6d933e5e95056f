/*
 * test_engine.c - the multi-request engine (vitamin.h's vt_engine over
 * kv/, sched/, md_forward and the sampler): batching changes nothing.
 *
 * Each workload runs its requests together in one engine (continuous
 * batching, chunked prefill through a small token budget, preemption forced
 * by a small KV pool, prefix-cache hits) and each request again alone in a
 * fresh engine without prefix caching; every request's greedy tokens and the
 * logprobs of its top alternatives must be identical (bit for bit: every
 * kernel is batch-invariant and the engine gives each token the attention
 * recipe it gets alone). Also: n = 2 with a seed shares the prompt's blocks
 * and gives two streams; prefix hits compute only the uncached tail; aborts
 * free every block; bad requests are refused with clear errors; several
 * client threads submitting, reading and aborting at once against the
 * engine's own thread (run under ThreadSanitizer by `make test-tsan`).
 * Models are made at test time with `vitamin gen-model`.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/engine.h"
#include "test.h"
#include "util/util.h"

typedef struct {
    const char *name;
    md_model *m;
    tok_tokenizer *tok;
} tmodel;

static tmodel models[2];
static bool models_skipped; /* making them lacked an input (outside CI: a skip) */
static kn_pool *pool;

static bool make_model(tmodel *t, const char *name, const char *args)
{
    const char *vocab = "tests/data/vocab/ggml-vocab-llama-spm.gguf";
    if (!test_need_vitamin() || !test_need_file(vocab, "the engine test models")) {
        models_skipped = true;
        return false;
    }
    char path[512], cmd[2048];
    snprintf(path, sizeof path, "%s/%s.gguf", test_tmpdir(), name);
    snprintf(cmd, sizeof cmd, "%s gen-model %s --vocab %s -o %s", test_vitamin_bin(), args, vocab,
             path);
    int rc = system(cmd);
    if (rc != 0) {
        test_fail_at(__FILE__, __LINE__, "`%s` exited with status %d", cmd, rc);
        return false;
    }
    if (md_load(path, &t->m) || tok_load(t->m->file, &t->tok)) {
        test_fail_at(__FILE__, __LINE__, "cannot load %s: %s", path, vt_last_error());
        return false;
    }
    t->name = name;
    return true;
}

/* The tests need the models: without one each fails (or is a named skip
 * when making it lacked an input). */
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

static void test_make_models(void)
{
    make_model(&models[0], "dense",
               "--arch llama --dim 128 --layers 2 --heads 4 --kv-heads 2 --ff 256 --type q8_0");
    make_model(&models[1], "moe",
               "--arch qwen3moe --dim 128 --layers 2 --heads 4 --kv-heads 2 --head-dim 32 "
               "--experts 8 --experts-used 2 --expert-ff 64 --type q5_0");
}

/* ---- running requests ---- */

#define MAX_GEN 64
#define TOPK 5

typedef struct {
    int32_t *prompt;
    int64_t n_prompt;
    int32_t max_tokens;
    int32_t n;
    uint64_t seed;
    float temperature;
    /* results, per completion (n <= 2) */
    int32_t tokens[2][MAX_GEN];
    float lp[2][MAX_GEN][TOPK];
    int32_t n_tokens[2];
    vt_finish finish[2];
    vt_usage usage;
    bool done, error;
    char text[2][1024];
    size_t text_len[2];
    vt_request *r;
} job;

static vt_request_params params_of(const job *j)
{
    vt_request_params p = vt_request_params_default();
    p.prompt = j->prompt;
    p.n_prompt = j->n_prompt;
    p.max_tokens = j->max_tokens;
    p.n = j->n ? j->n : 1;
    p.temperature = j->temperature;
    p.seed = j->seed;
    p.ignore_eos = true;
    p.logprobs = true;
    p.top_logprobs = TOPK;
    return p;
}

/* Reads every queued event of j (without waiting unless wait). */
static void drain(job *j, bool wait)
{
    vt_event ev;
    int rc;
    while (!j->done && (rc = vt_request_next(j->r, &ev, wait ? 10000 : 0)) == 1) {
        if (ev.kind == VT_EV_TOKEN && ev.index >= 0 && ev.index < 2) {
            int k = j->n_tokens[ev.index];
            if (ev.token >= 0 && k < MAX_GEN) {
                j->tokens[ev.index][k] = ev.token;
                for (int t = 0; t < TOPK; t++)
                    j->lp[ev.index][k][t] = t < ev.n_top ? ev.top[t].logprob : 0;
                j->n_tokens[ev.index] = k + 1;
            }
        }
        if ((ev.kind == VT_EV_TOKEN || ev.kind == VT_EV_FINISH) && ev.index >= 0 &&
            ev.index < 2 && j->text_len[ev.index] + ev.len < sizeof j->text[0]) {
            memcpy(j->text[ev.index] + j->text_len[ev.index], ev.text, ev.len);
            j->text_len[ev.index] += ev.len;
        }
        if (ev.kind == VT_EV_FINISH && ev.index >= 0 && ev.index < 2)
            j->finish[ev.index] = ev.finish;
        if (ev.kind == VT_EV_ERROR) {
            j->error = true;
            fprintf(stderr, "  request error: %.*s\n", (int)ev.len, ev.text);
        }
        if (ev.kind == VT_EV_DONE) {
            j->usage = ev.usage;
            j->done = true;
        }
    }
    (void)rc;
}

/* Runs jobs[0..n) together in a manual-step engine; false on a failure. */
static bool run_jobs(const tmodel *t, const vt_engine_config *cfg, job *jobs, int n,
                     eng_counters *stats)
{
    vt_engine_config c = *cfg;
    c.manual_step = true;
    vt_engine *e = eng_create(t->m, t->tok, pool, &c);
    if (!e) {
        test_fail_at(__FILE__, __LINE__, "eng_create: %s", vt_last_error());
        return false;
    }
    bool ok = true;
    for (int i = 0; i < n; i++) {
        vt_request_params p = params_of(&jobs[i]);
        if (vt_submit(e, &p, &jobs[i].r)) {
            test_fail_at(__FILE__, __LINE__, "vt_submit %d: %s", i, vt_last_error());
            ok = false;
        }
    }
    bool busy = true;
    for (int steps = 0; ok && busy; steps++) {
        if (vt_engine_step(e, &busy)) {
            test_fail_at(__FILE__, __LINE__, "step: %s", vt_last_error());
            ok = false;
        }
        for (int i = 0; i < n; i++)
            if (jobs[i].r)
                drain(&jobs[i], false);
        if (steps > 100000) {
            test_fail_at(__FILE__, __LINE__, "the engine does not finish");
            ok = false;
        }
    }
    for (int i = 0; i < n; i++) {
        if (jobs[i].r && !jobs[i].done)
            drain(&jobs[i], false);
        CHECKF(jobs[i].done, "request %d never ended", i);
        CHECKF(!jobs[i].error, "request %d ended with an error", i);
    }
    if (stats)
        eng_get_counters(e, stats);
    eng_counters ec;
    eng_get_counters(e, &ec);
    kv_stats ks = ec.kv;
    CHECKF(ks.blocks_used == 0, "%lld KV blocks still used after every request ended",
           (long long)ks.blocks_used);
    vt_engine_destroy(e);
    for (int i = 0; i < n; i++) {
        vt_request_free(jobs[i].r);
        jobs[i].r = NULL;
    }
    return ok;
}

static void reset_results(job *j)
{
    memset(j->tokens, 0, sizeof j->tokens);
    memset(j->lp, 0, sizeof j->lp);
    memset(j->n_tokens, 0, sizeof j->n_tokens);
    memset(j->finish, 0, sizeof j->finish);
    memset(j->text_len, 0, sizeof j->text_len);
    j->done = j->error = false;
}

/* Compares a job run together with the same job run alone. */
static int compare(const job *a, const job *b, int idx)
{
    int bad = 0;
    for (int c = 0; c < (a->n ? a->n : 1); c++) {
        if (a->n_tokens[c] != b->n_tokens[c]) {
            test_fail_at(__FILE__, __LINE__, "request %d: %d tokens together, %d alone", idx,
                         a->n_tokens[c], b->n_tokens[c]);
            return 1;
        }
        for (int k = 0; k < a->n_tokens[c]; k++) {
            if (a->tokens[c][k] != b->tokens[c][k]) {
                test_fail_at(__FILE__, __LINE__,
                             "request %d (prompt %lld): token %d is %d together, %d alone", idx,
                             (long long)a->n_prompt, k, a->tokens[c][k], b->tokens[c][k]);
                return 1;
            }
            if (memcmp(a->lp[c][k], b->lp[c][k], sizeof a->lp[c][k]) != 0) {
                test_fail_at(__FILE__, __LINE__,
                             "request %d (prompt %lld): logprobs of token %d differ (%.9g vs "
                             "%.9g)",
                             idx, (long long)a->n_prompt, k, a->lp[c][k][0], b->lp[c][k][0]);
                bad++;
                break;
            }
        }
    }
    return bad;
}

static uint64_t rng_state = 0x1234;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* n jobs with random prompts of 1..max_prompt tokens; with shared > 0 the
 * prompts of every other job start with the same `shared` tokens. */
static job *make_jobs(const tmodel *t, int n, int max_prompt, int shared)
{
    job *jobs = calloc((size_t)n, sizeof *jobs);
    int32_t nv = (int32_t)t->m->hp.n_vocab;
    int32_t *common = malloc(sizeof *common * (size_t)(shared > 0 ? shared : 1));
    for (int i = 0; i < shared; i++)
        common[i] = 3 + (int32_t)(rnd() % (uint32_t)(nv - 3));
    for (int i = 0; i < n; i++) {
        job *j = &jobs[i];
        j->n_prompt = 1 + rnd() % (uint32_t)max_prompt;
        if (shared && i % 2 == 0 && j->n_prompt <= shared)
            j->n_prompt = shared + 1 + rnd() % 32;
        j->prompt = malloc(sizeof *j->prompt * (size_t)j->n_prompt);
        for (int64_t k = 0; k < j->n_prompt; k++)
            j->prompt[k] = shared && i % 2 == 0 && k < shared
                               ? common[k]
                               : 3 + (int32_t)(rnd() % (uint32_t)(nv - 3));
        j->max_tokens = 4 + (int32_t)(rnd() % 20);
        j->temperature = 0;
        j->seed = 42;
    }
    free(common);
    return jobs;
}

static void free_jobs(job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        free(jobs[i].prompt);
    free(jobs);
}

/* Runs the workload together under cfg and each job alone; compares. */
static void check_workload(const tmodel *t, const vt_engine_config *cfg, int n, int max_prompt,
                           int shared, eng_counters *stats)
{
    job *together = make_jobs(t, n, max_prompt, shared);
    job *alone = calloc((size_t)n, sizeof *alone);
    if (run_jobs(t, cfg, together, n, stats)) {
        vt_engine_config solo = {.kv_tokens = 4096, .no_prefix_cache = true};
        int bad = 0;
        for (int i = 0; i < n && bad < 3; i++) {
            alone[i] = together[i];
            reset_results(&alone[i]);
            if (!run_jobs(t, &solo, &alone[i], 1, NULL))
                break;
            bad += compare(&together[i], &alone[i], i);
        }
    }
    free(alone);
    free_jobs(together, n);
}

static void test_batching_changes_nothing(void)
{
    for (int mi = 0; mi < 2; mi++) {
        const tmodel *t = &models[mi];
        if (!have(t))
            continue;
        /* 32 requests, chunked prefill (64-token budget), ample pool */
        vt_engine_config cfg = {.kv_tokens = 16384, .max_batch_tokens = 64};
        eng_counters st;
        check_workload(t, &cfg, 32, 200, 0, &st);
        CHECKF(st.steps > 0, "no step ran");
    }
}

static void test_preemption_changes_nothing(void)
{
    for (int mi = 0; mi < 2; mi++) {
        const tmodel *t = &models[mi];
        if (!have(t))
            continue;
        /* a pool of 40 blocks of 16 tokens for 32 requests of up to 150 + 24
         * tokens, admitted as soon as a first chunk fits (no headroom): the
         * scheduler must preempt and recompute */
        vt_engine_config cfg = {.kv_tokens = 640, .max_batch_tokens = 128,
                                .no_admit_headroom = true};
        eng_counters st = {0};
        check_workload(t, &cfg, 32, 150, 0, &st);
        CHECKF(st.preemptions > 0, "%s: no preemption happened (pool too big for the test)",
               t->name);
    }
}

static void test_prefix_hits_change_nothing(void)
{
    for (int mi = 0; mi < 2; mi++) {
        const tmodel *t = &models[mi];
        if (!have(t))
            continue;
        vt_engine_config cfg = {.kv_tokens = 16384, .max_batch_tokens = 96};
        eng_counters st = {0};
        check_workload(t, &cfg, 24, 100, 160, &st);
        CHECKF(st.kv.prefix_hits > 0, "%s: no prefix-cache hit", t->name);
    }
}

/* A request sharing 224 of 256 prompt tokens with a finished one computes
 * only the last 32. */
static void test_prefix_224_of_256(void)
{
    const tmodel *t = &models[0];
    if (!have(t))
        return;
    vt_engine_config cfg = {.kv_tokens = 4096, .manual_step = true};
    vt_engine *e = eng_create(t->m, t->tok, pool, &cfg);
    if (!e) {
        test_fail_at(__FILE__, __LINE__, "eng_create: %s", vt_last_error());
        return;
    }
    job a = {0}, b = {0};
    int32_t pa[256], pb[256];
    for (int i = 0; i < 256; i++)
        pa[i] = pb[i] = 3 + (int32_t)(rnd() % 30000);
    for (int i = 224; i < 256; i++)
        pb[i] = 3 + (int32_t)((pa[i] + 17) % 30000);
    a.prompt = pa;
    b.prompt = pb;
    a.n_prompt = b.n_prompt = 256;
    a.max_tokens = b.max_tokens = 4;
    vt_request_params p = params_of(&a);
    bool busy = true;
    CHECK(vt_submit(e, &p, &a.r) == VT_OK);
    while (busy && !vt_engine_step(e, &busy))
        drain(&a, false);
    drain(&a, false);
    CHECK(a.done && a.usage.cached_tokens == 0);
    eng_counters before, after;
    eng_get_counters(e, &before);
    p = params_of(&b);
    CHECK(vt_submit(e, &p, &b.r) == VT_OK);
    busy = true;
    while (busy && !vt_engine_step(e, &busy))
        drain(&b, false);
    drain(&b, false);
    eng_get_counters(e, &after);
    CHECK(b.done);
    CHECK_EQ_INT(b.usage.cached_tokens, 224);
    CHECK_EQ_INT(b.usage.prompt_tokens, 256);
    CHECK_EQ_INT(after.prompt_tokens - before.prompt_tokens, 32);
    vt_request_free(a.r);
    vt_request_free(b.r);
    vt_engine_destroy(e);
}

/* n = 2 with a seed: two different streams sharing the prompt's blocks;
 * the same seed again gives the same two streams. */
static void test_n2_seeded(void)
{
    const tmodel *t = &models[0];
    if (!have(t))
        return;
    job j[2] = {0};
    int32_t prompt[100];
    for (int i = 0; i < 100; i++)
        prompt[i] = 3 + (int32_t)(rnd() % 30000);
    for (int k = 0; k < 2; k++) {
        j[k].prompt = prompt;
        j[k].n_prompt = 100;
        j[k].n = 2;
        j[k].max_tokens = 24;
        j[k].temperature = 1.5f;
        j[k].seed = 7;
    }
    vt_engine_config cfg = {.kv_tokens = 4096};
    eng_counters st;
    if (!run_jobs(t, &cfg, &j[0], 1, &st) || !run_jobs(t, &cfg, &j[1], 1, NULL))
        return;
    CHECK_EQ_INT(j[0].n_tokens[0], 24);
    CHECK_EQ_INT(j[0].n_tokens[1], 24);
    CHECKF(memcmp(j[0].tokens[0], j[0].tokens[1], sizeof j[0].tokens[0]) != 0,
           "the two completions are the same stream");
    CHECK(memcmp(j[0].tokens, j[1].tokens, sizeof j[0].tokens) == 0);
    CHECK_EQ_INT(j[0].usage.completion_tokens, 48);
    CHECK_EQ_INT(j[0].usage.prompt_tokens, 100);
    /* the prompt was computed once, not twice */
    CHECK_EQ_INT(st.prompt_tokens, 100);
    CHECK(j[0].finish[0] == VT_FINISH_LENGTH && j[0].finish[1] == VT_FINISH_LENGTH);
}

static void test_abort_frees_blocks(void)
{
    const tmodel *t = &models[0];
    if (!have(t))
        return;
    vt_engine_config cfg = {.kv_tokens = 4096, .manual_step = true, .max_batch_tokens = 32};
    vt_engine *e = eng_create(t->m, t->tok, pool, &cfg);
    if (!e) {
        test_fail_at(__FILE__, __LINE__, "eng_create: %s", vt_last_error());
        return;
    }
    job j[3] = {0};
    int32_t prompt[200];
    for (int i = 0; i < 200; i++)
        prompt[i] = 3 + (int32_t)(rnd() % 30000);
    for (int k = 0; k < 3; k++) {
        j[k].prompt = prompt + k * 10;
        j[k].n_prompt = 150;
        j[k].max_tokens = 50;
        vt_request_params p = params_of(&j[k]);
        CHECK(vt_submit(e, &p, &j[k].r) == VT_OK);
    }
    bool busy;
    for (int s = 0; s < 3; s++)
        vt_engine_step(e, &busy);
    eng_counters c;
    eng_get_counters(e, &c);
    CHECK(c.kv.blocks_used > 0);
    /* one aborted while in prefill, one before it ran, one left to finish */
    vt_request_abort(j[0].r);
    vt_request_abort(j[2].r);
    vt_request_abort(j[2].r); /* idempotent */
    busy = true;
    for (int s = 0; busy && s < 1000; s++) {
        vt_engine_step(e, &busy);
        for (int k = 0; k < 3; k++)
            drain(&j[k], false);
    }
    for (int k = 0; k < 3; k++)
        CHECKF(j[k].done, "request %d did not end", k);
    CHECK(j[0].finish[0] == VT_FINISH_ABORT);
    CHECK(j[2].finish[0] == VT_FINISH_ABORT);
    CHECK(j[1].finish[0] == VT_FINISH_LENGTH && j[1].n_tokens[0] == 50);
    eng_get_counters(e, &c);
    CHECK_EQ_INT(c.kv.blocks_used, 0);
    CHECK_EQ_INT(c.running + c.waiting, 0);
    vt_event ev;
    CHECK(vt_request_next(j[0].r, &ev, 0) == -1);
    for (int k = 0; k < 3; k++)
        vt_request_free(j[k].r);
    vt_engine_destroy(e);
}

static void test_bad_requests(void)
{
    const tmodel *t = &models[0];
    if (!have(t))
        return;
    vt_engine_config cfg = {.kv_tokens = 256, .manual_step = true};
    vt_engine *e = eng_create(t->m, t->tok, pool, &cfg);
    if (!e) {
        test_fail_at(__FILE__, __LINE__, "eng_create: %s", vt_last_error());
        return;
    }
    int32_t prompt[300] = {0};
    vt_request *r = NULL;
    vt_request_params p = vt_request_params_default();
    p.prompt = prompt;
    p.n_prompt = 0;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_INVALID && r == NULL);
    CHECK(strstr(vt_last_error(), "prompt") != NULL);
    p.n_prompt = 10;
    p.n = 0;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_RANGE && strstr(vt_last_error(), "n must"));
    p.n = 1;
    prompt[3] = 1 << 30;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_RANGE && strstr(vt_last_error(), "vocabulary"));
    prompt[3] = 5;
    p.temperature = -1;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_INVALID && strstr(vt_last_error(), "temperature"));
    p.temperature = 0;
    p.n_prompt = 300; /* the pool holds 256 tokens */
    CHECK(vt_submit(e, &p, &r) == VT_ERR_RANGE && strstr(vt_last_error(), "context"));
    p.n_prompt = 200;
    p.max_tokens = 100;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_RANGE && strstr(vt_last_error(), "max_tokens"));
    p.max_tokens = 0;
    CHECK(vt_submit(e, &p, &r) == VT_ERR_RANGE);
    p.max_tokens = -1; /* up to the longest sequence */
    p.ignore_eos = true;
    CHECK(vt_submit(e, &p, &r) == VT_OK);
    job j = {.r = r};
    bool busy = true;
    while (busy && !vt_engine_step(e, &busy))
        drain(&j, false);
    drain(&j, false);
    CHECK(j.done && j.finish[0] == VT_FINISH_LENGTH);
    CHECK_EQ_INT(j.n_tokens[0], 56); /* up to the longest sequence: 256 - 200 */
    CHECK_EQ_INT(j.usage.completion_tokens, 56);
    vt_request_free(r);
    vt_engine_destroy(e);
}

/* ---- threads ---- */

typedef struct {
    vt_engine *e;
    int id;
    int done, aborted;
    bool failed;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(c->id + 1);
    for (int k = 0; k < 6; k++) {
        int32_t prompt[64];
        int n = 8 + (int)(s % 50);
        for (int i = 0; i < n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            prompt[i] = 3 + (int32_t)(s % 30000);
        }
        vt_request_params p = vt_request_params_default();
        p.prompt = prompt;
        p.n_prompt = n;
        p.max_tokens = 12;
        p.ignore_eos = true;
        p.temperature = 0.7f;
        vt_request *r;
        if (vt_submit(c->e, &p, &r)) {
            c->failed = true;
            continue;
        }
        bool abort = (s >> 5) % 3 == 0;
        int got = 0;
        vt_event ev;
        int rc;
        while ((rc = vt_request_next(r, &ev, 20000)) == 1) {
            if (ev.kind == VT_EV_TOKEN && ++got == 3 && abort) {
                vt_request_abort(r);
                c->aborted++;
            }
            if (ev.kind == VT_EV_ERROR)
                c->failed = true;
            if (ev.kind == VT_EV_DONE)
                c->done++;
        }
        if (rc == 0)
            c->failed = true; /* timed out */
        if (k == 5 && (s & 1))
            vt_request_abort(r); /* after it ended: a no-op */
        vt_request_free(r);
    }
    return NULL;
}

static void test_threads(void)
{
    const tmodel *t = &models[0];
    if (!have(t))
        return;
    vt_engine_config cfg = {.kv_tokens = 2048, .max_batch_tokens = 64};
    vt_engine *e = eng_create(t->m, t->tok, pool, &cfg);
    if (!e) {
        test_fail_at(__FILE__, __LINE__, "eng_create: %s", vt_last_error());
        return;
    }
    client cl[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        cl[i] = (client){.e = e, .id = i};
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECKF(!cl[i].failed, "client %d saw a failure", i);
        CHECK_EQ_INT(cl[i].done, 6);
    }
    /* the engine thread may still be finishing its last step */
    eng_counters c = {0};
    for (int i = 0; i < 200; i++) {
        eng_get_counters(e, &c);
        if (c.kv.blocks_used == 0 && c.running + c.waiting == 0)
            break;
        usleep(10000);
    }
    CHECK_EQ_INT(c.kv.blocks_used, 0);
    /* a request left running when the engine goes away ends with an abort */
    int32_t prompt[8] = {5, 6, 7, 8, 9, 10, 11, 12};
    vt_request_params p = vt_request_params_default();
    p.prompt = prompt;
    p.n_prompt = 8;
    p.max_tokens = 1000;
    p.ignore_eos = true;
    vt_request *r = NULL;
    CHECK(vt_submit(e, &p, &r) == VT_OK);
    vt_engine_destroy(e);
    job j = {.r = r};
    drain(&j, true);
    CHECK(j.done && j.finish[0] == VT_FINISH_ABORT);
    vt_request_free(r);
}

int main(void)
{
    pool = kn_pool_create(2);
    /* VT_ENGINE_THREADS=1 (make test-tsan): only the tests where several
     * threads meet, which is what ThreadSanitizer is for */
    const char *only = getenv("VT_ENGINE_THREADS");
    bool all = !only || !*only || !strcmp(only, "0");
    RUN_TEST(test_make_models);
    if (all) {
        RUN_TEST(test_batching_changes_nothing);
        RUN_TEST(test_preemption_changes_nothing);
        RUN_TEST(test_prefix_hits_change_nothing);
        RUN_TEST(test_prefix_224_of_256);
        RUN_TEST(test_n2_seeded);
        RUN_TEST(test_bad_requests);
    }
    RUN_TEST(test_abort_frees_blocks);
    RUN_TEST(test_threads);
    for (int i = 0; i < 2; i++) {
        tok_destroy(models[i].tok);
        md_destroy(models[i].m);
    }
    kn_pool_destroy(pool);
    return test_finish("test_engine");
}
