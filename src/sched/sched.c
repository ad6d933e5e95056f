/*
 * sched.c - the continuous-batching scheduler (see sched.h for the model):
 * requests and their sequences, the waiting and running queues kept sorted
 * by (priority, arrival, sequence index), the three passes of a step
 * (decodes, running prefill chunks, admissions) under a token budget and a
 * sequence cap, preemption of the queue's last running sequence when kv/
 * runs out of blocks (recompute: the sequence returns to waiting with all
 * its tokens), and the update that commits a step, forks n > 1 requests
 * when their prompt completes and frees finished sequences.
 */
#include "sched/sched.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef enum { SQ_UNUSED, SQ_WAITING, SQ_RUNNING } sq_state;

typedef struct sreq sreq;

typedef struct {
    sreq *req;
    int32_t index;
    sq_state state;
    bool preempted;  /* waiting to be recomputed */
    int32_t *tokens; /* prompt, then generated */
    int64_t n_tokens, cap;
    int64_t n_generated;
    kv_seq *kv;   /* NULL unless running */
    int64_t slot; /* its entry in the step being built or run, -1 if none */
} sseq;

struct sreq {
    int64_t id;
    int32_t priority;
    int64_t arrival;
    uint64_t salt;
    int64_t n_prompt, max_tokens;
    int32_t n, n_live;
    bool forked;        /* the n-1 siblings exist */
    bool abort_pending; /* sched_abort during a step */
    sseq *seqs;         /* [n]; only seqs[0] until the fork */
};

typedef struct {
    sseq **v;
    int64_t n, cap;
} seq_list;

struct sched {
    kv_pool *kv;
    int32_t max_batch_tokens, max_seqs, admit_headroom;
    int64_t next_arrival;

    sreq **reqs; /* live requests, unordered */
    int64_t n_reqs, cap_reqs;
    seq_list waiting, running;

    /* the step: entries and copies, each with its owner (NULL: dropped by a
     * preemption while scheduling) */
    bool in_step;
    sched_entry *entries;
    sseq **entry_owner;
    int64_t n_entries;
    kv_copy *copies;
    sseq **copy_owner;
    int64_t n_copies;
    int64_t budget, n_sched, step_preempted;

    sched_finished *finished;
    int64_t n_finished, cap_finished;
    int64_t n_reported; /* finished[0..n_reported) went out with the last update */

    int64_t preemptions, steps, last_step_tokens, tokens_scheduled;
    bool dedupe_prefix;
    int64_t deferred; /* admissions put off for a prefix in flight */
};

/* ---- small containers ---- */

static bool grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    int64_t c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

/* Queue order: priority, then arrival, then sequence index. */
static bool seq_before(const sseq *a, const sseq *b)
{
    if (a->req->priority != b->req->priority)
        return a->req->priority < b->req->priority;
    if (a->req->arrival != b->req->arrival)
        return a->req->arrival < b->req->arrival;
    return a->index < b->index;
}

static bool list_insert_sorted(seq_list *l, sseq *q)
{
    if (!grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v))
        return false;
    int64_t i = l->n;
    while (i > 0 && seq_before(q, l->v[i - 1]))
        i--;
    memmove(l->v + i + 1, l->v + i, (size_t)(l->n - i) * sizeof *l->v);
    l->v[i] = q;
    l->n++;
    return true;
}

static void list_remove(seq_list *l, const sseq *q)
{
    for (int64_t i = l->n - 1; i >= 0; i--) {
        if (l->v[i] == q) {
            memmove(l->v + i, l->v + i + 1, (size_t)(l->n - i - 1) * sizeof *l->v);
            l->n--;
            return;
        }
    }
}

static bool seq_push_token(sseq *q, int32_t t)
{
    if (!grow((void **)&q->tokens, &q->cap, q->n_tokens + 1, sizeof *q->tokens))
        return false;
    q->tokens[q->n_tokens++] = t;
    return true;
}

