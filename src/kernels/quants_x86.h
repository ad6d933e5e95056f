/*
 * quants_x86.h - 256-bit SIMD kernels shared by quants_avx2.c and
 * quants_avx512.c: every function here is static and compiled once per ISA
 * level. The including file defines KN_X86_AVX512 (0 or 1) before including;
 * with 1, the int8 dot primitive is AVX512-VNNI's vpdpbusd/vpdpwssd on ymm
 * registers and bit masks expand with AVX512-BW, otherwise maddubs/madd.
 *
 * Numerics: integer parts are exact (the int16 intermediates of maddubs
 * cannot saturate for valid blocks: weights are at most 6 bits unsigned and
 * activations within -127..127), the per-block float scaling is the same as
 * the scalar reference, only the order of float additions differs.
 * Activation quantizers reproduce the scalar bytes exactly (same products,
 * round-half-even conversions).
 */
#ifndef VT_KERNELS_QUANTS_X86_H
#define VT_KERNELS_QUANTS_X86_H

#include <immintrin.h>
#include <math.h>

#include "kernels/quants.h"
#include "util/util.h"

#ifndef KN_X86_AVX512
#error "define KN_X86_AVX512 before including quants_x86.h"
#endif

/* Kernels a level may not use (the AVX-512 file replaces some). */
#define X86_FN static __attribute__((unused))

/* ---- primitives --------------------------------------------------------- */

static inline float x86_f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline float hsum_ps(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline int hsum_epi32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

static inline __m256i ld256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline __m128i ld128(const void *p)
{
    return _mm_loadu_si128((const __m128i *)p);
}

static inline uint32_t ld_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* acc + sum of groups of four u8*s8 products (per int32 lane). */
static inline __m256i dot_us(__m256i acc, __m256i u, __m256i s)
{
#if KN_X86_AVX512
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* acc + sum of groups of four s8*s8 products. */
static inline __m256i dot_ss(__m256i acc, __m256i x, __m256i y)
{
    return dot_us(acc, _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

/* Per int32 lane: sum of four (u - off)*s products, u in 0..31. */
static inline __m256i dot_off(__m256i u, __m256i s, __m256i off)
{
#if KN_X86_AVX512
    const __m256i z = _mm256_setzero_si256();
    return _mm256_sub_epi32(_mm256_dpbusd_epi32(z, u, s), _mm256_dpbusd_epi32(z, off, s));
#else
    __m256i d = _mm256_sub_epi16(_mm256_maddubs_epi16(u, s), _mm256_maddubs_epi16(off, s));
    return _mm256_madd_epi16(d, _mm256_set1_epi16(1));
#endif
}

/* acc + pairwise int16 products a*b summed into int32 lanes. */
static inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b)
{
#if KN_X86_AVX512
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

/* 32 bits -> 32 bytes, byte i = `val` where bit i is set, else 0. */
static inline __m256i bits_to_bytes(uint32_t bits, __m256i val)
{
#if KN_X86_AVX512
    return _mm256_maskz_mov_epi8((__mmask32)bits, val);
#else
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll,
                                              0x0303030303030303ll);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, val);
#endif
}

/* The 32 nibbles of a 16-byte q4 block in element order: low nibbles
 * (elements 0..15) then high nibbles (16..31). */
static inline __m256i nibbles32(const uint8_t *qs)
{
    __m128i r = ld128(qs);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(r, 4), r);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* int16 vector: lanes 0..7 = 16-bit element j of s, lanes 8..15 = element j+1
 * (s holds 16 int16 values in both 128-bit halves). */
static inline __m256i pick_pair16(__m256i s2, int j)
{
    const __m256i ctrl = _mm256_set_m128i(_mm_set1_epi16((short)(0x0100 + 0x0202 * (j + 1))),
                                          _mm_set1_epi16((short)(0x0100 + 0x0202 * j)));
    return _mm256_shuffle_epi8(s2, ctrl);
}

/* int16 vector with every lane = 16-bit element j of s (j < 8, s as above). */
static inline __m256i pick_one16(__m256i s2, int j)
{
    return _mm256_shuffle_epi8(s2, _mm256_set1_epi16((short)(0x0100 + 0x0202 * j)));
}

/* ---- Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 ------------------------------------ */

/* Q8_0 / Q4_0 steps: two blocks into two accumulators, or one (the odd
 * last block) into the first; shared by vec_dot and vec_dot_rows. */
static inline void q8_0_step2(const block_q8_0 *x, const block_q8_0 *y, __m256 *acc0, __m256 *acc1)
{
    const __m256i z = _mm256_setzero_si256();
    __m256i p0 = dot_ss(z, ld256(x[0].qs), ld256(y[0].qs));
    __m256i p1 = dot_ss(z, ld256(x[1].qs), ld256(y[1].qs));
    __m256 d0 = _mm256_set1_ps(x86_f16(x[0].d) * x86_f16(y[0].d));
    __m256 d1 = _mm256_set1_ps(x86_f16(x[1].d) * x86_f16(y[1].d));
    *acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), *acc0);
    *acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), *acc1);
}

