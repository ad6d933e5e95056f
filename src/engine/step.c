/*
 * step.c - one step of the engine (engine_int.h): admit the requests
 * submitted since the last step into the scheduler, apply aborts, let the
 * scheduler pick this step's sequences and prompt chunks, perform its
 * copy-on-write copies, run one forward pass over the flattened batch of all
 * of them, draw a token for every sequence whose logits were computed (its
 * own sampler, penalties over its own tokens), detokenize, match stop
 * strings, queue the events, and report the tokens back to the scheduler,
 * which frees the blocks of every sequence that ended.
 *
 * An embedding request's tokens ask the forward pass for their final hidden
 * states instead of logits (only the positions its pooling needs, each
 * once, also across a preemption); they are summed in position order, and
 * the step that completes its prompt sends the pooled, L2-normalised vector
 * and reports a stop to the scheduler in place of a sample, which frees its
 * blocks like any finished sequence's.
 *
 * A request's scheduler id is its slot in the live table, so that an entry
 * finds its request in O(1).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "util/util.h"

/* Prompts of at least this many tokens are attended with the F32 recipe
 * (llama.cpp runs them in batches of >= 64 tokens, where ggml does). */
#define ENG_ATTN_F32_MIN 64

static void push(vt_request *r, const vt_event *ev, const char *text, size_t len)
{
    /* An event that cannot be queued (out of memory) is dropped; the DONE
     * event is retried as a bare event so that a reader never waits forever. */
    if (!eng_request_push(r, ev, text, len) && ev->kind == VT_EV_DONE)
        eng_request_push(r, ev, NULL, 0);
}

static void finish_completion(vt_request *r, int32_t i, vt_finish why, int32_t stop_index,
                              bool release)
{
    eng_completion *c = &r->c[i];
    if (c->finished)
        return;
    c->finished = true;
    r->n_live--;
    vt_event ev = {.kind = VT_EV_FINISH, .index = i, .finish = why, .stop_index = stop_index};
    const char *t = NULL;
    size_t len = 0;
    if (release) {
        /* what the detokenizer still holds (an incomplete UTF-8 sequence) */
        tok_stream_flush(c->ts, &t, &len);
    }
    push(r, &ev, t, len);
}

/* Queues DONE, takes r out of the live table and drops the engine's hold. */
static void done(vt_engine *e, vt_request *r)
{
    r->usage.total_time = vt_now() - r->t_submit;
    vt_event ev = {.kind = VT_EV_DONE, .index = -1, .usage = r->usage};
    push(r, &ev, NULL, 0);
    if (r->slot >= 0) {
        e->live[r->slot] = NULL;
        e->n_live--;
        r->slot = -1;
    }
    e->stats.requests_done++;
    eng_request_free_engine_side(r);
    eng_request_notify(r);
    eng_request_unref(r);
}

void eng_end_request(vt_engine *e, vt_request *r, vt_err err, const char *error)
{
    if (r->admitted && !r->aborted) {
        r->aborted = true;
        sched_abort(e->sc, r->slot);
    }
    if (err) {
        vt_event ev = {.kind = VT_EV_ERROR, .index = -1, .error = err};
        push(r, &ev, error, error ? strlen(error) : 0);
    }
    for (int32_t i = 0; r->c && i < r->p.n; i++) {
        if (!r->c[i].finished) {
            smp_emit out;
            smp_flush(r->c[i].smp, &out);
            if (out.len) {
                vt_event ev = {.kind = VT_EV_TOKEN, .index = i, .token = -1};
                push(r, &ev, out.text, out.len);
            }
            finish_completion(r, i, VT_FINISH_ABORT, -1, true);
        }
    }
    done(e, r);
}

static vt_err admit(vt_engine *e, vt_request *r)
{
    int32_t slot = -1;
    for (int32_t i = 0; i < e->n_slots && slot < 0; i++)
        if (!e->live[i])
            slot = i;
    if (slot < 0) {
        int32_t n = e->n_slots ? e->n_slots * 2 : 64;
        vt_request **nl = realloc(e->live, sizeof *nl * (size_t)n);
        if (!nl)
            return vt_fail(VT_ERR_NOMEM, "out of memory");
        memset(nl + e->n_slots, 0, sizeof *nl * (size_t)(n - e->n_slots));
        slot = e->n_slots;
        e->live = nl;
        e->n_slots = n;
    }
    sched_request sr = {.id = slot,
                        .prompt = r->prompt,
                        .n_prompt = r->p.n_prompt,
                        .max_tokens = r->max_tokens,
                        .priority = r->p.priority,
                        .salt = r->p.cache_salt,
                        .n = r->p.n};
    vt_err err = sched_add(e->sc, &sr);
    if (err)
        return err;
    e->live[slot] = r;
    e->n_live++;
    r->slot = slot;
    r->admitted = true;
    return VT_OK;
}

