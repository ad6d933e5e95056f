/*
 * test_quants.c - the per-type arithmetic of kernels/: block sizes, hand-
 * built blocks decoded from the documented layouts, the activation
 * quantizers' exact numerics (ggml's x86 rounding), every SIMD level against
 * the scalar reference (to_float and from_float bit-exact, vec_dot within a
 * float-reordering tolerance), vec_dot_n and vec_dot_rows bit-identical to
 * vec_dot at every level, kn_matmul equal to vec_dot per token and row with
 * any thread count, quantize -> dequantize error bounds per type, quantized dot products
 * against float ones, and a cross-check against real GGUF files written by
 * llama.cpp (Q8_0 and Q4_K_M against F16) when the fixtures are present. A
 * minimal GGUF reader lives here so that this test does not depend on the
 * gguf module.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "test.h"
#include "util/util.h"

static const vt_type weight_types[] = {
    VT_TYPE_F32,  VT_TYPE_F16,  VT_TYPE_BF16, VT_TYPE_Q4_0, VT_TYPE_Q4_1,
    VT_TYPE_Q5_0, VT_TYPE_Q5_1, VT_TYPE_Q8_0, VT_TYPE_Q2_K, VT_TYPE_Q3_K,
    VT_TYPE_Q4_K, VT_TYPE_Q5_K, VT_TYPE_Q6_K,
};
static const vt_type act_types[] = {VT_TYPE_Q8_0, VT_TYPE_Q8_1, VT_TYPE_Q8_K, VT_TYPE_F16,
                                    VT_TYPE_BF16, VT_TYPE_F32};
static const char *isa_name[] = {"scalar", "avx2", "avx512", "amx"};

/* Buffers deliberately not 32/64-byte aligned (but aligned for the block
 * structs), so that SIMD code cannot rely on alignment. */
typedef struct {
    void *base;
    void *p;
} buf;

static buf buf_new(size_t n)
{
    buf b;
    b.base = calloc(1, n + 64);
    if (!b.base) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    b.p = (char *)b.base + 4;
    return b;
}

static void buf_free(buf *b)
{
    free(b->base);
    b->base = b->p = NULL;
}

static const char *tname(vt_type t)
{
    return vt_type_get((uint32_t)t)->name;
}

/* Gaussian values; when `zeros`, also a few outliers and an all-zero stretch. */
static void fill_data(float *x, int64_t n, uint64_t seed, float sigma, bool zeros)
{
    vt_rng r = {seed};
    for (int64_t i = 0; i < n; i++) {
        x[i] = sigma * vt_rng_normal(&r);
        if (zeros && vt_rng_uniform(&r) < 0.002f)
            x[i] *= 8;
    }
    if (zeros && n >= 512)
        memset(x + 256, 0, 256 * sizeof(float));
}

static double rms(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s / (double)n);
}

/* ---- layout ------------------------------------------------------------ */

static void test_block_sizes(void)
{
    static const struct {
        vt_type t;
        size_t size;
    } s[] = {
        {VT_TYPE_Q4_0, sizeof(block_q4_0)}, {VT_TYPE_Q4_1, sizeof(block_q4_1)},
        {VT_TYPE_Q5_0, sizeof(block_q5_0)}, {VT_TYPE_Q5_1, sizeof(block_q5_1)},
        {VT_TYPE_Q8_0, sizeof(block_q8_0)}, {VT_TYPE_Q8_1, sizeof(block_q8_1)},
        {VT_TYPE_Q2_K, sizeof(block_q2_K)}, {VT_TYPE_Q3_K, sizeof(block_q3_K)},
        {VT_TYPE_Q4_K, sizeof(block_q4_K)}, {VT_TYPE_Q5_K, sizeof(block_q5_K)},
        {VT_TYPE_Q6_K, sizeof(block_q6_K)}, {VT_TYPE_Q8_K, sizeof(block_q8_K)},
    };
    for (size_t i = 0; i < VT_ARRAY_LEN(s); i++)
        CHECK_EQ_INT(vt_type_get((uint32_t)s[i].t)->size, s[i].size);
}

static void test_dispatch(void)
{
    kn_init();
    kn_isa a = kn_active_isa();
    CHECK(a >= KN_ISA_SCALAR && a < KN_ISA_COUNT);
    CHECK(kn_traits_isa(VT_TYPE_Q4_K, KN_ISA_SCALAR) != NULL);
    CHECK(kn_traits_get(VT_TYPE_IQ2_XXS) == NULL);
    CHECK(kn_traits_get(VT_TYPE_I32) == NULL);
    for (size_t i = 0; i < VT_ARRAY_LEN(weight_types); i++) {
        const kn_traits *tr = kn_traits_get(weight_types[i]);
        CHECK(tr && tr->to_float && tr->from_float && tr->vec_dot);
        if (!tr)
            continue;
        CHECK_EQ_INT(tr->type, weight_types[i]);
        const kn_traits *dt = kn_traits_get(tr->dot_type);
        CHECK(dt && dt->from_float);
    }
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_Q4_0)->dot_type, VT_TYPE_Q8_0);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_Q5_0)->dot_type, VT_TYPE_Q8_0);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_Q8_0)->dot_type, VT_TYPE_Q8_0);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_Q4_1)->dot_type, VT_TYPE_Q8_1);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_Q5_1)->dot_type, VT_TYPE_Q8_1);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_Q2_K)->dot_type, VT_TYPE_Q8_K);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_Q6_K)->dot_type, VT_TYPE_Q8_K);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_F16)->dot_type, VT_TYPE_F16);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_BF16)->dot_type, VT_TYPE_BF16);
    CHECK_EQ_INT(kn_traits_get(VT_TYPE_F32)->dot_type, VT_TYPE_F32);

    float x[256] = {0};
    uint8_t y[512];
    CHECK_EQ_INT(kn_quantize_ref(VT_TYPE_IQ2_XXS, x, y, 256), VT_ERR_UNSUPPORTED);
    CHECK_EQ_INT(kn_quantize_ref(VT_TYPE_Q8_K, x, y, 256), VT_ERR_UNSUPPORTED);
    CHECK_EQ_INT(kn_quantize_ref(VT_TYPE_Q4_K, x, y, 100), VT_ERR_INVALID);
    CHECK_EQ_INT(kn_quantize_ref(VT_TYPE_Q4_K, x, y, 256), VT_OK);
    fprintf(stderr, "  (active ISA: %s)\n", isa_name[a]);
}

/* One test per SIMD level: the level's kernels exist for every weight type
 * (so that the *_levels tests below compare them with the scalar ones), or
 * the CPU lacks the level and it is skipped, named. */
static void check_level(kn_isa l)
{
    if (!kn_traits_isa(VT_TYPE_F32, l)) {
        test_skip_hw("%s: its kernels are not compared with the scalar ones", isa_name[l]);
        return;
    }
    for (size_t i = 0; i < VT_ARRAY_LEN(weight_types); i++) {
        const kn_traits *tr = kn_traits_isa(weight_types[i], l);
        CHECKF(tr && tr->to_float && tr->from_float && tr->vec_dot && tr->vec_dot_n &&
                   tr->vec_dot_rows,
               "%s: %s has no complete traits", isa_name[l], tname(weight_types[i]));
    }
    fprintf(stderr, "  isa %s: kernels compared with the scalar ones\n", isa_name[l]);
}

static void test_level_avx2(void) { check_level(KN_ISA_AVX2); }
static void test_level_avx512(void) { check_level(KN_ISA_AVX512); }

/* ---- hand-built blocks ------------------------------------------------- */

