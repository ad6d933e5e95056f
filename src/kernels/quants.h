/*
 * quants.h - internal to kernels/: the quantized block formats, byte for byte
 * the ones ggml writes into GGUF files, and the declarations shared by the
 * scalar reference kernels (quants_ref*.c), the SIMD kernels
 * (quants_avx2.c, quants_avx512.c) and the dispatcher (dispatch.c).
 *
 * Layouts (fp16 fields are IEEE half bits, little-endian like everything
 * else; "x" is the dequantized value of element i of a block):
 *   q4_0  d, qs[16]: element j (<16) in the low nibble of qs[j], element j+16
 *         in the high nibble; x = d * (q - 8).
 *   q4_1  d, m, qs[16]: nibbles as q4_0; x = d * q + m.
 *   q5_0  d, qh[4], qs[16]: nibbles as q4_0, bit 4 of element j is bit j of
 *         the little-endian u32 qh; x = d * (q - 16).
 *   q5_1  d, m, qh[4], qs[16]: as q5_0; x = d * q + m.
 *   q8_0  d, qs[32] (int8); x = d * q.
 *   q8_1  d, s, qs[32]: as q8_0 plus s = d * sum(q) (activations only).
 *   Super-blocks of 256 (QK_K):
 *   q2_K  scales[16], qs[64], d, dmin: 16 sub-blocks of 16; scales[j] low
 *         nibble = scale, high nibble = min. Element e = 128h + 32k + l is
 *         bits 2k..2k+1 of qs[32h + l]; x = d*sc*q - dmin*m.
 *   q3_K  hmask[32], qs[64], scales[12], d: 16 sub-blocks of 16 with 6-bit
 *         signed scales (see kn_q3k_scales); low two bits of element e as in
 *         q2_K, third bit is bit (e / 32) of hmask[e % 32]; x = d*(sc-32)*(q-4)
 *         where q = low | high<<2.
 *   q4_K  d, dmin, scales[12], qs[128]: 8 sub-blocks of 32 with 6-bit scales
 *         and mins (see kn_k4_scale_min); element 64c + l (l < 32) is the low
 *         nibble of qs[32c + l], element 64c + 32 + l the high nibble;
 *         x = d*sc*q - dmin*m.
 *   q5_K  d, dmin, scales[12], qh[32], qs[128]: as q4_K plus bit 4 of element
 *         64c + l (+32) in bit 2c (2c+1) of qh[l].
 *   q6_K  ql[128], qh[64], scales[16] (int8), d: 16 sub-blocks of 16. For half
 *         h (128 elements) and l < 32: element 128h + l + 32k takes its low
 *         nibble from ql[64h + l + 32(k&1)] (low nibble for k < 2, high for
 *         k >= 2) and its top two bits from bits 2k..2k+1 of qh[32h + l];
 *         x = d*sc*(q - 32).
 *   q8_K  d (float), qs[256], bsums[16] (sum of each 16 quants).
 */
#ifndef VT_KERNELS_QUANTS_H
#define VT_KERNELS_QUANTS_H

#include <stdint.h>
#include <string.h>

#include "kernels.h"

#define KN_QK32 32
#define KN_QK_K 256

