/*
 * quants_avx512.c - the AVX-512 level (F/BW/VL/DQ/VNNI/BF16): the 256-bit
 * kernels of quants_x86.h rebuilt with VNNI (vpdpbusd, vpdpwssd) and BW mask
 * expansion, plus 512-bit kernels for Q8_0, Q4_0, Q2_K..Q6_K, F16 and BF16.
 * Entries not listed in kn_quants_avx512_fill keep the AVX2 level's.
 *
 * Zen4 executes 512-bit operations as two 256-bit halves, so the gain of the
 * zmm kernels comes from fewer instructions per value: a Q4_K chunk of 64
 * values is one load, one shift-insert-and, one vpmaddubsw and one vpdpwssd
 * that applies both sub-block scales at once.
 *
 * The tiled vec_dot_n kernels (one weight row against up to 8 activation
 * rows) decode each weight super-block once - nibbles, high bits, scale
 * vectors - and keep it in registers while every activation row of the tile
 * streams past: per 64 values and row that leaves one activation load, one
 * vpmaddubsw and one vpdpwssd. This is what makes prefill and batched decode
 * compute-efficient; vec_dot itself is the tile with one row where that is
 * as fast as a dedicated loop.
 *
 * Every vec_dot_n result is bit-identical to vec_dot of that row: a tile
 * keeps, per row, exactly the float accumulators of the level's vec_dot
 * (Q8_0: two, Q4_K/Q5_K: a separate one for the mins) and sums them up in
 * the same order; only integer work (exact) and the weight decoding are
 * arranged differently. The model re-quantizes activations after every
 * matmul, so a last-bit difference here would grow into visible ones in the
 * logits (and break the parity with llama.cpp).
 */
#include "kernels/quants_avx512.h"

/* Q8_0: two blocks per zmm; the eight block scales of four zmm come from one
 * vector conversion of the fp16 fields. */
static float dot_q8_0_512(int64_t n, const void *w, const void *a)
{
    const block_q8_0 *x = w, *y = a;
    const int64_t nb = n / 32;
    const __m512i z = _mm512_setzero_si512();
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i i23 = _mm512_add_epi32(i01, _mm512_set1_epi32(2));
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(q8_0_scales4(x + i), q8_0_scales4(y + i)));
        __m512i p0 = dot_ss512(z, ld2x256(x[i].qs, x[i + 1].qs), ld2x256(y[i].qs, y[i + 1].qs));
        __m512i p1 = dot_ss512(z, ld2x256(x[i + 2].qs, x[i + 3].qs), ld2x256(y[i + 2].qs, y[i + 3].qs));
        acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, d4), _mm512_cvtepi32_ps(p0), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, d4), _mm512_cvtepi32_ps(p1), acc1);
    }
    float s = hsum512(_mm512_add_ps(acc0, acc1));
    if (i < nb)
        s += dot_q8_0(32 * (nb - i), x + i, y + i);
    return s;
}

/* Q4_K: per chunk of 64 values one zmm of nibbles (low nibbles = sub-block
 * 2c, high = 2c+1, matching 64 contiguous activations), vpmaddubsw, then
 * vpdpwssd against [sc_2c x16, sc_2c+1 x16]. */
static float dot_q4_K_512(int64_t n, const void *w, const void *a)
{
    const block_q4_K *x = w;
    const block_q8_K *y = a;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    /* vpshufb controls (per 128-bit lane) picking int16 scale j for lanes 0-1
     * (values 0..31 of the chunk) and j+1 for lanes 2-3 */
    __m512i pick[4];
    for (int c = 0; c < 4; c++) {
        __m128i lo = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c)));
        __m128i hi = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1)));
        pick[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lo, lo)),
                                     _mm256_set_m128i(hi, hi), 1);
    }
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        const float d = y[i].d * x86_f16(x[i].d), dmin = y[i].d * x86_f16(x[i].dmin);
        __m128i sc8, mn8;
        k4_scales(x[i].scales, &sc8, &mn8);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(k4_mins_dot(mn8, y[i].bsums)),
                               accm);
        __m512i sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sc8));
        const int8_t *q8 = y[i].qs;
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i qb = ld256(x[i].qs + 32 * c);
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(qb), _mm256_srli_epi16(qb, 4), 1);
            q = _mm512_and_si512(q, m4);
            __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(q8 + 64 * c));
            sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_shuffle_epi8(sc, pick[c]));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return hsum512(acc) - hsum_ps(accm);
}

