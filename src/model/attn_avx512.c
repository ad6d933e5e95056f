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

void md_attn_f32_avx512(const md_attn_args *a, const float *q, float *o, float *sc)
{
    float mx = -INFINITY;
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *kr = a->k + md_attn_slot(a, p) * a->k_stride;
        __m512 s = _mm512_setzero_ps();
        for (int64_t i = 0; i < a->hd; i += 16)
            s = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), load_f16(kr + i), s);
        sc[p] = _mm512_reduce_add_ps(s) * a->scale;
        mx = sc[p] > mx ? sc[p] : mx;
    }
    double sum = 0;
    for (int64_t p = 0; p < a->npos; p++) {
        sc[p] = expf(sc[p] - mx);
        sum += sc[p];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < a->hdv; i += 16)
        _mm512_storeu_ps(o + i, _mm512_setzero_ps());
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *vr = a->v + md_attn_slot(a, p) * a->v_stride;
        __m512 w = _mm512_set1_ps(sc[p] * inv);
        for (int64_t i = 0; i < a->hdv; i += 16)
            _mm512_storeu_ps(o + i, _mm512_fmadd_ps(w, load_f16(vr + i), _mm512_loadu_ps(o + i)));
    }
}