static inline void q8_0_step1(const block_q8_0 *x, const block_q8_0 *y, __m256 *acc0)
{
    __m256i p = dot_ss(_mm256_setzero_si256(), ld256(x->qs), ld256(y->qs));
    __m256 d = _mm256_set1_ps(x86_f16(x->d) * x86_f16(y->d));
    *acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc0);
}

X86_FN float dot_q8_0(int64_t n, const void *w, const void *a)
{
    const block_q8_0 *x = w, *y = a;
    const int64_t nb = n / 32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2)
        q8_0_step2(x + i, y + i, &acc0, &acc1);
    for (; i < nb; i++)
        q8_0_step1(x + i, y + i, &acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

static inline void q4_0_step2(const block_q4_0 *x, const block_q8_0 *y, __m256 *acc0, __m256 *acc1)
{
    const __m256i eight = _mm256_set1_epi8(8);
    __m256i p0 = dot_off(nibbles32(x[0].qs), ld256(y[0].qs), eight);
    __m256i p1 = dot_off(nibbles32(x[1].qs), ld256(y[1].qs), eight);
    __m256 d0 = _mm256_set1_ps(x86_f16(x[0].d) * x86_f16(y[0].d));
    __m256 d1 = _mm256_set1_ps(x86_f16(x[1].d) * x86_f16(y[1].d));
    *acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), *acc0);
    *acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), *acc1);
}

static inline void q4_0_step1(const block_q4_0 *x, const block_q8_0 *y, __m256 *acc0)
{
    __m256i p = dot_off(nibbles32(x->qs), ld256(y->qs), _mm256_set1_epi8(8));
    __m256 d = _mm256_set1_ps(x86_f16(x->d) * x86_f16(y->d));
    *acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), *acc0);
}

X86_FN float dot_q4_0(int64_t n, const void *w, const void *a)
{
    const block_q4_0 *x = w;
    const block_q8_0 *y = a;
    const int64_t nb = n / 32;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2)
        q4_0_step2(x + i, y + i, &acc0, &acc1);
    for (; i < nb; i++)
        q4_0_step1(x + i, y + i, &acc0);
    return hsum_ps(_mm256_add_ps(acc0, acc1));
}