/* Q5_K: as Q4_K, the fifth bit set under a byte mask tested from qh. */
static float dot_q5_K_512(int64_t n, const void *w, const void *a)
{
    const block_q5_K *x = w;
    const block_q8_K *y = a;
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    __m512i pick[4], bit[4];
    for (int c = 0; c < 4; c++) {
        __m128i lo = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c)));
        __m128i hi = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1)));
        pick[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lo, lo)),
                                     _mm256_set_m128i(hi, hi), 1);
        bit[c] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                    _mm256_set1_epi8((char)(1 << (2 * c + 1))), 1);
    }
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        const float d = y[i].d * x86_f16(x[i].d), dmin = y[i].d * x86_f16(x[i].dmin);
        __m128i sc8, mn8;
        k4_scales(x[i].scales, &sc8, &mn8);
        accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(k4_mins_dot(mn8, y[i].bsums)),
                               accm);
        __m512i sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sc8));
        __m512i qh = _mm512_broadcast_i64x4(ld256(x[i].qh));
        const int8_t *q8 = y[i].qs;
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i qb = ld256(x[i].qs + 32 * c);
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(qb), _mm256_srli_epi16(qb, 4), 1);
            q = _mm512_and_si512(q, m4);
            q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, bit[c]), q, b4);
            __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(q8 + 64 * c));
            sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_shuffle_epi8(sc, pick[c]));
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    }
    return hsum512(acc) - hsum_ps(accm);
}

/* Q6_K: per half (128 values) the 64 ql bytes are one zmm; low nibbles give
 * values 0..63 of the half, high nibbles 64..127; the top bits come from the
 * 32 qh bytes broadcast to both halves and shifted per 256-bit half. */
static float dot_q6_K_512(int64_t n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *y = a;
    __m512i perm[4];
    k6_perms(perm);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        const float d = y[i].d * x86_f16(x[i].d);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(k6_sumi(x + i, y + i, perm)),
                              acc);
    }
    return hsum512(acc);
}

/* BF16 with vdpbf16ps (products of bf16 pairs accumulated in fp32, as ggml
 * does on CPUs with AVX512-BF16; denormal inputs count as zero). */
static float dot_bf16_512(int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w, *y = a;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_dpbf16_ps(s0, (__m512bh)_mm512_loadu_si512(x + 2 * i),
                              (__m512bh)_mm512_loadu_si512(y + 2 * i));
        s1 = _mm512_dpbf16_ps(s1, (__m512bh)_mm512_loadu_si512(x + 2 * i + 64),
                              (__m512bh)_mm512_loadu_si512(y + 2 * i + 64));
    }
    float s = hsum512(_mm512_add_ps(s0, s1));
    if (i < n)
        s += dot_bf16_ymm(n - i, x + 2 * i, y + 2 * i);
    return s;
}

/* ---- tiled kernels: one weight row, up to TILE activation rows ---------- */

#define TILE 8

/* hsum512(a) - hsum_ps(m), bit for bit, with the two horizontal sums done
 * side by side in the 128-bit lanes of one ymm (the same additions with the
 * same operands in the same order). */
static inline float hsum512_sub_hsum(__m512 a, __m256 m)
{
    __m256 v = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    __m256 t = _mm256_add_ps(_mm256_permute2f128_ps(v, m, 0x20),  /* low halves */
                             _mm256_permute2f128_ps(v, m, 0x31)); /* high halves */
    t = _mm256_add_ps(t, _mm256_permute_ps(t, _MM_SHUFFLE(3, 2, 3, 2)));
    t = _mm256_add_ps(t, _mm256_movehdup_ps(t));
    return _mm256_cvtss_f32(t) - _mm_cvtss_f32(_mm256_extractf128_ps(t, 1));
}

/* Q4_K: the 256 nibbles and the scale vectors of a super-block are built
 * once and used for every activation row of the group. Per row, as in
 * dot_q4_K_512: d * sums into 16 lanes, dmin * mins into 8 separate ones,
 * hsum512(acc) - hsum_ps(accm) at the end. */
