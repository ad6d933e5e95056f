/*
 * amx.c - the AMX level: Intel AMX int8 tiles for the GEMM of prefill and
 * batched decode (Q8_0, Q4_K and Q6_K weights), and the AVX-512 kernels with
 * the same numerics for everything else of those types (decode's
 * vec_dot_rows, vec_dot, the gemm of two or three tokens). The numerics are
 * the canonical ones of quants_canon.c: exact integer sums per block, then
 * one fused multiply-add per block into one of eight chains (block % 8),
 * the chains added up in a fixed tree. Every kernel here gives the bits of
 * kn_canon_dot_*; the other types keep the AVX-512 level's kernels.
 *
 * Q8_0, Q4_K and Q6_K have these numerics at the AVX-512 level too
 * (kn_vnni_fill): their decode GEMV and gemm are the ones here, and prefill
 * and batched decode run vnni_gemm, an outer product over the same packed
 * activations with vpdpbusd instead of the tiles (Zen 4, Q4_K: about 7
 * cycles per row, token and super-block, where the AVX-512 level's per-lane
 * numerics needed 12.7).
 *
 * A tile product C[16 x 16] += A[16 x 64] . B[64 x 16] does 16,384 int8
 * multiply-adds in about 13 cycles, twenty times vpdpbusd; what costs is
 * what surrounds it: the float work per block, and for the K-quants the
 * decoding of the weights. The weights are the A side, read in place (Q8_0:
 * the 32 quants of a block are 32 bytes at a fixed stride) or decoded into
 * L1 once per TOK_CHUNK groups of tokens (K-quants); the activations are
 * the B side, packed once per multiplication into the tiles' layout
 * (kn_matmul calls `pack` for each group of 16 tokens).
 *
 * The K-quants fold their sub-block scales into the weights so that a whole
 * super-block sums in the tiles. Q4_K (6-bit scales): sc = 8 sh + sl (sl, sh
 * < 8), A_lo = q sl, A_hi = q sh (both < 128, a lookup of the nibble in a
 * 16-byte table), isum = C_lo + 8 C_hi; its mins term sum_j m_j bsum_j is a
 * short vpdpwssd per row against the packed sub-block sums. Q6_K (signed
 * 8-bit scales, u = q + 32 < 64): the scale's base-4 digits, four tile
 * products per chunk (see k6_decode16), the -32 offset through the bsums.
 *
 * Packed activations, per group of 16 tokens (missing tokens are zeros):
 *   Q8_0: per block: B tile (8 rows x 64 bytes: row k4 holds bytes 4k4..4k4+3
 *         of each token's 32 quants), then the 16 scales as floats.
 *   Q4_K: per super-block: four B tiles (16 x 64: bytes 64c + 4k4.. of each
 *         token), the 16 scales, then four vectors of the sub-block sums in
 *         pairs (lane t: S_2k | S_2k+1 << 16, S_j = bsums[2j] + bsums[2j+1]).
 *   Q6_K: the same four B tiles and scales, then eight vectors of the bsums
 *         in pairs.
 *
 * Linux lends a process the tile registers only on request
 * (arch_prctl(ARCH_REQ_XCOMP_PERM)); kn_amx_usable asks, once.
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/quants_avx512.h"
#include "util/util.h"

#ifndef ARCH_REQ_XCOMP_PERM
#define ARCH_REQ_XCOMP_PERM 0x1023
#endif
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette, start;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_cfg;

bool kn_amx_usable(void)
{
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* Pairwise sums of adjacent int32 lanes of a then b: lane i of the result is
 * (a:b)[2i] + (a:b)[2i+1]. Four levels of it turn sixteen vectors of
 * per-row partial sums into one vector of row sums. */
static inline __m512i pair_sum(__m512i a, __m512i b)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_add_epi32(_mm512_permutex2var_epi32(a, ev, b), _mm512_permutex2var_epi32(a, od, b));
}

/* ---- Q8_0 ----------------------------------------------------------------- */

/* ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)) of the eight lanes. */
static inline float hsum8_tree(__m256 v)
{
    __m256 t = _mm256_add_ps(v, _mm256_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
    t = _mm256_add_ps(t, _mm256_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1)));
}

/* Decode: each row on its own (no state between rows), eight blocks per
 * step: their exact sums ((y + 128) * x - 128 * x, vpdpbusd wanting one
 * unsigned operand) reduced to one lane per block (pair_sum), then one
 * fused multiply-add into the eight chains. dy: the activation scales as
 * floats, yu: the activations + 128, both padded with zeros to a multiple
 * of eight blocks. nt (1..ROWS_NT) tokens at once, out[t * os]: the row's
 * weights are loaded and their 128 x sums made once for all of them, and
 * each token's result has the bits of a pass of its own. */
#define ROWS_NT 4

static ALWAYS_INLINE void q8_0_row_n(const int nt, int64_t nb, const block_q8_0 *x,
                                     const float *const *dy, const int8_t *const *yu, float *out,
                                     size_t os)
{
    const __m512i z = _mm512_setzero_si512(), c80 = _mm512_set1_epi8((char)0x80);
    __m256 acc[ROWS_NT];
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b += 8) {
        const int nv = nb - b < 8 ? (int)(nb - b) : 8;
        __m512i xq[4], cx[4];
        _Alignas(32) float dx[8] = {0}; /* the scales one by one: no gather (as q4_K_row) */
        for (int i = 0; i < nv; i++)
            dx[i] = _cvtsh_ss(x[b + i].d);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            const int i = 2 * p;
            x86_prefetch_step(x + b + i, 2 * sizeof(block_q8_0));
            xq[p] = i + 1 < nv ? ld2x256(x[b + i].qs, x[b + i + 1].qs)
                    : i < nv   ? _mm512_castsi256_si512(ld256(x[b + i].qs))
                               : z;
            cx[p] = _mm512_dpbusd_epi32(z, c80, xq[p]);
        }
        const __m256 dxv = _mm256_load_ps(dx);
        for (int t = 0; t < nt; t++) {
            __m512i v[4];
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++)
                v[p] = _mm512_sub_epi32(
                    _mm512_dpbusd_epi32(z, _mm512_loadu_si512(yu[t] + 32 * (b + 2 * p)), xq[p]),
                    cx[p]);
            __m512i q = pair_sum(pair_sum(pair_sum(v[0], v[1]), pair_sum(v[2], v[3])), z);
            __m256 d = _mm256_mul_ps(dxv, _mm256_loadu_ps(dy[t] + b));
            acc[t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm512_castsi512_si256(q)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[(size_t)t * os] = hsum8_tree(acc[t]);
}

static float q8_0_row(int64_t nb, const block_q8_0 *x, const float *dy, const int8_t *yu)
{
    float r;
    q8_0_row_n(1, nb, x, &dy, &yu, &r, 0);
    return r;
}

/* The activation side of q8_0_row for nb blocks, in caller buffers of
 * (nb + 7) / 8 * 8 floats and as many 32-byte blocks. */
static void q8_0_act(int64_t nb, const block_q8_0 *y, float *dy, int8_t *yu)
{
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
    int64_t b = 0;
    for (; b < nb; b++) {
        dy[b] = _cvtsh_ss(y[b].d);
        _mm256_storeu_si256((__m256i *)(yu + 32 * b), _mm256_xor_si256(ld256(y[b].qs), c80));
    }
    for (; b % 8; b++) {
        dy[b] = 0.0f;
        _mm256_storeu_si256((__m256i *)(yu + 32 * b), _mm256_setzero_si256());
    }
}

#define Q8_ACT_MAX 512 /* blocks kept on the stack (16,384 values); longer rows in pieces */

static void c_rows_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    const int64_t nb = n / 32;
    if (nb > Q8_ACT_MAX) { /* rare: a heap copy */
        float *dy = malloc(sizeof(float) * (size_t)(nb + 8));
        int8_t *yu = malloc((size_t)(nb + 8) * 32);
        if (dy && yu) {
            q8_0_act(nb, a, dy, yu);
            x86_prefetch_head(w, ws, nr);
            for (int r = 0; r < nr; r++)
                out[r] = q8_0_row(nb, (const block_q8_0 *)((const char *)w + (size_t)r * ws), dy, yu);
        } else { /* out of memory: the scalar definition */
            for (int r = 0; r < nr; r++)
                out[r] = kn_canon_dot_q8_0(n, (const char *)w + (size_t)r * ws, a);
        }
        free(dy);
        free(yu);
        return;
    }
    _Alignas(64) float dy[Q8_ACT_MAX + 8];
    _Alignas(64) int8_t yu[(Q8_ACT_MAX + 8) * 32];
    q8_0_act(nb, a, dy, yu);
    x86_prefetch_head(w, ws, nr);
    for (int r = 0; r < nr; r++)
        out[r] = q8_0_row(nb, (const block_q8_0 *)((const char *)w + (size_t)r * ws), dy, yu);
}

static float c_dot_q8_0(int64_t n, const void *w, const void *a)
{
    float r;
    c_rows_q8_0(n, w, 0, 1, a, &r);
    return r;
}

/* The few-token GEMM (kn_matmul packs from PACK_MIN_TOK tokens up): up to
 * ROWS_NT tokens per pass over the rows, each row's weights read once for
 * them (the experts of a mixture see one to three tokens each). */
#define ROW_N_SWITCH(k, call)                                                                      \
    switch (k) {                                                                                   \
    case 1: call(1); break;                                                                        \
    case 2: call(2); break;                                                                        \
    case 3: call(3); break;                                                                        \
    default: call(4); break;                                                                       \
    }

