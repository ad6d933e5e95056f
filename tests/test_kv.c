/*
 * test_kv.c - the paged KV cache's block manager (src/kv/kv.c), in vLLM's
 * style: refcounts and used/cached/free counts exact after every verb (and
 * the invariant checker after every verb); copy-on-write of exactly the
 * shared partial block; prefix hits (224 of 256 tokens, a fully cached
 * prompt); LRU eviction order with the evict hook's (block, hash) checked
 * against a hash computed here; salts; injected hash collisions (tokens,
 * parent, stale parent generation) never handing out a wrong block;
 * preempt-and-resume; OK/LATER/NEVER; nothing changed on a failed verb; and a
 * randomized run of thousands of verbs against a model that keeps fake K/V
 * (a fingerprint of each position's whole prefix) per block slot, performs
 * the reported copies, and checks every live sequence's blocks after every
 * verb, with the default hash, two weak ones and no prefix caching.
 */
#include <string.h>
#include <time.h>

#include "kv/kv_internal.h" /* the corruption test reaches inside */
#include "test.h"
#include "util/util.h"

#define CHECK_POOL(p) CHECKF(kv_check(p) == VT_OK, "kv_check: %s", vt_last_error())

static kv_pool *mk(int64_t n_blocks, int32_t bs, bool caching)
{
    kv_config c = {.n_blocks = n_blocks, .block_size = bs, .prefix_caching = caching,
                   .salt = 0x5eed};
    kv_pool *p = kv_pool_create(&c);
    CHECKF(p != NULL, "kv_pool_create: %s", vt_last_error());
    return p;
}

static void expect_counts(const kv_pool *p, int64_t used, int64_t cached, int line)
{
    kv_stats st;
    kv_get_stats(p, &st);
    if (st.blocks_used != used || st.blocks_cached != cached ||
        st.blocks_free != st.blocks_total - used)
        test_fail_at(__FILE__, line, "used %lld cached %lld free %lld of %lld; expected used %lld "
                                     "cached %lld",
                     (long long)st.blocks_used, (long long)st.blocks_cached,
                     (long long)st.blocks_free, (long long)st.blocks_total, (long long)used,
                     (long long)cached);
    if (kv_check(p) != VT_OK)
        test_fail_at(__FILE__, line, "kv_check: %s", vt_last_error());
}
#define EXPECT_COUNTS(p, used, cached) expect_counts(p, used, cached, __LINE__)

/* append_slots(n) then commit(tokens, n); returns the number of copies. */
static int compute(kv_pool *p, kv_seq *s, const int32_t *tokens, int64_t n, kv_copy *cp)
{
    kv_copy tmp;
    int nc = -1;
    vt_err e = kv_append_slots(p, s, n, cp ? cp : &tmp, &nc);
    CHECKF(e == VT_OK, "kv_append_slots(%lld): %s", (long long)n, vt_last_error());
    e = kv_commit(p, s, tokens, n);
    CHECKF(e == VT_OK, "kv_commit(%lld): %s", (long long)n, vt_last_error());
    CHECK_POOL(p);
    return nc;
}

static kv_seq *create(kv_pool *p, const int32_t *prompt, int64_t n, uint64_t salt, int64_t *nc)
{
    kv_seq *s = kv_seq_create(p, prompt, n, salt, nc);
    CHECKF(s != NULL, "kv_seq_create: %s", vt_last_error());
    CHECK_POOL(p);
    return s;
}

static int32_t blk(const kv_seq *s, int64_t i)
{
    int64_t n;
    const int32_t *t = kv_seq_blocks(s, &n);
    return i < n ? t[i] : -1;
}

static int64_t n_table(const kv_seq *s)
{
    int64_t n;
    kv_seq_blocks(s, &n);
    return n;
}

static void iota(int32_t *t, int64_t n, int32_t base)
{
    for (int64_t i = 0; i < n; i++)
        t[i] = base + (int32_t)i;
}

/* An FNV-1a block hash written here, so that the evict hook's hashes are
 * checked against something kv.c did not compute. */
static uint64_t fnv_hash(uint64_t parent, const int32_t *t, int32_t n, uint64_t ps, uint64_t ss)
{
    uint64_t h = UINT64_C(1469598103934665603);
    uint64_t w[3] = {parent, ps, ss};
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 8; b++)
            h = (h ^ ((w[i] >> (8 * b)) & 0xff)) * UINT64_C(1099511628211);
    for (int32_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++)
            h = (h ^ (((uint32_t)t[i] >> (8 * b)) & 0xff)) * UINT64_C(1099511628211);
    return h;
}

/* Weak hashes: collisions on purpose. */
static uint64_t hash_sum(uint64_t parent, const int32_t *t, int32_t n, uint64_t ps, uint64_t ss)
{
    (void)parent, (void)ps, (void)ss; /* ignores the parent and the salts */
    uint64_t h = 0;
    for (int32_t i = 0; i < n; i++)
        h += (uint64_t)t[i];
    return h;
}

static uint64_t hash_first(uint64_t parent, const int32_t *t, int32_t n, uint64_t ps, uint64_t ss)
{
    (void)parent, (void)n, (void)ps, (void)ss;
    return (uint64_t)t[0] & 3;
}

static uint64_t hash_small(uint64_t parent, const int32_t *t, int32_t n, uint64_t ps, uint64_t ss)
{
    (void)ps;
    return (parent * 3 + (uint64_t)t[0] + (uint64_t)t[n - 1] + ss) & 15;
}

typedef struct {
    const kv_pool *p;
    int n;
    int32_t block[64];
    uint64_t hash[64];
    int bad; /* calls on a block that is not cached or with a wrong hash */
} evict_log;

static void on_evict(void *ctx, int32_t block, uint64_t hash)
{
    evict_log *l = ctx;
    uint64_t h = 0;
    if (kv_block_refcount(l->p, block) != 0 || !kv_block_hash(l->p, block, &h) || h != hash)
        l->bad++;
    if (l->n < 64) {
        l->block[l->n] = block;
        l->hash[l->n] = hash;
    }
    l->n++;
}

/* ---------------------------------------------------------------- tests */

