/*
 * kv.c - the paged KV cache's block manager (kv.h): a pool of block ids with
 * per-block reference counts, per-sequence block tables, copy-on-write of a
 * shared partial block, automatic prefix caching and LRU eviction.
 *
 * Every block is in exactly one of three states: used (refcount > 0, in no
 * list), free and unnamed (in the free list, handed out first) or cached
 * (refcount 0 but named: in the LRU list, least recently freed at the head,
 * evicted from there). Both lists are intrusive doubly linked lists over block
 * ids, so every state change is O(1). Named blocks are also in an open-
 * addressing hash table (linear probing, backward-shift deletion, at most
 * half full) keyed by their hash.
 *
 * A block's name is its identity: (hash, its block_size tokens, the
 * sequence salt, the parent block it was named after and that parent's
 * generation). Every hit is verified against the whole identity, so a hash
 * collision can never hand out K/V of other tokens: not in this block (the
 * tokens are compared), not in an earlier one (the parent must be exactly the
 * block the walk matched one step before, still carrying the name it had when
 * this child was named - each naming or eviction bumps a block's generation).
 * A block that fills with content whose hash is already in the table stays
 * unnamed (the table keeps the first one); if the existing entry is a genuine
 * duplicate the sequence's later blocks are named as children of that entry,
 * if it is a collision they stay unnamed.
 *
 * The default hash (kv_hash_default) chains a bijective 64-bit mixer
 * (xor-shift / multiply, the SplitMix64 finalizer's constants) over the
 * parent hash, the pool salt, the sequence salt, the tokens two per 64-bit
 * word, and the token count. For fixed tokens and salts it is a bijection of
 * the parent hash, so two different parents never give one child hash.
 * The data structures are in kv_internal.h, the invariant checker in
 * kv_check.c.
 */
#include <stdlib.h>
#include <string.h>

#include "kv/kv_internal.h"

/* ---- hashing ---- */

uint64_t kv_hash_default(uint64_t parent, const int32_t *tokens, int32_t n, uint64_t pool_salt,
                         uint64_t seq_salt)
{
    uint64_t h = mix64(parent ^ UINT64_C(0x9e3779b97f4a7c15));
    h = mix64(h ^ pool_salt);
    h = mix64(h ^ seq_salt);
    int32_t i = 0;
    for (; i + 1 < n; i += 2)
        h = mix64(h ^ ((uint64_t)(uint32_t)tokens[i] | (uint64_t)(uint32_t)tokens[i + 1] << 32));
    if (i < n)
        h = mix64(h ^ (uint64_t)(uint32_t)tokens[i] ^ UINT64_C(0x5555555500000000));
    return mix64(h ^ (uint64_t)(uint32_t)n);
}

/* The second, independent chain over the same tokens that identifies a
 * block to a backing store (kv_block_id.check): other constants, another
 * mixer (MurmurHash3's finalizer), tokens one per round. */
static uint64_t check_hash(uint64_t parent, const int32_t *tokens, int32_t n, uint64_t pool_salt,
                           uint64_t seq_salt)
{
    uint64_t h = parent ^ UINT64_C(0x243f6a8885a308d3);
    h = (h ^ pool_salt) * UINT64_C(0xff51afd7ed558ccd);
    h = (h ^ (h >> 33) ^ seq_salt) * UINT64_C(0xc4ceb9fe1a85ec53);
    for (int32_t i = 0; i < n; i++) {
        h ^= (uint64_t)(uint32_t)tokens[i] + UINT64_C(0x13198a2e03707344) + (h << 6) + (h >> 2);
        h *= UINT64_C(0xff51afd7ed558ccd);
    }
    h ^= h >> 33;
    h *= UINT64_C(0xc4ceb9fe1a85ec53);
    return h ^ (h >> 33) ^ (uint64_t)(uint32_t)n;
}

/* ---- lists ---- */

