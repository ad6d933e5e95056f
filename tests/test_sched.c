/*
 * test_sched.c - the continuous-batching scheduler (src/sched) over the real
 * block manager (src/kv), driven by a fake engine: a shadow K/V store that
 * records which (token, position) every block slot holds, the step's
 * copy-on-write copies performed on it, and a fake "model" whose next token
 * is a hash of the whole context READ BACK from the shadow store through
 * the entry's block table (so a wrong block table, a missed copy or a wrong
 * prefix hit changes the tokens). Checked: budget and sequence cap every
 * step, decodes first, chunked prefill of a 4,000-token prompt beside 8
 * decodes (exact step counts), prefix hits (224 of 256 tokens cached ->
 * 32 computed), preemption of the latest request with exact block counts and
 * resume with prompt + generated tokens, NEVER at submit, head-of-line FCFS
 * (no starvation of a long prompt under a stream of short ones), priorities,
 * aborts in every queue, n = 2 forks sharing the prompt's blocks, and
 * randomized workloads where every request's tokens equal those it gets
 * when run alone and every block is free at the end.
 */
#include <string.h>

#include "kv/kv.h"
#include "sched/sched.h"
#include "test.h"

#define VOCAB 50000
#define MAXN 4

/* ---- the fake engine ---- */

typedef struct {
    bool used;
    int32_t *prompt;
    int64_t n_prompt, max_tokens;
    int32_t n, priority;
    int32_t *gen[MAXN];
    int64_t n_gen[MAXN], cap_gen[MAXN];
    int finish[MAXN]; /* sched_finish_reason, 0 while live */
    bool aborted, done;
    int64_t submit_step, done_step, first_run_step;
    int64_t last_step[MAXN]; /* the last step that scheduled sequence j */
} treq;

typedef struct {
    kv_pool *kv;
    sched *s;
    sched_config cfg;
    int32_t bs;
    int64_t n_blocks;
    int32_t *sh_tok, *sh_pos; /* shadow K/V: per slot */
    treq *reqs;               /* by id */
    int64_t n_reqs;
    int stop_mod;             /* a token % stop_mod == 0 is a stop (0: none) */
    int64_t step;
    sched_step st;            /* the last step */
    int64_t max_step_tokens;
    bool bad;                 /* an invariant failed (reported once) */
} sim;

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 31);
}

static int32_t token_of(uint64_t h, int32_t seq)
{
    h = mix(h, (uint64_t)seq + 7);
    return (int32_t)(1 + (h >> 20) % (VOCAB - 1));
}

/* The reference "model": next token of seq index j after ctx[0..n). */
static int32_t ref_next(const int32_t *ctx, int64_t n, int32_t j)
{
    uint64_t h = 1;
    for (int64_t p = 0; p < n; p++)
        h = mix(h, ((uint64_t)(uint32_t)ctx[p] << 32) | (uint64_t)p);
    return token_of(h, j);
}

/* What request r's sequence j generates when run alone. */
static int64_t ref_run(const treq *r, int32_t j, int stop_mod, int32_t **out)
{
    int64_t n = r->n_prompt;
    int32_t *ctx = malloc((size_t)(r->n_prompt + r->max_tokens) * sizeof *ctx);
    memcpy(ctx, r->prompt, (size_t)r->n_prompt * sizeof *ctx);
    for (int64_t g = 0; g < r->max_tokens; g++) {
        int32_t t = ref_next(ctx, n, j);
        ctx[n++] = t;
        if (stop_mod && t % stop_mod == 0)
            break;
    }
    int64_t n_gen = n - r->n_prompt;
    *out = malloc((size_t)(n_gen + 1) * sizeof **out);
    memcpy(*out, ctx + r->n_prompt, (size_t)n_gen * sizeof **out);
    free(ctx);
    return n_gen;
}

static void sim_init(sim *m, int64_t n_blocks, int32_t bs, bool prefix, int32_t budget,
                     int32_t max_seqs)
{
    memset(m, 0, sizeof *m);
    kv_config kc = {.n_blocks = n_blocks, .block_size = bs, .prefix_caching = prefix, .salt = 42};
    m->kv = kv_pool_create(&kc);
    CHECKF(m->kv != NULL, "kv_pool_create: %s", vt_last_error());
    m->cfg = (sched_config){.max_batch_tokens = budget, .max_seqs = max_seqs};
    m->s = sched_create(m->kv, &m->cfg);
    CHECKF(m->s != NULL, "sched_create: %s", vt_last_error());
    m->bs = bs;
    m->n_blocks = n_blocks;
    m->sh_tok = malloc((size_t)(n_blocks * bs) * sizeof *m->sh_tok);
    m->sh_pos = malloc((size_t)(n_blocks * bs) * sizeof *m->sh_pos);
    for (int64_t i = 0; i < n_blocks * bs; i++)
        m->sh_tok[i] = m->sh_pos[i] = -1;
    m->reqs = calloc(4096, sizeof *m->reqs);
}

static void sim_free(sim *m)
{
    sched_destroy(m->s);
    kv_pool_destroy(m->kv);
    for (int64_t i = 0; i < 4096; i++) {
        free(m->reqs[i].prompt);
        for (int j = 0; j < MAXN; j++)
            free(m->reqs[i].gen[j]);
    }
    free(m->reqs);
    free(m->sh_tok);
    free(m->sh_pos);
}

static vt_err sim_add(sim *m, int64_t id, const int32_t *prompt, int64_t n_prompt,
                      int64_t max_tokens, int32_t priority, int32_t n)
{
    sched_request rq = {.id = id, .prompt = prompt, .n_prompt = n_prompt,
                        .max_tokens = max_tokens, .priority = priority, .n = n};
    vt_err e = sched_add(m->s, &rq);
    if (e != VT_OK)
        return e;
    treq *r = &m->reqs[id];
    r->used = true;
    r->prompt = malloc((size_t)n_prompt * sizeof *prompt);
    memcpy(r->prompt, prompt, (size_t)n_prompt * sizeof *prompt);
    r->n_prompt = n_prompt;
    r->max_tokens = max_tokens;
    r->n = n > 1 ? n : 1;
    r->priority = priority;
    r->submit_step = m->step;
    r->first_run_step = -1;
    for (int j = 0; j < MAXN; j++)
        r->last_step[j] = -10;
    if (id >= m->n_reqs)
        m->n_reqs = id + 1;
    return VT_OK;
}

