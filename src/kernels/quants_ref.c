/*
 * quants_ref.c - scalar reference kernels for the float types (F32, F16,
 * BF16) and the 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1):
 * dequantization, the activation quantizers for Q8_0/Q8_1/F16/BF16, the
 * weight quantizers (the same simple round-to-grid rules as ggml's
 * reference, so Q8_0/Q4_0/... files come out as llama-quantize writes them)
 * and the dot products against each type's activation format. Every SIMD
 * kernel is tested against these.
 */
#include <float.h>
#include <math.h>

#include "kernels/quants.h"
#include "util/util.h"

/* ---- float types ------------------------------------------------------ */

void kn_ref_to_float_f32(const void *x, float *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void kn_ref_to_float_f16(const void *x, float *y, int64_t n)
{
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = vt_fp16_to_fp32(h);
    }
}

void kn_ref_to_float_bf16(const void *x, float *y, int64_t n)
{
    const uint8_t *p = x;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        y[i] = vt_bf16_to_fp32(h);
    }
}

void kn_ref_from_float_f32(const float *x, void *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void kn_ref_from_float_f16(const float *x, void *y, int64_t n)
{
    uint8_t *p = y;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = vt_fp32_to_fp16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

void kn_ref_from_float_bf16(const float *x, void *y, int64_t n)
{
    uint8_t *p = y;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = vt_fp32_to_bf16(x[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

float kn_ref_dot_f32(int64_t n, const void *w, const void *a)
{
    const float *x = w, *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i] * y[i];
    return s;
}

float kn_ref_dot_f16(int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w, *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t hx, hy;
        memcpy(&hx, x + 2 * i, 2);
        memcpy(&hy, y + 2 * i, 2);
        s += vt_fp16_to_fp32(hx) * vt_fp16_to_fp32(hy);
    }
    return s;
}

float kn_ref_dot_bf16(int64_t n, const void *w, const void *a)
{
    const uint8_t *x = w, *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t hx, hy;
        memcpy(&hx, x + 2 * i, 2);
        memcpy(&hy, y + 2 * i, 2);
        s += vt_bf16_to_fp32(hx) * vt_bf16_to_fp32(hy);
    }
    return s;
}

/* ---- helpers ----------------------------------------------------------- */

static inline float h2f(uint16_t h)
{
    return vt_fp16_to_fp32(h);
}

/* (int)(v) truncating toward zero, with v clamped into [lo, hi] first so that
 * no input (not even nan, which maps to lo) makes the conversion undefined. */
static inline int trunc_clamp(float v, int lo, int hi)
{
    if (!(v >= (float)lo))
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)v;
}

static inline int round_clamp(float v, int lo, int hi)
{
    if (!(v >= (float)lo))
        return lo;
    if (v >= (float)hi)
        return hi;
    return (int)roundf(v);
}

/* Largest |x[i]| of 32 values, and the signed value that attains it first. */
static float absmax32(const float *x, float *signed_max)
{
    float amax = 0, m = 0;
    for (int j = 0; j < 32; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            m = x[j];
        }
    }
    if (signed_max)
        *signed_max = m;
    return amax;
}

/* ---- Q4_0 --------------------------------------------------------------- */

