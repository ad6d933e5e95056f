/*
 * kvsim.h - the KV-efficiency workload simulation shared by bench/bench_kv.c
 * (`make bench-kv`) and tests/test_kv_efficiency.c: a seeded mixed-length
 * workload (log-normal prompt and output lengths, Poisson arrivals), run
 * three ways over one KV pool of C token slots, each measured after every
 * step (one step = one forward pass):
 *
 *  - kvs_run_paged: vitamin's real scheduler (sched/) over the real block
 *    manager (kv/), no model (the memory accounting does not depend on the
 *    math): allocated-but-unused slots (blocks held x block size - tokens
 *    stored, over blocks held x block size), running sequences, waiting,
 *    preemptions; every step also checks that the blocks kv/ says are held
 *    equal the blocks the stored tokens need.
 *  - kvs_run_slots: a per-slot cache as llama.cpp's server gives it with
 *    `-np N -c C`: N slots of C/N tokens, a request that needs more than
 *    C/N slots fails, at most N run at once, the same step model (token
 *    budget, decodes first, then prompt chunks, FCFS admission).
 *  - kvs_run_engine: the same workload through the real engine (vt_engine,
 *    manual steps, greedy, ignore_eos) on a given model, reading the
 *    engine's own counters (eng_counters) after each step, so that its
 *    trace can be compared with kvs_run_paged's.
 *
 * A request needs n_prompt + n_output - 1 KV slots (the last generated
 * token is never fed back), the same rule sched_add applies.
 * Errors are vt_err values (vt_last_error explains); every result and trace
 * is owned by the caller (kvs_workload_free, kvs_trace_free).
 */
#ifndef VT_KVSIM_H
#define VT_KVSIM_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/engine.h"
#include "vitamin.h"

typedef struct {
    uint64_t seed;
    int32_t n_requests;
    double prompt_median, prompt_sigma; /* log-normal: exp(ln median + sigma * N(0,1)) */
    int32_t prompt_min, prompt_max;     /* clipped to these */
    double output_median, output_sigma;
    int32_t output_min, output_max;
    double rate;   /* mean arrivals per step (Poisson) */
    int32_t vocab; /* prompt token ids are drawn from 3..vocab-1 */
} kvs_workload_cfg;

typedef struct {
    int64_t arrival; /* the step at which it is submitted */
    int32_t n_prompt, n_output;
    int32_t *prompt; /* [n_prompt] */
} kvs_req;

typedef struct {
    kvs_workload_cfg cfg;
    kvs_req *reqs; /* [n], by arrival */
    int32_t n;
} kvs_workload;

/* Draws the workload. VT_ERR_INVALID for a bad config, VT_ERR_NOMEM. */
vt_err kvs_workload_make(const kvs_workload_cfg *c, kvs_workload *out);

/* The "mixed" workload of the benchmark and the test: chat/completion-like,
 * long-tailed (log-normal prompts, median 300 in 20..4000, and outputs,
 * median 120 in 10..1000), one arrival per step on average. */
kvs_workload_cfg kvs_mixed(uint64_t seed, int32_t n_requests);
void kvs_workload_free(kvs_workload *w);
/* KV slots request r needs over its life: n_prompt + n_output - 1. */
int64_t kvs_need(const kvs_req *r);
/* The q-quantile (0..1, nearest rank) of the workload's needs, of its
 * prompt lengths (what 0) or output lengths (what 1) or needs (what 2). */
int64_t kvs_quantile(const kvs_workload *w, int what, double q);
/* Requests that need more than n slots. */
int32_t kvs_count_longer(const kvs_workload *w, int64_t n);

/* One step's state, measured after the step. stored is -1 where unknown
 * (the engine does not say). */
typedef struct {
    int64_t step;
    int64_t running, waiting, blocks_used, stored, preemptions;
} kvs_point;

typedef struct {
    kvs_point *v;
    int64_t n, cap;
    bool oom;
} kvs_trace;

/* Appends *p to the kvs_trace ctx (usable as a trace callback; sets oom
 * instead of failing). */