static ALWAYS_INLINE void q4_K_tile(const int N, int64_t nb, const block_q4_K *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i pick[4];
    #pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m128i lo = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c)));
        __m128i hi = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1)));
        pick[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lo, lo)),
                                     _mm256_set_m128i(hi, hi), 1);
    }
    __m512 acc[TILE];
    __m256 accm[TILE];
    #pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        __m128i sc8, mn8;
        k4_scales(x[i].scales, &sc8, &mn8);
        __m512i sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sc8));
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
        __m512i q[4], s[4];
        #pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i qb = ld256(x[i].qs + 32 * c);
            q[c] = _mm512_and_si512(
                _mm512_inserti64x4(_mm512_castsi256_si512(qb), _mm256_srli_epi16(qb, 4), 1), m4);
            s[c] = _mm512_shuffle_epi8(sc, pick[c]);
        }
        const float dx = x86_f16(x[i].d), mx = x86_f16(x[i].dmin);
        #pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const block_q8_K *y = (const block_q8_K *)(a + (size_t)t * as) + i;
            /* the first product without an accumulator to clear (exact
             * integers: the same sums as from zero) */
            __m512i sumi =
                _mm512_madd_epi16(_mm512_maddubs_epi16(q[0], _mm512_loadu_si512(y->qs)), s[0]);
            #pragma GCC unroll 3
            for (int c = 1; c < 4; c++)
                sumi = _mm512_dpwssd_epi32(
                    sumi, _mm512_maddubs_epi16(q[c], _mm512_loadu_si512(y->qs + 64 * c)), s[c]);
            __m256i mins = _mm256_madd_epi16(m16, ld256(y->bsums));
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(y->d * dx), _mm512_cvtepi32_ps(sumi), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * mx), _mm256_cvtepi32_ps(mins), accm[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        out[(size_t)t * os] = hsum512_sub_hsum(acc[t], accm[t]);
}

/* Q5_K: as Q4_K with the fifth bits merged in before the row loop (and the
 * float accumulation of dot_q5_K_512). */
static ALWAYS_INLINE void q5_K_tile(const int N, int64_t nb, const block_q5_K *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    __m512i pick[4], bit[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        __m128i lo = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c)));
        __m128i hi = _mm_set1_epi16((short)(0x0100 + 0x0202 * (2 * c + 1)));
        pick[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(lo, lo)),
                                     _mm256_set_m128i(hi, hi), 1);
        bit[c] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                    _mm256_set1_epi8((char)(1 << (2 * c + 1))), 1);
    }
    __m512 acc[TILE];
    __m256 accm[TILE];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        __m128i sc8, mn8;
        k4_scales(x[i].scales, &sc8, &mn8);
        __m512i sc = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(sc8));
        __m256i m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
        __m512i qh = _mm512_broadcast_i64x4(ld256(x[i].qh));
        __m512i q[4], s[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i qb = ld256(x[i].qs + 32 * c);
            __m512i v = _mm512_and_si512(
                _mm512_inserti64x4(_mm512_castsi256_si512(qb), _mm256_srli_epi16(qb, 4), 1), m4);
            q[c] = _mm512_mask_add_epi8(v, _mm512_test_epi8_mask(qh, bit[c]), v, b4);
            s[c] = _mm512_shuffle_epi8(sc, pick[c]);
        }
        const float dx = x86_f16(x[i].d), mx = x86_f16(x[i].dmin);
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const block_q8_K *y = (const block_q8_K *)(a + (size_t)t * as) + i;
            /* the first product without an accumulator to clear (exact
             * integers: the same sums as from zero) */
            __m512i sumi =
                _mm512_madd_epi16(_mm512_maddubs_epi16(q[0], _mm512_loadu_si512(y->qs)), s[0]);
#pragma GCC unroll 3
            for (int c = 1; c < 4; c++)
                sumi = _mm512_dpwssd_epi32(
                    sumi, _mm512_maddubs_epi16(q[c], _mm512_loadu_si512(y->qs + 64 * c)), s[c]);
            __m256i mins = _mm256_madd_epi16(m16, ld256(y->bsums));
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(y->d * dx), _mm512_cvtepi32_ps(sumi), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(y->d * mx), _mm256_cvtepi32_ps(mins), accm[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        out[(size_t)t * os] = hsum512_sub_hsum(acc[t], accm[t]);
}

/* int16 lane l of group g (64 values, four 16-value sub-blocks) takes scale
 * 4g + l/8 of a super-block's 16: indices for vpermw. */