/* Dequantizes with every level and checks they agree with the scalar one. */
static void dequant_all(vt_type t, const void *blk, int64_t n, float *out)
{
    kn_traits_isa(t, KN_ISA_SCALAR)->to_float(blk, out, n);
    float tmp[256];
    for (int l = 1; l < KN_ISA_COUNT; l++) {
        const kn_traits *tr = kn_traits_isa(t, (kn_isa)l);
        if (!tr)
            continue;
        tr->to_float(blk, tmp, n);
        CHECKF(memcmp(tmp, out, (size_t)n * 4) == 0, "%s to_float differs at %s", tname(t),
               isa_name[l]);
    }
}

static void test_hand_q4_0_q8_0(void)
{
    block_q4_0 b;
    b.d = 0x3800; /* 0.5 */
    for (int j = 0; j < 16; j++)
        b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    dequant_all(VT_TYPE_Q4_0, &b, 32, y);
    CHECK(y[0] == -4.0f);  /* (0 - 8) * 0.5 */
    CHECK(y[15] == 3.5f);  /* (15 - 8) * 0.5 */
    CHECK(y[16] == 3.5f);  /* high nibble of qs[0] = 15 */
    CHECK(y[31] == -4.0f); /* high nibble of qs[15] = 0 */
    CHECK(y[9] == 0.5f);

    block_q8_0 c;
    c.d = 0x3400; /* 0.25 */
    for (int j = 0; j < 32; j++)
        c.qs[j] = (int8_t)(j - 16);
    dequant_all(VT_TYPE_Q8_0, &c, 32, y);
    CHECK(y[0] == -4.0f && y[16] == 0.0f && y[31] == 3.75f);
}

static void test_hand_q4_1_q5(void)
{
    block_q4_1 a;
    a.d = 0x3800;  /* 0.5 */
    a.m = 0xbc00;  /* -1 */
    for (int j = 0; j < 16; j++)
        a.qs[j] = (uint8_t)(j | (3 << 4));
    float y[32];
    dequant_all(VT_TYPE_Q4_1, &a, 32, y);
    CHECK(y[0] == -1.0f && y[5] == 1.5f && y[20] == 0.5f);

    /* q5_0: qh = 0x80000001: element 0 and element 31 get bit 4 */
    block_q5_0 b;
    b.d = 0x3c00; /* 1 */
    memset(b.qs, 0x21, 16); /* low nibble 1, high nibble 2 */
    b.qh[0] = 0x01;
    b.qh[1] = 0x00;
    b.qh[2] = 0x00;
    b.qh[3] = 0x80;
    dequant_all(VT_TYPE_Q5_0, &b, 32, y);
    CHECK(y[0] == 1.0f);   /* (1 | 16) - 16 */
    CHECK(y[1] == -15.0f); /* 1 - 16 */
    CHECK(y[16] == -14.0f); /* 2 - 16 */
    CHECK(y[31] == 2.0f);  /* (2 | 16) - 16 */

    block_q5_1 c;
    c.d = 0x4000; /* 2 */
    c.m = 0x3c00; /* 1 */
    memset(c.qs, 0x21, 16);
    memset(c.qh, 0, 4);
    c.qh[2] = 0x01; /* bit 16: element 16 */
    dequant_all(VT_TYPE_Q5_1, &c, 32, y);
    CHECK(y[0] == 3.0f);   /* 1*2 + 1 */
    CHECK(y[16] == 37.0f); /* (2|16)*2 + 1 */
    CHECK(y[17] == 5.0f);
}

static void test_hand_q4_K(void)
{
    /* sub-block scales 1,2,3,4,33,34,35,63 and mins 0,1,2,3,17,18,19,40 */
    static const uint8_t scales[12] = {0x81, 0x82, 0x83, 0xc4, 0x40, 0x41,
                                       0x42, 0x83, 0x11, 0x22, 0x33, 0x8f};
    static const int sc[8] = {1, 2, 3, 4, 33, 34, 35, 63};
    static const int mn[8] = {0, 1, 2, 3, 17, 18, 19, 40};
    block_q4_K b;
    b.d = 0x3c00;    /* 1 */
    b.dmin = 0x3800; /* 0.5 */
    memcpy(b.scales, scales, 12);
    for (int i = 0; i < 128; i++)
        b.qs[i] = (uint8_t)((i & 15) | ((15 - (i & 15)) << 4));
    for (int j = 0; j < 8; j++) {
        uint8_t s, m;
        kn_k4_scale_min(j, b.scales, &s, &m);
        CHECK_EQ_INT(s, sc[j]);
        CHECK_EQ_INT(m, mn[j]);
    }
    float y[256];
    dequant_all(VT_TYPE_Q4_K, &b, 256, y);
    CHECK(y[0] == 0.0f);              /* 1*0 - 0 */
    CHECK(y[5] == 5.0f);              /* sub-block 0: 1*5 */
    CHECK(y[32] == 2 * 15 - 0.5f);    /* sub-block 1: high nibble of qs[0] = 15 */
    CHECK(y[64 + 3] == 3 * 3 - 1.0f); /* sub-block 2: low nibble of qs[32+3] */
    CHECK(y[255] == 63 * 0 - 20.0f);  /* sub-block 7: high nibble of qs[127] = 0 */
    CHECK(y[224] == 63 * 15 - 20.0f); /* high nibble of qs[96] = 15 */
    for (int e = 0; e < 256; e++) {
        int c = e / 64, w = e % 64, j = 2 * c + (w >= 32);
        int q = w < 32 ? (w & 15) : 15 - ((w - 32) & 15);
        CHECK(y[e] == (float)(sc[j] * q) - 0.5f * (float)mn[j]);
    }

    /* the same block as q5_K with qh bit 2c (low half) set for l == 1 */
    block_q5_K c;
    c.d = b.d;
    c.dmin = b.dmin;
    memcpy(c.scales, scales, 12);
    memcpy(c.qs, b.qs, 128);
    memset(c.qh, 0, 32);
    c.qh[1] = 0x01 | 0x08; /* element 1 (c=0 low) and element 64+32+1 (c=1 high) */
    dequant_all(VT_TYPE_Q5_K, &c, 256, y);
    CHECK(y[1] == 1 * (1 + 16));
    CHECK(y[2] == 2.0f);
    CHECK(y[97] == 4 * (14 + 16) - 1.5f);
}

static void test_hand_q6_K(void)
{
    block_q6_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3800; /* 0.5 */
    for (int j = 0; j < 16; j++)
        b.scales[j] = (int8_t)(j - 8);
    /* element 0: ql[0] low nibble 5, qh[0] bits 0-1 = 2 -> 5 + 32 - 32 = 5, scale -8 */
    b.ql[0] = 0x05 | 0x30; /* high nibble 3: element 64 */
    b.qh[0] = 0x02 | (0x3 << 4);   /* element 64 gets top bits 3: 3 | 48 = 51 */
    /* element 32+1: ql[33] low nibble, qh[1] bits 2-3 */
    b.ql[33] = 0x0f;
    b.qh[1] = 0x1 << 2;
    /* element 128 + 96 + 31: ql[64+32+31] high nibble, qh[32+31] bits 6-7 */
    b.ql[127] = 0xa0;
    b.qh[63] = 0x3 << 6;
    float y[256];
    dequant_all(VT_TYPE_Q6_K, &b, 256, y);
    CHECK(y[0] == 0.5f * -8 * (5 + 32 - 32));
    CHECK(y[64] == 0.5f * (4 - 8) * (51 - 32));
    CHECK(y[33] == 0.5f * (2 - 8) * (15 + 16 - 32));
    CHECK(y[255] == 0.5f * (15 - 8) * (10 + 48 - 32));
    CHECK(y[1] == 0.5f * -8 * -32);
}

