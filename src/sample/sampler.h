/*
 * sampler.h - choosing the next token of a sequence from its logits, and
 * deciding when the sequence ends.
 *
 * One smp_state per sequence holds that sequence's sampling parameters (deep
 * copies), its own RNG and scratch buffers. smp_sample() runs the chain of
 * llama.cpp's default sampler: logit bias -> repetition/presence/frequency
 * penalties -> top-k -> top-p -> min-p -> temperature -> draw; a temperature of
 * 0 is an exact argmax (ties go to the lowest id) and draws nothing. Top-p and
 * min-p are judged on the distribution at temperature 1 renormalised over what
 * the previous steps kept (as llama.cpp does); temperature reshapes only the
 * final draw. Logprobs are the log-softmax of the logits after bias and
 * penalties but before any truncation or temperature (what OpenAI reports).
 *
 * smp_accept() is fed every sampled token with its detokenized text and says
 * what text may be sent to the client now and whether generation is over
 * (end-of-generation token, a stop string, max_tokens). Text that could still
 * be the beginning of a stop string is held back until it either completes the
 * stop string (then it is dropped, with everything after it) or diverges
 * (then it is released in full). The stop matcher is also usable alone
 * (smp_stop_*).
 *
 * Nothing here is thread-safe per object; distinct states may be used from
 * distinct threads at the same time.
 */
#ifndef VT_SAMPLER_H
#define VT_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sample/grammar.h"
#include "vitamin.h"

#define SMP_MAX_STOP 16          /* stop strings per sequence */
#define SMP_MAX_STOP_LEN 256     /* bytes per stop string */
#define SMP_MAX_TOP_LOGPROBS 20  /* alternatives reported per token (OpenAI's limit) */
#define SMP_SEED_RANDOM UINT64_MAX /* "no seed": see smp_params.seed */

typedef struct {
    int32_t token;
    float bias; /* added to the token's logit; -INFINITY bans the token */
} smp_bias;

typedef struct {
    /* >= 0. 0 means greedy: exact argmax, lowest id on ties, no draw (also
     * any temperature so small that 1/temperature overflows). */
    float temperature;
    /* keep only the k most likely tokens; 0 or -1 = off. */
    int32_t top_k;
    /* (0, 1]: keep the smallest set of most likely tokens whose probability
     * adds up to at least top_p; 1 = off. */
    float top_p;
    /* [0, 1]: drop tokens less likely than min_p times the most likely one;
     * 0 = off. */
    float min_p;
    /* > 0, llama.cpp style: the logit of every token seen in the penalty
     * window is divided by it when positive, multiplied when <= 0; 1 = off. */
    float repetition_penalty;
    /* [-2, 2], OpenAI style: subtracted once from the logit of every token
     * seen in the window (presence), and once per occurrence (frequency). */
    float presence_penalty;
    float frequency_penalty;
    /* The penalty window: the last N tokens of the history passed to
     * smp_sample(); -1 = all of it, 0 = no penalties. All three penalties use
     * it (the caller chooses what history means: prompt + output, or output
     * only as OpenAI counts presence/frequency). */
    int32_t penalty_last_n;
    /* Added to the logits before the penalties; ids must be < n_vocab;
     * each bias is in [-100, 100] or -INFINITY; repeated ids add up. */
    const smp_bias *logit_bias;
    int32_t n_logit_bias;
    /* Seeds the sequence's RNG: the same seed, parameters and logits give the
     * same tokens on every run. SMP_SEED_RANDOM (= (uint64_t)-1, the default,
     * also what a JSON seed of -1 casts to) picks a fresh seed from the clocks
     * and a process-wide counter; smp_seed() tells which, to reproduce it. */
    uint64_t seed;
    /* Generated tokens after which generation ends ("length"); -1 = no limit
     * (the context size is then the caller's limit). */
    int32_t max_tokens;
    /* Up to SMP_MAX_STOP non-empty strings of at most SMP_MAX_STOP_LEN bytes. */
    const char *const *stop;
    int32_t n_stop;
    /* When true, end-of-generation tokens do not end generation. */
    bool ignore_eos;
    /* 0..SMP_MAX_TOP_LOGPROBS alternatives to report with smp_logprobs. */
    int32_t top_logprobs;
    /* >= 0 (at most max_tokens when that is set): the end-of-generation
     * tokens are banned (logit -inf) until this many tokens were generated
     * (vLLM's min_tokens; stop strings still apply). 0 = off. */
    int32_t min_tokens;
    /* NULL, or a grammar (of a vocabulary of n_vocab tokens) the output must
     * follow: smp_create gives the sequence its own state (and takes a
     * reference on the grammar, so the caller may drop its own at once);
     * smp_sample allows only the tokens the grammar can take next, and the
     * end tokens exactly when the grammar is complete; smp_accept advances
     * the state, and ends the sequence (SMP_FINISH_EOS) once nothing can
     * follow. */
    smp_grammar *grammar;
} smp_params;

/* temperature 1, top_k 0, top_p 1, min_p 0, penalties off (repetition 1,
 * presence/frequency 0, window 64), no bias, seed SMP_SEED_RANDOM,
 * max_tokens -1, no stop strings, ignore_eos false, top_logprobs 0,
 * min_tokens 0, no grammar. */
smp_params smp_params_default(void);

/* VT_OK, or VT_ERR_INVALID with a message naming the field and the value
 * (e.g. "top_p must be in (0, 1], got 1.5"). n_vocab > 0 bounds logit_bias. */
vt_err smp_params_validate(const smp_params *p, int32_t n_vocab);

typedef struct {
    int32_t token;
    float logprob;
} smp_token_logprob;