void kn_ref_to_float_q4_0(const void *x, float *y, int64_t n)
{
    const block_q4_0 *b = x;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)((b[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void kn_ref_quantize_q4_0(const float *x, void *y, int64_t n)
{
    block_q4_0 *b = y;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float m;
        absmax32(x, &m);
        float d = m / -8, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = vt_fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            int lo = VT_MIN(15, trunc_clamp(x[j] * id + 8.5f, 0, 15));
            int hi = VT_MIN(15, trunc_clamp(x[j + 16] * id + 8.5f, 0, 15));
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

float kn_ref_dot_q4_0(int64_t n, const void *w, const void *a)
{
    const block_q4_0 *x = w;
    const block_q8_0 *q = a;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            sum += ((x[i].qs[j] & 0xF) - 8) * q[i].qs[j];
            sum += ((x[i].qs[j] >> 4) - 8) * q[i].qs[j + 16];
        }
        s += (float)sum * (h2f(x[i].d) * h2f(q[i].d));
    }
    return s;
}

/* ---- Q4_1 --------------------------------------------------------------- */

void kn_ref_to_float_q4_1(const void *x, float *y, int64_t n)
{
    const block_q4_1 *b = x;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (float)(b[i].qs[j] & 0xF) * d + m;
            y[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void minmax32(const float *x, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo)
            lo = x[j];
        if (x[j] > hi)
            hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

void kn_ref_quantize_q4_1(const float *x, void *y, int64_t n)
{
    block_q4_1 *b = y;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float mn, mx;
        minmax32(x, &mn, &mx);
        float d = (mx - mn) / 15, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = vt_fp32_to_fp16(d);
        b[i].m = vt_fp32_to_fp16(mn);
        for (int j = 0; j < 16; j++) {
            int lo = trunc_clamp((x[j] - mn) * id + 0.5f, 0, 15);
            int hi = trunc_clamp((x[j + 16] - mn) * id + 0.5f, 0, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

float kn_ref_dot_q4_1(int64_t n, const void *w, const void *a)
{
    const block_q4_1 *x = w;
    const block_q8_1 *q = a;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) {
            sum += (x[i].qs[j] & 0xF) * q[i].qs[j];
            sum += (x[i].qs[j] >> 4) * q[i].qs[j + 16];
        }
        s += (float)sum * (h2f(x[i].d) * h2f(q[i].d)) + h2f(x[i].m) * h2f(q[i].s);
    }
    return s;
}

/* ---- Q5_0 / Q5_1 -------------------------------------------------------- */

static inline uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The 32 five-bit values of a q5 block, 0..31. */
static inline void q5_values(const uint8_t *qs, const uint8_t *qh4, int v[32])
{
    uint32_t qh = load_u32(qh4);
    for (int j = 0; j < 16; j++) {
        v[j] = (qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
        v[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

void kn_ref_to_float_q5_0(const void *x, float *y, int64_t n)
{
    const block_q5_0 *b = x;
    int v[32];
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = h2f(b[i].d);
        q5_values(b[i].qs, b[i].qh, v);
        for (int j = 0; j < 32; j++)
            y[j] = (float)(v[j] - 16) * d;
    }
}

void kn_ref_to_float_q5_1(const void *x, float *y, int64_t n)
{
    const block_q5_1 *b = x;
    int v[32];
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = h2f(b[i].d), m = h2f(b[i].m);
        q5_values(b[i].qs, b[i].qh, v);
        for (int j = 0; j < 32; j++)
            y[j] = (float)v[j] * d + m;
    }
}

static void pack_q5(const int v[32], uint8_t *qs, uint8_t *qh4)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((v[j] & 0xF) | ((v[j + 16] & 0xF) << 4));
        qh |= (uint32_t)((v[j] >> 4) & 1) << j;
        qh |= (uint32_t)((v[j + 16] >> 4) & 1) << (j + 16);
    }
    memcpy(qh4, &qh, 4);
}

void kn_ref_quantize_q5_0(const float *x, void *y, int64_t n)
{
    block_q5_0 *b = y;
    int v[32];
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float m;
        absmax32(x, &m);
        float d = m / -16, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = vt_fp32_to_fp16(d);
        for (int j = 0; j < 32; j++)
            v[j] = trunc_clamp(x[j] * id + 16.5f, 0, 31);
        pack_q5(v, b[i].qs, b[i].qh);
    }
}

void kn_ref_quantize_q5_1(const float *x, void *y, int64_t n)
{
    block_q5_1 *b = y;
    int v[32];
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float mn, mx;
        minmax32(x, &mn, &mx);
        float d = (mx - mn) / 31, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = vt_fp32_to_fp16(d);
        b[i].m = vt_fp32_to_fp16(mn);
        for (int j = 0; j < 32; j++)
            v[j] = trunc_clamp((x[j] - mn) * id + 0.5f, 0, 31);
        pack_q5(v, b[i].qs, b[i].qh);
    }
}

float kn_ref_dot_q5_0(int64_t n, const void *w, const void *a)
{
    const block_q5_0 *x = w;
    const block_q8_0 *q = a;
    int v[32];
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        q5_values(x[i].qs, x[i].qh, v);
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += (v[j] - 16) * q[i].qs[j];
        s += (float)sum * (h2f(x[i].d) * h2f(q[i].d));
    }
    return s;
}

float kn_ref_dot_q5_1(int64_t n, const void *w, const void *a)
{
    const block_q5_1 *x = w;
    const block_q8_1 *q = a;
    int v[32];
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        q5_values(x[i].qs, x[i].qh, v);
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += v[j] * q[i].qs[j];
        s += (float)sum * (h2f(x[i].d) * h2f(q[i].d)) + h2f(x[i].m) * h2f(q[i].s);
    }
    return s;
}

/* ---- Q8_0 / Q8_1 -------------------------------------------------------- */

void kn_ref_to_float_q8_0(const void *x, float *y, int64_t n)
{
    const block_q8_0 *b = x;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 32; j++)
            y[j] = (float)b[i].qs[j] * d;
    }
}