static inline void k16_perms(__m512i perm[4])
{
    for (int g = 0; g < 4; g++) {
        short idx[32];
        for (int l = 0; l < 32; l++)
            idx[l] = (short)(4 * g + l / 8);
        perm[g] = _mm512_loadu_si512(idx);
    }
}

/* Q2_K: group g = 2h + k/2 holds the 2-bit planes k, k+1 of qs half h. */
static ALWAYS_INLINE void q2_K_tile(const int N, int64_t nb, const block_q2_K *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    __m512i perm[4];
    k16_perms(perm);
    __m512 acc[TILE];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m128i s8 = ld128(x[i].scales);
        __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(s8, _mm_set1_epi8(0x0F))));
        __m256i mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s8, 4), _mm_set1_epi8(0x0F)));
        __m512i q[4], s[4];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i qb = _mm512_broadcast_i64x4(ld256(x[i].qs + 32 * h));
            q[2 * h] = _mm512_and_si512(_mm512_srlv_epi16(qb, sh01), m3);
            q[2 * h + 1] = _mm512_and_si512(_mm512_srlv_epi16(qb, sh23), m3);
        }
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            s[g] = _mm512_permutexvar_epi16(perm[g], sc);
        const float dx = x86_f16(x[i].d), mx = x86_f16(x[i].dmin);
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const block_q8_K *y = (const block_q8_K *)(a + (size_t)t * as) + i;
            __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
                sumi = _mm512_dpwssd_epi32(
                    sumi, _mm512_maddubs_epi16(q[g], _mm512_loadu_si512(y->qs + 64 * g)), s[g]);
            __m256i mins = _mm256_madd_epi16(mn, ld256(y->bsums));
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(y->d * dx), _mm512_cvtepi32_ps(sumi), acc[t]);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(-y->d * mx),
                                     _mm512_cvtepi32_ps(_mm512_zextsi256_si512(mins)), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        out[(size_t)t * os] = hsum512(acc[t]);
}

/* Q3_K: as Q2_K plus the hmask bit (bit 4h+k of hmask[l]) adding 4, and the
 * -4 offset applied through the activation block sums. */
static ALWAYS_INLINE void q3_K_tile(const int N, int64_t nb, const block_q3_K *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    const __m512i m3 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    const __m512i sh01 = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    const __m512i sh23 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    __m512i perm[4], bit[4];
    k16_perms(perm);
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) /* planes 2g, 2g+1 = hmask bits */
        bit[g] = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * g))),
                                    _mm256_set1_epi8((char)(1 << (2 * g + 1))), 1);
    __m512 acc[TILE];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(q3k_scales(x[i].scales));
        __m512i sc = _mm512_castsi256_si512(sc16);
        __m512i hm = _mm512_broadcast_i64x4(ld256(x[i].hmask));
        __m512i q[4], s[4];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m512i qb = _mm512_broadcast_i64x4(ld256(x[i].qs + 32 * h));
            __m512i v0 = _mm512_and_si512(_mm512_srlv_epi16(qb, sh01), m3);
            __m512i v1 = _mm512_and_si512(_mm512_srlv_epi16(qb, sh23), m3);
            q[2 * h] = _mm512_mask_add_epi8(v0, _mm512_test_epi8_mask(hm, bit[2 * h]), v0, four);
            q[2 * h + 1] = _mm512_mask_add_epi8(v1, _mm512_test_epi8_mask(hm, bit[2 * h + 1]), v1, four);
        }
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++)
            s[g] = _mm512_permutexvar_epi16(perm[g], sc);
        const float dx = x86_f16(x[i].d);
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const block_q8_K *y = (const block_q8_K *)(a + (size_t)t * as) + i;
            __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc16, ld256(y->bsums)), 2);
            __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
                sumi = _mm512_dpwssd_epi32(
                    sumi, _mm512_maddubs_epi16(q[g], _mm512_loadu_si512(y->qs + 64 * g)), s[g]);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(y->d * dx), _mm512_cvtepi32_ps(sumi), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        out[(size_t)t * os] = hsum512(acc[t]);
}

