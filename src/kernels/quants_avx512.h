/*
 * quants_avx512.h - internal to kernels/: the AVX-512 helpers shared by
 * quants_avx512.c (vec_dot, vec_dot_n) and gemv_avx512.c (vec_dot_rows), on
 * top of the 256-bit kernels of quants_x86.h built at the AVX-512 level.
 * Include only from files compiled with the AVX-512 flags (*_avx512.c).
 */
#ifndef VT_KERNELS_QUANTS_AVX512_H
#define VT_KERNELS_QUANTS_AVX512_H

#define KN_X86_AVX512 1
#include "kernels/quants_x86.h"

/* Forced inlining makes every tile shape its own specialized copy; the
 * fuzz build (clang with ASan+UBSan+coverage, where those copies take
 * minutes to compile) turns it off with VT_NO_FORCE_INLINE. */
#ifdef VT_NO_FORCE_INLINE
#define ALWAYS_INLINE inline
#else
#define ALWAYS_INLINE inline __attribute__((always_inline))
#endif

static inline float hsum512(__m512 v)
{
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    return hsum_ps(s);
}

/* 64 bytes: the 32 bytes at p then the 32 at q. */
static inline __m512i ld2x256(const void *p, const void *q)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(ld256(p)), ld256(q), 1);
}

/* int8 x int8 -> 16 int32 lanes (sums of 4 products). */
static inline __m512i dot_ss512(__m512i acc, __m512i x, __m512i y)
{
    const __mmask64 neg = _mm512_movepi8_mask(x);
    const __m512i sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    return _mm512_dpbusd_epi32(acc, _mm512_abs_epi8(x), sy);
}

/* The fp16 scales of four consecutive q8_0 blocks (136 bytes: the d fields
 * are 16-bit elements 0, 17, 34, 51 of the first 128) as floats. */
static inline __m128 q8_0_scales4(const block_q8_0 *b)
{
    const __m512i idx = _mm512_castsi128_si512(_mm_setr_epi16(0, 17, 34, 51, 0, 0, 0, 0));
    const char *p = (const char *)b;
    __m512i v = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), idx, _mm512_loadu_si512(p + 64));
    return _mm_cvtph_ps(_mm512_castsi512_si128(v));
}

/* The fp16 scales of four consecutive q4_0 blocks (18 bytes each: 16-bit
 * elements 0, 9, 18, 27 of 64 bytes) as floats. */
static inline __m128 q4_0_scales4(const block_q4_0 *b)
{
    const __m512i idx = _mm512_castsi128_si512(_mm_setr_epi16(0, 9, 18, 27, 0, 0, 0, 0));
    __m512i v = _mm512_permutexvar_epi16(idx, _mm512_loadu_si512(b));
    return _mm_cvtph_ps(_mm512_castsi512_si128(v));
}

/* Nibbles of two q4_0 blocks in element order: [lo_i, hi_i, lo_i+1, hi_i+1]. */
static inline __m512i q4_0_pair(const block_q4_0 *b)
{
    __m256i t = _mm256_set_m128i(ld128(b[1].qs), ld128(b[0].qs));
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(t), _mm256_srli_epi16(t, 4), 1);
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0F));
}

/* Q6_K: the u = q + 32 values (0..63) of half h (128 values) of a
 * super-block: *qa values 0..63 of the half, *qb 64..127, in element order
 * (the 64 ql bytes are one zmm: low nibbles for qa, high for qb; the top
 * bits from the 32 qh bytes broadcast to both halves, shifted per half). */
static inline void k6_half(const block_q6_K *x, int h, __m512i *qa, __m512i *qb)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_b = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    __m512i l = _mm512_loadu_si512(x->ql + 64 * h);
    __m512i qh = _mm512_broadcast_i64x4(ld256(x->qh + 32 * h));
    *qa = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(_mm512_sllv_epi16(qh, shl_a), m30));
    *qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                          _mm512_and_si512(_mm512_srlv_epi16(qh, shr_b), m30));
}

/* int16 lane l of a 64-value group g of Q6_K uses scale 4g + l/8. */
static inline void k6_perms(__m512i perm[4])
{
    for (int g = 0; g < 4; g++) {
        short idx[32];
        for (int l = 0; l < 32; l++)
            idx[l] = (short)(4 * g + l / 8);
        perm[g] = _mm512_loadu_si512(idx);
    }
}

/* sum_j sc_j sum_{i in j} q_i y_i of one Q6_K super-block, exactly, in
 * sixteen int32 lanes (the -32 offset of q through the bsums). */
static inline __m512i k6_sumi(const block_q6_K *x, const block_q8_K *y, const __m512i perm[4])
{
    __m256i sc16 = _mm256_cvtepi8_epi16(ld128(x->scales));
    __m256i off = _mm256_madd_epi16(sc16, ld256(y->bsums));
    __m512i sc = _mm512_castsi256_si512(sc16);
    __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(),
                                    _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m512i qa, qb;
        k6_half(x, h, &qa, &qb);
        __m512i pa = _mm512_maddubs_epi16(qa, _mm512_loadu_si512(y->qs + 128 * h));
        __m512i pb = _mm512_maddubs_epi16(qb, _mm512_loadu_si512(y->qs + 128 * h + 64));
        sumi = _mm512_dpwssd_epi32(sumi, pa, _mm512_permutexvar_epi16(perm[2 * h], sc));
        sumi = _mm512_dpwssd_epi32(sumi, pb, _mm512_permutexvar_epi16(perm[2 * h + 1], sc));
    }
    return sumi;
}

#endif