static void c_gemm_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                        int nt, float *out, size_t os)
{
    const int64_t nb = n / 32;
    if (nb > Q8_ACT_MAX) {
        for (int t = 0; t < nt; t++)
            c_rows_q8_0(n, w, ws, nr, (const char *)a + (size_t)t * as, out + (size_t)t * os);
        return;
    }
    _Alignas(64) float dyb[ROWS_NT][Q8_ACT_MAX + 8];
    _Alignas(64) int8_t yub[ROWS_NT][(Q8_ACT_MAX + 8) * 32];
    const float *dy[ROWS_NT];
    const int8_t *yu[ROWS_NT];
    for (int t0 = 0; t0 < nt; t0 += ROWS_NT) {
        const int k = nt - t0 < ROWS_NT ? nt - t0 : ROWS_NT;
        for (int t = 0; t < k; t++) {
            q8_0_act(nb, (const block_q8_0 *)((const char *)a + (size_t)(t0 + t) * as), dyb[t],
                     yub[t]);
            dy[t] = dyb[t];
            yu[t] = yub[t];
        }
        x86_prefetch_head(w, ws, nr);
        for (int r = 0; r < nr; r++) {
            const block_q8_0 *x = (const block_q8_0 *)((const char *)w + (size_t)r * ws);
            float *o = out + (size_t)t0 * os + r;
#define Q8_CALL(K) q8_0_row_n(K, nb, x, dy, yu, o, os)
            ROW_N_SWITCH(k, Q8_CALL)
#undef Q8_CALL
        }
    }
}

/* ---- Q4_K ----------------------------------------------------------------- */

/* The eight 6-bit scales (bytes 0-7 of *sc) and mins (of *m) of a
 * super-block, all at once: kn_k4_scale_min's layout in 32-bit words. */
static inline void k4_unpack(const block_q4_K *x, uint8_t sc[8], uint8_t m[8])
{
    uint32_t u[3], o[4];
    memcpy(u, x->scales, 12);
    o[0] = u[0] & 0x3f3f3f3f;                                              /* sc 0-3 */
    o[1] = (u[2] & 0x0f0f0f0f) | ((u[0] >> 6) & 0x03030303) << 4;          /* sc 4-7 */
    o[2] = u[1] & 0x3f3f3f3f;                                              /* m 0-3 */
    o[3] = ((u[2] >> 4) & 0x0f0f0f0f) | ((u[1] >> 6) & 0x03030303) << 4;   /* m 4-7 */
    memcpy(sc, o, 8);
    memcpy(m, o + 2, 8);
}

/* vpermw indices spreading int16 scale 2c over the low 256 bits (values
 * 0..31 of chunk c, the low nibbles) and 2c + 1 over the high 256 bits. */
static const short k4_pick[4][32] = {
#define KP(c)                                                                                      \
    {2 * c,     2 * c,     2 * c,     2 * c,     2 * c,     2 * c,     2 * c,     2 * c,             \
     2 * c,     2 * c,     2 * c,     2 * c,     2 * c,     2 * c,     2 * c,     2 * c,             \
     2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,         \
     2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1}
    KP(0), KP(1), KP(2), KP(3)
#undef KP
};

/* Decode, each row on its own: per super-block the integer sums in sixteen
 * lanes (vpmaddubsw, vpdpwssd against the spread scales) and the mins in
 * eight, eight super-blocks reduced to one lane each (pair_sum), then the
 * two fused multiply-adds into the eight chains. The scale products d_x d_y
 * of a super-block as one pair, kept in a small array (a gather of the
 * fp16 fields cost a third of the speed on Zen 4). */
static ALWAYS_INLINE void q4_K_row_n(const int nt, int64_t nb, const void *xv,
                                     const block_q8_K *const *y, float *out, size_t os)
{
    const uint8_t *x = xv;
    const __m512i m4 = _mm512_set1_epi8(0x0F), z = _mm512_setzero_si512();
    const __m512i shr4 = _mm512_inserti64x4(z, _mm256_set1_epi16(4), 1);
    __m256 acc[ROWS_NT];
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b += 8) {
        const int nv = nb - b < 8 ? (int)(nb - b) : 8;
        /* one token: the sums in vectors, reduced by the pair_sum tree;
         * more: each super-block's sums reduced at once (the same exact
         * integers, without holding eight vectors per token) */
        __m512i v[8], mv[4];
        _Alignas(32) int32_t isv[ROWS_NT][8], msv[ROWS_NT][8];
        _Alignas(32) float dd[ROWS_NT][8], dm[ROWS_NT][8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            __m256i mins = _mm256_setzero_si256();
            v[i] = z;
            for (int t = 0; t < nt; t++) {
                isv[t][i] = msv[t][i] = 0;
                dd[t][i] = dm[t][i] = 0.0f;
            }
            if (i < nv) {
                const uint8_t *xb = x + (size_t)(b + i) * sizeof(block_q4_K);
                x86_prefetch_step(xb, sizeof(block_q4_K));
                /* d, dmin, scales[12], qs[128] */
                const __m128 dxm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)ld_u32(xb)));
                __m128i sc8, mn8;
                k4_scales(xb + 4, &sc8, &mn8);
                const __m512i sc = _mm512_castsi128_si512(_mm_cvtepu8_epi16(sc8));
                __m512i q[4], s16[4];
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    q[c] = _mm512_and_si512(
                        _mm512_srlv_epi16(_mm512_broadcast_i64x4(ld256(xb + 16 + 32 * c)), shr4),
                        m4);
                    s16[c] = _mm512_permutexvar_epi16(_mm512_loadu_si512(k4_pick[c]), sc);
                }