void kvs_trace_push(void *ctx, const kvs_point *p);
void kvs_trace_free(kvs_trace *t);
/* The first index where a and b differ in running, waiting, blocks_used or
 * preemptions (or where one ends), -1 if they are equal. */
int64_t kvs_trace_diff(const kvs_trace *a, const kvs_trace *b);

typedef void (*kvs_trace_fn)(void *ctx, const kvs_point *p);

typedef struct {
    int64_t steps;          /* steps until every request ended */
    int64_t completed;      /* requests that generated all their tokens */
    int64_t failed;         /* refused (never fit) or, in the engine, ended otherwise */
    int64_t pool_slots;     /* token slots of the pool (blocks x block size, N x C/N) */
    int64_t n_slots;        /* per-slot cache: N; paged: 0 */
    double unused_mean;     /* allocated-but-unused fraction, mean over steps with
                               something allocated */
    double unused_max;      /* its maximum over those steps */
    double unused_max_loaded; /* maximum over steps with a request waiting */
    double unused_agg;      /* sum of unused slots / sum of allocated slots */
    double unused_occupied; /* per-slot cache: over occupied slots only (mean) */
    double util_mean;       /* tokens stored / pool slots, mean over all steps */
    double running_mean;    /* running sequences, mean over all steps */
    double running_mean_loaded; /* mean over steps with a request waiting */
    int64_t running_peak;
    int64_t loaded_steps;   /* steps with a request waiting */
    int64_t preemptions;
    int64_t tokens_computed;   /* token positions computed (prefill + decode) */
    int64_t tokens_recomputed; /* of those, positions computed before (preemption) */
    int64_t accounting_errors; /* steps where kv/'s blocks_used is not the sum over
                                  running sequences of the blocks their tokens need */
    double seconds;            /* wall time of the run */
} kvs_result;

typedef struct {
    int64_t pool_tokens;      /* C: the pool has ceil(C / block_size) blocks */
    int32_t block_size;       /* 0: 16 */
    int32_t max_batch_tokens; /* 0: 512 */
    int32_t max_seqs;         /* 0: sched/'s default */
    bool no_admit_headroom;   /* admit on the first chunk (the engine's default is
                                 headroom: sched_config.admit_headroom = 1) */
    bool no_prefix_cache;
} kvs_paged_cfg;

/* The workload on sched/ + kv/. fn (may be NULL) sees every step.
 * VT_ERR_INTERNAL if the scheduler misbehaves or stalls, VT_ERR_NOMEM. */
vt_err kvs_run_paged(const kvs_workload *w, const kvs_paged_cfg *c, kvs_trace_fn fn, void *ctx,
                     kvs_result *out);

/* The workload on a per-slot cache of n_slots slots of pool_tokens /
 * n_slots tokens with a token budget of max_batch_tokens per step (0: 512).
 * VT_ERR_INVALID for bad sizes, VT_ERR_NOMEM. */
vt_err kvs_run_slots(const kvs_workload *w, int64_t pool_tokens, int32_t n_slots,
                     int32_t max_batch_tokens, kvs_result *out);

/* The workload through the real engine over model m (borrowed, with its
 * tokenizer; pool may be NULL), configured as c, in manual steps; each
 * request greedy with ignore_eos and max_tokens = n_output. Fills steps,
 * completed (requests that ended with exactly n_output tokens and finish
 * "length"), failed (the others), running and blocks figures, preemptions
 * and the trace (stored -1). Errors of the engine. */
vt_err kvs_run_engine(md_model *m, tok_tokenizer *tok, kn_pool *pool, const kvs_workload *w,
                      const kvs_paged_cfg *c, kvs_trace_fn fn, void *ctx, kvs_result *out);

/* Runs `VITAMIN gen-model` to write a tiny llama model (vocabulary from
 * vocab) to path and loads it. VT_ERR_IO if the command fails. */
vt_err kvs_tiny_model(const char *vitamin, const char *vocab, const char *path, md_model **m,
                      tok_tokenizer **tok);

#endif