static void test_config_and_arguments(void)
{
    kv_config c = {.n_blocks = 0};
    CHECK(kv_pool_create(&c) == NULL);
    c.n_blocks = -5;
    CHECK(kv_pool_create(&c) == NULL);
    c.n_blocks = INT64_MAX;
    CHECK(kv_pool_create(&c) == NULL);
    c.n_blocks = 4;
    c.block_size = -1;
    CHECK(kv_pool_create(&c) == NULL);
    c.block_size = 1 << 20;
    CHECK(kv_pool_create(&c) == NULL);
    CHECK(kv_pool_create(NULL) == NULL);
    c.block_size = 0;
    kv_pool *p = kv_pool_create(&c);
    CHECK(p != NULL);
    CHECK_EQ_INT(kv_block_size(p), KV_DEFAULT_BLOCK_SIZE);
    CHECK_EQ_INT(kv_n_blocks(p), 4);
    CHECK_EQ_INT(kv_blocks_for(p, 0), 0);
    CHECK_EQ_INT(kv_blocks_for(p, 16), 1);
    CHECK_EQ_INT(kv_blocks_for(p, 17), 2);
    CHECK_EQ_INT(kv_blocks_for(p, INT64_MAX), INT64_MAX / 16 + 1);
    CHECK_EQ_INT(kv_blocks_for(p, -1), -1);
    CHECK_EQ_INT(kv_block_refcount(p, -1), -1);
    CHECK_EQ_INT(kv_block_refcount(p, 4), -1);
    CHECK(!kv_block_hash(p, 0, NULL));

    int32_t t[4] = {1, 2, 3, 4};
    int64_t nc = 7;
    CHECK(kv_seq_create(NULL, t, 4, 0, &nc) == NULL);
    CHECK(kv_seq_create(p, t, -1, 0, &nc) == NULL);
    CHECK(kv_seq_create(p, NULL, 3, 0, &nc) == NULL);
    CHECK_EQ_INT(nc, 0);
    kv_seq *s = kv_seq_create(p, NULL, 0, 0, NULL); /* an empty prompt is fine */
    CHECK(s != NULL);
    kv_copy cp;
    int ncp = 5;
    CHECK(kv_append_slots(p, NULL, 1, &cp, &ncp) == VT_ERR_INVALID);
    CHECK_EQ_INT(ncp, 0);
    CHECK(kv_append_slots(NULL, s, 1, &cp, &ncp) == VT_ERR_INVALID);
    CHECK(kv_append_slots(p, s, -1, &cp, &ncp) == VT_ERR_INVALID);
    CHECK(kv_append_slots(p, s, INT64_MAX, &cp, &ncp) == VT_ERR_NOMEM); /* more than the pool */
    CHECK(kv_append_slots(p, s, 65, &cp, &ncp) == VT_ERR_NOMEM);
    CHECK(kv_commit(p, s, t, 1) == VT_ERR_RANGE); /* nothing reserved */
    CHECK(kv_append_slots(p, s, 2, &cp, &ncp) == VT_OK);
    CHECK(kv_append_slots(p, s, INT64_MAX, &cp, &ncp) == VT_ERR_NOMEM);
    CHECK(kv_commit(p, s, NULL, 1) == VT_ERR_INVALID);
    CHECK(kv_commit(p, s, t, -1) == VT_ERR_INVALID);
    CHECK(kv_commit(p, NULL, t, 1) == VT_ERR_INVALID);
    CHECK(kv_commit(p, s, t, 3) == VT_ERR_RANGE);
    CHECK(kv_commit(p, s, t, 1) == VT_OK);
    CHECK(kv_append_slots(p, s, INT64_MAX, &cp, &ncp) == VT_ERR_RANGE); /* 1 + that overflows */
    CHECK_EQ_INT(kv_seq_n_computed(s), 1);
    CHECK_EQ_INT(kv_seq_n_reserved(s), 1);
    CHECK(kv_fork(p, s) == NULL); /* a reservation is open */
    CHECK(kv_fork(p, NULL) == NULL);
    CHECK_EQ_INT(kv_append_blocks(p, NULL, 1), -1);
    CHECK_EQ_INT(kv_append_blocks(p, s, -1), -1);
    CHECK_EQ_INT(kv_can_allocate(p, -1, 0), KV_NEVER);
    CHECK_EQ_INT(kv_can_allocate(NULL, 1, 1), KV_NEVER);
    CHECK(kv_set_hash_fn(NULL, NULL) == VT_ERR_INVALID);
    CHECK(kv_set_hash_fn(p, hash_sum) == VT_ERR_INVALID); /* a sequence is open */
    CHECK(kv_check(NULL) == VT_ERR_INVALID);
    EXPECT_COUNTS(p, 1, 0);
    kv_seq_free(p, NULL);
    kv_seq_free(NULL, s); /* no-op */
    kv_pool_destroy(p); /* frees s with it */
    kv_pool_destroy(NULL);
}

/* Exact counts after every verb, with and without prefix caching. */
static void test_counts_every_verb(void)
{
    for (int caching = 0; caching <= 1; caching++) {
        kv_pool *p = mk(8, 4, caching);
        int32_t t[32];
        iota(t, 32, 100);
        EXPECT_COUNTS(p, 0, 0);
        int64_t nc = -1;
        kv_seq *a = create(p, t, 10, 0, &nc);
        CHECK_EQ_INT(nc, 0);
        CHECK_EQ_INT(n_table(a), 0);
        EXPECT_COUNTS(p, 0, 0);
        CHECK_EQ_INT(kv_append_blocks(p, a, 10), 3);
        kv_copy cp;
        int ncp = -1;
        CHECK(kv_append_slots(p, a, 10, &cp, &ncp) == VT_OK);
        CHECK_EQ_INT(ncp, 0);
        CHECK_EQ_INT(n_table(a), 3);
        CHECK_EQ_INT(kv_seq_n_reserved(a), 10);
        EXPECT_COUNTS(p, 3, 0);
        /* a second reservation for fewer tokens adds nothing */
        CHECK(kv_append_slots(p, a, 4, &cp, &ncp) == VT_OK);
        CHECK_EQ_INT(kv_seq_n_reserved(a), 10);
        EXPECT_COUNTS(p, 3, 0);
        for (int i = 0; i < 3; i++)
            CHECK_EQ_INT(kv_block_refcount(p, blk(a, i)), 1);
        CHECK(kv_commit(p, a, t, 6) == VT_OK);
        CHECK_EQ_INT(kv_seq_n_computed(a), 6);
        CHECK_EQ_INT(kv_seq_n_reserved(a), 4);
        EXPECT_COUNTS(p, 3, 0);
        CHECK(kv_commit(p, a, t + 6, 4) == VT_OK);
        CHECK_EQ_INT(kv_seq_n_computed(a), 10);
        CHECK_EQ_INT(kv_seq_n_reserved(a), 0);
        EXPECT_COUNTS(p, 3, 0);
        CHECK(kv_block_hash(p, blk(a, 0), NULL) == (bool)caching);
        CHECK(kv_block_hash(p, blk(a, 1), NULL) == (bool)caching);
        CHECK(!kv_block_hash(p, blk(a, 2), NULL)); /* partial: unnamed */

        int32_t a0 = blk(a, 0), a1 = blk(a, 1), a2 = blk(a, 2);
        kv_seq *b = kv_fork(p, a);
        CHECK(b != NULL);
        CHECK_EQ_INT(kv_seq_n_computed(b), 10);
        CHECK_EQ_INT(n_table(b), 3);
        for (int i = 0; i < 3; i++) {
            CHECK_EQ_INT(blk(b, i), blk(a, i));
            CHECK_EQ_INT(kv_block_refcount(p, blk(a, i)), 2);
        }
        EXPECT_COUNTS(p, 3, 0);
        CHECK_EQ_INT(compute(p, b, t + 10, 1, &cp), 1); /* writes into shared a2 */
        CHECK_EQ_INT(cp.src, a2);
        CHECK_EQ_INT(cp.dst, blk(b, 2));
        CHECK(cp.dst != a2);
        CHECK_EQ_INT(kv_block_refcount(p, a2), 1);
        CHECK_EQ_INT(kv_block_refcount(p, cp.dst), 1);
        CHECK_EQ_INT(kv_block_refcount(p, a0), 2);
        EXPECT_COUNTS(p, 4, 0);
        int32_t b2 = blk(b, 2);

        kv_seq_free(p, a);
        CHECK_EQ_INT(kv_block_refcount(p, a0), 1);
        CHECK_EQ_INT(kv_block_refcount(p, a1), 1);
        CHECK_EQ_INT(kv_block_refcount(p, a2), 0);
        EXPECT_COUNTS(p, 3, 0); /* a2 was partial: plainly free */
        kv_seq_free(p, b);
        CHECK_EQ_INT(kv_block_refcount(p, a0), 0);
        CHECK_EQ_INT(kv_block_refcount(p, b2), 0);
        EXPECT_COUNTS(p, 0, caching ? 2 : 0); /* the two full blocks stay cached */
        kv_stats st;
        kv_get_stats(p, &st);
        CHECK_EQ_INT(st.cow_copies, 1);
        CHECK_EQ_INT(st.evictions, 0);
        CHECK_EQ_INT(st.prefix_queries, caching ? 10 : 0);
        CHECK_EQ_INT(st.prefix_hits, 0);
        kv_pool_destroy(p);
    }
}