#pragma GCC unroll 4
                for (int t = 0; t < nt; t++) {
                    const block_q8_K *yb = y[t] + b + i;
                    __m128 ddm = _mm_mul_ps(dxm, _mm_set1_ps(yb->d));
                    dd[t][i] = _mm_cvtss_f32(ddm);
                    dm[t][i] = _mm_cvtss_f32(_mm_movehdup_ps(ddm));
                    mins = k4_mins_dot(mn8, yb->bsums);
                    __m512i vt = z;
#pragma GCC unroll 4
                    for (int c = 0; c < 4; c++) {
                        __m512i p = _mm512_maddubs_epi16(q[c], _mm512_loadu_si512(yb->qs + 64 * c));
                        vt = c ? _mm512_dpwssd_epi32(vt, p, s16[c]) : _mm512_madd_epi16(p, s16[c]);
                    }
                    if (nt == 1) {
                        v[i] = vt;
                    } else {
                        isv[t][i] = _mm512_reduce_add_epi32(vt);
                        msv[t][i] = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(mins));
                    }
                }
            }
            if (nt == 1)
                mv[i / 2] = i & 1 ? _mm512_inserti64x4(mv[i / 2], mins, 1)
                                  : _mm512_castsi256_si512(mins);
        }
        for (int t = 0; t < nt; t++) {
            __m256i is, ms;
            if (nt == 1) {
                __m512i iv = pair_sum(pair_sum(pair_sum(v[0], v[1]), pair_sum(v[2], v[3])),
                                      pair_sum(pair_sum(v[4], v[5]), pair_sum(v[6], v[7])));
                __m512i mw = pair_sum(pair_sum(mv[0], mv[1]), pair_sum(mv[2], mv[3]));
                is = _mm512_castsi512_si256(pair_sum(iv, z));
                ms = _mm512_castsi512_si256(pair_sum(mw, z));
            } else {
                is = _mm256_load_si256((const __m256i *)isv[t]);
                ms = _mm256_load_si256((const __m256i *)msv[t]);
            }
            acc[t] = _mm256_fmadd_ps(_mm256_load_ps(dd[t]), _mm256_cvtepi32_ps(is), acc[t]);
            acc[t] = _mm256_fnmadd_ps(_mm256_load_ps(dm[t]), _mm256_cvtepi32_ps(ms), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[(size_t)t * os] = hsum8_tree(acc[t]);
}

static float q4_K_row(int64_t nb, const void *xv, const block_q8_K *y)
{
    float r;
    q4_K_row_n(1, nb, xv, &y, &r, 0);
    return r;
}

/* The decode GEMV of a K-quant: row(...) for each row (the rows read the
 * activation scales from the blocks themselves). */
typedef float (*k_row_fn)(int64_t nb, const void *x, const block_q8_K *y);

static void k_rows(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out,
                   k_row_fn row)
{
    x86_prefetch_head(w, ws, nr);
    for (int r = 0; r < nr; r++)
        out[r] = row(n / 256, (const char *)w + (size_t)r * ws, a);
}

static void c_rows_q4_K(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    k_rows(n, w, ws, nr, a, out, q4_K_row);
}

static float c_dot_q4_K(int64_t n, const void *w, const void *a)
{
    float r;
    c_rows_q4_K(n, w, 0, 1, a, &r);
    return r;
}

/* The K-quants' few-token GEMM, as c_gemm_q8_0's. */
#define K_GEMM(T)                                                                                  \
    static void c_gemm_##T(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,  \
                           int nt, float *out, size_t os)                                          \
    {                                                                                              \
        const block_q8_K *y[ROWS_NT];                                                              \
        for (int t0 = 0; t0 < nt; t0 += ROWS_NT) {                                                 \
            const int k = nt - t0 < ROWS_NT ? nt - t0 : ROWS_NT;                                   \
            for (int t = 0; t < k; t++)                                                            \
                y[t] = (const block_q8_K *)((const char *)a + (size_t)(t0 + t) * as);              \
            x86_prefetch_head(w, ws, nr);                                                          \
            for (int r = 0; r < nr; r++) {                                                         \
                const char *x = (const char *)w + (size_t)r * ws;                                  \
                float *o = out + (size_t)t0 * os + r;                                              \
                ROW_N_SWITCH(k, T##_CALL)                                                          \
            }                                                                                      \
        }                                                                                          \
    }
#define q4_K_CALL(K) q4_K_row_n(K, n / 256, x, y, o, os)
K_GEMM(q4_K)

/* ---- packing the activations ---------------------------------------------- */

static size_t pack_size_q8_0(int64_t n)
{
    return (size_t)(n / 32) * (512 + 64);
}

/* Q8_0's packing; with sums (the VNNI kernel's, Q8V_PACK bytes a block)
 * also 128 times each token's sum of quants (vpdpbusd takes the weights
 * + 128, unsigned, and this takes the 128 back). Paired (the VNNI kernel's
 * groups of at most eight tokens, see VK_PAIR): four-byte groups 2j and
 * 2j + 1 of token t side by side, lanes 2t and 2t + 1 of vector j. */
#define Q8V_PACK (512 + 64 + 64)

static void pack_q8(int64_t n, const void *a, size_t as, int nt, void *dst, bool sums)
{
    const bool paired = sums && nt <= 8;
    char *p = dst;
    for (int64_t b = 0; b < n / 32; b++, p += sums ? Q8V_PACK : 576) {
        int32_t *bt = (int32_t *)p;
        float *dy = (float *)(p + 512);
        int32_t *sy = (int32_t *)(p + 576);
        for (int t = 0; t < 16; t++) {
            const block_q8_0 *y =
                t < nt ? (const block_q8_0 *)((const char *)a + (size_t)t * as) + b : NULL;
            int32_t sum = 0;
            for (int k = 0; k < 8; k++) {
                int32_t v = 0;
                if (y)
                    memcpy(&v, y->qs + 4 * k, 4);
                if (!paired)
                    bt[k * 16 + t] = v;
                else if (t < 8)
                    bt[(k / 2) * 16 + 2 * t + k % 2] = v;
            }
            for (int i = 0; sums && y && i < 32; i++)
                sum += y->qs[i];
            dy[t] = y ? _cvtsh_ss(y->d) : 0.0f;
            if (sums)
                sy[t] = 128 * sum;
        }
    }
}

static void pack_q8_0(int64_t n, const void *a, size_t as, int nt, void *dst)
{
    pack_q8(n, a, as, nt, dst, false);
}

#define K4_PACK 4416 /* 4 x 1024 B tiles, 64 scales, 256 sums */
#define K6_PACK 4672 /* 4 x 1024 B tiles, 64 scales, 512 sums */

static size_t pack_size_q4_K(int64_t n)
{
    return (size_t)(n / 256) * K4_PACK;
}

/* The K-quants' packing (Q4_K: q6 false; Q6_K: true, see K6_PACK): the four
 * B tiles, the scales, then the sums: Q4_K four vectors of sub-block sums
 * in pairs, Q6_K the sixteen bsums in pairs. Paired (the VNNI kernel's
 * groups of at most eight tokens): the quants as pack_q8's paired ones, and
 * token t's sums in lane 2t (2t + 1 zero). */
static void pack_k(int64_t n, const void *a, size_t as, int nt, void *dst, bool q6, bool paired)
{
    const size_t stride = q6 ? K6_PACK : K4_PACK;
    char *p = dst;
    for (int64_t b = 0; b < n / 256; b++, p += stride) {
        int32_t *bt = (int32_t *)p;
        float *dy = (float *)(p + 4096);
        int32_t *sp = (int32_t *)(p + 4096 + 64);
        for (int t = 0; t < 16; t++) {
            const block_q8_K *y =
                t < nt ? (const block_q8_K *)((const char *)a + (size_t)t * as) + b : NULL;
            for (int k = 0; k < 64; k++) { /* tile c = k / 16, row k % 16 */
                int32_t v = 0;
                if (y)
                    memcpy(&v, y->qs + 4 * k, 4);
                if (!paired)
                    bt[(k / 16) * 256 + (k % 16) * 16 + t] = v;
                else if (t < 8)
                    bt[(k / 2) * 16 + 2 * t + k % 2] = v;
            }
            dy[t] = y ? y->d : 0.0f;
            for (int k = 0; k < (q6 ? 8 : 4); k++) {
                int32_t lo = 0, hi = 0;
                if (y && q6) {
                    lo = y->bsums[2 * k];
                    hi = y->bsums[2 * k + 1];
                } else if (y) {
                    lo = y->bsums[4 * k] + y->bsums[4 * k + 1];
                    hi = y->bsums[4 * k + 2] + y->bsums[4 * k + 3];
                }
                const int32_t v = (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)hi << 16);
                if (!paired)
                    sp[k * 16 + t] = v;
                else if (t < 8) { /* the pair's odd lane 0 */
                    sp[k * 16 + 2 * t] = v;
                    sp[k * 16 + 2 * t + 1] = 0;
                }
            }
        }
    }
}

static void pack_q4_K(int64_t n, const void *a, size_t as, int nt, void *dst)
{
    pack_k(n, a, as, nt, dst, false, false);
}

static void pack_q4_Kv(int64_t n, const void *a, size_t as, int nt, void *dst)
{
    pack_k(n, a, as, nt, dst, false, nt <= 8);
}

/* ---- the tiles -------------------------------------------------------------- */

/* acc[r] (16 tokens) of rows r0..r0+15 to out[t * os + r0 + r] for t < nt. */
static void store_acc(const float acc[16][16], float *out, size_t os, int nt)
{
    const __m512i col = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15),
                                           _mm512_set1_epi32(16));
    for (int t = 0; t < nt; t++) /* column t of acc: one gather */
        _mm512_storeu_ps(out + (size_t)t * os, _mm512_i32gather_ps(col, &acc[0][t], 4));
}

/* Row r of tile k of the eight chains, added up as hsum8_tree adds lanes. */
#define chains_sum(acc, k, r)                                                                      \
    _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_load_ps(acc[0][k][r]),                        \
                                              _mm512_load_ps(acc[1][k][r])),                       \
                                _mm512_add_ps(_mm512_load_ps(acc[2][k][r]),                        \
                                              _mm512_load_ps(acc[3][k][r]))),                      \
                  _mm512_add_ps(_mm512_add_ps(_mm512_load_ps(acc[4][k][r]),                        \
                                              _mm512_load_ps(acc[5][k][r])),                       \
                                _mm512_add_ps(_mm512_load_ps(acc[6][k][r]),                        \
                                              _mm512_load_ps(acc[7][k][r]))))

#define TOK_CHUNK 8 /* Q4_K: token groups (of 16) per decoding of a row group's weights */

/* All eight tiles 16 rows x 64 bytes (the K-quants' shapes). */
static void config_square_tiles(void)
{
    tile_cfg cfg = {.palette = 1};
    for (int i = 0; i < 8; i++)
        cfg.rows[i] = 16, cfg.colsb[i] = 64;
    _tile_loadconfig(&cfg);
}

/* The token groups g0..g0+gn of a pass: their chains added up, into out
 * (the row group's first output). */
static void store_pass(float (*acc)[TOK_CHUNK][16][16], int g0, int gn, int nt, float *out,
                       size_t os)
{
    _Alignas(64) float res[16][16];
    for (int g = 0; g < gn; g++) {
        for (int r = 0; r < 16; r++)
            _mm512_store_ps(res[r], chains_sum(acc, g, r));
        int t0 = 16 * (g0 + g), tn = nt - t0 < 16 ? nt - t0 : 16;
        store_acc(res, out + (size_t)t0 * os, os, tn);
    }
}

/* Rows r0..nr (fewer than a tile): one decode GEMV of the level per token. */
typedef void (*rows_fn)(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out);

static void tail_rows(rows_fn rows, int64_t n, const void *w, size_t ws, int r0, int nr,
                      const void *a, size_t as, int nt, float *out, size_t os)
{
    if (r0 < nr)
        for (int t = 0; t < nt; t++)
            rows(n, (const char *)w + (size_t)r0 * ws, ws, nr - r0,
                 (const char *)a + (size_t)t * as, out + (size_t)t * os + r0);
}

/* Q8_0: tiles 0-3 C (two row groups x two token groups), 4-5 A (16 rows x
 * 32 bytes, straight from the weights), 6-7 B (8 x 64). */