static void list_push_head(kv_pool *p, kv_list *l, uint8_t which, int32_t b)
{
    kv_block *k = &p->blk[b];
    k->prev = -1;
    k->next = l->head;
    if (l->head >= 0)
        p->blk[l->head].prev = b;
    else
        l->tail = b;
    l->head = b;
    k->list = which;
    l->len++;
}

static void list_push_tail(kv_pool *p, kv_list *l, uint8_t which, int32_t b)
{
    kv_block *k = &p->blk[b];
    k->next = -1;
    k->prev = l->tail;
    if (l->tail >= 0)
        p->blk[l->tail].next = b;
    else
        l->head = b;
    l->tail = b;
    k->list = which;
    l->len++;
}

static void list_remove(kv_pool *p, kv_list *l, int32_t b)
{
    kv_block *k = &p->blk[b];
    if (k->prev >= 0)
        p->blk[k->prev].next = k->next;
    else
        l->head = k->next;
    if (k->next >= 0)
        p->blk[k->next].prev = k->prev;
    else
        l->tail = k->prev;
    k->next = k->prev = -1;
    k->list = IN_NONE;
    l->len--;
}

/* ---- hash table ---- */

static void ht_insert(kv_pool *p, int32_t b)
{
    uint64_t i = ht_home(p, p->blk[b].hash);
    while (p->ht[i] >= 0)
        i = (i + 1) & p->ht_mask;
    p->ht[i] = b;
}

static void ht_delete(kv_pool *p, int32_t b)
{
    uint64_t i = ht_home(p, p->blk[b].hash);
    while (p->ht[i] != b)
        i = (i + 1) & p->ht_mask;
    /* backward shift: pull later entries of the run into the hole when
     * their home position does not lie cyclically in (hole, j] */
    for (uint64_t j = (i + 1) & p->ht_mask; p->ht[j] >= 0; j = (j + 1) & p->ht_mask) {
        uint64_t k = ht_home(p, p->blk[p->ht[j]].hash);
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            p->ht[i] = p->ht[j];
            i = j;
        }
    }
    p->ht[i] = -1;
}

/* ---- blocks ---- */

static int64_t n_free(const kv_pool *p)
{
    return p->n_blocks - p->n_used;
}

static kv_block_id block_id(const kv_pool *p, int32_t b)
{
    const kv_block *k = &p->blk[b];
    return (kv_block_id){.hash = k->hash,
                         .check = k->check,
                         .pool_salt = p->salt,
                         .seq_salt = k->salt,
                         .index = k->index,
                         .tokens = p->tok + (size_t)b * (size_t)p->bs,
                         .block_size = p->bs};
}

/* Offers named block b to the backing store, once per naming. */
static void offer(kv_pool *p, int32_t b)
{
    kv_block *k = &p->blk[b];
    if (!p->backing || !k->named || k->stored)
        return;
    kv_block_id id = block_id(p, b);
    if (p->backing->store(p->backing_ctx, b, &id)) {
        k->stored = true;
        p->backing_stores++;
    }
}

/* Takes a free block (unnamed first, else evicts the LRU head); refcount 1.
 * The caller has checked that one is free. */
static int32_t block_alloc(kv_pool *p)
{
    int32_t b;
    if (p->freel.len > 0) {
        b = p->freel.head;
        list_remove(p, &p->freel, b);
    } else {
        b = p->lru.head;
        kv_block *k = &p->blk[b];
        if (p->evict)
            p->evict(p->evict_ctx, b, k->hash);
        offer(p, b);
        list_remove(p, &p->lru, b);
        ht_delete(p, b);
        k->named = false;
        k->stored = false;
        k->gen++;
        p->n_named--;
        p->evictions++;
    }
    p->blk[b].ref = 1;
    p->n_used++;
    return b;
}

/* One reference fewer; at 0 the block becomes cached (named) or free. */
static void block_release(kv_pool *p, int32_t b)
{
    kv_block *k = &p->blk[b];
    if (--k->ref > 0)
        return;
    p->n_used--;
    if (k->named) {
        list_push_tail(p, &p->lru, IN_LRU, b);
        offer(p, b);
    } else
        list_push_head(p, &p->freel, IN_FREE, b);
}

