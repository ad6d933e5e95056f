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

#include "gguf/gguf.h"
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

void *md_kv_block_part(md_kv *kv, int64_t b, int32_t part, size_t *len)
{
    *len = 0;
    if (b < 0 || b >= kv->n_blocks || part < 0 || part >= 2 * kv->n_layers)
        return NULL;
    size_t bs = (size_t)kv->block_size;
    int64_t il = part / 2;
    if (part % 2 == 0) {
        *len = bs * (size_t)kv->k_dim * sizeof(vt_fp16);
        return kv->k[il] + (size_t)b * bs * (size_t)kv->k_dim;
    }
    *len = bs * (size_t)kv->v_dim * sizeof(vt_fp16);
    return kv->v[il] + (size_t)b * bs * (size_t)kv->v_dim;
}

int32_t md_kv_n_parts(const md_kv *kv)
{
    return (int32_t)(2 * kv->n_layers);
}

uint64_t md_kv_identity(const md_model *m, int block_size)
{
    const gguf_file *f = m->file;
    if (!f)
        return vt_hash64("kv:f16:v1:nofile", 16, (uint64_t)block_size);
    /* the F16 cache, this layout version, the block size */
    uint64_t h = vt_hash64("kv:f16:v1", 9, (uint64_t)block_size);
    const md_hparams *hp = &m->hp;
    int64_t shape[] = {hp->arch, hp->n_vocab, hp->dim, hp->n_layers, hp->n_heads,
                       hp->n_kv_heads, hp->head_dim, hp->head_dim_v, hp->rope_dim, hp->rope_type};
    h = vt_hash64(shape, sizeof shape, h);
    uint64_t size = gguf_size(f), data_off = gguf_data_offset(f);
    h = vt_hash64(&size, sizeof size, h);
    int64_t nt = gguf_n_tensors(f);
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        h = vt_hash64(t->name, strlen(t->name), h);
        h = vt_hash64(&t->type, sizeof t->type, h);
        h = vt_hash64(t->ne, sizeof t->ne, h);
        h = vt_hash64(&t->offset, sizeof t->offset, h);
        /* 8 samples of 256 bytes spread over the tensor's data */
        const uint8_t *d = t->data;
        for (uint64_t k = 0; k < 8 && t->nbytes > 0; k++) {
            uint64_t at = t->nbytes <= 256 ? 0 : (t->nbytes - 256) / 7 * k;
            uint64_t n = t->nbytes < 256 ? t->nbytes : 256;
            h = vt_hash64(d + at, n, h);
        }
        if (i == 0 && t->data) { /* the header: every metadata key and value */
            const uint8_t *base = (const uint8_t *)t->data - t->offset - data_off;
            h = vt_hash64(base, data_off, h);
        }
    }
    return h;
}