static bool grow(void **p, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    int64_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *np = realloc(*p, (size_t)n * elem);
    if (!np)
        return false;
    *p = np;
    *cap = n;
    return true;
}

/* A forward-pass failure ends every running request with the error. */
static void fail_all(vt_engine *e, vt_err err)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vt_last_error());
    for (int32_t i = 0; i < e->n_slots; i++)
        if (e->live[i]) {
            e->live[i]->aborted = true;
            sched_abort(e->sc, i);
        }
    /* close the outstanding step: everything was aborted */
    if (grow((void **)&e->samples, &e->samples_cap, e->samples_cap + 1, sizeof *e->samples))
        memset(e->samples, 0, sizeof *e->samples * (size_t)e->samples_cap);
    sched_update(e->sc, e->samples, NULL, NULL, NULL);
    for (int32_t i = 0; i < e->n_slots; i++)
        if (e->live[i])
            eng_end_request(e, e->live[i], err, msg);
}

static void publish(vt_engine *e)
{
    sched_stats ss;
    sched_get_stats(e->sc, &ss);
    e->stats.running = ss.running;
    e->stats.waiting = ss.waiting;
    e->stats.preemptions = ss.preemptions;
    e->stats.prefix_deferred = ss.prefix_deferred;
    kv_get_stats(e->kv, &e->stats.kv);
    kv_drawer_get_stats(e->drawer, &e->stats.drawer);
    pthread_mutex_lock(&e->mu);
    e->shown = e->stats;
    pthread_mutex_unlock(&e->mu);
}

/* Does position pos of embedding request r (prompt of n tokens) feed its
 * pooled vector? */
static bool embed_wants(const vt_engine *e, const vt_request *r, int64_t pos, int64_t n)
{
    if (pos < r->emb_n)
        return false; /* already counted (a recompute after a preemption) */
    switch (e->pooling) {
    case MD_POOL_LAST:
        return pos == n - 1;
    case MD_POOL_CLS:
        return pos == 0;
    default:
        return pos < n;
    }
}

/* Adds an embedding entry's hidden rows (hid: its tokens' flags, rows: its
 * first row) to its request's sum in position order; when its prompt is
 * complete, sends the vector. Returns the rows it used. */
static int64_t embed_entry(vt_engine *e, const sched_entry *ent, const bool *hid,
                           const float *rows)
{
    vt_request *r = e->live[ent->id];
    int64_t d = e->n_embd, n = r->p.n_prompt, k = 0;
    for (int32_t j = 0; j < ent->n_tokens; j++) {
        if (!hid[j])
            continue;
        const float *h = rows + k++ * d;
        for (int64_t i = 0; i < d; i++)
            r->emb[i] += h[i];
    }
    /* every position of the chunk is accounted for (pooled or not needed) */
    r->emb_n = VT_MAX(r->emb_n, ent->pos + ent->n_tokens);
    if (!ent->logits)
        return k;
    e->samples[ent->sample_index] = 0;
    e->stop[ent->sample_index] = true;
    if (r->aborted || r->c[0].finished)
        return k;
    float *v = malloc(sizeof *v * (size_t)d);
    if (!v) {
        r->failed = true;
        snprintf(r->error, sizeof r->error, "out of memory for an embedding");
        return k;
    }
    double scale = e->pooling == MD_POOL_MEAN ? 1.0 / (double)n : 1.0, ss = 0;
    for (int64_t i = 0; i < d; i++) {
        double x = r->emb[i] * scale;
        ss += x * x;
    }
    double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;
    for (int64_t i = 0; i < d; i++)
        v[i] = (float)(r->emb[i] * scale * inv);
    r->usage.time_to_first_token = vt_now() - r->t_submit;
    vt_event ev = {.kind = VT_EV_EMBEDDING, .index = 0, .embedding = v, .n_embd = (int32_t)d};
    if (!eng_request_push(r, &ev, NULL, 0)) {
        r->failed = true;
        snprintf(r->error, sizeof r->error, "out of memory for an embedding");
    }
    free(v);
    /* no FINISH event: the vector and DONE are the whole answer */
    r->c[0].finished = true;
    r->n_live--;
    return k;
}