/* One reference more (a prefix hit or a fork); a cached block leaves the LRU. */
static void block_ref(kv_pool *p, int32_t b)
{
    kv_block *k = &p->blk[b];
    if (k->ref++ == 0) {
        list_remove(p, &p->lru, b);
        p->n_used++;
    }
}

/* Is named block e the one for tokens[0..bs) after parent (pid, pgen)? */
static bool same_identity(const kv_pool *p, int32_t e, const int32_t *tokens, uint64_t salt,
                          int32_t pid, uint64_t pgen)
{
    const kv_block *k = &p->blk[e];
    if (!k->named || k->salt != salt || k->parent != pid || (pid >= 0 && k->pgen != pgen))
        return false;
    return memcmp(p->tok + (size_t)e * (size_t)p->bs, tokens, (size_t)p->bs * sizeof *tokens) == 0;
}

/* Names block b (full, not in the table, hash h) as the next block of s's
 * chain, logical block `index` of s. */
static void name_new(kv_pool *p, kv_seq *s, int32_t b, uint64_t h, int64_t index)
{
    kv_block *k = &p->blk[b];
    k->named = true;
    k->stored = false;
    k->hash = h;
    k->check = s->chain_check;
    k->index = index;
    k->gen++;
    k->salt = s->salt;
    k->parent = s->chain_id;
    k->pgen = s->chain_id >= 0 ? s->chain_gen : 0;
    ht_insert(p, b);
    p->n_named++;
    s->chain_id = b;
    s->chain_gen = k->gen;
}

/* Block b (logical block index) of s has just filled: name it, or note the
 * duplicate/collision. */
static void name_block(kv_pool *p, kv_seq *s, int32_t b, int64_t index)
{
    const int32_t *toks = p->tok + (size_t)b * (size_t)p->bs;
    uint64_t h = p->hashfn(s->chain_hash, toks, p->bs, p->salt, s->salt);
    s->chain_hash = h;
    s->chain_check = check_hash(s->chain_check, toks, p->bs, p->salt, s->salt);
    /* The parent stood for by a duplicate's original may have been evicted
     * since: then no walk can reach this block, and later blocks stay
     * unnamed too. */
    if (s->chain_ok && s->chain_id >= 0 && p->blk[s->chain_id].gen != s->chain_gen)
        s->chain_ok = false;
    if (!s->chain_ok)
        return;
    int32_t e = ht_lookup(p, h);
    if (e >= 0) {
        if (same_identity(p, e, toks, s->salt, s->chain_id, s->chain_gen)) {
            s->chain_id = e; /* a duplicate: later blocks are e's children */
            s->chain_gen = p->blk[e].gen;
        } else {
            s->chain_ok = false; /* a collision: later blocks stay unnamed */
        }
        return;
    }
    name_new(p, s, b, h, index);
}

/* ---- pool ---- */