X86_FN float dot_q4_1(int64_t n, const void *w, const void *a)
{
    const block_q4_1 *x = w;
    const block_q8_1 *y = a;
    const int64_t nb = n / 32;
    const __m256i z = _mm256_setzero_si256();
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        __m256i p = dot_us(z, nibbles32(x[i].qs), ld256(y[i].qs));
        __m256 d = _mm256_set1_ps(x86_f16(x[i].d) * x86_f16(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        summ += x86_f16(x[i].m) * x86_f16(y[i].s);
    }
    return hsum_ps(acc) + summ;
}

static inline __m256i q5_values(const uint8_t *qs, const uint8_t *qh)
{
    return _mm256_or_si256(nibbles32(qs), bits_to_bytes(ld_u32(qh), _mm256_set1_epi8(0x10)));
}

X86_FN float dot_q5_0(int64_t n, const void *w, const void *a)
{
    const block_q5_0 *x = w;
    const block_q8_0 *y = a;
    const int64_t nb = n / 32;
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i p = dot_off(q5_values(x[i].qs, x[i].qh), ld256(y[i].qs), sixteen);
        __m256 d = _mm256_set1_ps(x86_f16(x[i].d) * x86_f16(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    return hsum_ps(acc);
}

X86_FN float dot_q5_1(int64_t n, const void *w, const void *a)
{
    const block_q5_1 *x = w;
    const block_q8_1 *y = a;
    const int64_t nb = n / 32;
    const __m256i z = _mm256_setzero_si256();
    __m256 acc = _mm256_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i < nb; i++) {
        __m256i p = dot_us(z, q5_values(x[i].qs, x[i].qh), ld256(y[i].qs));
        __m256 d = _mm256_set1_ps(x86_f16(x[i].d) * x86_f16(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
        summ += x86_f16(x[i].m) * x86_f16(y[i].s);
    }
    return hsum_ps(acc) + summ;
}

/* ---- K-quants ----------------------------------------------------------- */

X86_FN float dot_q2_K(int64_t n, const void *w, const void *a)
{
    const block_q2_K *x = w;
    const block_q8_K *y = a;
    const __m256i m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        const float d = y[i].d * x86_f16(x[i].d), dmin = y[i].d * x86_f16(x[i].dmin);
        __m128i s8 = ld128(x[i].scales);
        __m256i sc = _mm256_cvtepu8_epi16(_mm_and_si128(s8, _mm_set1_epi8(0x0F)));
        __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm_set1_epi8(0x0F)));
        __m256i pm = _mm256_madd_epi16(mn, ld256(y[i].bsums));
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(pm), accm);
        /* scales as int16 in both 128-bit halves for the pair shuffles */
        __m256i sc2lo = _mm256_permute2x128_si256(sc, sc, 0x00);
        __m256i sc2hi = _mm256_permute2x128_si256(sc, sc, 0x11);
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i qb = ld256(x[i].qs + 32 * h);
            __m256i s2 = h ? sc2hi : sc2lo;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i q = _mm256_and_si256(_mm256_srli_epi16(qb, 2 * k), m3);
                __m256i p = _mm256_maddubs_epi16(q, ld256(q8 + 128 * h + 32 * k));
                sumi = madd_acc(sumi, p, pick_pair16(s2, 2 * k));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc) - hsum_ps(accm);
}

/* The 16 q3_K scales as signed bytes (-32..31). */
static inline __m128i q3k_scales(const uint8_t *s)
{
    uint32_t a0 = ld_u32(s), a1 = ld_u32(s + 4), a2 = ld_u32(s + 8);
    const uint32_t m4 = 0x0F0F0F0F, m2 = 0x03030303;
    uint32_t s0 = (a0 & m4) | ((a2 & m2) << 4);
    uint32_t s1 = (a1 & m4) | (((a2 >> 2) & m2) << 4);
    uint32_t s2 = ((a0 >> 4) & m4) | (((a2 >> 4) & m2) << 4);
    uint32_t s3 = ((a1 >> 4) & m4) | (((a2 >> 6) & m2) << 4);
    __m128i v = _mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3);
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* Shift each 16-bit lane left (s > 0) or right (s < 0), s a constant. */
#define SHIFT16(v, s) ((s) >= 0 ? _mm256_slli_epi16(v, (s)) : _mm256_srli_epi16(v, -(s)))

