/*
 * engine_int.h - the engine's private structures, shared by engine.c (life
 * cycle, the thread, submitting), request.c (a request's event queue and its
 * handle) and step.c (one step: schedule, forward, sample, emit).
 *
 * Threads: the fields under "shared" are guarded by vt_engine.mu; a
 * request's event queue and reference count by vt_request.mu; everything
 * else belongs to the engine thread (or to the vt_engine_step caller).
 */
#ifndef VT_ENGINE_INT_H
#define VT_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/engine.h"
#include "kv/kv.h"
#include "sample/sampler.h"
#include "sched/sched.h"

typedef struct ev_node {
    vt_event ev;
    char *text; /* owned copy of ev.text */
    float *vec; /* owned copy of ev.embedding */
    struct ev_node *next;
} ev_node;

/* One completion of a request. */
typedef struct {
    smp_state *smp;
    tok_stream *ts;
    bool finished;
    int64_t n_generated;
} eng_completion;

struct vt_request {
    /* shared with the client (under mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;         /* the client's and the engine's */
    ev_node *head, *tail;
    ev_node *cur;     /* the event last returned by vt_request_next */
    bool done_queued; /* VT_EV_DONE is in the queue (or was read) */
    bool done_read;
    atomic_bool abort_req;
    void (*on_event)(void *ctx);
    void *on_event_ctx;

    /* the engine's */
    vt_engine *e;
    int64_t id;
    struct vt_request *next_in; /* the inbox */
    vt_request_params p;        /* with the copies below */
    int32_t *prompt;
    vt_logit_bias *bias;
    char **stops;
    smp_params sp;              /* p translated */
    int64_t max_tokens;         /* effective, >= 1 */
    eng_completion *c;          /* [p.n] */
    int32_t n_live;             /* completions not finished */
    bool admitted, aborted, seen;
    bool failed;                /* a sampling error: the request ends with it */
    char error[256];
    vt_usage usage;
    double t_submit;
    int32_t slot;               /* index in the engine's live table */
    /* embedding requests (p.embed): the pooled sum of the hidden states of
     * prompt positions [0, emb_n) so far, summed in position order (so that
     * chunking and batching never change it), or the chosen token's state */
    double *emb;                /* [n_embd] */
    int64_t emb_n;
};

struct vt_engine {
    md_model *m;
    tok_tokenizer *tok;
    bool owns_model;
    kn_pool *pool;
    bool owns_pool;
    md_ctx *ctx;
    md_kv *kvd;
    kv_pool *kv;
    kv_drawer *drawer; /* NULL: none */
    sched *sc;
    int32_t n_vocab;
    int32_t *end_ids;
    int32_t n_end;
    int64_t max_seq_len;
    int32_t max_batch_tokens, max_seqs;
    bool manual;

    /* shared (under mu) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    vt_request *in_head, *in_tail;
    bool abort_pending;
    bool stopping;
    int64_t next_id;

    pthread_t thread;
    bool thread_started;

    /* the engine thread's */
    vt_request **live; /* [n_slots]; NULL: free slot */
    int32_t n_slots, n_live;
    int32_t *tokv, *pos, *seq; /* [max_batch_tokens] */
    bool *want, *attn;        /* [max_batch_tokens] logits wanted, F32 attention */
    md_seq *seqs;             /* [max_seqs] */
    float *logits;            /* [logits_cap * n_vocab] */
    int64_t logits_cap;
    int32_t *samples;         /* [max_seqs * 64] */
    bool *stop;
    int64_t samples_cap;
    eng_counters stats;
    bool locks_ok;
    eng_counters shown; /* stats as of the last step (under mu) */
    bool *hid;                /* [max_batch_tokens] hidden state wanted (embeddings) */
    float *hidden;            /* [hidden_cap * n_embd] */
    int64_t hidden_cap;
    int32_t n_embd;
    md_pooling pooling;
    /* the vocabulary as the grammar engine sees it, built by the first
     * request with a grammar (the pointer under mu) */
    smp_grammar_vocab *gvocab;
};

/* request.c */
vt_request *eng_request_new(void);
/* Queues an event (text copied); false on allocation failure. Does not call
 * on_event (eng_request_notify does, once per step). */
bool eng_request_push(vt_request *r, const vt_event *ev, const char *text, size_t len);
void eng_request_notify(vt_request *r);
/* Drops one reference; frees at 0. */
void eng_request_unref(vt_request *r);
/* The engine's side of a request: copies the parameters (VT_ERR_NOMEM),
 * frees them. */
vt_err eng_request_copy_params(vt_request *r, const vt_request_params *p);
void eng_request_free_engine_side(vt_request *r);

/* step.c */
/* One step on the engine thread. *busy: requests remain. */
vt_err eng_step(vt_engine *e, bool *busy);
/* Ends r (not yet done) with FINISH abort events and DONE, removes it from
 * the live table and drops the engine's reference. error (may be NULL): a
 * VT_EV_ERROR message first. */
void eng_end_request(vt_engine *e, vt_request *r, vt_err err, const char *error);

#endif
