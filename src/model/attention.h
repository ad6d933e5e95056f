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

/* exp(x) for a float x, the one both recipes use (scalar and vector kernels
 * alike): in double, x*log2(e) = k + f with |f| <= 1/2, 2^f by its Taylor
 * series in f*ln2 to degree 12 (Horner, fused multiply-adds), times 2^k,
 * rounded once to float - within an ulp of the exact value, and the vector
 * versions (attn_avx512.c) compute the same operations lane by lane, so
 * every ISA level gets the same bits. 0 below -104 (and for -inf). */
#define MD_EXP_LOG2E 1.4426950408889634074
#define MD_EXP_LN2 0.69314718055994530942
static const double md_exp_coef[13] = {1.0 / 479001600, 1.0 / 39916800, 1.0 / 3628800,
                                       1.0 / 362880,    1.0 / 40320,    1.0 / 5040,
                                       1.0 / 720,       1.0 / 120,      1.0 / 24,
                                       1.0 / 6,         0.5,            1.0,
                                       1.0}; /* 1/12! .. 1/0!, for Horner */
static inline float md_exp(float x)
{
    if (x != x)
        return x;
    if (x < -104.0f)
        return 0.0f;
    if (x > 89.0f)
        x = 89.0f; /* overflows to inf as float */
    double t = (double)x * MD_EXP_LOG2E, k = rint(t), g = (t - k) * MD_EXP_LN2;
    double p = md_exp_coef[0];
    for (int i = 1; i < 13; i++)
        p = fma(p, g, md_exp_coef[i]);
    union {
        uint64_t u;
        double d;
    } s = {.u = (uint64_t)((int64_t)k + 1023) << 52};
    return (float)(p * s.d);
}

/* The F32 recipe's softmax: sc[p] = exp(sc[p] - mx) for p < n, summed in
 * double into eight partial sums (position p into sum p % 8) that are added
 * as ((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7)); returns 1 / the sum (the weight
 * of each exp'd score). md_softmax_f32_avx512 gives the same bits. */
static inline float md_softmax_f32_ref(float *sc, int64_t n, float mx)
{
    double s[8] = {0};
    for (int64_t p = 0; p < n; p++) {
        sc[p] = md_exp(sc[p] - mx);
        s[p % 8] += sc[p];
    }
    double sum = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    return (float)(1.0 / sum);
}

/* The attention outputs of nq query heads that share one KV head (a GQA
 * group): q holds nq queries of hd floats one after the other, o receives
 * nq outputs of hdv floats. Each head's result depends only on its own query
 * (never on nq). scratch: MD_ATTN_SCRATCH(nq, npos) floats. */
#define MD_ATTN_SCRATCH(nq, npos) (2 * (size_t)(nq) * (size_t)(npos))
typedef void (*md_attn_fn)(const md_attn_args *a, int nq, const float *q, float *o,
                           float *scratch);

void md_attn_f16acc_ref(const md_attn_args *a, int nq, const float *q, float *o, float *scratch);
void md_attn_f32_ref(const md_attn_args *a, int nq, const float *q, float *o, float *scratch);
void md_attn_f16acc_avx512(const md_attn_args *a, int nq, const float *q, float *o,
                           float *scratch);
void md_attn_f32_avx512(const md_attn_args *a, int nq, const float *q, float *o, float *scratch);

/* Vector exp (md_exp's bits) of n floats, in place; n any (the AVX-512 one). */
void md_exp_avx512(float *x, int64_t n);
/* md_softmax_f32_ref's bits, with AVX-512. */
float md_softmax_f32_avx512(float *sc, int64_t n, float mx);

/* The fastest kernels for this CPU and these head dimensions. */
void md_attn_select(int64_t hd, int64_t hdv, md_attn_fn *f16acc, md_attn_fn *f32);

#endif