static void push_gen(treq *r, int32_t j, int32_t t)
{
    if (r->n_gen[j] == r->cap_gen[j]) {
        r->cap_gen[j] = r->cap_gen[j] ? 2 * r->cap_gen[j] : 16;
        r->gen[j] = realloc(r->gen[j], (size_t)r->cap_gen[j] * sizeof *r->gen[j]);
    }
    r->gen[j][r->n_gen[j]++] = t;
}

static void sim_fail(sim *m, const char *what, int64_t a, int64_t b)
{
    if (!m->bad)
        test_fail_at(__FILE__, __LINE__, "step %lld: %s (%lld, %lld)", (long long)m->step, what,
                     (long long)a, (long long)b);
    m->bad = true;
}

/* One engine step: schedule, copy, "forward" through the shadow store,
 * sample, update. Returns the number of entries (0: nothing ran). */
/* Queue order of (request, sequence): priority, then arrival (ids are
 * given in arrival order), then sequence. */
static bool key_before(const sim *m, int64_t a, int32_t ja, int64_t b, int32_t jb)
{
    if (m->reqs[a].priority != m->reqs[b].priority)
        return m->reqs[a].priority < m->reqs[b].priority;
    return a != b ? a < b : ja < jb;
}

/* Admission follows queue order: after a step, every sequence still waiting
 * comes after every sequence admitted from waiting in that step (a
 * preempted one included: it is back at its original place). */
static void check_admission_order(sim *m, const uint8_t *was_waiting)
{
    int64_t last_a = -1, first_w = -1;
    int32_t last_aj = 0, first_wj = 0;
    for (int64_t id = 0; id < m->n_reqs; id++) {
        for (int32_t j = 0; j < MAXN; j++) {
            if (!was_waiting[id * MAXN + j])
                continue;
            if (sched_get_status(m->s, id, j) == SCHED_RUNNING) {
                if (last_a < 0 || key_before(m, last_a, last_aj, id, j))
                    last_a = id, last_aj = j;
            } else if (first_w < 0 || key_before(m, id, j, first_w, first_wj)) {
                first_w = id, first_wj = j;
            }
        }
    }
    if (last_a >= 0 && first_w >= 0 && key_before(m, first_w, first_wj, last_a, last_aj))
        sim_fail(m, "admitted ahead of an earlier waiting sequence", last_a, first_w);
}

static int64_t sim_step(sim *m)
{
    sched_step *st = &m->st;
    uint8_t *was_waiting = calloc((size_t)(m->n_reqs + 1) * MAXN, 1);
    for (int64_t id = 0; id < m->n_reqs; id++) {
        if (!m->reqs[id].used || m->reqs[id].done)
            continue;
        for (int32_t j = 0; j < m->reqs[id].n; j++) {
            sched_status ss = sched_get_status(m->s, id, j);
            was_waiting[id * MAXN + j] = ss == SCHED_WAITING || ss == SCHED_PREEMPTED;
        }
    }
    vt_err e = sched_schedule(m->s, st);
    if (e != VT_OK)
        sim_fail(m, "sched_schedule failed", e, 0);
    m->step++;
    check_admission_order(m, was_waiting);
    free(was_waiting);
    if (st->n_entries == 0)
        return 0;
    int64_t budget = m->cfg.max_batch_tokens ? m->cfg.max_batch_tokens
                                             : SCHED_DEFAULT_MAX_BATCH_TOKENS;
    int64_t cap = m->cfg.max_seqs ? m->cfg.max_seqs : SCHED_DEFAULT_MAX_SEQS;
    if (st->n_tokens > budget)
        sim_fail(m, "token budget exceeded", st->n_tokens, budget);
    if (st->n_entries > cap)
        sim_fail(m, "sequence cap exceeded", st->n_entries, cap);
    if (st->n_tokens > m->max_step_tokens)
        m->max_step_tokens = st->n_tokens;
    int64_t sum = 0, samples = 0;
    bool seen_prefill = false;
    for (int64_t k = 0; k < st->n_entries; k++) {
        const sched_entry *en = &st->entries[k];
        sum += en->n_tokens;
        if (en->sample_index != samples)
            sim_fail(m, "sample_index", en->sample_index, samples);
        samples += en->n_samples;
        if (en->n_tokens < 1)
            sim_fail(m, "empty entry", en->id, en->n_tokens);
        /* a sequence that ran last step and decodes now comes before every
         * prefill chunk (a just-admitted one may decode after them: a
         * recompute whose prefix is cached but its last token) */
        treq *r = &m->reqs[en->id];
        if (en->decode && r->last_step[en->seq] == m->step - 1 && seen_prefill)
            sim_fail(m, "a decode after a prefill chunk", en->id, k);
        r->last_step[en->seq] = m->step;
        if (!en->decode)
            seen_prefill = true;
        if (m->reqs[en->id].first_run_step < 0)
            m->reqs[en->id].first_run_step = m->step;
    }
    if (sum != st->n_tokens || samples != st->n_samples)
        sim_fail(m, "step totals", sum, st->n_tokens);
    /* copy-on-write copies, then the forward pass writes K/V */
    for (int64_t c = 0; c < st->n_copies; c++) {
        int32_t src = st->copies[c].src, dst = st->copies[c].dst;
        if (src < 0 || dst < 0 || src >= m->n_blocks || dst >= m->n_blocks || src == dst) {
            sim_fail(m, "bad copy", src, dst);
            continue;
        }
        memcpy(m->sh_tok + (int64_t)dst * m->bs, m->sh_tok + (int64_t)src * m->bs,
               (size_t)m->bs * sizeof *m->sh_tok);
        memcpy(m->sh_pos + (int64_t)dst * m->bs, m->sh_pos + (int64_t)src * m->bs,
               (size_t)m->bs * sizeof *m->sh_pos);
    }
    for (int64_t k = 0; k < st->n_entries; k++) {
        const sched_entry *en = &st->entries[k];
        for (int32_t i = 0; i < en->n_tokens; i++) {
            int64_t p = en->pos + i;
            if (p / m->bs >= en->n_blocks) {
                sim_fail(m, "position past the block table", en->id, p);
                break;
            }
            int64_t slot = (int64_t)en->blocks[p / m->bs] * m->bs + p % m->bs;
            m->sh_tok[slot] = en->tokens[i];
            m->sh_pos[slot] = (int32_t)p;
        }
    }
    int32_t *tok = malloc((size_t)(st->n_samples + 1) * sizeof *tok);
    bool *stop = malloc((size_t)(st->n_samples + 1) * sizeof *stop);
    for (int64_t k = 0; k < st->n_entries; k++) {
        const sched_entry *en = &st->entries[k];
        if (!en->logits)
            continue;
        /* read the whole context back through the block table */
        uint64_t h = 1;
        int64_t end = en->pos + en->n_tokens;
        for (int64_t p = 0; p < end && p / m->bs < en->n_blocks; p++) {
            int64_t slot = (int64_t)en->blocks[p / m->bs] * m->bs + p % m->bs;
            if (m->sh_pos[slot] != p)
                sim_fail(m, "K/V slot holds another position", en->id, p);
            h = mix(h, ((uint64_t)(uint32_t)m->sh_tok[slot] << 32) | (uint64_t)p);
        }
        for (int32_t j = 0; j < en->n_samples; j++) {
            int32_t t = token_of(h, en->seq + j);
            tok[en->sample_index + j] = t;
            stop[en->sample_index + j] = m->stop_mod && t % m->stop_mod == 0;
            if (!m->reqs[en->id].aborted)
                push_gen(&m->reqs[en->id], en->seq + j, t);
        }
    }
    const sched_finished *fin;
    int64_t n_fin;
    e = sched_update(m->s, tok, stop, &fin, &n_fin);
    if (e != VT_OK)
        sim_fail(m, "sched_update failed", e, 0);
    free(tok);
    free(stop);
    for (int64_t i = 0; i < n_fin; i++) {
        treq *r = &m->reqs[fin[i].id];
        r->finish[fin[i].seq] = (int)fin[i].reason;
        if (!r->aborted && fin[i].n_generated != r->n_gen[fin[i].seq])
            sim_fail(m, "finished n_generated", fin[i].n_generated, r->n_gen[fin[i].seq]);
        if (fin[i].request_done) {
            r->done = true;
            r->done_step = m->step;
        }
    }
    if (kv_check(m->kv) != VT_OK)
        sim_fail(m, "kv_check failed", 0, 0);
    return st->n_entries;
}