X86_FN float dot_q3_K(int64_t n, const void *w, const void *a)
{
    const block_q3_K *x = w;
    const block_q8_K *y = a;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        const float d = y[i].d * x86_f16(x[i].d);
        __m256i sc = _mm256_cvtepi8_epi16(q3k_scales(x[i].scales));
        /* the -4 offset: -4 * sum_j sc_j * bsum_j */
        __m256i off = _mm256_madd_epi16(sc, ld256(y[i].bsums));
        __m256i sc2lo = _mm256_permute2x128_si256(sc, sc, 0x00);
        __m256i sc2hi = _mm256_permute2x128_si256(sc, sc, 0x11);
        __m256i hm = ld256(x[i].hmask);
        const int8_t *q8 = y[i].qs;
        __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i qb = ld256(x[i].qs + 32 * h);
            __m256i s2 = h ? sc2hi : sc2lo;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const int b = 4 * h + k; /* hmask bit of this plane, moved to bit 2 */
                __m256i hi = _mm256_and_si256(SHIFT16(hm, 2 - b), m4);
                __m256i q = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 2 * k), m3), hi);
                __m256i p = _mm256_maddubs_epi16(q, ld256(q8 + 128 * h + 32 * k));
                sumi = madd_acc(sumi, p, pick_pair16(s2, 2 * k));
            }
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 2));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum_ps(acc);
}

/* Decodes the 8 scales and 8 mins of a q4_K/q5_K block into bytes 0..7 of
 * *sc and *mn. */
static inline void k4_scales(const uint8_t *s, __m128i *sc, __m128i *mn)
{
    uint32_t a0 = ld_u32(s), a1 = ld_u32(s + 4), a2 = ld_u32(s + 8);
    const uint32_t m6 = 0x3F3F3F3F, m4 = 0x0F0F0F0F, m2 = 0x03030303;
    uint32_t sc_lo = a0 & m6, mn_lo = a1 & m6;
    uint32_t sc_hi = (a2 & m4) | (((a0 >> 6) & m2) << 4);
    uint32_t mn_hi = ((a2 >> 4) & m4) | (((a1 >> 6) & m2) << 4);
    *sc = _mm_setr_epi32((int)sc_lo, (int)sc_hi, 0, 0);
    *mn = _mm_setr_epi32((int)mn_lo, (int)mn_hi, 0, 0);
}

/* sum_j m_j * (bsum_2j + bsum_2j+1) lanes for the mins of q4_K/q5_K. */
static inline __m256i k4_mins_dot(__m128i mn, const int16_t *bsums)
{
    __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn, mn));
    return _mm256_madd_epi16(m16, ld256(bsums));
}

/* One q4_K super-block: the d * sums and dmin * mins updates of dot_q4_K
 * (shared by vec_dot and vec_dot_rows). */
static inline void q4_K_step(const block_q4_K *x, const block_q8_K *y, __m256 *acc, __m256 *accm)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const float d = y->d * x86_f16(x->d), dmin = y->d * x86_f16(x->dmin);
    __m128i sc8, mn8;
    k4_scales(x->scales, &sc8, &mn8);
    *accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(k4_mins_dot(mn8, y->bsums)),
                            *accm);
    __m128i sc16 = _mm_cvtepu8_epi16(sc8);
    __m256i s2 = _mm256_set_m128i(sc16, sc16);
    const int8_t *q8 = y->qs;
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i qb = ld256(x->qs + 32 * c);
        __m256i lo = _mm256_and_si256(qb, m4);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
        __m256i plo = _mm256_maddubs_epi16(lo, ld256(q8 + 64 * c));
        __m256i phi = _mm256_maddubs_epi16(hi, ld256(q8 + 64 * c + 32));
        sumi = madd_acc(sumi, plo, pick_one16(s2, 2 * c));
        sumi = madd_acc(sumi, phi, pick_one16(s2, 2 * c + 1));
    }
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
}

X86_FN float dot_q4_K(int64_t n, const void *w, const void *a)
{
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KN_QK_K; i++)
        q4_K_step(x + i, y + i, &acc, &accm);
    return hsum_ps(acc) - hsum_ps(accm);
}

