/*
 * attention.h - attention of one query head over one sequence's cached keys
 * and values (F16, in paged blocks), internal to model/. Two numerical
 * recipes, each the one ggml's CPU flash-attention kernel uses for the same
 * situation, so that vitamin's logits follow llama.cpp's:
 *  - md_attn_f16acc (small batches, decoding): the query rounded to F16, F16
 *    dot products, online softmax, the weighted sum of V accumulated in F16;
 *  - md_attn_f32 (large batches, prefill): F32 query, F32 softmax and sum.
 * Each has a scalar reference and an AVX-512 version picked at run time.
 */
#ifndef VT_MODEL_ATTENTION_H
#define VT_MODEL_ATTENTION_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

#define MD_MAX_HEAD_DIM 1024

typedef struct {
    const vt_fp16 *k, *v;        /* the layer's cache, already offset to the KV head */
    size_t k_stride, v_stride;   /* elements from one token slot to the next */
    const int32_t *block_table;  /* physical block of each logical block */
    int block_size;
    int64_t npos;                /* attend to positions 0..npos-1 */
    int64_t hd, hdv;             /* key and value head dimensions */
    float scale;
} md_attn_args;

static inline size_t md_attn_slot(const md_attn_args *a, int64_t p)
{
    return (size_t)a->block_table[p / a->block_size] * (size_t)a->block_size +
           (size_t)(p % a->block_size);
}

/* The F32 recipe's softmax: sc[p] = exp(sc[p] - mx) for p < n, summed in
 * double; returns 1 / the sum (the weight of each exp'd score). */
static inline float md_softmax_f32(float *sc, int64_t n, float mx)
{
    double sum = 0;
    for (int64_t p = 0; p < n; p++) {
        sc[p] = expf(sc[p] - mx);
        sum += sc[p];
    }
    return (float)(1.0 / sum);
}

/* o[0..hdv) = attention output for query q[0..hd). scratch: npos floats. */
typedef void (*md_attn_fn)(const md_attn_args *a, const float *q, float *o, float *scratch);

void md_attn_f16acc_ref(const md_attn_args *a, const float *q, float *o, float *scratch);
void md_attn_f32_ref(const md_attn_args *a, const float *q, float *o, float *scratch);
void md_attn_f16acc_avx512(const md_attn_args *a, const float *q, float *o, float *scratch);
void md_attn_f32_avx512(const md_attn_args *a, const float *q, float *o, float *scratch);

/* The fastest kernels for this CPU and these head dimensions. */
void md_attn_select(int64_t hd, int64_t hdv, md_attn_fn *f16acc, md_attn_fn *f32);

#endif
