/*
 * test_attention.c - the attention kernels of model/attention.h.
 *  - md_exp (the one exp both recipes use): its AVX-512 version gives the
 *    scalar one's bits on a sweep of float bit patterns from -110 to 90 and
 *    on the special values, and the scalar one is within one ulp of libm's
 *    expf wherever the result is a normal float.
 *  - the F32 recipe's softmax: AVX-512 bits (exps and 1/sum) equal the
 *    scalar reference's for every length 1..80.
 *  - both recipes' AVX-512 kernels against the scalar references (within
 *    F16 rounding for the F16 recipe, float rounding for the F32 one), over
 *    head dimensions 64, 128 and 80 (not a multiple of 64), block sizes 16
 *    and 5 (keys of one group of sixteen in different blocks), shuffled
 *    block tables and 1..300 positions; and each head of a GQA group gets
 *    the same bits whether the kernel is called for the group or for that
 *    head alone (the forward pass calls it per group).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernels.h"
#include "model/attention.h"
#include "test.h"
#include "util/util.h"

static bool have_avx512(void)
{
    if (kn_active_isa() >= KN_ISA_AVX512)
        return true;
    test_skip_hw("the AVX-512 kernels need AVX-512 (this CPU runs %d)", (int)kn_active_isa());
    return false;
}

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_exp(void)
{
    if (!have_avx512())
        return;
    enum { CHUNK = 4096 };
    static float x[CHUNK], y[CHUNK];
    int64_t n = 0, mism = 0, far = 0, checked = 0;
    /* negative floats from -0 down to -110, then positive ones up to 90 */
    for (int side = 0; side < 2; side++) {
        uint32_t lo = side == 0 ? 0x80000000u : 0x00000000u;
        uint32_t hi = side == 0 ? bits(-110.0f) : bits(90.0f);
        for (uint32_t u = lo; u <= hi; u += 977) {
            memcpy(&x[n], &u, 4);
            n++;
            if (n == CHUNK || u + 977 > hi) {
                memcpy(y, x, sizeof(float) * (size_t)n);
                md_exp_avx512(y, n - 3); /* a ragged tail too */
                md_exp_avx512(y + n - 3, 3);
                for (int64_t i = 0; i < n; i++) {
                    float s = md_exp(x[i]);
                    mism += bits(s) != bits(y[i]);
                    float e = expf(x[i]);
                    if (isnormal(e) && isnormal(s)) {
                        checked++;
                        int64_t d = (int64_t)bits(s) - (int64_t)bits(e);
                        far += d > 1 || d < -1;
                    }
                }
                n = 0;
            }
        }
    }
    CHECKF(mism == 0, "%lld vector exps differ from the scalar md_exp", (long long)mism);
    CHECKF(far == 0, "%lld of %lld md_exp values more than an ulp from expf", (long long)far,
           (long long)checked);
    CHECK(checked > 1000000);
    float sp[6] = {-INFINITY, -0.0f, 0.0f, -200.0f, 100.0f, NAN}, sv[6];
    memcpy(sv, sp, sizeof sp);
    md_exp_avx512(sv, 6);
    CHECK(md_exp(-INFINITY) == 0.0f && md_exp(-0.0f) == 1.0f && md_exp(0.0f) == 1.0f);
    CHECK(md_exp(-200.0f) == 0.0f && isinf(md_exp(100.0f)) && isnan(md_exp(NAN)));
    for (int i = 0; i < 5; i++)
        CHECKF(bits(sv[i]) == bits(md_exp(sp[i])), "special value %d", i);
    CHECK(isnan(sv[5]));
}

static void test_softmax_bits(void)
{
    if (!have_avx512())
        return;
    vt_rng rng = {12345};
    enum { NMAX = 80 };
    for (int64_t n = 1; n <= NMAX; n++) {
        float w_ref[NMAX], w_vec[NMAX], mx = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            w_ref[i] = w_vec[i] = vt_rng_normal(&rng) * 4.0f;
            mx = w_ref[i] > mx ? w_ref[i] : mx;
        }
        float inv_ref = md_softmax_f32_ref(w_ref, n, mx);
        float inv_vec = md_softmax_f32_avx512(w_vec, n, mx);
        CHECKF(bits(inv_ref) == bits(inv_vec), "n=%lld: 1/sum %a vs %a", (long long)n,
               (double)inv_ref, (double)inv_vec);
        CHECKF(!memcmp(w_ref, w_vec, sizeof(float) * (size_t)n), "n=%lld: exps differ",
               (long long)n);
    }
}

typedef struct {
    int64_t hd, hdv, npos;
    int block_size, nq;
} shape;

