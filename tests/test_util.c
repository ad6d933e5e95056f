/*
 * test_util.c - half/bfloat conversions and the deterministic RNG.
 */
#include <string.h>

#include "test.h"
#include "util/util.h"

static void test_fp16_roundtrip_all(void)
{
    /* every finite half converts to float and back unchanged */
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue;
        float f = vt_fp16_to_fp32((vt_fp16)h);
        CHECKF(vt_fp32_to_fp16(f) == h, "half 0x%04x -> %g -> 0x%04x", h, f, vt_fp32_to_fp16(f));
    }
}

static void test_fp16_rounding(void)
{
    CHECK_EQ_INT(vt_fp32_to_fp16(1.0f), 0x3c00);
    CHECK_EQ_INT(vt_fp32_to_fp16(65504.0f), 0x7bff);
    CHECK_EQ_INT(vt_fp32_to_fp16(65520.0f), 0x7c00);   /* tie rounds to even = inf */
    CHECK_EQ_INT(vt_fp32_to_fp16(65519.0f), 0x7bff);
    CHECK_EQ_INT(vt_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00); /* tie to even (down) */
    CHECK_EQ_INT(vt_fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02); /* tie to even (up) */
    CHECK_EQ_INT(vt_fp32_to_fp16(0x1p-24f), 0x0001);
    CHECK_EQ_INT(vt_fp32_to_fp16(0x1p-25f), 0x0000);   /* tie to even: zero */
    CHECK_EQ_INT(vt_fp32_to_fp16(-2.0f), 0xc000);
    CHECK(vt_fp32_to_fp16(NAN) != 0x7c00 && (vt_fp32_to_fp16(NAN) & 0x7c00) == 0x7c00);
}

static void test_bf16(void)
{
    CHECK_EQ_INT(vt_fp32_to_bf16(1.0f), 0x3f80);
    CHECK(vt_bf16_to_fp32(0x3f80) == 1.0f);
    CHECK_EQ_INT(vt_fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80);  /* tie to even */
    CHECK_EQ_INT(vt_fp32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
}

static void test_rng_deterministic(void)
{
    vt_rng a = {42}, b = {42}, c = {43};
    int diff = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = vt_rng_next(&a);
        CHECK(x == vt_rng_next(&b));
        diff += x != vt_rng_next(&c);
    }
    CHECK(diff > 90);
    double sum = 0, sq = 0;
    for (int i = 0; i < 100000; i++) {
        float z = vt_rng_normal(&a);
        sum += z;
        sq += z * z;
    }
    CHECK_NEAR(sum / 100000, 0.0, 0.02);
    CHECK_NEAR(sq / 100000, 1.0, 0.03);
}

int main(void)
{
    RUN_TEST(test_fp16_roundtrip_all);
    RUN_TEST(test_fp16_rounding);
    RUN_TEST(test_bf16);
    RUN_TEST(test_rng_deterministic);
    return test_finish("util");
}