static void test_copy_on_write(void)
{
    kv_pool *p = mk(24, 4, true);
    int32_t t[16];
    iota(t, 16, 1);
    kv_copy cp;
    int ncp;

    /* A: 6 tokens = a full block + a partial one holding 2 */
    kv_seq *a = create(p, t, 6, 0, NULL);
    CHECK_EQ_INT(compute(p, a, t, 6, &cp), 0);
    int32_t a0 = blk(a, 0), a1 = blk(a, 1);
    kv_seq *b = kv_fork(p, a);
    CHECK(b != NULL);
    CHECK_POOL(p);
    CHECK_EQ_INT(kv_append_blocks(p, b, 1), 1);
    /* the copy is needed, so copy NULL is refused and nothing changes */
    CHECK(kv_append_slots(p, b, 1, NULL, &ncp) == VT_ERR_INVALID);
    CHECK_EQ_INT(blk(b, 1), a1);
    CHECK_EQ_INT(kv_seq_n_reserved(b), 0);
    EXPECT_COUNTS(p, 2, 0);
    /* B writes first: it gets a private copy of exactly the partial block */
    CHECK_EQ_INT(compute(p, b, t + 6, 1, &cp), 1);
    CHECK_EQ_INT(cp.src, a1);
    CHECK_EQ_INT(cp.dst, blk(b, 1));
    CHECK_EQ_INT(blk(b, 0), a0); /* the full block stays shared */
    CHECK_EQ_INT(kv_block_refcount(p, a0), 2);
    CHECK_EQ_INT(kv_block_refcount(p, a1), 1);
    CHECK_EQ_INT(kv_block_refcount(p, cp.dst), 1);
    EXPECT_COUNTS(p, 3, 0);
    /* A is now the only owner of a1: no copy */
    CHECK_EQ_INT(kv_append_blocks(p, a, 1), 0);
    CHECK_EQ_INT(compute(p, a, t + 6, 1, &cp), 0);
    CHECK_EQ_INT(blk(a, 1), a1);
    EXPECT_COUNTS(p, 3, 0);

    /* a fork of A at 7 tokens; the fork writes 2 tokens: slot 3 of the
     * shared block (copy) and the first slot of a new block */
    kv_seq *c = kv_fork(p, a);
    CHECK_EQ_INT(kv_append_blocks(p, c, 2), 2);
    CHECK_EQ_INT(compute(p, c, t + 7, 2, &cp), 1);
    CHECK_EQ_INT(cp.src, a1);
    CHECK_EQ_INT(n_table(c), 3);
    CHECK_EQ_INT(cp.dst, blk(c, 1));
    EXPECT_COUNTS(p, 5, 0);

    /* three sharers of a partial block: the first two writers copy, the
     * last one (then the only owner) does not */
    kv_seq *x = create(p, t, 5, 3, NULL); /* salt 3: no hit on A's first block */
    compute(p, x, t, 5, &cp);
    int64_t used = 0;
    {
        kv_stats st;
        kv_get_stats(p, &st);
        used = st.blocks_used;
    }
    kv_seq *y = kv_fork(p, x), *z = kv_fork(p, x);
    int32_t x1 = blk(x, 1);
    CHECK_EQ_INT(kv_block_refcount(p, x1), 3);
    CHECK_EQ_INT(compute(p, y, t + 5, 1, &cp), 1);
    CHECK_EQ_INT(cp.src, x1);
    CHECK_EQ_INT(kv_block_refcount(p, x1), 2);
    CHECK_EQ_INT(compute(p, z, t + 5, 1, &cp), 1);
    CHECK_EQ_INT(cp.src, x1);
    CHECK_EQ_INT(kv_block_refcount(p, x1), 1);
    CHECK_EQ_INT(compute(p, x, t + 5, 1, &cp), 0);
    EXPECT_COUNTS(p, used + 2, 0);

    /* a full shared block is never written again: no copy */
    kv_seq *d = create(p, t, 8, 7, NULL);
    CHECK_EQ_INT(compute(p, d, t, 8, &cp), 0);
    kv_seq *e = kv_fork(p, d);
    CHECK_EQ_INT(kv_append_blocks(p, e, 1), 1);
    CHECK_EQ_INT(compute(p, e, t + 8, 1, &cp), 0);
    CHECK_EQ_INT(compute(p, d, t + 8, 1, &cp), 0);
    CHECK_EQ_INT(kv_block_refcount(p, blk(d, 0)), 2);
    CHECK_EQ_INT(kv_block_refcount(p, blk(d, 1)), 2);
    CHECK(blk(d, 2) != blk(e, 2));

    /* the copy carries the tokens already in the block: once full, it is
     * named for its real content and found again */
    int32_t u[9] = {50, 51, 52, 53, 54, 55, 56, 57, 0};
    kv_seq *f = create(p, u, 6, 9, NULL);
    compute(p, f, u, 6, &cp);
    kv_seq *g = kv_fork(p, f);
    CHECK_EQ_INT(compute(p, g, u + 6, 2, &cp), 1);
    CHECK(kv_block_hash(p, blk(g, 1), NULL));
    int64_t nc = -1;
    kv_seq *h = create(p, u, 9, 9, &nc);
    CHECK_EQ_INT(nc, 8);
    CHECK_EQ_INT(blk(h, 1), blk(g, 1));
    kv_stats st;
    kv_get_stats(p, &st);
    CHECK_EQ_INT(st.cow_copies, 5);
    kv_pool_destroy(p);
}

