/*
 * kvsim.c - the KV-efficiency workload simulation (see kvsim.h): drawing a
 * seeded mixed-length workload, running it on sched/ + kv/ with per-step
 * accounting of allocated-but-unused KV slots and concurrency, on a
 * per-slot cache (llama.cpp's `-np N -c C`) under the same step model, and
 * through the real engine with its own counters.
 */
#include "kvsim.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv/kv.h"
#include "sched/sched.h"
#include "util/util.h"

/* ---- the workload ---- */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static double rng_unit(uint64_t *s) /* (0, 1) */
{
    return ((double)(rng_next(s) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(uint64_t *s)
{
    double u = rng_unit(s), v = rng_unit(s);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static int32_t lognormal_len(uint64_t *s, double median, double sigma, int32_t lo, int32_t hi)
{
    double x = exp(log(median) + sigma * rng_normal(s));
    if (x < lo)
        return lo;
    if (x > hi)
        return hi;
    return (int32_t)llround(x);
}

int64_t kvs_need(const kvs_req *r)
{
    return (int64_t)r->n_prompt + r->n_output - 1;
}

vt_err kvs_workload_make(const kvs_workload_cfg *c, kvs_workload *out)
{
    memset(out, 0, sizeof *out);
    if (!c || c->n_requests < 1 || c->prompt_min < 1 || c->prompt_max < c->prompt_min ||
        c->output_min < 1 || c->output_max < c->output_min || !(c->prompt_median > 0) ||
        !(c->output_median > 0) || c->prompt_sigma < 0 || c->output_sigma < 0 ||
        !(c->rate > 0) || c->vocab < 4)
        return vt_fail(VT_ERR_INVALID, "kvs_workload_make: bad workload config");
    out->cfg = *c;
    out->reqs = calloc((size_t)c->n_requests, sizeof *out->reqs);
    if (!out->reqs)
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    out->n = c->n_requests;
    uint64_t s = c->seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
    double t = 0;
    for (int32_t i = 0; i < c->n_requests; i++) {
        kvs_req *r = &out->reqs[i];
        t += -log(rng_unit(&s)) / c->rate;
        r->arrival = (int64_t)t;
        r->n_prompt = lognormal_len(&s, c->prompt_median, c->prompt_sigma, c->prompt_min,
                                    c->prompt_max);
        r->n_output = lognormal_len(&s, c->output_median, c->output_sigma, c->output_min,
                                    c->output_max);
        r->prompt = malloc(sizeof *r->prompt * (size_t)r->n_prompt);
        if (!r->prompt) {
            kvs_workload_free(out);
            return vt_fail(VT_ERR_NOMEM, "out of memory");
        }
        for (int32_t k = 0; k < r->n_prompt; k++)
            r->prompt[k] = 3 + (int32_t)(rng_next(&s) % (uint64_t)(c->vocab - 3));
    }
    return VT_OK;
}

void kvs_workload_free(kvs_workload *w)
{
    if (!w)
        return;
    for (int32_t i = 0; i < w->n; i++)
        free(w->reqs[i].prompt);
    free(w->reqs);
    memset(w, 0, sizeof *w);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int64_t kvs_quantile(const kvs_workload *w, int what, double q)
{
    if (!w || w->n < 1)
        return 0;
    int64_t *v = malloc(sizeof *v * (size_t)w->n);
    if (!v)
        return -1;
    for (int32_t i = 0; i < w->n; i++)
        v[i] = what == 0 ? w->reqs[i].n_prompt
               : what == 1 ? w->reqs[i].n_output
                           : kvs_need(&w->reqs[i]);
    qsort(v, (size_t)w->n, sizeof *v, cmp_i64);
    int64_t k = (int64_t)ceil(q * w->n) - 1;
    if (k < 0)
        k = 0;
    if (k >= w->n)
        k = w->n - 1;
    int64_t r = v[k];
    free(v);
    return r;
}

int32_t kvs_count_longer(const kvs_workload *w, int64_t n)
{
    int32_t c = 0;
    for (int32_t i = 0; i < w->n; i++)
        c += kvs_need(&w->reqs[i]) > n;
    return c;
}

/* ---- traces ---- */

void kvs_trace_push(void *ctx, const kvs_point *p)
{
    kvs_trace *t = ctx;
    if (t->oom)
        return;
    if (t->n == t->cap) {
        int64_t c = t->cap ? t->cap * 2 : 1024;
        kvs_point *v = realloc(t->v, sizeof *v * (size_t)c);
        if (!v) {
            t->oom = true;
            return;
        }
        t->v = v;
        t->cap = c;
    }
    t->v[t->n++] = *p;
}

void kvs_trace_free(kvs_trace *t)
{
    if (!t)
        return;
    free(t->v);
    memset(t, 0, sizeof *t);
}

int64_t kvs_trace_diff(const kvs_trace *a, const kvs_trace *b)
{
    int64_t n = a->n < b->n ? a->n : b->n;
    for (int64_t i = 0; i < n; i++) {
        const kvs_point *x = &a->v[i], *y = &b->v[i];
        if (x->running != y->running || x->waiting != y->waiting ||
            x->blocks_used != y->blocks_used || x->preemptions != y->preemptions)
            return i;
    }
    return a->n == b->n ? -1 : n;
}

/* ---- per-step metrics ---- */

typedef struct {
    kvs_result *r;
    double unused_sum, util_sum, run_sum, run_loaded_sum, occ_sum;
    int64_t alloc_steps, occ_steps;
    double unused_slots, alloc_slots;
} acc;

/* One step: allocated slots, stored tokens, running and waiting sequences. */
static void acc_step(acc *a, int64_t allocated, int64_t stored, int64_t running, int64_t waiting)
{
    kvs_result *r = a->r;
    r->steps++;
    if (allocated > 0) {
        double u = (double)(allocated - stored) / (double)allocated;
        a->unused_sum += u;
        a->alloc_steps++;
        if (u > r->unused_max)
            r->unused_max = u;
        if (waiting > 0 && u > r->unused_max_loaded)
            r->unused_max_loaded = u;
        a->unused_slots += (double)(allocated - stored);
        a->alloc_slots += (double)allocated;
    }
    a->util_sum += (double)stored / (double)r->pool_slots;
    a->run_sum += (double)running;
    if (waiting > 0) {
        a->run_loaded_sum += (double)running;
        r->loaded_steps++;
    }
    if (running > r->running_peak)
        r->running_peak = running;
}

static void acc_finish(acc *a)
{
    kvs_result *r = a->r;
    r->unused_mean = a->alloc_steps ? a->unused_sum / (double)a->alloc_steps : 0;
    r->unused_agg = a->alloc_slots > 0 ? a->unused_slots / a->alloc_slots : 0;
    r->unused_occupied = a->occ_steps ? a->occ_sum / (double)a->occ_steps : 0;
    r->util_mean = r->steps ? a->util_sum / (double)r->steps : 0;
    r->running_mean = r->steps ? a->run_sum / (double)r->steps : 0;
    r->running_mean_loaded = r->loaded_steps ? a->run_loaded_sum / (double)r->loaded_steps : 0;
}

/* The token a sequence "samples": any id works (kv/ only hashes it). */
static int32_t fake_token(int64_t id, int64_t n_generated, int32_t vocab)
{
    uint64_t x = (uint64_t)id * 0x9e3779b97f4a7c15ull ^ (uint64_t)n_generated * 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    return 3 + (int32_t)(x % (uint64_t)(vocab - 3));
}

/* The step after which no request can ever arrive or run: a stall guard. */
static int64_t step_limit(const kvs_workload *w)
{
    int64_t tokens = 0;
    for (int32_t i = 0; i < w->n; i++)
        tokens += kvs_need(&w->reqs[i]) + 1;
    return w->reqs[w->n - 1].arrival + 64 * tokens + 1000;
}

kvs_workload_cfg kvs_mixed(uint64_t seed, int32_t n_requests)
{
    return (kvs_workload_cfg){.seed = seed,
                              .n_requests = n_requests,
                              .prompt_median = 300,
                              .prompt_sigma = 1.0,
                              .prompt_min = 20,
                              .prompt_max = 4000,
                              .output_median = 120,
                              .output_sigma = 0.9,
                              .output_min = 10,
                              .output_max = 1000,
                              .rate = 1.0,
                              .vocab = 32000};
}

/* ---- vitamin: sched/ over kv/ ---- */

vt_err kvs_run_paged(const kvs_workload *w, const kvs_paged_cfg *c, kvs_trace_fn fn, void *ctx,
                     kvs_result *out)
{
    memset(out, 0, sizeof *out);
    int32_t bs = c->block_size ? c->block_size : KV_DEFAULT_BLOCK_SIZE;
    kv_config kc = {.n_blocks = (c->pool_tokens + bs - 1) / bs,
                    .block_size = bs,
                    .prefix_caching = !c->no_prefix_cache,
                    .salt = 0x5eed};
    sched_config sc = {.max_batch_tokens = c->max_batch_tokens,
                       .max_seqs = c->max_seqs,
                       .admit_headroom = c->no_admit_headroom ? 0 : 1};
    kv_pool *kv = kv_pool_create(&kc);
    sched *s = kv ? sched_create(kv, &sc) : NULL;
    int64_t n = w->n;
    int64_t *computed = calloc((size_t)n, sizeof *computed); /* tokens in its blocks */
    int64_t *high = calloc((size_t)n, sizeof *high);         /* positions ever computed */
    int64_t *gen = calloc((size_t)n, sizeof *gen);
    int64_t *run_at = malloc(sizeof *run_at * (size_t)n); /* index in run[], -1 if not running */
    int64_t *run = malloc(sizeof *run * (size_t)n);
    int32_t *samples = NULL;
    int64_t n_run = 0, cap_samples = 0;
    vt_err err = VT_OK;
    if (!s || !computed || !high || !gen || !run_at || !run) {
        err = s ? vt_fail(VT_ERR_NOMEM, "out of memory") : VT_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < n; i++)
        run_at[i] = -1;
    out->pool_slots = kc.n_blocks * bs;
    acc a = {.r = out};
    double t0 = vt_now();
    int64_t next = 0, ended = 0, limit = step_limit(w);
    for (int64_t step = 0; ended < n; step++) {
        if (step > limit) {
            err = vt_fail(VT_ERR_INTERNAL, "kvs_run_paged: stalled at step %" PRId64
                          " (%" PRId64 " of %" PRId64 " requests ended)", step, ended, n);
            goto done;
        }
        for (; next < n && w->reqs[next].arrival <= step; next++) {
            const kvs_req *q = &w->reqs[next];
            sched_request r = {.id = next, .prompt = q->prompt, .n_prompt = q->n_prompt,
                               .max_tokens = q->n_output};
            vt_err e = sched_add(s, &r);
            if (e == VT_ERR_RANGE) {
                out->failed++;
                ended++;
            } else if (e) {
                err = e;
                goto done;
            }
        }
        sched_step st;
        if ((err = sched_schedule(s, &st)))
            goto done;
        if (st.n_preempted > 0) {
            for (int64_t k = 0; k < n_run;) {
                int64_t id = run[k];
                if (sched_get_status(s, id, 0) == SCHED_RUNNING) {
                    k++;
                    continue;
                }
                computed[id] = 0;
                run_at[id] = -1;
                run[k] = run[--n_run];
                run_at[run[k]] = k < n_run ? k : -1;
            }
        }
        if (st.n_entries > 0) {
            if (st.n_samples > cap_samples) {
                int32_t *v = realloc(samples, sizeof *v * (size_t)st.n_samples);
                if (!v) {
                    err = vt_fail(VT_ERR_NOMEM, "out of memory");
                    goto done;
                }
                samples = v;
                cap_samples = st.n_samples;
            }
            for (int64_t k = 0; k < st.n_entries; k++) {
                const sched_entry *e = &st.entries[k];
                int64_t id = e->id, end = e->pos + e->n_tokens;
                if (e->n_samples > 0)
                    samples[e->sample_index] = fake_token(id, e->n_generated, w->cfg.vocab);
                out->tokens_computed += e->n_tokens;
                if (high[id] > e->pos)
                    out->tokens_recomputed += (end < high[id] ? end : high[id]) - e->pos;
                if (end > high[id])
                    high[id] = end;
                computed[id] = end;
                if (run_at[id] < 0) {
                    run_at[id] = n_run;
                    run[n_run++] = id;
                }
            }
            const sched_finished *fin = NULL;
            int64_t n_fin = 0;
            if ((err = sched_update(s, samples, NULL, &fin, &n_fin)))
                goto done;
            for (int64_t k = 0; k < n_fin; k++) {
                int64_t id = fin[k].id;
                gen[id] = fin[k].n_generated;
                if (fin[k].reason == SCHED_FINISH_LENGTH && gen[id] == w->reqs[id].n_output)
                    out->completed++;
                else
                    out->failed++;
                ended++;
                computed[id] = 0;
                int64_t at = run_at[id];
                if (at >= 0) {
                    run_at[id] = -1;
                    run[at] = run[--n_run];
                    if (at < n_run)
                        run_at[run[at]] = at;
                }
            }
        }
        kv_stats ks;
        sched_stats ss;
        kv_get_stats(kv, &ks);
        sched_get_stats(s, &ss);
        int64_t stored = 0, need_blocks = 0;
        for (int64_t k = 0; k < n_run; k++) {
            stored += computed[run[k]];
            need_blocks += (computed[run[k]] + bs - 1) / bs;
        }
        if (need_blocks != ks.blocks_used || n_run != ss.running)
            out->accounting_errors++;
        acc_step(&a, ks.blocks_used * bs, stored, ss.running, ss.waiting);
        if (fn)
            fn(ctx, &(kvs_point){.step = step, .running = ss.running, .waiting = ss.waiting,
                                 .blocks_used = ks.blocks_used, .stored = stored,
                                 .preemptions = ss.preemptions});
    }
    sched_stats ss;
    sched_get_stats(s, &ss);
    out->preemptions = ss.preemptions;
    if (kv_check(kv) != VT_OK)
        err = VT_ERR_INTERNAL;
    acc_finish(&a);
    out->seconds = vt_now() - t0;
done:
    sched_destroy(s);
    kv_pool_destroy(kv);
    free(computed);
    free(high);
    free(gen);
    free(run_at);
    free(run);
    free(samples);
    return err;
}

/* ---- the per-slot cache (llama.cpp's -np N -c C) ---- */

typedef struct {
    int64_t req; /* -1: free */
    int64_t computed, generated;
    int32_t chunk; /* tokens scheduled this step, 0 if none */
} slot;

vt_err kvs_run_slots(const kvs_workload *w, int64_t pool_tokens, int32_t n_slots,
                     int32_t max_batch_tokens, kvs_result *out)
{
    memset(out, 0, sizeof *out);
    if (max_batch_tokens == 0)
        max_batch_tokens = SCHED_DEFAULT_MAX_BATCH_TOKENS;
    if (n_slots < 1 || pool_tokens < n_slots || max_batch_tokens < 1)
        return vt_fail(VT_ERR_INVALID, "kvs_run_slots: %" PRId32 " slots over %" PRId64
                       " tokens", n_slots, pool_tokens);
    int64_t size = pool_tokens / n_slots;
    int64_t n = w->n;
    slot *sl = calloc((size_t)n_slots, sizeof *sl);
    int64_t *queue = malloc(sizeof *queue * (size_t)n);
    if (!sl || !queue) {
        free(sl);
        free(queue);
        return vt_fail(VT_ERR_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < n_slots; i++)
        sl[i].req = -1;
    out->pool_slots = size * n_slots;
    out->n_slots = n_slots;
    acc a = {.r = out};
    double t0 = vt_now();
    int64_t next = 0, ended = 0, q_head = 0, q_tail = 0, limit = step_limit(w);
    vt_err err = VT_OK;
    for (int64_t step = 0; ended < n; step++) {
        if (step > limit) {
            err = vt_fail(VT_ERR_INTERNAL, "kvs_run_slots: stalled at step %" PRId64, step);
            break;
        }
        for (; next < n && w->reqs[next].arrival <= step; next++) {
            if (kvs_need(&w->reqs[next]) > size) { /* the request exceeds the slot */
                out->failed++;
                ended++;
            } else {
                queue[q_tail++] = next;
            }
        }
        int64_t budget = max_batch_tokens;
        /* decodes, then prompt chunks of running slots, then admissions */
        for (int32_t i = 0; i < n_slots; i++) {
            slot *p = &sl[i];
            p->chunk = 0;
            if (p->req < 0 || p->generated == 0 || budget < 1)
                continue;
            p->chunk = 1;
            budget--;
        }
        for (int32_t i = 0; i < n_slots && budget > 0; i++) {
            slot *p = &sl[i];
            if (p->req < 0 || p->chunk)
                continue;
            int64_t known = w->reqs[p->req].n_prompt + p->generated;
            int64_t c = known - p->computed < budget ? known - p->computed : budget;
            p->chunk = (int32_t)c;
            budget -= c;
        }
        for (int32_t i = 0; i < n_slots && budget > 0 && q_head < q_tail; i++) {
            slot *p = &sl[i];
            if (p->req >= 0)
                continue;
            *p = (slot){.req = queue[q_head++]};
            int64_t np = w->reqs[p->req].n_prompt;
            p->chunk = (int32_t)(np < budget ? np : budget);
            budget -= p->chunk;
        }
        int64_t running = 0, stored = 0;
        for (int32_t i = 0; i < n_slots; i++) {
            slot *p = &sl[i];
            if (p->req < 0)
                continue;
            const kvs_req *q = &w->reqs[p->req];
            p->computed += p->chunk;
            out->tokens_computed += p->chunk;
            if (p->chunk && p->computed == q->n_prompt + p->generated) {
                p->generated++; /* sampled from the last position's logits */
                if (p->generated == q->n_output) {
                    out->completed++;
                    ended++;
                    p->req = -1;
                    continue;
                }
            }
            running++;
            stored += p->computed;
        }
        if (running > 0) {
            a.occ_sum += (double)(running * size - stored) / (double)(running * size);
            a.occ_steps++;
        }
        acc_step(&a, out->pool_slots, stored, running, q_tail - q_head);
    }
    acc_finish(&a);
    out->seconds = vt_now() - t0;
    free(sl);
    free(queue);
    return err;
}

/* ---- the real engine ---- */

vt_err kvs_run_engine(md_model *m, tok_tokenizer *tok, kn_pool *pool, const kvs_workload *w,
                      const kvs_paged_cfg *c, kvs_trace_fn fn, void *ctx, kvs_result *out)
{
    memset(out, 0, sizeof *out);
    int32_t bs = c->block_size ? c->block_size : KV_DEFAULT_BLOCK_SIZE;
    vt_engine_config cfg = {.kv_tokens = c->pool_tokens,
                            .block_size = bs,
                            .max_batch_tokens = c->max_batch_tokens,
                            .max_seqs = c->max_seqs,
                            .no_prefix_cache = c->no_prefix_cache,
                            .no_admit_headroom = c->no_admit_headroom,
                            .manual_step = true};
    vt_engine *e = eng_create(m, tok, pool, &cfg);
    if (!e)
        return VT_ERR_INVALID;
    int64_t n = w->n;
    vt_request **rq = calloc((size_t)n, sizeof *rq);
    int64_t *ntok = calloc((size_t)n, sizeof *ntok);
    bool *fin_len = calloc((size_t)n, sizeof *fin_len);
    bool *done = calloc((size_t)n, sizeof *done);
    vt_err err = VT_OK;
    if (!rq || !ntok || !fin_len || !done) {
        err = vt_fail(VT_ERR_NOMEM, "out of memory");
        goto end;
    }
    out->pool_slots = (c->pool_tokens + bs - 1) / bs * bs;
    acc a = {.r = out};
    double t0 = vt_now();
    int64_t next = 0, ended = 0, first_live = 0, limit = step_limit(w);
    for (int64_t step = 0; ended < n; step++) {
        if (step > limit) {
            err = vt_fail(VT_ERR_INTERNAL, "kvs_run_engine: stalled at step %" PRId64, step);
            goto end;
        }
        for (; next < n && w->reqs[next].arrival <= step; next++) {
            const kvs_req *q = &w->reqs[next];
            vt_request_params p = vt_request_params_default();
            p.prompt = q->prompt;
            p.n_prompt = q->n_prompt;
            p.max_tokens = q->n_output;
            p.temperature = 0;
            p.seed = 1;
            p.ignore_eos = true;
            p.penalty_last_n = 0;
            if (vt_submit(e, &p, &rq[next]) != VT_OK) {
                out->failed++;
                done[next] = true;
                ended++;
            }
        }
        bool busy = false;
        if ((err = vt_engine_step(e, &busy)))
            goto end;
        for (int64_t i = first_live; i < next; i++) {
            if (done[i])
                continue;
            vt_event ev;
            while (!done[i] && vt_request_next(rq[i], &ev, 0) == 1) {
                if (ev.kind == VT_EV_TOKEN)
                    ntok[i]++;
                else if (ev.kind == VT_EV_FINISH)
                    fin_len[i] = ev.finish == VT_FINISH_LENGTH;
                else if (ev.kind == VT_EV_DONE) {
                    done[i] = true;
                    ended++;
                    if (fin_len[i] && ntok[i] == w->reqs[i].n_output)
                        out->completed++;
                    else
                        out->failed++;
                    vt_request_free(rq[i]);
                    rq[i] = NULL;
                }
            }
        }
        while (first_live < next && done[first_live])
            first_live++;
        eng_counters ec;
        eng_get_counters(e, &ec);
        acc_step(&a, ec.kv.blocks_used * bs, ec.kv.blocks_used * bs, ec.running, ec.waiting);
        out->preemptions = ec.preemptions;
        out->tokens_computed = ec.prompt_tokens + ec.decode_tokens;
        if (fn)
            fn(ctx, &(kvs_point){.step = step, .running = ec.running, .waiting = ec.waiting,
                                 .blocks_used = ec.kv.blocks_used, .stored = -1,
                                 .preemptions = ec.preemptions});
    }
    acc_finish(&a);
    out->unused_mean = out->unused_max = out->unused_max_loaded = out->unused_agg = -1;
    out->util_mean = -1; /* the engine does not say how many tokens are stored */
    out->seconds = vt_now() - t0;
end:
    for (int64_t i = 0; rq && i < n; i++)
        vt_request_free(rq[i]);
    vt_engine_destroy(e);
    free(rq);
    free(ntok);
    free(fin_len);
    free(done);
    return err;
}

vt_err kvs_tiny_model(const char *vitamin, const char *vocab, const char *path, md_model **m,
                      tok_tokenizer **tok)
{
    *m = NULL;
    *tok = NULL;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' gen-model --arch llama --dim 64 --layers 1 --heads 2 --kv-heads 1 --ff 128 "
             "--ctx 65536 --type q8_0 --vocab '%s' -o '%s' >/dev/null",
             vitamin, vocab, path);
    int rc = system(cmd);
    if (rc != 0)
        return vt_fail(VT_ERR_IO, "`%s` exited with status %d", cmd, rc);
    vt_err e = md_load(path, m);
    if (!e)
        e = tok_load((*m)->file, tok);
    if (e) {
        md_destroy(*m);
        *m = NULL;
    }
    return e;
}
