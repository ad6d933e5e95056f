/*
 * gemv_avx512.c - the AVX-512 vec_dot_rows kernels (Q4_K, Q5_K, Q6_K, Q8_0,
 * Q4_0): many weight rows against one activation row, the single-token
 * decode GEMV, which streams every weight byte from memory once.
 *
 * What makes them faster than vec_dot row by row, measured on Zen4:
 *  - One loop body for all rows. The rows of a matrix are contiguous, so
 *    the weight loads of a single loop walk one unbroken stride through
 *    memory and the hardware's per-instruction stride prefetcher stays
 *    trained across row ends. (Interleaving rows, or unrolling the row loop
 *    into copies, splits that stream: -30% from memory.)
 *  - Software prefetch X86_PF_DIST bytes ahead of the weights, running on into
 *    whatever follows the call's rows (the caller's next rows).
 *  - The horizontal sums of four rows done together, transposed, with the
 *    same additions in the same order as vec_dot's reduction of each row.
 *  - No per-row call, constant setup or reduction overhead.
 *
 * Every result is bit-identical to the AVX-512 vec_dot of that row: the
 * float accumulators of each row are the ones vec_dot keeps (same fmadds in
 * the same order), only exact integer work is arranged differently.
 */
#include "kernels/quants_avx512.h"

/* ---- reductions of four rows at once ----------------------------------- */

/* The 256-bit halves of a 512-bit accumulator added, as hsum512 starts. */
static ALWAYS_INLINE __m256 fold512(__m512 v)
{
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
}

/* [hsum512(acc[r]) - hsum_ps(accm[r])] for r < 4, bit for bit. */
static ALWAYS_INLINE __m128 reduce4_sub(const __m512 acc[4], const __m256 accm[4])
{
    const __m256 v[4] = {fold512(acc[0]), fold512(acc[1]), fold512(acc[2]), fold512(acc[3])};
    return hsum4_sub(v, accm);
}

/* [hsum512(acc[r])] for r < 4, bit for bit. */
static ALWAYS_INLINE __m128 reduce4(const __m512 acc[4])
{
    const __m256 v[4] = {fold512(acc[0]), fold512(acc[1]), fold512(acc[2]), fold512(acc[3])};
    return hsum4(v);
}

/* ---- Q4_K / Q5_K -------------------------------------------------------- */

/* vpermw indices spreading int16 scale 2c over the low 256 bits (values
 * 0..31 of chunk c, low nibbles) and 2c + 1 over the high 256 bits. */
static ALWAYS_INLINE void k4_picks(__m512i pick[4])
{
    for (int c = 0; c < 4; c++) {
        short idx[32];
        for (int l = 0; l < 32; l++)
            idx[l] = (short)(2 * c + l / 16);
        pick[c] = _mm512_loadu_si512(idx);
    }
}

/* The d * sums and dmin * mins accumulators of one q4_K (HAS_H = 0) or
 * q5_K row, as dot_q4_K_512 / dot_q5_K_512 build them (the same float
 * products and fmadds; d and dmin converted and scaled as a pair). */
static ALWAYS_INLINE void k45_row(const int HAS_H, int64_t nb, const uint8_t *x, size_t bs,
                                  const block_q8_K *y, const __m512i pick[4],
                                  __m512 *acc_out, __m256 *accm_out)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    const __m512i shr4 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    __m512 acc = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, x += bs) {
        x86_prefetch_step(x, bs);
        /* d, dmin, scales[12], [qh[32]], qs[128] */
        const uint8_t *qs = x + 16 + (HAS_H ? 32 : 0);
        const float dy = y[i].d;
        __m128 ddm = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)ld_u32(x))), _mm_set1_ps(dy));
        const __m512 vd = _mm512_broadcastss_ps(ddm);
        const __m256 vm = _mm256_broadcastss_ps(_mm_movehdup_ps(ddm));
        __m128i sc8, mn8;
        k4_scales(x + 4, &sc8, &mn8);
        __m256i mins = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8)),
                                         ld256(y[i].bsums));
        accm = _mm256_fmadd_ps(vm, _mm256_cvtepi32_ps(mins), accm);
        __m512i sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sc8));
        __m512i qh = HAS_H ? _mm512_broadcast_i64x4(ld256(x + 16)) : _mm512_setzero_si512();
        __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            /* the 32 bytes in both halves, high nibbles shifted down in the upper one */
            __m512i q = _mm512_and_si512(
                _mm512_srlv_epi16(_mm512_broadcast_i64x4(ld256(qs + 32 * c)), shr4), m4);
            if (HAS_H) {
                const __m512i bit =
                    _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << (2 * c))),
                                       _mm256_set1_epi8((char)(1 << (2 * c + 1))), 1);
                q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, bit), q, b4);
            }
            __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(y[i].qs + 64 * c));
            const __m512i s16 = _mm512_permutexvar_epi16(pick[c], sc);
            if (c == 0) /* exact integers: the same sums as from zero */
                sumi = _mm512_madd_epi16(p, s16);
            else
                sumi = _mm512_dpwssd_epi32(sumi, p, s16);
        }
        acc = _mm512_fmadd_ps(vd, _mm512_cvtepi32_ps(sumi), acc);
    }
    *acc_out = acc;
    *accm_out = accm;
}

