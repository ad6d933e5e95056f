/*
 * kv.h - the paged KV cache's block manager: which physical KV block holds
 * which tokens of which sequence.
 *
 * Pure bookkeeping over block ids 0..n_blocks-1 (the K/V data itself lives in
 * model/'s md_kv; this module never touches it and does no I/O and no math
 * beyond hashing). vLLM's model:
 *
 *  - A sequence (kv_seq) owns a block table: logical block i of the sequence
 *    is physical block table[i]. Blocks are filled front to back,
 *    block_size token slots each.
 *  - Every block has a reference count: the number of sequences whose table
 *    holds it. kv_fork() shares all of a sequence's blocks with a new one (n > 1
 *    completions of one prompt). A sequence about to write into a block that
 *    others share (only its last, partial block can be shared) gets a private
 *    copy first: copy-on-write, reported to the caller as a kv_copy to perform
 *    on the K/V data before the next forward pass.
 *  - Automatic prefix caching: once a block is full, it is named by
 *    hash(parent block's hash, its block_size token ids, the pool's salt and
 *    the sequence's salt) and entered into a table. A new sequence whose
 *    prompt starts with the same tokens reuses those blocks instead of
 *    computing them (kv_seq_create). The tokens of each cached block are
 *    kept and compared on a hit, with the salt and the parent block (see
 *    kv.c), so a hash collision can never hand out wrong K/V. A block
 *    whose reference count drops to 0 keeps its hash and stays reusable
 *    ("cached"), in an LRU list; it is evicted (its hash
 *    forgotten) only when a block is needed and no never-used/forgotten free
 *    block is left. When a sequence is freed its blocks enter the LRU list
 *    tail first (its last blocks are evicted before its first ones, since a
 *    longer prefix is less likely to be shared).
 *
 * Counting: "used" blocks are held by at least one live sequence; "cached"
 * blocks have reference count 0 but a hash (reusable, evictable); "free"
 * blocks are every block not used (cached ones included), i.e. what an
 * allocation can get.
 *
 * Not thread-safe: one pool belongs to one thread (the engine's).
 * Failure: functions returning vt_err set vt_last_error(); on failure
 * nothing changed unless said otherwise.
 */
#ifndef VT_KV_H
#define VT_KV_H

#include <stdbool.h>
#include <stdint.h>

#include "vitamin.h"

#define KV_DEFAULT_BLOCK_SIZE 16

typedef struct kv_pool kv_pool;
typedef struct kv_seq kv_seq;

typedef struct {
    int64_t n_blocks;    /* blocks in the pool (>= 1) */
    int32_t block_size;  /* token slots per block; 0: KV_DEFAULT_BLOCK_SIZE */
    bool prefix_caching; /* name full blocks and reuse them */
    uint64_t salt;       /* mixed into every block hash (e.g. the model's identity) */
} kv_config;

/* vLLM's answer to "can this request get its blocks?". */
typedef enum {
    KV_OK,    /* enough free blocks now */
    KV_LATER, /* not now, but the pool is big enough once others finish */
    KV_NEVER, /* bigger than the whole pool: refuse the request */
} kv_alloc_status;

/* A block copy the caller must perform on the K/V data (dst = src) before
 * the forward pass that writes into dst. */
typedef struct {
    int32_t src, dst;
} kv_copy;

typedef struct {
    int64_t blocks_total;
    int64_t blocks_used;   /* held by live sequences */
    int64_t blocks_cached; /* refcount 0, hash kept, reusable */
    int64_t blocks_free;   /* total - used (cached included) */
    int64_t prefix_queries; /* tokens looked up in the prefix cache (kv_seq_create) */
    int64_t prefix_hits;    /* of those, tokens found cached */
    int64_t evictions;      /* cached blocks whose hash was forgotten for reuse */
    int64_t cow_copies;     /* copy-on-write copies handed out */
    int64_t backing_hits;   /* of prefix_hits, tokens loaded from the backing store */
    int64_t backing_stores; /* blocks handed to the backing store */
} kv_stats;

/* NULL on failure (VT_ERR_INVALID for a bad config, VT_ERR_NOMEM). */
kv_pool *kv_pool_create(const kv_config *cfg);
/* Frees the pool; sequences still open are freed with it. NULL: no-op. */
void kv_pool_destroy(kv_pool *p);
int32_t kv_block_size(const kv_pool *p);
int64_t kv_n_blocks(const kv_pool *p);
void kv_get_stats(const kv_pool *p, kv_stats *out);

/* Blocks needed to hold n tokens. */
int64_t kv_blocks_for(const kv_pool *p, int64_t n_tokens);