static sreq *find_req(const sched *s, int64_t id, int64_t *at)
{
    for (int64_t i = 0; i < s->n_reqs; i++) {
        if (s->reqs[i]->id == id) {
            if (at)
                *at = i;
            return s->reqs[i];
        }
    }
    return NULL;
}

static void req_free(sreq *r)
{
    if (!r)
        return;
    for (int32_t i = 0; i < r->n; i++)
        free(r->seqs[i].tokens);
    free(r->seqs);
    free(r);
}

/* Removes a request whose sequences are all gone from the live list and frees it. */
static void req_drop(sched *s, sreq *r)
{
    int64_t at;
    if (find_req(s, r->id, &at) == r) {
        s->reqs[at] = s->reqs[s->n_reqs - 1];
        s->n_reqs--;
    }
    req_free(r);
}

/* Takes q out of its queue and frees its blocks; the request's live count drops. */
static void seq_end(sched *s, sseq *q)
{
    if (q->state == SQ_RUNNING)
        list_remove(&s->running, q);
    else if (q->state == SQ_WAITING)
        list_remove(&s->waiting, q);
    kv_seq_free(s->kv, q->kv);
    q->kv = NULL;
    q->state = SQ_UNUSED;
    q->preempted = false;
    q->req->n_live--;
}

static bool note_finished(sched *s, const sseq *q, sched_finish_reason why)
{
    if (!grow((void **)&s->finished, &s->cap_finished, s->n_finished + 1, sizeof *s->finished))
        return false;
    s->finished[s->n_finished++] = (sched_finished){
        .id = q->req->id,
        .seq = q->index,
        .reason = why,
        .n_generated = q->n_generated,
        .request_done = q->req->n_live == 0,
    };
    return true;
}

/* ---- lifecycle ---- */

sched *sched_create(kv_pool *kv, const sched_config *cfg)
{
    sched_config c = cfg ? *cfg : (sched_config){0};
    if (!kv) {
        vt_fail(VT_ERR_INVALID, "sched_create: no kv pool");
        return NULL;
    }
    if (c.max_batch_tokens == 0)
        c.max_batch_tokens = SCHED_DEFAULT_MAX_BATCH_TOKENS;
    if (c.max_seqs == 0)
        c.max_seqs = c.max_batch_tokens < SCHED_DEFAULT_MAX_SEQS ? c.max_batch_tokens
                                                                 : SCHED_DEFAULT_MAX_SEQS;
    if (c.max_batch_tokens < 1 || c.max_seqs < 1 || c.max_seqs > c.max_batch_tokens) {
        vt_fail(VT_ERR_INVALID,
                "sched_create: max_batch_tokens %" PRId32 " and max_seqs %" PRId32
                " must be >= 1, with max_seqs <= max_batch_tokens",
                c.max_batch_tokens, c.max_seqs);
        return NULL;
    }
    sched *s = calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    s->kv = kv;
    s->max_batch_tokens = c.max_batch_tokens;
    s->max_seqs = c.max_seqs;
    s->admit_headroom = c.admit_headroom > 0 ? c.admit_headroom : 0;
    s->dedupe_prefix = !c.no_prefix_dedupe;
    s->entries = calloc((size_t)c.max_seqs, sizeof *s->entries);
    s->entry_owner = calloc((size_t)c.max_seqs, sizeof *s->entry_owner);
    s->copies = calloc((size_t)c.max_seqs, sizeof *s->copies);
    s->copy_owner = calloc((size_t)c.max_seqs, sizeof *s->copy_owner);
    if (!s->entries || !s->entry_owner || !s->copies || !s->copy_owner)
        goto nomem;
    return s;
nomem:
    sched_destroy(s);
    vt_fail(VT_ERR_NOMEM, "sched_create: out of memory");
    return NULL;
}