static void sim_abort(sim *m, int64_t id)
{
    CHECK(sched_abort(m->s, id) == VT_OK);
    m->reqs[id].aborted = true;
    m->reqs[id].done = true;
}

static int64_t sim_run(sim *m, int64_t max_steps)
{
    int64_t steps = 0;
    sched_stats ss;
    for (;;) {
        sched_get_stats(m->s, &ss);
        if (ss.requests == 0 || steps >= max_steps || m->bad)
            break;
        sim_step(m);
        steps++;
    }
    return steps;
}

/* Every request done (or aborted) and every non-aborted sequence's tokens
 * equal to its run alone; all blocks free. */
static void sim_check_alone(sim *m)
{
    int64_t mismatches = 0, checked = 0;
    for (int64_t id = 0; id < m->n_reqs; id++) {
        treq *r = &m->reqs[id];
        if (!r->used || r->aborted)
            continue;
        CHECKF(r->done, "request %lld not done", (long long)id);
        for (int32_t j = 0; j < r->n; j++) {
            int32_t *ref;
            int64_t n = ref_run(r, j, m->stop_mod, &ref);
            checked++;
            if (n != r->n_gen[j] || memcmp(ref, r->gen[j], (size_t)n * sizeof *ref) != 0) {
                if (mismatches++ < 3)
                    test_fail_at(__FILE__, __LINE__,
                                 "request %lld seq %d: %lld tokens, alone %lld, or different",
                                 (long long)id, j, (long long)r->n_gen[j], (long long)n);
            }
            int want = (m->stop_mod && n > 0 && ref[n - 1] % m->stop_mod == 0)
                           ? SCHED_FINISH_STOP : SCHED_FINISH_LENGTH;
            CHECK_EQ_INT(r->finish[j], want);
            free(ref);
        }
    }
    CHECK(mismatches == 0);
    CHECK(checked > 0);
    kv_stats ks;
    kv_get_stats(m->kv, &ks);
    CHECK_EQ_INT(ks.blocks_used, 0);
    CHECK_EQ_INT(ks.blocks_free, ks.blocks_total);
    CHECK(kv_check(m->kv) == VT_OK);
    CHECK(!m->bad);
}

static void fill_tokens(int32_t *t, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = mix(seed, (uint64_t)i);
        t[i] = (int32_t)(1 + (seed >> 24) % (VOCAB - 1));
    }
}

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)((rng_state >> 33) % n);
}

/* ---- tests ---- */

static void test_arguments(void)
{
    kv_config kc = {.n_blocks = 8, .block_size = 4};
    kv_pool *kv = kv_pool_create(&kc);
    CHECK(sched_create(NULL, NULL) == NULL);
    CHECK(sched_create(kv, &(sched_config){.max_batch_tokens = 8, .max_seqs = 9}) == NULL);
    CHECK(sched_create(kv, &(sched_config){.max_batch_tokens = -1}) == NULL);
    sched *s = sched_create(kv, NULL);
    CHECK(s != NULL);
    int32_t p[4] = {1, 2, 3, 4};
    CHECK(sched_add(s, &(sched_request){.id = 1, .prompt = p, .n_prompt = 0, .max_tokens = 1}) ==
          VT_ERR_INVALID);
    CHECK(sched_add(s, &(sched_request){.id = 1, .prompt = p, .n_prompt = 4, .max_tokens = 0}) ==
          VT_ERR_INVALID);
    CHECK(sched_add(s, &(sched_request){.id = 1, .prompt = p, .n_prompt = 4, .max_tokens = 2}) ==
          VT_OK);
    CHECK(sched_add(s, &(sched_request){.id = 1, .prompt = p, .n_prompt = 4, .max_tokens = 2}) ==
          VT_ERR_INVALID);
    CHECK(sched_get_status(s, 1, 0) == SCHED_WAITING);
    CHECK(sched_get_status(s, 1, 1) == SCHED_NONE);
    CHECK(sched_get_status(s, 2, 0) == SCHED_NONE);
    const sched_finished *fin;
    int64_t nf;
    CHECK(sched_update(s, NULL, NULL, &fin, &nf) == VT_ERR_INVALID);
    sched_step st;
    CHECK(sched_schedule(s, &st) == VT_OK);
    CHECK_EQ_INT(st.n_entries, 1);
    CHECK_EQ_INT(st.entries[0].n_tokens, 4);
    CHECK(st.entries[0].logits);
    CHECK_EQ_INT(st.n_samples, 1);
    CHECK(sched_schedule(s, &st) == VT_ERR_INVALID); /* not updated */
    CHECK(sched_update(s, NULL, NULL, &fin, &nf) == VT_ERR_INVALID); /* samples missing */
    int32_t t = 5;
    CHECK(sched_update(s, &t, NULL, &fin, &nf) == VT_OK);
    CHECK_EQ_INT(nf, 0);
    int64_t np, n;
    const int32_t *toks = sched_seq_tokens(s, 1, 0, &np, &n);
    CHECK(toks != NULL && np == 4 && n == 5 && toks[4] == 5);
    CHECK(sched_abort(s, 7) == VT_ERR_NOT_FOUND);
    sched_destroy(s); /* frees the live request's blocks */
    kv_stats ks;
    kv_get_stats(kv, &ks);
    CHECK_EQ_INT(ks.blocks_used, 0);
    sched_destroy(NULL);
    kv_pool_destroy(kv);
}

