/*
 * sched.h - the continuous-batching scheduler: which sequences run in the
 * next forward pass, and which of their tokens.
 *
 * Pure logic over kv/'s block manager (no I/O, no math, no threads), after
 * vLLM's v1 scheduler:
 *
 *  - A request is a prompt, a max_tokens, a priority (lower = sooner; FCFS by
 *    arrival within a priority), a salt for its prefix-cache hashes, and n,
 *    the number of parallel samples. A request starts as ONE sequence; the
 *    step that computes the last prompt token asks the engine for n samples
 *    of its logits (sched_entry.n_samples), and sched_update() then forks
 *    the sequence n-1 times (kv_fork: the prompt's blocks are shared, the
 *    partial last block is copied on the first write). From then on every
 *    sequence of the request is scheduled, preempted and finished on its
 *    own; sched_abort() ends them all.
 *  - Queues: waiting (sorted by priority, then arrival: a preempted sequence
 *    goes back ahead of every newer request, in its original order) and
 *    running (same order). Waiting sequences hold no blocks.
 *  - Each step (sched_schedule) has a token budget (max_batch_tokens) and a
 *    cap on sequences (max_seqs). First every running sequence that needs
 *    one token (a decode) gets it; then running sequences still in a
 *    (chunked) prefill get min(rest of their known tokens, budget left);
 *    then waiting sequences are admitted in queue order while budget, the
 *    cap and blocks last: kv_seq_create (a prefix-cache hit means only the
 *    uncached part is computed) and a first chunk. A waiting head whose
 *    chunk does not get its blocks blocks every later arrival (head-of-line,
 *    as vLLM): with FCFS nobody starves, a long prompt is admitted as soon as
 *    the pool has room for its first chunk, and runs in chunks after that
 *    while decodes keep going every step.
 *  - Preemption (recompute): when a running sequence cannot get its blocks,
 *    the running sequence that comes last in queue order (lowest priority,
 *    latest arrival) is preempted: its blocks are freed (kv_seq_free; its full
 *    blocks stay in the prefix cache until evicted) and it returns to waiting
 *    with all its tokens (prompt + generated so far) as the prompt to
 *    recompute, so its output does not change, and max_tokens still counts
 *    what it generated before. If the sequence being scheduled is itself
 *    the last, it takes a smaller chunk if one fits, else preempts itself.
 *    Waiting sequences never preempt running ones.
 *  - A request whose one sequence could never fit in the pool (prompt +
 *    max_tokens - 1 slots: the last token is never fed back) is refused by
 *    sched_add.
 *
 * The engine's loop: sched_schedule(); perform step.copies on the K/V data;
 * run the forward pass over step.entries; draw step.n_samples tokens;
 * sched_update() with them. sched_abort() and sched_add() between steps (an
 * abort during a step takes effect in sched_update).
 *
 * Not thread-safe: one scheduler (and its kv pool) belongs to one thread.
 * Failure: functions returning vt_err set vt_last_error(); on failure
 * nothing changed unless said otherwise.
 */
#ifndef VT_SCHED_H
#define VT_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "kv/kv.h"
#include "vitamin.h"

#define SCHED_DEFAULT_MAX_BATCH_TOKENS 512
#define SCHED_DEFAULT_MAX_SEQS 256

typedef struct sched sched;

typedef struct {
    int32_t max_batch_tokens; /* tokens per step; 0: SCHED_DEFAULT_MAX_BATCH_TOKENS */
    int32_t max_seqs;         /* sequences per step; 0: SCHED_DEFAULT_MAX_SEQS;
                                 must be <= max_batch_tokens */
    /* Admission headroom: a waiting request is admitted only when the blocks
     * of its whole remaining prompt, plus this many blocks for each running
     * sequence (room to grow), are free - unless nothing runs. Without it a
     * full queue overcommits the pool with first chunks, and the running
     * sequences' growth then preempts (and recomputes) them over and over.
     * 0: off (admit when the first chunk fits, as vLLM v1 does). */
    int32_t admit_headroom;
    /* By default a waiting request whose next uncached prompt block a
     * running sequence (same salt, same tokens so far) has yet to compute
     * waits for it (blocking the queue behind it, FCFS) rather than
     * computing it too; true turns that off. */
    bool no_prefix_dedupe;
} sched_config;

typedef struct {
    int64_t id;            /* the caller's; unique among live requests */
    const int32_t *prompt; /* [n_prompt], copied */
    int64_t n_prompt;      /* >= 1 */
    int64_t max_tokens;    /* new tokens per sequence, >= 1 */
    int32_t priority;      /* lower = sooner; 0 for plain FCFS */
    uint64_t salt;         /* mixed into the prefix-cache hashes (0: none) */
    int32_t n;             /* parallel samples; 0 or 1: one */
} sched_request;

/* One sequence's part of a step: compute tokens[0..n_tokens) at positions
 * pos..pos+n_tokens-1 through the block table blocks[0..n_blocks). */