/* 224 of 256 prompt tokens shared with a cached request: only 32 computed. */
static void test_prefix_hit_224_of_256(void)
{
    kv_pool *p = mk(64, 16, true);
    int32_t a[256], b[256];
    iota(a, 256, 1000);
    memcpy(b, a, sizeof b);
    iota(b + 224, 32, 5000);
    int64_t nc = -1;
    kv_seq *sa = create(p, a, 256, 0, &nc);
    CHECK_EQ_INT(nc, 0);
    compute(p, sa, a, 256, NULL);
    CHECK_EQ_INT(n_table(sa), 16);
    for (int i = 0; i < 16; i++)
        CHECK(kv_block_hash(p, blk(sa, i), NULL));

    kv_seq *sb = create(p, b, 256, 0, &nc);
    CHECK_EQ_INT(nc, 224);
    CHECK_EQ_INT(kv_seq_n_computed(sb), 224);
    CHECK_EQ_INT(n_table(sb), 14);
    for (int i = 0; i < 14; i++) {
        CHECK_EQ_INT(blk(sb, i), blk(sa, i));
        CHECK_EQ_INT(kv_block_refcount(p, blk(sa, i)), 2);
    }
    CHECK_EQ_INT(kv_block_refcount(p, blk(sa, 14)), 1);
    EXPECT_COUNTS(p, 16, 0);
    CHECK_EQ_INT(kv_append_blocks(p, sb, 256 - nc), 2); /* the last 32 tokens only */
    compute(p, sb, b + nc, 256 - nc, NULL);
    EXPECT_COUNTS(p, 18, 0);
    kv_stats st;
    kv_get_stats(p, &st);
    CHECK_EQ_INT(st.prefix_queries, 512);
    CHECK_EQ_INT(st.prefix_hits, 224);

    /* A fully cached prompt of 16 full blocks attaches 15: the last block is
     * recomputed whole so that the last token's logits exist. */
    int32_t a14 = blk(sa, 14), a15 = blk(sa, 15);
    kv_seq_free(p, sa);
    EXPECT_COUNTS(p, 16, 2);
    kv_seq *sc = create(p, a, 256, 0, &nc);
    CHECK_EQ_INT(nc, 240);
    CHECK_EQ_INT(blk(sc, 14), a14);
    CHECK_EQ_INT(kv_block_refcount(p, a15), 0);
    EXPECT_COUNTS(p, 17, 1);
    CHECK_EQ_INT(kv_append_blocks(p, sc, 16), 1);
    int64_t n_hits[4] = {0};
    int64_t lens[4] = {250, 241, 240, 1};
    for (int i = 0; i < 4; i++) {
        kv_seq *s = create(p, a, lens[i], 0, &n_hits[i]);
        kv_seq_free(p, s);
    }
    CHECK_EQ_INT(n_hits[0], 240);
    CHECK_EQ_INT(n_hits[1], 240);
    CHECK_EQ_INT(n_hits[2], 224);
    CHECK_EQ_INT(n_hits[3], 0);
    kv_get_stats(p, &st);
    CHECK_EQ_INT(st.prefix_queries, 512 + 256 + 250 + 241 + 240 + 1);
    CHECK_EQ_INT(st.prefix_hits, 224 + 240 + 240 + 240 + 224);
    EXPECT_COUNTS(p, 17, 1);
    kv_pool_destroy(p);
}

/* Eviction: unnamed free blocks first, then cached ones least recently freed
 * first, a freed sequence's last block first; a reused block is not evicted;
 * the hook sees each eviction once with the block's hash. */
static void test_lru_eviction_order(void)
{
    kv_pool *p = mk(8, 4, true);
    CHECK(kv_set_hash_fn(p, fnv_hash) == VT_OK);
    evict_log log = {.p = p};
    kv_set_evict_hook(p, on_evict, &log);
    int32_t ta[13], tb[8], te[24];
    iota(ta, 13, 100);
    iota(tb, 8, 200);
    iota(te, 24, 300);
    kv_seq *a = create(p, ta, 12, 0, NULL);
    compute(p, a, ta, 12, NULL);
    kv_seq *b = create(p, tb, 8, 0, NULL);
    compute(p, b, tb, 8, NULL);
    int32_t a0 = blk(a, 0), a1 = blk(a, 1), a2 = blk(a, 2), b0 = blk(b, 0), b1 = blk(b, 1);
    uint64_t ha0 = fnv_hash(0, ta, 4, 0x5eed, 0), ha1 = fnv_hash(ha0, ta + 4, 4, 0x5eed, 0);
    uint64_t ha2 = fnv_hash(ha1, ta + 8, 4, 0x5eed, 0);
    uint64_t hb0 = fnv_hash(0, tb, 4, 0x5eed, 0), hb1 = fnv_hash(hb0, tb + 4, 4, 0x5eed, 0);
    uint64_t h;
    CHECK(kv_block_hash(p, a2, &h) && h == ha2);
    kv_seq_free(p, a);
    kv_seq_free(p, b);
    EXPECT_COUNTS(p, 0, 5);
    /* D reuses A's first two blocks: they leave the LRU list */
    int32_t td[9];
    memcpy(td, ta, 8 * sizeof *td);
    td[8] = 999;
    int64_t nc = -1;
    kv_seq *d = create(p, td, 9, 0, &nc);
    CHECK_EQ_INT(nc, 8);
    CHECK_EQ_INT(blk(d, 0), a0);
    CHECK_EQ_INT(blk(d, 1), a1);
    EXPECT_COUNTS(p, 2, 3);
    /* E takes 6 blocks, one per append: 3 plainly free ones, then a2, b1, b0 */
    kv_seq *e = create(p, te, 24, 0, NULL);
    int32_t want[3] = {a2, b1, b0};
    uint64_t want_h[3] = {ha2, hb1, hb0};
    for (int i = 0; i < 6; i++) {
        compute(p, e, te + 4 * i, 4, NULL);
        CHECK_EQ_INT(log.n, i < 3 ? 0 : i - 2);
        if (i >= 3) {
            CHECK_EQ_INT(log.block[i - 3], want[i - 3]);
            CHECK(log.hash[i - 3] == want_h[i - 3]);
            CHECK_EQ_INT(blk(e, i), want[i - 3]);
        }
    }
    CHECK_EQ_INT(log.bad, 0);
    CHECK_EQ_INT(kv_block_refcount(p, a0), 1);
    CHECK_EQ_INT(kv_block_refcount(p, a1), 1);
    EXPECT_COUNTS(p, 8, 0);
    kv_stats st;
    kv_get_stats(p, &st);
    CHECK_EQ_INT(st.evictions, 3);
    /* the pool is full: the next block fails and nothing changes */
    kv_copy cp;
    int ncp;
    CHECK(kv_append_slots(p, d, 1, &cp, &ncp) == VT_ERR_NOMEM);
    CHECK_EQ_INT(kv_seq_n_reserved(d), 0);
    EXPECT_COUNTS(p, 8, 0);
    CHECK_EQ_INT(log.n, 3);
    /* evicted blocks were forgotten: A's prompt finds only its first two */
    kv_seq_free(p, e);
    kv_seq *a_again = create(p, ta, 13, 0, &nc);
    CHECK_EQ_INT(nc, 8); /* 12 if a2 were still cached */
    kv_seq_free(p, a_again);
    kv_seq_free(p, d);
    EXPECT_COUNTS(p, 0, 8);
    CHECK_EQ_INT(log.bad, 0);
    kv_pool_destroy(p);
}

static void test_salts(void)
{
    for (int weak = 0; weak <= 1; weak++) {
        kv_pool *p = mk(32, 4, true);
        if (weak)
            CHECK(kv_set_hash_fn(p, hash_sum) == VT_OK); /* ignores the salts */
        int32_t t[13];
        iota(t, 13, 7);
        kv_seq *a = create(p, t, 12, 1, NULL);
        compute(p, a, t, 12, NULL);
        int64_t nc = -1;
        kv_seq *b = create(p, t, 13, 2, &nc);
        CHECK_EQ_INT(nc, 0);
        kv_seq *z = create(p, t, 13, 0, &nc);
        CHECK_EQ_INT(nc, 0);
        kv_seq *c = create(p, t, 13, 1, &nc);
        CHECK_EQ_INT(nc, 12);
        kv_seq_free(p, a);
        kv_seq_free(p, b);
        kv_seq_free(p, c);
        kv_seq_free(p, z);
        EXPECT_COUNTS(p, 0, 3);
        kv_pool_destroy(p);
    }
}