void kn_ref_to_float_q8_1(const void *x, float *y, int64_t n)
{
    const block_q8_1 *b = x;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = h2f(b[i].d);
        for (int j = 0; j < 32; j++)
            y[j] = (float)b[i].qs[j] * d;
    }
}

/* Weights: ggml's reference rule, q = roundf(x / d) with d = amax/127. */
void kn_ref_quantize_q8_0(const float *x, void *y, int64_t n)
{
    block_q8_0 *b = y;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = absmax32(x, NULL);
        float d = amax / 127, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = vt_fp32_to_fp16(d);
        for (int j = 0; j < 32; j++)
            b[i].qs[j] = (int8_t)round_clamp(x[j] * id, -127, 127);
    }
}

/* Activations: what llama.cpp's x86 quantize_row_q8_0/q8_1 compute: the scale
 * is amax/127, the multiplier 127/amax (not 1/d), rounding half to even. The
 * products and roundings are the same operations as the SIMD versions', so
 * all levels write identical bytes. Returns the sum of the quants. */
static int q8_block_act(const float *x, uint16_t *d16, int8_t *qs, float *dout)
{
    float amax = 0;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.f;
    float id = amax != 0 ? 127.f / amax : 0.0f;
    *d16 = vt_fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        int v = kn_nearest_int(x[j] * id);
        v = VT_MAX(-128, VT_MIN(127, v));
        qs[j] = (int8_t)v;
        sum += v;
    }
    *dout = d;
    return sum;
}

void kn_ref_from_float_q8_0(const float *x, void *y, int64_t n)
{
    block_q8_0 *b = y;
    float d;
    for (int64_t i = 0; i < n / 32; i++, x += 32)
        q8_block_act(x, &b[i].d, b[i].qs, &d);
}

void kn_ref_from_float_q8_1(const float *x, void *y, int64_t n)
{
    block_q8_1 *b = y;
    float d;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        int sum = q8_block_act(x, &b[i].d, b[i].qs, &d);
        b[i].s = vt_fp32_to_fp16(d * (float)sum);
    }
}

float kn_ref_dot_q8_0(int64_t n, const void *w, const void *a)
{
    const block_q8_0 *x = w, *q = a;
    float s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sum = 0;
        for (int j = 0; j < 32; j++)
            sum += x[i].qs[j] * q[i].qs[j];
        s += (float)sum * (h2f(x[i].d) * h2f(q[i].d));
    }
    return s;
}