static void test_hand_q2_q3_K(void)
{
    block_q2_K b;
    memset(&b, 0, sizeof b);
    b.d = 0x3c00;    /* 1 */
    b.dmin = 0x3800; /* 0.5 */
    for (int j = 0; j < 16; j++)
        b.scales[j] = (uint8_t)((j & 15) | ((15 - j) << 4));
    b.qs[0] = 0x1b;  /* elements 0, 32, 64, 96 = 3, 2, 1, 0 */
    b.qs[32 + 17] = 0xc0; /* element 128 + 96 + 17 = 3 */
    float y[256];
    dequant_all(VT_TYPE_Q2_K, &b, 256, y);
    CHECK(y[0] == 0 * 3 - 0.5f * 15);
    CHECK(y[32] == 2 * 2 - 0.5f * 13);
    CHECK(y[64] == 4 * 1 - 0.5f * 11);
    CHECK(y[96] == 6 * 0 - 0.5f * 9);
    CHECK(y[241] == 15 * 3 - 0.5f * 0);

    block_q3_K c;
    memset(&c, 0, sizeof c);
    c.d = 0x3c00; /* 1 */
    /* scales: j=0 -> 0x21 (33 - 32 = 1), j=5 -> low 0x3, hi bits (s[9] >> 2) & 3 = 1 -> 19-32 = -13,
     * j=15 -> high nibble of s[7] = 0xf, bits (s[11] >> 6) & 3 = 3 -> 63 - 32 = 31 */
    c.scales[0] = 0x01;
    c.scales[8] = 0x02;
    c.scales[5] = 0x03;
    c.scales[9] = 0x1 << 2;
    c.scales[7] = 0xf0;
    c.scales[11] = 0x3 << 6;
    int8_t s[16];
    kn_q3k_scales(c.scales, s);
    CHECK_EQ_INT(s[0], 1);
    CHECK_EQ_INT(s[5], -13);
    CHECK_EQ_INT(s[15], 31);
    CHECK_EQ_INT(s[1], -32);
    /* element 0: low bits 3, hmask bit 0 set -> 3 + 4 - 4 = 3; element 1: 0 - 4 */
    c.qs[0] = 0x03;
    c.hmask[0] = 0x01;
    /* element 255 = 128 + 96 + 31: qs[32+31] bits 6-7, hmask[31] bit 7 */
    c.qs[63] = 0x80;
    c.hmask[31] = 0x80;
    /* element 80 (sub-block 5) = 64 + 16: qs[16] bits 4-5 = 1, hmask[16] bit 2 clear -> 1 - 4 */
    c.qs[16] = 0x10;
    dequant_all(VT_TYPE_Q3_K, &c, 256, y);
    CHECK(y[0] == 3.0f);
    CHECK(y[1] == 1 * -4.0f);
    CHECK(y[255] == 31 * 2.0f);
    CHECK(y[80] == -13 * -3.0f);
}

/* ---- activation quantizers --------------------------------------------- */

static void test_q8_act_numerics(void)
{
    /* amax 127: multiplier 1, ties round to even as llama.cpp's AVX2 code */
    float x[32] = {127.f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 3.49f, -127.f, 126.5f};
    block_q8_0 b;
    kn_ref_from_float_q8_0(x, &b, 32);
    CHECK_EQ_INT(b.d, 0x3c00);
    static const int want[10] = {127, 0, 2, 2, 0, -2, -2, 3, -127, 126};
    for (int j = 0; j < 10; j++)
        CHECK_EQ_INT(b.qs[j], want[j]);
    block_q8_1 c;
    kn_ref_from_float_q8_1(x, &c, 32);
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        CHECK_EQ_INT(c.qs[j], b.qs[j]);
        sum += c.qs[j];
    }
    CHECK_EQ_INT(c.s, vt_fp32_to_fp16((float)sum));

    /* the multiplier is 127/amax, not 1/d: 0.3*127/0.3 etc. */
    float z[32] = {0};
    memset(z, 0, sizeof z);
    z[0] = 0.3f;
    z[1] = 0.15f;
    kn_ref_from_float_q8_0(z, &b, 32);
    CHECK_EQ_INT(b.d, vt_fp32_to_fp16(0.3f / 127.f));
    CHECK_EQ_INT(b.qs[0], 127);
    CHECK_EQ_INT(b.qs[1], kn_nearest_int(0.15f * (127.f / 0.3f)));

    /* all zero */
    memset(z, 0, sizeof z);
    kn_ref_from_float_q8_0(z, &b, 32);
    CHECK_EQ_INT(b.d, 0);
    for (int j = 0; j < 32; j++)
        CHECK_EQ_INT(b.qs[j], 0);
}

static void test_q8_K_numerics(void)
{
    float x[256];
    for (int j = 0; j < 256; j++)
        x[j] = (float)(j % 17) * 0.25f - 1.0f;
    x[7] = -4.0f; /* largest magnitude is negative: iscale = -127/-4 */
    x[9] = 4.0f;  /* same magnitude later: the first one wins */
    block_q8_K b;
    kn_ref_from_float_q8_K(x, &b, 256);
    float iscale = -127.f / -4.0f;
    CHECK(b.d == 1 / iscale);
    CHECK_EQ_INT(b.qs[7], -127);
    CHECK_EQ_INT(b.qs[9], 127);
    for (int j = 0; j < 256; j++)
        CHECK_EQ_INT(b.qs[j], VT_MIN(127, kn_nearest_int(iscale * x[j])));
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int l = 0; l < 16; l++)
            s += b.qs[16 * g + l];
        CHECK_EQ_INT(b.bsums[g], s);
    }
    /* positive max: q of the max is -127 (ggml's sign convention) */
    x[7] = 0;
    kn_ref_from_float_q8_K(x, &b, 256);
    CHECK_EQ_INT(b.qs[9], -127);
    CHECK(b.d < 0);
    memset(x, 0, sizeof x);
    kn_ref_from_float_q8_K(x, &b, 256);
    CHECK(b.d == 0.0f);
    CHECK_EQ_INT(b.bsums[3], 0);
}

/* Every level's from_float writes exactly the scalar bytes. */
static void test_from_float_levels(void)
{
    static const int64_t sizes[] = {256, 512, 4096 + 256, 11008};
    for (size_t s = 0; s < VT_ARRAY_LEN(sizes); s++) {
        int64_t n = sizes[s];
        buf x = buf_new((size_t)n * 4);
        float *xf = x.p;
        fill_data(xf, n, 100 + s, s == 3 ? 1e-3f : 1.0f, true);
        /* exact ties for the rounding */
        for (int j = 0; j < 32; j++)
            xf[j] = (float)(j - 16) * 0.5f;
        xf[0] = 127.f;
        for (size_t a = 0; a < VT_ARRAY_LEN(act_types); a++) {
            vt_type t = act_types[a];
            size_t bytes = vt_row_size(t, n);
            buf ref = buf_new(bytes), got = buf_new(bytes);
            kn_traits_isa(t, KN_ISA_SCALAR)->from_float(xf, ref.p, n);
            for (int l = 1; l < KN_ISA_COUNT; l++) {
                const kn_traits *tr = kn_traits_isa(t, (kn_isa)l);
                if (!tr)
                    continue;
                memset(got.p, 0xa5, bytes);
                tr->from_float(xf, got.p, n);
                CHECKF(memcmp(got.p, ref.p, bytes) == 0, "%s from_float %s n=%lld differs",
                       tname(t), isa_name[l], (long long)n);
            }
            buf_free(&ref);
            buf_free(&got);
        }
        buf_free(&x);
    }
}

/* ---- to_float / vec_dot across levels ---------------------------------- */