/* Injected collisions never hand out a wrong block. */
static void test_collisions(void)
{
    int64_t nc = -1;
    /* same hash, other tokens */
    kv_pool *p = mk(32, 4, true);
    CHECK(kv_set_hash_fn(p, hash_sum) == VT_OK);
    int32_t ta[9] = {1, 2, 3, 4, 5, 6, 7, 8, 0}, tb[9] = {4, 3, 2, 1, 5, 6, 7, 8, 0};
    kv_seq *a = create(p, ta, 8, 0, NULL);
    compute(p, a, ta, 8, NULL);
    kv_seq *b = create(p, tb, 9, 0, &nc);
    CHECK_EQ_INT(nc, 0);
    compute(p, b, tb, 9, NULL);
    CHECK(!kv_block_hash(p, blk(b, 0), NULL)); /* its hash names A's block */
    CHECK(!kv_block_hash(p, blk(b, 1), NULL)); /* the chain is broken */
    create(p, tb, 9, 0, &nc);
    CHECK_EQ_INT(nc, 0);
    create(p, ta, 9, 0, &nc);
    CHECK_EQ_INT(nc, 8);
    kv_pool_destroy(p);

    /* same hash and tokens, other parent: B = [R | Q] after A = [P | Q] */
    p = mk(32, 4, true);
    CHECK(kv_set_hash_fn(p, hash_sum) == VT_OK);
    int32_t pq[9] = {1, 2, 3, 4, 9, 9, 9, 9, 0}, rq[9] = {0, 0, 0, 1, 9, 9, 9, 9, 7};
    a = create(p, pq, 8, 0, NULL);
    compute(p, a, pq, 8, NULL);
    b = create(p, rq, 8, 0, &nc);
    CHECK_EQ_INT(nc, 0);
    compute(p, b, rq, 8, NULL);
    CHECK(kv_block_hash(p, blk(b, 0), NULL));
    CHECK(!kv_block_hash(p, blk(b, 1), NULL));
    kv_seq *c = create(p, rq, 9, 0, &nc);
    CHECK_EQ_INT(nc, 4); /* not A's Q block: its K/V follows P */
    CHECK_EQ_INT(blk(c, 0), blk(b, 0));
    kv_seq *d = create(p, pq, 9, 0, &nc);
    CHECK_EQ_INT(nc, 8);
    CHECK_EQ_INT(blk(d, 1), blk(a, 1));
    kv_pool_destroy(p);

    /* a stale parent: block size 1, the hash ignores the parent. S1 = [x t u]
     * and S2 = [x t v] computed together (S2's x and t are duplicates, its v
     * is named as a child of S1's t). S1 is freed and its t block is evicted
     * and named again as the child of a y block. A prompt [y t v] then
     * matches y and t, but v's K/V follows x: it must not be attached. */
    p = mk(6, 1, true);
    CHECK(kv_set_hash_fn(p, hash_sum) == VT_OK);
    int32_t s1t[3] = {10, 20, 30}, s2t[3] = {10, 20, 40}, s3t[2] = {50, 20},
            s4t[4] = {50, 20, 40, 60};
    kv_seq *s1 = create(p, s1t, 3, 0, NULL), *s2 = create(p, s2t, 3, 0, NULL);
    compute(p, s1, s1t, 3, NULL);
    compute(p, s2, s2t, 3, NULL);
    CHECK(!kv_block_hash(p, blk(s2, 0), NULL));
    CHECK(!kv_block_hash(p, blk(s2, 1), NULL));
    CHECK(kv_block_hash(p, blk(s2, 2), NULL));
    int32_t s1_t = blk(s1, 1);
    kv_seq_free(p, s1);
    EXPECT_COUNTS(p, 3, 3);
    kv_seq *s3 = create(p, s3t, 2, 0, &nc);
    CHECK_EQ_INT(nc, 0);
    compute(p, s3, s3t, 2, NULL); /* evicts S1's u, then its t */
    CHECK_EQ_INT(blk(s3, 1), s1_t);
    CHECK(kv_block_hash(p, s1_t, NULL));
    kv_seq *s4 = create(p, s4t, 4, 0, &nc);
    CHECK_EQ_INT(nc, 2);
    CHECK_EQ_INT(blk(s4, 1), s1_t);
    /* [x t v]: S1's x block is still cached, its t block is not (renamed),
     * S2's t was a duplicate and never named */
    int32_t s5t[4] = {10, 20, 40, 60};
    create(p, s5t, 4, 0, &nc);
    CHECK_EQ_INT(nc, 1); /* x; S1's t is gone, S2's t was a duplicate */
    kv_pool_destroy(p);
}

/* Preemption by recomputation: free a sequence, re-create it with its
 * prompt and generated tokens, get its cached blocks back. */
static void test_preempt_resume(void)
{
    kv_pool *p = mk(16, 16, true);
    int32_t t[70], other[208];
    iota(t, 70, 1);
    iota(other, 208, 10000);
    kv_seq *a = create(p, t, 40, 0, NULL);
    compute(p, a, t, 40, NULL);
    for (int i = 40; i < 70; i++) /* decode one token at a time */
        compute(p, a, t + i, 1, NULL);
    CHECK_EQ_INT(kv_seq_n_computed(a), 70);
    CHECK_EQ_INT(n_table(a), 5);
    int32_t ab[5];
    for (int i = 0; i < 5; i++)
        ab[i] = blk(a, i);
    kv_seq_free(p, a); /* preempted */
    EXPECT_COUNTS(p, 0, 4);
    int64_t nc = -1;
    kv_seq *r = create(p, t, 70, 0, &nc);
    CHECK_EQ_INT(nc, 64);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(blk(r, i), ab[i]);
    CHECK_EQ_INT(kv_append_blocks(p, r, 6), 1);
    compute(p, r, t + 64, 6, NULL);
    kv_seq_free(p, r); /* preempted again */
    EXPECT_COUNTS(p, 0, 4);
    /* another request takes 13 blocks: 12 free ones and the last cached
     * block of the preempted one */
    kv_seq *o = create(p, other, 208, 0, NULL);
    compute(p, o, other, 208, NULL);
    CHECK_EQ_INT(kv_block_refcount(p, ab[3]), 1);
    CHECK(kv_block_hash(p, ab[3], NULL)); /* now named for o's content */
    kv_seq_free(p, o);
    r = create(p, t, 70, 0, &nc);
    CHECK_EQ_INT(nc, 48);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(blk(r, i), ab[i]);
    kv_pool_destroy(p);
}

static void test_can_allocate(void)
{
    kv_pool *p = mk(10, 16, true);
    CHECK_EQ_INT(kv_can_allocate(p, 100, 200), KV_NEVER); /* 13 blocks > 10 */
    CHECK_EQ_INT(kv_can_allocate(p, 161, 0), KV_NEVER);
    CHECK_EQ_INT(kv_can_allocate(p, 160, 160), KV_OK);
    CHECK_EQ_INT(kv_can_allocate(p, 0, 0), KV_OK);
    CHECK_EQ_INT(kv_can_allocate(p, 10, INT64_MAX), KV_NEVER);
    int32_t t[128];
    iota(t, 128, 3);
    kv_seq *a = create(p, t, 128, 0, NULL);
    compute(p, a, t, 128, NULL); /* 8 blocks */
    CHECK_EQ_INT(kv_can_allocate(p, 48, 48), KV_LATER); /* 3 > 2 free: a is in the way */
    CHECK_EQ_INT(kv_can_allocate(p, 32, 160), KV_OK);
    CHECK_EQ_INT(kv_can_allocate(p, 32, 161), KV_NEVER);
    CHECK_EQ_INT(kv_can_allocate(p, 33, 100), KV_LATER);
    kv_seq *b = create(p, t + 1, 48, 0, NULL);
    kv_stats before, after;
    kv_get_stats(p, &before);
    kv_copy cp;
    int ncp;
    CHECK_EQ_INT(kv_append_blocks(p, b, 48), 3);
    CHECK(kv_append_slots(p, b, 48, &cp, &ncp) == VT_ERR_NOMEM);
    kv_get_stats(p, &after);
    CHECK(memcmp(&before, &after, sizeof before) == 0);
    CHECK_EQ_INT(n_table(b), 0);
    CHECK_EQ_INT(kv_seq_n_reserved(b), 0);
    CHECK_POOL(p);
    kv_seq_free(p, a); /* its 8 blocks are cached: they count as free */
    CHECK_EQ_INT(kv_can_allocate(p, 48, 48), KV_OK);
    CHECK_EQ_INT(kv_can_allocate(p, 160, 160), KV_OK);
    kv_pool_destroy(p);
}

