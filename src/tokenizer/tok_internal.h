/*
 * tok_internal.h - what the tokenizer's source files share and nothing else
 * should see: the tok_tokenizer struct, the string hash map, the
 * pre-tokenizer kinds, and the per-file entry points (tok_vocab.c loads,
 * tok_pretok.c splits words, tok_bpe.c and tok_spm.c turn text into ids,
 * tok_encode.c drives them, tok_decode.c turns ids back into text).
 */
#ifndef VT_TOK_INTERNAL_H
#define VT_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tokenizer/tokenizer.h"
#include "util/util.h"

/* ---- hashing and the string -> int32 map ---- */

static inline uint64_t tok_hash(const void *data, size_t n)
{
    const uint8_t *s = data;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)s[i] << (8 * i);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

/* Open addressing, linear probing. Keys are byte strings stored elsewhere
 * (an arena passed to every call), referenced by offset and length. */
typedef struct {
    uint32_t hash; /* low 32 bits of tok_hash */
    uint32_t len;
    uint32_t off;
    int32_t val; /* -1: empty slot */
} tok_slot;

typedef struct {
    tok_slot *slots;
    uint32_t mask; /* capacity - 1 */
    uint32_t count;
} tok_strmap;

bool tok_map_init(tok_strmap *m, size_t expected);
void tok_map_free(tok_strmap *m);
/* The value for key, or -1. */
int32_t tok_map_get(const tok_strmap *m, const char *arena, const void *key, size_t len);
/* Inserts (key stored at arena+off) -> val unless present; returns the value
 * now in the map (the old one if the key was there), or INT32_MIN when the
 * map could not grow (out of memory). */
int32_t tok_map_put(tok_strmap *m, const char *arena, uint32_t off, uint32_t len, int32_t val);

/* ---- merges: (left sid, right sid) -> (rank, merged sid) ---- */
typedef struct {
    uint64_t key; /* left << 32 | right; UINT64_MAX: empty */
    uint32_t rank;
    int32_t merged;
} tok_merge_slot;

/* ---- pre-tokenizers ---- */
typedef enum {
    TOK_PRE_NONE = 0, /* SPM: no pre-tokenizer */
    TOK_PRE_DEFAULT,
    TOK_PRE_GPT2, /* gpt-2, mpt, phi-2 */
    TOK_PRE_LLAMA3,
    TOK_PRE_QWEN2,
    TOK_PRE_QWEN35,
    TOK_PRE_DEEPSEEK_LLM,
    TOK_PRE_DEEPSEEK_CODER,
    TOK_PRE_FALCON,
    TOK_PRE_STARCODER, /* starcoder, refact, command-r */
} tok_pre_kind;

/* Splits code points [0, n) (with their tok_uc_flags in fl) into words and
 * writes each word's end index, in order, to ends (room for n entries);
 * scratch must also have room for n entries. Returns the number of words. */
size_t tok_pretok_split(tok_pre_kind kind, const uint32_t *cpt, const uint8_t *fl, size_t n,
                        uint32_t *ends, uint32_t *scratch);

/* ---- the tokenizer ---- */
struct tok_tokenizer {
    tok_vocab_type type;
    tok_pre_kind pre;
    char pre_name[64];
    uint32_t n_tokens;

    /* token texts: arena + offsets (texts are also NUL-terminated there) */
    char *text_arena;
    uint32_t *text_off, *text_len;
    float *score;
    uint32_t *attr;
    tok_strmap text_map; /* vocabulary text -> id */

    /* token_to_piece(id, special=true), cached (see tok_decode.c) */
    char *piece_arena;
    uint32_t *piece_off, *piece_len;

    int32_t bos, eos, eot, eom, unk, pad, nl;
    bool add_bos, add_eos, add_space_prefix, clean_spaces, ignore_merges;
    uint8_t *eog; /* n_tokens flags */

    /* special tokens for partitioning, longest first; first-two-byte index */
    int32_t *special;       /* ids */
    uint32_t n_special;
    int32_t *special_next;  /* per index in special[]: next with the same bucket, -1 */
    int32_t *special_head2; /* 65536 buckets keyed by the first two bytes (len >= 2) */
    int32_t special_head1[256]; /* length-1 special tokens by their byte */

    /* BPE: symbols are byte strings ("sids": token ids, then ids >= n_tokens
     * for strings that only occur inside merges) keyed by their raw bytes */
    char *raw_arena;
    size_t raw_len, raw_cap;
    tok_strmap raw_map;        /* raw bytes -> sid */
    int32_t byte_sid[256];     /* sid of each single byte */
    int32_t byte_fallback[256][2]; /* tokens for a byte no merge covers */
    tok_merge_slot *merges;
    uint64_t merge_mask;
    uint32_t n_sids;

    /* SPM: the token for each byte (<0xNN>, else the byte as text), -1 */
    int32_t spm_byte_tok[256];
};

/* Encodes one raw-text fragment (no special tokens in it) and appends the
 * ids to the growing array. The ws argument is per-call scratch. */
typedef struct {
    int32_t *ids;
    size_t n, cap;
} tok_idvec;

bool tok_idvec_push(tok_idvec *v, int32_t id);

/* A heap entry of the merge loops: a candidate pair (left, right) with the
 * lengths both had when it was found (stale once either changed). */
typedef struct {
    float key;     /* SPM: score (highest first); BPE: rank (lowest first) */
    uint32_t rank; /* BPE rank */
    uint32_t left, right;
    uint32_t llen, rlen;
    int32_t id; /* the merged token (SPM) or sid (BPE) */
} tok_pair;

/* Per-call working memory, grown as needed and reused across fragments and
 * words, so that encoding does not allocate per character or per word. */
typedef struct {
    uint32_t *cpt, *off, *ends, *ends2;
    uint8_t *fl;
    size_t cap_cpt;
    uint8_t *bytes; /* normalized UTF-8 (BPE) or escaped text (SPM) */
    size_t cap_bytes;
    int32_t *sym_id;
    uint32_t *sym_start, *sym_len;
    int32_t *sym_prev, *sym_next;
    size_t cap_sym;
    tok_pair *heap;
    size_t cap_heap, n_heap;
} tok_scratch;

void tok_scratch_free(tok_scratch *s);
bool tok_scratch_cpts(tok_scratch *s, size_t n);   /* room for n code points */
bool tok_scratch_bytes(tok_scratch *s, size_t n);  /* room for n bytes */
bool tok_scratch_syms(tok_scratch *s, size_t n);   /* room for n symbols */
bool tok_heap_push(tok_scratch *s, const tok_pair *p, bool spm);
tok_pair tok_heap_pop(tok_scratch *s, bool spm);

bool tok_bpe_encode(const tok_tokenizer *t, tok_scratch *s, const uint8_t *text, size_t len,
                    tok_idvec *out);
bool tok_spm_encode(const tok_tokenizer *t, tok_scratch *s, const uint8_t *text, size_t len,
                    bool space_prefix, tok_idvec *out);

/* Builds the BPE merge table from tokenizer.ggml.merges (tok_bpe.c). */
vt_err tok_bpe_build(tok_tokenizer *t, const gguf_value *merges);

/* Fills piece_* (tok_decode.c). */
vt_err tok_pieces_build(tok_tokenizer *t);

/* GPT-2 byte encoding: the code point standing for each byte, and back. */
uint32_t tok_byte_to_cpt(uint8_t b);
/* The byte a code point stands for, or -1. */
int tok_cpt_to_byte(uint32_t cpt);

#endif
