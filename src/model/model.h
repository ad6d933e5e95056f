/*
 * model.h - transformer models loaded from GGUF and their forward pass.
 *
 * md_model binds the tensors of a GGUF file (mmapped, never copied) to the
 * weights of one of the supported architectures: llama (Llama 2/3, Mistral,
 * Mixtral-style experts), qwen2, qwen3, qwen2moe, qwen3moe.
 *
 * The forward pass runs over a *flattened batch*: tokens of several sequences
 * at once, each with its own sequence index and position. Keys and values are
 * stored in an md_kv cache of fixed-size blocks; each sequence of the batch
 * supplies its block table (logical block i of the sequence lives in physical
 * block table[i]), so a paged block manager can drive it.
 */
#ifndef VT_MODEL_H
#define VT_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "vitamin.h"

typedef enum {
    MD_ARCH_LLAMA,
    MD_ARCH_QWEN2,
    MD_ARCH_QWEN3,
    MD_ARCH_QWEN2MOE,
    MD_ARCH_QWEN3MOE,
} md_arch;

typedef enum { MD_ROPE_NORM, MD_ROPE_NEOX } md_rope_type;

/* How a sequence's hidden states become one embedding (llama.cpp's
 * <arch>.pooling_type values): NONE and an absent key mean MEAN here, since
 * an embedding request always wants one vector per input. */
typedef enum {
    MD_POOL_NONE = 0,
    MD_POOL_MEAN = 1,
    MD_POOL_CLS = 2,  /* the first token's */
    MD_POOL_LAST = 3, /* the last token's */
} md_pooling;

typedef struct {
    md_arch arch;
    char arch_name[32];
    int64_t n_vocab;
    int64_t dim;        /* embedding length */
    int64_t n_layers;
    int64_t n_heads;
    int64_t n_kv_heads;
    int64_t head_dim;   /* key length */
    int64_t head_dim_v; /* value length */
    int64_t ff;         /* dense feed-forward length */
    int64_t n_ctx_train;
    int64_t n_experts, n_experts_used, ff_exp, ff_shexp;
    bool expert_norm; /* renormalise the top-k routing weights */
    float norm_eps;
    float rope_base;
    float rope_freq_scale; /* 1/linear scaling factor */
    int64_t rope_dim;
    md_rope_type rope_type;
    md_pooling pooling; /* <arch>.pooling_type; MD_POOL_MEAN when absent or NONE */
} md_hparams;

/* A weight tensor bound from the file (NULL data when absent). For 3-D
 * expert tensors, rows/cols describe one expert's matrix and `stride` is the
 * byte distance between experts. */
typedef struct {
    const void *data;
    vt_type type;
    int64_t cols; /* ne[0] */
    int64_t rows; /* ne[1] */
    size_t stride;
} md_weight;

typedef struct {
    md_weight attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm;
    md_weight ffn_norm, ffn_gate, ffn_up, ffn_down;
    md_weight gate_inp, gate_exps, up_exps, down_exps;
    md_weight gate_shexp, up_shexp, down_shexp, gate_inp_shexp;
} md_layer;

typedef struct md_model {
    gguf_file *file;
    bool owns_file;
    md_hparams hp;
    md_weight tok_embd, output_norm, output, rope_freqs;
    md_layer *layers;
} md_model;

/* Loads and validates a model (hyperparameters, every tensor's presence, type
 * and shape). On failure *out is NULL and vt_last_error() explains. */
vt_err md_load(const char *path, md_model **out);
/* Same, over an already open file; the model borrows it. */
vt_err md_load_gguf(gguf_file *f, md_model **out);
void md_destroy(md_model *m);

const char *md_arch_name(md_arch a);

/* ---- KV cache ---- */
typedef struct md_kv md_kv;

