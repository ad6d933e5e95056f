/*
 * gemm_avx512.c - the AVX-512 GEMM tiles (traits `gemm`): a group of weight
 * rows against a group of activation rows (tokens), register-blocked so that
 * each weight block loaded (and prepared) once serves every token of the
 * tile and each activation block loaded once serves every row. This is the
 * kernel of prefill and of batched decode (2..256 tokens per step).
 *
 * Q8_0 (4 rows x 4 tokens): the activations are made unsigned once per
 * load (y + 128, an xor) so that vpdpbusd multiplies them with the signed
 * weights directly; the excess 128 * sum(x) of each int32 lane is worked out
 * once per weight block and row and is the starting value of the
 * accumulation, so the int32 sums are exactly those of vec_dot. Per row,
 * token and two blocks that leaves one vpdpbusd, one scale product, one
 * conversion and one fmadd.
 *
 * Q4_K, Q5_K, Q6_K have none: a decoded super-block of one row is eight
 * zmm (nibbles and scale vectors), so a tile of several rows and several
 * tokens does not fit the 32 registers next to its accumulators, and the
 * one-row, eight-token vec_dot_n tile is as fast (a 4 x 4 Q4_K tile measured
 * 69 against 73 GMAC/s; decoding each row once into L1 for all 32 tokens of
 * a tile instead of once per 8, 69-72 against 70-73: the weight decoding is
 * not what limits it). What does is the work per (row, token, super-block)
 * that vec_dot's numerics fix: four vpmaddubsw, four vpdpwssd, the 16-lane
 * and 8-lane conversions and fmadds of its two float accumulators.
 *
 * Every result is bit-identical to the AVX-512 vec_dot of that row and
 * token (quants_avx512.c): each (row, token) keeps exactly the float
 * accumulators of vec_dot (Q8_0: one for blocks 4g, 4g+1 and one for blocks
 * 4g+2, 4g+3), fed the same products in the same order, and reduced the
 * same way; only exact integer work is arranged differently. Q8_0 runs the two accumulators in two passes
 * over the row (sixteen accumulators of a 4 x 4 tile fit the registers,
 * thirty-two do not).
 */
#include "kernels/quants_avx512.h"

#define GR 4 /* weight rows per tile */
#define GT 4 /* tokens per tile */

/* ---- Q8_0 -------------------------------------------------------------- */

/* One pass over the groups of four blocks, half h (h = 0: blocks 4g and
 * 4g+1, the acc0 of vec_dot; h = 1: blocks 4g+2, 4g+3, its acc1). */
static ALWAYS_INLINE void q8_0_pass(const int R, const int T, const int h, int64_t ng,
                                    const char *w, size_t ws, const char *a, size_t as,
                                    __m512 acc[GR][GT])
{
    const __m512i z = _mm512_setzero_si512(), k128 = _mm512_set1_epi8((char)0x80);
    const __m512i idx = h ? _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)
                          : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512i xq[GR], nc[GR];
        __m512 dx[GR];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_q8_0 *x = (const block_q8_0 *)(w + (size_t)r * ws) + 4 * g;
            xq[r] = ld2x256(x[2 * h].qs, x[2 * h + 1].qs);
            nc[r] = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, k128, xq[r]));
            dx[r] = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(q8_0_scales4(x)));
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const block_q8_0 *y = (const block_q8_0 *)(a + (size_t)t * as) + 4 * g;
            __m512i yu = _mm512_xor_si512(ld2x256(y[2 * h].qs, y[2 * h + 1].qs), k128);
            __m512 dy = _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(q8_0_scales4(y)));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i p = _mm512_dpbusd_epi32(nc[r], yu, xq[r]); /* = sum of x * y */
                acc[r][t] = _mm512_fmadd_ps(_mm512_mul_ps(dx[r], dy), _mm512_cvtepi32_ps(p),
                                            acc[r][t]);
            }
        }
    }
}

static ALWAYS_INLINE void q8_0_tile(const int R, const int T, int64_t n, const char *w, size_t ws,
                                    const char *a, size_t as, float *out, size_t os)
{
    const int64_t nb = n / 32, ng = nb / 4;
    __m512 acc0[GR][GT], acc1[GR][GT];
    q8_0_pass(R, T, 0, ng, w, ws, a, as, acc0);
    q8_0_pass(R, T, 1, ng, w, ws, a, as, acc1);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float s = hsum512(_mm512_add_ps(acc0[r][t], acc1[r][t]));
            if (4 * ng < nb) /* the last blocks as vec_dot does them */
                s += dot_q8_0(32 * (nb - 4 * ng),
                              (const block_q8_0 *)(w + (size_t)r * ws) + 4 * ng,
                              (const block_q8_0 *)(a + (size_t)t * as) + 4 * ng);
            out[(size_t)t * os + r] = s;
        }
}

/* ---- drivers: any number of rows and tokens, in tiles with exact-size
 * tails (every (R, T) up to 4 x 4 is its own specialized copy) ----------- */

#define TILE_CASE(name, R, T)                                                                      \
    case (R) * 8 + (T): name##_tile(R, T, n, w, ws, a, as, out, os); break;
#define TILE_ROW(name, R)                                                                          \
    TILE_CASE(name, R, 1) TILE_CASE(name, R, 2) TILE_CASE(name, R, 3) TILE_CASE(name, R, 4)

#define GEMM(name)                                                                                 \
    static void gemm_##name(int64_t n, const void *wv, size_t ws, int nr, const void *av,         \
                            size_t as, int nt, float *ov, size_t os)                              \
    {                                                                                              \
        for (int r0 = 0; r0 < nr; r0 += GR) {                                                      \
            const char *w = (const char *)wv + (size_t)r0 * ws;                                    \
            const int R = nr - r0 < GR ? nr - r0 : GR;                                             \
            for (int t0 = 0; t0 < nt; t0 += GT) {                                                  \
                const char *a = (const char *)av + (size_t)t0 * as;                                \
                float *out = ov + (size_t)t0 * os + r0;                                            \
                const int T = nt - t0 < GT ? nt - t0 : GT;                                         \
                switch (R * 8 + T) {                                                               \
                    TILE_ROW(name, 1) TILE_ROW(name, 2) TILE_ROW(name, 3) TILE_ROW(name, 4)        \
                default: break;                                                                    \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

GEMM(q8_0)

void kn_gemm_avx512_fill(kn_traits *tab)
{
    tab[VT_TYPE_Q8_0].gemm = gemm_q8_0;
}