/* Q4_0: four blocks (two zmm) per step; (q - 8)*y as q*y - 8*y. */
static ALWAYS_INLINE void q4_0_tile(const int N, int64_t nb, const block_q4_0 *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    const __m512i z = _mm512_setzero_si512(), eight = _mm512_set1_epi8(8);
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i i23 = _mm512_add_epi32(i01, _mm512_set1_epi32(2));
    __m512 acc[TILE];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        acc[t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m128 dx = q4_0_scales4(x + i);
        __m512i x0 = q4_0_pair(x + i), x1 = q4_0_pair(x + i + 2);
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const block_q8_0 *y = (const block_q8_0 *)(a + (size_t)t * as) + i;
            __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(dx, q8_0_scales4(y)));
            __m512i y0 = ld2x256(y[0].qs, y[1].qs), y1 = ld2x256(y[2].qs, y[3].qs);
            __m512i p0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, x0, y0), _mm512_dpbusd_epi32(z, eight, y0));
            __m512i p1 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, x1, y1), _mm512_dpbusd_epi32(z, eight, y1));
            acc[t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, d4), _mm512_cvtepi32_ps(p0), acc[t]);
            acc[t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, d4), _mm512_cvtepi32_ps(p1), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        float s = hsum512(acc[t]);
        if (i < nb)
            s += dot_q4_0(32 * (nb - i), x + i, (const block_q8_0 *)(a + (size_t)t * as) + i);
        out[(size_t)t * os] = s;
    }
}

/* Q6_K: four zmm of 6-bit values and four scale vectors per super-block. */
static ALWAYS_INLINE void q6_K_tile(const int N, int64_t nb, const block_q6_K *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_b = _mm512_inserti64x4(_mm512_set1_epi16(0), _mm256_set1_epi16(2), 1);
    __m512i perm[4];
    #pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        short idx[32];
        for (int l = 0; l < 32; l++)
            idx[l] = (short)(4 * g + l / 8);
        perm[g] = _mm512_loadu_si512(idx);
    }
    __m512 acc[TILE];
    #pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i sc16 = _mm256_cvtepi8_epi16(ld128(x[i].scales));
        __m512i sc = _mm512_castsi256_si512(sc16);
        __m512i q[4], s[4];
        #pragma GCC unroll 4
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512(x[i].ql + 64 * h);
            __m512i qh = _mm512_broadcast_i64x4(ld256(x[i].qh + 32 * h));
            q[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4),
                                       _mm512_and_si512(_mm512_sllv_epi16(qh, shl_a), m30));
            q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                           _mm512_and_si512(_mm512_srlv_epi16(qh, shr_b), m30));
            s[2 * h] = _mm512_permutexvar_epi16(perm[2 * h], sc);
            s[2 * h + 1] = _mm512_permutexvar_epi16(perm[2 * h + 1], sc);
        }
        const float dx = x86_f16(x[i].d);
        #pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const block_q8_K *y = (const block_q8_K *)(a + (size_t)t * as) + i;
            __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(sc16, ld256(y->bsums)), 5);
            __m512i sumi = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(off));
            #pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
                sumi = _mm512_dpwssd_epi32(
                    sumi, _mm512_maddubs_epi16(q[g], _mm512_loadu_si512(y->qs + 64 * g)), s[g]);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(y->d * dx), _mm512_cvtepi32_ps(sumi), acc[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        out[(size_t)t * os] = hsum512(acc[t]);
}

/* Q8_0: per four blocks the weights' |q|, sign masks and fp16 scales are
 * prepared once. */
static ALWAYS_INLINE void q8_0_tile(const int N, int64_t nb, const block_q8_0 *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    const __m512i z = _mm512_setzero_si512();
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i i23 = _mm512_add_epi32(i01, _mm512_set1_epi32(2));
    __m512 acc0[TILE], acc1[TILE];
    #pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        acc0[t] = acc1[t] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        __m128 dx = q8_0_scales4(x + i);
        __m512i x0 = ld2x256(x[i].qs, x[i + 1].qs), x1 = ld2x256(x[i + 2].qs, x[i + 3].qs);
        __mmask64 n0 = _mm512_movepi8_mask(x0), n1 = _mm512_movepi8_mask(x1);
        x0 = _mm512_abs_epi8(x0);
        x1 = _mm512_abs_epi8(x1);
        #pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const block_q8_0 *y = (const block_q8_0 *)(a + (size_t)t * as) + i;
            __m128 dy = q8_0_scales4(y);
            __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(dx, dy));
            __m512i y0 = ld2x256(y[0].qs, y[1].qs), y1 = ld2x256(y[2].qs, y[3].qs);
            __m512i p0 = _mm512_dpbusd_epi32(z, x0, _mm512_mask_sub_epi8(y0, n0, z, y0));
            __m512i p1 = _mm512_dpbusd_epi32(z, x1, _mm512_mask_sub_epi8(y1, n1, z, y1));
            acc0[t] =
                _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, d4), _mm512_cvtepi32_ps(p0), acc0[t]);
            acc1[t] =
                _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, d4), _mm512_cvtepi32_ps(p1), acc1[t]);
        }
    }
    #pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        float s = hsum512(_mm512_add_ps(acc0[t], acc1[t]));
        if (i < nb)
            s += dot_q8_0(32 * (nb - i), x + i, (const block_q8_0 *)(a + (size_t)t * as) + i);
        out[(size_t)t * os] = s;
    }
}