static inline void q5_K_step(const block_q5_K *x, const block_q8_K *y, __m256 *acc, __m256 *accm)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    const float d = y->d * x86_f16(x->d), dmin = y->d * x86_f16(x->dmin);
    __m128i sc8, mn8;
    k4_scales(x->scales, &sc8, &mn8);
    *accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(k4_mins_dot(mn8, y->bsums)),
                            *accm);
    __m128i sc16 = _mm_cvtepu8_epi16(sc8);
    __m256i s2 = _mm256_set_m128i(sc16, sc16);
    __m256i hb = ld256(x->qh);
    const int8_t *q8 = y->qs;
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m256i qb = ld256(x->qs + 32 * c);
        /* bit 2c (low nibbles) and 2c+1 (high nibbles) of qh, moved to bit 4 */
        __m256i hlo = _mm256_and_si256(SHIFT16(hb, 4 - 2 * c), b4);
        __m256i hhi = _mm256_and_si256(SHIFT16(hb, 3 - 2 * c), b4);
        __m256i lo = _mm256_or_si256(_mm256_and_si256(qb, m4), hlo);
        __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qb, 4), m4), hhi);
        __m256i plo = _mm256_maddubs_epi16(lo, ld256(q8 + 64 * c));
        __m256i phi = _mm256_maddubs_epi16(hi, ld256(q8 + 64 * c + 32));
        sumi = madd_acc(sumi, plo, pick_one16(s2, 2 * c));
        sumi = madd_acc(sumi, phi, pick_one16(s2, 2 * c + 1));
    }
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
}

X86_FN float dot_q5_K(int64_t n, const void *w, const void *a)
{
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps(), accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KN_QK_K; i++)
        q5_K_step(x + i, y + i, &acc, &accm);
    return hsum_ps(acc) - hsum_ps(accm);
}

static inline void q6_K_step(const block_q6_K *x, const block_q8_K *y, __m256 *acc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const float d = y->d * x86_f16(x->d);
    __m256i sc = _mm256_cvtepi8_epi16(ld128(x->scales));
    __m256i off = _mm256_madd_epi16(sc, ld256(y->bsums)); /* the -32 offset */
    __m256i sc2lo = _mm256_permute2x128_si256(sc, sc, 0x00);
    __m256i sc2hi = _mm256_permute2x128_si256(sc, sc, 0x11);
    const int8_t *q8 = y->qs;
    __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i l0 = ld256(x->ql + 64 * h), l1 = ld256(x->ql + 64 * h + 32);
        __m256i qh = ld256(x->qh + 32 * h);
        __m256i s2 = h ? sc2hi : sc2lo;
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
        q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i p = _mm256_maddubs_epi16(q[k], ld256(q8 + 128 * h + 32 * k));
            sumi = madd_acc(sumi, p, pick_pair16(s2, 2 * k));
        }
    }
    sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 5));
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), *acc);
}

X86_FN float dot_q6_K(int64_t n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KN_QK_K; i++)
        q6_K_step(x + i, y + i, &acc);
    return hsum_ps(acc);
}

/* ---- vec_dot_rows: many weight rows against one activation row ---------
 * The decode GEMV. One loop body walks all the rows (they are contiguous,
 * so every weight load keeps one stride through memory and the hardware's
 * per-instruction prefetcher stays trained across row ends), prefetching
 * X86_PF_DIST bytes ahead; four rows' horizontal sums are done together.
 * Each row's float accumulation is its vec_dot's, step for step, so the
 * results are bit-identical to vec_dot. */

/* 8 KB ahead measured best on Zen4 (paired runs, one and two threads: +5%
 * over 4 KB; 16 KB no better, and it wastes more past small matrices). */
#define X86_PF_DIST 8192

static inline void x86_prefetch(const void *p, size_t off)
{
    /* integer arithmetic: the address may lie past the end of the weights */
    _mm_prefetch((const char *)((uintptr_t)p + off), _MM_HINT_T0);
}

/* Prefetches of one step of `bytes` (<= 256) at p + X86_PF_DIST. */
static inline void x86_prefetch_step(const void *p, size_t bytes)
{
    for (size_t o = 0; o < bytes; o += 64)
        x86_prefetch(p, X86_PF_DIST + o);
}

/* The first X86_PF_DIST bytes of a call's rows, which the steps' prefetches
 * (running that far ahead) do not cover. */