static void amx_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                     const void *pk, int nt, float *out, size_t os)
{
    tile_cfg cfg = {.palette = 1};
    for (int i = 0; i < 4; i++)
        cfg.rows[i] = 16, cfg.colsb[i] = 64;
    cfg.rows[4] = cfg.rows[5] = 16, cfg.colsb[4] = cfg.colsb[5] = 32;
    cfg.rows[6] = cfg.rows[7] = 8, cfg.colsb[6] = cfg.colsb[7] = 64;
    _tile_loadconfig(&cfg);
    const int64_t nb = n / 32;
    const size_t gsz = pack_size_q8_0(n);
    const int ng = (nt + 15) / 16;
    const __m512i off = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                                             12, 13, 14, 15),
                                           _mm512_set1_epi32((int)ws));
    _Alignas(64) int32_t cb[4][16][16];
    _Alignas(64) float acc[8][4][16][16], dxs[2][16]; /* the eight chains (block % 8) */
    _Alignas(64) float res[16][16];
    int r0 = 0, R;
    for (; r0 + 16 <= nr; r0 += 16 * R) {
        R = r0 + 32 <= nr ? 2 : 1; /* row groups of 16 in this pass */
        const char *wr = (const char *)w + (size_t)r0 * ws;
        for (int g = 0; g < ng; g += 2) {
            const int G = g + 2 <= ng ? 2 : 1;
            memset(acc, 0, sizeof acc);
            for (int64_t b = 0; b < nb; b++) {
                const char *wb = wr + (size_t)b * sizeof(block_q8_0);
                if (g == 0 && b % 2 == 0) /* each row 8 blocks ahead (see prefetch_sb) */
                    for (int r = 0; r < 16 * R; r++)
                        _mm_prefetch((const char *)((uintptr_t)wb + (size_t)r * ws + 8 * 34),
                                     _MM_HINT_T0);
                for (int i = 0; i < R; i++) {
                    __m512i dh = _mm512_i32gather_epi32(off, wb + (size_t)(16 * i) * ws, 1);
                    _mm512_store_ps(dxs[i], _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dh)));
                }
                const char *p0 = (const char *)pk + (size_t)g * gsz + (size_t)b * 576;
                _tile_loadd(6, p0, 64);
                if (G == 2)
                    _tile_loadd(7, p0 + gsz, 64);
                _tile_loadd(4, wb + 2, (long)ws);
                if (R == 2)
                    _tile_loadd(5, wb + 2 + 16 * ws, (long)ws);
                _tile_zero(0);
                _tile_dpbssd(0, 4, 6);
                _tile_stored(0, cb[0], 64);
                if (G == 2) {
                    _tile_zero(1);
                    _tile_dpbssd(1, 4, 7);
                    _tile_stored(1, cb[1], 64);
                }
                if (R == 2) {
                    _tile_zero(2);
                    _tile_dpbssd(2, 5, 6);
                    _tile_stored(2, cb[2], 64);
                    if (G == 2) {
                        _tile_zero(3);
                        _tile_dpbssd(3, 5, 7);
                        _tile_stored(3, cb[3], 64);
                    }
                }
                float(*ch)[16][16] = acc[b & 7];
                for (int i = 0; i < R; i++)
                    for (int j = 0; j < G; j++) {
                        const int k = 2 * i + j;
                        __m512 dy = _mm512_loadu_ps(p0 + (size_t)j * gsz + 512);
                        for (int r = 0; r < 16; r++) {
                            __m512 d = _mm512_mul_ps(_mm512_set1_ps(dxs[i][r]), dy);
                            __m512 c = _mm512_cvtepi32_ps(_mm512_load_si512(cb[k][r]));
                            _mm512_store_ps(ch[k][r],
                                            _mm512_fmadd_ps(d, c, _mm512_load_ps(ch[k][r])));
                        }
                    }
            }
            for (int i = 0; i < R; i++)
                for (int j = 0; j < G; j++) {
                    const int k = 2 * i + j;
                    for (int r = 0; r < 16; r++)
                        _mm512_store_ps(res[r], chains_sum(acc, k, r));
                    int t0 = 16 * (g + j), tn = nt - t0 < 16 ? nt - t0 : 16;
                    store_acc(res, out + (size_t)t0 * os + r0 + 16 * i, os, tn);
                }
        }
    }
    _tile_release();
    tail_rows(c_rows_q8_0, n, w, ws, r0, nr, a, as, nt, out, os);
}

/* Q4_K: one row group of 16 at a time; its super-block decoded into A
 * tiles (four chunks of 64 weights, lo and hi) once per pass over up to
 * TOK_CHUNK token groups. Tiles 0-3 C (lo, hi x two token groups), 4-5 A
 * (lo, hi), 6-7 B. */
static const uint8_t mul_tab[8][16] = {
#define MT(s)                                                                                      \
    {0 * s, 1 * s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s, 8 * s, 9 * s, 10 * s, 11 * s, 12 * s, \
     13 * s, 14 * s, 15 * s}
    MT(0), MT(1), MT(2), MT(3), MT(4), MT(5), MT(6), MT(7)
#undef MT
};

typedef struct {
    _Alignas(64) uint8_t a[4][2][16][64]; /* chunk, lo/hi, row, bytes */
    _Alignas(64) float d[16], dm[16];
    _Alignas(64) int32_t mp[16][4]; /* mins in pairs, per row */
} k4_decoded;

/* Decoding streams a group of gr rows (16 for the tiles) side by side, too
 * many streams for the hardware prefetchers when few tokens share the
 * weights (batched decode): each row's super-block PF_AHEAD ahead is
 * prefetched, or near a row's end the next row group's (rows + gr, from
 * its start). */
#define PF_AHEAD 2

static inline void prefetch_ahead(const char *w, size_t ws, int r, int gr, int64_t b,
                                  int64_t nsb, size_t bs, int64_t ahead)
{
    int64_t t = b + ahead;
    const char *p = t < nsb ? w + (size_t)r * ws + (size_t)t * bs
                            : w + (size_t)(r + gr) * ws + (size_t)(t - nsb) * bs;
    for (size_t o = 0; o < bs; o += 64) /* integer arithmetic: may lie past the weights */
        _mm_prefetch((const char *)((uintptr_t)p + o), _MM_HINT_T0);
}

static inline void prefetch_sb(const char *w, size_t ws, int r, int gr, int64_t b, int64_t nsb,
                               size_t bs)
{
    prefetch_ahead(w, ws, r, gr, b, nsb, bs, PF_AHEAD);
}

static void k4_decode16(const char *w, size_t ws, int64_t b, int64_t nsb, k4_decoded *o)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int r = 0; r < 16; r++) {
        prefetch_sb(w, ws, r, 16, b, nsb, sizeof(block_q4_K));
        const block_q4_K *x = (const block_q4_K *)(w + (size_t)r * ws) + b;
        uint8_t sc[8], m[8];
        k4_unpack(x, sc, m);
        o->d[r] = _cvtsh_ss(x->d);
        o->dm[r] = _cvtsh_ss(x->dmin);
        for (int k = 0; k < 4; k++)
            o->mp[r][k] = (int32_t)(m[2 * k] | (uint32_t)m[2 * k + 1] << 16);
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c));
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, m4)),
                                           _mm256_and_si256(_mm256_srli_epi16(v, 4), m4), 1);
            const int j0 = 2 * c, j1 = 2 * c + 1;
            __m512i tl = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_broadcastsi128_si256(
                    _mm_loadu_si128((const __m128i *)mul_tab[sc[j0] & 7]))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mul_tab[sc[j1] & 7])),
                1);
            __m512i th = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_broadcastsi128_si256(
                    _mm_loadu_si128((const __m128i *)mul_tab[sc[j0] >> 3]))),
                _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mul_tab[sc[j1] >> 3])),
                1);
            _mm512_store_si512(o->a[c][0][r], _mm512_shuffle_epi8(tl, q));
            _mm512_store_si512(o->a[c][1][r], _mm512_shuffle_epi8(th, q));
        }
    }
}

