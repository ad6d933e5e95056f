/*
 * quants_ref_k.c - scalar reference kernels for the 256-element "K" super-
 * block types: dequantization of Q2_K..Q6_K and Q8_K, the Q8_K activation
 * quantizer (ggml's: per 256 values, scale from the value of largest
 * magnitude, iscale = -127/max, round half to even, sums of each 16 quants
 * kept in bsums), and the dot products of Q2_K..Q6_K rows with Q8_K rows.
 * Integer parts are computed exactly; each super-block adds one float term.
 * The layouts are described in quants.h.
 */
#include <math.h>

#include "kernels/quants.h"
#include "util/util.h"

static inline float h2f(uint16_t h)
{
    return vt_fp16_to_fp32(h);
}

/* ---- unpacking to small integers (shared by to_float and vec_dot) ------- */

/* q2_K: the 256 two-bit values (0..3). */
static void q2k_values(const block_q2_K *b, uint8_t v[256])
{
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++)
                v[128 * h + 32 * k + l] = (b->qs[32 * h + l] >> (2 * k)) & 3;
}

/* q3_K: the 256 three-bit values, already offset (-4..3). */
static void q3k_values(const block_q3_K *b, int8_t v[256])
{
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * k + l;
                int lo = (b->qs[32 * h + l] >> (2 * k)) & 3;
                int hi = (b->hmask[l] >> (e / 32)) & 1;
                v[e] = (int8_t)((lo | (hi << 2)) - 4);
            }
}

/* q4_K / q5_K: the 256 values (0..15 or 0..31); qh may be NULL. */
static void k4_values(const uint8_t *qs, const uint8_t *qh, uint8_t v[256])
{
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
            if (qh) {
                lo |= ((qh[l] >> (2 * c)) & 1) << 4;
                hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            v[64 * c + l] = (uint8_t)lo;
            v[64 * c + 32 + l] = (uint8_t)hi;
        }
}

/* q6_K: the 256 six-bit values, already offset (-32..31). */
static void q6k_values(const block_q6_K *b, int8_t v[256])
{
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < 32; l++) {
                uint8_t lb = b->ql[64 * h + l + 32 * (k & 1)];
                int lo = k < 2 ? (lb & 0xF) : (lb >> 4);
                int hi = (b->qh[32 * h + l] >> (2 * k)) & 3;
                v[128 * h + 32 * k + l] = (int8_t)((lo | (hi << 4)) - 32);
            }
}

/* ---- to_float ----------------------------------------------------------- */

void kn_ref_to_float_q2_K(const void *x, float *y, int64_t n)
{
    const block_q2_K *b = x;
    uint8_t v[256];
    for (int64_t i = 0; i < n / KN_QK_K; i++, y += KN_QK_K) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        q2k_values(&b[i], v);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)(b[i].scales[j] & 0xF);
            float ml = dmin * (float)(b[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++)
                y[16 * j + l] = dl * (float)v[16 * j + l] - ml;
        }
    }
}

void kn_ref_to_float_q3_K(const void *x, float *y, int64_t n)
{
    const block_q3_K *b = x;
    int8_t v[256], sc[16];
    for (int64_t i = 0; i < n / KN_QK_K; i++, y += KN_QK_K) {
        float d = h2f(b[i].d);
        q3k_values(&b[i], v);
        kn_q3k_scales(b[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)sc[j];
            for (int l = 0; l < 16; l++)
                y[16 * j + l] = dl * (float)v[16 * j + l];
        }
    }
}

static void k4_to_float(const uint16_t dd, const uint16_t dm, const uint8_t *scales,
                        const uint8_t *v, float *y)
{
    float d = h2f(dd), dmin = h2f(dm);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kn_k4_scale_min(j, scales, &sc, &m);
        float dl = d * (float)sc, ml = dmin * (float)m;
        for (int l = 0; l < 32; l++)
            y[32 * j + l] = dl * (float)v[32 * j + l] - ml;
    }
}

void kn_ref_to_float_q4_K(const void *x, float *y, int64_t n)
{
    const block_q4_K *b = x;
    uint8_t v[256];
    for (int64_t i = 0; i < n / KN_QK_K; i++, y += KN_QK_K) {
        k4_values(b[i].qs, NULL, v);
        k4_to_float(b[i].d, b[i].dmin, b[i].scales, v, y);
    }
}

void kn_ref_to_float_q5_K(const void *x, float *y, int64_t n)
{
    const block_q5_K *b = x;
    uint8_t v[256];
    for (int64_t i = 0; i < n / KN_QK_K; i++, y += KN_QK_K) {
        k4_values(b[i].qs, b[i].qh, v);
        k4_to_float(b[i].d, b[i].dmin, b[i].scales, v, y);
    }
}