/* 8 decoding requests and a 4,000-token prompt: every step serves all 8
 * decodes first and gives the prompt the rest of the budget, so its prefill
 * takes ceil(4000 / (512 - 8)) steps. */
static void test_chunked_prefill(void)
{
    sim m;
    const int32_t budget = 512, n_dec = 8, long_n = 4000;
    sim_init(&m, 2048, 16, false, budget, 256);
    int32_t p[long_n];
    for (int i = 0; i < n_dec; i++) {
        fill_tokens(p, 10, 100 + (uint64_t)i);
        CHECK(sim_add(&m, i, p, 10, 100, 0, 1) == VT_OK);
    }
    sim_step(&m); /* the 8 prompts */
    CHECK_EQ_INT(m.st.n_entries, n_dec);
    CHECK_EQ_INT(m.st.n_tokens, n_dec * 10);
    sim_step(&m); /* 8 decodes */
    CHECK_EQ_INT(m.st.n_decode_tokens, n_dec);
    fill_tokens(p, long_n, 7);
    CHECK(sim_add(&m, 100, p, long_n, 5, 0, 1) == VT_OK);
    int64_t chunk = budget - n_dec;
    int64_t want_steps = (long_n + chunk - 1) / chunk;
    int64_t done_at = -1, prefilled = 0;
    for (int64_t s = 1; s <= want_steps + 2 && done_at < 0; s++) {
        sim_step(&m);
        /* every decode, first, one token each */
        int64_t decodes = 0;
        for (int64_t k = 0; k < m.st.n_entries; k++) {
            const sched_entry *e = &m.st.entries[k];
            if (e->id < n_dec) {
                CHECK(e->decode && e->n_tokens == 1 && k < n_dec);
                decodes++;
            } else {
                CHECK_EQ_INT(e->id, 100);
                CHECK_EQ_INT(k, n_dec);
                CHECK_EQ_INT(e->pos, prefilled);
                int64_t want = long_n - prefilled < chunk ? long_n - prefilled : chunk;
                CHECK_EQ_INT(e->n_tokens, want);
                prefilled += e->n_tokens;
                CHECK(e->logits == (prefilled == long_n));
                if (e->logits)
                    done_at = s;
            }
        }
        CHECK_EQ_INT(decodes, n_dec);
        CHECK(m.st.n_tokens <= budget);
        sched_stats ss;
        sched_get_stats(m.s, &ss);
        CHECK_EQ_INT(ss.last_step_tokens, m.st.n_tokens);
        CHECK_EQ_INT(ss.running, n_dec + 1);
    }
    CHECK_EQ_INT(done_at, want_steps);
    CHECK_EQ_INT(want_steps, 8);
    sim_run(&m, 1000);
    sim_check_alone(&m);
    sim_free(&m);
}

/* Decodes are served before the chunks of a prefill that comes first in
 * queue order, and a tight budget splits the prompt around them. */
static void test_decodes_first(void)
{
    sim m;
    sim_init(&m, 256, 16, false, 16, 16);
    int32_t p[200];
    fill_tokens(p, 200, 1);
    CHECK(sim_add(&m, 0, p, 6, 50, 0, 1) == VT_OK);
    CHECK(sim_add(&m, 1, p + 6, 6, 50, 0, 1) == VT_OK);
    sim_step(&m); /* both prompts: 12 tokens */
    CHECK_EQ_INT(m.st.n_tokens, 12);
    /* higher priority: it runs ahead of them in queue order, yet its chunks
     * only get what their decodes leave */
    CHECK(sim_add(&m, 2, p + 12, 100, 3, -1, 1) == VT_OK);
    for (int s = 0; s < 10; s++) {
        sim_step(&m);
        CHECK(m.st.n_entries >= 2);
        CHECK(m.st.entries[0].decode && m.st.entries[1].decode);
        CHECK(m.st.n_tokens <= 16);
        CHECK_EQ_INT(m.st.n_entries, 3);
        if (m.st.n_entries == 3)
            CHECK_EQ_INT(m.st.entries[2].n_tokens, s < 7 ? 14 : s == 7 ? 100 - 7 * 14 : 1);
    }
    sim_run(&m, 1000);
    sim_check_alone(&m);
    sim_free(&m);
}

/* A request sharing 224 of 256 prompt tokens with a finished one computes
 * only the last 32; an identical prompt recomputes only its last block. */
static void test_prefix_hit(void)
{
    sim m;
    sim_init(&m, 64, 16, true, 512, 16);
    int32_t a[256], b[256];
    fill_tokens(a, 256, 11);
    memcpy(b, a, sizeof a);
    fill_tokens(b + 224, 32, 12);
    CHECK(sim_add(&m, 0, a, 256, 1, 0, 1) == VT_OK);
    sim_step(&m);
    CHECK_EQ_INT(m.st.n_tokens, 256);
    CHECK(m.reqs[0].done);
    kv_stats ks;
    kv_get_stats(m.kv, &ks);
    CHECK_EQ_INT(ks.blocks_used, 0);
    CHECK_EQ_INT(ks.blocks_cached, 16);
    CHECK(sim_add(&m, 1, b, 256, 4, 0, 1) == VT_OK);
    sim_step(&m);
    CHECK_EQ_INT(m.st.n_entries, 1);
    CHECK_EQ_INT(m.st.entries[0].pos, 224);
    CHECK_EQ_INT(m.st.entries[0].n_tokens, 32);
    CHECK_EQ_INT(m.st.n_tokens, 32);
    kv_get_stats(m.kv, &ks);
    CHECK_EQ_INT(ks.prefix_hits, 224);
    /* the same prompt again: all 16 blocks cached, the last is recomputed */
    CHECK(sim_add(&m, 2, a, 256, 2, 0, 1) == VT_OK);
    sim_step(&m);
    bool seen = false;
    for (int64_t k = 0; k < m.st.n_entries; k++) {
        if (m.st.entries[k].id == 2) {
            seen = true;
            CHECK_EQ_INT(m.st.entries[k].pos, 240);
            CHECK_EQ_INT(m.st.entries[k].n_tokens, 16);
        }
    }
    CHECK(seen);
    sim_run(&m, 100);
    sim_check_alone(&m);
    sim_free(&m);
}

