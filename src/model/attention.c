/*
 * attention.c - scalar reference attention kernels and their selection (see
 * attention.h for the two recipes and why there are two).
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "attention.h"
#include "kernels/kernels.h"

static float f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void f16_table_init(void)
{
    for (uint32_t i = 0; i < 65536; i++)
        f16_table[i] = vt_fp16_to_fp32((vt_fp16)i);
}

static void f16acc_one(const md_attn_args *a, const float *q32, float *o)
{
    vt_fp16 q[MD_MAX_HEAD_DIM], acc[MD_MAX_HEAD_DIM];
    for (int64_t i = 0; i < a->hd; i++)
        q[i] = vt_fp32_to_fp16(q32[i]);
    memset(acc, 0, sizeof(vt_fp16) * (size_t)a->hdv);
    float M = -INFINITY, S = 0;
    for (int64_t p = 0; p < a->npos; p++) {
        size_t slot = md_attn_slot(a, p);
        const vt_fp16 *kr = a->k + slot * a->k_stride, *vr = a->v + slot * a->v_stride;
        double d = 0; /* F16 products are exact in F32 */
        for (int64_t i = 0; i < a->hd; i++)
            d += (double)(f16_table[q[i]] * f16_table[kr[i]]);
        float sv = (float)d * a->scale, ms = 1.0f, vs = 1.0f;
        if (sv > M) {
            float Mold = M;
            M = sv;
            ms = md_exp(Mold - M);
            for (int64_t i = 0; i < a->hdv; i++)
                acc[i] = vt_fp32_to_fp16(f16_table[acc[i]] * ms);
        } else {
            vs = md_exp(sv - M);
        }
        for (int64_t i = 0; i < a->hdv; i++)
            acc[i] = vt_fp32_to_fp16(fmaf(f16_table[vr[i]], vs, f16_table[acc[i]]));
        S = S * ms + vs;
    }
    float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int64_t i = 0; i < a->hdv; i++)
        o[i] = f16_table[acc[i]] * inv;
}

static void f32_one(const md_attn_args *a, const float *q, float *o, float *sc)
{
    float mx = -INFINITY;
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *kr = a->k + md_attn_slot(a, p) * a->k_stride;
        float d = 0;
        for (int64_t i = 0; i < a->hd; i++)
            d += q[i] * f16_table[kr[i]];
        sc[p] = d * a->scale;
        mx = sc[p] > mx ? sc[p] : mx;
    }
    float inv = md_softmax_f32_ref(sc, a->npos, mx);
    memset(o, 0, (size_t)a->hdv * sizeof(float));
    for (int64_t p = 0; p < a->npos; p++) {
        const vt_fp16 *vr = a->v + md_attn_slot(a, p) * a->v_stride;
        float w = sc[p] * inv;
        for (int64_t i = 0; i < a->hdv; i++)
            o[i] += w * f16_table[vr[i]];
    }
}

void md_attn_f16acc_ref(const md_attn_args *a, int nq, const float *q, float *o, float *scratch)
{
    (void)scratch;
    for (int h = 0; h < nq; h++)
        f16acc_one(a, q + h * a->hd, o + h * a->hdv);
}

void md_attn_f32_ref(const md_attn_args *a, int nq, const float *q, float *o, float *scratch)
{
    for (int h = 0; h < nq; h++)
        f32_one(a, q + h * a->hd, o + h * a->hdv, scratch);
}

void md_attn_select(int64_t hd, int64_t hdv, md_attn_fn *f16acc, md_attn_fn *f32)
{
    pthread_once(&f16_once, f16_table_init);
    *f16acc = md_attn_f16acc_ref;
    *f32 = md_attn_f32_ref;
    if (kn_active_isa() >= KN_ISA_AVX512 && hd % 16 == 0 && hdv % 16 == 0) {
        *f16acc = md_attn_f16acc_avx512;
        *f32 = md_attn_f32_avx512;
    }
}