/* F16: 32 weights converted once per step, FMAs into per-row accumulators
 * (two per row to cover the FMA latency). */
static ALWAYS_INLINE void f16_tile(const int N, int64_t n, const uint16_t *x, const char *a,
                                   size_t as, float *out, size_t os)
{
    __m512 acc[TILE][2];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++)
        acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 w0 = _mm512_cvtph_ps(ld256(x + i)), w1 = _mm512_cvtph_ps(ld256(x + i + 16));
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const uint16_t *y = (const uint16_t *)(a + (size_t)t * as) + i;
            acc[t][0] = _mm512_fmadd_ps(w0, _mm512_cvtph_ps(ld256(y)), acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(w1, _mm512_cvtph_ps(ld256(y + 16)), acc[t][1]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        float s = hsum512(_mm512_add_ps(acc[t][0], acc[t][1]));
        if (i < n)
            s += dot_f16(n - i, x + i, (const uint16_t *)(a + (size_t)t * as) + i);
        out[(size_t)t * os] = s;
    }
}

static float dot_f16_512(int64_t n, const void *w, const void *a)
{
    float out;
    f16_tile(1, n, w, a, 0, &out, 1);
    return out;
}

/* Four fp16 fields at p, p + stride, p + 2*stride, p + 3*stride as floats. */
static inline __m128 f16x4_strided(const uint8_t *p, size_t stride)
{
    uint16_t h[4];
    for (int k = 0; k < 4; k++)
        memcpy(&h[k], p + (size_t)k * stride, 2);
    return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)h));
}

/* The d (and s) fields of four consecutive q8_1 blocks: 16-bit elements 0,
 * 18, 36, 54 (and +1) of their first 128 bytes. */
static inline void q8_1_scales4(const block_q8_1 *b, __m128 *d, __m128 *s)
{
    const __m512i idx = _mm512_castsi128_si512(_mm_setr_epi16(0, 18, 36, 54, 1, 19, 37, 55));
    const char *p = (const char *)b;
    __m512i v = _mm512_permutex2var_epi16(_mm512_loadu_si512(p), idx, _mm512_loadu_si512(p + 64));
    __m256 f = _mm256_cvtph_ps(_mm512_castsi512_si128(v));
    *d = _mm256_castps256_ps128(f);
    *s = _mm256_extractf128_ps(f, 1);
}

/* Q4_1, Q5_0, Q5_1 (32-value blocks of BS bytes: d, [m], [qh], qs[16]): four
 * blocks per step like Q4_0. Q5_0 subtracts 16 through the activations;
 * the types with a min add m * s from the q8_1 activation blocks. */
static ALWAYS_INLINE void q45_tile(const int N, const int BS, const int HAS_M, const int HAS_H,
                                   int64_t nb, const uint8_t *x, const char *a, size_t as,
                                   float *out, size_t os)
{
    const __m512i z = _mm512_setzero_si512(), sixteen = _mm512_set1_epi8(16);
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i i23 = _mm512_add_epi32(i01, _mm512_set1_epi32(2));
    const size_t ybs = HAS_M ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const size_t yqs = HAS_M ? 4 : 2;
    const int qh_off = HAS_M ? 4 : 2;
    __m512 acc[TILE];
    __m128 accm[TILE];
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const uint8_t *xb = x + (size_t)i * BS;
        __m128 dx = f16x4_strided(xb, (size_t)BS);
        __m128 mx = HAS_M ? f16x4_strided(xb + 2, (size_t)BS) : _mm_setzero_ps();
        __m512i q[2];
#pragma GCC unroll 2
        for (int pr = 0; pr < 2; pr++) {
            const uint8_t *b0 = xb + (size_t)(2 * pr) * BS, *b1 = b0 + BS;
            __m256i t2 = _mm256_set_m128i(ld128(b1 + BS - 16), ld128(b0 + BS - 16));
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(t2), _mm256_srli_epi16(t2, 4), 1);
            v = _mm512_and_si512(_mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)),
                                 _mm512_set1_epi8(0x0F));
            if (HAS_H) {
                uint64_t bits = ld_u32(b0 + qh_off) | ((uint64_t)ld_u32(b1 + qh_off) << 32);
                v = _mm512_mask_add_epi8(v, (__mmask64)bits, v, sixteen);
            }
            q[pr] = v;
        }