static void test_to_float_levels(void)
{
    const int64_t n = 4096;
    buf x = buf_new(n * 4), q = buf_new(n * 4), ref = buf_new(n * 4), got = buf_new(n * 4);
    fill_data(x.p, n, 7, 0.5f, true);
    for (size_t i = 0; i < VT_ARRAY_LEN(weight_types); i++) {
        vt_type t = weight_types[i];
        CHECK_EQ_INT(kn_quantize_ref(t, x.p, q.p, n), VT_OK);
        kn_traits_isa(t, KN_ISA_SCALAR)->to_float(q.p, ref.p, n);
        for (int l = 1; l < KN_ISA_COUNT; l++) {
            const kn_traits *tr = kn_traits_isa(t, (kn_isa)l);
            if (!tr)
                continue;
            memset(got.p, 0, n * 4);
            tr->to_float(q.p, got.p, n);
            CHECKF(memcmp(got.p, ref.p, n * 4) == 0, "%s to_float %s differs", tname(t),
                   isa_name[l]);
        }
    }
    buf_free(&x);
    buf_free(&q);
    buf_free(&ref);
    buf_free(&got);
}

/* vec_dot at every level against the scalar one, and the scalar one against
 * the float dot of both dequantized rows (the integer parts are exact, so
 * only float rounding separates them). */
static void check_dots(vt_type t, int64_t n, uint64_t seed)
{
    const kn_traits *sc = kn_traits_isa(t, KN_ISA_SCALAR);
    const kn_traits *dt = kn_traits_isa(sc->dot_type, KN_ISA_SCALAR);
    buf x = buf_new(n * 4), a = buf_new(n * 4), w = buf_new(n * 4), aq = buf_new(n * 4);
    buf wd = buf_new(n * 4), ad = buf_new(n * 4);
    fill_data(x.p, n, seed, 0.02f, true);
    fill_data(a.p, n, seed + 1, 1.5f, false);
    CHECK_EQ_INT(kn_quantize_ref(t, x.p, w.p, n), VT_OK);
    dt->from_float(a.p, aq.p, n);
    sc->to_float(w.p, wd.p, n);
    dt->to_float(aq.p, ad.p, n);
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        double p = (double)((float *)wd.p)[i] * ((float *)ad.p)[i];
        exact += p;
        mag += fabs(p);
    }
    if (sc->dot_type == VT_TYPE_Q8_1) {
        /* ggml adds m * s with s = fp16(d * sum(q)) stored in the activation
         * block, not the exact d * sum(q): account for that rounding */
        const block_q8_1 *ab = aq.p;
        const uint8_t *wb = w.p;
        size_t wsz = vt_type_get((uint32_t)t)->size;
        for (int64_t i = 0; i < n / 32; i++) {
            uint16_t m16;
            memcpy(&m16, wb + (size_t)i * wsz + 2, 2); /* q4_1/q5_1: m follows d */
            int sum = 0;
            for (int j = 0; j < 32; j++)
                sum += ab[i].qs[j];
            double dd = vt_fp16_to_fp32(ab[i].d), ss = vt_fp16_to_fp32(ab[i].s);
            exact += vt_fp16_to_fp32(m16) * (ss - dd * sum);
        }
    }
    double tol = 2e-6 * mag + 1e-30;
    float ref = sc->vec_dot(n, w.p, aq.p);
    CHECKF(fabs(ref - exact) <= 4 * tol, "%s n=%lld scalar dot %.9g vs dequantized %.9g",
           tname(t), (long long)n, ref, exact);
    for (int l = 1; l < KN_ISA_COUNT; l++) {
        const kn_traits *tr = kn_traits_isa(t, (kn_isa)l);
        if (!tr)
            continue;
        float got = tr->vec_dot(n, w.p, aq.p);
        CHECKF(fabs(got - ref) <= 5 * tol, "%s n=%lld %s dot %.9g vs scalar %.9g (mag %g)",
               tname(t), (long long)n, isa_name[l], got, ref, mag);
    }
    buf_free(&x);
    buf_free(&a);
    buf_free(&w);
    buf_free(&aq);
    buf_free(&wd);
    buf_free(&ad);
}

static void test_vec_dot_levels(void)
{
    for (size_t i = 0; i < VT_ARRAY_LEN(weight_types); i++) {
        vt_type t = weight_types[i];
        int64_t blck = vt_type_get((uint32_t)t)->blck;
        int64_t unit = blck < 32 ? 32 : blck; /* float types: a few odd sizes too */
        CHECK(blck >= 1);
        check_dots(t, unit, 11);
        check_dots(t, 2 * unit, 12);
        check_dots(t, 3 * unit, 13);
        check_dots(t, 7 * unit, 14);
        check_dots(t, 4096, 15);
        check_dots(t, 5632, 16);
        if (blck == 1) {
            check_dots(t, 1, 17);
            check_dots(t, 17, 18);
            check_dots(t, 31, 19);
            check_dots(t, 100, 20);
        }
    }
}

/* Extreme blocks: all zeros, max-magnitude quants (q8 activation -127..127,
 * weights at their extremes). Integer paths must not saturate. */
static void test_vec_dot_extremes(void)
{
    const int64_t n = 1024;
    buf x = buf_new(n * 4), a = buf_new(n * 4), w = buf_new(n * 4), aq = buf_new(n * 4);
    float *xf = x.p, *af = a.p;
    for (int pass = 0; pass < 3; pass++) {
        for (int64_t i = 0; i < n; i++) {
            xf[i] = pass == 0 ? 0.0f : (i & 1 ? 1.0f : -1.0f) * (pass == 2 ? 1.0f : 0.001f);
            af[i] = pass == 0 ? 1.0f : (i & 1 ? 3.0f : -3.0f);
        }
        for (size_t i = 0; i < VT_ARRAY_LEN(weight_types); i++) {
            vt_type t = weight_types[i];
            const kn_traits *sc = kn_traits_isa(t, KN_ISA_SCALAR);
            CHECK_EQ_INT(kn_quantize_ref(t, xf, w.p, n), VT_OK);
            kn_traits_isa(sc->dot_type, KN_ISA_SCALAR)->from_float(af, aq.p, n);
            float ref = sc->vec_dot(n, w.p, aq.p);
            CHECK(isfinite(ref));
            for (int l = 1; l < KN_ISA_COUNT; l++) {
                const kn_traits *tr = kn_traits_isa(t, (kn_isa)l);
                if (!tr)
                    continue;
                float got = tr->vec_dot(n, w.p, aq.p);
                CHECKF(fabsf(got - ref) <= 1e-5f * fabsf(ref) + 1e-6f,
                       "%s pass %d %s: %.9g vs %.9g", tname(t), pass, isa_name[l], got, ref);
            }
        }
    }
    buf_free(&x);
    buf_free(&a);
    buf_free(&w);
    buf_free(&aq);
}

/* vec_dot_n against vec_dot per activation row, every level: the results
 * must be bit-identical (same float accumulation order), since the model
 * re-quantizes activations after each matmul and last-bit differences grow.
 * Group sizes 0..13 around the kernels' tile, several row lengths (block
 * counts around the kernels' 2- and 4-block steps), padded activation rows
 * and strided output. */
