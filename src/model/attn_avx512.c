/*
 * attn_avx512.c - the attention kernels of attention.h with AVX-512 and F16C,
 * for head dimensions that are multiples of 16. Numerics follow the scalar
 * references: md_attn_f16acc_avx512 reproduces ggml's F16 dot product
 * (four 16-lane accumulators over 64-element steps, reduced pairwise, the
 * remainder summed in double) and keeps the V accumulator rounded to F16
 * after every update.
 */
#include <immintrin.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "attention.h"

static inline __m512 load_f16(const vt_fp16 *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 round_f16(__m512 x)
{
    return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* dot_f16(q, k) before its final reduction, for n % 64 == 0. */
static inline __m512 dot_f16_lanes(const float *q, const vt_fp16 *k, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t i = 0; i < n; i += 64) {
        s0 = _mm512_fmadd_ps(load_f16(k + i), _mm512_loadu_ps(q + i), s0);
        s1 = _mm512_fmadd_ps(load_f16(k + i + 16), _mm512_loadu_ps(q + i + 16), s1);
        s2 = _mm512_fmadd_ps(load_f16(k + i + 32), _mm512_loadu_ps(q + i + 32), s2);
        s3 = _mm512_fmadd_ps(load_f16(k + i + 48), _mm512_loadu_ps(q + i + 48), s3);
    }
    return _mm512_add_ps(_mm512_add_ps(s0, s2), _mm512_add_ps(s1, s3));
}

/* ggml's F16 dot product of q (F16 values held in F32) and an F16 row. */
static inline float dot_f16(const float *q, const vt_fp16 *k, int64_t n)
{
    int64_t np = n & ~(int64_t)63;
    double sum = 0;
    if (np)
        sum = _mm512_reduce_add_ps(dot_f16_lanes(q, k, np));
    if (np < n) {
        for (int64_t i = np; i < n; i += 16) { /* products are exact in F32 */
            __m512 pr = _mm512_mul_ps(load_f16(k + i), _mm512_loadu_ps(q + i));
            float tmp[16];
            _mm512_storeu_ps(tmp, pr);
            for (int j = 0; j < 16; j++)
                sum += (double)tmp[j];
        }
    }
    return (float)sum;
}

/* md_exp of sixteen floats, lane by lane the operations of the scalar one. */
static inline __m256 exp_pd8(__m256 xf)
{
    const __m512d l2e = _mm512_set1_pd(MD_EXP_LOG2E), ln2 = _mm512_set1_pd(MD_EXP_LN2);
    __m512d t = _mm512_mul_pd(_mm512_cvtps_pd(xf), l2e);
    __m512d k = _mm512_roundscale_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d g = _mm512_mul_pd(_mm512_sub_pd(t, k), ln2);
    __m512d p = _mm512_set1_pd(md_exp_coef[0]);
    for (int i = 1; i < 13; i++)
        p = _mm512_fmadd_pd(p, g, _mm512_set1_pd(md_exp_coef[i]));
    __m512i e = _mm512_slli_epi64(_mm512_add_epi64(_mm512_cvtpd_epi64(k), _mm512_set1_epi64(1023)), 52);
    return _mm512_cvtpd_ps(_mm512_mul_pd(p, _mm512_castsi512_pd(e)));
}

static inline __m512 exp_ps(__m512 x)
{
    __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __mmask16 small = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_LT_OQ);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(89.0f));
    __m512 r = _mm512_insertf32x8(_mm512_castps256_ps512(exp_pd8(_mm512_castps512_ps256(xc))),
                                  exp_pd8(_mm512_extractf32x8_ps(xc, 1)), 1);
    r = _mm512_maskz_mov_ps(~small, r);
    return _mm512_mask_mov_ps(r, nan, x);
}

/* The lanes of x + 16 * i below n. */
static inline __mmask16 lanes_from(int64_t i, int64_t n)
{
    return n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
}