static inline void x86_prefetch_head(const void *w, size_t ws, int nr)
{
    size_t bytes = (size_t)nr * ws < X86_PF_DIST ? (size_t)nr * ws : X86_PF_DIST;
    for (size_t o = 0; o < bytes; o += 64)
        x86_prefetch(w, o);
}

/* [hsum_ps(a[r]) - hsum_ps(m[r])] for r < 4, bit for bit: the additions of
 * hsum_ps (halves, then pairs of lanes) with the rows in parallel lanes. */
static inline __m128 hsum4_sub(const __m256 a[4], const __m256 m[4])
{
    __m256 t[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
        t[r] = _mm256_add_ps(_mm256_permute2f128_ps(a[r], m[r], 0x20),  /* [a lo | m lo] */
                             _mm256_permute2f128_ps(a[r], m[r], 0x31)); /* [a hi | m hi] */
    /* per 128-bit lane, rows 0|1 and 2|3: s0 + s2, s1 + s3 */
    __m256 p01 = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 p23 = _mm256_add_ps(_mm256_shuffle_ps(t[2], t[3], _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm256_shuffle_ps(t[2], t[3], _MM_SHUFFLE(3, 2, 3, 2)));
    /* (s0 + s2) + (s1 + s3): [sums of rows 0..3 | mins of rows 0..3] */
    __m256 f = _mm256_add_ps(_mm256_shuffle_ps(p01, p23, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm256_shuffle_ps(p01, p23, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm_sub_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
}

/* [hsum_ps(a[r])] for r < 4, bit for bit. */
static inline __m128 hsum4(const __m256 a[4])
{
    /* [u0 | u1], [u2 | u3]: the 128-bit halves of each row added */
    __m256 t01 = _mm256_add_ps(_mm256_permute2f128_ps(a[0], a[1], 0x20),
                               _mm256_permute2f128_ps(a[0], a[1], 0x31));
    __m256 t23 = _mm256_add_ps(_mm256_permute2f128_ps(a[2], a[3], 0x20),
                               _mm256_permute2f128_ps(a[2], a[3], 0x31));
    /* lane 0: rows 0 and 2, lane 1: rows 1 and 3 - (u0 + u2), (u1 + u3) */
    __m256 p = _mm256_add_ps(_mm256_shuffle_ps(t01, t23, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(t01, t23, _MM_SHUFFLE(3, 2, 3, 2)));
    /* [r0 r2 r0 r2 | r1 r3 r1 r3] */
    __m256 f = _mm256_add_ps(_mm256_shuffle_ps(p, p, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm256_shuffle_ps(p, p, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm_unpacklo_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps(f, 1));
}

/* Stores the results of rows k - (k & 3) .. k (the group row k closes). */
static inline void store4(float *out, int k, __m128 res)
{
    float tmp[4];
    _mm_storeu_ps(tmp, res);
    for (int r = 0; r <= (k & 3); r++)
        out[k - (k & 3) + r] = tmp[r];
}

/* Q4_K, Q5_K (MINS) and Q6_K: one STEP per super-block of BS bytes. */
#define X86_ROWS_K(name, blk, STEP, MINS)                                                          \
    X86_FN void rows_##name(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out) \
    {                                                                                              \
        const block_q8_K *y = a;                                                                   \
        const int64_t nb = n / KN_QK_K;                                                            \
        __m256 acc[4], accm[4];                                                                    \
        for (int r = 0; r < 4; r++)                                                                \
            acc[r] = accm[r] = _mm256_setzero_ps();                                                \
        x86_prefetch_head(w, ws, nr);                                                              \
        _Pragma("GCC unroll 1") for (int k = 0; k < nr; k++)                                       \
        {                                                                                          \
            const blk *x = (const blk *)((const char *)w + (size_t)k * ws);                        \
            __m256 ac = _mm256_setzero_ps(), am = _mm256_setzero_ps();                             \
            for (int64_t i = 0; i < nb; i++) {                                                     \
                x86_prefetch_step(x + i, sizeof(blk));                                             \
                STEP;                                                                              \
            }                                                                                      \
            acc[k & 3] = ac;                                                                       \
            accm[k & 3] = am;                                                                      \
            if ((k & 3) == 3 || k == nr - 1)                                                       \
                store4(out, k, MINS ? hsum4_sub(acc, accm) : hsum4(acc));                          \
        }                                                                                          \
    }
X86_ROWS_K(q4_K, block_q4_K, q4_K_step(x + i, y + i, &ac, &am), 1)
X86_ROWS_K(q5_K, block_q5_K, q5_K_step(x + i, y + i, &ac, &am), 1)
X86_ROWS_K(q6_K, block_q6_K, q6_K_step(x + i, y + i, &ac), 0)

/* Q8_0 and Q4_0: pairs of blocks into two accumulators, an odd last block
 * into the first, as their vec_dot. */
#define X86_ROWS_32(name, blk)                                                                     \
    X86_FN void rows_##name(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out) \
    {                                                                                              \
        const block_q8_0 *y = a;                                                                   \
        const int64_t nb = n / 32;                                                                 \
        __m256 acc[4];                                                                             \
        for (int r = 0; r < 4; r++)                                                                \
            acc[r] = _mm256_setzero_ps();                                                          \
        x86_prefetch_head(w, ws, nr);                                                              \
        _Pragma("GCC unroll 1") for (int k = 0; k < nr; k++)                                       \
        {                                                                                          \
            const blk *x = (const blk *)((const char *)w + (size_t)k * ws);                        \
            __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                         \
            int64_t i = 0;                                                                         \
            for (; i + 1 < nb; i += 2) {                                                           \
                x86_prefetch_step(x + i, 2 * sizeof(blk));                                         \
                name##_step2(x + i, y + i, &acc0, &acc1);                                          \
            }                                                                                      \
            for (; i < nb; i++)                                                                    \
                name##_step1(x + i, y + i, &acc0);                                                 \
            acc[k & 3] = _mm256_add_ps(acc0, acc1);                                                \
            if ((k & 3) == 3 || k == nr - 1)                                                       \
                store4(out, k, hsum4(acc));                                                        \
        }                                                                                          \
    }
X86_ROWS_32(q8_0, block_q8_0)
X86_ROWS_32(q4_0, block_q4_0)

/* ---- float types -------------------------------------------------------- */

X86_FN float dot_f32(int64_t n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), s0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

static inline __m256 ld_f16x8(const uint8_t *p)
{
    return _mm256_cvtph_ps(ld128(p));
}

X86_FN float dot_f16(int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i), ld_f16x8(y + 2 * i), s0);
        s1 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i + 16), ld_f16x8(y + 2 * i + 16), s1);
        s2 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i + 32), ld_f16x8(y + 2 * i + 32), s2);
        s3 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i + 48), ld_f16x8(y + 2 * i + 48), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(ld_f16x8(x + 2 * i), ld_f16x8(y + 2 * i), s0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) {
        uint16_t hx, hy;
        memcpy(&hx, x + 2 * i, 2);
        memcpy(&hy, y + 2 * i, 2);
        s += x86_f16(hx) * x86_f16(hy);
    }
    return s;
}

static inline __m256 ld_bf16x8(const uint8_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(ld128(p)), 16));
}