/* Draws the token(s) of one entry whose logits were computed. */
static void sample_entry(vt_engine *e, const sched_entry *ent, const float *row)
{
    vt_request *r = e->live[ent->id];
    int64_t nh = 0;
    const int32_t *hist = sched_seq_tokens(e->sc, ent->id, ent->seq, NULL, &nh);
    for (int32_t j = 0; j < ent->n_samples; j++) {
        int64_t idx = ent->sample_index + j;
        int32_t ci = ent->n_samples > 1 ? j : ent->seq;
        eng_completion *c = &r->c[ci];
        e->samples[idx] = 0;
        e->stop[idx] = true;
        if (c->finished || r->aborted)
            continue;
        smp_logprobs lp;
        int32_t t = smp_sample(c->smp, row, e->n_vocab, hist, (size_t)nh,
                               r->p.logprobs ? &lp : NULL);
        if (t < 0) {
            r->failed = true;
            snprintf(r->error, sizeof r->error, "%s", vt_last_error());
            continue;
        }
        e->samples[idx] = t;
        e->stats.generated++;
        c->n_generated++;
        r->usage.completion_tokens++;
        if (r->usage.time_to_first_token == 0)
            r->usage.time_to_first_token = vt_now() - r->t_submit;
        const char *piece = NULL;
        size_t len = 0;
        smp_emit out = {0};
        vt_err err = tok_stream_push(c->ts, t, &piece, &len);
        if (!err)
            err = smp_accept(c->smp, t, piece, len, &out);
        if (err) {
            r->failed = true;
            snprintf(r->error, sizeof r->error, "%s", vt_last_error());
            continue;
        }
        vt_event ev = {.kind = VT_EV_TOKEN, .index = ci, .token = t};
        if (r->p.logprobs) {
            ev.logprob = lp.logprob;
            ev.n_top = lp.n_top;
            for (int32_t k = 0; k < lp.n_top; k++)
                ev.top[k] = (vt_token_logprob){lp.top[k].token, lp.top[k].logprob};
        }
        push(r, &ev, out.text, out.len);
        if (out.finish == SMP_CONTINUE) {
            e->stop[idx] = false;
            continue;
        }
        vt_finish why = out.finish == SMP_FINISH_EOS    ? VT_FINISH_EOS
                        : out.finish == SMP_FINISH_STOP ? VT_FINISH_STOP
                                                        : VT_FINISH_LENGTH;
        finish_completion(r, ci, why, out.stop_index, out.finish != SMP_FINISH_STOP);
    }
}

