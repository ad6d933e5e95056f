/*
 * vitamin.h - the public API of the vitamin inference engine.
 *
 * Errors are values: every fallible function returns a vt_err and, on
 * failure, leaves a human-readable explanation in a thread-local buffer that
 * vt_last_error() returns (valid until the next failing call on the same
 * thread). vt_strerror() names the error class. An error that happens to a
 * request after it was submitted travels with the request's events (a
 * VT_EV_ERROR event carries its own message), never in a thread-local.
 *
 * The engine (vt_engine) serves many requests at once over one model: a
 * paged KV cache shared by all of them (prefix caching, copy-on-write for
 * n > 1), a scheduler that puts the tokens of every running request into
 * each forward pass (continuous batching, chunked prefill, preemption when
 * the cache is full), and per-request sampling, stop strings and streaming
 * detokenization. Its step loop runs on a thread of its own; vt_submit,
 * vt_request_next, vt_request_abort and vt_request_free may be called from
 * any thread at any time. With vt_engine_config.manual_step the engine has
 * no thread and vt_engine_step() runs one step on the caller (for
 * deterministic tests).
 */
#ifndef VITAMIN_H
#define VITAMIN_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VT_VERSION "0.1.0"

typedef enum {
    VT_OK = 0,
    VT_ERR_NOMEM,       /* allocation failed */
    VT_ERR_IO,          /* open/read/write/mmap failed */
    VT_ERR_FORMAT,      /* malformed input (file, JSON, template, ...) */
    VT_ERR_UNSUPPORTED, /* well-formed but not supported (type, arch, ...) */
    VT_ERR_INVALID,     /* invalid argument from the caller */
    VT_ERR_NOT_FOUND,   /* a key, tensor or file that must exist does not */
    VT_ERR_RANGE,       /* a value outside its allowed range */
    VT_ERR_INTERNAL,    /* a bug: an invariant did not hold */
} vt_err;

/* Static, never NULL. */
const char *vt_strerror(vt_err e);

/* The message of the last failure on this thread ("" if none). */
const char *vt_last_error(void);