X86_FN float dot_bf16_ymm(int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w, *y = a;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i), ld_bf16x8(y + 2 * i), s0);
        s1 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i + 16), ld_bf16x8(y + 2 * i + 16), s1);
        s2 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i + 32), ld_bf16x8(y + 2 * i + 32), s2);
        s3 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i + 48), ld_bf16x8(y + 2 * i + 48), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(ld_bf16x8(x + 2 * i), ld_bf16x8(y + 2 * i), s0);
    float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) {
        uint16_t hx, hy;
        memcpy(&hx, x + 2 * i, 2);
        memcpy(&hy, y + 2 * i, 2);
        s += vt_bf16_to_fp32(hx) * vt_bf16_to_fp32(hy);
    }
    return s;
}

X86_FN void f16_to_float(const void *x, float *y, int64_t n)
{
    const uint8_t *p = x;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, ld_f16x8(p + 2 * i));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = x86_f16(h);
    }
}

X86_FN void bf16_to_float(const void *x, float *y, int64_t n)
{
    const uint8_t *p = x;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, ld_bf16x8(p + 2 * i));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = vt_bf16_to_fp32(h);
    }
}

/* ---- activation quantizers ---------------------------------------------- */

X86_FN void f16_from_float(const float *x, void *y, int64_t n)
{
    uint8_t *p = y;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(p + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) {
        uint16_t h = vt_fp32_to_fp16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* Round-to-nearest-even bf16 with quiet nans, 8 lanes (vt_fp32_to_bf16). */
static inline __m128i bf16x8(__m256 f)
{
    __m256i u = _mm256_castps_si256(f);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x7f800000));
    __m256i hi = _mm256_srli_epi32(u, 16);
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                                     _mm256_and_si256(hi, _mm256_set1_epi32(1))));
    r = _mm256_srli_epi32(r, 16);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(64)), nan);
    __m256i packed = _mm256_packus_epi32(r, r); /* lanes 0-3 and 4-7 in the two halves */
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}