#pragma GCC unroll 8
        for (int t = 0; t < N; t++) {
            const uint8_t *yb = (const uint8_t *)(a + (size_t)t * as) + (size_t)i * ybs;
            __m128 dy, sy = _mm_setzero_ps();
            if (HAS_M)
                q8_1_scales4((const block_q8_1 *)yb, &dy, &sy);
            else
                dy = q8_0_scales4((const block_q8_0 *)yb);
            __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(dx, dy));
            __m512i p[2];
#pragma GCC unroll 2
            for (int pr = 0; pr < 2; pr++) {
                const uint8_t *y0 = yb + (size_t)(2 * pr) * ybs + yqs;
                __m512i yv = ld2x256(y0, y0 + ybs);
                p[pr] = _mm512_dpbusd_epi32(z, q[pr], yv);
                if (!HAS_M) /* q5_0: values are q - 16 */
                    p[pr] = _mm512_sub_epi32(p[pr], _mm512_dpbusd_epi32(z, sixteen, yv));
            }
            acc[t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, d4), _mm512_cvtepi32_ps(p[0]), acc[t]);
            acc[t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, d4), _mm512_cvtepi32_ps(p[1]), acc[t]);
            if (HAS_M)
                accm[t] = _mm_fmadd_ps(mx, sy, accm[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < N; t++) {
        __m128 m = accm[t];
        m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        float s = hsum512(acc[t]) + _mm_cvtss_f32(m);
        const char *ar = a + (size_t)t * as;
        if (i < nb) {
            const uint8_t *xr = x + (size_t)i * BS;
            const char *yr = ar + (size_t)i * ybs;
            int64_t rest = 32 * (nb - i);
            s += BS == 20 ? dot_q4_1(rest, xr, yr) : BS == 22 ? dot_q5_0(rest, xr, yr) : dot_q5_1(rest, xr, yr);
        }
        out[(size_t)t * os] = s;
    }
}

static ALWAYS_INLINE void q4_1_tile(const int N, int64_t nb, const uint8_t *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    q45_tile(N, sizeof(block_q4_1), 1, 0, nb, x, a, as, out, os);
}

static ALWAYS_INLINE void q5_0_tile(const int N, int64_t nb, const uint8_t *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    q45_tile(N, sizeof(block_q5_0), 0, 1, nb, x, a, as, out, os);
}

static ALWAYS_INLINE void q5_1_tile(const int N, int64_t nb, const uint8_t *x, const char *a,
                                    size_t as, float *out, size_t os)
{
    q45_tile(N, sizeof(block_q5_1), 1, 1, nb, x, a, as, out, os);
}

/* Splits nt rows into groups of TILE with a specialized tail. */
#define TILED(name, blk, bs)                                                                       \
    static void name##_n(int64_t n, const void *w, const void *a, size_t as, int nt, float *out,  \
                         size_t os)                                                                \
    {                                                                                              \
        const blk *x = w;                                                                          \
        const char *ap = a;                                                                        \
        const int64_t nb = n / (bs);                                                               \
        int k = 0;                                                                                 \
        for (; k + TILE <= nt; k += TILE)                                                          \
            name##_tile(TILE, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os);           \
        switch (nt - k) {                                                                          \
        case 7: name##_tile(7, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os); break;   \
        case 6: name##_tile(6, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os); break;   \
        case 5: name##_tile(5, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os); break;   \
        case 4: name##_tile(4, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os); break;   \
        case 3: name##_tile(3, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os); break;   \
        case 2: name##_tile(2, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os); break;   \
        case 1: name##_tile(1, nb, x, ap + (size_t)k * as, as, out + (size_t)k * os, os); break;   \
        default: break;                                                                            \
        }                                                                                          \
    }