static void amx_q4_K(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                     const void *pk, int nt, float *out, size_t os)
{
    config_square_tiles();
    const int64_t nsb = n / 256;
    const size_t gsz = pack_size_q4_K(n);
    const int ng = (nt + 15) / 16;
    k4_decoded dec;
    _Alignas(64) int32_t cb[4][16][16];
    _Alignas(64) float acc[8][TOK_CHUNK][16][16]; /* the eight chains (super-block % 8) */
    int r0 = 0;
    for (; r0 + 16 <= nr; r0 += 16) {
        const char *wr = (const char *)w + (size_t)r0 * ws;
        for (int g0 = 0; g0 < ng; g0 += TOK_CHUNK) {
            const int gn = ng - g0 < TOK_CHUNK ? ng - g0 : TOK_CHUNK;
            /* a chain's first super-block starts it from zero (the fused
             * multiply-add with a zero register, as with a zeroed chain);
             * only chains no super-block reaches are cleared */
            for (int k = (int)(nsb < 8 ? nsb : 8); k < 8; k++)
                memset(acc[k], 0, sizeof(acc[k][0]) * (size_t)gn);
            for (int64_t b = 0; b < nsb; b++) {
                k4_decode16(wr, ws, b, nsb, &dec);
                for (int g = 0; g < gn; g += 2) {
                    const int G = g + 2 <= gn ? 2 : 1;
                    const char *p0 = (const char *)pk + (size_t)(g0 + g) * gsz + (size_t)b * K4_PACK;
                    _tile_zero(0);
                    _tile_zero(1);
                    if (G == 2) {
                        _tile_zero(2);
                        _tile_zero(3);
                    }
                    for (int c = 0; c < 4; c++) {
                        _tile_loadd(4, dec.a[c][0], 64);
                        _tile_loadd(5, dec.a[c][1], 64);
                        _tile_loadd(6, p0 + 1024 * c, 64);
                        _tile_dpbusd(0, 4, 6);
                        _tile_dpbusd(1, 5, 6);
                        if (G == 2) {
                            _tile_loadd(7, p0 + gsz + 1024 * c, 64);
                            _tile_dpbusd(2, 4, 7);
                            _tile_dpbusd(3, 5, 7);
                        }
                    }
                    _tile_stored(0, cb[0], 64);
                    _tile_stored(1, cb[1], 64);
                    if (G == 2) {
                        _tile_stored(2, cb[2], 64);
                        _tile_stored(3, cb[3], 64);
                    }
                    for (int j = 0; j < G; j++) {
                        const char *pj = p0 + (size_t)j * gsz;
                        const __m512 dy = _mm512_loadu_ps(pj + 4096);
                        const __m512i s0 = _mm512_loadu_si512(pj + 4160),
                                      s1 = _mm512_loadu_si512(pj + 4160 + 64),
                                      s2 = _mm512_loadu_si512(pj + 4160 + 128),
                                      s3 = _mm512_loadu_si512(pj + 4160 + 192);
                        float(*ac)[16] = acc[b & 7][g + j];
                        for (int r = 0; r < 16; r++) {
                            __m512i ci = _mm512_add_epi32(
                                _mm512_load_si512(cb[2 * j][r]),
                                _mm512_slli_epi32(_mm512_load_si512(cb[2 * j + 1][r]), 3));
                            __m512i mi = _mm512_dpwssd_epi32(_mm512_setzero_si512(),
                                                             _mm512_set1_epi32(dec.mp[r][0]), s0);
                            mi = _mm512_dpwssd_epi32(mi, _mm512_set1_epi32(dec.mp[r][1]), s1);
                            mi = _mm512_dpwssd_epi32(mi, _mm512_set1_epi32(dec.mp[r][2]), s2);
                            mi = _mm512_dpwssd_epi32(mi, _mm512_set1_epi32(dec.mp[r][3]), s3);
                            __m512 d = _mm512_mul_ps(_mm512_set1_ps(dec.d[r]), dy);
                            __m512 dm = _mm512_mul_ps(_mm512_set1_ps(dec.dm[r]), dy);
                            __m512 v = _mm512_fmadd_ps(
                                d, _mm512_cvtepi32_ps(ci),
                                b < 8 ? _mm512_setzero_ps() : _mm512_load_ps(ac[r]));
                            _mm512_store_ps(ac[r], _mm512_fnmadd_ps(dm, _mm512_cvtepi32_ps(mi), v));
                        }
                    }
                }
            }
            store_pass(acc, g0, gn, nt, out + r0, os);
        }
    }
    _tile_release();
    tail_rows(c_rows_q4_K, n, w, ws, r0, nr, a, as, nt, out, os);
}

/* ---- Q6_K ------------------------------------------------------------------- */

/* Decode, each row on its own, as q4_K_row: the exact isum of a super-block
 * in sixteen lanes (the -32 offset through the activations' bsums), eight
 * super-blocks reduced to a lane each, one fused multiply-add per chain. */
static ALWAYS_INLINE void q6_K_row_n(const int nt, int64_t nb, const void *xv,
                                     const block_q8_K *const *y, float *out, size_t os)
{
    const block_q6_K *x = xv;
    const __m512i z = _mm512_setzero_si512();
    __m512i perm[4];
    k6_perms(perm);
    __m256 acc[ROWS_NT];
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b += 8) {
        const int nv = nb - b < 8 ? (int)(nb - b) : 8;
        __m512i v[ROWS_NT][8];
        _Alignas(32) float dd[ROWS_NT][8];
        for (int i = 0; i < 8; i++) {
            for (int t = 0; t < nt; t++) {
                v[t][i] = z;
                dd[t][i] = 0.0f;
            }
            if (i < nv) {
                const block_q6_K *xb = x + b + i;
                x86_prefetch_step(xb, sizeof(block_q6_K));
                /* k6_sumi with the weights' side done once */
                const __m256i sc16 = _mm256_cvtepi8_epi16(ld128(xb->scales));
                const __m512i sc = _mm512_castsi256_si512(sc16);
                __m512i q[4], s16[4];
                k6_half(xb, 0, &q[0], &q[1]);
                k6_half(xb, 1, &q[2], &q[3]);
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++)
                    s16[j] = _mm512_permutexvar_epi16(perm[j], sc);
                const float dx = _cvtsh_ss(xb->d);
                for (int t = 0; t < nt; t++) {
                    const block_q8_K *yb = y[t] + b + i;
                    __m256i off = _mm256_madd_epi16(sc16, ld256(yb->bsums));
                    __m512i sumi = _mm512_sub_epi32(
                        z, _mm512_zextsi256_si512(_mm256_slli_epi32(off, 5)));
#pragma GCC unroll 4
                    for (int j = 0; j < 4; j++)
                        sumi = _mm512_dpwssd_epi32(
                            sumi, _mm512_maddubs_epi16(q[j], _mm512_loadu_si512(yb->qs + 64 * j)),
                            s16[j]);
                    v[t][i] = sumi;
                    dd[t][i] = dx * yb->d; /* as q4_K_row: no gather */
                }
            }
        }
        for (int t = 0; t < nt; t++) {
            __m512i is = pair_sum(pair_sum(pair_sum(v[t][0], v[t][1]), pair_sum(v[t][2], v[t][3])),
                                  pair_sum(pair_sum(v[t][4], v[t][5]), pair_sum(v[t][6], v[t][7])));
            is = pair_sum(is, z);
            acc[t] = _mm256_fmadd_ps(_mm256_load_ps(dd[t]),
                                     _mm256_cvtepi32_ps(_mm512_castsi512_si256(is)), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[(size_t)t * os] = hsum8_tree(acc[t]);
}

static float q6_K_row(int64_t nb, const void *xv, const block_q8_K *y)
{
    float r;
    q6_K_row_n(1, nb, xv, &y, &r, 0);
    return r;
}

static void c_rows_q6_K(int64_t n, const void *w, size_t ws, int nr, const void *a, float *out)
{
    k_rows(n, w, ws, nr, a, out, q6_K_row);
}

static float c_dot_q6_K(int64_t n, const void *w, const void *a)
{
    float r;
    c_rows_q6_K(n, w, 0, 1, a, &r);
    return r;
}

#define q6_K_CALL(K) q6_K_row_n(K, n / 256, x, y, o, os)
K_GEMM(q6_K)

static size_t pack_size_q6_K(int64_t n)
{
    return (size_t)(n / 256) * K6_PACK;
}

static void pack_q6_K(int64_t n, const void *a, size_t as, int nt, void *dst)
{
    pack_k(n, a, as, nt, dst, true, false);
}

static void pack_q6_Kv(int64_t n, const void *a, size_t as, int nt, void *dst)
{
    pack_k(n, a, as, nt, dst, true, nt <= 8);
}

/* A super-block of 16 rows as AMX tiles: the scales folded in by their
 * base-4 digits (sc = s0 + 4 s1 + 16 s2 + 64 s3, s0..s2 in 0..3, s3 in
 * -2..1), A_k = u * s_k (u = q + 32 < 64: at most 189, or -126..63 for
 * s3), so that sum_i u_i sc a_i = C0 + 4 C1 + 16 C2 + 64 C3 exactly. */
typedef struct {
    _Alignas(64) uint8_t a[4][4][16][64]; /* chunk, digit, row, bytes */
    _Alignas(64) float d[16];
    _Alignas(64) int32_t sp[16][8]; /* scales in pairs, per row */
} k6_decoded;

static void k6_decode16(const char *w, size_t ws, int64_t b, int64_t nsb, k6_decoded *o)
{
    __m512i idx[4]; /* chunk c: lane i all 4c + i */
    for (int c = 0; c < 4; c++)
        idx[c] = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_setr_m128i(_mm_set1_epi8((char)(4 * c)),
                                                     _mm_set1_epi8((char)(4 * c + 1)))),
            _mm256_setr_m128i(_mm_set1_epi8((char)(4 * c + 2)), _mm_set1_epi8((char)(4 * c + 3))),
            1);
    for (int r = 0; r < 16; r++) {
        prefetch_sb(w, ws, r, 16, b, nsb, sizeof(block_q6_K));
        const block_q6_K *x = (const block_q6_K *)(w + (size_t)r * ws) + b;
        o->d[r] = _cvtsh_ss(x->d);
        for (int k = 0; k < 8; k++)
            o->sp[r][k] = (int32_t)((uint32_t)(uint16_t)(int16_t)x->scales[2 * k] |
                                    (uint32_t)(uint16_t)(int16_t)x->scales[2 * k + 1] << 16);
        __m512i scb = _mm512_broadcast_i32x4(ld128(x->scales));
        for (int h = 0; h < 2; h++) {
            __m512i u[2];
            k6_half(x, h, &u[0], &u[1]);
            for (int e = 0; e < 2; e++) {
                const int c = 2 * h + e;
                __m512i s = _mm512_shuffle_epi8(scb, idx[c]), u2 = _mm512_add_epi8(u[e], u[e]);
                for (int k = 0; k < 4; k++) {
                    __mmask64 lo = _mm512_test_epi8_mask(s, _mm512_set1_epi8((char)(1 << (2 * k))));
                    __mmask64 hi = _mm512_test_epi8_mask(s, _mm512_set1_epi8((char)(2 << (2 * k))));
                    __m512i v = _mm512_maskz_mov_epi8(lo, u[e]);
                    v = k < 3 ? _mm512_mask_add_epi8(v, hi, v, u2) : _mm512_mask_sub_epi8(v, hi, v, u2);
                    _mm512_store_si512(o->a[c][k][r], v);
                }
            }
        }
    }
}