kv_pool *kv_pool_create(const kv_config *cfg)
{
    if (!cfg) {
        vt_fail(VT_ERR_INVALID, "kv: no config");
        return NULL;
    }
    int64_t bs = cfg->block_size == 0 ? KV_DEFAULT_BLOCK_SIZE : cfg->block_size;
    if (cfg->n_blocks < 1 || cfg->n_blocks > KV_MAX_BLOCKS) {
        vt_fail(VT_ERR_INVALID, "kv: %lld blocks (1 .. %lld allowed)", (long long)cfg->n_blocks,
                (long long)KV_MAX_BLOCKS);
        return NULL;
    }
    if (bs < 1 || bs > KV_MAX_BLOCK_SIZE) {
        vt_fail(VT_ERR_INVALID, "kv: block size %lld (1 .. %d allowed)", (long long)bs,
                KV_MAX_BLOCK_SIZE);
        return NULL;
    }
    kv_pool *p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->n_blocks = cfg->n_blocks;
    p->bs = (int32_t)bs;
    p->caching = cfg->prefix_caching;
    p->salt = cfg->salt;
    p->hashfn = kv_hash_default;
    p->blk = malloc((size_t)p->n_blocks * sizeof *p->blk);
    if (!p->blk)
        goto nomem;
    if (p->caching) {
        uint64_t cap = 2;
        while (cap < 2 * (uint64_t)p->n_blocks)
            cap <<= 1;
        p->ht_mask = cap - 1;
        p->ht = malloc(cap * sizeof *p->ht);
        p->tok = malloc((size_t)p->n_blocks * (size_t)bs * sizeof *p->tok);
        if (!p->ht || !p->tok)
            goto nomem;
        memset(p->ht, 0xff, cap * sizeof *p->ht);
    }
    p->freel = (kv_list){-1, -1, 0};
    p->lru = (kv_list){-1, -1, 0};
    for (int64_t b = 0; b < p->n_blocks; b++) {
        p->blk[b] = (kv_block){.parent = -1, .next = -1, .prev = -1};
        list_push_tail(p, &p->freel, IN_FREE, (int32_t)b);
    }
    return p;
nomem:
    kv_pool_destroy(p);
    vt_fail(VT_ERR_NOMEM, "kv: out of memory for a pool of %lld blocks",
            (long long)cfg->n_blocks);
    return NULL;
}

static void seq_delete(kv_seq *s)
{
    free(s->table);
    free(s);
}

void kv_pool_destroy(kv_pool *p)
{
    if (!p)
        return;
    for (kv_seq *s = p->seqs, *next; s; s = next) {
        next = s->next;
        seq_delete(s);
    }
    free(p->blk);
    free(p->tok);
    free(p->ht);
    free(p);
}

int32_t kv_block_size(const kv_pool *p)
{
    return p ? p->bs : 0;
}

int64_t kv_n_blocks(const kv_pool *p)
{
    return p ? p->n_blocks : 0;
}

void kv_get_stats(const kv_pool *p, kv_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    out->blocks_total = p->n_blocks;
    out->blocks_used = p->n_used;
    out->blocks_cached = p->lru.len;
    out->blocks_free = n_free(p);
    out->prefix_queries = p->prefix_queries;
    out->prefix_hits = p->prefix_hits;
    out->evictions = p->evictions;
    out->cow_copies = p->cow_copies;
    out->backing_hits = p->backing_hits;
    out->backing_stores = p->backing_stores;
}

int64_t kv_blocks_for(const kv_pool *p, int64_t n_tokens)
{
    if (!p || n_tokens < 0) {
        vt_fail(VT_ERR_INVALID, "kv_blocks_for: %s", p ? "negative token count" : "no pool");
        return -1;
    }
    return blocks_for(p, n_tokens);
}

kv_alloc_status kv_can_allocate(const kv_pool *p, int64_t n_tokens, int64_t max_tokens)
{
    if (!p || n_tokens < 0 || max_tokens < 0) {
        vt_fail(VT_ERR_INVALID, "kv_can_allocate: %s",
                p ? "negative token count" : "no pool");
        return KV_NEVER;
    }
    int64_t most = blocks_for(p, n_tokens > max_tokens ? n_tokens : max_tokens);
    if (most > p->n_blocks)
        return KV_NEVER;
    return blocks_for(p, n_tokens) <= n_free(p) ? KV_OK : KV_LATER;
}

void kv_set_evict_hook(kv_pool *p, kv_evict_fn fn, void *ctx)
{
    if (!p)
        return;
    p->evict = fn;
    p->evict_ctx = ctx;
}

void kv_set_backing(kv_pool *p, const kv_backing *ops, void *ctx)
{
    if (!p || !p->caching)
        return;
    p->backing = ops;
    p->backing_ctx = ops ? ctx : NULL;
}