/* Records a printf-style message for vt_last_error() and returns e. */
vt_err vt_fail(vt_err e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
vt_err vt_vfail(vt_err e, const char *fmt, va_list ap);

/* ---- the engine ------------------------------------------------------ */

typedef struct vt_engine vt_engine;
typedef struct vt_request vt_request;

typedef struct {
    const char *model_path; /* GGUF file (required) */
    int32_t n_threads;      /* forward-pass threads; 0: the online cores */
    /* The KV pool, for all requests together: kv_mem bytes, else kv_tokens
     * token slots, else min(the model's training context, 4096) tokens. */
    int64_t kv_mem;
    int64_t kv_tokens;
    int32_t block_size;       /* token slots per KV block; 0: 16 */
    int32_t max_batch_tokens; /* tokens per forward pass; 0: 512 */
    int32_t max_seqs;         /* sequences per forward pass; 0: 256 */
    /* Longest sequence (prompt + generated); 0: the model's training context,
     * at most the pool. */
    int64_t max_seq_len;
    bool no_prefix_cache; /* turn automatic prefix caching off */
    /* Admit a waiting request as soon as its first prompt chunk fits, as
     * vLLM v1 does; by default it waits until its whole prompt and a block
     * of growth per running sequence are free (far fewer preemptions when
     * the queue is long). */
    bool no_admit_headroom;
    bool manual_step;     /* no engine thread: the caller runs vt_engine_step() */
    /* The KV drawer: a folder on disk where the K/V of prefix-cache blocks
     * the pool lets go (a finished conversation's, an evicted prefix) are
     * kept, so that a later request with the same prefix - the next turn of
     * a chat, also after a restart - loads them instead of recomputing them.
     * NULL: none. One engine per folder at a time. */
    const char *kv_drawer;
    int64_t kv_drawer_bytes; /* the folder's cap; 0: 4 GiB */
} vt_engine_config;

/* Loads the model and starts the engine. NULL on failure (vt_last_error). */
vt_engine *vt_engine_create(const vt_engine_config *cfg);
/* Aborts every request still running, stops the thread, frees everything.
 * Requests not yet vt_request_free()d stay valid handles whose next events
 * are their ends. NULL: no-op. */
void vt_engine_destroy(vt_engine *e);
/* manual_step engines only: runs one step (admits submitted requests,
 * applies aborts, one forward pass, sampling, events). *busy (may be NULL)
 * is true while any request is still waiting or running. VT_ERR_INVALID for
 * a threaded engine; errors of the forward pass (every running request then
 * ends with a VT_EV_ERROR). */
vt_err vt_engine_step(vt_engine *e, bool *busy);

int32_t vt_engine_n_vocab(const vt_engine *e);
/* The length of the model's embeddings (its hidden size). */
int32_t vt_engine_n_embd(const vt_engine *e);
int64_t vt_engine_max_seq_len(const vt_engine *e);

/* The model's tokenization of text[0..len) (add_special: the model's BOS
 * rule; parse_special: special-token text becomes special tokens). *ids is
 * malloc'd (the caller frees). */
vt_err vt_tokenize(const vt_engine *e, const char *text, size_t len, bool add_special,
                   bool parse_special, int32_t **ids, size_t *n);

typedef struct {
    int32_t token;
    float bias; /* added to the logit; -INFINITY bans the token */
} vt_logit_bias;

/* What vt_request_params.grammar holds. */
typedef enum {
    VT_GRAMMAR_NONE = 0,
    VT_GRAMMAR_GBNF,        /* GBNF (llama.cpp's dialect), start rule "root" */
    VT_GRAMMAR_JSON_SCHEMA, /* a JSON Schema; the output is JSON valid under it */
    VT_GRAMMAR_REGEX,       /* a regular expression the whole output matches */
    VT_GRAMMAR_JSON_OBJECT, /* any JSON object (grammar may be NULL) */
} vt_grammar_kind;

/* A request's parameters; vt_request_params_default() first, then set. */
typedef struct {
    const int32_t *prompt; /* [n_prompt] token ids, copied; n_prompt >= 1 */
    int64_t n_prompt;
    int32_t n;             /* completions of the prompt (1..64), sharing its KV blocks */
    int32_t max_tokens;    /* new tokens per completion; -1: up to max_seq_len */
    float temperature;     /* 0: greedy (argmax) */
    int32_t top_k;         /* 0: off */
    float top_p;           /* 1: off */
    float min_p;           /* 0: off */
    float repetition_penalty, presence_penalty, frequency_penalty;
    int32_t penalty_last_n; /* window over prompt + output; -1: all */
    const vt_logit_bias *logit_bias;
    int32_t n_logit_bias;
    uint64_t seed;     /* UINT64_MAX: a fresh one; completion i uses seed + i */
    const char *const *stop; /* up to 16 stop strings (never part of the output) */
    int32_t n_stop;
    bool ignore_eos;
    int32_t min_tokens;   /* end tokens banned until this many were generated (0: off) */
    bool logprobs;        /* report each token's logprob */
    int32_t top_logprobs; /* and up to 20 alternatives */
    bool special;         /* show special tokens' text in the output */
    int32_t priority;     /* lower runs sooner; 0: first come, first served */
    uint64_t cache_salt;  /* requests with different salts never share KV blocks */
    /* An embedding request: the prompt runs like any prompt (chunked,
     * batched with others) but nothing is sampled; the model's final hidden
     * states (after the output norm) pooled as its pooling type says (mean
     * unless the file says last or cls) and L2-normalised arrive in one
     * VT_EV_EMBEDDING event, then VT_EV_DONE. n, max_tokens, the sampling
     * fields, stop and logprobs are ignored; the prompt may fill the whole
     * context. */
    bool embed;
    /* Constrained output: every completion follows this grammar (NUL-
     * terminated text of grammar_kind, compiled by vt_submit and cached by
     * text; each completion keeps its own place in it). The end tokens are
     * allowed exactly when the output is complete, and a completion ends as
     * soon as nothing can follow. A grammar that does not compile is
     * VT_ERR_INVALID with the compiler's message. */
    vt_grammar_kind grammar_kind;
    const char *grammar;
    /* Called on the engine thread whenever new events are queued (keep it
     * short: wake a reader). NULL: none. */
    void (*on_event)(void *ctx);
    void *on_event_ctx;
} vt_request_params;

vt_request_params vt_request_params_default(void);

/* Queues a request. *out is a handle for the events; free it with
 * vt_request_free. VT_ERR_INVALID/VT_ERR_RANGE (the message names the field;
 * VT_ERR_RANGE also for a request that could never fit in the KV pool or
 * max_seq_len), VT_ERR_NOMEM; *out is NULL then. */
vt_err vt_submit(vt_engine *e, const vt_request_params *p, vt_request **out);

/* What vt_submit checks before queueing, without queueing: VT_OK or the
 * error (and message) vt_submit would give. */
vt_err vt_request_check(const vt_engine *e, const vt_request_params *p);

typedef enum {
    VT_EV_TOKEN = 1, /* a generated token of completion `index` */
    VT_EV_FINISH,    /* completion `index` ended (finish says why) */
    VT_EV_DONE,      /* the request ended: every completion finished; usage is set */
    VT_EV_ERROR,     /* the request failed (message); VT_EV_DONE follows */
    VT_EV_EMBEDDING, /* an embedding request's vector (embedding, n_embd) */
} vt_event_kind;

typedef enum {
    VT_FINISH_NONE = 0,
    VT_FINISH_EOS,    /* an end-of-generation token */
    VT_FINISH_STOP,   /* a stop string */
    VT_FINISH_LENGTH, /* max_tokens or max_seq_len */
    VT_FINISH_ABORT,  /* vt_request_abort, engine shutdown or an error */
} vt_finish;

/* OpenAI's finish_reason: "stop" (EOS, stop string), "length", "abort". */
const char *vt_finish_reason(vt_finish f);

typedef struct {
    int64_t prompt_tokens;     /* the prompt's length */
    int64_t completion_tokens; /* tokens generated, all completions together */
    int64_t cached_tokens;     /* prompt tokens found in the prefix cache */
    double time_to_first_token; /* seconds from submit to the first token */
    double total_time;          /* seconds from submit to the end */
} vt_usage;

typedef struct {
    int32_t token;
    float logprob;
} vt_token_logprob;

typedef struct {
    vt_event_kind kind;
    int32_t index;      /* the completion (0..n-1); -1 for DONE/ERROR */
    int32_t token;      /* TOKEN: the token id */
    const char *text;   /* TOKEN, FINISH: text to show now (held back while it may
                           start a stop string or end in half a UTF-8 character;
                           FINISH may release what was held); ERROR: the message.
                           Valid until the next vt_request_next on this request */
    size_t len;
    float logprob;      /* TOKEN with logprobs */
    int32_t n_top;
    vt_token_logprob top[20];
    vt_finish finish;   /* FINISH */
    int32_t stop_index; /* FINISH with VT_FINISH_STOP: which stop string */
    vt_err error;       /* ERROR */
    vt_usage usage;     /* DONE */
    const float *embedding; /* EMBEDDING: [n_embd] floats, L2 norm 1; the event owns
                               them, valid until the next vt_request_next */
    int32_t n_embd;
} vt_event;

/* The next event of r, waiting up to timeout_ms (-1: forever, 0: poll).
 * Returns 1 with *ev filled, 0 on timeout, -1 once VT_EV_DONE has been read
 * (nothing more will come). */
int vt_request_next(vt_request *r, vt_event *ev, int timeout_ms);
/* Asks the engine to end r (any thread, any time; idempotent): its blocks are
 * freed at the next step and its completions finish with VT_FINISH_ABORT. */
void vt_request_abort(vt_request *r);
/* Releases the handle (aborting r if it is still running). NULL: no-op. */
void vt_request_free(vt_request *r);

#endif
