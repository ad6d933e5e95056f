/*
 * dispatch.c - the traits tables and their selection at run time. One table
 * per ISA level, each complete: the scalar table lists the reference kernels
 * of quants_ref*.c, the AVX2 table starts as a copy of it and takes the
 * kernels quants_avx2.c and gemm_avx2.c provide, the AVX-512 table starts
 * from the AVX2 one and takes those of quants_avx512.c, gemv_avx512.c and
 * gemm_avx512.c (gemm tiles exist only where a level has its own: NULL
 * elsewhere, kn_matmul then uses vec_dot_n). Types without a
 * tiled vec_dot_n or a multi-row vec_dot_rows at a level get a generic one
 * looping over that level's vec_dot. kn_init() (once, thread-safe) checks
 * cpuid for each level's instructions and picks the highest one the CPU has,
 * capped by the environment variable VT_ISA=scalar|avx2|avx512|amx. The
 * AVX-512 level's Q8_0, Q4_K, Q6_K have amx.c's numerics (per-block sums,
 * eight chains) with a VNNI GEMM over packed activations; the AMX level is
 * the AVX-512 one with amx.c's Q8_0, Q4_K and Q6_K kernels on the tiles.
 * kn_quantize_ref() maps a type to its reference weight quantizer.
 */
#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/quants.h"

static kn_traits tables[KN_ISA_COUNT][VT_TYPE_COUNT];
static bool level_ok[KN_ISA_COUNT];
static kn_isa active = KN_ISA_SCALAR;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define ENTRY(T, DT, name, ff, dot)                                                                \
    [VT_TYPE_##T] = {.type = VT_TYPE_##T,                                                          \
                     .dot_type = VT_TYPE_##DT,                                                     \
                     .to_float = kn_ref_to_float_##name,                                           \
                     .from_float = ff,                                                             \
                     .vec_dot = dot}

static const kn_traits scalar_table[VT_TYPE_COUNT] = {
    ENTRY(F32, F32, f32, kn_ref_from_float_f32, kn_ref_dot_f32),
    ENTRY(F16, F16, f16, kn_ref_from_float_f16, kn_ref_dot_f16),
    ENTRY(BF16, BF16, bf16, kn_ref_from_float_bf16, kn_ref_dot_bf16),
    ENTRY(Q4_0, Q8_0, q4_0, kn_ref_quantize_q4_0, kn_ref_dot_q4_0),
    ENTRY(Q4_1, Q8_1, q4_1, kn_ref_quantize_q4_1, kn_ref_dot_q4_1),
    ENTRY(Q5_0, Q8_0, q5_0, kn_ref_quantize_q5_0, kn_ref_dot_q5_0),
    ENTRY(Q5_1, Q8_1, q5_1, kn_ref_quantize_q5_1, kn_ref_dot_q5_1),
    ENTRY(Q8_0, Q8_0, q8_0, kn_ref_from_float_q8_0, kn_ref_dot_q8_0),
    ENTRY(Q8_1, Q8_1, q8_1, kn_ref_from_float_q8_1, NULL),
    ENTRY(Q2_K, Q8_K, q2_K, kn_ref_quantize_q2_K, kn_ref_dot_q2_K),
    ENTRY(Q3_K, Q8_K, q3_K, kn_ref_quantize_q3_K, kn_ref_dot_q3_K),
    ENTRY(Q4_K, Q8_K, q4_K, kn_ref_quantize_q4_K, kn_ref_dot_q4_K),
    ENTRY(Q5_K, Q8_K, q5_K, kn_ref_quantize_q5_K, kn_ref_dot_q5_K),
    ENTRY(Q6_K, Q8_K, q6_K, kn_ref_quantize_q6_K, kn_ref_dot_q6_K),
    ENTRY(Q8_K, Q8_K, q8_K, kn_ref_from_float_q8_K, NULL),
};

/* The generic vec_dot_n of a (level, type): one vec_dot per activation row.
 * Levels with a tiled kernel for a type replace it. */