static void check_dot_n(vt_type t, int64_t n, uint64_t seed)
{
    enum { MAXT = 13, OS = 3 };
    const kn_traits *sc = kn_traits_isa(t, KN_ISA_SCALAR);
    size_t as = vt_row_size(sc->dot_type, n) + 36; /* padded rows */
    buf x = buf_new((size_t)n * 4), w = buf_new((size_t)n * 4), a = buf_new((size_t)n * 4);
    buf aq = buf_new(as * MAXT);
    fill_data(x.p, n, seed, 0.02f, (seed & 1) != 0);
    CHECK_EQ_INT(kn_quantize_ref(t, x.p, w.p, n), VT_OK);
    for (int r = 0; r < MAXT; r++) {
        fill_data(a.p, n, seed * 100 + (uint64_t)r, 0.1f + (float)r, r == 5 || r == 11);
        kn_traits_isa(sc->dot_type, KN_ISA_SCALAR)
            ->from_float(a.p, (char *)aq.p + (size_t)r * as, n);
    }
    for (int l = 0; l < KN_ISA_COUNT; l++) {
        const kn_traits *tr = kn_traits_isa(t, (kn_isa)l);
        if (!tr)
            continue;
        CHECK(tr->vec_dot_n != NULL);
        if (!tr->vec_dot_n)
            continue;
        float want[MAXT];
        for (int r = 0; r < MAXT; r++)
            want[r] = tr->vec_dot(n, w.p, (char *)aq.p + (size_t)r * as);
        for (int nt = 0; nt <= MAXT; nt++) {
            float out[MAXT * OS];
            for (int j = 0; j < MAXT * OS; j++)
                out[j] = -12345.f;
            tr->vec_dot_n(n, w.p, aq.p, as, nt, out, OS);
            for (int r = 0; r < MAXT; r++) {
                if (r >= nt) {
                    CHECK(out[OS * r] == -12345.f);
                    continue;
                }
                CHECKF(memcmp(&out[OS * r], &want[r], sizeof(float)) == 0,
                       "%s %s n=%lld nt=%d row %d: %.9g vs vec_dot %.9g", tname(t), isa_name[l],
                       (long long)n, nt, r, out[OS * r], want[r]);
                CHECK(out[OS * r + 1] == -12345.f && out[OS * r + 2] == -12345.f);
            }
        }
    }
    buf_free(&x);
    buf_free(&w);
    buf_free(&a);
    buf_free(&aq);
}

static void test_vec_dot_n(void)
{
    for (size_t i = 0; i < VT_ARRAY_LEN(weight_types); i++) {
        vt_type t = weight_types[i];
        int64_t blck = vt_type_get((uint32_t)t)->blck;
        uint64_t seed = 900 + 37 * i;
        if (blck == 1) {
            static const int64_t ns[] = {1, 7, 16, 17, 31, 32, 63, 64, 100, 129, 4096, 4099};
            for (size_t k = 0; k < VT_ARRAY_LEN(ns); k++)
                check_dot_n(t, ns[k], seed + k);
        } else {
            /* 1..9 blocks and a model-sized row */
            for (int64_t nb = 1; nb <= 9; nb++)
                check_dot_n(t, nb * blck, seed + (uint64_t)nb);
            check_dot_n(t, blck == 32 ? 4096 + 3 * 32 : 4096 + 256, seed + 10);
        }
    }
}

/* vec_dot_rows against vec_dot per weight row, every level: bit-identical
 * results (the decode GEMV must give exactly what vec_dot gives). Row
 * counts 0..13 around the kernels' groups, from the first row and from the
 * second, rows contiguous and strided (padded), several row lengths; each
 * row has its own data (some with zero stretches and outliers), and nothing
 * past out[nr - 1] is written. */
static void check_dot_rows(vt_type t, int64_t n, uint64_t seed)
{
    enum { MAXR = 14 };
    const kn_traits *sc = kn_traits_isa(t, KN_ISA_SCALAR);
    const size_t rb = vt_row_size(t, n);
    buf x = buf_new((size_t)n * 4), a = buf_new((size_t)n * 4);
    buf aq = buf_new(vt_row_size(sc->dot_type, n));
    fill_data(a.p, n, seed * 31 + 5, 0.7f, (seed & 1) != 0);
    kn_traits_isa(sc->dot_type, KN_ISA_SCALAR)->from_float(a.p, aq.p, n);
    for (int pad = 0; pad <= 36; pad += 36) {
        const size_t ws = rb + (size_t)pad;
        buf w = buf_new(ws * MAXR);
        for (int r = 0; r < MAXR; r++) {
            fill_data(x.p, n, seed * 100 + (uint64_t)r, 0.01f + 0.01f * (float)r, r % 3 == 1);
            CHECK_EQ_INT(kn_quantize_ref(t, x.p, (char *)w.p + (size_t)r * ws, n), VT_OK);
        }
        for (int l = 0; l < KN_ISA_COUNT; l++) {
            const kn_traits *tr = kn_traits_isa(t, (kn_isa)l);
            if (!tr)
                continue;
            CHECK(tr->vec_dot_rows != NULL);
            if (!tr->vec_dot_rows)
                continue;
            float want[MAXR];
            for (int r = 0; r < MAXR; r++)
                want[r] = tr->vec_dot(n, (char *)w.p + (size_t)r * ws, aq.p);
            for (int first = 0; first <= 1; first++)
                for (int nr = 0; nr + first <= MAXR; nr++) {
                    float out[MAXR + 1];
                    for (int j = 0; j <= MAXR; j++)
                        out[j] = -12345.f;
                    tr->vec_dot_rows(n, (char *)w.p + (size_t)first * ws, ws, nr, aq.p, out);
                    for (int r = 0; r < nr; r++)
                        CHECKF(memcmp(&out[r], &want[first + r], sizeof(float)) == 0,
                               "%s %s n=%lld pad=%d nr=%d row %d: %.9g vs vec_dot %.9g",
                               tname(t), isa_name[l], (long long)n, pad, nr, first + r, out[r],
                               want[first + r]);
                    CHECK(out[nr] == -12345.f);
                }
        }
        buf_free(&w);
    }
    buf_free(&x);
    buf_free(&a);
    buf_free(&aq);
}

static void test_vec_dot_rows(void)
{
    for (size_t i = 0; i < VT_ARRAY_LEN(weight_types); i++) {
        vt_type t = weight_types[i];
        int64_t blck = vt_type_get((uint32_t)t)->blck;
        uint64_t seed = 1700 + 41 * i;
        if (blck == 1) {
            static const int64_t ns[] = {1, 7, 16, 17, 31, 32, 63, 64, 100, 129, 2048, 4099};
            for (size_t k = 0; k < VT_ARRAY_LEN(ns); k++)
                check_dot_rows(t, ns[k], seed + k);
        } else {
            /* 1..9 blocks and model-sized rows (2048, 5632, and past the
             * 8192 values up to which Q4_0 expands the activations) */
            for (int64_t nb = 1; nb <= 9; nb++)
                check_dot_rows(t, nb * blck, seed + (uint64_t)nb);
            check_dot_rows(t, blck == 32 ? 2048 + 3 * 32 : 2048, seed + 10);
            check_dot_rows(t, 5632, seed + 11);
            check_dot_rows(t, 8192, seed + 12);
            check_dot_rows(t, blck == 32 ? 8192 + 5 * 32 : 8192 + 256, seed + 13);
        }
    }
}

/* kn_matmul against vec_dot per (token, row), exactly, for decode-sized and
 * batch-sized token counts, thread counts 1..4 (the decode path splits rows
 * into per-thread parts with stealing), row counts around the split bounds,
 * and an output stride wider than the rows (nothing else is written). */