void sched_destroy(sched *s)
{
    if (!s)
        return;
    for (int64_t i = 0; i < s->n_reqs; i++) {
        sreq *r = s->reqs[i];
        for (int32_t j = 0; j < r->n; j++)
            kv_seq_free(s->kv, r->seqs[j].kv);
        req_free(r);
    }
    free(s->reqs);
    free(s->waiting.v);
    free(s->running.v);
    free(s->entries);
    free(s->entry_owner);
    free(s->copies);
    free(s->copy_owner);
    free(s->finished);
    free(s);
}

vt_err sched_add(sched *s, const sched_request *r)
{
    if (!s || !r || !r->prompt || r->n_prompt < 1 || r->max_tokens < 1 || r->n < 0)
        return vt_fail(VT_ERR_INVALID, "sched_add: a request needs a prompt of >= 1 token, "
                                       "max_tokens >= 1 and n >= 0");
    if (find_req(s, r->id, NULL))
        return vt_fail(VT_ERR_INVALID, "sched_add: request %" PRId64 " is already live", r->id);
    if (r->max_tokens > INT64_MAX / 2 - r->n_prompt)
        return vt_fail(VT_ERR_RANGE, "sched_add: request %" PRId64 ": max_tokens %" PRId64
                       " is out of range", r->id, r->max_tokens);
    /* The last generated token is never fed back, so one sequence's life
     * needs n_prompt + max_tokens - 1 slots. */
    int64_t life = r->n_prompt + r->max_tokens - 1;
    if (kv_can_allocate(s->kv, r->n_prompt, life) == KV_NEVER)
        return vt_fail(VT_ERR_RANGE,
                       "request %" PRId64 " can never fit in the KV cache: its prompt (%" PRId64
                       " tokens) plus max_tokens (%" PRId64 ") needs %" PRId64
                       " blocks of %" PRId32 " tokens, the whole pool has %" PRId64,
                       r->id, r->n_prompt, r->max_tokens, kv_blocks_for(s->kv, life),
                       kv_block_size(s->kv), kv_n_blocks(s->kv));

    int32_t n = r->n > 1 ? r->n : 1;
    sreq *q = calloc(1, sizeof *q);
    if (!q)
        goto nomem;
    q->seqs = calloc((size_t)n, sizeof *q->seqs);
    if (!q->seqs)
        goto nomem;
    q->n = n;
    q->id = r->id;
    q->priority = r->priority;
    q->arrival = s->next_arrival;
    q->salt = r->salt;
    q->n_prompt = r->n_prompt;
    q->max_tokens = r->max_tokens;
    for (int32_t i = 0; i < n; i++)
        q->seqs[i] = (sseq){.req = q, .index = i, .state = SQ_UNUSED, .slot = -1};
    sseq *first = &q->seqs[0];
    if (!grow((void **)&first->tokens, &first->cap, r->n_prompt + 1, sizeof *first->tokens))
        goto nomem;
    memcpy(first->tokens, r->prompt, (size_t)r->n_prompt * sizeof *first->tokens);
    first->n_tokens = r->n_prompt;
    if (!grow((void **)&s->reqs, &s->cap_reqs, s->n_reqs + 1, sizeof *s->reqs))
        goto nomem;
    if (!list_insert_sorted(&s->waiting, first))
        goto nomem;
    first->state = SQ_WAITING;
    q->n_live = 1;
    s->reqs[s->n_reqs++] = q;
    s->next_arrival++;
    return VT_OK;
nomem:
    req_free(q);
    return vt_fail(VT_ERR_NOMEM, "sched_add: out of memory");
}

/* ---- building a step ---- */

/* Squeezes out the entries and copies that preemptions dropped, keeping the
 * order (and every sequence's slot) right. */