static ALWAYS_INLINE void k45_rows(const int HAS_H, int64_t n, const void *w, size_t ws, int nr,
                                   const void *a, float *out)
{
    const size_t bs = HAS_H ? sizeof(block_q5_K) : sizeof(block_q4_K);
    const int64_t nb = n / KN_QK_K;
    x86_prefetch_head(w, ws, nr);
    __m512i pick[4];
    k4_picks(pick);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
#pragma GCC unroll 1
    for (int k = 0; k < nr; k++) {
        k45_row(HAS_H, nb, (const uint8_t *)w + (size_t)k * ws, bs, a, pick, &acc[k & 3],
                &accm[k & 3]);
        if ((k & 3) == 3 || k == nr - 1)
            store4(out, k, reduce4_sub(acc, accm));
    }
}

static void q4_K_rows(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    k45_rows(0, n, w, ws, nr, a, out);
}

static void q5_K_rows(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    k45_rows(1, n, w, ws, nr, a, out);
}

/* ---- Q6_K --------------------------------------------------------------- */

static void q6_K_rows(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    const block_q8_K *y = a;
    const int64_t nb = n / KN_QK_K;
    x86_prefetch_head(w, ws, nr);
    __m512i perm[4];
    k6_perms(perm);
    __m512 accs[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                      _mm512_setzero_ps()};
#pragma GCC unroll 1
    for (int k = 0; k < nr; k++) {
        const block_q6_K *x = (const block_q6_K *)((const char *)w + (size_t)k * ws);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb; i++) {
            x86_prefetch_step(x + i, sizeof *x);
            const float d = y[i].d * x86_f16(x[i].d);
            acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(k6_sumi(x + i, y + i, perm)),
                                  acc);
        }
        accs[k & 3] = acc;
        if ((k & 3) == 3 || k == nr - 1)
            store4(out, k, reduce4(accs));
    }
}

/* ---- Q8_0 / Q4_0 -------------------------------------------------------- */

/* Q8_0: x * y summed as (y + 128) * x - 128 * x (vpdpbusd wants one
 * unsigned operand), with the activation side - y + 128 packed two blocks
 * per zmm, the block scales - worked out once per call (EXP, for rows up to
 * Q8_EXP_MAX values) instead of once per row. The integer sums are exact,
 * the same as dot_q8_0_512's. */
#define Q8_EXP_MAX 8192

typedef struct {
    __m512i y[2]; /* quants of blocks 0-1 and 2-3: + 128 (Q8_0) or as they are (Q4_0) */
    __m512i c[2]; /* Q4_0: -8 * (sums of four quants), the same lanes */
    __m128 d;     /* the four block scales */
} q8_act;

static ALWAYS_INLINE void q8_0_rows_impl(const int EXP, int64_t n, const void *w, size_t ws,
                                         int nr, const block_q8_0 *y, const q8_act *ya,
                                         float *out)
{
    const int64_t nb = n / 32, nb4 = nb / 4 * 4;
    const __m512i z = _mm512_setzero_si512(), c80 = _mm512_set1_epi8((char)0x80);
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i i23 = _mm512_add_epi32(i01, _mm512_set1_epi32(2));
    __m512 accs[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                      _mm512_setzero_ps()};
#pragma GCC unroll 1
    for (int k = 0; k < nr; k++) {
        const block_q8_0 *x = (const block_q8_0 *)((const char *)w + (size_t)k * ws);
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb4; i += 4) {
            x86_prefetch_step(x + i, 4 * sizeof *x);
            __m512i x0 = ld2x256(x[i].qs, x[i + 1].qs), x1 = ld2x256(x[i + 2].qs, x[i + 3].qs);
            __m512i p0, p1;
            __m128 dy;
            if (EXP) {
                const q8_act *g = ya + i / 4;
                dy = g->d;
                p0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, g->y[0], x0),
                                      _mm512_dpbusd_epi32(z, c80, x0));
                p1 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, g->y[1], x1),
                                      _mm512_dpbusd_epi32(z, c80, x1));
            } else {
                dy = q8_0_scales4(y + i);
                p0 = dot_ss512(z, x0, ld2x256(y[i].qs, y[i + 1].qs));
                p1 = dot_ss512(z, x1, ld2x256(y[i + 2].qs, y[i + 3].qs));
            }
            __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(q8_0_scales4(x + i), dy));
            acc0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, d4), _mm512_cvtepi32_ps(p0), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, d4), _mm512_cvtepi32_ps(p1), acc1);
        }
        accs[k & 3] = _mm512_add_ps(acc0, acc1);
        if ((k & 3) == 3 || k == nr - 1) {
            store4(out, k, reduce4(accs));
            if (nb4 < nb) /* the last blocks, as dot_q8_0_512 adds them */
                for (int r = k - (k & 3); r <= k; r++)
                    out[r] += dot_q8_0(32 * (nb - nb4),
                                       (const block_q8_0 *)((const char *)w + (size_t)r * ws) + nb4,
                                       y + nb4);
        }
    }
}