/* Requests arriving together with a shared prefix: the first computes it,
 * the others wait for it and find it cached (prefix dedupe), instead of
 * each computing it in the same step; with no_prefix_dedupe they do not
 * wait. Outputs equal the requests' alone either way. */
static void test_prefix_in_flight(void)
{
    for (int off = 0; off < 2; off++) {
        sim m;
        sim_init(&m, 128, 16, true, 512, 16);
        if (off) { /* the same, with dedupe off */
            sched_destroy(m.s);
            m.cfg.no_prefix_dedupe = true;
            m.s = sched_create(m.kv, &m.cfg);
        }
        int32_t a[256], b[256], c[256];
        fill_tokens(a, 256, 21);
        memcpy(b, a, sizeof a);
        fill_tokens(b + 224, 32, 22);
        fill_tokens(c, 256, 23); /* shares nothing */
        CHECK(sim_add(&m, 0, a, 256, 2, 0, 1) == VT_OK);
        CHECK(sim_add(&m, 1, b, 256, 2, 0, 1) == VT_OK);
        CHECK(sim_add(&m, 2, c, 256, 2, 0, 1) == VT_OK);
        sim_step(&m);
        sched_stats ss;
        sched_get_stats(m.s, &ss);
        if (!off) {
            CHECK_EQ_INT(m.st.n_entries, 1); /* b waits for a's prefix; c behind it */
            CHECK_EQ_INT(m.st.n_tokens, 256);
            CHECK_EQ_INT(ss.prefix_deferred, 1);
            sim_step(&m);
            bool seen = false;
            for (int64_t k = 0; k < m.st.n_entries; k++)
                if (m.st.entries[k].id == 1) {
                    seen = true;
                    CHECK_EQ_INT(m.st.entries[k].pos, 224);
                    CHECK_EQ_INT(m.st.entries[k].n_tokens, 32);
                }
            CHECK(seen);
        } else {
            CHECK_EQ_INT(m.st.n_entries, 2); /* a and b both compute the prefix */
            CHECK_EQ_INT(m.st.n_tokens, 512);
            CHECK_EQ_INT(ss.prefix_deferred, 0);
        }
        sim_run(&m, 100);
        kv_stats ks;
        kv_get_stats(m.kv, &ks);
        CHECK_EQ_INT(ks.prefix_hits, off ? 0 : 224);
        sim_check_alone(&m);
        sim_free(&m);
    }
}

/* A small pool: the request that arrived last is preempted when blocks run
 * out, its blocks freed at once; it resumes with prompt + generated tokens
 * and ends with the same tokens as alone. */
static void test_preempt_resume(void)
{
    sim m;
    /* 4-token blocks, 8 blocks: each request (8 prompt + 12 new) needs 5
     * blocks over its life, both together 10 > 8 */
    sim_init(&m, 8, 4, false, 64, 8);
    int32_t pa[8], pb[8];
    fill_tokens(pa, 8, 21);
    fill_tokens(pb, 8, 22);
    CHECK(sim_add(&m, 0, pa, 8, 12, 0, 1) == VT_OK);
    CHECK(sim_add(&m, 1, pb, 8, 12, 0, 1) == VT_OK);
    int64_t preempt_step = -1;
    kv_stats ks;
    for (int s = 0; s < 40 && preempt_step < 0; s++) {
        sim_step(&m);
        if (m.st.n_preempted) {
            preempt_step = m.step;
            CHECK_EQ_INT(m.st.n_preempted, 1);
            CHECK(sched_get_status(m.s, 1, 0) == SCHED_PREEMPTED);
            CHECK(sched_get_status(m.s, 0, 0) == SCHED_RUNNING);
            /* only request 0 holds blocks: its computed + this step's token */
            CHECK_EQ_INT(m.st.n_entries, 1);
            CHECK_EQ_INT(m.st.entries[0].id, 0);
            int64_t a_slots = m.st.entries[0].pos + 1;
            kv_get_stats(m.kv, &ks);
            CHECK_EQ_INT(ks.blocks_used, (a_slots + 3) / 4);
            CHECK_EQ_INT(ks.blocks_free, 8 - (a_slots + 3) / 4);
        }
    }
    CHECK(preempt_step > 0);
    sched_stats ss;
    sched_get_stats(m.s, &ss);
    CHECK_EQ_INT(ss.preemptions, 1);
    CHECK_EQ_INT(ss.preempted, 1);
    CHECK_EQ_INT(ss.running, 1);
    CHECK_EQ_INT(ss.waiting, 1);
    /* request 1's tokens are its prompt and what it generated */
    int64_t np, n;
    const int32_t *t1 = sched_seq_tokens(m.s, 1, 0, &np, &n);
    int64_t gen_before = m.reqs[1].n_gen[0];
    CHECK(t1 && np == 8 && n == 8 + gen_before && gen_before > 0);
    CHECK(t1 && memcmp(t1 + 8, m.reqs[1].gen[0], (size_t)gen_before * sizeof *t1) == 0);
    /* a newer request waits behind it: the preempted one is back at the
     * front of the queue */
    int32_t pc[4];
    fill_tokens(pc, 4, 23);
    CHECK(sim_add(&m, 2, pc, 4, 2, 0, 1) == VT_OK);
    /* it resumes once request 0 is done, recomputing everything it knows */
    bool resumed = false;
    int64_t resume_step = -1;
    for (int s = 0; s < 40 && !m.reqs[1].done; s++) {
        bool a_done = m.reqs[0].done;
        sim_step(&m);
        for (int64_t k = 0; k < m.st.n_entries; k++) {
            const sched_entry *e = &m.st.entries[k];
            if (e->id == 1 && !resumed) {
                resumed = true;
                resume_step = m.step;
                CHECK(a_done);
                CHECK_EQ_INT(e->pos, 0);
                CHECK_EQ_INT(e->n_tokens, 8 + gen_before);
                CHECK(e->logits && !e->decode);
                CHECK_EQ_INT(e->n_generated, gen_before);
            }
        }
    }
    CHECK(resumed);
    sim_run(&m, 100);
    CHECK(m.reqs[2].done);
    CHECKF(m.reqs[2].first_run_step >= resume_step, "request 2 ran at step %lld, 1 resumed at %lld",
           (long long)m.reqs[2].first_run_step, (long long)resume_step);
    CHECK_EQ_INT(m.reqs[1].n_gen[0], 12);
    CHECK_EQ_INT(m.reqs[0].n_gen[0], 12);
    sched_get_stats(m.s, &ss);
    CHECK_EQ_INT(ss.preemptions, 1);
    sim_check_alone(&m);
    sim_free(&m);
}