static void compact_step(sched *s)
{
    int64_t k = 0;
    for (int64_t i = 0; i < s->n_entries; i++) {
        sseq *q = s->entry_owner[i];
        if (!q)
            continue;
        s->entries[k] = s->entries[i];
        s->entry_owner[k] = q;
        q->slot = k++;
    }
    s->n_entries = k;
    int64_t c = 0;
    for (int64_t i = 0; i < s->n_copies; i++) {
        if (!s->copy_owner[i])
            continue;
        s->copies[c] = s->copies[i];
        s->copy_owner[c++] = s->copy_owner[i];
    }
    s->n_copies = c;
}

/* Adds q's entry (the caller checked n_sched < max_seqs, so after a
 * compaction there is room: live entries and their copies are at most
 * n_sched). */
static void add_entry(sched *s, sseq *q, int64_t pos, int32_t n, const kv_copy *cp, int n_cp)
{
    if (s->n_entries == s->max_seqs || s->n_copies + n_cp > s->max_seqs)
        compact_step(s);
    int64_t k = s->n_entries++;
    bool logits = pos + n == q->n_tokens;
    s->entries[k] = (sched_entry){
        .id = q->req->id,
        .seq = q->index,
        .pos = pos,
        .n_tokens = n,
        .logits = logits,
        .decode = n == 1 && logits && q->n_generated > 0,
        .n_generated = q->n_generated,
    };
    s->entry_owner[k] = q;
    q->slot = k;
    for (int i = 0; i < n_cp; i++) {
        s->copies[s->n_copies] = cp[i];
        s->copy_owner[s->n_copies++] = q;
    }
    s->budget -= n;
    s->n_sched++;
}

/* Drops q's entry and copies from the step being built. */
static void unschedule(sched *s, sseq *q)
{
    if (q->slot < 0)
        return;
    s->budget += s->entries[q->slot].n_tokens;
    s->n_sched--;
    s->entry_owner[q->slot] = NULL;
    for (int64_t i = 0; i < s->n_copies; i++)
        if (s->copy_owner[i] == q)
            s->copy_owner[i] = NULL;
    q->slot = -1;
}

/* Recompute preemption: q (running) loses its blocks and waits again with
 * all its tokens. */
static vt_err preempt(sched *s, sseq *q)
{
    unschedule(s, q);
    list_remove(&s->running, q);
    kv_seq_free(s->kv, q->kv);
    q->kv = NULL;
    q->state = SQ_WAITING;
    q->preempted = true;
    s->preemptions++;
    s->step_preempted++;
    if (!list_insert_sorted(&s->waiting, q)) {
        /* cannot requeue it (host memory): end it rather than lose track */
        q->state = SQ_UNUSED;
        q->req->n_live--;
        note_finished(s, q, SCHED_FINISH_ABORT);
        if (q->req->n_live == 0)
            req_drop(s, q->req);
        return vt_fail(VT_ERR_NOMEM, "sched: out of memory requeueing a preempted sequence");
    }
    return VT_OK;
}

/* Tokens that q (running) could append now without anyone else's blocks. */
static int64_t fitting_tokens(const sched *s, const sseq *q)
{
    kv_stats st;
    kv_get_stats(s->kv, &st);
    int64_t nb;
    kv_seq_blocks(q->kv, &nb);
    int64_t bs = kv_block_size(s->kv);
    int64_t used = kv_seq_n_computed(q->kv) + kv_seq_n_reserved(q->kv);
    return nb * bs - used + st.blocks_free * bs;
}

/* Schedules n tokens of running sequence q, preempting the running queue's
 * last sequence while blocks are short; shrink: q may take fewer tokens
 * instead of preempting itself. *self: q was preempted (nothing scheduled). */