vt_err eng_step(vt_engine *e, bool *busy)
{
    *busy = false;
    pthread_mutex_lock(&e->mu);
    vt_request *in = e->in_head;
    e->in_head = e->in_tail = NULL;
    bool aborts = e->abort_pending;
    e->abort_pending = false;
    pthread_mutex_unlock(&e->mu);

    while (in) {
        vt_request *next = in->next_in;
        in->next_in = NULL;
        vt_err err = admit(e, in);
        if (err) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", vt_last_error());
            eng_end_request(e, in, err, msg);
        } else if (atomic_load(&in->abort_req)) {
            aborts = true;
        }
        in = next;
    }
    if (aborts)
        for (int32_t i = 0; i < e->n_slots; i++)
            if (e->live[i] && atomic_load(&e->live[i]->abort_req))
                eng_end_request(e, e->live[i], VT_OK, NULL);

    sched_step st;
    vt_err err = sched_schedule(e->sc, &st);
    if (err) {
        fail_all(e, err);
        publish(e);
        return err;
    }
    if (st.n_entries == 0) {
        /* nothing can run until something is submitted or aborted */
        publish(e);
        return VT_OK;
    }
    for (int64_t i = 0; i < st.n_copies; i++)
        md_kv_copy_block(e->kvd, st.copies[i].dst, st.copies[i].src);

    int64_t n = 0, n_logits = 0, n_hidden = 0;
    for (int64_t i = 0; i < st.n_entries; i++) {
        const sched_entry *ent = &st.entries[i];
        vt_request *r = e->live[ent->id];
        if (!r->seen) {
            r->seen = true;
            r->usage.cached_tokens = ent->pos;
        }
        e->seqs[i] = (md_seq){ent->blocks, ent->n_blocks};
        /* Each token gets the attention recipe it would get if its request
         * ran alone through llama.cpp - the prompt's tokens the F32 one when
         * the prompt fills a large batch, generated tokens the F16 one - also
         * when it is recomputed after a preemption or shares the batch with
         * others, so that batching never changes a request's numbers. */
        int64_t n_prompt = 0, n_known = 0;
        sched_seq_tokens(e->sc, ent->id, ent->seq, &n_prompt, &n_known);
        bool big_prompt = n_prompt >= ENG_ATTN_F32_MIN;
        for (int32_t j = 0; j < ent->n_tokens; j++, n++) {
            e->tokv[n] = ent->tokens[j];
            e->pos[n] = (int32_t)(ent->pos + j);
            e->seq[n] = (int32_t)i;
            e->want[n] = ent->logits && j == ent->n_tokens - 1 && !r->p.embed;
            e->attn[n] = big_prompt && ent->pos + j < n_prompt;
            e->hid[n] = r->p.embed && embed_wants(e, r, ent->pos + j, r->p.n_prompt);
            n_hidden += e->hid[n];
        }
        n_logits += ent->logits && !r->p.embed;
    }
    if (!grow((void **)&e->logits, &e->logits_cap, n_logits * e->n_vocab, sizeof *e->logits) ||
        !grow((void **)&e->samples, &e->samples_cap, st.n_samples + 1, sizeof *e->samples) ||
        !(e->stop = realloc(e->stop, sizeof *e->stop * (size_t)e->samples_cap)) ||
        !grow((void **)&e->hidden, &e->hidden_cap, n_hidden * e->n_embd, sizeof *e->hidden)) {
        err = vt_fail(VT_ERR_NOMEM, "out of memory for the step's logits");
        fail_all(e, err);
        publish(e);
        return err;
    }
    md_batch b = {.n_tokens = n,
                  .tokens = e->tokv,
                  .pos = e->pos,
                  .seq = e->seq,
                  .logits = e->want,
                  .attn_f32 = e->attn,
                  .n_seqs = st.n_entries,
                  .seqs = e->seqs,
                  .hidden = n_hidden ? e->hid : NULL,
                  .out_hidden = n_hidden ? e->hidden : NULL};
    double t0 = vt_now();
    err = md_forward(e->ctx, e->kvd, &b, e->logits);
    e->stats.t_forward += vt_now() - t0;
    if (err) {
        fail_all(e, err);
        publish(e);
        return err;
    }
    e->stats.steps++;
    {
        static const int64_t bounds[ENG_STEP_HIST_N] = ENG_STEP_BOUNDS;
        int h = 0;
        while (h < ENG_STEP_HIST_N && n > bounds[h])
            h++;
        e->stats.step_hist[h]++;
    }
    e->stats.prompt_tokens += st.n_prefill_tokens;
    e->stats.decode_tokens += st.n_decode_tokens;

    int64_t k = 0, kh = 0, base = 0;
    for (int64_t i = 0; i < st.n_entries; i++) {
        const sched_entry *ent = &st.entries[i];
        if (e->live[ent->id]->p.embed)
            kh += embed_entry(e, ent, e->hid + base, e->hidden + kh * e->n_embd);
        else if (ent->logits)
            sample_entry(e, ent, e->logits + k++ * e->n_vocab);
        base += ent->n_tokens;
    }

    const sched_finished *fin = NULL;
    int64_t n_fin = 0;
    err = sched_update(e->sc, e->samples, e->stop, &fin, &n_fin);
    if (err && err != VT_ERR_NOMEM) {
        fail_all(e, err);
        publish(e);
        return err;
    }
    for (int64_t i = 0; i < n_fin; i++) {
        vt_request *r = e->live[fin[i].id];
        if (!r)
            continue;
        if (fin[i].seq >= 0 && fin[i].seq < r->p.n)
            finish_completion(r, fin[i].seq,
                              fin[i].reason == SCHED_FINISH_LENGTH ? VT_FINISH_LENGTH
                              : fin[i].reason == SCHED_FINISH_ABORT ? VT_FINISH_ABORT
                                                                     : VT_FINISH_STOP,
                              -1, true);
        if (fin[i].request_done) {
            r->aborted = true; /* gone from the scheduler */
            if (r->failed)
                eng_end_request(e, r, VT_ERR_INTERNAL, r->error);
            else
                done(e, r);
        }
    }
    /* a sampling failure ends the whole request */
    for (int32_t i = 0; i < e->n_slots; i++) {
        vt_request *r = e->live[i];
        if (r && r->failed)
            eng_end_request(e, r, VT_ERR_INTERNAL, r->error);
    }
    for (int64_t i = 0; i < st.n_entries; i++) {
        vt_request *r = e->live[st.entries[i].id];
        if (r)
            eng_request_notify(r);
    }
    publish(e);
    *busy = e->n_live > 0;
    return VT_OK;
}