/* With priorities, the lowest-priority running request is the one
 * preempted, even when it arrived first. */
static void test_preempt_priority(void)
{
    sim m;
    sim_init(&m, 8, 4, false, 64, 8);
    int32_t pa[8], pb[8];
    fill_tokens(pa, 8, 31);
    fill_tokens(pb, 8, 32);
    CHECK(sim_add(&m, 0, pa, 8, 12, 5, 1) == VT_OK); /* low priority, first */
    CHECK(sim_add(&m, 1, pb, 8, 12, 0, 1) == VT_OK);
    sim_step(&m);
    CHECK_EQ_INT(m.st.n_entries, 2);
    CHECK_EQ_INT(m.st.entries[0].id, 1); /* admitted first */
    int64_t victim = -1;
    for (int s = 0; s < 40 && victim < 0; s++) {
        sim_step(&m);
        if (m.st.n_preempted)
            victim = sched_get_status(m.s, 0, 0) == SCHED_PREEMPTED ? 0 : 1;
    }
    CHECK_EQ_INT(victim, 0);
    sim_run(&m, 200);
    CHECK(m.reqs[1].done_step < m.reqs[0].done_step);
    sim_check_alone(&m);
    sim_free(&m);
}

/* A request that can never fit is refused at submit with a clear message;
 * one that exactly fits is accepted and runs. */
static void test_never(void)
{
    sim m;
    sim_init(&m, 10, 16, true, 512, 8);
    int32_t p[200];
    fill_tokens(p, 200, 41);
    /* 100 + 62 - 1 = 161 slots > 160 */
    vt_err e = sim_add(&m, 0, p, 100, 62, 0, 1);
    CHECK(e == VT_ERR_RANGE);
    CHECKF(strstr(vt_last_error(), "can never fit") != NULL, "message: %s", vt_last_error());
    CHECKF(strstr(vt_last_error(), "11 blocks") != NULL, "message: %s", vt_last_error());
    CHECKF(strstr(vt_last_error(), "has 10") != NULL, "message: %s", vt_last_error());
    CHECK(sched_get_status(m.s, 0, 0) == SCHED_NONE);
    e = sim_add(&m, 1, p, 161, 1, 0, 1);
    CHECK(e == VT_ERR_RANGE);
    sched_stats ss;
    sched_get_stats(m.s, &ss);
    CHECK_EQ_INT(ss.requests, 0);
    CHECK_EQ_INT(ss.waiting, 0);
    /* 100 + 61 - 1 = 160: the whole pool, accepted, and it finishes */
    CHECK(sim_add(&m, 2, p, 100, 61, 0, 1) == VT_OK);
    sim_run(&m, 200);
    CHECK(m.reqs[2].done);
    CHECK_EQ_INT(m.reqs[2].n_gen[0], 61);
    sim_check_alone(&m);
    sim_free(&m);
}

/* A stream of short requests (3 per step, each 24 + 8 tokens: two blocks
 * for eight steps, so they keep ~48 of the 52 blocks busy and always fit in
 * what the last ones freed) and, at step 20, a 600-token prompt whose first
 * chunk (the ~160 tokens of budget left) needs ~10 free blocks at once; the
 * stream goes
 * on after it if more_after. Returns the steps from its submission to its
 * finish; *waited the steps to its first chunk; *jumped the entries of later
 * arrivals run before its first chunk. */
static int64_t starvation_run(bool more_after, int64_t *waited, int64_t *jumped)
{
    sim m;
    const int64_t short_prompt = 24, short_new = 8, long_n = 600;
    sim_init(&m, 52, 16, true, 256, 64);
    int32_t p[1024];
    int64_t id = 0, long_id = -1, long_submit = 0;
    *jumped = 0;
    for (int64_t s = 0; s < 400 && !m.bad; s++) {
        for (int a = 0; a < 3 && (long_id < 0 || more_after); a++, id++) {
            fill_tokens(p, short_prompt, 1000 + (uint64_t)id);
            CHECK(sim_add(&m, id, p, short_prompt, short_new, 0, 1) == VT_OK);
        }
        if (s == 20) {
            fill_tokens(p, long_n, 5);
            long_id = id++;
            long_submit = m.step;
            CHECK(sim_add(&m, long_id, p, long_n, 4, 0, 1) == VT_OK);
        }
        sim_step(&m);
        if (long_id >= 0 && m.reqs[long_id].first_run_step < 0)
            for (int64_t k = 0; k < m.st.n_entries; k++)
                if (m.st.entries[k].id > long_id)
                    (*jumped)++;
        if (long_id >= 0 && m.reqs[long_id].done)
            break;
    }
    CHECK(long_id >= 0 && m.reqs[long_id].done);
    *waited = m.reqs[long_id].first_run_step - long_submit;
    int64_t took = m.reqs[long_id].done ? m.reqs[long_id].done_step - long_submit : 1000000;
    sim_run(&m, 3000);
    sim_check_alone(&m);
    sim_free(&m);
    return took;
}

/* No starvation: FCFS head-of-line admission (a waiting head that does not
 * fit blocks every later arrival) means the later stream of short requests
 * does not delay the long prompt beyond a few steps of budget it takes from
 * it: it finishes about when it would if the stream had stopped at its
 * arrival, and within a fixed bound (two short lifetimes + its prefill). */
static void test_no_starvation(void)
{
    int64_t waited, jumped, waited0, jumped0;
    int64_t took = starvation_run(true, &waited, &jumped);
    int64_t took0 = starvation_run(false, &waited0, &jumped0);
    printf("  # long prompt under the stream: first chunk after %lld steps, done after %lld; "
           "with the stream stopped: %lld, %lld\n",
           (long long)waited, (long long)took, (long long)waited0, (long long)took0);
    CHECK_EQ_INT(jumped, 0);
    CHECKF(took <= took0 + 2, "took %lld steps, %lld without later arrivals", (long long)took,
           (long long)took0);
    /* the shorts ahead of it drain within their 8-step life; then 600 tokens
     * in chunks of >= 256 - 24 decodes */
    CHECKF(waited <= 8, "waited %lld steps", (long long)waited);
    CHECKF(took <= 8 + 3 + 2, "took %lld steps", (long long)took);
}

