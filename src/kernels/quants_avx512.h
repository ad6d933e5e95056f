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

#endif