/* Two sequences computing the same prefix at the same time: the table keeps
 * the first block, the second stays unnamed and is counted once; a block
 * after the shared prefix is named as a child of the first. */
static void test_duplicate_content(void)
{
    kv_pool *p = mk(16, 4, true);
    int32_t ta[9], tb[9];
    iota(ta, 9, 1);
    memcpy(tb, ta, sizeof tb);
    tb[4] = tb[5] = tb[6] = tb[7] = 77;
    int64_t nc = -1;
    kv_seq *a = create(p, ta, 8, 0, &nc), *b = create(p, tb, 8, 0, &nc);
    CHECK_EQ_INT(nc, 0);
    compute(p, a, ta, 8, NULL);
    compute(p, b, tb, 8, NULL);
    CHECK(kv_block_hash(p, blk(a, 0), NULL));
    CHECK(!kv_block_hash(p, blk(b, 0), NULL));
    CHECK(kv_block_hash(p, blk(b, 1), NULL));
    EXPECT_COUNTS(p, 4, 0);
    int32_t a0 = blk(a, 0), b1 = blk(b, 1);
    kv_seq_free(p, a);
    kv_seq_free(p, b);
    EXPECT_COUNTS(p, 0, 3); /* A's two blocks and B's second, not B's copy of A's first */
    kv_seq *d = create(p, tb, 9, 0, &nc);
    CHECK_EQ_INT(nc, 8);
    CHECK_EQ_INT(blk(d, 0), a0);
    CHECK_EQ_INT(blk(d, 1), b1);
    kv_pool_destroy(p);
}

/* The checker is not vacuous: each kind of corruption is reported. */
static void test_check_catches_corruption(void)
{
    kv_pool *p = mk(16, 4, true);
    int32_t t[12];
    iota(t, 12, 1);
    kv_seq *a = create(p, t, 12, 0, NULL);
    compute(p, a, t, 10, NULL);
    kv_seq *b = kv_fork(p, a);
    kv_seq_free(p, create(p, t + 1, 8, 0, NULL)); /* nothing to see */
    kv_seq *c = create(p, t, 9, 0, NULL);
    (void)b, (void)c;
    kv_seq_free(p, a); /* blocks in every state: used, cached, free */
    kv_seq *d = create(p, t + 2, 9, 0, NULL);
    compute(p, d, t + 2, 9, NULL);
    kv_seq_free(p, d);
    CHECK_POOL(p);
    kv_stats st;
    kv_get_stats(p, &st);
    CHECK(st.blocks_used > 0 && st.blocks_cached > 0 && st.blocks_free > st.blocks_cached);
    int32_t used = blk(b, 0), cached = -1, freeb = -1;
    for (int32_t i = 0; i < 16; i++) {
        if (kv_block_refcount(p, i) == 0 && kv_block_hash(p, i, NULL))
            cached = i;
        if (kv_block_refcount(p, i) == 0 && !kv_block_hash(p, i, NULL))
            freeb = i;
    }
    CHECK(cached >= 0 && freeb >= 0);
    if (cached < 0 || freeb < 0) {
        kv_pool_destroy(p);
        return;
    }
#define CORRUPT(what, undo)                                                                        \
    do {                                                                                           \
        what;                                                                                      \
        CHECKF(kv_check(p) == VT_ERR_INTERNAL, "not caught: %s", #what);                          \
        undo;                                                                                      \
        CHECK_POOL(p);                                                                             \
    } while (0)
    CORRUPT(p->blk[used].ref++, p->blk[used].ref--);
    CORRUPT(p->blk[cached].ref = 1, p->blk[cached].ref = 0);
    CORRUPT(p->blk[freeb].named = true, p->blk[freeb].named = false);
    CORRUPT(p->blk[cached].named = false, p->blk[cached].named = true);
    CORRUPT(p->n_used++, p->n_used--);
    CORRUPT(p->lru.len++, p->lru.len--);
    CORRUPT(p->freel.len--, p->freel.len++);
    CORRUPT(p->n_named++, p->n_named--);
    CORRUPT(p->blk[cached].hash ^= 1, p->blk[cached].hash ^= 1);
    int32_t nx = p->blk[freeb].next;
    CORRUPT(p->blk[freeb].next = freeb, p->blk[freeb].next = nx);
    CORRUPT(b->n_reserved = 3, b->n_reserved = 0);
    CORRUPT(b->table[0] = freeb, b->table[0] = used);
#undef CORRUPT
    kv_pool_destroy(p);
}

/* Scale: a 2^17-block pool, 256 requests sharing a 256-token system prompt,
 * 64 decode steps each; every verb O(1) or O(tokens). */
static void test_scale(void)
{
    kv_pool *p = mk(1 << 17, 16, true);
    enum { N = 256, SYS = 256, OWN = 256, STEPS = 64 };
    static int32_t prompt[SYS + OWN];
    iota(prompt, SYS, 1);
    kv_seq *s[N];
    int64_t hits = 0, wrong = 0;
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < OWN; j++)
            prompt[SYS + j] = 100000 + i * OWN + j;
        int64_t nc;
        s[i] = kv_seq_create(p, prompt, SYS + OWN, 0, &nc);
        if (!s[i])
            break;
        hits += nc;
        wrong += nc != (i == 0 ? 0 : SYS);
        kv_copy cp;
        int ncp;
        if (kv_append_slots(p, s[i], SYS + OWN - nc, &cp, &ncp) != VT_OK ||
            kv_commit(p, s[i], prompt + nc, SYS + OWN - nc) != VT_OK)
            wrong++;
    }
    for (int step = 0; step < STEPS; step++)
        for (int i = 0; i < N; i++) {
            kv_copy cp;
            int ncp;
            int32_t tok = step * 7 + i;
            if (!s[i] || kv_append_slots(p, s[i], 1, &cp, &ncp) != VT_OK ||
                kv_commit(p, s[i], &tok, 1) != VT_OK)
                wrong++;
        }
    CHECK_POOL(p);
    kv_stats st;
    kv_get_stats(p, &st);
    for (int i = 0; i < N; i++)
        kv_seq_free(p, s[i]);
    double t1 = (double)clock() / CLOCKS_PER_SEC;
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(hits, (N - 1) * SYS);
    CHECK_EQ_INT(st.blocks_used, SYS / 16 + N * ((OWN + STEPS) / 16));
    printf("  scale: %d requests x (%d prompt + %d decode) tokens, %lld blocks used, %.1f ms\n", N,
           SYS + OWN, STEPS, (long long)st.blocks_used, (t1 - t0) * 1e3);
    CHECK_POOL(p);
    kv_pool_destroy(p);
}