/* Tiles 0-3: C of the four digits (one token group at a time), 4: A, 6: B. */
static void amx_q6_K(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                     const void *pk, int nt, float *out, size_t os)
{
    config_square_tiles();
    const int64_t nsb = n / 256;
    const size_t gsz = pack_size_q6_K(n);
    const int ng = (nt + 15) / 16;
    k6_decoded dec;
    _Alignas(64) int32_t cb[4][16][16];
    _Alignas(64) float acc[8][TOK_CHUNK][16][16];
    int r0 = 0;
    for (; r0 + 16 <= nr; r0 += 16) {
        const char *wr = (const char *)w + (size_t)r0 * ws;
        for (int g0 = 0; g0 < ng; g0 += TOK_CHUNK) {
            const int gn = ng - g0 < TOK_CHUNK ? ng - g0 : TOK_CHUNK;
            for (int k = (int)(nsb < 8 ? nsb : 8); k < 8; k++) /* as for Q4_K */
                memset(acc[k], 0, sizeof(acc[k][0]) * (size_t)gn);
            for (int64_t b = 0; b < nsb; b++) {
                k6_decode16(wr, ws, b, nsb, &dec);
                for (int g = 0; g < gn; g++) {
                    const char *pg = (const char *)pk + (size_t)(g0 + g) * gsz + (size_t)b * K6_PACK;
                    _tile_zero(0);
                    _tile_zero(1);
                    _tile_zero(2);
                    _tile_zero(3);
                    for (int c = 0; c < 4; c++) {
                        _tile_loadd(6, pg + 1024 * c, 64);
                        _tile_loadd(4, dec.a[c][0], 64);
                        _tile_dpbusd(0, 4, 6);
                        _tile_loadd(5, dec.a[c][1], 64);
                        _tile_dpbusd(1, 5, 6);
                        _tile_loadd(4, dec.a[c][2], 64);
                        _tile_dpbusd(2, 4, 6);
                        _tile_loadd(5, dec.a[c][3], 64);
                        _tile_dpbssd(3, 5, 6);
                    }
                    _tile_stored(0, cb[0], 64);
                    _tile_stored(1, cb[1], 64);
                    _tile_stored(2, cb[2], 64);
                    _tile_stored(3, cb[3], 64);
                    const __m512 dy = _mm512_loadu_ps(pg + 4096);
                    const int32_t *sp = (const int32_t *)(pg + 4160);
                    float(*ac)[16] = acc[b & 7][g];
                    for (int r = 0; r < 16; r++) {
                        __m512i ci = _mm512_add_epi32(
                            _mm512_add_epi32(_mm512_load_si512(cb[0][r]),
                                             _mm512_slli_epi32(_mm512_load_si512(cb[1][r]), 2)),
                            _mm512_add_epi32(_mm512_slli_epi32(_mm512_load_si512(cb[2][r]), 4),
                                             _mm512_slli_epi32(_mm512_load_si512(cb[3][r]), 6)));
                        __m512i of = _mm512_setzero_si512();
                        for (int k = 0; k < 8; k++)
                            of = _mm512_dpwssd_epi32(of, _mm512_set1_epi32(dec.sp[r][k]),
                                                     _mm512_loadu_si512(sp + 16 * k));
                        ci = _mm512_sub_epi32(ci, _mm512_slli_epi32(of, 5));
                        __m512 d = _mm512_mul_ps(_mm512_set1_ps(dec.d[r]), dy);
                        _mm512_store_ps(
                            ac[r], _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(ci),
                                                   b < 8 ? _mm512_setzero_ps()
                                                         : _mm512_load_ps(ac[r])));
                    }
                }
            }
            store_pass(acc, g0, gn, nt, out + r0, os);
        }
    }
    _tile_release();
    tail_rows(c_rows_q6_K, n, w, ws, r0, nr, a, as, nt, out, os);
}

/* ---- Q8_0, Q4_K and Q6_K without the tiles: AVX-512 VNNI ------------------- */

/* The same numerics on a CPU with VNNI and no AMX (Zen 4): an outer product
 * over the packed activations. Lane t of a vector is token t of a group, so
 * a super-block's exact integer sums come out as one lane per token with no
 * horizontal sums: per group of four bytes k, one vpdpbusd of the row's
 * four weights (unsigned, broadcast) against the sixteen tokens' four
 * activations (the packed B tile row, the AMX layout: bytes 4k..4k+3 at
 * 64 k), into the sub-block's accumulator; the sub-block sums times their
 * scales make isum. Q4_K's mins term is the tiles' vpdpwssd against the
 * packed sub-block sums; Q6_K's -32 offset is 32 sum_j sc_j bsum_j, the
 * same vpdpwssd with the scales in pairs against the packed bsums. 64
 * vpdpbusd per row, super-block and sixteen tokens: Q4_K about 7 cycles per
 * row, token and super-block on Zen 4, where the per-lane numerics of the
 * AVX-512 level (vpmaddubsw + vpdpwssd per 64 values) took 12.7. VK_ROWS
 * rows share each activation load. */
#define VK_ROWS 4
#ifndef Q8_PF
#define Q8_PF 16
#endif
#ifndef VK_PF
#define VK_PF 2
#endif

typedef struct {
    _Alignas(64) uint8_t q[VK_ROWS][256]; /* the unsigned quants as bytes, in value order */
    int32_t sc[VK_ROWS][16];              /* the sub-block scales (Q4_K: 8) */
    int32_t mp[VK_ROWS][8];               /* Q4_K: mins in pairs (4); Q6_K: scales in pairs */
    float d[VK_ROWS], dm[VK_ROWS];
} vk_decoded;

static void vk_decode_q4(const char *w, size_t ws, int64_t b, int64_t nsb, vk_decoded *o)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int r = 0; r < VK_ROWS; r++) {
        prefetch_ahead(w, ws, r, VK_ROWS, b, nsb, sizeof(block_q4_K), VK_PF);
        const block_q4_K *x = (const block_q4_K *)(w + (size_t)r * ws) + b;
        uint8_t sc[8], m[8];
        k4_unpack(x, sc, m);
        _mm256_store_si256((__m256i *)o->sc[r], _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sc)));
        /* mins in pairs: m[2k] | m[2k + 1] << 16 */
        _mm_store_si128((__m128i *)o->mp[r], _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)m)));
        o->d[r] = _cvtsh_ss(x->d);
        o->dm[r] = _cvtsh_ss(x->dmin);
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * c));
            _mm256_store_si256((__m256i *)(o->q[r] + 64 * c), _mm256_and_si256(v, m4));
            _mm256_store_si256((__m256i *)(o->q[r] + 64 * c + 32),
                               _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        }
    }
}

/* Q6_K: u = ql nibble | two qh bits << 4 (0..63); value 128 h + 32 g + l
 * takes ql[64 h + l + 32 (g & 1)] (low nibble for g < 2) and qh[32 h + l]
 * bits 2g, 2g + 1. */
static void vk_decode_q6(const char *w, size_t ws, int64_t b, int64_t nsb, vk_decoded *o)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    for (int r = 0; r < VK_ROWS; r++) {
        prefetch_ahead(w, ws, r, VK_ROWS, b, nsb, sizeof(block_q6_K), VK_PF);
        const block_q6_K *x = (const block_q6_K *)(w + (size_t)r * ws) + b;
        const __m128i s8 = _mm_loadu_si128((const __m128i *)x->scales);
        _mm512_store_si512(o->sc[r], _mm512_cvtepi8_epi32(s8));
        /* scales in pairs: (uint16_t)sc[2k] | (uint16_t)sc[2k + 1] << 16 */
        _mm256_store_si256((__m256i *)o->mp[r], _mm256_cvtepi8_epi16(s8));
        o->d[r] = _cvtsh_ss(x->d);
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
            const __m256i hb = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
            uint8_t *q = o->q[r] + 128 * h;
            _mm256_store_si256((__m256i *)q, _mm256_or_si256(_mm256_and_si256(l0, m4),
                                                             _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30)));
            _mm256_store_si256((__m256i *)(q + 32),
                               _mm256_or_si256(_mm256_and_si256(l1, m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30)));
            _mm256_store_si256((__m256i *)(q + 64),
                               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                               _mm256_and_si256(hb, m30)));
            _mm256_store_si256((__m256i *)(q + 96),
                               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                               _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30)));
        }
    }
}

/* One super-block of VK_ROWS rows against one packed group p of sixteen
 * tokens: the chains ch[r] of its tokens take their fused multiply-adds
 * (W = 512, the one width instantiated; a group of at most eight tokens
 * takes VK_STEP_P below, the same bits per token). NSUB sub-blocks, NP
 * packed pair vectors (Q4_K: 8, 4; Q6_K: 16, 8). Not inlined: inlined into the loop over the groups, GCC hoists the
 * 256 weight broadcasts out of it into 16 KB of stack, read back with
 * every vpdpbusd (3x slower). */