void md_exp_avx512(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 m = lanes_from(i, n);
        _mm512_mask_storeu_ps(x + i, m, exp_ps(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* md_softmax_f32_ref's bits: the exps sixteen at a time, the eight partial
 * sums in the lanes of one double vector (position p in lane p % 8; lanes
 * past n add zeros). */
float md_softmax_f32_avx512(float *sc, int64_t n, float mx)
{
    __m512 vm = _mm512_set1_ps(mx);
    __m512d s = _mm512_setzero_pd();
    for (int64_t p = 0; p < n; p += 16) {
        __mmask16 m = lanes_from(p, n);
        __m512 e = _mm512_maskz_mov_ps(m, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, sc + p), vm)));
        _mm512_mask_storeu_ps(sc + p, m, e);
        s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s = _mm512_add_pd(s, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    double v[8];
    _mm512_storeu_pd(v, s);
    double sum = ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
    return (float)(1.0 / sum);
}

/* Pairwise sums of adjacent lanes of a then b (lane i: (a:b)[2i] + (a:b)[2i+1]);
 * four levels turn sixteen vectors into one whose lane i sums vector i. */
static inline __m512 pair_sum_ps(__m512 a, __m512 b)
{
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    return _mm512_add_ps(_mm512_permutex2var_ps(a, ev, b), _mm512_permutex2var_ps(a, od, b));
}

/* The F32 recipe for head dimensions HD = HDV (a compile-time 64 or 128:
 * the query and the output stay in registers): the scores of sixteen keys at
 * a time, their lanes summed together (pair_sum_ps) instead of one
 * horizontal sum per key; the softmax in F32 with the sum in double; the
 * weighted sum of V in order of position. */
static inline __attribute__((always_inline)) void attn_f32_fixed(const int HD,
                                                                 const md_attn_args *a,
                                                                 const float *q, float *o,
                                                                 float *sc)
{
    __m512 qv[8], ov[8];
    for (int c = 0; c < HD / 16; c++)
        qv[c] = _mm512_loadu_ps(q + 16 * c);
    const bool same_block = a->block_size % 16 == 0;
    __m512 mxv = _mm512_set1_ps(-INFINITY);
    const __m512 scale = _mm512_set1_ps(a->scale);
    int64_t p0 = 0;
    for (; p0 + 16 <= a->npos; p0 += 16) {
        __m512 s[16];
        size_t base = md_attn_slot(a, p0); /* sixteen keys in one block (bs % 16 == 0) */
        for (int k = 0; k < 16; k++) {
            const vt_fp16 *kr =
                a->k + (same_block ? base + (size_t)k : md_attn_slot(a, p0 + k)) * a->k_stride;
            __m512 acc = _mm512_mul_ps(qv[0], load_f16(kr));
            for (int c = 1; c < HD / 16; c++)
                acc = _mm512_fmadd_ps(qv[c], load_f16(kr + 16 * c), acc);
            s[k] = acc;
        }
        for (int w = 8; w >= 1; w /= 2)
            for (int k = 0; k < w; k++)
                s[k] = pair_sum_ps(s[2 * k], s[2 * k + 1]);
        __m512 v = _mm512_mul_ps(s[0], scale);
        _mm512_storeu_ps(sc + p0, v);
        mxv = _mm512_max_ps(mxv, v);
    }
    float mx = _mm512_reduce_max_ps(mxv);
    for (int64_t p = p0; p < a->npos; p++) { /* the last keys one at a time, summed alike */
        const vt_fp16 *kr = a->k + md_attn_slot(a, p) * a->k_stride;
        __m512 acc = _mm512_mul_ps(qv[0], load_f16(kr));
        for (int c = 1; c < HD / 16; c++)
            acc = _mm512_fmadd_ps(qv[c], load_f16(kr + 16 * c), acc);
        __m512 z = _mm512_setzero_ps();
        __m512 t = pair_sum_ps(acc, z);
        t = pair_sum_ps(t, z);
        t = pair_sum_ps(t, z);
        t = pair_sum_ps(t, z);
        sc[p] = _mm512_cvtss_f32(t) * a->scale;
        mx = sc[p] > mx ? sc[p] : mx;
    }
    float inv = md_softmax_f32_avx512(sc, a->npos, mx);
    /* four sums, position p into sum p % 4 (one would wait on the latency of
     * its fmadds), added up at the end */
    __m512 o2[8], o3[8], o4[8];
    for (int c = 0; c < HD / 16; c++)
        ov[c] = o2[c] = o3[c] = o4[c] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 4 <= a->npos; p += 4) {
        size_t s0 = md_attn_slot(a, p); /* four positions in one block (bs % 4 == 0) */
        bool one = a->block_size % 4 == 0;
        const vt_fp16 *v0 = a->v + s0 * a->v_stride;
        const vt_fp16 *v1 = a->v + (one ? s0 + 1 : md_attn_slot(a, p + 1)) * a->v_stride;
        const vt_fp16 *v2 = a->v + (one ? s0 + 2 : md_attn_slot(a, p + 2)) * a->v_stride;
        const vt_fp16 *v3 = a->v + (one ? s0 + 3 : md_attn_slot(a, p + 3)) * a->v_stride;
        __m512 w0 = _mm512_set1_ps(sc[p] * inv), w1 = _mm512_set1_ps(sc[p + 1] * inv);
        __m512 w2 = _mm512_set1_ps(sc[p + 2] * inv), w3 = _mm512_set1_ps(sc[p + 3] * inv);
        for (int c = 0; c < HD / 16; c++) {
            ov[c] = _mm512_fmadd_ps(w0, load_f16(v0 + 16 * c), ov[c]);
            o2[c] = _mm512_fmadd_ps(w1, load_f16(v1 + 16 * c), o2[c]);
            o3[c] = _mm512_fmadd_ps(w2, load_f16(v2 + 16 * c), o3[c]);
            o4[c] = _mm512_fmadd_ps(w3, load_f16(v3 + 16 * c), o4[c]);
        }
    }
    for (; p < a->npos; p++) {
        const vt_fp16 *vr = a->v + md_attn_slot(a, p) * a->v_stride;
        __m512 w = _mm512_set1_ps(sc[p] * inv);
        for (int c = 0; c < HD / 16; c++)
            ov[c] = _mm512_fmadd_ps(w, load_f16(vr + 16 * c), ov[c]);
    }
    for (int c = 0; c < HD / 16; c++)
        _mm512_storeu_ps(o + 16 * c,
                         _mm512_add_ps(_mm512_add_ps(ov[c], o2[c]), _mm512_add_ps(o3[c], o4[c])));
}

static void f32_one(const md_attn_args *a, const float *q, float *o, float *sc)
{
    if (a->hd == 64 && a->hdv == 64) {
        attn_f32_fixed(64, a, q, o, sc);
        return;
    }
    if (a->hd == 128 && a->hdv == 128) {
        attn_f32_fixed(128, a, q, o, sc);
        return;
    }
    float mx = -INFINITY;
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *kr = a->k + md_attn_slot(a, p) * a->k_stride;
        __m512 s = _mm512_setzero_ps();
        for (int64_t i = 0; i < a->hd; i += 16)
            s = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_f16(kr + i), s);
        sc[p] = _mm512_reduce_add_ps(s) * a->scale;
        mx = sc[p] > mx ? sc[p] : mx;
    }
    float inv = md_softmax_f32_avx512(sc, a->npos, mx);
    for (int64_t i = 0; i < a->hdv; i += 16)
        _mm512_storeu_ps(o + i, _mm512_setzero_ps());
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *vr = a->v + md_attn_slot(a, p) * a->v_stride;
        __m512 w = _mm512_set1_ps(sc[p] * inv);
        for (int64_t i = 0; i < a->hdv; i += 16)
            _mm512_storeu_ps(o + i, _mm512_fmadd_ps(w, load_f16(vr + i), _mm512_loadu_ps(o + i)));
    }
}

