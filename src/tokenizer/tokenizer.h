/*
 * tokenizer.h - text <-> token ids, exactly as llama.cpp tokenizes.
 *
 * Two vocabulary types, read from GGUF metadata (tokenizer.ggml.*):
 *   - `llama`: SentencePiece-style. A space is prefixed to the text (when
 *     add_space_prefix, the default), spaces become U+2581 '▁', adjacent
 *     pieces merge by highest score, and what no token covers falls back to
 *     <0xNN> byte tokens.
 *   - `gpt2`: byte-level BPE. The text is split into words by the
 *     pre-tokenizer named in tokenizer.ggml.pre (hand-written matchers for
 *     llama.cpp's regexes, over real Unicode classes, see tok_pretok.c), each
 *     word's bytes are mapped to printable code points (GPT-2's byte
 *     encoding) and merged by merge rank. Supported pre-tokenizers: default,
 *     gpt-2 (phi-2), mpt, llama-bpe (llama3, llama-v3, falcon3, pixtral, ...),
 *     qwen2 (deepseek-r1-qwen), qwen35, deepseek-llm, deepseek-coder, falcon,
 *     starcoder, refact, command-r. Any other name fails to load with
 *     VT_ERR_UNSUPPORTED naming it.
 *
 * Special tokens: control and unknown-type tokens are recognised in the text
 * only when parse_special is set; user-defined tokens always are (as
 * llama.cpp does). Longer special tokens are matched first.
 *
 * Invalid UTF-8 in the text given to tok_encode() never fails: for SPM
 * vocabularies the bytes go through unchanged (and end up as <0xNN> byte
 * tokens); for BPE vocabularies each byte that does not start a sequence of
 * the right length is replaced by U+FFFD before pre-tokenization, exactly as
 * llama.cpp does (llama.cpp also accepts overlong forms and surrogates; so do
 * we). The one departure: a 4-byte form above U+10FFFF, on which llama.cpp
 * throws and aborts, is treated here as an invalid lead byte (U+FFFD).
 *
 * Ownership: tok_load() copies everything it needs from the gguf_file, which
 * may be closed right after. A tok_tokenizer is immutable once loaded and may
 * be used from several threads at once; a tok_stream belongs to one thread.
 * Token ids are int32_t; TOK_NULL (-1) means "no such token".
 */
#ifndef VT_TOKENIZER_H
#define VT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "vitamin.h"

#define TOK_NULL (-1)

typedef enum { TOK_VOCAB_SPM = 1, TOK_VOCAB_BPE = 2 } tok_vocab_type;

/* Token attributes (bit values as llama.cpp's llama_token_attr). From
 * tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined,
 * 5 unused, 6 byte, anything else undefined. */
#define TOK_ATTR_UNDEFINED 0u
#define TOK_ATTR_UNKNOWN (1u << 0)
#define TOK_ATTR_UNUSED (1u << 1)
#define TOK_ATTR_NORMAL (1u << 2)
#define TOK_ATTR_CONTROL (1u << 3)
#define TOK_ATTR_USER_DEFINED (1u << 4)
#define TOK_ATTR_BYTE (1u << 5)
#define TOK_ATTR_LSTRIP (1u << 7) /* whitespace left of it is dropped when matched */
#define TOK_ATTR_RSTRIP (1u << 8) /* whitespace right of it is dropped when matched */

typedef struct tok_tokenizer tok_tokenizer;

/* ---- loading ---- */

/* Builds a tokenizer from the tokenizer.ggml.* metadata of f. Fails with
 * VT_ERR_NOT_FOUND (no tokenizer.ggml.model / tokens / merges),
 * VT_ERR_FORMAT (wrong types, array lengths that disagree, duplicate or
 * oversized token texts), VT_ERR_UNSUPPORTED (another tokenizer model, an
 * unknown pre-tokenizer) or VT_ERR_NOMEM; the message names the key. Special
 * token ids out of range are ignored (the default is kept), as llama.cpp
 * does. On failure *out is NULL. */
vt_err tok_load(const gguf_file *f, tok_tokenizer **out);
void tok_destroy(tok_tokenizer *t); /* NULL is a no-op */

/* ---- vocabulary ---- */
int32_t tok_n_vocab(const tok_tokenizer *t);
tok_vocab_type tok_type(const tok_tokenizer *t);
/* The pre-tokenizer name as given in the file ("default" if absent, and for
 * SPM vocabularies, which have none). */
const char *tok_pre_name(const tok_tokenizer *t);
/* Special ids, TOK_NULL where the vocabulary has none. */
int32_t tok_bos(const tok_tokenizer *t);
int32_t tok_eos(const tok_tokenizer *t);
int32_t tok_eot(const tok_tokenizer *t); /* end of turn (e.g. <|eot_id|>, <|im_end|>) */
int32_t tok_eom(const tok_tokenizer *t); /* end of message (<|eom_id|>) */
int32_t tok_pad(const tok_tokenizer *t);
int32_t tok_unk(const tok_tokenizer *t);
int32_t tok_nl(const tok_tokenizer *t); /* the newline token */
/* Does add_special add BOS / EOS for this model? */
bool tok_add_bos(const tok_tokenizer *t);
bool tok_add_eos(const tok_tokenizer *t);
bool tok_add_space_prefix(const tok_tokenizer *t);
/* Does generation stop at this token (EOS, EOT, EOM and the end-of-text
 * tokens llama.cpp recognises by their text)? False for invalid ids. */