static void run_shape(const shape *sh, vt_rng *rng, double *worst16, double *worst32,
                      int64_t *group_mism)
{
    int64_t nblocks = (sh->npos + sh->block_size - 1) / sh->block_size + 3;
    size_t slots = (size_t)nblocks * (size_t)sh->block_size;
    vt_fp16 *k = malloc(sizeof(vt_fp16) * slots * (size_t)sh->hd);
    vt_fp16 *v = malloc(sizeof(vt_fp16) * slots * (size_t)sh->hdv);
    int32_t *table = malloc(sizeof(int32_t) * (size_t)nblocks);
    float *q = malloc(sizeof(float) * (size_t)(sh->nq * sh->hd));
    size_t on = (size_t)(sh->nq * sh->hdv);
    float *o_ref = malloc(sizeof(float) * on), *o_vec = malloc(sizeof(float) * on);
    float *o_one = malloc(sizeof(float) * on);
    float *scratch = malloc(sizeof(float) * MD_ATTN_SCRATCH(sh->nq, sh->npos));
    for (size_t i = 0; i < slots * (size_t)sh->hd; i++)
        k[i] = vt_fp32_to_fp16(vt_rng_normal(rng));
    for (size_t i = 0; i < slots * (size_t)sh->hdv; i++)
        v[i] = vt_fp32_to_fp16(vt_rng_normal(rng));
    for (int64_t i = 0; i < nblocks; i++) /* a shuffled table */
        table[i] = (int32_t)((i * 7 + 3) % nblocks);
    for (int64_t i = 0; i < sh->nq * sh->hd; i++)
        q[i] = vt_rng_normal(rng) * 2.0f;
    md_attn_args a = {.k = k,
                      .v = v,
                      .k_stride = (size_t)sh->hd,
                      .v_stride = (size_t)sh->hdv,
                      .block_table = table,
                      .block_size = sh->block_size,
                      .npos = sh->npos,
                      .hd = sh->hd,
                      .hdv = sh->hdv,
                      .scale = 1.0f / sqrtf((float)sh->hd)};
    for (int recipe = 0; recipe < 2; recipe++) {
        md_attn_fn ref = recipe ? md_attn_f32_ref : md_attn_f16acc_ref;
        md_attn_fn vec = recipe ? md_attn_f32_avx512 : md_attn_f16acc_avx512;
        ref(&a, sh->nq, q, o_ref, scratch);
        vec(&a, sh->nq, q, o_vec, scratch);
        for (int h = 0; h < sh->nq; h++)
            vec(&a, 1, q + h * sh->hd, o_one + h * sh->hdv, scratch);
        *group_mism += memcmp(o_vec, o_one, sizeof(float) * on) != 0;
        double *worst = recipe ? worst32 : worst16;
        for (size_t i = 0; i < on; i++) {
            double d = fabs((double)o_ref[i] - (double)o_vec[i]);
            *worst = d > *worst ? d : *worst;
        }
    }
    free(k);
    free(v);
    free(table);
    free(q);
    free(o_ref);
    free(o_vec);
    free(o_one);
    free(scratch);
}

static void test_kernels(void)
{
    if (!have_avx512())
        return;
    vt_rng rng = {777};
    static const int64_t hds[] = {64, 128, 80};
    static const int64_t npos[] = {1, 2, 15, 16, 17, 33, 64, 100, 255, 300};
    static const int bss[] = {16, 5};
    static const int nqs[] = {8, 4, 3, 1};
    double worst16 = 0, worst32 = 0;
    int64_t group_mism = 0, runs = 0;
    for (size_t a = 0; a < sizeof hds / sizeof *hds; a++)
        for (size_t b = 0; b < sizeof npos / sizeof *npos; b++)
            for (size_t c = 0; c < sizeof bss / sizeof *bss; c++)
                for (size_t d = 0; d < sizeof nqs / sizeof *nqs; d++) {
                    shape sh = {hds[a], hds[a], npos[b], bss[c], nqs[d]};
                    run_shape(&sh, &rng, &worst16, &worst32, &group_mism);
                    runs++;
                }
    fprintf(stderr, "  %lld shapes: F16 recipe within %.2e of the reference, F32 within %.2e\n",
            (long long)runs, worst16, worst32);
    CHECKF(group_mism == 0, "%lld shapes where a head's bits depend on its group",
           (long long)group_mism);
    /* outputs are averages of N(0,1) values: F16 accumulation rounding
     * (relative 2^-11 per update) bounds the first, float rounding the
     * second */
    CHECKF(worst16 < 2e-2, "F16 recipe off the reference by %g", worst16);
    CHECKF(worst32 < 1e-4, "F32 recipe off the reference by %g", worst32);
}

int main(void)
{
    md_attn_fn f16, f32;
    md_attn_select(64, 64, &f16, &f32); /* fills the reference's F16 table */
    RUN_TEST(test_exp);
    RUN_TEST(test_softmax_bits);
    RUN_TEST(test_kernels);
    return test_finish("test_attention");
}