/* n_blocks blocks of block_size token slots for every layer, F16. */
vt_err md_kv_create(const md_model *m, int64_t n_blocks, int block_size, md_kv **out);
void md_kv_destroy(md_kv *kv);
int md_kv_block_size(const md_kv *kv);
int64_t md_kv_n_blocks(const md_kv *kv);
/* Bytes for one block of every layer (K and V). */
size_t md_kv_block_bytes(const md_hparams *hp, int block_size);
/* Copies the K/V of block src into block dst (copy-on-write). */
void md_kv_copy_block(md_kv *kv, int64_t dst, int64_t src);
/* A block's K/V as 2 * n_layers contiguous parts (part 2l: layer l's keys,
 * 2l+1: its values), for copying a block out and back (the KV drawer):
 * the address of part `part` of block b and its length in *len; NULL when
 * b or part is out of range. */
void *md_kv_block_part(md_kv *kv, int64_t b, int32_t part, size_t *len);
int32_t md_kv_n_parts(const md_kv *kv);
/* A fingerprint of everything the K/V of a token depends on: the file's
 * header (hyperparameters, RoPE settings, tensor names, types and shapes)
 * and samples of every tensor's data, with the cache's type and block size.
 * Equal for the same file, different for another model or cache layout
 * (with overwhelming probability). */
uint64_t md_kv_identity(const md_model *m, int block_size);

/* ---- forward pass ---- */
typedef struct {
    const int32_t *block_table; /* physical block of each logical block */
    int64_t n_blocks;
} md_seq;

typedef struct {
    int64_t n_tokens;
    const int32_t *tokens; /* [n_tokens] */
    const int32_t *pos;    /* [n_tokens] position in its sequence */
    const int32_t *seq;    /* [n_tokens] index into seqs */
    const bool *logits;    /* [n_tokens] compute logits after this token; NULL: last only */
    /* [n_tokens] the attention recipe of each token: true = F32 accumulation
     * (ggml's tiled kernel, what it runs for batches of >= 64 tokens), false =
     * F16 accumulation (its kernel for small batches and decoding). Each
     * token's result depends only on its own recipe, not on the rest of the
     * batch, so a serving engine can make a sequence's numerics independent
     * of what it is batched with. NULL: by batch size, as ggml does. */
    const bool *attn_f32;
    int64_t n_seqs;
    const md_seq *seqs;
    /* [n_tokens] copy this token's final hidden state (after the output norm,
     * before the output matrix: what embeddings pool) into out_hidden; NULL:
     * none. The logits of the same tokens are unchanged by it. */
    const bool *hidden;
    float *out_hidden; /* [tokens with hidden set][dim], in batch order */
} md_batch;

typedef struct md_ctx md_ctx;

/* A runner: scratch buffers grow with the largest batch seen. pool may be
 * NULL (single thread); it is borrowed. */
vt_err md_ctx_create(const md_model *m, kn_pool *pool, md_ctx **out);
void md_ctx_destroy(md_ctx *c);

/* Runs the batch, writing its keys/values into kv and, for each token with
 * logits requested (in batch order), n_vocab floats into out_logits (and
 * b->out_hidden for the tokens b->hidden flags). The
 * tokens of a sequence must see positions 0..pos already in kv or earlier in
 * this batch. */
vt_err md_forward(md_ctx *c, md_kv *kv, const md_batch *b, float *out_logits);

/* For MoE models: for each token of the last md_forward, the smallest
 * relative gap, over all layers, between the probability of the last expert
 * chosen and the best expert not chosen ((p_k - p_k+1) / p_k). A value near 0
 * means the routing was a near-tie that tiny numeric differences can flip.
 * NULL for dense models. Valid until the next md_forward. */
const float *md_ctx_route_margins(const md_ctx *c);

/* Runs tokens[0..n) as one sequence in one batch through a fresh KV cache.
 * *logits_out (caller frees) gets n_vocab floats for every position if all,
 * else for the last one. If margins_out is not NULL and the model is MoE,
 * *margins_out (caller frees) gets md_ctx_route_margins() for every token;
 * for dense models it is left untouched. */
vt_err md_eval(const md_model *m, kn_pool *pool, const int32_t *tokens, int64_t n, bool all,
               float **logits_out, float **margins_out);

#endif
