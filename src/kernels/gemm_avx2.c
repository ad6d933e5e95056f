/*
 * gemm_avx2.c - the AVX2 GEMM tile (traits `gemm`) for Q8_0: 2 weight rows
 * x 2 tokens with maddubs/madd int8 arithmetic, so that each weight block's
 * magnitudes are worked out once for both tokens and each activation block
 * loaded once serves both rows. Every result is bit-identical to the AVX2
 * vec_dot (dot_q8_0 of quants_x86.h): per (row, token) the same two float
 * accumulators (even and odd blocks, an odd last block into the first), the
 * same exact int32 lanes and the same reduction. (A wider tile does not fit
 * the sixteen ymm registers next to its 2 x R x T accumulators.)
 */
#define KN_X86_AVX512 0
#include "kernels/quants_x86.h"

/* Forced inlining makes every tile shape its own specialized copy; the
 * fuzz build (clang with ASan+UBSan+coverage, where those copies take
 * minutes to compile) turns it off with VT_NO_FORCE_INLINE. */
#ifdef VT_NO_FORCE_INLINE
#define ALWAYS_INLINE inline
#else
#define ALWAYS_INLINE inline __attribute__((always_inline))
#endif

/* One block b of rows r < R and tokens t < T into acc[r][t][k]. */
static ALWAYS_INLINE void q8_0_block2(const int R, const int T, int64_t b, int k, const char *w,
                                      size_t ws, const char *a, size_t as, __m256 acc[2][2][2])
{
    const __m256i ones = _mm256_set1_epi16(1), z = _mm256_setzero_si256();
    __m256i ax[2], sx[2];
    float dx[2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        const block_q8_0 *x = (const block_q8_0 *)(w + (size_t)r * ws) + b;
        sx[r] = ld256(x->qs);
        ax[r] = _mm256_sign_epi8(sx[r], sx[r]);
        dx[r] = x86_f16(x->d);
    }
#pragma GCC unroll 2
    for (int t = 0; t < T; t++) {
        const block_q8_0 *y = (const block_q8_0 *)(a + (size_t)t * as) + b;
        const __m256i yq = ld256(y->qs);
        const float dy = x86_f16(y->d);
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m256i p = _mm256_add_epi32(
                z, _mm256_madd_epi16(_mm256_maddubs_epi16(ax[r], _mm256_sign_epi8(yq, sx[r])), ones));
            acc[r][t][k] = _mm256_fmadd_ps(_mm256_set1_ps(dx[r] * dy), _mm256_cvtepi32_ps(p),
                                           acc[r][t][k]);
        }
    }
}

static ALWAYS_INLINE void q8_0_tile(const int R, const int T, int64_t n, const char *w, size_t ws,
                                    const char *a, size_t as, float *out, size_t os)
{
    const int64_t nb = n / 32;
    __m256 acc[2][2][2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++)
            acc[r][t][0] = acc[r][t][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 1 < nb; i += 2) {
        q8_0_block2(R, T, i, 0, w, ws, a, as, acc);
        q8_0_block2(R, T, i + 1, 1, w, ws, a, as, acc);
    }
    if (i < nb)
        q8_0_block2(R, T, i, 0, w, ws, a, as, acc);
#pragma GCC unroll 2
    for (int t = 0; t < T; t++)
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)
            out[(size_t)t * os + r] = hsum_ps(_mm256_add_ps(acc[r][t][0], acc[r][t][1]));
}

static void gemm_q8_0(int64_t n, const void *wv, size_t ws, int nr, const void *av, size_t as,
                      int nt, float *ov, size_t os)
{
    for (int r0 = 0; r0 < nr; r0 += 2) {
        const char *w = (const char *)wv + (size_t)r0 * ws;
        for (int t0 = 0; t0 < nt; t0 += 2) {
            const char *a = (const char *)av + (size_t)t0 * as;
            float *out = ov + (size_t)t0 * os + r0;
            const int two_r = nr - r0 >= 2, two_t = nt - t0 >= 2;
            if (two_r && two_t)
                q8_0_tile(2, 2, n, w, ws, a, as, out, os);
            else if (two_r)
                q8_0_tile(2, 1, n, w, ws, a, as, out, os);
            else if (two_t)
                q8_0_tile(1, 2, n, w, ws, a, as, out, os);
            else
                q8_0_tile(1, 1, n, w, ws, a, as, out, os);
        }
    }
}

void kn_gemm_avx2_fill(kn_traits *tab)
{
    tab[VT_TYPE_Q8_0].gemm = gemm_q8_0;
}