static void test_matmul(void)
{
    static const vt_type ts[] = {VT_TYPE_Q4_K, VT_TYPE_Q6_K, VT_TYPE_Q8_0, VT_TYPE_F32};
    static const int64_t rows_list[] = {1, 5, 17, 33, 300, 1029};
    static const int64_t ntoks[] = {1, 2, 3, 5};
    const int64_t cols = 512, ldy_pad = 3;
    kn_pool *pools[4] = {NULL};
    for (int k = 0; k < 4; k++)
        CHECK((pools[k] = kn_pool_create(k + 1)) != NULL);
    float *x = malloc(5 * cols * sizeof(float)), *wf = malloc(cols * sizeof(float));
    for (size_t ti = 0; ti < VT_ARRAY_LEN(ts); ti++) {
        vt_type t = ts[ti];
        const kn_traits *tr = kn_traits_get(t), *dt = kn_traits_get(tr->dot_type);
        size_t rb = vt_row_size(t, cols), ab = vt_row_size(tr->dot_type, cols);
        int64_t maxr = rows_list[VT_ARRAY_LEN(rows_list) - 1];
        char *w = malloc(rb * (size_t)maxr), *aq = malloc(ab * 5);
        float *want = malloc(5 * (size_t)(maxr + ldy_pad) * sizeof(float));
        float *y = malloc(5 * (size_t)(maxr + ldy_pad) * sizeof(float));
        for (int64_t r = 0; r < maxr; r++) {
            fill_data(wf, cols, 5000 + (uint64_t)r, 0.02f, r % 7 == 3);
            CHECK_EQ_INT(kn_quantize_ref(t, wf, w + (size_t)r * rb, cols), VT_OK);
        }
        fill_data(x, 5 * cols, 77 + ti, 1.0f, true);
        for (int k = 0; k < 5; k++)
            dt->from_float(x + k * cols, aq + (size_t)k * ab, cols);
        for (size_t ri = 0; ri < VT_ARRAY_LEN(rows_list); ri++) {
            int64_t rows = rows_list[ri], ldy = rows + ldy_pad;
            for (size_t ni = 0; ni < VT_ARRAY_LEN(ntoks); ni++) {
                int64_t nt = ntoks[ni];
                for (int64_t tk = 0; tk < nt; tk++)
                    for (int64_t r = 0; r < ldy; r++)
                        want[tk * ldy + r] =
                            r < rows ? tr->vec_dot(cols, w + (size_t)r * rb, aq + (size_t)tk * ab)
                                     : -777.f;
                for (int k = 0; k < 4; k++) {
                    for (int64_t i = 0; i < nt * ldy; i++)
                        y[i] = -777.f;
                    CHECK_EQ_INT(kn_matmul(pools[k], t, w, rows, cols, x, nt, y, ldy), VT_OK);
                    CHECKF(memcmp(y, want, (size_t)(nt * ldy) * sizeof(float)) == 0,
                           "%s rows=%lld ntok=%lld threads=%d: kn_matmul != vec_dot", tname(t),
                           (long long)rows, (long long)nt, k + 1);
                }
            }
        }
        free(w);
        free(aq);
        free(want);
        free(y);
    }
    free(x);
    free(wf);
    for (int k = 0; k < 4; k++)
        kn_pool_destroy(pools[k]);
}

/* kn_matmul_multi: matrices of several types (two dot types) over their own
 * rows of x (token lists with repeats, contiguous ranges, one token, none),
 * each result exactly vec_dot's for its weight row and activation row, at
 * 1..4 threads; then more matrices than one pass takes. */
static void test_matmul_multi(void)
{
    static const struct {
        vt_type t;
        int64_t rows;
        int32_t tok[8];
        int64_t first, ntok; /* tok[0] < 0: rows first.. */
    } spec[] = {
        {VT_TYPE_Q4_K, 33, {3, 0, 7, 7, 11}, 0, 5},   /* gathered and packed */
        {VT_TYPE_Q6_K, 17, {5}, 0, 1},                /* one token: the GEMV */
        {VT_TYPE_Q8_0, 300, {-1}, 2, 6},              /* a range, packed */
        {VT_TYPE_Q4_K, 1029, {1, 9}, 0, 2},           /* two tokens */
        {VT_TYPE_F32, 5, {4, 2, 8}, 0, 3},            /* no quantization */
        {VT_TYPE_Q8_0, 16, {-1}, 0, 0},               /* nothing to do */
        {VT_TYPE_Q6_K, 64, {-1}, 0, 12},              /* every row */
        {VT_TYPE_Q8_0, 48, {10, 1, 6, 2, 0, 11, 4, 5}, 0, 8},
    };
    enum { NS = VT_ARRAY_LEN(spec), NX = 12, COLS = 512, PAD = 2, MANY = 300 };
    kn_pool *pools[4] = {NULL};
    for (int k = 0; k < 4; k++)
        CHECK((pools[k] = kn_pool_create(k + 1)) != NULL);
    float *x = malloc(NX * COLS * sizeof(float)), *wf = malloc(COLS * sizeof(float));
    fill_data(x, NX * COLS, 91, 1.0f, true);
    char *w[NS];
    float *y[NS], *want[NS];
    kn_mm mm[NS];
    for (int i = 0; i < NS; i++) {
        const kn_traits *tr = kn_traits_get(spec[i].t), *dt = kn_traits_get(tr->dot_type);
        size_t rb = vt_row_size(spec[i].t, COLS), ab = vt_row_size(tr->dot_type, COLS);
        int64_t ldy = spec[i].rows + PAD, nt = spec[i].ntok;
        w[i] = malloc(rb * (size_t)spec[i].rows);
        y[i] = malloc((size_t)((nt ? nt : 1) * ldy) * sizeof(float));
        want[i] = malloc((size_t)((nt ? nt : 1) * ldy) * sizeof(float));
        char *aq = malloc(ab);
        for (int64_t r = 0; r < spec[i].rows; r++) {
            fill_data(wf, COLS, 7000 + 100 * (uint64_t)i + (uint64_t)r, 0.02f, r % 5 == 1);
            CHECK_EQ_INT(kn_quantize_ref(spec[i].t, wf, w[i] + (size_t)r * rb, COLS), VT_OK);
        }
        for (int64_t k = 0; k < nt; k++) {
            int64_t row = spec[i].tok[0] < 0 ? spec[i].first + k : spec[i].tok[k];
            const void *a = x + row * COLS;
            if (tr->dot_type != VT_TYPE_F32) {
                dt->from_float(x + row * COLS, aq, COLS);
                a = aq;
            }
            for (int64_t r = 0; r < ldy; r++)
                want[i][k * ldy + r] =
                    r < spec[i].rows ? tr->vec_dot(COLS, w[i] + (size_t)r * rb, a) : -777.f;
        }
        free(aq);
        mm[i] = (kn_mm){.type = spec[i].t, .w = w[i], .rows = spec[i].rows,
                        .tok = spec[i].tok[0] < 0 ? NULL : spec[i].tok, .first = spec[i].first,
                        .ntok = nt, .y = y[i], .ldy = ldy};
    }
    kn_ws ws = {0};
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < NS; i++)
            for (int64_t e = 0; e < spec[i].ntok * mm[i].ldy; e++)
                y[i][e] = -777.f;
        CHECK_EQ_INT(kn_matmul_multi(pools[k], k & 1 ? &ws : NULL, x, NX, COLS, NS, mm), VT_OK);
        for (int i = 0; i < NS; i++)
            CHECKF(memcmp(y[i], want[i], (size_t)(spec[i].ntok * mm[i].ldy) * sizeof(float)) == 0,
                   "kn_matmul_multi, matrix %d (%s, %lld tokens), %d threads: != vec_dot", i,
                   tname(spec[i].t), (long long)spec[i].ntok, k + 1);
    }
    /* a token past x is refused */
    kn_mm bad = mm[0];
    int32_t far[1] = {NX};
    bad.tok = far;
    bad.ntok = 1;
    CHECK_EQ_INT(kn_matmul_multi(pools[1], &ws, x, NX, COLS, 1, &bad), VT_ERR_INVALID);
    /* MANY one-row matrices (several passes): row j of spec[3]'s, token j % NX */
    kn_mm *many = malloc(MANY * sizeof *many);
    int32_t *toks = malloc(MANY * sizeof *toks);
    float *ym = malloc(MANY * sizeof *ym);
    size_t rb = vt_row_size(spec[3].t, COLS);
    for (int j = 0; j < MANY; j++) {
        toks[j] = j % NX;
        many[j] = (kn_mm){.type = spec[3].t, .w = w[3] + (size_t)(j % spec[3].rows) * rb,
                          .rows = 1, .tok = toks + j, .ntok = 1, .y = ym + j, .ldy = 1};
    }
    CHECK_EQ_INT(kn_matmul_multi(pools[1], &ws, x, NX, COLS, MANY, many), VT_OK);
    int badn = 0;
    for (int j = 0; j < MANY; j++) {
        float one;
        CHECK_EQ_INT(kn_matmul(NULL, spec[3].t, many[j].w, 1, COLS, x + toks[j] * COLS, 1, &one, 1),
                     VT_OK);
        badn += memcmp(&one, ym + j, sizeof one) != 0;
    }
    CHECKF(badn == 0, "kn_matmul_multi over %d matrices: %d results differ from kn_matmul", MANY,
           badn);
    free(many);
    free(toks);
    free(ym);
    kn_ws_free(&ws);
    for (int i = 0; i < NS; i++) {
        free(w[i]);
        free(y[i]);
        free(want[i]);
    }
    free(x);
    free(wf);
    for (int k = 0; k < 4; k++)
        kn_pool_destroy(pools[k]);
}

