/*
 * engine.h - a single-sequence generation session over a loaded model.
 *
 * An eng_session owns a KV cache big enough for its context (n_ctx tokens in
 * blocks of ENG_BLOCK_SIZE, logical block i in physical block i), a runner
 * and the token history, which is exactly what the KV cache holds. Tokens go
 * in with eng_feed() (a prompt is run in chunks of n_batch tokens, one
 * forward pass each), and eng_generate() then samples one token at a time,
 * feeding each back, streaming the detokenized text to a callback until an
 * end-of-generation token, a stop string, max_tokens or the end of the
 * context. A later eng_feed() appends to the same sequence (the next turn of
 * a chat), reusing everything already computed; eng_sync() makes the history
 * equal to a given token list, keeping the longest common prefix in the
 * cache and running only the rest.
 *
 * This is the one-user engine behind `vitamin run` and `vitamin chat`; the
 * multi-user engine (scheduler, paged block manager, continuous batching)
 * will sit behind the same kind of opaque handle.
 *
 * Ownership: the session borrows the model, the tokenizer and the thread
 * pool, which must outlive it. Errors are vt_err values with vt_last_error()
 * explaining; after a failed call the session stays usable (its history is
 * what the KV cache holds). A session belongs to one thread.
 */
#ifndef VT_ENGINE_H
#define VT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"
#include "model/model.h"
#include "sample/sampler.h"
#include "tokenizer/tokenizer.h"
#include "kv/kv.h"
#include "vitamin.h"

#define ENG_BLOCK_SIZE 16       /* token slots per KV block */
#define ENG_DEFAULT_CTX 4096    /* n_ctx cap when not given */
#define ENG_DEFAULT_BATCH 512   /* prompt tokens per forward pass */

typedef struct {
    /* Context size in tokens; 0: min(the model's training context, 4096).
     * Larger than the training context is allowed (the model may degrade). */
    int64_t n_ctx;
    /* Prompt tokens per forward pass; 0: ENG_DEFAULT_BATCH. */
    int32_t n_batch;
    /* Threads for the forward pass (borrowed); NULL: the calling thread. */
    kn_pool *pool;
} eng_options;

typedef struct eng_session eng_session;

/* A session over model m with tokenizer tok (both borrowed; tok must be the
 * model's own vocabulary, same n_vocab). opt may be NULL for the defaults.
 * VT_ERR_INVALID for a bad option, VT_ERR_NOMEM; *out is NULL on failure. */
vt_err eng_session_create(const md_model *m, const tok_tokenizer *tok, const eng_options *opt,
                          eng_session **out);
void eng_session_destroy(eng_session *s); /* NULL is a no-op */

int64_t eng_n_ctx(const eng_session *s);
/* The tokens in the KV cache, oldest first (valid until the next call that
 * changes the session); *n receives their number. */
const int32_t *eng_tokens(const eng_session *s, int64_t *n);

/* Appends tokens[0..n) to the sequence and runs them through the model;
 * afterwards eng_logits() are the next-token logits after the last one.
 * VT_ERR_RANGE (nothing changed) when they do not fit the context,
 * VT_ERR_RANGE for an id outside the vocabulary; errors of md_forward
 * (the history then ends before the chunk that failed). n = 0 is a no-op. */
vt_err eng_feed(eng_session *s, const int32_t *tokens, int64_t n);

/* Makes the history equal to tokens[0..n) (n >= 1): keeps the longest
 * common prefix already in the cache (at most n - 1 tokens, so that there
 * are logits to sample from) and feeds the rest. *n_reused (may be NULL)
 * receives the number of tokens kept. Errors as eng_feed. */
vt_err eng_sync(eng_session *s, const int32_t *tokens, int64_t n, int64_t *n_reused);

/* Forgets every token from position n on (n <= the history's length); the
 * logits are gone unless n is the current length. */
void eng_truncate(eng_session *s, int64_t n);

/* The next-token logits (n_vocab floats) after the last token fed, or NULL
 * when there are none (nothing fed yet, or truncated since). */
const float *eng_logits(const eng_session *s);

/* Called for every generated token, in order: token is the sampled id
 * (end-of-generation tokens included), text[len] the text that may be shown
 * now (possibly empty: held back while it may be the start of a stop string
 * or half a UTF-8 character; never the text of an end token). A last call
 * with token -1 may carry text released when generation ends. Return false
 * to stop generating (finish ENG_FINISH_CANCELLED). */
typedef bool (*eng_token_fn)(void *user, int32_t token, const char *text, size_t len);

typedef enum {
    ENG_FINISH_EOS = 1,    /* an end-of-generation token was sampled */
    ENG_FINISH_STOP,       /* a stop string completed */
    ENG_FINISH_LENGTH,     /* max_tokens reached */
    ENG_FINISH_CONTEXT,    /* the context is full */
    ENG_FINISH_CANCELLED,  /* the callback returned false */
} eng_finish;

/* OpenAI's finish_reason: "stop" (EOS, stop string), "length" (max_tokens,
 * context full) or "cancelled". */
const char *eng_finish_reason(eng_finish f);

typedef struct {
    eng_finish finish;
    int32_t stop_index; /* with ENG_FINISH_STOP: which stop string; else -1 */
    int64_t n_generated; /* tokens sampled (an end token included) */
    uint64_t seed;       /* the sampler's seed (the drawn one for SMP_SEED_RANDOM) */
} eng_result;

/* Generates from the current logits (eng_feed or eng_sync first) with the
 * sampling parameters p (validated; max_tokens -1 means up to the end of the
 * context). Each sampled token that does not end generation is fed back, so
 * afterwards the history holds the prompt and every generated token but the
 * last one when that one ended generation (an end token, the token that
 * completed a stop string, the max_tokens-th token or one that found the
 * context full). Penalties see the whole history. on_token may be NULL.
 * VT_ERR_INVALID (bad parameters, no logits), errors of the forward pass;
 * on an error *res describes what was generated until then. */
vt_err eng_generate(eng_session *s, const smp_params *p, eng_token_fn on_token, void *user,
                    eng_result *res);

/* Work done since the session was created (or eng_stats_reset). Prompt:
 * tokens run through eng_feed/eng_sync and the seconds they took; generated:
 * tokens sampled by eng_generate and the seconds it took (forward passes and
 * sampling). */
typedef struct {
    int64_t n_prompt;
    double t_prompt;
    int64_t n_gen;
    double t_gen;
} eng_stats;

eng_stats eng_get_stats(const eng_session *s);
void eng_stats_reset(eng_session *s);

/* ---- the multi-request engine (vitamin.h's vt_engine), in-tree extras ---- */

/* Counters of the engine's work, for metrics; a consistent snapshot. */
typedef struct {
    int64_t steps;           /* forward passes */
    int64_t prompt_tokens;   /* prompt (and recompute) tokens computed */
    int64_t decode_tokens;   /* generated tokens fed back */
    int64_t generated;       /* tokens sampled */
    int64_t requests_done;
    int64_t running, waiting; /* sequences now */
    int64_t preemptions;
    kv_stats kv;
    double t_forward;        /* seconds in md_forward */
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

#endif