typedef struct {
    int64_t id;            /* request id */
    int32_t seq;           /* sequence of the request, 0..n-1 */
    const int32_t *tokens; /* [n_tokens] */
    int64_t pos;
    int32_t n_tokens;
    const int32_t *blocks; /* [n_blocks] */
    int64_t n_blocks;
    bool logits;           /* the last token's logits are wanted: the chunk reaches
                              the end of the sequence's known tokens */
    bool decode;           /* one generated token fed back (else a prompt or
                              recompute chunk) */
    int32_t n_samples;     /* tokens to draw from those logits (n when a
                              request's prompt completes, else 1; 0 if !logits) */
    int64_t sample_index;  /* where this entry's samples go in sched_update's arrays */
    int64_t n_generated;   /* tokens this sequence generated before this step */
} sched_entry;

typedef struct {
    int64_t n_entries;
    const sched_entry *entries; /* decodes, then running prefill chunks, then
                                   admitted waiting sequences, each in queue order */
    int64_t n_copies;
    const kv_copy *copies;      /* copy-on-write copies to do before the forward pass */
    int64_t n_tokens;           /* sum of entries' n_tokens (<= max_batch_tokens) */
    int64_t n_decode_tokens;
    int64_t n_prefill_tokens;
    int64_t n_samples;          /* sum of entries' n_samples */
    int64_t n_preempted;        /* sequences preempted while scheduling this step */
} sched_step;

typedef enum {
    SCHED_FINISH_STOP = 1, /* the engine reported a stop (EOS, stop string) */
    SCHED_FINISH_LENGTH,   /* max_tokens generated */
    SCHED_FINISH_ABORT,    /* sched_abort, or a host allocation failure at a fork */
} sched_finish_reason;

typedef struct {
    int64_t id;
    int32_t seq;
    sched_finish_reason reason;
    int64_t n_generated;
    bool request_done; /* the request's last live sequence: the request is gone */
} sched_finished;

typedef enum {
    SCHED_NONE,      /* no such live sequence (never added, finished, aborted) */
    SCHED_WAITING,   /* waiting, never ran */
    SCHED_PREEMPTED, /* waiting to be recomputed after a preemption */
    SCHED_RUNNING,
} sched_status;

typedef struct {
    int64_t requests;         /* live requests */
    int64_t running;          /* sequences */
    int64_t waiting;          /* sequences, preempted ones included */
    int64_t preempted;        /* of the waiting ones, those preempted */
    int64_t preemptions;      /* total so far */
    int64_t steps;            /* sched_schedule calls that scheduled something */
    int64_t last_step_tokens; /* tokens scheduled by the last sched_schedule */
    int64_t tokens_scheduled; /* total */
    int64_t prefix_deferred;  /* admissions put off for a prefix block in flight */
} sched_stats;

/* A scheduler over kv (borrowed: it must outlive the scheduler and be used
 * by nothing else). cfg NULL: defaults. NULL on failure (VT_ERR_INVALID for a
 * bad config, VT_ERR_NOMEM). */
sched *sched_create(kv_pool *kv, const sched_config *cfg);
/* Frees every live sequence's blocks and the scheduler. NULL: no-op. */
void sched_destroy(sched *s);

/* Queues a request (its sequence waits). VT_ERR_INVALID for a bad field or
 * an id already live; VT_ERR_RANGE when it could never fit in the pool (the
 * message says how many blocks it needs and the pool has); VT_ERR_NOMEM. */
vt_err sched_add(sched *s, const sched_request *r);

/* Plans the next step into *out (valid until sched_update or the next
 * sched_schedule). An empty step (n_entries 0: nothing to run, or nothing
 * fits now) needs no sched_update; any other does before the next
 * sched_schedule. VT_ERR_INVALID if the previous step was not updated;
 * VT_ERR_INTERNAL if kv/ misbehaves. */
vt_err sched_schedule(sched *s, sched_step *out);

/* Reports the last step's results: every entry's tokens were computed (they
 * are committed to kv/); samples[e.sample_index .. + e.n_samples) are the
 * tokens drawn for entry e, and stop (NULL: none) the same-shaped flags that
 * the engine saw a stop there (the token is still recorded as generated).
 * *finished (may be NULL) receives the sequences that ended with this
 * update, sched_abort()s made during the step included (valid until the next
 * sched_update), *n_finished their number; their blocks are freed.
 * VT_ERR_INVALID if no step is outstanding; VT_ERR_NOMEM at a fork (that
 * sibling ends as SCHED_FINISH_ABORT, the rest of the update is done). */
vt_err sched_update(sched *s, const int32_t *samples, const bool *stop,
                    const sched_finished **finished, int64_t *n_finished);

/* Ends every sequence of request id, in whichever queue; their blocks are
 * freed now (between steps) or in the next sched_update (during a step,
 * where they are reported as SCHED_FINISH_ABORT). VT_ERR_NOT_FOUND if no
 * live request has that id. */
vt_err sched_abort(sched *s, int64_t id);

/* Status of sequence seq of request id. */
sched_status sched_get_status(const sched *s, int64_t id, int32_t seq);
/* The known tokens of a live sequence (prompt, then generated; valid until
 * the next call that changes s), *n_prompt (may be NULL) the original
 * prompt's length, *n their number; NULL if there is no such sequence. */
const int32_t *sched_seq_tokens(const sched *s, int64_t id, int32_t seq, int64_t *n_prompt,
                                int64_t *n);
void sched_get_stats(const sched *s, sched_stats *out);

#endif