#define DOTN(L, T)                                                                                 \
    static void dotn_##L##_##T(int64_t n, const void *w, const void *a, size_t as, int nt,        \
                               float *out, size_t os)                                              \
    {                                                                                              \
        float (*f)(int64_t, const void *, const void *) = tables[KN_ISA_##L][VT_TYPE_##T].vec_dot; \
        for (int k = 0; k < nt; k++)                                                               \
            out[(size_t)k * os] = f(n, w, (const char *)a + (size_t)k * as);                      \
    }
#define DOTN_LEVEL(L)                                                                              \
    DOTN(L, F32) DOTN(L, F16) DOTN(L, BF16) DOTN(L, Q4_0) DOTN(L, Q4_1) DOTN(L, Q5_0)              \
    DOTN(L, Q5_1) DOTN(L, Q8_0) DOTN(L, Q2_K) DOTN(L, Q3_K) DOTN(L, Q4_K) DOTN(L, Q5_K)           \
    DOTN(L, Q6_K)
DOTN_LEVEL(SCALAR)
DOTN_LEVEL(AVX2)
DOTN_LEVEL(AVX512)
DOTN_LEVEL(AMX)

/* The generic vec_dot_rows of a (level, type): one vec_dot per weight row. */
#define ROWS(L, T)                                                                                 \
    static void rows_##L##_##T(int64_t n, const void *w, size_t ws, int nr, const void *a,        \
                               float *out)                                                         \
    {                                                                                              \
        float (*f)(int64_t, const void *, const void *) = tables[KN_ISA_##L][VT_TYPE_##T].vec_dot; \
        for (int k = 0; k < nr; k++)                                                               \
            out[k] = f(n, (const char *)w + (size_t)k * ws, a);                                    \
    }
#define ROWS_LEVEL(L)                                                                              \
    ROWS(L, F32) ROWS(L, F16) ROWS(L, BF16) ROWS(L, Q4_0) ROWS(L, Q4_1) ROWS(L, Q5_0)              \
    ROWS(L, Q5_1) ROWS(L, Q8_0) ROWS(L, Q2_K) ROWS(L, Q3_K) ROWS(L, Q4_K) ROWS(L, Q5_K)           \
    ROWS(L, Q6_K)
ROWS_LEVEL(SCALAR)
ROWS_LEVEL(AVX2)
ROWS_LEVEL(AVX512)
ROWS_LEVEL(AMX)

#define SET_DOTN(L, T)                                                                             \
    if (!tables[KN_ISA_##L][VT_TYPE_##T].vec_dot_n)                                                \
        tables[KN_ISA_##L][VT_TYPE_##T].vec_dot_n = dotn_##L##_##T;                              \
    if (!tables[KN_ISA_##L][VT_TYPE_##T].vec_dot_rows)                                             \
        tables[KN_ISA_##L][VT_TYPE_##T].vec_dot_rows = rows_##L##_##T;
#define SET_DOTN_LEVEL(L)                                                                          \
    SET_DOTN(L, F32) SET_DOTN(L, F16) SET_DOTN(L, BF16) SET_DOTN(L, Q4_0) SET_DOTN(L, Q4_1)       \
    SET_DOTN(L, Q5_0) SET_DOTN(L, Q5_1) SET_DOTN(L, Q8_0) SET_DOTN(L, Q2_K) SET_DOTN(L, Q3_K)     \
    SET_DOTN(L, Q4_K) SET_DOTN(L, Q5_K) SET_DOTN(L, Q6_K)

/* CPU features straight from cpuid, with the OS's consent (XCR0) for the
 * register state, so that the answer is the same with every compiler. */
static void cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
}

static uint64_t xcr0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static bool cpu_has_avx2(void)
{
    unsigned r1[4], r7[4];
    if (__get_cpuid_max(0, NULL) < 7)
        return false;
    cpuid(1, 0, r1);
    cpuid(7, 0, r7);
    bool osxsave = r1[2] >> 27 & 1, avx = r1[2] >> 28 & 1, fma = r1[2] >> 12 & 1;
    bool f16c = r1[2] >> 29 & 1, avx2 = r7[1] >> 5 & 1, bmi2 = r7[1] >> 8 & 1;
    return osxsave && avx && fma && f16c && avx2 && bmi2 && (xcr0() & 0x6) == 0x6;
}

static bool cpu_has_avx512(void)
{
    unsigned r7[4], r71[4];
    if (!cpu_has_avx2())
        return false;
    cpuid(7, 0, r7);
    cpuid(7, 1, r71);
    bool f = r7[1] >> 16 & 1, dq = r7[1] >> 17 & 1, bw = r7[1] >> 30 & 1, vl = r7[1] >> 31 & 1;
    bool vnni = r7[2] >> 11 & 1, bf16 = r71[0] >> 5 & 1;
    return f && dq && bw && vl && vnni && bf16 && (xcr0() & 0xe6) == 0xe6;
}

/* AMX-TILE and AMX-INT8, the OS saving their state (XCR0 bits 17-18), and
 * Linux's consent for this process. */
static bool cpu_has_amx(void)
{
    unsigned r7[4];
    if (!cpu_has_avx512())
        return false;
    cpuid(7, 0, r7);
    bool tile = r7[3] >> 24 & 1, i8 = r7[3] >> 25 & 1;
    return tile && i8 && (xcr0() & 0x60000) == 0x60000 && kn_amx_usable();
}

static void init_once(void)
{
    memcpy(tables[KN_ISA_SCALAR], scalar_table, sizeof scalar_table);
    level_ok[KN_ISA_SCALAR] = true;
    memcpy(tables[KN_ISA_AVX2], scalar_table, sizeof scalar_table);
    kn_quants_avx2_fill(tables[KN_ISA_AVX2]);
    kn_gemm_avx2_fill(tables[KN_ISA_AVX2]);
    level_ok[KN_ISA_AVX2] = cpu_has_avx2();
    memcpy(tables[KN_ISA_AVX512], tables[KN_ISA_AVX2], sizeof scalar_table);
    for (int t = 0; t < VT_TYPE_COUNT; t++) { /* bit-identical to this level's vec_dot only */
        tables[KN_ISA_AVX512][t].vec_dot_rows = NULL;
        tables[KN_ISA_AVX512][t].gemm = NULL;
    }
    kn_quants_avx512_fill(tables[KN_ISA_AVX512]);
    kn_gemv_avx512_fill(tables[KN_ISA_AVX512]);
    kn_gemm_avx512_fill(tables[KN_ISA_AVX512]);
    kn_vnni_fill(tables[KN_ISA_AVX512]); /* Q8_0, Q4_K, Q6_K: AMX numerics, no tiles */
    level_ok[KN_ISA_AVX512] = level_ok[KN_ISA_AVX2] && cpu_has_avx512();
    SET_DOTN_LEVEL(SCALAR)
    SET_DOTN_LEVEL(AVX2)
    SET_DOTN_LEVEL(AVX512)
    memcpy(tables[KN_ISA_AMX], tables[KN_ISA_AVX512], sizeof scalar_table);
    kn_amx_fill(tables[KN_ISA_AMX]);
    SET_DOTN_LEVEL(AMX)
    level_ok[KN_ISA_AMX] = level_ok[KN_ISA_AVX512] && cpu_has_amx();

    kn_isa cap = KN_ISA_AMX;
    const char *env = getenv("VT_ISA");
    if (env && *env) {
        if (!strcasecmp(env, "scalar"))
            cap = KN_ISA_SCALAR;
        else if (!strcasecmp(env, "avx2"))
            cap = KN_ISA_AVX2;
        else if (!strcasecmp(env, "avx512"))
            cap = KN_ISA_AVX512;
    }
    active = KN_ISA_SCALAR;
    for (int l = KN_ISA_SCALAR; l <= (int)cap; l++)
        if (level_ok[l])
            active = (kn_isa)l;
}

void kn_init(void)
{
    pthread_once(&once, init_once);
}

kn_isa kn_active_isa(void)
{
    kn_init();
    return active;
}

const kn_traits *kn_traits_isa(vt_type t, kn_isa isa)
{
    kn_init();
    if ((unsigned)t >= VT_TYPE_COUNT || (unsigned)isa >= KN_ISA_COUNT || !level_ok[isa])
        return NULL;
    const kn_traits *tr = &tables[isa][t];
    return tr->to_float || tr->from_float || tr->vec_dot ? tr : NULL;
}

const kn_traits *kn_traits_get(vt_type t)
{
    return kn_traits_isa(t, kn_active_isa());
}

vt_err kn_quantize_ref(vt_type t, const float *x, void *y, int64_t n)
{
    void (*q)(const float *, void *, int64_t) = NULL;
    switch (t) {
    case VT_TYPE_F32: q = kn_ref_from_float_f32; break;
    case VT_TYPE_F16: q = kn_ref_from_float_f16; break;
    case VT_TYPE_BF16: q = kn_ref_from_float_bf16; break;
    case VT_TYPE_Q4_0: q = kn_ref_quantize_q4_0; break;
    case VT_TYPE_Q4_1: q = kn_ref_quantize_q4_1; break;
    case VT_TYPE_Q5_0: q = kn_ref_quantize_q5_0; break;
    case VT_TYPE_Q5_1: q = kn_ref_quantize_q5_1; break;
    case VT_TYPE_Q8_0: q = kn_ref_quantize_q8_0; break;
    case VT_TYPE_Q2_K: q = kn_ref_quantize_q2_K; break;
    case VT_TYPE_Q3_K: q = kn_ref_quantize_q3_K; break;
    case VT_TYPE_Q4_K: q = kn_ref_quantize_q4_K; break;
    case VT_TYPE_Q5_K: q = kn_ref_quantize_q5_K; break;
    case VT_TYPE_Q6_K: q = kn_ref_quantize_q6_K; break;
    default: break;
    }
    if (!q)
        return vt_fail(VT_ERR_UNSUPPORTED, "no reference quantizer for type %d", (int)t);
    const vt_type_info *ti = vt_type_get((uint32_t)t);
    if (n < 0 || n % ti->blck != 0)
        return vt_fail(VT_ERR_INVALID, "%lld elements is not a multiple of the %s block (%lld)",
                       (long long)n, ti->name, (long long)ti->blck);
    q(x, y, n);
    return VT_OK;
}