/* Could a new sequence that needs n_tokens slots now, and at most max_tokens
 * slots over its whole life, get its blocks? NEVER when max_tokens (or
 * n_tokens) needs more blocks than the pool has; OK when n_tokens' blocks are
 * free now (cached blocks count as free; blocks the sequence would find in the
 * prefix cache are not subtracted - that only makes OK conservative); else
 * LATER. Does not change anything. */
kv_alloc_status kv_can_allocate(const kv_pool *p, int64_t n_tokens, int64_t max_tokens);

/* Opens a sequence whose tokens will be prompt[0..n) followed by whatever is
 * appended. With prefix caching, the longest run of full blocks of the prompt
 * found in the cache is attached at once (their reference counts raised),
 * but never all n tokens: at least the last prompt token is left to compute,
 * so that its logits exist. *n_cached (may be NULL) receives the number of
 * tokens attached (a multiple of the block size); the sequence then counts
 * them as computed. With a backing store (kv_set_backing), the blocks after
 * those are asked of it while it has them and free blocks are left: each
 * one it fills is allocated, named and attached (allocation may evict
 * cached blocks, in LRU order). seq_salt is mixed into this sequence's block hashes (0:
 * none; different salts never share blocks - e.g. per-user isolation).
 * Allocates no block beyond the cached ones and those the backing store
 * fills (kv_append_slots does).
 * A prompt of exactly k full blocks, all cached, attaches k - 1 of them: the
 * last block is recomputed whole (a full block is never written again, so
 * reusing it for k*bs - 1 tokens would need a copy; recomputing bs tokens is
 * the simple correct choice, as in vLLM). prefix_queries counts the n prompt
 * tokens, prefix_hits the *n_cached of them (with prefix caching only).
 * NULL on VT_ERR_NOMEM (host memory, not blocks) and VT_ERR_INVALID (p NULL,
 * n < 0, prompt NULL with n > 0). */
kv_seq *kv_seq_create(kv_pool *p, const int32_t *prompt, int64_t n, uint64_t seq_salt,
                      int64_t *n_cached);

/* Makes room for the next n_new tokens of s (positions n_computed ..
 * n_computed + n_new - 1): allocates blocks as needed (evicting cached blocks
 * in LRU order when no other free block is left) and, when the block about to
 * be written is shared with another sequence, replaces it in s's table by a
 * private copy and reports it in *copy (*n_copies receives 0 or 1; copy may
 * be NULL only if the caller knows no fork happened: a copy needed with copy
 * NULL is VT_ERR_INVALID, nothing changed). Afterwards n_reserved is
 * max(n_reserved, n_new): a second call before kv_commit does not add up.
 * VT_ERR_NOMEM (nothing changed) when the pool has too few free blocks: the
 * scheduler must preempt someone or wait. VT_ERR_INVALID for NULL
 * arguments or n_new < 0, VT_ERR_RANGE when n_computed + n_new overflows. */
vt_err kv_append_slots(kv_pool *p, kv_seq *s, int64_t n_new, kv_copy *copy, int *n_copies);

/* Records that tokens[0..n) were written at positions n_computed .. +n-1
 * (into slots kv_append_slots made room for); each block this fills is named
 * and entered into the prefix cache (unless an identical block is already
 * there: then the table keeps that one and this block stays unnamed).
 * VT_ERR_RANGE if there are not n slots reserved; VT_ERR_INVALID for NULL
 * arguments, n < 0 or tokens NULL with n > 0. Nothing changed on failure. */
vt_err kv_commit(kv_pool *p, kv_seq *s, const int32_t *tokens, int64_t n);

/* A new sequence sharing every block of s (reference counts raised), with the
 * same tokens, computed count and hash chain. NULL on VT_ERR_NOMEM, and on
 * VT_ERR_INVALID when s has slots reserved but not committed (fork between
 * steps: a reservation made while s was the only owner of its last block
 * would let it write into a shared block without a copy). */
kv_seq *kv_fork(kv_pool *p, kv_seq *s);

/* Closes s: every block's count drops; a block reaching 0 becomes cached if
 * it has a hash, else plainly free. NULL: no-op. */
void kv_seq_free(kv_pool *p, kv_seq *s);

/* The block table (valid until the next call that changes s) and its length. */
const int32_t *kv_seq_blocks(const kv_seq *s, int64_t *n_blocks);
/* Tokens whose K/V is in s's blocks (committed, cached prefix included). */
int64_t kv_seq_n_computed(const kv_seq *s);
/* Slots reserved by kv_append_slots beyond n_computed. */
int64_t kv_seq_n_reserved(const kv_seq *s);

/* Reference count of block b (tests, metrics); -1 if b is out of range. */
int32_t kv_block_refcount(const kv_pool *p, int32_t b);

