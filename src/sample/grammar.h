/*
 * grammar.h - grammar-constrained sampling: GBNF grammars (llama.cpp's
 * dialect), JSON Schema and regular expressions compiled to one grammar
 * form, and a per-sequence matcher that says which tokens of a vocabulary
 * may come next.
 *
 * Three objects:
 *  - smp_grammar_vocab: a vocabulary's token byte strings and a trie over
 *    them, built once per model (smp_grammar_vocab_create) and shared; it
 *    also caches compiled grammars by text (smp_grammar_vocab_get).
 *  - smp_grammar: a compiled grammar bound to a vocabulary, reference
 *    counted, read-only to its users (its mask cache fills itself under a
 *    lock), so any number of sequences on any threads may share it.
 *  - smp_grammar_state: where one sequence is inside the grammar (a set of
 *    pushdown stacks over byte positions, so tokens may split UTF-8
 *    characters). Advance it by tokens or bytes, ask for the mask of allowed
 *    tokens, clone it for forked sequences.
 *
 * The mask of a state is the union, over its stacks, of a cached
 * per-context answer: for the stack's top position and its nearest return
 * frames, which tokens are certainly accepted and which depend on frames
 * further down; only the latter are checked against the whole stack, on
 * each step, by walking them in trie order. The cache is computed lazily
 * with one walk of the vocabulary trie per context, pruning whole subtrees.
 */
#ifndef VT_GRAMMAR_H
#define VT_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vitamin.h"

typedef enum {
    SMP_GRAMMAR_GBNF = 1,    /* GBNF text, start rule "root" */
    SMP_GRAMMAR_JSON_SCHEMA, /* a JSON Schema (text of a JSON object) */
    SMP_GRAMMAR_REGEX,       /* a regular expression the whole output must match */
    SMP_GRAMMAR_JSON_OBJECT, /* any JSON object; the text is ignored (may be NULL) */
} smp_grammar_kind;

typedef struct smp_grammar_vocab smp_grammar_vocab;
typedef struct smp_grammar smp_grammar;
typedef struct smp_grammar_state smp_grammar_state;

/* A vocabulary of n_vocab tokens: token i is the bytes piece[i][0..len[i]);
 * a token of length 0 (control tokens, unused ids) is never allowed by a
 * grammar (the caller decides about end tokens). Copies what it keeps.
 * VT_ERR_INVALID, VT_ERR_NOMEM; *out NULL on failure. */
vt_err smp_grammar_vocab_create(int32_t n_vocab, const char *const *piece, const size_t *len,
                                smp_grammar_vocab **out);
/* Drops the cached grammars' references. NULL is a no-op. */
void smp_grammar_vocab_destroy(smp_grammar_vocab *v);
int32_t smp_grammar_vocab_size(const smp_grammar_vocab *v);

/* Compiles text[0..len) of the given kind for vocabulary v (NULL: for
 * matching text only; masks then fail). The new grammar has one reference,
 * the caller's. VT_ERR_FORMAT (syntax, with line and column), VT_ERR_UNSUPPORTED
 * (a JSON Schema keyword or regex feature not supported, named), VT_ERR_INVALID,
 * VT_ERR_NOMEM; *out NULL on failure. */
vt_err smp_grammar_compile(smp_grammar_kind kind, const char *text, size_t len,
                           const smp_grammar_vocab *v, smp_grammar **out);
/* The same through v's cache of the last few grammars: the same kind and
 * text give the same compiled grammar (and its filled mask cache). A new
 * reference for the caller. Thread-safe. */
vt_err smp_grammar_vocab_get(smp_grammar_vocab *v, smp_grammar_kind kind, const char *text,
                             size_t len, smp_grammar **out);
/* Another reference (returns g). */
smp_grammar *smp_grammar_ref(smp_grammar *g);
/* Drops a reference; the last one frees. NULL is a no-op. */
void smp_grammar_unref(smp_grammar *g);
/* True when g's language is finite (no rule reachable from the root can
 * recur): generation under it always ends by itself. False also on OOM. */
bool smp_grammar_bounded(const smp_grammar *g);
/* The vocabulary size g was compiled for, or -1 without one. */
int32_t smp_grammar_n_vocab(const smp_grammar *g);
/* Rules after rewriting (groups and repetitions become rules). */
uint32_t smp_grammar_n_rules(const smp_grammar *g);

/* The GBNF a JSON Schema (or, with schema NULL, "any JSON object") or a
 * regular expression compiles to: a newly allocated NUL-terminated string
 * the caller frees. VT_ERR_FORMAT for text that is not valid JSON / regex
 * syntax; VT_ERR_UNSUPPORTED naming the keyword or feature; VT_ERR_NOMEM. */
vt_err smp_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf);
vt_err smp_regex_to_gbnf(const char *re, size_t len, char **gbnf);

/* A state at the start of g (takes a reference on g). VT_ERR_NOMEM. */
vt_err smp_grammar_state_create(smp_grammar *g, smp_grammar_state **out);
/* An independent copy (forked sequences); NULL on OOM. */
smp_grammar_state *smp_grammar_state_clone(const smp_grammar_state *s);
/* NULL is a no-op. */
void smp_grammar_state_destroy(smp_grammar_state *s);

/* True when the text so far is a complete sentence of the grammar (end of
 * generation allowed). */
bool smp_grammar_accepts_eos(const smp_grammar_state *s);
/* True when nothing more can be appended (complete and no continuation). */
bool smp_grammar_finished(const smp_grammar_state *s);

/* Advances by bytes b[0..n). VT_ERR_INVALID (state unchanged) if the
 * grammar cannot continue with them; VT_ERR_NOMEM. */
vt_err smp_grammar_accept_bytes(smp_grammar_state *s, const char *b, size_t n);
/* Advances by a token's bytes (of the grammar's vocabulary). VT_ERR_INVALID
 * for an id outside it, an empty token, or one the grammar refuses. */
vt_err smp_grammar_accept_token(smp_grammar_state *s, int32_t token);
/* Could token come next (its bytes all taken)? s unchanged. False for
 * invalid or empty tokens and on OOM. */
bool smp_grammar_can_take(smp_grammar_state *s, int32_t token);
/* Does the whole text b[0..n) match from s (and end complete)? s unchanged. */
bool smp_grammar_matches(const smp_grammar_state *s, const char *b, size_t n);

/* The allowed next tokens: sets bit t of mask[] (n_vocab bits, (n_vocab +
 * 63) / 64 words, all written) for each token t whose bytes the grammar can
 * take next. End tokens are the caller's (see smp_grammar_accepts_eos).
 * Returns the number of allowed tokens, or -1 with vt_last_error() on OOM,
 * for a grammar without a vocabulary, or for one so ambiguous that a step
 * meets more than 65,536 distinct sets of parser stacks (the mask cache of
 * a grammar is bounded: at most 2,048 contexts and 4,096 cached sets kept
 * between steps). */
int32_t smp_grammar_mask(smp_grammar_state *s, uint64_t *mask);

/* Counters of g's mask cache (for benchmarks): contexts cached, and the
 * sum of their "depends on the frames below" token lists. */
void smp_grammar_cache_stats(const smp_grammar *g, uint32_t *contexts, uint64_t *unc_tokens);

#endif
