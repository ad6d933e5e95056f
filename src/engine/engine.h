/*
 * engine.h - the in-tree side of the multi-request engine whose public API
 * is include/vitamin.h (vt_engine, vt_submit, vt_request_next, ...): making
 * an engine over a model, tokenizer and thread pool the caller already has
 * (the CLI, tests, the server), reaching them, and the engine's counters for
 * metrics.
 *
 * How a step runs (engine_int.h, step.c): the engine thread admits
 * submitted requests into the scheduler (sched/), which picks each step's
 * sequences and prompt chunks under a token budget and gets their KV blocks
 * from the block manager (kv/: prefix cache, copy-on-write, eviction); one
 * md_forward runs the flattened batch of all of them; each sequence's own
 * sampler draws its token; text deltas (held back for stop strings and split
 * UTF-8) go to the request's event queue.
 */
#ifndef VT_ENGINE_H
#define VT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "kv/drawer.h"
#include "kv/kv.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "vitamin.h"

/* The histogram of tokens per forward pass: bucket i counts steps of at
 * most ENG_STEP_BOUNDS[i] tokens (the last bucket: any more). */
#define ENG_STEP_HIST_N 12
#define ENG_STEP_BOUNDS {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048}

/* Counters of the engine's work, for metrics; a consistent snapshot. */
typedef struct {
    int64_t steps;           /* forward passes */
    int64_t prompt_tokens;   /* prompt (and recompute) tokens computed */
    int64_t decode_tokens;   /* generated tokens fed back */
    int64_t generated;       /* tokens sampled */
    int64_t requests_done;
    int64_t running, waiting; /* sequences now */
    int64_t preemptions;
    int64_t prefix_deferred; /* admissions that waited for a shared prefix in flight */
    kv_stats kv;
    kv_drawer_stats drawer; /* zeros without a drawer */
    double t_forward;        /* seconds in md_forward */
    int64_t step_hist[ENG_STEP_HIST_N + 1]; /* steps by tokens (ENG_STEP_BOUNDS; last: more) */
} eng_counters;

/* An engine over a model, tokenizer and thread pool that the caller already
 * has (borrowed: they must outlive the engine; pool may be NULL for the
 * calling thread only). cfg->model_path and cfg->n_threads are ignored.
 * NULL on failure (vt_last_error). */
vt_engine *eng_create(md_model *m, tok_tokenizer *tok, kn_pool *pool, const vt_engine_config *cfg);
const md_model *eng_model(const vt_engine *e);
const tok_tokenizer *eng_tokenizer(const vt_engine *e);
/* Any thread. */
void eng_get_counters(vt_engine *e, eng_counters *out);

/* The embedding of text[0..len) as an embedding request of e (tokenized
 * with the model's BOS rule, its first max_seq_len tokens; pooled and
 * L2-normalised as vt_request_params.embed says), waiting for it: for a
 * thread other than e's (a threaded engine). salt: the request's cache
 * salt. *out is malloc'd [*n_embd] (the caller frees). VT_ERR_INVALID for a
 * text without tokens, the engine's errors. */
vt_err eng_embed_text(vt_engine *e, const char *text, size_t len, uint64_t salt, float **out,
                      int32_t *n_embd);

#endif