static void q8_0_rows(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    const block_q8_0 *y = a;
    x86_prefetch_head(w, ws, nr);
    if (n > Q8_EXP_MAX) {
        q8_0_rows_impl(0, n, w, ws, nr, y, NULL, out);
        return;
    }
    q8_act ya[Q8_EXP_MAX / 128];
    for (int64_t i = 0; i + 4 <= n / 32; i += 4) {
        q8_act *g = &ya[i / 4];
        g->d = q8_0_scales4(y + i);
        for (int h = 0; h < 2; h++)
            g->y[h] = _mm512_xor_si512(ld2x256(y[i + 2 * h].qs, y[i + 2 * h + 1].qs),
                                       _mm512_set1_epi8((char)0x80));
    }
    q8_0_rows_impl(1, n, w, ws, nr, y, ya, out);
}

/* Q4_0: (q - 8) * y as q * y - 8 * y, with the activation side - the 8 * y
 * sums, the block scales and the quants packed two blocks per zmm - worked
 * out once per call (EXP, for rows up to Q8_EXP_MAX values) instead of
 * once per row. */
static ALWAYS_INLINE void q4_0_rows_impl(const int EXP, int64_t n, const void *w, size_t ws,
                                         int nr, const block_q8_0 *y, const q8_act *ya,
                                         float *out)
{
    const int64_t nb = n / 32, nb4 = nb / 4 * 4;
    const __m512i z = _mm512_setzero_si512(), eight = _mm512_set1_epi8(8);
    const __m512i i01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i i23 = _mm512_add_epi32(i01, _mm512_set1_epi32(2));
    __m512 accs[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                      _mm512_setzero_ps()};
#pragma GCC unroll 1
    for (int k = 0; k < nr; k++) {
        const block_q4_0 *x = (const block_q4_0 *)((const char *)w + (size_t)k * ws);
        __m512 acc = _mm512_setzero_ps();
        for (int64_t i = 0; i < nb4; i += 4) {
            x86_prefetch_step(x + i, 4 * sizeof *x);
            __m512i p0, p1;
            __m128 dy;
            if (EXP) {
                const q8_act *g = ya + i / 4;
                dy = g->d;
                p0 = _mm512_dpbusd_epi32(g->c[0], q4_0_pair(x + i), g->y[0]);
                p1 = _mm512_dpbusd_epi32(g->c[1], q4_0_pair(x + i + 2), g->y[1]);
            } else {
                dy = q8_0_scales4(y + i);
                __m512i y0 = ld2x256(y[i].qs, y[i + 1].qs), y1 = ld2x256(y[i + 2].qs, y[i + 3].qs);
                p0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q4_0_pair(x + i), y0),
                                      _mm512_dpbusd_epi32(z, eight, y0));
                p1 = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, q4_0_pair(x + i + 2), y1),
                                      _mm512_dpbusd_epi32(z, eight, y1));
            }
            __m512 d4 = _mm512_castps128_ps512(_mm_mul_ps(q4_0_scales4(x + i), dy));
            acc = _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, d4), _mm512_cvtepi32_ps(p0), acc);
            acc = _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, d4), _mm512_cvtepi32_ps(p1), acc);
        }
        accs[k & 3] = acc;
        if ((k & 3) == 3 || k == nr - 1) {
            store4(out, k, reduce4(accs));
            if (nb4 < nb) /* the last blocks, as q4_0_tile adds them */
                for (int r = k - (k & 3); r <= k; r++)
                    out[r] += dot_q4_0(32 * (nb - nb4),
                                       (const block_q4_0 *)((const char *)w + (size_t)r * ws) + nb4,
                                       y + nb4);
        }
    }
}

static void q4_0_rows(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    const block_q8_0 *y = a;
    x86_prefetch_head(w, ws, nr);
    if (n > Q8_EXP_MAX) {
        q4_0_rows_impl(0, n, w, ws, nr, y, NULL, out);
        return;
    }
    q8_act ya[Q8_EXP_MAX / 128];
    const __m512i z = _mm512_setzero_si512(), eight = _mm512_set1_epi8(8);
    for (int64_t i = 0; i + 4 <= n / 32; i += 4) {
        q8_act *g = &ya[i / 4];
        g->d = q8_0_scales4(y + i);
        for (int h = 0; h < 2; h++) {
            g->y[h] = ld2x256(y[i + 2 * h].qs, y[i + 2 * h + 1].qs);
            g->c[h] = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, eight, g->y[h]));
        }
    }
    q4_0_rows_impl(1, n, w, ws, nr, y, ya, out);
}

void kn_gemv_avx512_fill(kn_traits *tab)
{
    tab[VT_TYPE_Q4_K].vec_dot_rows = q4_K_rows;
    tab[VT_TYPE_Q5_K].vec_dot_rows = q5_K_rows;
    tab[VT_TYPE_Q6_K].vec_dot_rows = q6_K_rows;
    tab[VT_TYPE_Q8_0].vec_dot_rows = q8_0_rows;
    tab[VT_TYPE_Q4_0].vec_dot_rows = q4_0_rows;
}