static vt_err schedule_running(sched *s, sseq *q, int64_t n, bool shrink, bool *self)
{
    *self = false;
    int64_t bs = kv_block_size(s->kv);
    for (;;) {
        kv_copy cp[1];
        int n_cp = 0;
        int64_t pos = kv_seq_n_computed(q->kv);
        vt_err e = kv_append_slots(s->kv, q->kv, n, cp, &n_cp);
        if (e == VT_OK) {
            add_entry(s, q, pos, (int32_t)n, cp, n_cp);
            return VT_OK;
        }
        if (e != VT_ERR_NOMEM)
            return vt_fail(VT_ERR_INTERNAL, "sched: kv_append_slots failed: %s", vt_last_error());
        sseq *victim = s->running.v[s->running.n - 1];
        if (victim != q) {
            e = preempt(s, victim);
            if (e != VT_OK)
                return e;
            continue;
        }
        if (shrink) {
            /* the fit ignores a copy-on-write block; one block less covers it */
            int64_t fit = fitting_tokens(s, q);
            for (int64_t m = fit < n ? fit : n - 1; m >= 1; m -= bs) {
                pos = kv_seq_n_computed(q->kv);
                if (kv_append_slots(s->kv, q->kv, m, cp, &n_cp) == VT_OK) {
                    add_entry(s, q, pos, (int32_t)m, cp, n_cp);
                    return VT_OK;
                }
            }
        }
        *self = true;
        return preempt(s, q);
    }
}

/* Finishes the step being built: compacts entries and copies, fills block
 * tables and sample indices, totals. */
static void seal_step(sched *s, sched_step *out)
{
    compact_step(s);
    int64_t samples = 0, dec = 0, pre = 0, tokens = 0;
    for (int64_t k = 0; k < s->n_entries; k++) {
        sseq *q = s->entry_owner[k];
        sched_entry e = s->entries[k];
        e.tokens = q->tokens + e.pos;
        e.blocks = kv_seq_blocks(q->kv, &e.n_blocks);
        e.n_samples = 0;
        if (e.logits)
            e.n_samples = q->index == 0 && !q->req->forked ? q->req->n : 1;
        e.sample_index = samples;
        samples += e.n_samples;
        tokens += e.n_tokens;
        if (e.decode)
            dec += e.n_tokens;
        else
            pre += e.n_tokens;
        s->entries[k] = e;
    }
    int64_t k = s->n_entries;
    *out = (sched_step){
        .n_entries = k,
        .entries = s->entries,
        .n_copies = s->n_copies,
        .copies = s->copies,
        .n_tokens = tokens,
        .n_decode_tokens = dec,
        .n_prefill_tokens = pre,
        .n_samples = samples,
        .n_preempted = s->step_preempted,
    };
    s->last_step_tokens = tokens;
    s->tokens_scheduled += tokens;
    if (k > 0) {
        s->steps++;
        s->in_step = true;
    }
}

/* Is the first block of q's tokens that the prefix cache did not give it
 * (tokens pos .. pos + bs - 1, pos a multiple of the block size) one that a
 * running sequence with the same salt and the same tokens up to there has
 * yet to compute? Then q is better off waiting a step or two and finding it
 * cached than computing it too: a crowd of requests sharing a long prefix
 * (a system prompt) computes it once, not once per request admitted before
 * the first one is done. */
static bool prefix_in_flight(const sched *s, const sseq *q, int64_t pos)
{
    int64_t end = pos + kv_block_size(s->kv);
    if (end > q->n_tokens - 1) /* q's last block: it computes that itself anyway */
        return false;
    for (int64_t i = 0; i < s->running.n; i++) {
        const sseq *r = s->running.v[i];
        if (r->req->salt != q->req->salt || r->n_tokens < end || !r->kv ||
            kv_seq_n_computed(r->kv) >= end)
            continue;
        if (!memcmp(r->tokens, q->tokens, (size_t)end * sizeof *q->tokens))
            return true;
    }
    return false;
}