bool tok_is_eog(const tok_tokenizer *t, int32_t id);
/* Attributes (TOK_ATTR_*), 0 for invalid ids. */
uint32_t tok_attr(const tok_tokenizer *t, int32_t id);
float tok_score(const tok_tokenizer *t, int32_t id);
/* The token's text as stored in the vocabulary (not NUL-terminated), NULL
 * with *len = 0 for invalid ids. Valid while t lives. */
const char *tok_text(const tok_tokenizer *t, int32_t id, size_t *len);
/* The id whose vocabulary text is exactly text[0..len), or TOK_NULL. */
int32_t tok_find(const tok_tokenizer *t, const char *text, size_t len);

/* ---- encoding ---- */

/* Tokenizes text[0..len) (any bytes, see above for invalid UTF-8) into a
 * newly allocated array *ids of *n_ids tokens, which the caller frees with
 * free() (*ids may be NULL when *n_ids is 0). add_special adds BOS/EOS as the
 * model's add_bos/add_eos flags say; parse_special recognises control tokens
 * written as text (e.g. "<|im_start|>"). Fails only with VT_ERR_NOMEM, or
 * VT_ERR_INVALID for a NULL argument or a text over 1 GiB, leaving *ids NULL
 * and *n_ids 0. Speed: ~15 MB/s of mixed text with the Llama-3 or Qwen2
 * vocabulary on one core (several times llama.cpp's). */
vt_err tok_encode(const tok_tokenizer *t, const char *text, size_t len, bool add_special,
                  bool parse_special, int32_t **ids, size_t *n_ids);
/* The number of tokens tok_encode gives for text[0..len) (nothing added or
 * parsed); when it fails (out of memory), an overestimate: len / 2 + 1. */
size_t tok_count(const tok_tokenizer *t, const char *text, size_t len);

/* ---- decoding ---- */

/* The text of one token (llama.cpp's token_to_piece): SPM '▁' becomes a
 * space and <0xNN> the byte NN; byte-level BPE pieces are mapped back to
 * their bytes (so a piece may be part of a UTF-8 character); user-defined
 * tokens are their text. Control and unknown tokens give their text only if
 * special, else "" (as do unused/undefined tokens and invalid ids). Points
 * into t, valid while t lives; not NUL-terminated. */
const char *tok_piece(const tok_tokenizer *t, int32_t id, bool special, size_t *len);

/* Whole-sequence detokenization, exactly llama.cpp's llama_detokenize: the
 * pieces concatenated, the first token's leading space removed for models
 * that prefix one (SPM), with remove_special a leading BOS / trailing EOS
 * dropped (when the model adds them), and for BPE vocabularies whose
 * pre-tokenizer asks for it (gpt-2, llama-bpe, falcon, mpt, starcoder,
 * refact, default) the clean-up of spaces before punctuation and
 * contractions (" ." -> ".", " 's" -> "'s", ...). Writes a newly allocated
 * NUL-terminated string (caller frees) to *text and its length to *len.
 * VT_ERR_RANGE for an id outside the vocabulary; VT_ERR_NOMEM. */
vt_err tok_detokenize(const tok_tokenizer *t, const int32_t *ids, size_t n_ids, bool remove_special,
                      bool unparse_special, char **text, size_t *len);

/* Streaming detokenization for generated tokens: each tok_stream_push
 * returns the text that became complete, never half of a UTF-8 character
 * (an incomplete sequence at the end is held back until the token that
 * completes it, or until tok_stream_flush). Pieces are concatenated as they
 * are (no clean-up of spaces, as llama.cpp's own generation output), except
 * that with strip_leading_space the very first piece loses one leading
 * space (what tok_detokenize does for SPM models). Invalid UTF-8 that can
 * no longer complete is passed through as it is. */
typedef struct tok_stream tok_stream;

/* NULL on OOM. special: print control tokens' text. */
tok_stream *tok_stream_create(const tok_tokenizer *t, bool special, bool strip_leading_space);
void tok_stream_destroy(tok_stream *s);
/* Adds a token; *text and *len receive what may be printed now (valid until the
 * next call on s). VT_ERR_RANGE for an invalid id, VT_ERR_NOMEM. */
vt_err tok_stream_push(tok_stream *s, int32_t id, const char **text, size_t *len);
/* Returns whatever is still held back (possibly an incomplete character)
 * and resets the stream for a new sequence. */
void tok_stream_flush(tok_stream *s, const char **text, size_t *len);

#endif
