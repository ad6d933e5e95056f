/*
 * kvstore.c - the memory of the paged KV cache: for every layer, K and V of
 * n_blocks blocks of block_size token slots, in F16. Slot s of block b holds
 * one token's keys for all KV heads contiguously (then its values likewise),
 * so attention over a sequence reads each block's rows front to back.
 * Which block belongs to which sequence is decided elsewhere (kv/, sched/):
 * here a block is just an index.
 */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "model_internal.h"

size_t md_kv_block_bytes(const md_hparams *hp, int block_size)
{
    return (size_t)block_size * (size_t)hp->n_layers * (size_t)hp->n_kv_heads *
           (size_t)(hp->head_dim + hp->head_dim_v) * sizeof(vt_fp16);
}

vt_err md_kv_create(const md_model *m, int64_t n_blocks, int block_size, md_kv **out)
{
    const md_hparams *hp = &m->hp;
    *out = NULL;
    if (n_blocks < 1 || block_size < 1 || block_size > 4096)
        return vt_fail(VT_ERR_INVALID, "KV cache of %lld blocks of %d tokens is invalid",
                       (long long)n_blocks, block_size);
    md_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return vt_fail(VT_ERR_NOMEM, "out of memory creating the KV cache");
    kv->n_layers = hp->n_layers;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->k_dim = hp->n_kv_heads * hp->head_dim;
    kv->v_dim = hp->n_kv_heads * hp->head_dim_v;
    kv->k = calloc((size_t)hp->n_layers, sizeof *kv->k);
    kv->v = calloc((size_t)hp->n_layers, sizeof *kv->v);
    if (!kv->k || !kv->v)
        goto oom;
    size_t slots = (size_t)n_blocks * (size_t)block_size;
    for (int64_t il = 0; il < hp->n_layers; il++) {
        kv->k[il] = calloc(slots * (size_t)kv->k_dim, sizeof(vt_fp16));
        kv->v[il] = calloc(slots * (size_t)kv->v_dim, sizeof(vt_fp16));
        if (!kv->k[il] || !kv->v[il])
            goto oom;
    }
    *out = kv;
    return VT_OK;
oom:
    md_kv_destroy(kv);
    return vt_fail(VT_ERR_NOMEM, "out of memory creating a KV cache of %lld blocks (%zu MiB)",
                   (long long)n_blocks,
                   md_kv_block_bytes(hp, block_size) * (size_t)n_blocks >> 20);
}

void md_kv_destroy(md_kv *kv)
{
    if (!kv)
        return;
    for (int64_t il = 0; il < kv->n_layers; il++) {
        if (kv->k)
            free(kv->k[il]);
        if (kv->v)
            free(kv->v[il]);
    }
    free(kv->k);
    free(kv->v);
    free(kv);
}

int md_kv_block_size(const md_kv *kv)
{
    return kv->block_size;
}

int64_t md_kv_n_blocks(const md_kv *kv)
{
    return kv->n_blocks;
}

void md_kv_copy_block(md_kv *kv, int64_t dst, int64_t src)
{
    size_t bs = (size_t)kv->block_size;
    for (int64_t il = 0; il < kv->n_layers; il++) {
        memcpy(kv->k[il] + (size_t)dst * bs * (size_t)kv->k_dim,
               kv->k[il] + (size_t)src * bs * (size_t)kv->k_dim,
               bs * (size_t)kv->k_dim * sizeof(vt_fp16));
        memcpy(kv->v[il] + (size_t)dst * bs * (size_t)kv->v_dim,
               kv->v[il] + (size_t)src * bs * (size_t)kv->v_dim,
               bs * (size_t)kv->v_dim * sizeof(vt_fp16));
    }
}