vt_err kv_set_hash_fn(kv_pool *p, kv_hash_fn fn)
{
    if (!p)
        return vt_fail(VT_ERR_INVALID, "kv_set_hash_fn: no pool");
    if (p->n_named > 0 || p->evictions > 0 || p->n_seqs > 0)
        return vt_fail(VT_ERR_INVALID, "kv_set_hash_fn: the pool is already in use");
    p->hashfn = fn ? fn : kv_hash_default;
    return VT_OK;
}

int32_t kv_block_refcount(const kv_pool *p, int32_t b)
{
    if (!p || b < 0 || b >= p->n_blocks)
        return -1;
    return p->blk[b].ref;
}

bool kv_block_hash(const kv_pool *p, int32_t b, uint64_t *hash)
{
    if (!p || b < 0 || b >= p->n_blocks || !p->blk[b].named)
        return false;
    if (hash)
        *hash = p->blk[b].hash;
    return true;
}

/* ---- sequences ---- */

static bool seq_reserve_table(kv_seq *s, int64_t n, int64_t limit)
{
    if (n <= s->cap)
        return true;
    int64_t cap = s->cap * 2 > n ? s->cap * 2 : n;
    if (cap > limit)
        cap = limit > n ? limit : n;
    int32_t *t = realloc(s->table, (size_t)cap * sizeof *t);
    if (!t)
        return false;
    s->table = t;
    s->cap = cap;
    return true;
}

static kv_seq *seq_new(kv_pool *p, int64_t cap, uint64_t salt)
{
    kv_seq *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (cap < 4)
        cap = 4;
    s->table = malloc((size_t)cap * sizeof *s->table);
    if (!s->table) {
        free(s);
        return NULL;
    }
    s->cap = cap;
    s->salt = salt;
    s->chain_id = -1;
    s->chain_ok = true;
    (void)p;
    return s;
}

static void seq_link(kv_pool *p, kv_seq *s)
{
    s->prev = NULL;
    s->next = p->seqs;
    if (p->seqs)
        p->seqs->prev = s;
    p->seqs = s;
    p->n_seqs++;
}

kv_seq *kv_seq_create(kv_pool *p, const int32_t *prompt, int64_t n, uint64_t seq_salt,
                      int64_t *n_cached)
{
    if (n_cached)
        *n_cached = 0;
    if (!p || n < 0 || (!prompt && n > 0)) {
        vt_fail(VT_ERR_INVALID, "kv_seq_create: %s",
                !p ? "no pool" : n < 0 ? "negative prompt length" : "prompt NULL");
        return NULL;
    }
    int64_t max_hit = 0;
    if (p->caching && n > 0) {
        max_hit = (n - 1) / p->bs; /* leave at least the last token to compute */
        if (max_hit > p->n_blocks)
            max_hit = p->n_blocks;
    }
    int64_t cap = blocks_for(p, n);
    if (cap > p->n_blocks)
        cap = p->n_blocks;
    kv_seq *s = seq_new(p, cap, seq_salt);
    if (!s) {
        vt_fail(VT_ERR_NOMEM, "kv_seq_create: out of memory");
        return NULL;
    }
    int64_t k = 0;
    bool miss = true; /* the walk ended on a block not in the table */
    for (; k < max_hit; k++) {
        const int32_t *toks = prompt + k * p->bs;
        uint64_t h = p->hashfn(s->chain_hash, toks, p->bs, p->salt, seq_salt);
        int32_t e = ht_lookup(p, h);
        if (e < 0)
            break;
        if (!same_identity(p, e, toks, seq_salt, s->chain_id, s->chain_gen)) {
            miss = false;
            break;
        }
        s->table[k] = e;
        s->chain_hash = h;
        s->chain_check = check_hash(s->chain_check, toks, p->bs, p->salt, seq_salt);
        s->chain_id = e;
        s->chain_gen = p->blk[e].gen;
    }
    /* referenced before the backing store's loads allocate, which could
     * otherwise evict them */
    for (int64_t i = 0; i < k; i++)
        block_ref(p, s->table[i]);
    s->n_table = k;
    if (p->backing && miss) {
        for (; k < max_hit && n_free(p) > 0; k++) {
            const int32_t *toks = prompt + k * p->bs;
            uint64_t h = p->hashfn(s->chain_hash, toks, p->bs, p->salt, seq_salt);
            uint64_t c = check_hash(s->chain_check, toks, p->bs, p->salt, seq_salt);
            kv_block_id id = {.hash = h, .check = c, .pool_salt = p->salt, .seq_salt = seq_salt,
                              .index = k, .tokens = toks, .block_size = p->bs};
            if (ht_lookup(p, h) >= 0 || !p->backing->has(p->backing_ctx, &id))
                break;
            int32_t b = block_alloc(p);
            if (!p->backing->load(p->backing_ctx, b, &id)) {
                block_release(p, b); /* unnamed: back to the free list */
                break;
            }
            memcpy(p->tok + (size_t)b * (size_t)p->bs, toks, (size_t)p->bs * sizeof *toks);
            s->chain_hash = h;
            s->chain_check = c;
            name_new(p, s, b, h, k);
            p->blk[b].stored = true;
            s->table[k] = b;
            s->n_table = k + 1;
            p->backing_hits += p->bs;
        }
    }
    s->n_computed = s->n_table * p->bs;
    if (p->caching) {
        p->prefix_queries += n;
        p->prefix_hits += s->n_computed;
    }
    if (n_cached)
        *n_cached = s->n_computed;
    seq_link(p, s);
    return s;
}