X86_FN void bf16_from_float(const float *x, void *y, int64_t n)
{
    uint8_t *p = y;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(p + 2 * i), bf16x8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) {
        uint16_t h = vt_fp32_to_bf16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* 32 int32 lanes (four vectors in element order) -> 32 saturated int8. */
static inline __m256i pack_i32x32(__m256i i0, __m256i i1, __m256i i2, __m256i i3)
{
    __m256i a = _mm256_packs_epi32(i0, i1); /* 0-3 8-11 | 4-7 12-15 */
    __m256i b = _mm256_packs_epi32(i2, i3);
    __m256i c = _mm256_packs_epi16(a, b); /* 0-3 8-11 16-19 24-27 | 4-7 12-15 20-23 28-31 */
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* One q8_0/q8_1 block, as kn_ref_from_float_q8_0: returns the quant sum. */
static inline int q8_block(const float *x, uint16_t *d16, int8_t *qs, float *dout)
{
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127.f;
    const float id = amax != 0 ? 127.f / amax : 0.0f;
    *d16 = vt_fp32_to_fp16(d);
    *dout = d;
    const __m256 mul = _mm256_set1_ps(id);
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, mul));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, mul));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, mul));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, mul));
    _mm256_storeu_si256((__m256i *)qs, pack_i32x32(i0, i1, i2, i3));
    return hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
}

X86_FN void q8_0_from_float(const float *x, void *y, int64_t n)
{
    block_q8_0 *b = y;
    float d;
    for (int64_t i = 0; i < n / 32; i++)
        q8_block(x + 32 * i, &b[i].d, b[i].qs, &d);
}

X86_FN void q8_1_from_float(const float *x, void *y, int64_t n)
{
    block_q8_1 *b = y;
    float d;
    for (int64_t i = 0; i < n / 32; i++) {
        int sum = q8_block(x + 32 * i, &b[i].d, b[i].qs, &d);
        b[i].s = vt_fp32_to_fp16(d * (float)sum);
    }
}

X86_FN void q8_K_from_float(const float *x, void *y, int64_t n)
{
    block_q8_K *b = y;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / KN_QK_K; i++, x += KN_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < KN_QK_K; j += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        /* the first value of that magnitude decides the sign */
        float max = 0;
        const __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < KN_QK_K; j += 8) {
            int mask = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), va, _CMP_EQ_OQ));
            if (mask) {
                max = x[j + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        const float iscale = -127.f / max;
        const __m256 mul = _mm256_set1_ps(iscale);
        for (int j = 0; j < KN_QK_K; j += 32) {
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j), mul));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8), mul));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 16), mul));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 24), mul));
            _mm256_storeu_si256((__m256i *)(b[i].qs + j), pack_i32x32(i0, i1, i2, i3));
            b[i].bsums[j / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(i0, i1));
            b[i].bsums[j / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(i2, i3));
        }
        b[i].d = 1 / iscale;
    }
}

#endif