/* ---- accuracy ---------------------------------------------------------- */

static void test_roundtrip_error(void)
{
    static const struct {
        vt_type t;
        double max_rel_rmse;
    } b[] = {
        {VT_TYPE_F32, 0.0},      {VT_TYPE_F16, 0.0003},  {VT_TYPE_BF16, 0.002},
        {VT_TYPE_Q8_0, 0.006},   {VT_TYPE_Q5_0, 0.047},  {VT_TYPE_Q5_1, 0.042},
        {VT_TYPE_Q4_0, 0.095},   {VT_TYPE_Q4_1, 0.087},  {VT_TYPE_Q6_K, 0.020},
        {VT_TYPE_Q5_K, 0.040},   {VT_TYPE_Q4_K, 0.075},  {VT_TYPE_Q3_K, 0.165},
        {VT_TYPE_Q2_K, 0.30},
    };
    const int64_t n = 256 * 64;
    buf x = buf_new(n * 4), q = buf_new(n * 4), y = buf_new(n * 4);
    fill_data(x.p, n, 42, 0.03f, false);
    double r = rms(x.p, n);
    for (size_t i = 0; i < VT_ARRAY_LEN(b); i++) {
        CHECK_EQ_INT(kn_quantize_ref(b[i].t, x.p, q.p, n), VT_OK);
        kn_traits_isa(b[i].t, KN_ISA_SCALAR)->to_float(q.p, y.p, n);
        double e = 0;
        for (int64_t k = 0; k < n; k++) {
            double d = (double)((float *)y.p)[k] - ((float *)x.p)[k];
            e += d * d;
        }
        double rel = sqrt(e / (double)n) / r;
        if (getenv("VT_TEST_VERBOSE"))
            fprintf(stderr, "  %-5s rmse/rms %.5f\n", tname(b[i].t), rel);
        CHECKF(rel <= b[i].max_rel_rmse, "%s round-trip rmse/rms %.5f > %.5f", tname(b[i].t),
               rel, b[i].max_rel_rmse);
    }
    /* all-zero input: exact zeros back */
    memset(x.p, 0, n * 4);
    for (size_t i = 0; i < VT_ARRAY_LEN(b); i++) {
        CHECK_EQ_INT(kn_quantize_ref(b[i].t, x.p, q.p, 512), VT_OK);
        kn_traits_isa(b[i].t, KN_ISA_SCALAR)->to_float(q.p, y.p, 512);
        for (int k = 0; k < 512; k++)
            CHECK(((float *)y.p)[k] == 0.0f);
    }
    buf_free(&x);
    buf_free(&q);
    buf_free(&y);
}

/* The quantized dot product approximates the float one. */
static void test_dot_approximates_float(void)
{
    static const struct {
        vt_type t;
        double tol;
    } b[] = {
        {VT_TYPE_F32, 1e-5},  {VT_TYPE_F16, 2e-3},  {VT_TYPE_BF16, 1e-2},
        {VT_TYPE_Q8_0, 2e-2}, {VT_TYPE_Q5_0, 5e-2}, {VT_TYPE_Q5_1, 5e-2},
        {VT_TYPE_Q4_0, 0.1},  {VT_TYPE_Q4_1, 0.1},  {VT_TYPE_Q6_K, 3e-2},
        {VT_TYPE_Q5_K, 5e-2}, {VT_TYPE_Q4_K, 0.08}, {VT_TYPE_Q3_K, 0.15},
        {VT_TYPE_Q2_K, 0.3},
    };
    const int64_t n = 4096;
    buf x = buf_new(n * 4), a = buf_new(n * 4), w = buf_new(n * 4), aq = buf_new(n * 4);
    float *xf = x.p, *af = a.p;
    for (int trial = 0; trial < 4; trial++) {
        fill_data(xf, n, 500 + trial, 0.05f, false);
        fill_data(af, n, 600 + trial, 1.0f, false);
        /* correlate the two so that the dot is well away from zero */
        for (int64_t i = 0; i < n; i++)
            af[i] += 10 * xf[i];
        double exact = 0, nx = 0, na = 0;
        for (int64_t i = 0; i < n; i++) {
            exact += (double)xf[i] * af[i];
            nx += (double)xf[i] * xf[i];
            na += (double)af[i] * af[i];
        }
        double scale = sqrt(nx * na);
        for (size_t i = 0; i < VT_ARRAY_LEN(b); i++) {
            const kn_traits *tr = kn_traits_get(b[i].t);
            CHECK_EQ_INT(kn_quantize_ref(b[i].t, xf, w.p, n), VT_OK);
            kn_traits_get(tr->dot_type)->from_float(af, aq.p, n);
            double got = tr->vec_dot(n, w.p, aq.p);
            CHECKF(fabs(got - exact) <= b[i].tol * scale, "%s dot %.6g vs float %.6g (|x||a| %.4g)",
                   tname(b[i].t), got, exact, scale);
        }
    }
    buf_free(&x);
    buf_free(&a);
    buf_free(&w);
    buf_free(&aq);
}

/* ---- cross-check with GGUF files written by llama.cpp ------------------- */

typedef struct {
    char name[96];
    uint32_t type;
    int64_t ne[4];
    int n_dims;
    uint64_t offset;
} mini_tensor;

typedef struct {
    uint8_t *data;
    size_t size, pos;
    bool bad;
    mini_tensor *t;
    int64_t n_t;
    uint64_t data_start;
} mini_gguf;

static uint64_t rd(mini_gguf *g, size_t n)
{
    uint64_t v = 0;
    if (g->pos + n > g->size) {
        g->bad = true;
        return 0;
    }
    memcpy(&v, g->data + g->pos, n);
    g->pos += n;
    return v;
}

static void skip_value(mini_gguf *g, uint32_t type)
{
    static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (g->bad || type > 12) {
        g->bad = true;
        return;
    }
    if (type == 8) {
        uint64_t len = rd(g, 8);
        if (len > g->size - g->pos)
            g->bad = true;
        else
            g->pos += len;
    } else if (type == 9) {
        uint32_t et = (uint32_t)rd(g, 4);
        uint64_t cnt = rd(g, 8);
        for (uint64_t i = 0; i < cnt && !g->bad; i++)
            skip_value(g, et);
    } else {
        g->pos += (size_t)sz[type];
        if (g->pos > g->size)
            g->bad = true;
    }
}