/* Does writing the next token of s need a private copy of its last block? */
static bool needs_cow(const kv_pool *p, const kv_seq *s, int64_t n_new)
{
    if (n_new <= 0 || s->n_computed % p->bs == 0)
        return false;
    return p->blk[s->table[s->n_computed / p->bs]].ref > 1;
}

int64_t kv_append_blocks(const kv_pool *p, const kv_seq *s, int64_t n_new)
{
    if (!p || !s || n_new < 0 || n_new > INT64_MAX - s->n_computed) {
        vt_fail(VT_ERR_INVALID, "kv_append_blocks: %s",
                !p || !s ? "NULL argument" : "bad token count");
        return -1;
    }
    int64_t need = blocks_for(p, s->n_computed + n_new) - s->n_table;
    return (need > 0 ? need : 0) + needs_cow(p, s, n_new);
}

vt_err kv_append_slots(kv_pool *p, kv_seq *s, int64_t n_new, kv_copy *copy, int *n_copies)
{
    if (n_copies)
        *n_copies = 0;
    if (!p || !s)
        return vt_fail(VT_ERR_INVALID, "kv_append_slots: NULL %s", p ? "sequence" : "pool");
    if (n_new < 0)
        return vt_fail(VT_ERR_INVALID, "kv_append_slots: negative token count %lld",
                       (long long)n_new);
    if (n_new > INT64_MAX - s->n_computed)
        return vt_fail(VT_ERR_RANGE, "kv_append_slots: %lld tokens overflow the position",
                       (long long)n_new);
    int64_t need = blocks_for(p, s->n_computed + n_new) - s->n_table;
    if (need < 0)
        need = 0;
    bool cow = needs_cow(p, s, n_new);
    if (need + cow > n_free(p))
        return vt_fail(VT_ERR_NOMEM, "kv_append_slots: %lld tokens need %lld free blocks, %lld %s",
                       (long long)n_new, (long long)(need + cow), (long long)n_free(p),
                       need + cow > p->n_blocks ? "in the whole pool" : "free now");
    if (cow && !copy)
        return vt_fail(VT_ERR_INVALID, "kv_append_slots: a copy-on-write copy is needed but "
                                       "copy is NULL");
    if (!seq_reserve_table(s, s->n_table + need, p->n_blocks))
        return vt_fail(VT_ERR_NOMEM, "kv_append_slots: out of memory for the block table");
    /* nothing can fail from here on */
    if (cow) {
        int64_t i = s->n_computed / p->bs;
        int32_t old = s->table[i], nb = block_alloc(p);
        if (p->caching)
            memcpy(p->tok + (size_t)nb * (size_t)p->bs, p->tok + (size_t)old * (size_t)p->bs,
                   (size_t)(s->n_computed % p->bs) * sizeof *p->tok);
        s->table[i] = nb;
        block_release(p, old); /* stays used: it was shared */
        p->cow_copies++;
        copy->src = old;
        copy->dst = nb;
        if (n_copies)
            *n_copies = 1;
    }
    for (int64_t i = 0; i < need; i++)
        s->table[s->n_table++] = block_alloc(p);
    if (n_new > s->n_reserved)
        s->n_reserved = n_new;
    return VT_OK;
}