vt_err sched_schedule(sched *s, sched_step *out)
{
    if (!s || !out)
        return vt_fail(VT_ERR_INVALID, "sched_schedule: NULL argument");
    if (s->in_step)
        return vt_fail(VT_ERR_INVALID, "sched_schedule: the previous step was not updated");
    s->n_entries = s->n_copies = 0;
    s->budget = s->max_batch_tokens;
    s->n_sched = 0;
    s->step_preempted = 0;
    vt_err e = VT_OK;
    bool self;

    /* 1. decodes: every running sequence that needs one token, a generated
     * one (the last token of a prompt waits for pass 2). Preemption
     * only ever removes the running queue's tail, so the index stays right. */
    for (int64_t i = 0; i < s->running.n; i++) {
        sseq *q = s->running.v[i];
        if (q->n_tokens - kv_seq_n_computed(q->kv) != 1 || q->n_generated == 0)
            continue;
        if (s->n_sched >= s->max_seqs || s->budget < 1)
            break;
        if ((e = schedule_running(s, q, 1, false, &self)) != VT_OK)
            goto done;
    }
    /* 2. running sequences in the middle of a (chunked) prefill */
    for (int64_t i = 0; i < s->running.n; i++) {
        sseq *q = s->running.v[i];
        int64_t need = q->n_tokens - kv_seq_n_computed(q->kv);
        if (need < 1 || q->slot >= 0)
            continue;
        if (s->n_sched >= s->max_seqs || s->budget < 1)
            break;
        int64_t n = need < s->budget ? need : s->budget;
        if ((e = schedule_running(s, q, n, true, &self)) != VT_OK)
            goto done;
    }
    /* 3. admissions in queue order; the head that does not fit blocks the
     * rest. None in a step that had to preempt (as vLLM): the pool is short,
     * and the preempted would only come straight back. */
    while (s->step_preempted == 0 && s->waiting.n > 0 && s->budget >= 1 && s->n_sched < s->max_seqs &&
           s->running.n < s->max_seqs) {
        sseq *q = s->waiting.v[0];
        int64_t cached = 0;
        kv_seq *ks = kv_seq_create(s->kv, q->tokens, q->n_tokens, q->req->salt, &cached);
        if (!ks)
            break; /* host memory: try again next step */
        int64_t pos = kv_seq_n_computed(ks);
        if (s->dedupe_prefix && prefix_in_flight(s, q, pos)) {
            kv_seq_free(s->kv, ks);
            s->deferred++;
            break; /* head of line: its prefix is on the way */
        }
        int64_t need = q->n_tokens - pos;
        int64_t n = need < s->budget ? need : s->budget;
        if (s->admit_headroom && s->running.n > 0) {
            kv_stats ks_now;
            kv_get_stats(s->kv, &ks_now);
            int64_t want = kv_blocks_for(s->kv, q->n_tokens) - kv_blocks_for(s->kv, pos) +
                           s->running.n * (int64_t)s->admit_headroom;
            if (ks_now.blocks_free < want) {
                kv_seq_free(s->kv, ks);
                break; /* head of line: wait for room */
            }
        }
        kv_copy cp[1];
        int n_cp = 0;
        vt_err ea = kv_append_slots(s->kv, ks, n, cp, &n_cp);
        if (ea != VT_OK) {
            kv_seq_free(s->kv, ks);
            if (ea != VT_ERR_NOMEM)
                e = vt_fail(VT_ERR_INTERNAL, "sched: kv_append_slots failed: %s", vt_last_error());
            break;
        }
        if (!list_insert_sorted(&s->running, q)) {
            kv_seq_free(s->kv, ks);
            break;
        }
        memmove(s->waiting.v, s->waiting.v + 1, (size_t)(s->waiting.n - 1) * sizeof *s->waiting.v);
        s->waiting.n--;
        q->kv = ks;
        q->state = SQ_RUNNING;
        q->preempted = false;
        add_entry(s, q, pos, (int32_t)n, cp, n_cp);
    }
done:
    seal_step(s, out);
    if (e != VT_OK)
        return e;
    return VT_OK;
}