TILED(q4_K, block_q4_K, KN_QK_K)
TILED(q6_K, block_q6_K, KN_QK_K)
TILED(q8_0, block_q8_0, 32)
TILED(f16, uint16_t, 1)
TILED(q5_K, block_q5_K, KN_QK_K)
TILED(q4_0, block_q4_0, 32)
TILED(q2_K, block_q2_K, KN_QK_K)
TILED(q3_K, block_q3_K, KN_QK_K)
TILED(q4_1, uint8_t, 32)
TILED(q5_0, uint8_t, 32)
TILED(q5_1, uint8_t, 32)

#define ONE_ROW(name, bs)                                                                          \
    static float dot_##name##_512(int64_t n, const void *w, const void *a)                        \
    {                                                                                              \
        float out;                                                                                 \
        name##_tile(1, n / (bs), w, a, 0, &out, 1);                                                \
        return out;                                                                                \
    }
ONE_ROW(q4_1, 32)
ONE_ROW(q5_0, 32)
ONE_ROW(q5_1, 32)

static float dot_q2_K_512(int64_t n, const void *w, const void *a)
{
    float out;
    q2_K_tile(1, n / KN_QK_K, w, a, 0, &out, 1);
    return out;
}

static float dot_q3_K_512(int64_t n, const void *w, const void *a)
{
    float out;
    q3_K_tile(1, n / KN_QK_K, w, a, 0, &out, 1);
    return out;
}

static float dot_q4_0_512(int64_t n, const void *w, const void *a)
{
    float out;
    q4_0_tile(1, n / 32, w, a, 0, &out, 1);
    return out;
}

void kn_quants_avx512_fill(kn_traits *tab)
{
    tab[VT_TYPE_F32].vec_dot = dot_f32;
    tab[VT_TYPE_F16].vec_dot = dot_f16_512;
    tab[VT_TYPE_F16].vec_dot_n = f16_n;
    tab[VT_TYPE_F16].to_float = f16_to_float;
    tab[VT_TYPE_F16].from_float = f16_from_float;
    tab[VT_TYPE_BF16].vec_dot = dot_bf16_512;
    tab[VT_TYPE_BF16].to_float = bf16_to_float;
    tab[VT_TYPE_BF16].from_float = bf16_from_float;
    tab[VT_TYPE_Q4_0].vec_dot = dot_q4_0_512;
    tab[VT_TYPE_Q4_0].vec_dot_n = q4_0_n;
    tab[VT_TYPE_Q4_1].vec_dot = dot_q4_1_512;
    tab[VT_TYPE_Q4_1].vec_dot_n = q4_1_n;
    tab[VT_TYPE_Q5_0].vec_dot = dot_q5_0_512;
    tab[VT_TYPE_Q5_0].vec_dot_n = q5_0_n;
    tab[VT_TYPE_Q5_1].vec_dot = dot_q5_1_512;
    tab[VT_TYPE_Q5_1].vec_dot_n = q5_1_n;
    tab[VT_TYPE_Q8_0].vec_dot = dot_q8_0_512;
    tab[VT_TYPE_Q8_0].vec_dot_n = q8_0_n;
    tab[VT_TYPE_Q8_0].from_float = q8_0_from_float;
    tab[VT_TYPE_Q8_1].from_float = q8_1_from_float;
    tab[VT_TYPE_Q2_K].vec_dot = dot_q2_K_512;
    tab[VT_TYPE_Q2_K].vec_dot_n = q2_K_n;
    tab[VT_TYPE_Q3_K].vec_dot = dot_q3_K_512;
    tab[VT_TYPE_Q3_K].vec_dot_n = q3_K_n;
    tab[VT_TYPE_Q4_K].vec_dot = dot_q4_K_512;
    tab[VT_TYPE_Q4_K].vec_dot_n = q4_K_n;
    tab[VT_TYPE_Q5_K].vec_dot = dot_q5_K_512;
    tab[VT_TYPE_Q5_K].vec_dot_n = q5_K_n;
    tab[VT_TYPE_Q6_K].vec_dot = dot_q6_K_512;
    tab[VT_TYPE_Q6_K].vec_dot_n = q6_K_n;
    tab[VT_TYPE_Q8_K].from_float = q8_K_from_float;
}
