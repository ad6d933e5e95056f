/*
 * kv_internal.h - the block manager's data structures, shared by kv.c (the
 * verbs) and kv_check.c (the invariant checker); see kv.c for the design.
 * Not a public header: nothing outside src/kv/ includes it.
 */
#ifndef VT_KV_INTERNAL_H
#define VT_KV_INTERNAL_H

#include "kv/kv.h"

#define KV_MAX_BLOCKS (INT64_C(1) << 30)
#define KV_MAX_BLOCK_SIZE (1 << 16)

enum { IN_NONE = 0, IN_FREE = 1, IN_LRU = 2 };

typedef struct {
    uint64_t hash;  /* valid when named */
    uint64_t gen;   /* bumped each time the block is named or evicted */
    uint64_t salt;  /* the naming sequence's salt */
    uint64_t pgen;  /* the parent's generation when this block was named */
    int32_t ref;    /* tables holding this block */
    int32_t next, prev; /* list links (-1: none) */
    int32_t parent; /* block this one was named after, -1 for a first block */
    uint8_t list;   /* IN_NONE / IN_FREE / IN_LRU */
    bool named;
    bool stored;    /* named, and held by the backing store since */
    uint64_t check; /* with named: the second hash chain (kv_block_id) */
    int64_t index;  /* with named: the block's place in its sequence */
} kv_block;

typedef struct {
    int32_t head, tail;
    int64_t len;
} kv_list;

struct kv_seq {
    kv_seq *prev, *next; /* the pool's live sequences */
    int32_t *table;
    int64_t n_table, cap;
    int64_t n_computed, n_reserved;
    uint64_t salt;
    /* The hash chain (prefix caching): hash of the last full block (0 before
     * the first) and the named block standing for it (-1 before the first),
     * with its generation. chain_ok false: a collision broke the chain and
     * later blocks stay unnamed. */
    uint64_t chain_hash, chain_gen, chain_check;
    int32_t chain_id;
    bool chain_ok;
};

struct kv_pool {
    int64_t n_blocks;
    int32_t bs;
    bool caching;
    uint64_t salt;
    kv_block *blk;
    int32_t *tok; /* n_blocks * bs token ids (prefix caching only) */
    int32_t *ht;  /* hash table of named blocks, -1: empty */
    uint64_t ht_mask;
    int64_t n_named, n_used;
    kv_list freel, lru;
    kv_seq *seqs;
    int64_t n_seqs;
    int64_t prefix_queries, prefix_hits, evictions, cow_copies;
    kv_evict_fn evict;
    void *evict_ctx;
    kv_hash_fn hashfn;
    const kv_backing *backing;
    void *backing_ctx;
    int64_t backing_hits, backing_stores;
};

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static inline uint64_t ht_home(const kv_pool *p, uint64_t h)
{
    return mix64(h ^ UINT64_C(0x2545f4914f6cdd1d)) & p->ht_mask; /* weak test hashes too */
}

static inline int32_t ht_lookup(const kv_pool *p, uint64_t h)
{
    for (uint64_t i = ht_home(p, h);; i = (i + 1) & p->ht_mask) {
        int32_t b = p->ht[i];
        if (b < 0)
            return -1;
        if (p->blk[b].hash == h)
            return b;
    }
}

static inline int64_t blocks_for(const kv_pool *p, int64_t n)
{
    return n / p->bs + (n % p->bs != 0);
}

#endif
