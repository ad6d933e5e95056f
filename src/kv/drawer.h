/*
 * drawer.h - the KV drawer: a size-capped folder on disk that keeps the K/V
 * of prefix-cache blocks the pool lets go, so that a later request with the
 * same prefix (the next turn of a chat, also after a restart) loads them
 * instead of recomputing them. It is the pool's backing store (kv.h,
 * kv_set_backing): a block is offered when it becomes cached (its
 * conversation went idle) or is evicted unoffered, and asked for when a new
 * prompt runs past what the pool still holds.
 *
 * On disk: one file per block, DIR/xx/HHHHHHHHHHHHHHHH.kvb (H: the block's
 * prefix hash in hex, xx its first two digits), holding a header (format
 * version, the model's identity, the salts, both hash chains, the block's
 * place and tokens, the K/V layout, checksums of header and data) and the
 * K/V bytes. Files are written whole under a temporary name and renamed,
 * so a reader never sees half a file; a file that fails any check (a
 * machine crash before the data reached the disk, another build's layout,
 * bit rot) is deleted, never loaded. The folder's total size never exceeds
 * the cap: before a file is written, the least recently used ones (by their
 * modification time, which a load refreshes) are deleted to make room. A
 * lock file keeps a second process from using the same folder at once.
 *
 * Threads: the pool's thread calls the backing functions; offering a block
 * copies its K/V into memory (at most queue_bytes pending) and a writer
 * thread of the drawer writes it out, so the engine never waits for a
 * write. Loads read on the calling thread (page cache speed; a block of a
 * 1B model is ~350 KiB).
 */
#ifndef VT_KV_DRAWER_H
#define VT_KV_DRAWER_H

#include <stddef.h>
#include <stdint.h>

#include "kv/kv.h"
#include "vitamin.h"

typedef struct kv_drawer kv_drawer;

/* Where a block's K/V lives in memory: part i (0 <= i < n_parts) of block b
 * is len bytes at the returned address, the same len for every block. */
typedef void *(*kv_drawer_part_fn)(void *ctx, int32_t block, int32_t part, size_t *len);

typedef struct {
    const char *dir;     /* created if missing (and its parents) */
    int64_t cap_bytes;   /* the most the folder's .kvb files may take; >= 1 */
    int64_t queue_bytes; /* K/V copied but not yet written; 0: 256 MiB */
    /* The model and KV layout the blocks belong to (a file of another is
     * never loaded): a fingerprint of the weights, the cache type, ... */
    uint64_t model_id;
    int32_t block_size;
    int32_t n_parts;
    kv_drawer_part_fn part;
    void *part_ctx;
} kv_drawer_config;

typedef struct {
    int64_t files, bytes, cap_bytes; /* on disk now */
    int64_t stored;    /* blocks written */
    int64_t loaded;    /* blocks loaded into the pool */
    int64_t dropped;   /* offers refused: the write queue was full, or a write failed */
    int64_t rejected;  /* files deleted because a check failed */
    int64_t evicted;   /* files deleted to stay under the cap */
    int64_t pending;   /* blocks waiting to be written */
} kv_drawer_stats;

/* Opens (creating) the folder, removes leftover temporary files, indexes
 * the blocks already there (deleting the oldest while over the cap) and
 * starts the writer. *out is NULL on failure: VT_ERR_INVALID (bad config),
 * VT_ERR_IO (the folder cannot be made, read or locked - the message names
 * it and the reason, e.g. another process using it), VT_ERR_NOMEM. */
vt_err kv_drawer_open(const kv_drawer_config *cfg, kv_drawer **out);
/* Writes what is still queued, stops the writer, closes. NULL: no-op. */
void kv_drawer_close(kv_drawer *d);
/* Waits until every block offered so far is written (or dropped). */
void kv_drawer_flush(kv_drawer *d);
/* The backing-store functions for kv_set_backing(pool, kv_drawer_backing(),
 * d). */
const kv_backing *kv_drawer_backing(void);
/* Any thread. */
void kv_drawer_get_stats(kv_drawer *d, kv_drawer_stats *out);

#endif