typedef struct {
    uint16_t d;
    uint8_t qs[16];
} block_q4_0;
typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} block_q4_1;
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_0;
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_1;
typedef struct {
    uint16_t d;
    int8_t qs[32];
} block_q8_0;
typedef struct {
    uint16_t d, s;
    int8_t qs[32];
} block_q8_1;
typedef struct {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
} block_q2_K;
typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
} block_q3_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
} block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} block_q5_K;
typedef struct {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
} block_q6_K;
typedef struct {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
} block_q8_K;

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "q5_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q8_1) == 36, "q8_1 layout");
_Static_assert(sizeof(block_q2_K) == 84, "q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "q3_K layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K layout");

/* Scale and min (6 bits each) of sub-block j (0..7) of a q4_K/q5_K block:
 * j < 4: low 6 bits of s[j] and s[j+4]; j >= 4: low/high nibble of s[j+4]
 * plus the top two bits of s[j-4] (scale) and s[j] (min) as bits 4..5. */
static inline void kn_k4_scale_min(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* The 16 signed scales (-32..31) of a q3_K block: low nibble of s[j] (j < 8)
 * or high nibble of s[j-8], with bits 4..5 from s[8 + j%4] >> 2*(j/4). */
static inline void kn_q3k_scales(const uint8_t *s, int8_t out[16])
{
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

/* Round to nearest, ties to even (ggml's nearest_int), for |f| < 2^22. Never
 * UB: out-of-range input gives a meaningless but defined value. */
static inline int kn_nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- scalar reference kernels (quants_ref.c, quants_ref_k.c) ---------- */

#define KN_DECL_TYPE(t)                                                                            \
    void kn_ref_to_float_##t(const void *x, float *y, int64_t n);

KN_DECL_TYPE(f32)
KN_DECL_TYPE(f16)
KN_DECL_TYPE(bf16)
KN_DECL_TYPE(q4_0)
KN_DECL_TYPE(q4_1)
KN_DECL_TYPE(q5_0)
KN_DECL_TYPE(q5_1)
KN_DECL_TYPE(q8_0)
KN_DECL_TYPE(q8_1)
KN_DECL_TYPE(q2_K)
KN_DECL_TYPE(q3_K)
KN_DECL_TYPE(q4_K)
KN_DECL_TYPE(q5_K)
KN_DECL_TYPE(q6_K)
KN_DECL_TYPE(q8_K)
#undef KN_DECL_TYPE

/* Activation quantizers (traits from_float): ggml's numerics as llama.cpp
 * runs them on x86 (q8_0/q8_1: d = amax/127, q = round-half-even(x * 127/amax),
 * as its AVX2 code does; q8_K: the reference with -127/max). */
void kn_ref_from_float_f32(const float *x, void *y, int64_t n);
void kn_ref_from_float_f16(const float *x, void *y, int64_t n);
void kn_ref_from_float_bf16(const float *x, void *y, int64_t n);
void kn_ref_from_float_q8_0(const float *x, void *y, int64_t n);
void kn_ref_from_float_q8_1(const float *x, void *y, int64_t n);
void kn_ref_from_float_q8_K(const float *x, void *y, int64_t n);

/* Weight quantizers (kn_quantize_ref). */
void kn_ref_quantize_q4_0(const float *x, void *y, int64_t n);
void kn_ref_quantize_q4_1(const float *x, void *y, int64_t n);
void kn_ref_quantize_q5_0(const float *x, void *y, int64_t n);
void kn_ref_quantize_q5_1(const float *x, void *y, int64_t n);
void kn_ref_quantize_q8_0(const float *x, void *y, int64_t n);
void kn_ref_quantize_q2_K(const float *x, void *y, int64_t n);
void kn_ref_quantize_q3_K(const float *x, void *y, int64_t n);
void kn_ref_quantize_q4_K(const float *x, void *y, int64_t n);
void kn_ref_quantize_q5_K(const float *x, void *y, int64_t n);
void kn_ref_quantize_q6_K(const float *x, void *y, int64_t n);

/* Dot products: weight type x its dot_type. */
float kn_ref_dot_f32(int64_t n, const void *w, const void *a);
float kn_ref_dot_f16(int64_t n, const void *w, const void *a);
float kn_ref_dot_bf16(int64_t n, const void *w, const void *a);
float kn_ref_dot_q4_0(int64_t n, const void *w, const void *a);
float kn_ref_dot_q4_1(int64_t n, const void *w, const void *a);
float kn_ref_dot_q5_0(int64_t n, const void *w, const void *a);
float kn_ref_dot_q5_1(int64_t n, const void *w, const void *a);
float kn_ref_dot_q8_0(int64_t n, const void *w, const void *a);
float kn_ref_dot_q2_K(int64_t n, const void *w, const void *a);
float kn_ref_dot_q3_K(int64_t n, const void *w, const void *a);
float kn_ref_dot_q4_K(int64_t n, const void *w, const void *a);
float kn_ref_dot_q5_K(int64_t n, const void *w, const void *a);
float kn_ref_dot_q6_K(int64_t n, const void *w, const void *a);

/* ---- SIMD levels: each overrides the entries it accelerates in a table
 * that starts as a copy of the level below (indexed by vt_type). ---------- */
void kn_quants_avx2_fill(kn_traits *tab);
void kn_quants_avx512_fill(kn_traits *tab);
void kn_gemv_avx512_fill(kn_traits *tab); /* vec_dot_rows (gemv_avx512.c) */
void kn_gemm_avx512_fill(kn_traits *tab); /* gemm (gemm_avx512.c) */
void kn_gemm_avx2_fill(kn_traits *tab);   /* gemm (gemm_avx2.c) */
void kn_amx_fill(kn_traits *tab);         /* the AMX level's Q8_0 and Q4_K (amx.c) */
void kn_vnni_fill(kn_traits *tab);        /* the AVX-512 level's Q8_0/Q4_K/Q6_K (amx.c) */
bool kn_amx_usable(void);                 /* asks Linux for the tile registers */

/* The AMX level's numerics in scalar C (quants_canon.c). */
float kn_canon_dot_q8_0(int64_t n, const void *w, const void *a);
float kn_canon_dot_q4_K(int64_t n, const void *w, const void *a);
float kn_canon_dot_q6_K(int64_t n, const void *w, const void *a);

#endif