/* ------------------------------------------------------- randomized run */

#define R_MAXS 16
#define R_MAXTOK 96

typedef struct {
    kv_seq *s;
    int32_t tok[R_MAXTOK];
    uint64_t fp[R_MAXTOK]; /* fingerprint of tok[0..i] and the salt */
    int64_t n_script;      /* tokens known (prompt + generated so far) */
    int64_t n_prompt, n_done, reserved;
    uint64_t salt;
} rseq;

typedef struct {
    int32_t tok[R_MAXTOK];
    int64_t n;
    uint64_t salt;
} rsaved;

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}
static int64_t rn(int64_t n)
{
    return (int64_t)(rnd() % (uint64_t)n);
}

static uint64_t fp_step(uint64_t prev, int32_t t)
{
    uint64_t z = prev ^ ((uint64_t)(uint32_t)t * UINT64_C(0xff51afd7ed558ccd));
    z = (z ^ (z >> 33)) * UINT64_C(0xc4ceb9fe1a85ec53);
    return z ^ (z >> 29);
}

static void script_set(rseq *m, const int32_t *tok, int64_t n, uint64_t salt)
{
    m->salt = salt;
    m->n_script = 0;
    for (int64_t i = 0; i < n; i++) {
        m->tok[i] = tok[i];
        m->fp[i] = fp_step(i ? m->fp[i - 1] : salt * 31 + 17, tok[i]);
    }
    m->n_script = n;
}

static void script_extend(rseq *m, int64_t n)
{
    while (m->n_script < n) {
        int64_t i = m->n_script++;
        m->tok[i] = (int32_t)rn(3);
        m->fp[i] = fp_step(i ? m->fp[i - 1] : m->salt * 31 + 17, m->tok[i]);
    }
}

typedef struct {
    const char *name;
    int64_t n_blocks;
    int32_t bs;
    bool caching;
    kv_hash_fn hash;
} rconfig;

