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

/* ggml's F16 dot product of q (F16 values held in F32) and an F16 row. */
static inline float dot_f16(const float *q, const vt_fp16 *k, int64_t n)
{
    int64_t np = n & ~(int64_t)63;
    double sum = 0;
    if (np) {
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (int64_t i = 0; i < np; i += 64) {
            s0 = _mm512_fmadd_ps(load_f16(k + i), _mm512_loadu_ps(q + i), s0);
            s1 = _mm512_fmadd_ps(load_f16(k + i + 16), _mm512_loadu_ps(q + i + 16), s1);
            s2 = _mm512_fmadd_ps(load_f16(k + i + 32), _mm512_loadu_ps(q + i + 32), s2);
            s3 = _mm512_fmadd_ps(load_f16(k + i + 48), _mm512_loadu_ps(q + i + 48), s3);
        }
        s0 = _mm512_add_ps(s0, s2);
        s1 = _mm512_add_ps(s1, s3);
        sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    }
    if (np < n) {
        __m512 rest = _mm512_setzero_ps();
        for (int64_t i = np; i < n; i += 16) { /* products are exact in F32 */
            __m512 pr = _mm512_mul_ps(load_f16(k + i), _mm512_loadu_ps(q + i));
            float tmp[16];
            _mm512_storeu_ps(tmp, pr);
            for (int j = 0; j < 16; j++)
                sum += (double)tmp[j];
        }
        (void)rest;
    }
    return (float)sum;
}

void md_attn_f16acc_avx512(const md_attn_args *a, const float *q32, float *o, float *scratch)
{
    (void)scratch;
    float q[MD_MAX_HEAD_DIM], acc[MD_MAX_HEAD_DIM];
    for (int64_t i = 0; i < a->hd; i += 16)
        _mm512_storeu_ps(q + i, round_f16(_mm512_loadu_ps(q32 + i)));
    memset(acc, 0, sizeof(float) * (size_t)a->hdv);
    float M = -INFINITY, S = 0;
    for (int64_t p = 0; p < a->npos; p++) {
        size_t slot = md_attn_slot(a, p);
        const vt_fp16 *kr = a->k + slot * a->k_stride, *vr = a->v + slot * a->v_stride;
        float sv = dot_f16(q, kr, a->hd) * a->scale, ms = 1.0f, vs = 1.0f;
        if (sv > M) {
            float Mold = M;
            M = sv;
            ms = expf(Mold - M);
            __m512 vms = _mm512_set1_ps(ms);
            for (int64_t i = 0; i < a->hdv; i += 16)
                _mm512_storeu_ps(acc + i, round_f16(_mm512_mul_ps(_mm512_loadu_ps(acc + i), vms)));
        } else {
            vs = expf(sv - M);
        }
        __m512 vvs = _mm512_set1_ps(vs);
        for (int64_t i = 0; i < a->hdv; i += 16)
            _mm512_storeu_ps(acc + i, round_f16(_mm512_fmadd_ps(load_f16(vr + i), vvs,
                                                                _mm512_loadu_ps(acc + i))));
        S = S * ms + vs;
    }
    __m512 inv = _mm512_set1_ps(S == 0.0f ? 0.0f : 1.0f / S);
    for (int64_t i = 0; i < a->hdv; i += 16)
        _mm512_storeu_ps(o + i, _mm512_mul_ps(_mm512_loadu_ps(acc + i), inv));
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
    float inv = md_softmax_f32(sc, a->npos, mx);
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

void md_attn_f32_avx512(const md_attn_args *a, const float *q, float *o, float *sc)
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
    float inv = md_softmax_f32(sc, a->npos, mx);
    for (int64_t i = 0; i < a->hdv; i += 16)
        _mm512_storeu_ps(o + i, _mm512_setzero_ps());
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *vr = a->v + md_attn_slot(a, p) * a->v_stride;
        __m512 w = _mm512_set1_ps(sc[p] * inv);
        for (int64_t i = 0; i < a->hdv; i += 16)
            _mm512_storeu_ps(o + i, _mm512_fmadd_ps(w, load_f16(vr + i), _mm512_loadu_ps(o + i)));
    }
}