/* ---- after the forward pass ---- */

/* Ends q with reason why (its blocks freed) and records it. */
static bool finish_seq(sched *s, sseq *q, sched_finish_reason why)
{
    seq_end(s, q);
    return note_finished(s, q, why);
}

/* Gives the request of q (sequence 0 at the end of its prompt) its
 * siblings 1..n-1, sharing q's blocks. */
static vt_err fork_siblings(sched *s, sseq *q)
{
    sreq *r = q->req;
    vt_err e = VT_OK;
    r->forked = true;
    for (int32_t j = 1; j < r->n; j++) {
        sseq *b = &r->seqs[j];
        b->n_tokens = 0;
        b->n_generated = q->n_generated;
        b->slot = -1;
        if (!grow((void **)&b->tokens, &b->cap, q->n_tokens + 1, sizeof *b->tokens) ||
            !(b->kv = kv_fork(s->kv, q->kv)) || !list_insert_sorted(&s->running, b)) {
            kv_seq_free(s->kv, b->kv);
            b->kv = NULL;
            b->state = SQ_UNUSED;
            note_finished(s, b, SCHED_FINISH_ABORT); /* r->n_live >= 1: q lives */
            e = vt_fail(VT_ERR_NOMEM, "sched: out of memory forking request %" PRId64, r->id);
            continue;
        }
        memcpy(b->tokens, q->tokens, (size_t)q->n_tokens * sizeof *b->tokens);
        b->n_tokens = q->n_tokens;
        b->state = SQ_RUNNING;
        r->n_live++;
    }
    return e;
}

/* Records token t (and the engine's stop flag) for running sequence q. */
static vt_err take_sample(sched *s, sseq *q, int32_t t, bool stop)
{
    if (!seq_push_token(q, t)) {
        finish_seq(s, q, SCHED_FINISH_ABORT);
        return vt_fail(VT_ERR_NOMEM, "sched: out of memory recording a token");
    }
    q->n_generated++;
    if (stop)
        finish_seq(s, q, SCHED_FINISH_STOP);
    else if (q->n_generated >= q->req->max_tokens)
        finish_seq(s, q, SCHED_FINISH_LENGTH);
    return VT_OK;
}

vt_err sched_update(sched *s, const int32_t *samples, const bool *stop,
                    const sched_finished **finished, int64_t *n_finished)
{
    if (finished)
        *finished = NULL;
    if (n_finished)
        *n_finished = 0;
    if (!s)
        return vt_fail(VT_ERR_INVALID, "sched_update: NULL scheduler");
    if (!s->in_step)
        return vt_fail(VT_ERR_INVALID, "sched_update: no step is outstanding");
    /* keep what ended since the last update (a failure while scheduling) */
    if (s->n_reported > 0) {
        memmove(s->finished, s->finished + s->n_reported,
                (size_t)(s->n_finished - s->n_reported) * sizeof *s->finished);
        s->n_finished -= s->n_reported;
    }
    s->n_reported = 0;
    vt_err err = VT_OK;
    int64_t n_samples = 0;
    for (int64_t k = 0; k < s->n_entries; k++) {
        s->entry_owner[k]->slot = -1;
        n_samples += s->entries[k].n_samples;
    }
    if (n_samples > 0 && !samples)
        return vt_fail(VT_ERR_INVALID, "sched_update: the step drew %" PRId64
                       " samples but none were given", n_samples);
    s->in_step = false;

    for (int64_t k = 0; k < s->n_entries; k++) {
        const sched_entry *e = &s->entries[k];
        sseq *q = s->entry_owner[k];
        sreq *r = q->req;
        if (r->abort_pending)
            continue;
        vt_err ec = kv_commit(s->kv, q->kv, q->tokens + e->pos, e->n_tokens);
        if (ec != VT_OK) {
            finish_seq(s, q, SCHED_FINISH_ABORT);
            err = vt_fail(VT_ERR_INTERNAL, "sched: kv_commit failed: %s", vt_last_error());
            continue;
        }
        if (!e->logits)
            continue;
        const int32_t *t = samples + e->sample_index;
        const bool *st = stop ? stop + e->sample_index : NULL;
        if (e->n_samples > 1) {
            vt_err ef = fork_siblings(s, q);
            if (ef != VT_OK)
                err = ef;
            for (int32_t j = 0; j < e->n_samples; j++) {
                sseq *b = &r->seqs[j];
                if (b->state != SQ_RUNNING)
                    continue;
                ef = take_sample(s, b, t[j], st && st[j]);
                if (ef != VT_OK)
                    err = ef;
            }
        } else {
            vt_err et = take_sample(s, q, t[0], st && st[0]);
            if (et != VT_OK)
                err = et;
        }
    }
    /* aborts that came during the step, and requests with nothing left */
    for (int64_t i = 0; i < s->n_reqs;) {
        sreq *r = s->reqs[i];
        if (r->abort_pending) {
            for (int32_t j = 0; j < r->n; j++)
                if (r->seqs[j].state != SQ_UNUSED)
                    finish_seq(s, &r->seqs[j], SCHED_FINISH_ABORT);
        }
        if (r->n_live == 0) {
            s->reqs[i] = s->reqs[--s->n_reqs];
            req_free(r);
            continue;
        }
        i++;
    }
    s->n_reported = s->n_finished;
    if (finished)
        *finished = s->finished;
    if (n_finished)
        *n_finished = s->n_finished;
    return err;
}