static void random_run(const rconfig *cfg, int iters, uint64_t seed)
{
    rng_state = seed;
    kv_pool *p = mk(cfg->n_blocks, cfg->bs, cfg->caching);
    if (!p)
        return;
    if (cfg->hash)
        CHECK(kv_set_hash_fn(p, cfg->hash) == VT_OK);
    evict_log log = {.p = p};
    kv_set_evict_hook(p, on_evict, &log);
    const int64_t nb = cfg->n_blocks, bs = cfg->bs;
    uint64_t(*kvd)[64] = calloc((size_t)nb, sizeof *kvd); /* fake K/V per slot */
    int32_t *occ = calloc((size_t)nb, sizeof *occ);
    static rseq seqs[R_MAXS];
    static rsaved saved[8];
    int n_live = 0, n_saved = 0, failures_before = test_failures_in_current;
    int32_t bases[4][48];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 48; j++)
            bases[i][j] = (int32_t)rn(4);
    int64_t hits = 0, creates = 0, nomems = 0, copies = 0, forks = 0;
    int it = 0;
    for (; it < iters && test_failures_in_current == failures_before; it++) {
        int64_t r = rn(100);
        if (r < 16 && n_live < R_MAXS) { /* create, or resume a preempted one */
            rseq *m = &seqs[n_live];
            if (n_saved > 0 && rn(3) == 0) {
                rsaved *sv = &saved[--n_saved];
                script_set(m, sv->tok, sv->n, sv->salt);
            } else {
                int32_t t[R_MAXTOK];
                int64_t nb_ = rn(44), tail = rn(6);
                memcpy(t, bases[rn(4)], (size_t)nb_ * sizeof *t);
                for (int64_t i = 0; i < tail; i++)
                    t[nb_ + i] = (int32_t)rn(3);
                script_set(m, t, nb_ + tail, rn(3) == 0 ? 5 : 0);
            }
            m->n_prompt = m->n_script;
            int64_t nc = -1;
            kv_alloc_status can = kv_can_allocate(p, m->n_prompt, m->n_prompt);
            m->s = kv_seq_create(p, m->tok, m->n_prompt, m->salt, &nc);
            CHECKF(m->s != NULL, "create: %s", vt_last_error());
            if (!m->s)
                break;
            creates++;
            hits += nc > 0;
            CHECK(nc % bs == 0 && nc >= 0 && nc <= (m->n_prompt > 0 ? m->n_prompt - 1 : 0));
            CHECK(cfg->caching || nc == 0);
            m->n_done = nc;
            m->reserved = 0;
            n_live++;
            if (can == KV_OK && rn(2) == 0) { /* OK means the whole prompt fits now */
                kv_copy cp;
                int ncp = -1;
                vt_err e = kv_append_slots(p, m->s, m->n_prompt - nc, &cp, &ncp);
                CHECKF(e == VT_OK, "iteration %d: OK from kv_can_allocate, then: %s", it,
                       vt_last_error());
                CHECK_EQ_INT(ncp, 0);
                if (e == VT_OK)
                    m->reserved = m->n_prompt - nc;
            }
        } else if (r < 72 && n_live > 0) { /* a step: reserve, then commit */
            rseq *m = &seqs[rn(n_live)];
            if (m->n_done >= R_MAXTOK - 12) {
                continue;
            }
            bool preempted = false;
            if (m->reserved == 0 || rn(4) == 0) {
                int64_t k = m->n_done < m->n_prompt ? 1 + rn(VT_MIN(9, m->n_prompt - m->n_done))
                                                    : rn(6) == 0 ? 0 : 1 + rn(2);
                script_extend(m, m->n_done + VT_MAX(k, m->reserved));
                kv_stats before, after;
                kv_get_stats(p, &before);
                int64_t nt0;
                const int32_t *t0 = kv_seq_blocks(m->s, &nt0);
                int32_t keep[R_MAXTOK];
                memcpy(keep, t0, (size_t)nt0 * sizeof *keep);
                int64_t need = kv_append_blocks(p, m->s, k);
                kv_copy cp = {-1, -1};
                int ncp = -1;
                vt_err e = kv_append_slots(p, m->s, k, &cp, &ncp);
                kv_get_stats(p, &after);
                if (e == VT_ERR_NOMEM) {
                    nomems++;
                    CHECK(need > before.blocks_free);
                    CHECK(memcmp(&before, &after, sizeof before) == 0);
                    int64_t nt1;
                    const int32_t *t1 = kv_seq_blocks(m->s, &nt1);
                    CHECK(nt1 == nt0 && memcmp(t1, keep, (size_t)nt0 * sizeof *keep) == 0);
                    CHECK_EQ_INT(ncp, 0);
                    /* preempt someone: free it, keep its tokens to resume */
                    int victim = (int)rn(n_live);
                    rseq *v = &seqs[victim];
                    if (n_saved < 8) {
                        rsaved *sv = &saved[n_saved++];
                        sv->n = VT_MAX(v->n_done, v->n_prompt);
                        memcpy(sv->tok, v->tok, (size_t)sv->n * sizeof *sv->tok);
                        sv->salt = v->salt;
                    }
                    kv_seq_free(p, v->s);
                    seqs[victim] = seqs[--n_live];
                    preempted = true; /* m may be gone or moved: no commit */
                } else {
                    CHECKF(e == VT_OK, "append: %s", vt_last_error());
                    CHECK_EQ_INT(before.blocks_free - after.blocks_free, need);
                    if (ncp == 1) {
                        copies++;
                        int64_t nt1;
                        const int32_t *t1 = kv_seq_blocks(m->s, &nt1);
                        CHECK_EQ_INT(cp.src, keep[m->n_done / bs]);
                        CHECK_EQ_INT(cp.dst, t1[m->n_done / bs]);
                        CHECK(cp.src >= 0 && cp.src < nb && cp.dst >= 0 && cp.dst < nb);
                        if (cp.src >= 0 && cp.src < nb && cp.dst >= 0 && cp.dst < nb)
                            memcpy(kvd[cp.dst], kvd[cp.src], sizeof kvd[0]);
                        CHECK_EQ_INT(after.cow_copies, before.cow_copies + 1);
                    } else {
                        CHECK_EQ_INT(ncp, 0);
                    }
                    m->reserved = VT_MAX(m->reserved, k);
                }
            }
            if (!preempted && m->reserved > 0) {
                {
                    int64_t j = rn(3) == 0 ? rn(m->reserved + 1) : m->reserved;
                    int64_t nt;
                    const int32_t *t = kv_seq_blocks(m->s, &nt);
                    for (int64_t i = 0; i < j; i++) {
                        int64_t pos = m->n_done + i;
                        int32_t b = t[pos / bs];
                        CHECKF(kv_block_refcount(p, b) == 1, "write into shared block %d", b);
                        kvd[b][pos % bs] = m->fp[pos];
                    }
                    vt_err e = kv_commit(p, m->s, m->tok + m->n_done, j);
                    CHECKF(e == VT_OK, "commit: %s", vt_last_error());
                    m->n_done += j;
                    m->reserved -= j;
                }
            }
        } else if (r < 80 && n_live > 0 && n_live < R_MAXS) { /* fork */
            rseq *m = &seqs[rn(n_live)];
            kv_seq *c = kv_fork(p, m->s);
            if (m->reserved > 0) {
                CHECK(c == NULL);
            } else {
                CHECKF(c != NULL, "fork: %s", vt_last_error());
                if (!c)
                    break;
                forks++;
                rseq *n = &seqs[n_live++];
                *n = *m;
                n->s = c;
                n->n_script = VT_MAX(m->n_done, m->n_prompt); /* diverges after */
            }
        } else if (r < 92 && n_live > 0) { /* finish or preempt */
            int i = (int)rn(n_live);
            rseq *m = &seqs[i];
            if (rn(2) == 0 && n_saved < 8) {
                rsaved *sv = &saved[n_saved++];
                sv->n = VT_MAX(m->n_done, m->n_prompt);
                memcpy(sv->tok, m->tok, (size_t)sv->n * sizeof *sv->tok);
                sv->salt = m->salt;
            }
            kv_seq_free(p, m->s);
            seqs[i] = seqs[--n_live];
        } else { /* OK / LATER / NEVER against the model */
            int64_t n = rn(bs * nb + 2 * bs), mx = rn(bs * nb + 2 * bs);
            kv_stats st;
            kv_get_stats(p, &st);
            int64_t used = 0;
            memset(occ, 0, (size_t)nb * sizeof *occ);
            for (int i = 0; i < n_live; i++) {
                int64_t nt;
                const int32_t *t = kv_seq_blocks(seqs[i].s, &nt);
                for (int64_t j = 0; j < nt; j++)
                    used += occ[t[j]]++ == 0;
            }
            int64_t bn = (n + bs - 1) / bs, bmx = (VT_MAX(n, mx) + bs - 1) / bs;
            kv_alloc_status want = bmx > nb ? KV_NEVER : bn <= nb - used ? KV_OK : KV_LATER;
            CHECK_EQ_INT(kv_can_allocate(p, n, mx), want);
        }

        /* the model's view after every verb */
        CHECK_POOL(p);
        memset(occ, 0, (size_t)nb * sizeof *occ);
        int64_t used = 0;
        for (int i = 0; i < n_live; i++) {
            rseq *m = &seqs[i];
            int64_t nt;
            const int32_t *t = kv_seq_blocks(m->s, &nt);
            CHECK_EQ_INT(kv_seq_n_computed(m->s), m->n_done);
            CHECK_EQ_INT(kv_seq_n_reserved(m->s), m->reserved);
            CHECK_EQ_INT(nt, (m->n_done + m->reserved + bs - 1) / bs);
            for (int64_t j = 0; j < nt; j++)
                used += occ[t[j]]++ == 0;
            for (int64_t pos = 0; pos < m->n_done; pos++)
                if (kvd[t[pos / bs]][pos % bs] != m->fp[pos]) {
                    CHECKF(false, "iteration %d: sequence %d position %lld holds other K/V", it, i,
                           (long long)pos);
                    break;
                }
        }
        for (int64_t b = 0; b < nb; b++)
            if (kv_block_refcount(p, (int32_t)b) != occ[b]) {
                CHECKF(false, "iteration %d: block %lld refcount %d, %d tables hold it", it,
                       (long long)b, kv_block_refcount(p, (int32_t)b), occ[b]);
                break;
            }
        kv_stats st;
        kv_get_stats(p, &st);
        CHECK_EQ_INT(st.blocks_used, used);
        CHECK_EQ_INT(st.blocks_free, nb - used);
        CHECK(st.blocks_cached <= st.blocks_free);
        CHECK(cfg->caching || st.blocks_cached == 0);
        CHECK_EQ_INT(st.evictions, log.n);
        CHECK_EQ_INT(log.bad, 0);
    }
    if (test_failures_in_current != failures_before)
        printf("  %s: stopped at iteration %d\n", cfg->name, it - 1);
    printf("  %s: %lld creates (%lld with hits), %lld forks, %lld copies, %lld NOMEM, "
           "%d evictions\n",
           cfg->name, (long long)creates, (long long)hits, (long long)forks, (long long)copies,
           (long long)nomems, log.n);
    if (cfg->caching)
        CHECK(hits > 0);
    CHECK(nomems > 0);
    CHECK(copies > 0 || bs == 1); /* a block of 1 is never partial */
    CHECK(log.n > 0 || !cfg->caching);
    kv_pool_destroy(p);
    free(kvd);
    free(occ);
}

static void test_random_verbs(void)
{
    static const rconfig cfgs[] = {
        {"default hash, block 4", 40, 4, true, NULL},
        {"default hash, block 1", 64, 1, true, NULL},
        {"weak hash (first token)", 40, 4, true, hash_first},
        {"weak hash (16 values)", 40, 4, true, hash_small},
        {"weak hash (16 values), block 1", 48, 1, true, hash_small},
        {"no prefix caching", 40, 4, false, NULL},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++)
        random_run(&cfgs[i], 20000, 0x1234 + i);
}

int main(void)
{
    RUN_TEST(test_config_and_arguments);
    RUN_TEST(test_counts_every_verb);
    RUN_TEST(test_copy_on_write);
    RUN_TEST(test_prefix_hit_224_of_256);
    RUN_TEST(test_lru_eviction_order);
    RUN_TEST(test_salts);
    RUN_TEST(test_collisions);
    RUN_TEST(test_preempt_resume);
    RUN_TEST(test_can_allocate);
    RUN_TEST(test_duplicate_content);
    RUN_TEST(test_check_catches_corruption);
    RUN_TEST(test_scale);
    RUN_TEST(test_random_verbs);
    return test_finish("test_kv");
}