#define VK_STEP(W, T, NSUB, NP, Q6)                                                                \
    __attribute__((noinline)) static void vk_step_##T##_##W(const vk_decoded *dec, const char *p, \
                                                            bool first, float (*ch)[16])          \
    {                                                                                              \
        __m##W##i is[VK_ROWS];                                                                     \
        _Pragma("GCC unroll 16") for (int j = 0; j < NSUB; j++)                                    \
        {                                                                                          \
            __m##W##i d[VK_ROWS];                                                                  \
            _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++) d[r] =                       \
                _mm##W##_setzero_si##W();                                                          \
            _Pragma("GCC unroll 8") for (int kk = 0; kk < 64 / NSUB; kk++)                         \
            {                                                                                      \
                const int k = 64 / NSUB * j + kk;                                                  \
                const __m##W##i act = _mm##W##_loadu_si##W((const void *)(p + 64 * k));           \
                _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                          \
                {                                                                                  \
                    int32_t wv;                                                                    \
                    memcpy(&wv, dec->q[r] + 4 * k, 4);                                             \
                    d[r] = _mm##W##_dpbusd_epi32(d[r], _mm##W##_set1_epi32(wv), act);              \
                }                                                                                  \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                              \
            {                                                                                      \
                __m##W##i v = _mm##W##_mullo_epi32(d[r], _mm##W##_set1_epi32(dec->sc[r][j]));      \
                is[r] = j ? _mm##W##_add_epi32(is[r], v) : v;                                      \
            }                                                                                      \
        }                                                                                          \
        const __m##W dy = _mm##W##_load_ps((const float *)(p + 4096));                            \
        _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                                  \
        {                                                                                          \
            __m##W##i mi = _mm##W##_setzero_si##W();                                               \
            _Pragma("GCC unroll 8") for (int k = 0; k < NP; k++) mi = _mm##W##_dpwssd_epi32(       \
                mi, _mm##W##_set1_epi32(dec->mp[r][k]),                                            \
                _mm##W##_loadu_si##W((const void *)(p + 4160 + 64 * k)));                          \
            if (Q6) /* sum_j sc_j (D_j - 32 bsum_j) */                                             \
                is[r] = _mm##W##_sub_epi32(is[r], _mm##W##_slli_epi32(mi, 5));                     \
            const __m##W d = _mm##W##_mul_ps(_mm##W##_set1_ps(dec->d[r]), dy);                     \
            __m##W v = _mm##W##_fmadd_ps(d, _mm##W##_cvtepi32_ps(is[r]),                           \
                                         first ? _mm##W##_setzero_ps() : _mm##W##_load_ps(ch[r])); \
            if (!Q6)                                                                               \
                v = _mm##W##_fnmadd_ps(_mm##W##_mul_ps(_mm##W##_set1_ps(dec->dm[r]), dy),          \
                                       _mm##W##_cvtepi32_ps(mi), v);                               \
            _mm##W##_store_ps(ch[r], v);                                                           \
        }                                                                                          \
    }
VK_STEP(512, q4, 8, 4, 0)
VK_STEP(512, q6, 16, 8, 1)

/* Groups of at most eight tokens (batched decode of eight sequences, a
 * mixture's experts): half a vector of tokens would leave half of every
 * vpdpbusd idle, so the packing is paired (pack_k) and lanes 2t and 2t + 1
 * hold token t's products with the even and the odd four-byte groups: one
 * 64-bit broadcast of a row's eight weights per vpdpbusd, half as many as
 * the sixteen-lane step's for the same eight tokens. The integer sums of
 * a lane pair are added (exact) before the scales, so every token gets the
 * bits of the sixteen-lane step. */
#define VK_STEP_P(T, NSUB, NP, Q6)                                                                 \
    __attribute__((noinline)) static void vk_step_##T##_p(const vk_decoded *dec, const char *p,   \
                                                          bool first, float (*ch)[16])            \
    {                                                                                              \
        __m512i is[VK_ROWS];                                                                       \
        _Pragma("GCC unroll 16") for (int j = 0; j < NSUB; j++)                                    \
        {                                                                                          \
            __m512i d[VK_ROWS];                                                                    \
            _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++) d[r] =                       \
                _mm512_setzero_si512();                                                            \
            _Pragma("GCC unroll 8") for (int kk = 0; kk < 32 / NSUB; kk++)                         \
            {                                                                                      \
                const int k2 = 32 / NSUB * j + kk;                                                 \
                const __m512i act = _mm512_loadu_si512((const void *)(p + 64 * k2));              \
                _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                          \
                {                                                                                  \
                    int64_t wv;                                                                    \
                    memcpy(&wv, dec->q[r] + 8 * k2, 8);                                            \
                    d[r] = _mm512_dpbusd_epi32(d[r], _mm512_set1_epi64(wv), act);                  \
                }                                                                                  \
            }                                                                                      \
            _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                              \
            {                                                                                      \
                __m512i v = _mm512_mullo_epi32(d[r], _mm512_set1_epi32(dec->sc[r][j]));           \
                is[r] = j ? _mm512_add_epi32(is[r], v) : v;                                        \
            }                                                                                      \
        }                                                                                          \
        const __m256 dy = _mm256_load_ps((const float *)(p + 4096));                              \
        _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                                  \
        {                                                                                          \
            __m512i mi = _mm512_setzero_si512();                                                   \
            _Pragma("GCC unroll 8") for (int k = 0; k < NP; k++) mi = _mm512_dpwssd_epi32(         \
                mi, _mm512_set1_epi32(dec->mp[r][k]),                                              \
                _mm512_loadu_si512((const void *)(p + 4160 + 64 * k)));                            \
            if (Q6) /* sum_j sc_j (D_j - 32 bsum_j) */                                             \
                is[r] = _mm512_sub_epi32(is[r], _mm512_slli_epi32(mi, 5));                         \
            const __m256i isum =                                                                   \
                _mm512_cvtepi64_epi32(_mm512_add_epi32(is[r], _mm512_srli_epi64(is[r], 32)));      \
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(dec->d[r]), dy);                         \
            __m256 v = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(isum),                                \
                                       first ? _mm256_setzero_ps() : _mm256_load_ps(ch[r]));      \
            if (!Q6)                                                                               \
                v = _mm256_fnmadd_ps(_mm256_mul_ps(_mm256_set1_ps(dec->dm[r]), dy),                \
                                     _mm256_cvtepi32_ps(_mm512_cvtepi64_epi32(mi)), v);            \
            _mm256_store_ps(ch[r], v);                                                             \
        }                                                                                          \
    }
VK_STEP_P(q4, 8, 4, 0)
VK_STEP_P(q6, 16, 8, 1)

/* Chains c of acc[c][g][r] added up (hsum8_tree's order). */
#define VK_CHAINS(W, acc, g, r)                                                                    \
    _mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_load_ps(acc[0][g][r]),                \
                                                    _mm##W##_load_ps(acc[1][g][r])),               \
                                    _mm##W##_add_ps(_mm##W##_load_ps(acc[2][g][r]),                \
                                                    _mm##W##_load_ps(acc[3][g][r]))),              \
                    _mm##W##_add_ps(_mm##W##_add_ps(_mm##W##_load_ps(acc[4][g][r]),                \
                                                    _mm##W##_load_ps(acc[5][g][r])),               \
                                    _mm##W##_add_ps(_mm##W##_load_ps(acc[6][g][r]),                \
                                                    _mm##W##_load_ps(acc[7][g][r]))))

/* Q8_0: eight blocks a step (one per chain), each block's exact sum the
 * vpdpbusd of the weights + 128 against the tokens' quants less the packed
 * 128 sum y; then d_x d_y and one fused multiply-add into its chain. */
typedef struct {
    _Alignas(64) uint8_t q[VK_ROWS][256]; /* the quants + 128, eight blocks */
    float d[VK_ROWS][8];
} vk_decoded8;

static void vk_decode_q8(const char *w, size_t ws, int64_t b, int nv, int64_t nb, vk_decoded8 *o)
{
    const __m256i c80 = _mm256_set1_epi8((char)0x80);
    for (int r = 0; r < VK_ROWS; r++) {
        const block_q8_0 *x = (const block_q8_0 *)(w + (size_t)r * ws) + b;
        for (int i = 0; i < 8; i++) {
            if (i < nv) {
                prefetch_ahead(w, ws, r, VK_ROWS, b + i, nb, sizeof(block_q8_0), Q8_PF);
                _mm256_store_si256((__m256i *)(o->q[r] + 32 * i), _mm256_xor_si256(ld256(x[i].qs), c80));
                o->d[r][i] = _cvtsh_ss(x[i].d);
            }
        }
    }
}

#define VK_STEP8(W)                                                                                \
    __attribute__((noinline)) static void vk_step_q8_##W(const vk_decoded8 *dec, const char *p,   \
                                                         int nv, bool first,                      \
                                                         float (*acc)[TOK_CHUNK][VK_ROWS][16],    \
                                                         int g)                                   \
    {                                                                                              \
        for (int i = 0; i < nv; i++, p += Q8V_PACK) {                                              \
            __m##W##i d[VK_ROWS];                                                                  \
            _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++) d[r] =                       \
                _mm##W##_setzero_si##W();                                                          \
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)                                    \
            {                                                                                      \
                const __m##W##i act = _mm##W##_loadu_si##W((const void *)(p + 64 * k));           \
                _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                          \
                {                                                                                  \
                    int32_t wv;                                                                    \
                    memcpy(&wv, dec->q[r] + 32 * i + 4 * k, 4);                                    \
                    d[r] = _mm##W##_dpbusd_epi32(d[r], _mm##W##_set1_epi32(wv), act);              \
                }                                                                                  \
            }                                                                                      \
            const __m##W dy = _mm##W##_load_ps((const float *)(p + 512));                         \
            const __m##W##i sy = _mm##W##_loadu_si##W((const void *)(p + 576));                   \
            _Pragma("GCC unroll 8") for (int r = 0; r < VK_ROWS; r++)                              \
            {                                                                                      \
                float *ch = acc[i][g][r];                                                          \
                const __m##W dd = _mm##W##_mul_ps(_mm##W##_set1_ps(dec->d[r][i]), dy);             \
                _mm##W##_store_ps(                                                                 \
                    ch, _mm##W##_fmadd_ps(dd, _mm##W##_cvtepi32_ps(_mm##W##_sub_epi32(d[r], sy)),  \
                                          first ? _mm##W##_setzero_ps() : _mm##W##_load_ps(ch)));  \
            }                                                                                      \
        }                                                                                          \
    }