vt_err sched_abort(sched *s, int64_t id)
{
    sreq *r = s ? find_req(s, id, NULL) : NULL;
    if (!r || r->abort_pending)
        return r ? VT_OK : vt_fail(VT_ERR_NOT_FOUND, "sched_abort: no live request %" PRId64, id);
    if (s->in_step) {
        r->abort_pending = true;
        return VT_OK;
    }
    for (int32_t j = 0; j < r->n; j++)
        if (r->seqs[j].state != SQ_UNUSED)
            seq_end(s, &r->seqs[j]);
    req_drop(s, r);
    return VT_OK;
}

/* ---- queries ---- */

static const sseq *find_seq(const sched *s, int64_t id, int32_t seq)
{
    const sreq *r = find_req(s, id, NULL);
    if (!r || seq < 0 || seq >= r->n || r->seqs[seq].state == SQ_UNUSED)
        return NULL;
    return &r->seqs[seq];
}

sched_status sched_get_status(const sched *s, int64_t id, int32_t seq)
{
    const sseq *q = s ? find_seq(s, id, seq) : NULL;
    if (!q)
        return SCHED_NONE;
    if (q->state == SQ_RUNNING)
        return SCHED_RUNNING;
    return q->preempted ? SCHED_PREEMPTED : SCHED_WAITING;
}

const int32_t *sched_seq_tokens(const sched *s, int64_t id, int32_t seq, int64_t *n_prompt,
                                int64_t *n)
{
    const sseq *q = s ? find_seq(s, id, seq) : NULL;
    if (!q)
        return NULL;
    if (n_prompt)
        *n_prompt = q->req->n_prompt;
    if (n)
        *n = q->n_tokens;
    return q->tokens;
}

void sched_get_stats(const sched *s, sched_stats *out)
{
    *out = (sched_stats){0};
    if (!s)
        return;
    out->requests = s->n_reqs;
    out->running = s->running.n;
    out->waiting = s->waiting.n;
    for (int64_t i = 0; i < s->waiting.n; i++)
        out->preempted += s->waiting.v[i]->preempted;
    out->preemptions = s->preemptions;
    out->steps = s->steps;
    out->last_step_tokens = s->last_step_tokens;
    out->tokens_scheduled = s->tokens_scheduled;
    out->prefix_deferred = s->deferred;
}