vt_err kv_commit(kv_pool *p, kv_seq *s, const int32_t *tokens, int64_t n)
{
    if (!p || !s)
        return vt_fail(VT_ERR_INVALID, "kv_commit: NULL %s", p ? "sequence" : "pool");
    if (n < 0 || (!tokens && n > 0))
        return vt_fail(VT_ERR_INVALID, "kv_commit: %s",
                       n < 0 ? "negative token count" : "tokens NULL");
    if (n > s->n_reserved)
        return vt_fail(VT_ERR_RANGE, "kv_commit: %lld tokens but only %lld slots reserved",
                       (long long)n, (long long)s->n_reserved);
    if (p->caching) {
        for (int64_t i = 0; i < n; i++) {
            int64_t pos = s->n_computed + i;
            int32_t b = s->table[pos / p->bs];
            int64_t slot = pos % p->bs;
            p->tok[(size_t)b * (size_t)p->bs + (size_t)slot] = tokens[i];
            if (slot == p->bs - 1)
                name_block(p, s, b, pos / p->bs);
        }
    }
    s->n_computed += n;
    s->n_reserved -= n;
    return VT_OK;
}

kv_seq *kv_fork(kv_pool *p, kv_seq *s)
{
    if (!p || !s) {
        vt_fail(VT_ERR_INVALID, "kv_fork: NULL %s", p ? "sequence" : "pool");
        return NULL;
    }
    if (s->n_reserved > 0) {
        vt_fail(VT_ERR_INVALID, "kv_fork: %lld slots reserved but not committed",
                (long long)s->n_reserved);
        return NULL;
    }
    kv_seq *c = seq_new(p, s->n_table, s->salt);
    if (!c) {
        vt_fail(VT_ERR_NOMEM, "kv_fork: out of memory");
        return NULL;
    }
    if (s->n_table > 0)
        memcpy(c->table, s->table, (size_t)s->n_table * sizeof *s->table);
    c->n_table = s->n_table;
    c->n_computed = s->n_computed;
    c->chain_hash = s->chain_hash;
    c->chain_check = s->chain_check;
    c->chain_gen = s->chain_gen;
    c->chain_id = s->chain_id;
    c->chain_ok = s->chain_ok;
    for (int64_t i = 0; i < c->n_table; i++)
        block_ref(p, c->table[i]);
    seq_link(p, c);
    return c;
}

void kv_seq_free(kv_pool *p, kv_seq *s)
{
    if (!p || !s)
        return;
    /* last block first: it enters the LRU first and is evicted first */
    for (int64_t i = s->n_table - 1; i >= 0; i--)
        block_release(p, s->table[i]);
    if (s->prev)
        s->prev->next = s->next;
    else
        p->seqs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    p->n_seqs--;
    seq_delete(s);
}

const int32_t *kv_seq_blocks(const kv_seq *s, int64_t *n_blocks)
{
    if (n_blocks)
        *n_blocks = s ? s->n_table : 0;
    return s ? s->table : NULL;
}

int64_t kv_seq_n_computed(const kv_seq *s)
{
    return s ? s->n_computed : 0;
}

int64_t kv_seq_n_reserved(const kv_seq *s)
{
    return s ? s->n_reserved : 0;
}