VK_STEP8(512)

/* Q8_0 for groups of at most eight tokens, paired as VK_STEP_P. */
__attribute__((noinline)) static void vk_step_q8_p(const vk_decoded8 *dec, const char *p, int nv,
                                                   bool first,
                                                   float (*acc)[TOK_CHUNK][VK_ROWS][16], int g)
{
    for (int i = 0; i < nv; i++, p += Q8V_PACK) {
        __m512i d[VK_ROWS];
#pragma GCC unroll 8
        for (int r = 0; r < VK_ROWS; r++)
            d[r] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k2 = 0; k2 < 4; k2++) {
            const __m512i act = _mm512_loadu_si512((const void *)(p + 64 * k2));
#pragma GCC unroll 8
            for (int r = 0; r < VK_ROWS; r++) {
                int64_t wv;
                memcpy(&wv, dec->q[r] + 32 * i + 8 * k2, 8);
                d[r] = _mm512_dpbusd_epi32(d[r], _mm512_set1_epi64(wv), act);
            }
        }
        const __m256 dy = _mm256_load_ps((const float *)(p + 512));
        const __m256i sy = _mm256_loadu_si256((const void *)(p + 576));
#pragma GCC unroll 8
        for (int r = 0; r < VK_ROWS; r++) {
            float *ch = acc[i][g][r];
            const __m256i isum =
                _mm512_cvtepi64_epi32(_mm512_add_epi32(d[r], _mm512_srli_epi64(d[r], 32)));
            const __m256 dd = _mm256_mul_ps(_mm256_set1_ps(dec->d[r][i]), dy);
            _mm256_store_ps(ch, _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(_mm256_sub_epi32(isum, sy)),
                                                first ? _mm256_setzero_ps() : _mm256_load_ps(ch)));
        }
    }
}

/* The chains of token group g (rows r0.., tokens t0..t0 + tn) to out. */
static void vk_store(float (*acc)[TOK_CHUNK][VK_ROWS][16], int g, int t0, int tn, int r0,
                     float *out, size_t os)
{
    for (int r = 0; r < VK_ROWS; r++) {
        _Alignas(64) float res[16];
        if (tn <= 8)
            _mm256_store_ps(res, VK_CHAINS(256, acc, g, r));
        else
            _mm512_store_ps(res, VK_CHAINS(512, acc, g, r));
        for (int t = 0; t < tn; t++)
            out[(size_t)(t0 + t) * os + r0 + r] = res[t];
    }
}

static size_t pack_size_q8v(int64_t n)
{
    return (size_t)(n / 32) * Q8V_PACK;
}

static void pack_q8v(int64_t n, const void *a, size_t as, int nt, void *dst)
{
    pack_q8(n, a, as, nt, dst, true);
}

/* The VNNI GEMM of Q8_0 (T = 0: a unit of eight blocks, one per chain),
 * Q4_K (1) or Q6_K (2: a unit of a super-block, chain b % 8): per group of
 * VK_ROWS rows, the units decoded once for up to TOK_CHUNK token groups. */
static ALWAYS_INLINE void vnni_gemm(const int T, int64_t n, const void *w, size_t ws, int nr,
                                    const void *a, size_t as, const void *pk, int nt, float *out,
                                    size_t os)
{
    const int64_t nb = T ? n / 256 : n / 32, nu = T ? nb : (nb + 7) / 8;
    const size_t gsz = T == 0 ? pack_size_q8v(n) : T == 1 ? pack_size_q4_K(n) : pack_size_q6_K(n);
    const size_t us = T == 0 ? 8 * Q8V_PACK : T == 1 ? K4_PACK : K6_PACK;
    const int ng = (nt + 15) / 16;
    vk_decoded dec;
    vk_decoded8 dec8;
    _Alignas(64) float acc[8][TOK_CHUNK][VK_ROWS][16]; /* chain, group, row, token */
    int r0 = 0;
    for (; r0 + VK_ROWS <= nr; r0 += VK_ROWS) {
        const char *wr = (const char *)w + (size_t)r0 * ws;
        for (int g0 = 0; g0 < ng; g0 += TOK_CHUNK) {
            const int gn = ng - g0 < TOK_CHUNK ? ng - g0 : TOK_CHUNK;
            for (int k = (int)(nb < 8 ? nb : 8); k < 8; k++) /* chains no unit reaches */
                for (int g = 0; g < gn; g++)
                    for (int r = 0; r < VK_ROWS; r++)
                        _mm512_store_ps(acc[k][g][r], _mm512_setzero_ps());
            for (int64_t u = 0; u < nu; u++) {
                const int nv = T == 0 && nb - 8 * u < 8 ? (int)(nb - 8 * u) : 8;
                if (T == 0)
                    vk_decode_q8(wr, ws, 8 * u, nv, nb, &dec8);
                else if (T == 1)
                    vk_decode_q4(wr, ws, u, nb, &dec);
                else
                    vk_decode_q6(wr, ws, u, nb, &dec);
                for (int g = 0; g < gn; g++) {
                    const char *p = (const char *)pk + (size_t)(g0 + g) * gsz + (size_t)u * us;
                    const bool half = nt - 16 * (g0 + g) <= 8;
                    if (T == 0)
                        (half ? vk_step_q8_p : vk_step_q8_512)(&dec8, p, nv, u == 0, acc, g);
                    else if (T == 1)
                        (half ? vk_step_q4_p : vk_step_q4_512)(&dec, p, u < 8, acc[u & 7][g]);
                    else
                        (half ? vk_step_q6_p : vk_step_q6_512)(&dec, p, u < 8, acc[u & 7][g]);
                }
            }
            for (int g = 0; g < gn; g++) {
                const int t0 = 16 * (g0 + g);
                vk_store(acc, g, t0, nt - t0 < 16 ? nt - t0 : 16, r0, out, os);
            }
        }
    }
    tail_rows(T == 0 ? c_rows_q8_0 : T == 1 ? c_rows_q4_K : c_rows_q6_K, n, w, ws, r0, nr, a, as,
              nt, out, os);
}

static void vnni_q8_0(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                      const void *pk, int nt, float *out, size_t os)
{
    vnni_gemm(0, n, w, ws, nr, a, as, pk, nt, out, os);
}

static void vnni_q4_K(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                      const void *pk, int nt, float *out, size_t os)
{
    vnni_gemm(1, n, w, ws, nr, a, as, pk, nt, out, os);
}

static void vnni_q6_K(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                      const void *pk, int nt, float *out, size_t os)
{
    vnni_gemm(2, n, w, ws, nr, a, as, pk, nt, out, os);
}

void kn_vnni_fill(kn_traits *tab)
{
    kn_traits *q8 = &tab[VT_TYPE_Q8_0];
    q8->vec_dot = c_dot_q8_0;
    q8->vec_dot_rows = c_rows_q8_0;
    q8->vec_dot_n = NULL;
    q8->gemm = c_gemm_q8_0;
    q8->pack_size = pack_size_q8v;
    q8->pack = pack_q8v;
    q8->gemm_packed = vnni_q8_0;
    kn_traits *q4 = &tab[VT_TYPE_Q4_K];
    q4->vec_dot = c_dot_q4_K;
    q4->vec_dot_rows = c_rows_q4_K;
    q4->vec_dot_n = NULL; /* the generic one over vec_dot */
    q4->gemm = c_gemm_q4_K;
    q4->pack_size = pack_size_q4_K;
    q4->pack = pack_q4_Kv;
    q4->gemm_packed = vnni_q4_K;
    q4->pack_min = 3; /* Zen 4: the paired step for three tokens takes 3/4 of three GEMV passes */
    kn_traits *q6 = &tab[VT_TYPE_Q6_K];
    q6->vec_dot = c_dot_q6_K;
    q6->vec_dot_rows = c_rows_q6_K;
    q6->vec_dot_n = NULL;
    q6->gemm = c_gemm_q6_K;
    q6->pack_size = pack_size_q6_K;
    q6->pack = pack_q6_Kv;
    q6->gemm_packed = vnni_q6_K;
}

void kn_amx_fill(kn_traits *tab)
{
    kn_vnni_fill(tab); /* the same kernels but the packed GEMMs: the tiles */
    tab[VT_TYPE_Q8_0].pack_size = pack_size_q8_0;
    tab[VT_TYPE_Q8_0].pack = pack_q8_0;
    tab[VT_TYPE_Q8_0].gemm_packed = amx_q8_0;
    tab[VT_TYPE_Q4_K].pack = pack_q4_K; /* the tiles' layout for every group */
    tab[VT_TYPE_Q6_K].pack = pack_q6_K;
    tab[VT_TYPE_Q4_K].gemm_packed = amx_q4_K;
    tab[VT_TYPE_Q4_K].pack_min = 0;
    tab[VT_TYPE_Q6_K].gemm_packed = amx_q6_K;
}