static bool mini_gguf_open(const char *path, mini_gguf *g)
{
    memset(g, 0, sizeof *g);
    g->data = (uint8_t *)test_read_file(path, &g->size);
    if (!g->data)
        return false;
    if (rd(g, 4) != 0x46554747u) /* "GGUF" */
        return false;
    rd(g, 4);
    int64_t nt = (int64_t)rd(g, 8), nkv = (int64_t)rd(g, 8);
    uint64_t align = 32;
    for (int64_t i = 0; i < nkv && !g->bad; i++) {
        uint64_t klen = rd(g, 8);
        if (klen > g->size - g->pos)
            return false;
        bool is_align = klen == 17 && !memcmp(g->data + g->pos, "general.alignment", 17);
        g->pos += klen;
        uint32_t type = (uint32_t)rd(g, 4);
        if (is_align && type == 4)
            align = rd(g, 4);
        else
            skip_value(g, type);
    }
    if (g->bad || nt < 0 || nt > 100000)
        return false;
    g->t = calloc((size_t)nt + 1, sizeof *g->t);
    g->n_t = nt;
    for (int64_t i = 0; i < nt && !g->bad; i++) {
        uint64_t len = rd(g, 8);
        if (len >= sizeof g->t[i].name || len > g->size - g->pos)
            return false;
        memcpy(g->t[i].name, g->data + g->pos, len);
        g->pos += len;
        g->t[i].n_dims = (int)rd(g, 4);
        if (g->t[i].n_dims < 1 || g->t[i].n_dims > 4)
            return false;
        for (int d = 0; d < 4; d++)
            g->t[i].ne[d] = d < g->t[i].n_dims ? (int64_t)rd(g, 8) : 1;
        g->t[i].type = (uint32_t)rd(g, 4);
        g->t[i].offset = rd(g, 8);
    }
    g->data_start = (g->pos + align - 1) / align * align;
    return !g->bad;
}

static void mini_gguf_close(mini_gguf *g)
{
    free(g->data);
    free(g->t);
}

static const mini_tensor *mini_find(const mini_gguf *g, const char *name)
{
    for (int64_t i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name))
            return &g->t[i];
    return NULL;
}

static int64_t nelem(const mini_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* Dequantizes every tensor of `q` that `f` has as F16 and compares. Returns
 * the number of tensors compared; `stats` gets the worst relative rmse per
 * quantized type. */
static int compare_to_f16(mini_gguf *q, mini_gguf *f, double worst[VT_TYPE_COUNT],
                          int *requant_same, int *requant_total)
{
    int compared = 0;
    for (int64_t i = 0; i < q->n_t; i++) {
        const mini_tensor *tq = &q->t[i], *tf = mini_find(f, tq->name);
        if (!tf || tf->type != VT_TYPE_F16 || tq->type == VT_TYPE_F16 || tq->type == VT_TYPE_F32)
            continue;
        int64_t n = nelem(tq);
        const kn_traits *tr = kn_traits_get((vt_type)tq->type);
        const vt_type_info *ti = vt_type_get(tq->type);
        CHECKF(tr != NULL, "no traits for %s (%s)", tq->name, ti ? ti->name : "?");
        if (!tr || nelem(tf) != n || n % ti->blck)
            continue;
        size_t qbytes = vt_row_size((vt_type)tq->type, n);
        CHECK(q->data_start + tq->offset + qbytes <= q->size);
        CHECK(f->data_start + tf->offset + (uint64_t)n * 2 <= f->size);
        if (q->data_start + tq->offset + qbytes > q->size ||
            f->data_start + tf->offset + (uint64_t)n * 2 > f->size)
            continue;
        float *a = malloc((size_t)n * 4), *b = malloc((size_t)n * 4);
        tr->to_float(q->data + q->data_start + tq->offset, a, n);
        kn_traits_get(VT_TYPE_F16)->to_float(f->data + f->data_start + tf->offset, b, n);
        double e = 0, s = 0;
        for (int64_t k = 0; k < n; k++) {
            e += ((double)a[k] - b[k]) * ((double)a[k] - b[k]);
            s += (double)b[k] * b[k];
        }
        double rel = s > 0 ? sqrt(e / s) : 0;
        if (rel > worst[tq->type])
            worst[tq->type] = rel;
        if (tq->type == VT_TYPE_Q8_0) {
            /* our reference quantizer reproduces llama-quantize's Q8_0 bytes */
            uint8_t *rq = malloc(qbytes);
            kn_quantize_ref(VT_TYPE_Q8_0, b, rq, n);
            (*requant_total)++;
            if (!memcmp(rq, q->data + q->data_start + tq->offset, qbytes))
                (*requant_same)++;
            free(rq);
        }
        free(a);
        free(b);
        compared++;
    }
    return compared;
}

static void test_gguf_cross_check(void)
{
    const char *sh = test_shared_dir();
    if (!sh) {
        test_skip("no shared dir");
        return;
    }
    char p16[1024], p8[1024], p4[1024];
    snprintf(p16, sizeof p16, "%s/fixtures/models/llama-dense.f16.gguf", sh);
    snprintf(p8, sizeof p8, "%s/fixtures/models/llama-dense.Q8_0.gguf", sh);
    snprintf(p4, sizeof p4, "%s/fixtures/models/llama-dense.Q4_K_M.gguf", sh);
    mini_gguf f, q8, q4;
    if (!mini_gguf_open(p16, &f)) {
        mini_gguf_close(&f);
        test_skip("fixture %s not readable", p16);
        return;
    }
    double worst[VT_TYPE_COUNT] = {0};
    int same = 0, total = 0;
    if (mini_gguf_open(p8, &q8)) {
        int c = compare_to_f16(&q8, &f, worst, &same, &total);
        CHECKF(c > 0, "no Q8_0 tensors compared");
        CHECKF(same == total, "requantized Q8_0: %d of %d tensors byte-identical", same, total);
    }
    mini_gguf_close(&q8);
    if (mini_gguf_open(p4, &q4)) {
        int c = compare_to_f16(&q4, &f, worst, &same, &total);
        CHECKF(c > 0, "no Q4_K_M tensors compared");
    }
    mini_gguf_close(&q4);
    mini_gguf_close(&f);
    static const struct {
        vt_type t;
        double tol;
    } bound[] = {{VT_TYPE_Q8_0, 0.006}, {VT_TYPE_Q4_K, 0.08}, {VT_TYPE_Q5_K, 0.045},
                 {VT_TYPE_Q6_K, 0.025}, {VT_TYPE_Q5_0, 0.05}, {VT_TYPE_Q4_0, 0.1},
                 {VT_TYPE_Q3_K, 0.17},  {VT_TYPE_Q2_K, 0.3}};
    for (int t = 0; t < VT_TYPE_COUNT; t++) {
        if (worst[t] == 0)
            continue;
        if (getenv("VT_TEST_VERBOSE"))
            fprintf(stderr, "  gguf %s: worst rmse/rms vs f16 %.5f\n", tname((vt_type)t), worst[t]);
        double tol = 0.3;
        for (size_t k = 0; k < VT_ARRAY_LEN(bound); k++)
            if (bound[k].t == (vt_type)t)
                tol = bound[k].tol;
        CHECKF(worst[t] <= tol, "gguf %s tensors differ from f16 by rmse/rms %.4f",
               tname((vt_type)t), worst[t]);
    }
}

int main(void)
{
    RUN_TEST(test_block_sizes);
    RUN_TEST(test_dispatch);
    RUN_TEST(test_level_avx2);
    RUN_TEST(test_level_avx512);
    RUN_TEST(test_hand_q4_0_q8_0);
    RUN_TEST(test_hand_q4_1_q5);
    RUN_TEST(test_hand_q4_K);
    RUN_TEST(test_hand_q6_K);
    RUN_TEST(test_hand_q2_q3_K);
    RUN_TEST(test_q8_act_numerics);
    RUN_TEST(test_q8_K_numerics);
    RUN_TEST(test_from_float_levels);
    RUN_TEST(test_to_float_levels);
    RUN_TEST(test_vec_dot_levels);
    RUN_TEST(test_vec_dot_extremes);
    RUN_TEST(test_vec_dot_n);
    RUN_TEST(test_vec_dot_rows);
    RUN_TEST(test_matmul);
    RUN_TEST(test_matmul_multi);
    RUN_TEST(test_roundtrip_error);
    RUN_TEST(test_dot_approximates_float);
    RUN_TEST(test_gguf_cross_check);
    return test_finish("test_quants");
}