void md_attn_f32_avx512(const md_attn_args *a, int nq, const float *q, float *o, float *sc)
{
    for (int h = 0; h < nq; h++)
        f32_one(a, q + h * a->hd, o + h * a->hdv, sc);
}

/* ---- the F16 recipe, a GQA group at a time ------------------------------
 * For each head: every score first (dot_f16's bits: for hd % 64 == 0 the
 * sixteen keys' vectors are summed lane-wise along the same tree as
 * _mm512_reduce_add_ps, (i, i+8), (j, j+4), (0, 2)/(1, 3), (0, 1)); then the
 * online softmax's factors of every position - a new maximum's rescale ms
 * and the weight vs - their exps sixteen at a time; last the F16 accumulator
 * of V, rounded after every update as before, for up to four heads at once
 * (independent chains, and each V row read once for them). */

/* Lane k of the result: reduce_add of s[k] (GCC's order, see above). */
static inline __m512 reduce16(__m512 s[16])
{
    __m512 r[8], u[4], w[2];
    for (int m = 0; m < 8; m++)
        r[m] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * m], s[2 * m + 1], 0xEE),
                             _mm512_shuffle_f32x4(s[2 * m], s[2 * m + 1], 0x44));
    for (int n = 0; n < 4; n++)
        u[n] = _mm512_add_ps(_mm512_shuffle_f32x4(r[2 * n], r[2 * n + 1], 0xDD),
                             _mm512_shuffle_f32x4(r[2 * n], r[2 * n + 1], 0x88));
    for (int i = 0; i < 2; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)),
                             _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)));
    __m512 f = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)),
                             _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)));
    /* lane 4c + l of f holds key c + 4l */
    const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    return _mm512_permutexvar_ps(idx, f);
}