/* A higher-priority request is admitted first. */
static void test_priorities(void)
{
    sim m;
    sim_init(&m, 64, 16, false, 16, 8);
    int32_t p[64];
    fill_tokens(p, 64, 51);
    CHECK(sim_add(&m, 0, p, 16, 2, 3, 1) == VT_OK);
    CHECK(sim_add(&m, 1, p + 16, 16, 2, 1, 1) == VT_OK);
    CHECK(sim_add(&m, 2, p + 32, 16, 2, 1, 1) == VT_OK);
    CHECK(sim_add(&m, 3, p + 48, 16, 2, 0, 1) == VT_OK);
    int64_t order[4], n = 0;
    for (int s = 0; s < 20 && n < 4; s++) {
        sim_step(&m);
        for (int64_t k = 0; k < m.st.n_entries; k++)
            if (m.st.entries[k].pos == 0 && n < 4)
                order[n++] = m.st.entries[k].id;
    }
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_INT(order[0], 3);
    CHECK_EQ_INT(order[1], 1); /* FCFS within priority 1 */
    CHECK_EQ_INT(order[2], 2);
    CHECK_EQ_INT(order[3], 0);
    sim_run(&m, 100);
    sim_check_alone(&m);
    sim_free(&m);
}

static void check_all_free(sim *m)
{
    kv_stats ks;
    kv_get_stats(m->kv, &ks);
    CHECK_EQ_INT(ks.blocks_used, 0);
    CHECK_EQ_INT(ks.blocks_free, ks.blocks_total);
    CHECK(kv_check(m->kv) == VT_OK);
}

/* Aborts of waiting, running (prefill and decode), preempted and in-step
 * requests free everything. */
static void test_abort(void)
{
    sim m;
    sim_init(&m, 8, 4, false, 8, 8);
    int32_t p[64];
    fill_tokens(p, 64, 61);
    /* waiting */
    CHECK(sim_add(&m, 0, p, 20, 4, 0, 1) == VT_OK);
    sim_abort(&m, 0);
    CHECK(sched_get_status(m.s, 0, 0) == SCHED_NONE);
    CHECK(sched_abort(m.s, 0) == VT_ERR_NOT_FOUND);
    check_all_free(&m);
    /* running, mid prefill (20 tokens, budget 8) */
    CHECK(sim_add(&m, 1, p, 20, 4, 0, 1) == VT_OK);
    sim_step(&m);
    CHECK(sched_get_status(m.s, 1, 0) == SCHED_RUNNING);
    kv_stats ks;
    kv_get_stats(m.kv, &ks);
    CHECK_EQ_INT(ks.blocks_used, 2);
    sim_abort(&m, 1);
    check_all_free(&m);
    /* running, decoding */
    CHECK(sim_add(&m, 2, p, 4, 10, 0, 1) == VT_OK);
    sim_step(&m);
    sim_step(&m);
    CHECK(m.st.entries[0].decode);
    sim_abort(&m, 2);
    check_all_free(&m);
    /* preempted: two requests that cannot both grow */
    CHECK(sim_add(&m, 3, p, 8, 12, 0, 1) == VT_OK);
    CHECK(sim_add(&m, 4, p + 8, 8, 12, 0, 1) == VT_OK);
    for (int s = 0; s < 40 && sched_get_status(m.s, 4, 0) != SCHED_PREEMPTED; s++)
        sim_step(&m);
    CHECK(sched_get_status(m.s, 4, 0) == SCHED_PREEMPTED);
    sim_abort(&m, 4);
    sim_abort(&m, 3);
    check_all_free(&m);
    /* during a step: takes effect at the update, reported as an abort */
    CHECK(sim_add(&m, 5, p, 6, 10, 0, 1) == VT_OK);
    sched_step st;
    CHECK(sched_schedule(m.s, &st) == VT_OK);
    CHECK_EQ_INT(st.n_entries, 1);
    CHECK(sched_abort(m.s, 5) == VT_OK);
    CHECK(sched_get_status(m.s, 5, 0) == SCHED_RUNNING);
    int32_t t = 9;
    const sched_finished *fin;
    int64_t nf;
    CHECK(sched_update(m.s, &t, NULL, &fin, &nf) == VT_OK);
    CHECK_EQ_INT(nf, 1);
    CHECK(nf == 1 && fin[0].id == 5 && fin[0].reason == SCHED_FINISH_ABORT && fin[0].request_done);
    CHECK(sched_get_status(m.s, 5, 0) == SCHED_NONE);
    check_all_free(&m);
    sched_stats ss;
    sched_get_stats(m.s, &ss);
    CHECK_EQ_INT(ss.requests, 0);
    CHECK_EQ_INT(ss.running + ss.waiting, 0);
    sim_free(&m);
}

/* n = 2: one prefill, two samples of its logits, two sequences sharing the
 * prompt's blocks; the shared partial block is copied once. */
static void test_fork(void)
{
    sim m;
    sim_init(&m, 32, 16, true, 64, 8);
    int32_t p[20];
    fill_tokens(p, 20, 71);
    CHECK(sim_add(&m, 0, p, 20, 6, 0, 2) == VT_OK);
    sim_step(&m);
    CHECK_EQ_INT(m.st.n_entries, 1);
    CHECK_EQ_INT(m.st.entries[0].n_samples, 2);
    CHECK_EQ_INT(m.st.n_samples, 2);
    CHECK(sched_get_status(m.s, 0, 1) == SCHED_RUNNING);
    kv_stats ks;
    kv_get_stats(m.kv, &ks);
    CHECK_EQ_INT(ks.blocks_used, 2);
    sim_step(&m);
    CHECK_EQ_INT(m.st.n_entries, 2);
    CHECK_EQ_INT(m.st.n_copies, 1);
    CHECK(m.st.entries[0].decode && m.st.entries[1].decode);
    CHECK_EQ_INT(m.st.entries[0].blocks[0], m.st.entries[1].blocks[0]);
    CHECK(m.st.entries[0].blocks[1] != m.st.entries[1].blocks[1]);
    CHECK_EQ_INT(kv_block_refcount(m.kv, m.st.entries[0].blocks[0]), 2);
    kv_get_stats(m.kv, &ks);
    CHECK_EQ_INT(ks.blocks_used, 3);
    sim_run(&m, 100);
    CHECK(m.reqs[0].n_gen[0] == 6 && m.reqs[0].n_gen[1] == 6);
    CHECK(memcmp(m.reqs[0].gen[0], m.reqs[0].gen[1], 6 * sizeof(int32_t)) != 0);
    sim_check_alone(&m);
    sim_free(&m);
}

/* A whole workload through a small pool (preemptions, chunked prefill,
 * prefix hits, forks, stops): every sequence's tokens equal its run alone. */