/* Filled by smp_sample() when asked for. */
typedef struct {
    int32_t token;   /* the sampled token */
    float logprob;   /* its log-probability */
    int32_t n_top;   /* entries in top[]: min(top_logprobs, n_vocab) */
    smp_token_logprob top[SMP_MAX_TOP_LOGPROBS]; /* most likely first, ties by id */
} smp_logprobs;

typedef struct smp_state smp_state;

/* A sampler for one sequence over a vocabulary of n_vocab tokens. end_ids
 * (n_end of them, may be NULL when n_end is 0) are the end-of-generation
 * tokens (EOS, EOT, ...). Validates params (see smp_params_validate); copies
 * everything it keeps. *out is NULL on failure. Free with smp_destroy(). */
vt_err smp_create(const smp_params *params, int32_t n_vocab, const int32_t *end_ids,
                  int32_t n_end, smp_state **out);
/* NULL is a no-op. */
void smp_destroy(smp_state *s);

/* The seed actually in use (the drawn one for SMP_SEED_RANDOM). */
uint64_t smp_seed(const smp_state *s);

/* The next token from logits[n_vocab] (not modified; NaN counts as -inf).
 * history[n_history] are the sequence's tokens so far, oldest first, for the
 * penalties (may be NULL when n_history is 0). lp, if not NULL, receives the
 * logprobs. Returns the token id, or -1 with vt_last_error() set when n_vocab
 * differs from the state's, a history id is out of range, no token has a
 * finite logit, or the grammar allows no token (the message says so). History ids are read (and checked) only while a penalty is
 * on. Costs O(n_vocab) with small constants (about 0.3-1 ms for 152k tokens
 * on one core); no step sorts the vocabulary. */
int32_t smp_sample(smp_state *s, const float *logits, int32_t n_vocab, const int32_t *history,
                   size_t n_history, smp_logprobs *lp);

/* What smp_sample() would draw from, without drawing: writes the surviving
 * candidate ids (ascending) to ids[] and the probabilities the draw uses
 * (after temperature, summing to 1) to probs[] (either may be NULL; each has
 * room for n_vocab). Returns their number, or -1 as smp_sample(). Greedy
 * gives the argmax alone with probability 1. For tests and debugging. */
int32_t smp_candidates(smp_state *s, const float *logits, int32_t n_vocab,
                       const int32_t *history, size_t n_history, int32_t *ids, float *probs);

/* Applies params' logit bias and then its penalties to logits[n_vocab] in
 * place, exactly as smp_sample() does. VT_ERR_INVALID on a bad history id or
 * invalid params; VT_ERR_NOMEM. */
vt_err smp_apply_penalties(const smp_params *params, float *logits, int32_t n_vocab,
                           const int32_t *history, size_t n_history);

typedef enum {
    SMP_CONTINUE = 0,
    SMP_FINISH_EOS,    /* an end-of-generation token was sampled */
    SMP_FINISH_STOP,   /* a stop string completed */
    SMP_FINISH_LENGTH, /* max_tokens reached */
} smp_finish;

/* OpenAI's finish_reason: "stop" (EOS or stop string), "length", or NULL for
 * SMP_CONTINUE. */
const char *smp_finish_reason(smp_finish f);

typedef struct {
    const char *text; /* to send now; valid until the next call on the state */
    size_t len;
    smp_finish finish;  /* SMP_CONTINUE while generation goes on */
    int32_t stop_index; /* with SMP_FINISH_STOP: which params.stop[] matched; else -1 */
} smp_emit;

/* Records the sampled token and its detokenized text piece[len] (ignored for
 * an end token that ends generation; may be NULL when len is 0). Precedence
 * when several apply: end token, then stop string, then max_tokens. When
 * generation ends, out->text also carries any held-back text that did not turn
 * into a stop string. VT_ERR_INVALID if the sequence already finished or the
 * grammar refuses the token; VT_ERR_NOMEM. */
vt_err smp_accept(smp_state *s, int32_t token, const char *piece, size_t len, smp_emit *out);

/* Ends generation for another reason (context full, cancelled): releases the
 * held-back text. out->finish is left SMP_CONTINUE for the caller to decide. */
void smp_flush(smp_state *s, smp_emit *out);

/* Generated tokens accepted so far. */
int32_t smp_n_generated(const smp_state *s);

/* ---- The incremental stop-string matcher (stop.c) ---- */

typedef struct smp_stop smp_stop;

/* Copies the n_stop strings (each non-empty, at most SMP_MAX_STOP_LEN bytes,
 * n_stop <= SMP_MAX_STOP). *out is NULL on failure. */
vt_err smp_stop_create(const char *const *stops, int32_t n_stop, smp_stop **out);
/* NULL is a no-op. */
void smp_stop_destroy(smp_stop *m);

/* Feeds the next piece[len] of text (bytes; may split UTF-8 characters;
 * piece may be NULL when len is 0). last: no more text will follow, so
 * nothing is held back. *text and *text_len: what may be emitted now, valid until
 * the next call (never NULL).
 * *matched: -1, or the index of the stop string that completed; the emitted
 * text then stops right before it, and later feeds emit nothing. Of several
 * stop strings the one that completes first wins, the longest on a tie, so the
 * result does not depend on how the text was split into pieces.
 * VT_ERR_NOMEM. */
vt_err smp_stop_feed(smp_stop *m, const char *piece, size_t len, bool last, const char **text,
                     size_t *text_len, int32_t *matched);

/* Releases whatever is held back (nothing after a match); the same as
 * feeding nothing with last = true. */
void smp_stop_flush(smp_stop *m, const char **text, size_t *text_len);

/* The stop string that matched, or -1. */
int32_t smp_stop_matched(const smp_stop *m);

#endif