/* sc[p] = the F16 recipe's score of key p (dot_f16 * scale). */
static void f16_scores(const md_attn_args *a, const float *q, float *sc)
{
    int64_t p0 = 0;
    if (a->hd % 64 == 0) {
        const bool same_block = a->block_size % 16 == 0;
        const __m512 scale = _mm512_set1_ps(a->scale);
        for (; p0 + 16 <= a->npos; p0 += 16) {
            __m512 s[16];
            size_t base = md_attn_slot(a, p0);
            for (int k = 0; k < 16; k++)
                s[k] = dot_f16_lanes(
                    q, a->k + (same_block ? base + (size_t)k : md_attn_slot(a, p0 + k)) * a->k_stride,
                    a->hd);
            _mm512_storeu_ps(sc + p0, _mm512_mul_ps(reduce16(s), scale));
        }
    }
    for (int64_t p = p0; p < a->npos; p++)
        sc[p] = dot_f16(q, a->k + md_attn_slot(a, p) * a->k_stride, a->hd) * a->scale;
}

/* The scores sc become the weights of V at each position, and wm[p] the
 * rescale of the sums at p (1 unless p is a new maximum). */
static void f16_factors(float *sc, float *wm, int64_t n)
{
    float M = -INFINITY;
    for (int64_t p = 0; p < n; p++) {
        float sv = sc[p];
        if (sv > M) {
            wm[p] = M - sv; /* exp'd below: the rescale */
            sc[p] = 0.0f;   /* exp(0) = 1: the weight */
            M = sv;
        } else {
            wm[p] = 0.0f;
            sc[p] = sv - M;
        }
    }
    md_exp_avx512(sc, n);
    md_exp_avx512(wm, n);
}

/* The V pass for NH heads (a compile-time 1..4) over the HDV columns
 * (a compile-time multiple of 16, at most 128) from c0: o is head 0's
 * output, heads a->hdv apart. Every column's chain is its own, so a head's
 * bits do not depend on how its columns or heads are split into passes. */