static void test_workload_alone(void)
{
    sim m;
    sim_init(&m, 40, 8, true, 64, 8);
    m.stop_mod = 53;
    rng_state = 1234;
    int32_t base[3][128], p[160];
    for (int i = 0; i < 3; i++)
        fill_tokens(base[i], 128, 900 + (uint64_t)i);
    for (int64_t id = 0; id < 40; id++) {
        int64_t n = 1 + rnd(120);
        memcpy(p, base[rnd(3)], sizeof base[0]);
        if (rnd(2))
            fill_tokens(p + rnd((uint32_t)n), 32, 5000 + (uint64_t)id);
        int32_t n_par = rnd(4) == 0 ? 2 : 1;
        CHECK(sim_add(&m, id, p, n, 1 + rnd(40), 0, n_par) == VT_OK);
    }
    sim_run(&m, 5000);
    sched_stats ss;
    sched_get_stats(m.s, &ss);
    CHECKF(ss.preemptions > 0, "no preemption happened (%lld)", (long long)ss.preemptions);
    kv_stats ks;
    kv_get_stats(m.kv, &ks);
    CHECK(ks.prefix_hits > 0);
    CHECK(ks.cow_copies > 0);
    printf("  # workload: %lld steps, %lld preemptions, %lld prefix-hit tokens, %lld copies\n",
           (long long)m.step, (long long)ss.preemptions, (long long)ks.prefix_hits,
           (long long)ks.cow_copies);
    sim_check_alone(&m);
    sim_free(&m);
}

/* Admission headroom (sched_config.admit_headroom): the same saturated
 * workload with and without it; both give every request its tokens alone,
 * and the headroom preempts far less. */
static int64_t headroom_run(int32_t headroom)
{
    sim m;
    sim_init(&m, 40, 8, true, 64, 8);
    sched_destroy(m.s);
    m.cfg.admit_headroom = headroom;
    m.s = sched_create(m.kv, &m.cfg);
    rng_state = 777;
    int32_t p[160];
    for (int64_t id = 0; id < 60; id++) {
        int64_t n = 8 + rnd(100);
        fill_tokens(p, n, 7000 + (uint64_t)id);
        CHECK(sim_add(&m, id, p, n, 8 + rnd(60), 0, 1) == VT_OK);
    }
    sim_run(&m, 20000);
    sched_stats ss;
    sched_get_stats(m.s, &ss);
    sim_check_alone(&m);
    check_all_free(&m);
    printf("  # headroom %d: %lld steps, %lld preemptions\n", (int)headroom, (long long)m.step,
           (long long)ss.preemptions);
    sim_free(&m);
    return ss.preemptions;
}

static void test_admit_headroom(void)
{
    int64_t without = headroom_run(0), with = headroom_run(1);
    CHECKF(without > 0, "the workload is not saturated (no preemption without headroom)");
    CHECKF(with * 4 <= without, "headroom: %lld preemptions, without: %lld", (long long)with,
           (long long)without);
}

/* Hundreds of requests arriving over time, random lengths, priorities, n,
 * aborts in any queue, a small pool. */
static void test_random(void)
{
    for (int round = 0; round < 6; round++) {
        sim m;
        int32_t bs = round % 2 || round >= 4 ? 4 : 16;
        int64_t blocks = round >= 4 ? 40 : round % 2 ? 96 : 24;
        /* rounds 4 and 5: a cap of 2-3 sequences and many forks, so the
         * running queue outgrows the cap */
        int32_t cap = round < 4 ? 4 + 4 * round : round - 2;
        sim_init(&m, blocks, bs, round != 2, round < 4 ? 32 + 32 * round : 24, cap);
        m.stop_mod = 37 + round;
        rng_state = 77 + (uint64_t)round;
        int32_t base[128], p[200];
        fill_tokens(base, 128, 3 + (uint64_t)round);
        int64_t id = 0, aborts = 0;
        const int64_t n_req = 300;
        for (int64_t s = 0; s < 20000 && !m.bad; s++) {
            int arrivals = id < n_req ? (int)rnd(3) : 0;
            for (int a = 0; a < arrivals && id < n_req; a++, id++) {
                int64_t n = 1 + rnd(150);
                memcpy(p, base, sizeof base);
                fill_tokens(p + rnd(100), 100, 10000 + (uint64_t)id);
                int64_t max_new = 1 + rnd(40);
                int32_t n_par = rnd(round < 4 ? 5 : 2) == 0 ? 1 + (int32_t)rnd(MAXN) : 1;
                vt_err e = sim_add(&m, id, p, n, max_new, (int32_t)rnd(3), n_par);
                int64_t life = n + max_new - 1;
                if ((life + bs - 1) / bs > blocks)
                    CHECK(e == VT_ERR_RANGE);
                else
                    CHECK(e == VT_OK);
            }
            if (rnd(20) == 0 && id > 0) {
                int64_t victim = rnd((uint32_t)id);
                if (m.reqs[victim].used && !m.reqs[victim].done) {
                    sim_abort(&m, victim);
                    aborts++;
                }
            }
            sched_stats ss;
            sched_get_stats(m.s, &ss);
            if (id >= n_req && ss.requests == 0)
                break;
            sim_step(&m);
        }
        CHECK(aborts > 0);
        sched_stats ss;
        sched_get_stats(m.s, &ss);
        kv_stats ks;
        kv_get_stats(m.kv, &ks);
        printf("  # round %d: %lld requests, %lld aborted, %lld steps, %lld preemptions, "
               "%lld tokens, %lld prefix-hit tokens, %lld copies, %lld evictions\n",
               round, (long long)id, (long long)aborts, (long long)m.step,
               (long long)ss.preemptions, (long long)ss.tokens_scheduled,
               (long long)ks.prefix_hits, (long long)ks.cow_copies, (long long)ks.evictions);
        CHECK_EQ_INT(ss.requests, 0);
        CHECK(ss.preemptions > 0);
        sim_check_alone(&m);
        sim_free(&m);
    }
}

int main(void)
{
    RUN_TEST(test_arguments);
    RUN_TEST(test_chunked_prefill);
    RUN_TEST(test_decodes_first);
    RUN_TEST(test_prefix_hit);
    RUN_TEST(test_prefix_in_flight);
    RUN_TEST(test_preempt_resume);
    RUN_TEST(test_preempt_priority);
    RUN_TEST(test_never);
    RUN_TEST(test_no_starvation);
    RUN_TEST(test_priorities);
    RUN_TEST(test_abort);
    RUN_TEST(test_fork);
    RUN_TEST(test_workload_alone);
    RUN_TEST(test_admit_headroom);
    RUN_TEST(test_random);
    return test_finish("test_sched");
}
