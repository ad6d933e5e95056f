/*
 * kv_check.c - the block manager's invariant checker (kv_check in kv.h):
 * recomputes every block's reference count from the live block tables and
 * compares it, each block's list membership with its state, the free and LRU
 * lists' links and lengths, the hash table's entries with the named blocks,
 * and the counters with what it counted. For tests and debug builds.
 */
#include <stdlib.h>

#include "kv/kv_internal.h"

static vt_err check_list(const kv_pool *p, const kv_list *l, uint8_t which, const char *name)
{
    int64_t n = 0;
    int32_t prev = -1;
    for (int32_t b = l->head; b >= 0; b = p->blk[b].next) {
        if (b >= p->n_blocks || n >= p->n_blocks)
            return vt_fail(VT_ERR_INTERNAL, "kv_check: %s list broken (block %d, %lld links)",
                           name, b, (long long)n);
        const kv_block *k = &p->blk[b];
        if (k->list != which || k->prev != prev)
            return vt_fail(VT_ERR_INTERNAL, "kv_check: block %d in the %s list is marked %d "
                                            "with prev %d (expected %d)",
                           b, name, k->list, k->prev, prev);
        prev = b;
        n++;
    }
    if (prev != l->tail || n != l->len)
        return vt_fail(VT_ERR_INTERNAL, "kv_check: %s list has %lld blocks (len %lld), tail %d "
                                        "(expected %d)",
                       name, (long long)n, (long long)l->len, l->tail, prev);
    return VT_OK;
}

vt_err kv_check(const kv_pool *p)
{
    if (!p)
        return vt_fail(VT_ERR_INVALID, "kv_check: no pool");
    int32_t *count = calloc((size_t)p->n_blocks, sizeof *count);
    if (!count)
        return vt_fail(VT_ERR_NOMEM, "kv_check: out of memory");
    vt_err e = VT_OK;
    int64_t n_seqs = 0;
    for (const kv_seq *s = p->seqs, *prev = NULL; s; prev = s, s = s->next) {
        if (s->prev != prev || ++n_seqs > p->n_seqs) {
            e = vt_fail(VT_ERR_INTERNAL, "kv_check: sequence list broken");
            goto done;
        }
        if (s->n_computed < 0 || s->n_reserved < 0 || s->n_table > s->cap ||
            s->n_table != blocks_for(p, s->n_computed + s->n_reserved)) {
            e = vt_fail(VT_ERR_INTERNAL, "kv_check: a sequence has %lld blocks for %lld computed "
                                         "+ %lld reserved tokens",
                        (long long)s->n_table, (long long)s->n_computed,
                        (long long)s->n_reserved);
            goto done;
        }
        for (int64_t i = 0; i < s->n_table; i++) {
            int32_t b = s->table[i];
            if (b < 0 || b >= p->n_blocks) {
                e = vt_fail(VT_ERR_INTERNAL, "kv_check: block id %d out of range", b);
                goto done;
            }
            count[b]++;
            if (p->blk[b].named && (i + 1) * p->bs > s->n_computed) {
                e = vt_fail(VT_ERR_INTERNAL, "kv_check: block %d is named but not full", b);
                goto done;
            }
        }
        if (s->n_reserved > 0 && s->n_computed % p->bs != 0 &&
            p->blk[s->table[s->n_computed / p->bs]].ref != 1) {
            e = vt_fail(VT_ERR_INTERNAL, "kv_check: reserved slots in a shared block");
            goto done;
        }
    }
    if (n_seqs != p->n_seqs) {
        e = vt_fail(VT_ERR_INTERNAL, "kv_check: %lld sequences linked, %lld counted",
                    (long long)n_seqs, (long long)p->n_seqs);
        goto done;
    }
    int64_t used = 0, cached = 0, unnamed_free = 0, named = 0;
    for (int64_t b = 0; b < p->n_blocks; b++) {
        const kv_block *k = &p->blk[b];
        if (k->ref != count[b]) {
            e = vt_fail(VT_ERR_INTERNAL, "kv_check: block %lld has refcount %d but %d tables "
                                         "hold it",
                        (long long)b, k->ref, count[b]);
            goto done;
        }
        uint8_t want = k->ref > 0 ? IN_NONE : k->named ? IN_LRU : IN_FREE;
        if (k->list != want) {
            e = vt_fail(VT_ERR_INTERNAL, "kv_check: block %lld (refcount %d, %s) is in list %d, "
                                         "expected %d",
                        (long long)b, k->ref, k->named ? "named" : "unnamed", k->list, want);
            goto done;
        }
        if (k->stored && !k->named) {
            e = vt_fail(VT_ERR_INTERNAL, "kv_check: block %lld is marked stored but unnamed",
                        (long long)b);
            goto done;
        }
        used += k->ref > 0;
        cached += k->ref == 0 && k->named;
        unnamed_free += k->ref == 0 && !k->named;
        if (k->named) {
            named++;
            if (k->parent == b) {
                e = vt_fail(VT_ERR_INTERNAL, "kv_check: named block %lld is its own parent",
                            (long long)b);
                goto done;
            }
            if (!p->caching || ht_lookup(p, k->hash) != (int32_t)b) {
                e = vt_fail(VT_ERR_INTERNAL, "kv_check: named block %lld not found under its "
                                             "hash",
                            (long long)b);
                goto done;
            }
        }
    }
    if (used != p->n_used || cached != p->lru.len || unnamed_free != p->freel.len ||
        named != p->n_named || used + cached + unnamed_free != p->n_blocks) {
        e = vt_fail(VT_ERR_INTERNAL, "kv_check: counts: used %lld (counter %lld), cached %lld "
                                     "(LRU %lld), free %lld (list %lld), named %lld (counter "
                                     "%lld), total %lld",
                    (long long)used, (long long)p->n_used, (long long)cached,
                    (long long)p->lru.len, (long long)unnamed_free, (long long)p->freel.len,
                    (long long)named, (long long)p->n_named, (long long)p->n_blocks);
        goto done;
    }
    if ((e = check_list(p, &p->freel, IN_FREE, "free")) != VT_OK ||
        (e = check_list(p, &p->lru, IN_LRU, "LRU")) != VT_OK)
        goto done;
    if (p->caching) {
        int64_t entries = 0;
        for (uint64_t i = 0; i <= p->ht_mask; i++) {
            int32_t b = p->ht[i];
            if (b < 0)
                continue;
            entries++;
            if (b >= p->n_blocks || !p->blk[b].named) {
                e = vt_fail(VT_ERR_INTERNAL, "kv_check: hash table entry %d is not a named block",
                            b);
                goto done;
            }
        }
        if (entries != named) {
            e = vt_fail(VT_ERR_INTERNAL, "kv_check: hash table has %lld entries for %lld named "
                                         "blocks",
                        (long long)entries, (long long)named);
            goto done;
        }
    }
done:
    free(count);
    return e;
}