static inline __attribute__((always_inline)) void f16_vpass(const int NH, const int HDV,
                                                            const md_attn_args *a, int64_t c0,
                                                            const float *const *wv,
                                                            const float *const *wm, float *o)
{
    __m512 acc[4][8];
    float S[4] = {0, 0, 0, 0};
    #pragma GCC unroll 8
    for (int h = 0; h < NH; h++)
        #pragma GCC unroll 8
        for (int c = 0; c < HDV / 16; c++)
            acc[h][c] = _mm512_setzero_ps();
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *vr = a->v + md_attn_slot(a, p) * a->v_stride + c0;
        __m512 v[8];
        #pragma GCC unroll 8
        for (int c = 0; c < HDV / 16; c++)
            v[c] = load_f16(vr + 16 * c);
        #pragma GCC unroll 8
        for (int h = 0; h < NH; h++) {
            float ms = wm[h][p], vs = wv[h][p];
            if (ms != 1.0f) {
                __m512 vms = _mm512_set1_ps(ms);
                #pragma GCC unroll 8
                for (int c = 0; c < HDV / 16; c++)
                    acc[h][c] = round_f16(_mm512_mul_ps(acc[h][c], vms));
            }
            __m512 vvs = _mm512_set1_ps(vs);
            #pragma GCC unroll 8
            for (int c = 0; c < HDV / 16; c++)
                acc[h][c] = round_f16(_mm512_fmadd_ps(v[c], vvs, acc[h][c]));
            S[h] = S[h] * ms + vs;
        }
    }
    #pragma GCC unroll 8
    for (int h = 0; h < NH; h++) {
        __m512 inv = _mm512_set1_ps(S[h] == 0.0f ? 0.0f : 1.0f / S[h]);
        #pragma GCC unroll 8
        for (int c = 0; c < HDV / 16; c++)
            _mm512_storeu_ps(o + h * a->hdv + 16 * c, _mm512_mul_ps(acc[h][c], inv));
    }
}

void md_attn_f16acc_avx512(const md_attn_args *a, int nq, const float *q32, float *o,
                           float *scratch)
{
    int64_t n = a->npos;
    const float *wv[4], *wm[4];
    for (int h0 = 0; h0 < nq; h0 += 4) {
        int nh = nq - h0 < 4 ? nq - h0 : 4;
        for (int i = 0; i < nh; i++) {
            float q[MD_MAX_HEAD_DIM];
            for (int64_t d = 0; d < a->hd; d += 16)
                _mm512_storeu_ps(q + d, round_f16(_mm512_loadu_ps(q32 + (h0 + i) * a->hd + d)));
            float *sv = scratch + (size_t)(2 * i) * (size_t)n, *sm = sv + n;
            f16_scores(a, q, sv);
            f16_factors(sv, sm, n);
            wv[i] = sv;
            wm[i] = sm;
        }
        float *oh = o + h0 * a->hdv;
        for (int h = 0; h < nh;) { /* as many heads per pass as the registers hold */
            int left = nh - h;
            if (a->hdv == 64 && left >= 4) {
                f16_vpass(4, 64, a, 0, wv + h, wm + h, oh + h * 64);
                h += 4;
            } else if ((a->hdv == 64 || a->hdv == 128) && left >= 2) {
                if (a->hdv == 64)
                    f16_vpass(2, 64, a, 0, wv + h, wm + h, oh + h * 64);
                else
                    f16_vpass(2, 128, a, 0, wv + h, wm + h, oh + h * 128);
                h += 2;
            } else {
                float *ohh = oh + h * a->hdv;
                if (a->hdv == 64)
                    f16_vpass(1, 64, a, 0, wv + h, wm + h, ohh);
                else if (a->hdv == 128)
                    f16_vpass(1, 128, a, 0, wv + h, wm + h, ohh);
                else /* other widths: sixteen columns a pass */
                    for (int64_t c0 = 0; c0 < a->hdv; c0 += 16)
                        f16_vpass(1, 16, a, c0, wv + h, wm + h, ohh + c0);
                h++;
            }
        }
    }
}