/* Called with a cached block's id and hash just before it is evicted (its
 * K/V is about to be overwritten): the hook for a disk "drawer" that keeps
 * evicted prefixes. NULL: none. Called once per eviction, from inside
 * kv_append_slots, while the block is still cached; it must not call
 * functions that change the pool. */
typedef void (*kv_evict_fn)(void *ctx, int32_t block, uint64_t hash);
void kv_set_evict_hook(kv_pool *p, kv_evict_fn fn, void *ctx);

/* ---- a backing store for blocks the pool lets go (the "drawer") ----
 *
 * A named block that becomes cached (its last sequence freed it: the
 * conversation went idle) or is evicted without having been offered yet is
 * offered to the store; a new sequence whose prompt runs past the blocks the
 * pool still has asks the store for the following blocks, one at a time, and
 * attaches each one the store fills (counted as cached tokens). The store
 * does the I/O and the K/V copying; the pool only says which block holds
 * which identity. A block is identified by two independent 64-bit hash
 * chains over all the tokens up to its end (the prefix cache's hash and a
 * second one), the salts, its place in the sequence and its own tokens: the
 * store must compare all of them before it fills a block. */
typedef struct {
    uint64_t hash;         /* the prefix-cache hash (chains every earlier block) */
    uint64_t check;        /* an independent second hash chain over the same tokens */
    uint64_t pool_salt, seq_salt;
    int64_t index;         /* the block holds the sequence's tokens index*bs .. +bs-1 */
    const int32_t *tokens; /* its block_size tokens */
    int32_t block_size;
} kv_block_id;

typedef struct {
    /* Could load() fill a block of this identity? Cheap (no I/O). */
    bool (*has)(void *ctx, const kv_block_id *id);
    /* Fills physical block `block` (just allocated, K/V to be overwritten)
     * with the stored K/V of id after checking the identity and the data:
     * true when done; false leaves the block's contents undefined (the pool
     * frees it unnamed). */
    bool (*load)(void *ctx, int32_t block, const kv_block_id *id);
    /* Offers named block `block` (K/V valid now, overwritten later): true
     * when the store keeps it (copied now, or already held); the pool offers
     * it again only after it was evicted and named anew. */
    bool (*store)(void *ctx, int32_t block, const kv_block_id *id);
} kv_backing;

/* Sets (or with ops NULL removes) the pool's backing store; ops and ctx must
 * outlive the pool or the next call. Only with prefix caching (else a no-op).
 * Called from the pool's own thread, inside kv_seq_create (has, load),
 * kv_seq_free and kv_append_slots (store). */
void kv_set_backing(kv_pool *p, const kv_backing *ops, void *ctx);

/* ---- additions for the scheduler, metrics and tests ---- */

/* Free blocks kv_append_slots(p, s, n_new) would take now: new blocks for
 * the positions not yet covered plus 1 for a copy-on-write copy. The
 * scheduler compares it with kv_stats.blocks_free to decide whom to preempt
 * before it calls kv_append_slots. -1 (VT_ERR_INVALID) on bad arguments. */
int64_t kv_append_blocks(const kv_pool *p, const kv_seq *s, int64_t n_new);

/* True if block b is named (in the prefix cache); its hash in *hash (may be
 * NULL). False for an unnamed or out-of-range block. */
bool kv_block_hash(const kv_pool *p, int32_t b, uint64_t *hash);

/* The function that names a full block: parent is the previous block's hash
 * (0 for a sequence's first block), tokens[0..n) the block's tokens.
 * kv_hash_default (see kv.c) is a 64-bit multiply-xorshift chain; a hit is
 * always verified (tokens, salt, parent block), so a weak function only costs
 * hits, never correctness. */
typedef uint64_t (*kv_hash_fn)(uint64_t parent, const int32_t *tokens, int32_t n,
                               uint64_t pool_salt, uint64_t seq_salt);
uint64_t kv_hash_default(uint64_t parent, const int32_t *tokens, int32_t n, uint64_t pool_salt,
                         uint64_t seq_salt);
/* Replaces the hash function (tests inject collisions with it); NULL: the
 * default. VT_ERR_INVALID once any block has been named. */
vt_err kv_set_hash_fn(kv_pool *p, kv_hash_fn fn);

/* Checks every invariant of the pool (reference counts equal the number of
 * live block tables holding each block; used + free = total; the free and
 * LRU lists and the hash table agree with the blocks' states; counters
 * exact). VT_OK, or VT_ERR_INTERNAL with the first violation in
 * vt_last_error(). O(blocks + table entries): for tests and debug builds. */
vt_err kv_check(const kv_pool *p);

#endif