void kn_ref_to_float_q6_K(const void *x, float *y, int64_t n)
{
    const block_q6_K *b = x;
    int8_t v[256];
    for (int64_t i = 0; i < n / KN_QK_K; i++, y += KN_QK_K) {
        float d = h2f(b[i].d);
        q6k_values(&b[i], v);
        for (int j = 0; j < 16; j++) {
            float dl = d * (float)b[i].scales[j];
            for (int l = 0; l < 16; l++)
                y[16 * j + l] = dl * (float)v[16 * j + l];
        }
    }
}

void kn_ref_to_float_q8_K(const void *x, float *y, int64_t n)
{
    const block_q8_K *b = x;
    for (int64_t i = 0; i < n / KN_QK_K; i++, y += KN_QK_K)
        for (int j = 0; j < KN_QK_K; j++)
            y[j] = b[i].d * (float)b[i].qs[j];
}

/* ---- Q8_K activations --------------------------------------------------- */

void kn_ref_from_float_q8_K(const float *x, void *y, int64_t n)
{
    block_q8_K *b = y;
    for (int64_t i = 0; i < n / KN_QK_K; i++, x += KN_QK_K) {
        float amax = 0, max = 0;
        for (int j = 0; j < KN_QK_K; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        if (amax == 0) {
            memset(&b[i], 0, sizeof b[i]);
            continue;
        }
        float iscale = -127.f / max;
        for (int j = 0; j < KN_QK_K; j++) {
            int v = kn_nearest_int(iscale * x[j]);
            b[i].qs[j] = (int8_t)VT_MAX(-128, VT_MIN(127, v));
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++)
                s += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)s;
        }
        b[i].d = 1 / iscale;
    }
}

/* ---- dot products with Q8_K --------------------------------------------- */

float kn_ref_dot_q2_K(int64_t n, const void *w, const void *a)
{
    const block_q2_K *x = w;
    const block_q8_K *q = a;
    uint8_t v[256];
    float s = 0;
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        q2k_values(&x[i], v);
        int sumi = 0, summ = 0;
        for (int j = 0; j < 16; j++) {
            int dot = 0;
            for (int l = 0; l < 16; l++)
                dot += v[16 * j + l] * q[i].qs[16 * j + l];
            sumi += (x[i].scales[j] & 0xF) * dot;
            summ += (x[i].scales[j] >> 4) * q[i].bsums[j];
        }
        float d = q[i].d * h2f(x[i].d), dmin = q[i].d * h2f(x[i].dmin);
        s += d * (float)sumi - dmin * (float)summ;
    }
    return s;
}

float kn_ref_dot_q3_K(int64_t n, const void *w, const void *a)
{
    const block_q3_K *x = w;
    const block_q8_K *q = a;
    int8_t v[256], sc[16];
    float s = 0;
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        q3k_values(&x[i], v);
        kn_q3k_scales(x[i].scales, sc);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int dot = 0;
            for (int l = 0; l < 16; l++)
                dot += v[16 * j + l] * q[i].qs[16 * j + l];
            sumi += sc[j] * dot;
        }
        s += q[i].d * h2f(x[i].d) * (float)sumi;
    }
    return s;
}

static float k4_dot(const uint16_t dd, const uint16_t dm, const uint8_t *scales,
                    const uint8_t *v, const block_q8_K *q)
{
    int sumi = 0, summ = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kn_k4_scale_min(j, scales, &sc, &m);
        int dot = 0;
        for (int l = 0; l < 32; l++)
            dot += v[32 * j + l] * q->qs[32 * j + l];
        sumi += sc * dot;
        summ += m * (q->bsums[2 * j] + q->bsums[2 * j + 1]);
    }
    float d = q->d * h2f(dd), dmin = q->d * h2f(dm);
    return d * (float)sumi - dmin * (float)summ;
}

float kn_ref_dot_q4_K(int64_t n, const void *w, const void *a)
{
    const block_q4_K *x = w;
    const block_q8_K *q = a;
    uint8_t v[256];
    float s = 0;
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        k4_values(x[i].qs, NULL, v);
        s += k4_dot(x[i].d, x[i].dmin, x[i].scales, v, &q[i]);
    }
    return s;
}

float kn_ref_dot_q5_K(int64_t n, const void *w, const void *a)
{
    const block_q5_K *x = w;
    const block_q8_K *q = a;
    uint8_t v[256];
    float s = 0;
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        k4_values(x[i].qs, x[i].qh, v);
        s += k4_dot(x[i].d, x[i].dmin, x[i].scales, v, &q[i]);
    }
    return s;
}

float kn_ref_dot_q6_K(int64_t n, const void *w, const void *a)
{
    const block_q6_K *x = w;
    const block_q8_K *q = a;
    int8_t v[256];
    float s = 0;
    for (int64_t i = 0; i < n / KN_QK_K; i++) {
        q6k_values(&x[i], v);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            int dot = 0;
            for (int l = 0; l < 16; l++)
                dot += v[16 * j + l] * q[i].qs[16 * j + l];
            sumi += x[i].scales[j] * dot;
        }
        s += q[i].d * h2f(x[i].d) * (float)sumi;
    }
    return s;
}
